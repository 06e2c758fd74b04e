/* metrics.c — counting and Prometheus rendering (see metrics.h). */
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
        if (status_codes[i] == status)
            return i;
    return METRICS_STATUS_OTHER;
}

void metrics_observe(metrics_t *m, int route, int status, uint64_t duration_ms)
{
    if (route < 0 || route >= METRICS_MAX_ROUTES)
        route = 0;
    m->requests[route][status_index(status)]++;
    int b = 0;
    while (b < METRICS_NBUCKETS && duration_ms > bucket_ms[b])
        b++;
    m->duration_buckets[route][b]++;
    m->duration_sum_ms[route] += duration_ms;
}

void metrics_error(metrics_t *m, int err)
{
    int i = -err;
    if (i > 0 && i < METRICS_ERR_CODES)
        m->errors[i]++;
}

static int render_requests(const metrics_t *m, const char *const *names, size_t nroutes, buf_t *out)
{
    buf_append_str(out, "# HELP flamedb_http_requests_total HTTP responses by route and status.\n"
                        "# TYPE flamedb_http_requests_total counter\n");
    for (size_t r = 0; r < nroutes && r < METRICS_MAX_ROUTES; r++)
        for (int s = 0; s < METRICS_NSTATUS; s++) {
            if (m->requests[r][s] == 0)
                continue;
            char code[16];
            snprintf(code, sizeof code, s == METRICS_STATUS_OTHER ? "other" : "%d",
                     s == METRICS_STATUS_OTHER ? 0 : status_codes[s]);
            buf_printf(out, "flamedb_http_requests_total{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                       names[r], code, m->requests[r][s]);
        }
    return ERR_OK;
}

static int render_durations(const metrics_t *m, const char *const *names, size_t nroutes,
                            buf_t *out)
{
    buf_append_str(out, "# HELP flamedb_http_request_duration_seconds Time from a request's first "
                        "byte to its response.\n"
                        "# TYPE flamedb_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < nroutes && r < METRICS_MAX_ROUTES; r++) {
        uint64_t cum = 0;
        for (int b = 0; b <= METRICS_NBUCKETS; b++) {
            cum += m->duration_buckets[r][b];
            if (b < METRICS_NBUCKETS)
                buf_printf(out, "flamedb_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %"
                           PRIu64 "\n", names[r], (double)bucket_ms[b] / 1000.0, cum);
            else
                buf_printf(out, "flamedb_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %"
                           PRIu64 "\n", names[r], cum);
        }
        buf_printf(out, "flamedb_http_request_duration_seconds_sum{route=\"%s\"} %.3f\n", names[r],
                   (double)m->duration_sum_ms[r] / 1000.0);
        buf_printf(out, "flamedb_http_request_duration_seconds_count{route=\"%s\"} %" PRIu64 "\n",
                   names[r], cum);
    }
    return ERR_OK;
}

static void metric(buf_t *out, const char *name, const char *type, const char *help, double v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void render_http(const http_server_stats_t *h, buf_t *out)
{
    metric(out, "flamedb_http_connections_open", "gauge", "Open HTTP connections.",
           (double)h->connections_open);
    metric(out, "flamedb_http_connections_accepted_total", "counter", "Accepted connections.",
           (double)h->connections_accepted);
    metric(out, "flamedb_http_connections_rejected_total", "counter",
           "Connections refused over max-connections.", (double)h->connections_rejected);
    metric(out, "flamedb_http_requests_in_flight", "gauge",
           "Requests being handled (decoding, storing, querying).", (double)h->requests_in_flight);
    metric(out, "flamedb_http_buffered_body_bytes", "gauge",
           "Request body bytes held in memory (bounded by max-buffered-bytes).",
           (double)h->buffered_bytes);
    metric(out, "flamedb_http_protocol_errors_total", "counter", "Malformed HTTP requests.",
           (double)h->protocol_errors);
    metric(out, "flamedb_http_too_large_total", "counter", "Requests refused with 413 or 431.",
           (double)h->too_large);
    metric(out, "flamedb_http_busy_total", "counter",
           "Requests refused with 503 because max-buffered-bytes was reached.", (double)h->busy);
    metric(out, "flamedb_http_timeouts_total", "counter",
           "Requests not received, or responses not read, within request-timeout.",
           (double)h->timeouts);
    metric(out, "flamedb_http_idle_closed_total", "counter",
           "Keep-alive connections closed after idle-timeout.", (double)h->idle_closed);
}

static void render_errors(const metrics_t *m, buf_t *out)
{
    buf_append_str(out, "# HELP flamedb_errors_total Failed requests by error code.\n"
                        "# TYPE flamedb_errors_total counter\n");
    for (int i = 1; i < METRICS_ERR_CODES; i++)
        if (m->errors[i] != 0)
            buf_printf(out, "flamedb_errors_total{code=\"%s\"} %" PRIu64 "\n", err_code_name(-i),
                       m->errors[i]);
}

static void render_storage(const storage_stats_t *st, buf_t *out)
{
    metric(out, "flamedb_storage_disk_bytes", "gauge",
           "Bytes on disk of the node's database (SST files and WAL).", (double)st->disk_bytes);
    metric(out, "flamedb_storage_memtable_bytes", "gauge", "Bytes in RocksDB memtables.",
           (double)st->memtable_bytes);
    metric(out, "flamedb_storage_block_cache_bytes", "gauge", "Bytes in the RocksDB block cache.",
           (double)st->block_cache_bytes);
    metric(out, "flamedb_storage_series_written_total", "counter",
           "Series writes committed by storage.", (double)st->series_written);
    metric(out, "flamedb_storage_duplicate_series_total", "counter",
           "Series writes skipped because (series, profile id) was already stored.",
           (double)st->duplicate_series);
    metric(out, "flamedb_storage_corrupt_operands_total", "counter",
           "Merge operands skipped because they did not decode.", (double)st->corrupt_operands);
    metric(out, "flamedb_storage_expired_windows_total", "counter",
           "Block and total windows dropped by retention.", (double)st->expired_windows);
    metric(out, "flamedb_storage_expired_seen_total", "counter",
           "Profile ids forgotten after seen-retention.", (double)st->expired_seen);
}

int metrics_render(const metrics_t *m, const char *const *route_names, size_t nroutes,
                   const metrics_extra_t *x, buf_t *out)
{
    render_requests(m, route_names, nroutes, out);
    render_durations(m, route_names, nroutes, out);
    render_errors(m, out);
#define METRICS_RENDER(name, metric_name, help) metric(out, metric_name, "counter", help, (double)m->name);
    METRICS_COUNTERS(METRICS_RENDER)
#undef METRICS_RENDER
    if (x->http)
        render_http(x->http, out);
    if (x->storage_ok)
        render_storage(&x->storage, out);
    if (x->rss_bytes)
        metric(out, "process_resident_memory_bytes", "gauge", "Resident set size of the node.",
               (double)x->rss_bytes);
    metric(out, "flamedb_uptime_seconds", "gauge", "Seconds since the node started.",
           x->uptime_seconds);
    metric(out, "flamedb_ready", "gauge", "1 when the node serves requests.", x->ready ? 1 : 0);
    return out->len <= out->max ? ERR_OK : ERR_TOO_LARGE;
}
