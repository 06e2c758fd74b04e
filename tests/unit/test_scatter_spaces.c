/* test_scatter_spaces.c — a coordinator's maps of its shares' id spaces:
 * shares that number the same call paths differently add into one tree
 * per scope, whose forest has the paths' hand-computed totals; a later
 * render sends no structure and gets the same forest; structure may come
 * in pieces and repeat held ids; every broken answer is refused whole;
 * the share's encoding round-trips, its values (gap, value) exact at
 * every edge of the 64-id masks it finds them by, one below 0 refused,
 * sent divided by their greatest common divisor when asked (a value
 * whose product with it passes INT64_MAX refused); a
 * followed forest of no scope ends its follow; known lists the most
 * recent spaces; names are kept from a table too, and held names do not
 * change until released (an add waits);
 * the bound drops released scopes but never held ones, nor one a forest
 * still reads (its arrays stay put while another render grows the tree,
 * also from another thread while forests are made and read);
 * and two threads
 * adding at once agree with one after the other. Randomised trees print
 * their seed (SCATTER_SPACES_SEED gives it back).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/hash.h"
#include "common/symtab.h"
#include "node/cluster/scatter_spaces.h"
#include "tests/unit/check.h"

#define KEY_MAX 512

/* A share's union: ids 0..n-1, id 0 the root, and its values. */
typedef struct fake {
    uint64_t nonce;
    size_t n;
    uint32_t *parent;
    uint64_t *sym;
    int64_t *self;
} fake_t;

static fake_t fake_of(uint64_t nonce, const uint32_t *parent, const uint64_t *sym,
                      const int64_t *self, size_t n)
{
    fake_t f = {nonce, n, malloc(n * sizeof *parent), malloc(n * sizeof *sym),
                malloc(n * sizeof *self)};
    memcpy(f.parent, parent, n * sizeof *parent);
    memcpy(f.sym, sym, n * sizeof *sym);
    memcpy(f.self, self, n * sizeof *self);
    f.sym[0] = SYM_ROOT;
    return f;
}

/* A random union of n ids over a few symbols, so that two of them share
 * many paths, numbered differently. */
static fake_t fake_random(uint64_t nonce, size_t n)
{
    fake_t f = {nonce, n, malloc(n * sizeof *f.parent), malloc(n * sizeof *f.sym),
                malloc(n * sizeof *f.self)};
    f.parent[0] = 0;
    f.sym[0] = SYM_ROOT;
    f.self[0] = 0;
    for (size_t id = 1; id < n; id++) {
        f.parent[id] = (uint32_t)(check_rng() % (id < 8 ? id : 8 + (id - 8) / 4));
        f.sym[id] = 100 + check_rng() % 6;
        f.self[id] = check_rng() % 3 == 0 ? (int64_t)(check_rng() % 1000) : 0;
    }
    return f;
}

static void fake_free(fake_t *f)
{
    free(f->parent);
    free(f->sym);
    free(f->self);
}

/* f as a local share's forest whose structure starts at base. */
static storage_merged_tab_t tab_of(const fake_t *f, size_t base)
{
    storage_merged_tab_t t = {0};
    t.n = f->n;
    t.self = f->self;
    t.space_nonce = f->nonce;
    t.space_base = base;
    t.space_parent = base < f->n ? f->parent + base : NULL;
    t.space_sym = base < f->n ? f->sym + base : NULL;
    t.nonneg = 1;
    return t;
}

/* f's answer in the IdSpace encoding (structure from base), added. */
static int add_fake(scatter_scope_t *sc, const char *peer, const fake_t *f, size_t base,
                    scatter_sums_t *sums)
{
    storage_merged_tab_t t = tab_of(f, base);
    buf_t s, v;
    buf_init(&s, BUF_UNLIMITED);
    buf_init(&v, BUF_UNLIMITED);
    uint64_t unit;
    int rc = scatter_space_encode(&t, 1, &s, &v, &unit);
    CHECK_EQ_INT(rc, 0);
    errmsg_t em = {{0}};
    scatter_space_answer_t a = {.peer = peer,
                                .nonce = f->nonce,
                                .base = base,
                                .count = f->n,
                                .unit = unit,
                                .structure = s.data,
                                .slen = s.len,
                                .values = v.data,
                                .vlen = v.len};
    if (rc == 0) rc = scatter_scope_add(sc, &a, sums, &em);
    if (rc != 0) fprintf(stderr, "add: %s\n", errmsg_text(&em, rc));
    buf_free(&s);
    buf_free(&v);
    return rc;
}

/* ---- call paths and their totals ---- */

typedef struct path {
    char key[KEY_MAX]; /* the symbols from the root's child down, "/"-separated */
    int64_t total;
} path_t;

typedef struct paths {
    path_t *v;
    size_t n, cap;
} paths_t;

static void paths_put(paths_t *p, const char *key, int64_t total)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->v = realloc(p->v, p->cap * sizeof *p->v);
    }
    snprintf(p->v[p->n].key, KEY_MAX, "%s", key);
    p->v[p->n++].total = total;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const path_t *)a)->key, ((const path_t *)b)->key);
}

/* Sorted, one entry per key (totals added), zero totals but the root's left out. */
static void paths_fold(paths_t *p)
{
    qsort(p->v, p->n, sizeof *p->v, by_key);
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (k > 0 && strcmp(p->v[k - 1].key, p->v[i].key) == 0)
            p->v[k - 1].total += p->v[i].total;
        else
            p->v[k++] = p->v[i];
    }
    size_t j = 0;
    for (size_t i = 0; i < k; i++)
        if (p->v[i].total != 0 || p->v[i].key[0] == 0) p->v[j++] = p->v[i];
    p->n = j;
}

static void key_of(const fake_t *f, size_t id, char *out)
{
    uint64_t chain[256];
    size_t d = 0;
    for (size_t x = id; x != 0 && d < 256; x = f->parent[x])
        chain[d++] = f->sym[x];
    size_t k = 0;
    out[0] = 0;
    while (d-- > 0)
        k += (size_t)snprintf(out + k, KEY_MAX - k, "/%llu", (unsigned long long)chain[d]);
}

/* What the forest of f[0..nf) (each times `times`) holds: each id's value
 * in its path's total and every ancestor's. */
static void paths_expected(const fake_t *f, size_t nf, int64_t times, paths_t *out)
{
    char key[KEY_MAX];
    paths_put(out, "", 0);
    for (size_t i = 0; i < nf; i++) {
        for (size_t id = 1; id < f[i].n; id++) {
            if (f[i].self[id] == 0) continue;
            key_of(&f[i], id, key);
            for (;;) { /* the path, then each ancestor's, the root's ("") last */
                paths_put(out, key, f[i].self[id] * times);
                if (key[0] == 0) break;
                *strrchr(key, '/') = 0;
            }
        }
    }
    paths_fold(out);
}

static void walk(const storage_merged_tab_t *t, uint32_t node, const char *key, paths_t *out)
{
    paths_put(out, key, t->total[node]);
    char sub[KEY_MAX];
    for (uint32_t k = t->first_kid[node]; k != STORAGE_NO_KID; k = t->next_sib[k]) {
        snprintf(sub, sizeof sub, "%s/%llu", key, (unsigned long long)t->sym[k]);
        walk(t, k, sub, out);
    }
}

static void paths_of(const storage_merged_tab_t *t, paths_t *out)
{
    walk(t, 0, "", out);
    size_t n = out->n;
    paths_fold(out);
    CHECK_EQ_INT(out->n, n); /* no path twice: distinct kids */
    CHECK_EQ_INT(out->n, t->nodes);
}

static int paths_same(const paths_t *a, const paths_t *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].key, b->v[i].key) != 0 || a->v[i].total != b->v[i].total) return 0;
    return 1;
}

/* t's symbol numbers: one per distinct symbol of its nodes (the root's
 * 0), below nsyms. */
static void check_symnos(const storage_merged_tab_t *t)
{
    CHECK(t->symno != NULL);
    if (t->symno == NULL) return;
    CHECK_EQ_INT(t->symno[0], 0);
    for (size_t i = 0; i < t->n; i++) {
        if (i > 0 && t->total[i] == 0) continue; /* not a forest node */
        CHECK(t->symno[i] < t->nsyms);
        for (size_t k = 1; k < i; k++)
            if (t->total[k] != 0) CHECK_EQ_INT(t->symno[i] == t->symno[k], t->sym[i] == t->sym[k]);
    }
}

/* The forest of sums equals the expected paths of f[0..nf) times `times`. */
static void check_forest(scatter_scope_t *sc, scatter_sums_t *sums, const fake_t *f, size_t nf,
                         int64_t times)
{
    storage_merged_tab_t t;
    errmsg_t em = {{0}};
    int rc = scatter_scope_forest(sc, sums, &t, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK(sums->v == NULL && sums->n == 0);
    if (rc == 0) check_symnos(&t);
    paths_t want = {0}, got = {0};
    paths_expected(f, nf, times, &want);
    if (rc == 0) paths_of(&t, &got);
    CHECK(paths_same(&want, &got));
    storage_merged_tab_release(&t);
    free(want.v);
    free(got.v);
}

/* ---- the tests ---- */

static void test_disabled(void)
{
    scatter_spaces_t *c = (scatter_spaces_t *)1;
    CHECK_EQ_INT(scatter_spaces_new(0, &c), 0);
    CHECK(c == NULL);
    scatter_scope_t *sc = (scatter_scope_t *)1;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    CHECK(sc == NULL);
    storage_space_known_t k[2];
    CHECK_EQ_INT(scatter_scope_known(sc, "p", k, 2), 0);
    scatter_sums_t sums = {0};
    uint8_t v[] = {1, 5};
    scatter_space_answer_t a = {
        .peer = "p", .nonce = 7, .base = 1, .count = 2, .values = v, .vlen = sizeof v};
    CHECK_EQ_INT(scatter_scope_add(sc, &a, &sums, NULL),
                 ERR_INVALID_ARGUMENT); /* nothing to add into: never silently lost */
    CHECK(sums.v == NULL && !sums.added);
    scatter_spaces_stats_t st;
    scatter_spaces_get_stats(c, &st);
    CHECK(st.scopes_built == 0 && st.bytes == 0);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
}

/* Two peers number /main, /main/foo, /main/bar, /main/foo/baz differently;
 * A alone has /other, B alone /main/bar/qux. */
static const uint32_t a_parent[] = {0, 0, 1, 1, 2, 0};
static const uint64_t a_sym[] = {0, 10, 11, 12, 13, 14};
static const int64_t a_self[] = {0, 0, 5, 7, 3, 2};
static const uint32_t b_parent[] = {0, 0, 1, 2, 1, 4};
static const uint64_t b_sym[] = {0, 10, 12, 15, 11, 13};
static const int64_t b_self[] = {0, 1, 0, 4, 6, 10};

static void test_two_peers(void)
{
    fake_t f[2] = {fake_of(0xa1, a_parent, a_sym, a_self, 6),
                   fake_of(0xb1, b_parent, b_sym, b_self, 6)};
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0};
    check_forest(sc, &sums, f, 0, 1); /* no add yet: the root alone */
    CHECK_EQ_INT(add_fake(sc, "A", &f[0], 1, &sums), 0);
    CHECK_EQ_INT(add_fake(sc, "B", &f[1], 1, &sums), 0);
    CHECK(sums.added);
    /* by hand: /main 5+7+3 + 1+4+6+10 = 36, /main/foo 8 + 16 = 24, /main/bar 7 + 4,
     * /main/foo/baz 3 + 10, /other 2, /main/bar/qux 4; root 38 */
    paths_t want = {0};
    paths_expected(f, 2, 1, &want);
    CHECK_EQ_INT(want.n, 7);
    CHECK_EQ_STR(want.v[0].key, "");
    CHECK_EQ_INT(want.v[0].total, 38);
    CHECK_EQ_STR(want.v[1].key, "/10");
    CHECK_EQ_INT(want.v[1].total, 36);
    CHECK_EQ_STR(want.v[2].key, "/10/11");
    CHECK_EQ_INT(want.v[2].total, 24);
    CHECK_EQ_STR(want.v[4].key, "/10/12");
    CHECK_EQ_INT(want.v[4].total, 11);
    free(want.v);
    check_forest(sc, &sums, f, 2, 1);
    scatter_spaces_stats_t st;
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.spaces_added, 2);
    CHECK_EQ_INT(st.ids_received, 10);
    CHECK_EQ_INT(st.scopes_built, 1);
    CHECK(st.bytes > 0);
    scatter_spaces_release(c, sc);
    /* (c) a second render: the coordinator advertises what it holds and
     * the shares send no structure (base == held) */
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    storage_space_known_t k[SCATTER_SPACES_KNOWN_MAX];
    CHECK_EQ_INT(scatter_scope_known(sc, "A", k, SCATTER_SPACES_KNOWN_MAX), 1);
    CHECK(k[0].nonce == 0xa1 && k[0].count == 6);
    CHECK_EQ_INT(add_fake(sc, "B", &f[1], 6, &sums), 0);
    CHECK_EQ_INT(add_fake(sc, "A", &f[0], 6, &sums), 0);
    check_forest(sc, &sums, f, 2, 1);
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_built, 1);
    CHECK_EQ_INT(st.ids_received, 10);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&f[0]);
    fake_free(&f[1]);
}

/* A symbol on several paths (a recursion, and the same function under
 * the root from another peer) has one number in the forest. */
static void test_symnos(void)
{
    static const uint32_t p1[] = {0, 0, 1, 2}, p2[] = {0, 0, 1};
    static const uint64_t s1[] = {0, 10, 11, 11}, s2[] = {0, 11, 10};
    static const int64_t v1[] = {0, 1, 2, 3}, v2[] = {0, 4, 5};
    fake_t f[2] = {fake_of(0xc1, p1, s1, v1, 4), fake_of(0xd1, p2, s2, v2, 3)};
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "", &sc), 0);
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &f[0], 1, &sums), 0);
    CHECK_EQ_INT(add_fake(sc, "B", &f[1], 1, &sums), 0);
    storage_merged_tab_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(scatter_scope_forest(sc, &sums, &t, &em), 0);
    CHECK_EQ_INT(t.nsyms, 3); /* the root's, 10 and 11 */
    check_symnos(&t);
    storage_merged_tab_release(&t);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&f[0]);
    fake_free(&f[1]);
}

/* (d) structure in two pieces, and pieces that repeat held ids. */
static void test_pieces(void)
{
    uint32_t parent[] = {0, 0, 1, 1, 2, 0, 4};
    uint64_t sym[] = {0, 10, 11, 12, 13, 14, 16};
    int64_t self[] = {0, 0, 5, 7, 3, 2, 9};
    fake_t whole = fake_of(0xa2, parent, sym, self, 7);
    fake_t first = fake_of(0xa2, parent, sym, self, 4),
           second = fake_of(0xa2, parent, sym, self, 6);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "", &sc), 0);
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &first, 1, &sums), 0); /* ids [1, 4) */
    check_forest(sc, &sums, &first, 1, 1);
    CHECK_EQ_INT(add_fake(sc, "A", &second, 4, &sums), 0); /* ids [4, 6): base in the middle */
    check_forest(sc, &sums, &second, 1, 1);
    CHECK_EQ_INT(add_fake(sc, "A", &second, 2, &sums), 0); /* ids [2, 6), every one held */
    check_forest(sc, &sums, &second, 1, 1);
    CHECK_EQ_INT(add_fake(sc, "A", &whole, 3, &sums), 0); /* [3, 6) held, 6 new */
    check_forest(sc, &sums, &whole, 1, 1);
    storage_space_known_t k;
    CHECK_EQ_INT(scatter_scope_known(sc, "A", &k, 1), 1);
    CHECK_EQ_INT(k.count, 7);
    /* a shorter answer of a space held longer: its values by the ids held */
    CHECK_EQ_INT(add_fake(sc, "A", &first, 4, &sums), 0);
    check_forest(sc, &sums, &first, 1, 1);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&whole);
    fake_free(&first);
    fake_free(&second);
}

static void put_entry(buf_t *b, uint64_t delta, uint64_t sym)
{
    CHECK_EQ_INT(buf_append_uvarint(b, delta), 0);
    for (int i = 0; i < 8; i++, sym >>= 8)
        CHECK_EQ_INT(buf_append_byte(b, (uint8_t)sym), 0);
}

static void put_value(buf_t *b, uint64_t delta, uint64_t v)
{
    CHECK_EQ_INT(buf_append_uvarint(b, delta), 0);
    CHECK_EQ_INT(buf_append_uvarint(b, v), 0);
}

typedef struct bad {
    const char *what;
    uint64_t nonce, base, count, unit;
    buf_t s, v;
} bad_t;

static void bad_init(bad_t *b, const char *what, uint64_t nonce, uint64_t base, uint64_t count)
{
    b->what = what;
    b->nonce = nonce;
    b->base = base;
    b->count = count;
    b->unit = 0;
    buf_init(&b->s, BUF_UNLIMITED);
    buf_init(&b->v, BUF_UNLIMITED);
}

/* b is refused as corrupt with a reason, and neither sums nor what the
 * scope holds of A changes. */
static void check_refused(scatter_scope_t *sc, bad_t *b, scatter_sums_t *sums)
{
    int64_t before[64];
    size_t n = sums->n;
    int added = sums->added;
    memcpy(before, sums->v, n * sizeof *before);
    errmsg_t em = {{0}};
    scatter_space_answer_t a = {.peer = "A",
                                .nonce = b->nonce,
                                .base = b->base,
                                .count = b->count,
                                .unit = b->unit,
                                .structure = b->s.data,
                                .slen = b->s.len,
                                .values = b->v.data,
                                .vlen = b->v.len};
    int rc = scatter_scope_add(sc, &a, sums, &em);
    if (rc != ERR_CORRUPT) fprintf(stderr, "case '%s': rc %d\n", b->what, rc);
    CHECK_EQ_INT(rc, ERR_CORRUPT);
    CHECK(strncmp(em.text, "id space: ", 10) == 0);
    CHECK(sums->n == n && sums->added == added && memcmp(before, sums->v, n * 8) == 0);
    storage_space_known_t k[4];
    CHECK_EQ_INT(scatter_scope_known(sc, "A", k, 4), 1);
    CHECK(k[0].nonce == 0xa1 && k[0].count == 6);
    buf_free(&b->s);
    buf_free(&b->v);
}

/* (e) every broken answer: ERR_CORRUPT, nothing changed. */
static void test_corrupt(void)
{
    fake_t a = fake_of(0xa1, a_parent, a_sym, a_self, 6);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &a, 1, &sums), 0);
    bad_t b;
    bad_init(&b, "base 0", 0xa1, 0, 6);
    check_refused(sc, &b, &sums);
    bad_init(&b, "base past held, new space", 0xa9, 2, 3);
    put_entry(&b.s, 1, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "base past held", 0xa1, 7, 8);
    put_entry(&b.s, 1, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "nonce 0", 0, 1, 2);
    put_entry(&b.s, 1, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "parent delta 0", 0xa1, 6, 7);
    put_entry(&b.s, 0, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "parent delta past id", 0xa1, 6, 7);
    put_entry(&b.s, 7, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "truncated varint", 0xa1, 6, 7);
    buf_append_byte(&b.s, 0x81);
    check_refused(sc, &b, &sums);
    bad_init(&b, "truncated symbol", 0xa1, 6, 7);
    put_entry(&b.s, 1, 50);
    b.s.len -= 3;
    check_refused(sc, &b, &sums);
    bad_init(&b, "fewer entries than count - base", 0xa1, 6, 8);
    put_entry(&b.s, 1, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "trailing structure bytes", 0xa1, 6, 7);
    put_entry(&b.s, 1, 50);
    buf_append_byte(&b.s, 0);
    check_refused(sc, &b, &sums);
    bad_init(&b, "structure where none is due", 0xa1, 6, 6);
    put_entry(&b.s, 1, 50);
    check_refused(sc, &b, &sums);
    bad_init(&b, "trailing value bytes", 0xa1, 6, 6);
    put_value(&b.v, 2, 5);
    buf_append_byte(&b.v, 1);
    check_refused(sc, &b, &sums);
    bad_init(&b, "truncated value", 0xa1, 6, 6);
    put_value(&b.v, 2, 300);
    b.v.len--;
    check_refused(sc, &b, &sums);
    bad_init(&b, "value id >= count", 0xa1, 6, 6);
    put_value(&b.v, 2, 5);
    put_value(&b.v, 3, 5); /* id 6 */
    check_refused(sc, &b, &sums);
    bad_init(&b, "ids not ascending (a delta wrapping round)", 0xa1, 6, 6);
    put_value(&b.v, 4, 5);
    put_value(&b.v, UINT64_MAX - 2, 5); /* 5 + 2^64 - 3: id 2 */
    check_refused(sc, &b, &sums);
    bad_init(&b, "value past INT64_MAX", 0xa1, 6, 6);
    put_value(&b.v, 2, (uint64_t)INT64_MAX + 1);
    check_refused(sc, &b, &sums);
    bad_init(&b, "value times its unit past INT64_MAX", 0xa1, 6, 6);
    b.unit = 10000000;
    put_value(&b.v, 2, 5);
    put_value(&b.v, 0, (uint64_t)INT64_MAX / 10000000 + 1);
    check_refused(sc, &b, &sums);
    bad_init(&b, "repeated id of another symbol", 0xa1, 4, 6);
    put_entry(&b.s, 2, 13); /* id 4 as held */
    put_entry(&b.s, 5, 99); /* id 5: /other held, 99 sent */
    check_refused(sc, &b, &sums);
    bad_init(&b, "repeated id of another parent", 0xa1, 3, 7);
    put_entry(&b.s, 1, 12); /* id 3 under 2, held under 1 */
    put_entry(&b.s, 2, 13);
    put_entry(&b.s, 5, 14);
    put_entry(&b.s, 1, 16);
    check_refused(sc, &b, &sums);
    /* a valid answer still adds as before */
    CHECK_EQ_INT(add_fake(sc, "A", &a, 6, &sums), 0);
    check_forest(sc, &sums, &a, 1, 2);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&a);
}

static size_t decode_values(const buf_t *b, size_t *ids, int64_t *vals, size_t max);

/* Euclid's, by hand (gcd_of(0, v) = v). */
static uint64_t gcd_of(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* The values of one encoding with scaled, decoded: their unit the
 * greatest common divisor of self's non-zero values (want), each value
 * times it exactly self's, and the same bytes as unscaled when it is 1. */
static void check_unit(const int64_t *self, size_t n, uint64_t want)
{
    uint32_t *parent = calloc(n, sizeof *parent);
    uint64_t *sym = calloc(n, sizeof *sym);
    storage_merged_tab_t t = {.n = n, .self = (int64_t *)self, .space_nonce = 9, .space_base = n};
    t.space_parent = parent;
    t.space_sym = sym;
    buf_t st, v, plain;
    buf_init(&st, BUF_UNLIMITED);
    buf_init(&v, BUF_UNLIMITED);
    buf_init(&plain, BUF_UNLIMITED);
    uint64_t unit = 0, one = 0;
    CHECK_EQ_INT(scatter_space_encode(&t, 1, &st, &v, &unit), 0);
    CHECK_EQ_INT(scatter_space_encode(&t, 0, &st, &plain, &one), 0);
    if (unit != want)
        fprintf(stderr, "unit %llu, want %llu\n", (unsigned long long)unit,
                (unsigned long long)want);
    CHECK(unit == want && one == 1);
    int same = v.len == plain.len && (v.len == 0 || memcmp(v.data, plain.data, v.len) == 0);
    CHECK_EQ_INT(unit == 1, same);
    if (unit > 1) CHECK(v.len < plain.len);
    size_t *ids = calloc(n, sizeof *ids);
    int64_t *vals = calloc(n, sizeof *vals);
    size_t got = decode_values(&v, ids, vals, n), nonzero = 0;
    for (size_t id = 0; id < n; id++)
        nonzero += self[id] != 0;
    CHECK_EQ_INT(got, nonzero);
    for (size_t k = 0; k < got; k++)
        CHECK(ids[k] < n && (uint64_t)vals[k] * unit == (uint64_t)self[ids[k]]);
    free(ids);
    free(vals);
    buf_free(&st);
    buf_free(&v);
    buf_free(&plain);
    free(parent);
    free(sym);
}

/* Units: a CPU profile's multiples of its period, a power of two (no odd
 * part), an odd one, a unit found only at the last value, one value alone
 * (its own unit), values near INT64_MAX, coprime values, none at all; and
 * an answer scaled by its unit adds as the values themselves do. */
static void test_encode_unit(void)
{
    int64_t cpu[] = {0, 10000000, 30000000, 0, 120000000, 10000000, 990000000};
    check_unit(cpu, 7, 10000000);
    int64_t pow2[] = {0, 1 << 20, 3 << 20, 1 << 21};
    check_unit(pow2, 4, 1 << 20);
    int64_t odd[] = {0, 21, 35, 0, 7000000007LL * 7};
    check_unit(odd, 5, 7);
    int64_t last[] = {0, 600, 1200, 1800, 900}; /* 600, then 300 at the last */
    check_unit(last, 5, 300);
    int64_t alone[] = {0, 0, 123456789012345LL};
    check_unit(alone, 3, 123456789012345ULL);
    int64_t big[] = {0, INT64_MAX / 3 * 3, INT64_MAX / 3};
    check_unit(big, 3, (uint64_t)(INT64_MAX / 3));
    int64_t coprime[] = {0, 10000000, 10000001};
    check_unit(coprime, 3, 1);
    int64_t none[] = {0, 0};
    check_unit(none, 2, 1);
    for (int trial = 0; trial < 200; trial++) { /* random multiples of random units */
        int64_t v[70] = {0};
        uint64_t u = 1 + check_rng() % 1000000, g = 0;
        for (size_t i = 1; i < 70; i++) {
            v[i] = check_rng() % 4 == 0 ? 0 : (int64_t)(u * (1 + check_rng() % 5000));
            g = gcd_of(g, (uint64_t)v[i]);
        }
        check_unit(v, 70, g != 0 ? g : 1);
    }
    /* an answer sent in units adds what its values are */
    fake_t a = fake_of(0xa1, a_parent, a_sym, a_self, 6);
    for (size_t id = 1; id < a.n; id++)
        a.self[id] *= 10000000;
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &a, 1, &sums), 0);
    check_forest(sc, &sums, &a, 1, 1);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&a);
}

/* (f) the share's encoding adds as its forest does. */
static void test_encode_roundtrip(void)
{
    fake_t a = fake_of(0xa1, a_parent, a_sym, a_self, 6);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *x, *y;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "x", &x), 0);
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "y", &y), 0);
    scatter_sums_t sx = {0}, sy = {0};
    storage_merged_tab_t t = tab_of(&a, 1), fx, fy;
    CHECK_EQ_INT(add_fake(x, "A", &a, 1, &sx), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(scatter_scope_add_tab(y, "A", &t, &sy, &em), 0);
    CHECK(sy.added);
    CHECK_EQ_INT(scatter_scope_forest(x, &sx, &fx, &em), 0);
    CHECK_EQ_INT(scatter_scope_forest(y, &sy, &fy, &em), 0);
    CHECK(fx.n == fy.n && fx.nodes == fy.nodes && fx.nodes == 6);
    paths_t px = {0}, py = {0};
    paths_of(&fx, &px);
    paths_of(&fy, &py);
    CHECK(paths_same(&px, &py));
    for (size_t id = 0; id < fx.n && fx.n == fy.n; id++)
        CHECK(fx.self[id] == fy.self[id] && fx.total[id] == fy.total[id]);
    /* the tab from a base in the middle, and refused as the encoding is */
    storage_merged_tab_t again = tab_of(&a, 3);
    CHECK_EQ_INT(scatter_scope_add_tab(y, "A", &again, &sy, &em), 0);
    again.space_base = 7;
    CHECK_EQ_INT(scatter_scope_add_tab(y, "A", &again, &sy, &em), ERR_CORRUPT);
    uint32_t bad_parent[] = {0, 0, 1, 3, 2, 0}; /* id 3 its own parent */
    storage_merged_tab_t bad = tab_of(&a, 1);
    bad.space_parent = bad_parent + 1;
    CHECK_EQ_INT(scatter_scope_add_tab(y, "A", &bad, &sy, &em), ERR_CORRUPT);
    CHECK_EQ_INT(sy.n, 6); /* the one good add only */
    check_forest(y, &sy, &a, 1, 1);
    storage_merged_tab_release(&fx);
    storage_merged_tab_release(&fy);
    free(px.v);
    free(py.v);
    scatter_spaces_release(c, x);
    scatter_spaces_release(c, y);
    scatter_spaces_free(c);
    fake_free(&a);
}

/* The (gap, value) pairs of an encoding of values, decoded here: the ids
 * of non-zero value into ids, their values into vals; how many. */
static size_t decode_values(const buf_t *b, size_t *ids, int64_t *vals, size_t max)
{
    size_t k = 0, next = 0, at = 0;
    while (at < b->len && k < max) {
        uint64_t x[2] = {0, 0};
        for (int j = 0; j < 2; j++)
            for (unsigned shift = 0; at < b->len; shift += 7) {
                uint8_t byte = b->data[at++];
                x[j] |= (uint64_t)(byte & 0x7f) << shift;
                if (!(byte & 0x80)) break;
            }
        ids[k] = next + (size_t)x[0];
        vals[k] = (int64_t)x[1];
        next = ids[k++] + 1;
    }
    return k;
}

/* Values at the edges of the masks' words (ids 0, 63, 64, 127, 128, the
 * last of a partial word), none, all, and one below 0. */
static void test_encode_values(void)
{
    size_t sizes[] = {1, 63, 64, 65, 130, 200};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        int64_t *self = calloc(n, sizeof *self);
        uint32_t *parent = calloc(n, sizeof *parent);
        uint64_t *sym = calloc(n, sizeof *sym);
        for (int pattern = 0; pattern < 3; pattern++) {
            size_t want = 0;
            for (size_t id = 0; id < n; id++) {
                int edge = id % 64 == 0 || id % 64 == 63 || id == n - 1;
                self[id] = pattern == 0   ? 0
                           : pattern == 1 ? (edge ? (int64_t)(id + 1) << 40 : 0)
                                          : (int64_t)id * 3 + 1;
                want += self[id] != 0;
            }
            storage_merged_tab_t t = {.n = n, .self = self, .space_nonce = 9, .space_base = n};
            t.space_parent = parent;
            t.space_sym = sym;
            buf_t st, v;
            buf_init(&st, BUF_UNLIMITED);
            buf_init(&v, BUF_UNLIMITED);
            uint64_t unit = 0;
            CHECK_EQ_INT(scatter_space_encode(&t, 0, &st, &v, &unit), 0);
            CHECK_EQ_INT(unit, 1);
            size_t *ids = calloc(n, sizeof *ids);
            int64_t *vals = calloc(n, sizeof *vals);
            size_t got = decode_values(&v, ids, vals, n);
            CHECK_EQ_INT(got, want);
            for (size_t k = 0; k < got; k++)
                CHECK(ids[k] < n && vals[k] == self[ids[k]] && vals[k] != 0);
            if (n > 1) { /* one value below 0: refused */
                self[n / 2] = -1;
                buf_reset(&v);
                CHECK_EQ_INT(scatter_space_encode(&t, 1, &st, &v, &unit), ERR_INVALID_ARGUMENT);
            }
            free(ids);
            free(vals);
            buf_free(&st);
            buf_free(&v);
        }
        free(self);
        free(parent);
        free(sym);
    }
}

/* A followed forest of no scope: the follow is ended (state 2). */
static void test_forest_followed_none(void)
{
    storage_follow_t f = {0};
    scatter_sums_t sums = {0};
    storage_merged_tab_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(scatter_scope_forest_followed(NULL, &sums, &f, &t, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(atomic_load(&f.state), 2);
}

/* (g) known: most recently used first, at most max; a peer's spaces past
 * the most recent max are dropped. */
static void test_known(void)
{
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0};
    fake_t f[10];
    for (size_t i = 0; i < 10; i++) {
        f[i] = fake_of(100 + i, a_parent, a_sym, a_self, 2 + i % 4);
        CHECK_EQ_INT(add_fake(sc, "P", &f[i], 1, &sums), 0);
    }
    CHECK_EQ_INT(add_fake(sc, "Q", &f[0], 1, &sums), 0); /* another peer's */
    CHECK_EQ_INT(add_fake(sc, "P", &f[3], f[3].n, &sums), 0);
    storage_space_known_t k[SCATTER_SPACES_KNOWN_MAX];
    CHECK_EQ_INT(scatter_scope_known(sc, "P", k, SCATTER_SPACES_KNOWN_MAX), 8);
    uint64_t want[] = {103, 109, 108, 107, 106, 105, 104, 102};
    for (size_t i = 0; i < 8; i++) {
        CHECK_EQ_INT(k[i].nonce, want[i]);
        CHECK_EQ_INT(k[i].count, 2 + (want[i] - 100) % 4);
    }
    CHECK_EQ_INT(scatter_scope_known(sc, "P", k, 2), 2);
    CHECK(k[0].nonce == 103 && k[1].nonce == 109);
    CHECK_EQ_INT(scatter_scope_known(sc, "Q", k, 8), 1);
    CHECK_EQ_INT(scatter_scope_known(sc, "R", k, 8), 0);
    CHECK_EQ_INT(scatter_scope_known(sc, "P", k, 0), 0);
    /* a peer keeps its 8 most recent spaces: 100 and 101 went (102 stays) */
    scatter_sums_t none = {0};
    CHECK_EQ_INT(add_fake(sc, "P", &f[0], 2, &none), ERR_CORRUPT); /* its ids are not held */
    CHECK_EQ_INT(add_fake(sc, "P", &f[2], f[2].n, &none), 0);
    scatter_sums_free(&none);
    scatter_sums_free(&sums);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    for (size_t i = 0; i < 10; i++)
        fake_free(&f[i]);
}

static size_t known_of(scatter_spaces_t *c, const char *service)
{
    scatter_scope_t *sc;
    storage_space_known_t k[4];
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", service, &sc), 0);
    size_t n = scatter_scope_known(sc, "A", k, 4);
    scatter_spaces_release(c, sc);
    return n;
}

/* One scope of service with A's answer, its bytes counted. */
static size_t fill(scatter_spaces_t *c, const char *service, const fake_t *a, int release)
{
    scatter_scope_t *sc;
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", service, &sc), 0);
    CHECK_EQ_INT(add_fake(sc, "A", a, 1, &sums), 0);
    scatter_sums_free(&sums);
    scatter_spaces_stats_t st;
    scatter_spaces_get_stats(c, &st);
    if (release) scatter_spaces_release(c, sc);
    return (size_t)st.bytes;
}

/* (h) the bound: released scopes go, least recently used first; a scope
 * past the bound alone goes at its last release, and its next renders get
 * no scope (they gather forests); held ones stay. */
static void test_bound(void)
{
    fake_t a = fake_of(0xa1, a_parent, a_sym, a_self, 6);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1, &c), 0); /* tiny: every scope passes it alone */
    scatter_scope_t *held, *other;
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "held", &held), 0);
    CHECK_EQ_INT(add_fake(held, "A", &a, 1, &sums), 0);
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "held", &other), 0); /* a second render */
    CHECK(other == held);
    scatter_spaces_release(c, other);
    fill(c, "other", &a, 1);
    scatter_spaces_stats_t st;
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_dropped, 1); /* "other", not "held" */
    storage_space_known_t k[4];
    CHECK_EQ_INT(scatter_scope_known(held, "A", k, 4), 1);
    check_forest(held, &sums, &a, 1, 1);
    scatter_spaces_release(c, held);
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_dropped, 2);
    CHECK_EQ_INT(st.bytes, 0);
    CHECK_EQ_INT(known_of(c, "held"), 0); /* refused: past the bound alone, no scope */
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_built, 2);
    CHECK_EQ_INT(st.scopes_refused, 1);
    scatter_scope_t *none;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "held", &none), 0);
    CHECK(none == NULL); /* its renders gather forests for a while: 1000 of them */
    for (int i = 2; i < 1000; i++) {
        CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "held", &none), 0);
        CHECK(none == NULL);
    }
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "held", &none), 0);
    CHECK(none != NULL); /* then tried again */
    scatter_spaces_release(c, none);
    scatter_spaces_free(c);
    /* a bound of two scopes: a third one released drops the least recently used */
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    size_t one = fill(c, "s1", &a, 1);
    scatter_spaces_free(c);
    CHECK_EQ_INT(scatter_spaces_new(2 * one + one / 2, &c), 0);
    fill(c, "s1", &a, 1);
    fill(c, "s2", &a, 1);
    CHECK_EQ_INT(known_of(c, "s1"), 1); /* s1 used again: s2 is the least recent */
    fill(c, "s3", &a, 1);
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_dropped, 1);
    CHECK(st.bytes <= 2 * one + one / 2);
    CHECK_EQ_INT(known_of(c, "s1"), 1);
    CHECK_EQ_INT(known_of(c, "s3"), 1);
    CHECK_EQ_INT(known_of(c, "s2"), 0);
    scatter_spaces_free(c);
    fake_free(&a);
}

/* The render's forest reads the scope's tree in place and holds the
 * scope: another render that grows the tree meanwhile (past its arrays'
 * room, so they move) leaves the forest's arrays as they were (ASan: the
 * old ones stay until the forest goes), and a scope released by its
 * renders and past the bound is dropped only once the forest goes. */
static void test_forest_lent(void)
{
    fake_t a = fake_random(0xa7, 300), b = fake_random(0xb7, 3000);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1, &c), 0); /* tiny: dropped once nobody holds it */
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0}, later = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &a, 1, &sums), 0);
    storage_merged_tab_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(scatter_scope_forest(sc, &sums, &t, &em), 0);
    paths_t before = {0}, after = {0}, want = {0};
    paths_of(&t, &before);
    paths_expected(&a, 1, 1, &want);
    CHECK(paths_same(&want, &before));
    uint32_t *parent = malloc(t.n * sizeof *parent);
    uint64_t *sym = malloc(t.n * sizeof *sym);
    memcpy(parent, t.parent, t.n * sizeof *parent);
    memcpy(sym, t.sym, t.n * sizeof *sym);
    /* another render: b's 3000 ids on other paths grow the tree tenfold */
    scatter_scope_t *again;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &again), 0);
    CHECK(again == sc);
    for (size_t id = 1; id < b.n; id++)
        b.sym[id] += 1000;
    CHECK_EQ_INT(add_fake(again, "B", &b, 1, &later), 0);
    scatter_spaces_release(c, again);
    scatter_spaces_release(c, sc); /* the renders are done; the forest still holds it */
    scatter_spaces_stats_t st;
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_dropped, 0);
    CHECK(memcmp(parent, t.parent, t.n * sizeof *parent) == 0);
    CHECK(memcmp(sym, t.sym, t.n * sizeof *sym) == 0);
    paths_of(&t, &after);
    CHECK(paths_same(&before, &after));
    storage_merged_tab_release(&t);
    scatter_spaces_get_stats(c, &st);
    CHECK_EQ_INT(st.scopes_dropped, 1); /* with the forest, freed (ASan: no leak) */
    CHECK_EQ_INT(st.bytes, 0);
    scatter_sums_free(&later);
    free(parent);
    free(sym);
    free(before.v);
    free(after.v);
    free(want.v);
    scatter_spaces_free(c);
    fake_free(&a);
    fake_free(&b);
}

/* Another render's answers, on a thread of their own, that grow the
 * scope's tree round after round (new paths each time). */
#define GROW_ROUNDS 40
typedef struct grower {
    scatter_scope_t *sc;
    fake_t f[GROW_ROUNDS];
    int failed;
} grower_t;

static void *grow_rounds(void *arg)
{
    grower_t *g = arg;
    for (int r = 0; r < GROW_ROUNDS; r++) {
        storage_merged_tab_t t = tab_of(&g->f[r], 1);
        buf_t s, v;
        buf_init(&s, BUF_UNLIMITED);
        buf_init(&v, BUF_UNLIMITED);
        uint64_t unit;
        scatter_sums_t sums = {0};
        errmsg_t em = {{0}};
        int rc = scatter_space_encode(&t, 1, &s, &v, &unit);
        scatter_space_answer_t a = {.peer = "G",
                                    .nonce = g->f[r].nonce,
                                    .base = 1,
                                    .count = g->f[r].n,
                                    .unit = unit,
                                    .structure = s.data,
                                    .slen = s.len,
                                    .values = v.data,
                                    .vlen = v.len};
        if (rc == 0) rc = scatter_scope_add(g->sc, &a, &sums, &em);
        g->failed += rc != 0;
        scatter_sums_free(&sums);
        buf_free(&s);
        buf_free(&v);
    }
    return NULL;
}

/* Forests made and read over and over on one thread while another
 * thread's answers grow the same scope's tree tenfold (its arrays move
 * about a dozen times): every forest has its own answers' paths, and
 * nothing it reads is freed under it (ASan). */
static void test_forest_lent_threads(void)
{
    fake_t a = fake_random(0xa5, 500);
    grower_t g = {.failed = 0};
    size_t grown = 0;
    for (int r = 0; r < GROW_ROUNDS; r++) {
        g.f[r] = fake_random(0x100 + (uint64_t)r, 200 + 100 * (size_t)r);
        for (size_t id = 1; id < g.f[r].n; id++)
            g.f[r].sym[id] += 1000 * (uint64_t)(r + 1); /* paths of their own */
        grown += g.f[r].n;
    }
    CHECK(grown > 64 * a.n);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(256 << 20, &c), 0);
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &g.sc), 0);
    paths_t want = {0};
    paths_expected(&a, 1, 1, &want);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, grow_rounds, &g), 0);
    int wrong = 0;
    for (int k = 0; k < 200; k++) {
        scatter_sums_t sums = {0};
        storage_merged_tab_t t;
        errmsg_t em = {{0}};
        CHECK_EQ_INT(add_fake(g.sc, "A", &a, 1, &sums), 0);
        CHECK_EQ_INT(scatter_scope_forest(g.sc, &sums, &t, &em), 0);
        paths_t got = {0};
        paths_of(&t, &got);
        wrong += !paths_same(&want, &got);
        storage_merged_tab_release(&t);
        free(got.v);
    }
    pthread_join(th, NULL);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(g.failed, 0);
    storage_space_known_t k[SCATTER_SPACES_KNOWN_MAX];
    CHECK_EQ_INT(scatter_scope_known(g.sc, "G", k, SCATTER_SPACES_KNOWN_MAX),
                 SCATTER_SPACES_KNOWN_MAX); /* every round added */
    free(want.v);
    scatter_spaces_release(c, g.sc);
    scatter_spaces_free(c);
    fake_free(&a);
    for (int r = 0; r < GROW_ROUNDS; r++)
        fake_free(&g.f[r]);
}

/* An overflowing total: ERR_LIMIT; the sums are gone all the same. */
static void test_overflow(void)
{
    uint32_t parent[] = {0, 0, 0};
    uint64_t sym[] = {0, 10, 11};
    int64_t self[] = {0, INT64_MAX, INT64_MAX};
    fake_t f = fake_of(5, parent, sym, self, 3);
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_sums_t sums = {0};
    CHECK_EQ_INT(add_fake(sc, "A", &f, 1, &sums), 0);
    storage_merged_tab_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(scatter_scope_forest(sc, &sums, &t, &em), ERR_LIMIT);
    CHECK(sums.v == NULL && t.self == NULL);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    fake_free(&f);
}

typedef struct adder {
    scatter_scope_t *sc;
    const char *peer;
    const fake_t *f;
    scatter_sums_t *sums;
    int rounds, failed;
} adder_t;

#define ROUNDS 50

static void *add_rounds(void *arg)
{
    adder_t *a = arg;
    for (int i = 0; i < a->rounds; i++)
        if (add_fake(a->sc, a->peer, a->f, i == 0 ? 1 : a->f->n, a->sums) != 0) a->failed++;
    return NULL;
}

/* (i) two threads adding different peers' answers into one scope and one
 * render's sums at once agree with the same adds one after the other. */
static void test_threads(void)
{
    fake_t f[2] = {fake_random(0xa1, 3000), fake_random(0xb1, 3000)};
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(64 << 20, &c), 0);
    scatter_scope_t *both, *seq;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "both", &both), 0);
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "seq", &seq), 0);
    scatter_sums_t sb = {0}, ss = {0};
    adder_t ad[2] = {{both, "A", &f[0], &sb, ROUNDS, 0}, {both, "B", &f[1], &sb, ROUNDS, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ_INT(pthread_create(&th[i], NULL, add_rounds, &ad[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(ad[0].failed == 0 && ad[1].failed == 0);
    adder_t one[2] = {{seq, "A", &f[0], &ss, ROUNDS, 0}, {seq, "B", &f[1], &ss, ROUNDS, 0}};
    add_rounds(&one[0]);
    add_rounds(&one[1]);
    check_forest(both, &sb, f, 2, ROUNDS);
    check_forest(seq, &ss, f, 2, ROUNDS);
    scatter_spaces_release(c, both);
    scatter_spaces_release(c, seq);
    scatter_spaces_free(c);
    fake_free(&f[0]);
    fake_free(&f[1]);
}

/* A scope keeps the names its shares sent (a name held once, whatever
 * repeats it), counts their bytes, and gives those it holds of a list of
 * ids; a NULL scope holds none. */
static void test_names(void)
{
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    scatter_spaces_stats_t before, after;
    scatter_spaces_get_stats(c, &before);
    scatter_names_sym_t v[3] = {
        {11, "main", "m.go", 4, 4}, {12, "serve", "s.go", 5, 4}, {11, "main", "m.go", 4, 4}};
    CHECK_EQ_INT(scatter_scope_add_names(sc, v, 3), 0);
    scatter_spaces_get_stats(c, &after);
    CHECK(after.bytes > before.bytes);
    symtab_t *dst = symtab_new();
    uint64_t ids[3] = {12, 13, 11};
    CHECK_EQ_INT(scatter_scope_names_get(sc, ids, 3, dst), 0);
    const char *name, *file;
    CHECK_EQ_INT(symtab_count(dst), 2);
    CHECK(symtab_get(dst, 11, &name, &file) && strcmp(name, "main") == 0 &&
          strcmp(file, "m.go") == 0);
    CHECK(symtab_get(dst, 12, &name, &file) && strcmp(name, "serve") == 0);
    CHECK(!symtab_get(dst, 13, &name, &file));
    CHECK_EQ_INT(scatter_scope_names_get(NULL, ids, 3, dst), 0);
    CHECK_EQ_INT(scatter_scope_add_names(NULL, v, 3), 0);
    symtab_free(dst);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
}

typedef struct names_adder {
    scatter_scope_t *sc;
    const symtab_t *src;
    uint64_t id;
    _Atomic int done;
} names_adder_t;

static void *add_names_thread(void *arg)
{
    names_adder_t *a = arg;
    CHECK_EQ_INT(scatter_scope_add_names_from(a->sc, a->src, &a->id, 1), 0);
    atomic_store(&a->done, 1);
    return NULL;
}

/* Names from a table (a local share's, from storage), and the scope's
 * names held as a render writes from them: held, they do not change (a
 * share's new names wait until they are released). */
static void test_names_held(void)
{
    scatter_spaces_t *c;
    CHECK_EQ_INT(scatter_spaces_new(1 << 20, &c), 0);
    scatter_scope_t *sc;
    CHECK_EQ_INT(scatter_spaces_acquire(c, "t", "svc", &sc), 0);
    CHECK(scatter_scope_names_hold(sc) == NULL); /* none yet */
    scatter_scope_names_release(sc);
    symtab_t *src = symtab_new();
    CHECK_EQ_INT(symtab_put(src, 21, "load", 4, "l.go", 4), 0);
    CHECK_EQ_INT(symtab_put(src, 22, "store", 5, "", 0), 0);
    uint64_t ids[3] = {21, 23, 21}; /* 23: src lacks it */
    CHECK_EQ_INT(scatter_scope_add_names_from(sc, src, ids, 3), 0);
    const symtab_t *held = scatter_scope_names_hold(sc);
    const char *name, *file;
    CHECK(held != NULL && symtab_count(held) == 1);
    CHECK(held != NULL && symtab_get(held, 21, &name, &file) && strcmp(name, "load") == 0 &&
          strcmp(file, "l.go") == 0);
    names_adder_t a = {sc, src, 22, 0};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, add_names_thread, &a), 0);
    for (int i = 0; i < 20; i++) /* 20 ms: the add waits while the names are held */
        usleep(1000);
    CHECK_EQ_INT(atomic_load(&a.done), 0);
    CHECK_EQ_INT(symtab_count(held), 1);
    scatter_scope_names_release(sc);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(atomic_load(&a.done), 1);
    held = scatter_scope_names_hold(sc);
    CHECK(held != NULL && symtab_get(held, 22, &name, &file) && strcmp(name, "store") == 0);
    scatter_scope_names_release(sc);
    CHECK_EQ_INT(scatter_scope_add_names_from(NULL, src, ids, 3), 0);
    CHECK(scatter_scope_names_hold(NULL) == NULL);
    scatter_scope_names_release(NULL);
    symtab_free(src);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
}

int main(void)
{
    const char *env = getenv("SCATTER_SPACES_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : 0x5ca77e7ULL;
    check_rng_state = seed != 0 ? seed : 1;
    fprintf(stderr, "seed %llu (SCATTER_SPACES_SEED)\n", (unsigned long long)check_rng_state);
    test_disabled();
    test_two_peers();
    test_symnos();
    test_pieces();
    test_corrupt();
    test_encode_roundtrip();
    test_encode_values();
    test_encode_unit();
    test_forest_followed_none();
    test_known();
    test_bound();
    test_forest_lent();
    test_forest_lent_threads();
    test_overflow();
    test_threads();
    test_names();
    test_names_held();
    return check_exit();
}
