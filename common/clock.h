/* clock.h — an injectable clock: where "now" comes from.
 *
 * Owns the reading of time. Code that needs "now" (retention, deadlines,
 * default timestamps, uptime) takes a clock_source_t instead of calling
 * clock_gettime(), so a test can hand it a manual clock and move time by hand.
 * A clock_source_t is a small value: two function pointers and the context
 * they are given (borrowed; it must outlive every copy of the source).
 * (Named clock_source_t because libc owns clock_t.)
 *
 * clock_real() reads CLOCK_REALTIME and CLOCK_MONOTONIC and is thread-safe.
 * A clock_manual_t is the caller's: not synchronised, so set it before other
 * threads read it, or guard it yourself.
 */
#ifndef FLAMEDB_COMMON_CLOCK_H
#define FLAMEDB_COMMON_CLOCK_H

#include <stdint.h>

typedef struct clock_source {
    int64_t (*wall_ns)(void *ctx); /* nanoseconds since the Unix epoch */
    int64_t (*mono_ns)(void *ctx); /* nanoseconds from a fixed origin; never goes back */
    void *ctx;
} clock_source_t;

/* The process's real clocks. */
clock_source_t clock_real(void);

static inline int64_t clock_wall_ns(const clock_source_t *c)
{
    return c->wall_ns(c->ctx);
}
static inline int64_t clock_wall_ms(const clock_source_t *c)
{
    return c->wall_ns(c->ctx) / 1000000;
}
static inline int64_t clock_wall_s(const clock_source_t *c)
{
    return c->wall_ns(c->ctx) / 1000000000;
}
static inline int64_t clock_mono_ns(const clock_source_t *c)
{
    return c->mono_ns(c->ctx);
}
static inline int64_t clock_mono_ms(const clock_source_t *c)
{
    return c->mono_ns(c->ctx) / 1000000;
}

/* A clock that moves only when told (tests). Caller owns the struct. */
typedef struct clock_manual {
    int64_t wall_ns, mono_ns;
} clock_manual_t;

/* A source reading m (borrowed for the source's lifetime). */
clock_source_t clock_manual(clock_manual_t *m);
/* Moves both clocks forward by ms milliseconds. */
void clock_manual_advance_ms(clock_manual_t *m, int64_t ms);

#endif
