/* test_storage_window_fold.c — the window fold (storage_fold_windows)
 * puts the memtable operands of every block window that has ended back as
 * one value holding the same sum, and leaves open windows alone.
 *
 * Nine pushes to two series of one service (each window of a series and of
 * the service aggregate gets operands) stay in the memtable as operands.
 * After a fold at the fake clock's now, every ended window reads as one
 * value (one part on a parts scan, storage_scan_window_parts),
 * the day window that has not ended still holds its parts, and every
 * resolution's merged tree and the timeline are those before the fold. A
 * push that comes after the fold adds one operand over the folded sum
 * (counted, then folded again); a window past retention is not folded.
 * Pushes racing with folds count once each; more ended windows of one
 * token than a batch holds are all folded. The background thread
 * (window_fold_interval_seconds) folds by itself, a flushed window's sum
 * with the operands written after it too. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"
#include "common/hash.h"

#define TOKEN 0x0badc0ffee123458ull
#define PUSHES 9
/* the profiles' time: 1 h 5 s before now, so their 10 s to 1 h windows have ended */
#define AGO 3605

static void push(fixture_t *f, labels_t *l, symtab_t *st, int i, int64_t t_s)
{
    fx_push(f->s, l, st, TOKEN, i, t_s * NS, 100 + (uint64_t)i + (uint64_t)t_s * 1000);
}

typedef struct raw {
    int values, parted; /* values, and those handed over as parts */
} raw_t;

static int raw_cb(void *ctx, int64_t window, const char *base, size_t base_len,
                  const char *const *ops, const size_t *op_lens, int nops)
{
    raw_t *r = ctx;
    r->values++;
    r->parted += nops + (base != NULL) >= 2;
    return 0;
}

/* The raw values of series (or aggregate) sid at res, parts unfolded. */
static raw_t scan_raw(fixture_t *f, uint64_t sid, int res)
{
    raw_t r = {0};
    CHECK_EQ_INT(
        storage_scan_window_parts(f->s, "t", TOKEN, sid, res, 0, f->now + 86400, raw_cb, &r), 0);
    return r;
}

static calltree_t *merged(fixture_t *f, uint64_t sid, int res, int aggregate)
{
    storage_merger_t *m = NULL;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(aggregate ? storage_merger_add_aggregate(m, TOKEN, sid, res, 0, f->now + 86400)
                           : storage_merger_add(m, TOKEN, sid, res, 0, f->now + 86400),
                 0);
    calltree_t *t = calltree_new(0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_finish(m, t, &em), 0);
    storage_merger_free(m);
    return t;
}

#define WHO 3 /* series a, series b, the aggregate */

/* Every resolution's merged tree of the two series and of the aggregate. */
static void snapshot(fixture_t *f, const uint64_t ids[WHO],
                     calltree_t *out[WHO][STORAGE_RESOLUTION_COUNT])
{
    for (int w = 0; w < WHO; w++)
        for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++)
            out[w][res] = merged(f, ids[w], res, w == 2);
}

/* a and b hold the same trees (none empty), then both are freed. */
static void check_same(calltree_t *a[WHO][STORAGE_RESOLUTION_COUNT],
                       calltree_t *b[WHO][STORAGE_RESOLUTION_COUNT])
{
    for (int w = 0; w < WHO; w++)
        for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
            CHECK(calltree_root_total(a[w][res]) > 0);
            CHECK_EQ_INT(fx_tree_diff(a[w][res], b[w][res]), 0);
            CHECK_EQ_INT(calltree_node_count(a[w][res]), calltree_node_count(b[w][res]));
            calltree_free(a[w][res]);
            calltree_free(b[w][res]);
        }
}

/* How many raw values of the three hold parts, at 10 s to 1 h (ended) and
 * at 1 d (the day of now: not ended). */
static void count_parted(fixture_t *f, const uint64_t ids[WHO], int *ended, int *open)
{
    *ended = *open = 0;
    for (int w = 0; w < WHO; w++)
        for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
            raw_t r = scan_raw(f, ids[w], res);
            CHECK(r.values > 0 || (res == 0 && w < 2)); /* a series' 10 s: trees only */
            if (res < STORAGE_RESOLUTION_COUNT - 1)
                *ended += r.parted;
            else
                *open += r.parted;
        }
}

static int64_t timeline(fixture_t *f, uint64_t sid, int res)
{
    fx_scan_t sc = {0};
    CHECK_EQ_INT(
        storage_scan_totals(f->s, "t", TOKEN, sid, res, 0, f->now + 86400, fx_total_cb, &sc), 0);
    return sc.total;
}

/* Profile i of the racer (no CHECK: it runs beside the main thread's):
 * rc of its write, its root total in *total. */
static int push_rc(fixture_t *f, labels_t *l, symtab_t *st, int i, int64_t t_s, int64_t *total)
{
    calltree_t *t = calltree_new(0);
    char name[16];
    int rc = t == NULL ? ERR_NOMEM : 0;
    for (int k = 0; k < 4 && rc == 0; k++) {
        uint64_t stack[3];
        snprintf(name, sizeof name, "r%d", k);
        rc = symtab_intern(st, "race", 4, "file.c", 6, &stack[0]);
        if (rc == 0) rc = symtab_intern(st, name, strlen(name), "file.c", 6, &stack[1]);
        snprintf(name, sizeof name, "s%d", (k + i) % 9);
        if (rc == 0) rc = symtab_intern(st, name, strlen(name), "file.c", 6, &stack[2]);
        if (rc == 0) rc = calltree_add_stack(t, stack, 3, 1 + k + i);
    }
    *total = rc == 0 ? calltree_root_total(t) : 0;
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .token = TOKEN, .tree = t};
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = t_s * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, 900000 + (uint64_t)i);
    errmsg_t em = {{0}};
    if (rc == 0) rc = storage_write_profile(f->s, &p, NULL, &em);
    calltree_free(t);
    return rc;
}

typedef struct racer {
    fixture_t *f;
    labels_t *l;
    symtab_t *st;
    int64_t t0, total;
    int failed;
    atomic_int done;
} racer_t;

#define RACE_PUSHES 200

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    for (int i = 0; i < RACE_PUSHES; i++) {
        int64_t t;
        r->failed |= push_rc(r->f, r->l, r->st, i, r->t0 + (i % 4) * 60, &t) != 0;
        r->total += t;
    }
    atomic_store(&r->done, 1);
    return NULL;
}

/* Pushes into ended windows while folds run: every operand counts once
 * (the fold holds the token's lock across its read and its put). */
static void race(fixture_t *f, symtab_t *st, int64_t t0)
{
    racer_t r = {.f = f, .l = fx_labels("svc", "race"), .st = st, .t0 = t0};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, racer_main, &r), 0);
    size_t folded, sum = 0;
    int passes = 0;
    while (!atomic_load(&r.done) && passes < 100000) {
        CHECK_EQ_INT(storage_fold_windows(f->s, f->now, &folded), 0);
        sum += folded;
        passes++;
    }
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(r.failed, 0);
    CHECK_EQ_INT(storage_fold_windows(f->s, f->now, &folded), 0);
    printf("race: %d passes folded %zu windows meanwhile\n", passes, sum);
    uint64_t id = labels_hash(r.l);
    for (int res = 1; res < STORAGE_RESOLUTION_COUNT; res++) {
        calltree_t *t = merged(f, id, res, 0);
        CHECK_EQ_INT(calltree_root_total(t), r.total);
        CHECK_EQ_INT(timeline(f, id, res), r.total);
        calltree_free(t);
        if (res < STORAGE_RESOLUTION_COUNT - 1) CHECK_EQ_INT(scan_raw(f, id, res).parted, 0);
    }
    labels_free(r.l);
}

/* More ended windows of one token than one batch holds: all folded. */
static void many(fixture_t *f, symtab_t *st, int64_t t0)
{
    labels_t *l = fx_labels("svc", "many");
    uint64_t id = labels_hash(l);
    for (int k = 0; k < 300; k++) {
        int64_t t;
        CHECK_EQ_INT(push_rc(f, l, st, 1000 + 2 * k, t0 - k * 60, &t), 0);
        CHECK_EQ_INT(push_rc(f, l, st, 1001 + 2 * k, t0 - k * 60, &t), 0);
    }
    CHECK_EQ_INT(scan_raw(f, id, 1).parted, 300);
    size_t folded;
    CHECK_EQ_INT(storage_fold_windows(f->s, f->now, &folded), 0);
    CHECK(folded >= 300);
    CHECK_EQ_INT(scan_raw(f, id, 1).parted, 0);
    CHECK_EQ_INT(scan_raw(f, id, 2).parted, 0);
    labels_free(l);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.now = f.now / 86400 * 86400 + 43200; /* noon: the pushes' day has not ended */
    f.opts.window_successive_merges = 0;   /* every push stays an operand */
    f.opts.aggregate_anchors = 1;          /* a is the anchor, b goes into the aggregate */
    if (fx_reopen(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *la = fx_labels("svc", "a"), *lb = fx_labels("svc", "b");
    uint64_t ids[WHO] = {
        labels_hash(la), labels_hash(lb),
        storage_aggregate_id("svc", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "")};
    int64_t t0 = (f.now - AGO) / 3600 * 3600 + 5; /* one 10 s window of the hour before */
    for (int i = 0; i < PUSHES; i++) {
        push(&f, la, st, i, t0);
        push(&f, lb, st, i + PUSHES, t0);
    }
    int ended, open;
    count_parted(&f, ids, &ended, &open);
    /* 1 min, 10 min and 1 h of a and b, and 10 s to 1 h of the aggregate
     * (a is its anchor: it holds b's); the day of all three */
    CHECK_EQ_INT(ended, 10);
    CHECK_EQ_INT(open, 3);
    calltree_t *before[WHO][STORAGE_RESOLUTION_COUNT], *after[WHO][STORAGE_RESOLUTION_COUNT];
    int64_t total_before = timeline(&f, ids[0], 2);
    snapshot(&f, ids, before);

    size_t folded = 0;
    storage_stats_t stats;
    CHECK_EQ_INT(storage_fold_windows(f.s, f.now, &folded), 0);
    CHECK_EQ_INT(folded, 10);
    storage_stats(f.s, &stats);
    CHECK_EQ_INT(stats.folded_windows, folded);
    count_parted(&f, ids, &ended, &open);
    CHECK_EQ_INT(ended, 0); /* every ended window: one value */
    CHECK_EQ_INT(open, 3);  /* the day's: still its parts */
    snapshot(&f, ids, after);
    check_same(before, after);
    CHECK_EQ_INT(timeline(&f, ids[0], 2), total_before);
    CHECK_EQ_INT(storage_fold_windows(f.s, f.now, &folded), 0);
    CHECK_EQ_INT(folded, 0); /* nothing left to fold */

    /* a late push to a folded window: one operand over the sum, then folded */
    snapshot(&f, ids, before);
    push(&f, la, st, 2 * PUSHES, t0);
    raw_t r = scan_raw(&f, ids[0], 1);
    CHECK_EQ_INT(r.parted, 1);
    snapshot(&f, ids, after);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) /* a grew, b did not */
        CHECK(calltree_root_total(after[0][res]) > calltree_root_total(before[0][res]));
    CHECK_EQ_INT(calltree_root_total(after[1][1]), calltree_root_total(before[1][1]));
    for (int w = 0; w < WHO; w++)
        for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
            calltree_free(before[w][res]);
            calltree_free(after[w][res]);
        }
    snapshot(&f, ids, before);
    CHECK_EQ_INT(storage_fold_windows(f.s, f.now, &folded), 0);
    CHECK(folded >= 1);
    CHECK_EQ_INT(scan_raw(&f, ids[0], 1).parted, 0);
    snapshot(&f, ids, after);
    check_same(before, after);

    race(&f, st, t0);
    many(&f, st, t0);

    /* past retention: not folded (the compaction filter drops it) */
    labels_t *lc = fx_labels("svc", "c");
    uint64_t idc = labels_hash(lc);
    push(&f, lc, st, 3 * PUSHES, t0);
    push(&f, lc, st, 3 * PUSHES + 1, t0);
    CHECK_EQ_INT(scan_raw(&f, idc, 0).parted, 0); /* flagged trees: no 10 s operand */
    CHECK_EQ_INT(scan_raw(&f, idc, 1).parted, 1);
    f.now += 8 * 86400; /* past the 1 min windows' default retention (7 d) */
    CHECK_EQ_INT(storage_fold_windows(f.s, f.now, &folded), 0);
    f.now -= 8 * 86400;
    CHECK_EQ_INT(scan_raw(&f, idc, 1).parted, 1);

    /* the background thread folds by itself */
    f.opts.window_fold_interval_seconds = 1;
    if (fx_reopen(&f) != 0) return 1;
    push(&f, lc, st, 3 * PUSHES + 2, t0);
    push(&f, lc, st, 3 * PUSHES + 3, t0);
    CHECK_EQ_INT(scan_raw(&f, idc, 2).parted, 1); /* the file's sum and two operands */
    for (int tries = 0; tries < 200 && scan_raw(&f, idc, 2).parted != 0; tries++)
        usleep(50 * 1000);
    CHECK_EQ_INT(scan_raw(&f, idc, 2).parted, 0);
    storage_stats(f.s, &stats);
    CHECK(stats.folded_windows >= 1);

    labels_free(la);
    labels_free(lb);
    labels_free(lc);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
