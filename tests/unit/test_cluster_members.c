/* test_node_cluster.c — the cluster view and messaging (node/cluster.h) in
 * one process: the identity file (created once, kept on restart, refused
 * when it names another node or is damaged), a cluster of one, and three
 * cluster_t on one loop talking over tcp://127.0.0.1: gossip convergence,
 * typed messages to registered handlers, refusals (unknown node, too large,
 * expired, another cluster), hint targets leaving the live set on every node
 * (and marking the node as no stream source unless it lists itself),
 * failure detection of a closed member, a restarted member not read until
 * the others gave it word since its start, and a joining node whose seed
 * does not answer waiting --failure-timeout from its start however late
 * its loop last ran. Every wait is bounded.
 */
#include <unistd.h>

#include "check.h"
#include "test_net.h"
#include "node/cluster/cluster_int.h"
#include "node/config.h"

#define WAIT_MS 15000

static void tick(uv_timer_t *t)
{
    (void)t;
}

typedef int (*cond_fn)(void *ctx);

/* Runs the loop until cond(ctx) or ms pass; returns cond's last value. */
static int run_until(uv_loop_t *loop, cond_fn cond, void *ctx, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = uv_hrtime() / 1000000 + ms;
    int ok = 0;
    while (!(ok = cond(ctx)) && uv_hrtime() / 1000000 < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static int never(void *ctx)
{
    (void)ctx;
    return 0;
}

static void temp_dir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/flamedb-test-cluster-XXXXXX");
    CHECK(mkdtemp(out) != NULL);
}

static void remove_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/identity", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/incarnation", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/joining", dir); /* a join that never completed */
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

static void config(node_config_t *cfg, const char *dir, const char *id, const char *listen,
                   const char *join)
{
    node_config_default(cfg);
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", dir);
    cluster_config_t *c = &cfg->cluster;
    snprintf(c->node_id, sizeof c->node_id, "%s", id);
    snprintf(c->cluster_listen, sizeof c->cluster_listen, "%s", listen);
    snprintf(c->join, sizeof c->join, "%s", join);
    snprintf(c->cluster_name, sizeof c->cluster_name, "unit");
    c->tokens = 16;
    c->replication_factor = 3;
    c->gossip_interval_ms = 30;
    c->failure_timeout_ms = 400;
    c->max_message_bytes = 64 * 1024;
}

static int closed_count;
static void on_closed(void *arg)
{
    (void)arg;
    closed_count++;
}

static int all_closed(void *want)
{
    return closed_count >= *(int *)want;
}

static void close_free(uv_loop_t *loop, cluster_t *c)
{
    int want = closed_count + 1;
    cluster_close(c, on_closed, NULL);
    CHECK(run_until(loop, all_closed, &want, WAIT_MS));
    cluster_free(c);
}

/* ---------- identity and a cluster of one ---------- */

static void view_tokens(cluster_t *c, uint64_t *fingerprint)
{
    const cluster_view_t *v = cluster_view_acquire(c);
    *fingerprint = ring_fingerprint(v->ring);
    cluster_view_release(v);
}

/* This node's incarnation, read from the status document. */
static uint64_t incarnation_of(cluster_t *c)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    uint64_t inc = 0;
    if (cluster_status_json(c, &b) == ERR_OK) {
        const char *p = strstr((const char *)b.data, "\"incarnation\":");
        inc = p ? strtoull(p + 14, NULL, 10) : 0;
    }
    buf_free(&b);
    return inc;
}

static void test_identity(uv_loop_t *loop)
{
    char dir[64];
    temp_dir(dir, sizeof dir);
    node_config_t cfg;
    errmsg_t em = {{0}};
    cluster_t *c = NULL;
    config(&cfg, dir, "", "", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:1", NULL, &c, &em),
                 ERR_OK);
    char id[80];
    snprintf(id, sizeof id, "%s", cluster_self_id(c));
    CHECK(ring_node_id_check(id, NULL) == ERR_OK);
    uint64_t f1, f2;
    view_tokens(c, &f1);
    uint64_t inc1 = incarnation_of(c);
    close_free(loop, c);
    /* restart: same id (given or not) and tokens, even with another --tokens */
    config(&cfg, dir, id, "", "");
    cfg.cluster.tokens = 64;
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:1", NULL, &c, &em),
                 ERR_OK);
    CHECK_EQ_STR(cluster_self_id(c), id);
    view_tokens(c, &f2);
    CHECK(f1 == f2);
    /* a restart in the same second still takes a higher incarnation */
    CHECK(inc1 > 1000000000 && incarnation_of(c) > inc1);
    close_free(loop, c);
    /* another node id: refused, naming both */
    config(&cfg, dir, "other-node", "", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, id) != NULL && strstr(em.text, "other-node") != NULL);
    /* a damaged identity file is refused, not replaced */
    char path[256];
    snprintf(path, sizeof path, "%s/identity", dir);
    FILE *f = fopen(path, "r+");
    CHECK(f != NULL);
    if (f != NULL) {
        fseek(f, 30, SEEK_SET);
        fputc('#', f);
        fclose(f);
    }
    config(&cfg, dir, "", "", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em), ERR_CORRUPT);
    remove_dir(dir);
    /* invalid node ids and addresses */
    temp_dir(dir, sizeof dir);
    config(&cfg, dir, "bad id!", "", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em),
                 ERR_INVALID_ARGUMENT);
    config(&cfg, dir, "x", "udp://1.2.3.4:5", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em),
                 ERR_INVALID_ARGUMENT);
    config(&cfg, dir, "x", "tcp://127.0.0.1:7000", "tcp://a:1,127.0.0.1:2");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em),
                 ERR_INVALID_ARGUMENT);
    config(&cfg, dir, "x", "tcp://0.0.0.0:7000", "");
    CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "", NULL, &c, &em),
                 ERR_INVALID_ARGUMENT);
    remove_dir(dir);
}

static void test_cluster_of_one(uv_loop_t *loop)
{
    char dir[64];
    temp_dir(dir, sizeof dir);
    node_config_t cfg;
    errmsg_t em = {{0}};
    cluster_t *c = NULL;
    config(&cfg, dir, "solo", "", "");
    CHECK_EQ_INT(
        cluster_new(loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:4040", NULL, &c, &em),
        ERR_OK);
    CHECK_EQ_INT(cluster_start(c, &em), ERR_OK);
    CHECK(cluster_joined(c));
    const cluster_view_t *v = cluster_view_acquire(c);
    CHECK_EQ_INT(ring_node_count(v->ring), 1);
    CHECK(v->pending == NULL);
    CHECK_EQ_INT(v->self, 0);
    CHECK_EQ_STR(v->self_id, "solo");
    CHECK_EQ_INT(v->rf, 1);
    CHECK_EQ_INT(v->quorum, 1);
    CHECK(v->live[0] && v->reachable[0]);
    CHECK_EQ_STR(v->http_addr[0], "http://127.0.0.1:4040");
    CHECK_EQ_STR(v->cluster_addr[0], "");
    Flamedb__Cluster__WriteAck ack = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    ack.tenant = "t";
    CHECK_EQ_INT(
        cluster_send(c, "nobody", FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK, 0, &ack.base),
        ERR_NOT_FOUND);
    CHECK_EQ_INT(
        cluster_send(c, "solo", FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK, 0, &ack.base),
        ERR_UNAVAILABLE);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(cluster_status_json(c, &b), ERR_OK);
    CHECK(strstr((char *)b.data, "\"self\":\"solo\"") != NULL);
    CHECK(strstr((char *)b.data, "\"rf\":1,\"quorum\":1") != NULL);
    CHECK(strstr((char *)b.data, "\"state\":\"active\"") != NULL);
    buf_free(&b);
    close_free(loop, c);
    /* the view outlives the cluster while a reference is held */
    CHECK_EQ_STR(v->self_id, "solo");
    cluster_view_release(v);
    remove_dir(dir);
}

/* ---------- three nodes over TCP ---------- */

#define N 3

typedef struct trio {
    uv_loop_t *loop;
    cluster_t *c[N];
    char dir[N][64];
    char addr[N][64];
    int acks; /* WRITE_ACKs received by node 2 */
    char last_sender[80];
    uint64_t last_request;
    int partials;        /* PARTIALs received by node 2, as envelopes */
    int partial_decoded; /* ... whose body arrived NULL and decoded on request */
    uint64_t partial_request;
} trio_t;

/* PARTIAL is registered with cluster_on_envelope: the loop hands over the
 * envelope only (routed by its copy of the request id); the handler takes
 * the message and decodes the body where it wants (here, at once). */
static void on_partial(void *ctx, cluster_msg_t *msg)
{
    trio_t *t = ctx;
    t->partials++;
    t->partial_request = msg->env->request_id;
    if (msg->body != NULL) return; /* decoded on the loop: the convention is broken */
    cluster_msg_t mine = *msg;
    memset(msg, 0, sizeof *msg);
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    errmsg_t em = {{0}};
    if (cluster_wire_decode_body(&mine, &lim, 0, &em) == 0 &&
        ((const Flamedb__Cluster__PartialResult *)mine.body)->request_id == t->partial_request)
        t->partial_decoded++;
    cluster_msg_free(&mine);
}

static int partials_at_least(void *ctx)
{
    trio_t *t = ctx;
    return t->partials >= 1;
}

static void test_partial_envelopes(trio_t *t)
{
    CHECK_EQ_INT(
        cluster_on_envelope(t->c[2], FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_PARTIAL, on_partial, t),
        ERR_OK);
    Flamedb__Cluster__PartialResult p = FLAMEDB__CLUSTER__PARTIAL_RESULT__INIT;
    p.protocol_version = CLUSTER_PROTOCOL_VERSION;
    p.tenant = "tenant-a";
    p.request_id = 4242;
    CHECK_EQ_INT(
        cluster_send(t->c[1], "n2", FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_PARTIAL, 0, &p.base),
        ERR_OK);
    CHECK(run_until(t->loop, partials_at_least, t, WAIT_MS));
    CHECK_EQ_INT(t->partials, 1);
    CHECK_EQ_INT(t->partial_request, 4242);
    CHECK_EQ_INT(t->partial_decoded, 1);
}

static void on_ack(void *ctx, cluster_msg_t *msg)
{
    trio_t *t = ctx;
    const Flamedb__Cluster__WriteAck *a = (const Flamedb__Cluster__WriteAck *)msg->body;
    t->acks++;
    t->last_request = a->request_id;
    snprintf(t->last_sender, sizeof t->last_sender, "%s", msg->env->sender_id);
}

/* Every node's view has exactly `n` ring nodes, all live and reachable. */
static int all_live(void *ctx)
{
    trio_t *t = ctx;
    for (int i = 0; i < N; i++) {
        if (t->c[i] == NULL) continue;
        const cluster_view_t *v = cluster_view_acquire(t->c[i]);
        int ok = ring_node_count(v->ring) == N;
        for (uint32_t k = 0; ok && k < N; k++)
            ok = v->live[k] && v->reachable[k];
        cluster_view_release(v);
        if (!ok) return 0;
    }
    return 1;
}

static void trio_start(uv_loop_t *loop, trio_t *t)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    for (int i = 0; i < N; i++)
        snprintf(t->addr[i], sizeof t->addr[i], "tcp://127.0.0.1:%d", test_free_port());
    for (int i = 0; i < N; i++) {
        temp_dir(t->dir[i], sizeof t->dir[i]);
        node_config_t cfg;
        char id[16];
        snprintf(id, sizeof id, "n%d", i);
        config(&cfg, t->dir[i], id, t->addr[i], i == 0 ? "" : t->addr[0]);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(cluster_new(loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:1", NULL,
                                 &t->c[i], &em),
                     ERR_OK);
        CHECK_EQ_INT(cluster_start(t->c[i], &em), ERR_OK);
    }
}

static void send_ack(trio_t *t, int from, const char *to, uint64_t request_id, uint64_t deadline,
                     int want_rc)
{
    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    static uint8_t pid[16] = {1, 2, 3};
    a.tenant = "tenant-a";
    a.request_id = request_id;
    a.profile_id.data = pid;
    a.profile_id.len = sizeof pid;
    CHECK_EQ_INT(cluster_send(t->c[from], to, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK,
                              deadline, &a.base),
                 want_rc);
}

static int acks_at_least(void *ctx)
{
    trio_t *t = ctx;
    return t->acks >= 1;
}

static void test_messages(trio_t *t)
{
    CHECK_EQ_INT(cluster_on(t->c[2], FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK, on_ack, t),
                 ERR_OK);
    CHECK_EQ_INT(cluster_on(t->c[2], FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_GOSSIP, on_ack, t),
                 ERR_INVALID_ARGUMENT);
    send_ack(t, 0, "n2", 77, 0, ERR_OK);
    CHECK(run_until(t->loop, acks_at_least, t, WAIT_MS));
    CHECK_EQ_INT(t->acks, 1);
    CHECK_EQ_STR(t->last_sender, "n0");
    CHECK_EQ_INT(t->last_request, 77);
    send_ack(t, 0, "n9", 1, 0, ERR_NOT_FOUND);
    /* a message already past its deadline never reaches the handler */
    send_ack(t, 1, "n2", 78, 1000, ERR_OK);
    /* larger than max-message-bytes: refused by the sender */
    char *big = malloc(100 * 1024);
    memset(big, 'x', 100 * 1024 - 1);
    big[100 * 1024 - 1] = '\0';
    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    a.tenant = "t";
    a.reason = big;
    CHECK_EQ_INT(
        cluster_send(t->c[0], "n2", FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE_ACK, 0, &a.base),
        ERR_TOO_LARGE);
    free(big);
    run_until(t->loop, never, NULL, 300);
    CHECK_EQ_INT(t->acks, 1);
}

/* On every node n1 is not live (no reads) but reachable, and marked (no
 * stream source) exactly when `by_other`; n0 and n2 are marked nowhere. */
static int n1_listed_everywhere(trio_t *t, int by_other)
{
    for (int i = 0; i < N; i++) {
        const cluster_view_t *v = cluster_view_acquire(t->c[i]);
        int k = ring_node_find(v->ring, "n1");
        int ok = k >= 0 && !v->live[k] && v->reachable[k] && v->marked[k] == by_other;
        for (uint32_t j = 0; ok && j < ring_node_count(v->ring); j++)
            ok = (int)j == k || !v->marked[j];
        cluster_view_release(v);
        if (!ok) return 0;
    }
    return 1;
}

static int n1_hinted_everywhere(void *ctx)
{
    return n1_listed_everywhere(ctx, 1);
}

static int n1_self_listed_everywhere(void *ctx)
{
    return n1_listed_everywhere(ctx, 0);
}

static void test_hint_targets(trio_t *t)
{
    const char *ids[] = {"n1"};
    CHECK_EQ_INT(cluster_set_hint_targets(t->c[0], ids, 1), ERR_OK);
    const cluster_view_t *v = cluster_view_acquire(t->c[0]);
    CHECK(!v->live[ring_node_find(v->ring, "n1")]); /* at once on the holder */
    cluster_view_release(v);
    CHECK(run_until(t->loop, n1_hinted_everywhere, t, WAIT_MS));
    const char *bad[] = {"not valid!"};
    CHECK_EQ_INT(cluster_set_hint_targets(t->c[0], bad, 1), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(cluster_set_hint_targets(t->c[0], NULL, 0), ERR_OK);
    CHECK(run_until(t->loop, all_live, t, WAIT_MS));
    /* a node listing itself is not read from, but it is no mark of another
     * node: it decides what it serves as a stream source itself */
    CHECK_EQ_INT(cluster_set_hint_targets(t->c[1], ids, 1), ERR_OK);
    CHECK(run_until(t->loop, n1_self_listed_everywhere, t, WAIT_MS));
    CHECK_EQ_INT(cluster_set_hint_targets(t->c[1], NULL, 0), ERR_OK);
    CHECK(run_until(t->loop, all_live, t, WAIT_MS));
}

static int n2_down_on_others(void *ctx)
{
    trio_t *t = ctx;
    for (int i = 0; i < 2; i++) {
        const cluster_view_t *v = cluster_view_acquire(t->c[i]);
        int k = ring_node_find(v->ring, "n2");
        int ok = k >= 0 && !v->reachable[k] && !v->live[k] && v->rf == 3;
        cluster_view_release(v);
        if (!ok) return 0;
    }
    return 1;
}

/* A node of another cluster gossips with n0 and is never admitted. */
static void test_other_cluster(trio_t *t)
{
    char dir[64], addr[64];
    temp_dir(dir, sizeof dir);
    snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", test_free_port());
    node_config_t cfg;
    config(&cfg, dir, "intruder", addr, t->addr[0]);
    snprintf(cfg.cluster.cluster_name, sizeof cfg.cluster.cluster_name, "elsewhere");
    cluster_t *x = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_new(t->loop, &cfg.cluster, cfg.data_dir, "", NULL, &x, &em), ERR_OK);
    CHECK_EQ_INT(cluster_start(x, &em), ERR_OK);
    /* new with a seed, it is joining; no seed answers within the failure
     * timeout (400 ms), so it goes on alone (ready) but stays joining: an
     * active cluster may be behind its seeds (test_seed_wait_from_start) */
    run_until(t->loop, never, NULL, 800);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(cluster_status_json(t->c[0], &b), ERR_OK);
    CHECK(strstr((char *)b.data, "intruder") == NULL);
    CHECK(strstr((char *)b.data, "\"refused_messages\":0,") == NULL);
    buf_free(&b);
    CHECK(cluster_joined(x) && x->joining);
    const cluster_view_t *v = cluster_view_acquire(x);
    CHECK(v->ring == NULL); /* no active node: it serves nothing */
    cluster_view_release(v);
    close_free(t->loop, x);
    remove_dir(dir);
}

/* Whether c's own view reads its own copy. */
static int self_live(cluster_t *c)
{
    const cluster_view_t *v = cluster_view_acquire(c);
    int live = v->self >= 0 && v->live[v->self];
    cluster_view_release(v);
    return live;
}

static int n2_reads_itself(void *ctx)
{
    return self_live(((trio_t *)ctx)->c[2]);
}

static cluster_t *restart_n2(trio_t *t)
{
    node_config_t cfg;
    config(&cfg, t->dir[2], "n2", t->addr[2], t->addr[0]);
    errmsg_t em = {{0}};
    cluster_t *c = NULL;
    CHECK_EQ_INT(
        cluster_new(t->loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:1", NULL, &c, &em),
        ERR_OK);
    return c;
}

/* n2 restarted with its identity and a seed: it lists itself in its own
 * hints_for (its copy is not read) until both others gave it word since its
 * start; with both others gone it stays listed, though ready after the
 * start's wait. */
static void test_restart_waits_for_word(trio_t *t)
{
    t->c[2] = restart_n2(t);
    CHECK(t->c[2]->unheard);
    CHECK(!self_live(t->c[2]));
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_start(t->c[2], &em), ERR_OK);
    CHECK(run_until(t->loop, n2_reads_itself, t, WAIT_MS));
    CHECK(!t->c[2]->unheard);
    CHECK(cluster_move_was_heard(t->c[2], "n0") && cluster_move_was_heard(t->c[2], "n1"));
    CHECK(run_until(t->loop, all_live, t, WAIT_MS));
    close_free(t->loop, t->c[2]);
    for (int i = 0; i < 2; i++) {
        close_free(t->loop, t->c[i]);
        t->c[i] = NULL;
    }
    t->c[2] = restart_n2(t);
    CHECK_EQ_INT(cluster_start(t->c[2], &em), ERR_OK);
    run_until(t->loop, never, NULL, 1000); /* past the start's wait (400 + 10 x 30 ms) */
    CHECK(cluster_joined(t->c[2]));
    CHECK(t->c[2]->unheard && !self_live(t->c[2]));
    close_free(t->loop, t->c[2]);
    t->c[2] = NULL;
}

static int joined(void *c)
{
    return cluster_joined(c);
}

static int active(void *c)
{
    return !((cluster_t *)c)->joining;
}

/* A new node joining through a seed that does not answer is ready (goes on
 * alone) only --failure-timeout (400 ms) after its start. A loop caches its
 * time at its last turn: a node whose start (its store opened, its identity
 * made) took longer than that before the loop ever ran counted the wait
 * from the loop's init and went on alone at its first gossip round. And
 * alone it stays joining, however long the seed is silent: it turned
 * active without streaming, and once it heard the cluster it owned ranges
 * it held nothing of and answered them short and unflagged. It turns
 * active once it hears the seed (here a membership-only node, which has
 * nothing to stream with). */
static void test_seed_wait_from_start(void)
{
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    usleep(600 * 1000); /* a slow start, longer than the failure timeout */
    char dir[64], listen[64], seed[64];
    temp_dir(dir, sizeof dir);
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", test_free_port());
    snprintf(seed, sizeof seed, "tcp://127.0.0.1:%d", test_free_port()); /* nobody listens */
    node_config_t cfg;
    config(&cfg, dir, "late", listen, seed);
    errmsg_t em = {{0}};
    cluster_t *c = NULL;
    CHECK_EQ_INT(
        cluster_new(&loop, &cfg.cluster, cfg.data_dir, "http://127.0.0.1:1", NULL, &c, &em),
        ERR_OK);
    CHECK(c->joining);
    uint64_t t0 = uv_hrtime();
    CHECK_EQ_INT(cluster_start(c, &em), ERR_OK);
    CHECK(run_until(&loop, joined, c, WAIT_MS));
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000;
    CHECK(waited_ms + 1 >= cfg.cluster.failure_timeout_ms); /* the loop counts whole ms */
    fprintf(stderr, "no seed answered: alone %llu ms after the start (failure timeout 400)\n",
            (unsigned long long)waited_ms);
    run_until(&loop, active, c, 1000); /* 2.5 failure timeouts more */
    CHECK(c->joining);
    /* the seed comes up: a node of its own, no seeds, active */
    char sdir[64];
    temp_dir(sdir, sizeof sdir);
    node_config_t scfg;
    config(&scfg, sdir, "seed", seed, "");
    cluster_t *s = NULL;
    CHECK_EQ_INT(
        cluster_new(&loop, &scfg.cluster, scfg.data_dir, "http://127.0.0.1:2", NULL, &s, &em),
        ERR_OK);
    CHECK_EQ_INT(cluster_start(s, &em), ERR_OK);
    CHECK(run_until(&loop, active, c, WAIT_MS));
    close_free(&loop, s);
    remove_dir(sdir);
    close_free(&loop, c);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    remove_dir(dir);
}

static void test_trio(uv_loop_t *loop)
{
    trio_t t;
    uint64_t t0 = uv_hrtime();
    trio_start(loop, &t);
    CHECK(cluster_joined(t.c[0]));  /* no seeds: the first node */
    CHECK(!cluster_joined(t.c[1])); /* nobody heard from yet */
    CHECK(run_until(loop, all_live, &t, WAIT_MS));
    CHECK(cluster_joined(t.c[1]) && cluster_joined(t.c[2]));
    fprintf(stderr, "3 nodes converged in %.0f ms (gossip every 30 ms)\n",
            (double)(uv_hrtime() - t0) / 1e6);
    test_messages(&t);
    test_partial_envelopes(&t);
    test_hint_targets(&t);
    test_other_cluster(&t);
    /* n2 goes away: the others see it down (not live, not reachable) */
    t0 = uv_hrtime();
    close_free(loop, t.c[2]);
    t.c[2] = NULL;
    CHECK(run_until(loop, n2_down_on_others, &t, WAIT_MS));
    fprintf(stderr, "a closed node seen down by both others in %.0f ms (failure timeout 400)\n",
            (double)(uv_hrtime() - t0) / 1e6);
    test_restart_waits_for_word(&t); /* closes all three */
    for (int i = 0; i < N; i++)
        remove_dir(t.dir[i]);
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    test_identity(&loop);
    test_cluster_of_one(&loop);
    test_seed_wait_from_start();
    test_trio(&loop);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    return check_exit();
}
