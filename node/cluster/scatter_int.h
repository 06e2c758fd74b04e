/* scatter_int.h — scatter-gather queries (internal to node/cluster/;
 * docs/scatter-gather.md).
 *
 * Owns, for every flame graph and label query a node coordinates: the read
 * plan (ring_plan_read over the cluster view: only the shard tokens of the
 * service a selector pins with `=`, else the whole ring), one QueryRequest
 * per remote node carrying exactly the ranges it answers for, the local
 * node's share run on the thread pool, the collection of PartialResults by
 * request id, their merge on the thread pool (one merge job at a time per
 * query, so the gather needs no lock), the re-planning of a node's ranges
 * once over the remaining live replicas when it fails or is slow (no answer
 * by half the query timeout), and the final truncation and encoding
 * (query/query.h gather), marked partial with what is missing. On the
 * replica side it owns the QUERY handler: the partial query on the pool over
 * the given ranges, answered with PARTIAL (or refused with a reason when it
 * would not fit in a message).
 *
 * Every range is merged from exactly one answer: a late answer from a node
 * whose ranges were re-planned is dropped, so nothing counts twice.
 *
 * The cluster is reached only through cluster_ops_t (cluster_ops_of wires it
 * to the cluster; tests wire several scatter_t to
 * each other in one process).
 *
 * Threads: every function on the loop thread. Ownership: scatter_new()
 * returns a handle the node owns; scatter_close() once (it answers the
 * queries still in flight), then scatter_free() after the loop has run out
 * of work. Query parameters are borrowed for the scatter_query() call only.
 */
#ifndef FLAMEDB_NODE_CLUSTER_SCATTER_INT_H
#define FLAMEDB_NODE_CLUSTER_SCATTER_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/list.h"
#include "common/metrics.h"
#include "common/workq.h"
#include "node/cluster/cluster_int.h"
#include "node/cluster/scatter_names.h"
#include "node/cluster/scatter_spaces.h"
#include "query/query.h"
#include "ring/ring.h"
#include "storage/storage.h"

typedef struct scatter_options {
    uint64_t query_timeout_ms;  /* whole query; a node silent for half of it is re-planned */
    size_t max_message_bytes;   /* largest PartialResult a replica sends */
    ring_shard_policy_t shards; /* placement shards per service (the ingest setting) */
    uint32_t max_inflight;      /* queries coordinated at once; more get 503 */
    uint32_t max_serving;       /* partial queries served at once; more are refused */
    /* Partial results all coordinated queries hold at once (answers waiting
     * to be merged, gathers, answers encoded); over it a query fails with
     * 503 and new ones are refused. 0: no budget. */
    size_t max_memory_bytes;
    /* Names of symbols remote shares sent that the coordinator keeps, so
     * that later renders ask their shares not to send them again
     * (scatter_names.h). 0: none kept, every name sent every time. */
    size_t name_cache_bytes;
    /* Shares' id spaces the coordinator maps, so that their answers add by
     * id (scatter_spaces.h). 0: none; every share sends its forests. */
    size_t space_cache_bytes;
    query_limits_t limits;
    clock_source_t clock; /* deadlines (wall clock, as carried in messages) */
    workq_t *workq;       /* the node's pool lanes (borrowed); NULL: a private one */
} scatter_options_t;

/* Defaults: 30 s, 64 MiB, RING_DEFAULT_SHARDS_PER_SERVICE, 256 queries in
 * flight, 64 partials served at once, 4 MiB of names kept,
 * query_limits_default(). */
void scatter_options_default(scatter_options_t *o);

/* Creates the node's scatter over cluster_int.h, with its settings from
 * cfg (query timeout, message size, shards per service, query limits), and
 * registers the QUERY and PARTIAL handlers. */
int scatter_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                             const cluster_inputs_t *in, cluster_t *c, scatter_t **out,
                             errmsg_t *em);

/* storage and ops are borrowed for the handle's life. */
int scatter_new(uv_loop_t *loop, storage_t *storage, const scatter_options_t *o,
                const cluster_ops_t *ops, scatter_t **out, errmsg_t *em);
/* Answers every query still in flight with ERR_UNAVAILABLE and stops
 * answering other nodes. As every early answer, it stops their parts: a
 * CANCEL to the nodes still asked, their jobs not started dropped; jobs
 * already running end on their own (a share at its next series). */
void scatter_close(scatter_t *s);
void scatter_free(scatter_t *s);

/* cluster_msg_fn handlers for MSG_TYPE_QUERY (registered with cluster_on)
 * and MSG_TYPE_PARTIAL (registered with cluster_on_envelope: it takes the
 * message, whose body the merge job decodes). ctx is the scatter_t. */
void scatter_on_query(void *ctx, cluster_msg_t *msg);
void scatter_on_partial(void *ctx, cluster_msg_t *msg);

/* Starts a query of kind for tenant. Parameters are parsed and validated at
 * once: a bad one (or any other refusal) calls done before returning, as
 * does a query that is answered right away. now_ms: the request's wall
 * clock (unix ms). */
void scatter_query(scatter_t *s, query_kind_t kind, const char *tenant, const query_params_t *p,
                   int64_t now_ms, cluster_answer_fn done, void *arg);
/* Cancels the query started with arg (cluster_query_cancel). */
void scatter_cancel(scatter_t *s, void *arg);
/* cluster_query_hold / cluster_query_release. */
int scatter_hold(scatter_t *s, size_t bytes, errmsg_t *em);
/* As scatter_hold, from any thread and counting no refusal (no query is
 * refused): 0, or ERR_UNAVAILABLE with nothing taken. */
int scatter_try_hold(scatter_t *s, size_t bytes);
void scatter_release(scatter_t *s, size_t bytes);

/* Counters: field, Prometheus name, help. */
#define SCATTER_COUNTERS(X)                                                                        \
    X(queries, "flamedb_scatter_queries_total", "Queries coordinated over the cluster.")           \
    X(partial_answers, "flamedb_scatter_partial_answers_total",                                    \
      "Answers flagged partial: some token ranges had no replica that answered.")                  \
    X(replans, "flamedb_scatter_replans_total",                                                    \
      "Nodes whose ranges were re-planned after a failure or no answer by half the timeout.")      \
    X(late_dropped, "flamedb_scatter_late_answers_total",                                          \
      "Answers dropped because their ranges had moved on or their query was answered.")            \
    X(served, "flamedb_scatter_partials_served_total", "Partial queries answered for others.")     \
    X(served_from_pool, "flamedb_scatter_partials_sent_from_pool_total",                           \
      "Of them, answers sent by the thread that built them, as soon as they were written (the "    \
      "others go through the event loop: larger than one frame, or the connection was busy).")     \
    X(serve_refused, "flamedb_scatter_partials_refused_total",                                     \
      "Partial queries refused: too many at once, too large for a message, or failed.")            \
    X(busy, "flamedb_scatter_busy_total", "Queries refused with 503: too many in flight.")         \
    X(pool_jobs, "flamedb_scatter_pool_jobs_total",                                                \
      "Thread-pool jobs of coordinated queries (local shares, merges, finishes).")                 \
    X(cancelled, "flamedb_scatter_cancelled_total",                                                \
      "Queries cancelled because their client went away before the answer.")                       \
    X(memory_refused, "flamedb_scatter_memory_refused_total",                                      \
      "Queries refused or failed with 503: their partial results would exceed "                    \
      "query-memory-bytes.")                                                                       \
    X(serve_memory_refused, "flamedb_scatter_partials_memory_refused_total",                       \
      "Shares refused (served for another node, or this node's own): their result or their "       \
      "merge's working memory would pass query-memory-bytes (the coordinator asks another "        \
      "replica; with none, the query answers 503).")                                               \
    X(busy_refused, "flamedb_scatter_busy_ranges_refused_total",                                   \
      "Queries answered 503 because ranges no other replica serves were refused by a busy node "   \
      "(its query-memory-bytes or its partial queries at once), instead of partial.")              \
    X(shares_stopped, "flamedb_scatter_shares_cancelled_total",                                    \
      "Shares of queries (local, or served for another node) cancelled before they ran (also "     \
      "one whose CANCEL came before it) or stopped while running: their query was cancelled, "     \
      "answered without them (an error or refusal of another part) or its deadline passed.")

typedef struct scatter_stats {
#define SCATTER_FIELD(name, metric, help) uint64_t name;
    SCATTER_COUNTERS(SCATTER_FIELD)
#undef SCATTER_FIELD
    /* the coordinator's id spaces (scatter_spaces.h) */
    uint64_t space_answers; /* answers added by id */
    uint64_t space_ids;     /* ids whose structure came with them */
    uint64_t space_dropped; /* scopes dropped to stay within scatter-space-cache-bytes */
    uint64_t space_refused; /* renders that gathered forests: their scope outgrew it alone */
    uint64_t space_bytes;   /* gauge: bytes held */
    uint64_t inflight;      /* gauge: queries coordinated now */
    uint64_t memory_bytes;  /* gauge: partial results they hold (query-memory-bytes) */
} scatter_stats_t;
void scatter_stats(const scatter_t *s, scatter_stats_t *out);
/* Registers st's counters on r; st is borrowed until r is rendered. */
void scatter_stats_register(const scatter_stats_t *st, metrics_registry_t *r);

/* Internals of the read path, shared by scatter*.c: the handle, the state of
 * one coordinated query and of the nodes it asked.
 *
 * Threads: scatter_q_t fields belong to the loop thread, except the gather, which a
 * pool job owns while `merging` or `finishing` is set, and the items a merge
 * job was handed.
 */
#define Q_KIND(x) FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_##x
#define MSG(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x
/* Room left in a message for the envelope around a PartialResult. */
#define SCATTER_ENVELOPE_ROOM 4096

typedef struct scatter_q scatter_q_t;

/* Where a coordinated query's time went, for its answer's Server-Timing
 * (scatter_q_timing): uv_hrtime() values, and durations in ns that each pool
 * job measures in its own struct and its done callback adds here. Loop
 * thread. */
typedef struct scatter_timing {
    uint64_t start;       /* the query was accepted */
    uint64_t share_start; /* this node's share began on a pool thread (0: none) */
    uint64_t last_answer; /* the last other node's answer came (0: none) */
    uint64_t share_ns;    /* this node's share: its series read and merged */
    uint64_t merge_ns;    /* other nodes' answers decoded and added */
    uint64_t finish_ns;   /* truncation, names and the answer's encoding */
} scatter_timing_t;

/* CANCELs that found no share of theirs to stop: its QUERY may still be on
 * its way (sent before a redial, or overtaken), and is refused at once when
 * it comes (scatter_serve.c). The last SCATTER_EARLY_CANCELS are kept in a
 * ring, each until its query's deadline; one overwritten sooner only lets
 * its share run, as any share without a CANCEL (bounded by max_serving and
 * the deadline), so a constant bounds it. */
#define SCATTER_EARLY_CANCELS 256
typedef struct scatter_early_cancel {
    uint64_t request_id;
    uint64_t deadline_unix_ms; /* forgotten then; 0: a free slot */
    char sender[RING_NODE_ID_MAX + 1];
} scatter_early_cancel_t;

/* A pool job of a coordinated query, linked in its query from its submit
 * to its done callback, so a cancelled query can drop the ones not started. */
typedef struct scatter_job {
    workq_job_t w;
    list_node_t link;  /* in scatter_q_t.jobs */
    atomic_int cancel; /* set on the loop when the query is cancelled; a running share stops */
} scatter_job_t;

struct scatter {
    uv_loop_t *loop;
    workq_t *workq;     /* o.workq, or own_workq */
    workq_t *own_workq; /* when no workq was given */
    storage_t *storage;
    scatter_options_t o;
    cluster_ops_t ops;
    cluster_wire_limits_t limits; /* PartialResults are checked against these */
    list_t queries;               /* coordinated, not yet answered */
    uint32_t ninflight;
    uint32_t nserving;
    list_t serving; /* serve jobs queued or running (scatter_serve.c), for cancel messages */
    scatter_early_cancel_t early[SCATTER_EARLY_CANCELS]; /* a ring; early_next: its next slot */
    size_t early_next;
    /* query-memory-bytes: partial results held by coordinated queries (sum
     * of mem_charged, loop thread) and by shares served for other nodes
     * (charged from the pool by their jobs) */
    alloc_budget_t mem;
    scatter_names_t *names;   /* o.name_cache_bytes; NULL when 0 */
    scatter_spaces_t *spaces; /* o.space_cache_bytes; NULL when 0 */
    uint64_t next_id;
    int closing;
    scatter_stats_t stats;
};

enum ask_state { ASK_WAITING = 1, ASK_ANSWERED, ASK_FAILED, ASK_ABANDONED };

/* One node asked for some ranges. */
typedef struct ask {
    uint64_t request_id;
    uint32_t node; /* index in the view's ring */
    int gen;       /* 0: first plan; 1: re-planned (not re-planned again) */
    int state;
    int holds_gather; /* a local ask whose job merges into the gather: not abandoned */
    int slow;         /* failed for no answer by half the timeout: its share may still run */
    ring_ranges_t ranges;
} ask_t;

/* An answer waiting to be merged. */
typedef struct item {
    struct item *next;
    size_t ask;
    int remote;        /* msg holds a PartialResult envelope (body decoded by the merge job) */
    cluster_msg_t msg; /* remote: taken from the cluster */
    query_partial_t local;
    int rc;       /* merge outcome */
    int fatal;    /* the gather may hold part of it: the query cannot be exact */
    size_t bytes; /* counted in the query's items_bytes */
    errmsg_t em;
} item_t;

struct scatter_q {
    list_node_t link; /* in scatter.queries until answered */
    scatter_t *s;
    int refs; /* the query until answered and its timer closed, plus pool jobs */
    const cluster_view_t *view;
    query_spec_t spec;
    char tenant[STORAGE_TENANT_MAX + 1];
    query_gather_t *gather;
    /* render with forests: the names cache's generation held until the
     * query is freed, and its ids, sent as QueryRequest.known_symbols */
    scatter_names_gen_t *names;
    uint64_t *known;
    size_t nknown;
    /* render with forests over several asks: the id spaces of its scope,
     * held until the query is freed, and the values its shares answered by
     * id, summed over the scope's nodes (a pool job at a time) */
    scatter_scope_t *scope;
    scatter_sums_t sums;
    cluster_answer_fn done;
    void *arg;
    int answered;
    ask_t *asks;
    size_t nasks, capasks;
    uint8_t *excluded; /* per ring node: failed or slow during this query */
    ring_ranges_t missing;
    /* ranges of asks a live node refused as busy (its query-memory-bytes,
     * its partial queries at once): missing for that reason, the query is
     * refused like the node, not answered partial */
    ring_ranges_t refused;
    uint32_t refused_node; /* the first node that refused */
    item_t *queue;         /* answers not merged yet (LIFO; merge order does not matter) */
    int merging, finishing;
    list_t jobs; /* scatter_job_t submitted, done callback not run yet */
    /* Memory held, as counted against max_memory_bytes: answers not merged
     * yet (queued or in a job), the gather (measured by the last job that
     * held it) and the encoded answer; mem_charged is their sum as charged. */
    size_t items_bytes, gather_bytes, answer_bytes, mem_charged;
    size_t held_beside; /* query_params_t.held_beside: the request's elsewhere */
    int rc;             /* a failure that decides the answer (0: none) */
    errmsg_t em;
    uv_timer_t timer;
    int timer_open, hard; /* hard: the soft deadline has passed */
    uint64_t deadline_unix_ms;
    char *partial_json; /* members added to a partial JSON answer */
    cluster_answer_t ans;
    scatter_timing_t t;
};

/* scatter.c */
void scatter_q_unref(scatter_q_t *q);
/* The ask of request id (in any query), or NULL. */
ask_t *scatter_q_find_ask(scatter_t *s, uint64_t request_id, scatter_q_t **q);
/* An ask failed (error answer, send failure, merge refusal): its ranges are
 * re-planned once, then counted missing. */
void scatter_q_ask_failed(scatter_q_t *q, size_t ask, const char *why);
/* The same for an ask its node refused as busy (ERR_UNAVAILABLE answered):
 * should no other replica serve its ranges, the query answers 503 naming
 * the node instead of partial. */
void scatter_q_ask_refused(scatter_q_t *q, size_t ask, const char *why);
/* Decides the answer with an error (the first one wins). */
void scatter_q_fail(scatter_q_t *q, int rc, const errmsg_t *em);
/* Starts the next step when nothing is outstanding: a merge, the finish, or
 * the answer. */
void scatter_q_progress(scatter_q_t *q);
void scatter_q_answer(scatter_q_t *q, cluster_answer_t *a);
/* Charges what q holds now to the node-wide budget; over it, the query
 * fails with ERR_UNAVAILABLE naming query-memory-bytes (answered by the next
 * scatter_q_progress). */
void scatter_q_charge(scatter_q_t *q);
/* q's Server-Timing value into out (n bytes): its steps in ms, those that
 * ran, then the total until now. */
void scatter_q_timing(const scatter_q_t *q, char *out, size_t n);
static inline uint64_t scatter_unix_ms(const scatter_t *s)
{
    return (uint64_t)clock_wall_ms(&s->o.clock);
}

/* scatter_merge.c */
void scatter_q_item_free(item_t *it);
/* 1 when q gathers its partials as forests (a truncated render): adding an
 * answer is then cheap (forests of encodings 4 and 5 are held where they
 * lie), so the local share merges its own partial and the answers wait
 * until none is outstanding, to be merged by the job that finishes. */
int scatter_q_gathers_forests(const scatter_q_t *q);
/* Runs the local ask on the pool. */
int scatter_q_run_local(scatter_q_t *q, size_t ask);
/* Queues an answer and starts a merge job when none runs. */
void scatter_q_enqueue(scatter_q_t *q, item_t *it);
int scatter_q_start_merge(scatter_q_t *q);
/* Drops the query's jobs that have not started (their done callbacks run
 * with UV_ECANCELED, some before this returns). */
void scatter_q_cancel_jobs(scatter_q_t *q);
int scatter_q_start_finish(scatter_q_t *q);
/* X-Flamedb-Partial and the JSON members for what is missing. */
int scatter_q_describe_missing(scatter_q_t *q, char *header, size_t header_len, char **json);
/* Errors a node answers that another node would answer the same way: they
 * decide the query instead of moving its ranges. */
int scatter_error_is_final(int rc);

#endif
