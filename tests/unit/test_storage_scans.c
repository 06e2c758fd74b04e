/* test_storage_scans.c — scans sharing their iterators (storage_scans_t):
 * over several series of one token whose keys lie side by side, a series'
 * window profiles and its profile-tree spans read through one shared,
 * unbounded iterator per column family are exactly what the scans with an
 * iterator of their own read, in any order of the series (the last first,
 * a series twice, one with nothing in the range), never another series'
 * entries. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "storage/storage_int.h"

#define TOKEN 0x4444444444444444ull
#define NSER 4
#define NPUSH 12

/* What a scan met, as a checksum and a count. */
typedef struct seen {
    uint64_t sum;
    size_t n;
} seen_t;

static int seen_tree(void *ctx, int64_t time_ns, const uint8_t id[16], int64_t total, int tree_kept,
                     int piece)
{
    seen_t *s = ctx;
    uint64_t h = (uint64_t)time_ns * 31 + (uint64_t)total * 7 + (uint64_t)tree_kept + 2u * piece;
    for (int i = 0; i < 16; i++)
        h = h * 131 + id[i];
    s->sum += h;
    s->n++;
    return 0;
}

static int seen_window(void *ctx, const storage_window_profiles_t *w)
{
    seen_t *s = ctx;
    s->sum += (uint64_t)w->window * 17 + (uint64_t)w->count * 5 + (uint64_t)w->exact;
    s->n++;
    return 0;
}

/* Series i's spans (every other 10 s window of the range) and windows. */
static void scan_one(fixture_t *f, storage_scans_t *x, const labels_t *l, seen_t *trees,
                     seen_t *windows)
{
    int64_t lo[NPUSH], hi[NPUSH];
    size_t n = 0;
    for (int64_t t = f->now - 600; t < f->now; t += 20) {
        if (n == NPUSH) break;
        lo[n] = t;
        hi[n++] = t + 10;
    }
    uint64_t id = labels_hash(l);
    *trees = (seen_t){0};
    *windows = (seen_t){0};
    if (x == NULL) {
        CHECK_EQ_INT(
            storage_scan_profile_trees_spans(f->s, "t", TOKEN, id, lo, hi, n, seen_tree, trees), 0);
        CHECK_EQ_INT(storage_scan_window_profiles(f->s, "t", TOKEN, id, 0, f->now - 600, f->now,
                                                  seen_window, windows),
                     0);
        return;
    }
    CHECK_EQ_INT(storage_scans_profile_trees_spans(x, "t", TOKEN, id, lo, hi, n, seen_tree, trees),
                 0);
    CHECK_EQ_INT(storage_scans_window_profiles(x, "t", TOKEN, id, 0, f->now - 600, f->now,
                                               seen_window, windows),
                 0);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *ls[NSER + 1];
    char env[16];
    for (int i = 0; i <= NSER; i++) {
        snprintf(env, sizeof env, "e%d", i);
        ls[i] = fx_labels("scans", env);
    }
    /* series 0..NSER-1 pushed every 10 s (so each span finds one and the
     * next series' keys follow at once); series NSER never */
    for (int i = 0; i < NSER; i++)
        for (int k = 0; k < 2 * NPUSH; k++)
            fx_push(f.s, ls[i], st, TOKEN, k % 5, (f.now - 600 + 10 * k + 1) * NS,
                    (uint64_t)(1000 * i + k + 1));
    seen_t want_t[NSER + 1], want_w[NSER + 1];
    for (int i = 0; i <= NSER; i++) {
        scan_one(&f, NULL, ls[i], &want_t[i], &want_w[i]);
        CHECK_EQ_INT(want_t[i].n, i < NSER ? NPUSH : 0);
        CHECK(i == NSER || want_w[i].n > 0);
    }
    static const int orders[][7] = {
        {0, 1, 2, 3, 4, -1}, {4, 3, 2, 1, 0, -1}, {2, 2, 0, 4, 3, 1, -1}, {3, 0, -1}};
    for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
        storage_scans_t *x = NULL;
        CHECK_EQ_INT(storage_scans_open(f.s, &x), 0);
        for (int k = 0; orders[o][k] >= 0; k++) {
            int i = orders[o][k];
            seen_t t, w;
            scan_one(&f, x, ls[i], &t, &w);
            CHECK(t.n == want_t[i].n && t.sum == want_t[i].sum);
            CHECK(w.n == want_w[i].n && w.sum == want_w[i].sum);
        }
        storage_scans_close(x);
    }
    for (int i = 0; i <= NSER; i++)
        labels_free(ls[i]);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
