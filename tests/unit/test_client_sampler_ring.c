/* test_client_sampler_ring.c — the sampler's stack ring: order, depth cut,
 * a full ring drops and counts, and many producers against one consumer
 * lose nothing they were not told about and corrupt no stack. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#include "client/sampler_ring.h"

static void test_fill_and_drain(void)
{
    CHECK(flamedb_sampler_ring_new(0, 4) == NULL);
    CHECK(flamedb_sampler_ring_new(4, 0) == NULL);
    flamedb_sampler_ring_t *r = flamedb_sampler_ring_new(5, 3); /* rounded up to 8 */
    CHECK(r != NULL);
    if (!r) return;
    CHECK_EQ_INT(flamedb_sampler_ring_capacity(r), 8);
    uintptr_t f[4] = {0}, out[3];
    size_t depth;
    uint32_t weight;
    CHECK_EQ_INT(flamedb_sampler_ring_pop(r, out, &depth, &weight), 0);
    for (int i = 0; i < 10; i++) {
        f[0] = 100 + i, f[1] = 200 + i, f[2] = 300 + i, f[3] = 400 + i;
        CHECK_EQ_INT(flamedb_sampler_ring_push(r, f, 1 + i % 4, 1 + i), i < 8 ? 0 : -1);
    }
    CHECK_EQ_INT(flamedb_sampler_ring_dropped(r), 9 + 10); /* the weights of the two lost */
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(flamedb_sampler_ring_pop(r, out, &depth, &weight), 1);
        size_t want = 1 + i % 4 > 3 ? 3 : 1 + i % 4; /* deeper stacks are cut at max_depth */
        CHECK_EQ_INT(depth, want);
        CHECK_EQ_INT(weight, 1 + i);
        for (size_t k = 0; k < depth; k++)
            CHECK_EQ_INT(out[k], (k + 1) * 100 + i);
    }
    CHECK_EQ_INT(flamedb_sampler_ring_pop(r, out, &depth, &weight), 0);
    /* freed slots are usable again, many times round */
    for (int i = 0; i < 100; i++) {
        f[0] = i;
        CHECK_EQ_INT(flamedb_sampler_ring_push(r, f, 1, 1), 0);
        CHECK_EQ_INT(flamedb_sampler_ring_pop(r, out, &depth, &weight), 1);
        CHECK_EQ_INT(out[0], i);
    }
    CHECK_EQ_INT(flamedb_sampler_ring_dropped(r), 19);
    flamedb_sampler_ring_free(r);
}

#define PRODUCERS 4
#define PER_PRODUCER 200000
#define DEPTH 16

typedef struct producer {
    flamedb_sampler_ring_t *ring;
    uintptr_t id;
    uint64_t pushed, refused;
} producer_t;

/* Stack j of producer id: depth 1 + j % DEPTH frames, frame k = id<<40 | j<<8 | k. */
static void *produce(void *arg)
{
    producer_t *p = arg;
    uintptr_t f[DEPTH];
    for (uintptr_t j = 0; j < PER_PRODUCER; j++) {
        size_t depth = 1 + j % DEPTH;
        for (size_t k = 0; k < depth; k++)
            f[k] = p->id << 40 | j << 8 | k;
        if (flamedb_sampler_ring_push(p->ring, f, depth, 1) == 0)
            p->pushed++;
        else
            p->refused++;
    }
    return NULL;
}

static void test_concurrent(void)
{
    flamedb_sampler_ring_t *r = flamedb_sampler_ring_new(256, DEPTH);
    CHECK(r != NULL);
    if (!r) return;
    pthread_t th[PRODUCERS];
    producer_t pr[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (producer_t){.ring = r, .id = (uintptr_t)i + 1};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
    }
    uint64_t popped = 0, bad = 0, last[PRODUCERS + 1] = {0};
    int joined[PRODUCERS] = {0}, njoined = 0, final_pass = 0;
    uintptr_t out[DEPTH];
    size_t depth;
    uint32_t weight;
    for (;;) {
        if (flamedb_sampler_ring_pop(r, out, &depth, &weight)) {
            uintptr_t id = out[0] >> 40, j = (out[0] >> 8) & 0xffffffff;
            if (id < 1 || id > PRODUCERS || depth != 1 + j % DEPTH || weight != 1 ||
                (last[id] && j + 1 <= last[id]))
                bad++; /* each producer's stacks come out whole and in order */
            for (size_t k = 0; k < depth; k++)
                if (out[k] != (id << 40 | j << 8 | k)) bad++;
            if (id >= 1 && id <= PRODUCERS) last[id] = j + 1;
            popped++;
            continue;
        }
        if (final_pass) break;
        for (int i = 0; i < PRODUCERS; i++)
            if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0) joined[i] = 1, njoined++;
        final_pass = njoined == PRODUCERS; /* then one more pass drains what is left */
    }
    uint64_t pushed = 0, refused = 0;
    for (int i = 0; i < PRODUCERS; i++)
        pushed += pr[i].pushed, refused += pr[i].refused;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(popped, pushed);
    CHECK_EQ_INT(pushed + refused, (uint64_t)PRODUCERS * PER_PRODUCER);
    CHECK_EQ_INT(flamedb_sampler_ring_dropped(r), refused);
    printf("concurrent: %llu popped, %llu dropped\n", (unsigned long long)popped,
           (unsigned long long)refused);
    flamedb_sampler_ring_free(r);
}

int main(void)
{
    test_fill_and_drain();
    test_concurrent();
    return check_exit();
}
