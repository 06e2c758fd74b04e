/* test_query_shares_heap.c — what the label-shares answer (GET
 * /api/label-shares, query_shares_write and the groups of a render,
 * query_shares_write_groups) allocates while it writes is what the
 * answer's buffer charges.
 *
 * The answer is charged to query-memory-bytes as it grows (buf_charge);
 * the rows sorted for it and, for an averaged type, every value's averaged
 * total and timeline (values x buckets integers: more than the answer's
 * text when the values are many) are held beside it (buf_beside_take).
 * malloc, calloc, realloc and free are replaced (test_heap_count.h) and
 * the heap's peak while writing VALUES values of BUCKETS buckets is
 * compared with the most the answer's buffer was told it holds. Skipped
 * under AddressSanitizer, which replaces the allocator itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/strmap.h"
#include "query/query_int.h"

#include "test_heap_count.h"

#define VALUES 4000
#define BUCKETS 360

typedef struct shares_in {
    char names[VALUES][16];
    strmap_t values;
    query_timeline_t shape;
    int64_t *totals, *tls, *counts, *tlc;
} shares_in_t;

static void shares_make(shares_in_t *in)
{
    strmap_init(&in->values);
    for (int i = 0; i < VALUES; i++) {
        int n = snprintf(in->names[i], sizeof in->names[i], "pod-%d", i);
        uint32_t idx;
        CHECK_EQ_INT(strmap_intern(&in->values, in->names[i], (size_t)n, &idx), 0);
    }
    in->shape = (query_timeline_t){.start_s = 1700000000, .step_s = 10, .n = BUCKETS};
    in->totals = calloc(VALUES, sizeof *in->totals);
    in->counts = calloc(VALUES, sizeof *in->counts);
    in->tls = calloc((size_t)VALUES * BUCKETS, sizeof *in->tls);
    in->tlc = calloc((size_t)VALUES * BUCKETS, sizeof *in->tlc);
    CHECK(in->totals && in->counts && in->tls && in->tlc);
    for (size_t i = 0; i < VALUES; i++) {
        for (size_t k = 0; k < BUCKETS; k++) {
            in->tls[i * BUCKETS + k] = (int64_t)((i * 7 + k * 13) % 1000);
            in->tlc[i * BUCKETS + k] = (int64_t)(k % 3);
            in->totals[i] += in->tls[i * BUCKETS + k];
            in->counts[i] += in->tlc[i * BUCKETS + k];
        }
    }
}

static void shares_free(shares_in_t *in)
{
    strmap_free(&in->values);
    free(in->totals);
    free(in->counts);
    free(in->tls);
    free(in->tlc);
}

/* Writes the answer (groups: a render's member) on a buffer charged to a
 * budget of limit bytes (0: none): the status, the most it was told it
 * held, the heap's most. */
static int run(const shares_in_t *in, int average, int groups, size_t limit, size_t *charged,
               long *most)
{
    query_shares_t sh = {average, in->totals, in->tls, in->counts, in->tlc};
    held_t h = {0, 0, limit};
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    buf_charge(&out, held_fn, &h);
    heap_start();
    int rc = groups ? query_shares_write_groups(&in->values, &in->shape, &sh, &out)
                    : query_shares_write("pod", &in->values, &in->shape, &sh, &out);
    buf_free(&out);
    *most = heap_stop();
    CHECK_EQ_INT(out.beside, 0); /* everything held beside it given back */
    *charged = h.most;
    return rc;
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    static shares_in_t in;
    shares_make(&in);
    for (int average = 0; average < 2; average++)
        for (int groups = 0; groups < 2; groups++) {
            size_t charged;
            long most;
            CHECK_EQ_INT(run(&in, average, groups, 0, &charged, &most), 0);
            fprintf(stderr,
                    "%s %s of %d values x %d buckets: charged peak %zu B, heap peak %ld B\n",
                    average ? "averaged" : "summed", groups ? "groups" : "shares", VALUES, BUCKETS,
                    charged, most);
            if (HEAP_COUNTED) CHECK((size_t)most <= charged + charged / 64 + (64u << 10));
            /* and not a multiple of it (the answer's growth is charged old
             * and new block while realloc copies; a large block may grow in
             * place) */
            if (HEAP_COUNTED) CHECK(charged <= (size_t)most + (size_t)most / 2);
            CHECK_EQ_INT(run(&in, average, groups, charged / 2, &charged, &most), ERR_UNAVAILABLE);
        }
    shares_free(&in);
    return check_exit();
}
