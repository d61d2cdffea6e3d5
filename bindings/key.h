/* SPDX-License-Identifier: MIT */
#ifndef ZM_BINDINGS_KEY_H
#define ZM_BINDINGS_KEY_H

#include <lua.h>

#define ZM_PRIVKEY_MT "zmesh.privkey"

struct zm_key;

/* The private key held by the userdata at idx (raises when not one). */
struct zm_key *zm_check_privkey(lua_State *L, int idx);

#endif
