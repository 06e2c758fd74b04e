/* test_storage_sparse_fold.c — storage_fold_sparse (the blocks merge
 * operator's fold) sums its operands exactly whichever way it takes: the
 * dense array (many operands over nearby ids, as a service aggregate's
 * window), or one merge per operand (ids far apart); values that cancel out
 * vanish, a corrupt operand is skipped and counted, one operand re-encodes
 * to itself. The expected sum is built by adding operands one at a time.
 * Prints its seed; argv[1] replays. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "storage/storage_int.h"

#define MAXOPS 80

/* A random operand: n ascending ids from base with the given spread. */
static void random_vec(sparse_vec_t *v, size_t n, uint32_t base, uint32_t spread)
{
    CHECK_EQ_INT(storage_sparse_reserve(v, n), 0);
    v->n = 0;
    uint32_t id = base;
    for (size_t i = 0; i < n; i++) {
        id += 1 + (uint32_t)(check_rng() % spread);
        v->id[v->n] = id;
        int64_t x = (int64_t)(check_rng() % 2000) - 1000;
        v->val[v->n++] = x != 0 ? x * 10000000 : 7;
    }
}

/* Folds nops random operands both ways and compares the encodings. */
static void check_fold(int nops, size_t n, uint32_t spread, int corrupt_at)
{
    buf_t enc[MAXOPS], want, got;
    const char *parts[MAXOPS];
    size_t lens[MAXOPS];
    sparse_vec_t acc, one, tmp;
    storage_sparse_init(&acc);
    storage_sparse_init(&one);
    storage_sparse_init(&tmp);
    for (int i = 0; i < nops; i++) {
        buf_init(&enc[i], BUF_UNLIMITED);
        random_vec(&one, 1 + check_rng() % n, (uint32_t)(check_rng() % 64), spread);
        if (i == 1 && nops > 2) { /* cancels operand 0 exactly where they meet */
            CHECK_EQ_INT(storage_sparse_decode((const uint8_t *)parts[0], lens[0], &one), 0);
            for (size_t k = 0; k < one.n; k++)
                one.val[k] = -one.val[k];
        }
        CHECK_EQ_INT(storage_sparse_encode(&one, &enc[i]), 0);
        if (i == corrupt_at) {
            enc[i].data[0] = 0x7f; /* not a version-2 block */
        } else {
            CHECK_EQ_INT(storage_sparse_add(&acc, &one, &tmp), 0);
        }
        parts[i] = (const char *)enc[i].data;
        lens[i] = enc[i].len;
    }
    buf_init(&want, BUF_UNLIMITED);
    buf_init(&got, BUF_UNLIMITED);
    CHECK_EQ_INT(storage_sparse_encode(&acc, &want), 0);
    storage_counters_t c;
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_fold_sparse(&c, parts, lens, nops, &got), 0);
    CHECK_EQ_INT(got.len, want.len);
    CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
    CHECK_EQ_INT(atomic_load(&c.corrupt_operands), corrupt_at >= 0 ? 1 : 0);
    for (int i = 0; i < nops; i++)
        buf_free(&enc[i]);
    buf_free(&want);
    buf_free(&got);
    storage_sparse_free(&acc);
    storage_sparse_free(&one);
    storage_sparse_free(&tmp);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_storage_sparse_fold seed %llu\n", (unsigned long long)seed);
    for (int round = 0; round < 20; round++) {
        check_fold(64, 300, 4, -1);           /* dense: a service aggregate's window */
        check_fold(16, 50, 2000000, -1);      /* ids far apart: one merge per operand */
        check_fold(1, 300, 4, -1);            /* one operand */
        check_fold(MAXOPS, 200, 8, 5);        /* a corrupt operand among dense ones */
        check_fold(3, 20, 100000000 / 20, 2); /* and among sparse ones */
    }
    return check_exit();
}
