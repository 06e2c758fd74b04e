/* routes_report.c — GET /api/diff: the regression report of two selections
 * (docs/api.md "Regression report").
 *
 * As render-diff (routes_diff.c) but with each side split into time buckets
 * (query_report_plan): every bucket of either side is one ordinary render
 * through the cluster asking for the merged, untruncated tree, so each is
 * exact from every node and says when it is partial. Once all came back (on
 * the loop), one pool job computes the report (query_report_run) and the
 * loop answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "query/query.h"

#define SIDES 2
/* Buckets asked at once per request: a node serves at most 64 partials at
 * a time (scatter's max_serving) and refuses more, so a report's up to 60
 * buckets go a few at a time rather than all together. */
#define REPORT_INFLIGHT 8

typedef struct report_req report_req_t;

typedef struct bucket_ans {
    report_req_t *d;
    int side;
    int rc;
    errmsg_t em;
    buf_t body; /* the bucket's merged tree */
} bucket_ans_t;

struct report_req {
    node_t *node;
    http_exchange_t *ex;
    query_diff_params_t params; /* strings borrowed from the request until it is answered */
    query_report_plan_t plan;
    bucket_ans_t ans[SIDES][QUERY_REPORT_MAX_BUCKETS];
    char partial[SIDES][CLUSTER_PARTIAL_HEADER_MAX]; /* the first partial bucket's header */
    const char *tenant;                              /* borrowed from the request */
    int64_t now_ms;
    size_t next, total; /* buckets started, buckets of both sides */
    int inflight;
    int pending;
    uv_work_t work;
    int rc;
    errmsg_t em;
    query_result_t result;
};

static const char *side_name[SIDES] = {"left", "right"};

static void report_free(report_req_t *d)
{
    for (int s = 0; s < SIDES; s++)
        for (size_t b = 0; b < QUERY_REPORT_MAX_BUCKETS; b++)
            buf_free(&d->ans[s][b].body);
    query_result_free(&d->result);
    free(d);
}

static const char *param_of(const void *req, const char *name)
{
    return http_request_param(req, name);
}

/* X-Flamedb-Partial of the answer: each partial side's header. */
static int partial_header(const report_req_t *d, char *out, size_t n)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < SIDES; i++)
        if (d->partial[i][0] != 0 && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s: %s", len ? "; " : "", side_name[i],
                                    d->partial[i]);
    return len > 0;
}

static void report_work(uv_work_t *w)
{
    report_req_t *d = w->data;
    const uint8_t *lb[QUERY_REPORT_MAX_BUCKETS], *rb[QUERY_REPORT_MAX_BUCKETS];
    size_t ll[QUERY_REPORT_MAX_BUCKETS], rl[QUERY_REPORT_MAX_BUCKETS];
    for (size_t b = 0; b < QUERY_REPORT_MAX_BUCKETS; b++) {
        lb[b] = d->ans[0][b].body.data;
        ll[b] = d->ans[0][b].body.len;
        rb[b] = d->ans[1][b].body.data;
        rl[b] = d->ans[1][b].body.len;
    }
    const uint8_t *const *body[SIDES] = {lb, rb};
    const size_t *len[SIDES] = {ll, rl};
    int partial = d->partial[0][0] != 0 || d->partial[1][0] != 0;
    d->rc = query_report_run(&d->plan, &d->node->cfg.query, body, len,
                             partial ? "\"partial\":true" : NULL, &d->result, &d->em);
}

static void report_done(uv_work_t *w, int status)
{
    report_req_t *d = w->data;
    if (status != 0 && d->rc == 0)
        d->rc = errmsg_set(&d->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (d->rc != 0) {
        routes_respond_error(d->node, d->ex, d->rc, &d->em);
        report_free(d);
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
    report_free(d);
}

/* Every bucket is back: the first failure answers, else the report job. */
static void buckets_done(report_req_t *d)
{
    for (int s = 0; s < SIDES; s++)
        for (size_t b = 0; b < d->plan.nbuckets[s]; b++) {
            bucket_ans_t *a = &d->ans[s][b];
            if (a->rc == 0) continue;
            errmsg_t em;
            errmsg_set(&em, a->rc, "%s side: %s", side_name[s], errmsg_text(&a->em, a->rc));
            routes_respond_error(d->node, d->ex, a->rc, &em);
            report_free(d);
            return;
        }
    d->work.data = d;
    if (uv_queue_work(&d->node->loop, &d->work, report_work, report_done) != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
        routes_respond_error(d->node, d->ex, ERR_UNAVAILABLE, &em);
        report_free(d);
    }
}

static void bucket_answered(void *arg, cluster_answer_t *a);

/* Starts buckets (left ones first) while fewer than REPORT_INFLIGHT run. A
 * bucket may answer at once, from inside cluster_query: one reference is
 * held across the starts so the request outlives them. */
static void start_buckets(report_req_t *d)
{
    d->pending++;
    while (d->inflight < REPORT_INFLIGHT && d->next < d->total) {
        size_t i = d->next++;
        int s = i < d->plan.nbuckets[0] ? 0 : 1;
        size_t b = s == 0 ? i : i - d->plan.nbuckets[0];
        d->inflight++;
        cluster_query(d->node->cluster, QUERY_KIND_RENDER, d->tenant, &d->plan.bucket[s][b].p,
                      d->now_ms, bucket_answered, &d->ans[s][b]);
    }
    if (--d->pending == 0) buckets_done(d);
}

static void bucket_answered(void *arg, cluster_answer_t *a)
{
    bucket_ans_t *s = arg;
    report_req_t *d = s->d;
    s->rc = a->rc;
    s->em = a->em;
    if (a->rc == 0) {
        s->body = a->result.body; /* taken */
        buf_init(&a->result.body, 0);
        if (d->partial[s->side][0] == 0)
            snprintf(d->partial[s->side], sizeof d->partial[s->side], "%s", a->partial_header);
    }
    d->inflight--;
    if (--d->pending == 0)
        buckets_done(d);
    else
        start_buckets(d);
}

void routes_report_diff(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    errmsg_t em = {{0}};
    report_req_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    d->node = n;
    d->ex = ex;
    query_result_init(&d->result);
    query_diff_params_read(&d->params, param_of, r);
    int64_t now_ms = clock_wall_ms(&n->clock);
    int rc = query_report_plan(&d->params, http_request_param(r, "limit"), &n->cfg.query, now_ms,
                               &d->plan, &em);
    if (rc != 0) {
        routes_respond_error(n, ex, rc, &em);
        report_free(d);
        return;
    }
    d->tenant = tenant;
    d->now_ms = now_ms;
    for (int s = 0; s < SIDES; s++)
        for (size_t b = 0; b < d->plan.nbuckets[s]; b++) {
            d->ans[s][b] = (bucket_ans_t){.d = d, .side = s};
            buf_init(&d->ans[s][b].body, 0);
        }
    d->total = d->plan.nbuckets[0] + d->plan.nbuckets[1];
    d->pending = (int)d->total;
    start_buckets(d);
}
