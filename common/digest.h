/* digest.h — SHA-256, HMAC-SHA-256 and a constant-time comparison, for
 * authenticating cluster messages (--cluster-secret-file) and HTTP tokens
 * (--auth-file). The cryptography is OpenSSL's libcrypto; this header keeps
 * its types out of the rest of the code.
 *
 * Ownership: digest_key_new() returns a key the caller frees with
 * digest_key_free(); the key copies the secret. Threads: a key is immutable
 * after creation and may be used by any number of threads at once.
 */
#ifndef FLAMEDB_COMMON_DIGEST_H
#define FLAMEDB_COMMON_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIGEST_SHA256_BYTES 32

/* A piece of a message; a MAC is computed over the concatenation. */
typedef struct digest_part {
    const void *p;
    size_t n;
} digest_part_t;

typedef struct digest_key digest_key_t;

/* SHA-256 of p[0..n). Returns 0 or ERR_INTERNAL. */
int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_BYTES]);

/* An HMAC-SHA-256 key holding a copy of secret[0..n) (n >= 1). */
int digest_key_new(const void *secret, size_t n, digest_key_t **out);
void digest_key_free(digest_key_t *k);

/* HMAC-SHA-256 under k of parts[0..nparts) concatenated. */
int digest_hmac(const digest_key_t *k, const digest_part_t *parts, size_t nparts,
                uint8_t out[DIGEST_SHA256_BYTES]);

/* Whether a[0..n) equals b[0..n), in time that depends on n only. */
bool digest_equal(const void *a, const void *b, size_t n);

/* Lowercase hex of p[0..n) into out (2n + 1 bytes, NUL-terminated). */
void digest_hex(const uint8_t *p, size_t n, char *out);

#endif
