/* seen.c — the seen index read by token interval, for anti-entropy.
 *
 * The `profiles` column family names every stored series of every profile
 * (token|tenant|series_id|profile_id -> time, total, written). Replicas of a
 * token range compare it to find what one of them lacks: a scan over a
 * token interval (keys start with the token, so an interval is one key
 * range), resumable after any entry, and a point lookup. Entries past
 * seen_retention_seconds are skipped as compaction would drop them, like
 * storage_scan_profiles does.
 */
#include <stdlib.h>
#include <string.h>

#include "common/varint.h"
#include "storage/storage_int.h"

/* Splits a profiles key; 0 if it has that layout, -1 if not. tenant gets a
 * NUL-terminated copy. */
static int parse_key(const uint8_t *k, size_t n, storage_seen_entry_t *e,
                     char tenant[STORAGE_TENANT_MAX + 1])
{
    if (n < 9) return -1;
    size_t l = k[8];
    if (l == 0 || l > STORAGE_TENANT_MAX || n != 8 + 1 + l + 8 + 16) return -1;
    e->token = be64_get(k);
    memcpy(tenant, k + 9, l);
    tenant[l] = 0;
    e->tenant = tenant;
    e->series_id = be64_get(k + 9 + l);
    memcpy(e->profile_id, k + 17 + l, 16);
    return 0;
}

static int64_t floor_s(int64_t ns)
{
    return ns / 1000000000 - (ns % 1000000000 < 0);
}

/* The iterator's bounds: from the entry after `after` (or token lo) up to
 * the last key of token hi (no upper bound when hi is the largest token). */
static void bounds(skey_t *lo, skey_t *hi, uint64_t lo_tok, uint64_t hi_tok,
                   const storage_seen_entry_t *after)
{
    skey_reset(lo);
    if (after != NULL) {
        storage_key_profile(lo, after->token, after->tenant, after->series_id, after->profile_id);
        storage_key_u8(lo, 0); /* the smallest key greater than `after` */
    } else {
        storage_key_u64(lo, lo_tok);
    }
    skey_reset(hi);
    if (hi_tok != UINT64_MAX) storage_key_u64(hi, hi_tok + 1);
}

int storage_seen_scan(storage_t *s, uint64_t lo_tok, uint64_t hi_tok,
                      const storage_seen_entry_t *after, int64_t from_s, int64_t until_s,
                      storage_seen_fn fn, void *ctx)
{
    if (lo_tok > hi_tok || from_s >= until_s) return 0;
    if (after != NULL && storage_check_tenant(after->tenant, NULL) != 0)
        return ERR_INVALID_ARGUMENT;
    skey_t lo, hi;
    bounds(&lo, &hi, lo_tok, hi_tok, after);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_PROFILES]);
    int64_t keep = s->opts.seen_retention_seconds, now = storage_now(s);
    char tenant[STORAGE_TENANT_MAX + 1];
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        storage_seen_entry_t e;
        if (vn != STORAGE_PROFILE_VALUE_LEN || parse_key(k, kn, &e, tenant) != 0) continue;
        if (e.token > hi_tok) break;
        if (keep > 0 && storage_i64_get(v + 16) + keep <= now) continue; /* expired */
        e.time_ns = storage_i64_get(v);
        int64_t t = floor_s(e.time_ns);
        if (t >= from_s && t < until_s) rc = fn(ctx, &e);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "seen index scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}

int storage_seen_has(storage_t *s, const storage_seen_entry_t *e)
{
    int rc = storage_check_tenant(e->tenant, NULL);
    if (rc != 0) return rc;
    skey_t k;
    storage_key_profile(&k, e->token, e->tenant, e->series_id, e->profile_id);
    char *err = NULL;
    size_t vn = 0;
    char *v =
        rocksdb_get_cf(s->db, s->ropts, s->cf[CF_PROFILES], (const char *)k.b, k.n, &vn, &err);
    rc = storage_rocks_err(err, NULL, "seen index lookup");
    if (rc == 0) rc = v != NULL; /* an expired entry still counts: a write would skip it too */
    free(v);
    return rc;
}
