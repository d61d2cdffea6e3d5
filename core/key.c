// SPDX-License-Identifier: MIT
#include "key.h"
#include "fs.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

int zm_key_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

static int key_alloc(struct zm_key **out)
{
	struct zm_key *key;

	*out = NULL;
	if (zm_key_init())
		return -EIO;
	key = calloc(1, sizeof(*key));
	if (!key)
		return -ENOMEM;
	key->secret = sodium_malloc(ZM_KEY_LEN);
	if (!key->secret) {
		free(key);
		return -ENOMEM;
	}
	*out = key;
	return 0;
}

void zm_key_free(struct zm_key *key)
{
	if (!key)
		return;
	sodium_free(key->secret);	/* wipes before freeing */
	free(key);
}

static void clamp(unsigned char *k)
{
	k[0] &= 248;
	k[31] = (unsigned char)((k[31] & 127) | 64);
}

int zm_key_generate(struct zm_key **out)
{
	int err = key_alloc(out);

	if (err)
		return err;
	randombytes_buf((*out)->secret, ZM_KEY_LEN);
	clamp((*out)->secret);
	return 0;
}

int zm_key_generate_psk(struct zm_key **out)
{
	int err = key_alloc(out);

	if (err)
		return err;
	randombytes_buf((*out)->secret, ZM_KEY_LEN);
	return 0;
}

int zm_key_copy(const struct zm_key *src, struct zm_key **out)
{
	int err = key_alloc(out);

	if (err)
		return err;
	memcpy((*out)->secret, src->secret, ZM_KEY_LEN);
	return 0;
}

int zm_key_public(const struct zm_key *key, unsigned char pub[ZM_KEY_LEN])
{
	if (zm_key_init())
		return -EIO;
	/* Clamps as WireGuard does, so unclamped input gives wg's answer. */
	return crypto_scalarmult_base(pub, key->secret) ? -EINVAL : 0;
}

void zm_key_encode(const unsigned char raw[ZM_KEY_LEN],
		   char out[ZM_KEY_B64_LEN + 1])
{
	sodium_bin2base64(out, ZM_KEY_B64_LEN + 1, raw, ZM_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
}

static int decode_into(const char *b64, unsigned char *raw)
{
	size_t bin_len = 0;
	const char *end = NULL;

	if (zm_key_init())
		return -EIO;
	if (strlen(b64) != ZM_KEY_B64_LEN || b64[ZM_KEY_B64_LEN - 1] != '=' ||
	    b64[ZM_KEY_B64_LEN - 2] == '=')
		return -EINVAL;
	if (sodium_base642bin(raw, ZM_KEY_LEN, b64, ZM_KEY_B64_LEN, NULL,
			      &bin_len, &end, sodium_base64_VARIANT_ORIGINAL) ||
	    bin_len != ZM_KEY_LEN || end != b64 + ZM_KEY_B64_LEN)
		return -EINVAL;
	return 0;
}

int zm_key_decode(const char *b64, unsigned char raw[ZM_KEY_LEN])
{
	int err = decode_into(b64, raw);

	if (err == -EINVAL)
		zm_err_set("not a base64 WireGuard key (44 characters)");
	return err;
}

int zm_key_from_base64(const char *b64, struct zm_key **out)
{
	int err = key_alloc(out);

	if (err)
		return err;
	err = decode_into(b64, (*out)->secret);
	if (err) {
		/* Never echo what might be a secret. */
		zm_err_set("malformed private key");
		zm_key_free(*out);
		*out = NULL;
	}
	return err;
}

void zm_key_export(const struct zm_key *key, char out[ZM_KEY_B64_LEN + 1])
{
	zm_key_encode(key->secret, out);
}

int zm_key_seal(const struct zm_key *key,
		const unsigned char recipient[ZM_KEY_LEN],
		unsigned char **sealed, size_t *len)
{
	unsigned char *buf;

	*sealed = NULL;
	if (zm_key_init())
		return -EIO;
	buf = malloc(crypto_box_SEALBYTES + ZM_KEY_LEN);
	if (!buf)
		return -ENOMEM;
	if (crypto_box_seal(buf, key->secret, ZM_KEY_LEN, recipient)) {
		free(buf);
		zm_err_set("cannot seal to that public key");
		return -EINVAL;
	}
	*sealed = buf;
	*len = crypto_box_SEALBYTES + ZM_KEY_LEN;
	return 0;
}

int zm_key_open(const unsigned char *sealed, size_t len,
		const struct zm_key *node_key, struct zm_key **out)
{
	unsigned char pub[ZM_KEY_LEN];
	int err;

	*out = NULL;
	if (len != crypto_box_SEALBYTES + ZM_KEY_LEN) {
		zm_err_set("sealed key has %zu bytes, expected %d", len,
			   (int)(crypto_box_SEALBYTES + ZM_KEY_LEN));
		return -EINVAL;
	}
	err = zm_key_public(node_key, pub);
	if (err)
		return err;
	err = key_alloc(out);
	if (err)
		return err;
	if (crypto_box_seal_open((*out)->secret, sealed, len, pub,
				 node_key->secret)) {
		zm_key_free(*out);
		*out = NULL;
		zm_err_set("sealed key does not open with this node's key");
		return -EBADMSG;
	}
	return 0;
}

int zm_key_save(const struct zm_key *key, const char *path)
{
	char *b64;
	int err;

	if (zm_key_init())
		return -EIO;
	b64 = sodium_malloc(ZM_KEY_B64_LEN + 2);
	if (!b64)
		return -ENOMEM;
	zm_key_export(key, b64);
	b64[ZM_KEY_B64_LEN] = '\n';
	err = zm_fs_write_atomic(path, b64, ZM_KEY_B64_LEN + 1, 0600);
	sodium_free(b64);
	if (err)
		zm_err_set("cannot write key file %s", path);
	return err;
}

int zm_key_load(const char *path, struct zm_key **out)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd, err;

	*out = NULL;
	/* sodium_malloc aborts before sodium_init. */
	if (zm_key_init())
		return -EIO;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		err = -errno;
		zm_err_set("cannot open key file %s", path);
		return err;
	}
	if (fstat(fd, &st) || (st.st_mode & 077)) {
		close(fd);
		zm_err_set("key file %s is readable by others", path);
		return -EPERM;
	}
	buf = sodium_malloc(ZM_KEY_B64_LEN + 2);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, buf, ZM_KEY_B64_LEN + 1);
	close(fd);
	if (n >= ZM_KEY_B64_LEN && (n == ZM_KEY_B64_LEN ||
				    buf[ZM_KEY_B64_LEN] == '\n')) {
		buf[ZM_KEY_B64_LEN] = '\0';
		err = zm_key_from_base64(buf, out);
	} else {
		err = -EINVAL;
	}
	sodium_free(buf);
	if (err)
		zm_err_set("key file %s does not hold a key", path);
	return err;
}
