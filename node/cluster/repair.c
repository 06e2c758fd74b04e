/* repair.c — anti-entropy passes (repair_int.h): the pass's own thread,
 * the loop side that sends its requests and routes the answers back, the
 * schedule and the callers waiting for a pass.
 *
 * A pass blocks on storage scans and on round trips to peers, so it runs on
 * a thread of its own rather than tying up a pool thread for its length.
 * It never touches the loop's state: it hands one request at a time to the
 * loop (call(): the request, guarded by the mutex, then uv_async_send) and
 * sleeps until the answer arrives, the request's deadline passes, or the
 * module closes. The loop touches the thread's request only under the
 * mutex, and the thread withdraws it under the mutex before it returns, so
 * neither side can see the other's memory freed.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x
#define REPAIR_RETRIES 3 /* a busy peer (unavailable) is asked again this often */
/* Passes peers ask for (RUN, repeated while this node is marked short) start
 * at most this often, so an incomplete pass is not retried back to back. */
#define REPAIR_ASKED_GAP_MS 5000

typedef enum { CALL_QUEUED, CALL_SENT, CALL_DONE } call_state_t;

/* One request of the pass's thread; lives on that thread's stack. */
typedef struct call {
    const char *peer; /* NULL: the loop only takes a view reference */
    int notify;       /* no answer expected: done once sent */
    Flamedb__Cluster__RepairRequest *req;
    uint64_t request_id;
    call_state_t state;
    int rc;
    cluster_msg_t answer;       /* taken from the dispatcher; the thread frees it */
    const cluster_view_t *view; /* peer NULL: the view, one reference */
} call_t;

typedef struct waiter {
    cluster_repair_fn done;
    void *arg;
    uint64_t want; /* the pass generation that answers it */
    struct waiter *next;
} waiter_t;

/* What one pass did, summed over its peers. */
typedef struct pass_stats {
    uint64_t peers, ranges, buckets, differing, listed, missing, written, bytes, unavailable;
    buf_t unreached, failed; /* JSON array members */
} pass_stats_t;

struct repair {
    uv_loop_t *loop;
    storage_t *storage;
    cluster_t *c;
    repair_options_t o;
    cluster_ops_t ops;
    cluster_wire_limits_t limits;
    uv_thread_t thread;
    int thread_started;
    uv_mutex_t mu;
    uv_cond_t cond;
    uv_async_t async;
    workq_job_t join_work;
    workq_t *workq;          /* the node's pool lanes, or own_workq */
    workq_t *own_workq;      /* when the node gave none */
    int has_lock, has_async; /* what repair_open_for_cluster got to */
    atomic_int closing;      /* set under mu; read anywhere */
    /* under mu */
    int demand; /* a caller waits for a pass (repair_run) */
    int asked;  /* a peer asked for one (RUN): at most every REPAIR_ASKED_GAP_MS */
    call_t *call;
    uint64_t next_id, started_gen, done_gen;
    int result_rc;
    buf_t result;
    /* loop only */
    waiter_t *waiters;
    uint64_t delivered_gen;
    int serving;
};

/* ---------------------------------------------------------------- thread side */

static uint64_t now_ms(repair_t *r)
{
    return (uint64_t)clock_wall_ms(&r->o.write.clock);
}

/* Waits (mu held) until *done is set or the deadline (unix ms) passes. */
static void wait_until(repair_t *r, const call_t *c, uint64_t deadline)
{
    while (c->state != CALL_DONE && !r->closing) {
        uint64_t now = now_ms(r);
        if (now >= deadline) return;
        uv_cond_timedwait(&r->cond, &r->mu, (deadline - now) * 1000000ull);
    }
}

/* One round trip: q's request id and deadline are set here. On success
 * *ans owns the answer (body decoded and checked); free it with
 * cluster_msg_free. */
static int call_once(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                     cluster_msg_t *ans, const cluster_view_t **view, errmsg_t *em)
{
    call_t c = {peer, q != NULL && ans == NULL, q, 0, CALL_QUEUED, 0, {0}, NULL};
    uint64_t deadline = now_ms(r) + r->o.timeout_ms;
    uv_mutex_lock(&r->mu);
    if (r->closing) {
        uv_mutex_unlock(&r->mu);
        return errmsg_set(em, ERR_UNAVAILABLE, "the node is stopping");
    }
    c.request_id = ++r->next_id;
    if (q != NULL) {
        q->request_id = c.request_id;
        q->deadline_unix_ms = deadline;
    }
    r->call = &c;
    uv_async_send(&r->async); /* under mu: close() cannot have closed it */
    wait_until(r, &c, deadline + 100);
    r->call = NULL;
    uv_mutex_unlock(&r->mu);
    if (c.state != CALL_DONE) {
        cluster_msg_free(&c.answer);
        return errmsg_set(em, ERR_TIMEOUT, "no answer from %s in %llu ms", peer ? peer : "the loop",
                          (unsigned long long)r->o.timeout_ms);
    }
    if (c.rc != 0) return errmsg_set(em, c.rc, "cannot send to %s: %s", peer, err_message(c.rc));
    if (view != NULL) *view = c.view;
    if (peer == NULL || c.notify) return 0;
    *ans = c.answer;
    int rc = cluster_wire_decode_body(ans, &r->limits, 0, em);
    const Flamedb__Cluster__RepairAnswer *a = (const void *)ans->body;
    if (rc == 0 && a->status != 0)
        rc = errmsg_set(em, a->status, "%s: %s", peer,
                        a->reason[0] ? a->reason : err_message(a->status));
    if (rc != 0) cluster_msg_free(ans);
    return rc;
}

static int call(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                cluster_msg_t *ans, errmsg_t *em)
{
    int rc = ERR_UNAVAILABLE;
    for (int i = 0; i < REPAIR_RETRIES && rc == ERR_UNAVAILABLE; i++) {
        if (i > 0) uv_sleep(100 * i);
        rc = call_once(r, peer, q, ans, NULL, em);
    }
    return rc;
}

static void request_init(Flamedb__Cluster__RepairRequest *q, Flamedb__Cluster__RepairKind kind,
                         int64_t from_s, int64_t until_s)
{
    flamedb__cluster__repair_request__init(q);
    q->protocol_version = CLUSTER_PROTOCOL_VERSION;
    q->kind = kind;
    q->from_s = from_s;
    q->until_s = until_s;
}

/* ---------------------------------------------------------------- a pass */

typedef struct want {
    char tenant[RING_TENANT_MAX + 1];
    uint64_t token, series_id;
    uint8_t profile_id[16];
    int64_t time_ns;
} want_t;

typedef struct wants {
    want_t *v;
    size_t n, cap;
} wants_t;

static int want_add(wants_t *w, const Flamedb__Cluster__SeenEntry *e)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        want_t *v = realloc(w->v, cap * sizeof *v);
        if (v == NULL) return ERR_NOMEM;
        w->v = v;
        w->cap = cap;
    }
    want_t *x = &w->v[w->n++];
    snprintf(x->tenant, sizeof x->tenant, "%s", e->tenant);
    x->token = e->token;
    x->series_id = e->series_id;
    memcpy(x->profile_id, e->profile_id.data, 16);
    x->time_ns = e->time_ns;
    return 0;
}

static int fetch(repair_t *r, const char *peer, const wants_t *w, pass_stats_t *st, errmsg_t *em);

/* The entries the peer lists for [lo, hi] and the span that this node
 * lacks, appended to w; fetched (and w emptied) whenever REPAIR_WANT_MAX
 * gathered, so a replica missing much holds a bounded list. */
static int list_missing(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int64_t from_s,
                        int64_t until_s, wants_t *w, pass_stats_t *st, errmsg_t *em)
{
    Flamedb__Cluster__SeenEntry after;
    char tenant[RING_TENANT_MAX + 1] = "";
    uint8_t pid[16];
    int more = 1, first = 1, rc = 0;
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        request_init(&q, RK(IDS), from_s, until_s);
        q.lo = lo;
        q.hi = hi;
        q.limit = REPAIR_IDS_PAGE;
        q.after = first ? NULL : &after;
        cluster_msg_t ans = {0};
        if ((rc = call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        for (size_t i = 0; rc == 0 && i < a->n_entries; i++) {
            const Flamedb__Cluster__SeenEntry *e = a->entries[i];
            storage_seen_entry_t se = {e->tenant, e->token, e->series_id, {0}, e->time_ns};
            memcpy(se.profile_id, e->profile_id.data, 16);
            int has = storage_seen_has(r->storage, &se);
            st->listed++;
            if (has < 0)
                rc = errmsg_set(em, has, "seen index lookup failed");
            else if (has == 0 && (rc = want_add(w, e)) == 0)
                st->missing++;
        }
        if (rc == 0 && w->n >= REPAIR_WANT_MAX) { /* bounded: fetch what is gathered */
            rc = fetch(r, peer, w, st, em);
            w->n = 0;
        }
        more = a->more && a->n_entries > 0;
        if (a->n_entries > 0) { /* page on after the last entry */
            const Flamedb__Cluster__SeenEntry *l = a->entries[a->n_entries - 1];
            snprintf(tenant, sizeof tenant, "%s", l->tenant);
            memcpy(pid, l->profile_id.data, 16);
            flamedb__cluster__seen_entry__init(&after);
            after.tenant = tenant;
            after.token = l->token;
            after.series_id = l->series_id;
            after.profile_id = (ProtobufCBinaryData){16, pid};
            first = 0;
        }
        cluster_msg_free(&ans);
    }
    return rc;
}

/* Stores the writes of one fetch answer. */
static int store_fetched(repair_t *r, const Flamedb__Cluster__RepairAnswer *a, pass_stats_t *st,
                         errmsg_t *em)
{
    for (size_t i = 0; i < a->n_writes; i++) {
        size_t written = 0;
        int rc = replicate_store_request(&r->o.write, r->storage, a->writes[i], &written, em);
        if (rc != 0) return rc;
        st->written += written;
        st->bytes += protobuf_c_message_get_packed_size(&a->writes[i]->base);
    }
    st->unavailable += a->unavailable;
    return 0;
}

/* Fetches w's profiles from the peer, REPAIR_FETCH_BATCH at a time. */
static int fetch(repair_t *r, const char *peer, const wants_t *w, pass_stats_t *st, errmsg_t *em)
{
    Flamedb__Cluster__SeenEntry ev[REPAIR_FETCH_BATCH], *ep[REPAIR_FETCH_BATCH];
    size_t at = 0;
    int rc = 0;
    while (rc == 0 && at < w->n && !r->closing) {
        size_t n = w->n - at < REPAIR_FETCH_BATCH ? w->n - at : REPAIR_FETCH_BATCH;
        for (size_t i = 0; i < n; i++) {
            const want_t *x = &w->v[at + i];
            flamedb__cluster__seen_entry__init(&ev[i]);
            ev[i].tenant = (char *)x->tenant;
            ev[i].token = x->token;
            ev[i].series_id = x->series_id;
            ev[i].profile_id = (ProtobufCBinaryData){16, (uint8_t *)x->profile_id};
            ev[i].time_ns = x->time_ns;
            ep[i] = &ev[i];
        }
        Flamedb__Cluster__RepairRequest q;
        request_init(&q, RK(FETCH), 0, 0);
        q.entries = ep;
        q.n_entries = n;
        cluster_msg_t ans = {0};
        if ((rc = call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        if (a->handled == 0 || a->handled > n)
            rc = errmsg_set(em, ERR_CORRUPT, "%s: fetch answered %u of %zu", peer, a->handled, n);
        else
            rc = store_fetched(r, a, st, em);
        if (rc == 0) at += a->handled;
        cluster_msg_free(&ans);
    }
    return rc;
}

static int remote_digest(repair_t *r, const char *peer, const ring_ranges_t *ranges, int64_t from_s,
                         int64_t until_s, repair_digest_t *out, errmsg_t *em)
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
    request_init(&q, RK(DIGEST), from_s, until_s);
    q.ranges = tp;
    q.n_ranges = ranges->n;
    q.bucket_s = REPAIR_BUCKET_S;
    cluster_msg_t ans = {0};
    if (rc == 0) rc = call(r, peer, &q, &ans, em);
    if (rc == 0) {
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
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
 * lacks. */
static int repair_peer(repair_t *r, const char *peer, const ring_ranges_t *ranges, pass_stats_t *st,
                       errmsg_t *em)
{
    int64_t from_s, until_s;
    repair_span(&r->o, (int64_t)(now_ms(r) / 1000), &from_s, &until_s);
    if (from_s >= until_s) return 0;
    repair_digest_t mine = {0}, theirs = {0}, diff = {0};
    wants_t w = {0};
    int rc = repair_digest_build(r->storage, ranges->v, ranges->n, from_s, until_s, REPAIR_BUCKET_S,
                                 &mine);
    if (rc != 0) errmsg_set(em, rc, "local digest: %s", err_message(rc));
    if (rc == 0) rc = remote_digest(r, peer, ranges, from_s, until_s, &theirs, em);
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
    if (rc == 0) rc = fetch(r, peer, &w, st, em);
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

/* For every ring node, the ranges this node shares with it. */
static int peer_ranges(const cluster_view_t *v, ring_ranges_t *per, uint64_t *nranges)
{
    uint32_t nr = ring_range_count(v->ring), rep[RING_MAX_RF];
    for (uint32_t i = 0; i < nr; i++) {
        ring_range_t rg = ring_range_at(v->ring, i);
        uint32_t n = ring_replicas(v->ring, rg.end, v->rf, rep), mine = 0;
        for (uint32_t k = 0; k < n; k++)
            mine |= (int)rep[k] == v->self;
        if (!mine) continue;
        (*nranges)++;
        for (uint32_t k = 0; k < n; k++)
            if ((int)rep[k] != v->self && ring_ranges_add(&per[rep[k]], rg) != 0) return ERR_NOMEM;
    }
    return 0;
}

static void pass_json(repair_t *r, const pass_stats_t *st, int complete, uint64_t ms, buf_t *out)
{
    buf_reset(out);
    buf_printf(out,
               "{\"node\":\"%s\",\"peers\":%llu,\"ranges\":%llu,\"buckets_compared\":%llu,"
               "\"buckets_differing\":%llu,\"entries_listed\":%llu,\"missing\":%llu,"
               "\"series_streamed\":%llu,\"bytes_streamed\":%llu,\"unavailable\":%llu,"
               "\"unreached\":[%.*s],\"failed\":[%.*s],\"complete\":%s,\"duration_ms\":%llu}",
               cluster_self_id(r->c), (unsigned long long)st->peers, (unsigned long long)st->ranges,
               (unsigned long long)st->buckets, (unsigned long long)st->differing,
               (unsigned long long)st->listed, (unsigned long long)st->missing,
               (unsigned long long)st->written, (unsigned long long)st->bytes,
               (unsigned long long)st->unavailable, (int)st->unreached.len,
               (const char *)st->unreached.data, (int)st->failed.len, (const char *)st->failed.data,
               complete ? "true" : "false", (unsigned long long)ms);
}

/* Tells every other reachable node that a complete pass started at t0:
 * those that marked this node short lift the mark (replicate_marks.c). */
static void announce(repair_t *r, const cluster_view_t *v, uint64_t t0)
{
    uint32_t nn = ring_node_count(v->ring);
    for (uint32_t p = 0; p < nn && !r->closing; p++) {
        if ((int)p == v->self || !v->reachable[p]) continue;
        Flamedb__Cluster__RepairRequest q;
        request_init(&q, RK(DONE), 0, 0);
        q.started_unix_ms = t0;
        errmsg_t em = {{0}};
        int rc = call_once(r, ring_node_name(v->ring, p), &q, NULL, NULL, &em);
        if (rc != 0) log_debug("repair", "done to %s: %s", ring_node_name(v->ring, p), em.text);
    }
}

/* Whether a pass saw every acknowledged write this node missed: a write
 * is acknowledged by at least the write quorum of replicas, so when fewer
 * than that many of a range's other replicas were left out (bad[]:
 * unreachable or failed), at least one holder of each such write was
 * compared. */
static int covered(const cluster_view_t *v, const uint8_t *bad)
{
    uint32_t nr = ring_range_count(v->ring), rep[RING_MAX_RF];
    for (uint32_t i = 0; i < nr; i++) {
        uint32_t n = ring_replicas(v->ring, ring_range_at(v->ring, i).end, v->rf, rep);
        uint32_t mine = 0, left_out = 0;
        for (uint32_t k = 0; k < n; k++) {
            mine |= (int)rep[k] == v->self;
            left_out += (int)rep[k] != v->self && bad[rep[k]];
        }
        if (mine && left_out >= (v->quorum ? v->quorum : 1)) return 0;
    }
    return 1;
}

/* Compares with every peer; bad[p] set for those not compared. */
static void compare_all(repair_t *r, const cluster_view_t *v, const ring_ranges_t *per,
                        uint8_t *bad, pass_stats_t *st)
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
            int prc = repair_peer(r, id, &per[p], st, &pe);
            if (prc != 0) {
                log_warn("repair", "with %s: %s", id, errmsg_text(&pe, prc));
                note_node(&st->failed, id, errmsg_text(&pe, prc));
                bad[p] = 1;
            }
        }
    }
}

/* One pass over every range this node replicates; the summary into out.
 * A complete pass (every missed write seen, every profile fetched) is
 * announced to the other nodes. */
static int run_pass(repair_t *r, buf_t *out)
{
    const cluster_view_t *v = NULL;
    errmsg_t em = {{0}};
    int rc = call_once(r, NULL, NULL, NULL, &v, &em);
    if (rc != 0) return rc;
    uint64_t t0 = now_ms(r);
    pass_stats_t st = {0};
    buf_init(&st.unreached, REPAIR_SUMMARY_MAX);
    buf_init(&st.failed, REPAIR_SUMMARY_MAX);
    uint32_t nn = v->ring ? ring_node_count(v->ring) : 0;
    ring_ranges_t *per = calloc(nn ? nn : 1, sizeof *per);
    uint8_t *bad = calloc(nn ? nn : 1, 1);
    if (per == NULL || bad == NULL) rc = ERR_NOMEM;
    if (rc == 0 && v->self >= 0) rc = peer_ranges(v, per, &st.ranges);
    if (rc == 0 && v->self >= 0) compare_all(r, v, per, bad, &st);
    int complete =
        rc == 0 && !r->closing && st.unavailable == 0 && (v->self < 0 || covered(v, bad));
    if (complete && v->self >= 0) announce(r, v, t0);
    for (uint32_t p = 0; per != NULL && p < nn; p++)
        ring_ranges_free(&per[p]);
    free(per);
    free(bad);
    r->ops.view_release(v);
    if (rc == 0) pass_json(r, &st, complete, now_ms(r) - t0, out);
    if (rc == 0 && (st.written > 0 || !complete))
        log_info("repair", "pass: %llu series streamed in, %llu unavailable, %s",
                 (unsigned long long)st.written, (unsigned long long)st.unavailable,
                 complete ? "complete" : "incomplete");
    buf_free(&st.unreached);
    buf_free(&st.failed);
    return rc;
}

/* When the thread must wake next (unix ms; UINT64_MAX: when signalled). */
static uint64_t next_wake(const repair_t *r, uint64_t due, uint64_t last_end)
{
    uint64_t w = due ? due : UINT64_MAX;
    if (r->asked && last_end + REPAIR_ASKED_GAP_MS < w) w = last_end + REPAIR_ASKED_GAP_MS;
    return w;
}

/* The thread: a pass when a caller waits, when a peer asked (not more than
 * every REPAIR_ASKED_GAP_MS), or when the interval is due. */
static void thread_main(void *arg)
{
    repair_t *r = arg;
    buf_t out;
    buf_init(&out, 2 * REPAIR_SUMMARY_MAX);
    uint64_t due = r->o.interval_ms ? now_ms(r) + r->o.interval_ms : 0, last_end = 0;
    uv_mutex_lock(&r->mu);
    for (;;) {
        uint64_t wake;
        while (!r->closing && !r->demand && (wake = next_wake(r, due, last_end)) > now_ms(r)) {
            if (wake == UINT64_MAX)
                uv_cond_wait(&r->cond, &r->mu);
            else
                uv_cond_timedwait(&r->cond, &r->mu, (wake - now_ms(r)) * 1000000ull);
        }
        if (r->closing) break;
        r->demand = r->asked = 0;
        uint64_t gen = ++r->started_gen;
        uv_mutex_unlock(&r->mu);
        int rc = run_pass(r, &out);
        last_end = now_ms(r);
        if (r->o.interval_ms) due = last_end + r->o.interval_ms;
        uv_mutex_lock(&r->mu);
        r->done_gen = gen;
        r->result_rc = rc;
        buf_reset(&r->result);
        if (rc == 0) buf_append(&r->result, out.data, out.len);
        if (!r->closing) uv_async_send(&r->async);
    }
    uv_mutex_unlock(&r->mu);
    buf_free(&out);
}

/* ---------------------------------------------------------------- loop side */

/* Callers whose pass finished get its summary. */
static void deliver(repair_t *r, uint64_t gen, int rc, const char *json)
{
    waiter_t **pp = &r->waiters;
    errmsg_t em = {{0}};
    if (rc != 0) errmsg_set(&em, rc, "repair pass failed: %s", err_message(rc));
    while (*pp != NULL) {
        waiter_t *w = *pp;
        if (w->want > gen) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->done(w->arg, rc, json, &em);
        free(w);
    }
}

/* The thread's request: sent (or the view taken), and a finished pass. */
static void on_async(uv_async_t *h)
{
    repair_t *r = h->data;
    uv_mutex_lock(&r->mu);
    call_t *c = r->call;
    if (c != NULL && c->state == CALL_QUEUED) {
        if (c->peer == NULL) {
            c->view = r->ops.view_acquire(r->ops.ctx);
            c->state = CALL_DONE;
        } else {
            c->rc = r->ops.send(r->ops.ctx, c->peer, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_REPAIR,
                                c->req->deadline_unix_ms, &c->req->base);
            c->state = c->rc != 0 || c->notify ? CALL_DONE : CALL_SENT;
        }
        if (c->state == CALL_DONE) uv_cond_broadcast(&r->cond);
    }
    uint64_t gen = r->done_gen;
    int rc = r->result_rc;
    char *json = NULL;
    if (gen > r->delivered_gen) {
        json = malloc(r->result.len + 1);
        if (json != NULL) {
            memcpy(json, r->result.data, r->result.len);
            json[r->result.len] = 0;
        }
    }
    uv_mutex_unlock(&r->mu);
    if (gen > r->delivered_gen) {
        r->delivered_gen = gen;
        deliver(r, gen, json ? rc : ERR_NOMEM, json ? json : "");
    }
    free(json);
}

void repair_on_answer(void *ctx, cluster_msg_t *msg)
{
    repair_t *r = ctx;
    uv_mutex_lock(&r->mu);
    call_t *c = r->call;
    if (c != NULL && c->state == CALL_SENT && msg->env->request_id == c->request_id &&
        strcmp(msg->env->sender_id, c->peer) == 0) {
        c->answer = *msg; /* taken: the thread decodes and frees it */
        memset(msg, 0, sizeof *msg);
        c->state = CALL_DONE;
        uv_cond_broadcast(&r->cond);
    }
    uv_mutex_unlock(&r->mu);
}

void repair_run(repair_t *r, cluster_repair_fn done, void *arg)
{
    waiter_t *w = calloc(1, sizeof *w);
    errmsg_t em = {{0}};
    if (w == NULL || r->closing) {
        free(w);
        errmsg_set(&em, ERR_UNAVAILABLE, "the node is stopping");
        done(arg, ERR_UNAVAILABLE, "", &em);
        return;
    }
    w->done = done;
    w->arg = arg;
    uv_mutex_lock(&r->mu);
    w->want = r->started_gen + 1;
    r->demand = 1;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
    w->next = r->waiters;
    r->waiters = w;
}

/* ---------- serving a peer ---------- */

typedef struct serve_job {
    workq_job_t work;
    repair_t *r;
    cluster_msg_t msg; /* the request, taken */
    char sender[RING_NODE_ID_MAX + 1];
    arena_t arena;
    Flamedb__Cluster__RepairAnswer a;
    errmsg_t em;
    int rc;
} serve_job_t;

static void serve_work(workq_job_t *wk)
{
    serve_job_t *j = wk->data;
    j->rc = repair_serve_build(j->r->storage, &j->r->o, (const void *)j->msg.body, &j->arena, &j->a,
                               &j->em);
}

static void answer(repair_t *r, const char *to, const Flamedb__Cluster__RepairRequest *q,
                   Flamedb__Cluster__RepairAnswer *a, int rc, const char *why)
{
    a->protocol_version = CLUSTER_PROTOCOL_VERSION;
    a->request_id = q->request_id;
    if (rc != 0) { /* an error answers nothing else */
        flamedb__cluster__repair_answer__init(a);
        a->protocol_version = CLUSTER_PROTOCOL_VERSION;
        a->request_id = q->request_id;
        a->status = rc;
        a->reason = (char *)why;
    }
    int src = r->ops.send(r->ops.ctx, to, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_REPAIR_ANSWER,
                          q->deadline_unix_ms, &a->base);
    if (src != 0) log_debug("repair", "answer to %s not sent: %s", to, err_message(src));
}

static void serve_after(workq_job_t *wk, int status)
{
    serve_job_t *j = wk->data;
    repair_t *r = j->r;
    r->serving--;
    if (status != 0 && j->rc == 0) j->rc = errmsg_set(&j->em, ERR_UNAVAILABLE, "stopping");
    if (!r->closing)
        answer(r, j->sender, (const void *)j->msg.body, &j->a, j->rc,
               j->rc ? errmsg_text(&j->em, j->rc) : "");
    arena_free(&j->arena);
    cluster_msg_free(&j->msg);
    free(j);
}

void repair_on_request(void *ctx, cluster_msg_t *msg)
{
    repair_t *r = ctx;
    const Flamedb__Cluster__RepairRequest *q = (const void *)msg->body;
    Flamedb__Cluster__RepairAnswer busy = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    if (r->closing) return;
    if (q->kind == RK(RUN)) { /* a peer marked this node short: a pass soon */
        uv_mutex_lock(&r->mu);
        r->asked = 1;
        uv_cond_broadcast(&r->cond);
        uv_mutex_unlock(&r->mu);
        return;
    }
    if (q->kind == RK(DONE)) {
        if (r->c->replicate != NULL)
            replicate_marks_repaired(r->c->replicate, msg->env->sender_id, q->started_unix_ms);
        return;
    }
    serve_job_t *j = r->serving < REPAIR_SERVE_MAX ? calloc(1, sizeof *j) : NULL;
    if (j == NULL) {
        answer(r, msg->env->sender_id, q, &busy, ERR_UNAVAILABLE, "busy with other repairs");
        return;
    }
    j->r = r;
    snprintf(j->sender, sizeof j->sender, "%s", msg->env->sender_id);
    arena_init(&j->arena, 64u << 10, 2 * r->o.max_message_bytes);
    flamedb__cluster__repair_answer__init(&j->a);
    j->work.data = j;
    j->work.deadline_unix_ms = q->deadline_unix_ms; /* not started by then: not worth it */
    j->msg = *msg;                                  /* taken */
    memset(msg, 0, sizeof *msg);
    if (workq_submit(r->workq, WORKQ_QUERY, &j->work, serve_work, serve_after) != 0) {
        answer(r, j->sender, (const void *)j->msg.body, &busy, ERR_UNAVAILABLE, "cannot queue");
        cluster_msg_free(&j->msg);
        free(j);
        return;
    }
    r->serving++;
}

/* ---------- lifetime ---------- */

int repair_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                            const cluster_inputs_t *in, cluster_t *c, repair_t **out, errmsg_t *em)
{
    repair_t *r = calloc(1, sizeof *r);
    if (r == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    r->loop = loop;
    r->storage = storage;
    r->c = c;
    replicate_options_from_config(&r->o.write, cfg, in);
    r->o.interval_ms = cfg->repair_interval_ms;
    r->o.seen_retention_s = in->seen_retention_seconds;
    r->o.max_future_s = in->max_future_seconds;
    r->o.timeout_ms = cfg->query_timeout_ms > 1000 ? cfg->query_timeout_ms : 1000;
    r->o.max_message_bytes = cfg->max_message_bytes;
    r->limits = *cluster_wire_limits(c);
    r->workq = in->workq;
    if (r->workq == NULL && workq_new(loop, 4, NULL, in->clock, &r->own_workq) != 0)
        return errmsg_set(em, ERR_NOMEM, "repair: cannot create its work queue");
    if (r->workq == NULL) r->workq = r->own_workq;
    cluster_ops_of(c, &r->ops);
    buf_init(&r->result, 2 * REPAIR_SUMMARY_MAX);
    *out = r; /* even on failure: repair_close and repair_free release what opened */
    if (uv_mutex_init(&r->mu) != 0) return errmsg_set(em, ERR_NOMEM, "repair: no lock");
    if (uv_cond_init(&r->cond) != 0) {
        uv_mutex_destroy(&r->mu);
        return errmsg_set(em, ERR_NOMEM, "repair: no condition variable");
    }
    r->has_lock = 1;
    if (uv_async_init(loop, &r->async, on_async) != 0)
        return errmsg_set(em, ERR_NOMEM, "repair: cannot create its async handle");
    r->async.data = r;
    r->has_async = 1;
    if (uv_thread_create(&r->thread, thread_main, r) != 0)
        return errmsg_set(em, ERR_NOMEM, "repair: cannot start its thread");
    r->thread_started = 1;
    cluster_on(c, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_REPAIR, repair_on_request, r);
    cluster_on_envelope(c, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_REPAIR_ANSWER, repair_on_answer, r);
    return 0;
}

/* Joins the thread on the pool (it may be inside a scan), so the loop keeps
 * running meanwhile; the async handle closes after. */
static void join_work(workq_job_t *wk)
{
    repair_t *r = wk->data;
    if (r->thread_started) uv_thread_join(&r->thread);
    r->thread_started = 0;
}

static void async_closed(uv_handle_t *h)
{
    repair_t *r = h->data;
    cluster_part_closed(r->c);
}

static void join_after(workq_job_t *wk, int status)
{
    (void)status;
    repair_t *r = wk->data;
    uv_close((uv_handle_t *)&r->async, async_closed);
}

void repair_close(repair_t *r)
{
    if (r == NULL || r->closing || !r->has_lock) return;
    uv_mutex_lock(&r->mu);
    r->closing = 1;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
    deliver(r, UINT64_MAX, ERR_UNAVAILABLE, "");
    if (!r->has_async) return; /* no thread either */
    r->c->open_parts++;
    r->join_work.data = r;
    if (workq_submit(r->workq, WORKQ_WRITE, &r->join_work, join_work, join_after) != 0) {
        join_work(&r->join_work);
        join_after(&r->join_work, 0);
    }
}

void repair_free(repair_t *r)
{
    if (r == NULL) return;
    if (r->thread_started) uv_thread_join(&r->thread);
    buf_free(&r->result);
    workq_free(r->own_workq);
    if (r->has_lock) {
        uv_mutex_destroy(&r->mu);
        uv_cond_destroy(&r->cond);
    }
    while (r->waiters != NULL) {
        waiter_t *w = r->waiters;
        r->waiters = w->next;
        free(w);
    }
    free(r);
}
