/* profile_spans.c — the span/trace trees one stored profile contributed
 * (storage.h, storage_profile_spans), for anti-entropy: a profile that a
 * replica fetches from another brings its span members along, so span
 * queries on the repaired replica are as exact as its flame graphs
 * (docs/cluster.md, "Anti-entropy").
 *
 * Span trees are not kept per profile: a `spans` value lists its members by
 * profile id, each with its own tree (spanval.c). A profile's trees are
 * those of its series and 10 s window that list its id. `span_index` holds
 * the `spans` keys token first (token | tenant | kind | id | series |
 * window), so they are found by one scan of the (token, tenant) prefix
 * filtered on series and window: the cost grows with the span trees of that
 * token within span retention, not with the whole family.
 */
#include <stdlib.h>
#include <string.h>

#include "common/varint.h"
#include "storage/storage_int.h"

/* tenant length, kind, id, token, series, window (plus the tenant) */
#define SPAN_KEY_FIXED (1 + 1 + 8 + 8 + 8 + 8)

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The member of profile id in value v[0..vn), if listed: *tree, *len. 1
 * when found, 0 when not, ERR_CORRUPT when v does not parse. *maybe is set
 * when the value could hold the profile unlisted: an anonymous rest (past
 * max_span_members, or a format-7 value) or a value that left profiles out
 * (SEALED, SHORT). */
static int find_member(const uint8_t *v, size_t vn, const uint8_t id[16], const uint8_t **tree,
                       size_t *len, int *maybe)
{
    spanval_t sv = {0};
    int rc = storage_spanval_parse(v, vn, &sv), found = 0;
    for (size_t i = 0; rc == 0 && i < sv.n && !found; i++) {
        if (memcmp(sv.m[i].id, id, 16) != 0) continue;
        *tree = sv.m[i].tree;
        *len = sv.m[i].len;
        found = 1;
    }
    *maybe = rc == 0 && !found &&
             (sv.rest_count > 0 || (sv.flags & (SPANVAL_SEALED | SPANVAL_SHORT)) != 0);
    storage_spanval_free(&sv);
    return rc != 0 ? rc : found;
}

int storage_profile_spans(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          int64_t time_ns, const uint8_t profile_id[16], storage_profile_span_fn fn,
                          void *ctx)
{
    size_t L = strlen(tenant);
    if (L < 1 || L > STORAGE_TENANT_MAX) return ERR_INVALID_ARGUMENT;
    int64_t res = storage_resolutions[0];
    int64_t window = floor_div(floor_div(time_ns, 1000000000), res) * res;
    skey_t want; /* its last 16 bytes: series and window, as every key of this profile ends */
    storage_key_span(&want, tenant, STORAGE_SPAN_KIND_SPAN, 0, token, series_id, window);
    uint8_t prefix[9 + STORAGE_TENANT_MAX];
    be64_put(prefix, token);
    prefix[8] = (uint8_t)L;
    memcpy(prefix + 9, tenant, L);
    size_t pn = 9 + L;
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SPAN_INDEX]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)prefix, pn); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (kn < pn || memcmp(ik, prefix, pn) != 0) break; /* past (token, tenant) */
        if (kn != SPAN_KEY_FIXED + L || memcmp(ik + kn - 16, want.b + want.n - 16, 16) != 0)
            continue;
        uint8_t k[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
        storage_span_key_of_index(ik, kn, k);
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        char *err = NULL;
        rocksdb_pinnableslice_t *v =
            rocksdb_get_pinned_cf(s->db, ro, s->cf[CF_SPANS], (const char *)k, kn, &err);
        rc = storage_rocks_err(err, NULL, "profile spans: span tree");
        if (rc != 0 || v == NULL) continue; /* an entry whose tree is gone */
        const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &vn), *tree = NULL;
        size_t len = 0;
        int maybe = 0, found = find_member(val, vn, profile_id, &tree, &len, &maybe);
        if (found == 1)
            rc = fn(ctx, k[1 + L], be64_get(k + 2 + L), tree, len);
        else if (maybe || found < 0) /* found < 0: unreadable, so unknown too */
            rc = fn(ctx, k[1 + L], be64_get(k + 2 + L), NULL, 0);
        rocksdb_pinnableslice_destroy(v);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "profile spans: span index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    return ioerr != 0 ? ioerr : rc;
}
