/* test_storage_span_cap.c — stored span trees are bounded: storage_cap_tree
 * keeps the heaviest nodes and folds the rest into `other` with the total
 * exact; a span id named by many pushes of fresh stacks stays within
 * max_span_nodes nodes after its operands merge (at read and after a
 * compaction), and no write or merge fails. Before, span trees folded
 * without any node limit. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/hash.h"
#include "storage/storage_int.h"

static void test_cap_tree(void)
{
    calltree_t *t = calltree_new(0);
    int64_t sum = 0;
    for (uint64_t i = 0; i < 200; i++) { /* main;f_i;g_i with weight i+1 */
        uint64_t stack[3] = {100, 1000 + i, 5000 + i};
        CHECK_EQ_INT(calltree_add_stack(t, stack, 3, (int64_t)i + 1), 0);
        sum += (int64_t)i + 1;
    }
    calltree_t *c = NULL;
    CHECK_EQ_INT(storage_cap_tree(t, 1000, &c), 0);
    CHECK(c == NULL); /* within the cap: untouched */
    CHECK_EQ_INT(storage_cap_tree(t, 21, &c), 0);
    CHECK(c != NULL);
    if (c == NULL) return;
    CHECK(calltree_node_count(c) <= 21);
    CHECK_EQ_INT(calltree_root_total(c), sum);
    /* the heaviest stack (f_199) is kept whole; an `other` holds the rest */
    int heavy = 0, other = 0;
    for (uint32_t i = 1; i < calltree_node_count(c); i++) {
        if (calltree_sym(c, i) == 1000 + 199) heavy = 1;
        if (calltree_sym(c, i) == SYM_OTHER) other = 1;
    }
    CHECK(heavy && other);
    calltree_free(c);
    calltree_free(t);
}

typedef struct seen {
    size_t trees, max_nodes;
    int64_t total;
} seen_t;

static int span_cb(void *ctx, uint64_t token, uint64_t series_id, int64_t window, unsigned flags,
                   const uint8_t *v, size_t n)
{
    (void)token;
    (void)series_id;
    (void)window;
    seen_t *s = ctx;
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    s->trees++;
    if (calltree_node_count(t) > s->max_nodes) s->max_nodes = calltree_node_count(t);
    s->total += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static void test_span_id_named_by_many_pushes(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return;
    f.opts.max_span_nodes = 64;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l = fx_labels("spansvc", NULL);
    symtab_t *st = symtab_new();
    int64_t B = f.now - 600 - (f.now - 600) % 10, want = 0;
    for (int push = 0; push < 40; push++) { /* 40 pushes x 30 fresh stacks, one span id */
        calltree_t *t = calltree_new(0);
        for (int k = 0; k < 30; k++) {
            char stack[64];
            snprintf(stack, sizeof stack, "main;h%d;w%d_%d", push, push, k);
            fx_add(t, st, stack, 1 + k);
            want += 1 + k;
        }
        storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, 0xabc, t};
        storage_series_write_t sw = {
            .labels = l, .series_id = labels_hash(l), .tree = t, .spans = &sp, .nspans = 1};
        sw.token = sw.series_id >> 1;
        storage_profile_write_t p = {
            .tenant = "sp", .time_ns = B * NS, .series = &sw, .nseries = 1, .symbols = st};
        fx_id(p.profile_id, (uint64_t)push + 1);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_write_profile(f.s, &p, NULL, &em), 0);
        calltree_free(t);
    }
    for (int round = 0; round < 2; round++) { /* merged at read, then compacted */
        seen_t s = {0};
        CHECK_EQ_INT(
            storage_scan_spans(f.s, "sp", STORAGE_SPAN_KIND_SPAN, 0xabc, B, B + 10, span_cb, &s),
            0);
        CHECK_EQ_INT(s.trees, 1);
        CHECK_EQ_INT(s.total, want);
        CHECK(s.max_nodes <= 64);
        storage_stats_t stats;
        CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
        if (round == 0) CHECK(stats.capped_spans > 0); /* the merge at read, counted */
        CHECK_EQ_INT(fx_reopen(&f), 0);
    }
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
}

static int raw_cb(void *ctx, uint64_t token, uint64_t series_id, int64_t window, unsigned flags,
                  const uint8_t *v, size_t n)
{
    (void)token;
    (void)series_id;
    (void)window;
    (void)flags;
    buf_t *raw = ctx;
    buf_reset(raw);
    return buf_append(raw, v, n);
}

/* Span id `id`'s one stored value in window B (into raw), decoded
 * (caller frees). */
static calltree_t *stored_span(fixture_t *f, uint64_t id, int64_t B, buf_t *raw)
{
    buf_reset(raw);
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "enc", STORAGE_SPAN_KIND_SPAN, id, B, B + 10, raw_cb, raw), 0);
    calltree_t *t = calltree_new(0);
    CHECK(raw->len > 0);
    CHECK_EQ_INT(calltree_decode_merge(t, raw->data, raw->len), 0);
    return t;
}

/* Sum of the totals of the nodes of t with symbol sym. */
static int64_t sym_total(const calltree_t *t, uint64_t sym)
{
    int64_t v = 0;
    for (uint32_t i = 1; i < calltree_node_count(t); i++)
        if (calltree_sym(t, i) == sym) v += calltree_total(t, i);
    return v;
}

/* Every symbol of st is stored for tenant "enc". */
static void check_symbols_stored(fixture_t *f, const symtab_t *st)
{
    size_t ns = symtab_count(st);
    uint64_t *ids = malloc(ns * sizeof *ids);
    for (size_t i = 0; i < ns; i++)
        ids[i] = symtab_id_at(st, i);
    symtab_t *got = symtab_new();
    CHECK_EQ_INT(storage_load_symbols(f->s, "enc", ids, ns, got), 0);
    CHECK_EQ_INT(symtab_count(got), ns);
    symtab_free(got);
    free(ids);
}

/* A span tree handed over encoded (storage_span_tree_t.enc, as ingest
 * holds them) is stored as the same tree handed over as a tree: the same
 * bytes within max_span_nodes, the same kept nodes and totals past it
 * (decoded, then capped), and its symbols stored. */
static void test_encoded_span_trees(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return;
    f.opts.max_span_nodes = 64;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l = fx_labels("encsvc", NULL);
    symtab_t *st = symtab_new();
    int64_t B = f.now - 600 - (f.now - 600) % 10;
    for (int big = 0; big < 2; big++) {
        calltree_t *t = calltree_new(0);
        for (int k = 0; k < (big ? 100 : 20); k++) { /* distinct weights: no ties at the cap */
            char stack[64];
            snprintf(stack, sizeof stack, "main;enc%d_f%d;g%d", big, k % 7, k);
            fx_add(t, st, stack, 1 + 3 * k);
        }
        buf_t enc;
        buf_init(&enc, BUF_UNLIMITED);
        CHECK_EQ_INT(calltree_encode(t, &enc), 0);
        uint64_t as_tree = 0x100 + (uint64_t)big, as_enc = 0x200 + (uint64_t)big;
        /* the encoded one first: its symbols are new to the store */
        storage_span_tree_t sp[2] = {
            {.kind = STORAGE_SPAN_KIND_SPAN, .id = as_enc, .enc = enc.data, .enc_len = enc.len},
            {.kind = STORAGE_SPAN_KIND_SPAN, .id = as_tree, .tree = t}};
        calltree_t *main_only = calltree_new(0); /* the spans alone name their symbols */
        fx_add(main_only, st, "main", 1);
        storage_series_write_t sw = {
            .labels = l, .series_id = labels_hash(l), .tree = main_only, .spans = sp, .nspans = 2};
        sw.token = sw.series_id >> 1;
        storage_profile_write_t p = {
            .tenant = "enc", .time_ns = B * NS, .series = &sw, .nseries = 1, .symbols = st};
        errmsg_t em = {{0}};
        sw.nspans = 1; /* the encoded one alone: only it names the symbols */
        fx_id(p.profile_id, 100 + (uint64_t)big);
        CHECK_EQ_INT(storage_write_profile(f.s, &p, NULL, &em), 0);
        check_symbols_stored(&f, st);
        sw.spans = &sp[1];
        fx_id(p.profile_id, 200 + (uint64_t)big);
        CHECK_EQ_INT(storage_write_profile(f.s, &p, NULL, &em), 0);
        buf_t r1, r2;
        buf_init(&r1, BUF_UNLIMITED);
        buf_init(&r2, BUF_UNLIMITED);
        calltree_t *a = stored_span(&f, as_tree, B, &r1), *b = stored_span(&f, as_enc, B, &r2);
        CHECK_EQ_INT(calltree_root_total(a), calltree_root_total(t));
        CHECK_EQ_INT(calltree_root_total(b), calltree_root_total(t));
        CHECK_EQ_INT(calltree_node_count(a), calltree_node_count(b));
        if (!big) {
            CHECK(r1.len == r2.len && memcmp(r1.data, r2.data, r1.len) == 0);
        } else {
            CHECK(calltree_node_count(b) <= 64 && calltree_node_count(t) > 64);
            for (uint32_t i = 1; i < calltree_node_count(a); i++)
                CHECK_EQ_INT(sym_total(a, calltree_sym(a, i)), sym_total(b, calltree_sym(a, i)));
        }
        calltree_free(a);
        calltree_free(b);
        buf_free(&r1);
        buf_free(&r2);
        buf_free(&enc);
        calltree_free(t);
        calltree_free(main_only);
    }
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
}

int main(void)
{
    test_cap_tree();
    test_span_id_named_by_many_pushes();
    test_encoded_span_trees();
    return check_exit();
}
