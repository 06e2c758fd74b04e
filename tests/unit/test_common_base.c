/* Unit tests for common/: buf, labels, symtab, hash golden values, errors. */
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "common/varint.h"
#include "check.h"

static void test_buf(void)
{
    buf_t b;
    buf_init(&b, 8);
    CHECK_EQ_INT(buf_append_str(&b, "12345678"), ERR_OK);
    CHECK_EQ_INT(buf_append_byte(&b, '9'), ERR_TOO_LARGE);
    CHECK_EQ_INT(b.len, 8);
    CHECK_EQ_STR((char *)b.data, "12345678");
    buf_free(&b);

    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_json_string(&b, "a\"b\\c\n\x01\xff\xc3\xa9", 10), ERR_OK);
    CHECK_EQ_STR((char *)b.data, "\"a\\\"b\\\\c\\u000a\\u0001\xef\xbf\xbd\xc3\xa9\"");
    buf_reset(&b);
    CHECK_EQ_INT(buf_printf(&b, "%d-%s", 42, "x"), ERR_OK);
    CHECK_EQ_STR((char *)b.data, "42-x");
    buf_free(&b);
}

/* buf_append_json_string one byte at a time, as JSON and the rule for
 * invalid UTF-8 say: the answer the word-at-a-time scan must give. */
static void json_string_slow(buf_t *b, const uint8_t *s, size_t n)
{
    buf_append_byte(b, '"');
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            buf_printf(b, "\\%c", c);
            i++;
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            buf_append_byte(b, c);
            i++;
        } else {
            size_t l = buf_utf8_len(s + i, n - i);
            buf_append(b, l ? s + i : (const uint8_t *)"\xef\xbf\xbd", l ? l : 3);
            i += l ? l : 1;
        }
    }
    buf_append_byte(b, '"');
}

/* Every byte that is not plain (quote, backslash, each control byte,
 * 0x7f's neighbours, a UTF-8 lead and continuation, an invalid byte) at
 * every place of strings of 0 to 40 bytes, alone and after another, so
 * each lands at each offset of an eight-byte word and in the tail. */
static void test_buf_json_string_words(void)
{
    static const uint8_t odd[] = {'"',  '\\', 0x00, 0x01, 0x09, 0x0a, 0x1f, 0x20, 0x21,
                                  0x7e, 0x7f, 0x80, 0xbf, 0xc3, 0xe2, 0xf0, 0xff};
    uint8_t s[48];
    buf_t fast, slow;
    buf_init(&fast, BUF_UNLIMITED);
    buf_init(&slow, BUF_UNLIMITED);
    for (size_t n = 0; n <= 40; n++) {
        for (size_t at = 0; at <= n; at++) {
            for (size_t k = 0; k < sizeof odd; k++) {
                for (size_t i = 0; i < n; i++)
                    s[i] = (uint8_t)('a' + (i * 7 + k) % 26);
                if (at < n) s[at] = odd[k];
                if (at + 3 < n) s[at + 3] = odd[(k * 5 + 3) % sizeof odd];
                if (at < n && odd[k] == 0xc3 && at + 1 < n) s[at + 1] = 0xa9; /* a valid pair */
                buf_reset(&fast);
                buf_reset(&slow);
                CHECK_EQ_INT(buf_append_json_string(&fast, (const char *)s, n), ERR_OK);
                json_string_slow(&slow, s, n);
                CHECK_EQ_INT(fast.len, slow.len);
                CHECK(fast.len == slow.len && memcmp(fast.data, slow.data, fast.len) == 0);
            }
        }
    }
    buf_free(&fast);
    buf_free(&slow);
}

/* A budget for test_buf_charge: the bytes a buffer said it holds, the
 * most asked for, and a limit past which it refuses. */
typedef struct held {
    size_t now, most, limit;
} held_t;

static int held_fn(void *ctx, size_t held)
{
    held_t *h = ctx;
    if (held > h->most) h->most = held;
    if (held > h->now && held > h->limit) return ERR_UNAVAILABLE;
    h->now = held;
    return 0;
}

/* A hooked buffer asks before each growth for its old and new storage
 * together (realloc may copy), then holds its capacity; a refusal fails
 * the append and leaves the buffer as it was. */
static void test_buf_charge(void)
{
    held_t h = {0, 0, 1 << 20};
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    buf_charge(&b, held_fn, &h);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    int rc = 0;
    size_t appended = 0;
    while (rc == 0) {
        size_t cap = b.cap, want = buf_reserved_cap(&b, sizeof chunk);
        rc = buf_append(&b, chunk, sizeof chunk);
        if (rc == 0) {
            appended++;
            CHECK(b.cap == want);
            CHECK_EQ_INT(h.now, b.cap);
            if (b.cap != cap) CHECK_EQ_INT(h.most, cap + b.cap); /* asked for both first */
        } else {
            CHECK_EQ_INT(rc, ERR_UNAVAILABLE);
            CHECK(b.cap == cap && b.len == appended * sizeof chunk);
            CHECK_EQ_INT(h.now, cap);
        }
    }
    CHECK(b.cap <= h.limit && b.cap + 2 * b.cap > h.limit); /* refused at the next doubling */
    buf_charge(&b, NULL, NULL);
    CHECK_EQ_INT(buf_append(&b, chunk, sizeof chunk), 0); /* unhooked: not asked */
    CHECK_EQ_INT(h.now, b.cap / 2);
    buf_free(&b);
}

/* What a buffer's writer holds beside it is asked for first and counts in
 * every later charge of the buffer's growth, until given back. */
static void test_buf_beside(void)
{
    held_t h = {0, 0, 1 << 20};
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    buf_charge(&b, held_fn, &h);
    CHECK_EQ_INT(buf_beside_take(&b, 1000), 0);
    CHECK_EQ_INT(h.now, 1000);
    CHECK_EQ_INT(buf_append(&b, "abc", 3), 0);
    CHECK_EQ_INT(h.now, b.cap + 1000);
    CHECK_EQ_INT(h.most, b.cap + 1000); /* asked with what is beside */
    size_t cap = b.cap;
    CHECK_EQ_INT(buf_beside_take(&b, (size_t)1 << 20), ERR_UNAVAILABLE); /* past the limit */
    CHECK_EQ_INT(h.now, cap + 1000);
    CHECK_EQ_INT(b.beside, 1000);
    char chunk[4000];
    memset(chunk, 'x', sizeof chunk);
    h.most = 0;
    CHECK_EQ_INT(buf_append(&b, chunk, sizeof chunk), 0);
    CHECK_EQ_INT(h.most, cap + b.cap + 1000); /* old, new and beside while it grew */
    buf_beside_give(&b, 1000);
    CHECK_EQ_INT(h.now, b.cap);
    CHECK_EQ_INT(b.beside, 0);
    buf_free(&b);
}

static void test_varint(void)
{
    uint8_t tmp[10];
    const int64_t vals[] = {0, 1, -1, 63, -64, 1LL << 40, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = varint_put_u(tmp, varint_zigzag(vals[i]));
        const uint8_t *p = tmp;
        int64_t v = 0;
        CHECK(varint_read_s(&p, tmp + n, &v));
        CHECK(v == vals[i]);
        p = tmp;
        CHECK(n < 2 || !varint_read_s(&p, tmp + n - 1, &v)); /* truncated */
    }
    uint8_t bad[11];
    memset(bad, 0xff, sizeof bad);
    const uint8_t *p = bad;
    uint64_t u;
    CHECK(!varint_read_u(&p, bad + sizeof bad, &u)); /* over-long */
}

static void test_labels(void)
{
    labels_t *l = labels_new();
    CHECK_EQ_INT(labels_set_str(l, "service_name", "api"), ERR_OK);
    CHECK_EQ_INT(labels_set_str(l, "env", "prod"), ERR_OK);
    CHECK_EQ_INT(labels_set_str(l, "__name__", "process_cpu"), ERR_OK);
    CHECK_EQ_INT(labels_set_str(l, "env", "staging"), ERR_OK);
    CHECK_EQ_INT(labels_count(l), 3);
    CHECK_EQ_STR(labels_name(l, 0), "__name__");
    CHECK_EQ_STR(labels_name(l, 1), "env");
    CHECK_EQ_STR(labels_get(l, "env"), "staging");
    CHECK(labels_get(l, "nope") == NULL);

    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(labels_encode(l, &b), ERR_OK);
    labels_t *d = NULL;
    CHECK_EQ_INT(labels_decode(b.data, b.len, &d), ERR_OK);
    CHECK_EQ_INT(labels_count(d), 3);
    CHECK(labels_hash(d) == labels_hash(l));
    CHECK_EQ_INT(labels_decode(b.data, b.len - 1, &(labels_t *){NULL}), ERR_CORRUPT);
    labels_free(d);
    /* an absent field (NULL, 0: a stream window without labels) is no
     * labels, read without arithmetic on the NULL pointer (UBSan) */
    d = NULL;
    CHECK_EQ_INT(labels_decode(NULL, 0, &d), ERR_OK);
    CHECK(d != NULL && labels_count(d) == 0);
    labels_free(d);

    /* insertion order does not change identity */
    labels_t *o = labels_new();
    labels_set_str(o, "env", "staging");
    labels_set_str(o, "__name__", "process_cpu");
    labels_set_str(o, "service_name", "api");
    CHECK(labels_hash(o) == labels_hash(l));
    labels_remove(o, "env");
    CHECK(labels_hash(o) != labels_hash(l));
    buf_reset(&b);
    CHECK_EQ_INT(labels_format(o, &b), ERR_OK);
    CHECK_EQ_STR((char *)b.data, "{__name__=\"process_cpu\", service_name=\"api\"}");
    buf_free(&b);
    labels_free(o);
    labels_free(l);
}

static void test_symtab(void)
{
    symtab_t *s = symtab_new();
    uint64_t a, b, a2;
    CHECK_EQ_INT(symtab_intern(s, "main", 4, "main.c", 6, &a), ERR_OK);
    CHECK_EQ_INT(symtab_intern(s, "main", 4, "other.c", 7, &b), ERR_OK);
    CHECK_EQ_INT(symtab_intern(s, "main", 4, "main.c", 6, &a2), ERR_OK);
    CHECK(a == a2 && a != b);
    CHECK_EQ_INT(symtab_count(s), 2);
    const char *name, *file;
    CHECK(symtab_get(s, b, &name, &file));
    CHECK_EQ_STR(name, "main");
    CHECK_EQ_STR(file, "other.c");
    CHECK(symtab_get(s, SYM_ROOT, &name, &file));
    CHECK_EQ_STR(name, "total");
    CHECK(!symtab_get(s, 12345, &name, &file));
    for (int i = 0; i < 5000; i++) {
        char n[32];
        int len = snprintf(n, sizeof n, "fn%d", i);
        uint64_t id;
        CHECK_EQ_INT(symtab_intern(s, n, (size_t)len, "", 0, &id), ERR_OK);
    }
    CHECK_EQ_INT(symtab_count(s), 5002);
    CHECK(symtab_get(s, a, &name, &file));
    CHECK_EQ_STR(file, "main.c");
    symtab_free(s);
}

/* Golden values: these ids are persisted in keys and exchanged between nodes.
 * If this test fails, the storage format changed. */
static void test_hash_golden(void)
{
    CHECK(hash_bytes64("", 0) == 0x2d06800538d394c2ULL);
    CHECK(hash_bytes64("flamedb", 7) == hash_bytes64("flamedb", 7));
    uint64_t s1 = hash_symbol("main", 4, "main.c", 6);
    CHECK(s1 != hash_symbol("main", 4, "", 0));
    CHECK(s1 == 0xa1f5180e95777163ULL);
}

/* hash_symbol is XXH3 of name, a NUL and file, however long they are:
 * the same as the streaming API over the three (what it computed before
 * short ones were hashed in one call), across the lengths where it
 * switches between the two. */
static void test_hash_symbol_lengths(void)
{
    static char name[1200], file[1200];
    for (size_t i = 0; i < sizeof name; i++) {
        name[i] = (char)('a' + i % 26);
        file[i] = (char)('A' + i * 7 % 26);
    }
    static const size_t lens[] = {0,   1,   3,   16,  17,  128, 129, 240, 241,  254, 255,
                                  256, 257, 300, 510, 511, 512, 513, 700, 1024, 1199};
    size_t n = sizeof lens / sizeof lens[0];
    int same = 1;
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            XXH3_state_t st;
            XXH3_64bits_reset(&st);
            XXH3_64bits_update(&st, name, lens[a]);
            XXH3_64bits_update(&st, "", 1);
            XXH3_64bits_update(&st, file, lens[b]);
            uint64_t want = XXH3_64bits_digest(&st);
            if (want <= SYM_OTHER) want += 2;
            uint64_t got = hash_symbol(name, lens[a], file, lens[b]);
            if (got != want) {
                fprintf(stderr, "hash_symbol(%zu, %zu) differs\n", lens[a], lens[b]);
                same = 0;
            }
        }
    CHECK(same);
}

static void test_err(void)
{
    CHECK_EQ_INT(err_http_status(ERR_INVALID_ARGUMENT), 400);
    CHECK_EQ_INT(err_http_status(ERR_TOO_LARGE), 413);
    CHECK_EQ_INT(err_http_status(ERR_UNPARSEABLE), 422);
    CHECK_EQ_INT(err_http_status(-999), 500);
    CHECK_EQ_STR(err_code_name(ERR_INVALID_ARGUMENT), "invalid_parameter");
    errmsg_t em = {{0}};
    CHECK_EQ_STR(errmsg_text(&em, ERR_IO), "storage or file error");
    CHECK_EQ_INT(errmsg_set(&em, ERR_LIMIT, "x=%d", 3), ERR_LIMIT);
    CHECK_EQ_STR(errmsg_text(&em, ERR_LIMIT), "x=3");
}

int main(void)
{
    test_buf();
    test_buf_json_string_words();
    test_buf_charge();
    test_buf_beside();
    test_varint();
    test_labels();
    test_symtab();
    test_hash_golden();
    test_hash_symbol_lengths();
    test_err();
    return check_exit();
}
