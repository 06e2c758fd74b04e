/* replicate_replica.c — the replica side of a replicated write: the WRITE
 * handler decodes a WriteRequest on the pool into a storage write, checks
 * every series (its id is the hash of its labels, its token is where those
 * labels are placed), stores it and answers WRITE_ACK (replicate_int.h).
 * A write that names replicas missing it (missed_by: down) has them marked
 * for repair here first, as its coordinator marks them (hinted handoff off),
 * or held unread, durably, until its coordinator's word on their hints
 * arrives (hinted handoff on: replicate_witness.c), before it is
 * acknowledged. A notice (replicate_notice.c) carries no series: only
 * such names, of replicas that were slow rather than down; a node set to
 * a member version before notices drops it unanswered, as that release did.
 *
 * The handler takes the decoded message from the cluster (cluster_int.h), so
 * the pool job works on what the dispatcher's cluster_wire_decode_body
 * unpacked and checked: no copy of the body, no second unpack. Retries, replays and duplicates
 * count once: storage skips series whose profile id it has seen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"
#include "node/cluster/replicate_int.h"

typedef struct replica_job {
    workq_job_t work;
    replicate_t *r;
    cluster_msg_t msg; /* taken from the cluster; freed in replica_after */
    size_t len;        /* body bytes, for the in-flight budget */
    char sender[RING_NODE_ID_MAX + 1];
    char tenant[RING_TENANT_MAX + 1];
    uint64_t deadline_ms, request_id;
    uint8_t profile_id[16];
    int status;
    errmsg_t em;
    size_t nseries, written;
    /* the replicas the write names as missing it, marked here too */
    char self[RING_NODE_ID_MAX + 1];
    uint64_t marked_ms[RING_MAX_RF]; /* per missed_by entry: its stamp (0: none) */
    uint32_t held_stored;            /* witnesses put (replicate_witness_store) */
} replica_job_t;

/* What a decoded request owns. */
typedef struct decoded {
    storage_series_write_t *series;
    labels_t **labels;
    calltree_t **trees; /* one per series plus one per span */
    storage_span_tree_t *spans;
    size_t nseries, ntrees;
    symtab_t *symbols;
    alloc_charge_t charge; /* the trees, on ingest-inflight-bytes */
} decoded_t;

static void decoded_free(decoded_t *d)
{
    for (size_t i = 0; i < d->nseries; i++)
        labels_free(d->labels ? d->labels[i] : NULL);
    for (size_t i = 0; i < d->ntrees; i++)
        calltree_free(d->trees[i]);
    free(d->series);
    free(d->labels);
    free(d->trees);
    free(d->spans);
    symtab_free(d->symbols);
    alloc_charge_done(&d->charge);
}

/* Decodes one tree and charges its memory to the in-flight budget (one tree
 * is decoded past it at most: max_tree_nodes bounds it): laid out as it
 * is stored (calltree_decode_new: a node a record, no child looked up, no
 * edge table; its child links made, which the store walks). */
static int decode_tree(decoded_t *d, const ProtobufCBinaryData *b, size_t max_nodes,
                       const calltree_t **out)
{
    calltree_t *t = NULL;
    int rc = calltree_decode_new(b->data, b->len, max_nodes, &t);
    if (rc != 0) return rc;
    d->trees[d->ntrees++] = t;
    *out = t;
    return alloc_charge_add(&d->charge, calltree_mem_bytes(t));
}

/* The reason of a tree the budget refused (retryable: the coordinator hints). */
static int budget_refused(const decoded_t *d, int rc, size_t i, errmsg_t *em)
{
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, rc,
                          "series %zu: the write alone needs more than "
                          "ingest-inflight-bytes (%zu bytes)",
                          i, d->charge.b->limit);
    return errmsg_set(em, ERR_UNAVAILABLE,
                      "server busy: the pushes and replica writes in progress hold "
                      "ingest-inflight-bytes (%zu bytes); retry later",
                      d->charge.b->limit);
}

/* One series: labels, id and token checks, its tree and spans. */
static int decode_series(const replicate_options_t *o, const char *tenant, decoded_t *d,
                         const Flamedb__Cluster__SeriesPart *p, size_t i,
                         storage_span_tree_t *spans, errmsg_t *em)
{
    storage_series_write_t *s = &d->series[i];
    if (labels_decode(p->labels.data, p->labels.len, &d->labels[i]) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "series %zu: bad labels", i);
    if (labels_hash(d->labels[i]) != p->series_id)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "series %zu: id is not its labels' hash", i);
    const char *svc = labels_get(d->labels[i], LABEL_SERVICE_NAME);
    uint64_t token = ring_placement_token(
        tenant, svc ? svc : "",
        ring_series_shard(ring_shard_key(d->labels[i], p->series_id, &o->shards),
                          ring_shards_for(&o->shards, svc)));
    if (token != p->token)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "series %zu: token does not match its labels (do the nodes agree on "
                          "shards-per-service, service-shards and shard-by-profile?)",
                          i);
    s->labels = d->labels[i];
    s->series_id = p->series_id;
    s->token = p->token;
    s->piece = p->piece;
    int rc = decode_tree(d, &p->calltree, o->max_tree_nodes, &s->tree);
    for (size_t k = 0; rc == 0 && k < p->n_spans; k++) {
        spans[k].kind = (uint8_t)p->spans[k]->kind;
        spans[k].id = p->spans[k]->id;
        spans[k].unknown = p->spans[k]->unknown; /* a repair fetch's: no tree */
        if (!spans[k].unknown)
            rc = decode_tree(d, &p->spans[k]->calltree, o->max_tree_nodes, &spans[k].tree);
    }
    s->spans = spans;
    s->nspans = p->n_spans;
    if ((rc == ERR_UNAVAILABLE || rc == ERR_TOO_LARGE) && d->charge.b != NULL)
        return budget_refused(d, rc, i, em);
    if (rc != 0) return errmsg_set(em, rc, "series %zu: call tree: %s", i, err_message(rc));
    return 0;
}

static int decode_request(const replicate_options_t *o, const Flamedb__Cluster__WriteRequest *q,
                          decoded_t *d, storage_profile_write_t *w, errmsg_t *em)
{
    size_t ns = q->n_series, nspans = 0;
    for (size_t i = 0; i < ns; i++)
        nspans += q->series[i]->n_spans;
    d->series = calloc(ns ? ns : 1, sizeof *d->series);
    d->labels = calloc(ns ? ns : 1, sizeof *d->labels);
    d->trees = calloc(ns + nspans + 1, sizeof *d->trees);
    d->spans = calloc(nspans + 1, sizeof *d->spans);
    d->symbols = symtab_new();
    if (!d->series || !d->labels || !d->trees || !d->spans || !d->symbols)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    d->nseries = ns;
    size_t at = 0;
    for (size_t i = 0; i < ns; i++) {
        int rc = decode_series(o, q->tenant, d, q->series[i], i, d->spans + at, em);
        if (rc != 0) return rc;
        at += q->series[i]->n_spans;
    }
    for (size_t i = 0; i < q->n_symbols; i++) {
        const Flamedb__Cluster__Symbol *s = q->symbols[i];
        if (symtab_put(d->symbols, s->id, (const char *)s->name.data, s->name.len,
                       (const char *)s->file.data, s->file.len) != 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    memset(w, 0, sizeof *w);
    w->tenant = q->tenant;
    memcpy(w->profile_id, q->profile_id.data, 16);
    w->time_ns = q->time_ns;
    w->series = d->series;
    w->nseries = ns;
    w->symbols = d->symbols;
    return 0;
}

int replicate_store_request(const replicate_options_t *o, storage_t *s,
                            const Flamedb__Cluster__WriteRequest *q, size_t *written, size_t *bytes,
                            errmsg_t *em)
{
    decoded_t d = {0};
    alloc_charge_init(&d.charge, o->inflight);
    storage_profile_write_t w;
    int rc = decode_request(o, q, &d, &w, em);
    if (rc == 0) rc = storage_write_profile_sized(s, &w, written, bytes, em);
    decoded_free(&d);
    return rc;
}

/* The replicas q names as missing the write (its coordinator knows them
 * down, with no hint kept): marked here, durably, before the write is
 * stored and acknowledged, so the miss is known on every replica that
 * acknowledged it, not only on the coordinator, which may die before its
 * own mark is gossiped (docs/replication.md, "A mark shared with the
 * write"). A hint replay names none. */
static int mark_missed(replica_job_t *j, const Flamedb__Cluster__WriteRequest *q)
{
    if (q->hint_replay || q->coordinator_heartbeat != 0) return 0; /* hinted: witnessed */
    int64_t time_s = q->time_ns > 0 ? (int64_t)(q->time_ns / 1000000000LL) : 0;
    for (size_t i = 0; i < q->n_missed_by && i < RING_MAX_RF; i++) {
        if (strcmp(q->missed_by[i], j->self) == 0 || strcmp(q->missed_by[i], j->sender) == 0)
            continue;
        if (replicate_mark_stamp(j->r, q->missed_by[i], time_s, &j->marked_ms[i]) != 0)
            return errmsg_set(&j->em, ERR_UNAVAILABLE, "cannot store the repair mark of %s",
                              q->missed_by[i]);
    }
    return 0;
}

static void replica_work(workq_job_t *wk)
{
    replica_job_t *j = wk->data;
    const Flamedb__Cluster__WriteRequest *q = (const void *)j->msg.body;
    j->nseries = q->n_series;
    j->status = mark_missed(j, q);
    if (j->status == 0 &&
        replicate_witness_store(j->r, j->self, j->sender, q, &j->held_stored) != 0)
        j->status = errmsg_set(&j->em, ERR_UNAVAILABLE, "cannot store the witness");
    if (j->status == 0 && !q->notice) /* a notice only names replicas */
        j->status = replicate_store_request(&j->r->o, j->r->storage, q, &j->written, NULL, &j->em);
}

/* Loop: the stamps of mark_missed, noted (each once; a stamp whose store
 * failed counts as well: it was stamped). */
static void note_missed(replica_job_t *j)
{
    const Flamedb__Cluster__WriteRequest *q = (const void *)j->msg.body;
    for (size_t i = 0; i < q->n_missed_by && i < RING_MAX_RF; i++)
        if (j->marked_ms[i] != 0)
            replicate_marks_dropped(j->r, q->missed_by[i], j->marked_ms[i], 1);
}

static void send_ack(replicate_t *r, const char *to, const char *tenant, uint64_t request_id,
                     const uint8_t pid[16], uint64_t deadline_ms, int status, const char *reason,
                     size_t written, size_t nseries)
{
    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.tenant = (char *)tenant;
    a.request_id = request_id;
    a.profile_id = (ProtobufCBinaryData){16, (uint8_t *)pid};
    a.status = status;
    a.reason = (char *)(reason ? reason : "");
    a.series_written = (uint32_t)written;
    a.series_duplicate = status == 0 ? (uint32_t)(nseries - written) : 0;
    int rc = r->ops.send(r->ops.ctx, to, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK,
                         deadline_ms, &a.base);
    if (rc != 0) log_debug("replicate", "ack to %s not sent: %s", to, err_message(rc));
}

static void replica_after(workq_job_t *wk, int status)
{
    replica_job_t *j = wk->data;
    replicate_t *r = j->r;
    r->jobs--;
    r->replica_bytes -= j->len;
    note_missed(j); /* whatever the status: every stamp is noted once */
    r->st.hint_witnesses_stored += j->held_stored;
    if (status != 0 && j->status == 0)
        j->status = errmsg_set(&j->em, ERR_UNAVAILABLE, "the replica is stopping");
    if (j->status == 0 && replicate_witness_add(r, j->sender, (const void *)j->msg.body) != 0)
        j->status = errmsg_set(&j->em, ERR_UNAVAILABLE, "out of memory");
    if (j->status == 0)
        r->st.replica_writes++;
    else {
        r->st.replica_failures++;
        log_warn("replicate", "write from %s refused: %s", j->sender,
                 errmsg_text(&j->em, j->status));
    }
    if (!r->closing)
        send_ack(r, j->sender, j->tenant, j->request_id, j->profile_id, j->deadline_ms, j->status,
                 j->status ? errmsg_text(&j->em, j->status) : "", j->written, j->nseries);
    cluster_msg_free(&j->msg);
    free(j);
}

void replicate_on_write(void *ctx, cluster_msg_t *msg)
{
    replicate_t *r = ctx;
    if (r->closing) return; /* the coordinator hints it at its deadline */
    const Flamedb__Cluster__WriteRequest *q = (const Flamedb__Cluster__WriteRequest *)msg->body;
    if (q->notice && r->o.member_version < CLUSTER_MEMBER_V_NOTICE) {
        /* set to a release before notices: refused unanswered, as it did */
        log_debug("replicate", "notice from %s refused: cluster-member-version %u",
                  msg->env->sender_id, r->o.member_version);
        return;
    }
    const ProtobufCBinaryData *b = &msg->env->body;
    replica_job_t *j = NULL;
    const char *why = "the replica has too many writes in flight";
    if (r->replica_bytes + b->len <= r->o.max_inflight_bytes) {
        j = calloc(1, sizeof *j);
        why = "out of memory";
    }
    if (j == NULL) {
        r->st.replica_failures++;
        send_ack(r, msg->env->sender_id, q->tenant, q->request_id, q->profile_id.data,
                 q->deadline_unix_ms, ERR_UNAVAILABLE, why, 0, 0);
        return;
    }
    j->len = b->len;
    j->r = r;
    snprintf(j->sender, sizeof j->sender, "%s", msg->env->sender_id);
    snprintf(j->tenant, sizeof j->tenant, "%s", q->tenant);
    j->deadline_ms = q->deadline_unix_ms;
    j->request_id = q->request_id;
    memcpy(j->profile_id, q->profile_id.data, 16);
    if (q->n_missed_by > 0) {
        const cluster_view_t *v = r->ops.view_acquire(r->ops.ctx);
        if (v != NULL && v->self_id != NULL) snprintf(j->self, sizeof j->self, "%s", v->self_id);
        if (v != NULL) r->ops.view_release(v);
    }
    j->work.data = j;
    j->msg = *msg; /* taken before the job can run: the cluster must not free it */
    memset(msg, 0, sizeof *msg);
    if (workq_submit(r->workq, WORKQ_WRITE, &j->work, replica_work, replica_after) != 0) {
        send_ack(r, j->sender, j->tenant, j->request_id, j->profile_id, j->deadline_ms,
                 ERR_UNAVAILABLE, "cannot queue the write", 0, 0);
        cluster_msg_free(&j->msg);
        free(j);
        return;
    }
    r->jobs++;
    r->replica_bytes += j->len;
}
