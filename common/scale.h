/* scale.h — a set of integers' common unit, and exact division by it.
 *
 * scale_add folds one more magnitude into the greatest common divisor of
 * those seen (0: none yet; once 1 it stays 1 without a division), so a
 * block's values or a share's values by id can be stored or sent divided
 * by it: a CPU profile's values are multiples of its sampling period
 * (10,000,000 ns at 100 Hz) and go as sample counts, a byte or two each.
 * scale_divisor_t divides exact multiples of a unit with a shift and a
 * multiply (d = odd << shift: the quotient is (v >> shift) times odd's
 * inverse mod 2^64) and tells a multiple from another value the same way
 * (its low shift bits 0 and that product at most UINT64_MAX / odd:
 * Granlund and Montgomery, 1994), so a set whose values share the unit
 * costs no division per value. Header-only, no state: thread-safe.
 */
#ifndef FLAMEDB_COMMON_SCALE_H
#define FLAMEDB_COMMON_SCALE_H

#include <stdint.h>

/* gcd(scale, a); scale 0 (none yet): a; scale 1: 1 at once. */
static inline uint64_t scale_add(uint64_t scale, uint64_t a)
{
    if (scale == 1) return 1;
    while (scale != 0) {
        uint64_t t = a % scale;
        a = scale;
        scale = t;
    }
    return a;
}

typedef struct scale_divisor {
    uint64_t inv, max;
    unsigned shift;
} scale_divisor_t;

/* The divisor for unit d (>= 1). */
static inline scale_divisor_t scale_divisor_of(uint64_t d)
{
    unsigned shift = (unsigned)__builtin_ctzll(d);
    uint64_t odd = d >> shift, inv = odd; /* right in its low 3 bits: odd * odd = 1 mod 8 */
    for (int i = 0; i < 5; i++)           /* Newton's step doubles them: 96 >= 64 */
        inv *= 2 - odd * inv;
    return (scale_divisor_t){inv, UINT64_MAX / odd, shift};
}

/* 1 when v is a multiple of x's unit. */
static inline int scale_divides(const scale_divisor_t *x, uint64_t v)
{
    return (v & ((UINT64_C(1) << x->shift) - 1)) == 0 && (v >> x->shift) * x->inv <= x->max;
}

/* v / x's unit, v a multiple of it (else a meaningless number). */
static inline uint64_t scale_quotient(const scale_divisor_t *x, uint64_t v)
{
    return (v >> x->shift) * x->inv;
}

#endif
