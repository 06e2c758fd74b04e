/* Unit tests for common/digest.h: SHA-256 (FIPS 180-2 example) and
 * HMAC-SHA-256 (RFC 4231 test cases 1, 2 and 6), a MAC over parts equals the
 * MAC over their concatenation, and the comparison. */
#include <string.h>

#include "check.h"
#include "common/digest.h"
#include "common/err.h"

static void check_hex(const uint8_t *d, const char *want)
{
    char hex[2 * DIGEST_SHA256_BYTES + 1];
    digest_hex(d, DIGEST_SHA256_BYTES, hex);
    CHECK_EQ_STR(hex, want);
}

static void check_hmac(const void *key, size_t kn, const void *msg, size_t mn, const char *want)
{
    digest_key_t *k = NULL;
    CHECK_EQ_INT(digest_key_new(key, kn, &k), 0);
    uint8_t out[DIGEST_SHA256_BYTES];
    digest_part_t whole = {msg, mn};
    CHECK_EQ_INT(digest_hmac(k, &whole, 1, out), 0);
    check_hex(out, want);
    /* the same message in three parts (one empty) */
    size_t cut = mn / 3;
    digest_part_t parts[] = {{msg, cut}, {msg, 0}, {(const char *)msg + cut, mn - cut}};
    uint8_t again[DIGEST_SHA256_BYTES];
    CHECK_EQ_INT(digest_hmac(k, parts, 3, again), 0);
    CHECK(memcmp(out, again, sizeof out) == 0);
    digest_key_free(k);
}

int main(void)
{
    uint8_t d[DIGEST_SHA256_BYTES];
    CHECK_EQ_INT(digest_sha256("abc", 3, d), 0);
    check_hex(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    check_hmac(k1, sizeof k1, "Hi There", 8,
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    uint8_t k6[131];
    memset(k6, 0xaa, sizeof k6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_hmac(k6, sizeof k6, m6, strlen(m6),
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    digest_key_t *k = NULL;
    CHECK_EQ_INT(digest_key_new("", 0, &k), ERR_INVALID_ARGUMENT);
    CHECK(k == NULL);

    CHECK(digest_equal("abcd", "abcd", 4));
    CHECK(!digest_equal("abcd", "abce", 4));
    CHECK(digest_equal("x", "y", 0));
    return check_exit();
}
