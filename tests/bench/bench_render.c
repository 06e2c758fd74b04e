/* bench_render.c — `flamedb-bench render`: GET /pyroscope/render timed by
 * the project's own client library (client/flamedb.h) over one keep-alive
 * connection to a running node.
 *
 *   flamedb-bench render --url http://127.0.0.1:PORT --query 'TYPE{sel}'
 *                        --from F --until U [--runs N] [--gap-ms MS]
 *
 * Each run is one flamedb_query() call: the request written, the whole
 * answer read into memory, as a client program gets it. With --gap-ms the
 * runs are that far apart (the node idle in between, its threads asleep, as
 * an interactive user's renders find it); back to back without. Prints the
 * median and least of the runs, the answer's bytes and its flamebearer numTicks
 * (read from the last answer's text), so a script can check the answer
 * while timing it. run.py times the node's render path with it: a Python
 * http.client reading the same 240 KB answer spends a tenth of a
 * millisecond or more of its own on it, which is the script's and not the
 * node's (both figures are printed there).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "client/flamedb.h"

/* Runs above which the median says no more, and the default. */
#define RENDER_MAX_RUNS 100000u
#define RENDER_DEFAULT_RUNS 100u
/* The longest pause between runs. */
#define RENDER_MAX_GAP_MS 10000u

/* The flamebearer's numTicks in a render's JSON, or -1 when absent. */
static long long num_ticks(const flamedb_response_t *r)
{
    const char *key = "\"numTicks\":";
    const char *at = r->body != NULL ? strstr((const char *)r->body, key) : NULL;
    return at != NULL ? strtoll(at + strlen(key), NULL, 10) : -1;
}

/* runs renders on c into t[] (seconds each), gap_ms apart; the last
 * answer in *last. */
static int time_renders(flamedb_client_t *c, const char *query, const char *from, const char *until,
                        size_t runs, uint64_t gap_ms, double *t, flamedb_response_t *last)
{
    for (size_t i = 0; i < runs; i++) {
        if (i > 0 && gap_ms > 0) pause_ms(gap_ms);
        flamedb_response_free(last);
        double t0 = clock_wall();
        int rc = flamedb_query(c, query, from, until, FLAMEDB_FORMAT_JSON, 0, last);
        t[i] = clock_wall() - t0;
        if (rc != 0) {
            fprintf(stderr, "render: %s\n", flamedb_errmsg(c));
            return rc;
        }
    }
    return 0;
}

int cmd_render(int argc, char **argv)
{
    const char *url = NULL, *query = NULL, *from = NULL, *until = NULL;
    uint64_t runs = RENDER_DEFAULT_RUNS, gap_ms = 0;
    for (int i = 0; i < argc; i++) {
        if (!flag_str(argc, argv, &i, "--url", &url) &&
            !flag_str(argc, argv, &i, "--query", &query) &&
            !flag_str(argc, argv, &i, "--from", &from) &&
            !flag_str(argc, argv, &i, "--until", &until) &&
            !flag_u64(argc, argv, &i, "--runs", &runs) &&
            !flag_u64(argc, argv, &i, "--gap-ms", &gap_ms)) {
            fprintf(stderr, "render: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (url == NULL || query == NULL || runs == 0 || runs > RENDER_MAX_RUNS ||
        gap_ms > RENDER_MAX_GAP_MS) {
        fprintf(stderr,
                "render: needs --url and --query; --runs from 1 to %u; --gap-ms at most %u\n",
                RENDER_MAX_RUNS, RENDER_MAX_GAP_MS);
        return 2;
    }
    char err[256];
    flamedb_client_t *c;
    if (flamedb_client_new(url, NULL, &c, err, sizeof err) != 0) {
        fprintf(stderr, "render: %s\n", err);
        return 1;
    }
    double *t = malloc(runs * sizeof *t);
    flamedb_response_t last = {0};
    int rc = t != NULL ? time_renders(c, query, from, until, runs, gap_ms, t, &last) : 1;
    if (t == NULL) fprintf(stderr, "render: out of memory\n");
    if (rc == 0) {
        qsort(t, runs, sizeof *t, cmp_double);
        printf("render_http_median_ms: %.3f\nrender_http_min_ms: %.3f\nrender_http_runs: %llu\n",
               t[runs / 2] * 1e3, t[0] * 1e3, (unsigned long long)runs);
        printf("render_http_bytes: %zu\nrender_http_numTicks: %lld\n", last.len, num_ticks(&last));
    }
    flamedb_response_free(&last);
    free(t);
    flamedb_client_free(c);
    return rc == 0 ? 0 : 1;
}
