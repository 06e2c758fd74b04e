/* nodetab.c — stack-node tables: the shapes that block values index.
 *
 * Every placement token (one service shard of one tenant) has a node table:
 * node 0 is the root, and node i > 0 is (parent node, symbol id). Ids are
 * assigned densely in order of first appearance, so a parent's id is always
 * smaller than its children's, and stored in the `nodes` column family in
 * chunks of NODETAB_CHUNK ids under token|tenant|chunk — one contiguous key
 * range per token, moving with it. A write that adds nodes rewrites the
 * chunks they fall in (storage_nodetab_stage), so a profile with ten thousand new
 * stacks costs about ten puts, not ten thousand. Block
 * values (sparse.c) are then sparse vectors of self values over these ids:
 * the shape of a service's call tree is stored once instead of once per
 * window, and summing blocks is adding vectors.
 *
 * Tables are cached in memory (bounded by node_cache_bytes, least recently
 * used first out) and loaded from the column family on a miss. The most
 * recently used table always stays, even alone over the bound: else a table
 * larger than the cache would be loaded whole again by every push of its
 * service (the bound is exceeded by at most that one table; a warning says
 * so, and flamedb_storage_node_table_loads_total shows the reloads). A writer holds
 * a table's lock from the first new id until its WriteBatch (which carries the
 * new node entries) committed, so no other thread ever sees an id whose entry
 * is not durable. If the batch fails, the table is emptied IN PLACE and stays
 * in the cache: the next holder of its lock reloads it from disk. (Dropping it
 * from the cache instead let a thread already waiting on the lock keep using
 * the old object while a newcomer loaded a second copy: both then gave the
 * same next id to different stacks, and values landed on the wrong stacks.)
 * There is at most one table object per (token, tenant) at any time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/edgemap.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "storage/storage_int.h"

struct nodetab {
    uint64_t token;
    char tenant[STORAGE_TENANT_MAX + 1];
    pthread_mutex_t lock;
    uint32_t count, cap;
    uint32_t committed; /* ids below it are durable; the rest await storage_nodetab_stage */
    uint32_t *parent;
    uint64_t *sym;
    edgemap_t edges; /* (parent, sym) -> id (the root is never looked up) */
    /* The table's symbols in order of first use, so stored chunks name a
     * symbol seen before by its ordinal (1-3 bytes) instead of its 8-byte id. */
    uint64_t *ord_sym;   /* ordinal -> symbol id */
    uint32_t *ord_first; /* ordinal -> first node id using it */
    uint32_t nsyms, sym_cap;
    u64map_t sym_index;    /* symbol id -> ordinal */
    int refs;              /* guarded by the cache mutex */
    int valid;             /* 0: dropped from the cache, freed at the last release */
    size_t cached_bytes;   /* what the cache accounts for it */
    list_node_t lru;       /* in the cache's LRU list, most recent first */
    struct nodetab *hnext; /* hash chain */
};

static size_t tab_bytes(const nodetab_t *t)
{
    return sizeof *t + t->cap * (sizeof *t->parent + sizeof *t->sym) + edgemap_bytes(&t->edges) +
           t->sym_cap * (sizeof *t->ord_sym + sizeof *t->ord_first) + u64map_bytes(&t->sym_index);
}

/* Ordinal of sym in the table's dictionary, or UINT32_MAX. */
static uint32_t sym_ordinal(const nodetab_t *t, uint64_t sym)
{
    uint32_t o;
    return u64map_get(&t->sym_index, sym, &o) ? o : UINT32_MAX;
}

/* Makes room for one more dictionary symbol (before anything changes). */
static int sym_reserve(nodetab_t *t)
{
    size_t need = (size_t)t->nsyms + 1, c1 = t->sym_cap, c2 = t->sym_cap;
    if (GROW_FROM(t->ord_sym, c1, need, UINT32_MAX - 1, 256) != 0 ||
        GROW_FROM(t->ord_first, c2, need, UINT32_MAX - 1, 256) != 0)
        return ERR_NOMEM;
    t->sym_cap = (uint32_t)c1;
    return u64map_reserve(&t->sym_index, need);
}

/* Cannot fail after sym_reserve. */
static void sym_add(nodetab_t *t, uint64_t sym, uint32_t first_id)
{
    uint32_t o = t->nsyms++;
    t->ord_sym[o] = sym;
    t->ord_first[o] = first_id;
    (void)u64map_put(&t->sym_index, sym, o);
}

/* Appends node (parent, sym) as id count while count < limit; the caller
 * checked it is new. */
static int tab_append(nodetab_t *t, uint32_t parent, uint64_t sym, uint32_t limit)
{
    if (t->count >= limit) return ERR_LIMIT;
    size_t c1 = t->cap, c2 = t->cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(t->parent, c1, (size_t)t->count + 1, UINT32_MAX, 256) != 0 ||
        GROW_FROM(t->sym, c2, (size_t)t->count + 1, UINT32_MAX, 256) != 0)
        return ERR_NOMEM;
    t->cap = (uint32_t)c1;
    size_t edges = (size_t)t->count + 1 > 512 ? (size_t)t->count + 1 : 512; /* >= 1024 slots */
    if (edgemap_reserve(&t->edges, edges) != 0) return ERR_NOMEM;
    int new_sym = t->count > 0 && sym_ordinal(t, sym) == UINT32_MAX;
    if (new_sym && sym_reserve(t) != 0) return ERR_NOMEM;
    uint32_t id = t->count++;
    /* Chunks store id - parent as an unsigned varint: a parent must be older. */
    ASSERT_ALWAYS(id == 0 || parent < id);
    t->parent[id] = parent;
    t->sym[id] = sym;
    if (id > 0) edgemap_put(&t->edges, parent, sym, id);
    if (new_sym) sym_add(t, sym, id);
    return 0;
}

static void tab_free(nodetab_t *t)
{
    if (t == NULL) return;
    pthread_mutex_destroy(&t->lock);
    free(t->parent);
    free(t->sym);
    edgemap_free(&t->edges);
    free(t->ord_sym);
    free(t->ord_first);
    u64map_free(&t->sym_index);
    free(t);
}

void storage_key_node(skey_t *k, uint64_t token, const char *tenant, uint32_t chunk)
{
    skey_reset(k);
    storage_key_u64(k, token);
    storage_key_tenant(k, tenant);
    storage_key_u8(k, (uint8_t)(chunk >> 24));
    storage_key_u8(k, (uint8_t)(chunk >> 16));
    storage_key_u8(k, (uint8_t)(chunk >> 8));
    storage_key_u8(k, (uint8_t)chunk);
}

/* First node id a chunk holds (the root, id 0, is implicit). */
static uint32_t chunk_first(uint32_t chunk)
{
    return chunk == 0 ? 1 : chunk * NODETAB_CHUNK;
}

/* Appends the entries of one chunk value to t; they must continue its ids.
 * Entry: uvarint (id - parent id), uvarint k; k = 0: a symbol the table has
 * not used before follows as 8 bytes little-endian; k > 0: the table's k-th
 * symbol (in order of first use). */
static int chunk_decode(nodetab_t *t, uint32_t chunk, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    uint32_t id = chunk_first(chunk);
    if (id != t->count) return ERR_CORRUPT;
    while (p < end) {
        uint64_t delta, k, sym = 0;
        if (!varint_read_u(&p, end, &delta) || delta == 0 || delta > id ||
            !varint_read_u(&p, end, &k) || id >= (chunk + 1) * NODETAB_CHUNK)
            return ERR_CORRUPT;
        if (k == 0) {
            if (end - p < 8) return ERR_CORRUPT;
            for (int i = 7; i >= 0; i--)
                sym = (sym << 8) | p[i];
            p += 8;
            if (sym_ordinal(t, sym) != UINT32_MAX) return ERR_CORRUPT; /* must be new */
        } else {
            if (k > t->nsyms) return ERR_CORRUPT;
            sym = t->ord_sym[k - 1];
        }
        int rc = tab_append(t, id - (uint32_t)delta, sym, STORAGE_HARD_STACK_NODES);
        if (rc != 0) return rc;
        id++;
    }
    return 0;
}

/* Reads the table's chunks from disk; ids must be dense 1..n in key order. */
static int tab_load(storage_t *s, nodetab_t *t, errmsg_t *em)
{
    skey_t lo, hi;
    storage_key_node(&lo, t->token, t->tenant, 0);
    hi = lo;
    hi.n -= 4; /* prefix token|tenant */
    hi.n = storage_prefix_successor(hi.b, hi.n);
    int rc = tab_append(t, 0, SYM_ROOT, STORAGE_HARD_STACK_NODES);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n) continue;
        uint32_t chunk = (uint32_t)be64_get(k + kn - 8) & 0xffffffffu;
        rc = chunk_decode(t, chunk, v, vn);
        if (rc == ERR_CORRUPT)
            errmsg_set(em, rc, "node table %016llx: chunk %u is corrupt or out of order",
                       (unsigned long long)t->token, chunk);
    }
    t->committed = t->count;
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0) rc = storage_rocks_err(err, em, "load node table");
    return rc;
}

#define NODETAB_BUCKETS 4096

static size_t bucket_of(uint64_t token, const char *tenant)
{
    return (size_t)(storage_mix64(token ^ hash_bytes64(tenant, strlen(tenant))) % NODETAB_BUCKETS);
}

int storage_nodetab_cache_init(storage_t *s, size_t max_bytes)
{
    nodetab_cache_t *c = &s->nodetabs;
    memset(c, 0, sizeof *c);
    list_init(&c->lru);
    c->max_bytes = max_bytes;
    c->buckets = calloc(NODETAB_BUCKETS, sizeof *c->buckets);
    if (c->buckets == NULL) return ERR_NOMEM;
    return pthread_mutex_init(&c->mu, NULL) == 0 ? 0 : ERR_INTERNAL;
}

void storage_nodetab_cache_free(storage_t *s)
{
    nodetab_cache_t *c = &s->nodetabs;
    while (c->lru.head.next != NULL && !list_empty(&c->lru)) { /* NULL: never initialised */
        nodetab_t *t = LIST_ENTRY(list_first(&c->lru), nodetab_t, lru);
        list_remove(&t->lru);
        tab_free(t);
    }
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

/* Removes a valid table from the hash and the LRU list. Cache mutex held. */
static void drop(nodetab_cache_t *c, nodetab_t *t)
{
    nodetab_t **pp = &c->buckets[bucket_of(t->token, t->tenant)];
    while (*pp != NULL && *pp != t)
        pp = &(*pp)->hnext;
    if (*pp == t) *pp = t->hnext;
    list_remove(&t->lru);
    c->bytes -= t->cached_bytes;
    t->valid = 0;
}

/* Frees unreferenced tables from the cold end while over budget, never the
 * most recently used one. Mutex held. */
static void evict(nodetab_cache_t *c)
{
    nodetab_t *prev, *hot = LIST_ENTRY(list_first(&c->lru), nodetab_t, lru);
    for (nodetab_t *t = LIST_ENTRY(list_last(&c->lru), nodetab_t, lru);
         t != NULL && t != hot && c->bytes > c->max_bytes; t = prev) {
        prev = LIST_ENTRY(list_prev(&c->lru, &t->lru), nodetab_t, lru);
        if (t->refs == 0) {
            drop(c, t);
            tab_free(t);
        }
    }
}

int storage_nodetab_acquire(storage_t *s, uint64_t token, const char *tenant, nodetab_t **out,
                            errmsg_t *em)
{
    nodetab_cache_t *c = &s->nodetabs;
    size_t b = bucket_of(token, tenant);
    pthread_mutex_lock(&c->mu);
    nodetab_t *t = c->buckets[b];
    while (t != NULL && (t->token != token || strcmp(t->tenant, tenant) != 0))
        t = t->hnext;
    int fresh = t == NULL;
    if (fresh) {
        t = calloc(1, sizeof *t);
        if (t == NULL) {
            pthread_mutex_unlock(&c->mu);
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        }
        t->token = token;
        snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
        pthread_mutex_init(&t->lock, NULL);
        t->valid = 1;
        t->hnext = c->buckets[b];
        c->buckets[b] = t;
        list_push_front(&c->lru, &t->lru);
        pthread_mutex_lock(&t->lock); /* others wait on it until loaded */
    } else {
        list_remove(&t->lru);
        list_push_front(&c->lru, &t->lru);
    }
    t->refs++;
    pthread_mutex_unlock(&c->mu);
    if (!fresh) pthread_mutex_lock(&t->lock);
    if (t->count == 0) { /* new, or a previous load failed */
        int rc = tab_load(s, t, em);
        if (rc == 0) atomic_fetch_add(&s->counters.nodetab_loads, 1);
        if (rc == 0 && tab_bytes(t) > s->nodetabs.max_bytes)
            log_warn("storage",
                     "stack-node table %016llx of tenant %s takes %zu bytes, more than the node "
                     "cache holds (node-cache-bytes): it stays cached alone; raise the setting",
                     (unsigned long long)t->token, t->tenant, tab_bytes(t));
        if (rc != 0) {
            t->count = 0;
            storage_nodetab_release(s, t, 1);
            return rc;
        }
    }
    *out = t;
    return 0;
}

void storage_nodetab_release(storage_t *s, nodetab_t *t, int failed)
{
    nodetab_cache_t *c = &s->nodetabs;
    if (failed) {
        /* ids assigned since the last commit may not be durable: forget all,
         * and let the next holder (count 0) reload what is on disk */
        t->count = t->committed = t->nsyms = 0;
        edgemap_clear(&t->edges);
        u64map_clear(&t->sym_index);
    } else {
        t->committed = t->count;
    }
    size_t bytes = tab_bytes(t);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_lock(&c->mu);
    if (t->valid) {
        c->bytes += bytes - t->cached_bytes;
        t->cached_bytes = bytes;
    }
    int last = --t->refs == 0 && !t->valid;
    evict(c);
    pthread_mutex_unlock(&c->mu);
    if (last) tab_free(t);
}

int storage_nodetab_child(storage_t *s, nodetab_t *t, uint32_t parent, uint64_t sym,
                          rocksdb_writebatch_t *wb, uint32_t *out)
{
    uint32_t id = edgemap_get(&t->edges, parent, sym);
    if (id != 0) {
        *out = id;
        return 0;
    }
    if (wb == NULL) return ERR_NOT_FOUND;
    if (sym == SYM_OTHER) return storage_nodetab_other(s, t, parent, out);
    int rc = tab_append(t, parent, sym, s->opts.max_stack_nodes);
    if (rc != 0) return rc;
    *out = t->count - 1;
    return 0;
}

int storage_nodetab_other(storage_t *s, nodetab_t *t, uint32_t parent, uint32_t *out)
{
    if (parent != 0 && t->sym[parent] == SYM_OTHER) {
        *out = parent;
        return 0;
    }
    uint32_t id = edgemap_get(&t->edges, parent, SYM_OTHER);
    if (id != 0) {
        *out = id;
        return 0;
    }
    uint32_t max = s->opts.max_stack_nodes, reserve = max + max / 64;
    if (reserve > STORAGE_HARD_STACK_NODES - 1) reserve = STORAGE_HARD_STACK_NODES - 1;
    int rc = tab_append(t, parent, SYM_OTHER, reserve);
    if (rc == ERR_LIMIT && parent != 0) return storage_nodetab_other(s, t, 0, out);
    if (rc == ERR_LIMIT) /* the root's "other": one id past the reserve, made once */
        rc = tab_append(t, 0, SYM_OTHER, reserve + 1);
    if (rc != 0) return rc;
    *out = t->count - 1;
    return 0;
}

int storage_nodetab_stage(storage_t *s, nodetab_t *t, rocksdb_writebatch_t *wb, buf_t *tmp)
{
    if (t->count <= t->committed) return 0;
    uint32_t first_chunk = t->committed / NODETAB_CHUNK,
             last_chunk = (t->count - 1) / NODETAB_CHUNK;
    for (uint32_t c = first_chunk; c <= last_chunk; c++) {
        uint32_t lo = chunk_first(c), hi = (c + 1) * NODETAB_CHUNK;
        if (hi > t->count) hi = t->count;
        buf_reset(tmp);
        int rc = buf_reserve(tmp, (size_t)(hi - lo) * 20);
        if (rc != 0) return rc;
        for (uint32_t id = lo; id < hi; id++) {
            uint8_t e[20];
            size_t n = varint_put_u(e, id - t->parent[id]);
            uint32_t o = sym_ordinal(t, t->sym[id]);
            if (o == UINT32_MAX) return ERR_INTERNAL; /* every node's symbol is in it */
            if (t->ord_first[o] == id) {              /* first use: the symbol itself */
                e[n++] = 0;
                for (int i = 0; i < 8; i++)
                    e[n++] = (uint8_t)(t->sym[id] >> (8 * i));
            } else {
                n += varint_put_u(e + n, (uint64_t)o + 1);
            }
            if ((rc = buf_append(tmp, e, n)) != 0) return rc;
        }
        skey_t k;
        storage_key_node(&k, t->token, t->tenant, c);
        rocksdb_writebatch_put_cf(wb, s->cf[CF_NODES], (const char *)k.b, k.n,
                                  (const char *)tmp->data, tmp->len);
    }
    return 0;
}

void storage_nodetab_prefetch(const nodetab_t *t, uint32_t parent, uint64_t sym)
{
    edgemap_prefetch(&t->edges, parent, sym);
}

uint32_t storage_nodetab_count(const nodetab_t *t)
{
    return t->count;
}

uint32_t storage_nodetab_parent(const nodetab_t *t, uint32_t id)
{
    return t->parent[id];
}

uint64_t storage_nodetab_sym(const nodetab_t *t, uint32_t id)
{
    return t->sym[id];
}

const uint32_t *storage_nodetab_parents(const nodetab_t *t)
{
    return t->parent;
}

const uint64_t *storage_nodetab_syms(const nodetab_t *t)
{
    return t->sym;
}

uint64_t storage_nodetab_token(const nodetab_t *t)
{
    return t->token;
}
