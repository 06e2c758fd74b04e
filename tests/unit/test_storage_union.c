/* test_storage_union.c — several tokens' forests made as one over their
 * union (union.c): the one forest holds the tree storage_merger_finish
 * builds, node for node (selves and totals), with parents and symbol
 * numbers right; the union grows with the tables (new stacks after a first
 * render), is built afresh once a table is emptied (a new generation), and
 * is not made past union_cache_bytes (a forest per token then, as with no
 * cache at all); a single token keeps its own forest. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/u64map.h"
#include "storage/storage_int.h"

#define TOKEN1 0x1111111111111111ull
#define TOKEN2 0x2222222222222222ull
#define TOKEN3 0x3333333333333333ull

/* The tree of a forest made with parents: each node under its parent's. */
static calltree_t *tree_of(const storage_merged_tab_t *v)
{
    calltree_t *t = calltree_new(0);
    uint32_t *map = calloc(v->n, sizeof *map);
    size_t nodes = 1;
    calltree_add_self(t, 0, v->self[0]);
    for (size_t id = 1; id < v->n; id++) {
        if (v->total[id] == 0) continue; /* not a forest node */
        nodes++;
        CHECK(v->parent[id] < id && (v->parent[id] == 0 || v->total[v->parent[id]] != 0));
        CHECK_EQ_INT(calltree_child(t, map[v->parent[id]], v->sym[id], &map[id]), 0);
        calltree_add_self(t, map[id], v->self[id]);
        CHECK_EQ_INT(calltree_total(t, map[id]) >= 0, 1);
    }
    CHECK_EQ_INT(nodes, v->nodes);
    free(map);
    return t;
}

/* Symbol numbers: below nsyms, one per symbol and one symbol per number. */
static void check_symnos(const storage_merged_tab_t *v)
{
    u64map_t by_sym = {0}, by_no = {0};
    for (size_t id = 0; id < v->n; id++) {
        if (id > 0 && v->total[id] == 0) continue;
        uint32_t no = v->symno[id], had;
        CHECK(no < v->nsyms);
        if (u64map_get(&by_sym, v->sym[id], &had)) CHECK_EQ_INT(had, no);
        CHECK_EQ_INT(u64map_set(&by_sym, v->sym[id], no), 0);
        uint32_t sym_lo;
        if (u64map_get(&by_no, no, &sym_lo)) CHECK_EQ_INT(sym_lo, (uint32_t)v->sym[id]);
        CHECK_EQ_INT(u64map_set(&by_no, no, (uint32_t)v->sym[id]), 0);
    }
    u64map_free(&by_sym);
    u64map_free(&by_no);
}

/* Merges ls at tokens both ways: *ntabs forests (one with a union) whose
 * tree is the one the merger builds. */
static void check_same(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, size_t n,
                       size_t want_tabs)
{
    storage_merger_t *m = fx_merger_of(f, ls, tokens, n);
    storage_merged_tab_t *tabs;
    size_t ntabs;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(
        storage_merger_tabs(m, STORAGE_TABS_PARENTS | STORAGE_TABS_SYMNOS, &tabs, &ntabs, &em), 0);
    CHECK_EQ_INT(ntabs, want_tabs);
    calltree_t *got = calltree_new(0);
    for (size_t i = 0; i < ntabs; i++) {
        CHECK_EQ_INT(tabs[i].nonneg, 1);
        check_symnos(&tabs[i]);
        calltree_t *one = tree_of(&tabs[i]);
        CHECK_EQ_INT(calltree_merge(got, one), 0);
        calltree_free(one);
    }
    if (ntabs == 1) CHECK_EQ_INT(tabs[0].nodes, calltree_node_count(got)); /* merged already */
    if (ntabs == 1 && n > 1) CHECK_EQ_INT(tabs[0].owns_self, 1); /* a union's: its own values */
    storage_merger_hand_selfs(m, tabs, ntabs);
    storage_merger_free(m);
    m = fx_merger_of(f, ls, tokens, n);
    calltree_t *want = calltree_new(0);
    CHECK_EQ_INT(storage_merger_finish(m, want, &em), 0);
    storage_merger_free(m);
    CHECK_EQ_INT(fx_tree_diff(want, got), 0);
    CHECK_EQ_INT(calltree_node_count(want), calltree_node_count(got));
    CHECK(calltree_total(want, 0) > 0);
    CHECK_EQ_INT(calltree_total(want, 0), calltree_total(got, 0));
    calltree_free(want);
    calltree_free(got);
    storage_merged_tabs_free(tabs, ntabs);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *ls[3];
    uint64_t tokens[3] = {TOKEN2, TOKEN1, TOKEN3}; /* not in order: the union sorts them */
    fx_write_three(&f, st, ls, tokens);

    check_same(&f, ls, tokens, 3, 1);
    CHECK_EQ_INT(f.s->unions.builds, 1);
    check_same(&f, ls, tokens, 3, 1); /* the same union again */
    CHECK_EQ_INT(f.s->unions.builds, 1);
    CHECK_EQ_INT(f.s->unions.hits, 1);
    check_same(&f, ls, tokens, 1, 1); /* one token: its own forest, no union */
    CHECK_EQ_INT(f.s->unions.builds, 1);
    check_same(&f, ls, tokens, 2, 1); /* another set of tokens: a union of its own */
    CHECK_EQ_INT(f.s->unions.builds, 2);

    /* the tables grow after the union was made: new stacks, old ones at new places */
    const char *more[] = {"main;a;b;q", "q;main;a", "main;d;e;f"};
    fx_write_stacks(&f, st, ls[2], tokens[2], more, 3, 4);
    fx_write_stacks(&f, st, ls[0], tokens[0], more, 3, 5);
    check_same(&f, ls, tokens, 3, 1);
    CHECK_EQ_INT(f.s->unions.builds, 2);

    /* a table emptied (a failed batch, or deleted): a new generation, built afresh */
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, TOKEN1, "t", &t, &em), 0);
    storage_nodetab_release(f.s, t, 1);
    check_same(&f, ls, tokens, 3, 1);

    /* past the cache's bound: no union, a forest per token; and none cached */
    size_t bound = f.s->unions.max_bytes;
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK(stats.union_cache_bytes > 0 && stats.union_cache_bytes <= bound);
    CHECK_EQ_INT(stats.union_builds, 3); /* the third afresh, for the new generation */
    CHECK_EQ_INT(stats.union_refused, 0);
    f.s->unions.max_bytes = 64;
    check_same(&f, ls, tokens, 3, 3);
    CHECK_EQ_INT(f.s->unions.refused, 1);
    f.s->unions.max_bytes = 0; /* union-cache-bytes 0: never one */
    check_same(&f, ls, tokens, 3, 3);
    f.s->unions.max_bytes = bound;
    check_same(&f, ls, tokens, 3, 3);     /* refused until the generation moves */
    CHECK_EQ_INT(f.s->unions.refused, 2); /* 0 asks none */
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, TOKEN1, "t", &t, &em), 0);
    storage_nodetab_release(f.s, t, 1);
    check_same(&f, ls, tokens, 3, 1);

    /* a bound the maps fit in but the nodes do not: given up as it grows,
     * then refused at once, not built again, until the generation moves */
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, TOKEN1, "t", &t, &em), 0);
    storage_nodetab_release(f.s, t, 1);
    f.s->unions.max_bytes = 4096;
    uint64_t builds = f.s->unions.builds, refused = f.s->unions.refused;
    check_same(&f, ls, tokens, 3, 3);
    CHECK_EQ_INT(f.s->unions.builds, builds + 1);
    CHECK_EQ_INT(f.s->unions.refused, refused + 1);
    check_same(&f, ls, tokens, 3, 3);
    CHECK_EQ_INT(f.s->unions.builds, builds + 1);
    CHECK_EQ_INT(f.s->unions.refused, refused + 2);
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK(stats.union_cache_bytes <= 4096);
    f.s->unions.max_bytes = bound;

    for (int i = 0; i < 3; i++)
        labels_free(ls[i]);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
