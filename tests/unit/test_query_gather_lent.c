/* test_query_gather_lent.c — a gather writing a JSON flame graph of kept
 * nodes from a lent table of names (query_gather_names_lent), as a
 * coordinator writes it from its scope's names in place:
 *  - with every kept node's symbol in the table: the same bytes as the
 *    names copied through the names function, which is not asked, and the
 *    table held once and released once;
 *  - a kept symbol the table lacks, or no table at all: the names are
 *    copied as before (the function asked), the same bytes, the table
 *    released;
 *  - an answer that would be a stream (it would outlive the hold): the
 *    table not held at all, the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/hash.h"
#include "common/symtab.h"
#include "query/query.h"
#include "query/query_int.h"
#include "tests/unit/check.h"

#define FRAMES 60

/* A tree of n random stacks over FRAMES names (each put into names). */
static calltree_t *random_tree(symtab_t *names, uint64_t *ids, size_t n)
{
    for (int f = 0; f < FRAMES; f++) {
        char name[32], file[32];
        int nl = snprintf(name, sizeof name, "pkg.fn%d", f);
        int fl = snprintf(file, sizeof file, "src/file%d.go", f % 7);
        CHECK_EQ_INT(symtab_intern(names, name, (size_t)nl, file, (size_t)fl, &ids[f]), 0);
    }
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < n; i++) {
        uint64_t stack[12];
        size_t depth = 2 + check_rng() % 10;
        for (size_t d = 0; d < depth; d++)
            stack[d] = ids[check_rng() % FRAMES];
        CHECK_EQ_INT(calltree_add_stack(t, stack, depth, 1 + (int64_t)(check_rng() % 500)), 0);
    }
    return t;
}

/* The forest of t (a parent before its children), symbols numbered. */
static int forest_of(const calltree_t *t, const uint64_t *ids, storage_merged_tab_t *out)
{
    size_t n = calltree_node_count(t);
    uint32_t *parent = calloc(n, sizeof *parent), *symno = calloc(n, sizeof *symno);
    uint64_t *sym = calloc(n, sizeof *sym);
    int64_t *val = calloc(n, sizeof *val);
    for (uint32_t id = 0; id < n; id++) {
        parent[id] = id ? calltree_parent(t, id) : 0;
        sym[id] = id ? calltree_sym(t, id) : SYM_ROOT;
        val[id] = calltree_self(t, id);
        for (uint32_t f = 0; id > 0 && f < FRAMES; f++)
            if (ids[f] == sym[id]) symno[id] = f + 1;
    }
    int rc = storage_merged_tab_of(parent, sym, symno, FRAMES + 1, val, n,
                                   STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST | STORAGE_TABS_SYMNOS,
                                   1, out);
    free(parent);
    free(symno);
    free(sym);
    return rc;
}

/* The names function and the lent table of a case, and what they saw. */
typedef struct names_src {
    const symtab_t *all;  /* what the names function copies from */
    const symtab_t *lent; /* what hold gives (NULL: none) */
    int asked, held, released;
} names_src_t;

static int names_fn(void *ctx, const uint64_t *ids, size_t n, symtab_t *dst)
{
    names_src_t *s = ctx;
    s->asked++;
    return symtab_put_from(dst, s->all, ids, n);
}

static const symtab_t *hold_fn(void *ctx)
{
    names_src_t *s = ctx;
    s->held++;
    return s->lent;
}

static void release_fn(void *ctx)
{
    names_src_t *s = ctx;
    s->released++;
}

/* The answer of t cut to max_nodes; lend: with the table lent; streams:
 * answers of a few bytes already count as large (query-stream-bytes). */
static char *answer(const calltree_t *t, const uint64_t *ids, names_src_t *src, int lend,
                    const char *max_nodes, int streams)
{
    query_limits_t lim;
    query_limits_default(&lim);
    lim.assist = NULL;
    lim.stream_min_bytes = streams ? 64 : 0;
    query_params_t p = {.query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}",
                        .from = "now-1h",
                        .format = "json",
                        .max_nodes = max_nodes,
                        .stream = 1};
    query_spec_t spec;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000LL, &spec, &em), 0);
    query_gather_t *g = NULL;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    query_gather_names_via(g, names_fn, src);
    if (lend) query_gather_names_lent(g, hold_fn, release_fn, src);
    storage_merged_tab_t f;
    int rc = forest_of(t, ids, &f);
    if (rc == 0) rc = query_gather_add_tab(g, &f, &em);
    query_result_t r;
    query_result_init(&r);
    if (rc == 0) rc = query_gather_finish(g, NULL, &r, &em);
    if (rc != 0) fprintf(stderr, "gather: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    buf_t all;
    buf_init(&all, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append(&all, r.body.data, r.body.len), 0);
    if (r.stream != NULL) CHECK_EQ_INT(query_stream_drain(r.stream, &all), 0); /* read whole */
    buf_append_byte(&all, 0);
    char *out = strdup((char *)all.data);
    buf_free(&all);
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
    CHECK_EQ_INT(src->held, src->released);
    return out;
}

int main(void)
{
    check_rng_state = 0x2545f4914f6cdd1dull;
    symtab_t *names = symtab_new();
    uint64_t ids[FRAMES];
    calltree_t *t = random_tree(names, ids, 3000);
    /* a table lacking one symbol: the heaviest frame's, kept at any maxNodes */
    symtab_t *short_of_one = symtab_new();
    CHECK_EQ_INT(symtab_put_from(short_of_one, names, ids + 1, FRAMES - 1), 0);
    static const char *maxes[] = {"5", "17", "512", "100000"};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        names_src_t copied = {names, NULL, 0, 0, 0};
        char *want = answer(t, ids, &copied, 0, maxes[i], 0);
        CHECK(strstr(want, "\"pkg.fn") != NULL);
        CHECK_EQ_INT(copied.asked, 1);

        names_src_t lent = {names, names, 0, 0, 0};
        char *got = answer(t, ids, &lent, 1, maxes[i], 0);
        CHECK(strcmp(want, got) == 0);
        CHECK_EQ_INT(lent.asked, 0); /* nothing copied */
        CHECK_EQ_INT(lent.held, 1);

        names_src_t partial = {names, short_of_one, 0, 0, 0};
        char *back = answer(t, ids, &partial, 1, maxes[i], 0);
        int heaviest_kept = strstr(want, "\"pkg.fn0\"") != NULL;
        CHECK(strcmp(want, back) == 0);
        CHECK_EQ_INT(partial.asked, heaviest_kept ? 1 : 0);

        names_src_t none = {names, NULL, 0, 0, 0};
        char *plain = answer(t, ids, &none, 1, maxes[i], 0);
        CHECK(strcmp(want, plain) == 0);
        CHECK_EQ_INT(none.asked, 1);

        names_src_t streamed = {names, names, 0, 0, 0};
        char *s = answer(t, ids, &streamed, 1, maxes[i], 1);
        CHECK(strcmp(want, s) == 0);
        if (atoi(maxes[i]) >= 512) CHECK_EQ_INT(streamed.held, 0); /* a stream: never lent */
        free(want);
        free(got);
        free(back);
        free(plain);
        free(s);
    }
    calltree_free(t);
    symtab_free(short_of_one);
    symtab_free(names);
    return check_exit();
}
