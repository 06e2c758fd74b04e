/* Gossip among N simulated members in one process with a fake clock
 * (ring.h): convergence from seeds, failure detection, refutation after a
 * partition heals, restart with a new incarnation, join and leave, message
 * sizes, and refusal of malformed gossip. */
#include "test_ring_util.h"

#define MAXN 16
#define DOWN_AFTER 5000
#define PERIOD 1000

struct sim {
    size_t n;
    ring_identity_t *ids;
    ring_members_t *m[MAXN];
    uint8_t up[MAXN]; /* 0: crashed or cut off; messages to and from it are lost */
    ring_rng_t rng;
    size_t max_msg, msgs;
};

static fake_clock_t clk;

static ring_members_t *start_node(struct sim *s, size_t i, ring_state_t initial, uint64_t inc)
{
    ring_members_options_t o;
    ring_members_options_default(&o);
    o.down_after_ms = DOWN_AFTER;
    char http[64], cl[64];
    snprintf(http, sizeof http, "127.0.0.1:%zu", 4040 + i);
    snprintf(cl, sizeof cl, "tcp://127.0.0.1:%zu", 7000 + i);
    ring_members_t *m = NULL;
    int rc =
        ring_members_create(&o, &s->ids[i], http, cl, initial, inc, fake_source(&clk), &m, NULL);
    CHECK_EQ_INT(rc, 0);
    return m;
}

/* n members started ACTIVE at incarnation 10, all up, none knowing another. */
static void sim_start(struct sim *s, size_t n, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    ring_rng_seed(&s->rng, seed);
    s->ids = make_identities(n, 8, &s->rng);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        s->m[i] = start_node(s, i, RING_ACTIVE, 10);
        s->up[i] = 1;
    }
}

static void sim_free(struct sim *s)
{
    for (size_t i = 0; i < s->n; i++)
        ring_members_free(s->m[i]);
    free_identities(s->ids, s->n);
}

static size_t index_of(struct sim *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i].node_id, id) == 0) return i;
    return SIZE_MAX;
}

/* One SYN -> ACK -> ACK2 exchange from a to b, if both are up. */
static void exchange(struct sim *s, size_t a, size_t b)
{
    if (!s->up[a] || !s->up[b] || a == b) return;
    buf_t m1, m2, m3;
    buf_init(&m1, BUF_UNLIMITED);
    buf_init(&m2, BUF_UNLIMITED);
    buf_init(&m3, BUF_UNLIMITED);
    ring_gossip_seen_t seen;
    CHECK_EQ_INT(ring_gossip_syn(s->m[a], &m1), 0);
    CHECK_EQ_INT(
        ring_gossip_receive_seen(s->m[b], "n01", m1.data, m1.len, &m2, test_reply_to, &seen, NULL),
        0);
    CHECK(!seen.ack);
    /* every SYN is answered, news or not: its ACK shows a's link to b works */
    CHECK(m2.len > 0);
    CHECK_EQ_INT(
        ring_gossip_receive_seen(s->m[a], "n01", m2.data, m2.len, &m3, test_reply_to, &seen, NULL),
        0);
    CHECK(seen.ack);
    if (m3.len > 0)
        CHECK_EQ_INT(ring_gossip_receive(s->m[b], "n01", m3.data, m3.len, &m1, test_reply_to, NULL),
                     0);
    size_t sizes[3] = {m1.len, m2.len, m3.len};
    for (int i = 0; i < 3; i++)
        if (sizes[i] > s->max_msg) s->max_msg = sizes[i];
    s->msgs += 1 + (m2.len > 0) + (m3.len > 0);
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&m3);
}

/* One gossip period: every live node ticks and gossips with one peer it
 * knows, or with the seed (node 0) when it knows none. */
static void round_once(struct sim *s)
{
    clk.now += PERIOD;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->up[i] || s->m[i] == NULL) continue;
        ring_members_tick(s->m[i]);
        int k = ring_gossip_pick(s->m[i], &s->rng);
        size_t peer = 0;
        if (k >= 0) {
            ring_member_t x;
            ring_members_get(s->m[i], (size_t)k, &x);
            peer = index_of(s, x.node_id);
        }
        if (peer < s->n && s->m[peer] != NULL) exchange(s, i, peer);
    }
}

/* Every live node sees the same members with the same state and
 * incarnation, and builds the same rings. */
static int converged(struct sim *s, char *why, size_t whylen)
{
    char ref[8192] = "", cur[8192];
    uint64_t fp_ref = 0;
    int first = 1;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->up[i] || s->m[i] == NULL) continue;
        cur[0] = 0;
        for (size_t k = 0; k < ring_members_count(s->m[i]); k++) {
            ring_member_t x;
            ring_members_get(s->m[i], k, &x);
            size_t o = strlen(cur);
            snprintf(cur + o, sizeof cur - o, "%s:%s:%" PRIu64 " ", x.node_id,
                     ring_state_name(x.state), x.incarnation);
        }
        ring_t *r = NULL, *p = NULL;
        ring_members_build_rings(s->m[i], &r, &p, NULL);
        uint64_t fp = r ? ring_fingerprint(r) : 0;
        ring_free(r);
        ring_free(p);
        if (first) {
            memcpy(ref, cur, sizeof ref);
            fp_ref = fp;
            first = 0;
        } else if (strcmp(ref, cur) != 0 || fp != fp_ref) {
            snprintf(why, whylen, "node %zu: [%s] vs [%s]", i, cur, ref);
            return 0;
        }
    }
    return 1;
}

/* Rounds until converged (at most max); -1 if never. */
static int run_until_converged(struct sim *s, int max)
{
    char why[17000];
    for (int r = 0; r < max; r++) {
        round_once(s);
        if (converged(s, why, sizeof why)) return r + 1;
    }
    fprintf(stderr, "not converged: %.400s\n", why);
    return -1;
}

static ring_state_t seen_as(struct sim *s, size_t observer, const char *id)
{
    ring_member_t x;
    if (ring_members_find(s->m[observer], id, &x) < 0) return 0;
    return x.state;
}

/* Rounds until every live node other than `who` sees `who` in state st. */
static int run_until_seen(struct sim *s, size_t who, ring_state_t st, int max)
{
    for (int r = 0; r < max; r++) {
        round_once(s);
        int all = 1;
        for (size_t i = 0; i < s->n; i++)
            if (i != who && s->up[i] && s->m[i] != NULL)
                all &= seen_as(s, i, s->ids[who].node_id) == st;
        if (all) return r + 1;
    }
    return -1;
}

static void test_cluster(uint64_t seed)
{
    struct sim s;
    memset(&s, 0, sizeof s);
    ring_rng_seed(&s.rng, seed);
    s.n = 12;
    s.ids = make_identities(s.n + 1, RING_DEFAULT_TOKENS, &s.rng);
    for (size_t i = 0; i < s.n; i++) {
        s.m[i] = start_node(&s, i, RING_ACTIVE, 1000 + i);
        s.up[i] = 1;
    }
    /* 1. from seeds to one view */
    int r = run_until_converged(&s, 60);
    fprintf(stderr, "12 nodes converged in %d rounds; largest message %zu bytes\n", r, s.max_msg);
    CHECK(r > 0 && r <= 30);
    /* steady state: heartbeats travel as digests, no token lists */
    s.max_msg = 0;
    round_once(&s);
    fprintf(stderr, "steady-state largest message %zu bytes\n", s.max_msg);
    CHECK(s.max_msg < 2048);

    /* 2. crash of n05: everyone sees it down; the ring keeps it */
    s.up[5] = 0;
    int rd = run_until_seen(&s, 5, RING_DOWN, 40);
    fprintf(stderr, "crash detected by all in %d rounds (down after %d ms)\n", rd, DOWN_AFTER);
    CHECK(rd >= DOWN_AFTER / PERIOD && rd <= DOWN_AFTER / PERIOD + 10);
    CHECK(run_until_converged(&s, 20) > 0);
    ring_t *cur = NULL, *pend = NULL;
    ring_members_build_rings(s.m[0], &cur, &pend, NULL);
    CHECK(ring_node_count(cur) == 12 && pend == NULL);
    uint8_t live[16];
    ring_members_live(s.m[0], cur, live);
    CHECK(live[ring_node_find(cur, "n05")] == 0 && live[ring_node_find(cur, "n04")] == 1);
    ring_free(cur);

    /* 3. the partition heals: n05 hears it is down and refutes */
    s.up[5] = 1;
    int ru = run_until_seen(&s, 5, RING_ACTIVE, 30);
    ring_member_t self;
    ring_members_find(s.m[5], "n05", &self);
    ring_members_stats_t st;
    ring_members_stats(s.m[5], &st);
    fprintf(stderr, "refuted in %d rounds (incarnation %" PRIu64 ")\n", ru, self.incarnation);
    CHECK(ru > 0 && st.refutations >= 1 && self.incarnation > 1005);
    CHECK(run_until_converged(&s, 20) > 0);

    /* 4. restart of n07 with a fresh table and a newer incarnation */
    ring_members_free(s.m[7]);
    s.m[7] = start_node(&s, 7, RING_ACTIVE, 5000);
    CHECK(run_until_converged(&s, 30) > 0);
    CHECK_EQ_INT(ring_members_count(s.m[7]), 12);

    /* 5. a joiner: pending ring first, then the ring */
    s.m[12] = start_node(&s, 12, RING_JOINING, 1);
    s.up[12] = 1;
    s.n = 13;
    CHECK(run_until_seen(&s, 12, RING_JOINING, 30) > 0);
    ring_members_build_rings(s.m[3], &cur, &pend, NULL);
    CHECK(ring_node_find(cur, "n12") < 0 && pend != NULL && ring_node_find(pend, "n12") >= 0);
    uint64_t fp_pending = pend ? ring_fingerprint(pend) : 0;
    ring_free(cur);
    ring_free(pend);
    ring_members_set_state(s.m[12], RING_ACTIVE, NULL);
    CHECK(run_until_converged(&s, 30) > 0);
    ring_members_build_rings(s.m[9], &cur, &pend, NULL);
    CHECK(ring_node_count(cur) == 13 && pend == NULL && ring_fingerprint(cur) == fp_pending);
    ring_free(cur);

    /* 6. n02 leaves: out of the ring everywhere */
    ring_members_set_state(s.m[2], RING_LEAVING, NULL);
    ring_members_set_state(s.m[2], RING_LEFT, NULL);
    CHECK(run_until_seen(&s, 2, RING_LEFT, 30) > 0);
    ring_members_build_rings(s.m[0], &cur, &pend, NULL);
    CHECK(ring_node_count(cur) == 12 && ring_node_find(cur, "n02") < 0);
    ring_free(cur);
    ring_free(pend);
    fprintf(stderr, "%zu gossip messages in all\n", s.msgs);

    for (size_t i = 0; i < s.n; i++)
        ring_members_free(s.m[i]);
    free_identities(s.ids, 13);
}

static void test_malformed(void)
{
    struct sim s;
    memset(&s, 0, sizeof s);
    ring_rng_seed(&s.rng, 3);
    s.n = 2;
    s.ids = make_identities(2, 16, &s.rng);
    s.m[0] = start_node(&s, 0, RING_ACTIVE, 1);
    s.m[1] = start_node(&s, 1, RING_ACTIVE, 1);
    buf_t syn, reply;
    buf_init(&syn, BUF_UNLIMITED);
    buf_init(&reply, BUF_UNLIMITED);
    ring_gossip_syn(s.m[0], &syn);
    uint64_t v = ring_members_version(s.m[1]);
    errmsg_t em = {{0}};
    /* every truncation is refused or harmless; none crashes */
    for (size_t n = 0; n < syn.len; n++) {
        buf_reset(&reply);
        int rc = ring_gossip_receive(s.m[1], "n01", syn.data, n, &reply, test_reply_to, &em);
        CHECK(rc < 0 || rc == 0);
    }
    CHECK(ring_members_version(s.m[1]) == v);
    /* random bytes */
    ring_rng_t rng;
    ring_rng_seed(&rng, 5);
    uint8_t junk[256];
    int refused = 0;
    for (int k = 0; k < 500; k++) {
        size_t n = 1 + ring_rng_next(&rng) % sizeof junk;
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)ring_rng_next(&rng);
        buf_reset(&reply);
        refused += ring_gossip_receive(s.m[1], "n01", junk, n, &reply, test_reply_to, NULL) < 0;
    }
    CHECK(refused > 450);
    CHECK(ring_members_version(s.m[1]) == v && ring_members_count(s.m[1]) == 1);
    /* oversized for the receiver's limit */
    ring_members_options_t o;
    ring_members_options_default(&o);
    o.max_message_bytes = 8;
    ring_members_t *tiny = NULL;
    ring_members_create(&o, &s.ids[1], "a", "b", RING_ACTIVE, 1, fake_source(&clk), &tiny, NULL);
    buf_reset(&syn);
    ring_gossip_syn(s.m[0], &syn);
    CHECK(syn.len > 8);
    CHECK_EQ_INT(ring_gossip_receive(tiny, "n01", syn.data, syn.len, &reply, test_reply_to, &em),
                 ERR_TOO_LARGE);
    ring_members_free(tiny);
    ring_members_stats_t st;
    ring_members_stats(s.m[1], &st);
    CHECK(st.refused_messages >= (uint64_t)refused);
    buf_free(&syn);
    buf_free(&reply);
    ring_members_free(s.m[0]);
    ring_members_free(s.m[1]);
    free_identities(s.ids, 2);
}

/* A SYN that also carries full entries (not what ring_gossip_syn sends, but
 * allowed) grows the table before the answer is built. */
static void test_syn_with_members(void)
{
    struct sim s;
    memset(&s, 0, sizeof s);
    ring_rng_seed(&s.rng, 9);
    s.ids = make_identities(10, 8, &s.rng);
    s.n = 1;
    s.m[0] = start_node(&s, 0, RING_ACTIVE, 1);
    Flamedb__Cluster__Member mv[9], *mp[9];
    for (int i = 0; i < 9; i++) {
        flamedb__cluster__member__init(&mv[i]);
        mv[i].node_id = s.ids[i + 1].node_id;
        mv[i].http_addr = "h";
        mv[i].cluster_addr = "c";
        mv[i].tokens = s.ids[i + 1].tokens;
        mv[i].n_tokens = s.ids[i + 1].ntokens;
        mv[i].state = FLAMEDB__CLUSTER__NODE_STATE__NODE_STATE_ACTIVE;
        mv[i].incarnation = 1;
        mp[i] = &mv[i];
    }
    Flamedb__Cluster__Gossip g = FLAMEDB__CLUSTER__GOSSIP__INIT;
    g.phase = FLAMEDB__CLUSTER__GOSSIP_PHASE__GOSSIP_PHASE_SYN;
    g.members = mp;
    g.n_members = 9;
    buf_t msg, reply;
    buf_init(&msg, BUF_UNLIMITED);
    buf_init(&reply, BUF_UNLIMITED);
    CHECK_EQ_INT(pack_gossip(&g, &msg), 0);
    CHECK_EQ_INT(ring_gossip_receive(s.m[0], "n01", msg.data, msg.len, &reply, test_reply_to, NULL),
                 0);
    CHECK_EQ_INT(ring_members_count(s.m[0]), 10);
    CHECK(reply.len > 0); /* the sender mentioned no digests: it gets all ten entries */
    CHECK_EQ_STR(test_reply_to, "c");
    /* the sender's entry at the same incarnation naming another address:
     * the answer still goes where the table says, never where a message
     * merely points */
    CHECK_EQ_STR(mv[0].node_id, "n01");
    mv[0].cluster_addr = "tcp://elsewhere:1";
    buf_reset(&msg);
    buf_reset(&reply);
    CHECK_EQ_INT(pack_gossip(&g, &msg), 0);
    CHECK_EQ_INT(ring_gossip_receive(s.m[0], "n01", msg.data, msg.len, &reply, test_reply_to, NULL),
                 0);
    CHECK(reply.len > 0);
    CHECK_EQ_STR(test_reply_to, "c");
    buf_free(&msg);
    buf_free(&reply);
    ring_members_free(s.m[0]);
    free_identities(s.ids, 10);
}

/* One message from `from` (a SYN, or the answer in reply) handled by `to`,
 * with what it told; the answer `to` built is left in *reply. */
static ring_gossip_seen_t deliver(ring_members_t *to, const buf_t *msg, buf_t *reply)
{
    ring_gossip_seen_t seen;
    memset(&seen, 0xff, sizeof seen);
    buf_reset(reply);
    CHECK_EQ_INT(
        ring_gossip_receive_seen(to, "n01", msg->data, msg->len, reply, test_reply_to, &seen, NULL),
        0);
    return seen;
}

/* Every SYN is answered with an ACK, also when the receiver has no other
 * news for its sender: the SYN carries its sender's own entry in full, not
 * as a digest, and the ACK echoes it back. The sender counts that ACK as
 * the answer that shows its link to the receiver works (an idle pair
 * exchanges nothing else), so it must always come. */
static void test_every_syn_answered(void)
{
    struct sim s;
    sim_start(&s, 2, 23);
    CHECK(run_until_converged(&s, 50) > 0);
    exchange(&s, 1, 0); /* node 0 knows node 1 as it is now, and node 1 knows node 0 */
    buf_t syn, ack, ack2;
    buf_init(&syn, BUF_UNLIMITED);
    buf_init(&ack, BUF_UNLIMITED);
    buf_init(&ack2, BUF_UNLIMITED);
    CHECK_EQ_INT(ring_gossip_syn(s.m[0], &syn), 0);
    ring_gossip_seen_t w = deliver(s.m[1], &syn, &ack);
    CHECK(!w.ack);
    CHECK(ack.len > 0); /* nothing else to tell: answered all the same */
    w = deliver(s.m[0], &ack, &ack2);
    CHECK(w.ack);
    CHECK_EQ_INT(ack2.len, 0); /* it asked for nothing */
    buf_free(&syn);
    buf_free(&ack);
    buf_free(&ack2);
    sim_free(&s);
}

/* ring_gossip_receive_seen: whether a message names this node's current
 * incarnation (built after its sender learnt of this start) and whether it
 * named members the table lacks. */
static void test_seen(void)
{
    struct sim s;
    sim_start(&s, 3, 21);
    CHECK(run_until_converged(&s, 50) > 0);
    buf_t syn, reply, ack2;
    buf_init(&syn, BUF_UNLIMITED);
    buf_init(&reply, BUF_UNLIMITED);
    buf_init(&ack2, BUF_UNLIMITED);
    /* a SYN node 0 built before node 2 restarts */
    CHECK_EQ_INT(ring_gossip_syn(s.m[0], &syn), 0);
    ring_members_free(s.m[2]);
    s.m[2] = start_node(&s, 2, RING_ACTIVE, 11); /* restarted: knows only itself */
    ring_gossip_seen_t w = deliver(s.m[2], &syn, &reply);
    CHECK_EQ_INT(w.self_incarnation, 10); /* its previous start: not news since */
    CHECK_EQ_INT(w.wanted, 1);            /* node 1, named by a digest only */
    CHECK_EQ_INT(ring_members_count(s.m[2]), 2);
    /* node 2's own SYN: node 0 answers with node 2's entry echoed, at 11 */
    buf_reset(&syn);
    CHECK_EQ_INT(ring_gossip_syn(s.m[2], &syn), 0);
    w = deliver(s.m[0], &syn, &reply);
    CHECK_EQ_INT(w.self_incarnation, 10); /* node 0's own entry, as node 2 last knew it */
    CHECK_EQ_INT(w.wanted, 0);
    w = deliver(s.m[2], &reply, &ack2);
    CHECK_EQ_INT(w.self_incarnation, 11);
    CHECK_EQ_INT(w.wanted, 0);
    CHECK_EQ_INT(ring_members_count(s.m[2]), 3);
    /* node 0's next SYN names node 2 at its new incarnation */
    buf_reset(&syn);
    CHECK_EQ_INT(ring_gossip_syn(s.m[0], &syn), 0);
    w = deliver(s.m[2], &syn, &reply);
    CHECK_EQ_INT(w.self_incarnation, 11);
    CHECK_EQ_INT(w.wanted, 0);
    /* a table that never heard of node 2 does not name it */
    ring_members_t *alone = start_node(&s, 1, RING_ACTIVE, 12);
    buf_reset(&syn);
    CHECK_EQ_INT(ring_gossip_syn(alone, &syn), 0);
    w = deliver(s.m[2], &syn, &reply);
    CHECK_EQ_INT(w.self_incarnation, 0);
    ring_members_free(alone);
    buf_free(&syn);
    buf_free(&reply);
    buf_free(&ack2);
    sim_free(&s);
}

/* ring_members_set_placement: gossip from a node placing series otherwise
 * is refused (ERR_CONFLICT, counted, the table unchanged), whichever side
 * starts; one without a placement (an older version) is taken. */
static void test_placement(void)
{
    struct sim s;
    sim_start(&s, 3, 31);
    static const char by1[] = "shards=4;by_profile=1;services=";
    CHECK_EQ_INT(ring_members_set_placement(s.m[0], by1), 0);
    CHECK_EQ_INT(ring_members_set_placement(s.m[1], "shards=4;by_profile=0;services="), 0);
    CHECK_EQ_STR(ring_members_placement(s.m[0]), by1);
    CHECK_EQ_STR(ring_members_placement(s.m[2]), ""); /* none set: an older version */
    buf_t syn, reply;
    buf_init(&syn, BUF_UNLIMITED);
    buf_init(&reply, BUF_UNLIMITED);
    errmsg_t em = {{0}};
    for (int dir = 0; dir < 2; dir++) { /* 1 -> 0, then 0 -> 1 */
        ring_members_t *from = s.m[dir ? 0 : 1], *to = s.m[dir ? 1 : 0];
        buf_reset(&syn);
        buf_reset(&reply);
        CHECK_EQ_INT(ring_gossip_syn(from, &syn), 0);
        CHECK_EQ_INT(ring_gossip_receive(to, "n01", syn.data, syn.len, &reply, test_reply_to, &em),
                     ERR_CONFLICT);
        CHECK(strstr(em.text, "by_profile=0") != NULL && strstr(em.text, "by_profile=1") != NULL);
        CHECK_EQ_INT(reply.len, 0);
        CHECK_EQ_INT(ring_members_count(to), 1);
        ring_members_stats_t st;
        ring_members_stats(to, &st);
        CHECK_EQ_INT(st.refused_placement, 1);
        CHECK_EQ_INT(st.refused_messages, 0);
    }
    /* a node that names none gossips with both, both ways (and may pass
     * on their entries: the check is of a message's sender) */
    for (size_t a = 0; a < 2; a++) {
        exchange(&s, 2, a);
        exchange(&s, a, 2);
    }
    CHECK_EQ_INT(ring_members_count(s.m[2]), 3);
    CHECK(ring_members_count(s.m[0]) >= 2);
    /* the same placement on both: taken */
    CHECK_EQ_INT(ring_members_set_placement(s.m[1], by1), 0);
    buf_reset(&syn);
    buf_reset(&reply);
    CHECK_EQ_INT(ring_gossip_syn(s.m[1], &syn), 0);
    CHECK_EQ_INT(ring_gossip_receive(s.m[0], "n01", syn.data, syn.len, &reply, test_reply_to, NULL),
                 0);
    CHECK_EQ_INT(ring_members_count(s.m[0]), 3);
    CHECK_EQ_INT(ring_members_set_placement(s.m[1], NULL), 0);
    CHECK_EQ_STR(ring_members_placement(s.m[1]), "");
    buf_free(&syn);
    buf_free(&reply);
    sim_free(&s);
}

int main(void)
{
    uint64_t seed = test_seed(11);
    test_cluster(seed);
    test_every_syn_answered();
    test_malformed();
    test_syn_with_members();
    test_seen();
    test_placement();
    return check_exit();
}
