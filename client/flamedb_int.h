/* flamedb_int.h — internals of libflamedb, shared by the client sources and the
 * client unit tests; never installed.
 *
 * url.c   parses the base URL and builds URL-encoded query strings;
 * http.c  owns the socket: connect with timeout, request writing, bounded
 *         response parsing (Content-Length, chunked, until-close);
 * top.c   reads the top functions answer of GET /api/top (flamectl; not exported);
 * report.c reads the regression report of GET /api/diff (flamectl; not exported);
 * shares.c, plist.c read GET /api/label-shares and /api/profiles, on the
 *         member walk of answer.c (flamectl; not exported);
 * json.c  reads the two JSON shapes the client needs (string arrays and
 *         {"code","message"} error objects) with bounded depth.
 * Nothing here is thread-safe; one connection belongs to one client.
 */
#ifndef FLAMEDB_CLIENT_FLAMEDB_INT_H
#define FLAMEDB_CLIENT_FLAMEDB_INT_H

#include <stddef.h>
#include <stdint.h>

#include "client/flamedb.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/json.h"

/* Limits of what the client accepts from a server. */
#define FLAMEDB__MAX_HEADER_LINE 8192   /* status line or one header */
#define FLAMEDB__MAX_HEADER_BYTES 65536 /* all headers of one response */
#define FLAMEDB__MAX_HEADERS 100        /* header lines of one response */
#define FLAMEDB__MAX_INTERIM 8          /* 1xx responses before the real one */
#define FLAMEDB__MAX_STRINGS 1000000    /* items of a JSON string array */
#define FLAMEDB__JSON_MAX_DEPTH 64

/* --- url.c --- */

typedef struct flamedb__url {
    char host[256];   /* without brackets for IPv6 literals */
    char port[8];     /* decimal */
    char prefix[512]; /* path prefix without trailing '/', "" for none */
    int ipv6;         /* host is an IPv6 literal (needs brackets in Host:) */
} flamedb__url_t;

/* Parses "http://host[:port][/prefix]". ERR_UNSUPPORTED for other schemes,
 * ERR_INVALID_ARGUMENT otherwise, with the reason in em. */
int flamedb__url_parse(const char *url, flamedb__url_t *out, errmsg_t *em);
/* Appends s percent-encoded for a query-string value (RFC 3986 unreserved
 * characters stay as they are). */
int flamedb__url_escape(buf_t *b, const char *s);
/* Appends "?key=value" (first parameter of b) or "&key=value"; a NULL value
 * appends nothing. */
int flamedb__query_add(buf_t *b, const char *key, const char *value);
int flamedb__query_add_int(buf_t *b, const char *key, int64_t value);

/* --- http.c --- */

typedef struct flamedb__conn {
    int fd; /* -1 when not connected */
    int connect_timeout_ms;
    int io_timeout_ms;
    /* read buffer: bytes [rpos, rlen) received but not yet consumed */
    uint8_t rbuf[16384];
    size_t rpos, rlen;
    size_t resp_bytes; /* bytes received for the current response */
    int stale;         /* the peer closed before any byte of the response */
    /* Giving up early (the sampler's stop, flamedb_sampler.h): while
     * cancel_fd (-1: none) is readable every wait fails at once, and no
     * wait lasts past deadline_ns (CLOCK_MONOTONIC; 0: none); both with
     * ERR_TIMEOUT. Set by the connection's one user, between calls. */
    int cancel_fd;
    int64_t deadline_ns;
} flamedb__conn_t;

typedef struct flamedb__request {
    const char *method;
    const char *target; /* path and query, already encoded */
    /* "Name: value\r\n" lines or NULL; borrowed from the client. They hold
     * the bearer token: never put them in a message or a log. */
    const char *extra_headers;
    const char *content_type; /* NULL: no body headers unless body_len > 0 */
    const void *body;
    size_t body_len;
} flamedb__request_t;

typedef struct flamedb__response {
    int status;
    int keep_alive;
    char content_type[128];
    int stored_nothing; /* X-Flamedb-Stored: nothing (an empty push) */
    buf_t body;         /* initialised by flamedb__http_do with the body limit */
} flamedb__response_t;

/* 1 when the last request's answer said the node stored nothing (a push
 * without a sample of any value, answered 200): flamectl tells its user. */
int flamedb__stored_nothing(const flamedb_client_t *c);

void flamedb__conn_init(flamedb__conn_t *c, int connect_timeout_ms, int io_timeout_ms);
/* The client's connection (flamedb.c): the sampler sets its cancel_fd and
 * deadline_ns for the pushes it makes. */
flamedb__conn_t *flamedb__client_conn(flamedb_client_t *c);
void flamedb__conn_close(flamedb__conn_t *c);
/* Sends req and reads one complete response into resp (resp->body is
 * initialised here with max_body as its limit; caller frees it with
 * buf_free() whatever the result). Connects when needed; when a reused
 * keep-alive connection turns out to be closed by the server before any byte
 * of the response arrived, reconnects and sends once more. */
int flamedb__http_do(flamedb__conn_t *c, const flamedb__url_t *u, const flamedb__request_t *req,
                     size_t max_body, flamedb__response_t *resp, errmsg_t *em);

/* --- json.c --- */

/* Parses a JSON array of strings into out (caller owns). ERR_UNPARSEABLE on
 * anything else. */
int flamedb__json_strings(const char *p, size_t n, flamedb_strings_t *out, errmsg_t *em);
/* Reads the top-level "code" and "message" strings of a JSON object into the
 * given buffers (truncated, "" when absent). ERR_UNPARSEABLE when p is not a
 * JSON object. */
int flamedb__json_error(const char *p, size_t n, char *code, size_t code_len, char *msg,
                        size_t msg_len);

/* --- top.c (in-tree only, used by flamectl) --- */

/* --- answer.c: reading flamectl's JSON answers (top, report, shares) --- */

/* A number member; null reads as 0 with *is_null set (when is_null is not
 * NULL). */
int flamedb__json_number(json_t *j, double *v, int *is_null);
int flamedb__json_int(json_t *j, int64_t *v);
/* true reads as 1, anything else as 0. */
int flamedb__json_bool(json_t *j, int *v);
/* A string member into *out (replacing it); caller owns; free(). */
int flamedb__json_dup(json_t *j, char **out);
/* Reads one member of an answer object: key borrowed for the call. */
typedef int (*flamedb__json_member_fn)(json_t *j, const char *key, void *ctx);
/* Walks the answer object of text[0..n), calling member for each key.
 * ERR_UNPARSEABLE "WHAT answer: not the expected JSON (byte N)" (or
 * ERR_NOMEM); the caller frees what member filled in. */
int flamedb__json_answer(const char *text, size_t n, flamedb__json_member_fn member, void *ctx,
                         const char *what, errmsg_t *em);
/* Reads an array of objects into a growing array of rows of row_size bytes:
 * each row is zeroed, member reads each of its keys (ctx: the row), and
 * complete(row) says whether the row has what it needs (else
 * ERR_UNPARSEABLE). At most FLAMEDB__MAX_STRINGS rows (ERR_TOO_LARGE).
 * *rows and *count are the caller's (free the rows with what member
 * filled in). */
int flamedb__json_rows(json_t *j, void **rows, size_t *count, size_t row_size,
                       flamedb__json_member_fn member, int (*complete)(const void *row));

typedef struct flamedb__top_row {
    char *name;
    int64_t self, total;
    double self_pct, total_pct;     /* of the answer's total */
    double self_cores, total_cores; /* CPU types only, else 0 */
} flamedb__top_row_t;

typedef struct flamedb__top {
    flamedb__top_row_t *rows; /* in the server's order (by self or by total) */
    size_t count;
    int64_t sum;       /* the answer's total: every value selected */
    int64_t functions; /* distinct functions (rows may be fewer: the limit) */
    int64_t matches;   /* with a search: the functions matching it; -1 without */
    int64_t range_s;   /* seconds the query covered */
    double cores;      /* sum in CPU-seconds per second, when has_cores */
    int has_cores;     /* a CPU type */
    int average;       /* aggregationType "average": values are the average profile (a gauge) */
    int partial;       /* the server flagged the answer partial */
    char unit[32];     /* sample unit, e.g. nanoseconds, bytes, count */
} flamedb__top_t;

/* Reads the JSON answer of GET /api/top. Caller owns *out (free with
 * flamedb__top_free()). ERR_UNPARSEABLE, with the offset in em, for anything
 * else. */
int flamedb__top_parse(const char *text, size_t n, flamedb__top_t *out, errmsg_t *em);
void flamedb__top_free(flamedb__top_t *t);

/* --- report.c (in-tree only, used by flamectl diff) --- */

typedef struct flamedb__report_row {
    char *name;
    int64_t left_total, right_total;
    double left_share, right_share; /* percent of each side's ticks */
    double change;                  /* percentage points, right - left */
    double p;                       /* Welch p value, when tested */
    int tested, significant;
} flamedb__report_row_t;

typedef struct flamedb__report {
    flamedb__report_row_t *rows; /* in the server's order (largest |change| first) */
    size_t count;
    int64_t left_ticks, right_ticks, left_seconds, right_seconds;
    int64_t left_buckets, right_buckets, functions, tested;
    int64_t matches; /* with a search: the functions matching it; -1 without */
    int partial;
    char unit[32];
} flamedb__report_t;

/* Reads the JSON answer of GET /api/diff. Caller owns *out (free with
 * flamedb__report_free()). ERR_UNPARSEABLE, with the offset in em, for
 * anything else. */
int flamedb__report_parse(const char *text, size_t n, flamedb__report_t *out, errmsg_t *em);
void flamedb__report_free(flamedb__report_t *r);

/* --- shares.c (in-tree only, used by flamectl shares) --- */

typedef struct flamedb__share_row {
    char *value; /* the label's value; "" for series without the label */
    int64_t total;
    double share; /* fraction (0..1) of the answer's total */
} flamedb__share_row_t;

typedef struct flamedb__shares {
    flamedb__share_row_t *rows; /* in the server's order (largest first) */
    size_t count;
    int64_t total; /* the selection's total */
    int partial;
    int average; /* aggregationType "average": totals are the average profile's (in use) */
} flamedb__shares_t;

/* Reads the JSON answer of GET /api/label-shares. Caller owns *out (free
 * with flamedb__shares_free()). ERR_UNPARSEABLE, with the offset in em, for
 * anything else. */
int flamedb__shares_parse(const char *text, size_t n, flamedb__shares_t *out, errmsg_t *em);
void flamedb__shares_free(flamedb__shares_t *t);

/* --- plist.c (in-tree only, used by flamectl profiles) --- */

typedef struct flamedb__plist_row {
    int64_t time_s; /* the profile's time, unix seconds */
    char *id;       /* what GET /api/profiles/ID opens */
    int64_t total;
    char *labels; /* "name=value,..." without __name__ and __profile_type__ */
} flamedb__plist_row_t;

typedef struct flamedb__plist {
    flamedb__plist_row_t *rows; /* in the server's order (newest first) */
    size_t count;
    int truncated, partial;
} flamedb__plist_t;

/* Reads the JSON answer of GET /api/profiles. Caller owns *out (free with
 * flamedb__plist_free()). ERR_UNPARSEABLE, with the offset in em, for
 * anything else. */
int flamedb__plist_parse(const char *text, size_t n, flamedb__plist_t *out, errmsg_t *em);
void flamedb__plist_free(flamedb__plist_t *t);

#endif
