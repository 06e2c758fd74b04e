/* test_ingest_hostile.c — what a push of about 1 MB may hold, by shape.
 *
 * Hostile pprof shapes of about 1 MiB gunzipped (a fresh root per sample, a
 * deep inlined location shared by every sample, many sample types, a fresh
 * span_id per sample) are pushed gzipped against an in-flight budget of
 * HOSTILE_MULTIPLE times their gunzipped size: whatever the push does
 * (accepted, or refused by a per-push cap), it must never be refused by
 * that budget, so it never held more. The same multiple must admit the
 * large real profiles of the shared corpus (when present); their peak
 * ratio is printed beside the hostile ones. Not timed.
 *
 * The bounds are what the defaults hold a push to. A push may hold
 * INGEST_REQUEST_MEMORY_PER_BYTE (8) bytes per gunzipped payload byte, so
 * none ever held more (HOSTILE_MULTIPLE is one more, for the bisection's
 * step); each shape has its own bound, a little over what it holds today:
 * fresh roots 6.24x (most of it the symbols of its fresh addresses, then
 * its call tree, the decoded index and the body), a deep inlined location
 * 2.71x (refused by the work budget), fresh span ids 6.25x, one span_id
 * on every sample of fresh roots (a span tree as large as the series
 * tree; each span tree names its own symbols) 7.08x, many sample
 * types 4.68x (1,000 series whose values are multiples of the first's),
 * deep stacks of a large CPU profile's shape 4.44x;
 * the largest real profile of the corpus REAL_MULTIPLE (5.17x: a CPU
 * profile of 0.17 distinct call-tree nodes per payload byte, two sample
 * types sharing one tree shape). While a tree held a value per node as
 * it grew (a sample's value now kept apart until the nodes are made)
 * these were 6.40x, 2.71x, 6.24x, 7.07x, 5.12x, 5.92x and 6.59x (6.71x
 * while the symbol table held a copy of the file name with every
 * symbol). With call-tree nodes naming their symbol
 * by its 64-bit id (12 bytes, not 8 and 8 bytes a distinct symbol) these
 * were 6.48x, 2.64x, 5.89x, 5.28x and 7.29x (many sample types 10.22x
 * while the trees made gave each further type 8 bytes a node of values);
 * with each node holding its first child and next sibling as the
 * tree grows 6.96x, 2.68x, 6.12x, 10.69x and 8.85x; with
 * symbol-table entries of 24 bytes (a pointer to the name and one to the
 * file) too 7.53x, 2.72x, 6.38x, 10.70x and 8.96x; with
 * totals kept per node and per type 8.8x, 2.8x, 7.0x, 20x
 * (refused at the budget of 20 then) and 14.4x; with call-tree nodes
 * charged 100 bytes each and a budget of one node per payload byte 12.3x,
 * 3.0x, 8.1x, 103x and 37.9x; docs/internals.md, "Ingest memory".
 */
#include <time.h>

#include "common/alloc.h"
#include "common/varint.h"
#include "test_ingest_util.h"

#define HOSTILE_MULTIPLE (INGEST_REQUEST_MEMORY_PER_BYTE + 1)
#define REAL_MULTIPLE 5.25
#define TARGET (1u << 20)

/* ---- a growable protobuf writer ---- */

typedef struct w {
    uint8_t *b;
    size_t n, cap;
} w_t;

static void w_room(w_t *w, size_t n)
{
    if (w->n + n <= w->cap) return;
    w->cap = (w->n + n) * 2;
    w->b = realloc(w->b, w->cap);
    if (w->b == NULL) abort();
}

static void w_varint(w_t *w, uint64_t v)
{
    w_room(w, 10);
    w->n += varint_put_u(w->b + w->n, v);
}

static void w_u(w_t *w, uint32_t num, uint64_t v)
{
    w_varint(w, (uint64_t)num << 3);
    w_varint(w, v);
}

static void w_bytes(w_t *w, uint32_t num, const void *p, size_t n)
{
    w_varint(w, (uint64_t)num << 3 | 2);
    w_varint(w, n);
    w_room(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_msg(w_t *w, uint32_t num, w_t *m)
{
    w_bytes(w, num, m->b, m->n);
    m->n = 0;
}

static void w_str(w_t *w, const char *s)
{
    w_bytes(w, 6, s, strlen(s));
}

/* string 0 "", 1 cpu, 2 nanoseconds; one sample type cpu/nanoseconds unless
 * types > 1 (then type i is named by string 3 + i). */
static void w_header(w_t *w, w_t *m, size_t types)
{
    w_str(w, "");
    w_str(w, "cpu");
    w_str(w, "nanoseconds");
    for (size_t i = 0; types > 1 && i < types; i++) {
        char s[32];
        snprintf(s, sizeof s, "t%zu", i);
        w_str(w, s);
    }
    for (size_t i = 0; i < types; i++) {
        w_u(m, 1, types > 1 ? 3 + i : 1);
        w_u(m, 2, 2);
        w_msg(w, 1, m);
    }
}

/* Each sample has its own location (an address): a new root each. */
static void shape_fresh_roots(w_t *w)
{
    w_t m = {0}, s = {0};
    w_header(w, &m, 1);
    for (uint64_t i = 1; w->n < TARGET; i++) {
        w_u(&m, 1, i);
        w_u(&m, 3, 0x400000 + i * 16);
        w_msg(w, 4, &m);
        w_u(&s, 1, i);
        w_u(&s, 2, 1);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
}

/* One location of 2,000 inlined functions under every sample, each sample
 * with its own leaf. */
static void shape_deep_inlined(w_t *w)
{
    w_t m = {0}, s = {0}, l = {0};
    w_header(w, &m, 1);
    for (uint64_t f = 1; f <= 2000; f++) {
        char name[32];
        snprintf(name, sizeof name, "inlined_%llu", (unsigned long long)f);
        w_str(w, name);
        w_u(&m, 1, f);
        w_u(&m, 2, 2 + f);
        w_msg(w, 5, &m);
    }
    w_u(&m, 1, 1);
    for (uint64_t f = 1; f <= 2000; f++) {
        w_u(&l, 1, f);
        w_msg(&m, 4, &l);
    }
    w_msg(w, 4, &m);
    for (uint64_t i = 2; w->n < TARGET; i++) {
        w_u(&m, 1, i);
        w_u(&m, 3, i);
        w_msg(w, 4, &m);
        w_u(&s, 1, i);
        w_u(&s, 1, 1);
        w_u(&s, 2, 1);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(l.b);
}

/* 1,000 sample types (one series each), samples of 1,000 values over
 * fresh locations. */
static void shape_many_types(w_t *w)
{
    w_t m = {0}, s = {0}, v = {0};
    size_t types = 1000;
    w_header(w, &m, types);
    for (size_t t = 0; t < types; t++)
        w_varint(&v, 1 + t % 100);
    for (uint64_t i = 1; w->n < TARGET; i++) {
        w_u(&m, 1, i);
        w_u(&m, 3, i);
        w_msg(w, 4, &m);
        w_u(&s, 1, i);
        w_bytes(&s, 2, v.b, v.n);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(v.b);
}

/* Every sample has its own span_id value (and its own location). */
static void shape_fresh_spans(w_t *w)
{
    w_t m = {0}, s = {0}, l = {0};
    w_header(w, &m, 1);
    w_str(w, "span_id");
    uint64_t next_str = 4;
    for (uint64_t i = 1; w->n < TARGET; i++) {
        char id[20];
        snprintf(id, sizeof id, "%016llx", (unsigned long long)i * 0x9e3779b97f4a7c15ULL);
        w_str(w, id);
        w_u(&m, 1, i);
        w_u(&m, 3, i);
        w_msg(w, 4, &m);
        w_u(&s, 1, i);
        w_u(&s, 2, 1);
        w_u(&l, 1, 3);
        w_u(&l, 2, next_str++);
        w_msg(&s, 3, &l);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(l.b);
}

/* A fresh root per sample, every sample labelled with one span_id: the
 * span tree is as large as the series tree. */
static void shape_one_span(w_t *w)
{
    w_t m = {0}, s = {0}, l = {0};
    w_header(w, &m, 1);
    w_str(w, "span_id");
    w_str(w, "00000000deadbeef");
    for (uint64_t i = 1; w->n < TARGET; i++) {
        w_u(&m, 1, i);
        w_u(&m, 3, 0x400000 + i * 16);
        w_msg(w, 4, &m);
        w_u(&s, 1, i);
        w_u(&s, 2, 1);
        w_u(&l, 1, 3);
        w_u(&l, 2, 4);
        w_msg(&s, 3, &l);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(l.b);
}

/* Deep stacks as a large CPU profile has them (large.cpu: 0.17 distinct
 * nodes per payload byte): 4,096 functions, each sample 64 frames, the 44
 * outermost along one of 4 shared paths, the 20 innermost drawn at random
 * (a fixed seed), so each sample adds about 20 nodes. */
static void shape_deep_stacks(w_t *w)
{
    w_t m = {0}, s = {0}, l = {0}, ids = {0};
    enum { NF = 4096, DEPTH = 64, SPINE = 44 };
    w_header(w, &m, 1);
    for (uint64_t f = 1; f <= NF; f++) {
        char name[32];
        snprintf(name, sizeof name, "pkg.fn%llu", (unsigned long long)f);
        w_str(w, name);
        w_u(&m, 1, f);
        w_u(&m, 2, 2 + f);
        w_msg(w, 5, &m);
        w_u(&m, 1, f);
        w_u(&l, 1, f);
        w_msg(&m, 4, &l);
        w_msg(w, 4, &m);
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 0; w->n < TARGET; i++) {
        for (uint64_t d = 0; d < DEPTH; d++) { /* leaf first */
            uint64_t depth = DEPTH - 1 - d;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w_varint(&ids, depth < SPINE ? 1 + (depth * 7 + i % 4) % 256 : 1 + x % NF);
        }
        w_bytes(&s, 1, ids.b, ids.n);
        ids.n = 0;
        w_u(&s, 2, 1 + i % 5);
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(l.b);
    free(ids.b);
}

/* Parses body (gzipped) with an in-flight budget of limit bytes (0: only
 * counted); *peak gets the push's peak charge when accepted. */
static int push(const uint8_t *gz, size_t n, size_t limit, size_t *peak, errmsg_t *em)
{
    alloc_budget_t b;
    alloc_budget_init(&b, limit);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.inflight = &b;
    lim.max_past_seconds = 100LL * 365 * 86400; /* corpus files carry old time_nanos */
    ingest_request_t r = test_req("hostile.cpu", "pprof", gz, n);
    ingest_profile_t *p;
    int rc = test_parse(&r, &lim, &p, em);
    *peak = p != NULL ? ingest_profile_peak_bytes(p) : 0;
    ingest_profile_free(p);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    return rc;
}

static void one_shape(const char *name, void (*make)(w_t *), double bound)
{
    w_t w = {0};
    make(&w);
    size_t gn, peak;
    uint8_t *gz = test_gzip(w.b, w.n, &gn);
    errmsg_t em;
    size_t limit = (size_t)HOSTILE_MULTIPLE * w.n;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = push(gz, gn, limit, &peak, &em);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* the time is printed, not checked (a shared machine) */
    fprintf(stderr, "%-12s %zu B (gzip %zu): %s in %.0f ms %s\n", name, w.n, gn,
            rc == 0 ? "accepted" : "refused", ms, rc == 0 ? "" : em.text);
    CHECK(rc == 0 || strstr(em.text, "ingest-inflight-bytes") == NULL);
    CHECK(rc == 0 || err_http_status(rc) / 100 == 4);
    /* What it held at most: its peak when accepted; when refused by a
     * per-push cap, the smallest budget under which that cap (not the
     * budget) still refuses it, by bisection (to 1/64 of the payload). */
    if (rc == 0) {
        push(gz, gn, 0, &peak, &em);
    } else {
        size_t lo = 0, hi = limit;
        while (hi - lo > w.n / 64) {
            size_t mid = lo + (hi - lo) / 2;
            push(gz, gn, mid, &peak, &em);
            if (strstr(em.text, "ingest-inflight-bytes") != NULL)
                lo = mid;
            else
                hi = mid;
        }
        peak = hi;
    }
    fprintf(stderr, "%-12s held at most %zu B = %.2f x payload\n", name, peak,
            (double)peak / (double)w.n);
    CHECK(peak <= limit);
    CHECK((double)peak <= bound * (double)w.n);
    free(gz);
    free(w.b);
}

/* The corpus's profiles of 64 KiB and more (gzipped) under the same
 * multiple; prints the largest ratio. */
static void real_profiles(void)
{
    const char *dir = getenv("FLAMEDB_TESTDATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST.tsv", dir ? dir : "");
    size_t n;
    char *m = dir ? (char *)test_read_file(path, &n) : NULL;
    if (m == NULL) {
        fprintf(stderr, "SKIP real profiles: no corpus at %s (FLAMEDB_TESTDATA)\n", path);
        return;
    }
    double worst = 0;
    size_t count = 0;
    for (char *save, *line = strtok_r(m, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char file[1024];
        unsigned long bytes;
        char enc[32], dec[32];
        if (sscanf(line, "%1023[^\t]\t%lu\t%31[^\t]\t%31[^\t]", file, &bytes, enc, dec) != 4 ||
            strcmp(dec, "ok") != 0 || strcmp(enc, "gzip") != 0 || bytes < 65536 ||
            strstr(file, ".pb.gz") == NULL)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, file);
        size_t fn, peak;
        uint8_t *b = test_read_file(path, &fn);
        if (b == NULL) continue;
        size_t plen = (size_t)b[fn - 4] | (size_t)b[fn - 3] << 8 | (size_t)b[fn - 2] << 16 |
                      (size_t)b[fn - 1] << 24;
        errmsg_t em;
        int rc = push(b, fn, (size_t)HOSTILE_MULTIPLE * plen, &peak, &em);
        if (rc != 0) fprintf(stderr, "real %s refused: %s\n", file, em.text);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0 && push(b, fn, 0, &peak, &em) == 0) {
            double ratio = (double)peak / (double)plen;
            fprintf(stderr, "real %-70s %zu B: peak %.2f x\n", file, plen, ratio);
            if (ratio > worst) worst = ratio;
            count++;
        }
        free(b);
    }
    fprintf(stderr, "real profiles: %zu, largest peak %.2f x payload (hostile cap %d x)\n", count,
            worst, HOSTILE_MULTIPLE);
    CHECK(count > 0);
    CHECK(worst <= REAL_MULTIPLE);
    free(m);
}

/* The symbol table a push builds is charged: one stack of 2,000 inlined
 * functions with names of 1,000 bytes holds 2 MB of symbols and only 2,000
 * nodes (200 KB); sent raw, so no gunzipped copy is charged either. */
static void test_symbols_charged(void)
{
    w_t w = {0}, m = {0}, l = {0}, s = {0};
    w_header(&w, &m, 1);
    char name[1001];
    memset(name, 'f', 1000);
    name[1000] = 0;
    for (uint64_t f = 1; f <= 2000; f++) {
        snprintf(name, 12, "%010llu", (unsigned long long)f);
        name[10] = 'f';
        w_str(&w, name);
        w_u(&m, 1, f);
        w_u(&m, 2, 2 + f);
        w_msg(&w, 5, &m);
    }
    w_u(&m, 1, 1);
    for (uint64_t f = 1; f <= 2000; f++) {
        w_u(&l, 1, f);
        w_msg(&m, 4, &l);
    }
    w_msg(&w, 4, &m);
    w_u(&s, 1, 1);
    w_u(&s, 2, 1);
    w_msg(&w, 2, &s);
    alloc_budget_t b;
    alloc_budget_init(&b, 0);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.inflight = &b;
    ingest_request_t r = test_req("symbols.cpu", "pprof", w.b, w.n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), 0);
    size_t held = alloc_budget_used(&b), peak = p ? ingest_profile_peak_bytes(p) : 0;
    fprintf(stderr, "symbols: %zu B message, %zu B held after parse, peak %zu B\n", w.n, held,
            peak);
    CHECK(held >= 2000u * 1000u); /* the symbols stay charged while the push lives */
    ingest_profile_free(p);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    free(w.b);
    free(m.b);
    free(l.b);
    free(s.b);
}

/* A folded push's symbol table is charged too: 2,000 lines of one frame
 * of 1,000 bytes hold 2 MB of symbols and only 2,000 nodes. Of UTF-16
 * text, the UTF-8 copy is charged while it is parsed as well. */
static void test_folded_symbols_charged(void)
{
    size_t n = 2000, line = 1000 + 4;
    char *body = malloc(n * line + 1), *p = body;
    for (size_t i = 0; i < n; i++) {
        snprintf(p, 12, "%010zu", i);
        memset(p + 10, 'f', line - 4 - 10);
        memcpy(p + line - 4, " 1\n\0", 4);
        p += line - 1;
    }
    alloc_budget_t b;
    alloc_budget_init(&b, 0);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.inflight = &b;
    ingest_request_t r = test_req("folded.cpu", "folded", body, (size_t)(p - body));
    ingest_profile_t *prof;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, &lim, &prof, &em), 0);
    size_t held = alloc_budget_used(&b);
    fprintf(stderr, "folded symbols: %zu B body, %zu B held after parse\n", (size_t)(p - body),
            held);
    CHECK(held >= 2000u * 1000u); /* the symbols stay charged while the push lives */
    ingest_profile_free(prof);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    /* the same as UTF-16LE: its UTF-8 copy (2 MB) is charged while parsed */
    size_t u16n = 2 + 2 * (size_t)(p - body);
    uint8_t *u16 = malloc(u16n);
    u16[0] = 0xff;
    u16[1] = 0xfe;
    for (size_t i = 0; i < (size_t)(p - body); i++) {
        u16[2 + 2 * i] = (uint8_t)body[i];
        u16[3 + 2 * i] = 0;
    }
    r = test_req("folded.cpu", "folded", u16, u16n);
    CHECK_EQ_INT(test_parse(&r, &lim, &prof, &em), 0);
    size_t peak = prof ? ingest_profile_peak_bytes(prof) : 0;
    fprintf(stderr, "folded UTF-16: %zu B body, peak %zu B\n", u16n, peak);
    CHECK(peak >= 2 * 2000u * 1000u); /* the UTF-8 copy and the symbols */
    ingest_profile_free(prof);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    free(u16);
    free(body);
}

/* 200 sample types non-zero in the same samples share one tree build
 * (more than the 64 compared before): every series must still have its own
 * tree, the same as type 0's with its values scaled. */
static void test_many_types_share_a_shape(void)
{
    enum { NT = 200 };
    w_t w = {0}, m = {0}, s = {0}, v = {0};
    w_header(&w, &m, NT);
    for (uint64_t i = 1; i <= 6; i++) { /* locations 1..6 by address */
        w_u(&m, 1, i);
        w_u(&m, 3, i * 16);
        w_msg(&w, 4, &m);
    }
    int64_t sum = 0;
    for (uint64_t i = 0; i < 50; i++) {
        uint64_t val = 1 + i % 7;
        for (uint64_t k = 0; k < 1 + i % 4; k++)
            w_u(&s, 1, 1 + (i * 7 + k * 3) % 6);
        for (size_t t = 0; t < NT; t++)
            w_varint(&v, val * (t + 1));
        w_bytes(&s, 2, v.b, v.n);
        v.n = 0;
        w_msg(&w, 2, &s);
        sum += (int64_t)val;
    }
    ingest_request_t r = test_req("types.cpu", "pprof", w.b, w.n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    const storage_profile_write_t *pw = p ? ingest_profile_write(p) : NULL;
    CHECK(pw != NULL && pw->nseries == NT);
    for (size_t i = 0; pw != NULL && i < pw->nseries; i++) {
        const calltree_t *t = pw->series[i].tree, *t0 = pw->series[0].tree;
        const char *pt = labels_get(pw->series[i].labels, LABEL_PROFILE_TYPE);
        size_t k = 0;
        CHECK(pt != NULL && sscanf(pt, "%*[^:]:t%zu:", &k) == 1);
        CHECK_EQ_INT(calltree_root_total(t), sum * (int64_t)(k + 1));
        CHECK_EQ_INT(calltree_node_count(t), calltree_node_count(t0));
        for (uint32_t n = 0; n < calltree_node_count(t) && n < calltree_node_count(t0); n++) {
            CHECK(calltree_sym(t, n) == calltree_sym(t0, n));
            CHECK(calltree_parent(t, n) == calltree_parent(t0, n));
            CHECK(calltree_self(t, n) == calltree_self(t0, n) * (int64_t)(k + 1));
        }
    }
    ingest_profile_free(p);
    free(w.b);
    free(m.b);
    free(s.b);
    free(v.b);
}

/* A profile of nsamples samples over 6 locations whose type 0 is val and
 * type k (k = 1..ntypes-1) is vals[k](i, val): written with every type, or
 * with type `only` alone (only >= 0). */
typedef int64_t (*follow_fn)(uint64_t i, int64_t val);
static void follower_profile(w_t *w, const follow_fn *fns, size_t ntypes, int only,
                             uint64_t nsamples)
{
    w_t m = {0}, s = {0}, v = {0};
    w_header(w, &m, only >= 0 ? 1 : ntypes);
    for (uint64_t i = 1; i <= 6; i++) {
        w_u(&m, 1, i);
        w_u(&m, 3, i * 16);
        w_msg(w, 4, &m);
    }
    for (uint64_t i = 0; i < nsamples; i++) {
        int64_t val = 2 + (int64_t)(i % 7);
        for (uint64_t k = 0; k < 1 + i % 4; k++)
            w_u(&s, 1, 1 + (i * 7 + k * 3) % 6);
        for (size_t t = 0; t < ntypes; t++)
            if (only < 0 || (size_t)only == t)
                w_varint(&v, (uint64_t)(t == 0 ? val : fns[t](i, val)));
        w_bytes(&s, 2, v.b, v.n);
        v.n = 0;
        w_msg(w, 2, &s);
    }
    free(m.b);
    free(s.b);
    free(v.b);
}

static int64_t f_scaled_then_not(uint64_t i, int64_t val)
{
    return 3 * val + (i >= 25);
}
static int64_t f_scaled_then_not_late(uint64_t i, int64_t val)
{
    return 3 * val + (i >= 2000);
}
static int64_t f_scaled(uint64_t i, int64_t val)
{
    return 5 * val + 0 * (int64_t)i;
}
static int64_t f_never_scaled(uint64_t i, int64_t val)
{
    return 2 * val + 1 + 0 * (int64_t)i;
}
static int64_t f_negative(uint64_t i, int64_t val)
{
    return -4 * val + 0 * (int64_t)i;
}

static const calltree_t *only_tree(const ingest_profile_t *p, size_t i)
{
    const storage_profile_write_t *pw = p ? ingest_profile_write(p) : NULL;
    return pw != NULL && i < pw->nseries ? pw->series[i].tree : NULL;
}

/* A sample type that follows another's shape gets the tree it would get
 * built alone, whether its values stay a multiple of the leader's (kept as
 * that multiple), stop being one part way (its values then kept per node,
 * the earlier ones made from the leader's) or never are; with few samples
 * (the leader's values kept apart from its tree until the end) and with
 * many on few stacks (given to the tree part way, before or after a
 * follower stops being a multiple). */
static void followers_match_alone(uint64_t nsamples)
{
    const follow_fn fns[] = {NULL,     f_scaled_then_not, f_scaled_then_not_late,
                             f_scaled, f_never_scaled,    f_negative};
    size_t nt = sizeof fns / sizeof *fns;
    w_t all = {0};
    follower_profile(&all, fns, nt, -1, nsamples);
    ingest_request_t r = test_req("follow.cpu", "pprof", all.b, all.n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    for (size_t t = 1; t < nt; t++) {
        w_t one = {0};
        follower_profile(&one, fns, nt, (int)t, nsamples);
        ingest_request_t r1 = test_req("follow.cpu", "pprof", one.b, one.n);
        ingest_profile_t *p1;
        CHECK_EQ_INT(test_parse(&r1, NULL, &p1, &em), 0);
        const calltree_t *got = only_tree(p, t), *want = only_tree(p1, 0);
        CHECK(got != NULL && want != NULL);
        if (got != NULL && want != NULL) {
            CHECK_EQ_INT(calltree_root_total(got), calltree_root_total(want));
            CHECK_EQ_INT(calltree_node_count(got), calltree_node_count(want));
            for (uint32_t n = 0; n < calltree_node_count(got) && n < calltree_node_count(want);
                 n++) {
                CHECK(calltree_sym(got, n) == calltree_sym(want, n));
                CHECK_EQ_INT(calltree_self(got, n), calltree_self(want, n));
                CHECK_EQ_INT(calltree_total(got, n), calltree_total(want, n));
            }
        }
        ingest_profile_free(p1);
        free(one.b);
    }
    ingest_profile_free(p);
    free(all.b);
}

static void test_follower_trees_match_alone(void)
{
    followers_match_alone(60);
    followers_match_alone(3000);
}

int main(void)
{
    test_many_types_share_a_shape();
    test_follower_trees_match_alone();
    test_symbols_charged();
    test_folded_symbols_charged();
    one_shape("fresh-roots", shape_fresh_roots, 6.3);
    one_shape("deep-inlined", shape_deep_inlined, 2.8);
    one_shape("many-types", shape_many_types, 4.8);
    one_shape("fresh-spans", shape_fresh_spans, 6.4);
    one_shape("one-span", shape_one_span, 7.2);
    one_shape("deep-stacks", shape_deep_stacks, 4.6);
    real_profiles();
    return check_exit();
}
