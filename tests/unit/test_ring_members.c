/* The membership table (ring.h): merge rules, refutation, failure detection
 * with a fake clock, state transitions, versions, and the rings it implies. */
#include "test_ring_util.h"

static fake_clock_t clk;

static ring_members_t *make_table(const ring_identity_t *self, ring_state_t initial,
                                  uint64_t incarnation)
{
    ring_members_options_t o;
    ring_members_options_default(&o);
    o.down_after_ms = 5000;
    o.forget_left_after_ms = 60000;
    o.max_members = 8;
    ring_members_t *m = NULL;
    errmsg_t em = {{0}};
    int rc = ring_members_create(&o, self, "127.0.0.1:4040", "tcp://127.0.0.1:7946", initial,
                                 incarnation, fake_source(&clk), &m, &em);
    CHECK_EQ_INT(rc, 0);
    return m;
}

static ring_member_t entry(const ring_identity_t *id, ring_state_t state, ring_state_t life,
                           uint64_t inc, uint64_t hb)
{
    return (ring_member_t){id->node_id, "h:1", "tcp://c:1", id->tokens, id->ntokens,
                           state,       life,  inc,         hb,         0};
}

static ring_state_t state_of(ring_members_t *m, const char *id)
{
    ring_member_t x;
    if (ring_members_find(m, id, &x) < 0) return 0;
    return x.state;
}

static void test_merge_rules(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 100);
    CHECK_EQ_INT(ring_members_count(m), 1);
    CHECK_EQ_STR(ring_members_self(m), "n00");
    uint64_t rv = ring_members_ring_version(m), v = ring_members_version(m);

    ring_member_t e = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 5, 10);
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    CHECK(ring_members_ring_version(m) != rv && ring_members_version(m) != v);
    CHECK_EQ_INT(ring_members_merge(m, &e), 0); /* idempotent */

    /* same incarnation: heartbeats only go up, and move last_seen */
    clk.now = 1000;
    rv = ring_members_ring_version(m);
    v = ring_members_version(m);
    e.heartbeat = 11;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_member_t x;
    ring_members_find(m, "n01", &x);
    CHECK(x.heartbeat == 11 && x.last_seen_ms == 1000);
    CHECK(ring_members_version(m) == v && ring_members_ring_version(m) == rv);
    e.heartbeat = 3;
    CHECK_EQ_INT(ring_members_merge(m, &e), 0);

    /* same incarnation: DOWN at the newest heartbeat beats ACTIVE (test_stale_down_claims
     * has the older claims and the heartbeats after one) */
    ring_member_t d = entry(&ids[1], RING_DOWN, RING_ACTIVE, 5, 11);
    CHECK_EQ_INT(ring_members_merge(m, &d), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_DOWN);
    CHECK(ring_members_ring_version(m) == rv); /* a down node keeps its ranges */
    /* LEFT beats DOWN */
    ring_member_t l = entry(&ids[1], RING_LEFT, RING_LEFT, 5, 1);
    CHECK_EQ_INT(ring_members_merge(m, &l), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_LEFT);
    CHECK(ring_members_ring_version(m) != rv);
    /* a higher incarnation replaces everything, addresses included */
    ring_member_t back = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 6, 0);
    back.http_addr = "h:2";
    CHECK_EQ_INT(ring_members_merge(m, &back), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.state == RING_ACTIVE && x.incarnation == 6);
    CHECK_EQ_STR(x.http_addr, "h:2");
    /* a lower one is ignored */
    ring_member_t old = entry(&ids[1], RING_DOWN, RING_ACTIVE, 4, 99);
    CHECK_EQ_INT(ring_members_merge(m, &old), 0);
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);

    /* invalid entries are refused and counted */
    ring_member_t bad = entry(&ids[2], RING_ACTIVE, RING_ACTIVE, 1, 1);
    bad.node_id = "no spaces";
    CHECK_EQ_INT(ring_members_merge(m, &bad), ERR_INVALID_ARGUMENT);
    bad = entry(&ids[2], 0, 0, 1, 1);
    CHECK_EQ_INT(ring_members_merge(m, &bad), ERR_INVALID_ARGUMENT);
    bad = entry(&ids[2], RING_ACTIVE, RING_ACTIVE, 1, 1);
    bad.ntokens = 0;
    CHECK_EQ_INT(ring_members_merge(m, &bad), ERR_INVALID_ARGUMENT);
    uint64_t unsorted[2] = {5, 3};
    bad.tokens = unsorted;
    bad.ntokens = 2;
    CHECK_EQ_INT(ring_members_merge(m, &bad), ERR_INVALID_ARGUMENT);
    ring_members_stats_t st;
    ring_members_stats(m, &st);
    CHECK_EQ_INT(st.refused_members, 4);

    /* the table is bounded */
    for (int i = 2; i < 10; i++) {
        ring_member_t k = entry(&ids[i], RING_ACTIVE, RING_ACTIVE, 1, 1);
        int rc = ring_members_merge(m, &k);
        CHECK_EQ_INT(rc, i < 8 ? 1 : ERR_LIMIT);
    }
    CHECK_EQ_INT(ring_members_count(m), 8);
    ring_members_free(m);
}

static void test_refutation(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 100);
    ring_members_tick(m);
    ring_member_t self;
    ring_members_find(m, "n00", &self);
    /* an exact echo of our own entry is no rumour */
    ring_member_t echo = entry(&ids[0], RING_ACTIVE, RING_ACTIVE, 100, self.heartbeat);
    CHECK_EQ_INT(ring_members_merge(m, &echo), 0);
    /* "n00 is down" at our incarnation: refuted by a higher incarnation */
    ring_member_t rumour = entry(&ids[0], RING_DOWN, RING_ACTIVE, 100, 0);
    CHECK_EQ_INT(ring_members_merge(m, &rumour), 1);
    ring_members_find(m, "n00", &self);
    CHECK(self.state == RING_ACTIVE && self.incarnation == 101);
    /* an entry from a previous life with a higher incarnation */
    ring_member_t ghost = entry(&ids[0], RING_ACTIVE, RING_ACTIVE, 500, 7);
    CHECK_EQ_INT(ring_members_merge(m, &ghost), 1);
    ring_members_find(m, "n00", &self);
    CHECK(self.incarnation == 501 && self.state == RING_ACTIVE);
    /* a forged rumour at incarnation UINT64_MAX (or far ahead of the clock)
     * is refused: refuting it would wrap this node to 0, and an entry there
     * could never be replaced again */
    ring_member_t forged = entry(&ids[0], RING_DOWN, RING_ACTIVE, UINT64_MAX, 0);
    CHECK_EQ_INT(ring_members_merge(m, &forged), ERR_INVALID_ARGUMENT);
    forged.incarnation = (uint64_t)(clk.now / 1000) + RING_INCARNATION_AHEAD_MAX_S + 1;
    CHECK_EQ_INT(ring_members_merge(m, &forged), ERR_INVALID_ARGUMENT);
    ring_members_find(m, "n00", &self);
    CHECK(self.incarnation == 501 && self.state == RING_ACTIVE);
    ring_member_t stranger = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, UINT64_MAX, 1);
    CHECK_EQ_INT(ring_members_merge(m, &stranger), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_members_find(m, "n01", &self), ERR_NOT_FOUND);
    ring_members_stats_t st;
    ring_members_stats(m, &st);
    CHECK_EQ_INT(st.refutations, 2);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_members_remove(m, "n00", &em), ERR_INVALID_ARGUMENT);
    ring_members_free(m);
}

static void test_failure_detection(ring_identity_t *ids)
{
    clk.now = 10000;
    ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 1);
    ring_member_t e = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 3, 1);
    ring_members_merge(m, &e);
    uint64_t rv = ring_members_ring_version(m);
    /* heartbeats keep it up */
    for (int i = 0; i < 10; i++) {
        clk.now += 1000;
        e.heartbeat++;
        ring_members_merge(m, &e);
        CHECK_EQ_INT(ring_members_tick(m), 0);
    }
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);
    /* silence: down exactly after down_after_ms */
    uint64_t last = clk.now;
    clk.now = last + 5000;
    CHECK_EQ_INT(ring_members_tick(m), 0);
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);
    clk.now = last + 5001;
    CHECK_EQ_INT(ring_members_tick(m), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_DOWN);
    CHECK(ring_members_ring_version(m) == rv);
    ring_t *cur = NULL, *pend = NULL;
    CHECK_EQ_INT(ring_members_build_rings(m, &cur, &pend, NULL), 0);
    CHECK(cur != NULL && pend == NULL && ring_node_count(cur) == 2);
    uint8_t live[2];
    ring_members_live(m, cur, live);
    CHECK(live[0] == 1 && live[1] == 0);
    ring_free(cur);
    /* our own heartbeat moves on every tick; we never mark ourselves down */
    ring_member_t self;
    ring_members_find(m, "n00", &self);
    CHECK(self.state == RING_ACTIVE && self.heartbeat == 12);
    /* the node refutes (higher incarnation): up again */
    e.incarnation = 4;
    e.heartbeat = 0;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);
    ring_members_stats_t st;
    ring_members_stats(m, &st);
    CHECK_EQ_INT(st.marked_down, 1);
    ring_members_free(m);
}

static void test_lifecycle_and_rings(ring_identity_t *ids)
{
    clk.now = 0;
    ring_members_t *m = make_table(&ids[0], RING_JOINING, 1);
    errmsg_t em = {{0}};
    ring_t *cur = NULL, *pend = NULL;
    CHECK_EQ_INT(ring_members_build_rings(m, &cur, &pend, NULL), 0);
    CHECK(cur == NULL && pend != NULL); /* only a joiner: nothing owned yet */
    ring_free(pend);
    ring_member_t a = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 1, 1);
    ring_member_t b = entry(&ids[2], RING_LEAVING, RING_LEAVING, 1, 1);
    ring_member_t c = entry(&ids[3], RING_DOWN, RING_JOINING, 1, 1);
    ring_members_merge(m, &a);
    ring_members_merge(m, &b);
    ring_members_merge(m, &c);
    CHECK_EQ_INT(ring_members_build_rings(m, &cur, &pend, NULL), 0);
    /* current: active + leaving; pending: active + joining (n00, and n03 down while joining) */
    CHECK(ring_node_count(cur) == 2 && ring_node_find(cur, "n01") >= 0 &&
          ring_node_find(cur, "n02") >= 0);
    CHECK(ring_node_count(pend) == 3 && ring_node_find(pend, "n00") >= 0 &&
          ring_node_find(pend, "n03") >= 0 && ring_node_find(pend, "n02") < 0);
    uint8_t live[2];
    ring_members_live(m, cur, live);
    CHECK(live[0] && live[1]); /* leaving still serves */
    ring_free(cur);
    ring_free(pend);

    uint64_t rv = ring_members_ring_version(m);
    CHECK_EQ_INT(ring_members_set_state(m, RING_DOWN, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_members_set_state(m, RING_JOINING, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_members_set_state(m, RING_ACTIVE, &em), 0);
    CHECK(ring_members_ring_version(m) != rv);
    CHECK_EQ_INT(ring_members_set_state(m, RING_LEFT, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ring_members_set_state(m, RING_LEAVING, &em), 0);
    CHECK_EQ_INT(ring_members_set_state(m, RING_ACTIVE, &em), ERR_INVALID_ARGUMENT);

    /* operator removal: LEFT, out of both rings, forgotten later */
    rv = ring_members_ring_version(m);
    CHECK_EQ_INT(ring_members_remove(m, "n01", &em), 0);
    CHECK_EQ_INT(state_of(m, "n01"), RING_LEFT);
    CHECK(ring_members_ring_version(m) != rv);
    CHECK_EQ_INT(ring_members_remove(m, "n09", &em), ERR_NOT_FOUND);
    clk.now = 60000;
    ring_members_tick(m);
    CHECK_EQ_INT(state_of(m, "n01"), RING_LEFT);
    clk.now = 60001;
    ring_members_tick(m);
    CHECK_EQ_INT(state_of(m, "n01"), 0);
    ring_members_free(m);
}

/* A claim that a member is down is only as good as the heartbeat it was
 * made at: one older than a heartbeat this table has seen is stale (a node
 * back from a partition gossips its old claims about the others, and they
 * must not take a live member down), a current one takes it down, and a
 * newer heartbeat brings it back. */
static void test_stale_down_claims(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 100);
    ring_member_t e = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 5, 10);
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_member_t stale = entry(&ids[1], RING_DOWN, RING_ACTIVE, 5, 7);
    CHECK_EQ_INT(ring_members_merge(m, &stale), 0);
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);
    ring_member_t current = entry(&ids[1], RING_DOWN, RING_ACTIVE, 5, 10);
    CHECK_EQ_INT(ring_members_merge(m, &current), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_DOWN);
    e.heartbeat = 11; /* heard alive after the claim */
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    CHECK_EQ_INT(state_of(m, "n01"), RING_ACTIVE);
    /* a member removed while down stays down here when its LEFT tombstone
     * arrives (without the flag) with a newer heartbeat: removed, not
     * decommissioned, is what makes the takers stream its ranges */
    ring_member_t d = entry(&ids[1], RING_DOWN, RING_ACTIVE, 5, 11);
    CHECK_EQ_INT(ring_members_merge(m, &d), 1);
    ring_member_t gone = entry(&ids[1], RING_LEFT, RING_LEFT, 5, 20);
    CHECK_EQ_INT(ring_members_merge(m, &gone), 1);
    ring_member_t x;
    CHECK_EQ_INT(ring_members_find(m, "n01", &x), 0);
    CHECK(x.state == RING_LEFT && x.down);
    ring_members_free(m);
}

/* A forgotten tombstone stays forgotten: two nodes that learnt a removal a
 * moment apart forget it a moment apart, and the one that forgot first
 * must not take it back from the other (which then takes it back from the
 * first, and so on for ever). A member back at a higher incarnation is news,
 * and so, after another keep time, is the tombstone. */
static void test_forgotten_tombstones(ring_identity_t *ids)
{
    clk.now = 100000;
    ring_members_t *a = make_table(&ids[0], RING_ACTIVE, 100);
    ring_members_t *b = make_table(&ids[2], RING_ACTIVE, 100);
    ring_member_t gone = entry(&ids[1], RING_LEFT, RING_LEFT, 5, 20);
    CHECK_EQ_INT(ring_members_merge(a, &gone), 1);
    clk.now += 500; /* b learns it half a second later */
    CHECK_EQ_INT(ring_members_merge(b, &gone), 1);
    clk.now = 100000 + 60001;
    ring_members_tick(a);
    ring_members_tick(b);
    CHECK_EQ_INT(state_of(a, "n01"), 0);
    CHECK_EQ_INT(state_of(b, "n01"), RING_LEFT);
    ring_member_t from_b;
    CHECK_EQ_INT(ring_members_find(b, "n01", &from_b), 0);
    CHECK_EQ_INT(ring_members_merge(a, &from_b), 0); /* b gossips it: not taken back */
    CHECK_EQ_INT(state_of(a, "n01"), 0);
    clk.now += 500;
    ring_members_tick(b);
    CHECK_EQ_INT(state_of(b, "n01"), 0); /* both forgot it: it is gone */
    ring_member_t back = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 6, 1);
    CHECK_EQ_INT(ring_members_merge(a, &back), 1); /* restarted: a new incarnation */
    CHECK_EQ_INT(state_of(a, "n01"), RING_ACTIVE);
    clk.now += 61000; /* a keep time after forgetting it, b takes the old one again */
    ring_members_tick(b);
    CHECK_EQ_INT(ring_members_merge(b, &gone), 1);
    ring_members_free(a);
    ring_members_free(b);
}

/* Any order of merging the same entries gives the same table. */
static void test_merge_order(ring_identity_t *ids, uint64_t seed)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, seed);
    ring_member_t pool[24];
    for (int i = 0; i < 24; i++) {
        int who = 1 + (int)(ring_rng_next(&rng) % 4);
        ring_state_t life = (ring_state_t)(1 + ring_rng_next(&rng) % 3);
        int down = ring_rng_next(&rng) % 3 == 0;
        pool[i] = entry(&ids[who], down ? RING_DOWN : life, life, 1 + ring_rng_next(&rng) % 3,
                        ring_rng_next(&rng) % 5);
    }
    char first[4096] = "";
    for (int round = 0; round < 30; round++) {
        for (int i = 23; i > 0; i--) { /* shuffle */
            int j = (int)(ring_rng_next(&rng) % (uint64_t)(i + 1));
            ring_member_t t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
        }
        ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 1);
        for (int i = 0; i < 24; i++)
            ring_members_merge(m, &pool[i]);
        char dump[4096] = "";
        for (size_t i = 0; i < ring_members_count(m); i++) {
            ring_member_t x;
            ring_members_get(m, i, &x);
            size_t o = strlen(dump);
            snprintf(dump + o, sizeof dump - o, "%s:%d/%d:%" PRIu64 ":%" PRIu64 " ", x.node_id,
                     x.state, x.life, x.incarnation, x.heartbeat);
        }
        if (round == 0) memcpy(first, dump, sizeof first);
        CHECK_EQ_STR(dump, first);
        ring_members_free(m);
    }
}

/* The frame limit a member advertises is fixed for one incarnation: within
 * it the value only rises (an entry relayed by a node of a version without
 * the field, which drops it, does not take it back), a new incarnation
 * brings its own (a node started again with an older version: 0); this
 * node's own value travels in its gossip. */
static void test_frame_bytes(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0], RING_ACTIVE, 100);
    ring_member_t e = entry(&ids[1], RING_ACTIVE, RING_ACTIVE, 5, 10), x;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.max_frame_bytes == 0);
    uint64_t v = ring_members_version(m);
    e.max_frame_bytes = 1 << 20;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1); /* the same heartbeat: still news */
    ring_members_find(m, "n01", &x);
    CHECK(x.max_frame_bytes == 1 << 20 && ring_members_version(m) != v);
    e.max_frame_bytes = 0;
    e.heartbeat = 12;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.heartbeat == 12 && x.max_frame_bytes == 1 << 20);
    e.incarnation = 6;
    e.heartbeat = 0;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.incarnation == 6 && x.max_frame_bytes == 0);
    /* the member version merges the same way */
    e.member_version = 1;
    e.heartbeat = 1;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    e.member_version = 0; /* relayed by an older node: not taken back */
    e.heartbeat = 2;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.member_version == 1);
    e.incarnation = 7;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    ring_members_find(m, "n01", &x);
    CHECK(x.incarnation == 7 && x.member_version == 0);

    /* this node's own value, in its SYN: another table learns it */
    ring_members_set_frame_bytes(m, 64 << 10);
    ring_members_set_member_version(m, 1);
    ring_members_find(m, "n00", &x);
    CHECK(x.max_frame_bytes == 64 << 10);
    ring_members_t *other = make_table(&ids[2], RING_ACTIVE, 100);
    buf_t syn, reply;
    buf_init(&syn, 1 << 20);
    buf_init(&reply, 1 << 20);
    char to[RING_ADDR_MAX + 1];
    CHECK_EQ_INT(ring_gossip_syn(m, &syn), 0);
    CHECK_EQ_INT(ring_gossip_receive(other, "n00", syn.data, syn.len, &reply, to, NULL), 0);
    CHECK_EQ_INT(ring_members_find(other, "n00", &x), 0);
    CHECK(x.max_frame_bytes == 64 << 10 && x.member_version == 1);
    buf_free(&syn);
    buf_free(&reply);
    ring_members_free(other);
    ring_members_free(m);
}

int main(void)
{
    uint64_t seed = test_seed(4242);
    ring_rng_t rng;
    ring_rng_seed(&rng, 1);
    ring_identity_t *ids = make_identities(10, 16, &rng);
    test_merge_rules(ids);
    test_refutation(ids);
    test_failure_detection(ids);
    test_stale_down_claims(ids);
    test_lifecycle_and_rings(ids);
    test_merge_order(ids, seed);
    test_forgotten_tombstones(ids);
    test_frame_bytes(ids);
    free_identities(ids, 10);
    return check_exit();
}
