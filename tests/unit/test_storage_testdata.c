/* Storage with real stacks from the shared corpus: the folded form of
 * google-pprof large.cpu (20k stacks, 22k functions) is stored as a fleet of
 * profiles (each a random part of the stacks, like consecutive pushes of one
 * service), and every resolution must return the exact sum. Prints the
 * figures worth tracking: bytes on disk per profile against the gzipped pprof
 * the stacks came from, write and read times. Skips when the corpus is absent.
 * Randomised: prints its seed; pass a seed as argv[1] to replay. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <time.h>

#define T0 1700000000LL
#define PROFILES 12
#define MAX_LINES 30000
#define LARGE_CPU_SAMPLES 24029 /* MANIFEST.tsv: samples/count of large.cpu */

typedef struct line {
    uint64_t *stack;
    size_t depth;
    int64_t value;
} line_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parses "a;b;c 12" into a line; frames interned into st. */
static int parse_line(char *s, symtab_t *st, line_t *out)
{
    char *sp = strrchr(s, ' ');
    if (sp == NULL) return -1;
    *sp = '\0';
    out->value = strtoll(sp + 1, NULL, 10);
    size_t cap = 16;
    out->stack = malloc(cap * sizeof *out->stack);
    out->depth = 0;
    for (char *tok = strtok(s, ";"); tok != NULL; tok = strtok(NULL, ";")) {
        if (out->depth == cap) out->stack = realloc(out->stack, (cap *= 2) * sizeof *out->stack);
        symtab_intern(st, tok, strlen(tok), "", 0, &out->stack[out->depth++]);
    }
    return 0;
}

static size_t load_lines(const char *path, symtab_t *st, line_t *lines, int64_t *sum)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return 0;
    size_t n = 0, cap = 0;
    char *buf = NULL;
    *sum = 0;
    while (n < MAX_LINES && getline(&buf, &cap, p) > 0) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (parse_line(buf, st, &lines[n]) == 0) *sum += lines[n++].value;
    }
    free(buf);
    pclose(p);
    return n;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void run(const char *corpus, uint64_t seed)
{
    char folded[4096], pprof[4096];
    snprintf(folded, sizeof folded, "%s/folded/derived/large.cpu.samples.folded.txt.gz", corpus);
    snprintf(pprof, sizeof pprof, "%s/pprof/google-pprof/large.cpu.pb.gz", corpus);
    symtab_t *st = symtab_new();
    line_t *lines = calloc(MAX_LINES, sizeof *lines);
    int64_t file_sum = 0;
    size_t n = load_lines(folded, st, lines, &file_sum);
    CHECK(n > 20000);
    CHECK_EQ_INT(file_sum, LARGE_CPU_SAMPLES);

    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    labels_t *l = fx_labels("large", "prod");
    calltree_t *t = calltree_new(0);
    int64_t want = 0;
    check_rng_state = seed;
    double t0 = now_s();
    for (int i = 0; i < PROFILES; i++) {
        CHECK_EQ_INT(calltree_clear(t), 0);
        for (size_t j = 0; j < n; j++) {
            if (check_rng() % 2 != 0) /* about half the stacks, values jittered */
                continue;
            int64_t v = lines[j].value * (1 + (int64_t)(check_rng() % 3));
            calltree_add_stack(t, lines[j].stack, lines[j].depth, v);
            want += v;
        }
        CHECK_EQ_INT(fx_write(f.s, "big", l, t, st, 1 + (uint64_t)i, (T0 + 10 * i) * NS, NULL), 0);
    }
    double t_write = now_s() - t0;
    t0 = now_s();
    CHECK_EQ_INT(fx_block_total(f.s, "big", l, 0, T0, T0 + 10 * PROFILES, NULL), want);
    double t_read_fine = now_s() - t0;
    CHECK_EQ_INT(storage_compact(f.s), 0);
    t0 = now_s();
    int windows = 0;
    CHECK_EQ_INT(fx_block_total(f.s, "big", l, 0, T0, T0 + 10 * PROFILES, &windows), want);
    double t_read_compacted = now_s() - t0;
    CHECK_EQ_INT(windows, PROFILES);
    for (int r = 1; r < STORAGE_RESOLUTION_COUNT; r++)
        CHECK_EQ_INT(fx_totals(f.s, "big", l, r, T0 - 86400, T0 + 86400, NULL), want);
    t0 = now_s();
    CHECK_EQ_INT(fx_block_total(f.s, "big", l, 3, T0 - 3600, T0 + 3600, &windows), want);
    double t_read_hour = now_s() - t0;

    uint64_t bytes = 0;
    storage_disk_usage(f.s, &bytes);
    long gz = file_size(pprof);
    fprintf(stderr,
            "large.cpu x %d profiles: %llu bytes on disk = %.0f per profile = %.2f%% of the "
            "%ld-byte gzipped pprof (both sample types; blocks at 5 resolutions)\n",
            PROFILES, (unsigned long long)bytes, (double)bytes / PROFILES,
            gz > 0 ? 100.0 * (double)bytes / PROFILES / (double)gz : 0.0, gz);
    fprintf(stderr,
            "write %.1f ms/profile; read %d x 10 s blocks %.1f ms (memtable), %.1f ms "
            "(compacted); 1 h block %.2f ms (sanitizer build: relative figures only)\n",
            1000 * t_write / PROFILES, PROFILES, 1000 * t_read_fine, 1000 * t_read_compacted,
            1000 * t_read_hour);

    labels_free(l);
    calltree_free(t);
    fx_done(&f);
    for (size_t j = 0; j < n; j++)
        free(lines[j].stack);
    free(lines);
    symtab_free(st);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL) | 1;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    const char *corpus = testdata_path();
    if (corpus != NULL) run(corpus, seed);
    return check_exit();
}
