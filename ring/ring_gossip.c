/* ring_gossip.c — the three-way gossip exchange over the membership table
 * (ring.h, docs/cluster.md).
 *
 * A full entry carries 8 bytes per token (1 KiB at 128 tokens); a digest
 * carries none. Addresses and tokens are fixed for one incarnation, so full
 * entries only travel when the other side lacks the member or has an older
 * incarnation; heartbeats and state changes travel as digests.
 */
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/proto/cluster.pb-c.h"
#include "ring/ring_int.h"

#define PH(x) FLAMEDB__CLUSTER__GOSSIP_PHASE__GOSSIP_PHASE_##x
/* Decoding a Gossip body allocates at most this many times its size: a
 * two-byte empty entry decodes to a struct of about a hundred bytes. */
#define RING_GOSSIP_DECODE_FACTOR 16
#define ST_DOWN FLAMEDB__CLUSTER__NODE_STATE__NODE_STATE_DOWN
#define S(x) FLAMEDB__CLUSTER__NODE_STATE__NODE_STATE_##x

/* Proto state <-> (life, down). Inputs were checked by check_gossip. */
static void state_from_proto(int state, int down_from, ring_state_t *life, int *down)
{
    *down = state == ST_DOWN;
    *life = (ring_state_t)(*down ? down_from : state);
}

static void state_to_proto(const struct member *x, Flamedb__Cluster__NodeState *state,
                           Flamedb__Cluster__NodeState *down_from)
{
    int down = x->down && x->life != RING_LEFT;
    *state = down ? ST_DOWN : (Flamedb__Cluster__NodeState)x->life;
    *down_from = down ? (Flamedb__Cluster__NodeState)x->life : 0;
}

/* An outgoing message under construction: arrays sized for every member. */
struct out {
    Flamedb__Cluster__Gossip g;
    Flamedb__Cluster__MemberDigest *dv, **dp;
    Flamedb__Cluster__Member *mv, **mp;
    char **rq;
};

static int out_init(struct out *o, const ring_members_t *m, size_t cap, int phase)
{
    memset(o, 0, sizeof *o);
    flamedb__cluster__gossip__init(&o->g);
    o->g.phase = phase;
    o->g.placement = (char *)ring_members_placement(m); /* "" is left out of the message */
    cap = cap ? cap : 1;
    o->dv = calloc(cap, sizeof *o->dv);
    o->dp = calloc(cap, sizeof *o->dp);
    o->mv = calloc(cap, sizeof *o->mv);
    o->mp = calloc(cap, sizeof *o->mp);
    o->rq = calloc(cap, sizeof *o->rq);
    o->g.digests = o->dp;
    o->g.members = o->mp;
    o->g.requests = o->rq;
    return o->dv && o->dp && o->mv && o->mp && o->rq ? 0 : ERR_NOMEM;
}

static void out_free(struct out *o)
{
    free(o->dv);
    free(o->dp);
    free(o->mv);
    free(o->mp);
    free(o->rq);
}

/* Pointers into x stay borrowed until the message is packed. */
static void add_digest(struct out *o, const struct member *x)
{
    Flamedb__Cluster__MemberDigest *d = &o->dv[o->g.n_digests];
    flamedb__cluster__member_digest__init(d);
    d->node_id = (char *)x->id;
    d->incarnation = x->incarnation;
    d->heartbeat = x->heartbeat;
    d->hints_for = x->hints_for;
    d->n_hints_for = x->nhints;
    d->max_frame_bytes = x->frame_bytes;
    d->member_version = x->member_version;
    state_to_proto(x, &d->state, &d->down_from);
    o->dp[o->g.n_digests++] = d;
}

static void add_full(struct out *o, const struct member *x)
{
    Flamedb__Cluster__Member *e = &o->mv[o->g.n_members];
    flamedb__cluster__member__init(e);
    e->node_id = (char *)x->id;
    e->http_addr = x->http_addr;
    e->cluster_addr = x->cluster_addr;
    e->tokens = x->tokens;
    e->n_tokens = x->ntokens;
    e->incarnation = x->incarnation;
    e->heartbeat = x->heartbeat;
    e->hints_for = x->hints_for;
    e->n_hints_for = x->nhints;
    e->max_frame_bytes = x->frame_bytes;
    e->member_version = x->member_version;
    state_to_proto(x, &e->state, &e->down_from);
    o->mp[o->g.n_members++] = e;
}

static int out_send(ring_members_t *m, struct out *o, buf_t *reply)
{
    (void)m;
    size_t n = flamedb__cluster__gossip__get_packed_size(&o->g);
    int rc = buf_reserve(reply, n);
    if (rc == 0) {
        flamedb__cluster__gossip__pack(&o->g, reply->data + reply->len);
        reply->len += n;
        reply->data[reply->len] = 0;
    }
    return rc;
}

int ring_gossip_syn(ring_members_t *m, buf_t *out)
{
    struct out o;
    int rc = out_init(&o, m, m->n, PH(SYN));
    /* The sender's own entry travels in full, so a seed that has never heard
     * of it learns its address and can answer. */
    for (size_t i = 0; rc == 0 && i < m->n; i++) {
        if (strcmp(m->v[i].id, m->self) == 0)
            add_full(&o, &m->v[i]);
        else
            add_digest(&o, &m->v[i]);
    }
    if (rc == 0) rc = out_send(m, &o, out);
    out_free(&o);
    return rc;
}

static void digest_view(const Flamedb__Cluster__MemberDigest *d, struct member_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = d->node_id;
    v->incarnation = d->incarnation;
    v->heartbeat = d->heartbeat;
    v->hints_for = (const char *const *)d->hints_for;
    v->nhints = (uint32_t)d->n_hints_for;
    v->frame_bytes = d->max_frame_bytes;
    v->member_version = d->member_version;
    state_from_proto(d->state, d->down_from, &v->life, &v->down);
}

static void member_view(const Flamedb__Cluster__Member *e, struct member_view *v)
{
    *v = (struct member_view){
        e->node_id, e->http_addr,   e->cluster_addr, e->tokens, (uint32_t)e->n_tokens, 1, 0,
        0,          e->incarnation, e->heartbeat};
    v->hints_for = (const char *const *)e->hints_for;
    v->nhints = (uint32_t)e->n_hints_for;
    v->frame_bytes = e->max_frame_bytes;
    v->member_version = e->member_version;
    state_from_proto(e->state, e->down_from, &v->life, &v->down);
}

/* Merges the full entries, then the digests; ids of digests that need the
 * full entry go to want (when not NULL) and are counted in *wanted. */
static void merge_all(ring_members_t *m, const Flamedb__Cluster__Gossip *g, struct out *want,
                      uint32_t *wanted)
{
    struct member_view v;
    for (size_t i = 0; i < g->n_members; i++) {
        member_view(g->members[i], &v);
        ring__members_merge_view(m, &v);
    }
    for (size_t i = 0; i < g->n_digests; i++) {
        digest_view(g->digests[i], &v);
        if (ring__members_merge_view(m, &v) != MERGE_NEED_FULL) continue;
        (*wanted)++;
        if (want != NULL) want->rq[want->g.n_requests++] = g->digests[i]->node_id;
    }
}

static int cmp_digest(const void *a, const void *b)
{
    return strcmp((*(Flamedb__Cluster__MemberDigest *const *)a)->node_id,
                  (*(Flamedb__Cluster__MemberDigest *const *)b)->node_id);
}

/* ACK: for each local member, what the SYN's sender lacks. */
static int answer_syn(ring_members_t *m, Flamedb__Cluster__Gossip *g, buf_t *reply,
                      uint32_t *wanted)
{
    struct out o;
    /* merging may add up to n_members entries before the answer is built */
    int rc = out_init(&o, m, m->n + g->n_members + g->n_digests, PH(ACK));
    if (rc < 0) {
        out_free(&o);
        return rc;
    }
    merge_all(m, g, &o, wanted);
    if (g->n_digests > 0) qsort(g->digests, g->n_digests, sizeof *g->digests, cmp_digest);
    for (size_t i = 0; i < m->n; i++) {
        const struct member *x = &m->v[i];
        Flamedb__Cluster__MemberDigest key = {.node_id = (char *)x->id}, *kp = &key;
        Flamedb__Cluster__MemberDigest **hit =
            g->n_digests == 0
                ? NULL
                : bsearch(&kp, g->digests, g->n_digests, sizeof *g->digests, cmp_digest);
        struct member_view mine, theirs;
        ring__member_to_view(x, &mine);
        if (hit == NULL || x->incarnation > (*hit)->incarnation) {
            add_full(&o, x);
            continue;
        }
        /* same incarnation (merging made ours >= theirs): send ours if it says more */
        struct member tmp;
        memset(&tmp, 0, sizeof tmp);
        digest_view(*hit, &theirs);
        tmp.incarnation = theirs.incarnation;
        tmp.life = theirs.life;
        tmp.down = theirs.down;
        tmp.heartbeat = theirs.heartbeat;
        if (x->incarnation == theirs.incarnation && ring__view_news(&mine, &tmp)) add_digest(&o, x);
    }
    if (o.g.n_digests + o.g.n_members + o.g.n_requests > 0) rc = out_send(m, &o, reply);
    out_free(&o);
    return rc;
}

/* ACK2: the full entries the ACK's sender asked for. */
static int answer_ack(ring_members_t *m, const Flamedb__Cluster__Gossip *g, buf_t *reply,
                      uint32_t *wanted)
{
    merge_all(m, g, NULL, wanted);
    struct out o;
    int rc = out_init(&o, m, g->n_requests, PH(ACK2));
    for (size_t i = 0; rc == 0 && i < g->n_requests; i++) {
        const struct member *x = ring__members_lookup(m, g->requests[i]);
        if (x != NULL) add_full(&o, x);
    }
    if (rc == 0 && o.g.n_members > 0) rc = out_send(m, &o, reply);
    out_free(&o);
    return rc;
}

/* ---------- checking a received Gossip ---------- */

static int check_state(int state, int down_from)
{
    if (state < S(JOINING) || state > S(LEFT)) return -1;
    if (state == S(DOWN)) return down_from >= S(JOINING) && down_from <= S(LEAVING) ? 0 : -1;
    return down_from == 0 ? 0 : -1;
}

/* A hints_for list: at most RING_MAX_NODES valid node ids. */
static int check_hints_for(char *const *ids, size_t n)
{
    if (n > RING_MAX_NODES) return -1;
    for (size_t i = 0; i < n; i++)
        if (ring_node_id_check(ids[i], NULL) < 0) return -1;
    return 0;
}

static int check_member(const Flamedb__Cluster__Member *x, errmsg_t *em)
{
    if (check_hints_for(x->hints_for, x->n_hints_for) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: member %s: bad hints_for list",
                          ring_node_id_check(x->node_id, NULL) < 0 ? "?" : x->node_id);
    if (ring_node_id_check(x->node_id, NULL) < 0 || check_state(x->state, x->down_from) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: member with bad id or state");
    if (strlen(x->http_addr) > RING_ADDR_MAX || strlen(x->cluster_addr) > RING_ADDR_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: member %s: address too long",
                          x->node_id);
    if (x->n_tokens == 0 || x->n_tokens > RING_MAX_TOKENS)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: member %s: %zu tokens", x->node_id,
                          x->n_tokens);
    for (size_t i = 1; i < x->n_tokens; i++)
        if (x->tokens[i] <= x->tokens[i - 1])
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: member %s: tokens not ascending",
                              x->node_id);
    return 0;
}

static int check_gossip(const Flamedb__Cluster__Gossip *g, errmsg_t *em)
{
    if (g->phase < FLAMEDB__CLUSTER__GOSSIP_PHASE__GOSSIP_PHASE_SYN ||
        g->phase > FLAMEDB__CLUSTER__GOSSIP_PHASE__GOSSIP_PHASE_ACK2)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: unknown phase");
    if (g->n_digests > RING_MAX_NODES || g->n_members > RING_MAX_NODES ||
        g->n_requests > RING_MAX_NODES)
        return errmsg_set(em, ERR_TOO_LARGE, "gossip: more than %d entries", RING_MAX_NODES);
    for (size_t i = 0; i < g->n_digests; i++)
        if (ring_node_id_check(g->digests[i]->node_id, NULL) < 0 ||
            check_state(g->digests[i]->state, g->digests[i]->down_from) < 0 ||
            check_hints_for(g->digests[i]->hints_for, g->digests[i]->n_hints_for) < 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: digest %zu invalid", i);
    for (size_t i = 0; i < g->n_requests; i++)
        if (ring_node_id_check(g->requests[i], NULL) < 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "gossip: request %zu invalid", i);
    int rc = 0;
    for (size_t i = 0; i < g->n_members && rc == 0; i++)
        rc = check_member(g->members[i], em);
    return rc;
}

/* Where to answer: the sender's address in the table, after the message was
 * merged (a SYN carries its sender's own entry, so a new member is known by
 * then, and a restarted one has a higher incarnation and its new address).
 * Never an address a message merely names: a stranger could otherwise point
 * answers at any host. */
static void reply_address(ring_members_t *m, const char *sender, char *out)
{
    out[0] = 0;
    const struct member *x = ring__members_lookup(m, sender);
    if (x != NULL && x->cluster_addr != NULL && strlen(x->cluster_addr) <= RING_ADDR_MAX)
        memcpy(out, x->cluster_addr, strlen(x->cluster_addr) + 1);
}

/* The highest incarnation g gives this node (0: it does not name it). */
static uint64_t self_incarnation(const ring_members_t *m, const Flamedb__Cluster__Gossip *g)
{
    uint64_t top = 0;
    for (size_t i = 0; i < g->n_members; i++)
        if (strcmp(g->members[i]->node_id, m->self) == 0 && g->members[i]->incarnation > top)
            top = g->members[i]->incarnation;
    for (size_t i = 0; i < g->n_digests; i++)
        if (strcmp(g->digests[i]->node_id, m->self) == 0 && g->digests[i]->incarnation > top)
            top = g->digests[i]->incarnation;
    return top;
}

/* 1 when g's sender and this node both name a placement and they differ. */
static int placed_otherwise(const ring_members_t *m, const Flamedb__Cluster__Gossip *g)
{
    const char *mine = ring_members_placement(m);
    return mine[0] != '\0' && g->placement != NULL && g->placement[0] != '\0' &&
           strcmp(g->placement, mine) != 0;
}

int ring_gossip_receive(ring_members_t *m, const char *sender_id, const uint8_t *body, size_t len,
                        buf_t *reply, char *reply_to, errmsg_t *em)
{
    return ring_gossip_receive_seen(m, sender_id, body, len, reply, reply_to, NULL, em);
}

int ring_gossip_receive_seen(ring_members_t *m, const char *sender_id, const uint8_t *body,
                             size_t len, buf_t *reply, char *reply_to, ring_gossip_seen_t *seen,
                             errmsg_t *em)
{
    reply_to[0] = 0;
    ring_gossip_seen_t ignored;
    if (seen == NULL) seen = &ignored;
    memset(seen, 0, sizeof *seen);
    int rc = 0;
    Flamedb__Cluster__Gossip *g = NULL;
    arena_t a;
    arena_init(&a, 16u << 10, len * RING_GOSSIP_DECODE_FACTOR + (64u << 10));
    ProtobufCAllocator al = {arena_cb_alloc, arena_cb_free, &a};
    if (len > m->o.max_message_bytes)
        rc = errmsg_set(em, ERR_TOO_LARGE, "gossip: %zu bytes, at most %zu", len,
                        m->o.max_message_bytes);
    else if ((g = flamedb__cluster__gossip__unpack(&al, len, body)) == NULL)
        rc = a.over ? errmsg_set(em, ERR_TOO_LARGE,
                                 "gossip: decoding needs more than %d times "
                                 "its size",
                                 RING_GOSSIP_DECODE_FACTOR)
                    : errmsg_set(em, ERR_UNPARSEABLE, "gossip: body is not a Gossip message");
    else
        rc = check_gossip(g, em);
    if (rc == 0 && placed_otherwise(m, g)) {
        m->stats.refused_placement++;
        rc = errmsg_set(em, ERR_CONFLICT,
                        "gossip: the sender places series by '%.300s', this node by '%.300s' "
                        "(--shards-per-service, --shard-by-profile and --service-shards must be "
                        "the same on every node)",
                        g->placement, ring_members_placement(m));
    }
    if (rc < 0) {
        arena_free(&a);
        if (rc != ERR_CONFLICT) m->stats.refused_messages++;
        return rc;
    }
    seen->self_incarnation = self_incarnation(m, g);
    seen->ack = g->phase == PH(ACK);
    if (g->phase == PH(SYN))
        rc = answer_syn(m, g, reply, &seen->wanted);
    else if (g->phase == PH(ACK))
        rc = answer_ack(m, g, reply, &seen->wanted);
    else
        merge_all(m, g, NULL, &seen->wanted);
    if (rc == 0 && reply->len > 0) reply_address(m, sender_id, reply_to);
    arena_free(&a);
    if (rc < 0) errmsg_set(em, rc, "gossip: could not build the answer");
    return rc;
}

int ring_gossip_pick(const ring_members_t *m, ring_rng_t *rng)
{
    size_t cand = 0;
    for (size_t i = 0; i < m->n; i++)
        cand += m->v[i].life != RING_LEFT && strcmp(m->v[i].id, m->self) != 0;
    if (cand == 0) return ERR_NOT_FOUND;
    size_t k = (size_t)(ring_rng_next(rng) % cand);
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].life == RING_LEFT || strcmp(m->v[i].id, m->self) == 0) continue;
        if (k-- == 0) return (int)i;
    }
    return ERR_NOT_FOUND;
}
