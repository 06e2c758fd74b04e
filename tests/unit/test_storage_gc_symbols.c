/* test_storage_gc_symbols.c — symbol collection: once the last stack-node
 * table naming a symbol is collected and no span tree names it, the symbol
 * is deleted (storage_gc_symbols); symbols still named by a table or a span
 * tree stay; a later write of the deleted symbol puts it again (the symbol
 * cache was emptied by the sweep, so no writer believes it is stored). And
 * sweeps running beside writers that reuse unreferenced symbols never delete
 * one a committed table names. Before, symbols were never collected. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <time.h>

#include "check.h"

#define POOL 40   /* symbols the concurrent phase reuses */
#define ROUNDS 12 /* expire / sweep-beside-writes rounds */
#define WRITERS 3 /* writer threads per round */
#define PER_WRITER 30

static uint64_t sym_of(symtab_t *st, const char *name)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, st, name, 1);
    uint64_t s = calltree_sym(t, calltree_first_child(t, 0));
    calltree_free(t);
    return s;
}

/* Whether the store holds the symbol's name (reopened first: the name cache
 * of queries may keep a deleted name, harmless as nothing refers to it). */
static int stored_now(fixture_t *f, const char *tenant, uint64_t sym)
{
    symtab_t *got = symtab_new();
    CHECK_EQ_INT(storage_load_symbols(f->s, tenant, &sym, 1, got), 0);
    int n = (int)symtab_count(got);
    symtab_free(got);
    return n;
}

static int stored(fixture_t *f, const char *tenant, uint64_t sym)
{
    CHECK_EQ_INT(fx_reopen(f), 0);
    return stored_now(f, tenant, sym);
}

static void write_tree(fixture_t *f, const labels_t *l, symtab_t *st, const char *stack,
                       const char *span_stack, uint64_t id)
{
    calltree_t *t = calltree_new(0), *sp = calltree_new(0);
    fx_add(t, st, stack, 3);
    storage_span_tree_t span = {.kind = STORAGE_SPAN_KIND_SPAN, .id = 42, .tree = sp};
    if (span_stack != NULL) fx_add(sp, st, span_stack, 1);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = sw.series_id >> 1;
    if (span_stack != NULL) {
        sw.spans = &span;
        sw.nspans = 1;
    }
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
    calltree_free(sp);
}

static size_t collect(fixture_t *f, size_t *tables)
{
    size_t n, syms = 99;
    CHECK_EQ_INT(storage_gc_series(f->s, &n), 0);
    CHECK_EQ_INT(storage_gc_nodetabs(f->s, tables), 0);
    CHECK_EQ_INT(storage_gc_symbols(f->s, &syms), 0);
    return syms;
}

/* ---- the concurrent phase ---- */

typedef struct race {
    fixture_t *f;
    symtab_t *st; /* read-only while threads run */
    int round, writer;
    volatile int *stop;
} race_t;

static void *writer_main(void *arg)
{
    race_t *r = arg;
    char svc[64], stack[64];
    for (int i = 0; i < PER_WRITER; i++) {
        snprintf(svc, sizeof svc, "svc_r%d_w%d_%d", r->round, r->writer, i);
        snprintf(stack, sizeof stack, "main;pool%d", (r->writer * 7 + i) % POOL);
        labels_t *l = fx_labels(svc, NULL);
        write_tree(r->f, l, r->st, stack, NULL, 1000u + (uint64_t)i);
        labels_free(l);
    }
    return NULL;
}

/* Seconds since some fixed point (CLOCK_MONOTONIC). */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sweeps until the round's writers are done, at most SWEEPS times and for
 * SWEEP_SECONDS: on a loaded machine the writers lag, and sweeps without
 * end slow them further (a sanitizer build once ran past its timeout). */
#define SWEEPS 200
#define SWEEP_SECONDS 3.0
static void *sweeper_main(void *arg)
{
    race_t *r = arg;
    double until = mono_s() + SWEEP_SECONDS;
    for (int i = 0; i < SWEEPS && !*r->stop && mono_s() < until; i++) {
        size_t n;
        CHECK_EQ_INT(storage_gc_symbols(r->f->s, &n), 0);
    }
    return NULL;
}

static void race_round(fixture_t *f, symtab_t *st, int round)
{
    volatile int stop = 0;
    race_t w[WRITERS], sw = {.f = f, .st = st, .round = round, .stop = &stop};
    pthread_t tw[WRITERS], ts;
    CHECK_EQ_INT(pthread_create(&ts, NULL, sweeper_main, &sw), 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (race_t){.f = f, .st = st, .round = round, .writer = i, .stop = &stop};
        CHECK_EQ_INT(pthread_create(&tw[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(tw[i], NULL);
    stop = 1;
    pthread_join(ts, NULL);
    /* every pool symbol a table of this round names is stored */
    CHECK_EQ_INT(fx_reopen(f), 0);
    char name[32];
    for (int i = 0; i < WRITERS; i++)
        for (int j = 0; j < PER_WRITER; j++) {
            snprintf(name, sizeof name, "pool%d", (i * 7 + j) % POOL);
            CHECK_EQ_INT(stored_now(f, "t", sym_of(st, name)), 1);
        }
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* every resolution expires */
        f.opts.retention_seconds[r] = 3600;
    f.opts.profile_retention_seconds = 3600;
    f.opts.span_retention_seconds = 0;     /* span trees stay */
    f.opts.series_gc_interval_seconds = 0; /* run by hand here */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *old = fx_labels("oldsvc", NULL), *live = fx_labels("livesvc", NULL);
    symtab_t *st = symtab_new();
    uint64_t old_only = sym_of(st, "old_only"), shared = sym_of(st, "shared_fn"),
             span_only = sym_of(st, "span_only"), serve = sym_of(st, "serve");
    write_tree(&f, old, st, "main;old_only;shared_fn", NULL, 1);
    write_tree(&f, live, st, "main;serve;shared_fn", "main;span_only", 2);
    size_t tables = 99;
    CHECK_EQ_INT(collect(&f, &tables), 0); /* everything is named */
    CHECK_EQ_INT(tables, 0);
    CHECK_EQ_INT(stored_now(&f, "t", old_only), 1); /* no reopen: the caches know it */

    f.now += 3 * 86400; /* oldsvc's data expires; livesvc goes on, its span stays */
    write_tree(&f, live, st, "main;serve", NULL, 3);
    storage_stats_t stats;
    CHECK_EQ_INT(collect(&f, &tables), 1); /* old_only */
    CHECK_EQ_INT(tables, 1);               /* oldsvc's */
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK_EQ_INT(stats.gc_symbols, 1);
    /* written again at once: stored again, as the sweep emptied the cache
     * that said it was stored */
    write_tree(&f, old, st, "main;old_only", NULL, 4);
    CHECK_EQ_INT(stored(&f, "t", old_only), 1);
    CHECK_EQ_INT(stored(&f, "t", shared), 1);    /* livesvc's table names it */
    CHECK_EQ_INT(stored(&f, "t", span_only), 1); /* a span tree names it */
    CHECK_EQ_INT(stored(&f, "t", serve), 1);
    /* so the one deleted was old_only: gone once its new table goes too */
    f.now += 3 * 86400;
    write_tree(&f, live, st, "main;serve", NULL, 5);
    CHECK_EQ_INT(collect(&f, &tables), 1);
    CHECK_EQ_INT(stored(&f, "t", old_only), 0);

    /* sweeps beside writes of symbols that are unreferenced on disk */
    char name[32];
    for (int i = 0; i < POOL; i++) {
        snprintf(name, sizeof name, "pool%d", i);
        sym_of(st, name);
    }
    for (int round = 0; round < ROUNDS; round++) {
        race_round(&f, st, round);
        f.now += 3 * 86400; /* this round's tables expire */
        write_tree(&f, live, st, "main;serve", NULL, 100u + (uint64_t)round);
        collect(&f, &tables);
        CHECK_EQ_INT(stored(&f, "t", sym_of(st, "pool0")), 0); /* all unreferenced again */
    }

    symtab_free(st);
    labels_free(old);
    labels_free(live);
    fx_done(&f);
    return check_exit();
}
