/* Unit tests for common/ends.h: one thread takes the items in order from
 * the first or from the last, and from both ends alternately meets in the
 * middle; two real threads, one at each end, take every item of a large
 * range exactly once between them (each from its own end, in order); a
 * count past UINT32_MAX gives no item; a close stops both ends; ends_next
 * reads alone in order without ends, from an end with them. */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"
#include "common/ends.h"

static void test_one_thread(void)
{
    ends_t e;
    size_t item;
    CHECK(ends_init(&e, 5));
    CHECK(ends_take(&e, 0, &item) && item == 0);
    CHECK(ends_take(&e, 1, &item) && item == 4);
    CHECK(ends_take(&e, 1, &item) && item == 3);
    CHECK(ends_take(&e, 0, &item) && item == 1);
    CHECK(ends_take(&e, 0, &item) && item == 2);
    CHECK(!ends_take(&e, 0, &item) && !ends_take(&e, 1, &item));
    CHECK(ends_init(&e, 0));
    CHECK(!ends_take(&e, 0, &item));
    CHECK(!ends_init(&e, (size_t)UINT32_MAX + 1));
    CHECK(!ends_take(&e, 0, &item) && !ends_take(&e, 1, &item));
    CHECK(ends_init(&e, UINT32_MAX));
    CHECK(ends_take(&e, 1, &item) && item == (size_t)UINT32_MAX - 1);
    ends_close(&e);
    CHECK(!ends_take(&e, 0, &item) && !ends_take(&e, 1, &item));
    /* ends_next: without ends, every item in order; with them, ends_take's */
    size_t at = 0, got = 0;
    while (ends_next(NULL, 1, 4, &at, &item))
        CHECK(item == got++);
    CHECK(got == 4 && !ends_next(NULL, 0, 4, &at, &item));
    CHECK(ends_init(&e, 3));
    CHECK(ends_next(&e, 1, 0, &at, &item) && item == 2);
    CHECK(ends_next(&e, 0, 0, &at, &item) && item == 0);
}

#define N 200000

typedef struct side {
    ends_t *e;
    int back;
    unsigned char *seen; /* per item: 1 by the front, 2 by the back */
    size_t taken, out_of_order;
} side_t;

static void *take_all(void *arg)
{
    side_t *s = arg;
    size_t item, last = s->back ? N : 0;
    int first = 1;
    while (ends_take(s->e, s->back, &item)) {
        s->seen[item] += (unsigned char)(s->back ? 2 : 1);
        if (!first && (s->back ? item >= last : item <= last)) s->out_of_order++;
        last = item;
        first = 0;
        s->taken++;
    }
    return NULL;
}

static void test_two_threads(void)
{
    ends_t e;
    CHECK(ends_init(&e, N));
    unsigned char *seen = calloc(N, 1);
    CHECK(seen != NULL);
    if (seen == NULL) return;
    side_t front = {&e, 0, seen, 0, 0}, back = {&e, 1, seen, 0, 0};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, take_all, &back), 0);
    take_all(&front);
    pthread_join(th, NULL);
    CHECK(front.taken + back.taken == N);
    CHECK(front.out_of_order == 0 && back.out_of_order == 0);
    size_t bad = 0, split = 0;
    for (size_t i = 0; i < N; i++) {
        bad += seen[i] != 1 && seen[i] != 2;
        split += i > 0 && seen[i] != seen[i - 1];
    }
    CHECK(bad == 0);
    CHECK(split <= 1); /* the front's items, then the back's: one boundary */
    free(seen);
}

int main(void)
{
    test_one_thread();
    test_two_threads();
    return check_exit();
}
