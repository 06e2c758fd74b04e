/* replicate_int.h — the replicated write path and hinted handoff (internal
 * to node/cluster/; docs/replication.md).
 *
 * Owns, for every accepted profile: the write plan of each series
 * (ring_plan_write over the cluster view), the grouping of series by replica
 * into one WriteRequest per remote node (encoded trees, spans and only the
 * symbols those trees reference), the local replica's direct write, the wait
 * for write-quorum acknowledgements with a deadline, and the hints for
 * replicas that were unreachable or did not answer in time. On the replica
 * side it owns the WRITE handler (decode, verify, store, WRITE_ACK). It also
 * owns the replay of stored hints to nodes that are back, and keeps the
 * cluster told which nodes it holds hints for (so they are not read from
 * until the hints are delivered). Before a 200 it names the replicas
 * hinted after the grace to the replicas that acknowledged (notices), and
 * it keeps the replicas other coordinators' writes name as missing them
 * (witnesses) in memory and in storage (the `meta` records it owns).
 *
 * The cluster is reached only through cluster_ops_t (the module wires it to
 * cluster_int.h; tests wire several replicate_t to each other in one
 * process). Writes are idempotent by profile id (storage's seen index), so a
 * duplicate, a retry, a late ack or a replayed hint counts once.
 *
 * Threads: replicate_prepare() and replicate_write_free() run on any thread
 * (a thread-pool job); everything else on the loop thread. Ownership:
 * replicate_new() returns a handle the node owns (replicate_close() once,
 * then replicate_free() after the close callback ran).
 */
#ifndef FLAMEDB_NODE_CLUSTER_REPLICATE_INT_H
#define FLAMEDB_NODE_CLUSTER_REPLICATE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/workq.h"
#include "node/cluster/cluster_int.h"
#include "ring/ring.h"
#include "storage/storage.h"

typedef struct replicate_write replicate_write_t;

typedef struct replicate_options {
    uint64_t write_timeout_ms;        /* deadline of a replicated write (then 503 + hints) */
    uint64_t hints_max_bytes;         /* stored hints per target; 0 = none kept (off) */
    uint64_t hints_max_total_bytes;   /* stored hints over all targets; 0 = no such bound */
    uint64_t hint_replay_interval_ms; /* how often stored hints are offered to their targets */
    uint64_t hint_ack_grace_ms;   /* quorum met: wait this long for the other acks before hinting */
    uint64_t hint_ttl_ms;         /* hints older than this are dropped (below the seen retention) */
    size_t max_message_bytes;     /* largest WriteRequest sent (cluster max-message-bytes) */
    size_t max_inflight_bytes;    /* packed writes held at once (coordinator and replica) */
    uint32_t max_inflight_writes; /* replicated writes in flight; more get 503 */
    uint32_t replay_batch;        /* hints in flight per target while replaying */
    ring_shard_policy_t shards;   /* to check a received series' token */
    size_t max_tree_nodes;        /* bounds trees decoded on the replica side */
    alloc_budget_t *inflight;     /* ingest-inflight-bytes: decoded trees (borrowed); NULL: none */
    clock_source_t clock;         /* deadlines and hint times (wall clock) */
    workq_t *workq;               /* the node's pool lanes (borrowed); NULL: a private one */
    uint32_t member_version;      /* --cluster-member-version: below CLUSTER_MEMBER_V_NOTICE
                                   * neither sends nor takes notices, as an older release */
} replicate_options_t;

/* Defaults: 5 s timeout, 1 GiB of hints per target, replay every 1 s, a
 * 20 ms ack grace, hints live 6 days, 64 MiB messages, 256 MiB and 4096 writes in flight, 32 hints
 * per target in flight, RING_DEFAULT_SHARDS_PER_SERVICE, 1,048,576 nodes. */
void replicate_options_default(replicate_options_t *o);

/* Publishes the hint targets already stored (from a previous run) and starts
 * the replay timer. The storage and ops are borrowed for the handle's life. */
int replicate_new(uv_loop_t *loop, storage_t *storage, const replicate_options_t *o,
                  const cluster_ops_t *ops, replicate_t **out, errmsg_t *em);

/* Stops the timers. Writes still waiting for acks get their hints stored
 * now (synchronously: the node is stopping), so nothing acknowledged is left
 * only in memory. done(arg) runs on the loop once the handles are closed. */
void replicate_close(replicate_t *r, void (*done)(void *arg), void *arg);
void replicate_free(replicate_t *r);

/* Options from the node's settings (write-timeout, hints-max-bytes,
 * hint-replay-interval, max-message-bytes, seen retention, half of
 * max-buffered-bytes in flight, the ingest shard and tree limits). */
void replicate_options_from_config(replicate_options_t *o, const cluster_config_t *cfg,
                                   const cluster_inputs_t *in);

/* replicate_new() wired to c (ops, options from cfg) with the WRITE and
 * WRITE_ACK handlers registered; call before cluster_start(). */
int replicate_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                               const cluster_inputs_t *in, cluster_t *c, replicate_t **out,
                               errmsg_t *em);

/* ---------------------------------------------------------------- writes */

/* Loop thread, before the parsing job: 0, or ERR_UNAVAILABLE (503 with
 * Retry-After) when max_inflight_writes / max_inflight_bytes are reached. */
int replicate_admit(replicate_t *r, errmsg_t *em);

/* Any thread (the ingest job, after ingest_parse): plans every series with
 * view (retained by the write until it is freed), checks that each series
 * has at least its write quorum of reachable natural replicas
 * (ERR_UNAVAILABLE naming the series and counts otherwise: nothing is
 * written), writes the local replica's series into storage, packs one
 * WriteRequest per remote replica (ERR_TOO_LARGE over max_message_bytes) and
 * stores the hints of unreachable ones. w is borrowed for the call only.
 * *out is owned by the caller: hand it to replicate_start() or free it with
 * replicate_write_free(). *local_written (may be NULL) gets the number of
 * series the local replica stored (not duplicates). */
int replicate_prepare(replicate_t *r, const cluster_view_t *view, const storage_profile_write_t *w,
                      replicate_write_t **out, size_t *local_written, errmsg_t *em);
void replicate_write_free(replicate_write_t *rw);
/* Series of rw this node holds as a replica (written or already seen). */
size_t replicate_write_local_series(const replicate_write_t *rw);

/* Called once per write on the loop thread: rc 0 when every series has its
 * write quorum of acknowledgements, else ERR_UNAVAILABLE with the reason
 * (how many replicas acknowledged, which did not) in em (borrowed). */
typedef void (*cluster_write_done_fn)(void *ctx, int rc, const errmsg_t *em);

/* Loop thread: takes ownership of rw, sends the remote WriteRequests and
 * waits. done may run before this returns (a cluster of one, or when no
 * remote replica is needed). done(0) runs only once every replica that has
 * not acknowledged has a durable hint (or repair mark): after the quorum is
 * met the write waits up to hint_ack_grace_ms for the other acks, then
 * stores the missing ones' hints on the pool and answers. After done, the
 * write lives on until every replica acknowledged (a late ack deletes the
 * hint stored for it) or the deadline passed. */
void replicate_start(replicate_t *r, replicate_write_t *rw, cluster_write_done_fn done, void *ctx);

/* ---------------------------------------------------------------- messages */

/* Handlers for cluster_on(): ctx is the replicate_t. replicate_on_write takes
 * the message (the pool job stores what it decoded, no second unpack);
 * replicate_on_ack only borrows it. */
void replicate_on_write(void *ctx, cluster_msg_t *msg);
void replicate_on_ack(void *ctx, cluster_msg_t *msg);

/* ---------------------------------------------------------------- metrics */

#define REPLICATE_COUNTERS(X)                                                                      \
    X(writes, "flamedb_replicated_writes_total", "Profiles written through the replicated path.")  \
    X(write_acks, "flamedb_replica_acks_total",                                                    \
      "Replica acknowledgements received (the local replica included).")                           \
    X(write_nacks, "flamedb_replica_failures_total",                                               \
      "Replicas that refused a write, failed it, or did not answer by the deadline.")              \
    X(quorum_failures, "flamedb_write_quorum_failures_total",                                      \
      "Writes answered 503: some series lacked its write quorum.")                                 \
    X(unavailable, "flamedb_write_unavailable_total",                                              \
      "Writes refused before writing: too few reachable replicas or too many in flight.")          \
    X(hints_stored, "flamedb_hints_stored_total",                                                  \
      "Hints stored for replicas that missed a write.")                                            \
    X(hints_before_answer, "flamedb_hints_stored_before_ack_total",                                \
      "Hints stored before a push was answered 200, for replicas that had not acknowledged "       \
      "within hint-ack-grace (counted in flamedb_hints_stored_total too).")                        \
    X(grace_skipped, "flamedb_hint_ack_grace_skipped_total",                                       \
      "Replicas hinted (or marked for repair) as soon as a push had its quorum, without waiting "  \
      "hint-ack-grace: they let the grace run out on an earlier push and have not acknowledged "   \
      "a write within it since.")                                                                  \
    X(hints_cancelled, "flamedb_hints_cancelled_total",                                            \
      "Hints stored before the answer and deleted again because the replica's ack came later.")    \
    X(hints_replayed, "flamedb_hints_replayed_total",                                              \
      "Hints delivered to their target and deleted.")                                              \
    X(hints_dropped_full, "flamedb_hints_dropped_full_total",                                      \
      "Hints not stored because their target was over hints-max-bytes, all targets over "          \
      "hints-max-total-bytes (or the store failed); "                                              \
      "their target is marked for repair.")                                                        \
    X(hints_dropped_expired, "flamedb_hints_dropped_expired_total",                                \
      "Hints dropped undelivered because they outlived hint-expiry, or could not be read; "        \
      "their target is marked for repair first.")                                                  \
    X(hints_dropped_left, "flamedb_hints_dropped_removed_total",                                   \
      "Hints dropped because their target was removed or decommissioned (its ranges moved).")      \
    X(misses_acked_late, "flamedb_repair_misses_acked_late_total",                                 \
      "Writes a replica missed (hinted handoff off: a repair mark) whose acknowledgement came "    \
      "after all, before the deadline: the miss no longer counts.")                                \
    X(marks_lifted_late_ack, "flamedb_repair_marks_lifted_late_ack_total",                         \
      "Repair marks lifted by a late acknowledgement (the replica stored every write it was "      \
      "marked for) instead of by a repair pass.")                                                  \
    X(hint_witnesses, "flamedb_hint_witnesses_total",                                              \
      "Replicas a stored write named as missing it, hinted by its coordinator: held unread here "  \
      "until the coordinator's own word on them arrives.")                                         \
    X(hint_witnesses_marked, "flamedb_hint_witnesses_marked_total",                                \
      "Such holds turned into repair marks of this node: the coordinator was seen down or gone "   \
      "before its word arrived.")                                                                  \
    X(notices, "flamedb_slow_replica_notices_total",                                               \
      "Notices sent before a push was answered 200, naming to a replica that acknowledged it the " \
      "replicas hinted (or marked) after hint-ack-grace ran out.")                                 \
    X(notices_unanswered, "flamedb_slow_replica_notices_unanswered_total",                         \
      "Pushes answered 200 although no replica acknowledged their notice (refused, or no answer "  \
      "by write-timeout): the slow replica's hint then lives on the coordinator only.")            \
    X(notices_skipped, "flamedb_slow_replica_notices_skipped_total",                               \
      "Replicas that acknowledged a push with a slow replica and were sent no notice: their "      \
      "member entry does not advertise notices (an older release); the hint stays on the "         \
      "coordinator only until gossiped, as before notices.")                                       \
    X(hint_witnesses_stored, "flamedb_hint_witnesses_stored_total",                                \
      "Witnesses stored durably (new, an older profile time or a later coordinator beat).")        \
    X(replica_writes, "flamedb_replica_writes_total", "WRITE messages stored as a replica.")       \
    X(replica_failures, "flamedb_replica_write_failures_total",                                    \
      "WRITE messages refused or failed as a replica.")

typedef struct replicate_stats {
#define REPLICATE_FIELD(name, metric, help) uint64_t name;
    REPLICATE_COUNTERS(REPLICATE_FIELD)
#undef REPLICATE_FIELD
    uint64_t inflight_writes, inflight_bytes; /* gauges */
    uint64_t marked;                          /* gauge: replicas marked short */
    uint64_t replay_inflight;
} replicate_stats_t;

void replicate_stats(const replicate_t *r, replicate_stats_t *out);

/* Registers st's counters and gauges, and the per-target gauges of stored
 * hints (flamedb_hints_pending{target}, flamedb_hints_pending_bytes{target},
 * read from storage when rendered), on r. st and storage are borrowed until
 * r is rendered. */
void replicate_stats_register(const replicate_stats_t *st, storage_t *storage,
                              metrics_registry_t *r);

/* Internals of the write path, shared by replicate*.c and their unit tests.
 *
 * A replicate_write_t is one accepted profile on its way to its replicas:
 * the series and their quorum accounting, one target per replica node, and
 * an arena that owns every byte the packed WriteRequests point at. It is
 * built on a pool thread (replicate_pack.c), then lives on the loop thread
 * (replicate.c) until every target acknowledged, failed or got a hint.
 *
 * Threads: a write is touched by one thread at a time (built on the pool,
 * handed to the loop); struct replicate is the loop thread's, except the
 * request id counter (atomic) and the read-only options and storage.
 */
#include <stdatomic.h>

#include "common/arena.h"
#include "common/list.h"

/* ---------------------------------------------------------------- writes */

enum target_state {
    TS_PENDING = 0, /* sent (or about to be), waiting for the ack */
    TS_ACKED,       /* stored (the local write, or a WRITE_ACK with status 0) */
    TS_NEEDS_HINT,  /* no ack: a hint is stored when the write finishes */
    TS_HINTED,      /* a hint was stored (or dropped over the bound) */
    TS_REFUSED,     /* the replica refused the write itself: a hint would not help */
};

/* One replica node of a write and the series it holds. */
typedef struct rtarget {
    char id[RING_NODE_ID_MAX + 1];
    int self;         /* this node: written directly */
    int reachable;    /* not marked down in the view */
    uint32_t *series; /* indices of its series */
    uint8_t *natural; /* per entry of series: a natural replica (counts for quorum) */
    uint32_t nseries, cap;
    enum target_state state;
    int status;                         /* the error that made it fail, if any */
    char why[96];                       /* short reason for the 503 text */
    Flamedb__Cluster__WriteRequest req; /* remote targets: the packed request */
    struct pending *pend;               /* while TS_PENDING on the loop */
    int dropped;                        /* its hint was not kept: marked for repair */
    uint64_t dropped_ms;
    int miss_open;     /* counted in its mark's open misses: its late ack may still cancel it */
    int prehinted;     /* given a hint before the answer (set on the loop before the job) */
    uint64_t hint_seq; /* its stored hint (0: none), set by the job that stored it */
} rtarget_t;

struct replicate_write {
    replicate_t *r;
    const cluster_view_t *view; /* retained until the write is freed */
    arena_t arena;
    char tenant[RING_TENANT_MAX + 1];
    uint8_t profile_id[16];
    int64_t time_ns;
    uint64_t deadline_ms; /* unix ms */
    uint32_t nseries;
    uint32_t *acks, *quorum, *open; /* per series: acks, needed, natural targets unresolved */
    uint32_t *nnatural;             /* per series: natural replicas */
    uint32_t unmet;                 /* series with acks < quorum */
    rtarget_t *t;
    uint32_t nt, tcap;
    size_t bytes;
    /* what the pool did, folded into the stats on the loop */
    uint32_t hints_stored, hints_dropped;
    /* set on the loop before the hints are stored once the write ended: its
     * quorum was lost, so the push is answered with an error and nothing
     * of it was promised (a miss of it needs no whole copy: replicate_past.c) */
    int failed;
    size_t local_written;
    /* loop side */
    cluster_write_done_fn done;
    void *done_ctx;
    int responded;
    uint32_t outstanding; /* targets TS_PENDING */
    list_node_t link;     /* in replicate.writes */
    /* before the answer (replicate_preack.c) */
    uint64_t grace_end_ms; /* unix ms: then the targets still pending get hints */
    int in_grace, grace_over;
    int preack_busy; /* the pool stores its hints: neither answered nor freed meanwhile */
    /* the replicas hinted before the answer, named to those that acknowledged
     * (replicate_notice.c): answered once one of them stored the notice */
    int notice_done, notice_wait;
    uint32_t notices_out;  /* notices waiting for their ack: not freed meanwhile */
    uint32_t hints_before; /* stored by that job */
    list_node_t glink;     /* in replicate.graces while in_grace */
};

/* Target index of node id in rw, adding it when absent (-1: out of memory). */
int replicate_target_of(replicate_write_t *rw, const char *id, const cluster_view_t *v);
/* Adds series i to target ti. */
int replicate_target_add(replicate_write_t *rw, uint32_t ti, uint32_t series, int natural);

/* Quorum accounting (replicate_pack.c; pure, so unit tests drive it).
 * Sizes the per-series arrays for nseries series. */
int replicate_write_init_series(replicate_write_t *rw, uint32_t nseries);
/* After planning: counts the natural replicas of every series (open). */
void replicate_quorum_begin(replicate_write_t *rw);
/* Target ti acknowledged / failed (state: TS_NEEDS_HINT, TS_HINTED or
 * TS_REFUSED). Each call resolves the target once. */
void replicate_quorum_ack(replicate_write_t *rw, uint32_t ti);
void replicate_quorum_fail(replicate_write_t *rw, uint32_t ti, enum target_state state, int status,
                           const char *why);
/* 1 when every series has its quorum of acks. */
int replicate_quorum_met(const replicate_write_t *rw);
/* 1 when some series can no longer reach its quorum. */
int replicate_quorum_lost(const replicate_write_t *rw);
/* The 503 reason: how many replicas acknowledged, which did not and why. */
void replicate_quorum_reason(const replicate_write_t *rw, errmsg_t *em);
/* The error of a lost quorum: ERR_LIMIT when every replica that did not
 * acknowledge refused with a limit (tenant-max-series: a retry would fail
 * the same way), else ERR_UNAVAILABLE. */
int replicate_quorum_status(const replicate_write_t *rw);

/* Packs target ti's WriteRequest as a HintRecord and stores it (pool
 * thread). Counts into rw->hints_stored / hints_dropped. */
int replicate_store_hint(replicate_write_t *rw, uint32_t ti, errmsg_t *em);
/* The WriteRequest a stored hint carries (zstd-compressed or as is); NULL if
 * it does not decode or would decompress past max_bytes. Caller frees it
 * (flamedb__cluster__write_request__free_unpacked). */
Flamedb__Cluster__WriteRequest *replicate_hint_request(const Flamedb__Cluster__HintRecord *h,
                                                       size_t max_bytes);

/* ---------------------------------------------------------------- loop side */

enum pending_kind { PEND_WRITE, PEND_REPLAY, PEND_NOTICE };

/* A request waiting for its WRITE_ACK, in the id table and the deadline
 * list (FIFO: every request has the same timeout). */
typedef struct pending {
    uint64_t request_id;
    uint64_t sent_ms; /* unix ms */
    uint64_t deadline_ms;
    enum pending_kind kind;
    char target[RING_NODE_ID_MAX + 1];
    replicate_write_t *rw; /* PEND_WRITE, PEND_NOTICE */
    uint32_t ti;
    size_t rti; /* PEND_REPLAY: index into replicate.rt */
    uint64_t seq;
    Flamedb__Cluster__WriteRequest *msg; /* PEND_REPLAY: unpacked from the hint */
    struct pending *hnext;
    list_node_t dl; /* in replicate.deadlines, by deadline */
} pending_t;

#define REPLICATE_BUCKETS 1024

/* A target whose stored hints are being replayed. */
typedef struct replay_target {
    char id[RING_NODE_ID_MAX + 1];
    int busy;          /* a batch is being read, sent or acknowledged */
    uint32_t inflight; /* requests of the batch not yet resolved */
    uint32_t acked, failed;
    int expiring;           /* the batch only drops expired hints (the target unreachable) */
    uint64_t expire_due_ms; /* unreachable: when its oldest hint kept expires (0: look) */
} replay_target_t;

/* A replica that let a write's grace run out and has not acknowledged a
 * write within the grace since (replicate_preack.c): writes hint it before
 * the answer without waiting the grace for it. */
typedef struct replicate_slow {
    char id[RING_NODE_ID_MAX + 1];
} replicate_slow_t;

/* A replica that missed writes no hint will deliver (replicate_marks.c).
 * A miss is open while the write that missed it still waits for its ack
 * (hinted handoff off, the replica still reachable): its late ack cancels
 * it. Every other miss (the deadline passed, refused, a hint over the
 * bound, a rejoin, a mark read back at start) is lifted only by a pass. */
typedef struct replicate_mark {
    char id[RING_NODE_ID_MAX + 1];
    uint64_t lost_ms;     /* the latest miss only a pass lifts (unix ms) */
    uint32_t open;        /* open misses: writes in flight, so bounded like them */
    uint64_t open_ms;     /* the latest open miss (unix ms) */
    uint64_t repaired_ms; /* start of its latest complete repair pass it reported */
    uint64_t run_sent_ms; /* when it was last asked to run one */
    int lift_unstored;    /* lifted by late acks while drops were being stamped: store later */
    int past_said;        /* logged that a pass could not lift it (older writes) */
} replicate_mark_t;

/* The oldest profile time of the writes a replica's current mark holds
 * (replicate_past.c), under replicate_t.past_mu: misses are stamped on the
 * pool, the marks live on the loop. */
typedef struct replicate_past {
    char id[RING_NODE_ID_MAX + 1];
    int64_t oldest_s;     /* oldest profile time (unix s) of the misses folded in */
    uint64_t latest_ms;   /* the latest miss folded in (unix ms) */
    uint64_t repaired_ms; /* the mark's lift as the loop last set it */
} replicate_past_t;

/* A replica that a write stored here named as missing it, whose
 * coordinator keeps a hint for it (replicate_witness.c): not read from
 * until this node holds the coordinator's member entry at or past the beat
 * the write carried, or marked here if the coordinator is seen down first. */
typedef struct replicate_witness {
    char target[RING_NODE_ID_MAX + 1];
    char coord[RING_NODE_ID_MAX + 1];
    uint64_t incarnation, heartbeat; /* the latest write's: the coordinator's word covers it */
    int64_t oldest_s;                /* oldest profile time of the writes held */
    int marking;                     /* its mark is being stored on the pool */
} replicate_witness_t;

struct replicate {
    uv_loop_t *loop;
    workq_t *workq;     /* o.workq, or own_workq */
    workq_t *own_workq; /* when no workq was given */
    storage_t *storage;
    replicate_options_t o;
    cluster_ops_t ops;
    uv_timer_t deadline_timer, replay_timer, grace_timer;
    pending_t *buckets[REPLICATE_BUCKETS];
    list_t deadlines;       /* pending acks, oldest deadline first (deadlines only grow) */
    list_t writes;          /* writes started and not freed */
    list_t graces;          /* writes with their quorum, waiting for the other acks (FIFO) */
    uint64_t replica_bytes; /* WRITE messages being stored as a replica */
    uint64_t prep_bytes;    /* writes admitted, not yet started */
    _Atomic uint64_t next_request_id;
    replicate_stats_t st;
    replay_target_t *rt;
    size_t nrt, rtcap;
    uint64_t hint_sig; /* signature of the advertised hint targets */
    replicate_mark_t *marks;
    size_t nmarks, marks_cap;
    replicate_witness_t *wit; /* hints of other coordinators witnessed here */
    uv_mutex_t wit_mu;        /* serializes the stored witnesses' merge (pool) */
    size_t nwit, wit_cap;
    replicate_slow_t *slow; /* replicas whose last ack came after the grace */
    size_t nslow, slow_cap;
    uint32_t jobs; /* pool jobs not yet finished */
    /* A mark lifted by late acks is stored as covering every miss stamped
     * up to its latest one (replicate_marks.c). Drops stamped (any thread)
     * and not yet noted on the loop: a lift is stored only when there are
     * none, and every later stamp is above drop_floor_ms, the latest miss a
     * stored lift covers, so no miss it does not cover reads as covered. */
    _Atomic uint64_t drops_unnoted, drop_floor_ms;
    uv_mutex_t past_mu; /* guards past (replicate_past.c) */
    replicate_past_t *past;
    size_t npast, past_cap;
    int closing, closed_handles;
    void (*close_done)(void *arg);
    void *close_arg;
};

uint64_t replicate_now_ms(const replicate_t *r);
uint64_t replicate_request_id(replicate_t *r);

/* Pending table (replicate.c). */
void replicate_pending_add(replicate_t *r, pending_t *p);
/* Removes and returns the request, or NULL when absent or (sender not NULL)
 * sent to another node. */
pending_t *replicate_pending_take(replicate_t *r, uint64_t request_id, const char *sender);
void replicate_arm_deadline(replicate_t *r);

/* Answers rw if its outcome is known and, when every target is resolved and
 * no job holds it, stores its remaining hints and frees it (replicate.c). */
void replicate_write_settle(replicate_t *r, replicate_write_t *rw);

/* Before the answer (replicate_preack.c), loop thread. Called once rw has
 * its quorum: 0 when every replica that has not acknowledged already has a
 * hint or mark (answer now); 1 when the answer waits (for the grace, or for
 * the pool job storing hints: replicate_write_settle runs after it). */
int replicate_preack(replicate_t *r, replicate_write_t *rw);
/* Whether t is a natural replica of some series of its write. */
int replicate_target_natural(const rtarget_t *t);
/* Takes rw off the grace list (answered, or freed). */
void replicate_preack_unlink(replicate_t *r, replicate_write_t *rw);
/* Target ti of rw, given a hint before the answer, acknowledged or refused
 * later: its hint is deleted (unless the job storing it still runs; then
 * the job's end does it). */
void replicate_preack_resolved(replicate_t *r, replicate_write_t *rw, uint32_t ti);
/* Target id acknowledged a write latency_ms after it was sent: within the
 * grace, it is no longer held slow. */
void replicate_preack_acked(replicate_t *r, const char *id, uint64_t latency_ms);
/* Arms the grace timer at the earliest grace end (tests move the clock). */
void replicate_arm_grace(replicate_t *r);
void replicate_grace_timer_cb(uv_timer_t *t);

/* Notices (replicate_notice.c), loop thread. Called when every replica
 * that has not acknowledged rw has a durable hint or mark: 0 when rw may be
 * answered now (no replica was hinted before the answer, none acknowledged
 * but this node, or the notices are resolved); 1 when the answer waits for
 * the first acknowledged notice (replicate_write_settle runs then). */
int replicate_notice_send(replicate_t *r, replicate_write_t *rw);
/* p (PEND_NOTICE, taken from the table: freed here) was acknowledged (ok)
 * or refused / timed out. */
void replicate_notice_resolved(replicate_t *r, pending_t *p, int ok);

/* Hints (replicate_hints.c). */
void replicate_publish_hint_targets(replicate_t *r);

/* A job deleting one stored hint on the pool: a replayed hint its target
 * acknowledged (rti: its replay target) or one stored before the answer
 * that a late ack made needless. The submitter allocates it; its after
 * callback frees it. */
typedef struct replicate_hint_delete {
    workq_job_t work;
    replicate_t *r;
    size_t rti;
    char target[RING_NODE_ID_MAX + 1];
    uint64_t seq;
    int rc;
} replicate_hint_delete_t;

/* Pool: deletes the job's hint and keeps the outcome in rc. */
void replicate_hint_delete_work(workq_job_t *w);
void replicate_replay_tick(uv_timer_t *t);
void replicate_replay_resolved(replicate_t *r, pending_t *p, int ok);
/* Stores the hints of rw's TS_NEEDS_HINT targets on the pool, then frees rw. */
void replicate_finish_hints(replicate_t *r, replicate_write_t *rw);

/* Repair marks (replicate_marks.c), loop thread. */
/* 1 while m's replica must not serve reads. */
int replicate_mark_active(const replicate_mark_t *m, uint64_t slack_ms);
/* Reads the stored marks (at open). */
void replicate_marks_load(replicate_t *r);
/* Marks the targets of rw whose hint was dropped (each once); republishes
 * if any. A target still waiting for its ack with hinted handoff off is an
 * open miss (miss_open); one whose ack already came is not marked. */
void replicate_marks_note(replicate_t *r, replicate_write_t *rw);
/* Target t, an open miss, got its answer: acked (status 0), its miss is
 * cancelled and the mark lifted when nothing else holds it; otherwise the
 * miss stays until a pass. No-op when t is not an open miss. */
void replicate_marks_resolved(replicate_t *r, rtarget_t *t, int acked);
/* Any thread (a pool job): id missed a write of a profile at time_s (< 0:
 * a failed push, whose miss a pass alone may lift) that no hint will
 * deliver. Stamps the miss (*ms), stores the profile time and the mark
 * durably, and returns 0 or the storage error (logged). Every stamp is
 * noted once on the loop: by replicate_marks_note for a write's target,
 * else by replicate_marks_dropped. */
int replicate_mark_stamp(replicate_t *r, const char *id, int64_t time_s, uint64_t *ms);
/* Loop thread: count stamps for id, the latest at ms, are marked (a miss
 * only a pass lifts) and republished. */
void replicate_marks_dropped(replicate_t *r, const char *id, uint64_t ms, uint32_t count);
/* Ids (borrowed until the marks change) of the marked replicas, at most cap. */
size_t replicate_marks_active(const replicate_t *r, const char **ids, size_t cap);
/* id reported a complete repair pass that started at started_ms and
 * compared profile times from from_s on; whole_ms: when the full repair it
 * last finished was set (0: none). The mark is lifted when the pass
 * started after its latest miss (plus the slack) and either compared back
 * to the oldest profile time the mark holds or the node restored every
 * range whole after that miss. */
void replicate_marks_repaired(replicate_t *r, const char *id, uint64_t started_ms, int64_t from_s,
                              uint64_t whole_ms);
/* cluster_t.on_rejoin: a member that had left is one again (ctx: the
 * replicate_t); it is marked short until repaired. */
void replicate_marks_rejoined(void *ctx, const char *id);
/* Asks the reachable marked replicas of view v to run a repair pass
 * (naming the oldest profile time each one's mark holds). */
void replicate_marks_tick(replicate_t *r, const cluster_view_t *v);

/* Hints witnessed by the write (replicate_witness.c), loop thread.
 * Coordinator: with hinted handoff on, sets this node's (incarnation,
 * heartbeat) on the requests of rw that name missed replicas (after the
 * hints were published: the entry at that beat lists them). */
void replicate_witness_sign(replicate_t *r, replicate_write_t *rw);
/* Replica: q from coord, stored here, names hinted replicas missing it:
 * each ring node among them other than this node and coord is held unread
 * (listed in this node's hints_for) until coord's word on it arrives.
 * 0 or ERR_NOMEM. */
int replicate_witness_add(replicate_t *r, const char *coord,
                          const Flamedb__Cluster__WriteRequest *q);
/* Pool: the holds q names, stored durably (merged with the stored ones:
 * the oldest profile time, the latest beat) before the write is
 * acknowledged; self is this node's id; *stored counts the puts. 0 or the
 * storage error (logged). */
int replicate_witness_store(replicate_t *r, const char *self, const char *coord,
                            const Flamedb__Cluster__WriteRequest *q, uint32_t *stored);
/* At open: the stored holds, held again until their coordinator's word
 * arrives (or marked when it is seen down). 0, or an error (logged). */
int replicate_witness_load(replicate_t *r);
/* Ids of the replicas held so (borrowed until the witnesses change), at
 * most cap. */
size_t replicate_witness_targets(const replicate_t *r, const char **ids, size_t cap);
/* Ends the witnesses whose coordinator's word arrived; marks for repair
 * (on the pool) those whose coordinator is down or gone. */
void replicate_witness_tick(replicate_t *r);

/* replicate_past.c. 0, or an error (the lock could not be made). */
int replicate_past_init(replicate_t *r);
void replicate_past_free(replicate_t *r);
/* Any thread: id missed (at miss_ms) a write of a profile at time_s:
 * folded into its mark's oldest time, which is stored before the caller
 * stores the miss (logged when it cannot be). */
void replicate_past_drop(replicate_t *r, const char *id, int64_t time_s, uint64_t miss_ms);
/* At open: id's stored oldest time. */
void replicate_past_loaded(replicate_t *r, const char *id, int64_t oldest_s);
/* Loop: id's mark holds misses up to lost_ms (at open) and was lifted up
 * to repaired_ms (0s: unchanged); an entry whose misses the lift covers
 * starts afresh with the next miss. A mark read back with no stored time
 * takes the oldest (it needs a whole copy). */
void replicate_past_marks(replicate_t *r, const char *id, uint64_t lost_ms, uint64_t repaired_ms);
/* Loop: 1, with the oldest profile time and the latest miss of id's
 * current mark, when it holds misses its last lift did not cover. */
int replicate_past_oldest(replicate_t *r, const char *id, int64_t *oldest_s, uint64_t *latest_ms);

#endif
