/* assert.c — the failure path of ASSERT_ALWAYS / ASSERT_DEBUG (see assert.h). */
#include <stdlib.h>

#include "common/assert.h"
#include "common/log.h"

void assert_fail(const char *file, int line, const char *func, const char *cond)
{
    log_error("assert", "%s:%d: %s: assertion failed: %s", file, line, func, cond);
    abort();
}
