/* Unit tests for common/workq.h on a real libuv loop and the workq's own
 * threads: a lane never runs more than its cap; a busy query lane leaves a
 * thread to writes (without lanes, two blocked queries would hold both
 * threads and the write would wait behind them); a waiting job past its
 * deadline is dropped with UV_ECANCELED and never runs; a cancelled job
 * that waits is dropped at once, one that runs is not, one handed to a
 * busy pool is dropped from the loop later; one job after another runs on
 * one thread of four (the one that went idle last), jobs at once on
 * several; the loop ends when the jobs do and closes clean. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "common/workq.h"

typedef struct test_job {
    workq_job_t w;
    uv_sem_t *release; /* NULL: returns at once */
    atomic_int *running, *max_running;
    int ran, status, done, order;
    uv_thread_t ran_on;
} test_job_t;

static int done_seq;
static uv_sem_t query_release;

static void job_fn(workq_job_t *w)
{
    test_job_t *j = w->data;
    int now = atomic_fetch_add(j->running, 1) + 1;
    int m = atomic_load(j->max_running);
    while (now > m && !atomic_compare_exchange_weak(j->max_running, &m, now)) {
    }
    j->ran = 1;
    j->ran_on = uv_thread_self();
    if (j->release != NULL) uv_sem_wait(j->release);
    atomic_fetch_sub(j->running, 1);
}

static test_job_t *write_job; /* its done releases the queries */

static void job_done(workq_job_t *w, int status)
{
    test_job_t *j = w->data;
    j->status = status;
    j->done = 1;
    j->order = ++done_seq;
    if (j == write_job) {
        uv_sem_post(&query_release);
        uv_sem_post(&query_release);
    }
}

static void safety_release(uv_timer_t *t)
{
    /* a write stuck behind the queries would deadlock the test: free them
     * after 5 s, and the order check below fails instead */
    uv_sem_post(&query_release);
    uv_sem_post(&query_release);
    uv_close((uv_handle_t *)t, NULL);
}

static void submit(workq_t *q, workq_lane_t lane, test_job_t *j, uv_sem_t *release,
                   atomic_int *running, atomic_int *max_running)
{
    *j = (test_job_t){.release = release, .running = running, .max_running = max_running};
    j->w.data = j;
    CHECK_EQ_INT(workq_submit(q, lane, &j->w, job_fn, job_done), 0);
}

static void test_lanes(uv_loop_t *loop)
{
    size_t caps[WORKQ_NLANES] = {1, 1};
    workq_t *q = NULL;
    CHECK_EQ_INT(workq_new(loop, 2, caps, NULL, &q), 0);
    uv_sem_init(&query_release, 0);
    atomic_int qrun = 0, qmax = 0, wrun = 0, wmax = 0;
    test_job_t q1, q2, w1;
    submit(q, WORKQ_QUERY, &q1, &query_release, &qrun, &qmax);
    submit(q, WORKQ_QUERY, &q2, &query_release, &qrun, &qmax);
    write_job = &w1;
    submit(q, WORKQ_WRITE, &w1, NULL, &wrun, &wmax);
    workq_stats_t st;
    workq_stats(q, &st);
    CHECK_EQ_INT(st.running[WORKQ_QUERY], 1);
    CHECK_EQ_INT(st.waiting[WORKQ_QUERY], 1);
    uv_timer_t safety;
    uv_timer_init(loop, &safety);
    uv_timer_start(&safety, safety_release, 5000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(q1.done && q2.done && w1.done);
    CHECK_EQ_INT(w1.order, 1); /* the write finished while the queries were blocked */
    CHECK_EQ_INT(atomic_load(&qmax), 1);
    workq_stats(q, &st);
    CHECK_EQ_INT(st.started[WORKQ_QUERY], 2);
    CHECK_EQ_INT(st.started[WORKQ_WRITE], 1);
    CHECK_EQ_INT(st.running[WORKQ_QUERY] + st.waiting[WORKQ_QUERY], 0);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(workq_stats_render(&st, &b), 0);
    CHECK(strstr((char *)b.data, "flamedb_pool_jobs_started_total{lane=\"query\"} 2\n") != NULL);
    buf_free(&b);
    workq_free(q);
    uv_sem_destroy(&query_release);
}

static uv_sem_t block_release;

static void release_block(uv_timer_t *t)
{
    uv_sem_post(&block_release);
    uv_close((uv_handle_t *)t, NULL);
}

/* A workq of pool_threads threads whose lanes run cap jobs each, and the
 * blockers' semaphore reset. */
static workq_t *blocking_workq(uv_loop_t *loop, int pool_threads, size_t cap,
                               const clock_source_t *clk)
{
    size_t caps[WORKQ_NLANES] = {cap, cap};
    workq_t *q = NULL;
    CHECK_EQ_INT(workq_new(loop, pool_threads, caps, clk, &q), 0);
    uv_sem_init(&block_release, 0);
    write_job = NULL;
    return q;
}

static void test_deadline(uv_loop_t *loop)
{
    clock_manual_t m = {.wall_ns = 1000 * 1000000LL, .mono_ns = 0};
    clock_source_t clk = clock_manual(&m);
    workq_t *q = blocking_workq(loop, 2, 1, &clk);
    atomic_int run = 0, max = 0;
    test_job_t blocker, late, on_time;
    submit(q, WORKQ_QUERY, &blocker, &block_release, &run, &max);
    *(&late) = (test_job_t){.running = &run, .max_running = &max};
    late.w.data = &late;
    late.w.deadline_unix_ms = 500; /* already past when its turn comes */
    CHECK_EQ_INT(workq_submit(q, WORKQ_QUERY, &late.w, job_fn, job_done), 0);
    on_time = (test_job_t){.running = &run, .max_running = &max};
    on_time.w.data = &on_time;
    on_time.w.deadline_unix_ms = 5000;
    CHECK_EQ_INT(workq_submit(q, WORKQ_QUERY, &on_time.w, job_fn, job_done), 0);
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, release_block, 20, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(blocker.done && blocker.status == 0);
    CHECK(late.done && late.status == UV_ECANCELED && !late.ran);
    CHECK(on_time.done && on_time.status == 0 && on_time.ran);
    workq_stats_t st;
    workq_stats(q, &st);
    CHECK_EQ_INT(st.cancelled[WORKQ_QUERY], 1);
    CHECK_EQ_INT(workq_default_cap(4), 3);
    CHECK_EQ_INT(workq_default_cap(1), 1);
    CHECK_EQ_INT(workq_default_cap(16), 12);
    workq_free(q);
    uv_sem_destroy(&block_release);
}

static void test_cancel(uv_loop_t *loop)
{
    workq_t *q = blocking_workq(loop, 2, 1, NULL);
    atomic_int run = 0, max = 0;
    test_job_t blocker, a, b, c;
    submit(q, WORKQ_QUERY, &blocker, &block_release, &run, &max);
    submit(q, WORKQ_QUERY, &a, NULL, &run, &max);
    submit(q, WORKQ_QUERY, &b, NULL, &run, &max);
    submit(q, WORKQ_QUERY, &c, NULL, &run, &max);
    /* b waits in the middle of the lane: dropped now, done before return */
    CHECK_EQ_INT(workq_cancel(&b.w), 0);
    CHECK(b.done && b.status == UV_ECANCELED);
    CHECK_EQ_INT(workq_cancel(&c.w), 0); /* the tail */
    workq_stats_t st;
    workq_stats(q, &st);
    CHECK_EQ_INT(st.waiting[WORKQ_QUERY], 1);
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, release_block, 50, 0);
    uv_run(loop, UV_RUN_NOWAIT);
    /* the blocker runs: it cannot be cancelled and ends as usual */
    for (int i = 0; i < 500 && atomic_load(&run) == 0; i++)
        uv_sleep(10);
    CHECK_EQ_INT(workq_cancel(&blocker.w), UV_EBUSY);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(blocker.done && blocker.status == 0 && blocker.ran);
    CHECK(a.done && a.status == 0 && a.ran); /* the lane went on past the gap */
    CHECK(!b.ran && !c.ran && c.status == UV_ECANCELED);
    workq_stats(q, &st);
    CHECK_EQ_INT(st.cancelled[WORKQ_QUERY], 2);
    CHECK_EQ_INT(st.waiting[WORKQ_QUERY], 0);
    workq_free(q);
    uv_sem_destroy(&block_release);
}

/* A job handed to the pool while its only thread is busy waits there: a
 * cancel drops it, and its done comes from the loop, not from the cancel. */
static void test_cancel_on_pool(uv_loop_t *loop)
{
    workq_t *q = blocking_workq(loop, 1, 2, NULL);
    atomic_int run = 0, max = 0;
    test_job_t blocker, a;
    submit(q, WORKQ_QUERY, &blocker, &block_release, &run, &max);
    submit(q, WORKQ_QUERY, &a, NULL, &run, &max);
    workq_stats_t st;
    workq_stats(q, &st);
    CHECK_EQ_INT(st.running[WORKQ_QUERY], 2); /* both handed over, one thread */
    CHECK_EQ_INT(workq_cancel(&a.w), 0);
    CHECK(!a.done);
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, release_block, 20, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(blocker.done && blocker.status == 0 && blocker.ran);
    CHECK(a.done && a.status == UV_ECANCELED && !a.ran);
    workq_stats(q, &st);
    CHECK_EQ_INT(st.cancelled[WORKQ_QUERY], 1);
    CHECK_EQ_INT(st.running[WORKQ_QUERY], 0);
    workq_free(q);
    uv_sem_destroy(&block_release);
}

#define CHAIN_JOBS 20

typedef struct chain {
    workq_t *q;
    test_job_t jobs[CHAIN_JOBS];
    atomic_int run, max;
    int next;
} chain_t;

static chain_t *the_chain;

/* Each job's done submits the next: one job on the pool at a time. */
static void chain_done(workq_job_t *w, int status)
{
    chain_t *c = the_chain;
    job_done(w, status);
    if (c->next == CHAIN_JOBS) return;
    test_job_t *j = &c->jobs[c->next++];
    *j = (test_job_t){.running = &c->run, .max_running = &c->max};
    j->w.data = j;
    CHECK_EQ_INT(workq_submit(c->q, WORKQ_QUERY, &j->w, job_fn, chain_done), 0);
}

static void test_last_idle_thread(uv_loop_t *loop)
{
    size_t caps[WORKQ_NLANES] = {4, 4};
    chain_t c = {0};
    the_chain = &c;
    CHECK_EQ_INT(workq_new(loop, 4, caps, NULL, &c.q), 0);
    /* four at once: four threads, each running one */
    uv_sem_init(&block_release, 0);
    test_job_t at_once[4];
    write_job = NULL;
    for (int i = 0; i < 4; i++)
        submit(c.q, WORKQ_QUERY, &at_once[i], &block_release, &c.run, &c.max);
    for (int i = 0; i < 500 && atomic_load(&c.run) < 4; i++)
        uv_sleep(10);
    CHECK_EQ_INT(atomic_load(&c.max), 4);
    for (int i = 0; i < 4; i++)
        uv_sem_post(&block_release);
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 1; i < 4; i++)
        for (int k = 0; k < i; k++)
            CHECK(!uv_thread_equal(&at_once[i].ran_on, &at_once[k].ran_on));
    /* then one after another: all on one thread, the others asleep */
    test_job_t *first = &c.jobs[c.next++];
    *first = (test_job_t){.running = &c.run, .max_running = &c.max};
    first->w.data = first;
    CHECK_EQ_INT(workq_submit(c.q, WORKQ_QUERY, &first->w, job_fn, chain_done), 0);
    uv_run(loop, UV_RUN_DEFAULT); /* returns: no handle left once the last is done */
    int same = 0;
    for (int i = 0; i < CHAIN_JOBS; i++) {
        CHECK(c.jobs[i].done && c.jobs[i].ran && c.jobs[i].status == 0);
        same += uv_thread_equal(&c.jobs[i].ran_on, &c.jobs[0].ran_on);
    }
    CHECK_EQ_INT(same, CHAIN_JOBS);
    workq_free(c.q);
    uv_sem_destroy(&block_release);
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    test_lanes(&loop);
    test_deadline(&loop);
    test_cancel(&loop);
    test_cancel_on_pool(&loop);
    test_last_idle_thread(&loop);
    CHECK_EQ_INT(uv_loop_close(&loop), 0); /* no handle of the workqs left open */
    return check_exit();
}
