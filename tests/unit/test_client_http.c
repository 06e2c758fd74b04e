/* test_client_http.c — libflamedb against a scripted HTTP server on a real
 * loopback socket: request building, Content-Length / chunked / until-close
 * responses, keep-alive reuse and reconnects, limits, timeouts and the
 * surfacing of server errors. */
#define _GNU_SOURCE /* strcasestr */
#include "check.h"
#include "test_client_server.h"

#include "client/flamedb.h"

static ts_server_t srv;

static flamedb_client_t *client(const flamedb_opts_t *o)
{
    char url[64], err[256];
    flamedb_client_t *c = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
    CHECK_EQ_INT(flamedb_client_new(url, o, &c, err, sizeof err), 0);
    return c;
}

static int request_has(const char *needle)
{
    char *r = ts_last_request(&srv, NULL);
    int ok = strstr(r, needle) != NULL;
    if (!ok) fprintf(stderr, "request lacks '%s':\n%s\n", needle, r);
    free(r);
    return ok;
}

static void test_labels_content_length(void)
{
    flamedb_opts_t o = {.tenant = "team-a"};
    flamedb_client_t *c = client(&o);
    ts_push(&srv,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"
            "[\"env\", \"caf\\u00e9\",\"a\\\"b\"]  ",
            0, 0);
    flamedb_strings_t s;
    CHECK_EQ_INT(flamedb_label_names(c, NULL, NULL, NULL, &s), 0);
    CHECK_EQ_INT(s.count, 3);
    if (s.count == 3) {
        CHECK_EQ_STR(s.items[0], "env");
        CHECK_EQ_STR(s.items[1], "caf\xc3\xa9");
        CHECK_EQ_STR(s.items[2], "a\"b");
    }
    flamedb_strings_free(&s);
    CHECK(request_has("GET /pyroscope/label-names HTTP/1.1\r\n"));
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", srv.port);
    CHECK(request_has(host));
    CHECK(request_has("\r\nX-Scope-OrgID: team-a\r\n"));
    CHECK_EQ_INT(flamedb_http_status(c), 200);

    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", 0, 0);
    CHECK_EQ_INT(
        flamedb_label_values(c, "__profile_type__", "{service_name=\"api\"}", "now-1h", NULL, &s),
        0);
    CHECK_EQ_INT(s.count, 0);
    CHECK(request_has("GET /pyroscope/label-values?label=__profile_type__&match=%7Bservice_name"
                      "%3D%22api%22%7D&from=now-1h HTTP/1.1"));
    /* not a string array */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n[1,\"a\"]", 0, 0);
    CHECK_EQ_INT(flamedb_label_names(c, NULL, NULL, NULL, &s), FLAMEDB_ERR_UNPARSEABLE);
    CHECK_EQ_INT(s.count, 0);
    flamedb_client_free(c);
}

static void test_query_chunked_and_reuse(void)
{
    flamedb_client_t *c = client(NULL);
    int before = ts_count(&srv, NULL);
    ts_push(&srv,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            "6;ext=1\r\nmain;a\r\n4\r\n 10\n\r\n"
            "0\r\nX-Trailer: yes\r\n\r\n",
            0, 0);
    flamedb_response_t r;
    CHECK_EQ_INT(flamedb_query(c,
                               "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"api\"}",
                               "now-1h", "now", FLAMEDB_FORMAT_FOLDED, 100, &r),
                 0);
    CHECK_EQ_INT(r.len, 10);
    CHECK_EQ_STR((char *)r.body, "main;a 10\n");
    CHECK_EQ_STR(r.content_type, "text/plain");
    flamedb_response_free(&r);
    CHECK(request_has("GET /pyroscope/render?query=process_cpu%3Acpu%3Ananoseconds%3Acpu%3A"
                      "nanoseconds%7Bservice_name%3D%22api%22%7D&from=now-1h&until=now"
                      "&format=folded&maxNodes=100 HTTP/1.1"));
    /* second call on the same keep-alive connection */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0, 0);
    CHECK_EQ_INT(flamedb_query(c, "t{}", NULL, NULL, FLAMEDB_FORMAT_JSON, 0, &r), 0);
    CHECK_EQ_STR((char *)r.body, "{}");
    flamedb_response_free(&r);
    CHECK(request_has("GET /pyroscope/render?query=t%7B%7D&format=json HTTP/1.1"));
    CHECK_EQ_INT(ts_count(&srv, NULL) - before, 1);
    flamedb_client_free(c);
}

static void test_reconnects(void)
{
    flamedb_client_t *c = client(NULL);
    flamedb_response_t r;
    int before = ts_count(&srv, NULL);
    /* the server says close */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    flamedb_response_free(&r);
    /* keep-alive promised, then the server drops the idle connection */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    flamedb_response_free(&r);
    usleep(50 * 1000);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    CHECK_EQ_STR((char *)r.body, "c");
    flamedb_response_free(&r);
    /* HTTP/1.0 without a length: body until close */
    ts_push(&srv, "HTTP/1.0 200 OK\r\n\r\nuntil close", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/metrics", &r), 0);
    CHECK_EQ_STR((char *)r.body, "until close");
    flamedb_response_free(&r);
    /* 100 Continue before the answer, 204 without a body */
    ts_push(&srv, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    CHECK_EQ_INT(r.status, 204);
    CHECK_EQ_INT(r.len, 0);
    CHECK(r.body != NULL && r.body[0] == '\0');
    flamedb_response_free(&r);
    CHECK_EQ_INT(ts_count(&srv, NULL) - before, 4);
    flamedb_client_free(c);
}

static void test_stale_retry(void)
{
    flamedb_client_t *c = client(NULL);
    flamedb_response_t r;
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    flamedb_response_free(&r);
    /* the server closes the reused connection as the request arrives: the
     * client sends it once more on a fresh connection */
    int before = ts_count(&srv, NULL);
    ts_push(&srv, TS_DROP, 0, 1);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    CHECK_EQ_STR((char *)r.body, "2");
    flamedb_response_free(&r);
    CHECK_EQ_INT(ts_count(&srv, NULL) - before, 1);
    /* a fresh connection that drops is not retried */
    flamedb_client_free(c);
    c = client(NULL);
    ts_push(&srv, TS_DROP, 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), FLAMEDB_ERR_IO);
    CHECK(strstr(flamedb_errmsg(c), "closed") != NULL);
    flamedb_client_free(c);
}

static void test_push(void)
{
    flamedb_opts_t o = {.bearer_token = "s3cret"};
    flamedb_client_t *c = client(&o);
    const char folded[] = "main;work 12\nmain;idle 3\n";
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_push_folded(c, "app.cpu{env=prod,pod=a b}", folded, sizeof folded - 1,
                                     1700000000, 1700000010, 100),
                 0);
    CHECK(request_has("POST /ingest?name=app.cpu%7Benv%3Dprod%2Cpod%3Da%20b%7D&format=folded"
                      "&from=1700000000&until=1700000010&sampleRate=100&spyName=libflamedb "
                      "HTTP/1.1\r\n"));
    CHECK(request_has("\r\nContent-Type: text/plain\r\n"));
    CHECK(request_has("\r\nContent-Length: 25\r\n"));
    CHECK(request_has("\r\nAuthorization: Bearer s3cret\r\n"));
    CHECK(request_has("\r\n\r\nmain;work 12\nmain;idle 3\n"));

    static const uint8_t pprof[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x01, 0x02};
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_push_pprof(c, "app{}", pprof, sizeof pprof, 0, 0), 0);
    size_t len;
    char *req = ts_last_request(&srv, &len);
    CHECK(len > sizeof pprof && memcmp(req + len - sizeof pprof, pprof, sizeof pprof) == 0);
    CHECK(strstr(req, "POST /ingest?name=app%7B%7D&format=pprof&from=") != NULL); /* clock */
    CHECK(strstr(req, "&spyName=libflamedb ") != NULL);
    CHECK(strstr(req, "Content-Type: application/octet-stream\r\n") != NULL);
    free(req);
    CHECK_EQ_INT(flamedb_push_pprof(c, "", pprof, sizeof pprof, 0, 0),
                 FLAMEDB_ERR_INVALID_ARGUMENT);
    flamedb_client_free(c);
}

static void test_server_errors(void)
{
    flamedb_client_t *c = client(NULL);
    flamedb_response_t r;
    ts_push(
        &srv,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        "Content-Length: 76\r\n\r\n"
        "{\"code\": \"invalid_parameter\", \"message\": \"parameter 'from': not a time\"}\n\n\n\n",
        0, 0);
    CHECK_EQ_INT(flamedb_query(c, "x{}", "yesterday", NULL, FLAMEDB_FORMAT_JSON, 0, &r),
                 FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(r.body == NULL);
    CHECK_EQ_INT(flamedb_http_status(c), 400);
    CHECK(strstr(flamedb_errmsg(c), "parameter 'from': not a time") != NULL);
    CHECK(strstr(flamedb_errmsg(c), "HTTP 400") != NULL);
    /* the connection survives an error answer */
    ts_push(&srv,
            "HTTP/1.1 422 Unprocessable\r\nContent-Length: 67\r\n\r\n"
            "{\"extra\":[1,{\"a\":null}],\"message\":\"bad pprof\",\"code\":\"unparseable\"}",
            0, 0);
    CHECK_EQ_INT(flamedb_push_pprof(c, "a{}", "x", 1, 0, 0), FLAMEDB_ERR_UNPARSEABLE);
    CHECK(strstr(flamedb_errmsg(c), "bad pprof") != NULL);
    ts_push(&srv,
            "HTTP/1.1 429 Too Many\r\nContent-Length: 44\r\n\r\n"
            "{\"code\":\"limit_exceeded\",\"message\":\"series\"}",
            0, 0);
    CHECK_EQ_INT(flamedb_push_pprof(c, "a{}", "x", 1, 0, 0), FLAMEDB_ERR_LIMIT);
    /* not JSON: status decides, the body is shown */
    ts_push(&srv,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 19\r\n\r\nupstream overloaded", 0,
            0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), FLAMEDB_ERR_UNAVAILABLE);
    CHECK(strstr(flamedb_errmsg(c), "upstream overloaded") != NULL);
    ts_push(&srv, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/nope", &r), FLAMEDB_ERR_NOT_FOUND);
    CHECK(strstr(flamedb_errmsg(c), "404") != NULL);
    /* success clears the message */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    CHECK_EQ_STR(flamedb_errmsg(c), "");
    flamedb_response_free(&r);
    CHECK_EQ_INT(flamedb_get(c, "ready", &r), FLAMEDB_ERR_INVALID_ARGUMENT);
    /* a call refused before it is sent has no status: not the last call's */
    ts_push(&srv, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/nope", &r), FLAMEDB_ERR_NOT_FOUND);
    CHECK_EQ_INT(flamedb_push_pprof(c, "", "x", 1, 0, 0), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(flamedb_http_status(c), 0);
    CHECK(strstr(flamedb_errmsg(c), "name") != NULL);
    ts_push(&srv, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/nope", &r), FLAMEDB_ERR_NOT_FOUND);
    flamedb_strings_t sv;
    CHECK_EQ_INT(flamedb_label_values(c, "", NULL, NULL, NULL, &sv), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(flamedb_http_status(c), 0);
    flamedb_client_free(c);
}

static void test_limits_and_malformed(void)
{
    flamedb_opts_t o = {.max_response_bytes = 100, .io_timeout_ms = 300};
    flamedb_client_t *c = client(&o);
    flamedb_response_t r;
    static char big[400];
    snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n%0101d", 0);
    ts_push(&srv, big, 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/big", &r), FLAMEDB_ERR_TOO_LARGE);
    /* chunked past the limit, chunk by chunk */
    static char chunks[600];
    snprintf(chunks, sizeof chunks,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n%050d\r\n32\r\n%050d\r\n"
             "1\r\nx\r\n0\r\n\r\n",
             0, 0);
    ts_push(&srv, chunks, 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/big", &r), FLAMEDB_ERR_TOO_LARGE);
    ts_push(&srv, "HTTX/1.1 200 OK\r\n\r\n", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/x", &r), FLAMEDB_ERR_UNPARSEABLE);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/x", &r), FLAMEDB_ERR_UNPARSEABLE);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/x", &r), FLAMEDB_ERR_UNPARSEABLE);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/x", &r), FLAMEDB_ERR_IO);
    /* a server that never answers: bounded by the I/O timeout */
    ts_push(&srv, TS_HANG, 0, 1);
    CHECK_EQ_INT(flamedb_get(c, "/slow", &r), FLAMEDB_ERR_TIMEOUT);
    CHECK(strstr(flamedb_errmsg(c), "timed out") != NULL);
    flamedb_client_free(c);
}

static void test_connect_and_url(void)
{
    /* a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    flamedb_client_t *c;
    CHECK_EQ_INT(flamedb_client_new(url, NULL, &c, err, sizeof err), 0);
    flamedb_strings_t s;
    CHECK_EQ_INT(flamedb_label_names(c, NULL, NULL, NULL, &s), FLAMEDB_ERR_UNAVAILABLE);
    CHECK(strstr(flamedb_errmsg(c), "connect 127.0.0.1") != NULL);
    CHECK(strstr(flamedb_errmsg(c), "refused") != NULL);
    flamedb_client_free(c);

    CHECK_EQ_INT(flamedb_client_new("https://x", NULL, &c, err, sizeof err),
                 FLAMEDB_ERR_UNSUPPORTED);
    CHECK(c == NULL && strstr(err, "https") != NULL);
    flamedb_opts_t o = {.tenant = "a\r\nX-Evil: 1"};
    CHECK_EQ_INT(flamedb_client_new("http://h", &o, &c, err, sizeof err),
                 FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "X-Scope-OrgID") != NULL);

    /* a path prefix is kept in front of every endpoint */
    snprintf(url, sizeof url, "http://localhost:%d/flamedb/", srv.port);
    CHECK_EQ_INT(flamedb_client_new(url, NULL, &c, err, sizeof err), 0);
    flamedb_response_t r;
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    flamedb_response_free(&r);
    CHECK(request_has("GET /flamedb/ready HTTP/1.1\r\n"));
    flamedb_client_free(c);
}

/* The request that the scripted server answers with 200 carries this
 * Authorization line, or none when want is NULL. */
static void check_token_sent(flamedb_client_t *c, const char *want)
{
    flamedb_response_t r;
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    CHECK_EQ_INT(flamedb_get(c, "/ready", &r), 0);
    flamedb_response_free(&r);
    char line[128];
    snprintf(line, sizeof line, "\r\nAuthorization: Bearer %s\r\n", want ? want : "");
    char *req = ts_last_request(&srv, NULL);
    if (want != NULL) {
        CHECK(strstr(req, line) != NULL);
    } else {
        CHECK(strcasestr(req, "\r\nAuthorization:") == NULL);
    }
    if ((want != NULL) != (strstr(req, line) != NULL)) fprintf(stderr, "request:\n%s\n", req);
    free(req);
}

/* $FLAMEDB_TOKEN: read once by flamedb_client_new when the caller set no
 * bearer_token; the caller's token wins; "" asks for none; a bad value is
 * refused without being echoed. */
static void test_token_from_environment(void)
{
    unsetenv("FLAMEDB_TOKEN");
    flamedb_client_t *c = client(NULL);
    check_token_sent(c, NULL);
    flamedb_client_free(c);

    setenv("FLAMEDB_TOKEN", "env-token-1", 1);
    c = client(NULL);
    check_token_sent(c, "env-token-1");
    /* read at creation only: later changes do not reach an existing client */
    setenv("FLAMEDB_TOKEN", "env-token-2", 1);
    check_token_sent(c, "env-token-1");
    unsetenv("FLAMEDB_TOKEN");
    check_token_sent(c, "env-token-1");
    flamedb_client_free(c);

    setenv("FLAMEDB_TOKEN", "env-token-1", 1);
    flamedb_opts_t o = {.tenant = "acme"}; /* other options do not turn the variable off */
    c = client(&o);
    check_token_sent(c, "env-token-1");
    flamedb_client_free(c);
    o.bearer_token = "caller-token";
    c = client(&o);
    check_token_sent(c, "caller-token");
    flamedb_client_free(c);
    o.bearer_token = ""; /* explicitly none, whatever the environment holds */
    c = client(&o);
    check_token_sent(c, NULL);
    flamedb_client_free(c);
    setenv("FLAMEDB_TOKEN", "", 1); /* set but empty: none */
    c = client(NULL);
    check_token_sent(c, NULL);
    flamedb_client_free(c);

    /* a value that would break the request is refused, naming the variable
     * and not the value */
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
    setenv("FLAMEDB_TOKEN", "hidden-part\r\nX-Evil: 1", 1);
    CHECK_EQ_INT(flamedb_client_new(url, NULL, &c, err, sizeof err), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(c == NULL && strstr(err, "FLAMEDB_TOKEN") != NULL && strstr(err, "hidden") == NULL);
    o.bearer_token = "hidden-part\x01";
    CHECK_EQ_INT(flamedb_client_new(url, &o, &c, err, sizeof err), FLAMEDB_ERR_INVALID_ARGUMENT);
    CHECK(c == NULL && strstr(err, "bearer_token") != NULL && strstr(err, "hidden") == NULL);
    unsetenv("FLAMEDB_TOKEN");
}

int main(void)
{
    if (ts_start(&srv) != 0) {
        fprintf(stderr, "cannot start the test server\n");
        return 1;
    }
    unsetenv("FLAMEDB_TOKEN"); /* the requests checked below are the same in any environment */
    test_labels_content_length();
    test_query_chunked_and_reuse();
    test_reconnects();
    test_stale_retry();
    test_push();
    test_server_errors();
    test_limits_and_malformed();
    test_connect_and_url();
    test_token_from_environment();
    ts_stop(&srv);
    return check_exit();
}
