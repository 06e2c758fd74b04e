/* test_budget.h — a counting budget for a query_report_charge_t (take/give
 * pair) in the query unit tests: it records the bytes in use and the most
 * in use at once; limit 0 takes any charge, else a charge that would pass
 * the limit is refused with ERR_UNAVAILABLE (nothing taken). Included by
 * tests/unit/test_query_*.c only. */
#ifndef FLAMEDB_TESTS_TEST_BUDGET_H
#define FLAMEDB_TESTS_TEST_BUDGET_H

#include <stddef.h>

#include "common/err.h"

typedef struct budget {
    size_t limit, used, most;
} budget_t;

static inline int budget_take(void *ctx, size_t n)
{
    budget_t *b = ctx;
    if (b->limit != 0 && b->used + n > b->limit) return ERR_UNAVAILABLE;
    b->used += n;
    if (b->used > b->most) b->most = b->used;
    return 0;
}

static inline void budget_give(void *ctx, size_t n)
{
    budget_t *b = ctx;
    b->used -= n;
}

#endif
