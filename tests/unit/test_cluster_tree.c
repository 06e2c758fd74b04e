/* Unit tests for the fill's hash tree (node/cluster/repair_tree.c, stream
 * protocol 4): two sides holding the same windows agree on the root and on
 * every bucket whatever order they met them in; where windows differ (one
 * missing, one extra, one with another summary hash, one not counted
 * exactly) the descent names exactly the buckets holding those windows, at
 * every fanout; a fanout's buckets add up to the root; the alike buckets'
 * windows and totals are those outside the descent. */
#include "check.h"

#include "node/cluster/repair_int.h"

#define NW 600

typedef struct win {
    uint8_t key[24];
    uint64_t hash;
    int res;
    int64_t total;
} win_t;

static void make(win_t *w, int i)
{
    memset(w->key, 0, sizeof w->key);
    snprintf((char *)w->key, sizeof w->key, "t/%08x/%d", (unsigned)(i * 2654435761u), i % 5);
    w->hash = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    w->res = i % STORAGE_RESOLUTION_COUNT;
    w->total = 10 + i;
}

static void put(repair_tree_t *t, const win_t *w)
{
    repair_tree_add(t, w->key, sizeof w->key, w->hash, w->res, w->total);
}

/* Whether window w's bucket of fanout f holds a window that differs. */
static int bucket_differs(const win_t *w, uint32_t f, const win_t *const *diff, size_t nd)
{
    uint32_t b = repair_tree_leaf(w->key, sizeof w->key) & (f - 1);
    for (size_t i = 0; i < nd; i++)
        if ((repair_tree_leaf(diff[i]->key, sizeof diff[i]->key) & (f - 1)) == b) return 1;
    return 0;
}

static void test_alike_whatever_the_order(void)
{
    static win_t w[NW];
    repair_tree_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    for (int i = 0; i < NW; i++)
        make(&w[i], i);
    for (int i = 0; i < NW; i++) {
        put(a, &w[i]);
        put(b, &w[NW - 1 - i]);
    }
    uint64_t ca = 0, cb = 0, xa = 1;
    CHECK(repair_tree_root(a, &ca, &xa) == repair_tree_root(b, &cb, NULL));
    CHECK_EQ_INT(ca, NW);
    CHECK_EQ_INT(cb, NW);
    CHECK_EQ_INT(xa, 0);
    for (uint32_t f = 1; f <= REPAIR_TREE_LEAVES; f <<= 1) {
        uint64_t d[REPAIR_TREE_LEAVES], sum = 0;
        uint8_t bits[REPAIR_TREE_LEAVES / 8];
        repair_tree_fold(b, f, d, NULL);
        for (uint32_t k = 0; k < f; k++)
            sum += d[k];
        CHECK(sum == repair_tree_root(a, NULL, NULL)); /* a fanout's buckets add up to the root */
        CHECK_EQ_INT(repair_tree_differ(a, d, f, NULL, 0, bits), 0);
        CHECK_EQ_INT(repair_tree_alike_count(a, f, bits), NW);
    }
    free(a);
    free(b);
}

static void test_descent_names_the_windows_that_differ(void)
{
    static win_t w[NW + 1];
    repair_tree_t *mine = calloc(1, sizeof *mine), *theirs = calloc(1, sizeof *theirs);
    for (int i = 0; i <= NW; i++)
        make(&w[i], i);
    /* theirs: every window but 17; mine lacks NW (theirs only), holds 17
     * (mine only), holds 99 with another hash, 300 not counted exactly on
     * both sides */
    const win_t *diff[] = {&w[17], &w[NW], &w[99], &w[300]};
    for (int i = 0; i <= NW; i++) {
        if (i != 17) {
            win_t t = w[i];
            if (i == 300) t.hash = 0;
            put(theirs, &t);
        }
        if (i != NW) {
            win_t m = w[i];
            if (i == 99) m.hash ^= 1;
            if (i == 300) m.hash = 0;
            put(mine, &m);
        }
    }
    CHECK(repair_tree_root(mine, NULL, NULL) != repair_tree_root(theirs, NULL, NULL));
    for (uint32_t f = 1; f <= REPAIR_TREE_LEAVES; f <<= 1) {
        uint64_t d[REPAIR_TREE_LEAVES], x[REPAIR_TREE_LEAVES];
        uint32_t inexact[REPAIR_TREE_LEAVES];
        size_t ni = 0;
        uint8_t bits[REPAIR_TREE_LEAVES / 8];
        repair_tree_fold(theirs, f, d, x);
        for (uint32_t k = 0; k < f; k++)
            if (x[k]) inexact[ni++] = k;
        CHECK_EQ_INT(ni, 1);
        size_t n = repair_tree_differ(mine, d, f, inexact, ni, bits);
        size_t want = 0;
        uint64_t alike = 0;
        int64_t totals[STORAGE_RESOLUTION_COUNT] = {0}, expect[STORAGE_RESOLUTION_COUNT] = {0};
        for (uint32_t k = 0; k < f; k++) { /* a bucket is named iff a differing window is in it */
            int has = 0;
            for (size_t j = 0; j < 4; j++)
                has |= (repair_tree_leaf(diff[j]->key, sizeof diff[j]->key) & (f - 1)) == k;
            want += has;
            CHECK_EQ_INT(bits[k / 8] >> (k % 8) & 1, has);
        }
        CHECK_EQ_INT(n, want);
        for (int i = 0; i < NW; i++) { /* mine's windows: wanted iff their bucket differs */
            int wanted = repair_tree_wanted(bits, (f + 7) / 8, f, w[i].key, sizeof w[i].key);
            CHECK_EQ_INT(wanted, bucket_differs(&w[i], f, diff, 4));
            if (!wanted) {
                alike++;
                expect[w[i].res] += w[i].total;
            }
        }
        for (size_t j = 0; j < 4; j++) /* every differing window is sent */
            CHECK(repair_tree_wanted(bits, (f + 7) / 8, f, diff[j]->key, sizeof diff[j]->key));
        CHECK_EQ_INT(repair_tree_alike_count(mine, f, bits), alike);
        repair_tree_alike_totals(mine, f, bits, totals);
        for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
            CHECK_EQ_INT(totals[r], expect[r]);
    }
    free(mine);
    free(theirs);
}

static void test_fanout(void)
{
    CHECK_EQ_INT(repair_tree_fanout(0, 0), 1);
    CHECK(repair_tree_fanout(100, 100) < repair_tree_fanout(100, 80)); /* more differ: finer */
    CHECK_EQ_INT(repair_tree_fanout(1000000, 0), REPAIR_TREE_LEAVES);
    for (uint32_t f = 0; f <= 2 * REPAIR_TREE_LEAVES; f++)
        CHECK_EQ_INT(repair_tree_fanout_valid(f),
                     f >= 1 && f <= REPAIR_TREE_LEAVES && (f & (f - 1)) == 0);
}

int main(void)
{
    test_alike_whatever_the_order();
    test_descent_names_the_windows_that_differ();
    test_fanout();
    return check_exit();
}
