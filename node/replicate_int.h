/* replicate_int.h — internals of the replicated write path, shared by
 * node/replicate*.c and their unit tests (not by other node files).
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
#ifndef FLAMEDB_NODE_REPLICATE_INT_H
#define FLAMEDB_NODE_REPLICATE_INT_H

#include <stdatomic.h>

#include "node/replicate.h"

/* ---------------------------------------------------------------- arena */

/* Blocks that never move, freed together: the packed messages point into
 * them from the pool thread until the write is freed. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
} arena_block_t;

typedef struct arena {
    arena_block_t *head;
    size_t bytes; /* allocated in blocks, for the in-flight budget */
} arena_t;

void *replicate_arena_alloc(arena_t *a, size_t n); /* zeroed, 16-aligned; NULL when out of memory */
void *replicate_arena_dup(arena_t *a, const void *p, size_t n);
void replicate_arena_free(arena_t *a);

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
    size_t local_written;
    /* loop side */
    replicate_done_fn done;
    void *done_ctx;
    int responded;
    uint32_t outstanding; /* targets TS_PENDING */
    struct replicate_write *prev, *next;
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

/* Packs target ti's WriteRequest as a HintRecord and stores it (pool
 * thread). Counts into rw->hints_stored / hints_dropped. */
int replicate_store_hint(replicate_write_t *rw, uint32_t ti, errmsg_t *em);
/* The WriteRequest a stored hint carries (zstd-compressed or as is); NULL if
 * it does not decode or would decompress past max_bytes. Caller frees it
 * (flamedb__cluster__write_request__free_unpacked). */
Flamedb__Cluster__WriteRequest *replicate_hint_request(const Flamedb__Cluster__HintRecord *h,
                                                       size_t max_bytes);

/* ---------------------------------------------------------------- loop side */

enum pending_kind { PEND_WRITE, PEND_REPLAY };

/* A request waiting for its WRITE_ACK, in the id table and the deadline
 * list (FIFO: every request has the same timeout). */
typedef struct pending {
    uint64_t request_id;
    uint64_t deadline_ms;
    enum pending_kind kind;
    char target[RING_NODE_ID_MAX + 1];
    replicate_write_t *rw; /* PEND_WRITE */
    uint32_t ti;
    size_t rti; /* PEND_REPLAY: index into replicate.rt */
    uint64_t seq;
    Flamedb__Cluster__WriteRequest *msg; /* PEND_REPLAY: unpacked from the hint */
    struct pending *hnext;
    struct pending *prev, *next;
} pending_t;

#define REPLICATE_BUCKETS 1024

/* A target whose stored hints are being replayed. */
typedef struct replay_target {
    char id[RING_NODE_ID_MAX + 1];
    int busy;          /* a batch is being read, sent or acknowledged */
    uint32_t inflight; /* requests of the batch not yet resolved */
    uint32_t acked, failed;
} replay_target_t;

struct replicate {
    uv_loop_t *loop;
    storage_t *storage;
    replicate_options_t o;
    replicate_ops_t ops;
    uv_timer_t deadline_timer, replay_timer;
    pending_t *buckets[REPLICATE_BUCKETS];
    pending_t *dl_head, *dl_tail;
    replicate_write_t *w_head, *w_tail; /* writes started and not freed */
    uint64_t replica_bytes;             /* WRITE messages being stored as a replica */
    uint64_t prep_bytes;                /* writes admitted, not yet started */
    _Atomic uint64_t next_request_id;
    replicate_stats_t st;
    replay_target_t *rt;
    size_t nrt, rtcap;
    uint64_t hint_sig; /* signature of the advertised hint targets */
    uint32_t jobs;     /* pool jobs not yet finished */
    int closing, closed_handles;
    void (*close_done)(void *arg);
    void *close_arg;
};

uint64_t replicate_now_ms(void);
uint64_t replicate_request_id(replicate_t *r);

/* Pending table (replicate.c). */
void replicate_pending_add(replicate_t *r, pending_t *p);
/* Removes and returns the request, or NULL when absent or (sender not NULL)
 * sent to another node. */
pending_t *replicate_pending_take(replicate_t *r, uint64_t request_id, const char *sender);
void replicate_arm_deadline(replicate_t *r);

/* Hints (replicate_hints.c). */
void replicate_publish_hint_targets(replicate_t *r);
void replicate_replay_tick(uv_timer_t *t);
void replicate_replay_resolved(replicate_t *r, pending_t *p, int ok);
/* Stores the hints of rw's TS_NEEDS_HINT targets on the pool, then frees rw. */
void replicate_finish_hints(replicate_t *r, replicate_write_t *rw);

#endif
