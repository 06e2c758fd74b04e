/* arena.h — a bump allocator: many small allocations, one free.
 *
 * Owns memory that lives and dies together (decoded protobuf messages,
 * interned strings). Allocations come from chunks of at least chunk_size
 * bytes that never move, so returned pointers stay valid until arena_free();
 * a request larger than a chunk gets a chunk of its own. The arena never
 * holds more than max bytes of chunks: past it an allocation returns NULL and
 * sets `over`, so a caller can tell "over the limit" (bounded input) from
 * "out of memory". Individual allocations are never freed.
 *
 * The caller owns the arena_t (a small value; zero-initialised plus
 * arena_init) and frees its chunks with arena_free(). Not thread-safe.
 */
#ifndef FLAMEDB_COMMON_ARENA_H
#define FLAMEDB_COMMON_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#define ARENA_UNLIMITED ((size_t)-1)

typedef struct arena_chunk arena_chunk_t;

typedef struct arena {
    arena_chunk_t *head;
    size_t chunk_size; /* minimum chunk payload */
    size_t total;      /* bytes of chunks held */
    size_t max;        /* bound on total */
    bool over;         /* an allocation failed because of max */
} arena_t;

void arena_init(arena_t *a, size_t chunk_size, size_t max);
/* Frees every chunk; the arena is empty (and reusable) afterwards. */
void arena_free(arena_t *a);
/* n bytes aligned for any type (max_align_t); NULL when out of memory or over max. */
void *arena_alloc(arena_t *a, size_t n);
/* arena_alloc, zero-filled. */
void *arena_zalloc(arena_t *a, size_t n);
/* An aligned copy of p[0..n) (n may be 0: a valid unique pointer). */
void *arena_memdup(arena_t *a, const void *p, size_t n);
/* n bytes with no alignment (packed strings). */
void *arena_alloc_packed(arena_t *a, size_t n);
/* Bytes the current chunk still has for arena_alloc_packed: a larger
 * allocation starts a new chunk (of max(n, chunk_size) bytes). */
size_t arena_room(const arena_t *a);
/* A NUL-terminated copy of p[0..n) (p may be NULL when n is 0). */
char *arena_strndup(arena_t *a, const char *p, size_t n);

/* Callbacks of the shape allocator interfaces take (protobuf-c's
 * ProtobufCAllocator: {arena_cb_alloc, arena_cb_free, arena}): allocation
 * from the arena passed as ctx; freeing does nothing (arena_free does). */
void *arena_cb_alloc(void *arena, size_t n);
void arena_cb_free(void *arena, void *p);

#endif
