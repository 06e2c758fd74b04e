/* bench_gen.c — a fleet model that writes realistic, varied pprof profiles.
 *
 * Each service has its own function universe (Go-like package paths, plus the
 * runtime and standard-library functions every Go service shares) and a set of
 * call paths drawn as random walks over a call DAG, weighted by a Zipf law, so
 * a few hot paths dominate as in real services. Each pod perturbs those weights
 * (lognormal), pods of the newer version make a few paths much hotter (the
 * "v2 got slower" story), and every profile is an independent draw: stacks,
 * counts and extra runtime leaves differ from one profile to the next. The
 * encoder writes the pprof wire format directly (leaf-first location ids, one
 * location per function, a mapping, a string table with "" first) and gzips it
 * at the level Go's runtime/pprof uses. Single-threaded.
 */
#define _GNU_SOURCE
#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "common/err.h"

static const char *const svc_names[] = {"checkout", "cart",      "catalog",  "payments",
                                        "search",   "auth",      "frontend", "shipping",
                                        "ads",      "recommend", "email",    "currency"};
static const char *const pkgs[] = {"api",   "db",      "cache", "render", "authz", "queue",
                                   "codec", "metrics", "rpc",   "store",  "index", "billing"};
static const char *const types[] = {"Server", "Client", "Handler", "Pool",  "Encoder",
                                    "Store",  "Worker", "Conn",    "Batch", "Index"};
static const char *const methods[] = {"Serve",  "Handle", "Get",     "Put",     "Encode",
                                      "Decode", "Flush",  "Lookup",  "Process", "Write",
                                      "Read",   "Run",    "Marshal", "Query"};
/* Shared by every service: roots and runtime leaves. */
static const char *const roots[] = {"runtime.goexit", "runtime.main", "main.main",
                                    "net/http.(*conn).serve"};
static const char *const leaves[] = {
    "runtime.mallocgc",      "runtime.memmove",        "runtime.futex",
    "syscall.Syscall",       "runtime.scanobject",     "runtime.mapaccess2_faststr",
    "encoding/json.Marshal", "runtime.growslice",      "runtime.memclrNoHeapPointers",
    "sync.(*Mutex).Lock",    "runtime.(*mheap).alloc", "bytes.(*Buffer).Write"};
#define NROOTS (sizeof roots / sizeof roots[0])
#define NLEAVES (sizeof leaves / sizeof leaves[0])

typedef struct svc_model {
    char name[32];
    size_t nfuncs; /* roots + own functions + leaves */
    char **fname, **ffile;
    int *fline;
    uint32_t *callee; /* 6 per function, ncallee[i] used */
    uint8_t *ncallee;
    size_t npaths;
    uint32_t *frames; /* path i: frames[off[i] .. off[i]+len[i]) root first */
    uint32_t *off;
    uint8_t *len;
    double *weight;
    int64_t *objsize;
} svc_model_t;

void gen_options_default(gen_options_t *o, gen_kind_t kind)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->services = 4;
    o->pods = 8;
    o->profiles = 10;
    o->step_s = 10;
    o->kind = kind;
    o->funcs = kind == GEN_HEAP ? 2000 : 1500;
    o->paths = kind == GEN_HEAP ? 1500 : 1200;
    o->samples = kind == GEN_HEAP ? 4000 : 2000;
    o->gzip_level = 1;
    o->set_time = 1;
}

static void svc_free(svc_model_t *m)
{
    for (size_t i = 0; m->fname && i < m->nfuncs; i++) {
        free(m->fname[i]);
        free(m->ffile[i]);
    }
    free(m->fname);
    free(m->ffile);
    free(m->fline);
    free(m->callee);
    free(m->ncallee);
    free(m->frames);
    free(m->off);
    free(m->len);
    free(m->weight);
    free(m->objsize);
    memset(m, 0, sizeof *m);
}

static int svc_funcs(svc_model_t *m, size_t own, bench_rng_t *r)
{
    m->nfuncs = NROOTS + own + NLEAVES;
    m->fname = calloc(m->nfuncs, sizeof *m->fname);
    m->ffile = calloc(m->nfuncs, sizeof *m->ffile);
    m->fline = calloc(m->nfuncs, sizeof *m->fline);
    if (!m->fname || !m->ffile || !m->fline) return ERR_NOMEM;
    for (size_t i = 0; i < m->nfuncs; i++) {
        int rc;
        if (i < NROOTS || i >= NROOTS + own) {
            const char *n = i < NROOTS ? roots[i] : leaves[i - NROOTS - own];
            rc = asprintf(&m->fname[i], "%s", n);
            rc = rc < 0
                     ? rc
                     : asprintf(&m->ffile[i], "/usr/lib/go/src/%.*s.go", (int)strcspn(n, "."), n);
        } else {
            const char *pkg = pkgs[rng_below(r, 12)], *ty = types[rng_below(r, 10)];
            rc = asprintf(&m->fname[i], "github.com/acme/%s/internal/%s.(*%s).%s%zu", m->name, pkg,
                          ty, methods[rng_below(r, 14)], i);
            rc =
                rc < 0 ? rc : asprintf(&m->ffile[i], "/src/%s/internal/%s/%s.go", m->name, pkg, ty);
        }
        if (rc < 0) return ERR_NOMEM;
        m->fline[i] = 10 + (int)rng_below(r, 900);
    }
    return 0;
}

/* A call DAG: function i calls up to 6 functions with higher indices nearby;
 * roots call into the first half. The short reach (about own/40) spreads the
 * leaves of the walks over the whole universe instead of funnelling them into
 * the last functions. */
static int svc_graph(svc_model_t *m, size_t own, bench_rng_t *r)
{
    m->callee = calloc(m->nfuncs * 6, sizeof *m->callee);
    m->ncallee = calloc(m->nfuncs, 1);
    if (!m->callee || !m->ncallee) return ERR_NOMEM;
    size_t reach = own / 40 > 8 ? own / 40 : 8;
    for (size_t i = 0; i < NROOTS + own; i++) {
        size_t lo = i < NROOTS ? NROOTS : i + 1, hi = NROOTS + own;
        if (lo >= hi) continue;
        size_t want = i < NROOTS ? (own + 1) / 2 : reach;
        size_t span = hi - lo < want ? hi - lo : want;
        size_t k = i < NROOTS ? 6 : 1 + rng_below(r, 5);
        for (size_t j = 0; j < k; j++)
            m->callee[i * 6 + m->ncallee[i]++] = (uint32_t)(lo + rng_below(r, span));
    }
    return 0;
}

static int svc_paths(svc_model_t *m, size_t npaths, bench_rng_t *r)
{
    m->npaths = npaths;
    m->off = calloc(npaths, sizeof *m->off);
    m->len = calloc(npaths, 1);
    m->frames = calloc(npaths * 64, sizeof *m->frames);
    m->weight = calloc(npaths, sizeof *m->weight);
    m->objsize = calloc(npaths, sizeof *m->objsize);
    if (!m->off || !m->len || !m->frames || !m->weight || !m->objsize) return ERR_NOMEM;
    size_t used = 0;
    for (size_t p = 0; p < npaths; p++) {
        size_t depth = 4 + (size_t)(rng_lognormal(r, 0.5) * 12);
        if (depth > 60) depth = 60;
        uint32_t f = (uint32_t)rng_below(r, NROOTS);
        m->off[p] = (uint32_t)used;
        for (size_t d = 0; d < depth; d++) {
            m->frames[used + d] = f;
            m->len[p]++;
            if (m->ncallee[f] == 0) break;
            f = m->callee[f * 6 + rng_below(r, m->ncallee[f])];
        }
        used += m->len[p];
        /* Zipf over a random rank: a few paths carry most of the time */
        m->weight[p] = 1.0 / pow((double)(rng_below(r, npaths) + 1), 1.1);
        m->objsize[p] = 16 << rng_below(r, 12);
    }
    return 0;
}

static int svc_build(svc_model_t *m, const gen_options_t *o, size_t s)
{
    memset(m, 0, sizeof *m);
    if (s < sizeof svc_names / sizeof svc_names[0])
        snprintf(m->name, sizeof m->name, "%s", svc_names[s]);
    else
        snprintf(m->name, sizeof m->name, "svc%zu", s);
    bench_rng_t r = {o->seed * 1000003u + s};
    int rc = svc_funcs(m, o->funcs, &r);
    rc = rc ? rc : svc_graph(m, o->funcs, &r);
    return rc ? rc : svc_paths(m, o->paths, &r);
}

/* ---- one profile ---- */
typedef struct gen_state {
    const gen_options_t *o;
    int32_t span_key;  /* string index of "span_id", when o->spans > 0 */
    int32_t span_val0; /* string index of the first span id; o->spans follow */
    bench_rng_t span_rng;
    const svc_model_t *m;
    double *cum;       /* pod's cumulative path weights */
    uint32_t *counts;  /* per (path, leaf+1) */
    int32_t *str_name; /* per function: string index of name / file, -1 unused */
    int32_t *str_file;
    buf_t pb, tmp;
    struct libdeflate_compressor *gz;
} gen_state_t;

static void put_tag(buf_t *b, uint32_t field, uint32_t wt)
{
    buf_append_uvarint(b, (uint64_t)field << 3 | wt);
}
static void put_uint(buf_t *b, uint32_t field, uint64_t v)
{
    if (v == 0) return;
    put_tag(b, field, 0);
    buf_append_uvarint(b, v);
}
static void put_bytes(buf_t *b, uint32_t field, const void *p, size_t n)
{
    put_tag(b, field, 2);
    buf_append_uvarint(b, n);
    buf_append(b, p, n);
}
/* Appends tmp as a length-delimited field of b and clears tmp. */
static void put_msg(buf_t *b, uint32_t field, buf_t *tmp)
{
    put_bytes(b, field, tmp->data, tmp->len);
    buf_reset(tmp);
}

static void pod_weights(gen_state_t *g, size_t s, size_t pod, int v2)
{
    bench_rng_t r = {g->o->seed * 7919u + s * 104729u + pod};
    double acc = 0;
    for (size_t p = 0; p < g->m->npaths; p++) {
        double w = g->m->weight[p] * rng_lognormal(&r, 0.6);
        if (v2 && p % 17 == 3) w *= 4; /* the regression v2 shipped */
        acc += w;
        g->cum[p] = acc;
    }
}

static size_t draw_path(const gen_state_t *g, bench_rng_t *r)
{
    double x = rng_unit(r) * g->cum[g->m->npaths - 1];
    size_t lo = 0, hi = g->m->npaths - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->cum[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void draw_samples(gen_state_t *g, bench_rng_t *r)
{
    size_t slots = g->m->npaths * (NLEAVES + 1);
    memset(g->counts, 0, slots * sizeof *g->counts);
    size_t n = (size_t)((double)g->o->samples * rng_lognormal(r, 0.3));
    for (size_t i = 0; i < n; i++) {
        size_t p = draw_path(g, r);
        size_t leaf = rng_unit(r) < 0.35 ? 1 + rng_below(r, NLEAVES) : 0;
        g->counts[p * (NLEAVES + 1) + leaf]++;
    }
}

static size_t leaf_func(const svc_model_t *m, size_t leaf)
{
    return m->nfuncs - NLEAVES + leaf - 1;
}

/* Values of one sample; returns how many. */
static size_t sample_values(const gen_state_t *g, size_t p, uint32_t count, bench_rng_t *r,
                            int64_t v[4])
{
    if (g->o->kind == GEN_CPU) {
        v[0] = count;
        v[1] = (int64_t)count * 10000000;
        return 2;
    }
    int64_t objs = (int64_t)count * 512, size = g->m->objsize[p];
    double live = pow(rng_unit(r), 3);
    v[0] = objs;
    v[1] = objs * size;
    v[2] = (int64_t)((double)objs * live);
    v[3] = v[2] * size;
    return 4;
}

static void encode_sample(gen_state_t *g, size_t p, size_t leaf, uint32_t count, bench_rng_t *r,
                          bench_profile_t *out)
{
    buf_t *b = &g->pb, *t = &g->tmp;
    buf_t ids;
    buf_init(&ids, BUF_UNLIMITED);
    const uint32_t *fr = g->m->frames + g->m->off[p];
    if (leaf) buf_append_uvarint(&ids, leaf_func(g->m, leaf) + 1);
    for (size_t d = g->m->len[p]; d-- > 0;) /* leaf first */
        buf_append_uvarint(&ids, fr[d] + 1);
    put_bytes(t, 1, ids.data, ids.len);
    buf_reset(&ids);
    int64_t v[4];
    size_t nv = sample_values(g, p, count, r, v);
    for (size_t i = 0; i < nv; i++) {
        buf_append_uvarint(&ids, (uint64_t)v[i]);
        out->totals[i] += v[i];
    }
    put_bytes(t, 2, ids.data, ids.len);
    buf_free(&ids);
    if (g->o->spans > 0) { /* a Label {key, str}; its own RNG, so stacks stay as without */
        buf_t lab;
        buf_init(&lab, BUF_UNLIMITED);
        put_uint(&lab, 1, (uint64_t)g->span_key);
        put_uint(&lab, 2, (uint64_t)(g->span_val0 + (int32_t)rng_below(&g->span_rng, g->o->spans)));
        put_msg(t, 3, &lab);
        buf_free(&lab);
    }
    put_msg(b, 2, t);
}

static int32_t intern(gen_state_t *g, buf_t *strings, int32_t *next, const char *s)
{
    put_bytes(strings, 6, s, strlen(s));
    return (*next)++;
}

static void mark_used(gen_state_t *g, uint8_t *used)
{
    const svc_model_t *m = g->m;
    for (size_t p = 0; p < m->npaths; p++) {
        for (size_t leaf = 0; leaf <= NLEAVES; leaf++) {
            if (g->counts[p * (NLEAVES + 1) + leaf] == 0) continue;
            for (size_t d = 0; d < m->len[p]; d++)
                used[m->frames[m->off[p] + d]] = 1;
            if (leaf) used[leaf_func(m, leaf)] = 1;
        }
    }
}

/* Functions, locations, mapping and the string table of one profile. */
static void encode_symbols(gen_state_t *g, const uint8_t *used, buf_t *strings, int32_t *next)
{
    const svc_model_t *m = g->m;
    buf_t *b = &g->pb, *t = &g->tmp;
    char bin[64];
    snprintf(bin, sizeof bin, "/app/%s", m->name);
    int32_t bin_s = intern(g, strings, next, bin);
    put_uint(t, 1, 1);
    put_uint(t, 2, 0x400000);
    put_uint(t, 3, 0x400000 + 64 * m->nfuncs + 4096);
    put_uint(t, 5, (uint64_t)bin_s);
    put_uint(t, 7, 1);
    put_uint(t, 8, 1);
    put_uint(t, 9, 1);
    put_msg(b, 3, t);
    for (size_t f = 0; f < m->nfuncs; f++) {
        if (!used[f]) continue;
        int32_t ns = intern(g, strings, next, m->fname[f]);
        int32_t fs = intern(g, strings, next, m->ffile[f]);
        put_uint(t, 1, f + 1);
        put_uint(t, 2, (uint64_t)ns);
        put_uint(t, 3, (uint64_t)ns);
        put_uint(t, 4, (uint64_t)fs);
        put_uint(t, 5, (uint64_t)m->fline[f]);
        put_msg(b, 5, t);
        buf_t line;
        buf_init(&line, BUF_UNLIMITED);
        put_uint(&line, 1, f + 1);
        put_uint(&line, 2, (uint64_t)m->fline[f] + 3);
        put_uint(t, 1, f + 1);
        put_uint(t, 2, 1);
        put_uint(t, 3, 0x400000 + 64 * f + 17);
        put_msg(t, 4, &line);
        buf_free(&line);
        put_msg(b, 4, t);
    }
}

static void value_types(gen_state_t *g, buf_t *strings, int32_t *next, bench_profile_t *out)
{
    static const char *const cpu[][2] = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    static const char *const heap[][2] = {{"alloc_objects", "count"},
                                          {"alloc_space", "bytes"},
                                          {"inuse_objects", "count"},
                                          {"inuse_space", "bytes"}};
    const char *const(*vt)[2] = g->o->kind == GEN_CPU ? cpu : heap;
    size_t n = g->o->kind == GEN_CPU ? 2 : 4;
    for (size_t i = 0; i < n; i++) {
        put_uint(&g->tmp, 1, (uint64_t)intern(g, strings, next, vt[i][0]));
        put_uint(&g->tmp, 2, (uint64_t)intern(g, strings, next, vt[i][1]));
        put_msg(&g->pb, 1, &g->tmp);
        snprintf(out->types[i], sizeof out->types[i], "%s/%s", vt[i][0], vt[i][1]);
    }
    out->ntypes = n;
    const char *pt = g->o->kind == GEN_CPU ? "cpu" : "space";
    const char *pu = g->o->kind == GEN_CPU ? "nanoseconds" : "bytes";
    put_uint(&g->tmp, 1, (uint64_t)intern(g, strings, next, pt));
    put_uint(&g->tmp, 2, (uint64_t)intern(g, strings, next, pu));
    put_msg(&g->pb, 11, &g->tmp);
    put_uint(&g->pb, 12, g->o->kind == GEN_CPU ? 10000000 : 524288);
}

static int encode_profile(gen_state_t *g, bench_rng_t *r, int64_t t_s, bench_profile_t *out)
{
    buf_t strings;
    buf_init(&strings, BUF_UNLIMITED);
    int32_t next = 0;
    intern(g, &strings, &next, "");
    buf_reset(&g->pb);
    value_types(g, &strings, &next, out);
    if (g->o->spans > 0) { /* span ids of 16 hex digits, as tracers print them */
        g->span_key = intern(g, &strings, &next, "span_id");
        uint64_t h = g->o->seed ^ (uint64_t)t_s * 0x9e3779b97f4a7c15u; /* profile's own ids */
        for (const char *c = out->name; *c; c++)
            h = (h ^ (uint8_t)*c) * 0x100000001b3u;
        g->span_rng = (bench_rng_t){h};
        for (size_t i = 0; i < g->o->spans; i++) {
            char id[17];
            snprintf(id, sizeof id, "%016llx", (unsigned long long)rng_next(&g->span_rng));
            int32_t k = intern(g, &strings, &next, id);
            if (i == 0) g->span_val0 = k;
        }
    }
    const svc_model_t *m = g->m;
    for (size_t p = 0; p < m->npaths; p++)
        for (size_t leaf = 0; leaf <= NLEAVES; leaf++) {
            uint32_t c = g->counts[p * (NLEAVES + 1) + leaf];
            if (c) encode_sample(g, p, leaf, c, r, out);
        }
    uint8_t *used = calloc(m->nfuncs, 1);
    if (used == NULL) return ERR_NOMEM;
    mark_used(g, used);
    encode_symbols(g, used, &strings, &next);
    free(used);
    buf_append(&g->pb, strings.data, strings.len);
    buf_free(&strings);
    if (g->o->set_time) put_uint(&g->pb, 9, (uint64_t)t_s * 1000000000u);
    put_uint(&g->pb, 10, 10000000000u);
    size_t bound = libdeflate_gzip_compress_bound(g->gz, g->pb.len);
    out->gz = malloc(bound);
    if (out->gz == NULL) return ERR_NOMEM;
    out->gz_len = libdeflate_gzip_compress(g->gz, g->pb.data, g->pb.len, out->gz, bound);
    out->raw_len = g->pb.len;
    return out->gz_len ? 0 : ERR_INTERNAL;
}

static int gen_service(gen_state_t *g, size_t s, profile_set_t *out)
{
    const gen_options_t *o = g->o;
    for (size_t pod = 0; pod < o->pods; pod++) {
        int v2 = pod >= o->pods / 2;
        pod_weights(g, s, pod, v2);
        bench_rng_t r = {o->seed * 31337u + s * 65537u + pod};
        for (size_t i = 0; i < o->profiles; i++) {
            bench_profile_t *p = profile_set_add(out);
            if (p == NULL) return ERR_NOMEM;
            p->time_s = o->start_s + (int64_t)i * o->step_s;
            snprintf(p->name, sizeof p->name, "%s{pod=%s-%04x-%zu,region=%s,version=%s}",
                     g->m->name, g->m->name, (unsigned)(o->seed * 2654435761u + s) & 0xffff, pod,
                     pod % 3 == 0   ? "eu-west-1"
                     : pod % 3 == 1 ? "us-east-1"
                                    : "ap-south-1",
                     v2 ? "v2" : "v1");
            draw_samples(g, &r);
            int rc = encode_profile(g, &r, p->time_s, p);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

static int cmp_time(const void *a, const void *b)
{
    const bench_profile_t *x = a, *y = b;
    return (x->time_s > y->time_s) - (x->time_s < y->time_s);
}

int gen_fleet(const gen_options_t *o, profile_set_t *out)
{
    gen_state_t g = {.o = o};
    buf_init(&g.pb, BUF_UNLIMITED);
    buf_init(&g.tmp, BUF_UNLIMITED);
    g.gz = libdeflate_alloc_compressor(o->gzip_level);
    size_t first = out->n;
    int rc = g.gz ? 0 : ERR_NOMEM;
    for (size_t s = 0; rc == 0 && s < o->services; s++) {
        svc_model_t m;
        rc = svc_build(&m, o, s);
        g.m = &m;
        g.cum = rc ? NULL : calloc(m.npaths, sizeof *g.cum);
        g.counts = rc ? NULL : calloc(m.npaths * (NLEAVES + 1), sizeof *g.counts);
        if (rc == 0 && (!g.cum || !g.counts)) rc = ERR_NOMEM;
        if (rc == 0) rc = gen_service(&g, s, out);
        free(g.cum);
        free(g.counts);
        svc_free(&m);
    }
    libdeflate_free_compressor(g.gz);
    buf_free(&g.pb);
    buf_free(&g.tmp);
    if (rc == 0) qsort(out->p + first, out->n - first, sizeof *out->p, cmp_time);
    return rc;
}

int gen_flag(int argc, char **argv, int *i, gen_options_t *o)
{
    uint64_t v;
    const char *s;
    if (flag_u64(argc, argv, i, "--seed", &o->seed)) return 1;
    if (flag_u64(argc, argv, i, "--services", &v)) return o->services = v, 1;
    if (flag_u64(argc, argv, i, "--pods", &v)) return o->pods = v, 1;
    if (flag_u64(argc, argv, i, "--profiles", &v)) return o->profiles = v, 1;
    if (flag_u64(argc, argv, i, "--step", &v)) return o->step_s = (int64_t)v, 1;
    if (flag_u64(argc, argv, i, "--start", &v)) return o->start_s = (int64_t)v, 1;
    if (flag_u64(argc, argv, i, "--funcs", &v)) return o->funcs = v, 1;
    if (flag_u64(argc, argv, i, "--paths", &v)) return o->paths = v ? v : 1, 1;
    if (flag_u64(argc, argv, i, "--samples", &v)) return o->samples = v, 1;
    if (flag_u64(argc, argv, i, "--spans", &v)) return o->spans = v, 1;
    if (flag_u64(argc, argv, i, "--gzip-level", &v)) return o->gzip_level = (int)v, 1;
    if (strcmp(argv[*i], "--no-time") == 0) return o->set_time = 0, 1;
    if (flag_str(argc, argv, i, "--kind", &s)) {
        gen_options_t d;
        gen_options_default(&d, strcmp(s, "heap") == 0 ? GEN_HEAP : GEN_CPU);
        o->kind = d.kind;
        o->funcs = d.funcs;
        o->paths = d.paths;
        o->samples = d.samples;
        return 1;
    }
    return 0;
}
