/* gc.c — collecting series (and their postings) that retention emptied.
 *
 * Retention drops blocks and totals window by window (filter.c) but a series
 * key and its postings stay, so label queries would list series with no data
 * forever. storage_gc_series() deletes every series none of whose blocks is
 * still alive (present and not past its resolution's retention), with the
 * postings its labels name. It holds the series' stack-node table lock while
 * it checks and deletes: writers hold it from their series-cache check to
 * their commit, so a write of the series either lands before (its blocks are
 * alive, nothing is deleted) or after (the cache was cleared, the writer puts
 * the series again). A background thread runs it every
 * series_gc_interval_seconds (0 = never).
 *
 * Not collected: symbols and stack-node tables (the tables reference symbols
 * and only grow), profile ids (their own retention), span trees (their own).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/labels.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* Whether any block of the series is alive. */
static int has_live_block(storage_t *s, const uint8_t *prefix, size_t n)
{
    skey_t hi;
    memcpy(hi.b, prefix, n);
    hi.n = storage_prefix_successor(hi.b, n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_BLOCKS]);
    int live = 0;
    for (rocksdb_iter_seek(it, (const char *)prefix, n); !live && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        live = !storage_filter_expired(s, CF_BLOCKS, k, kn, NULL, 0);
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

/* Deletes the series key and the postings of its labels. */
static int delete_series(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         const uint8_t *key, size_t kn, const uint8_t *val, size_t vn)
{
    labels_t *l = NULL;
    if (labels_decode(val, vn, &l) != 0) return ERR_CORRUPT;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, s->cf[CF_SERIES], (const char *)key, kn);
    buf_t pk;
    buf_init(&pk, BUF_UNLIMITED);
    int rc = 0;
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
    int rc = storage_nodetab_acquire(s, token, tenant, &t, &em);
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
