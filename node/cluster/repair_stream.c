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
/* Bytes of an answer besides its one window in parts's tree, symbols,
 * lists, labels, key and tenant (envelope, the window's scalar fields). */
#define STREAM_ANSWER_RESERVE 512

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
    int slices;         /* the request takes a window's lists cut across its parts */
    int pieces;         /* and a symbol too large for a part in pieces */
    int anchors;        /* and parts rooted below the root (anchor_depth) */
    const Flamedb__Cluster__RepairRequest *q;
    repair_serve_env_t *env; /* NULL: nothing kept, nothing counted */
    errmsg_t *em;
    int hashes;      /* summaries as hashes (summary_hashes) */
    uint32_t fanout; /* a tree's descent: only the windows of `buckets` (0: every window) */
    ProtobufCBinaryData buckets;
    size_t prev_len; /* hashes: the key of the summary before */
    uint8_t prev[REPAIR_STREAM_KEY_MAX];
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

/* Seen entries of one window's profiles (its token and series), in the
 * answer's arena. */
static Flamedb__Cluster__SeenEntry **entries(serve_t *x, uint64_t token, uint64_t series_id,
                                             const storage_stream_profile_t *p, size_t n)
{
    Flamedb__Cluster__SeenEntry **v = arena_zalloc(x->arena, (n ? n : 1) * sizeof *v);
    Flamedb__Cluster__SeenEntry *e = arena_zalloc(x->arena, (n ? n : 1) * sizeof *e);
    if (v == NULL || e == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        flamedb__cluster__seen_entry__init(&e[i]);
        e[i].tenant = x->tenant_out;
        e[i].token = token;
        e[i].series_id = series_id;
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

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    return (h ^ hash_bytes64(p, n)) * 0x100000001b3ull;
}

/* What identifies w whole: its key, its residual's encoding, total, kept and
 * untreed profiles (a later request for another part must find the same). */
static int window_digest(const repair_window_t *w, uint64_t *digest)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = calltree_encode(w->tree, &b);
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

/* The names and files of t's symbols, into *out (caller owns). */
static int names_of(serve_t *x, const char *tenant, const calltree_t *t, symtab_t **out)
{
    symtab_t *names = symtab_new();
    size_t n = calltree_sym_count(t);
    int rc = names != NULL ? 0 : ERR_NOMEM;
    if (rc == 0 && n > 1)
        rc = storage_load_symbols(x->s, tenant, calltree_syms(t) + 1, n - 1, names);
    if (rc != 0) symtab_free(names);
    if (rc == 0) *out = names;
    return rc;
}

/* The sizes a window of tenant with nkept/nuntreed profiles is cut by: a
 * part's budget, and what one may take at most (the message limit less the
 * window's other fields, fixed bytes; its lists too when the request takes
 * them whole). */
static repair_parts_sizes_t sizes_of(const serve_t *x, const char *tenant, size_t nkept,
                                     size_t nuntreed, size_t fixed)
{
    size_t tl = strlen(tenant);
    repair_parts_sizes_t z = {.budget = x->cap,
                              .kept_bytes = PART_ENTRY_BYTES + tl,
                              .untreed_bytes = PART_ENTRY_BYTES + tl + PART_TOTAL_BYTES};
    fixed += STREAM_ANSWER_RESERVE + 2 * tl;
    z.pieces = x->pieces;
    z.anchors = x->anchors;
    if (x->slices) {
        z.nkept = nkept;
        z.nuntreed = nuntreed;
    } else {
        fixed += nkept * z.kept_bytes + nuntreed * z.untreed_bytes;
    }
    z.limit = x->o->max_message_bytes > fixed ? x->o->max_message_bytes - fixed : 0;
    return z;
}

/* Part k's kept and untreed profiles (all of them when the request takes
 * the lists whole) into m. */
static int part_lists(serve_t *x, const repair_window_t *w, uint32_t k,
                      Flamedb__Cluster__StreamWindow *m)
{
    size_t a = 0, b = w->nkept + w->nuntreed;
    if (x->slices) {
        a = w->plan.pcut[k];
        b = w->plan.pcut[k + 1];
        m->profile_slices = 1;
    }
    size_t ka = a < w->nkept ? a : w->nkept, kb = b < w->nkept ? b : w->nkept;
    size_t ua = a > w->nkept ? a - w->nkept : 0, ub = b > w->nkept ? b - w->nkept : 0;
    m->kept = entries(x, w->token, w->series_id, w->kept + ka, kb - ka);
    m->untreed = entries(x, w->token, w->series_id, w->untreed + ua, ub - ua);
    m->untreed_totals = arena_zalloc(x->arena, (ub > ua ? ub - ua : 1) * sizeof(int64_t));
    if (m->kept == NULL || m->untreed == NULL || m->untreed_totals == NULL) return ERR_NOMEM;
    m->n_kept = kb - ka;
    m->n_untreed = m->n_untreed_totals = ub - ua;
    for (size_t i = ua; i < ub; i++)
        m->untreed_totals[i - ua] = w->untreed[i].total;
    return 0;
}

typedef struct part_syms {
    serve_t *x;
    const symtab_t *names;
    Flamedb__Cluster__Symbol **v;
    size_t n, cap;
} part_syms_t;

static int put_part_sym(void *ctx, uint64_t id)
{
    part_syms_t *ps = ctx;
    const char *name = NULL, *file = NULL;
    if (symtab_get(ps->names, id, &name, &file) != 1) return 0; /* unknown: as put_symbols */
    Flamedb__Cluster__Symbol *sv = arena_zalloc(ps->x->arena, sizeof *sv);
    int rc = sv != NULL ? GROW(ps->v, ps->cap, ps->n + 1, GROW_UNLIMITED) : ERR_NOMEM;
    if (rc != 0) return rc;
    flamedb__cluster__symbol__init(sv);
    sv->id = id;
    sv->name = bytes_of(ps->x->arena, name, strlen(name));
    sv->file = bytes_of(ps->x->arena, file ? file : "", file ? strlen(file) : 0);
    if (sv->name.data == NULL || sv->file.data == NULL) return ERR_NOMEM;
    ps->v[ps->n++] = sv;
    return 0;
}

/* The symbols part k carries (those its run names first) into the answer. */
static int part_symbols(serve_t *x, repair_window_t *w, uint32_t k)
{
    part_syms_t ps = {.x = x, .names = w->names};
    int rc = repair_parts_symbols(w->tree, &w->plan, k, put_part_sym, &ps);
    if (rc == 0 && ps.n > 0) {
        x->a->symbols = arena_memdup(x->arena, ps.v, ps.n * sizeof *ps.v);
        if (x->a->symbols == NULL) rc = ERR_NOMEM;
        x->a->n_symbols = ps.n;
    }
    free(ps.v);
    return rc;
}

/* Part k's piece of a symbol into m, when it is a part of pieces. */
static int part_piece(serve_t *x, const repair_window_t *w, uint32_t k,
                      Flamedb__Cluster__StreamWindow *m)
{
    uint32_t si = w->plan.psym[k];
    if (si == UINT32_MAX) return 0;
    uint64_t id = calltree_syms(w->tree)[si];
    const char *name = NULL, *file = NULL;
    if (symtab_get(w->names, id, &name, &file) != 1) return ERR_INTERNAL; /* it was costed */
    size_t nl = strlen(name), fl = file ? strlen(file) : 0, off = w->plan.poff[k];
    size_t piece = x->cap > PART_SYMBOL_BYTES ? x->cap - PART_SYMBOL_BYTES : 1;
    size_t len = nl + fl - off < piece ? nl + fl - off : piece;
    Flamedb__Cluster__SymbolPiece *sp = arena_zalloc(x->arena, sizeof *sp);
    uint8_t *data = arena_zalloc(x->arena, len ? len : 1);
    m->pieces = arena_zalloc(x->arena, sizeof *m->pieces);
    if (sp == NULL || data == NULL || m->pieces == NULL || off > nl + fl) return ERR_NOMEM;
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(off + i < nl ? name[off + i] : file[off + i - nl]);
    flamedb__cluster__symbol_piece__init(sp);
    sp->id = id;
    sp->name_len = (uint32_t)nl;
    sp->file_len = (uint32_t)fl;
    sp->offset = (uint32_t)off;
    sp->data = (ProtobufCBinaryData){len, data};
    m->pieces[0] = sp;
    m->n_pieces = 1;
    return 0;
}

/* Part k (the last when past it) of the window in parts w: the answer's one
 * window, with the symbols its run names first. */
static int emit_part(serve_t *x, repair_window_t *w, uint32_t k)
{
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (k >= w->plan.nparts) k = w->plan.nparts - 1;
    if (set_tenant(x, w->tenant) != 0) return ERR_NOMEM;
    Flamedb__Cluster__StreamWindow *m = arena_zalloc(x->arena, sizeof *m);
    calltree_t *part = calltree_new(0);
    int rc = m != NULL && part != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) {
        flamedb__cluster__stream_window__init(m);
        rc = repair_parts_build(w->tree, &w->plan, k, part);
    }
    buf_reset(&x->b);
    if (rc == 0) rc = calltree_encode(part, &x->b);
    calltree_free(part);
    if (rc == 0) {
        m->calltree = bytes_of(x->arena, x->b.data, x->b.len);
        m->labels = bytes_of(x->arena, w->labels, w->labels_len);
        m->key = bytes_of(x->arena, w->key, w->key_len);
        if (!m->calltree.data || !m->labels.data || !m->key.data) rc = ERR_NOMEM;
    }
    if (rc == 0) rc = part_lists(x, w, k, m);
    if (rc == 0) rc = part_symbols(x, w, k);
    if (rc == 0) rc = part_piece(x, w, k, m);
    if (rc != 0) return rc;
    m->tenant = x->tenant_out;
    m->token = w->token;
    m->series_id = w->series_id;
    m->res = (uint32_t)w->res;
    m->window_s = w->window_s;
    m->total = w->total;
    if (w->wprof_len > 0) m->window_profiles = bytes_of(x->arena, w->wprof, w->wprof_len);
    m->part = k;
    m->parts = w->plan.nparts;
    m->anchor_depth = w->plan.anchor[k];
    m->digest = w->digest;
    a->windows[a->n_windows++] = m;
    a->more = 1; /* a part answers alone; the next part (or window) in the next page */
    if (x->env != NULL) x->env->parts++;
    return 0;
}

/* The labels of w's series, encoded into w; ERR_NOT_FOUND when it has none. */
static int snapshot_labels(serve_t *x, repair_window_t *w)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(x->s, w->tenant, w->token, w->series_id, &lb);
    buf_reset(&x->b);
    if (rc == 0) rc = labels_encode(lb, &x->b);
    labels_free(lb);
    if (rc == 0) {
        w->labels = malloc(x->b.len ? x->b.len : 1);
        if (w->labels == NULL) return ERR_NOMEM;
        memcpy(w->labels, x->b.data, x->b.len);
        w->labels_len = x->b.len;
    }
    return rc;
}

/* The window in parts w (names: its symbols', taken) read, planned and
 * answered with the part the request wants, then kept for its next parts. */
static int serve_in_parts(serve_t *x, const storage_stream_window_t *sw, symtab_t *names)
{
    repair_window_t *w = NULL;
    const Flamedb__Cluster__RepairRequest *q = x->q;
    int rc = repair_window_snapshot(sw, q->after_key.data, q->after_key.len, &w);
    if (rc != 0) {
        symtab_free(names);
        return rc;
    }
    symtab_free(w->names);
    w->names = names;
    w->lo = q->lo;
    w->hi = q->hi;
    w->slices = x->slices | x->pieces << 1 | x->anchors << 2; /* what the plan was made for */
    if (x->env != NULL) x->env->window_reads++;
    rc = snapshot_labels(x, w);
    repair_parts_sizes_t z =
        sizes_of(x, w->tenant, w->nkept, w->nuntreed, w->labels_len + w->key_len);
    if (rc == 0) rc = repair_parts_plan(w->tree, w->names, &z, &w->plan);
    if (rc == ERR_LIMIT)
        errmsg_set(x->em, rc,
                   "window of series %016llx (tenant %s): the part of its node %u in preorder "
                   "(its path of ancestors, 24 bytes each, and, for an asker that takes no "
                   "pieces, its symbol's name and file) takes %zu bytes, more than one "
                   "message of --max-message-bytes %zu holds: raise --max-message-bytes on "
                   "every node",
                   (unsigned long long)w->series_id, w->tenant, w->plan.over,
                   w->plan.over_bytes + (x->o->max_message_bytes - z.limit),
                   x->o->max_message_bytes);
    if (rc == 0) rc = window_digest(w, &w->digest);
    if (rc == 0) rc = emit_part(x, w, x->want_part - 1);
    if (rc == ERR_NOT_FOUND) {
        log_warn("repair", "stream: series %016llx has a window but no labels: not sent",
                 (unsigned long long)w->series_id);
        rc = 0;
    }
    if (rc == 0 && x->env != NULL && x->env->cache != NULL && x->a->n_windows > 0)
        repair_partcache_put(x->env->cache, w, x->env->now_ms);
    else
        repair_window_free(w);
    return rc;
}

/* Whether w goes in parts (names: its symbols', then taken into *names
 * or freed); *name_bytes what its symbols add to a whole window. */
static int in_parts(serve_t *x, const storage_stream_window_t *w, symtab_t **names,
                    size_t *name_bytes)
{
    *name_bytes = 0;
    int rc = names_of(x, w->tenant, w->residual, names);
    if (rc != 0) return rc;
    repair_parts_sizes_t z = sizes_of(x, w->tenant, w->nkept, w->nuntreed, 0);
    if (!x->slices) { /* the lists count as well */
        z.nkept = w->nkept;
        z.nuntreed = w->nuntreed;
    }
    size_t cost = repair_parts_whole_cost(w->residual, *names, &z);
    size_t nodes = calltree_node_count(w->residual) * PART_NODE_BYTES;
    *name_bytes = cost > nodes ? cost - nodes : 0;
    return cost > x->cap;
}

static int add_window(void *ctx, const storage_stream_window_t *w)
{
    serve_t *x = ctx;
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (x->q->until_s > 0 && /* a fill's walk: the windows ending by until_s only */
        w->window_s + (int64_t)storage_resolutions[w->res] > x->q->until_s)
        return 0;
    if (a->n_windows > 0 &&
        (strcmp(x->tenant, w->tenant) != 0 || x->bytes >= x->cap ||
         a->n_windows == CLUSTER_REPAIR_MAX_ENTRIES || x->nsyms >= STREAM_MAX_SYMBOLS)) {
        a->more = 1;
        return 1; /* the rest in the next page */
    }
    if (set_tenant(x, w->tenant) != 0) return ERR_NOMEM;
    size_t name_bytes = 0;
    symtab_t *names = NULL;
    int rc = x->want_part > 0 ? in_parts(x, w, &names, &name_bytes) : 0;
    if (rc == 1 && a->n_windows > 0) { /* in parts: first in the next page */
        symtab_free(names);
        a->more = 1;
        return 1;
    }
    if (rc == 1) {
        rc = serve_in_parts(x, w, names);
        return rc != 0 ? rc : a->n_windows > 0; /* one not sent (no labels): the next */
    }
    symtab_free(names);
    if (rc != 0) return rc;
    Flamedb__Cluster__StreamWindow *m = arena_zalloc(x->arena, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    flamedb__cluster__stream_window__init(m);
    rc = window_body(x, w, w->residual, m);
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
    if (w->wprof_len > 0) m->window_profiles = bytes_of(x->arena, w->wprof, w->wprof_len);
    m->kept = entries(x, w->token, w->series_id, w->kept, w->nkept);
    m->untreed = entries(x, w->token, w->series_id, w->untreed, w->nuntreed);
    m->untreed_totals = arena_zalloc(x->arena, (w->nuntreed ? w->nuntreed : 1) * sizeof(int64_t));
    if (m->key.data == NULL || m->kept == NULL || m->untreed == NULL || m->untreed_totals == NULL)
        return ERR_NOMEM;
    m->n_kept = w->nkept;
    m->n_untreed = m->n_untreed_totals = w->nuntreed;
    for (size_t i = 0; i < w->nuntreed; i++)
        m->untreed_totals[i] = w->untreed[i].total;
    x->bytes += protobuf_c_message_get_packed_size(&m->base) + name_bytes;
    a->windows[a->n_windows++] = m;
    return 0;
}

/* m as a hashed summary of w (stream protocol 3): its key past the bytes it
 * shares with the one before in this answer, and its window_profiles' hash. */
static int hashed_summary(serve_t *x, const storage_window_summary_t *w,
                          Flamedb__Cluster__StreamWindow *m)
{
    if (w->key_len > REPAIR_STREAM_KEY_MAX) return ERR_CORRUPT;
    size_t shared = 0;
    while (shared < x->prev_len && shared < w->key_len && x->prev[shared] == w->key[shared])
        shared++;
    m->key_shared = (uint32_t)shared;
    m->key = bytes_of(x->arena, w->key + shared, w->key_len - shared);
    m->summary_hash = w->wprof_len > 0 ? storage_window_profiles_hash(w->wprof, w->wprof_len) : 0;
    memcpy(x->prev, w->key, w->key_len);
    x->prev_len = w->key_len;
    return m->key.data != NULL ? 0 : ERR_NOMEM;
}

/* m as a whole summary of w: its key, parts, whole total and
 * window_profiles value (ids and all). */
static int whole_summary(serve_t *x, const storage_window_summary_t *w,
                         Flamedb__Cluster__StreamWindow *m)
{
    if (set_tenant(x, w->tenant) != 0) return ERR_NOMEM;
    m->tenant = x->tenant_out;
    m->token = w->token;
    m->series_id = w->series_id;
    m->res = (uint32_t)w->res;
    m->window_s = w->window_s;
    m->total = w->total;
    m->key = bytes_of(x->arena, w->key, w->key_len);
    if (m->key.data == NULL) return ERR_NOMEM;
    if (w->wprof_len > 0) {
        m->window_profiles = bytes_of(x->arena, w->wprof, w->wprof_len);
        if (m->window_profiles.data == NULL) return ERR_NOMEM;
    }
    return 0;
}

/* One window's summary (a fill's first look: no tree, lists or labels). */
static int add_summary(void *ctx, const storage_window_summary_t *w)
{
    serve_t *x = ctx;
    Flamedb__Cluster__RepairAnswer *a = x->a;
    if (a->n_windows > 0 && (strcmp(x->tenant, w->tenant) != 0 || x->bytes >= x->cap ||
                             a->n_windows == CLUSTER_REPAIR_MAX_ENTRIES)) {
        a->more = 1;
        return 1; /* the rest in the next page */
    }
    if (x->fanout > 0 &&
        !repair_tree_wanted(x->buckets.data, x->buckets.len, x->fanout, w->key, w->key_len))
        return 0; /* a bucket both sides hold alike */
    if (set_tenant(x, w->tenant) != 0) return ERR_NOMEM;
    Flamedb__Cluster__StreamWindow *m = arena_zalloc(x->arena, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    flamedb__cluster__stream_window__init(m);
    int rc = x->hashes ? hashed_summary(x, w, m) : whole_summary(x, w, m);
    if (rc != 0) return rc;
    x->bytes += protobuf_c_message_get_packed_size(&m->base);
    a->windows[a->n_windows++] = m;
    return 0;
}

/* A tree look (stream protocol 4): this node's tree of the windows q's
 * first look would walk; tree_alike when its root and count are q's and
 * every window is counted exactly, else its buckets at the fanout its
 * window count picks. */
static int tree_look(serve_t *x, const Flamedb__Cluster__RepairRequest *q)
{
    Flamedb__Cluster__RepairAnswer *a = x->a;
    repair_tree_t *t = malloc(sizeof *t);
    if (t == NULL) return ERR_NOMEM;
    int rc = repair_tree_build(x->s, q->lo, q->hi, q->until_s, t);
    uint64_t count = 0, inexact = 0;
    uint64_t root = repair_tree_root(t, &count, &inexact);
    uint32_t f = repair_tree_fanout(count, q->tree_count);
    a->summary_hashes = 1;
    if (rc == 0 && root == q->tree_root && count == q->tree_count && inexact == 0) {
        a->tree_alike = 1;
    } else if (rc == 0) {
        uint64_t x_in[REPAIR_TREE_LEAVES];
        a->tree_digests = arena_zalloc(x->arena, f * sizeof *a->tree_digests);
        a->tree_inexact = arena_zalloc(x->arena, f * sizeof *a->tree_inexact);
        if (a->tree_digests == NULL || a->tree_inexact == NULL) rc = ERR_NOMEM;
        if (rc == 0) repair_tree_fold(t, f, a->tree_digests, x_in);
        a->n_tree_digests = rc == 0 ? f : 0;
        for (uint32_t b = 0; rc == 0 && b < f; b++)
            if (x_in[b] > 0) a->tree_inexact[a->n_tree_inexact++] = b;
    }
    free(t);
    return rc;
}

/* Window summaries as q asks them (a fill's looks): of every window that
 * ends by until_s after after_key, or of q's keys only (stream protocol 3);
 * a tree's root compared, or the windows of a tree's buckets only (4). */
static int summaries(serve_t *x, const Flamedb__Cluster__RepairRequest *q)
{
    Flamedb__Cluster__RepairAnswer *a = x->a;
    a->window_summaries = 1;
    int tree = x->o->stream_version >= REPAIR_STREAM_V_TREE && q->summary_hashes && q->n_keys == 0;
    if (tree && q->tree_look) return tree_look(x, q);
    if (tree && q->tree_fanout > 0) { /* checked on decode: a power of two, bits enough */
        x->fanout = q->tree_fanout;
        x->buckets = q->tree_buckets;
    }
    if (x->o->stream_version < REPAIR_STREAM_V_HASHES || q->n_keys == 0) {
        x->hashes = x->o->stream_version >= REPAIR_STREAM_V_HASHES && q->summary_hashes;
        a->summary_hashes = x->hashes;
        return storage_stream_summaries(x->s, q->lo, q->hi, q->after_key.data, q->after_key.len,
                                        q->until_s, add_summary, x);
    }
    storage_key_ref_t *k = malloc(q->n_keys * sizeof *k);
    if (k == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < q->n_keys; i++)
        k[i] = (storage_key_ref_t){q->keys[i].data, q->keys[i].len};
    int rc = storage_stream_summaries_keys(x->s, q->lo, q->hi, k, q->n_keys, q->after_key.data,
                                           q->after_key.len, q->until_s, add_summary, x);
    free(k);
    return rc;
}

/* The windows of q's keys (a fill's second look), as storage_stream_scan. */
static int scan_keys(serve_t *x, const Flamedb__Cluster__RepairRequest *q)
{
    storage_key_ref_t *k = malloc(q->n_keys * sizeof *k);
    if (k == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < q->n_keys; i++)
        k[i] = (storage_key_ref_t){q->keys[i].data, q->keys[i].len};
    int rc = storage_stream_scan_keys(x->s, q->lo, q->hi, k, q->n_keys, q->after_key.data,
                                      q->after_key.len, add_window, x);
    free(k);
    return rc;
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
                        const Flamedb__Cluster__RepairRequest *q, repair_serve_env_t *env,
                        arena_t *arena, Flamedb__Cluster__RepairAnswer *a, errmsg_t *em)
{
    serve_t x = {.s = s,
                 .o = o,
                 .arena = arena,
                 .a = a,
                 .want_part = q->window_part,
                 .slices = q->profile_slices,
                 .pieces = q->symbol_pieces,
                 .anchors = q->path_anchors,
                 .q = q,
                 .env = env,
                 .em = em};
    x.cap = o->max_message_bytes / STREAM_ANSWER_SHARE;
    /* a node capped at stream protocol 1 (a rolling upgrade) serves as one
     * of that release: it knows no fill's fields, and pages every window */
    int fill = o->stream_version >= REPAIR_STREAM_V_FILL;
    if (o->stream_version >= REPAIR_STREAM_V_HASHES) a->stream_version = o->stream_version;
    x.symbols = symtab_new();
    buf_init(&x.b, o->max_message_bytes);
    a->windows = arena_zalloc(arena, CLUSTER_REPAIR_MAX_ENTRIES * sizeof *a->windows);
    int rc = x.symbols != NULL && a->windows != NULL ? 0 : ERR_NOMEM;
    repair_window_t *w = NULL;
    if (rc == 0 && x.want_part > 1 && env != NULL) /* a later part of a window read before */
        w = repair_partcache_get(env->cache, q->lo, q->hi, q->after_key.data, q->after_key.len,
                                 x.slices | x.pieces << 1 | x.anchors << 2, env->now_ms);
    if (w != NULL) {
        rc = emit_part(&x, w, x.want_part - 1);
        repair_partcache_release(env->cache);
    } else if (rc == 0 && fill && q->window_summaries && q->until_s > 0) {
        rc = summaries(&x, q);
        if (rc == 1) rc = 0; /* stopped at the page's end */
    } else if (rc == 0) {
        if (fill && q->n_keys > 0)
            rc = scan_keys(&x, q);
        else /* a fill's (until_s): the newer windows are not read */
            rc = storage_stream_scan_until(s, q->lo, q->hi, q->after_key.data, q->after_key.len,
                                           fill && q->until_s > 0 ? q->until_s : 0, add_window, &x);
        if (rc == 1) rc = 0; /* stopped at the page's end */
        if (rc == ERR_LIMIT && em->text[0] == '\0')
            rc = errmsg_set(em, ERR_LIMIT,
                            "stream of [%016llx, %016llx]: a window's profile lists take more "
                            "than --stream-window-max-profiles on this source: refused, not sent "
                            "short (the window is named in its log); raise it on this node",
                            (unsigned long long)q->lo, (unsigned long long)q->hi);
        if (rc == 0) rc = put_symbols(&x);
    }
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
 * marker (unless marked already; a fill's, only_absent: unless this node
 * holds the window by then, a write landed in it since the fill looked). */
static int store_window(repair_t *r, const Flamedb__Cluster__StreamWindow *m, calltree_t *whole,
                        const symtab_t *syms, int only_absent, int *stored, repair_stats_t *st,
                        errmsg_t *em)
{
    labels_t *lb = NULL;
    calltree_t *t = whole; /* else decoded as it is stored: it is only read */
    storage_stream_profile_t *u = calloc(m->n_untreed ? m->n_untreed : 1, sizeof *u);
    int rc = u != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) rc = labels_decode(m->labels.data, m->labels.len, &lb);
    if (rc == 0 && whole == NULL)
        rc = calltree_decode_new(m->calltree.data, m->calltree.len, r->o.write.max_tree_nodes, &t);
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
                                 .nuntreed = m->n_untreed,
                                 .wprof = m->window_profiles.data,
                                 .wprof_len = m->window_profiles.len,
                                 .only_absent = only_absent};
    size_t bytes = 0;
    if (rc == 0) rc = storage_stream_store_sized(r->storage, &w, lb, syms, stored, &bytes, em);
    st->stored += bytes;
    uv_mutex_lock(&r->mu);
    r->counters.stored_bytes += bytes;
    uv_mutex_unlock(&r->mu);
    labels_free(lb);
    if (whole == NULL) calltree_free(t);
    free(u);
    return rc;
}

static int window_marked(repair_t *r, const Flamedb__Cluster__StreamWindow *m, errmsg_t *em)
{
    int marked = storage_stream_marked(r->storage, m->tenant, m->token, m->series_id, (int)m->res,
                                       m->window_s);
    return marked < 0 ? errmsg_set(em, marked, "stream marker lookup failed") : marked;
}

/* One window of an answer (whole: its parts put together, or NULL): skipped
 * when marked (or, in a fill, not wanted), else its profiles, then its
 * residual. */
static int take_window(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                       calltree_t *whole, const symtab_t *syms, repair_stream_state_t *ss,
                       repair_stats_t *st, errmsg_t *em)
{
    if (ss->fill_until != 0) {
        int want = repair_fill_wanted(r, m, ss, st, 1, em);
        if (want == 2) return repair_fill_add(r, m, whole, syms, ss, st, em);
        if (want <= 0) return want;
    }
    int marked = window_marked(r, m, em);
    if (marked != 0) return marked < 0 ? marked : 0;
    int all = 1, stored = 0;
    int rc = fetch_kept(r, peer, m, st, &all, em);
    if (rc == 0 && !all) {
        ss->failed = 1; /* walked again by the next pass */
        return 0;
    }
    int fill = ss->fill_until != 0;
    if (rc == 0) rc = store_window(r, m, whole, syms, fill, &stored, st, em);
    if (fill) {
        st->wc_filled += stored;
        ss->fill_left += rc == 0 && !stored; /* written here meanwhile: the next check compares */
    } else {
        st->windows += stored;
    }
    return rc;
}

/* Restarts of one window's parts (it changed on the source between two of
 * them) before it is left for the next pass. */
#define PARTS_RESTARTS 3

/* The window of the last part m with the lists gathered from all its parts,
 * taken (take_window) through entries that live until this returns. */
static int take_sliced(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                       repair_partsin_t *p, repair_stream_state_t *ss, repair_stats_t *st,
                       errmsg_t *em)
{
    repair_sliced_t sl;
    int rc = repair_partsin_sliced(p, m, &sl);
    if (rc == 0) rc = take_window(r, peer, &sl.w, p->tree, p->syms, ss, st, em);
    repair_sliced_free(&sl);
    return rc;
}

/* Part m->part of a window in parts; *advance once the cursor may go past
 * the window (taken whole, marked, or left for the next pass). */
static int take_part(repair_t *r, const char *peer, const Flamedb__Cluster__StreamWindow *m,
                     const Flamedb__Cluster__RepairAnswer *a, repair_partsin_t *p,
                     repair_stream_state_t *ss, repair_stats_t *st, int *advance, errmsg_t *em)
{
    *advance = 0;
    if (!repair_partsin_follows(p, m)) {
        repair_partsin_drop(p); /* it changed on the source: from its first part again */
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
    if (p->next == 0 && ss->fill_until != 0) { /* its lists are known only at its end */
        int want = repair_fill_wanted(r, m, ss, st, 0, em);
        if (want <= 0) {
            *advance = want == 0;
            return want;
        }
    }
    if (p->next == 0) {
        int marked = window_marked(r, m, em);
        if (marked != 0) {
            *advance = marked > 0;
            return marked < 0 ? marked : 0;
        }
        int rc = repair_partsin_start(p, m->digest, r->o.write.max_tree_nodes,
                                      r->o.stream_receive_max_bytes);
        if (rc != 0) return rc;
    }
    int rc = repair_partsin_add(p, a, m);
    if (rc == ERR_LIMIT && p->over) {
        uv_mutex_lock(&r->mu);
        r->counters.stream_windows_refused++;
        uv_mutex_unlock(&r->mu);
        return errmsg_set(em, rc,
                          "stream: window of series %016llx (tenant %s) in %u parts from %s: "
                          "its profile lists and symbols gathered up to part %u take %zu bytes, "
                          "more than --stream-receive-max-bytes %zu: refused (the range is "
                          "not taken until it fits: raise --stream-receive-max-bytes on this "
                          "node)",
                          (unsigned long long)m->series_id, m->tenant, m->parts, peer, m->part,
                          p->bytes, r->o.stream_receive_max_bytes);
    }
    if (rc != 0)
        return errmsg_set(em, rc, "stream: part %u of a window of series %016llx: %s", m->part,
                          (unsigned long long)m->series_id, err_message(rc));
    if (++p->next < m->parts) return 0;
    if (m->profile_slices)
        rc = take_sliced(r, peer, m, p, ss, st, em);
    else
        rc = take_window(r, peer, m, p->tree, p->syms, ss, st, em);
    repair_partsin_drop(p);
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
        rc = syms != NULL ? repair_symbols_put(a, syms) : ERR_NOMEM;
        uint64_t merged = 0, stored_before = st->stored;
        for (size_t i = 0; rc == 0 && i < a->n_spans && !r->closing; i++) {
            const Flamedb__Cluster__StreamSpan *m = a->spans[i];
            /* a format-7 source sends the bare tree, itself a format-7 value */
            const ProtobufCBinaryData *v = m->value.len > 0 ? &m->value : &m->calltree;
            size_t bytes = 0;
            rc = storage_stream_span_put_sized(r->storage, m->tenant, m->key.data, m->key.len,
                                               v->data, v->len, syms, &bytes, em);
            st->stored += bytes;
            if (rc == 0) {
                memcpy(ss->spans_after, m->key.data, m->key.len);
                ss->spans_after_len = m->key.len;
                merged++;
            }
        }
        size_t got = protobuf_c_message_get_packed_size(ans.body);
        st->bytes += got;
        ss->bytes += got;
        uv_mutex_lock(&r->mu);
        r->counters.span_trees += merged;
        r->counters.bytes += got;
        r->counters.stored_bytes += st->stored - stored_before;
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
    ss->check_kept = 0;
    snprintf(ss->check_src, sizeof ss->check_src, "%s", same ? peer : "");
    ss->check_s = r->stream_check_s;
    uv_mutex_lock(&r->mu);
    r->counters.checks_passed += (uint64_t)same;
    uv_mutex_unlock(&r->mu);
    cluster_msg_free(&ans);
    return 0;
}

/* The next keys of ss->fill_keys into q (v: batch entries, at most
 * --repair-fill-keys-batch), those of a skipped series left out (unless a
 * probe); *used how many of ss->fill_keys they took. */
static void fill_keys_request(const repair_stream_state_t *ss, ProtobufCBinaryData *v, size_t batch,
                              Flamedb__Cluster__RepairRequest *q, size_t *used)
{
    const repair_keys_t *k = ss->fill_keys;
    size_t i = ss->fill_key_next, n = 0;
    uint32_t dummy;
    for (; i < k->n && n < batch; i++) {
        if (!ss->fill_probe && ss->fill_skip != NULL &&
            u64map_get(ss->fill_skip, k->series[i], &dummy))
            continue;
        size_t from = i > 0 ? k->end[i - 1] : 0;
        v[n++] = (ProtobufCBinaryData){k->end[i] - from, k->b.data + from};
    }
    q->keys = v;
    q->n_keys = n;
    *used = i - ss->fill_key_next;
}

/* The stream protocol source's answer a was served in: what it says (3 and
 * up), else told by what it sent to a fill's first look (summaries or not;
 * an older source has no stream_version field). */
static uint32_t answer_version(const Flamedb__Cluster__RepairAnswer *a)
{
    if (a->stream_version >= REPAIR_STREAM_V_HASHES) return a->stream_version;
    return a->window_summaries ? REPAIR_STREAM_V_FILL : REPAIR_STREAM_V_WHOLE;
}

/* A tree look's answer a (stream protocol 4) into ss->fill_tree. */
static void take_tree(repair_stream_state_t *ss, const Flamedb__Cluster__RepairAnswer *a)
{
    repair_tree_look_t *t = ss->fill_tree;
    ss->fill_version = answer_version(a);
    if (a->tree_alike) {
        t->answered = 1;
        return;
    }
    /* checked on decode: a valid fanout, buckets below it */
    t->answered = 2;
    t->fanout = (uint32_t)a->n_tree_digests;
    memcpy(t->theirs, a->tree_digests, a->n_tree_digests * sizeof *t->theirs);
    t->n_inexact = a->n_tree_inexact;
    memcpy(t->inexact, a->tree_inexact, a->n_tree_inexact * sizeof *t->inexact);
}

/* The windows of answer a (syms: its symbols) taken, ss->after moved past
 * each; a fill's first look hands each summary to repair_fill_summary. */
static int take_answer(repair_t *r, const char *peer, const Flamedb__Cluster__RepairAnswer *a,
                       const symtab_t *syms, repair_partsin_t *parts, repair_stream_state_t *ss,
                       repair_stats_t *st, errmsg_t *em)
{
    int rc = 0;
    if (ss->fill_summary && ss->fill_version == 0 && a->n_windows > 0)
        ss->fill_version = answer_version(a);
    if (ss->fill_summary && a->n_windows > 0 && !a->window_summaries)
        ss->fill_old = 1; /* whole windows: a source that sends no summaries */
    if (ss->fill_tree != NULL && ss->fill_tree->descend && a->n_windows > 0 &&
        answer_version(a) < REPAIR_STREAM_V_TREE)
        ss->fill_tree->answered = 0; /* a source of 3 now (restarted): every window comes */
    if (ss->fill_tree != NULL && !ss->fill_tree->descend && (a->tree_alike || a->n_tree_digests)) {
        take_tree(ss, a);
        return 0;
    }
    uint8_t key[REPAIR_STREAM_KEY_MAX]; /* hashed summaries: the key of the one before */
    size_t key_len = 0;
    for (size_t i = 0; rc == 0 && i < a->n_windows && !r->closing && !ss->fill_old; i++) {
        const Flamedb__Cluster__StreamWindow *m = a->windows[i];
        int advance = 1;
        if (ss->fill_summary && a->summary_hashes) {
            rc = repair_fill_hashed(r, m, key, &key_len, ss, em);
            if (rc == 0) { /* m's key is its tail only */
                memcpy(ss->after, key, key_len);
                ss->after_len = key_len;
            }
            continue;
        } else if (ss->fill_summary) {
            rc = repair_fill_summary(r, m, ss, st, em);
        } else if (m->parts > 1) {
            rc = take_part(r, peer, m, a, parts, ss, st, &advance, em);
        } else {
            repair_partsin_drop(parts); /* the source sends it whole now */
            rc = take_window(r, peer, m, NULL, syms, ss, st, em);
        }
        if (rc == 0 && advance) { /* resume after it, also after a restart of the source */
            memcpy(ss->after, m->key.data, m->key.len);
            ss->after_len = m->key.len;
        }
    }
    return rc;
}

/* A batch of keys q asked for is answered (the source's page did not stop
 * early): past its last key, `used` entries of ss->fill_keys on; whether
 * keys are left to ask for. */
static int fill_keys_answered(repair_stream_state_t *ss, const Flamedb__Cluster__RepairRequest *q,
                              size_t used)
{
    if (q->n_keys > 0) {
        const ProtobufCBinaryData *l = &q->keys[q->n_keys - 1];
        memcpy(ss->after, l->data, l->len);
        ss->after_len = l->len;
    }
    ss->fill_key_next += used;
    return ss->fill_key_next < ss->fill_keys->n;
}

/* STREAM of ss's interval from where it stands into q (kv: room for a
 * fill's keys, or NULL); *used: the keys of ss->fill_keys it took. */
static void stream_request(const repair_t *r, const repair_stream_state_t *ss,
                           const repair_partsin_t *parts, ProtobufCBinaryData *kv,
                           Flamedb__Cluster__RepairRequest *q, size_t *used)
{
    repair_request_init(q, RK(STREAM), 0, 0);
    q->lo = ss->lo;
    q->hi = ss->hi;
    /* a fill wants the old windows only: the source leaves out the rest
     * (an older source sends them and repair_fill_wanted skips them); a
     * node capped at stream protocol 1 sends none of a fill's fields */
    int fill = r->o.stream_version >= REPAIR_STREAM_V_FILL;
    if (fill && ss->fill_until > 0) q->until_s = ss->fill_until;
    q->window_summaries = fill && ss->fill_summary;
    q->summary_hashes = q->window_summaries && ss->fill_hashes;
    const repair_tree_look_t *t = ss->fill_tree;
    if (q->summary_hashes && t != NULL && ss->fill_keys == NULL) { /* protocol 4 */
        q->tree_look = !t->descend;
        if (!t->descend) q->tree_root = repair_tree_root(&t->mine, &q->tree_count, NULL);
        q->tree_fanout = t->descend ? t->fanout : 0;
        if (t->descend)
            q->tree_buckets = (ProtobufCBinaryData){(t->fanout + 7) / 8, (uint8_t *)t->want};
    }
    *used = 0;
    if (kv != NULL) fill_keys_request(ss, kv, r->o.fill_keys_batch, q, used);
    q->after_key = (ProtobufCBinaryData){ss->after_len, (uint8_t *)ss->after};
    q->window_part = parts->next + 1;
    q->profile_slices = 1;
    q->symbol_pieces = 1;
    q->path_anchors = 1;
}

int repair_stream_walk(repair_t *r, const char *peer, repair_stream_state_t *ss, repair_stats_t *st,
                       repair_stream_page_fn page, errmsg_t *em)
{
    ProtobufCBinaryData *kv = NULL;
    if (ss->fill_keys != NULL) {
        kv = malloc(r->o.fill_keys_batch * sizeof *kv);
        if (kv == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    int rc = 0, more = 1;
    repair_partsin_t parts = {0};
    while (rc == 0 && more && !r->closing) {
        Flamedb__Cluster__RepairRequest q;
        size_t used;
        stream_request(r, ss, &parts, kv, &q, &used);
        cluster_msg_t ans = {0};
        if (kv != NULL && q.n_keys == 0) { /* no key left to ask for: no request */
            ss->fill_key_next = ss->fill_keys->n;
            more = 0;
        } else if ((rc = repair_call(r, peer, &q, &ans, em)) != 0) {
            break;
        } else {
            const Flamedb__Cluster__RepairAnswer *a = (const void *)ans.body;
            symtab_t *syms = symtab_new();
            rc = syms != NULL ? repair_symbols_put(a, syms) : ERR_NOMEM;
            uint64_t before = st->windows;
            if (rc == 0) rc = take_answer(r, peer, a, syms, &parts, ss, st, em);
            size_t got = protobuf_c_message_get_packed_size(ans.body);
            st->bytes += got;
            ss->windows += st->windows - before;
            ss->bytes += got;
            uv_mutex_lock(&r->mu);
            r->counters.windows += st->windows - before;
            r->counters.bytes += got;
            if (ss->fill_summary && a->window_summaries) {
                r->counters.fill_summary_bytes += got;
                if (ss->fill_keys == NULL)
                    r->counters.fill_summaries += a->n_windows;
                else
                    r->counters.fill_summary_ids += a->n_windows;
            }
            uv_mutex_unlock(&r->mu);
            more = a->more && a->n_windows > 0 && !ss->fill_old;
            if (kv != NULL && rc == 0 && !more) more = fill_keys_answered(ss, &q, used);
            symtab_free(syms);
            cluster_msg_free(&ans);
        }
        if (rc == 0 && ss->fill_old) break;    /* the caller walks as before */
        if (rc == 0 && !more && !r->closing) { /* walked to the end */
            ss->done = !ss->failed;
            ss->failed = 0;
            ss->after_len = 0; /* a walk again (after a left-out window) starts over */
        }
        if (page != NULL) page(r);
        repair_throttle(r, st);
    }
    repair_partsin_drop(&parts); /* a window cut short: from its first part next time */
    free(kv);
    return rc;
}

int repair_stream_interval(repair_t *r, const char *peer, repair_stream_state_t *ss,
                           repair_stats_t *st, repair_stream_page_fn page, errmsg_t *em)
{
    if (ss->done && ss->spans_done) return stream_check(r, peer, ss, em);
    if (ss->done) {
        int rc = stream_spans(r, peer, ss, st, page, em);
        return rc == 0 && ss->spans_done ? stream_check(r, peer, ss, em) : rc;
    }
    int rc = repair_stream_walk(r, peer, ss, st, page, em);
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
    ss->done = ss->spans_done = ss->checked = ss->failed = ss->check_kept = 0;
    ss->check_src[0] = '\0';
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
