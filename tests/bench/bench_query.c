/* bench_query.c — `flamedb-bench query`: how long a flame graph over stored
 * profiles takes, in process (query_render on a real RocksDB), and whether it
 * is exact.
 *
 * The profiles of --index are ingested into a fresh store, then the flame graph
 * of their whole time range is rendered (JSON flamebearer, default maxNodes):
 * as ingested (blocks still hold unfolded merge operands), after a full
 * compaction, cold after reopening, and over 30 days ending at the same point.
 * numTicks is checked against the sum the generator recorded. The comparison
 * with `go tool pprof -proto` over the same files is made by tests/bench/run.py.
 * With --data-dir, nothing is ingested: the renders read a store a node wrote
 * (the profiles of --index pushed to it over HTTP), so the in-process and the
 * HTTP render can be timed over one stored state.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "common/err.h"
#include "common/u64map.h"
#include "node/cluster/scatter_spaces.h"
#include "node/ingest/ingest.h"
#include "query/query.h"
#include "storage/storage.h"

typedef struct qctx {
    storage_t *st;
    const char *tenant; /* "bench", or --tenant with --data-dir */
    char query[512];
    char from[32], until[32];
    int64_t expect;   /* -1 unknown */
    assist_t *assist; /* the renders' helper threads, as a node's (--assist-threads) */
} qctx_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One render; returns wall seconds, or -1 on error. *ticks gets numTicks. */
static double render_once(const qctx_t *q, const char *from, int64_t *ticks, size_t *bytes)
{
    query_params_t p = {.query = q->query, .from = from, .until = q->until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    lim.assist = q->assist;
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    double w0 = clock_wall();
    int rc = query_render(q->st, q->tenant, &p, &lim, now_ms(), &r, &em);
    double w = clock_wall() - w0;
    if (rc != 0) {
        fprintf(stderr, "query_render: %s\n", errmsg_text(&em, rc));
        query_result_free(&r);
        return -1;
    }
    const char *nt = r.body.data ? strstr((const char *)r.body.data, "\"numTicks\":") : NULL;
    *ticks = nt ? strtoll(nt + 11, NULL, 10) : -1;
    *bytes = r.body.len;
    query_result_free(&r);
    return w;
}

/* The same flame graph built the way a scatter-gather builds it (the whole
 * merged tree, then truncation: query_partial_run, query_gather_add,
 * query_gather_finish with an untruncated partial), compared byte for byte
 * with query_render's answer, which chooses the kept nodes before building
 * (query/keep.c). Returns 0 when identical. */
static int same_as_whole_tree(const qctx_t *q, const char *label)
{
    query_params_t p = {.query = q->query, .from = q->from, .until = q->until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    int64_t now = now_ms();
    query_result_t fast, whole;
    query_result_init(&fast);
    query_result_init(&whole);
    errmsg_t em = {{0}};
    query_spec_t spec;
    query_partial_t part = {0};
    query_gather_t *g = NULL;
    query_partial_args_t a;
    int rc = query_render(q->st, q->tenant, &p, &lim, now, &fast, &em);
    int parsed =
        rc == 0 && (rc = query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now, &spec, &em)) == 0;
    if (parsed) {
        query_spec_args(&spec, &a); /* final_max_nodes 0: the whole tree */
        rc = query_partial_run(q->st, q->tenant, &a, &lim, &part, &em);
        if (rc == 0) rc = query_gather_new(&spec, &lim, &g);
        if (rc == 0) rc = query_gather_add(g, &part, &em);
        if (rc == 0) rc = query_gather_finish(g, NULL, &whole, &em);
    }
    int same = rc == 0 && fast.body.len == whole.body.len &&
               memcmp(fast.body.data, whole.body.data, fast.body.len) == 0;
    if (rc != 0) fprintf(stderr, "render: %s\n", errmsg_text(&em, rc));
    printf("query_%s_same_as_whole_tree: %s (%zu bytes)\n", label, same ? "yes" : "NO",
           fast.body.len);
    query_partial_free(&part);
    query_gather_free(g);
    if (parsed) query_spec_free(&spec);
    query_result_free(&fast);
    query_result_free(&whole);
    return same ? 0 : 1;
}

#define FOREST_ROUNDS 7

static int cmp_desc_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

static size_t count_over(const storage_merged_tab_t *tabs, size_t n, int64_t cut);

/* How many of the forests' nodes a threshold exchange would ship: every
 * node of total >= max over the forests of their k-th largest total (the cut
 * of the merge is never below it), divided by the number of forests (a kept
 * node's total is at least that much in one of them). */
static size_t nodes_over_cut(const storage_merged_tab_t *tabs, size_t n, size_t k, int64_t *cut)
{
    int64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t *v = malloc(tabs[i].n * sizeof *v);
        size_t m = 0;
        for (size_t j = 0; v != NULL && j < tabs[i].n; j++)
            if (j == 0 || tabs[i].total[j] != 0) v[m++] = tabs[i].total[j];
        if (v != NULL && m >= k) {
            qsort(v, m, sizeof *v, cmp_desc_i64);
            best = v[k - 1] > best ? v[k - 1] : best;
        }
        free(v);
    }
    *cut = n > 0 ? best / (int64_t)n : 0;
    return count_over(tabs, n, *cut);
}

/* The k-th largest node total of the merged tree (the cut of its maxNodes
 * selection, about), or -1. */
static int64_t merged_cut(const calltree_t *t, size_t k)
{
    size_t n = calltree_node_count(t);
    const int64_t *tot = calltree_totals(t);
    int64_t *v = tot != NULL && n >= k ? malloc(n * sizeof *v) : NULL;
    if (v == NULL) return -1;
    memcpy(v, tot, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_desc_i64);
    int64_t cut = v[k - 1];
    free(v);
    return cut;
}

static size_t count_over(const storage_merged_tab_t *tabs, size_t n, int64_t cut)
{
    size_t over = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < tabs[i].n; j++)
            over += (j == 0 || tabs[i].total[j] != 0) && tabs[i].total[j] >= cut;
    return over;
}

/* The merged nodes of the forests, by path: per forest and id its merged
 * node (mid), per merged node its total, its smallest non-zero part in
 * any forest, and its parent (UINT32_MAX for the root). */
typedef struct paths {
    uint32_t **mid, *par;
    uint64_t *key; /* per merged node: its path's hash */
    int64_t *tot, *minpart;
    size_t m;
} paths_t;

static void paths_free(paths_t *p, size_t n)
{
    for (size_t i = 0; p->mid != NULL && i < n; i++)
        free(p->mid[i]);
    free(p->mid);
    free(p->par);
    free(p->key);
    free(p->tot);
    free(p->minpart);
}

static int paths_forest(paths_t *p, u64map_t *map, uint64_t *h, const storage_merged_tab_t *f,
                        uint32_t *mid, size_t cap)
{
    for (size_t id = 0; id < f->n; id++) {
        if (id > 0 && f->total[id] == 0) continue;
        uint64_t k = id == 0 ? 0 : (h[f->parent[id]] ^ f->sym[id]) * 0x9e3779b97f4a7c15ULL;
        h[id] = k ^ k >> 29;
        uint32_t x;
        int rc = u64map_get_or_put(map, h[id], (uint32_t)p->m, &x);
        if (rc < 0 || p->m >= cap) return ERR_NOMEM;
        if (rc == 1) {
            p->tot[x] = 0;
            p->minpart[x] = INT64_MAX;
            p->par[x] = id == 0 ? UINT32_MAX : mid[f->parent[id]];
            p->key[x] = h[id];
            p->m++;
        }
        mid[id] = x;
        p->tot[x] += f->total[id];
        if (f->total[id] > 0 && f->total[id] < p->minpart[x]) p->minpart[x] = f->total[id];
    }
    return 0;
}

static int paths_make(paths_t *p, const storage_merged_tab_t *tabs, size_t n)
{
    size_t cap = 0, most = 1;
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        cap += tabs[i].nodes;
        most = tabs[i].n > most ? tabs[i].n : most;
        if (tabs[i].parent == NULL) return ERR_INVALID_ARGUMENT;
    }
    p->mid = calloc(n ? n : 1, sizeof *p->mid);
    p->par = malloc(cap * sizeof *p->par);
    p->key = malloc(cap * sizeof *p->key);
    p->tot = malloc(cap * sizeof *p->tot);
    p->minpart = malloc(cap * sizeof *p->minpart);
    uint64_t *h = malloc(most * sizeof *h);
    u64map_t map = {0};
    int rc = p->mid && p->par && p->key && p->tot && p->minpart && h ? u64map_init(&map, cap)
                                                                     : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        p->mid[i] = malloc(tabs[i].n * sizeof *p->mid[i]);
        rc = p->mid[i] != NULL ? paths_forest(p, &map, h, &tabs[i], p->mid[i], cap) : ERR_NOMEM;
    }
    u64map_free(&map);
    free(h);
    return rc;
}

/* The k-th largest of v[0..m), or 0. */
static int64_t kth_largest(const int64_t *v, size_t m, size_t k)
{
    int64_t *c = m >= k && k > 0 ? malloc(m * sizeof *c) : NULL, r = 0;
    if (c == NULL) return 0;
    memcpy(c, v, m * sizeof *c);
    qsort(c, m, sizeof *c, cmp_desc_i64);
    r = c[k - 1];
    free(c);
    return r;
}

/* What a share that truncates its own forests in one round could leave
 * out and still let the coordinator answer exactly: a kept merged node's
 * total needs its part in every forest, so no forest node smaller than
 * the smallest part of any kept node may be left out. Printed: the
 * forest nodes the selection reads (kept, or a kept node's kid: what an
 * oracle would ship), that smallest part and the nodes at or above it,
 * and at the bound that ships a fifth of the nodes the kept nodes whose
 * total it would leave short. */
static void sliver_figures(const storage_merged_tab_t *tabs, size_t n, size_t k)
{
    paths_t p;
    if (paths_make(&p, tabs, n) != 0) {
        paths_free(&p, n);
        return;
    }
    int64_t cut = kth_largest(p.tot, p.m, k), least = INT64_MAX;
    size_t kept = 0, read = 0, all = 0;
    for (size_t x = 0; x < p.m; x++)
        if (p.tot[x] >= cut) {
            kept++;
            least = p.minpart[x] < least ? p.minpart[x] : least;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t id = 0; id < tabs[i].n; id++) {
            if (id > 0 && tabs[i].total[id] == 0) continue;
            uint32_t x = p.mid[i][id];
            all++;
            read += p.tot[x] >= cut || p.tot[p.par[x]] >= cut;
        }
    int64_t *v = malloc(all * sizeof *v), fifth = 0;
    size_t m = 0, short_kept = 0;
    for (size_t i = 0; v != NULL && i < n; i++)
        for (size_t id = 0; id < tabs[i].n; id++)
            if (id == 0 || tabs[i].total[id] != 0) v[m++] = tabs[i].total[id];
    if (v != NULL) fifth = kth_largest(v, m, m / 5 > 0 ? m / 5 : 1);
    free(v);
    for (size_t x = 0; x < p.m; x++)
        short_kept += p.tot[x] >= cut && p.minpart[x] < fifth;
    printf("query_forests_read: %zu of %zu forest nodes are kept or a kept node's kid (%zu merged "
           "nodes, %zu kept, cut %lld)\n",
           read, all, p.m, kept, (long long)cut);
    printf(
        "query_forests_one_round: smallest part of a kept node in a forest %lld: %zu nodes at "
        "or above it; a fifth of the nodes (%zu, >= %lld) leaves %zu of the %zu kept nodes short\n",
        (long long)least, count_over(tabs, n, least), count_over(tabs, n, fifth), (long long)fifth,
        short_kept, kept);
    paths_free(&p, n);
}

/* The paths of a's m heaviest merged nodes (ties at the m-th included). */
static int top_paths(const paths_t *a, size_t m, u64map_t *set)
{
    int64_t cut = kth_largest(a->tot, a->m, m < a->m ? m : a->m);
    int rc = u64map_init(set, 2 * m);
    for (size_t x = 0; rc == 0 && x < a->m; x++)
        if (a->tot[x] >= cut) rc = u64map_put(set, a->key[x], 1);
    return rc;
}

/* A coordinator that sent the heaviest paths of an earlier render (the
 * range 10 s shorter: the previous refresh of a dashboard) with its
 * request, each share shipping only the nodes on those paths and their
 * kids: the forest nodes shipped, and whether the new kept set lies in
 * the paths sent (else a second round), for 1, 2 and 4 times maxNodes. */
static void hint_figures(const qctx_t *q, const storage_merged_tab_t *tabs, size_t n, size_t k)
{
    char until[32];
    snprintf(until, sizeof until, "%lld", atoll(q->until) - 10);
    query_params_t pp = {.query = q->query, .from = q->from, .until = until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_spec_t spec;
    query_partial_t part = {0};
    paths_t a = {0}, b = {0};
    if (query_spec_parse(QUERY_KIND_RENDER, &pp, &lim, now_ms(), &spec, &em) != 0) return;
    query_partial_args_t args;
    query_spec_args(&spec, &args);
    args.forests = args.parents = 1;
    int rc = query_partial_run(q->st, q->tenant, &args, &lim, &part, &em);
    if (rc == 0) rc = paths_make(&a, part.tabs, part.ntabs);
    if (rc == 0) rc = paths_make(&b, tabs, n);
    int64_t cut = rc == 0 ? kth_largest(b.tot, b.m, k) : 0;
    for (size_t mult = 1; rc == 0 && mult <= 4; mult *= 2) {
        u64map_t set = {0};
        rc = top_paths(&a, mult * k, &set);
        size_t shipped = 0, all = 0, missing = 0;
        uint32_t one;
        for (size_t i = 0; rc == 0 && i < n; i++)
            for (size_t id = 0; id < tabs[i].n; id++) {
                if (id > 0 && tabs[i].total[id] == 0) continue;
                uint32_t x = b.mid[i][id];
                all++;
                shipped += u64map_get(&set, b.key[x], &one) ||
                           (id > 0 && u64map_get(&set, b.key[b.par[x]], &one));
            }
        for (size_t x = 0; rc == 0 && x < b.m; x++)
            missing += b.tot[x] >= cut && !u64map_get(&set, b.key[x], &one);
        if (rc == 0)
            printf("query_forests_hinted: %zu x maxNodes paths of the render 10 s shorter: %zu of "
                   "%zu forest nodes shipped, %zu kept nodes outside them (%s)\n",
                   mult, shipped, all, missing, missing ? "a second round" : "one round");
        u64map_free(&set);
    }
    paths_free(&a, part.ntabs);
    paths_free(&b, n);
    query_partial_free(&part);
    query_spec_free(&spec);
}

/* A share's part of a render as a coordinator that truncates asks it:
 * its forests made (query_partial_run) and every one encoded; CPU of the
 * calling thread, or < 0 on error. symnos 0: the forests carry no symbol
 * numbers, so the encoder looks each node's symbol up in a hash map. */
static double share_once(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                         int symnos, buf_t *b)
{
    query_partial_args_t a;
    query_spec_args(spec, &a);
    a.forests = a.parents = 1;
    a.symnos = symnos;
    query_partial_t part = {0};
    errmsg_t em = {{0}};
    buf_reset(b);
    double t0 = clock_thread();
    int rc = query_partial_run(q->st, q->tenant, &a, lim, &part, &em);
    for (size_t i = 0; rc == 0 && i < part.ntabs; i++)
        rc = query_forest_encode(&part.tabs[i], b);
    double t = clock_thread() - t0;
    query_partial_free(&part);
    return rc == 0 ? t : -1;
}

/* Every forest of part sized, then written one after another into b, as
 * a share writes them into its answer's envelope (scatter_serve.c). */
static int encode_sized(const query_partial_t *part, buf_t *b)
{
    query_forest_sized_t *z = calloc(part->ntabs ? part->ntabs : 1, sizeof *z);
    int rc = z != NULL ? 0 : ERR_NOMEM;
    size_t bytes = 0;
    for (size_t i = 0; rc == 0 && i < part->ntabs; i++) {
        rc = query_forest_size(&part->tabs[i], QUERY_FOREST_V5, &z[i]);
        bytes += z[i].bytes;
    }
    if (rc == 0) rc = buf_reserve(b, bytes);
    for (size_t i = 0; rc == 0 && i < part->ntabs; i++) {
        query_forest_write(&z[i], b->data + b->len);
        b->len += z[i].bytes;
    }
    for (size_t i = 0; z != NULL && i < part->ntabs; i++)
        query_forest_sized_free(&z[i]);
    free(z);
    return rc;
}

/* A share's part as a coordinator that reads encoding 5 asks it (what
 * every share of a cluster answers): forests with parents and symbol
 * numbers, names left to the dictionaries, every forest sized, then
 * written in version 5 (encode_sized); CPU of the calling thread, or < 0
 * on error. Not inlined, so that a profiler counts it apart (callgrind
 * --toggle-collect=share_v5). */
static __attribute__((noipa)) double share_v5(const qctx_t *q, const query_spec_t *spec,
                                              const query_limits_t *lim, buf_t *b)
{
    query_partial_args_t a;
    query_spec_args(spec, &a);
    a.forests = a.parents = a.symnos = a.names_later = 1;
    query_partial_t part = {0};
    errmsg_t em = {{0}};
    buf_reset(b);
    double t0 = clock_thread();
    int rc = query_partial_run(q->st, q->tenant, &a, lim, &part, &em);
    if (rc == 0) rc = encode_sized(&part, b);
    double t = clock_thread() - t0;
    query_partial_free(&part);
    return rc == 0 ? t : -1;
}

/* share_v5 FOREST_ROUNDS times (after one untimed): the median printed. */
static int share_v5_figures(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim)
{
    double t[FOREST_ROUNDS];
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = share_v5(q, spec, lim, &b) < 0;
    for (int r = 0; rc == 0 && r < FOREST_ROUNDS; r++)
        rc = (t[r] = share_v5(q, spec, lim, &b)) < 0;
    if (rc == 0) {
        qsort(t, FOREST_ROUNDS, sizeof t[0], cmp_double);
        printf("query_forests_share_v5_ms: %.3f (min %.3f; forests made, sized and written in "
               "version 5 as a share answers, CPU of the thread, %d rounds; %zu bytes)\n",
               t[FOREST_ROUNDS / 2] * 1e3, t[0] * 1e3, FOREST_ROUNDS, b.len);
    }
    buf_free(&b);
    return rc;
}

/* share_once with and without symbol numbers, alternated, FOREST_ROUNDS
 * each: their medians printed. */
static int share_figures(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim)
{
    double t[2][FOREST_ROUNDS];
    size_t len[2] = {0, 0};
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = share_once(q, spec, lim, 1, &b) < 0; /* tables loaded, indexes built */
    for (int r = 0; rc == 0 && r < FOREST_ROUNDS; r++)
        for (int k = 0; rc == 0 && k < 2; k++) {
            int symnos = (r + k) % 2; /* which goes first alternates */
            t[symnos][r] = share_once(q, spec, lim, symnos, &b);
            len[symnos] = b.len;
            rc = t[symnos][r] < 0;
        }
    buf_free(&b);
    if (rc != 0) return 1;
    qsort(t[0], FOREST_ROUNDS, sizeof t[0][0], cmp_double);
    qsort(t[1], FOREST_ROUNDS, sizeof t[1][0], cmp_double);
    printf("query_forests_share_ms: %.3f with symbol numbers, %.3f with hash lookups (forests "
           "made and encoded, CPU of the thread, medians of %d alternated; %zu / %zu bytes)\n",
           t[1][FOREST_ROUNDS / 2] * 1e3, t[0][FOREST_ROUNDS / 2] * 1e3, FOREST_ROUNDS, len[1],
           len[0]);
    return len[0] == len[1] ? 0 : 1;
}

/* Every forest of part encoded in version v into b, end[i] where the
 * i-th ends; one function per version (not inlined), so that a profiler
 * counts each version's encoding apart. */
static int encode_all(const query_partial_t *part, int v, buf_t *b, size_t *end)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < part->ntabs; i++) {
        uint64_t *dict;
        size_t nd;
        rc = query_forest_encode_dict(&part->tabs[i], v, b, &dict, &nd);
        free(dict);
        end[i] = b->len;
    }
    return rc;
}

static __attribute__((noinline)) int encode_v3(const query_partial_t *part, buf_t *b, size_t *end)
{
    return encode_all(part, QUERY_FOREST_V3, b, end);
}

static __attribute__((noinline)) int encode_v4(const query_partial_t *part, buf_t *b, size_t *end)
{
    return encode_all(part, QUERY_FOREST_V4, b, end);
}

static __attribute__((noinline)) int encode_v5(const query_partial_t *part, buf_t *b, size_t *end)
{
    return encode_all(part, QUERY_FOREST_V5, b, end);
}

/* The coordinator's part: the n encodings added to g and its answer
 * made; one function per version, as encode_all (noipa: identical
 * bodies would otherwise be folded into one). */
static int gather_all(query_gather_t *g, const uint8_t **enc, const size_t *len, size_t n,
                      query_result_t *res, errmsg_t *em)
{
    int rc = query_gather_add_trees(g, enc, len, n, em);
    return rc == 0 ? query_gather_finish(g, NULL, res, em) : rc;
}

static __attribute__((noipa)) int gather_v3(query_gather_t *g, const uint8_t **enc,
                                            const size_t *len, size_t n, query_result_t *res,
                                            errmsg_t *em)
{
    return gather_all(g, enc, len, n, res, em);
}

static __attribute__((noipa)) int gather_v4(query_gather_t *g, const uint8_t **enc,
                                            const size_t *len, size_t n, query_result_t *res,
                                            errmsg_t *em)
{
    return gather_all(g, enc, len, n, res, em);
}

static __attribute__((noipa)) int gather_v5(query_gather_t *g, const uint8_t **enc,
                                            const size_t *len, size_t n, query_result_t *res,
                                            errmsg_t *em)
{
    return gather_all(g, enc, len, n, res, em);
}

/* One gather of the forests of part shipped in version v: the CPU of
 * query_gather_add_trees and query_gather_finish (the selection over
 * them, and the answer), and the bytes shipped. */
static double gather_once(const query_partial_t *part, const query_spec_t *spec,
                          const query_limits_t *lim, int v, size_t *bytes, double *enc_s)
{
    size_t n = part->ntabs;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    const uint8_t **enc = calloc(n ? n : 1, sizeof *enc);
    size_t *len = calloc(n ? n : 1, sizeof *len), *end = calloc(n ? n : 1, sizeof *end);
    int rc = enc && len && end ? 0 : ERR_NOMEM;
    double te = clock_thread();
    if (rc == 0)
        rc = v == QUERY_FOREST_V3   ? encode_v3(part, &b, end)
             : v == QUERY_FOREST_V4 ? encode_v4(part, &b, end)
                                    : encode_v5(part, &b, end);
    for (size_t i = 0; i < n && rc == 0; i++) {
        enc[i] = b.data + (i ? end[i - 1] : 0);
        len[i] = end[i] - (i ? end[i - 1] : 0);
    }
    *enc_s = clock_thread() - te;
    *bytes = b.len;
    query_gather_t *g = NULL;
    errmsg_t em = {{0}};
    query_result_t res;
    query_result_init(&res);
    if (rc == 0) rc = query_gather_new(spec, lim, &g);
    double t0 = clock_thread();
    if (rc == 0)
        rc = v == QUERY_FOREST_V3   ? gather_v3(g, enc, len, n, &res, &em)
             : v == QUERY_FOREST_V4 ? gather_v4(g, enc, len, n, &res, &em)
                                    : gather_v5(g, enc, len, n, &res, &em);
    double t = clock_thread() - t0;
    if (rc != 0) fprintf(stderr, "gather: %s\n", errmsg_text(&em, rc));
    query_result_free(&res);
    query_gather_free(g);
    buf_free(&b);
    free(enc);
    free(len);
    free(end);
    return rc == 0 ? t : -1;
}

/* The coordinator's part of a truncated render over the forests shipped
 * in encoding 3 (decoded whole), 4 and 5 (read where the selection
 * looks), in turn: medians of FOREST_ROUNDS. */
static int gather_figures(const query_partial_t *part, const query_spec_t *spec,
                          const query_limits_t *lim)
{
    enum { NV = 3 };
    double t[NV][FOREST_ROUNDS], e[NV][FOREST_ROUNDS];
    size_t bytes[NV] = {0, 0, 0};
    for (int r = 0; r < FOREST_ROUNDS; r++)
        for (int k = 0; k < NV; k++) {
            int j = (r + k) % NV; /* which goes first turns */
            t[j][r] = gather_once(part, spec, lim, QUERY_FOREST_V3 + j, &bytes[j], &e[j][r]);
            if (t[j][r] < 0) return 1;
        }
    for (int j = 0; j < NV; j++) {
        qsort(t[j], FOREST_ROUNDS, sizeof t[j][0], cmp_double);
        qsort(e[j], FOREST_ROUNDS, sizeof e[j][0], cmp_double);
    }
    printf("query_forests_encode_v_ms: %.3f in encoding 3, %.3f in encoding 4, %.3f in encoding 5 "
           "(every forest, medians of %d in turn)\n",
           e[0][FOREST_ROUNDS / 2] * 1e3, e[1][FOREST_ROUNDS / 2] * 1e3,
           e[2][FOREST_ROUNDS / 2] * 1e3, FOREST_ROUNDS);
    printf("query_forests_gather_ms: %.3f in encoding 3, %.3f in encoding 4, %.3f in encoding 5 "
           "(add_trees and finish, CPU of the thread, medians of %d in turn; %zu / %zu / %zu "
           "bytes)\n",
           t[0][FOREST_ROUNDS / 2] * 1e3, t[1][FOREST_ROUNDS / 2] * 1e3,
           t[2][FOREST_ROUNDS / 2] * 1e3, FOREST_ROUNDS, bytes[0], bytes[1], bytes[2]);
    return 0;
}

/* A coordinator's render over two halves of the token ring, as 3 nodes at
 * RF 1 serve a service whose shards lie on two of them: one half's forests
 * added as its local share's (named from storage when kept), the other's as
 * a remote share ships them (encoding 5), then the JSON answer. */
typedef struct pair {
    query_range_t a, b;
    buf_t enc_b; /* the other half's forests, encoding 5 */
    size_t nb;
    const uint8_t **enc; /* each forest in enc_b, as a share's answer lists them */
    size_t *len;
    size_t nodes_a, nodes_b;
    int64_t tl_start, tl_step, *tl; /* the other half's timeline, as its share sends it */
    int64_t *tl_counts;             /* ... and an averaged type's profiles per bucket, or NULL */
    size_t ntl;
} pair_t;

/* The arguments of a partial of the range r as the pair renders ask it:
 * forests, names left to the gather. */
static void half_args(const query_spec_t *spec, const query_range_t *r, query_partial_args_t *a)
{
    query_spec_args(spec, a);
    a->ranges = r;
    a->nranges = 1;
    a->forests = 1;
    a->names_later = 1;
}

/* The partial of the ranges r (forests as a coordinator's local share
 * makes them; with remote, as a share asked for forests makes them; with
 * alone, as the one share that is the whole answer: its kept nodes). */
static int pair_partial(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                        query_range_t r, int remote, int alone, query_partial_t *out)
{
    query_partial_args_t a;
    half_args(spec, &r, &a);
    if (alone) a.final_max_nodes = query_spec_final_max_nodes(spec);
    a.parents = remote;
    a.symnos = remote;
    errmsg_t em = {{0}};
    return query_partial_run(q->st, q->tenant, &a, lim, out, &em);
}

static size_t partial_nodes(const query_partial_t *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->ntabs; i++)
        n += p->tabs[i].nodes;
    return n;
}

/* The split of the ring (at one of 16 points) whose smaller half holds the
 * most forest nodes; its other half encoded. */
static int pair_setup(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                      pair_t *pr)
{
    size_t best = 0;
    for (uint64_t k = 0; k < 16; k++) {
        uint64_t s = k << 60;
        query_range_t a = {s, s + (1ull << 63)}, b = {s + (1ull << 63), s};
        query_partial_t pa = {0}, pb = {0};
        int rc = pair_partial(q, spec, lim, a, 0, 0, &pa);
        if (rc == 0) rc = pair_partial(q, spec, lim, b, 0, 0, &pb);
        size_t na = partial_nodes(&pa), nb = partial_nodes(&pb);
        query_partial_free(&pa);
        query_partial_free(&pb);
        if (rc != 0) return rc;
        size_t least = na < nb ? na : nb;
        if (least > best || k == 0) {
            best = least;
            pr->a = a;
            pr->b = b;
            pr->nodes_a = na;
            pr->nodes_b = nb;
        }
    }
    query_partial_t pb = {0};
    int rc = pair_partial(q, spec, lim, pr->b, 1, 0, &pb);
    pr->nb = pb.ntabs;
    pr->enc = calloc(pb.ntabs + 1, sizeof *pr->enc);
    pr->len = calloc(pb.ntabs + 1, sizeof *pr->len);
    if (rc == 0 && (pr->enc == NULL || pr->len == NULL)) rc = ERR_NOMEM;
    /* each forest's end in len first, then its start and length */
    if (rc == 0) rc = encode_all(&pb, QUERY_FOREST_V5, &pr->enc_b, pr->len);
    for (size_t i = 0, at = 0; rc == 0 && i < pb.ntabs; i++) {
        size_t end = pr->len[i];
        pr->enc[i] = pr->enc_b.data + at;
        pr->len[i] = end - at;
        at = end;
    }
    size_t tln = pb.tl.n ? pb.tl.n : 1;
    pr->tl = rc == 0 ? malloc(tln * sizeof *pr->tl) : NULL;
    pr->tl_counts = rc == 0 && pb.tl.counts != NULL ? malloc(tln * sizeof *pr->tl_counts) : NULL;
    if (rc == 0 && (pr->tl == NULL || (pb.tl.counts != NULL && pr->tl_counts == NULL)))
        rc = ERR_NOMEM;
    if (rc == 0 && pb.tl.npushes > 0) { /* the generator's pushes are never split */
        fprintf(stderr, "pair: the other half's timeline holds split pushes (not simulated)\n");
        rc = ERR_INVALID_ARGUMENT;
    }
    if (rc == 0) {
        pr->tl_start = pb.tl.start_s;
        pr->tl_step = pb.tl.step_s;
        pr->ntl = pb.tl.n;
        memcpy(pr->tl, pb.tl.samples, pb.tl.n * sizeof *pr->tl);
        if (pr->tl_counts != NULL)
            memcpy(pr->tl_counts, pb.tl.counts, pb.tl.n * sizeof *pr->tl_counts);
    }
    query_partial_free(&pb);
    return rc;
}

/* One gather: the local half and the shipped half (or, with whole, every
 * token as one node renders them alone), finished; the CPU of the thread
 * (the local share, the gather and the answer: a coordinator's, the remote
 * share's work aside), and the answer's bytes in body. */
/* The other half's timeline, as its share sends it, into g: each bucket's
 * total and, of an averaged type, its profiles (what the flame graph and
 * the timeline are divided by). */
static int add_other_timeline(query_gather_t *g, const pair_t *pr, errmsg_t *em)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < pr->ntl; i++) {
        int64_t at = pr->tl_start + (int64_t)i * pr->tl_step;
        if (pr->tl[i] != 0) rc = query_gather_add_total(g, at, pr->tl[i], em);
        if (rc == 0 && pr->tl_counts != NULL && pr->tl_counts[i] != 0)
            rc = query_gather_add_count(g, at, pr->tl_counts[i], em);
    }
    return rc;
}

/* Finishes g (when rc is 0) into body: the CPU of the thread since t0, or
 * -1 with the failure printed after what. */
static double finish_timed(query_gather_t *g, int rc, double t0, buf_t *body, const char *what,
                           errmsg_t *em)
{
    query_result_t res;
    query_result_init(&res);
    if (rc == 0) rc = query_gather_finish(g, NULL, &res, em);
    double t = clock_thread() - t0;
    if (rc == 0) {
        buf_reset(body);
        rc = buf_append(body, res.body.data, res.body.len);
    }
    if (rc != 0) fprintf(stderr, "%s: %s\n", what, errmsg_text(em, rc));
    query_result_free(&res);
    return rc == 0 ? t : -1;
}

static double pair_once(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                        const pair_t *pr, int whole, buf_t *body)
{
    query_partial_t local = {0};
    query_range_t all = {0, 0};
    double t0 = clock_thread();
    int rc = pair_partial(q, spec, lim, whole ? all : pr->a, 0, whole, &local);
    query_gather_t *g = NULL;
    errmsg_t em = {{0}};
    if (rc == 0) rc = query_gather_new(spec, lim, &g);
    if (rc == 0) query_gather_names_from(g, q->st, q->tenant);
    if (rc == 0) rc = query_gather_add(g, &local, &em);
    if (rc == 0 && !whole && pr->nb > 0)
        rc = query_gather_add_trees(g, pr->enc, pr->len, pr->nb, &em);
    if (rc == 0 && !whole && pr->nb > 0) rc = add_other_timeline(g, pr, &em);
    double t = finish_timed(g, rc, t0, body, "pair", &em);
    query_gather_free(g);
    query_partial_free(&local);
    return t;
}

static int pair_id_figures(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                           const pair_t *pr);

/* A render over two halves (whole 0) or one node's (whole 1), timed. */
typedef double (*pair_render_fn)(void *ctx, int whole, buf_t *body);

/* fn's two renders alternated, FOREST_ROUNDS each (which goes first
 * alternates): their medians in med; 1 when the two answers are the same
 * bytes, 0 when they differ, -1 when a render failed. */
static int alternated(pair_render_fn fn, void *ctx, double med[2])
{
    double t[2][FOREST_ROUNDS];
    buf_t body[2];
    buf_init(&body[0], BUF_UNLIMITED);
    buf_init(&body[1], BUF_UNLIMITED);
    int rc = 0;
    for (int r = 0; rc == 0 && r < FOREST_ROUNDS; r++)
        for (int k = 0; rc == 0 && k < 2; k++) {
            int whole = (r + k) % 2;
            t[whole][r] = fn(ctx, whole, &body[whole]);
            rc = t[whole][r] < 0;
        }
    int same = rc == 0 && body[0].len == body[1].len &&
               memcmp(body[0].data, body[1].data, body[0].len) == 0;
    for (int w = 0; rc == 0 && w < 2; w++) {
        qsort(t[w], FOREST_ROUNDS, sizeof t[w][0], cmp_double);
        med[w] = t[w][FOREST_ROUNDS / 2];
    }
    buf_free(&body[0]);
    buf_free(&body[1]);
    return rc != 0 ? -1 : same;
}

typedef struct pair_ctx {
    const qctx_t *q;
    const query_spec_t *spec;
    const query_limits_t *lim;
    const pair_t *pr;
    struct pair_id *id; /* the render by id's, or NULL */
} pair_ctx_t;

static double pair_render(void *ctx, int whole, buf_t *body)
{
    pair_ctx_t *c = ctx;
    return pair_once(c->q, c->spec, c->lim, c->pr, whole, body);
}

/* pair_once over the two halves and over every token, alternated,
 * FOREST_ROUNDS each: medians printed; the two answers must be the same
 * bytes. */
static int pair_figures(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim)
{
    pair_t pr = {0};
    buf_init(&pr.enc_b, BUF_UNLIMITED);
    int rc = pair_setup(q, spec, lim, &pr);
    pair_ctx_t c = {q, spec, lim, &pr, NULL};
    double med[2];
    int same = rc == 0 ? alternated(pair_render, &c, med) : -1;
    rc = same < 0;
    if (rc == 0)
        printf("query_forests_pair_ms: %.3f over two halves of the ring (%zu local forest nodes, "
               "%zu shipped in %zu forests), %.3f over one node's (the local share, the gather "
               "and the answer, CPU of the thread, medians of %d alternated; answers %s)\n",
               med[0] * 1e3, pr.nodes_a, pr.nodes_b, pr.nb, med[1] * 1e3, FOREST_ROUNDS,
               same ? "the same bytes" : "DIFFER");
    if (rc == 0 && same) rc = pair_id_figures(q, spec, lim, &pr) != 0;
    buf_free(&pr.enc_b);
    free(pr.enc);
    free(pr.len);
    free(pr.tl);
    free(pr.tl_counts);
    return rc == 0 && same ? 0 : 1;
}

/* The same render with the shares answering by id (scatter_spaces.h): half
 * a's union added to the coordinator's scope from memory, half b's answer as
 * a share encodes it (IdSpace), one forest of the sums cut. b's structure
 * is sent once (an untimed first round), then its values alone. */
typedef struct pair_id {
    buf_t st, val; /* b's answer: its whole structure, its values */
    uint64_t nonce, count, unit;
    scatter_spaces_t *c; /* the coordinator's cache, kept across rounds */
} pair_id_t;

/* The partial of r as a share asked by id makes it (its union's forest with
 * its id space past the known ones). */
static int id_partial(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                      query_range_t r, const storage_space_known_t *known, size_t nknown,
                      query_partial_t *out)
{
    query_partial_args_t a;
    half_args(spec, &r, &a);
    a.symnos = 1;
    a.space = 1;
    a.known_spaces = known;
    a.nknown_spaces = nknown;
    errmsg_t em = {{0}};
    return query_partial_run(q->st, q->tenant, &a, lim, out, &em);
}

static int pair_id_setup(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                         const pair_t *pr, pair_id_t *id)
{
    query_partial_t pb = {0};
    int rc = id_partial(q, spec, lim, pr->b, NULL, 0, &pb);
    if (rc == 0 && (pb.ntabs != 1 || pb.tabs[0].space_nonce == 0)) rc = ERR_UNSUPPORTED;
    if (rc == 0) rc = scatter_space_encode(&pb.tabs[0], 1, &id->st, &id->val, &id->unit);
    if (rc == 0) {
        id->nonce = pb.tabs[0].space_nonce;
        id->count = pb.tabs[0].n;
    }
    query_partial_free(&pb);
    return rc == 0 ? scatter_spaces_new(64u << 20, &id->c) : rc;
}

/* One render by id (with whole_b, b's structure is sent too); the CPU of
 * the thread, the answer in body. */
static double pair_id_once(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                           const pair_t *pr, pair_id_t *id, int whole_b, buf_t *body)
{
    double t0 = clock_thread();
    scatter_scope_t *sc = NULL;
    storage_space_known_t known[SCATTER_SPACES_KNOWN_MAX];
    int rc = scatter_spaces_acquire(id->c, q->tenant, "", &sc);
    size_t nk = scatter_scope_known(sc, "a", known, SCATTER_SPACES_KNOWN_MAX);
    query_partial_t local = {0};
    if (rc == 0) rc = id_partial(q, spec, lim, pr->a, known, nk, &local);
    scatter_sums_t sums = {0};
    errmsg_t em = {{0}};
    if (rc == 0 && local.ntabs == 1 && local.tabs[0].space_nonce != 0) {
        rc = scatter_scope_add_tab(sc, "a", &local.tabs[0], &sums, &em);
        storage_merged_tabs_free(local.tabs, local.ntabs);
        local.tabs = NULL;
        local.ntabs = 0;
    }
    query_gather_t *g = NULL;
    if (rc == 0) rc = query_gather_new(spec, lim, &g);
    if (rc == 0) query_gather_names_from(g, q->st, q->tenant);
    if (rc == 0) rc = query_gather_add(g, &local, &em);
    uint64_t first = whole_b ? 1 : id->count;
    scatter_space_answer_t b = {.peer = "b",
                                .nonce = id->nonce,
                                .base = first,
                                .count = id->count,
                                .unit = id->unit,
                                .structure = whole_b ? id->st.data : NULL,
                                .slen = whole_b ? id->st.len : 0,
                                .values = id->val.data,
                                .vlen = id->val.len};
    if (rc == 0) rc = scatter_scope_add(sc, &b, &sums, &em);
    if (rc == 0) rc = add_other_timeline(g, pr, &em);
    storage_merged_tab_t t = {0};
    if (rc == 0) rc = scatter_scope_forest(sc, &sums, &t, &em);
    if (rc == 0) rc = query_gather_add_tab(g, &t, &em);
    double took = finish_timed(g, rc, t0, body, "pair by id", &em);
    query_gather_free(g);
    query_partial_free(&local);
    scatter_sums_free(&sums);
    scatter_spaces_release(id->c, sc);
    return took;
}

/* pair_id_once and one node's render, alternated, FOREST_ROUNDS each after
 * an untimed round that sends b's structure: medians printed; the answers
 * must be the same bytes. */
static double pair_id_render(void *ctx, int whole, buf_t *body)
{
    pair_ctx_t *c = ctx;
    return whole ? pair_once(c->q, c->spec, c->lim, c->pr, 1, body)
                 : pair_id_once(c->q, c->spec, c->lim, c->pr, c->id, 0, body);
}

static int pair_id_figures(const qctx_t *q, const query_spec_t *spec, const query_limits_t *lim,
                           const pair_t *pr)
{
    pair_id_t id = {0};
    buf_init(&id.st, BUF_UNLIMITED);
    buf_init(&id.val, BUF_UNLIMITED);
    buf_t first;
    buf_init(&first, BUF_UNLIMITED);
    int rc = pair_id_setup(q, spec, lim, pr, &id);
    if (rc == 0 && pair_id_once(q, spec, lim, pr, &id, 1, &first) < 0) rc = ERR_INTERNAL;
    buf_free(&first);
    pair_ctx_t c = {q, spec, lim, pr, &id};
    double med[2];
    int same = rc == 0 ? alternated(pair_id_render, &c, med) : -1;
    rc = same < 0;
    if (rc == 0) {
        printf("query_ids_pair_ms: %.3f over two halves of the ring by id (%zu ids, %zu bytes "
               "of structure sent once), %.3f over one node's (the local share, the gather and "
               "the answer, CPU of the thread, medians of %d alternated; answers %s)\n",
               med[0] * 1e3, (size_t)id.count, id.st.len, med[1] * 1e3, FOREST_ROUNDS,
               same ? "the same bytes" : "DIFFER");
    }
    buf_free(&id.st);
    buf_free(&id.val);
    scatter_spaces_free(id.c);
    return rc == 0 && same ? 0 : 1;
}

/* The selector's token forests as a share ships them to a coordinator that
 * truncates (query_partial_run with forests, query_forest_encode per token)
 * and as the coordinator reads them (query_gather_add_trees): the CPU of the
 * calling thread for each, median of FOREST_ROUNDS, so a change to either
 * side is measured apart from the cluster's wall times. */
/* The merged tree t as one forest over its node indices (parents before
 * children, as in a stack-node table): what the selection would walk if a
 * service's tokens on a node shared one stack-node id space. f owns its
 * arrays (storage_merged_tab_release). */
static int tree_forest(const calltree_t *t, storage_merged_tab_t *f)
{
    size_t n = calltree_node_count(t), nodes = 1;
    memset(f, 0, sizeof *f);
    f->n = n;
    f->owns_self = 1;
    f->sym = malloc(n * sizeof *f->sym);
    f->self = malloc(n * sizeof *f->self);
    f->total = malloc(n * sizeof *f->total);
    f->first_kid = malloc(n * sizeof *f->first_kid);
    f->next_sib = malloc(n * sizeof *f->next_sib);
    if (!f->sym || !f->self || !f->total || !f->first_kid || !f->next_sib) return ERR_NOMEM;
    int nonneg = 1;
    for (uint32_t i = 0; i < n; i++) {
        f->sym[i] = calltree_sym(t, i);
        f->self[i] = f->total[i] = calltree_self(t, i);
        nonneg &= f->self[i] >= 0;
        f->first_kid[i] = STORAGE_NO_KID;
    }
    for (uint32_t i = (uint32_t)n; i-- > 1;) {
        if (f->total[i] == 0) continue;
        uint32_t p = calltree_parent(t, i);
        f->total[p] += f->total[i];
        f->next_sib[i] = f->first_kid[p];
        f->first_kid[p] = i;
        nodes++;
    }
    f->nodes = nodes;
    f->nonneg = nonneg;
    return 0;
}

#define ONE_SPACE_ROUNDS 21

/* The two selections in functions of their own (for callgrind's
 * --toggle-collect). */
static __attribute__((noipa)) int select_tokens(const storage_merged_tab_t *tabs, size_t n,
                                                size_t k, calltree_t *dst)
{
    int rc = query_truncate_tabs(tabs, n, k, dst);
    __asm__ volatile("" ::: "memory"); /* a call, not a jump: callgrind sees it return */
    return rc;
}

static __attribute__((noipa)) int select_one(const storage_merged_tab_t *one, size_t k,
                                             calltree_t *dst)
{
    int rc = query_truncate_tabs(one, 1, k, dst);
    __asm__ volatile("" ::: "memory");
    return rc;
}

/* The selection (query_truncate_tabs, maxNodes k) over the tokens' n
 * forests, against the same over one forest of their merged tree whole:
 * CPU of the thread, the two alternated; the kept trees compared by their
 * node count and total. */
static void one_space_figures(const storage_merged_tab_t *tabs, size_t n, const calltree_t *whole,
                              size_t k)
{
    storage_merged_tab_t one;
    double ta[ONE_SPACE_ROUNDS], tb[ONE_SPACE_ROUNDS];
    size_t nodes = 0, na = 0, nb = 0;
    int rc = tree_forest(whole, &one), same = 1;
    for (size_t i = 0; i < n; i++)
        nodes += tabs[i].nodes;
    for (int r = 0; rc == 0 && r < ONE_SPACE_ROUNDS; r++) {
        calltree_t *a = calltree_new(1u << 24), *b = calltree_new(1u << 24);
        if (a == NULL || b == NULL) rc = ERR_NOMEM;
        double t0 = clock_thread();
        if (rc == 0) rc = select_tokens(tabs, n, k, a);
        ta[r] = clock_thread() - t0;
        t0 = clock_thread();
        if (rc == 0) rc = select_one(&one, k, b);
        tb[r] = clock_thread() - t0;
        if (rc == 0) {
            na = calltree_node_count(a);
            nb = calltree_node_count(b);
            same &= na == nb && calltree_root_total(a) == calltree_root_total(b);
        }
        calltree_free(a);
        calltree_free(b);
    }
    if (rc == 0) {
        qsort(ta, ONE_SPACE_ROUNDS, sizeof ta[0], cmp_double);
        qsort(tb, ONE_SPACE_ROUNDS, sizeof tb[0], cmp_double);
        printf("query_forests_one_space_ms: the selection over %zu forests (%zu nodes) %.3f, over "
               "one forest of their merged tree (%zu nodes) %.3f (CPU of the thread, medians of %d "
               "alternated; kept trees of %zu and %zu nodes, %s)\n",
               n, nodes, ta[ONE_SPACE_ROUNDS / 2] * 1e3, one.nodes, tb[ONE_SPACE_ROUNDS / 2] * 1e3,
               ONE_SPACE_ROUNDS, na, nb, same ? "the same total" : "DIFFERENT");
    } else {
        fprintf(stderr, "one space: %s\n", err_message(rc));
    }
    storage_merged_tab_release(&one);
}

static int forest_figures(const qctx_t *q)
{
    query_params_t p = {.query = q->query, .from = q->from, .until = q->until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_spec_t spec;
    query_partial_t part = {0};
    int rc = query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now_ms(), &spec, &em);
    if (rc != 0) return 1;
    query_partial_args_t a;
    query_spec_args(&spec, &a);
    a.forests = 1; /* as a coordinator asks a share */
    a.parents = 1; /* that reads forest encoding 3 */
    a.symnos = 1;  /* and encodes every forest */
    rc = query_partial_run(q->st, q->tenant, &a, &lim, &part, &em);
    size_t n = part.ntabs, nodes = 0;
    const uint8_t **enc = calloc(n + 1, sizeof *enc);
    size_t *len = calloc(n + 1, sizeof *len), *end = calloc(n + 1, sizeof *end);
    if (rc == 0 && (enc == NULL || len == NULL || end == NULL)) rc = ERR_NOMEM;
    double te[FOREST_ROUNDS], td[FOREST_ROUNDS];
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    for (int r = 0; rc == 0 && r < FOREST_ROUNDS; r++) {
        buf_reset(&b);
        double t0 = clock_thread();
        rc = calltree_encode(part.tree, &b); /* what is in no forest: nothing here */
        end[0] = b.len;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = query_forest_encode(&part.tabs[i], &b);
            end[i + 1] = b.len;
        }
        te[r] = clock_thread() - t0;
        for (size_t i = 0; i <= n; i++) {
            enc[i] = b.data + (i ? end[i - 1] : 0);
            len[i] = end[i] - (i ? end[i - 1] : 0);
        }
        query_gather_t *g = NULL;
        if (rc == 0) rc = query_gather_new(&spec, &lim, &g);
        t0 = clock_thread();
        if (rc == 0) rc = query_gather_add_trees(g, enc, len, n + 1, &em);
        td[r] = clock_thread() - t0;
        query_gather_free(g);
    }
    for (size_t i = 0; i < n; i++)
        nodes += part.tabs[i].nodes;
    if (rc == 0) {
        qsort(te, FOREST_ROUNDS, sizeof te[0], cmp_double);
        qsort(td, FOREST_ROUNDS, sizeof td[0], cmp_double);
        printf("query_forests: %zu forests, %zu nodes, %zu bytes\n", n, nodes, b.len);
        int64_t cut;
        size_t over = nodes_over_cut(part.tabs, n, spec.max_nodes, &cut);
        printf("query_forests_over_cut: %zu nodes of total >= %lld (maxNodes %zu)\n", over,
               (long long)cut, spec.max_nodes);
        query_partial_args_t w;
        query_partial_t whole = {0};
        query_spec_args(&spec, &w); /* the whole merged tree: the cut it has */
        if (query_partial_run(q->st, q->tenant, &w, &lim, &whole, &em) == 0) {
            int64_t mc = merged_cut(whole.tree, spec.max_nodes);
            printf("query_forests_over_merged_cut: %zu nodes of total >= %lld / %zu (the merge's "
                   "cut; %zu nodes merged)\n",
                   count_over(part.tabs, n, n > 0 ? mc / (int64_t)n : 0), (long long)mc, n,
                   calltree_node_count(whole.tree));
            one_space_figures(part.tabs, n, whole.tree, spec.max_nodes);
        }
        query_partial_free(&whole);
        sliver_figures(part.tabs, n, spec.max_nodes);
        hint_figures(q, part.tabs, n, spec.max_nodes);
        printf("query_forests_encode_ms: %.3f (min %.3f, CPU of the thread, %d rounds)\n",
               te[FOREST_ROUNDS / 2] * 1e3, te[0] * 1e3, FOREST_ROUNDS);
        printf("query_forests_decode_ms: %.3f (min %.3f, query_gather_add_trees)\n",
               td[FOREST_ROUNDS / 2] * 1e3, td[0] * 1e3);
        if (gather_figures(&part, &spec, &lim) != 0) rc = ERR_INTERNAL;
        if (share_figures(q, &spec, &lim) != 0) rc = ERR_INTERNAL;
        if (share_v5_figures(q, &spec, &lim) != 0) rc = ERR_INTERNAL;
        if (pair_figures(q, &spec, &lim) != 0) rc = ERR_INTERNAL;
    } else {
        fprintf(stderr, "forests: %s\n", errmsg_text(&em, rc));
    }
    buf_free(&b);
    free(enc);
    free(len);
    free(end);
    query_partial_free(&part);
    query_spec_free(&spec);
    return rc == 0 ? 0 : 1;
}

/* --forests-only N: forest_figures alone, N times (a steady run to count
 * the forests' encoding and decoding under a profiler). */
static int forest_rounds(const qctx_t *q, int n)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < (n > 0 ? n : 1); i++)
        rc = forest_figures(q);
    return rc;
}

/* --pair-only N: pair_figures alone, N times (the coordinator's side of
 * a render over two halves, for a profiler). */
static int pair_rounds(const qctx_t *q, int n)
{
    query_params_t p = {.query = q->query, .from = q->from, .until = q->until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_spec_t spec;
    int rc = query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now_ms(), &spec, &em);
    if (rc != 0) return 1;
    for (int i = 0; rc == 0 && i < (n > 0 ? n : 1); i++)
        rc = pair_figures(q, &spec, &lim);
    query_spec_free(&spec);
    return rc;
}

/* Median wall time of repeated renders (at least 3, up to 1.5 s or 200). */
static double render_median(const qctx_t *q, const char *label, const char *from)
{
    double t[200], spent = 0;
    size_t n = 0;
    int64_t ticks = 0;
    size_t bytes = 0;
    while (n < 200 && (n < 3 || spent < 1.5)) {
        t[n] = render_once(q, from, &ticks, &bytes);
        if (t[n] < 0) return -1;
        spent += t[n++];
    }
    qsort(t, n, sizeof t[0], cmp_double);
    double med = t[n / 2];
    printf("query_%s_median_ms: %.3f (min %.3f, %zu runs, %zu bytes)\n", label, med * 1e3,
           t[0] * 1e3, n, bytes);
    printf("query_%s_numTicks: %lld\n", label, (long long)ticks);
    if (q->expect >= 0)
        printf("query_%s_exact: %s (expected %lld)\n", label, ticks == q->expect ? "yes" : "NO",
               (long long)q->expect);
    return (q->expect >= 0 && ticks != q->expect) ? -2 : med;
}

/* Parses one generated profile as POST /ingest would (tenant "bench", its
 * own 10 s window) and stores it: the library path of the node's ingest. */
int bench_store_profile(storage_t *st, const bench_profile_t *p, const ingest_limits_t *lim,
                        int64_t now_ns, errmsg_t *em)
{
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)p->time_s);
    snprintf(until, sizeof until, "%lld", (long long)p->time_s + 10);
    ingest_request_t req = {.tenant = "bench",
                            .name = p->name,
                            .from = from,
                            .until = until,
                            .format = "pprof",
                            .body = p->gz,
                            .body_len = p->gz_len,
                            .now_ns = now_ns};
    ingest_profile_t *prof = NULL;
    int rc = ingest_parse(&req, lim, &prof, em);
    if (rc == 0) rc = storage_write_profile(st, ingest_profile_write(prof), NULL, em);
    ingest_profile_free(prof);
    return rc;
}

static int ingest_set(storage_t *st, const profile_set_t *set)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    double w0 = clock_wall();
    for (size_t i = 0; i < set->n; i++) {
        errmsg_t em = {{0}};
        int rc = bench_store_profile(st, &set->p[i], &lim, now_ms() * 1000000, &em);
        if (rc != 0) {
            fprintf(stderr, "ingest %s: %s\n", set->p[i].path, errmsg_text(&em, rc));
            return rc;
        }
    }
    printf("query_ingest_wall_s: %.3f (%zu profiles)\n", clock_wall() - w0, set->n);
    return 0;
}

/* Expected total of one sample type over the set, or -1. */
static int64_t expected_total(const profile_set_t *set, const char *type_unit)
{
    int64_t sum = 0;
    for (size_t i = 0; i < set->n; i++) {
        size_t t = 0;
        while (t < set->p[i].ntypes && strcmp(set->p[i].types[t], type_unit) != 0)
            t++;
        if (t == set->p[i].ntypes) return -1;
        sum += set->p[i].totals[t];
    }
    return sum;
}

static int reopen(storage_t **st, const char *dir)
{
    storage_close(*st);
    *st = NULL;
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    errmsg_t em = {{0}};
    int rc = storage_open(&o, st, &em);
    if (rc != 0) fprintf(stderr, "storage_open: %s\n", errmsg_text(&em, rc));
    return rc;
}

static void set_range(qctx_t *q, const profile_set_t *set)
{
    int64_t lo = set->p[0].time_s, hi = lo;
    for (size_t i = 0; i < set->n; i++) {
        lo = set->p[i].time_s < lo ? set->p[i].time_s : lo;
        hi = set->p[i].time_s > hi ? set->p[i].time_s : hi;
    }
    snprintf(q->from, sizeof q->from, "%lld", (long long)(lo / 10 * 10));
    snprintf(q->until, sizeof q->until, "%lld", (long long)((hi / 10 + 1) * 10));
    printf("query_range_s: %lld\n", (long long)((hi / 10 + 1) * 10 - lo / 10 * 10));
}

/* One pass of the window fold: its CPU in ms (-1 on error), *folded the
 * windows it folded. */
static double fold_pass(qctx_t *q, size_t *folded)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    int rc = storage_fold_windows(q->st, now_ms() / 1000, folded);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    if (rc != 0) {
        fprintf(stderr, "storage_fold_windows: %s\n", err_message(rc));
        return -1;
    }
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* The window fold a node runs every window-fold-interval (every window of
 * the set has ended), its CPU, a second pass's (the memtable scan that
 * finds nothing more: what every later pass costs), and the render after
 * it: the store as a node holds it shortly after the pushes, before any
 * flush. */
static int fold_figures(qctx_t *q)
{
    size_t folded, again;
    double ms = fold_pass(q, &folded), ms2 = ms < 0 ? -1 : fold_pass(q, &again);
    if (ms < 0 || ms2 < 0) return 1;
    printf("query_window_fold_ms: %.3f (%zu windows folded, CPU of the thread; a pass after it "
           "%.3f ms, %zu folded)\n",
           ms, folded, ms2, again);
    if (same_as_whole_tree(q, "folded") != 0) return 1;
    return render_median(q, "folded", q->from) < 0;
}

static int run_queries(qctx_t *q, const char *dir)
{
    int64_t ticks;
    size_t bytes;
    if (same_as_whole_tree(q, "as_ingested") != 0) return 1;
    if (forest_figures(q) != 0) return 1;
    double m1 = render_median(q, "as_ingested", q->from);
    if (m1 < 0 || fold_figures(q) != 0 || storage_compact(q->st) != 0 || reopen(&q->st, dir) != 0)
        return 1;
    if (same_as_whole_tree(q, "compacted") != 0) return 1;
    double cold = render_once(q, q->from, &ticks, &bytes);
    printf("query_cold_after_reopen_ms: %.3f\n", cold * 1e3);
    double m2 = render_median(q, "compacted", q->from);
    char from30[32];
    snprintf(from30, sizeof from30, "%lld", strtoll(q->until, NULL, 10) - 30 * 86400);
    double m30 = render_median(q, "30d", from30);
    if (m2 < 0 || m30 < 0) return 1;
    printf("RATIO query_30d_over_range: %.2f (target <= 2)\n", m30 / m2);
    return 0;
}

/* --data-dir DIR: the renders of a store written elsewhere (a stopped
 * node's data directory, pushed over HTTP; --tenant names whose), timed
 * in process: the same stored state the node's render path reads. */
static int stored_render(qctx_t *q, const char *dir)
{
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    o.window_fold_interval_seconds = 0;
    errmsg_t em = {{0}};
    int rc = storage_open(&o, &q->st, &em);
    if (rc != 0) {
        fprintf(stderr, "storage_open %s: %s\n", dir, errmsg_text(&em, rc));
        return 1;
    }
    rc = render_median(q, "stored", q->from) < 0;
    storage_close(q->st);
    return rc;
}

int cmd_query(int argc, char **argv)
{
    const char *index = NULL, *service = NULL, *type = "memory:inuse_space:bytes:space:bytes";
    const char *type_unit = "inuse_space/bytes", *forests_only = NULL, *data_dir = NULL;
    const char *pair_only = NULL;
    const char *tenant = "bench";
    uint64_t merges = UINT64_MAX; /* window-successive-merges, or the default */
    uint64_t assists = 1;         /* --assist-threads, as a node's query-assist-threads */
    for (int i = 0; i < argc; i++) {
        if (flag_str(argc, argv, &i, "--index", &index) ||
            flag_u64(argc, argv, &i, "--window-successive-merges", &merges) ||
            flag_str(argc, argv, &i, "--forests-only", &forests_only) ||
            flag_str(argc, argv, &i, "--pair-only", &pair_only) ||
            flag_str(argc, argv, &i, "--service", &service) ||
            flag_str(argc, argv, &i, "--type", &type) ||
            flag_str(argc, argv, &i, "--type-unit", &type_unit) ||
            flag_str(argc, argv, &i, "--data-dir", &data_dir) ||
            flag_str(argc, argv, &i, "--tenant", &tenant) ||
            flag_u64(argc, argv, &i, "--assist-threads", &assists))
            continue;
        fprintf(stderr, "query: unknown flag %s\n", argv[i]);
        return 2;
    }
    profile_set_t set = {0};
    if (index == NULL || profile_set_load_index(&set, index) != 0 || set.n == 0) {
        fprintf(stderr, "query: cannot load --index\n");
        return 1;
    }
    qctx_t q = {.expect = expected_total(&set, type_unit), .tenant = tenant};
    if (assist_new((int)(assists < ASSIST_MAX_THREADS ? assists : ASSIST_MAX_THREADS), &q.assist) !=
        0) {
        fprintf(stderr, "query: cannot start --assist-threads\n");
        profile_set_free(&set);
        return 1;
    }
    printf("query_assist_threads: %llu\n", (unsigned long long)assists);
    /* an in-use type renders the average profile (docs/api.md, averaged
     * types): every profile of the set is one profile of the series */
    if (q.expect >= 0 && query_type_average(type)) q.expect /= (int64_t)set.n;
    char svc[128];
    snprintf(svc, sizeof svc, "%.*s", (int)strcspn(set.p[0].name, "{"), set.p[0].name);
    if (service != NULL && service[0] == '\0') /* --service '': the whole fleet */
        snprintf(q.query, sizeof q.query, "%s{}", type);
    else
        snprintf(q.query, sizeof q.query, "%s{service_name=\"%s\"}", type, service ? service : svc);
    set_range(&q, &set);
    int rc;
    if (data_dir != NULL) {
        rc = stored_render(&q, data_dir);
        profile_set_free(&set);
        assist_free(q.assist);
        return rc;
    }
    char *dir = make_temp_dir("query");
    rc = 1;
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    if (merges != UINT64_MAX) o.window_successive_merges = (uint32_t)merges;
    o.window_fold_interval_seconds = 0; /* as ingested until fold_figures folds */
    errmsg_t em = {{0}};
    if (dir && storage_open(&o, &q.st, &em) == 0 && ingest_set(q.st, &set) == 0)
        rc = forests_only ? forest_rounds(&q, atoi(forests_only))
             : pair_only  ? pair_rounds(&q, atoi(pair_only))
                          : run_queries(&q, dir);
    storage_close(q.st);
    if (dir) rm_rf(dir);
    free(dir);
    profile_set_free(&set);
    assist_free(q.assist);
    return rc;
}
