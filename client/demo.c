/* demo.c — flamedb-demo, the demo traffic generator.
 *
 * Pushes the fake fleet's CPU and heap profiles (demo_gen.h) to a node with
 * libflamedb: optionally a backfill of past windows first, then live rounds
 * every --interval seconds (or a steady --rate of profiles per second for load
 * tests). With --out-dir it writes the profiles and a manifest of their exact
 * totals into a folder instead, for benchmarks and tests.
 *
 * Process-wide state: only the stop flag set by SIGINT/SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/demo_gen.h"
#include "client/flamedb.h"
#include "common/clock.h"

static volatile sig_atomic_t stop_requested;

typedef struct demo_opts {
    const char *url, *tenant, *out_dir;
    int64_t seed;
    long count;    /* stop after this many profiles; 0 = no limit */
    double rate;   /* live: profiles per second; 0 = rounds every interval */
    long interval; /* live: seconds between rounds */
    long backfill; /* seconds of history to push first */
    long backfill_step;
    int live;
    int64_t start, v2_at;
    int64_t slow_span_at; /* --slow-span: print that window's slow request and exit */
    int no_spans;
    int quiet;
} demo_opts_t;

typedef struct demo_run {
    const demo_opts_t *o;
    demo_params_t params;
    flamedb_client_t *client; /* NULL in --out-dir mode */
    FILE *manifest;
    long emitted, failed;
    uint64_t gz_bytes, raw_bytes;
} demo_run_t;

static void on_signal(int sig)
{
    stop_requested = sig;
}

static int64_t now_s(void)
{
    clock_source_t real = clock_real();
    return clock_wall_s(&real);
}

static double mono_s(void)
{
    clock_source_t real = clock_real();
    return (double)clock_mono_ns(&real) / 1e9;
}

/* Sleeps up to seconds, waking early when a stop was requested. */
static void sleep_s(double seconds)
{
    double until = mono_s() + seconds;
    while (!stop_requested) {
        double left = until - mono_s();
        if (left <= 0) return;
        if (left > 0.2) left = 0.2;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int limit_reached(const demo_run_t *r)
{
    return stop_requested || (r->o->count > 0 && r->emitted + r->failed >= r->o->count);
}

static int write_profile(demo_run_t *r, const demo_profile_t *p, size_t inst, demo_kind_t k)
{
    char path[4096], file[256];
    snprintf(file, sizeof file, "%06ld-%zu-%s-%" PRId64 ".pb.gz", r->emitted, inst,
             k == DEMO_CPU ? "cpu" : "heap", p->from);
    snprintf(path, sizeof path, "%s/%s", r->o->out_dir, file);
    FILE *f = fopen(path, "wb");
    int bad = f == NULL || fwrite(p->gz, 1, p->gz_len, f) != p->gz_len;
    if (f != NULL) bad |= fclose(f) != 0;
    if (bad) {
        fprintf(stderr, "flamedb-demo: write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(r->manifest, "%s\t%s\t%" PRId64 "\t%" PRId64 "\t%s\t%zu\t%zu\t%zu\t", file, p->name,
            p->from, p->until, k == DEMO_CPU ? "cpu" : "heap", p->nsamples, p->raw_len, p->gz_len);
    for (int t = 0; t < p->ntypes; t++)
        fprintf(r->manifest, "%s%s=%" PRId64, t ? "," : "", p->types[t], p->totals[t]);
    fputc('\n', r->manifest);
    return 0;
}

static int push_profile(demo_run_t *r, const demo_profile_t *p)
{
    flamedb_push_t req = {.name = p->name,
                          .format = FLAMEDB_PUSH_PPROF,
                          .from = p->from,
                          .until = p->until,
                          .spy_name = "flamedb-demo"};
    int rc = flamedb_push(r->client, &req, p->gz, p->gz_len);
    if (rc != 0 && rc != FLAMEDB_ERR_INVALID_ARGUMENT && rc != FLAMEDB_ERR_UNPARSEABLE)
        rc = flamedb_push(r->client, &req, p->gz, p->gz_len); /* idempotent: safe to retry */
    if (rc != 0)
        fprintf(stderr, "flamedb-demo: push %s at %" PRId64 ": %s\n", p->name, p->from,
                flamedb_errmsg(r->client));
    return rc;
}

static void emit(demo_run_t *r, size_t inst, demo_kind_t k, int64_t t, uint64_t variant)
{
    demo_profile_t p;
    errmsg_t em = {{0}};
    r->params.variant = variant;
    int rc = demo_generate(&r->params, inst, k, t, &p, &em);
    if (rc == ERR_OK)
        rc = r->client ? push_profile(r, &p) : write_profile(r, &p, inst, k);
    else
        fprintf(stderr, "flamedb-demo: %s\n", errmsg_text(&em, rc));
    if (rc == 0) {
        r->emitted++;
        r->gz_bytes += p.gz_len;
        r->raw_bytes += p.raw_len;
    } else {
        r->failed++;
    }
    demo_profile_free(&p);
}

/* One profile of each kind for every instance, all at time t. */
static void round_at(demo_run_t *r, int64_t t)
{
    size_t n;
    demo_fleet(&n);
    for (size_t i = 0; i < n; i++)
        for (int k = DEMO_CPU; k <= DEMO_HEAP; k++)
            if (!limit_reached(r)) emit(r, i, (demo_kind_t)k, t, 0);
}

static void backfill(demo_run_t *r)
{
    const demo_opts_t *o = r->o;
    int64_t first = o->start - o->backfill;
    if (!o->quiet)
        fprintf(stderr, "flamedb-demo: backfilling %ld s (one round every %ld s)...\n", o->backfill,
                o->backfill_step);
    for (int64_t t = first; t < o->start && !limit_reached(r); t += o->backfill_step)
        round_at(r, t - t % DEMO_PERIOD_S);
}

/* Live traffic: rounds every interval, or a steady rate of single profiles
 * (each one different, so none is dropped as a duplicate). */
static void live(demo_run_t *r)
{
    const demo_opts_t *o = r->o;
    size_t n;
    demo_fleet(&n);
    uint64_t seq = 0;
    double next = mono_s();
    while (!limit_reached(r)) {
        int64_t t = now_s() - now_s() % DEMO_PERIOD_S;
        if (o->rate > 0) {
            emit(r, (size_t)(seq / 2 % n), (demo_kind_t)(seq % 2), t, seq + 1);
            seq++;
            next += 1.0 / o->rate;
        } else {
            round_at(r, t);
            next += (double)o->interval;
            if (!o->quiet)
                fprintf(stderr, "flamedb-demo: %ld profiles pushed, %ld failed\n", r->emitted,
                        r->failed);
        }
        sleep_s(next - mono_s());
    }
}

/* Written files: consecutive rounds from --start, no waiting. */
static void write_rounds(demo_run_t *r)
{
    for (int64_t t = r->o->start; !limit_reached(r); t += DEMO_PERIOD_S)
        round_at(r, t);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flamedb-demo [OPTIONS]\n"
            "Generates CPU and heap profiles (gzipped pprof) of a fake fleet: services api,\n"
            "checkout and worker, labels env, region, pod and version; from --v2-at on the\n"
            "services run version v2, in which checkout's pricing.applyDiscounts is slower.\n"
            "Each api CPU profile carries four traced requests (sample labels span_id and\n"
            "trace_id), one of them slow: most of its time in GetProduct's database query.\n\n"
            "  --url URL          node to push to (default $FLAMEDB_URL or\n"
            "                     %s)\n"
            "  --tenant ID        X-Scope-OrgID of the pushes\n"
            "  --backfill SEC     first push SEC seconds of history (default 0)\n"
            "  --backfill-step S  seconds between backfilled rounds (default 30)\n"
            "  --no-live          exit after the backfill\n"
            "  --interval SEC     live: seconds between rounds (default 10)\n"
            "  --rate R           live: push R profiles per second instead of rounds\n"
            "  --count N          stop after N profiles (default: no limit)\n"
            "  --seed N           randomness seed (default 1); same seed, same profiles\n"
            "  --start TS         unix seconds where live/written rounds start (default now)\n"
            "  --v2-at TS         unix seconds when v2 rolls out (default: the middle of\n"
            "                     the backfill, or 5 minutes after start)\n"
            "  --out-dir DIR      write profiles and manifest.tsv into DIR, push nothing\n"
            "                     (needs --count or --backfill)\n"
            "  --slow-span TS     print the span_id, trace_id and ingest name of the slow\n"
            "                     request in the first api pod's CPU profile of the 10 s\n"
            "                     window holding TS (same --seed), then exit\n"
            "  --no-spans         attach no span_id/trace_id labels (same totals)\n"
            "  --quiet            no progress lines\n",
            FLAMEDB_DEFAULT_URL);
}

static int num(const char *s, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min) {
        fprintf(stderr, "flamedb-demo: '%s' is not a number >= %lld\n", s, min);
        return -1;
    }
    *out = v;
    return 0;
}

/* Numeric options: the flag's short code, its minimum, where it goes. */
static int set_number(demo_opts_t *o, int c, const char *arg)
{
    long long v;
    const struct {
        int c;
        long long min;
        long *l;
        int64_t *i;
    } nums[] = {{'b', 0, &o->backfill, NULL}, {'B', DEMO_PERIOD_S, &o->backfill_step, NULL},
                {'i', 1, &o->interval, NULL}, {'c', 1, &o->count, NULL},
                {'s', 0, NULL, &o->seed},     {'S', 1, NULL, &o->start},
                {'v', 0, NULL, &o->v2_at},    {'P', 1, NULL, &o->slow_span_at}};
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        if (nums[k].c != c) continue;
        if (num(arg, nums[k].min, &v) != 0) return -1;
        if (nums[k].l != NULL)
            *nums[k].l = (long)v;
        else
            *nums[k].i = v;
        return 0;
    }
    return -1; /* unknown option: getopt printed why */
}

static int set_opt(demo_opts_t *o, int c, const char *arg)
{
    char *end;
    switch (c) {
    case 'u':
        o->url = arg;
        return 0;
    case 'T':
        o->tenant = arg;
        return 0;
    case 'o':
        o->out_dir = arg;
        return 0;
    case 'L':
        o->live = 0;
        return 0;
    case 'q':
        o->quiet = 1;
        return 0;
    case 'N':
        o->no_spans = 1;
        return 0;
    case 'h':
        usage(stdout);
        exit(0);
    case 'r':
        o->rate = strtod(arg, &end);
        if (*end == '\0' && o->rate > 0) return 0;
        fprintf(stderr, "flamedb-demo: --rate '%s' is not a positive number\n", arg);
        return -1;
    default:
        return set_number(o, c, arg);
    }
}

static int parse_opts(int argc, char **argv, demo_opts_t *o)
{
    static const struct option opts[] = {{"url", 1, 0, 'u'},
                                         {"tenant", 1, 0, 'T'},
                                         {"backfill", 1, 0, 'b'},
                                         {"backfill-step", 1, 0, 'B'},
                                         {"no-live", 0, 0, 'L'},
                                         {"interval", 1, 0, 'i'},
                                         {"rate", 1, 0, 'r'},
                                         {"count", 1, 0, 'c'},
                                         {"seed", 1, 0, 's'},
                                         {"start", 1, 0, 'S'},
                                         {"v2-at", 1, 0, 'v'},
                                         {"out-dir", 1, 0, 'o'},
                                         {"quiet", 0, 0, 'q'},
                                         {"help", 0, 0, 'h'},
                                         {"slow-span", 1, 0, 'P'},
                                         {"no-spans", 0, 0, 'N'},
                                         {0, 0, 0, 0}};
    *o = (demo_opts_t){
        .url = getenv("FLAMEDB_URL"), .seed = 1, .interval = 10, .backfill_step = 30, .live = 1};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (set_opt(o, c, optarg) != 0) return -1;
    if (optind < argc) {
        fprintf(stderr, "flamedb-demo: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->out_dir != NULL && o->count == 0 && o->backfill == 0) {
        fprintf(stderr, "flamedb-demo: --out-dir needs --count or --backfill\n");
        return -1;
    }
    return 0;
}

static int open_sink(demo_run_t *r, const demo_opts_t *o)
{
    if (o->out_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/manifest.tsv", o->out_dir);
        r->manifest = fopen(path, "w");
        if (r->manifest == NULL) {
            fprintf(stderr, "flamedb-demo: cannot create %s: %s\n", path, strerror(errno));
            return -1;
        }
        fprintf(r->manifest,
                "file\tname\tfrom\tuntil\tkind\tsamples\traw_bytes\tgz_bytes\ttotals\n");
        return 0;
    }
    flamedb_opts_t co = {.tenant = o->tenant, .user_agent = "flamedb-demo"};
    char err[512];
    if (flamedb_client_new(o->url ? o->url : FLAMEDB_DEFAULT_URL, &co, &r->client, err,
                           sizeof err) != 0) {
        fprintf(stderr, "flamedb-demo: %s\n", err);
        return -1;
    }
    return 0;
}

/* --slow-span: the generator's own record of the slow request, so the ids
 * printed are the ids pushed for that window with the same seed. */
static int print_slow_span(const demo_opts_t *o)
{
    size_t n, api = 0;
    const demo_instance_t *fleet = demo_fleet(&n);
    while (api < n && fleet[api].service->requests == 0)
        api++;
    demo_params_t params = {.seed = (uint64_t)o->seed, .v2_at = o->v2_at};
    demo_profile_t p;
    errmsg_t em = {{0}};
    int rc = api < n ? demo_generate(&params, api, DEMO_CPU,
                                     o->slow_span_at - o->slow_span_at % DEMO_PERIOD_S, &p, &em)
                     : errmsg_set(&em, ERR_NOT_FOUND, "no service has traced requests");
    if (rc != ERR_OK) {
        fprintf(stderr, "flamedb-demo: %s\n", errmsg_text(&em, rc));
        return 1;
    }
    printf("%s %s %s\n", p.slow_span_id, p.slow_trace_id, p.name);
    demo_profile_free(&p);
    return 0;
}

int main(int argc, char **argv)
{
    demo_opts_t o;
    if (parse_opts(argc, argv, &o) != 0) return 2;
    if (o.start == 0) o.start = now_s() - now_s() % DEMO_PERIOD_S;
    if (o.v2_at == 0) o.v2_at = o.backfill > 0 ? o.start - o.backfill / 2 : o.start + 300;
    if (o.slow_span_at > 0) return print_slow_span(&o);
    demo_run_t r = {.o = &o,
                    .params = {.seed = (uint64_t)o.seed, .v2_at = o.v2_at, .no_spans = o.no_spans}};
    if (open_sink(&r, &o) != 0) return 2;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double t0 = mono_s();
    if (o.backfill > 0) backfill(&r);
    if (o.out_dir != NULL && o.backfill == 0)
        write_rounds(&r);
    else if (o.out_dir == NULL && o.live)
        live(&r);
    double dt = mono_s() - t0, rate = dt > 0 ? (double)r.emitted / dt : 0.0;
    /* live rounds are slow (14 profiles every 30 s in a 3-node demo): show
     * enough digits that a rate below one is not printed as 0 */
    int digits = rate >= 100 || rate == 0 ? 0 : rate >= 1 ? 1 : 2;
    fprintf(stderr,
            "flamedb-demo: %ld profiles %s (%.1f MB gzipped, %.1f MB raw) in %.1f s "
            "(%.*f/s), %ld failed\n",
            r.emitted, o.out_dir ? "written" : "pushed", (double)r.gz_bytes / 1e6,
            (double)r.raw_bytes / 1e6, dt, digits, rate, r.failed);
    if (r.manifest != NULL && fclose(r.manifest) != 0) r.failed++;
    flamedb_client_free(r.client);
    return r.failed > 0 ? 1 : 0;
}
