/* test_ring_hints.c — the hints_for list members advertise (ring.h,
 * docs/replication.md "Freshness"): the owner sets it and bumps
 * its heartbeat; merge takes the list from the entry with the higher
 * (incarnation, heartbeat); gossip carries it in digests and full entries;
 * ring_members_hinted marks the listed ring nodes; malformed lists are
 * refused on the wire. */
#include "test_ring_util.h"

static fake_clock_t clk;

static ring_members_t *make_table(const ring_identity_t *self)
{
    ring_members_options_t o;
    ring_members_options_default(&o);
    o.down_after_ms = 5000;
    ring_members_t *m = NULL;
    int rc = ring_members_create(&o, self, "127.0.0.1:4040", "tcp://127.0.0.1:7946", RING_ACTIVE,
                                 100, fake_source(&clk), &m, NULL);
    CHECK_EQ_INT(rc, 0);
    return m;
}

static uint32_t hints_of(ring_members_t *m, const char *id, const char **first)
{
    ring_member_t x;
    if (ring_members_find(m, id, &x) < 0) return UINT32_MAX;
    if (first) *first = x.nhints_for > 0 ? x.hints_for[0] : NULL;
    return x.nhints_for;
}

static void test_set(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0]);
    ring_member_t self;
    ring_members_find(m, "n00", &self);
    uint64_t hb = self.heartbeat, v = ring_members_version(m);
    CHECK_EQ_INT(self.nhints_for, 0);

    const char *two[] = {"n01", "n02"};
    CHECK_EQ_INT(ring_members_set_hints(m, two, 2), 0);
    ring_members_find(m, "n00", &self);
    CHECK_EQ_INT(self.nhints_for, 2);
    CHECK_EQ_STR(self.hints_for[1], "n02");
    CHECK(self.heartbeat == hb + 1);
    CHECK(ring_members_version(m) != v);

    /* the same list again: heartbeat moves, version does not */
    v = ring_members_version(m);
    CHECK_EQ_INT(ring_members_set_hints(m, two, 2), 0);
    CHECK(ring_members_version(m) == v);

    const char *bad[] = {"n01", "no spaces"};
    CHECK_EQ_INT(ring_members_set_hints(m, bad, 2), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(hints_of(m, "n00", NULL), 2); /* unchanged */
    CHECK_EQ_INT(ring_members_set_hints(m, two, RING_MAX_NODES + 1), ERR_LIMIT);
    CHECK_EQ_INT(ring_members_set_hints(m, NULL, 0), 0);
    CHECK_EQ_INT(hints_of(m, "n00", NULL), 0);
    ring_members_free(m);
}

static void test_merge(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0]);
    const char *l1[] = {"n02"}, *l2[] = {"n03", "n02"};
    ring_member_t e = {ids[1].node_id,
                       "h:1",
                       "tcp://c:1",
                       ids[1].tokens,
                       ids[1].ntokens,
                       RING_ACTIVE,
                       RING_ACTIVE,
                       5,
                       10,
                       0,
                       l1,
                       1};
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    const char *first = NULL;
    CHECK_EQ_INT(hints_of(m, "n01", &first), 1);
    CHECK_EQ_STR(first, "n02");

    /* an older heartbeat does not replace the list */
    e.heartbeat = 9;
    e.hints_for = NULL;
    e.nhints_for = 0;
    CHECK_EQ_INT(ring_members_merge(m, &e), 0);
    CHECK_EQ_INT(hints_of(m, "n01", NULL), 1);

    /* a newer heartbeat does, and the version moves so views are rebuilt */
    uint64_t v = ring_members_version(m);
    e.heartbeat = 11;
    e.hints_for = l2;
    e.nhints_for = 2;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    CHECK_EQ_INT(hints_of(m, "n01", &first), 2);
    CHECK_EQ_STR(first, "n03");
    CHECK(ring_members_version(m) != v);

    /* a higher incarnation replaces it, even with a lower heartbeat */
    e.incarnation = 6;
    e.heartbeat = 1;
    e.hints_for = NULL;
    e.nhints_for = 0;
    CHECK_EQ_INT(ring_members_merge(m, &e), 1);
    CHECK_EQ_INT(hints_of(m, "n01", NULL), 0);

    /* an invalid list is refused whole */
    const char *bad[] = {""};
    e.heartbeat = 50;
    e.hints_for = bad;
    e.nhints_for = 1;
    CHECK_EQ_INT(ring_members_merge(m, &e), ERR_INVALID_ARGUMENT);
    ring_member_t x;
    ring_members_find(m, "n01", &x);
    CHECK_EQ_INT(x.heartbeat, 1);
    ring_members_free(m);
}

/* SYN -> ACK -> ACK2 from a to b. */
static void exchange(ring_members_t *a, ring_members_t *b)
{
    buf_t m1, m2, m3;
    buf_init(&m1, BUF_UNLIMITED);
    buf_init(&m2, BUF_UNLIMITED);
    buf_init(&m3, BUF_UNLIMITED);
    CHECK_EQ_INT(ring_gossip_syn(a, &m1), 0);
    CHECK_EQ_INT(ring_gossip_receive(b, "n01", m1.data, m1.len, &m2, test_reply_to, NULL), 0);
    if (m2.len > 0)
        CHECK_EQ_INT(ring_gossip_receive(a, "n01", m2.data, m2.len, &m3, test_reply_to, NULL), 0);
    if (m3.len > 0)
        CHECK_EQ_INT(ring_gossip_receive(b, "n01", m3.data, m3.len, &m1, test_reply_to, NULL), 0);
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&m3);
}

static void test_gossip(ring_identity_t *ids)
{
    ring_members_t *m[3];
    for (int i = 0; i < 3; i++)
        m[i] = make_table(&ids[i]);
    for (int r = 0; r < 3; r++) { /* everyone knows everyone */
        exchange(m[1], m[0]);
        exchange(m[2], m[0]);
        exchange(m[0], m[1]);
        exchange(m[0], m[2]);
    }
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(ring_members_count(m[i]), 3);

    /* n00 holds hints for n02: n01 learns it through a digest */
    const char *h[] = {"n02"};
    CHECK_EQ_INT(ring_members_set_hints(m[0], h, 1), 0);
    exchange(m[0], m[1]);
    const char *first = NULL;
    CHECK_EQ_INT(hints_of(m[1], "n00", &first), 1);
    CHECK_EQ_STR(first, "n02");

    ring_t *cur = NULL;
    CHECK_EQ_INT(ring_members_build_rings(m[1], &cur, NULL, NULL), 0);
    uint8_t hinted[3], live[3];
    ring_members_hinted(m[1], cur, hinted);
    ring_members_live(m[1], cur, live);
    CHECK(hinted[0] == 0 && hinted[1] == 0 && hinted[2] == 1);
    CHECK(live[2] == 1); /* live says up; the caller folds hinted in */

    /* relayed: n02 hears it from n01 (second hand) */
    exchange(m[1], m[2]);
    CHECK_EQ_INT(hints_of(m[2], "n00", NULL), 1);

    /* delivered: the cleared list spreads the same way */
    CHECK_EQ_INT(ring_members_set_hints(m[0], NULL, 0), 0);
    exchange(m[0], m[1]);
    exchange(m[1], m[2]);
    CHECK_EQ_INT(hints_of(m[1], "n00", NULL), 0);
    CHECK_EQ_INT(hints_of(m[2], "n00", NULL), 0);
    ring_members_hinted(m[2], cur, hinted);
    CHECK(hinted[0] == 0 && hinted[1] == 0 && hinted[2] == 0);

    /* a member that left no longer counts */
    CHECK_EQ_INT(ring_members_set_hints(m[0], h, 1), 0);
    exchange(m[0], m[1]);
    ring_members_hinted(m[1], cur, hinted);
    CHECK_EQ_INT(hinted[2], 1);
    CHECK_EQ_INT(ring_members_remove(m[1], "n00", NULL), 0);
    ring_members_hinted(m[1], cur, hinted);
    CHECK_EQ_INT(hinted[2], 0);
    ring_free(cur);
    for (int i = 0; i < 3; i++)
        ring_members_free(m[i]);
}

/* A digest whose hints_for holds an invalid id is refused with the rest of
 * the message, and the table is unchanged. */
static void test_wire(ring_identity_t *ids)
{
    ring_members_t *m = make_table(&ids[0]);
    Flamedb__Cluster__MemberDigest d = FLAMEDB__CLUSTER__MEMBER_DIGEST__INIT, *dp = &d;
    char *bad[] = {"n01", "bad id!"};
    d.node_id = "n05";
    d.incarnation = 1;
    d.heartbeat = 1;
    d.state = FLAMEDB__CLUSTER__NODE_STATE__NODE_STATE_ACTIVE;
    d.hints_for = bad;
    d.n_hints_for = 2;
    Flamedb__Cluster__Gossip g = FLAMEDB__CLUSTER__GOSSIP__INIT;
    g.phase = FLAMEDB__CLUSTER__GOSSIP_PHASE__GOSSIP_PHASE_SYN;
    g.digests = &dp;
    g.n_digests = 1;
    buf_t msg, reply;
    buf_init(&msg, BUF_UNLIMITED);
    buf_init(&reply, BUF_UNLIMITED);
    CHECK_EQ_INT(pack_gossip(&g, &msg), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_gossip_receive(m, "n01", msg.data, msg.len, &reply, test_reply_to, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "digest") != NULL);
    ring_members_stats_t st;
    ring_members_stats(m, &st);
    CHECK_EQ_INT(st.refused_messages, 1);

    /* the same with a valid list decodes */
    bad[1] = "n02";
    buf_reset(&msg);
    CHECK_EQ_INT(pack_gossip(&g, &msg), 0);
    buf_reset(&reply);
    CHECK_EQ_INT(ring_gossip_receive(m, "n01", msg.data, msg.len, &reply, test_reply_to, &em), 0);
    ring_members_stats(m, &st);
    CHECK_EQ_INT(st.refused_messages, 1);
    buf_free(&msg);
    buf_free(&reply);
    ring_members_free(m);
}

int main(void)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, test_seed(7));
    ring_identity_t *ids = make_identities(4, 16, &rng);
    test_set(ids);
    test_merge(ids);
    test_gossip(ids);
    test_wire(ids);
    free_identities(ids, 4);
    return check_exit();
}
