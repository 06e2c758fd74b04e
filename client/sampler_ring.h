/* sampler_ring.h — the bounded lock-free stack ring of the in-process
 * sampler (flamedb_sampler.h).
 *
 * Many producers (the SIGPROF handler, in whichever thread the signal lands)
 * and one consumer (the sampler's thread). A producer never blocks, never
 * allocates and calls nothing but C11 atomics, so it may run in a signal
 * handler; when every slot is taken the stack is dropped and counted. The
 * slots and their frame arrays are allocated once by flamedb_sampler_ring_new().
 * (A bounded MPMC queue with one sequence number per slot.)
 *
 * Ownership: flamedb_sampler_ring_new() returns a ring owned by the caller, freed
 * with flamedb_sampler_ring_free() once no producer can still run. A popped stack is
 * copied into the caller's array.
 */
#ifndef FLAMEDB_CLIENT_SAMPLER_RING_H
#define FLAMEDB_CLIENT_SAMPLER_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct flamedb_sampler_ring flamedb_sampler_ring_t;

/* A ring of at least capacity slots (rounded up to a power of two) of at
 * most max_depth frames each. NULL when out of memory or an argument is 0. */
flamedb_sampler_ring_t *flamedb_sampler_ring_new(size_t capacity, size_t max_depth);
void flamedb_sampler_ring_free(flamedb_sampler_ring_t *r);
size_t flamedb_sampler_ring_capacity(const flamedb_sampler_ring_t *r);
size_t flamedb_sampler_ring_max_depth(const flamedb_sampler_ring_t *r);

/* Producer side, async-signal-safe. Copies depth frames (cut to max_depth)
 * of weight samples. Returns 0, or -1 when the ring was full (the stack is
 * dropped and counted in flamedb_sampler_ring_dropped()). */
int flamedb_sampler_ring_push(flamedb_sampler_ring_t *r, const uintptr_t *frames, size_t depth,
                              uint32_t weight);

/* Consumer side, one thread only. Copies the oldest complete stack into
 * frames (max_depth entries) and returns 1, with *depth and *weight set; 0
 * when nothing is ready. */
int flamedb_sampler_ring_pop(flamedb_sampler_ring_t *r, uintptr_t *frames, size_t *depth,
                             uint32_t *weight);

/* Stacks dropped because the ring was full (weight summed). */
uint64_t flamedb_sampler_ring_dropped(const flamedb_sampler_ring_t *r);

#endif
