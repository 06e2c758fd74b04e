/* sampler.c — flamedb_sampler_*: SIGPROF on per-thread CPU clocks, stacks
 * by libunwind into the ring, a thread that aggregates and pushes pprof.
 *
 * The signal handler has no argument, so the running sampler is reached
 * through one process-wide pointer (`active`); `in_handler` counts handlers
 * still running so stop frees nothing they may touch.
 */
#define _GNU_SOURCE
#include "client/flamedb_sampler.h"

#define UNW_LOCAL_ONLY
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/flamedb_int.h"
#include "client/sampler_pending.h"
#include "client/sampler_profile.h"
#include "client/sampler_ring.h"
#include "client/sampler_timers.h"
#include "common/buf.h"

#define SAMPLER_DEFAULT_RATE_HZ 100
#define SAMPLER_MAX_RATE_HZ 1000
#define SAMPLER_DEFAULT_PUSH_MS 10000
#define SAMPLER_MIN_PUSH_MS 1000
#define SAMPLER_DEFAULT_RING 4096
#define SAMPLER_MAX_RING ((size_t)1 << 20)
#define SAMPLER_DEFAULT_DEPTH 64
#define SAMPLER_MAX_DEPTH 256
#define SAMPLER_DRAIN_MS 50
#define SAMPLER_MAX_APP 200
#define SAMPLER_MAX_LABELS 1024
#define SAMPLER_DEFAULT_PENDING ((size_t)4 << 20)
#define SAMPLER_MAX_PENDING ((size_t)1 << 30)
#define SAMPLER_RETRY_FIRST_MS 1000
#define SAMPLER_DEFAULT_RETRY_MAX_MS 60000
#define SAMPLER_DEFAULT_STOP_MS 5000
#define SAMPLER_MAX_STOP_MS 600000

struct flamedb_sampler {
    flamedb_client_t *client;
    char *name; /* "app{k=v,...}" */
    int rate_hz, push_interval_ms;
    size_t max_depth;
    void (*on_push_error)(void *arg, int err, const char *msg);
    void *on_push_error_arg;
    flamedb_sampler_ring_t *ring;
    flamedb_sampler_profile_t *prof;
    uintptr_t *scratch; /* max_depth frames: what the thread pops into */
    int64_t interval_start_ns;
    flamedb_sampler_pending_t *pending; /* profiles to push, oldest first */
    int retry_max_ms, backoff_ms;       /* backoff_ms: the wait after the next failure */
    struct timespec retry_at;           /* no push attempt before (CLOCK_MONOTONIC) */
    flamedb_sampler_timers_t *timers;   /* per-thread timers, or NULL: `timer` */
    timer_t timer;                      /* on the process CPU clock, when no /proc */
    int timer_made, handler_set, thread_made;
    struct sigaction old_action;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int stop_timeout_ms;
    int cancel[2]; /* a pipe: a byte written ends the client's waits (stop) */
    _Atomic uint64_t samples, pushes, push_failures;
    /* the queue's figures, copied by the thread for flamedb_sampler_stats() */
    _Atomic uint64_t pending_count, pending_bytes, lost_profiles, lost_samples;
};

static _Atomic(flamedb_sampler_t *) active;
static atomic_int in_handler;

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(char *errbuf, size_t len, int err, const char *fmt, ...)
{
    if (errbuf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, len, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* The interrupted thread's stack, leaf first; callers' return addresses are
 * moved back one byte into their call instruction. Async-signal-safe. */
static size_t sampler_unwind(void *ucontext, uintptr_t *frames, size_t max)
{
    unw_cursor_t cur;
    if (unw_init_local2(&cur, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0) return 0;
    size_t n = 0;
    do {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0) break;
        frames[n] = n == 0 ? (uintptr_t)ip : (uintptr_t)ip - 1;
        n++;
    } while (n < max && unw_step(&cur) > 0);
    return n;
}

static void sampler_on_sigprof(int sig, siginfo_t *si, void *ucontext)
{
    int saved_errno = errno;
    atomic_fetch_add(&in_handler, 1);
    flamedb_sampler_t *s = atomic_load(&active);
    if (s && si && si->si_code == SI_TIMER) {
        uintptr_t frames[SAMPLER_MAX_DEPTH];
        uint32_t weight = 1 + (si->si_overrun > 0 ? (uint32_t)si->si_overrun : 0);
        size_t n = sampler_unwind(ucontext, frames, s->max_depth);
        if (n > 0 && flamedb_sampler_ring_push(s->ring, frames, n, weight) == 0)
            atomic_fetch_add_explicit(&s->samples, weight, memory_order_relaxed);
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved_errno;
}

/* Moves every complete stack of the ring into the interval's profile. */
static int sampler_drain(flamedb_sampler_t *s)
{
    size_t depth;
    uint32_t weight;
    int rc = 0;
    while (flamedb_sampler_ring_pop(s->ring, s->scratch, &depth, &weight)) {
        int r = flamedb_sampler_profile_add(s->prof, s->scratch, depth, weight);
        if (r && !rc) rc = r; /* out of memory: that stack is lost, keep draining */
    }
    return rc;
}

static void ts_add_ms(struct timespec *t, int ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Copies the queue's figures where flamedb_sampler_stats() reads them. */
static void sampler_publish(flamedb_sampler_t *s)
{
    atomic_store(&s->pending_count, flamedb_sampler_pending_count(s->pending));
    atomic_store(&s->pending_bytes, flamedb_sampler_pending_bytes(s->pending));
    atomic_store(&s->lost_profiles, flamedb_sampler_pending_dropped(s->pending));
    atomic_store(&s->lost_samples, flamedb_sampler_pending_dropped_samples(s->pending));
}

/* Ends the interval now: its profile (when it holds a sample) joins the
 * queue, the oldest profiles going when the queue is over max_pending_bytes.
 * 0 or FLAMEDB_ERR_NOMEM (that interval is lost and counted). */
static int sampler_close_interval(flamedb_sampler_t *s)
{
    int64_t now = clock_ns(CLOCK_REALTIME), start = s->interval_start_ns;
    s->interval_start_ns = now;
    uint64_t samples = flamedb_sampler_profile_samples(s->prof);
    if (samples == 0) return 0;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int64_t period = 1000000000 / s->rate_hz;
    int rc = flamedb_sampler_profile_encode(s->prof, period, start, now - start, &b);
    flamedb_sampler_profile_reset(s->prof);
    size_t len = 0;
    uint8_t *data = rc == 0 ? buf_steal(&b, &len) : NULL;
    buf_free(&b);
    int64_t from = start / 1000000000, until = now / 1000000000;
    if (until <= from) until = from + 1;
    if (!data) {
        flamedb_sampler_pending_lost(s->pending, samples);
        rc = FLAMEDB_ERR_NOMEM;
    } else if (flamedb_sampler_pending_add(s->pending, data, len, from, until, samples)) {
        rc = FLAMEDB_ERR_NOMEM;
    }
    sampler_publish(s);
    return rc;
}

/* Errors worth another try: the node was unreachable, busy or failing. */
static int sampler_retryable(int err)
{
    return err == FLAMEDB_ERR_UNAVAILABLE || err == FLAMEDB_ERR_TIMEOUT || err == FLAMEDB_ERR_IO ||
           err == FLAMEDB_ERR_INTERNAL || err == FLAMEDB_ERR_LIMIT || err == FLAMEDB_ERR_NOMEM;
}

/* Pushes the oldest pending profile. 0 (popped), or the error, counted and
 * reported; a profile the node refused for good (4xx) is popped as lost. */
static int sampler_push_oldest(flamedb_sampler_t *s)
{
    const flamedb_sampler_pending_entry_t *e = flamedb_sampler_pending_oldest(s->pending);
    int rc = flamedb_push_pprof(s->client, s->name, e->data, e->len, e->from, e->until);
    if (rc == 0) {
        flamedb_sampler_pending_pop(s->pending, 0);
        atomic_fetch_add(&s->pushes, 1);
    } else {
        atomic_fetch_add(&s->push_failures, 1);
        if (s->on_push_error) s->on_push_error(s->on_push_error_arg, rc, flamedb_errmsg(s->client));
        if (!sampler_retryable(rc)) flamedb_sampler_pending_pop(s->pending, 1);
    }
    sampler_publish(s);
    return rc;
}

/* Pushes pending profiles, oldest first, until the queue is empty or a push
 * fails with an error worth a retry: then no push is tried for backoff_ms,
 * which doubles up to retry_max_ms (a success sets it back). The ring is
 * drained between pushes. Returns 0 or the last push's error. */
static int sampler_flush(flamedb_sampler_t *s)
{
    int rc = 0;
    while (flamedb_sampler_pending_count(s->pending) > 0) {
        rc = sampler_push_oldest(s);
        if (rc == 0) s->backoff_ms = SAMPLER_RETRY_FIRST_MS;
        if (rc && sampler_retryable(rc)) {
            clock_gettime(CLOCK_MONOTONIC, &s->retry_at);
            ts_add_ms(&s->retry_at, s->backoff_ms);
            s->backoff_ms =
                s->backoff_ms > s->retry_max_ms / 2 ? s->retry_max_ms : s->backoff_ms * 2;
            break;
        }
        sampler_drain(s);
    }
    return rc;
}

/* The thread: drains every SAMPLER_DRAIN_MS, ends an interval every
 * push_interval_ms (pushes that took longer than the interval move the next
 * one later) and pushes the queue when no backoff holds it. */
static void *sampler_main(void *arg)
{
    flamedb_sampler_t *s = arg;
    struct timespec next_push, now;
    clock_gettime(CLOCK_MONOTONIC, &next_push);
    ts_add_ms(&next_push, s->push_interval_ms);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        ts_add_ms(&now, SAMPLER_DRAIN_MS);
        pthread_cond_timedwait(&s->cv, &s->mu, &now);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->mu);
        sampler_drain(s);
        if (s->timers) flamedb_sampler_timers_scan(s->timers, gettid()); /* new threads */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!ts_before(&now, &next_push)) {
            sampler_close_interval(s);
            ts_add_ms(&next_push, s->push_interval_ms);
        }
        if (flamedb_sampler_pending_count(s->pending) > 0 && !ts_before(&now, &s->retry_at))
            sampler_flush(s);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (ts_before(&next_push, &now)) { /* pushes took longer than an interval */
            next_push = now;
            ts_add_ms(&next_push, s->push_interval_ms);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int valid_app_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.' || c == '/' || c == ':';
}

/* Checks "k=v,k2=v2" (NULL or "": none); 0 or FLAMEDB_ERR_INVALID_ARGUMENT. */
static int check_labels(const char *l, char *errbuf, size_t errlen)
{
    if (!l || !*l) return 0;
    if (strlen(l) > SAMPLER_MAX_LABELS)
        return fail(errbuf, errlen, FLAMEDB_ERR_INVALID_ARGUMENT, "labels: over %d bytes",
                    SAMPLER_MAX_LABELS);
    const char *p = l;
    while (*p) {
        const char *k = p;
        while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               *p == '_')
            p++;
        if (p == k || *p != '=')
            return fail(errbuf, errlen, FLAMEDB_ERR_INVALID_ARGUMENT,
                        "labels: expected name=value at offset %d", (int)(k - l));
        for (p++; *p && *p != ','; p++)
            if (*p == '{' || *p == '}' || *p == '"' || (unsigned char)*p < 0x20 || *p == 0x7f)
                return fail(errbuf, errlen, FLAMEDB_ERR_INVALID_ARGUMENT,
                            "labels: bad character at offset %d", (int)(p - l));
        if (*p == ',') p++;
    }
    return 0;
}

/* Checks opts and fills the sampler's settings and push name. */
static int sampler_configure(flamedb_sampler_t *s, const flamedb_sampler_opts_t *o, char *eb,
                             size_t el)
{
    const char *app = o->app_name;
    size_t n = app ? strlen(app) : 0;
    if (n == 0 || n > SAMPLER_MAX_APP)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT, "app_name: 1 to %d bytes required",
                    SAMPLER_MAX_APP);
    for (size_t i = 0; i < n; i++)
        if (!valid_app_char(app[i]))
            return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT, "app_name: bad character at %zu", i);
    int rc = check_labels(o->labels, eb, el);
    if (rc) return rc;
    s->rate_hz = o->rate_hz ? o->rate_hz : SAMPLER_DEFAULT_RATE_HZ;
    s->push_interval_ms = o->push_interval_ms ? o->push_interval_ms : SAMPLER_DEFAULT_PUSH_MS;
    size_t ring = o->ring_capacity ? o->ring_capacity : SAMPLER_DEFAULT_RING;
    s->max_depth = o->max_depth ? o->max_depth : SAMPLER_DEFAULT_DEPTH;
    if (s->rate_hz < 1 || s->rate_hz > SAMPLER_MAX_RATE_HZ)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT, "rate_hz: 1 to %d", SAMPLER_MAX_RATE_HZ);
    if (s->push_interval_ms < SAMPLER_MIN_PUSH_MS)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT, "push_interval_ms: at least %d",
                    SAMPLER_MIN_PUSH_MS);
    if (ring > SAMPLER_MAX_RING || s->max_depth > SAMPLER_MAX_DEPTH)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT,
                    "ring_capacity at most %zu, max_depth at most %d", SAMPLER_MAX_RING,
                    SAMPLER_MAX_DEPTH);
    size_t pending = o->max_pending_bytes ? o->max_pending_bytes : SAMPLER_DEFAULT_PENDING;
    s->retry_max_ms = o->retry_max_ms ? o->retry_max_ms : SAMPLER_DEFAULT_RETRY_MAX_MS;
    if (pending > SAMPLER_MAX_PENDING || s->retry_max_ms < SAMPLER_RETRY_FIRST_MS)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT,
                    "max_pending_bytes at most %zu, retry_max_ms at least %d", SAMPLER_MAX_PENDING,
                    SAMPLER_RETRY_FIRST_MS);
    s->stop_timeout_ms = o->stop_timeout_ms ? o->stop_timeout_ms : SAMPLER_DEFAULT_STOP_MS;
    if (s->stop_timeout_ms < 1 || s->stop_timeout_ms > SAMPLER_MAX_STOP_MS)
        return fail(eb, el, FLAMEDB_ERR_INVALID_ARGUMENT, "stop_timeout_ms: 1 to %d",
                    SAMPLER_MAX_STOP_MS);
    s->backoff_ms = SAMPLER_RETRY_FIRST_MS;
    s->on_push_error = o->on_push_error;
    s->on_push_error_arg = o->on_push_error_arg;
    const char *labels = o->labels ? o->labels : "";
    s->name = malloc(n + strlen(labels) + 3);
    s->ring = flamedb_sampler_ring_new(ring, s->max_depth);
    s->prof = flamedb_sampler_profile_new();
    s->scratch = calloc(s->max_depth, sizeof *s->scratch);
    s->pending = flamedb_sampler_pending_new(pending);
    if (!s->name || !s->ring || !s->prof || !s->scratch || !s->pending)
        return fail(eb, el, FLAMEDB_ERR_NOMEM, "out of memory");
    if (pipe2(s->cancel, O_CLOEXEC | O_NONBLOCK) != 0) {
        s->cancel[0] = s->cancel[1] = -1;
        return fail(eb, el, FLAMEDB_ERR_IO, "pipe: %s", strerror(errno));
    }
    sprintf(s->name, "%s{%s}", app, labels);
    return 0;
}

/* Ends every wait of the client's connection at once: the push in flight
 * fails (FLAMEDB_ERR_TIMEOUT) and so does any later one. 0, or -1 when
 * the byte could not be written (EAGAIN: one is there already). */
static int sampler_cancel(flamedb_sampler_t *s)
{
    char b = 1;
    return write(s->cancel[1], &b, 1) == 1 || errno == EAGAIN ? 0 : -1;
}

/* Joins the thread by deadline (CLOCK_MONOTONIC ns, 0: no limit); past
 * it, the push it waits on is cancelled (counted as failed, its profile
 * stays queued) and the thread, whose every wait then ends, is joined. */
static void sampler_join(flamedb_sampler_t *s, int64_t deadline)
{
    if (deadline != 0) {
        int64_t left = deadline - clock_ns(CLOCK_MONOTONIC);
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        ts_add_ms(&at, left > 0 ? (int)((left + 999999) / 1000000) : 0);
        if (pthread_timedjoin_np(s->thread, NULL, &at) == 0) return;
        if (sampler_cancel(s) != 0) /* then the client's I/O timeout ends the push */
            fprintf(stderr, "flamedb sampler: cannot cancel the push: %s\n", strerror(errno));
    }
    pthread_join(s->thread, NULL);
}

/* Stops what start set going, in reverse: after it no handler touches s and
 * the thread is gone (waited for until deadline, sampler_join). */
static void sampler_quiesce(flamedb_sampler_t *s, int64_t deadline)
{
    if (s->thread_made) { /* first: it arms the timers of new threads */
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        sampler_join(s, deadline);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    flamedb_sampler_timers_free(s->timers);
    s->timers = NULL;
    if (s->timer_made) timer_delete(s->timer);
    flamedb_sampler_t *expected = s;
    atomic_compare_exchange_strong(&active, &expected, NULL);
    for (int i = 0; atomic_load(&in_handler) > 0 && i < 100000; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (s->handler_set) {
        /* a tick already queued must not meet SIGPROF's default action (exit) */
        if (s->old_action.sa_handler == SIG_DFL && !(s->old_action.sa_flags & SA_SIGINFO))
            s->old_action.sa_handler = SIG_IGN;
        sigaction(SIGPROF, &s->old_action, NULL);
    }
    s->timer_made = s->handler_set = s->thread_made = 0;
}

static void sampler_free(flamedb_sampler_t *s)
{
    flamedb_sampler_ring_free(s->ring);
    flamedb_sampler_profile_free(s->prof);
    flamedb_sampler_pending_free(s->pending);
    if (s->cancel[0] >= 0) close(s->cancel[0]);
    if (s->cancel[1] >= 0) close(s->cancel[1]);
    free(s->scratch);
    free(s->name);
    free(s);
}

/* The thread, created with SIGPROF blocked: it never runs the handler, so
 * libunwind never interrupts its own dladdr or its pushes. */
static int sampler_start_thread(flamedb_sampler_t *s)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc) return -1;
    if (pthread_mutex_init(&s->mu, NULL)) {
        pthread_cond_destroy(&s->cv);
        return -1;
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(&s->thread, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        return -1;
    }
    s->thread_made = 1;
    return 0;
}

/* Installs the handler and arms the CPU-time timers (one per thread, else one
 * for the process). */
static int sampler_arm(flamedb_sampler_t *s, char *eb, size_t el)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sampler_on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, &s->old_action))
        return fail(eb, el, FLAMEDB_ERR_IO, "sigaction(SIGPROF): %s", strerror(errno));
    s->handler_set = 1;
    long period = 1000000000L / s->rate_hz;
    s->timers = flamedb_sampler_timers_new(period, SIGPROF);
    if (!s->timers) return fail(eb, el, FLAMEDB_ERR_NOMEM, "out of memory");
    if (flamedb_sampler_timers_scan(s->timers, 0) == 0) return 0;
    /* no /proc/self/task: one timer on the process CPU clock, whose ticks the
     * kernel delivers to a thread of its choice */
    flamedb_sampler_timers_free(s->timers);
    s->timers = NULL;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGPROF;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &s->timer))
        return fail(eb, el, FLAMEDB_ERR_IO, "timer_create: %s", strerror(errno));
    s->timer_made = 1;
    struct itimerspec its = {{period / 1000000000L, period % 1000000000L},
                             {period / 1000000000L, period % 1000000000L}};
    if (timer_settime(s->timer, 0, &its, NULL))
        return fail(eb, el, FLAMEDB_ERR_IO, "timer_settime: %s", strerror(errno));
    return 0;
}

FLAMEDB_API int flamedb_sampler_start(flamedb_client_t *client, const flamedb_sampler_opts_t *opts,
                                      flamedb_sampler_t **out, char *errbuf, size_t errbuf_len)
{
    if (out) *out = NULL;
    if (!client || !opts || !out)
        return fail(errbuf, errbuf_len, FLAMEDB_ERR_INVALID_ARGUMENT,
                    "client, opts and out are required");
    flamedb_sampler_t *s = calloc(1, sizeof *s);
    if (!s) return fail(errbuf, errbuf_len, FLAMEDB_ERR_NOMEM, "out of memory");
    s->client = client;
    s->cancel[0] = s->cancel[1] = -1;
    int rc = sampler_configure(s, opts, errbuf, errbuf_len);
    flamedb_sampler_t *expected = NULL;
    if (rc == 0 && !atomic_compare_exchange_strong(&active, &expected, s))
        rc = fail(errbuf, errbuf_len, FLAMEDB_ERR_INVALID_ARGUMENT,
                  "a sampler is already running in this process");
    if (rc) {
        sampler_free(s);
        return rc;
    }
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    s->interval_start_ns = clock_ns(CLOCK_REALTIME);
    rc = sampler_arm(s, errbuf, errbuf_len); /* the thread is not there yet to be armed */
    if (rc == 0 && sampler_start_thread(s))
        rc = fail(errbuf, errbuf_len, FLAMEDB_ERR_IO, "cannot start the sampler thread");
    if (rc) {
        sampler_quiesce(s, 0);
        sampler_free(s);
        return rc;
    }
    flamedb__client_conn(client)->cancel_fd = s->cancel[0];
    *out = s;
    return 0;
}

FLAMEDB_API int flamedb_sampler_stop(flamedb_sampler_t *s)
{
    if (!s) return 0;
    int64_t deadline = clock_ns(CLOCK_MONOTONIC) + (int64_t)s->stop_timeout_ms * 1000000;
    sampler_quiesce(s, deadline);
    flamedb__conn_t *conn = flamedb__client_conn(s->client);
    conn->deadline_ns = deadline; /* the last pushes end by it too */
    sampler_drain(s);
    int rc = sampler_close_interval(s);
    int last = sampler_flush(s); /* one try, whatever the backoff */
    if (last) rc = last;
    while (flamedb_sampler_pending_count(s->pending) > 0) /* the node is still away */
        flamedb_sampler_pending_pop(s->pending, 1);
    conn->deadline_ns = 0;
    conn->cancel_fd = -1;
    flamedb__conn_close(conn); /* a cancelled exchange leaves it half done */
    sampler_free(s);
    return rc;
}

FLAMEDB_API void flamedb_sampler_stats(const flamedb_sampler_t *s, flamedb_sampler_stats_t *out)
{
    flamedb_sampler_t *m = (flamedb_sampler_t *)s; /* atomics are read, not changed */
    out->samples = atomic_load(&m->samples);
    out->dropped = flamedb_sampler_ring_dropped(m->ring);
    out->pushes = atomic_load(&m->pushes);
    out->push_failures = atomic_load(&m->push_failures);
    out->pending = atomic_load(&m->pending_count);
    out->pending_bytes = atomic_load(&m->pending_bytes);
    out->lost_profiles = atomic_load(&m->lost_profiles);
    out->lost_samples = atomic_load(&m->lost_samples);
}
