/* test_query_export.c — the export encoders, read back independently.
 *
 * speedscope: parsed with common/json.h; every sample's frames joined into a
 * stack must give exactly the folded encoder's lines, and the weights add up
 * to the root total. SVG: a small XML reader checks balanced tags and
 * escaping, then every frame (one <g> per tree node) is matched by its path
 * against totals summed from the folded lines: the title carries the value
 * and percentage, the root spans the drawing width, children fit inside
 * their parent. Names carry <, >, &, quotes and bad UTF-8. Prints its seed;
 * argv[1] replays. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/strmap.h"
#include "query/query.h"
#include "tests/unit/check.h"
#include "tests/unit/test_svg_read.h"

#define CPU_TYPE "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define SVG_DRAW_WIDTH 1180 /* 1200 px wide, 10 px margins */

/* ---- fixtures ---- */
static uint64_t sym(symtab_t *s, const char *name, const char *file)
{
    uint64_t id;
    symtab_intern(s, name, strlen(name), file, strlen(file), &id);
    return id;
}

static const char *names[] = {
    "runtime.main",
    "github.com/acme/server/handlers.(*API).ServeHTTP",
    "std::vector<int>::push_back",
    "a<b>&\"c'",
    "com.example.service.OrderService.placeOrder",
    "malloc",
    "caf\xc3\xa9 \xff\x01 bad",
    "handlers.(*API).get",
    "process_request (app/server.py:42)",
    "&amp;",
};
#define NNAMES (sizeof names / sizeof *names)

static void random_tree(calltree_t *t, symtab_t *s, size_t nstacks)
{
    for (size_t i = 0; i < nstacks; i++) {
        uint64_t ids[16];
        size_t depth = check_rng() % 10; /* depth 0: self on the root */
        for (size_t d = 0; d < depth; d++) {
            size_t k = check_rng() % NNAMES;
            if (k == 6) k = 5; /* bad bytes are read back by example only */
            ids[d] = sym(s, names[k], k % 3 ? "src/x.go" : "");
        }
        CHECK_EQ_INT(calltree_add_stack(t, ids, depth, 1 + (int64_t)(check_rng() % 100000)), 0);
    }
}

static char *folded_of(const calltree_t *t, const symtab_t *s)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_folded(t, s, &b), 0);
    buf_append(&b, "", 0);
    return (char *)b.data;
}

/* ---- speedscope, read with common/json.h ---- */
typedef struct sscope {
    char **frames;
    size_t nframes;
    buf_t stacks; /* samples as folded lines, weights filled in later */
    char **lines;
    size_t nlines;
    long long *weights;
    size_t nweights;
    long long end_value;
    char unit[32], schema[128], type[32], exporter[32];
} sscope_t;

static const json_limits_t JLIM = {.max_depth = 16, .max_string = 1 << 20};

static char *jstring(json_t *j)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(json_string(j, &b), 0);
    buf_append(&b, "", 0);
    return (char *)b.data;
}

static long long jnum(json_t *j)
{
    char v[32];
    CHECK_EQ_INT(json_scalar_to(j, v, sizeof v), 0);
    return strtoll(v, NULL, 10);
}

static void read_frames(json_t *j, sscope_t *s)
{
    int rc = json_enter(j, '['), orc;
    while (rc == 0 && json_next(j, &rc)) {
        CHECK_EQ_INT(json_enter(j, '{'), 0);
        char key[32];
        s->frames = realloc(s->frames, (s->nframes + 1) * sizeof *s->frames);
        s->frames[s->nframes] = NULL;
        while (json_next(j, &orc)) {
            CHECK_EQ_INT(json_key(j, key, sizeof key), 0);
            if (strcmp(key, "name") == 0)
                s->frames[s->nframes] = jstring(j);
            else
                CHECK_EQ_INT(json_skip(j), 0);
        }
        CHECK(s->frames[s->nframes] != NULL);
        s->nframes++;
    }
    CHECK_EQ_INT(rc, 0);
}

static void read_samples(json_t *j, sscope_t *s)
{
    int rc = json_enter(j, '['), irc;
    while (rc == 0 && json_next(j, &rc)) {
        buf_t line;
        buf_init(&line, BUF_UNLIMITED);
        CHECK_EQ_INT(json_enter(j, '['), 0);
        for (int first = 1; json_next(j, &irc); first = 0) {
            long long f = jnum(j);
            CHECK(f >= 0 && (size_t)f < s->nframes);
            if (!first) buf_append_byte(&line, ';');
            if (f >= 0 && (size_t)f < s->nframes) buf_append_str(&line, s->frames[f]);
        }
        CHECK_EQ_INT(irc, 0);
        buf_append(&line, "", 0);
        s->lines = realloc(s->lines, (s->nlines + 1) * sizeof *s->lines);
        s->lines[s->nlines++] = (char *)line.data;
    }
    CHECK_EQ_INT(rc, 0);
}

static void read_profile(json_t *j, sscope_t *s)
{
    int rc = json_enter(j, '{');
    char key[32];
    while (rc == 0 && json_next(j, &rc)) {
        CHECK_EQ_INT(json_key(j, key, sizeof key), 0);
        if (strcmp(key, "type") == 0)
            json_string_to(j, s->type, sizeof s->type);
        else if (strcmp(key, "unit") == 0)
            json_string_to(j, s->unit, sizeof s->unit);
        else if (strcmp(key, "endValue") == 0)
            s->end_value = jnum(j);
        else if (strcmp(key, "samples") == 0)
            read_samples(j, s);
        else if (strcmp(key, "weights") == 0) {
            int arc = json_enter(j, '[');
            while (arc == 0 && json_next(j, &arc)) {
                s->weights = realloc(s->weights, (s->nweights + 1) * sizeof *s->weights);
                s->weights[s->nweights++] = jnum(j);
            }
        } else
            CHECK_EQ_INT(json_skip(j), 0);
    }
    CHECK_EQ_INT(rc, 0);
}

/* Reads the whole file; the frames come before the profiles (as written). */
static void read_speedscope(const buf_t *b, sscope_t *s)
{
    json_t j;
    json_init(&j, b->data, b->len, JLIM);
    int rc = json_enter(&j, '{'), irc;
    char key[32];
    int nprofiles = 0;
    while (rc == 0 && json_next(&j, &rc)) {
        CHECK_EQ_INT(json_key(&j, key, sizeof key), 0);
        if (strcmp(key, "$schema") == 0)
            json_string_to(&j, s->schema, sizeof s->schema);
        else if (strcmp(key, "exporter") == 0)
            json_string_to(&j, s->exporter, sizeof s->exporter);
        else if (strcmp(key, "shared") == 0) {
            CHECK_EQ_INT(json_enter(&j, '{'), 0);
            while (json_next(&j, &irc)) {
                CHECK_EQ_INT(json_key(&j, key, sizeof key), 0);
                CHECK_EQ_STR(key, "frames");
                read_frames(&j, s);
            }
        } else if (strcmp(key, "profiles") == 0) {
            CHECK_EQ_INT(json_enter(&j, '['), 0);
            while (json_next(&j, &irc)) {
                read_profile(&j, s);
                nprofiles++;
            }
        } else
            CHECK_EQ_INT(json_skip(&j), 0);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(json_finish(&j), 0);
    CHECK_EQ_INT(nprofiles, 1);
}

static void sscope_free(sscope_t *s)
{
    for (size_t i = 0; i < s->nframes; i++)
        free(s->frames[i]);
    for (size_t i = 0; i < s->nlines; i++)
        free(s->lines[i]);
    free(s->frames);
    free(s->lines);
    free(s->weights);
}

/* The samples as folded lines must be the folded encoder's lines. */
static void check_speedscope(const calltree_t *t, const symtab_t *syms, const char *type,
                             const char *unit)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_speedscope(t, syms, type, "cpu{a=\"b\"}", &b), 0);
    sscope_t s = {0};
    read_speedscope(&b, &s);
    CHECK_EQ_STR(s.schema, "https://www.speedscope.app/file-format-schema.json");
    CHECK_EQ_STR(s.type, "sampled");
    CHECK_EQ_STR(s.exporter, "flamedb");
    CHECK_EQ_STR(s.unit, unit);
    CHECK_EQ_INT(s.nlines, s.nweights);
    long long sum = 0;
    buf_t folded;
    buf_init(&folded, BUF_UNLIMITED);
    for (size_t i = 0; i < s.nlines && i < s.nweights; i++) {
        sum += s.weights[i];
        CHECK(s.weights[i] != 0);
        buf_printf(&folded, "%s %lld\n", s.lines[i], s.weights[i]);
    }
    buf_append(&folded, "", 0);
    CHECK_EQ_INT(sum, calltree_root_total(t));
    CHECK_EQ_INT(s.end_value, calltree_root_total(t));
    char *want = folded_of(t, syms);
    CHECK_EQ_STR((char *)folded.data, want);
    for (size_t a = 0; a < s.nframes; a++) /* frames are shared: no duplicates */
        for (size_t c = a + 1; c < s.nframes; c++)
            CHECK(strcmp(s.frames[a], s.frames[c]) != 0);
    free(want);
    buf_free(&folded);
    sscope_free(&s);
    buf_free(&b);
}

static void test_speedscope(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        random_tree(t, s, 1 + check_rng() % 300);
        check_speedscope(t, s, CPU_TYPE, "nanoseconds");
        check_speedscope(t, s, "memory:alloc_space:bytes:space:bytes", "bytes");
        check_speedscope(t, s, "goroutines:goroutine:count:goroutine:count", "none");
        calltree_t *small;
        CHECK_EQ_INT(query_truncate(t, 2 + check_rng() % 20, &small), 0);
        check_speedscope(small, s, CPU_TYPE, "nanoseconds");
        calltree_free(small);
        calltree_free(t);
        symtab_free(s);
    }
    /* an empty tree is a valid file without samples */
    calltree_t *t = calltree_new(0);
    check_speedscope(t, NULL, NULL, "none");
    calltree_free(t);
}

/* ---- SVG, read with tests/unit/test_svg_read.h ---- */

/* Totals by path ("a;b;c"), summed from the folded lines. */
typedef struct paths {
    strmap_t m;
    long long *total;
} paths_t;

static void paths_add(paths_t *p, const char *path, size_t n, long long v)
{
    uint32_t i;
    size_t before = p->m.n;
    CHECK_EQ_INT(strmap_intern(&p->m, path, n, &i), 0);
    if (p->m.n > before) {
        p->total = realloc(p->total, p->m.n * sizeof *p->total);
        p->total[i] = 0;
    }
    p->total[i] += v;
}

static void paths_from_folded(paths_t *p, const char *folded)
{
    for (const char *l = folded; *l;) {
        const char *e = strchr(l, '\n'), *sp = e;
        while (sp > l && sp[-1] != ' ')
            sp--;
        long long v = strtoll(sp, NULL, 10);
        size_t n = (size_t)(sp - 1 - l);
        if (!(n == 5 && strncmp(l, "total", 5) == 0)) /* the root's own self */
            for (size_t i = 0; i <= n; i++)
                if (i == n || l[i] == ';') paths_add(p, l, i, v);
        l = e + 1;
    }
}

static void check_frame(const xframe_t *f, const char *name, long long total, long long root)
{
    char want[64];
    snprintf(want, sizeof want, "\n%lld nanoseconds", total);
    CHECK(strstr(f->title, want) != NULL);
    snprintf(want, sizeof want, ", %.2f%%", root ? 100.0 * (double)total / (double)root : 0.0);
    CHECK(strstr(f->title, want) != NULL);
    CHECK(strncmp(f->title, name, strlen(name)) == 0);
    if (f->label == NULL) return;
    /* a label is the name, a suffix of it, or a piece of it ending in ".." */
    size_t ln = strlen(f->label), nn = strlen(name);
    CHECK((double)ln * 7.2 + 6 <= (double)f->w / 100 + 1e-9 || ln <= 2);
    if (ln >= 2 && strcmp(f->label + ln - 2, "..") == 0) {
        char *piece = strndup(f->label, ln - 2);
        CHECK(strstr(name, piece) != NULL);
        free(piece);
    } else
        CHECK(ln <= nn && strcmp(name + nn - ln, f->label) == 0);
}

/* Walks the frames in document (pre)order; the parent of a frame is the last
 * frame one row above it. */
static void check_svg_frames(const xdoc_t *d, const calltree_t *t, const paths_t *p)
{
    long long root = calltree_root_total(t);
    CHECK_EQ_INT(d->n, calltree_node_count(t));
    CHECK(d->n > 0 && strncmp(d->f[0].title, "total\n", 6) == 0);
    CHECK_EQ_INT(d->f[0].w, (d->width - 20) * 100);
    size_t stack[64], sp = 0;
    buf_t path;
    buf_init(&path, BUF_UNLIMITED);
    size_t plen[64];
    long long kids_w[64];
    for (size_t i = 0; i < d->n; i++) {
        const xframe_t *f = &d->f[i];
        while (sp > 0 && d->f[stack[sp - 1]].y >= f->y)
            sp--;
        if (i > 0) {
            const xframe_t *up = &d->f[stack[sp - 1]];
            CHECK_EQ_INT(f->y, up->y + 16);
            CHECK(f->x >= up->x && f->x + f->w <= up->x + up->w);
            kids_w[sp - 1] += f->w;
            CHECK(kids_w[sp - 1] <= up->w);
            path.len = plen[sp - 1];
            if (sp > 1) buf_append_byte(&path, ';');
            const char *nl = strchr(f->title, '\n');
            size_t n = (size_t)(nl - f->title);
            const char *paren = strstr(f->title, " (src/x.go)\n");
            if (paren != NULL && paren < nl) n = (size_t)(paren - f->title);
            buf_append(&path, f->title, n);
            uint32_t k;
            CHECK(strmap_find(&p->m, (char *)path.data, path.len, &k));
            char *name = strndup(f->title, n);
            check_frame(f, name, p->total[k], root);
            CHECK_EQ_INT(f->other, strcmp(name, "other") == 0);
            free(name);
        }
        plen[sp] = path.len;
        kids_w[sp] = 0;
        stack[sp++] = i;
    }
    buf_free(&path);
}

static void check_svg(const calltree_t *t, const symtab_t *syms)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_svg(t, syms, CPU_TYPE, "cpu{service_name=\"x&y\"}", NULL, &b), 0);
    buf_append(&b, "", 0);
    xdoc_t d = {0};
    read_svg((char *)b.data, &d);
    CHECK_EQ_INT(d.width, 1200);
    CHECK(strstr((char *)b.data, "cpu{service_name=&quot;x&amp;y&quot;}") != NULL);
    CHECK(strstr((char *)b.data, "<script") == NULL && strstr((char *)b.data, "href") == NULL);
    paths_t p = {0};
    strmap_init(&p.m);
    char *folded = folded_of(t, syms);
    paths_from_folded(&p, folded);
    check_svg_frames(&d, t, &p);
    /* deterministic: the same tree gives the same bytes */
    buf_t again;
    buf_init(&again, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_svg(t, syms, CPU_TYPE, "cpu{service_name=\"x&y\"}", NULL, &again), 0);
    buf_append(&again, "", 0);
    CHECK_EQ_STR((char *)again.data, (char *)b.data);
    buf_free(&again);
    free(folded);
    free(p.total);
    strmap_free(&p.m);
    xdoc_free(&d);
    buf_free(&b);
}

static void test_svg(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        random_tree(t, s, 1 + check_rng() % 300);
        check_svg(t, s);
        calltree_t *small;
        CHECK_EQ_INT(query_truncate(t, 2 + check_rng() % 20, &small), 0);
        check_svg(small, s);
        calltree_free(small);
        calltree_free(t);
        symtab_free(s);
    }
}

/* Escaping, bad bytes, package colors and shortened labels, by example. */
static void test_svg_text(void)
{
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    const char *go1 = "github.com/acme/server/handlers.(*API).ServeHTTP";
    const char *go2 = "github.com/acme/server/handlers.(*API).get";
    uint64_t a[] = {sym(s, names[3], ""), sym(s, names[6], "")};
    uint64_t b[] = {sym(s, go1, ""), sym(s, go2, "")};
    uint64_t c[] = {sym(s, "main", ""), sym(s, "zzz", "")};
    calltree_add_stack(t, a, 2, 3000);
    calltree_add_stack(t, b, 2, 1000);
    calltree_add_stack(t, b, 1, 50);
    calltree_add_stack(t, c, 2, 1);
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    CHECK_EQ_INT(
        query_encode_svg(t, s, "memory:alloc_space:bytes:space:bytes", NULL, "partial <1>", &out),
        0);
    buf_append(&out, "", 0);
    const char *svg = (const char *)out.data;
    CHECK(strstr(svg, "<title>a&lt;b&gt;&amp;&quot;c&apos;\n") != NULL);
    CHECK(strstr(svg, "<title>caf\xc3\xa9 \xef\xbf\xbd? bad\n") != NULL);
    CHECK(strstr(svg, "a<b") == NULL && strstr(svg, "\xff") == NULL);
    /* 1050 of 4051 bytes */
    CHECK(strstr(svg, "\n1050 bytes (1.03 KiB), 25.92%</title>") != NULL);
    CHECK(strstr(svg, ">total 4051 bytes (3.96 KiB) <tspan fill=\"#b00000\">partial &lt;1&gt;"
                      "</tspan></text>") != NULL);
    /* go1 is about 1/4 of 1180 px wide: too narrow for its 48 characters, so
     * it loses its import path; go2 (same package) gets the same color */
    CHECK(strstr(svg, ">handlers.(*API).ServeHTTP</text>") != NULL);
    const char *f1 =
        strstr(strstr(svg, "github.com/acme/server/handlers.(*API).ServeHTTP\n"), "fill=\"");
    const char *f2 = strstr(strstr(svg, "github.com/acme/server/handlers.(*API).get\n"), "fill=\"");
    CHECK(f1 && f2 && strncmp(f1, f2, 14) == 0);
    /* "zzz" (1 of 4051) is far too narrow for a label */
    CHECK(strstr(svg, ">zzz<") == NULL);
    buf_free(&out);
    calltree_free(t);
    symtab_free(s);
}

static void test_format_param(void)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_spec_t spec;
    errmsg_t em;
    const char *fmts[] = {"svg", "speedscope"};
    query_format_t want[] = {QUERY_FORMAT_SVG, QUERY_FORMAT_SPEEDSCOPE};
    size_t max[] = {QUERY_DEFAULT_MAX_NODES, 0};
    for (int i = 0; i < 2; i++) {
        query_params_t p = {.query = CPU_TYPE "{}", .format = fmts[i]};
        CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000LL, &spec, &em), 0);
        CHECK_EQ_INT(spec.format, want[i]);
        CHECK_EQ_INT(spec.max_nodes, max[i]);
        query_spec_free(&spec);
    }
    query_params_t p = {.query = CPU_TYPE "{}", .format = "png"};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000LL, &spec, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "svg or speedscope") != NULL);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed ? seed : 1;
    test_speedscope();
    test_svg();
    test_svg_text();
    test_format_param();
    return check_exit();
}
