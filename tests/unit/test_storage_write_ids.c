/* test_storage_write_ids.c — a series written by stack-node ids: the map a
 * tree write reports (storage_profile_write_t.mapped) names each of the
 * tree's nodes, and a later profile written as (id, value) pairs from it
 * stores exactly what the same profile written as a tree stores (blocks,
 * totals, profile trees and window counts byte for byte, in two stores). A
 * write naming an earlier node generation (a batch that did not commit
 * changed it) or an id its table does not hold is refused and writes
 * nothing. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

typedef struct mapped {
    uint32_t *map;
    size_t n, calls;
    uint64_t gen;
} mapped_t;

static void on_mapped(void *ctx, const storage_series_write_t *sw, const uint32_t *map, size_t n,
                      uint64_t gen)
{
    mapped_t *m = ctx;
    CHECK(sw != NULL && sw->tree != NULL);
    free(m->map);
    m->map = malloc(n * sizeof *map);
    memcpy(m->map, map, n * sizeof *map);
    m->n = n;
    m->gen = gen;
    m->calls++;
}

/* The same stacks in the same order each time (so node i is the same
 * stack in every such tree), values varied by k. */
static calltree_t *tree_of(symtab_t *st, int k)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int i = 0; i < 40; i++) {
        snprintf(stack, sizeof stack, "main;f%d;g%d", i % 7, (i * 3) % 11);
        fx_add(t, st, stack, (i % 5 == 0) ? 0 : 10 + i * k);
    }
    fx_add(t, st, "main", k); /* a value on an inner node */
    return t;
}

static int write_one(storage_t *s, storage_series_write_t *sw, symtab_t *st, uint64_t id,
                     int64_t time_ns, mapped_t *m, size_t *written)
{
    storage_profile_write_t p = {.tenant = "t",
                                 .time_ns = time_ns,
                                 .series = sw,
                                 .nseries = 1,
                                 .symbols = st,
                                 .mapped = m != NULL ? on_mapped : NULL,
                                 .mapped_ctx = m};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    return storage_write_profile(s, &p, written, &em);
}

/* Every key and value of column family cf, in order, in one buffer. */
static void dump_cf(storage_t *s, int cf, buf_t *out)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn), *v = rocksdb_iter_value(it, &vn);
        uint32_t lens[2] = {(uint32_t)kn, (uint32_t)vn};
        CHECK_EQ_INT(buf_append(out, lens, sizeof lens), 0);
        CHECK_EQ_INT(buf_append(out, k, kn), 0);
        CHECK_EQ_INT(buf_append(out, v, vn), 0);
    }
    rocksdb_iter_destroy(it);
}

static void check_same_cfs(storage_t *a, storage_t *b)
{
    const int cfs[] = {CF_BLOCKS, CF_TOTALS, CF_PTREES, CF_WPROFILES, CF_NODES, CF_SERIES};
    for (size_t i = 0; i < sizeof cfs / sizeof *cfs; i++) {
        buf_t x, y;
        buf_init(&x, (size_t)1 << 30);
        buf_init(&y, (size_t)1 << 30);
        dump_cf(a, cfs[i], &x);
        dump_cf(b, cfs[i], &y);
        CHECK(x.len > 0);
        CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        buf_free(&x);
        buf_free(&y);
    }
}

/* The pairs of tree t (node i of t is node i of the tree m was made from). */
static void pairs_of(const calltree_t *t, const mapped_t *m, uint32_t *ids, int64_t *vals)
{
    for (size_t i = 0; i < m->n; i++) {
        ids[i] = m->map[i];
        vals[i] = calltree_self(t, (uint32_t)i);
    }
}

int main(void)
{
    fixture_t fa, fb;
    if (fx_init(&fa) != 0 || fx_init(&fb) != 0) return 1;
    labels_t *l = fx_labels("svc", NULL);
    symtab_t *st = symtab_new();
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l)};
    sw.token = sw.series_id >> 1;
    int64_t t0 = (fa.now - 5) * NS;
    mapped_t m = {0};
    size_t written = 0;

    /* profile 1 as a tree in both stores; a's reports its map */
    calltree_t *t1 = tree_of(st, 1);
    sw.tree = t1;
    CHECK_EQ_INT(write_one(fa.s, &sw, st, 1, t0, &m, &written), 0);
    CHECK_EQ_INT(written, 1);
    CHECK_EQ_INT(m.calls, 1);
    CHECK_EQ_INT(m.n, calltree_node_count(t1));
    CHECK_EQ_INT(m.gen, storage_node_generation(fa.s));
    CHECK_EQ_INT(write_one(fb.s, &sw, st, 1, t0, NULL, NULL), 0);

    /* profile 2: pairs in a, the tree in b; then every value stored is the same */
    calltree_t *t2 = tree_of(st, 3);
    CHECK_EQ_INT(calltree_node_count(t2), m.n);
    uint32_t *ids = malloc(m.n * sizeof *ids);
    int64_t *vals = malloc(m.n * sizeof *vals);
    pairs_of(t2, &m, ids, vals);
    storage_series_write_t pw = sw;
    pw.tree = NULL;
    pw.ids = ids;
    pw.vals = vals;
    pw.npairs = m.n;
    pw.gen = m.gen;
    CHECK_EQ_INT(write_one(fa.s, &pw, st, 2, t0 + NS, NULL, &written), 0);
    CHECK_EQ_INT(written, 1);
    sw.tree = t2;
    CHECK_EQ_INT(write_one(fb.s, &sw, st, 2, t0 + NS, NULL, NULL), 0);
    CHECK_EQ_INT(fx_block_total(fa.s, "t", l, 0, fa.now - 60, fa.now + 10, NULL),
                 calltree_root_total(t1) + calltree_root_total(t2));
    check_same_cfs(fa.s, fb.s);
    /* retried: counted once */
    CHECK_EQ_INT(write_one(fa.s, &pw, st, 2, t0 + NS, NULL, &written), 0);
    CHECK_EQ_INT(written, 0);

    /* an id past the table: refused, nothing written */
    uint32_t keep = ids[1];
    ids[1] = (uint32_t)m.n + 1000;
    CHECK_EQ_INT(write_one(fa.s, &pw, st, 3, t0 + 2 * NS, NULL, &written), ERR_INVALID_ARGUMENT);
    ids[1] = keep;

    /* a holder whose batch did not commit: the generation moves on, and
     * pairs made before are refused (nothing written: profile 3 is new) */
    nodetab_t *tab;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(fa.s, sw.token, "t", &tab, &em), 0);
    storage_nodetab_release(fa.s, tab, 1);
    CHECK(storage_node_generation(fa.s) != m.gen);
    CHECK_EQ_INT(write_one(fa.s, &pw, st, 3, t0 + 2 * NS, NULL, &written), ERR_CONFLICT);
    sw.tree = t2; /* the table reloaded from disk gives the same ids */
    CHECK_EQ_INT(write_one(fa.s, &sw, st, 3, t0 + 2 * NS, &m, &written), 0);
    CHECK_EQ_INT(written, 1);
    for (size_t i = 0; i < m.n; i++)
        CHECK_EQ_INT(m.map[i], ids[i]);
    CHECK_EQ_INT(write_one(fb.s, &sw, st, 3, t0 + 2 * NS, NULL, NULL), 0);
    check_same_cfs(fa.s, fb.s);

    free(ids);
    free(vals);
    free(m.map);
    calltree_free(t1);
    calltree_free(t2);
    symtab_free(st);
    labels_free(l);
    fx_done(&fa);
    fx_done(&fb);
    return check_exit();
}
