/* test_storage_flush_lz4.c — a zstd column family's flushes (level 0) are
 * written with lz4 and every deeper level with zstd (the bottommost with
 * zstd too), while an lz4 family keeps one compression for all levels.
 * Checked in the options RocksDB records in the directory (OPTIONS-*, the
 * options it applies), after a store wrote and flushed a profile; the
 * profile's stack-node table reads back after the reopen, from the
 * flushed lz4 files. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <dirent.h>

#include "check.h"

/* The newest OPTIONS-<n> file of dir, read whole into a malloc'd string. */
static char *read_options(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    char best[64] = "";
    unsigned long best_n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "OPTIONS-", 8) != 0 || strstr(e->d_name, ".dbtmp") != NULL) continue;
        unsigned long n = strtoul(e->d_name + 8, NULL, 10);
        if (n >= best_n && strlen(e->d_name) < sizeof best) {
            best_n = n;
            snprintf(best, sizeof best, "%s", e->d_name);
        }
    }
    closedir(d);
    CHECK(best[0] != 0);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, best);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

/* 1 and the value of `key` in the [CFOptions "cf"] section copied to out,
 * or 0 when the section does not list the key (RocksDB leaves out an empty
 * compression_per_level). */
static int cf_option(const char *text, const char *cf, const char *key, char *out, size_t cap)
{
    char head[64], want[80];
    snprintf(head, sizeof head, "[CFOptions \"%s\"]", cf);
    snprintf(want, sizeof want, "\n  %s=", key);
    out[0] = 0;
    const char *sec = strstr(text, head);
    CHECK(sec != NULL);
    if (sec == NULL) return 0;
    const char *end = strstr(sec + 1, "\n[");
    const char *at = strstr(sec, want);
    if (at == NULL || (end != NULL && at > end)) return 0;
    at += strlen(want);
    size_t n = strcspn(at, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(out, at, n);
    out[n] = 0;
    return 1;
}

static void write_one(fixture_t *f)
{
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;svc.Handle;svc.work", 7);
    fx_add(t, st, "main;svc.Handle;svc.idle", 3);
    labels_t *l = labels_new();
    CHECK(l != NULL);
    CHECK_EQ_INT(labels_set_str(l, "__name__", "svc"), 0);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = 42;
    storage_profile_write_t pw = {
        .tenant = "t", .time_ns = (f->now - 60) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(pw.profile_id, 1);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &pw, NULL, &em), 0);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

int main(void)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    write_one(&f);
    CHECK_EQ_INT(fx_reopen(&f), 0); /* the close flushed every memtable */
    char *text = read_options(f.dir);
    char v[256];
    static const char *const zstd_cfs[] = {"blocks", "symbols", "nodes", "profile_trees"};
    for (size_t i = 0; i < sizeof zstd_cfs / sizeof *zstd_cfs; i++) {
        CHECK(cf_option(text, zstd_cfs[i], "compression_per_level", v, sizeof v));
        CHECK(strncmp(v, "kLZ4Compression:kZSTD", 21) == 0);
        CHECK(strstr(v, ":kLZ4Compression") == NULL); /* level 0 only */
        CHECK(cf_option(text, zstd_cfs[i], "bottommost_compression", v, sizeof v));
        CHECK(strcmp(v, "kZSTD") == 0);
    }
    /* an lz4 family: one compression for its levels, as before */
    CHECK(!cf_option(text, "series", "compression_per_level", v, sizeof v));
    CHECK(cf_option(text, "series", "compression", v, sizeof v));
    CHECK(strcmp(v, "kLZ4Compression") == 0);
    free(text);
    /* the flushed (lz4) node table reads back: root, main, Handle, work, idle */
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, 42, "t", &t, &em), 0);
    CHECK_EQ_INT((int)storage_nodetab_count(t), 5);
    storage_nodetab_release(f.s, t, 0);
    fx_done(&f);
    return check_exit();
}
