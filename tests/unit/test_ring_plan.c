/* Read and write planning (ring.h): every token answered by exactly one live
 * replica, or reported missing; local preference; determinism; balance;
 * service-restricted plans, on as few nodes as their replicas allow; write
 * replicas and quorum. */
#include "test_ring_util.h"

static int owner_of(const ring_read_plan_t *p, uint64_t t, int *missing)
{
    int owner = -1, hits = 0;
    for (uint32_t x = 0; x < p->nnodes; x++)
        for (size_t i = 0; i < p->assigned[x].n; i++)
            if (ring_range_contains(p->assigned[x].v[i], t)) {
                owner = (int)x;
                hits++;
            }
    *missing = 0;
    for (size_t i = 0; i < p->missing.n; i++)
        if (ring_range_contains(p->missing.v[i], t)) {
            *missing = 1;
            hits++;
        }
    CHECK(hits <= 1); /* never two answers for one token */
    return owner;
}

static void check_plan(const ring_t *r, uint32_t rf, int local, const uint8_t *live,
                       const ring_read_plan_t *p, ring_rng_t *rng)
{
    for (int k = 0; k < 600; k++) {
        uint64_t t;
        if (k < 2 * (int)ring_range_count(r) && k / 2 < (int)ring_range_count(r))
            t = ring_range_at(r, (uint32_t)k / 2).end + (uint64_t)(k % 2);
        else
            t = ring_rng_next(rng);
        uint32_t reps[RING_MAX_RF];
        uint32_t n = ring_replicas(r, t, rf, reps);
        int any_live = 0, local_live = 0;
        for (uint32_t i = 0; i < n; i++) {
            any_live |= live[reps[i]];
            local_live |= live[reps[i]] && (int)reps[i] == local;
        }
        int missing, owner = owner_of(p, t, &missing);
        CHECK_EQ_INT(missing, !any_live);
        CHECK_EQ_INT(owner >= 0, any_live); /* exactly one answer */
        if (owner >= 0) {
            int is_rep = 0;
            for (uint32_t i = 0; i < n; i++)
                is_rep |= (int)reps[i] == owner;
            CHECK(is_rep && live[owner]);
            if (local_live) CHECK_EQ_INT(owner, local);
        }
    }
}

static void test_read_plans(uint64_t seed)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, seed);
    for (int round = 0; round < 60; round++) {
        size_t n = 1 + ring_rng_next(&rng) % 8;
        uint32_t ntok = 1 + (uint32_t)(ring_rng_next(&rng) % 32);
        uint32_t rf = 1 + (uint32_t)(ring_rng_next(&rng) % 4);
        ring_identity_t *ids = make_identities(n, ntok, &rng);
        ring_t *r = ring_of(ids, n, NULL);
        uint8_t live[16];
        for (size_t i = 0; i < n; i++)
            live[i] = ring_rng_next(&rng) % 3 != 0;
        int local = ring_rng_next(&rng) % 2 ? (int)(ring_rng_next(&rng) % n) : -1;
        ring_read_plan_t p, p2;
        CHECK_EQ_INT(ring_plan_read(r, rf, local, live, NULL, 0, &p, NULL), 0);
        check_plan(r, rf, local, live, &p, &rng);
        /* deterministic */
        CHECK_EQ_INT(ring_plan_read(r, rf, local, live, NULL, 0, &p2, NULL), 0);
        for (uint32_t x = 0; x < p.nnodes; x++) {
            CHECK_EQ_INT(p.assigned[x].n, p2.assigned[x].n);
            if (p.assigned[x].n == p2.assigned[x].n && p.assigned[x].n > 0)
                CHECK(memcmp(p.assigned[x].v, p2.assigned[x].v,
                             p.assigned[x].n * sizeof *p.assigned[x].v) == 0);
        }
        ring_read_plan_free(&p);
        ring_read_plan_free(&p2);
        ring_free(r);
        free_identities(ids, n);
    }
}

static void test_all_down_and_balance(void)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, 31337);
    ring_identity_t *ids = make_identities(5, RING_DEFAULT_TOKENS, &rng);
    ring_t *r = ring_of(ids, 5, NULL);
    uint8_t live[5] = {1, 1, 1, 1, 1};
    ring_read_plan_t p;
    CHECK_EQ_INT(ring_plan_read(r, 3, -1, live, NULL, 0, &p, NULL), 0);
    CHECK_EQ_INT(p.missing.n, 0);
    double total = 0;
    for (uint32_t x = 0; x < 5; x++) {
        double s = 0;
        for (size_t i = 0; i < p.assigned[x].n; i++)
            s += ring_range_share(p.assigned[x].v[i]);
        fprintf(stderr, "node %u answers for %.3f of the ring in %zu ranges\n", x, s,
                p.assigned[x].n);
        CHECK(s > 0.2 * 0.8 && s < 0.2 * 1.2);
        total += s;
    }
    CHECK(total > 1 - 1e-9 && total < 1 + 1e-9);
    ring_read_plan_free(&p);
    /* two of five down at RF 3: everything still answered */
    live[1] = live[3] = 0;
    CHECK_EQ_INT(ring_plan_read(r, 3, 0, live, NULL, 0, &p, NULL), 0);
    CHECK_EQ_INT(p.missing.n, 0);
    CHECK_EQ_INT(p.assigned[1].n + p.assigned[3].n, 0);
    ring_read_plan_free(&p);
    /* all down: the whole ring is missing, as one range */
    memset(live, 0, sizeof live);
    CHECK_EQ_INT(ring_plan_read(r, 3, 0, live, NULL, 0, &p, NULL), 0);
    CHECK_EQ_INT(p.missing.n, 1);
    CHECK(p.missing.n == 1 && p.missing.v[0].start == p.missing.v[0].end);
    ring_read_plan_free(&p);
    CHECK_EQ_INT(ring_plan_read(NULL, 3, 0, live, NULL, 0, &p, NULL), ERR_UNAVAILABLE);
    CHECK_EQ_INT(ring_plan_read(r, 0, 0, live, NULL, 0, &p, NULL), ERR_INVALID_ARGUMENT);
    ring_free(r);
    free_identities(ids, 5);
}

/* Six nodes of the default token count, every one live for reads; the
 * caller frees the ring and *ids (6 identities). */
static const uint8_t LIVE6[6] = {1, 1, 1, 1, 1, 1};

static ring_t *six_nodes(uint64_t seed, ring_identity_t **ids)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, seed);
    *ids = make_identities(6, RING_DEFAULT_TOKENS, &rng);
    return ring_of(*ids, 6, NULL);
}

/* A query that names a service plans only the ranges of its shard tokens. */
static void test_service_plan(void)
{
    ring_identity_t *ids;
    ring_t *r = six_nodes(4, &ids);
    const uint8_t *live = LIVE6;
    uint64_t toks[5];
    for (uint32_t s = 0; s < 4; s++)
        toks[s] = ring_placement_token("acme", "checkout", s);
    toks[4] = toks[0]; /* duplicates are fine */
    ring_read_plan_t p;
    CHECK_EQ_INT(ring_plan_read(r, 3, -1, live, toks, 5, &p, NULL), 0);
    size_t ranges = 0, nodes = 0;
    for (uint32_t x = 0; x < p.nnodes; x++) {
        ranges += p.assigned[x].n;
        nodes += p.assigned[x].n > 0;
    }
    CHECK(ranges >= 1 && ranges <= 4 && nodes <= 4);
    for (int s = 0; s < 4; s++) {
        int missing;
        CHECK(owner_of(&p, toks[s], &missing) >= 0);
    }
    ring_read_plan_free(&p);
    ring_free(r);
    free_identities(ids, 6);
}

/* The index of the elementary range holding t. */
static uint32_t range_of(const ring_t *r, uint64_t t)
{
    for (uint32_t j = 0; j < ring_range_count(r); j++)
        if (ring_range_contains(ring_range_at(r, j), t)) return j;
    CHECK(0);
    return 0;
}

/* One service's plan over 6 nodes RF 3, node `local` planning: every range
 * goes to the replica holding the most of the service's ranges; when one
 * node holds them all it answers for all. Returns 1 when that node is not
 * the local one (the case local-first planning split). */
static int check_fewest_nodes(const ring_t *r, const uint8_t *live, const char *svc, int local)
{
    uint64_t toks[4];
    uint32_t rg[4], nr = 0, cover[6] = {0};
    for (uint32_t s = 0; s < 4; s++) {
        toks[s] = ring_placement_token("acme", svc, s);
        uint32_t j = range_of(r, toks[s]), k = 0;
        while (k < nr && rg[k] != j)
            k++;
        if (k < nr) continue;
        rg[nr++] = j;
        uint32_t reps[RING_MAX_RF], n = ring_replicas(r, toks[s], 3, reps);
        for (uint32_t x = 0; x < n; x++)
            cover[reps[x]]++;
    }
    ring_read_plan_t p;
    CHECK_EQ_INT(ring_plan_read(r, 3, local, live, toks, 4, &p, NULL), 0);
    uint32_t best = 0, nodes = 0;
    for (uint32_t x = 0; x < 6; x++) {
        best = cover[x] > best ? cover[x] : best;
        nodes += p.assigned[x].n > 0;
    }
    for (uint32_t s = 0; s < 4; s++) {
        int missing, owner = owner_of(&p, toks[s], &missing);
        uint32_t reps[RING_MAX_RF], n = ring_replicas(r, toks[s], 3, reps), most = 0;
        for (uint32_t x = 0; x < n; x++)
            most = cover[reps[x]] > most ? cover[reps[x]] : most;
        CHECK(owner >= 0 && !missing);
        CHECK_EQ_INT(cover[owner], most);
    }
    if (best == nr) CHECK_EQ_INT(nodes, 1);
    ring_read_plan_free(&p);
    return best == nr && local >= 0 && cover[local] < nr;
}

/* A service's shards go to as few nodes as their replicas allow, also
 * when the planning node holds only some of them. */
static void test_service_plan_fewest_nodes(void)
{
    ring_identity_t *ids;
    ring_t *r = six_nodes(11, &ids);
    int split_before = 0;
    for (int svc = 0; svc < 200; svc++) {
        char name[32];
        snprintf(name, sizeof name, "svc%d", svc);
        for (int local = -1; local < 6; local++)
            split_before += check_fewest_nodes(r, LIVE6, name, local);
    }
    CHECK(split_before > 0);
    ring_free(r);
    free_identities(ids, 6);
}

static int is_rep(const ring_t *r, uint64_t t, const char *id)
{
    uint32_t reps[RING_MAX_RF];
    uint32_t n = ring_replicas(r, t, 3, reps);
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(ring_node_name(r, reps[i]), id) == 0) return 1;
    return 0;
}

static void test_write_plan(void)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, 8);
    ring_identity_t *ids = make_identities(5, 16, &rng);
    uint8_t use[5] = {1, 1, 1, 1, 0};
    ring_t *cur = ring_of(ids, 5, use), *pend = ring_of(ids, 5, NULL);
    ring_write_plan_t w;
    CHECK_EQ_INT(ring_default_quorum(3), 2);
    CHECK_EQ_INT(ring_default_quorum(1), 1);
    CHECK_EQ_INT(ring_default_quorum(4), 3);
    int with_pending = 0;
    for (int k = 0; k < 500; k++) {
        uint64_t t = ring_rng_next(&rng);
        CHECK_EQ_INT(ring_plan_write(cur, pend, t, 3, 0, &w, NULL), 0);
        uint32_t reps[RING_MAX_RF];
        CHECK_EQ_INT(ring_replicas(cur, t, 3, reps), 3);
        CHECK_EQ_INT(w.nnatural, 3);
        CHECK_EQ_INT(w.quorum, 2);
        for (uint32_t i = 0; i < 3; i++)
            CHECK_EQ_STR(w.nodes[i], ring_node_name(cur, reps[i]));
        /* the joiner gets the write exactly when it will be a replica */
        int joiner_rep = is_rep(pend, t, "n04");
        CHECK_EQ_INT(w.n, 3 + joiner_rep);
        if (w.n == 4) CHECK_EQ_STR(w.nodes[3], "n04");
        with_pending += joiner_rep;
    }
    CHECK(with_pending > 0);
    /* quorum clamps to the replicas a small cluster has */
    uint8_t two[5] = {1, 1, 0, 0, 0};
    ring_t *small = ring_of(ids, 5, two);
    CHECK_EQ_INT(ring_plan_write(small, NULL, 1, 3, 3, &w, NULL), 0);
    CHECK(w.n == 2 && w.nnatural == 2 && w.quorum == 2);
    CHECK_EQ_INT(ring_plan_write(small, NULL, 1, 3, 1, &w, NULL), 0);
    CHECK_EQ_INT(w.quorum, 1);
    CHECK_EQ_INT(ring_plan_write(small, NULL, 1, 3, 4, &w, NULL), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_plan_write(NULL, NULL, 1, 3, 0, &w, NULL), ERR_UNAVAILABLE);
    CHECK_EQ_INT(ring_plan_write(small, NULL, 1, 0, 0, &w, NULL), ERR_INVALID_ARGUMENT);
    ring_free(small);
    ring_free(cur);
    ring_free(pend);
    free_identities(ids, 5);
}

int main(void)
{
    uint64_t seed = test_seed(99);
    test_read_plans(seed);
    test_all_down_and_balance();
    test_service_plan();
    test_service_plan_fewest_nodes();
    test_write_plan();
    return check_exit();
}
