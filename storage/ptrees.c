/* ptrees.c — reading one stored profile back (the profile_trees column
 * family; write.c puts its values in the batch of the profile's seen entry).
 *
 * A value is the series' share of one profile as a sparse vector over the
 * token's stack-node ids, the same encoding as a block: the node table turns
 * it back into stacks. Node tables never shrink or renumber, so ids written
 * with a profile stay valid for as long as the profile is kept.
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

/* The stored value of (token, series, profile): caller frees *out. */
static int get_value(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                     const uint8_t profile_id[16], char **out, size_t *len)
{
    skey_t k;
    char *err = NULL;
    storage_key_profile(&k, token, tenant, series_id, profile_id);
    *out = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_PTREES], (const char *)k.b, k.n, len, &err);
    int rc = storage_rocks_err(err, NULL, "profile tree lookup");
    if (rc == 0 && *out == NULL) rc = ERR_NOT_FOUND;
    return rc;
}

int storage_read_profile(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         const uint8_t profile_id[16], calltree_t *dst, int64_t *time_ns)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    char *v = NULL;
    size_t n = 0;
    if ((rc = get_value(s, tenant, token, series_id, profile_id, &v, &n)) != 0) return rc;
    const uint8_t *p = (const uint8_t *)v;
    int64_t t = n >= PTREE_HEADER_LEN ? storage_i64_get(p + 1) : 0;
    sparse_vec_t vec;
    storage_sparse_init(&vec);
    if (n < PTREE_HEADER_LEN || p[0] != PTREE_VERSION)
        rc = ERR_CORRUPT;
    else if (storage_ptree_expired(s, t)) /* as compaction would drop it */
        rc = ERR_NOT_FOUND;
    else
        rc = storage_sparse_decode(p + PTREE_HEADER_LEN, n - PTREE_HEADER_LEN, &vec);
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
    if (rc == 0 && time_ns != NULL) *time_ns = t;
    return rc;
}
