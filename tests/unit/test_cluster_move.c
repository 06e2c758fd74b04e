/* Unit tests for when a leave's takers' passes count (node/cluster/
 * cluster_move.c, cluster_move_leave_settled; docs/cluster.md,
 * "Decommissioning a node").
 *
 * n3 of a 4-node ring leaves (pending ring without it). Its settle margin
 * counts from the leave's start while the move stays the same, also after
 * it passed; when n2 is removed during the leave (current and pending rings
 * without it: another move), the margin counts again from when n3 saw that,
 * and stays so while the new move is seen again or a view shows no move.
 * With --join-settle 0 the margin is 10 gossip intervals plus the write
 * timeout. A new leave (or a resumed one) starts from its own start.
 *
 * The takers' check answers with the fingerprint of the move it checked:
 * an answer of a move the current view no longer shows (the ring changed
 * after the check's last look at it) does not turn the node left. */
#include "check.h"
#include "common/clock.h"
#include "node/cluster/repair_int.h"

static ring_t *ring_of(const char *const *ids, uint32_t n)
{
    static const uint64_t tok[4][2] = {{1000, 5000}, {2000, 6000}, {3000, 7000}, {4000, 8000}};
    ring_node_spec_t spec[4];
    for (uint32_t i = 0; i < n; i++) {
        int k = ids[i][1] - '0';
        spec[i] = (ring_node_spec_t){ids[i], tok[k], 2};
    }
    ring_t *r = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_build(spec, n, &r, &em), 0);
    return r;
}

static void test_leave_settle_restarts_on_a_new_move(void)
{
    static const char *const all[] = {"n0", "n1", "n2", "n3"}, *leave1[] = {"n0", "n1", "n2"};
    static const char *const removed[] = {"n0", "n1", "n3"}, *leave2[] = {"n0", "n1"};
    ring_t *r1 = ring_of(all, 4), *p1 = ring_of(leave1, 3);
    ring_t *r2 = ring_of(removed, 3), *p2 = ring_of(leave2, 2);
    cluster_view_t v1 = {.ring = r1, .pending = p1, .rf = 2};
    cluster_view_t v2 = {.ring = r2, .pending = p2, .rf = 2};
    cluster_view_t none = {.ring = r2, .rf = 2};
    clock_manual_t m = {.wall_ns = 1700000000000ll * 1000000, .mono_ns = 1};
    cluster_t *c = calloc(1, sizeof *c);
    c->clock = clock_manual(&m);
    c->cfg.join_settle_ms = 3000;
    c->leaving = 1;
    uint64_t t0 = cluster_unix_ms(c);
    c->move_start_ms = t0;
    CHECK(cluster_move_leave_settled(c, &v1) == t0 + 3000);
    clock_manual_advance_ms(&m, 5000); /* settled, the same move */
    CHECK(cluster_move_leave_settled(c, &v1) == t0 + 3000);
    CHECK(cluster_move_leave_settled(c, &v2) == t0 + 8000); /* n2 removed meanwhile */
    clock_manual_advance_ms(&m, 1000);
    CHECK(cluster_move_leave_settled(c, &v2) == t0 + 8000);
    CHECK(cluster_move_leave_settled(c, &none) == t0 + 8000);
    clock_manual_advance_ms(&m, 1000); /* the move changes again: from now */
    CHECK(cluster_move_leave_settled(c, &v1) == t0 + 10000);
    /* the default margin: 10 gossip intervals and a write timeout */
    c->cfg.join_settle_ms = 0;
    c->cfg.gossip_interval_ms = 100;
    c->cfg.write_timeout_ms = 1000;
    CHECK(cluster_move_leave_settled(c, &v1) == t0 + 7000 + 2000);
    c->leave_move_fp = c->leave_moved_ms = 0; /* a new leave: its own start */
    c->move_start_ms = cluster_unix_ms(c);
    CHECK(cluster_move_leave_settled(c, &v2) == c->move_start_ms + 2000);
    free(c);
    ring_free(r1);
    ring_free(p1);
    ring_free(r2);
    ring_free(p2);
}

static void test_leave_check_of_an_old_move_does_not_leave(void)
{
    static const char *const all[] = {"n0", "n1", "n2", "n3"}, *leave1[] = {"n0", "n1", "n2"};
    static const char *const removed[] = {"n0", "n1", "n3"}, *leave2[] = {"n0", "n1"};
    ring_t *r1 = ring_of(all, 4), *p1 = ring_of(leave1, 3);
    view_impl_t *now = calloc(1, sizeof *now); /* n2 removed after the check's look */
    now->ring = ring_of(removed, 3);
    now->pending = ring_of(leave2, 2);
    now->pub = (cluster_view_t){.ring = now->ring, .pending = now->pending, .rf = 2};
    now->refs = 1; /* the release below frees it with its rings */
    cluster_view_t checked = {.ring = r1, .pending = p1, .rf = 2};
    uint64_t old_fp = repair_move_fp(&checked);
    CHECK(old_fp != 0 && old_fp != repair_move_fp(&now->pub));
    cluster_t *c = calloc(1, sizeof *c);
    c->view = now;
    c->leaving = 1;
    c->leave_asked = 1;
    cluster_move_leave_verified(c, 1, old_fp); /* verified, but of the old move */
    CHECK_EQ_INT(c->left_at_ms, 0);
    CHECK_EQ_INT(c->leave_asked, 0); /* asked again at a later turn */
    CHECK_EQ_INT(c->leaving, 1);
    cluster_view_release(&now->pub);
    free(c);
    ring_free(r1);
    ring_free(p1);
}

int main(void)
{
    test_leave_settle_restarts_on_a_new_move();
    test_leave_check_of_an_old_move_does_not_leave();
    return check_exit();
}
