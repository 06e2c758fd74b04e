/* crash_trace.c — linked into every unit test: a test that dies of SIGSEGV,
 * SIGBUS, SIGFPE or SIGILL first prints its stack to stderr, so a crash
 * that happens once in many runs leaves in the CI log where it happened
 * (function+offset of the exported functions: the test executables export
 * their symbols; an address in a static function resolves with addr2line
 * against the same build, less the load address printed with it). It then
 * dies as it would have. Not under AddressSanitizer, whose own report says
 * more. */
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CRASH_TRACE_DEPTH 64
#define CRASH_TRACE_ALT_STACK (64 * 1024) /* a main-thread stack overflow still prints */

extern char __executable_start;

static void crash_trace(int sig)
{
    char head[128];
    int n = snprintf(head, sizeof head, "\n*** signal %d; executable loaded at %p; stack:\n", sig,
                     (void *)&__executable_start);
    if (n > 0) (void)!write(STDERR_FILENO, head, (size_t)n);
    void *frames[CRASH_TRACE_DEPTH];
    backtrace_symbols_fd(frames, backtrace(frames, CRASH_TRACE_DEPTH), STDERR_FILENO);
    raise(sig); /* SA_RESETHAND: the default action, once this returns */
}

__attribute__((constructor)) static void crash_trace_install(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    static uint8_t alt[CRASH_TRACE_ALT_STACK];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    void *warm[1];
    (void)backtrace(warm, 1); /* loads the unwinder now, not inside the handler */
    (void)sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = crash_trace;
    sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        (void)sigaction(sigs[i], &sa, NULL);
#endif
}
