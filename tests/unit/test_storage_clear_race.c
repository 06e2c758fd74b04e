/* test_storage_clear_race.c — storage_range_clear beside a writer of a
 * series of the cleared range (docs/cluster.md, "Regaining a range").
 *
 * A writer skips a series' labels and postings when the series cache says
 * they are stored. A clear that committed while such a write was being
 * built (it decided from the cache before the clear, commits after it)
 * would leave that write's data without labels: unreadable by any
 * selector until another write or the stream put them back. So in each
 * round a writer writes one large profile after another into one series
 * (the cache warm, most of each write spent building its batch); the
 * clear runs; the writer then finishes the write it is in and stops.
 * Whatever the store holds of the series afterwards must be readable:
 * data there means its labels are there. Rounds and time are bounded.
 */
#include "test_storage_fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define ROUNDS 40
#define T0 1700000000LL

typedef struct writer {
    fixture_t *f;
    const labels_t *l;
    const calltree_t *t;
    const symtab_t *st;
    atomic_int stop;
    atomic_int writes;
    uint64_t next_id;
    int failed;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < 100000 && !atomic_load(&w->stop); i++) {
        if (fx_write(w->f->s, "st", w->l, w->t, w->st, w->next_id++, (T0 - 100 + i % 50) * NS,
                     NULL) != 0) {
            w->failed = 1;
            break;
        }
        atomic_fetch_add(&w->writes, 1);
    }
    return NULL;
}

static calltree_t *large_tree(symtab_t *st)
{
    calltree_t *t = calltree_new(0);
    char stack[96];
    for (int k = 0; k < 3000; k++) {
        snprintf(stack, sizeof stack, "main;mod%d;fn%d;leaf%d", k % 13, k % 211, k);
        fx_add(t, st, stack, 1 + k % 17);
    }
    return t;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void)
{
    symtab_t *st = symtab_new();
    calltree_t *t = large_tree(st);
    labels_t *l = fx_labels("race", NULL);
    uint64_t id = labels_hash(l), token = id >> 1;
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    writer_t w = {.f = &f, .l = l, .t = t, .st = st, .next_id = 1};
    int lost = 0, rounds = 0;
    for (; rounds < ROUNDS && !w.failed; rounds++) {
        atomic_store(&w.stop, 0);
        atomic_store(&w.writes, 0);
        pthread_t th;
        CHECK_EQ_INT(pthread_create(&th, NULL, writer_main, &w), 0);
        for (int i = 0; i < 2000 && atomic_load(&w.writes) < 2; i++) /* cache warm */
            sleep_ms(1);
        sleep_ms(rounds % 3); /* the clear lands at different points of a write */
        storage_clear_stats_t cs;
        errmsg_t em = {{0}};
        uint64_t lo = token, hi = token;
        CHECK_EQ_INT(storage_range_clear(f.s, &lo, &hi, 1, &cs, &em), 0);
        atomic_store(&w.stop, 1);
        CHECK_EQ_INT(pthread_join(th, NULL), 0);
        storage_range_received(f.s);
        int64_t data = fx_totals(f.s, "st", l, 0, T0 - 1000, T0 + 1000, NULL);
        labels_t *got = NULL;
        int lrc = storage_series_labels(f.s, "st", token, id, &got);
        labels_free(got);
        if (data > 0 && lrc != 0) lost++;
        CHECK(data == 0 || lrc == 0);
    }
    CHECK_EQ_INT(w.failed, 0);
    printf("%d rounds, %d with data of the series but no labels after the clear\n", rounds, lost);
    fx_done(&f);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
    return check_exit();
}
