/* marks.c — repair marks: the nodes that missed writes no hint will
 * deliver (hinted handoff off or full), kept in the `meta` column family
 * (docs/storage-format.md): "repair_mark/" + node id -> u64 little-endian
 * unix ms of the latest such write, "repair_done/" + node id -> the
 * start (unix ms) of the node's latest complete anti-entropy pass, and
 * "repair_past/" + node id -> the oldest profile time (unix s, i64) of the
 * writes the node's current mark holds (its pass must have compared back
 * to it, or the node restored every range whole, to lift it). A node
 * must not serve reads while its mark is not older than its pass
 * (docs/cluster.md, "Read correctness"). The first two only ever grow: a
 * put of an older time than the one stored leaves it (read and written
 * under s->marks_mu), so two pool jobs that store a node's times out of
 * order (a pass's lift queued before a later one's) never turn a stored
 * mark back; the cluster compares the two with a slack that covers stamps
 * taken on different threads. The oldest profile time is a plain
 * overwrite. Never deleted. Few keys: one to three per node that ever
 * missed a write.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/storage_int.h"

/* Every prefix has this length, so a key's kind is its prefix. */
#define MARK_PREFIX_LEN 12
#define MARK_KEY_MAX (MARK_PREFIX_LEN + STORAGE_HINT_TARGET_MAX)

static const char *const prefixes[3] = {"repair_mark/", "repair_done/", "repair_past/"};

static int mark_key(char *k, int kind, const char *node, size_t *n, errmsg_t *em)
{
    size_t l = node ? strlen(node) : 0;
    if (l == 0 || l > STORAGE_HINT_TARGET_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair mark: node id of %zu bytes", l);
    if (kind != STORAGE_MARK_LOST && kind != STORAGE_MARK_REPAIRED && kind != STORAGE_MARK_OLDEST)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair mark: kind %d", kind);
    memcpy(k, prefixes[kind], MARK_PREFIX_LEN);
    memcpy(k + MARK_PREFIX_LEN, node, l);
    *n = MARK_PREFIX_LEN + l;
    return 0;
}

/* The time stored at k, or 0 when there is none. */
static int stored_ms(storage_t *s, const char *k, size_t kn, uint64_t *ms, errmsg_t *em)
{
    char *err = NULL;
    size_t vn = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_META], k, kn, &vn, &err);
    int rc = storage_rocks_err(err, em, "repair mark");
    *ms = rc == 0 && v != NULL && vn == 8 ? (uint64_t)storage_i64_get((const uint8_t *)v) : 0;
    free(v);
    return rc;
}

static int put_ms(storage_t *s, const char *k, size_t kn, uint64_t ms, errmsg_t *em)
{
    uint8_t v[8];
    storage_i64_put(v, (int64_t)ms);
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_META], k, kn, (const char *)v, sizeof v, &err);
    return storage_rocks_err(err, em, "repair mark");
}

int storage_repair_mark_put(storage_t *s, int kind, const char *node, uint64_t ms, errmsg_t *em)
{
    char k[MARK_KEY_MAX];
    size_t kn = 0;
    int rc = mark_key(k, kind, node, &kn, em);
    if (rc != 0) return rc;
    if (kind == STORAGE_MARK_OLDEST) return put_ms(s, k, kn, ms, em); /* an overwrite */
    /* the latest miss, the latest pass: never turned back */
    pthread_mutex_lock(&s->marks_mu);
    uint64_t now = 0;
    rc = stored_ms(s, k, kn, &now, em);
    if (rc == 0 && now <= ms) rc = put_ms(s, k, kn, ms, em);
    pthread_mutex_unlock(&s->marks_mu);
    return rc;
}

/* One prefix's keys. */
static int scan_kind(storage_t *s, int kind, storage_mark_fn fn, void *ctx)
{
    char hi[MARK_PREFIX_LEN];
    memcpy(hi, prefixes[kind], MARK_PREFIX_LEN);
    hi[MARK_PREFIX_LEN - 1]++; /* '/' + 1: just past every key of the prefix */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, sizeof hi);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_META]);
    int rc = 0;
    for (rocksdb_iter_seek(it, prefixes[kind], MARK_PREFIX_LEN); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        char node[STORAGE_HINT_TARGET_MAX + 1];
        size_t l = kn - MARK_PREFIX_LEN;
        if (kn <= MARK_PREFIX_LEN || l > STORAGE_HINT_TARGET_MAX || vn != 8) continue;
        memcpy(node, k + MARK_PREFIX_LEN, l);
        node[l] = 0;
        rc = fn(ctx, kind, node, (uint64_t)storage_i64_get((const uint8_t *)v));
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "repair marks scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}

int storage_repair_marks(storage_t *s, storage_mark_fn fn, void *ctx)
{
    int rc = scan_kind(s, STORAGE_MARK_LOST, fn, ctx);
    if (rc == 0) rc = scan_kind(s, STORAGE_MARK_REPAIRED, fn, ctx);
    return rc == 0 ? scan_kind(s, STORAGE_MARK_OLDEST, fn, ctx) : rc;
}
