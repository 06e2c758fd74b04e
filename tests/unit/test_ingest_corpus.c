/* test_ingest_corpus.c — every profile of the shared corpus (MANIFEST.tsv)
 * either parses with per-sample-type totals exactly equal to MANIFEST's, or
 * is refused with a 4xx and a reason; legacy (non-protobuf) pprof and JFR
 * recordings must be refused. Then the captured requests of the real
 * @pyroscope/nodejs client parse. Skipped when the corpus is absent. */
#include <time.h>

#include "test_ingest_util.h"

static const char *dir;
static size_t n_ok, n_refused;
static size_t max_depth_seen;

static size_t tree_depth(const calltree_t *t)
{
    size_t n = calltree_node_count(t), max = 0;
    uint32_t *d = calloc(n ? n : 1, sizeof *d);
    for (uint32_t i = 1; i < n; i++) { /* parents precede children */
        d[i] = d[calltree_parent(t, i)] + 1;
        if (d[i] > max) max = d[i];
    }
    free(d);
    return max;
}

/* Sum over series whose __profile_type__ has sample type st and unit u. */
static int64_t total_of(const ingest_profile_t *p, const char *st, const char *u, size_t *nser)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    int64_t sum = 0;
    *nser = 0;
    char want[600];
    snprintf(want, sizeof want, ":%s:%s:", st, u);
    for (size_t i = 0; i < w->nseries; i++) {
        const char *t = labels_get(w->series[i].labels, LABEL_PROFILE_TYPE);
        const char *c = t ? strchr(t, ':') : NULL;
        if (c != NULL && strncmp(c, want, strlen(want)) == 0) {
            sum += calltree_root_total(w->series[i].tree);
            (*nser)++;
        }
        size_t d = tree_depth(w->series[i].tree);
        if (d > max_depth_seen) max_depth_seen = d;
    }
    return sum;
}

/* Checks "type/unit=total,..." against the parsed profile. */
static void check_totals(const char *file, const ingest_profile_t *p, char *totals)
{
    for (char *save, *tok = strtok_r(totals, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strrchr(tok, '='), *slash = strchr(tok, '/');
        if (eq == NULL || slash == NULL || slash > eq) {
            CHECK(0);
            continue;
        }
        *eq = *slash = 0;
        for (char *c = tok; *c; c++) /* sample types have '-' read as '_' (see ingest_pprof.c) */
            if (*c == '-') *c = '_';
        size_t nser;
        int64_t got = total_of(p, tok, slash + 1, &nser);
        int64_t want = strtoll(eq + 1, NULL, 10);
        if (got != want || nser == 0) {
            fprintf(stderr, "%s: %s/%s total %lld (in %zu series), MANIFEST %lld\n", file, tok,
                    slash + 1, (long long)got, nser, (long long)want);
            CHECK(0);
        }
    }
}

/* Payload bytes the budget is computed from: the gzip trailer's size of a
 * gzipped file (one member, as every corpus file), else the file's. */
static size_t payload_len(const uint8_t *b, size_t n)
{
    if (n < 18 || b[0] != 0x1f || b[1] != 0x8b) return n;
    return (size_t)b[n - 4] | (size_t)b[n - 3] << 8 | (size_t)b[n - 2] << 16 |
           (size_t)b[n - 1] << 24;
}

/* Real profiles must stay well inside the default per-push budget: nodes and
 * work at most half of it, memory (the push's peak) at most three quarters,
 * so the defaults leave room for profiles larger than these. */
static void check_budget(const char *file, const ingest_profile_t *p, const ingest_limits_t *lim,
                         size_t len)
{
    size_t nodes, work, peak = ingest_profile_peak_bytes(p);
    ingest_profile_cost(p, &nodes, &work);
    size_t mb = lim->request_memory_per_byte * len, wb = lim->request_work_per_byte * len;
    if (mb < INGEST_REQUEST_MEMORY_FLOOR) mb = INGEST_REQUEST_MEMORY_FLOOR;
    if (wb < INGEST_REQUEST_WORK_FLOOR) wb = INGEST_REQUEST_WORK_FLOOR;
    if (wb > lim->max_request_work) wb = lim->max_request_work;
    fprintf(stderr, "budget  %-80s %zu B: %zu nodes (%.2f/B) %zu work (%.2f/B) peak %.2f x\n", file,
            len, nodes, (double)nodes / (double)len, work, (double)work / (double)len,
            (double)peak / (double)len);
    CHECK(nodes <= lim->max_request_nodes / 2);
    CHECK(work <= wb / 2);
    CHECK(peak <= mb / 4 * 3);
}

/* One MANIFEST row: must_refuse for legacy and jfr rows. */
static void one_file(const char *file, char *totals, bool must_refuse, const char *format)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t n;
    uint8_t *b = test_read_file(path, &n);
    CHECK(b != NULL);
    if (b == NULL) return;
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_past_seconds = 100LL * 365 * 86400; /* corpus files carry old time_nanos */
    ingest_request_t r = test_req("corpus.cpu{src=manifest}", format, b, n);
    ingest_profile_t *p;
    errmsg_t em;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = test_parse(&r, &lim, &p, &em);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (rc != 0) {
        n_refused++;
        fprintf(stderr, "refused %-80s %d %s\n", file, err_http_status(rc), em.text);
        CHECK(err_http_status(rc) / 100 == 4);
        CHECK(em.text[0] != 0);
        CHECK(must_refuse); /* every real protobuf pprof of the corpus is admitted */
    } else {
        n_ok++;
        CHECK(!must_refuse);
        if (!must_refuse) check_totals(file, p, totals);
        check_budget(file, p, &lim, payload_len(b, n));
        fprintf(stderr, "ok      %-80s %zu series %.1f ms\n", file, test_nseries(p), ms);
        ingest_profile_free(p);
    }
    free(b);
}

static void test_manifest(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST.tsv", dir);
    size_t n;
    char *m = (char *)test_read_file(path, &n);
    CHECK(m != NULL);
    if (m == NULL) return;
    size_t rows = 0;
    char *save;
    strtok_r(m, "\n", &save); /* header */
    for (char *line; (line = strtok_r(NULL, "\n", &save)) != NULL;) {
        char *col[12] = {0};
        size_t k = 0;
        for (char *p = line; k < 12 && p != NULL; k++) {
            col[k] = p;
            p = strchr(p, '\t');
            if (p != NULL) *p++ = 0;
        }
        if (k < 8) continue;
        bool legacy = strncmp(col[0], "legacy-nonproto/", 16) == 0;
        bool jfr = strncmp(col[0], "jfr/", 4) == 0;
        one_file(col[0], col[7], legacy || jfr, "pprof");
        if (jfr) /* format=jfr is not supported: refused by name */
            one_file(col[0], col[7], true, "jfr");
        rows++;
    }
    fprintf(stderr, "MANIFEST: %zu rows, %zu parsed, %zu refused; deepest stack %zu frames\n", rows,
            n_ok, n_refused, max_depth_seen);
    CHECK(rows >= 89);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    CHECK(max_depth_seen <= lim.max_stack_depth);
    free(m);
}

/* ---- captured requests of @pyroscope/nodejs ---- */

/* The quoted strings of a JSON text between the keys `from` and `to`. */
static size_t strings_between(const char *json, const char *from, const char *to, char out[][2048],
                              size_t max)
{
    const char *p = strstr(json, from), *end = strstr(json, to);
    size_t k = 0;
    if (p == NULL || end == NULL) return 0;
    p += strlen(from);
    while (k < max && (p = strchr(p, '"')) != NULL && p < end) {
        size_t o = 0;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\') p++;
            if (o + 1 < 2048) out[k][o++] = *p;
        }
        out[k++][o] = 0;
        p++;
    }
    return k;
}

static const char *param(char kv[][2048], size_t n, const char *k)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        if (strcasecmp(kv[i], k) == 0) return kv[i + 1];
    return NULL;
}

static void one_capture(const char *client, int i)
{
    char path[4096];
    static char q[32][2048], h[32][2048];
    size_t n, bn;
    snprintf(path, sizeof path, "%s/ingest-captures/%s/%04d.json", dir, client, i);
    char *json = (char *)test_read_file(path, &n);
    snprintf(path, sizeof path, "%s/ingest-captures/%s/%04d.body", dir, client, i);
    uint8_t *body = test_read_file(path, &bn);
    CHECK(json != NULL && body != NULL);
    if (json == NULL || body == NULL) return;
    size_t nq = strings_between(json, "\"query\"", "\"headers\"", q, 32);
    size_t nh = strings_between(json, "\"headers\"", "\"body_size\"", h, 32);
    ingest_request_t r = test_req(param(q, nq, "name"), param(q, nq, "format"), body, bn);
    r.from = param(q, nq, "from");
    r.until = param(q, nq, "until");
    r.spy_name = param(q, nq, "spyName");
    r.sample_rate = param(q, nq, "sampleRate");
    r.content_type = param(h, nh, "content-type");
    r.now_ns = (strtoll(r.from, NULL, 10) + 5) * 1000000000LL;
    ingest_profile_t *p;
    errmsg_t em;
    int rc = test_parse(&r, NULL, &p, &em);
    if (rc != 0) fprintf(stderr, "%s/%04d: %s\n", client, i, em.text);
    CHECK_EQ_INT(rc, 0);
    if (p == NULL) goto out;
    CHECK(test_nseries(p) > 0);
    int64_t total = 0;
    for (size_t s = 0; s < test_nseries(p); s++) {
        CHECK_EQ_STR(test_label(p, s, "service_name"), "nodeprobe");
        CHECK_EQ_STR(test_label(p, s, "region"), "test-1");
        CHECK_EQ_STR(test_label(p, s, "pyroscope_spy"), "nodespy");
        total += ingest_profile_series_total(p, s);
    }
    fprintf(stderr, "capture %s/%04d: %s, %zu series, first %s\n", client, i,
            ingest_profile_format(p), test_nseries(p), test_label(p, 0, "__profile_type__"));
    /* the multipart part on its own gives the same trees */
    snprintf(path, sizeof path, "%s/ingest-captures/%s/%04d.part-profile", dir, client, i);
    size_t pn;
    uint8_t *part = test_read_file(path, &pn);
    if (part != NULL) {
        CHECK_EQ_STR(ingest_profile_format(p), "pprof");
        ingest_request_t r2 = r;
        r2.format = "pprof";
        r2.content_type = "application/octet-stream";
        r2.body = part;
        r2.body_len = pn;
        ingest_profile_t *p2;
        CHECK_EQ_INT(test_parse(&r2, NULL, &p2, &em), 0);
        int64_t total2 = 0;
        for (size_t s = 0; p2 && s < test_nseries(p2); s++)
            total2 += ingest_profile_series_total(p2, s);
        CHECK_EQ_INT(total2, total);
        ingest_profile_free(p2);
        free(part);
    }
    ingest_profile_free(p);
out:
    free(json);
    free(body);
}

int main(void)
{
    dir = testdata_path();
    if (dir == NULL) return check_exit();
    test_manifest();
    for (int i = 1; i <= 3; i++) {
        one_capture("nodejs-0.6.4", i);
        one_capture("nodejs-0.4.13", i);
    }
    return check_exit();
}
