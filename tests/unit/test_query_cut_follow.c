/* test_query_cut_follow.c — the cut's first pass made on another thread as
 * the forest pass goes (storage_follow_t, query_cut_follow_t), on a real
 * store of three tokens (a shard union's forest of some 20,000 ids, so the
 * pass publishes its progress many times):
 *  - a follower on a real thread, started before the pass, files every id
 *    and the cut from its filing keeps exactly the nodes the cut keeps
 *    alone, for several maxNodes;
 *  - so do the follower filing while the pass runs and the pass's own
 *    thread the chunks it left once the pass is done (from the other end),
 *    and that thread alone (a follower come late finds nothing to file);
 *  - a follower told to file to the end (a coordinator's, whose helper has
 *    nothing else to do), run once the pass is done, files every chunk
 *    before the pass's thread takes any;
 *  - a forest with a negative value is given up: the follower stops, files
 *    nothing, and the forest is freed only once it stopped (ASan);
 *  - without a union (a forest per token) nothing is published: the state
 *    says so when storage_merger_tabs returns, and the follower stops;
 *  - a forest made of arrays as a coordinator makes its scope's
 *    (storage_merged_tab_followed) is followed the same way; its filing
 *    follows the forest's struct when it is copied (query_cut_follow_moved),
 *    and every failure (a bad parent, no ids, a negative value, no least
 *    children asked) ends the follow so the follower stops;
 *  - a forest over the caller's arrays read in place
 *    (storage_merged_tab_lent) points at them, is followed and cut as one
 *    of copies, and gives them back once, as it is released, or before it
 *    returns when it is not made;
 *  - a gather given such a forest by query_gather_add_made (a helper filing
 *    it) answers the same bytes as one given the forest made alone, its
 *    helper not put to sleep after the filing (the encoders' parts come
 *    next), and a make that fails leaves no helper running. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>

#include "check.h"
#include "query/query_int.h"
#include "storage/storage_int.h"

#define TOKEN1 0x1111111111111111ull
#define TOKEN2 0x2222222222222222ull
#define TOKEN3 0x3333333333333333ull

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A tree of n random stacks (depth 2 to 9 over 40 frame names, values 1
 * to 1000, so totals tie), with one negative value when negative. */
static calltree_t *random_tree(symtab_t *st, size_t n, int negative)
{
    calltree_t *t = calltree_new(0);
    char folded[256];
    for (size_t i = 0; i < n; i++) {
        size_t depth = 2 + next_rand() % 8, at = 0;
        for (size_t d = 0; d < depth; d++)
            at += (size_t)snprintf(folded + at, sizeof folded - at, "%sf%u", d ? ";" : "",
                                   (unsigned)(next_rand() % 40));
        fx_add(t, st, folded, negative && i == n / 2 ? -5 : 1 + (int64_t)(next_rand() % 1000));
    }
    return t;
}

static void *follow_thread(void *arg)
{
    query_cut_follow_run(arg);
    return NULL;
}

/* The kept nodes of a and b are the same, node for node. */
static void check_same_kept(const query_kept_t *a, const query_kept_t *b)
{
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL) return;
    CHECK_EQ_INT(a->n, b->n);
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        CHECK(a->sym[i] == b->sym[i] && a->self[i] == b->self[i] && a->total[i] == b->total[i]);
        CHECK(i == 0 || a->parent[i] == b->parent[i]);
    }
}

/* How a case files the forest's ids. */
enum {
    FILE_AFTER,     /* no follower in time: this thread files all; one run after finds none */
    FILE_THREAD,    /* a thread started before the pass, joined, then this one files the rest */
    FILE_BOTH_ENDS, /* that thread from the front, this one from the back once done */
    FILE_TO_END,    /* a follower told to file to the end, run once the pass is done and
                     * before this thread's finish: it files every chunk itself */
    FILE_MODES
};

/* The forest of the ntok series cut to max_nodes, its first pass filed as
 * mode says; want_forest: one forest is made. */
static void followed_case(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, size_t ntok,
                          int mode, int want_forest, size_t max_nodes)
{
    int threaded = mode == FILE_THREAD || mode == FILE_BOTH_ENDS;
    storage_merger_t *m = fx_merger_of(f, ls, tokens, ntok);
    query_cut_follow_t *c = query_cut_follow_new(mode == FILE_TO_END);
    CHECK(c != NULL);
    storage_merger_follow(m, query_cut_follow_storage(c));
    pthread_t th;
    if (threaded) CHECK_EQ_INT(pthread_create(&th, NULL, follow_thread, c), 0);
    storage_merged_tab_t *tabs = NULL;
    size_t n = 0;
    errmsg_t em = {{0}};
    unsigned flags = STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST | STORAGE_TABS_SYMBOLS;
    CHECK_EQ_INT(storage_merger_tabs(m, flags, &tabs, &n, &em), 0);
    storage_follow_t *sf = query_cut_follow_storage(c);
    int state = atomic_load(&sf->state);
    CHECK(state == 1 || state == 2); /* settled when the call returns */
    if (mode == FILE_THREAD) CHECK_EQ_INT(pthread_join(th, NULL), 0);
    if (mode == FILE_TO_END) { /* files every chunk though the pass is done */
        query_cut_follow_run(c);
        CHECK(state != 1 || query_cut_follow_filed(c) == &tabs[0]);
    }
    query_cut_follow_finish(c); /* what the follower left: all when none ran */
    if (mode == FILE_BOTH_ENDS) CHECK_EQ_INT(pthread_join(th, NULL), 0);
    if (mode == FILE_AFTER) query_cut_follow_run(c); /* come late: finds nothing to file */
    int made = n == 1 && tabs[0].nonneg;
    CHECK_EQ_INT(made, want_forest);
    CHECK_EQ_INT(state, made ? 1 : 2);
    CHECK_EQ_INT(atomic_load(&sf->reading), 0);
    if (made) {
        CHECK(tabs[0].n > 3 * 2048); /* published in many steps */
        CHECK(query_cut_follow_filed(c) == &tabs[0]);
        query_kept_t *alone = NULL, *filed = NULL;
        size_t max = max_nodes ? max_nodes : tabs[0].nodes + 5;
        CHECK_EQ_INT(query_keep_cut(&tabs[0], max, NULL, &alone), 0);
        CHECK_EQ_INT(query_keep_cut_filed(&tabs[0], max, NULL, c, &filed), 0);
        CHECK(query_cut_follow_filed(c) == NULL); /* used up */
        check_same_kept(alone, filed);
        query_kept_free(alone);
        query_kept_free(filed);
    } else {
        CHECK(query_cut_follow_filed(c) == NULL);
    }
    storage_merged_tabs_free(tabs, n);
    storage_merger_free(m);
    query_cut_follow_free(c);
}

/* ---- a forest of arrays (a coordinator's scope) ---- */

/* The arrays of a call tree (a parent before its children): parents,
 * symbols, one number per distinct symbol, values. */
typedef struct arrays {
    size_t n;
    uint32_t *parent, *symno;
    uint64_t *sym;
    int64_t *self;
    uint32_t nsyms;
    uint64_t syms[64]; /* the distinct symbols, by number */
} arrays_t;

static void arrays_of(const calltree_t *t, arrays_t *a)
{
    memset(a, 0, sizeof *a);
    a->n = calltree_node_count(t);
    a->parent = calloc(a->n, sizeof *a->parent);
    a->symno = calloc(a->n, sizeof *a->symno);
    a->sym = calloc(a->n, sizeof *a->sym);
    a->self = calloc(a->n, sizeof *a->self);
    for (uint32_t id = 0; id < a->n; id++) {
        a->parent[id] = id ? calltree_parent(t, id) : 0;
        a->sym[id] = id ? calltree_sym(t, id) : SYM_ROOT;
        a->self[id] = calltree_self(t, id);
        uint32_t k = 0;
        while (k < a->nsyms && a->syms[k] != a->sym[id])
            k++;
        if (k == a->nsyms && a->nsyms < 64) a->syms[a->nsyms++] = a->sym[id];
        a->symno[id] = k;
    }
}

static void arrays_free(arrays_t *a)
{
    free(a->parent);
    free(a->symno);
    free(a->sym);
    free(a->self);
}

/* A copy of a's values (the forest takes it). */
static int64_t *values_of(const arrays_t *a)
{
    int64_t *v = malloc(a->n * sizeof *v);
    memcpy(v, a->self, a->n * sizeof *v);
    return v;
}

#define ARRAY_FLAGS (STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST | STORAGE_TABS_SYMNOS)

/* Makes the forest of a with a follower on a thread, moves its struct,
 * and cuts the copy from the filing: the same kept nodes as a cut alone. */
static void arrays_followed(const arrays_t *a, size_t max_nodes)
{
    query_cut_follow_t *c = query_cut_follow_new(0);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, follow_thread, c), 0);
    storage_merged_tab_t made, alone;
    CHECK_EQ_INT(storage_merged_tab_followed(a->parent, a->sym, a->symno, a->nsyms, values_of(a),
                                             a->n, ARRAY_FLAGS, 1, query_cut_follow_storage(c),
                                             &made),
                 0);
    query_cut_follow_finish(c);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(atomic_load(&query_cut_follow_storage(c)->state), 1);
    storage_merged_tab_t copy = made; /* as a gather holds it */
    memset(&made, 0, sizeof made);
    CHECK_EQ_INT(query_cut_follow_moved(c, &copy), 1);
    CHECK(query_cut_follow_filed(c) == &copy);
    CHECK_EQ_INT(storage_merged_tab_of(a->parent, a->sym, a->symno, a->nsyms, values_of(a), a->n,
                                       ARRAY_FLAGS, 1, &alone),
                 0);
    query_kept_t *k1 = NULL, *k2 = NULL;
    size_t max = max_nodes ? max_nodes : alone.nodes + 5;
    CHECK_EQ_INT(query_keep_cut(&alone, max, NULL, &k1), 0);
    CHECK_EQ_INT(query_keep_cut_filed(&copy, max, NULL, c, &k2), 0);
    CHECK_EQ_INT(query_cut_follow_moved(c, &copy), 0); /* used up */
    check_same_kept(k1, k2);
    query_kept_free(k1);
    query_kept_free(k2);
    storage_merged_tab_release(&copy);
    storage_merged_tab_release(&alone);
    query_cut_follow_free(c);
}

/* A forest of a that is not made (or not followed): the follower on its
 * thread stops, and the follow ends in state 2. */
static void arrays_refused(const arrays_t *a, const uint32_t *parent, size_t n, int64_t *val,
                           unsigned flags, int want_rc)
{
    query_cut_follow_t *c = query_cut_follow_new(0);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, follow_thread, c), 0);
    storage_merged_tab_t t;
    CHECK_EQ_INT(storage_merged_tab_followed(parent, a->sym, a->symno, a->nsyms, val, n, flags, 1,
                                             query_cut_follow_storage(c), &t),
                 want_rc);
    CHECK_EQ_INT(pthread_join(th, NULL), 0); /* it stopped */
    storage_follow_t *sf = query_cut_follow_storage(c);
    CHECK_EQ_INT(atomic_load(&sf->state), 2);
    CHECK_EQ_INT(atomic_load(&sf->reading), 0);
    query_cut_follow_finish(c); /* nothing to file */
    CHECK(query_cut_follow_filed(c) == NULL);
    storage_merged_tab_release(&t);
    query_cut_follow_free(c);
}

static void test_arrays(symtab_t *st)
{
    calltree_t *t = random_tree(st, 4000, 0);
    arrays_t a;
    arrays_of(t, &a);
    CHECK(a.n > 3 * 2048); /* published in many steps */
    size_t maxes[] = {2, 17, 512, 0};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
        arrays_followed(&a, maxes[i]);
    uint32_t *bad = malloc(a.n * sizeof *bad);
    memcpy(bad, a.parent, a.n * sizeof *bad);
    bad[a.n / 2] = (uint32_t)(a.n / 2 + 1); /* a parent after its child */
    arrays_refused(&a, bad, a.n, values_of(&a), ARRAY_FLAGS, ERR_INVALID_ARGUMENT);
    arrays_refused(&a, a.parent, 0, values_of(&a), ARRAY_FLAGS, ERR_INVALID_ARGUMENT);
    int64_t *neg = values_of(&a);
    neg[a.n - 1] = -5;
    arrays_refused(&a, a.parent, a.n, neg, ARRAY_FLAGS, 0);                    /* made, not kept */
    arrays_refused(&a, a.parent, a.n, values_of(&a), STORAGE_TABS_PARENTS, 0); /* not followed */
    free(bad);
    storage_follow_t none = {0};
    storage_follow_close(&none); /* nothing published: ended */
    CHECK_EQ_INT(atomic_load(&none.state), 2);
    storage_follow_close(NULL);
    arrays_free(&a);
    calltree_free(t);
}

/* ---- a forest over the caller's arrays read in place ---- */

static void count_release(void *arg)
{
    (*(int *)arg)++;
}

/* storage_merged_tab_lent: the forest reads a's arrays (no copies), is
 * followed and cut as one made of copies, and gives them back once, as it
 * is released. */
static void arrays_lent(const arrays_t *a, size_t max_nodes)
{
    query_cut_follow_t *c = query_cut_follow_new(0);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, follow_thread, c), 0);
    int released = 0;
    storage_merged_tab_t lent, alone;
    CHECK_EQ_INT(storage_merged_tab_lent(a->parent, a->sym, a->symno, a->nsyms, values_of(a), a->n,
                                         STORAGE_TABS_LEAST, 1, query_cut_follow_storage(c),
                                         count_release, &released, &lent),
                 0);
    query_cut_follow_finish(c);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(atomic_load(&query_cut_follow_storage(c)->state), 1);
    CHECK(lent.parent == a->parent && lent.sym == a->sym && lent.symno == a->symno);
    CHECK_EQ_INT(lent.nsyms, a->nsyms);
    CHECK_EQ_INT(released, 0);
    CHECK_EQ_INT(storage_merged_tab_of(a->parent, a->sym, a->symno, a->nsyms, values_of(a), a->n,
                                       ARRAY_FLAGS, 1, &alone),
                 0);
    CHECK_EQ_INT(lent.nodes, alone.nodes);
    CHECK(memcmp(lent.total, alone.total, a->n * sizeof *lent.total) == 0);
    CHECK(memcmp(lent.least_kid, alone.least_kid, a->n * sizeof *lent.least_kid) == 0);
    CHECK_EQ_INT(query_cut_follow_moved(c, &lent), 1);
    query_kept_t *k1 = NULL, *k2 = NULL;
    size_t max = max_nodes ? max_nodes : alone.nodes + 5;
    CHECK_EQ_INT(query_keep_cut(&alone, max, NULL, &k1), 0);
    CHECK_EQ_INT(query_keep_cut_filed(&lent, max, NULL, c, &k2), 0);
    check_same_kept(k1, k2);
    query_kept_free(k1);
    query_kept_free(k2);
    storage_merged_tab_release(&lent);
    CHECK_EQ_INT(released, 1);
    CHECK(lent.parent == NULL && lent.sym == NULL && lent.self == NULL);
    storage_merged_tab_release(&alone);
    query_cut_follow_free(c);
}

/* A lent forest not made (no ids, a value below 0) gives the arrays back
 * before it returns and ends its follow; one without least children is
 * made but not followed. */
static void lent_refused(const arrays_t *a, size_t n, int64_t *val, unsigned flags, int want_rc,
                         int made)
{
    query_cut_follow_t *c = query_cut_follow_new(0);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, follow_thread, c), 0);
    int released = 0;
    storage_merged_tab_t t;
    CHECK_EQ_INT(storage_merged_tab_lent(a->parent, a->sym, a->symno, a->nsyms, val, n, flags, 1,
                                         query_cut_follow_storage(c), count_release, &released, &t),
                 want_rc);
    CHECK_EQ_INT(released, made ? 0 : 1);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(atomic_load(&query_cut_follow_storage(c)->state), 2);
    storage_merged_tab_release(&t);
    CHECK_EQ_INT(released, 1);
    query_cut_follow_free(c);
}

static void test_lent(symtab_t *st)
{
    calltree_t *t = random_tree(st, 4000, 0);
    arrays_t a;
    arrays_of(t, &a);
    size_t maxes[] = {2, 17, 512, 0};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
        arrays_lent(&a, maxes[i]);
    lent_refused(&a, 0, values_of(&a), STORAGE_TABS_LEAST, ERR_INVALID_ARGUMENT, 0);
    int64_t *neg = values_of(&a);
    neg[a.n - 1] = -5;
    lent_refused(&a, a.n, neg, STORAGE_TABS_LEAST, 0, 0);
    lent_refused(&a, a.n, values_of(&a), 0, 0, 1); /* made, not followed */
    arrays_free(&a);
    calltree_free(t);
}

/* ---- a gather given the forest by query_gather_add_made ---- */

typedef struct made_ctx {
    const arrays_t *a;
    int fail; /* refuse before making anything */
} made_ctx_t;

static int make_arrays(void *ctx, storage_follow_t *f, storage_merged_tab_t *out, errmsg_t *em)
{
    made_ctx_t *m = ctx;
    if (m->fail) {
        storage_follow_close(f);
        return errmsg_set(em, ERR_NOMEM, "refused");
    }
    return storage_merged_tab_followed(m->a->parent, m->a->sym, m->a->symno, m->a->nsyms,
                                       values_of(m->a), m->a->n, ARRAY_FLAGS, 1, f, out);
}

/* The flame graph in format of a cut to max_nodes: with made, the forest
 * given by query_gather_add_made (lim's helpers filing it), else made
 * alone and given by query_gather_add_tab. */
static char *gather_format(const arrays_t *a, symtab_t *names, const query_limits_t *lim,
                           const char *max_nodes, int made, const char *format)
{
    query_params_t p = {.query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}",
                        .from = "now-1h",
                        .format = format,
                        .max_nodes = max_nodes};
    query_spec_t spec;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, lim, 1700000000000LL, &spec, &em), 0);
    query_gather_t *g = NULL;
    CHECK_EQ_INT(query_gather_new(&spec, lim, &g), 0);
    for (uint32_t k = 1; k < a->nsyms; k++) {
        const char *name, *file;
        CHECK(symtab_get(names, a->syms[k], &name, &file));
        CHECK_EQ_INT(query_gather_add_symbol(g, a->syms[k], name, strlen(name), "", 0), 0);
    }
    made_ctx_t m = {a, 0};
    storage_merged_tab_t t;
    int rc;
    if (made) {
        rc = query_gather_add_made(g, make_arrays, &m, &em);
    } else {
        rc = storage_merged_tab_of(a->parent, a->sym, a->symno, a->nsyms, values_of(a), a->n,
                                   ARRAY_FLAGS, 1, &t);
        if (rc == 0) rc = query_gather_add_tab(g, &t, &em);
    }
    query_result_t r;
    query_result_init(&r);
    if (rc == 0) rc = query_gather_finish(g, NULL, &r, &em);
    if (rc != 0) fprintf(stderr, "gather: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    buf_append_byte(&r.body, 0);
    char *out = strdup(r.body.data ? (char *)r.body.data : "");
    query_result_free(&r);
    query_gather_free(g);
    query_spec_free(&spec);
    return out;
}

static char *gather_json(const arrays_t *a, symtab_t *names, const query_limits_t *lim,
                         const char *max_nodes, int made)
{
    return gather_format(a, names, lim, max_nodes, made, "json");
}

static void test_gather_made(symtab_t *st)
{
    calltree_t *t = random_tree(st, 4000, 0);
    arrays_t a;
    arrays_of(t, &a);
    query_limits_t alone, helped;
    query_limits_default(&alone);
    alone.assist = NULL;
    helped = alone;
    CHECK_EQ_INT(assist_new(1, &helped.assist), 0);
    static const char *maxes[] = {"2", "17", "512", "100000"};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        char *want = gather_json(&a, st, &alone, maxes[i], 0);
        char *got = gather_json(&a, st, &helped, maxes[i], 1);
        char *plain = gather_json(&a, st, &alone, maxes[i], 1); /* made, no helper */
        CHECK(strstr(want, "\"numTicks\":") != NULL);
        CHECK(strcmp(want, got) == 0);
        CHECK(strcmp(want, plain) == 0);
        free(want);
        free(got);
        free(plain);
    }
    assist_stats_t as;
    assist_stats(helped.assist, &as);
    CHECK(as.helped + as.inline_ >= 4); /* the filing ran as a part each time */
    /* the encoders' parts come right after the filing: its helper waits
     * awake for them rather than sleep at once (it would wake late) */
    CHECK(as.rested == 0);
    /* another format's encoder takes no helper: the filing is the render's
     * last part, every one a helper ran put it to sleep at once */
    assist_stats_t before = as;
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        char *want = gather_format(&a, st, &alone, maxes[i], 0, "folded");
        assist_wake(helped.assist); /* awake, it takes the filing */
        char *got = gather_format(&a, st, &helped, maxes[i], 1, "folded");
        CHECK(strcmp(want, got) == 0);
        free(want);
        free(got);
    }
    for (int i = 0; i < 1000; i++) { /* at most 1 s: a helper rests just after its part */
        assist_stats(helped.assist, &as);
        if (as.rested - before.rested == as.helped - before.helped) break;
        usleep(1000);
    }
    CHECK_EQ_INT((int)(as.rested - before.rested), (int)(as.helped - before.helped));
    /* a make that fails: its error, no part left running */
    query_params_t p = {.query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}",
                        .from = "now-1h",
                        .format = "json",
                        .max_nodes = "17"};
    query_spec_t spec;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &helped, 1700000000000LL, &spec, &em), 0);
    query_gather_t *g = NULL;
    CHECK_EQ_INT(query_gather_new(&spec, &helped, &g), 0);
    made_ctx_t m = {&a, 1};
    CHECK_EQ_INT(query_gather_add_made(g, make_arrays, &m, &em), ERR_NOMEM);
    query_gather_free(g);
    query_spec_free(&spec);
    assist_free(helped.assist);
    arrays_free(&a);
    calltree_free(t);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *ls[3] = {fx_labels("svc", "a"), fx_labels("svc", "b"), fx_labels("svc", "c")};
    uint64_t tokens[3] = {TOKEN1, TOKEN2, TOKEN3};
    for (int i = 0; i < 3; i++) {
        calltree_t *t = random_tree(st, 6000, 0);
        CHECK_EQ_INT(
            fx_write_at(f.s, "t", ls[i], tokens[i], t, st, 1 + (uint64_t)i, (f.now - 5) * NS, NULL),
            0);
        calltree_free(t);
    }
    size_t maxes[] = {2, 17, 512, 4096, 0 /* past the forest */};
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
        for (int mode = 0; mode < FILE_MODES; mode++)
            followed_case(&f, ls, tokens, 3, mode, 1, maxes[i]);
    /* without a union: a forest per token, none followed */
    size_t bound = f.s->unions.max_bytes;
    f.s->unions.max_bytes = 0;
    for (int mode = 0; mode < FILE_MODES; mode++)
        followed_case(&f, ls, tokens, 3, mode, 0, 512);
    f.s->unions.max_bytes = bound;
    /* a negative value: no forest, the follower let go before it is freed */
    labels_t *neg = fx_labels("svc", "d");
    calltree_t *t = random_tree(st, 6000, 1);
    CHECK_EQ_INT(fx_write_at(f.s, "t", neg, TOKEN3, t, st, 9, (f.now - 5) * NS, NULL), 0);
    calltree_free(t);
    labels_t *with_neg[3] = {ls[0], ls[1], neg};
    for (int r = 0; r < 3; r++) {
        for (int mode = 0; mode < FILE_MODES; mode++)
            followed_case(&f, with_neg, tokens, 3, mode, 0, 512);
    }
    labels_free(neg);
    for (int i = 0; i < 3; i++)
        labels_free(ls[i]);
    test_arrays(st);
    test_lent(st);
    test_gather_made(st);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
