/* tseries.c — series per tenant on this node (tenant_max_series).
 *
 * The counts live in memory: they are rebuilt from the series column family
 * when the store opens (one pass over its keys), raised by a write that
 * stores a series the column family did not hold (write.c checks with a
 * read, since the series cache only knows what this process wrote), and
 * lowered when the collector deletes a series (gc.c). A write reserves its
 * new series before it commits and gives them back if the commit fails, so
 * concurrent writes of one tenant cannot together pass the limit. Inert
 * (no reads, no counts) when the limit is 0.
 *
 * Thread-safe: one mutex; it is never held while RocksDB is called.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "storage/storage_int.h"

static uint64_t tenant_hash(const char *tenant, size_t n)
{
    return hash_bytes64(tenant, n);
}

/* The slot of tenant (n bytes), created with its name when new. */
static int slot_of(storage_tseries_t *t, const char *tenant, size_t n, uint32_t *idx)
{
    uint64_t h = tenant_hash(tenant, n);
    if (u64map_get(&t->index, h, idx)) return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        uint64_t *v = realloc(t->counts, cap * sizeof *v);
        if (v == NULL) return ERR_NOMEM;
        t->counts = v;
        char(*names)[STORAGE_TENANT_MAX + 1] = realloc(t->names, cap * sizeof *names);
        if (names == NULL) return ERR_NOMEM;
        t->names = names;
        t->cap = cap;
    }
    if (u64map_put(&t->index, h, (uint32_t)t->n) != 0) return ERR_NOMEM;
    t->counts[t->n] = 0;
    if (n > STORAGE_TENANT_MAX) n = STORAGE_TENANT_MAX;
    memcpy(t->names[t->n], tenant, n);
    t->names[t->n][n] = 0;
    *idx = (uint32_t)t->n++;
    return 0;
}

/* One series key: token(8) | tenant (length byte + bytes) | series_id(8). */
static int count_key(storage_tseries_t *t, const uint8_t *k, size_t kn)
{
    if (kn < 18 || kn != 17 + (size_t)k[8]) return 0; /* not a series key: not counted */
    uint32_t idx;
    int rc = slot_of(t, (const char *)k + 9, k[8], &idx);
    if (rc == 0) t->counts[idx]++;
    return rc;
}

int storage_tseries_open(storage_t *s)
{
    storage_tseries_t *t = &s->tseries;
    pthread_mutex_init(&t->mu, NULL);
    t->on = s->opts.tenant_max_series > 0 || s->opts.count_tenant_series;
    if (!t->on) return 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SERIES]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        rc = count_key(t, k, kn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err != NULL) {
        free(err);
        rc = ERR_IO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

void storage_tseries_close(storage_t *s)
{
    storage_tseries_t *t = &s->tseries;
    u64map_free(&t->index);
    free(t->counts);
    free(t->names);
    t->counts = NULL;
    t->names = NULL;
    t->n = t->cap = 0;
    pthread_mutex_destroy(&t->mu);
}

int storage_tseries_reserve(storage_t *s, const char *tenant, size_t n, errmsg_t *em)
{
    storage_tseries_t *t = &s->tseries;
    if (!t->on || n == 0) return 0;
    pthread_mutex_lock(&t->mu);
    uint32_t idx;
    int rc = slot_of(t, tenant, strlen(tenant), &idx);
    uint64_t have = rc == 0 ? t->counts[idx] : 0;
    if (rc == 0 && s->opts.tenant_max_series > 0 && have + n > s->opts.tenant_max_series)
        rc = ERR_LIMIT;
    else if (rc == 0)
        t->counts[idx] += n;
    pthread_mutex_unlock(&t->mu);
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "tenant '%s' has %llu series on this node and this push would add %zu: "
                          "over %zu (tenant-max-series)",
                          tenant, (unsigned long long)have, n, s->opts.tenant_max_series);
    return rc != 0 ? errmsg_set(em, rc, "out of memory") : 0;
}

void storage_tseries_release(storage_t *s, const char *tenant, size_t n)
{
    storage_tseries_t *t = &s->tseries;
    if (!t->on || n == 0) return;
    pthread_mutex_lock(&t->mu);
    uint32_t idx;
    if (u64map_get(&t->index, tenant_hash(tenant, strlen(tenant)), &idx))
        t->counts[idx] = t->counts[idx] > n ? t->counts[idx] - n : 0;
    pthread_mutex_unlock(&t->mu);
}

size_t storage_tenant_series(storage_t *s, const char *tenant)
{
    storage_tseries_t *t = &s->tseries;
    if (!t->on) return 0;
    pthread_mutex_lock(&t->mu);
    uint32_t idx;
    size_t n =
        u64map_get(&t->index, tenant_hash(tenant, strlen(tenant)), &idx) ? t->counts[idx] : 0;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Most series first, then by name. */
static int count_cmp(const void *a, const void *b)
{
    const storage_tenant_count_t *x = a, *y = b;
    if (x->series != y->series) return x->series > y->series ? -1 : 1;
    return strcmp(x->tenant, y->tenant);
}

size_t storage_tenant_series_top(storage_t *s, storage_tenant_count_t *out, size_t max,
                                 uint64_t *others, size_t *ntenants)
{
    storage_tseries_t *t = &s->tseries;
    *others = 0;
    *ntenants = 0;
    if (!t->on || max == 0) return 0;
    size_t kept = 0;
    pthread_mutex_lock(&t->mu);
    *ntenants = t->n;
    for (size_t i = 0; i < t->n; i++) { /* out stays sorted: insertion into max entries */
        storage_tenant_count_t c;
        memcpy(c.tenant, t->names[i], sizeof c.tenant);
        c.series = t->counts[i];
        if (kept == max && count_cmp(&c, &out[max - 1]) >= 0) {
            *others += c.series;
            continue;
        }
        if (kept == max) *others += out[--kept].series;
        size_t at = kept++;
        while (at > 0 && count_cmp(&c, &out[at - 1]) < 0) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = c;
    }
    pthread_mutex_unlock(&t->mu);
    return kept;
}
