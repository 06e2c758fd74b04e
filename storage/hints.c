/* hints.c — the `hints` column family: durable hinted-handoff records, keyed
 * target_node_id | seq, with per-target counts and bytes kept in memory
 * (storage.h, docs/storage-format.md).
 *
 * The in-memory table is rebuilt by one scan at open and then changed only
 * under the hints mutex together with the RocksDB write it accounts for, so
 * the bounds (bytes per target, bytes over all targets) are exact even
 * with concurrent writers. Hints
 * are few and small compared with blocks, so a mutex costs nothing here.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

struct hint_target {
    char id[STORAGE_HINT_TARGET_MAX + 1];
    uint64_t count, bytes;
};

struct storage_hints {
    pthread_mutex_t mu;
    struct hint_target *v; /* sorted by id; entries with count 0 are removed */
    size_t n, cap;
    uint64_t last_seq;
    uint64_t total; /* bytes over all targets */
};

static int check_target(const char *target, errmsg_t *em)
{
    size_t n = target != NULL ? strlen(target) : 0;
    if (n == 0 || n > STORAGE_HINT_TARGET_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "hint target must be 1..%d bytes, got %zu",
                          STORAGE_HINT_TARGET_MAX, n);
    return 0;
}

static void hint_key(skey_t *k, const char *target, uint64_t seq)
{
    skey_reset(k);
    storage_key_tenant(k, target); /* the same length-prefixed layout as tenants */
    storage_key_u64(k, seq);
}

/* Index of target in the table, or where it would go (*found = 0). */
static size_t find_target(const struct storage_hints *h, const char *id, size_t idlen, int *found)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        size_t mlen = strlen(h->v[mid].id);
        int c = memcmp(h->v[mid].id, id, mlen < idlen ? mlen : idlen);
        if (c == 0) c = (mlen > idlen) - (mlen < idlen);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* Adds (count, bytes) to target, creating its entry. Caller holds mu. */
static int account(struct storage_hints *h, const char *id, size_t idlen, int64_t count,
                   int64_t bytes)
{
    int found;
    size_t i = find_target(h, id, idlen, &found);
    if (!found) {
        if (count <= 0) return 0;
        if (h->n >= STORAGE_HINT_TARGETS_MAX) return ERR_LIMIT;
        if (GROW_FROM(h->v, h->cap, h->n + 1, GROW_UNLIMITED, 8) != 0) return ERR_NOMEM;
        memmove(&h->v[i + 1], &h->v[i], (h->n - i) * sizeof *h->v);
        h->n++;
        memset(&h->v[i], 0, sizeof h->v[i]);
        memcpy(h->v[i].id, id, idlen);
    }
    struct hint_target *t = &h->v[i];
    t->count = (uint64_t)((int64_t)t->count + count);
    t->bytes = (uint64_t)((int64_t)t->bytes + bytes);
    h->total = (uint64_t)((int64_t)h->total + bytes);
    if (t->count == 0) {
        memmove(&h->v[i], &h->v[i + 1], (h->n - i - 1) * sizeof *h->v);
        h->n--;
    }
    return 0;
}

/* Rebuilds the table from the column family; seqs continue above the
 * largest one found. */
static int rebuild(storage_t *s, struct storage_hints *h)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_HINTS]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        rocksdb_iter_value(it, &vn);
        if (kn < 1 + 8 || kn != 1 + (size_t)k[0] + 8 || k[0] == 0 ||
            k[0] > STORAGE_HINT_TARGET_MAX) {
            log_warn("storage", "hints: skipping a malformed key of %zu bytes", kn);
            continue;
        }
        uint64_t seq = be64_get(k + kn - 8);
        if (seq > h->last_seq) h->last_seq = seq;
        rc = account(h, (const char *)k + 1, k[0], 1, (int64_t)vn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    int ioerr = storage_rocks_err(err, NULL, "hints: scan at open");
    return ioerr != 0 ? ioerr : rc;
}

int storage_hints_open(storage_t *s, errmsg_t *em)
{
    struct storage_hints *h = calloc(1, sizeof *h);
    if (h == NULL) return errmsg_set(em, ERR_NOMEM, "hints: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    s->hints = h;
    int rc = rebuild(s, h);
    if (rc != 0) return errmsg_set(em, rc, "hints: cannot read the stored hints");
    if (h->n > 0) log_info("storage", "hints: %zu target(s) have stored hints", h->n);
    return 0;
}

void storage_hints_free(storage_t *s)
{
    struct storage_hints *h = s->hints;
    if (h == NULL) return;
    pthread_mutex_destroy(&h->mu);
    free(h->v);
    free(h);
    s->hints = NULL;
}

int storage_hint_put(storage_t *s, const char *target, const uint8_t *rec, size_t len,
                     uint64_t max_target_bytes, uint64_t max_total_bytes, uint64_t *seq,
                     errmsg_t *em)
{
    int rc = check_target(target, em);
    if (rc != 0) return rc;
    struct storage_hints *h = s->hints;
    size_t idlen = strlen(target);
    pthread_mutex_lock(&h->mu);
    int found;
    size_t i = find_target(h, target, idlen, &found);
    uint64_t have = found ? h->v[i].bytes : 0;
    if (max_target_bytes != 0 && (len > max_target_bytes || have > max_target_bytes - len)) {
        pthread_mutex_unlock(&h->mu);
        return errmsg_set(em, ERR_LIMIT,
                          "hints for %s: %llu bytes stored, a %zu-byte hint would exceed the "
                          "bound of %llu (hints-max-bytes)",
                          target, (unsigned long long)have, len,
                          (unsigned long long)max_target_bytes);
    }
    if (max_total_bytes != 0 && (len > max_total_bytes || h->total > max_total_bytes - len)) {
        uint64_t total = h->total;
        pthread_mutex_unlock(&h->mu);
        return errmsg_set(em, ERR_LIMIT,
                          "hints for %s: %llu bytes stored for all targets, a %zu-byte hint would "
                          "exceed the bound of %llu (hints-max-total-bytes)",
                          target, (unsigned long long)total, len,
                          (unsigned long long)max_total_bytes);
    }
    uint64_t t = (uint64_t)(clock_wall_ns(&s->clock) / 1000);
    uint64_t q = t > h->last_seq ? t : h->last_seq + 1;
    skey_t k;
    hint_key(&k, target, q);
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_HINTS], (const char *)k.b, k.n, (const char *)rec, len,
                   &err);
    rc = storage_rocks_err(err, em, "hints: put");
    if (rc == 0) {
        h->last_seq = q;
        rc = account(h, target, idlen, 1, (int64_t)len);
        if (rc != 0) errmsg_set(em, rc, "hints: more than %d targets", STORAGE_HINT_TARGETS_MAX);
    }
    pthread_mutex_unlock(&h->mu);
    if (rc == 0 && seq != NULL) *seq = q;
    return rc;
}

int storage_hint_scan(storage_t *s, const char *target, uint64_t after_seq, size_t limit,
                      storage_hint_fn fn, void *ctx)
{
    int rc = check_target(target, NULL);
    if (rc != 0 || limit == 0 || after_seq == UINT64_MAX) return rc;
    skey_t lo, hi;
    hint_key(&lo, target, after_seq + 1);
    hint_key(&hi, target, 0);
    hi.n = storage_prefix_successor(hi.b, hi.n - 8); /* past every seq of target */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_HINTS]);
    size_t seen = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n);
         rc == 0 && seen < limit && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n) continue; /* another target's key cannot sort here; be safe */
        rc = fn(ctx, be64_get(key + kn - 8), val, vn);
        seen++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    int ioerr = storage_rocks_err(err, NULL, "hints: scan");
    return ioerr != 0 ? ioerr : rc;
}

int storage_hint_delete(storage_t *s, const char *target, uint64_t seq, errmsg_t *em)
{
    int rc = check_target(target, em);
    if (rc != 0) return rc;
    struct storage_hints *h = s->hints;
    skey_t k;
    hint_key(&k, target, seq);
    pthread_mutex_lock(&h->mu);
    char *err = NULL;
    size_t vn = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_HINTS], (const char *)k.b, k.n, &vn, &err);
    rc = storage_rocks_err(err, em, "hints: read before delete");
    if (rc == 0 && v != NULL) {
        rocksdb_delete_cf(s->db, s->wopts, s->cf[CF_HINTS], (const char *)k.b, k.n, &err);
        rc = storage_rocks_err(err, em, "hints: delete");
        if (rc == 0) rc = account(h, target, strlen(target), -1, -(int64_t)vn);
    }
    pthread_mutex_unlock(&h->mu);
    free(v);
    return rc;
}

int storage_hint_targets(storage_t *s, storage_hint_target_fn fn, void *ctx)
{
    struct storage_hints *h = s->hints;
    pthread_mutex_lock(&h->mu);
    size_t n = h->n;
    struct hint_target *copy = n > 0 ? malloc(n * sizeof *copy) : NULL;
    if (copy != NULL) memcpy(copy, h->v, n * sizeof *copy);
    pthread_mutex_unlock(&h->mu);
    if (n > 0 && copy == NULL) return ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(ctx, copy[i].id, copy[i].count, copy[i].bytes);
    free(copy);
    return rc;
}
