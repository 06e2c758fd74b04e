/* test_storage_node_dict.c — node_table_dict_bytes: the stack-node tables'
 * files on the bottommost level are compressed with a zstd dictionary, so
 * the 8-byte symbol ids that every chunk of a table (and every shard of a
 * service) lists again take less room than with each block compressed
 * alone; 0 turns it off. The same writes go to two stores, one with the
 * default and one with 0; after a full compaction the first one's nodes
 * column family must be clearly smaller, and its tables must read back
 * (after a reopen, from the compressed files) as the other store's do,
 * also when reopened with the setting changed. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "storage/storage_int.h"

#define SHARDS 4
#define PROFILES 6
#define STACKS 1500

/* Pushes PROFILES profiles of STACKS new stacks each to every shard: deep
 * stacks over a few hundred functions, so a table holds many more nodes
 * than distinct symbols, as a service's does. */
static void write_fleet(fixture_t *f, labels_t *l, int64_t *total)
{
    symtab_t *st = symtab_new();
    char stack[256];
    *total = 0;
    for (int p = 0; p < PROFILES; p++)
        for (int shard = 0; shard < SHARDS; shard++) {
            calltree_t *t = calltree_new(0);
            for (int k = 0; k < STACKS; k++) {
                int n = p * STACKS + k;
                snprintf(stack, sizeof stack,
                         "main;svc.(*Server).Handle%d;svc/pkg%d.(*T).Run%d;svc/pkg%d.f%d;g%d",
                         n % 7, n % 13, n % 29, n % 31, n % 97, n);
                fx_add(t, st, stack, 1 + k % 5);
                *total += 1 + k % 5;
            }
            storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
            sw.token = 1000 + (uint64_t)shard;
            storage_profile_write_t pw = {.tenant = "t",
                                          .time_ns = (f->now - 600 + p * 10) * NS,
                                          .series = &sw,
                                          .nseries = 1,
                                          .symbols = st};
            fx_id(pw.profile_id, (uint64_t)(p * SHARDS + shard + 1));
            errmsg_t em = {{0}};
            CHECK_EQ_INT(storage_write_profile(f->s, &pw, NULL, &em), 0);
            calltree_free(t);
        }
    symtab_free(st);
}

static uint64_t nodes_bytes(storage_t *s)
{
    storage_cf_bytes_t cfs[STORAGE_STATS_MAX_CFS];
    size_t n = 0;
    storage_sst_bytes_by_cf(s, cfs, STORAGE_STATS_MAX_CFS, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(cfs[i].cf, "nodes") == 0) return cfs[i].bytes;
    return 0;
}

/* Reads every shard's table back whole: its node count and a digest of
 * its symbols by id into sum[]. */
static void tables_sum(fixture_t *f, uint64_t sum[SHARDS])
{
    for (int shard = 0; shard < SHARDS; shard++) {
        nodetab_t *t;
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_nodetab_acquire(f->s, 1000 + (uint64_t)shard, "t", &t, &em), 0);
        uint32_t count = storage_nodetab_count(t);
        CHECK(count > (uint32_t)(PROFILES * STACKS)); /* every stack ends in a new g */
        sum[shard] = count;
        for (uint32_t id = 1; id < count; id++)
            sum[shard] = sum[shard] * 1000003u + storage_nodetab_sym(t, id);
        storage_nodetab_release(f->s, t, 0);
    }
}

/* Writes the fleet into a store with the given dictionary size, compacts,
 * reopens and reads every shard's table back from the files: its node count
 * and a digest of its symbols by id into sum[]. The nodes CF's bytes. */
static uint64_t run(size_t dict_bytes, uint64_t sum[SHARDS])
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    f.opts.node_table_dict_bytes = dict_bytes;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l = fx_labels("svc", NULL);
    int64_t total;
    write_fleet(&f, l, &total);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    tables_sum(&f, sum);
    /* the setting changed: the files keep the dictionary they were
     * written with and read the same */
    f.opts.node_table_dict_bytes = dict_bytes > 0 ? 0 : STORAGE_NODE_TABLE_DICT_BYTES;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    uint64_t again[SHARDS];
    tables_sum(&f, again);
    for (int shard = 0; shard < SHARDS; shard++)
        CHECK(again[shard] == sum[shard]);
    uint64_t bytes = nodes_bytes(f.s);
    labels_free(l);
    fx_done(&f);
    return bytes;
}

int main(void)
{
    uint64_t sum_with[SHARDS], sum_without[SHARDS];
    uint64_t with = run(STORAGE_NODE_TABLE_DICT_BYTES, sum_with), without = run(0, sum_without);
    fprintf(stderr, "nodes bytes: %llu with a dictionary, %llu without\n", (unsigned long long)with,
            (unsigned long long)without);
    CHECK(without > 0 && with > 0);
    CHECK(with * 10 < without * 9); /* at least 10 % smaller */
    for (int shard = 0; shard < SHARDS; shard++)
        CHECK(sum_with[shard] == sum_without[shard]); /* the same tables read back */
    return check_exit();
}
