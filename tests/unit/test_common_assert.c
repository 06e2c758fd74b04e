/* Unit tests for common/assert.h: a true assertion passes, a false
 * ASSERT_ALWAYS logs file:line and the condition and aborts (in a child
 * process), and ASSERT_DEBUG is compiled out exactly when NDEBUG is set. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/assert.h"
#include "check.h"

static int evaluated;

static int touch(int v)
{
    evaluated++;
    return v;
}

/* Runs fn in a child with stderr on a pipe; returns the wait status and the
 * child's stderr in msg. */
static int run_child(void (*fn)(void), char *msg, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        signal(SIGABRT, SIG_DFL);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], msg + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    msg[n] = '\0';
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void always_fails(void)
{
    int ids = 3;
    ASSERT_ALWAYS(ids < 2);
}

static void test_always(void)
{
    evaluated = 0;
    ASSERT_ALWAYS(touch(1) == 1);
    CHECK_EQ_INT(evaluated, 1); /* evaluated once, in every build */
    char msg[512];
    int status = run_child(always_fails, msg, sizeof msg);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(msg, "test_common_assert.c:") != NULL);
    CHECK(strstr(msg, "always_fails") != NULL);
    CHECK(strstr(msg, "assertion failed: ids < 2") != NULL);
}

static void debug_fails(void)
{
    ASSERT_DEBUG(touch(0) == 1);
}

static void test_debug(void)
{
    evaluated = 0;
    ASSERT_DEBUG(touch(1) == 1);
    char msg[512];
    int status = run_child(debug_fails, msg, sizeof msg);
#ifdef NDEBUG
    CHECK_EQ_INT(evaluated, 0); /* compiled out, condition not evaluated */
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
    CHECK_EQ_INT(evaluated, 1);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(msg, "assertion failed: touch(0) == 1") != NULL);
#endif
}

int main(void)
{
    test_always();
    test_debug();
    return check_exit();
}
