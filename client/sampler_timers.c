/* sampler_timers.c — per-thread CPU-time timers, threads from /proc/self/task. */
#define _GNU_SOURCE
#include "client/sampler_timers.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct thread_timer {
    pid_t tid;
    timer_t timer;
    int seen; /* in the scan under way */
} thread_timer_t;

struct flamedb_sampler_timers {
    thread_timer_t *v;
    size_t n, cap;
    long period_ns;
    int signo;
    int scanned; /* a scan ran: threads found from now on started after it */
};

flamedb_sampler_timers_t *flamedb_sampler_timers_new(long period_ns, int signo)
{
    flamedb_sampler_timers_t *t = calloc(1, sizeof *t);
    if (t) t->period_ns = period_ns, t->signo = signo;
    return t;
}

/* The CPU clock of any thread of the process (what pthread_getcpuclockid
 * computes for a pthread: the kernel's per-thread CPUCLOCK_SCHED id). */
static clockid_t thread_clock(pid_t tid)
{
    return (clockid_t)((~(unsigned)tid << 3) | 6);
}

static int arm(flamedb_sampler_timers_t *t, pid_t tid)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        thread_timer_t *v = realloc(t->v, cap * sizeof *v);
        if (!v) return -1;
        t->v = v, t->cap = cap;
    }
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = t->signo;
    ev._sigev_un._tid = tid;
    thread_timer_t *e = &t->v[t->n];
    if (timer_create(thread_clock(tid), &ev, &e->timer)) return 0; /* ended meanwhile */
    struct itimerspec its = {{t->period_ns / 1000000000L, t->period_ns % 1000000000L},
                             {t->period_ns / 1000000000L, t->period_ns % 1000000000L}};
    /* A thread that started after the first scan has used CPU since its
     * start, before this timer: the first expiry is absolute, at one period
     * of its CPU time, so when that is past the timer fires at once and
     * si_overrun counts the periods before it (that CPU time is counted in
     * the first sample, under the stack the thread is in then). The threads
     * of the first scan count from now on. */
    int flags = t->scanned ? TIMER_ABSTIME : 0;
    if (timer_settime(e->timer, flags, &its, NULL)) {
        timer_delete(e->timer);
        return 0;
    }
    e->tid = tid;
    e->seen = 1;
    t->n++;
    return 0;
}

static int by_tid(const void *a, const void *b)
{
    pid_t x = ((const thread_timer_t *)a)->tid, y = ((const thread_timer_t *)b)->tid;
    return (x > y) - (x < y);
}

/* The timer of tid among the first `sorted` entries (sorted by tid). */
static thread_timer_t *find(flamedb_sampler_timers_t *t, size_t sorted, pid_t tid)
{
    thread_timer_t key = {.tid = tid};
    if (sorted == 0) return NULL; /* v may still be NULL */
    return bsearch(&key, t->v, sorted, sizeof key, by_tid);
}

int flamedb_sampler_timers_scan(flamedb_sampler_timers_t *t, pid_t skip_tid)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    for (size_t i = 0; i < t->n; i++)
        t->v[i].seen = 0;
    size_t sorted = t->n; /* threads armed by this scan are appended after */
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(de->d_name);
        if (tid <= 0 || tid == skip_tid) continue;
        thread_timer_t *e = find(t, sorted, tid);
        if (e)
            e->seen = 1;
        else
            rc = arm(t, tid);
    }
    int saved = errno;
    closedir(d);
    for (size_t i = 0; i < t->n;) { /* threads gone: delete, move the last one in */
        if (t->v[i].seen) {
            i++;
            continue;
        }
        timer_delete(t->v[i].timer);
        t->v[i] = t->v[--t->n];
    }
    if (t->n > 1) qsort(t->v, t->n, sizeof *t->v, by_tid);
    t->scanned = 1;
    errno = saved;
    return rc;
}

size_t flamedb_sampler_timers_count(const flamedb_sampler_timers_t *t)
{
    return t->n;
}

void flamedb_sampler_timers_free(flamedb_sampler_timers_t *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++)
        timer_delete(t->v[i].timer);
    free(t->v);
    free(t);
}
