/* workq.h — the node's thread-pool work, in lanes that cannot starve each
 * other, on a pool whose most recently idle thread takes the next job.
 *
 * Every job of the node runs on one workq's pool (worker-threads threads,
 * started as jobs first need them). Without lanes, a few slow queries can
 * hold every thread while pushes and replica writes wait behind them (and
 * time out as 503s), or a flood of pushes can keep queries from ever
 * starting. A workq caps the jobs each lane has on the pool at once (by
 * default the pool minus a quarter, so the other lane always has a thread);
 * jobs over the cap wait in the lane's FIFO on the loop thread and start as
 * earlier ones finish. A waiting job whose deadline has passed is not run:
 * its done callback gets UV_ECANCELED, and the caller answers "cancelled" (a
 * query share then counts as missing, making the answer partial).
 * workq_cancel drops a job that has not started yet the same way (a query
 * whose client went away).
 *
 * The pool hands a job to the thread that went idle last (libuv's own pool
 * wakes its threads in turn): one render after another runs on one thread,
 * whose core's caches and malloc arena still hold what the last one used,
 * instead of on each of the pool's threads in turn. The others sleep.
 *
 * Threads: workq_submit, workq_cancel and every done callback on the loop
 * thread; the work callback on a pool thread. While jobs are on the pool the
 * workq holds a handle on the loop (so uv_run goes on until they are done),
 * closed when the last one is done. Ownership: the caller owns each
 * workq_job_t (usually embedded in its job struct) until its done callback
 * ran; the workq is freed with workq_free after the loop ran out of work
 * (it joins its threads).
 */
#ifndef FLAMEDB_COMMON_WORKQ_H
#define FLAMEDB_COMMON_WORKQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"

typedef enum workq_lane {
    WORKQ_WRITE, /* pushes, replica writes, hints, /metrics */
    WORKQ_QUERY, /* scatter-gather shares, merges, answers */
    WORKQ_NLANES
} workq_lane_t;

typedef struct workq workq_t;
typedef struct workq_job workq_job_t;

typedef void (*workq_fn)(workq_job_t *job);                  /* pool thread */
typedef void (*workq_done_fn)(workq_job_t *job, int status); /* loop thread; 0 or UV_ECANCELED */

/* Where a job stands with the pool (workq_job_t.pooled). */
enum { WORKQ_OFF_POOL, WORKQ_PENDING, WORKQ_TAKEN };

struct workq_job {
    void *data;                /* the caller's */
    uint64_t deadline_unix_ms; /* not started by then: not run (0 = none) */
    /* the workq's */
    workq_t *q;
    workq_fn fn;
    workq_done_fn done;
    workq_job_t *next;
    workq_lane_t lane;
    int waiting; /* in the lane's FIFO */
    int pooled;  /* WORKQ_OFF_POOL, WORKQ_PENDING (handed over, no thread yet), WORKQ_TAKEN */
    int status;  /* for done: 0, or UV_ECANCELED when cancelled on the pool */
};

typedef struct workq_stats {
    uint64_t running[WORKQ_NLANES];   /* on the pool now */
    uint64_t waiting[WORKQ_NLANES];   /* in the lane's FIFO now */
    uint64_t started[WORKQ_NLANES];   /* total */
    uint64_t cancelled[WORKQ_NLANES]; /* dropped at their deadline or cancelled, total */
    uint64_t max_running[WORKQ_NLANES];
} workq_stats_t;

/* The cap of each lane when none is given: the pool minus a quarter (at
 * least one thread left to the other lane), and at least 1. */
size_t workq_default_cap(int pool_threads);

/* A workq on loop; max_running[lane] caps each lane (0: the default for
 * pool_threads). clock (borrowed) reads deadlines; NULL: the real clock. */
int workq_new(uv_loop_t *loop, int pool_threads, const size_t max_running[WORKQ_NLANES],
              const clock_source_t *clock, workq_t **out);
void workq_free(workq_t *q);

/* Runs fn(job) on the pool when the lane has room, then done(job, status) on
 * the loop. job->data and job->deadline_unix_ms are set by the caller before.
 * Returns 0, or a libuv error when the pool could not take the job (no
 * handle or no thread could be made; done not called). */
int workq_submit(workq_t *q, workq_lane_t lane, workq_job_t *job, workq_fn fn, workq_done_fn done);

/* Loop thread: drops a job submitted and not started. One waiting in its
 * lane gets done(job, UV_ECANCELED) before this returns; one already handed
 * to the pool but not picked up by a thread gets it later, from the loop.
 * Returns 0 then, or UV_EBUSY when the job runs or ran (done follows as
 * usual). */
int workq_cancel(workq_job_t *job);

void workq_stats(const workq_t *q, workq_stats_t *out);

/* metrics_render_fn over a workq_stats_t: the flamedb_pool_jobs_* families
 * by lane (running, waiting, max, started, cancelled). */
int workq_stats_render(const void *stats, buf_t *out);

#endif
