/* cluster.h — a node's view of its cluster and its messaging (internal to node/).
 *
 * Owns the node's identity (node id and ring tokens, kept in
 * DATA_DIR/identity so a restarted node comes back the same), the membership
 * table (ring/ring.h) and its gossip timer, the rpc transport (node/rpc.h),
 * the dispatch of incoming cluster messages by type, and the current
 * cluster_view_t: the ring, which nodes are reachable and may serve reads, RF
 * and the write quorum. A node started without --cluster-listen is a cluster
 * of one: the same view with itself as the only node, and no transport.
 *
 * The replicated write path (node/replicate.h) and the scatter-gather query
 * path (node/scatter.h) sit on top: they plan with a view and exchange
 * messages with cluster_send() and handlers registered with cluster_on().
 *
 * Threads: every function on the loop thread, except cluster_view_retain /
 * cluster_view_release, which any thread may call (the view is immutable and
 * reference-counted, so thread-pool jobs can keep planning data alive).
 * Ownership: cluster_new() returns a handle the node owns; cluster_close()
 * then cluster_free().
 */
#ifndef FLAMEDB_NODE_CLUSTER_H
#define FLAMEDB_NODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "node/config.h"
#include "ring/ring.h"
#include "storage/storage.h"

typedef struct cluster cluster_t;

/* An immutable snapshot of the cluster, rebuilt whenever membership changes.
 * Arrays have ring_node_count(ring) entries, indexed like the ring's nodes. */
typedef struct cluster_view {
    const ring_t *ring;        /* current ring: ACTIVE and LEAVING members, down or not */
    const ring_t *pending;     /* ring after joins/leaves in progress, or NULL */
    const uint8_t *live;       /* may serve reads now (ACTIVE/LEAVING and not down) */
    const uint8_t *reachable;  /* not marked down (writes are attempted; else hinted) */
    const char *const *http_addr;    /* per ring node */
    const char *const *cluster_addr; /* per ring node ("" in a cluster of one) */
    int self;                  /* this node's index in ring, -1 if not in it */
    const char *self_id;
    uint32_t rf;               /* min(configured RF, node count) */
    uint32_t quorum;           /* write quorum for rf */
    uint64_t version;          /* changes whenever any of the above changes */
} cluster_view_t;

int cluster_new(uv_loop_t *loop, const node_config_t *cfg, const char *http_addr,
                cluster_t **out, errmsg_t *em);
/* Binds the transport and starts gossip (joining through the seeds). */
int cluster_start(cluster_t *c, errmsg_t *em);
/* Stops gossip and the transport; done(arg) runs once everything is closed. */
void cluster_close(cluster_t *c, void (*done)(void *arg), void *arg);
void cluster_free(cluster_t *c);

/* The current view, with one reference taken for the caller. */
const cluster_view_t *cluster_view_acquire(cluster_t *c);
void cluster_view_retain(const cluster_view_t *v);
void cluster_view_release(const cluster_view_t *v);

/* This node's id; borrowed for the cluster's lifetime. */
const char *cluster_self_id(const cluster_t *c);

/* Handler of one message type. msg (decoded, checked) is borrowed for the
 * call; a handler that needs it longer may take it instead: copy *msg and
 * zero it (ring_msg_free of a zeroed message does nothing), then free its copy
 * with ring_msg_free when done, from any thread. */
typedef void (*cluster_msg_fn)(void *ctx, ring_msg_t *msg);
/* Registers fn for a message type (one handler per type). Gossip is handled
 * internally. */
int cluster_on(cluster_t *c, Flamedb__Cluster__MsgType type, cluster_msg_fn fn, void *ctx);

/* Encodes body in an envelope and queues it for node_id. deadline_unix_ms is
 * carried in the envelope; receivers drop messages past it. ERR_NOT_FOUND for
 * an unknown node, ERR_UNAVAILABLE if it cannot be queued, ERR_TOO_LARGE. */
int cluster_send(cluster_t *c, const char *node_id, Flamedb__Cluster__MsgType type,
                 uint64_t deadline_unix_ms, const ProtobufCMessage *body);

/* Ids of the nodes this node holds undelivered hints for (node/replicate.c
 * calls it whenever that set changes; ids are copied). Those nodes are not
 * `live` in the views that follow, on this node at once and, through the
 * hint lists members gossip (ring_members_set_hints), on every node, until
 * the hints are delivered (DESIGN.md §7, replica choice vs freshness). n 0
 * clears the list. ERR_LIMIT over RING_MAX_NODES ids, ERR_INVALID_ARGUMENT
 * for an invalid id. */
int cluster_set_hint_targets(cluster_t *c, const char *const *ids, size_t n);

/* 1 once this node knows the cluster it joins: it has no seeds (the first
 * node), or it has heard from another member, or failure-timeout passed
 * since cluster_start without any seed answering (then it goes on alone,
 * with a warning). Until then the view holds only this node, so RF and the
 * quorum would be 1: /ready answers 503 and writes should wait. */
int cluster_joined(cluster_t *c);

/* GET /cluster/status body: {"self": id, "cluster": name, "rf": n,
 * "quorum": w, "ring_version": v, "nodes": [{"id", "http", "cluster",
 * "state", "tokens", "incarnation", "heartbeat", "last_heartbeat_ms_ago",
 * "self"}...]} */
int cluster_status_json(cluster_t *c, buf_t *out);

#endif
