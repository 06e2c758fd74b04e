/* repair_digest.c — digests of the seen index per range and time bucket,
 * and their comparison (repair_int.h).
 *
 * A bucket holds the count of its entries and the sum (mod 2^64) of their
 * hashes: a sum does not depend on the order entries are met in, so two
 * replicas holding the same entries agree whatever their key order or
 * compaction state, and one entry more or less changes both fields.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "node/cluster/repair_int.h"

uint64_t repair_entry_hash(const storage_seen_entry_t *e)
{
    uint8_t b[1 + RING_TENANT_MAX + 8 + 8 + 16];
    size_t l = strlen(e->tenant);
    if (l > RING_TENANT_MAX) l = RING_TENANT_MAX;
    b[0] = (uint8_t)l;
    memcpy(b + 1, e->tenant, l);
    for (int i = 0; i < 8; i++) { /* big-endian: the same bytes on every node */
        b[1 + l + i] = (uint8_t)(e->token >> (56 - 8 * i));
        b[9 + l + i] = (uint8_t)(e->series_id >> (56 - 8 * i));
    }
    memcpy(b + 17 + l, e->profile_id, 16);
    return hash_bytes64(b, 33 + l);
}

typedef struct acc {
    int64_t from_s, bucket_s;
    uint64_t *count, *hash; /* per bucket of the range being scanned */
    size_t nb;
} acc_t;

static int add_entry(void *ctx, const storage_seen_entry_t *e)
{
    acc_t *a = ctx;
    int64_t t = e->time_ns / 1000000000 - (e->time_ns % 1000000000 < 0);
    size_t k = (size_t)((t - a->from_s) / a->bucket_s);
    if (k >= a->nb) return 0; /* the scan selects [from, until): cannot happen */
    a->count[k]++;
    a->hash[k] += repair_entry_hash(e);
    return 0;
}

static int push(repair_digest_t *d, repair_bucket_t b)
{
    if (GROW(d->v, d->cap, d->n + 1, GROW_UNLIMITED) != 0) return ERR_NOMEM;
    d->v[d->n++] = b;
    return 0;
}

/* One range: its one or two token intervals, then its non-empty buckets. */
static int build_range(storage_t *s, ring_range_t r, uint32_t idx, acc_t *a, int64_t until_s,
                       repair_digest_t *out)
{
    memset(a->count, 0, a->nb * sizeof *a->count);
    memset(a->hash, 0, a->nb * sizeof *a->hash);
    uint64_t lo[2], hi[2];
    int nint = ring_range_intervals(r, lo, hi);
    for (int i = 0; i < nint; i++) {
        int rc = storage_seen_scan(s, lo[i], hi[i], NULL, a->from_s, until_s, add_entry, a);
        if (rc != 0) return rc;
    }
    for (size_t k = 0; k < a->nb; k++) {
        if (a->count[k] == 0) continue;
        repair_bucket_t b = {idx, a->from_s + (int64_t)k * a->bucket_s, a->count[k], a->hash[k]};
        if (push(out, b) != 0) return ERR_NOMEM;
    }
    return 0;
}

int repair_digest_build(storage_t *s, const ring_range_t *ranges, size_t n, int64_t from_s,
                        int64_t until_s, int64_t bucket_s, repair_digest_t *out)
{
    if (bucket_s <= 0 || from_s >= until_s) return ERR_INVALID_ARGUMENT;
    acc_t a = {from_s, bucket_s, NULL, NULL,
               (size_t)((until_s - from_s + bucket_s - 1) / bucket_s)};
    if (a.nb > CLUSTER_REPAIR_MAX_BUCKETS) return ERR_INVALID_ARGUMENT;
    a.count = calloc(a.nb, sizeof *a.count);
    a.hash = calloc(a.nb, sizeof *a.hash);
    int rc = a.count && a.hash ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = build_range(s, ranges[i], (uint32_t)i, &a, until_s, out);
    free(a.count);
    free(a.hash);
    return rc;
}

static int cmp_key(const repair_bucket_t *a, const repair_bucket_t *b)
{
    if (a->range != b->range) return a->range < b->range ? -1 : 1;
    if (a->start_s != b->start_s) return a->start_s < b->start_s ? -1 : 1;
    return 0;
}

int repair_digest_diff(const repair_digest_t *theirs, const repair_digest_t *mine,
                       repair_digest_t *out)
{
    size_t j = 0;
    for (size_t i = 0; i < theirs->n; i++) {
        const repair_bucket_t *t = &theirs->v[i];
        while (j < mine->n && cmp_key(&mine->v[j], t) < 0)
            j++;
        int same = j < mine->n && cmp_key(&mine->v[j], t) == 0 && mine->v[j].count == t->count &&
                   mine->v[j].hash == t->hash;
        if (!same && push(out, *t) != 0) return ERR_NOMEM;
    }
    return 0;
}

void repair_digest_free(repair_digest_t *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

void repair_span(const repair_options_t *o, int64_t now_s, int64_t *from_s, int64_t *until_s)
{
    *until_s = now_s + o->max_future_s + REPAIR_MARGIN_S;
    *from_s = now_s - o->seen_retention_s + o->max_future_s + REPAIR_MARGIN_S;
    /* aligned, so buckets are the same hours on every node */
    *from_s +=
        (REPAIR_BUCKET_S - ((*from_s % REPAIR_BUCKET_S) + REPAIR_BUCKET_S) % REPAIR_BUCKET_S) %
        REPAIR_BUCKET_S;
}
