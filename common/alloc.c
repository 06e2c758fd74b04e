/* alloc.c — see alloc.h. */
#include "common/alloc.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void alloc_tune_for_server(void)
{
    /* Failures leave glibc's defaults in place, which are correct, only slower. */
    (void)mallopt(M_MMAP_THRESHOLD, ALLOC_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, ALLOC_KEEP_BYTES);
}

void *alloc_zeroed(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    void *p = malloc(n * size);
    /* explicit_bzero: the compiler turns malloc and memset into calloc */
    if (p != NULL) explicit_bzero(p, n * size);
    return p;
}

void alloc_release_free(void)
{
    (void)malloc_trim(0); /* 0: nothing was returned; nothing to report */
}

void alloc_budget_init(alloc_budget_t *b, size_t limit)
{
    b->limit = limit;
    atomic_init(&b->used, 0);
    atomic_init(&b->refused, 0);
}

size_t alloc_budget_used(const alloc_budget_t *b)
{
    return atomic_load_explicit(&((alloc_budget_t *)b)->used, memory_order_relaxed);
}

uint64_t alloc_budget_refused(const alloc_budget_t *b)
{
    return atomic_load_explicit(&((alloc_budget_t *)b)->refused, memory_order_relaxed);
}

void alloc_charge_init(alloc_charge_t *c, alloc_budget_t *b)
{
    c->b = b;
    c->held = 0;
    c->used = 0;
    c->peak = 0;
    c->beside = 0;
}

/* Takes n bytes from b unless that passes its limit. */
static int take(alloc_budget_t *b, size_t n)
{
    size_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);
    do {
        if (b->limit != 0 && (n > b->limit || cur > b->limit - n)) return 0;
    } while (!atomic_compare_exchange_weak_explicit(&b->used, &cur, cur + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 1;
}

int alloc_budget_take(alloc_budget_t *b, size_t n)
{
    if (take(b, n)) return 0;
    atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
    return ERR_UNAVAILABLE;
}

void alloc_budget_force(alloc_budget_t *b, size_t n)
{
    atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed);
}

void alloc_budget_give(alloc_budget_t *b, size_t n)
{
    atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
}

int alloc_charge_add(alloc_charge_t *c, size_t n)
{
    if (c->b == NULL) return 0;
    if (n <= c->held - c->used) {
        c->used += n;
        if (c->used > c->peak) c->peak = c->used;
        return 0;
    }
    size_t limit = c->b->limit;
    int rc = 0;
    size_t alone = c->used + c->beside;
    if (limit != 0 && (n > limit || alone > limit || alone + n > limit)) {
        rc = ERR_TOO_LARGE;
    } else {
        size_t need = c->used + n - c->held;
        size_t step = need < ALLOC_CHARGE_STEP ? ALLOC_CHARGE_STEP : need;
        if (take(c->b, step))
            c->held += step;
        else if (step != need && take(c->b, need)) /* the last room under the limit */
            c->held += need;
        else
            rc = ERR_UNAVAILABLE;
    }
    if (rc != 0) {
        atomic_fetch_add_explicit(&c->b->refused, 1, memory_order_relaxed);
        return rc;
    }
    c->used += n;
    if (c->used > c->peak) c->peak = c->used;
    return 0;
}

void alloc_charge_beside(alloc_charge_t *c, size_t held_elsewhere)
{
    c->beside = held_elsewhere;
}

void alloc_charge_sub(alloc_charge_t *c, size_t n)
{
    c->used -= n < c->used ? n : c->used;
    if (c->b != NULL && c->held - c->used > ALLOC_CHARGE_STEP) { /* give the room back */
        atomic_fetch_sub_explicit(&c->b->used, c->held - c->used, memory_order_relaxed);
        c->held = c->used;
    }
}

void alloc_charge_done(alloc_charge_t *c)
{
    if (c->b != NULL && c->held != 0)
        atomic_fetch_sub_explicit(&c->b->used, c->held, memory_order_relaxed);
    c->held = 0;
    c->used = 0;
}
