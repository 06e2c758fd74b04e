/* test_storage_union_hold.c — a union's forest that holds the union
 * (STORAGE_TABS_HOLD): the same forest as one with its own copies (every
 * total, child link, least child, and each node's parent, symbol and
 * symbol number), its arrays the union's; another merger of the same
 * tokens, on another thread, makes its forest only once the held one is
 * released; a forest given up (a negative value) lets the union go at
 * once; the same with its pass followed (storage_follow_t). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "storage/storage_int.h"

#define TOKEN1 0x1111111111111111ull
#define TOKEN2 0x2222222222222222ull
#define TOKEN3 0x3333333333333333ull

static const unsigned FLAGS =
    STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST | STORAGE_TABS_SYMBOLS | STORAGE_TABS_SYMNOS;

/* The forest of ls at tokens with flags into *tabs (one expected). */
static storage_merger_t *forest_of(fixture_t *f, labels_t *const *ls, const uint64_t *tokens,
                                   unsigned flags, storage_merged_tab_t **tabs,
                                   storage_follow_t *follow)
{
    storage_merger_t *m = fx_merger_of(f, ls, tokens, 3);
    size_t n = 0;
    errmsg_t em = {{0}};
    if (follow != NULL) storage_merger_follow(m, follow);
    CHECK_EQ_INT(storage_merger_tabs(m, flags, tabs, &n, &em), 0);
    CHECK_EQ_INT(n, 1);
    return m;
}

/* a and b are the same forest, node for node. */
static void check_same_forest(const storage_merged_tab_t *a, const storage_merged_tab_t *b)
{
    CHECK(a->n == b->n && a->nodes == b->nodes && a->nonneg == b->nonneg && a->nsyms == b->nsyms);
    for (size_t id = 0; id < a->n && id < b->n; id++) {
        CHECK(a->total[id] == b->total[id] && a->least_kid[id] == b->least_kid[id]);
        if (id != 0 && a->total[id] == 0) continue; /* not a forest node: nothing else read */
        CHECK(a->first_kid[id] == b->first_kid[id] && a->sym[id] == b->sym[id]);
        CHECK(a->symno[id] == b->symno[id]);
        if (id > 0) CHECK(a->next_sib[id] == b->next_sib[id] && a->parent[id] == b->parent[id]);
    }
}

typedef struct other {
    fixture_t *f;
    labels_t *const *ls;
    const uint64_t *tokens;
    _Atomic int done;
} other_t;

static void *other_forest(void *arg)
{
    other_t *o = arg;
    storage_merged_tab_t *tabs;
    storage_merger_t *m = forest_of(o->f, o->ls, o->tokens, FLAGS | STORAGE_TABS_HOLD, &tabs, NULL);
    atomic_store(&o->done, 1);
    storage_merged_tabs_free(tabs, 1);
    storage_merger_free(m);
    return NULL;
}

static void check_held(fixture_t *f, labels_t *const *ls, const uint64_t *tokens, int followed)
{
    storage_merged_tab_t *own, *held;
    storage_follow_t follow = {0};
    storage_merger_t *a = forest_of(f, ls, tokens, FLAGS, &own, NULL);
    storage_merger_t *b =
        forest_of(f, ls, tokens, FLAGS | STORAGE_TABS_HOLD, &held, followed ? &follow : NULL);
    CHECK(held[0].held != NULL && own[0].held == NULL);
    CHECK(!followed || atomic_load(&follow.state) == 1);
    check_same_forest(&own[0], &held[0]);
    /* another merger of the same tokens waits for the union */
    other_t o = {f, ls, tokens, 0};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, other_forest, &o), 0);
    for (int i = 0; i < 50 && !atomic_load(&o.done); i++)
        usleep(1000);
    CHECK_EQ_INT(atomic_load(&o.done), 0); /* 50 ms on: still waiting */
    storage_merged_tabs_free(held, 1);
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    CHECK_EQ_INT(atomic_load(&o.done), 1);
    storage_merged_tabs_free(own, 1);
    storage_merger_free(a);
    storage_merger_free(b);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *ls[3];
    uint64_t tokens[3] = {TOKEN1, TOKEN2, TOKEN3};
    fx_write_three(&f, st, ls, tokens);
    check_held(&f, ls, tokens, 0);
    check_held(&f, ls, tokens, 1);

    /* a negative value: no forest, and the union is let go at once */
    labels_t *neg = fx_labels("svc", "neg");
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;q", -5);
    CHECK_EQ_INT(fx_write_at(f.s, "t", neg, TOKEN3, t, st, 9, (f.now - 5) * NS, NULL), 0);
    calltree_free(t);
    labels_t *with_neg[3] = {ls[0], ls[1], neg};
    for (int followed = 0; followed < 2; followed++) {
        storage_follow_t follow = {0};
        storage_merged_tab_t *tabs;
        storage_merger_t *m = forest_of(&f, with_neg, tokens, FLAGS | STORAGE_TABS_HOLD, &tabs,
                                        followed ? &follow : NULL);
        CHECK(!tabs[0].nonneg && tabs[0].held == NULL);
        CHECK(!followed || atomic_load(&follow.state) == 2);
        storage_merged_tabs_free(tabs, 1);
        storage_merger_free(m);
        other_t o = {&f, ls, tokens, 0}; /* not waiting for anything */
        other_forest(&o);
        CHECK_EQ_INT(atomic_load(&o.done), 1);
    }
    labels_free(neg);
    for (int i = 0; i < 3; i++)
        labels_free(ls[i]);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
