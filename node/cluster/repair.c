/* repair.c — anti-entropy's machinery (repair_int.h): the pass's own
 * thread and its schedule, the loop side that sends the thread's requests
 * and routes the answers back, the callers waiting for a pass, serving
 * peers' requests on the pool, and the module's lifetime. One pass itself
 * is repair_pass.c.
 *
 * A pass blocks on storage scans and on round trips to peers, so it runs on
 * a thread of its own rather than tying up a pool thread for its length.
 * It never touches the loop's state: it hands one request at a time to the
 * loop (repair_call(): the request, guarded by the mutex, then uv_async_send) and
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
/* While a move this node streams for is in progress, passes follow each
 * other this far apart (and the thread looks for one this often). */
#define REPAIR_MOVE_GAP_MS 1000

/* ---------------------------------------------------------------- thread side */

uint64_t repair_now_ms(repair_t *r)
{
    return (uint64_t)clock_wall_ms(&r->o.write.clock);
}

/* Waits (mu held) until *done is set or the deadline (unix ms) passes. */
static void wait_until(repair_t *r, const repair_call_t *c, uint64_t deadline)
{
    while (c->state != CALL_DONE && !r->closing) {
        uint64_t now = repair_now_ms(r);
        if (now >= deadline) return;
        uv_cond_timedwait(&r->cond, &r->mu, (deadline - now) * 1000000ull);
    }
}

/* One round trip: q's request id and deadline are set here. On success
 * *ans owns the answer (body decoded and checked); free it with
 * cluster_msg_free. */
int repair_call_once(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                     cluster_msg_t *ans, const cluster_view_t **view, errmsg_t *em)
{
    repair_call_t c = {peer, q != NULL && ans == NULL, q, 0, CALL_QUEUED, 0, 0, {0}, NULL};
    uint64_t deadline = repair_now_ms(r) + r->o.timeout_ms;
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
    if (c.down) /* not asked again (repair_call): a down node does not answer */
        return errmsg_set(em, ERR_TIMEOUT, "no answer from %s: it was marked down after %llu ms",
                          peer,
                          (unsigned long long)(repair_now_ms(r) + r->o.timeout_ms - deadline));
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

int repair_call(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                cluster_msg_t *ans, errmsg_t *em)
{
    int rc = ERR_UNAVAILABLE;
    for (int i = 0; i < REPAIR_RETRIES && rc == ERR_UNAVAILABLE; i++) {
        if (i > 0) uv_sleep(100 * i);
        rc = repair_call_once(r, peer, q, ans, NULL, em);
    }
    return rc;
}

void repair_request_init(Flamedb__Cluster__RepairRequest *q, Flamedb__Cluster__RepairKind kind,
                         int64_t from_s, int64_t until_s)
{
    flamedb__cluster__repair_request__init(q);
    q->protocol_version = CLUSTER_PROTOCOL_VERSION;
    q->kind = kind;
    q->from_s = from_s;
    q->until_s = until_s;
}

void repair_ids_request_init(Flamedb__Cluster__RepairRequest *q, uint64_t lo, uint64_t hi,
                             int64_t from_s, int64_t until_s, repair_ids_cursor_t *cur)
{
    repair_request_init(q, RK(IDS), from_s, until_s);
    q->lo = lo;
    q->hi = hi;
    q->limit = REPAIR_IDS_PAGE;
    q->after = cur->set ? &cur->after : NULL;
}

void repair_ids_cursor_next(repair_ids_cursor_t *cur, Flamedb__Cluster__SeenEntry *const *entries,
                            size_t n)
{
    if (n == 0) return;
    const Flamedb__Cluster__SeenEntry *l = entries[n - 1];
    snprintf(cur->tenant, sizeof cur->tenant, "%s", l->tenant);
    memcpy(cur->pid, l->profile_id.data, 16);
    flamedb__cluster__seen_entry__init(&cur->after);
    cur->after.tenant = cur->tenant;
    cur->after.token = l->token;
    cur->after.series_id = l->series_id;
    cur->after.profile_id = (ProtobufCBinaryData){16, cur->pid};
    cur->after.time_ns = l->time_ns;
    cur->set = 1;
}

/* When the thread must wake next (unix ms; UINT64_MAX: when signalled). */
uint64_t repair_schedule_after(uint64_t every, uint64_t from, uint64_t *rng)
{
    if (every == 0) return 0;
    *rng ^= *rng << 13; /* xorshift64: spread, not secrecy */
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    uint64_t span = every / 10;
    return from + every + (span > 0 ? *rng % (span + 1) : 0);
}

static uint64_t next_wake(const repair_t *r, uint64_t due, uint64_t last_end)
{
    uint64_t w = due ? due : UINT64_MAX;
    if (r->soon_ms != 0 && r->soon_ms < w) w = r->soon_ms;
    if (r->asked && last_end + REPAIR_ASKED_GAP_MS < w) w = last_end + REPAIR_ASKED_GAP_MS;
    return w;
}

/* Thread: whether a move is in progress that this node must stream for
 * (it joins, or gains ranges from a leaving or joining node). */
static int move_wanted(repair_t *r)
{
    const cluster_view_t *v = NULL;
    errmsg_t em = {{0}};
    if (repair_call_once(r, NULL, NULL, NULL, &v, &em) != 0) return 0;
    uv_mutex_lock(&r->mu);
    int joining = r->joining;
    uv_mutex_unlock(&r->mu);
    uv_mutex_lock(&r->mu);
    int full = r->full_gen != 0;
    uv_mutex_unlock(&r->mu);
    int w = joining || full || repair_view_gains(v) || repair_regain_pending(r);
    r->ops.view_release(v);
    return w;
}

/* Thread: whether the move under way now is the one the last pass ran
 * with. A ring that changed during the pass (another node removed or
 * joining) changes what this node gains and from whom: the pass verified
 * the old move only. */
static int move_unchanged(repair_t *r)
{
    const cluster_view_t *v = NULL;
    errmsg_t em = {{0}};
    if (repair_call_once(r, NULL, NULL, NULL, &v, &em) != 0) return 0;
    uint64_t fp = repair_move_fp(v);
    r->ops.view_release(v);
    if (fp == r->last.move_fp) return 1;
    log_info("repair",
             "join: the ring changed during the pass: the next pass streams the new move");
    return 0;
}

/* Thread, after a pass of a joining node: a complete pass that started
 * after the join settled, ran with the move still under way when it ended
 * and found nothing missing in any range it gains (their digests matched
 * a current replica's, or the replica's id lists named nothing this node
 * lacks) verifies the join. */
static void join_check(repair_t *r, int rc)
{
    uv_mutex_lock(&r->mu);
    int joining = r->joining;
    uv_mutex_unlock(&r->mu);
    if (!joining || rc != 0 || !r->last.joining) return;
    log_info("repair", "join: pass %s, %llu missing, started %s the join settled",
             r->last.complete ? "complete" : "incomplete", (unsigned long long)r->last.missing,
             r->last.started_ms >= r->join_settled_ms ? "after" : "before");
    if (!r->last.complete || r->last.missing != 0 || r->last.started_ms < r->join_settled_ms)
        return;
    if (!move_unchanged(r)) return;
    uv_mutex_lock(&r->mu);
    r->joining = 0;
    r->join_verified = 1;
    if (!r->closing) uv_async_send(&r->async);
    uv_mutex_unlock(&r->mu);
}

void repair_full_set(repair_t *r, uint64_t gen)
{
    uv_mutex_lock(&r->mu);
    if (gen != r->full_gen) r->full_since_ms = repair_now_ms(r);
    r->full_gen = gen;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
}

int repair_full_union_set(repair_t *r, int on, const uint64_t *lo, const uint64_t *hi, size_t n,
                          int all)
{
    uint64_t *l = n ? malloc(n * sizeof *l) : NULL, *h = n ? malloc(n * sizeof *h) : NULL;
    int rc = n && (l == NULL || h == NULL) ? ERR_NOMEM : 0;
    if (rc == 0 && n) {
        memcpy(l, lo, n * sizeof *l);
        memcpy(h, hi, n * sizeof *h);
    }
    uv_mutex_lock(&r->mu);
    r->full_union = on;
    r->fu_all = all || rc != 0;
    free(r->fu_lo);
    free(r->fu_hi);
    r->fu_lo = rc == 0 ? l : NULL;
    r->fu_hi = rc == 0 ? h : NULL;
    r->fu_n = rc == 0 ? n : 0;
    uv_mutex_unlock(&r->mu);
    if (rc != 0) {
        free(l);
        free(h);
    }
    return rc;
}

void repair_whole_set(repair_t *r, uint64_t since_ms)
{
    uv_mutex_lock(&r->mu);
    r->whole_since_ms = since_ms;
    uv_mutex_unlock(&r->mu);
}

void repair_join_ended(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    r->joining = 0;
    uv_mutex_unlock(&r->mu);
}

void repair_full_lift_ask(repair_t *r, uint64_t gen)
{
    uv_mutex_lock(&r->mu);
    r->lift.ask = gen; /* answered by the next pass's regain step (repair_regain.c) */
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
}

void repair_full_lift_release(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    r->lift.held = 0;
    uv_mutex_unlock(&r->mu);
}

/* Thread, after a pass: under a full repair mark, a complete pass over the
 * ranges this node replicates that started once the settle margin after
 * the mark passed (every write in flight from a coordinator that still
 * took this node as down has landed) and found nothing missing converged
 * once the regain of its intervals is done: the loop lifts the mark. */
static void full_check(repair_t *r, int rc)
{
    uv_mutex_lock(&r->mu);
    uint64_t gen = r->full_gen, since = r->full_since_ms;
    int regaining = r->regain.n > 0; /* its intervals streamed first (cluster_full.c) */
    uv_mutex_unlock(&r->mu);
    if (gen == 0 || rc != 0 || regaining) return;
    int after = r->last.started_ms >= since + r->settle_ms;
    /* a pass a second: every pass while the outcome changes, then one a minute */
    int outcome = (r->last.complete ? 1 : 0) | (r->last.missing ? 2 : 0) | (after ? 4 : 0);
    if (outcome != r->full_logged || ++r->full_quiet >= REPAIR_FULL_LOG_EVERY) {
        log_info("repair", "full repair: pass %s, %llu missing, started %s the mark settled",
                 r->last.complete ? "complete" : "incomplete", (unsigned long long)r->last.missing,
                 after ? "after" : "before");
        r->full_logged = outcome;
        r->full_quiet = 0;
    }
    /* a pass that compared with nobody (this node alone in its view) proves nothing */
    if (!r->last.complete || !r->last.holds || r->last.peers == 0 || r->last.missing != 0 || !after)
        return;
    uv_mutex_lock(&r->mu);
    if (r->full_gen == gen) {
        r->full_done = gen;
        r->full_gen = 0;
        if (!r->closing) uv_async_send(&r->async);
    }
    uv_mutex_unlock(&r->mu);
}

/* Thread, mu held (released meanwhile): the takers' check the loop asked
 * for; the answer goes back through the async handle. */
static void verify_leave(repair_t *r)
{
    r->leave_verify = 0;
    uv_mutex_unlock(&r->mu);
    errmsg_t em = {{0}};
    uint64_t fp = 0;
    int rc = repair_verify_leave(r, &fp, &em);
    if (rc != 0) log_info("repair", "leave not verified yet: %s", errmsg_text(&em, rc));
    uv_mutex_lock(&r->mu);
    r->leave_result = rc == 0 ? 1 : -1;
    r->leave_fp = fp;
    if (!r->closing) uv_async_send(&r->async);
}

void repair_ask_verify_leave(repair_t *r)
{
    uv_mutex_lock(&r->mu);
    r->leave_verify = 1;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
}

/* The thread: a pass when a caller waits, when a peer asked (not more than
 * every REPAIR_ASKED_GAP_MS), when the interval is due, or while a move
 * this node streams for is in progress (checked every REPAIR_MOVE_GAP_MS). */
static void thread_main(void *arg)
{
    repair_t *r = arg;
    buf_t out;
    buf_init(&out, 2 * REPAIR_SUMMARY_MAX);
    uint64_t rng = (repair_now_ms(r) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)r) | 1;
    uint64_t due = repair_schedule_after(r->o.interval_ms, repair_now_ms(r), &rng), last_end = 0;
    uint64_t checked = 0;
    uv_mutex_lock(&r->mu);
    for (;;) {
        uint64_t wake, now;
        while (!r->closing && !r->demand && !r->leave_verify &&
               (wake = next_wake(r, due, last_end)) > (now = repair_now_ms(r))) {
            uint64_t poll = (checked > last_end ? checked : last_end) + REPAIR_MOVE_GAP_MS;
            if (poll <= now) break;
            if (poll < wake) wake = poll;
            uv_cond_timedwait(&r->cond, &r->mu, (wake - now) * 1000000ull);
        }
        if (r->closing) break;
        if (r->leave_verify) {
            verify_leave(r);
            continue;
        }
        int run = r->demand || next_wake(r, due, last_end) <= repair_now_ms(r);
        if (!run) { /* the move poll */
            uv_mutex_unlock(&r->mu);
            run = move_wanted(r);
            checked = repair_now_ms(r);
            uv_mutex_lock(&r->mu);
            if (!run) continue;
        }
        int soon = r->soon_ms != 0 && r->soon_ms <= repair_now_ms(r);
        if (soon) r->soon_ms = 0;
        r->wc.demanded = r->demand || soon; /* its window check runs whether due or not */
        r->demand = r->asked = 0;
        uint64_t gen = ++r->started_gen;
        uv_mutex_unlock(&r->mu);
        int rc = repair_pass_run(r, &out);
        join_check(r, rc);
        full_check(r, rc);
        last_end = repair_now_ms(r);
        due = repair_schedule_after(r->o.interval_ms, last_end, &rng);
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
    repair_waiter_t **pp = &r->waiters;
    errmsg_t em = {{0}};
    if (rc != 0 && r->closing)
        errmsg_set(&em, rc, "the node is stopping: no repair pass");
    else if (rc != 0)
        errmsg_set(&em, rc, "repair pass failed: %s", err_message(rc));
    while (*pp != NULL) {
        repair_waiter_t *w = *pp;
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
    repair_call_t *c = r->call;
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
    int rc = r->result_rc, verified = r->join_verified, left = r->leave_result;
    uint64_t left_fp = r->leave_fp;
    uint64_t regained = r->regain_done, full = r->full_done, lift = r->lift.answer;
    uint64_t checked = r->wc.void_done;
    int granted = r->lift.granted;
    r->wc.void_done = 0;
    r->lift.answer = 0;
    r->full_done = 0;
    r->join_verified = 0;
    r->leave_result = 0;
    r->regain_done = 0;
    char *json = NULL;
    if (gen > r->delivered_gen) {
        json = malloc(r->result.len + 1);
        if (json != NULL) {
            memcpy(json, r->result.data, r->result.len);
            json[r->result.len] = 0;
        }
    }
    uv_mutex_unlock(&r->mu);
    if (verified) cluster_move_join_verified(r->c);
    if (left != 0) cluster_move_leave_verified(r->c, left > 0, left_fp);
    if (regained != 0) cluster_regain_finished(r->c, regained);
    if (full != 0) cluster_full_finished(r->c, full);
    uint64_t *wlo = NULL, *whi = NULL;
    size_t wn = 0;
    repair_windows_take(r, &wlo, &whi, &wn);
    if (wn > 0) cluster_regain_windows(r->c, wlo, whi, wn);
    free(wlo);
    free(whi);
    /* after the regain took what the check handed: no read in between */
    if (checked != 0) cluster_void_checked(r->c, checked);
    if (lift != 0) cluster_full_lift(r->c, lift, granted);
    if (gen > r->delivered_gen) {
        r->delivered_gen = gen;
        deliver(r, gen, json ? rc : ERR_NOMEM, json ? json : "");
    }
    free(json);
}

void repair_tick(repair_t *r)
{
    if (r == NULL || !r->has_lock) return;
    uv_mutex_lock(&r->mu);
    repair_call_t *c = r->call;
    if (c != NULL && c->state == CALL_SENT && c->peer != NULL) {
        const cluster_view_t *v = r->ops.view_acquire(r->ops.ctx);
        int i = v != NULL && v->ring != NULL ? ring_node_find(v->ring, c->peer) : -1;
        if (i >= 0 && !v->reachable[i]) {
            c->down = 1;
            c->state = CALL_DONE;
            uv_cond_broadcast(&r->cond);
        }
        if (v != NULL) r->ops.view_release(v);
    }
    uv_mutex_unlock(&r->mu);
}

void repair_on_answer(void *ctx, cluster_msg_t *msg)
{
    repair_t *r = ctx;
    uv_mutex_lock(&r->mu);
    repair_call_t *c = r->call;
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
    repair_waiter_t *w = calloc(1, sizeof *w);
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

/* mu held: a pass with its window check after_ms from now, or sooner. */
static void soon_locked(repair_t *r, uint64_t after_ms)
{
    uint64_t at = repair_now_ms(r) + after_ms;
    if (r->soon_ms == 0 || at < r->soon_ms) r->soon_ms = at;
    if (after_ms > 0) r->soon_gap_ms = after_ms;
    uv_cond_broadcast(&r->cond);
}

void repair_windows_soon(repair_t *r, uint64_t after_ms)
{
    if (r == NULL || r->o.windows_interval_ms == 0) return;
    uv_mutex_lock(&r->mu);
    soon_locked(r, after_ms);
    uv_mutex_unlock(&r->mu);
}

void repair_windows_void(repair_t *r, uint64_t gen, uint64_t after_ms)
{
    if (r == NULL) return;
    uv_mutex_lock(&r->mu);
    if (gen > r->wc.void_gen) r->wc.void_gen = gen;
    soon_locked(r, after_ms);
    uv_mutex_unlock(&r->mu);
}

/* ---------- serving a peer ---------- */

typedef struct serve_job {
    workq_job_t work;
    repair_t *r;
    cluster_msg_t msg; /* the request, taken */
    char sender[RING_NODE_ID_MAX + 1];
    arena_t arena;
    Flamedb__Cluster__RepairAnswer a;
    uint8_t *untrusted; /* DIGEST: per range, left out (digest_untrusted); NULL: none */
    errmsg_t em;
    int rc;
} serve_job_t;

static void serve_work(workq_job_t *wk)
{
    serve_job_t *j = wk->data;
    repair_t *r = j->r;
    repair_serve_env_t env = {.cache = r->partcache, .now_ms = repair_now_ms(r)};
    j->rc = repair_serve_build(r->storage, &r->o, (const void *)j->msg.body, j->untrusted, &env,
                               &j->arena, &j->a, &j->em);
    if (env.window_reads + env.parts > 0) {
        uv_mutex_lock(&r->mu);
        r->counters.stream_window_reads += env.window_reads;
        r->counters.stream_parts += env.parts;
        uv_mutex_unlock(&r->mu);
    }
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
    if (src == ERR_TOO_LARGE && rc == 0) { /* the asker learns why rather than waiting it out */
        char reason[160];
        snprintf(reason, sizeof reason,
                 "repair %d: the answer takes %zu bytes, more than --max-message-bytes %zu",
                 (int)q->kind, protobuf_c_message_get_packed_size(&a->base),
                 r->o.max_message_bytes);
        log_warn("repair", "answer to %s: %s", to, reason);
        answer(r, to, q, a, ERR_TOO_LARGE, reason);
        return;
    }
    if (src != 0) log_debug("repair", "answer to %s not sent: %s", to, err_message(src));
}

static void serve_after(workq_job_t *wk, int status)
{
    serve_job_t *j = wk->data;
    repair_t *r = j->r;
    r->serving--;
    uv_mutex_lock(&r->mu);
    r->counters.served++;
    uv_mutex_unlock(&r->mu);
    if (status != 0 && j->rc == 0) j->rc = errmsg_set(&j->em, ERR_UNAVAILABLE, "stopping");
    if (!r->closing)
        answer(r, j->sender, (const void *)j->msg.body, &j->a, j->rc,
               j->rc ? errmsg_text(&j->em, j->rc) : "");
    arena_free(&j->arena);
    cluster_msg_free(&j->msg);
    free(j->untrusted);
    free(j);
}

/* Loop: why this node must not answer q (its copy of a token interval q
 * asks about is not to be trusted: cluster_copy_untrusted), or NULL. A
 * stream, or a comparison a peer counts as done with a replica of the
 * range, from such a copy would pass a short copy on as a whole one. FETCH
 * (profiles a comparison named) is answered: what it adds is real. A
 * DIGEST is answered for the other ranges it asks about (digest_untrusted).
 * *code: the refusal's status (REPAIR_NOT_SOURCE, or REPAIR_NO_COPY for a
 * window check's sums of an interval this node regains). */
static const char *untrusted_for(repair_t *r, const Flamedb__Cluster__RepairRequest *q, int *code)
{
    const char *why;
    *code = REPAIR_NOT_SOURCE;
    switch (q->kind) {
    case RK(STREAM):
        /* a fill's walk (until_s: old windows only, repair_fill.c) only adds
         * what the asker lacks, never takes this copy for the whole: a full
         * repair's union asks a marked or voided copy too */
        if (q->until_s > 0) return NULL;
        return cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_SOURCE);
    case RK(SPANS):
        return cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_SOURCE);
    case RK(STREAM_CHECK): /* in buckets: a window check's comparison (repair_windows.c) */
        if (q->sum_buckets == 0)
            return cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_SOURCE);
        why = cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_COMPARED);
        if (why != NULL) return why;
        why = cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_SUMS);
        if (why != NULL) *code = REPAIR_NO_COPY; /* it regains the interval */
        return why;
    case RK(IDS):
        /* profile ids to fetch by (profiles_from_s): the asker only adds what
         * it lacks and never takes this copy for the whole, so a copy under
         * repair answers them (repair_windows_pull) */
        return q->profiles_from_s != 0
                   ? NULL
                   : cluster_copy_untrusted(r->c, q->lo, q->hi, CLUSTER_COPY_COMPARED);
    default: /* DIGEST: per range (digest_untrusted) */
        return NULL;
    }
}

/* Loop: for a DIGEST, which of its ranges this node's copy of is not to be
 * trusted (cluster_copy_untrusted), into *out (NULL when none): those are
 * left out of the answer and named in it, so the requester counts only the
 * others as compared. */
static int digest_untrusted(repair_t *r, const Flamedb__Cluster__RepairRequest *q, uint8_t **out)
{
    *out = NULL;
    for (size_t i = 0; q->kind == RK(DIGEST) && i < q->n_ranges; i++) {
        uint64_t lo[2], hi[2];
        int k =
            ring_range_intervals((ring_range_t){q->ranges[i]->start, q->ranges[i]->end}, lo, hi);
        int bad = 0;
        for (int j = 0; j < k && !bad; j++)
            bad = cluster_copy_untrusted(r->c, lo[j], hi[j], CLUSTER_COPY_COMPARED) != NULL;
        if (bad && *out == NULL && (*out = calloc(q->n_ranges, 1)) == NULL) return ERR_NOMEM;
        if (bad) (*out)[i] = 1;
    }
    return 0;
}

/* Loop: a peer marked this node short and asks for a pass; from_s, when
 * not 0, is the oldest profile time of the writes it missed. Older than
 * the span a pass compares, no pass can find them: this node restores
 * every range whole (a full repair; docs/cluster.md, "Read correctness"). */
static void run_asked(repair_t *r, const char *peer, int64_t from_s)
{
    int64_t span_from, until_s;
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &span_from, &until_s);
    /* a joining node streams its ranges whole anyway; asked again once active */
    if (from_s != 0 && from_s < span_from && !r->c->full.on && !r->c->joining) {
        char why[RING_NODE_ID_MAX + 200];
        snprintf(why, sizeof why,
                 "%.64s holds a repair mark on this node for a write of a profile at %lld s, "
                 "older than the span anti-entropy compares (from %lld s)",
                 peer, (long long)from_s, (long long)span_from);
        cluster_full_begin(r->c, why);
    }
    uv_mutex_lock(&r->mu);
    r->asked = 1;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->mu);
}

void repair_on_request(void *ctx, cluster_msg_t *msg)
{
    repair_t *r = ctx;
    const Flamedb__Cluster__RepairRequest *q = (const void *)msg->body;
    Flamedb__Cluster__RepairAnswer busy = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    if (r->closing) return;
    if (q->kind == RK(RUN)) { /* a peer marked this node short: a pass soon */
        run_asked(r, msg->env->sender_id, q->from_s);
        return;
    }
    if (q->kind == RK(DONE)) {
        int64_t from_s = q->from_s, until_s;
        if (from_s == 0) /* a sender that does not say: the span here at its start */
            repair_span(&r->o, (int64_t)(q->started_unix_ms / 1000), &from_s, &until_s);
        if (r->c->replicate != NULL)
            replicate_marks_repaired(r->c->replicate, msg->env->sender_id, q->started_unix_ms,
                                     from_s, q->whole_since_unix_ms);
        cluster_move_pass_done(r->c, msg->env->sender_id, q->started_unix_ms);
        return;
    }
    int refusal;
    const char *why = untrusted_for(r, q, &refusal);
    if (why != NULL) { /* the requester goes on to another replica, or waits */
        answer(r, msg->env->sender_id, q, &busy, refusal, why);
        return;
    }
    serve_job_t *j = r->serving < REPAIR_SERVE_MAX ? calloc(1, sizeof *j) : NULL;
    if (j == NULL || digest_untrusted(r, q, &j->untrusted) != 0) {
        free(j);
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
        free(j->untrusted);
        free(j);
        return;
    }
    r->serving++;
}

/* ---------- metrics ---------- */

void repair_counters_take(repair_t *r, repair_counters_t *out)
{
    memset(out, 0, sizeof *out);
    if (r == NULL || !r->has_lock) return;
    uv_mutex_lock(&r->mu);
    *out = r->counters;
    uv_mutex_unlock(&r->mu);
}

void repair_counters_register(const repair_counters_t *st, metrics_registry_t *reg)
{
#define REPAIR_DEF(field, metric, help) METRICS_U64_DEF(repair_counters_t, field, metric, help),
    static const metrics_u64_def_t defs[] = {REPAIR_COUNTERS(REPAIR_DEF)};
#undef REPAIR_DEF
    metrics_add_u64_array(reg, defs, sizeof defs / sizeof *defs, st);
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
    r->o.windows_interval_ms = cfg->repair_windows_interval_ms;
    r->wc.due_ms = repair_now_ms(r) + r->o.windows_interval_ms; /* one interval after the start */
    r->soon_gap_ms = REPAIR_MOVE_GAP_MS; /* until the cluster gives its settle margin */
    r->full_logged = -1;                 /* the first full-repair pass is logged */
    r->o.seen_retention_s = in->seen_retention_seconds;
    r->o.max_future_s = in->max_future_seconds;
    r->o.profile_retention_s = in->profile_retention_seconds;
    r->o.timeout_ms = cfg->query_timeout_ms > 1000 ? cfg->query_timeout_ms : 1000;
    r->o.max_message_bytes = cfg->max_message_bytes;
    r->o.stream_bytes_per_s = cfg->stream_max_mb_per_s * 1000000ull;
    r->o.repair_bytes_per_s = cfg->repair_bytes_per_s;
    r->o.progress_ms = cfg->stream_progress_interval_ms;
    r->o.heal_after = cfg->stream_check_heal_after > 0 ? cfg->stream_check_heal_after : 1;
    r->o.heals = cfg->stream_check_heals;
    r->o.stream_receive_max_bytes = cfg->stream_receive_max_bytes;
    r->o.fill_keys_batch = cfg->fill_keys_batch > 0 ? cfg->fill_keys_batch : 1;
    r->o.stream_version = cfg->stream_version > 0 && cfg->stream_version < REPAIR_STREAM_VERSION
                              ? cfg->stream_version
                              : REPAIR_STREAM_VERSION;
    /* a stream's next part comes within a request's timeout of the last */
    if (repair_partcache_new(cfg->stream_window_cache, 4 * r->o.timeout_ms, &r->partcache) != 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    r->joining = c->joining;
    r->join_settled_ms = cluster_move_settled_ms(c);
    r->settle_ms = cluster_move_settled_ms(c) - c->move_start_ms;
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
    free(r->streams.v);
    free(r->kept.streams.v);
    free(r->fu_lo);
    free(r->fu_hi);
    free(r->rg.streams.v);
    free(r->rg.iv);
    free(r->regain.lo);
    free(r->regain.hi);
    repair_windows_free(r);
    workq_free(r->own_workq);
    repair_partcache_free(r->partcache);
    if (r->has_lock) {
        uv_mutex_destroy(&r->mu);
        uv_cond_destroy(&r->cond);
    }
    while (r->waiters != NULL) {
        repair_waiter_t *w = r->waiters;
        r->waiters = w->next;
        free(w);
    }
    free(r);
}
