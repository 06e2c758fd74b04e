/* test_query_plan.c — the query plan covers every selected 10 s window exactly
 * once, uses coarse windows inside the range, respects alignment, and widens
 * to a coarser grid where retention dropped the fine windows. Random ranges
 * print their seed; pass a seed as argv[1] to replay. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/query.h"
#include "tests/unit/check.h"

/* Checks the plan covers [from_s, until_s) on the 10 s grid exactly once. */
static void check_cover(const query_plan_t *pl, int64_t from_s, int64_t until_s)
{
    int64_t n10 = (until_s - from_s) / 10;
    unsigned char *seen = calloc((size_t)n10 + 1, 1);
    for (size_t k = 0; k < pl->n; k++) {
        const query_plan_piece_t *pc = &pl->piece[k];
        int64_t w = storage_resolutions[pc->res];
        CHECK(pc->from_s % w == 0);
        CHECK(pc->until_s % w == 0);
        CHECK(pc->from_s < pc->until_s);
        CHECK(pc->from_s >= from_s && pc->until_s <= until_s);
        for (int64_t t = pc->from_s; t < pc->until_s && t >= from_s && t < until_s; t += 10)
            seen[(t - from_s) / 10]++;
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < n10; i++)
        bad += seen[i] != 1;
    if (bad)
        fprintf(stderr, "plan [%lld, %lld): %lld windows not covered exactly once\n",
                (long long)from_s, (long long)until_s, (long long)bad);
    CHECK_EQ_INT(bad, 0);
    free(seen);
}

/* Greedy optimality: no two adjacent windows of one resolution could be one
 * window of the next resolution. */
static void check_coarse(const query_plan_t *pl)
{
    for (size_t k = 0; k < pl->n; k++) {
        const query_plan_piece_t *pc = &pl->piece[k];
        if (pc->res + 1 >= STORAGE_RESOLUTION_COUNT) continue;
        int64_t W = storage_resolutions[pc->res + 1];
        int64_t first = (pc->from_s + W - 1) / W * W;
        CHECK(!(first + W <= pc->until_s)); /* a whole coarser window fits: not coarsest */
    }
}

static void test_examples(void)
{
    query_plan_t pl;
    /* one aligned day: one window */
    query_plan_make(86400000LL * 100, 86400000LL * 101, 86400000LL * 101, NULL, &pl);
    CHECK_EQ_INT(pl.n, 1);
    CHECK_EQ_INT(pl.piece[0].res, 4);
    /* 3 days and a bit on each side: 10 s .. 1 d .. 10 s */
    int64_t from = 86400LL * 100 - 3600 - 600 - 60 - 10,
            until = 86400LL * 103 + 3600 + 600 + 60 + 10;
    query_plan_make(from * 1000, until * 1000, until * 1000, NULL, &pl);
    check_cover(&pl, from, until);
    check_coarse(&pl);
    CHECK_EQ_INT(pl.n, 9);
    CHECK_EQ_INT(pl.piece[4].res, 4);
    CHECK_EQ_INT(pl.piece[4].until_s - pl.piece[4].from_s, 3 * 86400);
    CHECK_EQ_INT(pl.piece[0].res, 0);
    CHECK_EQ_INT(pl.piece[8].res, 0);
    /* the 10 s grid rule: windows whose start is in [from, until) */
    query_plan_make(1000001, 1010000, 2000000, NULL, &pl); /* [1000.001 s, 1010 s) */
    CHECK_EQ_INT(pl.from_s, 1010);
    CHECK_EQ_INT(pl.until_s, 1010);
    CHECK_EQ_INT(pl.n, 0);
    query_plan_make(1000000, 1010001, 2000000, NULL, &pl); /* [1000 s, 1010.001 s) */
    CHECK_EQ_INT(pl.from_s, 1000);
    CHECK_EQ_INT(pl.until_s, 1020);
    CHECK_EQ_INT(pl.n, 1);
    /* adjacent ranges partition windows */
    query_plan_t a, b;
    query_plan_make(1234567, 2345678, 9000000, NULL, &a);
    query_plan_make(2345678, 3456789, 9000000, NULL, &b);
    CHECK_EQ_INT(a.until_s, b.from_s);
}

static void test_retention(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        lim.retention_seconds[i] = 0;
    lim.retention_seconds[0] = 86400;     /* 10 s windows kept 1 day */
    lim.retention_seconds[1] = 7 * 86400; /* 1 min windows kept 7 days */
    int64_t now = 86400LL * 1000;         /* day 1000 */
    query_plan_t pl;
    /* 2 days ago, unaligned: widened to the minute grid, no 10 s windows */
    int64_t from = now - 2 * 86400 + 25, until = now - 2 * 86400 + 3600 + 35;
    query_plan_make(from * 1000, until * 1000, now * 1000, &lim, &pl);
    CHECK_EQ_INT(pl.min_res, 1);
    CHECK_EQ_INT(pl.from_s, now - 2 * 86400);
    CHECK_EQ_INT(pl.until_s, now - 2 * 86400 + 3660);
    for (size_t k = 0; k < pl.n; k++)
        CHECK(pl.piece[k].res >= 1);
    check_cover(&pl, pl.from_s, pl.until_s);
    /* recent: unchanged */
    query_plan_make((now - 3600 + 5) * 1000, now * 1000, now * 1000, &lim, &pl);
    CHECK_EQ_INT(pl.min_res, 0);
    CHECK_EQ_INT(pl.from_s, now - 3600 + 10);
}

static void test_random(uint64_t seed)
{
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_plan random seed %llu\n", (unsigned long long)seed);
    for (int i = 0; i < 300; i++) {
        int64_t from_ms = (int64_t)(check_rng() % (86400000ULL * 20000));
        int64_t len_ms = 1 + (int64_t)(check_rng() % (i % 3 == 0 ? 86400000ULL * 10 : 7200000ULL));
        query_plan_t pl;
        query_plan_make(from_ms, from_ms + len_ms, from_ms + len_ms, NULL, &pl);
        int64_t f = (from_ms + 9999) / 10000 * 10, u = (from_ms + len_ms + 9999) / 10000 * 10;
        CHECK_EQ_INT(pl.from_s, f);
        CHECK_EQ_INT(pl.until_s, u);
        CHECK(pl.n <= 2 * STORAGE_RESOLUTION_COUNT - 1);
        check_cover(&pl, f, u);
        check_coarse(&pl);
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    test_examples();
    test_retention();
    test_random(seed);
    return check_exit();
}
