/* symcache.c — recently loaded symbol names, kept in memory.
 *
 * Symbols are content-addressed and never change, so a cached name is never
 * stale. Every query loads the names of the frames it shows; without this
 * cache that is thousands of RocksDB point reads per flame graph. The cache is
 * sharded (one mutex each) and bounded: a shard that outgrows its share of
 * the budget is emptied at once, which keeps the code trivial and the bound
 * strict, at the cost of re-reading names after a reset.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "storage/storage_int.h"

typedef struct sc_entry {
    uint64_t tenant_hash, id; /* id 0: empty (ids 0 and 1 are reserved) */
    char *blob;               /* name, NUL, file, NUL */
    uint32_t name_len, file_len;
    uint64_t file_hash; /* of the file up to its first NUL (file_used bytes): hashed once */
    uint32_t file_used;
} sc_entry_t;

struct symcache_shard {
    pthread_mutex_t mu;
    sc_entry_t *v;
    size_t nslots, count, bytes;
};

int storage_symcache_init(symcache_t *c, size_t max_bytes)
{
    memset(c, 0, sizeof *c);
    c->shard_bytes = max_bytes / SYMCACHE_SHARDS;
    c->shards = calloc(SYMCACHE_SHARDS, sizeof *c->shards);
    if (c->shards == NULL) return ERR_NOMEM;
    for (int i = 0; i < SYMCACHE_SHARDS; i++)
        pthread_mutex_init(&c->shards[i].mu, NULL);
    return 0;
}

static void shard_clear(struct symcache_shard *sh)
{
    for (size_t i = 0; i < sh->nslots; i++)
        free(sh->v[i].blob);
    free(sh->v);
    sh->v = NULL;
    sh->nslots = sh->count = sh->bytes = 0;
}

void storage_symcache_free(symcache_t *c)
{
    if (c->shards == NULL) return;
    for (int i = 0; i < SYMCACHE_SHARDS; i++) {
        shard_clear(&c->shards[i]);
        pthread_mutex_destroy(&c->shards[i].mu);
    }
    free(c->shards);
    c->shards = NULL;
}

static struct symcache_shard *shard_of(symcache_t *c, uint64_t th, uint64_t id, uint64_t *h)
{
    *h = storage_mix64(th ^ storage_mix64(id));
    return &c->shards[*h % SYMCACHE_SHARDS];
}

/* Looks up ids[i] (one shard's, listed in idx) in shard sh, whose lock is
 * held: every slot the probes start at is fetched first, so the misses of
 * a batch overlap instead of following one another, then each hit's blob,
 * then the hits are copied out. */
static int shard_get_many(struct symcache_shard *sh, uint64_t th, const uint64_t *ids,
                          const uint64_t *h, const uint16_t *idx, size_t m, symcache_hit_t *hits,
                          buf_t *names)
{
    const sc_entry_t *found[SYMCACHE_BATCH];
    size_t mask = sh->nslots - 1;
    for (size_t j = 0; j < m; j++)
        __builtin_prefetch(&sh->v[(h[idx[j]] >> 8) & mask]);
    for (size_t j = 0; j < m; j++) {
        found[j] = NULL;
        uint64_t id = ids[idx[j]];
        for (size_t i = (h[idx[j]] >> 8) & mask; sh->v[i].id != 0; i = (i + 1) & mask) {
            if (sh->v[i].id == id && sh->v[i].tenant_hash == th) {
                found[j] = &sh->v[i];
                __builtin_prefetch(found[j]->blob);
                break;
            }
        }
    }
    for (size_t j = 0; j < m; j++) {
        const sc_entry_t *e = found[j];
        if (e == NULL) continue;
        size_t len = (size_t)e->name_len + e->file_len + 2;
        if (names->len > UINT32_MAX - len) return ERR_TOO_LARGE;
        hits[idx[j]] = (symcache_hit_t){(uint32_t)names->len, e->name_len, e->file_len, 1,
                                        e->file_hash,         e->file_used};
        int rc = buf_append(names, e->blob, len);
        if (rc != 0) return rc;
    }
    return 0;
}

int storage_symcache_get_many(symcache_t *c, uint64_t tenant_hash, const uint64_t *ids, size_t n,
                              symcache_hit_t *hits, buf_t *names)
{
    if (n > SYMCACHE_BATCH) return ERR_INVALID_ARGUMENT;
    uint64_t h[SYMCACHE_BATCH];
    uint16_t idx[SYMCACHE_BATCH];
    size_t per[SYMCACHE_SHARDS + 1] = {0};
    buf_reset(names);
    for (size_t i = 0; i < n; i++) {
        (void)shard_of(c, tenant_hash, ids[i], &h[i]);
        hits[i] = (symcache_hit_t){0};
        per[h[i] % SYMCACHE_SHARDS + 1]++;
    }
    for (size_t k = 0; k < SYMCACHE_SHARDS; k++) /* per[k]: where shard k's ids start */
        per[k + 1] += per[k];
    size_t fill[SYMCACHE_SHARDS];
    memcpy(fill, per, sizeof fill);
    for (size_t i = 0; i < n; i++)
        idx[fill[h[i] % SYMCACHE_SHARDS]++] = (uint16_t)i;
    int rc = 0;
    for (size_t k = 0; k < SYMCACHE_SHARDS && rc == 0; k++) {
        if (per[k + 1] == per[k]) continue;
        struct symcache_shard *sh = &c->shards[k];
        pthread_mutex_lock(&sh->mu);
        if (sh->nslots > 0)
            rc = shard_get_many(sh, tenant_hash, ids, h, idx + per[k], per[k + 1] - per[k], hits,
                                names);
        pthread_mutex_unlock(&sh->mu);
    }
    return rc;
}

static int shard_grow(struct symcache_shard *sh)
{
    size_t n = sh->nslots ? sh->nslots * 2 : 1024;
    sc_entry_t *v = calloc(n, sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < sh->nslots; i++) {
        sc_entry_t *e = &sh->v[i];
        if (e->id == 0) continue;
        size_t j = (storage_mix64(e->tenant_hash ^ storage_mix64(e->id)) >> 8) & (n - 1);
        while (v[j].id != 0)
            j = (j + 1) & (n - 1);
        v[j] = *e;
    }
    free(sh->v);
    sh->v = v;
    sh->nslots = n;
    return 0;
}

void storage_symcache_put(symcache_t *c, uint64_t tenant_hash, uint64_t id, const char *name,
                          size_t name_len, const char *file, size_t file_len)
{
    if (id == 0 || name_len > UINT32_MAX || file_len > UINT32_MAX) return;
    uint64_t h;
    struct symcache_shard *sh = shard_of(c, tenant_hash, id, &h);
    size_t cost = name_len + file_len + 2 + sizeof(sc_entry_t) * 2;
    if (cost > c->shard_bytes) return;
    char *blob = malloc(name_len + file_len + 2);
    if (blob == NULL) return;
    size_t used = file_len > 0 ? strnlen(file, file_len) : 0; /* as symtab_file reads it */
    uint64_t fh = used > 0 ? hash_bytes64(file, used) : 0;
    memcpy(blob, name, name_len);
    blob[name_len] = 0;
    memcpy(blob + name_len + 1, file, file_len);
    blob[name_len + 1 + file_len] = 0;
    pthread_mutex_lock(&sh->mu);
    if (sh->bytes + cost > c->shard_bytes) shard_clear(sh);
    if ((sh->count + 1) * 2 > sh->nslots && shard_grow(sh) != 0) {
        pthread_mutex_unlock(&sh->mu);
        free(blob);
        return;
    }
    size_t i = (h >> 8) & (sh->nslots - 1);
    while (sh->v[i].id != 0 && !(sh->v[i].id == id && sh->v[i].tenant_hash == tenant_hash))
        i = (i + 1) & (sh->nslots - 1);
    if (sh->v[i].id != 0) { /* raced with another loader: keep the first */
        pthread_mutex_unlock(&sh->mu);
        free(blob);
        return;
    }
    sh->v[i] = (sc_entry_t){tenant_hash,        id, blob,          (uint32_t)name_len,
                            (uint32_t)file_len, fh, (uint32_t)used};
    sh->count++;
    sh->bytes += cost;
    pthread_mutex_unlock(&sh->mu);
}
