/* test_storage_nodetab_symnos.c — a stack-node table's symbol index
 * (storage_nodetab_symnos): every id's symbol as a dense number, ids of one
 * symbol sharing it, numbered in order of first use; a table with its root
 * alone; a table that grows after its index was built (the old numbers
 * stay, the new ids are numbered, a new symbol takes the next number); a
 * table reloaded after a reopen; and the merger's forests carrying the
 * numbers of their nodes (STORAGE_TABS_SYMNOS). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/u64map.h"
#include "storage/storage_int.h"

/* Checks t's index against its symbols: each number below nsyms, one
 * symbol per number and one number per symbol, numbers first used in
 * ascending order (so every one of 0..nsyms-1 is used). Returns nsyms. */
static uint32_t check_index(nodetab_t *t)
{
    const uint32_t *symno;
    uint32_t nsyms, count = storage_nodetab_count(t), next = 0;
    CHECK_EQ_INT(storage_nodetab_symnos(t, &symno, &nsyms), 0);
    uint64_t *sym_of = calloc(nsyms ? nsyms : 1, sizeof *sym_of);
    u64map_t seen = {0};
    for (uint32_t id = 0; id < count; id++) {
        uint64_t sym = storage_nodetab_sym(t, id);
        uint32_t no = symno[id], had;
        CHECK(no < nsyms);
        if (u64map_get(&seen, sym, &had)) {
            CHECK_EQ_INT(no, had); /* a symbol met before: its number */
            continue;
        }
        CHECK_EQ_INT(no, next); /* a new symbol: the next number */
        next++;
        if (no < nsyms) sym_of[no] = sym;
        CHECK_EQ_INT(u64map_put(&seen, sym, no), 0);
    }
    CHECK_EQ_INT(next, nsyms);
    CHECK_EQ_INT(seen.len, nsyms);
    u64map_free(&seen);
    free(sym_of);
    return nsyms;
}

static nodetab_t *acquire(fixture_t *f, uint64_t token)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f->s, token, "t", &t, &em), 0);
    return t;
}

/* Writes the folded stacks (one write, value 1 each) to l's series. */
static void write_stacks(fixture_t *f, const labels_t *l, const char *const *stacks, size_t n,
                         uint64_t id)
{
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    for (size_t i = 0; i < n; i++)
        fx_add(t, st, stacks[i], 1);
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 3600) * NS, NULL), 0);
    calltree_free(t);
    symtab_free(st);
}

/* A token never written: its table holds the root alone, one symbol. */
static void test_root_alone(fixture_t *f)
{
    nodetab_t *t = acquire(f, 12345);
    CHECK_EQ_INT(storage_nodetab_count(t), 1);
    CHECK_EQ_INT(check_index(t), 1);
    storage_nodetab_release(f->s, t, 0);
}

/* The forests of token's blocks carry each forest node's table number. */
static void check_forests(fixture_t *f, const labels_t *l)
{
    uint64_t sid = labels_hash(l);
    storage_merger_t *m;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, sid >> 1, sid, 4, 0, INT64_MAX / 2), 0);
    storage_merged_tab_t *tabs;
    size_t n;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_tabs(m, STORAGE_TABS_SYMNOS, &tabs, &n, &em), 0);
    CHECK_EQ_INT(n, 1);
    nodetab_t *t = acquire(f, sid >> 1);
    const uint32_t *symno;
    uint32_t nsyms;
    CHECK_EQ_INT(storage_nodetab_symnos(t, &symno, &nsyms), 0);
    CHECK(tabs[0].symno != NULL);
    CHECK_EQ_INT(tabs[0].nsyms, nsyms);
    size_t nodes = 0;
    for (size_t id = 0; tabs[0].symno != NULL && id < tabs[0].n; id++) {
        if (id > 0 && tabs[0].total[id] == 0) continue; /* not a forest node */
        nodes++;
        CHECK_EQ_INT(tabs[0].symno[id], symno[id]);
    }
    CHECK_EQ_INT(nodes, tabs[0].nodes);
    storage_nodetab_release(f->s, t, 0);
    storage_merged_tabs_free(tabs, n);
    /* not asked: none */
    CHECK_EQ_INT(storage_merger_tabs(m, STORAGE_TABS_PARENTS, &tabs, &n, &em), 0);
    CHECK(tabs[0].symno == NULL && tabs[0].parent != NULL);
    storage_merged_tabs_free(tabs, n);
    storage_merger_free(m);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    test_root_alone(&f);

    /* repeated symbols: a and b at several depths and under several parents */
    labels_t *l = fx_labels("svc", NULL);
    uint64_t token = labels_hash(l) >> 1;
    const char *first[] = {"a;b;a;b", "a;c;b", "b;a", "c;c;c"};
    write_stacks(&f, l, first, 4, 1);
    nodetab_t *t = acquire(&f, token);
    uint32_t count = storage_nodetab_count(t);
    CHECK_EQ_INT(count, 1 + 4 + 2 + 2 + 3); /* root, then each stack's new nodes */
    CHECK_EQ_INT(check_index(t), 4);        /* the root's symbol, a, b, c */
    const uint32_t *symno;
    uint32_t nsyms;
    CHECK_EQ_INT(storage_nodetab_symnos(t, &symno, &nsyms), 0);
    uint32_t *before = malloc(count * sizeof *before);
    memcpy(before, symno, count * sizeof *before);
    storage_nodetab_release(f.s, t, 0);
    check_forests(&f, l);

    /* the table grows after its index was built: old symbols at new ids,
     * and a new one */
    const char *more[] = {"a;b;a;b;c", "c;a", "d;a;d"};
    write_stacks(&f, l, more, 3, 2);
    t = acquire(&f, token);
    CHECK_EQ_INT(storage_nodetab_count(t), count + 1 + 1 + 3);
    CHECK_EQ_INT(check_index(t), 5);
    CHECK_EQ_INT(storage_nodetab_symnos(t, &symno, &nsyms), 0);
    CHECK_EQ_INT(memcmp(symno, before, count * sizeof *before), 0); /* numbers kept */
    storage_nodetab_release(f.s, t, 0);
    check_forests(&f, l);

    /* reloaded from its chunks: numbered again from the start */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    t = acquire(&f, token);
    CHECK_EQ_INT(check_index(t), 5);
    storage_nodetab_release(f.s, t, 0);
    check_forests(&f, l);

    free(before);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
