/* cluster_open.c — the module's face to the daemon (cluster.h): opening and
 * closing its parts (membership and transport, the write path, the read
 * path) and handing the node's writes, queries and metrics to the part that
 * owns them. The parts know nothing of each other; only this file knows all
 * three.
 */
#include <stdlib.h>
#include <string.h>

#include "node/cluster/repair_int.h"
#include "node/cluster/replicate_int.h"
#include "node/cluster/scatter_int.h"

/* The placement every gossip message carries, and gossip checks. */
static int set_placement(cluster_t *c, const ring_shard_policy_t *shards, errmsg_t *em)
{
    buf_t t;
    buf_init(&t, BUF_UNLIMITED);
    int rc = ring_shard_policy_format(shards, &t);
    if (rc == ERR_OK) rc = ring_members_set_placement(c->members, (const char *)t.data);
    buf_free(&t);
    return rc == ERR_OK ? ERR_OK : errmsg_set(em, rc, "out of memory");
}

int cluster_open(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                 const cluster_inputs_t *in, cluster_t **out, errmsg_t *em)
{
    cluster_t *c = NULL;
    int rc = cluster_new(loop, cfg, in->data_dir, in->http_addr, in->clock, &c, em);
    if (rc != ERR_OK) return rc;
    rc = set_placement(c, &in->shards, em);
    if (rc != ERR_OK) {
        *out = c;
        return rc;
    }
    rc = scatter_open_for_cluster(loop, storage, cfg, in, c, &c->scatter, em);
    if (rc == ERR_OK) rc = replicate_open_for_cluster(loop, storage, cfg, in, c, &c->replicate, em);
    if (rc == ERR_OK) rc = repair_open_for_cluster(loop, storage, cfg, in, c, &c->repair, em);
    /* a full repair a stop cut short: its removal's gains are told the
     * repair thread before the regain is, which cuts the regain at them */
    if (rc == ERR_OK) cluster_full_start(c);
    if (rc == ERR_OK) cluster_regain_start(c); /* a regain a crash cut short */
    if (rc == ERR_OK) cluster_void_start(c);   /* a voided mark's check, likewise */
    if (rc == ERR_OK) { /* a removed node that comes back is short: the write path marks it */
        c->on_rejoin = replicate_marks_rejoined;
        c->on_rejoin_ctx = c->replicate;
    }
    *out = c; /* even on failure: cluster_close and cluster_free release what opened */
    return rc;
}

/* The operator's word pending (cluster_accept_copy) is not answered by a
 * stopped repair thread. */
static void accept_stopped(cluster_t *c)
{
    errmsg_t em;
    errmsg_set(&em, ERR_UNAVAILABLE, "the node is stopping");
    cluster_full_accept_answer(c, ERR_UNAVAILABLE, &em);
    c->full.accept.off = 1;
}

void cluster_close(cluster_t *c, void (*done)(void *arg), void *arg)
{
    if (c->closing) return;
    c->closing = 1;
    c->done = done;
    c->done_arg = arg;
    accept_stopped(c);
    if (c->scatter != NULL) scatter_close(c->scatter); /* answers queries still in flight */
    repair_close(c->repair);    /* fails waiting callers; joins the pass's thread */
    if (c->replicate != NULL) { /* stores the hints of writes still waiting for acks */
        c->open_parts++;
        replicate_close(c->replicate, cluster_part_closed, c);
    }
    cluster_close_base(c);
}

void cluster_free(cluster_t *c)
{
    if (c == NULL) return;
    scatter_free(c->scatter);
    replicate_free(c->replicate);
    repair_free(c->repair);
    cluster_free_base(c);
}

/* ---------- writes ---------- */

int cluster_write_admit(cluster_t *c, errmsg_t *em)
{
    return replicate_admit(c->replicate, em);
}

int cluster_write_prepare(cluster_t *c, const cluster_view_t *view,
                          const storage_profile_write_t *w, cluster_write_t **out,
                          size_t *local_written, errmsg_t *em)
{
    return replicate_prepare(c->replicate, view, w, out, local_written, em);
}

void cluster_write_free(cluster_write_t *w)
{
    replicate_write_free(w);
}

size_t cluster_write_local_series(const cluster_write_t *w)
{
    return replicate_write_local_series(w);
}

void cluster_write_start(cluster_t *c, cluster_write_t *w, cluster_write_done_fn done, void *ctx)
{
    replicate_start(c->replicate, w, done, ctx);
}

/* ---------- queries ---------- */

void cluster_query(cluster_t *c, query_kind_t kind, const char *tenant, const query_params_t *p,
                   int64_t now_ms, cluster_answer_fn done, void *arg)
{
    scatter_query(c->scatter, kind, tenant, p, now_ms, done, arg);
}

void cluster_query_cancel(cluster_t *c, void *arg)
{
    scatter_cancel(c->scatter, arg);
}

int cluster_query_hold(cluster_t *c, size_t bytes, errmsg_t *em)
{
    return scatter_hold(c->scatter, bytes, em);
}

int cluster_query_try_hold(cluster_t *c, size_t bytes)
{
    return scatter_try_hold(c->scatter, bytes);
}

void cluster_query_release(cluster_t *c, size_t bytes)
{
    scatter_release(c->scatter, bytes);
}

/* ---------- repair ---------- */

void cluster_repair(cluster_t *c, cluster_repair_fn done, void *arg)
{
    repair_run(c->repair, done, arg);
}

void cluster_stop_repair(cluster_t *c)
{
    accept_stopped(c);
    repair_close(c->repair); /* cluster_close's own call is then a no-op */
}

int cluster_remove_node(cluster_t *c, const char *node_id, errmsg_t *em)
{
    ring_member_t m;
    if (ring_node_id_check(node_id, em) != 0) return ERR_INVALID_ARGUMENT;
    if (ring_members_find(c->members, node_id, &m) != ERR_OK)
        return errmsg_set(em, ERR_NOT_FOUND, "node '%s' is not a member", node_id);
    if (strcmp(node_id, cluster_self_id(c)) == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "a node cannot remove itself");
    if (m.life == RING_LEFT) return 0; /* already removed: the same answer again */
    if (m.state != RING_DOWN)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "node '%s' is %s, not down: only a dead node can be removed", node_id,
                          ring_state_name(m.state));
    int rc = ring_members_remove(c->members, node_id, em);
    if (rc == 0) cluster_view_refresh(c);
    return rc;
}

/* ---------- metrics ---------- */

struct cluster_metrics {
    replicate_stats_t replicate;
    scatter_stats_t scatter;
    repair_counters_t repair;
    uint64_t copies_accepted, copies_refused; /* cluster_accept_copy */
    uint64_t gossip_placement_refused;        /* ring_members_stats_t.refused_placement */
};

int cluster_metrics_take(cluster_t *c, cluster_metrics_t **out)
{
    cluster_metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    replicate_stats(c->replicate, &m->replicate);
    scatter_stats(c->scatter, &m->scatter);
    repair_counters_take(c->repair, &m->repair);
    m->copies_accepted = c->full.accept.accepted;
    m->copies_refused = c->full.accept.refused;
    ring_members_stats_t ms;
    ring_members_stats(c->members, &ms);
    m->gossip_placement_refused = ms.refused_placement;
    *out = m;
    return ERR_OK;
}

void cluster_metrics_register(const cluster_metrics_t *m, storage_t *storage, metrics_registry_t *r)
{
    replicate_stats_register(&m->replicate, storage, r);
    scatter_stats_register(&m->scatter, r);
    repair_counters_register(&m->repair, r);
    metrics_add_u64(r, "flamedb_cluster_copies_accepted_total",
                    "Full repair marks of this node lifted by the operator's word that its copy "
                    "is whole (POST /cluster/accept-copy).",
                    METRICS_COUNTER, &m->copies_accepted);
    metrics_add_u64(r, "flamedb_cluster_copies_refused_total",
                    "Operator's words that this node's copy is whole refused under a mark (a "
                    "removal's gains not streamed in, an interval its repair cleared, the mark "
                    "gone meanwhile, the node stopping).",
                    METRICS_COUNTER, &m->copies_refused);
    metrics_add_u64(r, "flamedb_cluster_gossip_placement_refused_total",
                    "Gossip messages refused because their sender places series by another "
                    "policy (--shards-per-service, --shard-by-profile, --service-shards): such a "
                    "node never joins.",
                    METRICS_COUNTER, &m->gossip_placement_refused);
}

void cluster_metrics_free(cluster_metrics_t *m)
{
    free(m);
}
