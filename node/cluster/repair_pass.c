/* repair_pass.c — one anti-entropy pass (repair_int.h), on the repair
 * thread: the ranges this node shares with each peer, their digests, the
 * entries of the buckets that differ, the fetch of what this node lacks,
 * whether the pass saw everything it had to (complete), and the summary.
 * Every round trip goes through repair_call (repair.c), which hands the
 * request to the loop and waits for the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

int repair_want_add(repair_wants_t *w, const Flamedb__Cluster__SeenEntry *e)
{
    int rc = GROW(w->v, w->cap, w->n + 1, GROW_UNLIMITED);
    if (rc != ERR_OK) return rc;
    repair_want_t *x = &w->v[w->n++];
    snprintf(x->tenant, sizeof x->tenant, "%s", e->tenant);
    x->token = e->token;
    x->series_id = e->series_id;
    memcpy(x->profile_id, e->profile_id.data, 16);
    x->time_ns = e->time_ns;
    return 0;
}

/* The entries the peer lists for [lo, hi] and the span that this node
 * lacks, appended to w; fetched (and w emptied) whenever REPAIR_WANT_MAX
 * gathered, so a replica missing much holds a bounded list. */
static int list_missing(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int64_t from_s,
                        int64_t until_s, repair_wants_t *w, repair_stats_t *st, errmsg_t *em)
{
    repair_ids_cursor_t cur = {0};
    int more = 1, rc = 0;
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        repair_ids_request_init(&q, lo, hi, from_s, until_s, &cur);
        cluster_msg_t ans = {0};
        if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        for (size_t i = 0; rc == 0 && i < a->n_entries; i++) {
            const Flamedb__Cluster__SeenEntry *e = a->entries[i];
            storage_seen_entry_t se = {e->tenant, e->token, e->series_id, {0}, e->time_ns};
            memcpy(se.profile_id, e->profile_id.data, 16);
            int has = storage_seen_has(r->storage, &se);
            st->listed++;
            if (has < 0)
                rc = errmsg_set(em, has, "seen index lookup failed");
            else if (has == 0 && (rc = repair_want_add(w, e)) == 0)
                st->missing++;
        }
        if (rc == 0 && w->n >= REPAIR_WANT_MAX) { /* bounded: fetch what is gathered */
            rc = repair_fetch(r, peer, w, st, em);
            w->n = 0;
        }
        more = a->more && a->n_entries > 0;
        repair_ids_cursor_next(&cur, a->entries, a->n_entries); /* page on after the last */
        cluster_msg_free(&ans);
    }
    return rc;
}

/* Stores the writes of one fetch answer. */
int repair_store_fetched(repair_t *r, const Flamedb__Cluster__RepairAnswer *a, repair_stats_t *st,
                         errmsg_t *em)
{
    uint64_t written_all = 0, bytes = 0, refused = 0, stored = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < a->n_writes; i++) {
        size_t written = 0, batch = 0;
        rc = replicate_store_request(&r->o.write, r->storage, a->writes[i], &written, &batch, em);
        if (rc == ERR_LIMIT) { /* tenant-max-series: this replica cannot take it; the rest can */
            log_debug("repair", "a fetched write refused: %s", em->text);
            refused++; /* so the pass is not complete: this replica stays short */
            em->text[0] = 0;
            rc = 0;
            continue;
        }
        if (rc != 0) break;
        written_all += written;
        stored += batch;
        bytes += protobuf_c_message_get_packed_size(&a->writes[i]->base);
    }
    st->written += written_all;
    st->stored += stored;
    st->bytes += bytes;
    st->fetched += bytes;
    st->unavailable += a->unavailable + refused;
    return rc;
}

/* repair_store_fetched, counted as it streams (not only at the pass's end):
 * progress is visible in /metrics during a long pass. */
static int store_counted(repair_t *r, const Flamedb__Cluster__RepairAnswer *a, repair_stats_t *st,
                         errmsg_t *em)
{
    repair_stats_t before = *st;
    int rc = repair_store_fetched(r, a, st, em);
    uv_mutex_lock(&r->mu);
    r->counters.series += st->written - before.written;
    r->counters.bytes += st->bytes - before.bytes;
    r->counters.stored_bytes += st->stored - before.stored;
    r->counters.unavailable += st->unavailable - before.unavailable;
    uv_mutex_unlock(&r->mu);
    return rc;
}

/* When the bytes so far fit `rate` bytes/s since the pass began (0: now). */
static uint64_t due_at(const repair_stats_t *st, uint64_t bytes, uint64_t rate)
{
    return rate != 0 ? st->t0_ms + bytes * 1000 / rate : 0;
}

/* Holds the pass to --stream-max-mb-per-s (everything it fetches and
 * streams) and, unless it streams for a move, its fetches to
 * --repair-max-bytes-per-s: sleeps until the bytes so far fit the rates
 * since the pass began. */
void repair_throttle(repair_t *r, const repair_stats_t *st)
{
    uint64_t due = due_at(st, st->bytes, r->o.stream_bytes_per_s);
    uint64_t fetch_due = st->moving ? 0 : due_at(st, st->fetched, r->o.repair_bytes_per_s);
    if (fetch_due > due) due = fetch_due;
    if (due == 0) return;
    uint64_t start = repair_now_ms(r), now = start;
    for (; !r->closing && (now = repair_now_ms(r)) < due;)
        uv_sleep((unsigned)(due - now < 100 ? due - now : 100));
    if (now <= start) return;
    uv_mutex_lock(&r->mu);
    r->counters.throttled_ms += now - start;
    uv_mutex_unlock(&r->mu);
}

/* Fetches w's profiles from the peer, REPAIR_FETCH_BATCH at a time. */
int repair_fetch(repair_t *r, const char *peer, const repair_wants_t *w, repair_stats_t *st,
                 errmsg_t *em)
{
    Flamedb__Cluster__SeenEntry ev[REPAIR_FETCH_BATCH], *ep[REPAIR_FETCH_BATCH];
    size_t at = 0;
    int rc = 0;
    while (rc == 0 && at < w->n && !r->closing) {
        size_t n = w->n - at < REPAIR_FETCH_BATCH ? w->n - at : REPAIR_FETCH_BATCH;
        for (size_t i = 0; i < n; i++) {
            const repair_want_t *x = &w->v[at + i];
            flamedb__cluster__seen_entry__init(&ev[i]);
            ev[i].tenant = (char *)x->tenant;
            ev[i].token = x->token;
            ev[i].series_id = x->series_id;
            ev[i].profile_id = (ProtobufCBinaryData){16, (uint8_t *)x->profile_id};
            ev[i].time_ns = x->time_ns;
            ep[i] = &ev[i];
        }
        Flamedb__Cluster__RepairRequest q;
        repair_request_init(&q, RK(FETCH), 0, 0);
        q.entries = ep;
        q.n_entries = n;
        cluster_msg_t ans = {0};
        if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        if (a->handled == 0 || a->handled > n)
            rc = errmsg_set(em, ERR_CORRUPT, "%s: fetch answered %u of %zu", peer, a->handled, n);
        else
            rc = store_counted(r, a, st, em);
        if (rc == 0) at += a->handled;
        cluster_msg_free(&ans);
        repair_throttle(r, st);
    }
    return rc;
}

/* The peer's digest of ranges into out; left (NULL: not wanted), per range,
 * set for those the peer left out (its copy of them is not to be trusted
 * now: repair.c, digest_untrusted). */
int repair_remote_digest(repair_t *r, const char *peer, const ring_ranges_t *ranges, int64_t from_s,
                         int64_t until_s, repair_digest_t *out, uint8_t *left, errmsg_t *em)
{
    Flamedb__Cluster__TokenRange *tv = calloc(ranges->n, sizeof *tv);
    Flamedb__Cluster__TokenRange **tp = calloc(ranges->n, sizeof *tp);
    int rc = tv && tp ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < ranges->n; i++) {
        flamedb__cluster__token_range__init(&tv[i]);
        tv[i].start = ranges->v[i].start;
        tv[i].end = ranges->v[i].end;
        tp[i] = &tv[i];
    }
    Flamedb__Cluster__RepairRequest q;
    repair_request_init(&q, RK(DIGEST), from_s, until_s);
    q.ranges = tp;
    q.n_ranges = ranges->n;
    q.bucket_s = REPAIR_BUCKET_S;
    cluster_msg_t ans = {0};
    if (rc == 0) rc = repair_call(r, peer, &q, &ans, em);
    if (rc == 0) {
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        for (size_t i = 0; i < a->n_untrusted; i++) {
            if (a->untrusted[i] >= ranges->n) {
                rc = errmsg_set(em, ERR_CORRUPT, "%s: digest leaves out range %u", peer,
                                a->untrusted[i]);
                break;
            }
            if (left != NULL) left[a->untrusted[i]] = 1;
        }
        for (size_t i = 0; rc == 0 && i < a->n_buckets; i++) {
            const Flamedb__Cluster__RepairBucket *b = a->buckets[i];
            if (b->range >= ranges->n) {
                rc = errmsg_set(em, ERR_CORRUPT, "%s: digest names range %u", peer, b->range);
                break;
            }
            if (GROW(out->v, out->cap, out->n + 1, GROW_UNLIMITED) != 0) {
                rc = ERR_NOMEM;
                break;
            }
            out->v[out->n++] = (repair_bucket_t){b->range, b->start_s, b->count, b->hash};
        }
        cluster_msg_free(&ans);
    }
    free(tv);
    free(tp);
    return rc;
}

/* Compares this node's copy of ranges with the peer's and fetches what it
 * lacks; left[i] set for each range the peer left out (remote_digest). */
static int repair_peer(repair_t *r, const char *peer, const ring_ranges_t *ranges, uint8_t *left,
                       repair_stats_t *st, errmsg_t *em)
{
    int64_t from_s, until_s;
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &from_s, &until_s);
    if (from_s >= until_s) return 0;
    repair_digest_t mine = {0}, theirs = {0}, diff = {0};
    repair_wants_t w = {0};
    int rc = repair_digest_build(r->storage, ranges->v, ranges->n, from_s, until_s, REPAIR_BUCKET_S,
                                 &mine);
    if (rc != 0) errmsg_set(em, rc, "local digest: %s", err_message(rc));
    if (rc == 0) rc = repair_remote_digest(r, peer, ranges, from_s, until_s, &theirs, left, em);
    if (rc == 0) rc = repair_digest_diff(&theirs, &mine, &diff);
    st->buckets += theirs.n;
    st->differing += diff.n;
    for (size_t i = 0; rc == 0 && i < diff.n && !r->closing; i++) {
        const repair_bucket_t *b = &diff.v[i];
        int64_t until =
            b->start_s + REPAIR_BUCKET_S < until_s ? b->start_s + REPAIR_BUCKET_S : until_s;
        uint64_t lo[2], hi[2];
        int nint = ring_range_intervals(ranges->v[b->range], lo, hi);
        for (int k = 0; rc == 0 && k < nint; k++)
            rc = list_missing(r, peer, lo[k], hi[k], b->start_s, until, &w, st, em);
    }
    if (rc == 0) rc = repair_fetch(r, peer, &w, st, em);
    free(w.v);
    repair_digest_free(&mine);
    repair_digest_free(&theirs);
    repair_digest_free(&diff);
    return rc;
}

static void note_node(buf_t *list, const char *id, const char *why)
{
    if (list->len > 0) buf_append_byte(list, ',');
    if (why == NULL) {
        buf_append_json_string(list, id, strlen(id));
        return;
    }
    buf_append_str(list, "{\"node\":");
    buf_append_json_string(list, id, strlen(id));
    buf_append_str(list, ",\"reason\":");
    buf_append_json_string(list, why, strlen(why));
    buf_append_byte(list, '}');
}

/* The ranges of a pass: the elementary ranges of the current ring split
 * at the pending ring's tokens too, so each lies within one range of both
 * rings and has one replica set in each. Ends ascending; caller frees. */
static int fine_ends(const cluster_view_t *v, uint64_t **out, uint32_t *n)
{
    uint32_t a = ring_range_count(v->ring), b = v->pending ? ring_range_count(v->pending) : 0;
    uint64_t *e = malloc(((size_t)a + b + 1) * sizeof *e);
    if (e == NULL) return ERR_NOMEM;
    uint32_t i = 0, j = 0, k = 0;
    while (i < a || j < b) {
        uint64_t x = i < a ? ring_range_at(v->ring, i).end : UINT64_MAX;
        uint64_t y = j < b ? ring_range_at(v->pending, j).end : UINT64_MAX;
        uint64_t t = (i < a && (j >= b || x <= y)) ? x : y;
        if (i < a && x == t) i++;
        if (j < b && y == t) j++;
        e[k++] = t;
    }
    *out = e;
    *n = k;
    return 0;
}

/* The replicas of a fine range: cur[] in the current ring, and whether
 * this node is among them or among the pending ring's (it gains it). */
typedef struct fine {
    ring_range_t range;
    uint32_t ncur, cur[RING_MAX_RF];
    int mine; /* this node holds it now or will once the move completes */
} fine_t;

static void fine_at(const cluster_view_t *v, const uint64_t *e, uint32_t n, uint32_t i, fine_t *f)
{
    f->range = (ring_range_t){e[i == 0 ? n - 1 : i - 1], e[i]};
    f->ncur = ring_replicas(v->ring, e[i], v->rf, f->cur);
    f->mine = 0;
    for (uint32_t k = 0; k < f->ncur; k++)
        f->mine |= (int)f->cur[k] == v->self;
    if (v->pending == NULL || f->mine) return;
    uint32_t pend[RING_MAX_RF], np = ring_replicas(v->pending, e[i], v->rf, pend);
    for (uint32_t k = 0; k < np; k++)
        f->mine |= strcmp(ring_node_name(v->pending, pend[k]), v->self_id) == 0;
}

/* For every current ring node, the ranges this node shares with it or
 * gains from it (a move in progress: the pending ring). */
static int peer_ranges(const cluster_view_t *v, ring_ranges_t *per, uint64_t *nranges)
{
    uint64_t *e = NULL;
    uint32_t n = 0;
    if (fine_ends(v, &e, &n) != 0) return ERR_NOMEM;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        fine_t f;
        fine_at(v, e, n, i, &f);
        if (!f.mine) continue;
        (*nranges)++;
        for (uint32_t k = 0; rc == 0 && k < f.ncur; k++)
            if ((int)f.cur[k] != v->self && ring_ranges_add(&per[f.cur[k]], f.range) != 0)
                rc = ERR_NOMEM;
    }
    free(e);
    return rc;
}

static void pass_json(repair_t *r, const repair_stats_t *st, int complete, uint64_t ms, buf_t *out)
{
    buf_reset(out);
    buf_printf(out,
               "{\"node\":\"%s\",\"peers\":%llu,\"ranges\":%llu,\"buckets_compared\":%llu,"
               "\"buckets_differing\":%llu,\"entries_listed\":%llu,\"missing\":%llu,"
               "\"series_streamed\":%llu,\"bytes_streamed\":%llu,\"bytes_stored\":%llu,"
               "\"unavailable\":%llu,"
               "\"windows_streamed\":%llu,\"window_check\":%s,\"window_ranges\":%llu,"
               "\"window_ranges_differing\":%llu,\"window_ranges_mixed\":%llu,"
               "\"window_profiles_fetched\":%llu,\"window_windows_filled\":%llu,"
               "\"window_windows_inexact\":%llu,\"window_inexact\":[%.*s],"
               "\"window_check_ms\":%llu,"
               "\"unreached\":[%.*s],\"failed\":[%.*s],\"complete\":%s,\"duration_ms\":%llu}",
               cluster_self_id(r->c), (unsigned long long)st->peers, (unsigned long long)st->ranges,
               (unsigned long long)st->buckets, (unsigned long long)st->differing,
               (unsigned long long)st->listed, (unsigned long long)st->missing,
               (unsigned long long)st->written, (unsigned long long)st->bytes,
               (unsigned long long)st->stored, (unsigned long long)st->unavailable,
               (unsigned long long)st->windows, st->wc_ran ? "true" : "false",
               (unsigned long long)st->wc_ranges, (unsigned long long)st->wc_differing,
               (unsigned long long)st->wc_mixed, (unsigned long long)st->wc_fetched,
               (unsigned long long)st->wc_filled, (unsigned long long)st->wc_inexact,
               (int)st->inexact.len, (const char *)st->inexact.data, (unsigned long long)st->wc_ms,
               (int)st->unreached.len, (const char *)st->unreached.data, (int)st->failed.len,
               (const char *)st->failed.data, complete ? "true" : "false", (unsigned long long)ms);
}

/* One DONE to peer: a complete pass of this node started at t0. */
static void announce_to(repair_t *r, const char *peer, uint64_t t0)
{
    Flamedb__Cluster__RepairRequest q;
    int64_t from_s, until_s; /* each peer's span began at or before this one */
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &from_s, &until_s);
    repair_request_init(&q, RK(DONE), from_s, 0);
    q.started_unix_ms = t0;
    uv_mutex_lock(&r->mu);
    q.whole_since_unix_ms = r->whole_since_ms;
    uv_mutex_unlock(&r->mu);
    errmsg_t em = {{0}};
    int rc = repair_call_once(r, peer, &q, NULL, NULL, &em);
    if (rc != 0) log_debug("repair", "done to %s: %s", peer, em.text);
}

/* Tells every other reachable node that a complete pass started at t0,
 * with the oldest profile time it compared and when this node last
 * restored every range whole: those that marked this node short lift the
 * mark when that covers the writes it missed (replicate_marks.c). The
 * nodes joining the ring (only in the pending ring) too: a joining node
 * coordinates writes, so it may hold such a mark. */
static void announce(repair_t *r, const cluster_view_t *v, uint64_t t0)
{
    uint32_t nn = ring_node_count(v->ring);
    for (uint32_t p = 0; p < nn && !r->closing; p++)
        if ((int)p != v->self && v->reachable[p]) announce_to(r, ring_node_name(v->ring, p), t0);
    uint32_t np = v->pending != NULL ? ring_node_count(v->pending) : 0;
    for (uint32_t p = 0; p < np && !r->closing; p++) {
        const char *id = ring_node_name(v->pending, p);
        if (ring_node_find(v->ring, id) < 0 && strcmp(id, v->self_id) != 0) announce_to(r, id, t0);
    }
}

/* Whether a pass saw every acknowledged write this node missed: a write
 * is acknowledged by at least the write quorum of current replicas, so when
 * fewer than that many of a range's other current replicas were left out
 * (bad[]: unreachable or failed), at least one holder of each such write
 * was compared. Ranges this node gains count like those it holds. */
/* Whether peer k left out fine range f (its copy of it is not to be
 * trusted): left[k] has one flag per range of per[k]. */
static int left_out_range(const ring_ranges_t *per, uint8_t *const *left, uint32_t k,
                          ring_range_t f)
{
    if (per == NULL || left == NULL || left[k] == NULL) return 0;
    for (size_t i = 0; i < per[k].n; i++)
        if (per[k].v[i].start == f.start && per[k].v[i].end == f.end) return left[k][i];
    return 0;
}

static int covered(const cluster_view_t *v, const uint8_t *bad, const ring_ranges_t *per,
                   uint8_t *const *left)
{
    uint64_t *e = NULL;
    uint32_t n = 0;
    if (fine_ends(v, &e, &n) != 0) return 0;
    int ok = 1;
    for (uint32_t i = 0; ok && i < n; i++) {
        fine_t f;
        fine_at(v, e, n, i, &f);
        uint32_t left_out = 0;
        for (uint32_t k = 0; k < f.ncur; k++)
            left_out += (int)f.cur[k] != v->self &&
                        (bad[f.cur[k]] || left_out_range(per, left, f.cur[k], f.range));
        if (f.mine && left_out >= (v->quorum ? v->quorum : 1)) ok = 0;
    }
    free(e);
    return ok;
}

static int in_pending(const cluster_view_t *v)
{
    return v->pending != NULL && ring_node_find(v->pending, v->self_id) >= 0;
}

/* After a page of a move's stream: its cursor in DATA_DIR/move.progress,
 * at most every --stream-progress-interval (each write syncs the WAL and
 * the file: per page they halved the stream's rate). A failure is logged:
 * a restart then streams more again. */
static void move_page(repair_t *r)
{
    uint64_t now = repair_now_ms(r);
    if (r->o.progress_ms != 0 && now < r->kept.saved_ms + r->o.progress_ms) return;
    r->kept.saved_ms = now;
    (void)repair_move_progress_save(r);
}

/* Takes the check an earlier process passed as this one's when it still
 * stands (repair_move_check_void), counted either way; a check that does
 * not runs again. */
static void kept_check(repair_t *r, const cluster_view_t *v, const fine_t *f,
                       repair_stream_state_t *ss)
{
    const char *why = repair_move_check_void(r, v, f->cur, f->ncur, ss);
    ss->check_kept = 0;
    ss->checked = why == NULL;
    if (why != NULL)
        log_info("repair",
                 "join range [%016llx, %016llx]: the check passed before with %s is "
                 "run again: %s",
                 (unsigned long long)ss->lo, (unsigned long long)ss->hi, ss->check_src, why);
    else
        log_debug("repair", "join range [%016llx, %016llx]: checked before with %s",
                  (unsigned long long)ss->lo, (unsigned long long)ss->hi, ss->check_src);
    if (why != NULL) ss->check_src[0] = '\0';
    uv_mutex_lock(&r->mu);
    if (why == NULL)
        r->counters.checks_resumed++;
    else
        r->counters.checks_not_resumed++;
    uv_mutex_unlock(&r->mu);
}

/* A range this node gains (it replicates it in the pending ring, not in
 * the current one) streamed in whole from its current replicas, the first
 * reachable one that answers (repair_stream_replicas: a source that stops
 * answering mid-range is left for the rest of the pass and the range goes
 * on from its cursor at the next); 0 when not everything was. Its cursor
 * is kept in DATA_DIR/move.progress after every page. One whose totals
 * check keeps disagreeing is cleared and streamed again (repair_stream_heal:
 * its cursor reset in the file before the clear). */
static int stream_range(repair_t *r, const cluster_view_t *v, const fine_t *f, repair_stats_t *st)
{
    uint64_t lo[2], hi[2];
    int nint = ring_range_intervals(f->range, lo, hi), ok = 1;
    for (int k = 0; k < nint && !r->closing; k++) {
        repair_stream_state_t *ss = repair_stream_state(&r->streams, lo[k], hi[k]);
        if (ss == NULL) return 0;
        if (ss->check_kept && ss->done && ss->spans_done) kept_check(r, v, f, ss);
        if (ss->done && ss->spans_done && ss->checked) continue;
        int got = repair_stream_replicas(r, v, f->cur, f->ncur, ss, st, move_page, "join");
        if (got || ss->done) (void)repair_move_progress_save(r); /* a range's end: logged */
        if (!got && !r->closing) repair_stream_heal(r, ss, "join range", repair_move_progress_save);
        ok &= got;
    }
    return ok && !r->closing;
}

uint64_t repair_move_fp(const cluster_view_t *v)
{
    /* a move is its pair of rings (the same pending ring may follow
     * another current one: nodes that joined at once, later one leaving) */
    return v->pending == NULL || v->ring == NULL
               ? 0
               : ring_fingerprint(v->pending) * 31 + ring_fingerprint(v->ring);
}

/* Whether fine range f is one this node gains (not a current replica). */
static int gained_fine(const cluster_view_t *v, const fine_t *f)
{
    int held = 0;
    for (uint32_t k = 0; k < f->ncur; k++)
        held |= (int)f->cur[k] == v->self;
    return f->mine && !held;
}

/* Clears this node's copy of every range it gains, once per move and
 * process, before the first window of them is streamed: a copy from an
 * earlier time it held them (old owners keep their data) would count
 * twice. Live writes that arrived before are cleared too; the stream and
 * the seen comparison bring them back from the replicas. */
static int clear_gained(repair_t *r, const cluster_view_t *v, const uint64_t *e, uint32_t n)
{
    if (r->gains_cleared) return 0;
    uint64_t *lo = malloc(2 * (size_t)(n ? n : 1) * sizeof *lo);
    uint64_t *hi = malloc(2 * (size_t)(n ? n : 1) * sizeof *hi);
    size_t k = 0;
    int rc = lo && hi ? 0 : ERR_NOMEM;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        fine_t f;
        fine_at(v, e, n, i, &f);
        if (gained_fine(v, &f)) k += (size_t)ring_range_intervals(f.range, lo + k, hi + k);
    }
    if (rc == 0) rc = repair_clear(r, lo, hi, k);
    free(lo);
    free(hi);
    r->gains_cleared = rc == 0;
    if (rc == 0) (void)repair_move_progress_save(r); /* logged; a restart then clears again */
    return rc;
}

/* DATA_DIR/move.progress as an earlier process left it, read once. */
static void kept_load(repair_t *r)
{
    if (r->kept.loaded) return;
    errmsg_t em = {{0}};
    int rc = repair_move_progress_load(r, &em);
    if (rc != 0)
        log_warn("repair", "%s: clearing and streaming the gained ranges afresh",
                 errmsg_text(&em, rc));
}

/* The streams an earlier process kept become this move's when it was the
 * same move (its two rings): their intervals were cleared then and are
 * still being received (storage_range_clear recorded them), so they are
 * not cleared again and each goes on after its cursor. Another move's are
 * dropped (the clear that follows rewrites the file). */
static void kept_take(repair_t *r, uint64_t fp)
{
    if (!r->kept.present) return;
    r->kept.present = 0;
    if (r->kept.fp != fp) {
        r->kept.streams.n = 0;
        log_info("repair",
                 "the move kept in %s is not the one under way: clearing and "
                 "streaming the gained ranges afresh",
                 CLUSTER_MOVE_PROGRESS_FILE);
        return;
    }
    repair_streams_t t = r->streams;
    r->streams = r->kept.streams;
    r->kept.streams = t;
    r->kept.streams.n = 0;
    r->gains_cleared = 1;
    uint64_t w = 0, b = 0;
    for (size_t i = 0; i < r->streams.n; i++) {
        w += r->streams.v[i].windows;
        b += r->streams.v[i].bytes;
    }
    uv_mutex_lock(&r->mu);
    r->counters.resumed_ranges += r->streams.n;
    r->counters.resumed_windows += w;
    r->counters.resumed_bytes += b;
    uv_mutex_unlock(&r->mu);
    log_info("repair",
             "resuming the move's streams: cleared already, %zu interval(s) with a stream "
             "cursor, %llu window(s) (%llu bytes) streamed before are not streamed again",
             r->streams.n, (unsigned long long)w, (unsigned long long)b);
}

/* No move: a file an ended move left goes. A joining node keeps it (its
 * first views may not show the move yet) until its join settled, and its
 * passes are not complete meanwhile; a move it gains nothing in by then
 * drops it. 1 when nothing waits for it. */
static int no_move(repair_t *r, const cluster_view_t *v, uint64_t t0)
{
    uv_mutex_lock(&r->mu);
    int joining = r->joining;
    uint64_t settled = r->join_settled_ms;
    uv_mutex_unlock(&r->mu);
    if (joining && r->kept.present && t0 < settled) return 0;
    if (joining) {
        r->kept.present = 0;
        r->kept.streams.n = 0;
    } else if (v->ring != NULL && v->pending == NULL && r->kept.saved) {
        r->kept.present = 0;
        r->kept.streams.n = 0;
        if (repair_move_progress_remove(r) != 0)
            log_warn("repair", "cannot remove %s", CLUSTER_MOVE_PROGRESS_FILE);
    }
    return 1;
}

/* Streams the windows of every range this node gains, once the move
 * settled (every write accepted before it is on the sources): 1 when each
 * was streamed completely (in this pass or an earlier one), or when it
 * gains nothing. */
static int stream_gained(repair_t *r, const cluster_view_t *v, uint64_t t0, repair_stats_t *st)
{
    uint64_t fp = repair_move_fp(v);
    kept_load(r);
    if (v->ring == NULL || !in_pending(v) || !repair_view_gains(v) || fp != r->gains_fp) {
        /* no move, or another one than the streams' (no pass ran between
         * two moves this node took part in): the next one streams afresh */
        r->gains_since_ms = 0;
        r->streams.n = 0;
        r->gains_cleared = 0;
        r->gains_fp = fp;
        if (v->ring == NULL || !in_pending(v) || !repair_view_gains(v)) return no_move(r, v, t0);
    }
    if (r->gains_since_ms == 0) r->gains_since_ms = t0;
    uv_mutex_lock(&r->mu);
    uint64_t settled = r->joining ? r->join_settled_ms : r->gains_since_ms + r->settle_ms;
    uv_mutex_unlock(&r->mu);
    if (t0 < settled) return 0;
    /* live writes land in recent windows of both sides at different times */
    r->stream_check_s = (int64_t)(settled / 1000) - REPAIR_MARGIN_S;
    uint64_t *e = NULL;
    uint32_t n = 0;
    if (fine_ends(v, &e, &n) != 0) return 0;
    if (!r->gains_cleared) kept_take(r, fp);
    int cleared = clear_gained(r, v, e, n) == 0, ok = cleared;
    /* every range, also after one that is not done: one whose check
     * disagrees waits passes for its heal, and the others go on meanwhile */
    for (uint32_t i = 0; cleared && i < n && !r->closing; i++) {
        fine_t f;
        fine_at(v, e, n, i, &f);
        if (gained_fine(v, &f)) ok &= stream_range(r, v, &f, st);
    }
    free(e);
    return ok && !r->closing;
}

/* Compares with every peer; bad[p] set for those not compared, left[p]
 * (allocated here, per range of per[p]) for the ranges peer p left out. */
static void compare_all(repair_t *r, const cluster_view_t *v, const ring_ranges_t *per,
                        uint8_t *bad, uint8_t **left, repair_stats_t *st)
{
    uint32_t nn = ring_node_count(v->ring);
    for (uint32_t p = 0; p < nn; p++) {
        if (per[p].n == 0) continue;
        const char *id = ring_node_name(v->ring, p);
        st->peers++;
        if (r->closing) {
            bad[p] = 1;
        } else if (!v->reachable[p]) {
            note_node(&st->unreached, id, NULL);
            bad[p] = 1;
        } else {
            errmsg_t pe = {{0}};
            left[p] = calloc(per[p].n, 1);
            int prc = left[p] != NULL ? repair_peer(r, id, &per[p], left[p], st, &pe)
                                      : errmsg_set(&pe, ERR_NOMEM, "out of memory");
            if (prc != 0) { /* REPAIR_NOT_SOURCE: not a replica to compare with now */
                if (prc == REPAIR_NOT_SOURCE)
                    log_debug("repair", "with %s: %s", id, errmsg_text(&pe, prc));
                else
                    log_warn("repair", "with %s: %s", id, errmsg_text(&pe, prc));
                note_node(&st->failed, id, errmsg_text(&pe, prc));
                bad[p] = 1;
            }
        }
    }
}

int repair_view_gains(const cluster_view_t *v)
{
    if (v->ring == NULL || !in_pending(v)) return 0;
    ring_ranges_t gained = {0}, lost = {0};
    int rc = ring_node_changes(v->ring, v->pending, v->rf, v->self_id, &gained, &lost);
    int n = rc == 0 && gained.n > 0;
    ring_ranges_free(&gained);
    ring_ranges_free(&lost);
    return n;
}

/* Whether the window check may run: no regain (nor a full repair) going
 * on and no interval it handed still on its way to the loop. */
static int windows_free(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    int busy = r->regain.n > 0 || r->full_gen != 0 || r->joining || r->wc.n > 0;
    uv_mutex_unlock(&r->mu);
    return !busy;
}

static int gains(const cluster_view_t *v)
{
    return repair_view_gains(v);
}

/* One pass over every range this node replicates; the summary into out.
 * A complete pass (every missed write seen, every profile fetched) is
 * announced to the other nodes. */
int repair_pass_run(repair_t *r, buf_t *out)
{
    const cluster_view_t *v = NULL;
    errmsg_t em = {{0}};
    int rc = repair_call_once(r, NULL, NULL, NULL, &v, &em);
    if (rc != 0) return rc;
    uint64_t t0 = repair_now_ms(r);
    repair_stats_t st = {0};
    st.t0_ms = t0;
    memset(r->unanswered, 0, sizeof r->unanswered); /* each pass asks every replica again */
    st.moving = v->ring != NULL && ((v->self < 0 && in_pending(v)) || gains(v));
    buf_init(&st.unreached, REPAIR_SUMMARY_MAX);
    buf_init(&st.failed, REPAIR_SUMMARY_MAX);
    buf_init(&st.inexact, REPAIR_SUMMARY_MAX);
    uint32_t nn = v->ring ? ring_node_count(v->ring) : 0;
    ring_ranges_t *per = calloc(nn ? nn : 1, sizeof *per);
    uint8_t *bad = calloc(nn ? nn : 1, 1);
    uint8_t **left = calloc(nn ? nn : 1, sizeof *left);
    if (per == NULL || bad == NULL || left == NULL) rc = ERR_NOMEM;
    int holds = v->ring != NULL && (v->self >= 0 || in_pending(v));
    if (rc == 0 && holds) rc = peer_ranges(v, per, &st.ranges);
    if (rc == 0 && holds) compare_all(r, v, per, bad, left, &st);
    int streamed = rc != 0 || !holds || stream_gained(r, v, t0, &st);
    streamed &= rc != 0 || repair_regain_stream(r, v, t0, &st);
    int complete = rc == 0 && !r->closing && st.unavailable == 0 &&
                   (!holds || covered(v, bad, per, left)) && streamed;
    if (complete && holds) announce(r, v, t0);
    int resumable = !repair_regain_after(r, complete, t0);
    /* every range cleared to receive is streamed whole, and no regain is
     * left for a restart to resume (it goes on from its cursors, its
     * ranges still being received): writes to them need not keep oversize
     * profile trees for the stream any more */
    if (rc == 0 && streamed && !resumable && !r->closing) storage_range_received(r->storage);
    if (complete && holds && v->self >= 0 && !st.moving && windows_free(r))
        repair_windows_check(r, v, &st);
    else
        repair_windows_void_later(r); /* a voided mark's check: a later pass */
    r->last.complete = complete;
    r->last.holds = holds;
    r->last.joining = v->ring != NULL && v->self < 0 && in_pending(v);
    r->last.gains = gains(v);
    r->last.missing = st.missing;
    r->last.peers = st.peers;
    r->last.started_ms = t0;
    r->last.move_fp = repair_move_fp(v);
    for (uint32_t p = 0; per != NULL && p < nn; p++)
        ring_ranges_free(&per[p]);
    for (uint32_t p = 0; left != NULL && p < nn; p++)
        free(left[p]);
    free(per);
    free(bad);
    free(left);
    r->ops.view_release(v);
    if (rc == 0) pass_json(r, &st, complete, repair_now_ms(r) - t0, out);
    uv_mutex_lock(&r->mu);
    r->counters.passes++;
    r->counters.incomplete += !complete;
    uv_mutex_unlock(&r->mu);
    if (rc == 0 && (st.written > 0 || st.windows > 0 || !complete))
        log_info("repair", "pass: %llu series streamed in, %llu windows, %llu unavailable, %s",
                 (unsigned long long)st.written, (unsigned long long)st.windows,
                 (unsigned long long)st.unavailable, complete ? "complete" : "incomplete");
    buf_free(&st.unreached);
    buf_free(&st.failed);
    buf_free(&st.inexact);
    return rc;
}

/* ---------------------------------------------------------------- leaving */

/* The ranges this node holds now that `taker` (a pending ring node) gains. */
static int taker_ranges(const cluster_view_t *v, const char *taker, ring_ranges_t *out)
{
    uint64_t *e = NULL;
    uint32_t n = 0;
    if (fine_ends(v, &e, &n) != 0) return ERR_NOMEM;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint32_t cur[RING_MAX_RF], pend[RING_MAX_RF];
        uint32_t nc = ring_replicas(v->ring, e[i], v->rf, cur), in_cur = 0, mine = 0, gains = 0;
        for (uint32_t k = 0; k < nc; k++) {
            mine |= (int)cur[k] == v->self;
            in_cur |= strcmp(ring_node_name(v->ring, cur[k]), taker) == 0;
        }
        uint32_t np = ring_replicas(v->pending, e[i], v->rf, pend);
        for (uint32_t k = 0; k < np; k++)
            gains |= strcmp(ring_node_name(v->pending, pend[k]), taker) == 0;
        if (mine && gains && !in_cur)
            rc = ring_ranges_add(out, (ring_range_t){e[i == 0 ? n - 1 : i - 1], e[i]});
    }
    free(e);
    return rc;
}

int repair_holds_all(const repair_digest_t *mine, const repair_digest_t *theirs)
{
    size_t j = 0;
    for (size_t i = 0; i < mine->n; i++) {
        const repair_bucket_t *m = &mine->v[i];
        while (j < theirs->n &&
               (theirs->v[j].range < m->range ||
                (theirs->v[j].range == m->range && theirs->v[j].start_s < m->start_s)))
            j++;
        if (j == theirs->n || theirs->v[j].range != m->range || theirs->v[j].start_s != m->start_s)
            return 0;
        const repair_bucket_t *t = &theirs->v[j];
        if (t->count < m->count || (t->count == m->count && t->hash != m->hash)) return 0;
    }
    return 1;
}

/* Compares this node's digest of what one taker gains with the taker's. */
static int verify_taker(repair_t *r, const cluster_view_t *v, const char *taker, errmsg_t *em)
{
    ring_ranges_t rg = {0};
    int rc = taker_ranges(v, taker, &rg);
    if (rc != 0 || rg.n == 0) {
        ring_ranges_free(&rg);
        return rc;
    }
    int64_t from_s, until_s;
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &from_s, &until_s);
    if (from_s >= until_s) { /* no span to compare (a seen retention under an hour) */
        ring_ranges_free(&rg);
        return 0;
    }
    repair_digest_t mine = {0}, theirs = {0};
    rc = repair_digest_build(r->storage, rg.v, rg.n, from_s, until_s, REPAIR_BUCKET_S, &mine);
    if (rc == 0) rc = repair_remote_digest(r, taker, &rg, from_s, until_s, &theirs, NULL, em);
    if (rc == 0 && !repair_holds_all(&mine, &theirs))
        rc = errmsg_set(em, ERR_UNAVAILABLE, "%s does not hold every profile of its ranges yet",
                        taker);
    repair_digest_free(&mine);
    repair_digest_free(&theirs);
    ring_ranges_free(&rg);
    return rc;
}

/* 0 when the move under way now is still the one of fingerprint fp: the
 * check took its view once, at its start, and checked the takers of that
 * move only (another node removed or joining meanwhile changes who takes
 * what). */
static int move_still(repair_t *r, uint64_t fp, errmsg_t *em)
{
    const cluster_view_t *v = NULL;
    int rc = repair_call_once(r, NULL, NULL, NULL, &v, em);
    if (rc != 0) return rc;
    uint64_t now = repair_move_fp(v);
    r->ops.view_release(v);
    return now == fp ? 0
                     : errmsg_set(em, ERR_UNAVAILABLE,
                                  "the ring changed during the check: the takers of the new "
                                  "move are checked once it settled");
}

int repair_verify_leave(repair_t *r, uint64_t *move_fp, errmsg_t *em)
{
    const cluster_view_t *v = NULL;
    int rc = repair_call_once(r, NULL, NULL, NULL, &v, em);
    if (rc != 0) return rc;
    if (v->ring == NULL || v->pending == NULL || v->self < 0)
        rc = errmsg_set(em, ERR_UNAVAILABLE, "no move of this node in the view");
    uint32_t np = rc == 0 ? ring_node_count(v->pending) : 0;
    for (uint32_t i = 0; rc == 0 && i < np && !r->closing; i++) {
        const char *id = ring_node_name(v->pending, i);
        if (strcmp(id, v->self_id) != 0) rc = verify_taker(r, v, id, em);
    }
    uint64_t fp = repair_move_fp(v);
    r->ops.view_release(v);
    if (rc == 0) rc = move_still(r, fp, em);
    *move_fp = fp;
    return rc;
}
