/* repair_stream.c — streaming whole windows of the ranges a node gains
 * (repair_int.h; docs/cluster.md, "Streaming whole windows").
 *
 * The seen-index comparison of a pass moves profiles one by one and only
 * those its span covers and whose tree was kept. A node that gains a range
 * (it joins, or takes over from a leaving node) also pulls every stored
 * window of it: the source answers STREAM with its windows in key order, each
 * as its residual (storage_stream_scan: the window minus the kept trees of
 * its profiles) with the profiles it subtracted and those it could not. The
 * receiver fetches the subtracted profiles it does not hold (FETCH, stored
 * through storage_write_profile: one already stored is skipped) and only
 * then stores the residual with the window's marker (storage_stream_store),
 * so the window is exactly the source's and a resumed stream adds nothing
 * twice. Then its span trees (SPANS, in token order through the source's
 * span_index), each merged as a streamed operand that unites it with the
 * receiver's own by profile id (storage_stream_span_put).
 *
 * A stream comes from one current replica of its range at a time
 * (repair_stream_replicas, for a join's ranges and a regain's pieces
 * alike); one that stops answering is left for the rest of the pass and
 * the stream goes on from its cursor at the next (docs/cluster.md,
 * "Sources of a stream").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

/* A STREAM answer holds about this share of --max-message-bytes of windows
 * (one window more at most), and at most this many symbols. */
#define STREAM_ANSWER_SHARE 4
#define STREAM_MAX_SYMBOLS (1u << 19)

/* ---------------------------------------------------------------- serving */

typedef struct serve {
    storage_t *s;
    const repair_options_t *o;
    arena_t *arena;
    Flamedb__Cluster__RepairAnswer *a;
    size_t bytes, cap;
    char tenant[RING_TENANT_MAX + 1]; /* the batch's tenant, to compare */
    char *tenant_out;                 /* the same in the arena: the answer outlives this frame */
    symtab_t *symbols;
    uint64_t *syms;
    size_t nsyms, syms_cap;
    buf_t b;
    uint32_t want_part; /* 1 + the part wanted of a window in parts; 0: whole windows only */
} serve_t;

static int add_sym(void *ctx, uint64_t id)
{
    serve_t *x = ctx;
    int rc = GROW(x->syms, x->syms_cap, x->nsyms + 1, GROW_UNLIMITED);
    if (rc == 0) x->syms[x->nsyms++] = id;
    return rc;
}

/* The batch's tenant: kept here for comparing, copied into the arena for the
 * answer, which is packed on the loop after this job's frame is gone. */
static int set_tenant(serve_t *x, const char *tenant)
{
    if (x->tenant_out != NULL && strcmp(x->tenant, tenant) == 0) return 0;
    snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
    x->tenant_out = arena_memdup(x->arena, x->tenant, strlen(x->tenant) + 1);
    return x->tenant_out != NULL ? 0 : ERR_NOMEM;
}

static ProtobufCBinaryData bytes_of(arena_t *a, const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, arena_memdup(a, p, n ? n : 1)};
    return b;
}

static Flamedb__Cluster__SeenEntry **entries(serve_t *x, const storage_stream_window_t *w,
                                             const storage_stream_profile_t *p, size_t n)
{
    Flamedb__Cluster__SeenEntry **v = arena_zalloc(x->arena, (n ? n : 1) * sizeof *v);
    Flamedb__Cluster__SeenEntry *e = arena_zalloc(x->arena, (n ? n : 1) * sizeof *e);
    if (v == NULL || e == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        flamedb__cluster__seen_entry__init(&e[i]);
        e[i].tenant = x->tenant_out;
        e[i].token = w->token;
        e[i].series_id = w->series_id;
        e[i].profile_id = bytes_of(x->arena, p[i].profile_id, 16);
        e[i].time_ns = p[i].time_ns;
        if (e[i].profile_id.data == NULL) return NULL;
        v[i] = &e[i];
    }
    return v;
}

/* The labels and residual of w into m; ERR_NOT_FOUND when the series has
 * no labels (collected meanwhile). */
static int window_body(serve_t *x, const storage_stream_window_t *w, const calltree_t *tree,
                       Flamedb__Cluster__StreamWindow *m)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(x->s, w->tenant, w->token, w->series_id, &lb);
    buf_reset(&x->b);
    if (rc == 0) rc = labels_encode(lb, &x->b);
    labels_free(lb);
    if (rc == 0) m->labels = bytes_of(x->arena, x->b.data, x->b.len);
    buf_reset(&x->b);
    if (rc == 0) rc = calltree_encode(tree, &x->b);
    if (rc == 0) m->calltree = bytes_of(x->arena, x->b.data, x->b.len);
    if (rc == 0) rc = calltree_for_each_symbol(tree, add_sym, x);
    if (rc == 0 && (m->labels.data == NULL || m->calltree.data == NULL)) rc = ERR_NOMEM;
    return rc;
}

/* Whether w's residual fits a part's budget by its node and symbol counts
 * alone (names of at most 256 bytes each). */
static int fits_surely(const serve_t *x, const calltree_t *t)
{
    return calltree_node_count(t) * PART_NODE_BYTES +
               calltree_sym_count(t) * (PART_SYMBOL_BYTES + 256) <=
           x->cap;
}

/* The plan of w's residual in parts of x->cap bytes (p->nparts 1: whole). */
static int plan_parts(serve_t *x, const storage_stream_window_t *w, repair_parts_t *p)
{
    const calltree_t *t = w->residual;
    if (fits_surely(x, t)) {
        p->nparts = 1;
        return 0;
    }
    symtab_t *names = symtab_new();
    size_t n = calltree_sym_count(t);
    int rc = names != NULL ? 0 : ERR_NOMEM;
    if (rc == 0 && n > 1)
        rc = storage_load_symbols(x->s, w->tenant, calltree_syms(t) + 1, n - 1, names);
    if (rc == 0) rc = repair_parts_plan(t, names, x->cap, p);
    symtab_free(names);
    return rc;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    return (h ^ hash_bytes64(p, n)) * 0x100000001b3ull;
}

/* What identifies w whole: its key, its residual's encoding, total, kept and
 * untreed profiles (a later request for another part must find the same). */
static int window_digest(const storage_stream_window_t *w, uint64_t *digest)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = calltree_encode(w->residual, &b);
    uint64_t h = rc == 0 ? hash_bytes64(b.data, b.len) : 0;
    buf_free(&b);
    h = mix(mix(h, w->key, w->key_len), &w->total, sizeof w->total);
    for (size_t i = 0; i < w->nkept; i++)
        h = mix(mix(h, w->kept[i].profile_id, 16), &w->kept[i].time_ns, 8);
    for (size_t i = 0; i < w->nuntreed; i++)
        h = mix(mix(h, w->untreed[i].profile_id, 16), &w->untreed[i].total, 8);
    *digest = h;
    return rc;
}

/* The tree m carries: w's residual, or the part of it the request wants
 * (*part, freed by the caller) with m's part fields. */
static int window_tree(serve_t *x, const storage_stream_window_t *w, const repair_parts_t *p,
                       Flamedb__Cluster__StreamWindow *m, calltree_t **part)
{
    if (p->nparts <= 1) return 0;
    uint32_t k = x->want_part - 1 < p->nparts ? x->want_part - 1 : p->nparts - 1;
    *part = calltree_new(0);
    int rc = *part != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) rc = repair_parts_build(w->residual, p, k, *part);
    if (rc == 0) rc = window_digest(w, &m->digest);
    m->part = k;
    m->parts = p->nparts;
    return rc;
}

static int add_window(void *ctx, const storage_stream_window_t *w)
{
    serve_t *x = ctx;
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (a->n_windows > 0 &&
        (strcmp(x->tenant, w->tenant) != 0 || x->bytes >= x->cap ||
         a->n_windows == CLUSTER_REPAIR_MAX_ENTRIES || x->nsyms >= STREAM_MAX_SYMBOLS)) {
        a->more = 1;
        return 1; /* the rest in the next page */
    }
    if (set_tenant(x, w->tenant) != 0) return ERR_NOMEM;
    repair_parts_t p = {0};
    int rc = x->want_part > 0 ? plan_parts(x, w, &p) : 0;
    if (rc != 0) return rc;
    if (p.nparts > 1 && a->n_windows > 0) { /* in parts: first in the next page */
        repair_parts_free(&p);
        a->more = 1;
        return 1;
    }
    Flamedb__Cluster__StreamWindow *m = arena_zalloc(x->arena, sizeof *m);
    if (m == NULL) rc = ERR_NOMEM;
    if (rc == 0) flamedb__cluster__stream_window__init(m);
    calltree_t *part = NULL;
    if (rc == 0) rc = window_tree(x, w, &p, m, &part);
    uint32_t nparts = p.nparts;
    repair_parts_free(&p);
    if (rc == 0) rc = window_body(x, w, part != NULL ? part : w->residual, m);
    calltree_free(part);
    if (rc == ERR_NOT_FOUND) {
        log_warn("repair", "stream: series %016llx has a window but no labels: not sent",
                 (unsigned long long)w->series_id);
        return 0;
    }
    if (rc != 0) return rc;
    m->tenant = x->tenant_out;
    m->token = w->token;
    m->series_id = w->series_id;
    m->res = (uint32_t)w->res;
    m->window_s = w->window_s;
    m->total = w->total;
    m->key = bytes_of(x->arena, w->key, w->key_len);
    m->kept = entries(x, w, w->kept, w->nkept);
    m->untreed = entries(x, w, w->untreed, w->nuntreed);
    m->untreed_totals = arena_zalloc(x->arena, (w->nuntreed ? w->nuntreed : 1) * sizeof(int64_t));
    if (m->key.data == NULL || m->kept == NULL || m->untreed == NULL || m->untreed_totals == NULL)
        return ERR_NOMEM;
    m->n_kept = w->nkept;
    m->n_untreed = m->n_untreed_totals = w->nuntreed;
    for (size_t i = 0; i < w->nuntreed; i++)
        m->untreed_totals[i] = w->untreed[i].total;
    x->bytes += protobuf_c_message_get_packed_size(&m->base);
    a->windows[a->n_windows++] = m;
    if (nparts <= 1) return 0;
    a->more = 1; /* a part answers alone; the next part (or window) in the next page */
    return 1;
}

/* The symbols the answer's residuals reference, loaded into a->symbols. */
static int put_symbols(serve_t *x)
{
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (x->nsyms == 0) return 0; /* no window (no tenant either) */
    int rc = storage_load_symbols(x->s, x->tenant, x->syms, x->nsyms, x->symbols);
    size_t n = rc == 0 ? symtab_count(x->symbols) : 0;
    if (n == 0) return rc;
    a->symbols = arena_zalloc(x->arena, n * sizeof *a->symbols);
    Flamedb__Cluster__Symbol *sv = arena_zalloc(x->arena, n * sizeof *sv);
    if (a->symbols == NULL || sv == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *name, *file;
        uint64_t id = symtab_id_at(x->symbols, i);
        symtab_get(x->symbols, id, &name, &file);
        flamedb__cluster__symbol__init(&sv[i]);
        sv[i].id = id;
        sv[i].name = bytes_of(x->arena, name, strlen(name));
        sv[i].file = bytes_of(x->arena, file ? file : "", file ? strlen(file) : 0);
        if (sv[i].name.data == NULL || sv[i].file.data == NULL) return ERR_NOMEM;
        a->symbols[i] = &sv[i];
    }
    a->n_symbols = n;
    return 0;
}

int repair_serve_stream(storage_t *s, const repair_options_t *o,
                        const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                        Flamedb__Cluster__RepairAnswer *a)
{
    serve_t x = {.s = s, .o = o, .arena = arena, .a = a, .want_part = q->window_part};
    x.cap = o->max_message_bytes / STREAM_ANSWER_SHARE;
    x.symbols = symtab_new();
    buf_init(&x.b, o->max_message_bytes);
    a->windows = arena_zalloc(arena, CLUSTER_REPAIR_MAX_ENTRIES * sizeof *a->windows);
    int rc = x.symbols != NULL && a->windows != NULL ? 0 : ERR_NOMEM;
    if (rc == 0)
        rc = storage_stream_scan(s, q->lo, q->hi, q->after_key.data, q->after_key.len, add_window,
                                 &x);
    if (rc == 1) rc = 0; /* stopped at the page's end */
    if (rc == 0) rc = put_symbols(&x);
    symtab_free(x.symbols);
    free(x.syms);
    buf_free(&x.b);
    return rc;
}

static int add_span(void *ctx, const uint8_t *key, size_t klen, const char *tenant,
                    const uint8_t *v, size_t vn)
{
    serve_t *x = ctx;
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (a->n_spans > 0 &&
        (strcmp(x->tenant, tenant) != 0 || x->bytes >= x->cap ||
         a->n_spans == CLUSTER_REPAIR_MAX_ENTRIES || x->nsyms >= STREAM_MAX_SYMBOLS)) {
        a->more = 1;
        return 1;
    }
    calltree_t *t = calltree_new(0);
    if (t == NULL) return ERR_NOMEM;
    int rc = storage_span_value_tree(v, vn, t);
    if (rc == 0) rc = calltree_for_each_symbol(t, add_sym, x);
    calltree_free(t);
    if (rc == ERR_NOMEM) return rc;
    if (rc != 0) { /* a tree that does not decode: reads skip it too */
        log_warn("repair", "stream: a stored span tree does not decode: not sent");
        return 0;
    }
    if (set_tenant(x, tenant) != 0) return ERR_NOMEM;
    Flamedb__Cluster__StreamSpan *m = arena_zalloc(x->arena, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    flamedb__cluster__stream_span__init(m);
    m->tenant = x->tenant_out;
    m->key = bytes_of(x->arena, key, klen);
    m->value = bytes_of(x->arena, v, vn);
    if (m->key.data == NULL || m->value.data == NULL) return ERR_NOMEM;
    x->bytes += klen + vn + 16;
    a->spans[a->n_spans++] = m;
    return 0;
}

int repair_serve_spans(storage_t *s, const repair_options_t *o,
                       const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                       Flamedb__Cluster__RepairAnswer *a)
{
    serve_t x = {.s = s, .o = o, .arena = arena, .a = a};
    x.cap = o->max_message_bytes / STREAM_ANSWER_SHARE;
    x.symbols = symtab_new();
    a->spans = arena_zalloc(arena, CLUSTER_REPAIR_MAX_ENTRIES * sizeof *a->spans);
    int rc = x.symbols != NULL && a->spans != NULL ? 0 : ERR_NOMEM;
    if (rc == 0)
        rc = storage_stream_spans(s, q->lo, q->hi, q->after_key.data, q->after_key.len, add_span,
                                  &x);
    if (rc == 1) rc = 0;
    if (rc == 0) rc = put_symbols(&x);
    symtab_free(x.symbols);
    free(x.syms);
    return rc;
}

/* ---------------------------------------------------------------- pulling */

static void seen_of(const Flamedb__Cluster__SeenEntry *e, storage_seen_entry_t *se)
{
    se->tenant = e->tenant;
    se->token = e->token;
    se->series_id = e->series_id;
    memcpy(se->profile_id, e->profile_id.data, 16);
    se->time_ns = e->time_ns;
}

/* Whether this store holds the profile: its seen entry, or its tree entry
 * (the seen entry may have expired since it was stored). */
static int holds(repair_t *r, const Flamedb__Cluster__SeenEntry *e)
{
    storage_seen_entry_t se;
    seen_of(e, &se);
    int has = storage_seen_has(r->storage, &se);
    return has == 0 ? storage_ptree_has(r->storage, &se) : has;
}

/* Fetches the window's kept profiles this node lacks; *all = 0 when one
 * could not be had (its tree went meanwhile: the window waits for a walk
 * that no longer subtracts it). */
static int fetch_kept(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                      repair_stats_t *st, int *all, errmsg_t *em)
{
    repair_wants_t w = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->n_kept; i++) {
        int h = holds(r, m->kept[i]);
        if (h < 0) rc = errmsg_set(em, h, "seen index lookup failed");
        if (h == 0) rc = repair_want_add(&w, m->kept[i]);
    }
    uint64_t unavailable = st->unavailable;
    if (rc == 0 && w.n > 0) rc = repair_fetch(r, peer, &w, st, em);
    for (size_t i = 0; rc == 0 && *all && i < m->n_kept; i++)
        *all = holds(r, m->kept[i]) == 1;
    st->unavailable = unavailable; /* a window left out is what counts (not the pass's fetches) */
    free(w.v);
    return rc;
}

/* The residual of m (or whole, its parts put together) stored with its
 * marker (unless marked already). */
static int store_window(repair_t *r, const Flamedb__Cluster__StreamWindow *m, calltree_t *whole,
                        const symtab_t *syms, int *stored, errmsg_t *em)
{
    labels_t *lb = NULL;
    calltree_t *t = whole != NULL ? whole : calltree_new(r->o.write.max_tree_nodes);
    storage_stream_profile_t *u = calloc(m->n_untreed ? m->n_untreed : 1, sizeof *u);
    int rc = t != NULL && u != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) rc = labels_decode(m->labels.data, m->labels.len, &lb);
    if (rc == 0 && whole == NULL) rc = calltree_decode_merge(t, m->calltree.data, m->calltree.len);
    if (rc != 0)
        errmsg_set(em, rc, "stream: window of series %016llx: %s", (unsigned long long)m->series_id,
                   err_message(rc));
    for (size_t i = 0; rc == 0 && i < m->n_untreed; i++) {
        memcpy(u[i].profile_id, m->untreed[i]->profile_id.data, 16);
        u[i].time_ns = m->untreed[i]->time_ns;
        u[i].total = m->untreed_totals[i];
    }
    storage_stream_window_t w = {.tenant = m->tenant,
                                 .token = m->token,
                                 .series_id = m->series_id,
                                 .res = (int)m->res,
                                 .window_s = m->window_s,
                                 .residual = t,
                                 .total = m->total,
                                 .untreed = u,
                                 .nuntreed = m->n_untreed};
    if (rc == 0) rc = storage_stream_store(r->storage, &w, lb, syms, stored, em);
    labels_free(lb);
    if (whole == NULL) calltree_free(t);
    free(u);
    return rc;
}

static int symbols_of(const Flamedb__Cluster__RepairAnswer *a, symtab_t *tab)
{
    for (size_t i = 0; i < a->n_symbols; i++) {
        const Flamedb__Cluster__Symbol *y = a->symbols[i];
        int rc = symtab_put(tab, y->id, (const char *)y->name.data, y->name.len,
                            (const char *)y->file.data, y->file.len);
        if (rc != 0) return rc;
    }
    return 0;
}

static int window_marked(repair_t *r, const Flamedb__Cluster__StreamWindow *m, errmsg_t *em)
{
    int marked = storage_stream_marked(r->storage, m->tenant, m->token, m->series_id, (int)m->res,
                                       m->window_s);
    return marked < 0 ? errmsg_set(em, marked, "stream marker lookup failed") : marked;
}

/* One window of an answer (whole: its parts put together, or NULL): skipped
 * when marked, else its profiles, then its residual. */
static int take_window(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                       calltree_t *whole, const symtab_t *syms, repair_stream_state_t *ss,
                       repair_stats_t *st, errmsg_t *em)
{
    int marked = window_marked(r, m, em);
    if (marked != 0) return marked < 0 ? marked : 0;
    int all = 1, stored = 0;
    int rc = fetch_kept(r, peer, m, st, &all, em);
    if (rc == 0 && !all) {
        ss->failed = 1; /* walked again by the next pass */
        return 0;
    }
    if (rc == 0) rc = store_window(r, m, whole, syms, &stored, em);
    st->windows += stored;
    return rc;
}

/* A window that travels in parts, put together in memory (nothing is
 * stored before its last part: a stream cut short asks for it from its
 * first part again). */
typedef struct parts_in {
    calltree_t *tree;
    symtab_t *syms;
    uint32_t next; /* the part wanted next */
    uint64_t digest;
    unsigned restarts;
} parts_in_t;

/* Restarts of one window's parts (it changed on the source between two of
 * them) before it is left for the next pass. */
#define PARTS_RESTARTS 3

static void parts_drop(parts_in_t *p)
{
    calltree_free(p->tree);
    symtab_free(p->syms);
    p->tree = NULL;
    p->syms = NULL;
    p->next = 0;
}

/* Part m->part of a window in parts; *advance once the cursor may go past
 * the window (taken whole, marked, or left for the next pass). */
static int take_part(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                     const Flamedb__Cluster__RepairAnswer *a, parts_in_t *p,
                     repair_stream_state_t *ss, repair_stats_t *st, int *advance, errmsg_t *em)
{
    *advance = 0;
    if (m->part != p->next || (p->next > 0 && m->digest != p->digest)) {
        parts_drop(p); /* it changed on the source: from its first part again */
        if (++p->restarts <= PARTS_RESTARTS) return 0;
        log_warn("repair",
                 "stream: window of series %016llx changed on %s while it was sent in "
                 "parts: left for the next pass",
                 (unsigned long long)m->series_id, peer);
        ss->failed = 1;
        p->restarts = 0;
        *advance = 1;
        return 0;
    }
    if (p->next == 0) {
        int marked = window_marked(r, m, em);
        if (marked != 0) {
            *advance = marked > 0;
            return marked < 0 ? marked : 0;
        }
        p->tree = calltree_new(r->o.write.max_tree_nodes);
        p->syms = symtab_new();
        p->digest = m->digest;
        if (p->tree == NULL || p->syms == NULL) return ERR_NOMEM;
    }
    int rc = calltree_decode_merge(p->tree, m->calltree.data, m->calltree.len);
    if (rc == 0) rc = symbols_of(a, p->syms);
    if (rc != 0)
        return errmsg_set(em, rc, "stream: part %u of a window of series %016llx: %s", m->part,
                          (unsigned long long)m->series_id, err_message(rc));
    if (++p->next < m->parts) return 0;
    rc = take_window(r, peer, m, p->tree, p->syms, ss, st, em);
    parts_drop(p);
    p->restarts = 0;
    *advance = rc == 0;
    return rc;
}

/* The span trees of [lo, hi] from peer, merged as streamed operands
 * (united by profile id with what live writes brought: merged again by a
 * resumed stream, they change nothing); ss->spans_done once walked to the
 * end. */
static int stream_spans(repair_t *r, const char *peer, repair_stream_state_t *ss,
                        repair_stats_t *st, repair_stream_page_fn page, errmsg_t *em)
{
    int rc = 0, more = 1;
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        repair_request_init(&q, RK(SPANS), 0, 0);
        q.lo = ss->lo;
        q.hi = ss->hi;
        q.after_key = (ProtobufCBinaryData){ss->spans_after_len, ss->spans_after};
        cluster_msg_t ans = {0};
        if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        symtab_t *syms = symtab_new();
        rc = syms != NULL ? symbols_of(a, syms) : ERR_NOMEM;
        uint64_t merged = 0;
        for (size_t i = 0; rc == 0 && i < a->n_spans && !r->closing; i++) {
            const Flamedb__Cluster__StreamSpan *m = a->spans[i];
            /* a format-7 source sends the bare tree, itself a format-7 value */
            const ProtobufCBinaryData *v = m->value.len > 0 ? &m->value : &m->calltree;
            rc = storage_stream_span_put(r->storage, m->tenant, m->key.data, m->key.len, v->data,
                                         v->len, syms, em);
            if (rc == 0) {
                memcpy(ss->spans_after, m->key.data, m->key.len);
                ss->spans_after_len = m->key.len;
                merged++;
            }
        }
        size_t got = protobuf_c_message_get_packed_size(ans.body);
        st->bytes += got;
        uv_mutex_lock(&r->mu);
        r->counters.span_trees += merged;
        r->counters.bytes += got;
        uv_mutex_unlock(&r->mu);
        more = a->more && a->n_spans > 0;
        symtab_free(syms);
        cluster_msg_free(&ans);
        if (rc == 0 && !more && !r->closing) ss->spans_done = 1;
        if (page != NULL) page(r);
        repair_throttle(r, st);
    }
    return rc;
}

/* The check of a streamed interval: the totals of its windows that end
 * before the horizon (older than the move, where live writes rarely land)
 * summed per resolution here and on the source must agree; ss->checked when
 * they do. A difference is logged and checked again by the next pass;
 * ss->mismatches counts the checks in a row that differed (a regain clears
 * and streams a piece again after enough of them, repair_regain.c). */
static int stream_check(repair_t *r, const char *peer, repair_stream_state_t *ss, errmsg_t *em)
{
    Flamedb__Cluster__RepairRequest q;
    repair_request_init(&q, RK(STREAM_CHECK), 0, r->stream_check_s);
    q.lo = ss->lo;
    q.hi = ss->hi;
    int64_t mine[STORAGE_RESOLUTION_COUNT];
    int rc = storage_stream_sums(r->storage, ss->lo, ss->hi, r->stream_check_s, mine);
    if (rc != 0) return errmsg_set(em, rc, "stream check: %s", err_message(rc));
    cluster_msg_t ans = {0};
    if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) return rc;
    const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
    int same = a->n_sums == STORAGE_RESOLUTION_COUNT;
    for (int k = 0; same && k < STORAGE_RESOLUTION_COUNT; k++)
        if (a->sums[k] != mine[k]) {
            log_warn("repair",
                     "stream check of [%016llx, %016llx] with %s: resolution %d sums "
                     "%lld here, %lld there: checked again by the next pass",
                     (unsigned long long)ss->lo, (unsigned long long)ss->hi, peer, k,
                     (long long)mine[k], (long long)a->sums[k]);
            same = 0;
        }
    ss->checked = same;
    ss->mismatches = same ? 0 : ss->mismatches + 1;
    cluster_msg_free(&ans);
    return 0;
}

int repair_stream_interval(repair_t *r, const char *peer, repair_stream_state_t *ss,
                           repair_stats_t *st, repair_stream_page_fn page, errmsg_t *em)
{
    if (ss->done && ss->spans_done) return stream_check(r, peer, ss, em);
    if (ss->done) {
        int rc = stream_spans(r, peer, ss, st, page, em);
        return rc == 0 && ss->spans_done ? stream_check(r, peer, ss, em) : rc;
    }
    int rc = 0, more = 1;
    parts_in_t parts = {0};
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        repair_request_init(&q, RK(STREAM), 0, 0);
        q.lo = ss->lo;
        q.hi = ss->hi;
        q.after_key = (ProtobufCBinaryData){ss->after_len, ss->after};
        q.window_part = parts.next + 1;
        cluster_msg_t ans = {0};
        if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) break;
        const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
        symtab_t *syms = symtab_new();
        rc = syms != NULL ? symbols_of(a, syms) : ERR_NOMEM;
        uint64_t before = st->windows;
        for (size_t i = 0; rc == 0 && i < a->n_windows && !r->closing; i++) {
            const Flamedb__Cluster__StreamWindow *m = a->windows[i];
            int advance = 1;
            if (m->parts > 1) {
                rc = take_part(r, peer, m, a, &parts, ss, st, &advance, em);
            } else {
                parts_drop(&parts); /* the source sends it whole now */
                rc = take_window(r, peer, m, NULL, syms, ss, st, em);
            }
            if (rc == 0 && advance) { /* resume after it, also after a restart of the source */
                memcpy(ss->after, m->key.data, m->key.len);
                ss->after_len = m->key.len;
            }
        }
        size_t got = protobuf_c_message_get_packed_size(ans.body);
        st->bytes += got;
        uv_mutex_lock(&r->mu);
        r->counters.windows += st->windows - before;
        r->counters.bytes += got;
        uv_mutex_unlock(&r->mu);
        more = a->more && a->n_windows > 0;
        symtab_free(syms);
        cluster_msg_free(&ans);
        if (rc == 0 && !more && !r->closing) { /* walked to the end */
            ss->done = !ss->failed;
            ss->failed = 0;
            ss->after_len = 0; /* a walk again (after a left-out window) starts over */
        }
        if (page != NULL) page(r);
        repair_throttle(r, st);
    }
    parts_drop(&parts); /* a window cut short: from its first part next time */
    if (rc == 0 && ss->done && !r->closing) rc = stream_spans(r, peer, ss, st, page, em);
    if (rc == 0 && ss->spans_done && !r->closing) rc = stream_check(r, peer, ss, em);
    return rc;
}

int repair_stream_heal(repair_t *r, repair_stream_state_t *ss, const char *what,
                       int (*save)(repair_t *r))
{
    if (ss->mismatches < r->o.heal_after) return 0;
    if (ss->heals >= r->o.heals) {
        if (ss->mismatches == r->o.heal_after)
            log_error("repair",
                      "%s [%016llx, %016llx]: its totals check disagreed with the source in %u "
                      "passes in a row after %u clear(s) and stream(s) again "
                      "(stream-check-heals): left as it is, checked by every pass; this node "
                      "is not read from until it agrees",
                      what, (unsigned long long)ss->lo, (unsigned long long)ss->hi, ss->mismatches,
                      ss->heals);
        return 0;
    }
    repair_stream_state_t was = *ss;
    ss->done = ss->spans_done = ss->checked = ss->failed = 0;
    ss->after_len = ss->spans_after_len = 0;
    ss->mismatches = 0;
    ss->heals++;
    if (save != NULL && save(r) != 0) { /* not cleared: the old cursor still holds */
        *ss = was;
        ss->mismatches = 0; /* tried again after as many passes */
        log_warn("repair",
                 "%s [%016llx, %016llx]: cannot write where it stands: not cleared and "
                 "streamed again yet",
                 what, (unsigned long long)ss->lo, (unsigned long long)ss->hi);
        return 0;
    }
    log_warn("repair",
             "%s [%016llx, %016llx]: its totals check disagreed with the source in %u "
             "passes in a row: clearing it and streaming it again from its start (%u of %u)",
             what, (unsigned long long)ss->lo, (unsigned long long)ss->hi, was.mismatches,
             ss->heals, r->o.heals);
    uv_mutex_lock(&r->mu);
    r->counters.stream_heals++;
    uv_mutex_unlock(&r->mu);
    if (repair_clear(r, &ss->lo, &ss->hi, 1) != 0) /* logged: the old copy stays */
        log_warn("repair",
                 "%s [%016llx, %016llx]: not cleared: walked again with its windows marked "
                 "(skipped), so its check disagrees again",
                 what, (unsigned long long)ss->lo, (unsigned long long)ss->hi);
    return 1;
}

int repair_rc_unanswered(int rc)
{
    return rc == ERR_TIMEOUT || rc == ERR_UNAVAILABLE;
}

const char *repair_next_source(const repair_t *r, const cluster_view_t *v, const uint32_t *reps,
                               uint32_t n, uint32_t *k)
{
    for (; *k < n; (*k)++) {
        uint32_t i = reps[*k];
        if ((int)i == v->self || !v->reachable[i] || r->unanswered[i]) continue;
        if (v->marked != NULL && v->marked[i]) { /* it missed writes: its copy may be short */
            log_debug("repair", "%s is not a stream source: another node lists it in hints_for",
                      ring_node_name(v->ring, i));
            continue;
        }
        return ring_node_name(v->ring, i);
    }
    return NULL;
}

int repair_stream_replicas(repair_t *r, const cluster_view_t *v, const uint32_t *reps, uint32_t n,
                           repair_stream_state_t *ss, repair_stats_t *st,
                           repair_stream_page_fn page, const char *what)
{
    const char *gone = NULL; /* the source that stopped answering this stream */
    uint32_t k = 0;
    for (const char *src; !r->closing && (src = repair_next_source(r, v, reps, n, &k)) != NULL;
         k++) {
        if (gone != NULL) {
            log_info("repair",
                     "%s stream of [%016llx, %016llx]: %s stopped answering, going on "
                     "from its cursor at %s",
                     what, (unsigned long long)ss->lo, (unsigned long long)ss->hi, gone, src);
            uv_mutex_lock(&r->mu);
            r->counters.source_changes++;
            uv_mutex_unlock(&r->mu);
        } else {
            log_debug("repair", "%s stream of [%016llx, %016llx] from %s", what,
                      (unsigned long long)ss->lo, (unsigned long long)ss->hi, src);
        }
        errmsg_t em = {{0}};
        int rc = repair_stream_interval(r, src, ss, st, page, &em);
        if (rc == REPAIR_NOT_SOURCE) { /* its own copy is not whole now: the next replica */
            log_debug("repair", "%s stream of [%016llx, %016llx]: %s", what,
                      (unsigned long long)ss->lo, (unsigned long long)ss->hi, errmsg_text(&em, rc));
            continue;
        }
        if (rc != 0) log_warn("repair", "%s stream from %s: %s", what, src, errmsg_text(&em, rc));
        if (!repair_rc_unanswered(rc)) return rc == 0 && ss->done && ss->spans_done && ss->checked;
        r->unanswered[reps[k]] = 1;
        gone = src;
    }
    return 0;
}
