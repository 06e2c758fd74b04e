/* cluster_void.c — a replica whose repair mark went with a member that
 * left the ring (cluster_int.h; docs/cluster.md, "A mark that leaves with
 * its holder").
 *
 * A coordinator lists a replica that missed writes it acknowledged in its
 * own hints_for (a hint waits for it, or a repair mark), and no node reads
 * from a listed replica. When the coordinator leaves the ring (removed for
 * good, decommissioned, or back as a new node with an empty data dir) its
 * list goes with its entry, and nothing says any more that the replica is
 * short: read at once, it answers short and unflagged until a window check
 * compares its copy. So when a view drops a node of its rings (current or
 * pending: a joining node coordinates writes too), every ring node that
 * another member listed in the view before and none lists now is unread
 * until its own window check after the change compared every range it
 * replicates with every other replica (repair_windows_void):
 * - the node itself lists itself in its own hints_for until then; what the
 *   check found missing was fetched by id, or handed to the regain, which
 *   keeps it listed until the range is streamed;
 * - every other node holds it unread (cluster_regain_hold) until its own
 *   entry lists it, so the gossip rounds before its word arrives are
 *   covered as well.
 * DATA_DIR/regain.void is there while the node waits, so a restart keeps
 * it unread and asks for the check again.
 * A mark lifted in the same view (its writes delivered) is taken as voided
 * too: it costs one window check, never a short answer. So does a removal
 * that happened while this node was down (cluster_void_unseen): whether the
 * removed node held a mark on it is not known any more.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "node/cluster/repair_int.h"

#define VOID_HEADER "flamedb-void 1"

static int void_path(const cluster_t *c, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", c->data_dir, CLUSTER_VOID_FILE) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

/* DATA_DIR/regain.void written (on) or removed; an error is logged (the
 * flag holds in memory all the same; a file left behind costs a check
 * after a restart, one not written leaves a restart unaware). */
static void void_save(cluster_t *c, int on)
{
    char path[CLUSTER_SETTING_MAX + 16];
    int rc = void_path(c, path, sizeof path);
    errmsg_t em = {{0}};
    if (rc == 0 && !on && unlink(path) != 0 && errno != ENOENT)
        rc = errmsg_set(&em, ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    if (rc == 0 && on) {
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        rc = buf_printf(&b, "%s\n", VOID_HEADER);
        if (rc == 0) rc = cluster_statefile_finish(&b, 0);
        if (rc == 0) rc = cluster_statefile_write(c->data_dir, path, &b, &em);
        buf_free(&b);
    }
    if (rc != 0) log_error("cluster", "the voided mark's file: %s", errmsg_text(&em, rc));
}

int cluster_void_load(cluster_t *c, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (void_path(c, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    if (access(path, F_OK) != 0) {
        if (errno == ENOENT) return 0;
        log_warn("cluster", "%s: %s: taken as present", path, strerror(errno)); /* cannot tell */
    }
    c->voided.on = 1;
    c->voided.gen = 1;
    log_info("cluster", "resuming: a mark of writes this node missed went with a member that "
                        "left: not read from until a window check compared its copy");
    return 0;
}

void cluster_void_start(cluster_t *c)
{
    if (!c->voided.on) return;
    repair_windows_void(c->repair, c->voided.gen, cluster_move_settle_ms(c));
    if (cluster_hints_publish(c) < 0) log_error("cluster", "cannot publish the hint targets");
}

/* Whether id is in ring r (NULL: none). */
static int in_ring(const ring_t *r, const char *id)
{
    return r != NULL && ring_node_find(r, id) >= 0;
}

/* The first node, not this one, that left old's current ring (removed,
 * decommissioned, or back empty as a joining node: its marks are gone
 * either way) or old's pending ring for neither of now's (a joining node
 * coordinates writes too); NULL when none did. */
static const char *departed(const cluster_view_t *old, const cluster_view_t *now)
{
    const ring_t *rings[2] = {old->ring, old->pending};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; rings[k] != NULL && i < ring_node_count(rings[k]); i++) {
            const char *id = ring_node_name(rings[k], i);
            int self = old->self_id != NULL && strcmp(id, old->self_id) == 0;
            int stays = in_ring(now->ring, id) || (k == 1 && in_ring(now->pending, id));
            if (!self && !stays) return id;
        }
    return NULL;
}

/* This node's mark went with `gone` (how: why): listed by itself until a
 * check that starts from now compared its copy. */
static void void_self(cluster_t *c, const char *gone, const char *why)
{
    if (!c->voided.on) {
        log_info("cluster",
                 "%s %s: not read from until a window check compared its copy with the other "
                 "replicas",
                 gone, why);
        void_save(c, 1); /* before it is published: a restart keeps it */
    }
    c->voided.on = 1;
    c->voided.gen++;
    repair_windows_void(c->repair, c->voided.gen, cluster_move_settle_ms(c));
    if (cluster_hints_publish(c) < 0) log_error("cluster", "cannot publish the hint targets");
}

void cluster_void_unseen(cluster_t *c, const char *gone)
{
    if (c->repair != NULL)
        void_self(c, gone,
                  "left the ring while this node was down (a mark it held on this node, "
                  "if any, went with it)");
}

int cluster_void_note(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now)
{
    if (c->repair == NULL || old->ring == NULL || now->ring == NULL) return 0;
    if (old->marked == NULL || now->marked == NULL) return 0;
    const char *gone = departed(old, now);
    if (gone == NULL) return 0;
    int again = 0;
    for (uint32_t k = 0; k < ring_node_count(now->ring); k++) {
        const char *id = ring_node_name(now->ring, k);
        int ko = ring_node_find(old->ring, id);
        if (ko < 0 || !old->marked[ko] || now->marked[k]) continue;
        if ((int)k == now->self) {
            void_self(c, gone, "left the ring with a mark of writes this node missed");
        } else {
            log_info("cluster",
                     "a mark on %s went with %s: not read from until it lists itself (its "
                     "window check follows)",
                     id, gone);
            cluster_regain_hold(c, id);
        }
        again = 1;
    }
    return again;
}

void cluster_void_checked(cluster_t *c, uint64_t gen)
{
    if (!c->voided.on || gen != c->voided.gen) return;
    void_save(c, 0);
    c->voided.on = 0;
    log_info("cluster", "the window check after the voided mark compared every range: read "
                        "from again");
    if (cluster_hints_publish(c) < 0) log_error("cluster", "cannot publish the hint targets");
    c->view_stale = 1;
    cluster_view_refresh(c);
}
