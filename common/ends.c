/* ends.c — items taken from two ends of one word (ends.h). */
#include "common/ends.h"

int ends_init(ends_t *e, size_t n)
{
    int fits = n <= UINT32_MAX;
    atomic_init(&e->v, fits ? (uint64_t)n << 32 : 0);
    return fits;
}

int ends_take(ends_t *e, int back, size_t *item)
{
    uint64_t v = atomic_load(&e->v);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b) return 0;
        uint64_t want = back ? ((uint64_t)(b - 1) << 32) | f : ((uint64_t)b << 32) | (f + 1);
        if (atomic_compare_exchange_weak(&e->v, &v, want)) {
            *item = back ? b - 1 : f;
            return 1;
        }
    }
}

void ends_close(ends_t *e)
{
    atomic_store(&e->v, 0);
}

int ends_next(ends_t *e, int back, size_t n, size_t *at, size_t *item)
{
    if (e != NULL) return ends_take(e, back, item);
    if (*at >= n) return 0;
    *item = (*at)++;
    return 1;
}
