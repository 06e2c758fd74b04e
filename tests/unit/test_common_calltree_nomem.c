/* test_common_calltree_nomem.c — call trees when memory runs out: a read
 * that must allocate (a valueless tree's zeros) reports it and leaves the
 * tree as it was. calloc is replaced by one that fails on demand (not
 * under a sanitizer, which has its own allocator: the test then only
 * checks the reads that succeed).
 */
#include <stdbool.h>

#include "check.h"
#include "common/calltree.h"
#include "common/err.h"

#if defined(__SANITIZE_ADDRESS__)
#define CALLOC_REPLACED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CALLOC_REPLACED 0
#endif
#endif
#ifndef CALLOC_REPLACED
#define CALLOC_REPLACED 1
#endif

static bool calloc_fails;

#if CALLOC_REPLACED
void *__libc_calloc(size_t n, size_t sz);

void *calloc(size_t n, size_t sz)
{
    return calloc_fails ? NULL : __libc_calloc(n, sz);
}
#endif

/* A valueless tree's values read through calltree_selves_scaled: zeros
 * made on first read, or ERR_NOMEM when they cannot be, never an array
 * that is not there. */
static void test_valueless_selves_scaled(void)
{
    calltree_t *t = calltree_new_valueless(0);
    CHECK(t != NULL);
    uint64_t stack[3] = {11, 12, 13};
    uint32_t node = 0;
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(calltree_child(t, node, stack[i], &node), ERR_OK);
    const int64_t *self = NULL;
    int64_t scale = 0;
    if (CALLOC_REPLACED) {
        calloc_fails = true;
        CHECK_EQ_INT(calltree_selves_scaled(t, &self, &scale), ERR_NOMEM);
        calloc_fails = false;
        CHECK(self == NULL);
        CHECK_EQ_INT(calltree_node_count(t), 4);
        CHECK_EQ_INT(calltree_self(t, node), 0);
    }
    CHECK_EQ_INT(calltree_selves_scaled(t, &self, &scale), ERR_OK);
    CHECK(self != NULL);
    CHECK_EQ_INT(scale, 1);
    for (uint32_t i = 0; i < 4 && self != NULL; i++)
        CHECK_EQ_INT(self[i], 0);
    /* values added after: read as they are */
    uint32_t nodes[2] = {node, 1};
    int64_t vals[2] = {5, -2};
    CHECK_EQ_INT(calltree_add_selves(t, nodes, vals, 2), ERR_OK);
    CHECK_EQ_INT(calltree_selves_scaled(t, &self, &scale), ERR_OK);
    CHECK(self != NULL && self[node] == 5 && self[1] == -2);
    CHECK_EQ_INT(calltree_root_total(t), 3);
    calltree_free(t);
}

int main(void)
{
    test_valueless_selves_scaled();
    return check_exit();
}
