/* nodetab.c — stack-node tables: the shapes that block values index.
 *
 * Every placement token (one service shard of one tenant) has a node table:
 * node 0 is the root, and node i > 0 is (parent node, symbol id). Ids are
 * assigned densely in order of first appearance, so a parent's id is always
 * smaller than its children's, and stored in the `nodes` column family in
 * chunks of NODETAB_CHUNK ids under token|tenant|chunk — one contiguous key
 * range per token, moving with it. A write that adds nodes rewrites the
 * chunks they fall in (storage_nodetab_stage), so a profile with ten thousand
 * new stacks costs about ten chunk puts. Block values (sparse.c) are then
 * sparse vectors of self values over these ids: the shape of a service's call
 * tree is stored once instead of once per window, and summing blocks is
 * adding vectors.
 *
 * Beside the chunks, under token|tenant|0x02|bucket, the edge index maps
 * every node's (parent, symbol) to its id (storage format 19: one value per
 * bucket of NODETAB_BUCKET_PARENTS parents, listing their children, those
 * of a parent wider than NODETAB_BUCKET_FANOUT as entries of their own) in a
 * table of at least node_index_min_nodes nodes; a smaller one is cheap to
 * read whole and keeps no index (its last chunk says so), and the write that
 * takes it to the threshold indexes every node in its batch. A chunk names its symbols by ordinals
 * local to the chunk, so any one chunk decodes alone. Together they let a writer work on a PARTIAL
 * table: only the last chunk (the one new ids extend) is read, and a (parent, symbol) that is not
 * in memory is found in its parent's bucket, read once and kept.
 * Readers, which walk every id, load the table whole (storage_nodetab_acquire);
 * writers take what is cached, or on a miss a partial table when it is
 * indexed and larger than node_whole_read_percent of the cache's bound (else
 * the whole one: one sequential read costs less than a large push's index
 * lookups, and the table then serves the next pushes from memory)
 * (storage_nodetab_acquire_append), so a push costs what it touches however
 * large its service's table grew. A partial table that outgrows the cache
 * after a write is shed to nothing (the next writer reads the last chunk
 * again); a whole one stays while it is the most recently used.
 *
 * Tables written by format 6 (table-wide symbol ordinals, no edge index)
 * still load whole; the first write to such a table rewrites all its chunks
 * self-contained (and indexes every node when it is large), in that write's
 * batch.
 *
 * A whole table read for a query also numbers its symbols densely (its
 * symbol index, storage_nodetab_symnos): each id's symbol as 0..nsyms-1 in
 * order of first use, built in memory on the first ask after a load and
 * extended to the ids added since at every later ask, so a forest's encoder
 * numbers its dictionary through an array instead of a hash lookup per
 * node. Nothing of it is stored: the chunks stay as they are. It counts in
 * the cache's bytes with its table.
 *
 * Tables are cached in memory, bounded by node_cache_bytes. Past the bound
 * the cache evicts by reuse distance (evict_rank), not least recently used
 * first: services push in turn, and when a full round of their tables does
 * not fit, least-recently-used eviction drops every table just before its
 * next use and gets no hit at all; this keeps a stable subset resident. A writer holds a table's
 * lock from the first new id until its WriteBatch (which carries the new chunks and index entries)
 * committed, so no other thread ever sees an id whose entry is not durable. If the batch fails, the
 * table is emptied IN PLACE and stays in the cache: the next holder of its lock reloads it from
 * disk. (Dropping it from the cache instead let a thread already waiting on the lock keep using the
 * old object while a newcomer loaded a second copy: both then gave the same next id to different
 * stacks, and values landed on the wrong stacks.) There is at most one table
 * object per (token, tenant) at any time, whole or partial.
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

/* First byte of a chunk value whose symbol ordinals are local to the chunk
 * (format 7). A format-6 value never starts with it: its first byte starts
 * an id delta, which is at least 1. */
#define CHUNK_SELF_CONTAINED 0x00
/* Second byte of a self-contained chunk whose table keeps no edge index (it
 * holds fewer than node_index_min_nodes nodes), and with a third such byte
 * of one whose table keeps the bucketed index (format 19). An entry never
 * starts with it (its id delta is at least 1), so a chunk of formats 7 to
 * 18 whose table kept the per-node index (no second mark byte) reads as
 * such: its table counts as unindexed. Only the last chunk's mark counts: a
 * table is indexed when its last chunk says so, and a write that adds nodes
 * or indexes the table rewrites that chunk in the same batch. */
#define CHUNK_MARK 0x00
/* How the table of a chunk is indexed, by the chunk's first bytes. */
enum chunk_state {
    CHUNK_FORMAT6,   /* table-wide symbol ordinals, no index */
    CHUNK_PER_NODE,  /* formats 7-18: the per-node entries (NODETAB_EDGE_TAG) */
    CHUNK_UNINDEXED, /* CHUNK_SELF_CONTAINED CHUNK_MARK */
    CHUNK_BUCKETED,  /* CHUNK_SELF_CONTAINED CHUNK_MARK CHUNK_MARK */
};
/* Buckets (or per-node entries) a partial table reads in one MultiGet
 * (storage_nodetab_children). */
#define NODETAB_MULTIGET 256
/* Child id a partial table's edges give a (parent, sym) of a spilled parent
 * that the per-node entries lack: mapping a tree looks new nodes up twice
 * (find, then create), and the second read would only repeat the first.
 * Replaced when the node is created; true until then, as only the holder of
 * the lock adds nodes. */
#define EDGE_ABSENT UINT32_MAX

struct nodetab {
    uint64_t token;
    char tenant[STORAGE_TENANT_MAX + 1];
    pthread_mutex_t lock;
    uint32_t count, cap;
    uint32_t committed; /* ids below it are durable; the rest await storage_nodetab_stage */
    /* First id held in parent/sym. 0: the whole table; else a partial table
     * holding its last chunks only (ids base..count-1). */
    uint32_t base;
    int old;            /* has format-6 chunks: the next stage rewrites them all */
    int unindexed;      /* no edge index on disk (format 6, or a small table) */
    int staged;         /* this holder's batch rewrites the table's state: at commit */
    int staged_indexed; /* ... it is indexed (else not), and no chunk is format 6 */
    int per_node;       /* its last chunk says the index is per node (formats 7-18) */
    /* A partial table's index buckets read (bucket -> 1): every record of
     * such a bucket is in edges, so a parent of it that has no edge there
     * has no such child on disk. */
    u64map_t buckets;
    u64map_t spilled;      /* parents of buckets read whose bucket marks them spilled */
    uint32_t *parent;      /* [id - base] */
    uint64_t *sym;         /* [id - base] */
    edgemap_t edges;       /* (parent, sym) -> id of held ids and of index entries read */
    int refs;              /* guarded by the cache mutex */
    int valid;             /* 0: dropped from the cache, freed at the last release */
    size_t cached_bytes;   /* what the cache accounts for it */
    list_node_t lru;       /* in the cache's LRU list, most recent first */
    uint64_t last;         /* the cache's tick at its last acquire (guarded by its mutex) */
    uint64_t reuse;        /* ticks between its last two uses; 0: used once */
    struct nodetab *hnext; /* hash chain */
    /* The symbol index of a whole table (storage_nodetab_symnos): ids below
     * numbered have their symbol's number in symno; symnums maps each
     * symbol numbered to its number (symnums.len symbols). */
    uint32_t *symno;
    uint32_t numbered, symno_cap;
    u64map_t symnums;
};

/* One chunk value decoded (storage_nodetab_stage's inverse). */
typedef struct chunkbuf {
    uint32_t parent[NODETAB_CHUNK];
    uint64_t sym[NODETAB_CHUNK];
    uint64_t local[NODETAB_CHUNK]; /* the chunk's symbols in order of first use */
    uint32_t n;
    int unindexed; /* not CHUNK_BUCKETED */
    int per_node;  /* CHUNK_PER_NODE */
} chunkbuf_t;

/* A format-6 table's symbols in order of first use, while it loads. */
typedef struct olddict {
    uint64_t *sym;
    size_t n, cap;
} olddict_t;

static size_t tab_bytes(const nodetab_t *t)
{
    return sizeof *t + t->cap * (sizeof *t->parent + sizeof *t->sym) + edgemap_bytes(&t->edges) +
           t->symno_cap * sizeof *t->symno + u64map_bytes(&t->symnums) + u64map_bytes(&t->buckets) +
           u64map_bytes(&t->spilled);
}

static int edge_reserve(nodetab_t *t)
{
    size_t need = t->edges.len + 1 > 512 ? t->edges.len + 1 : 512; /* >= 1024 slots */
    return edgemap_reserve(&t->edges, need) != 0 ? ERR_NOMEM : 0;
}

/* Sets (parent, sym) -> child, replacing an EDGE_ABSENT (or the same
 * child, when a bucket read holds an edge already there); after
 * edge_reserve. */
static void edge_set(nodetab_t *t, uint32_t parent, uint64_t sym, uint32_t child)
{
    size_t i = edgemap_probe(&t->edges, parent, sym);
    if (t->edges.slots[i].child != 0)
        t->edges.slots[i].child = child;
    else
        edgemap_set_at(&t->edges, i, parent, sym, child);
}

/* Appends node (parent, sym) as id count while count < limit; the caller
 * checked it is new. */
static int tab_append(nodetab_t *t, uint32_t parent, uint64_t sym, uint32_t limit)
{
    if (t->count >= limit) return ERR_LIMIT;
    size_t need = (size_t)(t->count - t->base) + 1, c1 = t->cap, c2 = t->cap;
    if (GROW_FROM(t->parent, c1, need, UINT32_MAX, 256) != 0 ||
        GROW_FROM(t->sym, c2, need, UINT32_MAX, 256) != 0)
        return ERR_NOMEM;
    t->cap = (uint32_t)c1; /* parallel arrays: both grew alike */
    if (edge_reserve(t) != 0) return ERR_NOMEM;
    uint32_t id = t->count++;
    /* Chunks store id - parent as an unsigned varint: a parent must be older. */
    ASSERT_ALWAYS(id == 0 || parent < id);
    t->parent[id - t->base] = parent;
    t->sym[id - t->base] = sym;
    if (id > 0) edge_set(t, parent, sym, id);
    return 0;
}

/* Forgets every id (the next holder loads the table again), keeping memory. */
static void tab_clear(nodetab_t *t)
{
    t->count = t->committed = t->base = 0;
    t->old = t->unindexed = t->staged = t->staged_indexed = t->per_node = 0;
    edgemap_clear(&t->edges);
    u64map_clear(&t->buckets);
    u64map_clear(&t->spilled);
    t->numbered = 0;
    u64map_clear(&t->symnums);
}

/* Gives the symbol index's memory back (it is built again when asked). */
static void symnos_free(nodetab_t *t)
{
    free(t->symno);
    t->symno = NULL;
    t->numbered = t->symno_cap = 0;
    u64map_free(&t->symnums);
}

/* tab_clear, and gives the memory back. */
static void tab_shed(nodetab_t *t)
{
    tab_clear(t);
    free(t->parent);
    free(t->sym);
    t->parent = NULL;
    t->sym = NULL;
    t->cap = 0;
    edgemap_free(&t->edges);
    u64map_free(&t->buckets);
    u64map_free(&t->spilled);
    symnos_free(t);
}

static void tab_free(nodetab_t *t)
{
    if (t == NULL) return;
    pthread_mutex_destroy(&t->lock);
    free(t->parent);
    free(t->sym);
    edgemap_free(&t->edges);
    u64map_free(&t->buckets);
    u64map_free(&t->spilled);
    symnos_free(t);
    free(t);
}

/* Appends v big-endian: chunk, parent and bucket numbers sort as numbers. */
static void key_u32(skey_t *k, uint32_t v)
{
    for (int shift = 24; shift >= 0; shift -= 8)
        storage_key_u8(k, (uint8_t)(v >> shift));
}

void storage_key_node(skey_t *k, uint64_t token, const char *tenant, uint32_t chunk)
{
    skey_reset(k);
    storage_key_u64(k, token);
    storage_key_tenant(k, tenant);
    key_u32(k, chunk);
}

void storage_key_node_edge(skey_t *k, uint64_t token, const char *tenant, uint32_t parent,
                           uint64_t sym)
{
    skey_reset(k);
    storage_key_u64(k, token);
    storage_key_tenant(k, tenant);
    storage_key_u8(k, NODETAB_EDGE_TAG);
    key_u32(k, parent);
    storage_key_u64(k, sym);
}

void storage_key_node_bucket(skey_t *k, uint64_t token, const char *tenant, uint32_t bucket)
{
    skey_reset(k);
    storage_key_u64(k, token);
    storage_key_tenant(k, tenant);
    storage_key_u8(k, NODETAB_BUCKET_TAG);
    key_u32(k, bucket);
}

/* The key range of the table's keys that start with tag: [lo, hi). */
static void tag_range(const nodetab_t *t, uint8_t tag, skey_t *lo, skey_t *hi)
{
    storage_key_node(lo, t->token, t->tenant, 0);
    lo->n -= 4; /* token|tenant */
    *hi = *lo;
    storage_key_u8(lo, tag);
    storage_key_u8(hi, (uint8_t)(tag + 1));
}

/* The key range of the table's chunks: [lo, hi), the edge index excluded. */
static void chunk_range(const nodetab_t *t, skey_t *lo, skey_t *hi)
{
    storage_key_node(lo, t->token, t->tenant, 0);
    *hi = *lo;
    hi->n -= 4; /* token|tenant */
    storage_key_u8(hi, NODETAB_EDGE_TAG);
}

/* First node id a chunk holds (the root, id 0, is implicit). */
static uint32_t chunk_first(uint32_t chunk)
{
    return chunk == 0 ? 1 : chunk * NODETAB_CHUNK;
}

static enum chunk_state chunk_state(const uint8_t *p, size_t n)
{
    if (n == 0 || p[0] != CHUNK_SELF_CONTAINED) return CHUNK_FORMAT6;
    if (n < 2 || p[1] != CHUNK_MARK) return CHUNK_PER_NODE;
    return n >= 3 && p[2] == CHUNK_MARK ? CHUNK_BUCKETED : CHUNK_UNINDEXED;
}

static int chunk_is_old(const uint8_t *p, size_t n)
{
    return chunk_state(p, n) == CHUNK_FORMAT6;
}

/* Whether a chunk says its table keeps no edge index this binary reads
 * (format 6 never does; formats 7-18 kept one per node). */
static int chunk_unindexed(const uint8_t *p, size_t n)
{
    return chunk_state(p, n) != CHUNK_BUCKETED;
}

/* Nodes from which a table may keep the edge index: the setting (by
 * default STORAGE_NODE_INDEX_MIN_NODES), or fewer when a table that large
 * would take more than a quarter of the node cache's table budget (up to
 * about 100 bytes a node whole, its edge map included): such a table does
 * not stay cached, and reading it whole at every miss is what the index
 * avoids. */
static uint32_t index_min_nodes(const storage_t *s)
{
    size_t cap = s->nodetabs.max_bytes / 4 / 100, min = s->opts.node_index_min_nodes;
    if (min == 0) min = STORAGE_NODE_INDEX_MIN_NODES;
    if (min > cap) min = cap;
    return min < 1 ? 1 : (uint32_t)min;
}

/* Names the symbol an entry's k gives (k = 0: 8 bytes little-endian follow). */
static int entry_sym(const uint8_t **p, const uint8_t *end, uint64_t k, uint64_t *dict,
                     size_t *ndict, uint64_t *sym)
{
    if (k > 0) {
        if (k > *ndict) return ERR_CORRUPT;
        *sym = dict[k - 1];
        return 0;
    }
    if (end - *p < 8) return ERR_CORRUPT;
    uint64_t s = 0;
    for (int i = 7; i >= 0; i--)
        s = (s << 8) | (*p)[i];
    *p += 8;
    dict[(*ndict)++] = s; /* the caller made room */
    *sym = s;
    return 0;
}

/* Decodes one chunk value into cb. Entry: uvarint (id - parent id), uvarint
 * k; k = 0: a symbol not named before follows as 8 bytes little-endian;
 * k > 0: the k-th symbol named before, in this chunk (format 7, the value
 * starts with CHUNK_SELF_CONTAINED) or in the whole table (format 6, through
 * od; od NULL refuses such a value). */
static int chunk_parse(uint32_t chunk, const uint8_t *p, size_t len, olddict_t *od, chunkbuf_t *cb)
{
    const uint8_t *end = p + len;
    int old = chunk_is_old(p, len);
    if (chunk >= STORAGE_HARD_STACK_NODES / NODETAB_CHUNK || (old && od == NULL))
        return ERR_CORRUPT;
    enum chunk_state st = chunk_state(p, len);
    cb->unindexed = st != CHUNK_BUCKETED;
    cb->per_node = st == CHUNK_PER_NODE;
    p += st == CHUNK_BUCKETED ? 3 : st == CHUNK_UNINDEXED ? 2 : st == CHUNK_PER_NODE ? 1 : 0;
    uint32_t id = chunk_first(chunk);
    size_t nlocal = 0;
    cb->n = 0;
    while (p < end) {
        uint64_t delta, k, sym;
        if (!varint_read_u(&p, end, &delta) || delta == 0 || delta > id ||
            !varint_read_u(&p, end, &k) || id >= (chunk + 1) * NODETAB_CHUNK)
            return ERR_CORRUPT;
        if (old && k == 0) {
            size_t c = od->cap;
            if (GROW_FROM(od->sym, c, od->n + 1, SIZE_MAX / 16, 256) != 0) return ERR_NOMEM;
            od->cap = c;
        }
        int rc = old ? entry_sym(&p, end, k, od->sym, &od->n, &sym)
                     : entry_sym(&p, end, k, cb->local, &nlocal, &sym);
        if (rc != 0) return rc;
        cb->parent[cb->n] = id - (uint32_t)delta;
        cb->sym[cb->n++] = sym;
        id++;
    }
    return 0;
}

/* Appends a decoded chunk to t; its ids must continue t's. */
static int append_chunk(nodetab_t *t, uint32_t chunk, const chunkbuf_t *cb)
{
    if (chunk_first(chunk) != t->count) return ERR_CORRUPT;
    for (uint32_t i = 0; i < cb->n; i++) {
        int rc = tab_append(t, cb->parent[i], cb->sym[i], STORAGE_HARD_STACK_NODES);
        if (rc != 0) return rc;
    }
    return 0;
}

static int corrupt_chunk(const nodetab_t *t, uint32_t chunk, errmsg_t *em)
{
    return errmsg_set(em, ERR_CORRUPT, "node table %016llx: chunk %u is corrupt or out of order",
                      (unsigned long long)t->token, chunk);
}

/* Room for n ids at once: a load that knows the table's size grows its
 * arrays and edge map once instead of doubling (and rehashing) its way up. */
static int tab_reserve(nodetab_t *t, uint32_t n)
{
    size_t c1 = t->cap, c2 = t->cap;
    if (GROW_FROM(t->parent, c1, n, UINT32_MAX, 256) != 0 ||
        GROW_FROM(t->sym, c2, n, UINT32_MAX, 256) != 0)
        return ERR_NOMEM;
    t->cap = (uint32_t)c1;
    return edgemap_reserve(&t->edges, n) != 0 ? ERR_NOMEM : 0;
}

/* Reads the whole table from disk; ids must be dense 1..n in key order.
 * hint: the number of ids, when known (0: not). */
static int tab_load(storage_t *s, nodetab_t *t, uint32_t hint, errmsg_t *em)
{
    skey_t lo, hi;
    chunk_range(t, &lo, &hi);
    chunkbuf_t *cb = malloc(sizeof *cb);
    olddict_t od = {0};
    int rc = cb == NULL ? ERR_NOMEM : hint > 1 ? tab_reserve(t, hint) : 0;
    if (rc == 0) rc = tab_append(t, 0, SYM_ROOT, STORAGE_HARD_STACK_NODES);
    t->unindexed = 1; /* no chunk yet: a new table starts small */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n) continue;
        uint32_t chunk = (uint32_t)be64_get(k + kn - 8) & 0xffffffffu;
        if (chunk_is_old(v, vn)) t->old = 1;
        rc = chunk_parse(chunk, v, vn, &od, cb);
        if (rc == 0) rc = append_chunk(t, chunk, cb);
        if (rc == 0) { /* the last chunk's mark */
            t->unindexed = t->old || cb->unindexed;
            t->per_node = cb->per_node;
        }
        if (rc == ERR_CORRUPT) corrupt_chunk(t, chunk, em);
    }
    t->committed = t->count;
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(od.sym);
    free(cb);
    if (rc == 0) rc = storage_rocks_err(err, em, "load node table");
    return rc;
}

/* Bytes a whole table of n ids takes in memory (tab_bytes once loaded with
 * its size known, the symbol index aside). */
static size_t whole_bytes(uint32_t n)
{
    size_t slots = 16;
    while (slots < (size_t)n * 2)
        slots *= 2;
    return sizeof(nodetab_t) + (size_t)n * (sizeof(uint32_t) + sizeof(uint64_t)) +
           slots * sizeof(edgemap_slot_t);
}

/* Whether a writer that misses an indexed table of n ids reads it whole:
 * when it takes at most node_whole_read_percent of the cache's bound. One
 * sequential read of its chunks then costs less than the index entries
 * of a large push (a MultiGet of point lookups each), and the table stays
 * to serve the next pushes from memory. */
static int read_whole(const storage_t *s, uint32_t n)
{
    return whole_bytes(n) <= s->nodetabs.max_bytes / 100 * s->opts.node_whole_read_percent;
}

/* Whether a table of n ids keeps the edge index: from index_min_nodes on,
 * and by default (setting 0) only once a writer that misses it would stop
 * reading it whole (read_whole). Only a writer holding a partial table
 * reads the index, so a table read whole would pay an entry a node (most
 * of the write of a new large service) for lookups nobody makes. A table
 * that a smaller cache leaves unindexed past that size is read whole by its
 * next writer and indexed in that write's batch. */
static int wants_index(const storage_t *s, uint32_t n)
{
    return n >= index_min_nodes(s) && (s->opts.node_index_min_nodes != 0 || !read_whole(s, n));
}

/* Reads the last chunk only (a partial table), or the whole table when it
 * has one chunk, keeps no edge index (format 6, or a small table) or fits
 * the cache's share for a whole read (read_whole). */
static int tab_load_tail(storage_t *s, nodetab_t *t, errmsg_t *em)
{
    skey_t lo, hi;
    chunk_range(t, &lo, &hi);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    rocksdb_iter_seek_for_prev(it, (const char *)hi.b, hi.n);
    int whole = 1, rc = 0;
    uint32_t chunk = 0;
    chunkbuf_t *cb = NULL;
    if (rocksdb_iter_valid(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        chunk = kn == lo.n ? (uint32_t)be64_get(k + kn - 8) & 0xffffffffu : 0;
        if (chunk > 0 && !chunk_is_old(v, vn)) { /* the table's size, read whole or not */
            whole = chunk_unindexed(v, vn);
            cb = malloc(sizeof *cb);
            rc = cb == NULL ? ERR_NOMEM : chunk_parse(chunk, v, vn, NULL, cb);
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0) rc = storage_rocks_err(err, em, "load node table");
    uint32_t hint = rc == 0 && cb != NULL ? chunk_first(chunk) + cb->n : 0; /* its ids */
    if (rc == 0 && !whole && read_whole(s, hint)) {
        whole = 1;
        atomic_fetch_add(&s->counters.nodetab_whole_reads, 1);
    }
    if (rc == 0 && !whole) {
        t->base = t->count = chunk_first(chunk);
        rc = append_chunk(t, chunk, cb);
        t->committed = t->count;
    }
    free(cb);
    if (rc == ERR_CORRUPT) return corrupt_chunk(t, chunk, em);
    return rc == 0 && whole ? tab_load(s, t, hint, em) : rc;
}

/* Reads one record of a bucket value at *p: its parent, symbol and child
 * (parent < child), or, with *child 0, the mark that more children of
 * parent are in per-node entries; 0, or ERR_CORRUPT. */
static int bucket_record(const uint8_t **p, const uint8_t *end, uint32_t first, uint32_t *parent,
                         uint64_t *sym, uint32_t *child)
{
    uint64_t off, delta, x = 0;
    if (!varint_read_u(p, end, &off) || off >= NODETAB_BUCKET_PARENTS || end - *p < 8)
        return ERR_CORRUPT;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | (*p)[i];
    *p += 8;
    if (!varint_read_u(p, end, &delta) || delta > STORAGE_HARD_STACK_NODES ||
        (delta == 0 && x != 0))
        return ERR_CORRUPT;
    *parent = first + (uint32_t)off;
    *sym = x;
    *child = delta == 0 ? 0 : *parent + (uint32_t)delta;
    return 0;
}

/* Puts every record of bucket b's value (v, vn) into t's edges (and its
 * spill marks into t's spilled) and notes the bucket read; ERR_CORRUPT for
 * a record out of the bucket or past the ids committed, ERR_NOMEM. */
static int bucket_take(nodetab_t *t, uint32_t b, const char *v, size_t vn)
{
    const uint8_t *p = (const uint8_t *)v, *end = v != NULL ? p + vn : p; /* absent: none */
    uint32_t first = b << NODETAB_BUCKET_SHIFT, parent, child;
    uint64_t sym;
    while (p < end) {
        int rc = bucket_record(&p, end, first, &parent, &sym, &child);
        if (rc == 0 && child >= t->committed) rc = ERR_CORRUPT;
        if (rc == 0 && child == 0 && u64map_set(&t->spilled, parent, 1) != 0) rc = ERR_NOMEM;
        if (rc == 0 && child != 0 && edge_reserve(t) != 0) rc = ERR_NOMEM;
        if (rc != 0) return rc;
        if (child != 0) edge_set(t, parent, sym, child);
    }
    return u64map_set(&t->buckets, b, 1) != 0 ? ERR_NOMEM : 0;
}

/* One MultiGet of the index (buckets, or per-node entries): its keys and
 * what came back. */
typedef struct multiget {
    skey_t k[NODETAB_MULTIGET];
    const char *keys[NODETAB_MULTIGET];
    size_t lens[NODETAB_MULTIGET];
    rocksdb_pinnableslice_t *vals[NODETAB_MULTIGET];
    char *errs[NODETAB_MULTIGET];
} multiget_t;

static void multiget_run(storage_t *s, multiget_t *g, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        g->keys[j] = (const char *)g->k[j].b;
        g->lens[j] = g->k[j].n;
        g->vals[j] = NULL;
        g->errs[j] = NULL;
    }
    atomic_fetch_add(&s->counters.nodetab_index_reads, 1);
    rocksdb_batched_multi_get_cf(s->db, s->ropts, s->cf[CF_NODES], n, g->keys, g->lens, g->vals,
                                 g->errs, 0);
}

/* Value j of a MultiGet (NULL: absent) and its error, as 0 or ERR_IO. */
static int multiget_value(multiget_t *g, size_t j, const char **v, size_t *vn)
{
    *vn = 0;
    *v = g->vals[j] != NULL ? rocksdb_pinnableslice_value(g->vals[j], vn) : NULL;
    return storage_rocks_err(g->errs[j], NULL, "read stack-node index");
}

static void multiget_done(multiget_t *g, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (g->vals[j] != NULL) rocksdb_pinnableslice_destroy(g->vals[j]);
}

/* Reads the n (<= NODETAB_MULTIGET) buckets b[0..n) of the index into t's
 * edges in one MultiGet (an absent bucket has no records). */
static int read_buckets(storage_t *s, nodetab_t *t, multiget_t *g, size_t n, const uint32_t *b)
{
    for (size_t j = 0; j < n; j++)
        storage_key_node_bucket(&g->k[j], t->token, t->tenant, b[j]);
    multiget_run(s, g, n);
    int rc = 0;
    for (size_t j = 0; j < n; j++) {
        const char *v;
        size_t vn;
        int r = multiget_value(g, j, &v, &vn);
        if (r == 0 && rc == 0) r = bucket_take(t, b[j], v, vn);
        if (r < 0 && rc == 0) rc = r;
    }
    multiget_done(g, n);
    return rc;
}

/* Reads the per-node entries of the n (<= NODETAB_MULTIGET) pairs
 * (parent[at[j]], sym[at[j]]) of spilled parents into t's edges (an absent
 * one as EDGE_ABSENT: mapping a tree looks a new node up twice). */
static int read_spilled(storage_t *s, nodetab_t *t, multiget_t *g, size_t n, const uint32_t *at,
                        const uint32_t *parent, const uint64_t *sym)
{
    for (size_t j = 0; j < n; j++)
        storage_key_node_edge(&g->k[j], t->token, t->tenant, parent[at[j]], sym[at[j]]);
    multiget_run(s, g, n);
    int rc = 0;
    for (size_t j = 0; j < n; j++) {
        const char *v;
        size_t vn;
        uint64_t x = EDGE_ABSENT;
        uint32_t i = at[j];
        int r = multiget_value(g, j, &v, &vn);
        if (r == 0 && v != NULL) {
            const uint8_t *p = (const uint8_t *)v, *end = p + vn;
            if (!(varint_read_u(&p, end, &x) && p == end && x > parent[i] && x < t->committed))
                r = ERR_CORRUPT;
        }
        if (r == 0 && edge_reserve(t) != 0) r = ERR_NOMEM;
        if (r == 0) edge_set(t, parent[i], sym[i], (uint32_t)x);
        if (r < 0 && rc == 0) rc = r;
    }
    multiget_done(g, n);
    return rc;
}

/* What the disk may add to t's edges for parent: 0 nothing (t is whole,
 * parent is newer than the disk, or its bucket was read and it has no
 * spilled children), 1 its bucket is unread, 2 its children past the
 * bucket's are per-node entries. */
static int disk_may_have(const nodetab_t *t, uint32_t parent)
{
    uint32_t one;
    if (t->base == 0 || parent >= t->committed) return 0;
    if (!u64map_get(&t->buckets, parent >> NODETAB_BUCKET_SHIFT, &one)) return 1;
    return u64map_get(&t->spilled, parent, &one) ? 2 : 0;
}

/* The id of (parent, sym) in t's edges, or 0. */
static uint32_t held_child(const nodetab_t *t, uint32_t parent, uint64_t sym)
{
    uint32_t c = edgemap_get(&t->edges, parent, sym);
    return c == EDGE_ABSENT ? 0 : c;
}

/* Whether t's edges answer (parent, sym) without a read. */
static int known(const nodetab_t *t, uint32_t parent, uint64_t sym)
{
    return edgemap_get(&t->edges, parent, sym) != 0 || disk_may_have(t, parent) == 0;
}

/* Reads, for the n pairs, the buckets (step 1) or per-node entries of
 * spilled parents (step 2) that t's edges lack, in MultiGets. */
static int read_step(storage_t *s, nodetab_t *t, multiget_t *g, int step, size_t n,
                     const uint32_t *parent, const uint64_t *sym)
{
    uint32_t want[NODETAB_MULTIGET];
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (known(t, parent[i], sym[i]) || disk_may_have(t, parent[i]) != step) continue;
        uint32_t b = parent[i] >> NODETAB_BUCKET_SHIFT;
        size_t j = 0;
        while (step == 1 && j < m && want[j] != b) /* a tree's parents come in runs */
            j++;
        if (step == 1 && j < m) continue;
        want[m++] = step == 1 ? b : (uint32_t)i;
        if (m == NODETAB_MULTIGET) {
            rc = step == 1 ? read_buckets(s, t, g, m, want)
                           : read_spilled(s, t, g, m, want, parent, sym);
            m = 0;
        }
    }
    if (rc == 0 && m > 0)
        rc = step == 1 ? read_buckets(s, t, g, m, want)
                       : read_spilled(s, t, g, m, want, parent, sym);
    return rc;
}

int storage_nodetab_children(storage_t *s, nodetab_t *t, size_t n, const uint32_t *parent,
                             const uint64_t *sym, uint32_t *out)
{
    multiget_t *g = malloc(sizeof *g);
    int rc = g == NULL ? ERR_NOMEM : read_step(s, t, g, 1, n, parent, sym);
    if (rc == 0) rc = read_step(s, t, g, 2, n, parent, sym);
    free(g);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = rc == 0 ? held_child(t, parent[i], sym[i]) : 0;
        out[i] = c != 0 ? c : UINT32_MAX;
    }
    return rc;
}

/* 1 and *id when the table has node (parent, sym), 0 when not, or an error. */
static int find_child(storage_t *s, nodetab_t *t, uint32_t parent, uint64_t sym, uint32_t *id)
{
    uint32_t c = edgemap_get(&t->edges, parent, sym);
    /* a whole table knows all; a node created since the load has only
     * children created since (they are in memory) */
    if (c == 0 && disk_may_have(t, parent) != 0) {
        int rc = storage_nodetab_children(s, t, 1, &parent, &sym, &c);
        if (rc != 0) return rc;
    }
    if (c == 0 || c == EDGE_ABSENT) return 0;
    *id = c;
    return 1;
}

/* The symbol of node id, read from its chunk when t does not hold it. */
static int node_sym(storage_t *s, const nodetab_t *t, uint32_t id, uint64_t *sym)
{
    if (id >= t->base) {
        *sym = t->sym[id - t->base];
        return 0;
    }
    uint32_t chunk = id / NODETAB_CHUNK;
    skey_t k;
    storage_key_node(&k, t->token, t->tenant, chunk);
    char *err = NULL;
    size_t vn = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_NODES], (const char *)k.b, k.n, &vn, &err);
    int rc = storage_rocks_err(err, NULL, "read stack-node chunk");
    chunkbuf_t *cb = rc == 0 ? malloc(sizeof *cb) : NULL;
    if (rc == 0 && cb == NULL) rc = ERR_NOMEM;
    if (rc == 0) rc = v == NULL ? ERR_CORRUPT : chunk_parse(chunk, (uint8_t *)v, vn, NULL, cb);
    if (rc == 0 && id - chunk_first(chunk) >= cb->n) rc = ERR_CORRUPT;
    if (rc == 0) *sym = cb->sym[id - chunk_first(chunk)];
    free(cb);
    free(v);
    return rc;
}

#define NODETAB_BUCKETS 4096
/* Tables dropped whose last use the cache remembers (to know a table's
 * reuse distance when it comes back); all forgotten when full. */
#define NODETAB_GHOSTS 4096

static uint64_t key_of(uint64_t token, const char *tenant)
{
    return storage_mix64(token ^ hash_bytes64(tenant, strlen(tenant)));
}

static size_t bucket_of(uint64_t token, const char *tenant)
{
    return (size_t)(key_of(token, tenant) % NODETAB_BUCKETS);
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

void storage_nodetab_cache_stats(storage_t *s, uint64_t *bytes, uint64_t *max_bytes,
                                 uint64_t *evictions)
{
    nodetab_cache_t *c = &s->nodetabs;
    pthread_mutex_lock(&c->mu);
    *bytes = c->bytes;
    *max_bytes = c->max_bytes;
    *evictions = c->evictions;
    pthread_mutex_unlock(&c->mu);
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
    u64map_free(&c->ghosts);
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
    if (c->ghosts.len >= NODETAB_GHOSTS) u64map_clear(&c->ghosts);
    uint32_t last = (uint32_t)t->last == UINT32_MAX ? 0 : (uint32_t)t->last;
    if (u64map_set(&c->ghosts, key_of(t->token, t->tenant), last) != 0) {
        /* out of memory: the table counts as used once when it comes back */
    }
}

/* Counts a use of t (cache mutex held): a tick when the previous acquire was
 * of another table, and t's reuse distance when it was used before, in the
 * cache or before it was dropped (fresh: just created). A distance under a
 * quarter of the one known is a use within a burst (the pods of a service
 * pushing to its shards in turn) and leaves it: the distance that matters is
 * the one to the next burst. A table used that often for good is dropped
 * once, and its distance from the ghost is then the short one. */
static void note_use(nodetab_cache_t *c, nodetab_t *t, int fresh)
{
    uint64_t key = key_of(t->token, t->tenant);
    if (key != c->last_key) c->tick++;
    c->last_key = key;
    uint32_t ghost;
    uint64_t d = c->tick - t->last;
    if (fresh && u64map_get(&c->ghosts, key, &ghost))
        t->reuse = (uint32_t)((uint32_t)c->tick - ghost);
    else if (!fresh && d > 0 && (t->reuse == 0 || d >= t->reuse / 4))
        t->reuse = d;
    t->last = c->tick;
}

/* How much evicting t costs least (the larger, the sooner it goes): a table
 * used once, or not used for more than twice its reuse distance (its pattern
 * changed), goes first, the least recently used of them first; then the one
 * whose next use, predicted as its last plus its reuse distance, lies
 * furthest ahead. On a cycle over more tables than fit that is the most
 * recently used, so a stable subset stays resident and hits on every round
 * where least-recently-used eviction drops each table just before its reuse;
 * a table used often stays whatever the cycles around it. */
static uint64_t evict_rank(const nodetab_cache_t *c, const nodetab_t *t)
{
    uint64_t age = c->tick - t->last;
    if (t->reuse == 0 || age > 2 * t->reuse) return ((uint64_t)1 << 63) | age;
    return t->last + t->reuse; /* below 2^63: ticks are counted one at a time */
}

/* Frees unreferenced tables while over budget, by evict_rank (ties: the
 * least recently used), never the most recently used one. Mutex held. */
static void evict(nodetab_cache_t *c)
{
    nodetab_t *hot = LIST_ENTRY(list_first(&c->lru), nodetab_t, lru);
    while (c->bytes > c->max_bytes) {
        nodetab_t *victim = NULL;
        uint64_t best = 0;
        for (nodetab_t *t = LIST_ENTRY(list_last(&c->lru), nodetab_t, lru); t != NULL && t != hot;
             t = LIST_ENTRY(list_prev(&c->lru, &t->lru), nodetab_t, lru)) {
            uint64_t r = evict_rank(c, t);
            if (t->refs == 0 && (victim == NULL || r > best)) {
                victim = t;
                best = r;
            }
        }
        if (victim == NULL) return;
        c->evictions++;
        drop(c, victim);
        tab_free(victim);
    }
}

/* Loads t (lock held, count 0): whole, or for a writer what a push needs. */
static int tab_fill(storage_t *s, nodetab_t *t, int whole, errmsg_t *em)
{
    int rc = whole ? tab_load(s, t, 0, em) : tab_load_tail(s, t, em);
    /* counted: reads of a whole table; a writer's read of a table of one
     * chunk is its read of the last chunk */
    if (rc != 0 || t->base != 0 || t->count <= 1 || !(whole || t->unindexed)) return rc;
    atomic_fetch_add(&s->counters.nodetab_loads, 1);
    if (tab_bytes(t) > s->nodetabs.max_bytes)
        log_warn("storage",
                 "stack-node table %016llx of tenant %s takes %zu bytes, more than the node "
                 "cache holds (node-cache-bytes): read whole, it stays cached alone while it is "
                 "the most recently used; raise the setting",
                 (unsigned long long)t->token, t->tenant, tab_bytes(t));
    return 0;
}

static int acquire(storage_t *s, uint64_t token, const char *tenant, int whole, nodetab_t **out,
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
    } else {
        list_remove(&t->lru);
        list_push_front(&c->lru, &t->lru);
    }
    note_use(c, t, fresh);
    t->refs++;
    pthread_mutex_unlock(&c->mu);
    /* never under the cache's lock (a writer holding tables asks it for the
     * next); a new table is loaded by whichever holder locks it first (its
     * count is 0), the others wait here until it is */
    pthread_mutex_lock(&t->lock);
    /* between holders memory matches the disk: a partial table can be
     * dropped and read again whole */
    if (whole && t->base != 0) tab_clear(t);
    if (t->count != 0) atomic_fetch_add(&s->counters.nodetab_hits, 1);
    if (t->count == 0) { /* new, shed, or a previous load or batch failed */
        atomic_fetch_add(&s->counters.nodetab_misses, 1);
        int rc = tab_fill(s, t, whole, em);
        if (rc != 0) {
            storage_nodetab_release(s, t, 1);
            return rc;
        }
    }
    *out = t;
    return 0;
}

int storage_nodetab_acquire(storage_t *s, uint64_t token, const char *tenant, nodetab_t **out,
                            errmsg_t *em)
{
    return acquire(s, token, tenant, 1, out, em);
}

int storage_nodetab_acquire_append(storage_t *s, uint64_t token, const char *tenant,
                                   nodetab_t **out, errmsg_t *em)
{
    return acquire(s, token, tenant, 0, out, em);
}

uint64_t storage_node_generation(storage_t *s)
{
    return atomic_load(&s->nodetabs.gen);
}

void storage_nodetab_release(storage_t *s, nodetab_t *t, int failed)
{
    nodetab_cache_t *c = &s->nodetabs;
    if (failed) {
        /* ids assigned since the last commit may not be durable: forget all,
         * and let the next holder (count 0) reload what is on disk; ids
         * handed out meanwhile (or of a table deleted) are void */
        atomic_fetch_add(&c->gen, 1);
        tab_clear(t);
    } else {
        t->committed = t->count;
        if (t->staged) {
            t->unindexed = !t->staged_indexed;
            t->old = t->staged = t->per_node = 0;
        }
        /* a partial table is cheap to read again: never keep one past the bound */
        if (t->base != 0 && tab_bytes(t) > c->max_bytes) tab_shed(t);
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
    int rc = find_child(s, t, parent, sym, out);
    if (rc != 0) return rc < 0 ? rc : 0;
    if (wb == NULL) return ERR_NOT_FOUND;
    if (sym == SYM_OTHER) return storage_nodetab_other(s, t, parent, out);
    rc = tab_append(t, parent, sym, s->opts.max_stack_nodes);
    if (rc != 0) return rc;
    *out = t->count - 1;
    return 0;
}

int storage_nodetab_other(storage_t *s, nodetab_t *t, uint32_t parent, uint32_t *out)
{
    uint64_t psym = SYM_ROOT;
    int rc = parent != 0 ? node_sym(s, t, parent, &psym) : 0;
    if (rc != 0) return rc;
    if (psym == SYM_OTHER) {
        *out = parent;
        return 0;
    }
    uint32_t id = 0;
    rc = find_child(s, t, parent, SYM_OTHER, &id);
    if (rc != 0) {
        if (rc > 0) *out = id;
        return rc < 0 ? rc : 0;
    }
    uint32_t max = s->opts.max_stack_nodes, reserve = max + max / 64;
    if (reserve > STORAGE_HARD_STACK_NODES - 1) reserve = STORAGE_HARD_STACK_NODES - 1;
    rc = tab_append(t, parent, SYM_OTHER, reserve);
    if (rc == ERR_LIMIT && parent != 0) return storage_nodetab_other(s, t, 0, out);
    if (rc == ERR_LIMIT) /* the root's "other": one id past the reserve, made once */
        rc = tab_append(t, 0, SYM_OTHER, reserve + 1);
    if (rc != 0) return rc;
    *out = t->count - 1;
    return 0;
}

/* Puts chunk c (ids held in t) into wb: CHUNK_SELF_CONTAINED, CHUNK_MARK
 * (then another when indexed), then one entry per id (chunk_parse has the
 * layout); local is scratch. */
static int stage_chunk(storage_t *s, const nodetab_t *t, uint32_t c, int indexed,
                       rocksdb_writebatch_t *wb, buf_t *tmp, u64map_t *local)
{
    uint32_t lo = chunk_first(c), hi = (c + 1) * NODETAB_CHUNK, nlocal = 0;
    if (hi > t->count) hi = t->count;
    buf_reset(tmp);
    u64map_clear(local);
    /* an entry takes at most 14 bytes (a 5-byte delta, then a symbol's 9 or
     * an ordinal's 2): written in place, as a chunk is rewritten whole by
     * every push that adds to it */
    int rc = buf_reserve(tmp, 3 + (size_t)(hi - lo) * 14);
    if (rc != 0) return rc;
    uint8_t *e = tmp->data;
    *e++ = CHUNK_SELF_CONTAINED;
    *e++ = CHUNK_MARK;
    if (indexed) *e++ = CHUNK_MARK;
    for (uint32_t id = lo; id < hi; id++) {
        uint64_t sym = t->sym[id - t->base];
        e += varint_put_u(e, id - t->parent[id - t->base]);
        uint32_t o;
        rc = u64map_get_or_put(local, sym, nlocal, &o);
        if (rc < 0) return rc;
        if (rc == 1) { /* first use in the chunk: the symbol itself */
            nlocal++;
            *e++ = 0;
            for (int i = 0; i < 8; i++)
                *e++ = (uint8_t)(sym >> (8 * i));
        } else {
            e += varint_put_u(e, (uint64_t)o + 1);
        }
    }
    tmp->len = (size_t)(e - tmp->data);
    tmp->data[tmp->len] = 0;
    skey_t k;
    storage_key_node(&k, t->token, t->tenant, c);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_NODES], (const char *)k.b, k.n, (const char *)tmp->data,
                              tmp->len);
    return 0;
}

typedef struct edge_entry {
    uint64_t sym;
    uint32_t parent, id;
} edge_entry_t;

static int cmp_edge(const void *a, const void *b)
{
    const edge_entry_t *x = a, *y = b;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return x->sym < y->sym ? -1 : x->sym > y->sym;
}

/* Children a bucket value lists per parent (by offset in the bucket), and
 * its parents marked spilled. */
typedef struct bucket_fill {
    uint16_t listed[NODETAB_BUCKET_PARENTS];
    uint8_t spilled[NODETAB_BUCKET_PARENTS];
} bucket_fill_t;

static int bucket_count(const uint8_t *p, size_t n, uint32_t first, bucket_fill_t *f)
{
    const uint8_t *end = p + n;
    memset(f, 0, sizeof *f);
    while (p < end) {
        uint32_t parent, child;
        uint64_t sym;
        int rc = bucket_record(&p, end, first, &parent, &sym, &child);
        if (rc != 0) return rc;
        if (child == 0)
            f->spilled[parent - first] = 1;
        else if (f->listed[parent - first] < UINT16_MAX)
            f->listed[parent - first]++;
    }
    return 0;
}

/* Appends one record (child 0: the spill mark of parent, symbol 0) to out,
 * whose room was reserved: at most 5 + 8 + 5 bytes. */
static void record_put(buf_t *out, uint32_t first, uint32_t parent, uint64_t sym, uint32_t child)
{
    uint8_t *p = out->data + out->len;
    p += varint_put_u(p, parent - first);
    for (int j = 0; j < 8; j++)
        *p++ = (uint8_t)(sym >> (8 * j));
    p += varint_put_u(p, child == 0 ? 0 : child - parent);
    out->len = (size_t)(p - out->data);
    out->data[out->len] = 0; /* a buf's bytes end with a NUL past len */
}

/* Puts the per-node entry of e into wb. */
static void put_per_node(storage_t *s, const nodetab_t *t, const edge_entry_t *e,
                         rocksdb_writebatch_t *wb)
{
    skey_t k;
    uint8_t v[8];
    storage_key_node_edge(&k, t->token, t->tenant, e->parent, e->sym);
    size_t vn = varint_put_u(v, e->id);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_NODES], (const char *)k.b, k.n, (const char *)v, vn);
}

/* Puts the records of e[0..n) (their parents' bucket b, by parent and
 * symbol) into wb: after those on disk when the bucket may hold some (a
 * parent below from has children committed before), else alone. A
 * parent's children that would take it past NODETAB_BUCKET_FANOUT listed
 * go to per-node entries instead, and the bucket marks it spilled once. */
static int stage_bucket(storage_t *s, const nodetab_t *t, uint32_t b, uint32_t from,
                        const edge_entry_t *e, size_t n, rocksdb_writebatch_t *wb, buf_t *tmp,
                        bucket_fill_t *f)
{
    uint32_t first = b << NODETAB_BUCKET_SHIFT;
    skey_t k;
    storage_key_node_bucket(&k, t->token, t->tenant, b);
    buf_reset(tmp);
    int rc = 0;
    if (from > 1 && first < from) { /* only the lock holder writes it */
        char *err = NULL;
        size_t vn = 0;
        char *v =
            rocksdb_get_cf(s->db, s->ropts, s->cf[CF_NODES], (const char *)k.b, k.n, &vn, &err);
        rc = storage_rocks_err(err, NULL, "read stack-node index");
        if (rc == 0 && v != NULL) rc = buf_append(tmp, v, vn);
        free(v);
    }
    if (rc == 0) rc = buf_reserve(tmp, 18 * n); /* the records' room: data is never NULL */
    if (rc == 0) rc = bucket_count(tmp->data, tmp->len, first, f);
    if (rc != 0) return rc;
    size_t before = tmp->len;
    for (size_t i = 0, j; i < n; i = j) {
        uint32_t off = e[i].parent - first;
        for (j = i + 1; j < n && e[j].parent == e[i].parent; j++) {
        }
        if (!f->spilled[off] && f->listed[off] + (j - i) <= NODETAB_BUCKET_FANOUT) {
            for (size_t x = i; x < j; x++)
                record_put(tmp, first, e[x].parent, e[x].sym, e[x].id);
            f->listed[off] = (uint16_t)(f->listed[off] + (j - i));
            continue;
        }
        for (size_t x = i; x < j; x++)
            put_per_node(s, t, &e[x], wb);
        if (!f->spilled[off]) record_put(tmp, first, e[i].parent, 0, 0);
        f->spilled[off] = 1;
    }
    if (tmp->len > before)
        rocksdb_writebatch_put_cf(wb, s->cf[CF_NODES], (const char *)k.b, k.n,
                                  (const char *)tmp->data, tmp->len);
    return 0;
}

/* Puts the index records of ids [from, count) into wb, a bucket value
 * each (from 1: every bucket written anew). One value per bucket of
 * parents instead of one entry per node: a large push's index is a few
 * hundred puts, not one memtable insert, flush and compaction step per
 * node, which was most of what a push of new stacks cost the store. */
static int stage_edges(storage_t *s, const nodetab_t *t, uint32_t from, rocksdb_writebatch_t *wb,
                       buf_t *tmp)
{
    size_t n = t->count - from;
    edge_entry_t *e = malloc(n * sizeof *e);
    if (e == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        e[i] = (edge_entry_t){t->sym[from + i - t->base], t->parent[from + i - t->base],
                              (uint32_t)(from + i)};
    qsort(e, n, sizeof *e, cmp_edge);
    bucket_fill_t *f = malloc(sizeof *f);
    int rc = f == NULL ? ERR_NOMEM : 0;
    for (size_t i = 0, j; rc == 0 && i < n; i = j) {
        uint32_t b = e[i].parent >> NODETAB_BUCKET_SHIFT;
        for (j = i + 1; j < n && e[j].parent >> NODETAB_BUCKET_SHIFT == b; j++) {
        }
        rc = stage_bucket(s, t, b, from, e + i, j - i, wb, tmp, f);
    }
    free(f);
    free(e);
    return rc;
}

/* Deletes the per-node index entries of formats 7-18 in wb (before the
 * batch puts any of its own). */
static void drop_per_node(storage_t *s, const nodetab_t *t, rocksdb_writebatch_t *wb)
{
    skey_t lo, hi;
    tag_range(t, NODETAB_EDGE_TAG, &lo, &hi);
    rocksdb_writebatch_delete_range_cf(wb, s->cf[CF_NODES], (const char *)lo.b, lo.n,
                                       (const char *)hi.b, hi.n);
}

int storage_nodetab_stage(storage_t *s, nodetab_t *t, rocksdb_writebatch_t *wb, buf_t *tmp)
{
    /* a small table grown to the threshold: every id indexed now, in this
     * batch, with the mark in its last chunk (a format-6 table: every chunk
     * rewritten self-contained too) */
    int index_all = t->unindexed && wants_index(s, t->count);
    int rewrite = t->old || index_all || t->per_node; /* the table's state changes */
    if (t->count <= 1 || (t->count <= t->committed && !rewrite)) return 0;
    uint32_t last = (t->count - 1) / NODETAB_CHUNK;
    uint32_t first_chunk = t->old ? 0 : t->committed / NODETAB_CHUNK;
    if (first_chunk > last) first_chunk = last;                  /* no new id: the mark alone */
    if (chunk_first(first_chunk) < t->base) return ERR_INTERNAL; /* held ids cover them */
    int indexed = !t->unindexed || index_all;
    u64map_t local = {0};
    int rc = u64map_init(&local, NODETAB_CHUNK);
    for (uint32_t c = first_chunk; rc == 0 && c <= last; c++)
        rc = stage_chunk(s, t, c, indexed, wb, tmp, &local);
    u64map_free(&local);
    uint32_t from = index_all ? 1 : t->committed;
    if (rc == 0 && t->per_node) drop_per_node(s, t, wb);
    if (rc == 0 && indexed && from < t->count) rc = stage_edges(s, t, from, wb, tmp);
    if (rc == 0 && rewrite) {
        t->staged = 1;
        t->staged_indexed = indexed;
    }
    return rc;
}

void storage_nodetab_prefetch(const nodetab_t *t, uint32_t parent, uint64_t sym)
{
    edgemap_prefetch(&t->edges, parent, sym);
}

uint32_t storage_nodetab_count(const nodetab_t *t)
{
    return t->count;
}

int storage_nodetab_whole(const nodetab_t *t)
{
    return t->base == 0;
}

uint32_t storage_nodetab_parent(const nodetab_t *t, uint32_t id)
{
    return t->parent[id - t->base];
}

uint64_t storage_nodetab_sym(const nodetab_t *t, uint32_t id)
{
    return t->sym[id - t->base];
}

const uint32_t *storage_nodetab_parents(const nodetab_t *t)
{
    ASSERT_ALWAYS(t->base == 0); /* read through storage_nodetab_acquire: whole */
    return t->parent;
}

const uint64_t *storage_nodetab_syms(const nodetab_t *t)
{
    ASSERT_ALWAYS(t->base == 0);
    return t->sym;
}

int storage_nodetab_symnos(nodetab_t *t, const uint32_t **symno, uint32_t *nsyms)
{
    ASSERT_ALWAYS(t->base == 0); /* whole: every id's symbol is in memory */
    if (t->numbered < t->count) {
        size_t cap = t->symno_cap;
        if (GROW_FROM(t->symno, cap, t->count, UINT32_MAX, 256) != 0) return ERR_NOMEM;
        t->symno_cap = (uint32_t)cap;
        /* the map grows with the distinct symbols (far fewer than ids);
         * ids numbered stay so when it fails midway */
        for (; t->numbered < t->count; t->numbered++) {
            uint32_t id = t->numbered, next = (uint32_t)t->symnums.len;
            if (u64map_get_or_put(&t->symnums, t->sym[id], next, &t->symno[id]) < 0)
                return ERR_NOMEM;
        }
    }
    *symno = t->symno;
    *nsyms = (uint32_t)t->symnums.len;
    return 0;
}

uint64_t storage_nodetab_token(const nodetab_t *t)
{
    return t->token;
}

/* storage_nodetab_index_each over the keys of one tag. */
static int index_each_tag(storage_t *s, const nodetab_t *key, uint8_t tag, storage_edge_fn fn,
                          void *ctx)
{
    skey_t lo, hi;
    tag_range(key, tag, &lo, &hi);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *p = (const uint8_t *)rocksdb_iter_value(it, &vn), *end = p + vn;
        uint32_t parent, child;
        uint64_t sym, x;
        if (tag == NODETAB_EDGE_TAG) { /* parent u32 BE, sym u64 BE; value uvarint id */
            rc = kn == lo.n + 12 && varint_read_u(&p, end, &x) && p == end ? 0 : ERR_CORRUPT;
            if (rc == 0)
                rc = fn(ctx, (uint32_t)(be64_get(k + kn - 16) & 0xffffffffu), be64_get(k + kn - 8),
                        (uint32_t)x);
            continue;
        }
        uint32_t b = (uint32_t)be64_get(k + kn - 8) & 0xffffffffu;
        if (kn != lo.n + 4) rc = ERR_CORRUPT;
        while (rc == 0 && p < end) {
            rc = bucket_record(&p, end, b << NODETAB_BUCKET_SHIFT, &parent, &sym, &child);
            if (rc == 0 && child != 0) rc = fn(ctx, parent, sym, child);
        }
    }
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    if (rc == 0) rc = storage_rocks_err(err, NULL, "read stack-node index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int storage_nodetab_index_each(storage_t *s, uint64_t token, const char *tenant, storage_edge_fn fn,
                               void *ctx)
{
    nodetab_t key = {.token = token};
    snprintf(key.tenant, sizeof key.tenant, "%s", tenant);
    int rc = index_each_tag(s, &key, NODETAB_BUCKET_TAG, fn, ctx);
    return rc == 0 ? index_each_tag(s, &key, NODETAB_EDGE_TAG, fn, ctx) : rc;
}
