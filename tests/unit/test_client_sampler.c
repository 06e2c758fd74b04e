/* test_client_sampler.c — flamedb_sampler_start/stop in this process, with
 * no node listening: options refused with their reason, one sampler at a
 * time, samples taken while the process burns CPU, every failed push reported
 * and counted without stopping anything, SIGPROF's previous action back after
 * stop (a default action becomes SIG_IGN), a new start after a stop, and
 * profiles over max_pending_bytes lost and counted. */
#define _GNU_SOURCE
#include "check.h"

#include <signal.h>
#include <time.h>

#include "client/flamedb_sampler.h"

/* A port nothing listens on: the discard port of loopback, refused at once. */
#define NOWHERE "http://127.0.0.1:9"

static volatile double sink;

__attribute__((noinline)) static void burn(double secs)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    double end = t.tv_sec + t.tv_nsec / 1e9 + secs, now;
    do {
        for (int i = 0; i < 20000; i++)
            sink = sink * 1.0000001 + i;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        now = t.tv_sec + t.tv_nsec / 1e9;
    } while (now < end);
}

static int push_errors, last_error;

static void on_error(void *arg, int err, const char *msg)
{
    push_errors++;
    last_error = err;
    CHECK(msg != NULL && msg[0] != '\0');
}

static void test_bad_options(flamedb_client_t *c)
{
    flamedb_sampler_t *s = (flamedb_sampler_t *)1;
    char err[256] = "";
    flamedb_sampler_opts_t o = {0};
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL && strstr(err, "app_name") != NULL);
    const char *bad_app[] = {"", "a b", "a{b}", "x\n"};
    for (size_t i = 0; i < sizeof bad_app / sizeof *bad_app; i++) {
        o.app_name = bad_app[i];
        CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err),
                     FLAMEDB_ERR_INVALID_ARGUMENT);
    }
    o.app_name = "app";
    const char *bad_labels[] = {"env", "=x", "env=a}", "env=\"x\"", "a=b,,c=d", "a-b=c"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof *bad_labels; i++) {
        o.labels = bad_labels[i];
        CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err),
                     FLAMEDB_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err, "labels") != NULL);
    }
    o.labels = NULL;
    flamedb_sampler_opts_t limits[] = {
        {.app_name = "a", .rate_hz = 1001},
        {.app_name = "a", .rate_hz = -1},
        {.app_name = "a", .push_interval_ms = 999},
        {.app_name = "a", .max_depth = 257},
        {.app_name = "a", .ring_capacity = ((size_t)1 << 20) + 1},
        {.app_name = "a", .max_pending_bytes = ((size_t)1 << 30) + 1},
        {.app_name = "a", .retry_max_ms = 999}};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++)
        CHECK_EQ_INT(flamedb_sampler_start(c, &limits[i], &s, err, sizeof err),
                     FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(flamedb_sampler_start(NULL, &o, &s, err, sizeof err),
                 FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(flamedb_sampler_stop(NULL), 0);
}

static int handler_calls;
static void own_handler(int sig)
{
    handler_calls++;
}

static void test_run_without_node(flamedb_client_t *c)
{
    struct sigaction mine = {.sa_handler = own_handler}, now;
    sigaction(SIGPROF, &mine, NULL);
    flamedb_sampler_opts_t o = {.app_name = "selftest",
                                .labels = "k=v",
                                .push_interval_ms = 1000,
                                .on_push_error = on_error};
    flamedb_sampler_t *s, *other;
    char err[256];
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err), 0);
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &other, err, sizeof err),
                 FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(other == NULL && strstr(err, "already running") != NULL);
    burn(1.5); /* at least one push interval passes while sampling */
    flamedb_sampler_stats_t st;
    flamedb_sampler_stats(s, &st);
    CHECK(st.samples >= 100 && st.samples <= 200); /* 1.5 s x 100 Hz */
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.pushes, 0);
    /* every interval so far waits for a retry (a busy machine: more than one) */
    CHECK(st.push_failures >= 1);
    CHECK(st.pending >= 1);
    CHECK(st.pending_bytes > 0);
    CHECK_EQ_INT(st.lost_profiles, 0);
    CHECK_EQ_INT(flamedb_sampler_stop(s), FLAMEDB_ERR_UNAVAILABLE); /* the last push */
    CHECK(push_errors >= 2);
    CHECK_EQ_INT(last_error, FLAMEDB_ERR_UNAVAILABLE);
    CHECK_EQ_INT(handler_calls, 0);
    sigaction(SIGPROF, NULL, &now);
    CHECK(now.sa_handler == own_handler); /* the previous action is back */

    /* a second sampler once the first stopped; SIG_DFL comes back as SIG_IGN */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGPROF, &dfl, NULL);
    o.on_push_error = NULL;
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err), 0);
    burn(0.2);
    CHECK_EQ_INT(flamedb_sampler_stop(s), FLAMEDB_ERR_UNAVAILABLE);
    sigaction(SIGPROF, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);

    /* a queue of one byte holds no profile: each interval is lost, and counted */
    o.max_pending_bytes = 1;
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err), 0);
    memset(&st, 0, sizeof st);
    for (int i = 0; i < 50 && st.lost_profiles == 0; i++) { /* an interval ends: 1 s */
        burn(0.2);
        flamedb_sampler_stats(s, &st);
    }
    CHECK(st.lost_profiles >= 1);
    CHECK(st.lost_samples > 0 && st.lost_samples <= st.samples);
    CHECK_EQ_INT(st.pending, 0);
    CHECK_EQ_INT(st.pending_bytes, 0);
    CHECK_EQ_INT(st.push_failures, 0); /* nothing was left to try */
    flamedb_sampler_stop(s);
}

int main(void)
{
    flamedb_client_t *c;
    char err[256];
    CHECK_EQ_INT(flamedb_client_new(NOWHERE, NULL, &c, err, sizeof err), 0);
    test_bad_options(c);
    test_run_without_node(c);
    flamedb_client_free(c);
    return check_exit();
}
