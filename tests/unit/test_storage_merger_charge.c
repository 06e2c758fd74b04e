/* test_storage_merger_charge.c — a merger's working memory is charged to the
 * caller's budget (storage_merger_set_charge): the dense vector of a series
 * whose blocks name ~40,000 stack nodes (320 KB), the tree-build scratch and
 * the forests. Over the budget, the merge stops with ERR_UNAVAILABLE; every
 * byte charged is given back when the merger is freed, and with room the
 * same merge is exact. Before, this memory (the per-token accumulators of
 * every query and every share a node serves) was outside any budget.
 * Two mergers on two charges, one absorbing the other (a render's series
 * read by two threads): the tree of one merger that read everything, and
 * every byte given back to the budget. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

#define TOKEN 0x1234567890abcdefull
#define STACKS 20000

static void write_series(fixture_t *f, labels_t *l, symtab_t *st)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int i = 0; i < STACKS; i++) {
        snprintf(stack, sizeof stack, "main;f%d;g%d", i, i);
        fx_add(t, st, stack, 1);
    }
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = TOKEN;
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, 1);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
}

/* One merge of the series under a budget of limit bytes: its result, and
 * what the budget held at its peak (after the blocks were added). */
static int merge(fixture_t *f, labels_t *l, size_t limit, int tabs, size_t *held)
{
    alloc_budget_t b;
    alloc_budget_init(&b, limit);
    alloc_charge_t c;
    alloc_charge_init(&c, &b);
    storage_merger_t *m = NULL;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    storage_merger_set_charge(m, &c);
    int rc = storage_merger_add(m, TOKEN, labels_hash(l), 0, f->now - 3600, f->now + 60);
    *held = c.used;
    errmsg_t em = {{0}};
    if (rc == 0 && tabs) {
        storage_merged_tab_t *t;
        size_t n;
        rc = storage_merger_tabs(m, 0, &t, &n, &em);
        if (rc == 0) {
            CHECK_EQ_INT(n, 1);
            CHECK_EQ_INT(t[0].total[0], STACKS);
            storage_merged_tabs_free(t, n);
        }
    }
    if (rc == 0) {
        calltree_t *t = calltree_new(0);
        rc = storage_merger_finish(m, t, &em);
        if (rc == 0) CHECK_EQ_INT(calltree_root_total(t), STACKS);
        calltree_free(t);
    }
    storage_merger_free(m);
    CHECK_EQ_INT(c.used, 0); /* everything given back */
    alloc_charge_done(&c);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    return rc;
}

/* A delta profile: "main;a" +5 and "main;b" -5, so main's total is 0 while
 * its children's are not. The forest is refused (nonneg 0, no local nodes)
 * and the whole tree is exact. Before, building the forest read the local id
 * of the zero-total parent, which was never set: a crash on real delta
 * profiles (pprof/parca/alloc_space_delta). */
static void test_cancelling_values(fixture_t *f, symtab_t *st)
{
    labels_t *l = fx_labels("delta", NULL);
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;a", 5);
    fx_add(t, st, "main;b", -5);
    fx_add(t, st, "other;c", 3);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = TOKEN + 1;
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, 2);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
    storage_merger_t *m = NULL;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, TOKEN + 1, labels_hash(l), 0, f->now - 3600, f->now + 60),
                 0);
    storage_merged_tab_t *tabs;
    size_t n;
    CHECK_EQ_INT(storage_merger_tabs(m, 0, &tabs, &n, &em), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(tabs[0].nonneg, 0);
    storage_merged_tabs_free(tabs, n);
    calltree_t *got = calltree_new(0);
    CHECK_EQ_INT(storage_merger_finish(m, got, &em), 0);
    CHECK_EQ_INT(calltree_root_total(got), 3);
    CHECK_EQ_INT(calltree_node_count(got), 6); /* root, main, a, b, other, c */
    calltree_free(got);
    storage_merger_free(m);
    labels_free(l);
}

#define TOKEN2 0x0fedcba987654321ull

/* A series of a few stacks under token and labels l. */
static void write_small(fixture_t *f, labels_t *l, symtab_t *st, uint64_t token, int64_t v)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;f1;g1", v);
    fx_add(t, st, "main;h", 2 * v);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = token;
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, (int)(token & 0xff) + (int)v);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
}

static void add(storage_merger_t *m, fixture_t *f, uint64_t token, labels_t *l)
{
    CHECK_EQ_INT(storage_merger_add(m, token, labels_hash(l), 0, f->now - 3600, f->now + 60), 0);
}

static void test_absorb(fixture_t *f, labels_t *l, symtab_t *st)
{
    labels_t *l2 = fx_labels("svc", "two"), *l3 = fx_labels("other", NULL);
    write_small(f, l2, st, TOKEN, 3);
    write_small(f, l3, st, TOKEN2, 5);
    alloc_budget_t b;
    alloc_budget_init(&b, 0);
    alloc_charge_t ca, cb;
    alloc_charge_init(&ca, &b);
    alloc_charge_init(&cb, &b);
    storage_merger_t *all, *a, *o;
    CHECK(storage_merger_new(f->s, "t", &all) == 0 && storage_merger_new(f->s, "t", &a) == 0 &&
          storage_merger_new(f->s, "t", &o) == 0);
    storage_merger_set_charge(a, &ca);
    storage_merger_set_charge(o, &cb);
    add(all, f, TOKEN, l);
    add(all, f, TOKEN, l2);
    add(all, f, TOKEN2, l3);
    add(a, f, TOKEN, l);
    add(o, f, TOKEN, l2);  /* a token both hold: added */
    add(o, f, TOKEN2, l3); /* one a lacks: moved, with its charge */
    size_t moved_from = cb.used;
    CHECK_EQ_INT(storage_merger_absorb(a, o), 0);
    CHECK(cb.used < moved_from);
    errmsg_t em = {{0}};
    calltree_t *want = calltree_new(0), *got = calltree_new(0);
    CHECK_EQ_INT(storage_merger_finish(all, want, &em), 0);
    CHECK_EQ_INT(storage_merger_finish(a, got, &em), 0);
    CHECK_EQ_INT(calltree_root_total(got), STACKS + 3 * 3 + 5 * 3);
    CHECK(calltree_same_shape(want, got));
    for (uint32_t i = 0; i < calltree_node_count(want) && i < calltree_node_count(got); i++)
        CHECK_EQ_INT(calltree_self(got, i), calltree_self(want, i));
    calltree_free(want);
    calltree_free(got);
    storage_merger_free(o);
    storage_merger_free(a);
    storage_merger_free(all);
    CHECK(ca.used == 0 && cb.used == 0);
    alloc_charge_done(&ca);
    alloc_charge_done(&cb);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    labels_free(l2);
    labels_free(l3);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *l = fx_labels("svc", NULL);
    write_series(&f, l, st);
    size_t vec = 0, held = 0;
    CHECK_EQ_INT(merge(&f, l, 0, 0, &vec), 0);            /* limit 0: counted, never refused */
    CHECK_EQ_INT(vec >= 2 * STACKS * sizeof(int64_t), 1); /* the dense vector */
    CHECK_EQ_INT(merge(&f, l, 64 << 10, 0, &held), ERR_UNAVAILABLE); /* the vector passes it */
    CHECK_EQ_INT(merge(&f, l, vec + (1 << 20), 0, &held), 0);        /* room for the scratch too */
    CHECK_EQ_INT(merge(&f, l, vec + (4 << 20), 1, &held), 0);        /* and for the forest */
    /* room for the vector, not for the tree-build scratch of the 40,000-node table */
    CHECK_EQ_INT(merge(&f, l, vec + (64 << 10), 0, &held), ERR_UNAVAILABLE);
    test_cancelling_values(&f, st);
    test_absorb(&f, l, st);
    labels_free(l);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
