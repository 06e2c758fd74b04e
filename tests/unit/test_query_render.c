/* test_query_render.c — end to end against a real storage instance in a temp
 * directory: profiles written with storage_write_profile over two days, then
 * query_render / label-names / label-values must return exactly what was
 * written for selectors with =, !=, =~, !~ and time ranges cutting across
 * windows and resolutions. Expected answers are computed from the written
 * records by the documented window rule (a profile counts when the start of
 * its 10 s window lies in [from, until)), not by the plan code. Prints its
 * seed; argv[1] replays. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/hash.h"
#include "query/query.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define MEM "memory:alloc_space:bytes:space:bytes"
#define DAY 86400LL
#define T0 (19000 * DAY) /* a day boundary */

typedef struct series_fx {
    const char *type, *service, *env, *region, *version;
    labels_t *labels;
    uint64_t token, id;
} series_fx_t;

static series_fx_t fx[] = {
    {CPU, "A", "prod", "eu-west-1", "v1.0"}, {CPU, "A", "dev", "eu-west-1", "v1.1"},
    {CPU, "A", "prod", "us-east-1", "v2.0"}, {CPU, "B", "prod", "eu-central-1", "v1.0"},
    {CPU, "B", "dev", "us-east-1", "v2.1"},  {MEM, "A", "prod", "eu-west-1", "v1.0"},
};
#define NFX (sizeof fx / sizeof *fx)

typedef struct record {
    size_t series;
    int64_t t_s;
    calltree_t *tree;
} record_t;

static record_t *recs;
static size_t nrecs;
static symtab_t *syms;
static uint64_t sym_ids[24];

static void setup_fixture(void)
{
    syms = symtab_new();
    for (int i = 0; i < 24; i++) {
        char name[32], file[32];
        snprintf(name, sizeof name, i < 3 ? "main.root%d" : "pkg.fn%d", i);
        snprintf(file, sizeof file, "src/f%d.go", i % 5);
        symtab_intern(syms, name, strlen(name), file, strlen(file), &sym_ids[i]);
    }
    for (size_t i = 0; i < NFX; i++) {
        labels_t *l = labels_new();
        labels_set_str(l, LABEL_NAME, fx[i].type[0] == 'p' ? "process_cpu" : "memory");
        labels_set_str(l, LABEL_PROFILE_TYPE, fx[i].type);
        labels_set_str(l, LABEL_SERVICE_NAME, fx[i].service);
        labels_set_str(l, "env", fx[i].env);
        labels_set_str(l, "region", fx[i].region);
        labels_set_str(l, "version", fx[i].version);
        fx[i].labels = l;
        fx[i].token = hash_bytes64(fx[i].service, 1);
        fx[i].id = labels_hash(l);
    }
}

static calltree_t *random_profile(void)
{
    calltree_t *t = calltree_new(0);
    int n = 1 + (int)(check_rng() % 6);
    for (int i = 0; i < n; i++) {
        uint64_t st[8];
        size_t d = 1 + check_rng() % 8;
        st[0] = sym_ids[check_rng() % 3];
        for (size_t k = 1; k < d; k++)
            st[k] = sym_ids[3 + check_rng() % 21];
        calltree_add_stack(t, st, d, 1 + (int64_t)(check_rng() % 10000000));
    }
    return t;
}

static int write_one(storage_t *st, size_t series, int64_t t_s, calltree_t *tree, uint64_t pid)
{
    storage_series_write_t sw = {.labels = fx[series].labels,
                                 .token = fx[series].token,
                                 .series_id = fx[series].id,
                                 .tree = tree};
    storage_profile_write_t pw = {.tenant = "anonymous",
                                  .time_ns = t_s * 1000000000LL,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = syms};
    memcpy(pw.profile_id, &pid, 8);
    memcpy(pw.profile_id + 8, &series, sizeof series < 8 ? sizeof series : 8);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(st, &pw, NULL, &em);
    if (rc != 0) fprintf(stderr, "write: %s\n", em.text);
    return rc;
}

static void write_fixture(storage_t *st)
{
    size_t cap = 4096;
    recs = malloc(cap * sizeof *recs);
    /* profiles every 11..90 s over two days plus a bit, each to a random series */
    for (int64_t t = T0 - 3 * 3600 + 7; t < T0 + 2 * DAY + 5000;
         t += 11 + (int64_t)(check_rng() % 80)) {
        if (nrecs == cap) recs = realloc(recs, (cap *= 2) * sizeof *recs);
        record_t *r = &recs[nrecs];
        r->series = check_rng() % NFX;
        r->t_s = t;
        r->tree = random_profile();
        CHECK_EQ_INT(write_one(st, r->series, t, r->tree, nrecs + 1), 0);
        nrecs++;
    }
    /* a retried push (same profile id) must count once */
    CHECK_EQ_INT(write_one(st, recs[5].series, recs[5].t_s, recs[5].tree, 6), 0);
    fprintf(stderr, "wrote %zu profiles\n", nrecs);
}

typedef int (*pred_fn)(const series_fx_t *s);

static int64_t floor10(int64_t t)
{
    return (t >= 0 ? t / 10 : (t - 9) / 10) * 10;
}

/* Expected tree by the window rule, and the sum. */
static calltree_t *expected(pred_fn pred, int64_t from_s, int64_t until_s)
{
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < nrecs; i++) {
        int64_t w = floor10(recs[i].t_s);
        if (pred(&fx[recs[i].series]) && w >= from_s && w < until_s)
            calltree_merge(t, recs[i].tree);
    }
    return t;
}

static int p_cpu_a(const series_fx_t *s)
{
    return s->type[0] == 'p' && !strcmp(s->service, "A");
}
static int p_cpu_a_notprod(const series_fx_t *s)
{
    return p_cpu_a(s) && strcmp(s->env, "prod");
}
static int p_cpu_ab_eu(const series_fx_t *s)
{
    return s->type[0] == 'p' && !strncmp(s->region, "eu", 2);
}
static int p_cpu_b_notv1(const series_fx_t *s)
{
    return s->type[0] == 'p' && !strcmp(s->service, "B") && strncmp(s->version, "v1", 2);
}
static int p_cpu_all(const series_fx_t *s)
{
    return s->type[0] == 'p';
}
static int p_cpu_prod(const series_fx_t *s)
{
    return s->type[0] == 'p' && !strcmp(s->env, "prod");
}
static int p_mem(const series_fx_t *s)
{
    return s->type[0] == 'm';
}
static int p_none(const series_fx_t *s)
{
    return 0;
}

static const struct qcase {
    const char *query;
    pred_fn pred;
} cases[] = {
    {CPU "{service_name=\"A\"}", p_cpu_a},
    {CPU "{service_name=\"A\", env!=\"prod\"}", p_cpu_a_notprod},
    {CPU "{service_name=~\"A|B\", region=~\"eu-.*\"}", p_cpu_ab_eu},
    {CPU "{service_name=\"B\", version!~\"v1.*\"}", p_cpu_b_notv1},
    {CPU "{}", p_cpu_all},
    {CPU, p_cpu_all},
    {CPU "{env=\"prod\"}", p_cpu_prod},
    {MEM "{service_name=\"A\"}", p_mem},
    {CPU "{service_name=\"zzz\"}", p_none},
    {CPU "{service_name=\"A\", env=\"prod\", region=\"nowhere\"}", p_none},
};

static char *folded(const calltree_t *t)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    query_encode_folded(t, syms, &b);
    buf_append(&b, "", 0);
    return (char *)b.data;
}

static int64_t json_int(const char *json, const char *key)
{
    const char *p = strstr(json, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static int64_t timeline_sum(const char *json)
{
    const char *p = strstr(json, "\"samples\":[");
    int64_t sum = 0;
    if (p == NULL) return -1;
    p += 11;
    while (*p && *p != ']') {
        char *end;
        sum += strtoll(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    return sum;
}

static void run_case(storage_t *st, const query_limits_t *lim, const struct qcase *c,
                     int64_t from_s, int64_t until_s)
{
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)from_s);
    snprintf(until, sizeof until, "%lld", (long long)until_s);
    calltree_t *want = expected(c->pred, from_s, until_s);
    char *want_folded = folded(want);
    query_params_t p = {.query = c->query, .from = from, .until = until, .format = "folded"};
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    int rc = query_render(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0 && strcmp((char *)(r.body.data ? r.body.data : (uint8_t *)""), want_folded) != 0) {
        fprintf(stderr, "folded mismatch: %s [%s, %s)\n", c->query, from, until);
        CHECK(0);
    }
    /* JSON: numTicks exact, timeline adds up to it, maxNodes keeps totals */
    p.format = NULL;
    p.max_nodes = (check_rng() % 2) ? "8" : NULL;
    rc = query_render(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        const char *j = (const char *)r.body.data;
        CHECK_EQ_INT(json_int(j, "\"numTicks\":"), calltree_root_total(want));
        CHECK_EQ_INT(timeline_sum(j), calltree_root_total(want));
        CHECK(strcmp(r.content_type, "application/json") == 0);
    }
    query_result_free(&r);
    free(want_folded);
    calltree_free(want);
}

static void test_queries(storage_t *st, const query_limits_t *lim)
{
    int64_t ranges[][2] = {
        {T0 - 4 * 3600, T0 + 3 * DAY},            /* everything */
        {T0, T0 + DAY},                           /* one aligned day */
        {T0 + 13, T0 + DAY + 3 * 3600 + 7},       /* cuts at 10 s, crosses a day */
        {T0 + 3599, T0 + 3601},                   /* across an hour boundary */
        {T0 - 3 * 3600 + 5, T0 + 2 * DAY + 4999}, /* fine edges both sides */
        {T0 + DAY - 601, T0 + DAY + 601},         /* 10 s/1 min/10 min edges */
        {T0 + 5, T0 + 9},                         /* no window start inside */
    };
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
            run_case(st, lim, &cases[c], ranges[r][0], ranges[r][1]);
    for (int i = 0; i < 12; i++) {
        int64_t a = T0 - 3 * 3600 + (int64_t)(check_rng() % (2 * DAY + 4 * 3600));
        int64_t b = a + 1 + (int64_t)(check_rng() % (i % 2 ? 7200 : DAY));
        run_case(st, lim, &cases[check_rng() % (sizeof cases / sizeof *cases)], a, b);
    }
}

static void test_pprof_total(storage_t *st, const query_limits_t *lim)
{
    query_params_t p = {.query = CPU "{service_name=\"A\"}",
                        .from = "1641600000",
                        .until = "1641800000",
                        .format = "pprof"};
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)T0);
    snprintf(until, sizeof until, "%lld", (long long)(T0 + DAY));
    p.from = from;
    p.until = until;
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_render(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em), 0);
    CHECK(r.body.len > 18 && r.body.data[0] == 0x1f && r.body.data[1] == 0x8b);
    query_result_free(&r);
}

static char *labels_call(storage_t *st, const query_limits_t *lim, const char *label,
                         const char *match, const char *from, const char *until)
{
    query_params_t p = {.label = label, .match = match, .from = from, .until = until};
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    int rc = label ? query_label_values(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em)
                   : query_label_names(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em);
    if (rc != 0) fprintf(stderr, "labels: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    char *s = strdup(r.body.data ? (char *)r.body.data : "");
    query_result_free(&r);
    return s;
}

static void test_labels(storage_t *st, const query_limits_t *lim)
{
    char *s = labels_call(st, lim, NULL, NULL, NULL, NULL);
    CHECK_EQ_STR(
        s, "[\"__name__\",\"__profile_type__\",\"env\",\"region\",\"service_name\",\"version\"]");
    free(s);
    s = labels_call(st, lim, "service_name", NULL, NULL, NULL);
    CHECK_EQ_STR(s, "[\"A\",\"B\"]");
    free(s);
    s = labels_call(st, lim, LABEL_PROFILE_TYPE, NULL, NULL, NULL);
    CHECK_EQ_STR(s, "[\"" MEM "\",\"" CPU "\"]");
    free(s);
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)(T0 - 4 * 3600));
    snprintf(until, sizeof until, "%lld", (long long)(T0 + 3 * DAY));
    s = labels_call(st, lim, "region", "{service_name=\"B\"}", from, until);
    CHECK_EQ_STR(s, "[\"eu-central-1\",\"us-east-1\"]");
    free(s);
    s = labels_call(st, lim, "version", CPU "{service_name=\"A\", env=\"prod\"}", from, until);
    CHECK_EQ_STR(s, "[\"v1.0\",\"v2.0\"]");
    free(s);
    s = labels_call(st, lim, NULL, "{service_name=\"B\"}", from, until);
    CHECK_EQ_STR(
        s, "[\"__name__\",\"__profile_type__\",\"env\",\"region\",\"service_name\",\"version\"]");
    free(s);
    /* a range with no data: nothing matches */
    s = labels_call(st, lim, "region", "{service_name=\"B\"}", "1000", "2000");
    CHECK_EQ_STR(s, "[]");
    free(s);
}

static void expect_err(storage_t *st, const query_limits_t *lim, query_params_t p, int want,
                       const char *reason)
{
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    int rc = query_render(st, "anonymous", &p, lim, (T0 + 3 * DAY) * 1000, &r, &em);
    CHECK_EQ_INT(rc, want);
    if (strstr(em.text, reason) == NULL) {
        fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", em.text, reason);
        CHECK(0);
    }
    query_result_free(&r);
}

static void test_errors(storage_t *st, const query_limits_t *lim0)
{
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)T0);
    snprintf(until, sizeof until, "%lld", (long long)(T0 + DAY));
    query_params_t ok = {.query = CPU "{}", .from = from, .until = until};
    query_params_t p = ok;
    p.query = NULL;
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    p.query = "{service_name=\"A\"}";
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'query': a profile type is required");
    p.query = CPU "{service_name=\"A\"";
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'query': position");
    p = ok;
    p.format = "svgx";
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'format'");
    p = ok;
    p.max_nodes = "1";
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'maxNodes'");
    p.max_nodes = "-5";
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'maxNodes'");
    p = ok;
    p.from = until;
    p.until = from;
    expect_err(st, lim0, p, ERR_INVALID_ARGUMENT, "parameter 'from'");
    query_limits_t lim = *lim0;
    lim.max_series = 2;
    expect_err(st, &lim, ok, ERR_LIMIT, "query-max-series");
    lim = *lim0;
    lim.max_tree_nodes = 5;
    expect_err(st, &lim, ok, ERR_LIMIT, "query-max-tree-nodes");
    lim = *lim0;
    lim.max_output_bytes = 100;
    expect_err(st, &lim, ok, ERR_LIMIT, "byte limit");
    /* label-values needs label */
    query_params_t lp = {0};
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_label_values(st, "anonymous", &lp, lim0, 0, &r, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "parameter 'label'") != NULL);
    lp.label = "env";
    lp.match = "{env=";
    CHECK_EQ_INT(query_label_values(st, "anonymous", &lp, lim0, 0, &r, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "parameter 'match'") != NULL);
    query_result_free(&r);
    /* tenants are sealed */
    query_result_init(&r);
    CHECK_EQ_INT(query_render(st, "other-tenant", &ok, lim0, (T0 + 3 * DAY) * 1000, &r, &em), 0);
    CHECK_EQ_INT(json_int((char *)r.body.data, "\"numTicks\":"), 0);
    query_result_free(&r);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_render seed %llu\n", (unsigned long long)seed);
    char dir[] = "/tmp/flamedb-test-query-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    storage_options_t so;
    storage_options_default(&so);
    so.path = dir;
    so.block_cache_bytes = 16 << 20;
    so.write_buffer_bytes = 16 << 20;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        so.retention_seconds[i] = 0; /* fixture times are in the past */
    storage_t *st = NULL;
    errmsg_t em = {{0}};
    int rc = storage_open(&so, &st, &em);
    if (rc != 0) {
        fprintf(stderr, "storage_open: %s\n", em.text);
        CHECK(0);
        return check_exit();
    }
    query_limits_t lim;
    query_limits_default(&lim);
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        lim.retention_seconds[i] = 0;
    setup_fixture();
    write_fixture(st);
    test_queries(st, &lim);
    test_pprof_total(st, &lim);
    test_labels(st, &lim);
    test_errors(st, &lim);
    storage_close(st);
    for (size_t i = 0; i < nrecs; i++)
        calltree_free(recs[i].tree);
    free(recs);
    for (size_t i = 0; i < NFX; i++)
        labels_free(fx[i].labels);
    symtab_free(syms);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
