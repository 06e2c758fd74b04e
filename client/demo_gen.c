/* demo_gen.c — builds the demo fleet's gzipped pprof profiles (demo_gen.h).
 *
 * A profile is assembled in a fixed-size builder (the fleet is static data,
 * so its sizes are known), packed with protobuf-c and gzipped with
 * libdeflate. Functions and locations are one per distinct frame name; file
 * names and line numbers are derived from the name so they stay stable.
 * Traced requests are carved out of finished CPU samples (add_requests), so
 * they move ticks between samples and never change a total.
 */
#include <inttypes.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/demo_gen.h"
#include "common/proto/pprof.pb-c.h"

#define MAX_FUNCS 256
#define MAX_STRINGS (2 * MAX_FUNCS + 16)
#define MAX_SAMPLES 256
#define MAX_VARIANTS 4 /* leaf variants one CPU stack is split into */
#define MAX_DEPTH 32
#define POOL_BYTES 32768
#define CPU_HZ 100
#define CPU_PERIOD_NS (1000000000LL / CPU_HZ)
#define HEAP_PERIOD 524288
#define MAX_REQUESTS 16

typedef Perftools__Profiles__Function pb_function_t;
typedef Perftools__Profiles__Location pb_location_t;
typedef Perftools__Profiles__Line pb_line_t;
typedef Perftools__Profiles__Sample pb_sample_t;
typedef Perftools__Profiles__ValueType pb_value_type_t;
typedef Perftools__Profiles__Label pb_label_t;

typedef struct builder {
    ProtobufCBinaryData strs[MAX_STRINGS];
    size_t nstrs;
    char pool[POOL_BYTES]; /* derived file names */
    size_t pool_len;
    pb_function_t funcs[MAX_FUNCS];
    pb_function_t *func_ptrs[MAX_FUNCS];
    pb_location_t locs[MAX_FUNCS];
    pb_location_t *loc_ptrs[MAX_FUNCS];
    pb_line_t lines[MAX_FUNCS];
    pb_line_t *line_ptrs[MAX_FUNCS];
    size_t nfuncs;
    pb_sample_t samples[MAX_SAMPLES];
    pb_sample_t *sample_ptrs[MAX_SAMPLES];
    uint64_t loc_ids[MAX_SAMPLES][MAX_DEPTH];
    int64_t values[MAX_SAMPLES][DEMO_MAX_TYPES];
    int stack_of[MAX_SAMPLES]; /* index of the service stack each sample came from */
    pb_label_t labels[MAX_SAMPLES][2];
    pb_label_t *label_ptrs[MAX_SAMPLES][2];
    size_t nsamples;
    pb_value_type_t types[DEMO_MAX_TYPES + 1]; /* + period type */
    pb_value_type_t *type_ptrs[DEMO_MAX_TYPES];
    int ntypes;
} builder_t;

typedef struct rng {
    uint64_t s;
} rng_t;

/* splitmix64: small, fast, and the same on every platform. */
static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static double rng_range(rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static int64_t intern(builder_t *b, const char *p, size_t n)
{
    for (size_t i = 0; i < b->nstrs; i++)
        if (b->strs[i].len == n && memcmp(b->strs[i].data, p, n) == 0) return (int64_t)i;
    if (b->nstrs == MAX_STRINGS) return -1;
    b->strs[b->nstrs] = (ProtobufCBinaryData){n, (uint8_t *)p};
    return (int64_t)b->nstrs++;
}

/* "github.com/acme/api/store.(*DB).Get" -> "github.com/acme/api/store/store.go" */
static int64_t file_of(builder_t *b, const char *name, size_t n)
{
    size_t slash = 0, end = n;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/') slash = i + 1;
    for (size_t i = slash; i < n; i++)
        if (name[i] == '.') {
            end = i;
            break;
        }
    char *dst = b->pool + b->pool_len;
    int len = snprintf(dst, POOL_BYTES - b->pool_len, "%.*s/%.*s.go", (int)end, name,
                       (int)(end - slash), name + slash);
    if (len < 0 || (size_t)len >= POOL_BYTES - b->pool_len) return -1;
    int64_t idx = intern(b, dst, (size_t)len);
    if (idx == (int64_t)b->nstrs - 1 && b->strs[idx].data == (uint8_t *)dst)
        b->pool_len += (size_t)len;
    return idx;
}

/* Location id (== function id) of a frame name, added when new. */
static uint64_t location_of(builder_t *b, const char *name, size_t n)
{
    int64_t s = intern(b, name, n);
    if (s < 0) return 0;
    for (size_t i = 0; i < b->nfuncs; i++)
        if (b->funcs[i].name == s) return i + 1;
    int64_t file = file_of(b, name, n);
    if (file < 0 || b->nfuncs == MAX_FUNCS) return 0;
    size_t i = b->nfuncs++;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: a stable line number */
    for (size_t k = 0; k < n; k++)
        h = (h ^ (uint8_t)name[k]) * 1099511628211ULL;
    perftools__profiles__function__init(&b->funcs[i]);
    b->funcs[i].id = i + 1;
    b->funcs[i].name = b->funcs[i].system_name = s;
    b->funcs[i].filename = file;
    b->funcs[i].start_line = 10 + (int64_t)(h % 800);
    perftools__profiles__line__init(&b->lines[i]);
    b->lines[i].function_id = i + 1;
    b->lines[i].line = b->funcs[i].start_line + 3 + (int64_t)(h % 17);
    b->line_ptrs[i] = &b->lines[i];
    perftools__profiles__location__init(&b->locs[i]);
    b->locs[i].id = i + 1;
    b->locs[i].address = 0x401000 + 0x40 * i;
    b->locs[i].n_line = 1;
    b->locs[i].line = &b->line_ptrs[i];
    b->func_ptrs[i] = &b->funcs[i];
    b->loc_ptrs[i] = &b->locs[i];
    return i + 1;
}

/* Appends the location ids of ';'-joined frames (root first) to ids. */
static int add_frames(builder_t *b, const char *frames, uint64_t *ids, size_t *depth)
{
    for (const char *p = frames; p != NULL && *p && *depth < MAX_DEPTH;) {
        size_t n = strcspn(p, ";");
        if ((ids[(*depth)++] = location_of(b, p, n)) == 0) return -1;
        p += n + (p[n] == ';');
    }
    return 0;
}

/* Adds one sample: frames root first, then the optional tail frames. */
static int add_sample(builder_t *b, const char *frames, const char *tail, const int64_t *values,
                      errmsg_t *em)
{
    uint64_t ids[MAX_DEPTH];
    size_t depth = 0;
    if (add_frames(b, frames, ids, &depth) != 0 || add_frames(b, tail, ids, &depth) != 0)
        return errmsg_set(em, ERR_LIMIT, "demo profile builder full");
    if (b->nsamples == MAX_SAMPLES)
        return errmsg_set(em, ERR_LIMIT, "demo profile has too many samples");
    size_t s = b->nsamples++;
    for (size_t d = 0; d < depth; d++) /* pprof lists the leaf first */
        b->loc_ids[s][d] = ids[depth - 1 - d];
    memcpy(b->values[s], values, sizeof(int64_t) * (size_t)b->ntypes);
    perftools__profiles__sample__init(&b->samples[s]);
    b->samples[s].n_location_id = depth;
    b->samples[s].location_id = b->loc_ids[s];
    b->samples[s].n_value = (size_t)b->ntypes;
    b->samples[s].value = b->values[s];
    b->sample_ptrs[s] = &b->samples[s];
    return ERR_OK;
}

static void set_types(builder_t *b, demo_kind_t k, demo_profile_t *out)
{
    static const char *cpu[][2] = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    static const char *heap[][2] = {{"alloc_objects", "count"},
                                    {"alloc_space", "bytes"},
                                    {"inuse_objects", "count"},
                                    {"inuse_space", "bytes"}};
    const char *(*t)[2] = k == DEMO_CPU ? cpu : heap;
    b->ntypes = k == DEMO_CPU ? 2 : 4;
    intern(b, "", 0);
    for (int i = 0; i <= b->ntypes; i++) {
        const char *ty = i < b->ntypes ? t[i][0] : k == DEMO_CPU ? "cpu" : "space";
        const char *un = i < b->ntypes ? t[i][1] : k == DEMO_CPU ? "nanoseconds" : "bytes";
        perftools__profiles__value_type__init(&b->types[i]);
        b->types[i].type = intern(b, ty, strlen(ty));
        b->types[i].unit = intern(b, un, strlen(un));
        if (i < b->ntypes) {
            b->type_ptrs[i] = &b->types[i];
            snprintf(out->types[i], sizeof out->types[i], "%s/%s", ty, un);
        }
    }
    out->ntypes = b->ntypes;
}

/* Relative weight of stack s in this profile, 0 when absent. */
static double stack_weight(const demo_stack_t *s, int v2, rng_t *r)
{
    if (s->only_v2 && !v2) return 0;
    double w = s->cpu_weight * (v2 && s->v2_factor > 0 ? s->v2_factor : 1);
    double jitter = rng_range(r, 0.7, 1.3);
    if (s->cpu_weight < 30 && rng_range(r, 0, 1) < 0.1)
        return 0; /* small paths are not caught by every profile */
    return w * jitter;
}

/* Runtime leaves a CPU sample may end in below its stack's own leaf. */
static const char *const cpu_tails[] = {NULL,
                                        "runtime.memmove",
                                        "runtime.mallocgc;runtime.nextFreeFast",
                                        "runtime.mapaccess2_faststr;runtime.memequal",
                                        "runtime.growslice;runtime.mallocgc",
                                        "sync.(*Mutex).Lock;runtime.futex",
                                        "runtime.memclrNoHeapPointers"};
#define NTAILS (sizeof cpu_tails / sizeof cpu_tails[0])

/* Splits one stack's CPU ticks over a few leaf variants. */
static int add_cpu(builder_t *b, const demo_service_t *svc, size_t si, int64_t ticks, rng_t *r,
                   demo_profile_t *out, errmsg_t *em)
{
    const demo_stack_t *s = &svc->stacks[si];
    int nv = 1 + (int)(rng_next(r) % MAX_VARIANTS);
    size_t first = (size_t)(rng_next(r) % (NTAILS - 1));
    for (int j = 0; j < nv && ticks > 0; j++) {
        int64_t v[DEMO_MAX_TYPES];
        /* the stack's own leaf keeps most of the time, runtime leaves share the rest */
        double share = j == 0 ? rng_range(r, 0.5, 0.85) : rng_range(r, 0.3, 0.7);
        v[0] = j == nv - 1 ? ticks : (int64_t)((double)ticks * share);
        const char *tail = j == 0 ? NULL : cpu_tails[1 + (first + (size_t)j) % (NTAILS - 1)];
        if (v[0] == 0) continue;
        ticks -= v[0];
        v[1] = v[0] * CPU_PERIOD_NS;
        int rc = add_sample(b, s->frames, tail, v, em);
        if (rc != ERR_OK) return rc;
        b->stack_of[b->nsamples - 1] = (int)si;
        out->totals[0] += v[0];
        out->totals[1] += v[1];
    }
    return ERR_OK;
}

static int add_heap(builder_t *b, const demo_stack_t *s, double w, rng_t *r, demo_profile_t *out,
                    errmsg_t *em)
{
    int64_t v[DEMO_MAX_TYPES];
    v[0] = (int64_t)(w * 40 * rng_range(r, 0.8, 1.2));
    v[1] = v[0] * s->alloc_size;
    v[2] = (int64_t)((double)v[0] * rng_range(r, 0.05, 0.3));
    v[3] = v[2] * s->alloc_size;
    if (v[0] == 0) return ERR_OK;
    int rc = add_sample(b, s->frames, "runtime.mallocgc", v, em);
    for (int t = 0; rc == ERR_OK && t < 4; t++)
        out->totals[t] += v[t];
    return rc;
}

static int fill_samples(builder_t *b, const demo_service_t *svc, demo_kind_t k, int v2, rng_t *r,
                        demo_profile_t *out, errmsg_t *em)
{
    double w[MAX_SAMPLES], sum = 0;
    size_t n = svc->nstacks < MAX_SAMPLES ? svc->nstacks : MAX_SAMPLES;
    for (size_t i = 0; i < n; i++)
        sum += w[i] = stack_weight(&svc->stacks[i], v2, r);
    /* a slower v2 burns more CPU in total, not just a different mix */
    double base = 0, now = 0;
    for (size_t i = 0; i < n; i++) {
        const demo_stack_t *s = &svc->stacks[i];
        base += s->only_v2 ? 0 : s->cpu_weight;
        now += s->only_v2 && !v2 ? 0 : s->cpu_weight * (v2 && s->v2_factor ? s->v2_factor : 1);
    }
    double ticks = svc->cores * DEMO_PERIOD_S * CPU_HZ * rng_range(r, 0.85, 1.15) * now / base;
    int rc = ERR_OK;
    for (size_t i = 0; i < n && rc == ERR_OK; i++) {
        const demo_stack_t *s = &svc->stacks[i];
        if (w[i] <= 0) continue;
        if (k == DEMO_CPU)
            rc = add_cpu(b, svc, i, (int64_t)(ticks * w[i] / sum + 0.5), r, out, em);
        else if (s->alloc_size > 0)
            rc = add_heap(b, s, w[i], r, out, em);
    }
    return rc;
}

/* Interns a copy of s[0..n) kept in the builder's pool. */
static int64_t intern_pooled(builder_t *b, const char *s, size_t n)
{
    if (n > POOL_BYTES - b->pool_len) return -1;
    char *dst = b->pool + b->pool_len;
    memcpy(dst, s, n);
    int64_t idx = intern(b, dst, n);
    if (idx == (int64_t)b->nstrs - 1 && b->strs[idx].data == (uint8_t *)dst) b->pool_len += n;
    return idx;
}

/* The ids of request j of instance inst's profile at t: span_id is 16 hex
 * digits, trace_id 32; never all zeros. */
static void request_ids(const demo_params_t *p, size_t inst, int64_t t, int j, char span[17],
                        char trace[33])
{
    rng_t r = {p->seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)inst << 32) ^
               (uint64_t)t * 0xBF58476D1CE4E5B9ULL ^ ((uint64_t)j << 56) ^
               p->variant * 0x94D049BB133111EBULL};
    uint64_t s = rng_next(&r), hi = rng_next(&r), lo = rng_next(&r);
    snprintf(span, 17, "%016" PRIx64, s ? s : 1);
    snprintf(trace, 33, "%016" PRIx64 "%016" PRIx64, hi, lo ? lo : 1);
}

/* Moves up to ticks of sample from (which keeps at least one) into a new
 * sample of the same stack labelled keys[0]=ids[0], keys[1]=ids[1]. */
static int carve(builder_t *b, size_t from, int64_t ticks, const int64_t keys[2],
                 const int64_t ids[2], int64_t *moved, errmsg_t *em)
{
    int64_t *fv = b->values[from];
    if (ticks > fv[0] - 1) ticks = fv[0] - 1;
    if (ticks <= 0) return ERR_OK;
    if (b->nsamples == MAX_SAMPLES)
        return errmsg_set(em, ERR_LIMIT, "demo profile has too many samples");
    size_t s = b->nsamples++;
    fv[0] -= ticks;
    fv[1] = fv[0] * CPU_PERIOD_NS;
    b->values[s][0] = ticks;
    b->values[s][1] = ticks * CPU_PERIOD_NS;
    memcpy(b->loc_ids[s], b->loc_ids[from], sizeof b->loc_ids[s]);
    b->stack_of[s] = b->stack_of[from];
    perftools__profiles__sample__init(&b->samples[s]);
    b->samples[s].n_location_id = b->samples[from].n_location_id;
    b->samples[s].location_id = b->loc_ids[s];
    b->samples[s].n_value = (size_t)b->ntypes;
    b->samples[s].value = b->values[s];
    for (int l = 0; l < 2; l++) {
        perftools__profiles__label__init(&b->labels[s][l]);
        b->labels[s][l].key = keys[l];
        b->labels[s][l].str = ids[l];
        b->label_ptrs[s][l] = &b->labels[s][l];
    }
    b->samples[s].n_label = 2;
    b->samples[s].label = b->label_ptrs[s];
    b->sample_ptrs[s] = &b->samples[s];
    *moved += ticks;
    return ERR_OK;
}

/* Request j's share: the slow one takes 3/5 of every sample of the slow
 * stack plus a tick or two elsewhere; the others a few ticks of a few request
 * samples (cand). */
static int add_request(builder_t *b, const demo_service_t *svc, size_t base, const size_t *cand,
                       size_t nc, int slow, rng_t *r, const int64_t keys[2], const int64_t ids[2],
                       int64_t *moved, errmsg_t *em)
{
    int rc = ERR_OK;
    for (size_t i = 0; slow && i < base && rc == ERR_OK; i++)
        if (b->stack_of[i] == svc->slow_stack)
            rc = carve(b, i, b->values[i][0] * 3 / 5, keys, ids, moved, em);
    int extra = slow ? 2 : 2 + (int)(rng_next(r) % 3);
    for (int e = 0; e < extra && rc == ERR_OK; e++) {
        size_t from = cand[rng_next(r) % nc];
        rc = carve(b, from, 1 + (int64_t)(rng_next(r) % (slow ? 2 : 4)), keys, ids, moved, em);
    }
    return rc;
}

/* Hands parts of a CPU profile's request samples (those under the HTTP
 * server) to svc->requests traced requests; records the slow one's ids. */
static int add_requests(builder_t *b, const demo_params_t *p, size_t inst,
                        const demo_service_t *svc, int64_t t, demo_profile_t *out, errmsg_t *em)
{
    size_t base = b->nsamples, cand[MAX_SAMPLES], nc = 0;
    for (size_t i = 0; i < base; i++)
        if (strstr(svc->stacks[b->stack_of[i]].frames, "net/http.serverHandler.ServeHTTP;"))
            cand[nc++] = i;
    int n = svc->requests < MAX_REQUESTS ? svc->requests : MAX_REQUESTS;
    if (nc == 0 || n <= 0) return ERR_OK;
    int64_t keys[2] = {intern(b, "span_id", 7), intern(b, "trace_id", 8)};
    rng_t r = {(p->seed + 1) * 0xD6E8FEB86659FD93ULL ^ (uint64_t)t ^ ((uint64_t)inst << 48) ^
               p->variant};
    int slow = (int)(rng_next(&r) % (uint64_t)n);
    for (int j = 0; j < n; j++) {
        char span[17], trace[33];
        request_ids(p, inst, t, j, span, trace);
        int64_t ids[2] = {intern_pooled(b, span, 16), intern_pooled(b, trace, 32)};
        if (keys[0] < 0 || keys[1] < 0 || ids[0] < 0 || ids[1] < 0)
            return errmsg_set(em, ERR_LIMIT, "demo profile builder full");
        int64_t moved = 0;
        int rc = add_request(b, svc, base, cand, nc, j == slow, &r, keys, ids, &moved, em);
        if (rc != ERR_OK) return rc;
        if (j == slow && moved > 0) {
            memcpy(out->slow_span_id, span, sizeof span);
            memcpy(out->slow_trace_id, trace, sizeof trace);
        }
    }
    return ERR_OK;
}

static int pack_gzip(builder_t *b, demo_kind_t k, int64_t t, demo_profile_t *out, errmsg_t *em)
{
    Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
    p.n_sample_type = (size_t)b->ntypes;
    p.sample_type = b->type_ptrs;
    p.n_sample = b->nsamples;
    p.sample = b->sample_ptrs;
    p.n_location = p.n_function = b->nfuncs;
    p.location = b->loc_ptrs;
    p.function = b->func_ptrs;
    p.n_string_table = b->nstrs;
    p.string_table = b->strs;
    p.time_nanos = t * 1000000000LL;
    p.duration_nanos = DEMO_PERIOD_S * 1000000000LL;
    p.period_type = &b->types[b->ntypes];
    p.period = k == DEMO_CPU ? CPU_PERIOD_NS : HEAP_PERIOD;
    size_t raw_len = perftools__profiles__profile__get_packed_size(&p);
    uint8_t *raw = malloc(raw_len ? raw_len : 1);
    struct libdeflate_compressor *z = libdeflate_alloc_compressor(6);
    size_t bound = z ? libdeflate_gzip_compress_bound(z, raw_len) : 0;
    out->gz = raw && z ? malloc(bound) : NULL;
    if (out->gz != NULL) {
        perftools__profiles__profile__pack(&p, raw);
        out->gz_len = libdeflate_gzip_compress(z, raw, raw_len, out->gz, bound);
        out->raw_len = raw_len;
    }
    free(raw);
    if (z != NULL) libdeflate_free_compressor(z);
    if (out->gz == NULL || out->gz_len == 0)
        return errmsg_set(em, ERR_NOMEM, "demo: out of memory packing a profile");
    return ERR_OK;
}

int demo_generate(const demo_params_t *p, size_t i, demo_kind_t k, int64_t t, demo_profile_t *out,
                  errmsg_t *em)
{
    size_t n;
    const demo_instance_t *fleet = demo_fleet(&n);
    memset(out, 0, sizeof *out);
    if (i >= n) return errmsg_set(em, ERR_INVALID_ARGUMENT, "demo: no instance %zu", i);
    const demo_instance_t *in = &fleet[i];
    int v2 = t >= p->v2_at;
    rng_t r = {p->seed * 0x100000001B3ULL ^ (uint64_t)t * 31 ^ (i << 40) ^ ((uint64_t)k << 56) ^
               p->variant * 0x9E3779B97F4A7C15ULL};
    rng_next(&r);
    builder_t *b = calloc(1, sizeof *b);
    if (b == NULL) return errmsg_set(em, ERR_NOMEM, "demo: out of memory");
    set_types(b, k, out);
    int rc = fill_samples(b, in->service, k, v2, &r, out, em);
    if (rc == ERR_OK && k == DEMO_CPU && !p->no_spans)
        rc = add_requests(b, p, i, in->service, t, out, em);
    out->nsamples = b->nsamples;
    if (rc == ERR_OK) rc = pack_gzip(b, k, t, out, em);
    free(b);
    if (rc != ERR_OK) {
        demo_profile_free(out);
        return rc;
    }
    snprintf(out->name, sizeof out->name, "%s{env=prod,region=%s,pod=%s,version=%s}",
             in->service->name, in->region, in->pod, v2 ? "v2" : "v1");
    out->from = t;
    out->until = t + DEMO_PERIOD_S;
    return ERR_OK;
}

void demo_profile_free(demo_profile_t *p)
{
    free(p->gz);
    p->gz = NULL;
    p->gz_len = 0;
}
