/* chunk_int.h — messages larger than a frame, cut into signed pieces and put
 * back together (internal to node/cluster/; docs/cluster-protocol.md,
 * "Frames and chunks").
 *
 * The cluster port takes frames of at most --max-frame-bytes: nanomsg
 * allocates a frame at the size its header announces before a byte of it
 * arrives and before anything tells who sent it, so that limit is what a
 * connection without the cluster secret can make a node hold. A message
 * larger than a frame goes as CHUNK envelopes (common/proto/cluster.proto),
 * each signed and checked on arrival like any envelope; only pieces whose
 * MAC checked, from members, are kept for reassembly, and the whole is then
 * decoded (and its own MAC checked) like a message that came in one frame.
 *
 * The pieces of one message leave in a row on the sender's one connection to
 * the receiver (rpc_sendv), so a receiver keeps, per sender, the message
 * being put together (and one more, for a sender that reaches it through two
 * addresses): a piece out of order ends it (a piece lost on a redialled
 * connection), a first piece starts a new one, and one idle for the expiry
 * given (the failure timeout) is dropped. What a member can make a node hold
 * is thus at most CLUSTER_CHUNK_PARTIALS_PER_SENDER messages of at most
 * max-message-bytes.
 *
 * Threads: the loop thread. Ownership: the caller owns a cluster_chunks_t
 * (zeroed, then cluster_chunks_free) and every buffer it passes.
 */
#ifndef FLAMEDB_NODE_CLUSTER_CHUNK_INT_H
#define FLAMEDB_NODE_CLUSTER_CHUNK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "node/cluster/wire_int.h"
#include "ring/ring.h"

/* Partial messages kept per sender, and over all senders. */
#define CLUSTER_CHUNK_PARTIALS_PER_SENDER 2
#define CLUSTER_CHUNK_MAX_PARTIALS (CLUSTER_CHUNK_PARTIALS_PER_SENDER * RING_MAX_NODES)
/* Bytes of a CHUNK envelope besides its piece of data, at most: the envelope's
 * fields (cluster name and sender id counted apart), its MAC and the Chunk's
 * numbers. */
#define CLUSTER_CHUNK_ROOM 256

/* The CHUNK envelopes of one message, back to back in bytes; frame i ends
 * at ends[i] (and starts where frame i-1 ends). Free with
 * cluster_chunk_frames_free. */
typedef struct cluster_chunk_frames {
    buf_t bytes;
    size_t *ends;
    size_t n;
} cluster_chunk_frames_t;

/* Cuts msg (a whole envelope of len bytes, more than frame_bytes) into CHUNK
 * envelopes of at most frame_bytes each, signed as from says, with deadline
 * and message_id. ERR_INVALID_ARGUMENT when frame_bytes cannot hold a piece. */
int cluster_chunk_split(const cluster_wire_sender_t *from, uint64_t deadline_unix_ms,
                        uint64_t message_id, const uint8_t *msg, size_t len, size_t frame_bytes,
                        cluster_chunk_frames_t *out);
void cluster_chunk_frames_free(cluster_chunk_frames_t *f);

typedef struct cluster_chunk_partial {
    char sender[RING_NODE_ID_MAX + 1];
    uint64_t message_id;
    uint32_t next, count; /* the piece expected next, of count */
    uint64_t last_ms;     /* when the last piece came (caller's clock) */
    buf_t bytes;          /* max: the whole message's size (reserved at its first piece) */
    int skip;             /* refused over max_bytes: its pieces pass, nothing is kept */
} cluster_chunk_partial_t;

typedef struct cluster_chunk_stats {
    uint64_t pieces;         /* pieces taken */
    uint64_t messages;       /* messages put back together */
    uint64_t dropped;        /* partial messages dropped: out of order, replaced, expired,
                              * over max_bytes */
    uint64_t over_budget;    /* of them, over max_bytes */
    uint64_t bytes_held;     /* bytes of the partial messages held now */
    uint64_t bytes_reserved; /* bytes reserved for them (their whole sizes) */
} cluster_chunk_stats_t;

/* max_bytes (0: no limit) bounds the bytes reserved for partial messages
 * (each reserves its whole size at its first piece): a first piece that
 * would pass it drops its message (ERR_LIMIT, once; its later pieces are
 * taken and dropped, nothing kept) — the sender's request gets no answer, as
 * when a message is lost. */
typedef struct cluster_chunks {
    cluster_chunk_partial_t *v;
    size_t n, cap;
    size_t max_bytes;
    cluster_chunk_stats_t stats;
} cluster_chunks_t;

/* Takes one piece from sender (a member; the piece's envelope checked and its
 * body decoded). 0: taken, the message is not whole yet; 1: it is, and its
 * bytes were moved into *whole (the caller frees them; the previous content
 * of *whole is freed); negative: refused (em says why; a partial message it
 * broke is dropped); ERR_LIMIT: the message's first piece, its whole size
 * over what max_bytes leaves (the message is dropped). */
int cluster_chunks_add(cluster_chunks_t *cs, const char *sender,
                       const Flamedb__Cluster__Chunk *piece, uint64_t now_ms, buf_t *whole,
                       errmsg_t *em);
/* Drops partial messages that got no piece for idle_ms. */
void cluster_chunks_expire(cluster_chunks_t *cs, uint64_t now_ms, uint64_t idle_ms);
void cluster_chunks_free(cluster_chunks_t *cs);

#endif
