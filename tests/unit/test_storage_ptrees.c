/* Unit tests for single stored profiles (profile_trees): two profiles of one
 * series in the same 10 s window read back exactly, each its own (while the
 * window's block holds their sum); other series, unknown ids; listing a
 * series newest first within a range and a count, and all of them oldest
 * first; the size cap;
 * profile retention at read, at write and by compaction; scaled trees (a
 * series stored as a factor of another); and the upgrade of format-4 and
 * format-8 data directories. */
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
                   int kept, int piece)
{
    (void)piece;
    listed_t *l = ctx;
    if (l->n < 16) {
        l->time_ns[l->n] = time_ns;
        l->total[l->n] = total;
        l->kept[l->n] = kept;
        l->id_last[l->n++] = profile_id[15]; /* fx_id: the number ends the id */
    }
    return 0;
}

static listed_t scan_token(fixture_t *f, const labels_t *l, uint64_t token, int64_t from_s,
                           int64_t until_s, size_t max)
{
    listed_t out = {0};
    uint64_t sid = labels_hash(l);
    CHECK_EQ_INT(
        storage_scan_profile_trees(f->s, "pt", token, sid, from_s, until_s, max, list_fn, &out), 0);
    return out;
}

static listed_t scan(fixture_t *f, const labels_t *l, int64_t from_s, int64_t until_s, size_t max)
{
    return scan_token(f, l, labels_hash(l) >> 1, from_s, until_s, max);
}

/* storage_scan_profile_trees_spans over n ranges: every one in them, each
 * range oldest first. */
static listed_t scan_spans(fixture_t *f, const labels_t *l, const int64_t *from_s,
                           const int64_t *until_s, size_t n)
{
    listed_t out = {0};
    uint64_t sid = labels_hash(l);
    CHECK_EQ_INT(storage_scan_profile_trees_spans(f->s, "pt", sid >> 1, sid, from_s, until_s, n,
                                                  list_fn, &out),
                 0);
    return out;
}

static listed_t scan_all(fixture_t *f, const labels_t *l, int64_t from_s, int64_t until_s)
{
    return scan_spans(f, l, &from_s, &until_s, 1);
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
    /* all of them, oldest first, the same ones within the same bounds */
    got = scan_all(f, l, T0, T0 + 30);
    CHECK_EQ_INT(got.n, 3);
    CHECK_EQ_INT(got.id_last[0], 2);
    CHECK_EQ_INT(got.time_ns[0], (T0 + 1) * NS + 5);
    CHECK_EQ_INT(got.id_last[1], 3);
    CHECK_EQ_INT(got.id_last[2], 4);
    CHECK_EQ_INT(got.total[2], 13);
    CHECK_EQ_INT(scan_all(f, l, -(1LL << 40), 1LL << 40).n, 4);
    CHECK_EQ_INT(scan_all(f, l, T0 + 2, T0 + 12).n, 0);
    f->now = T0 + 1 + 300; /* profile retention 300 s: the oldest is past it, the rest kept */
    got = scan_all(f, l, T0 - 100, T0 + 100);
    CHECK_EQ_INT(got.n, 3);
    CHECK_EQ_INT(got.id_last[0], 3);
    CHECK_EQ_INT(got.id_last[2], 1);
    CHECK_EQ_INT(scan(f, l, T0 - 100, T0 + 100, 10).n, 3);
    f->now = T0 + 100;
    /* several ranges: those between them are not listed, each once */
    int64_t lo1[] = {T0, T0 + 20, T0 + 29}, hi1[] = {T0 + 2, T0 + 29, T0 + 40};
    got = scan_spans(f, l, lo1, hi1, 3); /* T0 + 12 lies between: a seek */
    CHECK_EQ_INT(got.n, 3);
    CHECK_EQ_INT(got.id_last[0], 2);
    CHECK_EQ_INT(got.id_last[1], 4);
    CHECK_EQ_INT(got.id_last[2], 1);
    int64_t lo2[] = {T0 + 10, T0, T0 + 5}, hi2[] = {T0 + 31, T0 + 10, T0 + 5};
    got = scan_spans(f, l, lo2, hi2, 3); /* out of order, an empty one: still each once */
    CHECK_EQ_INT(got.n, 4);
    CHECK_EQ_INT(got.id_last[0], 3);
    CHECK_EQ_INT(got.id_last[2], 1);
    CHECK_EQ_INT(got.id_last[3], 2);
    int64_t lo3[] = {T0 + 2, T0 + 13}, hi3[] = {T0 + 12, T0 + 29};
    CHECK_EQ_INT(scan_spans(f, l, lo3, hi3, 2).n, 0); /* adjacent to entries, holding none */
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
    f->now = T0 + 200; /* forgotten at once */
    CHECK(read_back(f, l, 11, (T0 - 100) * NS) == NULL);
    CHECK_EQ_INT(scan(f, l, T0 - 2000, T0 + 10, 10).n, 0);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    uint64_t before = stats.expired_ptrees;
    /* kept by compaction while its 10 s window lives: the window reads it
     * (format 11, the tree is in no block) */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    storage_stats(f->s, &stats);
    CHECK_EQ_INT(stats.expired_ptrees, before);
    CHECK_EQ_INT(fx_block_total(f->s, "pt", l, 0, T0 - 100, T0 - 90, NULL), 4);
    f->now = T0;
    g = read_back(f, l, 11, (T0 - 100) * NS); /* still on disk */
    CHECK(g != NULL);
    calltree_free(g);
    /* the window expires (1 day at 10 s): now compaction drops the tree */
    f->now = T0 - 90 + f->opts.retention_seconds[0];
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

/* The stored profile_trees value of series l's profile (caller frees). */
static char *raw_value(fixture_t *f, const labels_t *l, uint64_t token, uint64_t id,
                       int64_t time_ns, size_t *n)
{
    skey_t k;
    uint8_t pid[16];
    fx_id(pid, id);
    storage_key_ptree(&k, token, "pt", labels_hash(l), time_ns, pid);
    char *err = NULL;
    char *v =
        rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_PTREES], (const char *)k.b, k.n, n, &err);
    CHECK(err == NULL);
    free(err);
    return v;
}

/* 1 if the value of series l is scaled (a factor of another series). */
static int is_scaled(fixture_t *f, const labels_t *l, uint64_t token, uint64_t id, int64_t t)
{
    size_t n = 0;
    char *v = raw_value(f, l, token, id, t, &n);
    CHECK(v != NULL && n >= PTREE_HEADER_LEN);
    int r = v != NULL && n >= 2 && (v[1] & PTREE_FLAG_SCALED) != 0;
    if (r) CHECK(n <= PTREE_SCALED_MAX_LEN);
    free(v);
    return r;
}

/* A profile's series that share one token and one shape, written in one
 * batch: a series c times the last plain one before it stores only c and
 * reads back exactly; a series that is not (a value off, a factor that does
 * not divide, another token) is stored as it is. */
static void test_scaled(fixture_t *f)
{
    enum { N = 6 };
    static const char *const env[N] = {"samples", "cpu", "triple", "off", "half", "far"};
    labels_t *l[N];
    calltree_t *t[N];
    symtab_t *st = symtab_new();
    static const char *const stacks[3] = {"main;parse", "main;parse;lex", "main;write"};
    static const int64_t samples[3] = {3, 1, 4};
    /* x 10^7; x 3; x 10^7 but one value off; values no integer factor
     * divides (of samples or of off); x 10^7 on another token */
    static const int64_t mul[N] = {1, 10000000, 3, 10000000, 1, 10000000};
    storage_series_write_t sw[N];
    for (int i = 0; i < N; i++) {
        l[i] = fx_labels("pscale", env[i]);
        t[i] = calltree_new(0);
        for (int j = 0; j < 3; j++) {
            int64_t v = samples[j] * mul[i];
            if (i == 3 && j == 2) v += 1;
            if (i == 4) v = samples[j] * 2 - 1; /* 5, 1, 7: no multiple of 3, 1, 4 */
            fx_add(t[i], st, stacks[j], v);
        }
        sw[i] = (storage_series_write_t){
            .labels = l[i], .series_id = labels_hash(l[i]), .token = 77, .tree = t[i]};
    }
    sw[N - 1].token = 78;
    const int64_t time_ns = (T0 + 4) * NS;
    storage_profile_write_t p = {
        .tenant = "pt", .time_ns = time_ns, .series = sw, .nseries = N, .symbols = st};
    fx_id(p.profile_id, 40);
    f->now = T0 + 10;
    errmsg_t em = {{0}};
    size_t written = 0;
    CHECK_EQ_INT(storage_write_profile(f->s, &p, &written, &em), 0);
    CHECK_EQ_INT(written, N);
    /* "off" is stored plain and so becomes what "half" is compared with */
    static const int scaled[N] = {0, 1, 1, 0, 0, 0};
    for (int pass = 0; pass < 2; pass++) { /* from memtables, then from compacted files */
        for (int i = 0; i < N; i++) {
            CHECK_EQ_INT(is_scaled(f, l[i], sw[i].token, 40, time_ns), scaled[i]);
            calltree_t *g = calltree_new(0);
            CHECK_EQ_INT(storage_read_profile(f->s, "pt", sw[i].token, sw[i].series_id, time_ns,
                                              p.profile_id, g),
                         0);
            CHECK(same_tree(g, t[i]));
            CHECK_EQ_INT(calltree_root_total(g), calltree_root_total(t[i]));
            calltree_free(g);
        }
        listed_t got = scan_token(f, l[1], 77, T0, T0 + 10, 10);
        CHECK_EQ_INT(got.n, 1);
        CHECK_EQ_INT(got.kept[0], 1);
        CHECK_EQ_INT(got.total[0], 8 * 10000000LL);
        CHECK_EQ_INT(storage_compact(f->s), 0);
    }
    /* a base too large to keep is no base: both keep only their header */
    for (int i = 0; i < 2; i++) {
        calltree_free(t[i]);
        t[i] = calltree_new(0);
        for (int j = 0; j < 200; j++) {
            char stack[32];
            snprintf(stack, sizeof stack, "m;f%d", j);
            fx_add(t[i], st, stack, (j + 1) * mul[i]);
        }
        sw[i].tree = t[i];
    }
    p.nseries = 2;
    fx_id(p.profile_id, 41);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, &written, &em), 0);
    CHECK_EQ_INT(written, 2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(is_scaled(f, l[i], 77, 41, time_ns), 0);
        calltree_t *g = calltree_new(0);
        CHECK_EQ_INT(
            storage_read_profile(f->s, "pt", 77, sw[i].series_id, time_ns, p.profile_id, g),
            ERR_NOT_FOUND);
        calltree_free(g);
    }
    for (int i = 0; i < N; i++) {
        calltree_free(t[i]);
        labels_free(l[i]);
    }
    symtab_free(st);
}

/* Scaled values that do not hold together read as corrupt, never as a
 * tree: no factor, a zero factor, bytes after it, a base that is missing,
 * scaled itself (here: the value itself) or not kept. */
static void test_scaled_corrupt(fixture_t *f)
{
    labels_t *l = fx_labels("pbad", NULL);
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "a;b", 3);
    f->now = T0 + 10;
    CHECK_EQ_INT(fx_write(f->s, "pt", l, t, st, 50, T0 * NS, NULL), 0);
    uint64_t sid = labels_hash(l), token = sid >> 1;
    labels_t *big = fx_labels("pbad", "big");
    calltree_t *bt = calltree_new(0);
    for (int i = 0; i < 200; i++) {
        char stack[32];
        snprintf(stack, sizeof stack, "m;f%d", i);
        fx_add(bt, st, stack, i + 1);
    }
    storage_series_write_t sw = {
        .labels = big, .series_id = labels_hash(big), .token = token, .tree = bt};
    storage_profile_write_t p = {
        .tenant = "pt", .time_ns = T0 * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, 50);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0); /* over the cap: header only */
    uint8_t pid[16];
    fx_id(pid, 50);
    skey_t k;
    storage_key_ptree(&k, token, "pt", sid, T0 * NS, pid);
    uint8_t v[32] = {PTREE_VERSION, PTREE_FLAG_SCALED};
    storage_i64_put(v + 2, 3);
    const uint64_t bases[] = {0x1234, sid, labels_hash(big)}; /* missing, itself, not kept */
    struct {
        size_t n;
        uint64_t base;
        uint8_t tail[3];
    } bad[] = {{PTREE_HEADER_LEN, 0, {0}},
               {PTREE_HEADER_LEN + 4, sid, {0}},
               {PTREE_HEADER_LEN + 8, sid, {0}},
               {PTREE_HEADER_LEN + 9, sid, {0}},
               {PTREE_HEADER_LEN + 10, sid, {2, 0}},
               {PTREE_HEADER_LEN + 9, bases[0], {2}},
               {PTREE_HEADER_LEN + 9, bases[1], {2}},
               {PTREE_HEADER_LEN + 9, bases[2], {2}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        storage_i64_put(v + PTREE_HEADER_LEN, (int64_t)bad[i].base);
        memcpy(v + PTREE_HEADER_LEN + 8, bad[i].tail, sizeof bad[i].tail);
        char *err = NULL;
        rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[CF_PTREES], (const char *)k.b, k.n,
                       (const char *)v, bad[i].n, &err);
        CHECK(err == NULL);
        free(err);
        calltree_t *g = calltree_new(0);
        CHECK_EQ_INT(storage_read_profile(f->s, "pt", token, sid, T0 * NS, pid, g), ERR_CORRUPT);
        calltree_free(g);
    }
    calltree_free(t);
    calltree_free(bt);
    labels_free(l);
    labels_free(big);
    symtab_free(st);
}

/* A version-4 directory opens as the current version; other versions are
 * refused. */
static void test_upgrade(fixture_t *f)
{
    fx_put_version(f, "4");
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    /* format 8 (no scaled trees) opens as it is, its profiles read back */
    fx_put_version(f, "8");
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    labels_t *l = fx_labels("ptree", NULL);
    calltree_t *g = read_back(f, l, 1, (T0 + 1) * NS);
    CHECK(g != NULL && calltree_root_total(g) == 35);
    calltree_free(g);
    /* format 10 (no tree flagged PTREE_FLAG_UNBLOCKED) opens as it is, only
     * the marker rewritten: its windows read the same */
    int64_t w0 = fx_block_total(f->s, "pt", l, 0, T0 - 86400, T0 + 86400, NULL);
    CHECK(w0 > 0);
    fx_put_version(f, "10");
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    CHECK_EQ_INT(fx_block_total(f->s, "pt", l, 0, T0 - 86400, T0 + 86400, NULL), w0);
    labels_free(l);
    fx_put_version(f, "3");
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
    test_scaled(&f);
    test_scaled_corrupt(&f);
    test_upgrade(&f);
    fx_done(&f);
    return check_exit();
}
