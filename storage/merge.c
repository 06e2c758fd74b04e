/* merge.c — the RocksDB merge operators of blocks and totals (the spans
 * operator, a union by profile id, is spanval.c's).
 *
 * Blocks hold sparse vectors (sparse.c), summed by merging sorted lists.
 * Totals hold signed 64-bit integers
 * (8 bytes little-endian) and their operator adds them with wrap-around, which
 * is exact for any sum that fits in an int64.
 *
 * Every operator implements full merge (operands onto an existing value) and
 * partial merge (operands onto each other), so compaction and flushes fold a
 * hot window's operands into one instead of leaving every read to do it.
 *
 * A merge operator must never fail: a failed merge makes RocksDB report
 * corruption for the key and, during compaction, stop all background work.
 * So an operand (or existing value) that does not decode is skipped, counted
 * in storage_counters_t.corrupt_operands and logged; the others still sum.
 */
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/log.h"
#include "storage/storage_int.h"

#define MERGE_I64_NAME "flamedb.i64_add.v1"
#define MERGE_SPARSE_NAME "flamedb.sparse_sum.v2"

/* Until a compaction folds it away, a corrupt operand is met again by every
 * read of its key, so the log is thinned out: the first ten, then powers of 2. */
void storage_log_corrupt(storage_counters_t *c, const char *what, int i, int rc)
{
    uint64_t n = atomic_fetch_add(&c->corrupt_operands, 1) + 1;
    if (n > 10 && (n & (n - 1)) != 0) return;
    log_warn("storage", "skipped corrupt %s merge operand #%d (%s); %llu skipped so far", what, i,
             err_message(rc), (unsigned long long)n);
}

typedef int (*fold_fn)(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                       buf_t *out);

static char *fold_result(fold_fn fold, storage_counters_t *c, const char *const *parts,
                         const size_t *lens, int n, unsigned char *success, size_t *new_len)
{
    buf_t out;
    buf_init(&out, STORAGE_VALUE_MAX);
    if (fold(c, parts, lens, n, &out) != 0) {
        buf_free(&out);
        *success = 0;
        *new_len = 0;
        return malloc(1); /* RocksDB copies 0 bytes from it, then frees it */
    }
    *success = 1;
    return (char *)buf_steal(&out, new_len);
}

/* existing (if any) followed by the operands, folded by fold. */
static char *fold_full(fold_fn fold, storage_counters_t *c, const char *existing,
                       size_t existing_len, const char *const *ops, const size_t *op_lens, int nops,
                       unsigned char *success, size_t *new_len)
{
    if (existing == NULL) return fold_result(fold, c, ops, op_lens, nops, success, new_len);
    const char **parts = malloc(sizeof *parts * ((size_t)nops + 1));
    size_t *lens = malloc(sizeof *lens * ((size_t)nops + 1));
    char *r;
    if (parts != NULL && lens != NULL) {
        parts[0] = existing;
        lens[0] = existing_len;
        memcpy(parts + 1, ops, sizeof *parts * (size_t)nops);
        memcpy(lens + 1, op_lens, sizeof *lens * (size_t)nops);
        r = fold_result(fold, c, parts, lens, nops + 1, success, new_len);
    } else {
        *success = 0;
        *new_len = 0;
        r = malloc(1);
    }
    free(parts);
    free(lens);
    return r;
}

/* Set while a merger scans blocks on this thread. Folding at read costs a
 * decode of every part, a sum, an encode, then the merger's decode of the
 * sum; the sink adds each part into the merger's dense vector directly
 * instead, while RocksDB still holds the operands, and the iterator gets a
 * one-byte SPARSE_TAKEN in place of the value. RocksDB runs an iterator's
 * merges on the thread that moves the iterator, and flushes, compactions and
 * writes never run inside a merger's scan, so they always fold. probe
 * (storage_merge_defer) is the window fold's: how many parts, not what they
 * hold. */
static _Thread_local const storage_merge_sink_t *defer_sink;
static _Thread_local int probe;

void storage_merge_defer(int on)
{
    probe = on == STORAGE_MERGE_PROBE;
}

void storage_merge_sink(const storage_merge_sink_t *sink)
{
    defer_sink = sink;
}

static char *one_byte(char b, unsigned char *success, size_t *new_len)
{
    char *r = malloc(1);
    *success = r != NULL;
    *new_len = r != NULL;
    if (r != NULL) r[0] = b;
    return r;
}

static char *sparse_full_merge(void *state, const char *key, size_t key_len, const char *existing,
                               size_t existing_len, const char *const *ops, const size_t *op_lens,
                               int nops, unsigned char *success, size_t *new_len)
{
    if (defer_sink != NULL) {
        defer_sink->take(defer_sink->ctx, (const uint8_t *)key, key_len, existing, existing_len,
                         ops, op_lens, nops);
        return one_byte((char)SPARSE_TAKEN, success, new_len);
    }
    if (probe) /* how many parts, not what they hold */
        return one_byte((char)(nops + (existing != NULL) >= 2 ? SPARSE_PARTS : SPARSE_VERSION),
                        success, new_len);
    return fold_full(storage_fold_sparse, state, existing, existing_len, ops, op_lens, nops,
                     success, new_len);
}

static char *sparse_partial_merge(void *state, const char *key, size_t key_len,
                                  const char *const *ops, const size_t *op_lens, int nops,
                                  unsigned char *success, size_t *new_len)
{
    return fold_result(storage_fold_sparse, state, ops, op_lens, nops, success, new_len);
}

/* Sums 8-byte operands; wrong-sized ones are corrupt and skipped. */
static uint64_t sum_i64(storage_counters_t *c, const char *const *ops, const size_t *lens, int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] != 8) {
            storage_log_corrupt(c, "total", i, ERR_CORRUPT);
            continue;
        }
        sum += (uint64_t)storage_i64_get((const uint8_t *)ops[i]);
    }
    return sum;
}

static char *i64_result(uint64_t sum, unsigned char *success, size_t *new_len)
{
    char *r = malloc(8);
    *success = r != NULL;
    *new_len = r != NULL ? 8 : 0;
    if (r != NULL) storage_i64_put((uint8_t *)r, (int64_t)sum);
    return r;
}

static char *i64_full_merge(void *state, const char *key, size_t key_len, const char *existing,
                            size_t existing_len, const char *const *ops, const size_t *op_lens,
                            int nops, unsigned char *success, size_t *new_len)
{
    uint64_t sum = sum_i64(state, ops, op_lens, nops);
    if (existing != NULL) sum += sum_i64(state, &existing, &existing_len, 1);
    return i64_result(sum, success, new_len);
}

static char *i64_partial_merge(void *state, const char *key, size_t key_len, const char *const *ops,
                               const size_t *op_lens, int nops, unsigned char *success,
                               size_t *new_len)
{
    return i64_result(sum_i64(state, ops, op_lens, nops), success, new_len);
}

static void delete_value(void *state, const char *value, size_t len)
{
    free((void *)value);
}

/* The counters belong to the storage_t, which outlives the DB. */
static void no_destructor(void *state) {}

static const char *i64_name(void *state)
{
    return MERGE_I64_NAME;
}

static const char *sparse_name(void *state)
{
    return MERGE_SPARSE_NAME;
}

rocksdb_mergeoperator_t *storage_merge_sparse_new(storage_counters_t *c)
{
    return rocksdb_mergeoperator_create(c, no_destructor, sparse_full_merge, sparse_partial_merge,
                                        delete_value, sparse_name);
}

rocksdb_mergeoperator_t *storage_merge_i64_new(storage_counters_t *c)
{
    return rocksdb_mergeoperator_create(c, no_destructor, i64_full_merge, i64_partial_merge,
                                        delete_value, i64_name);
}
