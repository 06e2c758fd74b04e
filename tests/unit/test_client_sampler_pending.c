/* test_client_sampler_pending.c — the sampler's queue of profiles to push:
 * oldest first, bounded in bytes by dropping the oldest, a profile larger
 * than the bound dropped itself, every drop counted with its samples. */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "client/sampler_pending.h"

/* A profile of len bytes, all `tag`. */
static void *bytes(size_t len, int tag)
{
    void *p = malloc(len ? len : 1);
    if (p) memset(p, tag, len);
    return p;
}

static void test_order_and_bound(void)
{
    CHECK(flamedb_sampler_pending_new(0) == NULL);
    flamedb_sampler_pending_t *q = flamedb_sampler_pending_new(100);
    CHECK(q != NULL);
    if (!q) return;
    CHECK(flamedb_sampler_pending_oldest(q) == NULL);
    for (int i = 0; i < 3; i++) /* 30 bytes each: 90 fit */
        CHECK_EQ_INT(flamedb_sampler_pending_add(q, bytes(30, i), 30, 10 * i, 10 * i + 10, i + 1),
                     0);
    CHECK_EQ_INT(flamedb_sampler_pending_count(q), 3);
    CHECK_EQ_INT(flamedb_sampler_pending_bytes(q), 90);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 0);
    /* a fourth makes 120: the oldest (1 sample) goes */
    CHECK_EQ_INT(flamedb_sampler_pending_add(q, bytes(30, 3), 30, 30, 40, 4), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_count(q), 3);
    CHECK_EQ_INT(flamedb_sampler_pending_bytes(q), 90);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 1);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped_samples(q), 1);
    const flamedb_sampler_pending_entry_t *e = flamedb_sampler_pending_oldest(q);
    CHECK(e != NULL && e->from == 10 && e->until == 20 && e->samples == 2 && e->len == 30 &&
          ((unsigned char *)e->data)[29] == 1);
    /* pushed: not counted */
    flamedb_sampler_pending_pop(q, 0);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 1);
    e = flamedb_sampler_pending_oldest(q);
    CHECK(e != NULL && e->from == 20 && e->samples == 3);
    /* given up: counted */
    flamedb_sampler_pending_pop(q, 1);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 2);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped_samples(q), 4);
    /* larger than the whole bound: everything before it goes, then itself */
    CHECK_EQ_INT(flamedb_sampler_pending_add(q, bytes(101, 9), 101, 50, 60, 100), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_count(q), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_bytes(q), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 4);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped_samples(q), 4 + 4 + 100);
    CHECK(flamedb_sampler_pending_oldest(q) == NULL);
    flamedb_sampler_pending_pop(q, 1); /* empty: nothing */
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 4);
    flamedb_sampler_pending_lost(q, 7);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped(q), 5);
    CHECK_EQ_INT(flamedb_sampler_pending_dropped_samples(q), 115);
    /* usable again after emptying; the queue frees what it holds */
    CHECK_EQ_INT(flamedb_sampler_pending_add(q, bytes(10, 1), 10, 1, 2, 1), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_add(q, bytes(10, 2), 10, 2, 3, 1), 0);
    CHECK_EQ_INT(flamedb_sampler_pending_count(q), 2);
    CHECK_EQ_INT(flamedb_sampler_pending_oldest(q)->from, 1);
    flamedb_sampler_pending_free(q);
}

int main(void)
{
    test_order_and_bound();
    return check_exit();
}
