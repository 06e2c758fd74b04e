/* test_node_placement.c — the placement policy a data directory records
 * (node/placement.h) on a real RocksDB store: recorded at the first start,
 * taken by later starts for the settings not given, a given one that
 * differs refused while the directory holds series and recorded while it
 * holds none, and a directory with series but no record (written before
 * the record existed) kept at --shard-by-profile 0. Also the policy's text
 * form (ring_shard_policy_format/read/equal). */
#include "test_storage_fixture.h" /* first: it asks for _GNU_SOURCE */

#include "check.h"
#include "node/placement.h"

static ring_shard_policy_t policy(uint32_t shards, int by_profile, const char *services)
{
    ring_shard_policy_t p = {.default_shards = shards, .by_profile = by_profile};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_shard_policy_parse(&p, services, &em), 0);
    return p;
}

static void test_text(void)
{
    ring_shard_policy_t a = policy(4, 1, "search=8,checkout=16"),
                        b = policy(4, 1, "checkout=16,search=8");
    buf_t t;
    buf_init(&t, BUF_UNLIMITED);
    CHECK_EQ_INT(ring_shard_policy_format(&a, &t), 0);
    CHECK_EQ_STR((const char *)t.data, "shards=4;by_profile=1;services=checkout=16,search=8");
    CHECK(ring_shard_policy_equal(&a, &b));
    ring_shard_policy_t r;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_shard_policy_read(&r, (const char *)t.data, &em), 0);
    CHECK(ring_shard_policy_equal(&a, &r));
    CHECK_EQ_INT(ring_shards_for(&r, "search"), 8);
    ring_shard_policy_t c = policy(4, 0, "checkout=16,search=8"), d = policy(8, 1, "");
    CHECK(!ring_shard_policy_equal(&a, &c));
    CHECK(!ring_shard_policy_equal(&a, &d));
    CHECK_EQ_INT(ring_shard_policy_read(&r, "shards=4;by_profile=1;services=", &em), 0);
    CHECK_EQ_INT(r.n, 0);
    static const char *bad[] = {"",
                                "shards=4",
                                "shards=0;by_profile=1;services=",
                                "shards=4;by_profile=2;services=",
                                "shards=4;by_profile=1;x=",
                                "shards=4;by_profile=1;services=a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(ring_shard_policy_read(&r, bad[i], &em), ERR_INVALID_ARGUMENT);
    buf_free(&t);
}

static int settle(fixture_t *f, unsigned given, ring_shard_policy_t *p, int *recorded, errmsg_t *em)
{
    memset(em, 0, sizeof *em);
    return node_placement_settle(f->s, f->dir, given, p, recorded, em);
}

/* One series written, as any push would. */
static void put_series(fixture_t *f)
{
    symtab_t *st = symtab_new();
    labels_t *l = fx_labels("api", NULL);
    static const char *const stacks[] = {"main;work"};
    fx_write_stacks(f, st, l, 42, stacks, 1, 1);
    labels_free(l);
    symtab_free(st);
}

static void test_recorded(void)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    errmsg_t em;
    int recorded = -1;
    ring_shard_policy_t p = policy(4, 1, "");
    CHECK_EQ_INT(settle(&f, 0, &p, &recorded, &em), 0);
    CHECK_EQ_INT(recorded, 0);
    /* no series yet: a given setting may still change the record */
    p = policy(4, 0, "");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_BY_PROFILE, &p, &recorded, &em), 0);
    p = policy(4, 1, ""); /* the default again: the record (0) wins */
    CHECK_EQ_INT(settle(&f, 0, &p, &recorded, &em), 0);
    CHECK_EQ_INT(recorded, 1);
    CHECK_EQ_INT(p.by_profile, 0);
    put_series(&f);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    /* with series: a given setting that differs is refused, naming it */
    p = policy(4, 1, "");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_BY_PROFILE, &p, &recorded, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "--shard-by-profile is '1'") != NULL);
    CHECK(strstr(em.text, "placed with '0'") != NULL);
    CHECK(strstr(em.text, f.dir) != NULL);
    p = policy(8, 0, "");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_SHARDS, &p, &recorded, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "--shards-per-service is '8'") != NULL);
    p = policy(4, 0, "api=2");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_SERVICES, &p, &recorded, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "--service-shards is 'api=2'") != NULL);
    /* the same values given are fine; the others come from the record */
    p = policy(16, 0, "x=3");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_BY_PROFILE, &p, &recorded, &em), 0);
    CHECK_EQ_INT(p.default_shards, 4);
    CHECK_EQ_INT(p.n, 0);
    fx_done(&f);
}

/* A directory with series and no record: placed before the record existed,
 * under the old default --shard-by-profile 0, unless given. */
static void test_legacy(void)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    put_series(&f);
    errmsg_t em;
    int recorded = -1;
    ring_shard_policy_t p = policy(4, 1, "");
    CHECK_EQ_INT(settle(&f, 0, &p, &recorded, &em), 0);
    CHECK_EQ_INT(recorded, 0);
    CHECK_EQ_INT(p.by_profile, NODE_PLACEMENT_LEGACY_BY_PROFILE);
    p = policy(4, 1, "");
    CHECK_EQ_INT(settle(&f, 0, &p, &recorded, &em), 0);
    CHECK_EQ_INT(recorded, 1);
    CHECK_EQ_INT(p.by_profile, 0);
    fx_done(&f);
    /* given: the operator knows how it was placed */
    CHECK_EQ_INT(fx_init(&f), 0);
    put_series(&f);
    p = policy(4, 1, "");
    CHECK_EQ_INT(settle(&f, NODE_PLACEMENT_GIVEN_BY_PROFILE, &p, &recorded, &em), 0);
    p = policy(4, 0, "");
    CHECK_EQ_INT(settle(&f, 0, &p, &recorded, &em), 0);
    CHECK_EQ_INT(p.by_profile, 1);
    fx_done(&f);
}

int main(void)
{
    test_text();
    test_recorded();
    test_legacy();
    return check_exit();
}
