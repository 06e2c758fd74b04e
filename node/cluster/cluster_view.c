/* cluster_view.c — the immutable, reference-counted cluster_view_t built
 * from the membership table, the hint targets folded into its read-live
 * flags, and the GET /cluster/status document.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/cluster_int.h"
#include "node/cluster/repair_int.h"

/* ---------- views ---------- */

static void view_free(view_impl_t *v)
{
    for (uint32_t i = 0; v->http != NULL && i < v->n; i++)
        free(v->http[i]);
    for (uint32_t i = 0; v->caddr != NULL && i < v->n; i++)
        free(v->caddr[i]);
    free(v->http);
    free(v->caddr);
    free(v->hinted);
    free(v->marked);
    free(v->live);
    free(v->reachable);
    free(v->self_id);
    ring_free(v->ring);
    ring_free(v->pending);
    free(v);
}

void cluster_view_retain(const cluster_view_t *pub)
{
    view_impl_t *v = (view_impl_t *)pub;
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void cluster_view_release(const cluster_view_t *pub)
{
    if (pub == NULL) return;
    view_impl_t *v = (view_impl_t *)pub;
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1) view_free(v);
}

const cluster_view_t *cluster_view_acquire(cluster_t *c)
{
    cluster_view_retain(&c->view->pub);
    return &c->view->pub;
}

int cluster_view_alone(const cluster_view_t *v)
{
    return v->self == 0 && ring_node_count(v->ring) == 1 && v->pending == NULL;
}

void cluster_view_drop(cluster_t *c)
{
    if (c->view != NULL) cluster_view_release(&c->view->pub);
    c->view = NULL;
}

/* ---------- hint targets ---------- */

/* This node's list goes into its own member entry, which gossip spreads;
 * every node folds the lists of all members into its live set. */
int cluster_hints_publish(cluster_t *c)
{
    const char **v = malloc((c->nhint_ids + 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    size_t n = 0;
    int self = 0;
    for (size_t i = 0; i < c->nhint_ids; i++) {
        self |= strcmp(c->hint_ids[i], c->id.node_id) == 0;
        v[n++] = c->hint_ids[i];
    }
    /* a node streaming ranges it gained by a removal lists itself: no
     * reads until it caught up (cluster_regain.c); so does a restarted one
     * until it knows whether it gained any (cluster_regain_ring.c) and
     * until it heard the others' marks on it (cluster_move.c), and one
     * that cannot tell until its full repair converged (cluster_full.c), and
     * one whose mark went with a member that left, until its window check
     * compared its copy (cluster_void.c) */
    int listed = c->regain.n > 0 || c->known.unsure || c->unheard || c->full.on || c->voided.on;
    if (listed && !self) v[n++] = c->id.node_id;
    int rc = ring_members_set_hints(c->members, v, n);
    free(v);
    return rc;
}

static int keep_hint_ids(cluster_t *c, const char *const *ids, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; v != NULL && i < n; i++)
        if ((v[i] = strdup(ids[i])) == NULL) {
            while (i-- > 0)
                free(v[i]);
            free(v);
            v = NULL;
        }
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < c->nhint_ids; i++)
        free(c->hint_ids[i]);
    free(c->hint_ids);
    c->hint_ids = v;
    c->nhint_ids = n;
    return 0;
}

int cluster_set_hint_targets(cluster_t *c, const char *const *ids, size_t n)
{
    if (n > RING_MAX_NODES) return ERR_LIMIT;
    int rc = keep_hint_ids(c, ids, n);
    if (rc == 0) rc = cluster_hints_publish(c);
    if (rc < 0) return rc;
    cluster_view_refresh(c);
    return ERR_OK;
}

/* ---------- building ---------- */

static int view_alloc(view_impl_t *v, uint32_t n)
{
    size_t k = n ? n : 1;
    v->n = n;
    v->hinted = calloc(k, 1);
    v->marked = calloc(k, 1);
    v->live = calloc(k, 1);
    v->reachable = calloc(k, 1);
    v->http = calloc(k, sizeof *v->http);
    v->caddr = calloc(k, sizeof *v->caddr);
    return v->hinted && v->marked && v->live && v->reachable && v->http && v->caddr ? ERR_OK
                                                                                    : ERR_NOMEM;
}

/* marked: the ring nodes another member (not left) lists in its
 * hints_for, as gossip brought the lists: they missed writes. A node's
 * listing of itself (it regains ranges, repairs, restarted) is left out:
 * it refuses to serve what it cannot (cluster_copy_untrusted), interval by
 * interval, and two nodes regaining parts of one range stream from each
 * other. */
static void view_marked(cluster_t *c, view_impl_t *v)
{
    size_t nm = ring_members_count(c->members);
    for (size_t i = 0; i < nm; i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK || m.life == RING_LEFT) continue;
        for (uint32_t j = 0; j < m.nhints_for; j++) {
            int k = ring_node_find(v->ring, m.hints_for[j]);
            if (k >= 0 && strcmp(m.hints_for[j], m.node_id) != 0) v->marked[k] = 1;
        }
    }
}

/* Per ring node: addresses, reachable (not down), live (may serve reads:
 * active or leaving, not down, nobody holds hints for it), marked. */
static int view_fill_nodes(cluster_t *c, view_impl_t *v)
{
    if (v->ring != NULL) {
        ring_members_live(c->members, v->ring, v->live);
        ring_members_hinted(c->members, v->ring, v->hinted);
        view_marked(c, v);
    }
    for (uint32_t i = 0; i < v->n; i++) {
        const char *name = ring_node_name(v->ring, i);
        ring_member_t m;
        if (ring_members_find(c->members, name, &m) != ERR_OK) return ERR_INTERNAL;
        v->http[i] = strdup(m.http_addr);
        v->caddr[i] = strdup(m.cluster_addr);
        if (v->http[i] == NULL || v->caddr[i] == NULL) return ERR_NOMEM;
        v->reachable[i] = m.state != RING_DOWN;
        int gainer = cluster_regain_gainer(c, name, &m); /* always: it drops what is done */
        v->live[i] = v->live[i] && v->reachable[i] && !v->hinted[i] && !gainer;
    }
    return ERR_OK;
}

static uint32_t quorum_for(const cluster_config_t *cfg, uint32_t rf)
{
    if (cfg->write_quorum == 0) return ring_default_quorum(rf);
    return cfg->write_quorum < rf ? cfg->write_quorum : rf;
}

static int view_build(cluster_t *c, view_impl_t **out, errmsg_t *em)
{
    view_impl_t *v = calloc(1, sizeof *v);
    if (v == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    atomic_init(&v->refs, 1);
    int rc = ring_members_build_rings(c->members, &v->ring, &v->pending, em);
    if (rc == ERR_OK) rc = view_alloc(v, v->ring ? ring_node_count(v->ring) : 0);
    if (rc == ERR_OK) rc = view_fill_nodes(c, v);
    if (rc == ERR_OK && (v->self_id = strdup(c->id.node_id)) == NULL) rc = ERR_NOMEM;
    if (rc != ERR_OK) {
        view_free(v);
        return errmsg_set(em, rc, "cannot build the cluster view");
    }
    cluster_view_t *p = &v->pub;
    p->ring = v->ring;
    p->pending = v->pending;
    p->live = v->live;
    p->reachable = v->reachable;
    p->marked = v->marked;
    p->http_addr = (const char *const *)v->http;
    p->cluster_addr = (const char *const *)v->caddr;
    p->self = v->ring ? ring_node_find(v->ring, c->id.node_id) : -1;
    if (p->self < 0) p->self = -1;
    p->self_id = v->self_id;
    /* RF capped by the larger ring: while a cluster smaller than RF grows, a
     * joining node must be planned with the RF it will have once active */
    uint32_t np = v->pending ? ring_node_count(v->pending) : 0, big = np > v->n ? np : v->n;
    p->rf = c->cfg.replication_factor < big ? c->cfg.replication_factor : big;
    p->quorum = quorum_for(&c->cfg, p->rf);
    p->version = ++c->view_seq;
    *out = v;
    return ERR_OK;
}

static void log_view(const cluster_t *c, const view_impl_t *vi)
{
    const cluster_view_t *v = &vi->pub;
    char line[1024];
    size_t len = 0;
    for (size_t i = 0; i < ring_members_count(c->members) && len < sizeof line - 80; i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK) continue;
        int k = v->ring ? ring_node_find(v->ring, m.node_id) : -1;
        /* up, active, nobody holds hints for it and still not read: it
         * gains ranges by a removal and has not said so itself yet */
        int gaining =
            k >= 0 && !vi->hinted[k] && v->reachable[k] && !v->live[k] && m.state == RING_ACTIVE;
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %s%s", i ? ", " : "",
                                m.node_id, ring_state_name((int)m.state),
                                k >= 0 && vi->hinted[k] ? " (hinted: no reads)"
                                : gaining               ? " (gaining: no reads)"
                                                        : "");
    }
    line[len < sizeof line ? len : sizeof line - 1] = '\0';
    log_info("cluster", "view %llu: %s (rf %u, quorum %u)", (unsigned long long)v->version, line,
             v->rf, v->quorum);
}

static int addr_in_use(const cluster_t *c, const char *addr)
{
    for (size_t i = 0; i < ring_members_count(c->members); i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) == ERR_OK && strcmp(m.cluster_addr, addr) == 0)
            return 1;
    }
    for (size_t i = 0; i < c->nseeds; i++)
        if (strcmp(c->seeds[i], addr) == 0) return 1;
    return 0;
}

/* Closes the sockets to addresses that no member has any more (a node that
 * came back on another port), so nanomsg stops redialling them. */
static void forget_old_addresses(cluster_t *c, const view_impl_t *old)
{
    if (c->rpc == NULL || old == NULL) return;
    for (uint32_t i = 0; i < old->n; i++)
        if (old->caddr[i][0] != '\0' && !addr_in_use(c, old->caddr[i])) {
            log_info("cluster", "forgetting %s: no member has that address any more",
                     old->caddr[i]);
            rpc_forget_peer(c->rpc, old->caddr[i]);
        }
}

static int left_index(const cluster_t *c, const char *id)
{
    for (size_t i = 0; i < c->nleft; i++)
        if (strcmp(c->left_seen[i], id) == 0) return (int)i;
    return -1;
}

/* Remembers members that left; a remembered one that is a member again came
 * back (a removed node restarted with its old data): on_rejoin is told. */
static void track_left(cluster_t *c)
{
    size_t n = ring_members_count(c->members);
    for (size_t i = 0; i < n; i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK) continue;
        int k = left_index(c, m.node_id);
        if (m.life == RING_LEFT && k < 0) {
            char *id = strdup(m.node_id);
            if (id == NULL || GROW(c->left_seen, c->left_cap, c->nleft + 1, RING_MAX_NODES) != 0) {
                free(id);
                continue;
            }
            c->left_seen[c->nleft++] = id;
        } else if (m.life != RING_LEFT && k >= 0) {
            /* forgotten first: on_rejoin changes the hint lists, which
             * refreshes the view and comes back here */
            char *id = c->left_seen[k];
            c->left_seen[k] = c->left_seen[--c->nleft];
            log_warn("cluster", "%s is a member again after it left: not read from until repaired",
                     id);
            if (c->on_rejoin != NULL) c->on_rejoin(c->on_rejoin_ctx, id);
            free(id);
            return; /* the member table may have changed: the next refresh goes on */
        }
    }
}

/* Whether a node other than this one went down or left the ring from old
 * to v (its coordinator's marks may be gone with it): a window check
 * follows (repair_windows_soon). A member that comes back or is new brings
 * nothing a check would find: its misses are marked, and a join verifies
 * its ranges. */
static int members_changed(const view_impl_t *old, const view_impl_t *v)
{
    for (uint32_t i = 0; i < old->n; i++) {
        if ((int)i == old->pub.self || !old->reachable[i]) continue;
        int k = v->ring != NULL ? ring_node_find(v->ring, ring_node_name(old->ring, i)) : -1;
        if (k < 0 || !v->reachable[k]) return 1; /* down or removed */
    }
    return 0;
}

int cluster_view_refresh(cluster_t *c)
{
    uint64_t mv = ring_members_version(c->members);
    if (c->view != NULL && mv == c->view_members_version && !c->view_stale) return 0;
    track_left(c); /* before the build: a rejoined node must be built not live */
    mv = ring_members_version(c->members);
    if (c->view != NULL && mv == c->view_members_version && !c->view_stale)
        return 0; /* rebuilt meanwhile */
    c->view_stale = 0;
    view_impl_t *v = NULL;
    errmsg_t em = {{0}};
    if (view_build(c, &v, &em) != ERR_OK) {
        log_error("cluster", "%s", em.text); /* keep the previous view */
        return 0;
    }
    forget_old_addresses(c, c->view);
    view_impl_t *old = c->view;
    c->view = v;
    c->view_members_version = mv;
    c->counters.view_rebuilds++;
    log_view(c, v);
    if (old != NULL && members_changed(old, v))
        repair_windows_soon(c->repair, cluster_move_settle_ms(c));
    int again = old != NULL && cluster_regain_note(c, &old->pub, &v->pub);
    if (old != NULL && cluster_void_note(c, &old->pub, &v->pub)) again = 1;
    cluster_full_evidence(c, &v->pub);
    if (old != NULL) cluster_view_release(&old->pub);
    if (again) cluster_view_refresh(c); /* this node's hints_for changed */
    return 1;
}

/* ---------- GET /cluster/status ---------- */

static int member_json(const cluster_t *c, const ring_member_t *m, uint64_t now, buf_t *out)
{
    int self = strcmp(m->node_id, c->id.node_id) == 0;
    uint64_t ago = self || now < m->last_seen_ms ? 0 : now - m->last_seen_ms;
    int rc = buf_append_str(out, "{\"id\":");
    rc = rc ? rc : buf_append_json_string(out, m->node_id, strlen(m->node_id));
    rc = rc ? rc : buf_append_str(out, ",\"http\":");
    rc = rc ? rc : buf_append_json_string(out, m->http_addr, strlen(m->http_addr));
    rc = rc ? rc : buf_append_str(out, ",\"cluster\":");
    rc = rc ? rc : buf_append_json_string(out, m->cluster_addr, strlen(m->cluster_addr));
    rc = rc ? rc
            : buf_printf(out,
                         ",\"state\":\"%s\",\"tokens\":%u,\"incarnation\":%llu,\"heartbeat\":%llu,"
                         "\"last_heartbeat_ms_ago\":%llu,\"self\":%s,\"max_frame_bytes\":%llu,"
                         "\"member_version\":%u,\"hints_for\":[",
                         ring_state_name((int)m->state), m->ntokens,
                         (unsigned long long)m->incarnation, (unsigned long long)m->heartbeat,
                         (unsigned long long)ago, self ? "true" : "false",
                         (unsigned long long)m->max_frame_bytes, m->member_version);
    for (uint32_t i = 0; rc == ERR_OK && i < m->nhints_for; i++) {
        rc = i ? buf_append_byte(out, ',') : ERR_OK;
        rc = rc ? rc : buf_append_json_string(out, m->hints_for[i], strlen(m->hints_for[i]));
    }
    return rc ? rc : buf_append_str(out, "]}");
}

/* Transport and membership counters, as one flat JSON object. */
static int transport_json(const cluster_t *c, buf_t *out)
{
    rpc_stats_t s = {0};
    if (c->rpc != NULL) rpc_stats(c->rpc, &s);
    ring_members_stats_t ms;
    ring_members_stats(c->members, &ms);
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {
        {"received", s.received},
        {"sent", s.sent},
        {"bytes_received", s.bytes_received},
        {"bytes_sent", s.bytes_sent},
        {"refused_too_large", s.refused_too_large},
        {"dropped_queue_full", s.dropped_queue_full},
        {"dropped_deadline", s.dropped_deadline},
        {"socket_errors", s.socket_errors},
        {"redials", s.redials},
        {"redials_unanswered", s.redials_unanswered},
        {"connections_accepted", s.connections_accepted},
        {"connections_dropped", s.connections_dropped},
        {"connections_broken", s.connections_broken},
        {"connections_current", s.connections_current},
        {"chunk_pieces", c->chunks.stats.pieces},
        {"chunked_messages", c->chunks.stats.messages},
        {"chunked_dropped", c->chunks.stats.dropped},
        {"chunk_bytes_held", c->chunks.stats.bytes_held},
        {"chunk_bytes_reserved", c->chunks.stats.bytes_reserved},
        {"chunked_over_budget", c->chunks.stats.over_budget},
        {"frame_limit_bytes", c->rpc != NULL ? rpc_receive_max(c->rpc) : 0},
        {"refused_messages", c->counters.refused},
        {"refused_unauthorized", c->counters.unauthorized},
        {"unknown_sender", c->counters.unknown_sender},
        {"unhandled", c->counters.unhandled},
        {"dispatched", c->counters.dispatched},
        {"gossip_rounds", c->counters.gossip_rounds},
        {"gossip_refused", ms.refused_messages},
        {"gossip_refused_placement", ms.refused_placement},
        {"members_refused", ms.refused_members},
        {"marked_down", ms.marked_down},
        {"refutations", ms.refutations},
    };
    int rc = buf_append_str(out, ",\"transport\":{");
    for (size_t i = 0; rc == ERR_OK && i < sizeof f / sizeof f[0]; i++)
        rc = buf_printf(out, "%s\"%s\":%llu", i ? "," : "", f[i].name, (unsigned long long)f[i].v);
    return rc ? rc : buf_append_byte(out, '}');
}

int cluster_status_json(cluster_t *c, buf_t *out)
{
    const cluster_view_t *v = &c->view->pub;
    int rc = buf_append_str(out, "{\"self\":");
    rc = rc ? rc : buf_append_json_string(out, c->id.node_id, strlen(c->id.node_id));
    rc = rc ? rc : buf_append_str(out, ",\"cluster\":");
    rc = rc ? rc : buf_append_json_string(out, c->cfg.cluster_name, strlen(c->cfg.cluster_name));
    const char *placement = ring_members_placement(c->members);
    rc = rc ? rc : buf_append_str(out, ",\"placement\":");
    rc = rc ? rc : buf_append_json_string(out, placement, strlen(placement));
    rc =
        rc ? rc
           : buf_printf(out,
                        ",\"rf\":%u,\"quorum\":%u,\"ring_version\":%llu,\"view_version\":%llu,"
                        "\"ring_fingerprint\":\"%016llx\",\"regaining\":%zu,\"full_repair\":%d,"
                        "\"nodes\":[",
                        v->rf, v->quorum, (unsigned long long)ring_members_ring_version(c->members),
                        (unsigned long long)v->version,
                        (unsigned long long)(v->ring ? ring_fingerprint(v->ring) : 0), c->regain.n,
                        c->full.on);
    uint64_t now = (uint64_t)clock_mono_ms(&c->clock); /* the members table's time */
    for (size_t i = 0; rc == ERR_OK && i < ring_members_count(c->members); i++) {
        ring_member_t m;
        rc = ring_members_get(c->members, i, &m);
        if (rc == ERR_OK && i > 0) rc = buf_append_byte(out, ',');
        if (rc == ERR_OK) rc = member_json(c, &m, now, out);
    }
    rc = rc ? rc : buf_append_byte(out, ']');
    rc = rc ? rc : transport_json(c, out);
    rc = rc ? rc : buf_append_str(out, "}\n");
    return rc;
}
