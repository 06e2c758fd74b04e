/* test_ingest_budget.c — one budget per push (ingest.h): memory held,
 * call-tree nodes and frames walked are counted over every series and span
 * tree of the push, while it is parsed, and a push over any is refused with
 * 413 naming the settings; the decode arena is capped in proportion to the
 * message. The
 * hostile shape of issue #9 (many sample types, a deep shared inlined
 * location, a fresh root and span_id per sample, hundreds of series) is
 * generated here and must be refused quickly. */
#include <time.h>

#include "common/alloc.h"
#include "test_ingest_util.h"

static int parse_folded(const char *body, const ingest_limits_t *lim, ingest_profile_t **p,
                        errmsg_t *em)
{
    ingest_request_t r = test_req("app.inuse_objects", "folded", body, strlen(body));
    return test_parse(&r, lim, p, em);
}

/* Nodes and work are what the trees cost: 4 nodes created (the root is
 * not counted; a tree's initial allocation is memory, charged as such),
 * 2 walks of 3+1. */
static void test_accounting(void)
{
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(parse_folded("a;b;c 1\na;b;d 2\n", NULL, &p, &em), 0);
    size_t nodes = 0, work = 0;
    if (p != NULL) ingest_profile_cost(p, &nodes, &work);
    CHECK_EQ_INT((int64_t)nodes, 4);
    CHECK_EQ_INT((int64_t)work, 8);
    ingest_profile_free(p);
}

/* The caps: min(max_request_*, max(floor, per_byte x payload)). */
static void test_caps_refuse_with_setting_named(void)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    ingest_profile_t *p;
    errmsg_t em;
    lim.max_request_nodes = 3; /* three of the four nodes */
    CHECK_EQ_INT(parse_folded("a;b;c 1\na;b;d 2\n", &lim, &p, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "ingest-max-request-nodes") != NULL);
    CHECK(p == NULL);
    lim.max_request_nodes = 4;
    CHECK_EQ_INT(parse_folded("a;b;c 1\na;b;d 2\n", &lim, &p, &em), 0);
    ingest_profile_free(p);
    lim.max_request_work = 7;
    CHECK_EQ_INT(parse_folded("a;b;c 1\na;b;d 2\n", &lim, &p, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "ingest-max-request-work") != NULL);
}

/* Span trees count in the same budget as the series trees. */
static void test_spans_share_the_budget(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t locs[2] = {pb_loc_fn(&b, "leaf"), pb_loc_fn(&b, "root")};
    pb_sample(&b, 2, locs, 1, (int64_t[]){1}, "span_id=0000000000000001", NULL);
    pb_sample(&b, 2, locs, 1, (int64_t[]){1}, "span_id=0000000000000002", NULL);
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    pb_free(&b);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    size_t nodes = 0, work = 0;
    if (p != NULL) ingest_profile_cost(p, &nodes, &work);
    CHECK_EQ_INT((int64_t)nodes, 2 + 2 * 2); /* series tree, two span trees */
    ingest_profile_free(p);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_request_nodes = 2 + 2 * 2 - 1;
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_TOO_LARGE);
    free(raw);
}

/* The hostile push: types sample types, a location of depth inlined lines
 * shared by every sample, a fresh root location (address only) and a fresh
 * span_id per sample, and `groups` distinct label values. *len: its size. */
static uint8_t *hostile(size_t samples, size_t types, size_t depth, size_t groups, size_t *len)
{
    pb_t b;
    pb_init(&b);
    char name[64];
    for (size_t t = 0; t < types; t++) {
        snprintf(name, sizeof name, "alloc_t%zu", t);
        pb_sample_type(&b, name, "count");
    }
    uint64_t *fns = malloc(depth * sizeof *fns);
    for (size_t i = 0; i < depth; i++) {
        snprintf(name, sizeof name, "inl%zu", i);
        fns[i] = pb_function(&b, name, "x.go");
    }
    uint64_t deep = pb_location(&b, 0, 0, depth, fns);
    free(fns);
    int64_t *vals = malloc(types * sizeof *vals);
    for (size_t t = 0; t < types; t++)
        vals[t] = 1;
    char span[64], grp[64];
    for (size_t i = 0; i < samples; i++) {
        uint64_t locs[2] = {deep, pb_location(&b, 0, 0x1000 + i, 0, NULL)};
        snprintf(span, sizeof span, "span_id=%016zx", i);
        snprintf(grp, sizeof grp, "g=%zu", i % groups);
        pb_sample(&b, 2, locs, types, vals, span, grp, NULL);
    }
    free(vals);
    uint8_t *raw = pb_pack(&b, len);
    pb_free(&b);
    return raw;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_hostile_push_refused_fast(void)
{
    size_t n;
    uint8_t *raw = hostile(4000, 8, 2000, 100, &n);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    ingest_profile_t *p;
    errmsg_t em;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = test_parse(&r, NULL, &p, &em);
    double ms = ms_since(&t0);
    fprintf(stderr, "hostile push of %zu bytes: %d in %.1f ms: %s\n", n, rc, ms, em.text);
    CHECK_EQ_INT(rc, ERR_TOO_LARGE);
    CHECK(strstr(em.text, "ingest-") != NULL);
    CHECK(ms < 1000.0);
    free(raw);
}

/* A message of empty repeated entries decodes to far more than it weighs:
 * the arena cap follows the message's size. */
static void test_decode_cap_per_byte(void)
{
    size_t n = 1u << 20;
    uint8_t *raw = malloc(n + 8);
    size_t o = 0;
    raw[o++] = 0x32; /* string_table[0] = "" */
    raw[o++] = 0x00;
    while (o + 2 <= n) { /* empty Sample messages: field 2, length 0 */
        raw[o++] = 0x12;
        raw[o++] = 0x00;
    }
    ingest_request_t r = test_req("svc", "pprof", raw, o);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "ingest-decoded-per-byte") != NULL);
    free(raw);
}

/* samples samples, each with span_id (distinct string values) when
 * as_span, else a numeric span_id (ignored) with the same strings in the
 * table: the same message but for what the span index gets. */
static uint8_t *span_ids(size_t samples, bool as_span, size_t *len)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t locs[2] = {pb_loc_fn(&b, "leaf"), pb_loc_fn(&b, "root")};
    char span[64];
    for (size_t i = 0; i < samples; i++) {
        snprintf(span, sizeof span, "span_id=%016zx", i + 1);
        if (!as_span) pb_str(&b, span + 8);
        pb_sample(&b, 2, locs, 1, (int64_t[]){1}, as_span ? span : "span_id#7", NULL);
    }
    uint8_t *raw = pb_pack(&b, len);
    pb_free(&b);
    return raw;
}

/* The span index is charged, dropped ids too: with one tree kept per
 * series, 20,000 distinct span ids still take an id map (12 bytes a slot at
 * least) that the push must count; so do the series' labels and trees. */
static void test_span_index_charged(void)
{
    enum { N = 20000 };
    size_t peak[2];
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_spans_per_series = 1;
    alloc_budget_t inflight; /* unlimited, counted */
    alloc_budget_init(&inflight, 0);
    lim.inflight = &inflight;
    for (int as_span = 0; as_span < 2; as_span++) {
        size_t n;
        uint8_t *raw = span_ids(N, as_span, &n);
        ingest_request_t r = test_req("svc", "pprof", raw, n);
        ingest_profile_t *p;
        errmsg_t em;
        CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
        peak[as_span] = p ? ingest_profile_peak_bytes(p) : 0;
        if (p && as_span) CHECK_EQ_INT(ingest_profile_spans_dropped(p), N - 1);
        ingest_profile_free(p);
        free(raw);
    }
    fprintf(stderr, "span index: peak %zu B with %d span ids, %zu B without\n", peak[1], N,
            peak[0]);
    CHECK(peak[1] >= peak[0] + (size_t)N * 12);
}

/* The memory cap: a push over ingest-request-memory-per-byte x payload
 * (at least the floor) is refused with 413 naming it. */
static void test_memory_cap(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    for (size_t i = 0; i < 90000; i++) { /* a fresh root (an address) per sample */
        uint64_t loc = pb_location(&b, 0, 0x1000 + 16 * i, 0, NULL);
        pb_sample(&b, 1, &loc, 1, (int64_t[]){1}, NULL);
    }
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    pb_free(&b);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    ingest_profile_t *p;
    errmsg_t em;
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    size_t peak = p ? ingest_profile_peak_bytes(p) : 0;
    ingest_profile_free(p);
    fprintf(stderr, "memory cap: %zu B payload, peak %zu B\n", n, peak);
    CHECK(peak > INGEST_REQUEST_MEMORY_FLOOR);
    lim.request_memory_per_byte = peak / n; /* just under what it needs */
    CHECK(lim.request_memory_per_byte * n < peak);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "ingest-request-memory-per-byte") != NULL);
    CHECK(p == NULL);
    /* A refused push says how much it held (the node then gives that back
     * to the system): most of its cap, never more. */
    size_t held = 0;
    CHECK_EQ_INT(ingest_parse_held(&r, &lim, &p, &held, &em), ERR_TOO_LARGE);
    CHECK(p == NULL);
    fprintf(stderr, "memory cap: refused after holding %zu B of %zu\n", held,
            lim.request_memory_per_byte * n);
    CHECK(held > lim.request_memory_per_byte * n / 2);
    CHECK(held <= lim.request_memory_per_byte * n);
    lim.request_memory_per_byte = peak / n + 1;
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    ingest_profile_free(p);
    free(raw);
}

int main(void)
{
    test_span_index_charged();
    test_memory_cap();
    test_accounting();
    test_caps_refuse_with_setting_named();
    test_spans_share_the_budget();
    test_hostile_push_refused_fast();
    test_decode_cap_per_byte();
    return check_exit();
}
