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
 *  - a forest with a negative value is given up: the follower stops, files
 *    nothing, and the forest is freed only once it stopped (ASan);
 *  - without a union (a forest per token) nothing is published: the state
 *    says so when storage_merger_tabs returns, and the follower stops. */
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
    FILE_MODES
};

/* The forest of the ntok series cut to max_nodes, its first pass filed as
 * mode says; want_forest: one forest is made. */
static void followed_case(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, size_t ntok,
                          int mode, int want_forest, size_t max_nodes)
{
    int threaded = mode == FILE_THREAD || mode == FILE_BOTH_ENDS;
    storage_merger_t *m = fx_merger_of(f, ls, tokens, ntok);
    query_cut_follow_t *c = query_cut_follow_new();
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
    query_cut_follow_finish(c); /* what the follower left: all when none ran */
    if (mode == FILE_BOTH_ENDS) CHECK_EQ_INT(pthread_join(th, NULL), 0);
    if (!threaded) query_cut_follow_run(c); /* come late: finds nothing to file */
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
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
