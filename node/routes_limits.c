/* routes_limits.c — per-tenant limits of a node (node_int.h): the ingest rate
 * (a token bucket of body bytes per tenant), the queries a tenant may run at
 * once, and the longest time range a query may ask for.
 *
 * The state lives on the loop thread, per node (a cluster of N nodes lets a
 * tenant push N times the rate through N nodes; docs/operations.md says so).
 * Only tenants with state are kept: a tenant whose bucket is full and that
 * runs no query is dropped at the next sweep, so the table is bounded by the
 * tenants active within the last burst / rate seconds, not by every tenant
 * name ever sent.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "node/node_int.h"

typedef struct tenant_state {
    char name[STORAGE_TENANT_MAX + 1];
    double tokens; /* bytes that may be pushed now */
    uint64_t refilled_ms;
    size_t queries; /* running */
} tenant_state_t;

struct routes_limits {
    u64map_t index; /* hash of the name -> position in t */
    tenant_state_t *t;
    size_t n, cap, sweep_at;
};

void routes_limits_free(routes_limits_t *l)
{
    if (l == NULL) return;
    u64map_free(&l->index);
    free(l->t);
    free(l);
}

static double burst_of(const node_t *n)
{
    size_t b = n->cfg.tenant_ingest_burst;
    if (b == 0)
        b = n->cfg.tenant_ingest_rate > n->cfg.http.max_body_bytes ? n->cfg.tenant_ingest_rate
                                                                   : n->cfg.http.max_body_bytes;
    return (double)b;
}

static void refill(const node_t *n, tenant_state_t *t, uint64_t now)
{
    double burst = burst_of(n);
    if (now > t->refilled_ms)
        t->tokens += (double)(now - t->refilled_ms) * (double)n->cfg.tenant_ingest_rate / 1000.0;
    if (t->tokens > burst) t->tokens = burst;
    t->refilled_ms = now;
}

/* Drops the tenants without state and rebuilds the index (amortised: runs
 * when the table doubled since the last sweep). */
static int sweep(node_t *n, routes_limits_t *l)
{
    uint64_t now = uv_now(&n->loop);
    double burst = burst_of(n);
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++) {
        refill(n, &l->t[i], now);
        if (l->t[i].queries == 0 && (n->cfg.tenant_ingest_rate == 0 || l->t[i].tokens >= burst))
            continue;
        l->t[kept++] = l->t[i];
    }
    l->n = kept;
    u64map_clear(&l->index);
    for (size_t i = 0; i < l->n; i++) {
        uint64_t h = hash_bytes64(l->t[i].name, strlen(l->t[i].name));
        if (u64map_put(&l->index, h, (uint32_t)i) != ERR_OK) return ERR_NOMEM;
    }
    l->sweep_at = 2 * l->n > 64 ? 2 * l->n : 64;
    return ERR_OK;
}

/* The state of tenant, created (with a full bucket) when new; NULL on ERR_NOMEM. */
static tenant_state_t *state_of(node_t *n, const char *tenant)
{
    routes_limits_t *l = n->limits;
    if (l == NULL) {
        l = n->limits = calloc(1, sizeof *l);
        if (l == NULL) return NULL;
        l->sweep_at = 64;
    }
    uint64_t h = hash_bytes64(tenant, strlen(tenant));
    uint32_t i;
    /* a 64-bit hash names a tenant: the name is checked all the same */
    if (u64map_get(&l->index, h, &i) && strcmp(l->t[i].name, tenant) == 0) return &l->t[i];
    if (l->n >= l->sweep_at && sweep(n, l) != ERR_OK) return NULL;
    if (GROW(l->t, l->cap, l->n + 1, GROW_UNLIMITED) != ERR_OK) return NULL;
    tenant_state_t *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", tenant);
    t->tokens = burst_of(n);
    t->refilled_ms = uv_now(&n->loop);
    if (u64map_put(&l->index, h, (uint32_t)l->n) != ERR_OK) return NULL;
    return &l->t[l->n++];
}

static void respond_429(node_t *n, http_exchange_t *ex, uint64_t retry_s, const errmsg_t *em)
{
    char extra[64];
    snprintf(extra, sizeof extra, "Retry-After: %" PRIu64 "\r\n", retry_s);
    node_metrics_error(&n->metrics, ERR_LIMIT);
    http_respond_error(ex, 0, ERR_LIMIT, em, extra);
}

int routes_limit_ingest(node_t *n, http_exchange_t *ex, const char *tenant, size_t bytes)
{
    if (n->cfg.tenant_ingest_rate == 0) return 1;
    tenant_state_t *t = state_of(n, tenant);
    if (t == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return 0;
    }
    refill(n, t, uv_now(&n->loop));
    errmsg_t em;
    if ((double)bytes > burst_of(n)) {
        errmsg_set(&em, ERR_TOO_LARGE,
                   "a push of %zu bytes is larger than tenant-ingest-burst (%.0f bytes)", bytes,
                   burst_of(n));
        routes_respond_error(n, ex, ERR_TOO_LARGE, &em);
        return 0;
    }
    if (t->tokens < (double)bytes) {
        double wait_s = ((double)bytes - t->tokens) / (double)n->cfg.tenant_ingest_rate;
        errmsg_set(&em, ERR_LIMIT,
                   "tenant '%s' pushes faster than tenant-ingest-rate (%zu bytes/s); retry later",
                   tenant, n->cfg.tenant_ingest_rate);
        respond_429(n, ex, (uint64_t)wait_s + 1, &em);
        return 0;
    }
    t->tokens -= (double)bytes;
    return 1;
}

/* Checks one from/until pair against max-query-range. */
static int check_range(node_t *n, const char *from, const char *until, errmsg_t *em)
{
    query_params_t p = {.from = from, .until = until};
    int64_t f, u;
    if (query_time_range(&p, clock_wall_ms(&n->clock), &f, &u, em) != ERR_OK)
        return ERR_OK; /* the query itself answers the bad parameter */
    if ((uint64_t)(u - f) > n->cfg.max_query_range_ms)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "the query covers %" PRId64 " s, more than max-query-range (%" PRIu64
                          " s)",
                          (u - f) / 1000, n->cfg.max_query_range_ms / 1000);
    return ERR_OK;
}

static int check_ranges(node_t *n, const http_request_t *r, errmsg_t *em)
{
    static const char *const pairs[][2] = {
        {"leftFrom", "leftUntil"}, {"rightFrom", "rightUntil"}, {"from", "until"}};
    int diff = http_request_param(r, "leftQuery") != NULL;
    for (size_t i = diff ? 0 : 2; i < 3; i++) {
        int rc = check_range(n, http_request_param(r, pairs[i][0]),
                             http_request_param(r, pairs[i][1]), em);
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

int routes_limit_query(node_t *n, http_exchange_t *ex, const http_request_t *r, const char *tenant)
{
    errmsg_t em;
    if (n->cfg.max_query_range_ms > 0 && check_ranges(n, r, &em) != ERR_OK) {
        routes_respond_error(n, ex, ERR_INVALID_ARGUMENT, &em);
        return 0;
    }
    if (n->cfg.tenant_max_queries == 0) return 1;
    tenant_state_t *t = state_of(n, tenant);
    if (t == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return 0;
    }
    if (t->queries >= n->cfg.tenant_max_queries) {
        errmsg_set(&em, ERR_LIMIT,
                   "tenant '%s' runs %zu queries on this node already (tenant-max-queries)", tenant,
                   t->queries);
        respond_429(n, ex, 1, &em);
        return 0;
    }
    t->queries++;
    return 2;
}

void routes_limit_query_done(node_t *n, const char *tenant)
{
    if (n->limits == NULL) return;
    uint64_t h = hash_bytes64(tenant, strlen(tenant));
    uint32_t i;
    if (u64map_get(&n->limits->index, h, &i) && strcmp(n->limits->t[i].name, tenant) == 0 &&
        n->limits->t[i].queries > 0)
        n->limits->t[i].queries--;
}
