/* node.c — a node's lifetime: open, serve, drain, close (see node.h). */
#define _GNU_SOURCE /* setenv */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "node/node_int.h"
#include "node/placement.h"

static void on_drained(void *arg);

static void begin_stop(node_t *n, const char *why)
{
    if (n->stopping) return;
    n->stopping = 1;
    log_info("node", "stopping (%s): finishing in-flight requests (at most %llu ms)", why,
             (unsigned long long)n->cfg.shutdown_timeout_ms);
    if (n->cluster != NULL) cluster_stop_repair(n->cluster); /* its callers wait no longer */
    http_server_drain(n->http, n->cfg.shutdown_timeout_ms, on_drained, n);
}

static void on_signal(uv_signal_t *s, int signum)
{
    begin_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* SIGHUP: re-read auth-file. A bad file keeps the table in force (a typo
 * must not open the node, nor lock everyone out); connections stay up. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    node_t *n = s->data;
    if (n->cfg.auth_file[0] == '\0') {
        log_info("node", "SIGHUP: no auth-file to re-read");
        return;
    }
    node_auth_t *fresh = NULL;
    errmsg_t em = {{0}};
    if (node_auth_load(n->cfg.auth_file, &fresh, &em) != ERR_OK) {
        log_error("node", "SIGHUP: %s; keeping the %zu tokens loaded before", em.text,
                  node_auth_count(n->auth));
        return;
    }
    node_auth_free(n->auth);
    n->auth = fresh;
    log_info("node", "SIGHUP: auth-file re-read: %zu tokens", node_auth_count(fresh));
}

static void on_stop_async(uv_async_t *a)
{
    begin_stop(a->data, "stop requested");
}

static void cluster_closed(void *arg)
{
    (void)arg;
}

/* Every connection is closed and no job is left: close the cluster transport
 * (in-flight requests may have needed it until now) and let the loop end. */
static void on_drained(void *arg)
{
    node_t *n = arg;
    if (n->cluster != NULL) /* answers queries, stores the hints of writes in flight */
        cluster_close(n->cluster, cluster_closed, n);
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
    uv_close((uv_handle_t *)&n->sighup, NULL);
    uv_close((uv_handle_t *)&n->stop_async, NULL);
}

/* The cluster view (a cluster of one without --cluster-listen) and, in a
 * cluster, the transport and gossip. */
static int open_cluster(node_t *n, errmsg_t *em)
{
    char http_addr[NODE_HOST_MAX + 32];
    snprintf(http_addr, sizeof http_addr, "http://%s:%d", n->cfg.http_host, n->port);
    const node_config_t *cfg = &n->cfg;
    cluster_inputs_t in = {
        .data_dir = cfg->data_dir,
        .http_addr = http_addr,
        .shards = cfg->ingest.shards,
        .query = cfg->query,
        .max_tree_nodes = cfg->ingest.max_tree_nodes,
        /* packed writes share the request-body budget: at most half of it */
        .max_inflight_bytes = cfg->http.max_buffered_bytes / 2,
        .query_memory_bytes = cfg->query_memory_bytes,
        .inflight = cfg->ingest.inflight,
        .seen_retention_seconds = cfg->storage.seen_retention_seconds,
        .max_future_seconds = cfg->ingest.max_future_seconds,
        .profile_retention_seconds = cfg->storage.profile_retention_seconds,
        .clock = &n->clock,
        .workq = n->workq,
    };
    int rc = cluster_open(&n->loop, n->storage, &cfg->cluster, &in, &n->cluster, em);
    return rc == ERR_OK ? cluster_start(n->cluster, em) : rc;
}

/* The placement policy the data directory records (placement.h), logged. */
static int settle_placement(node_t *n, errmsg_t *em)
{
    int recorded = 0;
    ring_shard_policy_t *p = &n->cfg.ingest.shards;
    int rc = node_placement_settle(n->storage, n->cfg.data_dir, n->cfg.placement_given, p,
                                   &recorded, em);
    if (rc != ERR_OK) return rc;
    buf_t t;
    buf_init(&t, BUF_UNLIMITED);
    if (ring_shard_policy_format(p, &t) == 0)
        log_info("node", "placement %s (%s)", (const char *)t.data,
                 recorded ? "recorded in the data directory" : "recorded now");
    buf_free(&t);
    return ERR_OK;
}

/* The report cache's bytes count in query-memory-bytes. */
static int report_cache_take(void *cluster, size_t n)
{
    return cluster_query_try_hold(cluster, n); /* from pool threads */
}

static void report_cache_give(void *cluster, size_t n)
{
    cluster_query_release(cluster, n);
}

/* Raises the soft open-file limit to the hard one and checks that HTTP
 * connections (max-connections) leave fd-reserve descriptors to the rest:
 * connections that took RocksDB's next write-ahead log would fail every
 * write until a restart. */
/* Descriptors of fd-reserve kept for what is not an SST file (write-ahead
 * logs, MANIFEST, LOG, the cluster transport, the rest): a quarter. */
static size_t fd_others(const node_config_t *cfg)
{
    return cfg->fd_reserve / 4;
}

/* RocksDB's SST files open at once (max-open-files): 0 derives it from
 * what the open-file limit leaves besides max-connections and the other
 * descriptors; one set so must fit there. */
static int fit_open_files(node_config_t *cfg, rlim_t limit, errmsg_t *em)
{
    size_t room = (size_t)limit - cfg->http.max_connections - fd_others(cfg);
    if (cfg->storage.max_open_files == 0) {
        size_t n = room < 20 ? 20 : room > INT_MAX ? INT_MAX : room;
        cfg->storage.max_open_files = (int)n;
        return ERR_OK;
    }
    if ((size_t)cfg->storage.max_open_files > room)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "max-open-files (%d) plus max-connections (%zu) plus a quarter of "
                          "fd-reserve (%zu) is more than the open-file limit (%llu; ulimit -n, "
                          "LimitNOFILE): raise the limit or lower max-open-files",
                          cfg->storage.max_open_files, cfg->http.max_connections, fd_others(cfg),
                          (unsigned long long)limit);
    return ERR_OK;
}

static int fit_fd_limit(node_config_t *cfg, errmsg_t *em)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) { /* nothing to check against */
        if (cfg->storage.max_open_files == 0) cfg->storage.max_open_files = -1;
        return ERR_OK;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    if (rl.rlim_cur == RLIM_INFINITY) {
        if (cfg->storage.max_open_files == 0) cfg->storage.max_open_files = -1; /* no bound */
        return ERR_OK;
    }
    size_t need = cfg->http.max_connections + cfg->fd_reserve;
    if ((rlim_t)need > rl.rlim_cur)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "max-connections (%zu) plus fd-reserve (%zu) is more than the open-file "
                          "limit (%llu; ulimit -n, LimitNOFILE): raise the limit or lower "
                          "max-connections",
                          cfg->http.max_connections, cfg->fd_reserve,
                          (unsigned long long)rl.rlim_cur);
    return fit_open_files(cfg, rl.rlim_cur, em);
}

static int open_parts(node_t *n, errmsg_t *em)
{
    const node_config_t *cfg = &n->cfg;
    size_t caps[WORKQ_NLANES] = {
        [WORKQ_WRITE] = cfg->max_write_jobs, [WORKQ_QUERY] = cfg->max_query_jobs};
    int frc = fit_fd_limit(&n->cfg, em);
    if (frc != ERR_OK) return frc;
    if (workq_new(&n->loop, cfg->worker_threads, caps, &n->clock, &n->workq) != 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    if (assist_new(cfg->query_assist_threads, &n->assist) != 0)
        return errmsg_set(em, ERR_NOMEM, "cannot start %d query-assist-threads",
                          cfg->query_assist_threads);
    n->cfg.query.assist = n->assist;   /* before the cluster copies the query limits */
    if (n->cfg.auth_file[0] != '\0') { /* before anything listens: never open by accident */
        int rc = node_auth_load(n->cfg.auth_file, &n->auth, em);
        if (rc != ERR_OK) return rc;
        log_info("node", "HTTP authentication on: %zu tokens from %s", node_auth_count(n->auth),
                 n->cfg.auth_file);
    }
    /* the stack cache's and the shard unions' bytes come out of the node tables' */
    size_t stack =
        storage_options_share_node_cache(&n->cfg.storage, n->cfg.ingest_stack_cache_bytes);
    int rc = storage_open(&n->cfg.storage, &n->storage, em);
    if (rc != ERR_OK) return rc;
    rc = settle_placement(n, em); /* before anything places a series */
    if (rc != ERR_OK) return rc;
    if (ingest_stack_cache_new(n->storage, stack, &n->stack_cache) != 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    rc = http_server_new(&n->loop, &n->cfg.http, routes_handle, routes_observe, n, &n->http);
    if (rc != ERR_OK) return errmsg_set(em, rc, "cannot create the HTTP server");
    http_server_set_head_check(n->http, routes_head_check);
    rc = http_server_listen(n->http, n->cfg.http_host, n->cfg.http_port, em);
    if (rc != ERR_OK) return rc;
    n->port = http_server_port(n->http);
    rc = open_cluster(n, em);
    if (rc != ERR_OK) return rc;
    query_report_charge_t charge = {report_cache_take, report_cache_give, n->cluster};
    size_t most = cfg->query_memory_bytes / 4; /* queries keep at least three quarters */
    n->report_cache = query_report_cache_new(
        cfg->report_cache_bytes < most ? cfg->report_cache_bytes : most, &charge);
    return n->report_cache != NULL ? ERR_OK : errmsg_set(em, ERR_NOMEM, "out of memory");
}

int node_new(const node_config_t *cfg, node_t **out, errmsg_t *em)
{
    node_t *n = calloc(1, sizeof *n);
    if (n == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    n->cfg = *cfg;
    list_init(&n->metrics_waiting);
    node_config_fix_pointers(&n->cfg);
    alloc_budget_init(&n->ingest_inflight, cfg->ingest_inflight_bytes);
    n->cfg.storage.count_tenant_series = cfg->metrics_max_tenants > 0;
    n->cfg.ingest.inflight = &n->ingest_inflight;
    n->clock = clock_real();
    n->start_ns = clock_wall_ns(&n->clock);
    n->port = -1;
    if (uv_loop_init(&n->loop) != 0) {
        free(n);
        return errmsg_set(em, ERR_INTERNAL, "cannot create an event loop");
    }
    int rc = open_parts(n, em);
    if (rc != ERR_OK) {
        node_free(n);
        return rc;
    }
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    uv_signal_init(&n->loop, &n->sighup);
    uv_async_init(&n->loop, &n->stop_async, on_stop_async);
    n->sigterm.data = n->sigint.data = n->sighup.data = n->stop_async.data = n;
    n->ready = 1;
    *out = n;
    return ERR_OK;
}

int node_port(const node_t *n)
{
    return n->port;
}

int node_run(node_t *n)
{
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sighup, on_sighup, SIGHUP);
    log_info("node", "listening on http://%s:%d (data in %s)", n->cfg.http_host, n->port,
             n->cfg.data_dir);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    n->ready = 0;
    storage_close(n->storage);
    n->storage = NULL;
    log_info("node", "stopped cleanly");
    return 0;
}

void node_stop(node_t *n)
{
    uv_async_send(&n->stop_async);
}

static void drained_for_free(void *arg)
{
    (void)arg;
}

void node_free(node_t *n)
{
    if (n == NULL) return;
    if (n->http != NULL && !n->stopping) {
        /* never ran (or failed to start): close the server's handles */
        n->stopping = 1;
        http_server_drain(n->http, 0, drained_for_free, NULL);
    }
    if (n->cluster != NULL)
        cluster_close(n->cluster, drained_for_free, NULL); /* no-op if already closing */
    if (n->ready && !uv_is_closing((uv_handle_t *)&n->stop_async)) {
        uv_close((uv_handle_t *)&n->sigterm, NULL);
        uv_close((uv_handle_t *)&n->sigint, NULL);
        uv_close((uv_handle_t *)&n->sighup, NULL);
        uv_close((uv_handle_t *)&n->stop_async, NULL);
    }
    uv_run(&n->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&n->loop) != 0) log_warn("node", "event loop closed with handles still open");
    http_server_free(n->http);
    query_report_cache_free(n->report_cache); /* gives its bytes back to the cluster's budget */
    cluster_free(n->cluster);
    ingest_stack_cache_free(n->stack_cache);
    storage_close(n->storage);
    workq_free(n->workq);
    assist_free(n->assist);
    node_auth_free(n->auth);
    routes_limits_free(n->limits);
    free(n);
}
