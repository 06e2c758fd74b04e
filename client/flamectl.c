/* flamectl.c — the command-line client of flamedb, on top of libflamedb.
 *
 * Commands come from one table (name, arguments, handler, help text), options
 * from one getopt_long table; both print the help. Exit status: 0 success,
 * 1 the request failed (the server's reason is printed), 2 bad usage.
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/flamedb.h"
#include "client/flamedb_int.h"
#include "common/json.h"

#define EXIT_USAGE 2
#define MAX_PUSH_BYTES ((size_t)256 << 20) /* largest file flamectl pushes */
#define DEFAULT_TOP_LIMIT 20

typedef struct args {
    const char *url, *tenant, *token;
    int timeout_ms;
    const char *name, *format, *from, *until, *output, *outfile, *match, *spy_name, *by;
    const char *search;                                            /* query --output top, diff */
    const char *left_from, *left_until, *right_from, *right_until; /* diff */
    const char *group_by;                                          /* query --output json */
    const char *node;                                              /* cluster remove */
    const char *time;                                              /* push */
    int max_nodes, limit, sample_rate;
    int help, version;
    const char *pos[4]; /* positional arguments after the command */
    int npos;
    const char *given[48]; /* the command's options as typed ("--limit", "-o"), to check
                            * against its usage */
    int ngiven;
} args_t;

typedef struct command {
    const char *name;
    int min_pos, max_pos;
    int (*run)(flamedb_client_t *c, const args_t *a);
    const char *usage;
    const char *help;
} command_t;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "flamectl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see flamectl --help)\n");
    return EXIT_USAGE;
}

static int request_failed(flamedb_client_t *c, const char *what, int rc)
{
    const char *msg = flamedb_errmsg(c);
    fprintf(stderr, "flamectl: %s failed: %s\n", what, msg[0] ? msg : flamedb_strerror(rc));
    return EXIT_FAILURE;
}

/* --- push ------------------------------------------------------------------ */

static int read_input(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "flamectl: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_FAILURE;
    }
    buf_t b;
    buf_init(&b, MAX_PUSH_BYTES);
    uint8_t chunk[65536];
    size_t n;
    int rc = ERR_OK;
    while (rc == ERR_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(&b, chunk, n);
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (rc != ERR_OK || bad) {
        fprintf(stderr, "flamectl: cannot read %s: %s\n", path,
                bad ? "read error" : "larger than 256 MiB");
        buf_free(&b);
        return EXIT_FAILURE;
    }
    *out = buf_steal(&b, len);
    return 0;
}

/* pprof when gzipped or binary (protobuf), folded when it looks like text. */
static const char *detect_format(const uint8_t *p, size_t n)
{
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) return "pprof";
    if (n >= 2 && ((p[0] == 0xff && p[1] == 0xfe) || (p[0] == 0xfe && p[1] == 0xff)))
        return "folded"; /* UTF-16 text: the server decodes or refuses it */
    for (size_t i = 0; i < n && i < 4096; i++)
        if (p[i] < 0x09 || (p[i] > 0x0d && p[i] < 0x20) || p[i] == 0x7f) return "pprof";
    return "folded";
}

/* Why the input holds no profile (NULL when it may hold one): an empty
 * file, or folded text without a stack line. The node answers such a push
 * 200 and stores nothing (an SDK that sampled nothing sends it); a user who
 * pushed the wrong file or an empty pipe gets told, and exit status 1. */
static const char *nothing_to_push(const uint8_t *p, size_t n, const char *fmt)
{
    if (n == 0) return "is empty (0 bytes)";
    if (strcmp(fmt, "folded") != 0) return NULL;
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return NULL;
    return "has no stack line (blank lines only)";
}

/* "now-90m": seconds before now, as query times are written (s, m, h, d,
 * w); -1 when s is not that. */
static long long before_now(const char *s)
{
    static const struct {
        char unit;
        long long secs;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    if (strcmp(s, "now") == 0) return 0;
    if (strncmp(s, "now-", 4) != 0 || s[4] < '0' || s[4] > '9') return -1;
    char *end;
    errno = 0;
    long long n = strtoll(s + 4, &end, 10);
    if (errno != 0 || end[0] == '\0' || end[1] != '\0') return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (units[i].unit == end[0] && n <= 100LL * 366 * 86400 / units[i].secs)
            return n * units[i].secs;
    return -1;
}

/* A push's --from/--until: unix seconds, or now / now-1h resolved here
 * (the node's ingest takes unix times only). */
static int parse_seconds(const char *s, const char *what, int64_t *out)
{
    char *end;
    if (s == NULL) {
        *out = 0;
        return 0;
    }
    long long ago = before_now(s);
    if (ago >= 0) {
        *out = (int64_t)time(NULL) - ago;
        return 0;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0) return usage_error(what, s);
    *out = v;
    return 0;
}

static int cmd_push(flamedb_client_t *c, const args_t *a)
{
    int64_t from, until, at;
    if (a->name == NULL)
        return usage_error("push: --name is required (e.g. --name 'app.cpu{env=prod}')%s", "");
    if (parse_seconds(a->from, "push: --from '%s' is not unix seconds, now or now-1h", &from) ||
        parse_seconds(a->until, "push: --until '%s' is not unix seconds, now or now-1h", &until) ||
        parse_seconds(a->time, "push: --time '%s' is not unix seconds, now or now-1h", &at))
        return EXIT_USAGE;
    if (a->format && strcmp(a->format, "pprof") != 0 && strcmp(a->format, "folded") != 0)
        return usage_error("push: --format must be pprof or folded, not '%s'", a->format);
    uint8_t *data;
    size_t len;
    if (read_input(a->pos[0], &data, &len) != 0) return EXIT_FAILURE;
    const char *fmt = a->format ? a->format : detect_format(data, len);
    const char *why = nothing_to_push(data, len, fmt);
    if (why != NULL) {
        fprintf(stderr, "flamectl: push: %s %s: nothing to push\n",
                strcmp(a->pos[0], "-") == 0 ? "stdin" : a->pos[0], why);
        free(data);
        return EXIT_FAILURE;
    }
    flamedb_push_t p = {.name = a->name,
                        .from = from,
                        .until = until,
                        .format =
                            strcmp(fmt, "pprof") == 0 ? FLAMEDB_PUSH_PPROF : FLAMEDB_PUSH_FOLDED,
                        .sample_rate = a->sample_rate,
                        .spy_name = a->spy_name};
    int rc = flamedb_push_at(c, &p, at, data, len);
    free(data);
    if (rc != 0) return request_failed(c, "push", rc);
    if (flamedb__stored_nothing(c)) { /* 200, and the node said so */
        fprintf(stderr,
                "flamectl: push: %s has no sample with a value (no sample, or all 0): the node "
                "stored nothing\n",
                strcmp(a->pos[0], "-") == 0 ? "stdin" : a->pos[0]);
        return EXIT_FAILURE;
    }
    fprintf(stderr, "pushed %zu bytes (%s) as %s\n", len, fmt, a->name);
    return 0;
}

/* --- query ----------------------------------------------------------------- */

static void format_value(char *out, size_t cap, int64_t v, const char *unit)
{
    static const char *bin[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (strcmp(unit, "nanoseconds") == 0) {
        snprintf(out, cap, "%.2fs", (double)v / 1e9);
    } else if (strcmp(unit, "bytes") == 0) {
        double d = (double)v;
        int i = 0;
        while ((d >= 1024 || d <= -1024) && i < 4) {
            d /= 1024;
            i++;
        }
        snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", d, bin[i]);
    } else {
        snprintf(out, cap, "%" PRId64, v);
    }
}

/* Does the selector pick traced requests (a span_id or trace_id matcher =
 * or =~)? One request's CPU averaged over the range is a vanishing share
 * of a core (0.0005), so its table shows times only, as the web UI's span
 * view does. */
static int selects_requests(const char *query)
{
    static const char *const names[] = {"span_id", "trace_id"};
    const char *sel = strchr(query, '{');
    for (const char *p = sel; p != NULL && *p != '\0'; p++) {
        if (*p != '{' && *p != ',') continue;
        const char *q = p + 1;
        while (*q == ' ')
            q++;
        for (size_t i = 0; i < 2; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(q, names[i], n) != 0) continue;
            const char *op = q + n;
            while (*op == ' ')
                op++;
            if (*op == '=') return 1;
        }
    }
    return 0;
}

static void print_top(const flamedb__top_t *t, int requests)
{
    char self[32], total[32];
    int cores = t->has_cores && !requests;
    const char *cores_head = cores ? "  SELF-CORES TOTAL-CORES" : "";
    printf("%12s %7s %12s %7s%s  %s\n", "SELF", "SELF%", "TOTAL", "TOTAL%", cores_head, "FUNCTION");
    for (size_t i = 0; i < t->count; i++) {
        const flamedb__top_row_t *r = &t->rows[i];
        format_value(self, sizeof self, r->self, t->unit);
        format_value(total, sizeof total, r->total, t->unit);
        printf("%12s %6.2f%% %12s %6.2f%%", self, r->self_pct, total, r->total_pct);
        if (cores) printf("  %10.4f  %10.4f", r->self_cores, r->total_cores);
        printf("  %s\n", r->name);
    }
    format_value(total, sizeof total, t->sum, t->unit);
    if (t->average) /* a gauge: the values are the average profile, not a sum over time */
        printf("in use %s (the average profile of the range) in %" PRId64 " functions", total,
               t->functions);
    else
        printf("total %s in %" PRId64 " functions", total, t->functions);
    if (t->matches >= 0) printf(", %" PRId64 " matching the search", t->matches);
    printf(" (%zu shown)", t->count);
    if (cores) printf("; %.4f cores over %" PRId64 "s", t->cores, t->range_s);
    printf("\n");
}

/* GET /api/top: the server computes the table from the whole merged tree. */
static int query_top(flamedb_client_t *c, const args_t *a)
{
    buf_t path;
    buf_init(&path, 65536);
    int rc = buf_append_str(&path, "/api/top");
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "query", a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "from", a->from);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "until", a->until);
    if (rc == ERR_OK)
        rc = flamedb__query_add_int(&path, "limit", a->limit > 0 ? a->limit : DEFAULT_TOP_LIMIT);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "by", a->by);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "search", a->search);
    if (rc == ERR_OK) rc = buf_append_byte(&path, 0);
    if (rc != ERR_OK) {
        buf_free(&path);
        return usage_error("query: the query is too long%s", "");
    }
    flamedb_response_t r;
    rc = flamedb_get(c, (const char *)path.data, &r);
    buf_free(&path);
    if (rc != 0) return request_failed(c, "query", rc);
    flamedb__top_t t;
    errmsg_t em = {{0}};
    int status = 0;
    if (flamedb__top_parse((const char *)r.body, r.len, &t, &em) != 0) {
        fprintf(stderr, "flamectl: cannot read the server's answer: %s\n", em.text);
        status = EXIT_FAILURE;
    } else {
        print_top(&t, selects_requests(a->pos[0]));
        if (t.sum == 0)
            fprintf(stderr,
                    "flamectl: no samples match this selection in the range "
                    "(check the selector and --from/--until; 'flamectl labels' lists what is "
                    "stored)\n");
        if (t.partial) fprintf(stderr, "flamectl: partial answer: some data was unreachable\n");
        flamedb__top_free(&t);
    }
    flamedb_response_free(&r);
    return status;
}

/* --- diff ------------------------------------------------------------------ */

static void print_report(const flamedb__report_t *t)
{
    char left[32], right[32], p[16];
    printf("%10s %7s %7s %12s %12s %9s %4s  %s\n", "CHANGE", "LEFT%", "RIGHT%", "LEFT", "RIGHT",
           "P", "SIG", "FUNCTION");
    for (size_t i = 0; i < t->count; i++) {
        const flamedb__report_row_t *r = &t->rows[i];
        format_value(left, sizeof left, r->left_total, t->unit);
        format_value(right, sizeof right, r->right_total, t->unit);
        snprintf(p, sizeof p, r->tested ? "%.2g" : "-", r->p);
        printf("%+8.2fpp %6.2f%% %6.2f%% %12s %12s %9s %4s  %s\n", r->change, r->left_share,
               r->right_share, left, right, p, r->significant ? "yes" : "no", r->name);
    }
    format_value(left, sizeof left, t->left_ticks, t->unit);
    format_value(right, sizeof right, t->right_ticks, t->unit);
    printf("left %s over %" PRId64 "s (%" PRId64 " buckets), right %s over %" PRId64 "s (%" PRId64
           " buckets); %" PRId64 " functions",
           left, t->left_seconds, t->left_buckets, right, t->right_seconds, t->right_buckets,
           t->functions);
    if (t->matches >= 0) printf(", %" PRId64 " matching the search", t->matches);
    printf(", %" PRId64 " tested\n", t->tested);
}

static int diff_path(const args_t *a, buf_t *path)
{
    const char *lf = a->left_from ? a->left_from : a->from;
    const char *lu = a->left_until ? a->left_until : a->until;
    const char *rf = a->right_from ? a->right_from : a->from;
    const char *ru = a->right_until ? a->right_until : a->until;
    int rc = buf_append_str(path, "/api/diff");
    if (rc == ERR_OK) rc = flamedb__query_add(path, "leftQuery", a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "rightQuery", a->pos[1]);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "leftFrom", lf);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "leftUntil", lu);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "rightFrom", rf);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "rightUntil", ru);
    if (rc == ERR_OK)
        rc = flamedb__query_add_int(path, "limit", a->limit > 0 ? a->limit : DEFAULT_TOP_LIMIT);
    if (rc == ERR_OK) rc = flamedb__query_add(path, "search", a->search);
    return rc == ERR_OK ? buf_append_byte(path, 0) : rc;
}

/* A side without samples makes every function read as new or gone: most
 * often a selector or range that matches nothing, which the table alone does
 * not show. */
static void note_empty_sides(const flamedb__report_t *t)
{
    if (t->left_ticks == 0 && t->right_ticks == 0)
        fprintf(stderr, "flamectl: neither selection has samples in its range "
                        "(check the queries and times; 'flamectl labels' lists what is stored)\n");
    else if (t->left_ticks == 0 || t->right_ticks == 0)
        fprintf(stderr,
                "flamectl: the %s selection has no samples in its range, so every function "
                "reads as %s (check its query and --%s-from/--%s-until)\n",
                t->left_ticks == 0 ? "left" : "right", t->left_ticks == 0 ? "new" : "gone",
                t->left_ticks == 0 ? "left" : "right", t->left_ticks == 0 ? "left" : "right");
}

/* GET /api/diff: the server ranks the functions and tests them. */
static int cmd_diff(flamedb_client_t *c, const args_t *a)
{
    buf_t path;
    buf_init(&path, 65536);
    if (diff_path(a, &path) != ERR_OK) {
        buf_free(&path);
        return usage_error("diff: the queries are too long%s", "");
    }
    flamedb_response_t r;
    int rc = flamedb_get(c, (const char *)path.data, &r);
    buf_free(&path);
    if (rc != 0) return request_failed(c, "diff", rc);
    flamedb__report_t t;
    errmsg_t em = {{0}};
    int status = 0;
    if (flamedb__report_parse((const char *)r.body, r.len, &t, &em) != 0) {
        fprintf(stderr, "flamectl: cannot read the server's answer: %s\n", em.text);
        status = EXIT_FAILURE;
    } else {
        print_report(&t);
        note_empty_sides(&t);
        if (t.partial) fprintf(stderr, "flamectl: partial answer: some data was unreachable\n");
        flamedb__report_free(&t);
    }
    flamedb_response_free(&r);
    return status;
}

static int write_binary(const flamedb_response_t *r, const char *path)
{
    if (path == NULL && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "flamectl: not writing a binary pprof to a terminal; "
                        "use -o FILE or redirect stdout\n");
        return EXIT_USAGE;
    }
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "flamectl: cannot create %s: %s\n", path, strerror(errno));
        return EXIT_FAILURE;
    }
    int bad = fwrite(r->body, 1, r->len, f) != r->len;
    bad |= path ? fclose(f) != 0 : fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "flamectl: write %s: %s\n", path ? path : "stdout", strerror(errno));
        return EXIT_FAILURE;
    }
    if (path) fprintf(stderr, "wrote %zu bytes to %s\n", r->len, path);
    return 0;
}

/* GET /pyroscope/render?format=json&groupBy=LABEL: the flamebearer plus one
 * timeline per value of the label (groups). */
static int query_grouped(flamedb_client_t *c, const args_t *a, flamedb_response_t *r)
{
    buf_t path;
    buf_init(&path, 65536);
    int rc = buf_append_str(&path, "/pyroscope/render");
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "query", a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "from", a->from);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "until", a->until);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "format", "json");
    if (rc == ERR_OK && a->max_nodes > 0)
        rc = flamedb__query_add_int(&path, "maxNodes", a->max_nodes);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "groupBy", a->group_by);
    if (rc == ERR_OK) rc = buf_append_byte(&path, 0);
    if (rc != ERR_OK) {
        buf_free(&path);
        return usage_error("query: the query is too long%s", "");
    }
    rc = flamedb_get(c, (const char *)path.data, r);
    buf_free(&path);
    return rc != 0 ? request_failed(c, "query", rc) : 0;
}

static int cmd_query(flamedb_client_t *c, const args_t *a)
{
    const char *out = a->output ? a->output : "top";
    flamedb_format_t f;
    if (a->by != NULL && strcmp(a->by, "self") != 0 && strcmp(a->by, "total") != 0)
        return usage_error("query: --by must be self or total, not '%s'", a->by);
    if (a->search != NULL && strcmp(out, "top") != 0)
        return usage_error("query: --search lists functions: it needs --output top, not "
                           "--output %s",
                           out);
    if (a->group_by != NULL && strcmp(out, "json") != 0)
        return usage_error("query: --group-by needs --output json (the groups are timelines "
                           "of the JSON answer), not --output %s",
                           out);
    int top = strcmp(out, "top") == 0;
    if (top && a->outfile != NULL)
        return usage_error("query: -o writes folded, json, pprof, svg or speedscope; the top "
                           "table goes to stdout (redirect it: > %s)",
                           a->outfile);
    if (top && a->max_nodes > 0)
        return usage_error("query: --max-nodes truncates a flame graph; the top table is of "
                           "every function (--limit)%s",
                           "");
    if (!top && (a->limit > 0 || a->by != NULL))
        return usage_error("query: --limit and --by order the top table: they need --output "
                           "top, not --output %s",
                           out);
    if (top) return query_top(c, a);
    if (strcmp(out, "folded") == 0)
        f = FLAMEDB_FORMAT_FOLDED;
    else if (strcmp(out, "json") == 0)
        f = FLAMEDB_FORMAT_JSON;
    else if (strcmp(out, "pprof") == 0)
        f = FLAMEDB_FORMAT_PPROF;
    else if (strcmp(out, "svg") == 0)
        f = FLAMEDB_FORMAT_SVG;
    else if (strcmp(out, "speedscope") == 0)
        f = FLAMEDB_FORMAT_SPEEDSCOPE;
    else
        return usage_error(
            "query: --output must be top, folded, json, pprof, svg or speedscope, not '%s'", out);
    flamedb_response_t r;
    if (a->group_by != NULL) {
        int status = query_grouped(c, a, &r);
        if (status != 0) return status;
    } else {
        int rc = flamedb_query(c, a->pos[0], a->from, a->until, f, a->max_nodes, &r);
        if (rc != 0) return request_failed(c, "query", rc);
    }
    int status = 0;
    if (f == FLAMEDB_FORMAT_PPROF || a->outfile != NULL)
        status = write_binary(&r, a->outfile);
    else if (fwrite(r.body, 1, r.len, stdout) != r.len || fflush(stdout) != 0)
        status = EXIT_FAILURE;
    if (f == FLAMEDB_FORMAT_JSON && a->outfile == NULL && status == 0) putchar('\n');
    flamedb_response_free(&r);
    return status;
}

/* --- shares ---------------------------------------------------------------- */

/* The sample unit of 'name:sample_type:sample_unit:...{...}' (its third
 * field; "" when the query has no type: the server then refuses it). */
static void query_unit(const char *q, char *unit, size_t cap)
{
    const char *p = q;
    for (int field = 0; field < 2 && p != NULL; field++) {
        p = strpbrk(p, ":{");
        p = p != NULL && *p == ':' ? p + 1 : NULL;
    }
    size_t n = p != NULL ? strcspn(p, ":{") : 0;
    snprintf(unit, cap, "%.*s", (int)n, p != NULL ? p : "");
}

static void print_shares(const flamedb__shares_t *t, const char *label, const char *unit)
{
    char total[32], sum[32];
    int64_t values_sum = 0;
    printf("%12s %7s  %s\n", t->average ? "AVG IN USE" : "TOTAL", "SHARE", "VALUE");
    for (size_t i = 0; i < t->count; i++) {
        const flamedb__share_row_t *r = &t->rows[i];
        format_value(total, sizeof total, r->total, unit);
        printf("%12s %6.2f%%  %s\n", total, r->share * 100, r->value[0] ? r->value : "(none)");
        values_sum += r->total;
    }
    format_value(total, sizeof total, t->total, unit);
    format_value(sum, sizeof sum, values_sum, unit);
    /* in-use types: each value's average profile over the range, its share
     * one of the values' averages together (not of the selection's average
     * profile, which the two pods of 405 and 401 MiB read as 403 MiB) */
    if (t->average && t->count > 1)
        printf("in use %s (the average profile of the range) in %zu values of %s; shares of "
               "the values' averages, %s together\n",
               total, t->count, label, sum);
    else if (t->average)
        printf("in use %s (the average profile of the range) in %zu %s of %s\n", total, t->count,
               t->count == 1 ? "value" : "values", label);
    else
        printf("total %s in %zu %s of %s\n", total, t->count, t->count == 1 ? "value" : "values",
               label);
}

/* GET /api/label-shares: the server sums each value from the window totals. */
static int cmd_shares(flamedb_client_t *c, const args_t *a)
{
    const char *out = a->output ? a->output : "table";
    if (strcmp(out, "table") != 0 && strcmp(out, "json") != 0)
        return usage_error("shares: --output must be table or json, not '%s'", out);
    buf_t path;
    buf_init(&path, 65536);
    int rc = buf_append_str(&path, "/api/label-shares");
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "query", a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "label", a->pos[1]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "from", a->from);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "until", a->until);
    if (rc == ERR_OK) rc = buf_append_byte(&path, 0);
    if (rc != ERR_OK) {
        buf_free(&path);
        return usage_error("shares: the query is too long%s", "");
    }
    flamedb_response_t r;
    rc = flamedb_get(c, (const char *)path.data, &r);
    buf_free(&path);
    if (rc != 0) return request_failed(c, "shares", rc);
    int status = 0;
    if (strcmp(out, "json") == 0) {
        if (fwrite(r.body, 1, r.len, stdout) != r.len || putchar('\n') == EOF)
            status = EXIT_FAILURE;
        flamedb_response_free(&r);
        return status;
    }
    flamedb__shares_t t;
    errmsg_t em = {{0}};
    char unit[32];
    query_unit(a->pos[0], unit, sizeof unit);
    if (flamedb__shares_parse((const char *)r.body, r.len, &t, &em) != 0) {
        fprintf(stderr, "flamectl: cannot read the server's answer: %s\n", em.text);
        status = EXIT_FAILURE;
    } else {
        print_shares(&t, a->pos[1], unit);
        if (t.total == 0)
            fprintf(stderr,
                    "flamectl: no samples match this selection in the range "
                    "(check the selector and --from/--until; 'flamectl labels' lists what is "
                    "stored)\n");
        if (t.partial) fprintf(stderr, "flamectl: partial answer: some data was unreachable\n");
        flamedb__shares_free(&t);
    }
    flamedb_response_free(&r);
    return status;
}

/* --- profiles, profile ------------------------------------------------------ */

static void print_plist(const flamedb__plist_t *t, const char *unit)
{
    char total[32], when[32];
    printf("%-20s %-80s %12s  %s\n", "TIME (UTC)", "ID", "TOTAL", "LABELS");
    for (size_t i = 0; i < t->count; i++) {
        const flamedb__plist_row_t *r = &t->rows[i];
        time_t tt = (time_t)r->time_s;
        struct tm tm;
        if (gmtime_r(&tt, &tm) == NULL ||
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm) == 0)
            snprintf(when, sizeof when, "%" PRId64, r->time_s);
        format_value(total, sizeof total, r->total, unit);
        printf("%-20s %-80s %12s  %s\n", when, r->id, total, r->labels);
    }
    printf("%zu profiles%s\n", t->count, t->truncated ? " (more match: raise --limit)" : "");
}

/* GET /api/profiles: the stored profiles of a selection, newest first. */
static int cmd_profiles(flamedb_client_t *c, const args_t *a)
{
    const char *out = a->output ? a->output : "table";
    if (strcmp(out, "table") != 0 && strcmp(out, "json") != 0)
        return usage_error("profiles: --output must be table or json, not '%s'", out);
    buf_t path;
    buf_init(&path, 65536);
    int rc = buf_append_str(&path, "/api/profiles");
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "query", a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "from", a->from);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "until", a->until);
    if (rc == ERR_OK && a->limit > 0) rc = flamedb__query_add_int(&path, "limit", a->limit);
    if (rc == ERR_OK) rc = buf_append_byte(&path, 0);
    if (rc != ERR_OK) {
        buf_free(&path);
        return usage_error("profiles: the query is too long%s", "");
    }
    flamedb_response_t r;
    rc = flamedb_get(c, (const char *)path.data, &r);
    buf_free(&path);
    if (rc != 0) return request_failed(c, "profiles", rc);
    int status = 0;
    flamedb__plist_t t;
    errmsg_t em = {{0}};
    char unit[32];
    query_unit(a->pos[0], unit, sizeof unit);
    if (strcmp(out, "json") == 0) {
        if (fwrite(r.body, 1, r.len, stdout) != r.len || putchar('\n') == EOF)
            status = EXIT_FAILURE;
    } else if (flamedb__plist_parse((const char *)r.body, r.len, &t, &em) != 0) {
        fprintf(stderr, "flamectl: cannot read the server's answer: %s\n", em.text);
        status = EXIT_FAILURE;
    } else {
        print_plist(&t, unit);
        if (t.partial) fprintf(stderr, "flamectl: partial answer: some data was unreachable\n");
        flamedb__plist_free(&t);
    }
    flamedb_response_free(&r);
    return status;
}

/* GET /api/profiles/ID: one stored profile, exactly as it was pushed. */
static int cmd_profile(flamedb_client_t *c, const args_t *a)
{
    const char *out = a->output ? a->output : "folded";
    if (strcmp(out, "folded") != 0 && strcmp(out, "json") != 0 && strcmp(out, "pprof") != 0 &&
        strcmp(out, "svg") != 0 && strcmp(out, "speedscope") != 0)
        return usage_error("profile: --output must be folded, json, pprof, svg or speedscope, "
                           "not '%s'",
                           out);
    buf_t path;
    buf_init(&path, 4096);
    int rc = buf_append_str(&path, "/api/profiles/");
    if (rc == ERR_OK) rc = flamedb__url_escape(&path, a->pos[0]);
    if (rc == ERR_OK) rc = flamedb__query_add(&path, "format", out);
    if (rc == ERR_OK && a->max_nodes > 0)
        rc = flamedb__query_add_int(&path, "maxNodes", a->max_nodes);
    if (rc == ERR_OK) rc = buf_append_byte(&path, 0);
    if (rc != ERR_OK) {
        buf_free(&path);
        return usage_error("profile: the id is too long%s", "");
    }
    flamedb_response_t r;
    rc = flamedb_get(c, (const char *)path.data, &r);
    buf_free(&path);
    if (rc != 0) return request_failed(c, "profile", rc);
    int status = 0;
    if (strcmp(out, "pprof") == 0 || a->outfile != NULL)
        status = write_binary(&r, a->outfile);
    else if (fwrite(r.body, 1, r.len, stdout) != r.len || fflush(stdout) != 0)
        status = EXIT_FAILURE;
    if (strcmp(out, "json") == 0 && a->outfile == NULL && status == 0) putchar('\n');
    flamedb_response_free(&r);
    return status;
}

/* --- labels, ready ------------------------------------------------------------ */

static int cmd_labels(flamedb_client_t *c, const args_t *a)
{
    flamedb_strings_t s;
    int rc = a->npos > 0 ? flamedb_label_values(c, a->pos[0], a->match, a->from, a->until, &s)
                         : flamedb_label_names(c, a->match, a->from, a->until, &s);
    if (rc != 0) return request_failed(c, "labels", rc);
    for (size_t i = 0; i < s.count; i++)
        printf("%s\n", s.items[i]);
    if (s.count == 0 && a->npos > 0)
        fprintf(stderr,
                "flamectl: label '%s' has no values in the range (names: flamectl labels)\n",
                a->pos[0]);
    else if (s.count == 0)
        fprintf(stderr, "flamectl: no labels in the range%s\n",
                a->match ? " for that --match" : ": nothing was pushed then");
    flamedb_strings_free(&s);
    return 0;
}

static int cmd_ready(flamedb_client_t *c, const args_t *a)
{
    flamedb_response_t r;
    int rc = flamedb_get(c, "/ready", &r);
    if (rc != 0) return request_failed(c, "ready", rc);
    printf("ready (HTTP %d)\n", r.status);
    flamedb_response_free(&r);
    return 0;
}

/* --- cluster status ---------------------------------------------------------- */

/* GET /cluster/status is read with common/json.h for its one shape: scalar
 * fields at the top, "nodes" an array of flat objects. Everything is bounded
 * (rows, field lengths, nesting), so a hostile answer cannot exhaust memory. */
#define CS_MAX_ROWS 1024
#define CS_FIELD 128
#define CS_DEPTH 16
/* cluster status asks each live member for its full_repair with this
 * timeout unless --timeout gives one */
#define CS_MEMBER_TIMEOUT_MS 5000

typedef struct cs_row {
    char id[CS_FIELD], http[CS_FIELD], cluster[CS_FIELD], state[CS_FIELD];
    char tokens[CS_FIELD], ago[CS_FIELD], self[CS_FIELD], hints[CS_FIELD];
    char full[CS_FIELD]; /* its own full_repair, asked of it (cs_fill_full) */
} cs_row_t;

typedef struct cs_doc {
    char self[CS_FIELD], cluster[CS_FIELD], rf[CS_FIELD], quorum[CS_FIELD];
    char regaining[CS_FIELD], full_repair[CS_FIELD];
    cs_row_t *rows;
    size_t nrows;
} cs_doc_t;

static const json_limits_t cs_json = {CS_DEPTH, (size_t)-1};

/* A string (decoded) or a bare scalar into out (truncated to CS_FIELD - 1
 * bytes; out may be NULL). */
static int cs_scalar(json_t *r, char *out)
{
    return json_scalar_to(r, out, out != NULL ? CS_FIELD : 0) == 0 ? 0 : -1;
}

static int cs_skip(json_t *r)
{
    return json_skip(r) == 0 ? 0 : -1;
}

/* Calls item(ctx, key or NULL) for each member of the object or array at
 * the cursor; item consumes the value. */
static int cs_each(json_t *r, int is_obj, int (*item)(json_t *, void *, const char *), void *ctx)
{
    int rc = json_enter(r, is_obj ? '{' : '[');
    while (rc == 0 && json_next(r, &rc)) {
        char key[CS_FIELD] = "";
        if (is_obj && json_key(r, key, sizeof key) != 0) return -1;
        if (item(r, ctx, is_obj ? key : NULL) != 0) return -1;
    }
    return rc == 0 ? 0 : -1;
}

static int cs_hint_item(json_t *r, void *ctx, const char *key)
{
    (void)key;
    char *hints = ctx, v[CS_FIELD];
    if (cs_scalar(r, v) != 0) return -1;
    size_t n = strlen(hints);
    snprintf(hints + n, CS_FIELD - n, "%s%s", n ? "," : "", v);
    return 0;
}

static int cs_row_item(json_t *r, void *ctx, const char *key)
{
    cs_row_t *row = ctx;
    static const struct {
        const char *key;
        size_t off;
    } fields[] = {{"id", offsetof(cs_row_t, id)},
                  {"http", offsetof(cs_row_t, http)},
                  {"cluster", offsetof(cs_row_t, cluster)},
                  {"state", offsetof(cs_row_t, state)},
                  {"tokens", offsetof(cs_row_t, tokens)},
                  {"last_heartbeat_ms_ago", offsetof(cs_row_t, ago)},
                  {"self", offsetof(cs_row_t, self)}};
    if (strcmp(key, "hints_for") == 0) {
        return json_peek(r) == JSON_ARRAY ? cs_each(r, 0, cs_hint_item, row->hints) : -1;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(key, fields[i].key) == 0) return cs_scalar(r, (char *)row + fields[i].off);
    return cs_skip(r);
}

static int cs_node_item(json_t *r, void *ctx, const char *key)
{
    (void)key;
    cs_doc_t *d = ctx;
    if (d->nrows == CS_MAX_ROWS) return -1;
    cs_row_t *row = &d->rows[d->nrows++];
    memset(row, 0, sizeof *row);
    return cs_each(r, 1, cs_row_item, row);
}

static int cs_top_item(json_t *r, void *ctx, const char *key)
{
    cs_doc_t *d = ctx;
    if (strcmp(key, "nodes") == 0) return cs_each(r, 0, cs_node_item, d);
    char *dst = strcmp(key, "self") == 0          ? d->self
                : strcmp(key, "cluster") == 0     ? d->cluster
                : strcmp(key, "rf") == 0          ? d->rf
                : strcmp(key, "quorum") == 0      ? d->quorum
                : strcmp(key, "regaining") == 0   ? d->regaining
                : strcmp(key, "full_repair") == 0 ? d->full_repair
                                                  : NULL;
    return dst ? cs_scalar(r, dst) : cs_skip(r);
}

/* The width of a column: its title's or its longest value's, so the table
 * is as wide as what it holds (ids of 3 characters or of 40). */
static int cs_width(const cs_doc_t *d, size_t off, const char *title)
{
    size_t w = strlen(title);
    for (size_t i = 0; i < d->nrows; i++) {
        size_t n = strlen((const char *)&d->rows[i] + off);
        if (n > w) w = n;
    }
    return (int)w;
}

static void cs_print(const cs_doc_t *d)
{
    int wid = cs_width(d, offsetof(cs_row_t, id), "ID");
    int whttp = cs_width(d, offsetof(cs_row_t, http), "HTTP");
    int wcl = cs_width(d, offsetof(cs_row_t, cluster), "CLUSTER");
    printf("cluster '%s': %zu node(s), rf %s, write quorum %s (as seen by %s)\n", d->cluster,
           d->nrows, d->rf, d->quorum, d->self);
    printf("  %-*s  %-8s %6s %10s  %-*s  %-*s  %-11s %s\n", wid, "ID", "STATE", "TOKENS",
           "LAST SEEN", whttp, "HTTP", wcl, "CLUSTER", "FULL REPAIR", "HINTS FOR");
    for (size_t i = 0; i < d->nrows; i++) {
        const cs_row_t *w = &d->rows[i];
        char ago[CS_FIELD + 8];
        snprintf(ago, sizeof ago, "%s ms", w->ago);
        printf("%c %-*s  %-8s %6s %10s  %-*s  %-*s  %-11s %s\n",
               strcmp(w->self, "true") == 0 ? '*' : ' ', wid, w->id, w->state, w->tokens,
               strcmp(w->self, "true") == 0 ? "self" : ago, whttp, w->http, wcl,
               w->cluster[0] ? w->cluster : "-", w->full[0] ? w->full : "-",
               w->hints[0] ? w->hints : "-");
    }
}

/* GET /cluster/status into d (rows allocated here; free d->rows). */
/* Every cluster command starts here: a failure names the status read, not
 * "cluster status", which read as the wrong command after cluster repair. */
static int cs_load(flamedb_client_t *c, cs_doc_t *d, flamedb_response_t *r)
{
    memset(d, 0, sizeof *d);
    int rc = flamedb_get(c, "/cluster/status", r);
    if (rc != 0) return request_failed(c, "reading the cluster's status (GET /cluster/status)", rc);
    d->rows = calloc(CS_MAX_ROWS, sizeof(cs_row_t));
    json_t rd;
    json_init(&rd, r->body, r->len, cs_json);
    if (d->rows == NULL || cs_each(&rd, 1, cs_top_item, d) != 0) {
        fprintf(stderr, "flamectl: cluster status: the answer is not the expected JSON\n");
        return EXIT_FAILURE;
    }
    return 0;
}

static flamedb_client_t *client_for(const args_t *a, const char *url);

static int cs_full_item(json_t *r, void *ctx, const char *key)
{
    return strcmp(key, "full_repair") == 0 ? cs_scalar(r, ctx) : cs_skip(r);
}

/* Whether a node is in a full repair is in its own status only: the asked
 * node's from d, every other live member's asked of it ("?" when it does
 * not answer; "-" for a member down or gone). */
static void cs_fill_full(const args_t *a, cs_doc_t *d)
{
    args_t quick = *a; /* a member that hangs must not hold the table for long */
    if (quick.timeout_ms == 0) quick.timeout_ms = CS_MEMBER_TIMEOUT_MS;
    for (size_t i = 0; i < d->nrows; i++) {
        cs_row_t *w = &d->rows[i];
        char v[CS_FIELD] = "";
        if (strcmp(w->self, "true") == 0) {
            snprintf(v, sizeof v, "%s", d->full_repair);
        } else if (strcmp(w->state, "down") != 0 && strcmp(w->state, "left") != 0) {
            flamedb_client_t *c = client_for(&quick, w->http);
            flamedb_response_t r;
            if (c != NULL && flamedb_get(c, "/cluster/status", &r) == 0) {
                json_t rd;
                json_init(&rd, r.body, r.len, cs_json);
                if (cs_each(&rd, 1, cs_full_item, v) != 0) v[0] = 0;
                flamedb_response_free(&r);
            }
            flamedb_client_free(c);
            if (v[0] == 0) snprintf(v, sizeof v, "?");
        } else {
            continue;
        }
        snprintf(w->full, sizeof w->full, "%s",
                 strcmp(v, "1") == 0   ? "yes"
                 : strcmp(v, "0") == 0 ? "no"
                                       : "?");
    }
}

static int cmd_cluster_status(flamedb_client_t *c, const args_t *a)
{
    flamedb_response_t r;
    cs_doc_t d;
    if (a->output != NULL && strcmp(a->output, "table") != 0 && strcmp(a->output, "json") != 0)
        return usage_error("cluster status: --output must be table or json, not '%s'", a->output);
    if (a->output != NULL && strcmp(a->output, "json") == 0) {
        int rc = flamedb_get(c, "/cluster/status", &r);
        if (rc != 0) return request_failed(c, "cluster status", rc);
        fwrite(r.body, 1, r.len, stdout);
        flamedb_response_free(&r);
        return 0;
    }
    int rc = cs_load(c, &d, &r);
    if (rc == 0) {
        cs_fill_full(a, &d);
        cs_print(&d);
    }
    free(d.rows);
    flamedb_response_free(&r);
    return rc;
}

/* --- cluster repair and remove -------------------------------------------------- */

/* A repair pass converges when one round over every node streams nothing;
 * a round after a pass that streamed confirms it, so 2 rounds suffice unless
 * writes keep arriving. */
#define REPAIR_ROUNDS 5
#define REMOVE_WAIT_MS 30000
#define REGAIN_WAIT_MS 3600000
/* After a round that would have converged but for an incomplete pass (a node
 * still streaming in ranges of its own full repair, a peer briefly down): the
 * next round starts once no node streams ranges in, or after this long. */
#define INCOMPLETE_WAIT_MS 5000

typedef struct rp_sum {
    char complete[CS_FIELD], streamed[CS_FIELD], missing[CS_FIELD], bytes[CS_FIELD];
    char unavailable[CS_FIELD], buckets[CS_FIELD], differing[CS_FIELD], ms[CS_FIELD];
    char unreached[CS_FIELD], failed[CS_FIELD];
    char wcheck[CS_FIELD], wranges[CS_FIELD], wdiffer[CS_FIELD], wmixed[CS_FIELD];
    char wfetched[CS_FIELD], wfilled[CS_FIELD], winexact[CS_FIELD];
    buf_t inexact; /* a line per old window held differently, CS_MAX_ROWS at most */
    size_t ninexact;
} rp_sum_t;

typedef struct rp_window {
    char tenant[CS_FIELD], series[CS_FIELD], labels[CS_FIELD], res[CS_FIELD], at[CS_FIELD];
    char peer[CS_FIELD];
    char here[CS_FIELD], there[CS_FIELD]; /* profiles each copy holds alone, by id */
} rp_window_t;

static int rp_window_field(json_t *r, void *ctx, const char *key)
{
    rp_window_t *w = ctx;
    char *dst = strcmp(key, "tenant") == 0             ? w->tenant
                : strcmp(key, "series") == 0           ? w->series
                : strcmp(key, "labels") == 0           ? w->labels
                : strcmp(key, "resolution_s") == 0     ? w->res
                : strcmp(key, "window_s") == 0         ? w->at
                : strcmp(key, "peer") == 0             ? w->peer
                : strcmp(key, "only_here_count") == 0  ? w->here
                : strcmp(key, "only_there_count") == 0 ? w->there
                                                       : NULL;
    return dst ? cs_scalar(r, dst) : cs_skip(r);
}

/* One member of "window_inexact": a line in m->inexact (past CS_MAX_ROWS
 * only counted: the summary line gives the number). */
static int rp_window_item(json_t *r, void *ctx, const char *key)
{
    (void)key;
    rp_sum_t *m = ctx;
    rp_window_t w = {{0}};
    if (cs_each(r, 1, rp_window_field, &w) != 0) return -1;
    if (m->ninexact++ >= CS_MAX_ROWS) return 0;
    time_t t = (time_t)atoll(w.at);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm) != NULL) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int rc =
        buf_printf(&m->inexact, "tenant %s series %s %s: %s s window at %s, held otherwise by %s",
                   w.tenant, w.series, w.labels, w.res, when, w.peer);
    if (rc == 0 && w.here[0] != 0) /* named by id (storage format 14) */
        rc = buf_printf(&m->inexact, " (%s profile(s) only here, %s only there)", w.here, w.there);
    return rc == 0 && buf_append_byte(&m->inexact, '\n') == 0 ? 0 : -1;
}

static int rp_failed_field(json_t *r, void *ctx, const char *key)
{
    char *out = ctx, v[CS_FIELD];
    if (strcmp(key, "node") != 0 && strcmp(key, "reason") != 0) return cs_skip(r);
    if (cs_scalar(r, v) != 0) return -1;
    size_t n = strlen(out);
    const char *sep = strcmp(key, "node") == 0 && n ? "; " : n ? ": " : "";
    strncat(out, sep, CS_FIELD - 1 - n); /* truncated past the field: a summary line */
    n = strlen(out);
    strncat(out, v, CS_FIELD - 1 - n);
    return 0;
}

static int rp_failed_item(json_t *r, void *ctx, const char *key)
{
    (void)key;
    return cs_each(r, 1, rp_failed_field, ctx);
}

static int rp_item(json_t *r, void *ctx, const char *key)
{
    rp_sum_t *m = ctx;
    if (strcmp(key, "unreached") == 0) return cs_each(r, 0, cs_hint_item, m->unreached);
    if (strcmp(key, "failed") == 0) return cs_each(r, 0, rp_failed_item, m->failed);
    if (strcmp(key, "window_inexact") == 0) return cs_each(r, 0, rp_window_item, m);
    char *dst = strcmp(key, "complete") == 0                  ? m->complete
                : strcmp(key, "series_streamed") == 0         ? m->streamed
                : strcmp(key, "missing") == 0                 ? m->missing
                : strcmp(key, "bytes_streamed") == 0          ? m->bytes
                : strcmp(key, "unavailable") == 0             ? m->unavailable
                : strcmp(key, "buckets_compared") == 0        ? m->buckets
                : strcmp(key, "buckets_differing") == 0       ? m->differing
                : strcmp(key, "duration_ms") == 0             ? m->ms
                : strcmp(key, "window_check") == 0            ? m->wcheck
                : strcmp(key, "window_ranges") == 0           ? m->wranges
                : strcmp(key, "window_ranges_differing") == 0 ? m->wdiffer
                : strcmp(key, "window_ranges_mixed") == 0     ? m->wmixed
                : strcmp(key, "window_profiles_fetched") == 0 ? m->wfetched
                : strcmp(key, "window_windows_filled") == 0   ? m->wfilled
                : strcmp(key, "window_windows_inexact") == 0  ? m->winexact
                                                              : NULL;
    return dst ? cs_scalar(r, dst) : cs_skip(r);
}

static flamedb_client_t *client_for(const args_t *a, const char *url)
{
    flamedb_opts_t o = {.tenant = a->tenant,
                        .bearer_token = a->token,
                        .user_agent = "flamectl/" FLAMEDB_VERSION_STRING,
                        .connect_timeout_ms = a->timeout_ms,
                        .io_timeout_ms = a->timeout_ms ? a->timeout_ms : 600000};
    flamedb_client_t *c = NULL;
    char err[512];
    if (flamedb_client_new(url, &o, &c, err, sizeof err) != 0)
        fprintf(stderr, "flamectl: %s: %s\n", url, err);
    return c;
}

/* The old windows m's pass found held differently, a line each (reads of
 * their series depend on the replica read: docs/operations.md). */
static void print_inexact(const rp_sum_t *m, int wid)
{
    const char *p = (const char *)m->inexact.data, *end = p + m->inexact.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        printf("  %-*s      %.*s\n", wid, "", (int)n, p);
        p += n + 1;
    }
    if (m->ninexact > CS_MAX_ROWS)
        printf("  %-*s      (%zu more not listed)\n", wid, "", m->ninexact - CS_MAX_ROWS);
}

/* One node's pass: prints its line; *streamed gets its series streamed,
 * *handed the token ranges its window check hands to its regain (cleared
 * and streamed whole from a replica holding more), *filled the old windows
 * it copied from a replica that held them alone. Returns 0, or 1 when the
 * pass failed or was incomplete. */
static int repair_node(const args_t *a, const cs_row_t *w, int wid, long long *streamed,
                       long long *handed, long long *filled)
{
    *streamed = *handed = *filled = 0;
    flamedb_client_t *c = client_for(a, w->http);
    if (c == NULL) return 1;
    flamedb_response_t r;
    rp_sum_t m = {0};
    int rc = flamedb_post(c, "/cluster/repair", &r);
    if (rc != 0) {
        printf("  %-*s  failed: %s\n", wid, w->id, flamedb_errmsg(c));
        flamedb_client_free(c);
        return 1;
    }
    json_t rd;
    json_init(&rd, r.body, r.len, cs_json);
    buf_init(&m.inexact, (size_t)CS_MAX_ROWS * 8 * CS_FIELD);
    int bad = cs_each(&rd, 1, rp_item, &m) != 0;
    flamedb_response_free(&r);
    flamedb_client_free(c);
    if (bad) {
        printf("  %-*s  the answer is not the expected JSON\n", wid, w->id);
        buf_free(&m.inexact);
        return 1;
    }
    *streamed = atoll(m.streamed);
    *handed = atoll(m.wdiffer);
    *filled = atoll(m.wfilled);
    int complete = strcmp(m.complete, "true") == 0;
    printf("  %-*s  %s buckets %s (%s differ), missing %s, streamed %s series (%s bytes), "
           "unavailable %s, %s ms\n",
           wid, w->id, complete ? "complete  " : "incomplete", m.buckets, m.differing, m.missing,
           m.streamed, m.bytes, m.unavailable, m.ms);
    if (strcmp(m.wcheck, "true") == 0)
        printf("  %-*s    window check: %s range(s) compared, %s to stream whole from a replica "
               "holding more%s%s%s\n",
               wid, "", m.wranges, m.wdiffer, atoll(m.wmixed) > 0 ? ", " : "",
               atoll(m.wmixed) > 0 ? m.wmixed : "",
               atoll(m.wmixed) > 0 ? " where each replica holds windows the other lacks (left as "
                                     "they are)"
                                   : "");
    if (strcmp(m.wcheck, "true") == 0 && atoll(m.wfetched) > 0)
        printf("  %-*s    window check: %s old profile(s) another replica held fetched by id\n",
               wid, "", m.wfetched);
    if (strcmp(m.wcheck, "true") == 0 && atoll(m.wfilled) + atoll(m.winexact) > 0)
        printf("  %-*s    window check: %s old window(s) another replica held alone copied, "
               "%s held by both with different contents (left as they are)\n",
               wid, "", m.wfilled[0] ? m.wfilled : "0", m.winexact[0] ? m.winexact : "0");
    print_inexact(&m, wid);
    buf_free(&m.inexact);
    if (m.unreached[0]) printf("  %-*s    unreached: %s\n", wid, "", m.unreached);
    if (m.failed[0]) printf("  %-*s    failed: %s\n", wid, "", m.failed);
    return complete ? 0 : 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int wait_regained(const args_t *a, const cs_doc_t *d, const char *id);
static int wait_streams(const args_t *a, const cs_doc_t *d, const char *id, int ms);

/* Rounds of passes over every active node (skip: a node id left out) until
 * one round streams nothing, its window checks hand and copy nothing and
 * every pass is complete; after a round that handed ranges, it waits until
 * every node streamed them in, and after one whose only fault was an
 * incomplete pass, until no node streams ranges in (INCOMPLETE_WAIT_MS at
 * most) before the next. */
static int repair_rounds(const args_t *a, const cs_doc_t *d, const char *skip)
{
    double t0 = now_s();
    long long total = 0;
    int wid = cs_width(d, offsetof(cs_row_t, id), "ID");
    for (int round = 1; round <= REPAIR_ROUNDS; round++) {
        long long streamed = 0, handed = 0, filled = 0;
        int incomplete = 0;
        printf("round %d:\n", round);
        for (size_t i = 0; i < d->nrows; i++) {
            const cs_row_t *w = &d->rows[i];
            if ((skip && strcmp(w->id, skip) == 0) ||
                (strcmp(w->state, "active") != 0 && strcmp(w->state, "leaving") != 0)) {
                printf("  %-*s  skipped (%s)\n", wid, w->id, w->state);
                continue;
            }
            long long n = 0, h = 0, f = 0;
            incomplete += repair_node(a, w, wid, &n, &h, &f);
            streamed += n;
            handed += h;
            filled += f;
        }
        total += streamed;
        if (handed > 0 && wait_regained(a, d, skip ? skip : "") != 0) return EXIT_FAILURE;
        if (streamed == 0 && handed == 0 && filled == 0 && incomplete && round < REPAIR_ROUNDS) {
            printf("%d pass(es) incomplete: another round in a second, once no node streams "
                   "ranges in (%d s at most)\n",
                   incomplete, INCOMPLETE_WAIT_MS / 1000);
            fflush(stdout);
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
            wait_streams(a, d, skip ? skip : "", INCOMPLETE_WAIT_MS);
            continue;
        }
        if (streamed == 0 && handed == 0 && filled == 0) {
            printf("converged after %d round(s) in %.2f s: %lld series streamed%s\n", round,
                   now_s() - t0, total,
                   incomplete ? " (some passes incomplete: a replica was unreachable or failed)"
                              : "");
            return incomplete ? EXIT_FAILURE : 0;
        }
    }
    printf("not converged after %d rounds (%.2f s, %lld series streamed): writes keep "
           "arriving or a replica keeps failing\n",
           REPAIR_ROUNDS, now_s() - t0, total);
    return EXIT_FAILURE;
}

static int cmd_cluster_repair(flamedb_client_t *c, const args_t *a)
{
    flamedb_response_t r;
    cs_doc_t d;
    int rc = cs_load(c, &d, &r);
    if (rc == 0) rc = repair_rounds(a, &d, NULL);
    free(d.rows);
    flamedb_response_free(&r);
    return rc;
}

/* 1 once the node at url lists id as left (or not at all). */
static int sees_left(const args_t *a, const char *url, const char *id)
{
    flamedb_client_t *c = client_for(a, url);
    if (c == NULL) return 0;
    flamedb_response_t r;
    cs_doc_t d;
    int left = 0;
    if (cs_load(c, &d, &r) == 0) {
        left = 1;
        for (size_t i = 0; i < d.nrows; i++)
            if (strcmp(d.rows[i].id, id) == 0) left = strcmp(d.rows[i].state, "left") == 0;
    }
    free(d.rows);
    flamedb_response_free(&r);
    flamedb_client_free(c);
    return left;
}

/* Every active node sees id as left (gossip spread the removal), or the
 * wait ran out. */
static int wait_removed(const args_t *a, const cs_doc_t *d, const char *id)
{
    double t0 = now_s();
    while (now_s() - t0 < REMOVE_WAIT_MS / 1000.0) {
        int all = 1;
        for (size_t i = 0; all && i < d->nrows; i++)
            if (strcmp(d->rows[i].id, id) != 0 && strcmp(d->rows[i].state, "active") == 0)
                all = sees_left(a, d->rows[i].http, id);
        if (all) {
            printf("every active node sees %s as left after %.2f s\n", id, now_s() - t0);
            return 0;
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "flamectl: cluster remove: not every node saw the removal within %d s\n",
            REMOVE_WAIT_MS / 1000);
    return EXIT_FAILURE;
}

/* The token intervals the node at url still streams after a removal, or
 * -1 when it does not answer. */
static long regaining_at(const args_t *a, const char *url)
{
    flamedb_client_t *c = client_for(a, url);
    if (c == NULL) return -1;
    flamedb_response_t r;
    cs_doc_t d;
    long n = cs_load(c, &d, &r) == 0 ? atol(d.regaining) : -1;
    free(d.rows);
    flamedb_response_free(&r);
    flamedb_client_free(c);
    return n;
}

/* Waits until no active node but id streams in ranges it gained, or ms
 * passed: 0 when none does, 1 when time ran out. */
static int wait_streams(const args_t *a, const cs_doc_t *d, const char *id, int ms)
{
    double t0 = now_s();
    char last[64] = "";
    for (;;) {
        long nodes = 0, intervals = 0;
        for (size_t i = 0; i < d->nrows; i++) {
            if (strcmp(d->rows[i].id, id) == 0 || strcmp(d->rows[i].state, "active") != 0) continue;
            long n = regaining_at(a, d->rows[i].http);
            nodes += n != 0;
            intervals += n > 0 ? n : 0;
        }
        if (nodes == 0) {
            printf("every node streamed in the ranges it gained after %.2f s\n", now_s() - t0);
            return 0;
        }
        char now[64];
        snprintf(now, sizeof now, "%ld/%ld", nodes, intervals);
        if (strcmp(now, last) != 0) {
            printf("%8.2f s  %ld node(s) streaming in %ld token interval(s) they gained\n",
                   now_s() - t0, nodes, intervals);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", now);
        }
        if (now_s() - t0 >= ms / 1000.0) return 1;
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Every active node but id streamed in the ranges it regains (gained by
 * the removal of id, or handed by a window check; id "": none left out):
 * it serves reads of them only then. Or the wait ran out. */
static int wait_regained(const args_t *a, const cs_doc_t *d, const char *id)
{
    if (wait_streams(a, d, id, REGAIN_WAIT_MS) == 0) return 0;
    if (id[0] == 0)
        fprintf(stderr,
                "flamectl: cluster repair: the ranges the window checks handed over were not "
                "streamed in within %d s\n",
                REGAIN_WAIT_MS / 1000);
    else
        fprintf(stderr,
                "flamectl: cluster remove: the ranges of %s were not streamed in within %d s\n", id,
                REGAIN_WAIT_MS / 1000);
    return EXIT_FAILURE;
}

static int cmd_cluster_remove(flamedb_client_t *c, const args_t *a)
{
    if (a->node == NULL || a->node[0] == 0)
        return usage_error("%s", "cluster remove needs --node ID");
    char path[256];
    snprintf(path, sizeof path, "/cluster/remove?node=%s", a->node); /* ids are [A-Za-z0-9._-] */
    flamedb_response_t r;
    int rc = flamedb_post(c, path, &r);
    if (rc != 0) return request_failed(c, "cluster remove", rc);
    flamedb_response_free(&r);
    printf("removed %s from the ring\n", a->node);
    cs_doc_t d;
    rc = cs_load(c, &d, &r);
    if (rc == 0) rc = wait_removed(a, &d, a->node);
    if (rc == 0) rc = wait_regained(a, &d, a->node);
    if (rc == 0) rc = repair_rounds(a, &d, a->node);
    free(d.rows);
    flamedb_response_free(&r);
    return rc;
}

/* --- cluster decommission ---------------------------------------------------------- */

#define DECOMMISSION_WAIT_MS 3600000

typedef struct dc_state {
    char state[CS_FIELD], waiting[CS_FIELD];
} dc_state_t;

static int dc_item(json_t *r, void *ctx, const char *key)
{
    dc_state_t *m = ctx;
    char *dst = strcmp(key, "state") == 0            ? m->state
                : strcmp(key, "takers_waiting") == 0 ? m->waiting
                                                     : NULL;
    return dst ? cs_scalar(r, dst) : cs_skip(r);
}

/* Asks the node (again: the request is idempotent) and reads its state;
 * -1 when it does not answer (it stopped once it left). */
static int dc_ask(const args_t *a, const char *url, const char *id, dc_state_t *m)
{
    flamedb_client_t *c = client_for(a, url);
    if (c == NULL) return -1;
    char path[256];
    snprintf(path, sizeof path, "/cluster/decommission?node=%s", id); /* ids are [A-Za-z0-9._-] */
    flamedb_response_t r;
    int rc = flamedb_post(c, path, &r);
    if (rc != 0) {
        int gone = rc == FLAMEDB_ERR_UNAVAILABLE || rc == FLAMEDB_ERR_IO;
        if (!gone) fprintf(stderr, "flamectl: %s\n", flamedb_errmsg(c));
        flamedb_client_free(c);
        return gone ? -1 : -2;
    }
    json_t rd;
    json_init(&rd, r.body, r.len, cs_json);
    memset(m, 0, sizeof *m);
    rc = cs_each(&rd, 1, dc_item, m) != 0 ? -2 : 0;
    flamedb_response_free(&r);
    flamedb_client_free(c);
    return rc;
}

/* Polls the leaving node, printing each change of its progress, until it
 * stopped (it left) or the wait ran out. */
static int dc_wait(const args_t *a, const char *url, const char *id)
{
    double t0 = now_s();
    char last[2 * CS_FIELD + 2] = "";
    while (now_s() - t0 < DECOMMISSION_WAIT_MS / 1000.0) {
        dc_state_t m;
        int rc = dc_ask(a, url, id, &m);
        if (rc == -2) return EXIT_FAILURE;
        if (rc == -1 || strcmp(m.state, "left") == 0) {
            printf("%8.2f s  %s left and stopped\n", now_s() - t0, id);
            return 0;
        }
        char now[sizeof last];
        snprintf(now, sizeof now, "%s/%s", m.state, m.waiting);
        if (strcmp(now, last) != 0) {
            printf("%8.2f s  %s %s, %s node(s) taking over its ranges still streaming\n",
                   now_s() - t0, id, m.state, m.waiting);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", now);
        }
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "flamectl: cluster decommission: %s did not leave within %d s\n", id,
            DECOMMISSION_WAIT_MS / 1000);
    return EXIT_FAILURE;
}

/* The row of member id in d, or NULL (said on stderr, for command cmd). */
static const cs_row_t *cs_member(const cs_doc_t *d, const char *id, const char *cmd)
{
    for (size_t i = 0; i < d->nrows; i++)
        if (strcmp(d->rows[i].id, id) == 0) return &d->rows[i];
    fprintf(stderr, "flamectl: cluster %s: %s is not a member\n", cmd, id);
    return NULL;
}

/* The leaving node itself is asked (found in the status of --url); then
 * the wait, and every other active node must see it left. */
static int cmd_cluster_decommission(flamedb_client_t *c, const args_t *a)
{
    if (a->node == NULL || a->node[0] == 0)
        return usage_error("%s", "cluster decommission needs --node ID");
    flamedb_response_t r;
    cs_doc_t d;
    int rc = cs_load(c, &d, &r);
    const cs_row_t *t = rc == 0 ? cs_member(&d, a->node, "decommission") : NULL;
    if (rc == 0 && t == NULL) rc = EXIT_FAILURE;
    dc_state_t m;
    if (rc == 0 && dc_ask(a, t->http, a->node, &m) != 0) rc = EXIT_FAILURE;
    if (rc == 0) {
        printf("decommissioning %s (%s): it is %s; the nodes taking over its ranges pull them\n",
               a->node, t->http, m.state);
        rc = dc_wait(a, t->http, a->node);
    }
    if (rc == 0) rc = wait_removed(a, &d, a->node);
    free(d.rows);
    flamedb_response_free(&r);
    return rc;
}

/* --- cluster accept-copy ---------------------------------------------------------- */

/* The node whose copy is whole is asked itself (found in the status of
 * --url); it answers once its repair thread said nothing was cleared. */
static int cmd_cluster_accept_copy(flamedb_client_t *c, const args_t *a)
{
    if (a->node == NULL || a->node[0] == 0)
        return usage_error("%s", "cluster accept-copy needs --node ID");
    flamedb_response_t r;
    cs_doc_t d;
    int rc = cs_load(c, &d, &r);
    const cs_row_t *t = rc == 0 ? cs_member(&d, a->node, "accept-copy") : NULL;
    if (rc == 0 && t == NULL) rc = EXIT_FAILURE;
    flamedb_client_t *n = rc == 0 ? client_for(a, t->http) : NULL;
    if (rc == 0 && n == NULL) rc = EXIT_FAILURE;
    if (rc == 0) {
        char path[256];
        snprintf(path, sizeof path, "/cluster/accept-copy?node=%s", a->node); /* [A-Za-z0-9._-] */
        flamedb_response_t ar;
        int ask = flamedb_post(n, path, &ar);
        if (ask != 0) {
            rc = request_failed(n, "cluster accept-copy", ask);
        } else {
            flamedb_response_free(&ar);
            printf("%s (%s): its copy is accepted as whole; its full repair mark is lifted and "
                   "it serves reads and streams again\n",
                   a->node, t->http);
        }
    }
    flamedb_client_free(n);
    free(d.rows);
    flamedb_response_free(&r);
    return rc;
}

static int cmd_cluster(flamedb_client_t *c, const args_t *a)
{
    if (strcmp(a->pos[0], "status") == 0) return cmd_cluster_status(c, a);
    if (strcmp(a->pos[0], "repair") == 0) return cmd_cluster_repair(c, a);
    if (strcmp(a->pos[0], "remove") == 0) return cmd_cluster_remove(c, a);
    if (strcmp(a->pos[0], "decommission") == 0) return cmd_cluster_decommission(c, a);
    if (strcmp(a->pos[0], "accept-copy") == 0) return cmd_cluster_accept_copy(c, a);
    return usage_error("unknown cluster command '%s'", a->pos[0]);
}

static const command_t commands[] = {
    {"push", 1, 1, cmd_push,
     "push FILE --name 'APP{k=v,...}' [--format pprof|folded]\n"
     "          [--from T] [--until T] [--time T] [--sample-rate HZ] [--spy-name NAME]",
     "Sends one profile to POST /ingest. FILE is a pprof (gzipped or raw) or folded\n"
     "stacks ('a;b;c 12' lines), '-' reads stdin. Without --format, gzip or binary\n"
     "content is pprof and text is folded. Folded names carry the type as a suffix:\n"
     "'app.cpu{env=prod}'. --from/--until are unix seconds, now or now-N{s,m,h,d,w}\n"
     "(default: now; a pprof's own time_nanos, when set, is its time). --time T\n"
     "sets the profile's time over the pprof's time_nanos and --from (backfilling\n"
     "old profiles, a client with a wrong clock). A retry with the same --from,\n"
     "--until and --time counts once; without them every push is a new profile.\n"
     "An empty file or folded text without a stack line is refused here (exit 1):\n"
     "the node would answer 200 and store nothing."},
    {"query", 1, 1, cmd_query,
     "query 'TYPE{selector}' [--from T] [--until T]\n"
     "          [--output top|folded|json|pprof|svg|speedscope] [--limit N]\n"
     "          [--by self|total] [--search TEXT] [--max-nodes N] [--group-by LABEL]\n"
     "          [-o FILE]",
     "Reads the merged profile of a selection. TYPE is a profile type id such as\n"
     "process_cpu:cpu:nanoseconds:cpu:nanoseconds; the selector uses =, !=, =~ and\n"
     "!~. Times: unix seconds or ms, now, now-1h, or a date and time as\n"
     "'flamectl profiles' prints them, 2026-12-03 20:15:00 (UTC; also\n"
     "2026-12-03T21:15+01:00) (default now-1h .. now).\n"
     "--output top (default) prints the top functions from GET /api/top, exact from\n"
     "the whole profile: self (the function is the leaf) and total (it is on the\n"
     "stack; recursion counted once) with their percentages and, for CPU types,\n"
     "cores (CPU-seconds per second of the range; not for a span_id or trace_id\n"
     "selection, one request's times); --limit rows (default 20),\n"
     "--by self (default) or total; --search TEXT lists only the functions whose\n"
     "name contains TEXT (A-Z matching a-z), out of all of them. folded and json\n"
     "print the flame graph of GET /pyroscope/render (--max-nodes); pprof writes\n"
     "the gzipped profile to -o FILE or to stdout when it is not a terminal; svg\n"
     "(a flame graph image) and speedscope (a file for speedscope.app) go to -o\n"
     "FILE or stdout. --group-by LABEL (with --output json only) adds groups: one\n"
     "timeline per value of LABEL."},
    {"diff", 2, 2, cmd_diff,
     "diff 'TYPE{...}' 'TYPE{...}' [--from T] [--until T]\n"
     "          [--left-from T] [--left-until T] [--right-from T] [--right-until T]\n"
     "          [--limit N] [--search TEXT]",
     "Regression report (GET /api/diff) of the left selection against the right\n"
     "one: per function its inclusive share of each side (LEFT%, RIGHT%), the\n"
     "change in percentage points (largest first; --limit rows, default 20), and\n"
     "whether the change stands out of the variation between each side's time\n"
     "buckets (Welch's t per function, Holm-corrected at 0.01: SIG). --from and\n"
     "--until set both ranges; --left-*/--right-* set one side's. --search TEXT\n"
     "lists only the functions whose name contains TEXT (A-Z matching a-z), out\n"
     "of all of them."},
    {"shares", 2, 2, cmd_shares,
     "shares 'TYPE{selector}' LABEL [--from T] [--until T]\n"
     "          [--output table|json]",
     "Each value of LABEL with its total and share of the selection (GET\n"
     "/api/label-shares), largest first; series without the label show as (none).\n"
     "--output json prints the answer itself, with each value's timeline."},
    {"labels", 0, 1, cmd_labels, "labels [NAME] [--match '{selector}'] [--from T] [--until T]",
     "Without NAME lists the label names; with NAME lists its values\n"
     "(NAME __profile_type__ lists the profile types present). NAME span_id or\n"
     "trace_id lists the ids of the traced requests that have profiles, for the\n"
     "series --match selects (required) in the range: 16 hex digits each, as a\n"
     "span_id=\"...\" selector takes them."},
    {"ready", 0, 0, cmd_ready, "ready", "Exits 0 when the node answers GET /ready with 200."},
    {"cluster", 1, 1, cmd_cluster,
     "cluster status [--output table|json]\n"
     "  flamectl cluster repair\n"
     "  flamectl cluster remove --node ID\n"
     "  flamectl cluster decommission --node ID\n"
     "  flamectl cluster accept-copy --node ID",
     "status prints the cluster as the node sees it (GET /cluster/status): each\n"
     "member's id, state, tokens, how long ago its heartbeat was heard, HTTP and\n"
     "cluster addresses, whether it is in a full repair (FULL REPAIR: yes, no, '?'\n"
     "when it does not answer, '-' when down; asked of each live member, waiting\n"
     "--timeout or 5 s) and the nodes it holds hints for; '*' marks the node asked.\n"
     "repair runs an anti-entropy pass on every active node in turn (POST\n"
     "/cluster/repair), printing per node what it compared and streamed in, round\n"
     "after round until a round streams nothing (at most 5; a round with an\n"
     "incomplete pass is followed by another once no node streams ranges in, 5 s\n"
     "at most); exits 0 once converged with every pass complete, 1 otherwise (run\n"
     "it again). remove --node ID takes a\n"
     "node status shows as down (stop it first) out of the ring for good (POST\n"
     "/cluster/remove), waits until every active node sees it left, then repairs\n"
     "so its ranges have their replicas again. decommission --node ID\n"
     "asks a live node to leave (POST /cluster/decommission on that node): it turns\n"
     "leaving, the nodes taking over its ranges pull them, then it turns left and\n"
     "stops; flamectl prints its progress and exits 0 once every active node sees\n"
     "it left. accept-copy --node ID tells a node in a full repair that its copy is\n"
     "whole (POST /cluster/accept-copy on that node), for when every replica of a\n"
     "range is marked and none has evidence (docs/operations.md, section 6): its\n"
     "mark is lifted and it serves reads and streams again, unless its repair\n"
     "cleared an interval already (409: its copy is not whole; pick another node).\n"
     "Exits 0 once lifted. With auth on, every cluster command needs an admin token."},
    {"profiles", 1, 1, cmd_profiles,
     "profiles 'TYPE{selector}' [--from T] [--until T] [--limit N]\n"
     "          [--output table|json]",
     "Lists the stored profiles of a selection (GET /api/profiles), newest first:\n"
     "time, id, total and the series' labels; --limit rows (default 100, at most\n"
     "10000). 'flamectl profile ID' opens one."},
    {"profile", 1, 1, cmd_profile,
     "profile ID [--output folded|json|pprof|svg|speedscope]\n"
     "          [--max-nodes N] [-o FILE]",
     "Fetches one stored profile by the id 'flamectl profiles' lists (GET\n"
     "/api/profiles/ID): exactly that push's samples of that series. folded\n"
     "(default) and json print it; pprof writes the gzipped profile to -o FILE or\n"
     "to stdout when it is not a terminal (go tool pprof opens it); svg (a flame\n"
     "graph image) and speedscope (a file for speedscope.app) go to -o FILE or\n"
     "stdout. --max-nodes N truncates the tree to N nodes (json and svg are\n"
     "truncated to 8192 unless it is given)."},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* --- options and main ----------------------------------------------------------- */

enum {
    OPT_URL = 256,
    OPT_TENANT,
    OPT_TOKEN,
    OPT_TIMEOUT,
    OPT_NAME,
    OPT_FORMAT,
    OPT_FROM,
    OPT_UNTIL,
    OPT_OUTPUT,
    OPT_MAX_NODES,
    OPT_LIMIT,
    OPT_MATCH,
    OPT_SAMPLE_RATE,
    OPT_SPY_NAME,
    OPT_BY,
    OPT_SEARCH,
    OPT_LEFT_FROM,
    OPT_LEFT_UNTIL,
    OPT_RIGHT_FROM,
    OPT_RIGHT_UNTIL,
    OPT_GROUP_BY,
    OPT_NODE,
    OPT_TIME
};

static const struct option options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"tenant", required_argument, NULL, OPT_TENANT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"name", required_argument, NULL, OPT_NAME},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"from", required_argument, NULL, OPT_FROM},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"max-nodes", required_argument, NULL, OPT_MAX_NODES},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"match", required_argument, NULL, OPT_MATCH},
    {"sample-rate", required_argument, NULL, OPT_SAMPLE_RATE},
    {"spy-name", required_argument, NULL, OPT_SPY_NAME},
    {"by", required_argument, NULL, OPT_BY},
    {"search", required_argument, NULL, OPT_SEARCH},
    {"left-from", required_argument, NULL, OPT_LEFT_FROM},
    {"left-until", required_argument, NULL, OPT_LEFT_UNTIL},
    {"right-from", required_argument, NULL, OPT_RIGHT_FROM},
    {"right-until", required_argument, NULL, OPT_RIGHT_UNTIL},
    {"group-by", required_argument, NULL, OPT_GROUP_BY},
    {"node", required_argument, NULL, OPT_NODE},
    {"time", required_argument, NULL, OPT_TIME},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static void print_help(FILE *f)
{
    fprintf(f, "usage: flamectl [--url URL] [--tenant ID] [--token T] COMMAND [ARGS] [OPTIONS]"
               "\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  flamectl %s\n", commands[i].usage);
    fprintf(f,
            "\ncommon options:\n"
            "  --url URL       the node (default $FLAMEDB_URL or %s)\n"
            "  --tenant ID     tenant, sent as X-Scope-OrgID (default $FLAMEDB_TENANT)\n"
            "  --token TOKEN   bearer token (default $FLAMEDB_TOKEN)\n"
            "  --timeout MS    connect and I/O timeout in milliseconds (default: connect\n"
            "                  5000, I/O 30000; cluster repair, remove and decommission\n"
            "                  wait up to 600000 for each node's pass, cluster status\n"
            "                  5000 for each member)\n"
            "  -h, --help      this help; 'flamectl COMMAND --help' explains a command\n"
            "  --version       print flamectl's version\n"
            "\nexit status: 0 ok, 1 the request failed, 2 bad usage\n",
            FLAMEDB_DEFAULT_URL);
}

/* The usage lines of a command with more than one ("  flamectl cluster
 * repair") are aligned under the first one. */
static void print_command_help(const command_t *cmd)
{
    printf("usage: flamectl ");
    for (const char *p = cmd->usage; *p != '\0'; p++) {
        putchar(*p);
        if (*p == '\n' && strncmp(p + 1, "  flamectl ", 11) == 0) {
            printf("       flamectl ");
            p += 11;
        }
    }
    printf("\n\n%s\n", cmd->help);
}

static int parse_int(const char *s, const char *opt, int min, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > INT_MAX) {
        fprintf(stderr, "flamectl: %s: '%s' is not a number >= %d\n", opt, s, min);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int set_option(args_t *a, int opt, const char *v)
{
    switch (opt) {
    case OPT_URL:
        a->url = v;
        return 0;
    case OPT_TENANT:
        a->tenant = v;
        return 0;
    case OPT_TOKEN:
        a->token = v;
        return 0;
    case OPT_TIMEOUT:
        return parse_int(v, "--timeout", 1, &a->timeout_ms);
    case OPT_NAME:
        a->name = v;
        return 0;
    case OPT_FORMAT:
        a->format = v;
        return 0;
    case OPT_FROM:
        a->from = v;
        return 0;
    case OPT_TIME:
        a->time = v;
        return 0;
    case OPT_UNTIL:
        a->until = v;
        return 0;
    case OPT_OUTPUT:
        a->output = v;
        return 0;
    case 'o':
        a->outfile = v;
        return 0;
    case OPT_MAX_NODES:
        return parse_int(v, "--max-nodes", 1, &a->max_nodes);
    case OPT_LIMIT:
        return parse_int(v, "--limit", 1, &a->limit);
    case OPT_MATCH:
        a->match = v;
        return 0;
    case OPT_SAMPLE_RATE:
        return parse_int(v, "--sample-rate", 1, &a->sample_rate);
    case OPT_SPY_NAME:
        a->spy_name = v;
        return 0;
    case OPT_BY:
        a->by = v;
        return 0;
    case OPT_SEARCH:
        a->search = v;
        return 0;
    case OPT_LEFT_FROM:
        a->left_from = v;
        return 0;
    case OPT_LEFT_UNTIL:
        a->left_until = v;
        return 0;
    case OPT_RIGHT_FROM:
        a->right_from = v;
        return 0;
    case OPT_RIGHT_UNTIL:
        a->right_until = v;
        return 0;
    case OPT_GROUP_BY:
        a->group_by = v;
        return 0;
    case OPT_NODE:
        a->node = v;
        return 0;
    case 'h':
        a->help = 1;
        return 0;
    case 'V':
        a->version = 1;
        return 0;
    default:
        return -1; /* parse_args printed why */
    }
}

/* What getopt_long refused (opterr is off): the option as typed. */
static int option_error(int opt, char **argv)
{
    const char *typed = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':') return usage_error("%s needs a value", typed);
    if (strncmp(typed, "--", 2) != 0 && optopt > 0 && optopt < 128) {
        char shortopt[3] = {'-', (char)optopt, '\0'};
        return usage_error("unknown option '%s'", shortopt);
    }
    return usage_error("unknown option '%s'", typed);
}

/* Options may come anywhere; positionals are the command and its arguments. */
static int parse_args(int argc, char **argv, args_t *a, const char **cmd)
{
    memset(a, 0, sizeof *a);
    a->url = getenv("FLAMEDB_URL");
    a->tenant = getenv("FLAMEDB_TENANT");
    a->token = getenv("FLAMEDB_TOKEN");
    *cmd = NULL;
    int opt, idx = -1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", options, &idx)) != -1) {
        if (opt == '?' || opt == ':') {
            option_error(opt, argv);
            return -1;
        }
        if (set_option(a, opt, optarg) != 0) return -1;
        if (opt >= OPT_NAME && idx >= 0 && a->ngiven < (int)(sizeof a->given / sizeof a->given[0]))
            a->given[a->ngiven++] = options[idx].name;
        else if (opt == 'o' && a->ngiven < (int)(sizeof a->given / sizeof a->given[0]))
            a->given[a->ngiven++] = "o";
        idx = -1;
    }
    for (int i = optind; i < argc; i++) {
        if (*cmd == NULL)
            *cmd = argv[i];
        else if (a->npos < (int)(sizeof a->pos / sizeof a->pos[0]))
            a->pos[a->npos++] = argv[i];
        else {
            usage_error("too many arguments ('%s')", argv[i]);
            return -1;
        }
    }
    if (a->url == NULL || a->url[0] == '\0') a->url = FLAMEDB_DEFAULT_URL;
    return 0;
}

/* The usage line a command's options are checked against: for cluster, the
 * line of its subcommand ("cluster remove --node ID"); else all of it. */
static void usage_for(const command_t *cmd, const args_t *a, char *out, size_t cap)
{
    const char *u = cmd->usage, *line = NULL;
    char head[64];
    if (strcmp(cmd->name, "cluster") == 0 && a->npos > 0) {
        snprintf(head, sizeof head, "cluster %s", a->pos[0]);
        line = strstr(u, head);
    }
    if (line == NULL) {
        snprintf(out, cap, "%s", u);
        return;
    }
    size_t n = strcspn(line, "\n");
    snprintf(out, cap, "%.*s", (int)n, line);
}

/* An option the command does not take (labels --output json) is bad usage,
 * not ignored: the user would read the default output as what was asked. */
static int check_options(const command_t *cmd, const args_t *a)
{
    char usage[1024], opt[40];
    usage_for(cmd, a, usage, sizeof usage);
    for (int i = 0; i < a->ngiven; i++) {
        snprintf(opt, sizeof opt, "%s%s", strcmp(a->given[i], "o") == 0 ? "-" : "--", a->given[i]);
        const char *p = usage;
        size_t n = strlen(opt);
        while ((p = strstr(p, opt)) != NULL && p[n] != ' ' && p[n] != ']' && p[n] != '\0')
            p += n;
        if (p != NULL) continue;
        fprintf(stderr, "flamectl: %s%s%s takes no %s option\nusage: flamectl %s\n", cmd->name,
                a->npos > 0 && strcmp(cmd->name, "cluster") == 0 ? " " : "",
                strcmp(cmd->name, "cluster") == 0 && a->npos > 0 ? a->pos[0] : "", opt, usage);
        return EXIT_USAGE;
    }
    return 0;
}

static const command_t *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int run(const command_t *cmd, const args_t *a)
{
    flamedb_opts_t o = {.tenant = a->tenant,
                        .bearer_token = a->token,
                        .user_agent = "flamectl/" FLAMEDB_VERSION_STRING,
                        .connect_timeout_ms = a->timeout_ms,
                        .io_timeout_ms = a->timeout_ms};
    flamedb_client_t *c;
    char err[512];
    if (flamedb_client_new(a->url, &o, &c, err, sizeof err) != 0) {
        fprintf(stderr, "flamectl: %s\n", err);
        return EXIT_USAGE;
    }
    int status = cmd->run(c, a);
    flamedb_client_free(c);
    return status;
}

int main(int argc, char **argv)
{
    args_t a;
    const char *name;
    if (parse_args(argc, argv, &a, &name) != 0) return EXIT_USAGE;
    if (a.version) {
        printf("flamectl %s\n", FLAMEDB_VERSION_STRING);
        return 0;
    }
    if (name != NULL && strcmp(name, "help") == 0) {
        name = a.npos > 0 ? a.pos[0] : NULL;
        a.help = 1;
    }
    if (name == NULL) {
        print_help(a.help ? stdout : stderr);
        return a.help ? 0 : EXIT_USAGE;
    }
    const command_t *cmd = find_command(name);
    if (cmd == NULL) return usage_error("unknown command '%s'", name);
    if (a.help) {
        print_command_help(cmd);
        return 0;
    }
    if (a.npos < cmd->min_pos || a.npos > cmd->max_pos) {
        fprintf(stderr, "flamectl: wrong number of arguments\nusage: flamectl %s\n", cmd->usage);
        return EXIT_USAGE;
    }
    if (check_options(cmd, &a) != 0) return EXIT_USAGE;
    return run(cmd, &a);
}
