/* test_node_replicate.c — the replicated write path in one process:
 * quorum accounting (acks, failures, early loss, the 503 reason), grouping
 * of series by replica on a real ring (each remote request carries exactly
 * its series and only the symbols they reference), the local replica's write,
 * refusal before writing when too few replicas are reachable, hint records
 * for unreachable replicas (durable, decodable, replayable as is), the
 * message size limit, hints before the answer, the repair marks of
 * hinted handoff off: which misses a late ack cancels and which wait for a
 * pass, and the hints a write's other replicas witness. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/calltree.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "node/cluster/replicate_int.h"

/* ---------------------------------------------------------------- fixtures */

static void view_retain(const cluster_view_t *v)
{
    (void)v;
}
static void view_release(const cluster_view_t *v)
{
    (void)v;
}
static const cluster_view_t *view_acquire(void *ctx)
{
    return ctx;
}
/* sends_vanish: sends are accepted and never answered (a silent replica);
 * otherwise every send fails at once. */
static int sends_vanish;
static int send_none(void *ctx, const char *id, Flamedb__Cluster__MsgType t, uint64_t d,
                     const ProtobufCMessage *b)
{
    return sends_vanish ? 0 : ERR_UNAVAILABLE;
}

/* The fixture's clock: tests move it by hand (deadlines without sleeping). */
#define T0_MS 1700000000000LL
static clock_manual_t manual = {.wall_ns = T0_MS * 1000000, .mono_ns = 1000000};
static int targets_set;
static int set_targets(void *ctx, const char *const *ids, size_t n)
{
    targets_set = (int)n;
    return 0;
}

typedef struct fx {
    char dir[64];
    storage_t *s;
    ring_t *ring;
    cluster_view_t view;
    uint8_t live[8], reachable[8];
    replicate_t *r;
    uv_loop_t loop;
} fx_t;

static int rm_entry(const char *p, const struct stat *st, int f, struct FTW *w)
{
    return remove(p);
}

/* The member version every node advertises, but old_member (a release
 * before notices: 0). */
static const char *old_member = "";
static uint32_t member_version_of(void *ctx, const char *id)
{
    (void)ctx;
    return strcmp(id, old_member) == 0 ? 0 : CLUSTER_MEMBER_VERSION;
}

static void fx_init(fx_t *f, uint32_t nnodes, uint32_t rf, uint32_t quorum, const char *self)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/flamedb-repl-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    storage_options_t so;
    storage_options_default(&so);
    so.path = f->dir;
    so.block_cache_bytes = 8 << 20;
    so.write_buffer_bytes = 16 << 20;
    CHECK_EQ_INT(storage_open(&so, &f->s, NULL), 0);
    ring_rng_t rng;
    ring_rng_seed(&rng, 42);
    ring_identity_t ids[8];
    ring_node_spec_t specs[8];
    for (uint32_t i = 0; i < nnodes; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%u", i);
        CHECK_EQ_INT(ring_identity_generate(&ids[i], name, 16, &rng, NULL), 0);
        specs[i] = (ring_node_spec_t){ids[i].node_id, ids[i].tokens, ids[i].ntokens};
        f->live[i] = f->reachable[i] = 1;
    }
    CHECK_EQ_INT(ring_build(specs, nnodes, &f->ring, NULL), 0);
    for (uint32_t i = 0; i < nnodes; i++)
        ring_identity_free(&ids[i]);
    f->view = (cluster_view_t){.ring = f->ring,
                               .live = f->live,
                               .reachable = f->reachable,
                               .self = ring_node_find(f->ring, self),
                               .self_id = self,
                               .rf = rf,
                               .quorum = quorum,
                               .version = 1};
    uv_loop_init(&f->loop);
    replicate_options_t o;
    replicate_options_default(&o);
    o.hint_replay_interval_ms = 3600 * 1000; /* no replay in these tests */
    o.clock = clock_manual(&manual);
    cluster_ops_t ops = {view_acquire, view_retain, view_release, send_none, set_targets, &f->view};
    ops.member_version = member_version_of;
    CHECK_EQ_INT(replicate_new(&f->loop, f->s, &o, &ops, &f->r, NULL), 0);
}

static void fx_done(fx_t *f)
{
    replicate_close(f->r, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    replicate_free(f->r);
    uv_loop_close(&f->loop);
    ring_free(f->ring);
    storage_close(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Real time a wait for the loop and its pool jobs may take: the jobs write
 * and sync RocksDB, which on a loaded machine (two cores shared with builds
 * and other tests) takes far longer than the few milliseconds it takes
 * alone. A wait ends as soon as what it waits for holds. */
#define WAIT_NS (20ull * 1000 * 1000 * 1000)

/* Runs f's loop until cond holds, for at most WAIT_NS of real time (the
 * fixture's manual clock does not move); the caller checks cond after. */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        uint64_t end_ = uv_hrtime() + WAIT_NS;                                                     \
        while (!(cond) && uv_hrtime() < end_) {                                                    \
            uv_run(&(f)->loop, UV_RUN_NOWAIT);                                                     \
            usleep(500);                                                                           \
        }                                                                                          \
    } while (0)

/* Until every pool job of f's replicate_t has run and its completion on the
 * loop has too (r->jobs counts both): only then are the counters, hint
 * targets and marks that completions update final. A job's storage write
 * is visible before its completion runs, so waiting for what it stored is
 * not enough. */
static void settle(fx_t *f)
{
    RUN_UNTIL(f, f->r->jobs == 0);
    CHECK_EQ_INT((int)f->r->jobs, 0);
}

/* A profile of nseries series, each of its own service (so of its own
 * token), with stacks over a shared and a per-series symbol. */
typedef struct prof {
    labels_t *labels[16];
    calltree_t *trees[16];
    storage_series_write_t series[16];
    symtab_t *symbols;
    storage_profile_write_t w;
    uint64_t shared_sym, own_sym[16];
} prof_t;

static void prof_init(prof_t *p, size_t n, uint64_t id)
{
    memset(p, 0, sizeof *p);
    p->symbols = symtab_new();
    symtab_intern(p->symbols, "main", 4, "main.c", 6, &p->shared_sym);
    symtab_intern(p->symbols, "unused", 6, "", 0, &id); /* in the table, in no tree */
    for (size_t i = 0; i < n; i++) {
        char svc[32], fn[32];
        snprintf(svc, sizeof svc, "svc%zu", i);
        snprintf(fn, sizeof fn, "work%zu", i);
        symtab_intern(p->symbols, fn, strlen(fn), "", 0, &p->own_sym[i]);
        p->labels[i] = labels_new();
        labels_set_str(p->labels[i], LABEL_NAME, "process_cpu");
        labels_set_str(p->labels[i], LABEL_PROFILE_TYPE,
                       "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        labels_set_str(p->labels[i], LABEL_SERVICE_NAME, svc);
        p->trees[i] = calltree_new(0);
        uint64_t stack[2] = {p->shared_sym, p->own_sym[i]};
        calltree_add_stack(p->trees[i], stack, 2, (int64_t)(10 + i));
        uint64_t sid = labels_hash(p->labels[i]);
        p->series[i] = (storage_series_write_t){
            .labels = p->labels[i],
            .token = ring_placement_token("t", svc, ring_series_shard(sid, 4)),
            .series_id = sid,
            .tree = p->trees[i]};
    }
    p->w = (storage_profile_write_t){.tenant = "t",
                                     .time_ns = 1700000000LL * 1000000000LL,
                                     .series = p->series,
                                     .nseries = n,
                                     .symbols = p->symbols};
    memcpy(p->w.profile_id, &id, sizeof id);
}

static void prof_free(prof_t *p)
{
    for (size_t i = 0; i < p->w.nseries; i++) {
        labels_free(p->labels[i]);
        calltree_free(p->trees[i]);
    }
    symtab_free(p->symbols);
}

/* ---------------------------------------------------------------- tests */

/* Three series, RF 3 on 3 nodes, W 2, by hand: acks and failures move the
 * counters; the outcome is known as early as possible. */
static void test_quorum_accounting(void)
{
    replicate_write_t rw;
    memset(&rw, 0, sizeof rw);
    cluster_view_t v = {.self_id = "a"};
    CHECK_EQ_INT(replicate_write_init_series(&rw, 2), 0);
    rw.quorum[0] = rw.quorum[1] = 2;
    const char *nodes[] = {"a", "b", "c", "d"};
    int ti[4];
    for (int i = 0; i < 4; i++)
        ti[i] = replicate_target_of(&rw, nodes[i], &v);
    CHECK_EQ_INT(replicate_target_of(&rw, "b", &v), ti[1]); /* grouped, not repeated */
    CHECK_EQ_INT(rw.nt, 4);
    CHECK(rw.t[ti[0]].self && !rw.t[ti[1]].self);
    /* series 0 on a b c; series 1 on b c d, d only pending (does not count) */
    replicate_target_add(&rw, ti[0], 0, 1);
    replicate_target_add(&rw, ti[1], 0, 1);
    replicate_target_add(&rw, ti[2], 0, 1);
    replicate_target_add(&rw, ti[1], 1, 1);
    replicate_target_add(&rw, ti[2], 1, 1);
    replicate_target_add(&rw, ti[3], 1, 0);
    replicate_quorum_begin(&rw);
    CHECK_EQ_INT(rw.unmet, 2);
    CHECK_EQ_INT(rw.open[0], 3);
    CHECK_EQ_INT(rw.open[1], 2);
    replicate_quorum_ack(&rw, ti[3]); /* pending replica: no quorum credit */
    CHECK_EQ_INT(rw.acks[1], 0);
    replicate_quorum_ack(&rw, ti[0]);
    CHECK(!replicate_quorum_met(&rw) && !replicate_quorum_lost(&rw));
    replicate_quorum_fail(&rw, ti[2], TS_NEEDS_HINT, ERR_TIMEOUT, "timed out");
    /* series 1 has b left and needs 2: lost before b even answers */
    CHECK(replicate_quorum_lost(&rw));
    errmsg_t em = {{0}};
    replicate_quorum_reason(&rw, &em);
    CHECK(strstr(em.text, "2 of 2 series") != NULL);
    CHECK(strstr(em.text, "0 of 2 replicas acknowledged, 2 needed") != NULL);
    CHECK(strstr(em.text, "c (timed out)") != NULL);
    replicate_quorum_fail(&rw, ti[2], TS_REFUSED, ERR_IO, "again"); /* resolved once */
    CHECK_EQ_INT(rw.t[ti[2]].state, TS_NEEDS_HINT);
    replicate_quorum_ack(&rw, ti[1]);
    CHECK_EQ_INT(rw.acks[0], 2);
    CHECK_EQ_INT(rw.unmet, 1);        /* series 0 met, series 1 has 1 of 2 */
    replicate_quorum_ack(&rw, ti[1]); /* a duplicate ack changes nothing */
    CHECK_EQ_INT(rw.acks[0], 2);
    rw.view = NULL;
    rw.r = NULL;
    for (uint32_t i = 0; i < rw.nt; i++) {
        free(rw.t[i].series);
        free(rw.t[i].natural);
    }
    free(rw.t);
    free(rw.acks);
    free(rw.quorum);
    free(rw.open);
    free(rw.nnatural);
}

/* Symbols of one request: the shared one and each of its series' own. */
static int has_symbol(const Flamedb__Cluster__WriteRequest *q, uint64_t id)
{
    for (size_t i = 0; i < q->n_symbols; i++)
        if (q->symbols[i]->id == id) return 1;
    return 0;
}

static void test_grouping(void)
{
    fx_t f;
    fx_init(&f, 5, 3, 2, "n1");
    prof_t p;
    prof_init(&p, 12, 77);
    replicate_write_t *rw = NULL;
    size_t local = 99;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, &local, &em), 0);
    CHECK(rw != NULL);
    size_t self_series = 0, parts = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        /* exactly the series this node is a replica of */
        for (size_t i = 0; i < p.w.nseries; i++) {
            uint32_t reps[3];
            uint32_t n = ring_replicas(f.ring, p.series[i].token, 3, reps);
            int is = 0, listed = 0;
            for (uint32_t k = 0; k < n; k++)
                is |= strcmp(ring_node_name(f.ring, reps[k]), t->id) == 0;
            for (uint32_t k = 0; k < t->nseries; k++)
                listed |= t->series[k] == i;
            CHECK_EQ_INT(is, listed);
        }
        if (t->self) {
            self_series = t->nseries;
            CHECK_EQ_INT(t->state, TS_ACKED);
            continue;
        }
        const Flamedb__Cluster__WriteRequest *q = &t->req;
        CHECK_EQ_INT(q->n_series, t->nseries);
        CHECK_EQ_STR(q->tenant, "t");
        CHECK(q->deadline_unix_ms > 0 && q->profile_id.len == 16);
        parts += q->n_series;
        /* only referenced symbols: the shared one plus one per series */
        CHECK_EQ_INT(q->n_symbols, 1 + q->n_series);
        CHECK(has_symbol(q, p.shared_sym));
        for (size_t k = 0; k < q->n_series; k++) {
            CHECK(has_symbol(q, p.own_sym[t->series[k]]));
            CHECK_EQ_INT(q->series[k]->series_id, p.series[t->series[k]].series_id);
        }
    }
    CHECK_EQ_INT(local, self_series);
    CHECK_EQ_INT(replicate_write_local_series(rw), self_series);
    CHECK_EQ_INT(parts + self_series, 3 * p.w.nseries);
    /* every series' local replica acked: quorum 2 needs one more */
    for (uint32_t i = 0; i < rw->nseries; i++)
        CHECK_EQ_INT(rw->quorum[i], 2);
    replicate_write_free(rw);

    /* the same profile again: nothing new is written locally */
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, &local, &em), 0);
    CHECK_EQ_INT(local, 0);
    replicate_write_free(rw);

    /* a message limit below a request's size refuses the whole write */
    f.r->o.max_message_bytes = 100;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), ERR_TOO_LARGE);
    CHECK(strstr(em.text, "max-message-bytes") != NULL);
    CHECK(rw == NULL);
    prof_free(&p);
    fx_done(&f);
}

static int count_hint(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    Flamedb__Cluster__HintRecord *h = flamedb__cluster__hint_record__unpack(NULL, len, rec);
    CHECK(h != NULL);
    if (h == NULL) return 0;
    /* stored compressed (the fixture's requests shrink), and it decodes back */
    CHECK(h->write_request_zstd.len > 0 && h->write_request.len == 0);
    CHECK(h->write_request_zstd.len < h->write_request_len);
    Flamedb__Cluster__WriteRequest *q = replicate_hint_request(h, 64 << 20);
    CHECK(q != NULL && q->hint_replay && q->n_series > 0 && q->n_symbols > 0);
    CHECK(replicate_hint_request(h, h->write_request_len - 1) == NULL); /* bounded */
    CHECK(h->expires_unix_ms > h->created_unix_ms);
    CHECK_EQ_INT(h->created_unix_ms, (uint64_t)(manual.wall_ns / 1000000)); /* its clock */
    CHECK_EQ_STR(h->tenant, "t");
    if (q) flamedb__cluster__write_request__free_unpacked(q, NULL);
    flamedb__cluster__hint_record__free_unpacked(h, NULL);
    ++*(int *)ctx;
    return 0;
}

static int count_any(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    ++*(uint64_t *)ctx;
    return 0;
}

typedef struct outcome {
    int called, rc;
    errmsg_t em;
} outcome_t;

static void on_done(void *c, int rc, const errmsg_t *e)
{
    outcome_t *o = c;
    o->called++;
    o->rc = rc;
    if (e) o->em = *e;
}

static void test_unreachable(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    prof_t p;
    prof_init(&p, 3, 5);
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;

    /* one replica down at W 2: written locally, a hint for the down one */
    f.reachable[2] = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    CHECK_EQ_INT(rw->hints_stored, 1);
    int hints = 0;
    CHECK_EQ_INT(storage_hint_scan(f.s, "n2", 0, 100, count_hint, &hints), 0);
    CHECK_EQ_INT(hints, 1);
    /* on the loop: n1 cannot be sent to (send_none), so the write fails, and
     * n1 gets a hint when the write finishes */
    outcome_t out = {0};
    replicate_start(f.r, rw, on_done, &out);
    CHECK_EQ_INT(out.called, 1);
    CHECK_EQ_INT(out.rc, ERR_UNAVAILABLE);
    errmsg_t reason = out.em;
    CHECK(strstr(reason.text, "1 of 3 replicas acknowledged, 2 needed") != NULL);
    CHECK(strstr(reason.text, "n2 (down, hinted)") != NULL);
    settle(&f); /* n1's hint and its completion, which counts it and lists n1 */
    CHECK_EQ_INT(storage_hint_scan(f.s, "n1", 0, 1, count_hint, &hints), 0);
    CHECK_EQ_INT(hints, 2);
    replicate_stats_t st;
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.quorum_failures, 1);
    CHECK_EQ_INT(st.hints_stored, 2);
    CHECK(targets_set == 2);

    /* two of three down at W 2: refused before anything is written */
    f.reachable[1] = 0;
    prof_t p2;
    prof_init(&p2, 2, 6);
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p2.w, &rw, NULL, &em), ERR_UNAVAILABLE);
    CHECK(strstr(em.text, "1 of the 3 replicas") != NULL);
    storage_stats_t ss;
    storage_stats(f.s, &ss);
    CHECK_EQ_INT(ss.series_written, 3); /* only the first profile's */

    /* the per-target bound: a tiny hints-max-bytes drops and counts */
    f.reachable[1] = 1;
    f.r->o.hints_max_bytes = 10;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p2.w, &rw, NULL, &em), 0);
    CHECK_EQ_INT(rw->hints_dropped, 1);
    replicate_write_free(rw);
    prof_free(&p2);
    prof_free(&p);
    fx_done(&f);
}

/* With hinted handoff off, a natural replica the view shows down is named
 * in the requests of the reachable ones (missed_by), so each marks it too;
 * with hints kept, none is named. */
static void test_missed_by_named(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    prof_t p;
    prof_init(&p, 3, 9);
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    f.reachable[2] = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        CHECK_EQ_INT(rw->t[ti].req.n_missed_by, 0);
    replicate_write_free(rw);
    f.r->o.hints_max_bytes = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    int named = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (t->self || !t->reachable) {
            CHECK_EQ_INT(t->req.n_missed_by, 0);
            continue;
        }
        CHECK_EQ_INT(t->req.n_missed_by, 1);
        if (t->req.n_missed_by == 1) CHECK_EQ_STR(t->req.missed_by[0], "n2");
        named++;
    }
    CHECK_EQ_INT(named, 1); /* n1 */
    replicate_write_free(rw);
    prof_free(&p);
    fx_done(&f);
}

/* The member entries member_beat reports: the coordinator's beat, and
 * whether it is up. */
static uint64_t beat_inc = 5, beat_hb = 100;
static int beat_up = 1;
static int member_beat(void *ctx, const char *id, uint64_t *inc, uint64_t *hb)
{
    *inc = beat_inc;
    *hb = beat_hb;
    return beat_up;
}

static int count_witness(void *ctx, const storage_witness_t *w)
{
    (void)w;
    ++*(int *)ctx;
    return 0;
}

/* The hold is stored before the ack (merged: the latest beat, the oldest
 * profile time; put only when that changes), read back as after a restart,
 * and deleted once the coordinator's word ends it. */
static void witness_kept(fx_t *f, Flamedb__Cluster__WriteRequest *q)
{
    uint32_t stored = 0;
    q->hint_replay = 0;
    q->coordinator_heartbeat = 200;
    q->time_ns = 2000 * 1000000000LL;
    CHECK_EQ_INT(replicate_witness_store(f->r, "n0", "n1", q, &stored), 0);
    q->coordinator_heartbeat = 190; /* an older beat, an older profile */
    q->time_ns = 1000 * 1000000000LL;
    CHECK_EQ_INT(replicate_witness_store(f->r, "n0", "n1", q, &stored), 0);
    CHECK_EQ_INT(replicate_witness_store(f->r, "n0", "n1", q, &stored), 0); /* nothing new */
    CHECK_EQ_INT(replicate_witness_store(f->r, "n2", "n1", q, &stored), 0); /* names itself */
    CHECK_EQ_INT(stored, 2);
    CHECK_EQ_INT(f->r->nwit, 0); /* none in memory, as after a restart */
    CHECK_EQ_INT(replicate_witness_load(f->r), 0);
    CHECK_EQ_INT(f->r->nwit, 1);
    if (f->r->nwit == 1) {
        CHECK_EQ_STR(f->r->wit[0].target, "n2");
        CHECK_EQ_STR(f->r->wit[0].coord, "n1");
        CHECK_EQ_INT(f->r->wit[0].heartbeat, 200);
        CHECK_EQ_INT(f->r->wit[0].oldest_s, 1000);
    }
    beat_up = 1;
    beat_hb = 199;
    replicate_witness_tick(f->r);
    CHECK_EQ_INT(f->r->nwit, 1);
    beat_hb = 200; /* the coordinator's word: ended, and its stored copy deleted */
    replicate_witness_tick(f->r);
    CHECK_EQ_INT(f->r->nwit, 0);
    settle(f);
    int n = 0;
    CHECK_EQ_INT(storage_witnesses(f->s, count_witness, &n), 0);
    CHECK_EQ_INT(n, 0);
}

/* With hinted handoff on, the write names the hinted replica with this
 * node's beat; a replica that stores it holds the target unread until the
 * coordinator's entry reaches that beat (no mark), or marks it when the
 * coordinator is down first. */
static void test_hint_witnessed(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.member_beat = member_beat;
    prof_t p;
    prof_init(&p, 3, 11);
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    f.reachable[2] = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    replicate_witness_sign(f.r, rw);
    uint32_t named = UINT32_MAX;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (t->self || !t->reachable) continue;
        CHECK_EQ_INT(t->req.n_missed_by, 1);
        CHECK_EQ_INT(t->req.coordinator_incarnation, 5);
        CHECK_EQ_INT(t->req.coordinator_heartbeat, 100);
        named = ti;
    }
    CHECK(named != UINT32_MAX);
    /* n0 as the replica of a write coordinated by n1 that names n2 */
    Flamedb__Cluster__WriteRequest q = rw->t[named].req;
    char *ids[1] = {"n2"};
    q.missed_by = ids;
    q.n_missed_by = 1;
    targets_set = 0;
    CHECK_EQ_INT(replicate_witness_add(f.r, "n1", &q), 0);
    const char *held[4];
    CHECK_EQ_INT(replicate_witness_targets(f.r, held, 4), 1);
    CHECK_EQ_INT(targets_set, 1); /* its own hint for n2 and the witness: one id listed */
    beat_hb = 99;                 /* the coordinator's word not here yet */
    replicate_witness_tick(f.r);
    CHECK_EQ_INT(replicate_witness_targets(f.r, held, 4), 1);
    beat_hb = 100;
    replicate_witness_tick(f.r);
    CHECK_EQ_INT(replicate_witness_targets(f.r, held, 4), 0);
    const char *marked[4];
    CHECK_EQ_INT(replicate_marks_active(f.r, marked, 4), 0);
    /* again, and the coordinator goes down before its word arrives */
    q.coordinator_heartbeat = 150;
    CHECK_EQ_INT(replicate_witness_add(f.r, "n1", &q), 0);
    q.coordinator_heartbeat = 120; /* an older write arriving late: the latest beat holds */
    CHECK_EQ_INT(replicate_witness_add(f.r, "n1", &q), 0);
    beat_hb = 130;
    replicate_witness_tick(f.r);
    CHECK_EQ_INT(replicate_witness_targets(f.r, held, 4), 1);
    beat_up = 0;
    replicate_witness_tick(f.r);
    RUN_UNTIL(&f, f.r->nwit == 0);
    CHECK_EQ_INT(f.r->nwit, 0);
    CHECK_EQ_INT(replicate_marks_active(f.r, marked, 4), 1);
    CHECK_EQ_INT(f.r->st.hint_witnesses_marked, 1);
    /* a hint replay, or a write without a beat (hinted handoff off), holds none */
    beat_up = 1;
    q.hint_replay = 1;
    CHECK_EQ_INT(replicate_witness_add(f.r, "n1", &q), 0);
    q.hint_replay = 0;
    q.coordinator_heartbeat = 0;
    CHECK_EQ_INT(replicate_witness_add(f.r, "n1", &q), 0);
    CHECK_EQ_INT(f.r->nwit, 0);
    witness_kept(&f, &q);
    replicate_write_free(rw);
    prof_free(&p);
    fx_done(&f);
}

/* A replica that never answers: the write is decided when the injected
 * clock passes its deadline (not before), and the silent replica gets a
 * hint stamped with that clock. */
static void test_deadline_by_clock(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    prof_t p;
    prof_init(&p, 2, 7);
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    sends_vanish = 1;
    int64_t start_ms = manual.wall_ns / 1000000;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    CHECK_EQ_INT(rw->deadline_ms, (uint64_t)start_ms + f.r->o.write_timeout_ms);
    outcome_t out = {0};
    replicate_start(f.r, rw, on_done, &out);
    for (int i = 0; i < 5; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(out.called, 0); /* the clock has not moved: still waiting */
    clock_manual_advance_ms(&manual, (int64_t)f.r->o.write_timeout_ms - 1);
    replicate_arm_deadline(f.r);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(out.called, 0); /* 1 ms before the deadline */
    clock_manual_advance_ms(&manual, 1);
    replicate_arm_deadline(f.r);
    RUN_UNTIL(&f, out.called != 0);
    CHECK_EQ_INT(out.called, 1);
    CHECK_EQ_INT(out.rc, ERR_UNAVAILABLE);
    settle(&f);
    int hints = 0;
    storage_hint_scan(f.s, "n1", 0, 10, count_hint, &hints);
    storage_hint_scan(f.s, "n2", 0, 10, count_hint, &hints);
    CHECK_EQ_INT(hints, 2); /* both silent replicas, stamped with the moved clock */
    sends_vanish = 0;
    prof_free(&p);
    fx_done(&f);
}

/* ---------------------------------------------------------------- before the answer */

/* Sends recorded (target, request id) and never answered by themselves:
 * the test delivers each ack when it wants. */
static struct {
    char id[8][RING_NODE_ID_MAX + 1];
    uint64_t req[8];
    int notice[8]; /* a notice, naming notice_of[i] first; 2 once acknowledged */
    char notice_of[8][RING_NODE_ID_MAX + 1];
    int n;
} sent;
static int send_record(void *ctx, const char *id, Flamedb__Cluster__MsgType t, uint64_t d,
                       const ProtobufCMessage *b)
{
    const Flamedb__Cluster__WriteRequest *q = (const Flamedb__Cluster__WriteRequest *)b;
    if (sent.n < 8) {
        snprintf(sent.id[sent.n], sizeof sent.id[0], "%s", id);
        int notice = t == FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_WRITE && q->notice;
        sent.notice[sent.n] = notice;
        snprintf(sent.notice_of[sent.n], sizeof sent.notice_of[0], "%s",
                 notice && q->n_missed_by > 0 ? q->missed_by[0] : "");
        sent.req[sent.n++] = q->request_id;
    }
    return 0;
}

/* Notices sent and not yet acknowledged. */
static int notices_due(void)
{
    int n = 0;
    for (int i = 0; i < sent.n; i++)
        n += sent.notice[i] == 1;
    return n;
}

static void deliver_ack(fx_t *f, const char *from)
{
    for (int i = 0; i < sent.n; i++) {
        if (strcmp(sent.id[i], from) != 0) continue;
        Flamedb__Cluster__Envelope env = FLAMEDB__CLUSTER__ENVELOPE__INIT;
        env.sender_id = (char *)from;
        Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
        a.request_id = sent.req[i];
        cluster_msg_t m = {.env = &env, .body = &a.base};
        replicate_on_ack(f->r, &m);
    }
}

/* Acknowledges every notice sent and not yet acknowledged. */
static void deliver_notice_acks(fx_t *f)
{
    for (int i = 0; i < sent.n; i++) {
        if (sent.notice[i] != 1) continue;
        sent.notice[i] = 2;
        Flamedb__Cluster__Envelope env = FLAMEDB__CLUSTER__ENVELOPE__INIT;
        env.sender_id = sent.id[i];
        Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
        a.request_id = sent.req[i];
        cluster_msg_t m = {.env = &env, .body = &a.base};
        replicate_on_ack(f->r, &m);
    }
}

static uint64_t hints_of(storage_t *s, const char *target)
{
    uint64_t n = 0;
    storage_hint_scan(s, target, 0, 1000, count_any, &n);
    return n;
}

/* What the answer found stored: the silent replica's hints when done ran. */
typedef struct answer_seen {
    outcome_t out;
    storage_t *s;
    uint64_t n2_hints;
} answer_seen_t;

static void on_done_check(void *c, int rc, const errmsg_t *e)
{
    answer_seen_t *a = c;
    on_done(&a->out, rc, e);
    a->n2_hints = hints_of(a->s, "n2");
}

static int replay_after_of(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    Flamedb__Cluster__HintRecord *h = flamedb__cluster__hint_record__unpack(NULL, len, rec);
    CHECK(h != NULL);
    if (h != NULL) *(uint64_t *)ctx = h->replay_after_unix_ms;
    if (h != NULL) flamedb__cluster__hint_record__free_unpacked(h, NULL);
    return 0;
}

static void deliver_notice_acks(fx_t *f);

/* Runs the loop until the write answered and its jobs ran, bounded,
 * acknowledging the notices it sends. */
static void run_until(fx_t *f, const int *called)
{
    for (int k = 0; k < 4 && *called == 0; k++) {
        RUN_UNTIL(f, *called != 0 || notices_due() > 0);
        deliver_notice_acks(f);
    }
    settle(f);
}

/* RF 3, W 2: n1 acknowledges, n2 is slow but reachable. The push is not
 * answered before n2 has a durable hint (so a coordinator killed right
 * after the 200 leaves n2's miss recorded); n2's late ack deletes it. A
 * replica that acknowledges within the grace costs no hint at all; one that
 * never does keeps its one hint (none added at the deadline), which is not
 * replayed before the write's deadline. */
static void test_hint_before_answer(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    errmsg_t em = {{0}};
    replicate_stats_t st;

    /* 1. n2 answers after the grace: hinted before the answer, then cancelled */
    prof_t p;
    prof_init(&p, 2, 11);
    replicate_write_t *rw = NULL;
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    answer_seen_t a = {.s = f.s, .n2_hints = 99};
    replicate_start(f.r, rw, on_done_check, &a);
    CHECK_EQ_INT(sent.n, 2);
    deliver_ack(&f, "n1");
    uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(a.out.called, 0); /* quorum met, waiting the grace for n2 */
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f.r);
    /* n2 hinted, then named to n1, which acknowledged: the answer waits for
     * n1 to acknowledge that notice */
    RUN_UNTIL(&f, notices_due() > 0);
    CHECK_EQ_INT(notices_due(), 1);
    CHECK_EQ_STR(sent.id[sent.n - 1], "n1");
    CHECK_EQ_STR(sent.notice_of[sent.n - 1], "n2");
    uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(a.out.called, 0);
    run_until(&f, &a.out.called);
    CHECK_EQ_INT(a.out.called, 1);
    CHECK_EQ_INT(a.out.rc, 0);
    CHECK_EQ_INT(a.n2_hints, 1); /* durable before the client heard 200 */
    uint64_t after = 0;
    storage_hint_scan(f.s, "n2", 0, 10, replay_after_of, &after);
    CHECK_EQ_INT(after, (uint64_t)(manual.wall_ns / 1000000) - 50 + f.r->o.write_timeout_ms);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.hints_before_answer, 1);
    CHECK_EQ_INT(st.hints_stored, 1);
    CHECK_EQ_INT(st.notices, 1);
    CHECK_EQ_INT(st.notices_unanswered, 0);
    CHECK(targets_set >= 1);
    deliver_ack(&f, "n2"); /* late, before the deadline */
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.hints_cancelled != 0));
    CHECK_EQ_INT(hints_of(f.s, "n2"), 0);
    CHECK_EQ_INT(st.hints_cancelled, 1);
    CHECK_EQ_INT(st.inflight_writes, 0);

    /* 2. n2 answers within the grace: no hint, answered at its ack */
    prof_t p2;
    prof_init(&p2, 2, 12);
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p2.w, &rw, NULL, &em), 0);
    answer_seen_t b = {.s = f.s};
    replicate_start(f.r, rw, on_done_check, &b);
    deliver_ack(&f, "n1");
    uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(b.out.called, 0);
    deliver_ack(&f, "n2");
    CHECK_EQ_INT(b.out.called, 1);
    CHECK_EQ_INT(b.out.rc, 0);
    run_until(&f, &b.out.called);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.hints_before_answer, 1);
    CHECK_EQ_INT(st.notices, 1); /* every replica in the grace: no notice */
    CHECK_EQ_INT(hints_of(f.s, "n2"), 0);

    /* 3. n2 never answers: one hint before the answer, none added at the
     * deadline; the replay leaves it alone until the deadline passed */
    prof_t p3;
    prof_init(&p3, 2, 13);
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p3.w, &rw, NULL, &em), 0);
    answer_seen_t c = {.s = f.s};
    replicate_start(f.r, rw, on_done_check, &c);
    deliver_ack(&f, "n1");
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f.r);
    run_until(&f, &c.out.called);
    CHECK_EQ_INT(c.out.rc, 0);
    CHECK_EQ_INT(c.n2_hints, 1);
    int before = sent.n;
    replicate_replay_tick(&f.r->replay_timer); /* the write may still deliver it: not yet */
    settle(&f);
    CHECK_EQ_INT(sent.n, before);
    clock_manual_advance_ms(&manual, (int64_t)f.r->o.write_timeout_ms);
    replicate_arm_deadline(f.r);
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.inflight_writes == 0));
    settle(&f);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.inflight_writes, 0);
    CHECK_EQ_INT(hints_of(f.s, "n2"), 1);
    CHECK_EQ_INT(st.hints_stored, 2);
    CHECK_EQ_INT(st.hints_cancelled, 1);
    replicate_replay_tick(&f.r->replay_timer); /* past the deadline: replayed */
    RUN_UNTIL(&f, sent.n != before);
    CHECK_EQ_INT(sent.n, before + 1);
    CHECK_EQ_STR(sent.id[before], "n2");

    f.r->ops.send = send_none;
    prof_free(&p3);
    prof_free(&p2);
    prof_free(&p);
    fx_done(&f);
}

/* Starts a write of profile id through the fixture and delivers n1's ack. */
static void start_acked_by_n1(fx_t *f, prof_t *p, uint64_t id, answer_seen_t *a)
{
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    prof_init(p, 2, id);
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f->r, &f->view, &p->w, &rw, NULL, &em), 0);
    *a = (answer_seen_t){.s = f->s};
    replicate_start(f->r, rw, on_done_check, a);
    deliver_ack(f, "n1");
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* RF 3, W 2, n2 slow and n1, which acknowledged, never acknowledges the
 * notice naming n2: the push is answered 200 all the same once the notice
 * timed out (its quorum stored it; n2's hint is on this node), and counted. */
static void test_notice_unanswered(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    prof_t p;
    answer_seen_t a;
    start_acked_by_n1(&f, &p, 41, &a);
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f.r);
    RUN_UNTIL(&f, notices_due() > 0);
    CHECK_EQ_INT(notices_due(), 1);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(a.out.called, 0); /* waits for the notice */
    clock_manual_advance_ms(&manual, f.r->o.write_timeout_ms + 1);
    replicate_arm_deadline(f.r);
    RUN_UNTIL(&f, a.out.called != 0);
    CHECK_EQ_INT(a.out.called, 1);
    CHECK_EQ_INT(a.out.rc, 0);
    CHECK_EQ_INT(a.n2_hints, 1);
    settle(&f);
    replicate_stats_t st;
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.notices, 1);
    CHECK_EQ_INT(st.notices_unanswered, 1);
    CHECK_EQ_INT(st.inflight_writes, 0);
    sent.n = 0;
    f.r->ops.send = send_none;
    prof_free(&p);
    fx_done(&f);
}

/* RF 3, W 2, n2 slow and n1, which acknowledged, advertises a member
 * version before notices (it would drop one unanswered): it is sent none,
 * and the push is answered once n2's hint is stored, as before notices,
 * not at write-timeout. */
static void test_notice_skipped_for_older_member(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    old_member = "n1";
    prof_t p;
    answer_seen_t a;
    start_acked_by_n1(&f, &p, 42, &a);
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f.r);
    RUN_UNTIL(&f, a.out.called != 0 || notices_due() > 0);
    CHECK_EQ_INT(notices_due(), 0);
    CHECK_EQ_INT(a.out.called, 1);
    CHECK_EQ_INT(a.out.rc, 0);
    CHECK_EQ_INT(a.n2_hints, 1); /* this node's hint, durable before the answer */
    settle(&f);
    replicate_stats_t st;
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.notices, 0);
    CHECK_EQ_INT(st.notices_skipped, 1);
    old_member = "";
    sent.n = 0;
    f.r->ops.send = send_none;
    clock_manual_advance_ms(&manual, f.r->o.write_timeout_ms + 1);
    replicate_arm_deadline(f.r);
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.inflight_writes == 0));
    prof_free(&p);
    fx_done(&f);
}

/* RF 3, W 2, n2 slow but reachable: once it let one push's grace run out,
 * the next pushes are answered at the quorum with n2 hinted, not after the
 * grace; its late acks (slower than the grace) keep it so; an ack within
 * the grace ends it, and the next push waits the grace for n2 again. */
static void test_slow_replica_not_waited_for(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    replicate_stats_t st;
    prof_t p[4];
    answer_seen_t a[4];

    /* 1. n2 misses the grace */
    start_acked_by_n1(&f, &p[0], 31, &a[0]);
    CHECK_EQ_INT(a[0].out.called, 0);
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f.r);
    run_until(&f, &a[0].out.called);
    CHECK_EQ_INT(a[0].out.rc, 0);
    clock_manual_advance_ms(&manual, 10);
    deliver_ack(&f, "n2"); /* 60 ms after the send: later than the grace */

    /* 2. answered at n1's ack, n2's hint stored first, no clock moved */
    start_acked_by_n1(&f, &p[1], 32, &a[1]);
    run_until(&f, &a[1].out.called);
    CHECK_EQ_INT(a[1].out.called, 1);
    CHECK_EQ_INT(a[1].out.rc, 0);
    CHECK(a[1].n2_hints >= 1);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.grace_skipped, 1);
    CHECK_EQ_INT(st.hints_before_answer, 2);
    clock_manual_advance_ms(&manual, 60);
    deliver_ack(&f, "n2"); /* late again: still slow */

    start_acked_by_n1(&f, &p[2], 33, &a[2]);
    run_until(&f, &a[2].out.called);
    CHECK_EQ_INT(a[2].out.called, 1);
    deliver_ack(&f, "n2"); /* at once: caught up */

    /* 3. the grace applies to n2 again */
    start_acked_by_n1(&f, &p[3], 34, &a[3]);
    CHECK_EQ_INT(a[3].out.called, 0);
    deliver_ack(&f, "n2");
    CHECK_EQ_INT(a[3].out.called, 1);
    run_until(&f, &a[3].out.called);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.grace_skipped, 2);
    CHECK_EQ_INT(st.hints_before_answer, 3);
    /* the late acks delete their hints on the thread pool */
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.inflight_writes == 0));
    settle(&f);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.inflight_writes, 0);
    CHECK_EQ_INT(hints_of(f.s, "n2"), 0); /* every late ack deleted its hint */

    f.r->ops.send = send_none;
    for (int i = 0; i < 4; i++)
        prof_free(&p[i]);
    fx_done(&f);
}

/* ---------------------------------------------------------------- late acks and marks */

/* 1 when the fixture's node lists id as marked short (not read from). */
static int marked(fx_t *f, const char *id)
{
    const char *ids[8];
    size_t n = replicate_marks_active(f->r, ids, 8);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0) return 1;
    return 0;
}

static int stored_one(void *ctx, int kind, const char *node, uint64_t ms)
{
    replicate_mark_t *m = ctx;
    if (strcmp(node, m->id) != 0) return 0;
    if (kind == STORAGE_MARK_LOST)
        m->lost_ms = ms;
    else if (kind == STORAGE_MARK_REPAIRED)
        m->repaired_ms = ms;
    return 0;
}

/* 1 when a restart would read id back marked: the fixture's node's stored
 * marks once its pool jobs have stored them (as replicate_marks_load reads
 * them). */
static int stored_marked(fx_t *f, const char *id)
{
    settle(f);
    replicate_mark_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", id);
    CHECK_EQ_INT(storage_repair_marks(f->s, stored_one, &m), 0);
    return replicate_mark_active(&m, f->r->o.write_timeout_ms + 1000);
}

/* The request id of the last write sent to id (0: none). */
static uint64_t sent_to(const char *id)
{
    for (int i = sent.n - 1; i >= 0; i--)
        if (strcmp(sent.id[i], id) == 0) return sent.req[i];
    return 0;
}

/* A WRITE_ACK from id for request req, with status. */
static void ack_of(fx_t *f, const char *from, uint64_t req, int status)
{
    Flamedb__Cluster__Envelope env = FLAMEDB__CLUSTER__ENVELOPE__INIT;
    env.sender_id = (char *)from;
    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    a.request_id = req;
    a.status = status;
    a.reason = status ? "over a limit" : "";
    cluster_msg_t m = {.env = &env, .body = &a.base};
    replicate_on_ack(f->r, &m);
}

/* A push that n1 acknowledges and n2 lets the grace run out on: answered
 * 200 with n2 marked (hinted handoff off). Returns n2's request id. */
static uint64_t miss_n2(fx_t *f, prof_t *p, uint64_t id, answer_seen_t *a)
{
    start_acked_by_n1(f, p, id, a);
    uint64_t req = sent_to("n2");
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f->r);
    run_until(f, &a->out.called);
    CHECK_EQ_INT(a->out.called, 1);
    CHECK_EQ_INT(a->out.rc, 0);
    CHECK(marked(f, "n2")); /* durably, before the answer */
    CHECK(req != 0);
    return req;
}

/* Lifts every mark on n2 by a pass reported to start well after its misses. */
static void repaired_n2(fx_t *f)
{
    uint64_t now = (uint64_t)(manual.wall_ns / 1000000);
    replicate_marks_repaired(f->r, "n2", now + f->r->o.write_timeout_ms + 2000, 1, 0);
    clock_manual_advance_ms(&manual, (int64_t)f->r->o.write_timeout_ms + 3000);
    CHECK(!marked(f, "n2"));
}

/* The oldest profile time stored for id's mark (0: none). */
static int oldest_one(void *ctx, int kind, const char *node, uint64_t v)
{
    uint64_t *out = ctx;
    if (kind == STORAGE_MARK_OLDEST && strcmp(node, "n2") == 0) *out = v;
    return 0;
}

/* A push of a profile at time_s that n1 acknowledges and n2 refuses: a
 * miss only a pass lifts. */
static void refused_by_n2_at(fx_t *f, prof_t *p, uint64_t id, answer_seen_t *a, int64_t time_s)
{
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    prof_init(p, 2, id);
    p->w.time_ns = time_s * 1000000000LL;
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f->r, &f->view, &p->w, &rw, NULL, &em), 0);
    *a = (answer_seen_t){.s = f->s};
    replicate_start(f->r, rw, on_done_check, a);
    deliver_ack(f, "n1");
    uv_run(&f->loop, UV_RUN_NOWAIT);
    uint64_t req = sent_to("n2");
    clock_manual_advance_ms(&manual, 50);
    replicate_arm_grace(f->r);
    run_until(f, &a->out.called);
    CHECK_EQ_INT(a->out.rc, 0);
    ack_of(f, "n2", req, ERR_LIMIT);
    CHECK(marked(f, "n2"));
}

/* A pass lifts a mark only when it compared back to the oldest profile
 * time of the writes the mark holds (a pass does not find an older missed
 * profile), or when the node restored every range whole after the miss
 * (its full repair set after it). The oldest time is stored with the
 * mark, and a lifted mark starts afresh: a later miss of a newer profile
 * is lifted by a pass that compared back to that one only. */
static void test_pass_lifts_only_what_it_compared(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    f.r->o.hints_max_bytes = 0;
    prof_t p[2];
    answer_seen_t a[2];
    uint64_t slack = f.r->o.write_timeout_ms + 1000;
    refused_by_n2_at(&f, &p[0], 61, &a[0], 1600000000); /* a backfill */
    uint64_t stored = 0;
    CHECK_EQ_INT(storage_repair_marks(f.s, oldest_one, &stored), 0);
    CHECK_EQ_INT(stored, 1600000000);
    uint64_t miss = (uint64_t)(manual.wall_ns / 1000000);
    uint64_t start = miss + slack + 1000; /* a pass that started after the miss */
    replicate_marks_repaired(f.r, "n2", start, 1600000001, 0);
    CHECK(marked(&f, "n2")); /* it compared from one second too late */
    replicate_marks_repaired(f.r, "n2", start + 1, 1600000001, miss - 1);
    CHECK(marked(&f, "n2")); /* restored whole, but before the miss */
    replicate_marks_repaired(f.r, "n2", start + 2, 1600000000, 0);
    CHECK(!marked(&f, "n2")); /* compared back to it */
    clock_manual_advance_ms(&manual, (int64_t)slack + 3000);

    refused_by_n2_at(&f, &p[1], 62, &a[1], 1700000000);
    CHECK_EQ_INT(storage_repair_marks(f.s, oldest_one, &stored), 0);
    CHECK_EQ_INT(stored, 1700000000); /* afresh: the lifted backfill no longer counts */
    int64_t oldest = 0;
    CHECK(replicate_past_oldest(f.r, "n2", &oldest, &miss)); /* the latest miss */
    CHECK(oldest == 1700000000 && miss <= (uint64_t)(manual.wall_ns / 1000000));
    start = miss + slack + 1000;
    replicate_marks_repaired(f.r, "n2", start, 1700000001, miss + slack);
    CHECK(marked(&f, "n2"));
    replicate_marks_repaired(f.r, "n2", start + 1, 1700000001, miss + slack + 1);
    CHECK(!marked(&f, "n2")); /* every range streamed whole after the miss */
    f.r->ops.send = send_none;
    for (int i = 0; i < 2; i++)
        prof_free(&p[i]);
    fx_done(&f);
}

/* Hinted handoff off, RF 3, W 2, n2 slow but reachable: every push it lets
 * the grace run out on marks it. The late ack of exactly the write that
 * caused a mark cancels that miss, and the mark goes at once when no other
 * miss of n2 is outstanding; a miss that stays one (the deadline passed,
 * or n2 refused the write) and a mark from elsewhere (a rejoin) stay until
 * a repair pass. */
static void test_late_ack_lifts_its_mark(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    f.r->o.hints_max_bytes = 0;
    replicate_stats_t st;
    prof_t p[10];
    answer_seen_t a[10];
    int np = 0;

    /* 1. one late ack: the mark it caused is lifted at its ack */
    uint64_t q = miss_n2(&f, &p[np], 41, &a[np]);
    np++;
    CHECK_EQ_INT(targets_set, 1);
    CHECK(stored_marked(&f, "n2"));
    ack_of(&f, "n2", q, 0);
    CHECK(!marked(&f, "n2"));
    CHECK(!stored_marked(&f, "n2")); /* the lift is stored: a restart reads it */
    CHECK_EQ_INT(targets_set, 0);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.misses_acked_late, 1);
    CHECK_EQ_INT(st.marks_lifted_late_ack, 1);
    CHECK_EQ_INT(st.marked, 0);

    /* 2. two outstanding misses: the mark stays until both are acknowledged */
    uint64_t q1 = miss_n2(&f, &p[np], 42, &a[np]);
    np++;
    uint64_t q2 = miss_n2(&f, &p[np], 43, &a[np]);
    np++;
    ack_of(&f, "n2", q1, 0);
    CHECK(marked(&f, "n2")); /* the second miss still counts */
    CHECK(stored_marked(&f, "n2"));
    ack_of(&f, "n2", q1, 0); /* a duplicate changes nothing */
    CHECK(marked(&f, "n2"));
    ack_of(&f, "n2", q2, 0);
    CHECK(!marked(&f, "n2"));
    CHECK(!stored_marked(&f, "n2"));
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.misses_acked_late, 3);
    CHECK_EQ_INT(st.marks_lifted_late_ack, 2);

    /* 3. a real miss (never acknowledged by the deadline) pins the mark: a
     * later late ack of another write does not lift it, a pass does */
    miss_n2(&f, &p[np], 44, &a[np]);
    np++;
    clock_manual_advance_ms(&manual, (int64_t)f.r->o.write_timeout_ms);
    replicate_arm_deadline(f.r);
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.inflight_writes == 0));
    settle(&f);
    CHECK(marked(&f, "n2"));
    q = miss_n2(&f, &p[np], 45, &a[np]);
    np++;
    ack_of(&f, "n2", q, 0);
    CHECK(marked(&f, "n2"));
    CHECK(stored_marked(&f, "n2"));
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.misses_acked_late, 4);
    CHECK_EQ_INT(st.marks_lifted_late_ack, 2);
    repaired_n2(&f);
    CHECK(!stored_marked(&f, "n2"));

    /* 4. refused: a miss for good */
    q = miss_n2(&f, &p[np], 46, &a[np]);
    np++;
    ack_of(&f, "n2", q, ERR_LIMIT);
    CHECK(marked(&f, "n2"));
    repaired_n2(&f);

    /* 5. a mark from elsewhere (n2 rejoined) is not lifted by a late ack */
    replicate_marks_rejoined(f.r, "n2");
    q = miss_n2(&f, &p[np], 47, &a[np]);
    np++;
    ack_of(&f, "n2", q, 0);
    CHECK(marked(&f, "n2"));
    repaired_n2(&f);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.marks_lifted_late_ack, 2);

    /* 6. the ack arrives while the mark is being stored: never listed */
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    prof_init(&p[np], 2, 48);
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p[np].w, &rw, NULL, &em), 0);
    a[np] = (answer_seen_t){.s = f.s};
    replicate_start(f.r, rw, on_done_check, &a[np]);
    deliver_ack(&f, "n1");
    clock_manual_advance_ms(&manual, 50);
    replicate_grace_timer_cb(&f.r->grace_timer); /* the mark's job is queued */
    CHECK(rw->preack_busy);
    deliver_ack(&f, "n2");
    run_until(&f, &a[np].out.called);
    CHECK_EQ_INT(a[np].out.rc, 0);
    np++;
    CHECK(!marked(&f, "n2"));
    CHECK(!stored_marked(&f, "n2")); /* its drop was stored, and so is the lift */
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.misses_acked_late, 6);
    CHECK_EQ_INT(st.inflight_writes, 0);

    /* 7. lifted while another drop is stamped and not noted yet (it may be
     * a real miss stamped before this one): stored once that drop is noted */
    atomic_fetch_add(&f.r->drops_unnoted, 1); /* a drop on its way */
    q = miss_n2(&f, &p[np], 49, &a[np]);
    np++;
    ack_of(&f, "n2", q, 0);
    CHECK(!marked(&f, "n2"));
    CHECK(stored_marked(&f, "n2")); /* not yet */
    atomic_fetch_sub(&f.r->drops_unnoted, 1);
    replicate_write_t noted = {0}; /* the note that takes the last one */
    replicate_marks_note(f.r, &noted);
    CHECK(!stored_marked(&f, "n2"));

    f.r->ops.send = send_none;
    for (int i = 0; i < np; i++)
        prof_free(&p[i]);
    fx_done(&f);
}

/* A ring of n0..n(n-1) with the fixture's identities (same seed, same order:
 * the first nodes' tokens are the fixture's). */
static ring_t *ring_of(uint32_t n)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, 42);
    ring_identity_t ids[8];
    ring_node_spec_t specs[8];
    for (uint32_t i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%u", i);
        CHECK_EQ_INT(ring_identity_generate(&ids[i], name, 16, &rng, NULL), 0);
        specs[i] = (ring_node_spec_t){ids[i].node_id, ids[i].tokens, ids[i].ntokens};
    }
    ring_t *r = NULL;
    CHECK_EQ_INT(ring_build(specs, n, &r, NULL), 0);
    for (uint32_t i = 0; i < n; i++)
        ring_identity_free(&ids[i]);
    return r;
}

/* n3 joins (a pending replica of some series, not counted for the quorum):
 * once the natural replicas acknowledged, the push is answered without
 * waiting the grace for n3 and without a hint for it (the join's verifying
 * pass covers what it misses). */
static void test_pending_replica_not_waited_for(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    ring_t *pending = ring_of(4);
    f.view.pending = pending;
    f.r->ops.send = send_record;
    f.r->o.hint_ack_grace_ms = 50;
    prof_t p;
    prof_init(&p, 16, 21);
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    sent.n = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    int joiner = -1;
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        if (strcmp(rw->t[ti].id, "n3") == 0) joiner = (int)ti;
    CHECK(joiner >= 0); /* some series of 16 has n3 among its pending replicas */
    answer_seen_t a = {.s = f.s};
    replicate_start(f.r, rw, on_done_check, &a);
    deliver_ack(&f, "n1");
    deliver_ack(&f, "n2");
    CHECK_EQ_INT(a.out.called, 1); /* at the natural replicas' acks, no grace */
    CHECK_EQ_INT(a.out.rc, 0);
    CHECK_EQ_INT(hints_of(f.s, "n3"), 0);
    replicate_stats_t st;
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.hints_before_answer, 0);
    deliver_ack(&f, "n3");
    RUN_UNTIL(&f, (replicate_stats(f.r, &st), st.inflight_writes == 0));
    settle(&f);
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.inflight_writes, 0);
    f.r->ops.send = send_none;
    f.view.pending = NULL;
    prof_free(&p);
    fx_done(&f);
    ring_free(pending);
}

/* A hint that expires before its target is back is dropped undelivered,
 * and the target is marked first (durably, with the profile's time), so it
 * is not read as complete while it lacks the write: a pass that did not
 * compare back to that time does not lift the mark, one that did does. */
static void test_expired_hint_marks_its_target(void)
{
    fx_t f;
    fx_init(&f, 3, 3, 2, "n0");
    f.r->o.hint_ttl_ms = 1000;
    prof_t p;
    prof_init(&p, 3, 71);
    p.w.time_ns = 1650000000LL * 1000000000LL;
    errmsg_t em = {{0}};
    replicate_write_t *rw = NULL;
    f.reachable[2] = 0;
    CHECK_EQ_INT(replicate_prepare(f.r, &f.view, &p.w, &rw, NULL, &em), 0);
    CHECK_EQ_INT(rw->hints_stored, 1); /* n2 is down: hinted */
    replicate_write_free(rw);
    CHECK_EQ_INT(hints_of(f.s, "n2"), 1);
    CHECK(!marked(&f, "n2"));

    clock_manual_advance_ms(&manual, 1001); /* past its expiry; n2 is back */
    f.reachable[2] = 1;
    uv_timer_t tick = {.data = f.r};
    replicate_replay_tick(&tick);
    settle(&f);
    replicate_stats_t st;
    replicate_stats(f.r, &st);
    CHECK_EQ_INT(st.hints_dropped_expired, 1);
    CHECK_EQ_INT(st.hints_replayed, 0);
    CHECK_EQ_INT(hints_of(f.s, "n2"), 0);
    CHECK(marked(&f, "n2"));
    CHECK(stored_marked(&f, "n2")); /* a restart reads it back */
    uint64_t stored = 0;
    CHECK_EQ_INT(storage_repair_marks(f.s, oldest_one, &stored), 0);
    CHECK_EQ_INT(stored, 1650000000);

    uint64_t now = (uint64_t)(manual.wall_ns / 1000000), slack = f.r->o.write_timeout_ms + 1000;
    replicate_marks_repaired(f.r, "n2", now + slack + 1000, 1650000001, 0);
    CHECK(marked(&f, "n2")); /* it compared from a second too late */
    replicate_marks_repaired(f.r, "n2", now + slack + 1001, 1650000000, 0);
    CHECK(!marked(&f, "n2"));
    prof_free(&p);
    fx_done(&f);
}

/* The bound over all hint targets: 4 x the per-target bound unless set. */
static void test_hints_total_option(void)
{
    cluster_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cluster_inputs_t in;
    memset(&in, 0, sizeof in);
    cfg.hints_max_bytes = 1u << 20;
    replicate_options_t o;
    replicate_options_from_config(&o, &cfg, &in);
    CHECK_EQ_INT(o.hints_max_bytes, 1u << 20);
    CHECK_EQ_INT(o.hints_max_total_bytes, 4u << 20);
    cfg.hints_max_total_bytes = 3u << 20;
    replicate_options_from_config(&o, &cfg, &in);
    CHECK_EQ_INT(o.hints_max_total_bytes, 3u << 20);
}

int main(void)
{
    test_hints_total_option();
    test_quorum_accounting();
    test_grouping();
    test_unreachable();
    test_missed_by_named();
    test_hint_witnessed();
    test_deadline_by_clock();
    test_hint_before_answer();
    test_pending_replica_not_waited_for();
    test_slow_replica_not_waited_for();
    test_notice_unanswered();
    test_notice_skipped_for_older_member();
    test_late_ack_lifts_its_mark();
    test_pass_lifts_only_what_it_compared();
    test_expired_hint_marks_its_target();
    return check_exit();
}
