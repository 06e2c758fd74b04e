/* test_storage_fixture.h — shared helpers of the storage unit tests: a real
 * RocksDB in a fresh mkdtemp directory (removed afterwards), a settable fake
 * clock, and small builders for trees, labels and one-series profiles.
 * Included by tests/unit/test_storage_*.c only. */
#ifndef FLAMEDB_TESTS_STORAGE_FIXTURE_H
#define FLAMEDB_TESTS_STORAGE_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/calltree.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

#define NS 1000000000LL

typedef struct fixture {
    char dir[64];
    storage_options_t opts;
    storage_t *s;
    int64_t now; /* the fake clock, unix seconds */
} fixture_t;

static inline int64_t fake_clock(void *ctx)
{
    return ((fixture_t *)ctx)->now * 1000000000;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fx_rmrf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int fx_open(fixture_t *f)
{
    errmsg_t em = {{0}};
    int rc = storage_open(&f->opts, &f->s, &em);
    if (rc != 0) {
        fprintf(stderr, "storage_open: %s\n", errmsg_text(&em, rc));
        return rc;
    }
    clock_source_t c = {fake_clock, fake_clock, f};
    storage_set_clock(f->s, &c);
    return 0;
}

/* Creates the directory and opens storage with small caches. */
static inline int fx_init(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/flamedb-storage-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    storage_options_default(&f->opts);
    f->opts.path = f->dir;
    f->opts.block_cache_bytes = 8 << 20;
    f->opts.write_buffer_bytes = 16 << 20;
    /* no background window fold: tests that count a window's operands see
     * what their writes left (test_storage_window_fold runs the fold) */
    f->opts.window_fold_interval_seconds = 0;
    f->now = 1700000000;
    return fx_open(f);
}

static inline int fx_reopen(fixture_t *f)
{
    storage_close(f->s);
    f->s = NULL;
    return fx_open(f);
}

static inline void fx_done(fixture_t *f)
{
    storage_close(f->s);
    f->s = NULL;
    fx_rmrf(f->dir);
}

/* Records v as the directory's format version, as a release that wrote
 * format v left it (the next open upgrades from there). */
static inline void fx_put_version(fixture_t *f, const char *v)
{
    char *err = NULL;
    rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[CF_META], "format_version", 14, v, strlen(v),
                   &err);
    CHECK(err == NULL);
    free(err);
}

/* Checks the directory records the current format version. */
static inline void fx_check_version(fixture_t *f)
{
    char *err = NULL;
    size_t n = 0;
    char *v =
        rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_META], "format_version", 14, &n, &err);
    CHECK(err == NULL);
    CHECK(v != NULL && n == strlen(STORAGE_FORMAT_VERSION) &&
          memcmp(v, STORAGE_FORMAT_VERSION, n) == 0);
    free(v);
    free(err);
}

/* Interns frames "a;b;c" into st and adds the stack with value v to t. */
static inline void fx_add(calltree_t *t, symtab_t *st, const char *folded, int64_t v)
{
    uint64_t stack[64];
    size_t depth = 0;
    const char *p = folded;
    while (*p != '\0' && depth < 64) {
        const char *e = strchr(p, ';');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        CHECK_EQ_INT(symtab_intern(st, p, n, "file.c", 6, &stack[depth]), 0);
        depth++;
        p += n;
        if (*p == ';') p++;
    }
    CHECK_EQ_INT(calltree_add_stack(t, stack, depth, v), 0);
}

static inline labels_t *fx_labels(const char *service, const char *env)
{
    labels_t *l = labels_new();
    labels_set_str(l, LABEL_NAME, "process_cpu");
    labels_set_str(l, LABEL_PROFILE_TYPE, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    labels_set_str(l, LABEL_SERVICE_NAME, service);
    if (env != NULL) labels_set_str(l, "env", env);
    return l;
}

static inline void fx_id(uint8_t id[16], uint64_t n)
{
    memset(id, 0, 16);
    for (int i = 0; i < 8; i++)
        id[15 - i] = (uint8_t)(n >> (8 * i));
}

/* Writes one series at token with one tree. */
static inline int fx_write_at(storage_t *s, const char *tenant, const labels_t *l, uint64_t token,
                              const calltree_t *t, const symtab_t *st, uint64_t id, int64_t time_ns,
                              size_t *written)
{
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = token;
    storage_profile_write_t p = {
        .tenant = tenant, .time_ns = time_ns, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(s, &p, written, &em);
    if (rc != 0) fprintf(stderr, "storage_write_profile: %s\n", errmsg_text(&em, rc));
    return rc;
}

/* Writes one series (token = series_id >> 1 for variety) with one tree. */
static inline int fx_write(storage_t *s, const char *tenant, const labels_t *l, const calltree_t *t,
                           const symtab_t *st, uint64_t id, int64_t time_ns, size_t *written)
{
    return fx_write_at(s, tenant, l, labels_hash(l) >> 1, t, st, id, time_ns, written);
}

/* Writes the folded stacks (value 1 + their index each) at token as
 * profile id (tenant "t", 5 s before f's clock). */
static inline void fx_write_stacks(fixture_t *f, symtab_t *st, const labels_t *l, uint64_t token,
                                   const char *const *stacks, size_t n, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < n; i++)
        fx_add(t, st, stacks[i], (int64_t)(1 + i));
    CHECK_EQ_INT(fx_write_at(f->s, "t", l, token, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

/* Three series of service "svc" (env a, b, c) into ls, each written once
 * at tokens[i] with a few stacks that share most paths: the unions' tests'
 * store. The caller frees ls. */
static inline void fx_write_three(fixture_t *f, symtab_t *st, labels_t *ls[3],
                                  const uint64_t tokens[3])
{
    static const char *s1[] = {"main;a;b", "main;a;c", "main;d", "x;y"};
    static const char *s2[] = {"main;d;e", "main;a;b", "main", "z"};
    static const char *s3[] = {"main;a;c;c", "x;y;z", "main;d"};
    ls[0] = fx_labels("svc", "a");
    ls[1] = fx_labels("svc", "b");
    ls[2] = fx_labels("svc", "c");
    fx_write_stacks(f, st, ls[0], tokens[0], s1, 4, 1);
    fx_write_stacks(f, st, ls[1], tokens[1], s2, 4, 2);
    fx_write_stacks(f, st, ls[2], tokens[2], s3, 3, 3);
}

/* A merger (tenant "t") of the series of ls[i] at tokens[i] over the last
 * hour of f's clock; the caller frees it. */
static inline storage_merger_t *fx_merger_of(fixture_t *f, labels_t *const *ls,
                                             const uint64_t *tokens, size_t n)
{
    storage_merger_t *m;
    CHECK_EQ_INT(storage_merger_new(f->s, "t", &m), 0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(
            storage_merger_add(m, tokens[i], labels_hash(ls[i]), 0, f->now - 3600, f->now + 60), 0);
    return m;
}

/* Writes profile id (tenant "t", time_ns) of one series at token whose
 * tree has 5 + i stacks "main;f..;g.." of varied values: trees that differ
 * with i and share most of their nodes. */
static inline void fx_push(storage_t *s, const labels_t *l, symtab_t *st, uint64_t token, int i,
                           int64_t time_ns, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int k = 0; k < 5 + i; k++) {
        snprintf(stack, sizeof stack, "main;f%d;g%d", k % 7, (k * 3 + i) % 11);
        fx_add(t, st, stack, 10 + k * i);
    }
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = token;
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = time_ns, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(s, &p, NULL, &em), 0);
    calltree_free(t);
}

/* Tree of stacks from..from+n-1 of svc: main;svc_modK;svc_fnI (39 + n nodes
 * from 0 when n >= 37); the caller frees it. */
static inline calltree_t *fx_stacks_tree(symtab_t *st, const char *svc, int from, int n)
{
    calltree_t *t = calltree_new(0);
    char stack[96];
    for (int i = from; i < from + n; i++) {
        snprintf(stack, sizeof stack, "main;%s_mod%d;%s_fn%d", svc, i % 37, svc, i);
        fx_add(t, st, stack, 1 + i % 3);
    }
    return t;
}

/* Writes fx_stacks_tree(svc, from, n) to l as profile id (tenant "t", 5 s
 * before f's clock); returns its total. */
static inline int64_t fx_push_stacks(fixture_t *f, const labels_t *l, const char *svc, symtab_t *st,
                                     int from, int n, uint64_t id)
{
    calltree_t *t = fx_stacks_tree(st, svc, from, n);
    int64_t total = (int64_t)calltree_total(t, 0);
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
    return total;
}

typedef struct fx_edges {
    size_t n;               /* records seen */
    uint32_t parent, child; /* with want_sym: the record of (parent, want_sym) */
    uint64_t want_sym;
    int found;
} fx_edges_t;

static inline int fx_edge_seen(void *ctx, uint32_t parent, uint64_t sym, uint32_t child)
{
    fx_edges_t *e = ctx;
    e->n++;
    if (parent == e->parent && sym == e->want_sym) {
        e->found++;
        e->child = child;
    }
    return 0;
}

/* The edge index records of the table of l (tenant "t") on disk; with
 * e->parent and e->want_sym set first, whether (and as what child) that
 * edge is among them. */
static inline size_t fx_index_records(storage_t *s, const labels_t *l, fx_edges_t *e)
{
    fx_edges_t none = {.parent = UINT32_MAX};
    if (e == NULL) e = &none;
    CHECK_EQ_INT(storage_nodetab_index_each(s, labels_hash(l) >> 1, "t", fx_edge_seen, e), 0);
    return e->n;
}

/* The stack-node tables of l (tenant "t") hold the same ids in stores a and
 * b; returns how many nodes a's holds. */
static inline uint32_t fx_same_nodetab(storage_t *a, storage_t *b, const labels_t *l)
{
    uint64_t token = labels_hash(l) >> 1;
    nodetab_t *ta, *tb;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(a, token, "t", &ta, &em), 0);
    CHECK_EQ_INT(storage_nodetab_acquire(b, token, "t", &tb, &em), 0);
    uint32_t n = storage_nodetab_count(ta);
    CHECK_EQ_INT(n, storage_nodetab_count(tb));
    CHECK(memcmp(storage_nodetab_parents(ta), storage_nodetab_parents(tb), n * sizeof(uint32_t)) ==
          0);
    CHECK(memcmp(storage_nodetab_syms(ta), storage_nodetab_syms(tb), n * sizeof(uint64_t)) == 0);
    storage_nodetab_release(b, tb, 0);
    storage_nodetab_release(a, ta, 0);
    return n;
}

/* Merges every block of a series at res in [from, until) into acc. */
typedef struct fx_scan {
    calltree_t *acc;
    int64_t total;
    int windows;
    int64_t first, last;
    int bad;
} fx_scan_t;

static inline int fx_block_cb(void *ctx, int64_t w, const uint8_t *v, size_t n)
{
    fx_scan_t *sc = ctx;
    if (sc->windows == 0)
        sc->first = w;
    else if (w <= sc->last)
        sc->bad++; /* not in window order */
    sc->last = w;
    sc->windows++;
    if (calltree_decode_merge(sc->acc, v, n) != 0) sc->bad++;
    return 0;
}

static inline int fx_total_cb(void *ctx, int64_t w, int64_t total)
{
    fx_scan_t *sc = ctx;
    sc->windows++;
    sc->total += total;
    return 0;
}

static inline fx_scan_t fx_blocks(storage_t *s, const char *tenant, const labels_t *l, int res,
                                  int64_t from, int64_t until)
{
    fx_scan_t sc = {.acc = calltree_new(0)};
    uint64_t id = labels_hash(l);
    CHECK_EQ_INT(storage_scan_blocks(s, tenant, id >> 1, id, res, from, until, fx_block_cb, &sc),
                 0);
    CHECK_EQ_INT(sc.bad, 0);
    return sc;
}

static inline int64_t fx_totals(storage_t *s, const char *tenant, const labels_t *l, int res,
                                int64_t from, int64_t until, int *windows)
{
    fx_scan_t sc = {0};
    uint64_t id = labels_hash(l);
    CHECK_EQ_INT(storage_scan_totals(s, tenant, id >> 1, id, res, from, until, fx_total_cb, &sc),
                 0);
    if (windows != NULL) *windows = sc.windows;
    return sc.total;
}

/* Root total of the blocks at res over [from, until), and their count. */
static inline int64_t fx_block_total(storage_t *s, const char *tenant, const labels_t *l, int res,
                                     int64_t from, int64_t until, int *windows)
{
    fx_scan_t sc = fx_blocks(s, tenant, l, res, from, until);
    int64_t total = calltree_root_total(sc.acc);
    if (windows != NULL) *windows = sc.windows;
    calltree_free(sc.acc);
    return total;
}

/* A storage_span_fn that merges each span tree into ctx (a calltree_t). */
static inline int fx_span_merge_cb(void *ctx, uint64_t token, uint64_t series, int64_t w,
                                   unsigned flags, const uint8_t *v, size_t n)
{
    (void)token;
    (void)series;
    (void)w;
    CHECK_EQ_INT(calltree_decode_merge(ctx, v, n), 0);
    return 0;
}

/* Sum of |self| left after b's selves are taken off a copy of a, node by
 * node, plus b's nodes a lacks: 0 when the trees are equal. */
static inline int64_t fx_tree_diff(const calltree_t *a, const calltree_t *b)
{
    calltree_t *c = calltree_new(0);
    int64_t off = 0;
    if (c == NULL || calltree_merge(c, a) != 0) return -1;
    size_t n = calltree_node_count(b);
    const calltree_node_t *nb = calltree_nodes(b);
    const uint64_t *sb = calltree_syms(b);
    uint32_t *map = calloc(n ? n : 1, sizeof *map);
    for (uint32_t i = 1; map != NULL && i < n; i++) { /* a parent precedes its children */
        if (calltree_child(c, map[nb[i].parent], sb[nb[i].sym_index], &map[i]) != 0) off++;
        calltree_add_self(c, map[i], -calltree_self(b, i));
    }
    calltree_add_self(c, 0, -calltree_self(b, 0));
    for (uint32_t i = 0; i < calltree_node_count(c); i++) {
        int64_t self = calltree_self(c, i);
        off += self < 0 ? -self : self;
    }
    free(map);
    calltree_free(c);
    return off;
}

/* Every key and value of column family cf, in order, appended to out. */
static inline void fx_dump_cf(storage_t *s, int cf, buf_t *out)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const char *k = rocksdb_iter_key(it, &kn), *v = rocksdb_iter_value(it, &vn);
        uint32_t lens[2] = {(uint32_t)kn, (uint32_t)vn};
        CHECK_EQ_INT(buf_append(out, lens, sizeof lens), 0);
        CHECK_EQ_INT(buf_append(out, k, kn), 0);
        CHECK_EQ_INT(buf_append(out, v, vn), 0);
    }
    rocksdb_iter_destroy(it);
}

/* Stores a and b hold the same bytes, none empty, in each of the n column
 * families cfs. */
static inline void fx_same_cfs(storage_t *a, storage_t *b, const int *cfs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_t x, y;
        buf_init(&x, (size_t)1 << 30);
        buf_init(&y, (size_t)1 << 30);
        fx_dump_cf(a, cfs[i], &x);
        fx_dump_cf(b, cfs[i], &y);
        CHECK(x.len > 0);
        CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        buf_free(&x);
        buf_free(&y);
    }
}

#endif
