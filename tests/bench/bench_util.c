/* bench_util.c — RNG, clocks, files, profile sets and the decode-only
 * baseline of flamedb-bench. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common/err.h"
#include "common/proto/pprof.pb-c.h"

/* ---- RNG ---- */
uint64_t rng_next(bench_rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rng_unit(bench_rng_t *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t rng_below(bench_rng_t *r, uint64_t n)
{
    return n == 0 ? 0 : rng_next(r) % n;
}

double rng_lognormal(bench_rng_t *r, double sigma)
{
    double u1 = rng_unit(r), u2 = rng_unit(r);
    if (u1 < 1e-300) u1 = 1e-300;
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return exp(sigma * z);
}

uint64_t rng_poisson(bench_rng_t *r, double mean)
{
    if (mean > 30) { /* normal approximation is plenty for a load model */
        double u1 = rng_unit(r), u2 = rng_unit(r);
        if (u1 < 1e-300) u1 = 1e-300;
        double v = mean + sqrt(mean) * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        return v < 0 ? 0 : (uint64_t)(v + 0.5);
    }
    double l = exp(-mean), p = 1.0;
    uint64_t k = 0;
    do {
        k++;
        p *= rng_unit(r);
    } while (p > l);
    return k - 1;
}

/* ---- clocks ---- */
static double ts_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
double clock_wall(void)
{
    return ts_seconds(CLOCK_MONOTONIC);
}
int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void pause_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
double clock_process(void)
{
    return ts_seconds(CLOCK_PROCESS_CPUTIME_ID);
}
double clock_thread(void)
{
    return ts_seconds(CLOCK_THREAD_CPUTIME_ID);
}

/* ---- files ---- */
int read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ERR_IO;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || (size_t)st.st_size > max) {
        fclose(f);
        return ERR_TOO_LARGE;
    }
    uint8_t *b = malloc((size_t)st.st_size + 1);
    size_t n = b ? fread(b, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (b == NULL || n != (size_t)st.st_size) {
        free(b);
        return ERR_IO;
    }
    *data = b;
    *len = n;
    return 0;
}

int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return ERR_IO;
    size_t n = fwrite(data, 1, len, f);
    int rc = fclose(f);
    return (n == len && rc == 0) ? 0 : ERR_IO;
}

int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return ERR_IO;
        *p = '/';
    }
    return (mkdir(tmp, 0755) == 0 || errno == EEXIST) ? 0 : ERR_IO;
}

/* Walks a tree: removes it (rm != 0) or sums its regular files' sizes. */
static uint64_t walk(const char *path, int rm)
{
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) {
        if (rm) unlink(path);
        return S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    }
    uint64_t total = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        total += walk(child, rm);
    }
    if (d != NULL) closedir(d);
    if (rm) rmdir(path);
    return total;
}

int rm_rf(const char *path)
{
    walk(path, 1);
    return 0;
}

uint64_t dir_bytes(const char *path)
{
    return walk(path, 0);
}

char *make_temp_dir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/flamedb-bench-%s.XXXXXX", base ? base : "/tmp", tag) < 0) return NULL;
    if (mkdtemp(p) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- profile sets ---- */
void profile_set_free(profile_set_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->p[i].gz);
    free(s->p);
    memset(s, 0, sizeof *s);
}

bench_profile_t *profile_set_add(profile_set_t *s)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        bench_profile_t *p = realloc(s->p, cap * sizeof *p);
        if (p == NULL) return NULL;
        s->p = p;
        s->cap = cap;
    }
    bench_profile_t *p = &s->p[s->n++];
    memset(p, 0, sizeof *p);
    return p;
}

size_t profile_set_gz_bytes(const profile_set_t *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->p[i].gz_len;
    return n;
}

/* index.tsv: path \t name \t time_s \t raw_len \t types(,) \t totals(,) */
static void index_line(FILE *f, const bench_profile_t *p, const char *rel)
{
    fprintf(f, "%s\t%s\t%lld\t%zu\t", rel, p->name, (long long)p->time_s, p->raw_len);
    for (size_t t = 0; t < p->ntypes; t++)
        fprintf(f, "%s%s", t ? "," : "", p->types[t]);
    fputc('\t', f);
    for (size_t t = 0; t < p->ntypes; t++)
        fprintf(f, "%s%lld", t ? "," : "", (long long)p->totals[t]);
    fputc('\n', f);
}

int profile_set_write(const profile_set_t *s, const char *dir)
{
    if (mkdirs(dir) != 0) return ERR_IO;
    char path[4096];
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return ERR_IO;
    fprintf(f, "# path\tname\ttime_s\traw_len\ttypes\ttotals\n");
    for (size_t i = 0; i < s->n; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "p%06zu.pb.gz", i);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        if (write_file(path, s->p[i].gz, s->p[i].gz_len) != 0) {
            fclose(f);
            return ERR_IO;
        }
        index_line(f, &s->p[i], rel);
    }
    return fclose(f) == 0 ? 0 : ERR_IO;
}

static void split_list(char *list, bench_profile_t *p, int totals)
{
    size_t n = 0;
    for (char *tok = strtok(list, ","); tok && n < BENCH_MAX_TYPES; tok = strtok(NULL, ","), n++) {
        if (totals)
            p->totals[n] = strtoll(tok, NULL, 10);
        else
            snprintf(p->types[n], sizeof p->types[n], "%s", tok);
    }
    p->ntypes = n;
}

static int load_index_line(profile_set_t *s, const char *dir, char *line)
{
    char *f[6];
    size_t n = 0;
    for (char *tok = strtok(line, "\t\n"); tok && n < 6; tok = strtok(NULL, "\t\n"))
        f[n++] = tok;
    if (n < 6) return ERR_CORRUPT;
    bench_profile_t *p = profile_set_add(s);
    if (p == NULL) return ERR_NOMEM;
    if (snprintf(p->path, sizeof p->path, "%s/%s", dir, f[0]) >= (int)sizeof p->path)
        return ERR_TOO_LARGE;
    snprintf(p->name, sizeof p->name, "%s", f[1]);
    p->time_s = strtoll(f[2], NULL, 10);
    p->raw_len = strtoull(f[3], NULL, 10);
    char *types = strdup(f[4]), *totals = strdup(f[5]);
    if (types && totals) {
        split_list(types, p, 0);
        split_list(totals, p, 1);
    }
    free(types);
    free(totals);
    return read_file(p->path, 64u << 20, &p->gz, &p->gz_len);
}

int profile_set_load_index(profile_set_t *s, const char *index_path)
{
    FILE *f = fopen(index_path, "r");
    if (f == NULL) return ERR_IO;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    char line[8192];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        if (line[0] != '#' && line[0] != '\n') rc = load_index_line(s, dir, line);
    }
    fclose(f);
    return rc;
}

/* ---- decode-only baseline ---- */
int decode_only(struct libdeflate_decompressor *d, const bench_profile_t *p, buf_t *scratch)
{
    const uint8_t *raw = p->gz;
    size_t raw_len = p->gz_len;
    if (p->gz_len >= 18 && p->gz[0] == 0x1f && p->gz[1] == 0x8b) {
        const uint8_t *t = p->gz + p->gz_len - 4; /* ISIZE: size mod 2^32 */
        size_t want = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        buf_reset(scratch);
        if (buf_reserve(scratch, want + 1) != 0) return ERR_NOMEM;
        size_t got = 0;
        if (libdeflate_gzip_decompress(d, p->gz, p->gz_len, scratch->data, want + 1, &got) !=
            LIBDEFLATE_SUCCESS)
            return ERR_UNPARSEABLE;
        raw = scratch->data;
        raw_len = got;
    }
    Perftools__Profiles__Profile *m = perftools__profiles__profile__unpack(NULL, raw_len, raw);
    if (m == NULL) return ERR_UNPARSEABLE;
    int n = (int)m->n_sample;
    perftools__profiles__profile__free_unpacked(m, NULL);
    return n;
}

/* ---- flags ---- */
int flag_str(int argc, char **argv, int *i, const char *name, const char **val)
{
    if (strcmp(argv[*i], name) != 0 || *i + 1 >= argc) return 0;
    *val = argv[++*i];
    return 1;
}

int flag_u64(int argc, char **argv, int *i, const char *name, uint64_t *val)
{
    const char *s;
    if (!flag_str(argc, argv, i, name, &s)) return 0;
    *val = strtoull(s, NULL, 10);
    return 1;
}
