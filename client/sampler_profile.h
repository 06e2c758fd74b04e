/* sampler_profile.h — what the in-process sampler (flamedb_sampler.h) does
 * with captured stacks: counts them by their addresses, names every address
 * once (dladdr, C++ names demangled when the process has __cxa_demangle;
 * cached for the sampler's life) and encodes a pprof CPU
 * profile of one interval.
 *
 * Ownership: a profile is owned by its creator and used from one thread;
 * flamedb_sampler_profile_encode() appends to the caller's buffer.
 */
#ifndef FLAMEDB_CLIENT_SAMPLER_PROFILE_H
#define FLAMEDB_CLIENT_SAMPLER_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct flamedb_sampler_profile flamedb_sampler_profile_t;

flamedb_sampler_profile_t *flamedb_sampler_profile_new(void);
void flamedb_sampler_profile_free(flamedb_sampler_profile_t *p);

/* Counts weight samples of one stack (frames leaf first). 0 or ERR_NOMEM. */
int flamedb_sampler_profile_add(flamedb_sampler_profile_t *p, const uintptr_t *frames, size_t depth,
                                uint64_t weight);
/* Samples counted since the last reset (weights summed). */
uint64_t flamedb_sampler_profile_samples(const flamedb_sampler_profile_t *p);
/* Forgets the stacks (keeps the names of addresses). */
void flamedb_sampler_profile_reset(flamedb_sampler_profile_t *p);

/* Appends an uncompressed pprof Profile: sample types samples/count and
 * cpu/nanoseconds (count * period_ns), period cpu/nanoseconds period_ns,
 * time_nanos start_ns and duration_nanos duration_ns. 0 or ERR_NOMEM. */
int flamedb_sampler_profile_encode(flamedb_sampler_profile_t *p, int64_t period_ns,
                                   int64_t start_ns, int64_t duration_ns, buf_t *out);

#endif
