/* fuzz_sparse.c — libFuzzer target for the readers of a stored sparse block
 * (storage/sparse.c, version 2; storage/sparse_cols.c, version 3): the
 * input is one block value as `blocks` or a merge operand holds it.
 *
 * Beyond "no crash, no leak, no UB": decoding and adding into a dense
 * vector agree (both accept or both refuse, except an id past the vector's
 * bound, which only the addition refuses); a refused block adds nothing;
 * an accepted one adds exactly its decoded pairs; the decoded ids ascend;
 * a decoded block encodes (version 3) and decodes back to the same pairs.
 * Seeds: tests/fuzz/corpus/sparse (blocks of both versions).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage_int.h"

#define MAX_IDS (1u << 16)

static void check_added(const sparse_vec_t *d, const int64_t *val, size_t cap, size_t used)
{
    size_t k = 0;
    for (size_t id = 0; id < cap; id++) {
        int64_t want = 0;
        if (k < d->n && d->id[k] == id) want = d->val[k++];
        if (val[id] != want) abort();
    }
    if (k != d->n) abort();
    if (d->n > 0 && used != (size_t)d->id[d->n - 1] + 1) abort();
}

static void check_reencode(const sparse_vec_t *d)
{
    buf_t b;
    buf_init(&b, (size_t)1 << 30);
    sparse_vec_t again;
    storage_sparse_init(&again);
    if (storage_sparse_encode(d, &b) != 0) abort();
    if (storage_sparse_decode(b.data, b.len, &again) != 0) abort();
    size_t k = 0; /* zero values are left out of the encoding */
    for (size_t i = 0; i < d->n; i++) {
        if (d->val[i] == 0) continue;
        if (k >= again.n || again.id[k] != d->id[i] || again.val[k] != d->val[i]) abort();
        k++;
    }
    if (k != again.n) abort();
    storage_sparse_free(&again);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sparse_vec_t d;
    storage_sparse_init(&d);
    int dec = storage_sparse_decode(data, size, &d);
    if (dec != 0 && dec != ERR_CORRUPT && dec != ERR_NOMEM) abort();
    for (size_t i = 1; dec == 0 && i < d.n; i++)
        if (d.id[i] <= d.id[i - 1]) abort();
    int64_t *val = NULL;
    size_t cap = 0, used = 0;
    int add = storage_sparse_add_dense(data, size, &val, &cap, &used, MAX_IDS);
    int past = dec == 0 && d.n > 0 && d.id[d.n - 1] >= MAX_IDS;
    if (dec == 0 && !past && add != 0 && add != ERR_NOMEM) abort();
    if (dec == ERR_CORRUPT && add == 0) abort();
    if (add == 0) {
        check_added(&d, val, cap, used);
    } else {
        if (used != 0) abort();
        for (size_t id = 0; id < cap; id++)
            if (val[id] != 0) abort();
    }
    if (dec == 0) check_reencode(&d);
    free(val);
    storage_sparse_free(&d);
    return 0;
}
