/* test_ingest_pprof.c — pprof bodies built in the test with protobuf-c:
 * inlining, address-only locations, label splitting, span ids, negative
 * values, several sample types, raw/gzip/multipart, and hostile input. */
#include "test_ingest_util.h"

#define CPU_NS "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define CPU_SAMPLES "process_cpu:samples:count:cpu:nanoseconds"

static ingest_profile_t *parse_bytes(const uint8_t *b, size_t n, const char *ct, int *rc,
                                     errmsg_t *em)
{
    ingest_request_t r = test_req("svc{env=prod}", ct ? NULL : "pprof", b, n);
    r.content_type = ct;
    r.from = "1795564000";
    ingest_profile_t *p;
    *rc = test_parse(&r, NULL, &p, em);
    if (*rc != 0) fprintf(stderr, "parse: %s\n", em->text);
    return p;
}

static ingest_profile_t *parse_pb(pb_t *b, int *rc, errmsg_t *em)
{
    size_t n;
    uint8_t *raw = pb_pack(b, &n);
    ingest_profile_t *p = parse_bytes(raw, n, NULL, rc, em);
    free(raw);
    return p;
}

/* Go-like cpu profile: two sample types, inlining, an address-only frame. */
static void build_cpu(pb_t *b)
{
    pb_init(b);
    pb_sample_type(b, "samples", "count");
    pb_sample_type(b, "cpu", "nanoseconds");
    pb_period(b, "cpu", "nanoseconds", 10000000);
    uint64_t fmain = pb_function(b, "main", "main.go");
    uint64_t fa = pb_function(b, "a", "a.go");
    uint64_t finl = pb_function(b, "inl", "a.go");
    uint64_t lmain = pb_location(b, 0, 0x10, 1, &fmain);
    uint64_t inl[2] = {finl, fa}; /* line[0] innermost: a() inlined inl() */
    uint64_t la = pb_location(b, 0, 0x20, 2, inl);
    uint64_t m = pb_mapping(b, 0x400000, 0x500000, 0x1000, "/usr/lib/libc.so.6");
    uint64_t laddr = pb_location(b, m, 0x400100, 0, NULL);
    uint64_t lbare = pb_location(b, 0, 0xdeadbeef, 0, NULL);
    uint64_t s1[] = {la, lmain};
    uint64_t s2[] = {laddr, la, lmain};
    uint64_t s3[] = {lbare, lmain};
    pb_sample(b, 2, s1, 2, (int64_t[]){3, 30000000}, NULL);
    pb_sample(b, 3, s2, 2, (int64_t[]){2, 20000000}, NULL);
    pb_sample(b, 2, s3, 2, (int64_t[]){1, 10000000}, NULL);
    b->p.time_nanos = 1795564100LL * 1000000000LL;
}

static void test_cpu_shape(void)
{
    pb_t b;
    build_cpu(&b);
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_nseries(p), 2);
    int c = test_find(p, CPU_NS, NULL, NULL), s = test_find(p, CPU_SAMPLES, NULL, NULL);
    CHECK(c >= 0 && s >= 0);
    /* two types of one series each: no piece */
    CHECK(!ingest_profile_write(p)->series[0].piece && !ingest_profile_write(p)->series[1].piece);
    CHECK_EQ_STR(test_label(p, c, "__name__"), "process_cpu");
    CHECK_EQ_STR(test_label(p, c, "service_name"), "svc");
    CHECK_EQ_STR(test_label(p, c, "env"), "prod");
    CHECK_EQ_INT(test_type_total(p, CPU_NS, NULL), 60000000);
    CHECK_EQ_INT(test_type_total(p, CPU_SAMPLES, NULL), 6);
    /* inlining: main -> a -> inl; the address frame is below inl */
    CHECK_EQ_INT(test_path_total(p, s, "main", "a", "inl", NULL), 5);
    CHECK_EQ_INT(test_path_total(p, s, "main", "a", "inl", "libc.so.6+0x1100", NULL), 2);
    CHECK_EQ_INT(test_path_total(p, s, "main", "0xdeadbeef", NULL), 1);
    CHECK_EQ_INT(test_path_total(p, s, "main", "inl", NULL), INT64_MIN);
    /* time from time_nanos, not from `from` */
    CHECK_EQ_INT(ingest_profile_write(p)->time_ns, 1795564100LL * 1000000000LL);
    /* every symbol has its file */
    const char *name, *file;
    const storage_profile_write_t *w = ingest_profile_write(p);
    int found = 0;
    for (size_t i = 0; i < symtab_count(w->symbols); i++)
        if (symtab_get(w->symbols, symtab_id_at(w->symbols, i), &name, &file) &&
            strcmp(name, "inl") == 0)
            found = strcmp(file, "a.go") == 0;
    CHECK(found);
    ingest_profile_free(p);

    /* same profile gzipped, and in a multipart form with a gzipped part */
    size_t n, gn;
    uint8_t *raw = pb_pack(&b, &n);
    uint8_t *gz = test_gzip(raw, n, &gn);
    p = parse_bytes(gz, gn, NULL, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_type_total(p, CPU_NS, NULL), 60000000);
    ingest_profile_free(p);
    buf_t mp;
    buf_init(&mp, BUF_UNLIMITED);
    buf_append_str(&mp, "--XyZ\r\nContent-Disposition: form-data; name=\"profile\"; "
                        "filename=\"profile\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    buf_append(&mp, gz, gn);
    buf_append_str(
        &mp, "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n"
             "{\"samples\":{\"units\":\"samples\",\"display-name\":\"wall_samples\","
             "\"sampled\":true},\"cpu\":{\"aggregation\":\"sum\"}}\r\n--XyZ--\r\n");
    p = parse_bytes(mp.data, mp.len, "multipart/form-data; boundary=XyZ", &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(ingest_profile_format(p), "pprof");
    /* display-name renames the samples type for naming: wall_samples -> no rule, period cpu */
    CHECK_EQ_INT(test_type_total(p, CPU_SAMPLES, NULL), 6);
    CHECK_EQ_INT(test_type_total(p, CPU_NS, NULL), 60000000);
    ingest_profile_free(p);
    /* prev_profile is refused */
    buf_reset(&mp);
    buf_append_str(
        &mp, "--b\r\nContent-Disposition: form-data; name=\"profile\"\r\n\r\nxx\r\n"
             "--b\r\nContent-Disposition: form-data; name=\"prev_profile\"\r\n\r\nyy\r\n--b--\r\n");
    p = parse_bytes(mp.data, mp.len, "multipart/form-data; boundary=b", &rc, &em);
    CHECK_EQ_INT(rc, ERR_UNSUPPORTED);
    CHECK(strstr(em.text, "prev_profile") != NULL);
    /* broken multipart */
    p = parse_bytes((const uint8_t *)"--b\r\nno end", 11, "multipart/form-data; boundary=b", &rc,
                    &em);
    CHECK_EQ_INT(rc, ERR_UNPARSEABLE);
    p = parse_bytes((const uint8_t *)"x", 1, "multipart/form-data", &rc, &em);
    CHECK_EQ_INT(rc, ERR_UNPARSEABLE);
    buf_free(&mp);
    free(gz);
    free(raw);
    pb_free(&b);
}

/* Labels split series; span_id/trace_id/profile_id do not; numeric labels ignored. */
static void test_labels_and_spans(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    pb_period(&b, "cpu", "nanoseconds", 10000000);
    uint64_t l1 = pb_loc_fn(&b, "root"), l2 = pb_loc_fn(&b, "leaf");
    uint64_t st[] = {l2, l1};
    int64_t v10[] = {10}, v20[] = {20}, v5[] = {5};
    pb_sample(&b, 2, st, 1, v10, "route=/a", "span_id=00000000000000ff", "bytes#512", NULL);
    pb_sample(&b, 2, st, 1, v20, "route=/a", "span_id=00000000000000ff", "trace_id=t-1", NULL);
    pb_sample(&b, 2, st, 1, v5, "route=/b", "profile_id=abc", NULL);
    pb_sample(&b, 2, st, 1, v5, NULL);
    pb_sample(&b, 2, st, 1, v5, "route=/a", "route=/zzz", "__name__=evil", NULL);
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_nseries(p), 3); /* route=/a, route=/b, no route */
    int a = test_find(p, CPU_NS, "route", "/a"), bb = test_find(p, CPU_NS, "route", "/b");
    int none = test_find(p, CPU_NS, "route", NULL);
    CHECK(a >= 0 && bb >= 0 && none >= 0);
    CHECK_EQ_INT(ingest_profile_series_total(p, (size_t)a), 35);
    CHECK_EQ_INT(ingest_profile_series_total(p, (size_t)bb), 5);
    CHECK_EQ_INT(ingest_profile_series_total(p, (size_t)none), 5);
    /* three series of one type: pieces of one push, counted once */
    for (size_t i = 0; i < 3; i++)
        CHECK(ingest_profile_write(p)->series[i].piece);
    CHECK_EQ_STR(test_label(p, a, "__name__"), "process_cpu");
    CHECK(test_label(p, a, "span_id") == NULL && test_label(p, a, "bytes") == NULL);
    const storage_series_write_t *sa = &ingest_profile_write(p)->series[a];
    CHECK_EQ_INT(sa->nspans, 2);
    for (size_t i = 0; i < sa->nspans; i++) {
        if (sa->spans[i].kind == STORAGE_SPAN_KIND_SPAN) {
            CHECK_EQ_INT(sa->spans[i].id, 0xff);
            CHECK_EQ_INT(test_span_total(&sa->spans[i]), 30);
        } else {
            CHECK_EQ_INT(sa->spans[i].kind, STORAGE_SPAN_KIND_TRACE);
            CHECK_EQ_INT(sa->spans[i].id, hash_bytes64("t-1", 3));
            CHECK_EQ_INT(test_span_total(&sa->spans[i]), 20);
        }
    }
    const storage_series_write_t *sb = &ingest_profile_write(p)->series[bb];
    CHECK_EQ_INT(sb->nspans, 1);
    CHECK_EQ_INT(sb->spans[0].kind, STORAGE_SPAN_KIND_SPAN);
    CHECK_EQ_INT(sb->spans[0].id, hash_bytes64("abc", 3));
    ingest_profile_free(p);

    /* series limit: one distinct label value per sample */
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_series_per_profile = 3;
    char kv[32];
    for (int i = 0; i < 5; i++) {
        snprintf(kv, sizeof kv, "req=%d", i);
        pb_sample(&b, 2, st, 1, v5, kv, NULL);
    }
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_OVER_LIMIT);
    CHECK(strstr(em.text, "max-series-per-profile") != NULL);
    free(raw);
    pb_free(&b);
}

/* Total of the node of span `id`'s tree in series i reached by the frame
 * names (NULL-terminated); INT64_MIN if there is no such tree or node. */
static int64_t span_path_total(const ingest_profile_t *p, int i, uint64_t id, ...)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    const storage_series_write_t *sw = &w->series[i];
    calltree_t *t = NULL;
    for (size_t k = 0; k < sw->nspans; k++)
        if (t == NULL && sw->spans[k].kind == STORAGE_SPAN_KIND_SPAN && sw->spans[k].id == id)
            t = test_span_tree(&sw->spans[k]);
    if (t == NULL) return INT64_MIN;
    uint32_t node = 0;
    va_list ap;
    va_start(ap, id);
    for (const char *want; node != CALLTREE_NONE && (want = va_arg(ap, const char *)) != NULL;) {
        uint32_t c = calltree_first_child(t, node);
        for (; c != CALLTREE_NONE; c = calltree_next_sibling(t, c)) {
            const char *name, *file;
            if (symtab_get(w->symbols, calltree_sym(t, c), &name, &file) && strcmp(name, want) == 0)
                break;
        }
        node = c;
    }
    va_end(ap);
    int64_t v = node == CALLTREE_NONE ? INT64_MIN : calltree_total(t, node);
    calltree_free(t);
    return v;
}

/* Each sample type keeps its own span trees: the second type's trees have
 * the first's shape (the same samples) but their own values, not
 * proportional to the first's; repeated, interleaved and nested stacks. */
static void test_span_trees_per_type(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "samples", "count");
    pb_sample_type(&b, "cpu", "nanoseconds");
    pb_period(&b, "cpu", "nanoseconds", 10000000);
    uint64_t lr = pb_loc_fn(&b, "root"), la = pb_loc_fn(&b, "a"), lb = pb_loc_fn(&b, "b");
    uint64_t lc = pb_loc_fn(&b, "c");
    uint64_t sa[] = {la, lr}, sb[] = {lb, lr}, sc[] = {lc, la, lr};
    const char *s1 = "span_id=0000000000000001", *s2 = "span_id=0000000000000002";
    pb_sample(&b, 2, sa, 2, (int64_t[]){1, 100}, s1, NULL);
    pb_sample(&b, 2, sb, 2, (int64_t[]){2, 7}, s1, NULL);
    pb_sample(&b, 2, sa, 2, (int64_t[]){4, 5}, s2, NULL);
    pb_sample(&b, 3, sc, 2, (int64_t[]){8, 9}, s1, NULL);
    pb_sample(&b, 3, sc, 2, (int64_t[]){16, 3}, s1, NULL);
    pb_sample(&b, 2, sa, 2, (int64_t[]){32, 1}, NULL);
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    int n = test_find(p, CPU_SAMPLES, NULL, NULL), c = test_find(p, CPU_NS, NULL, NULL);
    CHECK(n >= 0 && c >= 0);
    CHECK_EQ_INT(span_path_total(p, n, 1, NULL), 27);
    CHECK_EQ_INT(span_path_total(p, n, 1, "root", "a", NULL), 25);
    CHECK_EQ_INT(span_path_total(p, n, 1, "root", "a", "c", NULL), 24);
    CHECK_EQ_INT(span_path_total(p, n, 1, "root", "b", NULL), 2);
    CHECK_EQ_INT(span_path_total(p, n, 2, "root", "a", NULL), 4);
    CHECK_EQ_INT(span_path_total(p, n, 2, "root", "b", NULL), INT64_MIN);
    CHECK_EQ_INT(span_path_total(p, c, 1, NULL), 119);
    CHECK_EQ_INT(span_path_total(p, c, 1, "root", "a", NULL), 112);
    CHECK_EQ_INT(span_path_total(p, c, 1, "root", "a", "c", NULL), 12);
    CHECK_EQ_INT(span_path_total(p, c, 1, "root", "b", NULL), 7);
    CHECK_EQ_INT(span_path_total(p, c, 2, "root", "a", NULL), 5);
    CHECK_EQ_INT(span_path_total(p, c, 2, "root", "b", NULL), INT64_MIN);
    CHECK_EQ_INT(test_path_total(p, (size_t)n, "root", "a", NULL), 61);
    CHECK_EQ_INT(test_path_total(p, (size_t)c, "root", "a", NULL), 118);
    ingest_profile_free(p);
    pb_free(&b);
}

/* max_spans_per_series: ids past the cap are dropped (counted once each), the
 * kept trees and the series total are unchanged, and the push succeeds. */
static void test_span_cap(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t l1 = pb_loc_fn(&b, "root"), l2 = pb_loc_fn(&b, "leaf");
    uint64_t st[] = {l2, l1};
    int64_t v[] = {3};
    pb_sample(&b, 2, st, 1, v, "span_id=0000000000000001", NULL);
    pb_sample(&b, 2, st, 1, v, "span_id=0000000000000002", "trace_id=t", NULL);
    pb_sample(&b, 2, st, 1, v, "span_id=0000000000000003", NULL);
    pb_sample(&b, 2, st, 1, v, "span_id=0000000000000003", NULL);
    pb_sample(&b, 2, st, 1, v, "span_id=0000000000000001", NULL);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_spans_per_series = 2;
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    const storage_series_write_t *sw = &ingest_profile_write(p)->series[0];
    CHECK_EQ_INT(sw->nspans, 2); /* span 1 and span 2; trace t and span 3 dropped */
    CHECK_EQ_INT(ingest_profile_spans_dropped(p), 2);
    CHECK_EQ_INT(ingest_profile_series_total(p, 0), 15);
    for (size_t i = 0; i < sw->nspans; i++)
        CHECK_EQ_INT(test_span_total(&sw->spans[i]), sw->spans[i].id == 1 ? 6 : 3);
    ingest_profile_free(p);
    free(raw);
    pb_free(&b);
}

/* Negative values, several sample types, types with empty names, id 0. */
static void test_values_and_types(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "alloc_objects", "count");
    pb_sample_type(&b, "alloc_space", "bytes");
    pb_sample_type(&b, "inuse_objects", "count");
    pb_sample_type(&b, "inuse_space", "bytes");
    pb_sample_type(&b, "", "");
    pb_period(&b, "space", "bytes", 524288);
    uint64_t l1 = pb_loc_fn(&b, "malloc");
    pb_sample(&b, 1, &l1, 5, (int64_t[]){5, 500, 1, 100, 7}, NULL);
    pb_sample(&b, 1, &l1, 5, (int64_t[]){-2, -9223372036854775807LL, 0, 0, -7}, NULL);
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_nseries(p), 5);
    CHECK_EQ_INT(test_type_total(p, "memory:alloc_objects:count:space:bytes", NULL), 3);
    CHECK_EQ_INT(test_type_total(p, "memory:alloc_space:bytes:space:bytes", NULL),
                 500 - 9223372036854775807LL);
    CHECK_EQ_INT(test_type_total(p, "memory:inuse_space:bytes:space:bytes", NULL), 100);
    size_t k;
    CHECK_EQ_INT(test_type_total(p, "memory:::space:bytes", &k), 0);
    CHECK_EQ_INT(k, 1);
    ingest_profile_free(p);

    /* len(value) != len(sample_type) is refused */
    pb_sample(&b, 1, &l1, 2, (int64_t[]){1, 2}, NULL);
    p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, ERR_UNPARSEABLE);
    CHECK(strstr(em.text, "values") != NULL);
    pb_free(&b);

    /* .NET shape: every function id 0, as many functions as locations */
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t f1 = pb_function(&b, "Main", ""), f2 = pb_function(&b, "Work", "");
    uint64_t la = pb_location(&b, 0, 0, 1, &f1), lb = pb_location(&b, 0, 0, 1, &f2);
    b.p.function[0]->id = 0;
    b.p.function[1]->id = 0;
    b.p.location[0]->id = 7;
    b.p.location[1]->id = 9;
    b.p.location[0]->line[0]->function_id = 7;
    b.p.location[1]->line[0]->function_id = 9;
    (void)la;
    (void)lb;
    uint64_t st[] = {9, 7};
    pb_sample(&b, 2, st, 1, (int64_t[]){4}, NULL);
    p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_path_total(p, 0, "Main", "Work", NULL), 4);
    ingest_profile_free(p);
    pb_free(&b);
}

/* Two trees are the same: same nodes in the same order, same values. */
static void check_same_tree(const calltree_t *a, const calltree_t *b)
{
    CHECK_EQ_INT(calltree_node_count(a), calltree_node_count(b));
    if (calltree_node_count(a) != calltree_node_count(b)) return;
    for (uint32_t i = 0; i < calltree_node_count(a); i++) {
        CHECK(calltree_sym(a, i) == calltree_sym(b, i));
        CHECK(calltree_parent(a, i) == calltree_parent(b, i));
        CHECK_EQ_INT(calltree_self(a, i), calltree_self(b, i));
        CHECK_EQ_INT(calltree_total(a, i), calltree_total(b, i));
    }
}

/* Sample types non-zero in the same samples share one tree shape while
 * parsing (ingest_pprof.c find_leaders); every series' tree must still be
 * exactly the tree its own stacks build, for followers, for types that
 * differ in one sample only, across label groups and with values that sum
 * to zero. */
static void test_shared_shapes(void)
{
    static const char *fn[] = {"main", "a", "b", "c", "d", "e"};
    static const char *types[] = {"t0", "t1", "t2", "t3", "t4"};
    enum { NT = 5, NS = 300 };
    pb_t b;
    pb_init(&b);
    for (int t = 0; t < NT; t++)
        pb_sample_type(&b, types[t], "count");
    uint64_t loc[6], sym[6];
    for (int i = 0; i < 6; i++) {
        loc[i] = pb_loc_fn(&b, fn[i]);
        sym[i] = hash_symbol(fn[i], strlen(fn[i]), "f.go", 4);
    }
    calltree_t *ref[2][NT];
    for (int g = 0; g < 2; g++)
        for (int t = 0; t < NT; t++)
            ref[g][t] = calltree_new(0);
    uint64_t x = 12345;
    for (int i = 0; i < NS; i++) {
        uint64_t locs[8], stack[8];
        size_t d = 1;
        locs[0] = loc[0];
        stack[0] = sym[0];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        for (size_t k = 1; k < 1 + (x >> 60) % 7; k++, d++) {
            size_t f = 1 + (size_t)((x >> (8 * k)) % 5);
            locs[d] = loc[f];
            stack[d] = sym[f];
        }
        uint64_t leaf_first[8];
        for (size_t k = 0; k < d; k++)
            leaf_first[k] = locs[d - 1 - k];
        int64_t v0 = (int64_t)(x % 5) - 1; /* zero in about a fifth of the samples */
        int64_t vals[NT] = {v0, v0 * 1000, i == NS / 2 ? 0 : v0 * 7, (int64_t)(x >> 40) % 3,
                            (int64_t)(x >> 40) % 3 * -4};
        if (i == NS / 2 && v0 == 0) vals[2] = 9; /* t2 differs from t0 in one sample */
        int g = (int)((x >> 20) & 1);
        pb_sample(&b, d, leaf_first, NT, vals, g ? "g=one" : "g=two", NULL);
        for (int t = 0; t < NT; t++)
            if (vals[t] != 0) CHECK_EQ_INT(calltree_add_stack(ref[g][t], stack, d, vals[t]), 0);
    }
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_nseries(p), 2 * NT);
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; p != NULL && i < w->nseries; i++) {
        const char *g = test_label(p, i, "g"), *pt = test_label(p, i, "__profile_type__");
        int t = -1;
        for (int k = 0; k < NT; k++)
            if (strstr(pt, types[k]) != NULL) t = k;
        CHECK(t >= 0 && g != NULL);
        if (t >= 0 && g != NULL) check_same_tree(w->series[i].tree, ref[strcmp(g, "one") == 0][t]);
    }
    ingest_profile_free(p);
    for (int g = 0; g < 2; g++)
        for (int t = 0; t < NT; t++)
            calltree_free(ref[g][t]);
    pb_free(&b);
}

static void expect_refused(pb_t *b, const ingest_limits_t *lim, int want, const char *needle)
{
    size_t n;
    uint8_t *raw = pb_pack(b, &n);
    ingest_request_t r = test_req("svc", "pprof", raw, n);
    ingest_profile_t *p;
    errmsg_t em;
    int rc = test_parse(&r, lim, &p, &em);
    CHECK_EQ_INT(rc, want);
    if (needle != NULL && strstr(em.text, needle) == NULL) {
        fprintf(stderr, "reason '%s' lacks '%s'\n", em.text, needle);
        CHECK(0);
    }
    free(raw);
}

static void test_invalid_references(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t l = pb_loc_fn(&b, "f");
    uint64_t bad_loc = 99;
    pb_sample(&b, 1, &bad_loc, 1, (int64_t[]){1}, NULL);
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "unknown location");
    b.p.sample[0]->location_id[0] = l;
    b.p.location[0]->line[0]->function_id = 42;
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "unknown function");
    b.p.location[0]->line[0]->function_id = 1;
    b.p.function[0]->name = 1000;
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "string index");
    b.p.function[0]->name = 1;
    b.p.sample_type[0]->type = -1;
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "string index");
    b.p.sample_type[0]->type = 2;
    b.p.location[0]->mapping_id = 5;
    b.p.location[0]->line[0]->function_id = 0; /* no function: address frame needs the mapping */
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "mapping");
    b.p.location[0]->mapping_id = 0;
    b.p.location[0]->line[0]->function_id = 1;
    /* duplicate location ids (not dense: forces the hash index) */
    pb_loc_fn(&b, "g");
    b.p.location[0]->id = 5;
    b.p.location[1]->id = 5;
    b.p.sample[0]->location_id[0] = 5;
    expect_refused(&b, NULL, ERR_UNPARSEABLE, "duplicate location");
    pb_free(&b);
}

/* Multiplies every function, location and mapping id of b by k (and the
 * references to them). */
static void scale_ids(pb_t *b, uint64_t k)
{
    Perftools__Profiles__Profile *q = &b->p;
    for (size_t i = 0; i < q->n_function; i++)
        q->function[i]->id *= k;
    for (size_t i = 0; i < q->n_mapping; i++)
        q->mapping[i]->id *= k;
    for (size_t i = 0; i < q->n_location; i++) {
        q->location[i]->id *= k;
        q->location[i]->mapping_id *= k;
        for (size_t j = 0; j < q->location[i]->n_line; j++)
            q->location[i]->line[j]->function_id *= k;
    }
    for (size_t i = 0; i < q->n_sample; i++)
        for (size_t j = 0; j < q->sample[i]->n_location_id; j++)
            q->sample[i]->location_id[j] *= k;
}

/* Gives the last location of b id new_id (and the samples naming it). */
static void renumber_last_location(pb_t *b, uint64_t new_id)
{
    Perftools__Profiles__Profile *q = &b->p;
    uint64_t old = q->location[q->n_location - 1]->id;
    q->location[q->n_location - 1]->id = new_id;
    for (size_t i = 0; i < q->n_sample; i++)
        for (size_t j = 0; j < q->sample[i]->n_location_id; j++)
            if (q->sample[i]->location_id[j] == old) q->sample[i]->location_id[j] = new_id;
}

/* Ids 1..n are their own index; a few times n, an array by id; larger, a
 * hash map (ingest_pprof.c index_ids), also when only the last id is
 * large (the array, already filled, is dropped). The three must read a
 * profile the same, and refuse the same unknown and duplicate ids. */
static void test_id_indices(void)
{
    pb_t b;
    build_cpu(&b);
    int rc;
    errmsg_t em;
    ingest_profile_t *ref = parse_pb(&b, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    pb_free(&b);
    static const uint64_t scale[] = {3, 1ull << 40, 3};
    for (size_t s = 0; ref != NULL && s < 3; s++) {
        uint64_t k = scale[s];
        build_cpu(&b);
        scale_ids(&b, k);
        if (s == 2) renumber_last_location(&b, 1ull << 41);
        ingest_profile_t *p = parse_pb(&b, &rc, &em);
        CHECK_EQ_INT(rc, 0);
        const storage_profile_write_t *w = ingest_profile_write(ref);
        const storage_profile_write_t *v = p != NULL ? ingest_profile_write(p) : NULL;
        CHECK(v != NULL && v->nseries == w->nseries);
        for (size_t i = 0; v != NULL && i < w->nseries && i < v->nseries; i++)
            check_same_tree(v->series[i].tree, w->series[i].tree);
        ingest_profile_free(p);
        Perftools__Profiles__Profile *q = &b.p;
        uint64_t *loc = &q->sample[0]->location_id[0], was = *loc;
        *loc = k + 1; /* between two ids */
        expect_refused(&b, NULL, ERR_UNPARSEABLE, "unknown location");
        *loc = 100 * k; /* past the largest */
        expect_refused(&b, NULL, ERR_UNPARSEABLE, "unknown location");
        *loc = was;
        uint64_t *fid = &q->location[0]->line[0]->function_id, fwas = *fid;
        *fid = 2 * k - 1;
        expect_refused(&b, NULL, ERR_UNPARSEABLE, "unknown function");
        *fid = fwas;
        q->location[1]->id = q->location[0]->id;
        expect_refused(&b, NULL, ERR_UNPARSEABLE, "duplicate location");
        pb_free(&b);
    }
    ingest_profile_free(ref);
}

static void test_limits(void)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t l = pb_loc_fn(&b, "recursive");
    /* a 200k-frame stack: one location repeated */
    uint64_t *deep = malloc(200000 * sizeof *deep);
    for (int i = 0; i < 200000; i++)
        deep[i] = l;
    pb_sample(&b, 200000, deep, 1, (int64_t[]){1}, NULL);
    free(deep);
    expect_refused(&b, NULL, ERR_OVER_LIMIT, "max-stack-depth");
    pb_free(&b);

    ingest_limits_t lim;
    ingest_limits_default(&lim);
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    l = pb_loc_fn(&b, "a_rather_long_function_name");
    for (int i = 0; i < 11; i++)
        pb_sample(&b, 1, &l, 1, (int64_t[]){1}, NULL);
    lim.max_samples = 10;
    expect_refused(&b, &lim, ERR_OVER_LIMIT, "max-samples");
    lim.max_samples = 100;
    lim.max_symbol_len = 8;
    expect_refused(&b, &lim, ERR_OVER_LIMIT, "max-symbol-len");
    lim.max_symbol_len = 100;
    lim.max_decoded_bytes = 1000;
    expect_refused(&b, &lim, ERR_TOO_LARGE, "max-decoded-bytes");
    lim.max_decoded_bytes = 1 << 20;
    lim.max_tree_nodes = 1;
    expect_refused(&b, &lim, ERR_OVER_LIMIT, "ingest-max-tree-nodes");
    pb_free(&b);

    /* gzip bomb: 64 MiB of zeros compress to ~64 KiB */
    size_t zn = 64u << 20, gn;
    uint8_t *zeros = calloc(1, zn);
    uint8_t *gz = test_gzip(zeros, zn, &gn);
    free(zeros);
    ingest_request_t r = test_req("svc", "pprof", gz, gn);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "max-decompressed-bytes") != NULL);
    r.body_len = 10; /* the bomb's header only */
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_UNPARSEABLE);
    free(gz);
    /* a real profile gzipped, then corrupted (CRC) or truncated */
    pb_t b2;
    build_cpu(&b2);
    size_t n;
    uint8_t *raw = pb_pack(&b2, &n);
    gz = test_gzip(raw, n, &gn);
    for (int k = 0; k < 3; k++) {
        uint8_t *copy = malloc(gn);
        memcpy(copy, gz, gn);
        size_t len = gn;
        if (k == 0)
            copy[gn / 2] ^= 0x55;
        else if (k == 1)
            copy[gn - 6] ^= 0x01; /* CRC32 */
        else
            len = gn - 9;
        r = test_req("svc", "pprof", copy, len);
        CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_UNPARSEABLE);
        free(copy);
    }
    free(gz);
    free(raw);
    pb_free(&b2);
}

/* Hostile bytes: huge varints, bad wire types, every truncation of a valid
 * profile — each parses or is refused with a 4xx, never crashes. */
static void test_hostile_bytes(void)
{
    static const uint8_t varint11[] = {0x48, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t bad_len[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, 0x01};
    static const uint8_t wire7[] = {0x0f, 0x00};
    static const uint8_t text[] = "heap profile: 1: 2 [3: 4] @ heap/1048576\n";
    const uint8_t *cases[] = {varint11, bad_len, wire7, text};
    size_t lens[] = {sizeof varint11, sizeof bad_len, sizeof wire7, sizeof text - 1};
    for (size_t i = 0; i < 4; i++) {
        ingest_request_t r = test_req("svc", "pprof", cases[i], lens[i]);
        ingest_profile_t *p;
        errmsg_t em;
        int rc = test_parse(&r, NULL, &p, &em);
        CHECK_EQ_INT(rc, ERR_UNPARSEABLE);
        CHECK(em.text[0] != 0);
    }
    pb_t b;
    build_cpu(&b);
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    size_t ok = 0, refused = 0;
    for (size_t cut = 1; cut < n; cut++) {
        uint8_t *copy = malloc(cut); /* exact size so ASan sees any over-read */
        memcpy(copy, raw, cut);
        ingest_request_t r = test_req("svc", "pprof", copy, cut);
        ingest_profile_t *p;
        errmsg_t em;
        int rc = test_parse(&r, NULL, &p, &em);
        CHECK(rc == 0 || err_http_status(rc) / 100 == 4);
        if (rc == 0) {
            ok++;
            ingest_profile_free(p);
        } else {
            refused++;
        }
        free(copy);
    }
    CHECK(refused > 0);
    fprintf(stderr, "truncations: %zu parsed, %zu refused\n", ok, refused);
    free(raw);
    pb_free(&b);
}

/* time= sets the profile's time over the pprof's time_nanos and from (a
 * backfill, a client with a wrong clock); it is part of the profile id;
 * a bad or out-of-window time is refused naming the parameter. */
static void test_time_override(void)
{
    pb_t b;
    build_cpu(&b);
    size_t n;
    uint8_t *raw = pb_pack(&b, &n);
    errmsg_t em;
    ingest_profile_t *p, *q;
    ingest_request_t r = test_req("svc{env=prod}", "pprof", raw, n);
    r.from = "1795564000";
    CHECK_EQ_INT(test_parse(&r, NULL, &q, &em), 0);
    CHECK_EQ_INT(ingest_profile_write(q)->time_ns, 1795564100LL * 1000000000LL);
    r.time = "1795500000";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    CHECK_EQ_INT(ingest_profile_write(p)->time_ns, 1795500000LL * 1000000000LL);
    CHECK(memcmp(ingest_profile_write(p)->profile_id, ingest_profile_write(q)->profile_id,
                 sizeof ingest_profile_write(p)->profile_id) != 0);
    ingest_profile_free(p);
    r.time = "1795500000000"; /* ms: the same time, the same profile */
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    CHECK_EQ_INT(ingest_profile_write(p)->time_ns, 1795500000LL * 1000000000LL);
    ingest_profile_free(p);
    ingest_profile_free(q);
    r.time = "yesterday";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "parameter 'time'") != NULL);
    r.time = "1000000000"; /* 2001: past max-past */
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "the time parameter's") != NULL && strstr(em.text, "max-past"));
    r.time = NULL; /* the pprof's own time too old: the reason points at time= */
    b.p.time_nanos = 1000000000LL * 1000000000LL;
    free(raw);
    raw = pb_pack(&b, &n);
    r.body = raw;
    r.body_len = n;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "time= overrides it") != NULL);
    r.time = "1795564000";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    CHECK_EQ_INT(ingest_profile_write(p)->time_ns, 1795564000LL * 1000000000LL);
    ingest_profile_free(p);
    free(raw);
    pb_free(&b);
}

int main(void)
{
    test_cpu_shape();
    test_time_override();
    test_labels_and_spans();
    test_span_cap();
    test_span_trees_per_type();
    test_values_and_types();
    test_shared_shapes();
    test_invalid_references();
    test_id_indices();
    test_limits();
    test_hostile_bytes();
    return check_exit();
}
