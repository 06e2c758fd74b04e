/* Unit tests for common/arena.h: alignment, chunking, the bound, strings. */
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "common/arena.h"
#include "check.h"

int main(void)
{
    arena_t a;
    arena_init(&a, 256, 1024);
    char *s = arena_strndup(&a, "abc", 3);
    CHECK_EQ_STR(s, "abc");
    char *e = arena_strndup(&a, NULL, 0);
    CHECK_EQ_STR(e, "");
    CHECK(e == s + 4); /* packed: strings follow each other */
    void *p = arena_alloc(&a, 10);
    CHECK(p != NULL && (uintptr_t)p % alignof(max_align_t) == 0);
    memset(p, 1, 10);
    CHECK_EQ_INT(a.total, 256);
    void *big = arena_alloc(&a, 600); /* its own chunk */
    CHECK(big != NULL);
    CHECK_EQ_INT(a.total, 856);
    CHECK_EQ_STR(s, "abc"); /* earlier allocations never move */
    CHECK(!a.over);
    CHECK(arena_alloc(&a, 300) == NULL); /* 856 + 300 > 1024 */
    CHECK(a.over);
    arena_free(&a);
    CHECK_EQ_INT(a.total, 0);
    CHECK(a.head == NULL);

    arena_init(&a, 64, ARENA_UNLIMITED);
    uint8_t *z = arena_zalloc(&a, 40);
    CHECK(z != NULL && z[0] == 0 && z[39] == 0);
    char *d = arena_memdup(&a, "xyz", 3);
    CHECK(d != NULL && memcmp(d, "xyz", 3) == 0 && (uintptr_t)d % alignof(max_align_t) == 0);
    CHECK(arena_memdup(&a, NULL, 0) != NULL);
    for (int i = 0; i < 1000; i++) {
        uint64_t *q = arena_alloc(&a, sizeof *q);
        CHECK(q != NULL);
        if (q != NULL) *q = (uint64_t)i;
    }
    CHECK(a.total >= 1000 * sizeof(uint64_t));
    arena_free(&a);
    return check_exit();
}
