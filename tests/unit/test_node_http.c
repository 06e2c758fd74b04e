/* test_node_http.c — the HTTP/1.1 server on a real loopback socket.
 *
 * A server with small limits runs its loop in a second thread; the test talks
 * to it with blocking sockets (every read has a timeout) and checks framing,
 * keep-alive, pipelining, limits, timeouts, deferred answers and draining.
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <signal.h>
#include <stdatomic.h>
#include <uv.h>

#include "check.h"
#include "node/http_server.h"

typedef struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t later;             /* answers /slow */
    http_exchange_t *slow_ex;     /* pending /slow exchange */
    atomic_int slow_seen;         /* /slow requests received (read by the test thread) */
    atomic_int slow_answered;     /* /slow responses sent */
    atomic_int held;              /* /gone requests held (answered only when their client goes) */
    atomic_int gone;              /* gone callbacks run */
    atomic_int streams_released;  /* /stream producers released */
    atomic_int streams_completed; /* ... of which completed */
    http_server_t *srv;
    pthread_t thread;
    int port;
    int drained;
    int observed;
} fixture_t;

static void respond_text(http_exchange_t *ex, int status, const char *text)
{
    http_response_t r = {.status = status, .content_type = "text/plain"};
    buf_init(&r.body, BUF_UNLIMITED);
    buf_append_str(&r.body, text);
    http_respond(ex, &r);
}

static void on_later(uv_timer_t *t)
{
    fixture_t *f = t->data;
    respond_text(f->slow_ex, 200, "slow done");
    f->slow_ex = NULL;
    atomic_fetch_add(&f->slow_answered, 1);
}

typedef struct held {
    fixture_t *f;
    http_exchange_t *ex;
} held_t;

/* The client of a held /gone request went away: answer it (into the void). */
static void on_gone(void *arg)
{
    held_t *h = arg;
    atomic_fetch_add(&h->f->gone, 1);
    respond_text(h->ex, 200, "answered after gone");
    free(h);
}

/* The body of /stream: byte i is 'a' + i % 26, n bytes produced in slices of
 * at most the size asked, length announced (n, or more when it lies). */
typedef struct stream_body {
    fixture_t *f;
    size_t n, at;
    int fewer; /* slices of a third of what is asked (a producer may give fewer) */
} stream_body_t;

static int stream_produce(void *arg, buf_t *out, size_t want, int *done)
{
    stream_body_t *b = arg;
    if (b->fewer) want = want / 3 + 1;
    for (size_t k = 0; k < want && b->at < b->n; k++, b->at++)
        if (buf_append_byte(out, (uint8_t)('a' + b->at % 26)) != 0) return ERR_NOMEM;
    *done = b->at == b->n;
    return 0;
}

static void stream_release(void *arg, int completed)
{
    stream_body_t *b = arg;
    atomic_fetch_add(&b->f->streams_completed, completed);
    atomic_fetch_add(&b->f->streams_released, 1);
    free(b);
}

static void respond_stream(fixture_t *f, http_exchange_t *ex, const http_request_t *r)
{
    stream_body_t *b = malloc(sizeof *b);
    const char *lie = http_request_param(r, "lie");
    int unknown = http_request_param(r, "unknown") != NULL;
    *b = (stream_body_t){f, (size_t)atol(http_request_param(r, "n")), 0, unknown};
    http_response_t head = {.status = 200, .content_type = "text/plain"};
    buf_init(&head.body, 0);
    uint64_t length = unknown ? HTTP_LENGTH_UNKNOWN : b->n + (lie ? (size_t)atol(lie) : 0);
    http_body_producer_t p = {length, stream_produce, stream_release, b};
    http_respond_stream(ex, &head, &p);
}

static void handler(void *ctx, http_exchange_t *ex)
{
    fixture_t *f = ctx;
    const http_request_t *r = http_exchange_request(ex);
    char out[512];
    if (strcmp(r->path, "/gone") == 0) { /* held until the client goes */
        held_t *h = malloc(sizeof *h);
        *h = (held_t){f, ex};
        http_exchange_on_gone(ex, on_gone, h);
        atomic_fetch_add(&f->held, 1);
        return;
    }
    if (strcmp(r->path, "/slow") == 0 && f->slow_ex == NULL) {
        f->slow_ex = ex; /* answered later, from a timer */
        atomic_fetch_add(&f->slow_seen, 1);
        uv_timer_start(&f->later, on_later, 300, 0);
        return;
    }
    if (strcmp(r->path, "/stream") == 0) {
        respond_stream(f, ex, r);
        return;
    }
    if (strcmp(r->path, "/big") == 0) { /* a response of n bytes */
        http_response_t big = {.status = 200, .content_type = "text/plain"};
        size_t n = (size_t)atol(http_request_param(r, "n"));
        buf_init(&big.body, BUF_UNLIMITED);
        for (size_t i = 0; i < n; i++)
            buf_append_byte(&big.body, 'z');
        http_respond(ex, &big);
        return;
    }
    const char *a = http_request_param(r, "a"), *b = http_request_param(r, "b");
    const char *h = http_request_header(r, "x-test");
    snprintf(out, sizeof out, "%s %s a=%s b=%s h=%s len=%zu", r->method_name, r->path, a ? a : "-",
             b ? b : "-", h ? h : "-", r->body_len);
    respond_text(ex, 200, out);
}

static void observer(void *ctx, const http_exchange_t *ex, int status, uint64_t ms)
{
    fixture_t *f = ctx;
    f->observed++;
}

static void on_drained(void *arg)
{
    fixture_t *f = arg;
    f->drained = 1;
    uv_close((uv_handle_t *)&f->stop, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
}

static void on_stop(uv_async_t *a)
{
    fixture_t *f = a->data;
    http_server_drain(f->srv, 2000, on_drained, f);
}

static void *loop_main(void *arg)
{
    fixture_t *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fixture_start(fixture_t *f, const http_server_limits_t *lim)
{
    memset(f, 0, sizeof *f);
    atomic_init(&f->slow_seen, 0);
    atomic_init(&f->slow_answered, 0);
    uv_loop_init(&f->loop);
    uv_async_init(&f->loop, &f->stop, on_stop);
    uv_timer_init(&f->loop, &f->later);
    f->stop.data = f->later.data = f;
    CHECK(http_server_new(&f->loop, lim, handler, observer, f, &f->srv) == 0);
    errmsg_t em = {{0}};
    CHECK(http_server_listen(f->srv, "127.0.0.1", 0, &em) == 0);
    f->port = http_server_port(f->srv);
    CHECK(f->port > 0);
    pthread_create(&f->thread, NULL, loop_main, f);
}

static void fixture_stop(fixture_t *f)
{
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    CHECK(f->drained);
    http_server_free(f->srv);
    CHECK(uv_loop_close(&f->loop) == 0);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads one response (head + Content-Length body) into out; returns the status
 * or -1 on EOF/timeout. Bytes after it stay in *carry for the next call. */
static int read_response(int fd, char *out, size_t cap, buf_t *carry)
{
    for (int rounds = 0; rounds < 10000; rounds++) {
        char *end = carry->data ? strstr((char *)carry->data, "\r\n\r\n") : NULL;
        if (end != NULL) {
            size_t head = (size_t)(end + 4 - (char *)carry->data);
            const char *cl = strcasestr((char *)carry->data, "Content-Length:");
            size_t body = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
            int status = atoi((char *)carry->data + 9);
            if (status == 100) {
                memmove(carry->data, carry->data + head, carry->len - head + 1);
                carry->len -= head;
                continue;
            }
            if (carry->len >= head + body) {
                size_t n = head + body < cap - 1 ? head + body : cap - 1;
                memcpy(out, carry->data, n);
                out[n] = 0;
                memmove(carry->data, carry->data + head + body, carry->len - head - body + 1);
                carry->len -= head + body;
                return status;
            }
        }
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r <= 0) return -1;
        buf_append(carry, tmp, (size_t)r);
    }
    return -1;
}

static int roundtrip(int port, const char *req, char *out, size_t cap)
{
    int fd = dial(port);
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    send_all(fd, req, strlen(req));
    int status = read_response(fd, out, cap, &carry);
    buf_free(&carry);
    close(fd);
    return status;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

static void test_basic_and_decoding(fixture_t *f)
{
    char out[4096];
    CHECK_EQ_INT(roundtrip(f->port,
                           "GET /a%2Fb?a=1&b=x%20y+z&c HTTP/1.1\r\nHost: x\r\nX-Test: hi\r\n\r\n",
                           out, sizeof out),
                 200);
    CHECK_EQ_STR(body_of(out), "GET /a/b a=1 b=x y z h=hi len=0");
    CHECK(strstr(out, "Connection: keep-alive") != NULL);
    CHECK_EQ_INT(roundtrip(f->port, "GET /?a=%zz HTTP/1.1\r\n\r\n", out, sizeof out), 400);
    CHECK(strstr(out, "\"code\":\"invalid_parameter\"") != NULL);
    CHECK_EQ_INT(roundtrip(f->port, "GET /?a=%00 HTTP/1.1\r\n\r\n", out, sizeof out), 400);
    CHECK_EQ_INT(roundtrip(f->port, "GARBAGE\r\n\r\n", out, sizeof out), 400);
    CHECK(strstr(out, "malformed HTTP request") != NULL);
}

static void test_keepalive_pipelining_bodies(fixture_t *f)
{
    char out[4096];
    int fd = dial(f->port);
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    const char *two =
        "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /q?a=2 HTTP/1.1\r\n\r\n";
    send_all(fd, two, strlen(two));
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "POST /p a=- b=- h=- len=5");
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "GET /q a=2 b=- h=- len=0");
    const char *chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    send_all(fd, chunked, strlen(chunked));
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "POST /c a=- b=- h=- len=7");
    const char *expect = "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    send_all(fd, expect, strlen(expect));
    char tmp[64] = {0};
    ssize_t r = recv(fd, tmp, 25, MSG_WAITALL);
    CHECK(r == 25 && strncmp(tmp, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    send_all(fd, "xyz", 3);
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "POST /e a=- b=- h=- len=3");
    const char *last = "GET /z HTTP/1.1\r\nConnection: close\r\n\r\n";
    send_all(fd, last, strlen(last));
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK(strstr(out, "Connection: close") != NULL);
    CHECK_EQ_INT(recv(fd, tmp, sizeof tmp, 0), 0); /* server closed after it */
    buf_free(&carry);
    close(fd);
}

static void test_limits(fixture_t *f)
{
    char out[4096];
    /* 413 from Content-Length alone, before any body byte is sent */
    CHECK_EQ_INT(
        roundtrip(f->port, "POST /big HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", out, sizeof out),
        413);
    CHECK(strstr(out, "\"code\":\"too_large\"") != NULL);
    CHECK(strstr(out, "max-body-bytes") != NULL);
    /* chunked bodies are counted as they arrive */
    char req[8192];
    char chunk[3000];
    memset(chunk, 'x', sizeof chunk);
    int n = snprintf(req, sizeof req, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 2; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "bb8\r\n%.3000s\r\n", chunk);
    CHECK_EQ_INT(roundtrip(f->port, req, out, sizeof out), 413);
    /* header block over max_header_bytes */
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'h', 5000);
    strcpy(req + n + 5000, "\r\n\r\n");
    CHECK_EQ_INT(roundtrip(f->port, req, out, sizeof out), 431);
    /* the server-wide budget of buffered bytes (4000 here) counts the bytes
     * that arrived, not those announced: a stalled request announcing 3000
     * bytes holds the 3 it sent, and another 3000-byte body fits */
    int fd = dial(f->port);
    const char *hold = "POST /hold HTTP/1.1\r\nContent-Length: 3000\r\n\r\nabc";
    send_all(fd, hold, strlen(hold));
    usleep(100 * 1000);
    snprintf(req, sizeof req, "POST /b HTTP/1.1\r\nContent-Length: 3000\r\n\r\n%.3000s", chunk);
    CHECK_EQ_INT(roundtrip(f->port, req, out, sizeof out), 200);
    /* once the held request's bytes are in memory, the budget refuses */
    send_all(fd, chunk, 2500);
    usleep(100 * 1000);
    CHECK_EQ_INT(roundtrip(f->port, req, out, sizeof out), 503);
    CHECK(strstr(out, "Retry-After: 1") != NULL);
    CHECK(strstr(out, "max-buffered-bytes") != NULL);
    close(fd);
    /* responses held for the client count too: one larger than the budget is
     * refused (small ones, like errors, always go out) */
    CHECK_EQ_INT(roundtrip(f->port, "GET /big?n=1000 HTTP/1.1\r\n\r\n", out, sizeof out), 200);
    CHECK_EQ_INT(roundtrip(f->port, "GET /big?n=100000 HTTP/1.1\r\n\r\n", out, sizeof out), 503);
    CHECK(strstr(out, "a response of 100000 bytes") != NULL);
}

static void test_timeouts(fixture_t *f)
{
    char tmp[4096];
    struct timeval t0, t1;
    /* idle connection: closed silently after idle_timeout (300 ms) */
    int fd = dial(f->port);
    gettimeofday(&t0, NULL);
    CHECK_EQ_INT(recv(fd, tmp, sizeof tmp, 0), 0);
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    CHECK(ms >= 250 && ms < 3000);
    close(fd);
    /* slowloris: a byte at a time does not extend request_timeout (600 ms) */
    fd = dial(f->port);
    const char *part = "GET / HTTP/1.1\r\nX-Slow: ";
    send_all(fd, part, strlen(part));
    for (int i = 0; i < 10; i++) {
        usleep(100 * 1000);
        send_all(fd, "a", 1);
    }
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    CHECK_EQ_INT(read_response(fd, tmp, sizeof tmp, &carry), 408);
    buf_free(&carry);
    close(fd);
}

static void test_deferred_and_fairness(fixture_t *f)
{
    char out[4096];
    int fd = dial(f->port);
    const char *slow = "GET /slow HTTP/1.1\r\n\r\n";
    send_all(fd, slow, strlen(slow));
    /* /fast is answered while /slow still waits for its timer, not behind it
     * (an ordering check: a loaded machine makes wall-clock bounds flaky) */
    CHECK_EQ_INT(roundtrip(f->port, "GET /fast HTTP/1.1\r\n\r\n", out, sizeof out), 200);
    CHECK_EQ_INT(atomic_load(&f->slow_answered), 0);
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "slow done");
    buf_free(&carry);
    close(fd);
}

/* Runs on its own server with long timeouts so held connections cannot idle
 * out, and without sleeps: a completed request proves a connection is counted,
 * and the kernel hands the server a client's FIN before a connection the client
 * opens afterwards, so the server sees each close before the next accept. */
/* A client that closes its connection while its request is handled is
 * noticed at once (not when the answer is written): the handler hears it,
 * answers, and the connection is closed. Bytes a client pipelines while its
 * request is handled still make the next request. */
static void test_client_gone(fixture_t *f)
{
    char out[4096];
    int fd = dial(f->port);
    const char *req = "GET /gone HTTP/1.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    for (int i = 0; i < 500 && atomic_load(&f->held) == 0; i++)
        usleep(10 * 1000);
    CHECK_EQ_INT(atomic_load(&f->held), 1);
    CHECK_EQ_INT(atomic_load(&f->gone), 0);
    close(fd);
    for (int i = 0; i < 500 && atomic_load(&f->gone) == 0; i++)
        usleep(10 * 1000);
    CHECK_EQ_INT(atomic_load(&f->gone), 1);
    /* a reset (SO_LINGER 0) is noticed the same way */
    fd = dial(f->port);
    send_all(fd, req, strlen(req));
    for (int i = 0; i < 500 && atomic_load(&f->held) < 2; i++)
        usleep(10 * 1000);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    for (int i = 0; i < 500 && atomic_load(&f->gone) < 2; i++)
        usleep(10 * 1000);
    CHECK_EQ_INT(atomic_load(&f->gone), 2);
    /* a client that only half-closes is told too, and still gets the answer */
    fd = dial(f->port);
    send_all(fd, req, strlen(req));
    for (int i = 0; i < 500 && atomic_load(&f->held) < 3; i++)
        usleep(10 * 1000);
    shutdown(fd, SHUT_WR);
    buf_t half;
    buf_init(&half, BUF_UNLIMITED);
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &half), 200);
    CHECK_EQ_STR(body_of(out), "answered after gone");
    CHECK(strstr(out, "Connection: close") != NULL);
    CHECK_EQ_INT(atomic_load(&f->gone), 3);
    CHECK_EQ_INT(recv(fd, out, sizeof out, 0), 0); /* then closed */
    buf_free(&half);
    close(fd);
    /* a request pipelined while /slow is handled is read, kept and served next */
    fd = dial(f->port);
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    int seen = atomic_load(&f->slow_seen);
    const char *slow = "GET /slow HTTP/1.1\r\n\r\n";
    send_all(fd, slow, strlen(slow));
    for (int i = 0; i < 500 && atomic_load(&f->slow_seen) == seen; i++)
        usleep(10 * 1000);
    const char *next = "GET /next?a=7 HTTP/1.1\r\n\r\n";
    send_all(fd, next, strlen(next));
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "slow done");
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "GET /next a=7 b=- h=- len=0");
    CHECK_EQ_INT(atomic_load(&f->gone), 3); /* a request that stays is never "gone" */
    buf_free(&carry);
    close(fd);
}

static void test_max_connections(fixture_t *f)
{
    int fds[4];
    char out[4096] = "";
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    const char *get = "GET /held HTTP/1.1\r\n\r\n";
    for (int i = 0; i < 4; i++) {
        fds[i] = dial(f->port);
        CHECK(fds[i] >= 0);
        send_all(fds[i], get, strlen(get));
        CHECK_EQ_INT(read_response(fds[i], out, sizeof out, &carry), 200);
    }
    CHECK_EQ_INT(roundtrip(f->port, "GET / HTTP/1.1\r\n\r\n", out, sizeof out), 503);
    CHECK(strstr(out, "max-connections") != NULL);
    CHECK(strstr(out, "Retry-After: 1") != NULL);
    /* the refusal did not disturb the held connections */
    send_all(fds[0], get, strlen(get));
    CHECK_EQ_INT(read_response(fds[0], out, sizeof out, &carry), 200);
    /* a client that closes a connection and at once opens the next gets a slot */
    close(fds[0]);
    fds[0] = dial(f->port);
    send_all(fds[0], get, strlen(get));
    CHECK_EQ_INT(read_response(fds[0], out, sizeof out, &carry), 200);
    CHECK_EQ_STR(body_of(out), "GET /held a=- b=- h=- len=0");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    CHECK_EQ_INT(roundtrip(f->port, "GET / HTTP/1.1\r\n\r\n", out, sizeof out), 200);
    buf_free(&carry);
}

static void test_drain(fixture_t *f)
{
    /* an in-flight request finishes during the drain, with Connection: close */
    char out[4096];
    int fd = dial(f->port);
    const char *slow = "GET /slow HTTP/1.1\r\n\r\n";
    send_all(fd, slow, strlen(slow));
    /* drain only once the server holds the request (bounded wait: 5 s) */
    for (int i = 0; i < 500 && atomic_load(&f->slow_seen) == 0; i++)
        usleep(10 * 1000);
    CHECK(atomic_load(&f->slow_seen) == 1);
    uv_async_send(&f->stop);
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
    CHECK(strstr(out, "Connection: close") != NULL);
    buf_free(&carry);
    close(fd);
    pthread_join(f->thread, NULL);
    CHECK(f->drained);
    CHECK(dial(f->port) < 0); /* the listener is gone */
    http_server_free(f->srv);
    CHECK(uv_loop_close(&f->loop) == 0);
}

/* Waits (bounded) until the server released n producers. */
static void wait_released(fixture_t *f, int n)
{
    for (int i = 0; i < 500 && atomic_load(&f->streams_released) < n; i++)
        usleep(10 * 1000);
    CHECK_EQ_INT(atomic_load(&f->streams_released), n);
}

/* Reads until EOF (bounded): the bytes received. */
static size_t read_to_eof(int fd, buf_t *into)
{
    char tmp[65536];
    for (int i = 0; i < 100000; i++) {
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r <= 0) break;
        buf_append(into, tmp, (size_t)r);
    }
    return into->len;
}

static void test_streamed_bodies(fixture_t *f)
{
    /* a body many slices long, then the same connection serves the next request */
    size_t n = 5 * HTTP_STREAM_SLICE_BYTES + 123; /* 1310843 */
    int fd = dial(f->port);
    char req[256];
    snprintf(req, sizeof req, "GET /stream?n=%zu HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n", n);
    send_all(fd, req, strlen(req));
    buf_t carry;
    buf_init(&carry, BUF_UNLIMITED);
    char *out = malloc(n + 4096);
    CHECK_EQ_INT(read_response(fd, out, n + 4096, &carry), 200);
    const char *body = body_of(out);
    CHECK(strlen(body) == n);
    int same = 1;
    for (size_t i = 0; i < n; i++)
        same &= body[i] == 'a' + (char)(i % 26);
    CHECK(same);
    CHECK_EQ_INT(read_response(fd, out, n + 4096, &carry), 200);
    CHECK_EQ_STR(body_of(out), "GET /next a=- b=- h=- len=0");
    close(fd);
    wait_released(f, 1);
    CHECK_EQ_INT(atomic_load(&f->streams_completed), 1);

    /* a producer that ends short of its Content-Length: the connection is cut */
    fd = dial(f->port);
    snprintf(req, sizeof req, "GET /stream?n=%zu&lie=7 HTTP/1.1\r\n\r\n", n);
    send_all(fd, req, strlen(req));
    buf_reset(&carry);
    size_t got = read_to_eof(fd, &carry);
    const char *end = got > 0 ? strstr((const char *)carry.data, "\r\n\r\n") : NULL;
    CHECK(end != NULL && strstr((const char *)carry.data, "Content-Length: 1310850") != NULL);
    /* the body stops short of what was announced: a client sees it cut */
    CHECK(end != NULL && got - (size_t)(end + 4 - (const char *)carry.data) < n + 7);
    close(fd);
    wait_released(f, 2);
    CHECK_EQ_INT(atomic_load(&f->streams_completed), 1);

    /* a client that resets the connection after the head */
    n = 200 * HTTP_STREAM_SLICE_BYTES;
    fd = dial(f->port);
    snprintf(req, sizeof req, "GET /stream?n=%zu HTTP/1.1\r\n\r\n", n);
    send_all(fd, req, strlen(req));
    char tmp[4096];
    CHECK(recv(fd, tmp, sizeof tmp, 0) > 0);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    wait_released(f, 3);
    CHECK_EQ_INT(atomic_load(&f->streams_completed), 1);

    /* a client that stops reading: cut at request-timeout */
    fd = dial(f->port);
    send_all(fd, req, strlen(req));
    wait_released(f, 4);
    CHECK_EQ_INT(atomic_load(&f->streams_completed), 1);
    close(fd);
    buf_free(&carry);
    free(out);
}

/* The body of a chunked response (data from its head on): 1 when its
 * chunks are well framed and end with the last chunk, its bytes in body. */
static int unchunk(const char *data, size_t n, buf_t *body)
{
    const char *p = strstr(data, "\r\n\r\n"), *end = data + n;
    if (p == NULL) return 0;
    p += 4;
    for (int i = 0; i < 100000 && p < end; i++) {
        char *eol;
        unsigned long size = strtoul(p, &eol, 16);
        if (eol + 2 > end || eol[0] != '\r' || eol[1] != '\n') return 0;
        p = eol + 2;
        if (size == 0) return p + 2 == end && p[0] == '\r' && p[1] == '\n';
        if (p + size + 2 > end || p[size] != '\r' || p[size + 1] != '\n') return 0;
        buf_append(body, p, size);
        p += size + 2;
    }
    return 0;
}

static int is_letters(const buf_t *b, size_t n)
{
    int same = b->len == n;
    for (size_t i = 0; same && i < n; i++)
        same &= b->data[i] == 'a' + (char)(i % 26);
    return same;
}

/* A body of unknown length: chunks to an HTTP/1.1 client (the connection
 * then serves the next request), ended by closing to an HTTP/1.0 one. */
static void test_chunked_bodies(fixture_t *f)
{
    int released = atomic_load(&f->streams_released);
    int completed = atomic_load(&f->streams_completed);
    size_t sizes[] = {3 * HTTP_STREAM_SLICE_BYTES + 17, 0, 5};
    for (size_t k = 0; k < 3; k++) {
        int fd = dial(f->port);
        char req[256];
        snprintf(req, sizeof req, "GET /stream?n=%zu&unknown=1 HTTP/1.1\r\n\r\n", sizes[k]);
        send_all(fd, req, strlen(req));
        buf_t raw, body;
        buf_init(&raw, BUF_UNLIMITED);
        buf_init(&body, BUF_UNLIMITED);
        char tmp[65536];
        for (int i = 0; i < 100000; i++) { /* up to the last chunk */
            if (raw.len >= 5 && memcmp(raw.data + raw.len - 5, "0\r\n\r\n", 5) == 0) break;
            ssize_t got = recv(fd, tmp, sizeof tmp, 0);
            if (got <= 0) break;
            buf_append(&raw, tmp, (size_t)got);
        }
        buf_append(&raw, "", 0);
        const char *text = (const char *)raw.data;
        CHECK(text != NULL && strstr(text, "Transfer-Encoding: chunked\r\n") != NULL);
        CHECK(text != NULL && strstr(text, "Content-Length") == NULL);
        CHECK(text != NULL && unchunk(text, raw.len, &body));
        CHECK(is_letters(&body, sizes[k]));
        const char *next = "GET /next HTTP/1.1\r\n\r\n"; /* kept alive */
        send_all(fd, next, strlen(next));
        buf_t carry;
        buf_init(&carry, BUF_UNLIMITED);
        char out[4096];
        CHECK_EQ_INT(read_response(fd, out, sizeof out, &carry), 200);
        CHECK_EQ_STR(body_of(out), "GET /next a=- b=- h=- len=0");
        close(fd);
        buf_free(&carry);
        buf_free(&raw);
        buf_free(&body);
        wait_released(f, released + (int)k + 1);
    }
    /* HTTP/1.0: no chunks, no length, the body ends with the connection */
    int fd = dial(f->port);
    char req[256];
    size_t n = 2 * HTTP_STREAM_SLICE_BYTES + 3;
    snprintf(req, sizeof req, "GET /stream?n=%zu&unknown=1 HTTP/1.0\r\n\r\n", n);
    send_all(fd, req, strlen(req));
    buf_t raw, body;
    buf_init(&raw, BUF_UNLIMITED);
    buf_init(&body, BUF_UNLIMITED);
    read_to_eof(fd, &raw);
    buf_append(&raw, "", 0);
    const char *text = (const char *)raw.data;
    const char *end = text != NULL ? strstr(text, "\r\n\r\n") : NULL;
    CHECK(end != NULL && strstr(text, "Transfer-Encoding") == NULL &&
          strstr(text, "Content-Length") == NULL && strstr(text, "Connection: close") != NULL);
    if (end != NULL) buf_append(&body, end + 4, raw.len - (size_t)(end + 4 - text));
    CHECK(is_letters(&body, n));
    close(fd);
    buf_free(&raw);
    buf_free(&body);
    wait_released(f, released + 4);
    CHECK_EQ_INT(atomic_load(&f->streams_completed), completed + 4);
}

int main(void)
{
    http_server_limits_t lim = {
        .max_connections = 4,
        .max_header_bytes = 4096,
        .max_body_bytes = 5000,
        .max_buffered_bytes = 4000,
        .idle_timeout_ms = 300,
        .request_timeout_ms = 600,
    };
    fixture_t f;
    signal(SIGPIPE, SIG_IGN);
    fixture_start(&f, &lim);
    test_basic_and_decoding(&f);
    test_keepalive_pipelining_bodies(&f);
    test_limits(&f);
    test_timeouts(&f);
    test_deferred_and_fairness(&f);
    test_client_gone(&f);
    test_streamed_bodies(&f);
    test_chunked_bodies(&f);
    fixture_stop(&f);
    CHECK(f.observed > 10);

    http_server_limits_t patient = lim;
    patient.idle_timeout_ms = patient.request_timeout_ms = 60 * 1000;
    fixture_start(&f, &patient);
    test_max_connections(&f);
    fixture_stop(&f);

    fixture_start(&f, &lim);
    test_drain(&f);
    return check_exit();
}
