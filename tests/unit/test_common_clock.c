/* Unit tests for common/clock.h: the real clock moves, the manual one only by hand. */
#include <time.h>

#include "common/clock.h"
#include "check.h"

int main(void)
{
    clock_source_t real = clock_real();
    int64_t w = clock_wall_ms(&real);
    CHECK(w > 1600000000000LL); /* after 2020 */
    /* between two readings of time(): a second may pass between any two
     * calls (a preempted thread), and time() may read a coarse clock up to a
     * tick behind CLOCK_REALTIME, so the wall second can be one ahead */
    int64_t t0 = (int64_t)time(NULL), s = clock_wall_s(&real), t1 = (int64_t)time(NULL);
    CHECK(s >= t0 && s <= t1 + 1);
    int64_t m0 = clock_mono_ns(&real), m1 = clock_mono_ns(&real);
    CHECK(m1 >= m0);

    clock_manual_t m = {.wall_ns = 1700000000LL * 1000000000, .mono_ns = 5};
    clock_source_t c = clock_manual(&m);
    CHECK(clock_wall_s(&c) == 1700000000LL);
    CHECK(clock_mono_ns(&c) == 5);
    clock_manual_advance_ms(&m, 1500);
    CHECK(clock_wall_ms(&c) == 1700000001500LL);
    CHECK(clock_mono_ms(&c) == 1500);
    m.wall_ns = 42;
    CHECK(clock_wall_ns(&c) == 42); /* the source reads m, not a copy */
    return check_exit();
}
