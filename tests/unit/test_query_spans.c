/* test_query_spans.c — span_id / trace_id selection against a real storage.
 *
 * Profiles of 8 series (2 types, 2 services, pods) are written with random
 * samples, each sample tagged with a span id from a small pool (16-hex ids
 * and one free-form string, hashed), a trace id, or neither; every span and
 * trace tree goes through storage_write_profile like ingest's. Each query's
 * expectation is summed independently from the samples kept in memory
 * (span in the set, series matching, 10 s window in range) and compared as
 * folded text with the render. Then: several ids sum, profile_id reads as
 * span_id, the other labels and the time range filter, token-range partials
 * gathered equal the whole, and the matchers that cannot be served are 400s.
 * Prints its seed; argv[1] replays.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "query/query.h"
#include "ring/ring.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define MEM "memory:alloc_space:bytes:space:bytes"
#define T0 (19000LL * 86400)
#define NSERIES 8
#define NSPANS 5
#define NTRACES 3
#define MAX_SAMPLES 6000
#define TENANT "anonymous"

static const char *span_ids[NSPANS] = {"00000000deadbeef", "0123456789abcdef", "00000000000000ff",
                                       "req-7", "FEDCBA9876543210"};
static const char *trace_ids[NTRACES] = {"4bf92f3577b34da6a3ce929d0e0e4736", "t-1", "t-2"};

typedef struct series_fx {
    labels_t *labels;
    uint64_t token, id;
    const char *type, *service, *pod;
} series_fx_t;

typedef struct sample {
    int series, span, trace; /* span/trace: index, or -1 */
    int64_t t_s, value;
    uint64_t stack[6];
    size_t depth;
} sample_t;

static series_fx_t fx[NSERIES];
static sample_t samples[MAX_SAMPLES];
static size_t nsamples;
static symtab_t *syms;
static uint64_t sym_ids[20];

static void make_series(void)
{
    static const char *pods[] = {"pod-0", "pod-1"};
    syms = symtab_new();
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof name, i < 3 ? "main.root%d" : "pkg.fn%d", i);
        symtab_intern(syms, name, strlen(name), "f.go", 4, &sym_ids[i]);
    }
    for (int i = 0; i < NSERIES; i++) {
        labels_t *l = labels_new();
        fx[i].type = i % 4 == 3 ? MEM : CPU;
        fx[i].service = i % 2 ? "db" : "api";
        fx[i].pod = pods[(i / 2) % 2];
        labels_set_str(l, LABEL_NAME, i % 4 == 3 ? "memory" : "process_cpu");
        labels_set_str(l, LABEL_PROFILE_TYPE, fx[i].type);
        labels_set_str(l, LABEL_SERVICE_NAME, fx[i].service);
        labels_set_str(l, "pod", fx[i].pod);
        if (i >= 4) labels_set_str(l, "env", "prod");
        fx[i].labels = l;
        fx[i].id = labels_hash(l);
        fx[i].token = ring_placement_token(
            TENANT, fx[i].service, ring_series_shard(fx[i].id, RING_DEFAULT_SHARDS_PER_SERVICE));
    }
}

/* One profile of series s at time t: random samples, their trees by span. */
static void write_profile(storage_t *st, int s, int64_t t, uint64_t pid)
{
    calltree_t *tree = calltree_new(0);
    calltree_t *sp[NSPANS + NTRACES] = {0};
    int n = 1 + (int)(check_rng() % 12);
    for (int i = 0; i < n && nsamples < MAX_SAMPLES; i++) {
        sample_t *x = &samples[nsamples++];
        *x = (sample_t){.series = s, .t_s = t, .value = 1 + (int64_t)(check_rng() % 1000)};
        x->span = check_rng() % 4 == 0 ? -1 : (int)(check_rng() % NSPANS);
        x->trace = check_rng() % 3 == 0 ? -1 : (int)(check_rng() % NTRACES);
        x->depth = 1 + check_rng() % 6;
        x->stack[0] = sym_ids[check_rng() % 3];
        for (size_t k = 1; k < x->depth; k++)
            x->stack[k] = sym_ids[3 + check_rng() % 17];
        calltree_add_stack(tree, x->stack, x->depth, x->value);
        int slots[2] = {x->span, x->trace < 0 ? -1 : NSPANS + x->trace};
        for (int k = 0; k < 2; k++) {
            if (slots[k] < 0) continue;
            if (sp[slots[k]] == NULL) sp[slots[k]] = calltree_new(0);
            calltree_add_stack(sp[slots[k]], x->stack, x->depth, x->value);
        }
    }
    storage_span_tree_t spans[NSPANS + NTRACES];
    size_t ns = 0;
    for (int k = 0; k < NSPANS + NTRACES; k++) {
        if (sp[k] == NULL) continue;
        const char *v = k < NSPANS ? span_ids[k] : trace_ids[k - NSPANS];
        spans[ns++] = (storage_span_tree_t){.kind = k < NSPANS ? STORAGE_SPAN_KIND_SPAN
                                                               : STORAGE_SPAN_KIND_TRACE,
                                            .id = storage_span_id(v, strlen(v)),
                                            .tree = sp[k]};
    }
    storage_series_write_t sw = {.labels = fx[s].labels,
                                 .token = fx[s].token,
                                 .series_id = fx[s].id,
                                 .tree = tree,
                                 .spans = spans,
                                 .nspans = ns};
    storage_profile_write_t pw = {.tenant = TENANT,
                                  .time_ns = t * 1000000000LL,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = syms};
    memcpy(pw.profile_id, &pid, 8);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(st, &pw, NULL, &em), 0);
    calltree_free(tree);
    for (int k = 0; k < NSPANS + NTRACES; k++)
        calltree_free(sp[k]);
}

static void write_fixture(storage_t *st)
{
    uint64_t pid = 1;
    for (int64_t t = T0 + 3; t < T0 + 3 * 3600 && nsamples < MAX_SAMPLES - 12;
         t += 5 + (int64_t)(check_rng() % 30))
        write_profile(st, (int)(check_rng() % NSERIES), t, pid++);
    fprintf(stderr, "wrote %zu samples\n", nsamples);
}

/* What a query selects, decided from the samples alone. */
typedef struct want {
    const char *type, *service, *pod; /* NULL: any */
    int kind;                         /* STORAGE_SPAN_KIND_* */
    unsigned set;                     /* bit i: span_ids[i] / trace_ids[i] */
    int64_t from_s, until_s;
} want_t;

static calltree_t *expected(const want_t *w)
{
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < nsamples; i++) {
        const sample_t *x = &samples[i];
        const series_fx_t *f = &fx[x->series];
        int idx = w->kind == STORAGE_SPAN_KIND_SPAN ? x->span : x->trace;
        int64_t win = x->t_s / 10 * 10;
        if (idx < 0 || !(w->set & (1u << idx)) || strcmp(f->type, w->type) != 0 ||
            (w->service && strcmp(f->service, w->service) != 0) ||
            (w->pod && strcmp(f->pod, w->pod) != 0) || win < w->from_s || win >= w->until_s)
            continue;
        calltree_add_stack(t, x->stack, x->depth, x->value);
    }
    return t;
}

static query_limits_t limits(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        lim.retention_seconds[i] = 0;
    return lim;
}

static char *num(int64_t v)
{
    static char b[4][24];
    static int k;
    k = (k + 1) % 4;
    snprintf(b[k], sizeof b[k], "%lld", (long long)v);
    return b[k];
}

/* Renders query as folded and compares with the expectation's folded text. */
static void check_query(storage_t *st, const char *query, const want_t *w)
{
    query_limits_t lim = limits();
    query_params_t p = {
        .query = query, .from = num(w->from_s), .until = num(w->until_s), .format = "folded"};
    query_result_t got;
    query_result_init(&got);
    errmsg_t em = {{0}};
    int rc = query_render(st, TENANT, &p, &lim, (T0 + 4 * 3600) * 1000, &got, &em);
    if (rc != 0) fprintf(stderr, "%s: %s\n", query, em.text);
    CHECK_EQ_INT(rc, 0);
    calltree_t *t = expected(w);
    buf_t want;
    buf_init(&want, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_folded(t, syms, &want), 0);
    CHECK(calltree_root_total(t) > 0 || w->set == 0 || strstr(query, "nothing") != NULL);
    CHECK_EQ_INT(got.body.len, want.len);
    if (got.body.len != want.len ||
        (want.len > 0 && memcmp(got.body.data, want.data, want.len) != 0)) {
        fprintf(stderr, "query %s differs\n", query);
        CHECK(0);
    }
    buf_free(&want);
    calltree_free(t);
    query_result_free(&got);
}

static void test_selections(storage_t *st)
{
    int64_t all0 = T0, all1 = T0 + 4 * 3600;
    want_t w = {CPU, "api", NULL, STORAGE_SPAN_KIND_SPAN, 1u << 0, all0, all1};
    check_query(st, CPU "{service_name=\"api\",span_id=\"00000000deadbeef\"}", &w);
    w.set = 1u << 3; /* a free-form id is hashed on both sides */
    check_query(st, CPU "{service_name=\"api\",span_id=\"req-7\"}", &w);
    w.set = 1u << 4; /* upper-case hex parses as the same id */
    check_query(st, CPU "{service_name=\"api\",span_id=\"fedcba9876543210\"}", &w);
    w.set = 1u << 0 | 1u << 2 | 1u << 3; /* several ids sum */
    check_query(
        st, CPU "{service_name=\"api\",span_id=~\"00000000deadbeef|00000000000000ff|req-7\"}", &w);
    w.service = NULL;
    w.set = 1u << 1;
    check_query(st, CPU "{profile_id=\"0123456789abcdef\"}", &w);
    w.pod = "pod-1"; /* other labels filter */
    check_query(st, CPU "{pod=\"pod-1\",span_id=\"0123456789abcdef\"}", &w);
    /* a regex matcher after the span matcher moves down in the selector */
    check_query(st, CPU "{span_id=\"0123456789abcdef\",pod=~\"pod-1|pod-9\"}", &w);
    w.pod = NULL;
    w.type = MEM; /* and the profile type */
    w.set = 0x1f;
    check_query(st,
                MEM "{span_id=~\"00000000deadbeef|0123456789abcdef|00000000000000ff|req-7|"
                    "FEDCBA9876543210\"}",
                &w);
    w.type = CPU;
    w.kind = STORAGE_SPAN_KIND_TRACE;
    w.set = 1u << 0;
    check_query(st, CPU "{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}", &w);
    w.set = 1u << 1 | 1u << 2;
    w.service = "db";
    check_query(st, CPU "{service_name=\"db\",trace_id=~\"t-1|t-2\"}", &w);
    w.from_s = T0 + 3600; /* the time range applies (10 s windows) */
    w.until_s = T0 + 2 * 3600 + 70;
    check_query(st, CPU "{service_name=\"db\",trace_id=~\"t-1|t-2\"}", &w);
    w.set = 0;
    check_query(st, CPU "{trace_id=\"nothing\"}", &w);
}

/* Token-range partials of a span query, gathered, equal the whole answer. */
static void test_partials(storage_t *st)
{
    query_limits_t lim = limits();
    query_params_t p = {.query = CPU "{span_id=~\"00000000deadbeef|req-7\",env!=\"x\"}",
                        .from = num(T0),
                        .until = num(T0 + 4 * 3600),
                        .format = "json"};
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    query_result_t whole;
    query_result_init(&whole);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_render(st, TENANT, &p, &lim, now_ms, &whole, &em), 0);
    for (int round = 0; round < 8; round++) {
        query_spec_t spec;
        CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now_ms, &spec, &em), 0);
        query_gather_t *g;
        CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
        uint64_t cut[3];
        for (int i = 0; i < 3; i++)
            cut[i] = i == 0 || check_rng() % 2 ? fx[check_rng() % NSERIES].token : check_rng();
        for (int i = 1; i < 3; i++) /* sort the three cuts */
            for (int k = i; k > 0 && cut[k - 1] > cut[k]; k--) {
                uint64_t c = cut[k];
                cut[k] = cut[k - 1];
                cut[k - 1] = c;
            }
        query_range_t r[3] = {{cut[2], cut[0]}, {cut[0], cut[1]}, {cut[1], cut[2]}};
        int64_t sum = 0;
        for (int i = 0; i < 3; i++) {
            if (r[i].start == r[i].end && i > 0) continue; /* duplicate cut: empty range */
            query_partial_args_t a;
            query_spec_args(&spec, &a);
            a.ranges = &r[i];
            a.nranges = 1;
            if (r[0].start == r[0].end) a.nranges = 0; /* all cuts equal: one whole ring */
            query_partial_t part;
            CHECK_EQ_INT(query_partial_run(st, TENANT, &a, &lim, &part, &em), 0);
            sum += calltree_root_total(part.tree);
            CHECK_EQ_INT(query_gather_add(g, &part, &em), 0);
            query_partial_free(&part);
            if (a.nranges == 0) break;
        }
        query_result_t got;
        query_result_init(&got);
        CHECK_EQ_INT(query_gather_finish(g, NULL, &got, &em), 0);
        CHECK(got.body.len == whole.body.len &&
              memcmp(got.body.data, whole.body.data, got.body.len) == 0);
        char needle[64];
        snprintf(needle, sizeof needle, "\"numTicks\":%lld", (long long)sum);
        CHECK(sum > 0 && strstr((const char *)got.body.data, needle) != NULL);
        query_result_free(&got);
        query_gather_free(g);
        query_spec_free(&spec);
    }
    query_result_free(&whole);
}

/* A span selection's partial stops when its query is cancelled or past its
 * deadline (up to 256 ids, each a scan of every series and window that
 * sampled it), and the tree it sums counts in query-memory-bytes while it
 * grows. */
static int span_partial(storage_t *st, const query_stop_t *stop, alloc_charge_t *charge,
                        errmsg_t *em)
{
    query_limits_t lim = limits();
    query_params_t p = {.query = CPU "{span_id=~\"00000000deadbeef|req-7|0123456789abcdef\"}",
                        .from = num(T0),
                        .until = num(T0 + 4 * 3600),
                        .format = "folded"};
    int64_t now_ms = (T0 + 4 * 3600) * 1000;
    query_spec_t spec;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now_ms, &spec, em), 0);
    query_partial_args_t a;
    query_spec_args(&spec, &a);
    a.stop = stop;
    a.charge = charge;
    query_partial_t part;
    int rc = query_partial_run(st, TENANT, &a, &lim, &part, em);
    if (rc == 0) CHECK(calltree_root_total(part.tree) > 0);
    if (rc == 0) query_partial_free(&part);
    query_spec_free(&spec);
    return rc;
}

static void test_span_stop_and_charge(storage_t *st)
{
    errmsg_t em = {{0}};
    atomic_int cancelled = 1;
    query_stop_t stop = {&cancelled, 0};
    CHECK_EQ_INT(span_partial(st, &stop, NULL, &em), ERR_TIMEOUT);
    CHECK(strstr(em.text, "cancelled") != NULL);
    query_stop_t past = {NULL, 1}; /* a deadline long gone */
    CHECK_EQ_INT(span_partial(st, &past, NULL, &em), ERR_TIMEOUT);
    alloc_budget_t b;
    alloc_budget_init(&b, 0); /* counted only */
    alloc_charge_t c;
    alloc_charge_init(&c, &b);
    CHECK_EQ_INT(span_partial(st, NULL, &c, &em), 0);
    CHECK(c.peak > 0);       /* the summed tree was charged as it grew */
    CHECK_EQ_INT(c.used, 0); /* and given back: the caller counts the partial */
    size_t peak = c.peak;
    alloc_charge_done(&c);
    alloc_budget_init(&b, peak / 2);
    alloc_charge_init(&c, &b);
    int rc = span_partial(st, NULL, &c, &em);
    CHECK(rc == ERR_UNAVAILABLE || rc == ERR_TOO_LARGE);
    CHECK(strstr(em.text, "query-memory-bytes") != NULL);
    alloc_charge_done(&c);
}

static void expect_400(storage_t *st, const char *query, const char *needle)
{
    query_limits_t lim = limits();
    query_params_t p = {.query = query};
    query_result_t out;
    query_result_init(&out);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_render(st, TENANT, &p, &lim, T0 * 1000, &out, &em), ERR_INVALID_ARGUMENT);
    if (strstr(em.text, needle) == NULL) {
        fprintf(stderr, "%s: reason '%s' lacks '%s'\n", query, em.text, needle);
        CHECK(0);
    }
    query_result_free(&out);
}

static void test_refused(storage_t *st)
{
    expect_400(st, CPU "{span_id!=\"00000000deadbeef\"}", "only = and =~");
    expect_400(st, CPU "{trace_id!~\"a|b\"}", "only = and =~");
    expect_400(st, CPU "{span_id=~\"0000.*\"}", "literal ids");
    expect_400(st, CPU "{span_id=~\"a||b\"}", "literal ids");
    expect_400(st, CPU "{span_id=\"\"}", "needs an id");
    expect_400(st, CPU "{span_id=\"a\",trace_id=\"b\"}", "one span_id or trace_id");
    char big[QUERY_SPAN_IDS_MAX * 4 + 64];
    size_t n = (size_t)snprintf(big, sizeof big, "%s{span_id=~\"", CPU);
    for (int i = 0; i <= QUERY_SPAN_IDS_MAX; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s%x", i ? "|" : "", i);
    snprintf(big + n, sizeof big - n, "\"}");
    expect_400(st, big, "more than");
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed * 2654435761u + 88172645463325252ull;
    char dir[] = "/tmp/flamedb-spans-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    storage_options_t so;
    storage_options_default(&so);
    so.path = dir;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        so.retention_seconds[i] = 0;
    so.span_retention_seconds = 0; /* the fixture lives in 2022 */
    storage_t *st;
    errmsg_t em = {{0}};
    if (storage_open(&so, &st, &em) != 0) {
        fprintf(stderr, "open: %s\n", em.text);
        return 1;
    }
    make_series();
    write_fixture(st);
    test_selections(st);
    test_partials(st);
    test_span_stop_and_charge(st);
    test_refused(st);
    storage_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    for (int i = 0; i < NSERIES; i++)
        labels_free(fx[i].labels);
    symtab_free(syms);
    return check_exit();
}
