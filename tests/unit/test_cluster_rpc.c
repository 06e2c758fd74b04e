/* test_node_rpc.c — the nanomsg transport (node/rpc.h) for real over
 * tcp://127.0.0.1 between rpc_t handles in one process and one loop: ordered
 * delivery both ways, messages over nanomsg's default 1 MiB limit, refusals
 * (too large, queue full), deadlines of queued messages, a peer that starts
 * late, oversized input refused by the receiver, frames and the pieces of
 * a message queued all or none, forgetting peers, redialling
 * one (its queue kept), sends from another thread (rpc_send_now), connections
 * that send without Nagle's delay and a clean close with messages still
 * queued. Every wait is bounded.
 */
#include <netinet/tcp.h>
#include <unistd.h>

#include "check.h"
#include "test_net.h"
#include "node/cluster/rpc_int.h"

#define WAIT_MS 10000

typedef struct inbox {
    int count;
    int bad; /* messages whose content did not match */
    size_t bytes;
    size_t last_len;
    int next_seq;     /* expected sequence number (ordered delivery) */
    rpc_t *keep_from; /* non-NULL: keep every message (rpc_keep_message) */
    void *kept[4];
    size_t kept_len[4];
    int nkept;
} inbox_t;

/* Message i: 4-byte sequence number then len-4 bytes derived from it. */
static void fill(uint8_t *p, size_t len, int seq)
{
    memcpy(p, &seq, 4);
    for (size_t i = 4; i < len; i++)
        p[i] = (uint8_t)(seq * 31 + i * 7);
}

static void on_receive(void *ctx, const uint8_t *msg, size_t len)
{
    inbox_t *in = ctx;
    int seq = -1;
    if (len >= 4) memcpy(&seq, msg, 4);
    int ok = len >= 4 && seq == in->next_seq;
    for (size_t i = 4; ok && i < len; i++)
        ok = msg[i] == (uint8_t)(seq * 31 + i * 7);
    in->bad += !ok;
    in->next_seq = seq + 1;
    in->count++;
    in->bytes += len;
    in->last_len = len;
    if (in->keep_from != NULL && in->nkept < 4) {
        void *k = rpc_keep_message(in->keep_from);
        in->bad += k != (void *)msg;
        in->kept_len[in->nkept] = len;
        in->kept[in->nkept++] = k;
    }
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag >= want or WAIT_MS pass; returns 1 on success. */
static int run_until(uv_loop_t *loop, const int *flag, int want, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = uv_hrtime() / 1000000 + ms;
    while (*flag < want && uv_hrtime() / 1000000 < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag >= want;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    int never = 0;
    run_until(loop, &never, 1, ms);
}

typedef struct end {
    rpc_t *rpc;
    inbox_t in;
    char addr[64];
    int closed;
} end_t;

static void closed_cb(void *arg)
{
    ((end_t *)arg)->closed = 1;
}

static int open_end(uv_loop_t *loop, end_t *e, size_t max_msg, size_t max_queue)
{
    memset(e, 0, sizeof *e);
    snprintf(e->addr, sizeof e->addr, "tcp://127.0.0.1:%d", test_free_port());
    rpc_options_t o = {e->addr, max_msg, max_queue, 16};
    errmsg_t em = {{0}};
    int rc = rpc_new(loop, &o, on_receive, &e->in, &e->rpc, &em);
    if (rc != ERR_OK) fprintf(stderr, "rpc_new %s: %s\n", e->addr, em.text);
    return rc;
}

static void close_end(uv_loop_t *loop, end_t *e)
{
    rpc_close(e->rpc, closed_cb, e);
    CHECK(run_until(loop, &e->closed, 1, WAIT_MS));
    rpc_free(e->rpc);
}

static int send_seq(end_t *from, const end_t *to, int seq, size_t len, uint64_t deadline)
{
    uint8_t *p = malloc(len);
    fill(p, len, seq);
    int rc = rpc_send(from->rpc, to->addr, p, len, deadline);
    free(p);
    return rc;
}

static void test_exchange(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 8 << 20, 64 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 8 << 20, 64 << 20), ERR_OK);
    /* 200 small messages A -> B, in order */
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT(send_seq(&a, &b, i, 64 + (size_t)i, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 200, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    /* replies B -> A, and a 3 MiB message: over nanomsg's default 1 MiB */
    CHECK_EQ_INT(send_seq(&b, &a, 0, 100, 0), ERR_OK);
    CHECK_EQ_INT(send_seq(&b, &a, 1, 3 << 20, 0), ERR_OK);
    CHECK(run_until(loop, &a.in.count, 2, WAIT_MS));
    CHECK_EQ_INT(a.in.bad, 0);
    CHECK_EQ_INT(a.in.last_len, 3 << 20);
    /* over max_message_bytes: refused before sending, counted */
    CHECK_EQ_INT(send_seq(&a, &b, 200, (8 << 20) + 1, 0), ERR_TOO_LARGE);
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.sent, 200);
    CHECK_EQ_INT(s.received, 2);
    CHECK_EQ_INT(s.refused_too_large, 1);
    CHECK_EQ_INT(s.bytes_received, 100 + (3 << 20));
    close_end(loop, &a);
    close_end(loop, &b);
}

/* Nobody listens at the address: messages wait, then their deadline drops
 * them; a full queue refuses; a receiver that starts later gets the ones
 * without a deadline, in order. */
static void test_queue_and_deadlines(uv_loop_t *loop)
{
    end_t a, late;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 64 * 1024), ERR_OK);
    memset(&late, 0, sizeof late);
    snprintf(late.addr, sizeof late.addr, "tcp://127.0.0.1:%d", test_free_port());
    uint64_t soon = uv_now(loop) + 100;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(send_seq(&a, &late, 100 + i, 1000, soon), ERR_OK);
    run_for(loop, 600);
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.dropped_deadline, 3);
    CHECK_EQ_INT(s.sent, 0);
    /* 60 KB fit in the 64 KiB queue, the next 10 KB do not */
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(send_seq(&a, &late, i, 10000, 0), ERR_OK);
    CHECK_EQ_INT(send_seq(&a, &late, 6, 10000, 0), ERR_UNAVAILABLE);
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.dropped_queue_full, 1);
    /* the receiver appears: nanomsg reconnects and the queue drains */
    rpc_options_t o = {late.addr, 1 << 20, 1 << 20, 16};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(rpc_new(loop, &o, on_receive, &late.in, &late.rpc, &em), ERR_OK);
    CHECK(run_until(loop, &late.in.count, 6, WAIT_MS));
    CHECK_EQ_INT(late.in.bad, 0);
    CHECK_EQ_INT(late.in.count, 6);
    close_end(loop, &a);
    close_end(loop, &late);
}

static int sendv_seq(end_t *from, const end_t *to, int first, int n, size_t len)
{
    uint8_t *p = malloc((size_t)n * len);
    rpc_frame_t f[8];
    for (int i = 0; i < n; i++) {
        fill(p + (size_t)i * len, len, first + i);
        f[i] = (rpc_frame_t){p + (size_t)i * len, len};
    }
    int rc = rpc_sendv(from->rpc, to->addr, f, (size_t)n, 0);
    free(p);
    return rc;
}

/* Frames of at most max_frame_bytes (16 KiB here): a larger one is refused;
 * rpc_sendv queues every frame of a message or, when the queue (64 KiB) has
 * no room for all, none; a receiver that starts later gets them in order. */
static void test_frames(uv_loop_t *loop)
{
    end_t a, late;
    memset(&a, 0, sizeof a);
    memset(&late, 0, sizeof late);
    snprintf(a.addr, sizeof a.addr, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(late.addr, sizeof late.addr, "tcp://127.0.0.1:%d", test_free_port());
    rpc_options_t o = {a.addr, 1 << 20, 64 * 1024, 16, 16 * 1024};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(rpc_new(loop, &o, on_receive, &a.in, &a.rpc, &em), ERR_OK);
    CHECK_EQ_INT(sendv_seq(&a, &late, 0, 3, 10000), ERR_OK);
    CHECK_EQ_INT(sendv_seq(&a, &late, 3, 4, 10000), ERR_UNAVAILABLE); /* 70 KB: none */
    CHECK_EQ_INT(sendv_seq(&a, &late, 3, 3, 10000), ERR_OK);
    CHECK_EQ_INT(send_seq(&a, &late, 6, 20000, 0), ERR_TOO_LARGE); /* over a frame */
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.dropped_queue_full, 1);
    CHECK_EQ_INT(s.refused_too_large, 1);
    o.listen_addr = late.addr;
    CHECK_EQ_INT(rpc_new(loop, &o, on_receive, &late.in, &late.rpc, &em), ERR_OK);
    CHECK(run_until(loop, &late.in.count, 6, WAIT_MS));
    run_for(loop, 100);
    CHECK_EQ_INT(late.in.count, 6);
    CHECK_EQ_INT(late.in.bad, 0);
    close_end(loop, &a);
    close_end(loop, &late);
}

/* The receiver's limit is below what the sender may send: the big message is
 * not delivered (nanomsg drops the connection), nothing crashes, and the
 * sender's later messages arrive after the reconnect. */
static void test_oversized_input(uv_loop_t *loop)
{
    end_t big, small;
    CHECK_EQ_INT(open_end(loop, &big, 4 << 20, 64 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &small, 64 * 1024, 1 << 20), ERR_OK);
    CHECK_EQ_INT(send_seq(&big, &small, 0, 1000, 0), ERR_OK);
    CHECK(run_until(loop, &small.in.count, 1, WAIT_MS));
    CHECK_EQ_INT(send_seq(&big, &small, 1, 1 << 20, 0), ERR_OK);
    run_for(loop, 300);
    CHECK_EQ_INT(small.in.count, 1);
    small.in.next_seq = 2;
    int got = 0;
    for (int i = 0; i < 50 && !got; i++) { /* resend until the reconnect happened */
        send_seq(&big, &small, 2, 1000, uv_now(loop) + 200);
        run_until(loop, &small.in.count, 2, 200);
        got = small.in.count >= 2;
        small.in.next_seq = 2;
    }
    CHECK(got);
    CHECK_EQ_INT(small.in.bad, 0);
    rpc_stats_t s;
    rpc_stats(small.rpc, &s);
    fprintf(stderr, "receiver: %llu accepted, %llu dropped, %llu broken connections\n",
            (unsigned long long)s.connections_accepted, (unsigned long long)s.connections_dropped,
            (unsigned long long)s.connections_broken);
    CHECK(s.connections_accepted >= 2);
    CHECK(s.connections_broken + s.connections_dropped >= 1);
    close_end(loop, &big);
    close_end(loop, &small);
}

static void test_forget_and_close(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(send_seq(&a, &b, 0, 10, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 1, WAIT_MS));
    rpc_forget_peer(a.rpc, b.addr);
    rpc_forget_peer(a.rpc, "tcp://127.0.0.1:1");      /* unknown: ignored */
    CHECK_EQ_INT(send_seq(&a, &b, 1, 10, 0), ERR_OK); /* a new socket */
    CHECK(run_until(loop, &b.in.count, 2, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    /* bad addresses are refused, not crashed on */
    CHECK(rpc_send(a.rpc, "nonsense", (const uint8_t *)"x", 1, 0) != ERR_OK);
    CHECK(rpc_send(a.rpc, "", (const uint8_t *)"x", 1, 0) != ERR_OK);
    /* close with messages queued for a peer that is not there */
    char nowhere[64];
    snprintf(nowhere, sizeof nowhere, "tcp://127.0.0.1:%d", test_free_port());
    CHECK_EQ_INT(rpc_send(a.rpc, nowhere, (const uint8_t *)"abc", 3, 0), ERR_OK);
    close_end(loop, &a);
    close_end(loop, &b);
    /* an address in use cannot be bound twice */
    end_t c, d;
    CHECK_EQ_INT(open_end(loop, &c, 1 << 20, 1 << 20), ERR_OK);
    rpc_options_t o = {c.addr, 1 << 20, 1 << 20, 16};
    errmsg_t em = {{0}};
    memset(&d, 0, sizeof d);
    CHECK_EQ_INT(rpc_new(loop, &o, on_receive, &d.in, &d.rpc, &em), ERR_IO);
    CHECK(strstr(em.text, c.addr) != NULL);
    close_end(loop, &c);
}

/* rpc_redial: only a connection older than min_age is dropped; the peer's
 * new connection is a new one at the receiver, delivery stays ordered, and
 * messages queued while nobody listened survive the redial. */
static void test_redial(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(rpc_redial(a.rpc, b.addr, 0), 0); /* no socket to b yet */
    CHECK_EQ_INT(send_seq(&a, &b, 0, 100, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 1, WAIT_MS));
    CHECK_EQ_INT(rpc_redial(a.rpc, b.addr, 60000), 0); /* dialled just now */
    run_for(loop, 20);
    CHECK_EQ_INT(rpc_redial(a.rpc, b.addr, 10), 1);
    for (int i = 1; i < 50; i++)
        CHECK_EQ_INT(send_seq(&a, &b, i, 100, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 50, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.redials, 1);
    rpc_stats(b.rpc, &s);
    CHECK_EQ_INT(s.connections_accepted, 2);

    /* queued for a receiver not there yet, redialled twice, then it starts */
    end_t late;
    memset(&late, 0, sizeof late);
    snprintf(late.addr, sizeof late.addr, "tcp://127.0.0.1:%d", test_free_port());
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(send_seq(&a, &late, i, 1000, 0), ERR_OK);
    for (int k = 0; k < 2; k++) {
        run_for(loop, 20);
        CHECK_EQ_INT(rpc_redial(a.rpc, late.addr, 10), 1);
    }
    rpc_options_t o = {late.addr, 1 << 20, 1 << 20, 16};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(rpc_new(loop, &o, on_receive, &late.in, &late.rpc, &em), ERR_OK);
    CHECK(run_until(loop, &late.in.count, 5, WAIT_MS));
    CHECK_EQ_INT(late.in.bad, 0);
    close_end(loop, &a);
    close_end(loop, &b);
    close_end(loop, &late);
}

/* rpc_redial_unanswered: nothing without a request waiting, nor while the
 * request is younger than the silence, nor when the peer answered within
 * it; then once per min_age; an answer ends it. */
static void test_redial_unanswered(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 0, 0), 0); /* no socket to b */
    CHECK_EQ_INT(send_seq(&a, &b, 0, 100, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 1, WAIT_MS));
    run_for(loop, 30);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 10, 10), 0); /* nothing waiting */
    rpc_awaiting(a.rpc, b.addr);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 60000, 10), 0); /* waited too little */
    run_for(loop, 30);
    rpc_answered(a.rpc, b.addr);
    rpc_awaiting(a.rpc, b.addr);
    run_for(loop, 30);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 25, 10), 1);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 25, 60000), 0); /* just dialled */
    /* answered 30 ms ago, a request waiting since: not silent for 60 ms */
    rpc_answered(a.rpc, b.addr);
    rpc_awaiting(a.rpc, b.addr);
    run_for(loop, 30);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 60, 10), 0);
    run_for(loop, 40);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 60, 10), 1);
    rpc_answered(a.rpc, b.addr);
    run_for(loop, 30);
    CHECK_EQ_INT(rpc_redial_unanswered(a.rpc, b.addr, 10, 10), 0); /* answered: none waiting */
    for (int i = 1; i < 20; i++)
        CHECK_EQ_INT(send_seq(&a, &b, i, 100, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 20, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.redials, 2);
    CHECK_EQ_INT(s.redials_unanswered, 2);
    close_end(loop, &a);
    close_end(loop, &b);
}

/* A receiver that keeps the messages it is given: each stays whole after
 * its callback and after the next ones arrive, until rpc_message_free. */
static void test_keep_message(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 8 << 20, 64 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 8 << 20, 64 << 20), ERR_OK);
    b.in.keep_from = b.rpc;
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(send_seq(&a, &b, i, i == 2 ? 2 << 20 : 100 + (size_t)i, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 4, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    CHECK_EQ_INT(b.in.nkept, 4);
    for (int i = 0; i < b.in.nkept; i++) {
        const uint8_t *m = b.in.kept[i];
        int seq = -1;
        memcpy(&seq, m, 4);
        int ok = seq == i && b.in.kept_len[i] == (i == 2 ? 2u << 20 : 100u + (size_t)i);
        for (size_t k = 4; ok && k < b.in.kept_len[i]; k++)
            ok = m[k] == (uint8_t)(seq * 31 + k * 7);
        CHECK(ok);
        rpc_message_free(b.in.kept[i]);
    }
    CHECK(rpc_keep_message(b.rpc) == NULL); /* outside a callback: nothing */
    close_end(loop, &a);
    close_end(loop, &b);
}

typedef struct now_sender {
    end_t *from;
    const end_t *to;
    int first, n, sent;
} now_sender_t;

static void send_now_thread(void *arg)
{
    now_sender_t *t = arg;
    uint8_t p[300];
    for (int i = 0; i < t->n; i++) {
        fill(p, sizeof p, t->first + i);
        t->sent += rpc_send_now(t->from->rpc, t->to->addr, p, sizeof p) == 1;
    }
}

/* rpc_send_now from another thread: nothing without a socket to the peer;
 * once there is one, every message goes at once, in order after those sent
 * before; never past messages queued for the peer; not over a frame; not
 * once closing. */
static void test_send_now(uv_loop_t *loop)
{
    end_t a, b, late;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 1 << 20, 1 << 20), ERR_OK);
    uint8_t x[300];
    fill(x, sizeof x, 0);
    CHECK_EQ_INT(rpc_send_now(a.rpc, b.addr, x, sizeof x), 0); /* no socket to b yet */
    CHECK_EQ_INT(send_seq(&a, &b, 0, 300, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 1, WAIT_MS));
    now_sender_t t = {&a, &b, 1, 100, 0};
    uv_thread_t th;
    CHECK_EQ_INT(uv_thread_create(&th, send_now_thread, &t), 0);
    uv_thread_join(&th);
    CHECK_EQ_INT(t.sent, 100);
    CHECK_EQ_INT(send_seq(&a, &b, 101, 300, 0), ERR_OK); /* the loop's after them */
    CHECK(run_until(loop, &b.in.count, 102, WAIT_MS));
    CHECK_EQ_INT(b.in.bad, 0);
    rpc_stats_t s;
    rpc_stats(a.rpc, &s);
    CHECK_EQ_INT(s.sent, 102);
    /* over a frame (1 MiB here): the loop's to cut or refuse */
    uint8_t *big = calloc(1, (1 << 20) + 1);
    CHECK_EQ_INT(rpc_send_now(a.rpc, b.addr, big, (1 << 20) + 1), 0);
    free(big);
    /* a message queued for a peer nobody listens at yet: never passed */
    memset(&late, 0, sizeof late);
    snprintf(late.addr, sizeof late.addr, "tcp://127.0.0.1:%d", test_free_port());
    CHECK_EQ_INT(send_seq(&a, &late, 0, 300, 0), ERR_OK);
    fill(x, sizeof x, 1);
    CHECK_EQ_INT(rpc_send_now(a.rpc, late.addr, x, sizeof x), 0);
    rpc_close(a.rpc, closed_cb, &a);
    CHECK_EQ_INT(rpc_send_now(a.rpc, b.addr, x, sizeof x), 0); /* closing */
    CHECK(run_until(loop, &a.closed, 1, WAIT_MS));
    rpc_free(a.rpc);
    close_end(loop, &b);
}

/* How many of this process's TCP connections go to 127.0.0.1:port, and how
 * many of those have TCP_NODELAY set (nanomsg's sockets are this process's
 * file descriptors: the test reads the kernel's own word on them). */
static void connections_to(int port, int *n, int *nodelay)
{
    *n = *nodelay = 0;
    for (int fd = 0; fd < 4096; fd++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int type = 0;
        socklen_t tlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
            getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || peer.sin_family != AF_INET ||
            ntohs(peer.sin_port) != port)
            continue;
        int on = 0;
        socklen_t olen = sizeof on;
        (*n)++;
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &olen) == 0 && on) (*nodelay)++;
    }
}

/* Every connection a node sends on has Nagle's algorithm off: its other
 * end never sends data back (a reply comes over that node's own
 * connection), so a small message sent while an earlier one was not yet
 * acknowledged waited for the receiver's delayed acknowledgement (40 ms
 * on Linux; seen as renders of a 3-node cluster taking 42-46 ms where
 * the rest took 3). */
static void test_sends_not_delayed(uv_loop_t *loop)
{
    end_t a, b;
    CHECK_EQ_INT(open_end(loop, &a, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(open_end(loop, &b, 1 << 20, 1 << 20), ERR_OK);
    CHECK_EQ_INT(send_seq(&a, &b, 0, 100, 0), ERR_OK);
    CHECK(run_until(loop, &b.in.count, 1, WAIT_MS));
    int port = atoi(strrchr(b.addr, ':') + 1), n, nodelay;
    connections_to(port, &n, &nodelay);
    CHECK(n >= 1);
    CHECK_EQ_INT(nodelay, n);
    close_end(loop, &a);
    close_end(loop, &b);
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    test_exchange(&loop);
    test_sends_not_delayed(&loop);
    test_keep_message(&loop);
    test_queue_and_deadlines(&loop);
    test_oversized_input(&loop);
    test_frames(&loop);
    test_forget_and_close(&loop);
    test_redial(&loop);
    test_redial_unanswered(&loop);
    test_send_now(&loop);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    return check_exit();
}
