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
 * Threads: assist_start and assist_join on the job's thread, in pairs
 * (every started part is joined before its task is reused or freed); the
 * part's fn on a helper or on the joiner. Ownership: the caller owns each
 * assist_task_t; assist_free joins the helpers (no part may be running).
 */
#ifndef FLAMEDB_COMMON_ASSIST_H
#define FLAMEDB_COMMON_ASSIST_H

typedef struct assist assist_t;
typedef struct assist_task assist_task_t;

struct assist_task {
    void (*fn)(void *arg);
    void *arg;
    /* the helpers' */
    int here; /* 1: no helper took it (the job's thread alone reads it) */
    int done; /* a helper ran it (under the helpers' mutex) */
};

/* threads helpers, started now (0: none; at most ASSIST_MAX_THREADS). */
#define ASSIST_MAX_THREADS 64
int assist_new(int threads, assist_t **out);
void assist_free(assist_t *a);

/* Offers fn(arg) to an idle helper of a (NULL: none); returns at once. */
void assist_start(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg);
/* Returns once t's part ran: on the helper that took it, or here now. */
void assist_join(assist_t *a, assist_task_t *t);

/* Parts taken by a helper, and run by their joiner for want of one (for
 * /metrics). */
typedef struct assist_stats {
    unsigned long long helped, inline_;
} assist_stats_t;
void assist_stats(assist_t *a, assist_stats_t *out);

#endif
