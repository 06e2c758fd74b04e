/* replicate_pack.c — the pool-thread half of a replicated write: planning
 * every series, grouping series by replica, the quorum accounting, the local
 * replica's write, packing one WriteRequest per remote replica, and hint
 * records (replicate_int.h, docs/replication.md).
 *
 * Series parts (labels and encoded trees) are built once and shared by the
 * requests of every replica that holds them; each request carries only the
 * symbols its own series reference. Everything a request points at lives in
 * the write's arena, so the parsed profile can be freed once this returns.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/calltree.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/symtab.h"
#include "common/grow.h"
#include "common/u64map.h"
#include "node/cluster/replicate_int.h"

/* Blocks of the write's arena (common/arena.h): messages are packed into them. */
#define PACK_ARENA_CHUNK (64 * 1024)

/* ---------------------------------------------------------------- targets */

int replicate_target_of(replicate_write_t *rw, const char *id, const cluster_view_t *v)
{
    for (uint32_t i = 0; i < rw->nt; i++)
        if (strcmp(rw->t[i].id, id) == 0) return (int)i;
    if (rw->nt == rw->tcap) {
        uint32_t cap = rw->tcap ? rw->tcap * 2 : 4;
        rtarget_t *t = realloc(rw->t, cap * sizeof *t);
        if (t == NULL) return -1;
        rw->t = t;
        rw->tcap = cap;
    }
    rtarget_t *t = &rw->t[rw->nt];
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    t->self = v->self_id != NULL && strcmp(v->self_id, id) == 0;
    int k = v->ring != NULL ? ring_node_find(v->ring, id) : -1;
    /* a node only in the pending ring has no flag: try it, hint at the deadline */
    t->reachable = t->self || k < 0 || v->reachable[k];
    return (int)rw->nt++;
}

int replicate_target_add(replicate_write_t *rw, uint32_t ti, uint32_t series, int natural)
{
    rtarget_t *t = &rw->t[ti];
    if (t->nseries == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        uint32_t *s = realloc(t->series, cap * sizeof *s);
        if (s == NULL) return ERR_NOMEM;
        t->series = s;
        uint8_t *n = realloc(t->natural, cap);
        if (n == NULL) return ERR_NOMEM;
        t->natural = n;
        t->cap = cap;
    }
    t->series[t->nseries] = series;
    t->natural[t->nseries] = (uint8_t)(natural != 0);
    t->nseries++;
    return 0;
}

/* ---------------------------------------------------------------- quorum */

int replicate_write_init_series(replicate_write_t *rw, uint32_t nseries)
{
    rw->nseries = nseries;
    size_t n = nseries ? nseries : 1;
    rw->acks = calloc(n, sizeof *rw->acks);
    rw->quorum = calloc(n, sizeof *rw->quorum);
    rw->open = calloc(n, sizeof *rw->open);
    rw->nnatural = calloc(n, sizeof *rw->nnatural);
    return rw->acks && rw->quorum && rw->open && rw->nnatural ? 0 : ERR_NOMEM;
}

void replicate_quorum_begin(replicate_write_t *rw)
{
    memset(rw->open, 0, rw->nseries * sizeof *rw->open);
    memset(rw->nnatural, 0, rw->nseries * sizeof *rw->nnatural);
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        for (uint32_t k = 0; k < rw->t[ti].nseries; k++)
            if (rw->t[ti].natural[k]) {
                rw->open[rw->t[ti].series[k]]++;
                rw->nnatural[rw->t[ti].series[k]]++;
            }
    rw->unmet = 0;
    for (uint32_t i = 0; i < rw->nseries; i++)
        rw->unmet += rw->acks[i] < rw->quorum[i];
}

void replicate_quorum_ack(replicate_write_t *rw, uint32_t ti)
{
    rtarget_t *t = &rw->t[ti];
    if (t->state == TS_ACKED) return;
    int was_pending = t->state == TS_PENDING;
    t->state = TS_ACKED;
    for (uint32_t k = 0; k < t->nseries; k++) {
        if (!t->natural[k]) continue;
        uint32_t s = t->series[k];
        if (was_pending && rw->open[s] > 0) rw->open[s]--;
        if (++rw->acks[s] == rw->quorum[s]) rw->unmet--;
    }
}

void replicate_quorum_fail(replicate_write_t *rw, uint32_t ti, enum target_state state, int status,
                           const char *why)
{
    rtarget_t *t = &rw->t[ti];
    if (t->state != TS_PENDING) return;
    t->state = state;
    t->status = status;
    /* the reason is cut to the slot on purpose: the 503 names every target */
    snprintf(t->why, sizeof t->why, "%.*s", (int)sizeof t->why - 1,
             why ? why : err_message(status));
    for (uint32_t k = 0; k < t->nseries; k++)
        if (t->natural[k] && rw->open[t->series[k]] > 0) rw->open[t->series[k]]--;
}

int replicate_quorum_met(const replicate_write_t *rw)
{
    return rw->unmet == 0;
}

int replicate_quorum_lost(const replicate_write_t *rw)
{
    for (uint32_t i = 0; i < rw->nseries; i++)
        if (rw->acks[i] + rw->open[i] < rw->quorum[i]) return 1;
    return 0;
}

int replicate_quorum_status(const replicate_write_t *rw)
{
    int limit = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (t->state == TS_ACKED) continue;
        if (t->state != TS_REFUSED || t->status != ERR_LIMIT) return ERR_UNAVAILABLE;
        limit = 1;
    }
    return limit ? ERR_LIMIT : ERR_UNAVAILABLE;
}

void replicate_quorum_reason(const replicate_write_t *rw, errmsg_t *em)
{
    uint32_t worst = 0, failing = 0;
    for (uint32_t i = 0; i < rw->nseries; i++) {
        if (rw->acks[i] >= rw->quorum[i]) continue;
        if (failing++ == 0 || rw->acks[i] < rw->acks[worst]) worst = i;
    }
    char who[ERRMSG_MAX / 2] = "";
    size_t off = 0;
    for (uint32_t ti = 0; ti < rw->nt && off < sizeof who; ti++) {
        const rtarget_t *t = &rw->t[ti];
        if (t->state == TS_ACKED) continue;
        const char *why = t->state == TS_PENDING ? "no answer yet" : t->why;
        int n = snprintf(who + off, sizeof who - off, "%s%s (%s)", off ? ", " : "", t->id, why);
        if (n < 0) break;
        off += (size_t)n;
    }
    errmsg_set(em, ERR_UNAVAILABLE,
               "write quorum not reached for %u of %u series: %u of %u replicas acknowledged, "
               "%u needed; not acknowledged: %s",
               failing, rw->nseries, rw->acks[worst], rw->nnatural[worst], rw->quorum[worst],
               who[0] ? who : "none");
}

/* ---------------------------------------------------------------- planning */

/* Plans every series; refuses (nothing written) when a series has fewer
 * reachable natural replicas than its quorum. */
static int plan(replicate_write_t *rw, const cluster_view_t *v, const storage_profile_write_t *w,
                errmsg_t *em)
{
    if (v->ring == NULL)
        return errmsg_set(em, ERR_UNAVAILABLE, "no active node in the cluster yet");
    int rc = replicate_write_init_series(rw, (uint32_t)w->nseries);
    if (rc != 0) return errmsg_set(em, rc, "out of memory");
    for (size_t i = 0; i < w->nseries; i++) {
        ring_write_plan_t p;
        rc = ring_plan_write(v->ring, v->pending, w->series[i].token, v->rf, v->quorum, &p, em);
        if (rc != 0) return rc;
        rw->quorum[i] = p.quorum;
        uint32_t up = 0;
        for (uint32_t k = 0; k < p.n; k++) {
            int ti = replicate_target_of(rw, p.nodes[k], v);
            if (ti < 0 || replicate_target_add(rw, (uint32_t)ti, (uint32_t)i, k < p.nnatural) != 0)
                return errmsg_set(em, ERR_NOMEM, "out of memory");
            up += k < p.nnatural && rw->t[ti].reachable;
        }
        if (up < p.quorum)
            return errmsg_set(em, ERR_UNAVAILABLE,
                              "not enough replicas reachable: %u of the %u replicas of a series "
                              "are up, the write quorum is %u",
                              up, p.nnatural, p.quorum);
    }
    replicate_quorum_begin(rw);
    return 0;
}

/* The local replica writes its series straight into storage. Its
 * refusal of stacks given by id of an earlier node generation (a push of
 * a node alone, parsed with the stack cache) is returned, nothing written,
 * for the caller to parse the push again; any other is the replica's. */
static int write_local(replicate_write_t *rw, uint32_t ti, storage_t *s,
                       const storage_profile_write_t *w, errmsg_t *out)
{
    rtarget_t *t = &rw->t[ti];
    storage_series_write_t *sw = calloc(t->nseries, sizeof *sw);
    if (sw == NULL) return ERR_NOMEM;
    for (uint32_t k = 0; k < t->nseries; k++)
        sw[k] = w->series[t->series[k]];
    storage_profile_write_t lw = *w;
    lw.series = sw;
    lw.nseries = t->nseries;
    errmsg_t em = {{0}};
    int rc = storage_write_profile(s, &lw, &rw->local_written, &em);
    free(sw);
    if (rc == ERR_CONFLICT) {
        *out = em;
        return rc;
    }
    if (rc == 0)
        replicate_quorum_ack(rw, ti);
    else
        replicate_quorum_fail(rw, ti, TS_REFUSED, rc, em.text);
    return 0;
}

/* ---------------------------------------------------------------- packing */

typedef struct packer {
    replicate_write_t *rw;
    const storage_profile_write_t *w;
    Flamedb__Cluster__SeriesPart **parts; /* per series, built when a remote holds it */
    /* symbol id -> index of its Symbol in syms; stamp[i] dedupes per target */
    u64map_t ids;
    Flamedb__Cluster__Symbol **syms;
    uint32_t *stamp;
    size_t n, syms_cap, stamp_cap;
    /* the current target's symbol list */
    Flamedb__Cluster__Symbol **list;
    size_t nlist, listcap;
    uint32_t cur;
    int err;
    buf_t tmp;
} packer_t;

static ProtobufCBinaryData bytes_of(arena_t *a, const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, arena_memdup(a, p, n)};
    return b;
}

static int encode_tree(packer_t *pk, const calltree_t *t, ProtobufCBinaryData *out)
{
    buf_reset(&pk->tmp);
    int rc = calltree_encode(t, &pk->tmp);
    if (rc != 0) return rc;
    *out = bytes_of(&pk->rw->arena, pk->tmp.data, pk->tmp.len);
    return out->data != NULL ? 0 : ERR_NOMEM;
}

static int build_part(packer_t *pk, size_t i)
{
    const storage_series_write_t *s = &pk->w->series[i];
    arena_t *a = &pk->rw->arena;
    Flamedb__Cluster__SeriesPart *p = arena_zalloc(a, sizeof *p);
    if (p == NULL) return ERR_NOMEM;
    flamedb__cluster__series_part__init(p);
    p->token = s->token;
    p->series_id = s->series_id;
    p->piece = s->piece;
    buf_reset(&pk->tmp);
    int rc = labels_encode(s->labels, &pk->tmp);
    if (rc != 0) return rc;
    p->labels = bytes_of(a, pk->tmp.data, pk->tmp.len);
    if ((rc = encode_tree(pk, s->tree, &p->calltree)) != 0) return rc;
    if (s->nspans > 0) {
        p->spans = arena_zalloc(a, s->nspans * sizeof *p->spans);
        Flamedb__Cluster__Span *sv = arena_zalloc(a, s->nspans * sizeof *sv);
        if (p->spans == NULL || sv == NULL) return ERR_NOMEM;
        for (size_t k = 0; k < s->nspans; k++) {
            flamedb__cluster__span__init(&sv[k]);
            sv[k].kind = s->spans[k].kind;
            sv[k].id = s->spans[k].id;
            if (s->spans[k].tree == NULL) /* held encoded (ingest's): as it is */
                sv[k].calltree = bytes_of(a, s->spans[k].enc, s->spans[k].enc_len);
            else if ((rc = encode_tree(pk, s->spans[k].tree, &sv[k].calltree)) != 0)
                return rc;
            if (sv[k].calltree.data == NULL) return ERR_NOMEM;
            p->spans[k] = &sv[k];
        }
        p->n_spans = s->nspans;
    }
    pk->parts[i] = p;
    return 0;
}

/* Index of symbol id in pk->syms, creating its Symbol message from the
 * profile's table on first use. */
static int symbol_index(packer_t *pk, uint64_t id, size_t *idx)
{
    uint32_t i;
    int rc = u64map_get_or_put(&pk->ids, id, (uint32_t)pk->n, &i);
    if (rc < 0) return rc;
    *idx = i;
    if (rc == 0) return 0; /* known */
    const char *name, *file;
    if (pk->w->symbols == NULL || !symtab_get(pk->w->symbols, id, &name, &file))
        return ERR_CORRUPT; /* a tree references a symbol the profile lacks */
    Flamedb__Cluster__Symbol *s = arena_zalloc(&pk->rw->arena, sizeof *s);
    if (s == NULL || GROW(pk->syms, pk->syms_cap, pk->n + 1, GROW_UNLIMITED) != 0 ||
        GROW(pk->stamp, pk->stamp_cap, pk->n + 1, GROW_UNLIMITED) != 0)
        return ERR_NOMEM;
    flamedb__cluster__symbol__init(s);
    s->id = id;
    s->name = bytes_of(&pk->rw->arena, name, strlen(name));
    s->file = bytes_of(&pk->rw->arena, file ? file : "", file ? strlen(file) : 0);
    pk->syms[pk->n] = s;
    pk->stamp[pk->n] = 0;
    pk->n++;
    return 0;
}

static int add_symbol(void *ctx, uint64_t id)
{
    packer_t *pk = ctx;
    size_t j;
    int rc = symbol_index(pk, id, &j);
    if (rc != 0) return pk->err = rc;
    if (pk->stamp[j] == pk->cur) return 0;
    pk->stamp[j] = pk->cur;
    if (GROW(pk->list, pk->listcap, pk->nlist + 1, GROW_UNLIMITED) != 0) return pk->err = ERR_NOMEM;
    pk->list[pk->nlist++] = pk->syms[j];
    return 0;
}

/* The symbols of a span tree: of its dictionary when it is held encoded. */
static int span_symbols(packer_t *pk, const storage_span_tree_t *sp)
{
    if (sp->tree != NULL) return calltree_for_each_symbol(sp->tree, add_symbol, pk);
    const uint8_t *syms;
    size_t nsyms, nnodes;
    int rc = calltree_encoded_header(sp->enc, sp->enc_len, &syms, &nsyms, &nnodes);
    for (size_t i = 0; rc == 0 && i < nsyms; i++)
        rc = add_symbol(pk, calltree_encoded_sym(syms, i));
    return rc;
}

static int collect_symbols(packer_t *pk, const storage_series_write_t *s)
{
    int rc = calltree_for_each_symbol(s->tree, add_symbol, pk);
    for (size_t k = 0; rc == 0 && k < s->nspans; k++)
        rc = span_symbols(pk, &s->spans[k]);
    return rc != 0 ? (pk->err ? pk->err : rc) : 0;
}

/* Builds target ti's WriteRequest: its series parts and their symbols. */
static int pack_target(packer_t *pk, uint32_t ti, const cluster_view_t *v)
{
    replicate_write_t *rw = pk->rw;
    rtarget_t *t = &rw->t[ti];
    Flamedb__Cluster__WriteRequest *q = &t->req;
    flamedb__cluster__write_request__init(q);
    q->series = arena_zalloc(&rw->arena, t->nseries * sizeof *q->series);
    if (q->series == NULL) return ERR_NOMEM;
    pk->cur = ti + 1;
    pk->nlist = 0;
    for (uint32_t k = 0; k < t->nseries; k++) {
        uint32_t i = t->series[k];
        int rc = pk->parts[i] == NULL ? build_part(pk, i) : 0;
        if (rc == 0) rc = collect_symbols(pk, &pk->w->series[i]);
        if (rc != 0) return rc;
        q->series[k] = pk->parts[i];
    }
    q->n_series = t->nseries;
    q->symbols = arena_memdup(&rw->arena, pk->list, pk->nlist * sizeof *pk->list);
    if (q->symbols == NULL) return ERR_NOMEM;
    q->n_symbols = pk->nlist;
    q->protocol_version = CLUSTER_PROTOCOL_VERSION;
    q->tenant = rw->tenant;
    q->deadline_unix_ms = rw->deadline_ms;
    q->profile_id = (ProtobufCBinaryData){16, rw->profile_id};
    q->time_ns = rw->time_ns;
    q->request_id = replicate_request_id(rw->r);
    q->ring_version = v->version;
    return 0;
}

static void packer_free(packer_t *pk)
{
    free(pk->parts);
    u64map_free(&pk->ids);
    free(pk->syms);
    free(pk->stamp);
    free(pk->list);
    buf_free(&pk->tmp);
}

/* Envelope fields around a body: version, type, names, deadline, tags. */
#define ENVELOPE_OVERHEAD (64 + 2 * RING_NODE_ID_MAX + RING_ADDR_MAX)

/* 1 when target t is a natural replica of one of its series. */
static int natural_somewhere(const rtarget_t *t)
{
    for (uint32_t k = 0; k < t->nseries; k++)
        if (t->natural[k]) return 1;
    return 0;
}

/* A natural replica the view shows down misses this write: with hinted
 * handoff off it gets a mark, not a hint. The request of every reachable
 * natural replica names it (missed_by), and each stores a mark of its own
 * before it acknowledges: the miss is then known on the quorum, not only
 * here, should this node die before its own mark was gossiped
 * (replicate_replica.c). With hinted handoff on it gets a hint, and each
 * such replica holds it unread until this node's word on the hint arrives
 * (replicate_witness.c; the requests carry this node's beat, set on the
 * loop once the hint is listed). A pending replica (joining, or taking over a
 * leaving node's ranges) counts for no quorum and is not asked: its
 * failed pushes would mark an old owner, maybe the only whole source of
 * its range, for a full repair (docs/cluster.md, "Read correctness and
 * older writes"). */
static int name_missed(replicate_write_t *rw)
{
    if (rw->r->o.hints_max_bytes != 0 && rw->r->ops.member_beat == NULL) return 0;
    char **ids = NULL;
    size_t n = 0;
    for (uint32_t ti = 0; ti < rw->nt && n < RING_MAX_RF; ti++) {
        rtarget_t *t = &rw->t[ti];
        if (t->self || t->reachable || !natural_somewhere(t)) continue;
        if (ids == NULL && (ids = arena_zalloc(&rw->arena, RING_MAX_RF * sizeof *ids)) == NULL)
            return ERR_NOMEM;
        ids[n++] = t->id;
    }
    for (uint32_t ti = 0; n > 0 && ti < rw->nt; ti++) {
        rtarget_t *t = &rw->t[ti];
        if (t->self || !t->reachable || !natural_somewhere(t)) continue;
        t->req.missed_by = ids;
        t->req.n_missed_by = n;
    }
    return 0;
}

static int pack_remotes(replicate_write_t *rw, const cluster_view_t *v,
                        const storage_profile_write_t *w, errmsg_t *em)
{
    packer_t pk = {.rw = rw, .w = w};
    buf_init(&pk.tmp, BUF_UNLIMITED);
    pk.parts = calloc(w->nseries ? w->nseries : 1, sizeof *pk.parts);
    int rc = pk.parts != NULL ? 0 : ERR_NOMEM;
    for (uint32_t ti = 0; rc == 0 && ti < rw->nt; ti++) {
        if (rw->t[ti].self) continue;
        rc = pack_target(&pk, ti, v);
        size_t size =
            rc == 0 ? flamedb__cluster__write_request__get_packed_size(&rw->t[ti].req) : 0;
        if (rc == 0 && size + ENVELOPE_OVERHEAD > rw->r->o.max_message_bytes)
            rc = errmsg_set(em, ERR_TOO_LARGE,
                            "the profile's share for replica %s is %zu bytes, over the cluster "
                            "message limit of %zu (max-message-bytes)",
                            rw->t[ti].id, size, rw->r->o.max_message_bytes);
        else if (rc != 0)
            errmsg_set(em, rc, "cannot pack the write for replica %s", rw->t[ti].id);
    }
    packer_free(&pk);
    if (rc == 0 && name_missed(rw) != 0) rc = errmsg_set(em, ERR_NOMEM, "out of memory");
    return rc;
}

/* ---------------------------------------------------------------- hints */

#define HINT_ZSTD_LEVEL 1

/* A hint not kept: the target stays short until anti-entropy repairs it,
 * so it is marked (durably here; the loop then stops reading from it). */
static void mark_dropped(replicate_write_t *rw, rtarget_t *t)
{
    rw->hints_dropped++;
    t->dropped = 1;
    /* a failed push promised nothing, so a pass alone may lift its miss */
    int64_t time_s = rw->time_ns > 0 ? (int64_t)(rw->time_ns / 1000000000LL) : 0;
    if (rw->failed) time_s = -1;
    replicate_mark_stamp(rw->r, t->id, time_s, &t->dropped_ms); /* a failure is logged */
}

int replicate_store_hint(replicate_write_t *rw, uint32_t ti, errmsg_t *em)
{
    replicate_t *r = rw->r;
    rtarget_t *t = &rw->t[ti];
    if (r->o.hints_max_bytes == 0) { /* hinted handoff off: anti-entropy repairs the target */
        mark_dropped(rw, t);
        return errmsg_set(em, ERR_LIMIT, "hint for %s not kept: hints-max-bytes is 0", t->id);
    }
    t->req.hint_replay = 1;
    size_t n = flamedb__cluster__write_request__get_packed_size(&t->req);
    uint8_t *req = malloc(n ? n : 1);
    int rc = req != NULL ? 0 : ERR_NOMEM;
    uint8_t *rec = NULL;
    /* hints wait for hours: compress the request (fast level; the call trees'
     * symbol ids do not shrink, their names and structure do) */
    size_t zcap = ZSTD_compressBound(n);
    uint8_t *z = rc == 0 ? malloc(zcap) : NULL;
    size_t zn = 0;
    if (rc == 0) flamedb__cluster__write_request__pack(&t->req, req);
    if (z != NULL) {
        zn = ZSTD_compress(z, zcap, req, n, HINT_ZSTD_LEVEL);
        if (ZSTD_isError(zn)) zn = 0; /* keep it uncompressed */
    }
    if (rc == 0) {
        Flamedb__Cluster__HintRecord h = FLAMEDB__CLUSTER__HINT_RECORD__INIT;
        h.protocol_version = CLUSTER_PROTOCOL_VERSION;
        h.tenant = rw->tenant;
        h.target_node_id = t->id;
        h.created_unix_ms = replicate_now_ms(r);
        h.expires_unix_ms = h.created_unix_ms + r->o.hint_ttl_ms;
        /* stored before the answer: until its deadline the write itself may
         * still deliver it, so a replay then would only double the work */
        if (t->prehinted) h.replay_after_unix_ms = rw->deadline_ms;
        if (zn > 0 && zn < n) {
            h.write_request_zstd = (ProtobufCBinaryData){zn, z};
            h.write_request_len = n;
        } else {
            h.write_request = (ProtobufCBinaryData){n, req};
        }
        size_t hn = flamedb__cluster__hint_record__get_packed_size(&h);
        rec = malloc(hn ? hn : 1);
        rc = rec != NULL ? 0 : ERR_NOMEM;
        if (rc == 0) {
            flamedb__cluster__hint_record__pack(&h, rec);
            rc = storage_hint_put(r->storage, t->id, rec, hn, r->o.hints_max_bytes,
                                  r->o.hints_max_total_bytes, &t->hint_seq, em);
        }
    }
    t->req.hint_replay = 0;
    free(req);
    free(z);
    free(rec);
    if (rc == 0)
        rw->hints_stored++;
    else {
        mark_dropped(rw, t); /* over the bound or not storable: no hint will deliver it */
        log_warn("replicate", "hint for %s dropped: %s", t->id, errmsg_text(em, rc));
    }
    return rc;
}

/* ---------------------------------------------------------------- prepare */

static int prepare(replicate_t *r, replicate_write_t *rw, const cluster_view_t *v,
                   const storage_profile_write_t *w, errmsg_t *em)
{
    int rc = plan(rw, v, w, em);
    if (rc != 0) return rc;
    int remote = 0;
    for (uint32_t ti = 0; ti < rw->nt; ti++)
        remote |= !rw->t[ti].self;
    if (remote && (rc = pack_remotes(rw, v, w, em)) != 0) return rc;
    for (uint32_t ti = 0; ti < rw->nt; ti++) {
        if (rw->t[ti].self) {
            if ((rc = write_local(rw, ti, r->storage, w, em)) == ERR_CONFLICT) return rc;
            if (rc != 0) return errmsg_set(em, rc, "out of memory");
        } else if (!rw->t[ti].reachable) {
            errmsg_t hem = {{0}};
            replicate_store_hint(rw, ti, &hem);
            replicate_quorum_fail(rw, ti, TS_HINTED, ERR_UNAVAILABLE, "down, hinted");
        }
    }
    rw->bytes = rw->arena.total;
    return 0;
}

int replicate_prepare(replicate_t *r, const cluster_view_t *view, const storage_profile_write_t *w,
                      replicate_write_t **out, size_t *local_written, errmsg_t *em)
{
    *out = NULL;
    if (local_written) *local_written = 0;
    if (w->nseries == 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "the profile has no series");
    if (strlen(w->tenant) > RING_TENANT_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "tenant too long");
    replicate_write_t *rw = calloc(1, sizeof *rw);
    if (rw == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    rw->r = r;
    arena_init(&rw->arena, PACK_ARENA_CHUNK, ARENA_UNLIMITED); /* bounded by max-message-bytes */
    rw->view = view;
    r->ops.view_retain(view);
    snprintf(rw->tenant, sizeof rw->tenant, "%s", w->tenant);
    memcpy(rw->profile_id, w->profile_id, 16);
    rw->time_ns = w->time_ns;
    rw->deadline_ms = replicate_now_ms(r) + r->o.write_timeout_ms;
    int rc = prepare(r, rw, view, w, em);
    if (rc != 0) {
        replicate_write_free(rw);
        return rc;
    }
    if (local_written) *local_written = rw->local_written;
    *out = rw;
    return 0;
}

size_t replicate_write_local_series(const replicate_write_t *rw)
{
    for (uint32_t i = 0; i < rw->nt; i++)
        if (rw->t[i].self) return rw->t[i].nseries;
    return 0;
}

void replicate_write_free(replicate_write_t *rw)
{
    if (rw == NULL) return;
    for (uint32_t i = 0; i < rw->nt; i++) {
        if (rw->t[i].dropped) atomic_fetch_sub(&rw->r->drops_unnoted, 1); /* never noted */
        free(rw->t[i].series);
        free(rw->t[i].natural);
    }
    free(rw->t);
    free(rw->acks);
    free(rw->quorum);
    free(rw->open);
    free(rw->nnatural);
    arena_free(&rw->arena);
    if (rw->view != NULL) rw->r->ops.view_release(rw->view);
    free(rw);
}
