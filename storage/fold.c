/* fold.c — folding the memtable operands of block windows that have ended
 * (storage.h, storage_fold_windows; docs/storage-format.md, "Merge
 * operators").
 *
 * Every write merges one operand into each window it adds to, and a
 * service aggregate's window takes one from every pod of its shard. Until a
 * flush folds them, a read of a window meets each operand as a part
 * (merge.c, storage_merge_sink), so a render of recent windows adds every
 * profile once. Folding at write (window-successive-merges) would fold a
 * window still growing many times; this folds each window once, after it
 * ended: a pass reads the memtables of `blocks` alone (RocksDB's memtable
 * read tier: no file is read), and every window found with two parts or
 * more whose end has passed is read whole (the merge operator sums it) and
 * put back as that sum. A later write to it merges one more operand over
 * the sum, which the next pass folds again: a late profile is never lost.
 *
 * Exact: the put holds the same sum the operands did. Every writer of a
 * token's windows (a write, a stream's store) holds the token's stack-node
 * table lock until its batch committed, and a range clear holds the write
 * side of symgc.lock; the fold holds the read side of that and the table
 * lock of the token across its read and its put, so no operand lands
 * between them and no cleared window comes back. Retention still drops a
 * folded window by its key (an expired one is never folded).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* RocksDB's ReadTier kMemtableTier: an iterator over the memtables alone. */
#define FOLD_MEMTABLE_TIER 3

/* Windows folded in one hold of the token's lock; the keys waiting for it
 * and one write batch are the pass's only memory. */
#define FOLD_BATCH 256
/* A write batch is committed once it holds window_fold_batch_bytes of sums
 * (the lock still held), so a batch of large windows never holds them all. */

/* token | tenant | series_id | res | window: 26 bytes besides the tenant */
#define FOLD_KEY_FIXED 26

typedef struct fold_keys {
    uint8_t *b;    /* keys, one after another */
    size_t *off;   /* start of key i; off[n] = used bytes */
    size_t n, cap; /* keys, room in off */
    size_t used, bcap;
} fold_keys_t;

/* The window of a blocks key has ended by ended_by_s (and is not past
 * retention): a key of any other shape is left alone. */
static int fold_due(storage_t *s, const uint8_t *k, size_t kn, int64_t ended_by_s)
{
    if (kn < 9 || k[8] == 0 || kn != FOLD_KEY_FIXED + (size_t)k[8]) return 0;
    int res = k[17 + k[8]];
    if (res >= STORAGE_RESOLUTION_COUNT) return 0;
    int64_t start = storage_time_decode(k + 18 + k[8]);
    if (start > ended_by_s - (int64_t)storage_resolutions[res]) return 0;
    return !storage_filter_expired(s, CF_BLOCKS, k, kn, NULL, 0);
}

size_t storage_fold_memory_bytes(const storage_options_t *o)
{
    if (o->window_fold_interval_seconds <= 0) return 0;
    /* fold_keys_t at its largest, grown by doubling (from 4096 bytes of
     * keys, 64 offsets), with the copy a growth makes */
    size_t b = 4096, off = 64;
    while (b < FOLD_BATCH * (FOLD_KEY_FIXED + STORAGE_TENANT_MAX))
        b *= 2;
    while (off < FOLD_BATCH + 2)
        off *= 2;
    size_t keys = (b + b / 2) + (off + off / 2) * sizeof(size_t);
    return keys + 4 * o->window_fold_batch_bytes;
}

static int keys_add(fold_keys_t *ks, const uint8_t *k, size_t kn)
{
    if (GROW_FROM(ks->off, ks->cap, ks->n + 2, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(ks->b, ks->bcap, ks->used + kn, GROW_UNLIMITED, 4096) != 0)
        return ERR_NOMEM;
    ks->off[ks->n] = ks->used;
    memcpy(ks->b + ks->used, k, kn);
    ks->used += kn;
    ks->off[++ks->n] = ks->used;
    return 0;
}

static int commit(storage_t *s, rocksdb_writebatch_t *wb)
{
    char *err = NULL;
    rocksdb_write(s->db, s->wopts, wb, &err);
    rocksdb_writebatch_clear(wb);
    return storage_rocks_err(err, NULL, "window fold: write");
}

/* Keys ks[0, n) of one token and tenant, read whole and put back as their
 * sums, under the token's table lock. The merge operator must fold on this
 * thread meanwhile (no probe): what is put is the sum. */
static int fold_token(storage_t *s, const fold_keys_t *ks, size_t *folded)
{
    const uint8_t *k0 = ks->b;
    char tenant[STORAGE_TENANT_MAX + 1];
    memcpy(tenant, k0 + 9, k0[8]);
    tenant[k0[8]] = '\0';
    errmsg_t em = {{0}};
    nodetab_t *t;
    pthread_rwlock_rdlock(&s->symgc.lock); /* no range clear meanwhile */
    int rc = storage_nodetab_acquire_append(s, be64_get(k0), tenant, &t, &em);
    if (rc != 0) {
        pthread_rwlock_unlock(&s->symgc.lock);
        return rc;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    size_t n = 0, bytes = 0, pending = 0; /* committed, and in the batch */
    for (size_t x = 0; x < ks->n && rc == 0; x++) {
        const char *k = (const char *)ks->b + ks->off[x];
        size_t kn = ks->off[x + 1] - ks->off[x], vn;
        char *err = NULL;
        char *v = rocksdb_get_cf(s->db, ro, s->cf[CF_BLOCKS], k, kn, &vn, &err);
        if (err != NULL) {
            rc = storage_rocks_err(err, NULL, "window fold: read");
        } else if (v != NULL) { /* gone meanwhile: nothing to fold */
            rocksdb_writebatch_put_cf(wb, s->cf[CF_BLOCKS], k, kn, v, vn);
            pending++;
            bytes += vn;
        }
        free(v);
        if (rc == 0 && bytes >= s->opts.window_fold_batch_bytes && (rc = commit(s, wb)) == 0) {
            n += pending;
            bytes = pending = 0;
        }
    }
    if (rc == 0 && pending > 0 && (rc = commit(s, wb)) == 0) n += pending;
    rocksdb_writebatch_destroy(wb);
    rocksdb_readoptions_destroy(ro);
    storage_nodetab_release(s, t, 0);
    pthread_rwlock_unlock(&s->symgc.lock);
    *folded += n;
    return rc;
}

/* Folds the keys collected so far (one token and tenant), then forgets them. */
static int fold_flush(storage_t *s, fold_keys_t *ks, size_t *folded)
{
    if (ks->n == 0) return 0;
    storage_merge_defer(0);
    int rc = fold_token(s, ks, folded);
    storage_merge_defer(STORAGE_MERGE_PROBE);
    ks->n = ks->used = 0;
    return rc;
}

static void keep_first(int *rc, int rc2)
{
    if (*rc == 0) *rc = rc2;
}

/* Whether key k is of another token or tenant than the keys collected. */
static int other_prefix(const fold_keys_t *ks, const uint8_t *k, size_t kn)
{
    if (ks->n == 0) return 0;
    const uint8_t *a = ks->b;
    return a[8] != k[8] || memcmp(a, k, 9 + (size_t)a[8]) != 0;
}

/* One pass over the memtables: the windows that hold two parts or more
 * (merge.c's probe says which, without copying their bytes) and have
 * ended are folded per token and tenant, FOLD_BATCH at a time, while the
 * scan goes on (it reads the memtables as they were when it began). */
int storage_fold_windows(storage_t *s, int64_t ended_by_s, size_t *folded)
{
    *folded = 0;
    fold_keys_t ks = {0};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_read_tier(ro, FOLD_MEMTABLE_TIER);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    storage_merge_defer(STORAGE_MERGE_PROBE);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_BLOCKS]);
    int rc = 0; /* the first error; a token that fails leaves the others to fold */
    for (rocksdb_iter_seek_to_first(it); rc != ERR_NOMEM && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (vn == 0 || v[0] != SPARSE_PARTS || !fold_due(s, k, kn, ended_by_s)) continue;
        if (other_prefix(&ks, k, kn) || ks.n == FOLD_BATCH)
            keep_first(&rc, fold_flush(s, &ks, folded));
        if (rc != ERR_NOMEM) keep_first(&rc, keys_add(&ks, k, kn));
    }
    keep_first(&rc, fold_flush(s, &ks, folded));
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    storage_merge_defer(0);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0 && err != NULL)
        rc = storage_rocks_err(err, NULL, "window fold: memtable scan");
    else
        free(err);
    free(ks.b);
    free(ks.off);
    atomic_fetch_add(&s->counters.folded_windows, *folded);
    return rc;
}

/* ---- the background thread ---- */

static void *fold_main(void *arg)
{
    storage_t *s = arg;
    pthread_mutex_lock(&s->fold.mu);
    while (!s->fold.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)s->opts.window_fold_interval_seconds;
        int w = 0;
        while (!s->fold.stop && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&s->fold.cv, &s->fold.mu, &until);
        if (s->fold.stop) break;
        pthread_mutex_unlock(&s->fold.mu);
        size_t n = 0;
        int rc = storage_fold_windows(s, storage_now(s), &n);
        if (rc != 0) log_warn("storage", "window fold: %s", err_message(rc));
        pthread_mutex_lock(&s->fold.mu);
    }
    pthread_mutex_unlock(&s->fold.mu);
    return NULL;
}

int storage_fold_start(storage_t *s)
{
    pthread_mutex_init(&s->fold.mu, NULL);
    pthread_cond_init(&s->fold.cv, NULL);
    s->fold.stop = 0;
    s->fold.running = 0;
    if (s->opts.window_fold_interval_seconds <= 0) return 0;
    if (pthread_create(&s->fold.thread, NULL, fold_main, s) != 0) return ERR_INTERNAL;
    s->fold.running = 1;
    return 0;
}

void storage_fold_stop(storage_t *s)
{
    if (!s->fold.running) return;
    pthread_mutex_lock(&s->fold.mu);
    s->fold.stop = 1;
    pthread_cond_signal(&s->fold.cv);
    pthread_mutex_unlock(&s->fold.mu);
    pthread_join(s->fold.thread, NULL);
    s->fold.running = 0;
}
