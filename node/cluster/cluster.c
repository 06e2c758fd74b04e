/* cluster.c — the node's cluster: identity, membership and its gossip timer,
 * the transport, and the dispatch of incoming messages by type (cluster_int.h).
 *
 * Every message's envelope is checked here (size, protocol version, cluster
 * name, sender, deadline against the wall clock) before anything in it is
 * used; refused messages are counted and dropped. Gossip bodies go to the
 * ring as bytes (ring_gossip_receive checks them); the other types are
 * decoded and checked (cluster_wire_decode_body) and go to the handlers
 * that replicate_cluster.c and scatter.c register.
 */
#define _GNU_SOURCE /* getrandom */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

#include "common/log.h"
#include "node/cluster/cluster_int.h"
#include "node/cluster/repair_int.h"

#define GOSSIP FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_GOSSIP
#define MSG(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x

/* Messages that expect an answer from the receiver, and the answers. Gossip
 * is neither: a SYN is answered only when the receiver has news. */
static int is_request(int type)
{
    return type == MSG(WRITE) || type == MSG(QUERY) || type == MSG(REPAIR);
}

static int is_answer(int type)
{
    return type == MSG(WRITE_ACK) || type == MSG(PARTIAL) || type == MSG(REPAIR_ANSWER);
}

/* Token generation and gossip partners draw from the OS once. */
static uint64_t os_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
        s = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    return s;
}

/* ---------- sending ---------- */

/* uv_now() time matching a wall-clock deadline (0: none). */
static uint64_t loop_deadline(cluster_t *c, uint64_t deadline_unix_ms)
{
    if (deadline_unix_ms == 0) return 0;
    uint64_t now = cluster_unix_ms(c);
    uint64_t left = deadline_unix_ms > now ? deadline_unix_ms - now : 1;
    return uv_now(c->loop) + left;
}

/* The frame size to cut messages to toward a member that advertises
 * peer_frame_bytes (its max-frame-bytes): the smaller of it and this node's;
 * 0 (a version before chunks): none, it is sent whole messages. */
static size_t frame_toward(const cluster_t *c, uint64_t peer_frame_bytes)
{
    if (peer_frame_bytes == 0) return 0;
    if (peer_frame_bytes < CLUSTER_MIN_FRAME_BYTES) peer_frame_bytes = CLUSTER_MIN_FRAME_BYTES;
    return peer_frame_bytes < c->frame_bytes ? (size_t)peer_frame_bytes : c->frame_bytes;
}

/* The frame size toward the member at addr; one this node does not know
 * (a seed not heard yet) gets this node's own. */
static size_t frame_toward_addr(const cluster_t *c, const char *addr)
{
    ring_member_t m;
    for (size_t i = 0; ring_members_get(c->members, i, &m) == ERR_OK; i++)
        if (strcmp(m.cluster_addr, addr) == 0) return frame_toward(c, m.max_frame_bytes);
    return c->frame_bytes;
}

/* A message larger than frame (0: none) and within max_message_bytes goes as
 * the CHUNK envelopes of its pieces, in a row (chunk_int.h). */
static int send_raw(cluster_t *c, const char *addr, const buf_t *b, uint64_t deadline_unix_ms,
                    size_t frame)
{
    if (c->rpc == NULL) return ERR_UNAVAILABLE;
    uint64_t deadline = loop_deadline(c, deadline_unix_ms);
    if (frame == 0 || b->len <= frame || b->len > c->cfg.max_message_bytes)
        return rpc_send(c->rpc, addr, b->data, b->len, deadline);
    cluster_wire_sender_t from = {c->cfg.cluster_name, c->id.node_id, c->key};
    cluster_chunk_frames_t f;
    int rc =
        cluster_chunk_split(&from, deadline_unix_ms, c->next_chunked++, b->data, b->len, frame, &f);
    if (rc != ERR_OK) return rc;
    rpc_frame_t *v = malloc(f.n * sizeof *v);
    for (size_t i = 0; v != NULL && i < f.n; i++)
        v[i] = (rpc_frame_t){f.bytes.data + (i ? f.ends[i - 1] : 0),
                             f.ends[i] - (i ? f.ends[i - 1] : 0)};
    rc = v != NULL ? rpc_sendv(c->rpc, addr, v, f.n, deadline) : ERR_NOMEM;
    free(v);
    cluster_chunk_frames_free(&f);
    return rc;
}

int cluster_send(cluster_t *c, const char *node_id, Flamedb__Cluster__MsgType type,
                 uint64_t deadline_unix_ms, const ProtobufCMessage *body)
{
    ring_member_t m;
    if (node_id == NULL || ring_members_find(c->members, node_id, &m) != ERR_OK)
        return ERR_NOT_FOUND;
    if (c->rpc == NULL || c->closing || m.cluster_addr[0] == '\0') return ERR_UNAVAILABLE;
    buf_t b;
    buf_init(&b, c->cfg.max_message_bytes);
    cluster_wire_sender_t from = {c->cfg.cluster_name, c->id.node_id, c->key};
    int rc = cluster_wire_encode(type, &from, deadline_unix_ms, body, &b);
    if (rc == ERR_OK)
        rc = send_raw(c, m.cluster_addr, &b, deadline_unix_ms, frame_toward(c, m.max_frame_bytes));
    if (rc == ERR_OK && is_request((int)type)) rpc_awaiting(c->rpc, m.cluster_addr);
    buf_free(&b);
    return rc;
}

int cluster_send_frame(cluster_t *c, const char *node_id, uint64_t deadline_unix_ms,
                       const buf_t *frame)
{
    ring_member_t m;
    if (node_id == NULL || ring_members_find(c->members, node_id, &m) != ERR_OK)
        return ERR_NOT_FOUND;
    if (c->rpc == NULL || c->closing || m.cluster_addr[0] == '\0') return ERR_UNAVAILABLE;
    if (frame->len > c->cfg.max_message_bytes) return ERR_TOO_LARGE;
    return send_raw(c, m.cluster_addr, frame, deadline_unix_ms, frame_toward(c, m.max_frame_bytes));
}

int cluster_route(cluster_t *c, const char *node_id, cluster_route_t *out)
{
    ring_member_t m;
    if (node_id == NULL || ring_members_find(c->members, node_id, &m) != ERR_OK)
        return ERR_NOT_FOUND;
    size_t n = m.cluster_addr != NULL ? strlen(m.cluster_addr) : 0;
    if (c->rpc == NULL || c->closing || n == 0 || n >= sizeof out->addr) return ERR_UNAVAILABLE;
    memcpy(out->addr, m.cluster_addr, n + 1);
    out->frame_bytes = frame_toward(c, m.max_frame_bytes);
    return ERR_OK;
}

int cluster_send_frame_now(cluster_t *c, const cluster_route_t *to, const buf_t *frame)
{
    /* c->rpc is set before any job runs and freed after the last (node.c) */
    if (c->rpc == NULL || frame->len > c->cfg.max_message_bytes) return 0;
    if (to->frame_bytes != 0 && frame->len > to->frame_bytes) return 0; /* chunks: the loop */
    return rpc_send_now(c->rpc, to->addr, frame->data, frame->len);
}

/* ---------- gossip ---------- */

/* A gossip message is worth sending for about one round. */
static uint64_t gossip_deadline(const cluster_t *c)
{
    return cluster_unix_ms(c) + c->cfg.gossip_interval_ms + 1000;
}

/* Wraps a serialized Gossip body in an envelope and sends it to addr. */
static int send_gossip(cluster_t *c, const char *addr, const buf_t *gossip)
{
    buf_t b;
    buf_init(&b, c->cfg.max_message_bytes);
    uint64_t deadline = gossip_deadline(c);
    ProtobufCBinaryData body = {gossip->len, gossip->data};
    cluster_wire_sender_t from = {c->cfg.cluster_name, c->id.node_id, c->key};
    int rc = cluster_wire_encode_bytes(GOSSIP, &from, deadline, &body, &b);
    if (rc == ERR_OK) rc = send_raw(c, addr, &b, deadline, frame_toward_addr(c, addr));
    buf_free(&b);
    return rc;
}

/* A SYN is a request: its ACK comes back on the member's own connection to
 * this node. So a link that carries no other request (an idle pair, whose
 * heartbeats reach each other through third nodes) still shows as
 * unanswered, and is redialled (rpc_redial_unanswered) while it is cut
 * rather than left in TCP's retransmission backoff until the first request
 * after it heals. */
static void gossip_to(cluster_t *c, const char *addr)
{
    buf_t b;
    buf_init(&b, c->cfg.max_message_bytes);
    int rc = ring_gossip_syn(c->members, &b);
    if (rc == ERR_OK) rc = send_gossip(c, addr, &b);
    if (rc == ERR_OK) rpc_awaiting(c->rpc, addr);
    if (rc != ERR_OK) log_debug("cluster", "gossip to %s: %s", addr, err_message(rc));
    buf_free(&b);
}

static const char *next_seed(cluster_t *c)
{
    if (c->nseeds == 0) return NULL;
    return c->seeds[c->next_seed++ % c->nseeds];
}

/* Dials a member's connection afresh, at most once per redial interval,
 * when it is down, or when it is not but requests to it went unanswered for
 * the failure timeout. The old connection, established before the member
 * (or only the link to it) went silent, may be waiting out TCP's
 * retransmission backoff, which grows with the outage (rpc_redial). A
 * member held up only from here (a partial partition: the others relay its
 * heartbeats, so nobody marks it down) shows by its silence: to requests,
 * and to the SYNs of gossip, which every pair exchanges. A member that
 * left is not dialled; its socket is forgotten with its address. */
static void redial(cluster_t *c)
{
    uint64_t every = c->cfg.redial_interval_ms;
    if (c->rpc == NULL || every == 0) return;
    for (size_t i = 0; i < ring_members_count(c->members); i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK || m.life == RING_LEFT ||
            m.cluster_addr[0] == '\0')
            continue;
        int down = m.state == RING_DOWN;
        int rc =
            down ? rpc_redial(c->rpc, m.cluster_addr, every)
                 : rpc_redial_unanswered(c->rpc, m.cluster_addr, c->cfg.failure_timeout_ms, every);
        if (rc == 1)
            log_debug("cluster", "%s is %s: dialled %s again", m.node_id,
                      down ? "down" : "not answering", m.cluster_addr);
    }
}

/* Until every member not down was heard from since this start (a restart
 * is not read from until then), a SYN to each such member not heard from
 * yet: its ACK is its word since, one round trip away instead of waiting
 * until random picks reach it. picked got one this round already. */
static void gossip_unheard(cluster_t *c, const char *picked)
{
    if (c->known_by_all && !c->unheard) return;
    for (size_t i = 0; i < ring_members_count(c->members); i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK || m.state == RING_DOWN ||
            m.life == RING_LEFT || m.cluster_addr[0] == '\0' ||
            strcmp(m.node_id, cluster_self_id(c)) == 0 || cluster_move_was_heard(c, m.node_id) ||
            (picked != NULL && strcmp(m.cluster_addr, picked) == 0))
            continue;
        gossip_to(c, m.cluster_addr);
    }
}

/* The cluster port's frame limit: max-message-bytes while a member that
 * advertises no frame limit (a version before chunks, which sends whole
 * messages) is listed, or for the first failure-timeout after the start
 * (before gossip has brought the members); max-frame-bytes otherwise.
 * nanomsg's limit is the socket's, not a connection's. Logged when it
 * changes. */
static void receive_limit_update(cluster_t *c)
{
    if (c->rpc == NULL) return;
    ring_member_t m;
    const char *whole = NULL;
    for (size_t i = 0; whole == NULL && ring_members_get(c->members, i, &m) == ERR_OK; i++)
        if (m.life != RING_LEFT && m.max_frame_bytes == 0 && strcmp(m.node_id, c->id.node_id))
            whole = m.node_id;
    int settled = uv_now(c->loop) - c->started_ms >= c->cfg.failure_timeout_ms;
    int why = whole != NULL ? 1 : settled ? 2 : 0; /* cluster_int.h frame_limit_why */
    size_t want = why == 2 ? c->frame_bytes : c->cfg.max_message_bytes;
    if (want != rpc_receive_max(c->rpc) && rpc_set_receive_max(c->rpc, want) != ERR_OK) {
        log_warn("cluster", "cannot set the cluster port's frame limit to %zu bytes", want);
        return;
    }
    if (why == c->frame_limit_why || why == 0) return;
    c->frame_limit_why = why;
    if (whole != NULL)
        log_warn("cluster",
                 "member %s takes and sends only whole messages (a version before "
                 "max-frame-bytes): the cluster port takes frames of up to max-message-bytes "
                 "(%zu) while such a member is listed",
                 whole, want);
    else
        log_info("cluster",
                 "every member takes messages in pieces: the cluster port takes frames of up "
                 "to max-frame-bytes (%zu)",
                 want);
}

/* One round: heartbeat and failure detection, then a SYN to a member drawn
 * at random (down ones included, to notice recovery) or to a seed. */
static void on_gossip_timer(uv_timer_t *t)
{
    cluster_t *c = t->data;
    ring_members_tick(c->members);
    cluster_chunks_expire(&c->chunks, uv_now(c->loop), c->cfg.failure_timeout_ms);
    receive_limit_update(c);
    redial(c);
    c->counters.gossip_rounds++;
    int i = ring_gossip_pick(c->members, &c->rng);
    ring_member_t m;
    const char *picked = NULL;
    if (i >= 0 && ring_members_get(c->members, (size_t)i, &m) == ERR_OK && m.cluster_addr[0])
        picked = m.cluster_addr;
    if (picked != NULL) gossip_to(c, picked);
    const char *seed = NULL;
    if (picked == NULL || c->counters.gossip_rounds % CLUSTER_SEED_EVERY == 0) seed = next_seed(c);
    if (seed != NULL && (picked == NULL || strcmp(seed, picked) != 0)) gossip_to(c, seed);
    gossip_unheard(c, picked);
    cluster_view_refresh(c);
    repair_tick(c->repair);
    cluster_move_heard_check(c); /* members seen down since are not waited for */
    cluster_move_tick(c);
    cluster_regain_tick(c);
    cluster_regain_ring_touch(c);
}

/* An answer from a member: its connection to this node carries traffic,
 * so requests to it are not stuck (rpc_redial_unanswered). */
static void answered(cluster_t *c, const char *sender_id)
{
    ring_member_t m;
    if (c->rpc != NULL && ring_members_find(c->members, sender_id, &m) == ERR_OK)
        rpc_answered(c->rpc, m.cluster_addr);
}

/* A gossip message refused for its sender's placement (an operator must
 * act): logged as an error the first ten times, then at powers of two (a
 * stranger gossips every interval). */
static void log_placement_refused(cluster_t *c, const char *sender, const errmsg_t *em)
{
    ring_members_stats_t ms;
    ring_members_stats(c->members, &ms);
    uint64_t n = ms.refused_placement;
    if (n > 10 && (n & (n - 1)) != 0) return;
    log_error("cluster", "gossip from %s refused (%llu so far): %s", sender, (unsigned long long)n,
              em->text);
}

/* The gossip handler: merge, then answer the sender. The ring reads the
 * body itself. */
static void on_gossip(cluster_t *c, const Flamedb__Cluster__Envelope *env)
{
    buf_t reply;
    buf_init(&reply, c->cfg.max_message_bytes);
    errmsg_t em = {{0}};
    char addr[RING_ADDR_MAX + 1];
    ring_gossip_seen_t seen;
    int rc = ring_gossip_receive_seen(c->members, env->sender_id, env->body.data, env->body.len,
                                      &reply, addr, &seen, &em);
    if (rc == ERR_CONFLICT) /* placed otherwise */
        log_placement_refused(c, env->sender_id, &em);
    else if (rc != ERR_OK)
        log_debug("cluster", "gossip from %s refused: %s", env->sender_id, em.text);
    /* word since this start, naming no member this table still lacks */
    if (rc == ERR_OK && seen.self_incarnation >= c->start_incarnation && seen.wanted == 0) {
        cluster_move_heard(c, env->sender_id);
        cluster_move_heard_check(c);
    }
    if (rc == ERR_OK && seen.ack) answered(c, env->sender_id); /* gossip_to's SYN */
    if (rc == ERR_OK) receive_limit_update(c); /* before an older member's first message */
    if (rc == ERR_OK && reply.len > 0 && addr[0] != 0) send_gossip(c, addr, &reply);
    buf_free(&reply);
}

/* ---------- receiving ---------- */

/* The handler of a decoded envelope, or NULL (counted) when there is none
 * or the sender is not a member. */
static const handler_t *handler_of(cluster_t *c, const Flamedb__Cluster__Envelope *env)
{
    int type = (int)env->type;
    if (type <= 0 || type >= CLUSTER_NTYPES) {
        c->counters.refused++;
        return NULL;
    }
    ring_member_t m;
    if (ring_members_find(c->members, env->sender_id, &m) != ERR_OK) {
        c->counters.unknown_sender++;
        return NULL;
    }
    const handler_t *h = &c->handlers[type];
    if (h->fn == NULL) {
        c->counters.unhandled++;
        return NULL;
    }
    return h;
}

/* Counts a refused message; says why at most once a minute (a node of
 * another cluster or a stray client would otherwise flood the log). */
static void refused(cluster_t *c, size_t len, int rc, const errmsg_t *em)
{
    c->counters.refused++;
    if (rc == ERR_UNAUTHORIZED) c->counters.unauthorized++;
    uint64_t now = uv_now(c->loop);
    if (c->refusal_logged_ms != 0 && now - c->refusal_logged_ms < CLUSTER_REFUSAL_LOG_MS) {
        log_debug("cluster", "refused a message of %zu bytes: %s", len, em->text);
        return;
    }
    c->refusal_logged_ms = now;
    log_warn("cluster", "refused a message of %zu bytes: %s (%llu refused so far)", len, em->text,
             (unsigned long long)c->counters.refused);
}

static void on_envelope(cluster_t *c, const uint8_t *raw, size_t len, int whole);

/* A piece of a message larger than a frame, its MAC checked: kept until the
 * message is whole, then handled as if it had come in one frame. Only from
 * members (chunk_int.h bounds what each can make this node hold). */
static int on_chunk(cluster_t *c, cluster_msg_t *msg, uint64_t now, errmsg_t *em)
{
    ring_member_t m;
    if (ring_members_find(c->members, msg->env->sender_id, &m) != ERR_OK) {
        c->counters.unknown_sender++;
        return ERR_OK;
    }
    int rc = cluster_wire_decode_body(msg, &c->limits, now, em);
    buf_t whole = {0};
    if (rc == ERR_OK)
        rc = cluster_chunks_add(&c->chunks, msg->env->sender_id, (const void *)msg->body,
                                uv_now(c->loop), &whole, em);
    if (rc == 1) on_envelope(c, whole.data, whole.len, 1);
    buf_free(&whole);
    if (rc == ERR_LIMIT) { /* from a member, once per message of at least a frame: not a flood */
        log_warn("cluster", "%s (%llu dropped so far)", em->text,
                 (unsigned long long)c->chunks.stats.over_budget);
        return ERR_OK;
    }
    return rc < 0 ? rc : ERR_OK;
}

/* One envelope: from a frame, or put back together from pieces (whole: a
 * piece inside is refused). A frame's body is read where it lies: the
 * message keeps the frame (rpc_keep_message) instead of a copy. */
static void on_envelope(cluster_t *c, const uint8_t *raw, size_t len, int whole)
{
    cluster_msg_t msg;
    errmsg_t em = {{0}};
    uint64_t now = cluster_unix_ms(c);
    cluster_wire_receiver_t me = {c->cfg.cluster_name, c->key};
    int rc = whole
                 ? cluster_wire_decode_envelope(raw, len, &c->limits, &me, now, &msg, &em)
                 : cluster_wire_decode_envelope_in_place(raw, len, &c->limits, &me, now, &msg, &em);
    if (rc == ERR_OK && !whole) cluster_msg_hold(&msg, rpc_keep_message(c->rpc), rpc_message_free);
    const handler_t *h = NULL;
    if (rc == ERR_OK && msg.env->type == MSG(CHUNK)) {
        rc = whole ? errmsg_set(&em, ERR_INVALID_ARGUMENT, "chunk: inside a chunked message")
                   : on_chunk(c, &msg, now, &em);
    } else if (rc == ERR_OK && msg.env->type == GOSSIP) {
        c->counters.dispatched++;
        on_gossip(c, msg.env);
    } else if (rc == ERR_OK && (h = handler_of(c, msg.env)) != NULL) {
        if (is_answer((int)msg.env->type)) answered(c, msg.env->sender_id);
        if (!h->body_on_pool) rc = cluster_wire_decode_body(&msg, &c->limits, now, &em);
        if (rc == ERR_OK) {
            c->counters.dispatched++;
            h->fn(h->ctx, &msg);
        }
    }
    if (rc != ERR_OK) refused(c, len, rc, &em);
    cluster_msg_free(&msg);
}

static void on_message(void *ctx, const uint8_t *raw, size_t len)
{
    cluster_t *c = ctx;
    if (c->closing) return;
    on_envelope(c, raw, len, 0);
    cluster_view_refresh(c);
}

static int register_handler(cluster_t *c, Flamedb__Cluster__MsgType type, handler_t h)
{
    if ((int)type <= 0 || (int)type >= CLUSTER_NTYPES || type == GOSSIP)
        return ERR_INVALID_ARGUMENT;
    c->handlers[type] = h;
    return ERR_OK;
}

int cluster_on(cluster_t *c, Flamedb__Cluster__MsgType type, cluster_msg_fn fn, void *ctx)
{
    return register_handler(c, type, (handler_t){fn, ctx, 0});
}

int cluster_on_envelope(cluster_t *c, Flamedb__Cluster__MsgType type, cluster_msg_fn fn, void *ctx)
{
    return register_handler(c, type, (handler_t){fn, ctx, 1});
}

const cluster_wire_limits_t *cluster_wire_limits(const cluster_t *c)
{
    return &c->limits;
}

/* ---------- lifetime ---------- */

/* Splits --join into seeds, leaving out this node's own address. */
static int parse_seeds(cluster_t *c, errmsg_t *em)
{
    char tmp[CLUSTER_SETTING_MAX];
    snprintf(tmp, sizeof tmp, "%s", c->cfg.join);
    char *save = NULL;
    for (char *s = strtok_r(tmp, ", \t", &save); s != NULL; s = strtok_r(NULL, ", \t", &save)) {
        if (strcmp(s, c->cluster_addr) == 0 || strcmp(s, c->cfg.cluster_listen) == 0) continue;
        if (strncmp(s, "tcp://", 6) != 0 || strlen(s) > RING_ADDR_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "--join: '%.300s' is not tcp://HOST:PORT",
                              s);
        if (c->nseeds == CLUSTER_MAX_SEEDS)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "--join: more than %d seeds",
                              CLUSTER_MAX_SEEDS);
        if ((c->seeds[c->nseeds] = strdup(s)) == NULL)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        c->nseeds++;
    }
    return ERR_OK;
}

static int check_addr(const char *flag, const char *a, errmsg_t *em)
{
    if (strncmp(a, "tcp://", 6) != 0 || strrchr(a, ':') == a + 3 || strlen(a) > RING_ADDR_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "--%s: '%.300s' is not tcp://HOST:PORT", flag,
                          a);
    return ERR_OK;
}

static int setup_addresses(cluster_t *c, const char *http_addr, errmsg_t *em)
{
    snprintf(c->http_addr, sizeof c->http_addr, "%s", http_addr ? http_addr : "");
    c->transport = c->cfg.cluster_listen[0] != '\0';
    if (!c->transport) return ERR_OK;
    int rc = check_addr("cluster-listen", c->cfg.cluster_listen, em);
    const char *adv = c->cfg.advertise[0] ? c->cfg.advertise : c->cfg.cluster_listen;
    if (rc == ERR_OK) rc = check_addr("advertise", adv, em);
    if (rc == ERR_OK && (strstr(adv, "://*:") || strstr(adv, "://0.0.0.0:")))
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "--advertise: '%s' cannot be dialled; give the address peers reach", adv);
    snprintf(c->cluster_addr, sizeof c->cluster_addr, "%.255s", adv);
    return rc ? rc : parse_seeds(c, em);
}

static int create_members(cluster_t *c, int had_identity, errmsg_t *em)
{
    ring_members_options_t o;
    ring_members_options_default(&o);
    o.down_after_ms = c->cfg.failure_timeout_ms;
    o.forget_left_after_ms = cluster_forget_left_ms(c);
    o.max_message_bytes = c->cfg.max_message_bytes;
    uint64_t incarnation;
    int rc = cluster_incarnation_next(c->data_dir, cluster_unix_ms(c) / 1000, &incarnation, em);
    if (rc != ERR_OK) return rc;
    c->start_incarnation = incarnation;
    ring_state_t initial = RING_ACTIVE;
    rc = cluster_move_initial_state(c, had_identity, &initial, em);
    if (rc != ERR_OK) return rc;
    rc = ring_members_create(&o, &c->id, c->http_addr, c->cluster_addr, initial, incarnation,
                             c->clock, &c->members, em);
    if (rc == ERR_OK) ring_members_set_frame_bytes(c->members, c->frame_bytes);
    if (rc == ERR_OK) ring_members_set_member_version(c->members, c->cfg.member_version);
    return rc == ERR_OK && had_identity ? cluster_move_resume_leave(c, em) : rc;
}

int cluster_new(uv_loop_t *loop, const cluster_config_t *cfg, const char *data_dir,
                const char *http_addr, const clock_source_t *clock, cluster_t **out, errmsg_t *em)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (c == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    c->loop = loop;
    c->clock = clock != NULL ? *clock : clock_real();
    c->cfg = *cfg;
    snprintf(c->data_dir, sizeof c->data_dir, "%s", data_dir);
    ring_rng_seed(&c->rng, os_seed());
    cluster_wire_limits_default(&c->limits);
    c->limits.max_bytes = c->cfg.max_message_bytes;
    c->frame_bytes = c->cfg.max_frame_bytes == 0 || c->cfg.max_frame_bytes > cfg->max_message_bytes
                         ? cfg->max_message_bytes
                         : c->cfg.max_frame_bytes;
    c->next_chunked = os_seed();
    c->chunks.max_bytes = c->cfg.chunk_receive_max_bytes;
    int rc = setup_addresses(c, http_addr, em);
    if (rc == ERR_OK && c->cfg.secret_file[0] != '\0')
        rc = cluster_secret_load(c->cfg.secret_file, &c->key, em);
    char idpath[CLUSTER_SETTING_MAX + 16];
    snprintf(idpath, sizeof idpath, "%s/%s", c->data_dir, CLUSTER_IDENTITY_FILE);
    int had_identity = access(idpath, F_OK) == 0; /* before the load creates it */
    if (rc == ERR_OK)
        rc = cluster_identity_load(c->data_dir, c->cfg.node_id, c->cfg.tokens, &c->rng, &c->id, em);
    if (rc == ERR_OK) rc = create_members(c, had_identity, em);
    if (rc == ERR_OK && c->transport) rc = cluster_full_load(c, em);
    if (rc == ERR_OK && c->transport) rc = cluster_regain_load(c, em);
    if (rc == ERR_OK && c->transport) rc = cluster_regain_ring_load(c, em);
    if (rc == ERR_OK && c->transport) rc = cluster_void_load(c, em);
    if (rc == ERR_OK && (c->unheard = cluster_move_must_hear(c, had_identity)) != 0 &&
        cluster_hints_publish(c) < 0)
        rc = errmsg_set(em, ERR_NOMEM, "cannot list this node in its own hints_for");
    if (rc == ERR_OK && cluster_view_refresh(c) != 1)
        rc = errmsg_set(em, ERR_INTERNAL, "cannot build the cluster view");
    if (rc != ERR_OK) {
        cluster_free_base(c);
        return rc;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_parts = 1;
    *out = c;
    return ERR_OK;
}

/* 1 when a tcp://HOST:PORT address is a loopback one (127.0.0.0/8, ::1,
 * localhost, or nanomsg's interface name lo): only this host's processes
 * can reach it. */
static int cluster_addr_loopback(const char *addr)
{
    const char *h = strncmp(addr, "tcp://", 6) == 0 ? addr + 6 : addr;
    if (strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0) return 1;
    if (strncmp(h, "lo:", 3) == 0) return 1;
    return strncmp(h, "[::1]:", 6) == 0;
}

/* An unsigned port that other hosts can reach lets any process join, write
 * and query: said at every start, since nothing else would tell. */
static void cluster_warn_unsigned(const cluster_t *c)
{
    if (c->cfg.secret_file[0] != '\0' || cluster_addr_loopback(c->cfg.cluster_listen)) return;
    log_warn("cluster",
             "cluster port %s is not a loopback address and --cluster-secret-file is not set: "
             "any process that can reach it can join, write, acknowledge and query "
             "(docs/operations.md, section 10)",
             c->cfg.cluster_listen);
}

int cluster_start(cluster_t *c, errmsg_t *em)
{
    if (!c->transport || c->started) return ERR_OK;
    rpc_options_t o = {
        .listen_addr = c->cfg.cluster_listen,
        .max_message_bytes = c->cfg.max_message_bytes,
        /* whole messages to members of a version before chunks */
        .max_frame_bytes = c->cfg.max_message_bytes,
        .receive_max_bytes = c->cfg.max_message_bytes, /* receive_limit_update */
        .max_queued_bytes = 2 * c->cfg.max_message_bytes,
        .max_peers = RING_MAX_NODES,
    };
    int rc = rpc_new(c->loop, &o, on_message, c, &c->rpc, em);
    if (rc != ERR_OK) return rc;
    c->open_parts++;
    c->started = 1;
    /* the loop's cached time is that of its last turn, which may be long
     * before a start that opened the store first: the waits counted from
     * the start (a seed's answer, the others' word) must not be cut short */
    uv_update_time(c->loop);
    c->started_ms = uv_now(c->loop);
    uv_timer_start(&c->timer, on_gossip_timer, 0, c->cfg.gossip_interval_ms);
    log_info("cluster", "node %s in cluster '%s': listening on %s, advertising %s, %zu seed(s)",
             c->id.node_id, c->cfg.cluster_name, c->cfg.cluster_listen, c->cluster_addr, c->nseeds);
    cluster_warn_unsigned(c);
    if (c->chunks.max_bytes != 0 && c->chunks.max_bytes < c->cfg.max_message_bytes)
        log_info("cluster",
                 "messages in pieces larger than chunk-receive-max-bytes (%zu) are dropped; "
                 "max-message-bytes is %zu",
                 c->chunks.max_bytes, c->cfg.max_message_bytes);
    return ERR_OK;
}

const char *cluster_self_id(const cluster_t *c)
{
    return c->id.node_id;
}

int cluster_joined(cluster_t *c)
{
    if (c->joined || !c->transport || c->nseeds == 0) return c->joined = 1;
    if (ring_members_count(c->members) > 1 && cluster_move_known(c)) return c->joined = 1;
    uint64_t waited = c->started ? uv_now(c->loop) - c->started_ms : 0;
    if (ring_members_count(c->members) > 1) { /* heard the cluster, not yet heard by all */
        if (waited < c->cfg.failure_timeout_ms + 10 * c->cfg.gossip_interval_ms) return 0;
        log_info("cluster", "not every member has gossiped with this node yet: ready anyway");
        return c->joined = 1;
    }
    if (c->started && waited >= c->cfg.failure_timeout_ms) {
        log_warn("cluster", "no seed of --join answered within %llu ms: going on alone%s",
                 (unsigned long long)c->cfg.failure_timeout_ms,
                 c->joining ? " (ready; still joining until it hears a member)" : "");
        return c->joined = 1;
    }
    return 0;
}

void cluster_part_closed(void *arg)
{
    cluster_t *c = arg;
    if (--c->open_parts == 0 && c->done != NULL) c->done(c->done_arg);
}

static void timer_closed(uv_handle_t *h)
{
    cluster_part_closed(h->data);
}

void cluster_close_base(cluster_t *c)
{
    if (c->rpc != NULL) rpc_close(c->rpc, cluster_part_closed, c);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

void cluster_free_base(cluster_t *c)
{
    rpc_free(c->rpc);
    cluster_chunks_free(&c->chunks);
    cluster_view_drop(c);
    cluster_regain_free(c);
    cluster_full_free(c);
    cluster_regain_ring_free(c);
    ring_members_free(c->members);
    ring_identity_free(&c->id);
    digest_key_free(c->key);
    for (size_t i = 0; i < c->nseeds; i++)
        free(c->seeds[i]);
    for (size_t i = 0; i < c->nleft; i++)
        free(c->left_seen[i]);
    free(c->left_seen);
    for (size_t i = 0; i < c->ndone; i++)
        free(c->passes[i].id);
    free(c->passes);
    for (size_t i = 0; i < c->nheard; i++)
        free(c->heard[i]);
    free(c->heard);
    free(c);
}

/* ---------- the parts' view of the cluster ---------- */

static const cluster_view_t *ops_view_acquire(void *ctx)
{
    return cluster_view_acquire(ctx);
}

static int ops_send(void *ctx, const char *node_id, Flamedb__Cluster__MsgType type,
                    uint64_t deadline_unix_ms, const ProtobufCMessage *body)
{
    return cluster_send(ctx, node_id, type, deadline_unix_ms, body);
}

static int ops_send_frame(void *ctx, const char *node_id, uint64_t deadline_unix_ms,
                          const buf_t *frame)
{
    return cluster_send_frame(ctx, node_id, deadline_unix_ms, frame);
}

static int ops_route(void *ctx, const char *node_id, cluster_route_t *out)
{
    return cluster_route(ctx, node_id, out);
}

static int ops_send_frame_now(void *ctx, const cluster_route_t *to, const buf_t *frame)
{
    return cluster_send_frame_now(ctx, to, frame);
}

static int ops_set_hint_targets(void *ctx, const char *const *ids, size_t n)
{
    return cluster_set_hint_targets(ctx, ids, n);
}

static int ops_member_left(void *ctx, const char *id)
{
    cluster_t *c = ctx;
    ring_member_t m;
    return ring_members_find(c->members, id, &m) == ERR_OK && m.life == RING_LEFT;
}

static uint32_t ops_member_version(void *ctx, const char *id)
{
    cluster_t *c = ctx;
    ring_member_t m;
    return ring_members_find(c->members, id, &m) == ERR_OK ? m.member_version : 0;
}

static int ops_member_beat(void *ctx, const char *id, uint64_t *incarnation, uint64_t *heartbeat)
{
    cluster_t *c = ctx;
    ring_member_t m;
    if (ring_members_find(c->members, id, &m) != ERR_OK) return ERR_NOT_FOUND;
    *incarnation = m.incarnation;
    *heartbeat = m.heartbeat;
    return m.state != RING_DOWN && m.life != RING_LEFT;
}

void cluster_ops_of(cluster_t *c, cluster_ops_t *ops)
{
    *ops = (cluster_ops_t){ops_view_acquire, cluster_view_retain,  cluster_view_release,
                           ops_send,         ops_set_hint_targets, c,
                           ops_member_left,  ops_member_beat};
    ops->send_frame = ops_send_frame;
    ops->route = ops_route;
    ops->send_frame_now = ops_send_frame_now;
    ops->member_version = ops_member_version;
    ops->from = (cluster_wire_sender_t){c->cfg.cluster_name, c->id.node_id, c->key};
}
