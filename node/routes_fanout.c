/* routes_fanout.c — one HTTP answer built from several cluster queries
 * (node_int.h): render-diff, the regression report and groupBy use it.
 *
 * The queries go through the cluster (cluster_query), at most max_inflight
 * at once, each exact from every node and saying when it is partial. Their
 * answers are kept (a body, or the stream of a query asked with
 * query_params_t.stream); when all came back (on the loop), the first
 * failure answers with its group's prefix, else one pool job joins the
 * answers and the loop answers, with X-Flamedb-Partial naming each group one of whose
 * queries was partial. A client that goes away cancels the queries running,
 * starts no more, and drops the join job unless it runs. A deadline for the
 * whole answer (spec.timeout_ms: the regression report's report-timeout,
 * render-diff's and groupBy's combined-query-timeout)
 * does the same when it passes before the join starts, and answers 504.
 *
 * A query refused as busy (ERR_UNAVAILABLE: the node's query-memory-bytes
 * or its queries at once) while another query of the same answer ran
 * beside it is asked once more, alone, after the others answered: the
 * queries of one answer do not refuse each other (the two sides of a
 * render-diff merging at once, each within the budget alone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

typedef struct fanout fanout_t;

typedef struct fq {
    fanout_t *f;
    routes_fanout_query_t q;
    int rc;
    errmsg_t em;
    query_result_t res; /* its answer, until the join (f->answers) */
    size_t held;        /* its bytes counted in query-memory-bytes */
    int running;        /* asked, not answered yet */
    int beside;         /* ran while another query of the answer ran */
    int again;          /* refused as busy beside others: asked again alone */
    int retried;        /* asked again once already */
    char partial[CLUSTER_PARTIAL_HEADER_MAX];
} fq_t;

struct fanout {
    node_t *node;
    http_exchange_t *ex;
    routes_fanout_spec_t spec;
    fq_t *q;
    size_t nq, next, inflight;
    size_t nagain; /* queries waiting to be asked again alone (fq_t.again) */
    int pending;   /* queries not answered, plus one while starting */
    char tenant[STORAGE_TENANT_MAX + 1];
    int64_t now_ms;
    query_result_t *answers;               /* given to the join, which may take them */
    int partial[ROUTES_FANOUT_MAX_GROUPS]; /* per group: some query answered partially */
    workq_job_t work;
    size_t held;   /* answers counted in query-memory-bytes */
    size_t taken;  /* of them, those the join's stream took: held until it is sent */
    int joining;   /* the join job was submitted */
    int cancelled; /* the client went away */
    int timed_out; /* spec.timeout_ms passed before the join */
    int timeout_armed;
    size_t answered_ok; /* queries answered (not failed) before any cancel */
    uv_timer_t timer;   /* spec.timeout_ms; closed (then f freed) by fanout_free */
    int rc;
    errmsg_t em;
    query_result_t result;
};

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fanout_free(fanout_t *f)
{
    cluster_query_release(f->node->cluster, f->held);
    for (size_t i = 0; i < f->nq; i++) {
        query_result_free(&f->q[i].res);
        query_result_free(&f->answers[i]);
    }
    if (f->spec.ctx_free != NULL) f->spec.ctx_free(f->spec.ctx);
    query_result_free(&f->result);
    free(f->answers);
    free(f->q);
    if (f->spec.timeout_ms > 0) { /* the timer is freed with f once closed */
        f->timer.data = f;
        uv_close((uv_handle_t *)&f->timer, timer_closed);
        return;
    }
    free(f);
}

/* X-Flamedb-Partial: the first partial header of each group, named. */
static int partial_header(const fanout_t *f, char *out, size_t n)
{
    size_t len = 0;
    out[0] = 0;
    for (size_t g = 0; g < f->spec.ngroups; g++)
        for (size_t i = 0; i < f->nq; i++) {
            if (f->q[i].q.group != g || f->q[i].partial[0] == 0) continue;
            if (len < n)
                len += (size_t)snprintf(out + len, n - len, "%s%s: %s", len ? "; " : "",
                                        f->spec.group_names[g], f->q[i].partial);
            break;
        }
    return len > 0;
}

static void join_work(workq_job_t *w)
{
    fanout_t *f = w->data;
    for (size_t i = 0; i < f->nq; i++) {
        f->answers[i] = f->q[i].res;
        query_result_init(&f->q[i].res);
    }
    f->rc = f->spec.join(f->spec.ctx, f->answers, f->partial, &f->result, &f->em);
    /* answers the join took into its stream stay counted until it is sent */
    for (size_t i = 0; f->rc == 0 && f->result.stream != NULL && i < f->nq; i++)
        if (f->answers[i].body.data == NULL && f->answers[i].stream == NULL) {
            f->taken += f->q[i].held;
            f->held -= f->q[i].held;
            f->q[i].held = 0;
        }
}

static void join_done(workq_job_t *w, int status)
{
    fanout_t *f = w->data;
    if (f->cancelled) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cancelled: the client closed the connection");
        routes_respond_cancelled(f->ex, &em);
        fanout_free(f);
        return;
    }
    if (status != 0 && f->rc == 0)
        f->rc = errmsg_set(&f->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (f->rc != 0) {
        routes_respond_error(f->node, f->ex, routes_query_error(f->rc), &f->em);
        fanout_free(f);
        return;
    }
    f->node->metrics.queries++;
    char hdr[ROUTES_FANOUT_MAX_GROUPS * (CLUSTER_PARTIAL_HEADER_MAX + 32)], extra[sizeof hdr + 32];
    http_response_t resp = {
        .status = 200, .content_type = f->result.content_type, .body = f->result.body};
    if (partial_header(f, hdr, sizeof hdr)) { /* never silently short */
        snprintf(extra, sizeof extra, "X-Flamedb-Partial: %s\r\n", hdr);
        resp.extra_headers = extra;
    }
    buf_init(&f->result.body, 0);
    if (f->result.stream != NULL) { /* the join's ctx lives until the last byte is sent */
        query_stream_t *stream = f->result.stream;
        void (*done)(void *) = f->spec.ctx_free;
        void *arg = f->spec.ctx;
        f->result.stream = NULL;
        f->spec.ctx_free = NULL;
        size_t taken = f->taken;
        f->taken = 0;
        routes_respond_stream(f->node, f->ex, &resp, stream, taken, done, arg);
    } else {
        http_respond(f->ex, &resp);
    }
    fanout_free(f);
}

/* Everything is back: the first failure answers, else the join job. */
static void all_done(fanout_t *f)
{
    if (f->cancelled) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cancelled: the client closed the connection");
        routes_respond_cancelled(f->ex, &em);
        fanout_free(f);
        return;
    }
    if (f->timed_out) {
        errmsg_t em;
        errmsg_set(&em, ERR_TIMEOUT,
                   "deadline passed (%s %llu ms): %zu of %zu queries had answered; the others "
                   "were cancelled",
                   f->spec.timeout_setting ? f->spec.timeout_setting : "query-timeout",
                   (unsigned long long)f->spec.timeout_ms, f->answered_ok, f->nq);
        routes_respond_error(f->node, f->ex, ERR_TIMEOUT, &em);
        fanout_free(f);
        return;
    }
    for (size_t i = 0; i < f->nq; i++) {
        fq_t *q = &f->q[i];
        if (q->rc == 0) continue;
        errmsg_t em;
        errmsg_set(&em, q->rc, "%s%s", f->spec.error_prefix[q->q.group],
                   errmsg_text(&q->em, q->rc));
        routes_respond_error(f->node, f->ex, routes_query_error(q->rc), &em);
        fanout_free(f);
        return;
    }
    f->work.data = f;
    f->joining = 1;
    if (workq_submit(f->node->workq, WORKQ_QUERY, &f->work, join_work, join_done) != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
        routes_respond_error(f->node, f->ex, ERR_UNAVAILABLE, &em);
        fanout_free(f);
    }
}

static void answered(void *arg, cluster_answer_t *a);

/* Asks the cluster for query q (its answer may come from inside). */
static void ask(fanout_t *f, fq_t *q)
{
    f->inflight++;
    q->running = 1;
    q->q.p.held_beside = f->held; /* the answers of the others, waiting here */
    if (f->inflight > 1)          /* this one and those running now run beside each other */
        for (size_t i = 0; i < f->nq; i++)
            if (f->q[i].running) f->q[i].beside = 1;
    cluster_query(f->node->cluster, q->q.kind, f->tenant, &q->q.p, f->now_ms, answered, q);
}

/* Starts queries while fewer than max_inflight run. One may answer at once,
 * from inside cluster_query: a reference is held across the starts. */
static void start_more(fanout_t *f)
{
    f->pending++;
    while (f->inflight < f->spec.max_inflight && f->next < f->nq)
        ask(f, &f->q[f->next++]);
    /* the others answered: one refused beside them is asked again, alone */
    for (size_t i = 0; f->inflight == 0 && f->next == f->nq && f->nagain > 0 && i < f->nq; i++)
        if (f->q[i].again) {
            f->q[i].again = 0;
            f->nagain--;
            ask(f, &f->q[i]);
        }
    if (--f->pending == 0) all_done(f);
}

static void answered(void *arg, cluster_answer_t *a)
{
    fq_t *q = arg;
    fanout_t *f = q->f;
    q->running = 0;
    if (a->rc == ERR_UNAVAILABLE && q->beside && !q->retried && !f->cancelled && !f->timed_out) {
        q->retried = q->again = 1; /* still pending */
        q->beside = 0;
        f->nagain++;
        f->inflight--;
        start_more(f);
        return;
    }
    q->rc = a->rc;
    q->em = a->em;
    if (a->rc == 0 && !f->cancelled && !f->timed_out) f->answered_ok++;
    if (a->rc == 0) {
        q->res = a->result; /* taken */
        query_result_init(&a->result);
        q->held = q->res.stream != NULL ? a->stream_held : 0; /* counted for us already */
        /* bodies wait here for the others: they count as query memory (a
         * stream's bytes are counted twice until this returns: none taken) */
        size_t len = q->res.body.len;
        if (len == 0 || cluster_query_hold(f->node->cluster, len, &q->em) == 0) {
            q->held += len;
        } else {
            q->rc = ERR_UNAVAILABLE;
            query_result_free(&q->res);
            query_result_init(&q->res);
            cluster_query_release(f->node->cluster, q->held);
            q->held = 0;
        }
        f->held += q->held;
        snprintf(q->partial, sizeof q->partial, "%s", a->partial_header);
        f->partial[q->q.group] |= q->partial[0] != 0;
    }
    f->inflight--;
    if (--f->pending == 0)
        all_done(f);
    else
        start_more(f);
}

/* The client went away or the deadline passed: queries not started never
 * will be (they leave `pending`), the running ones are cancelled (each
 * answers from inside cluster_query_cancel), and a reference is held across,
 * so all_done runs once, at the end, and answers (into the void for a
 * client gone, 504 at the deadline). */
static void stop_queries(fanout_t *f)
{
    size_t started = f->next;
    f->pending -= (int)(f->nq - f->next + f->nagain);
    f->next = f->nq;
    for (size_t i = 0; i < f->nq; i++)
        f->q[i].again = 0;
    f->nagain = 0;
    f->pending++;
    for (size_t i = 0; i < started; i++)
        cluster_query_cancel(f->node->cluster, &f->q[i]); /* no-op once answered */
    if (--f->pending == 0) all_done(f);
}

static void fanout_gone(void *arg)
{
    fanout_t *f = arg;
    f->cancelled = 1;
    if (f->timeout_armed) uv_timer_stop(&f->timer);
    if (f->joining) {
        workq_cancel(&f->work); /* not started: join_done answers now */
        return;
    }
    if (!f->timed_out) stop_queries(f); /* else they were stopped already */
}

/* The deadline of the whole answer: as a client gone, but answered 504 (a
 * join already queued or running is left to finish: its work is local). */
static void on_deadline(uv_timer_t *t)
{
    fanout_t *f = t->data;
    f->timeout_armed = 0;
    if (f->joining || f->cancelled) return;
    f->timed_out = 1;
    stop_queries(f);
}

void routes_fanout(node_t *n, http_exchange_t *ex, const char *tenant,
                   const routes_fanout_query_t *q, size_t nq, const routes_fanout_spec_t *spec)
{
    fanout_t *f = calloc(1, sizeof *f);
    if (f != NULL) {
        f->q = calloc(nq ? nq : 1, sizeof *f->q);
        f->answers = calloc(nq ? nq : 1, sizeof *f->answers);
    }
    if (f == NULL || f->q == NULL || f->answers == NULL ||
        spec->ngroups > ROUTES_FANOUT_MAX_GROUPS) {
        if (spec->ctx_free != NULL) spec->ctx_free(spec->ctx);
        if (f != NULL) {
            free(f->q);
            free(f->answers);
            free(f);
        }
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    f->node = n;
    f->ex = ex;
    f->spec = *spec;
    if (f->spec.max_inflight == 0) f->spec.max_inflight = nq;
    f->nq = nq;
    snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
    f->now_ms = clock_wall_ms(&n->clock);
    query_result_init(&f->result);
    for (size_t i = 0; i < nq; i++) {
        f->q[i] = (fq_t){.f = f, .q = q[i]};
        query_result_init(&f->q[i].res);
        query_result_init(&f->answers[i]);
    }
    f->pending = (int)nq;
    if (f->spec.timeout_ms > 0) {
        uv_timer_init(&n->loop, &f->timer);
        f->timer.data = f;
        uv_timer_start(&f->timer, on_deadline, f->spec.timeout_ms, 0);
        f->timeout_armed = 1;
    }
    http_exchange_on_gone(ex, fanout_gone, f);
    start_more(f);
}
