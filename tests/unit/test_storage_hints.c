/* test_storage_hints.c — the hints column family: oldest-first scans per
 * target, paging with after_seq, the per-target byte bound, deletes,
 * per-target counts and bytes, persistence across reopen (the in-memory
 * table is rebuilt), and targets that are prefixes of one another. */
#include "test_storage_fixture.h"

typedef struct seen {
    uint64_t seq[64];
    char rec[64][32];
    size_t n;
} seen_t;

static int collect(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    seen_t *s = ctx;
    if (s->n < 64) {
        s->seq[s->n] = seq;
        snprintf(s->rec[s->n], sizeof s->rec[0], "%.*s", (int)len, (const char *)rec);
        s->n++;
    }
    return 0;
}

typedef struct tstat {
    char ids[8][80];
    uint64_t count[8], bytes[8];
    size_t n;
} tstat_t;

static int targets_cb(void *ctx, const char *target, uint64_t count, uint64_t bytes)
{
    tstat_t *t = ctx;
    if (t->n < 8) {
        snprintf(t->ids[t->n], sizeof t->ids[0], "%s", target);
        t->count[t->n] = count;
        t->bytes[t->n] = bytes;
        t->n++;
    }
    return 0;
}

static tstat_t targets(storage_t *s)
{
    tstat_t t;
    memset(&t, 0, sizeof t);
    CHECK_EQ_INT(storage_hint_targets(s, targets_cb, &t), 0);
    return t;
}

static seen_t scan(storage_t *s, const char *target, uint64_t after, size_t limit)
{
    seen_t v;
    memset(&v, 0, sizeof v);
    CHECK_EQ_INT(storage_hint_scan(s, target, after, limit, collect, &v), 0);
    return v;
}

static void put_total(storage_t *s, const char *target, const char *rec, uint64_t max,
                      uint64_t max_total, int want_rc)
{
    errmsg_t em = {{0}};
    int rc =
        storage_hint_put(s, target, (const uint8_t *)rec, strlen(rec), max, max_total, NULL, &em);
    CHECK_EQ_INT(rc, want_rc);
    if (rc != want_rc) fprintf(stderr, "  put %s: %s\n", target, errmsg_text(&em, rc));
}

static void put(storage_t *s, const char *target, const char *rec, uint64_t max, int want_rc)
{
    put_total(s, target, rec, max, 0, want_rc);
}

static void test_order_and_paging(fixture_t *f)
{
    /* "node-1" is a prefix of "node-10": their keys must not mix */
    for (int i = 0; i < 10; i++) {
        char rec[16];
        snprintf(rec, sizeof rec, "a%02d", i);
        put(f->s, "node-1", rec, 0, 0);
        snprintf(rec, sizeof rec, "b%02d", i);
        put(f->s, "node-10", rec, 0, 0);
    }
    seen_t all = scan(f->s, "node-1", 0, 100);
    CHECK_EQ_INT(all.n, 10);
    for (size_t i = 0; i < all.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "a%02d", (int)i);
        CHECK_EQ_STR(all.rec[i], want);
        if (i > 0) CHECK(all.seq[i] > all.seq[i - 1]);
    }
    seen_t page = scan(f->s, "node-1", 0, 4);
    CHECK_EQ_INT(page.n, 4);
    seen_t next = scan(f->s, "node-1", page.seq[3], 4);
    CHECK_EQ_INT(next.n, 4);
    CHECK_EQ_STR(next.rec[0], "a04");
    CHECK_EQ_INT(scan(f->s, "node-10", 0, 100).n, 10);
    CHECK_EQ_STR(scan(f->s, "node-10", 0, 1).rec[0], "b00");
    CHECK_EQ_INT(scan(f->s, "node-2", 0, 100).n, 0);
    CHECK_EQ_INT(scan(f->s, "node-1", UINT64_MAX, 100).n, 0);

    tstat_t t = targets(f->s);
    CHECK_EQ_INT(t.n, 2);
    CHECK_EQ_STR(t.ids[0], "node-1");
    CHECK_EQ_STR(t.ids[1], "node-10");
    CHECK_EQ_INT(t.count[0], 10);
    CHECK_EQ_INT(t.bytes[0], 30);

    /* delete: counts follow; a second delete of the same hint is a no-op */
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_hint_delete(f->s, "node-1", all.seq[0], &em), 0);
    CHECK_EQ_INT(storage_hint_delete(f->s, "node-1", all.seq[0], &em), 0);
    CHECK_EQ_INT(storage_hint_delete(f->s, "node-1", 12345, &em), 0);
    t = targets(f->s);
    CHECK_EQ_INT(t.count[0], 9);
    CHECK_EQ_INT(t.bytes[0], 27);
    CHECK_EQ_STR(scan(f->s, "node-1", 0, 1).rec[0], "a01");

    /* persistence: the table is rebuilt at open, seqs keep increasing */
    CHECK_EQ_INT(fx_reopen(f), 0);
    t = targets(f->s);
    CHECK_EQ_INT(t.n, 2);
    CHECK_EQ_INT(t.count[0], 9);
    CHECK_EQ_INT(t.bytes[0], 27);
    CHECK_EQ_INT(t.count[1], 10);
    put(f->s, "node-1", "a10", 0, 0);
    seen_t after = scan(f->s, "node-1", 0, 100);
    CHECK_EQ_INT(after.n, 10);
    CHECK_EQ_STR(after.rec[9], "a10");
    CHECK(after.seq[9] > after.seq[8]);

    /* deleting everything removes the target from the table */
    for (size_t i = 0; i < after.n; i++)
        CHECK_EQ_INT(storage_hint_delete(f->s, "node-1", after.seq[i], &em), 0);
    t = targets(f->s);
    CHECK_EQ_INT(t.n, 1);
    CHECK_EQ_STR(t.ids[0], "node-10");
}

static void test_bound(fixture_t *f)
{
    /* 100 bytes per target: ten 10-byte hints fit, the eleventh is refused */
    for (int i = 0; i < 10; i++)
        put(f->s, "bounded", "0123456789", 100, 0);
    put(f->s, "bounded", "0123456789", 100, ERR_LIMIT);
    put(f->s, "bounded", "x", 100, ERR_LIMIT);
    put(f->s, "other", "0123456789", 100, 0); /* per target */
    put(f->s, "huge", "0123456789", 5, ERR_LIMIT);
    tstat_t t = targets(f->s);
    CHECK_EQ_INT(t.n, 3); /* bounded, node-10, other */
    seen_t v = scan(f->s, "bounded", 0, 100);
    CHECK_EQ_INT(v.n, 10);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_hint_delete(f->s, "bounded", v.seq[0], &em), 0);
    put(f->s, "bounded", "0123456789", 100, 0); /* room again */
    put(f->s, "bounded", "0", 100, ERR_LIMIT);

    /* bad targets */
    put(f->s, "", "x", 0, ERR_INVALID_ARGUMENT);
    char longid[80];
    memset(longid, 'n', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    put(f->s, longid, "x", 0, ERR_INVALID_ARGUMENT);
}

static uint64_t total_bytes(storage_t *s)
{
    tstat_t t = targets(s);
    uint64_t n = 0;
    for (size_t i = 0; i < t.n; i++)
        n += t.bytes[i];
    return n;
}

/* The bound over all targets: with two targets each under its own bound,
 * the one whose hint would take the total over it is refused. */
static void test_total_bound(fixture_t *f)
{
    uint64_t have = total_bytes(f->s), max = have + 25;
    put_total(f->s, "down-a", "0123456789", 100, max, 0);
    put_total(f->s, "down-b", "0123456789", 100, max, 0);
    put_total(f->s, "down-a", "0123456789", 100, max, ERR_LIMIT); /* 30 more than have */
    put_total(f->s, "down-b", "012345", 100, max, ERR_LIMIT);
    put_total(f->s, "down-c", "01234", 100, max, 0); /* exactly the bound */
    put_total(f->s, "down-c", "x", 100, max, ERR_LIMIT);
    CHECK_EQ_INT(total_bytes(f->s), max);
    seen_t v = scan(f->s, "down-a", 0, 100);
    CHECK_EQ_INT(v.n, 1);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_hint_delete(f->s, "down-a", v.seq[0], &em), 0);
    put_total(f->s, "down-b", "0123456789", 100, max, 0); /* room again */
    put_total(f->s, "huge", "x", 100, 0, 0);              /* 0: no total bound */
}

static int stop_after_two(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    int *n = ctx;
    return ++*n == 2 ? 7 : 0;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    test_order_and_paging(&f);
    test_bound(&f);
    test_total_bound(&f);
    int n = 0;
    CHECK_EQ_INT(storage_hint_scan(f.s, "node-10", 0, 100, stop_after_two, &n), 7);
    CHECK_EQ_INT(n, 2);
    fx_done(&f);
    return check_exit();
}
