/* flamedb.h — libflamedb, the C client of a flamedb node.
 *
 * A small blocking HTTP/1.1 client over POSIX sockets: it pushes profiles
 * (pprof or folded stacks) to POST /ingest and reads flame graphs and labels
 * from the /pyroscope/ endpoints. One flamedb_client_t holds one keep-alive
 * connection, reused across calls and re-opened when the server closed it.
 *
 * Threads: a client is not thread-safe; use one per thread (they share
 * nothing). Calls block for at most the configured connect and I/O timeouts.
 * flamedb_client_new() reads the environment (FLAMEDB_TOKEN_ENV): do not
 * change the environment in another thread while it runs.
 *
 * Tenants and tokens: see flamedb_opts_t. In short, a node without
 * authentication takes the tenant from the tenant option (none: "anonymous");
 * a node started with --auth-file needs a token on every request, and the
 * token decides the tenant. The token is the bearer_token option, else the
 * FLAMEDB_TOKEN environment variable, read once when the client is created.
 *
 * Errors: every fallible call returns 0 on success or a negative FLAMEDB_ERR_*
 * code. The codes have the same values and meanings as flamedb's ERR_* codes
 * (common/err.h), so a server error body {"code": "invalid_parameter", ...}
 * comes back as FLAMEDB_ERR_INVALID_ARGUMENT. flamedb_errmsg() gives the
 * reason of the last call on a client ("" when it succeeded): the server's
 * own "message" when the server answered with an error, otherwise what failed
 * locally ("connect 127.0.0.1:4040: Connection refused"); flamedb_http_status()
 * its HTTP status. flamedb_client_new(), which has no client to ask yet,
 * writes its reason into the caller's errbuf instead. No message ever holds
 * the token.
 *
 * Ownership: strings passed in are borrowed for the duration of the call
 * (flamedb_client_new() copies what it keeps). Everything returned is either
 * borrowed from the client (valid until the next call on that client or
 * flamedb_client_free(), said so at each function), static, or owned by the
 * caller and freed with the matching *_free function. Result structs
 * (flamedb_response_t, flamedb_strings_t) are filled by every call, on failure
 * too (then empty), so they need no initialisation and may always be freed.
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
/* The environment variable flamedb_client_new() takes the bearer token from
 * when the caller sets none (the same one flamectl reads). */
#define FLAMEDB_TOKEN_ENV "FLAMEDB_TOKEN"

typedef struct flamedb_client flamedb_client_t;

/* Client options. Zero-initialise, then set what you need; 0/NULL fields take
 * the defaults given. flamedb_client_new() copies the strings: they may be
 * freed once it returns. A string option that is too long (over 4096 bytes),
 * holds a control character or is "" where noted makes flamedb_client_new()
 * fail with FLAMEDB_ERR_INVALID_ARGUMENT.
 *
 * Tenant and token. A node without authentication checks no token and files
 * everything under the tenant sent. A node started with --auth-file answers
 * every request (but GET /ready and, by default, /metrics) with HTTP 401
 * unless it carries a known token, and with 403 when the token's role does not
 * allow the call (a read token pushing, a write token querying, a non-admin
 * token on /cluster/) or when tenant names another tenant than the token's;
 * both come back as FLAMEDB_ERR_UNAUTHORIZED, and flamedb_http_status() tells
 * them apart. The token decides the tenant, so with a token leave tenant NULL.
 */
typedef struct flamedb_opts {
    /* X-Scope-OrgID header. NULL: not sent (the node uses "anonymous", or the
     * token's tenant). "" is refused; the node accepts at most 150 characters
     * of 0-9 a-z A-Z ! - _ . * ' ( ) (else HTTP 400). */
    const char *tenant;
    /* Sent as "Authorization: Bearer TOKEN" on every request. Precedence:
     * - non-NULL and not "": this token;
     * - "": no token, whatever the environment holds;
     * - NULL: the value of the FLAMEDB_TOKEN variable (FLAMEDB_TOKEN_ENV) when
     *   flamedb_client_new() runs, no token when it is unset or empty. It is
     *   read once: changing the environment later does not affect the client.
     * A bad value is refused naming the option or the variable, never the
     * value itself. */
    const char *bearer_token;
    const char *user_agent;    /* NULL: "libflamedb/<version>"; "" is refused */
    int connect_timeout_ms;    /* 0: 5000 */
    int io_timeout_ms;         /* each send/receive wait; 0: 30000 */
    size_t max_response_bytes; /* response body cap; 0: 256 MiB */
} flamedb_opts_t;

/* Creates a client for url ("http://host[:port][/prefix]", IPv6 as [::1]; the
 * port defaults to 80). opts may be NULL: every default, the token from the
 * environment. Does not connect yet, so an unreachable node is only reported
 * by the first call. On success *out is owned by the caller (free with
 * flamedb_client_free()) and errbuf is left alone. On failure *out is NULL
 * and, when errbuf is not NULL, the reason is written into errbuf (at most
 * errbuf_len bytes, NUL-terminated, cut to fit). Errors:
 * FLAMEDB_ERR_INVALID_ARGUMENT (malformed url, a bad option or a bad
 * FLAMEDB_TOKEN), FLAMEDB_ERR_UNSUPPORTED (an https:// url: put TLS in a local
 * proxy), FLAMEDB_ERR_NOMEM. */
FLAMEDB_API int flamedb_client_new(const char *url, const flamedb_opts_t *opts,
                                   flamedb_client_t **out, char *errbuf, size_t errbuf_len);
/* Closes the connection and frees the client. NULL is allowed. */
FLAMEDB_API void flamedb_client_free(flamedb_client_t *c);

/* Reason of the last call on c; "" after a success. Borrowed: valid until the
 * next call on c. c must be a client (after a failed flamedb_client_new(),
 * read errbuf). */
FLAMEDB_API const char *flamedb_errmsg(const flamedb_client_t *c);
/* HTTP status of the last call's response; 0 when that call received no
 * status line (it was refused before sending, could not connect, or the node
 * did not answer in time). With
 * FLAMEDB_ERR_UNAUTHORIZED: 401 for a missing or unknown token, 403 for a
 * token of the wrong role or tenant. */
FLAMEDB_API int flamedb_http_status(const flamedb_client_t *c);
/* Default message of a FLAMEDB_ERR_* code; static string (never freed). */
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
 * the profile id from the tenant, the content and the time window and counts
 * it once). With --auth-file on the node it needs a write or admin token. */
FLAMEDB_API int flamedb_push(flamedb_client_t *c, const flamedb_push_t *p, const void *body,
                             size_t len);
/* flamedb_push with the profile's time set to time (unix seconds, sent as
 * time=): over a pprof's own time_nanos and p->from, for backfilling saved
 * profiles at the time they were taken or a client whose clock is wrong.
 * time 0 is flamedb_push. (A function, not a field of flamedb_push_t, so
 * programs built against an older header keep working.) */
FLAMEDB_API int flamedb_push_at(flamedb_client_t *c, const flamedb_push_t *p, int64_t time,
                                const void *body, size_t len);
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
 * flamedb_response_free(). Every call that takes one fills it: on failure it is
 * empty (body NULL, len 0) and the error body, if any, is not kept (its
 * reason is in flamedb_errmsg()). */
typedef struct flamedb_response {
    uint8_t *body;
    size_t len;
    int status;             /* HTTP status, a 2xx */
    char content_type[128]; /* Content-Type header (cut at 127 bytes), "" when absent */
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

/* A list of NUL-terminated strings. Caller owns items and each string; free
 * them all with flamedb_strings_free(). Filled by every call that takes one:
 * empty (items NULL, count 0) on failure. */
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
