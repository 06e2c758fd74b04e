/* clock.c — the real and the manual clock (see clock.h). */
#include "common/clock.h"

#include <time.h>

static int64_t read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t real_wall(void *ctx)
{
    (void)ctx;
    return read_clock(CLOCK_REALTIME);
}

static int64_t real_mono(void *ctx)
{
    (void)ctx;
    return read_clock(CLOCK_MONOTONIC);
}

clock_source_t clock_real(void)
{
    return (clock_source_t){real_wall, real_mono, NULL};
}

static int64_t manual_wall(void *ctx)
{
    return ((const clock_manual_t *)ctx)->wall_ns;
}

static int64_t manual_mono(void *ctx)
{
    return ((const clock_manual_t *)ctx)->mono_ns;
}

clock_source_t clock_manual(clock_manual_t *m)
{
    return (clock_source_t){manual_wall, manual_mono, m};
}

void clock_manual_advance_ms(clock_manual_t *m, int64_t ms)
{
    m->wall_ns += ms * 1000000;
    m->mono_ns += ms * 1000000;
}
