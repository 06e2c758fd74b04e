/* test_storage_sparse.c — sparse blocks (storage/sparse.c, version 3 in
 * storage/sparse_cols.c) added straight
 * into a dense vector (storage_sparse_add_dense, the query merger's path)
 * must give what decoding and adding gives, and a corrupt block must add
 * nothing, wherever it breaks; two blocks added in step
 * (storage_sparse_add_dense2) must give what adding one after the other
 * gives; folding merge operands (storage_fold_sparse) must sum them
 * exactly, one operand or many; storage_sparse_factor must find exact
 * integer factors only. Every suite runs over both encodings: version 3
 * (written) and version 2 (written by format 13 and earlier, still read).
 * Prints its seed; pass a seed as argv[1] to replay. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/storage_int.h"
#include "tests/unit/check.h"

#define IDS 5000

/* The encoder under test: storage_sparse_encode (version 3) or
 * storage_sparse_encode_v2. */
static int (*encode)(const sparse_vec_t *v, buf_t *out) = storage_sparse_encode;
/* 1: random_block picks either encoding for each block (a window whose
 * parts were written by both formats). */
static int mixed;

/* Breaks a valid block, its length kept where it can be: the last varint
 * made endless (version 2); an id's gap one more, so the ids pass the
 * block's last, or widths out of range (version 3); a version-3 block of
 * no pairs gets a byte too many. */
static void break_in_place(buf_t *b)
{
    storage_cols_t c;
    if (b->data[0] != SPARSE_VERSION || storage_cols_parse(b->data, b->len, &c) != 0) {
        b->data[b->len - 1] = 0x80;
        return;
    }
    if (c.n == 0) { /* every value zero: nothing but the header */
        CHECK_EQ_INT(buf_append_byte(b, 0), 0);
        return;
    }
    uint8_t *gaps = b->data + (c.gaps - b->data);
    if (c.n > 1 && c.wi > 0 && gaps[0] < 0xff)
        gaps[0]++;
    else
        gaps[-1] = 0x05 | (uint8_t)(c.wv << 4); /* the widths byte: 5-byte gaps */
}

/* A value whose varint takes one to ten bytes, each length about as
 * often (the dense addition reads one to four bytes without a branch per
 * byte, longer ones another way), of either sign. */
static int64_t any_length_value(void)
{
    int bits = 1 + (int)(check_rng() % 63);
    int64_t q = (int64_t)(check_rng() >> (64 - bits));
    return check_rng() % 2 ? q : -q;
}

/* wide: 0 small values with a common factor, 1 values up to 1e9, 2 values
 * of every varint length. */
static void random_vec(sparse_vec_t *v, int wide)
{
    size_t n = check_rng() % 300;
    storage_sparse_reserve(v, n);
    uint32_t id = (uint32_t)(check_rng() % 4);
    v->n = 0;
    int64_t scale = wide ? 1 : 1 + (int64_t)(check_rng() % 4) * 512; /* a gcd to find */
    for (size_t i = 0; i < n && id < IDS; i++) {
        v->id[v->n] = id;
        int64_t q = (int64_t)(check_rng() % (wide ? 1000000000 : 300)) - (wide ? 0 : 100);
        if (wide == 2) q = any_length_value();
        v->val[v->n++] = q * scale;
        id += 1 + (uint32_t)(check_rng() % (check_rng() % 4 == 0 ? 200 : 3));
    }
}

static void add_decoded(int64_t *want, const sparse_vec_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        want[v->id[i]] = (int64_t)((uint64_t)want[v->id[i]] + (uint64_t)v->val[i]);
}

static void test_dense(void)
{
    int64_t *want = calloc(IDS, sizeof *want), *val = NULL;
    size_t cap = 0, used = 0, want_used = 0;
    sparse_vec_t v, d;
    storage_sparse_init(&v);
    storage_sparse_init(&d);
    buf_t b;
    buf_init(&b, (size_t)1 << 24);
    for (int r = 0; r < 600; r++) {
        random_vec(&v, r % 3);
        buf_reset(&b);
        CHECK_EQ_INT(encode(&v, &b), 0);
        CHECK_EQ_INT(storage_sparse_decode(b.data, b.len, &d), 0);
        CHECK_EQ_INT(b.data[0],
                     encode == storage_sparse_encode ? SPARSE_VERSION : SPARSE_VERSION_V2);
        add_decoded(want, &d);
        for (size_t i = 0; i < d.n; i++) /* one past the largest id added so far */
            want_used = d.id[i] >= want_used ? d.id[i] + 1 : want_used;
        CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), 0);
        CHECK_EQ_INT(used, want_used);
        /* the same block broken: cut short, one byte changed, a byte too many */
        size_t cut = b.len > 1 ? 1 + check_rng() % (b.len - 1) : 0;
        CHECK(storage_sparse_add_dense(b.data, cut, &val, &cap, &used, IDS) != 0);
        if (d.n > 0) {
            buf_t broken;
            buf_init(&broken, (size_t)1 << 24);
            CHECK_EQ_INT(buf_append(&broken, b.data, b.len), 0);
            break_in_place(&broken);
            CHECK(storage_sparse_add_dense(broken.data, broken.len, &val, &cap, &used, IDS) != 0);
            CHECK(storage_sparse_decode(broken.data, broken.len, &v) != 0);
            buf_free(&broken);
        }
        CHECK_EQ_INT(buf_append_byte(&b, 0), 0);
        CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), ERR_CORRUPT);
        CHECK_EQ_INT(used, want_used); /* nothing of a corrupt block counts */
        /* more pairs than the block's count, past the last six bytes: read
         * before the count is checked, then taken back */
        size_t whole = b.len;
        b.len--; /* the byte too many off again */
        CHECK_EQ_INT(buf_append(&b, "\x01\x02\x01\x02\x01\x02\x01\x02", 8), 0);
        CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), ERR_CORRUPT);
        CHECK_EQ_INT(used, want_used);
        b.len = whole;
        /* an id past the bound of a vector still to grow: corrupt, nothing added */
        if (d.n > 0) {
            int64_t *small = NULL;
            size_t small_cap = 0, small_used = 0;
            CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len - 1, &small, &small_cap,
                                                  &small_used, d.id[d.n - 1]),
                         ERR_CORRUPT);
            CHECK_EQ_INT(small_used, 0);
            int zero = 1;
            for (size_t i = 0; i < small_cap; i++)
                zero &= small[i] == 0;
            CHECK(zero);
            free(small);
        }
    }
    int same = 1;
    for (size_t id = 0; id < IDS; id++)
        same &= (id < cap ? val[id] : 0) == want[id];
    for (size_t id = IDS; id < cap; id++)
        same &= val[id] == 0;
    CHECK(same);
    free(want);
    free(val);
    buf_free(&b);
    storage_sparse_free(&v);
    storage_sparse_free(&d);
}

static void test_fold(void)
{
    storage_counters_t c;
    memset(&c, 0, sizeof c);
    sparse_vec_t v, d;
    storage_sparse_init(&v);
    storage_sparse_init(&d);
    for (int r = 0; r < 100; r++) {
        int n = 1 + (int)(check_rng() % 5);
        buf_t part[5], out;
        const char *parts[5];
        size_t lens[5];
        int64_t want[IDS] = {0}, got[IDS] = {0};
        for (int i = 0; i < n; i++) {
            random_vec(&v, r % 2);
            buf_init(&part[i], (size_t)1 << 24);
            CHECK_EQ_INT(encode(&v, &part[i]), 0);
            storage_sparse_decode(part[i].data, part[i].len, &d);
            add_decoded(want, &d);
            parts[i] = (const char *)part[i].data;
            lens[i] = part[i].len;
        }
        buf_init(&out, (size_t)1 << 24);
        CHECK_EQ_INT(storage_fold_sparse(&c, parts, lens, n, &out), 0);
        CHECK_EQ_INT(storage_sparse_decode(out.data, out.len, &d), 0);
        add_decoded(got, &d);
        CHECK_EQ_INT(memcmp(got, want, sizeof got), 0);
        if (n == 1) CHECK(out.len == lens[0] && memcmp(out.data, parts[0], lens[0]) == 0);
        for (size_t i = 1; i < d.n; i++)
            CHECK(d.id[i] > d.id[i - 1] && d.val[i] != 0); /* ascending, zeros dropped */
        for (int i = 0; i < n; i++)
            buf_free(&part[i]);
        buf_free(&out);
    }
    storage_sparse_free(&v);
    storage_sparse_free(&d);
}

/* v := the n (id, value) pairs given. */
static void set_vec(sparse_vec_t *v, size_t n, const uint32_t *id, const int64_t *val)
{
    storage_sparse_reserve(v, n ? n : 1);
    memcpy(v->id, id, n * sizeof *id);
    memcpy(v->val, val, n * sizeof *val);
    v->n = n;
}

/* factor(a, b) on the pairs given: 1 with *c, or 0. */
static int factor_of(size_t na, const uint32_t *ia, const int64_t *va, size_t nb,
                     const uint32_t *ib, const int64_t *vb, int64_t *c)
{
    sparse_vec_t a, b;
    storage_sparse_init(&a);
    storage_sparse_init(&b);
    set_vec(&a, na, ia, va);
    set_vec(&b, nb, ib, vb);
    *c = 12345; /* untouched when not proportional */
    int r = storage_sparse_factor(&a, &b, c);
    storage_sparse_free(&a);
    storage_sparse_free(&b);
    return r;
}

/* Proportional sample types (profile_trees stores b as c times a): exact
 * factors only, over the same non-zero entries, without overflow. */
static void test_factor(void)
{
    const uint32_t id[4] = {1, 5, 9, 12}, other[4] = {1, 5, 10, 12};
    int64_t c;
    const int64_t samples[4] = {3, 1, 7, 2}, cpu[4] = {30000000, 10000000, 70000000, 20000000};
    CHECK(factor_of(4, id, samples, 4, id, cpu, &c) == 1 && c == 10000000);
    CHECK(factor_of(4, id, samples, 4, id, samples, &c) == 1 && c == 1);
    const int64_t neg[4] = {-6, -2, -14, -4};
    CHECK(factor_of(4, id, samples, 4, id, neg, &c) == 1 && c == -2);
    /* cpu over samples: 1/10^7 is no integer factor */
    CHECK(factor_of(4, id, cpu, 4, id, samples, &c) == 0 && c == 12345);
    /* a factor that does not divide: 3 * 2 != 7, 7 / 3 not whole */
    const int64_t off[4] = {6, 2, 15, 4}, nodiv[4] = {7, 2, 14, 4};
    CHECK(factor_of(4, id, samples, 4, id, off, &c) == 0);
    CHECK(factor_of(4, id, samples, 4, id, nodiv, &c) == 0);
    /* other ids, or one entry more or less */
    CHECK(factor_of(4, id, samples, 4, other, cpu, &c) == 0);
    CHECK(factor_of(4, id, samples, 3, id, cpu, &c) == 0);
    CHECK(factor_of(3, id, samples, 4, id, cpu, &c) == 0);
    /* zero values are no entries (the encoding omits them) */
    const uint32_t idz[5] = {1, 3, 5, 9, 12};
    const int64_t samz[5] = {3, 0, 1, 7, 2}, cpuz[4] = {6, 2, 14, 4};
    CHECK(factor_of(5, idz, samz, 4, id, cpuz, &c) == 1 && c == 2);
    CHECK(factor_of(4, id, cpuz, 5, idz, samz, &c) == 0); /* 3 / 6 */
    const int64_t zeros[4] = {0, 0, 0, 0};
    CHECK(factor_of(4, id, zeros, 4, id, zeros, &c) == 0); /* nothing to scale */
    CHECK(factor_of(0, id, zeros, 0, id, zeros, &c) == 0);
    CHECK(factor_of(4, id, samples, 4, id, zeros, &c) == 0);
    CHECK(factor_of(4, id, zeros, 4, id, samples, &c) == 0);
    /* overflow: c * a past int64 on a later entry, and INT64_MIN / -1 */
    const int64_t big[2] = {1, INT64_MAX / 2 + 1};
    const int64_t bigc_v[2] = {2, (int64_t)((uint64_t)(INT64_MAX / 2 + 1) * 2)}; /* wrapped */
    CHECK(factor_of(2, id, big, 2, id, bigc_v, &c) == 0);
    const int64_t m1[1] = {-1}, mn[1] = {INT64_MIN}, mx[1] = {INT64_MAX};
    CHECK(factor_of(1, id, m1, 1, id, mn, &c) == 0);
    CHECK(factor_of(1, id, m1, 1, id, mx, &c) == 1 && c == -INT64_MAX);
    CHECK(factor_of(1, id, mn, 1, id, mn, &c) == 1 && c == 1);
    /* random vectors and exact multiples of them round trip */
    sparse_vec_t a, b;
    storage_sparse_init(&a);
    storage_sparse_init(&b);
    for (int r = 0; r < 200; r++) {
        random_vec(&a, r % 2);
        int64_t f = 1 + (int64_t)(check_rng() % 1000000000);
        storage_sparse_reserve(&b, a.n ? a.n : 1);
        b.n = a.n;
        for (size_t i = 0; i < a.n; i++) {
            b.id[i] = a.id[i];
            b.val[i] = a.val[i] * f;
        }
        size_t nz = 0;
        for (size_t i = 0; i < a.n; i++)
            nz += a.val[i] != 0;
        c = 0;
        int got = storage_sparse_factor(&a, &b, &c);
        CHECK(got == (nz > 0));
        if (got) CHECK(c == f);
        if (nz > 1) { /* one value off by one: no longer proportional */
            size_t k = check_rng() % a.n;
            while (a.val[k] == 0)
                k = (k + 1) % a.n;
            b.val[k] += 1;
            CHECK(storage_sparse_factor(&a, &b, &c) == 0);
        }
    }
    storage_sparse_free(&a);
    storage_sparse_free(&b);
}

/* A block of no pairs is the header alone: pairs after it are corrupt, and
 * are not read into a vector that was never made (it crashed a merge). */
static void test_dense_empty_block(void)
{
    sparse_vec_t v;
    storage_sparse_init(&v);
    buf_t b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(encode(&v, &b), 0);
    int64_t *val = NULL;
    size_t cap = 0, used = 0;
    CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), 0);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(buf_append(&b, "\x01\x02\x01\x02\x01\x02\x01\x02", 8), 0);
    CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), ERR_CORRUPT);
    CHECK_EQ_INT(used, 0);
    free(val);
    buf_free(&b);
    storage_sparse_free(&v);
}

/* A random block, empty now and then, broken half the time: cut short, its
 * last varint endless, a byte too many, or pairs past its count. */
static void random_block(buf_t *b, sparse_vec_t *v)
{
    random_vec(v, (int)(check_rng() % 3));
    if (check_rng() % 8 == 0) v->n = 0;
    buf_reset(b);
    if (mixed)
        CHECK_EQ_INT((check_rng() % 2 ? storage_sparse_encode_v2 : storage_sparse_encode)(v, b), 0);
    else
        CHECK_EQ_INT(encode(v, b), 0);
    switch (check_rng() % 8) {
    case 0:
        b->len = 1 + check_rng() % (b->len - 1 ? b->len - 1 : 1);
        break;
    case 1:
        if (v->n > 0) break_in_place(b);
        break;
    case 2:
        CHECK_EQ_INT(buf_append_byte(b, 0), 0);
        break;
    case 3:
        CHECK_EQ_INT(buf_append(b, "\x01\x02\x01\x02\x01\x02\x01\x02", 8), 0);
        break;
    default:
        break;
    }
}

/* Two blocks added in step (storage_sparse_add_dense2) leave the vector,
 * its used mark and each block's outcome as adding one after the other
 * does, whichever of them is broken, empty or past the id bound, into an
 * empty vector or one already holding a block. */
static void test_dense_two(void)
{
    sparse_vec_t v;
    storage_sparse_init(&v);
    buf_t a, b, pre;
    buf_init(&a, (size_t)1 << 24);
    buf_init(&b, (size_t)1 << 24);
    buf_init(&pre, (size_t)1 << 24);
    for (int r = 0; r < 2000; r++) {
        random_block(&a, &v);
        random_block(&b, &v);
        size_t max_ids = check_rng() % 4 == 0 ? check_rng() % IDS : IDS;
        int64_t *one = NULL, *two = NULL;
        size_t cap1 = 0, cap2 = 0, used1 = 0, used2 = 0;
        if (check_rng() % 2) { /* a vector already holding a block */
            random_vec(&v, (int)(check_rng() % 3));
            buf_reset(&pre);
            CHECK_EQ_INT(encode(&v, &pre), 0);
            int r1 = storage_sparse_add_dense(pre.data, pre.len, &one, &cap1, &used1, max_ids);
            int r2 = storage_sparse_add_dense(pre.data, pre.len, &two, &cap2, &used2, max_ids);
            CHECK_EQ_INT(r1, r2);
        }
        int ra = storage_sparse_add_dense(a.data, a.len, &one, &cap1, &used1, max_ids);
        int rb = storage_sparse_add_dense(b.data, b.len, &one, &cap1, &used1, max_ids);
        int rcb = -12345;
        int r2 = storage_sparse_add_dense2(a.data, a.len, b.data, b.len, &two, &cap2, &used2,
                                           max_ids, &rcb);
        CHECK_EQ_INT(r2, ra);
        CHECK_EQ_INT(rcb, rb);
        CHECK_EQ_INT(used2, used1);
        int same = 1;
        for (size_t id = 0; id < cap1 || id < cap2; id++)
            same &= (id < cap1 ? one[id] : 0) == (id < cap2 ? two[id] : 0);
        CHECK(same);
        free(one);
        free(two);
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&pre);
    storage_sparse_free(&v);
}

/* Operands of both versions fold together (a window written by format 13
 * that takes new operands), and the sum is written in version 3. */
static void test_fold_mixed(void)
{
    storage_counters_t c;
    memset(&c, 0, sizeof c);
    sparse_vec_t v, d;
    storage_sparse_init(&v);
    storage_sparse_init(&d);
    for (int r = 0; r < 100; r++) {
        buf_t part[4], out;
        const char *parts[4];
        size_t lens[4];
        int64_t want[IDS] = {0}, got[IDS] = {0};
        for (int i = 0; i < 4; i++) {
            random_vec(&v, r % 3);
            buf_init(&part[i], (size_t)1 << 24);
            CHECK_EQ_INT((i % 2 ? storage_sparse_encode_v2 : storage_sparse_encode)(&v, &part[i]),
                         0);
            add_decoded(want, &v);
            parts[i] = (const char *)part[i].data;
            lens[i] = part[i].len;
        }
        buf_init(&out, (size_t)1 << 24);
        CHECK_EQ_INT(storage_fold_sparse(&c, parts, lens, 4, &out), 0);
        CHECK_EQ_INT(out.data[0], SPARSE_VERSION);
        CHECK_EQ_INT(storage_sparse_decode(out.data, out.len, &d), 0);
        add_decoded(got, &d);
        CHECK_EQ_INT(memcmp(got, want, sizeof got), 0);
        for (int i = 0; i < 4; i++)
            buf_free(&part[i]);
        buf_free(&out);
    }
    CHECK_EQ_INT(c.corrupt_operands, 0);
    storage_sparse_free(&v);
    storage_sparse_free(&d);
}

/* v3 round trip of the pairs given: decoded back exactly, added exactly,
 * with the widths expected. */
static void cols_round_trip(size_t n, const uint32_t *id, const int64_t *val, unsigned wi,
                            unsigned wv)
{
    sparse_vec_t v, d;
    storage_sparse_init(&v);
    storage_sparse_init(&d);
    set_vec(&v, n, id, val);
    buf_t b;
    buf_init(&b, (size_t)1 << 24);
    CHECK_EQ_INT(storage_sparse_encode(&v, &b), 0);
    storage_cols_t c;
    CHECK_EQ_INT(storage_cols_parse(b.data, b.len, &c), 0);
    CHECK_EQ_INT(c.n, n);
    if (n > 0) CHECK(c.wi == wi && c.wv == wv && c.first == id[0] && c.last == id[n - 1]);
    CHECK_EQ_INT(storage_sparse_decode(b.data, b.len, &d), 0);
    CHECK_EQ_INT(d.n, n);
    CHECK(n == 0 ||
          (memcmp(d.id, id, n * sizeof *id) == 0 && memcmp(d.val, val, n * sizeof *val) == 0));
    /* the dense addition, where the ids fit a small vector */
    if (n > 0 && id[n - 1] < 1u << 20) {
        int64_t *dense = NULL;
        size_t cap = 0, used = 0;
        CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &dense, &cap, &used, 1u << 20), 0);
        CHECK_EQ_INT(used, id[n - 1] + 1);
        for (size_t i = 0; i < n; i++)
            CHECK(dense[id[i]] == val[i]);
        free(dense);
    }
    buf_free(&b);
    storage_sparse_free(&v);
    storage_sparse_free(&d);
}

/* The edges of version 3: adjacent ids (no gap bytes), gaps of four
 * bytes up to the largest id, values of every width and sign, the
 * extremes of int64, a scale; longer than a decoding chunk. */
static void test_cols_round_trip(void)
{
    enum { N = 1000 };
    static uint32_t id[N];
    static int64_t val[N];
    for (uint32_t i = 0; i < N; i++) {
        id[i] = 7 + i;
        val[i] = 1 + (int64_t)(i % 60);
    }
    cols_round_trip(0, id, val, 0, 1);
    cols_round_trip(1, id, val, 0, 1);
    cols_round_trip(N, id, val, 0, 1); /* all positive: 59 < 256 */
    val[500] = -200;                   /* zigzag 399: two bytes */
    cols_round_trip(N, id, val, 0, 2);
    id[N - 1] = UINT32_MAX; /* one gap of four bytes */
    cols_round_trip(N, id, val, 4, 2);
    val[3] = INT64_MIN;
    val[4] = INT64_MAX;
    cols_round_trip(N, id, val, 4, 8);
    for (uint32_t i = 0; i < N; i++) { /* a common factor, gaps of one byte */
        id[i] = 3 * i + (i > 300 ? 200 : 0);
        val[i] = ((int64_t)(i % 7) - 3) * 10000000 + (i % 7 == 3 ? 10000000 : 0);
    }
    cols_round_trip(N, id, val, 1, 1);
    for (int w = 1; w <= 8; w++) { /* each value width, both signs */
        for (uint32_t i = 0; i < N; i++) {
            id[i] = i * 2;
            int64_t q = (int64_t)(check_rng() >> (64 - (8 * w - 2))); /* zigzag: w bytes */
            val[i] = i % 2 ? -q - 1 : q + 1;
        }
        val[0] = (int64_t)(1ull << (8 * w - 2)); /* zigzag 2^(8w - 1): all w bytes */
        val[1] = 1;                              /* scale 1 */
        cols_round_trip(N, id, val, 1, (unsigned)w);
    }
}

/* A block whose values are all positive stores value / scale - 1 and no
 * sign bit (format 17): 1..256 fit one byte, where zigzag took two from
 * 128 on; one value of another sign keeps the whole block in zigzag. */
static void test_cols_positive(void)
{
    enum { N = 600 };
    static uint32_t id[N];
    static int64_t val[N];
    for (uint32_t i = 0; i < N; i++) {
        id[i] = 5 + 2 * i;
        val[i] = 1 + (int64_t)(i % 256);
    }
    cols_round_trip(N, id, val, 1, 1);
    val[7] = 257; /* 256 stored: two bytes */
    cols_round_trip(N, id, val, 1, 2);
    val[7] = 128;
    for (uint32_t i = 0; i < N; i++) /* a scale: 3 * (1..256) */
        val[i] *= 3;
    cols_round_trip(N, id, val, 1, 1);
    val[9] = -3; /* zigzag of 256 * 3 / 3 needs two bytes */
    cols_round_trip(N, id, val, 1, 2);
    val[9] = INT64_MAX; /* the largest positive value: eight bytes */
    for (uint32_t i = 0; i < N; i++)
        val[i] = i == 9 ? INT64_MAX : 1;
    cols_round_trip(N, id, val, 1, 8);
    /* by hand: ids 10, 11, 14, values 1, 2, 5 (flag bit 3, stored 0, 1, 4) */
    const uint8_t pos[] = {3, 1, 3, 10, 4, 0x19, 0, 2, 0, 1, 4};
    storage_cols_t c;
    CHECK_EQ_INT(storage_cols_parse(pos, sizeof pos, &c), 0);
    CHECK(c.positive == 1 && c.wi == 1 && c.wv == 1);
    uint32_t ids[3];
    int64_t vals[3];
    storage_cols_decode(&c, ids, vals);
    CHECK(ids[0] == 10 && ids[1] == 11 && ids[2] == 14);
    CHECK(vals[0] == 1 && vals[1] == 2 && vals[2] == 5);
    uint8_t bad[sizeof pos];
    memcpy(bad, pos, sizeof bad);
    bad[5] = 0x1d; /* flag and 5-byte gaps */
    CHECK(storage_cols_parse(bad, sizeof bad, &c) != 0);
}

/* A block whose header says one thing and its columns another is corrupt,
 * read or added; a block this test makes by hand (version, scale, n,
 * first, span, widths, columns). */
static int cols_bytes_ok(const uint8_t *p, size_t len)
{
    storage_cols_t c;
    sparse_vec_t d;
    storage_sparse_init(&d);
    int64_t *dense = NULL;
    size_t cap = 0, used = 0;
    int a = storage_cols_parse(p, len, &c), b = storage_sparse_decode(p, len, &d),
        e = storage_sparse_add_dense(p, len, &dense, &cap, &used, IDS);
    CHECK_EQ_INT(a, b);
    if (a != 0)
        CHECK(e != 0);
    else if (c.n == 0 || c.last < IDS)
        CHECK_EQ_INT(e, 0);
    else
        CHECK_EQ_INT(e, ERR_CORRUPT); /* valid, but past the vector's bound */
    if (e != 0) CHECK_EQ_INT(used, 0);
    free(dense);
    storage_sparse_free(&d);
    return a == 0;
}

static void test_cols_corrupt(void)
{
    /* three ids 10, 11, 14 (gaps 0 and 2), values 1, -1, 2 */
    const uint8_t ok[] = {3, 1, 3, 10, 4, 0x11, 0, 2, 2, 1, 4};
    CHECK(cols_bytes_ok(ok, sizeof ok));
    uint8_t b[sizeof ok];
    memcpy(b, ok, sizeof b);
    b[4] = 5; /* span says 15 */
    CHECK(!cols_bytes_ok(b, sizeof b));
    memcpy(b, ok, sizeof b);
    b[4] = 1; /* span 1 for three ids */
    CHECK(!cols_bytes_ok(b, sizeof b));
    memcpy(b, ok, sizeof b);
    b[5] = 0x12; /* gaps of 2 bytes: the length disagrees */
    CHECK(!cols_bytes_ok(b, sizeof b));
    b[5] = 0x15; /* 5-byte gaps */
    CHECK(!cols_bytes_ok(b, sizeof b));
    b[5] = 0x01; /* values of no bytes */
    CHECK(!cols_bytes_ok(b, sizeof b));
    b[5] = 0x91; /* 9-byte values */
    CHECK(!cols_bytes_ok(b, sizeof b));
    memcpy(b, ok, sizeof b);
    b[1] = 0; /* scale 0 */
    CHECK(!cols_bytes_ok(b, sizeof b));
    CHECK(!cols_bytes_ok(ok, sizeof ok - 1));
    CHECK(!cols_bytes_ok(ok, 5)); /* no widths byte */
    const uint8_t empty_tail[] = {3, 1, 0, 0};
    CHECK(!cols_bytes_ok(empty_tail, sizeof empty_tail));
    CHECK(cols_bytes_ok(empty_tail, 3));
    /* ids past 2^32: first + span, and gaps that wrap 32 bits */
    const uint8_t past[] = {3, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0x10, 2};
    CHECK(!cols_bytes_ok(past, sizeof past));
    const uint8_t top[] = {3, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0x10, 2};
    CHECK(cols_bytes_ok(top, sizeof top)); /* id 2^32 - 1: valid, past this vector */
    /* two ids, a 4-byte gap of 2^32 - 1 against a span of 1 (in 32 bits
     * the gap would wrap to the span) */
    const uint8_t wrap[] = {3, 1, 2, 5, 1, 0x14, 0xff, 0xff, 0xff, 0xff, 2, 2};
    CHECK(!cols_bytes_ok(wrap, sizeof wrap));
    /* a random byte changed in random valid blocks: never read out of bounds */
    sparse_vec_t v;
    storage_sparse_init(&v);
    buf_t enc;
    buf_init(&enc, (size_t)1 << 24);
    for (int r = 0; r < 3000; r++) {
        random_vec(&v, r % 3);
        buf_reset(&enc);
        CHECK_EQ_INT(storage_sparse_encode(&v, &enc), 0);
        if (enc.len < 2) continue;
        enc.data[1 + check_rng() % (enc.len - 1)] ^= (uint8_t)(1 + check_rng() % 255);
        cols_bytes_ok(enc.data, enc.len);
    }
    buf_free(&enc);
    storage_sparse_free(&v);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed ? seed : 1;
    for (int e = 0; e < 2; e++) {
        encode = e == 0 ? storage_sparse_encode : storage_sparse_encode_v2;
        test_dense();
        test_dense_empty_block();
        test_dense_two();
        test_fold();
    }
    mixed = 1;
    test_dense_two();
    test_fold_mixed();
    test_cols_round_trip();
    test_cols_positive();
    test_cols_corrupt();
    test_factor();
    return check_exit();
}
