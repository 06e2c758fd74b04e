/* assist.h — helper threads that run one part of a job beside the thread
 * doing the rest (a render's timeline beside its tree).
 *
 * A job offers a part with assist_start and goes on with its own work;
 * assist_join returns once the part ran. A part is taken only by a helper
 * that is idle at that moment: when every helper is busy (other jobs' parts,
 * a loaded node) nothing waits in a queue, and assist_join runs the part on
 * the joining thread itself. So a part never waits for a thread, a job
 * never takes more than its own thread plus what is idle, and with no
 * helper (threads 0, or a NULL assist) every part runs where it is joined,
 * as if the job had none.
 *
 * A sleeping thread takes tens of microseconds to run again once woken
 * (about 70 on the benchmark's virtual machine), as long as a short part
 * itself. A job that knows a part will come can take a helper ahead
 * (assist_reserve) and give the part later (assist_give): the helper wakes
 * meanwhile and waits for it spinning, for at most ASSIST_SPIN_NS before
 * it sleeps; a joiner spins as long for its part to end before it sleeps,
 * yielding its CPU every few microseconds (the helper may be waiting for it).
 * Every wait but a lingering helper's ends its spin, and sleeps, as soon
 * as a yield shows that another thread wanted the CPU (ASSIST_BUSY_NS): on
 * a machine with more runnable threads than CPUs (a busy neighbour
 * process), a thread spinning for a helper that waits for a CPU only
 * delays it (the benchmark's render took 2.4 ms instead of 0.9 beside one
 * CPU-bound process on 2 cores, 1.4 with the spins cut short).
 *
 * Threads: assist_start (or assist_reserve, then assist_give) and
 * assist_join on the job's thread, in pairs (every started part is joined
 * before its task is reused or freed); the part's fn on a helper or on the
 * joiner. Ownership: the caller owns each assist_task_t; assist_free joins
 * the helpers (no part may be running, nor a helper reserved).
 */
#ifndef FLAMEDB_COMMON_ASSIST_H
#define FLAMEDB_COMMON_ASSIST_H

#include <stdatomic.h>

typedef struct assist assist_t;
typedef struct assist_task assist_task_t;

struct assist_task {
    void (*fn)(void *arg); /* NULL: nothing (a reserved helper let go) */
    void *arg;
    /* the helpers' */
    void *helper;       /* the helper reserved for it, or NULL */
    int here;           /* 1: no helper took it (the job's thread alone reads it) */
    _Atomic int posted; /* its part was given (written under the helpers' mutex) */
    _Atomic int done;   /* a helper ran it (written under the helpers' mutex) */
    int last;           /* assist_start_last: its helper sleeps once idle */
};

/* The longest a reserved helper spins for its part, and a joiner for its
 * part to end, before sleeping. */
#define ASSIST_SPIN_NS 500000
/* A spinning waiter's yield that returns this late (another thread ran on
 * its CPU meanwhile: the machine is oversubscribed) ends its spin: it
 * sleeps instead, leaving the CPU to the threads that want it (among them,
 * perhaps, the one it waits for). Back to back a yield returns within a
 * few microseconds. */
#define ASSIST_BUSY_NS 200000
/* The longest a helper that ran a part waits awake for the next one (a
 * job's parts come a few hundred microseconds apart) before sleeping. It
 * yields its CPU every few microseconds meanwhile: a thread woken there
 * (the event loop sending the answer of the job just done) runs at once. */
#define ASSIST_LINGER_NS 250000

/* threads helpers, started now (0: none; at most ASSIST_MAX_THREADS). */
#define ASSIST_MAX_THREADS 64
int assist_new(int threads, assist_t **out);
void assist_free(assist_t *a);

/* A job that will offer parts soon (tens of microseconds on) wakes the
 * idle helper that would take the first: one asleep waits awake again for
 * up to ASSIST_LINGER_NS, so it runs the part at once instead of some 70
 * microseconds after it is offered. Nothing is reserved: a part of another
 * job may take it first. */
void assist_wake(assist_t *a);

/* Offers fn(arg) to an idle helper of a (NULL: none); returns at once. */
void assist_start(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg);
/* assist_start for the last part of a job after which no part comes soon
 * (a share answered to another node): the helper that runs it sleeps once
 * idle instead of waiting awake up to ASSIST_LINGER_NS for a next, which
 * would only burn a CPU (assist_wake still wakes it). */
void assist_start_last(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg);
/* Takes an idle helper of a (NULL: none) for t's part, given later by
 * assist_give; returns at once. With none idle, assist_give looks again. */
void assist_reserve(assist_t *a, assist_task_t *t);
/* t's part, after assist_reserve(a, t): fn(arg) (fn NULL: none, which
 * lets the helper go; still joined). */
void assist_give(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg);
/* Returns once t's part ran: on the helper that took it, or here now;
 * also here when the helper it was handed to is still asleep (signalled,
 * not yet back on a CPU: tens of microseconds, more on a busy machine),
 * which then goes idle again instead of being waited for. */
void assist_join(assist_t *a, assist_task_t *t);

/* 1 when a helper took t (assist_start or assist_reserve found one idle):
 * its part runs beside the job, which may then wait on it mid-way
 * (assist_flag_t); 0 when it runs only at assist_join. */
int assist_taken(const assist_task_t *t);

/* A word a part and its job signal each other by, mid-way (the part waits
 * for something the job makes, or the job for the part): set once to a
 * non-zero value; a waiter spins for it (yielding) up to ASSIST_SPIN_NS, or
 * until a busy CPU ends the spin (ASSIST_BUSY_NS), then sleeps
 * (a futex). Only between a job and a part a helper took (assist_taken):
 * a part run by its joiner would wait for a job that waits for it. */
typedef struct assist_flag {
    _Atomic int v, sleepers;
    _Atomic int busy; /* waits whose spin a busy CPU ended (ASSIST_BUSY_NS) */
} assist_flag_t;
void assist_flag_init(assist_flag_t *f);
void assist_flag_set(assist_flag_t *f, int v);
/* The value once set. */
int assist_flag_wait(assist_flag_t *f);

/* Parts taken by a helper, and run by their joiner for want of one, the
 * helpers assist_wake woke, those that went to sleep at once after a
 * job's last part (assist_start_last), and the spins a busy CPU ended (for
 * /metrics: many say the machine has more runnable threads than CPUs). */
typedef struct assist_stats {
    unsigned long long helped, inline_;
    unsigned long long busy;   /* joins' and handed helpers' spins a busy CPU ended (a flag
                                  wait counts in its assist_flag_t) */
    unsigned long long woken;  /* helpers asleep that assist_wake woke */
    unsigned long long rested; /* helpers asleep at once after a last part */
} assist_stats_t;
void assist_stats(assist_t *a, assist_stats_t *out);

#endif
