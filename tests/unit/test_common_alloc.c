/* Unit tests for the memory budgets of common/alloc.h: charges are taken in
 * steps and given back whole; a charge that would pass the limit is refused
 * (ERR_UNAVAILABLE beside others, ERR_TOO_LARGE when the work alone would
 * pass it, with what the same work holds through its other accounts) and
 * leaves nothing taken; many threads charging at once never
 * take the budget past its limit, and it is empty once they are done. */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "common/alloc.h"
#include "common/err.h"

#define LIMIT (4u << 20)

static void test_steps_and_refusals(void)
{
    alloc_budget_t b;
    alloc_budget_init(&b, LIMIT);
    alloc_charge_t a, c;
    alloc_charge_init(&a, &b);
    alloc_charge_init(&c, &b);
    CHECK_EQ_INT(alloc_charge_add(&a, 100), 0);
    CHECK_EQ_INT(alloc_budget_used(&b), ALLOC_CHARGE_STEP); /* one step taken */
    CHECK_EQ_INT(alloc_charge_add(&a, 1000), 0);
    CHECK_EQ_INT(alloc_budget_used(&b), ALLOC_CHARGE_STEP);   /* within the step */
    CHECK_EQ_INT(alloc_charge_add(&a, LIMIT), ERR_TOO_LARGE); /* alone over it */
    CHECK_EQ_INT(alloc_charge_add(&c, 3u << 20), 0);
    /* a holds 1100 of one step, c 3 MiB: 1 MiB minus a step is left */
    CHECK_EQ_INT(alloc_charge_add(&a, 1u << 20), ERR_UNAVAILABLE);
    CHECK_EQ_INT(alloc_charge_add(&a, (1u << 20) - 2 * ALLOC_CHARGE_STEP), 0); /* fits */
    CHECK(alloc_budget_used(&b) <= LIMIT);
    CHECK_EQ_INT(alloc_budget_refused(&b), 2);
    alloc_charge_sub(&c, 3u << 20); /* c freed its memory early: the room comes back */
    CHECK(alloc_budget_used(&b) <= c.held + a.held && c.held <= ALLOC_CHARGE_STEP);
    alloc_charge_done(&a);
    alloc_charge_done(&c);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    CHECK_EQ_INT(alloc_budget_take(&b, LIMIT), 0);
    CHECK_EQ_INT(alloc_budget_take(&b, 1), ERR_UNAVAILABLE);
    alloc_budget_give(&b, LIMIT);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
}

/* One query's two accounts (its result, then its answer): a refusal of the
 * second counts what the first holds for the same query as its own, so a
 * query that could never fit is told so (ERR_TOO_LARGE), not to retry. */
static void test_beside_counts_as_alone(void)
{
    alloc_budget_t b;
    alloc_budget_init(&b, LIMIT);
    alloc_charge_t result, answer, other;
    alloc_charge_init(&result, &b);
    alloc_charge_init(&answer, &b);
    alloc_charge_init(&other, &b);
    CHECK_EQ_INT(alloc_charge_add(&result, 3u << 20), 0);
    CHECK_EQ_INT(alloc_charge_add(&answer, 2u << 20), ERR_UNAVAILABLE); /* beside "others" */
    alloc_charge_beside(&answer, result.used);
    CHECK_EQ_INT(alloc_charge_add(&answer, 2u << 20), ERR_TOO_LARGE); /* 5 MiB alone */
    CHECK_EQ_INT(alloc_charge_add(&answer, 512u << 10), 0);           /* 3.5 MiB fits */
    alloc_charge_done(&answer);
    /* what another query holds still makes it a retry */
    CHECK_EQ_INT(alloc_charge_add(&other, 512u << 10), 0);
    alloc_charge_init(&answer, &b);
    alloc_charge_beside(&answer, result.used);
    CHECK_EQ_INT(alloc_charge_add(&answer, 768u << 10), ERR_UNAVAILABLE);
    alloc_charge_done(&answer);
    alloc_charge_done(&other);
    alloc_charge_done(&result);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
}

static alloc_budget_t shared;
static atomic_size_t peak;

static void *worker(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2000; round++) {
        alloc_charge_t c;
        alloc_charge_init(&c, &shared);
        for (int i = 0; i < 8 && alloc_charge_add(&c, 100000) == 0; i++) {
            size_t u = alloc_budget_used(&shared), p = atomic_load(&peak);
            while (u > p && !atomic_compare_exchange_weak(&peak, &p, u)) {
            }
        }
        alloc_charge_done(&c);
    }
    return NULL;
}

static void test_threads_stay_within(void)
{
    alloc_budget_init(&shared, LIMIT);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(pthread_create(&t[i], NULL, worker, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&peak) <= LIMIT);
    CHECK(atomic_load(&peak) > 0);
    CHECK_EQ_INT(alloc_budget_used(&shared), 0);
}

int main(void)
{
    test_steps_and_refusals();
    test_beside_counts_as_alone();
    test_threads_stay_within();
    return check_exit();
}
