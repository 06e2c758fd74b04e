/* demo_gen.h — the fake fleet of the flamedb demo and its pprof profiles.
 *
 * demo_fleet.c holds the fleet as data: three services (api, checkout,
 * worker), their pods and labels, and call stacks with weights and allocation
 * sizes. demo_gen.c turns one (instance, kind, time) into a gzipped pprof.
 * Generation is deterministic: the same seed, instance, kind, time and
 * variant give the same bytes, so files written for benchmarks can be
 * reproduced and a re-sent profile is recognised by the server as the same one.
 *
 * Traced requests: a service with requests > 0 hands part of each CPU
 * profile's request samples to that many requests, copies of the samples with
 * pprof labels span_id (16 hex digits) and trace_id (32) carrying ticks taken
 * from the unlabelled sample, so every total and every stack's sum stay what
 * they are without spans. One request per profile is slow: most of its time is
 * in the service's slow_stack. Ids derive from seed, instance, time, request
 * and variant only.
 *
 * Threads: no shared mutable state; call from any thread.
 * Ownership: demo_generate() fills a caller-owned demo_profile_t whose gz
 * buffer the caller frees with demo_profile_free().
 */
#ifndef FLAMEDB_CLIENT_DEMO_GEN_H
#define FLAMEDB_CLIENT_DEMO_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* One call stack of a service, frames root first joined by ';'. */
typedef struct demo_stack {
    const char *frames;
    int cpu_weight; /* relative CPU share */
    int alloc_size; /* bytes per allocation; 0: this stack does not allocate */
    int v2_factor;  /* weight multiplier once the service runs v2 (0 = 1) */
    int only_v2;    /* the stack exists only in v2 */
} demo_stack_t;

typedef struct demo_service {
    const char *name;
    double cores; /* mean CPU use of one pod */
    const demo_stack_t *stacks;
    size_t nstacks;
    int requests;   /* traced requests per CPU profile (span_id/trace_id labels); 0: none */
    int slow_stack; /* the stack where the slow request of each profile spends its time */
} demo_service_t;

typedef struct demo_instance {
    const demo_service_t *service;
    const char *pod;
    const char *region;
} demo_instance_t;

/* The fleet (static data); *n receives the instance count. */
const demo_instance_t *demo_fleet(size_t *n);

typedef enum demo_kind { DEMO_CPU = 0, DEMO_HEAP = 1 } demo_kind_t;

#define DEMO_PERIOD_S 10 /* each profile covers 10 s */
#define DEMO_MAX_TYPES 4

typedef struct demo_profile {
    uint8_t *gz; /* gzipped pprof; caller owns (demo_profile_free) */
    size_t gz_len;
    size_t raw_len;      /* protobuf bytes before gzip */
    char name[256];      /* ingest name: service{env=..,region=..,pod=..,version=..} */
    int64_t from, until; /* unix seconds */
    size_t nsamples;
    int ntypes;
    char types[DEMO_MAX_TYPES][32]; /* "cpu/nanoseconds" */
    int64_t totals[DEMO_MAX_TYPES]; /* exact sum of each sample type's values */
    char slow_span_id[17];          /* the slowest traced request's ids; "" when none */
    char slow_trace_id[33];
} demo_profile_t;

typedef struct demo_params {
    uint64_t seed;
    int64_t v2_at;    /* unix seconds from which services run v2 */
    uint64_t variant; /* mixed into the randomness; 0 for reproducible content */
    int no_spans;     /* 1: leave out the traced requests (same totals, no span labels) */
} demo_params_t;

/* Builds the profile of instance i of kind k covering [t, t + DEMO_PERIOD_S). */
int demo_generate(const demo_params_t *p, size_t i, demo_kind_t k, int64_t t, demo_profile_t *out,
                  errmsg_t *em);
void demo_profile_free(demo_profile_t *p);

#endif
