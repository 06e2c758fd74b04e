/* repair_tree.c — a hash tree over the old windows of a token interval,
 * the first look of a fill in stream protocol 4 (repair_int.h;
 * docs/cluster-protocol.md, "Stream protocol versions").
 *
 * Each window hashes to one 64-bit value (its key and the hash of its
 * window_profiles, summary_hash) and falls into one of REPAIR_TREE_LEAVES
 * leaves by a hash of its key; a leaf holds the sum (mod 2^64) of its
 * windows' values, so two replicas holding the same windows alike agree
 * whatever the order they are met in. The root is the sum of the leaves;
 * a coarser level of F buckets (F a power of two) sums the leaves that
 * agree modulo F, so each side folds its own leaves to the fanout the
 * source picked. Windows not counted exactly (summary_hash 0) are counted
 * per leaf: their bucket is compared window by window whatever the sums.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "node/cluster/repair_int.h"

uint32_t repair_tree_leaf(const uint8_t *key, size_t n)
{
    /* a hash of its own (seeded): not the one window buckets take */
    uint8_t b[REPAIR_STREAM_KEY_MAX + 1];
    if (n > REPAIR_STREAM_KEY_MAX) n = REPAIR_STREAM_KEY_MAX;
    b[0] = 't';
    memcpy(b + 1, key, n);
    return (uint32_t)(hash_bytes64(b, n + 1) >> 56) & (REPAIR_TREE_LEAVES - 1);
}

uint64_t repair_tree_window_hash(const uint8_t *key, size_t n, uint64_t summary_hash)
{
    uint8_t b[REPAIR_STREAM_KEY_MAX + 8];
    if (n > REPAIR_STREAM_KEY_MAX) n = REPAIR_STREAM_KEY_MAX;
    memcpy(b, key, n);
    for (int i = 0; i < 8; i++) /* big-endian: the same bytes on every node */
        b[n + (size_t)i] = (uint8_t)(summary_hash >> (56 - 8 * i));
    return hash_bytes64(b, n + 8);
}

void repair_tree_add(repair_tree_t *t, const uint8_t *key, size_t n, uint64_t summary_hash, int res,
                     int64_t total)
{
    uint32_t l = repair_tree_leaf(key, n);
    t->digest[l] += repair_tree_window_hash(key, n, summary_hash);
    t->count[l]++;
    t->inexact[l] += summary_hash == 0;
    if (res >= 0 && res < STORAGE_RESOLUTION_COUNT)
        t->totals[l][res] = (int64_t)((uint64_t)t->totals[l][res] + (uint64_t)total);
}

uint64_t repair_tree_root(const repair_tree_t *t, uint64_t *count, uint64_t *inexact)
{
    uint64_t h = 0, c = 0, x = 0;
    for (size_t l = 0; l < REPAIR_TREE_LEAVES; l++) {
        h += t->digest[l];
        c += t->count[l];
        x += t->inexact[l];
    }
    if (count != NULL) *count = c;
    if (inexact != NULL) *inexact = x;
    return h;
}

uint32_t repair_tree_fanout(uint64_t count, uint64_t other_count)
{
    /* d windows differ at least (the counts' difference, 1 when equal): a
     * descent costs a digest a bucket and a summary per window of each
     * bucket it enters, about F + 2.4 d n / F digests' worth, least at F
     * about sqrt(2.4 d n) */
    uint64_t d = count > other_count ? count - other_count : other_count - count;
    uint64_t n = count > other_count ? count : other_count;
    uint64_t want = (d ? d : 1) * n * REPAIR_TREE_SUMMARY_DIGESTS / 10;
    uint32_t f = 1;
    while (f < REPAIR_TREE_LEAVES && (uint64_t)f * f < want)
        f <<= 1;
    return f;
}

int repair_tree_fanout_valid(uint32_t fanout)
{
    return fanout >= 1 && fanout <= REPAIR_TREE_LEAVES && (fanout & (fanout - 1)) == 0;
}

void repair_tree_fold(const repair_tree_t *t, uint32_t fanout, uint64_t *digest, uint64_t *inexact)
{
    memset(digest, 0, fanout * sizeof *digest);
    if (inexact != NULL) memset(inexact, 0, fanout * sizeof *inexact);
    for (uint32_t l = 0; l < REPAIR_TREE_LEAVES; l++) {
        digest[l & (fanout - 1)] += t->digest[l];
        if (inexact != NULL) inexact[l & (fanout - 1)] += t->inexact[l];
    }
}

size_t repair_tree_differ(const repair_tree_t *mine, const uint64_t *theirs, uint32_t fanout,
                          const uint32_t *their_inexact, size_t n_inexact,
                          uint8_t bits[REPAIR_TREE_LEAVES / 8])
{
    uint64_t d[REPAIR_TREE_LEAVES], x[REPAIR_TREE_LEAVES];
    repair_tree_fold(mine, fanout, d, x);
    memset(bits, 0, REPAIR_TREE_LEAVES / 8);
    for (size_t i = 0; i < n_inexact; i++)
        if (their_inexact[i] < fanout) x[their_inexact[i]]++;
    size_t n = 0;
    for (uint32_t b = 0; b < fanout; b++) {
        if (d[b] == theirs[b] && x[b] == 0) continue; /* alike */
        bits[b / 8] |= (uint8_t)(1u << (b % 8));
        n++;
    }
    return n;
}

int repair_tree_wanted(const uint8_t *bits, size_t nbits_bytes, uint32_t fanout, const uint8_t *key,
                       size_t n)
{
    uint32_t b = repair_tree_leaf(key, n) & (fanout - 1);
    return b / 8 < nbits_bytes && (bits[b / 8] >> (b % 8) & 1);
}

void repair_tree_alike_totals(const repair_tree_t *t, uint32_t fanout, const uint8_t *bits,
                              int64_t totals[STORAGE_RESOLUTION_COUNT])
{
    for (uint32_t l = 0; l < REPAIR_TREE_LEAVES; l++) {
        uint32_t b = l & (fanout - 1);
        if (bits != NULL && (bits[b / 8] >> (b % 8) & 1)) continue; /* descended into */
        for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
            totals[r] = (int64_t)((uint64_t)totals[r] + (uint64_t)t->totals[l][r]);
    }
}

uint64_t repair_tree_alike_count(const repair_tree_t *t, uint32_t fanout, const uint8_t *bits)
{
    uint64_t c = 0;
    for (uint32_t l = 0; l < REPAIR_TREE_LEAVES; l++) {
        uint32_t b = l & (fanout - 1);
        if (bits == NULL || !(bits[b / 8] >> (b % 8) & 1)) c += t->count[l];
    }
    return c;
}

static int add_summary(void *ctx, const storage_window_summary_t *w)
{
    uint64_t h = w->wprof_len > 0 ? storage_window_profiles_hash(w->wprof, w->wprof_len) : 0;
    repair_tree_add(ctx, w->key, w->key_len, h, w->res, w->total);
    return 0;
}

int repair_tree_build(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s, repair_tree_t *t)
{
    memset(t, 0, sizeof *t);
    int rc = storage_stream_summaries(s, lo, hi, NULL, 0, until_s, add_summary, t);
    return rc > 0 ? 0 : rc;
}
