/* test_ring_util.h — helpers shared by the ring tests: seeded identities and
 * rings, an independent replica oracle, a fake clock, and the test seed
 * (printed, and taken back from RING_TEST_SEED to replay a failure). */
#ifndef FLAMEDB_TESTS_TEST_RING_UTIL_H
#define FLAMEDB_TESTS_TEST_RING_UTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/proto/cluster.pb-c.h"
#include "ring/ring.h"

/* Where ring_gossip_receive says to answer (the tests read it when they care). */
static char test_reply_to[RING_ADDR_MAX + 1] __attribute__((unused));

/* Serializes a hand-made Gossip body into out (as a peer would send it). */
static inline int pack_gossip(const Flamedb__Cluster__Gossip *g, buf_t *out)
{
    size_t n = flamedb__cluster__gossip__get_packed_size(g);
    int rc = buf_reserve(out, n);
    if (rc == 0) {
        flamedb__cluster__gossip__pack(g, out->data + out->len);
        out->len += n;
    }
    return rc;
}

static inline uint64_t test_seed(uint64_t fallback)
{
    const char *s = getenv("RING_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : fallback;
    fprintf(stderr, "seed %" PRIu64 " (replay with RING_TEST_SEED=%" PRIu64 ")\n", seed, seed);
    return seed;
}

/* n identities "n00".."n<n-1>" with ntok tokens each, drawn from one rng. */
static inline ring_identity_t *make_identities(size_t n, uint32_t ntok, ring_rng_t *rng)
{
    ring_identity_t *ids = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%02zu", i);
        int rc = ring_identity_generate(&ids[i], name, ntok, rng, NULL);
        CHECK_EQ_INT(rc, 0);
    }
    return ids;
}

static inline void free_identities(ring_identity_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ring_identity_free(&ids[i]);
    free(ids);
}

/* Ring of the identities whose `use` flag is set (all when use is NULL). */
static inline ring_t *ring_of(const ring_identity_t *ids, size_t n, const uint8_t *use)
{
    ring_node_spec_t *specs = calloc(n ? n : 1, sizeof *specs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (use == NULL || use[i])
            specs[k++] = (ring_node_spec_t){ids[i].node_id, ids[i].tokens, ids[i].ntokens};
    ring_t *r = NULL;
    int rc = ring_build(specs, k, &r, NULL);
    CHECK_EQ_INT(rc, 0);
    free(specs);
    return r;
}

/* Independent oracle: the replicas of t are the nodes ordered by their
 * smallest clockwise distance (token - t mod 2^64) from t, ties by node id,
 * first rf of them. Returns node ids. */
static inline uint32_t oracle_replicas(const ring_identity_t *ids, size_t n, const uint8_t *use,
                                       uint64_t t, uint32_t rf, const char **out)
{
    uint32_t have = 0;
    while (have < rf) {
        const char *best = NULL;
        uint64_t bd = 0;
        for (size_t i = 0; i < n; i++) {
            int skip = use && !use[i];
            for (uint32_t j = 0; j < have && !skip; j++)
                skip = strcmp(out[j], ids[i].node_id) == 0;
            for (uint32_t k = 0; k < ids[i].ntokens && !skip; k++) {
                uint64_t d = ids[i].tokens[k] - t;
                if (best == NULL || d < bd || (d == bd && strcmp(ids[i].node_id, best) < 0)) {
                    best = ids[i].node_id;
                    bd = d;
                }
            }
        }
        if (best == NULL) break;
        out[have++] = best;
    }
    return have;
}

typedef struct fake_clock {
    uint64_t now;
} fake_clock_t;

static inline int64_t fake_now_ns(void *ctx)
{
    return (int64_t)((fake_clock_t *)ctx)->now * 1000000;
}

/* A clock the test moves by hand (now, in ms, read by both readings). */
static inline clock_source_t fake_source(fake_clock_t *c)
{
    return (clock_source_t){fake_now_ns, fake_now_ns, c};
}

#endif
