/* replicate_hints.c — hinted handoff on the loop: storing the hints of
 * writes that ended without some replica's ack, replaying stored hints to
 * targets that are reachable again, dropping expired ones, and telling the
 * cluster which nodes this node holds hints for (replicate_int.h,
 * docs/replication.md "Hints").
 *
 * Replay runs per target in batches of at most replay_batch hints (and a
 * byte budget): read on the pool, sent on the loop, each deleted on the pool
 * once its ack arrives. A target's next batch starts only when every hint of
 * the previous one is acknowledged and deleted, or failed, so a hint is never
 * in flight twice; a batch that fully succeeded starts the next one at once,
 * so a node that comes back catches up at network speed, not at the timer's.
 * A target that stays unreachable gets its hints dropped (and is marked) as
 * they expire, so expired hints do not hold disk and its share of
 * hints-max-bytes for as long as it stays away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/replicate_int.h"

/* ---------------------------------------------------------------- advertising */

typedef struct idlist {
    char **ids;
    size_t n, cap;
    uint64_t sig;
    int err;
} idlist_t;

static int collect_id(void *ctx, const char *target, uint64_t count, uint64_t bytes)
{
    idlist_t *l = ctx;
    if (count == 0) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->ids, cap * sizeof *v);
        if (v == NULL) return l->err = ERR_NOMEM;
        l->ids = v;
        l->cap = cap;
    }
    if ((l->ids[l->n] = strdup(target)) == NULL) return l->err = ERR_NOMEM;
    l->n++;
    for (const char *p = target; *p; p++)
        l->sig = (l->sig ^ (uint8_t)*p) * 1099511628211ULL;
    l->sig = (l->sig ^ 0xff) * 1099511628211ULL;
    return 0;
}

void replicate_publish_hint_targets(replicate_t *r)
{
    idlist_t l = {.sig = 1469598103934665603ULL};
    int rc = storage_hint_targets(r->storage, collect_id, &l);
    const char *marked[2 * RING_MAX_NODES];
    size_t nm = replicate_marks_active(r, marked, RING_MAX_NODES);
    /* and those another coordinator's hint misses, until its word arrives */
    nm += replicate_witness_targets(r, marked + nm, RING_MAX_NODES);
    for (size_t i = 0; rc == 0 && i < nm; i++) { /* short replicas: not read from either */
        int known = 0;
        for (size_t k = 0; k < l.n && !known; k++)
            known = strcmp(l.ids[k], marked[i]) == 0;
        if (!known) rc = collect_id(&l, marked[i], 1, 0);
    }
    if (rc == 0 && l.sig != r->hint_sig) {
        rc = r->ops.set_hint_targets(r->ops.ctx, (const char *const *)l.ids, l.n);
        if (rc == 0) r->hint_sig = l.sig;
        if (rc == 0 && l.n > 0)
            log_info("replicate", "holding hints for %zu node(s), first %s", l.n, l.ids[0]);
    }
    if (rc != 0) log_warn("replicate", "cannot advertise hint targets: %s", err_message(rc));
    for (size_t i = 0; i < l.n; i++)
        free(l.ids[i]);
    free(l.ids);
}

/* ---------------------------------------------------------------- storing */

typedef struct hint_job {
    workq_job_t work;
    replicate_t *r;
    replicate_write_t *rw;
} hint_job_t;

static void store_due(replicate_write_t *rw)
{
    rw->hints_stored = rw->hints_dropped = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        if (rw->t[ti].state != TS_NEEDS_HINT) continue;
        errmsg_t em = {{0}};
        replicate_store_hint(rw, ti, &em);
        rw->t[ti].state = TS_HINTED;
    }
}

static void hint_work(workq_job_t *w)
{
    hint_job_t *j = w->data;
    store_due(j->rw);
}

static void hint_after(workq_job_t *w, int status)
{
    hint_job_t *j = w->data;
    replicate_t *r = j->r;
    if (status != 0) store_due(j->rw); /* cancelled: the hints still must be kept */
    r->st.hints_stored += j->rw->hints_stored;
    r->st.hints_dropped_full += j->rw->hints_dropped;
    r->jobs--;
    replicate_marks_note(r, j->rw);
    replicate_publish_hint_targets(r);
    replicate_write_free(j->rw);
    free(j);
}

void replicate_finish_hints(replicate_t *r, replicate_write_t *rw)
{
    rw->failed = replicate_quorum_lost(rw); /* every target resolved: final */
    hint_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j != NULL) {
        j->r = r;
        j->rw = rw;
        j->work.data = j;
        if (workq_submit(r->workq, WORKQ_WRITE, &j->work, hint_work, hint_after) == 0) {
            r->jobs++;
            return;
        }
        free(j);
    }
    /* stopping (or no job could be queued): store them here and now */
    store_due(rw);
    r->st.hints_stored += rw->hints_stored;
    r->st.hints_dropped_full += rw->hints_dropped;
    replicate_marks_note(r, rw);
    replicate_publish_hint_targets(r);
    replicate_write_free(rw);
}

/* ---------------------------------------------------------------- replay */

typedef struct replay_item {
    uint64_t seq;
    Flamedb__Cluster__WriteRequest *msg;
} replay_item_t;

typedef struct replay_job {
    workq_job_t work;
    replicate_t *r;
    replay_target_t *rt; /* index-stable: see rt_get */
    size_t rti;
    char target[RING_NODE_ID_MAX + 1];
    replay_item_t *items;
    size_t n, cap, bytes;
    uint64_t *gone; /* hints dropped undelivered: deleted once their mark is noted */
    size_t ngone, gone_cap;
    int64_t gone_oldest_s; /* the oldest profile time among them (0: one unknown) */
    uint32_t expired, corrupt;
    uint32_t stamped; /* a repair mark was stamped for the target at mark_ms */
    uint64_t mark_ms;
    uint64_t now;
    int expire_only;      /* the target is unreachable: expired hints dropped, none sent */
    uint64_t next_expiry; /* expire_only: when the first hint kept expires (0: none seen) */
} replay_job_t;

/* Replay state of a target (the array may move: jobs keep its index). */
static size_t rt_get(replicate_t *r, const char *id)
{
    for (size_t i = 0; i < r->nrt; i++)
        if (strcmp(r->rt[i].id, id) == 0) return i;
    if (r->nrt == r->rtcap) {
        size_t cap = r->rtcap ? r->rtcap * 2 : 8;
        replay_target_t *v = realloc(r->rt, cap * sizeof *v);
        if (v == NULL) return SIZE_MAX;
        r->rt = v;
        r->rtcap = cap;
    }
    memset(&r->rt[r->nrt], 0, sizeof r->rt[0]);
    snprintf(r->rt[r->nrt].id, sizeof r->rt[0].id, "%s", id);
    return r->nrt++;
}

Flamedb__Cluster__WriteRequest *replicate_hint_request(const Flamedb__Cluster__HintRecord *h,
                                                       size_t max_bytes)
{
    if (h->write_request_zstd.len == 0)
        return flamedb__cluster__write_request__unpack(NULL, h->write_request.len,
                                                       h->write_request.data);
    if (h->write_request_len == 0 || h->write_request_len > max_bytes) return NULL;
    uint8_t *raw = malloc(h->write_request_len);
    if (raw == NULL) return NULL;
    size_t n = ZSTD_decompress(raw, h->write_request_len, h->write_request_zstd.data,
                               h->write_request_zstd.len);
    Flamedb__Cluster__WriteRequest *q = !ZSTD_isError(n) && n == h->write_request_len
                                            ? flamedb__cluster__write_request__unpack(NULL, n, raw)
                                            : NULL;
    free(raw);
    return q;
}

/* Hint seq is dropped undelivered (expired, or unreadable: time_s 0, the
 * profile time unknown). Collected for replay_read, which marks the target. */
static int drop_later(replay_job_t *j, uint64_t seq, int expired, int64_t time_s)
{
    if (GROW(j->gone, j->gone_cap, j->ngone + 1, GROW_UNLIMITED) != ERR_OK)
        return 0;              /* kept for a later batch */
    j->gone[j->ngone++] = seq; /* bounded by the batch: replay_batch hints */
    if (j->ngone == 1 || time_s < j->gone_oldest_s) j->gone_oldest_s = time_s;
    j->expired += expired;
    j->corrupt += !expired;
    return 0;
}

static int replay_take(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    replay_job_t *j = ctx;
    replicate_t *r = j->r;
    Flamedb__Cluster__HintRecord *h = flamedb__cluster__hint_record__unpack(NULL, len, rec);
    if (j->expire_only && h != NULL && (h->expires_unix_ms == 0 || j->now <= h->expires_unix_ms)) {
        /* the first hint not expired: hints expire in the order they were
         * stored, so nothing after it is expired yet */
        j->next_expiry = h->expires_unix_ms != 0 ? h->expires_unix_ms + 1 : UINT64_MAX;
        flamedb__cluster__hint_record__free_unpacked(h, NULL);
        return 1;
    }
    if (h != NULL && h->replay_after_unix_ms > j->now) {
        /* stored before its write was answered, which may still deliver it
         * (a late ack deletes it): not yet */
        flamedb__cluster__hint_record__free_unpacked(h, NULL);
        return 0;
    }
    Flamedb__Cluster__WriteRequest *q =
        h != NULL ? replicate_hint_request(h, r->o.max_message_bytes) : NULL;
    int expired = h != NULL && h->expires_unix_ms != 0 && j->now > h->expires_unix_ms;
    if (h != NULL) flamedb__cluster__hint_record__free_unpacked(h, NULL);
    if (q == NULL || expired) {
        /* replaying past the seen retention could count twice: dropped */
        int64_t time_s = q != NULL && q->time_ns > 0 ? q->time_ns / 1000000000LL : 0;
        if (q != NULL) flamedb__cluster__write_request__free_unpacked(q, NULL);
        return drop_later(j, seq, expired, time_s);
    }
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 8;
        replay_item_t *v = realloc(j->items, cap * sizeof *v);
        if (v == NULL) {
            flamedb__cluster__write_request__free_unpacked(q, NULL);
            return ERR_NOMEM;
        }
        j->items = v;
        j->cap = cap;
    }
    q->hint_replay = 1;
    q->request_id = replicate_request_id(r);
    q->deadline_unix_ms = j->now + r->o.write_timeout_ms;
    j->items[j->n++] = (replay_item_t){seq, q};
    j->bytes += len;
    /* a batch holds at most an eighth of the in-flight budget */
    return j->bytes >= r->o.max_inflight_bytes / 8 ? 1 : 0;
}

/* The batch's dropped hints leave their target short: it is marked first,
 * durably, with the oldest of their profile times, as for a write miss; the
 * hints are deleted only after the loop noted the mark (replay_send), so
 * the target stays listed throughout. A mark that could not be stored keeps
 * the hints for a later batch. */
static void replay_read(workq_job_t *w)
{
    replay_job_t *j = w->data;
    j->now = replicate_now_ms(j->r);
    storage_hint_scan(j->r->storage, j->target, 0, j->r->o.replay_batch, replay_take, j);
    if (j->ngone == 0) return;
    j->stamped = 1;
    if (replicate_mark_stamp(j->r, j->target, j->gone_oldest_s, &j->mark_ms) != 0)
        j->ngone = j->expired = j->corrupt = 0;
}

static void batch_done(replicate_t *r, size_t rti);

typedef struct gone_job {
    workq_job_t work;
    replicate_t *r;
    size_t rti;
    char target[RING_NODE_ID_MAX + 1];
    uint64_t *seqs; /* owned */
    size_t n;
    uint64_t deleted;
} gone_job_t;

static void gone_work(workq_job_t *w)
{
    gone_job_t *j = w->data;
    for (size_t i = 0; i < j->n; i++)
        j->deleted += storage_hint_delete(j->r->storage, j->target, j->seqs[i], NULL) == 0;
}

static void gone_after(workq_job_t *w, int status)
{
    (void)status;
    gone_job_t *j = w->data;
    replicate_t *r = j->r;
    replay_target_t *rt = &r->rt[j->rti];
    r->jobs--;
    r->st.hints_dropped_expired += j->deleted;
    if (j->deleted == j->n)
        rt->acked++; /* went through: the next batch may start at once */
    else
        rt->failed++;
    replicate_publish_hint_targets(r);
    if (--rt->inflight == 0) batch_done(r, j->rti);
    free(j->seqs);
    free(j);
}

/* The marks of j's dropped hints are noted: their hints are deleted on the
 * pool, as one more item of the batch. */
static void delete_gone(replicate_t *r, replay_job_t *j, replay_target_t *rt)
{
    if (j->corrupt)
        log_warn("replicate", "dropping %u unreadable hint(s) for %s", j->corrupt, j->target);
    if (j->ngone == 0) return;
    log_info("replicate", "dropping %zu hint(s) for %s undelivered (%u expired): marked for repair",
             j->ngone, j->target, j->expired);
    gone_job_t *g = r->closing ? NULL : calloc(1, sizeof *g);
    if (g == NULL) return; /* kept: dropped (and marked again) by a later batch */
    *g = (gone_job_t){.r = r, .rti = j->rti, .seqs = j->gone, .n = j->ngone};
    snprintf(g->target, sizeof g->target, "%s", j->target);
    g->work.data = g;
    if (workq_submit(r->workq, WORKQ_WRITE, &g->work, gone_work, gone_after) != 0) {
        free(g);
        return;
    }
    j->gone = NULL; /* the job owns them now */
    r->jobs++;
    rt->inflight++;
}

static void replay_send(workq_job_t *w, int status)
{
    replay_job_t *j = w->data;
    replicate_t *r = j->r;
    r->jobs--;
    replicate_marks_dropped(r, j->target, j->mark_ms, j->stamped); /* before any delete */
    replay_target_t *rt = &r->rt[j->rti];
    rt->inflight = 0;
    rt->acked = rt->failed = 0;
    if (j->expire_only) /* dropped some: the next may have expired as well */
        rt->expire_due_ms = j->ngone > 0 || j->next_expiry == 0 ? 0 : j->next_expiry;
    delete_gone(r, j, rt);
    for (size_t i = 0; i < j->n; i++) {
        Flamedb__Cluster__WriteRequest *q = j->items[i].msg;
        pending_t *p = status == 0 && !r->closing ? calloc(1, sizeof *p) : NULL;
        int rc = p != NULL ? r->ops.send(r->ops.ctx, j->target,
                                         FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE,
                                         q->deadline_unix_ms, &q->base)
                           : ERR_UNAVAILABLE;
        if (rc != 0) {
            free(p);
            flamedb__cluster__write_request__free_unpacked(q, NULL);
            rt->failed++;
            continue;
        }
        *p = (pending_t){.request_id = q->request_id,
                         .deadline_ms = q->deadline_unix_ms,
                         .kind = PEND_REPLAY,
                         .rti = j->rti,
                         .seq = j->items[i].seq,
                         .msg = q};
        snprintf(p->target, sizeof p->target, "%s", j->target);
        rt->inflight++;
        replicate_pending_add(r, p);
    }
    free(j->items);
    free(j->gone);
    free(j);
    if (rt->inflight == 0) batch_done(r, (size_t)(rt - r->rt));
}

/* A batch of target rti's hints: replayed, or with expire_only (the target
 * unreachable) only those expired dropped. */
static void start_batch(replicate_t *r, size_t rti, int expire_only)
{
    replay_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) return;
    j->r = r;
    j->rti = rti;
    j->expire_only = expire_only;
    snprintf(j->target, sizeof j->target, "%s", r->rt[rti].id);
    j->work.data = j;
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, replay_read, replay_send) != 0) {
        free(j);
        return;
    }
    r->rt[rti].busy = 1;
    r->rt[rti].expiring = expire_only;
    r->jobs++;
}

/* A batch ended: go on at once if it all got through (a batch of expired
 * hints only: with another such batch, until one drops none and waits for
 * the first hint kept to expire), else wait a tick. */
static void batch_done(replicate_t *r, size_t rti)
{
    replay_target_t *rt = &r->rt[rti];
    int again = rt->failed == 0 && rt->acked > 0 && !r->closing, expiring = rt->expiring;
    rt->busy = 0;
    rt->expiring = 0;
    if (again) start_batch(r, rti, expiring); /* expired ones: until a batch drops none */
}

void replicate_hint_delete_work(workq_job_t *w)
{
    replicate_hint_delete_t *j = w->data;
    j->rc = storage_hint_delete(j->r->storage, j->target, j->seq, NULL);
}

static void delete_after(workq_job_t *w, int status)
{
    replicate_hint_delete_t *j = w->data;
    replicate_t *r = j->r;
    replay_target_t *rt = &r->rt[j->rti];
    r->jobs--;
    if (status == 0 && j->rc == 0) {
        r->st.hints_replayed++;
        rt->acked++;
    } else {
        rt->failed++;
    }
    replicate_publish_hint_targets(r);
    if (--rt->inflight == 0) batch_done(r, j->rti);
    free(j);
}

void replicate_replay_resolved(replicate_t *r, pending_t *p, int ok)
{
    replay_target_t *rt = &r->rt[p->rti];
    flamedb__cluster__write_request__free_unpacked(p->msg, NULL);
    replicate_hint_delete_t *j = ok ? calloc(1, sizeof *j) : NULL;
    if (j != NULL) {
        *j = (replicate_hint_delete_t){.r = r, .rti = p->rti, .seq = p->seq};
        snprintf(j->target, sizeof j->target, "%s", p->target);
        j->work.data = j;
        if (workq_submit(r->workq, WORKQ_WRITE, &j->work, replicate_hint_delete_work,
                         delete_after) == 0) {
            r->jobs++;
            free(p);
            return; /* the delete resolves it */
        }
        free(j);
    }
    rt->failed++;
    free(p);
    if (--rt->inflight == 0) batch_done(r, (size_t)(rt - r->rt));
}

/* ---------------------------------------------------------------- removed targets */

/* Hints for a node that left for good are never delivered: its ranges have
 * other owners, which repair fills from the replicas that acknowledged those
 * writes. Dropped in bounded rounds on the pool, the rest on later ticks. */
#define DROP_PAGE 1024
#define DROP_PAGES 16

typedef struct drop_job {
    workq_job_t work;
    replicate_t *r;
    size_t rti;
    char target[RING_NODE_ID_MAX + 1];
    uint64_t seqs[DROP_PAGE];
    size_t n;
    uint64_t dropped;
} drop_job_t;

static int drop_take(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    drop_job_t *j = ctx;
    j->seqs[j->n++] = seq;
    return 0;
}

static void drop_work(workq_job_t *w)
{
    drop_job_t *j = w->data;
    for (int page = 0; page < DROP_PAGES; page++) {
        j->n = 0;
        if (storage_hint_scan(j->r->storage, j->target, 0, DROP_PAGE, drop_take, j) != 0) return;
        for (size_t i = 0; i < j->n; i++)
            j->dropped += storage_hint_delete(j->r->storage, j->target, j->seqs[i], NULL) == 0;
        if (j->n < DROP_PAGE) return;
    }
}

static void drop_after(workq_job_t *w, int status)
{
    drop_job_t *j = w->data;
    replicate_t *r = j->r;
    r->jobs--;
    r->rt[j->rti].busy = 0;
    r->st.hints_dropped_left += j->dropped;
    if (j->dropped > 0) {
        log_info("replicate", "dropped %llu hint(s) for %s: it left the cluster",
                 (unsigned long long)j->dropped, j->target);
        replicate_publish_hint_targets(r);
    }
    free(j);
}

static void drop_left(replicate_t *r, size_t rti)
{
    drop_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) return;
    *j = (drop_job_t){.r = r, .rti = rti};
    snprintf(j->target, sizeof j->target, "%s", r->rt[rti].id);
    j->work.data = j;
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, drop_work, drop_after) != 0) {
        free(j);
        return;
    }
    r->rt[rti].busy = 1;
    r->jobs++;
}

/* Whether target may get its hints now: known to the view and not down. */
static int target_ready(const cluster_view_t *v, const char *id)
{
    if (v->self_id != NULL && strcmp(v->self_id, id) == 0) return 0;
    int k = v->ring != NULL ? ring_node_find(v->ring, id) : -1;
    if (k >= 0) return v->reachable[k] != 0;
    return v->pending != NULL && ring_node_find(v->pending, id) >= 0; /* joining */
}

static int offer(void *ctx, const char *target, uint64_t count, uint64_t bytes)
{
    void **a = ctx;
    replicate_t *r = a[0];
    const cluster_view_t *v = a[1];
    if (count == 0) return 0;
    int left = r->ops.member_left != NULL && r->ops.member_left(r->ops.ctx, target);
    int ready = left || target_ready(v, target);
    size_t rti = rt_get(r, target);
    if (rti == SIZE_MAX || r->rt[rti].busy) return 0;
    if (left)
        drop_left(r, rti);
    else if (ready)
        start_batch(r, rti, 0);
    else if (replicate_now_ms(r) >= r->rt[rti].expire_due_ms)
        start_batch(r, rti, 1); /* away: its expired hints dropped (and it marked) */
    return 0;
}

void replicate_replay_tick(uv_timer_t *t)
{
    replicate_t *r = t->data;
    if (r->closing) return;
    const cluster_view_t *v = r->ops.view_acquire(r->ops.ctx);
    if (v == NULL) return;
    void *a[2] = {r, (void *)v};
    storage_hint_targets(r->storage, offer, a);
    replicate_marks_tick(r, v);
    r->ops.view_release(v);
    replicate_witness_tick(r);
}
