/* Unit tests for common/assist.h with real threads: a part offered while a
 * helper is idle runs on that helper, beside the offering thread (which
 * waits in assist_join only for what is left of it); with every helper
 * busy, or with none, or with no assist at all, the part runs on the
 * joining thread inside assist_join and never waits for a helper; parts of
 * several jobs at once each run exactly once; the counts say which ran
 * where; assist_free joins idle helpers. A helper reserved ahead runs the
 * part given later (or lets go of none, counted nowhere); a reservation
 * with no helper idle runs its part at the join; a flag set on one thread
 * is seen by a waiter on another, spinning or asleep past ASSIST_SPIN_NS;
 * a part waits mid-way for its job and the job for it. assist_wake wakes
 * a helper asleep (counted), and the part offered after it runs on that
 * helper. A part joined before the helper it was handed to picked it up
 * runs on the joining thread (counted there), and that helper takes the
 * next. After a job's last part (assist_start_last) the helper sleeps at
 * once, also when it was woken for that part (assist_wake). With a
 * CPU-bound thread on the waiting thread's CPU, a flag wait
 * and a join stop spinning (counted) and sleep, and still see the flag and
 * the part's end. */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "common/assist.h"
#include "common/err.h"

typedef struct part {
    pthread_t ran_on;
    atomic_int started, runs;
    atomic_int *gate; /* non-NULL: spins until it is non-zero (bounded) */
} part_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (at most 10 s) until a helper began p: joined before that, the
 * part would be taken back and run by its joiner. */
static void wait_started(part_t *p)
{
    for (int i = 0; !atomic_load(&p->started) && i < 10000; i++)
        sleep_ms(1);
    CHECK(atomic_load(&p->started));
}

static void part_fn(void *arg)
{
    part_t *p = arg;
    p->ran_on = pthread_self();
    atomic_store(&p->started, 1);
    for (int i = 0; p->gate != NULL && !atomic_load(p->gate) && i < 10000; i++)
        sleep_ms(1); /* at most 10 s */
    atomic_fetch_add(&p->runs, 1);
}

/* An idle helper takes the part: it runs on another thread while this one
 * goes on (the part waits for the gate this thread opens). */
static void test_helper_takes(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(50); /* the helper reaches its idle wait */
    atomic_int gate = 0;
    part_t p = {.gate = &gate};
    assist_task_t t;
    assist_start(a, &t, part_fn, &p);
    sleep_ms(20);
    CHECK_EQ_INT(atomic_load(&p.runs), 0); /* waits for the gate: not here, not done */
    atomic_store(&gate, 1);
    assist_join(a, &t);
    CHECK_EQ_INT(atomic_load(&p.runs), 1);
    CHECK(!pthread_equal(p.ran_on, pthread_self()));
    assist_stats_t st;
    assist_stats(a, &st);
    CHECK(st.helped == 1 && st.inline_ == 0);
    /* the same helper takes the next one (it went back to idle) */
    part_t q = {0};
    sleep_ms(20);
    assist_start(a, &t, part_fn, &q);
    wait_started(&q);
    assist_join(a, &t);
    CHECK_EQ_INT(atomic_load(&q.runs), 1);
    CHECK(pthread_equal(q.ran_on, p.ran_on));
    assist_free(a);
}

/* Every helper busy: the part is not queued; assist_join runs it here. */
static void test_busy_runs_here(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(50);
    atomic_int gate = 0;
    part_t slow = {.gate = &gate}, mine = {0};
    assist_task_t ts, tm;
    assist_start(a, &ts, part_fn, &slow); /* takes the only helper */
    assist_start(a, &tm, part_fn, &mine);
    CHECK_EQ_INT(atomic_load(&mine.runs), 0); /* not run before its join */
    assist_join(a, &tm);                      /* here, while the helper is still held */
    CHECK_EQ_INT(atomic_load(&mine.runs), 1);
    CHECK(pthread_equal(mine.ran_on, pthread_self()));
    CHECK_EQ_INT(atomic_load(&slow.runs), 0);
    wait_started(&slow);
    atomic_store(&gate, 1);
    assist_join(a, &ts);
    CHECK_EQ_INT(atomic_load(&slow.runs), 1);
    assist_stats_t st;
    assist_stats(a, &st);
    CHECK(st.helped == 1 && st.inline_ == 1);
    assist_free(a);
}

/* No helper (0 threads) and no assist (NULL): parts run in their join. */
static void test_none(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(0, &a), ERR_OK);
    part_t p = {0}, q = {0};
    assist_task_t t;
    assist_start(a, &t, part_fn, &p);
    assist_join(a, &t);
    assist_start(NULL, &t, part_fn, &q);
    assist_join(NULL, &t);
    CHECK(atomic_load(&p.runs) == 1 && atomic_load(&q.runs) == 1);
    CHECK(pthread_equal(p.ran_on, pthread_self()) && pthread_equal(q.ran_on, pthread_self()));
    assist_free(a);
    assist_free(NULL);
    CHECK_EQ_INT(assist_new(-1, &a), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(assist_new(ASSIST_MAX_THREADS + 1, &a), ERR_INVALID_ARGUMENT);
}

/* Several jobs offer parts at once to two helpers: each part runs once. */
#define JOBS 4
#define ROUNDS 300
static assist_t *shared;

static void *job_main(void *arg)
{
    part_t *parts = arg;
    for (int i = 0; i < ROUNDS; i++) {
        assist_task_t t;
        assist_start(shared, &t, part_fn, &parts[i]);
        assist_join(shared, &t);
    }
    return NULL;
}

static void test_jobs_at_once(void)
{
    CHECK_EQ_INT(assist_new(2, &shared), ERR_OK);
    part_t *parts = calloc(JOBS * ROUNDS, sizeof *parts);
    pthread_t th[JOBS];
    for (int j = 0; j < JOBS; j++)
        CHECK_EQ_INT(pthread_create(&th[j], NULL, job_main, parts + j * ROUNDS), 0);
    for (int j = 0; j < JOBS; j++)
        pthread_join(th[j], NULL);
    int once = 0;
    for (int i = 0; i < JOBS * ROUNDS; i++)
        once += atomic_load(&parts[i].runs) == 1;
    CHECK_EQ_INT(once, JOBS * ROUNDS);
    assist_stats_t st;
    assist_stats(shared, &st);
    CHECK(st.helped + st.inline_ == JOBS * ROUNDS);
    free(parts);
    assist_free(shared);
}

/* A helper reserved ahead takes the part given later; one reserved and
 * given nothing is let go (counted neither way) and takes the next. */
static void test_reserve(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(50);
    assist_task_t t;
    assist_reserve(a, &t);
    CHECK(assist_taken(&t));
    sleep_ms(5); /* it wakes and waits, spinning, then asleep */
    part_t p = {0};
    assist_give(a, &t, part_fn, &p);
    assist_join(a, &t);
    CHECK_EQ_INT(atomic_load(&p.runs), 1);
    CHECK(!pthread_equal(p.ran_on, pthread_self()));
    assist_reserve(a, &t);
    assist_give(a, &t, NULL, NULL);
    assist_join(a, &t);
    assist_stats_t st;
    assist_stats(a, &st);
    CHECK(st.helped == 1 && st.inline_ == 0);
    /* the helper busy: a reservation takes none, its part runs at the join */
    atomic_int gate = 0;
    part_t slow = {.gate = &gate}, mine = {0};
    assist_task_t ts;
    sleep_ms(20);
    assist_start(a, &ts, part_fn, &slow);
    assist_reserve(a, &t);
    CHECK(!assist_taken(&t));
    assist_give(a, &t, part_fn, &mine);
    assist_join(a, &t);
    CHECK(pthread_equal(mine.ran_on, pthread_self()) && atomic_load(&mine.runs) == 1);
    wait_started(&slow);
    atomic_store(&gate, 1);
    assist_join(a, &ts);
    assist_stats(a, &st);
    CHECK(st.helped == 2 && st.inline_ == 1);
    /* none reserved, and NULL: the part runs at the join */
    part_t q = {0};
    assist_reserve(NULL, &t);
    CHECK(!assist_taken(&t));
    assist_give(NULL, &t, part_fn, &q);
    assist_join(NULL, &t);
    CHECK(atomic_load(&q.runs) == 1 && pthread_equal(q.ran_on, pthread_self()));
    assist_free(a);
}

/* A part that hands a value to its job mid-way and waits for the job's. */
typedef struct talk {
    assist_flag_t to_job, to_part;
    int sleep_ms; /* before the part sets its flag */
    int got;
} talk_t;

static void talk_fn(void *arg)
{
    talk_t *t = arg;
    sleep_ms(t->sleep_ms);
    assist_flag_set(&t->to_job, 7);
    t->got = assist_flag_wait(&t->to_part);
}

static void test_flag(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(50);
    /* at once (spinning), then past the spin (asleep) each way */
    int waits[2] = {0, 2 * ASSIST_SPIN_NS / 1000000 + 5};
    for (int i = 0; i < 2; i++) {
        talk_t t = {.sleep_ms = waits[i]};
        assist_flag_init(&t.to_job);
        assist_flag_init(&t.to_part);
        assist_task_t task;
        sleep_ms(20);
        assist_start(a, &task, talk_fn, &t);
        CHECK(assist_taken(&task));
        CHECK_EQ_INT(assist_flag_wait(&t.to_job), 7);
        sleep_ms(waits[i]);
        assist_flag_set(&t.to_part, 9);
        assist_join(a, &task);
        CHECK_EQ_INT(t.got, 9);
    }
    assist_free(a);
}

/* assist_wake: a helper asleep (long past ASSIST_LINGER_NS) is woken and
 * counted; the next part runs on it; with no helper, or no assist, nothing
 * happens. */
static void test_wake(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(50); /* idle, past its wait awake: asleep */
    assist_stats_t st;
    assist_wake(a);
    assist_stats(a, &st);
    CHECK(st.woken == 1);
    part_t p = {0};
    assist_task_t t;
    assist_start(a, &t, part_fn, &p);
    wait_started(&p);
    assist_join(a, &t);
    CHECK_EQ_INT(atomic_load(&p.runs), 1);
    CHECK(!pthread_equal(p.ran_on, pthread_self()));
    sleep_ms(50); /* asleep again */
    assist_wake(a);
    assist_stats(a, &st);
    CHECK(st.woken == 2 && st.helped == 1);
    assist_free(a); /* joins a helper woken and waiting awake */
    CHECK_EQ_INT(assist_new(0, &a), ERR_OK);
    assist_wake(a);
    assist_stats(a, &st);
    CHECK(st.woken == 0);
    assist_free(a);
    assist_wake(NULL);
}

/* A part handed to a helper asleep and joined at once, before the helper
 * is on a CPU again: taken back and run here, counted as run by its
 * joiner; the helper goes idle again and takes the next part. Tried until
 * the join came first (the helper may wake quickly). */
static void test_take_back(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    int back = 0;
    for (int i = 0; i < 50 && !back; i++) {
        sleep_ms(5); /* idle, past its wait awake: asleep */
        part_t p = {0};
        assist_task_t t;
        assist_stats_t before, after;
        assist_stats(a, &before);
        assist_start(a, &t, part_fn, &p);
        assist_join(a, &t);
        assist_stats(a, &after);
        CHECK_EQ_INT(atomic_load(&p.runs), 1);
        back = pthread_equal(p.ran_on, pthread_self());
        CHECK(after.helped == before.helped + !back && after.inline_ == before.inline_ + back);
    }
    CHECK(back);
    sleep_ms(5);
    part_t q = {0};
    assist_task_t t;
    assist_start(a, &t, part_fn, &q);
    CHECK(assist_taken(&t));
    wait_started(&q);
    assist_join(a, &t);
    CHECK(atomic_load(&q.runs) == 1 && !pthread_equal(q.ran_on, pthread_self()));
    /* a reserved helper let go of before it picked up the reservation */
    sleep_ms(5);
    assist_reserve(a, &t);
    assist_give(a, &t, NULL, NULL);
    assist_join(a, &t);
    assist_free(a);
}

/* assist_start_last: the helper that ran a job's last part goes to sleep
 * once idle (counted as rested) instead of waiting awake; after a plain
 * part it waits awake first, and is not counted. */
static void test_last(void)
{
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    sleep_ms(5);
    part_t p = {0}, q = {0};
    assist_task_t t;
    assist_start_last(a, &t, part_fn, &p);
    CHECK(assist_taken(&t));
    wait_started(&p);
    assist_join(a, &t);
    assist_stats_t st = {0};
    for (int i = 0; i < 1000 && st.rested == 0; i++) { /* at most 1 s */
        assist_stats(a, &st);
        if (st.rested == 0) sleep_ms(1);
    }
    CHECK(st.rested == 1 && st.helped == 1);
    assist_start(a, &t, part_fn, &q);
    wait_started(&q);
    assist_join(a, &t);
    sleep_ms(20); /* past its wait awake: asleep, not counted */
    assist_stats(a, &st);
    CHECK(st.rested == 1 && st.helped == 2 && !pthread_equal(q.ran_on, pthread_self()));
    /* woken for a part that is a job's last, handed before the helper is
     * back on a CPU: the wake was for that part, so it sleeps at once */
    part_t r = {0};
    assist_wake(a);
    assist_start_last(a, &t, part_fn, &r);
    wait_started(&r);
    assist_join(a, &t);
    for (int i = 0; i < 1000 && st.rested == 1; i++) { /* at most 1 s */
        assist_stats(a, &st);
        if (st.rested == 1) sleep_ms(1);
    }
    CHECK(st.rested == 2 && st.helped == 3);
    assist_free(a);
}

/* A CPU-bound neighbour: spins on one CPU until told to stop (or 20 s). */
typedef struct hog {
    cpu_set_t cpu;
    atomic_int stop, running;
} hog_t;

static void *hog_main(void *arg)
{
    hog_t *h = arg;
    (void)pthread_setaffinity_np(pthread_self(), sizeof h->cpu, &h->cpu);
    atomic_store(&h->running, 1);
    time_t end = time(NULL) + 20;
    for (unsigned i = 0; !atomic_load_explicit(&h->stop, memory_order_relaxed); i++)
        if ((i & 0xfffff) == 0 && time(NULL) > end) break;
    return NULL;
}

typedef struct setter {
    assist_flag_t *f;
    int ms;
} setter_t;

static void *set_later(void *arg)
{
    setter_t *s = arg;
    sleep_ms(s->ms);
    assist_flag_set(s->f, 3);
    return NULL;
}

static void slow_part(void *arg)
{
    sleep_ms(*(int *)arg);
}

/* This thread and a CPU-bound thread on one CPU: a flag wait's spin, and a
 * join's, is ended by the neighbour holding the CPU past ASSIST_BUSY_NS
 * after a yield (counted in the flag and in the stats); the waits still
 * return once the flag is set or the part is done. At most 40 waits of
 * 5 ms each way (a yield may find the neighbour not yet due for the CPU). */
static void test_busy_cpu(void)
{
    cpu_set_t mine, one;
    CHECK_EQ_INT(pthread_getaffinity_np(pthread_self(), sizeof mine, &mine), 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mine))
        cpu++;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    hog_t h = {.cpu = one};
    pthread_t ht;
    CHECK_EQ_INT(pthread_create(&ht, NULL, hog_main, &h), 0);
    CHECK_EQ_INT(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
    for (int i = 0; !atomic_load(&h.running) && i < 10000; i++)
        sleep_ms(1);
    int flag_busy = 0;
    for (int round = 0; round < 40 && flag_busy == 0; round++) {
        assist_flag_t f;
        assist_flag_init(&f);
        setter_t st = {&f, 5};
        pthread_t t;
        CHECK_EQ_INT(pthread_create(&t, NULL, set_later, &st), 0);
        CHECK_EQ_INT(assist_flag_wait(&f), 3);
        pthread_join(t, NULL);
        flag_busy += atomic_load(&f.busy);
    }
    CHECK(flag_busy > 0);
    assist_t *a;
    CHECK_EQ_INT(assist_new(1, &a), ERR_OK);
    assist_stats_t st = {0};
    for (int round = 0; round < 40 && st.busy == 0; round++) {
        int ms = 5;
        assist_task_t task;
        sleep_ms(2); /* the helper idle again */
        assist_start(a, &task, slow_part, &ms);
        assist_join(a, &task); /* on the helper (it sleeps there), or here */
        assist_stats(a, &st);
    }
    CHECK(st.busy > 0);
    assist_free(a);
    atomic_store(&h.stop, 1);
    pthread_join(ht, NULL);
    CHECK_EQ_INT(pthread_setaffinity_np(pthread_self(), sizeof mine, &mine), 0);
}

int main(void)
{
    test_helper_takes();
    test_busy_runs_here();
    test_none();
    test_jobs_at_once();
    test_reserve();
    test_flag();
    test_wake();
    test_take_back();
    test_last();
    test_busy_cpu();
    return check_exit();
}
