/* scatter_int.h — what the files of the scatter-gather path share (internal
 * to node/scatter*.c): the handle, the state of one coordinated query and of
 * the nodes it asked.
 *
 * Threads: sq_t fields belong to the loop thread, except the gather, which a
 * pool job owns while `merging` or `finishing` is set, and the items a merge
 * job was handed.
 */
#ifndef FLAMEDB_NODE_SCATTER_INT_H
#define FLAMEDB_NODE_SCATTER_INT_H

#include "node/scatter.h"

#define Q_KIND(x) FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_##x
#define MSG(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x
/* Room left in a message for the envelope around a PartialResult. */
#define SCATTER_ENVELOPE_ROOM 4096

typedef struct sq sq_t;

struct scatter {
    uv_loop_t *loop;
    storage_t *storage;
    scatter_options_t o;
    scatter_ops_t ops;
    sq_t *queries; /* coordinated, not yet answered (a list) */
    uint32_t ninflight;
    uint32_t nserving;
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
    ring_ranges_t ranges;
} ask_t;

/* An answer waiting to be merged. */
typedef struct item {
    struct item *next;
    size_t ask;
    uint8_t *body; /* serialized PartialResult, or NULL for a local partial */
    size_t len;
    query_partial_t local;
    int rc;    /* merge outcome */
    int fatal; /* the gather may hold part of it: the query cannot be exact */
    errmsg_t em;
} item_t;

struct sq {
    sq_t *next, *prev;
    scatter_t *s;
    int refs; /* the query until answered and its timer closed, plus pool jobs */
    const cluster_view_t *view;
    query_spec_t spec;
    char tenant[STORAGE_TENANT_MAX + 1];
    query_gather_t *gather;
    scatter_done_fn done;
    void *arg;
    int answered;
    ask_t *asks;
    size_t nasks, capasks;
    uint8_t *excluded; /* per ring node: failed or slow during this query */
    ring_ranges_t missing;
    item_t *queue; /* answers not merged yet (LIFO; merge order does not matter) */
    int merging, finishing;
    int rc; /* a failure that decides the answer (0: none) */
    errmsg_t em;
    uv_timer_t timer;
    int timer_open, hard; /* hard: the soft deadline has passed */
    uint64_t deadline_unix_ms;
    char *partial_json; /* members added to a partial JSON answer */
    scatter_answer_t ans;
};

/* scatter.c */
void sq_unref(sq_t *q);
/* The ask of request id (in any query), or NULL. */
ask_t *sq_find_ask(scatter_t *s, uint64_t request_id, sq_t **q);
/* An ask failed (error answer, send failure, merge refusal): its ranges are
 * re-planned once, then counted missing. */
void sq_ask_failed(sq_t *q, size_t ask, const char *why);
/* Decides the answer with an error (the first one wins). */
void sq_fail(sq_t *q, int rc, const errmsg_t *em);
/* Starts the next step when nothing is outstanding: a merge, the finish, or
 * the answer. */
void sq_progress(sq_t *q);
void sq_answer(sq_t *q, scatter_answer_t *a);
uint64_t scatter_unix_ms(void);

/* scatter_merge.c */
/* Runs the local ask on the pool. */
int sq_run_local(sq_t *q, size_t ask);
/* Queues an answer and starts a merge job when none runs. */
void sq_enqueue(sq_t *q, item_t *it);
int sq_start_merge(sq_t *q);
int sq_start_finish(sq_t *q);
/* X-Flamedb-Partial and the JSON members for what is missing. */
int sq_describe_missing(sq_t *q, char *header, size_t header_len, char **json);
/* Errors a node answers that another node would answer the same way: they
 * decide the query instead of moving its ranges. */
int scatter_error_is_final(int rc);

#endif
