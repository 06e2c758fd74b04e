/* repair_regain.c — streaming in the ranges a node gained by a removal
 * (repair_int.h; docs/cluster.md, "Removing a node"), and clearing a
 * store's old copy of a range before any stream into it.
 *
 * The loop hands the thread the gained intervals (cluster_regain.c). Once
 * an interval's removal settled (the move margin from when this process
 * first had it: every write accepted under the old ring is on the surviving
 * replicas, every later one reaches this node live), a pass clears this
 * node's copy of it and streams it, split at the current ring's ranges,
 * from a reachable replica of each, as a join does (repair_stream_interval:
 * residuals, kept profiles, span trees, the totals check). An interval is
 * cleared once: a second removal adds its intervals to the regain, which
 * goes on with the others where they stand; a restart reads
 * DATA_DIR/regain.progress (repair_regain_file.c: the cleared intervals and
 * each piece's stream cursor, written after the clear and after every
 * page) and goes on after the cursors, the markers of the windows already
 * stored keeping any from being added twice. A complete pass that starts
 * after every interval was streamed finishes the regain: the progress file
 * goes, then the loop drops DATA_DIR/regain and the node is read from again.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

repair_stream_state_t *repair_stream_state(repair_streams_t *l, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].lo == lo && l->v[i].hi == hi) return &l->v[i];
    if (GROW(l->v, l->cap, l->n + 1, GROW_UNLIMITED) != 0) return NULL;
    repair_stream_state_t *ss = &l->v[l->n++];
    memset(ss, 0, sizeof *ss);
    ss->lo = lo;
    ss->hi = hi;
    return ss;
}

int repair_clear(repair_t *r, const uint64_t *lo, const uint64_t *hi, size_t n)
{
    storage_clear_stats_t cs;
    errmsg_t em = {{0}};
    int rc = storage_range_clear(r->storage, lo, hi, n, &cs, &em);
    if (rc != 0) {
        log_error("repair", "cannot clear the ranges to receive: %s", errmsg_text(&em, rc));
        return rc;
    }
    uv_mutex_lock(&r->mu);
    r->counters.cleared += n;
    uv_mutex_unlock(&r->mu);
    log_info("repair",
             "cleared %zu token interval(s) before receiving them whole: %llu series, "
             "%llu span trees of an older copy",
             n, (unsigned long long)cs.series, (unsigned long long)cs.spans);
    return 0;
}

void repair_regain_set(repair_t *r, const uint64_t *lo, const uint64_t *hi, size_t n, uint64_t gen)
{
    uv_mutex_lock(&r->mu);
    size_t cap = r->regain.cap;
    int ok = GROW(r->regain.lo, cap, n, GROW_UNLIMITED) == 0 &&
             GROW(r->regain.hi, r->regain.cap, n, GROW_UNLIMITED) == 0;
    if (ok) {
        if (n > 0) { /* none: lo and hi may be NULL */
            memcpy(r->regain.lo, lo, n * sizeof *lo);
            memcpy(r->regain.hi, hi, n * sizeof *hi);
        }
        r->regain.n = n;
        r->regain.gen = gen;
    } else {
        log_error("repair", "out of memory: the regain of %zu interval(s) waits", n);
    }
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
}

int repair_regain_pending(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    int n = r->regain.n > 0;
    uv_mutex_unlock(&r->mu);
    return n;
}

/* A copy of the intervals and their generation (thread). */
typedef struct rg_copy {
    uint64_t *lo, *hi;
    size_t n;
    uint64_t gen;
} rg_copy_t;

int repair_cut_at_gains(const uint64_t *glo, const uint64_t *ghi, size_t gn, uint64_t lo,
                        uint64_t hi, uint64_t **olo, uint64_t **ohi, size_t *on, size_t *cap)
{
    for (;;) {
        uint64_t end = hi; /* the first edge of a gain inside [lo, hi] */
        for (size_t k = 0; k < gn; k++) {
            if (glo[k] > lo && glo[k] <= end) end = glo[k] - 1;
            if (ghi[k] >= lo && ghi[k] < end) end = ghi[k];
        }
        size_t lcap = *cap; /* both arrays grow to the same capacity */
        if (GROW(*olo, lcap, *on + 1, GROW_UNLIMITED) != 0 ||
            GROW(*ohi, *cap, *on + 1, GROW_UNLIMITED) != 0)
            return ERR_NOMEM;
        (*olo)[*on] = lo;
        (*ohi)[(*on)++] = end;
        if (end == hi) return 0;
        lo = end + 1;
    }
}

/* A copy of the intervals and their generation, each cut at the edges of
 * the intervals a removal gave a full repair (repair_cut_at_gains), so
 * that one is united by id or streamed whole as one piece (iv_united). */
static int take_copy(repair_t *r, rg_copy_t *c)
{
    memset(c, 0, sizeof *c);
    size_t cap = 0;
    int rc = 0;
    uv_mutex_lock(&r->mu);
    c->gen = r->regain.gen;
    for (size_t i = 0; rc == 0 && i < r->regain.n; i++)
        rc = repair_cut_at_gains(r->fu_lo, r->fu_hi, r->fu_n, r->regain.lo[i], r->regain.hi[i],
                                 &c->lo, &c->hi, &c->n, &cap);
    uv_mutex_unlock(&r->mu);
    return rc;
}

/* Written after the clear and after every page streamed: a restart goes
 * on from there (repair_regain_file.c). */
static void save_progress(repair_t *r)
{
    if (repair_regain_progress_save(r) != 0)
        log_warn("repair", "cannot write the regain progress: a restart streams more again");
}

/* The cursor goes back to the start in DATA_DIR/regain.progress before the
 * clear (repair_stream_heal): a crash between the two walks the piece again
 * with its windows marked (skipped), and the check finds the difference
 * again. */
int repair_regain_heal(repair_t *r, repair_stream_state_t *ss)
{
    return repair_stream_heal(r, ss, "regain piece", repair_regain_progress_save);
}

/* The piece [a, b] of a regain interval inside one range of the current
 * ring, streamed from a reachable replica of that range other than this
 * node (repair_stream_replicas: one that does not answer is left for the
 * rest of the pass); 1 when streamed and checked. One whose check keeps
 * disagreeing is cleared and streamed again (repair_regain_heal). */
static int stream_piece(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a, uint64_t b,
                        repair_stats_t *st)
{
    uint32_t reps[RING_MAX_RF], n = ring_replicas(v->ring, end, v->rf, reps);
    int mine = 0;
    for (uint32_t k = 0; k < n; k++)
        mine |= (int)reps[k] == v->self;
    if (!mine) return 1;                        /* the ring moved on: no longer this node's */
    repair_windows_prefer(r, v, a, b, reps, n); /* the copy a window check chose */
    repair_stream_state_t *ss = repair_stream_state(&r->rg.streams, a, b);
    if (ss == NULL) return 0;
    if (ss->done && ss->spans_done && ss->checked) return 1;
    int ok = repair_stream_replicas(r, v, reps, n, ss, st, save_progress, "regain");
    if (!ok && !r->closing) repair_regain_heal(r, ss);
    return ok;
}

/* Calls fn on each piece of interval iv split at v's ranges (`end`: the
 * piece's range end); with all_of, stops at the first that returns 0. 1
 * when every call returned nonzero (and nothing closed). */
typedef int (*piece_fn)(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a, uint64_t b,
                        void *ctx);
static int each_piece(repair_t *r, const cluster_view_t *v, const repair_rg_iv_t *iv, int all_of,
                      piece_fn fn, void *ctx)
{
    int ok = 1;
    uint32_t nr = ring_range_count(v->ring);
    for (uint32_t j = 0; j < nr && !r->closing; j++) {
        ring_range_t rr = ring_range_at(v->ring, j);
        uint64_t lo[2], hi[2];
        int k = ring_range_intervals(rr, lo, hi);
        for (int q = 0; q < k; q++) {
            uint64_t a = lo[q] > iv->lo ? lo[q] : iv->lo;
            uint64_t b = hi[q] < iv->hi ? hi[q] : iv->hi;
            if (a <= b && !fn(r, v, rr.end, a, b, ctx)) ok = 0;
            if (!ok && all_of) return 0;
        }
    }
    return ok && !r->closing;
}

static int stream_piece_fn(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a,
                           uint64_t b, void *st)
{
    return stream_piece(r, v, end, a, b, st);
}

/* Interval iv, split at the current ring's ranges, streamed. */
static int stream_iv(repair_t *r, const cluster_view_t *v, const repair_rg_iv_t *iv,
                     repair_stats_t *st)
{
    /* live writes land in recent windows of both sides at different times */
    r->stream_check_s = (int64_t)(iv->settled_ms / 1000) - REPAIR_MARGIN_S;
    return each_piece(r, v, iv, 0, stream_piece_fn, st);
}

/* The thread's interval [lo, hi], else one that holds it (an interval cut
 * since at a removal's edges: its parts were cleared with it), or NULL. */
static repair_rg_iv_t *find_iv(repair_t *r, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < r->rg.niv; i++)
        if (r->rg.iv[i].lo == lo && r->rg.iv[i].hi == hi) return &r->rg.iv[i];
    for (size_t i = 0; i < r->rg.niv; i++)
        if (r->rg.iv[i].lo <= lo && hi <= r->rg.iv[i].hi) return &r->rg.iv[i];
    return NULL;
}

/* The thread's intervals made those of c: one it had keeps its state (a
 * second removal adds to a regain, it does not start it over), a new one
 * starts its settle margin at t0, one no longer listed goes (with its
 * pieces). The progress file is read first, once. */
static int sync_ivs(repair_t *r, const rg_copy_t *c, uint64_t t0)
{
    if (!r->rg.loaded) {
        errmsg_t em = {{0}};
        int rc = repair_regain_progress_load(r, &em);
        if (rc != 0) log_warn("repair", "%s: clearing and streaming afresh", errmsg_text(&em, rc));
        r->rg.loaded = 1;
        if (r->rg.niv > 0)
            log_info("repair",
                     "resuming the regain: %zu interval(s) cleared already, %zu piece(s) with "
                     "a stream cursor",
                     r->rg.niv, r->rg.streams.n);
    }
    repair_rg_iv_t *v = malloc((c->n ? c->n : 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < c->n; i++) {
        const repair_rg_iv_t *had = find_iv(r, c->lo[i], c->hi[i]);
        v[i] = had != NULL ? *had : (repair_rg_iv_t){c->lo[i], c->hi[i], t0, 0};
    }
    free(r->rg.iv);
    r->rg.iv = v;
    r->rg.niv = r->rg.ivcap = c->n;
    size_t k = 0; /* pieces inside a listed interval stay */
    for (size_t i = 0; i < r->rg.streams.n; i++) {
        const repair_stream_state_t *ss = &r->rg.streams.v[i];
        int in = 0;
        for (size_t j = 0; !in && j < c->n; j++)
            in = ss->lo >= c->lo[j] && ss->hi <= c->hi[j];
        if (in) r->rg.streams.v[k++] = *ss;
    }
    r->rg.streams.n = k;
    return 0;
}

/* Whether the piece [a, b] of a regain interval in the range ending at
 * `end` has a replica other than this node that serves it as a source now
 * (a STREAM_CHECK it answers: its own copy is to be trusted), or is no
 * longer this node's. */
static int piece_has_source(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a,
                            uint64_t b)
{
    uint32_t reps[RING_MAX_RF], n = ring_replicas(v->ring, end, v->rf, reps);
    int mine = 0;
    for (uint32_t k = 0; k < n; k++)
        mine |= (int)reps[k] == v->self;
    if (!mine) return 1;
    repair_windows_prefer(r, v, a, b, reps, n);
    uint32_t k = 0;
    for (const char *src; !r->closing && (src = repair_next_source(r, v, reps, n, &k)) != NULL;
         k++) {
        Flamedb__Cluster__RepairRequest q;
        repair_request_init(&q, FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_STREAM_CHECK, 0, 0);
        q.lo = a;
        q.hi = b;
        cluster_msg_t ans = {0};
        errmsg_t em = {{0}};
        int rc = repair_call(r, src, &q, &ans, &em);
        if (rc == 0) {
            cluster_msg_free(&ans);
            return 1;
        }
        log_debug("repair", "regain source %s: %s", src, errmsg_text(&em, rc));
        if (repair_rc_unanswered(rc)) r->unanswered[reps[k]] = 1;
    }
    return 0;
}

/* Whether every piece of interval iv (split at v's ranges) has a source
 * (piece_has_source): an interval is cleared only then. Clearing it with
 * none would drop this node's copy while no whole one is to be had (the
 * other replicas may be clearing theirs: all three of a range in a full
 * repair at once), and the stream that follows would copy a short one. */
static int has_source_fn(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a, uint64_t b,
                         void *ctx)
{
    (void)ctx;
    return piece_has_source(r, v, end, a, b);
}

static int iv_has_sources(repair_t *r, const cluster_view_t *v, const repair_rg_iv_t *iv)
{
    return each_piece(r, v, iv, 1, has_source_fn, NULL);
}

/* Whether peer holds a copy of [a, b] of its own: it answers a window
 * check's sums (an empty span of them: the probe reads nothing), which a
 * node in a full repair, joining, not accounted for since its start or
 * regaining the interval refuses, and a voided one answers (its copy is
 * its own, only maybe short of writes whose mark left). 1 yes, 0 no, or
 * the error of a peer that did not answer. */
static int holds_own(repair_t *r, const char *peer, uint64_t a, uint64_t b)
{
    Flamedb__Cluster__RepairRequest q;
    repair_request_init(&q, FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_STREAM_CHECK, 0, 1);
    q.lo = a;
    q.hi = b;
    q.sum_buckets = 1;
    cluster_msg_t ans = {0};
    errmsg_t em = {{0}};
    int rc = repair_call(r, peer, &q, &ans, &em);
    if (rc == 0) cluster_msg_free(&ans);
    if (rc != 0) log_debug("repair", "union probe %s: %s", peer, errmsg_text(&em, rc));
    return rc == 0 ? 1 : rc == REPAIR_NOT_SOURCE || rc == REPAIR_NO_COPY ? 0 : rc;
}

/* Whether each other replica of [a, b] (reps, n) is reachable and at
 * least one holds a copy of its own (holds_own): with every one in a full
 * repair, say, the union would hold nothing more than marks that cannot
 * tell what they lack (they wait, flagged, for evidence or the operator:
 * docs/cluster.md). 1 when the piece may be united. */
static int union_allowed(repair_t *r, const cluster_view_t *v, uint64_t a, uint64_t b,
                         const uint32_t *reps, uint32_t n)
{
    int own = 0;
    for (uint32_t k = 0; k < n; k++) {
        if ((int)reps[k] == v->self) continue;
        if (!v->reachable[reps[k]] || r->unanswered[reps[k]]) {
            log_debug("repair", "regain piece [%016llx, %016llx] waits: %s does not answer",
                      (unsigned long long)a, (unsigned long long)b,
                      ring_node_name(v->ring, reps[k]));
            return 0;
        }
    }
    for (uint32_t k = 0; k < n && !own && !r->closing; k++) {
        if ((int)reps[k] == v->self) continue;
        int rc = holds_own(r, ring_node_name(v->ring, reps[k]), a, b);
        if (rc < 0 && repair_rc_unanswered(rc)) r->unanswered[reps[k]] = 1;
        if (rc < 0) return 0;
        own = rc;
    }
    if (!own)
        log_debug("repair",
                  "regain piece [%016llx, %016llx] waits: no other replica holds a copy of its "
                  "own to unite with",
                  (unsigned long long)a, (unsigned long long)b);
    return own;
}

/* Piece [a, b] of a full repair's own interval that no replica serves
 * whole (each other replica is marked, voided, regaining it or in a full
 * repair itself): when every other replica of its range is reachable and
 * one holds a copy of its own (union_allowed), the profiles each one names
 * and this node lacks are fetched by id (repair_windows_pull, answered by
 * a copy under repair too), then its old windows no id names are filled
 * (repair_windows_fill_old). This node's copy is kept, so it ends with the
 * union of every replica's copy, each profile once (a profile held as a
 * tree or seen is not fetched); 1 when each answered and every old window
 * was made the union (else the piece waits, flagged). */
static int union_piece(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a, uint64_t b,
                       void *ctx)
{
    repair_stats_t *st = ctx;
    uint32_t reps[RING_MAX_RF], n = ring_replicas(v->ring, end, v->rf, reps);
    uint32_t others = 0, self = 0;
    for (uint32_t k = 0; k < n; k++) {
        self |= (int)reps[k] == v->self;
        others += (int)reps[k] != v->self;
    }
    if (!self) return 1; /* the ring moved on: no longer this node's */
    if (!union_allowed(r, v, a, b, reps, n)) return 0;
    uint64_t fetched = 0;
    for (uint32_t k = 0; k < n && !r->closing; k++) {
        if ((int)reps[k] == v->self) continue;
        const char *peer = ring_node_name(v->ring, reps[k]);
        errmsg_t em = {{0}};
        int exact = 1, rc = repair_windows_pull(r, peer, a, b, &fetched, st, &em);
        if (rc == 0) rc = repair_windows_fill_old(r, peer, a, b, &exact, st, &em);
        if (rc != 0) {
            log_info("repair", "regain [%016llx, %016llx]: profiles of %s: %s",
                     (unsigned long long)a, (unsigned long long)b, peer, errmsg_text(&em, rc));
            if (repair_rc_unanswered(rc)) r->unanswered[reps[k]] = 1;
            return 0;
        }
        if (!exact) {
            log_info("repair",
                     "regain piece [%016llx, %016llx] waits: %s holds old windows no profile id "
                     "names that this node's copy holds differently (their union cannot be "
                     "told), or that were left for later: not united, not read from here",
                     (unsigned long long)a, (unsigned long long)b, peer);
            return 0;
        }
    }
    return others > 0 && !r->closing;
}

/* Piece [a, b], united: streamed as far as the regain is concerned. */
static int united_piece(repair_t *r, const cluster_view_t *v, uint64_t end, uint64_t a, uint64_t b,
                        void *ctx)
{
    (void)v, (void)end, (void)ctx;
    repair_stream_state_t *ss = repair_stream_state(&r->rg.streams, a, b);
    if (ss == NULL) return 0;
    ss->done = ss->spans_done = ss->checked = 1;
    return 1;
}

/* Interval iv of a full repair's own regain (repair_full_union_set) that
 * no replica serves whole: united by id from every other replica of each
 * piece, never cleared. A replica whose mark went with a member that left
 * (voided) serves no whole copy until its window check compared it, and
 * that check needs this node's sums, which a full repair refuses: before,
 * both waited for each other for good (and before the voided replica
 * refused, this node cleared its copy, which held the writes, and streamed
 * the short one). Now this node ends with every copy's named profiles, its
 * full repair converges, and the voided replica's check then compares
 * with it. 1 when united. */
static int iv_united(repair_t *r, const cluster_view_t *v, repair_rg_iv_t *iv, repair_stats_t *st)
{
    uv_mutex_lock(&r->mu);
    int ok = r->full_union && r->full_gen != 0 && !r->fu_all;
    for (size_t i = 0; ok && i < r->fu_n; i++) /* a removal's: its copy here is none */
        ok = iv->hi < r->fu_lo[i] || iv->lo > r->fu_hi[i];
    int on = r->full_union && r->full_gen != 0;
    uv_mutex_unlock(&r->mu);
    if (!ok)
        log_debug("repair", "regain [%016llx, %016llx] waits for a whole source: %s",
                  (unsigned long long)iv->lo, (unsigned long long)iv->hi,
                  on ? "a removal gave it (its copy here is none): never united"
                     : "no full repair: a regain's interval is never united");
    if (!ok || !each_piece(r, v, iv, 1, union_piece, st)) return 0;
    if (!each_piece(r, v, iv, 1, united_piece, NULL)) return 0;
    iv->settled_ms = iv->since_ms + r->settle_ms; /* not cleared: its copy was kept */
    log_info("repair",
             "regain [%016llx, %016llx]: no replica serves it whole (each is marked, voided, "
             "regaining or in a full repair); united instead with every other replica's "
             "profiles by id (%llu fetched so far this pass), this node's copy kept",
             (unsigned long long)iv->lo, (unsigned long long)iv->hi,
             (unsigned long long)st->wc_fetched);
    return 1;
}

/* Whether interval i is to be cleared now: its removal settled by t0, it
 * was not cleared yet, and a source serves every piece of it; *fresh
 * counts those found without one for the first time. One of a full
 * repair's own that none serves may be united instead (iv_united). */
static int clear_now(repair_t *r, const cluster_view_t *v, size_t i, uint64_t t0, size_t *fresh,
                     repair_stats_t *st)
{
    repair_rg_iv_t *iv = &r->rg.iv[i];
    if (iv->settled_ms != 0 || t0 < iv->since_ms + r->settle_ms) return 0;
    if (iv_has_sources(r, v, iv)) return 1;
    if (iv_united(r, v, iv, st)) return 0;
    *fresh += !iv->waiting;
    iv->waiting = 1;
    return 0;
}

/* Clears, in one batch, every interval whose removal settled by t0, that
 * was not cleared yet and that has a source for each piece; 0 when none
 * failed. */
static int clear_settled(repair_t *r, const cluster_view_t *v, uint64_t t0, repair_stats_t *st)
{
    uint64_t *lo = malloc((r->rg.niv ? r->rg.niv : 1) * sizeof *lo);
    uint64_t *hi = malloc((r->rg.niv ? r->rg.niv : 1) * sizeof *hi);
    size_t n = 0;
    int rc = lo != NULL && hi != NULL ? 0 : ERR_NOMEM;
    uint8_t *now = calloc(r->rg.niv ? r->rg.niv : 1, 1);
    size_t fresh = 0;
    if (now == NULL) rc = ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < r->rg.niv; i++) {
        const repair_rg_iv_t *iv = &r->rg.iv[i];
        if ((now[i] = (uint8_t)clear_now(r, v, i, t0, &fresh, st)) != 0) {
            lo[n] = iv->lo;
            hi[n++] = iv->hi;
        }
    }
    if (rc == 0 && n > 0) rc = repair_clear(r, lo, hi, n);
    for (size_t i = 0; rc == 0 && n > 0 && i < r->rg.niv; i++) {
        repair_rg_iv_t *iv = &r->rg.iv[i];
        if (now[i]) iv->settled_ms = iv->since_ms + r->settle_ms;
    }
    free(now);
    if (fresh > 0) /* once per interval and process */
        log_warn("repair",
                 "regain: %zu token interval(s) have no other replica that serves them as a "
                 "whole copy now (each is down, or refuses: its own copy is being repaired); "
                 "not cleared, they wait, and this node is not read from for them",
                 fresh);
    if (rc == 0 && n > 0) save_progress(r);
    free(lo);
    free(hi);
    return rc;
}

/* The loop's ask to lift a full repair mark by its evidence
 * (cluster_full.c), answered between the sync of the intervals and their
 * clear, so no clear of this thread falls between the answer and the
 * loop's lift: granted when no interval of the regain was cleared (the
 * node's copy is as it was when marked); then nothing is cleared until
 * the loop, having dropped the intervals, releases the hold
 * (repair_full_lift_release). 1 while held. */
static int lift_held(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    if (r->lift.ask != 0) {
        int cleared = 0;
        for (size_t i = 0; i < r->rg.niv; i++)
            cleared |= r->rg.iv[i].settled_ms != 0;
        r->lift.answer = r->lift.ask;
        r->lift.granted = !cleared;
        r->lift.held |= !cleared;
        r->lift.ask = 0;
        if (!r->closing) uv_async_send(&r->async);
    }
    int held = r->lift.held;
    uv_mutex_unlock(&r->mu);
    return held;
}

int repair_regain_stream(repair_t *r, const cluster_view_t *v, uint64_t t0, repair_stats_t *st)
{
    rg_copy_t c = {0};
    if (take_copy(r, &c) != 0) return 0;
    int ok = 1;
    if (c.n == 0) { /* none, or finished: a later regain starts afresh */
        r->rg.niv = 0;
        r->rg.streams.n = 0;
        lift_held(r);
        goto out;
    }
    if (v->ring == NULL || v->self < 0) {
        ok = 0;
        goto out;
    }
    if (c.gen != r->rg.gen) { /* a longer (or reloaded) list: done again once all of it is */
        r->rg.gen = c.gen;
        r->rg.streamed_ms = 0;
    }
    if (sync_ivs(r, &c, t0) != 0 || lift_held(r) || clear_settled(r, v, t0, st) != 0) {
        ok = 0;
        goto out;
    }
    for (size_t i = 0; i < r->rg.niv && !r->closing; i++)
        ok &= r->rg.iv[i].settled_ms != 0 && stream_iv(r, v, &r->rg.iv[i], st);
    ok &= !r->closing;
    if (ok && r->rg.streamed_ms == 0) r->rg.streamed_ms = repair_now_ms(r);
out:
    free(c.lo);
    free(c.hi);
    return ok;
}

int repair_regain_after(repair_t *r, int complete, uint64_t t0)
{
    if (r->rg.niv == 0) return 1; /* none streamed (or it ended at an earlier pass) */
    if (!complete || r->rg.streamed_ms == 0 || t0 <= r->rg.streamed_ms) return 0;
    int ended = 0;
    uv_mutex_lock(&r->mu);
    if (r->regain.n > 0 && r->regain.gen == r->rg.gen) {
        /* gone before the loop drops DATA_DIR/regain: a crash between
         * streams again, it never resumes a later regain */
        if (repair_regain_progress_remove(r) != 0) {
            log_warn("repair", "cannot remove the regain progress file: finished later");
        } else {
            r->regain_done = r->rg.gen;
            r->counters.regains++;
            ended = 1;
            if (!r->closing) uv_async_send(&r->async);
        }
    }
    uv_mutex_unlock(&r->mu);
    r->rg.streamed_ms = 0;
    return ended;
}
