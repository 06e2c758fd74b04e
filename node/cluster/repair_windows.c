/* repair_windows.c — the window check of anti-entropy (repair_int.h;
 * docs/cluster.md, "The window check").
 *
 * The seen comparison finds a profile one replica lacks only while the
 * profile's time lies within the seen span; older ones (a backfill, or a
 * failed push that one replica stored) stay different for good. The window
 * check compares what is left of them: per range this node replicates, the
 * totals of every window that ends before the seen span (and an hour ago),
 * summed per resolution (storage_stream_sums, the sums a stream's check
 * uses), here and on each other replica that serves its copy. The replica
 * with the largest sums (compared resolution by resolution, the coarsest
 * first: one total order, so every replica of a range picks the same one)
 * is taken as the whole copy; when it is another and holds every profile
 * this node holds of the range within the seen span (by digest: nothing
 * recent is lost when this copy goes), the range is handed to the loop,
 * which adds it to the regain (cluster_regain.c): this node stops serving
 * reads, clears its copy once the settle margin passed and streams the
 * range whole from that replica (repair_regain.c), exactly once, then
 * serves again. The same check on the others makes every replica adopt the
 * largest copy, so they converge.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

#define NSUMS (REPAIR_WINDOW_BUCKETS * STORAGE_RESOLUTION_COUNT)
typedef int64_t sums_t[NSUMS];

/* How copy a compares with copy b, bucket by bucket and resolution by
 * resolution: 1 when a holds at least b's everywhere and more somewhere
 * (a holds b), -1 when b holds a that way, 0 when they are equal, 2 when
 * each holds more somewhere (neither holds the other). */
static int dominance(const int64_t *a, const int64_t *b)
{
    int more = 0, less = 0;
    for (size_t i = 0; i < NSUMS; i++) {
        more |= a[i] > b[i];
        less |= a[i] < b[i];
    }
    return more && less ? 2 : more ? 1 : less ? -1 : 0;
}

static void add_sums(int64_t *acc, const int64_t *s)
{
    for (size_t j = 0; j < NSUMS; j++)
        acc[j] = (int64_t)((uint64_t)acc[j] + (uint64_t)s[j]); /* wraps, as the merge adds */
}

static int local_sums(repair_t *r, ring_range_t f, int64_t until_s, int64_t *out)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi);
    memset(out, 0, sizeof(sums_t));
    for (int q = 0; q < k; q++) {
        sums_t s;
        int rc =
            storage_stream_sums_split(r->storage, lo[q], hi[q], until_s, REPAIR_WINDOW_BUCKETS, s);
        if (rc != 0) return rc;
        add_sums(out, s);
    }
    return 0;
}

/* The peer's sums of range f (STREAM_CHECK of each interval, in buckets);
 * 0, or the error (REPAIR_NOT_SOURCE: its copy is not to be trusted now). */
static int peer_sums(repair_t *r, const char *peer, ring_range_t f, int64_t until_s, int64_t *out,
                     errmsg_t *em)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi);
    memset(out, 0, sizeof(sums_t));
    for (int q = 0; q < k; q++) {
        Flamedb__Cluster__RepairRequest req;
        repair_request_init(&req, RK(STREAM_CHECK), 0, until_s);
        req.lo = lo[q];
        req.hi = hi[q];
        req.sum_buckets = REPAIR_WINDOW_BUCKETS;
        cluster_msg_t ans = {0};
        int rc = repair_call(r, peer, &req, &ans, em);
        if (rc != 0) return rc;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        if (a->n_sums != NSUMS) { /* a node that does not split them (an older version) */
            cluster_msg_free(&ans);
            return errmsg_set(em, ERR_UNSUPPORTED, "%s: %zu sums, not %d", peer, a->n_sums, NSUMS);
        }
        add_sums(out, a->sums);
        cluster_msg_free(&ans);
    }
    return 0;
}

/* 1 when peer holds every profile this node holds of range f within the
 * seen span (by digest), so clearing this copy loses nothing recent. */
static int holds_recent(repair_t *r, const char *peer, ring_range_t f)
{
    int64_t from_s, until_s;
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &from_s, &until_s);
    if (from_s >= until_s) return 1; /* no seen span: nothing to lose there */
    ring_ranges_t one = {0};
    repair_digest_t mine = {0}, theirs = {0};
    errmsg_t em = {{0}};
    int rc = ring_ranges_add(&one, f);
    if (rc == 0)
        rc = repair_digest_build(r->storage, &f, 1, from_s, until_s, REPAIR_BUCKET_S, &mine);
    if (rc == 0) rc = repair_remote_digest(r, peer, &one, from_s, until_s, &theirs, NULL, &em);
    int ok = rc == 0 && repair_holds_all(&mine, &theirs);
    if (rc != 0) log_debug("repair", "window check: digest of %s: %s", peer, errmsg_text(&em, rc));
    repair_digest_free(&mine);
    repair_digest_free(&theirs);
    ring_ranges_free(&one);
    return ok;
}

/* The replica of range f (replicas reps) whose copy holds every other
 * compared copy and more than this node's (dominance), when it is not this
 * node; NULL otherwise. *mixed counts the replicas whose copy and this
 * node's each hold more somewhere. */
static const char *largest_copy(repair_t *r, const cluster_view_t *v, ring_range_t f,
                                const uint32_t *reps, uint32_t n, int64_t until_s, int *mixed)
{
    sums_t best, mine, s;
    int rc = local_sums(r, f, until_s, mine);
    if (rc != 0) {
        log_warn("repair", "window check: the sums of this node's windows: %s", err_message(rc));
        return NULL;
    }
    memcpy(best, mine, sizeof best);
    const char *who = NULL;
    for (uint32_t k = 0; k < n && !r->closing; k++) {
        uint32_t i = reps[k];
        if ((int)i == v->self || !v->reachable[i] || r->unanswered[i]) continue;
        if (v->marked != NULL && v->marked[i]) continue; /* it missed writes */
        const char *id = ring_node_name(v->ring, i);
        errmsg_t em = {{0}};
        rc = peer_sums(r, id, f, until_s, s, &em);
        if (rc != 0) {
            log_debug("repair", "window check with %s: %s", id, errmsg_text(&em, rc));
            if (repair_rc_unanswered(rc)) r->unanswered[i] = 1;
            continue;
        }
        *mixed += dominance(s, mine) == 2;
        if (dominance(s, best) == 1) {
            memcpy(best, s, sizeof best);
            who = id;
        }
    }
    return who;
}

static int hand(repair_t *r, ring_range_t f, const char *src)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi);
    for (int q = 0; q < k; q++) {
        if (GROW(r->wc.prefer, r->wc.prefercap, r->wc.nprefer + 1, GROW_UNLIMITED) != 0)
            return ERR_NOMEM;
        repair_prefer_t *p = &r->wc.prefer[r->wc.nprefer++];
        p->lo = lo[q];
        p->hi = hi[q];
        snprintf(p->node, sizeof p->node, "%s", src);
        uv_mutex_lock(&r->mu);
        int rc = cluster_intervals_append(&r->wc.lo, &r->wc.hi, &r->wc.n, &r->wc.cap, lo[q], hi[q]);
        uv_mutex_unlock(&r->mu);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Range f: compared, and handed when another replica holds more. */
static void check_range(repair_t *r, const cluster_view_t *v, ring_range_t f, int64_t until_s,
                        repair_stats_t *st)
{
    uint32_t reps[RING_MAX_RF], n = ring_replicas(v->ring, f.end, v->rf, reps);
    st->wc_ranges++;
    int mixed = 0;
    const char *src = largest_copy(r, v, f, reps, n, until_s, &mixed);
    if (mixed > 0) {
        st->wc_mixed++;
        log_warn("repair",
                 "window check of (%016llx, %016llx]: this node and %d other replica(s) each "
                 "hold old windows the other lacks: neither copy is taken for the other, the "
                 "difference stays",
                 (unsigned long long)f.start, (unsigned long long)f.end, mixed);
    }
    if (src == NULL) return;
    if (!holds_recent(r, src, f)) { /* its own pass fetches them, or they are in flight */
        st->wc_deferred++;
        log_info("repair",
                 "window check of (%016llx, %016llx]: %s holds more old windows, but not every "
                 "recent profile this node holds: checked again by the next pass",
                 (unsigned long long)f.start, (unsigned long long)f.end, src);
        return;
    }
    if (hand(r, f, src) != 0) {
        log_error("repair", "window check: out of memory");
        return;
    }
    st->wc_differing++;
    log_info("repair",
             "window check of (%016llx, %016llx]: %s holds more windows older than the seen "
             "span than this node: clearing and streaming it whole from there",
             (unsigned long long)f.start, (unsigned long long)f.end, src);
}

static int due(repair_t *r, uint64_t now)
{
    uv_mutex_lock(&r->mu);
    int demanded = r->wc.demanded;
    r->wc.demanded = 0;
    uv_mutex_unlock(&r->mu);
    return demanded || (r->o.windows_interval_ms > 0 && now >= r->wc.due_ms);
}

void repair_windows_check(repair_t *r, const cluster_view_t *v, repair_stats_t *st)
{
    uint64_t now = repair_now_ms(r);
    if (!due(r, now)) return;
    if (v->ring == NULL || v->self < 0) return;
    int64_t from_s, until_s, horizon = (int64_t)(now / 1000) - REPAIR_MARGIN_S;
    repair_span(&r->o, (int64_t)(now / 1000), &from_s, &until_s);
    if (from_s < horizon) horizon = from_s; /* newer ones: the seen comparison's */
    st->wc_ran = 1;
    r->wc.nprefer = 0; /* a fresh check: older handed intervals were streamed by now */
    uint32_t nr = ring_range_count(v->ring);
    for (uint32_t j = 0; j < nr && !r->closing; j++) {
        ring_range_t f = ring_range_at(v->ring, j);
        uint32_t reps[RING_MAX_RF], n = ring_replicas(v->ring, f.end, v->rf, reps);
        int mine = 0;
        for (uint32_t k = 0; k < n; k++)
            mine |= (int)reps[k] == v->self;
        if (mine && n > 1) check_range(r, v, f, horizon, st);
    }
    /* a range left for later is checked again by the next pass, not a whole interval on */
    r->wc.due_ms = st->wc_deferred > 0 ? now : now + r->o.windows_interval_ms;
    st->wc_ms = repair_now_ms(r) - now;
    log_debug("repair", "window check: %llu range(s) compared in %llu ms, %llu handed, %llu mixed",
              (unsigned long long)st->wc_ranges, (unsigned long long)st->wc_ms,
              (unsigned long long)st->wc_differing, (unsigned long long)st->wc_mixed);
    uv_mutex_lock(&r->mu);
    r->counters.windows_checks++;
    r->counters.windows_differing += st->wc_differing;
    r->counters.windows_mixed += st->wc_mixed;
    int handed = r->wc.n > 0;
    if (handed && !r->closing) uv_async_send(&r->async);
    uv_mutex_unlock(&r->mu);
}

void repair_windows_take(repair_t *r, uint64_t **lo, uint64_t **hi, size_t *n)
{
    uv_mutex_lock(&r->mu);
    *lo = r->wc.lo;
    *hi = r->wc.hi;
    *n = r->wc.n;
    r->wc.lo = r->wc.hi = NULL;
    r->wc.n = r->wc.cap = 0;
    uv_mutex_unlock(&r->mu);
}

void repair_windows_prefer(const repair_t *r, const cluster_view_t *v, uint64_t a, uint64_t b,
                           uint32_t *reps, uint32_t n)
{
    for (size_t i = 0; i < r->wc.nprefer; i++) {
        const repair_prefer_t *p = &r->wc.prefer[i];
        if (a < p->lo || b > p->hi) continue;
        for (uint32_t k = 1; k < n; k++)
            if (strcmp(ring_node_name(v->ring, reps[k]), p->node) == 0) {
                uint32_t t = reps[k];
                memmove(reps + 1, reps, k * sizeof *reps);
                reps[0] = t;
                return;
            }
        return;
    }
}

void repair_windows_free(repair_t *r)
{
    free(r->wc.prefer);
    free(r->wc.lo);
    free(r->wc.hi);
}
