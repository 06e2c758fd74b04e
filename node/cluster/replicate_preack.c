/* replicate_preack.c — hints stored before a push is answered 200
 * (replicate_int.h, docs/replication.md "Before the answer").
 *
 * Once a write has its quorum, every replica that has not acknowledged yet
 * gets a durable hint (or, with hinted handoff off or over its bound, a
 * repair mark) before the client hears 200. Otherwise a coordinator killed
 * between the answer and the write's deadline would leave that replica short
 * with nobody knowing. The common case costs nothing: the write first waits
 * up to hint-ack-grace for the other acks (a FIFO of writes and one timer:
 * every write gets the same grace), and only the replicas still silent then
 * are hinted, on the pool. A hint whose ack arrives later is deleted again;
 * until the write's deadline the replay skips it (replay_after_unix_ms), so
 * a slow replica does not get the write twice while it is still in flight.
 *
 * A replica that lets the grace run out is held slow until it acknowledges
 * a write within the grace again (its late acks still arrive and are timed):
 * meanwhile writes do not wait the grace for it but hint it at once, so a
 * replica that stays slow costs each push a hint write, not the grace too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/replicate_int.h"

/* Whether t is a natural replica of some series of the write. A target
 * that is only a node joining (or taking over a leaving node's ranges) is
 * not: the move's verifying pass, which starts after every write in flight
 * has landed, fetches what it missed, and waiting for a node busy streaming
 * would slow every push during a move. */
int replicate_target_natural(const rtarget_t *t)
{
    for (uint32_t k = 0; k < t->nseries; k++)
        if (t->natural[k]) return 1;
    return 0;
}

/* A replica with no durable record of the write yet: still waiting for its
 * ack, or failed retryably, and not hinted before the answer. */
static int unrecorded(const rtarget_t *t)
{
    if (t->self || t->prehinted || !replicate_target_natural(t)) return 0;
    return t->state == TS_PENDING || t->state == TS_NEEDS_HINT;
}

/* ---------------------------------------------------------------- slow replicas */

static int slow_index(const replicate_t *r, const char *id)
{
    for (size_t i = 0; i < r->nslow; i++)
        if (strcmp(r->slow[i].id, id) == 0) return (int)i;
    return -1;
}

static int is_slow(const replicate_t *r, const rtarget_t *t)
{
    return slow_index(r, t->id) >= 0;
}

/* Out of memory: not held slow, so later writes wait the grace as before. */
static void slow_add(replicate_t *r, const char *id)
{
    if (slow_index(r, id) >= 0 ||
        GROW(r->slow, r->slow_cap, r->nslow + 1, RING_MAX_NODES) != ERR_OK)
        return;
    snprintf(r->slow[r->nslow++].id, sizeof r->slow[0].id, "%s", id);
    log_info("replicate",
             "replica %s did not acknowledge within hint-ack-grace (%llu ms): hinted at once "
             "until it does",
             id, (unsigned long long)r->o.hint_ack_grace_ms);
}

void replicate_preack_acked(replicate_t *r, const char *id, uint64_t latency_ms)
{
    int i = slow_index(r, id);
    if (i < 0 || latency_ms > r->o.hint_ack_grace_ms) return;
    r->slow[i] = r->slow[--r->nslow];
    log_info("replicate", "replica %s acknowledged within hint-ack-grace again (%llu ms)", id,
             (unsigned long long)latency_ms);
}

/* ---------------------------------------------------------------- grace */

static replicate_write_t *first_grace(const replicate_t *r)
{
    return LIST_ENTRY(list_first(&r->graces), replicate_write_t, glink);
}

void replicate_arm_grace(replicate_t *r)
{
    if (r->closing) return;
    const replicate_write_t *first = first_grace(r);
    if (first == NULL) {
        uv_timer_stop(&r->grace_timer);
        return;
    }
    uint64_t now = replicate_now_ms(r), end = first->grace_end_ms;
    uv_timer_start(&r->grace_timer, replicate_grace_timer_cb, end > now ? end - now : 0, 0);
}

void replicate_preack_unlink(replicate_t *r, replicate_write_t *rw)
{
    if (!rw->in_grace) return;
    list_remove(&rw->glink);
    rw->in_grace = 0;
    (void)r; /* the timer finds the next head when it fires */
}

static void grace_begin(replicate_t *r, replicate_write_t *rw)
{
    if (rw->in_grace) return;
    rw->grace_end_ms = replicate_now_ms(r) + r->o.hint_ack_grace_ms;
    rw->in_grace = 1;
    list_push_back(&r->graces, &rw->glink);
    if (first_grace(r) == rw) replicate_arm_grace(r);
}

void replicate_grace_timer_cb(uv_timer_t *t)
{
    replicate_t *r = t->data;
    uint64_t now = replicate_now_ms(r);
    for (replicate_write_t *rw; (rw = first_grace(r)) != NULL && rw->grace_end_ms <= now;) {
        replicate_preack_unlink(r, rw);
        rw->grace_over = 1;
        for (uint32_t ti = 0; ti < rw->nt; ti++)
            if (unrecorded(&rw->t[ti]) && rw->t[ti].state == TS_PENDING) slow_add(r, rw->t[ti].id);
        replicate_write_settle(r, rw);
    }
    replicate_arm_grace(r);
}

/* ---------------------------------------------------------------- cancelling */

static void cancel_after(workq_job_t *w, int status)
{
    replicate_hint_delete_t *j = w->data;
    replicate_t *r = j->r;
    if (status != 0)
        replicate_hint_delete_work(w); /* cancelled: the hint would replay needlessly */
    r->jobs--;
    if (j->rc == 0) r->st.hints_cancelled++;
    replicate_publish_hint_targets(r);
    free(j);
}

/* Deletes the hint t got before the answer (its write reached it after all). */
static void cancel_hint(replicate_t *r, rtarget_t *t)
{
    uint64_t seq = t->hint_seq;
    t->hint_seq = 0;
    if (seq == 0) return; /* not stored (dropped: its mark stays) */
    replicate_hint_delete_t *j = calloc(1, sizeof *j);
    if (j == NULL) return; /* the hint stays and replays: idempotent */
    *j = (replicate_hint_delete_t){.r = r, .seq = seq};
    snprintf(j->target, sizeof j->target, "%s", t->id);
    j->work.data = j;
    r->jobs++;
    if (r->closing || workq_submit(r->workq, WORKQ_WRITE, &j->work, replicate_hint_delete_work,
                                   cancel_after) != 0)
        cancel_after(&j->work, 1);
}

void replicate_preack_resolved(replicate_t *r, replicate_write_t *rw, uint32_t ti)
{
    if (rw->preack_busy) return; /* the job's end looks at every target */
    cancel_hint(r, &rw->t[ti]);
}

/* ---------------------------------------------------------------- storing */

typedef struct preack_job {
    workq_job_t work;
    replicate_t *r;
    replicate_write_t *rw;
} preack_job_t;

/* Pool (or the loop when no job could be queued): only the fields the loop
 * leaves alone while preack_busy is set (the request, prehinted, hint_seq,
 * the drop mark and the job's counters). */
static void store_prehinted(replicate_write_t *rw)
{
    rw->hints_stored = rw->hints_dropped = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        if (!rw->t[ti].prehinted) continue;
        errmsg_t em = {{0}};
        replicate_store_hint(rw, ti, &em);
    }
}

static void preack_work(workq_job_t *w)
{
    preack_job_t *j = w->data;
    store_prehinted(j->rw);
}

/* Loop: counts what was stored, marks dropped ones, and deletes the hints
 * of targets whose ack came while they were being stored. */
static void fold(replicate_t *r, replicate_write_t *rw)
{
    r->st.hints_stored += rw->hints_stored;
    r->st.hints_before_answer += rw->hints_stored;
    r->st.hints_dropped_full += rw->hints_dropped;
    rw->hints_stored = rw->hints_dropped = 0;
    rw->preack_busy = 0;
    replicate_marks_note(r, rw);
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        rtarget_t *t = &rw->t[ti];
        if (!t->prehinted) continue;
        if (t->state == TS_NEEDS_HINT) t->state = TS_HINTED;
        if (t->state == TS_ACKED || t->state == TS_REFUSED) cancel_hint(r, t);
    }
    replicate_publish_hint_targets(r);
}

static void preack_after(workq_job_t *w, int status)
{
    preack_job_t *j = w->data;
    replicate_t *r = j->r;
    replicate_write_t *rw = j->rw;
    if (status != 0) store_prehinted(rw); /* cancelled: the hints still must be kept */
    r->jobs--;
    free(j);
    fold(r, rw);
    replicate_write_settle(r, rw); /* answers 200; frees it if nothing is pending */
}

/* 1: a pool job stores the hints and then answers; 0: stored here (the
 * node is stopping, or no job could be queued): answer now. */
static int preack_store(replicate_t *r, replicate_write_t *rw)
{
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        if (unrecorded(&rw->t[ti])) rw->t[ti].prehinted = 1;
    preack_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j != NULL) {
        *j = (preack_job_t){.r = r, .rw = rw};
        j->work.data = j;
        rw->preack_busy = 1;
        if (workq_submit(r->workq, WORKQ_WRITE, &j->work, preack_work, preack_after) == 0) {
            r->jobs++;
            return 1;
        }
        rw->preack_busy = 0;
        free(j);
    }
    store_prehinted(rw);
    fold(r, rw);
    return 0;
}

int replicate_preack(replicate_t *r, replicate_write_t *rw)
{
    if (rw->preack_busy) return 1;
    uint32_t due = 0, pending = 0, slow = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (!unrecorded(t)) continue;
        due++;
        if (t->state != TS_PENDING) continue;
        if (is_slow(r, t))
            slow++; /* not waited for */
        else
            pending++;
    }
    if (due == 0) return replicate_notice_send(r, rw); /* named to those that acknowledged */
    if (pending > 0 && r->o.hint_ack_grace_ms > 0 && !rw->grace_over && !r->closing) {
        grace_begin(r, rw); /* the common case: the other acks arrive meanwhile */
        return 1;
    }
    if (!rw->grace_over && r->o.hint_ack_grace_ms > 0) r->st.grace_skipped += slow;
    replicate_preack_unlink(r, rw);
    return preack_store(r, rw);
}
