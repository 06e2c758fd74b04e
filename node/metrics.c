/* metrics.c — counting, and the node's metrics on the common registry (see metrics.h). */
#include "node/metrics.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/err.h"

static const int status_codes[] = {
#define METRICS_STATUS_CODE(code) code,
    METRICS_STATUS_TABLE(METRICS_STATUS_CODE)
#undef METRICS_STATUS_CODE
};

static const uint64_t bucket_ms[METRICS_NBUCKETS] = METRICS_DURATION_BUCKETS_MS;

static int status_index(int status)
{
    for (int i = 0; i < METRICS_STATUS_OTHER; i++)
        if (status_codes[i] == status) return i;
    return METRICS_STATUS_OTHER;
}

void node_metrics_observe(node_metrics_t *m, int route, int status, uint64_t duration_ms)
{
    if (route < 0 || route >= METRICS_MAX_ROUTES) route = 0;
    m->requests[route][status_index(status)]++;
    int b = 0;
    while (b < METRICS_NBUCKETS && duration_ms > bucket_ms[b])
        b++;
    m->duration_buckets[route][b]++;
    m->duration_sum_ms[route] += duration_ms;
}

void node_metrics_error(node_metrics_t *m, int err)
{
    int i = -err;
    if (i > 0 && i < METRICS_ERR_CODES) m->errors[i]++;
}

/* The labelled families render themselves from the view (their ctx). */
static int render_requests(const void *ctx, buf_t *out)
{
    const node_metrics_view_t *v = ctx;
    int rc = buf_append_str(
        out, "# HELP flamedb_http_requests_total HTTP responses by route and status.\n"
             "# TYPE flamedb_http_requests_total counter\n");
    for (size_t r = 0; r < v->nroutes && r < METRICS_MAX_ROUTES; r++)
        for (int s = 0; s < METRICS_NSTATUS && rc == ERR_OK; s++) {
            if (v->m->requests[r][s] == 0) continue;
            char code[16];
            snprintf(code, sizeof code, s == METRICS_STATUS_OTHER ? "other" : "%d",
                     s == METRICS_STATUS_OTHER ? 0 : status_codes[s]);
            rc = buf_printf(out,
                            "flamedb_http_requests_total{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                            v->route_names[r], code, v->m->requests[r][s]);
        }
    return rc;
}

static int render_route_durations(const node_metrics_t *m, const char *name, size_t r, buf_t *out)
{
    uint64_t cum = 0;
    int rc = ERR_OK;
    for (int b = 0; b <= METRICS_NBUCKETS && rc == ERR_OK; b++) {
        cum += m->duration_buckets[r][b];
        if (b < METRICS_NBUCKETS)
            rc = buf_printf(
                out,
                "flamedb_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %" PRIu64
                "\n",
                name, (double)bucket_ms[b] / 1000.0, cum);
        else
            rc = buf_printf(
                out,
                "flamedb_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64
                "\n",
                name, cum);
    }
    if (rc == ERR_OK)
        rc = buf_printf(out, "flamedb_http_request_duration_seconds_sum{route=\"%s\"} %.3f\n", name,
                        (double)m->duration_sum_ms[r] / 1000.0);
    if (rc == ERR_OK)
        rc = buf_printf(out,
                        "flamedb_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n",
                        name, cum);
    return rc;
}

static int render_durations(const void *ctx, buf_t *out)
{
    const node_metrics_view_t *v = ctx;
    int rc = buf_append_str(
        out, "# HELP flamedb_http_request_duration_seconds Time from a request's first "
             "byte to its response.\n"
             "# TYPE flamedb_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < v->nroutes && r < METRICS_MAX_ROUTES && rc == ERR_OK; r++)
        rc = render_route_durations(v->m, v->route_names[r], r, out);
    return rc;
}

static int render_errors(const void *ctx, buf_t *out)
{
    const node_metrics_view_t *v = ctx;
    int rc = buf_append_str(out, "# HELP flamedb_errors_total Failed requests by error code.\n"
                                 "# TYPE flamedb_errors_total counter\n");
    for (int i = 1; i < METRICS_ERR_CODES && rc == ERR_OK; i++)
        if (v->m->errors[i] != 0)
            rc = buf_printf(out, "flamedb_errors_total{code=\"%s\"} %" PRIu64 "\n",
                            err_code_name(-i), v->m->errors[i]);
    return rc;
}

/* flamedb_tenant_series{tenant}: bounded by metrics-max-tenants. */
static int render_tenants(const void *ctx, buf_t *out)
{
    const node_metrics_extra_t *x = ctx;
    int rc = buf_append_str(out, "# HELP flamedb_tenant_series Series a tenant has on this node "
                                 "(the metrics-max-tenants tenants with the most).\n"
                                 "# TYPE flamedb_tenant_series gauge\n");
    for (size_t i = 0; i < x->ntenants_listed && rc == ERR_OK; i++) {
        char name[2 * STORAGE_TENANT_MAX + 1];
        size_t k = 0;
        for (const char *p = x->tenants[i].tenant; *p; p++) { /* label value escapes */
            if (*p == '"' || *p == '\\' || *p == '\n') name[k++] = '\\';
            name[k++] = *p == '\n' ? 'n' : *p;
        }
        name[k] = 0;
        rc = buf_printf(out, "flamedb_tenant_series{tenant=\"%s\"} %" PRIu64 "\n", name,
                        x->tenants[i].series);
    }
    if (rc == ERR_OK)
        rc = buf_printf(out,
                        "# HELP flamedb_tenant_series_others Series of the tenants not listed in "
                        "flamedb_tenant_series.\n# TYPE flamedb_tenant_series_others gauge\n"
                        "flamedb_tenant_series_others %" PRIu64 "\n"
                        "# HELP flamedb_tenants Tenants with series counted on this node.\n"
                        "# TYPE flamedb_tenants gauge\nflamedb_tenants %zu\n",
                        x->tenant_others, x->ntenants);
    return rc;
}

static double read_ready(const void *ctx)
{
    return ((const node_metrics_extra_t *)ctx)->ready ? 1 : 0;
}

static const metrics_u64_def_t node_counters[] = {
#define METRICS_DEF(name, metric, help) METRICS_U64_DEF(node_metrics_t, name, metric, help),
    METRICS_COUNTERS(METRICS_DEF)
#undef METRICS_DEF
};

int node_metrics_register(metrics_registry_t *r, const node_metrics_view_t *v)
{
    const node_metrics_extra_t *x = v->x;
    metrics_add_render(r, render_requests, v);
    metrics_add_render(r, render_durations, v);
    metrics_add_render(r, render_errors, v);
    metrics_add_u64_array(r, node_counters, sizeof node_counters / sizeof node_counters[0], v->m);
    if (x->http) http_server_stats_register(r, x->http);
    metrics_add_render(r, workq_stats_render, &x->pool);
    if (x->storage_ok) storage_stats_register(r, &x->storage);
    if (x->tenants_on) metrics_add_render(r, render_tenants, x);
    metrics_add_u64(r, "flamedb_ingest_inflight_bytes",
                    "Memory held by the pushes and replica writes in progress (decoded messages, "
                    "gunzipped bodies, call trees), bounded by ingest-inflight-bytes.",
                    METRICS_GAUGE, &x->inflight_bytes);
    metrics_add_u64(r, "flamedb_ingest_inflight_limit_bytes", "The ingest-inflight-bytes setting.",
                    METRICS_GAUGE, &x->inflight_limit);
    metrics_add_u64(r, "flamedb_query_assist_helped_total",
                    "Parts of renders (timeline and series read, names, deep flame-graph levels) "
                    "run by a helper thread (query-assist-threads) beside the render's thread.",
                    METRICS_COUNTER, &x->assist_helped);
    metrics_add_u64(r, "flamedb_query_assist_inline_total",
                    "Parts of renders run on the render's own thread: no helper was idle, or "
                    "the one handed the part was still asleep when the render joined it.",
                    METRICS_COUNTER, &x->assist_inline);
    metrics_add_u64(r, "flamedb_query_assist_woken_total",
                    "Helper threads asleep that a render starting woke, so that they wait awake "
                    "for its first part.",
                    METRICS_COUNTER, &x->assist_woken);
    metrics_add_u64(r, "flamedb_query_assist_rested_total",
                    "Helper threads that went to sleep at once after the last part of a share "
                    "answered to another node, instead of waiting awake for a next part.",
                    METRICS_COUNTER, &x->assist_rested);
    metrics_add_u64(r, "flamedb_query_assist_busy_total",
                    "Joins of render parts and helpers' waits for a part handed to them that "
                    "stopped spinning and slept because another thread held the CPU meanwhile: "
                    "a steady rise says the machine has more runnable threads than CPUs.",
                    METRICS_COUNTER, &x->assist_busy);
    metrics_add_u64(r, "flamedb_ingest_inflight_refused_total",
                    "Pushes and replica writes refused because ingest-inflight-bytes was full "
                    "(503) or they alone needed more (413).",
                    METRICS_COUNTER, &x->inflight_refused);
    metrics_add_u64(r, "flamedb_report_cache_bytes",
                    "Memory the regression reports kept for searches within them hold "
                    "(report-cache-bytes; counted in query-memory-bytes).",
                    METRICS_GAUGE, &x->report_cache_bytes);
    metrics_add_u64(r, "flamedb_report_cache_entries", "Regression reports kept.", METRICS_GAUGE,
                    &x->report_cache_entries);
    metrics_add_u64(r, "flamedb_report_cache_hits_total",
                    "Requests naming a report (reportId) answered from the reports kept.",
                    METRICS_COUNTER, &x->report_cache_hits);
    metrics_add_u64(r, "flamedb_report_cache_misses_total",
                    "Requests naming their report (reportId) that computed it again: it was "
                    "not kept, or evicted.",
                    METRICS_COUNTER, &x->report_cache_misses);
    metrics_add_u64(r, "flamedb_report_cache_evictions_total",
                    "Regression reports evicted to make room (report-cache-bytes, or "
                    "query-memory-bytes when queries needed it).",
                    METRICS_COUNTER, &x->report_cache_evictions);
    if (x->rss_bytes)
        metrics_add_u64(r, "process_resident_memory_bytes", "Resident set size of the node.",
                        METRICS_GAUGE, &x->rss_bytes);
    metrics_add_double(r, "flamedb_uptime_seconds", "Seconds since the node started.",
                       METRICS_GAUGE, &x->uptime_seconds);
    metrics_add_read(r, "flamedb_ready", "1 when the node serves requests.", METRICS_GAUGE,
                     read_ready, x);
    return r->err;
}
