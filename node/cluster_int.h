/* cluster_int.h — what the files of the cluster view share (internal to
 * node/cluster*.c): the cluster handle, the reference-counted view and the
 * identity file.
 *
 * Threads: the loop thread, except the view's reference count (atomic).
 */
#ifndef FLAMEDB_NODE_CLUSTER_INT_H
#define FLAMEDB_NODE_CLUSTER_INT_H

#include <stdatomic.h>

#include "node/cluster.h"
#include "node/rpc.h"

#define CLUSTER_MAX_SEEDS 64
#define CLUSTER_NTYPES 6 /* Flamedb__Cluster__MsgType values 0..5 */
/* Every this many gossip rounds a node also gossips with a seed, so two
 * groups that formed apart (e.g. started at once) find each other. */
#define CLUSTER_SEED_EVERY 10
#define CLUSTER_REFUSAL_LOG_MS 60000
#define CLUSTER_IDENTITY_FILE "identity"
#define CLUSTER_INCARNATION_FILE "incarnation"
#define CLUSTER_IDENTITY_MAX (64 * 1024 + RING_MAX_TOKENS * 17)

/* A view and what it owns; pub comes first so a cluster_view_t * is one. */
typedef struct view_impl {
    cluster_view_t pub;
    atomic_int refs;
    ring_t *ring, *pending;
    uint8_t *hinted, *live, *reachable;
    char **http, **caddr;
    uint32_t n;
    char *self_id;
} view_impl_t;

typedef struct handler {
    cluster_msg_fn fn;
    void *ctx;
} handler_t;

typedef struct cluster_counters {
    uint64_t refused;        /* malformed, other cluster, expired, unknown type */
    uint64_t unknown_sender; /* non-gossip messages from a node not in the table */
    uint64_t unhandled;      /* a type with no handler registered */
    uint64_t dispatched;
    uint64_t gossip_rounds;
    uint64_t view_rebuilds;
} cluster_counters_t;

struct cluster {
    uv_loop_t *loop;
    node_cluster_config_t cfg;
    char data_dir[NODE_PATH_MAX];
    char http_addr[RING_ADDR_MAX + 1];
    char cluster_addr[RING_ADDR_MAX + 1]; /* advertised; "" in a cluster of one */
    int transport;                        /* cluster-listen set */
    ring_identity_t id;
    ring_rng_t rng;
    ring_members_t *members;
    ring_wire_limits_t limits;
    rpc_t *rpc;
    uv_timer_t timer;
    handler_t handlers[CLUSTER_NTYPES];
    char *seeds[CLUSTER_MAX_SEEDS];
    size_t nseeds, next_seed;
    view_impl_t *view;
    uint64_t view_members_version, view_seq;
    const uint8_t *cur_raw; /* bytes of the message being dispatched */
    size_t cur_len;
    cluster_counters_t counters;
    int started, closing, open_parts;
    int joined;
    uint64_t started_ms;        /* uv_now() at cluster_start */
    uint64_t refusal_logged_ms; /* uv_now() of the last refusal warning */
    void (*done)(void *arg);
    void *done_arg;
};

/* Loads DATA_DIR/identity, or generates and writes it on first start.
 * want_id "" accepts the stored id (or generates one); otherwise the stored
 * id must equal it (ERR_INVALID_ARGUMENT naming both). A stored token count
 * other than ntokens is kept (changing it would move data) with a warning. */
int cluster_identity_load(const char *data_dir, const char *want_id, uint32_t ntokens,
                          ring_rng_t *rng, ring_identity_t *out, errmsg_t *em);

/* Picks this start's incarnation: max(now_s, previous + 1), and records it
 * in DATA_DIR/incarnation. */
int cluster_incarnation_next(const char *data_dir, uint64_t now_s, uint64_t *out, errmsg_t *em);

/* A node id from the host name plus a random suffix ("host-1a2b3c4d"). */
void cluster_identity_default_id(ring_rng_t *rng, char out[RING_NODE_ID_MAX + 1]);

/* Rebuilds c->view when membership or the hint targets changed since the
 * last build. Returns 1 when a new view was installed. */
int cluster_view_refresh(cluster_t *c);
/* Drops the cluster's reference to its view. */
void cluster_view_drop(cluster_t *c);

/* Wall-clock milliseconds since the epoch. */
uint64_t cluster_unix_ms(void);

#endif
