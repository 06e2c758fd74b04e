/* test_storage_window_profiles.c — the profiles each series window holds
 * (window_profiles, format 14) on a real RocksDB: counted exactly at every
 * resolution, with their ids while they fit window_profile_ids, kept past
 * profile retention, dropped with their window and by a range clear, a
 * format-13 directory whose windows read as not counted, two copies
 * compared by their ids and an addition of what one holds beyond the
 * other; short ids (format 16), only at resolutions whose windows outlive
 * profile retention, and a format-15 value (whole ids) read and folded;
 * pieces of split pushes flagged (format 18), and a format-17 directory
 * opened as 17. */
#include "test_storage_fixture.h"

#define T0 1700006400LL /* a multiple of a day */
#define HOUR 3600

typedef struct wsum {
    int windows, exact, pieces;
    int64_t count, total, window;
    uint64_t hash;
    size_t nids;
    uint8_t ids[16 * STORAGE_WPROF_ID_LEN];
} wsum_t;

/* Whether the n short ids at ids are those of fx_id(want[i]), in any
 * order of want (they are listed ascending). */
static int ids_are(const uint8_t *ids, size_t n, const uint64_t *want, size_t nwant)
{
    if (n != nwant) return 0;
    for (size_t i = 0; i < nwant; i++) {
        uint8_t id[16], s[STORAGE_WPROF_ID_LEN];
        fx_id(id, want[i]);
        storage_wprof_short_id(id, s);
        int found = 0;
        for (size_t k = 0; k < n; k++)
            found |= memcmp(ids + STORAGE_WPROF_ID_LEN * k, s, sizeof s) == 0;
        if (!found) return 0;
    }
    for (size_t k = 1; k < n; k++)
        if (memcmp(ids + STORAGE_WPROF_ID_LEN * (k - 1), ids + STORAGE_WPROF_ID_LEN * k,
                   STORAGE_WPROF_ID_LEN) >= 0)
            return 0;
    return 1;
}

static int wsum_fn(void *ctx, const storage_window_profiles_t *w)
{
    wsum_t *x = ctx;
    x->windows++;
    x->exact += w->exact;
    x->pieces += w->pieces;
    x->count += w->count;
    x->total += w->total;
    x->hash = w->id_hash;
    x->window = w->window;
    x->nids = w->nids;
    if (w->nids <= 16 && w->ids != NULL) memcpy(x->ids, w->ids, STORAGE_WPROF_ID_LEN * w->nids);
    return 0;
}

static wsum_t scan(fixture_t *f, const labels_t *l, uint64_t token, int res, int64_t from,
                   int64_t until)
{
    wsum_t x = {0};
    CHECK_EQ_INT(storage_scan_window_profiles(f->s, "t", token, labels_hash(l), res, from, until,
                                              wsum_fn, &x),
                 0);
    return x;
}

static int ptree_count_fn(void *ctx, int64_t t, const uint8_t id[16], int64_t total, int kept,
                          int piece)
{
    (void)piece;
    (void)t;
    (void)id;
    (void)total;
    (void)kept;
    (*(int *)ctx)++;
    return 0;
}

static int ptrees(fixture_t *f, const labels_t *l, uint64_t token)
{
    int n = 0;
    CHECK_EQ_INT(storage_scan_profile_trees(f->s, "t", token, labels_hash(l), T0 - 86400,
                                            T0 + 86400, SIZE_MAX, ptree_count_fn, &n),
                 0);
    return n;
}

/* Five profiles of one series in one 10 s window, written out of id order
 * and one of them twice: every resolution counts five, exactly, lists
 * their ids in order, and keeps that past profile retention. */
static void test_counts(fixture_t *f)
{
    labels_t *l = fx_labels("wp", NULL);
    symtab_t *st = symtab_new();
    const uint64_t ids[] = {9, 3, 7, 1, 5, 3};
    uint64_t hash = 0;
    for (int i = 0; i < 6; i++) {
        fx_push(f->s, l, st, 77, i, (T0 + 2) * NS + i, ids[i]);
        uint8_t id[16];
        fx_id(id, ids[i]);
        if (i < 5) hash += hash_bytes64(id, 16);
    }
    fx_scan_t sc = {0};
    CHECK_EQ_INT(
        storage_scan_totals(f->s, "t", 77, labels_hash(l), 0, T0, T0 + 10, fx_total_cb, &sc), 0);
    int64_t total = sc.total;
    CHECK(total > 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        wsum_t x = scan(f, l, 77, r, T0 - 86400, T0 + 86400);
        CHECK_EQ_INT(x.windows, 1);
        CHECK_EQ_INT(x.exact, 1);
        CHECK_EQ_INT(x.count, 5);
        CHECK_EQ_INT(x.total, total);
        CHECK(x.hash == hash);
        CHECK_EQ_INT(x.nids, 5);
        const uint64_t want[] = {1, 3, 5, 7, 9};
        CHECK(ids_are(x.ids, x.nids, want, 5));
    }
    CHECK_EQ_INT(ptrees(f, l, 77), 5);
    /* past profile retention (300 s) and the 10 s / 1 min windows' own */
    f->now = T0 + 2 * 86400;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(ptrees(f, l, 77), 0);
    wsum_t x = scan(f, l, 77, 0, T0 - 86400, T0 + 86400);
    CHECK_EQ_INT(x.windows, 0); /* the 10 s window expired with its count */
    for (int r = 3; r < STORAGE_RESOLUTION_COUNT; r++) {
        x = scan(f, l, 77, r, T0 - 86400, T0 + 86400);
        CHECK_EQ_INT(x.exact, 1);
        CHECK_EQ_INT(x.count, 5);
        CHECK_EQ_INT(x.nids, 5);
    }
    f->now = T0;
    symtab_free(st);
    labels_free(l);
}

/* Past window_profile_ids (3 here) a window keeps only its count, total
 * and hash, also once its operands are folded into one value. */
static void test_cap(fixture_t *f)
{
    labels_t *l = fx_labels("wp-cap", NULL);
    symtab_t *st = symtab_new();
    for (int i = 0; i < 4; i++)
        fx_push(f->s, l, st, 78, i, (T0 + 10 * i) * NS, 100 + i);
    wsum_t x = scan(f, l, 78, 0, T0, T0 + 60); /* one profile per 10 s window */
    CHECK_EQ_INT(x.windows, 4);
    CHECK_EQ_INT(x.exact, 4);
    CHECK_EQ_INT(x.nids, 1);
    for (int pass = 0; pass < 2; pass++) {
        x = scan(f, l, 78, 1, T0, T0 + 60);
        CHECK_EQ_INT(x.windows, 1);
        CHECK_EQ_INT(x.exact, 1);
        CHECK_EQ_INT(x.count, 4);
        CHECK_EQ_INT(x.nids, 0);
        CHECK_EQ_INT(storage_compact(f->s), 0);
    }
    symtab_free(st);
    labels_free(l);
}

/* A range clear drops a token's window profiles with its windows. */
static void test_clear(fixture_t *f)
{
    labels_t *l = fx_labels("wp-clear", NULL);
    symtab_t *st = symtab_new();
    fx_push(f->s, l, st, 79, 0, T0 * NS, 200);
    CHECK_EQ_INT(scan(f, l, 79, 2, T0 - 600, T0 + 600).count, 1);
    uint64_t lo = 79, hi = 79;
    errmsg_t em = {{0}};
    storage_clear_stats_t cs = {0};
    CHECK_EQ_INT(storage_range_clear(f->s, &lo, &hi, 1, &cs, &em), 0);
    storage_range_received(f->s);
    fx_push(f->s, l, st, 79, 0, T0 * NS, 201);
    wsum_t x = scan(f, l, 79, 2, T0 - 600, T0 + 600);
    CHECK_EQ_INT(x.count, 1); /* the new profile alone */
    CHECK_EQ_INT(x.exact, 1);
    symtab_free(st);
    labels_free(l);
}

/* A format-13 directory has no window profiles: its windows read as not
 * counted, also once a later profile adds to them; new windows count. */
static void test_upgrade(fixture_t *f)
{
    labels_t *l = fx_labels("wp-old", NULL);
    symtab_t *st = symtab_new();
    fx_push(f->s, l, st, 80, 0, (T0 + HOUR) * NS, 300);
    fx_push(f->s, l, st, 80, 1, (T0 + HOUR + 1) * NS, 301);
    /* what a format-13 release left: the same windows, no counts */
    skey_t lo, hi;
    storage_key_series(&lo, 80, "t", labels_hash(l));
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    char *err = NULL;
    rocksdb_delete_range_cf(f->s->db, f->s->wopts, f->s->cf[CF_WPROFILES], (const char *)lo.b, lo.n,
                            (const char *)hi.b, hi.n, &err);
    CHECK(err == NULL);
    free(err);
    fx_put_version(f, STORAGE_FORMAT_V13);
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    wsum_t x = scan(f, l, 80, 3, T0, T0 + 86400);
    CHECK_EQ_INT(x.windows, 1);
    CHECK_EQ_INT(x.exact, 0);
    CHECK_EQ_INT(x.count, 0);
    fx_push(f->s, l, st, 80, 2, (T0 + HOUR + 2) * NS, 302);
    x = scan(f, l, 80, 3, T0, T0 + 86400);
    CHECK_EQ_INT(x.count, 1);
    CHECK_EQ_INT(x.exact, 0); /* the two older profiles are not in it */
    fx_push(f->s, l, st, 80, 3, (T0 + 2 * HOUR) * NS, 303);
    x = scan(f, l, 80, 3, T0 + 2 * HOUR, T0 + 3 * HOUR);
    CHECK_EQ_INT(x.exact, 1);
    CHECK_EQ_INT(x.count, 1);
    symtab_free(st);
    labels_free(l);
}

/* Two copies compared by the ids their windows list: equal, one holding
 * the other (with the value of what it holds beyond), mixed (naming the
 * ids each lacks); an addition (add_to) lands only on the window compared
 * and leaves it counting the union. */
static void test_relate_and_add(fixture_t *f)
{
    labels_t *l = fx_labels("wp-rel", NULL);
    symtab_t *st = symtab_new();
    fx_push(f->s, l, st, 81, 0, (T0 + 20) * NS, 400);
    buf_t a, b, x, y, d;
    buf_init(&a, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    buf_init(&x, BUF_UNLIMITED);
    buf_init(&y, BUF_UNLIMITED);
    buf_init(&d, BUF_UNLIMITED);
    int64_t ta = 0, tb = 0;
    CHECK_EQ_INT(storage_window_profiles_value(f->s, "t", 81, labels_hash(l), 4, T0, &b, &tb), 1);
    fx_push(f->s, l, st, 81, 1, (T0 + 30) * NS, 401);
    CHECK_EQ_INT(storage_window_profiles_value(f->s, "t", 81, labels_hash(l), 4, T0, &a, &ta), 1);
    CHECK(ta > tb);
    CHECK_EQ_INT(storage_window_profiles_relate(a.data, a.len, a.data, a.len, &x, &y, NULL),
                 STORAGE_WPROF_EQUAL);
    CHECK_EQ_INT(storage_window_profiles_relate(a.data, a.len, b.data, b.len, &x, &y, &d),
                 STORAGE_WPROF_A_HOLDS_B);
    CHECK_EQ_INT(x.len, STORAGE_WPROF_ID_LEN);
    CHECK_EQ_INT(y.len, 0);
    storage_wprof_t w;
    CHECK_EQ_INT(storage_wprof_decode(d.data, d.len, &w), 0);
    CHECK_EQ_INT(w.count, 1);
    CHECK_EQ_INT(w.total, ta - tb);
    const uint64_t i401 = 401;
    CHECK(w.nids == 1 && ids_are(w.ids, 1, &i401, 1));
    CHECK_EQ_INT(storage_window_profiles_relate(b.data, b.len, a.data, a.len, NULL, NULL, NULL),
                 STORAGE_WPROF_B_HOLDS_A);
    /* a third copy: 400 and 402 (mixed with a's 400 and 401), as an
     * older release lists them (version 1: whole ids) */
    uint8_t v[WPROF_HEADER_LEN + 32];
    uint8_t i400[16], i402[16];
    fx_id(i400, 400);
    fx_id(i402, 402);
    storage_wprof_header(v, 2, 100, storage_wprof_id_hash(i400) + storage_wprof_id_hash(i402), 1);
    v[0] = WPROF_VERSION_WHOLE_IDS;
    memcpy(v + WPROF_HEADER_LEN, i400, 16);
    memcpy(v + WPROF_HEADER_LEN + 16, i402, 16);
    CHECK_EQ_INT(storage_window_profiles_relate(a.data, a.len, v, sizeof v, &x, &y, NULL),
                 STORAGE_WPROF_MIXED);
    const uint64_t n402 = 402;
    CHECK(x.len == STORAGE_WPROF_ID_LEN && ids_are(x.data, 1, &i401, 1));
    CHECK(y.len == STORAGE_WPROF_ID_LEN && ids_are(y.data, 1, &n402, 1));
    /* unlisted: only equal or not */
    storage_wprof_header(v, 2, 100, 5, 0);
    CHECK_EQ_INT(
        storage_window_profiles_relate(v, WPROF_HEADER_LEN, v, WPROF_HEADER_LEN, NULL, NULL, NULL),
        STORAGE_WPROF_EQUAL);
    CHECK_EQ_INT(
        storage_window_profiles_relate(a.data, a.len, v, WPROF_HEADER_LEN, NULL, NULL, NULL),
        STORAGE_WPROF_UNKNOWN);
    /* an addition to the day window of 402 (total 7 on one stack): taken
     * while the window is a's, refused once it changed */
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;f1;g1", 7);
    storage_wprof_header(v, 1, 7, storage_wprof_id_hash(i402), 1);
    storage_wprof_short_id(i402, v + WPROF_HEADER_LEN);
    storage_stream_window_t sw = {.tenant = "t",
                                  .token = 81,
                                  .series_id = labels_hash(l),
                                  .res = 4,
                                  .window_s = T0,
                                  .residual = t,
                                  .total = 7,
                                  .wprof = v,
                                  .wprof_len = WPROF_HEADER_LEN + STORAGE_WPROF_ID_LEN,
                                  .add_to = b.data,
                                  .add_to_len = b.len};
    int stored = 1;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_store(f->s, &sw, l, st, &stored, &em), 0);
    CHECK_EQ_INT(stored, 0); /* b is no longer the window's */
    sw.add_to = a.data;
    sw.add_to_len = a.len;
    CHECK_EQ_INT(storage_stream_store(f->s, &sw, l, st, &stored, &em), 0);
    CHECK_EQ_INT(stored, 1);
    wsum_t s4 = scan(f, l, 81, 4, T0, T0 + 86400);
    CHECK_EQ_INT(s4.exact, 1);
    CHECK_EQ_INT(s4.count, 3);
    CHECK_EQ_INT(s4.total, ta + 7);
    CHECK_EQ_INT(s4.nids, 3);
    CHECK_EQ_INT(storage_window_profiles_value(f->s, "t", 81, labels_hash(l), 4, T0, &x, &ta), 1);
    CHECK_EQ_INT(storage_window_profiles_relate(x.data, x.len, a.data, a.len, NULL, NULL, NULL),
                 STORAGE_WPROF_A_HOLDS_B);
    calltree_free(t);
    buf_free(&a);
    buf_free(&b);
    buf_free(&x);
    buf_free(&y);
    buf_free(&d);
    symtab_free(st);
    labels_free(l);
}

/* One profile split by its samples' labels into two series of one type
 * (pieces, as ingest marks them), beside a second type of one series:
 * each piece's window counts the profile exactly and is flagged
 * WPROF_FLAG_PIECES with the profile's id listed (readers unite the ids
 * across series), the lone type's window is not flagged; a later profile
 * that is no piece keeps the flag on the window (merged by OR), and the
 * profile trees say which are pieces (format 18). */
static int piece_fn(void *ctx, int64_t t, const uint8_t id[16], int64_t total, int kept, int piece)
{
    (void)t;
    (void)id;
    (void)total;
    (void)kept;
    *(int *)ctx += piece ? 100 : 1;
    return 0;
}

static void test_split_pieces_flagged(fixture_t *f)
{
    labels_t *a = fx_labels("split", "a"), *b = fx_labels("split", "b");
    labels_t *other = fx_labels("split", NULL);
    labels_set_str(other, LABEL_PROFILE_TYPE, "memory:inuse_space:bytes:space:bytes");
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;f;g", 7);
    storage_series_write_t sw[3] = {
        {.labels = a, .series_id = labels_hash(a), .tree = t, .token = 5, .piece = true},
        {.labels = b, .series_id = labels_hash(b), .tree = t, .token = 5, .piece = true},
        {.labels = other, .series_id = labels_hash(other), .tree = t, .token = 5},
    };
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (T0 + 40) * NS, .series = sw, .nseries = 3, .symbols = st};
    fx_id(p.profile_id, 4242);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    wsum_t xa = scan(f, a, 5, 1, T0, T0 + 60), xb = scan(f, b, 5, 1, T0, T0 + 60);
    wsum_t xo = scan(f, other, 5, 1, T0, T0 + 60); /* 1 min: kept */
    CHECK_EQ_INT(xa.exact + xb.exact, 2);
    CHECK_EQ_INT(xa.count + xb.count, 2);
    CHECK_EQ_INT(xa.pieces + xb.pieces, 2);
    const uint64_t want[] = {4242};
    CHECK(ids_are(xa.ids, xa.nids, want, 1) && ids_are(xb.ids, xb.nids, want, 1));
    CHECK_EQ_INT(xo.exact, 1);
    CHECK_EQ_INT(xo.count, 1);
    CHECK_EQ_INT(xo.pieces, 0);
    int n = 0;
    CHECK_EQ_INT(storage_scan_profile_trees(f->s, "t", 5, labels_hash(a), T0, T0 + 60, SIZE_MAX,
                                            piece_fn, &n),
                 0);
    CHECK_EQ_INT(n, 100);
    n = 0;
    CHECK_EQ_INT(storage_scan_profile_trees(f->s, "t", 5, labels_hash(other), T0, T0 + 60, SIZE_MAX,
                                            piece_fn, &n),
                 0);
    CHECK_EQ_INT(n, 1);
    sw[0].piece = false; /* a later push of series a alone: no piece */
    p.nseries = 1;
    p.time_ns = (T0 + 50) * NS;
    fx_id(p.profile_id, 4243);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    xa = scan(f, a, 5, 1, T0, T0 + 60);
    CHECK_EQ_INT(xa.exact, 1);
    CHECK_EQ_INT(xa.count, 2);
    CHECK_EQ_INT(xa.pieces, 1);
    const uint64_t both[] = {4242, 4243};
    CHECK(ids_are(xa.ids, xa.nids, both, 2));
    calltree_free(t);
    symtab_free(st);
    labels_free(a);
    labels_free(b);
    labels_free(other);
}

/* A format-17 directory: the pieces of a split push were counted in no
 * window (their windows read as not counted) and their trees carry no
 * flag. It opens as format 18 with those windows still not counted, a
 * new push of pieces into the same window does not make it exact, and a
 * window that starts after the upgrade counts its pieces, flagged. */
static void test_upgrade_16(fixture_t *f)
{
    labels_t *a = fx_labels("up16", "a"), *b = fx_labels("up16", "b");
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;wait", 3);
    storage_series_write_t sw[2] = {
        {.labels = a, .series_id = labels_hash(a), .tree = t, .token = 6},
        {.labels = b, .series_id = labels_hash(b), .tree = t, .token = 6},
    };
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (T0 + 5 * HOUR) * NS, .series = sw, .nseries = 2, .symbols = st};
    fx_id(p.profile_id, 6000);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    for (int i = 0; i < 2; i++) { /* what format 17 left: no counts for the pieces */
        skey_t lo, hi;
        storage_key_series(&lo, 6, "t", sw[i].series_id);
        hi = lo;
        hi.n = storage_prefix_successor(hi.b, hi.n);
        char *err = NULL;
        rocksdb_delete_range_cf(f->s->db, f->s->wopts, f->s->cf[CF_WPROFILES], (const char *)lo.b,
                                lo.n, (const char *)hi.b, hi.n, &err);
        CHECK(err == NULL);
        free(err);
    }
    fx_put_version(f, STORAGE_FORMAT_V17);
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    wsum_t x = scan(f, a, 6, 3, T0, T0 + 86400);
    CHECK_EQ_INT(x.windows, 1);
    CHECK_EQ_INT(x.exact + x.count, 0);
    sw[0].piece = sw[1].piece = true;
    p.time_ns = (T0 + 5 * HOUR + 1) * NS;
    fx_id(p.profile_id, 6001);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    x = scan(f, a, 6, 3, T0, T0 + 86400);
    CHECK_EQ_INT(x.count, 1);
    CHECK_EQ_INT(x.pieces, 1);
    CHECK_EQ_INT(x.exact, 0); /* the format-17 push is not in it */
    p.time_ns = (T0 + 6 * HOUR) * NS;
    fx_id(p.profile_id, 6002);
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    x = scan(f, b, 6, 3, T0 + 6 * HOUR, T0 + 7 * HOUR);
    CHECK_EQ_INT(x.exact, 1);
    CHECK_EQ_INT(x.pieces, 1);
    calltree_free(t);
    symtab_free(st);
    labels_free(a);
    labels_free(b);
}

/* With profile retention a week (resolution retentions as by default:
 * 10 s a day, 1 min a week, 10 min 30 days, 1 h 90 days, 1 day forever)
 * only the windows that can outlive the profiles they hold get a value:
 * the 10 s ones none (not counted: profile_trees name their profiles),
 * the others each profile's short id. A value format 15 left (version
 * 1, whole ids) reads after the upgrade and folds with a new operand into
 * short ids. */
static void test_kept_resolutions(fixture_t *f)
{
    f->opts.profile_retention_seconds = 7 * 86400;
    CHECK_EQ_INT(fx_reopen(f), 0);
    CHECK(!storage_wprof_kept(f->s, 0));
    for (int r = 1; r < STORAGE_RESOLUTION_COUNT; r++)
        CHECK(storage_wprof_kept(f->s, r));
    labels_t *l = fx_labels("wp-kept", NULL);
    symtab_t *st = symtab_new();
    fx_push(f->s, l, st, 82, 0, (T0 + 3 * HOUR + 1) * NS, 500);
    fx_push(f->s, l, st, 82, 1, (T0 + 3 * HOUR + 2) * NS, 501);
    wsum_t x = scan(f, l, 82, 0, T0, T0 + 86400);
    CHECK_EQ_INT(x.windows, 1);
    CHECK_EQ_INT(x.exact, 0);
    CHECK_EQ_INT(x.count, 0);
    const uint64_t want[] = {500, 501};
    for (int r = 1; r < STORAGE_RESOLUTION_COUNT; r++) {
        x = scan(f, l, 82, r, T0, T0 + 86400);
        CHECK_EQ_INT(x.exact, 1);
        CHECK_EQ_INT(x.count, 2);
        CHECK(ids_are(x.ids, x.nids, want, 2));
    }
    /* the day window as format 15 wrote it: 500 and 501, whole ids */
    uint8_t v[WPROF_HEADER_LEN + 32], i500[16], i501[16];
    fx_id(i500, 500);
    fx_id(i501, 501);
    storage_wprof_header(v, 2, x.total, storage_wprof_id_hash(i500) + storage_wprof_id_hash(i501),
                         1);
    v[0] = WPROF_VERSION_WHOLE_IDS;
    memcpy(v + WPROF_HEADER_LEN, i500, 16);
    memcpy(v + WPROF_HEADER_LEN + 16, i501, 16);
    skey_t k;
    storage_key_window(&k, 82, "t", labels_hash(l), 4, T0);
    char *err = NULL;
    rocksdb_put_cf(f->s->db, f->s->wopts, f->s->cf[CF_WPROFILES], (const char *)k.b, k.n,
                   (const char *)v, sizeof v, &err);
    CHECK(err == NULL);
    free(err);
    fx_put_version(f, STORAGE_FORMAT_V15); /* what format 15 left: opens as 16 */
    CHECK_EQ_INT(fx_reopen(f), 0);
    fx_check_version(f);
    x = scan(f, l, 82, 4, T0, T0 + 86400);
    CHECK_EQ_INT(x.exact, 1);
    CHECK(ids_are(x.ids, x.nids, want, 2)); /* read as short ids */
    fx_push(f->s, l, st, 82, 2, (T0 + 3 * HOUR + 3) * NS, 502);
    const uint64_t three[] = {500, 501, 502};
    for (int pass = 0; pass < 2; pass++) {
        x = scan(f, l, 82, 4, T0, T0 + 86400);
        CHECK_EQ_INT(x.exact, 1);
        CHECK_EQ_INT(x.count, 3);
        CHECK(ids_are(x.ids, x.nids, three, 3));
        CHECK_EQ_INT(storage_compact(f->s), 0);
    }
    buf_t now;
    buf_init(&now, BUF_UNLIMITED);
    int64_t total = 0;
    CHECK_EQ_INT(storage_window_profiles_value(f->s, "t", 82, labels_hash(l), 4, T0, &now, &total),
                 1);
    CHECK(now.len == WPROF_HEADER_LEN + 3 * STORAGE_WPROF_ID_LEN && now.data[0] == WPROF_VERSION);
    buf_free(&now);
    symtab_free(st);
    labels_free(l);
}

/* Two profiles sharing a short id (made up: XXH3-128 yields none to
 * find): one window holding both keeps its count, total and hash, not the
 * list; two copies listing the same short ids of different profiles (the
 * id hash differs) compare as unknown, never as equal. */
static void test_short_id_shared(fixture_t *f)
{
    uint8_t a[WPROF_HEADER_LEN + STORAGE_WPROF_ID_LEN], b[sizeof a];
    storage_wprof_header(a, 1, 10, 111, 1);
    memset(a + WPROF_HEADER_LEN, 0x5a, STORAGE_WPROF_ID_LEN);
    memcpy(b, a, sizeof a);
    storage_wprof_header(b, 1, 10, 222, 1);
    CHECK_EQ_INT(storage_window_profiles_relate(a, sizeof a, a, sizeof a, NULL, NULL, NULL),
                 STORAGE_WPROF_EQUAL);
    CHECK_EQ_INT(storage_window_profiles_relate(a, sizeof a, b, sizeof b, NULL, NULL, NULL),
                 STORAGE_WPROF_UNKNOWN);
    skey_t k;
    storage_key_window(&k, 83, "t", 12345, 4, T0);
    char *err = NULL;
    rocksdb_merge_cf(f->s->db, f->s->wopts, f->s->cf[CF_WPROFILES], (const char *)k.b, k.n,
                     (const char *)a, sizeof a, &err);
    CHECK(err == NULL);
    rocksdb_merge_cf(f->s->db, f->s->wopts, f->s->cf[CF_WPROFILES], (const char *)k.b, k.n,
                     (const char *)b, sizeof b, &err);
    CHECK(err == NULL);
    CHECK_EQ_INT(storage_compact(f->s), 0);
    size_t n = 0;
    char *v = rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_WPROFILES], (const char *)k.b, k.n,
                             &n, &err);
    CHECK(err == NULL && v != NULL);
    storage_wprof_t w;
    CHECK_EQ_INT(storage_wprof_decode((const uint8_t *)v, n, &w), 0);
    CHECK_EQ_INT(w.count, 2);
    CHECK_EQ_INT(w.total, 20);
    CHECK(w.id_hash == 333);
    CHECK_EQ_INT(w.listed, 0);
    free(v);
    free(err);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.profile_retention_seconds = 300;
    f.opts.window_profile_ids = 3;
    f.now = T0;
    if (fx_reopen(&f) != 0) return 1;
    test_cap(&f);
    test_clear(&f);
    test_upgrade(&f);
    f.opts.window_profile_ids = 16;
    if (fx_reopen(&f) != 0) return 1;
    test_counts(&f);
    test_relate_and_add(&f);
    test_split_pieces_flagged(&f);
    test_upgrade_16(&f);
    test_short_id_shared(&f);
    test_kept_resolutions(&f);
    fx_done(&f);
    return check_exit();
}
