/* gc.c — collecting series (and their postings) that retention emptied.
 *
 * Retention drops blocks and totals window by window (filter.c) but a series
 * key and its postings stay, so label queries would list series with no data
 * forever. storage_gc_series() deletes every series none of whose blocks is
 * still alive (present and not past its resolution's retention), with the
 * postings its labels name, and takes it off its aggregate's anchors
 * (aggregate.c). It holds the series' stack-node table lock while
 * it checks and deletes: writers hold it from their series-cache check to
 * their commit, so a write of the series either lands before (its blocks are
 * alive, nothing is deleted) or after (the cache was cleared, the writer puts
 * the series again). A background thread runs it every
 * series_gc_interval_seconds (0 = never).
 *
 * storage_gc_nodetabs() then deletes the stack-node table of every (token,
 * tenant) that no live block and no live profile tree uses any more: the
 * last data indexed by its ids has aged out (a service that stopped, or moved
 * away). It holds that table's lock too, checks again, deletes the chunks and
 * empties the cached table in place, so a writer that waited on the lock
 * starts a fresh table (ids from 1) and readers never mix the two: a reader
 * maps only blocks that are alive (read.c skips expired windows), and none
 * is left.
 *
 * Not collected here: profile ids (their own retention), span trees (their
 * own), symbols (gc_symbols.c, run after the tables).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/labels.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* Whether any key of cf under prefix is alive (present and not past its
 * retention); a read error counts as alive (unsure: keep). */
static int prefix_live(storage_t *s, enum storage_cf cf, const uint8_t *prefix, size_t n)
{
    skey_t hi;
    memcpy(hi.b, prefix, n);
    hi.n = storage_prefix_successor(hi.b, n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
    int live = 0;
    for (rocksdb_iter_seek(it, (const char *)prefix, n); !live && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn); /* a tree's flags */
        live = !storage_filter_expired(s, cf, k, kn, v, vn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err != NULL) { /* unsure: keep the series */
        live = 1;
        free(err);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return live;
}

/* A window alive: a block, or a total (a 10 s window of trees kept in no
 * block has no block key, PTREE_FLAG_UNBLOCKED). */
static int has_live_block(storage_t *s, const uint8_t *prefix, size_t n)
{
    return prefix_live(s, CF_BLOCKS, prefix, n) || prefix_live(s, CF_TOTALS, prefix, n);
}

/* Deletes the series key and the postings of its labels, and the series
 * from its aggregate's anchors (aggregate.c). */
static int delete_series(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         const uint8_t *key, size_t kn, const uint8_t *val, size_t vn)
{
    labels_t *l = NULL;
    if (labels_decode(val, vn, &l) != 0) return ERR_CORRUPT;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, s->cf[CF_SERIES], (const char *)key, kn);
    buf_t pk;
    buf_init(&pk, BUF_UNLIMITED);
    int rc = storage_aggregate_forget(s, wb, tenant, token, series_id, l, NULL);
    for (size_t i = 0; rc == 0 && i < labels_count(l); i++) {
        rc = storage_key_posting(&pk, tenant, labels_name(l, i), labels_value(l, i), token,
                                 series_id);
        if (rc == 0)
            rocksdb_writebatch_delete_cf(wb, s->cf[CF_POSTINGS], (const char *)pk.data, pk.len);
    }
    char *err = NULL;
    if (rc == 0) rocksdb_write(s->db, s->wopts, wb, &err);
    if (err != NULL) {
        rc = ERR_IO;
        free(err);
    }
    /* a writer that cached "series written" would skip putting it again */
    if (rc == 0) storage_idcache_clear(&s->series_cache);
    buf_free(&pk);
    rocksdb_writebatch_destroy(wb);
    labels_free(l);
    return rc;
}

/* One series key: token(8) | tenant (length byte + bytes) | series_id(8). */
static int gc_one(storage_t *s, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                  size_t *removed)
{
    if (kn < 18 || kn != 17 + (size_t)k[8] || has_live_block(s, k, kn)) return 0;
    char tenant[STORAGE_TENANT_MAX + 1];
    size_t tl = k[8];
    if (tl > STORAGE_TENANT_MAX) return 0;
    memcpy(tenant, k + 9, tl);
    tenant[tl] = 0;
    uint64_t token = be64_get(k), series_id = be64_get(k + 9 + tl);
    nodetab_t *t;
    errmsg_t em = {{0}};
    int rc = storage_nodetab_acquire_append(s, token, tenant, &t, &em); /* for its lock */
    if (rc != 0) return rc;
    if (!has_live_block(s, k, kn)) { /* again, now that writers wait */
        rc = delete_series(s, tenant, token, series_id, k, kn, v, vn);
        if (rc == 0) (*removed)++;
        if (rc == 0) storage_tseries_release(s, tenant, 1); /* tenant-max-series */
    }
    storage_nodetab_release(s, t, 0);
    return rc;
}

int storage_gc_series(storage_t *s, size_t *removed)
{
    *removed = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SERIES]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        rc = gc_one(s, k, kn, v, vn, removed);
        if (rc == ERR_CORRUPT) rc = 0; /* an undecodable series is left alone */
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    atomic_fetch_add(&s->counters.gc_series, *removed);
    return rc;
}

/* ---- stack-node tables ---- */

/* Whether any data indexed by the ids of the table under prefix (token |
 * tenant) is alive: blocks (series and their aggregates) and profile trees.
 * Totals and span trees hold no node ids. */
static int table_used(storage_t *s, const uint8_t *prefix, size_t n)
{
    return prefix_live(s, CF_BLOCKS, prefix, n) || prefix_live(s, CF_PTREES, prefix, n);
}

/* Deletes every chunk and edge index entry of the table under prefix (all
 * its keys) in one batch. */
static int delete_chunks(storage_t *s, const uint8_t *prefix, size_t n)
{
    skey_t hi;
    memcpy(hi.b, prefix, n);
    hi.n = storage_prefix_successor(hi.b, n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (rocksdb_iter_seek(it, (const char *)prefix, n); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        const char *k = rocksdb_iter_key(it, &kn);
        rocksdb_writebatch_delete_cf(wb, s->cf[CF_NODES], k, kn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err == NULL) rocksdb_write(s->db, s->wopts, wb, &err);
    int rc = storage_rocks_err(err, NULL, "delete node table");
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* The table under prefix (token | tenant, n bytes): deleted when unused. */
static int gc_table(storage_t *s, const uint8_t *prefix, size_t n, size_t *removed)
{
    if (table_used(s, prefix, n)) return 0;
    char tenant[STORAGE_TENANT_MAX + 1];
    size_t tl = prefix[8];
    memcpy(tenant, prefix + 9, tl);
    tenant[tl] = 0;
    nodetab_t *t;
    int rc = storage_nodetab_acquire_append(s, be64_get(prefix), tenant, &t, NULL); /* lock */
    if (rc != 0) return rc;
    int gone = 0;
    if (!table_used(s, prefix, n)) { /* again, now that writers wait */
        rc = delete_chunks(s, prefix, n);
        gone = rc == 0;
    }
    /* deleted: empty the cached table in place, the next holder loads the
     * (now empty) table from disk and starts again at id 1 */
    storage_nodetab_release(s, t, gone);
    if (gone) (*removed)++;
    return rc;
}

int storage_gc_nodetabs(storage_t *s, size_t *removed)
{
    *removed = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    int rc = 0;
    rocksdb_iter_seek_to_first(it);
    while (rc == 0 && rocksdb_iter_valid(it)) {
        size_t kn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        skey_t prefix;
        if (kn < 14 || kn != 13 + (size_t)k[8] || k[8] > STORAGE_TENANT_MAX) {
            rocksdb_iter_next(it); /* not a chunk key: left alone */
            continue;
        }
        prefix.n = kn - 4; /* token | tenant */
        memcpy(prefix.b, k, prefix.n);
        rc = gc_table(s, prefix.b, prefix.n, removed);
        size_t sn = storage_prefix_successor(prefix.b, prefix.n);
        if (sn == 0) break; /* the last possible prefix */
        rocksdb_iter_seek(it, (const char *)prefix.b, sn);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    atomic_fetch_add(&s->counters.gc_nodetabs, *removed);
    return rc;
}

/* ---- the background thread ---- */

static void *gc_main(void *arg)
{
    storage_t *s = arg;
    pthread_mutex_lock(&s->gc.mu);
    while (!s->gc.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)s->opts.series_gc_interval_seconds;
        int w = 0;
        while (!s->gc.stop && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&s->gc.cv, &s->gc.mu, &until);
        if (s->gc.stop) break;
        pthread_mutex_unlock(&s->gc.mu);
        size_t n = 0;
        int rc = storage_gc_series(s, &n);
        if (rc != 0) log_warn("storage", "series gc: %s", err_message(rc));
        if (n > 0) log_info("storage", "series gc: removed %zu empty series", n);
        rc = storage_gc_nodetabs(s, &n);
        if (rc != 0) log_warn("storage", "node table gc: %s", err_message(rc));
        if (n > 0) log_info("storage", "node table gc: removed %zu unused stack-node tables", n);
        rc = storage_gc_symbols(s, &n);
        if (rc != 0) log_warn("storage", "symbol gc: %s", err_message(rc));
        if (n > 0) log_info("storage", "symbol gc: removed %zu unreferenced symbols", n);
        pthread_mutex_lock(&s->gc.mu);
    }
    pthread_mutex_unlock(&s->gc.mu);
    return NULL;
}

int storage_gc_start(storage_t *s)
{
    pthread_mutex_init(&s->gc.mu, NULL);
    pthread_cond_init(&s->gc.cv, NULL);
    s->gc.stop = 0;
    s->gc.running = 0;
    if (s->opts.series_gc_interval_seconds <= 0) return 0;
    if (pthread_create(&s->gc.thread, NULL, gc_main, s) != 0) return ERR_INTERNAL;
    s->gc.running = 1;
    return 0;
}

void storage_gc_stop(storage_t *s)
{
    if (!s->gc.running) return;
    pthread_mutex_lock(&s->gc.mu);
    s->gc.stop = 1;
    pthread_cond_signal(&s->gc.cv);
    pthread_mutex_unlock(&s->gc.mu);
    pthread_join(s->gc.thread, NULL);
    s->gc.running = 0;
}
