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
 *
 * Sums cannot tell which profiles a window holds: two copies that each
 * hold one the other lacks hold neither the other, and two profiles in one
 * bucket can make a copy that lacks one look as if it held the other's.
 * So the check also compares what profile_trees names of the range (every
 * stored profile, for --profile-retention): where the names differ, it
 * fetches by id each profile another replica holds and this node lacks
 * (stored once), so every replica ends with the union of what is named,
 * and a copy that lacks one of this node's is never taken as the whole.
 * Past them, where the copies are still mixed, the windows another copy
 * holds and this node does not hold at all are copied here (fill,
 * repair_fill.c): each is the union there, exactly; a series with a
 * window both hold differently is left as it is (no union can be told).
 * Before a copy whose sums hold this node's is taken whole, its old
 * windows are compared with this node's stack by stack (holds_old): the
 * sums of one bucket cannot tell whose profiles a window holds.
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

/* What a copy's profile_trees name of a range: the entries (a stored
 * series of a profile) of profile time in [from, horizon), counted and
 * hashed (repair_entry_hash, order-free); known 0 when they were not read
 * (a peer that does not answer them, or no profile time left to compare). */
typedef struct ids_sum {
    uint64_t count, hash;
    int known;
} ids_sum_t;

/* A compared replica's copy of the range being checked. */
typedef struct copy {
    const char *id;
    sums_t sums;
    ids_sum_t ids;
    int lacks_mine; /* its profile_trees lack a profile this node's name */
} copy_t;

static int sum_id(void *ctx, const storage_seen_entry_t *e, int tree_kept)
{
    (void)tree_kept;
    ids_sum_t *x = ctx;
    x->count++;
    x->hash += repair_entry_hash(e);
    return 0;
}

/* The oldest profile time whose profile_trees entry every replica still
 * holds if it stored the profile: an hour (REPAIR_MARGIN_S) inside
 * --profile-retention, so one replica's tree is never compared with
 * another's that expired a moment earlier (which would fetch the profile
 * again onto a copy that counts it). Never 0: 0 asks for no profile ids. */
static int64_t ids_from(const repair_t *r, int64_t now_s)
{
    if (r->o.profile_retention_s <= 0) return INT64_MIN / 2; /* kept forever */
    int64_t from = now_s - r->o.profile_retention_s + REPAIR_MARGIN_S;
    return from != 0 ? from : 1;
}

static int local_ids(repair_t *r, ring_range_t f, int64_t from_s, int64_t until_s, ids_sum_t *out)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi);
    *out = (ids_sum_t){0, 0, from_s < until_s};
    for (int q = 0; q < k && out->known; q++) {
        int rc = storage_ptree_scan(r->storage, lo[q], hi[q], NULL, from_s, until_s, sum_id, out);
        if (rc != 0) return rc;
    }
    return 0;
}

/* The peer's sums of range f (STREAM_CHECK of each interval, in buckets)
 * and, when ids_from_s < until_s, what its profile_trees name of it; 0, or
 * the error (REPAIR_NOT_SOURCE: its copy is not to be trusted now). */
static int peer_sums(repair_t *r, const char *peer, ring_range_t f, int64_t ids_from_s,
                     int64_t until_s, copy_t *c, errmsg_t *em)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi);
    memset(c->sums, 0, sizeof(sums_t));
    c->ids = (ids_sum_t){0, 0, ids_from_s < until_s};
    c->lacks_mine = 0;
    for (int q = 0; q < k; q++) {
        Flamedb__Cluster__RepairRequest req;
        repair_request_init(&req, RK(STREAM_CHECK), 0, until_s);
        req.lo = lo[q];
        req.hi = hi[q];
        req.sum_buckets = REPAIR_WINDOW_BUCKETS;
        if (c->ids.known) req.profiles_from_s = ids_from_s;
        cluster_msg_t ans = {0};
        int rc = repair_call(r, peer, &req, &ans, em);
        if (rc != 0) return rc;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        if (a->n_sums != NSUMS) { /* a node that does not split them (an older version) */
            cluster_msg_free(&ans);
            return errmsg_set(em, ERR_UNSUPPORTED, "%s: %zu sums, not %d", peer, a->n_sums, NSUMS);
        }
        add_sums(c->sums, a->sums);
        c->ids.known &= a->profile_trees; /* a node that does not read them: sums alone */
        c->ids.count += a->profile_count;
        c->ids.hash += a->profile_hash;
        cluster_msg_free(&ans);
    }
    return 0;
}

/* What pulling one copy's profiles found. */
typedef struct pull {
    uint64_t common;  /* entries it lists that this node's profile_trees hold */
    uint64_t wanted;  /* entries it lists that this node lacks, asked for */
    uint64_t fetched; /* of those, stored here (the others' trees are not kept) */
} pull_t;

/* 2 when this node holds the profile_trees entry of e (it is among those
 * this node's ids counted), 1 when only its seen entry (stored, say
 * untreed by a stream: a write of it would be skipped, but it is not
 * counted among this node's ids), 0 when neither. */
static int holds(repair_t *r, const Flamedb__Cluster__SeenEntry *e)
{
    storage_seen_entry_t se = {e->tenant, e->token, e->series_id, {0}, e->time_ns};
    memcpy(se.profile_id, e->profile_id.data, 16);
    int has = storage_ptree_has(r->storage, &se);
    if (has != 0) return has < 0 ? has : 2;
    return storage_seen_has(r->storage, &se);
}

static int fetch_wanted(repair_t *r, const char *peer, repair_wants_t *w, pull_t *p,
                        repair_stats_t *st, errmsg_t *em)
{
    if (w->n == 0) return 0;
    uint64_t unavailable = st->unavailable;
    int rc = repair_fetch(r, peer, w, st, em);
    if (rc == 0) p->fetched += w->n - (st->unavailable - unavailable);
    w->n = 0;
    return rc;
}

/* The profile_trees entries the peer lists for [lo, hi] of profile time in
 * [from_s, until_s) (IDS with profiles_from_s, paged) that this node holds
 * neither as a tree nor as seen: fetched (FETCH) and stored, each once
 * (storage_write_profile skips a profile already seen), REPAIR_WANT_MAX at
 * a time so the list held is bounded. */
static int pull_interval(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int64_t from_s,
                         int64_t until_s, pull_t *p, repair_stats_t *st, errmsg_t *em)
{
    repair_ids_cursor_t cur = {0};
    repair_wants_t w = {0};
    int more = 1, rc = 0;
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        repair_ids_request_init(&q, lo, hi, from_s, until_s, &cur);
        q.profiles_from_s = from_s; /* an older node: seen entries */
        cluster_msg_t ans = {0};
        if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        if (!a->profile_trees)
            rc = errmsg_set(em, ERR_UNSUPPORTED, "%s lists no profile trees", peer);
        for (size_t i = 0; rc == 0 && i < a->n_entries; i++) {
            int has = holds(r, a->entries[i]);
            if (has < 0)
                rc = errmsg_set(em, has, "profile lookup failed");
            else if (has == 2)
                p->common++; /* only these count against this node's ids */
            else if (has == 0 && (rc = repair_want_add(&w, a->entries[i])) == 0)
                p->wanted++;
        }
        if (rc == 0 && w.n >= REPAIR_WANT_MAX) rc = fetch_wanted(r, peer, &w, p, st, em);
        more = a->more && a->n_entries > 0;
        repair_ids_cursor_next(&cur, a->entries, a->n_entries);
        cluster_msg_free(&ans);
    }
    if (rc == 0 && !r->closing) rc = fetch_wanted(r, peer, &w, p, st, em);
    free(w.v);
    return rc;
}

int repair_windows_pull(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, uint64_t *fetched,
                        repair_stats_t *st, errmsg_t *em)
{
    pull_t p = {0};
    int64_t now_s = (int64_t)(repair_now_ms(r) / 1000);
    /* past any profile time a node takes (max-future is far shorter) */
    int rc = pull_interval(r, peer, lo, hi, ids_from(r, now_s), now_s + 400 * 86400, &p, st, em);
    *fetched += p.fetched;
    st->wc_fetched += p.fetched;
    return rc;
}

int repair_windows_fill_old(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int *exact_out,
                            repair_stats_t *st, errmsg_t *em)
{
    *exact_out = 1;
    if (r->o.profile_retention_s <= 0) return 0; /* profile ids name every window's profiles */
    int64_t by = ids_from(r, (int64_t)(repair_now_ms(r) / 1000));
    uint64_t inexact = st->wc_inexact, left = 0;
    int rc = repair_fill_interval(r, peer, lo, hi, by, st, &left, em);
    *exact_out = rc == 0 && left == 0 && st->wc_inexact == inexact;
    return rc;
}

static int pull(repair_t *r, const char *peer, ring_range_t f, int64_t from_s, int64_t until_s,
                pull_t *p, repair_stats_t *st, errmsg_t *em)
{
    uint64_t lo[2], hi[2];
    int k = ring_range_intervals(f, lo, hi), rc = 0;
    for (int q = 0; q < k && rc == 0; q++)
        rc = pull_interval(r, peer, lo[q], hi[q], from_s, until_s, p, st, em);
    return rc;
}

/* Copy c names other profiles than this node's (mine): the profiles it
 * holds and this node lacks are fetched here, and c->lacks_mine set when
 * it lacks one of this node's (its own check fetches those from here).
 * Then *mine and msums are this node's again. */
static void merge_ids(repair_t *r, ring_range_t f, int64_t from_s, int64_t until_s, copy_t *c,
                      ids_sum_t *mine, int64_t *msums, repair_stats_t *st)
{
    pull_t p = {0};
    errmsg_t em = {{0}};
    int rc = pull(r, c->id, f, from_s, until_s, &p, st, &em);
    uint64_t theirs_lack = mine->count > p.common ? mine->count - p.common : 0;
    c->lacks_mine = rc != 0 || theirs_lack > 0; /* unknown: not taken as a source */
    st->wc_fetched += p.fetched;
    if (rc != 0)
        log_warn("repair", "window check of (%016llx, %016llx]: profiles of %s: %s",
                 (unsigned long long)f.start, (unsigned long long)f.end, c->id,
                 errmsg_text(&em, rc));
    log_write(p.wanted > 0 ? LOG_INFO : LOG_DEBUG, "repair",
              "window check of (%016llx, %016llx]: %s names other profiles older than the seen "
              "span than this node: %llu it holds and this node lacked, %llu of them fetched "
              "(the others' trees are not kept); it lacks %llu of this node's",
              (unsigned long long)f.start, (unsigned long long)f.end, c->id,
              (unsigned long long)p.wanted, (unsigned long long)p.fetched,
              (unsigned long long)theirs_lack);
    if (p.fetched == 0) return;
    if (local_ids(r, f, from_s, until_s, mine) != 0 || local_sums(r, f, until_s, msums) != 0)
        mine->known = 0; /* the next check compares them again */
}

/* Profile times in [from_s, until_s): from the check's horizon (an hour
 * back: live writes land in recent windows at different times) up to where
 * the seen comparison starts, later when --seen-retention is under
 * --max-future + 2 h. Sums compare them nowhere, so only by id: what copy c
 * names there and this node lacks is fetched (a profile counts once however
 * often it is fetched), no window is copied or streamed whole. Before, a
 * write missed there with no mark left (its holder removed) stayed short
 * and unflagged for good. An error defers the check (wc_deferred). */
static void merge_recent(repair_t *r, ring_range_t f, int64_t from_s, int64_t until_s,
                         const copy_t *c, repair_stats_t *st)
{
    ids_sum_t mine;
    copy_t theirs = {.id = c->id};
    pull_t p = {0};
    errmsg_t em = {{0}};
    int rc = local_ids(r, f, from_s, until_s, &mine);
    if (rc == 0) rc = peer_sums(r, c->id, f, from_s, until_s, &theirs, &em);
    if (rc == 0 && !theirs.ids.known) return; /* an older peer: sums alone, as before */
    if (rc == 0 && theirs.ids.count == mine.count && theirs.ids.hash == mine.hash) return;
    if (rc == 0) rc = pull(r, c->id, f, from_s, until_s, &p, st, &em);
    st->wc_fetched += p.fetched;
    if (rc != 0) {
        st->wc_deferred++; /* compared again by the next pass */
        log_warn("repair", "window check of (%016llx, %016llx]: recent profiles of %s: %s",
                 (unsigned long long)f.start, (unsigned long long)f.end, c->id,
                 errmsg_text(&em, rc));
        return;
    }
    log_write(p.wanted > 0 ? LOG_INFO : LOG_DEBUG, "repair",
              "window check of (%016llx, %016llx]: %s names other profiles newer than the "
              "check's horizon but before the seen span: %llu it holds and this node lacked, "
              "%llu of them fetched",
              (unsigned long long)f.start, (unsigned long long)f.end, c->id,
              (unsigned long long)p.wanted, (unsigned long long)p.fetched);
}

/* Copy c holds old windows this node's does not (neither copy holds the
 * other, or c's lacks a profile of this node's): the windows of c that end
 * by the profile ids' span (from_s; until_s when there is none) and that
 * this node does not hold at all are copied here (repair_fill_interval:
 * the union of such a window is the one copy that has it, exactly). A
 * window both hold differently has no union the blocks can tell
 * (docs/cluster.md): its series is left, counted, and c never taken whole
 * over it.
 * Then msums is this node's again. */
static void fill(repair_t *r, ring_range_t f, int64_t from_s, int64_t until_s, copy_t *c,
                 int64_t *msums, repair_stats_t *st)
{
    int64_t by = from_s < until_s ? from_s : until_s;
    if (by <= 0) return; /* profile ids name every window's profiles (kept forever) */
    uint64_t lo[2], hi[2], filled = st->wc_filled, inexact = st->wc_inexact;
    int k = ring_range_intervals(f, lo, hi), rc = 0;
    errmsg_t em = {{0}};
    for (int q = 0; q < k && rc == 0 && !r->closing; q++)
        rc = repair_fill_interval(r, c->id, lo[q], hi[q], by, st, NULL, &em);
    filled = st->wc_filled - filled;
    inexact = st->wc_inexact - inexact;
    c->lacks_mine |= rc != 0 || inexact > 0;
    if (rc != 0)
        log_warn("repair", "window check of (%016llx, %016llx]: fill from %s: %s",
                 (unsigned long long)f.start, (unsigned long long)f.end, c->id,
                 errmsg_text(&em, rc));
    log_write(filled + inexact > 0 ? LOG_INFO : LOG_DEBUG, "repair",
              "window check of (%016llx, %016llx]: %s holds old windows no profile id names "
              "that this node lacked: %llu copied here; %llu both hold differently (their "
              "union cannot be told: their series left as they are)",
              (unsigned long long)f.start, (unsigned long long)f.end, c->id,
              (unsigned long long)filled, (unsigned long long)inexact);
    if (filled > 0 && local_sums(r, f, until_s, msums) != 0)
        c->lacks_mine = 1; /* not taken whole: the next check compares again */
}

/* Copy c's sums hold this node's and it names every profile this node's
 * names: before it is taken whole, each old window this node holds is
 * compared with c's stack by stack (two profiles in one bucket fool the
 * sums: one of 5 samples "holds" another of 3 on other stacks). One c does
 * not hold, or a walk that did not end, makes c a mixed copy (filled from,
 * never taken whole). */
static void holds_old(repair_t *r, ring_range_t f, int64_t from_s, int64_t until_s, copy_t *c,
                      repair_stats_t *st)
{
    int64_t by = from_s < until_s ? from_s : until_s;
    if (by <= 0) return;
    uint64_t lo[2], hi[2], shorter = 0;
    int64_t matched[STORAGE_RESOLUTION_COUNT] = {0};
    int k = ring_range_intervals(f, lo, hi), rc = 0;
    errmsg_t em = {{0}};
    for (int q = 0; q < k && rc == 0 && !r->closing; q++) {
        uint64_t n = 0;
        rc = repair_fill_holds_interval(r, c->id, lo[q], hi[q], by, st, &n, matched, &em);
        shorter += n;
    }
    sums_t mine;
    if (rc == 0) rc = local_sums(r, f, by, mine);
    for (int res = 0; rc == 0 && res < STORAGE_RESOLUTION_COUNT; res++) {
        int64_t held = 0; /* this node's windows the walk did not name: c lacks them */
        for (int b = 0; b < REPAIR_WINDOW_BUCKETS; b++)
            held = (int64_t)((uint64_t)held + (uint64_t)mine[b * STORAGE_RESOLUTION_COUNT + res]);
        shorter += held != matched[res];
    }
    if (rc == 0 && shorter == 0 && !r->closing) return;
    c->lacks_mine = 1;
    if (rc != 0)
        log_info("repair", "window check of (%016llx, %016llx]: windows of %s: %s",
                 (unsigned long long)f.start, (unsigned long long)f.end, c->id,
                 errmsg_text(&em, rc));
    else if (shorter > 0)
        log_info("repair",
                 "window check of (%016llx, %016llx]: %s holds more by the sums, but %llu old "
                 "window(s) of this node's hold more on some stack than its: not taken whole",
                 (unsigned long long)f.start, (unsigned long long)f.end, c->id,
                 (unsigned long long)shorter);
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

/* The compared copies of range f (replicas reps, this node left out) into
 * cs; their number. Where a copy's profile ids differ from this node's,
 * the profiles it holds and this node lacks are fetched first (merge_ids),
 * so msums is this node's copy after them. */
static uint32_t compare(repair_t *r, const cluster_view_t *v, ring_range_t f, const uint32_t *reps,
                        uint32_t n, int64_t until_s, copy_t *cs, int64_t *msums, repair_stats_t *st)
{
    int64_t now_s = (int64_t)(repair_now_ms(r) / 1000), from = ids_from(r, now_s);
    int64_t seen_from, seen_until;
    repair_span(&r->o, now_s, &seen_from, &seen_until);
    ids_sum_t mine;
    if (local_ids(r, f, from, until_s, &mine) != 0) mine.known = 0;
    uint32_t m = 0;
    for (uint32_t k = 0; k < n && !r->closing; k++) {
        uint32_t i = reps[k];
        if ((int)i == v->self) continue;
        if (!v->reachable[i] || r->unanswered[i]) { /* down: compared once it is back */
            st->wc_unseen++;
            continue;
        }
        if (v->marked != NULL && v->marked[i]) { /* it missed writes: compared once it caught up */
            st->wc_deferred++;
            continue;
        }
        copy_t *c = &cs[m];
        c->id = ring_node_name(v->ring, i);
        errmsg_t em = {{0}};
        int rc = peer_sums(r, c->id, f, mine.known ? from : until_s, until_s, c, &em);
        if (rc == REPAIR_NO_COPY) { /* it regains the range: no copy of its own to compare */
            log_debug("repair", "window check with %s: %s", c->id, errmsg_text(&em, rc));
            continue;
        }
        if (rc != 0) {
            log_debug("repair", "window check with %s: %s", c->id, errmsg_text(&em, rc));
            if (repair_rc_unanswered(rc)) {
                r->unanswered[i] = 1; /* down: compared once it is back */
                st->wc_unseen++;
            } else {
                st->wc_deferred++; /* refused (it regains the range): compared later */
            }
            continue;
        }
        m++;
        if (mine.known && c->ids.known && (c->ids.count != mine.count || c->ids.hash != mine.hash))
            merge_ids(r, f, from, until_s, c, &mine, msums, st);
        if (seen_from > until_s) merge_recent(r, f, until_s, seen_from, c, st);
        int d = dominance(c->sums, msums);
        if (d == 1 && !c->lacks_mine) holds_old(r, f, mine.known ? from : until_s, until_s, c, st);
        if (d == 2 || (d == 1 && c->lacks_mine))
            fill(r, f, mine.known ? from : until_s, until_s, c, msums, st);
    }
    return m;
}

/* The replica of range f whose copy holds every other compared copy and
 * more than this node's (dominance), and names every profile this node's
 * names, when it is not this node; NULL otherwise. *mixed counts the
 * replicas whose copy and this node's each hold more somewhere, or that
 * hold more but lack a profile of this node's. */
static const char *largest_copy(repair_t *r, const cluster_view_t *v, ring_range_t f,
                                const uint32_t *reps, uint32_t n, int64_t until_s, int *mixed,
                                repair_stats_t *st)
{
    sums_t mine;
    int rc = local_sums(r, f, until_s, mine);
    copy_t *cs = rc == 0 ? calloc(n, sizeof *cs) : NULL;
    if (rc != 0 || cs == NULL) {
        log_warn("repair", "window check: the sums of this node's windows: %s",
                 err_message(rc != 0 ? rc : ERR_NOMEM));
        return NULL;
    }
    uint32_t m = compare(r, v, f, reps, n, until_s, cs, mine, st);
    repair_wc_copy_t w[RING_MAX_RF];
    for (uint32_t k = 0; k < m && k < RING_MAX_RF; k++)
        w[k] = (repair_wc_copy_t){cs[k].sums, cs[k].lacks_mine};
    int k = repair_windows_pick(mine, w, m < RING_MAX_RF ? m : RING_MAX_RF, mixed);
    const char *who = k >= 0 ? cs[k].id : NULL;
    free(cs);
    return who;
}

int repair_windows_pick(const int64_t *mine, const repair_wc_copy_t *cs, uint32_t n, int *mixed)
{
    const int64_t *best = mine;
    int who = -1;
    for (uint32_t k = 0; k < n; k++) {
        int d = dominance(cs[k].sums, mine);
        *mixed += d == 2 || (d == 1 && cs[k].lacks_mine);
        if (d == 1 && !cs[k].lacks_mine && dominance(cs[k].sums, best) == 1) {
            best = cs[k].sums;
            who = (int)k;
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
    const char *src = largest_copy(r, v, f, reps, n, until_s, &mixed, st);
    if (mixed > 0) {
        st->wc_mixed++;
        log_warn("repair",
                 "window check of (%016llx, %016llx]: this node and %d other replica(s) each "
                 "hold old windows the other lacks beyond the profiles fetched by id and the "
                 "windows copied whole: neither copy is taken for the other, the difference "
                 "stays",
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

/* The voided mark a check starting now answers (0: none pending). */
static uint64_t void_pending(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    uint64_t gen = r->wc.void_gen > r->wc.void_checked ? r->wc.void_gen : 0;
    uv_mutex_unlock(&r->mu);
    return gen;
}

static int due(repair_t *r, uint64_t now)
{
    uv_mutex_lock(&r->mu);
    int demanded = r->wc.demanded;
    r->wc.demanded = 0;
    uv_mutex_unlock(&r->mu);
    return demanded || void_pending(r) != 0 ||
           (r->o.windows_interval_ms > 0 && now >= r->wc.due_ms);
}

void repair_windows_void_later(repair_t *r)
{
    uint64_t gen = void_pending(r);
    if (gen != 0) repair_windows_void(r, gen, r->soon_gap_ms);
}

/* The voided mark gen (0: none) a check that started with it pending
 * answers: one that compared every range with every other replica tells
 * the loop (on_async: cluster_void_checked); one that could not is
 * followed by another a settle margin later, until one can. */
static void answer_void(repair_t *r, uint64_t gen, const repair_stats_t *st)
{
    if (gen == 0 || r->closing) return;
    if (st->wc_deferred > 0 || st->wc_unseen > 0) { /* said once per mark */
        log_write(gen != r->wc.void_logged ? LOG_INFO : LOG_DEBUG, "repair",
                  "window check after a voided mark: %llu range(s) left for later, %llu "
                  "comparison(s) with a replica down: not read from until a check compares "
                  "every range",
                  (unsigned long long)st->wc_deferred, (unsigned long long)st->wc_unseen);
        r->wc.void_logged = gen;
        repair_windows_void(r, gen, r->soon_gap_ms);
        return;
    }
    uv_mutex_lock(&r->mu);
    if (gen > r->wc.void_checked) r->wc.void_checked = r->wc.void_done = gen;
    uv_mutex_unlock(&r->mu);
}

void repair_windows_check(repair_t *r, const cluster_view_t *v, repair_stats_t *st)
{
    uint64_t now = repair_now_ms(r);
    if (!due(r, now)) return;
    if (v->ring == NULL || v->self < 0) return;
    uint64_t voided = void_pending(r);
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
    if (st->wc_deferred > 0) repair_windows_soon(r, r->soon_gap_ms); /* not an hour later */
    answer_void(r, voided, st);
    st->wc_ms = repair_now_ms(r) - now;
    log_debug("repair", "window check: %llu range(s) compared in %llu ms, %llu handed, %llu mixed",
              (unsigned long long)st->wc_ranges, (unsigned long long)st->wc_ms,
              (unsigned long long)st->wc_differing, (unsigned long long)st->wc_mixed);
    uv_mutex_lock(&r->mu);
    r->counters.windows_checks++;
    r->counters.windows_differing += st->wc_differing;
    r->counters.windows_mixed += st->wc_mixed;
    r->counters.windows_profiles += st->wc_fetched;
    r->counters.windows_filled += st->wc_filled;
    r->counters.windows_inexact += st->wc_inexact;
    int tell = r->wc.n > 0 || r->wc.void_done != 0;
    if (tell && !r->closing) uv_async_send(&r->async);
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
