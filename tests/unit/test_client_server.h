/* test_client_server.h — a tiny scripted HTTP server for the client tests.
 *
 * It listens on 127.0.0.1 on a random port in its own thread, reads whole
 * requests (headers, then a Content-Length body) and answers each with the
 * next scripted raw response, so tests control every byte the client parses.
 * It records the last request and counts connections and requests.
 *
 * Script entries are raw HTTP bytes, with two special forms: a response
 * followed by the server closing the connection (close_after), and
 * TS_HANG, which sends nothing and waits for the client to hang up, and
 * TS_DROP, which closes the connection without answering.
 */
#ifndef FLAMEDB_TESTS_TEST_CLIENT_SERVER_H
#define FLAMEDB_TESTS_TEST_CLIENT_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TS_MAX_SCRIPT 256
#define TS_MAX_REQUEST (1 << 20)
#define TS_HANG "<hang>"
#define TS_DROP "<drop>" /* close without answering */

typedef struct ts_server {
    int lfd, port;
    pthread_t thread;
    pthread_mutex_t mu;
    const char *script[TS_MAX_SCRIPT];
    size_t script_len[TS_MAX_SCRIPT]; /* 0: strlen */
    int close_after[TS_MAX_SCRIPT];
    int nscript, next;
    char *request; /* last request, headers and body */
    size_t request_len;
    int accepts, requests;
    volatile int stop;
} ts_server_t;

/* Queues a response; close_after makes the server close after sending it. */
static inline void ts_push(ts_server_t *s, const char *raw, size_t len, int close_after)
{
    pthread_mutex_lock(&s->mu);
    if (s->nscript < TS_MAX_SCRIPT) {
        s->script[s->nscript] = raw;
        s->script_len[s->nscript] = len ? len : strlen(raw);
        s->close_after[s->nscript++] = close_after;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Reads one request; returns its length, 0 at EOF, -1 on error. */
static inline long ts_read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    long want = -1;
    for (;;) {
        if (want >= 0 && len >= (size_t)want) return want;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0 || len == cap) return -1;
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0) return n == 0 && len == 0 ? 0 : -1;
        len += (size_t)n;
        buf[len < cap ? len : cap - 1] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (want < 0 && end != NULL) {
            long body = 0;
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl != NULL && cl < end) body = atol(cl + 17);
            want = (long)(end + 4 - buf) + body;
        }
    }
}

static inline int ts_respond(ts_server_t *s, int fd, long n)
{
    pthread_mutex_lock(&s->mu);
    s->request_len = (size_t)n;
    s->requests++;
    const char *raw = "HTTP/1.1 500 No Script\r\nContent-Length: 0\r\n\r\n";
    size_t len = strlen(raw);
    int close_after = 1;
    if (s->next < s->nscript) {
        raw = s->script[s->next];
        len = s->script_len[s->next];
        close_after = s->close_after[s->next++];
    }
    pthread_mutex_unlock(&s->mu);
    if (strcmp(raw, TS_DROP) == 0) return 1;
    if (strcmp(raw, TS_HANG) == 0) {
        char b[256];
        struct pollfd p = {fd, POLLIN, 0};
        while (poll(&p, 1, 10000) > 0 && read(fd, b, sizeof b) > 0)
            ;
        return 1;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, raw + off, len - off);
        if (w <= 0) return 1;
        off += (size_t)w;
    }
    return close_after;
}

static inline void *ts_main(void *arg)
{
    ts_server_t *s = arg;
    char *buf = malloc(TS_MAX_REQUEST + 1);
    while (!s->stop) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_mutex_lock(&s->mu);
        s->accepts++;
        pthread_mutex_unlock(&s->mu);
        for (;;) {
            long n = ts_read_request(fd, buf, TS_MAX_REQUEST);
            if (n <= 0) break;
            pthread_mutex_lock(&s->mu);
            memcpy(s->request, buf, (size_t)n);
            s->request[n] = '\0';
            pthread_mutex_unlock(&s->mu);
            if (ts_respond(s, fd, n)) break;
        }
        close(fd);
    }
    free(buf);
    return NULL;
}

static inline int ts_start(ts_server_t *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->request = calloc(1, TS_MAX_REQUEST + 1);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->lfd, 16) != 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thread, NULL, ts_main, s);
}

static inline void ts_stop(ts_server_t *s)
{
    s->stop = 1;
    pthread_join(s->thread, NULL);
    close(s->lfd);
    free(s->request);
    pthread_mutex_destroy(&s->mu);
}

/* Copy of the last request (caller frees). */
static inline char *ts_last_request(ts_server_t *s, size_t *len)
{
    pthread_mutex_lock(&s->mu);
    char *r = malloc(s->request_len + 1);
    memcpy(r, s->request, s->request_len + 1);
    if (len) *len = s->request_len;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static inline int ts_count(ts_server_t *s, int *requests)
{
    pthread_mutex_lock(&s->mu);
    int a = s->accepts;
    if (requests) *requests = s->requests;
    pthread_mutex_unlock(&s->mu);
    return a;
}

#endif
