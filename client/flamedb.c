/* flamedb.c — the public calls of libflamedb (flamedb.h) on top of the
 * connection in http.c: request targets, error surfacing, result ownership.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/flamedb_int.h"

#ifndef FLAMEDB_VERSION_STRING
#define FLAMEDB_VERSION_STRING "0"
#endif

/* The public codes are the project's codes; a mismatch is a build error. */
#define SAME_CODE(name) _Static_assert(FLAMEDB_ERR_##name == ERR_##name, #name);
SAME_CODE(NOMEM)
SAME_CODE(INVALID_ARGUMENT)
SAME_CODE(TOO_LARGE)
SAME_CODE(UNPARSEABLE)
SAME_CODE(LIMIT)
SAME_CODE(NOT_FOUND)
SAME_CODE(IO)
SAME_CODE(UNAVAILABLE)
SAME_CODE(TIMEOUT)
SAME_CODE(INTERNAL)
SAME_CODE(CORRUPT)
SAME_CODE(UNSUPPORTED)
SAME_CODE(METHOD)
SAME_CODE(UNAUTHORIZED)

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_IO_TIMEOUT_MS 30000
#define DEFAULT_MAX_RESPONSE ((size_t)256 << 20)
#define MAX_TARGET_BYTES 65536 /* request path + query string */
#define MAX_HEADER_VALUE 4096  /* tenant, token, user agent */

struct flamedb_client {
    flamedb__url_t url;
    flamedb__conn_t conn;
    size_t max_response;
    buf_t headers; /* fixed request headers, "Name: value\r\n" lines */
    errmsg_t err;
    int http_status;
    int stored_nothing; /* the last answer's X-Flamedb-Stored: nothing */
};

int flamedb__stored_nothing(const flamedb_client_t *c)
{
    return c->stored_nothing;
}

/* Header values must not smuggle a line break into the request. what names
 * the value in errors; the value itself is never copied into a message, as
 * it may be a token. */
static int add_header(buf_t *h, const char *name, const char *prefix, const char *value,
                      const char *what, errmsg_t *em)
{
    if (value == NULL) return ERR_OK;
    size_t n = strlen(value);
    if (n == 0 || n > MAX_HEADER_VALUE)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s: empty or longer than %d bytes", what,
                          MAX_HEADER_VALUE);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s: control character", what);
    return buf_printf(h, "%s: %s%s\r\n", name, prefix, value);
}

/* The bearer token: the caller's, else $FLAMEDB_TOKEN as it is now (read
 * once, here, so a client never changes identity while in use). An empty
 * string from either means no token; the caller's "" also keeps the
 * environment out. */
static int add_token(buf_t *h, const char *token, errmsg_t *em)
{
    const char *what = "option bearer_token";
    if (token == NULL) {
        token = getenv(FLAMEDB_TOKEN_ENV);
        what = "environment variable " FLAMEDB_TOKEN_ENV;
    }
    if (token == NULL || token[0] == '\0') return ERR_OK;
    return add_header(h, "Authorization", "Bearer ", token, what, em);
}

static int build_headers(flamedb_client_t *c, const flamedb_opts_t *o, errmsg_t *em)
{
    const char *ua = o->user_agent ? o->user_agent : "libflamedb/" FLAMEDB_VERSION_STRING;
    int rc = add_header(&c->headers, "User-Agent", "", ua, "option user_agent", em);
    if (rc == ERR_OK)
        rc = add_header(&c->headers, "X-Scope-OrgID", "", o->tenant,
                        "option tenant (X-Scope-OrgID)", em);
    if (rc == ERR_OK) rc = add_token(&c->headers, o->bearer_token, em);
    if (rc == ERR_OK) rc = buf_append_str(&c->headers, "Accept: */*\r\n");
    return rc;
}

int flamedb_client_new(const char *url, const flamedb_opts_t *opts, flamedb_client_t **out,
                       char *errbuf, size_t errbuf_len)
{
    static const flamedb_opts_t none;
    const flamedb_opts_t *o = opts ? opts : &none;
    errmsg_t em = {{0}};
    *out = NULL;
    flamedb_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        if (errbuf != NULL && errbuf_len > 0) snprintf(errbuf, errbuf_len, "out of memory");
        return ERR_NOMEM;
    }
    buf_init(&c->headers, 4 * MAX_HEADER_VALUE);
    int rc = flamedb__url_parse(url, &c->url, &em);
    if (rc == ERR_OK) rc = build_headers(c, o, &em);
    if (rc != ERR_OK) {
        if (errbuf != NULL && errbuf_len > 0)
            snprintf(errbuf, errbuf_len, "%s", errmsg_text(&em, rc));
        flamedb_client_free(c);
        return rc;
    }
    flamedb__conn_init(
        &c->conn, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS,
        o->io_timeout_ms > 0 ? o->io_timeout_ms : DEFAULT_IO_TIMEOUT_MS);
    c->max_response = o->max_response_bytes ? o->max_response_bytes : DEFAULT_MAX_RESPONSE;
    *out = c;
    return ERR_OK;
}

void flamedb_client_free(flamedb_client_t *c)
{
    if (c == NULL) return;
    flamedb__conn_close(&c->conn);
    buf_free(&c->headers);
    free(c);
}

flamedb__conn_t *flamedb__client_conn(flamedb_client_t *c)
{
    return &c->conn;
}

const char *flamedb_errmsg(const flamedb_client_t *c)
{
    return c->err.text;
}

int flamedb_http_status(const flamedb_client_t *c)
{
    return c->http_status;
}

const char *flamedb_strerror(int err)
{
    return err_message(err);
}

/* The ERR_* code a server error maps to: its JSON "code" when we know it,
 * else the HTTP status. */
static int code_from_server(const char *code, int status)
{
    for (int e = ERR_NOMEM; e >= ERR_UNAUTHORIZED; e--)
        if (code[0] != '\0' && strcmp(code, err_code_name(e)) == 0) return e;
    switch (status) {
    case 400:
        return ERR_INVALID_ARGUMENT;
    case 401:
    case 403:
        return ERR_UNAUTHORIZED;
    case 404:
        return ERR_NOT_FOUND;
    case 405:
        return ERR_METHOD;
    case 413:
        return ERR_TOO_LARGE;
    case 422:
        return ERR_UNPARSEABLE;
    case 429:
        return ERR_LIMIT;
    case 503:
        return ERR_UNAVAILABLE;
    case 504:
        return ERR_TIMEOUT;
    default:
        return status >= 400 && status < 500 ? ERR_INVALID_ARGUMENT : ERR_INTERNAL;
    }
}

/* Turns a non-2xx response into an error with the server's reason. */
static int surface_error(flamedb_client_t *c, const flamedb__response_t *r)
{
    char code[64], msg[ERRMSG_MAX];
    const char *body = r->body.data ? (const char *)r->body.data : "";
    if (flamedb__json_error(body, r->body.len, code, sizeof code, msg, sizeof msg) != ERR_OK) {
        /* not our JSON (a proxy?): show the start of the body, printable only */
        size_t n = 0;
        code[0] = '\0';
        for (size_t i = 0; i < r->body.len && n < 200 && body[i] != '\n'; i++)
            msg[n++] = (unsigned char)body[i] < 0x20 ? ' ' : body[i];
        msg[n] = '\0';
    }
    int err = code_from_server(code, r->status);
    if (msg[0] == '\0') snprintf(msg, sizeof msg, "%s", err_message(err));
    return errmsg_set(&c->err, err, "server answered HTTP %d%s%s: %s", r->status,
                      code[0] ? " " : "", code, msg);
}

/* Every call starts from a clean slate: a call refused before anything is
 * sent must not leave the previous call's reason or status to be read as its
 * own. */
static void begin(flamedb_client_t *c)
{
    c->err.text[0] = '\0';
    c->http_status = 0;
}

static void response_take(flamedb__response_t *r, flamedb_response_t *out)
{
    out->status = r->status;
    snprintf(out->content_type, sizeof out->content_type, "%s", r->content_type);
    out->body = buf_steal(&r->body, &out->len);
    if (out->body == NULL) /* empty body: still a valid C string */
        out->body = calloc(1, 1);
}

/* One request/response; out (may be NULL) receives a 2xx body. */
static int call(flamedb_client_t *c, const char *method, const buf_t *target, const char *ctype,
                const void *body, size_t len, flamedb_response_t *out)
{
    begin(c);
    if (out != NULL) memset(out, 0, sizeof *out);
    if (target->len == 0)
        return errmsg_set(&c->err, ERR_NOMEM, "out of memory building the request");
    flamedb__request_t req = {
        method, (const char *)target->data, (const char *)c->headers.data, ctype, body, len};
    flamedb__response_t r;
    int rc = flamedb__http_do(&c->conn, &c->url, &req, c->max_response, &r, &c->err);
    c->http_status = r.status;
    c->stored_nothing = rc == ERR_OK && r.stored_nothing;
    if (rc == ERR_OK && (r.status < 200 || r.status > 299)) rc = surface_error(c, &r);
    if (rc == ERR_OK && out != NULL) {
        response_take(&r, out);
        if (out->body == NULL) rc = errmsg_set(&c->err, ERR_NOMEM, "out of memory");
    }
    buf_free(&r.body);
    return rc;
}

static int bad_target(flamedb_client_t *c, buf_t *t, int rc)
{
    buf_free(t);
    return errmsg_set(&c->err, rc, "request parameters too long or out of memory");
}

int flamedb_push(flamedb_client_t *c, const flamedb_push_t *p, const void *body, size_t len)
{
    return flamedb_push_at(c, p, 0, body, len);
}

int flamedb_push_at(flamedb_client_t *c, const flamedb_push_t *p, int64_t at, const void *body,
                    size_t len)
{
    begin(c);
    if (p == NULL || p->name == NULL || p->name[0] == '\0')
        return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "push: a profile name is required");
    int pprof = p->format == FLAMEDB_PUSH_PPROF;
    buf_t t;
    buf_init(&t, MAX_TARGET_BYTES);
    int rc = buf_append_str(&t, "/ingest");
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "name", p->name);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "format", pprof ? "pprof" : "folded");
    /* Always a from: the server's profile id covers the time window, so a
     * window fixed here makes the resend of a failed request the same profile. */
    int64_t from = p->from > 0 ? p->from : (int64_t)time(NULL);
    if (rc == ERR_OK) rc = flamedb__query_add_int(&t, "from", from);
    if (rc == ERR_OK && p->until > 0) rc = flamedb__query_add_int(&t, "until", p->until);
    if (rc == ERR_OK && at > 0) rc = flamedb__query_add_int(&t, "time", at);
    if (rc == ERR_OK && p->sample_rate > 0)
        rc = flamedb__query_add_int(&t, "sampleRate", p->sample_rate);
    if (rc == ERR_OK)
        rc = flamedb__query_add(&t, "spyName", p->spy_name ? p->spy_name : "libflamedb");
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "units", p->units);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "aggregationType", p->aggregation);
    if (rc != ERR_OK) return bad_target(c, &t, rc);
    rc = call(c, "POST", &t, pprof ? "application/octet-stream" : "text/plain", body, len, NULL);
    buf_free(&t);
    return rc;
}

int flamedb_push_pprof(flamedb_client_t *c, const char *name, const void *pprof, size_t len,
                       int64_t from, int64_t until)
{
    flamedb_push_t p = {.name = name, .format = FLAMEDB_PUSH_PPROF, .from = from, .until = until};
    return flamedb_push(c, &p, pprof, len);
}

int flamedb_push_folded(flamedb_client_t *c, const char *name, const char *folded, size_t len,
                        int64_t from, int64_t until, int sample_rate)
{
    flamedb_push_t p = {.name = name,
                        .format = FLAMEDB_PUSH_FOLDED,
                        .from = from,
                        .until = until,
                        .sample_rate = sample_rate};
    return flamedb_push(c, &p, folded, len);
}

static const char *format_name(flamedb_format_t f)
{
    static const char *names[] = {"json", "folded", "pprof", "svg", "speedscope"};
    return (unsigned)f < sizeof names / sizeof *names ? names[f] : "json";
}

int flamedb_query(flamedb_client_t *c, const char *query, const char *from, const char *until,
                  flamedb_format_t format, int max_nodes, flamedb_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    begin(c);
    if (query == NULL || query[0] == '\0')
        return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "query: a query is required");
    buf_t t;
    buf_init(&t, MAX_TARGET_BYTES);
    int rc = buf_append_str(&t, "/pyroscope/render");
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "query", query);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "from", from);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "until", until);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "format", format_name(format));
    if (rc == ERR_OK && max_nodes > 0) rc = flamedb__query_add_int(&t, "maxNodes", max_nodes);
    if (rc != ERR_OK) return bad_target(c, &t, rc);
    rc = call(c, "GET", &t, NULL, NULL, 0, resp);
    buf_free(&t);
    return rc;
}

int flamedb_query_diff(flamedb_client_t *c, const char *left_query, const char *left_from,
                       const char *left_until, const char *right_query, const char *right_from,
                       const char *right_until, int max_nodes, flamedb_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    begin(c);
    if (left_query == NULL || right_query == NULL)
        return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "diff: both queries are required");
    buf_t t;
    buf_init(&t, MAX_TARGET_BYTES);
    int rc = buf_append_str(&t, "/pyroscope/render-diff");
    const char *kv[][2] = {{"leftQuery", left_query}, {"leftFrom", left_from},
                           {"leftUntil", left_until}, {"rightQuery", right_query},
                           {"rightFrom", right_from}, {"rightUntil", right_until},
                           {"format", "json"}};
    for (size_t i = 0; rc == ERR_OK && i < sizeof kv / sizeof kv[0]; i++)
        rc = flamedb__query_add(&t, kv[i][0], kv[i][1]);
    if (rc == ERR_OK && max_nodes > 0) rc = flamedb__query_add_int(&t, "maxNodes", max_nodes);
    if (rc != ERR_OK) return bad_target(c, &t, rc);
    rc = call(c, "GET", &t, NULL, NULL, 0, resp);
    buf_free(&t);
    return rc;
}

void flamedb_response_free(flamedb_response_t *r)
{
    if (r == NULL) return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* GET path with optional parameters, the body read as a string array. */
static int get_strings(flamedb_client_t *c, const char *path, const char *label, const char *match,
                       const char *from, const char *until, flamedb_strings_t *out)
{
    out->items = NULL;
    out->count = 0;
    begin(c);
    buf_t t;
    buf_init(&t, MAX_TARGET_BYTES);
    int rc = buf_append_str(&t, path);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "label", label);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "match", match);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "from", from);
    if (rc == ERR_OK) rc = flamedb__query_add(&t, "until", until);
    if (rc != ERR_OK) return bad_target(c, &t, rc);
    flamedb_response_t r;
    rc = call(c, "GET", &t, NULL, NULL, 0, &r);
    buf_free(&t);
    if (rc == ERR_OK) rc = flamedb__json_strings((const char *)r.body, r.len, out, &c->err);
    flamedb_response_free(&r);
    return rc;
}

int flamedb_label_names(flamedb_client_t *c, const char *match, const char *from, const char *until,
                        flamedb_strings_t *out)
{
    return get_strings(c, "/pyroscope/label-names", NULL, match, from, until, out);
}

int flamedb_label_values(flamedb_client_t *c, const char *label, const char *match,
                         const char *from, const char *until, flamedb_strings_t *out)
{
    if (label == NULL || label[0] == '\0') {
        begin(c);
        out->items = NULL;
        out->count = 0;
        return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "label values: a label name is required");
    }
    return get_strings(c, "/pyroscope/label-values", label, match, from, until, out);
}

void flamedb_strings_free(flamedb_strings_t *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

static int raw(flamedb_client_t *c, const char *method, const char *path, flamedb_response_t *resp)
{
    memset(resp, 0, sizeof *resp);
    begin(c);
    if (path == NULL || path[0] != '/')
        return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "%s: path must start with '/'", method);
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return errmsg_set(&c->err, ERR_INVALID_ARGUMENT, "%s: path must be URL-encoded",
                              method);
    buf_t t;
    buf_init(&t, MAX_TARGET_BYTES);
    int rc = buf_append_str(&t, path);
    if (rc != ERR_OK) return bad_target(c, &t, rc);
    rc = call(c, method, &t, NULL, NULL, 0, resp);
    buf_free(&t);
    return rc;
}

int flamedb_get(flamedb_client_t *c, const char *path, flamedb_response_t *resp)
{
    return raw(c, "GET", path, resp);
}

int flamedb_post(flamedb_client_t *c, const char *path, flamedb_response_t *resp)
{
    return raw(c, "POST", path, resp);
}
