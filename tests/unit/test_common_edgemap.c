/* Unit tests for common/edgemap.h: (parent, sym) -> child across growth. */
#include "common/edgemap.h"
#include "common/err.h"
#include "check.h"

int main(void)
{
    edgemap_t m = {0};
    CHECK_EQ_INT(edgemap_get(&m, 0, 42), 0); /* empty, no table */
    enum { N = 5000 };
    for (uint32_t i = 1; i <= N; i++) {
        CHECK_EQ_INT(edgemap_reserve(&m, m.len + 1), ERR_OK);
        uint32_t parent = i / 3;
        uint64_t sym = (uint64_t)(i % 7) << 40 | i; /* same syms under many parents */
        size_t s = edgemap_probe(&m, parent, sym);
        CHECK_EQ_INT(m.slots[s].child, 0);
        edgemap_set_at(&m, s, parent, sym, i);
    }
    CHECK_EQ_INT(m.len, N);
    CHECK(m.len * 2 <= m.cap);
    for (uint32_t i = 1; i <= N; i++)
        CHECK_EQ_INT(edgemap_get(&m, i / 3, (uint64_t)(i % 7) << 40 | i), i);
    CHECK_EQ_INT(edgemap_get(&m, 1, 5), 0); /* sym 5 hangs under parent 1 only as 5 | ... */
    CHECK_EQ_INT(edgemap_get(&m, 2, (uint64_t)(1 % 7) << 40 | 1), 0); /* right sym, wrong parent */
    size_t cap = m.cap;
    edgemap_clear(&m);
    CHECK_EQ_INT(m.len, 0);
    CHECK_EQ_INT(m.cap, cap);
    CHECK_EQ_INT(edgemap_get(&m, 0, (uint64_t)1 << 40 | 1), 0);
    CHECK_EQ_INT(edgemap_reserve(&m, 10), ERR_OK);
    edgemap_put(&m, 7, 9, 3);
    CHECK_EQ_INT(edgemap_get(&m, 7, 9), 3);
    edgemap_free(&m);
    CHECK(m.slots == NULL && m.cap == 0);
    return check_exit();
}
