/* replicate_cluster.c — wires the replicated write path to the cluster
 * (cluster_int.h): the ops table, options from the settings, and the WRITE /
 * WRITE_ACK handlers (replicate_int.h).
 */
#include "node/cluster/replicate_int.h"

void replicate_options_from_config(replicate_options_t *o, const cluster_config_t *cfg,
                                   const cluster_inputs_t *in)
{
    replicate_options_default(o);
    o->write_timeout_ms = cfg->write_timeout_ms;
    o->hints_max_bytes = cfg->hints_max_bytes;
    o->hints_max_total_bytes = cfg->hints_max_total_bytes != 0
                                   ? (uint64_t)cfg->hints_max_total_bytes
                                   : 4 * (uint64_t)cfg->hints_max_bytes;
    o->hint_replay_interval_ms = cfg->hint_replay_interval_ms;
    o->hint_ack_grace_ms = cfg->hint_ack_grace_ms;
    /* a hint replayed after its profile id left the seen index could count
     * twice: hints expire a tenth before the ids do */
    if (in->seen_retention_seconds > 0) o->hint_ttl_ms = (uint64_t)in->seen_retention_seconds * 900;
    if (cfg->hint_expiry_ms > 0 && cfg->hint_expiry_ms < o->hint_ttl_ms)
        o->hint_ttl_ms = cfg->hint_expiry_ms; /* config checked it against the seen retention */
    o->max_message_bytes = cfg->max_message_bytes;
    if (in->max_inflight_bytes > 0) o->max_inflight_bytes = in->max_inflight_bytes;
    o->shards = in->shards;
    o->max_tree_nodes = in->max_tree_nodes;
    o->inflight = in->inflight;
    if (in->clock != NULL) o->clock = *in->clock;
    o->workq = in->workq;
    o->member_version = cfg->member_version;
}

int replicate_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                               const cluster_inputs_t *in, cluster_t *c, replicate_t **out,
                               errmsg_t *em)
{
    replicate_options_t o;
    replicate_options_from_config(&o, cfg, in);
    cluster_ops_t ops;
    cluster_ops_of(c, &ops);
    int rc = replicate_new(loop, storage, &o, &ops, out, em);
    if (rc != 0) return rc;
    cluster_on(c, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE, replicate_on_write, *out);
    cluster_on(c, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK, replicate_on_ack, *out);
    return 0;
}
