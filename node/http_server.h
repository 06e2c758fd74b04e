/* http_server.h — the node's HTTP/1.1 server on libuv (internal to node/).
 *
 * Owns listening, connections, request parsing (http-parser), the request
 * limits (header bytes, body bytes, the server-wide budget of buffered body
 * bytes and unread responses, connection count overall and per client IP,
 * idle and request timeouts), the header rules that keep a gateway's view and
 * ours the same (a duplicate of a sent-once header or whitespace before a
 * colon is a 400; chunked trailers are dropped), keep-alive, pipelining,
 * `Expect: 100-continue`, response framing and draining on shutdown (cut at
 * the deadline, also while a handler still holds the request). It knows
 * nothing of routes: each complete request goes to one handler callback.
 *
 * Connections: each connection is an explicit state machine (enum conn_state
 * in http_server.c) with at most one request in flight. While a request is
 * handled its connection is still read, but not parsed: a pipelining client
 * is served one request at a time, its next bytes kept (up to 64 KiB, then
 * they wait in the kernel), and a client that closes or resets the
 * connection is noticed at once: the handler hears it through the callback
 * it set with http_exchange_on_gone() (to cancel its work) and the
 * connection closes once the handler answers (after writing the answer when
 * the client only half-closed: it may still read). Work
 * per loop wakeup is capped per connection (HTTP_BYTES_PER_WAKEUP parsed
 * bytes; one request dispatched), so a client streaming a large body or a
 * long pipeline cannot starve the others.
 *
 * Threads: every function must be called on the loop thread. A handler may
 * answer at once or later (for example from a uv_queue_work after-callback,
 * which runs on the loop thread); the request it was given stays valid, and
 * its connection stays open, until it calls http_respond() exactly once.
 *
 * Ownership: http_server_new() returns a server the caller owns. Close it with
 * http_server_drain() and, once the drain callback has run, free it with
 * http_server_free() (after the loop has run out of work: a handler cut at
 * the drain deadline may still answer until then). Request fields are
 * borrowed until http_respond().
 *
 * Streamed bodies: http_respond_stream() sends a body that a producer
 * writes a slice at a time, each once the previous one has been written,
 * with its Content-Length when known, else in chunks (Transfer-Encoding:
 * chunked; to an HTTP/1.0 client, ended by closing the connection); the
 * server calls its release exactly once, when the last byte is written or
 * the connection ends first (the producer owns what it writes from until
 * then).
 */
#ifndef FLAMEDB_NODE_HTTP_SERVER_H
#define FLAMEDB_NODE_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/metrics.h"

/* Bytes one connection may parse per loop wakeup before it yields. */
#define HTTP_BYTES_PER_WAKEUP (256 * 1024)
/* Bytes of a streamed body produced per write (http_respond_stream): what
 * one response holds produced but not yet written. */
#define HTTP_STREAM_SLICE_BYTES (256 * 1024)
/* Headers and query parameters kept per request; more is refused (431/400). */
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 64
/* Bytes of the authenticated principal (a tenant) kept per exchange. */
#define HTTP_PRINCIPAL_MAX 160
/* http-parser refuses header blocks over 80 KiB itself (HTTP_MAX_HEADER_SIZE). */
#define HTTP_MAX_HEADER_BYTES_LIMIT (64 * 1024)

typedef struct http_server http_server_t;
/* One request and its response on a connection. */
typedef struct http_exchange http_exchange_t;

typedef struct http_server_limits {
    size_t max_connections;            /* further connections get 503 and are closed */
    size_t max_connections_per_client; /* per peer IP address; 0 = no limit */
    uint32_t client_ipv6_prefix;       /* an IPv6 client is its /N (1 .. 128) */
    size_t max_header_bytes;           /* request line + headers; over -> 431 */
    size_t max_body_bytes;             /* one body; over -> 413 (from Content-Length, early) */
    size_t max_buffered_bytes;         /* all bodies held at once; over -> 503 + Retry-After */
    uint64_t idle_timeout_ms;          /* keep-alive connection with no request: closed */
    uint64_t request_timeout_ms;       /* first byte to last byte of a request; also a
                                          stalled response write. Over -> 408, closed */
} http_server_limits_t;

typedef struct http_kv {
    const char *name;
    const char *value;
} http_kv_t;

typedef struct http_request {
    int method; /* enum http_method of http_parser.h */
    const char *method_name;
    const char *path;         /* percent-decoded, no query */
    const char *query;        /* raw query string, "" when none */
    const http_kv_t *headers; /* names as received */
    size_t nheaders;
    const http_kv_t *params; /* query parameters, URL-decoded ('+' is a space) */
    size_t nparams;
    const uint8_t *body; /* NUL-terminated one past body_len */
    size_t body_len;
    uint64_t start_ms; /* uv_now() when the first byte arrived */
} http_request_t;

typedef struct http_response {
    int status;
    const char *content_type;     /* may be NULL when the body is empty */
    const char *content_encoding; /* NULL or e.g. "gzip" */
    const char *extra_headers;    /* NULL or "Name: value\r\n" lines */
    buf_t body;                   /* http_respond() takes ownership of its storage */
} http_response_t;

/* Counters of what the server itself answered or refused (handlers count the
 * rest). Read on the loop thread. */
typedef struct http_server_stats {
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over max_connections */
    uint64_t connections_open;
    uint64_t requests_in_flight; /* handed to the handler, not yet answered */
    uint64_t buffered_bytes;     /* body bytes held now */
    uint64_t protocol_errors;    /* malformed HTTP -> 400 */
    uint64_t too_large;          /* 413 / 431 */
    uint64_t busy;               /* 503: buffered-bytes budget exhausted */
    uint64_t timeouts;           /* 408 or closed for a stalled write */
    uint64_t idle_closed;
    uint64_t client_gone; /* clients that closed while their request was handled */
} http_server_stats_t;

typedef void (*http_handler_fn)(void *ctx, http_exchange_t *ex);
/* Called once per answer, handler's or the server's own, with the
 * route-independent facts (for request metrics, and to release what a
 * handler held for the exchange): also when the answer could not be written
 * because the connection was closed or cut at the drain deadline. May be
 * NULL. */
typedef void (*http_observer_fn)(void *ctx, const http_exchange_t *ex, int status,
                                 uint64_t duration_ms);

int http_server_new(uv_loop_t *loop, const http_server_limits_t *lim, http_handler_fn handler,
                    http_observer_fn observer, void *ctx, http_server_t **out);

/* A refusal decided from a request's head alone. */
typedef struct http_refusal {
    int status;                /* 0: err_http_status(err) */
    int err;                   /* an ERR_* code */
    errmsg_t em;               /* the reason */
    const char *extra_headers; /* NULL or "Name: value\r\n" lines; must outlive the answer
                                  (a static string) */
} http_refusal_t;
/* Called with the server's ctx once a request's line and headers are
 * complete, before a byte of its body is read into memory and before a
 * 100 Continue: returns 0 to go on, or non-zero with *out filled to refuse
 * the request, which is then answered at once and its connection closed
 * (its body never held). r is complete but for its body (body_len 0). */
typedef int (*http_head_fn)(void *ctx, const http_request_t *r, http_refusal_t *out);
/* Sets (NULL: clears) the head check of s. */
void http_server_set_head_check(http_server_t *s, http_head_fn fn);

/* Binds and listens on host:port (IPv4 or IPv6 literal; port 0 picks a free one). */
int http_server_listen(http_server_t *s, const char *host, int port, errmsg_t *em);
/* The bound port (after http_server_listen), or -1. */
int http_server_port(const http_server_t *s);
const http_server_stats_t *http_server_stats(const http_server_t *s);
/* Registers the fields of st (a copy, borrowed until the registry is
 * rendered) as flamedb_http_* metrics. */
void http_server_stats_register(metrics_registry_t *r, const http_server_stats_t *st);

/* Stops accepting, closes idle connections, lets in-flight requests finish
 * (their connections close after the response), and force-closes whatever is
 * left after timeout_ms. done(arg) runs once every connection and the listener
 * are closed. Handlers still running then are answered into the void. */
void http_server_drain(http_server_t *s, uint64_t timeout_ms, void (*done)(void *arg), void *arg);
/* Frees a drained server (after done ran). NULL is a no-op. */
void http_server_free(http_server_t *s);

/* The request of an exchange; borrowed until http_respond(). */
const http_request_t *http_exchange_request(const http_exchange_t *ex);
/* Per-exchange slot for the handler (e.g. its route index); 0 initially. */
void http_exchange_set_tag(http_exchange_t *ex, int tag);
int http_exchange_tag(const http_exchange_t *ex);
/* Called at most once, on the loop thread, when the client closes, resets
 * or half-closes the connection while the request is handled; the handler
 * should then answer soon. After a reset the answer is not written; after
 * an EOF it is (a half-closed client may still read it), then the
 * connection closes. */
typedef void (*http_gone_fn)(void *arg);
/* Sets (fn NULL: clears) the exchange's gone callback; only while it is
 * handled, and cleared when it is answered. arg is borrowed until then. */
void http_exchange_on_gone(http_exchange_t *ex, http_gone_fn fn, void *arg);
/* Who the handler authenticated the request as (copied, truncated to
 * HTTP_PRINCIPAL_MAX - 1 bytes); "" until set, reset for each request. */
void http_exchange_set_principal(http_exchange_t *ex, const char *name);
/* Borrowed until http_respond(). */
const char *http_exchange_principal(const http_exchange_t *ex);

/* Sends the response (takes ownership of resp->body's storage). Exactly once
 * per exchange, on the loop thread. */
void http_respond(http_exchange_t *ex, http_response_t *resp);
/* A response body produced in slices as the client reads it, so a large
 * answer is never held whole: the next slice is produced when the last one
 * has been written to the socket (one write in flight, at most about
 * HTTP_STREAM_SLICE_BYTES produced and unsent). length HTTP_LENGTH_UNKNOWN:
 * a body whose size is not known up front. */
#define HTTP_LENGTH_UNKNOWN UINT64_MAX
typedef struct http_body_producer {
    uint64_t length; /* Content-Length: exactly the bytes produce appends in all;
                        HTTP_LENGTH_UNKNOWN: sent in chunks */
    /* Appends want bytes or more of the body to out (fewer at its end, *done
     * then 1; or some, never none, when a slice would cost more work than
     * a loop wakeup should). An error, or more or fewer bytes than length in all,
     * cuts the connection (the client sees a short body). */
    int (*produce)(void *arg, buf_t *out, size_t want, int *done);
    /* Called exactly once on the loop thread, to release arg: completed 1
     * once the last byte was written; 0 when the body cannot be finished
     * (the client closed or reset the connection, did not read it all within
     * request-timeout, the drain deadline passed, produce failed, or the
     * exchange could not be answered at all), then possibly before
     * http_respond_stream returns. */
    void (*release)(void *arg, int completed);
    void *arg;
} http_body_producer_t;
/* As http_respond, with the body of p instead of resp->body (which must be
 * empty): status, headers and Content-Length (or Transfer-Encoding:
 * chunked) are sent first, then the body slice by slice. The whole answer
 * must be read within request-timeout, as any response. A response to HEAD
 * sends no body (released completed). */
void http_respond_stream(http_exchange_t *ex, http_response_t *resp, const http_body_producer_t *p);
/* Sends {"code": err_code_name(err), "message": errmsg_text(em, err)} with
 * status err_http_status(err) (status overrides when non-zero). */
void http_respond_error(http_exchange_t *ex, int status, int err, const errmsg_t *em,
                        const char *extra_headers);

/* Case-insensitive header lookup / exact parameter lookup; borrowed or NULL. */
const char *http_request_header(const http_request_t *r, const char *name);
const char *http_request_param(const http_request_t *r, const char *name);

/* Percent-decodes s[0..n) into out (plus_is_space for query strings).
 * ERR_INVALID_ARGUMENT on a bad escape or an encoded NUL. */
int http_url_decode(const char *s, size_t n, int plus_is_space, buf_t *out);

#endif
