/* test_ingest_stack_cache.c — pprof pushes parsed with the stack cache
 * store exactly what they store without it: three heap pushes (four sample
 * types, some zero in some samples; a sample label splitting series; span
 * labels; samples shuffled and locations numbered differently each push)
 * go into one store with the cache and another without, and every column
 * family the write fills is the same byte for byte. The later pushes find
 * most of their stacks in the cache (given by id); a push parsed before the
 * node generation moved is refused with ERR_CONFLICT, nothing written, and
 * stores exactly once parsed again without the cache. The same again with
 * every sample in the trees and the cache's ids beside them (a push whose
 * replicas take the trees): the same bytes, a refused generation written
 * again from the trees alone. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <stdarg.h>

#include "check.h"
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

/* Parse with the cache's ids beside whole trees (a replicated push),
 * and a write refused for its generation written again from the trees
 * alone (as the local replica's write does); *refused counts those. */
static int trees_mode;
static size_t refused;

/* The write of p; in trees_mode a refusal for the generation is written
 * again without the known ids. */
static int write_push(storage_t *s, ingest_profile_t *p, size_t *written, errmsg_t *em)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    int rc = storage_write_profile(s, w, written, em);
    if (rc != ERR_CONFLICT || !trees_mode) return rc;
    refused++;
    storage_series_write_t *sw = calloc(w->nseries, sizeof *sw);
    CHECK(sw != NULL);
    for (size_t i = 0; i < w->nseries; i++) {
        sw[i] = w->series[i];
        CHECK(sw[i].tree != NULL && sw[i].npairs == 0);
        sw[i].nknown = 0;
    }
    storage_profile_write_t lw = *w;
    lw.series = sw;
    rc = storage_write_profile(s, &lw, written, em);
    free(sw);
    return rc;
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
    r.stack_cache_trees = trees_mode && c != NULL;
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
    int rc = write_push(s, p, &written, &em);
    CHECK(rc != 0 || written > 0);
    ingest_profile_free(p);
    free(body);
    return rc;
}

static void dump_cf(storage_t *s, int cf, buf_t *out)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn), *v = rocksdb_iter_value(it, &vn);
        uint32_t lens[2] = {(uint32_t)kn, (uint32_t)vn};
        CHECK_EQ_INT(buf_append(out, lens, sizeof lens), 0);
        CHECK_EQ_INT(buf_append(out, k, kn), 0);
        CHECK_EQ_INT(buf_append(out, v, vn), 0);
    }
    rocksdb_iter_destroy(it);
}

static void check_same(storage_t *a, storage_t *b)
{
    const int cfs[] = {CF_BLOCKS, CF_TOTALS, CF_PTREES, CF_WPROFILES,
                       CF_NODES,  CF_SERIES, CF_SPANS,  CF_SYMBOLS};
    for (size_t i = 0; i < sizeof cfs / sizeof *cfs; i++) {
        buf_t x, y;
        buf_init(&x, (size_t)1 << 30);
        buf_init(&y, (size_t)1 << 30);
        dump_cf(a, cfs[i], &x);
        dump_cf(b, cfs[i], &y);
        CHECK(x.len > 0);
        CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        buf_free(&x);
        buf_free(&y);
    }
}

/* Every step into a store with the cache (trees_mode as set) and one without. */
static int run(void)
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

    /* the generation moves between parse and write: refused, then stored
     * without the cache (parsed again; in trees_mode written from the trees) */
    if (trees_mode) {
        CHECK_EQ_INT(push(fa.s, c, 4, 90, &hits, &lookups, 1), 0);
        CHECK_EQ_INT(refused, 1);
        CHECK(hits > 0);
    } else {
        CHECK_EQ_INT(push(fa.s, c, 4, 90, &hits, &lookups, 1), ERR_CONFLICT);
        CHECK(hits > 0);
        CHECK_EQ_INT(push(fa.s, NULL, 4, 90, &hits, &lookups, 0), 0);
    }
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

    ingest_stack_cache_free(c);
    fx_done(&fa);
    fx_done(&fb);
    return 0;
}

int main(void)
{
    if (run() != 0) return 1;
    trees_mode = 1; /* a replicated push: every sample in the trees, ids beside */
    if (run() != 0) return 1;
    return check_exit();
}
