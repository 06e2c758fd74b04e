/* http.c — one blocking HTTP/1.1 connection of libflamedb (flamedb_int.h).
 *
 * The socket stays non-blocking and every wait is a poll() bounded by the
 * connect or I/O timeout, so no call can hang on a silent server; the
 * connection's cancel_fd and deadline_ns end any wait early. Responses
 * are parsed here with fixed limits (header line, header total, header count,
 * body maximum) because the bytes come from the network.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client/flamedb_int.h"

void flamedb__conn_init(flamedb__conn_t *c, int connect_timeout_ms, int io_timeout_ms)
{
    c->fd = -1;
    c->connect_timeout_ms = connect_timeout_ms;
    c->io_timeout_ms = io_timeout_ms;
    c->rpos = c->rlen = 0;
    c->resp_bytes = 0;
    c->stale = 0;
    c->cancel_fd = -1;
    c->deadline_ns = 0;
}

void flamedb__conn_close(flamedb__conn_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->rpos = c->rlen = 0;
}

/* timeout_ms, or less when c's deadline comes first (0 when it passed). */
static int clip_timeout(const flamedb__conn_t *c, int timeout_ms)
{
    if (c->deadline_ns == 0) return timeout_ms;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = c->deadline_ns - ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    if (left <= 0) return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms < timeout_ms ? (int)ms : timeout_ms;
}

/* Polls fd for events and c's cancel_fd for input, at most timeout_ms
 * (clipped to c's deadline). 1: fd is ready; 0: the time passed or the
 * wait was cancelled (*cancelled set); -1: poll failed (errno). */
static int poll_fd(const flamedb__conn_t *c, int fd, short events, int timeout_ms, int *cancelled)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = events}, {.fd = c->cancel_fd, .events = POLLIN}};
    *cancelled = 0;
    for (;;) {
        int n = poll(pfd, c->cancel_fd >= 0 ? 2 : 1, clip_timeout(c, timeout_ms));
        if (n < 0 && errno == EINTR) continue;
        if (n > 0 && c->cancel_fd >= 0 && pfd[1].revents != 0) {
            *cancelled = 1;
            return 0;
        }
        *cancelled = n == 0 && clip_timeout(c, timeout_ms) < timeout_ms; /* the deadline */
        return n > 0 ? 1 : n;
    }
}

/* Waits until c's socket is ready for events or timeout_ms passed. */
static int wait_fd(const flamedb__conn_t *c, short events, int timeout_ms, const char *what,
                   errmsg_t *em)
{
    int cancelled, n = poll_fd(c, c->fd, events, timeout_ms, &cancelled);
    if (n > 0) return ERR_OK;
    if (n < 0) return errmsg_set(em, ERR_IO, "poll: %s", strerror(errno));
    if (cancelled) return errmsg_set(em, ERR_TIMEOUT, "gave up waiting to %s: stopping", what);
    return errmsg_set(em, ERR_TIMEOUT, "timed out after %d ms waiting to %s", timeout_ms, what);
}

/* Connects one address; returns 0 or an errno value (ETIMEDOUT on timeout). */
static int connect_addr(const flamedb__conn_t *c, const struct addrinfo *ai, int timeout_ms,
                        int *fd_out)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int e = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        e = errno;
        if (e == EINPROGRESS) {
            int cancelled, n = poll_fd(c, fd, POLLOUT, timeout_ms, &cancelled);
            socklen_t len = sizeof e;
            if (n == 0)
                e = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                e = errno;
        }
    }
    if (e != 0) {
        close(fd);
        return e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fd_out = fd;
    return 0;
}

static int conn_open(flamedb__conn_t *c, const flamedb__url_t *u, errmsg_t *em)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0) return errmsg_set(em, ERR_UNAVAILABLE, "resolve %s: %s", u->host, gai_strerror(g));
    int e = ENOENT;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        e = connect_addr(c, ai, c->connect_timeout_ms, &c->fd);
        if (e == 0) break;
    }
    freeaddrinfo(res);
    c->rpos = c->rlen = 0;
    if (e == ETIMEDOUT)
        return errmsg_set(em, ERR_TIMEOUT, "connect %s:%s: timed out after %d ms", u->host, u->port,
                          c->connect_timeout_ms);
    if (e != 0)
        return errmsg_set(em, ERR_UNAVAILABLE, "connect %s:%s: %s", u->host, u->port, strerror(e));
    return ERR_OK;
}

/* True when the server already closed an idle keep-alive connection. */
static int peer_closed(const flamedb__conn_t *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) <= 0) return 0;
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int send_all(flamedb__conn_t *c, struct iovec *iov, int iovcnt, errmsg_t *em)
{
    while (iovcnt > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int rc = wait_fd(c, POLLOUT, c->io_timeout_ms, "send the request", em);
                if (rc != ERR_OK) return rc;
                continue;
            }
            c->stale = errno == EPIPE || errno == ECONNRESET;
            return errmsg_set(em, ERR_IO, "send: %s", strerror(errno));
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return ERR_OK;
}

/* Receives more bytes into rbuf. Returns >0 (bytes), 0 at EOF, or an error. */
static int fill(flamedb__conn_t *c, errmsg_t *em)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->resp_bytes += (size_t)n;
            return (int)n;
        }
        if (n == 0) {
            c->stale = c->resp_bytes == 0;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c->stale = c->resp_bytes == 0 && errno == ECONNRESET;
            return errmsg_set(em, ERR_IO, "receive: %s", strerror(errno));
        }
        int rc = wait_fd(c, POLLIN, c->io_timeout_ms, "receive the response", em);
        if (rc != ERR_OK) return rc;
    }
}

static int closed_early(errmsg_t *em)
{
    return errmsg_set(em, ERR_IO, "server closed the connection before the response was complete");
}

/* Reads one CRLF- (or LF-) terminated line into line (NUL-terminated, the
 * terminator removed). */
static int read_line(flamedb__conn_t *c, char *line, size_t cap, size_t *len, errmsg_t *em)
{
    for (;;) {
        uint8_t *start = c->rbuf + c->rpos;
        uint8_t *nl = memchr(start, '\n', c->rlen - c->rpos);
        if (nl != NULL) {
            size_t n = (size_t)(nl - start);
            if (n > 0 && start[n - 1] == '\r') n--;
            if (n >= cap)
                return errmsg_set(em, ERR_TOO_LARGE, "response header line over %zu bytes", cap);
            memcpy(line, start, n);
            line[n] = '\0';
            *len = n;
            c->rpos = (size_t)(nl - c->rbuf) + 1;
            return ERR_OK;
        }
        if (c->rlen - c->rpos >= cap)
            return errmsg_set(em, ERR_TOO_LARGE, "response header line over %zu bytes", cap);
        int n = fill(c, em);
        if (n < 0) return n;
        if (n == 0) return closed_early(em);
    }
}

static int append_body(buf_t *body, const void *p, size_t n, errmsg_t *em)
{
    int rc = buf_append(body, p, n);
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, rc, "response body larger than the limit of %zu bytes", body->max);
    return rc;
}

/* Receives up to n bytes straight into body (room reserved): a large
 * answer is not copied through rbuf. Returns >0 (bytes), 0 at EOF, or an
 * error. */
static int fill_body(flamedb__conn_t *c, buf_t *body, size_t n, errmsg_t *em)
{
    for (;;) {
        ssize_t got = recv(c->fd, body->data + body->len, n, 0);
        if (got > 0) {
            body->len += (size_t)got;
            body->data[body->len] = 0;
            c->resp_bytes += (size_t)got;
            return got > INT_MAX ? INT_MAX : (int)got;
        }
        if (got == 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errmsg_set(em, ERR_IO, "receive: %s", strerror(errno));
        int rc = wait_fd(c, POLLIN, c->io_timeout_ms, "receive the response", em);
        if (rc != ERR_OK) return rc;
    }
}

/* Moves exactly n body bytes to body: what rbuf holds, then the rest
 * received into body itself when it is larger than rbuf. */
static int read_exact(flamedb__conn_t *c, buf_t *body, uint64_t n, errmsg_t *em)
{
    if (n > body->max - body->len)
        return errmsg_set(em, ERR_TOO_LARGE, "response body larger than the limit of %zu bytes",
                          body->max);
    int rc = buf_reserve(body, (size_t)n);
    if (rc != ERR_OK) return errmsg_set(em, rc, "response body: out of memory");
    while (n > 0) {
        if (c->rpos == c->rlen && n >= sizeof c->rbuf) {
            int got = fill_body(c, body, (size_t)n, em);
            if (got < 0) return got;
            if (got == 0) return closed_early(em);
            n -= (uint64_t)got;
            continue;
        }
        if (c->rpos == c->rlen) {
            int got = fill(c, em);
            if (got < 0) return got;
            if (got == 0) return closed_early(em);
        }
        size_t take = c->rlen - c->rpos;
        if (take > n) take = (size_t)n;
        rc = append_body(body, c->rbuf + c->rpos, take, em);
        if (rc != ERR_OK) return rc;
        c->rpos += take;
        n -= take;
    }
    return ERR_OK;
}

static int read_until_close(flamedb__conn_t *c, buf_t *body, errmsg_t *em)
{
    for (;;) {
        int rc = append_body(body, c->rbuf + c->rpos, c->rlen - c->rpos, em);
        if (rc != ERR_OK) return rc;
        c->rpos = c->rlen;
        int got = fill(c, em);
        if (got < 0) return got;
        if (got == 0) return ERR_OK;
    }
}

/* Chunk size line: hex digits, then optional ";extensions". */
static int parse_chunk_size(const char *line, uint64_t *out, errmsg_t *em)
{
    uint64_t v = 0;
    int digits = 0;
    const char *p = line;
    for (; *p; p++, digits++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (digits >= 15) return errmsg_set(em, ERR_UNPARSEABLE, "chunk size too large");
        v = v * 16 + (uint64_t)d;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (digits == 0 || (*p != '\0' && *p != ';'))
        return errmsg_set(em, ERR_UNPARSEABLE, "bad chunk size line '%.40s'", line);
    *out = v;
    return ERR_OK;
}

static int read_chunked(flamedb__conn_t *c, buf_t *body, errmsg_t *em)
{
    char line[FLAMEDB__MAX_HEADER_LINE];
    size_t len;
    for (;;) {
        uint64_t n = 0;
        int rc = read_line(c, line, sizeof line, &len, em);
        if (rc == ERR_OK) rc = parse_chunk_size(line, &n, em);
        if (rc != ERR_OK) return rc;
        if (n == 0) break;
        rc = read_exact(c, body, n, em);
        if (rc == ERR_OK) rc = read_line(c, line, sizeof line, &len, em);
        if (rc != ERR_OK) return rc;
        if (len != 0) return errmsg_set(em, ERR_UNPARSEABLE, "chunk data longer than its size");
    }
    /* trailers, bounded like headers */
    for (int i = 0;; i++) {
        if (i > FLAMEDB__MAX_HEADERS)
            return errmsg_set(em, ERR_TOO_LARGE, "too many trailer lines");
        int rc = read_line(c, line, sizeof line, &len, em);
        if (rc != ERR_OK) return rc;
        if (len == 0) return ERR_OK;
    }
}

/* What the headers say about the body. */
typedef struct head {
    int status;
    int keep_alive;
    int chunked;
    int64_t content_length; /* -1: absent */
} head_t;

static int parse_status_line(const char *line, head_t *h, errmsg_t *em)
{
    if (strncmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
        line[9] < '1' || line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' ||
        line[11] > '9' || (line[12] != ' ' && line[12] != '\0'))
        return errmsg_set(em, ERR_UNPARSEABLE, "not an HTTP/1.x response: '%.60s'", line);
    h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    h->keep_alive = line[7] == '1';
    h->chunked = 0;
    h->content_length = -1;
    return ERR_OK;
}

/* True when the comma-separated header value holds token (case-insensitive). */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t n = strcspn(v, ",");
        size_t m = n;
        while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t'))
            m--;
        if (m == tl && strncasecmp(v, token, tl) == 0) return 1;
        v += n;
    }
    return 0;
}

static int parse_content_length(const char *v, head_t *h, errmsg_t *em)
{
    int64_t n = 0;
    if (*v == '\0') return errmsg_set(em, ERR_UNPARSEABLE, "empty Content-Length");
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10)
            return errmsg_set(em, ERR_UNPARSEABLE, "bad Content-Length '%.30s'", v);
        n = n * 10 + (*p - '0');
    }
    if (h->content_length >= 0 && h->content_length != n)
        return errmsg_set(em, ERR_UNPARSEABLE, "conflicting Content-Length headers");
    h->content_length = n;
    return ERR_OK;
}

static int parse_header(char *line, head_t *h, flamedb__response_t *resp, errmsg_t *em)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return errmsg_set(em, ERR_UNPARSEABLE, "bad response header '%.60s'", line);
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    if (strcasecmp(line, "Content-Length") == 0) return parse_content_length(v, h, em);
    if (strcasecmp(line, "Transfer-Encoding") == 0) {
        h->chunked = has_token(v, "chunked");
    } else if (strcasecmp(line, "Connection") == 0) {
        if (has_token(v, "close"))
            h->keep_alive = 0;
        else if (has_token(v, "keep-alive"))
            h->keep_alive = 1;
    } else if (strcasecmp(line, "X-Flamedb-Stored") == 0) {
        resp->stored_nothing = strcmp(v, "nothing") == 0;
    } else if (strcasecmp(line, "Content-Type") == 0) {
        snprintf(resp->content_type, sizeof resp->content_type, "%s", v);
    }
    return ERR_OK;
}

static int read_head(flamedb__conn_t *c, head_t *h, flamedb__response_t *resp, errmsg_t *em)
{
    char line[FLAMEDB__MAX_HEADER_LINE];
    size_t len, total = 0;
    int rc = read_line(c, line, sizeof line, &len, em);
    if (rc == ERR_OK) rc = parse_status_line(line, h, em);
    for (int n = 0; rc == ERR_OK; n++) {
        rc = read_line(c, line, sizeof line, &len, em);
        if (rc != ERR_OK || len == 0) break;
        total += len;
        if (n >= FLAMEDB__MAX_HEADERS || total > FLAMEDB__MAX_HEADER_BYTES)
            return errmsg_set(em, ERR_TOO_LARGE, "response headers over the limit");
        rc = parse_header(line, h, resp, em);
    }
    if (rc == ERR_OK && h->chunked) h->content_length = -1; /* RFC 9112: Transfer-Encoding wins */
    return rc;
}

static int read_response(flamedb__conn_t *c, const flamedb__request_t *req,
                         flamedb__response_t *resp, errmsg_t *em)
{
    head_t h;
    int rc;
    for (int interim = 0;; interim++) {
        resp->content_type[0] = '\0';
        rc = read_head(c, &h, resp, em);
        if (rc != ERR_OK) return rc;
        if (h.status >= 200) break;
        if (interim >= FLAMEDB__MAX_INTERIM)
            return errmsg_set(em, ERR_UNPARSEABLE, "too many interim (1xx) responses");
    }
    resp->status = h.status;
    resp->keep_alive = h.keep_alive;
    if (h.status == 204 || h.status == 304 || strcmp(req->method, "HEAD") == 0) return ERR_OK;
    if (h.chunked) return read_chunked(c, &resp->body, em);
    if (h.content_length >= 0) return read_exact(c, &resp->body, (uint64_t)h.content_length, em);
    resp->keep_alive = 0;
    return read_until_close(c, &resp->body, em);
}

static int write_request(flamedb__conn_t *c, const flamedb__url_t *u, const flamedb__request_t *req,
                         errmsg_t *em)
{
    buf_t head;
    buf_init(&head, FLAMEDB__MAX_HEADER_BYTES + 16384);
    int rc = buf_printf(&head, "%s %s%s HTTP/1.1\r\nHost: %s%s%s", req->method, u->prefix,
                        req->target, u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "");
    if (rc == ERR_OK && strcmp(u->port, "80") != 0) rc = buf_printf(&head, ":%s", u->port);
    if (rc == ERR_OK) rc = buf_append_str(&head, "\r\n");
    if (rc == ERR_OK && req->extra_headers != NULL) rc = buf_append_str(&head, req->extra_headers);
    if (rc == ERR_OK && req->content_type != NULL)
        rc = buf_printf(&head, "Content-Type: %s\r\n", req->content_type);
    if (rc == ERR_OK && (req->body_len > 0 || strcmp(req->method, "POST") == 0))
        rc = buf_printf(&head, "Content-Length: %zu\r\n", req->body_len);
    if (rc == ERR_OK) rc = buf_append_str(&head, "\r\n");
    if (rc != ERR_OK) {
        buf_free(&head);
        return errmsg_set(em, rc, "request headers too large");
    }
    struct iovec iov[2] = {{head.data, head.len}, {(void *)req->body, req->body_len}};
    rc = send_all(c, iov, req->body_len > 0 ? 2 : 1, em);
    buf_free(&head);
    return rc;
}

int flamedb__http_do(flamedb__conn_t *c, const flamedb__url_t *u, const flamedb__request_t *req,
                     size_t max_body, flamedb__response_t *resp, errmsg_t *em)
{
    memset(resp, 0, sizeof *resp);
    buf_init(&resp->body, max_body);
    for (int attempt = 0;; attempt++) {
        int reused = c->fd >= 0;
        if (reused && peer_closed(c)) {
            flamedb__conn_close(c);
            reused = 0;
        }
        int rc = ERR_OK;
        if (c->fd < 0) rc = conn_open(c, u, em);
        if (rc != ERR_OK) return rc;
        c->resp_bytes = 0;
        c->stale = 0;
        rc = write_request(c, u, req, em);
        if (rc == ERR_OK) rc = read_response(c, req, resp, em);
        if (rc == ERR_OK) {
            if (!resp->keep_alive) flamedb__conn_close(c);
            return ERR_OK;
        }
        int retry = reused && c->stale && attempt == 0;
        flamedb__conn_close(c);
        if (!retry) return rc;
        /* The server dropped an idle connection as we reused it: nothing of
         * this request was answered, so sending it again is safe. */
        buf_reset(&resp->body);
        resp->status = 0;
    }
}
