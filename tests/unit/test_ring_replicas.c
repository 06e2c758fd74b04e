/* Token generation, identity files and replica selection (ring.h).
 *
 * The golden vectors pin RING_REPLICA_VERSION 1: the tokens a seed yields and
 * the replicas of placement tokens on a fixed ring. If they fail, data would
 * move: bump RING_REPLICA_VERSION and migrate instead. */
#include "test_ring_util.h"

#define GOLD_ID_T0 0x044c3cd7f43c661cULL
#define GOLD_ID_T3 0xe6984080bab12a02ULL
#define GOLD_FINGERPRINT 0x6414c5405a6efb41ULL
#define GOLD_REPLICAS                                                                              \
    {                                                                                              \
        {"n02", "n00"}, {"n02", "n00"}, {"n00", "n01"},                                            \
        {                                                                                          \
            "n01", "n02"                                                                           \
        }                                                                                          \
    }

static void test_rng_golden(void)
{
    ring_rng_t r;
    ring_rng_seed(&r, 0);
    CHECK(ring_rng_next(&r) == 0xe220a8397b1dcdafULL);
    CHECK(ring_rng_next(&r) == 0x6e789e6aa1b965f4ULL);
    ring_rng_seed(&r, 42);
    CHECK(ring_rng_next(&r) == 0xbdd732262feb6e95ULL);
}

static void test_identity_golden(void)
{
    ring_rng_t r;
    ring_rng_seed(&r, 7);
    ring_identity_t id;
    CHECK_EQ_INT(ring_identity_generate(&id, "node-a", 4, &r, NULL), 0);
    CHECK_EQ_INT(id.ntokens, 4);
    for (uint32_t i = 1; i < id.ntokens; i++)
        CHECK(id.tokens[i] > id.tokens[i - 1]);
    CHECK(id.tokens[0] == GOLD_ID_T0);
    CHECK(id.tokens[3] == GOLD_ID_T3);
    ring_identity_free(&id);
}

static void test_identity_file(void)
{
    ring_rng_t r;
    ring_rng_seed(&r, 99);
    ring_identity_t id, back;
    CHECK_EQ_INT(ring_identity_generate(&id, "n1.example_-x", RING_DEFAULT_TOKENS, &r, NULL), 0);
    buf_t b;
    buf_init(&b, 1 << 20);
    CHECK_EQ_INT(ring_identity_format(&id, &b), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_identity_parse(&back, b.data, b.len, &em), 0);
    CHECK_EQ_STR(back.node_id, id.node_id);
    CHECK_EQ_INT(back.ntokens, id.ntokens);
    CHECK(memcmp(back.tokens, id.tokens, id.ntokens * sizeof *id.tokens) == 0);
    ring_identity_free(&back);

    /* every truncation and every single-byte change is refused */
    int refused = 0, tried = 0;
    for (size_t n = 0; n < b.len; n++, tried++)
        refused += ring_identity_parse(&back, b.data, n, NULL) == ERR_CORRUPT;
    CHECK_EQ_INT(refused, tried);
    refused = tried = 0;
    for (size_t i = 0; i < b.len; i += 7, tried++) {
        uint8_t save = b.data[i];
        b.data[i] = save == '0' ? '1' : '0';
        int rc = ring_identity_parse(&back, b.data, b.len, NULL);
        refused += rc == ERR_CORRUPT;
        if (rc == 0) ring_identity_free(&back);
        b.data[i] = save;
    }
    CHECK_EQ_INT(refused, tried);
    /* trailing bytes */
    buf_append_str(&b, "x");
    CHECK_EQ_INT(ring_identity_parse(&back, b.data, b.len, NULL), ERR_CORRUPT);
    buf_free(&b);
    ring_identity_free(&id);

    CHECK_EQ_INT(ring_identity_generate(&id, "bad id", 4, &r, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_identity_generate(&id, "", 4, &r, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_identity_generate(&id, "ok", 0, &r, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_identity_generate(&id, "ok", RING_MAX_TOKENS + 1, &r, NULL),
                 ERR_INVALID_ARGUMENT);
    char longid[RING_NODE_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    CHECK_EQ_INT(ring_node_id_check(longid, NULL), ERR_INVALID_ARGUMENT);
    longid[RING_NODE_ID_MAX] = 0;
    CHECK_EQ_INT(ring_node_id_check(longid, NULL), 0);
}

/* Three nodes with 8 tokens each from seed 2024; replicas of placement
 * tokens at RF 2. */
static void test_replicas_golden(void)
{
    ring_rng_t r;
    ring_rng_seed(&r, 2024);
    ring_identity_t *ids = make_identities(3, 8, &r);
    ring_t *ring = ring_of(ids, 3, NULL);
    CHECK(ring_fingerprint(ring) == GOLD_FINGERPRINT);
    const char *want[4][2] = GOLD_REPLICAS;
    for (uint32_t shard = 0; shard < 4; shard++) {
        uint32_t out[RING_MAX_RF];
        uint64_t t = ring_placement_token("anonymous", "api", shard);
        CHECK_EQ_INT(ring_replicas(ring, t, 2, out), 2);
        CHECK_EQ_STR(ring_node_name(ring, out[0]), want[shard][0]);
        CHECK_EQ_STR(ring_node_name(ring, out[1]), want[shard][1]);
    }
    ring_free(ring);
    free_identities(ids, 3);
}

/* Replicas are always min(rf, nodes) distinct nodes and match the oracle. */
static void test_replicas_property(uint64_t seed)
{
    ring_rng_t r;
    ring_rng_seed(&r, seed);
    for (int round = 0; round < 40; round++) {
        size_t n = 1 + ring_rng_next(&r) % 9;
        uint32_t ntok = 1 + (uint32_t)(ring_rng_next(&r) % 16);
        ring_identity_t *ids = make_identities(n, ntok, &r);
        if (round % 5 == 0 && n > 1) /* a token shared by two nodes */
            ids[1].tokens[0] = ids[0].tokens[0];
        ring_t *ring = ring_of(ids, n, NULL);
        for (int q = 0; q < 200; q++) {
            uint64_t t = q < 4 ? ids[0].tokens[0] + (uint64_t)q - 1 : ring_rng_next(&r);
            uint32_t rf = 1 + (uint32_t)(ring_rng_next(&r) % 5), out[RING_MAX_RF];
            uint32_t got = ring_replicas(ring, t, rf, out);
            const char *oracle[RING_MAX_RF];
            uint32_t want = oracle_replicas(ids, n, NULL, t, rf, oracle);
            CHECK_EQ_INT(got, rf < n ? rf : n);
            CHECK_EQ_INT(got, want);
            for (uint32_t i = 0; i < got && i < want; i++) {
                for (uint32_t j = 0; j < i; j++)
                    CHECK(out[i] != out[j]);
                if (strcmp(ring_node_name(ring, out[i]), oracle[i]) != 0) {
                    CHECK(!"replica differs from the oracle");
                    fprintf(stderr, "  round %d token %016" PRIx64 " rf %u i %u\n", round, t, rf,
                            i);
                }
            }
        }
        /* each elementary range: replicas of its end hold for tokens inside */
        for (uint32_t i = 0; i < ring_range_count(ring); i++) {
            ring_range_t rg = ring_range_at(ring, i);
            uint32_t a[RING_MAX_RF], b[RING_MAX_RF];
            uint32_t na = ring_replicas(ring, rg.end, 3, a);
            uint32_t nb = ring_replicas(ring, rg.start + 1, 3, b);
            CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
            CHECK(ring_range_contains(rg, rg.end) &&
                  (rg.start == rg.end || !ring_range_contains(rg, rg.start)));
        }
        ring_free(ring);
        free_identities(ids, n);
    }
}

static void test_ring_build_errors(void)
{
    uint64_t t[2] = {1, 2};
    ring_node_spec_t dup[2] = {{"a", t, 2}, {"a", t, 2}};
    ring_t *r = NULL;
    CHECK_EQ_INT(ring_build(dup, 2, &r, NULL), ERR_INVALID_ARGUMENT);
    CHECK(r == NULL);
    ring_node_spec_t none[1] = {{"a", t, 0}};
    CHECK_EQ_INT(ring_build(none, 1, &r, NULL), ERR_INVALID_ARGUMENT);
    ring_node_spec_t bad[1] = {{"a/b", t, 2}};
    CHECK_EQ_INT(ring_build(bad, 1, &r, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_build(NULL, 0, &r, NULL), 0);
    uint32_t out[3];
    CHECK_EQ_INT(ring_replicas(r, 5, 3, out), 0);
    CHECK_EQ_INT(ring_range_count(r), 0);
    ring_free(r);
    /* one node, one token: its range is the whole ring */
    ring_node_spec_t one[1] = {{"solo", t, 1}};
    CHECK_EQ_INT(ring_build(one, 1, &r, NULL), 0);
    ring_range_t whole = ring_range_at(r, 0);
    CHECK(whole.start == whole.end && ring_range_share(whole) == 1.0);
    CHECK_EQ_INT(ring_replicas(r, UINT64_MAX, 3, out), 1);
    CHECK_EQ_INT(ring_node_find(r, "solo"), 0);
    CHECK_EQ_INT(ring_node_find(r, "other"), ERR_NOT_FOUND);
    ring_free(r);
}

static void test_range_helpers(void)
{
    uint64_t lo[2], hi[2];
    ring_range_t a = {10, 20};
    CHECK(!ring_range_contains(a, 10) && ring_range_contains(a, 11) && ring_range_contains(a, 20));
    CHECK_EQ_INT(ring_range_intervals(a, lo, hi), 1);
    CHECK(lo[0] == 11 && hi[0] == 20);
    ring_range_t w = {UINT64_MAX - 5, 3};
    CHECK(ring_range_contains(w, UINT64_MAX) && ring_range_contains(w, 0) &&
          ring_range_contains(w, 3) && !ring_range_contains(w, 4));
    CHECK_EQ_INT(ring_range_intervals(w, lo, hi), 2);
    CHECK(lo[0] == UINT64_MAX - 4 && hi[0] == UINT64_MAX && lo[1] == 0 && hi[1] == 3);
    ring_range_t edge = {UINT64_MAX, 3};
    CHECK_EQ_INT(ring_range_intervals(edge, lo, hi), 1);
    CHECK(lo[0] == 0 && hi[0] == 3);
    ring_range_t all = {7, 7};
    CHECK_EQ_INT(ring_range_intervals(all, lo, hi), 1);
    CHECK(lo[0] == 0 && hi[0] == UINT64_MAX);
    ring_ranges_t l = {0};
    ring_ranges_add(&l, (ring_range_t){1, 5});
    ring_ranges_add(&l, (ring_range_t){5, 9});
    ring_ranges_add(&l, (ring_range_t){10, 12});
    CHECK_EQ_INT(l.n, 2);
    CHECK(l.v[0].start == 1 && l.v[0].end == 9);
    ring_ranges_free(&l);
}

int main(void)
{
    uint64_t seed = test_seed(20240601);
    CHECK_EQ_INT(RING_REPLICA_VERSION, 1);
    test_rng_golden();
    test_identity_golden();
    test_identity_file();
    test_replicas_golden();
    test_replicas_property(seed);
    test_ring_build_errors();
    test_range_helpers();
    return check_exit();
}
