/* test_storage_union_threads.c — shard unions under concurrent use: two
 * threads render the same three tokens over and over (each render's one
 * forest over the union must be the tree the merger builds of the same
 * blocks) while a third pushes new stacks to the tokens, so the union is
 * extended between renders and the tables grow under it, and a fourth
 * empties a table now and then (a new generation: the union is built
 * afresh). Bounded: a fixed number of rounds per thread. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "storage/storage_int.h"

#define NTOK 3
#define WRITES 40
#define RENDERS 60
#define RESETS 6

typedef struct shared {
    fixture_t *f;
    labels_t *ls[NTOK];
    uint64_t tokens[NTOK];
    atomic_int failures, unions, writers_done;
} shared_t;

static void *writer(void *arg)
{
    shared_t *sh = arg;
    symtab_t *st = symtab_new();
    char stack[96];
    for (int i = 0; i < WRITES; i++) {
        calltree_t *t = calltree_new(0);
        for (int k = 0; k < 20; k++) { /* new stacks each round, old prefixes */
            snprintf(stack, sizeof stack, "main;m%d;f%d_%d;g%d", k % 5, i, k, k % 3);
            fx_add(t, st, stack, 1 + k);
        }
        int tok = i % NTOK;
        if (fx_write_at(sh->f->s, "t", sh->ls[tok], sh->tokens[tok], t, st, (uint64_t)(100 + i),
                        (sh->f->now - 5) * NS, NULL) != 0)
            atomic_fetch_add(&sh->failures, 1);
        calltree_free(t);
    }
    symtab_free(st);
    atomic_store(&sh->writers_done, 1);
    return NULL;
}

static void *resetter(void *arg)
{
    shared_t *sh = arg;
    for (int i = 0; i < RESETS; i++) {
        nodetab_t *t;
        errmsg_t em = {{0}};
        if (storage_nodetab_acquire(sh->f->s, sh->tokens[i % NTOK], "t", &t, &em) != 0) {
            atomic_fetch_add(&sh->failures, 1);
            continue;
        }
        storage_nodetab_release(sh->f->s, t, 1); /* emptied: reloaded by the next holder */
        usleep(2000);
    }
    return NULL;
}

static storage_merger_t *merger_of(shared_t *sh)
{
    storage_merger_t *m;
    if (storage_merger_new(sh->f->s, "t", &m) != 0) return NULL;
    for (int i = 0; i < NTOK; i++)
        if (storage_merger_add(m, sh->tokens[i], labels_hash(sh->ls[i]), 0, sh->f->now - 3600,
                               sh->f->now + 60) != 0) {
            storage_merger_free(m);
            return NULL;
        }
    return m;
}

/* One render both ways from the same blocks: 0 when they agree. */
static int render_once(shared_t *sh)
{
    storage_merger_t *m = merger_of(sh);
    if (m == NULL) return 1;
    storage_merged_tab_t *tabs;
    size_t ntabs;
    errmsg_t em = {{0}};
    int bad = storage_merger_tabs(m, STORAGE_TABS_PARENTS, &tabs, &ntabs, &em) != 0;
    calltree_t *got = calltree_new(0), *want = calltree_new(0);
    for (size_t i = 0; !bad && i < ntabs; i++) {
        const storage_merged_tab_t *v = &tabs[i];
        uint32_t *map = calloc(v->n, sizeof *map);
        calltree_t *one = calltree_new(0);
        calltree_add_self(one, 0, v->self[0]);
        for (size_t id = 1; map != NULL && id < v->n && !bad; id++) {
            if (v->total[id] == 0) continue;
            bad |= calltree_child(one, map[v->parent[id]], v->sym[id], &map[id]) != 0;
            calltree_add_self(one, map[id], v->self[id]);
        }
        bad |= map == NULL || calltree_merge(got, one) != 0;
        free(map);
        calltree_free(one);
    }
    if (!bad && ntabs == 1) atomic_fetch_add(&sh->unions, 1);
    storage_merged_tabs_free(tabs, bad ? 0 : ntabs);
    bad |= storage_merger_finish(m, want, &em) != 0; /* the same blocks, no forest */
    storage_merger_free(m);
    bad |= fx_tree_diff(want, got) != 0 || calltree_node_count(want) != calltree_node_count(got);
    calltree_free(got);
    calltree_free(want);
    return bad;
}

static void *renderer(void *arg)
{
    shared_t *sh = arg;
    for (int i = 0; i < RENDERS; i++)
        if (render_once(sh) != 0) atomic_fetch_add(&sh->failures, 1);
    return NULL;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    shared_t sh = {.f = &f,
                   .tokens = {0x3000000000000001ull, 0x1000000000000002ull, 0x2000000000000003ull}};
    const char *envs[NTOK] = {"a", "b", "c"};
    symtab_t *st = symtab_new();
    for (int i = 0; i < NTOK; i++) {
        sh.ls[i] = fx_labels("svc", envs[i]);
        calltree_t *t = calltree_new(0);
        fx_add(t, st, "main;m0;start", 5);
        CHECK_EQ_INT(fx_write_at(f.s, "t", sh.ls[i], sh.tokens[i], t, st, (uint64_t)(1 + i),
                                 (f.now - 5) * NS, NULL),
                     0);
        calltree_free(t);
    }
    pthread_t th[4];
    CHECK_EQ_INT(pthread_create(&th[0], NULL, writer, &sh), 0);
    CHECK_EQ_INT(pthread_create(&th[1], NULL, renderer, &sh), 0);
    CHECK_EQ_INT(pthread_create(&th[2], NULL, renderer, &sh), 0);
    CHECK_EQ_INT(pthread_create(&th[3], NULL, resetter, &sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&sh.failures), 0);
    CHECK(atomic_load(&sh.unions) > 0); /* the union served renders */
    CHECK_EQ_INT(render_once(&sh), 0);  /* and after it all, one more */
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK(stats.union_builds >= 1);
    CHECK(stats.union_hits >= 1);
    fprintf(stderr, "renders over a union: %d of %d; builds %llu, hits %llu\n",
            atomic_load(&sh.unions), 2 * RENDERS, (unsigned long long)stats.union_builds,
            (unsigned long long)stats.union_hits);
    for (int i = 0; i < NTOK; i++)
        labels_free(sh.ls[i]);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
