// SPDX-License-Identifier: MIT
#include "common.h"
#include "key.h"
#include "../core/key.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct zm_key *zm_check_privkey(lua_State *L, int idx)
{
	struct zm_key **ud = luaL_checkudata(L, idx, ZM_PRIVKEY_MT);

	luaL_argcheck(L, *ud, idx, "private key is closed");
	return *ud;
}

/*
 * An empty privkey userdata, made before the key so that a Lua memory
 * error can never strand a key outside a __gc's reach.
 */
static struct zm_key **new_key_ud(lua_State *L)
{
	struct zm_key **ud = lua_newuserdatauv(L, sizeof(*ud), 0);

	*ud = NULL;
	luaL_setmetatable(L, ZM_PRIVKEY_MT);
	return ud;
}

/* The userdata on top, or the error triple above it. */
static int key_result(lua_State *L, int err)
{
	return err ? zm_push_error(L, err) : 1;
}

static void check_public(lua_State *L, int idx, unsigned char raw[ZM_KEY_LEN])
{
	const char *b64 = luaL_checkstring(L, idx);

	if (zm_key_decode(b64, raw))
		luaL_argerror(L, idx,
			      lua_pushfstring(L, "malformed public key '%s'", b64));
}

static int l_generate(lua_State *L)
{
	return key_result(L, zm_key_generate(new_key_ud(L)));
}

static int l_generate_psk(lua_State *L)
{
	return key_result(L, zm_key_generate_psk(new_key_ud(L)));
}

/* private(base64) -> privkey; the text is a secret and is never echoed. */
static int l_private(lua_State *L)
{
	const char *b64 = luaL_checkstring(L, 1);
	unsigned char probe[ZM_KEY_LEN];
	int bad = zm_key_decode(b64, probe);

	sodium_memzero(probe, sizeof(probe));
	if (bad)
		luaL_argerror(L, 1, "malformed private key");
	return key_result(L, zm_key_from_base64(b64, new_key_ud(L)));
}

/* valid_public(s) -> boolean */
static int l_valid_public(lua_State *L)
{
	unsigned char raw[ZM_KEY_LEN];

	lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING &&
				   zm_key_decode(lua_tostring(L, 1), raw) == 0);
	return 1;
}

static int l_load(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	return key_result(L, zm_key_load(path, new_key_ud(L)));
}

/* open_sealed(sealed_base64, node_privkey) -> privkey | nil, err, ename */
static int l_open_sealed(lua_State *L)
{
	size_t len, bin_len = 0;
	const char *b64 = luaL_checklstring(L, 1, &len);
	struct zm_key *node = zm_check_privkey(L, 2);
	unsigned char *bin;
	struct zm_key **ud = new_key_ud(L);
	int err;

	bin = malloc(len + 1);
	if (!bin)
		return luaL_error(L, "out of memory");
	if (sodium_base642bin(bin, len + 1, b64, len, NULL, &bin_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL)) {
		free(bin);
		return luaL_argerror(L, 1, "sealed key is not base64");
	}
	err = zm_key_open(bin, bin_len, node, ud);
	free(bin);
	return key_result(L, err);
}

static int k_public(lua_State *L)
{
	unsigned char pub[ZM_KEY_LEN];
	char b64[ZM_KEY_B64_LEN + 1];
	int err = zm_key_public(zm_check_privkey(L, 1), pub);

	if (err)
		return zm_push_error(L, err);
	zm_key_encode(pub, b64);
	lua_pushstring(L, b64);
	return 1;
}

/* The secret in base64, for the few places that must show it (genkey). */
static int k_export(lua_State *L)
{
	char b64[ZM_KEY_B64_LEN + 1];

	zm_key_export(zm_check_privkey(L, 1), b64);
	lua_pushstring(L, b64);
	sodium_memzero(b64, sizeof(b64));
	return 1;
}

/* seal(recipient_public_base64) -> sealed base64 */
static int k_seal(lua_State *L)
{
	struct zm_key *key = zm_check_privkey(L, 1);
	unsigned char recipient[ZM_KEY_LEN], *sealed;
	char *b64;
	size_t len, b64_len;
	int err;

	check_public(L, 2, recipient);
	err = zm_key_seal(key, recipient, &sealed, &len);
	if (err)
		return zm_push_error(L, err);
	b64_len = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	b64 = malloc(b64_len);
	if (!b64) {
		free(sealed);
		return luaL_error(L, "out of memory");
	}
	sodium_bin2base64(b64, b64_len, sealed, len,
			  sodium_base64_VARIANT_ORIGINAL);
	free(sealed);
	lua_pushstring(L, b64);
	free(b64);
	return 1;
}

static int k_save(lua_State *L)
{
	struct zm_key *key = zm_check_privkey(L, 1);

	return zm_push_result(L, zm_key_save(key, luaL_checkstring(L, 2)));
}

/* equal(other) in constant time */
static int k_equal(lua_State *L)
{
	struct zm_key *a = zm_check_privkey(L, 1), *b = zm_check_privkey(L, 2);

	lua_pushboolean(L, sodium_memcmp(a->secret, b->secret, ZM_KEY_LEN) == 0);
	return 1;
}

static int k_close(lua_State *L)
{
	struct zm_key **ud = luaL_checkudata(L, 1, ZM_PRIVKEY_MT);

	zm_key_free(*ud);
	*ud = NULL;
	return 0;
}

/* Shows the public half only. */
static int k_tostring(lua_State *L)
{
	struct zm_key **ud = luaL_checkudata(L, 1, ZM_PRIVKEY_MT);
	unsigned char pub[ZM_KEY_LEN];
	char b64[ZM_KEY_B64_LEN + 1];

	if (!*ud || zm_key_public(*ud, pub)) {
		lua_pushliteral(L, "zmesh.privkey (closed)");
		return 1;
	}
	zm_key_encode(pub, b64);
	lua_pushfstring(L, "zmesh.privkey (public %s)", b64);
	return 1;
}

static const luaL_Reg key_methods[] = {
	{ "public", k_public },
	{ "export", k_export },
	{ "seal", k_seal },
	{ "save", k_save },
	{ "equal", k_equal },
	{ "close", k_close },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "generate", l_generate },
	{ "generate_psk", l_generate_psk },
	{ "private", l_private },
	{ "valid_public", l_valid_public },
	{ "load", l_load },
	{ "open_sealed", l_open_sealed },
	{ NULL, NULL },
};

void zm_open_key(lua_State *L)
{
	if (luaL_newmetatable(L, ZM_PRIVKEY_MT)) {
		luaL_newlib(L, key_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, k_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, k_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, k_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
}
