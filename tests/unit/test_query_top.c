/* test_query_top.c — the top functions answer: random trees built from
 * random stacks with recursion, checked against per-function sums computed
 * by brute force over the stacks (self: stacks where the function is the
 * leaf; total: stacks where it appears, once per stack), the sort orders,
 * the limit, cores (CPU types only), the limit/by/search parameters, the
 * search's matching (A-Z as a-z only, names as the JSON shows them), and that
 * the gather answers from the tree before maxNodes truncation. Prints its
 * seed; argv[1] replays. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"
#include "common/json.h"
#include "query/query.h"
#include "query/query_int.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define MEM "memory:alloc_space:bytes:space:bytes"
#define NFN 7    /* function alphabet: few, so stacks recurse */
#define MAXFN 64 /* rows the parser keeps */

/* ---- the answer, parsed back ---- */
typedef struct row {
    char name[64], file[64];
    long long self, total;
    double self_pct, total_pct, self_cores, total_cores;
    int has_cores;
} row_t;

typedef struct answer {
    char unit[64];
    long long total, range_s, count, match; /* match: -1 when absent */
    double cores;
    int cores_null;
    size_t n;
    row_t rows[MAXFN];
} answer_t;

static double num(json_t *j)
{
    char s[64];
    CHECK_EQ_INT(json_scalar_to(j, s, sizeof s), 0);
    return strtod(s, NULL);
}

static void parse_row(json_t *j, row_t *r)
{
    char key[32];
    int rc = json_enter(j, '{');
    while (rc == 0 && json_next(j, &rc)) {
        rc = json_key(j, key, sizeof key);
        if (strcmp(key, "name") == 0)
            rc = json_string_to(j, r->name, sizeof r->name);
        else if (strcmp(key, "file") == 0)
            rc = json_string_to(j, r->file, sizeof r->file);
        else if (strcmp(key, "self") == 0)
            r->self = (long long)num(j);
        else if (strcmp(key, "total") == 0)
            r->total = (long long)num(j);
        else if (strcmp(key, "selfPercent") == 0)
            r->self_pct = num(j);
        else if (strcmp(key, "totalPercent") == 0)
            r->total_pct = num(j);
        else if (strcmp(key, "selfCores") == 0)
            r->self_cores = num(j), r->has_cores++;
        else if (strcmp(key, "totalCores") == 0)
            r->total_cores = num(j), r->has_cores++;
        else
            CHECK(0 && "unknown member");
    }
    CHECK_EQ_INT(rc, 0);
}

static void parse(const buf_t *b, answer_t *a)
{
    memset(a, 0, sizeof *a);
    a->match = -1;
    json_t j;
    json_init(&j, b->data, b->len, (json_limits_t){16, 1024});
    char key[32];
    int rc = json_enter(&j, '{');
    while (rc == 0 && json_next(&j, &rc)) {
        rc = json_key(&j, key, sizeof key);
        if (strcmp(key, "unit") == 0) {
            rc = json_string_to(&j, a->unit, sizeof a->unit);
        } else if (strcmp(key, "total") == 0) {
            a->total = (long long)num(&j);
        } else if (strcmp(key, "rangeSeconds") == 0) {
            a->range_s = (long long)num(&j);
        } else if (strcmp(key, "functionCount") == 0) {
            a->count = (long long)num(&j);
        } else if (strcmp(key, "matchCount") == 0) {
            a->match = (long long)num(&j);
        } else if (strcmp(key, "cores") == 0) {
            a->cores_null = json_peek(&j) == JSON_NULL;
            a->cores = a->cores_null ? (json_skip(&j), 0) : num(&j);
        } else if (strcmp(key, "functions") == 0) {
            rc = json_enter(&j, '[');
            while (rc == 0 && json_next(&j, &rc))
                if (a->n < MAXFN) parse_row(&j, &a->rows[a->n++]);
        } else {
            rc = json_skip(&j); /* e.g. partial members */
        }
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(json_finish(&j), 0);
}

/* ---- random stacks and the brute-force expectation ---- */
static const char *fn_name[NFN] = {"main", "run", "parse", "eval", "alloc", "\"quoted\"", "gc"};
static const char *fn_file[NFN] = {"main.c", "run.c", "", "eval.c", "", "q.c", ""};

typedef struct expect {
    long long self[NFN], total[NFN], sum;
    int seen[NFN];
} expect_t;

static uint64_t sym_of(int f)
{
    return hash_symbol(fn_name[f], strlen(fn_name[f]), fn_file[f], strlen(fn_file[f]));
}

static void random_tree(calltree_t *t, symtab_t *syms, expect_t *e, int nstacks)
{
    memset(e, 0, sizeof *e);
    for (int f = 0; f < NFN; f++)
        symtab_put(syms, sym_of(f), fn_name[f], strlen(fn_name[f]), fn_file[f], strlen(fn_file[f]));
    for (int s = 0; s < nstacks; s++) {
        int depth = 1 + (int)(check_rng() % 9), fns[16];
        uint64_t stack[16];
        long long v = (long long)(check_rng() % 1000000) * 1000;
        int in[NFN] = {0};
        for (int d = 0; d < depth; d++) {
            fns[d] = (int)(check_rng() % NFN);
            stack[d] = sym_of(fns[d]);
            in[fns[d]] = 1;
        }
        CHECK_EQ_INT(calltree_add_stack(t, stack, (size_t)depth, v), 0);
        e->self[fns[depth - 1]] += v;
        for (int f = 0; f < NFN; f++) {
            e->total[f] += in[f] ? v : 0;
            e->seen[f] |= in[f];
        }
        e->sum += v;
    }
}

static int fn_index(const row_t *r)
{
    for (int f = 0; f < NFN; f++)
        if (strcmp(r->name, fn_name[f]) == 0 && strcmp(r->file, fn_file[f]) == 0) return f;
    return -1;
}

static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (fabs(a) + fabs(b)) + 1e-12;
}

static void check_answer(const answer_t *a, const expect_t *e, int by_total, int64_t range_s,
                         int cpu)
{
    int nseen = 0;
    for (int f = 0; f < NFN; f++)
        nseen += e->seen[f];
    CHECK_EQ_INT(a->total, e->sum);
    CHECK_EQ_INT(a->range_s, range_s);
    CHECK_EQ_INT(a->count, nseen);
    CHECK_EQ_INT(a->n, nseen);
    CHECK_EQ_STR(a->unit, cpu ? "nanoseconds" : "bytes");
    CHECK(cpu ? !a->cores_null && close_to(a->cores, (double)e->sum / 1e9 / (double)range_s)
              : a->cores_null);
    long long self_sum = 0;
    for (size_t i = 0; i < a->n; i++) {
        const row_t *r = &a->rows[i];
        int f = fn_index(r);
        CHECK(f >= 0);
        if (f < 0) continue;
        CHECK_EQ_INT(r->self, e->self[f]);
        CHECK_EQ_INT(r->total, e->total[f]);
        CHECK(r->total <= e->sum); /* recursion never counted twice */
        CHECK(close_to(r->self_pct, 100.0 * (double)e->self[f] / (double)e->sum));
        CHECK(close_to(r->total_pct, 100.0 * (double)e->total[f] / (double)e->sum));
        CHECK_EQ_INT(r->has_cores, cpu ? 2 : 0);
        if (cpu) {
            CHECK(close_to(r->self_cores, (double)e->self[f] / 1e9 / (double)range_s));
            CHECK(close_to(r->total_cores, (double)e->total[f] / 1e9 / (double)range_s));
        }
        self_sum += r->self;
        if (i == 0) continue;
        const row_t *p = &a->rows[i - 1];
        long long k0 = by_total ? p->total : p->self, k1 = by_total ? r->total : r->self;
        CHECK(k0 > k1 ||
              (k0 == k1 && (by_total ? p->self : p->total) >= (by_total ? r->self : r->total)));
    }
    CHECK_EQ_INT(self_sum, e->sum); /* every stack has a leaf */
}

static void test_random(uint64_t seed)
{
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_top seed %llu\n", (unsigned long long)seed);
    for (int round = 0; round < 200; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *syms = symtab_new();
        expect_t e;
        random_tree(t, syms, &e, 1 + (int)(check_rng() % 300));
        int cpu = round % 2 == 0, by_total = (round / 2) % 2;
        int64_t range_s = 10 * (1 + (int64_t)(check_rng() % 360));
        query_top_opts_t o = {QUERY_TOP_MAX_LIMIT, by_total, range_s};
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        CHECK_EQ_INT(query_encode_top(t, syms, cpu ? CPU : MEM, &o, &b), 0);
        answer_t a;
        parse(&b, &a);
        check_answer(&a, &e, by_total, range_s, cpu);
        /* every limit keeps the first rows of the same order (those it
         * chose by a heap, ties among functions of equal values too) */
        for (size_t limit = 1; limit <= a.n + 1; limit++) {
            o.limit = limit;
            buf_t small;
            buf_init(&small, BUF_UNLIMITED);
            CHECK_EQ_INT(query_encode_top(t, syms, cpu ? CPU : MEM, &o, &small), 0);
            answer_t s;
            parse(&small, &s);
            CHECK_EQ_INT(s.count, a.count);
            CHECK_EQ_INT(s.n, a.n < limit ? a.n : limit);
            for (size_t i = 0; i < s.n; i++) {
                CHECK_EQ_STR(s.rows[i].name, a.rows[i].name);
                CHECK_EQ_INT(s.rows[i].self, a.rows[i].self);
                CHECK_EQ_INT(s.rows[i].total, a.rows[i].total);
            }
            buf_free(&small);
        }
        buf_free(&b);
        symtab_free(syms);
        calltree_free(t);
    }
}

/* A known tree: main;a;a;a (recursion) and cores worked by hand. */
static void test_known(void)
{
    calltree_t *t = calltree_new(0);
    uint64_t m = hash_symbol("main", 4, "", 0), x = hash_symbol("a", 1, "", 0), u = 12345;
    uint64_t s1[] = {m, x, x, x}, s2[] = {m}, s3[] = {m, u};
    calltree_add_stack(t, s1, 4, 3000000000LL); /* 3 CPU-seconds */
    calltree_add_stack(t, s2, 1, 1000000000LL);
    calltree_add_stack(t, s3, 2, 2000000000LL);
    symtab_t *syms = symtab_new();
    symtab_put(syms, m, "main", 4, "", 0);
    symtab_put(syms, x, "a", 1, "", 0);
    query_top_opts_t o = {10, 0, 60};
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_top(t, syms, CPU, &o, &b), 0);
    answer_t a;
    parse(&b, &a);
    CHECK_EQ_INT(a.total, 6000000000LL);
    CHECK(close_to(a.cores, 0.1)); /* 6 CPU-seconds over 60 s */
    CHECK_EQ_INT(a.n, 3);
    CHECK_EQ_STR(a.rows[0].name, "a");
    CHECK_EQ_INT(a.rows[0].self, 3000000000LL);
    CHECK_EQ_INT(a.rows[0].total, 3000000000LL); /* not 9: one stack */
    CHECK(close_to(a.rows[0].total_cores, 0.05));
    CHECK(close_to(a.rows[0].self_pct, 50));
    CHECK_EQ_STR(a.rows[1].name, "unknown 0x0000000000003039"); /* no symbol: still a row */
    CHECK_EQ_STR(a.rows[2].name, "main");
    CHECK_EQ_INT(a.rows[2].total, 6000000000LL);
    CHECK(close_to(a.rows[2].total_pct, 100));
    buf_reset(&b);
    o.range_s = 0; /* from and until on the same 10 s window: no window, no division */
    CHECK_EQ_INT(query_encode_top(t, syms, CPU, &o, &b), 0);
    parse(&b, &a);
    CHECK(a.range_s == 0 && a.cores == 0 && !a.cores_null && a.rows[0].total_cores == 0);
    buf_reset(&b);
    calltree_t *empty = calltree_new(0);
    CHECK_EQ_INT(query_encode_top(empty, syms, "x:y:count:z:w", &o, &b), 0);
    parse(&b, &a);
    CHECK_EQ_INT(a.total, 0);
    CHECK_EQ_INT(a.n, 0);
    CHECK(a.cores_null);
    CHECK_EQ_STR(a.unit, "count");
    calltree_free(empty);
    buf_free(&b);
    symtab_free(syms);
    calltree_free(t);
}

/* The answer for search (limit 10), parsed into a. */
static void top_search(const calltree_t *t, const symtab_t *syms, const char *search, answer_t *a)
{
    query_top_opts_t o = {10, 0, 60, search};
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_top(t, syms, CPU, &o, &b), 0);
    parse(&b, a);
    buf_free(&b);
}

static int has_row(const answer_t *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->rows[i].name, name) == 0) return 1;
    return 0;
}

/* Names differing in case, a non-ASCII letter, an invalid UTF-8 byte (shown
 * as U+FFFD) and an unknown symbol: what each search finds. */
static void test_search(void)
{
    static const char *names[] = {"main",          "Parse",     "parse",   "xPARSEy",
                                  "\xc3\x84parse", "\xc3\xa4x", "bad\xff", "json"};
    enum { N = sizeof names / sizeof *names };
    calltree_t *t = calltree_new(0);
    symtab_t *syms = symtab_new();
    uint64_t sym[N + 1];
    for (int i = 0; i < N; i++) {
        sym[i] = hash_symbol(names[i], strlen(names[i]), "", 0);
        symtab_put(syms, sym[i], names[i], strlen(names[i]), "", 0);
    }
    sym[N] = 0xabc; /* no symbol: "unknown 0x0000000000000abc" */
    for (int i = 1; i <= N; i++) {
        uint64_t stack[2] = {sym[0], sym[i]};
        CHECK_EQ_INT(calltree_add_stack(t, stack, 2, 1000LL * i), 0);
    }
    answer_t a;
    top_search(t, syms, NULL, &a);
    CHECK_EQ_INT(a.count, N + 1);
    CHECK_EQ_INT(a.match, -1); /* no search, no matchCount */
    top_search(t, syms, "", &a);
    CHECK_EQ_INT(a.match, -1);
    CHECK_EQ_INT(a.n, N + 1);
    top_search(t, syms, "pArSe", &a);
    CHECK_EQ_INT(a.count, N + 1); /* every function still counted */
    CHECK_EQ_INT(a.match, 4);
    CHECK_EQ_INT(a.n, 4);
    CHECK(has_row(&a, "Parse") && has_row(&a, "parse") && has_row(&a, "xPARSEy"));
    CHECK(has_row(&a, "\xc3\x84parse"));
    CHECK_EQ_STR(a.rows[0].name, "\xc3\x84parse"); /* still by self */
    top_search(t, syms, "\xc3\xa4", &a);           /* only A-Z fold: a-umlaut is not A-umlaut */
    CHECK_EQ_INT(a.match, 1);
    CHECK_EQ_STR(a.rows[0].name, "\xc3\xa4x");
    top_search(t, syms, "d\xef\xbf\xbd", &a); /* the invalid byte, as the JSON shows it */
    CHECK_EQ_INT(a.match, 1);
    CHECK_EQ_STR(a.rows[0].name, "bad\xef\xbf\xbd");
    top_search(t, syms, "UNKNOWN 0x", &a);
    CHECK_EQ_INT(a.match, 1);
    top_search(t, syms, "main", &a);
    CHECK_EQ_INT(a.match, 1);
    top_search(t, syms, "parsex", &a);
    CHECK_EQ_INT(a.match, 0);
    CHECK_EQ_INT(a.n, 0);
    CHECK_EQ_INT(a.total, 1000LL * N * (N + 1) / 2); /* the total stays the whole */
    query_top_opts_t o = {2, 1, 60, "a"};            /* the limit cuts the rows, not the count */
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_top(t, syms, CPU, &o, &b), 0);
    parse(&b, &a);
    CHECK_EQ_INT(a.n, 2);
    CHECK_EQ_INT(a.match, 7); /* all but json */
    CHECK_EQ_STR(a.rows[0].name, "main");
    buf_free(&b);
    symtab_free(syms);
    calltree_free(t);
}

/* search is validated: too long or not UTF-8 is refused; empty is none. */
static void test_search_spec(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_spec_t s;
    errmsg_t em = {{0}};
    query_params_t p = {.query = CPU "{}", .format = "top"};
    char longest[QUERY_SEARCH_MAX + 2];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    p.search = longest;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 0, &s, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "'search'") != NULL && strstr(em.text, "longer") != NULL);
    longest[QUERY_SEARCH_MAX] = 0;
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 0, &s, &em), 0);
    CHECK_EQ_INT(strlen(s.top_search), QUERY_SEARCH_MAX);
    query_spec_free(&s);
    const char *bad[] = {"\xff", "ab\xc3", "\xed\xa0\x80" /* a surrogate */, "\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p.search = bad[i];
        CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 0, &s, &em),
                     ERR_INVALID_ARGUMENT);
        CHECK(strstr(em.text, "UTF-8") != NULL);
    }
    p.search = "";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 0, &s, &em), 0);
    CHECK(s.top_search == NULL);
    query_spec_free(&s);
}

/* limit and by are validated; the gather answers from the whole tree even
 * when maxNodes is given. */
static void test_spec_and_gather(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    int64_t now = 1700000000000LL;
    query_spec_t s;
    errmsg_t em = {{0}};
    query_params_t p = {.query = CPU "{}", .format = "top", .from = "now-1h", .until = "now"};
    const char *bad_limits[] = {"0", "-1", "x", "10001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_limits / sizeof *bad_limits; i++) {
        p.limit = bad_limits[i];
        CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now, &s, &em),
                     ERR_INVALID_ARGUMENT);
        CHECK(strstr(em.text, "'limit'") != NULL);
    }
    p.limit = NULL;
    p.by = "name";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now, &s, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "'by'") != NULL);
    p.by = "total";
    p.limit = "10000";
    p.max_nodes = "2";
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, now, &s, &em), 0);
    CHECK_EQ_INT(s.format, QUERY_FORMAT_TOP);
    CHECK_EQ_INT(s.top_limit, 10000);
    CHECK_EQ_INT(s.top_by_total, 1);

    check_rng_state = 42;
    calltree_t *t = calltree_new(0);
    symtab_t *syms = symtab_new();
    expect_t e;
    random_tree(t, syms, &e, 200);
    query_partial_t part = {.kind = QUERY_KIND_RENDER, .tree = t, .syms = syms, .nseries = 1};
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&s, &lim, &g), 0);
    CHECK_EQ_INT(query_gather_add(g, &part, &em), 0);
    query_result_t r;
    query_result_init(&r);
    CHECK_EQ_INT(query_gather_finish(g, "\"partial\":true", &r, &em), 0);
    CHECK_EQ_STR(r.content_type, "application/json");
    CHECK(strstr((const char *)r.body.data, "\"partial\":true}") != NULL);
    answer_t a;
    parse(&r.body, &a);
    check_answer(&a, &e, 1, s.plan.until_s - s.plan.from_s, 1);
    CHECK_EQ_INT(a.range_s, 3600);
    query_result_free(&r);
    query_gather_free(g);
    query_partial_free(&part);
    query_spec_free(&s);
}

/* A report bucket's functions (query_encode_functions) read back
 * (query_decode_functions): the sums query_fns_collect finds in the tree,
 * its total, the names; every shorter or damaged body is refused as
 * corrupt, never read past its end. */
static void test_functions_body(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *syms = symtab_new();
        expect_t e;
        random_tree(t, syms, &e, 1 + (int)(check_rng() % 200));
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        CHECK_EQ_INT(query_encode_functions(t, NULL, 0, 0, syms, &b), 0);
        symtab_t *got_syms = symtab_new();
        query_fn_t *fns;
        size_t n;
        int64_t total;
        CHECK_EQ_INT(query_decode_functions(b.data, b.len, got_syms, NULL, &fns, &n, &total), 0);
        CHECK_EQ_INT(total, e.sum);
        int seen = 0;
        for (int f = 0; f < NFN; f++)
            seen += e.seen[f];
        CHECK_EQ_INT(n, seen);
        for (size_t i = 0; i < n; i++) {
            int f = -1;
            for (int k = 0; k < NFN; k++)
                if (sym_of(k) == fns[i].sym) f = k;
            CHECK(f >= 0);
            if (f < 0) continue;
            CHECK_EQ_INT(fns[i].self, e.self[f]);
            CHECK_EQ_INT(fns[i].total, e.total[f]);
            const char *name, *file;
            CHECK(symtab_get(got_syms, fns[i].sym, &name, &file));
            CHECK_EQ_STR(name, fn_name[f]);
            CHECK_EQ_STR(file != NULL ? file : "", fn_file[f]);
        }
        free(fns);
        for (size_t cut = 0; cut < b.len; cut++) {
            CHECK_EQ_INT(query_decode_functions(b.data, cut, NULL, NULL, &fns, &n, &total),
                         ERR_CORRUPT);
            CHECK(fns == NULL);
        }
        b.data[0] ^= 0x40; /* another version */
        CHECK_EQ_INT(query_decode_functions(b.data, b.len, NULL, NULL, &fns, &n, &total),
                     ERR_CORRUPT);
        buf_free(&b);
        symtab_free(got_syms);
        symtab_free(syms);
        calltree_free(t);
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    test_known();
    test_spec_and_gather();
    test_search();
    test_search_spec();
    test_random(seed);
    test_functions_body();
    return check_exit();
}
