/* Unit tests for single stored profiles (profile_trees): two profiles of one
 * series in the same 10 s window read back exactly, each its own (while the
 * window's block holds their sum); other series, unknown ids; listing a
 * series newest first within a range and a count; the size cap;
 * profile retention at read, at write and by compaction; and the upgrade of
 * a format-4 data directory. */
#include "test_storage_fixture.h"

#define T0 1700000000LL

/* 1 if the subtrees of a at x and b at y hold the same stacks and values
 * (children may be in another order). */
static int same_at(const calltree_t *a, uint32_t x, const calltree_t *b, uint32_t y)
{
    if (calltree_self(a, x) != calltree_self(b, y)) return 0;
    size_t na = 0, nb = 0;
    for (uint32_t c = calltree_first_child(b, y); c != CALLTREE_NONE;
         c = calltree_next_sibling(b, c))
        nb++;
    for (uint32_t c = calltree_first_child(a, x); c != CALLTREE_NONE;
         c = calltree_next_sibling(a, c)) {
        uint32_t d = calltree_first_child(b, y);
        while (d != CALLTREE_NONE && calltree_sym(b, d) != calltree_sym(a, c))
            d = calltree_next_sibling(b, d);
        if (d == CALLTREE_NONE || !same_at(a, c, b, d)) return 0;
        na++;
    }
    return na == nb;
}

static int same_tree(const calltree_t *a, const calltree_t *b)
{
    return calltree_node_count(a) == calltree_node_count(b) && same_at(a, 0, b, 0);
}

/* Profile id at time_ns of the series l, read into a new tree (NULL when
 * not stored). */
static calltree_t *read_back(fixture_t *f, const labels_t *l, uint64_t id, int64_t time_ns)
{
    uint64_t sid = labels_hash(l);
    uint8_t pid[16];
    fx_id(pid, id);
    calltree_t *t = calltree_new(0);
    int rc = storage_read_profile(f->s, "pt", sid >> 1, sid, time_ns, pid, t);
    if (rc != 0) {
        CHECK_EQ_INT(rc, ERR_NOT_FOUND);
        calltree_free(t);
        return NULL;
    }
    return t;
}

typedef struct listed {
    int n;
    int64_t time_ns[16], total[16];
    int kept[16];
    uint8_t id_last[16];
} listed_t;

static int list_fn(void *ctx, int64_t time_ns, const uint8_t profile_id[16], int64_t total,
                   int kept)
{
    listed_t *l = ctx;
    if (l->n < 16) {
        l->time_ns[l->n] = time_ns;
        l->total[l->n] = total;
        l->kept[l->n] = kept;
        l->id_last[l->n++] = profile_id[15]; /* fx_id: the number ends the id */
    }
    return 0;
}

static listed_t scan(fixture_t *f, const labels_t *l, int64_t from_s, int64_t until_s, size_t max)
{
    listed_t out = {0};
    uint64_t sid = labels_hash(l);
    CHECK_EQ_INT(
        storage_scan_profile_trees(f->s, "pt", sid >> 1, sid, from_s, until_s, max, list_fn, &out),
        0);
    return out;
}

/* A series' profiles are listed newest first, within [from, until) by the
 * floor of their time, at most max of them. */
static void test_scan(fixture_t *f)
{
    labels_t *l = fx_labels("pscan", NULL), *other = fx_labels("pscan", "x");
    symtab_t *st = symtab_new();
    f->now = T0 + 100;
    int64_t times[] = {T0 + 30, T0 + 1, T0 + 12, T0 + 29};
    for (int i = 0; i < 4; i++) {
        calltree_t *t = calltree_new(0);
        fx_add(t, st, "a;b", 10 + i);
        CHECK_EQ_INT(fx_write(f->s, "pt", l, t, st, (uint64_t)(i + 1), times[i] * NS + 5, NULL), 0);
        CHECK_EQ_INT(fx_write(f->s, "pt", other, t, st, 9, times[i] * NS, NULL), 0);
        calltree_free(t);
    }
    listed_t got = scan(f, l, T0, T0 + 30, 10); /* T0 + 30 is out */
    CHECK_EQ_INT(got.n, 3);
    CHECK_EQ_INT(got.id_last[0], 4);
    CHECK_EQ_INT(got.time_ns[0], (T0 + 29) * NS + 5);
    CHECK_EQ_INT(got.total[0], 13);
    CHECK_EQ_INT(got.id_last[1], 3);
    CHECK_EQ_INT(got.id_last[2], 2);
    CHECK_EQ_INT(got.kept[2], 1);
    got = scan(f, l, T0 - 100, T0 + 100, 2); /* the newest two only */
    CHECK_EQ_INT(got.n, 2);
    CHECK_EQ_INT(got.id_last[0], 1);
    CHECK_EQ_INT(got.id_last[1], 4);
    CHECK_EQ_INT(scan(f, l, T0 + 2, T0 + 12, 10).n, 0);
    CHECK_EQ_INT(scan(f, l, T0 - 100, T0 + 100, 0).n, 0);
    CHECK_EQ_INT(scan(f, other, T0 - 100, T0 + 100, 10).n, 1); /* one id: written once */
    /* ranges as far as plans reach do not overflow */
    CHECK_EQ_INT(scan(f, l, -(1LL << 40), 1LL << 40, 10).n, 4);
    labels_free(l);
    labels_free(other);
    symtab_free(st);
}

static void test_same_window(fixture_t *f)
{
    labels_t *l = fx_labels("ptree", NULL), *other = fx_labels("ptree", "dev");
    symtab_t *st = symtab_new();
    calltree_t *a = calltree_new(0), *b = calltree_new(0), *c = calltree_new(0);
    fx_add(a, st, "main;parse", 30);
    fx_add(a, st, "main;parse;lex", 5);
    fx_add(b, st, "main;write", 70);
    fx_add(b, st, "main;parse", 2);
    fx_add(c, st, "other;thing", 9);
    f->now = T0 + 20;
    size_t w = 0;
    CHECK_EQ_INT(fx_write(f->s, "pt", l, a, st, 1, (T0 + 1) * NS, &w), 0);
    CHECK_EQ_INT(fx_write(f->s, "pt", l, b, st, 2, (T0 + 7) * NS, &w), 0); /* same 10 s window */
    CHECK_EQ_INT(fx_write(f->s, "pt", other, c, st, 1, (T0 + 3) * NS, &w), 0);
    for (int pass = 0; pass < 2; pass++) { /* from memtables, then from compacted files */
        calltree_t *ga = read_back(f, l, 1, (T0 + 1) * NS);
        CHECK(ga != NULL && same_tree(ga, a));
        calltree_t *gb = read_back(f, l, 2, (T0 + 7) * NS);
        CHECK(gb != NULL && same_tree(gb, b));
        calltree_t *gc = read_back(f, other, 1, (T0 + 3) * NS); /* same id, another series */
        CHECK(gc != NULL && same_tree(gc, c));
        CHECK(read_back(f, l, 3, (T0 + 7) * NS) == NULL); /* unknown id */
        CHECK(read_back(f, l, 2, (T0 + 1) * NS) == NULL); /* another time */
        /* the window itself holds the sum of both */
        CHECK_EQ_INT(fx_block_total(f->s, "pt", l, 0, T0, T0 + 10, NULL), 107);
        calltree_free(ga);
        calltree_free(gb);
        calltree_free(gc);
        CHECK_EQ_INT(storage_compact(f->s), 0);
    }
    /* a retried write stores nothing new and the profile reads the same */
    CHECK_EQ_INT(fx_write(f->s, "pt", l, b, st, 2, (T0 + 7) * NS, &w), 0);
    CHECK_EQ_INT(w, 0);
    calltree_t *gb = read_back(f, l, 2, (T0 + 7) * NS);
    CHECK(gb != NULL && same_tree(gb, b));
    calltree_free(gb);
    calltree_free(a);
    calltree_free(b);
    calltree_free(c);
    labels_free(l);
    labels_free(other);
    symtab_free(st);
}

/* profile_retention_seconds = 300 from the profile's time. */
static void test_retention(fixture_t *f)
{
    labels_t *l = fx_labels("pret", NULL);
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "x;y", 4);
    f->now = T0;
    size_t w = 0;
    CHECK_EQ_INT(fx_write(f->s, "pt", l, t, st, 10, (T0 - 1000) * NS, &w), 0); /* already past */
    CHECK_EQ_INT(w, 1);
    CHECK(read_back(f, l, 10, (T0 - 1000) * NS) == NULL);
    CHECK_EQ_INT(fx_write(f->s, "pt", l, t, st, 11, (T0 - 100) * NS, &w), 0);
    calltree_t *g = read_back(f, l, 11, (T0 - 100) * NS);
    CHECK(g != NULL && same_tree(g, t));
    calltree_free(g);
    f->now = T0 + 199; /* 299 s after the profile: kept */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    g = read_back(f, l, 11, (T0 - 100) * NS);
    CHECK(g != NULL);
    calltree_free(g);
    CHECK_EQ_INT(scan(f, l, T0 - 2000, T0 + 10, 10).n, 1);
    f->now = T0 + 200; /* forgotten at once, dropped by compaction */
    CHECK(read_back(f, l, 11, (T0 - 100) * NS) == NULL);
    CHECK_EQ_INT(scan(f, l, T0 - 2000, T0 + 10, 10).n, 0);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    uint64_t before = stats.expired_ptrees;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    storage_stats(f->s, &stats);
    CHECK(stats.expired_ptrees > before);
    f->now = T0;
    CHECK(read_back(f, l, 11, (T0 - 100) * NS) == NULL); /* gone from disk, not only hidden */
    calltree_free(t);
    labels_free(l);
    symtab_free(st);
}

/* A tree whose encoding passes max_profile_tree_bytes is not kept. */
static void test_size_cap(fixture_t *f)
{
    labels_t *l = fx_labels("pcap", NULL);
    symtab_t *st = symtab_new();
    calltree_t *small = calltree_new(0), *big = calltree_new(0);
    fx_add(small, st, "s", 1);
    for (int i = 0; i < 200; i++) {
        char stack[32];
        snprintf(stack, sizeof stack, "m;f%d", i);
        fx_add(big, st, stack, i + 1);
    }
    f->now = T0;
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    uint64_t before = stats.oversize_ptrees;
    CHECK_EQ_INT(fx_write(f->s, "pt", l, small, st, 20, T0 * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "pt", l, big, st, 21, T0 * NS, NULL), 0);
    calltree_t *g = read_back(f, l, 20, T0 * NS);
    CHECK(g != NULL && same_tree(g, small));
    calltree_free(g);
    CHECK(read_back(f, l, 21, T0 * NS) == NULL);
    listed_t got = scan(f, l, T0, T0 + 1, 10); /* listed, flagged as not kept */
    CHECK_EQ_INT(got.n, 2);
    CHECK_EQ_INT(got.id_last[0], 21); /* same time: by profile id, descending */
    CHECK_EQ_INT(got.kept[0], 0);
    CHECK_EQ_INT(got.total[0], 200 * 201 / 2);
    CHECK_EQ_INT(got.kept[1], 1);
    storage_stats(f->s, &stats);
    CHECK_EQ_INT(stats.oversize_ptrees, before + 1);
    /* the profile still counts in its windows */
    CHECK_EQ_INT(fx_block_total(f->s, "pt", l, 0, T0, T0 + 10, NULL), 1 + 200 * 201 / 2);
    calltree_free(small);
    calltree_free(big);
    labels_free(l);
    symtab_free(st);
}

static void put_version(fixture_t *f, const char *v)
{
    char *err = NULL;
    rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[CF_META], "format_version", 14, v, strlen(v),
                   &err);
    CHECK(err == NULL);
    free(err);
}

/* A version-4 directory opens as the current version; other versions are
 * refused. */
static void test_upgrade(fixture_t *f)
{
    put_version(f, "4");
    CHECK_EQ_INT(fx_reopen(f), 0);
    size_t n = 0;
    char *err = NULL;
    char *v =
        rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_META], "format_version", 14, &n, &err);
    CHECK(v != NULL && n == 1 && v[0] == STORAGE_FORMAT_VERSION[0]);
    free(v);
    put_version(f, "3");
    storage_close(f->s);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_open(&f->opts, &f->s, &em), ERR_UNSUPPORTED);
    CHECK(strstr(em.text, "format 3") != NULL);
    f->s = NULL;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.profile_retention_seconds = 300;
    f.opts.max_profile_tree_bytes = 64;
    f.now = T0;
    if (fx_reopen(&f) != 0) return 1;
    test_same_window(&f);
    test_scan(&f);
    test_retention(&f);
    test_size_cap(&f);
    test_upgrade(&f);
    fx_done(&f);
    return check_exit();
}
