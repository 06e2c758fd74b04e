/* rpc.c — intra-cluster messaging on nanomsg in the libuv loop (rpc_int.h).
 *
 * One NN_PULL socket receives; one NN_PUSH socket per peer sends. nanomsg
 * signals readiness through its own file descriptors (NN_RCVFD readable: a
 * message can be received; NN_SNDFD readable: a message can be sent), which
 * are watched with uv_poll and never read. Sends never block: a message the
 * socket cannot take now waits in the peer's queue (bounded in bytes) and is
 * retried when NN_SNDFD fires; a sweep timer drops messages whose deadline
 * passed, so a peer that never connects cannot pin memory for long.
 *
 * The loop only ever polls NN_SNDFD while a queue is non-empty: that fd stays
 * readable as long as sending is possible, so polling it otherwise would spin.
 *
 * rpc_send_now sends from a pool thread: the peer list, the queues, the
 * send counters and the socket errors are held by rpc_t.mu wherever they
 * change or a message goes out, so a message from a pool thread never
 * passes one queued before it nor falls between the frames of another. The
 * loop reads the list without it (only the loop changes it).
 */
#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <nanomsg/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "node/cluster/rpc_int.h"

/* Messages received per wakeup, so one busy sender cannot starve the loop. */
#define RPC_RECV_BATCH 256
#define RPC_SWEEP_MS 200

typedef struct rpc_msg {
    struct rpc_msg *next;
    uint64_t deadline_ms; /* uv_now() time, 0: none */
    size_t len;
    uint8_t data[];
} rpc_msg_t;

typedef struct peer {
    struct peer *next;
    rpc_t *rpc;
    char *addr;
    int sock;
    int eid;             /* the socket's one endpoint (nn_connect) */
    uint64_t dialled_ms; /* uv_now() of its nn_connect */
    /* uv_now() of the first request sent since the peer last answered (0:
     * none waiting; rpc_awaiting, rpc_answered). */
    uint64_t waiting_ms;
    uv_poll_t poll;
    int polling;
    rpc_msg_t *head, *tail;
    size_t queued_bytes;
    uint64_t last_used_ms;
} peer_t;

struct rpc {
    uv_loop_t *loop;
    uv_mutex_t mu; /* peers, their queues, stats.sent and socket_errors (file comment) */
    rpc_options_t o;
    char *listen_addr;
    rpc_receive_fn fn;
    void *ctx;
    void *receiving; /* the message fn is called with, until rpc_keep_message */
    int sock;        /* NN_PULL */
    uv_poll_t rpoll;
    uv_timer_t sweep;
    peer_t *peers;
    uint32_t npeers;
    rpc_stats_t stats;
    int closing;
    int open_handles; /* poll and timer handles not yet closed */
    void (*done)(void *arg);
    void *done_arg;
};

/* ---------- helpers ---------- */

/* The kernel's buffer of each connection, sending (NN_SNDBUF, on a peer's
 * socket) and receiving (NN_RCVBUF, on the listening one): room for a
 * frame. nanomsg sets SO_SNDBUF and SO_RCVBUF from them, 128 KiB by
 * default, which turns off the kernel's own sizing, so a larger frame (a
 * share's forests: hundreds of KiB) went out in turns, each waking the
 * sending and the receiving nanomsg threads once more. The kernel caps them
 * (net.core.wmem_max, rmem_max) and takes memory only for bytes in flight;
 * past RPC_SOCKET_BUFFER_MAX a frame goes in turns again. */
#define RPC_SOCKET_BUFFER_MIN (128 << 10)
#define RPC_SOCKET_BUFFER_MAX (4 << 20)

static void set_buffer(const rpc_t *r, int sock, int option)
{
    size_t b = r->o.max_frame_bytes;
    int n = b < RPC_SOCKET_BUFFER_MIN   ? RPC_SOCKET_BUFFER_MIN
            : b > RPC_SOCKET_BUFFER_MAX ? RPC_SOCKET_BUFFER_MAX
                                        : (int)b;
    nn_setsockopt(sock, NN_SOL_SOCKET, option, &n, sizeof n);
}

/* Every message goes out as soon as it is sent. The receiving end of a
 * connection never sends data back (a reply comes over the other node's own
 * connection), so with Nagle's algorithm a message sent while the one
 * before is not acknowledged yet waited for the receiver's delayed
 * acknowledgement: up to 40 ms on Linux, for a query's ask, a share's
 * answer or a replica's acknowledgement. */
static void set_nodelay(int sock, const char *addr)
{
    int on = 1;
    if (nn_setsockopt(sock, NN_TCP, NN_TCP_NODELAY, &on, sizeof on) < 0)
        log_warn("rpc",
                 "%s: cannot turn Nagle's algorithm off (%s): small messages may wait "
                 "40 ms for an acknowledgement",
                 addr, nn_strerror(nn_errno()));
}

static int nn_fail(errmsg_t *em, const char *what, const char *addr)
{
    int e = nn_errno();
    return errmsg_set(em, ERR_IO, "cluster transport: %s %s: %s", what, addr, nn_strerror(e));
}

static int get_fd(int sock, int option, int *fd)
{
    size_t sz = sizeof *fd;
    return nn_getsockopt(sock, NN_SOL_SOCKET, option, fd, &sz);
}

static void handle_closed(uv_handle_t *h)
{
    rpc_t *r = h->data;
    if (--r->open_handles == 0 && r->done != NULL) r->done(r->done_arg);
}

static void queue_clear(peer_t *p)
{
    while (p->head != NULL) {
        rpc_msg_t *m = p->head;
        p->head = m->next;
        free(m);
    }
    p->tail = NULL;
    p->queued_bytes = 0;
}

/* ---------- peers ---------- */

static void peer_closed(uv_handle_t *h)
{
    peer_t *p = h->data;
    rpc_t *r = p->rpc;
    nn_close(p->sock);
    free(p->addr);
    free(p);
    if (--r->open_handles == 0 && r->done != NULL) r->done(r->done_arg);
}

/* Unlinks p and closes it; the socket is closed once the poll handle is. */
static void peer_close(rpc_t *r, peer_t *p)
{
    for (peer_t **pp = &r->peers; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    r->npeers--;
    queue_clear(p);
    p->poll.data = p;
    uv_close((uv_handle_t *)&p->poll, peer_closed);
}

static peer_t *peer_find(rpc_t *r, const char *addr)
{
    for (peer_t *p = r->peers; p != NULL; p = p->next)
        if (strcmp(p->addr, addr) == 0) return p;
    return NULL;
}

/* Closes the least recently used peer so a new one fits under max_peers. */
static void peer_evict(rpc_t *r)
{
    peer_t *lru = NULL;
    for (peer_t *p = r->peers; p != NULL; p = p->next)
        if (lru == NULL || p->last_used_ms < lru->last_used_ms) lru = p;
    if (lru != NULL) {
        log_info("rpc", "closing the connection to %s (more than %u peers)", lru->addr,
                 r->o.max_peers);
        peer_close(r, lru);
    }
}

static int peer_socket(const rpc_t *r, const char *addr, int *sock_out, int *eid_out, int *fd_out,
                       errmsg_t *em)
{
    int s = nn_socket(AF_SP, NN_PUSH);
    if (s < 0) return nn_fail(em, "cannot create a socket for", addr);
    int linger = 0, ivl_max = 2000;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof linger);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    set_buffer(r, s, NN_SNDBUF);
    set_nodelay(s, addr);
    int eid = nn_connect(s, addr);
    if (eid < 0 || get_fd(s, NN_SNDFD, fd_out) < 0) {
        int rc = nn_fail(em, "cannot connect to", addr);
        nn_close(s);
        return rc;
    }
    *sock_out = s;
    *eid_out = eid;
    return ERR_OK;
}

static int peer_open(rpc_t *r, const char *addr, peer_t **out)
{
    if (r->npeers >= r->o.max_peers) peer_evict(r);
    errmsg_t em = {{0}};
    int sock = -1, eid = -1, fd = -1;
    int rc = peer_socket(r, addr, &sock, &eid, &fd, &em);
    if (rc != ERR_OK) {
        r->stats.socket_errors++;
        log_warn("rpc", "%s", em.text);
        return ERR_INVALID_ARGUMENT;
    }
    peer_t *p = calloc(1, sizeof *p);
    if (p == NULL || (p->addr = strdup(addr)) == NULL || uv_poll_init(r->loop, &p->poll, fd) != 0) {
        /* the poll handle was never initialised: nothing to close in the loop */
        if (p != NULL) free(p->addr);
        free(p);
        nn_close(sock);
        return ERR_NOMEM;
    }
    p->rpc = r;
    p->sock = sock;
    p->eid = eid;
    p->dialled_ms = uv_now(r->loop);
    p->poll.data = p;
    p->next = r->peers;
    r->peers = p;
    r->npeers++;
    r->open_handles++;
    *out = p;
    return ERR_OK;
}

/* ---------- sending ---------- */

static void on_writable(uv_poll_t *h, int status, int events);
static void on_sweep(uv_timer_t *t);

/* 1 sent, 0 the socket cannot take it now, negative on a socket error. */
static int try_send(rpc_t *r, peer_t *p, const uint8_t *msg, size_t len)
{
    int n = nn_send(p->sock, msg, len, NN_DONTWAIT);
    if (n >= 0) {
        r->stats.sent++;
        r->stats.bytes_sent += len;
        return 1;
    }
    int e = nn_errno();
    if (e == EAGAIN || e == EINTR) return 0;
    r->stats.socket_errors++;
    log_warn("rpc", "send to %s: %s", p->addr, nn_strerror(e));
    return ERR_IO;
}

static void set_polling(peer_t *p, int on)
{
    if (on && !p->polling)
        uv_poll_start(&p->poll, UV_READABLE, on_writable);
    else if (!on && p->polling)
        uv_poll_stop(&p->poll);
    p->polling = on;
}

static void sweep_arm(rpc_t *r)
{
    if (!r->closing && !uv_is_active((uv_handle_t *)&r->sweep))
        uv_timer_start(&r->sweep, on_sweep, RPC_SWEEP_MS, RPC_SWEEP_MS);
}

static int expired(const rpc_t *r, const rpc_msg_t *m)
{
    return m->deadline_ms != 0 && uv_now(r->loop) > m->deadline_ms;
}

static void queue_pop(peer_t *p)
{
    rpc_msg_t *m = p->head;
    p->head = m->next;
    if (p->head == NULL) p->tail = NULL;
    p->queued_bytes -= m->len;
    free(m);
}

/* Sends what the socket takes now, oldest first; expired messages go. */
static void peer_drain(rpc_t *r, peer_t *p)
{
    while (p->head != NULL) {
        if (expired(r, p->head)) {
            r->stats.dropped_deadline++;
            queue_pop(p);
            continue;
        }
        int rc = try_send(r, p, p->head->data, p->head->len);
        if (rc == 0) break;
        queue_pop(p); /* sent, or refused by the socket for good */
    }
    set_polling(p, p->head != NULL);
}

static void on_writable(uv_poll_t *h, int status, int events)
{
    (void)events;
    peer_t *p = h->data;
    uv_mutex_lock(&p->rpc->mu);
    if (status < 0) {
        p->rpc->stats.socket_errors++;
        set_polling(p, 0);
    } else {
        peer_drain(p->rpc, p);
    }
    uv_mutex_unlock(&p->rpc->mu);
}

static int enqueue(rpc_t *r, peer_t *p, const uint8_t *msg, size_t len, uint64_t deadline_ms)
{
    if (p->queued_bytes + len > r->o.max_queued_bytes) {
        r->stats.dropped_queue_full++;
        return ERR_UNAVAILABLE;
    }
    rpc_msg_t *m = malloc(sizeof *m + len);
    if (m == NULL) return ERR_NOMEM;
    m->next = NULL;
    m->deadline_ms = deadline_ms;
    m->len = len;
    memcpy(m->data, msg, len);
    if (p->tail != NULL)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    p->queued_bytes += len;
    set_polling(p, 1);
    sweep_arm(r);
    return ERR_OK;
}

static int peer_for(rpc_t *r, const char *addr, peer_t **out)
{
    if (addr == NULL || addr[0] == '\0') return ERR_INVALID_ARGUMENT;
    peer_t *p = peer_find(r, addr);
    if (p == NULL) {
        int rc = peer_open(r, addr, &p);
        if (rc != ERR_OK) return rc;
    }
    p->last_used_ms = uv_now(r->loop);
    *out = p;
    return ERR_OK;
}

/* rpc_sendv's work, under r->mu. */
static int send_locked(rpc_t *r, const char *addr, const rpc_frame_t *frames, size_t n,
                       size_t total, uint64_t deadline_ms)
{
    peer_t *p;
    int rc = peer_for(r, addr, &p);
    if (rc != ERR_OK) return rc;
    /* room for every frame before the first goes, so a message is never cut */
    if (p->queued_bytes + total > r->o.max_queued_bytes) {
        r->stats.dropped_queue_full++;
        return ERR_UNAVAILABLE;
    }
    size_t i = 0;
    while (i < n && p->head == NULL) {
        rc = try_send(r, p, frames[i].data, frames[i].len);
        if (rc == 0) break;
        if (rc < 0 && i == 0) return rc;
        i++; /* sent, or (past the first) refused for good: the receiver drops the rest */
    }
    for (; i < n; i++)
        if ((rc = enqueue(r, p, frames[i].data, frames[i].len, deadline_ms)) != ERR_OK) return rc;
    return ERR_OK;
}

int rpc_sendv(rpc_t *r, const char *addr, const rpc_frame_t *frames, size_t n, uint64_t deadline_ms)
{
    if (r->closing) return ERR_UNAVAILABLE;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (frames[i].len > r->o.max_frame_bytes) {
            r->stats.refused_too_large++;
            return ERR_TOO_LARGE;
        }
        total += frames[i].len;
    }
    uv_mutex_lock(&r->mu);
    int rc = send_locked(r, addr, frames, n, total, deadline_ms);
    uv_mutex_unlock(&r->mu);
    return rc;
}

int rpc_send_now(rpc_t *r, const char *addr, const uint8_t *msg, size_t len)
{
    if (len > r->o.max_frame_bytes || addr == NULL) return 0;
    uv_mutex_lock(&r->mu);
    peer_t *p = r->closing ? NULL : peer_find(r, addr);
    int rc = p != NULL && p->head == NULL ? try_send(r, p, msg, len) : 0;
    uv_mutex_unlock(&r->mu);
    return rc;
}

int rpc_send(rpc_t *r, const char *addr, const uint8_t *msg, size_t len, uint64_t deadline_ms)
{
    if (len > r->o.max_message_bytes) {
        if (!r->closing) r->stats.refused_too_large++;
        return r->closing ? ERR_UNAVAILABLE : ERR_TOO_LARGE;
    }
    rpc_frame_t f = {msg, len};
    return rpc_sendv(r, addr, &f, 1, deadline_ms);
}

/* Drops expired messages of every queue; stops when all queues are empty. */
static void on_sweep(uv_timer_t *t)
{
    rpc_t *r = t->data;
    int waiting = 0;
    uv_mutex_lock(&r->mu);
    for (peer_t *p = r->peers; p != NULL; p = p->next) {
        while (p->head != NULL && expired(r, p->head)) {
            r->stats.dropped_deadline++;
            queue_pop(p);
        }
        set_polling(p, p->head != NULL);
        waiting |= p->head != NULL;
    }
    uv_mutex_unlock(&r->mu);
    if (!waiting) uv_timer_stop(t);
}

void rpc_forget_peer(rpc_t *r, const char *addr)
{
    peer_t *p = addr != NULL ? peer_find(r, addr) : NULL;
    if (p == NULL) return;
    uv_mutex_lock(&r->mu);
    peer_close(r, p);
    uv_mutex_unlock(&r->mu);
}

/* Replaces the peer's endpoint by a fresh one on the same socket: the old
 * TCP connection is closed (nanomsg cannot tell a connection whose peer went
 * silent from an idle one: it stays established while TCP retransmits with
 * a backoff that doubles up to minutes) and a new one is dialled at once.
 * The socket, its poll handle and the messages queued here are kept. */
static int peer_redial(rpc_t *r, peer_t *p)
{
    p->dialled_ms = uv_now(r->loop); /* tried now, either way */
    if (nn_shutdown(p->sock, p->eid) < 0) {
        /* the old endpoint stays: a second one would split the sends */
        r->stats.socket_errors++;
        log_warn("rpc", "redial %s: dropping the connection: %s", p->addr, nn_strerror(nn_errno()));
        return ERR_IO;
    }
    p->eid = nn_connect(p->sock, p->addr);
    if (p->eid >= 0) {
        r->stats.redials++;
        return ERR_OK;
    }
    /* no endpoint left: close the peer; the next send opens a new one */
    r->stats.socket_errors++;
    log_warn("rpc", "redial %s: %s", p->addr, nn_strerror(nn_errno()));
    peer_close(r, p);
    return ERR_IO;
}

int rpc_redial(rpc_t *r, const char *addr, uint64_t min_age_ms)
{
    peer_t *p = addr != NULL && !r->closing ? peer_find(r, addr) : NULL;
    if (p == NULL || uv_now(r->loop) - p->dialled_ms < min_age_ms) return 0;
    uv_mutex_lock(&r->mu);
    int rc = peer_redial(r, p);
    uv_mutex_unlock(&r->mu);
    return rc == ERR_OK ? 1 : rc;
}

void rpc_awaiting(rpc_t *r, const char *addr)
{
    peer_t *p = addr != NULL ? peer_find(r, addr) : NULL;
    uint64_t now = uv_now(r->loop);
    if (p != NULL && p->waiting_ms == 0) p->waiting_ms = now != 0 ? now : 1; /* 0: none */
}

void rpc_answered(rpc_t *r, const char *addr)
{
    peer_t *p = addr != NULL ? peer_find(r, addr) : NULL;
    if (p != NULL) p->waiting_ms = 0;
}

/* Requests waited silence_ms with no answer in between: an answer clears
 * waiting_ms, so a peer that still answers anything that often (slowly, or
 * between the pieces of a long transfer) is left alone. */
int rpc_redial_unanswered(rpc_t *r, const char *addr, uint64_t silence_ms, uint64_t min_age_ms)
{
    peer_t *p = addr != NULL && !r->closing ? peer_find(r, addr) : NULL;
    uint64_t now = uv_now(r->loop);
    if (p == NULL || p->waiting_ms == 0 || now - p->waiting_ms < silence_ms) return 0;
    int rc = rpc_redial(r, addr, min_age_ms);
    if (rc == 1) r->stats.redials_unanswered++;
    return rc;
}

/* ---------- receiving ---------- */

/* A receive error, counted under the mutex (a pool thread's send counts
 * its errors in the same field). */
static void count_socket_error(rpc_t *r)
{
    uv_mutex_lock(&r->mu);
    r->stats.socket_errors++;
    uv_mutex_unlock(&r->mu);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    rpc_t *r = h->data;
    if (status < 0) {
        count_socket_error(r);
        return;
    }
    for (int i = 0; i < RPC_RECV_BATCH && !r->closing; i++) {
        void *msg = NULL;
        int n = nn_recv(r->sock, &msg, NN_MSG, NN_DONTWAIT);
        if (n < 0) {
            int e = nn_errno();
            if (e != EAGAIN && e != EINTR) {
                count_socket_error(r);
                log_warn("rpc", "receive: %s", nn_strerror(e));
            }
            return;
        }
        r->stats.received++;
        r->stats.bytes_received += (uint64_t)n;
        r->receiving = msg;
        r->fn(r->ctx, msg, (size_t)n);
        if (r->receiving != NULL) nn_freemsg(msg);
        r->receiving = NULL;
    }
}

void *rpc_keep_message(rpc_t *r)
{
    void *m = r->receiving;
    r->receiving = NULL;
    return m;
}

void rpc_message_free(void *msg)
{
    if (msg != NULL) nn_freemsg(msg);
}

/* ---------- lifetime ---------- */

int rpc_set_receive_max(rpc_t *r, size_t bytes)
{
    if (bytes == 0 || bytes > r->o.max_message_bytes) bytes = r->o.max_message_bytes;
    /* nanomsg reads the option at each frame's header: it holds from the next frame on */
    int max = bytes > INT_MAX ? -1 : (int)bytes;
    if (nn_setsockopt(r->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max) < 0) return ERR_IO;
    r->o.receive_max_bytes = bytes;
    return ERR_OK;
}

size_t rpc_receive_max(const rpc_t *r)
{
    return r->o.receive_max_bytes;
}

static int bind_pull(rpc_t *r, errmsg_t *em)
{
    r->sock = nn_socket(AF_SP, NN_PULL);
    if (r->sock < 0) return nn_fail(em, "cannot create a socket for", r->listen_addr);
    /* nanomsg allocates what a frame's header announces before its bytes
     * arrive, from anyone who connects: this bounds it per connection */
    int linger = 0;
    nn_setsockopt(r->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof linger);
    set_buffer(r, r->sock, NN_RCVBUF);
    if (rpc_set_receive_max(r, r->o.receive_max_bytes) != ERR_OK)
        return nn_fail(em, "cannot set the message limit on", r->listen_addr);
    if (nn_bind(r->sock, r->listen_addr) < 0)
        return nn_fail(em, "cannot listen on", r->listen_addr);
    return ERR_OK;
}

static int start_receiving(rpc_t *r, errmsg_t *em)
{
    int fd;
    if (get_fd(r->sock, NN_RCVFD, &fd) < 0) return nn_fail(em, "cannot watch", r->listen_addr);
    if (uv_poll_init(r->loop, &r->rpoll, fd) != 0)
        return errmsg_set(em, ERR_IO, "cluster transport: cannot poll %s", r->listen_addr);
    r->rpoll.data = r;
    r->open_handles++;
    uv_poll_start(&r->rpoll, UV_READABLE, on_readable);
    return ERR_OK;
}

int rpc_new(uv_loop_t *loop, const rpc_options_t *o, rpc_receive_fn fn, void *ctx, rpc_t **out,
            errmsg_t *em)
{
    rpc_t *r = calloc(1, sizeof *r);
    if (r == NULL || (r->listen_addr = strdup(o->listen_addr ? o->listen_addr : "")) == NULL) {
        free(r);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    if (uv_mutex_init(&r->mu) != 0) {
        free(r->listen_addr);
        free(r);
        return errmsg_set(em, ERR_NOMEM, "cannot create a mutex");
    }
    r->loop = loop;
    r->o = *o;
    r->o.listen_addr = r->listen_addr;
    if (r->o.max_peers == 0) r->o.max_peers = 1;
    if (r->o.max_frame_bytes == 0 || r->o.max_frame_bytes > r->o.max_message_bytes)
        r->o.max_frame_bytes = r->o.max_message_bytes;
    if (r->o.receive_max_bytes == 0) r->o.receive_max_bytes = r->o.max_frame_bytes;
    r->fn = fn;
    r->ctx = ctx;
    int rc = bind_pull(r, em);
    if (rc == ERR_OK) rc = start_receiving(r, em);
    if (rc != ERR_OK) {
        if (r->sock >= 0) nn_close(r->sock);
        uv_mutex_destroy(&r->mu);
        free(r->listen_addr);
        free(r);
        return rc;
    }
    uv_timer_init(loop, &r->sweep);
    r->sweep.data = r;
    r->open_handles++;
    *out = r;
    return ERR_OK;
}

void rpc_stats(rpc_t *r, rpc_stats_t *out)
{
    uv_mutex_lock(&r->mu);
    *out = r->stats;
    uv_mutex_unlock(&r->mu);
    if (r->sock < 0) return;
    out->connections_accepted = nn_get_statistic(r->sock, NN_STAT_ACCEPTED_CONNECTIONS);
    out->connections_dropped = nn_get_statistic(r->sock, NN_STAT_DROPPED_CONNECTIONS);
    out->connections_broken = nn_get_statistic(r->sock, NN_STAT_BROKEN_CONNECTIONS);
    out->connections_current = nn_get_statistic(r->sock, NN_STAT_CURRENT_CONNECTIONS);
}

static void pull_closed(uv_handle_t *h)
{
    rpc_t *r = h->data;
    nn_close(r->sock);
    r->sock = -1;
    handle_closed(h);
}

void rpc_close(rpc_t *r, void (*done)(void *arg), void *arg)
{
    if (r->closing) return;
    uv_mutex_lock(&r->mu);
    r->closing = 1;
    r->done = done;
    r->done_arg = arg;
    uv_close((uv_handle_t *)&r->rpoll, pull_closed);
    uv_close((uv_handle_t *)&r->sweep, handle_closed);
    while (r->peers != NULL)
        peer_close(r, r->peers);
    uv_mutex_unlock(&r->mu);
}

void rpc_free(rpc_t *r)
{
    if (r == NULL) return;
    uv_mutex_destroy(&r->mu);
    free(r->listen_addr);
    free(r);
}
