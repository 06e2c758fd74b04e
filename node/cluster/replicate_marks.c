/* replicate_marks.c — repair marks on the write path (replicate_int.h;
 * docs/cluster.md, "Read correctness").
 *
 * A write this node coordinated that a replica missed, and that no hint
 * will deliver (hinted handoff off, the target over hints-max-bytes, a hint
 * that could not be stored, or one dropped undelivered on replay: expired
 * or unreadable), leaves that replica short until anti-entropy fetches it. The node then
 * marks the replica (durably, storage_repair_mark_put, when the hint is
 * dropped) and lists it with its hint targets (cluster_set_hint_targets),
 * so no coordinator reads from it; asks it to run a repair pass whenever it
 * is reachable (a REPAIR message of kind RUN, every REPLICATE_RUN_EVERY_MS);
 * and lifts the mark when the replica reports a complete pass that started
 * after the mark (kind DONE, replicate_marks_repaired) and compared back to
 * the oldest profile time of the writes it missed, or that it restored
 * every range whole since (replicate_past.c). Marks are compared
 * with a slack of the write timeout plus a second: the drop is recorded on
 * the pool and may be stamped a little before the write it belongs to
 * completes.
 *
 * With hinted handoff off a replica slower than hint-ack-grace is marked
 * while the write that missed it still waits for its ack. Such a miss is
 * open: the write's target carries it (miss_open) and the mark counts it,
 * so the bookkeeping is bounded by the writes in flight and needs no limit
 * of its own. Its ack (the replica stored it) cancels it, and the mark is
 * lifted at once when no other open miss and no miss only a pass lifts
 * remains. The deadline, a refusal or the node stopping turns it into an
 * ordinary miss. The lift is stored too (store_lift), so a restart does not
 * read the mark back: as a repaired time just past the slack after the
 * latest miss it covers. Misses are stamped on the pool and noted here
 * later, so a drop stamped before that latest miss may still be on its way
 * (and be a real miss): the lift is stored only while no drop is between
 * its stamp and its note, and every drop stamped later is stamped above the
 * misses a stored lift covers (drop_floor_ms).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/replicate_int.h"

#define REPLICATE_RUN_EVERY_MS 2000

static uint64_t slack_ms(const replicate_t *r)
{
    return r->o.write_timeout_ms + 1000;
}

static replicate_mark_t *mark_of(replicate_t *r, const char *id, int create)
{
    for (size_t i = 0; i < r->nmarks; i++)
        if (strcmp(r->marks[i].id, id) == 0) return &r->marks[i];
    if (!create) return NULL;
    if (GROW(r->marks, r->marks_cap, r->nmarks + 1, GROW_UNLIMITED) != ERR_OK) return NULL;
    replicate_mark_t *m = &r->marks[r->nmarks++];
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", id);
    return m;
}

/* An open miss resolves by the write's deadline, well inside the slack; a
 * pass that started past it covers the write even if a count went astray. */
int replicate_mark_active(const replicate_mark_t *m, uint64_t slack)
{
    return (m->lost_ms != 0 && m->lost_ms + slack >= m->repaired_ms) ||
           (m->open > 0 && m->open_ms + slack >= m->repaired_ms);
}

/* 1 while m holds a miss only a pass lifts. */
static int pinned(const replicate_t *r, const replicate_mark_t *m)
{
    return m->lost_ms != 0 && m->lost_ms + slack_ms(r) >= m->repaired_ms;
}

/* A miss only a pass lifts: warned once per mark (open misses come and go
 * with every late ack on a loaded machine; their counters tell about them). */
static void pin(replicate_t *r, replicate_mark_t *m, uint64_t ms)
{
    if (!pinned(r, m))
        log_warn("replicate",
                 "%s missed a write no hint will deliver: not read from until "
                 "its next anti-entropy pass",
                 m->id);
    if (ms > m->lost_ms) m->lost_ms = ms;
}

/* The latest miss m records, open or not. */
static uint64_t latest_ms(const replicate_mark_t *m)
{
    return m->open > 0 && m->open_ms > m->lost_ms ? m->open_ms : m->lost_ms;
}

static int load_one(void *ctx, int kind, const char *node, uint64_t ms)
{
    replicate_t *r = ctx;
    if (kind == STORAGE_MARK_OLDEST) { /* after every LOST and REPAIRED one */
        replicate_past_loaded(r, node, (int64_t)ms);
        return 0;
    }
    replicate_mark_t *m = mark_of(r, node, 1);
    if (m == NULL) return ERR_NOMEM;
    if (kind == STORAGE_MARK_LOST)
        m->lost_ms = ms;
    else
        m->repaired_ms = ms;
    return 0;
}

void replicate_marks_load(replicate_t *r)
{
    int rc = storage_repair_marks(r->storage, load_one, r);
    if (rc != 0) log_warn("replicate", "cannot read the repair marks: %s", err_message(rc));
    for (size_t i = 0; i < r->nmarks; i++)
        replicate_past_marks(r, r->marks[i].id, r->marks[i].lost_ms, r->marks[i].repaired_ms);
}

/* A late ack can still cancel t's miss: its write waits for that ack, and
 * hinted handoff is off (a hint over the bound marks a replica that has
 * hints waiting anyway). */
static int may_ack_late(const replicate_t *r, const rtarget_t *t)
{
    return r->o.hints_max_bytes == 0 && t->state == TS_PENDING && t->pend != NULL;
}

/* Pool: stores a repaired time for id (a pass that reported it, or a lift). */
typedef struct done_job {
    workq_job_t work;
    replicate_t *r;
    char id[RING_NODE_ID_MAX + 1];
    uint64_t ms;
} done_job_t;

static void done_work(workq_job_t *w)
{
    done_job_t *j = w->data;
    errmsg_t em = {{0}};
    int rc = storage_repair_mark_put(j->r->storage, STORAGE_MARK_REPAIRED, j->id, j->ms, &em);
    if (rc != 0) log_warn("replicate", "repair mark of %s: %s", j->id, errmsg_text(&em, rc));
}

static void done_after(workq_job_t *w, int status)
{
    (void)status;
    done_job_t *j = w->data;
    j->r->jobs--;
    free(j);
}

static void store_repaired(replicate_t *r, const char *id, uint64_t ms)
{
    done_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j == NULL) return; /* not stored: after a restart the mark counts until a pass */
    j->r = r;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->ms = ms;
    j->work.data = j;
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, done_work, done_after) == 0)
        r->jobs++;
    else
        free(j);
}

/* m was lifted by late acks: stored as repaired just past the slack after
 * the latest miss it records, so a restart reads every one of them as
 * repaired. While drops are stamped and not noted yet, one of them may be a
 * real miss stamped before that latest one: the store waits for the last
 * of them (lift_unstored, replicate_marks_note). The floor is raised before
 * the count is read and a drop counts itself before it reads the floor
 * (both sequentially consistent), so a drop the count misses is stamped
 * above the floor, outside what is stored as repaired. */
static void store_lift(replicate_t *r, replicate_mark_t *m)
{
    uint64_t covered = m->open_ms > m->lost_ms ? m->open_ms : m->lost_ms;
    if (covered > atomic_load(&r->drop_floor_ms)) atomic_store(&r->drop_floor_ms, covered);
    m->lift_unstored = atomic_load(&r->drops_unnoted) != 0;
    uint64_t ms = covered + slack_ms(r) + 1;
    if (m->lift_unstored || ms <= m->repaired_ms) return;
    m->repaired_ms = ms; /* a later miss is stamped above covered: still counted */
    replicate_past_marks(r, m->id, 0, ms);
    store_repaired(r, m->id, ms);
}

/* Lifts that waited for the drops on their way: stored once none is left. */
static void store_waiting_lifts(replicate_t *r)
{
    if (atomic_load(&r->drops_unnoted) != 0) return;
    for (size_t i = 0; i < r->nmarks; i++) {
        replicate_mark_t *m = &r->marks[i];
        if (!m->lift_unstored) continue;
        m->lift_unstored = 0;
        if (!replicate_mark_active(m, slack_ms(r))) store_lift(r, m); /* else marked again */
    }
}

/* A miss whose ack came while its mark was being stored: never listed, but
 * stored, so the lift is stored as well. */
static void acked_while_stored(replicate_t *r, const rtarget_t *t)
{
    r->st.misses_acked_late++;
    replicate_mark_t *m = mark_of(r, t->id, 1);
    if (m == NULL) return; /* out of memory: the stored mark counts until a pass */
    if (t->dropped_ms > m->open_ms) m->open_ms = t->dropped_ms;
    if (!replicate_mark_active(m, slack_ms(r))) store_lift(r, m);
}

void replicate_marks_note(replicate_t *r, replicate_write_t *rw)
{
    int changed = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        rtarget_t *t = &rw->t[ti];
        if (!t->dropped) continue;
        t->dropped = 0; /* noted once: replicate_finish_hints notes rw again */
        atomic_fetch_sub(&r->drops_unnoted, 1);
        if (t->state == TS_ACKED && r->o.hints_max_bytes == 0) {
            acked_while_stored(r, t);
            continue;
        }
        replicate_mark_t *m = mark_of(r, t->id, 1);
        if (m == NULL) continue; /* out of memory: the stored mark still counts after a restart */
        if (may_ack_late(r, t)) {
            log_debug("replicate", "%s marked until it acknowledges a write after the grace",
                      m->id);
            t->miss_open = 1;
            m->open++;
            if (t->dropped_ms > m->open_ms) m->open_ms = t->dropped_ms;
        } else {
            pin(r, m, t->dropped_ms);
        }
        changed = 1;
    }
    store_waiting_lifts(r);
    if (changed) replicate_publish_hint_targets(r);
}

int replicate_mark_stamp(replicate_t *r, const char *id, int64_t time_s, uint64_t *ms)
{
    errmsg_t em = {{0}};
    atomic_fetch_add(&r->drops_unnoted, 1); /* before the floor is read: store_lift */
    uint64_t now = replicate_now_ms(r), floor = atomic_load(&r->drop_floor_ms);
    *ms = now > floor ? now : floor + 1; /* above every miss a stored lift covers */
    /* how old the profile is, stored first: a pass lifts the mark only if
     * it compared back to it (replicate_past.c) */
    if (time_s >= 0) replicate_past_drop(r, id, time_s, *ms);
    int rc = storage_repair_mark_put(r->storage, STORAGE_MARK_LOST, id, *ms, &em);
    if (rc != 0) log_warn("replicate", "repair mark for %s: %s", id, errmsg_text(&em, rc));
    return rc;
}

void replicate_marks_dropped(replicate_t *r, const char *id, uint64_t ms, uint32_t count)
{
    if (count == 0) return;
    atomic_fetch_sub(&r->drops_unnoted, count);
    replicate_mark_t *m = mark_of(r, id, 1);
    if (m != NULL) pin(r, m, ms); /* else out of memory: the stored mark counts after a restart */
    store_waiting_lifts(r);
    replicate_publish_hint_targets(r);
}

void replicate_marks_resolved(replicate_t *r, rtarget_t *t, int acked)
{
    if (!t->miss_open) return;
    t->miss_open = 0;
    replicate_mark_t *m = mark_of(r, t->id, 0);
    if (m == NULL || m->open == 0) return; /* cannot happen: noted with the mark */
    int was = replicate_mark_active(m, slack_ms(r));
    m->open--;
    if (!acked) { /* deadline, refusal or stopping: a miss only a pass lifts */
        pin(r, m, t->dropped_ms);
        return;
    }
    r->st.misses_acked_late++;
    if (!was || replicate_mark_active(m, slack_ms(r))) return;
    r->st.marks_lifted_late_ack++;
    log_debug("replicate", "%s acknowledged every write it was marked for: read from again", t->id);
    store_lift(r, m);
    replicate_publish_hint_targets(r);
}

size_t replicate_marks_active(const replicate_t *r, const char **ids, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nmarks && n < cap; i++)
        if (replicate_mark_active(&r->marks[i], slack_ms(r))) ids[n++] = r->marks[i].id;
    return n;
}

/* Whether a pass that compared profile times from from_s on, by a node
 * whose last full repair was set at whole_ms, covers every write m holds:
 * a pass does not find a missed profile older than its span. */
static int pass_covers(replicate_t *r, replicate_mark_t *m, int64_t from_s, uint64_t whole_ms)
{
    int64_t oldest = 0;
    uint64_t latest = 0;
    if (!replicate_past_oldest(r, m->id, &oldest, &latest) || from_s <= oldest ||
        whole_ms > latest + slack_ms(r))
        return 1;
    if (!m->past_said)
        log_warn("replicate",
                 "%s's pass compared profiles from %lld s on, but it missed a write of a profile "
                 "at %lld s: not read from until it restored every range whole (asked to, it "
                 "runs a full repair)",
                 m->id, (long long)from_s, (long long)oldest);
    m->past_said = 1;
    return 0;
}

void replicate_marks_repaired(replicate_t *r, const char *id, uint64_t started_ms, int64_t from_s,
                              uint64_t whole_ms)
{
    replicate_mark_t *m = mark_of(r, id, 0);
    if (m == NULL || started_ms <= m->repaired_ms) return; /* never marked, or old news */
    if (!pass_covers(r, m, from_s, whole_ms)) return;
    m->past_said = 0;
    int was = replicate_mark_active(m, slack_ms(r));
    m->repaired_ms = started_ms;
    replicate_past_marks(r, id, 0, started_ms);
    store_repaired(r, id, started_ms); /* not stored: after a restart it is asked again */
    if (was && !replicate_mark_active(m, slack_ms(r))) {
        log_info("replicate", "%s repaired: read from again", id);
        replicate_publish_hint_targets(r);
    }
}

void replicate_marks_tick(replicate_t *r, const cluster_view_t *v)
{
    uint64_t now = replicate_now_ms(r);
    for (size_t i = 0; i < r->nmarks; i++) {
        replicate_mark_t *m = &r->marks[i];
        if (!replicate_mark_active(m, slack_ms(r)) || now - m->run_sent_ms < REPLICATE_RUN_EVERY_MS)
            continue;
        if (now <= latest_ms(m) + slack_ms(r)) continue; /* a pass now could not lift it */
        int k = v->ring != NULL ? ring_node_find(v->ring, m->id) : -1;
        if (k < 0 || !v->reachable[k] || (int)k == v->self) continue;
        Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
        q.protocol_version = CLUSTER_PROTOCOL_VERSION;
        q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_RUN;
        q.deadline_unix_ms = now + r->o.write_timeout_ms;
        q.request_id = replicate_request_id(r);
        int64_t oldest = 0;
        uint64_t latest = 0;
        if (replicate_past_oldest(r, m->id, &oldest, &latest)) q.from_s = oldest;
        m->run_sent_ms = now;
        int rc = r->ops.send(r->ops.ctx, m->id, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_REPAIR,
                             q.deadline_unix_ms, &q.base);
        if (rc != 0) log_debug("replicate", "repair request to %s: %s", m->id, err_message(rc));
    }
}

/* A removed node came back with its old data: it lacks every write since it
 * left, which no hint covers, backfills of any age among them. Marked like
 * a dropped hint (durably, from the pool) with the oldest profile time
 * there is, so it serves no reads until it restored every range whole. */
typedef struct lost_job {
    workq_job_t work;
    replicate_t *r;
    char id[RING_NODE_ID_MAX + 1];
    uint64_t ms;
} lost_job_t;

static void lost_work(workq_job_t *w)
{
    lost_job_t *j = w->data;
    errmsg_t em = {{0}};
    int rc = storage_repair_mark_put(j->r->storage, STORAGE_MARK_LOST, j->id, j->ms, &em);
    if (rc != 0) log_warn("replicate", "repair mark of %s: %s", j->id, errmsg_text(&em, rc));
}

static void lost_after(workq_job_t *w, int status)
{
    (void)status;
    lost_job_t *j = w->data;
    j->r->jobs--;
    free(j);
}

void replicate_marks_rejoined(void *ctx, const char *id)
{
    replicate_t *r = ctx;
    replicate_mark_t *m = mark_of(r, id, 1);
    if (m == NULL) return;
    m->lost_ms = replicate_now_ms(r);
    /* it lacks every write since it left, backfills of any age among them:
     * stored (one small put, rare) before the mark, which a pass alone
     * does not lift */
    replicate_past_drop(r, id, 1, m->lost_ms);
    lost_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j != NULL) {
        j->r = r;
        snprintf(j->id, sizeof j->id, "%s", id);
        j->ms = m->lost_ms;
        j->work.data = j;
        if (workq_submit(r->workq, WORKQ_WRITE, &j->work, lost_work, lost_after) == 0)
            r->jobs++;
        else
            free(j); /* kept in memory only */
    }
    replicate_publish_hint_targets(r);
}
