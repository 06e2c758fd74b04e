/* scatter_merge.c — the coordinator's thread-pool work: the local node's
 * share, merging answers into the gather, the final encoding, and the
 * description of what is missing.
 *
 * One job at a time owns the gather (q->merging or q->finishing is set on
 * the loop while it runs), so the gather needs no lock. When the local share
 * is the only ask (one node, or every range on this node) the job that
 * computed it merges and truncates and encodes: a render on one node is one
 * pool job. A render gathered as forests takes the gather in its local
 * job with other asks too (which adds its own forests), and its answers
 * wait until none is outstanding, so one merge job adds them all and
 * finishes: two jobs in all.
 * Otherwise its partial is queued like a remote answer, so the remote
 * answers that come while it reads are merged meanwhile. The merge job
 * that takes the last answers finishes the query itself.
 *
 * A remote answer arrives as an envelope the loop only routed; its merge job
 * decodes and checks the PartialResult (once, on the pool) and merges its
 * call tree first: decoding either adds all of it or nothing, so a corrupt
 * tree only moves that node's ranges elsewhere; a failure after that point
 * leaves the gather holding part of an answer, and the query fails rather
 * than answer short.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/log.h"
#include "node/cluster/scatter_int.h"

int scatter_error_is_final(int rc)
{
    return rc == ERR_LIMIT || rc == ERR_INVALID_ARGUMENT || rc == ERR_TOO_LARGE;
}

void scatter_q_item_free(item_t *it)
{
    cluster_msg_free(&it->msg);
    query_partial_free(&it->local);
    free(it);
}

int scatter_q_gathers_forests(const scatter_q_t *q)
{
    return q->spec.kind == QUERY_KIND_RENDER && query_spec_forests(&q->spec);
}

/* Queues a job of q on the query lane, linked in q->jobs until its done
 * callback (which unlinks it first). */
static int submit(scatter_q_t *q, scatter_job_t *sj, workq_fn fn, workq_done_fn done)
{
    int rc = workq_submit(q->s->workq, WORKQ_QUERY, &sj->w, fn, done);
    if (rc == 0) list_push_back(&q->jobs, &sj->link);
    return rc;
}

void scatter_q_cancel_jobs(scatter_q_t *q)
{
    list_node_t *n = list_first(&q->jobs), *next;
    for (; n != NULL; n = next) {
        next = list_next(&q->jobs, n); /* a done callback frees only its own job */
        scatter_job_t *sj = LIST_ENTRY(n, scatter_job_t, link);
        atomic_store_explicit(&sj->cancel, 1, memory_order_relaxed); /* running: stops early */
        workq_cancel(&sj->w);
    }
}

void scatter_q_enqueue(scatter_q_t *q, item_t *it)
{
    it->next = q->queue;
    q->queue = it;
}

/* Nothing is left to ask or merge: the job that holds the gather may end
 * the query. Loop thread. */
static int last_step(const scatter_q_t *q)
{
    for (size_t i = 0; i < q->nasks; i++)
        if (q->asks[i].state == ASK_WAITING) return 0;
    return q->queue == NULL;
}

/* Prepares the finish on the loop (what is missing is known by now); 0 or
 * an error, then the job must not finish. */
static int prepare_finish(scatter_q_t *q)
{
    free(q->partial_json); /* from a finish that did not happen: ranges may have moved since */
    q->partial_json = NULL;
    q->ans.partial_header[0] = 0;
    if (q->missing.n == 0) return 0;
    return scatter_q_describe_missing(q, q->ans.partial_header, sizeof q->ans.partial_header,
                                      &q->partial_json);
}

/* Pool: span trees that may leave profiles out make the answer partial too
 * (reason span_members): added to the header and JSON members that
 * prepare_finish made for missing ranges, if any. */
static int describe_partial_spans(scatter_q_t *q)
{
    uint64_t n = query_gather_partial_spans(q->gather);
    if (n == 0) return 0;
    char *h = q->ans.partial_header;
    size_t len = strlen(h), hn = sizeof q->ans.partial_header;
    snprintf(h + len, hn - len, "%sspan_members=%llu", len > 0 ? "; " : "", (unsigned long long)n);
    buf_t j;
    buf_init(&j, 64 * 1024);
    int rc = q->partial_json != NULL ? buf_append_str(&j, q->partial_json)
                                     : buf_append_str(&j, "\"partial\":true");
    if (rc == 0)
        rc = buf_printf(&j, ",\"partial_reason\":\"%s\",\"partial_spans\":%llu",
                        q->partial_json != NULL ? "ranges,span_members" : "span_members",
                        (unsigned long long)n);
    size_t jn;
    char *json = rc == 0 ? (char *)buf_steal(&j, &jn) : NULL;
    buf_free(&j);
    if (json == NULL) return rc != 0 ? rc : ERR_NOMEM;
    free(q->partial_json);
    q->partial_json = json;
    return 0;
}

/* What the query's merge holds: its gather and the values its shares
 * answered by id (query-memory-bytes). The job that holds the gather. */
static size_t held_bytes(const scatter_q_t *q)
{
    return query_gather_bytes(q->gather) + q->sums.cap * sizeof *q->sums.v;
}

static int make_sums_forest(void *ctx, storage_follow_t *f, storage_merged_tab_t *out, errmsg_t *em)
{
    scatter_q_t *q = ctx;
    return scatter_scope_forest_followed(q->scope, &q->sums, f, out, em);
}

/* Pool: the forest of the values the shares answered by id, into the
 * gather beside any forests they sent (none when nobody answered by id);
 * its nodes filed by a helper as it is made. */
static int add_sums_forest(scatter_q_t *q, errmsg_t *em)
{
    if (!q->sums.added) return 0;
    return query_gather_add_made(q->gather, make_sums_forest, q, em);
}

/* Pool: the names of the symbols of t's ids new to the scope, from this
 * node's storage into the scope, before their structure (as a remote
 * share's come with theirs): the answer is then written from the scope's
 * names in place (query_gather_names_lent). */
static int local_names(scatter_q_t *q, const storage_merged_tab_t *t, errmsg_t *em)
{
    if (t->space_base >= t->n || t->space_sym == NULL) return 0;
    size_t n = t->n - t->space_base;
    symtab_t *names = symtab_new();
    int rc = names != NULL ? storage_load_symbols(q->s->storage, q->tenant, t->space_sym, n, names)
                           : ERR_NOMEM;
    if (rc == 0) rc = scatter_scope_add_names_from(q->scope, names, t->space_sym, n);
    symtab_free(names);
    return rc != 0 ? errmsg_set(em, rc, "loading the local share's names: %s", err_message(rc)) : 0;
}

/* Pool: adds a partial of this node to the gather; its union's forest with
 * an id space goes into the query's sums by id first (all or nothing: a
 * failure there leaves nothing of it held), its new symbols' names into
 * the scope before. */
static int add_local(scatter_q_t *q, item_t *it)
{
    query_partial_t *p = &it->local;
    if (q->scope != NULL && p->ntabs == 1 && p->tabs[0].space_nonce != 0 && p->tabs[0].nonneg) {
        int rc = local_names(q, &p->tabs[0], &it->em);
        if (rc == 0)
            rc = scatter_scope_add_tab(q->scope, q->view->self_id, &p->tabs[0], &q->sums, &it->em);
        if (rc != 0) return rc;
        storage_merged_tabs_free(p->tabs, p->ntabs);
        p->tabs = NULL;
        p->ntabs = 0;
    }
    it->fatal = 1; /* the gather may hold part of it */
    return query_gather_add(q->gather, p, &it->em);
}

/* Pool: truncates and encodes the answer into q->ans. The JSON encoders
 * give the deep levels to the render's helper after other nodes' answers
 * too, not only after this node's only share: on 3 nodes RF 1 a service's
 * render took 0.07-0.11 ms less (the encoding 0.05 ms less; the rest is
 * the answer sent and read sooner while the helper keeps a CPU awake) for
 * about 0.3 ms more node CPU. */
static void finish_run(scatter_q_t *q)
{
    int rc = add_sums_forest(q, &q->ans.em);
    if (rc != 0) {
        q->ans.rc = rc;
        return;
    }
    rc = describe_partial_spans(q);
    if (rc != 0) {
        q->ans.rc = errmsg_set(&q->ans.em, rc, "building the answer: %s", err_message(rc));
        return;
    }
    q->ans.rc = query_gather_finish(q->gather, q->partial_json, &q->ans.result, &q->ans.em);
}

/* finish_run, timed: its ns into *ns (the job's, for the loop to add). */
static void finish_answer(scatter_q_t *q, uint64_t *ns)
{
    uint64_t t0 = uv_hrtime();
    finish_run(q);
    *ns = uv_hrtime() - t0;
}

/* Loop: a job that finished the query hands the answer over. */
static void finished(scatter_q_t *q, int status)
{
    if (status != 0 && q->ans.rc == 0)
        q->ans.rc = errmsg_set(&q->ans.em, ERR_UNAVAILABLE, "cancelled: the node is stopping");
    q->answer_bytes = q->ans.result.body.len; /* over the budget: 503 instead */
    if (q->ans.result.stream != NULL) {       /* it took the tree and names from the gather */
        q->answer_bytes += query_stream_bytes(q->ans.result.stream);
        q->gather_bytes = held_bytes(q);
    }
    scatter_q_charge(q);
    if (q->rc == 0) scatter_q_answer(q, &q->ans);
}

/* ---------- the local share ---------- */

typedef struct local_job {
    scatter_job_t sj;
    scatter_q_t *q;
    size_t ask;
    item_t *it;
    query_range_t *ranges;
    size_t nranges;
    int merge;           /* the only ask owns the gather: it merges its partial itself */
    int finish;          /* ... and it is the only ask: it also encodes the answer */
    int merged;          /* the gather holds the partial (success or not) */
    int stopped;         /* the share stopped early: cancelled or past the deadline */
    size_t gather_bytes; /* measured after merging, when merge */
    int mem_refused;     /* its merge's working memory passed query-memory-bytes */
    uint64_t started;    /* uv_hrtime() as it began */
    uint64_t share_ns, finish_ns;
} local_job_t;

/* Pool: sets what the local share's job holds on query-memory-bytes to
 * bytes; ERR_UNAVAILABLE naming the setting when that does not fit. */
static int local_hold(scatter_q_t *q, alloc_charge_t *work, size_t bytes, const char *what,
                      errmsg_t *em)
{
    if (bytes <= work->used) {
        alloc_charge_sub(work, work->used - bytes);
        return 0;
    }
    if (alloc_charge_add(work, bytes - work->used) == 0) return 0;
    return errmsg_set(em, ERR_UNAVAILABLE,
                      "server busy: the local share's %s (%zu bytes) would pass "
                      "query-memory-bytes (%zu bytes); retry later or narrow the query",
                      what, bytes, q->s->o.max_memory_bytes);
}

static void local_work(workq_job_t *w)
{
    local_job_t *j = w->data;
    scatter_q_t *q = j->q;
    j->started = uv_hrtime();
    /* beside other nodes' shares the render's helper is woken only now (the
     * query's only ask woke it as it was handed over: scatter_q_run_local) */
    if (!j->finish && q->spec.kind == QUERY_KIND_RENDER) assist_wake(q->s->o.limits.assist);
    item_t *it = j->it;
    query_partial_args_t a;
    query_spec_args(&q->spec, &a);
    a.ranges = j->ranges;
    a.nranges = j->nranges;
    query_stop_t stop = {&j->sj.cancel, (int64_t)q->deadline_unix_ms};
    a.stop = &stop;
    if (j->finish) a.final_max_nodes = query_spec_final_max_nodes(&q->spec); /* the only ask */
    a.forests = query_spec_forests(&q->spec); /* else its tokens' forests, not a tree */
    a.names_later = 1; /* the gather loads the names of the forests' nodes it keeps */
    /* beside other shares: its union by id, as they answer (add_local) */
    storage_space_known_t known[SCATTER_SPACES_KNOWN_MAX];
    if (a.forests && !j->finish && q->scope != NULL) {
        a.space = 1;
        a.known_spaces = known;
        a.nknown_spaces =
            scatter_scope_known(q->scope, q->view->self_id, known, SCATTER_SPACES_KNOWN_MAX);
    }
    alloc_charge_t work; /* the merge's working memory, on query-memory-bytes while it runs */
    alloc_charge_init(&work, &q->s->mem);
    alloc_charge_beside(&work, q->held_beside);
    a.charge = &work;
    it->rc = query_partial_run(q->s->storage, q->tenant, &a, &q->s->o.limits, &it->local, &it->em);
    j->stopped = it->rc != 0 && query_stop_check(&stop, NULL) != 0;
    j->share_ns = uv_hrtime() - j->started;
    it->bytes = query_partial_bytes(&it->local);
    /* until the loop counts them (scatter_q_charge), the result, the
     * gather and the answer stay on the budget while this job holds them */
    if (it->rc == 0) it->rc = local_hold(q, &work, it->bytes, "result", &it->em);
    if (it->rc == 0 && j->merge) {
        it->rc = add_local(q, it);
        j->share_ns = uv_hrtime() - j->started;
        j->merged = 1;
        j->gather_bytes = held_bytes(q);
        size_t held = j->gather_bytes + query_partial_bytes(&it->local);
        if (it->rc == 0) it->rc = local_hold(q, &work, held, "merged tree", &it->em);
        if (it->rc == 0 && j->finish) {
            /* the truncation, selection and encoding count while they run */
            alloc_charge_t fin;
            alloc_charge_init(&fin, &q->s->mem);
            alloc_charge_beside(&fin, work.used + q->held_beside); /* + the result, merged tree */
            query_gather_charge(q->gather, &fin, j->gather_bytes);
            finish_answer(q, &j->finish_ns);
            query_gather_charge(q->gather, NULL, 0);
            alloc_charge_done(&fin);
            held += q->ans.result.body.len;
            if (q->ans.result.stream != NULL) /* the tree and names it took: counted once */
                held = held_bytes(q) + query_partial_bytes(&it->local) +
                       query_stream_bytes(q->ans.result.stream);
            if (q->ans.rc == 0 && local_hold(q, &work, held, "answer", &q->ans.em) != 0) {
                q->ans.rc = ERR_UNAVAILABLE;
                query_result_free(&q->ans.result);
                query_result_init(&q->ans.result);
            }
        }
    }
    j->mem_refused = it->rc == ERR_UNAVAILABLE;
    alloc_charge_done(&work);
}

static void local_done(workq_job_t *w, int status)
{
    local_job_t *j = w->data;
    scatter_q_t *q = j->q;
    item_t *it = j->it;
    ask_t *a = &q->asks[j->ask];
    list_remove(&j->sj.link);
    if (j->merge) q->merging = 0;
    if (j->finish) q->finishing = 0;
    a->holds_gather = 0;
    if (j->merged) q->gather_bytes = j->gather_bytes;
    if (status == 0) {
        q->t.share_start = j->started;
        q->t.share_ns += j->share_ns;
        q->t.finish_ns += j->finish_ns;
    }
    q->s->stats.serve_memory_refused += j->mem_refused;
    q->s->stats.shares_stopped +=
        j->stopped || (status != 0 && atomic_load_explicit(&j->sj.cancel, memory_order_relaxed));
    if (status != 0 && it->rc == 0) it->rc = errmsg_set(&it->em, ERR_UNAVAILABLE, "cancelled");
    /* the timer never abandons an ask whose job holds the gather: its data
     * must not be merged and counted missing at once */
    ASSERT_DEBUG(!j->merged || q->answered || a->state == ASK_WAITING);
    if (q->answered || a->state != ASK_WAITING) {
        scatter_q_item_free(it);
    } else if (it->rc == 0) {
        a->state = ASK_ANSWERED;
        if (j->merged) {
            scatter_q_item_free(it);
        } else {
            scatter_q_enqueue(q, it);
            q->items_bytes += it->bytes;
        }
        scatter_q_charge(q);
        if (j->finish) finished(q, status);
    } else if (it->fatal || scatter_error_is_final(it->rc)) {
        a->state = ASK_FAILED;
        scatter_q_fail(q, it->rc, &it->em);
        scatter_q_item_free(it);
    } else if (it->rc == ERR_UNAVAILABLE) {
        scatter_q_ask_refused(q, j->ask, it->em.text);
        scatter_q_item_free(it);
    } else {
        scatter_q_ask_failed(q, j->ask, it->em.text);
        scatter_q_item_free(it);
    }
    free(j->ranges);
    free(j);
    scatter_q_progress(q);
    scatter_q_unref(q);
}

int scatter_q_run_local(scatter_q_t *q, size_t idx)
{
    const ask_t *a = &q->asks[idx];
    local_job_t *j = calloc(1, sizeof *j);
    item_t *it = calloc(1, sizeof *it);
    query_range_t *r = calloc(a->ranges.n ? a->ranges.n : 1, sizeof *r);
    if (j == NULL || it == NULL || r == NULL) {
        free(j);
        free(it);
        free(r);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < a->ranges.n; i++)
        r[i] = (query_range_t){a->ranges.v[i].start, a->ranges.v[i].end};
    it->ask = idx;
    *j = (local_job_t){.q = q, .ask = idx, .it = it, .ranges = r, .nranges = a->ranges.n};
    /* The only ask of the query (one node) takes the gather, merges and
     * finishes: one job. With other asks, a render gathered as forests takes
     * the gather too and merges its partial itself (a job and two thread
     * hand-offs fewer): the answers that come meanwhile wait for it, and
     * adding them later costs little (scatter_q_gathers_forests). Otherwise
     * the share leaves its partial to a merge job, as a remote answer, so
     * the gather stays free while the share reads: the answers that come
     * meanwhile are decoded and merged on another thread instead of after
     * it. */
    int only = q->nasks == 1;
    j->merge =
        !q->merging && !q->finishing && q->queue == NULL && (only || scatter_q_gathers_forests(q));
    j->finish = j->merge && only && prepare_finish(q) == 0;
    j->sj.w.data = j;
    /* not started by the deadline: not run; its ranges count as missing */
    j->sj.w.deadline_unix_ms = q->deadline_unix_ms;
    /* a render's helper takes its first part once the series are chosen,
     * and must be awake by then: a sleeping thread takes tens of
     * microseconds to run, over a hundred on a busy machine. The query's
     * only ask wakes it here, as the job is handed to the pool, not as the
     * job starts: on an idle node (its helper asleep) the helper started
     * its part 140-170 us into the render instead of 210-280. Beside other
     * nodes' shares it is woken as the job starts (local_work): woken here
     * there too, a cluster's renders were no faster on a small machine,
     * where the nodes answering share its CPUs. Other queries use no
     * helper. */
    if (j->finish && q->spec.kind == QUERY_KIND_RENDER) assist_wake(q->s->o.limits.assist);
    if (submit(q, &j->sj, local_work, local_done) != 0) {
        free(j);
        free(it);
        free(r);
        return ERR_UNAVAILABLE;
    }
    q->s->stats.pool_jobs++;
    q->merging |= j->merge;
    q->finishing |= j->finish;
    q->asks[idx].holds_gather = j->merge;
    q->refs++;
    return 0;
}

/* ---------- merging ---------- */

/* The series count of a flame graph partial and the pyroscope_spy its series
 * share ("" when they don't or have none). */
static int series_of(const Flamedb__Cluster__PartialResult *pr, size_t *n, char *spy,
                     size_t spy_max)
{
    size_t len = pr->spy_name != NULL ? strlen(pr->spy_name) : 0;
    if (len >= spy_max) return ERR_CORRUPT;
    memcpy(spy, pr->spy_name != NULL ? pr->spy_name : "", len + 1);
    *n = (size_t)pr->series_count;
    return 0;
}

static void free_held_msg(void *p)
{
    cluster_msg_free(p);
    free(p);
}

/* The tree and the forests of a partial: all added, or none. The gather
 * reads forests of encoding 4 and 5 where they lie in the received
 * message, which it takes from it and holds until it is freed. */
static int add_trees(query_gather_t *g, const Flamedb__Cluster__PartialResult *pr, item_t *it,
                     errmsg_t *em)
{
    if (pr->n_forests == 0)
        return query_gather_add_tree(g, pr->calltree.data, pr->calltree.len, em);
    size_t n = pr->n_forests + 1;
    const uint8_t **enc = malloc(n * sizeof *enc);
    size_t *len = malloc(n * sizeof *len);
    int rc = enc && len ? 0 : errmsg_set(em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const ProtobufCBinaryData *b = i == 0 ? &pr->calltree : &pr->forests[i - 1];
        enc[i] = b->data;
        len[i] = b->len;
    }
    cluster_msg_t *hold = rc == 0 ? malloc(sizeof *hold) : NULL;
    if (hold != NULL) {
        *hold = it->msg; /* pr lives on in it */
        memset(&it->msg, 0, sizeof it->msg);
        rc = query_gather_add_trees_held(g, enc, len, n, hold, free_held_msg, em);
    } else if (rc == 0) {
        rc = query_gather_add_trees(g, enc, len, n, em); /* copied */
    }
    free(enc);
    free(len);
    return rc;
}

/* The names a share sent, pointing into its answer (caller frees *out). */
static int names_of(const Flamedb__Cluster__PartialResult *pr, scatter_names_sym_t **out)
{
    scatter_names_sym_t *v = malloc((pr->n_symbols ? pr->n_symbols : 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < pr->n_symbols; i++) {
        const Flamedb__Cluster__Symbol *s = pr->symbols[i];
        v[i] = (scatter_names_sym_t){s->id, (const char *)s->name.data, (const char *)s->file.data,
                                     s->name.len, s->file.len};
    }
    *out = v;
    return 0;
}

/* The names a share sent, kept for the next renders (scatter_names.h); a
 * render by id keeps them with its scope instead (add_space). */
static int keep_names(scatter_q_t *q, const Flamedb__Cluster__PartialResult *pr)
{
    if (q->s->names == NULL || pr->n_symbols == 0 || pr->space != NULL) return 0;
    scatter_names_sym_t *v = NULL;
    int rc = names_of(pr, &v);
    if (rc == 0) rc = scatter_names_put(q->s->names, q->tenant, v, pr->n_symbols);
    free(v);
    return rc;
}

/* The names of a share's symbols, kept with the query's scope. */
static int scope_names(scatter_q_t *q, const Flamedb__Cluster__PartialResult *pr)
{
    if (pr->n_symbols == 0) return 0;
    scatter_names_sym_t *v = NULL;
    int rc = names_of(pr, &v);
    if (rc == 0) rc = scatter_scope_add_names(q->scope, v, pr->n_symbols);
    free(v);
    return rc;
}

/* A share's function sums (asked with functions): three arrays of one length. */
static int merge_functions(query_gather_t *g, const Flamedb__Cluster__PartialResult *pr, item_t *it)
{
    size_t n = pr->n_function_syms;
    if (pr->n_function_selves != n || pr->n_function_totals != n)
        return errmsg_set(&it->em, ERR_CORRUPT, "partial: function arrays of unequal lengths");
    return query_gather_add_functions(g, pr->function_syms, pr->function_selves,
                                      pr->function_totals, n, pr->functions_total, &it->em);
}

static int merge_render(query_gather_t *g, const Flamedb__Cluster__PartialResult *pr, item_t *it)
{
    size_t nseries;
    char spy[256];
    int rc = series_of(pr, &nseries, spy, sizeof spy);
    if (rc != 0) return errmsg_set(&it->em, rc, "partial: bad series count or spy name");
    rc = add_trees(g, pr, it, &it->em);
    if (rc != 0) { /* a refusal over query-memory-bytes decides the query too */
        it->fatal = rc == ERR_LIMIT || rc == ERR_UNAVAILABLE || rc == ERR_TOO_LARGE;
        return rc;
    }
    it->fatal = 1; /* from here on the gather holds part of this answer */
    for (size_t i = 0; rc == 0 && i < pr->n_symbols; i++) {
        const Flamedb__Cluster__Symbol *s = pr->symbols[i];
        rc = query_gather_add_symbol(g, s->id, (const char *)s->name.data, s->name.len,
                                     (const char *)s->file.data, s->file.len);
    }
    if (rc == 0) rc = query_gather_add_series(g, nseries, spy[0] ? spy : NULL, &it->em);
    if (rc == 0) rc = merge_functions(g, pr, it);
    if (rc == 0) query_gather_add_partial_spans(g, pr->partial_spans);
    for (size_t i = 0; rc == 0 && i < pr->n_totals; i++) {
        int64_t ms = pr->totals[i]->time_ms;
        rc = ms % 1000 != 0 ? ERR_CORRUPT
                            : query_gather_add_total(g, ms / 1000, pr->totals[i]->value, &it->em);
        if (rc == 0)
            rc = query_gather_add_pushes(g, ms / 1000, pr->totals[i]->count,
                                         pr->totals[i]->pushes.data, pr->totals[i]->pushes.len,
                                         &it->em);
    }
    return rc;
}

static int served_matches(const Flamedb__Cluster__PartialResult *pr, const ring_ranges_t *r)
{
    if (pr->n_served != r->n) return 0;
    for (size_t i = 0; i < pr->n_served; i++)
        if (pr->served[i]->start != r->v[i].start || pr->served[i]->end != r->v[i].end) return 0;
    return 1;
}

/* Decodes and checks an answer: a refusal from the node, or one for another
 * tenant or other ranges than asked, moves its ranges elsewhere (or decides
 * the query, for an error every node would give). */
static const Flamedb__Cluster__PartialResult *checked_answer(scatter_q_t *q, item_t *it,
                                                             const ring_ranges_t *asked)
{
    const char *node = it->msg.env->sender_id;
    errmsg_t em = {{0}};
    int rc = cluster_wire_decode_body(&it->msg, &q->s->limits, 0, &em);
    if (rc != 0) {
        it->rc = errmsg_set(&it->em, rc, "node %s: %.400s", node, em.text);
        return NULL;
    }
    const Flamedb__Cluster__PartialResult *pr = (const void *)it->msg.body;
    if (strcmp(pr->tenant, q->tenant) != 0) {
        it->rc = errmsg_set(&it->em, ERR_CORRUPT, "node %s answered for another tenant", node);
    } else if (pr->status != 0) {
        int code = pr->status < ERR_UNAUTHORIZED ? ERR_INTERNAL : pr->status;
        it->rc = errmsg_set(&it->em, code, "node %s: %.400s", node, pr->reason);
    } else if (!served_matches(pr, asked)) {
        it->rc = errmsg_set(&it->em, ERR_CORRUPT, "node %s served other ranges than asked", node);
    }
    return it->rc == 0 ? pr : NULL;
}

/* A share's values by the ids of its union (PartialResult.space) into the
 * query's sums: all or nothing; once added, the sums hold part of it. */
static int add_space(scatter_q_t *q, const Flamedb__Cluster__PartialResult *pr, item_t *it)
{
    const Flamedb__Cluster__IdSpace *sp = pr->space;
    if (sp == NULL) return 0;
    const char *node = it->msg.env->sender_id;
    if (q->scope == NULL)
        return errmsg_set(&it->em, ERR_CORRUPT, "node %s answered by id unasked", node);
    errmsg_t em = {{0}};
    int rc = scope_names(q, pr); /* first: every symbol its map leads to is named */
    if (rc != 0) errmsg_set(&em, rc, "keeping the names: %s", err_message(rc));
    scatter_space_answer_t a = {.peer = node,
                                .nonce = sp->nonce,
                                .base = sp->first,
                                .count = sp->count,
                                .unit = sp->unit,
                                .structure = sp->structure.data,
                                .slen = sp->structure.len,
                                .values = sp->values.data,
                                .vlen = sp->values.len};
    if (rc == 0) rc = scatter_scope_add(q->scope, &a, &q->sums, &em);
    it->fatal = rc == 0;
    if (rc != 0) /* a corrupt answer: the node's ranges move to another replica */
        errmsg_set(&it->em, rc, "node %s: %.400s", node, em.text);
    return rc;
}

static void merge_remote(scatter_q_t *q, item_t *it, const ring_ranges_t *asked)
{
    const Flamedb__Cluster__PartialResult *pr = checked_answer(q, it, asked);
    if (pr == NULL) return;
    if (q->spec.kind == QUERY_KIND_RENDER) {
        it->rc = add_space(q, pr, it);
        int held = it->fatal; /* the sums hold part of it: never asked again */
        if (it->rc == 0) it->rc = merge_render(q->gather, pr, it);
        it->fatal |= held;
        if (it->rc == 0 && query_spec_forests(&q->spec)) it->rc = keep_names(q, pr);
    } else if (q->spec.kind == QUERY_KIND_PROFILE) {
        it->rc = merge_render(q->gather, pr, it);
        for (size_t i = 0; it->rc == 0 && i < pr->n_values; i++)
            it->rc = query_gather_add_value(q->gather, (const char *)pr->values[i].data,
                                            pr->values[i].len);
    } else {
        it->fatal = 1; /* a union: harmless twice, but a limit decides the query */
        for (size_t i = 0; it->rc == 0 && i < pr->n_values; i++)
            it->rc = query_gather_add_value(q->gather, (const char *)pr->values[i].data,
                                            pr->values[i].len);
        if (it->rc == ERR_LIMIT) query_gather_limit_reason(q->gather, &it->em);
    }
    if (it->rc != 0 && it->em.text[0] == 0)
        errmsg_set(&it->em, it->rc, "merging a partial: %s", err_message(it->rc));
}

typedef struct merge_job {
    scatter_job_t sj;
    scatter_q_t *q;
    item_t *items;
    ring_ranges_t *asked; /* per item, in order: the ranges its ask covers (borrowed) */
    int finish;           /* the last answers: the job also encodes the answer */
    size_t gather_bytes;  /* measured after merging */
    size_t base;          /* the gather's (and local items') bytes the query counts already */
    alloc_charge_t work;  /* the gather's growth while the job runs: query-memory-bytes */
    uint64_t merge_ns, finish_ns;
} merge_job_t;

static void merge_work(workq_job_t *w)
{
    merge_job_t *j = w->data;
    int ok = 1;
    size_t k = 0;
    uint64_t t0 = uv_hrtime();
    /* the finish files the forest of the sums on a helper as it is made
     * (query_gather_add_made): woken now, it is awake by then */
    if (j->finish && j->q->scope != NULL && scatter_q_gathers_forests(j->q))
        assist_wake(j->q->s->o.limits.assist);
    /* what the gather grows to beyond what the query counts is charged as
     * it grows, until the loop counts it (merge_done) */
    query_gather_charge(j->q->gather, &j->work, j->base);
    for (item_t *it = j->items; it != NULL; it = it->next, k++) {
        if (it->remote) {
            merge_remote(j->q, it, &j->asked[k]);
        } else {
            it->rc = add_local(j->q, it);
        }
        ok &= it->rc == 0;
    }
    j->gather_bytes = held_bytes(j->q);
    j->merge_ns = uv_hrtime() - t0;
    if (ok && j->finish) finish_answer(j->q, &j->finish_ns);
    query_gather_charge(j->q->gather, NULL, 0);
}

static void merge_done(workq_job_t *w, int status)
{
    merge_job_t *j = w->data;
    scatter_q_t *q = j->q;
    list_remove(&j->sj.link);
    q->merging = 0;
    int ok = 1;
    while (j->items != NULL) {
        item_t *it = j->items;
        j->items = it->next;
        if (status != 0 && it->rc == 0) {
            it->rc = errmsg_set(&it->em, ERR_UNAVAILABLE, "merge cancelled");
            it->fatal = 1;
        }
        ok &= it->rc == 0;
        if (it->rc != 0 && (it->fatal || scatter_error_is_final(it->rc)))
            scatter_q_fail(q, it->rc, &it->em);
        else if (it->rc == ERR_UNAVAILABLE)
            scatter_q_ask_refused(q, it->ask, it->em.text);
        else if (it->rc != 0)
            scatter_q_ask_failed(q, it->ask, it->em.text);
        q->items_bytes -= it->bytes;
        scatter_q_item_free(it);
    }
    if (status == 0) {
        q->gather_bytes = j->gather_bytes;
        q->t.merge_ns += j->merge_ns;
        q->t.finish_ns += j->finish_ns;
    }
    /* the query counts the gather and the answer from here: given back
     * first, they are not counted twice when the query checks its sum */
    alloc_charge_done(&j->work);
    scatter_q_charge(q);
    if (j->finish) {
        q->finishing = 0;
        if (ok) finished(q, status);
    }
    free(j->asked);
    free(j);
    scatter_q_progress(q);
    scatter_q_unref(q);
}

int scatter_q_start_merge(scatter_q_t *q)
{
    merge_job_t *j = calloc(1, sizeof *j);
    size_t n = 0;
    for (item_t *it = q->queue; it != NULL; it = it->next)
        n++;
    if (j == NULL || (j->asked = calloc(n ? n : 1, sizeof *j->asked)) == NULL) {
        free(j);
        return ERR_NOMEM;
    }
    /* the ranges structs are copied: q->asks may move while the job runs
     * (a re-plan adds asks); their arrays stay put for the query's life */
    size_t k = 0;
    for (item_t *it = q->queue; it != NULL; it = it->next)
        j->asked[k++] = q->asks[it->ask].ranges;
    j->q = q;
    j->items = q->queue;
    q->queue = NULL;
    /* a local share's trees move into the gather: the query counts them
     * already (items_bytes, until merge_done), so only the growth past
     * them is charged again */
    j->base = q->gather_bytes;
    for (item_t *it = j->items; it != NULL; it = it->next)
        j->base += it->remote ? 0 : it->bytes;
    alloc_charge_init(&j->work, &q->s->mem);
    alloc_charge_beside(&j->work, q->mem_charged + q->held_beside); /* held meanwhile */
    j->finish = last_step(q) && prepare_finish(q) == 0;
    j->sj.w.data = j; /* no deadline: merged data must be finished, not dropped */
    if (submit(q, &j->sj, merge_work, merge_done) != 0) {
        q->queue = j->items;
        free(j->asked);
        free(j);
        return ERR_UNAVAILABLE;
    }
    q->s->stats.pool_jobs++;
    q->merging = 1;
    q->finishing = j->finish;
    q->refs++;
    return 0;
}

/* ---------- the answer ---------- */

typedef struct finish_job {
    scatter_job_t sj;
    scatter_q_t *q;
    size_t base;         /* the gather's bytes the query counts */
    alloc_charge_t work; /* the truncation, selection and answer while they run */
    uint64_t finish_ns;
} finish_job_t;

static void finish_work(workq_job_t *w)
{
    finish_job_t *j = w->data;
    query_gather_charge(j->q->gather, &j->work, j->base);
    finish_answer(j->q, &j->finish_ns);
    query_gather_charge(j->q->gather, NULL, 0);
}

static void finish_done(workq_job_t *w, int status)
{
    finish_job_t *j = w->data;
    scatter_q_t *q = j->q;
    list_remove(&j->sj.link);
    q->finishing = 0;
    if (status == 0) q->t.finish_ns += j->finish_ns;
    alloc_charge_done(&j->work); /* the query counts the answer from here, not twice */
    finished(q, status);
    scatter_q_progress(q); /* answers q->rc when a failure came in meanwhile */
    free(j);
    scatter_q_unref(q);
}

int scatter_q_start_finish(scatter_q_t *q)
{
    int rc = prepare_finish(q);
    if (rc != 0) return rc;
    finish_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) return ERR_NOMEM;
    j->q = q;
    j->base = q->gather_bytes;
    alloc_charge_init(&j->work, &q->s->mem);
    alloc_charge_beside(&j->work, q->mem_charged + q->held_beside); /* the gather, the rest */
    j->sj.w.data = j;
    if (submit(q, &j->sj, finish_work, finish_done) != 0) {
        free(j);
        return ERR_UNAVAILABLE;
    }
    q->s->stats.pool_jobs++;
    q->finishing = 1;
    q->refs++;
    return 0;
}

/* ---------- what is missing ---------- */

static int range_cmp(const void *a, const void *b)
{
    const ring_range_t *x = a, *y = b;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Sorts and joins touching ranges (the list of q->missing may come in any
 * order from several plans). */
static void coalesce(ring_ranges_t *r)
{
    if (r->n < 2) return;
    qsort(r->v, r->n, sizeof *r->v, range_cmp);
    size_t k = 0;
    for (size_t i = 1; i < r->n; i++) {
        if (r->v[i].start == r->v[k].end)
            r->v[k].end = r->v[i].end;
        else
            r->v[++k] = r->v[i];
    }
    r->n = k + 1;
}

/* Nodes holding missing ranges that could not serve them. */
static int missing_nodes(scatter_q_t *q, uint8_t *mark)
{
    const cluster_view_t *v = q->view;
    uint32_t count = ring_range_count(v->ring);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t end = ring_range_at(v->ring, i).end;
        int hit = 0;
        for (size_t k = 0; !hit && k < q->missing.n; k++)
            hit = ring_range_contains(q->missing.v[k], end);
        if (!hit) continue;
        uint32_t reps[RING_MAX_RF];
        uint32_t n = ring_replicas(v->ring, end, v->rf, reps);
        for (uint32_t r = 0; r < n; r++)
            if (!v->live[reps[r]] || q->excluded[reps[r]]) mark[reps[r]] = 1;
    }
    return 0;
}

#define MISSING_LISTED 64

static int missing_json(scatter_q_t *q, const uint8_t *mark, double share, buf_t *j)
{
    int rc = buf_append_str(j, "\"partial\":true,\"missing\":[");
    for (size_t i = 0; rc == 0 && i < q->missing.n && i < MISSING_LISTED; i++)
        rc = buf_printf(j, "%s{\"start\":\"%016llx\",\"end\":\"%016llx\"}", i ? "," : "",
                        (unsigned long long)q->missing.v[i].start,
                        (unsigned long long)q->missing.v[i].end);
    if (rc == 0)
        rc = buf_printf(j, "],\"missing_ranges\":%zu,\"missing_share\":%.6f,\"missing_nodes\":[",
                        q->missing.n, share);
    int first = 1;
    for (uint32_t i = 0; rc == 0 && i < ring_node_count(q->view->ring); i++) {
        if (!mark[i]) continue;
        const char *id = ring_node_name(q->view->ring, i);
        rc = buf_append_str(j, first ? "" : ",");
        if (rc == 0) rc = buf_append_json_string(j, id, strlen(id));
        first = 0;
    }
    return rc != 0 ? rc : buf_append_byte(j, ']');
}

static void missing_header(scatter_q_t *q, const uint8_t *mark, double share, char *h, size_t hn)
{
    size_t len = (size_t)snprintf(h, hn, "ranges=%zu; share=%.4f; nodes=", q->missing.n, share);
    int first = 1;
    for (uint32_t i = 0; len < hn && i < ring_node_count(q->view->ring); i++) {
        if (!mark[i]) continue;
        const char *id = ring_node_name(q->view->ring, i);
        if (len + strlen(id) + 8 >= hn) {
            snprintf(h + len, hn - len, ",...");
            return;
        }
        len += (size_t)snprintf(h + len, hn - len, "%s%s", first ? "" : ",", id);
        first = 0;
    }
    if (first && len < hn) snprintf(h + len, hn - len, "-");
}

int scatter_q_describe_missing(scatter_q_t *q, char *header, size_t header_len, char **json)
{
    coalesce(&q->missing);
    double share = 0;
    for (size_t i = 0; i < q->missing.n; i++)
        share += ring_range_share(q->missing.v[i]);
    if (share > 1) share = 1;
    uint32_t nn = ring_node_count(q->view->ring);
    uint8_t *mark = calloc(nn ? nn : 1, 1);
    if (mark == NULL) return ERR_NOMEM;
    missing_nodes(q, mark);
    buf_t j;
    buf_init(&j, 64 * 1024);
    int rc = missing_json(q, mark, share, &j);
    missing_header(q, mark, share, header, header_len);
    free(mark);
    if (rc != 0) {
        buf_free(&j);
        return rc;
    }
    size_t n;
    *json = (char *)buf_steal(&j, &n);
    return *json != NULL ? 0 : ERR_NOMEM;
}
