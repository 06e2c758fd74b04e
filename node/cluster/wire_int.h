/* wire_int.h — the cluster's wire envelope and message checks (internal to
 * node/cluster/; docs/cluster-protocol.md).
 *
 * Every intra-cluster message is a protobuf Envelope (common/proto/
 * cluster.proto) naming its type, cluster, sender and deadline around the
 * serialized body. cluster_wire_encode wraps a body; cluster_wire_decode
 * checks an envelope and its body before anything in them is trusted.
 *
 * With a cluster key (--cluster-secret-file) every envelope carries an
 * HMAC-SHA-256 of its header fields and body in `auth`; a receiver with a key
 * refuses an envelope whose MAC is missing or wrong (ERR_UNAUTHORIZED) before
 * it reads anything else of it, and never decodes its body. Decoding
 * allocates from an arena bounded by CLUSTER_WIRE_DECODE_FACTOR times the
 * input, so a hostile message cannot cost more memory than that.
 *
 * Threads: any. Ownership: a decoded cluster_msg_t owns its envelope and body
 * (one arena, and the received bytes when decoded in place; cluster_msg_free). Moving a message is
 * a struct copy followed by zeroing the source.
 */
#ifndef FLAMEDB_NODE_CLUSTER_WIRE_INT_H
#define FLAMEDB_NODE_CLUSTER_WIRE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/digest.h"
#include "common/err.h"
#include "common/proto/cluster.pb-c.h"

#define CLUSTER_PROTOCOL_VERSION 1 /* cluster.proto Envelope.protocol_version */
/* Decoding a message allocates at most this many times its size (plus
 * CLUSTER_WIRE_DECODE_SLACK): protobuf-c turns a two-byte empty entry of a
 * repeated field into a struct of a hundred bytes, so without the bound a
 * message of empty entries would cost gigabytes. Legitimate messages stay
 * far below it (packed values of one byte are the worst case: 8 times). */
#define CLUSTER_WIRE_DECODE_FACTOR 16
#define CLUSTER_WIRE_DECODE_SLACK (64u << 10)

/* A decoded envelope. env and body live in arena (cluster_msg_free); body is
 * the unpacked message of env->type, e.g. (Flamedb__Cluster__WriteRequest *). */
typedef struct cluster_msg {
    Flamedb__Cluster__Envelope *env;
    ProtobufCMessage *body;
    arena_t arena;
    void *held;              /* the received bytes env->body may point into */
    void (*release)(void *); /* frees held (cluster_msg_free); NULL: nothing held */
} cluster_msg_t;

/* Anti-entropy messages (RepairRequest, RepairAnswer): seen entries and
 * profiles per message, and time buckets of one digest. */
#define CLUSTER_REPAIR_MAX_ENTRIES 4096
#define CLUSTER_REPAIR_MAX_BUCKETS 100000
/* STREAM: bytes of a `blocks` key (paging), and profiles one streamed window
 * names (a day window of a series pushed every second: 86,400). */
#define CLUSTER_STREAM_MAX_KEY 256
#define CLUSTER_SUM_BUCKETS_MAX 256 /* STREAM_CHECK sum buckets (STORAGE_SUM_BUCKETS_MAX) */
#define CLUSTER_TREE_FANOUT_MAX 256 /* STREAM tree buckets (REPAIR_TREE_LEAVES) */
#define CLUSTER_STREAM_MAX_PROFILES (1u << 20)

typedef struct cluster_wire_limits {
    size_t max_bytes;   /* whole envelope */
    size_t max_series;  /* SeriesPart per WriteRequest */
    size_t max_symbols; /* Symbols per WriteRequest / PartialResult */
    size_t max_ranges;  /* TokenRanges per QueryRequest / PartialResult */
    size_t max_values;  /* values per PartialResult */
    size_t max_string;  /* bytes of a selector, label name, reason, symbol */
} cluster_wire_limits_t;

void cluster_wire_limits_default(cluster_wire_limits_t *l);

/* Who sends: the cluster's name, this node's id and the cluster key (NULL:
 * messages are not signed). All borrowed. */
typedef struct cluster_wire_sender {
    const char *cluster;
    const char *node_id;
    const digest_key_t *key;
} cluster_wire_sender_t;

/* Wraps a serialized body of `type` in an envelope appended to out; the
 * envelope carries a copy of the body's request_id (if it has one) and, with
 * a key, its MAC. */
int cluster_wire_encode(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                        uint64_t deadline_unix_ms, const ProtobufCMessage *body, buf_t *out);
/* Writes a body of exactly the size given to cluster_wire_encode_with at
 * dst (room made for it in the envelope). */
typedef void (*cluster_wire_body_fn)(void *ctx, uint8_t *dst);
/* The same with a body of bn bytes that write puts in its place in the
 * envelope (no copy of it): a share's answer whose forests are encoded
 * there (scatter_serve.c). request_id is the envelope's copy of the body's. */
int cluster_wire_encode_with(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                             uint64_t deadline_unix_ms, uint64_t request_id, size_t bn,
                             cluster_wire_body_fn write, void *ctx, buf_t *out);
/* The same with a body already serialized (a Gossip from the ring). */
int cluster_wire_encode_bytes(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                              uint64_t deadline_unix_ms, const ProtobufCBinaryData *body,
                              buf_t *out);

/* What a receiver checks envelopes against: its cluster's name (NULL: any)
 * and key (NULL: unsigned messages are accepted). Borrowed. */
typedef struct cluster_wire_receiver {
    const char *cluster;
    const digest_key_t *key;
} cluster_wire_receiver_t;

/* Decodes and checks an envelope only: size, protocol version, MAC (with a
 * key; ERR_UNAUTHORIZED), cluster name, sender id, known type, deadline
 * (now_unix_ms past a non-zero deadline: ERR_TIMEOUT). out->body stays NULL:
 * the body is decoded by cluster_wire_decode_body, on whichever thread will
 * use it. */
int cluster_wire_decode_envelope(const uint8_t *p, size_t n, const cluster_wire_limits_t *lim,
                                 const cluster_wire_receiver_t *to, uint64_t now_unix_ms,
                                 cluster_msg_t *out, errmsg_t *em);
/* The same, but env->body (and a PartialResult's forests once the body is
 * decoded) point into p instead of copies: p must stay valid until the
 * message is freed. The caller hands p to the message with cluster_msg_hold
 * at once on success (on failure it keeps p). Saves copying a render's
 * answer (megabytes) once on the receiving node. */
int cluster_wire_decode_envelope_in_place(const uint8_t *p, size_t n,
                                          const cluster_wire_limits_t *lim,
                                          const cluster_wire_receiver_t *to, uint64_t now_unix_ms,
                                          cluster_msg_t *out, errmsg_t *em);
/* m takes ownership of bytes: cluster_msg_free calls release(bytes). */
void cluster_msg_hold(cluster_msg_t *m, void *bytes, void (*release)(void *));
/* Decodes and checks the body of a decoded envelope (any thread): tenant
 * present and bounded, profile id 16 bytes, counts and string lengths within
 * limits, token ranges sane, the body's deadline. Gossip bodies are refused
 * (ERR_UNSUPPORTED): the ring reads them. On failure m->body stays NULL. */
int cluster_wire_decode_body(cluster_msg_t *m, const cluster_wire_limits_t *lim,
                             uint64_t now_unix_ms, errmsg_t *em);
/* Both; lim NULL means cluster_wire_limits_default. Nothing in a refused
 * message is trusted. */
int cluster_wire_decode(const uint8_t *p, size_t n, const cluster_wire_limits_t *lim,
                        const cluster_wire_receiver_t *to, uint64_t now_unix_ms, cluster_msg_t *out,
                        errmsg_t *em);
void cluster_msg_free(cluster_msg_t *m);

#endif
