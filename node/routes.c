/* routes.c — the HTTP API of a node: the route table and its handlers.
 *
 * Handlers run on the loop thread and only look at the request; anything that
 * decodes, merges or touches RocksDB is a job on the libuv thread pool
 * (workq_submit, in the write lane) whose after-callback writes the response back on the loop
 * thread. The request stays valid meanwhile (its connection is not read
 * while it is handled), so jobs borrow parameters and body without copying.
 */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/calltree.h"
#include "common/log.h"
#include "node/ingest/ingest.h"
#include "node/node_int.h"
#include "node/ui_int.h"
#include "query/query.h"

typedef struct job job_t;
typedef void (*route_fn)(node_t *n, http_exchange_t *ex, const http_request_t *r);

/* What a job does: prepare and finish run on the loop thread (they may read
 * and update the node's counters), work on a pool thread. */
typedef struct job_kind {
    void (*prepare)(job_t *j); /* may be NULL */
    void (*work)(job_t *j);
    void (*finish)(job_t *j); /* after success, before responding; may be NULL */
} job_kind_t;

typedef struct route {
    const char *path;
    int method;       /* enum http_method */
    const char *name; /* label in metrics */
    route_fn fn;
} route_t;

static void route_index(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_ready(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_metrics(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_ingest(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_render(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_label_names(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_label_values(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_label_shares(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_cluster_status(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_top(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_profiles(node_t *n, http_exchange_t *ex, const http_request_t *r);
static void route_profile(node_t *n, http_exchange_t *ex, const http_request_t *r);

/* Route i has tag i + 1 on its exchanges; tag 0 is "no route" in metrics. */
static const route_t routes[] = {
    {"/", HTTP_GET, "index", route_index},
    {"/ready", HTTP_GET, "ready", route_ready},
    {"/metrics", HTTP_GET, "metrics", route_metrics},
    {"/ingest", HTTP_POST, "ingest", route_ingest},
    {"/pyroscope/render", HTTP_GET, "render", route_render},
    {"/pyroscope/render-diff", HTTP_GET, "render_diff", routes_render_diff},
    {"/pyroscope/label-names", HTTP_GET, "label_names", route_label_names},
    {"/pyroscope/label-values", HTTP_GET, "label_values", route_label_values},
    {"/cluster/status", HTTP_GET, "cluster_status", route_cluster_status},
    {"/api/top", HTTP_GET, "top", route_top},
    {"/api/label-shares", HTTP_GET, "label_shares", route_label_shares},
    {"/api/diff", HTTP_GET, "diff_report", routes_report_diff},
    {"/api/profiles", HTTP_GET, "profiles", route_profiles},
    {"/api/profiles/*", HTTP_GET, "profile", route_profile}, /* /api/profiles/ID */
    {"/ui/*", HTTP_GET, "ui", routes_ui_file},
    {"/cluster/repair", HTTP_POST, "cluster_repair", routes_cluster_repair},
    {"/cluster/remove", HTTP_POST, "cluster_remove", routes_cluster_remove},
    {"/cluster/decommission", HTTP_POST, "decommission", routes_cluster_decommission},
    {"/cluster/accept-copy", HTTP_POST, "accept_copy", routes_cluster_accept_copy},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static const char *const route_names[NROUTES + 1] = {
    "none",   "index",          "ready",          "metrics",      "ingest",
    "render", "render_diff",    "label_names",    "label_values", "cluster_status",
    "top",    "label_shares",   "diff_report",    "profiles",     "profile",
    "ui",     "cluster_repair", "cluster_remove", "decommission", "accept_copy",
};
_Static_assert(NROUTES + 1 <= METRICS_MAX_ROUTES, "metrics has room for every route");

/* A request's work on the thread pool. */
struct job {
    workq_job_t work;
    node_t *node;
    http_exchange_t *ex;
    const http_request_t *req;
    const job_kind_t *kind;
    char tenant[STORAGE_TENANT_MAX + 1];
    int64_t now_ns;
    int rc;
    errmsg_t em;
    query_result_t result;       /* the response body and its types */
    size_t series, written;      /* ingest */
    size_t spans_dropped;        /* ingest: span trees past max-spans-per-series */
    size_t stack_hits;           /* ingest: samples given by stack-node id (stack cache) */
    int empty;                   /* ingest: no samples (ingest_empty): accepted, not stored */
    const cluster_view_t *view;  /* ingest: the view its write is planned with */
    cluster_write_t *rw;         /* ingest: packed, until cluster_write_start takes it */
    int deferred;                /* finish took over answering (replicated ingest) */
    int starting;                /* inside cluster_write_start: an answer now is job_done's */
    cluster_metrics_t *cmetrics; /* /metrics: a copy taken on the loop thread */
    node_metrics_t metrics;      /* /metrics: a copy taken on the loop thread */
    http_server_stats_t http_stats;
    workq_stats_t pool; /* /metrics: the lanes, copied on the loop thread */
    int ready;
    int show_tenants; /* /metrics: flamedb_tenant_series{tenant} may name tenants */
    int metrics_slot; /* /metrics: counted in node.metrics_renders */
};

static void metrics_next(node_t *n);

/* ---------- tenants ---------- */

static int tenant_char_ok(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           strchr("!-_.*'()", ch) != NULL;
}

const char *routes_tenant(const char *h, errmsg_t *em)
{
    if (h == NULL || h[0] == '\0') return "anonymous";
    size_t n = strlen(h);
    if (n > STORAGE_TENANT_MAX) {
        errmsg_set(em, ERR_INVALID_ARGUMENT, "X-Scope-OrgID: longer than %d characters",
                   STORAGE_TENANT_MAX);
        return NULL;
    }
    if (strcmp(h, ".") == 0 || strcmp(h, "..") == 0) {
        errmsg_set(em, ERR_INVALID_ARGUMENT, "X-Scope-OrgID: '%s' is not a valid tenant", h);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!tenant_char_ok((unsigned char)h[i])) {
            errmsg_set(em, ERR_INVALID_ARGUMENT,
                       "X-Scope-OrgID: character %zu is not one of [0-9a-zA-Z!-_.*'()]", i + 1);
            return NULL;
        }
    return h;
}

/* ---------- jobs on the thread pool ---------- */

int routes_query_error(int rc)
{
    return rc == ERR_LIMIT ? ERR_OVER_LIMIT : rc;
}

void routes_respond_error(node_t *n, http_exchange_t *ex, int err, const errmsg_t *em)
{
    node_metrics_error(&n->metrics, err);
    const char *extra = err == ERR_UNAVAILABLE ? "Retry-After: 1\r\n" : NULL;
    http_respond_error(ex, 0, err, em, extra);
}

void routes_respond_cancelled(http_exchange_t *ex, const errmsg_t *em)
{
    http_respond_error(ex, ROUTES_STATUS_CLIENT_GONE, ERR_UNAVAILABLE, em, NULL);
}

static void job_work(workq_job_t *w)
{
    job_t *j = w->data;
    j->kind->work(j);
}

static void job_done(workq_job_t *w, int status)
{
    job_t *j = w->data;
    node_t *n = j->node;
    if (status != 0 && j->rc == ERR_OK)
        j->rc = errmsg_set(&j->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (j->rc == ERR_OK && j->kind->finish) j->kind->finish(j);
    if (j->deferred) return; /* answered later by whoever finish handed the job to */
    cluster_write_free(j->rw);
    cluster_metrics_free(j->cmetrics);
    if (j->view != NULL) cluster_view_release(j->view);
    if (j->rc != ERR_OK) {
        routes_respond_error(n, j->ex, j->rc, &j->em);
    } else {
        /* an empty push (stored nothing) says so to a client that looks;
         * Pyroscope clients ignore the header */
        http_response_t resp = {.status = 200,
                                .content_type = j->result.body.len ? j->result.content_type : NULL,
                                .content_encoding = j->result.content_encoding,
                                .extra_headers = j->empty ? "X-Flamedb-Stored: nothing\r\n" : NULL,
                                .body = j->result.body};
        buf_init(&j->result.body, 0);
        http_respond(j->ex, &resp);
    }
    int metrics_slot = j->metrics_slot;
    query_result_free(&j->result);
    free(j);
    if (metrics_slot) metrics_next(n); /* its counters include this answer */
}

/* Starts fn(job) on the thread pool for this request; the job answers. */
static job_t *job_start(node_t *n, http_exchange_t *ex, const http_request_t *r,
                        const job_kind_t *kind, const char *tenant)
{
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return NULL;
    }
    j->node = n;
    j->ex = ex;
    j->req = r;
    j->kind = kind;
    j->work.data = j;
    j->now_ns = clock_wall_ns(&n->clock);
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant ? tenant : "");
    query_result_init(&j->result);
    if (kind->prepare) kind->prepare(j);
    int rc = workq_submit(n->workq, WORKQ_WRITE, &j->work, job_work, job_done);
    if (rc != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work: %s", uv_strerror(rc));
        routes_respond_error(n, ex, ERR_UNAVAILABLE, &em);
        cluster_metrics_free(j->cmetrics);
        if (j->view != NULL) cluster_view_release(j->view);
        query_result_free(&j->result);
        free(j);
        return NULL;
    }
    return j;
}

/* ---------- dispatch ---------- */

/* A route path ending in '*' matches every path that starts with the rest;
 * its handler reads the rest (/api/profiles/ID, /ui/FILE). */
static int path_matches(const char *route, const char *path)
{
    size_t n = strlen(route);
    if (n > 0 && route[n - 1] == '*') return strncmp(route, path, n - 1) == 0;
    return strcmp(route, path) == 0;
}

/* Set on the tag of an exchange that holds a tenant query slot. */
#define ROUTES_TAG_QUERY_SLOT 0x100
#define ROUTES_TAG_ROUTE 0xff

/* The routes that read a tenant's data (tenant-max-queries, max-query-range). */
static int is_query_route(const char *path)
{
    return strncmp(path, "/pyroscope/", 11) == 0 || strncmp(path, "/api/", 5) == 0;
}

/* Resolves the tenant once (kept as the exchange's principal, so releasing
 * the slot names the same tenant) and applies the query limits. */
static int admit_query(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return 0;
    if (tenant != http_exchange_principal(ex)) http_exchange_set_principal(ex, tenant);
    return routes_limit_query(n, ex, r, http_exchange_principal(ex));
}

/* HEAD is answered as GET (RFC 9110 9.3.2); the server sends no body. */
static int method_matches(int route_method, int method)
{
    return route_method == method || (route_method == HTTP_GET && method == HTTP_HEAD);
}

void routes_handle(void *ctx, http_exchange_t *ex)
{
    node_t *n = ctx;
    const http_request_t *r = http_exchange_request(ex);
    if (!routes_authorize(n, ex, r)) return;
    int path_found = 0, path_method = HTTP_GET;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_matches(routes[i].path, r->path)) continue;
        path_found = 1;
        path_method = routes[i].method;
        if (!method_matches(routes[i].method, r->method)) continue;
        int tag = (int)i + 1;
        if (is_query_route(r->path)) {
            int got = admit_query(n, ex, r);
            if (got == 0) return;
            if (got == 2) tag |= ROUTES_TAG_QUERY_SLOT;
        }
        http_exchange_set_tag(ex, tag);
        routes[i].fn(n, ex, r);
        return;
    }
    errmsg_t em;
    if (path_found) {
        errmsg_set(&em, ERR_METHOD, "%s is not allowed on %s", r->method_name, r->path);
        const char *allow = path_method == HTTP_POST ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
        node_metrics_error(&n->metrics, ERR_METHOD);
        http_respond_error(ex, 0, ERR_METHOD, &em, allow);
        return;
    }
    errmsg_set(&em, ERR_NOT_FOUND, "no route %.200s (see GET /)", r->path);
    routes_respond_error(n, ex, ERR_NOT_FOUND, &em);
}

void routes_observe(void *ctx, const http_exchange_t *ex, int status, uint64_t duration_ms)
{
    node_t *n = ctx;
    int tag = http_exchange_tag(ex);
    if (tag & ROUTES_TAG_QUERY_SLOT) routes_limit_query_done(n, http_exchange_principal(ex));
    node_metrics_observe(&n->metrics, tag & ROUTES_TAG_ROUTE, status, duration_ms);
}

const char *routes_tenant_of(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *principal = http_exchange_principal(ex);
    if (principal[0] != '\0') return principal; /* authenticated: the token's tenant */
    errmsg_t em = {{0}};
    const char *t = routes_tenant(http_request_header(r, "X-Scope-OrgID"), &em);
    if (t == NULL) routes_respond_error(n, ex, ERR_INVALID_ARGUMENT, &em);
    return t;
}

static void respond_static(http_exchange_t *ex, int status, const char *ctype, const char *text)
{
    http_response_t resp = {.status = status, .content_type = ctype};
    buf_init(&resp.body, BUF_UNLIMITED);
    if (buf_append_str(&resp.body, text) != ERR_OK) resp.status = 500;
    http_respond(ex, &resp);
}

/* ---------- GET /, /ready, /metrics ---------- */

static const char index_html[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>flamedb</title></head>\n"
    "<body><h1>flamedb node</h1>\n"
    "<p>A continuous-profiling database. HTTP endpoints of this node "
    "(reference: docs/api.md):</p>\n<ul>\n"
    "<li><code>POST /ingest?name=APP.cpu{k=v}&amp;from=&amp;until=&amp;format=folded|pprof</code> "
    "&mdash; push a profile</li>\n"
    "<li><a href=\"/pyroscope/render?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds%7B%7D"
    "&amp;from=now-1h&amp;until=now\">GET /pyroscope/render</a> &mdash; a flame graph "
    "(format=json|folded|pprof|svg|speedscope)</li>\n"
    "<li><code>GET "
    "/api/top?query=&amp;from=&amp;until=&amp;limit=&amp;by=self|total&amp;search=</code> "
    "&mdash; top functions (self, total, cores)</li>\n"
    "<li><code>GET /api/diff?leftQuery=&amp;rightQuery=&amp;leftFrom=&amp;...&amp;search=</code> "
    "&mdash; regression report (changed functions, significance)</li>\n"
    "<li><code>GET /api/profiles?query=&amp;from=&amp;until=&amp;limit=</code> &mdash; stored "
    "profiles, newest first; <code>GET /api/profiles/ID?format=</code> opens one</li>\n"
    "<li><a href=\"/pyroscope/label-names\">GET /pyroscope/label-names</a></li>\n"
    "<li><a href=\"/pyroscope/label-values?label=__profile_type__\">GET "
    "/pyroscope/label-values?label=__profile_type__</a> &mdash; profile types present</li>\n"
    "<li><a href=\"/pyroscope/label-values?label=service_name\">GET "
    "/pyroscope/label-values?label=service_name</a></li>\n"
    "<li><a href=\"/metrics\">GET /metrics</a> &mdash; Prometheus metrics</li>\n"
    "<li><a href=\"/ready\">GET /ready</a> &mdash; readiness</li>\n"
    "<li><a href=\"/cluster/status\">GET /cluster/status</a> &mdash; cluster members as this "
    "node sees them</li>\n"
    "</ul>\n<p>Tenant: header <code>X-Scope-OrgID</code> (default "
    "<code>anonymous</code>).</p>\n</body></html>\n";

static void route_index(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    routes_ui_index(n, ex, r, index_html);
}

static void route_ready(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    int joined = n->cluster == NULL || cluster_joined(n->cluster);
    if (n->ready && !n->stopping && joined) {
        respond_static(ex, 200, "text/plain; charset=utf-8", "ready\n");
        return;
    }
    errmsg_t em;
    errmsg_set(&em, ERR_UNAVAILABLE, "%s",
               n->stopping ? "the node is stopping"
               : !joined   ? "joining the cluster: not yet heard from (or by) every member"
                           : "not ready");
    routes_respond_error(n, ex, ERR_UNAVAILABLE, &em);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f == NULL) return 0;
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return got == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The tenants with the most series for flamedb_tenant_series (bounded by
 * metrics-max-tenants); the caller frees what is returned (NULL: none).
 * Unless show (no auth-file, or an admin token), no tenant is named: their
 * series all count in flamedb_tenant_series_others. */
static storage_tenant_count_t *gather_tenants(node_t *n, node_metrics_extra_t *x, int show)
{
    if (n->cfg.metrics_max_tenants == 0) return NULL;
    storage_tenant_count_t *tc = malloc(n->cfg.metrics_max_tenants * sizeof *tc);
    if (tc == NULL) return NULL; /* the family is left out of this scrape */
    x->tenants_on = 1;
    x->tenants = tc;
    x->ntenants_listed = storage_tenant_series_top(n->storage, tc, n->cfg.metrics_max_tenants,
                                                   &x->tenant_others, &x->ntenants);
    if (!show) {
        for (size_t i = 0; i < x->ntenants_listed; i++)
            x->tenant_others += tc[i].series;
        x->ntenants_listed = 0;
    }
    return tc;
}

/* /metrics is open with auth-file (open-metrics), and even a read token is
 * one tenant's: the names of the node's tenants are shown to admins only. */
static int tenants_visible(node_t *n, const http_request_t *r)
{
    if (n->auth == NULL) return 1;
    if (http_request_header(r, "Authorization") == NULL) return 0;
    char tenant[STORAGE_TENANT_MAX + 1];
    errmsg_t em = {{0}};
    return node_auth_check(n->auth, r, NODE_AUTH_ADMIN, tenant, sizeof tenant, &em) == ERR_OK;
}

static void work_metrics(job_t *j)
{
    node_t *n = j->node;
    node_metrics_extra_t x = {
        .http = &j->http_stats, .rss_bytes = rss_bytes(), .ready = j->ready, .pool = j->pool};
    x.storage_ok = storage_stats(n->storage, &x.storage) == ERR_OK;
    x.inflight_bytes = alloc_budget_used(&n->ingest_inflight);
    x.inflight_limit = n->ingest_inflight.limit;
    x.inflight_refused = alloc_budget_refused(&n->ingest_inflight);
    assist_stats_t as;
    assist_stats(n->assist, &as); /* thread-safe */
    x.assist_helped = as.helped;
    x.assist_inline = as.inline_;
    x.assist_woken = as.woken;
    x.assist_rested = as.rested;
    x.assist_busy = as.busy;
    query_report_cache_stats_t rc;
    query_report_cache_stats(n->report_cache, &rc);
    x.report_cache_bytes = rc.bytes;
    x.report_cache_entries = rc.entries;
    x.report_cache_hits = rc.hits;
    x.report_cache_misses = rc.misses;
    x.report_cache_evictions = rc.evictions;
    storage_tenant_count_t *tc = gather_tenants(n, &x, j->show_tenants);
    x.uptime_seconds = (double)(j->now_ns - n->start_ns) / 1e9;
    buf_init(&j->result.body, 16 * 1024 * 1024);
    j->result.content_type = "text/plain; version=0.0.4; charset=utf-8";
    /* one registry: the node's families, then the cluster's */
    node_metrics_view_t view = {&j->metrics, route_names, NROUTES + 1, &x};
    metrics_registry_t reg;
    metrics_registry_init(&reg);
    node_metrics_register(&reg, &view);
    if (j->cmetrics != NULL) cluster_metrics_register(j->cmetrics, n->storage, &reg);
    j->rc = metrics_registry_render(&reg, &j->result.body);
    metrics_registry_free(&reg);
    free(tc);
}

static void prepare_metrics(job_t *j)
{
    j->metrics = j->node->metrics; /* counters change on the loop thread only */
    j->http_stats = *http_server_stats(j->node->http);
    workq_stats(j->node->workq, &j->pool);
    j->ready = j->node->ready && !j->node->stopping;
    j->show_tenants = tenants_visible(j->node, j->req);
    if (j->node->cluster != NULL && cluster_metrics_take(j->node->cluster, &j->cmetrics) != ERR_OK)
        j->cmetrics = NULL; /* the cluster's counters are left out rather than fail /metrics */
}

static const job_kind_t metrics_job = {prepare_metrics, work_metrics, NULL};

/* Renders on the pool at once are capped (metrics-max-renders): the others
 * wait here in order, holding no thread, and start as one ends, so a flood
 * of scrapes never queues more than that many renders ahead of pushes in
 * the write lane. */
typedef struct metrics_wait {
    list_node_t link; /* in node.metrics_waiting */
    http_exchange_t *ex;
    const http_request_t *req;
} metrics_wait_t;

static void metrics_start(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    job_t *j = job_start(n, ex, r, &metrics_job, NULL);
    if (j == NULL) return; /* answered */
    j->metrics_slot = 1;
    n->metrics_renders++;
}

static void metrics_wait_gone(void *arg)
{
    metrics_wait_t *w = arg;
    list_remove(&w->link);
    errmsg_t em;
    errmsg_set(&em, ERR_UNAVAILABLE, "cancelled: the client closed the connection");
    routes_respond_cancelled(w->ex, &em);
    free(w);
}

/* A render ended (loop thread): the first ones waiting start. */
static void metrics_next(node_t *n)
{
    n->metrics_renders--;
    while (n->metrics_renders < n->cfg.metrics_max_renders && !list_empty(&n->metrics_waiting)) {
        metrics_wait_t *w = LIST_ENTRY(list_first(&n->metrics_waiting), metrics_wait_t, link);
        list_remove(&w->link);
        http_exchange_on_gone(w->ex, NULL, NULL);
        metrics_start(n, w->ex, w->req);
        free(w);
    }
}

static void route_metrics(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (n->metrics_renders < n->cfg.metrics_max_renders) {
        metrics_start(n, ex, r);
        return;
    }
    metrics_wait_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    w->ex = ex;
    w->req = r;
    list_push_back(&n->metrics_waiting, &w->link);
    http_exchange_on_gone(ex, metrics_wait_gone, w);
}

/* ---------- POST /ingest ---------- */

/* 1 when no series of the profile holds a value: a pprof without samples
 * (no series), a folded body without a stack line (one series of a bare
 * root), or samples that are all 0. Such a push (an SDK that sampled
 * nothing in its interval) is answered 200 and stores nothing, as
 * Pyroscope's distributor does (it drops samples of value 0, then a
 * profile left without any): an error would be retried for good, and a
 * stored 0-total profile lists a profile that holds nothing. One series
 * with a value keeps the push whole, all-zero sample types included. */
static int ingest_empty(const storage_profile_write_t *w)
{
    for (size_t i = 0; i < w->nseries; i++) {
        const calltree_t *t = w->series[i].tree;
        size_t n = t != NULL ? calltree_node_count(t) : 0;
        for (size_t k = 0; k < n; k++)
            if (calltree_self(t, (uint32_t)k) != 0) return 0;
        for (size_t k = 0; k < w->series[i].npairs; k++) /* stacks given by id */
            if (w->series[i].vals[k] != 0) return 0;
    }
    return 1;
}

/* Parses the push and stores it (the local replica; the remote ones
 * packed). ERR_CONFLICT: stacks given by id were refused (the node
 * generation moved since the parse), nothing written. */
static void parse_and_store(job_t *j, const ingest_request_t *ir)
{
    ingest_profile_t *prof = NULL;
    size_t held;
    j->rc = ingest_parse_held(ir, &j->node->cfg.ingest, &prof, &held, &j->em);
    if (j->rc != ERR_OK) {
        size_t trim = j->node->cfg.ingest_trim_refused_bytes;
        if (trim == 0 || held < trim) return;
        int64_t t0 = clock_mono_ns(&j->node->clock);
        alloc_release_free(); /* what it freed is not kept by this worker's arena */
        log_debug("ingest", "a refused push held %zu bytes; freed memory given back in %lld us",
                  held, (long long)((clock_mono_ns(&j->node->clock) - t0) / 1000));
        return;
    }
    const storage_profile_write_t *w = ingest_profile_write(prof);
    j->empty = ingest_empty(w);
    j->series = j->empty ? 0 : w->nseries;
    j->spans_dropped = ingest_profile_spans_dropped(prof);
    size_t lookups;
    ingest_profile_stack_hits(prof, &j->stack_hits, &lookups);
    if (j->empty) {
        /* nothing to store or replicate */
    } else if (j->view != NULL) { /* plan, write the local replica, pack the remote ones */
        j->rc = cluster_write_prepare(j->node->cluster, j->view, w, &j->rw, &j->written, &j->em);
        j->series = j->rw != NULL ? cluster_write_local_series(j->rw) : 0;
    } else
        j->rc = storage_write_profile(j->node->storage, w, &j->written, &j->em);
    ingest_profile_free(prof);
}

static void work_ingest(job_t *j)
{
    const http_request_t *r = j->req;
    ingest_request_t ir = {
        .tenant = j->tenant,
        .name = http_request_param(r, "name"),
        .from = http_request_param(r, "from"),
        .until = http_request_param(r, "until"),
        .format = http_request_param(r, "format"),
        .sample_rate = http_request_param(r, "sampleRate"),
        .spy_name = http_request_param(r, "spyName"),
        .units = http_request_param(r, "units"),
        .aggregation_type = http_request_param(r, "aggregationType"),
        .time = http_request_param(r, "time"),
        .content_type = http_request_header(r, "Content-Type"),
        .body = r->body,
        .body_len = r->body_len,
        .now_ns = j->now_ns,
        /* stacks by id only where no replica takes the trees */
        .stack_cache = j->view == NULL || cluster_view_alone(j->view) ? j->node->stack_cache : NULL,
    };
    parse_and_store(j, &ir);
    if (j->rc == ERR_CONFLICT && ir.stack_cache != NULL) { /* again, with trees only */
        ir.stack_cache = NULL;
        j->em = (errmsg_t){{0}};
        parse_and_store(j, &ir);
    }
}

static void prepare_ingest(job_t *j)
{
    if (j->node->cluster != NULL) j->view = cluster_view_acquire(j->node->cluster);
}

/* The replicas answered (or the deadline passed): answer the push. */
static void ingest_replicated(void *ctx, int rc, const errmsg_t *em)
{
    job_t *j = ctx;
    if (j->starting) { /* decided at once (e.g. a cluster of one): job_done answers */
        j->deferred = 0;
        j->rc = rc;
        if (rc != ERR_OK && em != NULL) j->em = *em;
        return;
    }
    if (rc != ERR_OK) {
        routes_respond_error(j->node, j->ex, rc, em);
    } else {
        http_response_t resp = {.status = 200};
        buf_init(&resp.body, 0);
        http_respond(j->ex, &resp);
    }
    cluster_view_release(j->view);
    query_result_free(&j->result);
    free(j);
}

static void finish_ingest(job_t *j)
{
    node_metrics_t *m = &j->node->metrics;
    m->ingest_profiles += !j->empty;
    m->ingest_empty += j->empty;
    m->ingest_bytes += j->empty ? 0 : j->req->body_len;
    m->ingest_series_written += j->written;
    m->ingest_series_duplicate += j->series - j->written;
    m->ingest_spans_dropped += j->spans_dropped;
    m->ingest_stack_hits += j->rc == ERR_OK && !j->empty ? j->stack_hits : 0;
    if (j->rw != NULL) {
        cluster_write_t *rw = j->rw;
        j->rw = NULL;
        j->deferred = 1;
        j->starting = 1;
        cluster_write_start(j->node->cluster, rw, ingest_replicated, j);
        if (j->deferred) j->starting = 0; /* j now belongs to ingest_replicated */
    }
}

static const job_kind_t ingest_job = {prepare_ingest, work_ingest, finish_ingest};

static void route_ingest(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    if (!routes_limit_ingest(n, ex, tenant, r->body_len)) return;
    errmsg_t em = {{0}};
    int rc = n->cluster != NULL ? cluster_write_admit(n->cluster, &em) : ERR_OK;
    if (rc != ERR_OK)
        routes_respond_error(n, ex, rc, &em); /* 503 + Retry-After: bounded in-flight writes */
    else
        job_start(n, ex, r, &ingest_job, tenant);
}

/* ---------- GET /pyroscope/render, label-names, label-values ---------- */

static void query_params_of(const http_request_t *r, query_params_t *p)
{
    p->query = http_request_param(r, "query");
    p->from = http_request_param(r, "from");
    p->until = http_request_param(r, "until");
    p->max_nodes = http_request_param(r, "maxNodes");
    if (p->max_nodes == NULL) p->max_nodes = http_request_param(r, "max-nodes");
    p->format = http_request_param(r, "format");
    p->label = http_request_param(r, "label");
    p->match = http_request_param(r, "match");
    if (p->match == NULL) p->match = http_request_param(r, "match[]");
    p->limit = http_request_param(r, "limit");
    p->by = http_request_param(r, "by");
    p->search = http_request_param(r, "search");
}

/* Queries are scatter-gathered over the cluster (node/cluster/cluster.h): a single
 * node is a cluster of one and answers through the same path. */
typedef struct query_req {
    node_t *node;
    http_exchange_t *ex;
    int cancelled; /* the client went away */
} query_req_t;

/* A streamed answer: the query's stream and the bytes it keeps on
 * query-memory-bytes until its last byte is written or its client goes. */
typedef struct query_body {
    node_t *node;
    query_stream_t *stream;
    size_t held;
    char *slot; /* the tenant whose query slot it holds until released, or NULL */
    void (*done)(void *arg);
    void *done_arg;
} query_body_t;

static int query_body_produce(void *arg, buf_t *out, size_t want, int *done)
{
    query_body_t *b = arg;
    return query_stream_next(b->stream, out, want, done);
}

static void query_body_release(void *arg, int completed)
{
    query_body_t *b = arg;
    (void)completed;
    query_stream_free(b->stream);
    cluster_query_release(b->node->cluster, b->held);
    if (b->slot != NULL) routes_limit_query_done(b->node, b->slot);
    if (b->done != NULL) b->done(b->done_arg);
    free(b->slot);
    free(b);
}

void routes_respond_stream(node_t *n, http_exchange_t *ex, http_response_t *resp,
                           query_stream_t *stream, size_t held, void (*done)(void *arg), void *arg)
{
    query_body_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        query_stream_free(stream);
        cluster_query_release(n->cluster, held);
        if (done != NULL) done(arg);
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    *b = (query_body_t){n, stream, held, NULL, done, arg};
    /* the tenant's query slot (tenant-max-queries) is held until the last
     * byte is sent, not given back when the response starts */
    int tag = http_exchange_tag(ex);
    if (tag & ROUTES_TAG_QUERY_SLOT) {
        b->slot = strdup(http_exchange_principal(ex));
        if (b->slot == NULL) {
            query_body_release(b, 0);
            routes_respond_error(n, ex, ERR_NOMEM, NULL);
            return;
        }
        http_exchange_set_tag(ex, tag & ~ROUTES_TAG_QUERY_SLOT);
    }
    uint64_t length = query_stream_length(stream);
    if (length == QUERY_STREAM_LENGTH_UNKNOWN) length = HTTP_LENGTH_UNKNOWN; /* chunked */
    http_body_producer_t p = {length, query_body_produce, query_body_release, b};
    http_respond_stream(ex, resp, &p);
}

static void query_answered(void *arg, cluster_answer_t *a)
{
    query_req_t *q = arg;
    if (q->cancelled) { /* not written: the connection closes */
        routes_respond_cancelled(q->ex, &a->em);
        free(q);
        return;
    }
    if (a->rc != ERR_OK) {
        routes_respond_error(q->node, q->ex, routes_query_error(a->rc), &a->em);
        free(q);
        return;
    }
    q->node->metrics.queries++;
    char extra[CLUSTER_PARTIAL_HEADER_MAX + CLUSTER_TIMING_HEADER_MAX + 64];
    int streamed = a->result.stream != NULL;
    http_response_t resp = {.status = 200,
                            .content_type =
                                a->result.body.len || streamed ? a->result.content_type : NULL,
                            .content_encoding = a->result.content_encoding,
                            .body = a->result.body};
    size_t at = 0;
    if (a->partial_header[0] != '\0') /* never silently short */
        at += (size_t)snprintf(extra, sizeof extra, "X-Flamedb-Partial: %s\r\n", a->partial_header);
    if (a->server_timing[0] != '\0')
        snprintf(extra + at, sizeof extra - at, "Server-Timing: %s\r\n", a->server_timing);
    if (a->partial_header[0] != '\0' || a->server_timing[0] != '\0') resp.extra_headers = extra;
    buf_init(&a->result.body, 0);
    if (streamed) {
        query_stream_t *stream = a->result.stream;
        a->result.stream = NULL; /* its bytes given back when it is released */
        routes_respond_stream(q->node, q->ex, &resp, stream, a->stream_held, NULL, NULL);
    } else {
        http_respond(q->ex, &resp);
    }
    free(q);
}

/* The client closed the connection: the query is cancelled (and answered,
 * into the void, from inside cluster_query_cancel). */
static void query_gone(void *arg)
{
    query_req_t *q = arg;
    q->cancelled = 1;
    cluster_query_cancel(q->node->cluster, q);
}

/* Starts q's query; a client that goes away while it runs cancels it. */
static void run_query(query_req_t *q, query_kind_t kind, const char *tenant,
                      const query_params_t *p)
{
    http_exchange_on_gone(q->ex, query_gone, q);
    cluster_query(q->node->cluster, kind, tenant, p, clock_wall_ms(&q->node->clock), query_answered,
                  q);
}

/* Starts a query of the request's parameters, with format (when not NULL:
 * an endpoint that is a render in one fixed format) and id (GET
 * /api/profiles/ID) replacing the request's own; stream: a large folded,
 * SVG, JSON or pprof answer may be sent as it is written
 * (query-stream-bytes). */
static void start_query_with(node_t *n, http_exchange_t *ex, const http_request_t *r,
                             query_kind_t kind, const char *format, const char *id, int stream)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    query_req_t *q = malloc(sizeof *q);
    if (q == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    *q = (query_req_t){.node = n, .ex = ex};
    query_params_t p = {0};
    query_params_of(r, &p);
    if (format != NULL) p.format = format;
    if (id != NULL) p.id = id;
    p.stream = stream;
    run_query(q, kind, tenant, &p);
}

static void start_query_as(node_t *n, http_exchange_t *ex, const http_request_t *r,
                           query_kind_t kind, const char *format)
{
    start_query_with(n, ex, r, kind, format, NULL, 0);
}

static void start_query(node_t *n, http_exchange_t *ex, const http_request_t *r, query_kind_t kind)
{
    start_query_as(n, ex, r, kind, NULL);
}

static void route_render(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *group_by = http_request_param(r, "groupBy");
    if (group_by == NULL || group_by[0] == 0) {
        start_query_with(n, ex, r, QUERY_KIND_RENDER, NULL, NULL, 1);
        return;
    }
    query_params_t p = {0};
    query_params_of(r, &p);
    routes_render_groups(n, ex, r, &p, group_by);
}

/* A long list of names or values is sent as it is written
 * (query-stream-bytes), from the values merged, never a copy of them. */
static void route_label_names(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query_with(n, ex, r, QUERY_KIND_LABEL_NAMES, NULL, NULL, 1);
}

static void route_label_values(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query_with(n, ex, r, QUERY_KIND_LABEL_VALUES, NULL, NULL, 1);
}

static void route_label_shares(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query(n, ex, r, QUERY_KIND_LABEL_SHARES);
}

/* A long listing is sent as it is written (query-stream-bytes). */
static void route_profiles(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query_with(n, ex, r, QUERY_KIND_PROFILES, NULL, NULL, 1);
}

/* GET /api/profiles/ID: one stored profile, found through the ring from
 * the token its id carries (query/profile.c). */
static void route_profile(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query_with(n, ex, r, QUERY_KIND_PROFILE, NULL, r->path + strlen("/api/profiles/"), 1);
}

/* GET /api/top: the render of the selection, answered as its top functions
 * (computed from the untruncated tree; query/top.c). */
static void route_top(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    start_query_as(n, ex, r, QUERY_KIND_RENDER, "top");
}

/* ---------- GET /cluster/status ---------- */

/* Membership lives on the loop thread and the document is small: answered
 * here, no job. */
static void route_cluster_status(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (!routes_only_params(n, ex, r, NULL)) return;
    http_response_t resp = {.status = 200, .content_type = "application/json"};
    buf_init(&resp.body, 16 * 1024 * 1024);
    int rc = cluster_status_json(n->cluster, &resp.body);
    if (rc != ERR_OK) {
        buf_free(&resp.body);
        errmsg_t em;
        errmsg_set(&em, rc, "cannot render the cluster status");
        routes_respond_error(n, ex, rc, &em);
        return;
    }
    http_respond(ex, &resp);
}
