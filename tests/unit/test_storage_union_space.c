/* test_storage_union_space.c — a union's forest with its id space
 * (STORAGE_TABS_SPACE): the union's nonce (never 0) and the parent and
 * symbol of the ids the caller lacks. From scratch the structure rebuilds
 * every forest node's path; with a count known for the nonce only the
 * tail past it comes, and none once the caller has every id; a nonce the
 * caller holds of another union is ignored. One token gets a union's
 * forest too, the same forest its own would be. Extending a union keeps
 * its nonce; a new generation draws another. A forest over a caller's own
 * tree (storage_merged_tab_of) sums as by hand. With no union allowed, a
 * forest per token and no space. A union's values alone
 * (STORAGE_TABS_VALUES) are the whole forest's self and space without
 * its arrays. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/alloc.h"
#include "storage/storage_int.h"

#define TOKEN1 0x1111111111111111ull
#define TOKEN2 0x2222222222222222ull
#define TOKEN3 0x3333333333333333ull
#define ALL (STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST)

/* The forests of a merger of ls at tokens (tabs its own: the merger is
 * freed), with flags and the spaces known. */
static storage_merged_tab_t *tabs_of(fixture_t *f, labels_t *const *ls, const uint64_t *tokens,
                                     size_t n, unsigned flags, const storage_space_known_t *known,
                                     size_t nknown, size_t *ntabs)
{
    storage_merger_t *m = fx_merger_of(f, ls, tokens, n);
    storage_merger_known_spaces(m, known, nknown);
    storage_merged_tab_t *tabs = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_tabs(m, flags, &tabs, ntabs, &em), 0);
    storage_merger_hand_selfs(m, tabs, *ntabs);
    storage_merger_free(m);
    return tabs;
}

/* A caller's copy of a space: each id's parent and symbol, ids below
 * base from an earlier forest (or the root alone). */
typedef struct space {
    uint64_t nonce;
    size_t n;
    uint32_t *parent;
    uint64_t *sym;
} space_t;

/* Adds v's structure to sp (holding ids below v->space_base already). */
static void space_apply(space_t *sp, const storage_merged_tab_t *v)
{
    CHECK(v->space_nonce != 0);
    CHECK(v->space_base >= 1 && v->space_base <= v->n);
    if (sp->n == 0) { /* a fresh one: the root */
        sp->nonce = v->space_nonce;
        sp->n = 1;
        sp->parent = calloc(1, sizeof *sp->parent);
        sp->sym = malloc(sizeof *sp->sym);
        sp->sym[0] = SYM_ROOT;
    }
    CHECK_EQ_INT(sp->nonce, v->space_nonce);
    CHECK(v->space_base <= sp->n); /* no hole */
    if (v->space_base > sp->n || sp->nonce != v->space_nonce) return;
    size_t k = v->n - v->space_base;
    CHECK_EQ_INT(k == 0, v->space_parent == NULL);
    CHECK_EQ_INT(k == 0, v->space_sym == NULL);
    if (v->n <= sp->n) return;
    sp->parent = realloc(sp->parent, v->n * sizeof *sp->parent);
    sp->sym = realloc(sp->sym, v->n * sizeof *sp->sym);
    for (size_t id = sp->n; id < v->n; id++) {
        sp->parent[id] = v->space_parent[id - v->space_base];
        sp->sym[id] = v->space_sym[id - v->space_base];
        CHECK(sp->parent[id] < id);
    }
    sp->n = v->n;
}

static void space_free(space_t *sp)
{
    free(sp->parent);
    free(sp->sym);
    memset(sp, 0, sizeof *sp);
}

#define DEPTH_MAX 64

/* Every forest node of v, walked by its own links (first_kid, next_sib)
 * with its root-to-node symbols on a stack, has the same path in sp
 * (walked up by parents); returns the nodes walked. */
static size_t check_paths(const storage_merged_tab_t *v, const space_t *sp, uint32_t id,
                          uint64_t *path, size_t depth)
{
    CHECK(id < sp->n);
    if (id >= sp->n || depth >= DEPTH_MAX) return 0;
    path[depth] = id == 0 ? SYM_ROOT : v->sym[id];
    size_t d = depth;
    for (uint32_t x = id;; x = sp->parent[x], d--) {
        CHECK_EQ_INT(sp->sym[x], path[d]);
        if (x == 0 || d == 0) break;
    }
    CHECK_EQ_INT(d, 0); /* as deep in both */
    if (v->parent != NULL && id > 0) CHECK_EQ_INT(v->parent[id], sp->parent[id]);
    size_t walked = 1;
    for (uint32_t k = v->first_kid[id]; k != STORAGE_NO_KID; k = v->next_sib[k])
        walked += check_paths(v, sp, k, path, depth + 1);
    return walked;
}

static void check_space(const storage_merged_tab_t *v, const space_t *sp)
{
    uint64_t path[DEPTH_MAX];
    CHECK_EQ_INT(sp->n, v->n);
    CHECK_EQ_INT(check_paths(v, sp, 0, path, 0), v->nodes);
}

/* The same forest, node for node (ids, selves, totals, links). */
static void check_same_forest(const storage_merged_tab_t *a, const storage_merged_tab_t *b)
{
    CHECK_EQ_INT(a->n, b->n);
    CHECK_EQ_INT(a->nodes, b->nodes);
    CHECK_EQ_INT(a->nonneg, 1);
    CHECK_EQ_INT(b->nonneg, 1);
    for (size_t id = 0; id < a->n && id < b->n; id++) {
        CHECK_EQ_INT(a->self[id], b->self[id]);
        CHECK_EQ_INT(a->total[id], b->total[id]);
        if (id > 0 && a->total[id] == 0) continue; /* not a forest node */
        CHECK_EQ_INT(a->sym[id], b->sym[id]);
        CHECK_EQ_INT(a->first_kid[id], b->first_kid[id]);
        if (id > 0) CHECK_EQ_INT(a->next_sib[id], b->next_sib[id]);
        if (id > 0) CHECK_EQ_INT(a->parent[id], b->parent[id]);
        CHECK_EQ_INT(a->least_kid[id], b->least_kid[id]);
    }
}

/* (a, b, d) A union of tokens from scratch, then with counts known. */
static void test_known(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, size_t n)
{
    size_t nt;
    storage_merged_tab_t *v = tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, NULL, 0, &nt);
    CHECK_EQ_INT(nt, 1);
    CHECK(v[0].space_nonce != 0);
    CHECK_EQ_INT(v[0].space_base, 1);
    CHECK(v[0].n > 4);
    space_t sp = {0};
    space_apply(&sp, &v[0]);
    check_space(&v[0], &sp);
    uint64_t nonce = v[0].space_nonce;
    size_t top = v[0].n;

    /* a count in the middle: the tail past it, as the first forest had it */
    size_t k = top / 2;
    storage_space_known_t known[3] = {{nonce ^ 1, 2}, {nonce, k}, {nonce + 7, top}};
    storage_merged_tab_t *w = tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, known, 3, &nt);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(w[0].space_nonce, nonce);
    CHECK_EQ_INT(w[0].space_base, k);
    CHECK_EQ_INT(w[0].n, top);
    for (size_t id = k; id < top; id++) {
        CHECK_EQ_INT(w[0].space_parent[id - k], v[0].space_parent[id - 1]);
        CHECK_EQ_INT(w[0].space_sym[id - k], v[0].space_sym[id - 1]);
    }
    check_same_forest(&v[0], &w[0]);
    space_t half = {0};
    space_apply(&half, &v[0]);
    half.n = k; /* the caller had ids below k only */
    space_apply(&half, &w[0]);
    check_space(&w[0], &half);
    space_free(&half);
    storage_merged_tabs_free(w, nt);

    /* every id known (or more): no structure */
    for (size_t more = 0; more < 2; more++) {
        storage_space_known_t all = {nonce, top + 5 * more};
        w = tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, &all, 1, &nt);
        CHECK_EQ_INT(w[0].space_nonce, nonce);
        CHECK_EQ_INT(w[0].space_base, top);
        CHECK(w[0].space_parent == NULL && w[0].space_sym == NULL);
        storage_merged_tabs_free(w, nt);
    }

    /* (d) only other nonces known (and count 0 for this one): from id 1 */
    storage_space_known_t other[2] = {{nonce ^ 1, k}, {nonce - 1, top}};
    for (size_t zero = 0; zero < 2; zero++) {
        storage_space_known_t none = {nonce, 0};
        w = tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, zero ? &none : other, zero ? 1 : 2,
                    &nt);
        CHECK_EQ_INT(w[0].space_nonce, nonce);
        CHECK_EQ_INT(w[0].space_base, 1);
        CHECK_EQ_INT(w[0].n, top);
        for (size_t id = 1; id < top; id++) {
            CHECK_EQ_INT(w[0].space_parent[id - 1], v[0].space_parent[id - 1]);
            CHECK_EQ_INT(w[0].space_sym[id - 1], v[0].space_sym[id - 1]);
        }
        storage_merged_tabs_free(w, nt);
    }

    /* the structure is charged like the other arrays: 12 bytes per id sent */
    size_t used[2];
    for (int i = 0; i < 2; i++) {
        alloc_budget_t b;
        alloc_budget_init(&b, 1 << 30);
        alloc_charge_t c;
        alloc_charge_init(&c, &b);
        storage_merger_t *m = fx_merger_of(f, ls, tokens, n);
        storage_merger_set_charge(m, &c);
        storage_space_known_t all = {nonce, top};
        storage_merger_known_spaces(m, i ? &all : NULL, i ? 1 : 0);
        storage_merged_tab_t *t;
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_merger_tabs(m, ALL | STORAGE_TABS_SPACE, &t, &nt, &em), 0);
        used[i] = c.used;
        storage_merged_tabs_free(t, nt);
        storage_merger_free(m);
        CHECK_EQ_INT(c.used, 0);
        alloc_charge_done(&c);
    }
    CHECK_EQ_INT(used[0] - used[1], (top - 1) * (sizeof(uint32_t) + sizeof(uint64_t)));

    /* the known spaces are for one storage_merger_tabs: the next knows none */
    storage_merger_t *m = fx_merger_of(f, ls, tokens, n);
    storage_space_known_t all = {nonce, top};
    storage_merger_known_spaces(m, &all, 1);
    storage_merged_tab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_tabs(m, ALL | STORAGE_TABS_SPACE, &t, &nt, &em), 0);
    CHECK_EQ_INT(t[0].space_base, top);
    storage_merged_tabs_free(t, nt);
    CHECK_EQ_INT(storage_merger_tabs(m, ALL | STORAGE_TABS_SPACE, &t, &nt, &em), 0);
    CHECK_EQ_INT(t[0].space_base, 1);
    storage_merged_tabs_free(t, nt);
    storage_merger_free(m);

    /* without SPACE: the same union's forest, no space */
    w = tabs_of(f, ls, tokens, n, ALL, NULL, 0, &nt);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(w[0].space_nonce, 0);
    CHECK_EQ_INT(w[0].space_base, 0);
    CHECK(w[0].space_parent == NULL && w[0].space_sym == NULL);
    check_same_forest(&v[0], &w[0]);
    storage_merged_tabs_free(w, nt);

    space_free(&sp);
    storage_merged_tabs_free(v, 1);
}

/* (c) One token: a union's forest with SPACE, the token's own without;
 * the same forest either way. */
static void test_one_token(fixture_t *f, labels_t *const *ls, const uint64_t *tokens)
{
    size_t nt, nt2;
    storage_merged_tab_t *v = tabs_of(f, ls, tokens, 1, ALL | STORAGE_TABS_SPACE, NULL, 0, &nt);
    storage_merged_tab_t *w = tabs_of(f, ls, tokens, 1, ALL, NULL, 0, &nt2);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(nt2, 1);
    CHECK(v[0].space_nonce != 0);
    CHECK_EQ_INT(v[0].space_base, 1);
    CHECK_EQ_INT(w[0].space_nonce, 0);
    check_same_forest(&v[0], &w[0]);
    space_t sp = {0};
    space_apply(&sp, &v[0]);
    check_space(&v[0], &sp);
    space_free(&sp);
    CHECK(v[0].total[0] > 0);
    storage_merged_tabs_free(v, nt);
    storage_merged_tabs_free(w, nt2);
}

/* The nonce and n of a SPACE forest of ls at tokens. */
static uint64_t nonce_of(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, size_t n,
                         const storage_space_known_t *known, size_t nknown, space_t *sp)
{
    size_t nt;
    storage_merged_tab_t *v =
        tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, known, nknown, &nt);
    CHECK_EQ_INT(nt, 1);
    uint64_t nonce = v[0].space_nonce;
    if (sp != NULL) {
        space_apply(sp, &v[0]);
        check_space(&v[0], sp);
    }
    storage_merged_tabs_free(v, nt);
    return nonce;
}

/* (e) A union extended keeps its nonce (the caller adds the new ids to
 * what it had); a table emptied (a new generation) gives a new one. */
static void test_generation(fixture_t *f, symtab_t *st, labels_t *const *ls, const uint64_t *tokens)
{
    space_t sp = {0};
    uint64_t nonce = nonce_of(f, ls, tokens, 3, NULL, 0, &sp);
    CHECK(nonce != 0);
    size_t had = sp.n;
    const char *more[] = {"main;a;b;q", "q;main;a", "main;d;e;f", "w;v;u"};
    fx_write_stacks(f, st, ls[2], tokens[2], more, 4, 10);
    fx_write_stacks(f, st, ls[0], tokens[0], more, 2, 11);
    storage_space_known_t known = {nonce, had};
    CHECK_EQ_INT(nonce_of(f, ls, tokens, 3, &known, 1, &sp), nonce); /* the tail applied */
    CHECK(sp.n > had);

    uint64_t one = nonce_of(f, ls + 1, tokens + 1, 1, NULL, 0, NULL); /* TOKEN1's own union */
    CHECK(one != 0 && one != nonce);
    uint64_t builds = f->s->unions.builds;
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f->s, TOKEN1, "t", &t, &em), 0);
    storage_nodetab_release(f->s, t, 1);
    known.count = sp.n;
    space_t fresh = {0};
    uint64_t again = nonce_of(f, ls, tokens, 3, &known, 1, &fresh); /* the old count ignored */
    CHECK(again != 0 && again != nonce);
    CHECK_EQ_INT(f->s->unions.builds, builds + 1);
    space_free(&fresh);
    /* and the one-token union of TOKEN1 (another key): new too */
    uint64_t one_again = nonce_of(f, ls + 1, tokens + 1, 1, NULL, 0, NULL);
    CHECK(one_again != 0 && one_again != one && one_again != again);
    space_free(&sp);
}

/* (f) A forest over a hand-made tree:
 *   0 root (1) ─ 1 A (2) ─ 2 B (3)
 *              │         └ 3 C (0)
 *              └ 4 D (4) ─ 5 E (5)
 * totals: 5 → 5, 4 → 9, 3 → 0 (no node), 2 → 3, 1 → 5, 0 → 15. */
static void test_tab_of(void)
{
    static const uint32_t parent[] = {0, 0, 1, 1, 0, 4};
    static const uint64_t sym[] = {0, 0xa, 0xb, 0xc, 0xd, 0xe};
    static const int64_t want_total[] = {15, 5, 3, 0, 9, 5};
    int64_t *val = malloc(6 * sizeof *val);
    memcpy(val, (int64_t[]){1, 2, 3, 0, 4, 5}, 6 * sizeof *val);
    storage_merged_tab_t v;
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, NULL, 0, val, 6,
                                       ALL | STORAGE_TABS_SYMNOS | STORAGE_TABS_SPACE, 0, &v),
                 0);
    CHECK_EQ_INT(v.nonneg, 1);
    CHECK_EQ_INT(v.n, 6);
    CHECK_EQ_INT(v.nodes, 5);
    CHECK(v.self == val);
    CHECK_EQ_INT(v.owns_self, 1);
    CHECK_EQ_INT(v.distinct_kids, 0);
    CHECK(v.symno == NULL); /* not taken: none given */
    CHECK_EQ_INT(v.space_nonce, 0);
    for (size_t id = 0; id < 6; id++)
        CHECK_EQ_INT(v.total[id], want_total[id]);
    CHECK_EQ_INT(v.sym[0], SYM_ROOT);
    CHECK_EQ_INT(v.sym[5], 0xe);
    CHECK_EQ_INT(v.first_kid[0], 1);
    CHECK_EQ_INT(v.next_sib[1], 4);
    CHECK_EQ_INT(v.next_sib[4], STORAGE_NO_KID);
    CHECK_EQ_INT(v.first_kid[1], 2);
    CHECK_EQ_INT(v.next_sib[2], STORAGE_NO_KID); /* 3 has no total */
    CHECK_EQ_INT(v.first_kid[4], 5);
    CHECK_EQ_INT(v.first_kid[2], STORAGE_NO_KID);
    CHECK_EQ_INT(v.first_kid[5], STORAGE_NO_KID);
    CHECK_EQ_INT(v.parent[1], 0);
    CHECK_EQ_INT(v.parent[2], 1);
    CHECK_EQ_INT(v.parent[4], 0);
    CHECK_EQ_INT(v.parent[5], 4);
    CHECK_EQ_INT(v.least_kid[0], 5);
    CHECK_EQ_INT(v.least_kid[1], 3);
    CHECK_EQ_INT(v.least_kid[4], 5);
    CHECK_EQ_INT(v.least_kid[2], UINT64_MAX);
    storage_merged_tab_release(&v); /* frees val: ASan says if not */

    /* symbol numbers given and asked: copied for the forest's nodes */
    static const uint32_t symno[] = {0, 1, 2, 1, 3, 2};
    val = calloc(6, sizeof *val);
    val[2] = val[5] = 1;
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, symno, 4, val, 6, STORAGE_TABS_SYMNOS, 1, &v),
                 0);
    CHECK(v.symno != NULL);
    CHECK_EQ_INT(v.nsyms, 4);
    CHECK_EQ_INT(v.symno[0], 0);
    CHECK_EQ_INT(v.symno[2], 2);
    CHECK_EQ_INT(v.symno[4], 3);
    CHECK_EQ_INT(v.symno[5], 2);
    storage_merged_tab_release(&v);
    /* ... given but not asked: none */
    val = calloc(6, sizeof *val);
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, symno, 4, val, 6, 0, 1, &v), 0);
    CHECK(v.symno == NULL);
    CHECK_EQ_INT(v.nsyms, 0);
    storage_merged_tab_release(&v);

    /* no flags: no parents, no least children; distinct kids as told */
    val = calloc(6, sizeof *val);
    val[5] = 7;
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, NULL, 0, val, 6, 0, 1, &v), 0);
    CHECK_EQ_INT(v.nodes, 3); /* root, 4, 5 */
    CHECK_EQ_INT(v.total[0], 7);
    CHECK(v.parent == NULL && v.least_kid == NULL);
    CHECK_EQ_INT(v.distinct_kids, 1);
    storage_merged_tab_release(&v);

    /* a value below 0: no forest, val freed */
    val = malloc(6 * sizeof *val);
    memcpy(val, (int64_t[]){1, 2, -3, 0, 4, 5}, 6 * sizeof *val);
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, NULL, 0, val, 6, ALL, 1, &v), 0);
    CHECK_EQ_INT(v.nonneg, 0);
    CHECK_EQ_INT(v.n, 0);
    CHECK(v.self == NULL && v.total == NULL && v.sym == NULL);

    /* a total past INT64_MAX: no forest either */
    val = malloc(3 * sizeof *val);
    memcpy(val, (int64_t[]){0, INT64_MAX, 1}, 3 * sizeof *val);
    CHECK_EQ_INT(storage_merged_tab_of((const uint32_t[]){0, 0, 0}, sym, NULL, 0, val, 3, 0, 1, &v),
                 0);
    CHECK_EQ_INT(v.nonneg, 0);

    /* the root alone */
    val = malloc(sizeof *val);
    val[0] = 4;
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, NULL, 0, val, 1, ALL, 1, &v), 0);
    CHECK_EQ_INT(v.nodes, 1);
    CHECK_EQ_INT(v.total[0], 4);
    CHECK_EQ_INT(v.first_kid[0], STORAGE_NO_KID);
    storage_merged_tab_release(&v);

    /* a tree that is none (a parent not below its id), or no ids: refused, val freed */
    val = calloc(6, sizeof *val);
    CHECK_EQ_INT(
        storage_merged_tab_of((const uint32_t[]){0, 0, 2, 1, 0, 4}, sym, NULL, 0, val, 6, 0, 1, &v),
        ERR_INVALID_ARGUMENT);
    CHECK(v.self == NULL);
    val = calloc(1, sizeof *val);
    CHECK_EQ_INT(storage_merged_tab_of(parent, sym, NULL, 0, val, 0, 0, 1, &v),
                 ERR_INVALID_ARGUMENT);
}

/* (g) No union (union_cache_bytes 0, or past it): a forest per token and
 * no space, one token included. */
/* (h) Values alone (STORAGE_TABS_VALUES): the whole forest's self, n and
 * id space, none of its arrays; a forest per token without a union, and
 * whole forests without STORAGE_TABS_SPACE. */
static void test_values_only(fixture_t *f, labels_t *const *ls, const uint64_t *tokens)
{
    size_t nt, nw;
    storage_merged_tab_t *v = tabs_of(f, ls, tokens, 3, ALL | STORAGE_TABS_SPACE, NULL, 0, &nt);
    storage_merged_tab_t *w =
        tabs_of(f, ls, tokens, 3, ALL | STORAGE_TABS_SPACE | STORAGE_TABS_VALUES, NULL, 0, &nw);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(nw, 1);
    CHECK_EQ_INT(w[0].values_only, 1);
    CHECK_EQ_INT(v[0].values_only, 0);
    CHECK_EQ_INT(w[0].nonneg, 1);
    CHECK_EQ_INT(w[0].n, v[0].n);
    CHECK_EQ_INT(w[0].nodes, w[0].n); /* a bound */
    CHECK(w[0].sym == NULL && w[0].total == NULL && w[0].first_kid == NULL);
    CHECK(w[0].next_sib == NULL && w[0].parent == NULL && w[0].least_kid == NULL);
    CHECK_EQ_INT(w[0].space_nonce, v[0].space_nonce);
    CHECK_EQ_INT(w[0].space_base, v[0].space_base);
    for (size_t id = 0; id < v[0].n; id++)
        CHECK_EQ_INT(w[0].self[id], v[0].self[id]);
    for (size_t id = v[0].space_base; id < v[0].n; id++) {
        CHECK_EQ_INT(w[0].space_parent[id - 1], v[0].space_parent[id - 1]);
        CHECK_EQ_INT(w[0].space_sym[id - 1], v[0].space_sym[id - 1]);
    }
    storage_merged_tabs_free(w, nw);
    /* without a space asked: a whole forest */
    w = tabs_of(f, ls, tokens, 3, ALL | STORAGE_TABS_VALUES, NULL, 0, &nw);
    CHECK_EQ_INT(nw, 1);
    CHECK_EQ_INT(w[0].values_only, 0);
    CHECK(w[0].total != NULL && w[0].total[0] == v[0].total[0]);
    storage_merged_tabs_free(w, nw);
    storage_merged_tabs_free(v, nt);
    /* no union allowed: a whole forest per token */
    size_t bound = f->s->unions.max_bytes;
    f->s->unions.max_bytes = 0;
    w = tabs_of(f, ls, tokens, 3, ALL | STORAGE_TABS_SPACE | STORAGE_TABS_VALUES, NULL, 0, &nw);
    CHECK_EQ_INT(nw, 3);
    for (size_t i = 0; i < nw; i++)
        CHECK(w[i].values_only == 0 && w[i].total != NULL && w[i].space_nonce == 0);
    storage_merged_tabs_free(w, nw);
    f->s->unions.max_bytes = bound;
}

static void test_no_union(fixture_t *f, labels_t *const *ls, const uint64_t *tokens)
{
    size_t bound = f->s->unions.max_bytes, nt;
    f->s->unions.max_bytes = 0;
    for (size_t n = 1; n <= 3; n += 2) {
        storage_merged_tab_t *v = tabs_of(f, ls, tokens, n, ALL | STORAGE_TABS_SPACE, NULL, 0, &nt);
        CHECK_EQ_INT(nt, n);
        for (size_t i = 0; i < nt; i++) {
            CHECK_EQ_INT(v[i].nonneg, 1);
            CHECK_EQ_INT(v[i].space_nonce, 0);
            CHECK_EQ_INT(v[i].space_base, 0);
            CHECK(v[i].space_parent == NULL && v[i].space_sym == NULL);
        }
        storage_merged_tabs_free(v, nt);
    }
    f->s->unions.max_bytes = 64; /* a union too large: refused */
    storage_merged_tab_t *v = tabs_of(f, ls, tokens, 1, ALL | STORAGE_TABS_SPACE, NULL, 0, &nt);
    CHECK_EQ_INT(nt, 1);
    CHECK_EQ_INT(v[0].space_nonce, 0);
    CHECK_EQ_INT(v[0].nonneg, 1);
    storage_merged_tabs_free(v, nt);
    f->s->unions.max_bytes = bound;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *ls[3];
    uint64_t tokens[3] = {TOKEN2, TOKEN1, TOKEN3};
    fx_write_three(&f, st, ls, tokens);

    test_known(&f, ls, tokens, 2);
    test_known(&f, ls, tokens, 3);
    test_one_token(&f, ls, tokens);
    test_one_token(&f, ls + 2, tokens + 2);
    /* each union its own nonce: two token sets, two nonces */
    uint64_t n2 = nonce_of(&f, ls, tokens, 2, NULL, 0, NULL);
    uint64_t n3 = nonce_of(&f, ls, tokens, 3, NULL, 0, NULL);
    uint64_t n1 = nonce_of(&f, ls, tokens, 1, NULL, 0, NULL);
    CHECK(n1 != n2 && n2 != n3 && n1 != n3);
    CHECK_EQ_INT(nonce_of(&f, ls, tokens, 3, NULL, 0, NULL), n3); /* cached: the same */
    test_generation(&f, st, ls, tokens);
    test_tab_of();
    test_values_only(&f, ls, tokens);
    test_no_union(&f, ls, tokens);

    /* another storage (a restart): other nonces */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    uint64_t after = nonce_of(&f, ls, tokens, 3, NULL, 0, NULL);
    CHECK(after != 0 && after != n3);

    for (int i = 0; i < 3; i++)
        labels_free(ls[i]);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
