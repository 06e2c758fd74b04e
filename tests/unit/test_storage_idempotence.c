/* Unit tests for storage idempotence and exact sums: a profile id counts once
 * per series however often (and however concurrently) it is written, distinct
 * ids sum exactly, negative and large values sum exactly, and the seen index
 * survives reopening and compaction. Randomised values print their seed; pass
 * a seed as argv[1] to replay. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define T0 1700000000LL
#define THREADS 8
#define RETRIES 40

static void check_sum(storage_t *s, const char *tenant, const labels_t *l, int64_t want)
{
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        CHECK_EQ_INT(fx_totals(s, tenant, l, r, T0 - 86400, T0 + 86400, NULL), want);
        CHECK_EQ_INT(fx_block_total(s, tenant, l, r, T0 - 86400, T0 + 86400, NULL), want);
    }
}

static void test_twice(fixture_t *f)
{
    labels_t *l = fx_labels("twice", NULL);
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "a;b", 17);
    size_t w1 = 9, w2 = 9;
    CHECK_EQ_INT(fx_write(f->s, "x", l, t, st, 1, T0 * NS, &w1), 0);
    CHECK_EQ_INT(fx_write(f->s, "x", l, t, st, 1, T0 * NS, &w2), 0);
    CHECK_EQ_INT(w1, 1);
    CHECK_EQ_INT(w2, 0);
    /* a retry with another time is still the same profile */
    CHECK_EQ_INT(fx_write(f->s, "x", l, t, st, 1, (T0 + 5000) * NS, &w2), 0);
    CHECK_EQ_INT(w2, 0);
    check_sum(f->s, "x", l, 17);
    CHECK_EQ_INT(fx_reopen(f), 0);
    CHECK_EQ_INT(fx_write(f->s, "x", l, t, st, 1, T0 * NS, &w2), 0);
    CHECK_EQ_INT(w2, 0);
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_write(f->s, "x", l, t, st, 1, T0 * NS, &w2), 0);
    CHECK_EQ_INT(w2, 0);
    check_sum(f->s, "x", l, 17);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

/* A profile of two series whose first part was stored before: only the new
 * series is written; a series listed twice in one profile counts once. */
static void test_partial_retry(fixture_t *f)
{
    labels_t *a = fx_labels("multi", "a"), *b = fx_labels("multi", "b");
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "m;n", 5);
    size_t w = 0;
    CHECK_EQ_INT(fx_write(f->s, "x", a, t, st, 9, T0 * NS, &w), 0);
    CHECK_EQ_INT(w, 1);
    storage_series_write_t sw[3] = {
        {.labels = a, .series_id = labels_hash(a), .tree = t},
        {.labels = b, .series_id = labels_hash(b), .tree = t},
        {.labels = b, .series_id = labels_hash(b), .tree = t},
    };
    for (int i = 0; i < 3; i++)
        sw[i].token = sw[i].series_id >> 1;
    storage_profile_write_t p = {
        .tenant = "x", .time_ns = T0 * NS, .series = sw, .nseries = 3, .symbols = st};
    fx_id(p.profile_id, 9);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, &w, &em), 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, &w, &em), 0);
    CHECK_EQ_INT(w, 0);
    check_sum(f->s, "x", a, 5);
    check_sum(f->s, "x", b, 5);
    labels_free(a);
    labels_free(b);
    calltree_free(t);
    symtab_free(st);
}

typedef struct worker {
    fixture_t *f;
    const labels_t *l;
    pthread_barrier_t *start;
    int index;
    int64_t own_sum; /* values of the ids only this thread wrote */
    size_t written;
    int errors;
} worker_t;

/* Thread-safe (no CHECK): adds value along a;b. */
static int add_path(calltree_t *t, symtab_t *st, const char *a, const char *b, int64_t v)
{
    uint64_t stack[2];
    int rc = symtab_intern(st, a, strlen(a), "", 0, &stack[0]);
    if (rc == 0) rc = symtab_intern(st, b, strlen(b), "", 0, &stack[1]);
    return rc != 0 ? rc : calltree_add_stack(t, stack, 2, v);
}

/* Every thread writes the shared id 1000 RETRIES times, racing the others,
 * plus ids of its own; each tree has its own value so any double count shows. */
static void *worker_main(void *arg)
{
    worker_t *w = arg;
    calltree_t *shared = calltree_new(0), *own = calltree_new(0);
    symtab_t *st = symtab_new();
    w->errors += add_path(shared, st, "race", "shared", 1000003) != 0;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < RETRIES; i++) {
        size_t n = 0;
        if (fx_write(w->f->s, "conc", w->l, shared, st, 1000, T0 * NS, &n) != 0) w->errors++;
        w->written += n;
        w->errors += calltree_clear(own) != 0;
        int64_t v = 1 + w->index * 1000 + i;
        w->errors += add_path(own, st, "race", "own", v) != 0;
        if (fx_write(w->f->s, "conc", w->l, own, st, 2000 + (uint64_t)w->index * RETRIES + i,
                     (T0 + i) * NS, &n) != 0)
            w->errors++;
        w->own_sum += v;
    }
    calltree_free(shared);
    calltree_free(own);
    symtab_free(st);
    return NULL;
}

/* Reads while the writers write: scans must not fail, and since every value
 * is positive, no read may ever exceed the final sum. The reader starts at
 * the writers' barrier and reads at least once: on a loaded machine it may
 * not run at all before the writers are done, so how many of its reads
 * overlap the writes is only printed. */
typedef struct reader {
    storage_t *s;
    uint64_t token, series_id;
    pthread_barrier_t *start;
    atomic_int *done;
    int64_t max_total;
    int errors, reads;
} reader_t;

static int reader_total(void *ctx, int64_t window, int64_t total)
{
    *(int64_t *)ctx += total;
    return 0;
}

static int reader_block(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    calltree_t *t = calltree_new(0);
    int rc = calltree_decode_merge(t, v, n);
    *(int64_t *)ctx += calltree_root_total(t);
    calltree_free(t);
    return rc;
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    pthread_barrier_wait(r->start);
    do {
        int64_t totals = 0, blocks = 0;
        int rc = storage_scan_totals(r->s, "conc", r->token, r->series_id, 0, T0 - 100, T0 + 100,
                                     reader_total, &totals);
        if (rc == 0)
            rc = storage_scan_blocks(r->s, "conc", r->token, r->series_id, 4, T0 - 86400,
                                     T0 + 86400, reader_block, &blocks);
        r->errors += rc != 0;
        r->max_total = totals > r->max_total ? totals : r->max_total;
        r->max_total = blocks > r->max_total ? blocks : r->max_total;
        r->reads++;
    } while (!atomic_load(r->done));
    return NULL;
}

static void test_concurrent(fixture_t *f)
{
    labels_t *l = fx_labels("conc", NULL);
    pthread_t th[THREADS], rt;
    worker_t w[THREADS];
    pthread_barrier_t start;
    atomic_int done = 0;
    reader_t r = {.s = f->s, .series_id = labels_hash(l), .start = &start, .done = &done};
    r.token = r.series_id >> 1;
    pthread_barrier_init(&start, NULL, THREADS + 1); /* the writers and the reader */
    pthread_create(&rt, NULL, reader_main, &r);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){.f = f, .l = l, .start = &start, .index = i};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int64_t want = 1000003;
    size_t shared_written = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].errors, 0);
        want += w[i].own_sum;
        shared_written += w[i].written;
    }
    atomic_store(&done, 1);
    pthread_join(rt, NULL);
    pthread_barrier_destroy(&start);
    CHECK_EQ_INT(shared_written, 1); /* exactly one writer won the shared id */
    check_sum(f->s, "conc", l, want);
    CHECK_EQ_INT(r.errors, 0);
    CHECK(r.reads > 0);
    CHECK(r.max_total <= want);
    fprintf(stderr, "concurrent: %d reads during the writes\n", r.reads);
    labels_free(l);
}

/* Many distinct ids with random (also negative, also huge) values. */
static void test_exact_sums(fixture_t *f, uint64_t seed)
{
    check_rng_state = seed;
    labels_t *l = fx_labels("sums", NULL);
    calltree_t *t = calltree_new(0), *want = calltree_new(0);
    symtab_t *st = symtab_new();
    static const char *stacks[] = {"a", "a;b", "a;b;c", "a;d", "e;f;g;h"};
    int64_t sum = 0;
    for (int i = 0; i < 300; i++) {
        CHECK_EQ_INT(calltree_clear(t), 0);
        int64_t v = (int64_t)(check_rng() % 2000001) - 1000000;
        if (i % 50 == 7)
            v = (i % 100 == 7 ? 1 : -1) * ((int64_t)1 << 52) + (int64_t)(check_rng() % 1000);
        const char *stack = stacks[check_rng() % 5];
        fx_add(t, st, stack, v);
        fx_add(want, st, stack, v);
        sum += v;
        CHECK_EQ_INT(
            fx_write(f->s, "sum", l, t, st, 5000 + (uint64_t)i,
                     (T0 + (int64_t)(check_rng() % 7200)) * NS + (int64_t)(check_rng() % NS), NULL),
            0);
        if (i % 3 == 0) /* and retries sprinkled in */
            CHECK_EQ_INT(fx_write(f->s, "sum", l, t, st, 5000 + (uint64_t)i, T0 * NS, NULL), 0);
    }
    CHECK_EQ_INT(calltree_root_total(want), sum);
    check_sum(f->s, "sum", l, sum);
    /* negative-only series */
    labels_t *neg = fx_labels("neg", NULL);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(calltree_clear(t), 0);
        fx_add(t, st, "free", -7);
        CHECK_EQ_INT(fx_write(f->s, "sum", neg, t, st, 9000 + (uint64_t)i, T0 * NS, NULL), 0);
    }
    check_sum(f->s, "sum", neg, -70);
    CHECK_EQ_INT(storage_compact(f->s), 0);
    check_sum(f->s, "sum", l, sum);
    check_sum(f->s, "sum", neg, -70);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK_EQ_INT(stats.corrupt_operands, 0);
    CHECK(stats.duplicate_series >= 100);
    labels_free(l);
    labels_free(neg);
    calltree_free(t);
    calltree_free(want);
    symtab_free(st);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL) | 1;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    test_twice(&f);
    test_partial_retry(&f);
    test_concurrent(&f);
    test_exact_sums(&f, seed);
    fx_done(&f);
    return check_exit();
}
