/* sampler_ring.c — bounded multi-producer single-consumer ring of stacks. */
#include "client/sampler_ring.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct ring_slot {
    _Atomic size_t seq; /* == pos: free for pos; == pos + 1: holds pos's stack */
    uint32_t depth;
    uint32_t weight;
} ring_slot_t;

struct flamedb_sampler_ring {
    ring_slot_t *slots;
    uintptr_t *frames; /* capacity * max_depth, slot i at i * max_depth */
    size_t mask, max_depth;
    _Atomic size_t head; /* next position a producer claims */
    size_t tail;         /* next position the consumer reads */
    _Atomic uint64_t dropped;
};

flamedb_sampler_ring_t *flamedb_sampler_ring_new(size_t capacity, size_t max_depth)
{
    if (capacity == 0 || max_depth == 0 || capacity > ((size_t)1 << 24)) return NULL;
    size_t cap = 1;
    while (cap < capacity)
        cap <<= 1;
    flamedb_sampler_ring_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->slots = calloc(cap, sizeof *r->slots);
    r->frames = calloc(cap * max_depth, sizeof *r->frames);
    if (!r->slots || !r->frames) {
        flamedb_sampler_ring_free(r);
        return NULL;
    }
    r->mask = cap - 1;
    r->max_depth = max_depth;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&r->slots[i].seq, i);
    atomic_init(&r->head, 0);
    atomic_init(&r->dropped, 0);
    return r;
}

void flamedb_sampler_ring_free(flamedb_sampler_ring_t *r)
{
    if (!r) return;
    free(r->slots);
    free(r->frames);
    free(r);
}

size_t flamedb_sampler_ring_capacity(const flamedb_sampler_ring_t *r)
{
    return r->mask + 1;
}
size_t flamedb_sampler_ring_max_depth(const flamedb_sampler_ring_t *r)
{
    return r->max_depth;
}

int flamedb_sampler_ring_push(flamedb_sampler_ring_t *r, const uintptr_t *frames, size_t depth,
                              uint32_t weight)
{
    size_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    ring_slot_t *s;
    for (;;) {
        s = &r->slots[pos & r->mask];
        size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        intptr_t diff = (intptr_t)seq - (intptr_t)pos;
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (diff < 0) { /* the consumer has not freed this slot yet: full */
            atomic_fetch_add_explicit(&r->dropped, weight, memory_order_relaxed);
            return -1;
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
    if (depth > r->max_depth) depth = r->max_depth;
    uintptr_t *dst = r->frames + (pos & r->mask) * r->max_depth;
    for (size_t i = 0; i < depth; i++)
        dst[i] = frames[i]; /* no memcpy: signal-safe by sight */
    s->depth = (uint32_t)depth;
    s->weight = weight;
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    return 0;
}

int flamedb_sampler_ring_pop(flamedb_sampler_ring_t *r, uintptr_t *frames, size_t *depth,
                             uint32_t *weight)
{
    size_t pos = r->tail;
    ring_slot_t *s = &r->slots[pos & r->mask];
    if (atomic_load_explicit(&s->seq, memory_order_acquire) != pos + 1) return 0;
    *depth = s->depth;
    *weight = s->weight;
    memcpy(frames, r->frames + (pos & r->mask) * r->max_depth, s->depth * sizeof *frames);
    atomic_store_explicit(&s->seq, pos + r->mask + 1, memory_order_release);
    r->tail = pos + 1;
    return 1;
}

uint64_t flamedb_sampler_ring_dropped(const flamedb_sampler_ring_t *r)
{
    return atomic_load_explicit(&((flamedb_sampler_ring_t *)r)->dropped, memory_order_relaxed);
}
