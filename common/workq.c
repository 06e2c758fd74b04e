/* workq.c — lanes over a pool of threads of the workq's own (workq.h).
 * The lanes live on the loop thread and need no lock; the pool's state (its
 * idle threads, the jobs handed to it and not picked up, the jobs done and
 * not yet delivered) is under pool_mu. */
#include <stdlib.h>

#include "common/err.h"
#include "common/workq.h"

/* A pool thread's stack, as libuv gives its own pool's threads. */
#define WORKQ_STACK_BYTES (8u << 20)

/* Jobs in order, linked through workq_job_t.next: a lane's waiting ones,
 * the pool's pending and done ones. */
typedef struct fifo {
    workq_job_t *head, *tail;
} fifo_t;

static void fifo_push(fifo_t *f, workq_job_t *job)
{
    job->next = NULL;
    if (f->tail != NULL)
        f->tail->next = job;
    else
        f->head = job;
    f->tail = job;
}

static workq_job_t *fifo_pop(fifo_t *f)
{
    workq_job_t *job = f->head;
    f->head = job->next;
    if (f->head == NULL) f->tail = NULL;
    return job;
}

/* Takes job (which f holds) out of f. */
static void fifo_remove(fifo_t *f, workq_job_t *job)
{
    workq_job_t **p = &f->head, *prev = NULL;
    while (*p != job) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = job->next;
    if (f->tail == job) f->tail = prev;
}

typedef struct lane {
    fifo_t wait; /* waiting, oldest first */
    size_t running, max_running;
    uint64_t waiting, started, cancelled;
} lane_t;

typedef struct worker {
    workq_t *q;
    uv_thread_t thread;
    uv_cond_t wake;
    workq_job_t *job; /* handed to it while it was idle */
    int idle;         /* on the idle stack */
} worker_t;

struct workq {
    uv_loop_t *loop;
    clock_source_t clock;
    lane_t lanes[WORKQ_NLANES];
    /* loop thread only */
    uv_async_t *async; /* open while jobs are on the pool: delivers the done ones */
    size_t on_pool;    /* handed to the pool and not delivered yet */
    /* under pool_mu */
    uv_mutex_t pool_mu;
    worker_t *workers;            /* max_workers slots; the first nworkers started */
    size_t nworkers, max_workers; /* max_workers: pool_threads */
    worker_t **idle;              /* the idle threads, the last to go idle on top */
    size_t nidle;
    fifo_t pending; /* handed over while every thread was busy */
    fifo_t done;    /* done (or cancelled on the pool), for the loop */
    int stopping;
};

size_t workq_default_cap(int pool_threads)
{
    size_t n = pool_threads > 0 ? (size_t)pool_threads : 1;
    size_t reserve = n / 4 > 0 ? n / 4 : 1;
    return n > reserve ? n - reserve : 1;
}

int workq_new(uv_loop_t *loop, int pool_threads, const size_t max_running[WORKQ_NLANES],
              const clock_source_t *clock, workq_t **out)
{
    workq_t *q = calloc(1, sizeof *q);
    if (q == NULL) return ERR_NOMEM;
    q->loop = loop;
    q->clock = clock != NULL ? *clock : clock_real();
    for (int l = 0; l < WORKQ_NLANES; l++) {
        size_t cap = max_running != NULL ? max_running[l] : 0;
        q->lanes[l].max_running = cap > 0 ? cap : workq_default_cap(pool_threads);
    }
    q->max_workers = pool_threads > 0 ? (size_t)pool_threads : 1;
    q->workers = calloc(q->max_workers, sizeof *q->workers);
    q->idle = calloc(q->max_workers, sizeof *q->idle);
    if (q->workers == NULL || q->idle == NULL || uv_mutex_init(&q->pool_mu) != 0) {
        free(q->workers);
        free(q->idle);
        free(q);
        return ERR_NOMEM;
    }
    *out = q;
    return 0;
}

static void close_async(workq_t *q);

void workq_free(workq_t *q)
{
    if (q == NULL) return;
    uv_mutex_lock(&q->pool_mu);
    q->stopping = 1;
    for (size_t i = 0; i < q->nidle; i++)
        uv_cond_signal(&q->idle[i]->wake);
    uv_mutex_unlock(&q->pool_mu);
    for (size_t i = 0; i < q->nworkers; i++) {
        uv_thread_join(&q->workers[i].thread);
        uv_cond_destroy(&q->workers[i].wake);
    }
    if (q->async != NULL) close_async(q); /* jobs left undelivered: the loop frees the handle */
    uv_mutex_destroy(&q->pool_mu);
    free(q->workers);
    free(q->idle);
    free(q);
}

/* ---- the pool ---- */

/* pool_mu held: job is done with status; the loop delivers it. The send is
 * made under the lock, so once the loop took the last job no thread still
 * holds the handle. */
static void pool_done(workq_t *q, workq_job_t *job, int status)
{
    job->status = status;
    fifo_push(&q->done, job);
    uv_async_send(q->async);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    workq_t *q = w->q;
    uv_mutex_lock(&q->pool_mu);
    for (;;) {
        workq_job_t *job = w->job;
        w->job = NULL;
        if (job == NULL && q->pending.head != NULL) job = fifo_pop(&q->pending);
        if (job == NULL) {
            if (q->stopping) break;
            if (!w->idle) { /* not again after a spurious wake: it is still there */
                w->idle = 1;
                q->idle[q->nidle++] = w;
            }
            uv_cond_wait(&w->wake, &q->pool_mu);
            continue;
        }
        job->pooled = WORKQ_TAKEN;
        uv_mutex_unlock(&q->pool_mu);
        job->fn(job);
        uv_mutex_lock(&q->pool_mu);
        pool_done(q, job, 0);
    }
    uv_mutex_unlock(&q->pool_mu);
}

/* pool_mu held: one more thread, which picks up the oldest pending job. */
static int pool_grow(workq_t *q)
{
    worker_t *w = &q->workers[q->nworkers];
    *w = (worker_t){.q = q};
    if (uv_cond_init(&w->wake) != 0) return UV_ENOMEM;
    uv_thread_options_t opt = {.flags = UV_THREAD_HAS_STACK_SIZE, .stack_size = WORKQ_STACK_BYTES};
    int rc = uv_thread_create_ex(&w->thread, &opt, worker_main, w);
    if (rc != 0) {
        uv_cond_destroy(&w->wake);
        return rc;
    }
    q->nworkers++;
    return 0;
}

/* Loop thread, pool_mu held: job to the thread that went idle last (*wake:
 * to be signalled once the lock is let go, so that it does not wake into a
 * held lock), else to the pending FIFO (with a new thread while the pool
 * has room). */
static int pool_hand(workq_t *q, workq_job_t *job, worker_t **wake)
{
    *wake = NULL;
    if (q->nidle > 0) {
        worker_t *w = q->idle[--q->nidle];
        w->idle = 0;
        w->job = job;
        job->pooled = WORKQ_TAKEN;
        *wake = w;
        return 0;
    }
    int rc = q->nworkers < q->max_workers ? pool_grow(q) : 0;
    if (rc != 0 && q->nworkers == 0) return rc; /* no thread would ever run it */
    job->pooled = WORKQ_PENDING;
    fifo_push(&q->pending, job);
    return 0;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void close_async(workq_t *q)
{
    uv_close((uv_handle_t *)q->async, free_handle);
    q->async = NULL;
}

static void deliver(uv_async_t *a);

/* Loop thread: job onto the pool (its handle opened for the first). */
static int pool_submit(workq_t *q, workq_job_t *job)
{
    if (q->async == NULL) {
        uv_async_t *a = malloc(sizeof *a);
        if (a == NULL) return UV_ENOMEM;
        int rc = uv_async_init(q->loop, a, deliver);
        if (rc != 0) {
            free(a);
            return rc;
        }
        a->data = q;
        q->async = a;
    }
    worker_t *wake;
    uv_mutex_lock(&q->pool_mu);
    int rc = pool_hand(q, job, &wake);
    uv_mutex_unlock(&q->pool_mu);
    if (wake != NULL) uv_cond_signal(&wake->wake); /* a spurious wake took the job: harmless */
    if (rc == 0)
        q->on_pool++;
    else if (q->on_pool == 0)
        close_async(q);
    return rc;
}

static void job_after(workq_job_t *job, int status);

/* Loop thread: the jobs done since the last call, in the order they ended;
 * the handle closes when none is left on the pool. */
static void deliver(uv_async_t *a)
{
    workq_t *q = a->data;
    uv_mutex_lock(&q->pool_mu);
    workq_job_t *job = q->done.head;
    q->done = (fifo_t){NULL, NULL};
    uv_mutex_unlock(&q->pool_mu);
    while (job != NULL) {
        workq_job_t *next = job->next;
        q->on_pool--;
        job->pooled = WORKQ_OFF_POOL;
        job_after(job, job->status); /* may submit more (and free job) */
        job = next;
    }
    if (q->on_pool == 0 && q->async != NULL) close_async(q);
}

/* ---- the lanes ---- */

static void run_next(workq_t *q, lane_t *l);

static void job_after(workq_job_t *job, int status)
{
    workq_t *q = job->q;
    lane_t *l = &q->lanes[job->lane];
    l->running--;
    job->done(job, status); /* may submit (and free job): nothing of it is read after */
    run_next(q, l);
}

static int start(workq_t *q, lane_t *l, workq_job_t *job)
{
    int rc = pool_submit(q, job);
    if (rc == 0) {
        l->running++;
        l->started++;
    }
    return rc;
}

static int past_deadline(const workq_t *q, const workq_job_t *job)
{
    return job->deadline_unix_ms != 0 && (uint64_t)clock_wall_ms(&q->clock) > job->deadline_unix_ms;
}

/* Starts waiting jobs while the lane has room; drops those past their
 * deadline (and one the pool cannot take: out of memory or threads). */
static void run_next(workq_t *q, lane_t *l)
{
    while (l->wait.head != NULL && l->running < l->max_running) {
        workq_job_t *job = fifo_pop(&l->wait);
        l->waiting--;
        job->waiting = 0;
        if (past_deadline(q, job)) {
            l->cancelled++;
            job->done(job, UV_ECANCELED);
        } else if (start(q, l, job) != 0) {
            job->done(job, UV_ECANCELED);
        }
    }
}

int workq_submit(workq_t *q, workq_lane_t lane, workq_job_t *job, workq_fn fn, workq_done_fn done)
{
    lane_t *l = &q->lanes[lane];
    job->q = q;
    job->fn = fn;
    job->done = done;
    job->lane = lane;
    job->next = NULL;
    job->waiting = 0;
    job->pooled = WORKQ_OFF_POOL;
    job->status = 0;
    if (l->running < l->max_running && l->wait.head == NULL) return start(q, l, job);
    fifo_push(&l->wait, job);
    l->waiting++;
    job->waiting = 1;
    return 0;
}

int workq_cancel(workq_job_t *job)
{
    workq_t *q = job->q;
    lane_t *l = &q->lanes[job->lane];
    if (!job->waiting) {
        int rc = UV_EBUSY;
        uv_mutex_lock(&q->pool_mu);
        if (job->pooled == WORKQ_PENDING) { /* not picked up: out of the pending FIFO */
            fifo_remove(&q->pending, job);
            job->pooled = WORKQ_TAKEN;
            pool_done(q, job, UV_ECANCELED);
            rc = 0;
        }
        uv_mutex_unlock(&q->pool_mu);
        if (rc == 0) l->cancelled++;
        return rc;
    }
    fifo_remove(&l->wait, job);
    l->waiting--;
    l->cancelled++;
    job->waiting = 0;
    job->done(job, UV_ECANCELED);
    return 0;
}

void workq_stats(const workq_t *q, workq_stats_t *out)
{
    for (int i = 0; i < WORKQ_NLANES; i++) {
        const lane_t *l = &q->lanes[i];
        out->running[i] = l->running;
        out->waiting[i] = l->waiting;
        out->started[i] = l->started;
        out->cancelled[i] = l->cancelled;
        out->max_running[i] = l->max_running;
    }
}

int workq_stats_render(const void *stats, buf_t *out)
{
    static const char *lane_names[WORKQ_NLANES] = {"write", "query"};
    const workq_stats_t *st = stats;
    const struct {
        const char *name, *type, *help;
        const uint64_t *v;
    } fam[] = {
        {"flamedb_pool_jobs_running", "gauge", "Thread-pool jobs running, by lane.", st->running},
        {"flamedb_pool_jobs_waiting", "gauge", "Jobs waiting for their lane, by lane.",
         st->waiting},
        {"flamedb_pool_jobs_max", "gauge",
         "Jobs a lane may run at once (max-write-jobs, "
         "max-query-jobs).",
         st->max_running},
        {"flamedb_pool_jobs_started_total", "counter", "Jobs started, by lane.", st->started},
        {"flamedb_pool_jobs_cancelled_total", "counter",
         "Jobs dropped unstarted at their deadline or cancelled, by lane.", st->cancelled},
    };
    int rc = 0;
    for (size_t f = 0; rc == 0 && f < sizeof fam / sizeof fam[0]; f++) {
        rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                        fam[f].type);
        for (int l = 0; rc == 0 && l < WORKQ_NLANES; l++)
            rc = buf_printf(out, "%s{lane=\"%s\"} %llu\n", fam[f].name, lane_names[l],
                            (unsigned long long)fam[f].v[l]);
    }
    return rc;
}
