/* Unit tests for anti-entropy's building blocks (node/cluster/repair*.c,
 * storage/seen.c): digests of the seen index per range and hour agree for
 * equal contents whatever the write order, and their difference names
 * exactly the buckets where the other replica holds entries this one lacks
 * (a missing entry, an extra one, the same count with other ids); the seen
 * scan pages by key; the compared time span keeps off the seen retention's
 * edge; and a fetched profile, stored on the replica that lacked it, makes
 * the digests equal and counts once however often it is fetched; a fetched
 * write the replica refuses over tenant-max-series is counted unavailable
 * and the others of the answer are still stored; a stream answer names no
 * string of the frame that built it; a window's residual cut into parts
 * (repair_parts.c) adds up to it exactly, each part within its budget;
 * long names travel once per window, a symbol over the limit in pieces,
 * profile lists in slices; the window cache finds, evicts and expires;
 * two profiles in one bucket of the window check are told apart by their
 * ids (test_window_bucket_collision). */
#include "test_storage_fixture.h"

#include "node/cluster/repair_int.h"
#include "ring/ring.h"

#define T0 1700002800LL /* a multiple of 3600 */
#define TENANT "rt"

static ring_shard_policy_t shards;

/* One series of service svc with its real placement token. */
static void put_as(fixture_t *f, const char *svc, uint64_t id, int64_t t, int64_t v, bool piece)
{
    labels_t *l = fx_labels(svc, NULL);
    symtab_t *st = symtab_new();
    calltree_t *tree = calltree_new(0);
    fx_add(tree, st, "main;work", v);
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = tree, .piece = piece};
    sw.token = ring_placement_token(TENANT, svc,
                                    ring_series_shard(sw.series_id, ring_shards_for(&shards, svc)));
    storage_profile_write_t p = {
        .tenant = TENANT, .time_ns = t * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    size_t w = 0;
    CHECK_EQ_INT(storage_write_profile(f->s, &p, &w, &em), 0);
    calltree_free(tree);
    symtab_free(st);
    labels_free(l);
}

static void put(fixture_t *f, const char *svc, uint64_t id, int64_t t, int64_t v)
{
    put_as(f, svc, id, t, v, false);
}

static uint64_t token_of(const char *svc)
{
    labels_t *l = fx_labels(svc, NULL);
    uint64_t sid = labels_hash(l);
    labels_free(l);
    return ring_placement_token(TENANT, svc, ring_series_shard(sid, ring_shards_for(&shards, svc)));
}

static repair_digest_t digest(fixture_t *f, const ring_range_t *r, size_t n)
{
    repair_digest_t d = {0};
    CHECK_EQ_INT(repair_digest_build(f->s, r, n, T0, T0 + 5 * 3600, 3600, &d), 0);
    return d;
}

/* The (range, hour) of each bucket of theirs-minus-mine, as "r:h" text. */
static void diff_text(const repair_digest_t *theirs, const repair_digest_t *mine, char *out,
                      size_t cap)
{
    repair_digest_t d = {0};
    CHECK_EQ_INT(repair_digest_diff(theirs, mine, &d), 0);
    out[0] = 0;
    for (size_t i = 0; i < d.n; i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%u:%lld", n ? "," : "", d.v[i].range,
                 (long long)((d.v[i].start_s - T0) / 3600));
    }
    repair_digest_free(&d);
}

static void test_digests(fixture_t *a, fixture_t *b)
{
    /* equal contents, written in opposite orders */
    for (int i = 1; i <= 20; i++)
        put(a, "svc-a", (uint64_t)i, T0 + (i - 1) * 360, i);
    for (int i = 20; i >= 1; i--)
        put(b, "svc-a", (uint64_t)i, T0 + (i - 1) * 360, i);
    put(a, "svc-b", 50, T0 + 100, 3);
    put(b, "svc-b", 50, T0 + 100, 3);
    uint64_t ta = token_of("svc-a"), tb = token_of("svc-b");
    /* two ranges: one holds svc-a's token, the other svc-b's */
    uint64_t cut = ta < tb ? ta : tb;
    ring_range_t r[2] = {{cut - 1, cut}, {cut, cut - 1}};
    uint32_t ra = ta == cut ? 0 : 1, rb = 1 - ra;
    repair_digest_t da = digest(a, r, 2), db = digest(b, r, 2);
    char text[256];
    diff_text(&da, &db, text, sizeof text);
    CHECK_EQ_STR(text, "");
    CHECK_EQ_INT(da.n, 3); /* svc-a in hours 0 and 1, svc-b in hour 0 */
    CHECK_EQ_INT(da.v[0].range, 0);
    repair_digest_free(&da);
    repair_digest_free(&db);

    put(a, "svc-a", 21, T0 + 10, 1);       /* only a: hour 0 */
    put(b, "svc-a", 23, T0 + 3600 + 5, 1); /* only b: hour 1 */
    put(a, "svc-a", 22, T0 + 7200 + 5, 1); /* only a: hour 2, no bucket on b */
    put(a, "svc-b", 24, T0 + 3 * 3600, 1); /* one each in hour 3 of svc-b: same count, */
    put(b, "svc-b", 25, T0 + 3 * 3600, 1); /* other ids */
    da = digest(a, r, 2);
    db = digest(b, r, 2);
    char want[256];
    snprintf(want, sizeof want, "%u:0,%u:1,%u:2,%u:3", ra, ra, ra, rb);
    if (rb < ra) snprintf(want, sizeof want, "%u:3,%u:0,%u:1,%u:2", rb, ra, ra, ra);
    diff_text(&da, &db, text, sizeof text); /* what a has that b may lack */
    CHECK_EQ_STR(text, want);
    snprintf(want, sizeof want, "%u:0,%u:1,%u:3", ra, ra, rb);
    if (rb < ra) snprintf(want, sizeof want, "%u:3,%u:0,%u:1", rb, ra, ra);
    diff_text(&db, &da, text, sizeof text);
    CHECK_EQ_STR(text, want);
    repair_digest_free(&da);
    repair_digest_free(&db);
}

typedef struct seen_list {
    storage_seen_entry_t e[64];
    char tenant[64][16];
    int n;
} seen_list_t;

static int collect(void *ctx, const storage_seen_entry_t *e)
{
    seen_list_t *l = ctx;
    if (l->n == 64) return 1;
    snprintf(l->tenant[l->n], sizeof l->tenant[0], "%s", e->tenant);
    l->e[l->n] = *e;
    l->e[l->n].tenant = l->tenant[l->n];
    l->n++;
    return 0;
}

static void test_seen_scan(fixture_t *a)
{
    seen_list_t all = {0}, rest = {0};
    CHECK_EQ_INT(storage_seen_scan(a->s, 0, UINT64_MAX, NULL, T0, T0 + 5 * 3600, collect, &all), 0);
    CHECK_EQ_INT(all.n, 20 + 2 + 2); /* svc-a 1..20, 21, 22; svc-b 50, 24 */
    CHECK_EQ_INT(
        storage_seen_scan(a->s, 0, UINT64_MAX, &all.e[4], T0, T0 + 5 * 3600, collect, &rest), 0);
    CHECK_EQ_INT(rest.n, all.n - 5);
    CHECK(memcmp(rest.e[0].profile_id, all.e[5].profile_id, 16) == 0);
    /* one token's interval only, and a time filter */
    seen_list_t one = {0};
    uint64_t tb = token_of("svc-b");
    CHECK_EQ_INT(storage_seen_scan(a->s, tb, tb, NULL, T0, T0 + 3600, collect, &one), 0);
    CHECK_EQ_INT(one.n, 1);
    CHECK_EQ_INT(storage_seen_has(a->s, &all.e[0]), 1);
    storage_seen_entry_t x = all.e[0];
    x.series_id ^= 1;
    CHECK_EQ_INT(storage_seen_has(a->s, &x), 0);
}

static void test_span(void)
{
    repair_options_t o = {0};
    o.seen_retention_s = 7 * 86400;
    o.max_future_s = 600;
    int64_t from, until, now = T0 + 1234;
    repair_span(&o, now, &from, &until);
    CHECK(from % REPAIR_BUCKET_S == 0);
    CHECK(from >= now - o.seen_retention_s + o.max_future_s + REPAIR_MARGIN_S);
    CHECK(from < now && until > now + o.max_future_s);
    o.seen_retention_s = 3600; /* too short: nothing of the past is compared */
    repair_span(&o, now, &from, &until);
    CHECK(from > now);
}

/* b fetches a's profile 21 (and an unknown one) as a peer would. */
static void test_fetch(fixture_t *a, fixture_t *b)
{
    repair_options_t o = {0};
    replicate_options_default(&o.write);
    o.write.shards = shards;
    o.max_message_bytes = 1 << 20;
    Flamedb__Cluster__SeenEntry e[2], *ep[2] = {&e[0], &e[1]};
    uint8_t pid[2][16];
    fx_id(pid[0], 21);
    fx_id(pid[1], 999);
    for (int i = 0; i < 2; i++) {
        flamedb__cluster__seen_entry__init(&e[i]);
        e[i].tenant = TENANT;
        e[i].token = token_of("svc-a");
        labels_t *l = fx_labels("svc-a", NULL);
        e[i].series_id = labels_hash(l);
        labels_free(l);
        e[i].profile_id = (ProtobufCBinaryData){16, pid[i]};
        e[i].time_ns = (T0 + 10) * NS; /* as a's listing gives it: profile 21's time */
    }
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_FETCH;
    q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
    q.entries = ep;
    q.n_entries = 2;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    Flamedb__Cluster__RepairAnswer ans = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_serve_build(a->s, &o, &q, NULL, NULL, &arena, &ans, &em), 0);
    CHECK_EQ_INT(ans.handled, 2);
    CHECK_EQ_INT(ans.unavailable, 1);
    CHECK_EQ_INT(ans.n_writes, 1);
    ring_range_t whole = {0, 0};
    for (int round = 0; round < 2; round++) { /* the second delivery counts nothing */
        size_t written = 99;
        CHECK_EQ_INT(replicate_store_request(&o.write, b->s, ans.writes[0], &written, NULL, &em),
                     0);
        CHECK_EQ_INT(written, round == 0 ? 1 : 0);
    }
    /* hour 0 of svc-a now agrees; the total of the window is a's */
    repair_digest_t da = digest(a, &whole, 1), db = digest(b, &whole, 1);
    CHECK(da.v[0].start_s == T0 && db.v[0].start_s == T0);
    CHECK(da.v[0].count == db.v[0].count && da.v[0].hash == db.v[0].hash);
    labels_t *l = fx_labels("svc-a", NULL);
    uint64_t sid = labels_hash(l);
    fx_scan_t sa = {0}, sb = {0};
    uint64_t tok = token_of("svc-a");
    CHECK_EQ_INT(storage_scan_totals(a->s, TENANT, tok, sid, 0, T0, T0 + 360, fx_total_cb, &sa), 0);
    CHECK_EQ_INT(storage_scan_totals(b->s, TENANT, tok, sid, 0, T0, T0 + 360, fx_total_cb, &sb), 0);
    CHECK_EQ_INT(sa.total, 1 + 1); /* profile 1 (value 1) and 21 (value 1) in [T0, T0+360) */
    CHECK_EQ_INT(sb.total, sa.total);
    labels_free(l);
    repair_digest_free(&da);
    repair_digest_free(&db);
    arena_free(&arena);
}

/* A fetched piece of a split push stays one (SeriesPart.piece): its copy
 * on b is counted by id too. */
static void test_fetch_piece(fixture_t *a, fixture_t *b)
{
    put_as(a, "svc-piece", 61, T0 + 20, 3, true);
    repair_options_t o = {0};
    replicate_options_default(&o.write);
    o.write.shards = shards;
    o.max_message_bytes = 1 << 20;
    labels_t *l = fx_labels("svc-piece", NULL);
    uint8_t pid[16];
    fx_id(pid, 61);
    Flamedb__Cluster__SeenEntry e, *ep = &e;
    flamedb__cluster__seen_entry__init(&e);
    e.tenant = TENANT;
    e.token = token_of("svc-piece");
    e.series_id = labels_hash(l);
    e.profile_id = (ProtobufCBinaryData){16, pid};
    e.time_ns = (T0 + 20) * NS;
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_FETCH;
    q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
    q.entries = &ep;
    q.n_entries = 1;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    Flamedb__Cluster__RepairAnswer ans = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_serve_build(a->s, &o, &q, NULL, NULL, &arena, &ans, &em), 0);
    CHECK_EQ_INT(ans.n_writes, 1);
    CHECK(ans.n_writes == 1 && ans.writes[0]->n_series == 1 && ans.writes[0]->series[0]->piece);
    size_t written = 0;
    CHECK_EQ_INT(replicate_store_request(&o.write, b->s, ans.writes[0], &written, NULL, &em), 0);
    CHECK_EQ_INT(written, 1);
    calltree_t *t = calltree_new(0);
    int piece = 0;
    CHECK_EQ_INT(
        storage_read_profile_piece(b->s, TENANT, e.token, e.series_id, e.time_ns, pid, t, &piece),
        0);
    CHECK_EQ_INT(piece, 1);
    calltree_free(t);
    labels_free(l);
    arena_free(&arena);
}

/* c (at its tenant-max-series of 1) takes a fetch answer of a new series
 * and of a new profile of the series it has: the first is refused and
 * counted unavailable, the second stored. */
static void test_fetch_over_limit(fixture_t *a, fixture_t *c)
{
    c->opts.tenant_max_series = 1;
    CHECK_EQ_INT(fx_reopen(c), 0);
    put(c, "svc-b", 77, T0 + 200, 2);
    repair_t r;
    memset(&r, 0, sizeof r);
    r.storage = c->s;
    replicate_options_default(&r.o.write);
    r.o.write.shards = shards;
    r.o.max_message_bytes = 1 << 20;
    const char *svc[2] = {"svc-a", "svc-b"};
    uint64_t ids[2] = {21, 50};
    int64_t times[2] = {T0 + 10, T0 + 100};
    Flamedb__Cluster__SeenEntry e[2], *ep[2] = {&e[0], &e[1]};
    uint8_t pid[2][16];
    for (int i = 0; i < 2; i++) {
        fx_id(pid[i], ids[i]);
        flamedb__cluster__seen_entry__init(&e[i]);
        e[i].tenant = TENANT;
        e[i].token = token_of(svc[i]);
        labels_t *l = fx_labels(svc[i], NULL);
        e[i].series_id = labels_hash(l);
        labels_free(l);
        e[i].profile_id = (ProtobufCBinaryData){16, pid[i]};
        e[i].time_ns = times[i] * NS;
    }
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_FETCH;
    q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
    q.entries = ep;
    q.n_entries = 2;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    Flamedb__Cluster__RepairAnswer ans = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_serve_build(a->s, &r.o, &q, NULL, NULL, &arena, &ans, &em), 0);
    CHECK_EQ_INT(ans.n_writes, 2);
    repair_stats_t st;
    memset(&st, 0, sizeof st);
    CHECK_EQ_INT(repair_store_fetched(&r, &ans, &st, &em), 0);
    CHECK_EQ_INT(st.unavailable, 1); /* svc-a: a new series over the limit */
    CHECK_EQ_INT(st.written, 1);     /* svc-b's profile 50 */
    CHECK_EQ_INT(storage_tenant_series(c->s, TENANT), 1);
    arena_free(&arena);
}

/* The schedule: never with no interval; otherwise one interval after the
 * start plus up to a tenth of it, and nodes with other seeds (restarted at
 * the same moment) do not all land on the same millisecond. */
static void test_schedule(void)
{
    uint64_t rng = 12345;
    CHECK_EQ_INT(repair_schedule_after(0, 1000, &rng), 0);
    uint64_t every = 3600 * 1000, from = 1700000000000ull, lo = UINT64_MAX, hi = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        uint64_t st = seed * 0x9E3779B97F4A7C15ull | 1;
        uint64_t due = repair_schedule_after(every, from, &st);
        CHECK(due >= from + every && due <= from + every + every / 10);
        lo = due < lo ? due : lo;
        hi = due > hi ? due : hi;
    }
    CHECK(hi - lo > every / 20); /* 64 nodes spread over more than half the jitter */
    uint64_t a = repair_schedule_after(every, from, &rng),
             b = repair_schedule_after(every, from, &rng);
    CHECK(a != b); /* each pass draws again */
}

/* Writes over the stack below the caller's frame, where a returned call's
 * locals were. */
static __attribute__((noinline)) void clobber_stack(void)
{
    volatile char junk[1 << 16];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 'X';
}

/* A stream answer is packed on the loop after the job that built it has
 * returned: every string it names must live in its arena, not in the
 * builder's frame (the tenant did, and the loop read a dead stack). */
static void test_stream_answer_outlives_builder(fixture_t *a)
{
    repair_options_t o = {0};
    replicate_options_default(&o.write);
    o.write.shards = shards;
    o.max_message_bytes = 1 << 20;
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_STREAM;
    q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
    q.lo = 0;
    q.hi = UINT64_MAX;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    Flamedb__Cluster__RepairAnswer ans = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_serve_build(a->s, &o, &q, NULL, NULL, &arena, &ans, &em), 0);
    clobber_stack();
    CHECK(ans.n_windows > 0);
    for (size_t i = 0; i < ans.n_windows; i++) {
        const Flamedb__Cluster__StreamWindow *w = ans.windows[i];
        CHECK_EQ_STR(w->tenant, TENANT);
        for (size_t k = 0; k < w->n_kept; k++)
            CHECK_EQ_STR(w->kept[k]->tenant, TENANT);
    }
    arena_free(&arena);
}

/* A DIGEST whose first range the answering node's copy of is not to be
 * trusted (repair.c's mask): answered for the second range only, with its
 * index in the request, and the first named in `untrusted`. */
static void test_digest_leaves_out_untrusted(fixture_t *a)
{
    repair_options_t o = {0};
    o.max_message_bytes = 1 << 20;
    uint64_t tok = token_of("svc-a");
    Flamedb__Cluster__TokenRange tr[2], *tp[2] = {&tr[0], &tr[1]};
    for (int i = 0; i < 2; i++) { /* both hold svc-a's token: (tok - 1, tok] twice */
        flamedb__cluster__token_range__init(&tr[i]);
        tr[i].start = tok - 1;
        tr[i].end = tok;
    }
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.kind = FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_DIGEST;
    q.ranges = tp;
    q.n_ranges = 2;
    q.from_s = T0;
    q.until_s = T0 + 5 * 3600;
    q.bucket_s = 3600;
    uint8_t mask[2] = {1, 0};
    for (int masked = 0; masked < 2; masked++) {
        arena_t arena;
        arena_init(&arena, 4096, 1 << 20);
        Flamedb__Cluster__RepairAnswer ans = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
        errmsg_t em = {{0}};
        CHECK_EQ_INT(
            repair_serve_build(a->s, &o, &q, masked ? mask : NULL, NULL, &arena, &ans, &em), 0);
        CHECK(ans.n_buckets > 0);
        size_t in0 = 0, in1 = 0;
        for (size_t i = 0; i < ans.n_buckets; i++) {
            in0 += ans.buckets[i]->range == 0;
            in1 += ans.buckets[i]->range == 1;
        }
        CHECK(in1 > 0);
        CHECK(masked ? in0 == 0 : in0 == in1);
        CHECK_EQ_INT(ans.n_untrusted, masked ? 1 : 0);
        if (masked) CHECK_EQ_INT(ans.untrusted[0], 0);
        arena_free(&arena);
    }
}

/* A tree of 3,000 leaves under 50 inner nodes, cut into parts of 4 KiB:
 * more than one part, each encoded within the budget, and the parts merged
 * are the tree node by node (no node more, every self value the same). */
static void test_parts(void)
{
    calltree_t *t = calltree_new(0), *merged = calltree_new(0);
    symtab_t *names = symtab_new();
    for (uint64_t k = 0; k < 3000; k++) {
        uint64_t stack[4] = {1, 100 + k % 50, 1000 + k, 1000 + (k * 7) % 3000};
        CHECK_EQ_INT(calltree_add_stack(t, stack, 2 + k % 3, (int64_t)(1 + k % 5)), 0);
    }
    for (uint64_t id = 1; id < 5000; id++)
        CHECK_EQ_INT(symtab_put(names, id, "pkg/some.function_name", 22, "file.go", 7), 0);
    repair_parts_t p;
    const size_t budget = 4096;
    repair_parts_sizes_t z = {.budget = budget, .limit = 4 * budget};
    CHECK_EQ_INT(repair_parts_plan(t, names, &z, &p), 0);
    CHECK(p.nparts > 10);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    for (uint32_t k = 0; k < p.nparts; k++) {
        calltree_t *part = calltree_new(0);
        CHECK_EQ_INT(repair_parts_build(t, &p, k, part), 0);
        buf_reset(&b);
        CHECK_EQ_INT(calltree_encode(part, &b), 0);
        CHECK(b.len <= budget);
        CHECK_EQ_INT(calltree_merge(merged, part), 0);
        calltree_free(part);
    }
    CHECK_EQ_INT(repair_parts_build(t, &p, p.nparts, merged), ERR_INVALID_ARGUMENT);
    size_t n = calltree_node_count(t);
    CHECK_EQ_INT(calltree_node_count(merged), n);
    CHECK_EQ_INT(calltree_root_total(merged), calltree_root_total(t));
    uint32_t *map = calloc(n, sizeof *map);
    for (uint32_t v = 1; map != NULL && v < n; v++) { /* parents before children */
        CHECK_EQ_INT(
            calltree_child(merged, map[calltree_parent(t, v)], calltree_sym(t, v), &map[v]), 0);
        CHECK_EQ_INT(calltree_self(merged, map[v]), calltree_self(t, v));
    }
    CHECK_EQ_INT(calltree_node_count(merged), n);
    free(map);
    buf_free(&b);
    repair_parts_free(&p);
    symtab_free(names);
    calltree_free(t);
    calltree_free(merged);
}

/* A window whose path alone passes the limit (a chain of 3,000 frames, a
 * branch off it at depth 600 and leaves under both): refused without
 * anchors; with them (z.anchors) cut into parts rooted below the root, each
 * within the budget but for its first node, and put together by the
 * receiver's assembly (repair_partsin_add, anchor_depth) into the tree. */
static void test_parts_anchored(void)
{
    enum { DEPTH = 3000, BRANCH = 600 };
    calltree_t *t = calltree_new(0);
    uint64_t *stack = malloc((DEPTH + 1) * sizeof *stack);
    for (uint64_t k = 0; stack != NULL && k <= DEPTH; k++)
        stack[k] = 10 + k;
    if (stack == NULL) return;
    CHECK_EQ_INT(calltree_add_stack(t, stack, DEPTH, 5), 0);
    for (uint64_t k = 0; k < 40; k++) { /* leaves under the chain's end and under the branch */
        stack[DEPTH] = 100000 + k;
        CHECK_EQ_INT(calltree_add_stack(t, stack, DEPTH + 1, (int64_t)(1 + k % 3)), 0);
        stack[BRANCH] = 200000 + k;
        CHECK_EQ_INT(calltree_add_stack(t, stack, BRANCH + 1, 2), 0);
        stack[BRANCH] = 10 + BRANCH;
    }
    free(stack);
    repair_parts_t p;
    const size_t budget = 4096;
    repair_parts_sizes_t z = {.budget = budget, .limit = 4 * budget};
    CHECK_EQ_INT(repair_parts_plan(t, NULL, &z, &p), ERR_LIMIT);
    z.anchors = 1;
    CHECK_EQ_INT(repair_parts_plan(t, NULL, &z, &p), 0);
    CHECK(p.nparts > 10);
    Flamedb__Cluster__RepairAnswer a;
    flamedb__cluster__repair_answer__init(&a);
    Flamedb__Cluster__StreamWindow m;
    flamedb__cluster__stream_window__init(&m);
    m.parts = p.nparts;
    repair_partsin_t in = {0};
    CHECK_EQ_INT(repair_partsin_start(&in, 0, 0, 0), 0);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int anchored = 0;
    for (uint32_t k = 0; k < p.nparts; k++) {
        calltree_t *part = calltree_new(0);
        CHECK_EQ_INT(repair_parts_build(t, &p, k, part), 0);
        buf_reset(&b);
        CHECK_EQ_INT(calltree_encode(part, &b), 0);
        CHECK(b.len <= z.limit);
        calltree_free(part);
        m.part = k;
        m.anchor_depth = p.anchor[k];
        anchored += p.anchor[k] > 0;
        m.calltree = (ProtobufCBinaryData){b.len, b.data};
        CHECK(repair_partsin_follows(&in, &m));
        int rc = repair_partsin_add(&in, &a, &m);
        CHECK_EQ_INT(rc, 0);
        if (rc != 0) break;
        in.next++;
    }
    CHECK(anchored > 0);
    size_t n = calltree_node_count(t);
    CHECK_EQ_INT(calltree_node_count(in.tree), n);
    CHECK_EQ_INT(calltree_root_total(in.tree), calltree_root_total(t));
    uint32_t *map = calloc(n, sizeof *map);
    for (uint32_t v = 1; map != NULL && v < n; v++) { /* parents before children */
        CHECK_EQ_INT(
            calltree_child(in.tree, map[calltree_parent(t, v)], calltree_sym(t, v), &map[v]), 0);
        CHECK_EQ_INT(calltree_self(in.tree, map[v]), calltree_self(t, v));
    }
    CHECK_EQ_INT(calltree_node_count(in.tree), n);
    m.part = in.next;
    m.anchor_depth = DEPTH + 5; /* off the path: corrupt */
    CHECK_EQ_INT(repair_partsin_add(&in, &a, &m), ERR_CORRUPT);
    free(map);
    buf_free(&b);
    repair_partsin_drop(&in);
    repair_parts_free(&p);
    calltree_free(t);
}

typedef struct named {
    symtab_t *seen;
    const symtab_t *names;
    size_t bytes;
    int twice;
} named_t;

static int count_named(void *ctx, uint64_t id)
{
    named_t *n = ctx;
    const char *name, *file;
    if (symtab_get(n->seen, id, &name, &file) == 1) n->twice++;
    n->bytes += repair_parts_sym_cost(n->names, id);
    return symtab_put(n->seen, id, "x", 1, NULL, 0);
}

/* Long names (issue #10): a chain of 25 frames of 3,000-byte names with 300
 * leaves of 300 bytes under it, cut into parts of 16 KiB (at most 64 KiB
 * each): a part's tree, with the names it carries, keeps to its budget
 * (or is one node alone, within the limit), every symbol travels once in
 * all, though each part's path names the chain, and the parts merged are
 * the tree. Sized for names of 256 bytes and carrying its path's names, a
 * part under the chain took 75 KB. A name longer than the limit is refused
 * with its node's position. */
static void test_parts_long_names(void)
{
    calltree_t *t = calltree_new(0), *merged = calltree_new(0);
    symtab_t *names = symtab_new(), *seen = symtab_new();
    char *name = malloc(4000);
    uint64_t stack[26];
    for (uint64_t k = 0; k < 25; k++) {
        stack[k] = 10 + k;
        memset(name, 'a' + (int)k % 26, 3000);
        CHECK_EQ_INT(symtab_put(names, stack[k], name, 3000, NULL, 0), 0);
    }
    for (uint64_t k = 0; k < 300; k++) {
        stack[25] = 1000 + k;
        memset(name, 'l', 300);
        CHECK_EQ_INT(symtab_put(names, stack[25], name, 300, "f.go", 4), 0);
        CHECK_EQ_INT(calltree_add_stack(t, stack, 26, (int64_t)(1 + k % 3)), 0);
    }
    repair_parts_sizes_t z = {.budget = 16384, .limit = 65536 - 1024};
    repair_parts_t p;
    CHECK_EQ_INT(repair_parts_plan(t, names, &z, &p), 0);
    CHECK(p.nparts > 6);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    named_t n = {.seen = seen, .names = names};
    for (uint32_t k = 0; k < p.nparts; k++) {
        calltree_t *part = calltree_new(0);
        CHECK_EQ_INT(repair_parts_build(t, &p, k, part), 0);
        buf_reset(&b);
        CHECK_EQ_INT(calltree_encode(part, &b), 0);
        n.bytes = 0;
        CHECK_EQ_INT(repair_parts_symbols(t, &p, k, count_named, &n), 0);
        CHECK(b.len + n.bytes <= z.budget || p.cut[k + 1] - p.cut[k] == 1);
        CHECK(b.len + n.bytes <= z.limit);
        CHECK_EQ_INT(calltree_merge(merged, part), 0);
        calltree_free(part);
    }
    CHECK_EQ_INT(n.twice, 0);
    CHECK_EQ_INT(symtab_count(seen), calltree_sym_count(t) - 1);
    CHECK_EQ_INT(calltree_node_count(merged), calltree_node_count(t));
    CHECK_EQ_INT(calltree_root_total(merged), calltree_root_total(t));
    repair_parts_free(&p);
    char *huge = malloc(70000); /* one name over the limit: refused, naming its node */
    memset(huge, 'h', 70000);
    CHECK_EQ_INT(symtab_put(names, 5000, huge, 70000, NULL, 0), 0);
    stack[25] = 5000;
    CHECK_EQ_INT(calltree_add_stack(t, stack, 26, 1), 0);
    CHECK_EQ_INT(repair_parts_plan(t, names, &z, &p), ERR_LIMIT);
    CHECK(p.over >= 26 && p.over < 327); /* a leaf (root and chain first) */
    CHECK(p.over_bytes > z.limit);
    repair_parts_free(&p);
    z.pieces = 1; /* in pieces of parts of no node before its node's part */
    CHECK_EQ_INT(repair_parts_plan(t, names, &z, &p), 0);
    size_t got = 0, npieces = 0;
    uint32_t last = 0;
    for (uint32_t k = 0; k < p.nparts; k++) {
        if (p.psym[k] == UINT32_MAX) continue;
        CHECK_EQ_INT(calltree_syms(t)[p.psym[k]], 5000);
        CHECK_EQ_INT(p.poff[k], got);
        CHECK_EQ_INT(p.cut[k], p.cut[k + 1]);
        got += z.budget - PART_SYMBOL_BYTES;
        npieces++;
        last = k;
    }
    CHECK(last + 1 < p.nparts && p.cut[last + 2] > p.cut[last + 1]); /* the node next */
    CHECK_EQ_INT(npieces,
                 (70000 + z.budget - PART_SYMBOL_BYTES - 1) / (z.budget - PART_SYMBOL_BYTES));
    memset(&n, 0, sizeof n);
    n.seen = symtab_new();
    n.names = names;
    for (uint32_t k = 0; k < p.nparts; k++)
        CHECK_EQ_INT(repair_parts_symbols(t, &p, k, count_named, &n), 0);
    const char *nm, *fl;
    CHECK_EQ_INT(symtab_get(n.seen, 5000, &nm, &fl), 0); /* not sent whole */
    CHECK_EQ_INT(symtab_count(n.seen), calltree_sym_count(t) - 2);
    symtab_free(n.seen);
    repair_parts_free(&p);
    free(huge);
    free(name);
    buf_free(&b);
    symtab_free(names);
    symtab_free(seen);
    calltree_free(t);
    calltree_free(merged);
}

/* Many profiles (issue #10): 3 nodes and 5,000 kept then 3,000 untreed
 * profiles cut into parts of 16 KiB: the parts' slices follow each other
 * and cover the lists, each within the budget. */
static void test_parts_profiles(void)
{
    calltree_t *t = calltree_new(0);
    uint64_t stack[2] = {1, 2};
    CHECK_EQ_INT(calltree_add_stack(t, stack, 2, 5), 0);
    repair_parts_sizes_t z = {.budget = 16384,
                              .limit = 65536,
                              .nkept = 5000,
                              .nuntreed = 3000,
                              .kept_bytes = PART_ENTRY_BYTES + 9,
                              .untreed_bytes = PART_ENTRY_BYTES + 9 + PART_TOTAL_BYTES};
    repair_parts_t p;
    CHECK_EQ_INT(repair_parts_plan(t, NULL, &z, &p), 0);
    CHECK(p.nparts >= (5000 * z.kept_bytes + 3000 * z.untreed_bytes) / z.budget);
    CHECK_EQ_INT(p.pcut[0], 0);
    CHECK_EQ_INT(p.pcut[p.nparts], 8000);
    CHECK_EQ_INT(p.cut[1], 3); /* the tree in the first part */
    for (uint32_t k = 0; k < p.nparts; k++) {
        size_t nk = 0, nu = 0;
        for (uint32_t j = p.pcut[k]; j < p.pcut[k + 1]; j++)
            j < 5000 ? nk++ : nu++;
        CHECK(p.pcut[k] < p.pcut[k + 1]);
        CHECK(nk * z.kept_bytes + nu * z.untreed_bytes <= z.budget);
    }
    repair_parts_free(&p);
    calltree_free(t);
}

/* One window snapshot of cursor key k into c at now_ms. */
static void cache_put(repair_partcache_t *c, const calltree_t *t, uint8_t k, uint64_t now_ms)
{
    storage_stream_profile_t kept = {.time_ns = 7};
    storage_stream_window_t w = {.tenant = "t1",
                                 .token = 5,
                                 .series_id = 9,
                                 .key = &k,
                                 .key_len = 1,
                                 .residual = t,
                                 .total = calltree_root_total(t),
                                 .kept = &kept,
                                 .nkept = 1};
    repair_window_t *x = NULL;
    CHECK_EQ_INT(repair_window_snapshot(&w, &k, 1, &x), 0);
    if (x == NULL) return;
    x->lo = 1;
    x->hi = 2;
    x->slices = 3;
    repair_partcache_put(c, x, now_ms);
}

/* The window cache (repair_partcache.c): a snapshot is found by its
 * cursor (interval, after_key, what it was planned for) with a copy of the
 * residual and lists; the least recently used goes when full, one idle
 * too long at the next access, the same cursor replaces its snapshot, and
 * a cache of 0 keeps none. */
static void test_partcache(void)
{
    calltree_t *t = calltree_new(0);
    uint64_t stack[2] = {1, 2};
    CHECK_EQ_INT(calltree_add_stack(t, stack, 2, 5), 0);
    repair_partcache_t *c = NULL;
    CHECK_EQ_INT(repair_partcache_new(2, 1000, &c), 0);
    uint8_t a = 'a', b = 'b', d = 'd';
    cache_put(c, t, a, 100);
    cache_put(c, t, b, 200);
    repair_window_t *w = repair_partcache_get(c, 1, 2, &a, 1, 3, 300);
    CHECK(w != NULL);
    if (w != NULL) {
        CHECK_EQ_INT(calltree_root_total(w->tree), 5);
        CHECK_EQ_INT(w->nkept, 1);
        CHECK_EQ_INT(w->kept[0].time_ns, 7);
        CHECK_EQ_INT(strcmp(w->tenant, "t1"), 0);
        repair_partcache_release(c);
    }
    CHECK(repair_partcache_get(c, 1, 2, &a, 1, 1, 300) == NULL); /* planned otherwise */
    CHECK(repair_partcache_get(c, 1, 3, &a, 1, 3, 300) == NULL); /* another interval */
    cache_put(c, t, d, 400); /* full: b, the least recently used, goes */
    CHECK(repair_partcache_get(c, 1, 2, &b, 1, 3, 400) == NULL);
    w = repair_partcache_get(c, 1, 2, &a, 1, 3, 500);
    CHECK(w != NULL);
    if (w != NULL) repair_partcache_release(c);
    w = repair_partcache_get(c, 1, 2, &d, 1, 3, 1300); /* a idle since 500: gone at 1501 */
    CHECK(w != NULL);
    if (w != NULL) repair_partcache_release(c);
    CHECK(repair_partcache_get(c, 1, 2, &a, 1, 3, 1600) == NULL);
    repair_partcache_free(c);
    CHECK_EQ_INT(repair_partcache_new(0, 1000, &c), 0);
    cache_put(c, t, a, 100);
    CHECK(repair_partcache_get(c, 1, 2, &a, 1, 3, 100) == NULL);
    repair_partcache_free(c);
    calltree_free(t);
}

/* The receiver's assembly of a window in parts (repair_partsin.c): a
 * symbol in pieces is put together from them in order, a piece of no bytes
 * (its data field absent: NULL, 0) included without a copy from the NULL
 * pointer (UBSan, found by fuzz_stream_parts), and a piece out of order is
 * corrupt. */
static void test_partsin_pieces(void)
{
    calltree_t *t = calltree_new(0);
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_add_stack(t, NULL, 0, 5), 0);
    CHECK_EQ_INT(calltree_encode(t, &enc), 0);
    calltree_free(t);
    Flamedb__Cluster__RepairAnswer a;
    flamedb__cluster__repair_answer__init(&a);
    Flamedb__Cluster__StreamWindow m;
    flamedb__cluster__stream_window__init(&m);
    m.calltree = (ProtobufCBinaryData){enc.len, enc.data};
    m.parts = 3;
    m.digest = 7;
    Flamedb__Cluster__SymbolPiece sp, *psp = &sp;
    flamedb__cluster__symbol_piece__init(&sp);
    sp.id = 42;
    sp.name_len = 3;
    sp.file_len = 2;
    m.pieces = &psp;
    m.n_pieces = 1;
    repair_partsin_t p = {0};
    CHECK_EQ_INT(repair_partsin_start(&p, m.digest, 0, 0), 0);
    CHECK(repair_partsin_follows(&p, &m));
    CHECK_EQ_INT(repair_partsin_add(&p, &a, &m), 0); /* no bytes: data absent */
    p.next++;
    m.part = 1;
    sp.data = (ProtobufCBinaryData){3, (uint8_t *)"abc"};
    CHECK_EQ_INT(repair_partsin_add(&p, &a, &m), 0);
    p.next++;
    m.part = 2;
    sp.offset = 3;
    sp.data = (ProtobufCBinaryData){2, (uint8_t *)"fg"};
    CHECK_EQ_INT(repair_partsin_add(&p, &a, &m), 0);
    const char *name = NULL, *file = NULL;
    CHECK_EQ_INT(symtab_get(p.syms, 42, &name, &file), 1);
    CHECK_EQ_STR(name, "abc");
    CHECK_EQ_STR(file, "fg");
    CHECK_EQ_INT(calltree_root_total(p.tree), 15);
    sp.offset = 1; /* no symbol under way */
    CHECK_EQ_INT(repair_partsin_add(&p, &a, &m), ERR_CORRUPT);
    repair_partsin_drop(&p);
    buf_free(&enc);
}

/* A window in parts whose lists and symbols keep coming (a peer with a bug,
 * or one that lies about its parts) is held to the receiver's max_bytes:
 * the part that would pass it is refused (ERR_LIMIT, p->over) and nothing
 * of it is kept; a part that says the window has more parts than part 0
 * did does not follow. Before, the lists grew with every part. */
static void test_partsin_bounded(void)
{
    calltree_t *t = calltree_new(0);
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_add_stack(t, NULL, 0, 1), 0);
    CHECK_EQ_INT(calltree_encode(t, &enc), 0);
    calltree_free(t);
    enum { PER_PART = 100, MAX = 64 * 1024 };
    Flamedb__Cluster__SeenEntry e[PER_PART], *pe[PER_PART];
    uint8_t id[16] = {1};
    for (int i = 0; i < PER_PART; i++) {
        flamedb__cluster__seen_entry__init(&e[i]);
        e[i].profile_id = (ProtobufCBinaryData){16, id};
        pe[i] = &e[i];
    }
    Flamedb__Cluster__RepairAnswer a;
    flamedb__cluster__repair_answer__init(&a);
    Flamedb__Cluster__Symbol y, *py = &y;
    flamedb__cluster__symbol__init(&y);
    char name[200];
    memset(name, 'n', sizeof name);
    y.name = (ProtobufCBinaryData){sizeof name, (uint8_t *)name};
    a.symbols = &py;
    a.n_symbols = 1;
    Flamedb__Cluster__StreamWindow m;
    flamedb__cluster__stream_window__init(&m);
    m.calltree = (ProtobufCBinaryData){enc.len, enc.data};
    m.parts = UINT32_MAX;
    m.digest = 9;
    m.profile_slices = 1;
    m.kept = pe;
    m.n_kept = PER_PART;
    size_t per =
        PER_PART * sizeof(storage_stream_profile_t) + REPAIR_PARTSIN_SYMBOL_BYTES + sizeof name;
    repair_partsin_t p = {0};
    CHECK_EQ_INT(repair_partsin_start(&p, m.digest, 0, MAX), 0);
    int rc = 0;
    uint32_t k;
    for (k = 0; k < 10000 && rc == 0; k++) {
        m.part = k;
        y.id = k + 1;
        CHECK(repair_partsin_follows(&p, &m));
        rc = repair_partsin_add(&p, &a, &m);
        if (rc == 0) p.next++;
    }
    CHECK_EQ_INT(rc, ERR_LIMIT);
    CHECK(p.over);
    CHECK_EQ_INT(k, MAX / per + 1); /* the first part past the bound */
    CHECK_EQ_INT(p.nkept, (MAX / per) * PER_PART);
    CHECK_EQ_INT(calltree_root_total(p.tree), MAX / per);
    repair_partsin_drop(&p);
    CHECK(p.over); /* kept for the caller's message and metric */
    /* the number of parts is part 0's */
    CHECK_EQ_INT(repair_partsin_start(&p, m.digest, 0, MAX), 0);
    m.part = 0;
    m.parts = 3;
    m.n_kept = 1;
    CHECK_EQ_INT(repair_partsin_add(&p, &a, &m), 0);
    CHECK(!p.over);
    p.next++;
    m.part = 1;
    m.parts = 4;
    CHECK(!repair_partsin_follows(&p, &m));
    m.parts = 3;
    CHECK(repair_partsin_follows(&p, &m));
    repair_partsin_drop(&p);
    buf_free(&enc);
}

/* The window check's sums of copy f (every window ending before `until`). */
static void wc_sums(fixture_t *f, int64_t until, int64_t *sums)
{
    CHECK_EQ_INT(storage_stream_sums_split(f->s, 0, UINT64_MAX, until, REPAIR_WINDOW_BUCKETS, sums),
                 0);
}

/* A STREAM_CHECK or IDS request of the whole token space naming profiles
 * of time in [from, until). */
static Flamedb__Cluster__RepairRequest wc_request(int kind, int64_t from, int64_t until)
{
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.kind = kind;
    q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
    q.lo = 0;
    q.hi = UINT64_MAX;
    q.from_s = from;
    q.until_s = until;
    q.profiles_from_s = from;
    q.sum_buckets = REPAIR_WINDOW_BUCKETS;
    q.limit = 16;
    return q;
}

/* Two profiles of one series and 10 s window, each on one copy only: their
 * windows' keys are the same, so are their buckets at every resolution,
 * and the copy whose profile is larger holds the other's sums everywhere.
 * By sums alone the window check took it as the whole copy (and the other
 * copy's profile was gone once the range was streamed from it). The
 * profile ids the check compares tell them apart: a count and hash that
 * differ, a listing that names the one this copy lacks (fetched, stored
 * once) and not this copy's, so the larger copy is not taken. */
static void test_window_bucket_collision(void)
{
    fixture_t a, b;
    if (fx_init(&a) != 0 || fx_init(&b) != 0) CHECK(0);
    a.now = b.now = T0 + 6 * 3600;
    int64_t until = T0 + 5 * 3600, from = T0 - 3600;
    put(&a, "svc-c", 501, T0 + 100, 3); /* a: profile 501, 3 samples */
    put(&b, "svc-c", 502, T0 + 103, 5); /* b: profile 502, 5, same window */
    static int64_t sa[REPAIR_WINDOW_BUCKETS * STORAGE_RESOLUTION_COUNT],
        sb[REPAIR_WINDOW_BUCKETS * STORAGE_RESOLUTION_COUNT];
    wc_sums(&a, until, sa);
    wc_sums(&b, until, sb);
    /* by sums b holds a: taken as the whole copy unless its ids are known */
    repair_wc_copy_t cb = {sb, 0};
    int mixed = 0;
    CHECK_EQ_INT(repair_windows_pick(sa, &cb, 1, &mixed), 0);
    CHECK_EQ_INT(mixed, 0);
    /* the ids say otherwise */
    repair_options_t o = {0};
    replicate_options_default(&o.write);
    o.write.shards = shards;
    o.max_message_bytes = 1 << 20;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    errmsg_t em = {{0}};
    Flamedb__Cluster__RepairRequest q =
        wc_request(FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_STREAM_CHECK, from, until);
    Flamedb__Cluster__RepairAnswer ka = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT,
                                   kb = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    CHECK_EQ_INT(repair_serve_build(a.s, &o, &q, NULL, NULL, &arena, &ka, &em), 0);
    CHECK_EQ_INT(repair_serve_build(b.s, &o, &q, NULL, NULL, &arena, &kb, &em), 0);
    CHECK(ka.profile_trees && kb.profile_trees);
    CHECK_EQ_INT(ka.profile_count, 1);
    CHECK_EQ_INT(kb.profile_count, 1);
    CHECK(ka.profile_hash != kb.profile_hash);
    /* b lists 502, which a lacks, and not 501 */
    q = wc_request(FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_IDS, from, until);
    Flamedb__Cluster__RepairAnswer ib = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    CHECK_EQ_INT(repair_serve_build(b.s, &o, &q, NULL, NULL, &arena, &ib, &em), 0);
    CHECK(ib.profile_trees);
    CHECK_EQ_INT(ib.n_entries, 1);
    uint8_t want[16];
    fx_id(want, 502);
    CHECK(memcmp(ib.entries[0]->profile_id.data, want, 16) == 0);
    storage_seen_entry_t se = {ib.entries[0]->tenant,
                               ib.entries[0]->token,
                               ib.entries[0]->series_id,
                               {0},
                               ib.entries[0]->time_ns};
    memcpy(se.profile_id, want, 16);
    CHECK_EQ_INT(storage_ptree_has(a.s, &se), 0);
    /* fetched from b and stored on a, twice: counted once */
    q = wc_request(FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_FETCH, from, until);
    q.entries = ib.entries;
    q.n_entries = ib.n_entries;
    Flamedb__Cluster__RepairAnswer fb = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    CHECK_EQ_INT(repair_serve_build(b.s, &o, &q, NULL, NULL, &arena, &fb, &em), 0);
    CHECK_EQ_INT(fb.n_writes, 1);
    for (int round = 0; round < 2; round++) {
        size_t written = 99;
        CHECK_EQ_INT(replicate_store_request(&o.write, a.s, fb.writes[0], &written, NULL, &em), 0);
        CHECK_EQ_INT(written, round == 0 ? 1 : 0);
    }
    CHECK_EQ_INT(storage_ptree_has(a.s, &se), 1);
    wc_sums(&a, until, sa);
    int64_t total = 0;
    for (int k = 0; k < REPAIR_WINDOW_BUCKETS; k++)
        total += sa[k * STORAGE_RESOLUTION_COUNT]; /* the 10 s windows */
    CHECK_EQ_INT(total, 3 + 5);
    /* b lacks a's 501: never the whole copy, and a's copy now holds b's */
    cb.lacks_mine = 1;
    mixed = 0;
    wc_sums(&b, until, sb);
    CHECK_EQ_INT(repair_windows_pick(sa, &cb, 1, &mixed), -1);
    CHECK_EQ_INT(mixed, 0);
    repair_wc_copy_t ca = {sa, 0};
    CHECK_EQ_INT(repair_windows_pick(sb, &ca, 1, &mixed), 0); /* b's check: a holds it */
    arena_free(&arena);
    fx_done(&a);
    fx_done(&b);
}

static calltree_t *stacks_tree(const uint64_t (*stacks)[3], const int64_t *vals, size_t n)
{
    calltree_t *t = calltree_new(0);
    CHECK(t != NULL);
    for (size_t i = 0; t != NULL && i < n; i++)
        CHECK_EQ_INT(calltree_add_stack(t, stacks[i], 3, vals[i]), 0);
    return t;
}

/* The fill's test of a window both copies hold (repair_tree_digest): the
 * same stacks and values added in another order digest alike; a value
 * moved to another stack of the same total, or onto a node's parent, does
 * not; nor does a symbol at another depth. */
static void test_window_digest(void)
{
    const uint64_t s[4][3] = {{1, 2, 3}, {1, 2, 4}, {1, 5, 3}, {2, 1, 3}};
    const uint64_t r[4][3] = {{2, 1, 3}, {1, 5, 3}, {1, 2, 4}, {1, 2, 3}};
    const int64_t v[4] = {5, 3, 7, 2}, rv[4] = {2, 7, 3, 5}, moved[4] = {3, 5, 7, 2};
    calltree_t *a = stacks_tree(s, v, 4), *b = stacks_tree(r, rv, 4);
    calltree_t *c = stacks_tree(s, moved, 4), *d = stacks_tree(s, v, 3);
    uint64_t da = 0, db = 1, dc = 0, dd = 0;
    CHECK_EQ_INT(repair_tree_digest(a, &da), 0);
    CHECK_EQ_INT(repair_tree_digest(b, &db), 0);
    CHECK_EQ_INT(repair_tree_digest(c, &dc), 0);
    CHECK_EQ_INT(repair_tree_digest(d, &dd), 0);
    CHECK(da == db);
    CHECK(calltree_root_total(c) == calltree_root_total(a) && dc != da);
    CHECK(dd != da);
    const uint64_t p[1][3] = {{1, 2, 3}}, q[1][3] = {{1, 3, 2}};
    const int64_t one[1] = {4};
    calltree_t *e = stacks_tree(p, one, 1), *f = stacks_tree(q, one, 1);
    uint64_t de = 0, df = 0;
    CHECK_EQ_INT(repair_tree_digest(e, &de), 0);
    CHECK_EQ_INT(repair_tree_digest(f, &df), 0);
    CHECK(de != df);
    calltree_free(a);
    calltree_free(b);
    calltree_free(c);
    calltree_free(d);
    calltree_free(e);
    calltree_free(f);
}

/* The IDS paging cursor (repair_ids_cursor_t) of the seen comparison and
 * the window check: pages of 5 entries, each asked after the last one of
 * the page before, list every entry once and in the order one page of them
 * all does, from the seen index and from profile_trees alike. */
static void test_ids_cursor(fixture_t *a)
{
    repair_options_t o = {0};
    replicate_options_default(&o.write);
    o.write.shards = shards;
    o.max_message_bytes = 1 << 20;
    arena_t arena;
    arena_init(&arena, 4096, 1 << 20);
    errmsg_t em = {{0}};
    for (int trees = 0; trees < 2; trees++) {
        Flamedb__Cluster__RepairRequest q;
        repair_ids_cursor_t cur = {0};
        repair_ids_request_init(&q, 0, UINT64_MAX, T0, T0 + 5 * 3600, &cur);
        CHECK(q.after == NULL);
        q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
        q.limit = 1000;
        if (trees) q.profiles_from_s = T0;
        Flamedb__Cluster__RepairAnswer all = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
        CHECK_EQ_INT(repair_serve_build(a->s, &o, &q, NULL, NULL, &arena, &all, &em), 0);
        CHECK_EQ_INT(all.n_entries, 24); /* svc-a 1..20, 21, 22; svc-b 50, 24 */
        CHECK_EQ_INT(all.more, 0);
        size_t seen = 0, pages = 0;
        for (int more = 1; more && pages < 100; pages++) {
            repair_ids_request_init(&q, 0, UINT64_MAX, T0, T0 + 5 * 3600, &cur);
            CHECK((q.after != NULL) == (pages > 0));
            q.deadline_unix_ms = (uint64_t)(T0 + 3600) * 1000;
            q.limit = 5;
            if (trees) q.profiles_from_s = T0;
            Flamedb__Cluster__RepairAnswer p = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
            CHECK_EQ_INT(repair_serve_build(a->s, &o, &q, NULL, NULL, &arena, &p, &em), 0);
            for (size_t i = 0; i < p.n_entries && seen + i < all.n_entries; i++)
                CHECK(memcmp(p.entries[i]->profile_id.data, all.entries[seen + i]->profile_id.data,
                             16) == 0 &&
                      p.entries[i]->series_id == all.entries[seen + i]->series_id);
            seen += p.n_entries;
            more = p.more && p.n_entries > 0;
            repair_ids_cursor_next(&cur, p.entries, p.n_entries);
            if (p.n_entries > 0)
                CHECK_EQ_INT(cur.after.time_ns, p.entries[p.n_entries - 1]->time_ns);
        }
        CHECK_EQ_INT(seen, all.n_entries);
        CHECK_EQ_INT(pages, 5); /* 5 + 5 + 5 + 5 + 4 */
        Flamedb__Cluster__SeenEntry *none = NULL;
        repair_ids_cursor_t kept = cur;
        repair_ids_cursor_next(&cur, &none, 0); /* an empty page leaves it */
        CHECK(memcmp(&kept, &cur, sizeof cur) == 0);
    }
    arena_free(&arena);
}

/* A full repair's regain interval that straddles a removal's gain (its
 * plan ran on a ring where this node replicated more) is cut at the gain's
 * edges, so each piece is wholly a gain (streamed whole) or wholly the
 * mark's own (united by id when no replica serves it whole); a gain at the
 * ends of the token space and one that holds the whole interval cut
 * nothing wrong. */
static void test_cut_at_gains(void)
{
    const uint64_t glo[] = {0, 100, 300, UINT64_MAX - 9};
    const uint64_t ghi[] = {9, 199, 300, UINT64_MAX};
    uint64_t *lo = NULL, *hi = NULL;
    size_t n = 0, cap = 0;
    CHECK_EQ_INT(repair_cut_at_gains(glo, ghi, 4, 50, 350, &lo, &hi, &n, &cap), 0);
    static const uint64_t want_lo[] = {50, 100, 200, 300, 301};
    static const uint64_t want_hi[] = {99, 199, 299, 300, 350};
    CHECK_EQ_INT(n, 5);
    for (size_t i = 0; i < n && i < 5; i++) {
        CHECK(lo[i] == want_lo[i]);
        CHECK(hi[i] == want_hi[i]);
    }
    n = 0; /* whole: one gain holds it, or none touches it */
    CHECK_EQ_INT(repair_cut_at_gains(glo, ghi, 4, 120, 180, &lo, &hi, &n, &cap), 0);
    CHECK_EQ_INT(repair_cut_at_gains(glo, ghi, 4, 400, 500, &lo, &hi, &n, &cap), 0);
    CHECK_EQ_INT(repair_cut_at_gains(glo, ghi, 0, 0, UINT64_MAX, &lo, &hi, &n, &cap), 0);
    CHECK_EQ_INT(n, 3);
    CHECK(n == 3 && lo[0] == 120 && hi[0] == 180 && lo[1] == 400 && hi[1] == 500 && lo[2] == 0 &&
          hi[2] == UINT64_MAX);
    n = 0; /* the whole token space: both ends cut off */
    CHECK_EQ_INT(repair_cut_at_gains(glo, ghi, 4, 0, UINT64_MAX, &lo, &hi, &n, &cap), 0);
    CHECK_EQ_INT(n, 7);
    CHECK(n == 7 && lo[0] == 0 && hi[0] == 9 && lo[1] == 10 && hi[6] == UINT64_MAX &&
          lo[6] == UINT64_MAX - 9 && hi[5] == UINT64_MAX - 10);
    free(lo);
    free(hi);
}

int main(void)
{
    test_cut_at_gains();
    test_schedule();
    test_partsin_pieces();
    test_partsin_bounded();
    test_parts();
    test_parts_anchored();
    test_parts_long_names();
    test_parts_profiles();
    test_partcache();
    shards.default_shards = RING_DEFAULT_SHARDS_PER_SERVICE;
    test_window_bucket_collision();
    test_window_digest();
    fixture_t a, b;
    shards.default_shards = RING_DEFAULT_SHARDS_PER_SERVICE;
    if (fx_init(&a) != 0 || fx_init(&b) != 0) return 1;
    a.now = b.now = T0 + 6 * 3600;
    test_digests(&a, &b);
    test_seen_scan(&a);
    test_ids_cursor(&a);
    test_span();
    test_fetch(&a, &b);
    test_stream_answer_outlives_builder(&a);
    test_digest_leaves_out_untrusted(&a);
    fixture_t c;
    if (fx_init(&c) != 0) return 1;
    c.now = T0 + 6 * 3600;
    test_fetch_over_limit(&a, &c);
    test_fetch_piece(&a, &b);
    fx_done(&a);
    fx_done(&b);
    fx_done(&c);
    return check_exit();
}
