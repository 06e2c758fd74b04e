/* test_ingest_spanheap.c — a traced service's labelled heap push (issue #9).
 *
 * A Go service that is traced labels its heap profile's samples with the
 * span that allocated: one sample per (stack, span), four sample types
 * (alloc_objects, alloc_space, inuse_objects, inuse_space), a few thousand
 * stacks over a few hundred functions, 16 span ids. Such a push, generated
 * here at about 300 KB gzipped, must be accepted under the default limits
 * (it was refused with 413 at its span trees, which held about 15 times its
 * gunzipped size), hold at most three quarters of
 * ingest-request-memory-per-byte per payload byte (what the real profiles
 * of the corpus are held to), and give every span the tree its samples give
 * alone: each span tree of each sample type encodes to the same bytes as
 * the series tree of a push of that span's samples only.
 *
 * Randomised: the seed is printed; SPANHEAP_SEED=N runs that one.
 */
#include "common/alloc.h"
#include "test_ingest_util.h"

#define NFUNCS 400
#define NLEAVES 5
#define NPATHS 6400
#define NSPANS 16
#define MAX_DEPTH 48

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static size_t rng_below(rng_t *r, size_t n)
{
    return (size_t)(rng_next(r) % n);
}

/* The service: locations (one per function; the leaves are the runtime's
 * allocation functions) and paths (root first), each extending a prefix of
 * an earlier one as a call graph's stacks share their callers. */
typedef struct service {
    uint64_t loc[NFUNCS + NLEAVES];
    uint32_t *frames; /* NPATHS x MAX_DEPTH, root first */
    uint32_t len[NPATHS];
    int64_t objsize[NPATHS];
} service_t;

static void make_service(pb_t *b, service_t *s, rng_t *r)
{
    static const char *const leaves[NLEAVES] = {"runtime.mallocgc", "runtime.newobject",
                                                "runtime.makeslice", "runtime.growslice",
                                                "bytes.growSlice"};
    static const int64_t sizes[] = {16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 4096, 32768};
    uint64_t mapping = pb_mapping(b, 0x400000, 0x2000000, 0, "/usr/local/bin/checkout");
    char name[160], file[160];
    for (size_t f = 0; f < NFUNCS + NLEAVES; f++) {
        if (f < NFUNCS) {
            snprintf(name, sizeof name,
                     "github.com/acme/checkout/internal/pkg%zu.(*T%zu).Method%zu", f / 20, f % 7,
                     f);
            snprintf(file, sizeof file, "/src/checkout/internal/pkg%zu/file%zu.go", f / 20, f % 5);
        } else {
            snprintf(name, sizeof name, "%s", leaves[f - NFUNCS]);
            snprintf(file, sizeof file, "/usr/local/go/src/runtime/malloc.go");
        }
        uint64_t fn = pb_function(b, name, file);
        s->loc[f] = pb_location(b, mapping, 0x401000 + 0x40 * f, 1, &fn);
    }
    s->frames = malloc((size_t)NPATHS * MAX_DEPTH * sizeof *s->frames);
    for (size_t p = 0; p < NPATHS; p++) {
        uint32_t *fr = s->frames + p * MAX_DEPTH, n = 0;
        if (p > 0) { /* a caller prefix of an earlier path */
            size_t q = rng_below(r, p);
            n = 1 + (uint32_t)rng_below(r, s->len[q] - 1);
            memcpy(fr, s->frames + q * MAX_DEPTH, n * sizeof *fr);
        }
        for (size_t more = 1 + rng_below(r, 6); more > 0 && n < MAX_DEPTH - 1; more--)
            fr[n++] = (uint32_t)rng_below(r, NFUNCS);
        fr[n++] = NFUNCS + (uint32_t)rng_below(r, NLEAVES);
        s->len[p] = n;
        s->objsize[p] = sizes[rng_below(r, sizeof sizes / sizeof *sizes)];
    }
}

/* One sample of path p in span `span` (-1: no label): its four values. */
static void add_sample(pb_t *b, const service_t *s, size_t p, int span, rng_t *r)
{
    uint64_t locs[MAX_DEPTH];
    for (size_t d = 0; d < s->len[p]; d++) /* leaf first */
        locs[d] = s->loc[s->frames[p * MAX_DEPTH + s->len[p] - 1 - d]];
    int64_t objs = 512 * (int64_t)(1 + rng_below(r, 8));
    int64_t live = rng_below(r, 4) == 0 ? 0 : objs * (int64_t)rng_below(r, 100) / 100;
    int64_t v[4] = {objs, objs * s->objsize[p], live, live * s->objsize[p]};
    char kv[40];
    snprintf(kv, sizeof kv, "span_id=%016llx",
             (unsigned long long)(0x9e3779b97f4a7c15ULL * (uint64_t)(span + 1)));
    pb_sample(b, s->len[p], locs, 4, v, span >= 0 ? kv : NULL, NULL);
}

/* The push: every path in 1 to 6 of the NSPANS spans, one sample each;
 * only == -1: all, labelled; else the samples of span `only` alone,
 * unlabelled (the same stacks and values, drawn from the same seed). */
static uint8_t *make_push(uint64_t seed, int only, size_t *raw_len, size_t *gz_len)
{
    pb_t b;
    pb_init(&b);
    static const char *const types[4][2] = {{"alloc_objects", "count"},
                                            {"alloc_space", "bytes"},
                                            {"inuse_objects", "count"},
                                            {"inuse_space", "bytes"}};
    for (size_t t = 0; t < 4; t++)
        pb_sample_type(&b, types[t][0], types[t][1]);
    pb_period(&b, "space", "bytes", 524288);
    rng_t r = {seed};
    service_t s;
    make_service(&b, &s, &r);
    for (size_t p = 0; p < NPATHS; p++) {
        int first = (int)rng_below(&r, NSPANS), n = 1 + (int)rng_below(&r, 6);
        for (int k = 0; k < n; k++) {
            int span = (first + k * 5) % NSPANS;
            rng_t vr = {seed ^ (p * 131 + (size_t)span) * 0x2545f4914f6cdd1dULL};
            rng_next(&vr);
            if (only < 0 || only == span) add_sample(&b, &s, p, only < 0 ? span : -1, &vr);
        }
    }
    uint8_t *raw = pb_pack(&b, raw_len);
    pb_free(&b);
    free(s.frames);
    uint8_t *gz = test_gzip(raw, *raw_len, gz_len);
    free(raw);
    return gz;
}

static uint64_t span_value_id(int span)
{
    char hex[20];
    snprintf(hex, sizeof hex, "%016llx",
             (unsigned long long)(0x9e3779b97f4a7c15ULL * (uint64_t)(span + 1)));
    return storage_span_id(hex, 16);
}

/* The encoding of span tree sp into out (ingest holds it encoded). */
static void span_encoding(const storage_span_tree_t *sp, buf_t *out)
{
    buf_reset(out);
    if (sp->tree != NULL)
        CHECK_EQ_INT(calltree_encode(sp->tree, out), 0);
    else
        CHECK_EQ_INT(buf_append(out, sp->enc, sp->enc_len), 0);
}

static const storage_series_write_t *series_of_type(const ingest_profile_t *p, const char *st)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; i < w->nseries; i++) {
        const char *pt = labels_get(w->series[i].labels, LABEL_PROFILE_TYPE);
        if (pt != NULL && strstr(pt, st) != NULL) return &w->series[i];
    }
    return NULL;
}

/* Each span tree is the tree of that span's samples pushed alone. */
static void check_spans_exact(const ingest_profile_t *p, uint64_t seed)
{
    static const char *const types[4] = {
        ":alloc_objects:", ":alloc_space:", ":inuse_objects:", ":inuse_space:"};
    buf_t got, want;
    buf_init(&got, BUF_UNLIMITED);
    buf_init(&want, BUF_UNLIMITED);
    size_t compared = 0;
    for (int span = 0; span < NSPANS; span++) {
        size_t rn, gn;
        uint8_t *gz = make_push(seed, span, &rn, &gn);
        ingest_request_t r = test_req("checkout.alloc_objects", "pprof", gz, gn);
        ingest_profile_t *alone;
        errmsg_t em;
        CHECK_EQ_INT(test_parse(&r, NULL, &alone, &em), 0);
        for (size_t t = 0; alone != NULL && t < 4; t++) {
            const storage_series_write_t *sw = series_of_type(p, types[t]);
            const storage_series_write_t *aw = series_of_type(alone, types[t]);
            const storage_span_tree_t *sp = NULL;
            for (size_t k = 0; sw != NULL && k < sw->nspans; k++)
                if (sw->spans[k].id == span_value_id(span)) sp = &sw->spans[k];
            if (aw == NULL) { /* no sample of this type in the span */
                CHECK(sp == NULL);
                continue;
            }
            CHECK(sp != NULL);
            if (sp == NULL) continue;
            span_encoding(sp, &got);
            buf_reset(&want);
            CHECK_EQ_INT(calltree_encode(aw->tree, &want), 0);
            CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
            compared++;
        }
        ingest_profile_free(alone);
        free(gz);
    }
    fprintf(stderr, "span trees equal to their spans' samples pushed alone: %zu\n", compared);
    CHECK(compared >= NSPANS * 3);
    buf_free(&got);
    buf_free(&want);
}

int main(void)
{
    uint64_t seed = 0x5eed5eedULL;
    const char *e = getenv("SPANHEAP_SEED");
    if (e != NULL) seed = strtoull(e, NULL, 0);
    fprintf(stderr, "seed %llu (SPANHEAP_SEED)\n", (unsigned long long)seed);
    size_t rn, gn;
    uint8_t *gz = make_push(seed, -1, &rn, &gn);
    alloc_budget_t b;
    alloc_budget_init(&b, 0); /* counted, unlimited: the push's own cap decides */
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.inflight = &b;
    ingest_request_t r = test_req("checkout.alloc_objects", "pprof", gz, gn);
    ingest_profile_t *p;
    errmsg_t em;
    int rc = test_parse(&r, &lim, &p, &em);
    size_t peak = p != NULL ? ingest_profile_peak_bytes(p) : 0;
    fprintf(stderr, "labelled heap push: %zu B gzipped, %zu B gunzipped, %d spans: %s%s\n", gn, rn,
            NSPANS, rc == 0 ? "accepted" : "refused: ", rc == 0 ? "" : em.text);
    CHECK_EQ_INT(rc, 0);
    if (p != NULL) {
        fprintf(stderr, "peak %zu B = %.2f x payload (cap %u x, at least %u B)\n", peak,
                (double)peak / (double)rn, INGEST_REQUEST_MEMORY_PER_BYTE,
                INGEST_REQUEST_MEMORY_FLOOR);
        CHECK((double)peak <= 0.75 * INGEST_REQUEST_MEMORY_PER_BYTE * (double)rn);
    }
    ingest_profile_free(p);
    /* the trees, whatever the push held to make them */
    lim.request_memory_per_byte = 1000;
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    if (p != NULL) {
        fprintf(stderr, "with 1000 per byte: peak %.2f x payload\n",
                (double)ingest_profile_peak_bytes(p) / (double)rn);
        check_spans_exact(p, seed);
    }
    ingest_profile_free(p);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    free(gz);
    return check_exit();
}
