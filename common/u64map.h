/* u64map.h — the u64 -> u32 open-addressing hash map.
 *
 * Owns mapping 64-bit ids (symbol ids, series ids, pprof ids, hashes) to
 * 32-bit values (almost always an index into the caller's own array). Linear
 * probing over a power-of-two table kept at most half full; a slot holds its
 * key and value together, so a probe touches one cache line. Keys are any
 * u64 (0 included), values any u32 but UINT32_MAX, which marks an empty slot.
 * Lookups are static inline (ingest and query hot paths). No deletion: a map
 * lives as long as the thing it indexes, or is cleared whole.
 *
 * A zeroed u64map_t is a valid empty map; u64map_init() only presizes it. The
 * caller owns the struct and frees its tables with u64map_free(). Not
 * thread-safe: concurrent readers are fine only while nobody writes.
 */
#ifndef FLAMEDB_COMMON_U64MAP_H
#define FLAMEDB_COMMON_U64MAP_H

#include <stddef.h>
#include <stdint.h>

#define U64MAP_EMPTY UINT32_MAX

typedef struct u64map_slot {
    uint64_t key;
    uint32_t val; /* U64MAP_EMPTY marks an empty slot */
} u64map_slot_t;

typedef struct u64map {
    u64map_slot_t *slots;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t len;
} u64map_t;

/* Sizes m (whose old contents are not freed) for `expected` keys without
 * growing. ERR_NOMEM leaves m a valid empty map. */
int u64map_init(u64map_t *m, size_t expected);
void u64map_free(u64map_t *m);
/* Forgets every key, keeping the tables. */
void u64map_clear(u64map_t *m);
/* Bytes of the tables (for memory accounting). */
static inline size_t u64map_bytes(const u64map_t *m)
{
    return m->cap * sizeof *m->slots;
}

static inline size_t u64map_slot_(const u64map_t *m, uint64_t k)
{
    k ^= k >> 33; /* murmur3's finaliser: ids that differ in any bit spread */
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (m->cap - 1);
}

/* Returns 1 and sets *val when key is present, else 0. */
static inline int u64map_get(const u64map_t *m, uint64_t key, uint32_t *val)
{
    if (m->cap == 0) return 0;
    for (size_t i = u64map_slot_(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].val == U64MAP_EMPTY) return 0;
        if (m->slots[i].key == key) {
            *val = m->slots[i].val;
            return 1;
        }
    }
}

/* Iterating (any order): for (size_t i = 0; i < m->cap; i++) if
 * (u64map_used(m, i)) ... m->slots[i].key, m->slots[i].val. */
static inline int u64map_used(const u64map_t *m, size_t i)
{
    return m->slots[i].val != U64MAP_EMPTY;
}

/* Starts loading key's slot into the cache ahead of a u64map_get. */
static inline void u64map_prefetch(const u64map_t *m, uint64_t key)
{
    if (m->cap != 0) __builtin_prefetch(&m->slots[u64map_slot_(m, key)]);
}

/* The table growth behind u64map_reserve (out of line; rehashes). */
int u64map_grow_(u64map_t *m, size_t n);
/* Makes room for n keys in all, so that inserting up to n - len more keys
 * cannot fail. ERR_NOMEM. The check is inline: it runs once per insert. */
static inline int u64map_reserve(u64map_t *m, size_t n)
{
    return m->cap != 0 && n * 2 <= m->cap ? 0 : u64map_grow_(m, n);
}
/* Bytes of the table u64map_init(m, expected) allocates, and of the one
 * u64map_reserve(m, n) would (the old one is freed after its keys move
 * over; 0 when it has room). */
static inline size_t u64map_init_bytes(size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap <<= 1;
    return cap * sizeof(u64map_slot_t);
}

static inline size_t u64map_reserve_bytes(const u64map_t *m, size_t n)
{
    if (m->cap != 0 && n * 2 <= m->cap) return 0;
    return u64map_init_bytes(n > 8 ? n * 2 : 16);
}
/* Inserts key -> val; key must be absent (check with u64map_get). ERR_NOMEM. */
int u64map_put(u64map_t *m, uint64_t key, uint32_t val);
/* Looks key up and, when absent, inserts key -> val. Returns 1 when inserted,
 * 0 when present (*out = the value found, or val when inserted), or ERR_NOMEM. */
int u64map_get_or_put(u64map_t *m, uint64_t key, uint32_t val, uint32_t *out);
/* Sets key -> val, inserting key or replacing its value. ERR_NOMEM. */
static inline int u64map_set(u64map_t *m, uint64_t key, uint32_t val)
{
    uint32_t old;
    int rc = u64map_get_or_put(m, key, val, &old);
    if (rc != 0) return rc < 0 ? rc : 0;
    for (size_t i = u64map_slot_(m, key);; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].val != U64MAP_EMPTY && m->slots[i].key == key) {
            m->slots[i].val = val;
            return 0;
        }
}

#endif
