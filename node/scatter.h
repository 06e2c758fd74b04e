/* scatter.h — scatter-gather queries (internal to node/; docs/cluster.md
 * "Read path").
 *
 * Owns, for every flame graph and label query a node coordinates: the read
 * plan (ring_plan_read over the cluster view: only the shard tokens of the
 * service a selector pins with `=`, else the whole ring), one QueryRequest
 * per remote node carrying exactly the ranges it answers for, the local
 * node's share run on the thread pool, the collection of PartialResults by
 * request id, their merge on the thread pool (one merge job at a time per
 * query, so the gather needs no lock), the re-planning of a node's ranges
 * once over the remaining live replicas when it fails or is slow (no answer
 * by half the query timeout), and the final truncation and encoding
 * (query/query.h gather), marked partial with what is missing. On the
 * replica side it owns the QUERY handler: the partial query on the pool over
 * the given ranges, answered with PARTIAL (or refused with a reason when it
 * would not fit in a message).
 *
 * Every range is merged from exactly one answer: a late answer from a node
 * whose ranges were re-planned is dropped, so nothing counts twice.
 *
 * The cluster is reached only through scatter_ops_t (the node wires it to
 * node/cluster.h with scatter_ops_cluster; tests wire several scatter_t to
 * each other in one process).
 *
 * Threads: every function on the loop thread. Ownership: scatter_new()
 * returns a handle the node owns; scatter_close() once (it answers the
 * queries still in flight), then scatter_free() after the loop has run out
 * of work. Query parameters are borrowed for the scatter_query() call only.
 */
#ifndef FLAMEDB_NODE_SCATTER_H
#define FLAMEDB_NODE_SCATTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "node/cluster.h"
#include "query/query.h"
#include "ring/ring.h"
#include "storage/storage.h"

typedef struct scatter scatter_t;

/* How scatter reaches the cluster; every call on the loop thread except
 * view_retain / view_release. */
typedef struct scatter_ops {
    const cluster_view_t *(*view_acquire)(void *ctx); /* one reference for the caller */
    void (*view_retain)(const cluster_view_t *v);
    void (*view_release)(const cluster_view_t *v);
    /* as cluster_send: encodes body now (it may be freed after the call) */
    int (*send)(void *ctx, const char *node_id, Flamedb__Cluster__MsgType type,
                uint64_t deadline_unix_ms, const ProtobufCMessage *body);
    void *ctx;
} scatter_ops_t;

/* ops calling node/cluster.h on c. */
void scatter_ops_cluster(cluster_t *c, scatter_ops_t *ops);

typedef struct scatter_options {
    uint64_t query_timeout_ms;   /* whole query; a node silent for half of it is re-planned */
    size_t max_message_bytes;    /* largest PartialResult a replica sends */
    ring_shard_policy_t shards;  /* placement shards per service (the ingest setting) */
    uint32_t max_inflight;       /* queries coordinated at once; more get 503 */
    uint32_t max_serving;        /* partial queries served at once; more are refused */
    query_limits_t limits;
} scatter_options_t;

/* Defaults: 30 s, 64 MiB, RING_DEFAULT_SHARDS_PER_SERVICE, 256 queries in
 * flight, 64 partials served at once, query_limits_default(). */
void scatter_options_default(scatter_options_t *o);

/* Creates the node's scatter over node/cluster.h, with its settings from
 * cfg (query timeout, message size, shards per service, query limits), and
 * registers the QUERY and PARTIAL handlers. */
int scatter_open_for_cluster(uv_loop_t *loop, storage_t *storage, const node_config_t *cfg,
                             cluster_t *c, scatter_t **out, errmsg_t *em);

/* storage and ops are borrowed for the handle's life. */
int scatter_new(uv_loop_t *loop, storage_t *storage, const scatter_options_t *o,
                const scatter_ops_t *ops, scatter_t **out, errmsg_t *em);
/* Answers every query still in flight with ERR_UNAVAILABLE and stops
 * answering other nodes. Jobs already on the pool finish on their own. */
void scatter_close(scatter_t *s);
void scatter_free(scatter_t *s);

/* cluster_msg_fn handlers for MSG_TYPE_QUERY and MSG_TYPE_PARTIAL (ctx is
 * the scatter_t). */
void scatter_on_query(void *ctx, ring_msg_t *msg);
void scatter_on_partial(void *ctx, ring_msg_t *msg);

#define SCATTER_PARTIAL_HEADER_MAX 512

/* What a query answers. rc 0: result holds the body (the callee may take
 * it: buf_init the field after taking); partial_header is "" when every
 * range was answered, else the value of X-Flamedb-Partial. rc < 0: em says
 * why (the same errors as the single-node query functions, plus
 * ERR_UNAVAILABLE when no node can be asked or the node is stopping). */
typedef struct scatter_answer {
    int rc;
    errmsg_t em;
    query_result_t result;
    char partial_header[SCATTER_PARTIAL_HEADER_MAX];
} scatter_answer_t;

/* Called once on the loop thread; ans is borrowed for the call. */
typedef void (*scatter_done_fn)(void *arg, scatter_answer_t *ans);

/* Starts a query of kind for tenant. Parameters are parsed and validated at
 * once: a bad one (or any other refusal) calls done before returning, as
 * does a query that is answered right away. now_ms: the request's wall
 * clock (unix ms). */
void scatter_query(scatter_t *s, query_kind_t kind, const char *tenant, const query_params_t *p,
                   int64_t now_ms, scatter_done_fn done, void *arg);

/* Counters: field, Prometheus name, help. */
#define SCATTER_COUNTERS(X)                                                                        \
    X(queries, "flamedb_scatter_queries_total", "Queries coordinated over the cluster.")           \
    X(partial_answers, "flamedb_scatter_partial_answers_total",                                    \
      "Answers flagged partial: some token ranges had no replica that answered.")                  \
    X(replans, "flamedb_scatter_replans_total",                                                    \
      "Nodes whose ranges were re-planned after a failure or no answer by half the timeout.")      \
    X(late_dropped, "flamedb_scatter_late_answers_total",                                          \
      "Answers dropped because their ranges had moved on or their query was answered.")            \
    X(served, "flamedb_scatter_partials_served_total", "Partial queries answered for others.")     \
    X(serve_refused, "flamedb_scatter_partials_refused_total",                                     \
      "Partial queries refused: too many at once, too large for a message, or failed.")            \
    X(busy, "flamedb_scatter_busy_total", "Queries refused with 503: too many in flight.")

typedef struct scatter_stats {
#define SCATTER_FIELD(name, metric, help) uint64_t name;
    SCATTER_COUNTERS(SCATTER_FIELD)
#undef SCATTER_FIELD
} scatter_stats_t;
void scatter_stats(const scatter_t *s, scatter_stats_t *out);
/* Appends the counters in the Prometheus text format. */
int scatter_stats_render(const scatter_stats_t *st, buf_t *out);

#endif
