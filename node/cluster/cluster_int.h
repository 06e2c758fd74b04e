/* cluster_int.h — what the files of the cluster module share (internal to
 * node/cluster/): the cluster handle, the reference-counted view, message
 * dispatch by type, and the identity file. The replicated write path
 * (replicate_int.h) and the scatter-gather path (scatter_int.h) sit on top:
 * they plan with a view and exchange messages with cluster_send() and the
 * handlers registered with cluster_on().
 *
 * Threads: the loop thread, except the view's reference count (atomic):
 * cluster_view_retain / cluster_view_release may be called from any thread.
 */
#ifndef FLAMEDB_NODE_CLUSTER_CLUSTER_INT_H
#define FLAMEDB_NODE_CLUSTER_CLUSTER_INT_H

#include <stdatomic.h>

#include "node/cluster/chunk_int.h"
#include "node/cluster/cluster.h"
#include "node/cluster/rpc_int.h"
#include "node/cluster/wire_int.h"
#include "ring/ring.h"

typedef struct replicate replicate_t;
typedef struct scatter scatter_t;
typedef struct repair repair_t;

/* An immutable snapshot of the cluster, rebuilt whenever membership changes.
 * Arrays have ring_node_count(ring) entries, indexed like the ring's nodes. */
struct cluster_view {
    const ring_t *ring;           /* current ring: ACTIVE and LEAVING members, down or not */
    const ring_t *pending;        /* ring after joins/leaves in progress, or NULL */
    const uint8_t *live;          /* may serve reads now (ACTIVE/LEAVING, not down, not hinted) */
    const uint8_t *reachable;     /* not marked down (writes are attempted; else hinted) */
    const char *const *http_addr; /* per ring node */
    const char *const *cluster_addr; /* per ring node ("" in a cluster of one) */
    int self;                        /* this node's index in ring, -1 if not in it */
    const char *self_id;
    uint32_t rf;      /* min(configured RF, node count) */
    uint32_t quorum;  /* write quorum for rf */
    uint64_t version; /* changes whenever any of the above changes */
    /* per ring node: listed in another member's hints_for, it missed writes
     * (a hint waits for it, or a repair mark), so its copy is no stream
     * source; NULL: none (views built by hand in tests) */
    const uint8_t *marked;
};

/* Creates the membership table, the view and (with --cluster-listen) the
 * transport settings; no write or read path (cluster_open adds those). Tests
 * use it to run the membership and transport alone. clock NULL: the real
 * one (copied). Caller owns *out; cluster_close, then cluster_free. */
int cluster_new(uv_loop_t *loop, const cluster_config_t *cfg, const char *data_dir,
                const char *http_addr, const clock_source_t *clock, cluster_t **out, errmsg_t *em);

/* Closing and freeing what cluster_new made (the gossip timer, transport,
 * membership and view); cluster_close and cluster_free (cluster_open.c)
 * close the write and read paths first. cluster_part_closed is the close
 * callback of every part: the last one runs the done callback. */
void cluster_close_base(cluster_t *c);
void cluster_free_base(cluster_t *c);
void cluster_part_closed(void *arg);

/* This node's id; borrowed for the cluster's lifetime. */
const char *cluster_self_id(const cluster_t *c);

/* Adds a reference to a view (any thread). */
void cluster_view_retain(const cluster_view_t *v);

/* Handler of one message type, on the loop thread. msg (checked) is borrowed
 * for the call; a handler that needs it longer takes it instead: copy *msg
 * and zero it (cluster_msg_free of a zeroed message does nothing), then free
 * its copy with cluster_msg_free when done, from any thread. */
typedef void (*cluster_msg_fn)(void *ctx, cluster_msg_t *msg);
/* Registers fn for a message type (one handler per type); msg->body arrives
 * decoded and checked. Gossip is handled internally. */
int cluster_on(cluster_t *c, Flamedb__Cluster__MsgType type, cluster_msg_fn fn, void *ctx);
/* The same, but msg->body arrives NULL: the loop checks only the envelope
 * (which carries the body's request id for routing); the handler takes the
 * message and decodes the body with cluster_wire_decode_body on the pool,
 * where the code that uses it runs. For bodies that can be large (PARTIAL),
 * so the loop never unpacks them. */
int cluster_on_envelope(cluster_t *c, Flamedb__Cluster__MsgType type, cluster_msg_fn fn, void *ctx);

/* The wire limits messages to this node are checked with. */
const cluster_wire_limits_t *cluster_wire_limits(const cluster_t *c);

/* Encodes body in an envelope and queues it for node_id. deadline_unix_ms is
 * carried in the envelope; receivers drop messages past it. ERR_NOT_FOUND for
 * an unknown node, ERR_UNAVAILABLE if it cannot be queued, ERR_TOO_LARGE. */
int cluster_send(cluster_t *c, const char *node_id, Flamedb__Cluster__MsgType type,
                 uint64_t deadline_unix_ms, const ProtobufCMessage *body);

/* Queues frame (an envelope cluster_wire_encode_with wrote as this node,
 * cluster_ops_t.from) for node_id as cluster_send queues an encoded body:
 * the same errors. Not for requests (no answer is awaited). */
int cluster_send_frame(cluster_t *c, const char *node_id, uint64_t deadline_unix_ms,
                       const buf_t *frame);

/* Where a member's messages go, taken on the loop for a pool thread
 * (cluster_send_frame_now): its cluster address and the largest frame
 * toward it (0: any size up to a message). */
typedef struct cluster_route {
    char addr[RING_ADDR_MAX + 1];
    size_t frame_bytes;
} cluster_route_t;

/* node_id's route now; ERR_NOT_FOUND for an unknown node, ERR_UNAVAILABLE
 * without an address or a transport. Loop thread. */
int cluster_route(cluster_t *c, const char *node_id, cluster_route_t *out);

/* From any thread (while the cluster is not freed): frame, as
 * cluster_send_frame takes it, sent at once when it fits in one frame toward
 * `to` and the transport can take it now (rpc_send_now). 1 sent; 0 not (send
 * it with cluster_send_frame on the loop); negative on a socket error. */
int cluster_send_frame_now(cluster_t *c, const cluster_route_t *to, const buf_t *frame);

/* How the write and read paths reach the cluster: cluster_ops_of() wires
 * them to a cluster_t; unit tests wire several replicate_t or scatter_t to
 * each other in one process instead. Every call on the loop thread except
 * view_retain / view_release. */
typedef struct cluster_ops {
    const cluster_view_t *(*view_acquire)(void *ctx); /* one reference for the caller */
    void (*view_retain)(const cluster_view_t *v);
    void (*view_release)(const cluster_view_t *v);
    /* as cluster_send: encodes body now (it may be freed after the call) */
    int (*send)(void *ctx, const char *node_id, Flamedb__Cluster__MsgType type,
                uint64_t deadline_unix_ms, const ProtobufCMessage *body);
    /* as cluster_set_hint_targets (the write path's; the read path leaves it NULL) */
    int (*set_hint_targets)(void *ctx, const char *const *ids, size_t n);
    void *ctx;
    /* 1 when id left the cluster for good (removed or decommissioned: its
     * ranges have other owners); NULL answers 0 (the write path's) */
    int (*member_left)(void *ctx, const char *id);
    /* id's member entry as this node holds it (this node's own included):
     * its incarnation and heartbeat, and 1 while it is up, 0 when it is
     * down or left; ERR_NOT_FOUND when unknown. NULL: writes name no
     * hinted replica to their other replicas (the write path's) */
    int (*member_beat)(void *ctx, const char *id, uint64_t *incarnation, uint64_t *heartbeat);
    /* as cluster_send_frame: a message encoded already, on any thread, as
     * `from` (cluster_wire_encode_with); NULL: only bodies are sent (send) */
    int (*send_frame)(void *ctx, const char *node_id, uint64_t deadline_unix_ms,
                      const buf_t *frame);
    /* as cluster_route (loop) and cluster_send_frame_now (any thread); NULL:
     * frames go through the loop (send_frame) */
    int (*route)(void *ctx, const char *node_id, cluster_route_t *out);
    int (*send_frame_now)(void *ctx, const cluster_route_t *to, const buf_t *frame);
    cluster_wire_sender_t from; /* borrowed from the cluster for its life */
    /* the member protocol id advertises (CLUSTER_MEMBER_V*); 0 when unknown
     * or older. NULL: every member is taken as speaking 0 (no notices) */
    uint32_t (*member_version)(void *ctx, const char *id);
} cluster_ops_t;

/* ops calling c's functions. */
void cluster_ops_of(cluster_t *c, cluster_ops_t *ops);

/* Ids of the nodes this node holds undelivered hints for (replicate_hints.c
 * calls it whenever that set changes; ids are copied). Those nodes are not
 * `live` in the views that follow, on this node at once and, through the
 * hint lists members gossip (ring_members_set_hints), on every node, until
 * the hints are delivered (docs/replication.md, "Reads and hints"). n 0
 * clears the list. ERR_LIMIT over RING_MAX_NODES ids, ERR_INVALID_ARGUMENT
 * for an invalid id. */
int cluster_set_hint_targets(cluster_t *c, const char *const *ids, size_t n);

#define CLUSTER_MAX_SEEDS 64
#define CLUSTER_NTYPES 9 /* Flamedb__Cluster__MsgType values 0..8 */
/* Every this many gossip rounds a node also gossips with a seed, so two
 * groups that formed apart (e.g. started at once) find each other. */
#define CLUSTER_SEED_EVERY 10
/* The least frame limit a member may advertise (max-frame-bytes' lower
 * bound): a smaller advertised value is taken as this. */
#define CLUSTER_MIN_FRAME_BYTES (64 * 1024)
#define CLUSTER_REFUSAL_LOG_MS 60000
#define CLUSTER_IDENTITY_FILE "identity"
/* Present while a node new to the cluster streams its ranges in: a restart
 * before it turned active joins (resumes) again. */
#define CLUSTER_JOINING_FILE "joining"
/* Present while a decommissioned node leaves: a restart before it turned
 * left leaves (resumes) again. */
#define CLUSTER_LEAVING_FILE "leaving"
#define CLUSTER_INCARNATION_FILE "incarnation"
/* Present while a node streams the token intervals it gained when a member
 * was removed (cluster_regain.c): a restart resumes them. */
#define CLUSTER_REGAIN_FILE "regain"
/* DATA_DIR/regain.progress: where the repair thread stands in it
 * (repair_regain_file.c); removed with it, and when a fresh one starts. */
#define CLUSTER_REGAIN_PROGRESS_SUFFIX ".progress"
/* Where the streams of a join's (or a leave's) gained ranges stand
 * (repair_move_file.c): a restart goes on from their cursors. */
#define CLUSTER_MOVE_PROGRESS_FILE "move.progress"
/* A damaged DATA_DIR/regain moved aside for the operator (cluster_regain.c). */
#define CLUSTER_REGAIN_DAMAGED_SUFFIX ".damaged"
/* The nodes (and tokens) of the last ring this node saw itself in
 * (cluster_regain_ring.c): a node down while a member was removed computes
 * what it gained when it comes back. */
#define CLUSTER_REGAIN_RING_FILE "regain.ring"
/* Present while a node that could not tell what it gained repairs every
 * range it replicates (cluster_full.c): a restart keeps it unread. */
#define CLUSTER_FULL_FILE "regain.full"
/* Present while a node whose repair mark went with a member that left the
 * ring waits for its window check (cluster_void.c): a restart keeps it
 * unread. Its presence is what counts; it holds a header and an end line. */
#define CLUSTER_VOID_FILE "regain.void"
/* regain.ring's modification time is kept at most this old while the node
 * runs (a quarter of --forget-left-after when that is shorter). */
#define CLUSTER_RING_TOUCH_MAX_MS 60000
/* The regain files are refused above this size (a damaged one must not make
 * the node allocate without bound); 64 MiB holds about two million
 * intervals or pieces, far more than a removal gains. */
#define CLUSTER_REGAIN_FILE_MAX (64u << 20)
/* regain.ring at most: every node of the largest ring with every token. */
#define CLUSTER_REGAIN_RING_MAX                                                                    \
    ((size_t)RING_MAX_NODES * (RING_NODE_ID_MAX + 8 + RING_MAX_TOKENS * 17) + 64)
#define CLUSTER_IDENTITY_MAX (64 * 1024 + RING_MAX_TOKENS * 17)

/* A node of the ring this node last accounted for (cluster_regain_ring.c). */
typedef struct cluster_known_node {
    char *id;
    uint64_t *tokens;
    uint32_t ntokens;
} cluster_known_node_t;

typedef struct cluster_known {
    cluster_known_node_t *v;
    size_t n, cap;
    int unsure; /* read at start and not yet accounted for: not read from */
    int waited; /* the view was rebuilt once the start's wait passed */
    int heard;  /* ... and once a member's whole table was heard after it */
} cluster_known_t;

/* A view and what it owns; pub comes first so a cluster_view_t * is one. */
typedef struct view_impl {
    cluster_view_t pub;
    atomic_int refs;
    ring_t *ring, *pending;
    uint8_t *hinted, *live, *reachable, *marked;
    char **http, **caddr;
    uint32_t n;
    char *self_id;
} view_impl_t;

typedef struct handler {
    cluster_msg_fn fn;
    void *ctx;
    int body_on_pool; /* registered with cluster_on_envelope */
} handler_t;

typedef struct cluster_counters {
    uint64_t refused;        /* malformed, other cluster, expired, unknown type, unsigned */
    uint64_t unauthorized;   /* of those: not signed with this cluster's secret */
    uint64_t unknown_sender; /* non-gossip messages from a node not in the table */
    uint64_t unhandled;      /* a type with no handler registered */
    uint64_t dispatched;
    uint64_t gossip_rounds;
    uint64_t view_rebuilds;
} cluster_counters_t;

struct cluster {
    uv_loop_t *loop;
    clock_source_t clock;
    cluster_config_t cfg;
    char data_dir[CLUSTER_SETTING_MAX];
    char http_addr[RING_ADDR_MAX + 1];
    char cluster_addr[RING_ADDR_MAX + 1]; /* advertised; "" in a cluster of one */
    int transport;                        /* cluster-listen set */
    ring_identity_t id;
    ring_rng_t rng;
    ring_members_t *members;
    cluster_wire_limits_t limits;
    digest_key_t *key; /* --cluster-secret-file, or NULL: messages unsigned */
    rpc_t *rpc;
    size_t frame_bytes;      /* max_frame_bytes, at most max_message_bytes */
    cluster_chunks_t chunks; /* messages coming in pieces (chunk_int.h) */
    uint64_t next_chunked;   /* message id of the next message sent in pieces */
    /* why the cluster port's frame limit is what it is, as last logged: 0 the
     * start, 1 a member without chunks is listed, 2 every member takes pieces */
    int frame_limit_why;
    uv_timer_t timer;
    handler_t handlers[CLUSTER_NTYPES];
    char *seeds[CLUSTER_MAX_SEEDS];
    size_t nseeds, next_seed;
    view_impl_t *view;
    uint64_t view_members_version, view_seq;
    cluster_counters_t counters;
    int started, closing, open_parts;
    int joined;
    int start_wait_logged;      /* the end of the start's wait was logged */
    uint64_t started_ms;        /* uv_now() at cluster_start */
    uint64_t refusal_logged_ms; /* uv_now() of the last refusal warning */
    replicate_t *replicate;     /* the write path (replicate_int.h), or NULL */
    scatter_t *scatter;         /* the read path (scatter_int.h), or NULL */
    repair_t *repair;           /* anti-entropy (repair_int.h), or NULL */
    /* Members seen `left` (removed or gone), and who is told when one of
     * them comes back with a new incarnation: its data lacks everything
     * since it left, so it must not serve reads until repaired. */
    char **left_seen;
    size_t nleft, left_cap;
    void (*on_rejoin)(void *ctx, const char *node_id);
    void *on_rejoin_ctx;
    /* Joining and leaving (cluster_move.c). */
    int joining;             /* started JOINING: streams its ranges in, then turns ACTIVE */
    int join_unheard_logged; /* said once that no member is known to join yet */
    uint64_t move_start_ms;  /* wall clock when JOINING or LEAVING began here */
    int leaving;             /* LEAVING by decommission: turns LEFT once its ranges moved */
    uint64_t left_at_ms;     /* uv_now() when it turned LEFT (then it stops soon) */
    /* Members whose gossip since this start arrived: a message naming this
     * node at start_incarnation or later (ring_gossip_seen_t), so they know
     * it (a joiner: a member drops messages of unknown senders) and their
     * own entry here, with their hints_for, is as new as their word since
     * this start. A message queued for the previous process (the transport
     * keeps one until its deadline) names an older incarnation: not news. */
    char **heard;
    size_t nheard, heard_cap;
    uint64_t start_incarnation; /* this start's incarnation */
    int known_by_all;           /* every member heard from: ready for clients */
    /* A restarted member lists itself in its own hints_for (not read from)
     * until every member it does not see down was heard from since the
     * start (at least one): the others' repair marks on it travel in their
     * own entries (cluster_move_heard_check; docs/cluster.md, "Readiness"). */
    int unheard;
    int leave_asked;           /* the repair thread checks the takers' digests */
    uint64_t leave_asked_ms;   /* uv_now() of the last such check */
    uint64_t leave_move_fp;    /* repair_move_fp of the leave's move as last seen */
    uint64_t leave_moved_ms;   /* wall clock when that move last changed (0: never) */
    struct cluster_pass_done { /* last complete repair pass heard of, per node */
        char *id;
        uint64_t start_ms;
    } * passes;
    size_t ndone, done_cap;
    void (*done)(void *arg);
    void *done_arg;
    /* Token intervals gained by removals, still to stream (cluster_regain.c);
     * gen changes with every change of the list. */
    struct {
        uint64_t *lo, *hi;
        size_t n, cap;
        uint64_t gen;
    } regain;
    /* The ring this node last accounted for, kept in DATA_DIR/regain.ring. */
    cluster_known_t known;
    /* A full repair (cluster_full.c): on while this node cannot tell what it
     * holds short; gen changes with every new mark. */
    struct {
        int on;
        uint64_t gen, since_ms; /* since_ms: wall ms of the mark */
        uint64_t touched_ms;    /* uv_now of the last touch of regain.ring */
        uint64_t last_up_ms;    /* wall ms this node was last up (0: not checking any more) */
        /* While last_up_ms is set: the nodes this process dropped from the
         * known ring (it accounted for their leaving, cluster_regain_note),
         * which cluster_regain_ring_missed never takes for nodes that
         * joined and left while this node was down, whatever their
         * incarnation says (another machine's clock, or raised by
         * refutations and restarts). */
        cluster_known_t watched;
        /* intervals of this mark handed to the regain (cluster_full_plan),
         * not handed again; the first `done` of them were streamed and
         * verified (a regain of them finished) and are kept in
         * DATA_DIR/regain.full, so a restart does not stream them again */
        uint64_t *lo, *hi;
        size_t n, cap, done;
        /* The evidence that lifts the mark before its repair converged
         * (cluster_full_evidence): the nodes of the ring this node last saw
         * that no member knew, with the tokens it saw them with. liftable
         * is 1 only while every reason of the mark is such a node and no
         * removal's regain joined it; lift_asked: the mark generation the
         * repair thread was asked about (once per mark). Kept in
         * DATA_DIR/regain.full while liftable, so a restart keeps it. */
        cluster_known_t unknown;
        int liftable;
        uint64_t lift_asked;
        /* The operator's word that this node's copy is whole
         * (cluster_accept_copy): the mark generation it was given for and
         * its caller, answered once the repair thread answered (done NULL:
         * none pending); how many lifted the mark and how many were
         * refused, for /metrics. */
        /* gained: the token intervals a removal gave this node that are
         * not streamed in yet, pending when the mark was set or added under
         * it (cluster_full_gained): the copy lacks them, so the operator's
         * word is refused while there is one. Kept in DATA_DIR/regain.full
         * ("gained" lines), since the regain file does not tell them from
         * the mark's own intervals; emptied when a regain finished (every
         * interval it listed streamed in). gained_all: the file was of a
         * release before (or damaged) and did not say: every interval of
         * the regain counts as a removal's (cluster_full_start). */
        struct {
            uint64_t *lo, *hi;
            size_t n, cap;
        } gained;
        int gained_all;
        struct {
            uint64_t gen;
            cluster_accept_fn done;
            void *arg;
            uint64_t accepted, refused;
            int off; /* the repair thread stopped: none is taken any more */
        } accept;
    } full;
    /* The write path's hint targets as last set (cluster_set_hint_targets),
     * published with this node's own id added while it regains. */
    char **hint_ids;
    size_t nhint_ids;
    /* Nodes that gain ranges by a removal this node saw, not read from until
     * their own entry lists them in hints_for (they took over) or until_ms
     * (uv_now) passed: closes the rounds before their own word arrives. */
    struct cluster_gainer {
        char *id;
        uint64_t until_ms;
    } * gainers;
    size_t ngainers, gainers_cap;
    /* A repair mark on this node that went with a member leaving the ring
     * (cluster_void.c): on while it lists itself in its own hints_for, until
     * a window check after it compared its copy; gen changes with each. */
    struct {
        int on;
        uint64_t gen;
    } voided;
    int view_stale; /* rebuild the view even if membership did not change */
};

/* Loads DATA_DIR/identity, or generates and writes it on first start.
 * want_id "" accepts the stored id (or generates one); otherwise the stored
 * id must equal it (ERR_INVALID_ARGUMENT naming both). A stored token count
 * other than ntokens is kept (changing it would move data) with a warning. */
int cluster_identity_load(const char *data_dir, const char *want_id, uint32_t ntokens,
                          ring_rng_t *rng, ring_identity_t *out, errmsg_t *em);

/* Picks this start's incarnation: max(now_s, previous + 1), and records it
 * in DATA_DIR/incarnation. */
int cluster_incarnation_next(const char *data_dir, uint64_t now_s, uint64_t *out, errmsg_t *em);

#define CLUSTER_SECRET_MIN 16   /* bytes of a cluster secret, at least */
#define CLUSTER_SECRET_MAX 4096 /* and at most */
/* Loads --cluster-secret-file into a new key (caller frees it with
 * digest_key_free). The file must be readable by its owner only. */
int cluster_secret_load(const char *path, digest_key_t **out, errmsg_t *em);

/* A node id from the host name plus a random suffix ("host-1a2b3c4d"). */
void cluster_identity_default_id(ring_rng_t *rng, char out[RING_NODE_ID_MAX + 1]);

/* Rebuilds c->view when membership or the hint targets changed since the
 * last build. Returns 1 when a new view was installed. */
int cluster_view_refresh(cluster_t *c);
/* Drops the cluster's reference to its view. */
void cluster_view_drop(cluster_t *c);

/* ---------- joining and leaving (cluster_move.c; docs/cluster.md, "Adding a node") */

/* The state this start begins in: JOINING when the node is new to a cluster
 * it joins (no identity file before this start, seeds given) or a join was
 * under way (DATA_DIR/joining), else ACTIVE. had_identity: the identity file
 * existed before this start. Writes DATA_DIR/joining when JOINING. */
int cluster_move_initial_state(cluster_t *c, int had_identity, ring_state_t *out, errmsg_t *em);
/* After the member table was made: a node that was leaving when it stopped
 * (DATA_DIR/leaving, written by cluster_decommission) turns LEAVING again,
 * its move starting now. */
int cluster_move_resume_leave(cluster_t *c, errmsg_t *em);
/* Loop: a gossip message from node_id that names this node at this start's
 * incarnation and names no member this table lacks (see heard above). */
void cluster_move_heard(cluster_t *c, const char *node_id);
/* 1 when node_id was heard from since this start. */
int cluster_move_was_heard(const cluster_t *c, const char *node_id);
/* Whether this start must hear from the others before its copy is read:
 * the ring it last saw had other nodes (DATA_DIR/regain.ring), or, with no
 * such file, it is a member restarted with seeds. Call after the regain
 * files were loaded. */
int cluster_move_must_hear(const cluster_t *c, int had_identity);
/* Loop, after a message was heard and every gossip round: once every
 * member not seen down was heard from since the start (and at least one),
 * an unheard node stops listing itself in its own hints_for. */
void cluster_move_heard_check(cluster_t *c);
/* Loop: 1 once every live member has sent this node gossip since it started
 * (a joiner: that member would drop its writes and queries; any start: its
 * hints_for list says which replicas not to read). */
int cluster_move_known(cluster_t *c);
/* Loop, every gossip round: a joining node with no active member to stream
 * from turns active; a leaving node whose ranges every taker verified turns
 * left, and stops the process a few rounds later. */
void cluster_move_tick(cluster_t *c);
/* Loop: the repair thread verified the gained ranges: turn ACTIVE. */
void cluster_move_join_verified(cluster_t *c);
/* Loop: the repair thread's check of the takers' digests (ok: each holds
 * every profile of the ranges it takes over) of the move of fingerprint
 * move_fp (repair_move_fp): turn LEFT, or ask again. A ring change installed
 * after the check's last look at the move (the current view's move is no
 * longer move_fp) makes the answer stale: not left, asked again. */
void cluster_move_leave_verified(cluster_t *c, int ok, uint64_t move_fp);
/* Loop: node_id announced a complete repair pass that started at
 * started_ms (wall clock). */
void cluster_move_pass_done(cluster_t *c, const char *node_id, uint64_t started_ms);
/* The wall-clock time before which a move's pass does not count: begun
 * plus --join-settle, or when that is 0 the time gossip needs to tell every
 * coordinator (so every write after it reaches the new owners too) plus a
 * write timeout (so every write started before has landed). */
uint64_t cluster_move_settled_ms(const cluster_t *c);
/* The settle margin alone: --join-settle, or 10 gossip intervals plus a
 * write timeout. */
uint64_t cluster_move_settle_ms(const cluster_t *c);
/* Loop, while leaving: the wall-clock time before which a taker's pass
 * does not count for the leave's move as view v has it (its current and
 * pending rings). It is cluster_move_settled_ms until the move changes
 * during the leave (another node removed or joining); then the same margin
 * counts again from when this node first saw the new move: a pass takes its
 * view once, at its start, and one that ran with the old move streamed
 * what the taker gained by that one. */
uint64_t cluster_move_leave_settled(cluster_t *c, const cluster_view_t *v);

/* ---------- ranges gained by a removal (cluster_regain.c; docs/cluster.md) */

/* Reads DATA_DIR/regain (intervals a previous start did not finish). */
int cluster_regain_load(cluster_t *c, errmsg_t *em);
/* Writes c->regain to DATA_DIR/regain (removes it when empty); 0 or an
 * error (logged). */
int cluster_regain_save(cluster_t *c);
/* Loop, once the repair part is open: hands a loaded regain to it. */
void cluster_regain_start(cluster_t *c);
/* Loop, after a new view replaced old: when it dropped a removed member,
 * records what this node gains and starts streaming it; under a full
 * repair mark, also every interval it replicates (cluster_full_plan). 1
 * when it did (the member table changed: refresh again). */
int cluster_regain_note(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now);
/* Loop: the repair thread streamed regain generation gen and a complete
 * pass followed: the file goes, the node is read from again. */
void cluster_regain_finished(cluster_t *c, uint64_t gen);

/* ---------- marks voided by a member leaving (cluster_void.c) ---------- */

/* Loop, after a new view replaced old: when a node left old's ring (or a
 * joining node of old is in neither of now's rings) and a ring node some other member listed in old
 * lists none in now (its mark may have gone with the node), that node is not read from until a
 * window check of its own after the change compared its copy: this node
 * lists itself and asks the repair thread for the check, another is held
 * (cluster_regain_hold) until its own entry lists it. 1 when the view
 * must be built again. */
int cluster_void_note(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now);
/* Whether DATA_DIR/regain.void is there (one that cannot be told counts
 * as there: logged), into c->voided; 0 or an error for a data dir path too
 * long. */
int cluster_void_load(cluster_t *c, errmsg_t *em);
/* Loop, once the repair part is open: a voided mark a restart cut short
 * asks for its window check again and lists this node. */
void cluster_void_start(cluster_t *c);
/* Loop: ring node `gone`, which this node last saw in the ring, left it
 * while this node was down (cluster_regain_ring_before): any mark it held
 * on this node went with it, so this node is not read from until a window
 * check of its own compared its copy, as above. */
void cluster_void_unseen(cluster_t *c, const char *gone);
/* Loop: the repair thread's window check for voided mark gen compared
 * every range; if gen is still the latest, this node is read from again. */
void cluster_void_checked(cluster_t *c, uint64_t gen);
void cluster_regain_free(cluster_t *c);
/* Adds [lo, hi] to c->regain unless listed; 0 or ERR_NOMEM. */
int cluster_regain_add(cluster_t *c, uint64_t lo, uint64_t hi);
/* Appends [lo, hi] to a list of token intervals kept as two parallel arrays
 * (*los, *his) of *n entries and *cap room, growing both; 0 or ERR_NOMEM
 * (the list unchanged). The list's owner frees both arrays. */
int cluster_intervals_append(uint64_t **los, uint64_t **his, size_t *n, size_t *cap, uint64_t lo,
                             uint64_t hi);
/* The last `added` intervals of c->regain recorded in DATA_DIR/regain and
 * handed to the repair thread; 0 or an error (logged, kept in memory). */
int cluster_regain_record(cluster_t *c, size_t added);
/* Loop: the regain list emptied without streaming, DATA_DIR/regain
 * removed and the empty list published (a full repair lifted by its
 * evidence: every interval was the mark's and none was cleared). */
void cluster_regain_drop(cluster_t *c);
/* Loop: the n intervals a window check found another replica holding more
 * of (repair_windows.c) added to the regain: recorded in DATA_DIR/regain,
 * this node unread until they are cleared and streamed whole. */
void cluster_regain_windows(cluster_t *c, const uint64_t *lo, const uint64_t *hi, size_t n);
/* Loop, building a view: 1 when ring node `id` (its member entry m) must
 * not serve reads as a gainer of a removal that has not yet said so itself. */
int cluster_regain_gainer(cluster_t *c, const char *id, const ring_member_t *m);
/* Loop: ring node id is not read from (the views that follow) until its
 * own entry lists it in its hints_for, or for twice the settle margin while
 * it is up without doing so: its own word on a change it takes part in
 * (a removal's gains, a voided mark) has not arrived yet. */
void cluster_regain_hold(cluster_t *c, const char *id);
/* Loop, every gossip round: a view without the gainers whose margin ran out. */
void cluster_regain_tick(cluster_t *c);
/* cluster_regain_ring.c. Reads DATA_DIR/regain.ring (no file: none; a
 * damaged or unreadable one is logged and taken as none: the node learns its
 * ring from gossip). An error only for a data dir path too long. */
int cluster_regain_ring_load(cluster_t *c, errmsg_t *em);
/* Loop, each view while the start's wait lasts: a LEFT member in neither
 * the kept ring nor now, whose incarnation (its start, wall s) is later
 * than when this node was last up, joined and left while this node was
 * down: what it took from this node and gave back is unknown, so the node
 * begins a full repair (cluster_full.c). */
void cluster_regain_ring_missed(cluster_t *c, const ring_t *now);
/* Loop, every gossip round: keeps regain.ring's modification time recent
 * while this node runs, so the next start can tell how long it was down. */
void cluster_regain_ring_touch(cluster_t *c);
/* Writes c->known to DATA_DIR/regain.ring; 0 or an error (logged). */
int cluster_regain_ring_save(const cluster_t *c);
/* Loop: the ring before the change to now->ring when known nodes are gone
 * from it by a removal (*before, caller frees; NULL when none were); 1 when
 * a known node cannot be accounted for yet (the member table is filling),
 * else 0 or an error. */
int cluster_regain_ring_before(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now,
                               ring_t **before, errmsg_t *em);
/* Loop: now is accounted for: it becomes the known ring (written when it
 * changed) and the node is sure again. */
void cluster_regain_ring_accept(cluster_t *c, const ring_t *now);
/* 1 while a restarted node waits for its member table to account for the
 * known ring (the start's wait). */
int cluster_regain_ring_waiting(const cluster_t *c);
/* 1 once the start's wait (failure-timeout + 10 gossip intervals) passed. */
int cluster_regain_ring_waited(const cluster_t *c);
/* 1 once a member's gossip since this start named no member this table
 * lacks (cluster_move_heard): a node missing from the table then is one
 * that member does not know. */
int cluster_regain_ring_heard(const cluster_t *c);
void cluster_regain_ring_free(cluster_t *c);
/* A copy of node (id, n tokens) appended to k; 0 or ERR_NOMEM. */
int cluster_known_add(cluster_known_t *k, const char *id, const uint64_t *tokens, uint32_t n);
/* k emptied (its nodes freed; k->v stays for reuse: free it after). */
void cluster_known_clear(cluster_known_t *k);
/* The node of a regain.ring line "ID COUNT TOKEN..." (line is cut up)
 * appended to k; ERR_CORRUPT when it is not one, or lists an id of k. */
int cluster_known_parse(cluster_known_t *k, char *line);
/* x as that line (no newline) appended to b; 0 or ERR_NOMEM. */
int cluster_known_print(buf_t *b, const cluster_known_node_t *x);
/* cluster_full.c. Reads DATA_DIR/regain.full: present, the mark stands
 * (also when damaged); an error only for a data dir path too long. */
int cluster_full_load(cluster_t *c, errmsg_t *em);
/* Loop, once the repair part is open (the regain file read): hands a
 * loaded mark to it; when its file did not list the removal's gains (a
 * release before, or damaged), every interval of the regain is taken as
 * one and the file rewritten. */
void cluster_full_start(cluster_t *c);
/* Loop (or the start): this node cannot tell what it gained (why, logged):
 * it lists itself in its hints_for, writes DATA_DIR/regain.full and has
 * the repair thread run passes until one converges. Once at a time. */
void cluster_full_begin(cluster_t *c, const char *why);
/* As cluster_full_begin, for node x of the ring this node last saw, which
 * no member knows (why, logged): x (borrowed, copied) is kept as the
 * evidence that can lift the mark once x is back (cluster_full_evidence). */
void cluster_full_begin_unknown(cluster_t *c, const char *why, const cluster_known_node_t *x);
/* Loop: a removal's gains joined the regain under the mark: it is lifted
 * only by a converging pass, never by evidence. */
void cluster_full_no_lift(cluster_t *c);
/* Loop: [lo, hi], which a removal gave this node, joins the mark's gained
 * intervals (not saved: cluster_full_gained does); 0 or ERR_NOMEM. A no-op
 * without a mark (full_mark takes the regain's intervals then). */
int cluster_full_gain(cluster_t *c, uint64_t lo, uint64_t hi);
/* Loop: a removal's gains joined the regain: as cluster_full_no_lift, and
 * under a mark the gained intervals are written to DATA_DIR/regain.full
 * (before the regain file, so a crash between the two errs towards a
 * refusal): the operator's word is refused (cluster_accept_copy) until
 * they are streamed in, also after a restart. */
void cluster_full_gained(cluster_t *c);
/* Loop, after every view: when the mark's only reasons were nodes no member
 * knew and each is now in v's ring with the tokens this node last saw it
 * with, this node gained nothing meanwhile; the repair thread is asked
 * whether nothing of the mark's regain was cleared (repair_full_lift_ask). */
void cluster_full_evidence(cluster_t *c, const cluster_view_t *v);
/* Loop: the thread's answer for mark gen: granted (nothing was cleared,
 * and nothing is cleared until this releases the thread's hold) lifts the
 * mark and drops its regain intervals, if the mark is still that one. */
void cluster_full_lift(cluster_t *c, uint64_t gen, int granted);
/* Loop: the operator's word pending for the mark, if any, answered (rc,
 * em borrowed for the call) and counted; a no-op when none is. */
void cluster_full_accept_answer(cluster_t *c, int rc, const errmsg_t *em);
/* Loop: a pass converged after mark gen: the mark and its file go. */
void cluster_full_finished(cluster_t *c, uint64_t gen);
/* Loop, under a full repair mark: every token interval of view v's ring
 * this node replicates, not handed yet, that another reachable replica
 * holds and no regain interval overlaps, added to c->regain (the caller
 * saves and publishes it); *added: how many were, *waiting: intervals
 * with another replica none of which is reachable. 0 or an error. */
int cluster_full_plan(cluster_t *c, const cluster_view_t *v, size_t *added, size_t *waiting);
void cluster_full_free(cluster_t *c);
/* Loop, when a regain finished (every interval it listed streamed, checked
 * and followed by a complete pass): under a mark, every interval handed so
 * far is streamed; recorded in DATA_DIR/regain.full (logged when it cannot
 * be: a restart streams them again). */
void cluster_full_streamed(cluster_t *c);
/* What a peer asks of this node's copy (cluster_copy_untrusted's use). */
#define CLUSTER_COPY_COMPARED 0 /* the reference of a comparison (IDS, DIGEST) */
#define CLUSTER_COPY_SOURCE 1   /* a stream source: STREAM, SPANS, a stream's check */
#define CLUSTER_COPY_SUMS 2     /* a window check's sums (STREAM_CHECK in buckets) */
/* Loop: why this node's own copy of token interval [lo, hi] is not to be
 * trusted now for `use` (a full repair mark, a join in progress, a ring
 * not yet accounted for since the start; for a source or a window check's
 * sums, a regain interval overlapping it; for a source, a voided mark),
 * or NULL when it is. Such a copy serves no peer as a stream source or as
 * the reference of a repair comparison (repair.c refuses those requests).
 * A regain's intervals are refused as a source only: a regain finishes
 * with a complete pass, which two regaining replicas of a range could
 * otherwise never give each other. A voided mark (cluster_void.c: writes
 * this node missed, their mark gone with a member that left) is refused
 * as a source only: the node lists itself, so its peers do not count it
 * as marked (cluster_view.c) and would stream its short copy as a whole
 * one; its sums are still answered, so that two voided replicas of a range
 * can finish each other's window checks. */
const char *cluster_copy_untrusted(const cluster_t *c, uint64_t lo, uint64_t hi, int use);
/* Loop: publishes the last hint targets, plus this node while it regains,
 * in its member entry (ring_members_set_hints' result). */
int cluster_hints_publish(cluster_t *c);

/* cluster_statefile.c: the small text files of DATA_DIR (a header line,
 * records, "end COUNT CHECKSUM"; every line ends in '\n').
 * Reads path whole into out (initialised here, empty after an error; caller
 * frees with buf_free on success); ERR_NOT_FOUND when absent, ERR_CORRUPT
 * over max bytes or when the end line's checksum does not match (one
 * without: still read). */
int cluster_statefile_read(const char *path, size_t max, buf_t *out, errmsg_t *em);
/* As cluster_statefile_read, for a file holding a secret: no copy of its
 * bytes is left in memory that is freed or goes out of scope (out never
 * moves while it is read, and is wiped after an error). The caller wipes out
 * with cluster_statefile_wipe when done with it. */
int cluster_statefile_read_secret(const char *path, size_t max, buf_t *out, errmsg_t *em);
/* Zeroes all of b's storage (a zeroing the compiler cannot drop), then
 * frees it. */
void cluster_statefile_wipe(buf_t *b);
/* Writes b to path through path.tmp, fsync, rename and a sync of dir, so a
 * crash leaves the old file or the whole new one. */
int cluster_statefile_write(const char *dir, const char *path, const buf_t *b, errmsg_t *em);
/* The next line of [*p, end), its '\n' made a NUL (borrowed: in the
 * buffer); NULL at the end or for a line without '\n' or with a NUL. */
char *cluster_statefile_line(char **p, char *end);
/* s[0..len) as 1 to 16 lowercase hex digits; ERR_CORRUPT otherwise. */
int cluster_statefile_hex64(const char *s, size_t len, uint64_t *out);
/* ERR_OK when line is "end COUNT" or "end COUNT CHECKSUM" with COUNT ==
 * count and nothing follows (left: bytes after it). */
int cluster_statefile_end(const char *line, size_t left, size_t count);
/* Appends the end line of count records, with the checksum of b's bytes. */
int cluster_statefile_finish(buf_t *b, size_t count);
/* A token interval of such a file. */
typedef struct cluster_iv {
    uint64_t lo, hi;
} cluster_iv_t;
/* Sorts v by (lo, hi); ERR_CORRUPT when an interval is there twice. In
 * O(n log n): a file of millions of records must not stall the start. */
int cluster_statefile_sort_unique(cluster_iv_t *v, size_t n);

/* cluster_ivset.c: a set of token intervals, sorted by lo, none
 * overlapping or touching another (caller owns; cluster_ivset_free). */
typedef struct cluster_ivset {
    cluster_iv_t *v;
    size_t n, cap;
} cluster_ivset_t;
/* out becomes the set the n closed intervals [lo[i], hi[i]] cover (each
 * lo[i] <= hi[i]); 0 or ERR_NOMEM. */
int cluster_ivset_build(const uint64_t *lo, const uint64_t *hi, size_t n, cluster_ivset_t *out);
/* out becomes the parts of [lo, hi] (lo <= hi) that s does not cover, in
 * ascending order (itself such a set); 0 or ERR_NOMEM. */
int cluster_ivset_minus(const cluster_ivset_t *s, uint64_t lo, uint64_t hi, cluster_ivset_t *out);
void cluster_ivset_free(cluster_ivset_t *s);

/* --forget-left-after, or the membership default where a caller left it 0. */
static inline uint64_t cluster_forget_left_ms(const cluster_t *c)
{
    ring_members_options_t o;
    ring_members_options_default(&o);
    return c->cfg.forget_left_after_ms != 0 ? c->cfg.forget_left_after_ms : o.forget_left_after_ms;
}

/* Wall-clock milliseconds since the epoch, from the cluster's clock. */
static inline uint64_t cluster_unix_ms(const cluster_t *c)
{
    return (uint64_t)clock_wall_ms(&c->clock);
}

#endif
