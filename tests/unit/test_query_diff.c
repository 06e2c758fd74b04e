/* render-diff (query/diff.c): two merged trees joined into the double
 * flamebearer, checked against sums computed from the stacks themselves;
 * joint truncation keeps every total; bad parameters are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "query/query_int.h"

#define NSYM 8
#define MAXD 6
#define NSTACK 60
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

typedef struct stack {
    int depth;
    int fn[MAXD];
    int64_t v;
} stack_t_;

static uint64_t ids[NSYM];
static const char *names[NSYM] = {"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"};

static void make_side(stack_t_ *st, int n, calltree_t *t, int skew)
{
    for (int i = 0; i < n; i++) {
        st[i].depth = 1 + (int)(check_rng() % MAXD);
        uint64_t path[MAXD];
        for (int d = 0; d < st[i].depth; d++) {
            st[i].fn[d] = (int)((check_rng() + (uint64_t)skew * (d == 1)) % NSYM);
            path[d] = ids[st[i].fn[d]];
        }
        st[i].v = 1 + (int64_t)(check_rng() % 1000);
        CHECK_EQ_INT(calltree_add_stack(t, path, (size_t)st[i].depth, st[i].v), 0);
    }
}

/* Sum of values of stacks with a frame `fn` at depth d (1-based level). */
static int64_t brute(const stack_t_ *st, int n, int level, int fn)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        if (st[i].depth >= level && st[i].fn[level - 1] == fn) s += st[i].v;
    return s;
}

typedef struct parsed {
    char names[64][16];
    int nnames;
    int64_t lv[MAXD + 2][4096];
    int nlv[MAXD + 2];
    int levels;
    long long left, right, num;
} parsed_t;

static int parse(const char *js, parsed_t *p)
{
    memset(p, 0, sizeof *p);
    const char *s = strstr(js, "\"names\":[");
    if (s == NULL) return -1;
    s += 9;
    while (*s == '"') {
        const char *e = strchr(s + 1, '"');
        snprintf(p->names[p->nnames++], 16, "%.*s", (int)(e - s - 1), s + 1);
        s = e + 1;
        if (*s == ',') s++;
    }
    s = strstr(js, "\"levels\":[");
    if (s == NULL) return -1;
    s += 10;
    while (*s == '[') {
        s++;
        while (*s != ']') {
            p->lv[p->levels][p->nlv[p->levels]++] = strtoll(s, (char **)&s, 10);
            if (*s == ',') s++;
        }
        s++;
        p->levels++;
        if (*s == ',') s++;
    }
    const char *l = strstr(js, "\"leftTicks\":"), *r = strstr(js, "\"rightTicks\":"),
               *n = strstr(js, "\"numTicks\":");
    if (!l || !r || !n) return -1;
    p->left = atoll(l + 12);
    p->right = atoll(r + 13);
    p->num = atoll(n + 11);
    return strstr(js, "\"format\":\"double\"") ? 0 : -1;
}

/* Sum of one side's totals of the nodes named fn at level d. */
static int64_t level_sum(const parsed_t *p, int d, const char *fn, int right)
{
    int64_t s = 0;
    for (int i = 0; i + 7 <= p->nlv[d]; i += 7)
        if (strcmp(p->names[p->lv[d][i + 6]], fn) == 0) s += p->lv[d][i + (right ? 4 : 1)];
    return s;
}

static void render(calltree_t *l, calltree_t *r, symtab_t *syms, const char *max_nodes,
                   query_result_t *out)
{
    buf_t lb, rb;
    buf_init(&lb, BUF_UNLIMITED);
    buf_init(&rb, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_tree(l, syms, &lb), 0);
    CHECK_EQ_INT(query_encode_tree(r, syms, &rb), 0);
    query_diff_params_t d = {.left = {.query = CPU "{service_name=\"a\"}"},
                             .right = {.query = CPU "{service_name=\"a\"}"},
                             .max_nodes = max_nodes};
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
    int rc = query_diff_render(&d, &lim, lb.data, lb.len, rb.data, rb.len, NULL, out, &em);
    if (rc != 0) fprintf(stderr, "diff: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    buf_append_byte(&out->body, 0);
    buf_free(&lb);
    buf_free(&rb);
}

static void test_exact_union(void)
{
    symtab_t *syms = symtab_new();
    for (int i = 0; i < NSYM; i++)
        symtab_intern(syms, names[i], 2, "x.go", 4, &ids[i]);
    stack_t_ ls[NSTACK], rs[NSTACK];
    calltree_t *l = calltree_new(0), *r = calltree_new(0);
    make_side(ls, NSTACK, l, 0);
    make_side(rs, NSTACK / 2, r, 3); /* different shapes and sizes */
    query_result_t out;
    query_result_init(&out);
    render(l, r, syms, "0", &out);
    parsed_t *p = malloc(sizeof *p);
    CHECK_EQ_INT(parse((const char *)out.body.data, p), 0);
    CHECK_EQ_INT(p->left, calltree_root_total(l));
    CHECK_EQ_INT(p->right, calltree_root_total(r));
    CHECK_EQ_INT(p->num, p->left + p->right);
    CHECK_EQ_INT(p->lv[0][1], p->left); /* the root carries both totals */
    CHECK_EQ_INT(p->lv[0][4], p->right);
    for (int d = 1; d < p->levels && d <= MAXD; d++)
        for (int f = 0; f < NSYM; f++) {
            CHECK_EQ_INT(level_sum(p, d, names[f], 0), brute(ls, NSTACK, d, f));
            CHECK_EQ_INT(level_sum(p, d, names[f], 1), brute(rs, NSTACK / 2, d, f));
        }
    query_result_free(&out);

    /* joint truncation: fewer nodes, every level still sums to both totals */
    query_result_init(&out);
    render(l, r, syms, "6", &out);
    CHECK_EQ_INT(parse((const char *)out.body.data, p), 0);
    CHECK_EQ_INT(p->left, calltree_root_total(l));
    CHECK_EQ_INT(p->right, calltree_root_total(r));
    int nodes = 0;
    for (int d = 0; d < p->levels; d++)
        nodes += p->nlv[d] / 7;
    CHECK(nodes <= 6);
    int64_t lsum = 0, rsum = 0;
    for (int i = 0; i + 7 <= p->nlv[1]; i += 7) {
        lsum += p->lv[1][i + 1];
        rsum += p->lv[1][i + 4];
    }
    CHECK_EQ_INT(lsum, p->left - p->lv[0][2]);
    CHECK_EQ_INT(rsum, p->right - p->lv[0][5]);
    free(p);
    query_result_free(&out);
    calltree_free(l);
    calltree_free(r);
    symtab_free(syms);
}

static void test_refusals(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_diff_params_t d = {.left = {.query = CPU "{}"},
                             .right = {.query = "memory:alloc_space:bytes:space:bytes{}"}};
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "same profile type") != NULL);
    d.right.query = NULL;
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "rightQuery") != NULL);
    d.right.query = CPU "{}";
    d.format = "folded";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    d.format = NULL;
    d.max_nodes = "1";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    d.max_nodes = NULL;
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
    /* a damaged side is refused, not read */
    query_result_t out;
    query_result_init(&out);
    uint8_t junk[] = {'F', 'D', 'T', '1', 0x7f, 1, 2};
    CHECK_EQ_INT(query_diff_render(&d, &lim, junk, sizeof junk, junk, sizeof junk, NULL, &out, &em),
                 ERR_CORRUPT);
    query_result_free(&out);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 12345;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed * 2654435761u + 88172645463325252ull;
    test_exact_union();
    test_refusals();
    return check_exit();
}
