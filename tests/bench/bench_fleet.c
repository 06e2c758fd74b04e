/* bench_fleet.c — `flamedb-bench fleet`: what a flame graph of one service
 * costs as its number of pods grows, against the flame graph of one pod.
 *
 * One generated service of --pods (largest of the list, default 1,000) pods,
 * each pushing a CPU profile every 10 s for --profiles windows (default 18:
 * three minutes), is ingested through the library path (ingest_parse +
 * storage_write_profile into a real RocksDB) in steps: the first 100 pods,
 * then up to 300, then up to 1,000. After each step the flame graph of the
 * whole service and of its first pod are rendered in process (query_render,
 * JSON flamebearer, default maxNodes) over the whole time range, several times
 * each; their median times are printed with the service ÷ pod ratio (target:
 * the service within 3x the pod at 1,000 pods) and the service's time at each
 * step ÷ at 100 pods (how the cost grows with the pods). numTicks is checked
 * against the generator's exact sums every time.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "common/err.h"
#include "node/ingest/ingest.h"
#include "query/query.h"
#include "storage/storage.h"

#define FLEET_MAX_STEPS 8
#define FLEET_TYPE "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

typedef struct fleet {
    storage_t *st;
    profile_set_t set;
    char from[32], until[32];
    char service[128], pod0[160];
    assist_t *assist; /* the renders' helper threads, as a node's (--assist-threads) */
} fleet_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The pod index of a generated name ("svc{pod=svc-abcd-17,...}" -> 17). */
static size_t pod_of(const char *name)
{
    const char *p = strstr(name, "pod=");
    const char *end = p ? strchr(p, ',') : NULL;
    if (end == NULL) return 0;
    const char *dash = end;
    while (dash > p && dash[-1] != '-')
        dash--;
    return (size_t)strtoull(dash, NULL, 10);
}

static int64_t cpu_total(const bench_profile_t *p)
{
    for (size_t t = 0; t < p->ntypes; t++)
        if (strcmp(p->types[t], "cpu/nanoseconds") == 0) return p->totals[t];
    return 0;
}

/* Ingests the profiles of pods [lo, hi). */
static int ingest_pods(fleet_t *f, size_t lo, size_t hi, size_t *count)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    for (size_t i = 0; i < f->set.n; i++) {
        const bench_profile_t *p = &f->set.p[i];
        size_t pod = pod_of(p->name);
        if (pod < lo || pod >= hi) continue;
        errmsg_t em = {{0}};
        int rc = bench_store_profile(f->st, p, &lim, wall_ms() * 1000000, &em);
        if (rc != 0) {
            fprintf(stderr, "fleet: ingest: %s\n", errmsg_text(&em, rc));
            return rc;
        }
        (*count)++;
    }
    return 0;
}

/* Median wall ms of repeated renders of query (at least 5, up to 2 s or 50);
 * -1 on an error or a numTicks other than expect. */
static double render_median(const fleet_t *f, const char *query, int64_t expect)
{
    query_params_t prm = {.query = query, .from = f->from, .until = f->until, .format = "json"};
    query_limits_t lim;
    query_limits_default(&lim);
    lim.assist = f->assist;
    double t[50], spent = 0;
    size_t n = 0;
    while (n < 50 && (n < 5 || spent < 2.0)) {
        query_result_t r;
        query_result_init(&r);
        errmsg_t em = {{0}};
        double w0 = clock_wall();
        int rc = query_render(f->st, "bench", &prm, &lim, wall_ms(), &r, &em);
        t[n] = clock_wall() - w0;
        const char *nt = rc == 0 ? strstr((const char *)r.body.data, "\"numTicks\":") : NULL;
        int64_t ticks = nt ? strtoll(nt + 11, NULL, 10) : -1;
        query_result_free(&r);
        if (rc != 0 || ticks != expect) {
            fprintf(stderr, "fleet: %s: %s (numTicks %lld, expected %lld)\n", query,
                    rc ? errmsg_text(&em, rc) : "inexact", (long long)ticks, (long long)expect);
            return -1;
        }
        spent += t[n++];
    }
    qsort(t, n, sizeof t[0], cmp_double);
    return t[n / 2] * 1e3;
}

/* Exact totals of the service and of pod 0 over pods [0, hi). */
static void expected(const fleet_t *f, size_t hi, int64_t *service, int64_t *pod0)
{
    *service = *pod0 = 0;
    for (size_t i = 0; i < f->set.n; i++) {
        size_t pod = pod_of(f->set.p[i].name);
        if (pod >= hi) continue;
        *service += cpu_total(&f->set.p[i]);
        if (pod == 0) *pod0 += cpu_total(&f->set.p[i]);
    }
}

static int parse_steps(const char *s, size_t *steps, size_t *n)
{
    *n = 0;
    for (const char *p = s; *p && *n < FLEET_MAX_STEPS;) {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || v == 0 || (*n > 0 && v <= steps[*n - 1])) return -1;
        steps[(*n)++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != 0) return -1;
    }
    return *n > 0 ? 0 : -1;
}

/* Generates the service, names and range; one pod's labels select pod 0. */
static int fleet_generate(fleet_t *f, size_t pods, uint64_t profiles, uint64_t seed)
{
    gen_options_t o;
    gen_options_default(&o, GEN_CPU);
    o.seed = seed;
    o.services = 1;
    o.pods = pods;
    o.profiles = profiles;
    /* a small pod (100 Hz x 6 s over a few hundred call paths), so 1,000 of
     * them generate and ingest in about a minute */
    o.samples = 600;
    o.funcs = 400;
    o.paths = 300;
    int64_t now = (int64_t)time(NULL);
    o.start_s = (now - (int64_t)profiles * o.step_s - 60) / 10 * 10;
    double w0 = clock_wall();
    int rc = gen_fleet(&o, &f->set);
    if (rc != 0 || f->set.n == 0) return rc ? rc : ERR_INTERNAL;
    printf("fleet_generated: %zu profiles, %zu gzipped bytes, %.1f s\n", f->set.n,
           profile_set_gz_bytes(&f->set), clock_wall() - w0);
    const char *name = f->set.p[0].name;
    snprintf(f->service, sizeof f->service, "%.*s", (int)strcspn(name, "{"), name);
    for (size_t i = 0; i < f->set.n; i++)
        if (pod_of(f->set.p[i].name) == 0) {
            const char *p = strstr(f->set.p[i].name, "pod=") + 4;
            snprintf(f->pod0, sizeof f->pod0, "%.*s", (int)strcspn(p, ",}"), p);
            break;
        }
    snprintf(f->from, sizeof f->from, "%lld", (long long)o.start_s);
    snprintf(f->until, sizeof f->until, "%lld",
             (long long)(o.start_s + (int64_t)profiles * o.step_s + 10));
    return 0;
}

static int run_steps(fleet_t *f, const size_t *steps, size_t nsteps)
{
    char qsvc[512], qpod[512];
    snprintf(qsvc, sizeof qsvc, "%s{service_name=\"%s\"}", FLEET_TYPE, f->service);
    snprintf(qpod, sizeof qpod, "%s{service_name=\"%s\",pod=\"%s\"}", FLEET_TYPE, f->service,
             f->pod0);
    double first_service = 0;
    size_t done = 0, count = 0;
    for (size_t k = 0; k < nsteps; k++) {
        double w0 = clock_wall();
        if (ingest_pods(f, done, steps[k], &count) != 0) return 1;
        printf("fleet_pods_%zu_ingest: %zu profiles in all, step %.1f s\n", steps[k], count,
               clock_wall() - w0);
        done = steps[k];
        int64_t want_svc, want_pod;
        expected(f, done, &want_svc, &want_pod);
        double svc = render_median(f, qsvc, want_svc), pod = render_median(f, qpod, want_pod);
        if (svc < 0 || pod < 0) return 1;
        if (k == 0) first_service = svc;
        printf("fleet_pods_%zu_service_ms: %.2f\nfleet_pods_%zu_pod_ms: %.2f\n", done, svc, done,
               pod);
        printf("RATIO fleet_pods_%zu_service_over_pod: %.2f (target <= 3 at 1000 pods)\n", done,
               svc / pod);
        printf("RATIO fleet_pods_%zu_service_over_first_step: %.2f (pods x%.1f)\n", done,
               svc / first_service, (double)done / (double)steps[0]);
    }
    return 0;
}

int cmd_fleet(int argc, char **argv)
{
    const char *pods = "100,300,1000";
    uint64_t profiles = 18, seed = 5, anchors = 0;
    uint64_t assists = 1; /* --assist-threads, as a node's query-assist-threads */
    for (int i = 0; i < argc; i++) {
        if (flag_str(argc, argv, &i, "--pods", &pods) ||
            flag_u64(argc, argv, &i, "--assist-threads", &assists) ||
            flag_u64(argc, argv, &i, "--aggregate-anchors", &anchors) ||
            flag_u64(argc, argv, &i, "--profiles", &profiles) ||
            flag_u64(argc, argv, &i, "--seed", &seed))
            continue;
        fprintf(stderr, "fleet: unknown flag %s\n", argv[i]);
        return 2;
    }
    size_t steps[FLEET_MAX_STEPS], nsteps;
    if (parse_steps(pods, steps, &nsteps) != 0 || profiles == 0) {
        fprintf(stderr, "fleet: --pods wants ascending counts like 100,300,1000\n");
        return 2;
    }
    fleet_t f = {0};
    if (assist_new((int)(assists < ASSIST_MAX_THREADS ? assists : ASSIST_MAX_THREADS), &f.assist) !=
        0) {
        fprintf(stderr, "fleet: cannot start --assist-threads\n");
        return 1;
    }
    printf("fleet_assist_threads: %llu\n", (unsigned long long)assists);
    char *dir = make_temp_dir("fleet");
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    if (anchors > 0) o.aggregate_anchors = anchors > UINT32_MAX ? UINT32_MAX : (uint32_t)anchors;
    errmsg_t em = {{0}};
    int rc = 1;
    if (dir != NULL && fleet_generate(&f, steps[nsteps - 1], profiles, seed) == 0 &&
        storage_open(&o, &f.st, &em) == 0)
        rc = run_steps(&f, steps, nsteps);
    else if (em.text[0])
        fprintf(stderr, "fleet: %s\n", em.text);
    storage_close(f.st);
    if (dir) rm_rf(dir);
    free(dir);
    profile_set_free(&f.set);
    assist_free(f.assist);
    return rc;
}
