/* replicate.c — the loop-thread half of the replicated write path: admission,
 * sending the packed requests, matching WRITE_ACKs to requests, the deadline,
 * the answer to the client, and the life of a write until every replica is
 * acknowledged or hinted (replicate_int.h, docs/replication.md).
 *
 * Every request waiting for an ack sits in an id table and in one deadline
 * list. All requests get the same timeout, so the list is in deadline order
 * by construction and one timer armed at its head serves them all.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "node/cluster/replicate_int.h"

#define MIB ((uint64_t)1 << 20)

void replicate_options_default(replicate_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->write_timeout_ms = 5000;
    o->hints_max_bytes = 1024 * MIB;
    o->hints_max_total_bytes = 4 * o->hints_max_bytes;
    o->hint_replay_interval_ms = 1000;
    o->hint_ack_grace_ms = 20;
    o->hint_ttl_ms = 6ULL * 24 * 3600 * 1000;
    o->max_message_bytes = 64 * MIB;
    o->max_inflight_bytes = 256 * MIB;
    o->max_inflight_writes = 4096;
    o->replay_batch = 32;
    o->shards.default_shards = RING_DEFAULT_SHARDS_PER_SERVICE;
    o->shards.n = 0;
    o->max_tree_nodes = 1u << 20;
    o->inflight = NULL;
    o->clock = clock_real();
    o->member_version = CLUSTER_MEMBER_VERSION;
}

uint64_t replicate_now_ms(const replicate_t *r)
{
    return (uint64_t)clock_wall_ms(&r->o.clock);
}

uint64_t replicate_request_id(replicate_t *r)
{
    return atomic_fetch_add(&r->next_request_id, 1);
}

/* ---------------------------------------------------------------- pending */

/* The pending ack with the earliest deadline, or NULL. */
static pending_t *first_deadline(const replicate_t *r)
{
    return LIST_ENTRY(list_first(&r->deadlines), pending_t, dl);
}

void replicate_pending_add(replicate_t *r, pending_t *p)
{
    size_t b = p->request_id % REPLICATE_BUCKETS;
    p->hnext = r->buckets[b];
    r->buckets[b] = p;
    list_push_back(&r->deadlines, &p->dl);
    if (first_deadline(r) == p) replicate_arm_deadline(r);
}

pending_t *replicate_pending_take(replicate_t *r, uint64_t request_id, const char *sender)
{
    pending_t **pp = &r->buckets[request_id % REPLICATE_BUCKETS];
    while (*pp != NULL && (*pp)->request_id != request_id)
        pp = &(*pp)->hnext;
    pending_t *p = *pp;
    if (p == NULL || (sender != NULL && strcmp(p->target, sender) != 0)) return NULL;
    *pp = p->hnext;
    list_remove(&p->dl);
    return p;
}

static void on_deadline(uv_timer_t *t);

void replicate_arm_deadline(replicate_t *r)
{
    if (r->closing) return;
    const pending_t *first = first_deadline(r);
    if (first == NULL) {
        uv_timer_stop(&r->deadline_timer);
        return;
    }
    uint64_t now = replicate_now_ms(r), d = first->deadline_ms;
    uv_timer_start(&r->deadline_timer, on_deadline, d > now ? d - now : 0, 0);
}

/* ---------------------------------------------------------------- writes */

int replicate_admit(replicate_t *r, errmsg_t *em)
{
    if (r->closing) return errmsg_set(em, ERR_UNAVAILABLE, "the node is stopping");
    uint64_t bytes = r->st.inflight_bytes + r->replica_bytes;
    if (r->st.inflight_writes >= r->o.max_inflight_writes || bytes >= r->o.max_inflight_bytes) {
        r->st.unavailable++;
        return errmsg_set(em, ERR_UNAVAILABLE,
                          "too many replicated writes in flight (%llu writes, %llu bytes; at most "
                          "%u and %zu): retry later",
                          (unsigned long long)r->st.inflight_writes, (unsigned long long)bytes,
                          r->o.max_inflight_writes, r->o.max_inflight_bytes);
    }
    return 0;
}

static void respond(replicate_write_t *rw, int rc, const errmsg_t *em)
{
    if (rw->responded) return;
    rw->responded = 1;
    replicate_preack_unlink(rw->r, rw);
    if (rc != 0) rw->r->st.quorum_failures++;
    if (rw->done) rw->done(rw->done_ctx, rc, em);
}

/* Answers as soon as the outcome is known; a 200 only once every replica
 * that has not acknowledged has a durable hint (replicate_preack). */
static void evaluate(replicate_write_t *rw)
{
    if (rw->responded || rw->preack_busy || rw->notice_wait) return;
    if (replicate_quorum_met(rw)) {
        if (!replicate_preack(rw->r, rw)) respond(rw, 0, NULL);
    } else if (replicate_quorum_lost(rw) || rw->outstanding == 0) {
        errmsg_t em = {{0}};
        replicate_quorum_reason(rw, &em);
        respond(rw, replicate_quorum_status(rw), &em);
    }
}

static void unlink_write(replicate_t *r, replicate_write_t *rw)
{
    list_remove(&rw->link);
    r->st.inflight_writes--;
    r->st.inflight_bytes -= rw->bytes;
}

/* Every target resolved: store the hints still due, then free. */
static void finish(replicate_t *r, replicate_write_t *rw)
{
    replicate_preack_unlink(r, rw);
    unlink_write(r, rw);
    int need = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        need |= rw->t[ti].state == TS_NEEDS_HINT;
    if (need)
        replicate_finish_hints(r, rw);
    else
        replicate_write_free(rw);
}

void replicate_write_settle(replicate_t *r, replicate_write_t *rw)
{
    evaluate(rw);
    if (rw->outstanding == 0 && !rw->preack_busy && rw->notices_out == 0) finish(r, rw);
}

static void target_resolved(replicate_t *r, replicate_write_t *rw)
{
    rw->outstanding--;
    replicate_write_settle(r, rw);
}

/* A target without an ack: it gets a hint at the end, unless it already got
 * one before the answer. */
static enum target_state unacked(const rtarget_t *t)
{
    return t->prehinted ? TS_HINTED : TS_NEEDS_HINT;
}

static void send_target(replicate_t *r, replicate_write_t *rw, uint32_t ti)
{
    rtarget_t *t = &rw->t[ti];
    pending_t *p = calloc(1, sizeof *p);
    int rc = p != NULL ? r->ops.send(r->ops.ctx, t->id, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE,
                                     rw->deadline_ms, &t->req.base)
                       : ERR_NOMEM;
    if (rc != 0) {
        free(p);
        r->st.write_nacks++;
        replicate_quorum_fail(rw, ti, unacked(t), rc, "could not be sent");
        return;
    }
    p->request_id = t->req.request_id;
    p->sent_ms = replicate_now_ms(r);
    p->deadline_ms = rw->deadline_ms;
    p->kind = PEND_WRITE;
    snprintf(p->target, sizeof p->target, "%s", t->id);
    p->rw = rw;
    p->ti = ti;
    t->pend = p;
    rw->outstanding++;
    replicate_pending_add(r, p);
}

void replicate_start(replicate_t *r, replicate_write_t *rw, cluster_write_done_fn done, void *ctx)
{
    rw->done = done;
    rw->done_ctx = ctx;
    r->st.writes++;
    r->st.hints_stored += rw->hints_stored;
    r->st.hints_dropped_full += rw->hints_dropped;
    if (rw->hints_dropped > 0) replicate_marks_note(r, rw);
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        if (rw->t[ti].self) {
            if (rw->t[ti].state == TS_ACKED)
                r->st.write_acks++;
            else
                r->st.write_nacks++;
        }
    }
    list_push_back(&r->writes, &rw->link);
    r->st.inflight_writes++;
    r->st.inflight_bytes += rw->bytes;
    if (rw->hints_stored > 0) replicate_publish_hint_targets(r);
    replicate_witness_sign(r, rw); /* after the publish: that beat lists them */
    rw->outstanding = 1;           /* held while sending, so nothing finishes early */
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        if (rw->t[ti].state == TS_PENDING && !rw->t[ti].self) send_target(r, rw, ti);
    target_resolved(r, rw);
}

/* ---------------------------------------------------------------- acks */

static int retryable(int status)
{
    return status == ERR_UNAVAILABLE || status == ERR_IO || status == ERR_TIMEOUT ||
           status == ERR_NOMEM || status == ERR_INTERNAL;
}

static void write_acked(replicate_t *r, pending_t *p, const Flamedb__Cluster__WriteAck *a)
{
    replicate_write_t *rw = p->rw;
    rtarget_t *t = &rw->t[p->ti];
    t->pend = NULL;
    if (a->status == 0) {
        r->st.write_acks++;
        replicate_preack_acked(r, t->id, replicate_now_ms(r) - p->sent_ms);
        replicate_quorum_ack(rw, p->ti);
    } else {
        r->st.write_nacks++;
        char why[96];
        snprintf(why, sizeof why, "refused: %.80s", a->reason);
        replicate_quorum_fail(rw, p->ti, retryable(a->status) ? unacked(t) : TS_REFUSED, a->status,
                              why);
        if (!retryable(a->status))
            log_warn("replicate", "replica %s refused a write: %s", t->id, a->reason);
    }
    /* stored, or refused for good (a replay would be refused again) */
    if (t->prehinted && (t->state == TS_ACKED || t->state == TS_REFUSED))
        replicate_preack_resolved(r, rw, p->ti);
    replicate_marks_resolved(r, t, t->state == TS_ACKED);
    free(p);
    target_resolved(r, rw);
}

void replicate_on_ack(void *ctx, cluster_msg_t *msg)
{
    replicate_t *r = ctx;
    const Flamedb__Cluster__WriteAck *a = (const Flamedb__Cluster__WriteAck *)msg->body;
    /* NULL: late (after the deadline), unknown, or not from the node it was
     * sent to; all harmless, writes are idempotent */
    pending_t *p = replicate_pending_take(r, a->request_id, msg->env->sender_id);
    if (p == NULL) return;
    if (p->kind == PEND_WRITE)
        write_acked(r, p, a);
    else if (p->kind == PEND_NOTICE)
        replicate_notice_resolved(r, p, a->status == 0);
    else
        replicate_replay_resolved(r, p, a->status == 0);
}

/* Takes the earliest request off the deadline list and gives up on its ack:
 * a replay stays stored (retried later); a write's target fails with rc and
 * why, and gets a hint. */
static void give_up_first(replicate_t *r, int rc, const char *why)
{
    pending_t *p = replicate_pending_take(r, first_deadline(r)->request_id, NULL);
    if (p->kind == PEND_REPLAY) {
        replicate_replay_resolved(r, p, 0);
        return;
    }
    if (p->kind == PEND_NOTICE) {
        replicate_notice_resolved(r, p, 0);
        return;
    }
    replicate_write_t *rw = p->rw;
    rw->t[p->ti].pend = NULL;
    replicate_quorum_fail(rw, p->ti, unacked(&rw->t[p->ti]), rc, why);
    replicate_marks_resolved(r, &rw->t[p->ti], 0);
    free(p);
    target_resolved(r, rw);
}

/* Requests past their deadline: writes get hints, replays are retried later. */
static void on_deadline(uv_timer_t *timer)
{
    replicate_t *r = timer->data;
    uint64_t now = replicate_now_ms(r);
    for (pending_t *f; (f = first_deadline(r)) != NULL && f->deadline_ms <= now;) {
        r->st.write_nacks += f->kind == PEND_WRITE;
        give_up_first(r, ERR_TIMEOUT, "timed out");
    }
    replicate_arm_deadline(r);
}

/* ---------------------------------------------------------------- life */

int replicate_new(uv_loop_t *loop, storage_t *storage, const replicate_options_t *o,
                  const cluster_ops_t *ops, replicate_t **out, errmsg_t *em)
{
    *out = NULL;
    replicate_t *r = calloc(1, sizeof *r);
    if (r == NULL) return errmsg_set(em, ERR_NOMEM, "replicate: out of memory");
    if (replicate_past_init(r) != 0) {
        free(r);
        return errmsg_set(em, ERR_NOMEM, "replicate: cannot make a lock");
    }
    if (uv_mutex_init(&r->wit_mu) != 0) {
        replicate_past_free(r);
        free(r);
        return errmsg_set(em, ERR_NOMEM, "replicate: cannot make a lock");
    }
    list_init(&r->deadlines);
    list_init(&r->writes);
    list_init(&r->graces);
    r->loop = loop;
    r->storage = storage;
    r->o = *o;
    r->workq = o->workq;
    if (r->workq == NULL && workq_new(loop, 4, NULL, &o->clock, &r->own_workq) != 0) {
        uv_mutex_destroy(&r->wit_mu);
        replicate_past_free(r);
        free(r);
        return errmsg_set(em, ERR_NOMEM, "replicate: out of memory");
    }
    if (r->workq == NULL) r->workq = r->own_workq;
    if (r->o.replay_batch == 0) r->o.replay_batch = 1;
    r->ops = *ops;
    /* ids unique across restarts, so a late ack from a previous life never
     * matches a new request */
    uint64_t seed = replicate_now_ms(r) << 20 ^ (uint64_t)(uintptr_t)r;
    atomic_init(&r->next_request_id, seed | 1);
    uv_timer_init(loop, &r->deadline_timer);
    uv_timer_init(loop, &r->replay_timer);
    uv_timer_init(loop, &r->grace_timer);
    r->deadline_timer.data = r->replay_timer.data = r->grace_timer.data = r;
    r->hint_sig = UINT64_MAX;
    replicate_marks_load(r);
    replicate_witness_load(r); /* an error is logged: those holds are gone as before */
    replicate_publish_hint_targets(r);
    uint64_t every = r->o.hint_replay_interval_ms ? r->o.hint_replay_interval_ms : 1000;
    uv_timer_start(&r->replay_timer, replicate_replay_tick, every, every);
    *out = r;
    return 0;
}

void replicate_stats(const replicate_t *r, replicate_stats_t *out)
{
    *out = r->st;
    const char *ids[RING_MAX_NODES];
    out->marked = replicate_marks_active(r, ids, RING_MAX_NODES);
    out->replay_inflight = 0;
    for (size_t i = 0; i < r->nrt; i++)
        out->replay_inflight += r->rt[i].inflight;
}

static void handle_closed(uv_handle_t *h)
{
    replicate_t *r = h->data;
    if (++r->closed_handles == 3 && r->close_done) r->close_done(r->close_arg);
}

/* Requests still waiting when the node stops: writes store their hints now
 * (on this thread, the node is stopping anyway); replays are simply dropped
 * (their hints stay stored). */
static void flush_pending(replicate_t *r)
{
    while (first_deadline(r) != NULL)
        give_up_first(r, ERR_UNAVAILABLE, "node stopping");
}

void replicate_close(replicate_t *r, void (*done)(void *arg), void *arg)
{
    if (r->closing) return;
    r->closing = 1; /* from here on hints are stored synchronously */
    flush_pending(r);
    r->close_done = done;
    r->close_arg = arg;
    uv_timer_stop(&r->deadline_timer);
    uv_timer_stop(&r->replay_timer);
    uv_timer_stop(&r->grace_timer);
    uv_close((uv_handle_t *)&r->deadline_timer, handle_closed);
    uv_close((uv_handle_t *)&r->replay_timer, handle_closed);
    uv_close((uv_handle_t *)&r->grace_timer, handle_closed);
}

void replicate_free(replicate_t *r)
{
    if (r == NULL) return;
    while (!list_empty(&r->writes)) { /* only if close was never called */
        replicate_write_t *rw = LIST_ENTRY(list_first(&r->writes), replicate_write_t, link);
        unlink_write(r, rw);
        replicate_write_free(rw);
    }
    free(r->rt);
    free(r->marks);
    free(r->wit);
    uv_mutex_destroy(&r->wit_mu);
    replicate_past_free(r);
    free(r->slow);
    workq_free(r->own_workq);
    free(r);
}

/* ---------------------------------------------------------------- metrics */

static int render_target(void *ctx, const char *target, uint64_t count, uint64_t bytes)
{
    buf_t *out = ctx;
    return buf_printf(out,
                      "flamedb_hints_pending{target=\"%s\"} %llu\n"
                      "flamedb_hints_pending_bytes{target=\"%s\"} %llu\n",
                      target, (unsigned long long)count, target, (unsigned long long)bytes);
}

/* The per-target gauges, read from storage when /metrics is rendered. */
static int render_hint_targets(const void *storage, buf_t *out)
{
    int rc = buf_append_str(out, "# HELP flamedb_hints_pending Hints stored per target node.\n"
                                 "# TYPE flamedb_hints_pending gauge\n"
                                 "# HELP flamedb_hints_pending_bytes Bytes of hints stored per "
                                 "target node.\n# TYPE flamedb_hints_pending_bytes gauge\n");
    if (rc == 0 && storage != NULL)
        rc = storage_hint_targets((storage_t *)storage, render_target, out);
    return rc;
}

void replicate_stats_register(const replicate_stats_t *st, storage_t *storage,
                              metrics_registry_t *r)
{
#define REPLICATE_DEF(field, metric, help) METRICS_U64_DEF(replicate_stats_t, field, metric, help),
    static const metrics_u64_def_t counters[] = {REPLICATE_COUNTERS(REPLICATE_DEF)};
#undef REPLICATE_DEF
    metrics_add_u64_array(r, counters, sizeof counters / sizeof *counters, st);
    metrics_add_u64(r, "flamedb_replicated_writes_inflight",
                    "Replicated writes waiting for replicas.", METRICS_GAUGE, &st->inflight_writes);
    metrics_add_u64(r, "flamedb_replicated_bytes_inflight", "Bytes of packed writes held.",
                    METRICS_GAUGE, &st->inflight_bytes);
    metrics_add_u64(r, "flamedb_repair_marked_nodes",
                    "Replicas this node marked short (a write no hint will deliver): not read "
                    "from until their repair pass.",
                    METRICS_GAUGE, &st->marked);
    metrics_add_u64(r, "flamedb_hints_replaying",
                    "Hints sent to their target, not yet acknowledged.", METRICS_GAUGE,
                    &st->replay_inflight);
    metrics_add_render(r, render_hint_targets, storage);
}
