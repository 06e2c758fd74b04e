/* check.h — the assertions unit tests use.
 *
 * CHECK(cond) records a failure with file:line and continues; CHECK_EQ_INT
 * prints both sides. A test's main() returns check_exit(), which is non-zero
 * when any check failed, so ctest reports it. testdata_path() finds the shared
 * real-profile corpus (FLAMEDB_TESTDATA or ../shared/testdata) and returns
 * NULL when it is absent so tests can skip those cases with a message.
 */
#ifndef FLAMEDB_TESTS_CHECK_H
#define FLAMEDB_TESTS_CHECK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        check_count++;                                                                             \
        if (va_ != vb_) {                                                                          \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, va_, vb_);                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        check_count++;                                                                             \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                                 \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,        \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                 \
        }                                                                                          \
    } while (0)

/* xorshift64: the one generator of randomised tests. Seed check_rng_state
 * (non-zero) from the printed seed so a run can be replayed. */
static uint64_t check_rng_state = 1;
static inline uint64_t check_rng(void)
{
    check_rng_state ^= check_rng_state << 13;
    check_rng_state ^= check_rng_state >> 7;
    check_rng_state ^= check_rng_state << 17;
    return check_rng_state;
}

static inline int check_exit(void)
{
    fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

/* Path of the shared test corpus, or NULL (with a message) when absent. */
static inline const char *testdata_path(void)
{
    static char path[4096];
    const char *env = getenv("FLAMEDB_TESTDATA");
    struct stat st;
    if (env != NULL && stat(env, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof path, "%s", env);
        return path;
    }
    if (stat("../shared/testdata", &st) == 0 && S_ISDIR(st.st_mode)) return "../shared/testdata";
    fprintf(stderr,
            "SKIP: shared testdata not found (set FLAMEDB_TESTDATA); corpus cases skipped\n");
    return NULL;
}

#endif
