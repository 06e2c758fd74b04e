/* test_storage_sparse.c — sparse blocks (storage/sparse.c) added straight
 * into a dense vector (storage_sparse_add_dense, the query merger's path)
 * must give what decoding and adding gives, and a corrupt block must add
 * nothing, wherever it breaks; folding merge operands (storage_fold_sparse)
 * must sum them exactly, one operand or many. Prints its seed; pass a seed
 * as argv[1] to replay. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/storage_int.h"
#include "tests/unit/check.h"

#define IDS 5000

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
    for (int r = 0; r < 400; r++) {
        random_vec(&v, r % 2);
        buf_reset(&b);
        CHECK_EQ_INT(storage_sparse_encode(&v, &b), 0);
        CHECK_EQ_INT(storage_sparse_decode(b.data, b.len, &d), 0);
        add_decoded(want, &d);
        for (size_t i = 0; i < d.n; i++) /* one past the largest id added so far */
            want_used = d.id[i] >= want_used ? d.id[i] + 1 : want_used;
        CHECK_EQ_INT(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS), 0);
        CHECK_EQ_INT(used, want_used);
        /* the same block broken: cut short, one byte changed, a byte too many */
        size_t cut = b.len > 1 ? 1 + check_rng() % (b.len - 1) : 0;
        CHECK(storage_sparse_add_dense(b.data, cut, &val, &cap, &used, IDS) != 0);
        uint8_t keep = b.data[b.len - 1];
        b.data[b.len - 1] = 0x80; /* the last varint never ends */
        CHECK(storage_sparse_add_dense(b.data, b.len, &val, &cap, &used, IDS) != 0);
        b.data[b.len - 1] = keep;
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
            CHECK_EQ_INT(storage_sparse_encode(&v, &part[i]), 0);
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

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed ? seed : 1;
    test_dense();
    test_fold();
    return check_exit();
}
