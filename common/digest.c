/* digest.c — SHA-256 and HMAC-SHA-256 through OpenSSL's EVP interfaces
 * (digest.h). A key keeps an initialised MAC context as a template; every
 * MAC duplicates it, so the key schedule is computed once per key and the
 * template is only read, which lets threads share a key. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/err.h"

struct digest_key {
    EVP_MAC *mac;
    EVP_MAC_CTX *tmpl; /* initialised with the secret; never updated */
};

int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_BYTES])
{
    unsigned int len = 0;
    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != DIGEST_SHA256_BYTES)
        return ERR_INTERNAL;
    return 0;
}

int digest_key_new(const void *secret, size_t n, digest_key_t **out)
{
    *out = NULL;
    if (n == 0) return ERR_INVALID_ARGUMENT;
    digest_key_t *k = calloc(1, sizeof *k);
    if (k == NULL) return ERR_NOMEM;
    char sha[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", sha, 0),
                           OSSL_PARAM_construct_end()};
    k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (k->mac != NULL) k->tmpl = EVP_MAC_CTX_new(k->mac);
    if (k->tmpl == NULL || EVP_MAC_init(k->tmpl, secret, n, params) != 1) {
        digest_key_free(k);
        return ERR_INTERNAL;
    }
    *out = k;
    return 0;
}

void digest_key_free(digest_key_t *k)
{
    if (k == NULL) return;
    EVP_MAC_CTX_free(k->tmpl);
    EVP_MAC_free(k->mac);
    free(k);
}

int digest_hmac(const digest_key_t *k, const digest_part_t *parts, size_t nparts,
                uint8_t out[DIGEST_SHA256_BYTES])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->tmpl);
    if (c == NULL) return ERR_NOMEM;
    int ok = 1;
    for (size_t i = 0; i < nparts && ok; i++)
        if (parts[i].n > 0) ok = EVP_MAC_update(c, parts[i].p, parts[i].n) == 1;
    size_t len = 0;
    if (ok) ok = EVP_MAC_final(c, out, &len, DIGEST_SHA256_BYTES) == 1;
    EVP_MAC_CTX_free(c);
    return ok && len == DIGEST_SHA256_BYTES ? 0 : ERR_INTERNAL;
}

bool digest_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void digest_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = 0;
}
