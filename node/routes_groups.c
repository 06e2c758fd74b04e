/* routes_groups.c — GET /pyroscope/render?groupBy=LABEL: the flame graph
 * plus one timeline per value of LABEL (Pyroscope's "groups"; docs/api.md).
 *
 * Two queries go through the cluster at once (routes_fanout): the render
 * itself and the label shares of LABEL over the same query/from/until
 * answered as the "groups" member (query_params_t.groups). Each is exact
 * from every node and says when it is partial; one pool job makes the
 * answer a stream of the render (itself a stream when large) and the
 * member (query_render_groups_open), so neither is copied and both stay
 * counted in query-memory-bytes until the last byte is sent.
 */
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "query/query.h"

typedef struct groups_ctx {
    const query_limits_t *lim;
} groups_ctx_t;

static void groups_free(void *ctx)
{
    free(ctx);
}

/* The answer is a stream of the render's bytes and the groups member's,
 * both taken (routes_fanout keeps them counted until the last byte is
 * sent). */
static int join_groups(void *ctx, query_result_t *ans, const int *partial, query_result_t *out,
                       errmsg_t *em)
{
    groups_ctx_t *c = ctx;
    return query_render_groups_open(&ans[0], &ans[1].body, !partial[0] && partial[1], c->lim, out,
                                    em);
}

void routes_render_groups(node_t *n, http_exchange_t *ex, const http_request_t *r,
                          const query_params_t *render, const char *label)
{
    static const char *const names[] = {"render", "groupBy"};
    /* the shares query's "label" is the request's groupBy */
    static const char *const prefix[] = {"", "groupBy: "};
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    if (render->format != NULL && render->format[0] != 0 && strcmp(render->format, "json") != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_INVALID_ARGUMENT,
                   "parameter 'groupBy': only with format=json (the groups are timelines)");
        routes_respond_error(n, ex, ERR_INVALID_ARGUMENT, &em);
        return;
    }
    groups_ctx_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    c->lim = &n->cfg.query;
    query_params_t shares = {
        .query = render->query, .from = render->from, .until = render->until, .label = label};
    shares.groups = 1;
    query_params_t streamed = *render; /* a large render is taken as a stream */
    streamed.stream = 1;
    routes_fanout_query_t q[2] = {{QUERY_KIND_RENDER, streamed, 0},
                                  {QUERY_KIND_LABEL_SHARES, shares, 1}};
    routes_fanout_spec_t spec = {names,
                                 prefix,
                                 2,
                                 0,
                                 join_groups,
                                 c,
                                 groups_free,
                                 n->cfg.combined_timeout_ms,
                                 "combined-query-timeout"};
    routes_fanout(n, ex, tenant, q, 2, &spec);
}
