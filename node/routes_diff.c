/* routes_diff.c — GET /pyroscope/render-diff: two renders through the
 * cluster, joined into one answer (docs/api.md "render-diff").
 *
 * Each side is an ordinary render (cluster_query) asking for the merged,
 * untruncated tree instead of an encoding, so each side is exact from every
 * node and says when it is partial. Once both came back (on the loop), one
 * pool job joins them (query_diff_render) and the loop answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "query/query.h"

#define SIDES 2

typedef struct diff_req diff_req_t;

typedef struct side {
    diff_req_t *d;
    int rc;
    errmsg_t em;
    buf_t body; /* the side's merged tree */
    char partial[CLUSTER_PARTIAL_HEADER_MAX];
} side_t;

struct diff_req {
    node_t *node;
    http_exchange_t *ex;
    query_diff_params_t params; /* strings borrowed from the request until it is answered */
    side_t side[SIDES];
    int pending;
    uv_work_t work;
    int rc;
    errmsg_t em;
    query_result_t result;
};

static const char *side_name[SIDES] = {"left", "right"};

static void diff_free(diff_req_t *d)
{
    for (int i = 0; i < SIDES; i++)
        buf_free(&d->side[i].body);
    query_result_free(&d->result);
    free(d);
}

static const char *param_of(const void *req, const char *name)
{
    return http_request_param(req, name);
}

/* X-Flamedb-Partial of the answer: each partial side's own header. */
static int partial_header(const diff_req_t *d, char *out, size_t n)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < SIDES; i++)
        if (d->side[i].partial[0] != 0 && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s: %s", len ? "; " : "", side_name[i],
                                    d->side[i].partial);
    return len > 0;
}

static void join_work(uv_work_t *w)
{
    diff_req_t *d = w->data;
    int partial = d->side[0].partial[0] != 0 || d->side[1].partial[0] != 0;
    d->rc = query_diff_render(&d->params, &d->node->cfg.query, d->side[0].body.data,
                              d->side[0].body.len, d->side[1].body.data, d->side[1].body.len,
                              partial ? "\"partial\":true" : NULL, &d->result, &d->em);
}

static void join_done(uv_work_t *w, int status)
{
    diff_req_t *d = w->data;
    if (status != 0 && d->rc == 0)
        d->rc = errmsg_set(&d->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (d->rc != 0) {
        routes_respond_error(d->node, d->ex, d->rc, &d->em);
        diff_free(d);
        return;
    }
    d->node->metrics.queries++;
    char hdr[2 * CLUSTER_PARTIAL_HEADER_MAX + 64], extra[sizeof hdr + 32];
    http_response_t resp = {
        .status = 200, .content_type = d->result.content_type, .body = d->result.body};
    if (partial_header(d, hdr, sizeof hdr)) { /* never silently short */
        snprintf(extra, sizeof extra, "X-Flamedb-Partial: %s\r\n", hdr);
        resp.extra_headers = extra;
    }
    buf_init(&d->result.body, 0);
    http_respond(d->ex, &resp);
    diff_free(d);
}

/* Both sides are back: the first failure answers, else the join job. */
static void sides_done(diff_req_t *d)
{
    for (int i = 0; i < SIDES; i++) {
        side_t *s = &d->side[i];
        if (s->rc == 0) continue;
        errmsg_t em;
        errmsg_set(&em, s->rc, "%s side: %s", side_name[i], errmsg_text(&s->em, s->rc));
        routes_respond_error(d->node, d->ex, s->rc, &em);
        diff_free(d);
        return;
    }
    d->work.data = d;
    if (uv_queue_work(&d->node->loop, &d->work, join_work, join_done) != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
        routes_respond_error(d->node, d->ex, ERR_UNAVAILABLE, &em);
        diff_free(d);
    }
}

static void side_answered(void *arg, cluster_answer_t *a)
{
    side_t *s = arg;
    s->rc = a->rc;
    s->em = a->em;
    if (a->rc == 0) {
        s->body = a->result.body; /* taken */
        buf_init(&a->result.body, 0);
        snprintf(s->partial, sizeof s->partial, "%s", a->partial_header);
    }
    if (--s->d->pending == 0) sides_done(s->d);
}

void routes_render_diff(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    errmsg_t em = {{0}};
    diff_req_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    d->node = n;
    d->ex = ex;
    query_result_init(&d->result);
    query_diff_params_read(&d->params, param_of, r);
    int rc = query_diff_check(&d->params, &n->cfg.query, &em);
    if (rc != 0) {
        routes_respond_error(n, ex, rc, &em);
        diff_free(d);
        return;
    }
    d->pending = SIDES + 1; /* held across the starts: a side may answer at once */
    int64_t now_ms = clock_wall_ms(&n->clock);
    for (int i = 0; i < SIDES; i++) {
        d->side[i].d = d;
        buf_init(&d->side[i].body, 0);
        const query_params_t *p = i == 0 ? &d->params.left : &d->params.right;
        cluster_query(n->cluster, QUERY_KIND_RENDER, tenant, p, now_ms, side_answered, &d->side[i]);
    }
    if (--d->pending == 0) sides_done(d);
}
