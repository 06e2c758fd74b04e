/* test_ingest_stack_cache.c — pprof pushes parsed with the stack cache
 * store exactly what they store without it: three heap pushes (four sample
 * types, some zero in some samples; a sample label splitting series; span
 * labels; samples shuffled and locations numbered differently each push)
 * go into one store with the cache and another without, and every column
 * family the write fills is the same byte for byte. The later pushes find
 * most of their stacks in the cache (given by id); a push parsed before the
 * node generation moved is refused with ERR_CONFLICT, nothing written, and
 * stores exactly once parsed again without the cache. A deep stack with a
 * span label among samples found by the cache stores the same too. The
 * cache itself: four keys of one line are all held, and the table holds
 * one generation's ids (an older generation's put dropped, a newer one's
 * emptying it). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <stdarg.h>

#include "check.h"
#include "node/ingest/ingest_int.h"
#include "test_ingest_util.h"

/* Push k: nstacks stacks over functions fn0..fn39, shuffled by k, the
 * location table in another order for each k. */
static uint8_t *heap_push(int k, int nstacks, size_t *len)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "alloc_objects", "count");
    pb_sample_type(&b, "alloc_space", "bytes");
    pb_sample_type(&b, "inuse_objects", "count");
    pb_sample_type(&b, "inuse_space", "bytes");
    pb_period(&b, "space", "bytes", 524288);
    uint64_t loc[40];
    for (int i = 0; i < 40; i++) {
        int f = k % 2 ? 39 - i : i; /* another numbering each push */
        char name[16];
        snprintf(name, sizeof name, "fn%d", f);
        loc[f] = pb_loc_fn(&b, name);
    }
    for (int j = 0; j < nstacks; j++) {
        int s = (j * 37 + k * 11) % nstacks; /* shuffled */
        uint64_t st[6];
        size_t d = 3 + (size_t)(s % 4);
        for (size_t i = 0; i < d; i++) /* leaf first */
            st[i] = loc[(s * (int)(i + 3) + (int)i * 7) % 40];
        st[0] = loc[s % 40]; /* leaf and caller: another pair for each s */
        st[1] = loc[(s / 40) * 5 + 2];
        st[d - 1] = loc[0]; /* one root */
        int64_t v[4] = {1 + s % 3, 100 * (1 + s % 3) + k, s % 4 ? 1 : 0, s % 4 ? 50 + k : 0};
        if (s % 9 == 0)
            pb_sample(&b, d, st, 4, v, "span_id=00000000000000a1", NULL);
        else if (s % 5 == 0)
            pb_sample(&b, d, st, 4, v, "kind=bg", NULL);
        else
            pb_sample(&b, d, st, 4, v, NULL);
    }
    uint8_t *out = pb_pack(&b, len);
    pb_free(&b);
    return out;
}

/* Parses push k (with cache c, or none) and writes it; the write's code. */
static int push(storage_t *s, ingest_stack_cache_t *c, int k, int nstacks, size_t *hits,
                size_t *lookups, int bump_before_write)
{
    size_t len;
    uint8_t *body = heap_push(k, nstacks, &len);
    char from[32];
    snprintf(from, sizeof from, "%lld", (long long)(TEST_NOW_NS / NS - 60 + 10 * k));
    ingest_request_t r = test_req("svc{pod=p1}", "pprof", body, len);
    r.from = from;
    r.stack_cache = c;
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    ingest_profile_stack_hits(p, hits, lookups);
    if (bump_before_write) { /* a batch of some table did not commit */
        nodetab_t *t;
        CHECK_EQ_INT(storage_nodetab_acquire_append(s, 42, "t1", &t, &em), 0);
        storage_nodetab_release(s, t, 1);
    }
    size_t written = 0;
    int rc = storage_write_profile(s, ingest_profile_write(p), &written, &em);
    CHECK(rc != 0 || written > 0);
    ingest_profile_free(p);
    free(body);
    return rc;
}

/* Push k of the deep-span kind: shallow samples by the cache around one
 * with a span label and a stack of DEEP frames, which is decoded while a
 * shallow one waits for its lookup (into the other stack buffer): the span
 * trees, built at the end with the stack buffer as scratch, need it whole. */
#define DEEP 150
static uint8_t *deep_span_push(int k, size_t *len)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "samples", "count");
    pb_sample_type(&b, "cpu", "nanoseconds");
    uint64_t loc[DEEP];
    for (int i = 0; i < DEEP; i++) {
        char name[16];
        snprintf(name, sizeof name, "deep%d", i);
        loc[i] = pb_loc_fn(&b, name);
    }
    for (int j = 0; j < 6; j++) {
        int64_t v[2] = {1 + j, 1000 * (j + k)};
        uint64_t st[3] = {loc[j + 1], loc[j + 7], loc[0]};
        pb_sample(&b, 3, st, 2, v, NULL);
        if (j == 2) pb_sample(&b, DEEP, loc, 2, v, "span_id=00000000000000b2", NULL);
    }
    uint8_t *out = pb_pack(&b, len);
    pb_free(&b);
    return out;
}

/* Parses deep-span push k (with cache c, or none) and writes it. */
static void deep_push(storage_t *s, ingest_stack_cache_t *c, int k, size_t *hits)
{
    size_t len, lookups;
    uint8_t *body = deep_span_push(k, &len);
    char from[32];
    snprintf(from, sizeof from, "%lld", (long long)(TEST_NOW_NS / NS - 60 + 10 * k));
    ingest_request_t r = test_req("deep{pod=p1}", "pprof", body, len);
    r.from = from;
    r.stack_cache = c;
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    ingest_profile_stack_hits(p, hits, &lookups);
    size_t written = 0;
    CHECK_EQ_INT(storage_write_profile(s, ingest_profile_write(p), &written, &em), 0);
    ingest_profile_free(p);
    free(body);
}

static void check_same(storage_t *a, storage_t *b)
{
    const int cfs[] = {CF_BLOCKS, CF_TOTALS, CF_PTREES, CF_WPROFILES,
                       CF_NODES,  CF_SERIES, CF_SPANS,  CF_SYMBOLS};
    fx_same_cfs(a, b, cfs, sizeof cfs / sizeof *cfs);
}

/* Moves s's node generation (a failed holder released). */
static void move_generation(storage_t *s)
{
    errmsg_t em = {0};
    nodetab_t *t;
    CHECK_EQ_INT(storage_nodetab_acquire_append(s, 42, "t1", &t, &em), 0);
    storage_nodetab_release(s, t, 1);
}

/* A one-line cache (64 bytes): keys that differ only above k0's index bits. */
static void cache_ways_and_generations(storage_t *s)
{
    ingest_stack_cache_t *c = NULL;
    CHECK_EQ_INT(ingest_stack_cache_new(s, 64, &c), 0);
    CHECK(c != NULL && ingest_stack_cache_bytes(c) == 64);
    uint64_t g = ingest_stack_cache_gen(c);
    stack_key_t k[5];
    uint32_t id;
    for (int i = 0; i < 5; i++)
        k[i] = (stack_key_t){(uint64_t)(i + 1) << 40, 0x1234u + (uint64_t)i * 4};
    for (int i = 0; i < 4; i++)
        ingest_stack_cache_put(c, &k[i], g, 100 + (uint32_t)i);
    for (int i = 0; i < 4; i++) /* four ways: all held */
        CHECK(ingest_stack_cache_get(c, &k[i], g, &id) && id == 100 + (uint32_t)i);
    CHECK(!ingest_stack_cache_get(c, &k[4], g, &id));
    ingest_stack_cache_put(c, &k[4], g, 0); /* id 0 is held too; one key goes */
    CHECK(ingest_stack_cache_get(c, &k[4], g, &id) && id == 0);
    int held = 0;
    for (int i = 0; i < 4; i++)
        held += ingest_stack_cache_get(c, &k[i], g, &id);
    CHECK_EQ_INT(held, 3);
    CHECK(!ingest_stack_cache_get(c, &k[4], g + 1, &id)); /* another generation: a miss */

    move_generation(s);
    uint64_t g2 = ingest_stack_cache_gen(c);
    CHECK(g2 > g);
    CHECK(ingest_stack_cache_get(c, &k[4], g, &id)); /* not emptied before a put of g2 */
    ingest_stack_cache_put(c, &k[0], g2, 7);
    CHECK(ingest_stack_cache_get(c, &k[0], g2, &id) && id == 7);
    CHECK(!ingest_stack_cache_get(c, &k[4], g, &id)); /* g's ids gone */
    CHECK(!ingest_stack_cache_get(c, &k[4], g2, &id));
    ingest_stack_cache_put(c, &k[1], g, 8); /* an older generation's put: dropped */
    CHECK(!ingest_stack_cache_get(c, &k[1], g, &id));
    CHECK(!ingest_stack_cache_get(c, &k[1], g2, &id));
    ingest_stack_cache_free(c);
}

int main(void)
{
    fixture_t fa, fb;
    if (fx_init(&fa) != 0 || fx_init(&fb) != 0) return 1;
    fa.now = fb.now = TEST_NOW_NS / NS;
    ingest_stack_cache_t *c = NULL;
    CHECK_EQ_INT(ingest_stack_cache_new(fa.s, 1 << 20, &c), 0);
    CHECK(c != NULL && ingest_stack_cache_bytes(c) <= (1 << 20));
    size_t hits, lookups, h2, l2;

    CHECK_EQ_INT(push(fa.s, c, 1, 60, &hits, &lookups, 0), 0);
    CHECK_EQ_INT(hits, 0); /* nothing seen yet */
    CHECK(lookups > 0);
    CHECK_EQ_INT(push(fb.s, NULL, 1, 60, &h2, &l2, 0), 0);
    CHECK_EQ_INT(l2, 0);
    check_same(fa.s, fb.s);

    /* 60 known stacks (their locations numbered otherwise) and 30 new */
    CHECK_EQ_INT(push(fa.s, c, 2, 90, &hits, &lookups, 0), 0);
    CHECK(hits > 0 && hits < lookups);
    CHECK_EQ_INT(push(fb.s, NULL, 2, 90, &h2, &l2, 0), 0);
    check_same(fa.s, fb.s);

    /* every stack known (those with a span label are never looked up) */
    CHECK_EQ_INT(push(fa.s, c, 3, 90, &hits, &lookups, 0), 0);
    CHECK(hits > 0 && hits == lookups);
    CHECK_EQ_INT(push(fb.s, NULL, 3, 90, &h2, &l2, 0), 0);
    check_same(fa.s, fb.s);

    /* the generation moves between parse and write: refused, then stored without the cache */
    CHECK_EQ_INT(push(fa.s, c, 4, 90, &hits, &lookups, 1), ERR_CONFLICT);
    CHECK(hits > 0);
    CHECK_EQ_INT(push(fa.s, NULL, 4, 90, &hits, &lookups, 0), 0);
    CHECK_EQ_INT(push(fb.s, NULL, 4, 90, &h2, &l2, 0), 0);
    check_same(fa.s, fb.s);
    /* and the cache learns the new generation's ids again */
    CHECK_EQ_INT(push(fa.s, c, 5, 90, &hits, &lookups, 0), 0);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(push(fa.s, c, 6, 90, &hits, &lookups, 0), 0);
    CHECK(hits > 0 && hits == lookups);
    CHECK_EQ_INT(push(fb.s, NULL, 5, 90, &h2, &l2, 0), 0);
    CHECK_EQ_INT(push(fb.s, NULL, 6, 90, &h2, &l2, 0), 0);
    check_same(fa.s, fb.s);

    /* a deep stack with a span label among samples waiting for the cache */
    for (int k = 1; k <= 2; k++) {
        deep_push(fa.s, c, k, &hits);
        CHECK_EQ_INT(hits, k == 1 ? 0 : 6);
        deep_push(fb.s, NULL, k, &h2);
        check_same(fa.s, fb.s);
    }

    ingest_stack_cache_free(c);
    cache_ways_and_generations(fa.s);
    fx_done(&fa);
    fx_done(&fb);
    return check_exit();
}
