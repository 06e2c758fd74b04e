/* ptrees.c — single stored profiles (the profile_trees column family;
 * write.c puts its values in the batch of the profile's seen entry): reading
 * one back, and listing a series' profiles newest first.
 *
 * A value is the series' root total and its share of one profile as a
 * sparse vector over the token's stack-node ids, the same encoding as a
 * block: the node table turns it back into stacks. Node tables never shrink
 * or renumber, so ids written with a profile stay valid for as long as the
 * profile is kept. Keys are time-ordered within a series, so a listing of
 * the newest profiles in a range reads only those keys.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* The stacks of v over table t, added into dst. */
static int rebuild(const nodetab_t *t, const sparse_vec_t *v, calltree_t *dst)
{
    uint32_t count = storage_nodetab_count(t);
    /* parents have smaller ids, so a path is at most id + 1 long */
    uint32_t *path = malloc(((size_t)count + 1) * sizeof *path);
    if (path == NULL) return ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < v->n; i++) {
        uint32_t id = v->id[i], len = 0, node = 0;
        if (id >= count) {
            rc = ERR_CORRUPT; /* an id the table never had: not this table's profile */
            break;
        }
        for (uint32_t k = id; k != 0; k = storage_nodetab_parent(t, k))
            path[len++] = k;
        while (rc == 0 && len > 0)
            rc = calltree_child(dst, node, storage_nodetab_sym(t, path[--len]), &node);
        if (rc == 0) calltree_add_self(dst, node, v->val[i]);
    }
    free(path);
    return rc;
}

/* The plain tree of the series that a scaled value names: its key is key
 * with that series' id in place of this one's. */
static int sibling_vec(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *key,
                       size_t klen, uint64_t sibling, sparse_vec_t *vec)
{
    uint8_t k[SKEY_MAX];
    if (klen < 32 || klen > sizeof k) return ERR_CORRUPT;
    memcpy(k, key, klen);
    be64_put(k + klen - 32, sibling); /* series id, then time and profile id */
    char *err = NULL;
    rocksdb_pinnableslice_t *sv =
        rocksdb_get_pinned_cf(s->db, ro, s->cf[CF_PTREES], (const char *)k, klen, &err);
    int rc = storage_rocks_err(err, NULL, "profile tree lookup");
    if (rc == 0 && sv == NULL) rc = ERR_CORRUPT; /* put in one batch with it, dropped with it */
    if (rc == 0) {
        size_t n;
        const uint8_t *b = (const uint8_t *)rocksdb_pinnableslice_value(sv, &n);
        /* a reference names a plain kept tree, never another reference */
        if (n < PTREE_HEADER_LEN || b[0] != PTREE_VERSION ||
            (b[1] & (PTREE_FLAG_NO_TREE | PTREE_FLAG_SCALED)))
            rc = ERR_CORRUPT;
        else
            rc = storage_sparse_decode(b + PTREE_HEADER_LEN, n - PTREE_HEADER_LEN, vec);
    }
    rocksdb_pinnableslice_destroy(sv);
    return rc;
}

int storage_ptree_vec(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *key,
                      size_t klen, const uint8_t *v, size_t n, sparse_vec_t *vec)
{
    if (n < PTREE_HEADER_LEN || v[0] != PTREE_VERSION) return ERR_CORRUPT;
    if (v[1] & PTREE_FLAG_NO_TREE) return ERR_NOT_FOUND;
    if (!(v[1] & PTREE_FLAG_SCALED))
        return storage_sparse_decode(v + PTREE_HEADER_LEN, n - PTREE_HEADER_LEN, vec);
    const uint8_t *p = v + PTREE_HEADER_LEN, *end = v + n;
    int64_t c;
    if (end - p < 8) return ERR_CORRUPT;
    uint64_t sibling = (uint64_t)storage_i64_get(p);
    p += 8;
    if (!varint_read_s(&p, end, &c) || c == 0 || p != end) return ERR_CORRUPT;
    int rc = sibling_vec(s, ro, key, klen, sibling, vec);
    for (size_t i = 0; rc == 0 && i < vec->n; i++) /* exact: checked at write (write.c) */
        vec->val[i] = (int64_t)((uint64_t)vec->val[i] * (uint64_t)c);
    return rc;
}

int storage_read_profile(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         int64_t time_ns, const uint8_t profile_id[16], calltree_t *dst)
{
    return storage_read_profile_piece(s, tenant, token, series_id, time_ns, profile_id, dst, NULL);
}

int storage_read_profile_piece(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                               int64_t time_ns, const uint8_t profile_id[16], calltree_t *dst,
                               int *piece)
{
    if (piece != NULL) *piece = 0;
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    if (storage_ptree_expired(s, time_ns)) return ERR_NOT_FOUND; /* as compaction would drop it */
    skey_t k;
    char *err = NULL;
    size_t n = 0;
    storage_key_ptree(&k, token, tenant, series_id, time_ns, profile_id);
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_PTREES], (const char *)k.b, k.n, &n, &err);
    rc = storage_rocks_err(err, NULL, "profile tree lookup");
    if (rc == 0 && v == NULL) rc = ERR_NOT_FOUND;
    if (rc != 0) return rc;
    if (piece != NULL && n >= 2) *piece = (v[1] & PTREE_FLAG_PIECE) != 0;
    sparse_vec_t vec;
    storage_sparse_init(&vec);
    rc = storage_ptree_vec(s, s->ropts, k.b, k.n, (const uint8_t *)v, n, &vec);
    free(v);
    nodetab_t *tab = NULL;
    if (rc == 0) rc = storage_nodetab_acquire(s, token, tenant, &tab, NULL);
    if (rc == 0) {
        rc = rebuild(tab, &vec, dst);
        storage_nodetab_release(s, tab, 0);
    }
    storage_sparse_free(&vec);
    if (rc == ERR_CORRUPT)
        log_warn("storage", "profile tree of series %016llx: corrupt value",
                 (unsigned long long)series_id);
    return rc;
}

/* Nanoseconds of unix second t, clamped to the i64 range (plans reach far). */
static int64_t ns_of(int64_t t)
{
    if (t >= INT64_MAX / 1000000000) return INT64_MAX;
    if (t <= INT64_MIN / 1000000000) return INT64_MIN;
    return t * 1000000000;
}

/* The first second at or after t that starts a 10 s window. */
static int64_t window_ceil(int64_t t)
{
    int64_t res = storage_resolutions[0];
    if (t > INT64_MAX - res) return INT64_MAX;
    int64_t q = t / res * res; /* toward zero: the ceiling when t < 0 */
    return t > 0 && q != t ? q + res : q;
}

/* Whether the 10 s window of the series starting at window is past
 * resolution 0's retention (as its block would be, read.c). */
static int window_gone(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                       int64_t window)
{
    skey_t k;
    storage_key_window(&k, token, tenant, series_id, 0, window);
    return storage_filter_expired(s, CF_BLOCKS, k.b, k.n, NULL, 0);
}

/* Ends a scan: the iterator's error (named what) if it had one, else rc;
 * destroys the iterator and its read options. */
static int scan_end(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, int rc, const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, what);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}

/* One flagged value of storage_scan_unblocked handed to fn. */
static int unblocked_one(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *k, size_t kn,
                         const uint8_t *v, size_t vn, int64_t window, sparse_vec_t *vec,
                         storage_unblocked_fn fn, void *ctx)
{
    if (!(v[1] & PTREE_FLAG_SCALED))
        return fn(ctx, window, v + PTREE_HEADER_LEN, vn - PTREE_HEADER_LEN, NULL);
    int rc = storage_ptree_vec(s, ro, k, kn, v, vn, vec);
    if (rc == ERR_NOMEM) return rc;
    if (rc != 0) { /* skipped, as a corrupt block is */
        storage_log_corrupt(&s->counters, "profile tree", 0, rc);
        return 0;
    }
    return fn(ctx, window, NULL, 0, vec);
}

int storage_scan_unblocked(storage_t *s, const rocksdb_snapshot_t *snap, const char *tenant,
                           uint64_t token, uint64_t series_id, int64_t from_s, int64_t until_s,
                           int expired_too, storage_unblocked_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    from_s = window_ceil(from_s); /* the trees of the windows that start in the range */
    until_s = window_ceil(until_s);
    if (rc != 0 || from_s >= until_s) return rc;
    atomic_fetch_add(&s->counters.unblocked_scans, 1);
    static const uint8_t zero[16] = {0};
    skey_t lo, hi;
    storage_key_ptree(&lo, token, tenant, series_id, ns_of(from_s), zero);
    storage_key_ptree(&hi, token, tenant, series_id, ns_of(until_s), zero);
    rocksdb_readoptions_t *it_ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(it_ro, (const char *)lo.b, lo.n);
    rocksdb_readoptions_set_iterate_upper_bound(it_ro, (const char *)hi.b, hi.n);
    rocksdb_readoptions_t *pt_ro = NULL; /* point reads of scaled trees' bases */
    if (snap != NULL) {
        rocksdb_readoptions_set_snapshot(it_ro, snap);
        pt_ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_snapshot(pt_ro, snap);
    }
    const rocksdb_readoptions_t *ro = pt_ro != NULL ? pt_ro : s->ropts;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, it_ro, s->cf[CF_PTREES]);
    sparse_vec_t vec;
    storage_sparse_init(&vec);
    int64_t last = INT64_MIN;
    int gone = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n || vn < PTREE_HEADER_LEN || v[0] != PTREE_VERSION ||
            (v[1] & (PTREE_FLAG_UNBLOCKED | PTREE_FLAG_NO_TREE)) != PTREE_FLAG_UNBLOCKED)
            continue;
        int64_t t = storage_time_decode(k + kn - 24);
        int64_t sec = t / 1000000000 - (t % 1000000000 < 0); /* floor */
        int64_t window = window_ceil(sec);
        if (window != sec) window -= storage_resolutions[0];
        if (window != last && !expired_too) {
            last = window;
            gone = window_gone(s, tenant, token, series_id, window);
        }
        if (!gone) rc = unblocked_one(s, ro, k, kn, v, vn, window, &vec, fn, ctx);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "profile trees of a window");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(it_ro);
    if (pt_ro != NULL) rocksdb_readoptions_destroy(pt_ro);
    storage_sparse_free(&vec);
    return ioerr != 0 ? ioerr : rc;
}

int storage_scan_profile_trees(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                               int64_t from_s, int64_t until_s, size_t max, storage_ptree_fn fn,
                               void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || from_s >= until_s || max == 0) return rc;
    static const uint8_t zero[16] = {0};
    skey_t lo, hi;
    storage_key_ptree(&lo, token, tenant, series_id, ns_of(from_s), zero);
    storage_key_ptree(&hi, token, tenant, series_id, ns_of(until_s), zero);
    size_t tail = 8 + 16; /* time and profile id after the series prefix */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_PTREES]);
    size_t seen = 0;
    /* newest first: from the upper bound backwards, stopping after max */
    for (rocksdb_iter_seek_to_last(it); rc == 0 && seen < max && rocksdb_iter_valid(it);
         rocksdb_iter_prev(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n || vn < PTREE_HEADER_LEN || v[0] != PTREE_VERSION) continue;
        int64_t t = storage_time_decode(k + kn - tail);
        if (storage_ptree_expired(s, t)) break; /* everything older is expired too */
        seen++;
        rc = fn(ctx, t, k + kn - 16, storage_i64_get(v + 2), !(v[1] & PTREE_FLAG_NO_TREE),
                (v[1] & PTREE_FLAG_PIECE) != 0);
    }
    return scan_end(it, ro, rc, "profile scan");
}

/* The time (ns) of the profile_trees entry the iterator stands on, or
 * INT64_MIN when it stands on none of the series' layout (klen its keys'). */
static int64_t ptree_at(rocksdb_iterator_t *it, size_t klen)
{
    if (!rocksdb_iter_valid(it)) return INT64_MIN;
    size_t kn;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
    return kn == klen ? storage_time_decode(k + kn - 8 - 16) : INT64_MIN;
}

/* The entries of one range [a, b) (ns) from where the iterator stands, up
 * to the end of the series (its keys start with prefix, plen bytes: an
 * iterator without bounds goes on to other series' keys). */
static int scan_span(storage_t *s, rocksdb_iterator_t *it, size_t klen, const uint8_t *prefix,
                     size_t plen, int64_t b, storage_ptree_fn fn, void *ctx)
{
    int rc = 0;
    for (; rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (kn < plen || memcmp(k, prefix, plen) != 0) break; /* past the series */
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != klen || vn < PTREE_HEADER_LEN || v[0] != PTREE_VERSION) continue;
        int64_t t = storage_time_decode(k + kn - 8 - 16);
        if (t >= b) break;                         /* the next range's, or past them all */
        if (storage_ptree_expired(s, t)) continue; /* older first: the expired come first */
        rc = fn(ctx, t, k + kn - 16, storage_i64_get(v + 2), !(v[1] & PTREE_FLAG_NO_TREE),
                (v[1] & PTREE_FLAG_PIECE) != 0);
    }
    return rc;
}

/* storage_scan_profile_trees_spans over sc's iterator when sc is not NULL,
 * else one of its own. */
static int scan_spans(storage_t *s, storage_scans_t *sc, const char *tenant, uint64_t token,
                      uint64_t series_id, const int64_t *from_s, const int64_t *until_s, size_t n,
                      storage_ptree_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || n == 0) return rc;
    int64_t lo_s = from_s[0], hi_s = until_s[0];
    for (size_t j = 1; j < n; j++) {
        lo_s = from_s[j] < lo_s ? from_s[j] : lo_s;
        hi_s = until_s[j] > hi_s ? until_s[j] : hi_s;
    }
    if (lo_s >= hi_s) return 0;
    static const uint8_t zero[16] = {0};
    skey_t lo, hi, at;
    storage_key_ptree(&lo, token, tenant, series_id, ns_of(lo_s), zero);
    storage_key_ptree(&hi, token, tenant, series_id, ns_of(hi_s), zero);
    rocksdb_readoptions_t *ro = NULL;
    rocksdb_iterator_t *it = storage_scans_iter(sc, CF_PTREES);
    if (it == NULL) {
        ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
        it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_PTREES]);
    }
    size_t plen = lo.n - 8 - 16; /* token|tenant|series: the key less its time and id */
    int placed = 0;              /* the iterator stands on the first entry at or after end */
    int64_t end = INT64_MAX;     /* the last range's end (ns) */
    for (size_t j = 0; rc == 0 && j < n; j++) {
        if (from_s[j] >= until_s[j]) continue;
        int64_t a = ns_of(from_s[j]), b = ns_of(until_s[j]);
        /* ranges in order, nothing stored between the last one's end and
         * the entry it stopped at: no seek (the next range of a series'
         * windows as ingested starts at that entry) */
        int follows = placed && end <= a; /* the last range's end at or before this one */
        if (follows && !rocksdb_iter_valid(it)) continue; /* nothing left */
        if (!follows || ptree_at(it, lo.n) < a) {
            storage_key_ptree(&at, token, tenant, series_id, a, zero);
            rocksdb_iter_seek(it, (const char *)at.b, at.n);
        }
        placed = 1;
        end = b;
        rc = scan_span(s, it, lo.n, lo.b, plen, b, fn, ctx);
    }
    if (ro == NULL) { /* sc's: kept open */
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        int ioerr = storage_rocks_err(err, NULL, "profile scan");
        return ioerr != 0 ? ioerr : rc;
    }
    return scan_end(it, ro, rc, "profile scan");
}

int storage_scan_profile_trees_spans(storage_t *s, const char *tenant, uint64_t token,
                                     uint64_t series_id, const int64_t *from_s,
                                     const int64_t *until_s, size_t n, storage_ptree_fn fn,
                                     void *ctx)
{
    return scan_spans(s, NULL, tenant, token, series_id, from_s, until_s, n, fn, ctx);
}

int storage_scans_profile_trees_spans(storage_scans_t *x, const char *tenant, uint64_t token,
                                      uint64_t series_id, const int64_t *from_s,
                                      const int64_t *until_s, size_t n, storage_ptree_fn fn,
                                      void *ctx)
{
    return scan_spans(storage_scans_store(x), x, tenant, token, series_id, from_s, until_s, n, fn,
                      ctx);
}

/* Splits a profile_trees key; 0 if it has that layout, -1 if not. tenant
 * gets a NUL-terminated copy. */
static int ptree_key(const uint8_t *k, size_t n, storage_seen_entry_t *e,
                     char tenant[STORAGE_TENANT_MAX + 1])
{
    if (n < 9) return -1;
    size_t l = k[8];
    if (l == 0 || l > STORAGE_TENANT_MAX || n != 8 + 1 + l + 8 + 8 + 16) return -1;
    e->token = be64_get(k);
    memcpy(tenant, k + 9, l);
    tenant[l] = 0;
    e->tenant = tenant;
    e->series_id = be64_get(k + 9 + l);
    e->time_ns = storage_time_decode(k + 17 + l);
    memcpy(e->profile_id, k + 25 + l, 16);
    return 0;
}

int storage_ptree_scan(storage_t *s, uint64_t lo_tok, uint64_t hi_tok,
                       const storage_seen_entry_t *after, int64_t from_s, int64_t until_s,
                       storage_ptree_entry_fn fn, void *ctx)
{
    if (lo_tok > hi_tok || from_s >= until_s) return 0;
    if (after != NULL && storage_check_tenant(after->tenant, NULL) != 0)
        return ERR_INVALID_ARGUMENT;
    skey_t lo, hi;
    if (after != NULL) {
        storage_key_ptree(&lo, after->token, after->tenant, after->series_id, after->time_ns,
                          after->profile_id);
        storage_key_u8(&lo, 0); /* the smallest key greater than `after` */
    } else {
        skey_reset(&lo);
        storage_key_u64(&lo, lo_tok);
    }
    skey_reset(&hi);
    if (hi_tok != UINT64_MAX) storage_key_u64(&hi, hi_tok + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_PTREES]);
    char tenant[STORAGE_TENANT_MAX + 1];
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        storage_seen_entry_t e;
        if (vn < PTREE_HEADER_LEN || v[0] != PTREE_VERSION || ptree_key(k, kn, &e, tenant) != 0)
            continue;
        if (e.token > hi_tok) break;
        if (storage_ptree_expired(s, e.time_ns)) continue;
        int64_t t = e.time_ns / 1000000000 - (e.time_ns % 1000000000 < 0); /* floor */
        if (t >= from_s && t < until_s) rc = fn(ctx, &e, !(v[1] & PTREE_FLAG_NO_TREE));
    }
    return scan_end(it, ro, rc, "profile trees by token interval");
}
