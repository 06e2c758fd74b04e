/* ingest_series.c — the series one ingested profile splits into.
 *
 * A series is identified by its canonical labels (labels_hash), so two label
 * groups that spell the same set (for example through duplicate pprof strings)
 * land in one series. Each series owns its call tree and the span/trace trees
 * of its samples.
 */
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/grow.h"
#include "common/hash.h"
#include "node/ingest/ingest_int.h"
#include "ring/ring.h"

/* ---- series ---- */

int ingest_series_set_init(series_set_t *ss, const char *tenant, const ingest_limits_t *lim)
{
    memset(ss, 0, sizeof *ss);
    ss->lim = lim;
    ss->tenant = tenant;
    alloc_charge_init(&ss->charge, lim->inflight);
    ingest_series_set_budget(ss, 0);
    int rc = u64map_init(&ss->by_id, 16);
    ss->set_bytes = rc == 0 ? u64map_bytes(&ss->by_id) : 0; /* charged with the first series */
    return rc;
}

/* min(cap, max(floor, per_byte x bytes)), without overflow. */
static size_t budget_of(size_t cap, size_t per_byte, size_t floor, size_t bytes)
{
    size_t v;
    if (__builtin_mul_overflow(per_byte, bytes, &v)) v = SIZE_MAX;
    if (v < floor) v = floor;
    return v < cap ? v : cap;
}

void ingest_series_set_budget(series_set_t *ss, size_t payload_bytes)
{
    const ingest_limits_t *l = ss->lim;
    ss->payload = payload_bytes;
    ss->nodes_budget = l->max_request_nodes;
    ss->mem_budget =
        budget_of(SIZE_MAX, l->request_memory_per_byte, INGEST_REQUEST_MEMORY_FLOOR, payload_bytes);
    ss->work_budget = budget_of(l->max_request_work, l->request_work_per_byte,
                                INGEST_REQUEST_WORK_FLOOR, payload_bytes);
}

int ingest_series_charge_work(series_set_t *ss, size_t depth, errmsg_t *em)
{
    ss->work += depth + 1;
    if (ss->work <= ss->work_budget) return 0;
    return errmsg_set(em, ERR_TOO_LARGE,
                      "the push needs more than %zu stack frames of work (samples x sample types "
                      "x depth; ingest-max-request-work, ingest-request-work-per-byte)",
                      ss->work_budget);
}

int ingest_charge_reason(const alloc_budget_t *b, int rc, const char *what, errmsg_t *em)
{
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, rc,
                          "the push alone needs more memory than ingest-inflight-bytes (%zu "
                          "bytes): its decoded message, body, symbols and call trees passed it at "
                          "its %s",
                          b->limit, what);
    return errmsg_set(em, ERR_UNAVAILABLE,
                      "server busy: the pushes and replica writes in progress hold "
                      "ingest-inflight-bytes (%zu bytes); retry later",
                      b->limit);
}

int ingest_charge(series_set_t *ss, size_t n, const char *what, errmsg_t *em)
{
    if (n > ss->mem_budget || ss->mem > ss->mem_budget - n)
        return errmsg_set(em, ERR_TOO_LARGE,
                          "the push needs more than %zu bytes of memory at its %s (%zu per byte "
                          "of its %zu-byte payload, at least %u; "
                          "ingest-request-memory-per-byte)",
                          ss->mem_budget, what, ss->lim->request_memory_per_byte, ss->payload,
                          INGEST_REQUEST_MEMORY_FLOOR);
    int rc = alloc_charge_add(&ss->charge, n);
    if (rc != 0) return ingest_charge_reason(ss->charge.b, rc, what, em);
    ss->mem += n;
    if (ss->mem > ss->mem_peak) ss->mem_peak = ss->mem;
    return 0;
}

void ingest_uncharge(series_set_t *ss, size_t n)
{
    ASSERT_ALWAYS(n <= ss->mem);
    alloc_charge_sub(&ss->charge, n);
    ss->mem -= n;
}

/* Brings what *charged says is held to now, the bytes as allocated: the
 * growth charged (ingest_charge), what was freed given back. */
static int recharge(series_set_t *ss, size_t *charged, size_t now, const char *what, errmsg_t *em)
{
    if (now < *charged) {
        ingest_uncharge(ss, *charged - now);
        *charged = now;
        return 0;
    }
    int rc = now > *charged ? ingest_charge(ss, now - *charged, what, em) : 0;
    if (rc == 0) *charged = now;
    return rc;
}

/* What series s holds besides its span trees: its tree, labels, path cache,
 * the values kept apart from its tree and shadow values. */
static size_t series_bytes(const ingest_series_t *s)
{
    return calltree_mem_bytes(s->tree) + s->labels_bytes +
           s->path.cap * (sizeof *s->path.syms + sizeof *s->path.nodes) +
           s->vals.cap * (sizeof *s->vals.node + sizeof *s->vals.val) +
           s->shadow_cap * sizeof *s->shadow +
           s->pairs.cap * (sizeof *s->pairs.id + sizeof *s->pairs.val) +
           s->learn.cap * (sizeof *s->learn.node + sizeof *s->learn.key);
}

/* What the span index of a series holds besides its trees and their
 * pending samples (whose bytes are counted in a->tree_bytes as they grow):
 * the tree and pending-list arrays and the id maps. */
static size_t span_index_bytes(const span_acc_t *a)
{
    return a->cap * (sizeof *a->v + (a->pend != NULL ? sizeof *a->pend : 0)) +
           u64map_bytes(&a->index[0]) + u64map_bytes(&a->index[1]);
}

/* Counts the nodes a tree grew by (at most one stack's depth past the cap)
 * against the push's node cap. */
static int count_grown(series_set_t *ss, size_t grown, errmsg_t *em)
{
    ss->nodes += grown;
    if (ss->nodes <= ss->nodes_budget) return 0;
    return errmsg_set(em, ERR_TOO_LARGE,
                      "the push needs more than %zu call-tree nodes over all its series and span "
                      "trees (ingest-max-request-nodes)",
                      ss->nodes_budget);
}

/* Frees the pending samples of span k of a once its tree is kept. */
static void pending_drop(span_acc_t *a, size_t k)
{
    span_pending_t *p = &a->pend[k];
    a->tree_bytes -= p->cap * (sizeof *p->node + sizeof *p->val);
    free(p->node);
    free(p->val);
    free(p->at);
    *p = (span_pending_t){0};
}

static void pending_free(span_acc_t *a)
{
    for (size_t i = 0; a->pend != NULL && i < a->n; i++) {
        free(a->pend[i].node);
        free(a->pend[i].val);
        free(a->pend[i].at);
    }
    free(a->pend);
    a->pend = NULL;
}

static void span_acc_free(span_acc_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        calltree_free((calltree_t *)a->v[i].tree);
        free((void *)a->v[i].enc);
    }
    pending_free(a);
    free(a->v);
    u64map_free(&a->index[0]);
    u64map_free(&a->index[1]);
}

void ingest_series_set_free(series_set_t *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->v[i].path.syms);
        free(ss->v[i].path.nodes);
        free(ss->v[i].vals.node);
        free(ss->v[i].vals.val);
        free(ss->v[i].shadow);
        free(ss->v[i].pairs.id);
        free(ss->v[i].pairs.val);
        free(ss->v[i].learn.node);
        free(ss->v[i].learn.key);
        labels_free(ss->v[i].labels);
        calltree_free(ss->v[i].tree);
        span_acc_free(&ss->v[i].spans);
    }
    free(ss->v);
    free(ss->stack);
    u64map_free(&ss->by_id);
    alloc_charge_done(&ss->charge); /* gives back everything ingest_charge took */
    memset(ss, 0, sizeof *ss);
}

labels_t *ingest_series_labels(const labels_t *base, const char *name, const char *type_id)
{
    labels_t *l = labels_clone(base);
    if (l == NULL) return NULL;
    if (labels_set_str(l, LABEL_NAME, name) < 0 ||
        labels_set_str(l, LABEL_PROFILE_TYPE, type_id) < 0) {
        labels_free(l);
        return NULL;
    }
    return l;
}

int ingest_series_label_set(labels_t *l, const ingest_limits_t *lim, const char *k, size_t kn,
                            const char *v, size_t vn, errmsg_t *em)
{
    if (kn > lim->max_label_name_len)
        return errmsg_set(em, ERR_LIMIT,
                          "label name '%.*s...' longer than %zu bytes (max-label-name-len)",
                          (int)(kn > 40 ? 40 : kn), k, lim->max_label_name_len);
    if (vn > lim->max_label_value_len)
        return errmsg_set(em, ERR_LIMIT,
                          "value of label '%.*s' longer than %zu bytes (max-label-value-len)",
                          (int)(kn > 64 ? 64 : kn), k, lim->max_label_value_len);
    if (labels_set(l, k, kn, v, vn) < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
    if (labels_count(l) > lim->max_labels_per_series)
        return errmsg_set(em, ERR_LIMIT, "series has more than %zu labels (max-labels-per-series)",
                          lim->max_labels_per_series);
    return 0;
}

static int grow_series(series_set_t *ss)
{
    return GROW_FROM(ss->v, ss->cap, ss->n + 1, GROW_UNLIMITED, 8) == 0 ? 0 : ERR_NOMEM;
}

int ingest_series_get(series_set_t *ss, labels_t *labels, uint32_t *idx, errmsg_t *em)
{
    if (labels_count(labels) > ss->lim->max_labels_per_series) {
        labels_free(labels);
        return errmsg_set(em, ERR_LIMIT, "series has more than %zu labels (max-labels-per-series)",
                          ss->lim->max_labels_per_series);
    }
    uint64_t id = labels_hash(labels);
    if (u64map_get(&ss->by_id, id, idx)) {
        labels_free(labels);
        return 0;
    }
    if (ss->n >= ss->lim->max_series_per_profile) {
        labels_free(labels);
        return errmsg_set(em, ERR_LIMIT,
                          "profile splits into more than %zu series (max-series-per-profile); "
                          "a sample label probably has too many distinct values",
                          ss->lim->max_series_per_profile);
    }
    const char *svc = labels_get(labels, LABEL_SERVICE_NAME);
    calltree_t *t = calltree_new_unnamed(ss->lim->max_tree_nodes);
    if (t == NULL || grow_series(ss) < 0 || u64map_put(&ss->by_id, id, (uint32_t)ss->n) < 0) {
        calltree_free(t);
        labels_free(labels);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    ingest_series_t *s = &ss->v[ss->n];
    memset(s, 0, sizeof *s);
    s->labels = labels;
    s->labels_bytes = labels_mem_bytes(labels);
    s->series_id = id;
    s->token = ring_placement_token(ss->tenant, svc ? svc : "",
                                    ring_series_shard(ring_shard_key(labels, id, &ss->lim->shards),
                                                      ring_shards_for(&ss->lim->shards, svc)));
    s->tree = t;
    s->vals.on = true;
    s->shape_of = UINT32_MAX;
    *idx = (uint32_t)ss->n++;
    /* the series table and id map as allocated, then the new series */
    int rc = recharge(ss, &ss->set_charged,
                      ss->cap * sizeof *ss->v + u64map_bytes(&ss->by_id) + ss->set_bytes,
                      "series table", em);
    return rc < 0 ? rc : recharge(ss, &s->charged, series_bytes(s), "call trees", em);
}

static int tree_limit(int rc, errmsg_t *em, const ingest_limits_t *lim)
{
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "call tree of a series exceeds %zu nodes (ingest-max-tree-nodes)",
                          lim->max_tree_nodes);
    if (rc < 0) return errmsg_set(em, rc, "adding a stack failed");
    return 0;
}

static int path_reserve(path_cache_t *pc, size_t depth)
{
    if (depth <= pc->cap) return 0;
    size_t c1 = pc->cap, c2 = pc->cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(pc->syms, c1, depth, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(pc->nodes, c2, depth, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    pc->cap = c1;
    return 0;
}

/* Gives series s's tree the values kept apart (calltree_add_selves: an
 * array of its node count), and frees them. */
static int values_to_tree(ingest_series_t *s)
{
    value_list_t *l = &s->vals;
    int rc = calltree_add_selves(s->tree, l->node, l->val, l->n);
    if (rc != 0) return rc;
    free(l->node);
    free(l->val);
    *l = (value_list_t){0};
    return 0;
}

/* Adds value v of a sample to node of series s: to its tree when it holds
 * its values, else to the list kept apart (see value_list_t), which is
 * given to the tree instead of growing once it would hold more than the
 * tree's values would (12 bytes an entry, 8 a node). */
static int value_add(ingest_series_t *s, uint32_t node, int64_t v)
{
    value_list_t *l = &s->vals;
    if (!l->on) {
        calltree_add_self(s->tree, node, v);
        return 0;
    }
    if (l->n > 0 && l->node[l->n - 1] == node) { /* the same stack again */
        l->val[l->n - 1] = (int64_t)((uint64_t)l->val[l->n - 1] + (uint64_t)v);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap < 64 ? 64 : l->cap + l->cap / 2;
        if (l->cap > 0 && cap * (sizeof *l->node + sizeof *l->val) >
                              calltree_node_count(s->tree) * sizeof(int64_t)) {
            int rc = values_to_tree(s);
            if (rc == 0) calltree_add_self(s->tree, node, v);
            return rc;
        }
        uint32_t *n = realloc(l->node, cap * sizeof *n);
        if (n != NULL) l->node = n;
        int64_t *p = n != NULL ? realloc(l->val, cap * sizeof *p) : NULL;
        if (p == NULL) return ERR_NOMEM;
        l->val = p;
        l->cap = cap;
    }
    l->node[l->n] = node;
    l->val[l->n++] = v;
    return 0;
}

uint32_t ingest_series_sym_at(uint32_t i)
{
    ASSERT_ALWAYS(i < CALLTREE_NONE - 1);
    return i + 1;
}

/* calltree_add_stack, reusing the node path of the previous stack's common
 * prefix (totals are not kept: the tree computes them if they are read). */
int ingest_series_add(series_set_t *ss, uint32_t idx, const uint32_t *stack, size_t depth,
                      int64_t v, errmsg_t *em)
{
    ingest_series_t *s = &ss->v[idx];
    path_cache_t *pc = &s->path;
    int rc = ingest_series_charge_work(ss, depth, em);
    if (rc < 0) return rc;
    size_t path_cap = pc->cap, vals_cap = s->vals.cap;
    if (path_reserve(pc, depth) < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
    size_t before = calltree_node_count(s->tree);
    size_t i = 0, common = pc->depth < depth ? pc->depth : depth;
    while (i < common && pc->syms[i] == stack[i])
        i++;
    uint32_t node = i ? pc->nodes[i - 1] : 0;
    for (; i < depth; i++) {
        rc = calltree_child_index(s->tree, node, stack[i], &node);
        if (rc < 0) {
            pc->depth = i; /* the path up to here is valid */
            int charged = recharge(ss, &s->charged, series_bytes(s), "call trees", em);
            return charged < 0 ? charged : tree_limit(rc, em, ss->lim);
        }
        pc->syms[i] = stack[i];
        pc->nodes[i] = node;
    }
    pc->depth = depth;
    if (value_add(s, node, v) < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
    s->last_node = node;
    s->last_grown = calltree_node_count(s->tree) - before;
    if (s->last_grown == 0 && pc->cap == path_cap && s->vals.cap == vals_cap)
        return 0; /* nothing was allocated */
    if ((rc = count_grown(ss, s->last_grown, em)) < 0) return rc;
    return recharge(ss, &s->charged, series_bytes(s), "call trees", em);
}

int ingest_series_add_id(series_set_t *ss, uint32_t idx, uint32_t id, int64_t v, errmsg_t *em)
{
    ingest_series_t *s = &ss->v[idx];
    id_pairs_t *p = &s->pairs;
    if (p->n == p->cap) {
        size_t c1 = p->cap, c2 = p->cap; /* parallel arrays: both grow alike */
        if (GROW_FROM(p->id, c1, p->n + 1, GROW_UNLIMITED, 4) != 0 ||
            GROW_FROM(p->val, c2, p->n + 1, GROW_UNLIMITED, 4) != 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        p->cap = c1;
        int rc = recharge(ss, &s->charged, series_bytes(s), "call trees", em);
        if (rc < 0) return rc;
    }
    p->id[p->n] = id;
    p->val[p->n++] = v;
    return 0;
}

int ingest_series_learn(series_set_t *ss, uint32_t idx, const stack_key_t *k, errmsg_t *em)
{
    ingest_series_t *s = &ss->v[idx];
    stack_learn_t *l = &s->learn;
    if (l->n == l->cap) {
        size_t c1 = l->cap, c2 = l->cap;
        if (GROW_FROM(l->node, c1, l->n + 1, GROW_UNLIMITED, 4) != 0 ||
            GROW_FROM(l->key, c2, l->n + 1, GROW_UNLIMITED, 4) != 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        l->cap = c1;
        int rc = recharge(ss, &s->charged, series_bytes(s), "call trees", em);
        if (rc < 0) return rc;
    }
    l->node[l->n] = s->last_node;
    l->key[l->n++] = *k;
    return 0;
}

/* Index value of an id whose tree was not kept (the cap was reached). */
#define SPAN_DROPPED (U64MAP_EMPTY - 1) /* indices stay below max_spans_per_series */

/* What a's index and trees hold, charged as they grow. */
static int recharge_spans(series_set_t *ss, span_acc_t *a, errmsg_t *em)
{
    return recharge(ss, &a->charged, span_index_bytes(a) + a->tree_bytes, "span trees", em);
}

/* The cap counts span and trace trees together: both kinds share a->v. */
int ingest_series_add_span(series_set_t *ss, uint32_t idx, uint8_t kind, uint64_t id, uint32_t node,
                           size_t depth, int64_t v, errmsg_t *em)
{
    span_acc_t *a = &ss->v[idx].spans;
    u64map_t *m = &a->index[kind == STORAGE_SPAN_KIND_TRACE ? 1 : 0];
    uint32_t i;
    int found = u64map_get(m, id, &i);
    if (found && i == SPAN_DROPPED) return 0;
    int rc = ingest_series_charge_work(ss, depth, em);
    if (rc < 0) return rc;
    if (!found) {
        if (a->n >= ss->lim->max_spans_per_series) { /* remembered, so counted once */
            if (u64map_put(m, id, SPAN_DROPPED) < 0)
                return errmsg_set(em, ERR_NOMEM, "out of memory");
            ss->spans_dropped++;
            return recharge_spans(ss, a, em);
        }
        size_t c1 = a->cap, c2 = a->cap; /* parallel arrays: both grow alike */
        if (GROW_FROM(a->v, c1, a->n + 1, GROW_UNLIMITED, 4) != 0 ||
            GROW_FROM(a->pend, c2, a->n + 1, GROW_UNLIMITED, 4) != 0 ||
            u64map_put(m, id, (uint32_t)a->n) < 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        a->cap = c1;
        a->v[a->n] = (storage_span_tree_t){.kind = kind, .id = id};
        a->pend[a->n] = (span_pending_t){0};
        i = (uint32_t)a->n++;
    }
    span_pending_t *p = &a->pend[i];
    if (p->n > 0 && p->node[p->n - 1] == node) { /* the same stack again: one entry */
        p->val[p->n - 1] = (int64_t)((uint64_t)p->val[p->n - 1] + (uint64_t)v);
        return 0;
    }
    if (p->n == p->cap) {
        size_t c1 = p->cap, c2 = p->cap;
        if (GROW_FROM(p->node, c1, p->n + 1, GROW_UNLIMITED, 8) != 0 ||
            GROW_FROM(p->val, c2, p->n + 1, GROW_UNLIMITED, 8) != 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        a->tree_bytes += (c1 - p->cap) * (sizeof *p->node + sizeof *p->val);
        p->cap = c1;
    }
    p->node[p->n] = node;
    p->val[p->n++] = v;
    return recharge_spans(ss, a, em);
}

/* The nodes of ref from the root down to `node` that memo does not map yet
 * into the span tree t, in that order (as calltree_add_stack would create
 * them), then node's value; *at = node's node in t. memo maps ref's nodes
 * to t's (UINT32_MAX: not yet); the nodes mapped are listed in touched.
 * path has room for the deepest stack. */
static int span_place(calltree_t *t, const calltree_node_t *ref, const uint64_t *rsym,
                      uint32_t node, int64_t v, uint32_t *memo, uint32_t *touched, size_t *ntouched,
                      uint32_t *path, uint32_t *at)
{
    size_t up = 0;
    for (uint32_t n = node; memo[n] == UINT32_MAX; n = ref[n].parent)
        path[up++] = n;
    while (up > 0) {
        uint32_t n = path[--up];
        int rc = calltree_child(t, memo[ref[n].parent], rsym[ref[n].sym_index], &memo[n]);
        if (rc != 0) return rc;
        touched[(*ntouched)++] = n;
    }
    calltree_add_self(t, memo[node], v);
    *at = memo[node];
    return 0;
}

/* The tree whose nodes the pending samples of s name. */
static const calltree_t *span_ref(const series_set_t *ss, const ingest_series_t *s)
{
    return s->shape_of == UINT32_MAX ? s->tree : ss->v[s->shape_of].tree;
}

/* Scratch of spans_finish, charged while it is held: the map from series
 * tree nodes to span tree nodes, the followers of each leader series, the
 * encoding of one tree, and what its transient trees hold. */
typedef struct span_work {
    uint32_t *memo, *touched; /* per node of the largest series tree */
    uint32_t *first, *next;   /* per series: its first follower, the next one */
    buf_t enc;
    size_t held;    /* bytes of the trees being made and encoded, charged */
    size_t charged; /* bytes of the arrays and enc's room, charged */
} span_work_t;

/* An encoding at least this long is kept in the buffer it was made in
 * (cut to its length) rather than copied, so a large span tree's encoding
 * is not held twice. */
#define SPAN_ENC_HANDOVER 65536

/* Keeps span tree k of a as its encoding (exact size), what the push holds
 * of it from then on; the tree itself is the caller's to free. */
static int span_keep(series_set_t *ss, span_work_t *wk, span_acc_t *a, size_t k,
                     const calltree_t *t, errmsg_t *em)
{
    buf_reset(&wk->enc);
    size_t room = wk->enc.cap, before = calltree_mem_bytes(t);
    /* what the encoding allocates besides its buffer, charged while it
     * runs; the links (and values) it makes are t's from then on */
    size_t scratch = calltree_encode_scratch_bytes(t);
    int rc = ingest_charge(ss, scratch, "span trees", em);
    if (rc < 0) return rc;
    rc = calltree_encode(t, &wk->enc);
    size_t kept = calltree_mem_bytes(t) - before;
    if (kept > scratch) kept = scratch;
    wk->held += kept;
    ingest_uncharge(ss, scratch - kept);
    if (rc != 0) return errmsg_set(em, rc, "encoding a span tree failed");
    if (wk->enc.cap != room &&
        (rc = recharge(ss, &wk->charged, wk->charged + wk->enc.cap - room, "span trees", em)) < 0)
        return rc;
    size_t len = wk->enc.len;
    uint8_t *e = NULL;
    if (len >= SPAN_ENC_HANDOVER) { /* the buffer itself, its room given back */
        e = realloc(wk->enc.data, len);
        if (e == NULL) e = wk->enc.data;
        ingest_uncharge(ss, wk->enc.cap); /* counted in tree_bytes from now on */
        wk->charged -= wk->enc.cap;
        buf_init(&wk->enc, BUF_UNLIMITED);
    } else if ((e = malloc(len)) != NULL) {
        memcpy(e, wk->enc.data, len);
    }
    if (e == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    a->v[k].enc = e;
    a->v[k].enc_len = len;
    a->tree_bytes += len;
    return recharge_spans(ss, a, em);
}

/* Makes span tree k of a (series s) node by node from its pending samples
 * (nodes of ref), in *out (caller frees), charged in wk->held; with
 * keep_at, each sample's node in it in pend[k].at, for the followers. */
static int span_make(series_set_t *ss, const ingest_series_t *s, span_acc_t *a, size_t k,
                     span_work_t *wk, bool keep_at, calltree_t **out, errmsg_t *em)
{
    span_pending_t *p = &a->pend[k];
    calltree_t *t = *out = calltree_new_small(ss->lim->max_tree_nodes);
    uint32_t scratch;
    uint32_t *at = keep_at ? (p->at = malloc((p->n ? p->n : 1) * sizeof *p->at)) : &scratch;
    if (t == NULL || at == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    const calltree_node_t *nd = calltree_nodes(span_ref(ss, s));
    size_t ntouched = 0;
    int rc = 0;
    const uint64_t *rsym = calltree_syms(span_ref(ss, s));
    for (size_t j = 0; j < p->n && rc == 0; j++)
        rc = span_place(t, nd, rsym, p->node[j], p->val[j], wk->memo, wk->touched, &ntouched,
                        ss->stack, keep_at ? &at[j] : at);
    for (size_t j = 0; j < ntouched; j++) /* memo back to unmapped for the next tree */
        wk->memo[wk->touched[j]] = UINT32_MAX;
    if (rc != 0) return tree_limit(rc, em, ss->lim);
    size_t bytes = calltree_mem_bytes(t) + (keep_at ? p->n * sizeof *p->at : 0);
    if ((rc = recharge(ss, &wk->held, bytes, "span trees", em)) < 0) return rc;
    return count_grown(ss, calltree_node_count(t) - 1, em);
}

/* The span trees of leader series li's followers for the span of its
 * tree t (samples lp): a follower whose samples of that span name the
 * same nodes in the same order has t's shape with its own values
 * (calltree_copy_shape), encoded at once; the others are made alone. */
static int span_follow(series_set_t *ss, span_work_t *wk, uint32_t li,
                       const storage_span_tree_t *sp, const span_pending_t *lp, const calltree_t *t,
                       errmsg_t *em)
{
    int rc = 0;
    for (uint32_t f = wk->first[li]; f != UINT32_MAX && rc == 0; f = wk->next[f]) {
        span_acc_t *fa = &ss->v[f].spans;
        uint32_t k;
        if (!u64map_get(&fa->index[sp->kind == STORAGE_SPAN_KIND_TRACE ? 1 : 0], sp->id, &k) ||
            k == SPAN_DROPPED)
            continue;
        const span_pending_t *fp = &fa->pend[k];
        if (fp->n != lp->n || memcmp(fp->node, lp->node, lp->n * sizeof *lp->node) != 0) continue;
        calltree_t *ft = calltree_new_small(ss->lim->max_tree_nodes);
        rc = ft == NULL ? ERR_NOMEM : calltree_copy_shape(ft, t);
        for (size_t j = 0; j < fp->n && rc == 0; j++)
            calltree_add_self(ft, lp->at[j], fp->val[j]);
        /* t and ft (the shape counted once over both, its links made) */
        size_t at = lp->n * sizeof *lp->at;
        if (rc != 0)
            rc = tree_limit(rc, em, ss->lim);
        else if ((rc = recharge(ss, &wk->held, at + calltree_mem_bytes(t) + calltree_mem_bytes(ft),
                                "span trees", em)) == 0)
            rc = span_keep(ss, wk, fa, k, ft, em);
        calltree_free(ft);
        if (rc == 0) {
            pending_drop(fa, k);
            rc = recharge(ss, &wk->held, at + calltree_mem_bytes(t), "span trees", em);
            if (rc == 0) rc = recharge_spans(ss, fa, em); /* only gives back */
        }
    }
    return rc;
}

/* Makes, encodes and frees span tree k of series i, then (a leader's) its
 * followers' trees of that span from its shape. */
static int span_one(series_set_t *ss, span_work_t *wk, uint32_t i, size_t k, errmsg_t *em)
{
    ingest_series_t *s = &ss->v[i];
    span_acc_t *a = &s->spans;
    bool lead = s->shape_of == UINT32_MAX && wk->first[i] != UINT32_MAX;
    calltree_t *t = NULL;
    int rc = span_make(ss, s, a, k, wk, lead, &t, em);
    if (rc == 0 && !lead) { /* its samples are in t now: given back first */
        pending_drop(a, k);
        rc = recharge_spans(ss, a, em);
    }
    if (rc == 0) rc = span_keep(ss, wk, a, k, t, em);
    if (rc == 0 && lead) rc = span_follow(ss, wk, i, &a->v[k], &a->pend[k], t, em);
    calltree_free(t);
    if (rc != 0) return rc;
    pending_drop(a, k);
    recharge(ss, &wk->held, 0, "span trees", em); /* only gives back */
    return recharge_spans(ss, a, em);             /* only gives back */
}

static int span_work_init(series_set_t *ss, span_work_t *wk, size_t most, errmsg_t *em)
{
    memset(wk, 0, sizeof *wk);
    buf_init(&wk->enc, BUF_UNLIMITED);
    size_t bytes = 2 * (most + ss->n) * sizeof(uint32_t);
    int rc = recharge(ss, &wk->charged, bytes, "span trees", em);
    if (rc < 0) return rc;
    wk->memo = malloc(most * sizeof *wk->memo);
    wk->touched = malloc(most * sizeof *wk->touched);
    wk->first = malloc(ss->n * sizeof *wk->first);
    wk->next = malloc(ss->n * sizeof *wk->next);
    if (!wk->memo || !wk->touched || !wk->first || !wk->next)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    memset(wk->memo, 0xff, most * sizeof *wk->memo);
    wk->memo[0] = 0; /* the roots */
    memset(wk->first, 0xff, ss->n * sizeof *wk->first);
    for (uint32_t i = (uint32_t)ss->n; i-- > 0;) {
        uint32_t l = ss->v[i].shape_of;
        wk->next[i] = l == UINT32_MAX ? UINT32_MAX : wk->first[l];
        if (l != UINT32_MAX) wk->first[l] = i;
    }
    return 0;
}

static void span_work_free(series_set_t *ss, span_work_t *wk)
{
    free(wk->memo);
    free(wk->touched);
    free(wk->first);
    free(wk->next);
    buf_free(&wk->enc);
    ingest_uncharge(ss, wk->held + wk->charged);
}

/* Makes every span and trace tree from its pending samples, one at a
 * time, and keeps it encoded (calltree_encode: a few bytes a node, where
 * the tree holds 28 to 45), so the push never holds more than one span
 * tree (and its followers' one at a time) besides the encodings. Each node
 * of a tree is looked up once, where adding every sample's stack looked up
 * each of its frames, and a follower series' tree (another sample type of
 * the same samples) is made from its leader's shape instead of node by
 * node. A span's pending samples are freed once its tree is made (what an
 * error leaves, at the end). */
static int spans_finish(series_set_t *ss, errmsg_t *em)
{
    size_t most = 0;
    for (size_t i = 0; i < ss->n; i++)
        if (ss->v[i].spans.n > 0 && calltree_node_count(span_ref(ss, &ss->v[i])) > most)
            most = calltree_node_count(span_ref(ss, &ss->v[i]));
    if (most == 0) return 0;
    span_work_t wk;
    int rc = span_work_init(ss, &wk, most, em);
    for (int followers = 0; followers < 2; followers++)
        for (uint32_t i = 0; i < ss->n && rc == 0; i++) {
            span_acc_t *a = &ss->v[i].spans;
            if ((ss->v[i].shape_of != UINT32_MAX) != followers) continue;
            for (size_t k = 0; k < a->n && rc == 0; k++)
                if (a->v[k].enc == NULL) rc = span_one(ss, &wk, i, k, em);
        }
    for (size_t i = 0; i < ss->n; i++) {
        span_acc_t *a = &ss->v[i].spans;
        pending_free(a);
        a->tree_bytes = 0;
        for (size_t k = 0; k < a->n; k++)
            a->tree_bytes += a->v[k].enc_len;
        if (rc == 0) rc = recharge_spans(ss, a, em); /* only gives back */
    }
    span_work_free(ss, &wk);
    return rc;
}

int ingest_series_stack_reserve(series_set_t *ss, size_t depth, errmsg_t *em)
{
    if (depth > ss->lim->max_stack_depth)
        return errmsg_set(em, ERR_LIMIT, "stack of %zu frames is deeper than %zu (max-stack-depth)",
                          depth, ss->lim->max_stack_depth);
    if (depth <= ss->stack_cap) return 0;
    size_t old = ss->stack_cap, c1 = old;
    if (GROW_FROM(ss->stack, c1, depth, GROW_UNLIMITED, 64) != 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    ss->stack_cap = c1;
    ss->set_bytes += (ss->stack_cap - old) * sizeof *ss->stack;
    return recharge(ss, &ss->set_charged,
                    ss->cap * sizeof *ss->v + u64map_bytes(&ss->by_id) + ss->set_bytes,
                    "stack scratch", em);
}

/* v * k with two's-complement wrap-around, as the trees add. */
static int64_t wmul(int64_t v, int64_t k)
{
    return (int64_t)((uint64_t)v * (uint64_t)k);
}

/* True while v (series s's value) is s->scale times lv (its leader's, in
 * the same sample); the first sample sets the scale when it divides. */
static bool still_scaled(ingest_series_t *s, int64_t v, int64_t lv)
{
    if (s->shadowed || lv == 0) return false;
    if (s->scale == 0 && !(lv == -1 && v == INT64_MIN) && v % lv == 0) s->scale = v / lv;
    return s->scale != 0 && wmul(lv, s->scale) == v;
}

/* Series s stops following its leader l by a scale: its values so far
 * (scale times l's selves, but for the current sample's lv at l's last
 * node, which the caller adds as s's own value) go to its shadow. */
static int unscale(series_set_t *ss, ingest_series_t *s, const ingest_series_t *l, int64_t lv,
                   errmsg_t *em)
{
    s->shadowed = true;
    if (s->scale == 0) return 0; /* nothing added yet: the shadow starts empty */
    size_t n = calltree_node_count(l->tree);
    int rc = ingest_charge(ss, n * sizeof *s->shadow, "call-tree values", em);
    if (rc < 0) return rc;
    s->charged += n * sizeof *s->shadow;
    s->shadow = malloc(n * sizeof *s->shadow);
    if (s->shadow == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    s->shadow_cap = n;
    if (l->vals.on) { /* the leader's values are still kept apart */
        memset(s->shadow, 0, n * sizeof *s->shadow);
        for (size_t i = 0; i < l->vals.n; i++)
            s->shadow[l->vals.node[i]] = (int64_t)((uint64_t)s->shadow[l->vals.node[i]] +
                                                   (uint64_t)wmul(l->vals.val[i], s->scale));
    } else {
        const int64_t *ls = calltree_selves(l->tree);
        if (ls == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            s->shadow[i] = wmul(ls[i], s->scale);
    }
    s->shadow[l->last_node] =
        (int64_t)((uint64_t)s->shadow[l->last_node] - (uint64_t)wmul(lv, s->scale));
    return 0;
}

int ingest_series_add_shadow(series_set_t *ss, uint32_t idx, uint32_t leader, size_t depth,
                             int64_t v, int64_t lv, errmsg_t *em)
{
    ingest_series_t *s = &ss->v[idx];
    const ingest_series_t *l = &ss->v[leader];
    ASSERT_ALWAYS(leader != idx && (s->shape_of == UINT32_MAX || s->shape_of == leader));
    ASSERT_ALWAYS(l->shape_of == UINT32_MAX);
    int rc = ingest_series_charge_work(ss, depth, em);
    if (rc < 0) return rc;
    size_t n = calltree_node_count(l->tree);
    s->shape_of = leader;
    if (!s->shadowed) {
        if (still_scaled(s, v, lv)) return count_grown(ss, l->last_grown, em);
        if ((rc = unscale(ss, s, l, lv, em)) < 0) return rc;
    }
    if (n > s->shadow_cap) { /* by half again, as the leader's value arrays */
        size_t old = s->shadow_cap, cap = old < 64 ? 64 : old + old / 2;
        int64_t *p = realloc(s->shadow, (cap < n ? n : cap) * sizeof *p);
        if (p == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
        s->shadow = p;
        s->shadow_cap = cap < n ? n : cap;
        memset(s->shadow + old, 0, (s->shadow_cap - old) * sizeof *s->shadow);
        if ((rc = recharge(ss, &s->charged, series_bytes(s), "call trees", em)) < 0) return rc;
    }
    s->shadow[l->last_node] = (int64_t)((uint64_t)s->shadow[l->last_node] + (uint64_t)v);
    /* its tree will have the leader's nodes: they count as its own */
    return count_grown(ss, l->last_grown, em);
}

/* Gives a shadowed series its leader's shape: a series still its
 * leader's values times a scale becomes a scaled tree of them
 * (calltree_adopt_scaled: no values of its own); another's shadow becomes
 * its self values (calltree_adopt_shape: no second array of them), charged
 * the selves past the shadow before they are allocated. */
static int unshadow(series_set_t *ss, ingest_series_t *s, errmsg_t *em)
{
    const calltree_t *shape = ss->v[s->shape_of].tree;
    int rc;
    if (!s->shadowed) {
        if ((rc = calltree_adopt_scaled(s->tree, shape, s->scale)) != 0)
            return errmsg_set(em, rc, "copying a call tree failed");
        return 0;
    }
    size_t n = calltree_node_count(shape), have = s->shadow_cap < n ? s->shadow_cap : n;
    size_t more = (n - have) * sizeof(int64_t);
    if ((rc = ingest_charge(ss, more, "call-tree values", em)) < 0) return rc;
    s->charged += more;
    int64_t *selves = s->shadow;
    s->shadow = NULL; /* adopted, or freed on error */
    s->shadow_cap = 0;
    if ((rc = calltree_adopt_shape(s->tree, shape, selves, have)) != 0)
        return errmsg_set(em, rc, "copying a call tree failed");
    return 0;
}

static uint64_t push_sym(const void *symtab, uint32_t si)
{
    return symtab_id_at(symtab, si - 1);
}

/* Each leader series' tree gets its own list of the symbols it names
 * (8 bytes a symbol; the push's indices were its names while it grew),
 * with a scratch of 4 bytes a push symbol charged while it is held. */
static int name_trees(series_set_t *ss, const symtab_t *symtab, errmsg_t *em)
{
    size_t n = symtab_count(symtab) + 1, bytes = n * sizeof(uint32_t);
    int rc = ingest_charge(ss, bytes, "symbol names", em);
    if (rc < 0) return rc;
    uint32_t *mark = calloc(n, sizeof *mark);
    if (mark == NULL) rc = errmsg_set(em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ss->n && rc == 0; i++) {
        ingest_series_t *s = &ss->v[i];
        if (s->shape_of != UINT32_MAX) continue; /* made from its leader's */
        if (calltree_name_syms(s->tree, push_sym, symtab, mark) < 0)
            rc = errmsg_set(em, ERR_NOMEM, "out of memory");
        else
            rc = recharge(ss, &s->charged, series_bytes(s), "call trees", em);
    }
    free(mark);
    ingest_uncharge(ss, bytes);
    return rc;
}

int ingest_series_finish(series_set_t *ss, const symtab_t *symtab, errmsg_t *em)
{
    /* The trees are done growing and are held until the push is stored:
     * they give back their growth room and edge tables (and the path
     * caches) first, then name their symbols, before the span trees are
     * made from them. */
    for (size_t i = 0; i < ss->n; i++) {
        ingest_series_t *s = &ss->v[i];
        free(s->path.syms);
        free(s->path.nodes);
        s->path = (path_cache_t){0};
        if (s->shape_of == UINT32_MAX) calltree_shrink(s->tree);
        if (series_bytes(s) < s->charged) /* only gives back: cannot fail */
            recharge(ss, &s->charged, series_bytes(s), "call trees", em);
    }
    int rc = name_trees(ss, symtab, em);
    if (rc == 0) rc = spans_finish(ss, em);
    if (rc < 0) return rc;
    /* the values kept apart go to their trees (charged first: an array of
     * the nodes), before the followers' trees are made from them */
    for (size_t i = 0; i < ss->n; i++) {
        ingest_series_t *s = &ss->v[i];
        if (s->shape_of != UINT32_MAX || !s->vals.on) continue;
        size_t more = calltree_node_count(s->tree) * sizeof(int64_t);
        if ((rc = ingest_charge(ss, more, "call-tree values", em)) < 0) return rc;
        s->charged += more;
        if (values_to_tree(s) < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
        recharge(ss, &s->charged, series_bytes(s), "call trees", em); /* only gives back */
    }
    for (size_t i = 0; i < ss->n; i++) {
        ingest_series_t *s = &ss->v[i];
        rc = s->shape_of == UINT32_MAX ? 0 : unshadow(ss, s, em);
        if (rc < 0) return rc;
    }
    /* What every series holds now (a shared shape counts once over its
     * trees): what was freed is given back first, then the rest charged. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < ss->n; i++) {
            ingest_series_t *s = &ss->v[i];
            size_t now = series_bytes(s);
            if ((pass == 0) != (now < s->charged)) continue;
            rc = recharge(ss, &s->charged, now, "call trees", em);
            if (rc < 0) return rc;
        }
    return 0;
}
