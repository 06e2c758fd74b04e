/* Stack-node tables and sparse blocks (storage format 3): trees of thousands
 * of nodes spanning many node-table chunks survive writes in several
 * batches, a reopen (the table is reloaded from its chunks) and the query
 * merger, node for node; a refused batch leaves no id behind. Randomised:
 * prints its seed, replay with argv[1]. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <time.h>

#include "check.h"
#include "common/hash.h"
#include "storage/storage_int.h"

/* A tree of `stacks` random stacks over `nsyms` frames, added to both t and
 * the expected total. Symbols go into st. */
static void random_tree(calltree_t *t, symtab_t *st, int stacks, int nsyms)
{
    for (int i = 0; i < stacks; i++) {
        uint64_t ids[24];
        size_t depth = 1 + check_rng() % 24;
        for (size_t d = 0; d < depth; d++) {
            char name[32];
            int n = snprintf(name, sizeof name, "fn%d", (int)(check_rng() % (uint64_t)nsyms));
            CHECK_EQ_INT(symtab_intern(st, name, (size_t)n, "x.c", 3, &ids[d]), 0);
        }
        CHECK_EQ_INT(calltree_add_stack(t, ids, depth, (int64_t)(check_rng() % 100) - 10), 0);
    }
}

/* (hash of the path from the root, self) for every node with a non-zero
 * self value, sorted: two trees hold the same samples iff these are equal
 * (nodes whose values cancelled to zero need not exist in both). */
typedef struct pv {
    uint64_t path;
    int64_t self;
} pv_t;

static int cmp_pv(const void *a, const void *b)
{
    const pv_t *x = a, *y = b;
    if (x->path != y->path) return x->path < y->path ? -1 : 1;
    return x->self < y->self ? -1 : x->self > y->self;
}

static pv_t *path_values(const calltree_t *t, size_t *n)
{
    size_t count = calltree_node_count(t);
    uint64_t *ph = calloc(count, sizeof *ph);
    pv_t *v = calloc(count, sizeof *v);
    *n = 0;
    for (uint32_t i = 1; i < count; i++) { /* parents come first */
        uint64_t pair[2] = {ph[calltree_parent(t, i)], calltree_sym(t, i)};
        ph[i] = hash_bytes64(pair, sizeof pair);
    }
    for (uint32_t i = 0; i < count; i++)
        if (calltree_self(t, i) != 0) v[(*n)++] = (pv_t){ph[i], calltree_self(t, i)};
    qsort(v, *n, sizeof *v, cmp_pv);
    free(ph);
    return v;
}

static int same_tree(const calltree_t *a, const calltree_t *b)
{
    size_t na, nb;
    pv_t *va = path_values(a, &na), *vb = path_values(b, &nb);
    int ok = na == nb && memcmp(va, vb, na * sizeof *va) == 0 &&
             calltree_root_total(a) == calltree_root_total(b);
    free(va);
    free(vb);
    return ok;
}

static int64_t merged_total(storage_t *s, const labels_t *l, calltree_t *out)
{
    storage_merger_t *m;
    uint64_t id = labels_hash(l);
    CHECK_EQ_INT(storage_merger_new(s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, id >> 1, id, 4, 0, INT64_MAX / 2), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_finish(m, out, &em), 0);
    storage_merger_free(m);
    return calltree_root_total(out);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL) | 1;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed;
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    labels_t *l = fx_labels("svc", NULL);
    calltree_t *want = calltree_new(0);
    symtab_t *st = symtab_new();
    /* five writes, each adding new stacks: the table grows past several chunks */
    for (int w = 0; w < 5; w++) {
        calltree_t *t = calltree_new(0);
        random_tree(t, st, 800, 40);
        CHECK_EQ_INT(fx_write(f.s, "t", l, t, st, (uint64_t)w + 1, (f.now - 3600) * NS, NULL), 0);
        calltree_merge(want, t);
        calltree_free(t);
    }
    CHECK(calltree_node_count(want) > 3 * NODETAB_CHUNK);
    fprintf(stderr, "%zu nodes\n", calltree_node_count(want));

    for (int round = 0; round < 2; round++) { /* before and after reopening */
        calltree_t *got = calltree_new(0);
        CHECK(merged_total(f.s, l, got) == calltree_root_total(want));
        CHECK(same_tree(want, got));
        calltree_free(got);
        fx_scan_t sc = fx_blocks(f.s, "t", l, 4, 0, INT64_MAX / 2);
        CHECK(same_tree(want, sc.acc));
        calltree_free(sc.acc);
        CHECK_EQ_INT(fx_reopen(&f), 0);
    }

    /* a batch refused after new ids were assigned leaves no id behind: the
     * next write and a reopen still agree node for node */
    calltree_t *bad = calltree_new(0), *fresh = calltree_new(0);
    symtab_t *partial = symtab_new();
    random_tree(fresh, partial, 200, 400); /* new stacks: new ids, same token */
    symtab_t *other = symtab_new();
    random_tree(bad, other, 50, 400);
    uint64_t missing; /* a frame `partial` lacks: series 1 is refused */
    CHECK_EQ_INT(symtab_intern(other, "not-in-partial", 14, "", 0, &missing), 0);
    CHECK_EQ_INT(calltree_add_stack(bad, &missing, 1, 5), 0);
    {
        labels_t *l2 = fx_labels("svc", "other");
        storage_series_write_t sw[2] = {
            {.labels = l, .series_id = labels_hash(l), .tree = fresh},
            {.labels = l2, .series_id = labels_hash(l2), .tree = bad},
        };
        sw[0].token = sw[1].token = sw[0].series_id >> 1;
        storage_profile_write_t p = {.tenant = "t",
                                     .time_ns = (f.now - 3600) * NS,
                                     .series = sw,
                                     .nseries = 2,
                                     .symbols = partial};
        fx_id(p.profile_id, 99);
        errmsg_t em = {{0}};
        /* series 0 maps its new stacks to new ids, then series 1 is refused:
         * the batch never commits, and the ids must not survive */
        int wrc = storage_write_profile(f.s, &p, NULL, &em);
        CHECK(wrc != 0);
        labels_free(l2);
    }
    symtab_t *empty = other;
    calltree_t *t = calltree_new(0);
    random_tree(t, st, 300, 60);
    CHECK_EQ_INT(fx_write(f.s, "t", l, t, st, 100, (f.now - 3600) * NS, NULL), 0);
    calltree_merge(want, t);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    calltree_t *got = calltree_new(0);
    CHECK(merged_total(f.s, l, got) == calltree_root_total(want));
    CHECK(same_tree(want, got));

    /* a damaged chunk is refused with a reason, never misread or crashed on */
    {
        uint64_t sid = labels_hash(l);
        skey_t k;
        storage_key_node(&k, sid >> 1, "t", 1);
        const uint8_t junk[] = {0x05, 0x07, 0x01, 0xff};
        char *err = NULL;
        rocksdb_put_cf(f.s->db, f.s->wopts, f.s->cf[CF_NODES], (const char *)k.b, k.n,
                       (const char *)junk, sizeof junk, &err);
        CHECK(err == NULL);
        free(err);
        CHECK_EQ_INT(fx_reopen(&f), 0);
        storage_merger_t *m;
        CHECK_EQ_INT(storage_merger_new(f.s, "t", &m), 0);
        CHECK_EQ_INT(storage_merger_add(m, sid >> 1, sid, 4, 0, INT64_MAX / 2), 0);
        errmsg_t em = {{0}};
        calltree_t *d = calltree_new(0);
        CHECK(storage_merger_finish(m, d, &em) != 0);
        CHECK(strstr(em.text, "corrupt") != NULL);
        calltree_free(d);
        storage_merger_free(m);
    }

    calltree_free(got);
    calltree_free(t);
    calltree_free(bad);
    calltree_free(fresh);
    symtab_free(partial);
    symtab_free(empty);
    symtab_free(st);
    calltree_free(want);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
