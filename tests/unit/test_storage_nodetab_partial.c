/* test_storage_nodetab_partial.c — stack-node tables larger than the node
 * cache, written while another service's table is interleaved with them:
 * writers read only the last chunk and the edge index (no whole load after
 * the first chunk), and the ids and flame graphs are exactly those of a store
 * that keeps every table cached. A batch that fails in the middle of an
 * append to a partial table leaves no id and no index entry behind; the GC
 * of a table held partially deletes its chunks and its index; a table
 * written by storage format 6 (no index, table-wide symbol ordinals) is read
 * and then indexed by its next write. A writer waiting on a partial table
 * whose holder's batch fails gets the same table and the unused id.
 * A table smaller than node_index_min_nodes keeps no index and is read whole;
 * the batch that takes it to the threshold indexes every node, a failed one
 * leaves it as it was, and once indexed (also after a reopen) pushes to it
 * never read it whole; a small format-6 table is rewritten unindexed.
 * Before, a table that did not stay cached was loaded whole by every push. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>

#include "check.h"

#define SMALL_CACHE (128 << 10) /* a table of a few thousand ids is larger */
#define PUSHES 8
#define NEW_PER_PUSH 1500 /* more than a chunk (1024 ids) per push */

/* Push p of service svc: NEW_PER_PUSH stacks never seen before, and every
 * 7th stack of the earlier pushes again (known stacks, found in the index). */
static calltree_t *push_tree(symtab_t *st, const char *svc, int p)
{
    calltree_t *t = calltree_new(0);
    char stack[96];
    for (int i = 0; i < NEW_PER_PUSH; i++) {
        int n = p * NEW_PER_PUSH + i;
        snprintf(stack, sizeof stack, "main;%s_mod%d;%s_fn%d", svc, n % 37, svc, n);
        fx_add(t, st, stack, 1 + n % 5);
    }
    for (int n = 0; n < p * NEW_PER_PUSH; n += 7) {
        snprintf(stack, sizeof stack, "main;%s_mod%d;%s_fn%d", svc, n % 37, svc, n);
        fx_add(t, st, stack, 2);
    }
    return t;
}

/* Whole tables of the service in both stores hold the same ids, past three
 * chunks. */
static void same_table(storage_t *a, storage_t *b, const labels_t *l)
{
    CHECK(fx_same_nodetab(a, b, l) > 3 * NODETAB_CHUNK);
}

/* Every node of x is in y with the same total (symbols along the path). */
static int covers(const calltree_t *x, uint32_t nx, const calltree_t *y, uint32_t ny)
{
    if (calltree_total(x, nx) != calltree_total(y, ny)) return 0;
    for (uint32_t c = calltree_first_child(x, nx); c != CALLTREE_NONE;
         c = calltree_next_sibling(x, c)) {
        uint32_t d = calltree_first_child(y, ny);
        while (d != CALLTREE_NONE && calltree_sym(y, d) != calltree_sym(x, c))
            d = calltree_next_sibling(y, d);
        if (d == CALLTREE_NONE || !covers(x, c, y, d)) return 0;
    }
    return 1;
}

/* The service's flame graph (its blocks summed) equals want in both stores. */
static void same_graph(fixture_t *a, fixture_t *b, const labels_t *l, const calltree_t *want)
{
    fx_scan_t sa = fx_blocks(a->s, "t", l, 0, a->now - 600, a->now + 10);
    fx_scan_t sb = fx_blocks(b->s, "t", l, 0, b->now - 600, b->now + 10);
    CHECK_EQ_INT(calltree_node_count(sa.acc), calltree_node_count(want));
    CHECK_EQ_INT(calltree_node_count(sb.acc), calltree_node_count(want));
    CHECK(covers(want, 0, sa.acc, 0) && covers(sa.acc, 0, want, 0));
    CHECK(covers(want, 0, sb.acc, 0) && covers(sb.acc, 0, want, 0));
    calltree_free(sa.acc);
    calltree_free(sb.acc);
}

static int64_t whole_loads(storage_t *s)
{
    return (int64_t)atomic_load(&s->counters.nodetab_loads);
}

static int64_t index_reads(storage_t *s)
{
    return (int64_t)atomic_load(&s->counters.nodetab_index_reads);
}

/* The chunks of the table of l in the nodes column family (keys), and the
 * records of its edge index (one per node indexed). */
static void count_keys(storage_t *s, const labels_t *l, size_t *chunks, size_t *edges)
{
    skey_t lo, hi;
    storage_key_node(&lo, labels_hash(l) >> 1, "t", 0);
    lo.n -= 4;
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    *chunks = *edges = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        (void)rocksdb_iter_key(it, &kn);
        if (kn == lo.n + 4) (*chunks)++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    *edges = fx_index_records(s, l, NULL);
}

/* New ids created in a partial table, staged, then the batch fails: the
 * next holder finds neither the ids nor their index entries. */
static void failed_append(fixture_t *f, const labels_t *l, symtab_t *st)
{
    uint64_t token = labels_hash(l) >> 1, x, y;
    CHECK_EQ_INT(symtab_intern(st, "never_committed_x", 17, "", 0, &x), 0);
    CHECK_EQ_INT(symtab_intern(st, "never_committed_y", 17, "", 0, &y), 0);
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(f->s, token, "t", &t, &em), 0);
    CHECK(!storage_nodetab_whole(t)); /* larger than the cache, another table used since */
    uint32_t before = storage_nodetab_count(t), idx = 0, idy = 0;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    CHECK_EQ_INT(storage_nodetab_child(f->s, t, 0, x, wb, &idx), 0);
    CHECK_EQ_INT(storage_nodetab_child(f->s, t, idx, y, wb, &idy), 0);
    CHECK_EQ_INT(idx, before);
    CHECK_EQ_INT(idy, before + 1);
    CHECK_EQ_INT(storage_nodetab_stage(f->s, t, wb, &tmp), 0);
    storage_nodetab_release(f->s, t, 1); /* the batch did not commit */
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);

    CHECK_EQ_INT(storage_nodetab_acquire_append(f->s, token, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), before);
    uint32_t id = 0;
    CHECK_EQ_INT(storage_nodetab_child(f->s, t, 0, x, NULL, &id), ERR_NOT_FOUND);
    storage_nodetab_release(f->s, t, 0);
}

/* A writer that adds (root, sym) to a partial table and commits it. */
typedef struct racer {
    storage_t *s;
    uint64_t token, sym;
    uint32_t id;
    int rc;
} racer_t;

static void *race_commit(void *arg)
{
    racer_t *r = arg;
    nodetab_t *t;
    errmsg_t em = {{0}};
    r->rc = storage_nodetab_acquire_append(r->s, r->token, "t", &t, &em); /* waits */
    if (r->rc != 0) return NULL;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    r->rc = storage_nodetab_child(r->s, t, 0, r->sym, wb, &r->id);
    if (r->rc == 0) r->rc = storage_nodetab_stage(r->s, t, wb, &tmp);
    char *err = NULL;
    if (r->rc == 0) rocksdb_write(r->s->db, r->s->wopts, wb, &err);
    if (err != NULL) r->rc = ERR_IO;
    free(err);
    storage_nodetab_release(r->s, t, r->rc != 0);
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);
    return NULL;
}

/* A writer waits on a partial table whose holder's batch then fails: it
 * gets the same object, reloaded, and the id the failed batch had; the
 * failed node leaves no index entry. */
static void failed_with_waiter(fixture_t *f, const labels_t *l, symtab_t *st)
{
    uint64_t token = labels_hash(l) >> 1, x, y;
    CHECK_EQ_INT(symtab_intern(st, "failed_first", 12, "", 0, &x), 0);
    CHECK_EQ_INT(symtab_intern(st, "waiter_second", 13, "", 0, &y), 0);
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(f->s, token, "t", &t, &em), 0);
    CHECK(!storage_nodetab_whole(t));
    uint32_t idx = 0;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    CHECK_EQ_INT(storage_nodetab_child(f->s, t, 0, x, wb, &idx), 0);
    racer_t r = {.s = f->s, .token = token, .sym = y};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, race_commit, &r), 0);
    struct timespec pause = {0, 50 * 1000 * 1000}; /* let it block on the table's lock */
    nanosleep(&pause, NULL);
    storage_nodetab_release(f->s, t, 1); /* the batch failed */
    rocksdb_writebatch_destroy(wb);
    pthread_join(th, NULL);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.id, idx); /* the id nobody got */
    CHECK_EQ_INT(storage_nodetab_acquire(f->s, token, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), idx + 1);
    CHECK(storage_nodetab_sym(t, idx) == y);
    storage_nodetab_release(f->s, t, 0);
    fx_edges_t e = {.parent = 0, .want_sym = x};
    fx_index_records(f->s, l, &e);
    CHECK_EQ_INT(e.found, 0);
    fx_edges_t w = {.parent = 0, .want_sym = y};
    fx_index_records(f->s, l, &w);
    CHECK(w.found == 1 && w.child == idx); /* the waiter's node, indexed once */
}

/* Writes pushes [from, to) of both services to both stores, interleaved. */
static void push_range(fixture_t *small, fixture_t *ref, const labels_t *la, const labels_t *lb,
                       symtab_t *st, calltree_t *want_a, calltree_t *want_b, int from, int to)
{
    for (int p = from; p < to; p++) {
        calltree_t *ta = push_tree(st, "a", p), *tb = push_tree(st, "b", p);
        uint64_t id = 1000 + 2 * (uint64_t)p;
        int64_t at = (small->now - 5) * NS;
        CHECK_EQ_INT(fx_write(small->s, "t", la, ta, st, id, at, NULL), 0);
        CHECK_EQ_INT(fx_write(ref->s, "t", la, ta, st, id, at, NULL), 0);
        CHECK_EQ_INT(fx_write(small->s, "t", lb, tb, st, id + 1, at, NULL), 0);
        CHECK_EQ_INT(fx_write(ref->s, "t", lb, tb, st, id + 1, at, NULL), 0);
        calltree_merge(want_a, ta);
        calltree_merge(want_b, tb);
        calltree_free(ta);
        calltree_free(tb);
    }
}

static void interleaved(void)
{
    fixture_t small, ref;
    if (fx_init(&small) != 0 || fx_init(&ref) != 0) {
        CHECK(0);
        return;
    }
    small.opts.node_cache_bytes = SMALL_CACHE;
    CHECK_EQ_INT(fx_reopen(&small), 0);
    labels_t *la = fx_labels("a", NULL), *lb = fx_labels("b", NULL);
    symtab_t *st = symtab_new();
    calltree_t *want_a = calltree_new(0), *want_b = calltree_new(0);

    push_range(&small, &ref, la, lb, st, want_a, want_b, 0, 2);
    int64_t loads = whole_loads(small.s), reads = index_reads(small.s);
    push_range(&small, &ref, la, lb, st, want_a, want_b, 2, PUSHES / 2);
    /* tables of several chunks, evicted between pushes: never read whole */
    CHECK_EQ_INT(whole_loads(small.s), loads);
    /* the nodes of a push whose parents the table has are read from the
     * index in batches (a level of 3 at a time, up to 256 a read): a few
     * reads a push (4 pushes, up to 2,143 such nodes each), not one a node */
    reads = index_reads(small.s) - reads;
    fprintf(stderr, "index reads over 4 pushes to partial tables: %lld\n", (long long)reads);
    CHECK(reads > 0);
    CHECK(reads <= 4 * 16);

    failed_append(&small, la, st);
    push_range(&small, &ref, la, lb, st, want_a, want_b, PUSHES / 2, PUSHES);
    CHECK_EQ_INT(whole_loads(small.s), loads);

    size_t chunks, edges;
    count_keys(small.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges + 1, calltree_node_count(want_a)); /* one entry per node but the root */
    CHECK_EQ_INT(chunks, (edges + 1 + NODETAB_CHUNK - 1) / NODETAB_CHUNK);

    for (int round = 0; round < 2; round++) { /* then from disk */
        same_table(small.s, ref.s, la);
        same_table(small.s, ref.s, lb);
        same_graph(&small, &ref, la, want_a);
        same_graph(&small, &ref, lb, want_b);
        CHECK_EQ_INT(fx_reopen(&small), 0);
        CHECK_EQ_INT(fx_reopen(&ref), 0);
    }
    calltree_free(want_a);
    calltree_free(want_b);
    symtab_free(st);
    labels_free(la);
    labels_free(lb);
    fx_done(&small);
    fx_done(&ref);
}

static size_t gc(fixture_t *f)
{
    size_t n = 99, tabs = 99;
    CHECK_EQ_INT(storage_gc_series(f->s, &n), 0);
    CHECK_EQ_INT(storage_gc_nodetabs(f->s, &tabs), 0);
    return tabs;
}

/* The GC deletes a table while the cache holds it partially: its chunks and
 * index go, and the service starts again at id 1, exact. */
static void gc_partial(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
        f.opts.retention_seconds[r] = 3600;
    f.opts.profile_retention_seconds = 3600;
    f.opts.series_gc_interval_seconds = 0;
    f.opts.node_cache_bytes = SMALL_CACHE;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *la = fx_labels("a", NULL), *lb = fx_labels("b", NULL);
    symtab_t *st = symtab_new();
    for (int p = 0; p < 3; p++) {
        calltree_t *ta = push_tree(st, "a", p), *tb = push_tree(st, "b", p);
        CHECK_EQ_INT(fx_write(f.s, "t", la, ta, st, 10 + (uint64_t)p, (f.now - 5) * NS, NULL), 0);
        CHECK_EQ_INT(fx_write(f.s, "t", lb, tb, st, 20 + (uint64_t)p, (f.now - 5) * NS, NULL), 0);
        calltree_free(ta);
        calltree_free(tb);
    }
    f.now += 3 * 86400; /* a's data is past retention; b writes again */
    calltree_t *tb = push_tree(st, "b", 3);
    CHECK_EQ_INT(fx_write(f.s, "t", lb, tb, st, 30, (f.now - 5) * NS, NULL), 0);
    calltree_free(tb);
    failed_with_waiter(&f, la, st);
    tb = push_tree(st, "b", 4); /* a leaves the cache again */
    CHECK_EQ_INT(fx_write(f.s, "t", lb, tb, st, 31, (f.now - 5) * NS, NULL), 0);
    calltree_free(tb);
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, labels_hash(la) >> 1, "t", &t, &em), 0);
    CHECK(!storage_nodetab_whole(t));
    CHECK(storage_nodetab_count(t) > 3 * NODETAB_CHUNK);
    storage_nodetab_release(f.s, t, 0); /* stays cached, partial */

    CHECK_EQ_INT(gc(&f), 1);
    size_t chunks, edges;
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(chunks, 0);
    CHECK_EQ_INT(edges, 0);

    calltree_t *again = calltree_new(0);
    fx_add(again, st, "main;a_mod0;a_fn0", 4); /* a stack the old table had */
    fx_add(again, st, "main;idle", 3);
    CHECK_EQ_INT(fx_write(f.s, "t", la, again, st, 40, (f.now - 5) * NS, NULL), 0);
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, labels_hash(la) >> 1, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), calltree_node_count(again)); /* from id 1 again */
    storage_nodetab_release(f.s, t, 0);
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(chunks, 1);
    CHECK_EQ_INT(edges, 0); /* a small table again: no index */
    fx_scan_t sc = fx_blocks(f.s, "t", la, 0, f.now - 60, f.now + 10);
    CHECK(covers(again, 0, sc.acc, 0) && covers(sc.acc, 0, again, 0));
    calltree_free(sc.acc);
    calltree_free(again);
    symtab_free(st);
    labels_free(la);
    labels_free(lb);
    fx_done(&f);
}

static void put_raw(storage_t *s, const skey_t *k, const void *v, size_t n)
{
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_NODES], (const char *)k->b, k->n, v, n, &err);
    CHECK(err == NULL);
    free(err);
}

/* Adds node (parent, sym) to the table of token (tenant "t") in one batch
 * that commits; it must get id want. */
static void add_committed(fixture_t *f, uint64_t token, uint32_t parent, uint64_t sym,
                          uint32_t want)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    uint32_t id = 0;
    CHECK_EQ_INT(storage_nodetab_acquire_append(f->s, token, "t", &t, &em), 0);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    CHECK_EQ_INT(storage_nodetab_child(f->s, t, parent, sym, wb, &id), 0);
    CHECK_EQ_INT(id, want);
    CHECK_EQ_INT(storage_nodetab_stage(f->s, t, wb, &tmp), 0);
    char *err = NULL;
    rocksdb_write(f->s->db, f->s->wopts, wb, &err);
    CHECK(err == NULL);
    free(err);
    storage_nodetab_release(f->s, t, 0);
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);
}

/* Old chunk: ids 1..3 = a (root), b (under 1), a (under 2), symbol a named
 * once for the table. */
static void format6(int small)
{
    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    char *err = NULL;
    fx_put_version(&f, "6");
    /* small: below the threshold, its next write rewrites it unindexed;
     * else it is indexed at its next write, however small */
    f.opts.node_index_min_nodes = small ? 1000 : 1;
    const uint64_t token = 77, sa = 0x1111, sb = 0x2222, sc = 0x3333;
    uint8_t v[64];
    size_t n = 0;
    v[n++] = 1; /* id 1: parent 0 */
    v[n++] = 0;
    for (int i = 0; i < 8; i++)
        v[n++] = (uint8_t)(sa >> (8 * i));
    v[n++] = 1; /* id 2: parent 1 */
    v[n++] = 0;
    for (int i = 0; i < 8; i++)
        v[n++] = (uint8_t)(sb >> (8 * i));
    v[n++] = 1; /* id 3: parent 2, the table's first symbol */
    v[n++] = 1;
    skey_t k;
    storage_key_node(&k, token, "t", 0);
    put_raw(f.s, &k, v, n);
    CHECK_EQ_INT(fx_reopen(&f), 0); /* opens a format-6 directory */
    fx_check_version(&f);

    nodetab_t *t;
    errmsg_t em = {{0}};
    uint32_t id = 0;
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, token, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), 4);
    CHECK_EQ_INT(storage_nodetab_child(f.s, t, 2, sa, NULL, &id), 0);
    CHECK_EQ_INT(id, 3);
    storage_nodetab_release(f.s, t, 0); /* a read: nothing rewritten */
    add_committed(&f, token, 3, sc, 4);

    /* the whole table is now self-contained, every node indexed in buckets
     * and its last chunk marked so (or, small, marked unindexed and no
     * record) */
    size_t len = 0;
    char *chunk =
        rocksdb_get_cf(f.s->db, f.s->ropts, f.s->cf[CF_NODES], (const char *)k.b, k.n, &len, &err);
    CHECK(chunk != NULL && len > 2 && chunk[0] == 0 && chunk[1] == 0 && (chunk[2] == 0) == !small);
    free(chunk);
    const uint32_t parents[] = {0, 0, 1, 2, 3};
    const uint64_t syms[] = {0, sa, sb, sa, sc};
    for (uint32_t i = 1; i <= 4; i++) {
        fx_edges_t e = {.parent = parents[i], .want_sym = syms[i]};
        CHECK_EQ_INT(storage_nodetab_index_each(f.s, token, "t", fx_edge_seen, &e), 0);
        CHECK_EQ_INT(e.n, small ? 0 : 4);
        if (!small) CHECK(e.found == 1 && e.child == i);
    }
    CHECK_EQ_INT(fx_reopen(&f), 0);
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, token, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), 5);
    for (uint32_t i = 1; i <= 4; i++) {
        CHECK_EQ_INT(storage_nodetab_parent(t, i), parents[i]);
        CHECK(storage_nodetab_sym(t, i) == syms[i]);
    }
    storage_nodetab_release(f.s, t, 0);
    fx_done(&f);
}

/* Keys of the per-node index of formats 7-18 under token (tenant "t"). */
static size_t per_node_keys(storage_t *s, uint64_t token)
{
    skey_t lo, hi;
    storage_key_node(&lo, token, "t", 0);
    lo.n -= 4;
    hi = lo;
    storage_key_u8(&lo, NODETAB_EDGE_TAG);
    storage_key_u8(&hi, NODETAB_EDGE_TAG + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_NODES]);
    size_t n = 0;
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rocksdb_iter_valid(it);
         rocksdb_iter_next(it))
        n++;
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return n;
}

/* A table of storage format 18, indexed per node (its chunk marked by one
 * byte, an entry per node): read whole as unindexed, its next write deletes
 * the per-node entries and indexes every node in buckets (small: marks it
 * unindexed, entries deleted all the same). Ids 1..3 = a (root), b (under
 * 1), a (under 2). */
static void per_node_format18(int small)
{
    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    fx_put_version(&f, "18");
    f.opts.node_index_min_nodes = small ? 1000 : 1;
    const uint64_t token = 78, sa = 0x1111, sb = 0x2222, sc = 0x3333;
    const uint32_t parents[] = {0, 0, 1, 2, 3};
    const uint64_t syms[] = {0, sa, sb, sa, sc};
    uint8_t v[64];
    size_t n = 0;
    v[n++] = 0; /* self-contained, indexed per node */
    for (int id = 1; id <= 3; id++) {
        v[n++] = 1;               /* parent id - 1 */
        v[n++] = id == 3 ? 1 : 0; /* id 3 names the chunk's first symbol again */
        for (int i = 0; id < 3 && i < 8; i++)
            v[n++] = (uint8_t)(syms[id] >> (8 * i));
    }
    skey_t k;
    storage_key_node(&k, token, "t", 0);
    put_raw(f.s, &k, v, n);
    for (uint32_t id = 1; id <= 3; id++) {
        skey_t e;
        uint8_t one = (uint8_t)id;
        storage_key_node_edge(&e, token, "t", parents[id], syms[id]);
        put_raw(f.s, &e, &one, 1);
    }
    CHECK_EQ_INT(fx_reopen(&f), 0);
    fx_check_version(&f);

    nodetab_t *t;
    errmsg_t em = {{0}};
    uint32_t id = 0;
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, token, "t", &t, &em), 0);
    CHECK(storage_nodetab_whole(t));
    CHECK_EQ_INT(storage_nodetab_count(t), 4);
    CHECK_EQ_INT(storage_nodetab_child(f.s, t, 2, sa, NULL, &id), 0);
    CHECK_EQ_INT(id, 3);
    storage_nodetab_release(f.s, t, 0);
    add_committed(&f, token, 3, sc, 4);
    char *err = NULL;

    CHECK_EQ_INT(per_node_keys(f.s, token), 0);
    size_t len = 0;
    char *chunk =
        rocksdb_get_cf(f.s->db, f.s->ropts, f.s->cf[CF_NODES], (const char *)k.b, k.n, &len, &err);
    CHECK(chunk != NULL && len > 2 && chunk[0] == 0 && chunk[1] == 0 && (chunk[2] == 0) == !small);
    free(chunk);
    for (uint32_t i = 1; i <= 4; i++) {
        fx_edges_t e = {.parent = parents[i], .want_sym = syms[i]};
        CHECK_EQ_INT(storage_nodetab_index_each(f.s, token, "t", fx_edge_seen, &e), 0);
        CHECK_EQ_INT(e.n, small ? 0 : 4);
        if (!small) CHECK(e.found == 1 && e.child == i);
    }
    CHECK_EQ_INT(fx_reopen(&f), 0); /* one chunk: read whole */
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, token, "t", &t, &em), 0);
    for (uint32_t i = 1; i <= 4; i++) {
        CHECK_EQ_INT(storage_nodetab_child(f.s, t, parents[i], syms[i], NULL, &id), 0);
        CHECK_EQ_INT(id, i);
    }
    CHECK_EQ_INT(storage_nodetab_child(f.s, t, 1, sa, NULL, &id), ERR_NOT_FOUND);
    storage_nodetab_release(f.s, t, 0);
    fx_done(&f);
}

static uint32_t table_count(storage_t *s, const labels_t *l)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(s, labels_hash(l) >> 1, "t", &t, &em), 0);
    uint32_t n = storage_nodetab_count(t);
    storage_nodetab_release(s, t, 0);
    return n;
}

/* Adds nodes (root, "lazy_i") for i < n to the table of l in one batch that
 * commits or not; returns the batch's operation count less the index
 * buckets that every node's parent falls in (a value each when the batch
 * indexes the whole table) and the per-node entries of the children of
 * parents wider than a bucket lists. */
static int cross(fixture_t *f, const labels_t *l, symtab_t *st, int n, int commit)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(f->s, labels_hash(l) >> 1, "t", &t, &em), 0);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    for (int i = 0; i < n; i++) {
        char name[32];
        int len = snprintf(name, sizeof name, "lazy_%d", i);
        uint64_t sym;
        uint32_t id;
        CHECK_EQ_INT(symtab_intern(st, name, (size_t)len, "", 0, &sym), 0);
        CHECK_EQ_INT(storage_nodetab_child(f->s, t, 0, sym, wb, &id), 0);
    }
    CHECK_EQ_INT(storage_nodetab_stage(f->s, t, wb, &tmp), 0);
    int ops = rocksdb_writebatch_count(wb);
    uint8_t seen[4096 >> NODETAB_BUCKET_SHIFT] = {0};
    uint16_t children[4096] = {0};
    uint32_t count = storage_nodetab_count(t);
    CHECK(storage_nodetab_whole(t) && count <= 4096);
    for (uint32_t id = 1; id < count && id < 4096; id++) {
        uint32_t p = storage_nodetab_parent(t, id);
        ops -= !seen[p >> NODETAB_BUCKET_SHIFT];
        seen[p >> NODETAB_BUCKET_SHIFT] = 1;
        children[p]++;
    }
    for (uint32_t p = 0; p < count && p < 4096; p++) /* a wide parent's are per-node entries */
        ops -= children[p] > NODETAB_BUCKET_FANOUT ? children[p] : 0;
    char *err = NULL;
    if (commit) rocksdb_write(f->s->db, f->s->wopts, wb, &err);
    CHECK(err == NULL);
    free(err);
    storage_nodetab_release(f->s, t, !commit);
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);
    return ops;
}

#define LAZY_MIN 1500

static void lazy_index(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    f.opts.node_index_min_nodes = LAZY_MIN;
    f.opts.node_cache_bytes = 8 << 20;  /* the setting, not the cache, sets the threshold */
    f.opts.node_whole_read_percent = 0; /* an indexed table's miss reads it partially */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *la = fx_labels("a", NULL), *lb = fx_labels("b", NULL);
    symtab_t *st = symtab_new();
    size_t chunks, edges;
    int64_t total = 0;
    total += fx_push_stacks(&f, la, "a", st, 0, 1000, 1); /* 1,039 nodes: two chunks, no index */
    fx_push_stacks(&f, lb, "b", st, 0, 10, 2);
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(chunks, 2);
    CHECK_EQ_INT(edges, 0);
    count_keys(f.s, lb, &chunks, &edges);
    CHECK_EQ_INT(chunks, 1);
    CHECK_EQ_INT(edges, 0);

    CHECK_EQ_INT(fx_reopen(&f), 0); /* not cached: a writer reads it whole */
    total += fx_push_stacks(&f, la, "a", st, 1000, 100, 3);
    CHECK_EQ_INT(whole_loads(f.s), 1);
    uint32_t n = table_count(f.s, la);
    CHECK_EQ_INT(n, 1139);
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges, 0);

    /* the batch that crosses the threshold carries the last chunk and the
     * buckets of every node; failed, it leaves the table unindexed */
    const int add = LAZY_MIN - 1139 + 50;
    CHECK_EQ_INT(cross(&f, la, st, add, 0), 1);
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges, 0);
    CHECK_EQ_INT(table_count(f.s, la), n);
    total +=
        fx_push_stacks(&f, la, "a", st, 1100, 20, 4); /* still a small table's write: no entries */
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges, 0);
    n += 20;
    CHECK_EQ_INT(table_count(f.s, la), n);
    CHECK_EQ_INT(cross(&f, la, st, add, 1), 1);
    n += (uint32_t)add;
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges + 1, n);
    CHECK_EQ_INT(chunks, 2);

    /* reopened: a push to a reads its last chunk and the index only; b,
     * small, is read whole */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    total += fx_push_stacks(&f, la, "a", st, 1110, 800, 5); /* 790 new stacks, 10 known */
    CHECK_EQ_INT(whole_loads(f.s), 0);
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire_append(f.s, labels_hash(la) >> 1, "t", &t, &em), 0);
    CHECK(!storage_nodetab_whole(t));
    storage_nodetab_release(f.s, t, 0);
    n += 790;
    count_keys(f.s, la, &chunks, &edges);
    CHECK_EQ_INT(edges + 1, n);
    CHECK_EQ_INT(chunks, (n + NODETAB_CHUNK - 1) / NODETAB_CHUNK);
    fx_push_stacks(&f, lb, "b", st, 10, 5, 6);
    CHECK_EQ_INT(whole_loads(f.s), 1);
    count_keys(f.s, lb, &chunks, &edges);
    CHECK_EQ_INT(edges, 0);
    CHECK_EQ_INT(table_count(f.s, la), n);
    CHECK_EQ_INT(fx_block_total(f.s, "t", la, 0, f.now - 60, f.now + 10, NULL), total);
    symtab_free(st);
    labels_free(la);
    labels_free(lb);
    fx_done(&f);
}

int main(void)
{
    lazy_index();
    interleaved();
    gc_partial();
    format6(0);
    format6(1);
    per_node_format18(0);
    per_node_format18(1);
    return check_exit();
}
