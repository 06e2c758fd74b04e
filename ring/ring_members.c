/* ring_members.c — the membership table: merge rules, own state, failure
 * detection, and the rings it implies (ring.h, docs/cluster.md).
 *
 * Per incarnation a member's entry is a join-semilattice (ring_int.h): every
 * merge takes the componentwise maximum, so whatever order gossip delivers
 * entries in, all tables end up equal. Only the member itself raises its
 * incarnation, which is how it refutes a rumour of its death.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "ring/ring_int.h"

void ring_members_options_default(ring_members_options_t *o)
{
    o->down_after_ms = 10000;
    o->forget_left_after_ms = 72ULL * 3600 * 1000;
    o->max_members = RING_MAX_NODES;
    o->max_message_bytes = 8u << 20;
}

const char *ring_state_name(int state)
{
    switch (state) {
    case RING_JOINING:
        return "joining";
    case RING_ACTIVE:
        return "active";
    case RING_LEAVING:
        return "leaving";
    case RING_DOWN:
        return "down";
    case RING_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

uint64_t ring__now(const ring_members_t *m)
{
    return (uint64_t)clock_mono_ms(&m->clock);
}

static int cmp_member_id(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct member *)elem)->id);
}

struct member *ring__members_lookup(const ring_members_t *m, const char *id)
{
    return bsearch(id, m->v, m->n, sizeof *m->v, cmp_member_id);
}

static void member_clear(struct member *x)
{
    free(x->http_addr);
    free(x->cluster_addr);
    free(x->tokens);
}

/* Inserts a zeroed member named id at its sorted place. */
static struct member *insert_member(ring_members_t *m, const char *id)
{
    if (GROW_FROM(m->v, m->cap, m->n + 1, GROW_UNLIMITED, 8) != 0) return NULL;
    size_t at = 0;
    while (at < m->n && strcmp(m->v[at].id, id) < 0)
        at++;
    memmove(&m->v[at + 1], &m->v[at], (m->n - at) * sizeof *m->v);
    m->n++;
    struct member *x = &m->v[at];
    memset(x, 0, sizeof *x);
    memcpy(x->id, id, strlen(id) + 1);
    return x;
}

/* Replaces addresses and tokens; returns 1 if the tokens changed, 0 if not,
 * ERR_NOMEM (the member keeps its old static part). */
static int set_static(struct member *x, const struct member_view *v)
{
    char *h = strdup(v->http_addr), *c = strdup(v->cluster_addr);
    uint64_t *t = malloc(v->ntokens * sizeof *t);
    if (h == NULL || c == NULL || t == NULL) {
        free(h);
        free(c);
        free(t);
        return ERR_NOMEM;
    }
    memcpy(t, v->tokens, v->ntokens * sizeof *t);
    int changed = x->ntokens != v->ntokens ||
                  (x->tokens && memcmp(x->tokens, t, v->ntokens * sizeof *t) != 0);
    member_clear(x);
    x->http_addr = h;
    x->cluster_addr = c;
    x->tokens = t;
    x->ntokens = v->ntokens;
    return changed;
}

static int same_hints(const struct member *x, const char *const *ids, uint32_t n)
{
    if (x->nhints != n) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(x->hints_for[i], ids[i]) != 0) return 0;
    return 1;
}

void ring__member_free_hints(struct member *x)
{
    for (uint32_t i = 0; i < x->nhints; i++)
        free(x->hints_for[i]);
    free(x->hints_for);
    x->hints_for = NULL;
    x->nhints = 0;
}

int ring__member_set_hints(struct member *x, const char *const *ids, uint32_t n)
{
    if (same_hints(x, ids, n)) return 0;
    char **v = n > 0 ? calloc(n, sizeof *v) : NULL;
    if (n > 0 && v == NULL) return ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        v[i] = strdup(ids[i]);
        if (v[i] == NULL) {
            while (i > 0)
                free(v[--i]);
            free(v);
            return ERR_NOMEM;
        }
    }
    ring__member_free_hints(x);
    x->hints_for = v;
    x->nhints = n;
    return 1;
}

static int check_hints(const char *const *ids, uint32_t n)
{
    if (n > RING_MAX_NODES || (n > 0 && ids == NULL)) return ERR_INVALID_ARGUMENT;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == NULL || ring_node_id_check(ids[i], NULL) < 0) return ERR_INVALID_ARGUMENT;
    return 0;
}

static int check_view(const struct member_view *v)
{
    if (ring_node_id_check(v->id, NULL) < 0) return ERR_INVALID_ARGUMENT;
    if (check_hints(v->hints_for, v->nhints) < 0) return ERR_INVALID_ARGUMENT;
    if (v->life != RING_JOINING && v->life != RING_ACTIVE && v->life != RING_LEAVING &&
        v->life != RING_LEFT)
        return ERR_INVALID_ARGUMENT;
    if (!v->has_static) return 0;
    if (v->http_addr == NULL || v->cluster_addr == NULL || strlen(v->http_addr) > RING_ADDR_MAX ||
        strlen(v->cluster_addr) > RING_ADDR_MAX)
        return ERR_INVALID_ARGUMENT;
    if (v->ntokens == 0 || v->ntokens > RING_MAX_TOKENS || v->tokens == NULL)
        return ERR_INVALID_ARGUMENT;
    for (uint32_t i = 1; i < v->ntokens; i++)
        if (v->tokens[i] <= v->tokens[i - 1]) return ERR_INVALID_ARGUMENT;
    return 0;
}

int ring__members_set_static_checked(struct member *x, const struct member_view *v)
{
    if (check_view(v) < 0) return ERR_INVALID_ARGUMENT;
    int rc = set_static(x, v);
    return rc < 0 ? rc : 0;
}

int ring__view_news(const struct member_view *v, const struct member *x)
{
    if (v->incarnation != x->incarnation) return v->incarnation > x->incarnation;
    return v->life > x->life || (v->down && !x->down) || v->heartbeat > x->heartbeat ||
           v->frame_bytes > x->frame_bytes || v->member_version > x->member_version;
}

void ring__member_to_view(const struct member *x, struct member_view *out)
{
    *out = (struct member_view){x->id,
                                x->http_addr,
                                x->cluster_addr,
                                x->tokens,
                                x->ntokens,
                                1,
                                x->life,
                                x->down,
                                x->incarnation,
                                x->heartbeat,
                                (const char *const *)x->hints_for,
                                x->nhints,
                                x->frame_bytes,
                                x->member_version};
}

/* A rumour about this node that says more than it did: deny it by moving to
 * an incarnation above anything heard. Rumours far ahead were refused by
 * incarnation_plausible, and the sum saturates, so this never wraps to 0. */
static int refute(ring_members_t *m, struct member *self, const struct member_view *v)
{
    if (!ring__view_news(v, self)) return 0;
    uint64_t top = v->incarnation > self->incarnation ? v->incarnation : self->incarnation;
    self->incarnation = top == UINT64_MAX ? top : top + 1;
    self->down = 0;
    self->down_hb = 0;
    m->version++;
    m->stats.refutations++;
    return 1;
}

static int add_new(ring_members_t *m, const struct member_view *v)
{
    if (ring__forgotten(m, v->id, v->life, v->incarnation)) return 0;
    if (!v->has_static) return MERGE_NEED_FULL;
    if (m->n >= m->o.max_members) {
        m->stats.refused_members++;
        return ERR_LIMIT;
    }
    struct member *x = insert_member(m, v->id);
    if (x == NULL || set_static(x, v) < 0) {
        if (x != NULL) { /* undo the insert */
            size_t at = (size_t)(x - m->v);
            memmove(&m->v[at], &m->v[at + 1], (m->n - at - 1) * sizeof *m->v);
            m->n--;
        }
        return ERR_NOMEM;
    }
    x->life = v->life;
    x->down = v->down;
    x->incarnation = v->incarnation;
    x->heartbeat = v->heartbeat;
    x->down_hb = v->down ? ring__down_claim(v->heartbeat) : 0;
    x->last_seen_ms = x->state_since_ms = ring__now(m);
    x->frame_bytes = v->frame_bytes;
    x->member_version = v->member_version;
    ring__member_set_hints(x, v->hints_for, v->nhints); /* out of memory: the next gossip */
    m->version++;
    if (ring__class(x->life)) m->ring_version++;
    return 1;
}

static int replace(ring_members_t *m, struct member *x, const struct member_view *v)
{
    if (!v->has_static) return MERGE_NEED_FULL;
    int before = ring__class(x->life);
    int tokens_changed = set_static(x, v);
    if (tokens_changed < 0) return tokens_changed;
    x->life = v->life;
    x->down = v->down;
    x->incarnation = v->incarnation;
    x->heartbeat = v->heartbeat;
    x->down_hb = v->down ? ring__down_claim(v->heartbeat) : 0;
    x->last_seen_ms = x->state_since_ms = ring__now(m);
    x->frame_bytes = v->frame_bytes;
    x->member_version = v->member_version;
    ring__member_set_hints(x, v->hints_for, v->nhints);
    m->version++;
    if (before != ring__class(x->life) || (tokens_changed && before)) m->ring_version++;
    return 1;
}

/* Same incarnation: life, heartbeat and the down claim each only rise, so
 * any order of merging gives the same entry; the member is down while a
 * claim is at least as recent as the newest heartbeat seen. */
static int join_same(ring_members_t *m, struct member *x, const struct member_view *v)
{
    int before = ring__class(x->life), was_down = x->down, changed = 0;
    uint64_t now = ring__now(m);
    uint64_t claim = v->down ? ring__down_claim(v->heartbeat) : 0;
    if (claim > x->down_hb) x->down_hb = claim;
    if (v->frame_bytes > x->frame_bytes) { /* fixed per incarnation: only its absence varies */
        x->frame_bytes = v->frame_bytes;
        m->version++;
        changed = 1;
    }
    if (v->member_version > x->member_version) { /* as frame_bytes */
        x->member_version = v->member_version;
        m->version++;
        changed = 1;
    }
    if (v->heartbeat > x->heartbeat) {
        x->heartbeat = v->heartbeat;
        x->last_seen_ms = now;
        /* the owner's latest list travels with its latest heartbeat */
        if (ring__member_set_hints(x, v->hints_for, v->nhints) == 1) m->version++;
        changed = 1;
    }
    /* a LEFT entry is a tombstone: heartbeats heard after it mean nothing,
     * and whether it left down (removed) or up (decommissioned) is this
     * node's own record (LEFT travels without the flag): it stays */
    int left = x->life == RING_LEFT || v->life == RING_LEFT;
    x->down = (left && was_down) || x->down_hb > x->heartbeat;
    if (v->life > x->life || x->down != was_down) {
        if (v->life > x->life) x->life = v->life;
        x->state_since_ms = now;
        m->version++;
        if (before != ring__class(x->life)) m->ring_version++;
        changed = 1;
    }
    return changed;
}

/* Incarnations are start times in wall-clock seconds, raised by one per
 * refutation (cluster_incarnation_next). One far beyond this node's clock is
 * forged or from a broken clock: accepted, it would let its sender pin (or
 * wrap) a member's entry for good. */
static int incarnation_plausible(const ring_members_t *m, uint64_t incarnation)
{
    int64_t now_s = clock_wall_s(&m->clock);
    return incarnation <= (uint64_t)(now_s > 0 ? now_s : 0) + RING_INCARNATION_AHEAD_MAX_S;
}

int ring__members_merge_view(ring_members_t *m, const struct member_view *v)
{
    if (check_view(v) < 0 || !incarnation_plausible(m, v->incarnation)) {
        m->stats.refused_members++;
        return ERR_INVALID_ARGUMENT;
    }
    struct member *x = ring__members_lookup(m, v->id);
    if (strcmp(v->id, m->self) == 0) return refute(m, x, v);
    if (x == NULL) return add_new(m, v);
    if (v->incarnation > x->incarnation) return replace(m, x, v);
    if (v->incarnation < x->incarnation) return 0;
    return join_same(m, x, v);
}

int ring_members_merge(ring_members_t *m, const ring_member_t *e)
{
    ring_state_t life = e->state == RING_DOWN ? e->life : e->state;
    struct member_view v = {e->node_id,
                            e->http_addr,
                            e->cluster_addr,
                            e->tokens,
                            e->ntokens,
                            1,
                            life,
                            e->state == RING_DOWN,
                            e->incarnation,
                            e->heartbeat,
                            e->hints_for,
                            e->nhints_for,
                            e->max_frame_bytes,
                            e->member_version};
    int rc = ring__members_merge_view(m, &v);
    return rc == MERGE_NEED_FULL ? 0 : rc;
}
