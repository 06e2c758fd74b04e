/* rpc_int.h — intra-cluster messaging on nanomsg, driven by the node's libuv loop
 * (internal to node/cluster/).
 *
 * Owns the nanomsg sockets: one NN_PULL socket bound at the node's cluster
 * address receives every message; one NN_PUSH socket per peer (created on
 * first use, connected to the peer's cluster address, reconnected by nanomsg
 * when a connection breaks, redialled by rpc_redial / rpc_redial_unanswered
 * when it went silent) sends. Sockets are integrated into the loop through
 * NN_RCVFD / NN_SNDFD and uv_poll, never blocking the loop. Messages are
 * whole cluster Envelopes (cluster_wire_encode); this layer does not look inside them. Replies
 * travel the same way, to the sender's own PULL socket, so any number of requests may be
 * outstanding to one peer (unlike NN_REQ, which carries one).
 *
 * nanomsg pitfalls handled here: NN_RCVMAXSIZE is set to receive_max_bytes
 * (the caller's choice, changed with rpc_set_receive_max; nanomsg allocates a message at the size
 * its 8-byte header announces, before any byte of it arrives, and a peer needs no secret to send
 * one: the frame limit bounds what an unauthenticated connection can make this node hold; a larger
 * message drops the connection); larger outgoing frames are refused before sending, and a message
 * larger than a frame is sent as several (rpc_sendv, cut by the caller); sends never block
 * (NN_DONTWAIT) — a message that cannot be sent now waits in a bounded per-peer queue until
 * NN_SNDFD says the socket can take it, or its deadline passes (then it is dropped and counted).
 * Peer sockets send without Nagle's delay (NN_TCP_NODELAY): their receiver never sends data
 * back, so a small message could wait 40 ms for its delayed acknowledgement.
 *
 * Threads: every function on the loop thread but rpc_send_now (any thread,
 * between rpc_new and rpc_free) and rpc_message_free. Ownership: rpc_new() returns a
 * handle the caller owns; close it with rpc_close() and free it with
 * rpc_free() once the close callback ran. Message bytes passed to rpc_send are
 * copied; bytes passed to the receive callback are borrowed for the call.
 */
#ifndef FLAMEDB_NODE_RPC_H
#define FLAMEDB_NODE_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"

typedef struct rpc rpc_t;

typedef struct rpc_options {
    const char *listen_addr;  /* tcp://HOST:PORT to bind (port 0 is not supported by nanomsg) */
    size_t max_message_bytes; /* largest message sent */
    size_t max_queued_bytes;  /* bytes waiting to be sent, per peer */
    uint32_t max_peers;       /* peer sockets kept open */
    size_t max_frame_bytes;   /* largest frame sent; 0 or more than max_message_bytes:
                               * max_message_bytes */
    size_t receive_max_bytes; /* largest frame received (NN_RCVMAXSIZE) at first; 0:
                               * max_frame_bytes (rpc_set_receive_max changes it) */
} rpc_options_t;

typedef struct rpc_stats {
    uint64_t received, sent;
    uint64_t bytes_received, bytes_sent;
    uint64_t refused_too_large; /* outgoing messages over max_message_bytes or frames over
                                 * max_frame_bytes */
    uint64_t dropped_queue_full;
    uint64_t dropped_deadline; /* waited in a queue past their deadline */
    uint64_t socket_errors;
    uint64_t redials;            /* connections dropped and dialled again (rpc_redial) */
    uint64_t redials_unanswered; /* of which by rpc_redial_unanswered */
    /* Incoming connections, from nanomsg's statistics of the PULL socket:
     * accepted; dropped during the handshake (not the SP protocol); broken
     * once established (e.g. a message over max_message_bytes). */
    uint64_t connections_accepted, connections_dropped, connections_broken;
    /* Incoming connections open now (nanomsg caps them with no option: a
     * count well above the members' says someone else connects). */
    uint64_t connections_current;
} rpc_stats_t;

/* Called on the loop thread for every message received; msg borrowed. */
typedef void (*rpc_receive_fn)(void *ctx, const uint8_t *msg, size_t len);
/* Called from an rpc_receive_fn only: the message it was called with stays
 * valid after the call; caller owns it, free it with rpc_message_free (from
 * any thread). Saves copying a message that is kept anyway. */
void *rpc_keep_message(rpc_t *r);
void rpc_message_free(void *msg);

/* Binds listen_addr and starts receiving. ERR_IO with the nanomsg reason in
 * em when the address cannot be bound. */
int rpc_new(uv_loop_t *loop, const rpc_options_t *o, rpc_receive_fn fn, void *ctx, rpc_t **out,
            errmsg_t *em);

/* Queues msg for the peer at addr (tcp://HOST:PORT). deadline_ms is a
 * uv_now() time after which the message is not worth sending (0: none).
 * ERR_TOO_LARGE over max_message_bytes or max_frame_bytes; ERR_UNAVAILABLE when
 * the peer's queue is full. Success means queued, not delivered: replies
 * (acks) confirm. */
int rpc_send(rpc_t *r, const char *addr, const uint8_t *msg, size_t len, uint64_t deadline_ms);

/* From any thread: sends msg (one frame, not over max_frame_bytes) to the
 * peer at addr at once, when a socket to it is open, nothing waits in its
 * queue (messages to a peer keep their order) and the socket takes it now;
 * bytes borrowed for the call. 1 sent; 0 not (send it with rpc_send on the
 * loop, which opens the socket or queues it); negative when the socket
 * refused it for good (counted and logged, as rpc_send does). Saves a message built on a
 * pool thread its trip through the loop; never blocks on the network. */
int rpc_send_now(rpc_t *r, const char *addr, const uint8_t *msg, size_t len);

/* One frame of rpc_sendv; bytes borrowed for the call. */
typedef struct rpc_frame {
    const uint8_t *data;
    size_t len;
} rpc_frame_t;

/* rpc_send of n frames that go together (the pieces of one message): all of
 * them are queued, in order and with nothing between them on the peer's
 * connection, or none (ERR_UNAVAILABLE when the queue has no room for all;
 * ERR_TOO_LARGE when one is over max_frame_bytes). */
int rpc_sendv(rpc_t *r, const char *addr, const rpc_frame_t *frames, size_t n,
              uint64_t deadline_ms);

/* Drops the connection to the peer at addr and dials it again at once, when
 * the current connection was dialled at least min_age_ms ago (for a peer
 * that is down: an established TCP connection to a host that is cut off
 * stays open, retransmitting with a backoff that grows with the outage, so
 * after the network heals it could stay silent for as long again). Messages
 * queued here are kept for the new connection; those already handed to the
 * old one may be lost (acks and deadlines cover that). 1 redialled, 0 not
 * (no socket to addr, or a younger one), negative on a socket error: the
 * old connection could not be dropped (kept; tried again min_age_ms later),
 * or no new one could be dialled (the peer is closed; the next rpc_send
 * opens a new one). */
int rpc_redial(rpc_t *r, const char *addr, uint64_t min_age_ms);

/* Requests and their answers, so a connection that carries requests but
 * brings nothing back can be told from an idle one. rpc_awaiting: a request
 * (a message that expects an answer) was just queued for the peer at addr;
 * rpc_answered: an answer from that peer arrived (the caller maps the
 * sender to its address). Unknown addresses are ignored. */
void rpc_awaiting(rpc_t *r, const char *addr);
void rpc_answered(rpc_t *r, const char *addr);

/* rpc_redial for a peer that is not down but does not answer: only when a
 * request has waited at least silence_ms and no answer at all came from the
 * peer for silence_ms (so a slow peer that still answers something is not
 * cut off mid-message), and, as rpc_redial, when the connection is at least
 * min_age_ms old. Answers travel on the peer's own connection to this node,
 * so a partition of the link between two nodes that both still gossip
 * through a third shows only this way. Same results as rpc_redial. */
int rpc_redial_unanswered(rpc_t *r, const char *addr, uint64_t silence_ms, uint64_t min_age_ms);

/* Closes a peer's socket (e.g. when it left the cluster); queued messages are
 * dropped. Unknown addresses are ignored. */
void rpc_forget_peer(rpc_t *r, const char *addr);

void rpc_stats(rpc_t *r, rpc_stats_t *out);

/* Sets the largest frame received (NN_RCVMAXSIZE) from the next frame on, on
 * every connection; 0 or more than max_message_bytes: max_message_bytes.
 * ERR_IO when nanomsg refuses (the limit is then unchanged). */
int rpc_set_receive_max(rpc_t *r, size_t bytes);
size_t rpc_receive_max(const rpc_t *r);

/* Stops receiving and closes every socket; done(arg) runs on the loop once the
 * poll handles are closed. */
void rpc_close(rpc_t *r, void (*done)(void *arg), void *arg);
void rpc_free(rpc_t *r);

#endif
