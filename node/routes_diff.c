/* routes_diff.c — GET /pyroscope/render-diff: two renders through the
 * cluster, joined into one answer (docs/api.md "render-diff").
 *
 * Each side is an ordinary render (routes_fanout runs them) asking for the
 * merged, untruncated tree instead of an encoding, so each side is exact
 * from every node and says when it is partial; one pool job joins them
 * (query_diff_render).
 */
#include <stdlib.h>

#include "node/node_int.h"
#include "query/query.h"

typedef struct diff_ctx {
    query_diff_params_t params; /* strings borrowed from the request until it is answered */
    const query_limits_t *lim;
    cluster_t *cluster;
    size_t limit;                 /* query-memory-bytes (0: none) */
    query_report_charge_t charge; /* the join's union and answer: query-memory-bytes */
    size_t taken;                 /* by the join now (pool thread) */
    size_t sides;                 /* the sides' answers, held by the fanout meanwhile */
    size_t held;                  /* the answer, taken until the request is freed (sent) */
} diff_ctx_t;

/* The join's union and answer count in query-memory-bytes (pool thread):
 * refused, ERR_TOO_LARGE when this request alone (the join, the two sides'
 * answers it reads and n more) passes the limit, so it never could fit,
 * else ERR_UNAVAILABLE (other queries hold the room: retry later). */
static int diff_take(void *ctx, size_t n)
{
    diff_ctx_t *d = ctx;
    if (cluster_query_try_hold(d->cluster, n) == 0) {
        d->taken += n;
        return 0;
    }
    size_t alone = d->taken + d->sides;
    if (d->limit != 0 && (n > d->limit || alone > d->limit - n)) return ERR_TOO_LARGE;
    return ERR_UNAVAILABLE;
}

static void diff_give(void *ctx, size_t n)
{
    diff_ctx_t *d = ctx;
    d->taken -= n < d->taken ? n : d->taken;
    cluster_query_release(d->cluster, n);
}

/* The answer (or what a streamed one is written from) counts until it is
 * sent. */
static void diff_free(void *ctx)
{
    diff_ctx_t *d = ctx;
    cluster_query_release(d->cluster, d->held);
    free(d);
}

static const char *param_of(const void *req, const char *name)
{
    return http_request_param(req, name);
}

static int join_diff(void *ctx, query_result_t *ans, const int *partial, query_result_t *out,
                     errmsg_t *em)
{
    diff_ctx_t *d = ctx;
    const buf_t *body[2] = {&ans[0].body, &ans[1].body};
    d->sides = body[0]->len + body[1]->len;
    return query_diff_render_charged(
        &d->params, d->lim, body[0]->data, body[0]->len, body[1]->data, body[1]->len,
        partial[0] || partial[1] ? "\"partial\":true" : NULL, &d->charge, &d->held, out, em);
}

void routes_render_diff(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    static const char *const names[] = {"left", "right"};
    static const char *const prefix[] = {"left side: ", "right side: "};
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    diff_ctx_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    d->lim = &n->cfg.query;
    d->cluster = n->cluster;
    d->limit = n->cfg.query_memory_bytes;
    d->charge = (query_report_charge_t){diff_take, diff_give, d};
    query_diff_params_read(&d->params, param_of, r);
    d->params.stream = 1; /* a large folded answer is sent as it is written */
    errmsg_t em = {{0}};
    int rc = query_diff_check(&d->params, &n->cfg.query, &em);
    if (rc != 0) {
        routes_respond_error(n, ex, rc, &em);
        free(d);
        return;
    }
    routes_fanout_query_t q[2] = {{QUERY_KIND_RENDER, d->params.left, 0},
                                  {QUERY_KIND_RENDER, d->params.right, 1}};
    routes_fanout_spec_t spec = {names,
                                 prefix,
                                 2,
                                 0,
                                 join_diff,
                                 d,
                                 diff_free,
                                 n->cfg.combined_timeout_ms,
                                 "combined-query-timeout"};
    routes_fanout(n, ex, tenant, q, 2, &spec);
}
