/* Unit tests for streaming whole windows (storage/stream*.c): a source's
 * windows as residuals (the block minus the kept trees of the profiles it
 * names; profiles past profile retention stay in the residual; a profile
 * whose tree was not kept is named as untreed), a receiver that already
 * holds some of the profiles ends with exactly the source's windows at
 * every resolution; storing again adds nothing (markers); a stream cut
 * short (a crash of the receiver, also between the fetch of a window's
 * profiles and its residual) and resumed from the start is exact; an
 * untreed profile recorded by the stream is not counted again by a later
 * write of it; one over max_profile_tree_bytes written live into a range
 * being received (after its clear) keeps its tree there, so the stream
 * takes it off the residual and the receiver's flame graph is the
 * source's node by node, and once received such a tree is not kept; so
 * does a backfilled one (past profile_retention) written live there;
 * span trees are united by profile id, also with live writes during the
 * stream (one between the source's read and the merge stays, a late one
 * counts once); the per-resolution sums the stream check
 * compares agree after a stream, and differ when the receiver held other
 * data of the window; a receiver that held an old copy of the range and
 * clears it first (storage_range_clear) ends exact, markers and span trees
 * included, and data of other tokens stays; a scan reads at one snapshot
 * (a profile written from its own callback is in none of its windows);
 * scaled profile trees (a series stored as a factor of another) come off
 * residuals on both sides like plain ones, and one whose base compaction
 * dropped first (past profile retention) does not stop a stream; trees
 * kept in no block (format 11), mixed with one in the block, past profile
 * retention but not their 10 s window's (kept, read and streamed in the
 * residual) or the other way round, leave source and receiver exact; a
 * window whose profile lists pass stream_window_max_profiles is refused
 * on the source, never handed with a list cut short; a fill's window
 * (stored only where the receiver holds none) that a write reached between
 * the fill's look and its store stays out, the write counted once; the
 * receiver's windows count their profiles (window_profiles) as the
 * source's do. */
#include "test_storage_fixture.h"

#define T0 1700000000LL
#define FROM (T0 - 200000)
#define UNTIL (T0 + 200000)
#define NPROF 5
#define REPAIR_KEY_MAX 256
/* a listed window_profiles value of n ids: its header and the ids */
#define WPROF_LEN(n) (WPROF_HEADER_LEN + STORAGE_WPROF_ID_LEN * (n))

static symtab_t *ST;
static calltree_t *TREES[NPROF + 1];
static const int64_t TIMES[NPROF + 1] = {0, T0 - 7200, T0 - 100, T0 - 95, T0 - 50, T0 - 40};

static calltree_t *small_tree(int i)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, ST, "main;a;b", 10 + i);
    fx_add(t, ST, "main;c", i);
    return t;
}

static calltree_t *big_tree(void)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int k = 0; k < 60; k++) {
        snprintf(stack, sizeof stack, "main;big%d;leaf%d", k % 7, k);
        fx_add(t, ST, stack, 3 + k);
    }
    return t;
}

static void write_id(fixture_t *f, const labels_t *l, int id, size_t *written)
{
    CHECK_EQ_INT(fx_write(f->s, "st", l, TREES[id], ST, (uint64_t)id, TIMES[id] * NS, written), 0);
}

static int open_store(fixture_t *f)
{
    if (fx_init(f) != 0) return -1;
    f->opts.profile_retention_seconds = 3600;
    f->opts.max_profile_tree_bytes = 64;
    f->now = T0;
    return fx_reopen(f);
}

/* ---- the receiver side of a stream, as the cluster does it */

typedef struct rx {
    fixture_t *to;
    const labels_t *l;
    int stored, seen, stop_after, fetch_then_stop;
    int saw_old, saw_pair, saw_untreed; /* residual checks at res 0 */
} rx_t;

static int holds(storage_t *s, uint64_t token, uint64_t series, const storage_stream_profile_t *p)
{
    storage_seen_entry_t e = {"st", token, series, {0}, p->time_ns};
    memcpy(e.profile_id, p->profile_id, 16);
    int h = storage_seen_has(s, &e);
    return h != 0 ? h : storage_ptree_has(s, &e);
}

static void check_residual(rx_t *x, const storage_stream_window_t *w)
{
    if (w->res != 0) return;
    if (w->window_s == (T0 - 7200) / 10 * 10) { /* tree past retention: all in the residual */
        CHECK_EQ_INT(w->nkept, 0);
        CHECK_EQ_INT(w->nuntreed, 1); /* its seen entry is still there: named, to be recorded */
        CHECK_EQ_INT(w->total, calltree_root_total(TREES[1]));
        CHECK_EQ_INT(calltree_root_total(w->residual), calltree_root_total(TREES[1]));
        x->saw_old = 1;
    } else if (w->window_s == (T0 - 100) / 10 * 10) { /* two kept trees: nothing left */
        CHECK_EQ_INT(w->nkept, 2);
        CHECK_EQ_INT(w->total, 0);
        CHECK_EQ_INT(calltree_root_total(w->residual), 0);
        x->saw_pair = 1;
    } else if (w->window_s == (T0 - 50) / 10 * 10) { /* not kept: residual and untreed */
        CHECK_EQ_INT(w->nkept, 0);
        CHECK_EQ_INT(w->nuntreed, 1);
        CHECK_EQ_INT(w->total, calltree_root_total(TREES[4]));
        x->saw_untreed = 1;
    }
}

static int rx_window(void *ctx, const storage_stream_window_t *w)
{
    rx_t *x = ctx;
    check_residual(x, w);
    x->seen++;
    for (size_t i = 0; i < w->nkept; i++) { /* the fetch of what the receiver lacks */
        if (holds(x->to->s, w->token, w->series_id, &w->kept[i]) == 1) continue;
        int id = w->kept[i].profile_id[15];
        CHECK(id >= 1 && id <= NPROF);
        write_id(x->to, x->l, id, NULL);
    }
    if (x->fetch_then_stop && x->seen == x->fetch_then_stop) return 1; /* crash before the store */
    int stored = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(x->to->s, w, x->l, ST, &stored, &em), 0);
    x->stored += stored;
    if (x->stop_after && x->stored == x->stop_after) return 1;
    return 0;
}

static rx_t stream(fixture_t *from, fixture_t *to, const labels_t *l, int stop_after,
                   int fetch_then_stop)
{
    rx_t x = {.to = to, .l = l, .stop_after = stop_after, .fetch_then_stop = fetch_then_stop};
    int rc = storage_stream_scan(from->s, 0, UINT64_MAX, NULL, 0, rx_window, &x);
    CHECK_EQ_INT(rc, stop_after || fetch_then_stop ? 1 : 0);
    return x;
}

static void check_equal(fixture_t *a, fixture_t *b, const labels_t *l, int blocks)
{
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
        int wa = 0, wb = 0;
        CHECK_EQ_INT(fx_totals(b->s, "st", l, res, FROM, UNTIL, &wb),
                     fx_totals(a->s, "st", l, res, FROM, UNTIL, &wa));
        if (!blocks) continue;
        CHECK_EQ_INT(fx_block_total(b->s, "st", l, res, FROM, UNTIL, &wb),
                     fx_block_total(a->s, "st", l, res, FROM, UNTIL, &wa));
        CHECK_EQ_INT(wb, wa);
    }
}

/* Whether the flame graphs of a and b at res are equal node by node: b's
 * selves taken off a copy of a leave nothing. */
static void check_same_flame(fixture_t *a, fixture_t *b, const labels_t *l, int res)
{
    fx_scan_t sa = fx_blocks(a->s, "st", l, res, FROM, UNTIL);
    fx_scan_t sb = fx_blocks(b->s, "st", l, res, FROM, UNTIL);
    size_t n = calltree_node_count(sb.acc);
    const calltree_node_t *nb = calltree_nodes(sb.acc);
    const int64_t *nbs = calltree_selves(sb.acc);
    uint32_t *map = calloc(n ? n : 1, sizeof *map);
    CHECK(map != NULL);
    for (uint32_t i = 1; map != NULL && i < n; i++) { /* a parent precedes its children */
        CHECK_EQ_INT(calltree_child(sa.acc, map[nb[i].parent], calltree_sym(sb.acc, i), &map[i]),
                     0);
        calltree_add_self(sa.acc, map[i], -nbs[i]);
    }
    const int64_t *na = calltree_selves(sa.acc);
    int64_t off = 0;
    for (size_t i = 0; i < calltree_node_count(sa.acc); i++)
        off += na[i] < 0 ? -na[i] : na[i];
    CHECK_EQ_INT(off, 0);
    CHECK(calltree_root_total(sb.acc) > 0);
    free(map);
    calltree_free(sa.acc);
    calltree_free(sb.acc);
}

static int64_t pushed_total(void)
{
    int64_t sum = 0;
    for (int i = 1; i <= NPROF; i++)
        sum += calltree_root_total(TREES[i]);
    return sum;
}

/* The window profiles (format 14) of every window of b at every
 * resolution, as a's: all counted exactly, the same counts, hashes and ids. */
typedef struct wp_list {
    int n, exact;
    int64_t count[64];
    uint64_t hash[64];
    size_t nids[64];
    uint8_t ids[64][STORAGE_WPROF_ID_LEN * 8];
} wp_list_t;

static int wp_fn(void *ctx, const storage_window_profiles_t *w)
{
    wp_list_t *x = ctx;
    if (x->n == 64) return 0;
    x->exact += w->exact;
    x->count[x->n] = w->count;
    x->hash[x->n] = w->id_hash;
    x->nids[x->n] = w->nids;
    if (w->nids <= 8) memcpy(x->ids[x->n], w->ids, STORAGE_WPROF_ID_LEN * w->nids);
    x->n++;
    return 0;
}

static void check_counts(fixture_t *a, fixture_t *b, const labels_t *l)
{
    uint64_t id = labels_hash(l);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
        wp_list_t *x = calloc(2, sizeof *x);
        CHECK(x != NULL);
        if (x == NULL) return;
        CHECK_EQ_INT(
            storage_scan_window_profiles(a->s, "st", id >> 1, id, res, FROM, UNTIL, wp_fn, &x[0]),
            0);
        CHECK_EQ_INT(
            storage_scan_window_profiles(b->s, "st", id >> 1, id, res, FROM, UNTIL, wp_fn, &x[1]),
            0);
        CHECK(x[0].n > 0);
        CHECK_EQ_INT(x[0].exact, x[0].n);
        CHECK_EQ_INT(x[1].n, x[0].n);
        CHECK_EQ_INT(x[1].exact, x[0].exact);
        for (int i = 0; i < x[0].n && i < x[1].n; i++) {
            CHECK_EQ_INT(x[1].count[i], x[0].count[i]);
            CHECK(x[1].hash[i] == x[0].hash[i]);
            CHECK_EQ_INT(x[1].nids[i], x[0].nids[i]);
            CHECK(memcmp(x[1].ids[i], x[0].ids[i], sizeof x[0].ids[i]) == 0);
        }
        free(x);
    }
}

/* A receiver holding profile 2 already; residuals as expected; exact; a
 * second stream stores nothing; a later write of the untreed one is
 * skipped. */
static void test_exact_and_idempotent(fixture_t *a, const labels_t *l)
{
    fixture_t b;
    if (open_store(&b) != 0) return;
    write_id(&b, l, 2, NULL); /* a live write that reached the receiver */
    rx_t x = stream(a, &b, l, 0, 0);
    CHECK(x.saw_old && x.saw_pair && x.saw_untreed);
    CHECK(x.stored > 0);
    check_equal(a, &b, l, 1);
    check_counts(a, &b, l); /* the windows count their profiles there too */
    CHECK_EQ_INT(fx_totals(b.s, "st", l, 4, FROM, UNTIL, NULL), pushed_total());
    int64_t sa[STORAGE_RESOLUTION_COUNT], sb[STORAGE_RESOLUTION_COUNT];
    CHECK_EQ_INT(storage_stream_sums(a->s, 0, UINT64_MAX, UNTIL, sa), 0);
    CHECK_EQ_INT(storage_stream_sums(b.s, 0, UINT64_MAX, UNTIL, sb), 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* what the stream check compares */
        CHECK_EQ_INT(sb[r], sa[r]);
    CHECK_EQ_INT(sa[0], pushed_total());
    CHECK_EQ_INT(storage_stream_sums(a->s, 0, UINT64_MAX, T0 - 7000, sa), 0);
    CHECK_EQ_INT(sa[0], calltree_root_total(TREES[1])); /* only windows ending by then */
    rx_t again = stream(a, &b, l, 0, 0);
    CHECK_EQ_INT(again.stored, 0);
    CHECK(fx_reopen(&b) == 0);
    check_equal(a, &b, l, 1);
    size_t written = 1;
    write_id(&b, l, 4, &written); /* the untreed profile delivered again: counted once */
    CHECK_EQ_INT(written, 0);
    write_id(&b, l, 1, &written); /* so is the one whose tree went past retention */
    CHECK_EQ_INT(written, 0);
    check_equal(a, &b, l, 1);
    check_counts(a, &b, l);
    fx_done(&b);
}

static int sized_window(void *ctx, const storage_stream_window_t *w)
{
    rx_t *x = ctx;
    int64_t t = -1;
    storage_t *to = x->to->s;
    CHECK_EQ_INT(
        storage_window_total(to, w->tenant, w->token, w->series_id, w->res, w->window_s, &t), 0);
    CHECK_EQ_INT(t, 0);
    if (w->nkept > 0) return 0; /* stored after a fetch: test_exact_and_idempotent */
    int stored = 0;
    size_t bytes = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store_sized(to, w, x->l, ST, &stored, &bytes, &em), 0);
    CHECK(stored == 1 && bytes > 0);
    CHECK_EQ_INT(
        storage_window_total(to, w->tenant, w->token, w->series_id, w->res, w->window_s, &t), 1);
    CHECK_EQ_INT(t, w->total); /* held now, as the source holds it */
    CHECK_EQ_INT(storage_stream_store_sized(to, w, x->l, ST, &stored, &bytes, &em), 0);
    CHECK(stored == 0 && bytes == 0); /* marked: nothing written, nothing counted */
    x->stored++;
    return 0;
}

/* What the window check's fill reads and counts: a window's total, known
 * to be absent before it is stored (storage_window_total), and the bytes a
 * stored window's batch took (storage_stream_store_sized). */
static void test_window_total_and_bytes(fixture_t *a, const labels_t *l)
{
    fixture_t b;
    if (open_store(&b) != 0) return;
    rx_t x = {.to = &b, .l = l};
    CHECK_EQ_INT(storage_stream_scan(a->s, 0, UINT64_MAX, NULL, 0, sized_window, &x), 0);
    CHECK(x.stored > 0);
    int64_t t = 0;
    CHECK_EQ_INT(storage_window_total(b.s, "st", 0, 0, STORAGE_RESOLUTION_COUNT, 0, &t),
                 ERR_INVALID_ARGUMENT);
    fx_done(&b);
}

/* A fill's store (only_absent) with a write injected between the fill's
 * look (the window absent here) and its store: profile 1 lands in its
 * window on the receiver as a late replicated write, and the source's copy
 * of that window, as an old one no profile id names (untreed left out),
 * holds it too. The copy must stay out: stored, it would count profile 1
 * twice. A window nothing wrote to meanwhile is stored as before. */
static int raced_window(void *ctx, const storage_stream_window_t *w)
{
    rx_t *x = ctx;
    int old = w->window_s == (T0 - 7200) / 10 * 10, lone = w->window_s == (T0 - 50) / 10 * 10;
    if (w->res != 0 || !(old || lone)) return 0;
    storage_t *to = x->to->s;
    int64_t t = -1;
    CHECK_EQ_INT(
        storage_window_total(to, w->tenant, w->token, w->series_id, w->res, w->window_s, &t), 0);
    if (old) write_id(x->to, x->l, 1, NULL); /* after the look, before the store */
    storage_stream_window_t fill = *w;
    fill.untreed = NULL;
    fill.nuntreed = 0;
    fill.only_absent = 1;
    int stored = -1;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(to, &fill, x->l, ST, &stored, &em), 0);
    CHECK_EQ_INT(stored, old ? 0 : 1);
    CHECK_EQ_INT(
        storage_window_total(to, w->tenant, w->token, w->series_id, w->res, w->window_s, &t), 1);
    CHECK_EQ_INT(t, old ? calltree_root_total(TREES[1]) : w->total);
    CHECK_EQ_INT(storage_stream_marked(to, w->tenant, w->token, w->series_id, w->res, w->window_s),
                 old ? 0 : 1);
    x->stored += stored;
    x->seen++;
    return 0;
}

static void test_fill_raced_by_a_write(fixture_t *a, const labels_t *l)
{
    fixture_t b;
    if (open_store(&b) != 0) return;
    rx_t x = {.to = &b, .l = l};
    CHECK_EQ_INT(storage_stream_scan(a->s, 0, UINT64_MAX, NULL, 0, raced_window, &x), 0);
    CHECK_EQ_INT(x.seen, 2);
    CHECK_EQ_INT(x.stored, 1);
    CHECK_EQ_INT(fx_totals(b.s, "st", l, 0, FROM, UNTIL, NULL),
                 calltree_root_total(TREES[1]) + calltree_root_total(TREES[4]));
    fx_done(&b);
}

#define SPLIT_B 64
#define SPLIT_N (SPLIT_B * STORAGE_RESOLUTION_COUNT)

/* -1, 0, 1 or 2 (both ways) as the window check reads two copies' split
 * sums: 1 when x holds at least y's in every bucket and more in one. */
static int split_holds(const int64_t *x, const int64_t *y)
{
    int more = 0, less = 0;
    for (int i = 0; i < SPLIT_N; i++) {
        more |= x[i] > y[i];
        less |= x[i] < y[i];
    }
    return more && less ? 2 : more ? 1 : less ? -1 : 0;
}

/* The window check's sums (storage_stream_sums_split): their buckets add
 * up to the plain sums; a copy that lacks one profile is held by the
 * whole one; a copy of that profile alone and the rest each hold more
 * somewhere; bad bucket counts are refused. */
static void test_split_sums(fixture_t *a, const labels_t *l)
{
    fixture_t b, c;
    if (open_store(&b) != 0) return;
    if (open_store(&c) != 0) {
        fx_done(&b);
        return;
    }
    for (int i = 1; i <= NPROF; i++)
        write_id(i == 3 ? &c : &b, l, i, NULL);
    static int64_t sa[SPLIT_N], sb[SPLIT_N], sc[SPLIT_N];
    int64_t plain[STORAGE_RESOLUTION_COUNT];
    CHECK_EQ_INT(storage_stream_sums_split(a->s, 0, UINT64_MAX, UNTIL, SPLIT_B, sa), 0);
    CHECK_EQ_INT(storage_stream_sums_split(b.s, 0, UINT64_MAX, UNTIL, SPLIT_B, sb), 0);
    CHECK_EQ_INT(storage_stream_sums_split(c.s, 0, UINT64_MAX, UNTIL, SPLIT_B, sc), 0);
    CHECK_EQ_INT(storage_stream_sums(a->s, 0, UINT64_MAX, UNTIL, plain), 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        int64_t sum = 0;
        for (int k = 0; k < SPLIT_B; k++)
            sum += sa[k * STORAGE_RESOLUTION_COUNT + r];
        CHECK_EQ_INT(sum, plain[r]);
    }
    CHECK_EQ_INT(split_holds(sa, sa), 0);
    CHECK_EQ_INT(split_holds(sa, sb), 1); /* the whole copy holds the one without profile 3 */
    CHECK_EQ_INT(split_holds(sb, sa), -1);
    CHECK_EQ_INT(split_holds(sc, sb),
                 2); /* profile 3 alone and the rest: neither holds the other */
    CHECK_EQ_INT(storage_stream_sums_split(a->s, 0, UINT64_MAX, UNTIL, 0, sa),
                 ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(
        storage_stream_sums_split(a->s, 0, UINT64_MAX, UNTIL, STORAGE_SUM_BUCKETS_MAX + 1, sa),
        ERR_INVALID_ARGUMENT);
    fx_done(&c);
    fx_done(&b);
}

/* Cut short twice (after some stored windows; between a window's fetch and
 * its store), the store reopened each time as after a crash, then streamed
 * from the start: exact. */
static void test_resume(fixture_t *a, const labels_t *l)
{
    fixture_t c;
    if (open_store(&c) != 0) return;
    stream(a, &c, l, 3, 0);
    CHECK(fx_reopen(&c) == 0);
    rx_t y = stream(a, &c, l, 0, 7);
    CHECK(y.stored > 0);
    CHECK(fx_reopen(&c) == 0);
    stream(a, &c, l, 0, 0);
    check_equal(a, &c, l, 1);
    fx_done(&c);
}

/* Opens a store about to receive l's token range: cleared for it, so the
 * range is being received (storage_range_clear) until storage_range_received. */
static int open_receiving(fixture_t *d, const labels_t *l)
{
    if (open_store(d) != 0) return -1;
    uint64_t token = labels_hash(l) >> 1, lo = token, hi = token;
    storage_clear_stats_t cst;
    errmsg_t cem = {{0}};
    CHECK_EQ_INT(storage_range_clear(d->s, &lo, &hi, 1, &cst, &cem), 0);
    return 0;
}

/* The untreed profile (over max_profile_tree_bytes on both sides) reaches
 * the receiver as a live write after it cleared the range to receive: its
 * tree is kept there while the range is being received, so the stream
 * takes its block and total off the residual and the flame graph is the
 * source's exactly. Once the range is received, such a tree is no longer
 * kept. */
static void test_untreed_known(fixture_t *a, const labels_t *l)
{
    fixture_t d;
    if (open_receiving(&d, l) != 0) return;
    write_id(&d, l, 4, NULL); /* a live write during the move */
    stream(a, &d, l, 0, 0);
    check_equal(a, &d, l, 1);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++)
        check_same_flame(a, &d, l, res);
    CHECK(fx_reopen(&d) == 0);
    check_equal(a, &d, l, 1);
    storage_range_received(d.s);
    fixture_t g; /* outside a range being received, an oversize tree is not kept */
    if (open_receiving(&g, l) != 0) return;
    storage_range_received(g.s);
    uint64_t token = labels_hash(l) >> 1;
    write_id(&g, l, 4, NULL);
    uint8_t id4[16];
    fx_id(id4, 4);
    calltree_t *got = calltree_new(0);
    CHECK_EQ_INT(storage_read_profile(g.s, "st", token, labels_hash(l), TIMES[4] * NS, id4, got),
                 ERR_NOT_FOUND);
    calltree_free(got);
    fx_done(&g);
    /* a receiver that held data of the old window already (a range it had
     * before: not a profile the source names) adds it to the source's: the
     * stream check's sums differ */
    fixture_t e;
    if (open_store(&e) != 0) return;
    CHECK_EQ_INT(fx_write(e.s, "st", l, TREES[1], ST, 99, TIMES[1] * NS, NULL), 0);
    stream(a, &e, l, 0, 0);
    int64_t sa[STORAGE_RESOLUTION_COUNT], se[STORAGE_RESOLUTION_COUNT];
    CHECK_EQ_INT(storage_stream_sums(a->s, 0, UINT64_MAX, UNTIL, sa), 0);
    CHECK_EQ_INT(storage_stream_sums(e.s, 0, UINT64_MAX, UNTIL, se), 0);
    CHECK_EQ_INT(se[0] - sa[0], calltree_root_total(TREES[1]));
    fx_done(&e);
    fx_done(&d);
}

/* A backfill: profile 1, already past profile_retention when written,
 * reaches the receiver as a live write after it cleared the range. Its tree
 * is kept while the range is being received (and compaction keeps it), so
 * the stream takes it off the residual like an oversize one: the flame
 * graph is the source's at every resolution, not the profile counted twice. */
static void test_backfill_known(fixture_t *a, const labels_t *l)
{
    fixture_t d;
    if (open_receiving(&d, l) != 0) return;
    write_id(&d, l, 1, NULL);              /* a live write during the move, older than retention */
    CHECK_EQ_INT(storage_compact(d.s), 0); /* retention's filter runs before the stream */
    stream(a, &d, l, 0, 0);
    check_equal(a, &d, l, 1);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++)
        check_same_flame(a, &d, l, res);
    storage_range_received(d.s);
    fx_done(&d);
}

/* A receiver killed while it streams a range it cleared, restarted and
 * compacted before it goes on (a regain resumed after its cursor, not
 * cleared again): the range is still being received after the restart.
 * The old profile's window at res 0 was stored before the kill (the
 * stream recorded it as seen, with a tree entry that says so); retention
 * must not drop that entry then, or the windows of the coarser resolutions
 * stored after the restart would take the profile for one this node
 * counted on its own and leave its total out. */
static void test_receiving_survives_restart(fixture_t *a, const labels_t *l)
{
    fixture_t d;
    if (open_receiving(&d, l) != 0) return;
    rx_t x = stream(a, &d, l, 1, 0); /* the old window at res 0 (the first key) */
    CHECK(x.saw_old);
    CHECK(fx_reopen(&d) == 0); /* killed and restarted */
    uint64_t token = labels_hash(l) >> 1;
    CHECK_EQ_INT(storage_range_receiving(d.s, token), 1);
    CHECK_EQ_INT(storage_range_receiving(d.s, token + 1), 0);
    CHECK_EQ_INT(storage_compact(d.s), 0); /* retention's filter runs before the stream goes on */
    rx_t y = stream(a, &d, l, 0, 0);
    CHECK(y.stored > 0);
    check_equal(a, &d, l, 1);
    int64_t sa[STORAGE_RESOLUTION_COUNT], sd[STORAGE_RESOLUTION_COUNT];
    CHECK_EQ_INT(storage_stream_sums(a->s, 0, UINT64_MAX, UNTIL, sa), 0);
    CHECK_EQ_INT(storage_stream_sums(d.s, 0, UINT64_MAX, UNTIL, sd), 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* what the stream check compares */
        CHECK_EQ_INT(sd[r], sa[r]);
    storage_range_received(d.s); /* the stream ended: a restart no longer keeps the range */
    CHECK(fx_reopen(&d) == 0);
    CHECK_EQ_INT(storage_range_receiving(d.s, token), 0);
    fx_done(&d);
}

static int span_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant, const uint8_t *v,
                   size_t vn)
{
    fixture_t *to = ctx;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_span_put(to->s, tenant, key, klen, v, vn, ST, &em), 0);
    return 0;
}

static int64_t span_sum;
static int sum_cb(void *ctx, uint64_t token, uint64_t series, int64_t w, unsigned flags,
                  const uint8_t *v, size_t n)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    span_sum += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static int count_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant,
                    const uint8_t *v, size_t vn)
{
    (*(int *)ctx)++;
    return 0;
}

/* Span trees: united by profile id, so streaming them twice changes nothing. */
static void test_spans(const labels_t *l)
{
    fixture_t a, b;
    if (open_store(&a) != 0 || open_store(&b) != 0) return;
    storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, 0xab, TREES[2]};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = TREES[3], .spans = &sp, .nspans = 1};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {
        .tenant = "st", .time_ns = (T0 - 30) * NS, .series = &sw, .nseries = 1, .symbols = ST};
    fx_id(p.profile_id, 9);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(a.s, &p, NULL, &em), 0);
    for (int k = 0; k < 2; k++)
        CHECK_EQ_INT(storage_stream_spans(a.s, 0, UINT64_MAX, NULL, 0, span_cb, &b), 0);
    span_sum = 0;
    CHECK_EQ_INT(
        storage_scan_spans(b.s, "st", STORAGE_SPAN_KIND_SPAN, 0xab, FROM, UNTIL, sum_cb, NULL), 0);
    CHECK_EQ_INT(span_sum, calltree_root_total(TREES[2]));
    /* an interval without the token streams nothing */
    int calls = 0;
    if (sw.token > 0)
        CHECK_EQ_INT(storage_stream_spans(a.s, 0, sw.token - 1, NULL, 0, count_cb, &calls), 0);
    CHECK_EQ_INT(calls, 0);
    fx_done(&a);
    fx_done(&b);
}

/* ---- span trees streamed while live writes go on: the source's read of a
 * span tree and the receiver's merge of it are apart in time. A write that
 * reaches both in between (P3) stays on the receiver, one the source held
 * at its read that reaches the receiver only after the merge (P4) counts
 * once: the receiver's span tree is the source's exactly. */

#define LIVE_SPAN 0xee
#define NREAD 8

typedef struct span_read {
    int n;
    uint8_t *key[NREAD], *v[NREAD];
    size_t klen[NREAD], vn[NREAD];
} span_read_t;

static int read_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant, const uint8_t *v,
                   size_t vn)
{
    span_read_t *r = ctx;
    CHECK(r->n < NREAD);
    if (r->n >= NREAD) return 1;
    r->key[r->n] = malloc(klen);
    r->v[r->n] = malloc(vn);
    memcpy(r->key[r->n], key, klen);
    memcpy(r->v[r->n], v, vn);
    r->klen[r->n] = klen;
    r->vn[r->n++] = vn;
    return 0;
}

static void span_write(fixture_t *f, const labels_t *l, int id, const calltree_t *t, int64_t s)
{
    storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, LIVE_SPAN, t};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = t, .spans = &sp, .nspans = 1};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {
        .tenant = "st", .time_ns = s * NS, .series = &sw, .nseries = 1, .symbols = ST};
    fx_id(p.profile_id, (uint64_t)id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
}

static calltree_t *span_of(fixture_t *f)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(storage_scan_spans(f->s, "st", STORAGE_SPAN_KIND_SPAN, LIVE_SPAN, FROM, UNTIL,
                                    fx_span_merge_cb, t),
                 0);
    return t;
}

static void test_spans_live(const labels_t *l)
{
    fixture_t a, b;
    if (open_store(&a) != 0 || open_store(&b) != 0) return;
    int64_t t = T0 - 30; /* every profile in one 10 s window: one span key */
    uint64_t token = labels_hash(l) >> 1;
    storage_clear_stats_t cst;
    errmsg_t em = {{0}};
    span_write(&a, l, 101, TREES[1], t);                                     /* P1: old */
    CHECK_EQ_INT(storage_range_clear(b.s, &token, &token, 1, &cst, &em), 0); /* the move */
    span_write(&a, l, 102, TREES[2], t + 1); /* P2: live, reaches both before the read */
    span_write(&b, l, 102, TREES[2], t + 1);
    span_write(&a, l, 104, TREES[5], t + 3); /* P4: at the source before its read */
    span_read_t r = {0};
    CHECK_EQ_INT(storage_stream_spans(a.s, token, token, NULL, 0, read_cb, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    span_write(&a, l, 103, TREES[3], t + 2); /* P3: between the read and the merge */
    span_write(&b, l, 103, TREES[3], t + 2);
    for (int i = 0; i < r.n; i++)
        CHECK_EQ_INT(
            storage_stream_span_put(b.s, "st", r.key[i], r.klen[i], r.v[i], r.vn[i], ST, &em), 0);
    span_write(&b, l, 104, TREES[5], t + 3); /* P4 reaches the receiver late */
    int64_t want = calltree_root_total(TREES[1]) + calltree_root_total(TREES[2]) +
                   calltree_root_total(TREES[3]) + calltree_root_total(TREES[5]);
    for (int round = 0; round < 3; round++) {
        calltree_t *ta = span_of(&a), *tb = span_of(&b);
        CHECK_EQ_INT(calltree_root_total(ta), want);
        CHECK_EQ_INT(calltree_root_total(tb), want);
        CHECK_EQ_INT(fx_tree_diff(ta, tb), 0); /* node by node */
        calltree_free(ta);
        calltree_free(tb);
        if (round == 0) /* a resumed stream merges the same value again */
            CHECK_EQ_INT(storage_stream_spans(a.s, token, token, NULL, 0, span_cb, &b), 0);
        if (round == 1) { /* compaction folds the operands: the same */
            CHECK_EQ_INT(storage_compact(b.s), 0);
            CHECK(fx_reopen(&b) == 0);
        }
    }
    for (int i = 0; i < r.n; i++) {
        free(r.key[i]);
        free(r.v[i]);
    }
    fx_done(&a);
    fx_done(&b);
}

/* The span trees of the store's token interval [lo, hi], counted. */
static int spans_in(storage_t *s, uint64_t lo, uint64_t hi)
{
    int calls = 0;
    CHECK_EQ_INT(storage_stream_spans(s, lo, hi, NULL, 0, count_cb, &calls), 0);
    return calls;
}

/* A receiver with an old copy of the range (a profile the source does not
 * name, an earlier stream's windows and markers, a span tree) clears it and
 * is then streamed exactly; a series of another token stays. */
static void test_clear(fixture_t *a, const labels_t *l)
{
    fixture_t e;
    if (open_store(&e) != 0) return;
    uint64_t token = labels_hash(l) >> 1;
    labels_t *other = fx_labels("othersvc", NULL);
    CHECK_EQ_INT(fx_write(e.s, "st", other, TREES[2], ST, 77, TIMES[2] * NS, NULL), 0);
    int64_t other_total = fx_totals(e.s, "st", other, 0, FROM, UNTIL, NULL);
    CHECK(other_total > 0);
    CHECK((labels_hash(other) >> 1) != token);
    /* the old copy: a leftover profile, then a whole earlier stream (markers) */
    CHECK_EQ_INT(fx_write(e.s, "st", l, TREES[1], ST, 99, TIMES[1] * NS, NULL), 0);
    stream(a, &e, l, 0, 0);
    storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, 0xcd, TREES[3]};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = TREES[5], .spans = &sp, .nspans = 1};
    sw.token = token;
    storage_profile_write_t p = {
        .tenant = "st", .time_ns = (T0 - 20) * NS, .series = &sw, .nseries = 1, .symbols = ST};
    fx_id(p.profile_id, 42);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(e.s, &p, NULL, &em), 0);
    CHECK_EQ_INT(spans_in(e.s, token, token), 1);
    uint64_t lo[2] = {token, token == UINT64_MAX ? token : token + 1}, hi[2] = {token, UINT64_MAX};
    storage_clear_stats_t st;
    CHECK_EQ_INT(storage_range_clear(e.s, lo, hi, 1, &st, &em), 0);
    CHECK_EQ_INT(st.series, 1);
    CHECK_EQ_INT(st.spans, 1);
    CHECK_EQ_INT(fx_totals(e.s, "st", l, 0, FROM, UNTIL, NULL), 0);
    CHECK_EQ_INT(spans_in(e.s, token, token), 0);
    storage_seen_entry_t se = {"st", token, labels_hash(l), {0}, TIMES[2] * NS};
    fx_id(se.profile_id, 2);
    CHECK_EQ_INT(storage_seen_has(e.s, &se), 0);
    CHECK_EQ_INT(storage_stream_marked(e.s, "st", token, labels_hash(l), 0, (T0 - 100) / 10 * 10),
                 0);
    CHECK_EQ_INT(fx_totals(e.s, "st", other, 0, FROM, UNTIL, NULL), other_total);
    rx_t x = stream(a, &e, l, 0, 0); /* markers gone: every window is stored again */
    CHECK(x.stored > 0);
    check_equal(a, &e, l, 1);
    int64_t sa[STORAGE_RESOLUTION_COUNT], se2[STORAGE_RESOLUTION_COUNT];
    CHECK_EQ_INT(storage_stream_sums(a->s, token, token, UNTIL, sa), 0);
    CHECK_EQ_INT(storage_stream_sums(e.s, token, token, UNTIL, se2), 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
        CHECK_EQ_INT(se2[r], sa[r]);
    CHECK(fx_reopen(&e) == 0);
    check_equal(a, &e, l, 1);
    CHECK_EQ_INT(fx_totals(e.s, "st", other, 0, FROM, UNTIL, NULL), other_total);
    /* an empty list clears nothing; a reversed interval is refused */
    CHECK_EQ_INT(storage_range_clear(e.s, lo, hi, 0, &st, &em), 0);
    CHECK_EQ_INT(storage_range_clear(e.s, hi + 1, lo, 1, &st, &em), ERR_INVALID_ARGUMENT);
    labels_free(other);
    fx_done(&e);
}

/* ---- a scan reads at one snapshot: a profile written from the scan's own
 * callback, into a window the scan has yet to reach (W2, which already holds
 * one profile), is in none of the windows it reports: not in a total, not
 * named as kept (else its tree would come off a residual that never counted
 * it, and the receiver would end one profile short). */

typedef struct snap_rx {
    fixture_t *f;
    const labels_t *l;
    int wrote, late_named;
    int64_t res0_total;
} snap_rx_t;

static int snap_window(void *ctx, const storage_stream_window_t *w)
{
    snap_rx_t *x = ctx;
    if (!x->wrote) { /* the first window reported: a live write lands mid-scan */
        CHECK_EQ_INT(fx_write(x->f->s, "st", x->l, TREES[5], ST, 31, (T0 - 38) * NS, NULL), 0);
        x->wrote = 1;
    }
    int64_t kept = 0;
    for (size_t i = 0; i < w->nkept; i++) {
        kept += w->kept[i].total;
        x->late_named += w->kept[i].profile_id[15] == 31;
    }
    for (size_t i = 0; i < w->nuntreed; i++)
        x->late_named += w->untreed[i].profile_id[15] == 31;
    /* the residual's tree and total agree (w->total is the residual's) */
    CHECK_EQ_INT(calltree_root_total(w->residual), w->total);
    if (w->res == 0) x->res0_total += w->total + kept;
    return 0;
}

static void test_snapshot(const labels_t *l)
{
    fixture_t f;
    if (open_store(&f) != 0) return;
    CHECK_EQ_INT(fx_write(f.s, "st", l, TREES[2], ST, 21, (T0 - 100) * NS, NULL), 0); /* W1 */
    CHECK_EQ_INT(fx_write(f.s, "st", l, TREES[3], ST, 22, (T0 - 40) * NS, NULL), 0);  /* W2 */
    int64_t before = calltree_root_total(TREES[2]) + calltree_root_total(TREES[3]);
    snap_rx_t x = {.f = &f, .l = l};
    CHECK_EQ_INT(storage_stream_scan(f.s, 0, UINT64_MAX, NULL, 0, snap_window, &x), 0);
    CHECK(x.wrote);
    CHECK_EQ_INT(x.late_named, 0);
    CHECK_EQ_INT(x.res0_total, before);
    /* the write did commit: a scan started after it sees it */
    snap_rx_t y = {.f = &f, .l = l, .wrote = 1};
    CHECK_EQ_INT(storage_stream_scan(f.s, 0, UINT64_MAX, NULL, 0, snap_window, &y), 0);
    CHECK_EQ_INT(y.late_named, 5); /* once per resolution */
    CHECK_EQ_INT(y.res0_total, before + calltree_root_total(TREES[5]));
    fx_done(&f);
}

/* ---- scaled profile trees: a CPU profile's nanoseconds as a factor of its samples */

typedef struct pair {
    labels_t *l[2]; /* samples, cpu: one token, the first's id >> 1 */
    calltree_t *t[2];
    uint64_t token;
} pair_t;

static void write_pair(fixture_t *f, const pair_t *pr, int id, int64_t t_s)
{
    storage_series_write_t sw[2];
    for (int i = 0; i < 2; i++)
        sw[i] = (storage_series_write_t){.labels = pr->l[i],
                                         .series_id = labels_hash(pr->l[i]),
                                         .token = pr->token,
                                         .tree = pr->t[i]};
    storage_profile_write_t p = {
        .tenant = "st", .time_ns = t_s * NS, .series = sw, .nseries = 2, .symbols = ST};
    fx_id(p.profile_id, (uint64_t)id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
}

static int64_t pair_total(fixture_t *f, const pair_t *pr, int i, int res)
{
    fx_scan_t sc = {0};
    CHECK_EQ_INT(storage_scan_totals(f->s, "st", pr->token, labels_hash(pr->l[i]), res, FROM, UNTIL,
                                     fx_total_cb, &sc),
                 0);
    return sc.total;
}

typedef struct prx {
    fixture_t *to;
    const pair_t *pr;
    int windows, big;
} prx_t;

/* Every window holds only kept trees: nothing is left in a residual, the
 * cpu series' (scaled) trees included. Big ones are kept on no side but the
 * receiver's (untreed, and known there). */
static int pair_window(void *ctx, const storage_stream_window_t *w)
{
    prx_t *x = ctx;
    CHECK_EQ_INT(w->nkept, x->big ? 0 : 2);
    CHECK_EQ_INT(w->nuntreed, x->big ? 2 : 0);
    if (!x->big) CHECK_EQ_INT(w->total, 0);
    if (!x->big) CHECK_EQ_INT(calltree_root_total(w->residual), 0);
    for (size_t i = 0; i < w->nkept; i++)
        if (holds(x->to->s, w->token, w->series_id, &w->kept[i]) != 1)
            write_pair(x->to, x->pr, w->kept[i].profile_id[15], w->kept[i].time_ns / NS);
    const labels_t *l = w->series_id == labels_hash(x->pr->l[0]) ? x->pr->l[0] : x->pr->l[1];
    int stored = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(x->to->s, w, l, ST, &stored, &em), 0);
    x->windows++;
    return 0;
}

/* A stream's residuals take scaled trees off like plain ones, on the
 * source (storage_stream_scan) and on a receiver that held the profile
 * already (storage_stream_store; big: trees over max_profile_tree_bytes,
 * kept only by the receiver, which receives the range): both end with the
 * same sums. */
static void test_scaled_trees(int big)
{
    fixture_t a, b;
    pair_t pr = {{fx_labels("pair", "samples"), fx_labels("pair", "cpu")},
                 {calltree_new(0), calltree_new(0)},
                 0};
    pr.token = labels_hash(pr.l[0]) >> 1;
    if (open_store(&a) != 0) return;
    if ((big ? open_receiving(&b, pr.l[0]) : open_store(&b)) != 0) return;
    int64_t want = 0;
    for (int k = 0; k < (big ? 60 : 1); k++) {
        char stack[64];
        snprintf(stack, sizeof stack, "main;a%d;b", k);
        for (int i = 0; i < 2; i++)
            fx_add(pr.t[i], ST, stack, (4 + k) * (i ? 10000000 : 1));
        want += 4 + k;
    }
    for (int i = 0; i < 2; i++)
        fx_add(pr.t[i], ST, "main;c", i ? 10000000 : 1);
    want += 1;
    write_pair(&a, &pr, 1, T0 - 100);
    write_pair(&a, &pr, 2, T0 - 95);  /* the same windows */
    write_pair(&b, &pr, 1, T0 - 100); /* a live write that reached the receiver */
    skey_t k;
    uint8_t pid[16];
    fx_id(pid, 1);
    storage_key_ptree(&k, pr.token, "st", labels_hash(pr.l[1]), (T0 - 100) * NS, pid);
    size_t n = 0;
    char *err = NULL;
    fixture_t *keeps = big ? &b : &a;
    char *v = rocksdb_get_cf(keeps->s->db, keeps->s->ropts, keeps->s->cf[CF_PTREES],
                             (const char *)k.b, k.n, &n, &err);
    CHECK(v != NULL && n > 1 && (v[1] & PTREE_FLAG_SCALED)); /* what this test is about */
    free(v);
    prx_t x = {.to = &b, .pr = &pr, .big = big};
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, pair_window, &x), 0);
    CHECK_EQ_INT(x.windows, 2 * STORAGE_RESOLUTION_COUNT);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++)
        for (int i = 0; i < 2; i++) {
            CHECK_EQ_INT(pair_total(&b, &pr, i, res), pair_total(&a, &pr, i, res));
            CHECK_EQ_INT(pair_total(&a, &pr, i, res), 2 * want * (i ? 10000000 : 1));
        }
    storage_stats_t st;
    storage_stats(a.s, &st);
    CHECK_EQ_INT(st.corrupt_operands, 0);
    for (int i = 0; i < 2; i++) {
        labels_free(pr.l[i]);
        calltree_free(pr.t[i]);
    }
    fx_done(&a);
    fx_done(&b);
}

static int store_window(void *ctx, const storage_stream_window_t *w)
{
    prx_t *x = ctx;
    const labels_t *l = w->series_id == labels_hash(x->pr->l[0]) ? x->pr->l[0] : x->pr->l[1];
    int stored = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(x->to->s, w, l, ST, &stored, &em), 0);
    x->windows += stored;
    return 0;
}

/* A receiver (not receiving the range: nothing keeps its old trees) whose
 * compaction dropped the base of a scaled tree past profile retention
 * before the scaled one: the stream stores its windows all the same. */
static void test_scaled_base_gone(void)
{
    fixture_t a, e;
    pair_t pr = {{fx_labels("gone", "samples"), fx_labels("gone", "cpu")},
                 {calltree_new(0), calltree_new(0)},
                 0};
    pr.token = labels_hash(pr.l[0]) >> 1;
    if (open_store(&a) != 0 || open_store(&e) != 0) return;
    for (int i = 0; i < 2; i++)
        fx_add(pr.t[i], ST, "main;g", i ? 30000000 : 3);
    write_pair(&a, &pr, 1, T0 - 100);
    write_pair(&e, &pr, 1, T0 - 100);
    skey_t k;
    uint8_t pid[16];
    fx_id(pid, 1);
    storage_key_ptree(&k, pr.token, "st", labels_hash(pr.l[0]), (T0 - 100) * NS, pid);
    char *err = NULL;
    rocksdb_delete_cf(e.s->db, e.s->wopts, e.s->cf[CF_PTREES], (const char *)k.b, k.n, &err);
    CHECK(err == NULL);
    a.now = e.now = T0 + 3600; /* the trees are past profile retention, the windows are not */
    prx_t x = {.to = &e, .pr = &pr};
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, store_window, &x), 0);
    CHECK_EQ_INT(x.windows, 2 * STORAGE_RESOLUTION_COUNT);
    for (int i = 0; i < 2; i++) {
        labels_free(pr.l[i]);
        calltree_free(pr.t[i]);
    }
    fx_done(&a);
    fx_done(&e);
}

/* Format 11: trees of one 10 s window, two kept in no block (flagged) and
 * one over max_profile_tree_bytes (in the block), and a window of one
 * flagged tree alone (no block key), aged past one retention and not the
 * other. The receiver fetches a named kept profile as the cluster does. */
#define AGED_N 4
static calltree_t *AGED[AGED_N];
static const int64_t AGED_T[AGED_N] = {T0 - 300, T0 - 297, T0 - 295, T0 - 200};

static int aged_window(void *ctx, const storage_stream_window_t *w)
{
    prx_t *x = ctx;
    for (size_t i = 0; i < w->nkept; i++) {
        int id = w->kept[i].profile_id[15] - 20;
        CHECK(id >= 0 && id < AGED_N);
        if (id >= 0 && id < AGED_N && holds(x->to->s, w->token, w->series_id, &w->kept[i]) != 1)
            CHECK_EQ_INT(fx_write(x->to->s, "st", x->pr->l[0], AGED[id], ST, 20 + (uint64_t)id,
                                  AGED_T[id] * NS, NULL),
                         0);
    }
    int stored = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(x->to->s, w, x->pr->l[0], ST, &stored, &em), 0);
    x->windows += stored;
    return 0;
}

/* window_first 0: profile retention (3600 s) passes first, the 10 s
 * windows (1 day) live on: compaction keeps the flagged trees, reads of the
 * window count them, and the stream hands them on in the residual (they
 * are no longer named). window_first 1: the 10 s windows (600 s) expire
 * first: they read as nothing while the trees stay listed; the coarser
 * windows hold every tree. Both: the receiver ends with the source's
 * windows, the source's with what was written. */
static void test_unblocked_retention(int window_first)
{
    fixture_t a, b;
    pair_t pr = {{fx_labels("aged", window_first ? "win" : "prof"), NULL}, {NULL, NULL}, 0};
    const labels_t *l = pr.l[0];
    if (fx_init(&a) != 0 || fx_init(&b) != 0) return;
    for (fixture_t *f = &a; f != NULL; f = f == &a ? &b : NULL) {
        f->opts.profile_retention_seconds = 3600;
        f->opts.max_profile_tree_bytes = 64;
        if (window_first) f->opts.retention_seconds[0] = 600;
        f->now = T0;
        CHECK_EQ_INT(fx_reopen(f), 0);
    }
    int64_t first = 0, all = 0;
    for (int i = 0; i < AGED_N; i++) {
        AGED[i] = i == 2 ? big_tree() : small_tree(7 + i);
        CHECK_EQ_INT(fx_write(a.s, "st", l, AGED[i], ST, 20 + (uint64_t)i, AGED_T[i] * NS, NULL),
                     0);
        if (i < 3) first += calltree_root_total(AGED[i]);
        all += calltree_root_total(AGED[i]);
    }
    storage_stats_t st;
    storage_stats(a.s, &st);
    CHECK_EQ_INT(st.oversize_ptrees, 1);
    CHECK_EQ_INT(fx_block_total(a.s, "st", l, 0, T0 - 300, T0 - 290, NULL), first);
    a.now = b.now = window_first ? T0 + 500 : T0 + 3500;
    CHECK_EQ_INT(storage_compact(a.s), 0);
    CHECK_EQ_INT(storage_compact(a.s), 0);
    int64_t want0 = window_first ? 0 : all;
    CHECK_EQ_INT(fx_block_total(a.s, "st", l, 0, FROM, UNTIL, NULL), want0);
    CHECK_EQ_INT(fx_totals(a.s, "st", l, 0, FROM, UNTIL, NULL), want0);
    CHECK_EQ_INT(fx_block_total(a.s, "st", l, 1, FROM, UNTIL, NULL), all);
    calltree_t *one = calltree_new(0); /* listed and opened by profile retention only */
    uint8_t pid[16];
    fx_id(pid, 20);
    uint64_t sid = labels_hash(l);
    CHECK_EQ_INT(storage_read_profile(a.s, "st", sid >> 1, sid, AGED_T[0] * NS, pid, one),
                 window_first ? 0 : ERR_NOT_FOUND);
    calltree_free(one);
    prx_t x = {.to = &b, .pr = &pr};
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, aged_window, &x), 0);
    CHECK(x.windows > 0);
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
        CHECK_EQ_INT(fx_block_total(b.s, "st", l, res, FROM, UNTIL, NULL),
                     fx_block_total(a.s, "st", l, res, FROM, UNTIL, NULL));
        CHECK_EQ_INT(fx_totals(b.s, "st", l, res, FROM, UNTIL, NULL),
                     fx_totals(a.s, "st", l, res, FROM, UNTIL, NULL));
    }
    for (int res = window_first; res < STORAGE_RESOLUTION_COUNT; res++)
        check_same_flame(&a, &b, l, res);
    for (int i = 0; i < AGED_N; i++)
        calltree_free(AGED[i]);
    labels_free(pr.l[0]);
    fx_done(&a);
    fx_done(&b);
}

static int count_window(void *ctx, const storage_stream_window_t *w)
{
    (void)w;
    ++*(int *)ctx;
    return 0;
}

/* A receiver of test_window_profiles_bounded's windows: each kept profile
 * it lacks fetched (written: ids 200 on, all of TREES[1]), then the
 * residual stored. */
static int rx_many(void *ctx, const storage_stream_window_t *w)
{
    rx_t *x = ctx;
    for (size_t i = 0; i < w->nkept; i++) {
        if (holds(x->to->s, w->token, w->series_id, &w->kept[i]) == 1) continue;
        int id = w->kept[i].profile_id[15];
        CHECK(id >= 200 && id < 210);
        CHECK_EQ_INT(
            fx_write(x->to->s, "st", x->l, TREES[1], ST, (uint64_t)id, w->kept[i].time_ns, NULL),
            0);
    }
    int stored = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(x->to->s, w, x->l, ST, &stored, &em), 0);
    x->stored += stored;
    return 0;
}

/* A window whose profile lists pass stream_window_max_profiles on the
 * source: the scan refuses it (ERR_LIMIT) and hands no window of it, none
 * with a list cut short; raised, the same store streams it and the
 * receiver ends exact. Before, nothing bounded these lists. */
static void test_window_profiles_bounded(const labels_t *l)
{
    fixture_t a, b;
    if (open_store(&a) != 0 || open_store(&b) != 0) CHECK(0);
    a.opts.stream_window_max_profiles = 16;
    CHECK_EQ_INT(fx_reopen(&a), 0);
    for (int i = 0; i < 10; i++) /* ten kept profiles in one 10 s window */
        CHECK_EQ_INT(
            fx_write(a.s, "st", l, TREES[1], ST, 200 + (uint64_t)i, (T0 - 100 + i) * NS, NULL), 0);
    int seen = 0;
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, count_window, &seen), ERR_LIMIT);
    /* its seen entries, the profile_trees entries looked at and the kept
     * list (30) pass 16 at its first window */
    CHECK_EQ_INT(seen, 0);
    a.opts.stream_window_max_profiles = 30;
    CHECK_EQ_INT(fx_reopen(&a), 0);
    seen = 0;
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, count_window, &seen), 0);
    CHECK_EQ_INT(seen, STORAGE_RESOLUTION_COUNT);
    rx_t x = {.to = &b, .l = l};
    CHECK_EQ_INT(storage_stream_scan(a.s, 0, UINT64_MAX, NULL, 0, rx_many, &x), 0);
    CHECK_EQ_INT(x.stored, STORAGE_RESOLUTION_COUNT);
    check_equal(&a, &b, l, 1);
    CHECK_EQ_INT(fx_totals(b.s, "st", l, 4, FROM, UNTIL, NULL), 10 * calltree_root_total(TREES[1]));
    fx_done(&a);
    fx_done(&b);
}

/* ---- a fill's scans: bounded by until_s, by keys, and by summaries */

#define MAX_KEYS 64
typedef struct keyset {
    uint8_t key[MAX_KEYS][REPAIR_KEY_MAX];
    size_t len[MAX_KEYS];
    int64_t total[MAX_KEYS];
    int64_t until_s; /* 0: every window */
    size_t n;
} keyset_t;

static int key_window(void *ctx, const storage_stream_window_t *w)
{
    keyset_t *k = ctx;
    int64_t end = w->window_s + (int64_t)storage_resolutions[w->res];
    if (k->until_s != 0 && end > k->until_s) return 0; /* what the caller filtered before */
    CHECK(k->n < MAX_KEYS && w->key_len <= REPAIR_KEY_MAX);
    if (k->n >= MAX_KEYS) return 1;
    memcpy(k->key[k->n], w->key, w->key_len);
    k->len[k->n] = w->key_len;
    k->total[k->n++] = w->total;
    return 0;
}

static void check_same_keys(const keyset_t *a, const keyset_t *b)
{
    CHECK_EQ_INT(a->n, b->n);
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        CHECK_EQ_INT(a->len[i], b->len[i]);
        CHECK(memcmp(a->key[i], b->key[i], a->len[i]) == 0);
        CHECK_EQ_INT(a->total[i], b->total[i]);
    }
}

/* A scan bounded by until_s hands exactly the windows a whole scan hands
 * that end by it (the rest are not read); a scan by keys hands exactly the
 * windows named that this store holds, after `after`. Before, the source
 * read every window alive and the caller dropped the newer ones. */
static void test_scan_until_and_keys(fixture_t *a)
{
    int64_t until = T0 - 3600;
    keyset_t all = {.until_s = until}, bounded = {0};
    CHECK_EQ_INT(storage_stream_scan(a->s, 0, UINT64_MAX, NULL, 0, key_window, &all), 0);
    CHECK_EQ_INT(
        storage_stream_scan_until(a->s, 0, UINT64_MAX, NULL, 0, until, key_window, &bounded), 0);
    CHECK(all.n > 0);
    check_same_keys(&all, &bounded);
    keyset_t every = {0};
    CHECK_EQ_INT(storage_stream_scan(a->s, 0, UINT64_MAX, NULL, 0, key_window, &every), 0);
    CHECK(every.n > bounded.n); /* newer windows exist, left out */

    /* every other window, and a key this store does not hold */
    storage_key_ref_t refs[MAX_KEYS + 1];
    keyset_t want = {0};
    uint8_t absent[REPAIR_KEY_MAX];
    size_t nr = 0;
    for (size_t i = 0; i < every.n; i += 2) {
        refs[nr++] = (storage_key_ref_t){every.key[i], every.len[i]};
        memcpy(want.key[want.n], every.key[i], every.len[i]);
        want.len[want.n] = every.len[i];
        want.total[want.n++] = every.total[i];
        if (i == 0) { /* the first key with another window: held nowhere */
            memcpy(absent, every.key[0], every.len[0]);
            absent[every.len[0] - 1] ^= 1;
            refs[nr++] = (storage_key_ref_t){absent, every.len[0]};
        }
    }
    keyset_t got = {0};
    CHECK_EQ_INT(storage_stream_scan_keys(a->s, 0, UINT64_MAX, refs, nr, NULL, 0, key_window, &got),
                 0);
    check_same_keys(&want, &got);
    /* after the first key: the others only */
    keyset_t rest = {0}, tail = want;
    tail.n = want.n - 1;
    memmove(tail.key, want.key[1], sizeof tail.key[0] * tail.n);
    memmove(tail.len, want.len + 1, sizeof tail.len[0] * tail.n);
    memmove(tail.total, want.total + 1, sizeof tail.total[0] * tail.n);
    CHECK_EQ_INT(storage_stream_scan_keys(a->s, 0, UINT64_MAX, refs, nr, every.key[0], every.len[0],
                                          key_window, &rest),
                 0);
    check_same_keys(&tail, &rest);
}

typedef struct sums_seen {
    storage_t *s;
    keyset_t keys;
    int pair_listed; /* the window of two kept trees names both */
} sums_seen_t;

static int summary_window(void *ctx, const storage_window_summary_t *w)
{
    sums_seen_t *x = ctx;
    int64_t total = 0;
    CHECK_EQ_INT(
        storage_window_total(x->s, w->tenant, w->token, w->series_id, w->res, w->window_s, &total),
        1);
    CHECK_EQ_INT(w->total, total);
    buf_t v;
    buf_init(&v, BUF_UNLIMITED);
    int exact = storage_window_profiles_value(x->s, w->tenant, w->token, w->series_id, w->res,
                                              w->window_s, &v, &total);
    CHECK(exact >= 0);
    CHECK_EQ_INT(w->wprof_len, exact == 1 ? v.len : 0);
    if (exact == 1 && w->wprof_len == v.len) CHECK(memcmp(w->wprof, v.data, v.len) == 0);
    if (w->res == 0 && w->window_s == T0 - 100 && w->wprof_len == WPROF_LEN(2)) x->pair_listed = 1;
    /* the key names the window's parts; the hash is the value's, never 0 */
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t token = 0, series = 0;
    int res = -1;
    int64_t ws = 0;
    CHECK_EQ_INT(storage_window_key_parse(w->key, w->key_len, tenant, &token, &series, &res, &ws),
                 0);
    CHECK(strcmp(tenant, w->tenant) == 0 && token == w->token && series == w->series_id &&
          res == w->res && ws == w->window_s);
    CHECK_EQ_INT(
        storage_window_key_parse(w->key, w->key_len - 1, tenant, &token, &series, &res, &ws),
        ERR_CORRUPT);
    if (exact == 1) {
        uint64_t h = storage_window_profiles_hash(v.data, v.len);
        CHECK(h != 0 && h == storage_window_profiles_hash(w->wprof, w->wprof_len));
        v.data[18] ^= 1; /* another id hash: another hash */
        CHECK(storage_window_profiles_hash(v.data, v.len) != h);
    }
    CHECK_EQ_INT(storage_window_profiles_hash(v.data, exact == 1 ? 3 : 0), 0); /* no value */
    buf_free(&v);
    if (x->keys.n < MAX_KEYS) {
        memcpy(x->keys.key[x->keys.n], w->key, w->key_len);
        x->keys.len[x->keys.n] = w->key_len;
        x->keys.total[x->keys.n++] = 0;
    }
    return 0;
}

/* Summaries name the windows a bounded scan hands, each with its whole
 * total and its whole window_profiles value: a window whose profiles'
 * trees are kept (their residual holds none of them) names them all, so a
 * fill compares it by id. */
static void test_summaries(fixture_t *a)
{
    int64_t until = T0 + 3600;
    sums_seen_t x = {.s = a->s};
    CHECK_EQ_INT(storage_stream_summaries(a->s, 0, UINT64_MAX, NULL, 0, until, summary_window, &x),
                 0);
    keyset_t bounded = {0};
    CHECK_EQ_INT(
        storage_stream_scan_until(a->s, 0, UINT64_MAX, NULL, 0, until, key_window, &bounded), 0);
    CHECK_EQ_INT(x.keys.n, bounded.n);
    for (size_t i = 0; i < bounded.n && i < x.keys.n; i++)
        CHECK(x.keys.len[i] == bounded.len[i] &&
              memcmp(x.keys.key[i], bounded.key[i], bounded.len[i]) == 0);
    CHECK(x.pair_listed);
    /* by keys: every other one, and one past until (ends later: skipped) */
    storage_key_ref_t refs[MAX_KEYS + 1];
    size_t n = 0;
    for (size_t i = 0; i < x.keys.n; i += 2)
        refs[n++] = (storage_key_ref_t){x.keys.key[i], x.keys.len[i]};
    keyset_t all = {0};
    CHECK_EQ_INT(storage_stream_scan(a->s, 0, UINT64_MAX, NULL, 0, key_window, &all), 0);
    for (size_t i = 0; i < all.n; i++) { /* a key past until, in key order among them */
        int listed = 0;
        for (size_t j = 0; j < x.keys.n; j++)
            listed |= all.len[i] == x.keys.len[j] && !memcmp(all.key[i], x.keys.key[j], all.len[i]);
        if (!listed && n > 0 && memcmp(all.key[i], refs[n - 1].key, refs[n - 1].len) > 0) {
            refs[n++] = (storage_key_ref_t){all.key[i], all.len[i]};
            break;
        }
    }
    sums_seen_t y = {.s = a->s};
    CHECK_EQ_INT(storage_stream_summaries_keys(a->s, 0, UINT64_MAX, refs, n, NULL, 0, until,
                                               summary_window, &y),
                 0);
    CHECK_EQ_INT(y.keys.n, (x.keys.n + 1) / 2);
    for (size_t i = 0; i < y.keys.n; i++)
        CHECK(y.keys.len[i] == x.keys.len[2 * i] &&
              memcmp(y.keys.key[i], x.keys.key[2 * i], y.keys.len[i]) == 0);
}

int main(void)
{
    ST = symtab_new();
    for (int i = 1; i <= NPROF; i++)
        TREES[i] = i == 4 ? big_tree() : small_tree(i);
    labels_t *l = fx_labels("svc", NULL);
    fixture_t a;
    if (open_store(&a) != 0) return 1;
    for (int i = 1; i <= NPROF; i++)
        write_id(&a, l, i, NULL);
    CHECK_EQ_INT(fx_totals(a.s, "st", l, 4, FROM, UNTIL, NULL), pushed_total());
    test_exact_and_idempotent(&a, l);
    test_split_sums(&a, l);
    test_window_total_and_bytes(&a, l);
    test_fill_raced_by_a_write(&a, l);
    test_resume(&a, l);
    test_untreed_known(&a, l);
    test_backfill_known(&a, l);
    test_receiving_survives_restart(&a, l);
    test_spans(l);
    test_spans_live(l);
    test_clear(&a, l);
    test_snapshot(l);
    test_scaled_trees(0);
    test_scaled_trees(1);
    test_scaled_base_gone();
    test_unblocked_retention(0);
    test_unblocked_retention(1);
    test_window_profiles_bounded(l);
    test_scan_until_and_keys(&a);
    test_summaries(&a);
    fx_done(&a);
    labels_free(l);
    for (int i = 1; i <= NPROF; i++)
        calltree_free(TREES[i]);
    symtab_free(ST);
    return check_exit();
}
