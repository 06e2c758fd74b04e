/* test_storage_nodetab_cache.c — the node-table cache's eviction policy.
 * Eight tables of the same size are read in turn, round after round, by a
 * cache that holds four of them: least-recently-used eviction drops each
 * table just before its next use and loads every table at every round; the
 * cache must keep a stable subset resident and hit on it. Then the reads
 * move to three of the tables (they fit): once the tables kept from the
 * cycle have been idle for twice their reuse distance, all three hit; and a
 * table read between every two others of a cycle is loaded at most twice
 * (its first read, then once its short reuse distance is known). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/buf.h"
#include "storage/storage_int.h"

#define TABLES 8
#define NODES 3000
#define ROUNDS 12

/* Writes table `token`: NODES children of the root. */
static void make_table(storage_t *s, uint64_t token)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(s, token, "t", &t, &em), 0);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (uint64_t i = 0; i < NODES; i++) {
        uint32_t id;
        CHECK_EQ_INT(storage_nodetab_child(s, t, 0, 0x1000 + i, wb, &id), 0);
    }
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    CHECK_EQ_INT(storage_nodetab_stage(s, t, wb, &tmp), 0);
    char *err = NULL;
    rocksdb_write(s->db, s->wopts, wb, &err);
    CHECK(err == NULL);
    storage_nodetab_release(s, t, 0);
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);
}

/* Reads table `token` whole; returns 1 when that loaded it from disk. */
static int read_table(storage_t *s, uint64_t token)
{
    uint64_t before = atomic_load(&s->counters.nodetab_loads);
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(s, token, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), NODES + 1);
    storage_nodetab_release(s, t, 0);
    return atomic_load(&s->counters.nodetab_loads) != before;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    for (uint64_t k = 1; k <= TABLES; k++)
        make_table(f.s, k);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    CHECK_EQ_INT(read_table(f.s, 1), 1);
    size_t one = f.s->nodetabs.bytes; /* the tables are alike */
    CHECK(one > 0);
    /* room for four tables and a half: the tables' cache is 3/4 of it */
    f.opts.node_cache_bytes = (one * 9 / 2) / 3 * 4;
    CHECK_EQ_INT(fx_reopen(&f), 0);

    int loads[ROUNDS] = {0}, later = 0;
    for (int r = 0; r < ROUNDS; r++)
        for (uint64_t k = 1; k <= TABLES; k++)
            loads[r] += read_table(f.s, k);
    for (int r = 2; r < ROUNDS; r++)
        later += loads[r];
    printf("loads per round of %d reads:", TABLES);
    for (int r = 0; r < ROUNDS; r++)
        printf(" %d", loads[r]);
    printf("\n");
    CHECK_EQ_INT(loads[0], TABLES);
    /* from the third round on, at least three of the four that fit hit
     * (least recently used first out: none) */
    CHECK(later <= (ROUNDS - 2) * (TABLES - 3));
    CHECK(f.s->nodetabs.bytes <= f.s->nodetabs.max_bytes);

    /* the reads move to three tables: they all stay */
    int moved[12] = {0};
    for (int r = 0; r < 12; r++)
        for (uint64_t k = 6; k <= TABLES; k++)
            moved[r] += read_table(f.s, k);
    printf("then of 3:");
    for (int r = 0; r < 12; r++)
        printf(" %d", moved[r]);
    printf("\n");
    CHECK_EQ_INT(moved[8] + moved[9] + moved[10] + moved[11], 0);

    /* table 1 read between every two others of a cycle: loaded once */
    int ones = 0;
    for (int r = 0; r < 6; r++)
        for (uint64_t k = 2; k <= TABLES; k++) {
            read_table(f.s, k);
            ones += read_table(f.s, 1);
        }
    printf("table 1 loaded %d times\n", ones);
    CHECK(ones <= 2); /* its first read, and at most once more to learn it */
    CHECK(f.s->nodetabs.bytes <= f.s->nodetabs.max_bytes);
    fx_done(&f);
    return check_exit();
}
