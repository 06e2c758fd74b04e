/* cluster.h — the cluster module: everything that makes a node one of many
 * (node/cluster/; docs/cluster.md, docs/replication.md, docs/scatter-gather.md).
 *
 * Owns the node's identity (node id and ring tokens, kept in DATA_DIR/identity
 * so a restarted node comes back the same), the membership table (ring/ring.h)
 * and its gossip, the nanomsg transport on the node's loop, the wire envelope
 * and its checks, the replicated write path with its hinted handoff, and
 * scatter-gather queries. A node started without --cluster-listen is a
 * cluster of one: the same module with itself as the only node and no
 * transport, so one node and many take the same paths.
 *
 * The daemon (node/) reaches the module through this header only:
 *   writes   cluster_write_admit (loop) -> cluster_write_prepare (pool: plan,
 *            store the local replica, pack one message per remote replica)
 *            -> cluster_write_start (loop: send, wait for the write quorum);
 *   queries  cluster_query (loop) -> the answer, encoded, back on the loop;
 *   status   cluster_joined, cluster_status_json, cluster_metrics_*.
 *
 * Threads: every function on the loop thread unless its comment says
 * otherwise. Ownership: cluster_open() returns a handle the node owns;
 * cluster_close() once, then cluster_free() after the loop ran out of work.
 */
#ifndef FLAMEDB_NODE_CLUSTER_CLUSTER_H
#define FLAMEDB_NODE_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/workq.h"
#include "query/query.h"
#include "ring/ring.h"
#include "storage/storage.h"

#define CLUSTER_SETTING_MAX 4096

/* Cluster settings (docs/cluster.md). With cluster_listen empty the node is
 * a cluster of one: the same write and read paths run with itself as the only
 * replica. */
typedef struct cluster_config {
    char node_id[CLUSTER_SETTING_MAX];        /* "" = generated on first start, persisted */
    char cluster_listen[CLUSTER_SETTING_MAX]; /* tcp://HOST:PORT (nanomsg); "" = single node */
    char advertise[CLUSTER_SETTING_MAX];      /* cluster address peers dial; "" = cluster_listen */
    char join[CLUSTER_SETTING_MAX];           /* comma-separated tcp://HOST:PORT seeds */
    char cluster_name[CLUSTER_SETTING_MAX];   /* messages from another cluster are refused */
    char secret_file[CLUSTER_SETTING_MAX];    /* HMAC key of every message; "" = unsigned */
    uint32_t replication_factor;              /* RF */
    uint32_t write_quorum;                    /* W; 0 = majority of RF */
    uint32_t tokens;                          /* virtual nodes of this node */
    uint64_t gossip_interval_ms;
    uint64_t failure_timeout_ms;      /* no heartbeat for this long -> down */
    uint64_t redial_interval_ms;      /* a down member's connection is dialled afresh this often */
    uint64_t write_timeout_ms;        /* replicated write deadline (then 503) */
    uint64_t query_timeout_ms;        /* scatter-gather deadline (then partial) */
    size_t scatter_name_cache_bytes;  /* names of shares' symbols a coordinator keeps; 0 = none */
    size_t scatter_space_cache_bytes; /* shares' id spaces a coordinator maps; 0 = none */
    size_t max_message_bytes;         /* largest message sent or accepted */
    size_t max_frame_bytes;         /* NN_RCVMAXSIZE; larger messages go in pieces (chunk_int.h) */
    size_t chunk_receive_max_bytes; /* messages in pieces held at once (0: no limit) */
    size_t hints_max_bytes;         /* durable hints kept per target node */
    size_t hints_max_total_bytes;   /* over all target nodes (0: 4 x hints_max_bytes) */
    uint64_t hint_replay_interval_ms;
    uint64_t hint_expiry_ms; /* stored hints dropped (and marked) after; 0: from seen retention */
    uint64_t repair_interval_ms;         /* anti-entropy pass this often; 0 = only on demand */
    uint64_t repair_windows_interval_ms; /* a pass's window check at most this often (and on
                                          * demand); 0 = only on demand */
    uint32_t stream_max_mb_per_s; /* joining / moving ranges: fetched MB/s at most; 0 = no limit */
    uint64_t join_settle_ms; /* a move's verifying pass starts this long after it began; 0 = auto */
    uint64_t hint_ack_grace_ms;    /* quorum met: wait this long for the other acks, then hint */
    size_t repair_bytes_per_s;     /* anti-entropy fetches (not moves): bytes/s at most; 0 = none */
    uint64_t forget_left_after_ms; /* LEFT tombstones are kept this long (ring_members) */
    uint64_t stream_progress_interval_ms; /* DATA_DIR/move.progress at most this often */
    uint32_t stream_check_heal_after; /* a streamed range whose totals check disagreed in this many
                                       * passes in a row is cleared and streamed again */
    uint32_t stream_check_heals;      /* at most this many times per piece (0: never) */
    uint32_t stream_window_cache;     /* windows in parts a source keeps between their parts */
    size_t stream_receive_max_bytes;  /* what a window in parts may gather on its receiver */
    uint32_t fill_keys_batch;         /* windows a fill asks its source for per request */
    uint32_t stream_version;          /* the newest stream protocol spoken (a rolling upgrade) */
    uint32_t member_version;          /* the newest member protocol spoken (CLUSTER_MEMBER_V*) */
} cluster_config_t;

/* Member protocol versions (Member.member_version, --cluster-member-version):
 * 1 takes notices (WriteRequest.notice) and is sent them; 0, a version before
 * the field, refuses them and is sent none. */
#define CLUSTER_MEMBER_V_NOTICE 1u
#define CLUSTER_MEMBER_VERSION 1u

/* What the module takes from the node's other settings. */
typedef struct cluster_inputs {
    const char *data_dir;              /* identity files live here */
    const char *http_addr;             /* advertised to the other members */
    ring_shard_policy_t shards;        /* placement shards per service (the ingest setting) */
    query_limits_t query;              /* limits of every query this node runs or gathers */
    size_t max_tree_nodes;             /* bounds call trees decoded from other nodes */
    size_t max_inflight_bytes;         /* packed writes held at once (coordinator and replica) */
    size_t query_memory_bytes;         /* partial results of coordinated queries; 0: no budget */
    alloc_budget_t *inflight;          /* ingest-inflight-bytes, for replica writes; NULL: none */
    int64_t seen_retention_seconds;    /* hints expire before the profile ids they carry */
    int64_t max_future_seconds;        /* ingest's bound on profile times (repair's span) */
    int64_t profile_retention_seconds; /* profile trees name profiles this long (window check) */
    const clock_source_t *clock;       /* time of deadlines, gossip and hints; NULL: the real one */
    workq_t *workq; /* the node's thread-pool lanes (borrowed); NULL: the module's own */
} cluster_inputs_t;

typedef struct cluster cluster_t;
/* An immutable, reference-counted snapshot of the ring and of which nodes
 * are reachable, rebuilt whenever membership changes. */
typedef struct cluster_view cluster_view_t;

/* Opens the module: identity, membership, the write and read paths, their
 * message handlers; the transport is bound by cluster_start(). storage is
 * borrowed for the handle's life; cfg and in are copied. */
int cluster_open(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                 const cluster_inputs_t *in, cluster_t **out, errmsg_t *em);
/* Binds the transport and starts gossip (joining through the seeds); a
 * cluster of one does nothing. */
int cluster_start(cluster_t *c, errmsg_t *em);
/* Answers the queries still in flight (ERR_UNAVAILABLE), stores the hints of
 * writes still waiting for acknowledgements, stops gossip and the transport;
 * done(arg) runs on the loop once every handle is closed. Later calls do
 * nothing. */
void cluster_close(cluster_t *c, void (*done)(void *arg), void *arg);
void cluster_free(cluster_t *c);

/* 1 once this node knows the cluster it joins: it has no seeds (the first
 * node), or it has heard from another member, or failure-timeout passed
 * since cluster_start without any seed answering (then it goes on alone,
 * with a warning). Until then the view holds only this node, so RF and the
 * quorum would be 1: /ready answers 503 and writes should wait. */
int cluster_joined(cluster_t *c);

/* GET /cluster/status body appended to out: {"self": id, "cluster": name,
 * "rf": n, "quorum": w, "ring_version": v, "view_version": v,
 * "ring_fingerprint": hex, "nodes": [{"id", "http", "cluster", "state",
 * "tokens", "incarnation", "heartbeat", "last_heartbeat_ms_ago", "self",
 * ...}...], "transport": {message and connection counters}}
 * (docs/api.md, "GET /cluster/status"). */
int cluster_status_json(cluster_t *c, buf_t *out);

/* The current view, with one reference taken for the caller; release it
 * with cluster_view_release from any thread. */
const cluster_view_t *cluster_view_acquire(cluster_t *c);
void cluster_view_release(const cluster_view_t *v);
/* 1 when this node is the view's only member and none is joining: every
 * series a push writes goes to this node's storage alone (no replica or
 * hint takes its trees). */
int cluster_view_alone(const cluster_view_t *v);

/* ---------------------------------------------------------------- writes */

/* One accepted profile on its way to its replicas. */
typedef struct replicate_write cluster_write_t;

/* 0, or ERR_UNAVAILABLE (503 with Retry-After) when the writes or bytes in
 * flight are at their limits. Call before the parsing job. */
int cluster_write_admit(cluster_t *c, errmsg_t *em);

/* Any thread (the ingest job): plans every series of w with view (retained
 * by the write until it is freed), checks that each series has its write
 * quorum of reachable replicas (ERR_UNAVAILABLE naming the series
 * otherwise: nothing is written), stores the local replica's series, packs
 * one message per remote replica (ERR_TOO_LARGE over max-message-bytes) and
 * stores the hints of unreachable ones. w is borrowed for the call. *out is
 * the caller's: hand it to cluster_write_start or free it with
 * cluster_write_free. *local_written (may be NULL): series the local replica
 * stored (not duplicates). */
int cluster_write_prepare(cluster_t *c, const cluster_view_t *view,
                          const storage_profile_write_t *w, cluster_write_t **out,
                          size_t *local_written, errmsg_t *em);
/* Any thread. */
void cluster_write_free(cluster_write_t *w);
/* Series of w this node holds as a replica (written or already seen); any
 * thread. */
size_t cluster_write_local_series(const cluster_write_t *w);

/* Called once per write on the loop thread: rc 0 when every series has its
 * write quorum of acknowledgements, else ERR_UNAVAILABLE with the reason
 * (how many replicas acknowledged, which did not) in em (borrowed). */
typedef void (*cluster_write_done_fn)(void *ctx, int rc, const errmsg_t *em);

/* Takes ownership of w, sends the remote messages and waits. done may run
 * before this returns (a cluster of one, or no remote replica needed). */
void cluster_write_start(cluster_t *c, cluster_write_t *w, cluster_write_done_fn done, void *ctx);

/* ---------------------------------------------------------------- queries */

#define CLUSTER_PARTIAL_HEADER_MAX 512
/* Bytes of cluster_answer_t.server_timing. */
#define CLUSTER_TIMING_HEADER_MAX 192

/* What a query answers. rc 0: result holds the body (the callee may take it:
 * buf_init the field after taking); partial_header is "" when every range
 * was answered, else the value of X-Flamedb-Partial. rc < 0: em says why
 * (the query module's errors, plus ERR_UNAVAILABLE when no node can be asked
 * or the node is stopping). */
typedef struct cluster_answer {
    int rc;
    errmsg_t em;
    query_result_t result;
    char partial_header[CLUSTER_PARTIAL_HEADER_MAX];
    /* A successful answer: where its time went on this node, as the value
     * of an HTTP Server-Timing header (docs/api.md: "Server-Timing"), or "" */
    char server_timing[CLUSTER_TIMING_HEADER_MAX];
    /* With result.stream (asked with query_params_t.stream): its bytes, kept
     * on query-memory-bytes for the callee, which takes the stream (sets
     * the field NULL) and gives them back with cluster_query_release once
     * done with it. A stream left in place is freed, and its bytes given
     * back, when the callee returns. */
    size_t stream_held;
} cluster_answer_t;

/* Called once on the loop thread; ans is borrowed for the call. */
typedef void (*cluster_answer_fn)(void *arg, cluster_answer_t *ans);

/* Starts a query of kind for tenant over the nodes that own its data.
 * Parameters are parsed and validated at once (p is borrowed for the call):
 * a bad one (or any other refusal) calls done before returning. now_ms: the
 * request's wall clock (unix ms). */
void cluster_query(cluster_t *c, query_kind_t kind, const char *tenant, const query_params_t *p,
                   int64_t now_ms, cluster_answer_fn done, void *arg);
/* Cancels the query started with arg, whose client went away: done(arg)
 * runs before this returns, with ERR_UNAVAILABLE ("cancelled"); the asks
 * still waiting are dropped (other nodes may finish their share, which is
 * then dropped), pool jobs not started are not run, and the partial results
 * gathered so far are freed at once (by the job merging into them, when one
 * runs, as it ends). Does nothing when that query was answered. */
void cluster_query_cancel(cluster_t *c, void *arg);
/* Counts bytes of query answers held outside a query (the bodies a request
 * built from several queries keeps until it joins them) in the node's
 * query-memory-bytes: 0, or ERR_UNAVAILABLE with em naming the setting when
 * they would pass it (then nothing is counted). Give them back with
 * cluster_query_release. */
int cluster_query_hold(cluster_t *c, size_t bytes, errmsg_t *em);
/* As cluster_query_hold for memory kept between queries (the report cache):
 * thread-safe, counts no refused query. 0 or ERR_UNAVAILABLE (nothing
 * counted). */
int cluster_query_try_hold(cluster_t *c, size_t bytes);
void cluster_query_release(cluster_t *c, size_t bytes);

/* ---------------------------------------------------------------- repair */

/* Called once on the loop: rc 0 with json (borrowed for the call) the
 * summary of one anti-entropy pass of this node; else em says why. */
typedef void (*cluster_repair_fn)(void *arg, int rc, const char *json, const errmsg_t *em);

/* Runs an anti-entropy pass of this node (docs/cluster.md, "Anti-entropy"):
 * every range it replicates is compared with the other replicas and the
 * profiles it lacks are fetched. done runs once the first pass that starts
 * after this call finished. A cluster of one answers at once (nothing to
 * compare). */
void cluster_repair(cluster_t *c, cluster_repair_fn done, void *arg);

/* The node begins to stop: callers waiting for a repair pass are answered
 * (ERR_UNAVAILABLE) and the pass ends after its current step, so an HTTP
 * drain does not wait for a pass that may take long. Later calls and
 * cluster_close do the rest. */
void cluster_stop_repair(cluster_t *c);

/* Removes a node that is gone for good: it is marked left, so it leaves the
 * ring on every node as gossip spreads it, and its ranges go to the next
 * nodes clockwise, which fetch the data by repair. ERR_NOT_FOUND for an
 * unknown node, ERR_INVALID_ARGUMENT for this node or one that is not down
 * (a live node would keep writing). */
int cluster_remove_node(cluster_t *c, const char *node_id, errmsg_t *em);

/* Decommissions this node (docs/cluster.md, "Decommissioning a node"):
 * node_id is this node's id (or NULL / ""). It turns LEAVING: it still
 * serves reads and takes writes while the nodes that take over its ranges
 * pull them; once each of them announced a complete repair pass that
 * started after the change settled and holds, by digest, what this node
 * holds of the ranges it takes over, it turns LEFT and the process stops
 * (exit status 0). Asked again: 0. ERR_INVALID_ARGUMENT for another node
 * (the message names its HTTP address), a cluster of one, a joining node,
 * or a ring of at most RF nodes; ERR_NOT_FOUND for an unknown node. */
int cluster_decommission(cluster_t *c, const char *node_id, errmsg_t *em);
/* Called once on the loop: rc 0 when the full repair mark was lifted;
 * else em (borrowed for the call) says why. */
typedef void (*cluster_accept_fn)(void *arg, int rc, const errmsg_t *em);

/* The operator's word that this node's copy is whole (docs/operations.md,
 * section 6, "Every replica marked at once"; docs/cluster.md, "A mark
 * lifted by the operator"): node_id is this node's id. Lifts this node's
 * full repair mark as its evidence would (cluster_full_lift): the repair
 * thread is asked whether nothing of the mark's regain was cleared, and
 * done runs once it answered: 0 when the mark was lifted (regain.full and
 * regain removed), ERR_CONFLICT when an interval was cleared already (the
 * copy is not whole: the mark stays) or the mark went meanwhile,
 * ERR_UNAVAILABLE when the node stops first. Returns 0 when done will
 * run; else done never runs and em says why: ERR_INVALID_ARGUMENT for
 * another node (the message names its HTTP address), ERR_NOT_FOUND for an
 * unknown node, ERR_CONFLICT when this node is not in a full repair, such
 * a word is pending already, or a removal gave it token intervals it has
 * not streamed in (its copy lacks them). */
int cluster_accept_copy(cluster_t *c, const char *node_id, cluster_accept_fn done, void *arg,
                        errmsg_t *em);
/* {"node": id, "state": s, "takers_waiting": n} plus a newline appended to
 * out: this node's lifecycle state and, while it leaves, how many takers
 * have not yet announced their pass. */
int cluster_move_json(cluster_t *c, buf_t *out);

/* ---------------------------------------------------------------- metrics */

/* A copy of the module's counters. */
typedef struct cluster_metrics cluster_metrics_t;

/* Loop thread: copies the counters. Caller owns *out; free with
 * cluster_metrics_free (any thread). */
int cluster_metrics_take(cluster_t *c, cluster_metrics_t **out);
/* Any thread: registers m's counters and gauges on r, plus the per-target
 * gauges of stored hints read from storage when r is rendered. m and
 * storage are borrowed until then. */
void cluster_metrics_register(const cluster_metrics_t *m, storage_t *storage,
                              metrics_registry_t *r);
void cluster_metrics_free(cluster_metrics_t *m);

#endif
