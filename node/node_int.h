/* node_int.h — what node.c and routes.c share (internal to node/). */
#ifndef FLAMEDB_NODE_NODE_INT_H
#define FLAMEDB_NODE_NODE_INT_H

#include <uv.h>

#include "common/alloc.h"
#include "common/assist.h"
#include "common/clock.h"
#include "common/list.h"
#include "common/workq.h"
#include "node/auth.h"
#include "node/cluster/cluster.h"
#include "node/http_server.h"
#include "node/metrics.h"
#include "node/node.h"
#include "query/query.h"
#include "storage/storage.h"

struct node {
    node_config_t cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_signal_t sighup;           /* re-reads auth-file */
    node_auth_t *auth;            /* NULL: no HTTP authentication */
    struct routes_limits *limits; /* per-tenant limits' state; NULL until needed */
    uv_async_t stop_async;
    storage_t *storage;
    http_server_t *http;
    cluster_t *cluster; /* membership, writes, queries (a cluster of one: no transport) */
    /* the last regression reports (report-cache-bytes, charged to query-memory-bytes) */
    query_report_cache_t *report_cache;
    ingest_stack_cache_t *stack_cache; /* ingest-stack-cache-bytes; NULL: off */
    workq_t *workq;   /* thread-pool lanes: writes and queries cannot starve each other */
    assist_t *assist; /* helpers a render hands its timeline to (query-assist-threads) */
    node_metrics_t metrics;
    size_t metrics_renders; /* GET /metrics renders on the pool (metrics-max-renders) */
    list_t metrics_waiting; /* GET /metrics requests waiting for one to end (routes.c) */
    /* ingest-inflight-bytes: cfg.ingest.inflight points here */
    alloc_budget_t ingest_inflight;
    int ready; /* storage open and listener up, not stopping */
    int stopping;
    int port;
    clock_source_t clock; /* "now" for queries, defaults and uptime (real; tests may swap it) */
    int64_t start_ns;     /* wall clock at start */
};

/* The HTTP handler and observer of the node (routes.c). */
void routes_handle(void *node, http_exchange_t *ex);
void routes_observe(void *node, const http_exchange_t *ex, int status, uint64_t duration_ms);

/* Checks the request's token when auth-file is set (node/auth.h) and records
 * its tenant as the exchange's principal. Returns 0 after answering
 * 401/403/400, 1 when the request may go on (routes_auth.c). */
int routes_authorize(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* The same check from a request's head, before its body is read (the
 * server's head check, http_server_set_head_check): non-zero with *out
 * filled when routes_authorize would refuse it (routes_auth.c). */
int routes_head_check(void *node, const http_request_t *r, http_refusal_t *out);

/* ---- per-tenant limits (routes_limits.c), on the loop thread ---- */

typedef struct routes_limits routes_limits_t;
void routes_limits_free(routes_limits_t *l);
/* tenant-ingest-rate: returns 1 when a push of bytes may go on, else 0
 * after answering 429 (with Retry-After) or 413. */
int routes_limit_ingest(node_t *n, http_exchange_t *ex, const char *tenant, size_t bytes);
/* max-query-range and tenant-max-queries: 0 after answering 400/429, 1 when
 * the query may go on, 2 when it holds one of the tenant's query slots
 * (give it back with routes_limit_query_done once answered). */
int routes_limit_query(node_t *n, http_exchange_t *ex, const http_request_t *r, const char *tenant);
void routes_limit_query_done(node_t *n, const char *tenant);

/* Answers err with em's reason (503s get Retry-After) and counts it. */
void routes_respond_error(node_t *n, http_exchange_t *ex, int err, const errmsg_t *em);
/* The error a query answers with: a query limit (series, tree nodes, output
 * bytes: ERR_LIMIT) is 422 over_limit, since the same query can never pass
 * it; 429 is kept for what a retry can pass (rates, tenant quotas). */
int routes_query_error(int rc);
/* What the request metrics record for a request whose client went away
 * (nginx's "client closed request"); never sent. */
#define ROUTES_STATUS_CLIENT_GONE 499
/* Answers a cancelled request (the connection closes, nothing is written);
 * not counted as an error. */
void routes_respond_cancelled(http_exchange_t *ex, const errmsg_t *em);
/* Answers resp with the body of stream (taken), sent as the client reads
 * it: held bytes of query-memory-bytes and the request's tenant query slot
 * stay taken until its last byte is sent or the client goes, then are
 * given back and done(arg) runs (done may be NULL); also when it cannot be
 * sent at all. */
void routes_respond_stream(node_t *n, http_exchange_t *ex, http_response_t *resp,
                           query_stream_t *stream, size_t held, void (*done)(void *arg), void *arg);
/* The request's tenant, or NULL after answering 400. */
const char *routes_tenant_of(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* ---- one answer from several cluster queries (routes_fanout.c) ---- */

#define ROUTES_FANOUT_MAX_GROUPS 4

/* One query; p's strings borrowed until the request is answered. group
 * names it in errors and in X-Flamedb-Partial. */
typedef struct routes_fanout_query {
    query_kind_t kind;
    query_params_t p;
    size_t group;
} routes_fanout_query_t;

typedef struct routes_fanout_spec {
    const char *const *group_names;  /* per group, in X-Flamedb-Partial ("left") */
    const char *const *error_prefix; /* per group, before a failed query's reason */
    size_t ngroups;                  /* at most ROUTES_FANOUT_MAX_GROUPS */
    size_t max_inflight;             /* queries at once; 0: all */
    /* On the pool: joins the answers (indexed like the queries; a body, or
     * a stream for a query asked with query_params_t.stream) into out;
     * group_partial[g] is 1 when a query of group g was partial. A join
     * whose out is a stream may take answers into it (leaving both the
     * body and the stream of each empty): their bytes stay counted in
     * query-memory-bytes until the stream is sent. */
    int (*join)(void *ctx, query_result_t *answers, const int *group_partial, query_result_t *out,
                errmsg_t *em);
    void *ctx;
    void (*ctx_free)(void *ctx); /* may be NULL; called once the request is answered */
    /* The answer as a whole: past it, the queries running are cancelled,
     * the others never start, and the request is answered 504 naming
     * timeout_setting (0: no deadline but each query's own). */
    uint64_t timeout_ms;
    const char *timeout_setting;
} routes_fanout_spec_t;

/* Runs the nq queries (copied) through the cluster, then spec->join on the
 * pool, and answers; takes ownership of spec->ctx (also on failure). */
void routes_fanout(node_t *n, http_exchange_t *ex, const char *tenant,
                   const routes_fanout_query_t *q, size_t nq, const routes_fanout_spec_t *spec);

/* GET /pyroscope/render-diff (routes_diff.c). */
void routes_render_diff(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* The operator routes (/cluster/...) take only the parameters they name:
 * allowed is a NULL-terminated list (NULL: none). 1 when r passes; else the
 * 400 naming the first other parameter is answered and 0 returned
 * (routes_cluster.c). /ingest, /pyroscope/... stay lenient: clients send extras. */
int routes_only_params(node_t *n, http_exchange_t *ex, const http_request_t *r,
                       const char *const *allowed);
/* POST /cluster/repair and POST /cluster/remove (routes_cluster.c). */
void routes_cluster_repair(node_t *n, http_exchange_t *ex, const http_request_t *r);
void routes_cluster_remove(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* POST /cluster/decommission?node=ID (routes_cluster.c): this node leaves. */
void routes_cluster_decommission(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* POST /cluster/accept-copy?node=ID (routes_cluster.c): this node's copy is
 * whole; its full repair mark is lifted. */
void routes_cluster_accept_copy(node_t *n, http_exchange_t *ex, const http_request_t *r);
/* GET /pyroscope/render with groupBy=label (routes_groups.c); render holds
 * the request's parameters (borrowed for the call). */
void routes_render_groups(node_t *n, http_exchange_t *ex, const http_request_t *r,
                          const query_params_t *render, const char *label);
/* GET /api/diff, the regression report (routes_report.c). */
void routes_report_diff(node_t *n, http_exchange_t *ex, const http_request_t *r);

/* Validates X-Scope-OrgID (docs/api.md, Conventions); NULL or "" means "anonymous".
 * Returns the tenant (borrowed: value or a static string) or NULL with em set. */
const char *routes_tenant(const char *header, errmsg_t *em);

#endif
