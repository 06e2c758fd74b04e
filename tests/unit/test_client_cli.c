/* test_client_cli.c — flamectl end to end against the scripted loopback
 * server: exit codes (0 ok, 1 request failed, 2 bad usage), the server's
 * reason on stderr, format auto-detection, the top table, pprof output,
 * the label shares table and json, query --group-by, the profiles table
 * and one profile by id. */
#define _GNU_SOURCE /* strcasestr */
#include "check.h"
#include "test_client_server.h"

#include <libgen.h>
#include <limits.h>
#include <sys/wait.h>

static ts_server_t srv;
static char ctl[PATH_MAX], tmp[64];

/* Runs flamectl with args; output (stdout and stderr) into out. */
static int ctl_run(const char *args, char *out, size_t cap)
{
    char cmd[PATH_MAX + 1024];
    snprintf(cmd, sizeof cmd, "FLAMEDB_URL=http://127.0.0.1:%d '%s' %s 2>&1 </dev/null", srv.port,
             ctl, args);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, cap - 1, p) : 0;
    out[n] = '\0';
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int has(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL) return 1;
    fprintf(stderr, "output lacks '%s':\n%s\n", needle, hay);
    return 0;
}

static void test_usage(void)
{
    static char out[65536];
    CHECK_EQ_INT(ctl_run("--help", out, sizeof out), 0);
    CHECK(has(out, "usage: flamectl") && has(out, "flamectl push FILE"));
    CHECK_EQ_INT(ctl_run("query --help", out, sizeof out), 0);
    CHECK(has(out, "--output top"));
    CHECK_EQ_INT(ctl_run("help labels", out, sizeof out), 0);
    CHECK(has(out, "__profile_type__"));
    CHECK_EQ_INT(ctl_run("", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("frobnicate", out, sizeof out), 2);
    CHECK(has(out, "unknown command 'frobnicate'"));
    CHECK_EQ_INT(ctl_run("query", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("query 'a{}' extra", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("query 'a{}' --output png", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("query 'a{}' --max-nodes -3", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("--bogus labels", out, sizeof out), 2);
    /* getopt's own words name the program by its path and point nowhere */
    CHECK(has(out, "flamectl: unknown option '--bogus'\n(see flamectl --help)"));
    CHECK_EQ_INT(ctl_run("labels -x", out, sizeof out), 2);
    CHECK(has(out, "flamectl: unknown option '-x'"));
    CHECK_EQ_INT(ctl_run("query 'a{}' --limit", out, sizeof out), 2);
    CHECK(has(out, "flamectl: --limit needs a value\n(see flamectl --help)"));
    CHECK_EQ_INT(ctl_run("query 'a{}' -o", out, sizeof out), 2);
    CHECK(has(out, "flamectl: -o needs a value"));
    CHECK_EQ_INT(ctl_run("--url https://x labels", out, sizeof out), 2);
    CHECK(has(out, "https"));
    CHECK_EQ_INT(ctl_run("push /dev/null", out, sizeof out), 2);
    CHECK(has(out, "--name is required"));
    CHECK_EQ_INT(ctl_run("push /dev/null --name a --from yesterday", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("push /nonexistent --name a", out, sizeof out), 1);
    CHECK_EQ_INT(srv.requests, 0); /* none of these reached the server */
}

/* Every line of the help fits 80 columns, the cluster subcommands each have
 * their usage line, and --timeout gives the defaults the client applies. */
static void test_help_text(void)
{
    static char out[65536];
    static const char *const pages[] = {
        "--help",        "push --help",  "query --help",   "diff --help",     "shares --help",
        "labels --help", "ready --help", "cluster --help", "profiles --help", "profile --help"};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        CHECK_EQ_INT(ctl_run(pages[i], out, sizeof out), 0);
        for (char *line = out, *end; *line != '\0'; line = end + (*end != '\0')) {
            end = strchr(line, '\n');
            if (end == NULL) end = line + strlen(line);
            if (end - line > 80)
                fprintf(stderr, "'flamectl %s': a line of %d columns: %.*s\n", pages[i],
                        (int)(end - line), (int)(end - line), line);
            CHECK(end - line <= 80);
        }
    }
    CHECK_EQ_INT(ctl_run("--help", out, sizeof out), 0);
    CHECK(has(out, "default: connect\n                  5000, I/O 30000"));
    CHECK(has(out, "\n  flamectl cluster decommission --node ID\n"));
    CHECK_EQ_INT(ctl_run("cluster --help", out, sizeof out), 0);
    CHECK(has(out, "usage: flamectl cluster status [--output table|json]\n"
                   "       flamectl cluster repair\n"));
    CHECK_EQ_INT(srv.requests, 0);
}

/* cluster status: columns as wide as their longest value (or title), so
 * short ids make a narrow table and long ones do not overflow theirs. */
static void test_cluster_status_table(void)
{
    static char out[65536];
    static const char body[] =
        "{\"self\":\"db1\",\"cluster\":\"prod\",\"rf\":3,\"quorum\":2,\"full_repair\":0,"
        "\"nodes\":[{\"id\":\"db1\",\"http\":\"http://10.0.0.1:4040\",\"cluster\":"
        "\"tcp://10.0.0.1:7946\",\"state\":\"active\",\"tokens\":128,"
        "\"last_heartbeat_ms_ago\":0,\"self\":true,\"hints_for\":[\"db2\"]},"
        "{\"id\":\"db2\",\"http\":\"http://10.0.0.2:4040\",\"cluster\":\"tcp://10.0.0.2:7946\","
        "\"state\":\"down\",\"tokens\":128,\"last_heartbeat_ms_ago\":10133,\"self\":false,"
        "\"hints_for\":[]}]}";
    char resp[2048];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", sizeof body - 1,
             body);
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("cluster status", out, sizeof out), 0);
    CHECK_EQ_STR(out,
                 "cluster 'prod': 2 node(s), rf 3, write quorum 2 (as seen by db1)\n"
                 "  ID   STATE    TOKENS  LAST SEEN  HTTP                  CLUSTER              "
                 "FULL REPAIR HINTS FOR\n"
                 "* db1  active      128       self  http://10.0.0.1:4040  tcp://10.0.0.1:7946  "
                 "no          db2\n"
                 "  db2  down        128   10133 ms  http://10.0.0.2:4040  tcp://10.0.0.2:7946  "
                 "-           -\n");
}

static void test_labels_and_errors(void)
{
    static char out[65536];
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n[\"env\",\"region\"]", 0, 0);
    CHECK_EQ_INT(ctl_run("labels --tenant t1", out, sizeof out), 0);
    CHECK_EQ_STR(out, "env\nregion\n");
    char *req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "GET /pyroscope/label-names HTTP/1.1") && strstr(req, "X-Scope-OrgID: t1"));
    free(req);
    ts_push(&srv,
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 53\r\n\r\n"
            "{\"code\":\"invalid_parameter\",\"message\":\"bad selector\"}",
            0, 0);
    CHECK_EQ_INT(ctl_run("query 'cpu{a=}' --output json", out, sizeof out), 1);
    CHECK(has(out, "bad selector") && has(out, "HTTP 400"));
    /* nobody listening */
    char args[128];
    snprintf(args, sizeof args, "--url http://127.0.0.1:1 --timeout 500 labels");
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 1);
    CHECK(has(out, "connect 127.0.0.1:1"));
}

static void test_push_detect(void)
{
    static char out[65536];
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/p.pb.gz", tmp);
    FILE *f = fopen(path, "wb");
    fwrite("\x1f\x8b\x08\x00rest", 1, 8, f);
    fclose(f);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    snprintf(args, sizeof args, "push '%s' --name 'app{env=prod}' --from 1700000000", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    char *req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "POST /ingest?name=app%7Benv%3Dprod%7D&format=pprof&from=1700000000&"));
    CHECK(strstr(req, "&time=") == NULL);
    free(req);
    /* --time: the profile's time over the pprof's own (sent as time=) */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    snprintf(args, sizeof args, "push '%s' --name app --time 1600000000", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "&time=1600000000&") != NULL);
    free(req);
    snprintf(args, sizeof args, "push '%s' --name app --time last-week", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 2);
    CHECK(has(out, "--time 'last-week' is not unix seconds"));
    snprintf(path, sizeof path, "%s/f.txt", tmp);
    f = fopen(path, "w");
    fputs("main;a 3\n", f);
    fclose(f);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0);
    snprintf(args, sizeof args, "push '%s' --name app.cpu --sample-rate 99", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    req = ts_last_request(&srv, NULL);
    /* no --from: libflamedb sends the client's clock, so a resend is the same profile */
    CHECK(strstr(req, "&format=folded&from=") && strstr(req, "&sampleRate=99&") &&
          strstr(req, "\r\n\r\nmain;a 3\n"));
    free(req);
    CHECK(strstr(out, "is empty") == NULL);
    /* an empty file, or folded text of blank lines, is nothing to push:
     * said, exit 1, and nothing is sent (the node would answer 200) */
    int before = srv.requests;
    CHECK_EQ_INT(ctl_run("push /dev/null --name app.cpu", out, sizeof out), 1);
    CHECK(has(out, "flamectl: push: /dev/null is empty (0 bytes): nothing to push\n"));
    CHECK_EQ_INT(ctl_run("push /dev/null --name app --format pprof", out, sizeof out), 1);
    snprintf(path, sizeof path, "%s/blank.txt", tmp);
    f = fopen(path, "w");
    fputs("\n  \r\n\t\n", f);
    fclose(f);
    snprintf(args, sizeof args, "push '%s' --name app.cpu", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 1);
    CHECK(has(out, "has no stack line (blank lines only): nothing to push"));
    CHECK_EQ_INT(ctl_run("push - --name app.cpu", out, sizeof out), 1); /* stdin is /dev/null */
    CHECK(has(out, "flamectl: push: stdin is empty (0 bytes)"));
    CHECK_EQ_INT(ctl_run("push /tmp --name app.cpu", out, sizeof out), 1); /* a directory */
    CHECK(has(out, "cannot read /tmp"));
    CHECK_EQ_INT(srv.requests - before, 0);
    /* a profile without a sample of any value: the node answers 200 and
     * says it stored nothing; flamectl says so and exits 1 */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nX-Flamedb-Stored: nothing\r\nContent-Length: 0\r\n\r\n", 0,
            0);
    snprintf(path, sizeof path, "%s/zero.txt", tmp);
    f = fopen(path, "w");
    fputs("main;idle 0\n", f);
    fclose(f);
    snprintf(args, sizeof args, "push '%s' --name app.cpu", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 1);
    CHECK(has(out, "zero.txt has no sample with a value (no sample, or all 0): the node stored "
                   "nothing\n"));
    snprintf(path, sizeof path, "%s/f.txt", tmp);
    ts_push(&srv,
            "HTTP/1.1 422 Unprocessable\r\nContent-Length: 51\r\n\r\n"
            "{\"code\":\"unparseable\",\"message\":\"line 1: no count\"}",
            0, 0);
    snprintf(args, sizeof args, "push '%s' --name app.cpu --format folded", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 1);
    CHECK(has(out, "line 1: no count"));
}

static void test_query_outputs(void)
{
    static char out[65536];
    static const char top[] =
        "{\"unit\":\"nanoseconds\",\"total\":1000000000,\"rangeSeconds\":100,\"cores\":0.01,"
        "\"functionCount\":4,\"functions\":["
        "{\"name\":\"hash\",\"self\":600000000,\"total\":600000000,\"selfPercent\":60,"
        "\"totalPercent\":60,\"selfCores\":0.006,\"totalCores\":0.006},"
        "{\"name\":\"work\",\"self\":300000000,\"total\":900000000,\"selfPercent\":30,"
        "\"totalPercent\":90,\"selfCores\":0.003,\"totalCores\":0.009}]}";
    static char resp[1024];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", sizeof top - 1,
             top);
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("query 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{}' --limit 2 --by "
                         "total --from now-100s",
                         out, sizeof out),
                 0);
    CHECK(has(out, "SELF-CORES TOTAL-CORES  FUNCTION\n"));
    CHECK(has(out, "0.60s  60.00%        0.60s  60.00%      0.0060      0.0060  hash\n"));
    CHECK(has(out, "0.30s  30.00%        0.90s  90.00%      0.0030      0.0090  work\n"));
    CHECK(has(out, "total 1.00s in 4 functions (2 shown); 0.0100 cores over 100s"));
    char *req = ts_last_request(&srv, NULL);
    CHECK(strncmp(req, "GET /api/top?query=process_cpu", 30) == 0);
    CHECK(strstr(req, "&from=now-100s&limit=2&by=total ") != NULL);
    free(req);
    /* one traced request: its times, not cores averaged over the range */
    static const char *const spans[] = {"{span_id=\\\"00ab\\\"}",
                                        "{a=\\\"b\\\", trace_id =~ \\\"0.*\\\"}"};
    for (size_t i = 0; i < 2; i++) {
        ts_push(&srv, resp, 0, 0);
        char args[256];
        snprintf(args, sizeof args, "query \"process_cpu:cpu:nanoseconds:cpu:nanoseconds%s\"",
                 spans[i]);
        CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
        CHECK(has(out, "TOTAL%  FUNCTION\n") && has(out, "0.60s  60.00%  hash\n"));
        CHECK(strstr(out, "CORES") == NULL && strstr(out, "cores over") == NULL);
    }
    CHECK_EQ_INT(ctl_run("query 'a{}' --by name", out, sizeof out), 2);
    CHECK(has(out, "--by must be self or total"));

    char path[128], args[256];
    snprintf(path, sizeof path, "%s/out.pb.gz", tmp);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\x1f\x8b\x00\x01\x02\x03", 6 + 38,
            0);
    snprintf(args, sizeof args, "query 'a{}' --output pprof -o '%s' --max-nodes 50", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    FILE *f = fopen(path, "rb");
    char got[16] = {0};
    CHECK(f != NULL && fread(got, 1, sizeof got, f) == 6 &&
          memcmp(got, "\x1f\x8b\x00\x01", 4) == 0);
    if (f) fclose(f);
    req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "&format=pprof&maxNodes=50 ") != NULL);
    free(req);

    /* svg prints the body; speedscope goes to -o FILE */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n<svg></svg>", 0, 0);
    CHECK_EQ_INT(ctl_run("query 'a{}' --output svg", out, sizeof out), 0);
    CHECK(has(out, "<svg></svg>"));
    req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "&format=svg ") != NULL);
    free(req);
    snprintf(path, sizeof path, "%s/out.speedscope.json", tmp);
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0, 0);
    snprintf(args, sizeof args, "query 'a{}' --output speedscope -o '%s'", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    f = fopen(path, "rb");
    memset(got, 0, sizeof got);
    CHECK(f != NULL && fread(got, 1, sizeof got, f) == 2 && memcmp(got, "{}", 2) == 0);
    if (f) fclose(f);
    req = ts_last_request(&srv, NULL);
    CHECK(strstr(req, "&format=speedscope ") != NULL);
    free(req);
}

/* Pushes one 200 answer with a JSON body. */
static void push_json(const char *body)
{
    static char resp[4096];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
             body);
    ts_push(&srv, resp, 0, 0);
}

/* A selection without samples prints an empty table (exit 0) and says so on
 * stderr; a diff with one empty side says which, since every function then
 * reads as new or gone. */
static void test_empty_selections(void)
{
    static char out[65536];
    /* a label without values printed nothing at all */
    push_json("[]");
    CHECK_EQ_INT(ctl_run("labels nosuchlabel", out, sizeof out), 0);
    CHECK_EQ_STR(out, "flamectl: label 'nosuchlabel' has no values in the range (names: flamectl "
                      "labels)\n");
    push_json("[]");
    CHECK_EQ_INT(ctl_run("labels", out, sizeof out), 0);
    CHECK(has(out, "flamectl: no labels in the range"));
    push_json("{\"unit\":\"nanoseconds\",\"total\":0,\"rangeSeconds\":3600,\"cores\":0,"
              "\"functionCount\":0,\"functions\":[]}");
    CHECK_EQ_INT(ctl_run("query 'a:b:nanoseconds:c:d{service_name=\"nosuch\"}'", out, sizeof out),
                 0);
    CHECK(has(out, "flamectl: no samples match this selection in the range"));
    push_json("{\"label\":\"env\",\"total\":0,\"values\":[]}");
    CHECK_EQ_INT(
        ctl_run("shares 'a:b:nanoseconds:c:d{service_name=\"nosuch\"}' env", out, sizeof out), 0);
    CHECK(has(out, "total 0.00s in 0 values of env"));
    CHECK(has(out, "flamectl: no samples match this selection in the range"));
    static const char diff[] =
        "{\"leftTicks\":%d,\"rightTicks\":%d,\"unit\":\"nanoseconds\",\"leftSeconds\":60,"
        "\"rightSeconds\":60,\"leftBuckets\":0,\"rightBuckets\":6,\"functionCount\":1,"
        "\"tested\":0,\"functions\":[{\"name\":\"main\",\"leftTotal\":%d,\"rightTotal\":%d,"
        "\"leftShare\":0,\"rightShare\":100,\"change\":100,\"significant\":false,"
        "\"pValue\":null}]}";
    static const int sides[][2] = {{0, 500}, {500, 0}, {0, 0}, {500, 500}};
    static const char *const said[] = {"the left selection has no samples in its range",
                                       "the right selection has no samples in its range",
                                       "neither selection has samples", NULL};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, diff, sides[i][0], sides[i][1], sides[i][0], sides[i][1]);
        push_json(body);
        CHECK_EQ_INT(ctl_run("diff 'a{x=\"1\"}' 'a{x=\"2\"}'", out, sizeof out), 0);
        CHECK(has(out, "  main\n"));
        if (said[i] != NULL)
            CHECK(has(out, said[i]));
        else
            CHECK(strstr(out, "samples") == NULL);
    }
}

static void test_shares_and_group_by(void)
{
    static char out[65536];
    static const char shares[] =
        "{\"label\":\"env\",\"total\":20000000000,\"values\":["
        "{\"value\":\"a\",\"total\":10000000000,\"share\":0.500000,"
        "\"timeline\":{\"startTime\":1,\"samples\":[4000000000,6000000000],\"durationDelta\":10}},"
        "{\"value\":\"\",\"total\":6000000000,\"share\":0.300000,"
        "\"timeline\":{\"startTime\":1,\"samples\":[6000000000,0],\"durationDelta\":10}},"
        "{\"value\":\"b\",\"total\":4000000000,\"share\":0.200000,"
        "\"timeline\":{\"startTime\":1,\"samples\":[0,4000000000],\"durationDelta\":10}}]}";
    static char resp[2048];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
             sizeof shares - 1, shares);
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("shares 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{a=\"1\"}' env "
                         "--from now-5m",
                         out, sizeof out),
                 0);
    CHECK_EQ_STR(out, "       TOTAL   SHARE  VALUE\n"
                      "      10.00s  50.00%  a\n"
                      "       6.00s  30.00%  (none)\n"
                      "       4.00s  20.00%  b\n"
                      "total 20.00s in 3 values of env\n");
    char *req = ts_last_request(&srv, NULL);
    CHECK(strncmp(req, "GET /api/label-shares?query=process_cpu", 39) == 0);
    CHECK(strstr(req, "&label=env&from=now-5m ") != NULL);
    free(req);
    /* bytes: binary units; json: the answer itself */
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("shares 'memory:alloc_space:bytes:space:bytes{}' env", out, sizeof out),
                 0);
    CHECK(has(out, " 9.3 GiB  50.00%  a\n"));
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("shares 'a:b:c:d:e{}' env --output json", out, sizeof out), 0);
    CHECK(strncmp(out, shares, sizeof shares - 1) == 0 && out[sizeof shares - 1] == '\n');
    /* the node's reason, exit 1; bad usage, exit 2 without a request */
    ts_push(&srv,
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 57\r\n\r\n"
            "{\"code\":\"invalid_parameter\",\"message\":\"label: required!\"}",
            0, 0);
    CHECK_EQ_INT(ctl_run("shares 'a:b:c:d:e{}' ''", out, sizeof out), 1);
    CHECK(has(out, "shares failed") && has(out, "label: required!"));
    int before = srv.requests;
    CHECK_EQ_INT(ctl_run("shares 'a:b:c:d:e{}'", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("shares 'a:b:c:d:e{}' env --output svg", out, sizeof out), 2);
    CHECK(has(out, "--output must be table or json"));
    CHECK_EQ_INT(ctl_run("query 'a{}' --group-by pod", out, sizeof out), 2);
    CHECK(has(out, "--group-by needs --output json"));
    CHECK_EQ_INT(ctl_run("query 'a{}' --group-by pod --output folded", out, sizeof out), 2);
    CHECK_EQ_INT(srv.requests, before);
    /* --group-by passes groupBy to the render */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"groups\":{}}", 0, 0);
    CHECK_EQ_INT(ctl_run("query 'a{}' --output json --group-by pod --max-nodes 9", out, sizeof out),
                 0);
    CHECK_EQ_STR(out, "{\"groups\":{}}\n");
    req = ts_last_request(&srv, NULL);
    CHECK(strncmp(req, "GET /pyroscope/render?query=a%7B%7D", 35) == 0);
    CHECK(strstr(req, "&format=json&maxNodes=9&groupBy=pod ") != NULL);
    free(req);
}

static void test_profiles(void)
{
    static char out[65536];
    static const char list[] =
        "{\"profiles\":[{\"time\":1767225500,\"id\":\"00aa\",\"profile_id\":\"aa\","
        "\"total\":370000000,\"labels\":{\"__name__\":\"process_cpu\",\"pod\":\"a\"}},"
        "{\"time\":1767225400,\"id\":\"00bb\",\"profile_id\":\"bb\",\"total\":2048,"
        "\"labels\":{}}],\"truncated\":true}";
    static char resp[2048];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", sizeof list - 1,
             list);
    ts_push(&srv, resp, 0, 0);
    CHECK_EQ_INT(ctl_run("profiles 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{pod=\"a\"}' "
                         "--from now-5m --limit 2",
                         out, sizeof out),
                 0);
    CHECK(has(out, "2025-12-31 23:58:20  00aa"));
    CHECK(has(out, "0.37s  pod=a\n"));
    CHECK(has(out, "2 profiles (more match: raise --limit)\n"));
    char *req = ts_last_request(&srv, NULL);
    CHECK(strncmp(req, "GET /api/profiles?query=process_cpu", 35) == 0);
    CHECK(strstr(req, "&from=now-5m&limit=2 ") != NULL);
    free(req);
    /* one profile: folded to stdout, pprof to a file, the node's 404 reason */
    ts_push(&srv, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\na;b 1\n", 0, 0);
    CHECK_EQ_INT(ctl_run("profile 00aa", out, sizeof out), 0);
    CHECK_EQ_STR(out, "a;b 1\n");
    req = ts_last_request(&srv, NULL);
    CHECK(strncmp(req, "GET /api/profiles/00aa?format=folded ", 37) == 0);
    free(req);
    char path[128];
    snprintf(path, sizeof path, "%s/one.pb.gz", tmp);
    ts_push(&srv,
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\x1f\x8b"
            "AB",
            0, 0);
    char args[256];
    snprintf(args, sizeof args, "profile 00aa --output pprof -o %s", path);
    CHECK_EQ_INT(ctl_run(args, out, sizeof out), 0);
    FILE *f = fopen(path, "rb");
    unsigned char got[8] = {0};
    CHECK(f != NULL && fread(got, 1, sizeof got, f) == 4 && got[0] == 0x1f && got[1] == 0x8b);
    if (f != NULL) fclose(f);
    ts_push(&srv,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 44\r\n\r\n"
            "{\"code\":\"not_found\",\"message\":\"not stored!\"}",
            0, 0);
    CHECK_EQ_INT(ctl_run("profile 00cc", out, sizeof out), 1);
    CHECK(has(out, "profile failed") && has(out, "not stored!"));
    int before = srv.requests;
    CHECK_EQ_INT(ctl_run("profile 00aa --output top", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("profiles 'a{}' --output svg", out, sizeof out), 2);
    CHECK_EQ_INT(ctl_run("profile", out, sizeof out), 2);
    CHECK_EQ_INT(srv.requests, before);
}

int main(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    snprintf(ctl, sizeof ctl, "%s/../bin/flamectl", dirname(self));
    if (access(ctl, X_OK) != 0) {
        fprintf(stderr, "flamectl not built next to the tests (%s)\n", ctl);
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/flamectl-test-XXXXXX");
    if (mkdtemp(tmp) == NULL || ts_start(&srv) != 0) return 1;
    test_usage();
    test_help_text();
    test_cluster_status_table();
    test_labels_and_errors();
    test_empty_selections();
    test_push_detect();
    test_query_outputs();
    test_shares_and_group_by();
    test_profiles();
    ts_stop(&srv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
