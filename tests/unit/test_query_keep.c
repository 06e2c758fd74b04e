/* test_query_keep.c — maxNodes truncation chosen before the tree is built
 * (keep.c) must give exactly what the whole merged tree truncated by
 * query_truncate gives:
 *  - forests made by hand from random trees of several tokens (shared
 *    symbols, so paths meet across tokens; equal values, so ties break on
 *    path hashes; empty nodes): the same flamebearer bytes for every maxNodes,
 *    also when written straight from the kept nodes (query_keep_tabs,
 *    query_encode_flamebearer_kept), with and without a helper writing the
 *    deep levels;
 *  - a real storage: query_render (which takes the new path, its timeline
 *    on a helper thread) against the partial, gather and finish of a
 *    scatter-gather (which build the whole tree), byte for byte, on random profiles over several
 * tokens, with a negative value (the fallback), and on the shared corpus's large.cpu stacks when
 * present. Prints its seed; pass a seed as argv[1] to replay. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/labels.h"
#include "common/u64map.h"
#include "query/query.h"
#include "query/query_int.h"
#include "tests/unit/check.h"

#define TYPE "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
static int64_t T0; /* a little before now: within every retention */

/* ---- forests from trees ---- */

/* Token forest of u over its node indices (parents before children): the
 * root and the nodes whose total is non-zero, linked in ascending order,
 * with parents and least children (as storage_merger_tabs makes them for
 * a render: one such forest is cut by its totals, query_keep_cut). */
static void tab_of(const calltree_t *u, storage_merged_tab_t *v)
{
    size_t n = calltree_node_count(u);
    memset(v, 0, sizeof *v);
    v->n = n;
    v->nodes = 1;
    v->sym = malloc(n * sizeof *v->sym);
    v->self = malloc(n * sizeof *v->self);
    v->total = malloc(n * sizeof *v->total);
    v->first_kid = malloc(n * sizeof *v->first_kid);
    v->next_sib = malloc(n * sizeof *v->next_sib);
    v->parent = malloc(n * sizeof *v->parent);
    v->least_kid = malloc(n * sizeof *v->least_kid);
    v->nonneg = 1;
    v->distinct_kids = 1; /* a call tree's children have distinct symbols */
    for (uint32_t i = 0; i < n; i++) {
        if (calltree_self(u, i) < 0) v->nonneg = 0;
        v->sym[i] = calltree_sym(u, i);
        v->self[i] = calltree_self(u, i);
        v->total[i] = calltree_total(u, i);
        v->first_kid[i] = STORAGE_NO_KID;
        v->least_kid[i] = UINT64_MAX;
    }
    for (uint32_t i = (uint32_t)n; i-- > 1;) {
        if (v->total[i] == 0) continue;
        uint32_t p = calltree_parent(u, i);
        v->next_sib[i] = v->first_kid[p];
        v->first_kid[p] = i;
        v->parent[i] = p;
        if ((uint64_t)v->total[i] < v->least_kid[p]) v->least_kid[p] = (uint64_t)v->total[i];
        v->nodes++;
    }
}

static void tab_free(storage_merged_tab_t *v)
{
    free(v->sym);
    free(v->self);
    free(v->total);
    free(v->first_kid);
    free(v->next_sib);
    free(v->parent);
    free(v->least_kid);
}

static char *fb_of(const calltree_t *t)
{
    buf_t b;
    buf_init(&b, (size_t)1 << 30);
    CHECK_EQ_INT(query_encode_flamebearer(t, NULL, TYPE, NULL, NULL, &b), 0);
    CHECK_EQ_INT(buf_append_byte(&b, 0), 0);
    return (char *)b.data;
}

static void mark_fn(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
}

/* Has a's idle helper run a part (waiting for it, 1 s at most): it then
 * waits awake for a next part (ASSIST_LINGER_NS), as between a render's
 * parts. A part handed to a helper not yet running would be taken back by
 * its joiner, which on a busy machine can be every time. */
static void helper_awake(assist_t *a)
{
    atomic_int ran = 0;
    assist_task_t t;
    assist_start(a, &t, mark_fn, &ran);
    for (int i = 0; i < 10000 && assist_taken(&t) && !atomic_load(&ran); i++)
        usleep(100);
    assist_join(a, &t);
}

/* k's symbols numbered (as query_load_symbols_kept numbers them) and
 * named with many names shared by several symbols, some of them escaped
 * in JSON: the kept levels written with a helper (which classes the names
 * while the nodes are placed, then writes each as a JSON string) give the
 * bytes written without one. Tried until the helper,
 * awake ahead (helper_awake), took it. */
static void helped_names(query_kept_t *k, assist_t *a)
{
    symtab_t *syms = symtab_new();
    u64map_t seen;
    CHECK(syms != NULL && u64map_init(&seen, k->n + 1) == 0);
    k->sid = malloc(k->n * sizeof *k->sid);
    k->nsid = 0;
    CHECK(k->sid != NULL);
    for (size_t i = 0; i < k->n; i++) {
        if (u64map_get_or_put(&seen, k->sym[i], (uint32_t)k->nsid, &k->sid[i]) != 1) continue;
        k->nsid++;
        char name[48], file[32];
        /* some names the JSON escapes: a quote, a backslash, a control
         * byte, UTF-8, a byte that is not (the helper escapes them apart) */
        snprintf(name, sizeof name, k->sym[i] % 3 ? "fn%llu" : "fn\"%llu\\q\x01\xc3\xa9\xff",
                 (unsigned long long)(k->sym[i] % 5));
        snprintf(file, sizeof file, "f%llu.c", (unsigned long long)k->sym[i]);
        CHECK_EQ_INT(symtab_put(syms, k->sym[i], name, strlen(name), file, strlen(file)), 0);
    }
    buf_t want, got;
    buf_init(&want, (size_t)1 << 30);
    CHECK_EQ_INT(query_encode_flamebearer_kept(k, syms, TYPE, NULL, NULL, NULL, &want), 0);
    assist_stats_t before, after = {0};
    assist_stats(a, &before);
    for (int i = 0; i < 200 && after.helped == before.helped; i++) {
        helper_awake(a);
        buf_init(&got, (size_t)1 << 30);
        CHECK_EQ_INT(query_encode_flamebearer_kept(k, syms, TYPE, NULL, NULL, a, &got), 0);
        CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
        buf_free(&got);
        assist_stats(a, &after);
        if (after.helped == before.helped) usleep(1000);
    }
    CHECK(k->n < 2 || after.helped > before.helped);
    buf_free(&want);
    u64map_free(&seen);
    symtab_free(syms);
    free(k->sid);
    k->sid = NULL;
    k->nsid = 0;
}

/* The flamebearer written from the kept nodes of the forests. */
static char *fb_kept(const storage_merged_tab_t *tabs, size_t ntok, size_t max)
{
    query_kept_t *k;
    CHECK_EQ_INT(query_keep_tabs(tabs, ntok, max, &k), 0);
    CHECK(k->n <= max);
    buf_t b;
    buf_init(&b, (size_t)1 << 30);
    CHECK_EQ_INT(query_encode_flamebearer_kept(k, NULL, TYPE, NULL, NULL, NULL, &b), 0);
    /* with the deep levels written on a helper: the same bytes */
    assist_t *a;
    buf_t helped;
    buf_init(&helped, (size_t)1 << 30);
    CHECK_EQ_INT(assist_new(1, &a), 0);
    CHECK_EQ_INT(query_encode_flamebearer_kept(k, NULL, TYPE, NULL, NULL, a, &helped), 0);
    CHECK(helped.len == b.len && memcmp(helped.data, b.data, b.len) == 0);
    buf_free(&helped);
    helped_names(k, a);
    assist_free(a);
    /* as a stream (taking k and the names): the same bytes, in any slices */
    symtab_t *syms = symtab_new();
    buf_t none, got;
    buf_init(&none, (size_t)1 << 30);
    buf_init(&got, BUF_UNLIMITED);
    query_stream_t *st = NULL;
    CHECK_EQ_INT(
        query_flamebearer_open(NULL, &k, &syms, TYPE, NULL, NULL, "\"m\":1", 1, NULL, &none, &st),
        0);
    CHECK(st != NULL && k == NULL && syms == NULL && none.len == 0);
    int done = 0;
    for (int i = 0; st != NULL && i < 10000000 && !done; i++) {
        size_t want = 1 + check_rng() % 5000, before = got.len;
        CHECK_EQ_INT(query_stream_next(st, &got, want, &done), 0);
        CHECK(done || got.len - before >= want);
    }
    CHECK(done);
    query_stream_free(st);
    CHECK_EQ_INT(query_add_json_members(&b, "\"m\":1"), 0);
    CHECK(got.len == b.len && memcmp(got.data, b.data, b.len) == 0);
    b.len -= strlen(",\"m\":1}") - 1; /* the answer without the member */
    b.data[b.len - 1] = '}';
    buf_free(&none);
    buf_free(&got);
    symtab_free(syms);
    CHECK_EQ_INT(buf_append_byte(&b, 0), 0);
    query_kept_free(k);
    return (char *)b.data;
}

/* ties: 0 values 1..100000, 1 values 1 or 2 (ties everywhere), 2 one of
 * three values times a power of two up to 2^47 (totals over most of the
 * 64-bit range, which the frontier's radix buckets file by their highest
 * bit off the last top's, with ties among them). */
static void random_tree(calltree_t *t, int nstacks, int ties, int zeros)
{
    for (int i = 0; i < nstacks; i++) {
        uint64_t st[10];
        size_t d = 1 + check_rng() % 9;
        for (size_t k = 0; k < d; k++)
            st[k] = 100 + check_rng() % (k == 0 ? 3 : 9);
        int64_t v = ties == 1   ? 1 + (int64_t)(check_rng() % 2)
                    : ties == 2 ? (1 + (int64_t)(check_rng() % 3)) << (check_rng() % 48)
                                : 1 + (int64_t)(check_rng() % 100000);
        if (zeros && check_rng() % 6 == 0) v = 0; /* an empty stack node */
        calltree_add_stack(t, st, d, v);
    }
}

/* One case: ntok token trees, every maxNodes from 2 to past the tree. */
static void forest_case(size_t ntok, int nstacks, int ties)
{
    calltree_t *tok[4], *full = calltree_new(0);
    storage_merged_tab_t tabs[4];
    for (size_t i = 0; i < ntok; i++) {
        tok[i] = calltree_new(0);
        random_tree(tok[i], nstacks, ties, 1);
        if (i == 1) calltree_add_self(tok[i], 0, 7); /* a value at the root */
        tab_of(tok[i], &tabs[i]);
        CHECK_EQ_INT(calltree_merge(full, tok[i]), 0);
    }
    size_t n = calltree_node_count(full);
    for (size_t max = 2; max <= n + 2; max += max < 40 ? 1 : max / 4) {
        calltree_t *want, *got = calltree_new(0);
        CHECK_EQ_INT(query_truncate(full, max < n ? max : n, &want), 0);
        CHECK_EQ_INT(query_truncate_tabs(tabs, ntok, max, got), 0);
        char *a = fb_of(want), *b = fb_of(got);
        if (strcmp(a, b) != 0)
            fprintf(stderr,
                    "tokens %zu stacks %d ties %d maxNodes %zu:\nwant %.300s\ngot  %.300s\n", ntok,
                    nstacks, ties, max, a, b);
        CHECK_EQ_INT(strcmp(a, b), 0);
        CHECK(calltree_node_count(got) <= max);
        char *c = fb_kept(tabs, ntok, max);
        CHECK_EQ_INT(strcmp(a, c), 0);
        if (ntok == 1) { /* the cut (above) and best-first (without least children) agree */
            uint64_t *least = tabs[0].least_kid;
            query_kept_t *k = NULL;
            CHECK_EQ_INT(query_keep_cut(&tabs[0], max, NULL, &k), 0);
            CHECK(k != NULL && k->n <= max);
            query_kept_free(k);
            tabs[0].least_kid = NULL;
            CHECK_EQ_INT(query_keep_cut(&tabs[0], max, NULL, &k), 1); /* does not apply */
            char *d = fb_kept(tabs, ntok, max);
            tabs[0].least_kid = least;
            CHECK_EQ_INT(strcmp(a, d), 0);
            free(d);
        }
        free(a);
        free(b);
        free(c);
        calltree_free(want);
        calltree_free(got);
    }
    for (size_t i = 0; i < ntok; i++) {
        calltree_free(tok[i]);
        tab_free(&tabs[i]);
    }
    calltree_free(full);
}

static void test_forests(void)
{
    for (int r = 0; r < 12; r++) {
        forest_case(1 + (size_t)(r % 4), 20 + 30 * r, r % 3 == 0);
        forest_case(3, 300, 1);
        forest_case(1 + (size_t)(r % 4), 40 + 25 * r, 2);
    }
    /* refused where only the whole tree is exact: a negative value, an overflow */
    calltree_t *t = calltree_new(0);
    uint64_t s[2] = {100, 101};
    calltree_add_stack(t, s, 2, 5);
    calltree_add_stack(t, s, 1, -1);
    storage_merged_tab_t v[2];
    tab_of(t, &v[0]);
    calltree_t *dst = calltree_new(0);
    CHECK(!v[0].nonneg);
    CHECK_EQ_INT(query_truncate_tabs(v, 1, 8, dst), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(calltree_node_count(dst), 1);
    tab_free(&v[0]);
    CHECK_EQ_INT(calltree_clear(t), 0);
    calltree_add_stack(t, s, 2, INT64_MAX - 3);
    tab_of(t, &v[0]);
    tab_of(t, &v[1]);
    CHECK(v[0].nonneg && v[1].nonneg);
    CHECK_EQ_INT(query_truncate_tabs(v, 2, 8, dst), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(query_truncate_tabs(v, 1, 1, dst), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(query_truncate_tabs(v, 1, 8, dst), 0);
    CHECK_EQ_INT(calltree_root_total(dst), INT64_MAX - 3);
    tab_free(&v[0]);
    tab_free(&v[1]);
    calltree_free(dst);
    calltree_free(t);
}

/* A kept tree of some 6,000 nodes (past SORTED_ASSIST_MIN_NODES), many
 * symbols sharing a name and some sharing a file too, every 11th symbol
 * without a name, a node of 60 children (sorted by qsort_r) and many of a
 * few: its sorted tree built with a helper (the names looked up there
 * while the children are linked here, then the later half of the sorts)
 * is the one built alone, name for name and child for child. Tried until
 * the helper, woken ahead, took both parts (200 times at most; some part
 * must have run there). */
static void test_sorted_helped(void)
{
    calltree_t *t = calltree_new(0);
    for (int i = 0; i < 3000; i++) {
        uint64_t st[8];
        size_t d = 1 + check_rng() % 8;
        st[0] = 1000 + check_rng() % 60;
        for (size_t k = 1; k < d; k++)
            st[k] = 2000 + check_rng() % 400;
        calltree_add_stack(t, st, d, 1 + (int64_t)(check_rng() % 1000));
    }
    storage_merged_tab_t v;
    tab_of(t, &v);
    query_kept_t *k;
    CHECK_EQ_INT(query_keep_tabs(&v, 1, 1u << 20, &k), 0);
    CHECK(k->n >= 4000);
    symtab_t *syms = symtab_new();
    u64map_t seen;
    CHECK(syms != NULL && u64map_init(&seen, k->n + 1) == 0);
    k->sid = malloc(k->n * sizeof *k->sid);
    CHECK(k->sid != NULL);
    k->nsid = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (u64map_get_or_put(&seen, k->sym[i], (uint32_t)k->nsid, &k->sid[i]) != 1) continue;
        k->nsid++;
        if (k->sym[i] % 11 == 0) continue; /* unnamed: "unknown 0x..." */
        char name[32], file[32];
        snprintf(name, sizeof name, "fn%llu", (unsigned long long)(k->sym[i] % 7));
        snprintf(file, sizeof file, "f%llu.c", (unsigned long long)(k->sym[i] % 3));
        CHECK_EQ_INT(symtab_put(syms, k->sym[i], name, strlen(name), file, strlen(file)), 0);
    }
    sorted_tree_t want;
    CHECK_EQ_INT(query_sorted_tree_build_kept(&want, k, syms, NULL, NULL), 0);
    size_t unknown = 0;
    for (size_t i = 0; i < k->n; i++)
        unknown += strncmp(want.name[i], "unknown 0x", 10) == 0;
    CHECK(unknown > 0);
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), 0);
    assist_stats_t before, after;
    int both = 0;
    unsigned long long helped = 0; /* parts a helper ran, over the rounds */
    for (int round = 0; round < 200 && !both; round++) {
        sorted_tree_t got;
        helper_awake(a);
        assist_stats(a, &before);
        CHECK_EQ_INT(query_sorted_tree_build_kept(&got, k, syms, a, NULL), 0);
        assist_stats(a, &after);
        both = after.helped == before.helped + 2;
        helped += after.helped - before.helped;
        CHECK(memcmp(got.off, want.off, (k->n + 1) * sizeof *want.off) == 0);
        CHECK(memcmp(got.kids, want.kids, (k->n - 1) * sizeof *want.kids) == 0);
        for (size_t i = 0; i < k->n; i++)
            CHECK(strcmp(got.name[i], want.name[i]) == 0 && strcmp(got.file[i], want.file[i]) == 0);
        query_sorted_tree_free(&got);
        if (!both) usleep(1000);
    }
    /* on a busy machine the helper may not run in time for the names (the
     * part is then taken back): at least one part ran there */
    CHECK(helped > 0);
    assist_free(a);
    query_sorted_tree_free(&want);
    u64map_free(&seen);
    symtab_free(syms);
    query_kept_free(k);
    tab_free(&v);
    calltree_free(t);
}

/* The encoder sizes each level of kept nodes from its node count first
 * (flamebearer.c, presize_levels): a level of 1,600 entries of a few bytes,
 * whose guess passes the whole answer's cap, and levels of entries longer
 * than the guess (totals near 2^61) write the bytes the whole tree's
 * encoder writes, under a cap of exactly the answer's length too; one byte
 * less is refused as before. */
static void test_level_guess(void)
{
    calltree_t *t = calltree_new(0);
    for (uint64_t a = 0; a < 40; a++)
        for (uint64_t b = 0; b < 40; b++)
            calltree_add_stack(t, (uint64_t[2]){100 + a, 100 + b}, 2, 1);
    uint64_t chain[6] = {7, 8, 9, 10, 11, 12};
    for (size_t d = 1; d <= 6; d++)
        calltree_add_stack(t, chain, d, (int64_t)1 << 59);
    storage_merged_tab_t v;
    tab_of(t, &v);
    char *want = fb_of(t);
    query_kept_t *k;
    CHECK_EQ_INT(query_keep_tabs(&v, 1, 4096, &k), 0);
    size_t len = strlen(want);
    assist_t *helper;
    CHECK_EQ_INT(assist_new(1, &helper), 0);
    for (size_t cap = len + 1; cap + 2 > len; cap--) {
        for (int helped = 0; helped < 2; helped++) { /* the deep levels on a helper or here */
            buf_t b;
            buf_init(&b, cap);
            int rc = query_encode_flamebearer_kept(k, NULL, TYPE, NULL, NULL,
                                                   helped ? helper : NULL, &b);
            CHECK_EQ_INT(rc, cap >= len ? 0 : ERR_TOO_LARGE);
            if (rc == 0) CHECK(b.len == len && memcmp(b.data, want, len) == 0);
            CHECK(rc != 0 || 1600 * 24 > len); /* the guess passes the cap */
            buf_free(&b);
        }
    }
    assist_free(helper);
    query_kept_free(k);
    free(want);
    tab_free(&v);
    calltree_free(t);
}

/* A kept node's children are made only when one of them could be kept
 * next: with maxNodes 4, the root and A (100: self 97 and three children of
 * 1) are kept and B (50) does not fit, so A's children, all lighter than
 * B, are never made (expanded counts the root alone), and the answer is
 * query_truncate's. Then ties between a kept node's children not yet made
 * and a node of the frontier: A (self 10) has one child a of 5, B is 5, so
 * the entry for A's children (A's total 15 less its self) ties with B, and
 * a must be made before B and a are compared on their path hashes. */
static void lazy_case(const uint64_t (*st)[2], const size_t *depth, const int64_t *val, size_t n,
                      size_t max, size_t want_expanded)
{
    calltree_t *t = calltree_new(0), *want;
    for (size_t i = 0; i < n; i++)
        calltree_add_stack(t, st[i], depth[i], val[i]);
    storage_merged_tab_t v;
    tab_of(t, &v);
    size_t nodes = calltree_node_count(t);
    CHECK_EQ_INT(query_truncate(t, max < nodes ? max : nodes, &want), 0);
    char *a = fb_of(want), *b = fb_kept(&v, 1, max);
    CHECK_EQ_INT(strcmp(a, b), 0);
    query_kept_t *k;
    CHECK_EQ_INT(query_keep_tabs(&v, 1, max, &k), 0);
    if (want_expanded > 0) CHECK_EQ_INT(k->expanded, want_expanded);
    query_kept_free(k);
    free(a);
    free(b);
    calltree_free(want);
    tab_free(&v);
    calltree_free(t);
}

static void test_lazy_expansion(void)
{
    enum { A = 200, B, C, X1, X2, X3 };
    const uint64_t st[][2] = {{A, 0}, {A, X1}, {A, X2}, {A, X3}, {B, 0}, {C, 0}};
    const size_t depth[] = {1, 2, 2, 2, 1, 1};
    const int64_t val[] = {97, 1, 1, 1, 50, 40};
    lazy_case(st, depth, val, 6, 4, 1);
    lazy_case(st, depth, val, 6, 6, 0); /* A's children come out: the same answer */
    /* ties: both ways round, the path hashes decide which of a and B is kept */
    for (uint64_t sa = 300; sa < 340; sa++) {
        const uint64_t st2[][2] = {{A, 0}, {A, sa}, {B, 0}, {C, 0}};
        const size_t depth2[] = {1, 2, 1, 1};
        const int64_t val2[] = {10, 5, 5, 1};
        for (size_t max = 3; max <= 7; max++)
            lazy_case(st2, depth2, val2, 4, max, 0);
    }
}

/* ---- a real storage: query_render against the scatter-gather path ---- */

typedef struct store {
    char dir[64];
    storage_t *st;
    symtab_t *syms;
    labels_t *labels[6];
    uint64_t pid;
} store_t;

static int store_open(store_t *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/flamedb-keep-XXXXXX");
    if (mkdtemp(s->dir) == NULL) return -1;
    storage_options_t o;
    storage_options_default(&o);
    o.path = s->dir;
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 16 << 20;
    errmsg_t em = {{0}};
    int rc = storage_open(&o, &s->st, &em);
    if (rc != 0) fprintf(stderr, "storage_open: %s\n", errmsg_text(&em, rc));
    s->syms = symtab_new();
    for (int i = 0; i < 6; i++) { /* one service, pods over three tokens */
        char pod[16];
        snprintf(pod, sizeof pod, "pod-%d", i);
        labels_t *l = labels_new();
        labels_set_str(l, LABEL_NAME, "process_cpu");
        labels_set_str(l, LABEL_PROFILE_TYPE, TYPE);
        labels_set_str(l, LABEL_SERVICE_NAME, "svc");
        labels_set_str(l, "pod", pod);
        s->labels[i] = l;
    }
    return rc;
}

static void store_close(store_t *s)
{
    storage_close(s->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    CHECK_EQ_INT(system(cmd), 0);
    for (int i = 0; i < 6; i++)
        labels_free(s->labels[i]);
    symtab_free(s->syms);
}

static void store_write(store_t *s, int pod, int64_t t_s, const calltree_t *tree)
{
    storage_series_write_t sw = {.labels = s->labels[pod],
                                 .series_id = labels_hash(s->labels[pod]),
                                 .token = 1000 + (uint64_t)(pod % 3),
                                 .tree = tree};
    storage_profile_write_t pw = {.tenant = "t",
                                  .time_ns = t_s * 1000000000LL,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = s->syms};
    s->pid++;
    memcpy(pw.profile_id, &s->pid, sizeof s->pid);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(s->st, &pw, NULL, &em);
    if (rc != 0) fprintf(stderr, "write: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
}

/* The answer built from the whole merged tree, as a scatter-gather builds it. */
static char *render_whole(storage_t *st, const query_params_t *p, const query_limits_t *lim)
{
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    query_spec_t spec;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, p, lim, now_ms, &spec, &em), 0);
    query_partial_args_t a;
    query_spec_args(&spec, &a);
    CHECK_EQ_INT(a.final_max_nodes, 0); /* never truncated for a gather of several */
    query_partial_t part;
    query_gather_t *g = NULL;
    query_result_t r;
    query_result_init(&r);
    int rc = query_partial_run(st, "t", &a, lim, &part, &em);
    if (rc == 0) rc = query_gather_new(&spec, lim, &g);
    if (rc == 0) rc = query_gather_add(g, &part, &em);
    if (rc == 0) rc = query_gather_finish(g, NULL, &r, &em);
    CHECK_EQ_INT(rc, 0);
    query_partial_free(&part);
    query_gather_free(g);
    query_spec_free(&spec);
    buf_append_byte(&r.body, 0);
    char *out = strdup((char *)r.body.data);
    query_result_free(&r);
    return out;
}

static char *render_fast(storage_t *st, const query_params_t *p, const query_limits_t *lim)
{
    query_result_t r;
    query_result_init(&r);
    errmsg_t em = {{0}};
    int rc = query_render(st, "t", p, lim, (int64_t)time(NULL) * 1000, &r, &em);
    if (rc != 0) fprintf(stderr, "query_render: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    buf_append_byte(&r.body, 0);
    char *out = strdup(r.body.data ? (char *)r.body.data : "");
    query_result_free(&r);
    return out;
}

/* Every format and maxNodes over [from_s, until_s): both paths, same bytes. */
static void compare_range(store_t *s, const char *what, int64_t from_s, int64_t until_s)
{
    static const char *maxes[] = {"2", "3", "7", "40", "300", "8192", NULL};
    static const char *formats[] = {"json", "folded", "svg"};
    query_limits_t lim, helped;
    query_limits_default(&lim);
    helped = lim; /* the fast path's timeline beside its tree, on a helper when idle */
    CHECK_EQ_INT(assist_new(1, &helped.assist), 0);
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)from_s);
    snprintf(until, sizeof until, "%lld", (long long)until_s);
    int same = 0, cases = 0;
    for (size_t f = 0; f < 3; f++)
        for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
            query_params_t p = {.query = TYPE "{service_name=\"svc\"}",
                                .from = from,
                                .until = until,
                                .format = formats[f],
                                .max_nodes = maxes[m]};
            char *a = render_whole(s->st, &p, &lim), *b = render_fast(s->st, &p, &helped);
            if (strcmp(a, b) != 0)
                fprintf(stderr, "%s, %s, maxNodes %s:\nwhole %.300s\nfast  %.300s\n", what,
                        formats[f], maxes[m] ? maxes[m] : "default", a, b);
            same += strcmp(a, b) == 0;
            if (f == 0) { /* not two empty answers */
                const char *nt = strstr(a, "\"numTicks\":");
                CHECK(nt != NULL && strtoll(nt + 11, NULL, 10) != 0);
            }
            cases++;
            free(a);
            free(b);
        }
    CHECK_EQ_INT(same, cases);
    assist_free(helped.assist);
}

/* The whole data, and [part_from, part_to): a part of it (fewer ids valued
 * than the tables hold). */
static void compare_renders(store_t *s, const char *what, int64_t part_from, int64_t part_to)
{
    compare_range(s, what, T0 - 3600, T0 + 3600);
    compare_range(s, what, part_from, part_to);
}

/* storage_merger_tabs of pod's token (res 0, the whole test range). */
static int tab_nonneg(store_t *s, int pod, size_t *n)
{
    storage_merger_t *m;
    CHECK_EQ_INT(storage_merger_new(s->st, "t", &m), 0);
    for (int p = pod % 3; p < 6; p += 3)
        CHECK_EQ_INT(storage_merger_add(m, 1000 + (uint64_t)(pod % 3), labels_hash(s->labels[p]), 0,
                                        T0 - 3600, T0 + 3600),
                     0);
    storage_merged_tab_t *tabs;
    size_t nt;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_tabs(m, 0, &tabs, &nt, &em), 0);
    CHECK_EQ_INT(nt, 1);
    int r = nt == 1 ? tabs[0].nonneg : -1;
    *n = nt == 1 ? tabs[0].nodes : 0;
    storage_merged_tabs_free(tabs, nt);
    storage_merger_free(m);
    return r;
}

/* Totals past INT64_MAX in one token (pods 2 and 5 share it): only the
 * whole tree is exact, and storage_merger_tabs must say so. */
static void test_store_overflow(void)
{
    store_t s;
    CHECK_EQ_INT(store_open(&s), 0);
    uint64_t a, b;
    symtab_intern(s.syms, "ov.a", 4, "", 0, &a);
    symtab_intern(s.syms, "ov.b", 4, "", 0, &b);
    calltree_t *t = calltree_new(0);
    uint64_t st[2] = {a, b};
    calltree_add_stack(t, st, 2, 5);
    calltree_add_stack(t, st, 1, 7);
    store_write(&s, 2, T0 - 100, t);
    size_t n;
    CHECK_EQ_INT(tab_nonneg(&s, 2, &n), 1);
    CHECK_EQ_INT(n, 3); /* root, a, a;b */
    CHECK_EQ_INT(calltree_clear(t), 0);
    calltree_add_stack(t, st, 2, INT64_MAX / 2 + 1);
    store_write(&s, 5, T0 - 90, t);
    store_write(&s, 2, T0 - 80, t);
    CHECK_EQ_INT(tab_nonneg(&s, 2, &n), 0);
    compare_renders(&s, "overflow", T0 - 100, T0 - 70);
    calltree_free(t);
    store_close(&s);
}

static void test_store_random(void)
{
    store_t s;
    CHECK_EQ_INT(store_open(&s), 0);
    uint64_t ids[30];
    for (int i = 0; i < 30; i++) {
        char name[32];
        snprintf(name, sizeof name, "pkg.fn%d", i);
        symtab_intern(s.syms, name, strlen(name), "f.go", 4, &ids[i]);
    }
    calltree_t *t = calltree_new(0);
    for (int k = 0; k < 60; k++) {
        CHECK_EQ_INT(calltree_clear(t), 0);
        for (int j = 0; j < 40; j++) {
            uint64_t st[8];
            size_t d = 1 + check_rng() % 8;
            for (size_t x = 0; x < d; x++)
                st[x] = ids[x == 0 ? check_rng() % 2 : 2 + check_rng() % 28];
            calltree_add_stack(t, st, d, 1 + (int64_t)(check_rng() % (j % 2 ? 5 : 50000)));
        }
        store_write(&s, k % 6, T0 - 3000 + 40 * k, t);
    }
    compare_renders(&s, "random", T0 - 2000, T0 - 1400);
    /* a negative value: only the whole tree is exact, the answer must not change */
    CHECK_EQ_INT(calltree_clear(t), 0);
    uint64_t neg[2] = {ids[0], ids[5]};
    calltree_add_stack(t, neg, 2, -3);
    store_write(&s, 1, T0 + 100, t);
    compare_renders(&s, "negative", T0 - 2000, T0 + 200);
    calltree_free(t);
    store_close(&s);
}

/* Stacks of the corpus's large.cpu (folded), spread over pods and windows. */
static void test_store_corpus(void)
{
    const char *corpus = testdata_path();
    if (corpus == NULL) {
        fprintf(stderr, "shared test corpus absent: corpus comparison skipped\n");
        return;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/folded/derived/large.cpu.samples.folded.txt.gz'",
             corpus);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (p == NULL) return;
    store_t s;
    CHECK_EQ_INT(store_open(&s), 0);
    calltree_t *t[6];
    for (int i = 0; i < 6; i++)
        t[i] = calltree_new(0);
    char *line = NULL;
    size_t cap = 0, nlines = 0;
    while (getline(&line, &cap, p) > 0) {
        char *sp = strrchr(line, ' ');
        if (sp == NULL) continue;
        *sp = 0;
        int64_t v = strtoll(sp + 1, NULL, 10);
        uint64_t st[512];
        size_t d = 0;
        for (char *tok = strtok(line, ";"); tok != NULL && d < 512; tok = strtok(NULL, ";"))
            symtab_intern(s.syms, tok, strlen(tok), "", 0, &st[d++]);
        calltree_add_stack(t[check_rng() % 6], st, d, v * (1 + (int64_t)(check_rng() % 3)));
        nlines++;
    }
    free(line);
    pclose(p);
    CHECK(nlines > 20000);
    for (int i = 0; i < 6; i++) {
        store_write(&s, i, T0 - 600 + 10 * i, t[i]);
        calltree_free(t[i]);
    }
    compare_renders(&s, "large.cpu", T0 - 590, T0 - 560);
    store_close(&s);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed ? seed : 1;
    T0 = (int64_t)time(NULL) / 600 * 600 - 1200;
    test_forests();
    test_level_guess();
    test_sorted_helped();
    test_lazy_expansion();
    test_store_random();
    test_store_overflow();
    test_store_corpus();
    return check_exit();
}
