/* test_query_report_cache.c — the regression report cache (query.h "the
 * report cache"): a report's key and id follow every one of its inputs
 * (tenant, queries, ranges, buckets) and nothing else (limit, search); the
 * cache never holds more than its bytes, evicts the least recently used
 * first, keeps nothing at 0 or for a report larger than it, gives way when
 * the charge refuses, compares whole keys, keeps an evicted entry alive for
 * its reader, gives back every byte it charged; and a cached report answers
 * with exactly the bytes of the report itself, searched or not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

/* A report of n rows named prefix0.., with values of seed; names owned. */
static void make_report(query_report_t *r, size_t n, const char *prefix, int seed)
{
    memset(r, 0, sizeof *r);
    r->rows = calloc(n, sizeof *r->rows);
    CHECK(r->rows != NULL);
    char(*names)[32] = calloc(n, sizeof *names);
    CHECK(names != NULL);
    r->nrows = n;
    r->ticks[0] = 1000 + seed;
    r->ticks[1] = 2000 + seed;
    r->buckets[0] = r->buckets[1] = 6;
    for (size_t i = 0; i < n; i++) {
        query_report_row_t *w = &r->rows[i];
        snprintf(names[i], sizeof names[i], "%s%zu", prefix, i);
        w->name = names[i];
        w->file = i % 2 ? "file.go" : "";
        w->self[0] = w->total[0] = (int64_t)(i + (size_t)seed);
        w->self[1] = w->total[1] = (int64_t)(2 * i);
        w->share[0] = (double)w->total[0] / (double)r->ticks[0];
        w->share[1] = (double)w->total[1] / (double)r->ticks[1];
        w->change = 100.0 * (w->share[1] - w->share[0]);
        w->tested = i % 3 != 0;
        w->t = 1.5 + (double)i;
        w->df = 9.0;
        w->p = w->tested ? 0.001 * (double)i : 1.0;
        w->significant = i == 1;
        r->tested += (size_t)w->tested;
    }
    CHECK_EQ_INT(query_report_own_names(r), 0);
    free(names); /* the report holds its own copies now */
}

static void key_of(const char *s, buf_t *key)
{
    buf_init(key, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append_str(key, s), 0);
}

static void plan_of(const char *left, const char *from, query_report_plan_t *p)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_diff_params_t d = {0};
    d.left = (query_params_t){.query = left, .from = from, .until = "1700003600"};
    d.right = (query_params_t){
        .query = CPU "{service_name=\"a\",version=\"v2\"}", .from = from, .until = "1700003600"};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_report_plan(&d, NULL, NULL, &lim, 1700004000000LL, p, &em), 0);
}

static void test_key(void)
{
    const char *v1 = CPU "{service_name=\"a\",version=\"v1\"}";
    static query_report_plan_t a, b;
    buf_t ka, kb;
    buf_init(&ka, BUF_UNLIMITED);
    buf_init(&kb, BUF_UNLIMITED);
    char ia[QUERY_REPORT_ID_LEN + 1], ib[QUERY_REPORT_ID_LEN + 1];
    plan_of(v1, "1700000000", &a);
    CHECK_EQ_INT(query_report_key(&a, "t1", &ka, ia), 0);
    CHECK_EQ_INT(strlen(ia), QUERY_REPORT_ID_LEN);
    /* the same inputs, another limit and search: the same report */
    plan_of(v1, "1700000000", &b);
    b.limit = 7;
    b.search = "x";
    CHECK_EQ_INT(query_report_key(&b, "t1", &kb, ib), 0);
    CHECK_EQ_STR(ia, ib);
    CHECK(ka.len == kb.len && memcmp(ka.data, kb.data, ka.len) == 0);
    /* another tenant */
    CHECK_EQ_INT(query_report_key(&b, "t2", &kb, ib), 0);
    CHECK(strcmp(ia, ib) != 0);
    /* another left query */
    plan_of(CPU "{service_name=\"a\",version=\"v3\"}", "1700000000", &b);
    CHECK_EQ_INT(query_report_key(&b, "t1", &kb, ib), 0);
    CHECK(strcmp(ia, ib) != 0);
    /* another range (a window later) */
    plan_of(v1, "1700000010", &b);
    CHECK_EQ_INT(query_report_key(&b, "t1", &kb, ib), 0);
    CHECK(strcmp(ia, ib) != 0);
    /* another bucket split of the same range */
    plan_of(v1, "1700000000", &b);
    b.nbuckets[1] = 29;
    CHECK_EQ_INT(query_report_key(&b, "t1", &kb, ib), 0);
    CHECK(strcmp(ia, ib) != 0);
    buf_free(&ka);
    buf_free(&kb);
}

/* The charge of a cache: a budget of limit bytes. */
typedef struct budget {
    size_t limit, used, most;
    int refused;
} budget_t;

static int take(void *ctx, size_t n)
{
    budget_t *b = ctx;
    if (b->used + n > b->limit) {
        b->refused++;
        return 1;
    }
    b->used += n;
    if (b->used > b->most) b->most = b->used;
    return 0;
}

static void give(void *ctx, size_t n)
{
    budget_t *b = ctx;
    CHECK(n <= b->used);
    b->used -= n;
}

/* bytes one entry of key k and report r is charged */
static size_t entry_bytes(const query_report_t *r, const buf_t *k)
{
    query_report_cache_t *c = query_report_cache_new(SIZE_MAX, NULL);
    query_report_t copy;
    make_report(&copy, r->nrows, "f", 0);
    CHECK_EQ_INT(query_report_cache_put(c, k, &copy, CPU, (int64_t[]){60, 60}, 0), 1);
    query_report_cache_stats_t st;
    query_report_cache_stats(c, &st);
    query_report_cache_free(c);
    return st.bytes;
}

static void test_bounded(void)
{
    buf_t k[4];
    const char *names[] = {"key-a", "key-b", "key-c", "key-d"};
    for (int i = 0; i < 4; i++)
        key_of(names[i], &k[i]);
    query_report_t r;
    make_report(&r, 100, "f", 0);
    size_t one = entry_bytes(&r, &k[0]);
    CHECK(one > 100 * sizeof(query_report_row_t));
    query_report_free(&r);
    budget_t bud = {.limit = SIZE_MAX};
    query_report_charge_t charge = {take, give, &bud};
    /* room for two entries, not three */
    query_report_cache_t *c = query_report_cache_new(2 * one + one / 2, &charge);
    int64_t sec[2] = {60, 60};
    for (int i = 0; i < 3; i++) {
        make_report(&r, 100, "f", 0);
        CHECK_EQ_INT(query_report_cache_put(c, &k[i], &r, CPU, sec, 0), 1);
        CHECK(r.rows == NULL); /* moved into the cache */
        query_report_cache_stats_t st;
        query_report_cache_stats(c, &st);
        CHECK(st.bytes <= 2 * one + one / 2);
        CHECK_EQ_INT(st.bytes, bud.used);
        if (i == 1) { /* a used: b is now the least recently used */
            const query_report_cached_t *e = query_report_cache_get(c, &k[0]);
            CHECK(e != NULL);
            query_report_cache_release(c, e);
        }
    }
    /* c evicted b, the least recently used */
    const query_report_cached_t *ea = query_report_cache_get(c, &k[0]);
    const query_report_cached_t *eb = query_report_cache_get(c, &k[1]);
    const query_report_cached_t *ec = query_report_cache_get(c, &k[2]);
    CHECK(ea != NULL && eb == NULL && ec != NULL);
    /* a key never put (an id that names nothing here) misses */
    CHECK(query_report_cache_get(c, &k[3]) == NULL);
    /* evicted while read: stays readable until released, then freed */
    make_report(&r, 100, "g", 1);
    CHECK_EQ_INT(query_report_cache_put(c, &k[3], &r, CPU, sec, 0), 1);
    make_report(&r, 100, "h", 2);
    CHECK_EQ_INT(query_report_cache_put(c, &k[1], &r, CPU, sec, 0), 1);
    CHECK(query_report_cache_get(c, &k[0]) == NULL); /* both a and c evicted */
    CHECK(query_report_cache_get(c, &k[2]) == NULL);
    query_limits_t lim;
    query_limits_default(&lim);
    query_result_t out;
    query_result_init(&out);
    errmsg_t em = {{0}};
    size_t before = bud.used;
    bud.most = 0;
    size_t charged;
    CHECK_EQ_INT(query_report_cached_encode(ea, 5, "f9", "id", &lim, &charge, &charged, &out, &em),
                 0);
    CHECK(strstr((const char *)out.body.data, "\"matchCount\":11") != NULL); /* f9, f90..f99 */
    /* the answer was charged as it grew, and stays taken until it is sent */
    CHECK_EQ_INT(charged, out.body.cap);
    CHECK_EQ_INT(bud.used, before + charged);
    give(&bud, charged);
    CHECK(bud.most >= before + out.body.cap);
    CHECK(bud.used > 2 * one); /* the evicted ones still held by their readers */
    query_report_cache_release(c, ea);
    query_report_cache_release(c, ec);
    query_report_cache_stats_t st;
    query_report_cache_stats(c, &st);
    CHECK_EQ_INT(st.entries, 2);
    CHECK_EQ_INT(bud.used, st.bytes);
    CHECK_EQ_INT(st.evictions, 3);
    /* the same key again replaces its entry */
    make_report(&r, 100, "i", 3);
    CHECK_EQ_INT(query_report_cache_put(c, &k[1], &r, CPU, sec, 0), 1);
    query_report_cache_stats(c, &st);
    CHECK_EQ_INT(st.entries, 2);
    CHECK_EQ_INT(st.evictions, 3); /* a replacement is no eviction */
    /* larger than the whole cache: not kept, left to the caller */
    make_report(&r, 300, "j", 0);
    CHECK_EQ_INT(query_report_cache_put(c, &k[0], &r, CPU, sec, 0), 0);
    CHECK(r.rows != NULL);
    query_report_free(&r);
    query_report_cache_free(c);
    CHECK_EQ_INT(bud.used, 0); /* every byte given back */
    query_result_free(&out);
    /* 0: keeps nothing */
    c = query_report_cache_new(0, &charge);
    make_report(&r, 1, "f", 0);
    CHECK_EQ_INT(query_report_cache_put(c, &k[0], &r, CPU, sec, 0), 0);
    CHECK(query_report_cache_get(c, &k[0]) == NULL);
    query_report_free(&r);
    query_report_cache_free(c);
    CHECK_EQ_INT(bud.used, 0);
    for (int i = 0; i < 4; i++)
        buf_free(&k[i]);
}

/* The budget refuses: the cache evicts its own entries first, and keeps
 * nothing when even that is not enough. */
static void test_charge(void)
{
    buf_t k[3];
    key_of("a", &k[0]);
    key_of("b", &k[1]);
    key_of("c", &k[2]);
    query_report_t r;
    make_report(&r, 50, "f", 0);
    size_t one = entry_bytes(&r, &k[0]);
    query_report_free(&r);
    budget_t bud = {.limit = 2 * one + one / 2};
    query_report_charge_t charge = {take, give, &bud};
    query_report_cache_t *c = query_report_cache_new(100 * one, &charge);
    int64_t sec[2] = {60, 60};
    for (int i = 0; i < 3; i++) {
        make_report(&r, 50, "f", 0);
        CHECK_EQ_INT(query_report_cache_put(c, &k[i], &r, CPU, sec, 0), 1);
    }
    CHECK(bud.refused > 0);
    CHECK(query_report_cache_get(c, &k[0]) == NULL); /* gave way to c */
    bud.used += bud.limit;                           /* queries took all of it */
    make_report(&r, 50, "f", 0);
    CHECK_EQ_INT(query_report_cache_put(c, &k[0], &r, CPU, sec, 0), 0);
    CHECK(r.rows != NULL);
    query_report_free(&r);
    query_report_cache_stats_t st;
    query_report_cache_stats(c, &st);
    CHECK_EQ_INT(st.entries, 0); /* everything given back to the queries */
    bud.used -= bud.limit;
    CHECK_EQ_INT(bud.used, 0);
    query_report_cache_free(c);
    for (int i = 0; i < 3; i++)
        buf_free(&k[i]);
}

/* A cached report answers with the very bytes of the report it keeps. */
static void test_same_answer(void)
{
    const char *searches[] = {NULL, "", "f1", "F2", "nothing", "file"};
    size_t limits[] = {1, 5, 1000};
    query_limits_t lim;
    query_limits_default(&lim);
    query_report_t r, mine;
    make_report(&r, 300, "f", 4);
    make_report(&mine, 300, "f", 4);
    int64_t sec[2] = {60, 120};
    buf_t k;
    key_of("k", &k);
    query_report_cache_t *c = query_report_cache_new(64 << 20, NULL);
    CHECK_EQ_INT(query_report_cache_put(c, &k, &r, CPU, sec, 0), 1);
    const query_report_cached_t *e = query_report_cache_get(c, &k);
    CHECK(e != NULL);
    for (size_t s = 0; s < sizeof searches / sizeof *searches; s++)
        for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
            buf_t want;
            buf_init(&want, BUF_UNLIMITED);
            CHECK_EQ_INT(
                query_report_encode(&mine, CPU, limits[l], searches[s], sec, "abc", NULL, &want),
                0);
            query_result_t got;
            query_result_init(&got);
            errmsg_t em = {{0}};
            CHECK_EQ_INT(query_report_cached_encode(e, limits[l], searches[s], "abc", &lim, NULL,
                                                    NULL, &got, &em),
                         0);
            CHECK(got.body.len == want.len && memcmp(got.body.data, want.data, want.len) == 0);
            CHECK(strstr((const char *)want.data, "\"reportId\":\"abc\"") != NULL);
            buf_free(&want);
            query_result_free(&got);
        }
    /* over max-output-bytes: refused with the reason, as the report itself */
    lim.max_output_bytes = 1024;
    query_result_t got;
    query_result_init(&got);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_report_cached_encode(e, 1000, NULL, "abc", &lim, NULL, NULL, &got, &em),
                 ERR_LIMIT);
    CHECK(em.text[0] != 0);
    query_result_free(&got);
    query_report_cache_release(c, e);
    query_report_free(&mine);
    query_report_cache_free(c);
    buf_free(&k);
}

int main(void)
{
    test_key();
    test_bounded();
    test_charge();
    test_same_answer();
    return check_exit();
}
