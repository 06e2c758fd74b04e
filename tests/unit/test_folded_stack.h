/* test_folded_stack.h — adds one folded stack ("a;b;c", at most 8 frames,
 * each interned with file "file.c") with a value to a calltree: for the
 * query heap tests that build large trees. Header-only; the caller owns t
 * and st. */
#ifndef FLAMEDB_TEST_FOLDED_STACK_H
#define FLAMEDB_TEST_FOLDED_STACK_H

#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/symtab.h"

static void folded_stack_add(calltree_t *t, symtab_t *st, const char *folded, int64_t value)
{
    uint64_t stack[8];
    size_t depth = 0;
    for (const char *p = folded; *p != '\0' && depth < 8;) {
        const char *e = strchr(p, ';');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        CHECK_EQ_INT(symtab_intern(st, p, n, "file.c", 6, &stack[depth++]), 0);
        p += n + (e != NULL);
    }
    CHECK_EQ_INT(calltree_add_stack(t, stack, depth, value), 0);
}

#endif
