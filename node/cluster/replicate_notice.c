/* replicate_notice.c — a slow replica named after the grace (replicate_int.h;
 * docs/replication.md, "A slow replica named after the grace").
 *
 * A replica that had not acknowledged a write when hint-ack-grace ran out
 * gets a hint (or a repair mark) on the coordinator before the answer
 * (replicate_preack.c). The write was sent to it while it looked reachable,
 * so no request named it as missing the write, and that hint is known on
 * the coordinator only until a gossip round carries its hints_for: killed
 * right after the 200, it took the only word of the miss with it, and the
 * slow replica, had it never stored the write, was read as complete.
 *
 * So before the answer the coordinator sends every remote natural replica
 * that acknowledged the write a notice: a WriteRequest with no series,
 * `notice` set, missed_by naming those replicas and the coordinator's
 * (incarnation, heartbeat) taken after its hints_for listed them. The
 * receiver holds them unread, durably (replicate_witness.c), or marks them
 * (no beat: a coordinator with no member entry), before its ack; the push
 * is answered 200 at the first such ack. Then whichever single node dies,
 * the fact survives: the coordinator's hint, or the receiver's stored hold,
 * which becomes a repair mark once the coordinator is seen down before its
 * word arrived. Notices time out like writes (write-timeout); when none is
 * acknowledged (every receiver failed too) the push is answered 200 all the
 * same (its quorum stored it) and flamedb_slow_replica_notices_unanswered_total
 * counts it. Nothing is sent while every replica acknowledges within the
 * grace.
 *
 * A mixed-version cluster: a member that does not advertise
 * CLUSTER_MEMBER_V_NOTICE in its entry (a release before notices, or one
 * set to it with --cluster-member-version) would refuse a notice unanswered,
 * so it is sent none; with no receiver left the push is answered as before
 * notices, on the strength of this node's own hint or mark
 * (flamedb_slow_replica_notices_skipped_total counts the replicas passed
 * over). A node set below it sends none either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "node/cluster/replicate_int.h"

/* Replicas of rw hinted or marked before the answer and not acknowledged
 * since; at most cap (ids borrowed from rw). */
static size_t slow_ids(replicate_write_t *rw, char **ids, size_t cap)
{
    size_t n = 0;
    for (uint32_t ti = 0; ti < rw->nt && n < cap; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (!t->self && t->prehinted && t->state != TS_ACKED && t->state != TS_REFUSED)
            ids[n++] = rw->t[ti].id;
    }
    return n;
}

/* The notice of rw naming ids, without its request id. */
static void notice_init(replicate_t *r, replicate_write_t *rw, char **ids, size_t n,
                        Flamedb__Cluster__WriteRequest *q)
{
    flamedb__cluster__write_request__init(q);
    q->protocol_version = CLUSTER_PROTOCOL_VERSION;
    q->tenant = rw->tenant;
    q->deadline_unix_ms = replicate_now_ms(r) + r->o.write_timeout_ms;
    q->profile_id = (ProtobufCBinaryData){16, rw->profile_id};
    q->time_ns = rw->time_ns;
    q->missed_by = ids;
    q->n_missed_by = n;
    q->notice = 1;
    uint64_t inc = 0, hb = 0;
    const char *self = rw->view->self_id;
    if (r->ops.member_beat != NULL && self != NULL &&
        r->ops.member_beat(r->ops.ctx, self, &inc, &hb) >= 0 && hb != 0) {
        q->coordinator_incarnation = inc; /* taken after hints_for listed them */
        q->coordinator_heartbeat = hb;
    }
}

/* 1 when target id advertises notices in its member entry. */
static int takes_notice(replicate_t *r, const char *id)
{
    return r->ops.member_version != NULL &&
           r->ops.member_version(r->ops.ctx, id) >= CLUSTER_MEMBER_V_NOTICE;
}

/* Sends q to target ti of rw; 1 when it waits for its ack. */
static int notice_to(replicate_t *r, replicate_write_t *rw, uint32_t ti,
                     Flamedb__Cluster__WriteRequest *q)
{
    pending_t *p = calloc(1, sizeof *p);
    if (p == NULL) return 0;
    q->request_id = replicate_request_id(r);
    int rc = r->ops.send(r->ops.ctx, rw->t[ti].id, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE,
                         q->deadline_unix_ms, &q->base);
    if (rc != 0) {
        free(p);
        log_debug("replicate", "notice to %s not sent: %s", rw->t[ti].id, err_message(rc));
        return 0;
    }
    *p = (pending_t){.request_id = q->request_id,
                     .sent_ms = replicate_now_ms(r),
                     .deadline_ms = q->deadline_unix_ms,
                     .kind = PEND_NOTICE,
                     .rw = rw,
                     .ti = ti};
    snprintf(p->target, sizeof p->target, "%s", rw->t[ti].id);
    replicate_pending_add(r, p);
    return 1;
}

int replicate_notice_send(replicate_t *r, replicate_write_t *rw)
{
    if (rw->notice_wait) return 1;
    if (rw->notice_done || r->closing || r->o.member_version < CLUSTER_MEMBER_V_NOTICE) return 0;
    rw->notice_done = 1;
    char *ids[RING_MAX_RF];
    size_t n = slow_ids(rw, ids, RING_MAX_RF);
    if (n == 0) return 0; /* the common case: every replica acknowledged in the grace */
    Flamedb__Cluster__WriteRequest q;
    notice_init(r, rw, ids, n, &q);
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (t->self || t->state != TS_ACKED || !replicate_target_natural(t)) continue;
        if (!takes_notice(r, t->id)) { /* an older member: it would refuse it unanswered */
            r->st.notices_skipped++;
            continue;
        }
        rw->notices_out += (uint32_t)notice_to(r, rw, ti, &q);
    }
    r->st.notices += rw->notices_out;
    if (rw->notices_out == 0) return 0; /* none can take it: this node's hint is all, as before */
    rw->notice_wait = 1;
    return 1;
}

void replicate_notice_resolved(replicate_t *r, pending_t *p, int ok)
{
    replicate_write_t *rw = p->rw;
    if (!ok) log_debug("replicate", "notice to %s not acknowledged", p->target);
    free(p);
    rw->notices_out--;
    if (rw->notice_wait && (ok || rw->notices_out == 0)) {
        rw->notice_wait = 0;
        if (!ok) {
            r->st.notices_unanswered++;
            log_warn("replicate", "no replica acknowledged the notice of a slow replica: its hint "
                                  "is known on this node only until gossiped");
        }
    }
    replicate_write_settle(r, rw); /* answers at the first ack; frees it after the last */
}
