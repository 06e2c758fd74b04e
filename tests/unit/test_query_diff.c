/* render-diff (query/diff.c): two merged trees joined into the double
 * flamebearer, checked against sums computed from the stacks themselves;
 * joint truncation keeps every total; bad parameters are refused.
 * format=folded: every line equals the per-stack sums of each side;
 * format=svg: read back with tests/unit/test_svg_read.h, one frame per union
 * node, widths from the right side, tooltips with both sides, red where the
 * right share grew and blue where it shrank; format=speedscope: parsed
 * back with common/json.h, two profiles over one frames table whose stacks
 * and weights equal each side's per-stack sums. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/symtab.h"
#include "query/query_int.h"
#include "tests/unit/test_svg_read.h"

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

/* Both sides as their gathers hand them over (query_encode_tree). */
static void encode_sides(calltree_t *l, calltree_t *r, symtab_t *syms, buf_t *lb, buf_t *rb)
{
    buf_init(lb, BUF_UNLIMITED);
    buf_init(rb, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_tree(l, syms, lb), 0);
    CHECK_EQ_INT(query_encode_tree(r, syms, rb), 0);
}

static void render_as(calltree_t *l, calltree_t *r, symtab_t *syms, const char *max_nodes,
                      const char *format, query_result_t *out)
{
    buf_t lb, rb;
    encode_sides(l, r, syms, &lb, &rb);
    query_diff_params_t d = {.left = {.query = CPU "{service_name=\"a\"}"},
                             .right = {.query = CPU "{service_name=\"a\"}"},
                             .max_nodes = max_nodes,
                             .format = format};
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

static void render(calltree_t *l, calltree_t *r, symtab_t *syms, const char *max_nodes,
                   query_result_t *out)
{
    render_as(l, r, syms, max_nodes, NULL, out);
}

/* Two sides of generated stacks over the shared symbols: the left has NSTACK
 * stacks, the right NSTACK / 2 drawn with seed right_seed (another shape). */
typedef struct {
    symtab_t *syms;
    stack_t_ ls[NSTACK], rs[NSTACK];
    calltree_t *l, *r;
} sides_t;

static sides_t *sides_new(int right_seed)
{
    sides_t *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->syms = symtab_new();
    for (int i = 0; i < NSYM; i++)
        symtab_intern(s->syms, names[i], 2, "x.go", 4, &ids[i]);
    s->l = calltree_new(0);
    s->r = calltree_new(0);
    make_side(s->ls, NSTACK, s->l, 0);
    make_side(s->rs, NSTACK / 2, s->r, right_seed);
    return s;
}

static void sides_free(sides_t *s)
{
    calltree_free(s->l);
    calltree_free(s->r);
    symtab_free(s->syms);
    free(s);
}

static void test_exact_union(void)
{
    sides_t *sd = sides_new(3); /* different shapes and sizes */
    symtab_t *syms = sd->syms;
    calltree_t *l = sd->l, *r = sd->r;
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
            CHECK_EQ_INT(level_sum(p, d, names[f], 0), brute(sd->ls, NSTACK, d, f));
            CHECK_EQ_INT(level_sum(p, d, names[f], 1), brute(sd->rs, NSTACK / 2, d, f));
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
    sides_free(sd);
}

/* ---- svg and folded ---- */

/* Sums per path ("f1;f3"), computed from the stacks: self (whole stacks)
 * or total (every prefix), per side. */
typedef struct sums {
    strmap_t m;
    int64_t *v[2];
} sums_t;

static void sums_add(sums_t *s, const char *path, size_t n, int side, int64_t v)
{
    uint32_t i;
    size_t before = s->m.n;
    char *key = strndup(path, n); /* the map borrows its keys */
    CHECK_EQ_INT(strmap_intern(&s->m, key, n, &i), 0);
    if (s->m.n == before) free(key);
    if (s->m.n > before)
        for (int k = 0; k < 2; k++) {
            s->v[k] = realloc(s->v[k], s->m.n * sizeof *s->v[k]);
            s->v[k][i] = 0;
        }
    s->v[side][i] += v;
}

static void sums_of(sums_t *s, const stack_t_ *st, int n, int side, int prefixes)
{
    for (int i = 0; i < n; i++) {
        char path[MAXD * 3 + 1] = "";
        for (int d = 0; d < st[i].depth; d++) {
            if (d) strcat(path, ";");
            strcat(path, names[st[i].fn[d]]);
            if (prefixes || d == st[i].depth - 1) sums_add(s, path, strlen(path), side, st[i].v);
        }
    }
}

static void sums_free(sums_t *s)
{
    for (size_t i = 0; i < s->m.n; i++)
        free((char *)s->m.strs[i]);
    strmap_free(&s->m);
    free(s->v[0]);
    free(s->v[1]);
}

/* Every line `stack left right` is one union stack with exactly its two
 * sums, each stack once. */
static void check_folded(const char *text, const sums_t *self)
{
    size_t lines = 0;
    uint8_t *seen = calloc(self->m.n + 1, 1);
    for (const char *l = text; *l; lines++) {
        const char *e = strchr(l, '\n');
        CHECK(e != NULL);
        if (e == NULL) break;
        const char *sp2 = e, *sp1;
        while (sp2 > l && sp2[-1] != ' ')
            sp2--;
        for (sp1 = sp2 - 1; sp1 > l && sp1[-1] != ' ';)
            sp1--;
        uint32_t k;
        CHECK(strmap_find(&self->m, l, (size_t)(sp1 - 1 - l), &k));
        if (!strmap_find(&self->m, l, (size_t)(sp1 - 1 - l), &k)) break;
        CHECK_EQ_INT(strtoll(sp1, NULL, 10), self->v[0][k]);
        CHECK_EQ_INT(strtoll(sp2, NULL, 10), self->v[1][k]);
        CHECK(!seen[k]);
        seen[k] = 1;
        l = e + 1;
    }
    CHECK_EQ_INT(lines, self->m.n); /* every stack has a value >= 1 on a side */
    free(seen);
}

static void test_folded(void)
{
    sides_t *sd = sides_new(5);
    symtab_t *syms = sd->syms;
    calltree_t *l = sd->l, *r = sd->r;
    sums_t self = {0};
    strmap_init(&self.m);
    sums_of(&self, sd->ls, NSTACK, 0, 0);
    sums_of(&self, sd->rs, NSTACK / 2, 1, 0);
    query_result_t out;
    query_result_init(&out);
    render_as(l, r, syms, NULL, "folded", &out); /* untruncated by default */
    CHECK_EQ_STR(out.content_type, "text/plain; charset=utf-8");
    check_folded((const char *)out.body.data, &self);
    query_result_free(&out);
    /* an explicit maxNodes truncates jointly: the columns still sum to both totals */
    query_result_init(&out);
    render_as(l, r, syms, "5", "folded", &out);
    int64_t sum[2] = {0, 0};
    size_t lines = 0;
    for (const char *p = (const char *)out.body.data; *p; lines++) {
        const char *e = strchr(p, '\n'), *sp = e;
        while (sp[-1] != ' ')
            sp--;
        sum[1] += strtoll(sp, NULL, 10);
        for (sp--; sp[-1] != ' ';)
            sp--;
        sum[0] += strtoll(sp, NULL, 10);
        p = e + 1;
    }
    CHECK(lines <= 5 && lines > 0);
    CHECK_EQ_INT(sum[0], calltree_root_total(l));
    CHECK_EQ_INT(sum[1], calltree_root_total(r));
    query_result_free(&out);
    sums_free(&self);
    sides_free(sd);
}

/* One frame, knowing its path's totals on both sides. */
static void check_diff_frame(const xframe_t *f, int64_t lv, int64_t rv, int64_t lroot,
                             int64_t rroot, double max_change)
{
    char want[96];
    double lp = 100.0 * (double)lv / (double)lroot, rp = 100.0 * (double)rv / (double)rroot;
    snprintf(want, sizeof want, "\nleft: %lld nanoseconds", (long long)lv);
    CHECK(strstr(f->title, want) != NULL);
    snprintf(want, sizeof want, "%.2f%%\nright: %lld nanoseconds", lp, (long long)rv);
    CHECK(strstr(f->title, want) != NULL);
    snprintf(want, sizeof want, "%.2f%%\nchange: ", rp);
    CHECK(strstr(f->title, want) != NULL);
    /* widths are the right side's share of the drawing */
    long long w = (long long)((double)rv * 118000.0 / (double)rroot + 0.5);
    CHECK(f->w >= w - 2 && f->w <= w + 2);
    unsigned r, g, b;
    CHECK_EQ_INT(sscanf(f->fill, "#%2x%2x%2x", &r, &g, &b), 3);
    double ch = (double)rv / (double)rroot - (double)lv / (double)lroot;
    if (lv == 0) {
        CHECK_EQ_STR(f->fill, "#d040c0");
        CHECK(strstr(f->title, "(new: right only)") != NULL);
    } else if (ch > 0.01 * max_change) {
        CHECK(r > g && g == b); /* red: grew */
    } else if (ch < -0.01 * max_change) {
        CHECK(b > r && r == g); /* blue: shrank */
    }
    if (ch > 0) CHECK(r >= b);
    if (ch < 0) CHECK(b >= r);
    if (rv == 0) {
        CHECK_EQ_INT(f->w, 0);
        CHECK(strstr(f->title, "(gone: left only)") != NULL);
    }
}

static void check_diff_svg(const xdoc_t *d, const sums_t *tot, int64_t lroot, int64_t rroot)
{
    double max_change = 0;
    for (size_t k = 0; k < tot->m.n; k++) {
        double ch = (double)tot->v[1][k] / (double)rroot - (double)tot->v[0][k] / (double)lroot;
        if ((ch < 0 ? -ch : ch) > max_change) max_change = ch < 0 ? -ch : ch;
    }
    CHECK_EQ_INT(d->n, tot->m.n + 1); /* one frame per union node */
    CHECK(d->n > 0 && strncmp(d->f[0].title, "total\n", 6) == 0);
    CHECK_EQ_INT(d->f[0].w, 118000);
    size_t stack[MAXD + 2], sp = 0, plen[MAXD + 2];
    char path[256];
    for (size_t i = 0; i < d->n; i++) {
        const xframe_t *f = &d->f[i];
        while (sp > 0 && d->f[stack[sp - 1]].y >= f->y)
            sp--;
        if (i > 0) { /* the parent is the last frame one row above */
            CHECK(sp > 0 && sp <= MAXD);
            if (sp == 0 || sp > MAXD) return;
            size_t at = plen[sp - 1];
            if (sp > 1) path[at++] = ';';
            memcpy(path + at, f->title, 2); /* "fN (x.go)\n..." */
            plen[sp] = at + 2;
            uint32_t k;
            CHECK(strmap_find(&tot->m, path, plen[sp], &k));
            if (strmap_find(&tot->m, path, plen[sp], &k))
                check_diff_frame(f, tot->v[0][k], tot->v[1][k], lroot, rroot, max_change);
        } else
            plen[0] = 0;
        stack[sp++] = i;
    }
}

static void test_svg(void)
{
    sides_t *sd = sides_new(2);
    symtab_t *syms = sd->syms;
    calltree_t *l = sd->l, *r = sd->r;
    sums_t tot = {0};
    strmap_init(&tot.m);
    sums_of(&tot, sd->ls, NSTACK, 0, 1);
    sums_of(&tot, sd->rs, NSTACK / 2, 1, 1);
    query_result_t out;
    query_result_init(&out);
    render_as(l, r, syms, NULL, "svg", &out); /* fewer nodes than the default maxNodes */
    CHECK_EQ_STR(out.content_type, "image/svg+xml");
    xdoc_t d = {0};
    read_svg((const char *)out.body.data, &d);
    CHECK_EQ_INT(d.width, 1200);
    check_diff_svg(&d, &tot, calltree_root_total(l), calltree_root_total(r));
    xdoc_free(&d);
    query_result_free(&out);
    /* maxNodes truncates jointly, as the json diff does */
    query_result_init(&out);
    render_as(l, r, syms, "6", "svg", &out);
    memset(&d, 0, sizeof d);
    read_svg((const char *)out.body.data, &d);
    CHECK(d.n <= 6 && d.n >= 2);
    char want[96];
    snprintf(want, sizeof want, "total\nleft: %lld nanoseconds", (long long)calltree_root_total(l));
    CHECK(d.n > 0 && strncmp(d.f[0].title, want, strlen(want)) == 0);
    xdoc_free(&d);
    query_result_free(&out);
    sums_free(&tot);
    sides_free(sd);
}

/* The diff of l and r in format as a stream (stream-bytes min_bytes; a
 * partial answer), drained in random slices of 1 .. 300,000 bytes into
 * got; 0 when it was written whole (into got too). */
static int render_streamed(calltree_t *l, calltree_t *r, symtab_t *syms, const char *max_nodes,
                           const char *format, size_t min_bytes, buf_t *got)
{
    buf_t lb, rb;
    buf_init(&lb, BUF_UNLIMITED);
    buf_init(&rb, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_tree(l, syms, &lb), 0);
    CHECK_EQ_INT(query_encode_tree(r, syms, &rb), 0);
    query_diff_params_t d = {.left = {.query = CPU "{service_name=\"a\"}"},
                             .right = {.query = CPU "{service_name=\"a\"}"},
                             .max_nodes = max_nodes,
                             .format = format,
                             .stream = min_bytes > 0};
    query_limits_t lim;
    query_limits_default(&lim);
    lim.stream_min_bytes = min_bytes;
    errmsg_t em = {{0}};
    query_result_t out;
    query_result_init(&out);
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
    CHECK_EQ_INT(query_diff_render(&d, &lim, lb.data, lb.len, rb.data, rb.len, "\"partial\":true",
                                   &out, &em),
                 0);
    int streamed = out.stream != NULL;
    buf_append(got, out.body.data, out.body.len);
    int done = !streamed;
    for (size_t i = 0; i < 10000000 && !done; i++) {
        size_t before = got->len, want = 1 + check_rng() % (check_rng() % 2 ? 300000 : 2000);
        CHECK_EQ_INT(query_stream_next(out.stream, got, want, &done), 0);
        CHECK(done || got->len - before >= want); /* at least what was asked */
    }
    CHECK(done);
    query_result_free(&out);
    buf_free(&lb);
    buf_free(&rb);
    return streamed;
}

/* A streamed SVG diff (its colours, both sides' tooltips, the partial
 * note) or double flamebearer (both sides' levels, the partial member) is
 * the whole answer's bytes, in any slices, truncated or not; under
 * query-stream-bytes it is written whole. */
static void test_streams(void)
{
    for (int round = 0; round < 12; round++) {
        sides_t *sd = sides_new(2 + round / 2);
        const char *max_nodes = round % 4 < 2 ? "7" : NULL;
        const char *format = round % 2 ? "json" : "svg";
        const char *mark = round % 2 ? "\"format\":\"double\"" : "change: ";
        const char *partial = round % 2 ? "\"partial\":true}" : "(partial: ";
        buf_t whole, got;
        buf_init(&whole, BUF_UNLIMITED);
        buf_init(&got, BUF_UNLIMITED);
        CHECK_EQ_INT(render_streamed(sd->l, sd->r, sd->syms, max_nodes, format, 0, &whole), 0);
        CHECK_EQ_INT(render_streamed(sd->l, sd->r, sd->syms, max_nodes, format, 1, &got), 1);
        CHECK_EQ_INT(buf_append_byte(&whole, 0), 0);
        CHECK_EQ_INT(buf_append_byte(&got, 0), 0);
        CHECK(whole.len > 400 && strstr((const char *)whole.data, partial) != NULL);
        CHECK(strstr((const char *)whole.data, mark) != NULL); /* a diff's */
        CHECK(got.len == whole.len && memcmp(got.data, whole.data, got.len) == 0);
        got.len = 0;
        whole.len--;
        CHECK_EQ_INT(render_streamed(sd->l, sd->r, sd->syms, max_nodes, format, 1 << 30, &got), 0);
        CHECK(got.len == whole.len && memcmp(got.data, whole.data, got.len) == 0);
        buf_free(&whole);
        buf_free(&got);
        sides_free(sd);
    }
}

/* By example: a grows nowhere (100% both), a;b grows from 50% to 75%, a;c
 * is gone, a;d is new. */
static void test_by_example(void)
{
    symtab_t *syms = symtab_new();
    uint64_t a, b, c, dd;
    symtab_intern(syms, "a", 1, "", 0, &a);
    symtab_intern(syms, "b", 1, "", 0, &b);
    symtab_intern(syms, "c", 1, "", 0, &c);
    symtab_intern(syms, "d", 1, "", 0, &dd);
    calltree_t *l = calltree_new(0), *r = calltree_new(0);
    uint64_t ab[] = {a, b}, ac[] = {a, c}, ad[] = {a, dd};
    calltree_add_stack(l, ab, 2, 10);
    calltree_add_stack(l, ac, 2, 10);
    calltree_add_stack(r, ab, 2, 30);
    calltree_add_stack(r, ad, 2, 10);
    query_result_t out;
    query_result_init(&out);
    render_as(l, r, syms, NULL, "folded", &out);
    CHECK_EQ_STR((const char *)out.body.data, "a;b 10 30\na;c 10 0\na;d 0 10\n");
    query_result_free(&out);
    query_result_init(&out);
    render_as(l, r, syms, NULL, "svg", &out);
    const char *svg = (const char *)out.body.data;
    CHECK(strstr(svg, ">total left 20 nanoseconds, right 40 nanoseconds</text>") != NULL);
    CHECK(strstr(svg, ">process_cpu:cpu {service_name=&quot;a&quot;} vs "
                      "{service_name=&quot;a&quot;}</text>") != NULL);
    CHECK(strstr(svg, "<title>a\nleft: 20 nanoseconds, 100.00%\nright: 40 nanoseconds, "
                      "100.00%\nchange: +0.00 pp</title>") != NULL);
    CHECK(strstr(svg, "<title>b\nleft: 10 nanoseconds, 50.00%\nright: 30 nanoseconds, "
                      "75.00%\nchange: +25.00 pp</title>") != NULL);
    CHECK(strstr(svg, "<title>c\nleft: 10 nanoseconds, 50.00%\nright: 0 nanoseconds, "
                      "0.00%\nchange: -50.00 pp (gone: left only)</title>") != NULL);
    CHECK(strstr(svg, "\nchange: +25.00 pp (new: right only)</title>") != NULL);
    xdoc_t d = {0};
    read_svg(svg, &d);
    CHECK_EQ_INT(d.n, 5);
    if (d.n == 5) {
        CHECK_EQ_STR(d.f[1].fill, "#e0e0e0");                 /* a: unchanged */
        CHECK(strcmp(d.f[2].fill, "#e0e0e0") != 0);           /* b: grew, half the largest */
        CHECK(d.f[2].fill[1] == 'f' && d.f[2].fill[3] < 'e'); /* red */
        CHECK_EQ_STR(d.f[3].fill, "#2c2cff");                 /* c: the largest change, blue */
        CHECK_EQ_INT(d.f[3].w, 0);                            /* no width on the right */
        CHECK_EQ_STR(d.f[4].fill, "#d040c0");                 /* d: new */
        CHECK_EQ_INT(d.f[4].w, 29500);                        /* a quarter of 1180 px */
    }
    xdoc_free(&d);
    query_result_free(&out);
    calltree_free(l);
    calltree_free(r);
    symtab_free(syms);
}

/* One side empty: folded keeps the other's values against zeros; an empty
 * right side leaves nothing a width (only the root is drawn), an empty left
 * one makes every frame new. */
static void test_empty_side(void)
{
    symtab_t *syms = symtab_new();
    uint64_t ab[2];
    symtab_intern(syms, "a", 1, "", 0, &ab[0]);
    symtab_intern(syms, "b", 1, "", 0, &ab[1]);
    calltree_t *full = calltree_new(0), *empty = calltree_new(0);
    calltree_add_stack(full, ab, 2, 7);
    query_result_t out;
    query_result_init(&out);
    render_as(full, empty, syms, NULL, "folded", &out);
    CHECK_EQ_STR((const char *)out.body.data, "a;b 7 0\n");
    query_result_free(&out);
    query_result_init(&out);
    render_as(full, empty, syms, NULL, "svg", &out);
    xdoc_t d = {0};
    read_svg((const char *)out.body.data, &d);
    CHECK_EQ_INT(d.n, 1);
    CHECK(d.n == 1 && strstr(d.f[0].title, "left: 7 nanoseconds, 100.00%") != NULL);
    xdoc_free(&d);
    query_result_free(&out);
    query_result_init(&out);
    render_as(empty, full, syms, NULL, "svg", &out);
    memset(&d, 0, sizeof d);
    read_svg((const char *)out.body.data, &d);
    CHECK_EQ_INT(d.n, 3);
    for (size_t i = 1; i < d.n; i++) {
        CHECK_EQ_STR(d.f[i].fill, "#d040c0");
        CHECK(strstr(d.f[i].title, "(new: right only)") != NULL);
    }
    xdoc_free(&d);
    query_result_free(&out);
    calltree_free(full);
    calltree_free(empty);
    symtab_free(syms);
}

/* ---- speedscope ---- */

static const json_limits_t JLIM = {.max_depth = 16, .max_string = 1 << 20};

typedef struct ssfile {
    char frames[64][16];
    size_t nframes;
    char pname[2][160];
    long long end[2], wsum[2];
    int nprofiles;
} ssfile_t;

static long long jnum(json_t *j)
{
    char v[32];
    CHECK_EQ_INT(json_scalar_to(j, v, sizeof v), 0);
    return strtoll(v, NULL, 10);
}

static void ss_frames(json_t *j, ssfile_t *f)
{
    int rc = json_enter(j, '{'), irc, orc;
    char key[32];
    while (rc == 0 && json_next(j, &rc)) {
        CHECK_EQ_INT(json_key(j, key, sizeof key), 0);
        CHECK_EQ_STR(key, "frames");
        CHECK_EQ_INT(json_enter(j, '['), 0);
        while (json_next(j, &irc)) {
            CHECK_EQ_INT(json_enter(j, '{'), 0);
            while (json_next(j, &orc)) {
                CHECK_EQ_INT(json_key(j, key, sizeof key), 0);
                if (strcmp(key, "name") == 0 && f->nframes < 64)
                    json_string_to(j, f->frames[f->nframes], sizeof f->frames[0]);
                else
                    CHECK_EQ_INT(json_skip(j), 0);
            }
            f->nframes++;
        }
    }
    CHECK_EQ_INT(rc, 0);
}

/* samples: each stack's path of frame names, added into side's sums. */
static void ss_samples(json_t *j, const ssfile_t *f, char (*paths)[MAXD * 3 + 1], size_t *n)
{
    int rc = json_enter(j, '['), irc;
    while (rc == 0 && json_next(j, &rc)) {
        char *path = paths[(*n)++];
        path[0] = 0;
        CHECK_EQ_INT(json_enter(j, '['), 0);
        for (int first = 1; json_next(j, &irc); first = 0) {
            long long k = jnum(j);
            CHECK(k >= 0 && (size_t)k < f->nframes); /* the shared table */
            if (!first) strcat(path, ";");
            if (k >= 0 && (size_t)k < f->nframes) strcat(path, f->frames[k]);
        }
    }
    CHECK_EQ_INT(rc, 0);
}

static void ss_profile(json_t *j, ssfile_t *f, sums_t *got)
{
    int side = f->nprofiles++, rc = json_enter(j, '{'), wrc;
    char key[32], paths[NSTACK * 2][MAXD * 3 + 1];
    size_t npaths = 0, nw = 0;
    CHECK(side < 2);
    while (side < 2 && rc == 0 && json_next(j, &rc)) {
        CHECK_EQ_INT(json_key(j, key, sizeof key), 0);
        if (strcmp(key, "name") == 0)
            json_string_to(j, f->pname[side], sizeof f->pname[0]);
        else if (strcmp(key, "endValue") == 0)
            f->end[side] = jnum(j);
        else if (strcmp(key, "samples") == 0)
            ss_samples(j, f, paths, &npaths);
        else if (strcmp(key, "weights") == 0) {
            CHECK_EQ_INT(json_enter(j, '['), 0);
            while (json_next(j, &wrc)) {
                long long w = jnum(j);
                f->wsum[side] += w;
                CHECK(nw < npaths);
                if (nw < npaths) sums_add(got, paths[nw], strlen(paths[nw]), side, w);
                nw++;
            }
        } else
            CHECK_EQ_INT(json_skip(j), 0);
    }
    CHECK_EQ_INT(nw, npaths);
}

static void ss_read(const char *text, ssfile_t *f, sums_t *got)
{
    memset(f, 0, sizeof *f);
    json_t j;
    json_init(&j, text, strlen(text), JLIM);
    int rc = json_enter(&j, '{'), prc;
    char key[32];
    while (rc == 0 && json_next(&j, &rc)) {
        CHECK_EQ_INT(json_key(&j, key, sizeof key), 0);
        if (strcmp(key, "shared") == 0)
            ss_frames(&j, f);
        else if (strcmp(key, "profiles") == 0) {
            CHECK_EQ_INT(json_enter(&j, '['), 0);
            while (json_next(&j, &prc))
                ss_profile(&j, f, got);
        } else
            CHECK_EQ_INT(json_skip(&j), 0);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(json_finish(&j), 0);
}

/* Two profiles over one frames table (each symbol once); every stack of a
 * side has exactly its summed value, the weights add up to each side's
 * ticks, with or without truncation. */
static void test_speedscope(void)
{
    sides_t *sd = sides_new(5);
    symtab_t *syms = sd->syms;
    calltree_t *l = sd->l, *r = sd->r;
    sums_t self = {0}, got = {0};
    strmap_init(&self.m);
    strmap_init(&got.m);
    sums_of(&self, sd->ls, NSTACK, 0, 0);
    sums_of(&self, sd->rs, NSTACK / 2, 1, 0);
    query_result_t out;
    query_result_init(&out);
    render_as(l, r, syms, NULL, "speedscope", &out); /* untruncated by default */
    CHECK_EQ_STR(out.content_type, "application/json");
    ssfile_t f;
    ss_read((const char *)out.body.data, &f, &got);
    CHECK_EQ_INT(f.nprofiles, 2);
    CHECK_EQ_STR(f.pname[0], "left: " CPU "{service_name=\"a\"}");
    CHECK_EQ_STR(f.pname[1], "right: " CPU "{service_name=\"a\"}");
    CHECK(f.nframes <= NSYM);
    for (size_t a = 0; a < f.nframes; a++)
        for (size_t b = a + 1; b < f.nframes; b++)
            CHECK(strcmp(f.frames[a], f.frames[b]) != 0);
    for (int side = 0; side < 2; side++) {
        int64_t want = calltree_root_total(side ? r : l);
        CHECK_EQ_INT(f.wsum[side], want);
        CHECK_EQ_INT(f.end[side], want);
    }
    /* every stack of the union with both its sums, nothing else */
    size_t nonzero = 0;
    for (size_t i = 0; i < self.m.n; i++) {
        uint32_t k;
        CHECK(strmap_find(&got.m, self.m.strs[i], strlen(self.m.strs[i]), &k));
        if (!strmap_find(&got.m, self.m.strs[i], strlen(self.m.strs[i]), &k)) continue;
        CHECK_EQ_INT(got.v[0][k], self.v[0][i]);
        CHECK_EQ_INT(got.v[1][k], self.v[1][i]);
        nonzero++;
    }
    CHECK_EQ_INT(got.m.n, nonzero);
    query_result_free(&out);
    /* truncated jointly: both sums still exact */
    query_result_init(&out);
    render_as(l, r, syms, "5", "speedscope", &out);
    sums_free(&got);
    memset(&got, 0, sizeof got);
    strmap_init(&got.m);
    ss_read((const char *)out.body.data, &f, &got);
    CHECK_EQ_INT(f.wsum[0], calltree_root_total(l));
    CHECK_EQ_INT(f.wsum[1], calltree_root_total(r));
    query_result_free(&out);
    /* a partial answer carries the render's members at the top level */
    buf_t lb, rb;
    buf_init(&lb, BUF_UNLIMITED);
    buf_init(&rb, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_tree(l, syms, &lb), 0);
    CHECK_EQ_INT(query_encode_tree(r, syms, &rb), 0);
    query_diff_params_t d = {
        .left = {.query = CPU "{}"}, .right = {.query = CPU "{}"}, .format = "speedscope"};
    query_limits_t lim;
    query_limits_default(&lim);
    errmsg_t em = {{0}};
    query_result_init(&out);
    CHECK_EQ_INT(query_diff_render(&d, &lim, lb.data, lb.len, rb.data, rb.len, "\"partial\":true",
                                   &out, &em),
                 0);
    CHECK(out.body.len > 16 &&
          memcmp(out.body.data + out.body.len - 16, ",\"partial\":true}", 16) == 0);
    query_result_free(&out);
    buf_free(&lb);
    buf_free(&rb);
    sums_free(&got);
    sums_free(&self);
    sides_free(sd);
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
    d.format = "pprof"; /* a diff is not one profile: each side is */
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "/pyroscope/render?format=pprof") != NULL);
    d.format = "trie";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), ERR_INVALID_ARGUMENT);
    d.format = "speedscope";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
    d.format = "svg";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
    d.format = "folded";
    CHECK_EQ_INT(query_diff_check(&d, &lim, &em), 0);
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

/* ---- the join's memory, charged ---- */

/* A budget for query_diff_render_charged: takes past limit are refused with
 * code (ERR_TOO_LARGE: the request alone could never fit). */
typedef struct budget {
    size_t used, peak, limit;
    int code;
} budget_t;

static int budget_take(void *ctx, size_t n)
{
    budget_t *b = ctx;
    if (b->limit != 0 && b->used + n > b->limit) return b->code;
    b->used += n;
    if (b->used > b->peak) b->peak = b->used;
    return 0;
}

static void budget_give(void *ctx, size_t n)
{
    budget_t *b = ctx;
    CHECK(n <= b->used);
    b->used -= n < b->used ? n : b->used;
}

/* Renders l against r charged to b: rc, em and the answer's body; what
 * stays charged (the answer) is given back after. */
static int render_charged(calltree_t *l, calltree_t *r, symtab_t *syms, const char *format,
                          budget_t *b, buf_t *body, errmsg_t *em)
{
    buf_t lb, rb;
    encode_sides(l, r, syms, &lb, &rb);
    query_diff_params_t d = {.left = {.query = CPU "{}"},
                             .right = {.query = CPU "{}"},
                             .max_nodes = "40",
                             .format = format};
    query_limits_t lim;
    query_limits_default(&lim);
    query_report_charge_t charge = {budget_take, budget_give, b};
    query_result_t out;
    query_result_init(&out);
    size_t charged = 0;
    memset(em, 0, sizeof *em);
    int rc = query_diff_render_charged(&d, &lim, lb.data, lb.len, rb.data, rb.len, NULL, &charge,
                                       &charged, &out, em);
    CHECK_EQ_INT(b->used, charged); /* the answer alone stays charged */
    buf_reset(body);
    if (rc == 0) buf_append(body, out.body.data, out.body.len);
    budget_give(b, charged);
    query_result_free(&out);
    buf_free(&lb);
    buf_free(&rb);
    return rc;
}

/* The join counts its union, selection and answer: under any limit it
 * either answers exactly what an uncharged render answers or refuses with
 * the charge's code and a message naming query-memory-bytes (413 for a
 * request that alone passes it, 503 for one that does not fit beside
 * others), holding nothing after. */
static void test_charged(void)
{
    sides_t *sd = sides_new(5);
    const char *formats[] = {NULL, "folded", "svg"};
    for (size_t f = 0; f < sizeof formats / sizeof *formats; f++) {
        buf_t want, got;
        buf_init(&want, BUF_UNLIMITED);
        buf_init(&got, BUF_UNLIMITED);
        errmsg_t em;
        budget_t b = {0};
        CHECK_EQ_INT(render_charged(sd->l, sd->r, sd->syms, formats[f], &b, &want, &em), 0);
        CHECK(b.peak > 0 && b.used == 0);
        size_t peak = b.peak, refused = 0;
        for (size_t limit = peak / 16; limit <= peak; limit += peak / 16 + 1) {
            int codes[] = {ERR_TOO_LARGE, ERR_UNAVAILABLE};
            for (int c = 0; c < 2; c++) {
                b = (budget_t){.limit = limit, .code = codes[c]};
                int rc = render_charged(sd->l, sd->r, sd->syms, formats[f], &b, &got, &em);
                CHECK_EQ_INT(b.used, 0);
                if (rc == 0) {
                    CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
                    continue;
                }
                refused++;
                CHECK_EQ_INT(rc, codes[c]);
                CHECK(strstr(em.text, "query-memory-bytes") != NULL);
                CHECK(strstr(em.text, c == 0 ? "allows one query" : "server busy") != NULL);
            }
        }
        CHECK(refused >= 2);                                  /* the smallest limits refuse */
        b = (budget_t){.limit = peak, .code = ERR_TOO_LARGE}; /* the peak fits */
        CHECK_EQ_INT(render_charged(sd->l, sd->r, sd->syms, formats[f], &b, &got, &em), 0);
        buf_free(&want);
        buf_free(&got);
    }
    sides_free(sd);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 12345;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed * 2654435761u + 88172645463325252ull;
    test_exact_union();
    test_folded();
    test_svg();
    test_by_example();
    test_empty_side();
    test_speedscope();
    test_streams();
    test_refusals();
    test_charged();
    return check_exit();
}
