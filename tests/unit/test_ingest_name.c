/* test_ingest_name.c — the name parameter, query parameters, the folded
 * suffix table and the pprof type-name derivation table. */
#include "node/ingest/ingest_int.h"
#include "test_ingest_util.h"

static const char body[] = "main;work 3\n";

/* Parses a folded body under name and returns the profile (or NULL + code). */
static ingest_profile_t *parse_name(const char *name, int *rc, errmsg_t *em)
{
    ingest_request_t r = test_req(name, NULL, body, sizeof body - 1);
    ingest_profile_t *p;
    *rc = test_parse(&r, NULL, &p, em);
    return p;
}

static void test_name_labels(void)
{
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse_name(
        "nodeprobe.cpu{otel.scope.name=com.grafana.pyroscope/nodejs,region=test-1, probe = x }",
        &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_nseries(p), 1);
    CHECK_EQ_STR(test_label(p, 0, "service_name"), "nodeprobe");
    CHECK_EQ_STR(test_label(p, 0, "otel.scope.name"), "com.grafana.pyroscope/nodejs");
    CHECK_EQ_STR(test_label(p, 0, "region"), "test-1");
    CHECK_EQ_STR(test_label(p, 0, "probe"), "x");
    CHECK_EQ_STR(test_label(p, 0, "__name__"), "process_cpu");
    CHECK_EQ_STR(test_label(p, 0, "__profile_type__"),
                 "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    CHECK(test_label(p, 0, "pyroscope_spy") == NULL);
    /* 3 samples at 100 Hz = 30 ms */
    CHECK_EQ_INT(ingest_profile_series_total(p, 0), 30000000);
    const storage_profile_write_t *w = ingest_profile_write(p);
    CHECK_EQ_INT(w->series[0].series_id, labels_hash(w->series[0].labels));
    CHECK_EQ_STR(w->tenant, "t1");
    ingest_profile_free(p);

    /* explicit service_name wins; the app name is kept as app_name; reserved dropped */
    p = parse_name("myapp{service_name=svc,__name__=evil,empty=}", &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(test_label(p, 0, "service_name"), "svc");
    CHECK_EQ_STR(test_label(p, 0, "app_name"), "myapp");
    CHECK_EQ_STR(test_label(p, 0, "__name__"), "process_cpu");
    CHECK(test_label(p, 0, "empty") == NULL);
    ingest_profile_free(p);

    /* a dotted app name with an unknown last segment keeps it */
    p = parse_name("com.example.app", &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(test_label(p, 0, "service_name"), "com.example.app");
    ingest_profile_free(p);
}

static void test_name_errors(void)
{
    const char *bad[] = {"",          "{a=b}",      "app{a=b",    "app{a}",   "app{1a=b}",
                         "app{a=b}}", "app{a=b{c}", "app{a-b=c}", "ap,p{a=b}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc;
        errmsg_t em;
        ingest_profile_t *p = parse_name(bad[i], &rc, &em);
        CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT);
        CHECK(p == NULL);
        CHECK(em.text[0] != 0);
    }
    ingest_request_t r = test_req(NULL, NULL, body, sizeof body - 1);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "name") != NULL);
}

static void test_name_limits(void)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_labels_per_series = 5; /* 3 of them: __name__, __profile_type__, service_name */
    lim.max_label_value_len = 8;
    lim.max_label_name_len = 12; /* service_name */
    errmsg_t em;
    ingest_profile_t *p;
    ingest_request_t r = test_req("app{a=1,b=2}", NULL, body, sizeof body - 1);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    ingest_profile_free(p);
    r.name = "app{a=1,b=2,c=3}";
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "(max-labels-per-series") != NULL);
    r.name = "app{a=123456789}";
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "(max-label-value-len)") != NULL); /* the setting, as configured */
    r.name = "app{abcdefghijklm=1}";
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "(max-label-name-len)") != NULL);
    /* 10k labels: refused, not slow */
    size_t n = 10000 * 12 + 16;
    char *big = malloc(n), *o = big;
    o += sprintf(o, "app{");
    for (int i = 0; i < 10000; i++)
        o += sprintf(o, "l%d=v,", i);
    strcpy(o - 1, "}");
    r.name = big;
    CHECK(test_parse(&r, NULL, &p, &em) == ERR_INVALID_ARGUMENT);
    free(big);
}

/* Folded suffix table: name -> (type id, value of one sample). */
static void test_folded_types(void)
{
    static const struct {
        const char *name, *sample_rate, *type, *service;
        int64_t one;
    } cases[] = {
        {"a", NULL, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "a", 10000000},
        {"a.cpu", NULL, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "a", 10000000},
        {"a.cpu", "17", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "a", 58823529},
        {"a.cpu", "0", "process_cpu:samples:count::", "a", 1},
        {"a.itimer", "1000", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "a", 1000000},
        {"a.wall", NULL, "wall:wall:nanoseconds:cpu:nanoseconds", "a", 10000000},
        {"a.b.inuse_objects", NULL, "memory:inuse_objects:count:space:bytes", "a.b", 1},
        {"a.inuse_space", NULL, "memory:inuse_space:bytes:space:bytes", "a", 1},
        {"a.alloc_objects", NULL, "memory:alloc_objects:count:space:bytes", "a", 1},
        {"a.alloc_space", NULL, "memory:alloc_space:bytes:space:bytes", "a", 1},
        {"a.goroutines", NULL, "goroutines:goroutine:count:goroutine:count", "a", 1},
        {"a.mutex_count", NULL, "mutex:contentions:count:contentions:count", "a", 1},
        {"a.mutex_duration", NULL, "mutex:delay:nanoseconds:contentions:count", "a", 1},
        {"a.block_count", NULL, "block:contentions:count:contentions:count", "a", 1},
        {"a.block_duration", NULL, "block:delay:nanoseconds:contentions:count", "a", 1},
        {"a.live", NULL, "memory:live:count:objects:count", "a", 1},
        {"a.exceptions", NULL, "exceptions:samples:count::", "a", 1},
        {"a.alloc_in_new_tlab_bytes", NULL, "memory:alloc_in_new_tlab_bytes:bytes:space:bytes", "a",
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char one[] = "x;y 1";
        ingest_request_t r = test_req(cases[i].name, "folded", one, sizeof one - 1);
        r.sample_rate = cases[i].sample_rate;
        ingest_profile_t *p;
        errmsg_t em;
        CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
        if (p == NULL) continue;
        CHECK_EQ_STR(test_label(p, 0, "__profile_type__"), cases[i].type);
        CHECK_EQ_STR(test_label(p, 0, "service_name"), cases[i].service);
        CHECK_EQ_INT(ingest_profile_series_total(p, 0), cases[i].one);
        ingest_profile_free(p);
    }
}

/* pprof sample type -> __name__ (ingest_type_name), with the period type. */
static void test_pprof_type_names(void)
{
    static const struct {
        const char *st, *pt, *others[4], *want;
    } cases[] = {
        {"samples", "cpu", {"samples", "cpu"}, "process_cpu"},
        {"cpu", "cpu", {"samples", "cpu"}, "process_cpu"},
        {"CPU", "CPU", {"sample", "CPU"}, "process_cpu"},
        {"sample", "CPU", {"sample", "CPU"}, "process_cpu"},
        {"sample", "wall", {"sample", "wall"}, "wall"},
        {"wall", "wall", {"wall"}, "wall"},
        {"alloc_objects", "space", {"alloc_objects"}, "memory"},
        {"inuse_space", "space", {"inuse_space"}, "memory"},
        {"space", "space", {"objects", "space"}, "memory"},
        {"objects", "space", {"objects", "space"}, "memory"},
        {"live", "objects", {"live"}, "memory"},
        {"alloc_in_new_tlab_bytes", "space", {"x"}, "memory"},
        {"contentions", "contentions", {"contentions", "delay"}, "mutex"},
        {"delay", "contentions", {"contentions", "delay"}, "mutex"},
        {"contentions", "block", {"contentions"}, "block"},
        {"delay", "mutex", {"delay"}, "mutex"},
        {"block_count", "", {"block_count"}, "block"},
        {"mutex_duration", "", {"mutex_duration"}, "mutex"},
        {"goroutine", "goroutine", {"goroutine"}, "goroutines"},
        {"goroutines", "", {"goroutines"}, "goroutines"},
        {"exception", "", {"cpu", "exception"}, "exceptions"},
        {"lock_count", "", {"cpu", "lock_count"}, "mutex"},
        {"alloc_samples", "", {"cpu", "alloc_samples"}, "memory"},
        {"time", "wallclock", {"samples", "time"}, "wall"},
        {"samples", "wallclock", {"samples", "time"}, "wall"}, /* fgprof */
        {"samples", "wall", {"samples", "wall"}, "wall"},      /* nodejs wall */
        {"samples", "cpu", {"samples", "wall"}, "wall"},
        {"samples", "", {"samples"}, "process_cpu"}, /* py-spy / rbspy */
        {"", "", {""}, "unknown"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        while (n < 4 && cases[i].others[n] != NULL)
            n++;
        const char *got = ingest_type_name(cases[i].st, cases[i].pt, cases[i].others, n);
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "type name of %s (period %s): %s, want %s\n", cases[i].st, cases[i].pt,
                    got, cases[i].want);
        CHECK_EQ_STR(got, cases[i].want);
    }
}

static void test_params(void)
{
    int64_t ns;
    CHECK_EQ_INT(ingest_parse_time("1795618028", &ns), 0);
    CHECK_EQ_INT(ns, 1795618028LL * 1000000000LL);
    CHECK_EQ_INT(ingest_parse_time("1795618028123", &ns), 0);
    CHECK_EQ_INT(ns, 1795618028123LL * 1000000LL);
    CHECK_EQ_INT(ingest_parse_time("1795618028123456", &ns), 0);
    CHECK_EQ_INT(ns, 1795618028123456LL * 1000LL);
    CHECK_EQ_INT(ingest_parse_time("1795618028123456789", &ns), 0);
    CHECK_EQ_INT(ns, 1795618028123456789LL);
    CHECK(ingest_parse_time("now", &ns) < 0);
    CHECK(ingest_parse_time("-5", &ns) < 0);

    errmsg_t em;
    ingest_profile_t *p;
    ingest_request_t r = test_req("app", NULL, body, sizeof body - 1);
    r.from = "1795564700"; /* 100 s before the test clock */
    r.spy_name = "gospy";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    CHECK_EQ_INT(ingest_profile_write(p)->time_ns, 1795564700LL * 1000000000LL);
    CHECK_EQ_STR(test_label(p, 0, "pyroscope_spy"), "gospy");
    ingest_profile_free(p);

    r.from = "1700000000"; /* ~2 years back: outside max-past */
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    /* the reason names the setting as flamedb --help spells it */
    CHECK(strstr(em.text, "in the past (setting max-past)") != NULL);
    r.from = "1795574800"; /* 10,000 s ahead */
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "in the future (setting max-future)") != NULL);
    r.from = "yesterday";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "from") != NULL);
    r.from = NULL;
    r.sample_rate = "fast";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    r.sample_rate = NULL;
    r.aggregation_type = "max";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    r.aggregation_type = "average";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    ingest_profile_free(p);

    const char *unsupported[] = {"jfr", "speedscope", "trie", "tree", "xml"};
    for (size_t i = 0; i < 5; i++) {
        r.format = unsupported[i];
        CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_UNSUPPORTED);
        CHECK(strstr(em.text, "unsupported format") != NULL);
        CHECK(strstr(em.text, unsupported[i]) != NULL);
    }
    r.format = NULL;
    r.content_type = "binary/octet-stream+trie";
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_UNSUPPORTED);
}

/* The profile id: same request -> same id; any change -> another id. */
static void test_profile_id(void)
{
    ingest_request_t r = test_req("app{a=b}", NULL, body, sizeof body - 1);
    r.from = "1795564700";
    uint8_t id[5][16];
    for (int i = 0; i < 5; i++) {
        ingest_request_t q = r;
        char other[] = "main;work 4\n";
        if (i == 2) q.tenant = "t2";
        if (i == 3) q.from = "1795564701";
        if (i == 4) {
            q.body = (const uint8_t *)other;
            q.body_len = sizeof other - 1;
        }
        ingest_profile_t *p;
        errmsg_t em;
        CHECK_EQ_INT(test_parse(&q, NULL, &p, &em), 0);
        memcpy(id[i], ingest_profile_write(p)->profile_id, 16);
        ingest_profile_free(p);
    }
    CHECK(memcmp(id[0], id[1], 16) == 0);
    for (int i = 2; i < 5; i++)
        CHECK(memcmp(id[0], id[i], 16) != 0);
}

static void id_of(const ingest_request_t *r, uint8_t out[16])
{
    ingest_profile_t *p;
    errmsg_t em;
    memset(out, 0, 16);
    CHECK_EQ_INT(test_parse(r, NULL, &p, &em), 0);
    if (p != NULL) memcpy(out, ingest_profile_write(p)->profile_id, 16);
    ingest_profile_free(p);
}

/* The id covers the resolved time window: without `from` the node's clock
 * decides (a minute later is another profile), with `from` the time it
 * names, however spelled (seconds or milliseconds). */
static void test_profile_id_window(void)
{
    uint8_t a[16], b[16];
    ingest_request_t r = test_req("app{a=b}", NULL, body, sizeof body - 1);
    id_of(&r, a);
    id_of(&r, b);
    CHECK(memcmp(a, b, 16) == 0); /* same clock: a retry */
    r.now_ns += 60 * 1000000000LL;
    id_of(&r, b);
    CHECK(memcmp(a, b, 16) != 0); /* a minute apart: two profiles */
    r.from = "1795564700";
    id_of(&r, a);
    r.from = "1795564700000";
    r.now_ns += 60 * 1000000000LL;
    id_of(&r, b);
    CHECK(memcmp(a, b, 16) == 0); /* same from, spelled in ms, later: one profile */
    r.until = "1795564710";
    id_of(&r, b);
    CHECK(memcmp(a, b, 16) != 0); /* another window */
}

int main(void)
{
    test_name_labels();
    test_name_errors();
    test_name_limits();
    test_folded_types();
    test_pprof_type_names();
    test_params();
    test_profile_id();
    test_profile_id_window();
    return check_exit();
}
