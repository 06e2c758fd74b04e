/* strmap.h — string -> dense index (0, 1, 2, ... in insertion order).
 *
 * Owns interning strings into small integers: a name table for an encoder
 * (flamebearer names, pprof string tables, label values, the client's top
 * table). Open addressing over xxHash64 of the bytes; the strings themselves
 * are borrowed (they must outlive the map) and kept in insertion order in
 * strs/lens, which callers read directly. The caller owns the struct and
 * frees the map's arrays (not the strings) with strmap_free(). Not
 * thread-safe.
 */
#ifndef FLAMEDB_COMMON_STRMAP_H
#define FLAMEDB_COMMON_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap {
    size_t n, cap;     /* entries used / slots (power of two) */
    uint32_t *slots;   /* index + 1, 0 = empty */
    const char **strs; /* borrowed strings, in insertion order */
    size_t *lens;
    size_t strs_cap;
} strmap_t;

void strmap_init(strmap_t *m);
void strmap_free(strmap_t *m);
/* Index of s (borrowed: must outlive the map), adding it when new. ERR_NOMEM. */
int strmap_intern(strmap_t *m, const char *s, size_t len, uint32_t *idx);
/* Room for n strings in all, made at once: interning up to n then neither
 * grows nor rehashes the map. ERR_NOMEM (the map is unchanged but for its
 * room). */
int strmap_reserve(strmap_t *m, size_t n);
/* 1 and its index when s is in the map, else 0. */
int strmap_find(const strmap_t *m, const char *s, size_t len, uint32_t *idx);

#endif
