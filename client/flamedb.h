/* flamedb.h — libflamedb, the C client of a flamedb node.
 *
 * A small blocking HTTP/1.1 client over POSIX sockets: it pushes profiles
 * (pprof or folded stacks) to POST /ingest and reads flame graphs and labels
 * from the /pyroscope/ endpoints. One flamedb_client_t holds one keep-alive
 * connection, reused across calls and re-opened when the server closed it.
 *
 * Threads: a client is not thread-safe; use one per thread (they share
 * nothing). Calls block for at most the configured connect and I/O timeouts.
 *
 * Errors: every fallible call returns 0 on success or a negative FLAMEDB_ERR_*
 * code. The codes have the same values and meanings as flamedb's ERR_* codes
 * (common/err.h), so a server error body {"code": "invalid_parameter", ...}
 * comes back as FLAMEDB_ERR_INVALID_ARGUMENT. flamedb_errmsg() gives the
 * reason of the last failed call: the server's own "message" when the server
 * answered with an error, otherwise what failed locally ("connect
 * 127.0.0.1:4040: Connection refused").
 *
 * Ownership: strings passed in are borrowed for the duration of the call.
 * Everything returned is either borrowed from the client (valid until the next
 * call on that client or flamedb_client_free(), said so at each function) or
 * owned by the caller and freed with the matching *_free function.
 */
#ifndef FLAMEDB_CLIENT_FLAMEDB_H
#define FLAMEDB_CLIENT_FLAMEDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FLAMEDB_API __attribute__((visibility("default")))
#else
#define FLAMEDB_API
#endif

/* Error codes: identical to ERR_* of common/err.h (checked at compile time). */
#define FLAMEDB_OK 0
#define FLAMEDB_ERR_NOMEM (-1)
#define FLAMEDB_ERR_INVALID_ARGUMENT (-2) /* bad argument or HTTP 400 */
#define FLAMEDB_ERR_TOO_LARGE (-3)        /* 413, or response over max_response_bytes */
#define FLAMEDB_ERR_UNPARSEABLE (-4)      /* 422, or a malformed HTTP response */
#define FLAMEDB_ERR_LIMIT (-5)            /* 429 */
#define FLAMEDB_ERR_NOT_FOUND (-6)        /* 404 */
#define FLAMEDB_ERR_IO (-7)               /* socket or file error, or server 500 io_error */
#define FLAMEDB_ERR_UNAVAILABLE (-8)      /* cannot connect, or 503 */
#define FLAMEDB_ERR_TIMEOUT (-9)          /* connect/read/write deadline passed, or 504 */
#define FLAMEDB_ERR_INTERNAL (-10)        /* server 500 */
#define FLAMEDB_ERR_CORRUPT (-11)
#define FLAMEDB_ERR_UNSUPPORTED (-12)  /* e.g. an https:// URL */
#define FLAMEDB_ERR_METHOD (-13)       /* 405 */
#define FLAMEDB_ERR_UNAUTHORIZED (-14) /* 401 / 403 */

#define FLAMEDB_DEFAULT_URL "http://127.0.0.1:4040"

typedef struct flamedb_client flamedb_client_t;

/* Client options. Zero-initialise, then set what you need; 0/NULL fields take
 * the defaults given. Strings are copied by flamedb_client_new(). */
typedef struct flamedb_opts {
    const char *tenant;        /* X-Scope-OrgID header; NULL: none (server uses "anonymous") */
    const char *bearer_token;  /* Authorization: Bearer ...; NULL: none */
    const char *user_agent;    /* NULL: "libflamedb/<version>" */
    int connect_timeout_ms;    /* 0: 5000 */
    int io_timeout_ms;         /* each send/receive wait; 0: 30000 */
    size_t max_response_bytes; /* response body cap; 0: 256 MiB */
} flamedb_opts_t;

/* Creates a client for url ("http://host[:port][/prefix]", IPv6 as [::1]; the
 * port defaults to 80). Does not connect yet. On success *out is owned by the
 * caller (free with flamedb_client_free()). On failure *out is NULL and, when
 * errbuf is not NULL, the reason is written into errbuf (errbuf_len bytes). */
FLAMEDB_API int flamedb_client_new(const char *url, const flamedb_opts_t *opts,
                                   flamedb_client_t **out, char *errbuf, size_t errbuf_len);
/* Closes the connection and frees the client. NULL is allowed. */
FLAMEDB_API void flamedb_client_free(flamedb_client_t *c);

/* Reason of the last failed call on c; "" after a success. Borrowed: valid
 * until the next call on c. */
FLAMEDB_API const char *flamedb_errmsg(const flamedb_client_t *c);
/* HTTP status of the last response (0 when no response was received). */
FLAMEDB_API int flamedb_http_status(const flamedb_client_t *c);
/* Default message of a FLAMEDB_ERR_* code; static string. */
FLAMEDB_API const char *flamedb_strerror(int err);

/* --- pushing profiles (POST /ingest) ------------------------------------ */

typedef enum flamedb_push_format {
    FLAMEDB_PUSH_FOLDED = 0, /* "a;b;c 12" lines, root first */
    FLAMEDB_PUSH_PPROF = 1,  /* pprof protobuf, gzipped or raw */
} flamedb_push_format_t;

/* One push. name is "app.cpu{k=v,...}" (folded) or "app{k=v,...}" (pprof).
 * from/until are unix seconds; from 0 is the client's clock at the call (sent,
 * so a resent request is the same profile), until 0 is left to the server. */
typedef struct flamedb_push {
    const char *name;
    flamedb_push_format_t format;
    int64_t from, until;
    int sample_rate;         /* Hz, folded only; 0: server default (100) */
    const char *spy_name;    /* NULL: "libflamedb" */
    const char *units;       /* NULL: not sent */
    const char *aggregation; /* "sum" | "average"; NULL: not sent */
} flamedb_push_t;

/* Sends body (len bytes, borrowed) as described by p. Returns 0 once the
 * server acknowledged the profile (HTTP 200). A push that failed may or may
 * not be stored; retrying it is safe when p->from is set (the server derives
 * the profile id from the content and the time window and counts it once). */
FLAMEDB_API int flamedb_push(flamedb_client_t *c, const flamedb_push_t *p, const void *body,
                             size_t len);
/* Shorthands of flamedb_push(). */
FLAMEDB_API int flamedb_push_pprof(flamedb_client_t *c, const char *name, const void *pprof,
                                   size_t len, int64_t from, int64_t until);
FLAMEDB_API int flamedb_push_folded(flamedb_client_t *c, const char *name, const char *folded,
                                    size_t len, int64_t from, int64_t until, int sample_rate);

/* --- queries ------------------------------------------------------------ */

typedef enum flamedb_format {
    FLAMEDB_FORMAT_JSON = 0,   /* flamebearer JSON */
    FLAMEDB_FORMAT_FOLDED = 1, /* folded stacks text */
    FLAMEDB_FORMAT_PPROF = 2,  /* gzipped pprof */
    /* an SVG flame graph image, and a file for speedscope.app (JSON) */
    FLAMEDB_FORMAT_SVG = 3,
    FLAMEDB_FORMAT_SPEEDSCOPE = 4,
} flamedb_format_t;

/* A response body. body is NUL-terminated one byte past len (not counted) so
 * text formats can be used as C strings. Caller owns; free with
 * flamedb_response_free(). */
typedef struct flamedb_response {
    uint8_t *body;
    size_t len;
    int status;             /* HTTP status */
    char content_type[128]; /* Content-Type header, "" when absent */
} flamedb_response_t;

/* GET /pyroscope/render. query is "TYPE{selector}"; from/until are server
 * time expressions ("now-1h", unix seconds or ms), NULL for the server
 * defaults (now-1h, now); max_nodes 0 leaves the server default (8192).
 * On success *resp holds the body (caller owns); on failure *resp is empty. */
FLAMEDB_API int flamedb_query(flamedb_client_t *c, const char *query, const char *from,
                              const char *until, flamedb_format_t format, int max_nodes,
                              flamedb_response_t *resp);
/* GET /pyroscope/render-diff (flamebearer JSON, format "double"). */
FLAMEDB_API int flamedb_query_diff(flamedb_client_t *c, const char *left_query,
                                   const char *left_from, const char *left_until,
                                   const char *right_query, const char *right_from,
                                   const char *right_until, int max_nodes,
                                   flamedb_response_t *resp);
/* Frees the body and zeroes r. NULL is allowed. */
FLAMEDB_API void flamedb_response_free(flamedb_response_t *r);

/* A list of strings. Caller owns; free with flamedb_strings_free(). */
typedef struct flamedb_strings {
    char **items;
    size_t count;
} flamedb_strings_t;

/* GET /pyroscope/label-names. match is an optional "{selector}" filter,
 * from/until optional time expressions; NULL omits them. */
FLAMEDB_API int flamedb_label_names(flamedb_client_t *c, const char *match, const char *from,
                                    const char *until, flamedb_strings_t *out);
/* GET /pyroscope/label-values?label=NAME ("__profile_type__" lists the
 * profile types present). */
FLAMEDB_API int flamedb_label_values(flamedb_client_t *c, const char *label, const char *match,
                                     const char *from, const char *until, flamedb_strings_t *out);
/* Frees every string and zeroes s. NULL is allowed. */
FLAMEDB_API void flamedb_strings_free(flamedb_strings_t *s);

/* A raw GET of path (which must start with '/' and be already URL-encoded,
 * e.g. "/ready" or "/metrics"), for endpoints without a dedicated call.
 * Non-2xx statuses are errors, as for the other calls. */
FLAMEDB_API int flamedb_get(flamedb_client_t *c, const char *path, flamedb_response_t *resp);
/* The same as a POST without a body (operator actions such as
 * "/cluster/repair"). */
FLAMEDB_API int flamedb_post(flamedb_client_t *c, const char *path, flamedb_response_t *resp);

#ifdef __cplusplus
}
#endif

#endif
