/* http_server.c — HTTP/1.1 connections on libuv (see http_server.h).
 *
 * Each connection is a state machine:
 *
 *   READING --request complete--> HANDLING --http_respond--> WRITING
 *      ^                                                      |
 *      +------------------ keep-alive ------------------------+
 *                                                              | close
 *   any state --error/timeout/EOF--> CLOSING     LINGERING <---+
 *
 * READING parses bytes as they arrive; HANDLING keeps reading without parsing
 * until the handler answers: bytes of a next request wait in `pending` (up to
 * READ_CHUNK, then reading stops), and an EOF or reset means the client has
 * gone, which the handler hears through its gone callback (a query is
 * cancelled instead of running to its end); WRITING waits for the write
 * callback (a streamed body stays in WRITING, writing its next slice from
 * each callback until the last); LINGERING has sent
 * FIN after a `Connection: close` response and discards input until the peer
 * closes (so unread request bytes do not turn the close into a reset that
 * destroys the response); CLOSING waits for libuv's close callbacks.
 */
#include "node/http_server.h"

#include <ctype.h>
#include <stdarg.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/list.h"
#include "common/log.h"

#define READ_CHUNK (64 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
/* Responses up to this size are sent whatever the budget says (errors). */
#define RESPONSE_ALWAYS_BYTES (64 * 1024)
/* What a body buffer starts with; it grows (doubling) as bytes arrive. */
#define BODY_FIRST_RESERVE (64 * 1024)
/* A body buffer larger than this is freed between keep-alive requests. */
#define KEEP_BODY_CAP (64 * 1024)

enum conn_state { CONN_READING, CONN_HANDLING, CONN_WRITING, CONN_LINGERING, CONN_CLOSING };

/* What the parser is accumulating into head. */
enum piece { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

typedef struct hdr_span {
    uint32_t name_off, name_len, value_off, value_len;
} hdr_span_t;

struct http_exchange {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_write_t creq; /* 100 Continue */
    uv_shutdown_t sreq;
    http_server_t *srv;
    list_node_t link; /* in srv->conns */
    enum conn_state state;
    int handles_open;
    http_parser parser;
    /* request being received */
    int started, msg_done, keep_alive, close_requested, in_handler, tag;
    int headers_done; /* later header callbacks are chunked trailers */
    /* Cut at the drain deadline while its handler still held the request:
     * the socket is closed, the struct waits for http_respond (detached: it
     * has left srv->conns, so the drain need not wait for the handler). */
    int abandoned, detached;
    int reading; /* uv_read_start is in effect */
    /* The handler's: called once when the client goes while it is handled. */
    http_gone_fn gone;
    void *gone_arg;
    uint8_t peer[16]; /* the client: IPv4 in the first 4 bytes, IPv6 masked to its prefix */
    int peer_family;  /* AF_INET, AF_INET6, or 0 when unknown */
    char principal[HTTP_PRINCIPAL_MAX];
    enum piece piece;
    int fail_status, fail_err;
    errmsg_t fail_em;
    const char *fail_extra; /* extra headers of a head check's refusal, or NULL */
    uint64_t start_ms;
    buf_t head; /* url, then name/value pieces, each NUL-terminated */
    uint32_t url_len;
    hdr_span_t hdr[HTTP_MAX_HEADERS];
    size_t nhdr;
    buf_t body;
    size_t charged; /* body bytes counted in srv->stats.buffered_bytes */
    buf_t pending;  /* bytes after a complete request (pipelining) */
    buf_t scratch;  /* decoded path and parameters */
    http_kv_t kv_headers[HTTP_MAX_HEADERS];
    http_kv_t kv_params[HTTP_MAX_PARAMS];
    http_request_t req;
    /* fairness */
    int yielded;
    uint64_t wake_iter;
    size_t wake_bytes, linger_bytes;
    /* response */
    buf_t out_head, out_body;
    size_t out_charged; /* response bytes counted in srv->stats.buffered_bytes */
    /* a streamed body (http_respond_stream): producing until released */
    http_body_producer_t prod;
    int producing, prod_done;
    int chunked; /* its slices framed as chunks (HTTP_LENGTH_UNKNOWN to an HTTP/1.1 client) */
    uint64_t prod_sent;
};

typedef http_exchange_t conn_t;

struct http_server {
    uv_loop_t *loop;
    http_server_limits_t lim;
    http_handler_fn handler;
    http_observer_fn observer;
    http_head_fn head_check; /* may be NULL */
    void *ctx;
    uv_tcp_t listener;
    uv_prepare_t prepare; /* counts loop iterations (wakeups) */
    uv_idle_t idle;       /* resumes connections that yielded */
    uv_timer_t drain_timer;
    int listening, handles_open, draining, rest_closed, done_called;
    void (*drain_done)(void *);
    void *drain_arg;
    int port;
    uint64_t iter;
    list_t conns; /* open connections, newest first */
    http_server_stats_t stats;
    char rbuf[READ_CHUNK];
};

static void conn_close(conn_t *c);
static void conn_drop(conn_t *c);
static void conn_feed(conn_t *c, const uint8_t *data, size_t n);
static void conn_reply(conn_t *c, http_response_t *resp);
static void server_check_drained(http_server_t *s);
static int build_request(conn_t *c);

/* ---------- URL decoding ---------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

int http_url_decode(const char *s, size_t n, int plus_is_space, buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n) return ERR_INVALID_ARGUMENT;
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            /* %00 would truncate the C strings handlers get */
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return ERR_INVALID_ARGUMENT;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        int rc = buf_append_byte(out, (uint8_t)ch);
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

/* ---------- parser callbacks: the loop thread only parses here ---------- */

#define NO_VALUE UINT32_MAX

/* Records why the request is refused; returns -1 so the parser stops. */
static int fail(conn_t *c, int status, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(conn_t *c, int status, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_em.text, sizeof c->fail_em.text, fmt, ap);
    va_end(ap);
    c->fail_status = status;
    c->fail_err = err;
    return -1;
}

static int fail_header_size(conn_t *c)
{
    return fail(c, 431, ERR_TOO_LARGE,
                "request line and headers exceed %zu bytes (max-header-bytes)",
                c->srv->lim.max_header_bytes);
}

/* Ends the piece being accumulated with a NUL and starts `next`. */
static int switch_piece(conn_t *c, enum piece next)
{
    if (c->piece == next) return 0;
    if (c->piece != PIECE_NONE && buf_append_byte(&c->head, 0) != ERR_OK)
        return fail_header_size(c);
    if (next == PIECE_FIELD) {
        if (c->nhdr == HTTP_MAX_HEADERS)
            return fail(c, 431, ERR_TOO_LARGE, "more than %d request headers", HTTP_MAX_HEADERS);
        hdr_span_t *h = &c->hdr[c->nhdr++];
        h->name_off = (uint32_t)c->head.len;
        h->name_len = 0;
        h->value_off = NO_VALUE;
        h->value_len = 0;
    } else if (next == PIECE_VALUE) {
        c->hdr[c->nhdr - 1].value_off = (uint32_t)c->head.len;
    }
    c->piece = next;
    return 0;
}

static int append_piece(conn_t *c, enum piece kind, const char *at, size_t len)
{
    if (switch_piece(c, kind) != 0) return -1;
    if (buf_append(&c->head, at, len) != ERR_OK) return fail_header_size(c);
    if (kind == PIECE_URL)
        c->url_len += (uint32_t)len;
    else if (kind == PIECE_FIELD)
        c->hdr[c->nhdr - 1].name_len += (uint32_t)len;
    else
        c->hdr[c->nhdr - 1].value_len += (uint32_t)len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    return append_piece(p->data, PIECE_URL, at, len);
}

/* Trailers of a chunked body come through the same callbacks as headers:
 * they are dropped, never read as headers (a trailer `X-Scope-OrgID` must not
 * override what a gateway checked in the head). http-parser bounds their size. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    return c->headers_done ? 0 : append_piece(c, PIECE_FIELD, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    return c->headers_done ? 0 : append_piece(c, PIECE_VALUE, at, len);
}

/* Counts n more body bytes against the server-wide budget (bounded memory:
 * max-connections x max-body-bytes would be far too much to hold at once). */
static int charge(conn_t *c, size_t n)
{
    http_server_t *s = c->srv;
    if (s->stats.buffered_bytes + n > s->lim.max_buffered_bytes) {
        s->stats.busy++;
        return fail(c, 503, ERR_UNAVAILABLE,
                    "server busy: request bodies in memory would exceed %zu bytes "
                    "(max-buffered-bytes); retry later",
                    s->lim.max_buffered_bytes);
    }
    s->stats.buffered_bytes += n;
    c->charged += n;
    return 0;
}

static const char *hdr_value(const conn_t *c, const hdr_span_t *h)
{
    return h->value_off == NO_VALUE ? "" : (const char *)c->head.data + h->value_off;
}

static const char *find_header(const conn_t *c, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < c->nhdr; i++)
        if (c->hdr[i].name_len == n &&
            strncasecmp((const char *)c->head.data + c->hdr[i].name_off, name, n) == 0)
            return hdr_value(c, &c->hdr[i]);
    return NULL;
}

/* Header names without whitespace, and headers a request may carry once:
 * with two, a gateway and this node could each read a different one
 * (first-wins here, last-wins there), so a duplicate is refused rather than
 * resolved. */
static int check_singletons(conn_t *c)
{
    /* "Name : value" is refused (RFC 9112 5.1): a proxy that trims the space
     * and this node, which would not, would see different headers. */
    for (size_t i = 0; i < c->nhdr; i++) {
        const char *name = (const char *)c->head.data + c->hdr[i].name_off;
        if (memchr(name, ' ', c->hdr[i].name_len) || memchr(name, '\t', c->hdr[i].name_len))
            return fail(c, 400, ERR_INVALID_ARGUMENT,
                        "header %zu: whitespace between the name and the colon", i + 1);
    }
    static const char *const once[] = {"X-Scope-OrgID", "Authorization", "Content-Length",
                                       "Content-Type", "Host"};
    for (size_t k = 0; k < sizeof once / sizeof once[0]; k++) {
        size_t n = strlen(once[k]), seen = 0;
        for (size_t i = 0; i < c->nhdr; i++)
            if (c->hdr[i].name_len == n &&
                strncasecmp((const char *)c->head.data + c->hdr[i].name_off, once[k], n) == 0)
                seen++;
        if (seen > 1)
            return fail(c, 400, ERR_INVALID_ARGUMENT, "header %s given %zu times: send it once",
                        once[k], seen);
    }
    return 0;
}

/* Builds the request from its head and asks the head check, before any
 * body byte is held: a client the handler would refuse anyway (no valid
 * token) must not hold max-buffered-bytes while it sends a body. */
static int check_head(conn_t *c)
{
    http_server_t *s = c->srv;
    if (build_request(c) != ERR_OK) {
        s->stats.protocol_errors++;
        errmsg_t em = c->fail_em;
        return fail(c, 400, ERR_INVALID_ARGUMENT, "%s", em.text);
    }
    if (s->head_check == NULL) return 0;
    http_refusal_t ref = {0};
    if (s->head_check(s->ctx, &c->req, &ref) == 0) return 0;
    c->fail_extra = ref.extra_headers;
    return fail(c, ref.status ? ref.status : err_http_status(ref.err), ref.err, "%s",
                errmsg_text(&ref.em, ref.err));
}

static void continue_written(uv_write_t *req, int status)
{
    (void)req, (void)status; /* a failed write shows up on the response write */
}

static int on_headers_complete(http_parser *p)
{
    conn_t *c = p->data;
    if (switch_piece(c, PIECE_NONE) != 0) return -1;
    c->headers_done = 1;
    if (check_singletons(c) != 0) return -1;
    if (p->http_major != 1)
        return fail(c, 505, ERR_UNSUPPORTED, "HTTP/%u.%u is not supported; use HTTP/1.1",
                    p->http_major, p->http_minor);
    if (check_head(c) != 0) return -1;
    uint64_t cl = p->content_length;
    if ((p->flags & F_CONTENTLENGTH) && cl != ULLONG_MAX && cl > 0) {
        /* Refuse before reading a byte of the body. */
        if (cl > c->srv->lim.max_body_bytes)
            return fail(c, 413, ERR_TOO_LARGE,
                        "request body of %llu bytes is larger than %zu (max-body-bytes)",
                        (unsigned long long)cl, c->srv->lim.max_body_bytes);
        /* Nothing is charged or reserved for bytes only announced: sockets
         * that announce large bodies and then stall would hold the whole
         * budget and turn every other push into 503. on_body charges what
         * arrives; the buffer starts small and grows with the body. */
        if (buf_reserve(&c->body, cl < BODY_FIRST_RESERVE ? (size_t)cl : BODY_FIRST_RESERVE) !=
            ERR_OK)
            return fail(c, 503, ERR_NOMEM, "out of memory for a %llu-byte body",
                        (unsigned long long)cl);
    }
    const char *expect = find_header(c, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
        uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1, continue_written);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (c->body.len + len > c->srv->lim.max_body_bytes)
        return fail(c, 413, ERR_TOO_LARGE, "request body larger than %zu bytes (max-body-bytes)",
                    c->srv->lim.max_body_bytes);
    if (c->body.len + len > c->charged && charge(c, c->body.len + len - c->charged) != 0) return -1;
    if (buf_append(&c->body, at, len) != ERR_OK)
        return fail(c, 503, ERR_NOMEM, "out of memory buffering a %zu-byte body",
                    c->body.len + len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    c->msg_done = 1;
    /* Stop here: bytes after this request wait until it has been answered. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------- building the request a handler sees ---------- */

static int parse_params(conn_t *c, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        if (end > i) {
            if (c->req.nparams == HTTP_MAX_PARAMS)
                return errmsg_set(&c->fail_em, ERR_INVALID_ARGUMENT,
                                  "more than %d query parameters", HTTP_MAX_PARAMS);
            const char *eq = memchr(q + i, '=', end - i);
            size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
            size_t name_off = c->scratch.len;
            if (http_url_decode(q + i, nlen, 1, &c->scratch) != ERR_OK ||
                buf_append_byte(&c->scratch, 0) != ERR_OK)
                return errmsg_set(&c->fail_em, ERR_INVALID_ARGUMENT,
                                  "query parameter %zu: bad percent-encoding", c->req.nparams + 1);
            size_t value_off = c->scratch.len;
            if ((eq &&
                 http_url_decode(eq + 1, (size_t)(q + end - eq - 1), 1, &c->scratch) != ERR_OK) ||
                buf_append_byte(&c->scratch, 0) != ERR_OK)
                return errmsg_set(&c->fail_em, ERR_INVALID_ARGUMENT,
                                  "query parameter '%s': bad percent-encoding",
                                  (const char *)c->scratch.data + name_off);
            /* Offsets for now: scratch may still move. */
            c->kv_params[c->req.nparams].name = (const char *)(uintptr_t)name_off;
            c->kv_params[c->req.nparams].value = (const char *)(uintptr_t)value_off;
            c->req.nparams++;
        }
        i = end + 1;
    }
    return ERR_OK;
}

/* Fills c->req from the parsed head (at headers complete; the body is set
 * by conn_dispatch). On error c->fail_em has the reason. */
static int build_request(conn_t *c)
{
    http_request_t *r = &c->req;
    const char *url = (const char *)c->head.data;
    const char *qmark = memchr(url, '?', c->url_len);
    size_t path_len = qmark ? (size_t)(qmark - url) : c->url_len;
    r->method = c->parser.method;
    r->method_name = http_method_str(c->parser.method);
    r->body = (const uint8_t *)""; /* conn_dispatch sets the body once it is complete */
    r->body_len = 0;
    r->start_ms = c->start_ms;
    for (size_t i = 0; i < c->nhdr; i++) {
        c->kv_headers[i].name = (const char *)c->head.data + c->hdr[i].name_off;
        c->kv_headers[i].value = hdr_value(c, &c->hdr[i]);
    }
    r->headers = c->kv_headers;
    r->nheaders = c->nhdr;
    r->query = qmark ? qmark + 1 : "";
    if (http_url_decode(url, path_len, 0, &c->scratch) != ERR_OK ||
        buf_append_byte(&c->scratch, 0) != ERR_OK)
        return errmsg_set(&c->fail_em, ERR_INVALID_ARGUMENT, "bad percent-encoding in the path");
    int rc = parse_params(c, r->query, strlen(r->query));
    if (rc != ERR_OK) return rc;
    const char *base = (const char *)c->scratch.data;
    r->path = base;
    for (size_t i = 0; i < r->nparams; i++) {
        c->kv_params[i].name = base + (uintptr_t)c->kv_params[i].name;
        c->kv_params[i].value = base + (uintptr_t)c->kv_params[i].value;
    }
    r->params = c->kv_params;
    return ERR_OK;
}

/* ---------- the connection state machine ---------- */

static uint64_t now_ms(const conn_t *c)
{
    return uv_now(c->srv->loop);
}

static void conn_timer(conn_t *c, uint64_t ms);
static void on_idle(uv_idle_t *h);
static void conn_start_reading(conn_t *c);

static void conn_stop_reading(conn_t *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

/* Forgets the request just answered and gets ready for the next one. */
static void conn_reset_request(conn_t *c)
{
    http_server_t *s = c->srv;
    s->stats.buffered_bytes -= c->charged;
    c->charged = 0;
    if (c->body.cap > KEEP_BODY_CAP)
        buf_free(&c->body);
    else
        buf_reset(&c->body);
    buf_reset(&c->head);
    buf_reset(&c->scratch);
    memset(&c->req, 0, sizeof c->req);
    c->nhdr = 0;
    c->url_len = 0;
    c->piece = PIECE_NONE;
    c->started = c->msg_done = c->fail_status = c->fail_err = 0;
    c->fail_em.text[0] = 0;
    c->fail_extra = NULL;
    c->tag = 0;
    c->headers_done = 0;
    c->principal[0] = '\0';
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    conn_t *c = h->data;
    /* One buffer for all connections: read callbacks consume it at once.
     * While a request is handled, no more than `pending` can still hold. */
    size_t n = sizeof c->srv->rbuf;
    if ((c->state == CONN_HANDLING || c->state == CONN_WRITING) &&
        c->pending.max - c->pending.len < n)
        n = c->pending.max - c->pending.len;
    *b = uv_buf_init(c->srv->rbuf, (unsigned)n);
}

/* Answers a request the server refuses itself, then closes the connection. */
static void conn_refuse(conn_t *c, int status, int err, const errmsg_t *em)
{
    conn_stop_reading(c);
    c->keep_alive = 0;
    c->state = CONN_HANDLING;
    const char *extra = c->fail_extra;
    if (extra == NULL && status == 503) extra = "Retry-After: 1\r\n";
    http_respond_error(c, status, err, em, extra);
}

static void conn_dispatch(conn_t *c)
{
    http_server_t *s = c->srv;
    uv_timer_stop(&c->timer);
    /* Reading goes on (on_read_held): a client that goes away is noticed
     * while its request is handled, not when the answer is written. */
    c->state = CONN_HANDLING;
    if (c->pending.len < c->pending.max)
        conn_start_reading(c);
    else
        conn_stop_reading(c);
    c->keep_alive = http_should_keep_alive(&c->parser) && !s->draining;
    c->req.body = c->body.data ? c->body.data : (const uint8_t *)"";
    c->req.body_len = c->body.len;
    s->stats.requests_in_flight++;
    c->in_handler = 1;
    s->handler(s->ctx, c);
}

static void conn_feed(conn_t *c, const uint8_t *data, size_t n)
{
    http_server_t *s = c->srv;
    if (!c->started) {
        c->started = 1;
        c->start_ms = now_ms(c);
        /* The deadline runs from the first byte: trickling bytes does not extend it. */
        conn_timer(c, s->lim.request_timeout_ms);
    }
    size_t used = http_parser_execute(&c->parser, &parser_settings, (const char *)data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->fail_status != 0) {
        if (c->fail_status == 413 || c->fail_status == 431) s->stats.too_large++;
        conn_refuse(c, c->fail_status, c->fail_err, &c->fail_em);
        return;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        s->stats.too_large++;
        fail_header_size(c);
        conn_refuse(c, 431, ERR_TOO_LARGE, &c->fail_em);
        return;
    }
    if ((e != HPE_OK && e != HPE_PAUSED) || c->parser.upgrade) {
        s->stats.protocol_errors++;
        errmsg_set(&c->fail_em, ERR_INVALID_ARGUMENT, "malformed HTTP request: %s",
                   c->parser.upgrade ? "protocol upgrades are not supported"
                                     : http_errno_description(e));
        conn_refuse(c, 400, ERR_INVALID_ARGUMENT, &c->fail_em);
        return;
    }
    if (!c->msg_done) return;
    if (used < n && buf_append(&c->pending, data + used, n - used) != ERR_OK) {
        errmsg_set(&c->fail_em, ERR_TOO_LARGE, "too many pipelined bytes");
        conn_refuse(c, 400, ERR_INVALID_ARGUMENT, &c->fail_em);
        return;
    }
    conn_dispatch(c);
}

/* Stops reading until the next loop iteration when this wakeup's budget is spent. */
static void conn_account(conn_t *c, size_t n)
{
    http_server_t *s = c->srv;
    if (c->wake_iter != s->iter) {
        c->wake_iter = s->iter;
        c->wake_bytes = 0;
    }
    c->wake_bytes += n;
    if (c->state == CONN_READING && c->wake_bytes >= HTTP_BYTES_PER_WAKEUP && !c->yielded) {
        conn_stop_reading(c);
        c->yielded = 1;
        uv_idle_start(&s->idle, on_idle);
    }
}

/* Bytes or EOF while a request is handled or its answer written: bytes are
 * kept unparsed for the next request. An EOF or error while handling means
 * the client has gone; the handler hears it once (a query is cancelled). On
 * an error (a reset) nothing can be written: the connection closes once the
 * handler answers. An EOF may also be a client that half-closed after its
 * request and still reads (as curl never does, but some tools do): the answer
 * is written, and the connection closes after it. */
static void on_read_held(conn_t *c, ssize_t nread, const uv_buf_t *b)
{
    if (nread < 0) {
        conn_stop_reading(c);
        /* UV_ENOBUFS: `pending` is full; while writing, a write error closes */
        if (nread == UV_ENOBUFS || c->state != CONN_HANDLING) return;
        c->srv->stats.client_gone++;
        c->keep_alive = 0;                  /* the client sends nothing more */
        if (nread != UV_EOF) conn_close(c); /* close_requested: closes once answered */
        http_gone_fn gone = c->gone;
        c->gone = NULL;
        if (gone != NULL) gone(c->gone_arg); /* may answer, and so close c */
        return;
    }
    if (buf_append(&c->pending, b->base, (size_t)nread) != ERR_OK) {
        conn_close(c); /* cannot happen: on_alloc offers only the room left */
        return;
    }
    /* A full `pending` stops reading: the rest waits in the kernel (and a
     * close is then only seen when the answer is written). */
    if (c->pending.len >= c->pending.max) conn_stop_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = st->data;
    if (nread == 0) return;
    if (c->state == CONN_HANDLING || c->state == CONN_WRITING) {
        on_read_held(c, nread, b);
        return;
    }
    if (nread < 0) {
        conn_close(c); /* EOF or error: a half-received request is dropped */
        return;
    }
    if (c->state == CONN_LINGERING) {
        c->linger_bytes += (size_t)nread;
        if (c->linger_bytes > LINGER_MAX_BYTES) conn_close(c);
        return;
    }
    if (c->state != CONN_READING) return;
    conn_feed(c, (const uint8_t *)b->base, (size_t)nread);
    if (c->state == CONN_READING) conn_account(c, (size_t)nread);
}

static void conn_start_reading(conn_t *c)
{
    if (c->reading) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    c->reading = 1;
}

/* After a keep-alive response: serve a pipelined request or wait for one. */
static void conn_next_request(conn_t *c)
{
    conn_reset_request(c);
    c->state = CONN_READING;
    conn_timer(c, c->srv->lim.idle_timeout_ms);
    if (c->pending.len > 0) {
        buf_t input = c->pending;
        buf_init(&c->pending, c->pending.max);
        conn_feed(c, input.data, input.len);
        buf_free(&input);
    }
    if (c->state == CONN_READING && !c->yielded) conn_start_reading(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req, (void)status;
}

/* The response has been written (or will never be): its bytes leave the budget. */
static void release_response(conn_t *c)
{
    c->srv->stats.buffered_bytes -= c->out_charged;
    c->out_charged = 0;
}

/* The streamed body ends (completed or not): its producer is released. */
static void stream_end(conn_t *c, int completed)
{
    if (!c->producing) return;
    c->producing = 0;
    c->prod.release(c->prod.arg, completed);
}

static void on_written(uv_write_t *req, int status);

/* The chunk header of a slice, its size in fixed-width hex (leading zeros
 * are allowed, RFC 9112 7.1): written once the slice's size is known. */
#define CHUNK_HEAD "00000000\r\n"
#define CHUNK_HEAD_LEN 10

/* Produces the next slice of a streamed body into out_body (framed as a
 * chunk, and the last chunk after it once done, when chunked): 0, or an
 * error (more or fewer bytes than announced, or the producer's). */
static int stream_produce(conn_t *c)
{
    buf_t *b = &c->out_body;
    b->len = 0;
    size_t start = c->chunked ? CHUNK_HEAD_LEN : 0;
    int rc = c->chunked ? buf_append(b, CHUNK_HEAD, CHUNK_HEAD_LEN) : 0;
    int done = 0;
    if (rc == 0) rc = c->prod.produce(c->prod.arg, b, HTTP_STREAM_SLICE_BYTES, &done);
    if (rc != 0) return rc;
    size_t n = b->len - start;
    c->prod_sent += n;
    if (c->prod.length != HTTP_LENGTH_UNKNOWN &&
        (c->prod_sent > c->prod.length || (done && c->prod_sent != c->prod.length)))
        return ERR_INTERNAL;
    if (n == 0 && !done) return ERR_INTERNAL; /* it would never end */
    c->prod_done = done;
    if (!c->chunked) return 0;
    if (n == 0) {
        b->len = 0;
    } else {
        static const char hex[] = "0123456789abcdef";
        if (n > 0xffffffffu) return ERR_INTERNAL;
        for (int i = 0; i < 8; i++)
            b->data[7 - i] = (uint8_t)hex[(n >> (4 * i)) & 15];
        rc = buf_append(b, "\r\n", 2);
    }
    return rc == 0 && done ? buf_append(b, "0\r\n\r\n", 5) : rc;
}

/* Produces the next slice of a streamed body into out_body and writes it:
 * 0 when written, 1 when the body had ended (nothing written), else an
 * error (more or fewer bytes than announced, or the producer's). */
static int stream_write_next(conn_t *c)
{
    int rc = stream_produce(c);
    if (rc != 0) return rc;
    if (c->out_body.len == 0) return 1;
    c->out_charged = c->out_body.len; /* produced and unsent */
    c->srv->stats.buffered_bytes += c->out_charged;
    uv_buf_t b = uv_buf_init((char *)c->out_body.data, (unsigned)c->out_body.len);
    c->wreq.data = c;
    return uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0 ? ERR_IO : 0;
}

/* A slice of a streamed body was written: 1 when the next one is being
 * written, 0 when the body is over (completed or cut). */
static int stream_continue(conn_t *c, int status)
{
    if (!c->producing) return 0;
    if (status < 0 || c->state == CONN_CLOSING) {
        stream_end(c, 0);
        return 0;
    }
    int rc = c->prod_done ? 1 : stream_write_next(c);
    if (rc == 0) return 1;
    if (rc == 1) {
        stream_end(c, 1);
        return 0;
    }
    log_warn("http", "a streamed body failed after %llu of %llu bytes: %s",
             (unsigned long long)c->prod_sent, (unsigned long long)c->prod.length, err_message(rc));
    stream_end(c, 0);
    c->keep_alive = 0;
    release_response(c);
    buf_free(&c->out_body);
    conn_close(c);
    return 1;
}

static void on_written(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    release_response(c);
    buf_free(&c->out_head);
    if (stream_continue(c, status)) return;
    buf_free(&c->out_body);
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->keep_alive && !c->srv->draining) {
        conn_next_request(c);
        return;
    }
    /* Half-close, then discard what the peer still sends until it closes. */
    c->state = CONN_LINGERING;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    conn_timer(c, LINGER_MS);
    conn_start_reading(c);
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    http_server_t *s = c->srv;
    if (c->state == CONN_READING && c->started) {
        s->stats.timeouts++;
        errmsg_t em;
        errmsg_set(&em, ERR_TIMEOUT, "request not received within %llu ms (request-timeout)",
                   (unsigned long long)s->lim.request_timeout_ms);
        conn_refuse(c, 408, ERR_TIMEOUT, &em);
        return;
    }
    if (c->state == CONN_READING)
        s->stats.idle_closed++;
    else if (c->state == CONN_WRITING)
        s->stats.timeouts++; /* the peer does not read its response */
    conn_close(c);
}

static void conn_timer(conn_t *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---------- responses ---------- */

static const char *reason(int status)
{
    switch (status) {
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return http_status_str((enum http_status)status);
    }
}

/* The handler answered: it holds the request no more, and the body has been
 * handled, so its bytes go back to the budget now. */
static void conn_handler_done(conn_t *c)
{
    http_server_t *s = c->srv;
    if (c->in_handler) {
        c->in_handler = 0;
        s->stats.requests_in_flight--;
    }
    c->gone = NULL;
    s->stats.buffered_bytes -= c->charged;
    c->charged = 0;
}

static void conn_free_mem(conn_t *c)
{
    buf_free(&c->head);
    buf_free(&c->body);
    buf_free(&c->pending);
    buf_free(&c->scratch);
    buf_free(&c->out_head);
    buf_free(&c->out_body);
    free(c);
}

/* The status line and headers of resp, for a body of length bytes
 * (HTTP_LENGTH_UNKNOWN: chunked when c->chunked, else ended by closing). */
static int build_head(conn_t *c, const http_response_t *resp, uint64_t length)
{
    buf_init(&c->out_head, 4096 + (resp->extra_headers ? strlen(resp->extra_headers) : 0));
    int rc = buf_printf(&c->out_head, "HTTP/1.1 %d %s\r\nServer: flamedb\r\n", resp->status,
                        reason(resp->status));
    if (rc == ERR_OK && length != HTTP_LENGTH_UNKNOWN)
        rc = buf_printf(&c->out_head, "Content-Length: %llu\r\n", (unsigned long long)length);
    else if (rc == ERR_OK && c->chunked)
        rc = buf_append_str(&c->out_head, "Transfer-Encoding: chunked\r\n");
    if (rc == ERR_OK && resp->content_type)
        rc = buf_printf(&c->out_head, "Content-Type: %s\r\n", resp->content_type);
    if (rc == ERR_OK && resp->content_encoding)
        rc = buf_printf(&c->out_head, "Content-Encoding: %s\r\n", resp->content_encoding);
    if (rc == ERR_OK && resp->extra_headers) rc = buf_append_str(&c->out_head, resp->extra_headers);
    if (rc == ERR_OK)
        rc = buf_printf(&c->out_head, "Connection: %s\r\n\r\n",
                        c->keep_alive ? "keep-alive" : "close");
    return rc;
}

/* Writes the head and out_body (when with_body) of c and moves to WRITING. */
static void conn_write_out(conn_t *c, int with_body)
{
    uv_buf_t bufs[2] = {
        uv_buf_init((char *)c->out_head.data, (unsigned)c->out_head.len),
        uv_buf_init((char *)c->out_body.data, (unsigned)c->out_body.len),
    };
    c->state = CONN_WRITING;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, with_body ? 2 : 1, on_written) != 0) {
        conn_drop(c);
        return;
    }
    /* A peer that stops reading its response is cut off after this. */
    conn_timer(c, c->srv->lim.request_timeout_ms);
}

/* Writes resp on c (state HANDLING) and moves to WRITING. */
static void conn_reply(conn_t *c, http_response_t *resp)
{
    http_server_t *s = c->srv;
    if (s->draining) c->keep_alive = 0;
    int rc = build_head(c, resp, resp->body.len);
    c->out_body = resp->body;
    buf_init(&resp->body, 0);
    if (rc != ERR_OK) {
        conn_drop(c);
        return;
    }
    /* A response to HEAD ends with its headers (RFC 9112 6.3): a body would
     * be read as the start of the next response on this connection. */
    conn_write_out(c, c->out_body.len > 0 && c->parser.method != HTTP_HEAD);
}

/* Once per answer, written or not (the connection may have been cut): the
 * observer also releases what the handler held for the exchange. */
static void observe(conn_t *c, int status)
{
    http_server_t *s = c->srv;
    if (s->observer)
        s->observer(s->ctx, c, status, now_ms(c) - (c->started ? c->start_ms : now_ms(c)));
}

/* Responses held until the client has read them share max-buffered-bytes
 * with request bodies (a slow reader holds its response until
 * request-timeout). One that does not fit is replaced by a 503; small ones
 * (errors, acknowledgements) are always sent, and counted. */
static int response_fits(conn_t *c, http_response_t *resp)
{
    http_server_t *s = c->srv;
    size_t n = resp->body.len;
    if (n > RESPONSE_ALWAYS_BYTES && s->stats.buffered_bytes + n > s->lim.max_buffered_bytes) {
        s->stats.busy++;
        buf_free(&resp->body);
        errmsg_t em;
        errmsg_set(&em, ERR_UNAVAILABLE,
                   "server busy: a response of %zu bytes would exceed max-buffered-bytes (%zu "
                   "bytes) with the bodies held now; retry later",
                   n, s->lim.max_buffered_bytes);
        http_respond_error(c, 503, ERR_UNAVAILABLE, &em, "Retry-After: 1\r\n");
        return 0;
    }
    s->stats.buffered_bytes += n;
    c->out_charged = n;
    return 1;
}

void http_respond(http_exchange_t *c, http_response_t *resp)
{
    if (!c->abandoned && c->state == CONN_HANDLING && !c->close_requested) {
        conn_handler_done(c); /* the request's body is not needed any more */
        if (!response_fits(c, resp)) return;
    }
    if (c->abandoned || c->state == CONN_HANDLING) observe(c, resp->status);
    if (c->abandoned) { /* its connection was cut at the drain deadline */
        buf_free(&resp->body);
        conn_handler_done(c);
        if (c->detached) conn_free_mem(c);
        return;
    }
    if (c->state != CONN_HANDLING) {
        log_error("http", "response for a connection in state %d ignored", (int)c->state);
        buf_free(&resp->body);
        return;
    }
    conn_handler_done(c);
    if (c->close_requested) {
        buf_free(&resp->body);
        conn_drop(c);
        return;
    }
    conn_reply(c, resp);
}

/* Writes resp's head and the first slice of p's body on c (HANDLING). */
static void conn_reply_stream(conn_t *c, http_response_t *resp, const http_body_producer_t *p)
{
    if (c->srv->draining) c->keep_alive = 0;
    c->prod = *p;
    c->producing = 1;
    c->prod_done = 0;
    c->prod_sent = 0;
    /* a body of unknown length: chunks for HTTP/1.1, else it ends with the
     * connection (HTTP/1.0 has no chunks) */
    int unknown = p->length == HTTP_LENGTH_UNKNOWN;
    c->chunked = unknown && (c->parser.http_major > 1 ||
                             (c->parser.http_major == 1 && c->parser.http_minor >= 1));
    if (unknown && !c->chunked) c->keep_alive = 0;
    buf_init(&c->out_body, BUF_UNLIMITED);
    if (build_head(c, resp, p->length) != ERR_OK) {
        stream_end(c, 0);
        conn_drop(c);
        return;
    }
    int rc = 0;
    if (c->parser.method != HTTP_HEAD)
        rc = stream_produce(c); /* the first slice goes with the head */
    else
        c->prod_done = 1; /* HEAD: headers only */
    if (rc != 0) {
        stream_end(c, 0);
        conn_drop(c);
        return;
    }
    c->out_charged = c->out_body.len;
    c->srv->stats.buffered_bytes += c->out_charged;
    conn_write_out(c, c->out_body.len > 0);
}

void http_respond_stream(http_exchange_t *c, http_response_t *resp, const http_body_producer_t *p)
{
    buf_free(&resp->body);
    if (c->abandoned || c->state != CONN_HANDLING || c->close_requested) {
        p->release(p->arg, 0);
        http_respond(c, resp); /* observed, the connection closed as for any answer */
        return;
    }
    conn_handler_done(c);
    observe(c, resp->status);
    conn_reply_stream(c, resp, p);
}

void http_respond_error(http_exchange_t *ex, int status, int err, const errmsg_t *em,
                        const char *extra_headers)
{
    http_response_t r = {.status = status ? status : err_http_status(err),
                         .content_type = "application/json",
                         .extra_headers = extra_headers};
    buf_init(&r.body, 2 * ERRMSG_MAX + 256);
    const char *code = err_code_name(err);
    const char *msg = errmsg_text(em, err);
    buf_append_str(&r.body, "{\"code\":");
    buf_append_json_string(&r.body, code, strlen(code));
    buf_append_str(&r.body, ",\"message\":");
    buf_append_json_string(&r.body, msg, strlen(msg));
    buf_append_str(&r.body, "}\n");
    http_respond(ex, &r);
}

/* ---------- connection lifetime ---------- */

static conn_t *first_conn(const http_server_t *s)
{
    return LIST_ENTRY(list_first(&s->conns), conn_t, link);
}

static conn_t *next_conn(const http_server_t *s, const conn_t *c)
{
    return LIST_ENTRY(list_next(&s->conns, &c->link), conn_t, link);
}

static void conn_free(conn_t *c)
{
    http_server_t *s = c->srv;
    s->stats.buffered_bytes -= c->charged;
    release_response(c);
    stream_end(c, 0);
    list_remove(&c->link);
    conn_free_mem(c);
    server_check_drained(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles_open != 0) return;
    if (!(c->abandoned && c->in_handler)) {
        conn_free(c);
        return;
    }
    /* The handler still holds the request: leave the server's list (the
     * drain is over for this connection) and wait for http_respond. */
    http_server_t *s = c->srv;
    list_remove(&c->link);
    c->detached = 1;
    server_check_drained(s);
}

/* At the drain deadline: a connection whose request is still being handled
 * is cut now (its socket closed), instead of waiting for a handler that may
 * itself wait on a peer for much longer. */
static void conn_abandon(conn_t *c)
{
    if (c->state != CONN_HANDLING) {
        conn_close(c);
        return;
    }
    c->abandoned = 1;
    c->state = CONN_CLOSING;
    c->srv->stats.connections_open--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSING) return;
    if (c->state == CONN_HANDLING) {
        /* The handler still holds the request: close when it answers. */
        c->close_requested = 1;
        return;
    }
    c->state = CONN_CLOSING;
    /* uv_close releases the socket now; only the callbacks wait for the end of
     * this loop iteration. Counting the connection as open until then refused
     * a client that closed one connection and at once opened the next (both
     * seen in one iteration) at max_connections. */
    c->srv->stats.connections_open--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* Closes c now, also from HANDLING (its handler has answered, or the answer
 * cannot be written). */
static void conn_drop(conn_t *c)
{
    if (c->state == CONN_HANDLING) c->state = CONN_READING;
    conn_close(c);
}

static conn_t *conn_new(http_server_t *s)
{
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->srv = s;
    buf_init(&c->head, s->lim.max_header_bytes);
    buf_init(&c->body, s->lim.max_body_bytes);
    buf_init(&c->pending, READ_CHUNK);
    /* decoded path and parameters never outgrow the raw URL plus NULs */
    buf_init(&c->scratch, s->lim.max_header_bytes + 2 * HTTP_MAX_PARAMS + 2);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    list_push_front(&s->conns, &c->link);
    s->stats.connections_open++;
    conn_reset_request(c);
    return c;
}

/* Keeps the first bits of a 16-byte IPv6 address (client-ipv6-prefix):
 * the addresses of one /bits count as one client. */
static void peer_mask(uint8_t addr[16], uint32_t bits)
{
    if (bits == 0 || bits > 128) bits = 128;
    for (uint32_t i = 0; i < 16; i++) {
        uint32_t keep = bits > 8 * i ? bits - 8 * i : 0;
        if (keep < 8) addr[i] &= (uint8_t)(0xff00u >> keep);
    }
}

/* Records c's client (its IPv4 address, or its IPv6 address's
 * client-ipv6-prefix); returns how many open connections (c included)
 * come from it. A scan: the list is bounded by max-connections and only
 * walked per accepted connection when max-connections-per-client is set. */
static size_t peer_connections(http_server_t *s, conn_t *c)
{
    struct sockaddr_storage a;
    int len = sizeof a;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&a, &len) != 0) return 1;
    int family = a.ss_family;
    if (family == AF_INET) {
        memcpy(c->peer, &((struct sockaddr_in *)&a)->sin_addr, 4);
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&a)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) { /* an IPv4 client on an IPv6 listener */
            memcpy(c->peer, a6->s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(c->peer, a6->s6_addr, 16);
            peer_mask(c->peer, s->lim.client_ipv6_prefix);
        }
    } else {
        return 1;
    }
    c->peer_family = family;
    size_t n = 0;
    for (conn_t *o = first_conn(s); o != NULL; o = next_conn(s, o))
        if (o->state != CONN_CLOSING && o->peer_family == c->peer_family &&
            memcmp(o->peer, c->peer, sizeof c->peer) == 0)
            n++;
    return n;
}

/* Answers 503 on a fresh connection (best effort) and closes it. */
static void refuse_connection(http_server_t *s, conn_t *c, const char *setting)
{
    char body[160], busy[512];
    snprintf(body, sizeof body,
             "{\"code\":\"unavailable\",\"message\":\"too many connections (%s)\"}\n", setting);
    int n = snprintf(busy, sizeof busy,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                     strlen(body), body);
    uv_buf_t b = uv_buf_init(busy, (unsigned)n);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort: the socket is fresh */
    s->stats.connections_rejected++;
    conn_close(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server_t *s = listener->data;
    if (status < 0 || s->draining) return;
    conn_t *c = conn_new(s);
    if (c == NULL) return;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (s->stats.connections_open > s->lim.max_connections) {
        refuse_connection(s, c, "max-connections");
        return;
    }
    if (s->lim.max_connections_per_client > 0 &&
        peer_connections(s, c) > s->lim.max_connections_per_client) {
        refuse_connection(s, c, "max-connections-per-client");
        return;
    }
    s->stats.connections_accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CONN_READING;
    conn_timer(c, s->lim.idle_timeout_ms);
    conn_start_reading(c);
}

/* ---------- fairness: iteration counter and resumption of yielded reads ---------- */

static void on_prepare(uv_prepare_t *h)
{
    http_server_t *s = h->data;
    s->iter++;
}

static void on_idle(uv_idle_t *h)
{
    http_server_t *s = h->data;
    uv_idle_stop(h);
    for (conn_t *c = first_conn(s); c != NULL; c = next_conn(s, c)) {
        if (!c->yielded) continue;
        c->yielded = 0;
        if (c->state == CONN_READING) conn_start_reading(c);
    }
}

/* ---------- server lifetime ---------- */

int http_server_new(uv_loop_t *loop, const http_server_limits_t *lim, http_handler_fn handler,
                    http_observer_fn observer, void *ctx, http_server_t **out)
{
    http_server_t *s = calloc(1, sizeof *s);
    if (s == NULL) return ERR_NOMEM;
    s->loop = loop;
    list_init(&s->conns);
    s->lim = *lim;
    if (s->lim.max_header_bytes > HTTP_MAX_HEADER_BYTES_LIMIT)
        s->lim.max_header_bytes = HTTP_MAX_HEADER_BYTES_LIMIT;
    s->handler = handler;
    s->observer = observer;
    s->ctx = ctx;
    s->port = -1;
    uv_tcp_init(loop, &s->listener);
    uv_prepare_init(loop, &s->prepare);
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->drain_timer);
    s->listener.data = s->prepare.data = s->idle.data = s->drain_timer.data = s;
    s->handles_open = 4;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_unref((uv_handle_t *)&s->prepare); /* counting wakeups must not keep the loop alive */
    *out = s;
    return ERR_OK;
}

void http_server_set_head_check(http_server_t *s, http_head_fn fn)
{
    s->head_check = fn;
}

int http_server_listen(http_server_t *s, const char *host, int port, errmsg_t *em)
{
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "http-listen: '%s' is not an IP address", host);
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc != 0)
        return errmsg_set(em, ERR_IO, "http-listen %s:%d: %s", host, port, uv_strerror(rc));
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    s->listening = 1;
    return ERR_OK;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

const http_server_stats_t *http_server_stats(const http_server_t *s)
{
    return &s->stats;
}

static void on_server_handle_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    if (--s->handles_open == 0 && s->drain_done && !s->done_called) {
        s->done_called = 1;
        s->drain_done(s->drain_arg);
    }
}

static void server_check_drained(http_server_t *s)
{
    if (!s->draining || !list_empty(&s->conns) || s->rest_closed) return;
    s->rest_closed = 1;
    uv_close((uv_handle_t *)&s->prepare, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_closed);
}

static void on_drain_timeout(uv_timer_t *t)
{
    http_server_t *s = t->data;
    conn_t *next;
    for (conn_t *c = first_conn(s); c != NULL; c = next) {
        next = next_conn(s, c); /* neither frees synchronously */
        conn_abandon(c);
    }
}

void http_server_drain(http_server_t *s, uint64_t timeout_ms, void (*done)(void *arg), void *arg)
{
    if (s->draining) return;
    s->draining = 1;
    s->drain_done = done;
    s->drain_arg = arg;
    /* Closing the listener makes new connections fail fast instead of waiting. */
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    s->listening = 0;
    conn_t *next;
    for (conn_t *c = first_conn(s); c != NULL; c = next) {
        next = next_conn(s, c);
        if ((c->state == CONN_READING && !c->started) || c->state == CONN_LINGERING) conn_close(c);
    }
    uv_timer_start(&s->drain_timer, on_drain_timeout, timeout_ms, 0);
    server_check_drained(s);
}

void http_server_free(http_server_t *s)
{
    free(s);
}

/* ---------- accessors ---------- */

const http_request_t *http_exchange_request(const http_exchange_t *ex)
{
    return &ex->req;
}

void http_exchange_set_tag(http_exchange_t *ex, int tag)
{
    ex->tag = tag;
}

int http_exchange_tag(const http_exchange_t *ex)
{
    return ex->tag;
}

void http_exchange_on_gone(http_exchange_t *ex, http_gone_fn fn, void *arg)
{
    ex->gone = ex->in_handler ? fn : NULL;
    ex->gone_arg = arg;
}

void http_exchange_set_principal(http_exchange_t *ex, const char *name)
{
    snprintf(ex->principal, sizeof ex->principal, "%s", name);
}

const char *http_exchange_principal(const http_exchange_t *ex)
{
    return ex->principal;
}

const char *http_request_header(const http_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

const char *http_request_param(const http_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0) return r->params[i].value;
    return NULL;
}

void http_server_stats_register(metrics_registry_t *r, const http_server_stats_t *st)
{
#define HTTP_DEF(field, type, name, help)                                                          \
    {                                                                                              \
        name, help, type, offsetof(http_server_stats_t, field)                                     \
    }
    static const metrics_u64_def_t defs[] = {
        HTTP_DEF(connections_open, METRICS_GAUGE, "flamedb_http_connections_open",
                 "Open HTTP connections."),
        HTTP_DEF(connections_accepted, METRICS_COUNTER, "flamedb_http_connections_accepted_total",
                 "Accepted connections."),
        HTTP_DEF(connections_rejected, METRICS_COUNTER, "flamedb_http_connections_rejected_total",
                 "Connections refused over max-connections."),
        HTTP_DEF(requests_in_flight, METRICS_GAUGE, "flamedb_http_requests_in_flight",
                 "Requests being handled (decoding, storing, querying)."),
        HTTP_DEF(buffered_bytes, METRICS_GAUGE, "flamedb_http_buffered_body_bytes",
                 "Request bodies and unsent response bodies held in memory (bounded by "
                 "max-buffered-bytes)."),
        HTTP_DEF(protocol_errors, METRICS_COUNTER, "flamedb_http_protocol_errors_total",
                 "Malformed HTTP requests."),
        HTTP_DEF(too_large, METRICS_COUNTER, "flamedb_http_too_large_total",
                 "Requests refused with 413 or 431."),
        HTTP_DEF(busy, METRICS_COUNTER, "flamedb_http_busy_total",
                 "Requests or responses refused with 503 because max-buffered-bytes was reached."),
        HTTP_DEF(timeouts, METRICS_COUNTER, "flamedb_http_timeouts_total",
                 "Requests not received, or responses not read, within request-timeout."),
        HTTP_DEF(idle_closed, METRICS_COUNTER, "flamedb_http_idle_closed_total",
                 "Keep-alive connections closed after idle-timeout."),
        HTTP_DEF(client_gone, METRICS_COUNTER, "flamedb_http_client_gone_total",
                 "Requests whose client closed or reset the connection while they were handled."),
    };
#undef HTTP_DEF
    metrics_add_u64_array(r, defs, sizeof defs / sizeof defs[0], st);
}
