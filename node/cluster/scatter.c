/* scatter.c — coordinating a query over the cluster: plan, ask, re-plan,
 * deadlines, answer (scatter_int.h). The pool jobs that merge and encode are in
 * scatter_merge.c, the replica side in scatter_serve.c.
 *
 * Deadlines: a query has query_timeout_ms. A remote node that has not
 * answered by half of it is taken as slow: its ranges are re-planned over
 * the other live replicas, which get the other half. At the full timeout,
 * ranges still unanswered are missing and the answer says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "node/cluster/scatter_int.h"

void scatter_options_default(scatter_options_t *o)
{
    o->query_timeout_ms = 30000;
    o->max_message_bytes = 64u << 20;
    o->shards.default_shards = RING_DEFAULT_SHARDS_PER_SERVICE;
    o->shards.n = 0;
    o->max_inflight = 256;
    o->max_serving = 64;
    o->max_memory_bytes = 0;
    o->name_cache_bytes = 4u << 20;
    o->space_cache_bytes = 16u << 20;
    query_limits_default(&o->limits);
    o->clock = clock_real();
    o->workq = NULL;
}

/* ---------- the handle ---------- */

int scatter_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                             const cluster_inputs_t *in, cluster_t *c, scatter_t **out,
                             errmsg_t *em)
{
    scatter_options_t o;
    scatter_options_default(&o);
    o.query_timeout_ms = cfg->query_timeout_ms;
    o.max_message_bytes = cfg->max_message_bytes;
    o.shards = in->shards;
    o.limits = in->query;
    o.clock = c->clock;
    o.workq = in->workq;
    o.name_cache_bytes = cfg->scatter_name_cache_bytes;
    /* the id spaces come out of query-memory-bytes, at most a quarter of it */
    size_t qmem = in->query_memory_bytes, spaces = cfg->scatter_space_cache_bytes;
    if (qmem > 0 && spaces > qmem / 4) spaces = qmem / 4;
    o.space_cache_bytes = spaces;
    o.max_memory_bytes = qmem - (qmem > 0 ? spaces : 0);
    cluster_ops_t ops;
    cluster_ops_of(c, &ops);
    int rc = scatter_new(loop, storage, &o, &ops, out, em);
    if (rc == 0) rc = cluster_on(c, MSG(QUERY), scatter_on_query, *out);
    if (rc == 0) rc = cluster_on_envelope(c, MSG(PARTIAL), scatter_on_partial, *out);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "cannot register the query handlers");
    return rc;
}

int scatter_new(uv_loop_t *loop, storage_t *storage, const scatter_options_t *o,
                const cluster_ops_t *ops, scatter_t **out, errmsg_t *em)
{
    if (o->query_timeout_ms == 0 || o->max_inflight == 0 || o->shards.default_shards == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "scatter: zero timeout, shards or capacity");
    scatter_t *s = calloc(1, sizeof *s);
    if (s == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    list_init(&s->queries);
    list_init(&s->serving);
    alloc_budget_init(&s->mem, o->max_memory_bytes);
    s->loop = loop;
    s->storage = storage;
    s->o = *o;
    s->workq = o->workq;
    if (s->workq == NULL && workq_new(loop, 4, NULL, &o->clock, &s->own_workq) != 0) {
        free(s);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    if (s->workq == NULL) s->workq = s->own_workq;
    s->ops = *ops;
    if (scatter_names_new(o->name_cache_bytes, &s->names) != 0 ||
        scatter_spaces_new(o->space_cache_bytes, &s->spaces) != 0) {
        scatter_names_free(s->names);
        workq_free(s->own_workq);
        free(s);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    cluster_wire_limits_default(&s->limits);
    s->limits.max_bytes = o->max_message_bytes + SCATTER_ENVELOPE_ROOM;
    s->next_id = (uv_hrtime() & 0xffffffffu) << 20 | 1; /* restarts do not reuse recent ids */
    *out = s;
    return 0;
}

void scatter_close(scatter_t *s)
{
    if (s->closing) return;
    s->closing = 1;
    while (!list_empty(&s->queries)) {
        scatter_q_t *q = LIST_ENTRY(list_first(&s->queries), scatter_q_t, link);
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "the node is stopping");
        scatter_q_fail(q, ERR_UNAVAILABLE, &em);
        cluster_answer_t a = {.rc = q->rc, .em = q->em};
        query_result_init(&a.result);
        scatter_q_answer(q, &a);
    }
}

void scatter_free(scatter_t *s)
{
    if (s != NULL) workq_free(s->own_workq);
    if (s != NULL) scatter_names_free(s->names);
    if (s != NULL) scatter_spaces_free(s->spaces);
    free(s);
}

void scatter_stats(const scatter_t *s, scatter_stats_t *out)
{
    *out = s->stats;
    scatter_spaces_stats_t sp;
    scatter_spaces_get_stats(s->spaces, &sp);
    out->space_answers = sp.spaces_added;
    out->space_ids = sp.ids_received;
    out->space_dropped = sp.scopes_dropped;
    out->space_refused = sp.scopes_refused;
    out->space_bytes = sp.bytes;
    out->inflight = s->ninflight;
    out->memory_bytes = alloc_budget_used(&s->mem);
}

void scatter_stats_register(const scatter_stats_t *st, metrics_registry_t *r)
{
#define SCATTER_DEF(field, metric, help) METRICS_U64_DEF(scatter_stats_t, field, metric, help),
    static const metrics_u64_def_t counters[] = {SCATTER_COUNTERS(SCATTER_DEF)};
#undef SCATTER_DEF
    static const metrics_u64_def_t gauges[] = {
        {"flamedb_scatter_queries_in_flight", "Queries this node coordinates now.", METRICS_GAUGE,
         offsetof(scatter_stats_t, inflight)},
        {"flamedb_scatter_space_answers_total",
         "Shares' answers to renders this node coordinated that came by the ids of their shard "
         "union (added through the maps of scatter-space-cache-bytes, no merge by symbol).",
         METRICS_COUNTER, offsetof(scatter_stats_t, space_answers)},
        {"flamedb_scatter_space_ids_received_total",
         "Ids of shares' unions whose structure (parent and symbol) came with their answers: "
         "each once per union and coordinator while scatter-space-cache-bytes keeps it.",
         METRICS_COUNTER, offsetof(scatter_stats_t, space_ids)},
        {"flamedb_scatter_space_scopes_dropped_total",
         "Services whose id space maps were dropped to stay within scatter-space-cache-bytes.",
         METRICS_COUNTER, offsetof(scatter_stats_t, space_dropped)},
        {"flamedb_scatter_space_scopes_refused_total",
         "Renders that gathered their shares' forests because their service's maps alone "
         "outgrew scatter-space-cache-bytes (for 1000 renders after each such drop).",
         METRICS_COUNTER, offsetof(scatter_stats_t, space_refused)},
        {"flamedb_scatter_space_cache_bytes",
         "Bytes of shares' id spaces this node keeps as a coordinator "
         "(scatter-space-cache-bytes).",
         METRICS_GAUGE, offsetof(scatter_stats_t, space_bytes)},
        {"flamedb_scatter_memory_bytes",
         "Partial results held by the queries this node coordinates (answers waiting to be "
         "merged, merged trees, encoded answers) and by the shares it serves for other nodes, "
         "bounded by query-memory-bytes.",
         METRICS_GAUGE, offsetof(scatter_stats_t, memory_bytes)},
    };
    metrics_add_u64_array(r, counters, sizeof counters / sizeof *counters, st);
    metrics_add_u64_array(r, gauges, sizeof gauges / sizeof *gauges, st);
}

int scatter_hold(scatter_t *s, size_t bytes, errmsg_t *em)
{
    if (alloc_budget_take(&s->mem, bytes) != 0) {
        s->stats.memory_refused++;
        return errmsg_set(em, ERR_UNAVAILABLE,
                          "server busy: %zu more bytes of query answers would exceed %zu bytes "
                          "(query-memory-bytes); retry later or narrow the query",
                          bytes, s->o.max_memory_bytes);
    }
    return 0;
}

int scatter_try_hold(scatter_t *s, size_t bytes)
{
    return alloc_budget_take(&s->mem, bytes) != 0 ? ERR_UNAVAILABLE : 0;
}

void scatter_release(scatter_t *s, size_t bytes)
{
    alloc_budget_give(&s->mem, bytes);
}

/* ---------- one query's lifetime ---------- */

/* Releases what q holds from the budget: its gather and answers go now. */
static void scatter_q_uncharge(scatter_q_t *q)
{
    alloc_budget_give(&q->s->mem, q->mem_charged);
    q->mem_charged = 0;
}

void scatter_q_charge(scatter_q_t *q)
{
    scatter_t *s = q->s;
    size_t held = q->items_bytes + q->gather_bytes + q->answer_bytes;
    if (held > q->mem_charged)
        alloc_budget_force(&s->mem, held - q->mem_charged);
    else
        alloc_budget_give(&s->mem, q->mem_charged - held);
    q->mem_charged = held;
    if (s->o.max_memory_bytes == 0 || alloc_budget_used(&s->mem) <= s->o.max_memory_bytes ||
        q->answered || q->rc != 0)
        return;
    s->stats.memory_refused++;
    errmsg_t em;
    errmsg_set(&em, ERR_UNAVAILABLE,
               "server busy: the partial results of the queries this node coordinates would "
               "exceed %zu bytes (query-memory-bytes); retry later or narrow the query",
               s->o.max_memory_bytes);
    scatter_q_fail(q, ERR_UNAVAILABLE, &em);
}

static void scatter_q_free(scatter_q_t *q)
{
    scatter_q_uncharge(q);
    for (size_t i = 0; i < q->nasks; i++)
        ring_ranges_free(&q->asks[i].ranges);
    free(q->asks);
    free(q->excluded);
    ring_ranges_free(&q->missing);
    ring_ranges_free(&q->refused);
    while (q->queue != NULL) {
        item_t *it = q->queue;
        q->queue = it->next;
        scatter_q_item_free(it);
    }
    query_gather_free(q->gather);
    scatter_names_release(q->s->names, q->names);
    free(q->known);
    scatter_sums_free(&q->sums);
    scatter_spaces_release(q->s->spaces, q->scope);
    query_spec_free(&q->spec);
    query_result_free(&q->ans.result);
    free(q->partial_json);
    if (q->view != NULL) q->s->ops.view_release(q->view);
    free(q);
}

void scatter_q_unref(scatter_q_t *q)
{
    if (--q->refs == 0) scatter_q_free(q);
}

static void timer_closed(uv_handle_t *h)
{
    scatter_q_unref(h->data);
}

static void unlink_query(scatter_q_t *q)
{
    scatter_t *s = q->s;
    list_remove(&q->link);
    s->ninflight--;
}

/* Answered: the partial results go now, unless a running job holds the
 * gather (it goes with the query when the job ends); the answer is still
 * counted until it is handed over (release_held). */
static void release_parts(scatter_q_t *q)
{
    while (q->queue != NULL) {
        item_t *it = q->queue;
        q->queue = it->next;
        q->items_bytes -= it->bytes;
        scatter_q_item_free(it);
    }
    if (!q->merging && !q->finishing) {
        query_gather_free(q->gather);
        q->gather = NULL;
        q->gather_bytes = 0;
    }
    scatter_q_charge(q);
}

/* Answered and handed over: what the query still holds goes now. */
static void release_held(scatter_q_t *q)
{
    release_parts(q);
    q->answer_bytes = 0; /* handed over */
    scatter_q_charge(q);
}

static void send_cancel(scatter_q_t *q, const ask_t *a);

/* Answered while parts of q still run (an error or a refusal decided it,
 * its client went away, the node is stopping): the remote shares still
 * waiting, or given up as slow at half time, are sent a CANCEL and the
 * query's jobs on the pool are dropped or stopped, so no node goes on
 * reading for an answer that would only be dropped as late. */
static void stop_parts(scatter_q_t *q)
{
    for (size_t i = 0; i < q->nasks; i++) {
        ask_t *a = &q->asks[i];
        if (a->state != ASK_WAITING && !(a->state == ASK_FAILED && a->slow)) continue;
        if (a->state == ASK_WAITING) a->state = ASK_ABANDONED;
        a->slow = 0;
        send_cancel(q, a); /* a local ask: its job is stopped below */
    }
    scatter_q_cancel_jobs(q);
}

/* Calls done once, stops the parts still running, then lets the query go
 * (pool jobs still running keep it alive until they end). */
void scatter_q_answer(scatter_q_t *q, cluster_answer_t *a)
{
    if (q->answered) return;
    q->answered = 1;
    unlink_query(q);
    if (a->rc == 0 && a->partial_header[0] != 0) q->s->stats.partial_answers++;
    a->server_timing[0] = 0;
    if (a->rc == 0) scatter_q_timing(q, a->server_timing, sizeof a->server_timing);
    a->stream_held = 0;
    if (a->result.stream != NULL) { /* the callee holds them from here; the query's go below */
        a->stream_held = query_stream_bytes(a->result.stream);
        alloc_budget_force(&q->s->mem, a->stream_held);
    }
    /* the parts and the answer's charge go before done: a caller that
     * starts work on the answer (a render-diff's join, on the pool) finds
     * their room given back, and one that holds the answer while it waits
     * (routes_fanout) counts it once, not beside the query's count of it */
    release_held(q);
    q->done(q->arg, a);
    if (a->result.stream != NULL) { /* not taken */
        query_stream_free(a->result.stream);
        a->result.stream = NULL;
        alloc_budget_give(&q->s->mem, a->stream_held);
    }
    stop_parts(q);
    release_held(q); /* what stopping the parts left */
    if (q->timer_open) {
        q->timer_open = 0;
        uv_close((uv_handle_t *)&q->timer, timer_closed);
    }
    scatter_q_unref(q); /* the reference the query held until answered */
}

/* One step of a Server-Timing value: name;dur=MS (ms, to the microsecond). */
static size_t timing_step(char *out, size_t n, size_t at, const char *name, uint64_t ns)
{
    if (at >= n) return at;
    int k = snprintf(out + at, n - at, "%s%s;dur=%llu.%03llu", at > 0 ? ", " : "", name,
                     (unsigned long long)(ns / 1000000), (unsigned long long)(ns / 1000 % 1000));
    return k < 0 ? n : at + (size_t)k;
}

void scatter_q_timing(const scatter_q_t *q, char *out, size_t n)
{
    const scatter_timing_t *t = &q->t;
    size_t at = 0;
    out[0] = 0;
    if (t->share_start != 0) {
        at = timing_step(out, n, at, "queue", t->share_start - t->start);
        at = timing_step(out, n, at, "share", t->share_ns);
    }
    if (t->last_answer != 0) at = timing_step(out, n, at, "peers", t->last_answer - t->start);
    if (t->merge_ns != 0) at = timing_step(out, n, at, "merge", t->merge_ns);
    /* a flame graph's finish in its three steps (query_result_t) */
    uint64_t names = q->ans.result.names_ns, encode = q->ans.result.encode_ns;
    if (names + encode != 0 && names + encode <= t->finish_ns) {
        at = timing_step(out, n, at, "cut", t->finish_ns - names - encode);
        at = timing_step(out, n, at, "names", names);
        at = timing_step(out, n, at, "encode", encode);
    } else if (t->finish_ns != 0) {
        at = timing_step(out, n, at, "finish", t->finish_ns);
    }
    timing_step(out, n, at, "total", uv_hrtime() - t->start);
}

void scatter_q_fail(scatter_q_t *q, int rc, const errmsg_t *em)
{
    if (q->rc != 0) return;
    q->rc = rc;
    q->em = *em;
}

/* ---------- asking ---------- */

static int add_ask(scatter_q_t *q, uint32_t node, int gen, const ring_ranges_t *ranges, size_t *idx)
{
    if (q->nasks == q->capasks) {
        size_t cap = q->capasks ? q->capasks * 2 : 8;
        ask_t *v = realloc(q->asks, cap * sizeof *v);
        if (v == NULL) return ERR_NOMEM;
        q->asks = v;
        q->capasks = cap;
    }
    ask_t *a = &q->asks[q->nasks];
    memset(a, 0, sizeof *a);
    a->request_id = q->s->next_id++;
    a->node = node;
    a->gen = gen;
    a->state = ASK_WAITING;
    for (size_t i = 0; i < ranges->n; i++) {
        int rc = ring_ranges_add(&a->ranges, ranges->v[i]);
        if (rc < 0) {
            ring_ranges_free(&a->ranges);
            return rc;
        }
    }
    *idx = q->nasks++;
    return 0;
}

static Flamedb__Cluster__QueryKind wire_kind(query_kind_t k)
{
    if (k == QUERY_KIND_LABEL_NAMES) return Q_KIND(LABEL_NAMES);
    if (k == QUERY_KIND_LABEL_VALUES) return Q_KIND(LABEL_VALUES);
    if (k == QUERY_KIND_LABEL_SHARES) return Q_KIND(LABEL_SHARES);
    if (k == QUERY_KIND_PROFILES) return Q_KIND(PROFILES);
    if (k == QUERY_KIND_PROFILE) return Q_KIND(PROFILE);
    return Q_KIND(MERGE);
}

/* Asks node id for its values by the ids of its union (IdSpace), listing
 * the spaces of it this query's scope holds; ks and ksp hold them. */
static void known_spaces(scatter_q_t *q, const char *id, Flamedb__Cluster__QueryRequest *m,
                         Flamedb__Cluster__KnownSpace *ks, Flamedb__Cluster__KnownSpace **ksp)
{
    storage_space_known_t v[SCATTER_SPACES_KNOWN_MAX];
    size_t n = scatter_scope_known(q->scope, id, v, SCATTER_SPACES_KNOWN_MAX);
    for (size_t i = 0; i < n; i++) {
        flamedb__cluster__known_space__init(&ks[i]);
        ks[i].nonce = v[i].nonce;
        ks[i].count = v[i].count;
        ksp[i] = &ks[i];
    }
    m->space_version = 2; /* values by id, divided by their unit (IdSpace.unit) */
    m->n_known_spaces = n;
    m->known_spaces = ksp;
}

static int send_ask(scatter_q_t *q, const ask_t *a)
{
    size_t n = a->ranges.n;
    Flamedb__Cluster__TokenRange *r = calloc(n, sizeof *r);
    Flamedb__Cluster__TokenRange **rp = calloc(n, sizeof *rp);
    int rc = r && rp ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        flamedb__cluster__token_range__init(&r[i]);
        r[i].start = a->ranges.v[i].start;
        r[i].end = a->ranges.v[i].end;
        rp[i] = &r[i];
    }
    Flamedb__Cluster__QueryRequest m = FLAMEDB__CLUSTER__QUERY_REQUEST__INIT;
    const query_spec_t *sp = &q->spec;
    m.protocol_version = CLUSTER_PROTOCOL_VERSION;
    m.tenant = q->tenant;
    m.deadline_unix_ms = q->deadline_unix_ms;
    m.request_id = a->request_id;
    m.kind = wire_kind(sp->kind);
    m.n_ranges = n;
    m.ranges = rp;
    m.selector = sp->selector ? sp->selector : "";
    m.label_name = sp->label ? sp->label : "";
    m.from_ms = sp->plan.from_s * 1000;
    m.until_ms = sp->plan.until_s * 1000;
    /* the finest windows the plan reads, so every node plans alike */
    m.min_resolution = (uint32_t)sp->plan.min_res;
    /* an averaged type's profile counts come with the timeline, in every format */
    m.timeline =
        sp->format == QUERY_FORMAT_JSON ||
        (sp->kind == QUERY_KIND_RENDER && query_type_average(query_selector_type(sp->sel)));
    m.max_nodes = (uint32_t)(sp->max_nodes > UINT32_MAX ? UINT32_MAX : sp->max_nodes);
    m.forests = sp->kind == QUERY_KIND_RENDER && query_spec_forests(sp);
    m.forest_version = m.forests ? QUERY_FOREST_V5 : 0;
    m.functions = query_spec_functions(sp); /* each share's sums, not its tree */
    if (m.forests) { /* names the share need not send: this query holds them */
        m.n_known_symbols = q->nknown;
        m.known_symbols = q->known;
    }
    const char *id = ring_node_name(q->view->ring, a->node);
    Flamedb__Cluster__KnownSpace ks[SCATTER_SPACES_KNOWN_MAX], *ksp[SCATTER_SPACES_KNOWN_MAX];
    if (m.forests && q->scope != NULL) /* its values by id, past what this query holds */
        known_spaces(q, id, &m, ks, ksp);
    if (sp->kind == QUERY_KIND_PROFILES) m.limit = (uint32_t)sp->top_limit;
    m.share_counts = sp->kind == QUERY_KIND_LABEL_SHARES; /* its gather reads counted entries */
    m.share_pushes = m.share_counts;                      /* and unites split pushes */
    m.ring_version = q->view->version;
    if (rc == 0) rc = q->s->ops.send(q->s->ops.ctx, id, MSG(QUERY), q->deadline_unix_ms, &m.base);
    free(r);
    free(rp);
    return rc;
}

/* Asks the node of a (remote) to stop its share: best effort, no answer. */
static void send_cancel(scatter_q_t *q, const ask_t *a)
{
    if (q->view->self >= 0 && a->node == (uint32_t)q->view->self) return; /* a local job */
    Flamedb__Cluster__QueryRequest m = FLAMEDB__CLUSTER__QUERY_REQUEST__INIT;
    m.protocol_version = CLUSTER_PROTOCOL_VERSION;
    m.tenant = q->tenant;
    m.deadline_unix_ms = q->deadline_unix_ms;
    m.request_id = a->request_id;
    m.kind = Q_KIND(CANCEL);
    m.selector = "";
    m.label_name = "";
    const char *id = ring_node_name(q->view->ring, a->node);
    int rc = q->s->ops.send(q->s->ops.ctx, id, MSG(QUERY), q->deadline_unix_ms, &m.base);
    if (rc != 0) log_debug("scatter", "cancel to %s: %s", id, err_message(rc));
}

/* Sends (or runs locally) ask idx; a failure to start re-plans it. */
static int ask_is_local(const scatter_q_t *q, size_t idx)
{
    return q->view->self >= 0 && q->asks[idx].node == (uint32_t)q->view->self;
}

static void start_ask(scatter_q_t *q, size_t idx)
{
    int rc = ask_is_local(q, idx) ? scatter_q_run_local(q, idx) : send_ask(q, &q->asks[idx]);
    if (rc != 0) scatter_q_ask_failed(q, idx, err_message(rc));
}

static int add_missing(scatter_q_t *q, const ring_ranges_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        int rc = ring_ranges_add(&q->missing, r->v[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Turns a read plan into asks of generation gen and starts them. */
static int ask_plan(scatter_q_t *q, ring_read_plan_t *plan, int gen)
{
    int rc = add_missing(q, &plan->missing);
    size_t first = q->nasks;
    for (uint32_t i = 0; rc == 0 && i < plan->nnodes; i++) {
        size_t idx;
        if (plan->assigned[i].n > 0) rc = add_ask(q, i, gen, &plan->assigned[i], &idx);
    }
    size_t last = q->nasks;
    /* the remote asks go out first: the local share's pool job would
     * otherwise compete with their encoding and sending for the CPU */
    for (size_t i = first; i < last; i++)
        if (!ask_is_local(q, i)) start_ask(q, i);
    for (size_t i = first; i < last; i++)
        if (ask_is_local(q, i)) start_ask(q, i);
    return rc;
}

/* Ends (exclusive of nothing: the range's own end token) of the elementary
 * ranges inside r: a read plan over these tokens covers exactly r. */
static int ends_within(const ring_t *ring, const ring_ranges_t *r, uint64_t **out, size_t *n)
{
    uint32_t count = ring_range_count(ring);
    uint64_t *v = malloc((count ? count : 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    size_t k = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t end = ring_range_at(ring, i).end;
        for (size_t j = 0; j < r->n; j++)
            if (ring_range_contains(r->v[j], end)) {
                v[k++] = end;
                break;
            }
    }
    *out = v;
    *n = k;
    return 0;
}

static void replan(scatter_q_t *q, const ring_ranges_t *ranges)
{
    const cluster_view_t *v = q->view;
    uint32_t nn = ring_node_count(v->ring);
    uint8_t *live = malloc(nn ? nn : 1);
    uint64_t *tokens = NULL;
    size_t nt = 0;
    int rc = live ? ends_within(v->ring, ranges, &tokens, &nt) : ERR_NOMEM;
    errmsg_t em = {{0}};
    ring_read_plan_t plan;
    memset(&plan, 0, sizeof plan);
    if (rc == 0 && nt > 0) {
        for (uint32_t i = 0; i < nn; i++)
            live[i] = v->live[i] && !q->excluded[i];
        rc = ring_plan_read(v->ring, v->rf, v->self, live, tokens, nt, &plan, &em);
        if (rc == 0) rc = ask_plan(q, &plan, 1);
    }
    if (rc != 0) add_missing(q, ranges); /* cannot re-plan: the ranges are missing */
    ring_read_plan_free(&plan);
    free(tokens);
    free(live);
}

void scatter_q_ask_failed(scatter_q_t *q, size_t idx, const char *why)
{
    ask_t *a = &q->asks[idx];
    if (a->state != ASK_WAITING && a->state != ASK_ANSWERED) return;
    a->state = ASK_FAILED;
    q->excluded[a->node] = 1;
    const char *node = ring_node_name(q->view->ring, a->node);
    log_debug("scatter", "node %s failed its ranges: %s", node, why ? why : "");
    if (q->answered || q->rc != 0) return;
    if (a->gen == 0 && !q->hard) {
        q->s->stats.replans++;
        ring_ranges_t r = a->ranges; /* replan may move q->asks */
        memset(&a->ranges, 0, sizeof a->ranges);
        replan(q, &r);
        q->asks[idx].ranges = r;
    } else {
        add_missing(q, &a->ranges);
    }
}

void scatter_q_ask_refused(scatter_q_t *q, size_t idx, const char *why)
{
    const ask_t *a = &q->asks[idx];
    int counts =
        (a->state == ASK_WAITING || a->state == ASK_ANSWERED) && !q->answered && q->rc == 0;
    if (counts && q->refused.n == 0) q->refused_node = a->node;
    for (size_t i = 0; counts && i < a->ranges.n; i++) {
        if (ring_ranges_add(&q->refused, a->ranges.v[i]) >= 0) continue;
        errmsg_t em;
        errmsg_set(&em, ERR_NOMEM, "out of memory");
        scatter_q_fail(q, ERR_NOMEM, &em);
        return;
    }
    scatter_q_ask_failed(q, idx, why);
}

ask_t *scatter_q_find_ask(scatter_t *s, uint64_t request_id, scatter_q_t **out)
{
    for (list_node_t *n = list_first(&s->queries); n != NULL; n = list_next(&s->queries, n)) {
        scatter_q_t *q = LIST_ENTRY(n, scatter_q_t, link);
        for (size_t i = 0; i < q->nasks; i++)
            if (q->asks[i].request_id == request_id) {
                *out = q;
                return &q->asks[i];
            }
    }
    return NULL;
}

/* ---------- progress ---------- */

static int any_waiting(const scatter_q_t *q)
{
    for (size_t i = 0; i < q->nasks; i++)
        if (q->asks[i].state == ASK_WAITING) return 1;
    return 0;
}

/* 1 when a range is missing that a live node refused as busy. */
static int refused_missing(const scatter_q_t *q)
{
    if (q->missing.n == 0 || q->refused.n == 0) return 0;
    const ring_t *ring = q->view->ring;
    for (uint32_t i = 0; i < ring_range_count(ring); i++) {
        uint64_t end = ring_range_at(ring, i).end;
        int missing = 0, refused = 0;
        for (size_t k = 0; !missing && k < q->missing.n; k++)
            missing = ring_range_contains(q->missing.v[k], end);
        for (size_t k = 0; missing && !refused && k < q->refused.n; k++)
            refused = ring_range_contains(q->refused.v[k], end);
        if (refused) return 1;
    }
    return 0;
}

/* Refuses q with 503 when ranges are missing because their node was busy:
 * asked again, the answer is whole, so it is not answered partial. */
static void refuse_busy(scatter_q_t *q)
{
    errmsg_t em;
    errmsg_set(&em, ERR_UNAVAILABLE,
               "server busy: node %s had no room for its share of the query "
               "(query-memory-bytes, or its partial queries at once) and no other replica "
               "serves its ranges; retry later or narrow the query",
               ring_node_name(q->view->ring, q->refused_node));
    q->s->stats.busy_refused++;
    scatter_q_fail(q, ERR_UNAVAILABLE, &em);
}

void scatter_q_progress(scatter_q_t *q)
{
    if (q->answered || q->merging || q->finishing) return;
    if (q->rc == 0 && !any_waiting(q) && refused_missing(q)) refuse_busy(q);
    if (q->rc != 0) {
        cluster_answer_t a = {.rc = q->rc, .em = q->em};
        query_result_init(&a.result);
        scatter_q_answer(q, &a);
        return;
    }
    /* forests wait for the last answer: one merge job takes them all and
     * finishes, rather than a job (and its hand-offs) per answer */
    if (q->queue != NULL && scatter_q_gathers_forests(q) && any_waiting(q)) return;
    if (q->queue != NULL) {
        if (scatter_q_start_merge(q) != 0) {
            errmsg_t em;
            errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
            scatter_q_fail(q, ERR_UNAVAILABLE, &em);
            scatter_q_progress(q);
        }
        return;
    }
    if (any_waiting(q)) return;
    if (scatter_q_start_finish(q) != 0) {
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE, "cannot queue work");
        scatter_q_fail(q, ERR_UNAVAILABLE, &em);
        scatter_q_progress(q);
    }
}

/* Half-time: remote nodes still silent are slow, their ranges move. Full
 * time: what is still unanswered is missing (but a local share that holds
 * the gather runs to its end: it reads only this node's disk). */
static void on_timer(uv_timer_t *t)
{
    scatter_q_t *q = t->data;
    if (q->answered) return;
    if (!q->hard) {
        size_t n = q->nasks;
        for (size_t i = 0; i < n; i++) {
            int local = q->view->self >= 0 && q->asks[i].node == (uint32_t)q->view->self;
            if (q->asks[i].state == ASK_WAITING && q->asks[i].gen == 0 && !local) {
                q->asks[i].slow = 1; /* cancelled if the query ends before its share */
                scatter_q_ask_failed(q, i, "no answer by half the query timeout");
            }
        }
        q->hard = 1;
        uint64_t now = scatter_unix_ms(q->s);
        uint64_t left = q->deadline_unix_ms > now ? q->deadline_unix_ms - now : 1;
        uv_timer_start(&q->timer, on_timer, left, 0);
    } else {
        for (size_t i = 0; i < q->nasks; i++)
            if (q->asks[i].state == ASK_WAITING && !q->asks[i].holds_gather) {
                q->asks[i].state = ASK_ABANDONED;
                q->excluded[q->asks[i].node] = 1;
                add_missing(q, &q->asks[i].ranges);
            }
    }
    scatter_q_progress(q);
}

/* ---------- starting a query ---------- */

static void refuse(cluster_answer_fn done, void *arg, int rc, const errmsg_t *em)
{
    cluster_answer_t a = {.rc = rc, .em = *em};
    query_result_init(&a.result);
    done(arg, &a);
}

/* The first plan: one profile's token (only its replicas hold it), the
 * pinned service's shard tokens, or the whole ring. */
static int first_plan(scatter_q_t *q, ring_read_plan_t *plan, errmsg_t *em)
{
    const cluster_view_t *v = q->view;
    if (v->ring == NULL || ring_node_count(v->ring) == 0)
        return errmsg_set(em, ERR_UNAVAILABLE, "no active node in the cluster yet");
    if (q->spec.kind == QUERY_KIND_PROFILE)
        return ring_plan_read(v->ring, v->rf, v->self, v->live, &q->spec.profile_token, 1, plan,
                              em);
    const char *svc = query_spec_service(&q->spec);
    uint32_t ns = ring_shards_for(&q->s->o.shards, svc);
    uint64_t *tokens = svc ? malloc(ns * sizeof *tokens) : NULL;
    if (svc != NULL && tokens == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; svc != NULL && i < ns; i++)
        tokens[i] = ring_placement_token(q->tenant, svc, i);
    int rc = ring_plan_read(v->ring, v->rf, v->self, v->live, tokens, svc ? ns : 0, plan, em);
    free(tokens);
    return rc;
}

/* The gather's names that no share sent: those this query told them it
 * holds (query_names_fn). */
static int held_names(void *ctx, const uint64_t *ids, size_t n, symtab_t *dst)
{
    scatter_q_t *q = ctx;
    return scatter_names_get(q->s->names, q->names, ids, n, dst);
}

static const symtab_t *scope_names_hold(void *ctx)
{
    scatter_q_t *q = ctx;
    return scatter_scope_names_hold(q->scope);
}

static void scope_names_release(void *ctx)
{
    scatter_q_t *q = ctx;
    scatter_scope_names_release(q->scope);
}

static int scope_names(void *ctx, const uint64_t *ids, size_t n, symtab_t *dst)
{
    scatter_q_t *q = ctx;
    return scatter_scope_names_get(q->scope, ids, n, dst);
}

static int setup(scatter_q_t *q, const query_params_t *p, int64_t now_ms, errmsg_t *em)
{
    scatter_t *s = q->s;
    int rc = query_spec_parse(q->spec.kind, p, &s->o.limits, now_ms, &q->spec, em);
    if (rc != 0) return rc;
    q->held_beside = p->held_beside;
    q->view = s->ops.view_acquire(s->ops.ctx);
    uint32_t nn = q->view->ring ? ring_node_count(q->view->ring) : 0;
    q->excluded = calloc(nn ? nn : 1, 1);
    if (q->excluded == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    rc = query_gather_new(&q->spec, &s->o.limits, &q->gather);
    if (rc == 0) query_gather_names_from(q->gather, s->storage, q->tenant); /* the local share's */
    int forests = q->spec.kind == QUERY_KIND_RENDER && query_spec_forests(&q->spec);
    if (rc == 0 && forests) {
        const char *svc = query_spec_service(&q->spec);
        rc = scatter_spaces_acquire(s->spaces, q->tenant, svc ? svc : "", &q->scope);
    }
    /* by id, the scope holds the names its shares sent; by forests, the
     * names cache lists what its shares need not send */
    if (rc == 0 && q->scope != NULL) {
        query_gather_names_via(q->gather, scope_names, q);
        query_gather_names_lent(q->gather, scope_names_hold, scope_names_release, q);
    }
    if (rc == 0 && forests && q->scope == NULL)
        rc = scatter_names_acquire(s->names, q->tenant, &q->names, &q->known, &q->nknown);
    if (rc == 0 && q->names != NULL) query_gather_names_via(q->gather, held_names, q);
    /* the ids take at most a quarter of a request: the others' names are sent */
    size_t most = s->o.max_message_bytes / 4 / sizeof *q->known;
    if (q->nknown > most) q->nknown = most;
    return rc != 0 ? errmsg_set(em, rc, "out of memory") : 0;
}

void scatter_query(scatter_t *s, query_kind_t kind, const char *tenant, const query_params_t *p,
                   int64_t now_ms, cluster_answer_fn done, void *arg)
{
    errmsg_t em = {{0}};
    if (s->closing || s->ninflight >= s->o.max_inflight) {
        s->stats.busy += !s->closing;
        errmsg_set(&em, ERR_UNAVAILABLE, "%s",
                   s->closing ? "the node is stopping" : "too many queries in flight; retry");
        refuse(done, arg, ERR_UNAVAILABLE, &em);
        return;
    }
    if (s->o.max_memory_bytes != 0 && alloc_budget_used(&s->mem) >= s->o.max_memory_bytes) {
        s->stats.memory_refused++;
        errmsg_set(&em, ERR_UNAVAILABLE,
                   "server busy: the partial results of the queries this node coordinates "
                   "hold %zu bytes (query-memory-bytes); retry later",
                   s->o.max_memory_bytes);
        refuse(done, arg, ERR_UNAVAILABLE, &em);
        return;
    }
    scatter_q_t *q = calloc(1, sizeof *q);
    if (q == NULL) {
        errmsg_set(&em, ERR_NOMEM, "out of memory");
        refuse(done, arg, ERR_NOMEM, &em);
        return;
    }
    q->s = s;
    q->refs = 1;
    q->t.start = uv_hrtime();
    list_init(&q->jobs);
    q->spec.kind = kind;
    q->done = done;
    q->arg = arg;
    query_result_init(&q->ans.result);
    snprintf(q->tenant, sizeof q->tenant, "%s", tenant);
    ring_read_plan_t plan;
    memset(&plan, 0, sizeof plan);
    int rc = setup(q, p, now_ms, &em);
    if (rc == 0) rc = first_plan(q, &plan, &em);
    if (rc != 0) {
        refuse(done, arg, rc, &em);
        ring_read_plan_free(&plan);
        scatter_q_free(q);
        return;
    }
    s->stats.queries++;
    s->ninflight++;
    list_push_front(&s->queries, &q->link);
    q->deadline_unix_ms = scatter_unix_ms(s) + s->o.query_timeout_ms;
    uv_timer_init(s->loop, &q->timer);
    q->timer.data = q;
    q->timer_open = 1;
    q->refs++; /* the timer, until closed */
    uv_timer_start(&q->timer, on_timer, (s->o.query_timeout_ms + 1) / 2, 0);
    q->refs++; /* held across the asks: one may answer synchronously */
    if (ask_plan(q, &plan, 0) != 0) {
        errmsg_set(&em, ERR_NOMEM, "out of memory");
        scatter_q_fail(q, ERR_NOMEM, &em);
    }
    ring_read_plan_free(&plan);
    scatter_q_progress(q);
    scatter_q_unref(q);
}

/* The client went away: answer at once (the answer goes nowhere; answering
 * frees the gather and the answers not merged yet, and stops the parts
 * still running: the asks still waiting are sent a CANCEL, the jobs not
 * started dropped). */
void scatter_cancel(scatter_t *s, void *arg)
{
    scatter_q_t *q = NULL;
    for (list_node_t *n = list_first(&s->queries); n != NULL; n = list_next(&s->queries, n))
        if (LIST_ENTRY(n, scatter_q_t, link)->arg == arg) {
            q = LIST_ENTRY(n, scatter_q_t, link);
            break;
        }
    if (q == NULL) return; /* answered already */
    s->stats.cancelled++;
    q->refs++;
    cluster_answer_t a = {.rc = ERR_UNAVAILABLE};
    errmsg_set(&a.em, ERR_UNAVAILABLE, "cancelled: the client closed the connection");
    query_result_init(&a.result);
    scatter_q_answer(q, &a); /* stops its parts, here and on the other nodes */
    scatter_q_unref(q);
}

/* ---------- answers from other nodes ---------- */

/* The loop routes an answer by its envelope (request id, sender) and queues
 * it undecoded: the merge job decodes, checks and merges it on the pool
 * (scatter_merge.c), so a PartialResult is unpacked once, off the loop. */
void scatter_on_partial(void *ctx, cluster_msg_t *msg)
{
    scatter_t *s = ctx;
    scatter_q_t *q = NULL;
    ask_t *a = scatter_q_find_ask(s, msg->env->request_id, &q);
    if (a == NULL || a->state != ASK_WAITING || q->answered ||
        strcmp(msg->env->sender_id, ring_node_name(q->view->ring, a->node)) != 0) {
        s->stats.late_dropped++;
        return;
    }
    size_t idx = (size_t)(a - q->asks);
    item_t *it = calloc(1, sizeof *it);
    if (it == NULL) {
        q->refs++;
        scatter_q_ask_failed(q, idx, "out of memory");
        scatter_q_progress(q);
        scatter_q_unref(q);
        return;
    }
    it->msg = *msg; /* taken: the merge job decodes the body */
    memset(msg, 0, sizeof *msg);
    it->remote = 1;
    it->ask = idx;
    it->bytes = it->msg.arena.total;
    a->state = ASK_ANSWERED;
    q->t.last_answer = uv_hrtime();
    q->refs++;
    scatter_q_enqueue(q, it);
    q->items_bytes += it->bytes;
    scatter_q_charge(q);
    scatter_q_progress(q);
    scatter_q_unref(q);
}
