/* workq.c — lanes over libuv's thread pool (workq.h). Everything but the
 * work callback runs on the loop thread, so the lanes need no lock. */
#include <stdlib.h>

#include "common/err.h"
#include "common/workq.h"

typedef struct lane {
    workq_job_t *head, *tail; /* waiting, oldest first */
    size_t running, max_running;
    uint64_t waiting, started, cancelled;
} lane_t;

struct workq {
    uv_loop_t *loop;
    clock_source_t clock;
    lane_t lanes[WORKQ_NLANES];
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
    *out = q;
    return 0;
}

void workq_free(workq_t *q)
{
    free(q);
}

static void run_next(workq_t *q, lane_t *l);

static void job_work(uv_work_t *w)
{
    workq_job_t *job = w->data;
    job->fn(job);
}

static void job_after(uv_work_t *w, int status)
{
    workq_job_t *job = w->data;
    workq_t *q = job->q;
    lane_t *l = &q->lanes[job->lane];
    l->running--;
    job->done(job, status); /* may submit (and free job): nothing of it is read after */
    run_next(q, l);
}

static int start(workq_t *q, lane_t *l, workq_job_t *job)
{
    job->work.data = job;
    int rc = uv_queue_work(q->loop, &job->work, job_work, job_after);
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
 * deadline (and one the pool refuses, which cannot happen once the loop
 * runs: libuv only refuses a NULL callback). */
static void run_next(workq_t *q, lane_t *l)
{
    while (l->head != NULL && l->running < l->max_running) {
        workq_job_t *job = l->head;
        l->head = job->next;
        if (l->head == NULL) l->tail = NULL;
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
    if (l->running < l->max_running && l->head == NULL) return start(q, l, job);
    if (l->tail != NULL)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
    l->waiting++;
    job->waiting = 1;
    return 0;
}

int workq_cancel(workq_job_t *job)
{
    lane_t *l = &job->q->lanes[job->lane];
    if (!job->waiting) {
        int rc = uv_cancel((uv_req_t *)&job->work);
        if (rc == 0) l->cancelled++;
        return rc == 0 ? 0 : UV_EBUSY;
    }
    workq_job_t **p = &l->head, *prev = NULL;
    while (*p != job) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = job->next;
    if (l->tail == job) l->tail = prev;
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
