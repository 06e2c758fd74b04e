/* test_query_timeline_count.c — the profiles of an averaged type counted
 * per timeline bucket (query_timeline_count) on a real RocksDB: from each
 * window's own count (window_profiles, storage format 14), which outlives
 * profile retention, and from profile_trees only for a window not counted
 * exactly (written before format 14, or at a resolution whose windows
 * expire before their profiles: format 16), which past profile retention
 * counts nothing, as before. Pieces of split pushes (several series of one
 * profile, storage_series_write_t.piece) count each push once over any
 * selection of them, from the windows' ids, from profile_trees, and from
 * profile_trees where a window lists no ids (format 18). */
#include "test_storage_fixture.h"

#include "query/query_int.h"

#define T0 1700006400LL

static void counts_of(fixture_t *f, size_t n, uint64_t *token, uint64_t *series, int64_t out[6],
                      int64_t *all)
{
    query_plan_t plan;
    query_plan_range(T0, T0 + 60, 0, STORAGE_RESOLUTION_COUNT - 1, &plan);
    query_timeline_t tl;
    int res;
    CHECK_EQ_INT(query_timeline_init(&plan, &tl, &res), 0);
    CHECK_EQ_INT(tl.n, 6);
    CHECK_EQ_INT(query_timeline_average(&tl), 0);
    query_series_t ser = {n, token, series, NULL, NULL};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_timeline_count(f->s, "t", &ser, &plan, &tl, &em), 0);
    query_timeline_unite(&tl);
    for (size_t i = 0; i < 6 && i < tl.n; i++)
        out[i] = tl.counts[i];
    *all = tl.profiles;
    query_timeline_free(&tl);
}

static void counts(fixture_t *f, uint64_t token, uint64_t series, int64_t out[6], int64_t *all)
{
    counts_of(f, 1, &token, &series, out, all);
}

/* Profile id of the first n of the pieces sw (all of one type), at t. */
static void push_pieces(fixture_t *f, storage_series_write_t *sw, size_t n, const symtab_t *st,
                        uint64_t id, int64_t t)
{
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = t * NS, .series = sw, .nseries = n, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
}

/* Push 1 split in three series (pieces a, b, c) and push 2 in two (a, b)
 * in the fourth window, a push of series a alone (no piece) in the sixth:
 * every selection counts each push once. */
static void check_pieces(fixture_t *f, const char *svc, uint64_t id0)
{
    labels_t *l[3];
    storage_series_write_t sw[3];
    uint64_t tok[3], sid[3];
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;wait", 4);
    for (int i = 0; i < 3; i++) {
        l[i] = fx_labels(svc, i == 0 ? "a" : i == 1 ? "b" : "c");
        tok[i] = 70 + (uint64_t)i;
        sid[i] = labels_hash(l[i]);
        sw[i] = (storage_series_write_t){
            .labels = l[i], .series_id = sid[i], .tree = t, .token = tok[i], .piece = true};
    }
    push_pieces(f, sw, 3, st, id0, T0 + 31);
    push_pieces(f, sw, 2, st, id0 + 1, T0 + 33);
    sw[0].piece = false;
    push_pieces(f, sw, 1, st, id0 + 2, T0 + 52);
    int64_t c[6], all;
    counts_of(f, 3, tok, sid, c, &all); /* the whole service */
    CHECK_EQ_INT(c[3], 2);
    CHECK_EQ_INT(c[5], 1);
    CHECK_EQ_INT(all, 3);
    counts_of(f, 1, tok + 2, sid + 2, c, &all); /* one piece */
    CHECK_EQ_INT(c[3], 1);
    CHECK_EQ_INT(all, 1);
    counts_of(f, 2, tok + 1, sid + 1, c, &all); /* two pieces: b and c */
    CHECK_EQ_INT(c[3], 2);
    CHECK_EQ_INT(all, 2);
    counts_of(f, 2, tok, sid, c, &all); /* a and b: a's lone push too */
    CHECK_EQ_INT(c[3], 2);
    CHECK_EQ_INT(c[5], 1);
    CHECK_EQ_INT(all, 3);
    /* the ids' memory is charged while counting, given back after: a
     * budget too small refuses, naming the setting */
    query_plan_t plan;
    query_plan_range(T0, T0 + 60, 0, STORAGE_RESOLUTION_COUNT - 1, &plan);
    alloc_budget_t budget;
    alloc_charge_t charge;
    for (int small = 1; small >= 0; small--) {
        alloc_budget_init(&budget, small ? 16 : 1 << 20);
        alloc_charge_init(&charge, &budget);
        plan.charge = &charge;
        query_timeline_t tl;
        int res;
        CHECK_EQ_INT(query_timeline_init(&plan, &tl, &res), 0);
        CHECK_EQ_INT(query_timeline_average(&tl), 0);
        query_series_t ser = {3, tok, sid, NULL, NULL};
        errmsg_t em = {{0}};
        CHECK_EQ_INT(query_timeline_count(f->s, "t", &ser, &plan, &tl, &em),
                     small ? ERR_UNAVAILABLE : 0);
        CHECK(!small || strstr(em.text, "query-memory-bytes") != NULL);
        CHECK(small || tl.npushes == 2);
        CHECK_EQ_INT(charge.used, 0);
        alloc_charge_done(&charge);
        query_timeline_free(&tl);
    }
    for (int i = 0; i < 3; i++)
        labels_free(l[i]);
    calltree_free(t);
    symtab_free(st);
}

/* One push's pieces met many times (from many series, or answers) are
 * kept once when the array fills: it does not grow with them. */
static void test_pushes_kept_once(void)
{
    query_timeline_t tl = {.n = 2};
    tl.counts = calloc(2, sizeof *tl.counts);
    CHECK(tl.counts != NULL);
    for (int round = 0; round < 50; round++)
        for (uint8_t k = 0; k < 10; k++) {
            uint8_t id[STORAGE_WPROF_ID_LEN] = {k, 7};
            CHECK_EQ_INT(query_timeline_add_push(&tl, k % 2, id), 0);
        }
    CHECK(tl.pushes_cap <= 64);
    query_timeline_unite(&tl);
    CHECK_EQ_INT(tl.counts[0], 5);
    CHECK_EQ_INT(tl.counts[1], 5);
    CHECK_EQ_INT(tl.profiles, 10);
    CHECK_EQ_INT(tl.npushes, 0);
    query_timeline_free(&tl);
}

int main(void)
{
    test_pushes_kept_once();
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.profile_retention_seconds = 300;
    f.now = T0 + 60;
    if (fx_reopen(&f) != 0) return 1;
    labels_t *l = fx_labels("tc", NULL);
    uint64_t sid = labels_hash(l), token = 90;
    symtab_t *st = symtab_new();
    /* three profiles in the first 10 s window, written "before format 14":
     * their window profiles deleted, as a format-13 release left them */
    for (int i = 0; i < 3; i++)
        fx_push(f.s, l, st, token, i, (T0 + 1 + i) * NS, 10 + (uint64_t)i);
    skey_t lo, hi;
    storage_key_series(&lo, token, "t", sid);
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    char *err = NULL;
    rocksdb_delete_range_cf(f.s->db, f.s->wopts, f.s->cf[CF_WPROFILES], (const char *)lo.b, lo.n,
                            (const char *)hi.b, hi.n, &err);
    CHECK(err == NULL);
    free(err);
    /* two in the third window, one in the sixth: counted by their windows */
    fx_push(f.s, l, st, token, 3, (T0 + 21) * NS, 20);
    fx_push(f.s, l, st, token, 4, (T0 + 25) * NS, 21);
    fx_push(f.s, l, st, token, 5, (T0 + 55) * NS, 22);
    int64_t c[6], all;
    counts(&f, token, sid, c, &all);
    const int64_t want[6] = {3, 0, 2, 0, 0, 1};
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(c[i], want[i]);
    CHECK_EQ_INT(all, 6);
    /* past profile retention (the 10 s windows are still kept): the trees
     * are gone; the windows counted by themselves still count */
    f.now = T0 + 3600;
    CHECK_EQ_INT(storage_compact(f.s), 0);
    counts(&f, token, sid, c, &all);
    const int64_t later[6] = {0, 0, 2, 0, 0, 1};
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(c[i], later[i]);
    CHECK_EQ_INT(all, 3);
    /* profile retention a week, longer than the 10 s windows' day: those
     * windows get no value (format 16) and count from profile_trees,
     * exactly, for as long as they are kept */
    f.opts.profile_retention_seconds = 7 * 86400;
    f.now = T0 + 60;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l2 = fx_labels("tc-week", NULL);
    uint64_t sid2 = labels_hash(l2);
    for (int i = 0; i < 4; i++)
        fx_push(f.s, l2, st, token, i, (T0 + 11 + 10 * (i / 2) + i) * NS, 40 + (uint64_t)i);
    counts(&f, token, sid2, c, &all);
    const int64_t week[6] = {0, 2, 2, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(c[i], week[i]);
    CHECK_EQ_INT(all, 4);
    f.now = T0 + 86400 - 100; /* the 10 s windows' last minutes */
    CHECK_EQ_INT(storage_compact(f.s), 0);
    counts(&f, token, sid2, c, &all);
    CHECK_EQ_INT(all, 4);
    /* pieces, counted from profile_trees (10 s windows keep no value) */
    f.now = T0 + 60;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    check_pieces(&f, "pieces-trees", 100);
    /* from the windows' listed ids (profile retention shorter than theirs) */
    f.opts.profile_retention_seconds = 300;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    check_pieces(&f, "pieces-ids", 200);
    /* and past profile retention, from those ids alone */
    f.now = T0 + 3600;
    CHECK_EQ_INT(storage_compact(f.s), 0);
    check_pieces(&f, "pieces-ids-later", 300);
    /* windows listing no ids (window-profile-ids 0): from profile_trees */
    f.now = T0 + 60;
    f.opts.window_profile_ids = 0;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    check_pieces(&f, "pieces-unlisted", 400);
    labels_free(l2);
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
