/* grow.h — growing a heap array's capacity, with overflow checks and a maximum.
 *
 * Owns the one "if full, double the capacity and realloc" step: GROW(p, cap,
 * need, max) makes room for at least `need` elements of *p, doubling from
 * GROW_MIN_CAP, never past `max` elements and never letting cap * sizeof *p
 * overflow. On failure p and cap are unchanged (the old block stays the
 * caller's). The caller owns the array and frees it with free(). Header-only
 * (static inline), no state: thread rules are those of the array.
 *
 * Returns ERR_OK, ERR_TOO_LARGE when need > max, ERR_NOMEM when the size
 * overflows or realloc fails.
 */
#ifndef FLAMEDB_COMMON_GROW_H
#define FLAMEDB_COMMON_GROW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define GROW_MIN_CAP 16
#define GROW_UNLIMITED SIZE_MAX

/* pp is the address of the array pointer (any object pointer type). */
static inline int grow_array(void *pp, size_t *cap, size_t need, size_t elem, size_t max,
                             size_t min_cap)
{
    if (need <= *cap) return ERR_OK;
    if (need > max) return ERR_TOO_LARGE;
    size_t n = *cap > 0 ? *cap : (min_cap > 0 ? min_cap : 1);
    while (n < need)
        n = n > SIZE_MAX / 2 ? SIZE_MAX : n * 2;
    if (n > max) n = max;
    if (elem != 0 && n > SIZE_MAX / elem) return ERR_NOMEM;
    void *p;
    memcpy(&p, pp, sizeof p);
    p = realloc(p, n * elem);
    if (p == NULL) return ERR_NOMEM;
    memcpy(pp, &p, sizeof p);
    *cap = n;
    return ERR_OK;
}

/* GROW(p, cap, need, max): p an lvalue pointer, cap a size_t lvalue. */
#define GROW(p, cap, need, max) grow_array(&(p), &(cap), (need), sizeof *(p), (max), GROW_MIN_CAP)
/* The same with the first allocation's size chosen by the caller. */
#define GROW_FROM(p, cap, need, max, min_cap)                                                      \
    grow_array(&(p), &(cap), (need), sizeof *(p), (max), (min_cap))

#endif
