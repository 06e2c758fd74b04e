/* test_client_demo.c — the demo traffic generator's profiles are valid pprof
 * with the totals its manifest promises.
 *
 * Runs the real build/bin/flamedb-demo in --out-dir mode, then gunzips every
 * file with libdeflate, decodes it with protobuf-c, checks the pprof
 * invariants (string_table[0] == "", ids resolve, one value per sample type)
 * and recomputes each sample type's total. Also: the same seed gives the same
 * bytes, and the v2 rollout shows up in labels and stacks. Traced requests:
 * every api CPU profile has four span_id/trace_id-labelled requests whose
 * stacks sum, stack by stack, to the same profile generated with --no-spans;
 * the request --slow-span names is the largest and sits on its slow path.
 */
#include "check.h"

#include <libdeflate.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>

#include "common/proto/pprof.pb-c.h"

#define START 1700000000
#define V2_AT 1700000020
#define COUNT 42 /* 3 rounds of 7 instances x (cpu, heap) */

static char demo_bin[PATH_MAX];

static int find_demo(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    snprintf(demo_bin, sizeof demo_bin, "%s/../bin/flamedb-demo", dirname(self));
    return access(demo_bin, X_OK);
}

static int run_demo(const char *dir, int seed, const char *extra)
{
    char cmd[PATH_MAX * 2 + 200];
    snprintf(
        cmd, sizeof cmd,
        "'%s' --out-dir '%s' --count %d --start %d --v2-at %d --seed %d %s --quiet 2>/dev/null",
        demo_bin, dir, COUNT, START, V2_AT, seed, extra);
    return system(cmd);
}

/* flamedb-demo --slow-span TS: "SPAN TRACE NAME" of the first api pod. */
static int slow_span(int64_t ts, char span[64], char trace[64], char name[256])
{
    char cmd[PATH_MAX + 200];
    snprintf(cmd, sizeof cmd, "'%s' --slow-span %" PRId64 " --v2-at %d --seed 7", demo_bin, ts,
             V2_AT);
    FILE *f = popen(cmd, "r");
    if (f == NULL) return -1;
    int n = fscanf(f, "%63s %63s %255s", span, trace, name);
    int rc = pclose(f);
    return n == 3 && rc == 0 ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p != NULL && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static Perftools__Profiles__Profile *decode(const char *path, size_t raw_len)
{
    size_t gz_len, out_len = 0;
    uint8_t *gz = read_file(path, &gz_len);
    uint8_t *raw = malloc(raw_len + 1);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    Perftools__Profiles__Profile *p = NULL;
    CHECK(gz != NULL && gz_len > 2 && gz[0] == 0x1f && gz[1] == 0x8b);
    if (gz != NULL && libdeflate_gzip_decompress(d, gz, gz_len, raw, raw_len + 1, &out_len) ==
                          LIBDEFLATE_SUCCESS) {
        CHECK_EQ_INT(out_len, raw_len);
        p = perftools__profiles__profile__unpack(NULL, out_len, raw);
    }
    libdeflate_free_decompressor(d);
    free(gz);
    free(raw);
    return p;
}

static const char *str(const Perftools__Profiles__Profile *p, int64_t i)
{
    static char s[512];
    if (i < 0 || (size_t)i >= p->n_string_table) return NULL;
    snprintf(s, sizeof s, "%.*s", (int)p->string_table[i].len, p->string_table[i].data);
    return s;
}

/* Structural invariants; returns 1 when a function named fn occurs. */
static int check_structure(const Perftools__Profiles__Profile *p, const char *fn)
{
    int found = 0;
    CHECK(p->n_string_table > 0 && p->string_table[0].len == 0);
    for (size_t i = 0; i < p->n_function; i++) {
        CHECK_EQ_INT(p->function[i]->id, i + 1);
        CHECK(str(p, p->function[i]->filename) != NULL);
        const char *name = str(p, p->function[i]->name);
        CHECK(name != NULL && name[0] != '\0');
        if (name != NULL && strcmp(name, fn) == 0) found = 1;
    }
    for (size_t i = 0; i < p->n_location; i++) {
        const Perftools__Profiles__Location *l = p->location[i];
        CHECK(l->id == i + 1 && l->n_line == 1);
        if (l->n_line == 1)
            CHECK(l->line[0]->function_id >= 1 && l->line[0]->function_id <= p->n_function);
    }
    for (size_t i = 0; i < p->n_sample; i++) {
        const Perftools__Profiles__Sample *s = p->sample[i];
        CHECK_EQ_INT(s->n_value, p->n_sample_type);
        CHECK(s->n_location_id > 0);
        for (size_t j = 0; j < s->n_location_id; j++)
            CHECK(s->location_id[j] >= 1 && s->location_id[j] <= p->n_location);
    }
    return found;
}

/* "samples/count=12,cpu/nanoseconds=120" against the decoded values. */
static void check_totals(const Perftools__Profiles__Profile *p, char *totals)
{
    size_t t = 0;
    for (char *tok = strtok(totals, ","); tok != NULL; tok = strtok(NULL, ","), t++) {
        char *eq = strchr(tok, '=');
        CHECK(eq != NULL && t < p->n_sample_type);
        if (eq == NULL || t >= p->n_sample_type) return;
        *eq = '\0';
        char type[2 * 512]; /* str() returns at most 511 bytes */
        snprintf(type, sizeof type, "%s/", str(p, p->sample_type[t]->type));
        strncat(type, str(p, p->sample_type[t]->unit), sizeof type - strlen(type) - 1);
        CHECK_EQ_STR(type, tok);
        int64_t sum = 0;
        for (size_t i = 0; i < p->n_sample; i++)
            sum += p->sample[i]->value[t];
        CHECK_EQ_INT(sum, strtoll(eq + 1, NULL, 10));
        CHECK(sum > 0);
    }
    CHECK_EQ_INT(t, p->n_sample_type);
}

/* One manifest line: decode its file and check it. */
static void check_line(const char *dir, char *line, int *saw_v2_regression)
{
    char *f[9];
    int n = 0;
    for (char *tok = strtok(line, "\t\n"); tok != NULL && n < 9; tok = strtok(NULL, "\t\n"))
        f[n++] = tok;
    CHECK_EQ_INT(n, 9);
    if (n != 9) return;
    char path[PATH_MAX], totals[512];
    snprintf(path, sizeof path, "%s/%s", dir, f[0]);
    snprintf(totals, sizeof totals, "%s", f[8]);
    int64_t from = strtoll(f[2], NULL, 10);
    int cpu = strcmp(f[4], "cpu") == 0;
    Perftools__Profiles__Profile *p = decode(path, (size_t)strtoull(f[6], NULL, 10));
    CHECK(p != NULL);
    if (p == NULL) return;
    CHECK_EQ_INT(p->time_nanos, from * 1000000000LL);
    CHECK_EQ_INT(p->duration_nanos, 10000000000LL);
    CHECK_EQ_INT(p->n_sample_type, cpu ? 2 : 4);
    CHECK_EQ_INT(p->n_sample, strtoll(f[5], NULL, 10));
    CHECK(p->period_type != NULL && p->period > 0);
    int regression = check_structure(p, "regexp.MustCompile");
    if (regression) CHECK(from >= V2_AT);
    *saw_v2_regression |= regression;
    CHECK(strstr(f[1], from >= V2_AT ? "version=v2}" : "version=v1}") != NULL);
    if (cpu && p->n_sample_type == 2) /* cpu time = samples x period */
        for (size_t i = 0; i < p->n_sample; i++)
            CHECK_EQ_INT(p->sample[i]->value[1], p->sample[i]->value[0] * p->period);
    check_totals(p, totals);
    perftools__profiles__profile__free_unpacked(p, NULL);
}

/* ---- traced requests ---- */

#define MAX_KEYS 512
#define SLOW_PATH "github.com/acme/api/store.(*DB).Product"

typedef struct sums {
    char key[MAX_KEYS][1024]; /* a stack ("f;g;h", leaf first) or a span id */
    int64_t v[MAX_KEYS];
    char other[MAX_KEYS][64]; /* span sums: the trace id seen with it */
    size_t n;
} sums_t;

static size_t sums_find(const sums_t *s, const char *key)
{
    size_t i = 0;
    while (i < s->n && strcmp(s->key[i], key) != 0)
        i++;
    return i; /* s->n: absent */
}

static size_t sums_add(sums_t *s, const char *key, int64_t v)
{
    size_t i = sums_find(s, key);
    if (i == s->n && s->n < MAX_KEYS) snprintf(s->key[s->n++], sizeof s->key[0], "%s", key);
    CHECK(i < MAX_KEYS);
    if (i < MAX_KEYS) s->v[i] += v;
    return i < MAX_KEYS ? i : 0;
}

/* The function names of sample i, leaf first, joined by ';'. */
static void stack_of(const Perftools__Profiles__Profile *p, size_t i, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    const Perftools__Profiles__Sample *s = p->sample[i];
    for (size_t d = 0; d < s->n_location_id; d++) {
        uint64_t id = s->location_id[d];
        const Perftools__Profiles__Location *l =
            id >= 1 && id <= p->n_location ? p->location[id - 1] : NULL;
        uint64_t fn = l != NULL && l->n_line == 1 ? l->line[0]->function_id : 0;
        const char *name =
            fn >= 1 && fn <= p->n_function ? str(p, p->function[fn - 1]->name) : NULL;
        len += (size_t)snprintf(out + len, cap - len, "%s;", name ? name : "?");
        if (len >= cap) return;
    }
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Sample i's span_id and trace_id labels ("" when absent); returns the
 * number of labels the sample has. */
static size_t span_labels(const Perftools__Profiles__Profile *p, size_t i, char span[64],
                          char trace[64])
{
    span[0] = trace[0] = '\0';
    const Perftools__Profiles__Sample *s = p->sample[i];
    for (size_t l = 0; l < s->n_label; l++) {
        char key[64];
        const char *k = str(p, s->label[l]->key);
        snprintf(key, sizeof key, "%.63s", k ? k : "");
        const char *v = str(p, s->label[l]->str);
        CHECK(v != NULL && s->label[l]->num == 0);
        if (strcmp(key, "span_id") == 0) snprintf(span, 64, "%.63s", v ? v : "");
        if (strcmp(key, "trace_id") == 0) snprintf(trace, 64, "%.63s", v ? v : "");
    }
    return s->n_label;
}

/* p (with spans) against q (the same profile with --no-spans): labels are
 * well formed, each stack sums to the same values, and the slowest request
 * (want_slow when not NULL) has most of its samples on the slow path. */
static void check_spans(const Perftools__Profiles__Profile *p,
                        const Perftools__Profiles__Profile *q, const char *want_slow,
                        const char *want_trace)
{
    static sums_t with, without, spans;
    static int64_t slow_path[MAX_KEYS];
    memset(&with, 0, sizeof with);
    memset(&without, 0, sizeof without);
    memset(&spans, 0, sizeof spans);
    memset(slow_path, 0, sizeof slow_path);
    char stack[1024], span[64], trace[64];
    int64_t total = 0, labelled = 0;
    for (size_t i = 0; i < q->n_sample; i++) {
        stack_of(q, i, stack, sizeof stack);
        sums_add(&without, stack, q->sample[i]->value[0]);
        CHECK_EQ_INT(span_labels(q, i, span, trace), 0);
    }
    for (size_t i = 0; i < p->n_sample; i++) {
        int64_t v = p->sample[i]->value[0];
        stack_of(p, i, stack, sizeof stack);
        sums_add(&with, stack, v);
        total += v;
        if (span_labels(p, i, span, trace) == 0) continue;
        CHECK(is_hex(span, 16) && is_hex(trace, 32));
        size_t k = sums_add(&spans, span, v);
        if (spans.other[k][0] == '\0') snprintf(spans.other[k], 64, "%s", trace);
        CHECK_EQ_STR(spans.other[k], trace); /* one trace per span */
        slow_path[k] += strstr(stack, SLOW_PATH ";") != NULL ? v : 0;
        labelled += v;
    }
    CHECK_EQ_INT(with.n, without.n); /* the same stacks, each with the same sum */
    for (size_t i = 0; i < with.n; i++) {
        size_t j = sums_find(&without, with.key[i]);
        CHECK(j < without.n);
        if (j < without.n) CHECK_EQ_INT(with.v[i], without.v[j]);
    }
    CHECK_EQ_INT(spans.n, 4);
    CHECK(labelled > 0 && labelled < total);
    size_t slow = 0;
    for (size_t k = 1; k < spans.n; k++)
        if (spans.v[k] > spans.v[slow]) slow = k;
    for (size_t k = 0; k < spans.n; k++) /* the slow request stands out */
        CHECK(k == slow || spans.v[slow] > 5 * spans.v[k]);
    CHECK(slow_path[slow] * 10 >= spans.v[slow] * 9); /* >= 90 % on the slow path */
    if (want_slow != NULL) {
        CHECK_EQ_STR(spans.key[slow], want_slow);
        CHECK_EQ_STR(spans.other[slow], want_trace);
    }
}

/* Splits a manifest line (a copy) into its 9 fields. */
static int fields(const char *line, char *buf, size_t cap, char *f[9])
{
    int n = 0;
    snprintf(buf, cap, "%s", line);
    for (char *tok = strtok(buf, "\t\n"); tok != NULL && n < 9; tok = strtok(NULL, "\t\n"))
        f[n++] = tok;
    return n;
}

/* An api CPU profile of d1 against the same one of d4 (--no-spans); the
 * first pod's profiles against what --slow-span prints for their window.
 * Returns 1 when the line was an api CPU profile. */
static int check_requests(const char *d1, const char *line1, const char *d4, const char *line4)
{
    char b1[4096], b4[4096], path[PATH_MAX], span[64], trace[64], name[256];
    char *f1[9], *f4[9];
    if (fields(line1, b1, sizeof b1, f1) != 9 || fields(line4, b4, sizeof b4, f4) != 9) return 0;
    CHECK_EQ_STR(f1[0], f4[0]);
    CHECK_EQ_STR(f1[8], f4[8]); /* the same totals */
    if (strncmp(f1[1], "api{", 4) != 0 || strcmp(f1[4], "cpu") != 0) return 0;
    snprintf(path, sizeof path, "%s/%s", d1, f1[0]);
    Perftools__Profiles__Profile *p = decode(path, (size_t)strtoull(f1[6], NULL, 10));
    snprintf(path, sizeof path, "%s/%s", d4, f4[0]);
    Perftools__Profiles__Profile *q = decode(path, (size_t)strtoull(f4[6], NULL, 10));
    CHECK(p != NULL && q != NULL);
    int64_t from = strtoll(f1[2], NULL, 10);
    int first_pod = strstr(f1[0], "-0-cpu-") != NULL;
    int advertised = first_pod && slow_span(from + 5, span, trace, name) == 0;
    CHECK(!first_pod || advertised);
    if (advertised) CHECK_EQ_STR(name, f1[1]);
    if (p != NULL && q != NULL) check_spans(p, q, advertised ? span : NULL, trace);
    if (p != NULL) perftools__profiles__profile__free_unpacked(p, NULL);
    if (q != NULL) perftools__profiles__profile__free_unpacked(q, NULL);
    return 1;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *pa = read_file(a, &la), *pb = read_file(b, &lb);
    int same = pa && pb && la == lb && memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

/* flamedb-demo --help: every line fits an 80-column terminal. */
static void check_help(void)
{
    char cmd[PATH_MAX + 32], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' --help", demo_bin);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    int lines = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\n");
        if (n > 80) fprintf(stderr, "flamedb-demo --help: %zu columns: %s", n, line);
        CHECK(n <= 80);
        lines++;
    }
    CHECK(f != NULL && pclose(f) == 0);
    CHECK(lines > 10);
}

int main(void)
{
    if (find_demo() != 0) {
        fprintf(stderr, "flamedb-demo not built next to the tests (%s)\n", demo_bin);
        return 1;
    }
    check_help();
    char d1[] = "/tmp/flamedb-demo-test-XXXXXX", d2[] = "/tmp/flamedb-demo-test-XXXXXX";
    char d3[] = "/tmp/flamedb-demo-test-XXXXXX", d4[] = "/tmp/flamedb-demo-test-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3) && mkdtemp(d4));
    CHECK_EQ_INT(run_demo(d1, 7, ""), 0);
    CHECK_EQ_INT(run_demo(d2, 7, ""), 0);
    CHECK_EQ_INT(run_demo(d3, 8, ""), 0);
    CHECK_EQ_INT(run_demo(d4, 7, "--no-spans"), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/manifest.tsv", d1);
    FILE *m = fopen(path, "r");
    snprintf(path, sizeof path, "%s/manifest.tsv", d4);
    FILE *m4 = fopen(path, "r");
    CHECK(m != NULL && m4 != NULL);
    char line[4096], line4[4096];
    int lines = 0, regression = 0, api_cpu = 0;
    if (m != NULL && m4 != NULL && fgets(line, sizeof line, m) != NULL &&
        fgets(line4, sizeof line4, m4) != NULL) /* headers */
        while (fgets(line, sizeof line, m) != NULL) {
            CHECK(fgets(line4, sizeof line4, m4) != NULL);
            api_cpu += check_requests(d1, line, d4, line4);
            char name[256], a[PATH_MAX], b[PATH_MAX];
            sscanf(line, "%255s", name);
            snprintf(a, sizeof a, "%s/%s", d1, name);
            snprintf(b, sizeof b, "%s/%s", d2, name);
            CHECK(same_file(a, b)); /* same seed, same bytes */
            if (lines == 0) {
                snprintf(b, sizeof b, "%s/%s", d3, name);
                CHECK(!same_file(a, b)); /* another seed, other values */
            }
            check_line(d1, line, &regression);
            lines++;
        }
    if (m != NULL) fclose(m);
    if (m4 != NULL) fclose(m4);
    CHECK_EQ_INT(lines, COUNT);
    CHECK_EQ_INT(api_cpu, 9); /* 3 rounds x 3 api pods */
    CHECK(regression);        /* checkout v2 carries the slow path */
    char cmd[PATH_MAX * 4 + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s' '%s'", d1, d2, d3, d4);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
