/* flamedb_sampler.h — the in-process CPU sampler of libflamedb: a C or C++
 * service profiles itself continuously and pushes its CPU profile to flamedb.
 *
 * How it works. flamedb_sampler_start() gives every thread of the process a
 * POSIX timer on its own CPU clock (timer_create, SIGEV_THREAD_ID; the threads
 * are read from /proc/self/task at start and every 50 ms; a thread started
 * since gets its timer at the next read, and the CPU time it used before that
 * is counted in its first sample, taken at once, under the stack it is in
 * then; without /proc, one timer on CLOCK_PROCESS_CPUTIME_ID)
 * that raises SIGPROF in that thread every 1/rate_hz seconds of its CPU time.
 * The SIGPROF handler captures
 * the interrupted thread's stack with libunwind (async-signal-safe local
 * unwinding, per-thread cache) and copies it into a preallocated lock-free
 * ring of ring_capacity stacks; when the ring is full the stack is dropped and
 * counted, the handler never blocks nor allocates. A background thread drains
 * the ring every 50 ms, counts stacks by address, names each address once
 * (dladdr: the exported symbol, else "module+0xOFFSET") and every
 * push_interval_ms queues one pprof CPU profile (sample types samples/count
 * and cpu/nanoseconds, with its from/until) that it pushes as
 * "app_name{labels}" through flamedb_push() (retries: see Errors below).
 * The profile reads like any Pyroscope CPU profile
 * (process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app_name"}).
 *
 * Names. dladdr() sees only dynamic symbols: link the program with -rdynamic
 * (-Wl,--export-dynamic) so its own functions get names; static functions
 * and stripped code show as "module+0xOFFSET". C++ names (_Z...) are
 * demangled with the C++ runtime's __cxa_demangle when the process has it
 * (looked up at run time: libflamedb does not link libstdc++); without it
 * they stay mangled.
 *
 * Limits. One sampler per process (SIGPROF and the handler are process-wide;
 * a second start fails with FLAMEDB_ERR_INVALID_ARGUMENT). The previous
 * SIGPROF disposition is restored by flamedb_sampler_stop() (SIG_DFL as
 * SIG_IGN, so a tick still queued cannot end the process). Do not use
 * setitimer(ITIMER_PROF) or another SIGPROF profiler at the same time.
 * A signal that lands while the thread is inside the dynamic loader (dlopen)
 * can make libunwind wait for the loader's lock: avoid dlopen in hot loops.
 *
 * Errors: start returns 0 or a negative FLAMEDB_ERR_* code with the reason in
 * errbuf. A failed push never stops the sampler nor the host: it is counted
 * (flamedb_sampler_stats()) and reported to on_push_error when set. Every
 * interval's profile waits in a queue of at most max_pending_bytes until the
 * node acknowledges it: after a failure worth a retry (cannot connect, 503,
 * timeout, 429, 5xx) no push is tried for 1 s, then 2 s, 4 s, ... up to
 * retry_max_ms, and the queue is pushed oldest first once one succeeds
 * (retries are safe: the node counts a profile once). A profile the node
 * refuses (another 4xx) is dropped; when the queue is full the oldest ones
 * are dropped; both are counted in lost_profiles and lost_samples. Pushes run
 * on the sampler's thread only: the application's threads never wait for
 * them (while a push waits for its timeout, samples gather in the ring).
 *
 * Ownership and threads. The client passed to start is borrowed: the sampler
 * uses it from its own thread only, until flamedb_sampler_stop() returns, so
 * the caller must not use nor free it meanwhile (give the sampler its own
 * client). Option strings are copied. The sampler is owned by the caller and
 * freed by flamedb_sampler_stop(), which pushes the last interval and the
 * pending profiles first. Queued profiles are owned by the sampler.
 * flamedb_sampler_stats() may be called from any thread.
 */
#ifndef FLAMEDB_CLIENT_FLAMEDB_SAMPLER_H
#define FLAMEDB_CLIENT_FLAMEDB_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "flamedb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flamedb_sampler flamedb_sampler_t;

/* Sampler options. Zero-initialise, set app_name; 0/NULL take the defaults. */
typedef struct flamedb_sampler_opts {
    /* Application name (service_name label), required: 1..200 bytes of
     * 0-9 a-z A-Z - _ . / : */
    const char *app_name;
    /* Extra labels, "k=v,k2=v2" (label names 0-9 a-z A-Z _; values without
     * , { } " or control characters); NULL or "": none. At most 1024 bytes. */
    const char *labels;
    int rate_hz;          /* samples per CPU second; 0: 100; at most 1000 */
    int push_interval_ms; /* 0: 10000; at least 1000 */
    size_t ring_capacity; /* stacks buffered between drains; 0: 4096; at most 1<<20 */
    size_t max_depth;     /* frames kept per stack (deeper are cut); 0: 64; at most 256 */
    /* Called from the sampler's thread after a failed push, with the error
     * code and the client's message (borrowed for the call). NULL: not called. */
    void (*on_push_error)(void *arg, int err, const char *msg);
    void *on_push_error_arg;
    /* Bytes of encoded profiles kept for a retry while pushes fail (oldest
     * dropped first); 0: 4 MiB; at most 1 GiB. */
    size_t max_pending_bytes;
    int retry_max_ms; /* longest wait between retries; 0: 60000; at least 1000 */
    /* Longest flamedb_sampler_stop() waits for pushes (the one in flight
     * and the last ones), in ms; 0: 5000; 1 to 600000. A push still
     * waiting then is abandoned and its profile counted as lost. */
    int stop_timeout_ms;
} flamedb_sampler_opts_t;

/* Counters since start; totals of sample weights (one weight = one period of
 * 1/rate_hz CPU seconds; a late timer tick counts its missed periods). */
typedef struct flamedb_sampler_stats {
    uint64_t samples;       /* captured into the ring */
    uint64_t dropped;       /* lost because the ring was full */
    uint64_t pushes;        /* profiles the node acknowledged */
    uint64_t push_failures; /* failed push attempts (each retry counts) */
    uint64_t pending;       /* profiles waiting for a push or a retry */
    uint64_t pending_bytes; /* their encoded size */
    /* Profiles given up, and the samples they held: refused by the node (4xx),
     * dropped (oldest first) to stay within max_pending_bytes, out of memory,
     * or still pending when stop's last try failed. */
    uint64_t lost_profiles;
    uint64_t lost_samples;
} flamedb_sampler_stats_t;

/* Starts sampling the whole process. On success *out is the running sampler
 * (stop it with flamedb_sampler_stop()). On failure *out is NULL and the reason
 * is written into errbuf (errbuf_len bytes, NUL-terminated) when not NULL.
 * Errors: FLAMEDB_ERR_INVALID_ARGUMENT (bad option, another sampler running),
 * FLAMEDB_ERR_NOMEM, FLAMEDB_ERR_IO (timer, signal or thread creation). */
FLAMEDB_API int flamedb_sampler_start(flamedb_client_t *client, const flamedb_sampler_opts_t *opts,
                                      flamedb_sampler_t **out, char *errbuf, size_t errbuf_len);
/* Stops the timer, restores SIGPROF, joins the thread, pushes what was
 * sampled since the last push and the pending profiles (once each, whatever
 * the backoff, stopping at the first failure worth a retry: what is left is
 * lost) and frees the sampler. It returns within stop_timeout_ms (plus the
 * time to encode the last profile) whatever the node does: a push in
 * flight then, on the sampler's thread or in stop, is abandoned
 * (FLAMEDB_ERR_TIMEOUT; the connection is closed) and its profile is lost.
 * Only resolving the node's host name is not bounded by it: use an address
 * or a name the resolver answers at once. Returns 0, or the error of the last
 * push tried (also counted and reported like any failed push). NULL: 0. */
FLAMEDB_API int flamedb_sampler_stop(flamedb_sampler_t *s);
/* Current counters. */
FLAMEDB_API void flamedb_sampler_stats(const flamedb_sampler_t *s, flamedb_sampler_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
