/* test_storage_merger_hand.c — what a share does with the forests it ships:
 * the merger's value vectors handed to the forests without a copy
 * (storage_merger_hand_selfs: the forests keep their values once the merger
 * is freed, and the merger frees nothing twice), and the names of a share's
 * dictionaries loaded except those the coordinator says it holds
 * (query_load_symbol_ids: each once, repeats and the root skipped, known ids
 * the share never uses ignored). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "query/query.h"

#define TOKEN 0x1234567890abcdefull
#define TOKEN2 0x0badc0ffee123457ull

static void write_series(fixture_t *f, labels_t *l, symtab_t *st, uint64_t token, const char *a,
                         const char *b, int id)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, st, a, 3);
    fx_add(t, st, b, 5);
    CHECK_EQ_INT(fx_write_at(f->s, "t", l, token, t, st, (uint64_t)id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

static void test_hand_selfs(fixture_t *f, labels_t *l, labels_t *l2)
{
    /* a forest per token (no union: test_storage_union.c), each borrowing
     * the merger's vector */
    size_t unions = f->s->unions.max_bytes;
    f->s->unions.max_bytes = 0;
    storage_merger_t *m = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, TOKEN, labels_hash(l), 0, f->now - 3600, f->now + 60), 0);
    CHECK_EQ_INT(storage_merger_add(m, TOKEN2, labels_hash(l2), 0, f->now - 3600, f->now + 60), 0);
    storage_merged_tab_t *t;
    size_t n;
    CHECK_EQ_INT(storage_merger_tabs(m, STORAGE_TABS_PARENTS, &t, &n, &em), 0);
    CHECK_EQ_INT(n, 2);
    const int64_t *borrowed[2];
    int64_t *want[2];
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(t[i].owns_self, 0);
        borrowed[i] = t[i].self;
        want[i] = malloc(t[i].n * sizeof *want[i]);
        memcpy(want[i], t[i].self, t[i].n * sizeof *want[i]);
    }
    storage_merger_hand_selfs(m, t, n);
    storage_merger_free(m); /* the vectors are the forests' now */
    void *junk[8];          /* reuse whatever the merger freed */
    for (int k = 0; k < 8; k++)
        junk[k] = memset(malloc(64), 0x5a, 64);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(t[i].owns_self, 1);
        CHECK(t[i].self == borrowed[i]); /* no copy */
        CHECK_EQ_INT(memcmp(t[i].self, want[i], t[i].n * sizeof *want[i]), 0);
        CHECK_EQ_INT(t[i].total[0], 8);
        free(want[i]);
    }
    for (int k = 0; k < 8; k++)
        free(junk[k]);
    storage_merged_tabs_free(t, n); /* frees the handed vectors once */
    f->s->unions.max_bytes = unions;
}

static uint64_t id_of(symtab_t *st, const char *name)
{
    for (size_t i = 0; i < symtab_count(st); i++) {
        const char *nm, *file;
        uint64_t id = symtab_id_at(st, i);
        if (symtab_get(st, id, &nm, &file) && strcmp(nm, name) == 0) return id;
    }
    CHECK(0);
    return 0;
}

static void test_symbol_ids(fixture_t *f, symtab_t *st)
{
    uint64_t a = id_of(st, "a"), b = id_of(st, "b"), c = id_of(st, "c"), d = id_of(st, "d"),
             e = id_of(st, "e");
    /* two forests' dictionaries put together: repeats, the root, other */
    uint64_t ids[] = {SYM_ROOT, e, a, b, e, SYM_OTHER, c, SYM_ROOT, a, d, b, c};
    size_t nids = sizeof ids / sizeof *ids;
    /* known: b and d, besides many ids the share never uses */
    size_t nknown = 5000;
    uint64_t *known = malloc(nknown * sizeof *known);
    for (size_t i = 0; i < nknown; i++)
        known[i] = 0x9e3779b97f4a7c15ull * (i + 1);
    known[17] = d;
    known[4321] = b;
    known[4322] = b; /* repeated */
    symtab_t *got = symtab_new();
    CHECK_EQ_INT(query_load_symbol_ids(f->s, "t", ids, nids, known, nknown, got), 0);
    CHECK_EQ_INT(symtab_count(got), 3);
    const char *nm, *file;
    CHECK(symtab_get(got, a, &nm, &file) && strcmp(nm, "a") == 0);
    CHECK(symtab_get(got, c, &nm, &file) && strcmp(nm, "c") == 0);
    CHECK(symtab_get(got, e, &nm, &file) && strcmp(nm, "e") == 0);
    CHECK(!symtab_get(got, b, &nm, &file));
    CHECK(!symtab_get(got, d, &nm, &file));
    symtab_free(got);
    /* nothing known: every name, each once */
    got = symtab_new();
    CHECK_EQ_INT(query_load_symbol_ids(f->s, "t", ids, nids, NULL, 0, got), 0);
    CHECK_EQ_INT(symtab_count(got), 5);
    symtab_free(got);
    /* everything known: nothing loaded */
    uint64_t all[] = {e, d, c, b, a};
    got = symtab_new();
    CHECK_EQ_INT(query_load_symbol_ids(f->s, "t", ids, nids, all, 5, got), 0);
    CHECK_EQ_INT(symtab_count(got), 0);
    symtab_free(got);
    free(known);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *l = fx_labels("svc", NULL), *l2 = fx_labels("svc2", NULL);
    write_series(&f, l, st, TOKEN, "a;b", "a;c", 1);
    write_series(&f, l2, st, TOKEN2, "d;e", "a;b", 2);
    test_hand_selfs(&f, l, l2);
    test_symbol_ids(&f, st);
    labels_free(l);
    labels_free(l2);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
