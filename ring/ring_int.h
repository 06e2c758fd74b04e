/* ring_int.h — internals of the ring module, included only inside ring/.
 *
 * The ring is two sorted arrays: every (token, node) entry ordered by token
 * then node index, and the distinct tokens (one per elementary range). The
 * membership table is an array of members sorted by node id.
 */
#ifndef FLAMEDB_RING_RING_INT_H
#define FLAMEDB_RING_RING_INT_H

#include "ring/ring.h"

struct ring_entry {
    uint64_t token;
    uint32_t node;
};

struct ring {
    uint32_t nnodes;
    char **names;               /* [nnodes], sorted, owned */
    struct ring_entry *entries; /* sorted by (token, node) */
    size_t nentries;
    uint64_t *dtokens; /* distinct tokens, ascending: range i ends at dtokens[i] */
    uint32_t ndtokens;
    uint64_t fingerprint;
};

/* Index of the first entry with token >= t, wrapping to 0. Ring non-empty. */
size_t ring__first_entry(const ring_t *r, uint64_t t);
/* Index of the range holding t: the first distinct token >= t, wrapping. */
uint32_t ring__range_index(const ring_t *r, uint64_t t);
/* If the list's last range ends where its first starts, folds the last into
 * the first (ranges listed in ring order wrap around past the last token). */
void ring__ranges_close_wrap(ring_ranges_t *l);
/* 1 if node_id is among the replicas of token. */
int ring__is_replica(const ring_t *r, uint64_t token, uint32_t rf, const char *node_id);

/* A member. Within one incarnation its entry only grows: the lifecycle state
 * (JOINING < ACTIVE < LEAVING < LEFT), the down flag and the heartbeat each
 * take the maximum of what is heard, so merging is a join (commutative,
 * associative, idempotent) and gossip converges. A higher incarnation
 * replaces the entry. The public state is DOWN when down is set and the
 * lifecycle is not LEFT; `life` still tells which rings the member is in. */
struct member {
    char id[RING_NODE_ID_MAX + 1];
    char *http_addr, *cluster_addr;
    uint64_t *tokens; /* ascending, distinct */
    uint32_t ntokens;
    ring_state_t life; /* JOINING, ACTIVE, LEAVING or LEFT */
    int down;          /* down_hb > heartbeat (ring__member_settle_down) */
    uint64_t incarnation;
    uint64_t heartbeat;
    /* 1 + the highest heartbeat at which some node found it down in this
     * incarnation (0: none). A claim made before a heartbeat this table has
     * seen is stale: the member was alive after it (a node back from a
     * partition gossips its old claims about the others). */
    uint64_t down_hb;
    uint64_t last_seen_ms;   /* local time its heartbeat or incarnation last rose */
    uint64_t state_since_ms; /* local time life/down last changed */
    char **hints_for;        /* owned; ids of nodes it holds hints for */
    uint32_t nhints;
    /* its --max-frame-bytes (0: a version before chunks); fixed for one
     * incarnation, so within one it only rises: gossip relayed by an older
     * node, which drops the field, does not take it back */
    uint64_t frame_bytes;
    uint32_t member_version; /* its --cluster-member-version (0: a version before
                              * it); fixed for one incarnation, only rises, as frame_bytes */
};

/* The down claim "found down at heartbeat hb", as stored in down_hb. */
static inline uint64_t ring__down_claim(uint64_t hb)
{
    return hb == UINT64_MAX ? hb : hb + 1;
}

/* What gossip says about a member: a full entry (has_static) or a digest. */
struct member_view {
    const char *id;
    const char *http_addr, *cluster_addr; /* has_static only */
    const uint64_t *tokens;               /* has_static only; ascending, distinct */
    uint32_t ntokens;
    int has_static;
    ring_state_t life;
    int down;
    uint64_t incarnation, heartbeat;
    const char *const *hints_for; /* both kinds of view carry the owner's list */
    uint32_t nhints;
    uint64_t frame_bytes;    /* both kinds carry it too */
    uint32_t member_version; /* and this */
};

/* A LEFT tombstone this table forgot: for another forget_left_after_ms a
 * LEFT entry of that member at an incarnation up to this one is not taken
 * back from gossip (a peer that forgot it a little later still sends it),
 * or tombstones would pass back and forth between nodes for ever. */
struct ring_forgotten {
    char id[RING_NODE_ID_MAX + 1];
    uint64_t incarnation;
    uint64_t at_ms; /* local time it was forgotten */
};

struct ring_members {
    ring_members_options_t o;
    char self[RING_NODE_ID_MAX + 1];
    clock_source_t clock;
    struct member *v; /* sorted by id */
    size_t n, cap;
    uint64_t ring_version, version;
    ring_members_stats_t stats;
    struct ring_forgotten *forgot; /* at most max_members; the oldest go first */
    size_t nforgot, forgot_cap;
    char *placement; /* ring_members_set_placement's copy, or NULL */
};
/* 1 when v is the LEFT entry of a member this table forgot (ignore it). */
int ring__forgotten(const ring_members_t *m, const char *id, ring_state_t life,
                    uint64_t incarnation);

/* Bit 0: the lifecycle state puts a member in the current ring (it holds its
 * ranges); bit 1: in the pending ring (it will hold them). */
static inline int ring__class(ring_state_t life)
{
    return (life == RING_ACTIVE || life == RING_LEAVING) |
           ((life == RING_ACTIVE || life == RING_JOINING) << 1);
}

#define MERGE_NEED_FULL 2 /* merge_view result: a digest we cannot apply; ask for the entry */

/* Merges one view; returns 1 changed, 0 unchanged, MERGE_NEED_FULL, or a
 * negative error. */
int ring__members_merge_view(ring_members_t *m, const struct member_view *e);
struct member *ring__members_lookup(const ring_members_t *m, const char *id);
/* 1 if the view carries something the member lacks at its incarnation (or a
 * higher incarnation). */
int ring__view_news(const struct member_view *v, const struct member *x);
/* Checks v (a full entry) and copies its addresses and tokens into x. */
int ring__members_set_static_checked(struct member *x, const struct member_view *v);
void ring__member_to_view(const struct member *x, struct member_view *out);
/* Replaces x's hints_for with a copy of the view's list; 1 if it changed, 0
 * if not, ERR_NOMEM (x unchanged). */
int ring__member_set_hints(struct member *x, const char *const *ids, uint32_t n);
void ring__member_free_hints(struct member *x);
uint64_t ring__now(const ring_members_t *m);

#endif
