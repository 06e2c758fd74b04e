/* profile_spans.c — the span/trace trees one stored profile contributed
 * (storage.h, storage_profile_spans), for anti-entropy: a profile that a
 * replica fetches from another brings its span members along, so span
 * queries on the repaired replica are as exact as its flame graphs
 * (docs/cluster.md, "Anti-entropy").
 *
 * Span trees are not kept per profile: a `spans` value lists its members by
 * profile id, each with its own tree (spanval.c). `profile_span_index`
 * (pspan_index.c) names the trees of each profile under (token, tenant,
 * series, window, profile id), and those of the series and window that
 * may hold profiles they do not name under one unnamed owner. A profile's
 * trees are found by two prefix reads there and a point read of each tree:
 * the cost grows with that profile's own spans (and the unnamed trees of
 * its series and window), not with the span trees of its token, which on
 * a service recording millions of span ids a day made each FETCH run a
 * scan of all of them (formats 8 to 11 scanned span_index).
 */
#include <stdlib.h>
#include <string.h>

#include "common/varint.h"
#include "storage/storage_int.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* One read of a profile's trees, at one snapshot. */
typedef struct look {
    storage_t *s;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    size_t ref;
    const uint8_t *id; /* the profile's id */
    storage_profile_span_fn fn;
    void *ctx;
} look_t;

/* The tree of entry pk (pn bytes) for l->ref: own, an entry of the profile
 * itself (its member if listed, else unknown: it went into a rest or was
 * written unknown); else an unnamed tree of its series and window (its
 * member if listed, unknown if the value could hold it unlisted). */
static int one_tree(look_t *l, const uint8_t *pk, size_t pn, int own)
{
    uint8_t k[STORAGE_PSPAN_KEY_MAX];
    size_t kn = pn - 16, L = pk[8], vn;
    storage_span_key_of_pspan(pk, pn, k);
    if (storage_filter_expired(l->s, CF_SPANS, k, kn, NULL, 0)) return 0;
    if (!own) { /* already named by the profile's own entry */
        uint8_t ok[STORAGE_PSPAN_KEY_MAX];
        storage_pspan_key(k, kn, l->id, ok);
        char *err = NULL;
        rocksdb_pinnableslice_t *o = rocksdb_get_pinned_cf(
            l->s->db, l->ro, l->s->cf[CF_PSPAN_INDEX], (const char *)ok, pn, &err);
        int rc = storage_rocks_err(err, NULL, "profile spans: profile span index");
        rocksdb_pinnableslice_destroy(o);
        if (rc != 0 || o != NULL) return rc;
    }
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(l->s->db, l->ro, l->s->cf[CF_SPANS], (const char *)k, kn, &err);
    int rc = storage_rocks_err(err, NULL, "profile spans: span tree");
    if (rc != 0 || v == NULL) return rc; /* an entry whose tree is gone */
    uint8_t kind = k[1 + L];
    uint64_t span = be64_get(k + 2 + L);
    const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &vn);
    spanval_t sv = {0};
    int prc = storage_spanval_parse(val, vn, &sv);
    if (prc == ERR_NOMEM) {
        rc = prc;
    } else if (prc != 0) {
        rc = l->fn(l->ctx, l->ref, kind, span, NULL, 0); /* unreadable: unknown */
    } else {
        size_t i = 0;
        while (i < sv.n && memcmp(sv.m[i].id, l->id, 16) != 0)
            i++;
        if (i < sv.n)
            rc = l->fn(l->ctx, l->ref, kind, span, sv.m[i].tree, sv.m[i].len);
        else if (own || sv.rest_count > 0 || (sv.flags & (SPANVAL_SEALED | SPANVAL_SHORT)) != 0)
            rc = l->fn(l->ctx, l->ref, kind, span, NULL, 0);
    }
    storage_spanval_free(&sv);
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

/* Every entry under prefix p (pn bytes). */
static int walk(look_t *l, const uint8_t *p, size_t pn, int own)
{
    int rc = 0;
    for (rocksdb_iter_seek(l->it, (const char *)p, pn); rc == 0 && rocksdb_iter_valid(l->it);
         rocksdb_iter_next(l->it)) {
        size_t kn;
        const uint8_t *pk = (const uint8_t *)rocksdb_iter_key(l->it, &kn);
        if (kn < pn || memcmp(pk, p, pn) != 0) break; /* past the prefix */
        if (storage_pspan_key_ok(pk, kn)) rc = one_tree(l, pk, kn, own);
    }
    char *err = NULL;
    rocksdb_iter_get_error(l->it, &err);
    int ioerr = storage_rocks_err(err, NULL, "profile spans: profile span index");
    return ioerr != 0 ? ioerr : rc;
}

int storage_profile_spans(storage_t *s, const char *tenant, uint64_t token,
                          const storage_profile_ref_t *refs, size_t n, storage_profile_span_fn fn,
                          void *ctx)
{
    size_t L = strlen(tenant);
    if (L < 1 || L > STORAGE_TENANT_MAX) return ERR_INVALID_ARGUMENT;
    if (n == 0) return 0;
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    look_t l = {.s = s, .ro = rocksdb_readoptions_create(), .fn = fn, .ctx = ctx};
    rocksdb_readoptions_set_snapshot(l.ro, snap);
    l.it = rocksdb_create_iterator_cf(s->db, l.ro, s->cf[CF_PSPAN_INDEX]);
    int64_t res = storage_resolutions[0];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t window = floor_div(floor_div(refs[i].time_ns, 1000000000), res) * res;
        uint8_t p[STORAGE_PSPAN_KEY_MAX];
        l.ref = i;
        l.id = refs[i].profile_id;
        size_t pn = storage_pspan_prefix(tenant, token, refs[i].series_id, window, l.id, p);
        rc = walk(&l, p, pn, 1);
        storage_pspan_prefix(tenant, token, refs[i].series_id, window, storage_pspan_unnamed, p);
        if (rc == 0 && memcmp(l.id, storage_pspan_unnamed, 16) != 0) rc = walk(&l, p, pn, 0);
    }
    rocksdb_iter_destroy(l.it);
    rocksdb_readoptions_destroy(l.ro);
    rocksdb_release_snapshot(s->db, snap);
    return rc;
}
