/* arena.c — the bump allocator (see arena.h). */
#include "common/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    arena_chunk_t *next;
    size_t cap, used;
    max_align_t data[];
};

void arena_init(arena_t *a, size_t chunk_size, size_t max)
{
    *a = (arena_t){.chunk_size = chunk_size > 0 ? chunk_size : 4096, .max = max};
}

void arena_free(arena_t *a)
{
    for (arena_chunk_t *c = a->head, *n; c != NULL; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
    a->total = 0;
}

static void *take(arena_t *a, size_t n, size_t align)
{
    arena_chunk_t *c = a->head;
    size_t at = c != NULL ? (c->used + align - 1) & ~(align - 1) : 0;
    if (c == NULL || at > c->cap || c->cap - at < n) {
        size_t cap = n > a->chunk_size ? n : a->chunk_size;
        if (cap > a->max || a->total > a->max - cap) {
            a->over = true;
            return NULL;
        }
        if (cap > SIZE_MAX - sizeof *c) return NULL;
        c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += cap;
        at = 0;
    }
    c->used = at + n;
    return (char *)c->data + at;
}

void *arena_alloc(arena_t *a, size_t n)
{
    if (n > SIZE_MAX - alignof(max_align_t)) return NULL;
    return take(a, n, alignof(max_align_t));
}

void *arena_zalloc(arena_t *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p != NULL && n > 0) memset(p, 0, n);
    return p;
}

void *arena_memdup(arena_t *a, const void *p, size_t n)
{
    void *d = arena_alloc(a, n ? n : 1);
    if (d != NULL && n > 0) memcpy(d, p, n);
    return d;
}

size_t arena_room(const arena_t *a)
{
    return a->head != NULL ? a->head->cap - a->head->used : 0;
}

void *arena_alloc_packed(arena_t *a, size_t n)
{
    return take(a, n, 1);
}

char *arena_strndup(arena_t *a, const char *p, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *d = take(a, n + 1, 1);
    if (d == NULL) return NULL;
    if (n > 0) memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

void *arena_cb_alloc(void *arena, size_t n)
{
    return arena_alloc(arena, n);
}

void arena_cb_free(void *arena, void *p)
{
    (void)arena;
    (void)p;
}
