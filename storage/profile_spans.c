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
 * token within span retention, not with the whole family, and profiles of
 * one token are asked for together so that one scan serves them all.
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

/* One profile asked for: its series and window as the last 16 bytes of a
 * span key, sorted by them. */
typedef struct want {
    uint8_t suffix[16];
    size_t ref;
} want_t;

static int cmp_want(const void *a, const void *b)
{
    int c = memcmp(((const want_t *)a)->suffix, ((const want_t *)b)->suffix, 16);
    if (c != 0) return c;
    size_t x = ((const want_t *)a)->ref, y = ((const want_t *)b)->ref;
    return x < y ? -1 : x > y;
}

/* The first of w[0..n) whose suffix is sfx, or n. */
static size_t first_of(const want_t *w, size_t n, const uint8_t *sfx)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(w[mid].suffix, sfx, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && memcmp(w[lo].suffix, sfx, 16) == 0 ? lo : n;
}

/* The member of profile id in parsed value v, if listed (fn gets it), else
 * fn gets tree NULL when v could hold the profile unlisted: an anonymous
 * rest (past max_span_members, or a format-7 value) or a value that left
 * profiles out (SEALED, SHORT). */
static int visit(const spanval_t *v, size_t ref, const uint8_t id[16], uint8_t kind, uint64_t span,
                 storage_profile_span_fn fn, void *ctx)
{
    for (size_t i = 0; i < v->n; i++)
        if (memcmp(v->m[i].id, id, 16) == 0)
            return fn(ctx, ref, kind, span, v->m[i].tree, v->m[i].len);
    if (v->rest_count > 0 || (v->flags & (SPANVAL_SEALED | SPANVAL_SHORT)) != 0)
        return fn(ctx, ref, kind, span, NULL, 0);
    return 0;
}

/* One span tree of a wanted series and window: w[at..] with that suffix. */
static int one_tree(const uint8_t *k, size_t L, const uint8_t *val, size_t vn, const want_t *w,
                    size_t n, size_t at, const storage_profile_ref_t *refs,
                    storage_profile_span_fn fn, void *ctx)
{
    uint8_t kind = k[1 + L];
    uint64_t span = be64_get(k + 2 + L);
    spanval_t v = {0};
    int prc = storage_spanval_parse(val, vn, &v), rc = 0;
    if (prc == ERR_NOMEM) rc = prc;
    for (size_t i = at; rc == 0 && i < n && memcmp(w[i].suffix, w[at].suffix, 16) == 0; i++)
        rc = prc != 0 ? fn(ctx, w[i].ref, kind, span, NULL, 0) /* unreadable: unknown */
                      : visit(&v, w[i].ref, refs[w[i].ref].profile_id, kind, span, fn, ctx);
    storage_spanval_free(&v);
    return rc;
}

int storage_profile_spans(storage_t *s, const char *tenant, uint64_t token,
                          const storage_profile_ref_t *refs, size_t n, storage_profile_span_fn fn,
                          void *ctx)
{
    size_t L = strlen(tenant);
    if (L < 1 || L > STORAGE_TENANT_MAX) return ERR_INVALID_ARGUMENT;
    if (n == 0) return 0;
    want_t *w = calloc(n, sizeof *w);
    if (w == NULL) return ERR_NOMEM;
    int64_t res = storage_resolutions[0];
    for (size_t i = 0; i < n; i++) {
        int64_t window = floor_div(floor_div(refs[i].time_ns, 1000000000), res) * res;
        skey_t k; /* its last 16 bytes: series and window, as every key of it ends */
        storage_key_span(&k, tenant, STORAGE_SPAN_KIND_SPAN, 0, token, refs[i].series_id, window);
        memcpy(w[i].suffix, k.b + k.n - 16, 16);
        w[i].ref = i;
    }
    qsort(w, n, sizeof *w, cmp_want);
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
        if (kn != SPAN_KEY_FIXED + L) continue;
        size_t at = first_of(w, n, ik + kn - 16);
        if (at == n) continue;
        uint8_t k[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
        storage_span_key_of_index(ik, kn, k);
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        char *err = NULL;
        rocksdb_pinnableslice_t *v =
            rocksdb_get_pinned_cf(s->db, ro, s->cf[CF_SPANS], (const char *)k, kn, &err);
        rc = storage_rocks_err(err, NULL, "profile spans: span tree");
        if (rc != 0 || v == NULL) continue; /* an entry whose tree is gone */
        const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &vn);
        rc = one_tree(k, L, val, vn, w, n, at, refs, fn, ctx);
        rocksdb_pinnableslice_destroy(v);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "profile spans: span index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    free(w);
    return ioerr != 0 ? ioerr : rc;
}
