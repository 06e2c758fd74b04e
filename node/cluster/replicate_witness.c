/* replicate_witness.c — a hint witnessed by the write (replicate_int.h;
 * docs/replication.md, "A hint witnessed by the write").
 *
 * With hinted handoff on, a coordinator that finds a natural replica down
 * keeps a hint for it and lists it in its hints_for, but only its own
 * member entry says so, and only once gossip carried it: killed before,
 * its hint waited on the dead node and the returning replica was read as
 * complete. So the write names such replicas to every reachable natural
 * replica (missed_by), with the coordinator's (incarnation, heartbeat)
 * taken after its hints_for listed them (replicate_witness_sign). A
 * replica that stores the write keeps a witness (target, coordinator, that
 * beat, the oldest profile time) in memory and lists the target in its own
 * hints_for (replicate_publish_hint_targets), before it acknowledges. A
 * notice (replicate_notice.c) names a replica that was slow, not down, the
 * same way. The witness is stored too (replicate_witness_store, on the
 * pool before the ack, merged with the stored one under wit_mu) and read
 * back at start (replicate_witness_load), so a restart does not forget it.
 *
 * The witness ends (replicate_witness_tick, on the replay timer) when this
 * node holds the coordinator's entry at or past that beat: its hints_for
 * then speaks for the target (listing it while the hint waits, a down
 * member's list included) and travels with gossip from here too. If the
 * coordinator is seen down or gone first, its word may never come: the
 * witness becomes a repair mark of this node (replicate_mark_stamp, on the
 * pool), lifted as any other by the target's complete pass; either way its
 * stored copy is deleted, unless a later write stored it with a later beat.
 * A witness costs no message and, per write, a `meta` read (a put when the
 * record changes); the normal path (every replica fast) carries none.
 * Entries are per (target, coordinator), both ring nodes: bounded by the
 * ring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/replicate_int.h"

void replicate_witness_sign(replicate_t *r, replicate_write_t *rw)
{
    if (r->o.hints_max_bytes == 0 || r->ops.member_beat == NULL || rw->view->self_id == NULL)
        return;
    uint64_t inc = 0, hb = 0;
    int named = 0;
    for (uint32_t ti = 0; ti < rw->nt && !named; ti++)
        named = rw->t[ti].req.n_missed_by > 0;
    if (!named || r->ops.member_beat(r->ops.ctx, rw->view->self_id, &inc, &hb) < 0 || hb == 0)
        return;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        if (rw->t[ti].req.n_missed_by == 0) continue;
        rw->t[ti].req.coordinator_incarnation = inc;
        rw->t[ti].req.coordinator_heartbeat = hb;
    }
}

static replicate_witness_t *witness_of(replicate_t *r, const char *target, const char *coord,
                                       int *created)
{
    *created = 0;
    for (size_t i = 0; i < r->nwit; i++)
        if (strcmp(r->wit[i].target, target) == 0 && strcmp(r->wit[i].coord, coord) == 0)
            return &r->wit[i];
    if (GROW(r->wit, r->wit_cap, r->nwit + 1, GROW_UNLIMITED) != ERR_OK) return NULL;
    replicate_witness_t *w = &r->wit[r->nwit++];
    memset(w, 0, sizeof *w);
    snprintf(w->target, sizeof w->target, "%s", target);
    snprintf(w->coord, sizeof w->coord, "%s", coord);
    w->oldest_s = INT64_MAX;
    *created = 1;
    return w;
}

/* 1 when (inc, hb) is at or past w's beat. */
static int beat_reached(const replicate_witness_t *w, uint64_t inc, uint64_t hb)
{
    return inc > w->incarnation || (inc == w->incarnation && hb >= w->heartbeat);
}

int replicate_witness_add(replicate_t *r, const char *coord,
                          const Flamedb__Cluster__WriteRequest *q)
{
    if (q->hint_replay || q->coordinator_heartbeat == 0 || q->n_missed_by == 0) return 0;
    const cluster_view_t *v = r->ops.view_acquire(r->ops.ctx);
    if (v == NULL) return 0;
    int64_t time_s = q->time_ns > 0 ? (int64_t)(q->time_ns / 1000000000LL) : 0;
    int rc = 0, added = 0;
    for (size_t i = 0; i < q->n_missed_by && i < RING_MAX_RF && rc == 0; i++) {
        const char *id = q->missed_by[i];
        if ((v->self_id != NULL && strcmp(id, v->self_id) == 0) || strcmp(id, coord) == 0 ||
            v->ring == NULL || ring_node_find(v->ring, id) < 0)
            continue;
        int created = 0;
        replicate_witness_t *w = witness_of(r, id, coord, &created);
        if (w == NULL) {
            rc = ERR_NOMEM;
            break;
        }
        r->st.hint_witnesses++;
        added |= created;
        if (created || beat_reached(w, q->coordinator_incarnation, q->coordinator_heartbeat)) {
            w->incarnation = q->coordinator_incarnation;
            w->heartbeat = q->coordinator_heartbeat;
        }
        if (time_s < w->oldest_s) w->oldest_s = time_s;
    }
    r->ops.view_release(v);
    if (added) replicate_publish_hint_targets(r);
    return rc;
}

size_t replicate_witness_targets(const replicate_t *r, const char **ids, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nwit && n < cap; i++) {
        int dup = 0;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(ids[k], r->wit[i].target) == 0;
        if (!dup) ids[n++] = r->wit[i].target;
    }
    return n;
}

/* ---------------------------------------------------------------- durably */

/* 1 when (inc, hb) is past (winc, whb). */
static int beat_after(uint64_t inc, uint64_t hb, uint64_t winc, uint64_t whb)
{
    return inc > winc || (inc == winc && hb > whb);
}

/* Pool: target's hold for coord merged into the stored one (the latest
 * beat, the oldest time); *stored when it was put. */
static int store_one(replicate_t *r, const char *target, const char *coord,
                     const Flamedb__Cluster__WriteRequest *q, int64_t time_s, uint32_t *stored)
{
    storage_witness_t w;
    errmsg_t em = {{0}};
    uint64_t inc = q->coordinator_incarnation, hb = q->coordinator_heartbeat;
    uv_mutex_lock(&r->wit_mu);
    int rc = storage_witness_get(r->storage, target, coord, &w, &em), put = 0;
    if (rc == ERR_NOT_FOUND) {
        memset(&w, 0, sizeof w);
        snprintf(w.target, sizeof w.target, "%s", target);
        snprintf(w.coord, sizeof w.coord, "%s", coord);
        w.incarnation = inc;
        w.heartbeat = hb;
        w.oldest_s = time_s;
        rc = 0;
        put = 1;
    } else if (rc == 0) {
        if (beat_after(inc, hb, w.incarnation, w.heartbeat)) {
            w.incarnation = inc;
            w.heartbeat = hb;
            put = 1;
        }
        if (time_s < w.oldest_s) w.oldest_s = time_s, put = 1;
    }
    if (rc == 0 && put) rc = storage_witness_put(r->storage, &w, &em);
    uv_mutex_unlock(&r->wit_mu);
    if (rc != 0) log_warn("replicate", "witness of %s: %s", target, errmsg_text(&em, rc));
    *stored += rc == 0 && put;
    return rc;
}

int replicate_witness_store(replicate_t *r, const char *self, const char *coord,
                            const Flamedb__Cluster__WriteRequest *q, uint32_t *stored)
{
    if (q->hint_replay || q->coordinator_heartbeat == 0 || q->n_missed_by == 0) return 0;
    int64_t time_s = q->time_ns > 0 ? (int64_t)(q->time_ns / 1000000000LL) : 0;
    int rc = 0;
    for (size_t i = 0; i < q->n_missed_by && i < RING_MAX_RF && rc == 0; i++) {
        const char *id = q->missed_by[i];
        if (strcmp(id, self) != 0 && strcmp(id, coord) != 0)
            rc = store_one(r, id, coord, q, time_s, stored);
    }
    return rc;
}

/* Pool: the stored hold of target for coord deleted, unless a later write
 * stored it with a beat past (inc, hb) (it is held again in memory). */
static void unstore(replicate_t *r, const char *target, const char *coord, uint64_t inc,
                    uint64_t hb)
{
    storage_witness_t w;
    errmsg_t em = {{0}};
    uv_mutex_lock(&r->wit_mu);
    int rc = storage_witness_get(r->storage, target, coord, &w, &em);
    if (rc == 0 && !beat_after(w.incarnation, w.heartbeat, inc, hb))
        rc = storage_witness_delete(r->storage, target, coord, &em);
    uv_mutex_unlock(&r->wit_mu);
    if (rc != 0 && rc != ERR_NOT_FOUND) /* read back at the next start: marked or ended then */
        log_warn("replicate", "witness of %s: %s", target, errmsg_text(&em, rc));
}

static int load_one(void *ctx, const storage_witness_t *s)
{
    replicate_t *r = ctx;
    int created = 0;
    replicate_witness_t *w = witness_of(r, s->target, s->coord, &created);
    if (w == NULL) return ERR_NOMEM;
    w->incarnation = s->incarnation;
    w->heartbeat = s->heartbeat;
    w->oldest_s = s->oldest_s;
    return 0;
}

int replicate_witness_load(replicate_t *r)
{
    int rc = storage_witnesses(r->storage, load_one, r);
    if (rc != 0) log_warn("replicate", "cannot read the stored witnesses: %s", err_message(rc));
    if (r->nwit > 0)
        log_info("replicate",
                 "holding %zu replica(s) unread until their coordinators' word "
                 "arrives (stored before a restart), first %s",
                 r->nwit, r->wit[0].target);
    return rc;
}

/* Pool: the witness turned into this node's own repair mark (mark), or
 * ended by its coordinator's word: its stored copy deleted. */
typedef struct witness_job {
    workq_job_t work;
    replicate_t *r;
    char target[RING_NODE_ID_MAX + 1], coord[RING_NODE_ID_MAX + 1];
    int64_t oldest_s;
    uint64_t incarnation, heartbeat;
    uint64_t ms;
    int mark;
} witness_job_t;

static void mark_work(workq_job_t *w)
{
    witness_job_t *j = w->data;
    if (j->mark && replicate_mark_stamp(j->r, j->target, j->oldest_s, &j->ms) != 0)
        return; /* a failure is logged: kept, marked again after a restart */
    unstore(j->r, j->target, j->coord, j->incarnation, j->heartbeat);
}

static void unstore_after(workq_job_t *w, int status)
{
    (void)status; /* not run: read back at the next start, and ended or marked then */
    witness_job_t *j = w->data;
    j->r->jobs--;
    free(j);
}

/* The ended witness w's stored copy deleted on the pool. */
static void start_unstore(replicate_t *r, const replicate_witness_t *w)
{
    witness_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j == NULL) return; /* read back at the next start */
    *j = (witness_job_t){.r = r, .incarnation = w->incarnation, .heartbeat = w->heartbeat};
    snprintf(j->target, sizeof j->target, "%s", w->target);
    snprintf(j->coord, sizeof j->coord, "%s", w->coord);
    j->work.data = j;
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, mark_work, unstore_after) != 0)
        free(j);
    else
        r->jobs++;
}

static void witness_remove(replicate_t *r, size_t i)
{
    r->wit[i] = r->wit[--r->nwit];
}

static void mark_after(workq_job_t *w, int status)
{
    (void)status;
    witness_job_t *j = w->data;
    replicate_t *r = j->r;
    r->jobs--;
    for (size_t i = 0; i < r->nwit; i++) {
        if (strcmp(r->wit[i].target, j->target) != 0 || strcmp(r->wit[i].coord, j->coord) != 0)
            continue;
        if (j->ms == 0) /* the job did not run (stopping): the next tick tries again */
            r->wit[i].marking = 0;
        else
            witness_remove(r, i); /* a later write's witness of it is marked too */
        break;
    }
    if (j->ms != 0) {
        r->st.hint_witnesses_marked++;
        replicate_marks_dropped(r, j->target, j->ms, 1); /* listed by the mark from here on */
    }
    free(j);
}

static void start_mark(replicate_t *r, replicate_witness_t *w)
{
    witness_job_t *j = r->closing ? NULL : calloc(1, sizeof *j);
    if (j == NULL) return; /* tried again on the next tick */
    j->r = r;
    snprintf(j->target, sizeof j->target, "%s", w->target);
    snprintf(j->coord, sizeof j->coord, "%s", w->coord);
    j->oldest_s = w->oldest_s == INT64_MAX ? 0 : w->oldest_s;
    j->incarnation = w->incarnation;
    j->heartbeat = w->heartbeat;
    j->mark = 1;
    j->work.data = j;
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, mark_work, mark_after) != 0) {
        free(j);
        return;
    }
    r->jobs++;
    w->marking = 1;
    log_warn("replicate",
             "%s went down before its word on the hint it keeps for %s reached this node: %s "
             "marked for repair here",
             w->coord, w->target, w->target);
}

void replicate_witness_tick(replicate_t *r)
{
    int lifted = 0;
    for (size_t i = 0; i < r->nwit;) {
        replicate_witness_t *w = &r->wit[i];
        uint64_t inc = 0, hb = 0;
        int up = r->ops.member_beat != NULL ? r->ops.member_beat(r->ops.ctx, w->coord, &inc, &hb)
                                            : ERR_NOT_FOUND;
        if (!w->marking && up >= 0 && beat_reached(w, inc, hb)) {
            start_unstore(r, w);
            witness_remove(r, i); /* the coordinator's hints_for speaks for it */
            lifted = 1;
            continue;
        }
        if (!w->marking && up <= 0) start_mark(r, w);
        i++;
    }
    if (lifted) replicate_publish_hint_targets(r);
}
