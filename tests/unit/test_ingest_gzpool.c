/* test_ingest_gzpool.c — gunzip states kept between pushes (ingest.h,
 * ingest_gzpool.c): a gzipped push reuses the buffer an earlier one left,
 * parses exactly what it would have parsed with a new one (a shorter body
 * after a longer one reads none of the older bytes), an idle buffer is
 * charged to the budget and given back when taken or freed, and a buffer
 * over the byte bound, over the count or without room in the budget is
 * freed instead of kept. */
#include "common/alloc.h"
#include "common/buf.h"
#include "node/ingest/ingest_int.h"
#include "test_ingest_util.h"

/* A folded body of n distinct stacks (about 40 bytes each). */
static char *folded(size_t n, const char *leaf)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "main;handler_%zu;work_%zu;%s %zu\n", i % 97, i, leaf, i + 1);
    buf_append_byte(&b, 0);
    return (char *)b.data;
}

/* Parses body gzipped with lim; the encoding of every series' tree
 * (labels order) into out, or an error. */
static int parse_gz(const char *body, const ingest_limits_t *lim, buf_t *out, errmsg_t *em)
{
    size_t gn = 0;
    uint8_t *gz = test_gzip(body, strlen(body), &gn);
    ingest_request_t r = test_req("app.cpu", "folded", gz, gn);
    ingest_profile_t *p;
    int rc = test_parse(&r, lim, &p, em);
    free(gz);
    if (rc != 0) return rc;
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; i < w->nseries && rc == 0; i++)
        rc = calltree_encode(w->series[i].tree, out);
    ingest_profile_free(p);
    return rc;
}

/* What a push parses with a pool, one after another, is what it parses
 * without one: a large body, then a small one into the same buffer, then
 * a large one again. The second and third reuse the first's buffer. */
static void test_reuse_parses_the_same(void)
{
    char *bodies[3] = {folded(4000, "a"), folded(10, "b"), folded(3000, "c")};
    ingest_limits_t fresh, pooled;
    ingest_limits_default(&fresh);
    ingest_limits_default(&pooled);
    CHECK_EQ_INT(ingest_gzpool_new(1, 8u << 20, NULL, &pooled.gzpool), 0);
    for (int i = 0; i < 3; i++) {
        buf_t a, b;
        buf_init(&a, BUF_UNLIMITED);
        buf_init(&b, BUF_UNLIMITED);
        errmsg_t em;
        CHECK_EQ_INT(parse_gz(bodies[i], &fresh, &a, &em), 0);
        CHECK_EQ_INT(parse_gz(bodies[i], &pooled, &b, &em), 0);
        CHECK(a.len > 0);
        CHECK_EQ_INT((int64_t)a.len, (int64_t)b.len);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        buf_free(&a);
        buf_free(&b);
    }
    ingest_gzpool_stats_t st;
    ingest_gzpool_stats(pooled.gzpool, &st);
    CHECK_EQ_INT((int64_t)st.fresh, 1);
    CHECK_EQ_INT((int64_t)st.reused, 2);
    CHECK(st.idle_bytes >= strlen(bodies[0])); /* the first, largest buffer kept */
    ingest_gzpool_free(pooled.gzpool);
    for (int i = 0; i < 3; i++)
        free(bodies[i]);
}

/* An idle buffer is charged; taking it gives the charge back (the push
 * charges its bytes itself while it parses); freeing the pool gives all
 * back. A full budget or a buffer over the bound: freed, not kept. */
static void test_idle_charged_and_bounded(void)
{
    char *body = folded(2000, "x");
    alloc_budget_t budget;
    alloc_budget_init(&budget, 64u << 20);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.inflight = &budget;
    CHECK_EQ_INT(ingest_gzpool_new(2, 8u << 20, &budget, &lim.gzpool), 0);
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    errmsg_t em;
    CHECK_EQ_INT(parse_gz(body, &lim, &out, &em), 0);
    ingest_gzpool_stats_t st;
    ingest_gzpool_stats(lim.gzpool, &st);
    CHECK(st.idle_bytes >= strlen(body));
    CHECK_EQ_INT((int64_t)alloc_budget_used(&budget), (int64_t)st.idle_bytes);
    gz_state_t g;
    CHECK_EQ_INT(ingest_gzpool_take(lim.gzpool, &g), 0); /* what a push does */
    CHECK(g.data != NULL && g.cap == st.idle_bytes);
    CHECK_EQ_INT((int64_t)alloc_budget_used(&budget), 0);
    ingest_gzpool_give(lim.gzpool, &g);
    CHECK(g.data == NULL);
    CHECK_EQ_INT((int64_t)alloc_budget_used(&budget), (int64_t)st.idle_bytes);
    ingest_gzpool_free(lim.gzpool);
    CHECK_EQ_INT((int64_t)alloc_budget_used(&budget), 0);

    /* the budget has no room for the idle buffer: freed */
    alloc_budget_init(&budget, 1024);
    CHECK_EQ_INT(ingest_gzpool_new(2, 8u << 20, &budget, &lim.gzpool), 0);
    lim.inflight = NULL;
    CHECK_EQ_INT(parse_gz(body, &lim, &out, &em), 0);
    ingest_gzpool_stats(lim.gzpool, &st);
    CHECK_EQ_INT((int64_t)st.idle_bytes, 0);
    CHECK_EQ_INT((int64_t)alloc_budget_used(&budget), 0);
    ingest_gzpool_free(lim.gzpool);

    /* over the byte bound (or 0: none kept): freed, and the next push starts fresh */
    CHECK_EQ_INT(ingest_gzpool_new(2, 1024, NULL, &lim.gzpool), 0);
    CHECK_EQ_INT(parse_gz(body, &lim, &out, &em), 0);
    CHECK_EQ_INT(parse_gz(body, &lim, &out, &em), 0);
    ingest_gzpool_stats(lim.gzpool, &st);
    CHECK_EQ_INT((int64_t)st.idle_bytes, 0);
    CHECK_EQ_INT((int64_t)st.reused, 0);
    CHECK_EQ_INT((int64_t)st.fresh, 2);
    ingest_gzpool_free(lim.gzpool);
    buf_free(&out);
    free(body);
}

/* At most `keep` states idle: two taken at once (two workers), both given
 * back, one kept. */
static void test_keeps_at_most_count(void)
{
    ingest_gzpool_t *p;
    CHECK_EQ_INT(ingest_gzpool_new(1, 1u << 20, NULL, &p), 0);
    gz_state_t a, b;
    CHECK_EQ_INT(ingest_gzpool_take(p, &a), 0);
    CHECK_EQ_INT(ingest_gzpool_take(p, &b), 0);
    a.data = malloc(100);
    a.cap = 100;
    b.data = malloc(200);
    b.cap = 200;
    ingest_gzpool_give(p, &a);
    ingest_gzpool_give(p, &b);
    ingest_gzpool_stats_t st;
    ingest_gzpool_stats(p, &st);
    CHECK_EQ_INT((int64_t)st.idle_bytes, 100);
    ingest_gzpool_free(p);
}

/* A corrupt body fails as before and its state goes back to the pool:
 * the next push parses. */
static void test_corrupt_then_good(void)
{
    char *body = folded(500, "y");
    size_t gn = 0;
    uint8_t *gz = test_gzip(body, strlen(body), &gn);
    gz[gn / 2] ^= 0x55;
    gz[gn / 2 + 1] ^= 0xAA;
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    CHECK_EQ_INT(ingest_gzpool_new(1, 8u << 20, NULL, &lim.gzpool), 0);
    ingest_request_t r = test_req("app.cpu", "folded", gz, gn);
    ingest_profile_t *p;
    errmsg_t em;
    int rc = test_parse(&r, &lim, &p, &em);
    CHECK(rc != 0 || p != NULL); /* a flipped byte may still inflate; never a crash */
    ingest_profile_free(p);
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    CHECK_EQ_INT(parse_gz(body, &lim, &out, &em), 0);
    ingest_gzpool_stats_t st;
    ingest_gzpool_stats(lim.gzpool, &st);
    CHECK_EQ_INT((int64_t)(st.reused + st.fresh), 2);
    ingest_gzpool_free(lim.gzpool);
    buf_free(&out);
    free(gz);
    free(body);
}

int main(void)
{
    test_reuse_parses_the_same();
    test_idle_charged_and_bounded();
    test_keeps_at_most_count();
    test_corrupt_then_good();
    return check_exit();
}
