/* test_client_demo.c — the demo traffic generator's profiles are valid pprof
 * with the totals its manifest promises.
 *
 * Runs the real build/bin/flamedb-demo in --out-dir mode, then gunzips every
 * file with libdeflate, decodes it with protobuf-c, checks the pprof
 * invariants (string_table[0] == "", ids resolve, one value per sample type)
 * and recomputes each sample type's total. Also: the same seed gives the same
 * bytes, and the v2 rollout shows up in labels and stacks.
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

static int run_demo(const char *dir, int seed)
{
    char cmd[PATH_MAX * 2 + 200];
    snprintf(cmd, sizeof cmd,
             "'%s' --out-dir '%s' --count %d --start %d --v2-at %d --seed %d --quiet 2>/dev/null",
             demo_bin, dir, COUNT, START, V2_AT, seed);
    return system(cmd);
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

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *pa = read_file(a, &la), *pb = read_file(b, &lb);
    int same = pa && pb && la == lb && memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

int main(void)
{
    if (find_demo() != 0) {
        fprintf(stderr, "flamedb-demo not built next to the tests (%s)\n", demo_bin);
        return 1;
    }
    char d1[] = "/tmp/flamedb-demo-test-XXXXXX", d2[] = "/tmp/flamedb-demo-test-XXXXXX";
    char d3[] = "/tmp/flamedb-demo-test-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2) && mkdtemp(d3));
    CHECK_EQ_INT(run_demo(d1, 7), 0);
    CHECK_EQ_INT(run_demo(d2, 7), 0);
    CHECK_EQ_INT(run_demo(d3, 8), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/manifest.tsv", d1);
    FILE *m = fopen(path, "r");
    CHECK(m != NULL);
    char line[4096];
    int lines = 0, regression = 0;
    if (m != NULL && fgets(line, sizeof line, m) != NULL) /* header */
        while (fgets(line, sizeof line, m) != NULL) {
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
    CHECK_EQ_INT(lines, COUNT);
    CHECK(regression); /* checkout v2 carries the slow path */
    char cmd[PATH_MAX * 3 + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", d1, d2, d3);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
