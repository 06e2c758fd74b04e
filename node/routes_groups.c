/* routes_groups.c — GET /pyroscope/render?groupBy=LABEL: the flame graph
 * plus one timeline per value of LABEL (Pyroscope's "groups"; docs/api.md).
 *
 * Two queries go through the cluster at once: the render itself and the
 * label shares of LABEL over the same query/from/until answered as the
 * "groups" member (query_params_t.groups). Each is exact from every node and
 * says when it is partial. Once both came back (on the loop), one pool job
 * adds the member to the render's JSON (query_render_add_groups).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "query/query.h"

#define PARTS 2

typedef struct groups_req groups_req_t;

typedef struct part {
    groups_req_t *g;
    int rc;
    errmsg_t em;
    buf_t body;
    char partial[CLUSTER_PARTIAL_HEADER_MAX];
} part_t;

struct groups_req {
    node_t *node;
    http_exchange_t *ex;
    part_t part[PARTS]; /* the render, the groups */
    int pending;
    uv_work_t work;
    int rc;
    errmsg_t em;
    query_result_t result;
};

static const char *part_name[PARTS] = {"render", "groupBy"};

static void groups_free(groups_req_t *g)
{
    for (int i = 0; i < PARTS; i++)
        buf_free(&g->part[i].body);
    query_result_free(&g->result);
    free(g);
}

/* X-Flamedb-Partial of the answer: each partial query's own header. */
static int partial_header(const groups_req_t *g, char *out, size_t n)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < PARTS; i++)
        if (g->part[i].partial[0] != 0 && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s: %s", len ? "; " : "", part_name[i],
                                    g->part[i].partial);
    return len > 0;
}

static void join_work(uv_work_t *w)
{
    groups_req_t *g = w->data;
    const buf_t *r = &g->part[0].body, *gr = &g->part[1].body;
    int only_groups_partial = g->part[0].partial[0] == 0 && g->part[1].partial[0] != 0;
    g->rc = query_render_add_groups(r->data, r->len, gr->data, gr->len, only_groups_partial,
                                    &g->node->cfg.query, &g->result, &g->em);
}

static void join_done(uv_work_t *w, int status)
{
    groups_req_t *g = w->data;
    if (status != 0 && g->rc == 0)
        g->rc = errmsg_set(&g->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (g->rc != 0) {
        routes_respond_error(g->node, g->ex, g->rc, &g->em);
        groups_free(g);
        return;
    }
    g->node->metrics.queries++;
    char hdr[2 * CLUSTER_PARTIAL_HEADER_MAX + 64], extra[sizeof hdr + 32];
    http_response_t resp = {
        .status = 200, .content_type = g->result.content_type, .body = g->result.body};
    if (partial_header(g, hdr, sizeof hdr)) { /* never silently short */
        snprintf(extra, sizeof extra, "X-Flamedb-Partial: %s\r\n", hdr);
        resp.extra_headers = extra;
    }
    buf_init(&g->result.body, 0);
    http_respond(g->ex, &resp);
    groups_free(g);
}

/* Both answers are back: the first failure answers, else the join job. */
static void parts_done(groups_req_t *g)
{
    for (int i = 0; i < PARTS; i++) {
        part_t *p = &g->part[i];
        if (p->rc == 0) continue;
        errmsg_t em = p->em;
        if (i == 1) /* the shares query's "label" is the request's groupBy */
            errmsg_set(&em, p->rc, "groupBy: %s", errmsg_text(&p->em, p->rc));
        routes_respond_error(g->node, g->ex, p->rc, &em);
        groups_free(g);
        return;
    }
    g->work.data = g;
    if (uv_queue_work(&g->node->loop, &g->work, join_work, join_done) != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
        routes_respond_error(g->node, g->ex, ERR_UNAVAILABLE, &em);
        groups_free(g);
    }
}

static void part_answered(void *arg, cluster_answer_t *a)
{
    part_t *p = arg;
    p->rc = a->rc;
    p->em = a->em;
    if (a->rc == 0) {
        p->body = a->result.body; /* taken */
        buf_init(&a->result.body, 0);
        snprintf(p->partial, sizeof p->partial, "%s", a->partial_header);
    }
    if (--p->g->pending == 0) parts_done(p->g);
}

void routes_render_groups(node_t *n, http_exchange_t *ex, const http_request_t *r,
                          const query_params_t *render, const char *label)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    if (render->format != NULL && render->format[0] != 0 && strcmp(render->format, "json") != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_INVALID_ARGUMENT,
                   "parameter 'groupBy': only with format=json (the groups are timelines)");
        routes_respond_error(n, ex, ERR_INVALID_ARGUMENT, &em);
        return;
    }
    groups_req_t *g = calloc(1, sizeof *g);
    if (g == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    g->node = n;
    g->ex = ex;
    query_result_init(&g->result);
    query_params_t shares = {
        .query = render->query, .from = render->from, .until = render->until, .label = label};
    shares.groups = 1;
    g->pending = PARTS + 1; /* held across the starts: a part may answer at once */
    int64_t now_ms = clock_wall_ms(&n->clock);
    for (int i = 0; i < PARTS; i++) {
        g->part[i].g = g;
        buf_init(&g->part[i].body, 0);
    }
    cluster_query(n->cluster, QUERY_KIND_RENDER, tenant, render, now_ms, part_answered,
                  &g->part[0]);
    cluster_query(n->cluster, QUERY_KIND_LABEL_SHARES, tenant, &shares, now_ms, part_answered,
                  &g->part[1]);
    if (--g->pending == 0) parts_done(g);
}
