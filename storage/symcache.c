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

#include "storage/storage_int.h"

typedef struct sc_entry {
    uint64_t tenant_hash, id; /* id 0: empty (ids 0 and 1 are reserved) */
    char *blob;               /* name, NUL, file, NUL */
    uint32_t name_len, file_len;
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

int storage_symcache_get(symcache_t *c, uint64_t tenant_hash, uint64_t id, symtab_t *dst)
{
    uint64_t h;
    struct symcache_shard *sh = shard_of(c, tenant_hash, id, &h);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    for (size_t i = sh->nslots ? (h >> 8) & (sh->nslots - 1) : 0; sh->nslots && sh->v[i].id != 0;
         i = (i + 1) & (sh->nslots - 1)) {
        const sc_entry_t *e = &sh->v[i];
        if (e->id == id && e->tenant_hash == tenant_hash) {
            rc = symtab_put(dst, id, e->blob, e->name_len, e->blob + e->name_len + 1, e->file_len);
            rc = rc == 0 ? 1 : rc;
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
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
    sh->v[i] = (sc_entry_t){tenant_hash, id, blob, (uint32_t)name_len, (uint32_t)file_len};
    sh->count++;
    sh->bytes += cost;
    pthread_mutex_unlock(&sh->mu);
}
