/* metrics.h — the node's counters and their place on the metrics registry
 * (common/metrics.h, which renders the Prometheus text format; internal to node/).
 *
 * Owns: request counts by route and status, request duration histograms by
 * route, ingest counters, error counts by error code. Counters are plain
 * integers updated on the loop thread only (every response is written there);
 * /metrics copies the struct on the loop thread and renders the copy on a
 * worker thread, together with facts gathered there (disk usage, RSS).
 */
#ifndef FLAMEDB_NODE_METRICS_H
#define FLAMEDB_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "common/workq.h"
#include "node/http_server.h"
#include "storage/storage.h"

#define METRICS_MAX_ROUTES 24
/* Statuses counted one by one; any other lands in "other". */
#define METRICS_STATUS_TABLE(X)                                                                    \
    X(200)                                                                                         \
    X(400)                                                                                         \
    X(401) X(404) X(405) X(408) X(409) X(413) X(422) X(429) X(431) X(499) X(500) X(503) X(504)
#define METRICS_ERR_CODES 32 /* -err of ERR_* codes counted */

/* name, metric, help */
#define METRICS_COUNTERS(X)                                                                        \
    X(ingest_profiles, "flamedb_ingest_profiles_total", "Profiles accepted by POST /ingest.")      \
    X(ingest_empty, "flamedb_ingest_empty_profiles_total",                                         \
      "Pushes without a sample (an empty pprof or folded body): answered 200, nothing stored.")    \
    X(ingest_bytes, "flamedb_ingest_bytes_total",                                                  \
      "Request body bytes of accepted profiles (as sent, before gunzip).")                         \
    X(ingest_series_written, "flamedb_ingest_series_written_total",                                \
      "Series of accepted profiles written to storage.")                                           \
    X(ingest_series_duplicate, "flamedb_ingest_series_duplicate_total",                            \
      "Series skipped because their profile id was already stored (retries).")                     \
    X(ingest_spans_dropped, "flamedb_ingest_spans_dropped_total",                                  \
      "Span and trace trees not stored: past max-spans-per-series in one profile.")                \
    X(ingest_stack_hits, "flamedb_ingest_stack_cache_hits_total",                                  \
      "pprof samples of stored pushes given to storage by stack-node id "                          \
      "(ingest-stack-cache-bytes).")                                                               \
    X(queries, "flamedb_queries_total", "Queries answered (render, label names and values).")

#define METRICS_DURATION_BUCKETS_MS                                                                \
    {                                                                                              \
        1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000                                   \
    }
#define METRICS_NBUCKETS 12

enum metrics_status {
#define METRICS_STATUS_ENUM(code) METRICS_STATUS_##code,
    METRICS_STATUS_TABLE(METRICS_STATUS_ENUM)
#undef METRICS_STATUS_ENUM
        METRICS_STATUS_OTHER,
    METRICS_NSTATUS
};

typedef struct node_metrics {
    uint64_t requests[METRICS_MAX_ROUTES][METRICS_NSTATUS];
    uint64_t duration_buckets[METRICS_MAX_ROUTES][METRICS_NBUCKETS + 1]; /* last: +Inf */
    uint64_t duration_sum_ms[METRICS_MAX_ROUTES];
    uint64_t errors[METRICS_ERR_CODES];
#define METRICS_FIELD(name, metric, help) uint64_t name;
    METRICS_COUNTERS(METRICS_FIELD)
#undef METRICS_FIELD
} node_metrics_t;

/* What the worker adds at render time. */
typedef struct node_metrics_extra {
    const http_server_stats_t *http; /* a copy taken on the loop thread */
    storage_stats_t storage;
    int storage_ok;
    uint64_t rss_bytes; /* 0 when unknown */
    double uptime_seconds;
    int ready;
    workq_stats_t pool; /* thread-pool lanes, copied on the loop thread */
    uint64_t inflight_bytes, inflight_limit, inflight_refused; /* ingest-inflight-bytes */
    uint64_t assist_helped, assist_inline; /* renders' timelines by a helper, by the render */
    uint64_t assist_woken;                 /* helpers woken ahead of a render's parts */
    uint64_t assist_rested;                /* helpers asleep at once after a share's last part */
    uint64_t assist_busy;                  /* helpers' and joiners' spins a busy CPU ended */
    /* the regression report cache (report-cache-bytes) */
    uint64_t report_cache_bytes, report_cache_entries, report_cache_hits, report_cache_misses,
        report_cache_evictions;
    /* flamedb_tenant_series: the tenants with the most series (metrics-max-tenants) */
    const storage_tenant_count_t *tenants;
    size_t ntenants_listed, ntenants;
    uint64_t tenant_others;
    int tenants_on;
} node_metrics_extra_t;

/* Counts one response of route (0 = no route) with its status and duration. */
void node_metrics_observe(node_metrics_t *m, int route, int status, uint64_t duration_ms);
/* Counts one failed request by its error code (ERR_*). */
void node_metrics_error(node_metrics_t *m, int err);

/* What /metrics shows of the node: a snapshot of its counters, the route
 * names (route_names[i] names route i, i < nroutes) and the extra facts. */
typedef struct node_metrics_view {
    const node_metrics_t *m;
    const char *const *route_names;
    size_t nroutes;
    const node_metrics_extra_t *x;
} node_metrics_view_t;

/* Registers the node's metrics (requests, durations, errors, ingest and query
 * counters, HTTP server, storage, process) on r; v and everything it points
 * to are borrowed until r is rendered. Other subsystems register after it. */
int node_metrics_register(metrics_registry_t *r, const node_metrics_view_t *v);

#endif
