/* cluster_move.c — a node joining or leaving the ring (docs/cluster.md,
 * "Adding a node" and "Decommissioning a node").
 *
 * Joining: a node new to a cluster starts JOINING. Every coordinator that
 * knows it sends it the writes of the ranges it will own (it is an extra
 * replica in the write plan; acknowledgements of the old owners make the
 * quorum), reads keep using the old owners, and its repair thread pulls the
 * ranges it gains from their current replicas (repair_pass.c). Once a
 * complete pass that started after the move settled found nothing missing,
 * the node turns ACTIVE. DATA_DIR/joining keeps a crashed join a join.
 *
 * Leaving: a decommissioned node turns LEAVING; the nodes that take over
 * its ranges pull them by repair. Every complete pass is announced to the
 * other nodes (REPAIR_KIND_DONE); once every taker announced one that
 * started after the move settled, and its own digests of the ranges each
 * takes over are held by that taker (repair_verify_leave), the node turns
 * LEFT, gossips it for a few rounds and stops the process (exit status 0).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/cluster_int.h"
#include "node/cluster/repair_int.h"

/* Gossip rounds a change needs to reach every member (with margin). */
#define MOVE_SETTLE_ROUNDS 10
/* Gossip rounds a node that turned LEFT keeps gossiping before it stops. */
#define MOVE_LEFT_ROUNDS 10
/* A failed check of the takers' digests is repeated this often at most. */
#define MOVE_VERIFY_GAP_MS 1000

static int marker_path(const cluster_t *c, const char *name, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", c->data_dir, name) < (int)n ? 0 : ERR_INVALID_ARGUMENT;
}

static int joining_path(const cluster_t *c, char *out, size_t n)
{
    return marker_path(c, CLUSTER_JOINING_FILE, out, n);
}

int cluster_move_initial_state(cluster_t *c, int had_identity, ring_state_t *out, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (joining_path(c, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    int resumed = access(path, F_OK) == 0;
    *out = RING_ACTIVE;
    if (!c->transport || c->nseeds == 0 || (had_identity && !resumed)) return ERR_OK;
    FILE *f = resumed ? NULL : fopen(path, "w");
    if (!resumed && (f == NULL || fclose(f) != 0))
        return errmsg_set(em, ERR_IO, "%s: cannot create the join marker", path);
    *out = RING_JOINING;
    c->joining = 1;
    c->move_start_ms = cluster_unix_ms(c);
    log_info("cluster", "%s the cluster: streaming the ranges this node gains before it serves",
             resumed ? "resuming the join of" : "joining");
    return ERR_OK;
}

uint64_t cluster_move_settle_ms(const cluster_t *c)
{
    if (c->cfg.join_settle_ms != 0) return c->cfg.join_settle_ms;
    return MOVE_SETTLE_ROUNDS * c->cfg.gossip_interval_ms + c->cfg.write_timeout_ms;
}

uint64_t cluster_move_settled_ms(const cluster_t *c)
{
    return c->move_start_ms + cluster_move_settle_ms(c);
}

static void become_active(cluster_t *c, const char *why)
{
    errmsg_t em = {{0}};
    if (ring_members_set_state(c->members, RING_ACTIVE, &em) != 0) {
        log_error("cluster", "cannot turn active: %s", em.text);
        return;
    }
    c->joining = 0;
    /* the repair thread keeps its own copy: told here whichever way the join ended */
    if (c->repair != NULL) repair_join_ended(c->repair);
    char path[CLUSTER_SETTING_MAX + 16];
    if (joining_path(c, path, sizeof path) == 0 && unlink(path) != 0)
        log_warn("cluster", "%s: cannot remove the join marker", path);
    log_info("cluster", "joined: active (%s) after %llu ms", why,
             (unsigned long long)(cluster_unix_ms(c) - c->move_start_ms));
    cluster_view_refresh(c);
}

void cluster_move_join_verified(cluster_t *c)
{
    if (c->joining && !c->closing) become_active(c, "the gained ranges were streamed and verified");
}

/* ---------- known by the others ---------- */

/* Every start, not only a join, waits to hear from each live member before
 * it is ready: a restarted node would else coordinate reads before it
 * learned which replicas the others hold hints or repair marks for (their
 * hints_for lists come with their gossip), and read its own short copy as
 * if complete. Only word since this start counts: the transport delivers
 * messages queued for the previous process until their deadline, and an
 * entry in one of those may predate the marks its sender set since. */
void cluster_move_heard(cluster_t *c, const char *node_id)
{
    if (c->known_by_all && !c->unheard) return;
    if (cluster_move_was_heard(c, node_id)) return;
    char *id = strdup(node_id);
    if (id == NULL || GROW(c->heard, c->heard_cap, c->nheard + 1, RING_MAX_NODES) != 0) {
        free(id);
        return;
    }
    c->heard[c->nheard++] = id;
}

int cluster_move_was_heard(const cluster_t *c, const char *node_id)
{
    for (size_t i = 0; i < c->nheard; i++)
        if (strcmp(c->heard[i], node_id) == 0) return 1;
    return 0;
}

int cluster_move_must_hear(const cluster_t *c, int had_identity)
{
    if (!c->transport) return 0;
    if (c->known.n > 0) return c->known.n > 1; /* it lists this node too */
    return had_identity && c->nseeds > 0;
}

/* 1 when every member not down nor left, this node aside, was heard from
 * (also when there is none). */
static int all_heard(const cluster_t *c)
{
    for (size_t i = 0; i < ring_members_count(c->members); i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK || m.state == RING_DOWN ||
            m.life == RING_LEFT || strcmp(m.node_id, cluster_self_id(c)) == 0)
            continue;
        if (!cluster_move_was_heard(c, m.node_id)) return 0;
    }
    return 1;
}

void cluster_move_heard_check(cluster_t *c)
{
    /* not cluster_move_known: readiness may have been granted while every
     * other member was seen down, before anyone was heard */
    if (!c->unheard || c->nheard == 0 || !all_heard(c)) return;
    c->unheard = 0;
    log_info("cluster",
             "heard from every member not down since this start (%zu): their repair marks "
             "are known, this node's copy is read where they allow",
             c->nheard);
    if (cluster_hints_publish(c) < 0) log_error("cluster", "cannot publish the hint targets");
    cluster_view_refresh(c);
}

int cluster_move_known(cluster_t *c)
{
    if (c->known_by_all) return 1;
    return c->known_by_all = all_heard(c);
}

/* ---------- leaving ---------- */

static int done_index(const cluster_t *c, const char *id)
{
    for (size_t i = 0; i < c->ndone; i++)
        if (strcmp(c->passes[i].id, id) == 0) return (int)i;
    return -1;
}

void cluster_move_pass_done(cluster_t *c, const char *node_id, uint64_t started_ms)
{
    int k = done_index(c, node_id);
    if (k < 0) {
        char *id = strdup(node_id);
        if (id == NULL || GROW(c->passes, c->done_cap, c->ndone + 1, RING_MAX_NODES) != 0) {
            free(id);
            return;
        }
        k = (int)c->ndone++;
        c->passes[k].id = id;
        c->passes[k].start_ms = 0;
    }
    if (started_ms > c->passes[k].start_ms) c->passes[k].start_ms = started_ms;
}

/* Notes a change of the leave's move in view v (its current and pending
 * rings): the takers' passes count again from when it settles. */
static void leave_note_move(cluster_t *c, const cluster_view_t *v)
{
    uint64_t fp = repair_move_fp(v);
    if (fp == 0 || fp == c->leave_move_fp) return; /* no move in this view, or the same */
    if (c->leave_move_fp != 0) {
        c->leave_moved_ms = cluster_unix_ms(c);
        log_info("cluster",
                 "leave: the ring changed during the move: the takers' passes count from "
                 "when the new move settled");
    }
    c->leave_move_fp = fp;
}

uint64_t cluster_move_leave_settled(cluster_t *c, const cluster_view_t *v)
{
    leave_note_move(c, v);
    uint64_t settled = cluster_move_settled_ms(c);
    if (c->leave_moved_ms == 0) return settled;
    uint64_t again = c->leave_moved_ms + (settled - c->move_start_ms);
    return again > settled ? again : settled;
}

/* 1 when every node that gains ranges from this node's leave announced a
 * complete pass that started after the leave (its move as it is now)
 * settled. */
static int takers_done(cluster_t *c, const cluster_view_t *v, uint64_t settled, uint32_t *waiting)
{
    *waiting = 0;
    if (v->pending == NULL) return 0; /* not yet a change in this view */
    uint32_t np = ring_node_count(v->pending);
    for (uint32_t i = 0; i < np; i++) {
        const char *id = ring_node_name(v->pending, i);
        ring_ranges_t gained = {0}, lost = {0};
        int rc = ring_node_changes(v->ring, v->pending, v->rf, id, &gained, &lost);
        int gains = rc == 0 && gained.n > 0;
        ring_ranges_free(&gained);
        ring_ranges_free(&lost);
        if (rc != 0) return 0;
        int k = done_index(c, id);
        if (gains && (k < 0 || c->passes[k].start_ms < settled)) (*waiting)++;
    }
    return *waiting == 0;
}

static void stop_process(cluster_t *c)
{
    log_info("cluster", "left the cluster after %llu ms: stopping",
             (unsigned long long)(cluster_unix_ms(c) - c->move_start_ms));
    kill(getpid(), SIGTERM); /* the ordinary graceful stop, exit status 0 */
}

static void become_left(cluster_t *c)
{
    errmsg_t em = {{0}};
    if (ring_members_set_state(c->members, RING_LEFT, &em) != 0) {
        log_error("cluster", "cannot turn left: %s", em.text);
        return;
    }
    char path[CLUSTER_SETTING_MAX + 16];
    if (marker_path(c, CLUSTER_LEAVING_FILE, path, sizeof path) == 0 && unlink(path) != 0)
        log_warn("cluster", "%s: cannot remove the leave marker", path);
    c->left_at_ms = uv_now(c->loop);
    log_info("cluster", "every range has its replicas elsewhere (verified by digests): left");
    cluster_view_refresh(c);
}

void cluster_move_leave_verified(cluster_t *c, int ok, uint64_t move_fp)
{
    c->leave_asked = 0;
    if (!ok || !c->leaving || c->left_at_ms != 0 || c->closing) return;
    const cluster_view_t *v = cluster_view_acquire(c);
    uint64_t now = repair_move_fp(v);
    cluster_view_release(v);
    if (now != move_fp) { /* the ring changed after the check's last look */
        log_info("cluster", "leave: the ring changed after the takers' check: checked again");
        return;
    }
    become_left(c);
}

static void leave_tick(cluster_t *c)
{
    if (c->left_at_ms != 0) {
        if (uv_now(c->loop) - c->left_at_ms >= MOVE_LEFT_ROUNDS * c->cfg.gossip_interval_ms) {
            c->leaving = 0;
            stop_process(c);
        }
        return;
    }
    const cluster_view_t *v = cluster_view_acquire(c);
    uint64_t settled = cluster_move_leave_settled(c, v);
    uint32_t waiting = 0;
    int done = cluster_unix_ms(c) >= settled && takers_done(c, v, settled, &waiting);
    cluster_view_release(v);
    if (!done || c->leave_asked) return;
    if (c->repair == NULL) { /* membership alone: nothing to verify with */
        become_left(c);
        return;
    }
    if (c->leave_asked_ms != 0 && uv_now(c->loop) - c->leave_asked_ms < MOVE_VERIFY_GAP_MS) return;
    c->leave_asked = 1;
    c->leave_asked_ms = uv_now(c->loop);
    repair_ask_verify_leave(c->repair);
}

void cluster_move_tick(cluster_t *c)
{
    if (c->closing) return;
    if (c->leaving) leave_tick(c);
    if (!c->joining || !cluster_joined(c)) return;
    if (c->view != NULL && c->view->pub.ring == NULL) { /* no active member: nothing to stream */
        /* Nobody heard yet (the seeds down, stopped or slow): an active
         * cluster may be behind them. Turning active now would make this
         * node own ranges it holds nothing of once it hears that cluster,
         * and read them short and unflagged; it waits for a member (a
         * cluster started new from nodes that all list each other turns
         * active once they heard one another, all joining). */
        if (c->nseeds > 0 && ring_members_count(c->members) <= 1) {
            if (!c->join_unheard_logged)
                log_warn("cluster", "joining: no member heard yet; this node turns active only "
                                    "once it heard one (it streams from an active one first)");
            c->join_unheard_logged = 1;
            return;
        }
        become_active(c, "no active member to stream from");
    } else if (c->repair == NULL) { /* membership alone (cluster_new without cluster_open) */
        become_active(c, "no repair part to stream with");
    }
}

int cluster_decommission(cluster_t *c, const char *node_id, errmsg_t *em)
{
    if (node_id != NULL && node_id[0] != 0 && ring_node_id_check(node_id, em) != 0)
        return ERR_INVALID_ARGUMENT;
    if (node_id != NULL && node_id[0] != 0 && strcmp(node_id, cluster_self_id(c)) != 0) {
        ring_member_t m;
        if (ring_members_find(c->members, node_id, &m) != ERR_OK)
            return errmsg_set(em, ERR_NOT_FOUND, "node '%s' is not a member", node_id);
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "decommission is asked of the leaving node itself: POST to %s "
                          "(flamectl cluster decommission does)",
                          m.http_addr);
    }
    ring_member_t self;
    if (ring_members_find(c->members, cluster_self_id(c), &self) != ERR_OK)
        return errmsg_set(em, ERR_INTERNAL, "this node is not in its own table");
    if (self.life == RING_LEAVING || self.life == RING_LEFT) return 0; /* asked again */
    if (!c->transport)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "a cluster of one cannot be decommissioned");
    if (self.life == RING_JOINING)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "this node is still joining: stop it and remove it instead");
    const cluster_view_t *v = cluster_view_acquire(c);
    uint32_t n = v->ring != NULL ? ring_node_count(v->ring) : 0, rf = c->cfg.replication_factor;
    cluster_view_release(v);
    if (n <= rf)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "the ring has %u nodes and rf is %u: without this node a range would "
                          "have fewer than rf replicas (add a node first)",
                          n, rf);
    /* first the marker: a restart (after a crash or kill -9) leaves again */
    char path[CLUSTER_SETTING_MAX + 16];
    if (marker_path(c, CLUSTER_LEAVING_FILE, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    FILE *f = fopen(path, "w");
    if (f == NULL || fclose(f) != 0)
        return errmsg_set(em, ERR_IO, "%s: cannot create the leave marker", path);
    int rc = ring_members_set_state(c->members, RING_LEAVING, em);
    if (rc != 0) {
        unlink(path);
        return rc;
    }
    c->leaving = 1;
    c->move_start_ms = cluster_unix_ms(c);
    c->leave_move_fp = c->leave_moved_ms = 0;
    log_info("cluster", "decommissioned: leaving; the nodes taking over its ranges pull them");
    cluster_view_refresh(c);
    return 0;
}

int cluster_move_resume_leave(cluster_t *c, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (marker_path(c, CLUSTER_LEAVING_FILE, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    if (access(path, F_OK) != 0 || !c->transport) return 0;
    int rc = ring_members_set_state(c->members, RING_LEAVING, em);
    if (rc != 0) return rc;
    c->leaving = 1;
    c->move_start_ms = cluster_unix_ms(c);
    c->leave_move_fp = c->leave_moved_ms = 0;
    log_info("cluster",
             "resuming the decommission of this node (%s): leaving; the nodes taking "
             "over its ranges pull them",
             path);
    return 0;
}

int cluster_move_json(cluster_t *c, buf_t *out)
{
    ring_member_t self;
    if (ring_members_find(c->members, cluster_self_id(c), &self) != ERR_OK) return ERR_INTERNAL;
    const cluster_view_t *v = cluster_view_acquire(c);
    uint32_t waiting = 0;
    if (c->leaving && c->left_at_ms == 0)
        takers_done(c, v, cluster_move_leave_settled(c, v), &waiting);
    cluster_view_release(v);
    return buf_printf(out, "{\"node\":\"%s\",\"state\":\"%s\",\"takers_waiting\":%u}\n",
                      cluster_self_id(c), ring_state_name((int)self.life), waiting);
}
