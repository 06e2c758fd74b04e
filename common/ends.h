/* ends.h — items 0..n-1 taken by two threads from the two ends of one
 * atomic word: one takes from the first, the other from the last, so each
 * works mostly on its own end and the last item either waits for is a
 * single one. A render and its helper share the pieces of its series' read
 * and of its timeline this way (query/merge.c, query/timeline.c).
 *
 * Threads: any two (or more) take at once; init before they start, close
 * from any. Ownership: the caller's struct; nothing is allocated.
 */
#ifndef FLAMEDB_COMMON_ENDS_H
#define FLAMEDB_COMMON_ENDS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ends {
    _Atomic uint64_t v; /* front in the low half, back in the high (front >= back: none) */
} ends_t;

/* n items (at most UINT32_MAX): 1; past that 0, and no item to take. */
int ends_init(ends_t *e, size_t n);
/* 1 and *item (the first left, or with back the last), or 0 when none is
 * left. */
int ends_take(ends_t *e, int back, size_t *item);
/* No item is taken from now on. */
void ends_close(ends_t *e);
/* The next of n items to read: taken from e (at its back, or its front)
 * when e is not NULL, else *at, *at + 1, ... in order (*at starts at 0).
 * 1 and *item, or 0 when none is left: one loop reads alone or beside
 * another thread. */
int ends_next(ends_t *e, int back, size_t n, size_t *at, size_t *item);

#endif
