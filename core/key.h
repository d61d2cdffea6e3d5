/* SPDX-License-Identifier: MIT */
/*
 * WireGuard keys with libsodium: Curve25519 private keys in sodium_malloc
 * memory, their public keys, WireGuard's base64 form, and private keys
 * sealed to a node's public key (crypto_box_seal).
 */
#ifndef ZM_KEY_H
#define ZM_KEY_H

#include <stddef.h>

#define ZM_KEY_LEN 32
#define ZM_KEY_B64_LEN 44	/* without the NUL */

/* A private key; secret points into sodium_malloc memory. */
struct zm_key {
	unsigned char *secret;
};

int zm_key_init(void);
/* A fresh clamped private key, as `wg genkey` makes. */
int zm_key_generate(struct zm_key **out);
/* 32 random bytes, unclamped, as `wg genpsk` makes. */
int zm_key_generate_psk(struct zm_key **out);
/* A second key in its own sodium memory, equal to SRC. */
int zm_key_copy(const struct zm_key *src, struct zm_key **out);
/* Wipes and frees; NULL is fine. */
void zm_key_free(struct zm_key *key);

int zm_key_public(const struct zm_key *key, unsigned char pub[ZM_KEY_LEN]);

/* Encode 32 bytes; out has room for ZM_KEY_B64_LEN + 1. */
void zm_key_encode(const unsigned char raw[ZM_KEY_LEN],
		   char out[ZM_KEY_B64_LEN + 1]);
/* Decode exactly one base64 key (44 chars, one '='); -EINVAL otherwise. */
int zm_key_decode(const char *b64, unsigned char raw[ZM_KEY_LEN]);
/* Decode a private key straight into sodium memory. */
int zm_key_from_base64(const char *b64, struct zm_key **out);
/* Encode a private key into out (caller wipes it). */
void zm_key_export(const struct zm_key *key, char out[ZM_KEY_B64_LEN + 1]);

/* Seal the private key to RECIPIENT; *sealed is malloc'd, *len set. */
int zm_key_seal(const struct zm_key *key,
		const unsigned char recipient[ZM_KEY_LEN],
		unsigned char **sealed, size_t *len);
/* Open a sealed private key with the node's own key. -EBADMSG if not ours. */
int zm_key_open(const unsigned char *sealed, size_t len,
		const struct zm_key *node_key, struct zm_key **out);

/* Write the private key in base64 to PATH, mode 0600, atomically. */
int zm_key_save(const struct zm_key *key, const char *path);
/* Read one; refuses a file others can read (-EPERM). */
int zm_key_load(const char *path, struct zm_key **out);

#endif
