/* test_ingest_heap.c — what a push allocates is what it charges.
 *
 * The memory a push is charged (ingest-request-memory-per-byte, the node's
 * ingest-inflight-bytes) is counted by the code that allocates it; memory
 * allocated and not counted is memory a hostile push can hold beyond the
 * budget. This test counts the heap itself: malloc, calloc, realloc and free
 * are replaced (forwarding to glibc's) to follow the bytes in use, and a
 * push's highest heap use while it is parsed is compared with the peak it
 * was charged. The shapes are pushes whose peak is where a part of the
 * push's work allocates most: the span tree of a push whose every sample
 * carries one span_id, deep distinct stacks (the tree as large as the
 * series tree, its encoding's scratch beside it), sent raw so no gunzipped
 * copy is part of either figure. Skipped under AddressSanitizer, which
 * replaces the allocator itself.
 */
#include "test_ingest_util.h"

#include "test_heap_count.h"

/* Samples of depth frames drawn from nfn functions (a fixed seed), each
 * labelled span_id=one: nearly every frame is a new node of the series
 * tree and of the span tree alike. */
static uint8_t *deep_span_profile(size_t samples, size_t depth, size_t nfn, size_t *len)
{
    pb_t b;
    pb_init(&b);
    pb_sample_type(&b, "cpu", "nanoseconds");
    pb_period(&b, "cpu", "nanoseconds", 10000000);
    uint64_t *locs = malloc(nfn * sizeof *locs), *stack = malloc(depth * sizeof *stack);
    for (size_t i = 0; i < nfn; i++) {
        char name[32];
        snprintf(name, sizeof name, "pkg.fn%zu", i);
        locs[i] = pb_loc_fn(&b, name);
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t s = 0; s < samples; s++) {
        for (size_t d = 0; d < depth; d++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            stack[d] = locs[x % nfn];
        }
        int64_t v = 10000000;
        pb_sample(&b, depth, stack, 1, &v, "span_id=00000000deadbeef", NULL);
    }
    uint8_t *out = pb_pack(&b, len);
    pb_free(&b);
    free(locs);
    free(stack);
    return out;
}

static void test_span_push_heap(void)
{
    size_t len;
    uint8_t *body = deep_span_profile(4000, 48, 64, &len);
    ingest_request_t r = test_req("heap.cpu", "pprof", body, len);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.request_memory_per_byte = 1000; /* its nodes are many for its bytes: not refused */
    ingest_profile_t *p;
    errmsg_t em;
    heap_start();
    int rc = test_parse(&r, &lim, &p, &em);
    long most = heap_stop();
    if (rc != 0) fprintf(stderr, "refused: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    size_t peak = p != NULL ? ingest_profile_peak_bytes(p) : 0;
    const storage_profile_write_t *w = p != NULL ? ingest_profile_write(p) : NULL;
    size_t nodes = w != NULL && w->nseries > 0 ? calltree_node_count(w->series[0].tree) : 0;
    fprintf(stderr, "span push: %zu B payload, %zu nodes, charged peak %zu B, heap peak %ld B\n",
            len, nodes, peak, most);
    CHECK(nodes > 100000); /* deep and distinct, as meant */
    CHECK(w != NULL && w->nseries == 1 && w->series[0].nspans == 1);
    /* what the push allocated and did not count: the small things of any
     * push (its labels, parameters, errors) and allocator rounding */
    if (HEAP_COUNTED) CHECK((size_t)most <= peak + peak / 32 + (128u << 10));
    ingest_profile_free(p);
    free(body);
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    test_span_push_heap();
    return check_exit();
}
