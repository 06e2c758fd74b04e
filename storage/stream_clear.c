/* stream_clear.c — dropping what a store holds of token ranges before it
 * receives them whole (storage.h, storage_range_clear; docs/cluster.md,
 * "Regaining a range").
 *
 * A node that gains a range may hold an old copy of it: it replicated the
 * range before a move took it away, and old owners keep their data. A
 * stream adds the source's residuals to what is there, so whatever of the
 * old copy is not a profile the source also keeps would count twice. The
 * receiver therefore clears the range before the stream walks it; the
 * stream (residuals plus the kept profiles it lacks) and the seen
 * comparison then bring back everything the replicas hold, live writes
 * that arrived before the clear included.
 *
 * Every column family whose keys start with the token is cleared with a
 * range delete; postings (tenant-first) are deleted per series of the
 * range, span trees (tenant-first) per key that span_index lists in it.
 * Node tables stay: their ids remain valid for the data that comes back.
 * Everything goes into one WriteBatch, committed under the write side of
 * the lock every write holds from its first cache decision to its commit
 * (symgc.lock), and the series cache is emptied before it is released: a
 * concurrent write lands wholly before the clear (and is cleared) or
 * wholly after it, and one after it finds no cached series of the range,
 * so it puts their labels and postings again. A series written at the
 * instant of the clear never has data without its labels.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* Column families keyed token | ... cleared by range. */
static const enum storage_cf token_cfs[] = {CF_SERIES, CF_BLOCKS,   CF_TOTALS,   CF_PROFILES,
                                            CF_PTREES, CF_STREAMED, CF_WPROFILES};

/* [lo, hi] as the key range [start, end): hi + 1 as 8 bytes, or past every
 * key of token UINT64_MAX (its next byte, a tenant length, is at most
 * STORAGE_TENANT_MAX). */
static size_t range_keys(uint64_t lo, uint64_t hi, uint8_t start[8], uint8_t end[9])
{
    be64_put(start, lo);
    if (hi != UINT64_MAX) {
        be64_put(end, hi + 1);
        return 8;
    }
    memset(end, 0xff, 9);
    return 9;
}

/* Series cleared per tenant, given back to tenant-max-series after the
 * commit. */
typedef struct tcount {
    char tenant[STORAGE_TENANT_MAX + 1];
    size_t n;
} tcount_t;

typedef struct tcounts {
    tcount_t *v;
    size_t n, cap;
} tcounts_t;

static int tenants_add(tcounts_t *tc, const char *tenant)
{
    for (size_t j = 0; j < tc->n; j++)
        if (strcmp(tc->v[j].tenant, tenant) == 0) {
            tc->v[j].n++;
            return 0;
        }
    int rc = GROW(tc->v, tc->cap, tc->n + 1, GROW_UNLIMITED);
    if (rc != 0) return rc;
    memcpy(tc->v[tc->n].tenant, tenant, strlen(tenant) + 1);
    tc->v[tc->n++].n = 1;
    return 0;
}

/* The postings of the series of [lo, hi] into wb, the series counted per
 * tenant into tc. */
static int clear_series(storage_t *s, uint64_t lo, uint64_t hi, rocksdb_writebatch_t *wb,
                        tcounts_t *tc, storage_clear_stats_t *st)
{
    uint8_t start[8], end[9];
    size_t en = range_keys(lo, hi, start, end);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, en);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SERIES]);
    buf_t pk;
    buf_init(&pk, BUF_UNLIMITED);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)start, 8); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn < 18 || k[8] == 0 || k[8] > STORAGE_TENANT_MAX || kn != 17 + (size_t)k[8]) continue;
        char tenant[STORAGE_TENANT_MAX + 1];
        memcpy(tenant, k + 9, k[8]);
        tenant[k[8]] = 0;
        labels_t *l = NULL;
        if (labels_decode(v, vn, &l) == 0) { /* undecodable: no postings to find */
            for (size_t i = 0; rc == 0 && i < labels_count(l); i++) {
                rc = storage_key_posting(&pk, tenant, labels_name(l, i), labels_value(l, i),
                                         be64_get(k), be64_get(k + 9 + k[8]));
                if (rc == 0)
                    rocksdb_writebatch_delete_cf(wb, s->cf[CF_POSTINGS], (const char *)pk.data,
                                                 pk.len);
            }
            labels_free(l);
        }
        if (rc == 0) rc = tenants_add(tc, tenant);
        st->series += rc == 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "clear: series");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    buf_free(&pk);
    return ioerr != 0 ? ioerr : rc;
}

/* The span trees of tokens in [lo, hi] into wb, found through span_index
 * (token-first: one range read). Deleted key by key, index entries too
 * (profile_span_index's as well), so a write committed between this read
 * and the clear keeps them all. */
static int clear_spans(storage_t *s, uint64_t lo, uint64_t hi, rocksdb_writebatch_t *wb,
                       storage_clear_stats_t *st)
{
    uint8_t start[8], end[9];
    size_t en = range_keys(lo, hi, start, end);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, en);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SPAN_INDEX]);
    for (rocksdb_iter_seek(it, (const char *)start, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kn);
        uint8_t k[SKEY_MAX];
        rocksdb_writebatch_delete_cf(wb, s->cf[CF_SPAN_INDEX], (const char *)ik, kn);
        if (kn < 9 || kn > SKEY_MAX || kn != 8 + 1 + (size_t)ik[8] + 1 + 8 + 16) continue;
        storage_span_key_of_index(ik, kn, k);
        rocksdb_writebatch_delete_cf(wb, s->cf[CF_SPANS], (const char *)k, kn);
        st->spans++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "clear: spans");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : storage_pspan_clear(s, start, end, en, wb);
}

/* The intervals being received are also recorded in `meta` under
 * RECEIVING_KEY, as n pairs (lo, hi) of u64 LE: put in the batch of the
 * clear that adds one, deleted by storage_range_received. A stream a crash
 * cut short goes on after its cursor into the ranges it cleared (a regain
 * does not clear them again), and they must still be being received then:
 * retention would otherwise drop the tree entries of the untreed profiles
 * it recorded (past profile retention) while their seen entries stay, and
 * the windows it stores next would take those profiles for ones this node
 * counted on its own and leave their totals out. */
#define RECEIVING_KEY "receiving"
#define RECEIVING_PAIR 16

/* Adds the intervals to those being received, before the clear commits: a
 * write committed after it then sees them. Each interval once. The record
 * of the whole set goes into rec (the clear's batch puts it). */
static int receiving_add(storage_t *s, const uint64_t *lo, const uint64_t *hi, size_t n, buf_t *rec)
{
    int rc = 0;
    pthread_mutex_lock(&s->receiving.mu);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t j = 0;
        while (j < s->receiving.n && (s->receiving.lo[j] != lo[i] || s->receiving.hi[j] != hi[i]))
            j++;
        if (j < s->receiving.n) continue;
        uint64_t *a = realloc(s->receiving.lo, (s->receiving.n + 1) * sizeof *a);
        if (a != NULL) s->receiving.lo = a;
        uint64_t *b = a ? realloc(s->receiving.hi, (s->receiving.n + 1) * sizeof *b) : NULL;
        if (b != NULL) s->receiving.hi = b;
        if (a == NULL || b == NULL) {
            rc = ERR_NOMEM;
            break;
        }
        a[s->receiving.n] = lo[i];
        b[s->receiving.n++] = hi[i];
    }
    for (size_t i = 0; rc == 0 && i < s->receiving.n; i++) {
        uint8_t pair[RECEIVING_PAIR];
        storage_i64_put(pair, (int64_t)s->receiving.lo[i]);
        storage_i64_put(pair + 8, (int64_t)s->receiving.hi[i]);
        rc = buf_append(rec, pair, sizeof pair);
    }
    pthread_mutex_unlock(&s->receiving.mu);
    return rc;
}

/* The set replaced by the n intervals (NULL, NULL, 0: none); takes
 * ownership of lo and hi. */
static void receiving_set(storage_t *s, uint64_t *lo, uint64_t *hi, size_t n)
{
    pthread_mutex_lock(&s->receiving.mu);
    free(s->receiving.lo);
    free(s->receiving.hi);
    s->receiving.lo = lo;
    s->receiving.hi = hi;
    s->receiving.n = n;
    pthread_mutex_unlock(&s->receiving.mu);
}

/* Every token: [0, UINT64_MAX]. */
static int receiving_all(storage_t *s)
{
    uint64_t *lo = malloc(sizeof *lo), *hi = malloc(sizeof *hi);
    if (lo == NULL || hi == NULL) {
        free(lo);
        free(hi);
        return ERR_NOMEM;
    }
    *lo = 0;
    *hi = UINT64_MAX;
    receiving_set(s, lo, hi, 1);
    return 0;
}

int storage_range_receiving_init(storage_t *s)
{
    return receiving_all(s);
}

/* The record v (vn bytes) as the set; ERR_CORRUPT when it does not parse. */
static int receiving_decode(storage_t *s, const uint8_t *v, size_t vn)
{
    size_t n = vn / RECEIVING_PAIR;
    if (vn % RECEIVING_PAIR != 0) return ERR_CORRUPT;
    uint64_t *lo = malloc((n ? n : 1) * sizeof *lo), *hi = malloc((n ? n : 1) * sizeof *hi);
    int rc = lo != NULL && hi != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        lo[i] = (uint64_t)storage_i64_get(v + i * RECEIVING_PAIR);
        hi[i] = (uint64_t)storage_i64_get(v + i * RECEIVING_PAIR + 8);
        if (lo[i] > hi[i]) rc = ERR_CORRUPT;
    }
    if (rc == 0) {
        receiving_set(s, lo, hi, n);
        return 0;
    }
    free(lo);
    free(hi);
    return rc;
}

int storage_range_receiving_load(storage_t *s, errmsg_t *em)
{
    char *err = NULL;
    size_t vn = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_META], RECEIVING_KEY,
                             sizeof RECEIVING_KEY - 1, &vn, &err);
    int rc = storage_rocks_err(err, em, "read the ranges being received");
    if (rc == 0 && v == NULL) receiving_set(s, NULL, NULL, 0);
    if (rc == 0 && v != NULL) {
        pthread_mutex_lock(&s->receiving.save_mu);
        s->receiving.stored = 1;
        pthread_mutex_unlock(&s->receiving.save_mu);
        rc = receiving_decode(s, (const uint8_t *)v, vn);
        if (rc == ERR_CORRUPT) { /* retention never guesses: every token until received */
            log_warn("storage", "the record of the ranges being received does not parse: every "
                                "token is taken as being received until the stream ends");
            rc = 0;
        } else if (rc == 0) {
            log_info("storage",
                     "%zu token interval(s) still being received (a stream cut short): their "
                     "profile trees are kept until it ends",
                     vn / RECEIVING_PAIR);
        }
    }
    free(v);
    return rc == ERR_NOMEM ? errmsg_set(em, rc, "out of memory") : rc;
}

int storage_range_receiving(storage_t *s, uint64_t token)
{
    int in = 0;
    pthread_mutex_lock(&s->receiving.mu);
    for (size_t i = 0; !in && i < s->receiving.n; i++)
        in = token >= s->receiving.lo[i] && token <= s->receiving.hi[i];
    pthread_mutex_unlock(&s->receiving.mu);
    return in;
}

void storage_range_received(storage_t *s)
{
    pthread_mutex_lock(&s->receiving.save_mu);
    receiving_set(s, NULL, NULL, 0);
    if (s->receiving.stored) { /* not written again: a failure is tried at the next call */
        char *err = NULL;
        rocksdb_delete_cf(s->db, s->wopts, s->cf[CF_META], RECEIVING_KEY, sizeof RECEIVING_KEY - 1,
                          &err);
        errmsg_t em = {{0}};
        int rc = storage_rocks_err(err, &em, "delete the record of the ranges being received");
        if (rc != 0)
            log_warn("storage", "%s: a restart keeps their profile trees until the next try",
                     errmsg_text(&em, rc));
        s->receiving.stored = rc != 0;
    }
    pthread_mutex_unlock(&s->receiving.save_mu);
}

int storage_range_clear(storage_t *s, const uint64_t *lo, const uint64_t *hi, size_t n,
                        storage_clear_stats_t *st, errmsg_t *em)
{
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < n; i++)
        if (lo[i] > hi[i]) return errmsg_set(em, ERR_INVALID_ARGUMENT, "clear: empty interval");
    pthread_mutex_lock(&s->receiving.save_mu);
    buf_t rec;
    buf_init(&rec, BUF_UNLIMITED);
    if (receiving_add(s, lo, hi, n, &rec) != 0) {
        pthread_mutex_unlock(&s->receiving.save_mu);
        buf_free(&rec);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    if (n > 0) /* with the clear: a store that holds it cleared is receiving it */
        rocksdb_writebatch_put_cf(wb, s->cf[CF_META], RECEIVING_KEY, sizeof RECEIVING_KEY - 1,
                                  (const char *)rec.data, rec.len);
    buf_free(&rec);
    tcounts_t tc = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = clear_series(s, lo[i], hi[i], wb, &tc, st);
        if (rc == 0) rc = clear_spans(s, lo[i], hi[i], wb, st);
        uint8_t start[8], end[9];
        size_t en = range_keys(lo[i], hi[i], start, end);
        for (size_t c = 0; rc == 0 && c < sizeof token_cfs / sizeof *token_cfs; c++)
            rocksdb_writebatch_delete_range_cf(wb, s->cf[token_cfs[c]], (const char *)start, 8,
                                               (const char *)end, en);
    }
    if (rc != 0) errmsg_set(em, rc, "clear: %s", err_message(rc));
    char *err = NULL;
    /* no write half done meanwhile: one that decided from the series cache
     * before the commit and committed after it would store data without
     * its labels; and the cache forgets the cleared series before any
     * write decides from it again */
    pthread_rwlock_wrlock(&s->symgc.lock);
    if (rc == 0 && n > 0) {
        rocksdb_write(s->db, s->wopts, wb, &err);
        rc = storage_rocks_err(err, em, "clear: write");
    }
    if (rc == 0) storage_idcache_clear(&s->series_cache);
    pthread_rwlock_unlock(&s->symgc.lock);
    if (rc == 0 && n > 0) s->receiving.stored = 1;
    pthread_mutex_unlock(&s->receiving.save_mu);
    rocksdb_writebatch_destroy(wb);
    if (rc == 0) {
        for (size_t j = 0; j < tc.n; j++)
            storage_tseries_release(s, tc.v[j].tenant, tc.v[j].n);
    }
    free(tc.v);
    return rc;
}
