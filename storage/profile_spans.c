/* profile_spans.c — the span/trace trees one stored profile contributed
 * (storage.h, storage_profile_spans), for anti-entropy: a profile that a
 * replica fetches from another brings its span members along, so span
 * queries on the repaired replica are as exact as its flame graphs
 * (docs/cluster.md, "Anti-entropy").
 *
 * Span trees are not kept per profile: a `spans` value lists its members by
 * profile id, each with its own tree (spanval.c). `profile_span_index`
 * (pspan_index.c) names the trees of each profile under (token, tenant,
 * series, window, profile id) — a list key its write put, and entries of
 * one tree each that streams and the upgrade put — and those of the series
 * and window that may hold profiles they do not name under one unnamed
 * owner. A profile's trees are found by two prefix reads there and a point
 * read of each tree, each tree once:
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
    /* the profile's list key's records (a copy: the iterator moves on) */
    uint8_t *list;
    size_t nlist, list_cap;
} look_t;

static int cmp_rec(const void *a, const void *b)
{
    return memcmp(a, b, STORAGE_PSPAN_REC);
}

/* 1 when the tree of entry pk (kind and id at its end) is in l->list. */
static int listed(const look_t *l, const uint8_t *pk, size_t pn)
{
    return l->nlist > 0 && bsearch(pk + pn - STORAGE_PSPAN_REC, l->list, l->nlist,
                                   STORAGE_PSPAN_REC, cmp_rec) != NULL;
}

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
    if (!own && listed(l, pk, pn)) return 0; /* named by the profile's list */
    if (!own) {                              /* or by an entry of its own */
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

/* The trees of list key p (pn bytes) with value v: kept in l->list, each
 * read as an entry of its own. ERR_CORRUPT when v is not whole records. */
static int list_trees(look_t *l, const uint8_t *p, size_t pn, const uint8_t *v, size_t vn)
{
    if (vn % STORAGE_PSPAN_REC != 0) return ERR_CORRUPT;
    if (vn > l->list_cap) {
        uint8_t *x = realloc(l->list, vn);
        if (x == NULL) return ERR_NOMEM;
        l->list = x;
        l->list_cap = vn;
    }
    memcpy(l->list, v, vn);
    l->nlist = vn / STORAGE_PSPAN_REC;
    uint8_t pk[STORAGE_PSPAN_KEY_MAX];
    memcpy(pk, p, pn);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l->nlist; i++) {
        memcpy(pk + pn, l->list + i * STORAGE_PSPAN_REC, STORAGE_PSPAN_REC);
        rc = one_tree(l, pk, pn + STORAGE_PSPAN_REC, 1);
    }
    return rc;
}

/* Every entry under prefix p (pn bytes): the profile's list key first (the
 * prefix itself), then single entries, those the list holds skipped. */
static int walk(look_t *l, const uint8_t *p, size_t pn, int own)
{
    int rc = 0;
    for (rocksdb_iter_seek(l->it, (const char *)p, pn); rc == 0 && rocksdb_iter_valid(l->it);
         rocksdb_iter_next(l->it)) {
        size_t kn, vn;
        const uint8_t *pk = (const uint8_t *)rocksdb_iter_key(l->it, &kn);
        if (kn < pn || memcmp(pk, p, pn) != 0) break; /* past the prefix */
        int kind = storage_pspan_key_ok(pk, kn);
        if (kind == 2 && own) {
            const uint8_t *v = (const uint8_t *)rocksdb_iter_value(l->it, &vn);
            rc = list_trees(l, pk, kn, v, vn);
        } else if (kind == 1 && !(own && listed(l, pk, kn))) {
            rc = one_tree(l, pk, kn, own);
        }
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
        l.nlist = 0;
        size_t pn = storage_pspan_prefix(tenant, token, refs[i].series_id, window, l.id, p);
        rc = walk(&l, p, pn, 1);
        storage_pspan_prefix(tenant, token, refs[i].series_id, window, storage_pspan_unnamed, p);
        if (rc == 0 && memcmp(l.id, storage_pspan_unnamed, 16) != 0) rc = walk(&l, p, pn, 0);
    }
    rocksdb_iter_destroy(l.it);
    rocksdb_readoptions_destroy(l.ro);
    free(l.list);
    rocksdb_release_snapshot(s->db, snap);
    return rc;
}
