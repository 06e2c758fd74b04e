/* Unit tests for common/scale.h: scale_add is the gcd of the magnitudes
 * folded in (0: none yet, 1 stays 1); a divisor of any unit (odd, a power
 * of two, mixed, the largest) divides its multiples exactly, the quotient
 * times the unit giving them back, and tells every non-multiple apart,
 * against % and / for random units and values. */
#include <stdlib.h>

#include "check.h"
#include "common/scale.h"

static void test_add(void)
{
    CHECK_EQ_INT(scale_add(0, 0), 0);
    CHECK_EQ_INT(scale_add(0, 30), 30);
    CHECK_EQ_INT(scale_add(30, 45), 15);
    CHECK_EQ_INT(scale_add(15, 0), 15); /* a zero value keeps the unit */
    CHECK_EQ_INT(scale_add(1, 1000000), 1);
    CHECK_EQ_INT(scale_add(10000000, 990000000), 10000000);
    CHECK(scale_add(UINT64_MAX, UINT64_MAX) == UINT64_MAX);
}

/* d's divisor against % and / on v. */
static void check_one(uint64_t d, uint64_t v)
{
    scale_divisor_t x = scale_divisor_of(d);
    int multiple = v % d == 0;
    CHECK_EQ_INT(scale_divides(&x, v), multiple);
    if (multiple) CHECK(scale_quotient(&x, v) == v / d);
}

static void test_divisor(void)
{
    uint64_t units[] = {1,
                        2,
                        3,
                        7,
                        10,
                        1024,
                        10000000,
                        524288,
                        3ull << 40,
                        0x8000000000000000ull,
                        UINT64_MAX,
                        UINT64_MAX / 3,
                        999999999989ull};
    uint64_t near[] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        uint64_t d = units[i];
        for (size_t k = 0; k < sizeof near / sizeof near[0]; k++) {
            uint64_t m = d * near[k]; /* a multiple when it does not wrap */
            check_one(d, m);
            check_one(d, m + 1);
            check_one(d, m - 1);
        }
        check_one(d, UINT64_MAX);
    }
    for (int round = 0; round < 20000; round++) { /* random units and values */
        uint64_t d = 1 + check_rng() % ((round % 3) == 0 ? 1000 : 100000000000ull);
        if (round % 7 == 0) d <<= check_rng() % 20;
        uint64_t q = check_rng() % (UINT64_MAX / d);
        check_one(d, q * d);
        check_one(d, q * d + 1 + check_rng() % d);
        check_one(d, check_rng());
    }
}

int main(void)
{
    check_rng_state = 0x5ca1e5ull;
    test_add();
    test_divisor();
    return check_exit();
}
