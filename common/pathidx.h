/* pathidx.h — an index of a tree's nodes by (parent, symbol).
 *
 * The tree is its owner's: node 0 the root, every other node x the pair
 * (parent[x], sym[x]), no two nodes the same pair. The index maps a pair to
 * its node by open addressing (linear probing) over a power-of-two slot
 * array; a slot of 0 is empty (the root is nobody's child). A shard union
 * (storage/union.c) and a coordinator's id-space scope
 * (node/cluster/scatter_spaces.c) number their nodes through one.
 *
 * Owns its slots only (pathidx_free); the arrays are passed to each call,
 * so their owner may grow (move) them between calls.
 */
#ifndef FLAMEDB_COMMON_PATHIDX_H
#define FLAMEDB_COMMON_PATHIDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct pathidx {
    uint32_t *slot; /* a node, or 0: empty */
    size_t nslot;   /* 0, or a power of two, at least twice the nodes indexed */
} pathidx_t;

static inline size_t pathidx_home(const pathidx_t *x, uint32_t p, uint64_t sym)
{
    uint64_t h = (sym ^ ((uint64_t)p * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    return (size_t)(h >> 29) & (x->nslot - 1);
}

/* The slot of node (p, sym), or the empty one where it would go (x has
 * room: pathidx_reserve). */
static inline size_t pathidx_find(const pathidx_t *x, const uint32_t *parent, const uint64_t *sym,
                                  uint32_t p, uint64_t s)
{
    size_t i = pathidx_home(x, p, s);
    for (uint32_t n; (n = x->slot[i]) != 0 && (sym[n] != s || parent[n] != p);)
        i = (i + 1) & (x->nslot - 1);
    return i;
}

/* pathidx_reserve's growth: at least 2n slots (first_slots at the least),
 * filled again with nodes 1..count-1. ERR_NOMEM (x unchanged). */
int pathidx_grow(pathidx_t *x, const uint32_t *parent, const uint64_t *sym, size_t count, size_t n,
                 size_t first_slots);

/* Room for n nodes (at least 2n slots): grown when it is not (a check
 * inline, as it runs once per node added). ERR_NOMEM (x unchanged). */
static inline int pathidx_reserve(pathidx_t *x, const uint32_t *parent, const uint64_t *sym,
                                  size_t count, size_t n, size_t first_slots)
{
    return 2 * n <= x->nslot ? 0 : pathidx_grow(x, parent, sym, count, n, first_slots);
}
/* Empties x, its room kept. */
void pathidx_clear(pathidx_t *x);
void pathidx_free(pathidx_t *x);
static inline size_t pathidx_bytes(const pathidx_t *x)
{
    return x->nslot * sizeof *x->slot;
}

#endif
