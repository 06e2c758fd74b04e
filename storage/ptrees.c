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

/* The stored value of the profile: caller frees *out. */
static int get_value(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                     int64_t time_ns, const uint8_t profile_id[16], char **out, size_t *len)
{
    skey_t k;
    char *err = NULL;
    storage_key_ptree(&k, token, tenant, series_id, time_ns, profile_id);
    *out = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_PTREES], (const char *)k.b, k.n, len, &err);
    int rc = storage_rocks_err(err, NULL, "profile tree lookup");
    if (rc == 0 && *out == NULL) rc = ERR_NOT_FOUND;
    return rc;
}

/* The sparse vector of a value into vec; ERR_NOT_FOUND when not kept. */
static int decode_value(const uint8_t *p, size_t n, sparse_vec_t *vec)
{
    if (n < PTREE_HEADER_LEN || p[0] != PTREE_VERSION) return ERR_CORRUPT;
    if (p[1] & PTREE_FLAG_NO_TREE) return ERR_NOT_FOUND;
    return storage_sparse_decode(p + PTREE_HEADER_LEN, n - PTREE_HEADER_LEN, vec);
}

int storage_read_profile(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         int64_t time_ns, const uint8_t profile_id[16], calltree_t *dst)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    if (storage_ptree_expired(s, time_ns)) return ERR_NOT_FOUND; /* as compaction would drop it */
    char *v = NULL;
    size_t n = 0;
    rc = get_value(s, tenant, token, series_id, time_ns, profile_id, &v, &n);
    if (rc != 0) return rc;
    sparse_vec_t vec;
    storage_sparse_init(&vec);
    rc = decode_value((const uint8_t *)v, n, &vec);
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
        rc = fn(ctx, t, k + kn - 16, storage_i64_get(v + 2), !(v[1] & PTREE_FLAG_NO_TREE));
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "profile scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}
