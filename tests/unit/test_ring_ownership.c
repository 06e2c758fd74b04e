/* Ownership ranges and what changes when a node joins or leaves (ring.h).
 *
 * Theory for a ring with rf replicas: when Y joins, Y only gains, every other
 * node only loses; a token's replica set changes only if Y becomes one of its
 * replicas, and then Y enters and at most one node (the last) drops out.
 * Leaving is the mirror image. Checked on random rings at every ring token,
 * next to it, and at random tokens. */
#include "test_ring_util.h"

static int list_contains(const ring_ranges_t *l, uint64_t t)
{
    int hits = 0;
    for (size_t i = 0; i < l->n; i++)
        hits += ring_range_contains(l->v[i], t);
    CHECK(hits <= 1); /* ranges of one list never overlap */
    return hits;
}

/* Lists come coalesced: no two ranges touch (a touching pair would be one). */
static void check_coalesced(const ring_ranges_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        for (size_t j = 0; j < l->n; j++)
            if (i != j) CHECK(l->v[i].end != l->v[j].start);
}

static double list_share(const ring_ranges_t *l)
{
    double s = 0;
    for (size_t i = 0; i < l->n; i++)
        s += ring_range_share(l->v[i]);
    return s;
}

static int in_set(const ring_t *r, const uint32_t *v, uint32_t n, const char *id)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(ring_node_name(r, v[i]), id) == 0) return 1;
    return 0;
}

/* Sample tokens: every ring token, its neighbours, and random ones. */
static size_t sample_tokens(const ring_t *a, const ring_t *b, ring_rng_t *rng, uint64_t *out,
                            size_t cap)
{
    size_t n = 0;
    const ring_t *rs[2] = {a, b};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < ring_range_count(rs[k]) && n + 3 <= cap; i++) {
            ring_range_t rg = ring_range_at(rs[k], i);
            out[n++] = rg.end;
            out[n++] = rg.end + 1;
            out[n++] = rg.end - 1;
        }
    while (n < cap)
        out[n++] = ring_rng_next(rng);
    return n;
}

/* Checks one transition before -> after where `mover` joins (join=1) or
 * leaves (join=0). */
static void check_transition(const ring_t *before, const ring_t *after, const char *mover, int join,
                             uint32_t rf, ring_rng_t *rng)
{
    const ring_t *big = join ? after : before;
    uint32_t n = ring_node_count(big);
    ring_ranges_t *gained = calloc(n, sizeof *gained), *lost = calloc(n, sizeof *lost);
    for (uint32_t x = 0; x < n; x++)
        CHECK_EQ_INT(
            ring_node_changes(before, after, rf, ring_node_name(big, x), &gained[x], &lost[x]), 0);
    static uint64_t toks[4000];
    size_t nt = sample_tokens(before, after, rng, toks, 4000);
    for (size_t k = 0; k < nt; k++) {
        uint64_t t = toks[k];
        uint32_t b[RING_MAX_RF], a[RING_MAX_RF];
        uint32_t nb = ring_replicas(before, t, rf, b), na = ring_replicas(after, t, rf, a);
        int mover_in = join ? in_set(after, a, na, mover) : in_set(before, b, nb, mover);
        int dropped = 0, added = 0;
        for (uint32_t x = 0; x < n; x++) {
            const char *id = ring_node_name(big, x);
            int was = in_set(before, b, nb, id), is = in_set(after, a, na, id);
            CHECK_EQ_INT(list_contains(&gained[x], t), is && !was);
            CHECK_EQ_INT(list_contains(&lost[x], t), was && !is);
            dropped += was && !is;
            added += is && !was;
            if (strcmp(id, mover) != 0)
                CHECK(join ? !(is && !was) : !(was && !is)); /* others only lose / only gain */
        }
        CHECK(dropped <= 1 && added <= 1);
        if (!mover_in) { /* untouched: same replicas in the same order */
            CHECK_EQ_INT(na, nb);
            for (uint32_t i = 0; i < na && i < nb; i++)
                CHECK_EQ_STR(ring_node_name(after, a[i]), ring_node_name(before, b[i]));
        }
    }
    /* what the mover gains (loses) is exactly what it owns after (before) */
    int m = ring_node_find(big, mover);
    ring_ranges_t own = {0};
    ring_node_ranges(big, (uint32_t)m, rf, &own);
    check_coalesced(&own);
    for (uint32_t x = 0; x < n; x++) {
        check_coalesced(&gained[x]);
        check_coalesced(&lost[x]);
    }
    double moved = join ? list_share(&gained[m]) : list_share(&lost[m]);
    CHECK(moved > list_share(&own) - 1e-9 && moved < list_share(&own) + 1e-9);
    double others = 0;
    for (uint32_t x = 0; x < n; x++)
        if ((int)x != m) others += join ? list_share(&lost[x]) : list_share(&gained[x]);
    /* each range the mover takes displaces one node, unless the small ring
     * had fewer than rf nodes */
    if (ring_node_count(join ? before : after) >= rf)
        CHECK(others > moved - 1e-9 && others < moved + 1e-9);
    else
        CHECK(others < 1e-9);
    ring_ranges_free(&own);
    for (uint32_t x = 0; x < n; x++) {
        ring_ranges_free(&gained[x]);
        ring_ranges_free(&lost[x]);
    }
    free(gained);
    free(lost);
}

static void test_join_leave(uint64_t seed)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, seed);
    for (int round = 0; round < 24; round++) {
        size_t n = 2 + ring_rng_next(&rng) % 7;
        uint32_t ntok = (uint32_t[]){1, 4, 16, 64}[round % 4];
        uint32_t rf = 1 + (uint32_t)(ring_rng_next(&rng) % 4);
        ring_identity_t *ids = make_identities(n, ntok, &rng);
        uint8_t *use = calloc(n, 1);
        memset(use, 1, n);
        size_t y = ring_rng_next(&rng) % n;
        use[y] = 0;
        ring_t *without = ring_of(ids, n, use), *with = ring_of(ids, n, NULL);
        check_transition(without, with, ids[y].node_id, 1, rf, &rng);
        check_transition(with, without, ids[y].node_id, 0, rf, &rng);
        ring_free(without);
        ring_free(with);
        free(use);
        free_identities(ids, n);
    }
}

/* With 128 tokens a joiner takes close to its fair share rf/(n+1). */
static void test_balance(uint64_t seed)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, seed ^ 0x5a5a);
    size_t n = 6;
    uint32_t rf = 3;
    ring_identity_t *ids = make_identities(n, RING_DEFAULT_TOKENS, &rng);
    uint8_t use[6] = {1, 1, 1, 1, 1, 0};
    ring_t *without = ring_of(ids, n, use), *with = ring_of(ids, n, NULL);
    ring_ranges_t g = {0}, l = {0};
    ring_node_changes(without, with, rf, ids[5].node_id, &g, &l);
    double share = list_share(&g), fair = (double)rf / (double)n;
    fprintf(stderr, "joiner share %.4f, fair %.4f\n", share, fair);
    CHECK(share > fair * 0.8 && share < fair * 1.2);
    CHECK_EQ_INT(l.n, 0);
    /* every node owns about rf/n and the shares add up to rf */
    double total = 0;
    for (uint32_t x = 0; x < ring_node_count(with); x++) {
        ring_ranges_t own = {0};
        ring_node_ranges(with, x, rf, &own);
        double s = list_share(&own);
        CHECK(s > fair * 0.8 && s < fair * 1.2);
        total += s;
        ring_ranges_free(&own);
    }
    CHECK(total > rf - 1e-6 && total < rf + 1e-6);
    ring_ranges_free(&g);
    ring_ranges_free(&l);
    ring_free(without);
    ring_free(with);
    free_identities(ids, n);
}

/* Edge cases: from and to an empty ring, a single node owning everything. */
static void test_edges(void)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, 1);
    ring_identity_t *ids = make_identities(1, 8, &rng);
    ring_t *one = ring_of(ids, 1, NULL);
    ring_ranges_t g = {0}, l = {0};
    CHECK_EQ_INT(ring_node_changes(NULL, one, 3, "n00", &g, &l), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK(g.n == 1 && g.v[0].start == g.v[0].end); /* the whole ring */
    CHECK_EQ_INT(l.n, 0);
    ring_ranges_free(&g);
    CHECK_EQ_INT(ring_node_changes(one, NULL, 3, "n00", &g, &l), 0);
    CHECK(g.n == 0 && l.n == 1 && l.v[0].start == l.v[0].end);
    ring_ranges_free(&l);
    ring_ranges_t own = {0};
    CHECK_EQ_INT(ring_node_ranges(one, 0, 1, &own), 0);
    CHECK(own.n == 1 && ring_range_share(own.v[0]) == 1.0);
    CHECK_EQ_INT(ring_node_ranges(one, 5, 1, &own), ERR_INVALID_ARGUMENT);
    ring_ranges_free(&own);
    ring_free(one);
    free_identities(ids, 1);
}

int main(void)
{
    uint64_t seed = test_seed(777);
    test_join_leave(seed);
    test_balance(seed);
    test_edges();
    return check_exit();
}
