/* sampler_timers.h — one CPU-time timer per thread of the process for the
 * in-process sampler (flamedb_sampler.h): each raises the signal in its own
 * thread every period of that thread's CPU time (timer_create on the thread's
 * CPU clock, SIGEV_THREAD_ID), so a sample always lands on the thread that
 * used the CPU. The thread list is read from /proc/self/task by
 * flamedb_sampler_timers_scan(), which arms threads that appeared since the
 * last scan and deletes the timers of threads that ended. A thread found
 * after the first scan started after it: its timer's first expiry is at one
 * period of the thread's CPU time (absolute), so the CPU time it used before
 * the scan armed it is counted (as overruns) in its first sample, taken at once.
 *
 * Ownership: the set is owned by its creator and used from one thread at a
 * time; flamedb_sampler_timers_free() deletes every timer.
 */
#ifndef FLAMEDB_CLIENT_SAMPLER_TIMERS_H
#define FLAMEDB_CLIENT_SAMPLER_TIMERS_H

#include <sys/types.h>

typedef struct flamedb_sampler_timers flamedb_sampler_timers_t;

/* NULL when out of memory. */
flamedb_sampler_timers_t *flamedb_sampler_timers_new(long period_ns, int signo);
/* Arms every thread but skip_tid (0: none) that has no timer yet and deletes
 * the timers of threads gone. 0, or -1 (errno set) when /proc/self/task cannot
 * be read or memory ran out; a thread that ends while it is armed is skipped. */
int flamedb_sampler_timers_scan(flamedb_sampler_timers_t *t, pid_t skip_tid);
/* Threads with a timer. */
size_t flamedb_sampler_timers_count(const flamedb_sampler_timers_t *t);
void flamedb_sampler_timers_free(flamedb_sampler_timers_t *t);

#endif
