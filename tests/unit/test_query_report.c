/* test_query_report.c — the regression report: Student's t and Welch's test
 * against closed forms and independently computed values; generated bucket
 * trees in both directions (two samples of the same behaviour flag nothing
 * in at least 99% of runs; a function whose share moves from 30% to 60% is
 * ranked first and flagged while a steady one is not); whole-range values
 * equal to those of the merged tree; the bucket plan and the encoding.
 * Seeds are fixed so the rates are reproducible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/hash.h"
#include "common/symtab.h"
#include "query/query.h"
#include "tests/unit/check.h"
#include "tests/unit/test_budget.h"
#include "tests/unit/test_share_body.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define NFN 50
#define MAXB 30

static int close_to(double a, double b, double tol)
{
    return fabs(a - b) <= tol;
}

static void test_student_t(void)
{
    /* df 1 (Cauchy) and df 2 have closed forms */
    for (double t = 0.0; t < 20.0; t += 0.37) {
        CHECK(close_to(query_student_t_p2(t, 1.0), 1.0 - 2.0 / M_PI * atan(t), 1e-12));
        CHECK(close_to(query_student_t_p2(-t, 2.0), 1.0 - t / sqrt(t * t + 2.0), 1e-12));
    }
    /* numerically integrated densities (Simpson, 2e5 steps) */
    CHECK(close_to(query_student_t_p2(2.0, 10.0), 0.07338803477, 1e-9));
    CHECK(close_to(query_student_t_p2(12.7062047, 1.0), 0.05, 1e-8));
    CHECK(close_to(query_student_t_p2(1.959963985, 1e8), 0.05, 1e-6)); /* the normal limit */
    CHECK(query_student_t_p2(0.0, 7.0) == 1.0);
    CHECK(query_student_t_p2(INFINITY, 7.0) == 0.0);
    CHECK(query_student_t_p2(40.0, 30.0) < 1e-20);
    for (double x = 0.0; x <= 1.0; x += 0.05) {
        CHECK(close_to(query_incbeta(x, 1.0, 1.0), x, 1e-12));
        CHECK(close_to(query_incbeta(x, 3.5, 1.0), pow(x, 3.5), 1e-12));
        CHECK(close_to(query_incbeta(x, 1.0, 2.5), 1.0 - pow(1.0 - x, 2.5), 1e-12));
    }
}

static void test_welch(void)
{
    const double a[] = {1, 2, 3, 4, 5}, b[] = {2, 4, 6, 8, 10};
    double t, df, p;
    query_welch_t(a, 5, b, 5, &t, &df, &p);
    CHECK(close_to(t, 3.0 / sqrt(2.5), 1e-12));
    CHECK(close_to(df, 6.25 / 1.0625, 1e-12));
    CHECK(close_to(p, 0.10753119493, 1e-8));
    query_welch_t(b, 5, a, 5, &t, &df, &p);
    CHECK(close_to(t, -3.0 / sqrt(2.5), 1e-12));
    const double c[] = {0.5, 0.5, 0.5}, d[] = {0.7, 0.7, 0.7};
    query_welch_t(c, 3, c, 3, &t, &df, &p);
    CHECK(p == 1.0);
    query_welch_t(c, 3, d, 3, &t, &df, &p);
    CHECK(p == 0.0);
}

/* ---- generated buckets ---- */

static uint64_t rng;
static double unif(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static char fn_name[NFN + 8][16];
static uint64_t sym_of(int f)
{
    return hash_symbol(fn_name[f], strlen(fn_name[f]), "", 0);
}

static symtab_t *make_syms(void)
{
    symtab_t *s = symtab_new();
    CHECK(s != NULL);
    for (int f = 0; f < NFN + 8; f++) {
        snprintf(fn_name[f], sizeof fn_name[f], "fn%d", f);
        CHECK_EQ_INT(symtab_put(s, sym_of(f), fn_name[f], strlen(fn_name[f]), "", 0), 0);
    }
    return s;
}

/* Stack of leaf f: main -> group (f % 5) -> f; main is fn NFN, groups NFN+1... */
static void add_leaf(calltree_t *t, int f, int64_t v)
{
    uint64_t st[3] = {sym_of(NFN), sym_of(NFN + 1 + f % 5), sym_of(f)};
    CHECK_EQ_INT(calltree_add_stack(t, st, 3, v), 0);
}

/* One bucket: n samples drawn from weights w[0..nfn) jittered by +-jitter
 * (each bucket's behaviour varies a little around the side's), each sample
 * worth 10 ms. */
static calltree_t *bucket(const double *w, int nfn, int n, double jitter)
{
    double j[NFN], sum = 0;
    for (int f = 0; f < nfn; f++)
        sum += j[f] = w[f] * (1.0 + jitter * (2.0 * unif() - 1.0));
    int64_t cnt[NFN] = {0};
    for (int i = 0; i < n; i++) {
        double u = unif() * sum;
        int f = 0;
        while (f < nfn - 1 && (u -= j[f]) > 0)
            f++;
        cnt[f]++;
    }
    calltree_t *t = calltree_new(0);
    CHECK(t != NULL);
    for (int f = 0; f < nfn; f++)
        if (cnt[f]) add_leaf(t, f, cnt[f] * 10000000);
    return t;
}

static void free_trees(calltree_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        calltree_free(t[i]);
}

static size_t report(calltree_t **l, size_t nl, calltree_t **r, size_t nr, const symtab_t *syms,
                     query_report_t *out)
{
    const calltree_t *const *trees[2] = {(const calltree_t *const *)l,
                                         (const calltree_t *const *)r};
    size_t n[2] = {nl, nr};
    CHECK_EQ_INT(query_report_compute(trees, n, syms, out), 0);
    size_t flagged = 0;
    for (size_t i = 0; i < out->nrows; i++)
        flagged += (size_t)out->rows[i].significant;
    return flagged;
}

/* Same behaviour on both sides: 20 buckets x 50 functions, many seeds. */
static void test_null(const symtab_t *syms, int runs)
{
    int flagged_runs = 0;
    for (int run = 0; run < runs; run++) {
        rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(run + 1);
        double w[NFN];
        for (int f = 0; f < NFN; f++)
            w[f] = 0.05 + unif() * unif() * 3.0;
        calltree_t *l[20], *r[20];
        for (int b = 0; b < 20; b++) {
            l[b] = bucket(w, NFN, 2000, 0.2);
            r[b] = bucket(w, NFN, 2000, 0.2);
        }
        query_report_t rep;
        size_t f = report(l, 20, r, 20, syms, &rep);
        CHECK_EQ_INT(rep.tested, NFN + 6); /* the leaves, main and 5 groups */
        flagged_runs += f > 0;
        query_report_free(&rep);
        free_trees(l, 20);
        free_trees(r, 20);
    }
    printf("same behaviour: %d of %d runs flagged something\n", flagged_runs, runs);
    CHECK(flagged_runs * 100 <= runs); /* nothing flagged in at least 99% of runs */
}

/* fn0 grows from 30% to 60%, fn1 stays at 10%, the rest shrinks. */
static void test_regression(const symtab_t *syms)
{
    for (int run = 0; run < 20; run++) {
        rng = 0x2545f4914f6cdd1dULL * (uint64_t)(run + 7);
        double wl[NFN], wr[NFN];
        for (int f = 2; f < NFN; f++)
            wl[f] = wr[f] = 0.5 + unif();
        double rest = 0;
        for (int f = 2; f < NFN; f++)
            rest += wl[f];
        wl[0] = rest * 0.3 / 0.6;
        wl[1] = rest * 0.1 / 0.6;
        wr[0] = rest * 0.6 / 0.3;
        wr[1] = rest * 0.1 / 0.3;
        calltree_t *l[12], *r[12];
        for (int b = 0; b < 12; b++) {
            l[b] = bucket(wl, NFN, 1000, 0.2);
            r[b] = bucket(wr, NFN, 1000, 0.2);
        }
        query_report_t rep;
        report(l, 12, r, 12, syms, &rep);
        CHECK(rep.nrows > 2);
        CHECK_EQ_STR(rep.rows[0].name, "fn0");
        CHECK(rep.rows[0].significant);
        CHECK(rep.rows[0].change > 25.0 && rep.rows[0].change < 35.0);
        for (size_t i = 0; i < rep.nrows; i++)
            if (strcmp(rep.rows[i].name, "fn1") == 0) CHECK(!rep.rows[i].significant);
        query_report_free(&rep);
        free_trees(l, 12);
        free_trees(r, 12);
    }
}

/* A search lists the rows whose name contains it (A-Z as a-z), in the
 * report's order, at most limit of them, and counts them all. */
static void check_search(const query_report_t *a)
{
    static const char *const searches[] = {"FN1", "fn2", "n", "fn4x", ""};
    int64_t sec[2] = {80, 80};
    for (size_t k = 0; k < sizeof searches / sizeof searches[0]; k++) {
        const char *want[2] = {NULL, NULL};
        size_t matched = 0;
        char needle[8];
        snprintf(needle, sizeof needle, "%s", searches[k]);
        for (char *c = needle; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        for (size_t i = 0; i < a->nrows; i++)
            if (strstr(a->rows[i].name, needle) != NULL && matched++ < 2)
                want[matched - 1] = a->rows[i].name;
        buf_t out;
        buf_init(&out, 1 << 20);
        CHECK_EQ_INT(query_report_encode(a, CPU, 2, searches[k], sec, NULL, NULL, &out), 0);
        CHECK_EQ_INT(buf_append_byte(&out, 0), 0);
        const char *s = (const char *)out.data;
        char count[64];
        snprintf(count, sizeof count, "\"functionCount\":%zu,\"matchCount\":%zu,", a->nrows,
                 matched);
        CHECK(strstr(s, count) != NULL || (searches[k][0] == 0 && strstr(s, "matchCount") == NULL));
        const char *at = s;
        for (size_t i = 0; i < 2; i++) {
            char name[32];
            snprintf(name, sizeof name, "{\"name\":\"%s\"", want[i] ? want[i] : "");
            const char *p = strstr(at, "{\"name\":");
            CHECK((p != NULL) == (want[i] != NULL));
            if (p != NULL && want[i] != NULL) CHECK(strncmp(p, name, strlen(name)) == 0);
            at = p != NULL ? p + 1 : at;
        }
        buf_free(&out);
    }
}

/* Whole-range values are the sums over the buckets: equal to a report of
 * one bucket holding their merge; too few buckets test nothing. */
static void test_exact(const symtab_t *syms)
{
    rng = 12345;
    double w[NFN];
    for (int f = 0; f < NFN; f++)
        w[f] = 0.1 + unif();
    calltree_t *l[8], *r[3], *ml = calltree_new(0), *mr = calltree_new(0);
    for (int b = 0; b < 8; b++) {
        l[b] = bucket(w, NFN, 500, 0.5);
        CHECK_EQ_INT(calltree_merge(ml, l[b]), 0);
    }
    for (int b = 0; b < 3; b++) {
        r[b] = bucket(w, NFN, 500, 0.5);
        CHECK_EQ_INT(calltree_merge(mr, r[b]), 0);
    }
    query_report_t a, m;
    report(l, 8, r, 3, syms, &a);
    report(&ml, 1, &mr, 1, syms, &m);
    CHECK_EQ_INT(a.ticks[0], calltree_root_total(ml));
    CHECK_EQ_INT(a.ticks[1], calltree_root_total(mr));
    CHECK_EQ_INT(a.nrows, m.nrows);
    CHECK_EQ_INT(a.buckets[0], 8);
    CHECK_EQ_INT(a.buckets[1], 3);
    CHECK_EQ_INT(a.tested, 0); /* 3 right buckets < QUERY_REPORT_MIN_BUCKETS */
    for (size_t i = 0; i < a.nrows; i++) {
        const query_report_row_t *x = &a.rows[i], *y = &m.rows[i];
        CHECK(x->sym == y->sym); /* same order: same changes */
        for (int s = 0; s < 2; s++) {
            CHECK_EQ_INT(x->self[s], y->self[s]);
            CHECK_EQ_INT(x->total[s], y->total[s]);
        }
        CHECK(!x->significant && x->p == 1.0);
        if (i > 0) CHECK(fabs(a.rows[i - 1].change) >= fabs(x->change));
    }
    /* main is on every stack: 100% on both sides, no change */
    buf_t out;
    buf_init(&out, 1 << 20);
    int64_t sec[2] = {80, 30};
    CHECK_EQ_INT(query_report_encode(&a, CPU, 3, NULL, sec, NULL, "\"partial\":true", &out), 0);
    CHECK_EQ_INT(buf_append_byte(&out, 0), 0);
    const char *s = (const char *)out.data;
    CHECK(strstr(s, "\"unit\":\"nanoseconds\"") != NULL);
    CHECK(strstr(s, "\"leftSeconds\":80,\"rightSeconds\":30") != NULL);
    CHECK(strstr(s, "\"leftTotalPerSecond\":") != NULL); /* the lengths differ */
    CHECK(strstr(s, "\"pValue\":null,\"significant\":false") != NULL);
    CHECK(strstr(s, "\"partial\":true}") != NULL);
    size_t rows = 0;
    for (const char *p = s; (p = strstr(p, "{\"name\":")) != NULL; p++)
        rows++;
    CHECK_EQ_INT(rows, 3);
    CHECK(strstr(s, "\"matchCount\"") == NULL); /* no search */
    buf_free(&out);
    check_search(&a);
    query_report_free(&a);
    query_report_free(&m);
    free_trees(l, 8);
    free_trees(r, 3);
    calltree_free(ml);
    calltree_free(mr);
}

static void test_plan(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_diff_params_t d = {0};
    d.left = (query_params_t){.query = CPU "{service_name=\"a\",version=\"v1\"}",
                              .from = "1700000000",
                              .until = "1700003600"};
    d.right = (query_params_t){.query = CPU "{service_name=\"a\",version=\"v2\"}",
                               .from = "1700003600",
                               .until = "1700003650"};
    query_report_plan_t p;
    errmsg_t em = {{0}};
    int64_t now_ms = 1700004000000LL;
    CHECK_EQ_INT(query_report_plan(&d, NULL, NULL, &lim, now_ms, &p, &em), 0);
    CHECK_EQ_INT(p.limit, QUERY_REPORT_DEFAULT_LIMIT);
    CHECK_EQ_STR(p.type, CPU);
    CHECK_EQ_INT(p.nbuckets[0], QUERY_REPORT_MAX_BUCKETS);
    CHECK_EQ_INT(p.nbuckets[1], 5); /* 5 windows of 10 s */
    for (int s = 0; s < 2; s++) {
        int64_t at = p.from_s[s];
        for (size_t b = 0; b < p.nbuckets[s]; b++) { /* contiguous, covering */
            const query_report_bucket_t *k = &p.bucket[s][b];
            CHECK_EQ_INT(strtoll(k->p.from, NULL, 10), at);
            at = strtoll(k->p.until, NULL, 10);
            CHECK(at > strtoll(k->p.from, NULL, 10));
            CHECK(k->p.merged_functions);
            CHECK_EQ_STR(k->p.query, s == 0 ? d.left.query : d.right.query);
        }
        CHECK_EQ_INT(at, p.until_s[s]);
    }
    CHECK_EQ_INT(p.until_s[0] - p.from_s[0], 3600);
    CHECK_EQ_INT(strtoll(p.bucket[0][1].p.from, NULL, 10), 1700000120);
    CHECK_EQ_INT(query_report_plan(&d, "0", NULL, &lim, now_ms, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(query_report_plan(&d, "1001", NULL, &lim, now_ms, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(query_report_plan(&d, "7", NULL, &lim, now_ms, &p, &em), 0);
    CHECK_EQ_INT(p.limit, 7);
    CHECK(p.search == NULL);
    /* search: at most QUERY_SEARCH_MAX bytes of UTF-8, as /api/top's */
    char longest[QUERY_SEARCH_MAX + 2];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    CHECK_EQ_INT(query_report_plan(&d, NULL, longest, &lim, now_ms, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "'search'") != NULL);
    longest[QUERY_SEARCH_MAX] = 0;
    CHECK_EQ_INT(query_report_plan(&d, NULL, longest, &lim, now_ms, &p, &em), 0);
    CHECK(p.search == longest);
    CHECK_EQ_INT(query_report_plan(&d, NULL, "ab\xc3", &lim, now_ms, &p, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "UTF-8") != NULL);
    d.right.query = "memory:alloc_space:bytes:space:bytes{}";
    CHECK_EQ_INT(query_report_plan(&d, NULL, NULL, &lim, now_ms, &p, &em), ERR_INVALID_ARGUMENT);
    d.right.query = NULL;
    CHECK_EQ_INT(query_report_plan(&d, NULL, NULL, &lim, now_ms, &p, &em), ERR_INVALID_ARGUMENT);
}

/* A bucket's body as its render answers it (merged_functions):
 * FNS functions of long names under main. */
#define FNS 1000
static void bucket_body(query_result_t *out)
{
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    CHECK(t != NULL && st != NULL);
    uint64_t stack[2];
    char name[300];
    CHECK_EQ_INT(symtab_intern(st, "main", 4, "m.c", 3, &stack[0]), 0);
    for (int i = 0; i < FNS; i++) {
        int n = snprintf(name, sizeof name, "fn%d_%0250d", i, i);
        CHECK_EQ_INT(symtab_intern(st, name, (size_t)n, "f.c", 3, &stack[1]), 0);
        CHECK_EQ_INT(calltree_add_stack(t, stack, 2, 1 + i % 7), 0);
    }
    share_body_of(t, st, out);
    calltree_free(t);
    symtab_free(st);
}

/* A report over two minutes of CPU (limit rows) planned with lim, each of
 * its buckets answered by the body of bucket_body; bucket is the caller's
 * to free with query_result_free. */
typedef struct planned_report {
    query_report_plan_t p;
    query_result_t bucket;
    const uint8_t *bodies[2][QUERY_REPORT_MAX_BUCKETS];
    size_t lens[2][QUERY_REPORT_MAX_BUCKETS];
    const uint8_t *const *body[2];
    const size_t *len[2];
} planned_report_t;

static void plan_report(const char *limit, const query_limits_t *lim, planned_report_t *r)
{
    query_diff_params_t d = {0};
    d.left = (query_params_t){.query = CPU "{}", .from = "1700000000", .until = "1700000060"};
    d.right = (query_params_t){.query = CPU "{}", .from = "1700000060", .until = "1700000120"};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_report_plan(&d, limit, NULL, lim, 1700004000000LL, &r->p, &em), 0);
    bucket_body(&r->bucket);
    for (int s = 0; s < 2; s++) {
        for (size_t b = 0; b < r->p.nbuckets[s]; b++) {
            r->bodies[s][b] = r->bucket.body.data;
            r->lens[s][b] = r->bucket.body.len;
        }
        r->body[s] = r->bodies[s];
        r->len[s] = r->lens[s];
    }
}

/* The report's answer (up to 1,000 functions of names up to
 * max-symbol-len) counts in query-memory-bytes beside the report while it
 * is written: the peak taken with limit 1000 passes the peak with limit 1
 * by about the answer's buffer. */
static size_t report_peak(const char *limit, size_t *answer_cap)
{
    query_limits_t lim;
    query_limits_default(&lim);
    planned_report_t r;
    plan_report(limit, &lim, &r);
    errmsg_t em = {{0}};
    budget_t b = {0};
    query_report_charge_t charge = {budget_take, budget_give, &b};
    query_result_t out;
    query_result_init(&out);
    size_t charged;
    CHECK_EQ_INT(query_report_run(&r.p, &lim, r.body, r.len, NULL, NULL, &charge, &charged, NULL,
                                  NULL, &out, &em),
                 0);
    /* the answer stays taken until it is sent, the rest is given back */
    CHECK_EQ_INT(charged, out.body.cap);
    CHECK_EQ_INT(b.used, charged);
    budget_give(&b, charged);
    *answer_cap = out.body.cap;
    query_result_free(&out);
    query_result_free(&r.bucket);
    return b.most;
}

static void test_answer_charged(void)
{
    size_t small_cap, cap;
    size_t small = report_peak("1", &small_cap);
    size_t most = report_peak("1000", &cap);
    fprintf(stderr, "report: peak %zu B (answer %zu B), with limit 1 %zu B\n", most, cap, small);
    CHECK(cap > 256u << 10);
    CHECK(most >= small + cap / 2);
}

/* A kept report stays charged from its computing into the report cache on
 * the same budget: query_report_run leaves its bytes taken
 * (keep_charged) and the cache takes them over, so at no point between the
 * two is the report held uncounted; a report the cache does not keep is
 * given back by its caller. */
static void test_kept_report_charged(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    planned_report_t r;
    plan_report("10", &lim, &r);
    errmsg_t em = {{0}};
    budget_t b = {0};
    query_report_charge_t charge = {budget_take, budget_give, &b};
    for (int room = 0; room < 2; room++) { /* a cache that keeps it, then one too small */
        query_report_cache_t *c = query_report_cache_new(room == 0 ? 64u << 20 : 64, &charge);
        CHECK(c != NULL);
        query_result_t out;
        query_result_init(&out);
        query_report_t keep = {0};
        size_t charged = 0, kept = 0;
        CHECK_EQ_INT(query_report_run(&r.p, &lim, r.body, r.len, NULL, NULL, &charge, &charged,
                                      &keep, &kept, &out, &em),
                     0);
        CHECK(keep.rows != NULL);
        /* the kept report is still counted once run returns */
        CHECK(kept >= query_report_bytes(&keep));
        CHECK_EQ_INT(b.used, charged + kept);
        buf_t key;
        buf_init(&key, BUF_UNLIMITED);
        CHECK_EQ_INT(buf_append_str(&key, "k"), 0);
        int put = query_report_cache_put(c, &key, &keep, CPU, (int64_t[]){60, 60}, kept);
        CHECK_EQ_INT(put, room == 0 ? 1 : 0);
        query_report_cache_stats_t st;
        query_report_cache_stats(c, &st);
        if (put == 1) CHECK_EQ_INT(b.used, charged + st.bytes); /* the cache's from here */
        if (put != 1) budget_give(&b, kept);                    /* not kept: the caller's */
        query_report_free(&keep);
        budget_give(&b, charged); /* the answer, sent */
        query_report_cache_free(c);
        CHECK_EQ_INT(b.used, 0); /* everything given back */
        buf_free(&key);
        query_result_free(&out);
    }
    query_result_free(&r.bucket);
}

/* argv[1]: runs of the same-behaviour test (default 200), to measure the
 * false-positive rate more finely. */
int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 200;
    test_student_t();
    test_welch();
    symtab_t *syms = make_syms();
    test_null(syms, runs > 0 ? runs : 200);
    test_regression(syms);
    test_exact(syms);
    test_plan();
    test_answer_charged();
    test_kept_report_charged();
    symtab_free(syms);
    return check_exit();
}
