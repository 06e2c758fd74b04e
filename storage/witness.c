/* witness.c — witnesses kept durably (storage.h, docs/storage-format.md):
 * a replica that a write stored here named as missing it, held unread until
 * its coordinator's word on it arrives. `meta` key "repair_held/" + target
 * id + NUL + coordinator id -> u64 LE incarnation, u64 LE heartbeat, i64 LE
 * oldest profile time (unix s). Few keys: one per (target, coordinator)
 * pair while a replica is down or slow, deleted when the hold ends.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/storage_int.h"

#define HELD_PREFIX "repair_held/"
#define HELD_PREFIX_LEN 12
#define HELD_KEY_MAX (HELD_PREFIX_LEN + 2 * STORAGE_HINT_TARGET_MAX + 1)
#define HELD_VALUE_LEN 24

static int held_key(char *k, const char *target, const char *coord, size_t *n, errmsg_t *em)
{
    size_t lt = target ? strlen(target) : 0, lc = coord ? strlen(coord) : 0;
    if (lt == 0 || lt > STORAGE_HINT_TARGET_MAX || lc == 0 || lc > STORAGE_HINT_TARGET_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "witness: node ids of %zu and %zu bytes", lt,
                          lc);
    memcpy(k, HELD_PREFIX, HELD_PREFIX_LEN);
    memcpy(k + HELD_PREFIX_LEN, target, lt);
    k[HELD_PREFIX_LEN + lt] = 0;
    memcpy(k + HELD_PREFIX_LEN + lt + 1, coord, lc);
    *n = HELD_PREFIX_LEN + lt + 1 + lc;
    return 0;
}

int storage_witness_put(storage_t *s, const storage_witness_t *w, errmsg_t *em)
{
    char k[HELD_KEY_MAX];
    size_t kn = 0;
    int rc = held_key(k, w->target, w->coord, &kn, em);
    if (rc != 0) return rc;
    uint8_t v[HELD_VALUE_LEN];
    storage_i64_put(v, (int64_t)w->incarnation);
    storage_i64_put(v + 8, (int64_t)w->heartbeat);
    storage_i64_put(v + 16, w->oldest_s);
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_META], k, kn, (const char *)v, sizeof v, &err);
    return storage_rocks_err(err, em, "witness");
}

/* Key k (kn bytes) and value v into out; 0, or ERR_CORRUPT. */
static int held_parse(const char *k, size_t kn, const char *v, size_t vn, storage_witness_t *out)
{
    if (kn <= HELD_PREFIX_LEN || vn != HELD_VALUE_LEN) return ERR_CORRUPT;
    const char *t = k + HELD_PREFIX_LEN, *end = k + kn;
    const char *sep = memchr(t, 0, (size_t)(end - t));
    if (sep == NULL || sep == t || sep + 1 == end) return ERR_CORRUPT;
    size_t lt = (size_t)(sep - t), lc = (size_t)(end - sep - 1);
    if (lt > STORAGE_HINT_TARGET_MAX || lc > STORAGE_HINT_TARGET_MAX) return ERR_CORRUPT;
    memcpy(out->target, t, lt);
    out->target[lt] = 0;
    memcpy(out->coord, sep + 1, lc);
    out->coord[lc] = 0;
    out->incarnation = (uint64_t)storage_i64_get((const uint8_t *)v);
    out->heartbeat = (uint64_t)storage_i64_get((const uint8_t *)v + 8);
    out->oldest_s = storage_i64_get((const uint8_t *)v + 16);
    return 0;
}

int storage_witness_get(storage_t *s, const char *target, const char *coord, storage_witness_t *out,
                        errmsg_t *em)
{
    char k[HELD_KEY_MAX];
    size_t kn = 0, vn = 0;
    int rc = held_key(k, target, coord, &kn, em);
    if (rc != 0) return rc;
    char *err = NULL;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_META], k, kn, &vn, &err);
    rc = storage_rocks_err(err, em, "witness");
    if (rc == 0 && v == NULL) rc = ERR_NOT_FOUND;
    if (rc == 0 && held_parse(k, kn, v, vn, out) != 0) rc = ERR_NOT_FOUND; /* overwritten next */
    rocksdb_free(v);
    return rc;
}

int storage_witness_delete(storage_t *s, const char *target, const char *coord, errmsg_t *em)
{
    char k[HELD_KEY_MAX];
    size_t kn = 0;
    int rc = held_key(k, target, coord, &kn, em);
    if (rc != 0) return rc;
    char *err = NULL;
    rocksdb_delete_cf(s->db, s->wopts, s->cf[CF_META], k, kn, &err);
    return storage_rocks_err(err, em, "witness");
}

int storage_witnesses(storage_t *s, storage_witness_fn fn, void *ctx)
{
    char hi[HELD_PREFIX_LEN];
    memcpy(hi, HELD_PREFIX, HELD_PREFIX_LEN);
    hi[HELD_PREFIX_LEN - 1]++; /* '/' + 1: just past every key of the prefix */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, sizeof hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_META]);
    int rc = 0;
    for (rocksdb_iter_seek(it, HELD_PREFIX, HELD_PREFIX_LEN); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        storage_witness_t w;
        if (held_parse(k, kn, v, vn, &w) == 0) rc = fn(ctx, &w); /* else skipped */
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "witnesses scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}
