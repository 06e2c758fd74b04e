/* assert.h — two-tier assertions for the program's own invariants.
 *
 * Never for input: a bad request, a corrupt file or a peer's message is an
 * error value (common/err.h), because input can be anything and the process
 * must survive it. An assertion states what the code itself guarantees, and
 * its failure means a bug.
 *
 *   ASSERT_ALWAYS(cond)  stays on in release builds. For invariants whose
 *                        breach would write corrupt data to the store (a block
 *                        naming a stack node that does not exist, an encoder
 *                        whose header disagrees with its records): stopping
 *                        the process is better than persisting garbage. Must
 *                        be cheap: a comparison, not a loop.
 *   ASSERT_DEBUG(cond)   compiled out when NDEBUG is defined (Release and
 *                        RelWithDebInfo builds; on in Debug, so in the ASan
 *                        test stage). For checks too expensive for production:
 *                        walks over a whole tree or vector. cond is not
 *                        evaluated in release, so it must have no side effect.
 *
 * A failed assertion logs "file:line: function: assertion failed: cond" at
 * error level (common/log.h) and calls abort(), so a core dump or the
 * sanitizer's report shows the stack.
 */
#ifndef FLAMEDB_COMMON_ASSERT_H
#define FLAMEDB_COMMON_ASSERT_H

/* Logs the failed assertion and aborts; called by the macros only. */
void assert_fail(const char *file, int line, const char *func, const char *cond)
    __attribute__((noreturn, cold));

#define ASSERT_ALWAYS(cond)                                                                        \
    (__builtin_expect(!!(cond), 1) ? (void)0 : assert_fail(__FILE__, __LINE__, __func__, #cond))

#ifdef NDEBUG
/* sizeof keeps cond compiled (names stay checked, helpers stay used) but
 * never evaluates it. */
#define ASSERT_DEBUG(cond) ((void)sizeof(!(cond)))
#else
#define ASSERT_DEBUG(cond) ASSERT_ALWAYS(cond)
#endif

#endif
