/* repair_int.h — anti-entropy between the replicas of a range (internal to
 * node/cluster/; docs/cluster.md, "Anti-entropy").
 *
 * A node repairs itself: for every range it replicates it compares the seen
 * index (storage's `profiles` column family, which names every stored
 * series of every profile) with each other replica of the range, first as
 * digests per range and time bucket (a count and an order-free sum of the
 * entries' hashes), then, for the buckets that differ, as id lists, and
 * fetches the profiles it lacks. A fetched profile is the source's own tree
 * of that series (storage_read_profile, the `profile_trees` column family)
 * and is stored through storage_write_profile like any replicated write, so
 * a profile already stored is skipped: nothing counts twice. Pulling only
 * (each node fetches what it lacks) keeps one pass simple; a cluster
 * converges once every node ran a pass (flamectl cluster repair asks each).
 *
 * Threads: a pass (repair_pass.c) runs on the module's own thread, which
 * blocks on storage and on its requests to peers; the loop sends those
 * requests and routes their answers back (repair.c). Serving a peer's request runs on the pool
 * (repair_serve.c). The digest functions (repair_digest.c) run on any thread.
 * Ownership: repair_open_for_cluster returns a handle the cluster owns;
 * repair_close once on the loop, repair_free after the loop ended.
 */
#ifndef FLAMEDB_NODE_CLUSTER_REPAIR_INT_H
#define FLAMEDB_NODE_CLUSTER_REPAIR_INT_H

#include <stddef.h>
#include <stdint.h>

#include "node/cluster/cluster_int.h"
#include "node/cluster/replicate_int.h"
#include "ring/ring.h"
#include "storage/storage.h"

#define REPAIR_BUCKET_S 3600   /* width of a digest's time bucket */
#define REPAIR_IDS_PAGE 4096   /* entries per id-list answer */
#define REPAIR_FETCH_BATCH 256 /* profiles asked per fetch */
#define REPAIR_WANT_MAX 4096   /* missing entries gathered before they are fetched */
#define REPAIR_SERVE_MAX 4     /* requests of peers served at once; more: unavailable */
#define REPAIR_MARGIN_S 3600   /* kept off the seen retention's edge (clocks, pass time) */
#define REPAIR_SUMMARY_MAX                                                                         \
    (1u << 20)                   /* bytes of each of a pass's lists (unreached, failed, inexact) */
#define REPAIR_WINDOW_BUCKETS 64 /* the window check's sums per resolution and range */
#define REPAIR_FULL_LOG_EVERY 60 /* full-repair passes with the same outcome per log line */
/* The status of a refusal by a node whose own copy of the interval asked
 * about is not to be trusted (cluster_copy_untrusted): not a source, ask
 * another replica. */
#define REPAIR_NOT_SOURCE ERR_FORBIDDEN
/* The status of a window check's sums (STREAM_CHECK in buckets) refused by
 * a node that regains the interval: it holds no copy of its own there (one
 * a removal gave it, or a window check handed it: cleared or about to be,
 * and streamed whole from another replica), so the check has nothing to
 * compare with it and goes on without it (repair_windows.c). An older node
 * answers REPAIR_NOT_SOURCE: the range is compared later, as before. */
#define REPAIR_NO_COPY ERR_CONFLICT

/* ---------------------------------------------------------------- digests */

typedef struct repair_bucket {
    uint32_t range;  /* index into the ranges summarised */
    int64_t start_s; /* from_s + k * bucket_s */
    uint64_t count;
    uint64_t hash; /* sum of repair_entry_hash over the bucket's entries */
} repair_bucket_t;

/* Non-empty buckets, sorted by (range, start_s). Caller owns; free with
 * repair_digest_free. */
typedef struct repair_digest {
    repair_bucket_t *v;
    size_t n, cap;
} repair_digest_t;

/* The 64-bit hash of one entry: tenant, token, series and profile id (not
 * the time: the id names the profile). */
uint64_t repair_entry_hash(const storage_seen_entry_t *e);

/* Summarises the seen index over ranges[0..n) for profiles whose time t
 * (unix s) is in [from_s, until_s), in buckets of bucket_s seconds.
 * ERR_INVALID_ARGUMENT for bucket_s <= 0 or an empty span. */
int repair_digest_build(storage_t *s, const ring_range_t *ranges, size_t n, int64_t from_s,
                        int64_t until_s, int64_t bucket_s, repair_digest_t *out);
/* Appends to out the buckets of `theirs` that `mine` lacks or holds with
 * another count or hash: where the other side may have entries this one
 * lacks. Both sorted as repair_digest_build leaves them. */
int repair_digest_diff(const repair_digest_t *theirs, const repair_digest_t *mine,
                       repair_digest_t *out);
void repair_digest_free(repair_digest_t *d);
/* 1 when every bucket of mine is in theirs with at least its count (an
 * equal count with an equal hash: the same entries). */
int repair_holds_all(const repair_digest_t *mine, const repair_digest_t *theirs);

/* ---------------------------------------------------------------- the module */

typedef struct repair_options {
    uint64_t interval_ms;        /* a pass this often (0: only on demand) */
    int64_t seen_retention_s;    /* the storage's: entries older are not compared */
    int64_t max_future_s;        /* ingest's: how far ahead a profile's time may be */
    int64_t profile_retention_s; /* the storage's: profile trees older are gone (0: never) */
    uint64_t timeout_ms;         /* one request to a peer */
    size_t max_message_bytes;
    uint64_t stream_bytes_per_s;     /* fetched bytes per second at most (0: unlimited) */
    uint64_t repair_bytes_per_s;     /* the same for the fetches of a pass that is not a move */
    uint32_t heal_after;             /* --stream-check-heal-after */
    uint64_t progress_ms;            /* --stream-progress-interval (0: every page) */
    uint32_t heals;                  /* --stream-check-heals */
    size_t stream_receive_max_bytes; /* --stream-receive-max-bytes (0: no bound) */
    uint64_t windows_interval_ms;    /* --repair-windows-interval (0: only on demand) */
    uint32_t fill_keys_batch;        /* --repair-fill-keys-batch */
    uint32_t stream_version;         /* --cluster-stream-version (REPAIR_STREAM_V*) */
    replicate_options_t write;       /* how fetched profiles are checked (shards, tree limits) */
} repair_options_t;

/* The time span a pass compares at unix second now_s: profiles recent
 * enough that no replica can have forgotten one it stored (a forgotten id
 * fetched again would count twice): from now - seen retention + max future
 * + margin, to now + max future + margin (from aligned up to a bucket). A
 * seen retention shorter than max future + margin leaves only profiles
 * timed ahead of now. */
void repair_span(const repair_options_t *o, int64_t now_s, int64_t *from_s, int64_t *until_s);

/* When the scheduled pass after `from` (ms) is due, every `every` ms (0:
 * never, returns 0): one interval later plus up to a tenth of it at random
 * (*rng: a nonzero xorshift state, advanced), so nodes started or restarted
 * together spread their passes instead of comparing all at once. */
uint64_t repair_schedule_after(uint64_t every, uint64_t from, uint64_t *rng);

int repair_open_for_cluster(uv_loop_t *loop, storage_t *storage, const cluster_config_t *cfg,
                            const cluster_inputs_t *in, cluster_t *c, repair_t **out, errmsg_t *em);
/* Loop, every gossip round: a request of the thread to a peer that the
 * current view has down (it died, or stopped answering heartbeats) ends at
 * once as unanswered (ERR_TIMEOUT) instead of waiting out its timeout. */
void repair_tick(repair_t *r);
/* Stops the thread after its current step and fails waiting callers. */
void repair_close(repair_t *r);
void repair_free(repair_t *r);

/* Loop: done runs (on the loop) with the JSON summary of the first pass
 * that starts after this call. */
void repair_run(repair_t *r, cluster_repair_fn done, void *arg);
/* Loop: a pass with its window check runs after_ms from now (or sooner if
 * one was asked for already), whatever --repair-interval says; nothing when
 * --repair-windows-interval is 0 (window checks only on demand). Asked when
 * a member goes down, is removed or comes back: a coordinator gone may
 * take with it the marks of acknowledged writes a replica missed, and a
 * replica back may have missed writes no mark names (docs/cluster.md,
 * "The window check"). */
void repair_windows_soon(repair_t *r, uint64_t after_ms);
/* Any thread: this node's repair mark went with a member that left the
 * ring (cluster_void.c): a pass with its window check runs after_ms from now,
 * whatever --repair-interval and --repair-windows-interval say, and again
 * a settle margin after each check that could not compare every range it
 * replicates with every other replica (one down, one refusing, one
 * marked). The first check that started after this call and did compare
 * them all tells the loop (cluster_void_checked with gen). */
void repair_windows_void(repair_t *r, uint64_t gen, uint64_t after_ms);
/* Repair thread, after a pass that could not run the window check (it was
 * incomplete, or the node streams or regains ranges): while a voided mark
 * waits for one, another pass a settle margin later. Every pass that can
 * run the check runs it while one waits. */
void repair_windows_void_later(repair_t *r);

/* Handlers: REPAIR (body decoded on the loop; served on the pool) and
 * REPAIR_ANSWER (envelope only; the pass's thread decodes the body). */
void repair_on_request(void *ctx, cluster_msg_t *msg);
void repair_on_answer(void *ctx, cluster_msg_t *msg);

/* Serving (repair_serve.c): the answer to q built on the pool; a is
 * allocated in arena. untrusted (NULL: none): per range of a DIGEST, 1 for
 * those left out of it and named in a->untrusted. */
struct repair_serve_env;
int repair_serve_build(storage_t *s, const repair_options_t *o,
                       const Flamedb__Cluster__RepairRequest *q, const uint8_t *untrusted,
                       struct repair_serve_env *env, arena_t *arena,
                       Flamedb__Cluster__RepairAnswer *a, errmsg_t *em);

/* replicate_replica.c: decodes, checks and stores one WriteRequest, as the
 * WRITE handler does; *written gets the series stored (not duplicates),
 * *bytes (may be NULL) the size of the write batch stored. */
int replicate_store_request(const replicate_options_t *o, storage_t *s,
                            const Flamedb__Cluster__WriteRequest *q, size_t *written, size_t *bytes,
                            errmsg_t *em);

/* ---------------------------------------------------------------- internals
 * Shared by repair.c (thread, loop side, serving, lifetime) and
 * repair_pass.c (one pass). */

#include <stdatomic.h>

#include "common/metrics.h"
#include "common/u64map.h"
#include "common/workq.h"

/* Counters for /metrics (docs/api.md), kept under the module's mutex. */
#define REPAIR_COUNTERS(X)                                                                         \
    X(passes, "flamedb_repair_passes_total", "Anti-entropy passes this node ran.")                 \
    X(incomplete, "flamedb_repair_incomplete_passes_total",                                        \
      "Passes that left out too many replicas of a range or could not fetch every profile.")       \
    X(series, "flamedb_repair_series_streamed_total",                                              \
      "Series of profiles this node lacked, fetched by repair and stored.")                        \
    X(bytes, "flamedb_repair_bytes_streamed_total",                                                \
      "Bytes of repair answers received (packed messages: fetched profiles, streamed windows and " \
      "span trees with their labels and symbols), as they came over the wire.")                    \
    X(stored_bytes, "flamedb_repair_bytes_stored_total",                                           \
      "Bytes this node wrote to its store from what repair received (the write batches of "        \
      "fetched profiles, streamed windows and span trees: keys and values before compression).")   \
    X(unavailable, "flamedb_repair_unavailable_total",                                             \
      "Missing profiles no peer could send (their tree is not kept).")                             \
    X(served, "flamedb_repair_requests_served_total", "Repair requests of peers answered.")        \
    X(windows, "flamedb_repair_windows_streamed_total",                                            \
      "Windows of gained ranges received whole (as residuals) and stored.")                        \
    X(span_trees, "flamedb_repair_span_trees_streamed_total",                                      \
      "Span/trace trees of gained ranges received whole and merged (united with this node's "      \
      "own by profile id).")                                                                       \
    X(throttled_ms, "flamedb_repair_throttled_milliseconds_total",                                 \
      "Time passes waited to keep to repair-max-bytes-per-s or stream-max-mb-per-s.")              \
    X(cleared, "flamedb_repair_ranges_cleared_total",                                              \
      "Token intervals this node cleared before receiving them whole (an old copy would count "    \
      "twice).")                                                                                   \
    X(regains, "flamedb_repair_regains_total",                                                     \
      "Removals of a member after which this node streamed in every range it gained.")             \
    X(source_changes, "flamedb_repair_stream_source_changes_total",                                \
      "Streams of a gained range that went on from their cursor at another replica within a "      \
      "pass, their source having stopped answering.")                                              \
    X(windows_checks, "flamedb_repair_window_checks_total",                                        \
      "Window checks run (old windows' totals per range compared with the other replicas).")       \
    X(windows_differing, "flamedb_repair_window_ranges_differing_total",                           \
      "Token intervals a window check found another replica holding more of, handed to the "       \
      "regain (cleared here and streamed whole from that replica).")                               \
    X(windows_mixed, "flamedb_repair_window_ranges_mixed_total",                                   \
      "Ranges a window check found this node and another replica each holding old windows the "    \
      "other lacks that no profile id names: left as they are (docs/cluster.md, \"The window "     \
      "check\").")                                                                                 \
    X(windows_filled, "flamedb_repair_window_windows_filled_total",                                \
      "Old windows (past the profile ids a window check compares) another replica held and this "  \
      "node lacked, copied here by the window check's fill of a mixed range.")                     \
    X(windows_inexact, "flamedb_repair_window_windows_inexact_total",                              \
      "Old windows a window check's fill found held by both this node and another replica, "       \
      "differently: their union cannot be told from the rolled-up blocks; their series are left "  \
      "as they are (counted at each check that finds them).")                                      \
    X(windows_profiles, "flamedb_repair_window_profiles_fetched_total",                            \
      "Profiles no seen comparison covers (older than the seen span, or recent ones under a "      \
      "short --seen-retention) that a window check found another replica holding and this node "   \
      "lacking (by profile id, within --profile-retention), fetched and stored once.")             \
    X(fill_summaries, "flamedb_repair_fill_summaries_total",                                       \
      "Old windows of another replica a window check's fill looked at by their summaries (a "      \
      "key and a hash each from a source of stream protocol 3, docs/cluster-protocol.md; from 4, " \
      "also those found alike by a hash tree's bucket without a summary sent).")                   \
    X(fill_tree_alike, "flamedb_repair_fill_tree_alike_total",                                     \
      "Of them, windows a fill's hash tree found alike on both sides by their bucket (stream "     \
      "protocol 4): none of their summaries travelled.")                                           \
    X(fill_summary_ids, "flamedb_repair_fill_summary_ids_total",                                   \
      "Of them, windows held on both sides with hashes that differ, whose profile ids the fill "   \
      "asked for in a second look.")                                                               \
    X(fill_summary_bytes, "flamedb_repair_fill_summary_bytes_total",                               \
      "Bytes of the answers to a fill's looks at summaries (both looks): what two replicas "       \
      "exchange to find the old windows one lacks.")                                               \
    X(stream_heals, "flamedb_repair_stream_heals_total",                                           \
      "Token intervals of a join, leave or regain cleared and streamed again because their "       \
      "totals check kept disagreeing with the source (stream-check-heal-after passes in a row).")  \
    X(stream_window_reads, "flamedb_repair_stream_window_reads_total",                             \
      "Windows too large for one stream answer read from storage to answer peers in parts (once "  \
      "per stream while kept in the stream-window-cache).")                                        \
    X(stream_parts, "flamedb_repair_stream_parts_served_total",                                    \
      "Parts of windows too large for one stream answer sent to peers.")                           \
    X(resumed_ranges, "flamedb_repair_stream_ranges_resumed_total",                                \
      "Token intervals of a join or leave whose stream this process went on with from the "        \
      "cursor an earlier process kept in DATA_DIR/move.progress, without clearing them again.")    \
    X(resumed_windows, "flamedb_repair_stream_windows_resumed_total",                              \
      "Windows an earlier process stored of the intervals this process resumed: not streamed "     \
      "again.")                                                                                    \
    X(resumed_bytes, "flamedb_repair_stream_bytes_resumed_total",                                  \
      "Bytes of stream answers an earlier process received for the intervals this process "        \
      "resumed: not streamed again.")                                                              \
    X(checks_passed, "flamedb_repair_stream_checks_passed_total",                                  \
      "Totals checks of streamed token intervals (a join, leave, regain or full repair) that "     \
      "agreed with their source.")                                                                 \
    X(checks_resumed, "flamedb_repair_stream_checks_resumed_total",                                \
      "Token intervals of a join or leave whose totals check an earlier process passed (kept in "  \
      "DATA_DIR/move.progress) and this process took as passed: the same source is still a "       \
      "current replica not listed in hints_for, and the windows after that check's horizon are "   \
      "compared by digest in every pass.")                                                         \
    X(checks_not_resumed, "flamedb_repair_stream_checks_not_resumed_total",                        \
      "Token intervals whose totals check an earlier process passed but this process checks "      \
      "again: their source left the range's replicas or missed writes since, or that check's "     \
      "horizon lies outside what a pass compares by digest.")                                      \
    X(stream_windows_refused, "flamedb_repair_stream_windows_refused_total",                       \
      "Windows in parts this node refused to take because what it gathered of them (profile "      \
      "lists, symbols) passed stream-receive-max-bytes; the range stays untaken.")

typedef struct repair_counters {
#define REPAIR_FIELD(name, metric, help) uint64_t name;
    REPAIR_COUNTERS(REPAIR_FIELD)
#undef REPAIR_FIELD
} repair_counters_t;

typedef enum { CALL_QUEUED, CALL_SENT, CALL_DONE } repair_call_state_t;

/* One request of the pass's thread; lives on that thread's stack. */
typedef struct repair_call {
    const char *peer; /* NULL: the loop only takes a view reference */
    int notify;       /* no answer expected: done once sent */
    Flamedb__Cluster__RepairRequest *req;
    uint64_t request_id;
    repair_call_state_t state;
    int rc;
    int down;                   /* the loop saw the peer marked down before it answered */
    cluster_msg_t answer;       /* taken from the dispatcher; the thread frees it */
    const cluster_view_t *view; /* peer NULL: the view, one reference */
} repair_call_t;

typedef struct repair_waiter {
    cluster_repair_fn done;
    void *arg;
    uint64_t want; /* the pass generation that answers it */
    struct repair_waiter *next;
} repair_waiter_t;

/* What one pass did, summed over its peers. */
typedef struct repair_stats {
    uint64_t peers, ranges, buckets, differing, listed, missing, written, bytes, unavailable;
    uint64_t windows;        /* windows streamed in whole (repair_stream.c) */
    uint64_t stored;         /* bytes of the write batches that stored what was received */
    uint64_t wc_filled;      /* old windows another copy held alone, copied here (fill) */
    uint64_t wc_inexact;     /* old windows both held differently (their series left) */
    uint64_t wc_ranges;      /* ranges the window check compared (repair_windows.c) */
    uint64_t wc_differing;   /* of them, handed to the regain */
    uint64_t wc_mixed;       /* of them, where neither copy holds the other */
    uint64_t wc_fetched;     /* profiles the window check fetched by id from another copy */
    uint64_t wc_deferred;    /* of them, left for the next pass (the other lacks recent ones) */
    uint64_t wc_unseen;      /* replicas of them not compared: down or not answering */
    int wc_ran;              /* the pass ran the window check */
    uint64_t wc_ms;          /* how long it took */
    uint64_t t0_ms;          /* wall clock at the pass's start (the stream throttle's origin) */
    uint64_t fetched;        /* bytes of those of them fetched as missing profiles */
    int moving;              /* the pass streams ranges this node gains (a join or leave) */
    buf_t unreached, failed; /* JSON array members */
    /* JSON array members: the old windows counted in wc_inexact, each
     * {tenant, series, labels, resolution_s, window_s, peer}, as many as
     * REPAIR_SUMMARY_MAX bytes hold (wc_inexact counts them all) */
    buf_t inexact;
} repair_stats_t;

/* Stores the writes of one fetch answer (any thread; r's storage and write
 * options only). A write this replica refuses with a limit
 * (tenant-max-series) counts in st->unavailable and the others go on. */
int repair_store_fetched(repair_t *r, const Flamedb__Cluster__RepairAnswer *a, repair_stats_t *st,
                         errmsg_t *em);

/* Profiles a pass wants from a peer. */
typedef struct repair_want {
    char tenant[RING_TENANT_MAX + 1];
    uint64_t token, series_id;
    uint8_t profile_id[16];
    int64_t time_ns;
} repair_want_t;

typedef struct repair_wants {
    repair_want_t *v;
    size_t n, cap;
} repair_wants_t;

int repair_want_add(repair_wants_t *w, const Flamedb__Cluster__SeenEntry *e);
/* Repair thread: the peer's digest of ranges into out; left (NULL: not
 * wanted), per range, set for those the peer left out (its copy of them is
 * not to be trusted now: repair.c, digest_untrusted). */
int repair_remote_digest(repair_t *r, const char *peer, const ring_ranges_t *ranges, int64_t from_s,
                         int64_t until_s, repair_digest_t *out, uint8_t *left, errmsg_t *em);
/* Fetches w's profiles from the peer and stores them (repair thread). */
int repair_fetch(repair_t *r, const char *peer, const repair_wants_t *w, repair_stats_t *st,
                 errmsg_t *em);
/* Holds the pass to --stream-max-mb-per-s (sleeps as needed). */
void repair_throttle(repair_t *r, const repair_stats_t *st);

/* Streaming whole windows of one gained token interval (repair_stream.c):
 * where the interval's stream stands, kept by the thread across passes. */
#define REPAIR_STREAM_KEY_MAX 256 /* CLUSTER_STREAM_MAX_KEY */
/* Stream protocol versions (docs/cluster-protocol.md, "Stream protocol
 * versions"; --cluster-stream-version caps what this node speaks): */
#define REPAIR_STREAM_V_WHOLE 1  /* STREAM pages every window whole */
#define REPAIR_STREAM_V_FILL 2   /* + until_s, window_summaries (with ids), keys */
#define REPAIR_STREAM_V_HASHES 3 /* + summary_hashes, summaries by keys */
#define REPAIR_STREAM_V_TREE 4   /* + tree_look, tree_fanout, tree_buckets */
#define REPAIR_STREAM_VERSION REPAIR_STREAM_V_TREE

/* A hash tree over the old windows of one token interval (repair_tree.c):
 * the first look of a fill in stream protocol 4. A window's value is
 * repair_tree_window_hash(key, summary_hash); it falls into leaf
 * repair_tree_leaf(key); a leaf sums (mod 2^64) its windows' values, counts
 * them, those not counted exactly (summary_hash 0) and their totals per
 * resolution. A bucket of a fanout F (a power of two up to the leaves) sums
 * the leaves l with l % F == b. Plain values: the caller owns it. */
#define REPAIR_TREE_LEAVES 256
#define REPAIR_TREE_SUMMARY_DIGESTS 24 /* a hashed summary's bytes in a digest's, ×10 */
typedef struct repair_tree {
    uint64_t digest[REPAIR_TREE_LEAVES];
    uint64_t count[REPAIR_TREE_LEAVES];
    uint64_t inexact[REPAIR_TREE_LEAVES];
    int64_t totals[REPAIR_TREE_LEAVES][STORAGE_RESOLUTION_COUNT];
} repair_tree_t;
uint32_t repair_tree_leaf(const uint8_t *key, size_t n);
uint64_t repair_tree_window_hash(const uint8_t *key, size_t n, uint64_t summary_hash);
void repair_tree_add(repair_tree_t *t, const uint8_t *key, size_t n, uint64_t summary_hash, int res,
                     int64_t total);
/* t's root (the sum of every window's value); *count (may be NULL) its
 * windows, *inexact (may be NULL) those not counted exactly. */
uint64_t repair_tree_root(const repair_tree_t *t, uint64_t *count, uint64_t *inexact);
/* The fanout a source of count windows answers an asker of other_count
 * with: the power of two (at most the leaves) where digests and the
 * summaries of the buckets a descent enters cost least, as many windows
 * differing as the counts do (one when equal). */
uint32_t repair_tree_fanout(uint64_t count, uint64_t other_count);
int repair_tree_fanout_valid(uint32_t fanout);
/* t's buckets at fanout into digest[fanout] (and inexact[fanout], may be
 * NULL). */
void repair_tree_fold(const repair_tree_t *t, uint32_t fanout, uint64_t *digest, uint64_t *inexact);
/* The buckets of fanout where mine and the other side's digests theirs
 * differ, or either side holds a window not counted exactly
 * (their_inexact: the other side's such buckets), as bits (bucket b: bit
 * b % 8 of byte b / 8); how many. */
size_t repair_tree_differ(const repair_tree_t *mine, const uint64_t *theirs, uint32_t fanout,
                          const uint32_t *their_inexact, size_t n_inexact,
                          uint8_t bits[REPAIR_TREE_LEAVES / 8]);
/* Whether key's bucket of fanout has its bit set in bits (nbits_bytes long). */
int repair_tree_wanted(const uint8_t *bits, size_t nbits_bytes, uint32_t fanout, const uint8_t *key,
                       size_t n);
/* Adds to totals t's totals of the buckets of fanout not set in bits (NULL:
 * every bucket): the windows found alike. */
void repair_tree_alike_totals(const repair_tree_t *t, uint32_t fanout, const uint8_t *bits,
                              int64_t totals[STORAGE_RESOLUTION_COUNT]);
/* The windows of those buckets. */
uint64_t repair_tree_alike_count(const repair_tree_t *t, uint32_t fanout, const uint8_t *bits);
/* t over s's windows of [lo, hi] that end by until_s, as
 * storage_stream_summaries hands them on (a source's first look walks the
 * same); 0 or a negative error. */
int repair_tree_build(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s, repair_tree_t *t);

/* A fill's tree look (stream protocol 4), owned by the fill
 * (repair_fill.c): this node's tree, what the source answered, and the
 * buckets the descent asks for. */
typedef struct repair_tree_look {
    repair_tree_t mine;
    int answered; /* 0: no tree answer (a source of protocol 3), 1 alike, 2 digests */
    int descend;  /* the walk asks for the windows of `want` only */
    uint32_t fanout;
    uint64_t theirs[REPAIR_TREE_LEAVES];
    uint32_t inexact[REPAIR_TREE_LEAVES];
    size_t n_inexact;
    uint8_t want[REPAIR_TREE_LEAVES / 8];
} repair_tree_look_t;
/* Window keys a fill asks its source for (repair_fill.c), in key order.
 * Owned by the fill that fills it (repair_keys_free). */
typedef struct repair_keys {
    buf_t b;          /* the keys, one after another */
    size_t *end;      /* key i is b.data[end[i - 1] (0 for i = 0), end[i]) */
    uint64_t *series; /* key i's series (series_id ^ the tenant's hash) */
    size_t n, cap;
} repair_keys_t;
void repair_keys_free(repair_keys_t *k);

typedef struct repair_stream_state {
    uint64_t lo, hi;
    int done;   /* every window was stored (or was already) */
    int failed; /* a window was left out in the current walk: walk again */
    size_t after_len;
    uint8_t after[REPAIR_STREAM_KEY_MAX];
    int spans_done;      /* the span trees too (after the windows) */
    int checked;         /* then the totals of windows before the check's horizon agreed */
    uint32_t mismatches; /* passes in a row whose check disagreed with the source */
    uint32_t heals;      /* times cleared and streamed again for that (this process) */
    size_t spans_after_len;
    uint8_t spans_after[REPAIR_STREAM_KEY_MAX];
    /* Windows stored and answer bytes received by this interval's stream,
     * earlier processes' included for a move's (DATA_DIR/move.progress). */
    uint64_t windows, bytes;
    /* The source and horizon (stream_check_s) of the check that passed:
     * check_src "" when none. A move's are kept in DATA_DIR/move.progress
     * with heals and mismatches; check_kept: read from there, not yet taken
     * as this process's check (repair_pass.c, kept_check). */
    char check_src[RING_NODE_ID_MAX + 1];
    int64_t check_s;
    int check_kept;
    /* A fill (repair_fill_interval), not a move: only windows that end by
     * fill_until, name no kept profile, are not of a series in fill_skip and
     * that this node does not hold at all are stored; 0 for a move's
     * stream. Not saved. fill_probe: a walk that stores nothing and puts
     * in fill_skip every series with a window both hold differently. */
    int64_t fill_until;
    int fill_probe;
    u64map_t *fill_skip;   /* borrowed: series_id ^ the tenant's hash */
    const char *fill_peer; /* borrowed: the replica filled from (named in st->inexact) */
    /* A holds probe (repair_fill_holds_interval; fill_probe set too): stores
     * nothing, notes nothing; fill_short counts the windows this node holds
     * that the peer's does not hold stack by stack. */
    int fill_holds;
    uint64_t fill_short;
    int64_t fill_matched[STORAGE_RESOLUTION_COUNT]; /* this node's totals of the windows seen */
    uint64_t fill_left; /* windows of the fill left out: kept profiles, or a parts restart */
    /* A fill's first look (fill_summary): the walk asks for summaries and
     * repair_fill_summary sorts each into fill_want (to store or add to)
     * or fill_look (to compare stack by stack: a window held by both and
     * not named by ids on both), or skips its series; fill_old when the
     * source sent whole windows instead (an older node). fill_keys (may be
     * NULL): the walk asks for these windows only, fill_key_next the first
     * not yet asked (of a series not in fill_skip, unless fill_probe);
     * fill_no_match: leave fill_matched alone (counted at the first look). */
    int fill_summary, fill_old, fill_no_match;
    repair_keys_t *fill_want, *fill_look; /* borrowed */
    const repair_keys_t *fill_keys;       /* borrowed */
    size_t fill_key_next;
    /* The first look asks for hashed summaries (stream protocol 3,
     * fill_hashes): each window held on both sides whose hashes differ goes
     * into fill_ids, whose whole summaries a second look asks for by key.
     * fill_version: the stream protocol the source answered the first look
     * in (REPAIR_STREAM_V_*; 0 before it answered). */
    int fill_hashes;
    uint32_t fill_version;
    repair_keys_t *fill_ids; /* borrowed */
    /* Stream protocol 4: the first look sends this node's tree root first
     * (NULL: not); the source's answer and the descent kept in it. */
    repair_tree_look_t *fill_tree; /* borrowed */
} repair_stream_state_t;

/* The streams of a move, by interval (repair thread). */
typedef struct repair_streams {
    repair_stream_state_t *v;
    size_t n, cap;
} repair_streams_t;

/* One interval gained by a removal, as the repair thread handles it. */
typedef struct repair_rg_iv {
    uint64_t lo, hi;
    uint64_t since_ms;   /* wall ms this process first had it */
    uint64_t settled_ms; /* its removal settled at (wall ms): cleared then; 0 not yet */
    int waiting;         /* not cleared for want of a source: logged once */
} repair_rg_iv_t;

/* An interval the window check handed to the regain, and the replica it
 * found holding the most of it: its stream source of choice. */
typedef struct repair_prefer {
    uint64_t lo, hi;
    char node[RING_NODE_ID_MAX + 1];
} repair_prefer_t;

/* The stream state of [lo, hi] in l, added when new; NULL: no memory. */
repair_stream_state_t *repair_stream_state(repair_streams_t *l, uint64_t lo, uint64_t hi);
/* Appends [lo, hi] to olo and ohi (*on of them, both grown to *cap) cut at
 * the edges of the intervals glo/ghi (gn, a removal's gains): each piece
 * lies wholly inside one of them or outside all. A full repair's plan can
 * list an interval from a ring on which this node replicated more (before
 * its member table was whole) that straddles a gain: whole, it was never
 * united by id, and its part that another replica regains waited for good.
 * 0 or ERR_NOMEM. */
int repair_cut_at_gains(const uint64_t *glo, const uint64_t *ghi, size_t gn, uint64_t lo,
                        uint64_t hi, uint64_t **olo, uint64_t **ohi, size_t *on, size_t *cap);
/* Repair thread: clears this store's copy of the n intervals before they
 * are streamed in whole (storage_range_clear), counted; 0 or an error. */
int repair_clear(repair_t *r, const uint64_t *lo, const uint64_t *hi, size_t n);

/* Called after each page of a stream (windows or span trees) was stored
 * and ss moved past it. */
typedef void (*repair_stream_page_fn)(repair_t *r);
/* Repair thread: streams [lo, hi] from peer, from where ss stands, until
 * the end or an error; ss->done once every window was stored. page (may be
 * NULL) is told after every page. */
int repair_stream_interval(repair_t *r, const char *peer, repair_stream_state_t *ss,
                           repair_stats_t *st, repair_stream_page_fn page, errmsg_t *em);
/* Repair thread: the window check's fill of [lo, hi] from peer (docs/cluster.md,
 * "Old windows no profile id names"). A first look at the summaries of
 * the peer's windows that end by until_s (STREAM window_summaries), then at
 * the windows that need their stacks compared (by key), stores nothing: it
 * finds the series with a window both copies hold differently (by id;
 * else totals, then stacks; counted in st->wc_inexact: their union cannot
 * be told); those series are left whole as they are. Then the windows of
 * the other series that this node does not hold at all (no `totals` key:
 * this node holds no profile of that series, resolution and window, so the
 * peer's is the union, exactly), or holds fewer profiles of by id, are
 * asked for by key and stored or added to; st->wc_filled counts them. A
 * source that sends no summaries is walked twice whole, as before. No
 * span trees, no totals check (the window check compares again).
 * *left_out (may be NULL) gets the windows left for the next check (kept
 * profiles, parts, changed while sent). */
int repair_fill_interval(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int64_t until_s,
                         repair_stats_t *st, uint64_t *left_out, errmsg_t *em);
/* Repair thread: before a copy whose sums hold this node's is taken whole
 * (the regain), its windows of [lo, hi] that end by until_s, each against
 * this node's where it holds one: *short_out counts those where this node
 * holds more on some stack (the sums were fooled: two profiles in one
 * bucket). Windows that cannot be compared (in parts, naming kept
 * profiles) are left to the sums. matched[res] gets this node's totals of
 * the windows the peer's walk named (added to): less than this node's sums
 * means a window of this node's the peer does not hold at all. 0, or a
 * negative error (nothing known). */
int repair_fill_holds_interval(repair_t *r, const char *peer, uint64_t lo, uint64_t hi,
                               int64_t until_s, repair_stats_t *st, uint64_t *short_out,
                               int64_t matched[STORAGE_RESOLUTION_COUNT], errmsg_t *em);
/* repair_fill.c: what a fill's walk does with window m (whole: its kept
 * profiles are all known, not only a first part's): 1 to store it, 2 to
 * add to this node's window what the peer's holds beyond it (by profile
 * id: repair_fill_add), 0 to leave it, or a negative error (the walk
 * stops). */
int repair_fill_wanted(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                       repair_stream_state_t *ss, repair_stats_t *st, int whole, errmsg_t *em);
/* repair_fill.c: a fill's first look at the summary m (no tree: its key,
 * whole total and window_profiles): into ss->fill_want when this node
 * lacks the window or holds less of it by profile id, into ss->fill_look
 * when held here and not comparable by id; a window held differently by
 * id counts inexact and puts its series in ss->fill_skip. A holds probe
 * (ss->fill_holds) counts ss->fill_short and ss->fill_matched instead. 0
 * or a negative error. */
int repair_fill_summary(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                        repair_stream_state_t *ss, repair_stats_t *st, errmsg_t *em);
/* repair_fill.c: a fill's first look at the hashed summary m (stream
 * protocol 3): m->key holds its key past the first m->key_shared bytes of
 * key (*key_len bytes: the key before it in the answer; then m's), and
 * m->summary_hash its hash. Into ss->fill_want when this node lacks the
 * window; nowhere when both hold it alike by hash; into ss->fill_ids when
 * held here with another hash (its ids are asked for next); into
 * ss->fill_look when either side's is not counted exactly. A holds probe
 * adds to ss->fill_matched too. 0, or a negative error (a key that does not
 * parse: ERR_CORRUPT). */
int repair_fill_hashed(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                       uint8_t key[REPAIR_STREAM_KEY_MAX], size_t *key_len,
                       repair_stream_state_t *ss, errmsg_t *em);
/* repair_fill.c: adds to this node's window of m the profiles the peer's
 * holds beyond it (m's residual, or whole when put together from parts,
 * less this node's window, stack by stack; their ids and count), stored
 * only while this node's window still holds what it was compared with
 * (storage_stream_window_t.add_to); counted in st->wc_filled, or in
 * ss->fill_left when it changed meanwhile. syms: the residual's names. */
int repair_fill_add(repair_t *r, const Flamedb__Cluster__StreamWindow *m, const calltree_t *whole,
                    const symtab_t *syms, repair_stream_state_t *ss, repair_stats_t *st,
                    errmsg_t *em);
/* repair_fill.c: what t holds, whatever its node order: the sum (mod 2^64)
 * over its nodes with a self value of a hash of (the path of symbols from
 * the root, the self value). Children are unique by symbol, so a path
 * names one node: two trees with the same stacks and values have the same
 * digest, on any node. ERR_NOMEM, ERR_CORRUPT (a child before its parent). */
int repair_tree_digest(const calltree_t *t, uint64_t *out);
/* repair_stream.c: walks ss's windows on peer (STREAM, paged on from
 * ss->after) and takes each (a fill's: as repair_fill_wanted says);
 * ss->done once walked to the end with none left out. */
int repair_stream_walk(repair_t *r, const char *peer, repair_stream_state_t *ss, repair_stats_t *st,
                       repair_stream_page_fn page, errmsg_t *em);
/* Repair thread: streams ss (a piece of one range) from the replicas
 * reps[0..n) of that range in v, in order, from the first that is not this
 * node, is reachable and not marked in v and answered so far in this pass. One that does
 * not answer (a timeout, it cannot be sent to, or repair_tick saw it
 * marked down while a request waited: killed since the pass took its
 * view) is left for the rest of the pass (r->unanswered) and the
 * stream goes on from its cursor with the next (the window markers keep a
 * window stored from the first from being added again; span trees merge
 * by profile id), counted and logged. `what` names the stream in the log
 * ("join", "regain"). 1 when streamed and checked. */
int repair_stream_replicas(repair_t *r, const cluster_view_t *v, const uint32_t *reps, uint32_t n,
                           repair_stream_state_t *ss, repair_stats_t *st,
                           repair_stream_page_fn page, const char *what);
/* The first replica of reps from index *k on that is not this node, is
 * reachable in v, is not marked in v (another node lists it in hints_for:
 * it missed writes) and answered so far in this pass (its name); NULL:
 * none. */
const char *repair_next_source(const repair_t *r, const cluster_view_t *v, const uint32_t *reps,
                               uint32_t n, uint32_t *k);
/* Whether rc says a peer did not answer (it may be dead): the pass asks
 * another replica from then on. */
int repair_rc_unanswered(int rc);
/* repair_regain_file.c, repair thread: DATA_DIR/regain.progress, where a
 * regain stands (its cleared intervals, with when their removal settled,
 * and the stream cursor of every piece), written to a temporary name,
 * fsynced and renamed; removed when there is nothing to keep. */
int repair_regain_progress_save(repair_t *r);
/* Repair thread: a streamed interval (a join's range, a regain's piece)
 * whose totals check disagreed with its source in o.heal_after passes in a
 * row (ss->mismatches) had a window stored short or long, and no later
 * pass mends that (the window's marker keeps the stream from storing it
 * again). So it is cleared and streamed again from its start: its cursor
 * reset in ss, then save(r) (NULL: none; an error keeps the old cursor and
 * clears nothing), then cleared (repair_clear), logged as `what` [lo, hi]
 * and counted (stream_heals), at most o.heals times per interval
 * (ss->heals); after that, logged once as an error and left as it is. 1
 * when it cleared, else 0 (not due, over the bound, or save failed). */
int repair_stream_heal(repair_t *r, repair_stream_state_t *ss, const char *what,
                       int (*save)(repair_t *r));
/* repair_stream_heal of a regain piece, its cursor saved in the progress
 * file before the clear. */
int repair_regain_heal(repair_t *r, repair_stream_state_t *ss);
/* repair_regain_file.c: a stream cursor as a progress file's line
 * "piece LO HI DONE SPANS_DONE FAILED AFTER SPANS_AFTER", then " WINDOWS
 * BYTES" (hex) when counts >= 1, then " HEALS MISMATCHES CHECK_S
 * CHECK_SRC" (hex; CHECK_SRC the id in hex, "-" when no check passed) when
 * counts is 2, into b; and such a line (cut in place) added to l, its
 * check kept (check_kept) when it names one. ERR_CORRUPT for a line that
 * does not parse. */
int repair_progress_piece_put(buf_t *b, const repair_stream_state_t *ss, int counts);
int repair_progress_piece_take(repair_streams_t *l, char *line, int counts);
/* repair_move_file.c, repair thread: DATA_DIR/move.progress, where the
 * streams of the move this node gains ranges in stand (the move's
 * fingerprint: its intervals were cleared; each interval's cursor), written
 * to a temporary name, fsynced and renamed after the clear, at each range's
 * end and after a page at most every o.progress_ms (the store's WAL synced
 * first: the cursor never covers a window the store could lose). */
int repair_move_progress_save(repair_t *r);
/* Reads it into r->kept (no file: present 0); one that does not parse is
 * ERR_CORRUPT (nothing kept: the move clears and streams afresh). */
int repair_move_progress_load(repair_t *r, errmsg_t *em);
/* Removes it (the move is done, or another one began). */
int repair_move_progress_remove(repair_t *r);
/* Why the totals check of ss that an earlier process of this move passed
 * (kept in DATA_DIR/move.progress, ss->check_kept) no longer stands in
 * view v, where cur (ncur) are the range's current replicas; NULL when it
 * does (a static string otherwise). Once the check passed, the stream of
 * ss was over: this node's copy changed since only profile by profile
 * (writes it took as a joining owner, which the source took too; hints and
 * fetches of writes it missed while down), and every pass compares profile
 * ids by digest over the seen span, which must hold the check's horizon
 * (and that horizon not be after r->stream_check_s) so that span and check
 * leave no window between them. What that cannot tell is a source whose
 * copy changed otherwise: one no longer among cur (removed, or another
 * move), or listed in hints_for (v->marked: it missed writes; its copy is
 * being brought back). */
const char *repair_move_check_void(repair_t *r, const cluster_view_t *v, const uint32_t *cur,
                                   uint32_t ncur, const repair_stream_state_t *ss);
/* Reads it into r->rg (intervals not cleared, pieces not started are not
 * in it); a file that does not parse is ERR_CORRUPT (nothing taken: the
 * regain clears and streams afresh). No file: 0, nothing. */
int repair_regain_progress_load(repair_t *r, errmsg_t *em);
/* Removes it (also when the regain is done). */
int repair_regain_progress_remove(repair_t *r);
/* One fetched profile's span/trace trees (repair_fetch_spans.c): the Span
 * messages (in the arena; v itself owned), their trees summed for their
 * symbols (owned, NULL when none), and whether the profile is `over` (even
 * the names of its trees past a quarter of max_message_bytes: counted
 * unavailable) or `cut` (left out for the run's budget: asked again). */
typedef struct repair_pspans {
    Flamedb__Cluster__Span **v;
    size_t n, cap, bytes;
    calltree_t *syms;
    int over, cut;
} repair_pspans_t;
/* Pool: the span trees of the profiles of entries e[0..n), all of one
 * tenant and token, into p[0..n) (zeroed by the caller; free with
 * repair_pspans_free), each read through its own profile_span_index
 * entries (storage_profile_spans). With n > 1 the
 * run's trees are bounded by half of max_message_bytes (cut past it). */
int repair_fetch_spans(storage_t *s, const repair_options_t *o,
                       Flamedb__Cluster__SeenEntry *const *e, size_t n, arena_t *arena,
                       repair_pspans_t *p);
/* part->spans := x's Span messages (the array in arena). */
int repair_pspans_put(arena_t *arena, const repair_pspans_t *x, Flamedb__Cluster__SeriesPart *part);
/* Frees p[0..n) and p (NULL: no-op). */
void repair_pspans_free(repair_pspans_t *p, size_t n);
/* Pool: the answer to a SPANS request, span trees after q->after_key. */
int repair_serve_spans(storage_t *s, const repair_options_t *o,
                       const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                       Flamedb__Cluster__RepairAnswer *a);
/* One window's residual and profile lists in parts (repair_parts.c): its
 * nodes in preorder then its kept and untreed profiles; part k the run
 * order[cut[k], cut[k + 1]) with the path to its first node, and the
 * profiles [pcut[k], pcut[k + 1]) (kept first, then untreed). Owned by the
 * caller (repair_parts_free). */
typedef struct repair_parts {
    uint32_t *order;
    size_t n, np;
    uint32_t *cut, *pcut;
    uint32_t *first;       /* by symbol index: the preorder position first naming it */
    uint32_t *psym, *poff; /* part k of a symbol's pieces: its index (else UINT32_MAX), offset */
    uint32_t *anchor;      /* part k's tree is rooted at its first node's ancestor this deep */
    int anchored;          /* planned with anchors (repair_parts_sizes_t) */
    size_t cap;            /* of cut, pcut, psym, poff, anchor */
    uint32_t *map;         /* scratch of repair_parts_build (CALLTREE_NONE between builds) */
    uint32_t nparts;
    uint32_t over;     /* ERR_LIMIT: the preorder position of the node that did not fit */
    size_t over_bytes; /* and what its part would have taken */
} repair_parts_t;
/* What a part costs at most per node and per symbol (besides its name and
 * file), and per profile entry (besides its tenant) and untreed total. */
#define PART_NODE_BYTES 24
#define PART_SYMBOL_BYTES 32
#define PART_ENTRY_BYTES 64
#define PART_TOTAL_BYTES 12
typedef struct repair_parts_sizes {
    size_t budget; /* a part's share of the message limit */
    size_t limit;  /* what one part may take at most (a part of one node may pass the budget) */
    size_t nkept, nuntreed;           /* profiles cut across the parts (0, 0: none) */
    size_t kept_bytes, untreed_bytes; /* what one costs */
    int pieces;  /* a symbol too large for one part goes in pieces of parts with no node */
    int anchors; /* a part is rooted at the shallowest ancestor its run needs, not the root */
} repair_parts_sizes_t;
/* PART_SYMBOL_BYTES plus the symbol's name and file in names. */
size_t repair_parts_sym_cost(const symtab_t *names, uint64_t id);
/* What t (names: its symbols' names) and z's profiles take in one part. */
size_t repair_parts_whole_cost(const calltree_t *t, const symtab_t *names,
                               const repair_parts_sizes_t *z);
/* Cuts t and z's profiles into parts of at most z->budget bytes (a part
 * holds one unit at least; with z->pieces, a node whose symbol would take
 * its part past z->limit has its symbol's name and file sent before it in
 * parts of pieces, a budget each); ERR_LIMIT (p->over, p->over_bytes set)
 * when a part still exceeds z->limit (the node's path alone, without
 * z->anchors, or its symbol without z->pieces). With z->anchors part k is
 * rooted at its first node's ancestor anchor[k] deep (repair_parts.c). */
int repair_parts_plan(const calltree_t *t, const symtab_t *names, const repair_parts_sizes_t *z,
                      repair_parts_t *p);
/* Part k of t into dst (an empty tree): O(the part and its path), p->map
 * as scratch (so one plan builds one part at a time). */
int repair_parts_build(const calltree_t *t, repair_parts_t *p, uint32_t k, calltree_t *dst);
/* fn(ctx, id) for each symbol part k carries: those first named in its run. */
int repair_parts_symbols(const calltree_t *t, const repair_parts_t *p, uint32_t k,
                         int (*fn)(void *ctx, uint64_t id), void *ctx);
void repair_parts_free(repair_parts_t *p);
/* A window in parts as its source read it (repair_partcache.c): what each
 * of its parts is built from, kept between the requests for them. */
typedef struct repair_window {
    uint64_t lo, hi; /* the request it answers: interval, cursor, lists cut or not */
    uint8_t *after;
    size_t after_len;
    int slices; /* 1: lists cut across parts, 2: symbols in pieces (what it was planned for) */
    char tenant[RING_TENANT_MAX + 1];
    uint64_t token, series_id;
    int res;
    int64_t window_s, total;
    uint8_t *key, *labels; /* the `blocks` key; the series' labels encoded */
    size_t key_len, labels_len;
    calltree_t *tree; /* the residual */
    symtab_t *names;  /* its symbols' names and files */
    storage_stream_profile_t *kept, *untreed;
    size_t nkept, nuntreed;
    uint8_t *wprof; /* the residual's window profiles (storage_stream_window_t) */
    size_t wprof_len;
    repair_parts_t plan;
    uint64_t digest;
    uint64_t used_ms;
} repair_window_t;
/* A copy of w (its residual, lists, key; after: the request's cursor) into
 * *out, caller owns (repair_window_free, or given to repair_partcache_put);
 * labels, names, plan and digest are the caller's to fill. */
int repair_window_snapshot(const storage_stream_window_t *w, const uint8_t *after, size_t after_len,
                           repair_window_t **out);
void repair_window_free(repair_window_t *w);
/* At most max snapshots, none idle longer than idle_ms (max 0: none kept). */
typedef struct repair_partcache repair_partcache_t;
int repair_partcache_new(size_t max, uint64_t idle_ms, repair_partcache_t **out);
void repair_partcache_free(repair_partcache_t *c);
/* The snapshot answering (lo, hi, after, slices), borrowed with the cache
 * locked until repair_partcache_release; NULL (unlocked) when none. */
repair_window_t *repair_partcache_get(repair_partcache_t *c, uint64_t lo, uint64_t hi,
                                      const uint8_t *after, size_t after_len, int slices,
                                      uint64_t now_ms);
void repair_partcache_release(repair_partcache_t *c);
/* Takes ownership of w (w->lo, hi, slices set), replacing one of the same
 * cursor, else the least recently used when full. */
void repair_partcache_put(repair_partcache_t *c, repair_window_t *w, uint64_t now_ms);
/* A window that travels in parts, put together in memory on the receiver
 * (repair_partsin.c): nothing is stored before its last part (a stream cut
 * short asks for it from its first part again). The tree is bounded by the
 * max_tree_nodes it starts with, a symbol in pieces by STREAM_PIECES_MAX,
 * and everything else it gathers (the lists' slices, 32 bytes a profile,
 * the symbols' names and files with REPAIR_PARTSIN_SYMBOL_BYTES each, the
 * symbol in pieces) by the max_bytes it starts with
 * (--stream-receive-max-bytes). Owns what it points to
 * (repair_partsin_drop). */
typedef struct repair_partsin {
    calltree_t *tree;
    symtab_t *syms;
    uint32_t next; /* the part wanted next */
    uint64_t digest;
    unsigned restarts;
    storage_stream_profile_t *kept, *untreed; /* profile_slices: the slices so far */
    size_t nkept, kept_cap, nuntreed, untreed_cap;
    uint8_t *piece; /* the symbol coming in pieces: its name then file so far */
    size_t piece_have, piece_total;
    uint32_t parts; /* how many part 0 said the window has */
    uint32_t *path; /* the tree's nodes from the root to the last part's last node */
    size_t path_len, path_cap;
    size_t bytes;     /* what it holds, counted against max_bytes */
    size_t max_bytes; /* 0: no bound */
    int over;         /* the last ERR_LIMIT was max_bytes (not the tree's node limit) */
} repair_partsin_t;
/* What one symbol costs a window in parts besides its name and file. */
#define REPAIR_PARTSIN_SYMBOL_BYTES 48
/* Bytes of one symbol's name and file a window's pieces may add up to. */
#define STREAM_PIECES_MAX (4u << 20)
/* The symbols of answer a put into tab. */
int repair_symbols_put(const Flamedb__Cluster__RepairAnswer *a, symtab_t *tab);
/* Frees and empties p, keeping its restarts. */
void repair_partsin_drop(repair_partsin_t *p);
/* 1 when m is the part p wants next (of the same digest and number of
 * parts after part 0). */
int repair_partsin_follows(const repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m);
/* An empty window of this digest (before its part 0), bounded by
 * max_tree_nodes and max_bytes (0: none). */
int repair_partsin_start(repair_partsin_t *p, uint64_t digest, size_t max_tree_nodes,
                         size_t max_bytes);
/* Part m (of answer a: its symbols) added: its piece of the tree, its
 * slices of the lists (m->profile_slices), its pieces of a symbol.
 * A part's tree is rooted at the node m->anchor_depth deep on the path to
 * the previous part's last node (0: the root).
 * ERR_CORRUPT on a malformed or out-of-order part (or an anchor off that
 * path), ERR_LIMIT past the
 * tree's max_tree_nodes or (p->over set, nothing of m kept but its tree)
 * past max_bytes. The caller counts p->next. */
int repair_partsin_add(repair_partsin_t *p, const Flamedb__Cluster__RepairAnswer *a,
                       const Flamedb__Cluster__StreamWindow *m);
/* The last part m with the lists gathered from all p's parts: out->w,
 * whose entries point into out and p (valid until repair_sliced_free and
 * until p is dropped). */
typedef struct repair_sliced {
    Flamedb__Cluster__StreamWindow w;
    Flamedb__Cluster__SeenEntry *e, **v;
    int64_t *totals;
} repair_sliced_t;
int repair_partsin_sliced(const repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m,
                          repair_sliced_t *out);
void repair_sliced_free(repair_sliced_t *s);
/* What serving a STREAM request may use and counts (NULL: no cache). */
typedef struct repair_serve_env {
    repair_partcache_t *cache;
    uint64_t now_ms;
    uint64_t window_reads; /* out: windows in parts read from storage */
    uint64_t parts;        /* out: parts of windows answered */
} repair_serve_env_t;
/* Pool: the answer to a STREAM request, windows after q->after_key. */
int repair_serve_stream(storage_t *s, const repair_options_t *o,
                        const Flamedb__Cluster__RepairRequest *q, repair_serve_env_t *env,
                        arena_t *arena, Flamedb__Cluster__RepairAnswer *a, errmsg_t *em);

struct repair {
    uv_loop_t *loop;
    storage_t *storage;
    cluster_t *c;
    repair_options_t o;
    cluster_ops_t ops;
    cluster_wire_limits_t limits;
    uv_thread_t thread;
    int thread_started;
    uv_mutex_t mu;
    uv_cond_t cond;
    uv_async_t async;
    workq_job_t join_work;
    workq_t *workq;          /* the node's pool lanes, or own_workq */
    workq_t *own_workq;      /* when the node gave none */
    int has_lock, has_async; /* what repair_open_for_cluster got to */
    atomic_int closing;      /* set under mu; read anywhere */
    /* under mu */
    int demand;           /* a caller waits for a pass (repair_run) */
    int asked;            /* a peer asked for one (RUN): at most every REPAIR_ASKED_GAP_MS */
    uint64_t soon_ms;     /* a pass with its window check at or after this (wall ms; 0: none) */
    uint64_t soon_gap_ms; /* the last margin asked: a check that left ranges retries after it */
    repair_call_t *call;
    uint64_t next_id, started_gen, done_gen;
    int result_rc;
    buf_t result;
    repair_counters_t counters;
    int joining;              /* the node streams its ranges in before it turns active */
    int join_verified;        /* set by the thread: the loop turns the node active */
    int leave_verify;         /* the loop asks the thread to verify the takers (leaving) */
    int leave_result;         /* the thread's answer: 1 verified, -1 not yet (the loop takes it) */
    uint64_t leave_fp;        /* with it: repair_move_fp of the move the check verified */
    uint64_t join_settled_ms; /* a pass verifying the join starts after this (wall ms) */
    uint64_t settle_ms;       /* a move's settle margin (cluster_move_settled_ms - its start) */
    repair_partcache_t *partcache; /* windows in parts being served (thread-safe) */
    /* thread only: streams of gained intervals, and since when this node gains */
    repair_streams_t streams;
    uint64_t gains_since_ms;
    int gains_cleared; /* the move's gained intervals were cleared (here, or kept in the file) */
    uint64_t gains_fp; /* the fingerprints of that move's two rings */
    /* thread only: DATA_DIR/move.progress as an earlier process left it
     * (repair_move_file.c), until a pass of that move takes it over or
     * clears afresh; present: the file named a move */
    struct {
        int loaded, present, saved;
        uint64_t fp;
        uint64_t saved_ms; /* when a page last wrote it (wall ms) */
        repair_streams_t streams;
    } kept;
    /* under mu: the token intervals gained by removals (cluster_regain.c) */
    struct {
        uint64_t *lo, *hi;
        size_t n, cap;
        uint64_t gen;
    } regain;
    uint64_t regain_done; /* a generation streamed and followed by a complete pass */
    /* under mu: a full repair (cluster_full.c): its mark's generation (0:
     * none), since when (wall ms), and the generation a pass converged */
    uint64_t full_gen, full_since_ms, full_done;
    /* under mu: a full repair is on, and the intervals of its regain a
     * removal gave (fu_lo/fu_hi, fu_n; fu_all: every one counts as such):
     * an interval of the mark's own (none of these) that no replica serves
     * whole may be united by id (repair_regain.c); a removal's never */
    int full_union, fu_all;
    uint64_t *fu_lo, *fu_hi;
    size_t fu_n;
    /* under mu: when the full repair that last converged here was set (wall
     * ms, the loop's; 0: none since the start): every range this node
     * replicates was streamed whole after it, so its DONE says so and
     * lifts the marks that a pass alone cannot (replicate_past.c) */
    uint64_t whole_since_ms;
    /* under mu: the loop's ask to lift mark `ask` by its evidence
     * (cluster_full_evidence) and the thread's answer: granted when nothing
     * of the regain was cleared; then held: nothing is cleared until the
     * loop, having dropped the mark's intervals, releases it */
    struct {
        uint64_t ask, answer;
        int granted, held;
    } lift;
    /* thread only: where the regain stands (repair_regain.c), kept in
     * DATA_DIR/regain.progress (repair_regain_file.c) */
    struct {
        uint64_t gen, streamed_ms;
        int loaded; /* the progress file was read */
        repair_rg_iv_t *iv;
        size_t niv, ivcap;
        repair_streams_t streams; /* pieces of the intervals, with their cursors */
    } rg;
    /* thread only, per current-ring node: it failed to answer a stream
     * request in this pass, so the pass's remaining streams (a join's, a
     * regain's) are asked of another replica; cleared by each pass */
    uint8_t unanswered[RING_MAX_NODES];
    int64_t stream_check_s; /* the stream check compares windows ending before this (unix s) */
    /* the window check (repair_windows.c): thread only, when the next
     * scheduled one is due (wall ms) and each handed interval's preferred
     * source; under mu, the intervals handed and not yet taken by the loop,
     * and whether the pass running was asked for on demand */
    struct {
        uint64_t due_ms;
        repair_prefer_t *prefer;
        size_t nprefer, prefercap;
        uint64_t *lo, *hi;
        size_t n, cap;
        int demanded;
        /* under mu: the generation of the last voided mark the loop asked
         * a check for (repair_windows_void), the last one a complete check
         * answered, and that answer until the loop takes it (0: taken) */
        uint64_t void_gen, void_checked, void_done;
        uint64_t void_logged; /* thread only: the mark an incomplete check was logged for */
    } wc;
    /* thread only: the last full-repair outcome logged, passes not logged since */
    int full_logged, full_quiet;
    /* thread only: what the last pass saw */
    struct {
        int complete, holds, joining, gains;
        uint64_t missing, started_ms, peers;
        uint64_t move_fp; /* repair_move_fp of the view the pass ran with */
    } last;
    /* loop only */
    repair_waiter_t *waiters;
    uint64_t delivered_gen;
    int serving;
};

/* Loop thread: a copy of the counters. */
void repair_counters_take(repair_t *r, repair_counters_t *out);
/* Any thread: registers st's fields (borrowed until rendered) on reg. */
void repair_counters_register(const repair_counters_t *st, metrics_registry_t *reg);

/* Wall-clock unix ms of the module's clock. */
uint64_t repair_now_ms(repair_t *r);
/* Repair thread: one round trip with peer (NULL: take a view reference into
 * *view, on the loop); q's request id and deadline are set here; q NULL
 * with ans NULL: a note, done once sent. On success *ans owns the answer,
 * its body decoded and checked (free with cluster_msg_free). */
int repair_call_once(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                     cluster_msg_t *ans, const cluster_view_t **view, errmsg_t *em);
/* repair_call_once, asked again (REPAIR_RETRIES times) while the peer is busy. */
int repair_call(repair_t *r, const char *peer, Flamedb__Cluster__RepairRequest *q,
                cluster_msg_t *ans, errmsg_t *em);
void repair_request_init(Flamedb__Cluster__RepairRequest *q, Flamedb__Cluster__RepairKind kind,
                         int64_t from_s, int64_t until_s);
/* Where a paged IDS request goes on: a copy of the last entry of the page
 * before (its tenant and profile id held here), or none before the first
 * page. A seen index scan ignores its time; a profile_trees scan orders by
 * it (storage_ptree_scan). */
typedef struct repair_ids_cursor {
    Flamedb__Cluster__SeenEntry after;
    char tenant[RING_TENANT_MAX + 1];
    uint8_t pid[16];
    int set; /* 0 (as zeroed): from the first entry */
} repair_ids_cursor_t;
/* cur pages on after the last of a page's n entries (none: unchanged). */
void repair_ids_cursor_next(repair_ids_cursor_t *cur, Flamedb__Cluster__SeenEntry *const *entries,
                            size_t n);
/* An IDS request: one page (REPAIR_IDS_PAGE entries) of the ids of [lo, hi]
 * in [from_s, until_s), where cur says (q points into cur: keep it while q
 * is used). */
void repair_ids_request_init(Flamedb__Cluster__RepairRequest *q, uint64_t lo, uint64_t hi,
                             int64_t from_s, int64_t until_s, repair_ids_cursor_t *cur);
/* Repair thread, leaving: 0 when every node that takes over ranges of this
 * node holds, by digest, every profile this node holds of them (per range
 * and hour, at least this node's count; an equal count with an equal
 * hash); else ERR_UNAVAILABLE naming the first that does not. *move_fp
 * gets the repair_move_fp of the move checked (the loop leaves only while
 * its view still shows that move). */
int repair_verify_leave(repair_t *r, uint64_t *move_fp, errmsg_t *em);
/* Loop: asks the thread for repair_verify_leave; its answer comes back
 * through cluster_move_leave_verified. */
void repair_ask_verify_leave(repair_t *r);

/* Loop: the intervals this node gained by removals (copied), generation
 * gen; n 0 when none are left. */
void repair_regain_set(repair_t *r, const uint64_t *lo, const uint64_t *hi, size_t n, uint64_t gen);
/* Repair thread, in a pass: once the removal settled, clears and streams
 * every regain interval from a reachable replica; 1 when all are streamed
 * and checked (or there are none). */
int repair_regain_stream(repair_t *r, const cluster_view_t *v, uint64_t t0, repair_stats_t *st);
/* Repair thread, after a pass that started at t0: a complete pass after the
 * regain was streamed finishes it (the loop is told). 1 when no regain is
 * left that a restart would resume (DATA_DIR/regain.progress): none was
 * being streamed, or this call finished it; 0 while one is. */
int repair_regain_after(repair_t *r, int complete, uint64_t t0);
/* Loop: full repair mark gen (0: none); the thread runs passes while one
 * is set and tells the loop (cluster_full_finished) once a complete pass
 * that started a settle margin after this call found nothing missing. */
void repair_full_set(repair_t *r, uint64_t gen);
/* Loop: whether every interval of the regain is the full repair mark's own
 * (this node holds its copy of it; no removal gave it): only such an
 * interval, which no replica serves whole while every other replica of it
 * answers, is completed by fetching by id from each instead (its copy is
 * kept: fetching only adds), so a full repair whose other replicas are
 * voided converges (docs/cluster.md, "A full repair that no replica
 * serves whole"). */
/* on: a full repair is on; lo/hi (n, copied) the intervals of its regain
 * a removal gave, all: every one counts as such (also when the copy fails:
 * ERR_NOMEM then). */
int repair_full_union_set(repair_t *r, int on, const uint64_t *lo, const uint64_t *hi, size_t n,
                          int all);
/* Loop: a full repair set at since_ms (wall) converged: announced with
 * every complete pass from now on (DONE's whole_since_unix_ms). */
void repair_whole_set(repair_t *r, uint64_t since_ms);
/* Loop: this node's join ended without a verifying pass (it turned active
 * with no active member to stream from): its passes are no longer part of
 * a move (every pass polled for one, and none ran the window check). */
void repair_join_ended(repair_t *r);
/* Loop: asks the thread whether mark gen may be lifted by its evidence
 * (nothing of the regain cleared); the answer comes back through
 * cluster_full_lift. */
void repair_full_lift_ask(repair_t *r, uint64_t gen);
/* Loop, once it handled a granted answer: the thread clears again. */
void repair_full_lift_release(repair_t *r);
/* 1 when the thread has a regain to work on. */
int repair_regain_pending(repair_t *r);

/* repair_windows.c, repair thread, at the end of a complete pass (not
 * during a move, a regain or a full repair): when asked for on demand, due,
 * or while a voided mark waits for one (repair_windows_void), compares per range the totals of the
 * windows older than the seen span with every other replica's and hands the ranges where another
 * holds more to the loop (repair_windows_take), to be cleared and streamed whole from that replica.
 */
void repair_windows_check(repair_t *r, const cluster_view_t *v, repair_stats_t *st);
/* One compared copy of a range for repair_windows_pick: its sums
 * (REPAIR_WINDOW_BUCKETS x STORAGE_RESOLUTION_COUNT, borrowed) and whether
 * its profile_trees lack a profile this node's name (then it is never
 * taken as the whole copy, whatever its sums: two profiles in one bucket
 * can make a copy that lacks one look as if it held this node's). */
typedef struct repair_wc_copy {
    const int64_t *sums;
    int lacks_mine;
} repair_wc_copy_t;
/* Which of the n copies holds every other one and more than this node's
 * (mine), and lacks none of this node's profiles: its index, or -1. *mixed
 * (added to) counts those that hold more than this node's somewhere and
 * either less elsewhere or lack one of its profiles: left different here. */
int repair_windows_pick(const int64_t *mine, const repair_wc_copy_t *cs, uint32_t n, int *mixed);
/* Loop: the intervals handed (caller frees both arrays; n 0: none). */
void repair_windows_take(repair_t *r, uint64_t **lo, uint64_t **hi, size_t *n);
/* Repair thread: moves the preferred source of the interval holding [a, b]
 * (when one is recorded and among them) to the front of reps. */
void repair_windows_prefer(const repair_t *r, const cluster_view_t *v, uint64_t a, uint64_t b,
                           uint32_t *reps, uint32_t n);
void repair_windows_free(repair_t *r);
/* Repair thread: every profile peer's profile_trees name in [lo, hi]
 * (profile time from an hour inside --profile-retention on, recent ones
 * too) that this node holds neither as a tree nor as seen, fetched by id
 * and stored (each once); *fetched and st->wc_fetched count them. Fetching
 * only adds: peer's copy is never taken for the whole (it may be marked,
 * or in a full repair: such a node answers these IDS requests). 0 or the
 * error. */
int repair_windows_pull(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, uint64_t *fetched,
                        repair_stats_t *st, errmsg_t *em);
/* Repair thread: the rest of a union with peer's copy of [lo, hi]: its old
 * windows, those that end before the span repair_windows_pull fetches by id
 * (nothing with --profile-retention 0), filled as a window check fills them
 * (repair_fill_interval: a window this node does not hold at all is
 * copied, one peer's holds more profiles of by id is added to; docs/cluster.md,
 * "Old windows no profile id names"). Only adds: peer's copy may be marked
 * or voided (such a node answers a fill's STREAM). *exact_out is 0 when a
 * window was held differently or left for later (the union is not known
 * there), else 1. 0 or the error. */
int repair_windows_fill_old(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int *exact_out,
                            repair_stats_t *st, errmsg_t *em);

/* 1 when the view has a move in progress in which this node gains ranges. */
int repair_view_gains(const cluster_view_t *v);
/* The fingerprint of view v's move (its pending and current rings); 0 when
 * no move is under way. A pass verifies only the move it ran with. */
uint64_t repair_move_fp(const cluster_view_t *v);
/* repair_pass.c: one pass over every range this node replicates; its JSON
 * summary into out. A complete pass is announced to the other nodes. */
int repair_pass_run(repair_t *r, buf_t *out);

#endif
