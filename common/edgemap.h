/* edgemap.h — the (parent node, symbol) -> child node hash map of a tree.
 *
 * Owns finding a call-tree edge: the calltree (common/calltree.c) and the
 * stored node tables (storage/nodetab.c) both ask "which child of node
 * `parent` has symbol `sym`?" on the ingest and query hot paths. Its key is a
 * (u32, u64) pair, hence a map of its own next to u64map. Linear probing over
 * a power-of-two table kept at most half full; a slot carries its key, so a
 * lookup touches one cache line. Child ids are never 0 (the root is nobody's
 * child), so 0 marks an empty slot. Lookups are static inline.
 *
 * A zeroed edgemap_t is empty. The caller owns the struct and frees the
 * table with edgemap_free(). Not thread-safe: concurrent readers are fine
 * only while nobody writes.
 */
#ifndef FLAMEDB_COMMON_EDGEMAP_H
#define FLAMEDB_COMMON_EDGEMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct edgemap_slot {
    uint64_t sym;
    uint32_t parent;
    uint32_t child; /* 0 = empty */
} edgemap_slot_t;

typedef struct edgemap {
    edgemap_slot_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
} edgemap_t;

void edgemap_free(edgemap_t *m);
/* Makes dst a copy of src's table (dst's old table is freed). ERR_NOMEM
 * (dst unchanged). */
int edgemap_copy(edgemap_t *dst, const edgemap_t *src);
/* Forgets every edge, keeping the table. */
void edgemap_clear(edgemap_t *m);
/* The table growth behind edgemap_reserve (out of line; rehashes). */
int edgemap_grow_(edgemap_t *m, size_t n);
/* Makes room for n edges in all (at least 2n slots), rehashing when it
 * grows; inserting up to n - len edges afterwards cannot fail. ERR_NOMEM.
 * The check is inline: callers run it once per insert. */
static inline int edgemap_reserve(edgemap_t *m, size_t n)
{
    return n * 2 <= m->cap ? 0 : edgemap_grow_(m, n);
}

static inline size_t edgemap_hash_(const edgemap_t *m, uint32_t parent, uint64_t sym)
{
    uint64_t h = (sym ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    return (size_t)(h >> 29) & (m->cap - 1);
}

/* The slot holding (parent, sym), or the empty slot where it would go.
 * Requires cap > 0. */
static inline size_t edgemap_probe(const edgemap_t *m, uint32_t parent, uint64_t sym)
{
    size_t i = edgemap_hash_(m, parent, sym);
    while (m->slots[i].child != 0 && (m->slots[i].sym != sym || m->slots[i].parent != parent))
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* The child of parent with symbol sym, or 0. */
static inline uint32_t edgemap_get(const edgemap_t *m, uint32_t parent, uint64_t sym)
{
    return m->cap == 0 ? 0 : m->slots[edgemap_probe(m, parent, sym)].child;
}

/* Fills the empty slot i found by edgemap_probe (child != 0). */
static inline void edgemap_set_at(edgemap_t *m, size_t i, uint32_t parent, uint64_t sym,
                                  uint32_t child)
{
    m->slots[i] = (edgemap_slot_t){sym, parent, child};
    m->len++;
}

/* Inserts an absent edge; there must be room (edgemap_reserve). */
static inline void edgemap_put(edgemap_t *m, uint32_t parent, uint64_t sym, uint32_t child)
{
    edgemap_set_at(m, edgemap_probe(m, parent, sym), parent, sym, child);
}

/* Starts loading the slot of (parent, sym) into the cache. */
static inline void edgemap_prefetch(const edgemap_t *m, uint32_t parent, uint64_t sym)
{
    if (m->cap != 0) __builtin_prefetch(&m->slots[edgemap_hash_(m, parent, sym)]);
}

static inline size_t edgemap_bytes(const edgemap_t *m)
{
    return m->cap * sizeof *m->slots;
}

#endif
