/* ring_lifecycle.c — the membership table's life: creation, this node's state
 * transitions, heartbeats and failure detection, operator removal, and the
 * rings and live set the table implies (ring.h).
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "ring/ring_int.h"

int ring_members_create(const ring_members_options_t *o, const ring_identity_t *self,
                        const char *http_addr, const char *cluster_addr, ring_state_t initial,
                        uint64_t incarnation, clock_source_t clock, ring_members_t **out,
                        errmsg_t *em)
{
    *out = NULL;
    if (clock.mono_ns == NULL) return errmsg_set(em, ERR_INVALID_ARGUMENT, "members: no clock");
    if (initial != RING_JOINING && initial != RING_ACTIVE)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "members: initial state must be joining or active");
    if (o->max_members == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "members: max_members is 0");
    int rc = ring_node_id_check(self->node_id, em);
    if (rc < 0) return rc;
    ring_members_t *m = calloc(1, sizeof *m);
    if (m == NULL) return errmsg_set(em, ERR_NOMEM, "members: out of memory");
    m->o = *o;
    memcpy(m->self, self->node_id, strlen(self->node_id) + 1);
    m->clock = clock;
    m->version = m->ring_version = 1;
    struct member_view v = {self->node_id,
                            http_addr ? http_addr : "",
                            cluster_addr ? cluster_addr : "",
                            self->tokens,
                            self->ntokens,
                            1,
                            initial,
                            0,
                            incarnation,
                            0};
    /* merge_view treats entries about this node as rumours; insert directly */
    m->v = calloc(1, sizeof *m->v);
    if (m->v == NULL) {
        free(m);
        return errmsg_set(em, ERR_NOMEM, "members: out of memory");
    }
    m->cap = m->n = 1;
    memcpy(m->v[0].id, m->self, sizeof m->self);
    m->v[0].life = initial;
    m->v[0].incarnation = incarnation;
    m->v[0].last_seen_ms = m->v[0].state_since_ms = ring__now(m);
    rc = ring__members_set_static_checked(&m->v[0], &v);
    if (rc < 0) {
        ring_members_free(m);
        return errmsg_set(em, rc, "members: invalid addresses or tokens for this node");
    }
    *out = m;
    return 0;
}

void ring_members_free(ring_members_t *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].http_addr);
        free(m->v[i].cluster_addr);
        free(m->v[i].tokens);
        ring__member_free_hints(&m->v[i]);
    }
    free(m->v);
    free(m->forgot);
    free(m->placement);
    free(m);
}

uint64_t ring_members_ring_version(const ring_members_t *m)
{
    return m->ring_version;
}

uint64_t ring_members_version(const ring_members_t *m)
{
    return m->version;
}

void ring_members_stats(const ring_members_t *m, ring_members_stats_t *out)
{
    *out = m->stats;
}

size_t ring_members_count(const ring_members_t *m)
{
    return m->n;
}

const char *ring_members_self(const ring_members_t *m)
{
    return m->self;
}

static void fill_public(const struct member *x, ring_member_t *out)
{
    out->node_id = x->id;
    out->http_addr = x->http_addr;
    out->cluster_addr = x->cluster_addr;
    out->tokens = x->tokens;
    out->ntokens = x->ntokens;
    out->life = x->life;
    out->state = x->down && x->life != RING_LEFT ? RING_DOWN : x->life;
    out->down = x->down;
    out->incarnation = x->incarnation;
    out->heartbeat = x->heartbeat;
    out->last_seen_ms = x->last_seen_ms;
    out->hints_for = (const char *const *)x->hints_for;
    out->nhints_for = x->nhints;
    out->max_frame_bytes = x->frame_bytes;
    out->member_version = x->member_version;
}

int ring_members_get(const ring_members_t *m, size_t i, ring_member_t *out)
{
    if (i >= m->n) return ERR_NOT_FOUND;
    fill_public(&m->v[i], out);
    return 0;
}

int ring_members_find(const ring_members_t *m, const char *node_id, ring_member_t *out)
{
    const struct member *x = ring__members_lookup(m, node_id);
    if (x == NULL) return ERR_NOT_FOUND;
    fill_public(x, out);
    return 0;
}

/* Only forward: the state is part of a per-incarnation lattice. */
static int transition_ok(ring_state_t from, ring_state_t to)
{
    if (from == RING_JOINING) return to == RING_ACTIVE || to == RING_LEAVING || to == RING_LEFT;
    if (from == RING_ACTIVE) return to == RING_LEAVING;
    if (from == RING_LEAVING) return to == RING_LEFT;
    return 0;
}

static void set_life(ring_members_t *m, struct member *x, ring_state_t to)
{
    int before = ring__class(x->life);
    x->life = to;
    x->state_since_ms = ring__now(m);
    m->version++;
    if (before != ring__class(to)) m->ring_version++;
}

int ring_members_set_state(ring_members_t *m, ring_state_t state, errmsg_t *em)
{
    struct member *x = ring__members_lookup(m, m->self);
    if (!transition_ok(x->life, state))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "members: no transition %s -> %s",
                          ring_state_name(x->life), ring_state_name(state));
    set_life(m, x, state);
    return 0;
}

int ring_members_remove(ring_members_t *m, const char *node_id, errmsg_t *em)
{
    if (strcmp(node_id, m->self) == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "members: a node does not remove itself");
    struct member *x = ring__members_lookup(m, node_id);
    if (x == NULL) return errmsg_set(em, ERR_NOT_FOUND, "members: no member %s", node_id);
    if (x->life != RING_LEFT) set_life(m, x, RING_LEFT);
    return 0;
}

int ring_members_set_hints(ring_members_t *m, const char *const *ids, size_t n)
{
    if (n > RING_MAX_NODES) return ERR_LIMIT;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == NULL || ring_node_id_check(ids[i], NULL) < 0) return ERR_INVALID_ARGUMENT;
    struct member *x = ring__members_lookup(m, m->self);
    int rc = ring__member_set_hints(x, ids, (uint32_t)n);
    if (rc < 0) return rc;
    x->heartbeat++;
    if (rc == 1) m->version++;
    return 0;
}

void ring_members_set_frame_bytes(ring_members_t *m, uint64_t frame_bytes)
{
    struct member *x = ring__members_lookup(m, m->self);
    if (x->frame_bytes != frame_bytes) m->version++;
    x->frame_bytes = frame_bytes;
}

void ring_members_set_member_version(ring_members_t *m, uint32_t version)
{
    struct member *x = ring__members_lookup(m, m->self);
    if (x->member_version != version) m->version++;
    x->member_version = version;
}

int ring_members_set_placement(ring_members_t *m, const char *placement)
{
    char *copy = NULL;
    if (placement != NULL && placement[0] != '\0' && (copy = strdup(placement)) == NULL)
        return ERR_NOMEM;
    free(m->placement);
    m->placement = copy;
    return 0;
}

const char *ring_members_placement(const ring_members_t *m)
{
    return m->placement != NULL ? m->placement : "";
}

void ring_members_hinted(const ring_members_t *m, const ring_t *r, uint8_t *hinted)
{
    uint32_t nn = ring_node_count(r);
    memset(hinted, 0, nn);
    for (size_t i = 0; i < m->n; i++) {
        const struct member *x = &m->v[i];
        if (x->life == RING_LEFT) continue;
        for (uint32_t j = 0; j < x->nhints; j++) {
            int k = ring_node_find(r, x->hints_for[j]);
            if (k >= 0) hinted[k] = 1;
        }
    }
}

int ring__forgotten(const ring_members_t *m, const char *id, ring_state_t life,
                    uint64_t incarnation)
{
    if (life != RING_LEFT) return 0; /* a member back at a new incarnation is news */
    for (size_t i = 0; i < m->nforgot; i++)
        if (strcmp(m->forgot[i].id, id) == 0 && incarnation <= m->forgot[i].incarnation) return 1;
    return 0;
}

/* Remembers that the LEFT entry x was forgotten now (ring_int.h). */
static void remember_forgotten(ring_members_t *m, const struct member *x, uint64_t now)
{
    if (m->nforgot >= m->o.max_members && m->nforgot > 0) { /* the oldest goes */
        memmove(&m->forgot[0], &m->forgot[1], (m->nforgot - 1) * sizeof *m->forgot);
        m->nforgot--;
    }
    if (GROW_FROM(m->forgot, m->forgot_cap, m->nforgot + 1, GROW_UNLIMITED, 4) != 0)
        return; /* out of memory: a peer may send the tombstone back, kept once more */
    struct ring_forgotten *f = &m->forgot[m->nforgot++];
    memcpy(f->id, x->id, sizeof f->id);
    f->incarnation = x->incarnation;
    f->at_ms = now;
}

/* Drops the records of tombstones forgotten a keep time ago: every peer
 * that had them has forgotten them by then too. */
static void expire_forgotten(ring_members_t *m, uint64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nforgot; i++)
        if (!(now > m->forgot[i].at_ms && now - m->forgot[i].at_ms > m->o.forget_left_after_ms))
            m->forgot[k++] = m->forgot[i];
    m->nforgot = k;
}

static void forget(ring_members_t *m, size_t i)
{
    free(m->v[i].http_addr);
    free(m->v[i].cluster_addr);
    free(m->v[i].tokens);
    ring__member_free_hints(&m->v[i]);
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof *m->v);
    m->n--;
    m->version++;
}

int ring_members_tick(ring_members_t *m)
{
    uint64_t now = ring__now(m);
    int changes = 0;
    expire_forgotten(m, now);
    for (size_t i = 0; i < m->n; i++) {
        struct member *x = &m->v[i];
        if (strcmp(x->id, m->self) == 0) {
            x->heartbeat++;
            x->last_seen_ms = now;
            continue;
        }
        if (x->life == RING_LEFT) {
            if (now > x->state_since_ms && now - x->state_since_ms > m->o.forget_left_after_ms) {
                remember_forgotten(m, x, now);
                forget(m, i--);
                changes++;
            }
            continue;
        }
        if (!x->down && now > x->last_seen_ms && now - x->last_seen_ms > m->o.down_after_ms) {
            x->down = 1;
            x->down_hb = ring__down_claim(x->heartbeat);
            x->state_since_ms = now;
            m->version++;
            m->stats.marked_down++;
            changes++;
        }
    }
    return changes;
}

/* Node specs of the members whose class has `bit`. */
static int collect(const ring_members_t *m, int bit, ring_node_spec_t *specs)
{
    int n = 0;
    for (size_t i = 0; i < m->n; i++)
        if (ring__class(m->v[i].life) & bit)
            specs[n++] = (ring_node_spec_t){m->v[i].id, m->v[i].tokens, m->v[i].ntokens};
    return n;
}

int ring_members_build_rings(const ring_members_t *m, ring_t **current, ring_t **pending,
                             errmsg_t *em)
{
    *current = NULL;
    if (pending) *pending = NULL;
    ring_node_spec_t *specs = malloc(m->n * sizeof *specs);
    if (specs == NULL) return errmsg_set(em, ERR_NOMEM, "members: out of memory");
    int n = collect(m, 1, specs), rc = 0;
    if (n > 0) rc = ring_build(specs, (size_t)n, current, em);
    int same = 1;
    for (size_t i = 0; i < m->n; i++) {
        int c = ring__class(m->v[i].life);
        same &= c == 0 || c == 3;
    }
    if (rc == 0 && pending && !same) {
        n = collect(m, 2, specs);
        if (n > 0) rc = ring_build(specs, (size_t)n, pending, em);
    }
    free(specs);
    if (rc < 0) {
        ring_free(*current);
        *current = NULL;
    }
    return rc;
}

void ring_members_live(const ring_members_t *m, const ring_t *r, uint8_t *live)
{
    for (uint32_t i = 0; i < ring_node_count(r); i++) {
        const struct member *x = ring__members_lookup(m, ring_node_name(r, i));
        live[i] = x != NULL && !x->down && (x->life == RING_ACTIVE || x->life == RING_LEAVING);
    }
}
