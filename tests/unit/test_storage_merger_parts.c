/* test_storage_merger_parts.c — a merger reads a window's unfolded merge
 * operands as parts (storage_scan_window_parts) and sums them exactly.
 *
 * Pushes to one series in one window stay in the memtable as merge operands.
 * While a merger scans, the blocks merge operator hands them to the scan's
 * sink as they lie (checked on a parts scan: one window, every push a part),
 * which the merger adds part by part; a plain scan gets their sum, also
 * right after a parts scan (the sink is cleared), and an error of the
 * parts' callback ends the scan with it.
 * The merged tree is compared with the one built from the folded blocks
 * (storage_scan_blocks), as ingested, with corrupt operands among the good
 * ones (skipped and counted, as the fold skips them), with a window of
 * hundreds of operands, and after a compaction. With window_successive_merges set, a write folds
 * the window's operands once there are that many, so a read meets fewer parts (the sum unchanged).
 * A 10 s window of trees kept in no block (format 11), scaled and over max_profile_tree_bytes and
 * as format 10 stored them, mixed, reads as the sum of the trees written. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/hash.h"

#define TOKEN 0x0badc0ffee123457ull
#define PUSHES 9

static void push(fixture_t *f, labels_t *l, symtab_t *st, int i)
{
    fx_push(f->s, l, st, TOKEN, i, (f->now - 5) * NS, 100 + (uint64_t)i);
}

typedef struct raw {
    int values, parts, merged; /* merged: windows handed over with operands */
    uint8_t first;             /* the first byte of the last window's first part */
    int fail_at;               /* > 0: the callback fails on that window */
} raw_t;

static int parts_cb(void *ctx, int64_t window, const char *base, size_t base_len,
                    const char *const *ops, const size_t *op_lens, int nops)
{
    raw_t *r = ctx;
    r->values++;
    r->parts += nops + (base != NULL);
    r->merged += nops > 0;
    const char *first = base != NULL ? base : nops > 0 ? ops[0] : NULL;
    r->first = first != NULL && (base != NULL ? base_len : op_lens[0]) > 0 ? (uint8_t)first[0] : 0;
    return r->values == r->fail_at ? ERR_CORRUPT : 0;
}

static int value_cb(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    raw_t *r = ctx;
    r->values++;
    r->first = n > 0 ? v[0] : 0;
    return 0;
}

/* The 1 min window as it lies (parts), or folded by the merge operator
 * (the 10 s window's block holds no kept tree: format 11). */
static raw_t scan_raw(fixture_t *f, uint64_t sid, int parts)
{
    raw_t r = {0};
    if (parts)
        CHECK_EQ_INT(storage_scan_window_parts(f->s, "t", TOKEN, sid, 1, f->now - 3600, f->now + 60,
                                               parts_cb, &r),
                     0);
    else
        CHECK_EQ_INT(storage_scan_window_values(f->s, CF_BLOCKS, "t", TOKEN, sid, 1, f->now - 3600,
                                                f->now + 60, value_cb, &r),
                     0);
    return r;
}

static int sum_cb(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    return calltree_decode_merge(ctx, v, n);
}

typedef struct triple {
    uint64_t path;
    int64_t self, total;
} triple_t;

static int cmp_triple(const void *a, const void *b)
{
    const triple_t *x = a, *y = b;
    if (x->path != y->path) return x->path < y->path ? -1 : 1;
    return (x->self > y->self) - (x->self < y->self);
}

/* The tree as sorted (path hash, self, total) triples: equal trees give equal
 * lists whatever the order their nodes were made in (parents first). */
static triple_t *canonical(const calltree_t *t, size_t *n)
{
    *n = calltree_node_count(t);
    triple_t *v = calloc(*n, sizeof *v);
    for (uint32_t i = 0; i < *n; i++) {
        uint32_t p = calltree_parent(t, i);
        uint64_t ph = p == CALLTREE_NONE ? 0 : v[p].path;
        CHECK(p == CALLTREE_NONE || p < i);
        v[i] = (triple_t){hash_bytes64((uint64_t[2]){ph, calltree_sym(t, i)}, 16),
                          calltree_self(t, i), calltree_total(t, i)};
    }
    qsort(v, *n, sizeof *v, cmp_triple);
    return v;
}

/* The merger's tree and the folded blocks' tree: must be equal. */
static void check_same(fixture_t *f, uint64_t sid)
{
    for (int res = 0; res < STORAGE_RESOLUTION_COUNT; res++) {
        storage_merger_t *m = NULL;
        CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
        CHECK_EQ_INT(storage_merger_add(m, TOKEN, sid, res, 0, f->now + 86400), 0);
        calltree_t *got = calltree_new(0), *want = calltree_new(0);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_merger_finish(m, got, &em), 0);
        CHECK_EQ_INT(
            storage_scan_blocks(f->s, "t", TOKEN, sid, res, 0, f->now + 86400, sum_cb, want), 0);
        CHECK(calltree_root_total(want) > 0);
        size_t na, nb;
        triple_t *a = canonical(got, &na), *b = canonical(want, &nb);
        CHECK_EQ_INT(na, nb);
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
        free(a);
        free(b);
        calltree_free(got);
        calltree_free(want);
        storage_merger_free(m);
    }
}

static void raw_merge(fixture_t *f, const skey_t *k, const void *v, size_t n)
{
    char *err = NULL;
    rocksdb_merge_cf(f->s->db, f->s->wopts, f->s->cf[CF_BLOCKS], (const char *)k->b, k->n, v, n,
                     &err);
    CHECK(err == NULL);
    free(err);
}

/* Corrupt operands among the good ones: the merger skips (and counts) each
 * part that does not decode, as the fold does, and sums the rest. */
static void corrupt_parts(fixture_t *f, labels_t *l, symtab_t *st)
{
    static const uint8_t garbage[] = {0x02, 0x01, 0x05, 0x01}; /* 5 pairs promised, none there */
    static const uint8_t frame[] = {SPARSE_TAKEN};             /* what a merge handing over shows */
    uint64_t sid = labels_hash(l);
    skey_t k;
    storage_key_window(&k, TOKEN, "t", sid, 1, (f->now - 5) / 60 * 60);
    raw_merge(f, &k, garbage, sizeof garbage);
    raw_merge(f, &k, frame, sizeof frame);
    push(f, l, st, PUSHES); /* a good operand after them */
    storage_stats_t before, after;
    storage_stats(f->s, &before);
    storage_merger_t *m = NULL;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, TOKEN, sid, 1, 0, f->now + 86400), 0);
    storage_merger_free(m);
    storage_stats(f->s, &after);
    CHECK(after.corrupt_operands >= before.corrupt_operands + 2);
    check_same(f, sid);
}

/* A window of hundreds of operands (every push a part, in one window): the
 * merger's sum is the folded blocks' at every resolution, as ingested. */
static void many_parts(fixture_t *f, symtab_t *st)
{
    labels_t *l = fx_labels("svc", "many");
    uint64_t sid = labels_hash(l);
    for (int i = 0; i < 300; i++)
        fx_push(f->s, l, st, TOKEN, i, (f->now - 5) * NS, 1000 + (uint64_t)i);
    raw_t on = scan_raw(f, sid, 1);
    CHECK_EQ_INT(on.values, 1);
    CHECK_EQ_INT(on.parts, 300);
    check_same(f, sid);
    labels_free(l);
}

/* The parts' callback failing on the second of three windows, each of
 * operands: the scan ends with its error, and the next plain scan folds
 * (no sink left behind). */
static void failing_parts(fixture_t *f, symtab_t *st)
{
    labels_t *l = fx_labels("svc", "failing");
    uint64_t sid = labels_hash(l);
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < 3; i++)
            fx_push(f->s, l, st, TOKEN, i, (f->now - 5 - 60 * w) * NS, 200 + (uint64_t)(w * 3 + i));
    for (int fail = 1; fail <= 3; fail++) {
        raw_t r = {.fail_at = fail};
        CHECK_EQ_INT(storage_scan_window_parts(f->s, "t", TOKEN, sid, 1, f->now - 3600, f->now + 60,
                                               parts_cb, &r),
                     ERR_CORRUPT);
        CHECK_EQ_INT(r.values, fail);
        raw_t off = scan_raw(f, sid, 0);
        CHECK_EQ_INT(off.values, 3);
        CHECK_EQ_INT(off.first, SPARSE_VERSION);
    }
    labels_free(l);
}

/* Reopened folding every 3 merges: 9 pushes to a new series leave its
 * window a folded value and at most 3 operands, the same sum. */
static void folded_at_write(fixture_t *f, symtab_t *st)
{
    f->opts.window_successive_merges = 3;
    CHECK_EQ_INT(fx_reopen(f), 0);
    labels_t *l = fx_labels("svc", "folded");
    uint64_t sid = labels_hash(l);
    for (int i = 0; i < PUSHES; i++)
        push(f, l, st, i);
    raw_t on = scan_raw(f, sid, 1);
    CHECK_EQ_INT(on.values, 1);
    CHECK((on.parts == 1 && on.merged == 0 && on.first == SPARSE_VERSION) ||
          (on.parts >= 2 && on.parts <= 4));
    check_same(f, sid);
    labels_free(l);
}

/* The tree a merger sums for series sid at res over the day. */
static calltree_t *merged(fixture_t *f, uint64_t sid, int res)
{
    storage_merger_t *m = NULL;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, TOKEN, sid, res, 0, f->now + 86400), 0);
    calltree_t *t = calltree_new(0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_finish(m, t, &em), 0);
    storage_merger_free(m);
    return t;
}

/* got and want are the same tree, whatever order their nodes were made in. */
static void check_tree(const calltree_t *got, const calltree_t *want)
{
    size_t na, nb;
    triple_t *a = canonical(got, &na), *b = canonical(want, &nb);
    CHECK_EQ_INT(na, nb);
    CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
    free(a);
    free(b);
}

/* Profile i of the mixed window: a tree of 2 + 30 * (i >= 3) stacks. */
static calltree_t *mix_tree(symtab_t *st, int i, int64_t scale)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int k = 0; k < 2 + 30 * (i >= 3); k++) {
        snprintf(stack, sizeof stack, "main;m%d;n%d", k % 5, (k + i) % 13);
        fx_add(t, st, stack, (1 + k + i) * scale);
    }
    return t;
}

/* Clears PTREE_FLAG_UNBLOCKED of series sid's tree of profile pid and
 * merges the tree into the 10 s block: what format 10 stored. */
static void make_format10(fixture_t *f, uint64_t sid, uint64_t pid)
{
    skey_t k;
    uint8_t id[16];
    fx_id(id, pid);
    storage_key_ptree(&k, TOKEN, "t", sid, (f->now - 5) * NS, id);
    char *err = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_PTREES], (const char *)k.b, k.n, &n,
                             &err);
    CHECK(v != NULL && n > PTREE_HEADER_LEN && (v[1] & PTREE_FLAG_UNBLOCKED) &&
          !(v[1] & PTREE_FLAG_SCALED));
    if (v == NULL) return;
    v[1] &= (char)~PTREE_FLAG_UNBLOCKED;
    rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[CF_PTREES], (const char *)k.b, k.n, v, n, &err);
    CHECK(err == NULL);
    skey_t wk;
    storage_key_window(&wk, TOKEN, "t", sid, 0, (f->now - 5) / 10 * 10);
    raw_merge(f, &wk, v + PTREE_HEADER_LEN, n - PTREE_HEADER_LEN);
    free(v);
}

static int64_t raw_total;
static int raw_total_cb(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    sparse_vec_t vec;
    storage_sparse_init(&vec);
    CHECK_EQ_INT(storage_sparse_decode(v, n, &vec), 0);
    for (size_t i = 0; i < vec.n; i++)
        raw_total += vec.val[i];
    storage_sparse_free(&vec);
    return 0;
}

/* Format 11: one 10 s window of two series (b = 3 a, so b's kept trees are
 * scaled) mixing trees kept in no block (flagged), trees over
 * max_profile_tree_bytes (in the block) and a tree as format 10 stored it
 * (kept, unflagged, in the block): the merger and storage_scan_blocks read
 * the window as the sum of every tree written, at 10 s and coarser, and
 * the block holds only the trees not flagged. */
static void unblocked_mix(fixture_t *f, symtab_t *st)
{
    f->opts.max_profile_tree_bytes = 64;
    CHECK_EQ_INT(fx_reopen(f), 0);
    labels_t *la = fx_labels("svc", "mixa"), *lb = fx_labels("svc", "mixb");
    uint64_t ida = labels_hash(la), idb = labels_hash(lb);
    calltree_t *want_a = calltree_new(0), *want_b = calltree_new(0);
    int64_t big_a = 0;
    for (int i = 0; i < 6; i++) {
        calltree_t *ta = mix_tree(st, i, 1), *tb = mix_tree(st, i, 3);
        storage_series_write_t sw[2] = {
            {.labels = la, .series_id = ida, .token = TOKEN, .tree = ta},
            {.labels = lb, .series_id = idb, .token = TOKEN, .tree = tb}};
        storage_profile_write_t p = {
            .tenant = "t", .time_ns = (f->now - 5) * NS, .series = sw, .nseries = 2, .symbols = st};
        fx_id(p.profile_id, 500 + (uint64_t)i);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
        CHECK_EQ_INT(calltree_merge(want_a, ta), 0);
        CHECK_EQ_INT(calltree_merge(want_b, tb), 0);
        if (i >= 3) big_a += calltree_root_total(ta);
        calltree_free(ta);
        calltree_free(tb);
    }
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK(stats.oversize_ptrees >= 3);
    raw_total = 0; /* only the trees over the limit are in a's block */
    CHECK_EQ_INT(storage_scan_window_values(f->s, CF_BLOCKS, "t", TOKEN, ida, 0, 0, f->now + 86400,
                                            raw_total_cb, NULL),
                 0);
    CHECK_EQ_INT(raw_total, big_a);
    calltree_t *one = mix_tree(st, 1, 1);
    make_format10(f, ida, 501);
    raw_total = 0;
    CHECK_EQ_INT(storage_scan_window_values(f->s, CF_BLOCKS, "t", TOKEN, ida, 0, 0, f->now + 86400,
                                            raw_total_cb, NULL),
                 0);
    CHECK_EQ_INT(raw_total, big_a + calltree_root_total(one));
    calltree_free(one);
    for (int pass = 0; pass < 2; pass++) { /* as ingested, then compacted */
        for (int res = 0; res < 2; res++) {
            calltree_t *ga = merged(f, ida, res), *gb = merged(f, idb, res);
            check_tree(ga, want_a);
            check_tree(gb, want_b);
            calltree_t *sa = calltree_new(0);
            CHECK_EQ_INT(
                storage_scan_blocks(f->s, "t", TOKEN, ida, res, 0, f->now + 86400, sum_cb, sa), 0);
            check_tree(sa, want_a);
            calltree_free(ga);
            calltree_free(gb);
            calltree_free(sa);
        }
        CHECK_EQ_INT(storage_compact(f->s), 0);
    }
    calltree_free(want_a);
    calltree_free(want_b);
    labels_free(la);
    labels_free(lb);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.window_successive_merges = 0; /* every push stays an operand */
    if (fx_reopen(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *l = fx_labels("svc", "parts");
    uint64_t sid = labels_hash(l);
    for (int i = 0; i < PUSHES; i++)
        push(&f, l, st, i);
    raw_t on = scan_raw(&f, sid, 1), off = scan_raw(&f, sid, 0);
    CHECK_EQ_INT(on.values, 1);
    CHECK_EQ_INT(on.merged, 1);
    CHECK_EQ_INT(on.parts, PUSHES);
    CHECK_EQ_INT(on.first, SPARSE_VERSION);
    CHECK_EQ_INT(off.values, 1); /* the sink cleared: the plain scan folds */
    CHECK_EQ_INT(off.first, SPARSE_VERSION);
    check_same(&f, sid);
    many_parts(&f, st);
    failing_parts(&f, st);
    corrupt_parts(&f, l, st);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    on = scan_raw(&f, sid, 1);
    CHECK_EQ_INT(on.parts, 1); /* folded by the compaction: one value */
    CHECK_EQ_INT(on.merged, 0);
    CHECK_EQ_INT(on.first, SPARSE_VERSION);
    check_same(&f, sid);
    folded_at_write(&f, st);
    unblocked_mix(&f, st);
    labels_free(l);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
