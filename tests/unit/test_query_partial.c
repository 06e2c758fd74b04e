/* test_query_partial.c — partial queries over token ranges and their gather,
 * against a real storage in a temp directory.
 *
 * A fixture of 48 series (4 services x envs x pods, placed by the real
 * placement tokens) gets random profiles over a few hours. For every query
 * (flame graphs in each format, with truncation; label names and values, with
 * and without match), the ring is cut at random tokens (some exactly at
 * series tokens, to test the (start, end] edges) into ranges dealt to a few
 * "nodes"; each node's partial is folded into a gather either in process or
 * through the encoded pieces a PartialResult carries (profile lists too; a
 * flame graph truncated to maxNodes mostly as the tokens' forests a
 * coordinator asks its shares for, kept unmerged by the gather). The answer must be the
 * same bytes as the single-node answer, every series must land in exactly one
 * partial, and the partial totals must add up to the whole. Then hostile
 * arguments. Prints its seed; argv[1] replays.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "query/query.h"
#include "ring/ring.h"
#include "tests/unit/check.h"
#include "tests/unit/test_budget.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define MEM "memory:alloc_space:bytes:space:bytes"
#define T0 (19000LL * 86400)
#define NSERIES 48
#define TENANT "anonymous"

typedef struct series_fx {
    labels_t *labels;
    uint64_t token, id;
} series_fx_t;

static series_fx_t fx[NSERIES];
/* every profile written: its time (s), series index and id number */
#define MAX_WRITES 2048
typedef struct wrote {
    int64_t t;
    size_t s;
    uint64_t pid;
    char *folded; /* the profile's own stacks (folded), for the first OPENED writes */
} wrote_t;
#define OPENED 64
static wrote_t writes[MAX_WRITES];
static size_t nwrites;
static symtab_t *syms;
static uint64_t sym_ids[40];
static const char *services[] = {"api", "db", "web", "batch"};

static void make_series(void)
{
    syms = symtab_new();
    for (int i = 0; i < 40; i++) {
        char name[32], file[32];
        snprintf(name, sizeof name, i < 4 ? "main.root%d" : "pkg.fn%d", i);
        snprintf(file, sizeof file, "src/f%d.go", i % 7);
        symtab_intern(syms, name, strlen(name), file, strlen(file), &sym_ids[i]);
    }
    for (int i = 0; i < NSERIES; i++) {
        labels_t *l = labels_new();
        const char *type = i % 8 == 7 ? MEM : CPU;
        char pod[16];
        snprintf(pod, sizeof pod, "pod-%d", i);
        labels_set_str(l, LABEL_NAME, i % 8 == 7 ? "memory" : "process_cpu");
        labels_set_str(l, LABEL_PROFILE_TYPE, type);
        labels_set_str(l, LABEL_SERVICE_NAME, services[i % 4]);
        labels_set_str(l, "env", i % 3 ? "prod" : "dev");
        labels_set_str(l, "pod", pod);
        if (i % 4 != 3) labels_set_str(l, "pyroscope_spy", i % 4 == 2 && i > 30 ? "ebpf" : "gospy");
        fx[i].labels = l;
        fx[i].id = labels_hash(l);
        fx[i].token = ring_placement_token(
            TENANT, services[i % 4], ring_series_shard(fx[i].id, RING_DEFAULT_SHARDS_PER_SERVICE));
    }
}

static calltree_t *random_profile(void)
{
    calltree_t *t = calltree_new(0);
    int n = 1 + (int)(check_rng() % 8);
    for (int i = 0; i < n; i++) {
        uint64_t st[10];
        size_t d = 1 + check_rng() % 10;
        st[0] = sym_ids[check_rng() % 4];
        for (size_t k = 1; k < d; k++)
            st[k] = sym_ids[4 + check_rng() % 36];
        calltree_add_stack(t, st, d, 1 + (int64_t)(check_rng() % 10000000));
    }
    return t;
}

static void write_fixture(storage_t *st)
{
    int n = 0;
    for (int64_t t = T0 + 5; t < T0 + 3 * 3600; t += 7 + (int64_t)(check_rng() % 40), n++) {
        size_t s = check_rng() % NSERIES;
        calltree_t *tree = random_profile();
        storage_series_write_t sw = {
            .labels = fx[s].labels, .token = fx[s].token, .series_id = fx[s].id, .tree = tree};
        storage_profile_write_t pw = {.tenant = TENANT,
                                      .time_ns = t * 1000000000LL,
                                      .series = &sw,
                                      .nseries = 1,
                                      .symbols = syms};
        uint64_t pid = (uint64_t)n + 1;
        memcpy(pw.profile_id, &pid, 8);
        errmsg_t em = {{0}};
        int rc = storage_write_profile(st, &pw, NULL, &em);
        if (rc != 0) fprintf(stderr, "write: %s\n", em.text);
        CHECK_EQ_INT(rc, 0);
        char *folded = NULL;
        if (nwrites < OPENED) {
            buf_t b;
            buf_init(&b, BUF_UNLIMITED);
            CHECK_EQ_INT(query_encode_folded(tree, syms, &b), 0);
            CHECK_EQ_INT(buf_append_byte(&b, 0), 0);
            folded = (char *)b.data;
        }
        calltree_free(tree);
        CHECK(nwrites < MAX_WRITES);
        if (nwrites < MAX_WRITES) writes[nwrites++] = (wrote_t){t, s, pid, folded};
    }
    fprintf(stderr, "wrote %d profiles\n", n);
}

/* ---- random splits of the ring ---- */

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Cuts the ring at k distinct tokens (some at series tokens) into k ranges. */
static size_t random_ranges(query_range_t *out, size_t k)
{
    uint64_t cut[64];
    size_t n = 0;
    while (n < k) {
        uint64_t c = check_rng() % 3 == 0 ? fx[check_rng() % NSERIES].token - (check_rng() % 2)
                                          : check_rng();
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= cut[i] == c;
        if (!dup) cut[n++] = c;
    }
    qsort(cut, n, sizeof *cut, u64_cmp);
    if (n == 1) {
        out[0] = (query_range_t){cut[0], cut[0]}; /* the whole ring */
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (query_range_t){cut[(i + n - 1) % n], cut[i]};
    return n;
}

/* Feeds a partial to the gather as a PartialResult would carry it. */
static int add_encoded(query_gather_t *g, const query_partial_t *p, errmsg_t *em)
{
    if (p->kind != QUERY_KIND_RENDER) {
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < p->nvalues; i++)
            rc = query_gather_add_value(g, p->values[i], strlen(p->values[i]));
        return rc;
    }
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = calltree_encode(p->tree, &b);
    size_t *end = calloc(p->ntabs + 1, sizeof *end);
    const uint8_t **enc = calloc(p->ntabs + 1, sizeof *enc);
    size_t *len = calloc(p->ntabs + 1, sizeof *len);
    end[0] = b.len;
    for (size_t i = 0; rc == 0 && i < p->ntabs; i++) { /* as a share ships its forests */
        rc = query_forest_encode(&p->tabs[i], &b);
        end[i + 1] = b.len;
    }
    for (size_t i = 0; rc == 0 && i <= p->ntabs; i++) {
        enc[i] = b.data + (i ? end[i - 1] : 0);
        len[i] = end[i] - (i ? end[i - 1] : 0);
    }
    if (rc == 0) rc = query_gather_add_trees(g, enc, len, p->ntabs + 1, em);
    free(end);
    free(enc);
    free(len);
    buf_free(&b);
    for (size_t i = 0; rc == 0 && i < symtab_count(p->syms); i++) {
        const char *name, *file;
        uint64_t id = symtab_id_at(p->syms, i);
        symtab_get(p->syms, id, &name, &file);
        rc = query_gather_add_symbol(g, id, name, strlen(name), file, strlen(file));
    }
    if (rc == 0) rc = query_gather_add_series(g, p->nseries, p->spy_name, em);
    for (size_t i = 0; rc == 0 && i < p->tl.n; i++)
        if (p->tl.samples[i] != 0)
            rc = query_gather_add_total(g, p->tl.start_s + (int64_t)i * p->tl.step_s,
                                        p->tl.samples[i], em);
    return rc;
}

typedef struct qcase {
    query_kind_t kind;
    const char *query, *format, *max_nodes, *label, *match, *limit;
} qcase_t;

/* Shares that summed their functions (top) in test_splits. */
static size_t fns_partials;

static const qcase_t cases[] = {
    {QUERY_KIND_RENDER, CPU "{}", NULL, NULL},
    {QUERY_KIND_RENDER, CPU "{service_name=\"api\"}", "json", NULL},
    {QUERY_KIND_RENDER, CPU "{service_name=\"web\"}", "json", "16"},
    {QUERY_KIND_RENDER, CPU "{env=\"prod\", pod=~\"pod-1.*\"}", "folded", NULL},
    {QUERY_KIND_RENDER, CPU "{service_name!=\"db\"}", "pprof", "24"},
    {QUERY_KIND_RENDER, MEM "{}", "json", "8"},
    {QUERY_KIND_RENDER, CPU "{service_name=\"nothing\"}", "json", NULL},
    /* top: the shares in the coordinator's process sum their functions */
    {QUERY_KIND_RENDER, CPU "{}", "top", NULL, NULL, NULL, "10000"},
    {QUERY_KIND_RENDER, CPU "{service_name!=\"db\"}", "top", NULL},
    {QUERY_KIND_RENDER, MEM "{}", "top", NULL, NULL, NULL, "3"},
    {QUERY_KIND_LABEL_NAMES, NULL, NULL, NULL, NULL, NULL},
    {QUERY_KIND_LABEL_NAMES, NULL, NULL, NULL, NULL, "{service_name=\"batch\"}"},
    {QUERY_KIND_LABEL_VALUES, NULL, NULL, NULL, "pod", NULL},
    {QUERY_KIND_LABEL_VALUES, NULL, NULL, NULL, "__profile_type__", NULL},
    {QUERY_KIND_LABEL_VALUES, NULL, NULL, NULL, "pod", CPU "{env=\"dev\"}"},
    {QUERY_KIND_LABEL_VALUES, NULL, NULL, NULL, "pyroscope_spy", "{}"},
    {QUERY_KIND_LABEL_SHARES, CPU "{}", NULL, NULL, "env", NULL},
    {QUERY_KIND_LABEL_SHARES, CPU "{service_name!=\"db\"}", NULL, NULL, "pod", NULL},
    {QUERY_KIND_LABEL_SHARES, MEM "{}", NULL, NULL, "service_name", NULL},
    {QUERY_KIND_LABEL_SHARES, CPU "{}", NULL, NULL, "no_such_label", NULL},
    {QUERY_KIND_PROFILES, CPU "{}", NULL, NULL, NULL, NULL, "7"},
    {QUERY_KIND_PROFILES, CPU "{service_name=\"api\"}", NULL, NULL, NULL, NULL, NULL},
    {QUERY_KIND_PROFILES, MEM "{}", NULL, NULL, NULL, NULL, "10000"},
    {QUERY_KIND_PROFILES, CPU "{env=\"dev\"}", NULL, NULL, NULL, NULL, "1"},
    {QUERY_KIND_PROFILES, CPU "{service_name=\"nothing\"}", NULL, NULL, NULL, NULL, NULL},
};
#define NCASES (sizeof cases / sizeof *cases)

static query_params_t params_of(const qcase_t *c, const char *from, const char *until)
{
    query_params_t p = {.query = c->query,
                        .from = from,
                        .until = until,
                        .max_nodes = c->max_nodes,
                        .format = c->format,
                        .label = c->label,
                        .match = c->match,
                        .limit = c->limit};
    return p;
}

static int whole(storage_t *st, const qcase_t *c, const query_params_t *p,
                 const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    if (c->kind == QUERY_KIND_RENDER) return query_render(st, TENANT, p, lim, now_ms, out, em);
    if (c->kind == QUERY_KIND_LABEL_NAMES)
        return query_label_names(st, TENANT, p, lim, now_ms, out, em);
    if (c->kind == QUERY_KIND_LABEL_SHARES)
        return query_label_shares(st, TENANT, p, lim, now_ms, out, em);
    if (c->kind == QUERY_KIND_PROFILES) return query_profiles(st, TENANT, p, lim, now_ms, out, em);
    return query_label_values(st, TENANT, p, lim, now_ms, out, em);
}

/* One split: nodes answer random groups of ranges. Returns the answer. */
static int split_answer(storage_t *st, const query_spec_t *spec, const query_limits_t *lim,
                        query_result_t *out, int64_t *sum_total, size_t *sum_series)
{
    query_range_t r[64];
    size_t nr = random_ranges(r, 1 + check_rng() % 40);
    size_t nnodes = 1 + check_rng() % 5;
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(spec, lim, &g), 0);
    query_gather_names_from(g, st, TENANT); /* for the in-process partials without names */
    int rc = 0;
    errmsg_t em = {{0}};
    for (size_t node = 0; rc == 0 && node < nnodes; node++) {
        query_range_t mine[64];
        size_t nm = 0;
        for (size_t i = 0; i < nr; i++)
            if (i % nnodes == node) mine[nm++] = r[i];
        if (nm == 0) continue;
        query_partial_args_t a;
        query_spec_args(spec, &a);
        a.timeline = spec->kind == QUERY_KIND_RENDER; /* remote nodes always send it */
        a.ranges = mine;
        a.nranges = nm;
        a.forests = check_rng() % 4 != 0 && query_spec_forests(spec); /* as a coordinator asks */
        int encoded = check_rng() % 2;
        a.fns &= !encoded; /* a share of another node answers its tree */
        /* a share in the coordinator's process: the gather loads the kept names */
        a.names_later = !encoded && check_rng() % 2;
        query_partial_t p;
        rc = query_partial_run(st, TENANT, &a, lim, &p, &em);
        if (rc == 0 && p.ntabs > 0 && a.names_later) /* none of the forests' names loaded */
            CHECK(p.names_later && symtab_count(p.syms) == 0);
        if (rc == 0 && p.tree) *sum_total += calltree_root_total(p.tree);
        if (rc == 0 && a.fns && p.nfns > 0) { /* its forests' sums, not their tree */
            CHECK(p.fns_total > 0 && calltree_node_count(p.tree) == 1);
            fns_partials++;
        }
        if (rc == 0) *sum_total += p.fns_total;
        for (size_t i = 0; rc == 0 && i < p.ntabs; i++) {
            CHECK(a.forests && p.tabs[i].nonneg);
            *sum_total += p.tabs[i].total[0];
        }
        *sum_series += p.nseries;
        if (rc == 0) rc = encoded ? add_encoded(g, &p, &em) : query_gather_add(g, &p, &em);
        query_partial_free(&p);
    }
    if (rc == 0) rc = query_gather_finish(g, NULL, out, &em);
    if (rc != 0) fprintf(stderr, "split: %s\n", em.text);
    query_gather_free(g);
    return rc;
}

static int64_t whole_total(storage_t *st, const query_spec_t *spec, const query_limits_t *lim,
                           size_t *nseries)
{
    query_partial_args_t a;
    query_spec_args(spec, &a);
    query_partial_t p;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, lim, &p, &em), 0);
    int64_t t = (p.tree ? calltree_root_total(p.tree) : 0) + p.fns_total;
    *nseries = p.nseries;
    query_partial_free(&p);
    return t;
}

static void test_splits(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    char from[32];
    const char *until = "now";
    snprintf(from, sizeof from, "%lld", (long long)(T0 + 1234)); /* off the 10 s grid */
    for (size_t c = 0; c < NCASES; c++) {
        query_params_t p = params_of(&cases[c], from, until);
        query_result_t ref;
        query_result_init(&ref);
        errmsg_t em = {{0}};
        int rc = whole(st, &cases[c], &p, &lim, now_ms, &ref, &em);
        if (rc != 0) fprintf(stderr, "case %zu: %s\n", c, em.text);
        CHECK_EQ_INT(rc, 0);
        CHECK(ref.body.len > 2);
        query_spec_t spec;
        CHECK_EQ_INT(query_spec_parse(cases[c].kind, &p, &lim, now_ms, &spec, &em), 0);
        size_t whole_series = 0;
        int64_t wt = whole_total(st, &spec, &lim, &whole_series);
        for (int round = 0; round < 12; round++) {
            query_result_t got;
            query_result_init(&got);
            int64_t sum = 0;
            size_t nser = 0;
            CHECK_EQ_INT(split_answer(st, &spec, &lim, &got, &sum, &nser), 0);
            int same = got.body.len == ref.body.len &&
                       memcmp(got.body.data, ref.body.data, ref.body.len) == 0;
            if (!same)
                fprintf(stderr, "case %zu round %d: %zu vs %zu bytes\n", c, round, got.body.len,
                        ref.body.len);
            CHECK(same);
            CHECK_EQ_STR(got.content_type, ref.content_type);
            CHECK_EQ_INT(sum, wt);
            CHECK_EQ_INT(nser, whole_series);
            query_result_free(&got);
        }
        if (cases[c].kind == QUERY_KIND_RENDER && strstr(cases[c].query, "nothing") == NULL)
            CHECK(wt > 0 && whole_series > 0);
        query_spec_free(&spec);
        query_result_free(&ref);
    }
    CHECK(fns_partials > 0);
}

/* The groups member added to a render: the render's bytes less its brace,
 * a comma, the member, "partial":true, the brace; of known length after a
 * whole render, the same bytes after a streamed one read a byte at a time;
 * a whole answer past query-max-output-bytes is refused naming it. */
static void groups_added(const query_limits_t *lim, const buf_t *groups)
{
    const char *r = "{\"version\":1}";
    buf_t want;
    buf_init(&want, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_str(&want, "{\"version\":1,"), 0);
    CHECK_EQ_INT(buf_append(&want, groups->data, groups->len), 0);
    CHECK_EQ_INT(buf_append_str(&want, ",\"partial\":true}"), 0);
    for (int streamed = 0; streamed < 2; streamed++) {
        query_result_t render, out;
        query_result_init(&render);
        query_result_init(&out);
        buf_t g;
        buf_init(&g, BUF_UNLIMITED);
        CHECK_EQ_INT(buf_append(&g, groups->data, groups->len), 0);
        buf_init(&render.body, BUF_UNLIMITED);
        CHECK_EQ_INT(buf_append_str(&render.body, r), 0);
        if (streamed) CHECK_EQ_INT(query_stream_of_bufs(&render.body, 1, &render.stream), 0);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(query_render_groups_open(&render, &g, 1, lim, &out, &em), 0);
        CHECK(render.stream == NULL && render.body.data == NULL && g.data == NULL); /* taken */
        CHECK(out.stream != NULL && out.body.len == 0);
        CHECK(query_stream_length(out.stream) ==
              (streamed ? QUERY_STREAM_LENGTH_UNKNOWN : (uint64_t)want.len));
        buf_t got;
        buf_init(&got, BUF_UNLIMITED);
        int done = 0, rc = 0;
        while (rc == 0 && !done)
            rc = query_stream_next(out.stream, &got, streamed ? 1 : 5, &done);
        CHECK_EQ_INT(rc, 0);
        CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
        buf_free(&got);
        query_result_free(&out);
        query_result_free(&render);
    }
    query_limits_t small = *lim;
    small.max_output_bytes = want.len - 1;
    query_result_t render, out;
    query_result_init(&render);
    query_result_init(&out);
    buf_t g;
    buf_init(&g, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append(&g, groups->data, groups->len), 0);
    buf_init(&render.body, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_str(&render.body, r), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_render_groups_open(&render, &g, 1, &small, &out, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "query-max-output-bytes") != NULL && out.stream == NULL);
    query_result_free(&out);
    query_result_free(&render);
    buf_free(&want);
}

/* ---- per-value timelines (label shares, groupBy) ---- */

typedef struct tls {
    size_t count, n;      /* timelines found, buckets each */
    int64_t start, step;  /* shared by all of them (checked) */
    int64_t sum[2048];    /* per bucket, over all of them */
    int64_t values_total; /* every sample of every timeline */
} tls_t;

/* Reads every {"startTime":S,"samples":[...],"durationDelta":D} of json. */
static void read_timelines(const char *json, tls_t *t)
{
    memset(t, 0, sizeof *t);
    const char *at = json;
    while ((at = strstr(at, "{\"startTime\":")) != NULL) {
        char *end;
        int64_t start = strtoll(at + 13, &end, 10);
        CHECK(strncmp(end, ",\"samples\":[", 12) == 0);
        at = end + 12;
        size_t n = 0;
        while (*at != ']') {
            int64_t v = strtoll(at, &end, 10);
            CHECK(end != at && n < 2048);
            t->sum[n++] += v;
            t->values_total += v;
            at = *end == ',' ? end + 1 : end;
        }
        CHECK(strncmp(at, "],\"durationDelta\":", 18) == 0);
        int64_t step = strtoll(at + 18, &end, 10);
        CHECK(*end == '}');
        if (t->count > 0) CHECK(start == t->start && step == t->step && n == t->n);
        t->start = start;
        t->step = step;
        t->n = n;
        t->count++;
    }
}

static const struct {
    const char *query, *label, *from;
} group_cases[] = {
    {CPU "{}", "env", NULL},
    {CPU "{service_name!=\"db\"}", "pod", NULL},
    {MEM "{}", "service_name", "now-3d"},
    {CPU "{}", "no_such_label", "now-3d"},
    {CPU "{env=\"prod\"}", "service_name", "now-7d"},
};

/* The groups member from one partial over every token, and from a split. */
static void check_groups_member(storage_t *st, const query_params_t *p, const tls_t *render,
                                int64_t now_ms)
{
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_params_t gp = *p;
    gp.groups = 1;
    query_spec_t spec;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_LABEL_SHARES, &gp, &lim, now_ms, &spec, &em), 0);
    query_result_t whole, split;
    query_result_init(&whole);
    query_result_init(&split);
    int64_t sum = 0;
    size_t nser = 0;
    query_range_t all = {0, 0};
    query_partial_args_t a;
    query_spec_args(&spec, &a);
    a.ranges = &all;
    a.nranges = 1;
    query_partial_t part;
    query_gather_t *g;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &part, &em), 0);
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    CHECK_EQ_INT(query_gather_add(g, &part, &em), 0);
    CHECK_EQ_INT(query_gather_finish(g, "\"partial\":true", &whole, &em), 0);
    query_gather_free(g);
    query_partial_free(&part);
    CHECK_EQ_INT(split_answer(st, &spec, &lim, &split, &sum, &nser), 0);
    CHECK(whole.body.len == split.body.len &&
          memcmp(whole.body.data, split.body.data, whole.body.len) == 0);
    CHECK(strncmp((const char *)whole.body.data, "\"groups\":{", 10) == 0);
    CHECK(strstr((const char *)whole.body.data, "partial") == NULL); /* the caller adds it */
    tls_t t;
    read_timelines((const char *)whole.body.data, &t);
    CHECK(t.count == 0 || (t.n == render->n && t.start == render->start));
    for (size_t k = 0; t.count > 0 && k < t.n; k++)
        CHECK_EQ_INT(t.sum[k], render->sum[k]);
    /* added to a render as one more member, whole or streamed */
    groups_added(&lim, &whole.body);
    query_result_free(&whole);
    query_result_free(&split);
    query_spec_free(&spec);
}

/* Each value's timeline has the render's grid, and per bucket the values'
 * samples add up to the render's timeline (every selected series has one
 * value, "" without the label). */
static void test_group_timelines(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    char from[32];
    snprintf(from, sizeof from, "%lld", (long long)(T0 + 1234));
    for (size_t c = 0; c < sizeof group_cases / sizeof *group_cases; c++) {
        query_params_t p = {.query = group_cases[c].query,
                            .from = group_cases[c].from ? group_cases[c].from : from,
                            .until = "now",
                            .label = group_cases[c].label};
        errmsg_t em = {{0}};
        query_result_t r, sh;
        query_result_init(&r);
        query_result_init(&sh);
        CHECK_EQ_INT(query_render(st, TENANT, &p, &lim, now_ms, &r, &em), 0);
        CHECK_EQ_INT(query_label_shares(st, TENANT, &p, &lim, now_ms, &sh, &em), 0);
        tls_t rt, vt;
        read_timelines((const char *)r.body.data, &rt);
        read_timelines((const char *)sh.body.data, &vt);
        CHECK_EQ_INT(rt.count, 1);
        CHECK(rt.n > 100 && rt.values_total > 0);
        CHECK(vt.count >= 1);
        CHECK(vt.n == rt.n && vt.start == rt.start && vt.step == rt.step);
        for (size_t k = 0; k < rt.n; k++)
            CHECK_EQ_INT(vt.sum[k], rt.sum[k]);
        const char *tot = strstr((const char *)sh.body.data, "\"total\":");
        CHECK(tot != NULL && strtoll(tot + 8, NULL, 10) == vt.values_total);
        check_groups_member(st, &p, &rt, now_ms);
        query_result_free(&r);
        query_result_free(&sh);
    }
}

/* A label-shares spec of query by label over T0 .. T0 + 30 (3 buckets of
 * 10 s), with default limits in lim. */
static void shares_spec(const char *query, const char *label, query_limits_t *lim,
                        query_spec_t *spec)
{
    query_limits_default(lim);
    errmsg_t em = {{0}};
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)T0);
    snprintf(until, sizeof until, "%lld", (long long)T0 + 30);
    query_params_t p = {.query = query, .from = from, .until = until, .label = label};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_LABEL_SHARES, &p, lim, now_ms, spec, &em), 0);
}

/* A label-shares gather takes entries of exactly its bucket count. */
static void test_share_entries(void)
{
    query_limits_t lim;
    errmsg_t em = {{0}};
    query_spec_t spec;
    shares_spec(CPU "{}", "env", &lim, &spec);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    const char *bad[] = {"5 1,2 prod",   "5 1,2,3, prod", "5 1,2,3,4 prod", "5 1,,3 prod",
                         "5 1,x,3 prod", "5 prod",        "x 1,2,3 prod",   "5 1,2,3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(query_gather_add_value(g, bad[i], strlen(bad[i])), ERR_CORRUPT);
    const char *good[] = {"6 1,2,3 prod", "4 0,4,0 dev", "1 1,0,0 prod", "2 0,0,2 a b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_EQ_INT(query_gather_add_value(g, good[i], strlen(good[i])), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, NULL, &r, &em), 0);
    char want[512];
    snprintf(want, sizeof want,
             "{\"label\":\"env\",\"aggregationType\":\"sum\",\"total\":13,\"values\":["
             "{\"value\":\"prod\",\"total\":7,\"share\":0.538462,\"timeline\":"
             "{\"startTime\":%lld,\"samples\":[2,2,3],\"durationDelta\":10}},"
             "{\"value\":\"dev\",\"total\":4,\"share\":0.307692,\"timeline\":"
             "{\"startTime\":%lld,\"samples\":[0,4,0],\"durationDelta\":10}},"
             "{\"value\":\"a b\",\"total\":2,\"share\":0.153846,\"timeline\":"
             "{\"startTime\":%lld,\"samples\":[0,0,2],\"durationDelta\":10}}]}",
             (long long)T0, (long long)T0, (long long)T0);
    CHECK_EQ_STR((const char *)r.body.data, want);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* An averaged type's entries with split pushes by id, from two answers:
 * the same push counts once per value ("a": 3 + 3 goroutines of one push,
 * over two answers, average 6; "b": two pushes in two buckets); bad push
 * lists are refused whole. */
static void test_share_pushes(void)
{
    query_limits_t lim;
    errmsg_t em = {{0}};
    query_spec_t spec;
    shares_spec("goroutines:goroutine:count:goroutine:count{}", "pod", &lim, &spec);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    const char *bad[] = {"+3/0 3/0,0/0,0/0 3:00000000000000aa a",
                         "+3/0 3/0,0/0,0/0 0:00000000000000zz a",
                         "+3/0 3/0,0/0,0/0 0:00000000000000aa, a",
                         "+3/0 3/0,0/0,0/0 x:00000000000000aa a",
                         "+3/0 3/0,0/0,0/0 0:0aa a",
                         "+3/0 3/0,0/0,0/0 a"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(query_gather_add_value(g, bad[i], strlen(bad[i])), ERR_CORRUPT);
    const char *good[] = {
        "+3/0 3/0,0/0,0/0 0:00000000000000aa a", "+3/0 3/0,0/0,0/0 0:00000000000000aa a",
        "+9/0 5/0,0/0,4/0 0:00000000000000bb,2:00000000000000cc b", "+0/0 0/0,0/0,0/0 - c"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_EQ_INT(query_gather_add_value(g, good[i], strlen(good[i])), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, NULL, &r, &em), 0);
    const char *body = (const char *)r.body.data;
    CHECK(strstr(body, "{\"value\":\"a\",\"total\":6,") != NULL);
    CHECK(strstr(body, "{\"value\":\"b\",\"total\":4,") != NULL);
    CHECK(strstr(body, "\"samples\":[6,0,0]") != NULL);
    CHECK(strstr(body, "\"samples\":[5,0,4]") != NULL);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* ---- profile lists ---- */

static int write_cmp(const void *a, const void *b)
{
    const wrote_t *x = a, *y = b;
    if (x->t != y->t) return x->t > y->t ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid; /* ids: pid little-endian, then zeros */
}

/* The list from the writes themselves: the type's profiles in [from, until),
 * newest first; then the answer must list exactly those, cut at limit. */
static void check_list(storage_t *st, const char *type, int64_t from, int64_t until, size_t limit)
{
    static wrote_t want[MAX_WRITES];
    size_t nw = 0;
    for (size_t i = 0; i < nwrites; i++)
        if (writes[i].t >= from && writes[i].t < until &&
            strcmp(labels_get(fx[writes[i].s].labels, LABEL_PROFILE_TYPE), type) == 0)
            want[nw++] = writes[i];
    qsort(want, nw, sizeof *want, write_cmp);
    CHECK(nw > 1); /* the fixture has some in every range checked */
    char q[128], f[32], u[32], l[32];
    snprintf(q, sizeof q, "%s{}", type);
    snprintf(f, sizeof f, "%lld", (long long)from);
    snprintf(u, sizeof u, "%lld", (long long)until);
    snprintf(l, sizeof l, "%zu", limit);
    query_params_t p = {.query = q, .from = f, .until = u, .limit = l};
    query_limits_t lim;
    query_limits_default(&lim);
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_profiles(st, TENANT, &p, &lim, (T0 + 4 * 3600) * 1000, &r, &em), 0);
    const char *s = (const char *)r.body.data;
    size_t n = nw < limit ? nw : limit;
    for (size_t i = 0; i < n; i++) {
        char one[512], id[33];
        uint8_t raw[16] = {0};
        memcpy(raw, &want[i].pid, 8);
        for (int k = 0; k < 16; k++)
            snprintf(id + 2 * k, 3, "%02x", raw[k]);
        snprintf(one, sizeof one,
                 "{\"time\":%lld,\"id\":\"%016llx%016llx%016llx%s\",\"profile_id\":\"%s\","
                 "\"total\":",
                 (long long)want[i].t, (unsigned long long)fx[want[i].s].token,
                 (unsigned long long)fx[want[i].s].id,
                 (unsigned long long)(want[i].t * 1000000000) ^ (1ULL << 63), id, id);
        const char *at = strstr(s, one);
        if (at == NULL) fprintf(stderr, "profile %zu (%s) not next in %.200s\n", i, one, s);
        CHECK(at != NULL);
        if (at == NULL) break;
        char pod[32];
        snprintf(pod, sizeof pod, "\"pod\":\"pod-%zu\"", want[i].s);
        const char *end = strchr(strstr(at, "\"labels\":{"), '}');
        CHECK(strstr(at, pod) != NULL && strstr(at, pod) < end);
        s = end;
    }
    CHECK(strstr(s, "\"time\"") == NULL); /* nothing more listed */
    CHECK(strstr(s, nw > limit ? "\"truncated\":true}" : "\"truncated\":false}") != NULL);
    query_result_free(&r);
}

static void test_profile_lists(storage_t *st)
{
    check_list(st, MEM, T0 + 3600, T0 + 3 * 3600, 10000);
    check_list(st, CPU, T0 + 3600, T0 + 3 * 3600, 5);
    check_list(st, CPU, T0, T0 + 4 * 3600, 10000);
    check_list(st, CPU, T0 + 600, T0 + 1200, 1);
    /* malformed entries from a node */
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_params_t p = {.query = CPU "{}", .from = "0", .until = "now"};
    query_spec_t spec;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_PROFILES, &p, &lim, T0 * 1000, &spec, &em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
#define R0 "00000000000000010000000000000002"
#define T5 "800000012a05f200" /* 5e9 ns, offset binary */
#define T9 "8000000218711a00" /* 9e9 ns */
    const char *bad[] = {
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0 7 {}",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0g 7 {}",
        "5000000000 000102030405060708090a0b0c0d0e0f 7 {}", /* a bare profile id: no series */
        "5000000001 " R0 T5 "000102030405060708090a0b0c0d0e0f 7 {}", /* times disagree */
        "x " R0 T5 "000102030405060708090a0b0c0d0e0f 7 {}",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7x {}",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7 {\"a\":}",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7 {}x",
        "5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7 []"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(query_gather_add_value(g, bad[i], strlen(bad[i])), ERR_CORRUPT);
    const char *good[] = {"5000000000 " R0 T5 "000102030405060708090a0b0c0d0e0f 7 {\"a\":\"b\"}",
                          "9000000000 " R0 T9 "ff0102030405060708090a0b0c0d0e0f 3 {}"};
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ_INT(query_gather_add_value(g, good[i], strlen(good[i])), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, "\"partial\":true", &r, &em), 0);
    CHECK_EQ_STR((const char *)r.body.data,
                 "{\"profiles\":[{\"time\":9,\"id\":\"" R0 T9 "ff0102030405060708090a0b0c0d0e0f\","
                 "\"profile_id\":\"ff0102030405060708090a0b0c0d0e0f\","
                 "\"total\":3,\"labels\":{}},{\"time\":5,\"id\":"
                 "\"" R0 T5 "000102030405060708090a0b0c0d0e0f\","
                 "\"profile_id\":\"000102030405060708090a0b0c0d0e0f\",\"total\":7,"
                 "\"labels\":{\"a\":\"b\"}}],"
                 "\"truncated\":false,\"partial\":true}");
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
    /* limits */
    p.limit = "0";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_PROFILES, &p, &lim, T0 * 1000, &spec, &em),
                 ERR_INVALID_ARGUMENT);
    p.limit = "10001";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_PROFILES, &p, &lim, T0 * 1000, &spec, &em),
                 ERR_INVALID_ARGUMENT);
    p.limit = NULL;
    p.query = "{}";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_PROFILES, &p, &lim, T0 * 1000, &spec, &em),
                 ERR_INVALID_ARGUMENT);
}

/* Profiles of one series at the same nanosecond: a cut listing is the head
 * of the full one (the per-series scan and the answer share one order). */
static void test_profile_ties(storage_t *st)
{
    calltree_t *tree = random_profile();
    storage_series_write_t sw = {
        .labels = fx[0].labels, .token = fx[0].token, .series_id = fx[0].id, .tree = tree};
    storage_profile_write_t pw = {
        .tenant = "tie", .time_ns = (T0 + 100) * 1000000000LL + 7, .series = &sw, .nseries = 1};
    pw.symbols = syms;
    for (uint64_t pid = 1; pid <= 3; pid++) {
        memcpy(pw.profile_id, &pid, 8);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_write_profile(st, &pw, NULL, &em), 0);
    }
    calltree_free(tree);
    query_limits_t lim;
    query_limits_default(&lim);
    const char *type = labels_get(fx[0].labels, LABEL_PROFILE_TYPE);
    char q[128], f[32], u[32];
    snprintf(q, sizeof q, "%s{}", type);
    snprintf(f, sizeof f, "%lld", (long long)T0);
    snprintf(u, sizeof u, "%lld", (long long)T0 + 3600);
    query_result_t all, one;
    query_result_init(&all);
    query_result_init(&one);
    errmsg_t em = {{0}};
    query_params_t p = {.query = q, .from = f, .until = u};
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    CHECK_EQ_INT(query_profiles(st, "tie", &p, &lim, now_ms, &all, &em), 0);
    p.limit = "1";
    CHECK_EQ_INT(query_profiles(st, "tie", &p, &lim, now_ms, &one, &em), 0);
    const char *a = (const char *)all.body.data, *o = (const char *)one.body.data;
    const char *end = strstr(o, "}}]"); /* the end of the one entry's labels */
    CHECK(end != NULL && strncmp(a, o, (size_t)(end - o) + 2) == 0);
    CHECK(strstr(o, "\"truncated\":true") != NULL);
    query_result_free(&all);
    query_result_free(&one);
}

/* ---- single profiles ---- */

static void ref_of(const wrote_t *w, char *out)
{
    uint8_t raw[16] = {0};
    memcpy(raw, &w->pid, 8);
    int off = snprintf(out, 60, "%016llx%016llx%016llx", (unsigned long long)fx[w->s].token,
                       (unsigned long long)fx[w->s].id,
                       (unsigned long long)(w->t * 1000000000) ^ (1ULL << 63));
    for (int k = 0; k < 16; k++)
        off += snprintf(out + off, 3, "%02x", raw[k]);
}

/* query_profile's answer for id in format (its rc). */
static int open_one(storage_t *st, const char *id, const char *format, query_result_t *r,
                    errmsg_t *em)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {.id = id, .format = format};
    return query_profile(st, TENANT, &p, &lim, (T0 + 4 * 3600) * 1000, r, em);
}

/* One partial over ranges (n of them; 0 = every token) into g. */
static void gather_part(storage_t *st, query_gather_t *g, const query_spec_t *spec,
                        const query_range_t *ranges, size_t n)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_partial_args_t a;
    query_spec_args(spec, &a);
    a.ranges = ranges;
    a.nranges = n;
    query_partial_t part;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &part, &em), 0);
    CHECK_EQ_INT(query_gather_add(g, &part, &em), 0);
    query_partial_free(&part);
}

/* The profile through a ring cut at its token: one range holds it, the
 * other answers nothing, and the gather answers exactly the single answer. */
static void check_split(storage_t *st, const char *id, uint64_t token, const char *want)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {.id = id, .format = "folded"};
    query_spec_t spec;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_PROFILE, &p, &lim, 0, &spec, &em), 0);
    CHECK(spec.profile_token == token);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    query_range_t holds = {token - 1, token}, rest = {token, token - 1};
    gather_part(st, g, &spec, &rest, 1);
    gather_part(st, g, &spec, &holds, 1);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, NULL, &r, &em), 0);
    CHECK(r.body.len == strlen(want) && memcmp(r.body.data, want, r.body.len) == 0);
    query_result_free(&r);
    query_gather_free(g);
    /* the holder's range missing: unavailable, not "unknown" */
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    gather_part(st, g, &spec, &rest, 1);
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, "\"partial\":true", &r, &em), ERR_UNAVAILABLE);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* Each profile opens as exactly its own stacks, although most share their
 * 10 s and coarser windows with others of the same series. */
static void test_profile_open(storage_t *st)
{
    size_t n = nwrites < OPENED ? nwrites : OPENED;
    CHECK(n > 10);
    for (size_t i = 0; i < n; i++) {
        char id[96];
        ref_of(&writes[i], id);
        query_result_t r;
        query_result_init(&r);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(open_one(st, id, "folded", &r, &em), 0);
        const char *want = writes[i].folded;
        int same = r.body.len == strlen(want) && memcmp(r.body.data, want, r.body.len) == 0;
        if (!same)
            fprintf(stderr, "profile %zu: got %.*s\nwant %s\n", i, (int)r.body.len,
                    (const char *)r.body.data, want);
        CHECK(same);
        if (i % 8 == 0) check_split(st, id, fx[writes[i].s].token, want);
        query_result_free(&r);
    }
    /* json: the series' own type and spy; pprof: a gzip file */
    char id[96];
    ref_of(&writes[0], id);
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(open_one(st, id, NULL, &r, &em), 0);
    int mem = strcmp(labels_get(fx[writes[0].s].labels, LABEL_PROFILE_TYPE), MEM) == 0;
    CHECK(strstr((const char *)r.body.data,
                 mem ? "\"name\":\"alloc_space\"" : "\"name\":\"cpu\"") != NULL);
    CHECK(strstr((const char *)r.body.data, "\"timeline\":null") != NULL);
    CHECK_EQ_INT(open_one(st, id, "pprof", &r, &em), 0);
    CHECK(r.body.len > 2 && r.body.data[0] == 0x1f && r.body.data[1] == 0x8b);
    /* unknown (another profile id, another series) and malformed ids */
    char other[96];
    memcpy(other, id, sizeof other);
    other[79] = other[79] == '0' ? '1' : '0';
    CHECK_EQ_INT(open_one(st, other, NULL, &r, &em), ERR_NOT_FOUND);
    CHECK(strstr(em.text, "not stored") != NULL);
    memcpy(other, id, sizeof other);
    other[20] = other[20] == '0' ? '1' : '0';
    CHECK_EQ_INT(open_one(st, other, NULL, &r, &em), ERR_NOT_FOUND);
    const char *bad[] = {
        "",
        "12",
        "zz",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(open_one(st, bad[i], NULL, &r, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(open_one(st, id, "top", &r, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(open_one(st, id, "png", &r, &em), ERR_INVALID_ARGUMENT);
    query_result_free(&r);
    for (size_t i = 0; i < n; i++)
        free(writes[i].folded);
}

/* The service pin and the JSON partial members. */
static void test_spec_and_members(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    errmsg_t em = {{0}};
    query_params_t p = {.query = CPU "{env=\"prod\",service_name=\"api\"}", .from = "now-3h"};
    query_spec_t spec;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now_ms, &spec, &em), 0);
    CHECK_EQ_STR(query_spec_service(&spec), "api");
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, "\"partial\":true,\"missing\":[]", &r, &em), 0);
    const char *tail = ",\"partial\":true,\"missing\":[]}";
    CHECK(r.body.len > strlen(tail) &&
          memcmp(r.body.data + r.body.len - strlen(tail), tail, strlen(tail)) == 0);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
    query_params_t q = {.query = CPU "{service_name=~\"api\",service_name!=\"\"}"};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &q, &lim, now_ms, &spec, &em), 0);
    CHECK(query_spec_service(&spec) == NULL);
    query_spec_free(&spec);
    q.query = CPU "{service_name=\"\"}";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &q, &lim, now_ms, &spec, &em), 0);
    CHECK(query_spec_service(&spec) == NULL);
    query_spec_free(&spec);
    /* the same 400s as the single-node functions */
    q.query = "{}";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &q, &lim, now_ms, &spec, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "profile type") != NULL);
    query_params_t lv = {.label = NULL};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_LABEL_VALUES, &lv, &lim, now_ms, &spec, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "'label'") != NULL);
}

/* Arguments from another node are checked, never trusted. */
static void test_hostile(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_partial_t p;
    query_partial_args_t a = {.kind = QUERY_KIND_RENDER,
                              .selector = CPU "{}",
                              .from_s = T0,
                              .until_s = T0 + 3600,
                              .min_res = 0};
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), 0);
    query_partial_free(&p);
    a.min_res = STORAGE_RESOLUTION_COUNT;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.min_res = -1;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.min_res = 2; /* 600 s grid */
    a.from_s = T0 + 10;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.min_res = 0;
    a.from_s = T0 + 3600 * 2;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.from_s = T0;
    a.until_s = INT64_MAX - 7;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.until_s = T0 + 3600;
    a.selector = "{}";
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.selector = CPU "{service_name=";
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.selector = CPU "{}";
    a.kind = 77;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    a.kind = QUERY_KIND_LABEL_VALUES;
    a.label = NULL;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_INVALID_ARGUMENT);

    /* a gather refuses bytes and buckets that are not what it asked for */
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    query_params_t qp = {.query = CPU "{}", .from = "now-1h"};
    query_spec_t spec;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &qp, &lim, now_ms, &spec, &em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    const uint8_t junk[] = {1, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 1};
    CHECK_EQ_INT(query_gather_add_tree(g, junk, sizeof junk, &em), ERR_CORRUPT);
    CHECK_EQ_INT(query_gather_add_total(g, spec.plan.from_s + 3, 5, &em), ERR_CORRUPT);
    CHECK_EQ_INT(query_gather_add_total(g, spec.plan.until_s + 86400, 5, &em), ERR_CORRUPT);
    CHECK_EQ_INT(query_gather_add_total(g, spec.plan.from_s - 86400, 5, &em), ERR_CORRUPT);
    CHECK_EQ_INT(query_gather_add_total(g, spec.plan.from_s, 5, &em), 0);
    query_gather_free(g);
    /* max_series holds for the sum of the partials */
    query_limits_t small = lim;
    small.max_series = 10;
    CHECK_EQ_INT(query_gather_new(&spec, &small, &g), 0);
    CHECK_EQ_INT(query_gather_add_series(g, 6, "gospy", &em), 0);
    CHECK_EQ_INT(query_gather_add_series(g, 5, "gospy", &em), ERR_LIMIT);
    CHECK(strstr(em.text, "query-max-series") != NULL);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* rangeset lookups agree with query_range_contains, wrap and edges included. */
static void test_ranges(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    uint64_t probes[] = {0, 1, UINT64_MAX, UINT64_MAX - 1, 1ull << 63};
    query_range_t edge[] = {
        {UINT64_MAX, 5}, {10, 0}, {0, UINT64_MAX}, {UINT64_MAX - 1, UINT64_MAX}};
    for (size_t i = 0; i < 4; i++)
        for (size_t k = 0; k < 5; k++) {
            uint64_t t = probes[k];
            int want = edge[i].start < edge[i].end ? t > edge[i].start && t <= edge[i].end
                                                   : t > edge[i].start || t <= edge[i].end;
            CHECK_EQ_INT(query_range_contains(edge[i], t), want);
        }
    CHECK(query_range_contains((query_range_t){7, 7}, 12345));
    /* every series is in exactly one of the ranges of a cut ring */
    for (int round = 0; round < 200; round++) {
        query_range_t r[64];
        size_t n = random_ranges(r, 1 + check_rng() % 30);
        for (size_t s = 0; s < NSERIES; s++) {
            int hits = 0;
            for (size_t i = 0; i < n; i++)
                hits += query_range_contains(r[i], fx[s].token);
            CHECK_EQ_INT(hits, 1);
        }
    }
}

/* A label-shares share charges its working memory (a timeline per value,
 * and the entries it answers) while it runs, as a render's merge does: past
 * the budget it stops with ERR_UNAVAILABLE instead of holding memory the
 * budget never saw (values x buckets can reach query-max-series x 1,500). */
static void test_shares_charged(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_partial_args_t a = {.kind = QUERY_KIND_LABEL_SHARES,
                              .selector = CPU "{}",
                              .label = "pod",
                              .from_s = T0,
                              .until_s = T0 + 3 * 3600,
                              .min_res = 0};
    alloc_budget_t b;
    alloc_budget_init(&b, 64 * 1024); /* 42 values x 1,080 buckets need far more */
    alloc_charge_t c;
    alloc_charge_init(&c, &b);
    a.charge = &c;
    errmsg_t em = {{0}};
    query_partial_t p;
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_UNAVAILABLE);
    CHECK(strstr(em.text, "label shares") != NULL);
    CHECK(c.peak <= 64 * 1024);
    alloc_charge_done(&c);
    CHECK_EQ_INT((int)alloc_budget_used(&b), 0);
    /* with room: the same answer as uncharged, charged while it ran */
    alloc_budget_init(&b, 0); /* no limit, only counted */
    alloc_charge_init(&c, &b);
    CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), 0);
    CHECK(p.nvalues > 40);
    CHECK(c.peak >= p.nvalues * 1080 * sizeof(int64_t));
    query_partial_free(&p);
    alloc_charge_done(&c);
    CHECK_EQ_INT((int)alloc_budget_used(&b), 0);
}

/* A render's share stops (ERR_TIMEOUT) when its query is cancelled or its
 * deadline has passed, checked per series while it merges and while it sums
 * the timeline, instead of running to its end for an answer nobody waits
 * for; with neither, the same run answers whole. */
static void test_stopped_renders(storage_t *st)
{
    query_limits_t lim;
    query_limits_default(&lim);
    atomic_int flag = 0;
    query_stop_t cancelled = {&flag, 0}, past = {NULL, 1}, open = {&flag, 0};
    const query_stop_t *stops[] = {&cancelled, &past};
    for (int timeline = 0; timeline < 2; timeline++) {
        query_partial_args_t a = {.kind = QUERY_KIND_RENDER,
                                  .selector = CPU "{}",
                                  .from_s = T0,
                                  .until_s = T0 + 3 * 3600,
                                  .timeline = timeline};
        query_partial_t p;
        errmsg_t em = {{0}};
        for (int k = 0; k < 2; k++) {
            atomic_store(&flag, k == 0);
            a.stop = stops[k];
            memset(em.text, 0, sizeof em.text);
            CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), ERR_TIMEOUT);
            CHECK(em.text[0] != 0);
        }
        atomic_store(&flag, 0);
        a.stop = &open;
        CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &p, &em), 0);
        CHECK(p.nseries > 0 && p.tree != NULL && calltree_root_total(p.tree) > 0);
        query_partial_free(&p);
    }
}

/* ---- label shares of an averaged type: counted or summed entries ---- */

#define INUSE "memory:inuse_space:bytes:space:bytes"
#define GAUGE_TENANT "gauge"

/* One in-use profile of `total` bytes for pod at T0 + at s. */
static void write_gauge(storage_t *st, const char *pod, int64_t at, int64_t total, uint64_t pid)
{
    labels_t *l = labels_new();
    labels_set_str(l, LABEL_NAME, "memory");
    labels_set_str(l, LABEL_PROFILE_TYPE, INUSE);
    labels_set_str(l, LABEL_SERVICE_NAME, "api");
    labels_set_str(l, "pod", pod);
    uint64_t id = labels_hash(l);
    uint64_t token = ring_placement_token(GAUGE_TENANT, "api",
                                          ring_series_shard(id, RING_DEFAULT_SHARDS_PER_SERVICE));
    calltree_t *tree = calltree_new(0);
    calltree_add_stack(tree, &sym_ids[0], 1, total);
    storage_series_write_t sw = {.labels = l, .token = token, .series_id = id, .tree = tree};
    storage_profile_write_t pw = {.tenant = GAUGE_TENANT,
                                  .time_ns = (T0 + at) * 1000000000LL,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = syms};
    memcpy(pw.profile_id, &pid, 8);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(st, &pw, NULL, &em), 0);
    calltree_free(tree);
    labels_free(l);
}

/* The share's entries (counts: as QueryRequest.share_counts says) hold
 * exactly want[] (in any order). */
static void check_gauge_entries(storage_t *st, int counts, const char *const *want, size_t n)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_partial_args_t a = {.kind = QUERY_KIND_LABEL_SHARES,
                              .selector = INUSE "{}",
                              .label = "pod",
                              .from_s = T0,
                              .until_s = T0 + 30,
                              .min_res = 0,
                              .counts = counts};
    errmsg_t em = {{0}};
    query_partial_t p;
    CHECK_EQ_INT(query_partial_run(st, GAUGE_TENANT, &a, &lim, &p, &em), 0);
    CHECK_EQ_INT((int)p.nvalues, (int)n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t k = 0; k < p.nvalues; k++)
            found += strcmp(p.values[k], want[i]) == 0;
        if (!found) fprintf(stderr, "missing entry \"%s\"\n", want[i]);
        CHECK_EQ_INT(found, 1);
    }
    query_partial_free(&p);
}

/* A gather of label shares by pod of the in-use type over 3 buckets of
 * 10 s takes entries and answers want. */
static void check_gauge_gather(const char *const *entries, size_t n, const char *want_fmt)
{
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)T0);
    snprintf(until, sizeof until, "%lld", (long long)T0 + 30);
    query_params_t qp = {.query = INUSE "{}", .from = from, .until = until, .label = "pod"};
    query_spec_t spec;
    CHECK_EQ_INT(
        query_spec_parse(QUERY_KIND_LABEL_SHARES, &qp, &lim, (T0 + 3600) * 1000, &spec, &em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(query_gather_add_value(g, entries[i], strlen(entries[i])), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, NULL, &r, &em), 0);
    char want[1024];
    snprintf(want, sizeof want, want_fmt, (long long)T0, (long long)T0);
    CHECK_EQ_STR((const char *)r.body.data, want);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* A share sends an averaged type's counted entries only to a coordinator
 * that asks for them (QueryRequest.share_counts); to an older coordinator
 * the summed entries it reads, as shares sent them before counts. A
 * coordinator reads both: summed entries (an older share's) count as
 * uncounted values, which keep their sums. */
static void test_share_counts(storage_t *st)
{
    write_gauge(st, "a", 5, 100, 9001);
    write_gauge(st, "a", 15, 300, 9002);
    write_gauge(st, "a", 17, 500, 9003);
    write_gauge(st, "b", 25, 60, 9004);
    const char *counted[] = {"900/3 100/1,800/2,0/0 a", "60/1 0/0,0/0,60/1 b"};
    const char *summed[] = {"900 100,800,0 a", "60 0,0,60 b"};
    check_gauge_entries(st, 1, counted, 2);
    check_gauge_entries(st, 0, summed, 2);
    /* a new coordinator: every share counted; a: 900 / 3, buckets 100, 400 */
    check_gauge_gather(
        counted, 2,
        "{\"label\":\"pod\",\"aggregationType\":\"average\",\"total\":240,\"values\":["
        "{\"value\":\"a\",\"total\":300,\"share\":0.833333,\"timeline\":"
        "{\"startTime\":%lld,\"samples\":[100,400,0],\"durationDelta\":10}},"
        "{\"value\":\"b\",\"total\":60,\"share\":0.166667,\"timeline\":"
        "{\"startTime\":%lld,\"samples\":[0,0,60],\"durationDelta\":10}}]}");
    /* a counted share and an older one (b summed, uncounted: its sums) */
    const char *mixed[] = {counted[0], summed[1]};
    check_gauge_gather(
        mixed, 2,
        "{\"label\":\"pod\",\"aggregationType\":\"average\",\"total\":320,\"values\":["
        "{\"value\":\"a\",\"total\":300,\"share\":0.833333,\"timeline\":"
        "{\"startTime\":%lld,\"samples\":[100,400,0],\"durationDelta\":10}},"
        "{\"value\":\"b\",\"total\":60,\"share\":0.166667,\"timeline\":"
        "{\"startTime\":%lld,\"samples\":[0,0,60],\"durationDelta\":10}}]}");
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed * 2654435761u + 88172645463325252ull;
    char dir[] = "/tmp/flamedb-partial-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    storage_options_t so;
    storage_options_default(&so);
    so.path = dir;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        so.retention_seconds[i] = 0;
    so.profile_retention_seconds = 0; /* the fixture's profiles are from 2022 */
    storage_t *st;
    errmsg_t em = {{0}};
    if (storage_open(&so, &st, &em) != 0) {
        fprintf(stderr, "open: %s\n", em.text);
        return 1;
    }
    make_series();
    write_fixture(st);
    test_ranges(st);
    test_splits(st);
    test_group_timelines(st);
    test_share_entries();
    test_share_pushes();
    test_profile_lists(st);
    test_profile_ties(st);
    test_profile_open(st);
    test_spec_and_members(st);
    test_hostile(st);
    test_shares_charged(st);
    test_stopped_renders(st);
    test_share_counts(st);
    storage_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    for (int i = 0; i < NSERIES; i++)
        labels_free(fx[i].labels);
    symtab_free(syms);
    return check_exit();
}
