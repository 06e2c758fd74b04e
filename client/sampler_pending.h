/* sampler_pending.h — the in-process sampler's (flamedb_sampler.h) queue of
 * encoded profiles waiting to be pushed: oldest first, bounded in bytes. A
 * profile added to a full queue makes room by dropping the oldest ones (a
 * profile larger than the whole bound is dropped itself); what was dropped is
 * counted in profiles and in samples.
 *
 * Ownership: the queue is owned by its creator and used from one thread;
 * flamedb_sampler_pending_add() takes the profile's bytes (malloc'd) and the
 * queue frees them when they are popped, dropped, or with the queue.
 */
#ifndef FLAMEDB_CLIENT_SAMPLER_PENDING_H
#define FLAMEDB_CLIENT_SAMPLER_PENDING_H

#include <stddef.h>
#include <stdint.h>

typedef struct flamedb_sampler_pending flamedb_sampler_pending_t;

/* One waiting profile: pprof bytes, its window (Unix seconds) and samples. */
typedef struct flamedb_sampler_pending_entry {
    struct flamedb_sampler_pending_entry *next;
    void *data;
    size_t len;
    int64_t from, until;
    uint64_t samples;
} flamedb_sampler_pending_entry_t;

/* NULL when out of memory or max_bytes is 0. */
flamedb_sampler_pending_t *flamedb_sampler_pending_new(size_t max_bytes);
void flamedb_sampler_pending_free(flamedb_sampler_pending_t *q);

/* Appends a profile (takes data, len bytes); the oldest go while the queue
 * holds more than max_bytes. Returns 0, or -1 when out of memory (data is
 * freed and the profile counted as dropped). */
int flamedb_sampler_pending_add(flamedb_sampler_pending_t *q, void *data, size_t len, int64_t from,
                                int64_t until, uint64_t samples);
/* The oldest profile (owned by the queue), or NULL when empty. */
const flamedb_sampler_pending_entry_t *
flamedb_sampler_pending_oldest(const flamedb_sampler_pending_t *q);
/* Frees the oldest profile: pushed (dropped 0) or given up (dropped 1: counted). */
void flamedb_sampler_pending_pop(flamedb_sampler_pending_t *q, int dropped);
/* Counts a profile that never made it into the queue as dropped. */
void flamedb_sampler_pending_lost(flamedb_sampler_pending_t *q, uint64_t samples);

size_t flamedb_sampler_pending_count(const flamedb_sampler_pending_t *q);
size_t flamedb_sampler_pending_bytes(const flamedb_sampler_pending_t *q);
/* Profiles dropped so far, and the samples they held. */
uint64_t flamedb_sampler_pending_dropped(const flamedb_sampler_pending_t *q);
uint64_t flamedb_sampler_pending_dropped_samples(const flamedb_sampler_pending_t *q);

#endif
