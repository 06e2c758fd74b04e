/* ring.h — placement of series on the token ring, node identity, the ring,
 * membership and gossip, read/write planning. Pure logic: no I/O, no
 * protobuf in this header (gossip bodies travel as bytes the cluster module
 * wraps in its envelope, node/cluster/).
 *
 * Owns:
 *  - the placement scheme: which 64-bit token a series has. A series is placed
 *    by (tenant, service_name, shard) where shard = series id mod
 *    shards_per_service, so all series of a service share a few tokens (and so
 *    a few replica sets). Storage keys start with the token, so one token
 *    range is one contiguous key range;
 *  - node identity (node id + tokens, generated once, persisted by the caller);
 *  - the ring: which RF distinct nodes hold a token, which ranges a node owns
 *    and which it gains or loses when the ring changes;
 *  - membership: the table of members, gossip merge rules, failure detection
 *    from an injected clock, the ring version;
 *  - read planning (one live replica per range) and write planning (replicas
 *    plus write quorum);
 *  - the gossip exchange: encoding and checking the Gossip message of
 *    common/proto/cluster.proto (the body only; the envelope around it is the
 *    cluster module's).
 *
 * Placement (RING_PLACEMENT_VERSION) and replica selection / token generation
 * (RING_REPLICA_VERSION) are pinned by golden vectors in
 * tests/unit/test_ring_placement.c and tests/unit/test_ring_replicas.c:
 * changing them moves data. docs/cluster.md describes placement, the ring and membership.
 *
 * Threads: placement, ring_t (immutable once built) and the plan functions are
 * thread-safe. A ring_members_t is not: one thread (the node's loop) owns it.
 * Time comes only from the clock given at creation (its monotonic reading,
 * common/clock.h); randomness only from
 * a caller-seeded ring_rng_t. There is no hidden global state.
 */
#ifndef FLAMEDB_RING_RING_H
#define FLAMEDB_RING_RING_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/labels.h"

/* ================================================================ placement */

#define RING_PLACEMENT_VERSION 1
#define RING_DEFAULT_SHARDS_PER_SERVICE 4
/* ring_shard_policy_t.by_profile of a new data directory (node/placement.h). */
#define RING_DEFAULT_SHARD_BY_PROFILE 1

/* Shard of a series within its service. */
uint32_t ring_series_shard(uint64_t series_id, uint32_t shards_per_service);

/* Shards per service: a default and per-service overrides for very large
 * services (more shards spread one service over more replica sets). A plain
 * value, copied freely. Every node must use the same policy, and a service's
 * count must not change once it has data: its series would move. */
#define RING_MAX_SHARD_OVERRIDES 64
#define RING_SERVICE_NAME_MAX 128
#define RING_MAX_SHARDS 4096
typedef struct ring_shard_policy {
    uint32_t default_shards;
    /* 0: a series' shard follows its series id. 1: its labels without
     * __profile_type__ (ring_shard_key), so the sample types of one profile
     * share a shard. Like the counts, every node must agree and it must not
     * change once there is data. */
    int by_profile;
    uint32_t n;
    struct {
        char service[RING_SERVICE_NAME_MAX + 1];
        uint32_t shards;
    } over[RING_MAX_SHARD_OVERRIDES];
} ring_shard_policy_t;

/* Parses "svc=16,other=8" (empty: no overrides) into p's overrides, keeping
 * p->default_shards. ERR_INVALID_ARGUMENT with the reason on bad input,
 * duplicates, counts outside 1..RING_MAX_SHARDS or more than
 * RING_MAX_SHARD_OVERRIDES entries. */
int ring_shard_policy_parse(ring_shard_policy_t *p, const char *spec, errmsg_t *em);
/* What ring_series_shard places a series by under p: its series_id, or
 * with p->by_profile a hash of its labels (borrowed) without
 * __profile_type__, the same on every node. */
uint64_t ring_shard_key(const labels_t *labels, uint64_t series_id, const ring_shard_policy_t *p);
/* Shards of service under p (its override, else the default; at least 1). */
uint32_t ring_shards_for(const ring_shard_policy_t *p, const char *service);

/* p as text, the same for equal policies whatever the order its overrides
 * were given in: "shards=4;by_profile=1;services=a=16,b=8" (overrides by
 * service name), appended to out. What a data directory records of the
 * policy its series were placed by (node/placement.h). */
int ring_shard_policy_format(const ring_shard_policy_t *p, buf_t *out);
/* Reads text written by ring_shard_policy_format into p;
 * ERR_INVALID_ARGUMENT with the reason on anything else. */
int ring_shard_policy_read(ring_shard_policy_t *p, const char *text, errmsg_t *em);
/* 1 when a and b place every series alike (ring_shard_policy_format's
 * texts are equal). */
int ring_shard_policy_equal(const ring_shard_policy_t *a, const ring_shard_policy_t *b);

/* Token of (tenant, service_name, shard): XXH3-64 over
 * "v1" 0x00 tenant 0x00 service_name 0x00 shard(u32 big-endian). */
uint64_t ring_placement_token(const char *tenant, const char *service_name, uint32_t shard);

/* ================================================================ limits */

/* Version of token generation (ring_rng_t, ring_identity_generate) and of
 * replica selection (ring_replicas). */
#define RING_REPLICA_VERSION 1

#define RING_NODE_ID_MAX 64     /* bytes of a node id: [A-Za-z0-9._-]+ */
#define RING_ADDR_MAX 255       /* bytes of an address */
#define RING_TENANT_MAX 150     /* bytes of a tenant (same as storage) */
#define RING_DEFAULT_TOKENS 128 /* virtual nodes per node */
#define RING_MAX_TOKENS 4096    /* tokens per node */
#define RING_MAX_NODES 1024     /* members of one cluster */
/* A member entry whose incarnation is more than this many seconds ahead of
 * the receiver's wall clock is refused (incarnations are start times). */
#define RING_INCARNATION_AHEAD_MAX_S 86400
#define RING_MAX_RF 16 /* replication factor */

/* ================================================================ random */

/* A seeded generator (splitmix64): the only source of token randomness, so
 * tests are reproducible. The node seeds it from the OS once. */
typedef struct ring_rng {
    uint64_t state;
} ring_rng_t;

void ring_rng_seed(ring_rng_t *r, uint64_t seed);
uint64_t ring_rng_next(ring_rng_t *r);

/* ================================================================ identity */

/* A node's persistent identity. tokens: sorted ascending, distinct; the
 * caller owns the struct, free the tokens with ring_identity_free(). */
typedef struct ring_identity {
    char node_id[RING_NODE_ID_MAX + 1];
    uint64_t *tokens;
    uint32_t ntokens;
} ring_identity_t;

/* 0 if id is a valid node id (1..RING_NODE_ID_MAX bytes of [A-Za-z0-9._-]),
 * else ERR_INVALID_ARGUMENT with the reason. */
int ring_node_id_check(const char *id, errmsg_t *em);

/* Draws ntokens distinct tokens (1..RING_MAX_TOKENS) from rng. */
int ring_identity_generate(ring_identity_t *id, const char *node_id, uint32_t ntokens,
                           ring_rng_t *rng, errmsg_t *em);

/* Appends the identity file text to out:
 *   flamedb-identity 1
 *   node_id NAME
 *   tokens N
 *   <N lines of 16 lowercase hex digits, ascending>
 *   checksum <16 hex digits: XXH3-64 of every byte before this line>
 */
int ring_identity_format(const ring_identity_t *id, buf_t *out);

/* Parses what ring_identity_format wrote; refuses anything else (wrong header,
 * bad checksum, unsorted or duplicate tokens, trailing bytes) with
 * ERR_CORRUPT. On success *id is filled (free with ring_identity_free). */
int ring_identity_parse(ring_identity_t *id, const uint8_t *p, size_t n, errmsg_t *em);

void ring_identity_free(ring_identity_t *id);

/* ================================================================ the ring */

/* A range of tokens (start, end] clockwise; start == end is the whole ring.
 * A token t belongs to the first ring token >= t (wrapping past UINT64_MAX),
 * so each ring token ends one range. */
typedef struct ring_range {
    uint64_t start; /* exclusive */
    uint64_t end;   /* inclusive */
} ring_range_t;

/* A growable list of ranges; caller owns, free with ring_ranges_free. */
typedef struct ring_ranges {
    ring_range_t *v;
    size_t n, cap;
} ring_ranges_t;

void ring_ranges_free(ring_ranges_t *l);
/* Appends r, joining it to the last range when they touch. */
int ring_ranges_add(ring_ranges_t *l, ring_range_t r);
/* 1 if the token lies in r. */
int ring_range_contains(ring_range_t r, uint64_t token);
/* Closed intervals [lo[i], hi[i]] covering r, for key scans; returns 1 or 2. */
int ring_range_intervals(ring_range_t r, uint64_t lo[2], uint64_t hi[2]);
/* Share of the ring r covers, in (0, 1]. */
double ring_range_share(ring_range_t r);

/* Immutable once built; thread-safe to read. Nodes are numbered 0..n-1 in
 * node id order, so the numbering is the same on every node. */
typedef struct ring ring_t;

typedef struct ring_node_spec {
    const char *node_id;
    const uint64_t *tokens;
    uint32_t ntokens;
} ring_node_spec_t;

/* Builds a ring from nodes (ids must be distinct and valid; each node at
 * least one token). Inputs are copied. Caller owns *out (ring_free). A token
 * held by two nodes is ordered by node id (deterministic, and both keep it). */
int ring_build(const ring_node_spec_t *nodes, size_t n, ring_t **out, errmsg_t *em);
void ring_free(ring_t *r);

uint32_t ring_node_count(const ring_t *r);
/* Node id of node i; borrowed, valid until ring_free. */
const char *ring_node_name(const ring_t *r, uint32_t node);
/* Index of node_id, or ERR_NOT_FOUND. */
int ring_node_find(const ring_t *r, const char *node_id);
/* XXH3-64 over the sorted (token, node id) list: equal iff two rings place
 * every token the same way. */
uint64_t ring_fingerprint(const ring_t *r);

/* The first min(rf, node count) distinct nodes clockwise from token, written
 * to out[] (room for rf, rf <= RING_MAX_RF); returns their count. */
uint32_t ring_replicas(const ring_t *r, uint64_t token, uint32_t rf, uint32_t *out);

/* The ring's elementary ranges: range i ends at the i-th distinct token. */
uint32_t ring_range_count(const ring_t *r);
ring_range_t ring_range_at(const ring_t *r, uint32_t i);

/* Ranges (coalesced, ascending by end) for which node is among the rf
 * replicas; appended to out. */
int ring_node_ranges(const ring_t *r, uint32_t node, uint32_t rf, ring_ranges_t *out);

/* What node_id gains and loses (appended, coalesced) when the ring goes from
 * before to after: ranges whose replica set gets / drops it. Either ring may
 * lack the node. For streaming: the sources of a gained range are its
 * replicas in `before`. */
int ring_node_changes(const ring_t *before, const ring_t *after, uint32_t rf, const char *node_id,
                      ring_ranges_t *gained, ring_ranges_t *lost);

/* ================================================================ planning */

/* Read plan: every range of the ring (or only those holding `tokens`) is
 * assigned to exactly one live replica, or listed in `missing`. */
typedef struct ring_read_plan {
    uint32_t nnodes;
    ring_ranges_t *assigned; /* [nnodes]: ranges each ring node answers for */
    ring_ranges_t missing;   /* ranges with no live replica */
} ring_read_plan_t;

/* live[i] != 0 when ring node i may serve reads; local is the planning node's
 * index or -1. tokens NULL: plan the whole ring; a range goes to the local
 * node when it is a live replica, else to the live replica with the least
 * share assigned so far (ties: the earlier one clockwise), so the plan is
 * deterministic. With tokens (a service's shards, or the ranges of a
 * re-plan) a range goes to the live replica that holds the most of the
 * wanted ranges, then to the local node, then to the one already answering
 * for more: the ranges go to as few nodes as their replicas allow. Caller
 * owns *out (ring_read_plan_free). */
int ring_plan_read(const ring_t *r, uint32_t rf, int local, const uint8_t *live,
                   const uint64_t *tokens, size_t ntokens, ring_read_plan_t *out, errmsg_t *em);
void ring_read_plan_free(ring_read_plan_t *p);

/* Write plan for one token. nodes[0..nnatural) are the replicas in `current`;
 * nodes[nnatural..n) are extra replicas in `pending` (the ring after the joins
 * and leaves in progress), which receive the write too but do not count
 * towards the quorum. Ids are borrowed from the rings. */
typedef struct ring_write_plan {
    uint32_t n, nnatural;
    uint32_t quorum; /* acks needed among the natural replicas */
    const char *nodes[2 * RING_MAX_RF];
} ring_write_plan_t;

/* Majority of rf. */
uint32_t ring_default_quorum(uint32_t rf);
/* quorum 0 means ring_default_quorum(rf); a quorum above the number of
 * natural replicas (a cluster smaller than rf) is lowered to it.
 * ERR_UNAVAILABLE when the ring is empty. pending may be NULL. */
int ring_plan_write(const ring_t *current, const ring_t *pending, uint64_t token, uint32_t rf,
                    uint32_t quorum, ring_write_plan_t *out, errmsg_t *em);

/* ================================================================ membership */

typedef enum ring_state {
    RING_JOINING = 1, /* streaming its ranges in; receives writes, no reads */
    RING_ACTIVE = 2,
    RING_LEAVING = 3, /* streaming its ranges out; still serves */
    RING_DOWN = 4,    /* set by others when its heartbeat stops */
    RING_LEFT = 5,    /* gone for good; kept as a tombstone so gossip can't revive it */
} ring_state_t;

/* "joining", "active", ...; "unknown" for other values. Static string. */
const char *ring_state_name(int state);

typedef struct ring_members_options {
    uint64_t down_after_ms; /* no heartbeat progress for this long: down (10 s) */
    /* drop LEFT tombstones after this (72 h); a forgotten one is not taken
     * back from gossip for as long again */
    uint64_t forget_left_after_ms;
    uint32_t max_members;     /* entries kept (RING_MAX_NODES) */
    size_t max_message_bytes; /* largest gossip message accepted (8 MiB) */
} ring_members_options_t;

void ring_members_options_default(ring_members_options_t *o);

/* A member as seen locally. Strings and tokens are borrowed: valid until the
 * next call that changes the table. */
typedef struct ring_member {
    const char *node_id, *http_addr, *cluster_addr;
    const uint64_t *tokens;
    uint32_t ntokens;
    ring_state_t state; /* DOWN when declared down (unless LEFT) */
    ring_state_t life;  /* JOINING, ACTIVE, LEAVING or LEFT, also while DOWN */
    uint64_t incarnation;
    uint64_t heartbeat;
    uint64_t last_seen_ms; /* local clock: last time its heartbeat or incarnation rose */
    /* Nodes this member holds undelivered hints for (owner-controlled, see
     * ring_members_set_hints); NULL when none. */
    const char *const *hints_for;
    uint32_t nhints_for;
    int down; /* declared down, kept when LEFT: a removed node (not a decommission) */
    /* The largest frame it takes, advertised by it (ring_members_set_frame_bytes);
     * 0: a version that neither cuts messages into pieces nor puts them back
     * together (or whose entry came only through such nodes so far). */
    uint64_t max_frame_bytes;
    /* The newest member protocol it speaks, advertised by it
     * (ring_members_set_member_version); 0: a version before the field (or an
     * entry that came only through such nodes so far). */
    uint32_t member_version;
} ring_member_t;

typedef struct ring_members_stats {
    uint64_t refused_messages; /* malformed or oversized gossip */
    uint64_t refused_members;  /* entries refused: invalid or over max_members */
    uint64_t refutations;      /* times we bumped our incarnation to deny a rumour */
    uint64_t marked_down;      /* members this node declared down */
    /* gossip refused because its sender places series otherwise
     * (ring_members_set_placement) */
    uint64_t refused_placement;
} ring_members_stats_t;

typedef struct ring_members ring_members_t;

/* Creates the table holding only this node, in state `initial` (JOINING for a
 * node that must stream its ranges in, ACTIVE for the first node of a cluster
 * or a restart with its data), with the given incarnation (use the wall-clock
 * seconds at start, so a restarted node wins over its old entries; refutation
 * covers clocks that went back). Copies its inputs. Caller owns *out
 * (ring_members_free). */
int ring_members_create(const ring_members_options_t *o, const ring_identity_t *self,
                        const char *http_addr, const char *cluster_addr, ring_state_t initial,
                        uint64_t incarnation, clock_source_t clock, ring_members_t **out,
                        errmsg_t *em);
void ring_members_free(ring_members_t *m);

/* Changes whenever the ring or the pending ring would change (a member
 * joins, becomes active, leaves, is forgotten, or its tokens change). */
uint64_t ring_members_ring_version(const ring_members_t *m);
/* Changes on every change of any member's state, incarnation or address
 * (heartbeats alone don't count). */
uint64_t ring_members_version(const ring_members_t *m);
void ring_members_stats(const ring_members_t *m, ring_members_stats_t *out);

/* Members in node id order. */
size_t ring_members_count(const ring_members_t *m);
int ring_members_get(const ring_members_t *m, size_t i, ring_member_t *out);
/* ERR_NOT_FOUND if absent. */
int ring_members_find(const ring_members_t *m, const char *node_id, ring_member_t *out);
/* This node's id; borrowed for the table's lifetime. */
const char *ring_members_self(const ring_members_t *m);

/* Changes this node's own state: JOINING -> ACTIVE -> LEAVING -> LEFT, or
 * JOINING -> LEAVING / LEFT. Anything else is ERR_INVALID_ARGUMENT. */
int ring_members_set_state(ring_members_t *m, ring_state_t state, errmsg_t *em);

/* One heartbeat period: bumps this node's heartbeat, declares down every
 * member whose heartbeat has not risen for down_after_ms, and forgets LEFT
 * tombstones older than forget_left_after_ms. Returns how many members
 * changed state. */
int ring_members_tick(ring_members_t *m);

/* Merges one full entry heard from elsewhere (state, life, incarnation,
 * heartbeat, addresses, tokens and hints_for are read; last_seen_ms is
 * ignored). The hints_for list is taken from the entry with the higher
 * (incarnation, heartbeat). A
 * higher incarnation replaces the entry; at the same incarnation the state
 * precedence JOINING < ACTIVE < LEAVING < DOWN < LEFT and the higher heartbeat
 * win (precisely: lifecycle, down flag and heartbeat each take the maximum,
 * so merging in any order converges). An entry about this node that says
 * anything it did not (a higher incarnation or heartbeat, down, a later
 * state) is refuted: this node takes an incarnation above it and keeps its
 * own state. Returns 1 if the table changed, 0 if not, ERR_INVALID_ARGUMENT
 * for an invalid entry, ERR_LIMIT when the table is full. */
int ring_members_merge(ring_members_t *m, const ring_member_t *e);

/* Sets this node's own hints_for list: the ids of the nodes it holds
 * undelivered hints for (copied; n 0 clears it). Bumps the heartbeat so the
 * list spreads with the next gossip, and ring_members_version() when the list
 * changed. ERR_LIMIT over RING_MAX_NODES ids, ERR_INVALID_ARGUMENT for an
 * invalid id (the list is then unchanged). */
int ring_members_set_hints(ring_members_t *m, const char *const *ids, size_t n);

/* Sets the largest frame this node takes (its max_frame_bytes, advertised in
 * its entry and digests); call once, before the first gossip of this
 * incarnation (other nodes only ever raise the value they hold for it). */
void ring_members_set_frame_bytes(ring_members_t *m, uint64_t frame_bytes);

/* Sets the newest member protocol this node speaks (advertised in its entry
 * and digests); as ring_members_set_frame_bytes, once, before the first
 * gossip of this incarnation. */
void ring_members_set_member_version(ring_members_t *m, uint32_t version);

/* Sets the placement policy this node places series by (text of
 * ring_shard_policy_format; copied), sent in every gossip message. Gossip
 * from a node that sends another one is refused (ERR_CONFLICT, counted in
 * refused_placement): it places series on other tokens, so its writes would
 * be refused and its reads miss data. Gossip without one (a version before
 * it) is taken, and such a node may pass on an entry it learnt elsewhere:
 * the check is of each message's sender. Call before the first gossip;
 * NULL or "": none sent, none checked. ERR_NOMEM when it cannot be copied. */
int ring_members_set_placement(ring_members_t *m, const char *placement);
/* The placement set (or ""), valid until the next set or the free. */
const char *ring_members_placement(const ring_members_t *m);

/* hinted[i] = 1 for ring nodes that some member (not LEFT; this node
 * included) lists in its hints_for: they miss writes that are still held as
 * hints, so they must not serve reads (docs/replication.md, "Freshness"). hinted has
 * ring_node_count(r) entries. A caller folds it into the live set:
 * live[i] &= !hinted[i]. */
void ring_members_hinted(const ring_members_t *m, const ring_t *r, uint8_t *hinted);

/* Operator removal of a dead node: marks it LEFT at its incarnation, so its
 * ranges move to the others. Not for this node (use set_state). */
int ring_members_remove(ring_members_t *m, const char *node_id, errmsg_t *em);

/* Builds the rings. current: members ACTIVE or LEAVING, also while DOWN (a
 * down node keeps its ranges; writes for it become hints), or NULL when there
 * are none yet. pending (may be NULL to skip): the ring once the joins and
 * leaves in progress complete (ACTIVE and JOINING, down or not), set only
 * when it differs from current, else NULL. Caller owns both (ring_free). */
int ring_members_build_rings(const ring_members_t *m, ring_t **current, ring_t **pending,
                             errmsg_t *em);

/* live[i] = 1 for ring nodes that may serve reads (ACTIVE or LEAVING), 0
 * otherwise; live has ring_node_count(r) entries. */
void ring_members_live(const ring_members_t *m, const ring_t *r, uint8_t *live);

/* ================================================================ gossip */

/* Gossip is a three-way exchange (docs/cluster.md): A sends SYN (digests of
 * all members); B merges what the digests can tell it and answers ACK with the
 * full entries A lacks and the ids it wants; A merges and answers ACK2 with
 * those. These functions read and write serialized Gossip bodies; the caller
 * carries them in its envelope (which names the cluster and the sender). */

/* Appends a serialized SYN Gossip to out: digests of every member, and this
 * node's own entry in full (so a seed that never heard of it can answer). */
int ring_gossip_syn(ring_members_t *m, buf_t *out);
/* Decodes, checks and handles a serialized Gossip body from sender_id (the
 * envelope's sender); appends the answer (if any, a serialized Gossip) to
 * reply (left empty when none is due) and the address to send it to in
 * reply_to (RING_ADDR_MAX + 1 bytes): the one the sender's own entry in a
 * SYN gives (where it listens now), else the table's, "" when unknown.
 * Refused messages return ERR_UNPARSEABLE / ERR_TOO_LARGE /
 * ERR_INVALID_ARGUMENT with the reason and are counted, or ERR_CONFLICT
 * from a sender placing series otherwise (ring_members_set_placement); the
 * table is unchanged. */
int ring_gossip_receive(ring_members_t *m, const char *sender_id, const uint8_t *body, size_t len,
                        buf_t *reply, char *reply_to, errmsg_t *em);

/* What a handled Gossip told beyond its entries (ring_gossip_receive_seen). */
typedef struct ring_gossip_seen {
    /* The highest incarnation it gave this node, 0 when it did not name it.
     * Every SYN names each member its sender knows, and every ACK carries
     * the asking node's own entry back (a SYN holds it in full, not as a
     * digest): at this node's current incarnation, the message was built
     * after its sender learnt of this start, so its sender's own entry in
     * it, or the one this table held already if newer, is its word since. */
    uint64_t self_incarnation;
    /* Members it named that this table lacks: their full entries are asked
     * for (a SYN's answer) and arrive with the next message. */
    uint32_t wanted;
    /* 1 when it was an ACK: the answer to a SYN this node sent its sender
     * (which came back on the sender's own connection to this node). */
    int ack;
} ring_gossip_seen_t;

/* As ring_gossip_receive, and fills *seen (when not NULL) for a message
 * handled (also when the answer could not be built). */
int ring_gossip_receive_seen(ring_members_t *m, const char *sender_id, const uint8_t *body,
                             size_t len, buf_t *reply, char *reply_to, ring_gossip_seen_t *seen,
                             errmsg_t *em);

/* Index (for ring_members_get) of a member to gossip with, drawn uniformly
 * from the others that have not left (down ones included, so a recovered node
 * is noticed); ERR_NOT_FOUND when there is none (then gossip with a seed). */
int ring_gossip_pick(const ring_members_t *m, ring_rng_t *rng);

#endif
