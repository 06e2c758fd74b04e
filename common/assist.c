/* assist.c — helper threads for parts of a job (assist.h). One mutex holds
 * the idle helpers (a stack: the one that went idle last takes the next
 * part, whose caches are the warmest) and each part's state; a helper
 * sleeps on its own condition variable, a joiner on the shared one. A
 * part's posted and done flags are also read spinning, without the mutex. */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/assist.h"
#include "common/err.h"

typedef struct helper {
    assist_t *a;
    pthread_t thread;
    pthread_cond_t wake;
    assist_task_t *task; /* handed to it while idle */
    _Atomic int handed;  /* task set (under the mutex), read spinning without it */
    int idle;            /* on the idle stack */
    int asleep;          /* waiting on wake, not spinning (under the mutex) */
    int rewake;          /* assist_wake: wait awake again (under the mutex) */
    int started;
} helper_t;

struct assist {
    pthread_mutex_t mu;
    pthread_cond_t done; /* a helper finished a part */
    helper_t *h;
    int n;
    helper_t **idle; /* stack of idle helpers */
    int nidle;
    int stop;
    unsigned long long helped, here, woken, rested, busy;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How a spin ended. */
#define SPIN_SET 1
#define SPIN_TIMEOUT 0
#define SPIN_BUSY (-1)

/* How a spin waits: SPIN_YIELD yields its CPU every few microseconds (a
 * thread woken on this CPU meanwhile runs at once, not when the spin ends:
 * a system call every few microseconds, about 1 us later to see the
 * flag); SPIN_YIELD_UNTIL_BUSY also ends at a busy CPU (SPIN_BUSY). */
#define SPIN_YIELD 1
#define SPIN_YIELD_UNTIL_BUSY 2

/* SPIN_SET once *flag is set, SPIN_TIMEOUT after ns without; waiting as
 * mode says. With SPIN_YIELD_UNTIL_BUSY a yield after which this thread
 * ran again only ASSIST_BUSY_NS later or more ends the spin at once
 * (SPIN_BUSY): another thread held this CPU that long, so the machine has
 * more runnable threads than CPUs; the thread that sets the flag may be
 * one waiting for a CPU, and a sleeping waiter is woken by a context
 * switch there, not an idle CPU's wakeup. */
static int spin_ns(_Atomic int *flag, int64_t ns, int mode)
{
    int64_t until = 0, last = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(flag, memory_order_acquire)) return SPIN_SET;
        cpu_relax();
        if ((i & 63) != 0) continue;
        sched_yield();
        int64_t now = now_ns();
        if (until == 0) until = now + ns;
        if (mode == SPIN_YIELD_UNTIL_BUSY && last != 0 && now - last >= ASSIST_BUSY_NS)
            return SPIN_BUSY;
        if (now > until) return SPIN_TIMEOUT;
        last = now;
    }
}

/* spin_ns for ASSIST_SPIN_NS, yielding; a spin ended by a busy CPU
 * counted in a (under its mutex). 1 when the flag was set. */
static int spin_for(assist_t *a, _Atomic int *flag)
{
    int r = spin_ns(flag, ASSIST_SPIN_NS, SPIN_YIELD_UNTIL_BUSY);
    if (r == SPIN_BUSY && a != NULL) {
        pthread_mutex_lock(&a->mu);
        a->busy++;
        pthread_mutex_unlock(&a->mu);
    }
    return r == SPIN_SET;
}

/* Runs t's part once it is given (at once unless t was reserved). */
static void run_part(helper_t *h, assist_task_t *t)
{
    assist_t *a = h->a;
    if (!spin_for(a, &t->posted)) {
        pthread_mutex_lock(&a->mu);
        while (!atomic_load_explicit(&t->posted, memory_order_acquire))
            pthread_cond_wait(&h->wake, &a->mu);
        pthread_mutex_unlock(&a->mu);
    }
    if (t->fn != NULL) t->fn(t->arg);
}

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    assist_t *a = h->a;
    pthread_mutex_lock(&a->mu);
    for (int rest = 0;;) {
        for (int lingered = rest; h->task == NULL && !a->stop;) {
            if (!h->idle) { /* once: a wakeup without a part finds it there still */
                h->idle = 1;
                a->idle[a->nidle++] = h;
            }
            if (h->rewake) lingered = h->rewake = rest = 0; /* a part is coming: awake again */
            if (!lingered++) { /* a job's next part often comes soon: wait awake first */
                /* not ended by a busy CPU: the thread it yields to is most
                 * often the event loop sending the answer of the job just
                 * done, and the linger is short anyway */
                pthread_mutex_unlock(&a->mu);
                spin_ns(&h->handed, ASSIST_LINGER_NS, SPIN_YIELD);
                pthread_mutex_lock(&a->mu);
                continue;
            }
            if (rest) { /* after a job's last part: asleep at once */
                a->rested++;
                rest = 0;
            }
            h->asleep = 1;
            pthread_cond_wait(&h->wake, &a->mu);
            h->asleep = 0;
        }
        if (h->task == NULL) break; /* stopping (it left the idle stack) */
        assist_task_t *t = h->task;
        h->task = NULL;
        h->rewake = 0; /* the part it was woken for: not one more after it */
        atomic_store(&h->handed, 0);
        pthread_mutex_unlock(&a->mu);
        run_part(h, t);
        rest = t->last; /* read before done: the joiner may reuse t then */
        pthread_mutex_lock(&a->mu);
        atomic_store_explicit(&t->done, 1, memory_order_release);
        pthread_cond_broadcast(&a->done);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int assist_new(int threads, assist_t **out)
{
    *out = NULL;
    if (threads < 0 || threads > ASSIST_MAX_THREADS) return ERR_INVALID_ARGUMENT;
    assist_t *a = calloc(1, sizeof *a);
    if (a == NULL) return ERR_NOMEM;
    a->h = calloc((size_t)(threads ? threads : 1), sizeof *a->h);
    a->idle = calloc((size_t)(threads ? threads : 1), sizeof *a->idle);
    int mu = a->h && a->idle && pthread_mutex_init(&a->mu, NULL) == 0;
    if (!mu || pthread_cond_init(&a->done, NULL) != 0) {
        if (mu) pthread_mutex_destroy(&a->mu);
        free(a->h);
        free(a->idle);
        free(a);
        return ERR_NOMEM;
    }
    int rc = ERR_OK;
    for (int i = 0; i < threads && rc == ERR_OK; i++) {
        helper_t *h = &a->h[i];
        h->a = a;
        if (pthread_cond_init(&h->wake, NULL) != 0) {
            rc = ERR_NOMEM;
            break;
        }
        a->n = i + 1; /* assist_free destroys the first n helpers' conditions */
        h->started = pthread_create(&h->thread, NULL, helper_main, h) == 0;
        if (!h->started) rc = ERR_NOMEM;
    }
    if (rc != ERR_OK) {
        assist_free(a);
        return rc;
    }
    *out = a;
    return ERR_OK;
}

void assist_free(assist_t *a)
{
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    for (int i = 0; i < a->n; i++)
        pthread_cond_signal(&a->h[i].wake);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->n; i++) {
        if (a->h[i].started) pthread_join(a->h[i].thread, NULL);
        pthread_cond_destroy(&a->h[i].wake);
    }
    pthread_cond_destroy(&a->done);
    pthread_mutex_destroy(&a->mu);
    free(a->h);
    free(a->idle);
    free(a);
}

/* Hands t to an idle helper, if one is; counts the part (count: given, not
 * only reserved) as helped or run by its joiner. */
static void take_helper(assist_t *a, assist_task_t *t, int count)
{
    pthread_mutex_lock(&a->mu);
    helper_t *h = a->nidle > 0 && !a->stop ? a->idle[--a->nidle] : NULL;
    if (h != NULL) {
        h->idle = 0;
        h->task = t;
        atomic_store(&h->handed, 1);
        t->here = 0;
        t->helper = h;
    }
    if (count && h != NULL) a->helped++;
    if (count && h == NULL) a->here++;
    pthread_mutex_unlock(&a->mu);
    if (h != NULL) pthread_cond_signal(&h->wake);
}

/* t's part, given (posted) or to be given, offered to an idle helper of a. */
static void task_offer(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg, int posted,
                       int last)
{
    t->fn = fn;
    t->arg = arg;
    t->last = last;
    t->helper = NULL;
    t->here = 1;
    atomic_init(&t->posted, posted);
    atomic_init(&t->done, 0);
    if (a != NULL) take_helper(a, t, posted);
}

void assist_wake(assist_t *a)
{
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    helper_t *h = a->nidle > 0 && !a->stop ? a->idle[a->nidle - 1] : NULL; /* the next taken */
    int wake = h != NULL && h->asleep && !h->rewake;
    if (wake) h->rewake = 1;
    a->woken += (unsigned long long)wake;
    pthread_mutex_unlock(&a->mu);
    if (wake) pthread_cond_signal(&h->wake);
}

void assist_start(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg)
{
    task_offer(a, t, fn, arg, 1, 0);
}

void assist_start_last(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg)
{
    task_offer(a, t, fn, arg, 1, 1);
}

void assist_reserve(assist_t *a, assist_task_t *t)
{
    task_offer(a, t, NULL, NULL, 0, 0);
}

void assist_give(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    helper_t *h = t->helper;
    if (h == NULL) { /* none was idle then: perhaps one is now */
        atomic_store_explicit(&t->posted, 1, memory_order_release);
        if (a != NULL && fn != NULL) take_helper(a, t, 1);
        return;
    }
    pthread_mutex_lock(&a->mu); /* a helper done spinning checks it under the mutex */
    atomic_store_explicit(&t->posted, 1, memory_order_release);
    if (fn != NULL) a->helped++;
    pthread_mutex_unlock(&a->mu);
    pthread_cond_signal(&h->wake);
}

/* t handed to a helper still asleep (signalled, not yet back on a CPU):
 * taken back (t->here set), its part to run here and counted so. The
 * helper finds nothing handed and goes idle again. One awake (waiting for
 * a part, spinning) picks it up at once: waited for. */
static void take_back(assist_t *a, assist_task_t *t)
{
    helper_t *h = t->helper;
    pthread_mutex_lock(&a->mu);
    int back = h != NULL && h->task == t && h->asleep;
    if (back) {
        h->task = NULL;
        atomic_store(&h->handed, 0);
        t->here = 1;
        if (t->fn != NULL) { /* counted as helped when given */
            a->helped--;
            a->here++;
        }
    }
    pthread_mutex_unlock(&a->mu);
}

void assist_join(assist_t *a, assist_task_t *t)
{
    if (!t->here && !atomic_load_explicit(&t->done, memory_order_acquire)) take_back(a, t);
    if (t->here) {
        if (t->fn != NULL) t->fn(t->arg);
        return;
    }
    /* yielding: with more runnable threads than CPUs (nodes sharing a
     * machine) the part's own helper may be waiting for this CPU; spinning
     * without a yield, a coordinator's share took 0.49-0.52 ms instead of
     * 0.72-0.74 (3 nodes on 2 cores); one node alone is unchanged */
    if (spin_for(a, &t->done)) return;
    pthread_mutex_lock(&a->mu);
    while (!atomic_load_explicit(&t->done, memory_order_acquire))
        pthread_cond_wait(&a->done, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

int assist_taken(const assist_task_t *t)
{
    return !t->here;
}

void assist_flag_init(assist_flag_t *f)
{
    atomic_init(&f->v, 0);
    atomic_init(&f->sleepers, 0);
    atomic_init(&f->busy, 0);
}

void assist_flag_set(assist_flag_t *f, int v)
{
    atomic_store(&f->v, v); /* then sleepers read: a waiter that went to sleep is seen */
    if (atomic_load(&f->sleepers) > 0)
        syscall(SYS_futex, (int *)&f->v, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

int assist_flag_wait(assist_flag_t *f)
{
    int r = spin_ns(&f->v, ASSIST_SPIN_NS, SPIN_YIELD_UNTIL_BUSY);
    if (r != SPIN_SET) {
        if (r == SPIN_BUSY) atomic_fetch_add(&f->busy, 1);
        atomic_fetch_add(&f->sleepers, 1); /* then v read: a set after it wakes this */
        while (atomic_load(&f->v) == 0)
            syscall(SYS_futex, (int *)&f->v, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        atomic_fetch_sub(&f->sleepers, 1);
    }
    return atomic_load_explicit(&f->v, memory_order_acquire);
}

void assist_stats(assist_t *a, assist_stats_t *out)
{
    out->helped = out->inline_ = out->woken = out->rested = out->busy = 0;
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    out->helped = a->helped;
    out->inline_ = a->here;
    out->woken = a->woken;
    out->rested = a->rested;
    out->busy = a->busy;
    pthread_mutex_unlock(&a->mu);
}
