/* test_client_sampler_stop.c — flamedb_sampler_stop() returns within the
 * sampler's stop_timeout_ms when the node accepts the push's connection and
 * never answers (a real socket on 127.0.0.1: its thread accepts and holds
 * every connection without reading or writing), although the client's own
 * I/O timeout is far longer: the push in flight is abandoned, reported as
 * FLAMEDB_ERR_TIMEOUT and its profile lost. The whole test is bounded by an
 * alarm: a stop that hangs ends it as a failure. */
#define _GNU_SOURCE
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/flamedb_sampler.h"

#define STOP_MS 500
#define IO_TIMEOUT_MS 120000 /* the client alone would wait this long */
#define TEST_BOUND_S 60      /* the alarm: past it the test fails */
#define MAX_HELD 64

/* A listener that accepts connections and never answers. */
typedef struct silent {
    int lfd, port;
    int held[MAX_HELD], nheld;
    pthread_mutex_t mu;
    volatile int stop;
    pthread_t thread;
} silent_t;

static void *silent_main(void *arg)
{
    silent_t *s = arg;
    while (!s->stop) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_mutex_lock(&s->mu);
        if (s->nheld < MAX_HELD)
            s->held[s->nheld++] = fd;
        else
            close(fd);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static void silent_start(silent_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    CHECK(s->lfd >= 0);
    CHECK_EQ_INT(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(listen(s->lfd, 16), 0);
    CHECK_EQ_INT(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    CHECK_EQ_INT(pthread_create(&s->thread, NULL, silent_main, s), 0);
}

static int silent_accepted(silent_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->nheld;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void silent_stop(silent_t *s)
{
    s->stop = 1;
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nheld; i++)
        close(s->held[i]);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
}

static volatile double sink;

static double now_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void burn(double secs)
{
    double end = now_s(CLOCK_PROCESS_CPUTIME_ID) + secs;
    while (now_s(CLOCK_PROCESS_CPUTIME_ID) < end)
        for (int i = 0; i < 20000; i++)
            sink = sink * 1.0000001 + i;
}

static int timeouts, other_errors;

static void on_error(void *arg, int err, const char *msg)
{
    if (err == FLAMEDB_ERR_TIMEOUT)
        timeouts++;
    else
        other_errors++;
}

int main(void)
{
    alarm(TEST_BOUND_S);
    silent_t srv;
    silent_start(&srv);
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
    flamedb_opts_t co = {.io_timeout_ms = IO_TIMEOUT_MS};
    flamedb_client_t *c;
    CHECK_EQ_INT(flamedb_client_new(url, &co, &c, err, sizeof err), 0);
    flamedb_sampler_opts_t o = {.app_name = "stopper",
                                .push_interval_ms = 1000,
                                .stop_timeout_ms = STOP_MS,
                                .on_push_error = on_error};
    flamedb_sampler_opts_t bad = o;
    flamedb_sampler_t *s;
    bad.stop_timeout_ms = -1;
    CHECK_EQ_INT(flamedb_sampler_start(c, &bad, &s, err, sizeof err), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "stop_timeout_ms") != NULL);
    CHECK_EQ_INT(flamedb_sampler_start(c, &o, &s, err, sizeof err), 0);
    /* an interval ends and its push goes out: the node accepts, then nothing */
    double wall_end = now_s(CLOCK_MONOTONIC) + 20;
    while (silent_accepted(&srv) == 0 && now_s(CLOCK_MONOTONIC) < wall_end)
        burn(0.1);
    CHECK(silent_accepted(&srv) >= 1);
    flamedb_sampler_stats_t st;
    flamedb_sampler_stats(s, &st);
    CHECK(st.samples > 0);
    CHECK_EQ_INT(st.pushes, 0);
    double t0 = now_s(CLOCK_MONOTONIC);
    int rc = flamedb_sampler_stop(s); /* the push in flight, then the last one */
    double took = now_s(CLOCK_MONOTONIC) - t0;
    fprintf(stderr, "stop took %.3f s (stop_timeout_ms %d)\n", took, STOP_MS);
    CHECK_EQ_INT(rc, FLAMEDB_ERR_TIMEOUT);
    CHECK(took < STOP_MS / 1000.0 + 2.0); /* the timeout and an encode, on a busy machine */
    CHECK(timeouts >= 1);                 /* the abandoned push, reported */
    CHECK_EQ_INT(other_errors, 0);

    flamedb_client_free(c);
    silent_stop(&srv);
    return check_exit();
}
