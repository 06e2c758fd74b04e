/* Unit tests for storage: write/read round trips of trees at every resolution
 * and across window boundaries, the label index, series labels, symbols,
 * spans, tenant isolation, reopening, disk usage and checkpoints. Real
 * RocksDB in a temporary directory. */
#include "test_storage_fixture.h"

/* 1 if a and b have the same shape and values below nodes na and nb. */
static int same_subtree(const calltree_t *a, uint32_t na, const calltree_t *b, uint32_t nb)
{
    if (calltree_self(a, na) != calltree_self(b, nb) ||
        calltree_total(a, na) != calltree_total(b, nb))
        return 0;
    size_t ca = 0, cb = 0;
    for (uint32_t c = calltree_first_child(b, nb); c != CALLTREE_NONE;
         c = calltree_next_sibling(b, c))
        cb++;
    for (uint32_t c = calltree_first_child(a, na); c != CALLTREE_NONE;
         c = calltree_next_sibling(a, c)) {
        ca++;
        uint32_t m = calltree_first_child(b, nb);
        while (m != CALLTREE_NONE && calltree_sym(b, m) != calltree_sym(a, c))
            m = calltree_next_sibling(b, m);
        if (m == CALLTREE_NONE || !same_subtree(a, c, b, m)) return 0;
    }
    return ca == cb;
}

static int64_t window_of(int64_t t, int64_t res)
{
    return t - (((t % res) + res) % res);
}

typedef struct event {
    int64_t t_ns;
    const char *stack;
    int64_t value;
} event_t;

/* Day-aligned base, so every resolution has a window starting at B. */
#define B 1699920000LL

static const event_t events[] = {
    {B * NS + 9999999999LL, "main;a;b", 5}, /* last ns of window B at 10 s */
    {B * NS + 9999999999LL, "main;a;c", 3},
    {(B + 10) * NS, "main;a;b", 7}, /* first ns of the next 10 s window */
    {(B + 59) * NS, "main", 1},
    {(B + 60) * NS, "main;x;y", 100},
    {(B + 3599) * NS + 500, "main;a", 11},
    {(B + 86400) * NS, "other;z", 1000}, /* next day */
    {(B - 1) * NS, "main;a;b", 10000},   /* previous day */
    {-1, "neg", 7},                      /* just before the epoch */
    {(B + 20) * NS, "main;neg", -40},    /* negative values sum too */
};
#define NEVENTS (sizeof events / sizeof events[0])

static void check_resolution(storage_t *s, const labels_t *l, int r)
{
    int64_t res = storage_resolutions[r];
    for (size_t i = 0; i < NEVENTS; i++) {
        int64_t t = events[i].t_ns / NS - (events[i].t_ns % NS < 0);
        int64_t w = window_of(t, res);
        /* expected: every event whose window is w */
        calltree_t *want = calltree_new(0);
        symtab_t *st = symtab_new();
        for (size_t j = 0; j < NEVENTS; j++) {
            int64_t tj = events[j].t_ns / NS - (events[j].t_ns % NS < 0);
            if (window_of(tj, res) == w) fx_add(want, st, events[j].stack, events[j].value);
        }
        int nw = 0, ntw = 0;
        fx_scan_t sc = fx_blocks(s, "acme", l, r, w, w + 1);
        nw = sc.windows;
        CHECK_EQ_INT(nw, 1);
        CHECK_EQ_INT(sc.first, w);
        CHECK(same_subtree(want, 0, sc.acc, 0));
        CHECK_EQ_INT(fx_totals(s, "acme", l, r, w, w + res, &ntw), calltree_root_total(want));
        CHECK_EQ_INT(ntw, 1);
        calltree_free(sc.acc);
        calltree_free(want);
        symtab_free(st);
    }
}

static void write_events(fixture_t *f, const labels_t *l, const char *tenant, uint64_t id0)
{
    for (size_t i = 0; i < NEVENTS; i++) {
        calltree_t *t = calltree_new(0);
        symtab_t *st = symtab_new();
        fx_add(t, st, events[i].stack, events[i].value);
        size_t written = 0;
        CHECK_EQ_INT(fx_write(f->s, tenant, l, t, st, id0 + i, events[i].t_ns, &written), 0);
        CHECK_EQ_INT(written, 1);
        calltree_free(t);
        symtab_free(st);
    }
}

static int64_t events_sum(void)
{
    int64_t sum = 0;
    for (size_t i = 0; i < NEVENTS; i++)
        sum += events[i].value;
    return sum;
}

static void check_all(storage_t *s, const labels_t *l)
{
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        check_resolution(s, l, r);
        int n = 0;
        CHECK_EQ_INT(fx_block_total(s, "acme", l, r, INT64_MIN, INT64_MAX, &n), events_sum());
        CHECK_EQ_INT(fx_totals(s, "acme", l, r, INT64_MIN, INT64_MAX, NULL), events_sum());
        CHECK(n >= 1);
    }
    /* [from, until) at 10 s: B+10 and B+20 and B+50, not B+60 */
    int n = 0;
    CHECK_EQ_INT(fx_totals(s, "acme", l, 0, B + 10, B + 60, &n), 7 - 40 + 1);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(fx_totals(s, "acme", l, 0, B + 60, B + 60, &n), 0);
    CHECK_EQ_INT(n, 0);
    /* one day window holds everything of day B */
    CHECK_EQ_INT(fx_totals(s, "acme", l, 4, B, B + 86400, &n), 5 + 3 + 7 + 1 + 100 + 11 - 40);
    CHECK_EQ_INT(n, 1);
}

/* --- label index ---------------------------------------------------------- */

typedef struct names {
    char items[16][64];
    int n, unsorted;
} names_t;

static int collect_name(void *ctx, const char *name)
{
    names_t *c = ctx;
    if (c->n > 0 && strcmp(c->items[c->n - 1], name) >= 0) c->unsorted++;
    if (c->n < 16) snprintf(c->items[c->n++], 64, "%s", name);
    return 0;
}

static int stop_after_one(void *ctx, const char *name)
{
    (*(int *)ctx)++;
    return 42;
}

typedef struct ids {
    uint64_t token[8], series[8];
    int n;
} ids_t;

static int collect_series(void *ctx, uint64_t token, uint64_t series_id)
{
    ids_t *c = ctx;
    if (c->n < 8) {
        c->token[c->n] = token;
        c->series[c->n++] = series_id;
    }
    return 0;
}

static void test_label_index(fixture_t *f)
{
    labels_t *l1 = fx_labels("app", "prod"), *l2 = fx_labels("app", "dev"),
             *l3 = fx_labels("svc2", NULL), *l4 = fx_labels("app", "prod");
    labels_set_str(l3, "alpha", "1");
    labels_set_str(l4, "zone", "");
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "f;g", 1);
    CHECK_EQ_INT(fx_write(f->s, "idx", l1, t, st, 1, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "idx", l2, t, st, 2, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "idx", l3, t, st, 3, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "idx", l4, t, st, 4, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "idx", l1, t, st, 5, B * NS, NULL), 0); /* same series again */
    /* a tenant whose name extends "idx" must not show up */
    labels_t *other = fx_labels("intruder", "evil");
    CHECK_EQ_INT(fx_write(f->s, "idx2", other, t, st, 1, B * NS, NULL), 0);

    names_t c = {0};
    CHECK_EQ_INT(storage_label_names(f->s, "idx", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 6);
    CHECK_EQ_INT(c.unsorted, 0);
    CHECK_EQ_STR(c.items[0], "__name__");
    CHECK_EQ_STR(c.items[1], "__profile_type__");
    CHECK_EQ_STR(c.items[2], "alpha");
    CHECK_EQ_STR(c.items[3], "env");
    CHECK_EQ_STR(c.items[4], "service_name");
    CHECK_EQ_STR(c.items[5], "zone");

    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_label_values(f->s, "idx", "service_name", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(c.unsorted, 0);
    CHECK_EQ_STR(c.items[0], "app");
    CHECK_EQ_STR(c.items[1], "svc2");
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_label_values(f->s, "idx", "env", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.items[0], "dev");
    CHECK_EQ_STR(c.items[1], "prod");
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_label_values(f->s, "idx", "zone", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.items[0], "");
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_label_values(f->s, "idx", "nope", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 0);
    int calls = 0;
    CHECK_EQ_INT(storage_label_names(f->s, "idx", stop_after_one, &calls), 42);
    CHECK_EQ_INT(calls, 1);

    ids_t ids = {0};
    CHECK_EQ_INT(storage_postings(f->s, "idx", "env", "prod", collect_series, &ids), 0);
    CHECK_EQ_INT(ids.n, 2); /* l1 and l4 */
    ids_t app = {0};
    CHECK_EQ_INT(storage_postings(f->s, "idx", "service_name", "app", collect_series, &app), 0);
    CHECK_EQ_INT(app.n, 3);
    ids_t none = {0};
    CHECK_EQ_INT(storage_postings(f->s, "idx", "env", "pro", collect_series, &none), 0);
    CHECK_EQ_INT(none.n, 0);
    for (int i = 0; i < ids.n; i++) {
        labels_t *got = NULL;
        CHECK_EQ_INT(storage_series_labels(f->s, "idx", ids.token[i], ids.series[i], &got), 0);
        CHECK(got != NULL && labels_hash(got) == ids.series[i]);
        CHECK(got != NULL && strcmp(labels_get(got, "env"), "prod") == 0);
        labels_free(got);
        /* the same series is invisible from another tenant */
        CHECK_EQ_INT(storage_series_labels(f->s, "idx2", ids.token[i], ids.series[i], &got),
                     ERR_NOT_FOUND);
    }
    labels_t *got = NULL;
    CHECK_EQ_INT(storage_series_labels(f->s, "idx", 1, 2, &got), ERR_NOT_FOUND);
    CHECK(got == NULL);

    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(storage_label_values(f->s, "idx2", "service_name", collect_name, &c), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.items[0], "intruder");

    labels_free(l1);
    labels_free(l2);
    labels_free(l3);
    labels_free(l4);
    labels_free(other);
    calltree_free(t);
    symtab_free(st);
}

/* --- tenants, symbols, spans ------------------------------------------------ */

static void test_tenants(fixture_t *f)
{
    labels_t *l = fx_labels("shared", "prod");
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "a", 3);
    CHECK_EQ_INT(fx_write(f->s, "t1", l, t, st, 77, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_write(f->s, "t2", l, t, st, 77, B * NS, NULL), 0); /* same id, other tenant */
    CHECK_EQ_INT(fx_write(f->s, "t2", l, t, st, 78, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_totals(f->s, "t1", l, 0, B, B + 10, NULL), 3);
    CHECK_EQ_INT(fx_totals(f->s, "t2", l, 0, B, B + 10, NULL), 6);
    CHECK_EQ_INT(fx_totals(f->s, "t", l, 0, B, B + 10, NULL), 0);
    char longest[STORAGE_TENANT_MAX + 2];
    memset(longest, 'x', sizeof longest);
    longest[STORAGE_TENANT_MAX] = '\0';
    CHECK_EQ_INT(fx_write(f->s, longest, l, t, st, 1, B * NS, NULL), 0);
    CHECK_EQ_INT(fx_totals(f->s, longest, l, 0, B, B + 10, NULL), 3);
    longest[STORAGE_TENANT_MAX] = 'x';
    longest[STORAGE_TENANT_MAX + 1] = '\0';
    CHECK_EQ_INT(fx_write(f->s, longest, l, t, st, 1, B * NS, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(fx_write(f->s, "", l, t, st, 1, B * NS, NULL), ERR_INVALID_ARGUMENT);
    names_t c = {0};
    CHECK_EQ_INT(storage_label_names(f->s, longest, collect_name, &c), ERR_INVALID_ARGUMENT);
    uint64_t id = labels_hash(l);
    CHECK_EQ_INT(storage_scan_totals(f->s, "t1", id >> 1, id, STORAGE_RESOLUTION_COUNT, 0, 1,
                                     fx_total_cb, &c),
                 ERR_INVALID_ARGUMENT);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

static void test_symbols(fixture_t *f)
{
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "alpha;beta;gamma", 1);
    uint64_t ids[4];
    for (int i = 0; i < 3; i++)
        ids[i] = symtab_id_at(st, (size_t)i);
    ids[3] = 12345; /* unknown: skipped */
    labels_t *l = fx_labels("symsvc", NULL);
    CHECK_EQ_INT(fx_write(f->s, "sym", l, t, st, 1, B * NS, NULL), 0);
    symtab_t *got = symtab_new();
    CHECK_EQ_INT(storage_load_symbols(f->s, "sym", ids, 4, got), 0);
    CHECK_EQ_INT(symtab_count(got), 3);
    for (int i = 0; i < 3; i++) {
        const char *n1 = NULL, *f1 = NULL, *n2 = NULL, *f2 = NULL;
        CHECK(symtab_get(st, ids[i], &n1, &f1));
        CHECK(symtab_get(got, ids[i], &n2, &f2));
        CHECK_EQ_STR(n1, n2);
        CHECK_EQ_STR(f2, "file.c");
    }
    symtab_t *other = symtab_new();
    CHECK_EQ_INT(storage_load_symbols(f->s, "sym2", ids, 4, other), 0);
    CHECK_EQ_INT(symtab_count(other), 0); /* symbols are per tenant */
    /* a tree whose symbol is missing from the symtab is refused */
    calltree_t *bad = calltree_new(0);
    uint64_t unknown[] = {999};
    calltree_add_stack(bad, unknown, 1, 1);
    CHECK_EQ_INT(fx_write(f->s, "sym", l, bad, st, 2, B * NS, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(fx_totals(f->s, "sym", l, 0, B, B + 10, NULL), 1);
    calltree_free(bad);
    symtab_free(other);
    symtab_free(got);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

typedef struct span_seen {
    int n;
    int64_t total;
    uint64_t series;
} span_seen_t;

static int span_cb(void *ctx, uint64_t token, uint64_t series_id, int64_t window, unsigned flags,
                   const uint8_t *v, size_t n)
{
    span_seen_t *ss = ctx;
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    ss->total += calltree_root_total(t);
    ss->series = series_id;
    ss->n++;
    calltree_free(t);
    return 0;
}

static void test_spans(fixture_t *f)
{
    symtab_t *st = symtab_new();
    calltree_t *all = calltree_new(0), *s1 = calltree_new(0), *s2 = calltree_new(0);
    fx_add(s1, st, "req;db", 30);
    fx_add(s2, st, "req;cpu", 12);
    calltree_merge(all, s1);
    calltree_merge(all, s2);
    labels_t *l = fx_labels("spansvc", NULL);
    storage_span_tree_t spans[] = {{STORAGE_SPAN_KIND_SPAN, 0xabc, s1},
                                   {STORAGE_SPAN_KIND_SPAN, 0xdef, s2},
                                   {STORAGE_SPAN_KIND_TRACE, 0xabc, all}};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = all, .spans = spans, .nspans = 3};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {
        .tenant = "sp", .time_ns = B * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, 1);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    fx_id(p.profile_id, 2);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    fx_id(p.profile_id, 2); /* a retry: spans count once too */
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    span_seen_t ss = {0};
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "sp", STORAGE_SPAN_KIND_SPAN, 0xabc, B, B + 10, span_cb, &ss), 0);
    CHECK_EQ_INT(ss.n, 1);
    CHECK_EQ_INT(ss.total, 60);
    CHECK(ss.series == sw.series_id);
    memset(&ss, 0, sizeof ss);
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "sp", STORAGE_SPAN_KIND_TRACE, 0xabc, B, B + 10, span_cb, &ss), 0);
    CHECK_EQ_INT(ss.total, 84);
    memset(&ss, 0, sizeof ss);
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "sp", STORAGE_SPAN_KIND_SPAN, 0xabd, B, B + 10, span_cb, &ss), 0);
    CHECK_EQ_INT(ss.n, 0);
    /* spans are filed under the 10 s window of the profile's time */
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "sp", STORAGE_SPAN_KIND_SPAN, 0xabc, B + 10, B + 20, span_cb, &ss),
        0);
    CHECK_EQ_INT(ss.n, 0);
    labels_free(l);
    calltree_free(all);
    calltree_free(s1);
    calltree_free(s2);
    symtab_free(st);
}

static void test_checkpoint(fixture_t *f, const labels_t *l)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/backup", f->dir);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_checkpoint(f->s, dir, &em), 0);
    CHECK_EQ_INT(storage_checkpoint(f->s, dir, &em), ERR_IO); /* exists already */
    CHECK(strlen(em.text) > 0);
    storage_options_t o = f->opts;
    o.path = dir;
    storage_t *copy = NULL;
    CHECK_EQ_INT(storage_open(&o, &copy, &em), 0);
    if (copy != NULL)
        CHECK_EQ_INT(fx_totals(copy, "acme", l, 4, INT64_MIN, INT64_MAX, NULL), events_sum());
    storage_close(copy);
}

/* A scaled tree (calltree_adopt_scaled: a sample type that is a multiple of
 * another's) is stored as the tree of its values, and the write reads them
 * from its base without making them (it still holds no values after). */
static void test_scaled_tree(fixture_t *f)
{
    labels_t *l = fx_labels("scaled", NULL);
    symtab_t *st = symtab_new();
    calltree_t *a = calltree_new(0), *s = calltree_new(0), *want = calltree_new(0);
    const char *stacks[] = {"main;a;b", "main;a;c", "main;d", "main;a;b;e", "other"};
    for (int i = 0; i < 5; i++) {
        fx_add(a, st, stacks[i], i + 1);
        fx_add(want, st, stacks[i], (int64_t)(i + 1) * -7);
    }
    calltree_shrink(a);
    CHECK_EQ_INT(calltree_adopt_scaled(s, a, -7), 0);
    size_t held = calltree_mem_bytes(s);
    CHECK_EQ_INT(fx_write(f->s, "t", l, s, st, 91, B * NS, NULL), 0);
    CHECK_EQ_INT(calltree_mem_bytes(s), held);
    fx_scan_t sc = fx_blocks(f->s, "t", l, 0, B, B + 10);
    CHECK_EQ_INT(fx_tree_diff(sc.acc, want), 0);
    CHECK_EQ_INT(calltree_root_total(sc.acc), -7 * 15);
    CHECK_EQ_INT(fx_totals(f->s, "t", l, 0, B, B + 10, NULL), -7 * 15);
    calltree_free(sc.acc);
    calltree_free(want);
    calltree_free(s);
    calltree_free(a);
    symtab_free(st);
    labels_free(l);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    /* events go back to 1970: keep every resolution forever here */
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
        f.opts.retention_seconds[r] = 0;
    if (fx_reopen(&f) != 0) return 1;
    labels_t *l = fx_labels("app", "prod");
    write_events(&f, l, "acme", 1000);
    check_all(f.s, l);
    test_label_index(&f);
    test_tenants(&f);
    test_symbols(&f);
    test_spans(&f);
    test_scaled_tree(&f);

    CHECK_EQ_INT(fx_reopen(&f), 0);
    check_all(f.s, l); /* everything survives a close and reopen */
    test_checkpoint(&f, l);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    check_all(f.s, l); /* and a full compaction (merge operands folded) */
    uint64_t bytes = 0;
    CHECK_EQ_INT(storage_disk_usage(f.s, &bytes), 0);
    CHECK(bytes > 0);
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK_EQ_INT(stats.corrupt_operands, 0);
    fprintf(stderr, "disk usage %llu bytes\n", (unsigned long long)bytes);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
