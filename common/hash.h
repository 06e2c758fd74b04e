/* hash.h — the stable hashes that name things across nodes.
 *
 * All content addressing in flamedb uses XXH3 (libxxhash) with seed 0. These
 * values are persisted in keys and exchanged between nodes, so changing any
 * function here changes the storage format (see docs/storage-format.md and the
 * golden vectors in tests/unit/test_common_base.c). No state, thread-safe.
 */
#ifndef FLAMEDB_COMMON_HASH_H
#define FLAMEDB_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Reserved symbol ids: the root of every call tree and the `other` node that
 * maxNodes truncation folds small nodes into. hash_symbol never returns them. */
#define SYM_ROOT ((uint64_t)0)
#define SYM_OTHER ((uint64_t)1)

uint64_t hash_bytes64(const void *p, size_t n);
/* 128-bit hash, written big-endian into out[16]. */
void hash_bytes128(const void *p, size_t n, uint8_t out[16]);

/* Symbol id of a frame: XXH3-64 over name, a 0 byte, file. Values 0 and 1 are
 * remapped to 2 and 3 so they stay reserved. */
uint64_t hash_symbol(const char *name, size_t name_len, const char *file, size_t file_len);

#endif
