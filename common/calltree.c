/* calltree.c — call trees and their encoding (see calltree.h).
 *
 * Nodes live in one array; a node is always created after its parent, so
 * index order is a topological order (parents first). That makes merge a
 * single pass over the source. Children are found through an open-addressing
 * table keyed by (parent, symbol) and linked parent -> first_child ->
 * next_sibling for traversal. */
#include "common/calltree.h"

#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/edgemap.h"
#include "common/err.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "common/varint.h"

typedef calltree_node_t ct_node_t;

struct calltree {
    ct_node_t *nodes;
    size_t count, cap;
    size_t max_nodes;
    edgemap_t edges; /* (parent, sym) -> node; the root is not in it */
};

/* Values add with two's-complement wrap-around: exact for every sum that fits
 * in an int64 (deltas may go negative and back), and never undefined
 * behaviour on hostile input near the limits. */
static inline int64_t wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

#define WADD(lhs, v) ((lhs) = wadd((lhs), (v)))

static int grow_nodes(calltree_t *t)
{
    return GROW_FROM(t->nodes, t->cap, t->count + 1, GROW_UNLIMITED, 64);
}

int calltree_reserve(calltree_t *t, size_t nodes)
{
    size_t want = t->count + nodes;
    if (want > t->max_nodes) want = t->max_nodes;
    if (want > t->cap) {
        ct_node_t *n = realloc(t->nodes, want * sizeof *n);
        if (n == NULL) return ERR_NOMEM;
        t->nodes = n;
        t->cap = want;
    }
    return edgemap_reserve(&t->edges, want);
}

/* A tree with room for `initial` nodes (and their edges) before it grows. */
static calltree_t *new_tree(size_t max_nodes, size_t initial)
{
    calltree_t *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->max_nodes = max_nodes == 0 ? (size_t)UINT32_MAX - 1 : max_nodes;
    if (GROW_FROM(t->nodes, t->cap, 1, GROW_UNLIMITED, initial) != ERR_OK ||
        edgemap_reserve(&t->edges, initial) != ERR_OK) {
        calltree_free(t);
        return NULL;
    }
    t->nodes[0] = (ct_node_t){SYM_ROOT, 0, 0, CALLTREE_NONE, CALLTREE_NONE, CALLTREE_NONE};
    t->count = 1;
    return t;
}

calltree_t *calltree_new(size_t max_nodes)
{
    return new_tree(max_nodes, 64);
}

calltree_t *calltree_new_small(size_t max_nodes)
{
    return new_tree(max_nodes, 4);
}

void calltree_free(calltree_t *t)
{
    if (t == NULL) return;
    free(t->nodes);
    edgemap_free(&t->edges);
    free(t);
}

void calltree_clear(calltree_t *t)
{
    edgemap_clear(&t->edges);
    t->nodes[0] = (ct_node_t){SYM_ROOT, 0, 0, CALLTREE_NONE, CALLTREE_NONE, CALLTREE_NONE};
    t->count = 1;
}

int calltree_child(calltree_t *t, uint32_t parent, uint64_t sym, uint32_t *child)
{
    size_t s = edgemap_probe(&t->edges, parent, sym);
    if (t->edges.slots[s].child != 0) {
        *child = t->edges.slots[s].child;
        return ERR_OK;
    }
    if (t->count >= t->max_nodes) return ERR_LIMIT;
    if (t->count == t->cap && grow_nodes(t) != ERR_OK) return ERR_NOMEM;
    if ((t->count + 1) * 2 > t->edges.cap) {
        if (edgemap_reserve(&t->edges, t->count + 1) != ERR_OK) return ERR_NOMEM;
        s = edgemap_probe(&t->edges, parent, sym);
    }
    uint32_t idx = (uint32_t)t->count++;
    ct_node_t *p = &t->nodes[parent];
    t->nodes[idx] = (ct_node_t){sym, 0, 0, parent, CALLTREE_NONE, p->first_child};
    p->first_child = idx;
    edgemap_set_at(&t->edges, s, parent, sym, idx);
    *child = idx;
    return ERR_OK;
}

void calltree_prefetch(const calltree_t *t, uint32_t parent, uint64_t sym)
{
    edgemap_prefetch(&t->edges, parent, sym);
}

void calltree_add_self(calltree_t *t, uint32_t node, int64_t value)
{
    WADD(t->nodes[node].self, value);
    for (uint32_t n = node; n != CALLTREE_NONE; n = t->nodes[n].parent)
        WADD(t->nodes[n].total, value);
}

void calltree_add_self_deferred(calltree_t *t, uint32_t node, int64_t value)
{
    WADD(t->nodes[node].self, value);
}

void calltree_sum_totals(calltree_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        t->nodes[i].total = t->nodes[i].self;
    /* children have larger indices than their parents; sums wrap (wadd), so
     * the order of additions does not change the result */
    for (size_t i = t->count; i-- > 1;)
        WADD(t->nodes[t->nodes[i].parent].total, t->nodes[i].total);
}

int calltree_add_selves(calltree_t *t, const uint32_t *nodes, const int64_t *vals, size_t n)
{
    int64_t *acc = calloc(t->count, sizeof *acc);
    if (acc == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        WADD(t->nodes[nodes[i]].self, vals[i]);
        WADD(acc[nodes[i]], vals[i]);
    }
    /* children have larger indices than their parents */
    for (size_t i = t->count; i-- > 1;) {
        if (acc[i] == 0) continue;
        WADD(t->nodes[i].total, acc[i]);
        WADD(acc[t->nodes[i].parent], acc[i]);
    }
    WADD(t->nodes[0].total, acc[0]);
    free(acc);
    return ERR_OK;
}

int calltree_add_stack(calltree_t *t, const uint64_t *stack, size_t depth, int64_t value)
{
    uint32_t node = 0;
    for (size_t i = 0; i < depth; i++) {
        int rc = calltree_child(t, node, stack[i], &node);
        if (rc != ERR_OK) return rc;
    }
    calltree_add_self(t, node, value);
    return ERR_OK;
}

int calltree_copy_shape(calltree_t *dst, const calltree_t *src)
{
    ASSERT_ALWAYS(dst->count == 1 && dst->nodes[0].self == 0 && dst->nodes[0].total == 0);
    if (src->count > dst->max_nodes) return ERR_LIMIT;
    if (src->count > dst->cap) {
        ct_node_t *n = realloc(dst->nodes, src->count * sizeof *n);
        if (n == NULL) return ERR_NOMEM;
        dst->nodes = n;
        dst->cap = src->count;
    }
    int rc = edgemap_copy(&dst->edges, &src->edges);
    if (rc != ERR_OK) return rc;
    for (size_t i = 0; i < src->count; i++) {
        dst->nodes[i] = src->nodes[i];
        dst->nodes[i].self = dst->nodes[i].total = 0;
    }
    dst->count = src->count;
    return ERR_OK;
}

bool calltree_same_shape(const calltree_t *a, const calltree_t *b)
{
    if (a == b) return true;
    if (a->count != b->count) return false;
    for (size_t i = 0; i < a->count; i++)
        if (a->nodes[i].sym != b->nodes[i].sym || a->nodes[i].parent != b->nodes[i].parent)
            return false;
    return true;
}

int calltree_merge(calltree_t *dst, const calltree_t *src)
{
    uint32_t *map = malloc(src->count * sizeof *map);
    if (map == NULL) return ERR_NOMEM;
    map[0] = 0;
    int rc = ERR_OK;
    for (size_t i = 1; i < src->count && rc == ERR_OK; i++)
        rc = calltree_child(dst, map[src->nodes[i].parent], src->nodes[i].sym, &map[i]);
    if (rc == ERR_OK) {
        /* Adding each node's self and total to its image keeps dst consistent
         * without walking ancestors. */
        for (size_t i = 0; i < src->count; i++) {
            WADD(dst->nodes[map[i]].self, src->nodes[i].self);
            WADD(dst->nodes[map[i]].total, src->nodes[i].total);
        }
    }
    free(map);
    return rc;
}

/* The symbol dictionary while encoding: symbol -> index in first-use order.
 * Presized for every node, so it never grows. Returns the index and sets
 * *added (or returns an error, only if presizing failed). */
static int dict_index(u64map_t *d, uint64_t sym, int *added, uint32_t *idx)
{
    int rc = u64map_get_or_put(d, sym, (uint32_t)d->len, idx);
    *added = rc == 1;
    return rc < 0 ? rc : ERR_OK;
}

/* Preorder traversal: calls visit(ctx, node, depth) for every non-root node. */
static int preorder(const calltree_t *t, int (*visit)(void *, uint32_t, uint32_t), void *ctx)
{
    uint32_t node = t->nodes[0].first_child;
    uint32_t depth = 1;
    while (node != CALLTREE_NONE) {
        int rc = visit(ctx, node, depth);
        if (rc != ERR_OK) return rc;
        if (t->nodes[node].first_child != CALLTREE_NONE) {
            node = t->nodes[node].first_child;
            depth++;
            continue;
        }
        while (node != 0 && t->nodes[node].next_sibling == CALLTREE_NONE) {
            node = t->nodes[node].parent;
            depth--;
        }
        node = node == 0 ? CALLTREE_NONE : t->nodes[node].next_sibling;
    }
    return ERR_OK;
}

typedef struct encode_ctx {
    const calltree_t *t;
    u64map_t dict;
    buf_t *syms;    /* dictionary, LE u64 */
    buf_t *body;    /* node records */
    size_t records; /* in body */
} encode_ctx_t;

static int encode_visit(void *vctx, uint32_t node, uint32_t depth)
{
    encode_ctx_t *c = vctx;
    const ct_node_t *n = &c->t->nodes[node];
    int added;
    uint32_t idx;
    int rc0 = dict_index(&c->dict, n->sym, &added, &idx);
    if (rc0 != ERR_OK) return rc0;
    uint8_t tmp[30];
    size_t len = 0;
    if (added) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(n->sym >> (8 * i));
        int rc = buf_append(c->syms, le, 8);
        if (rc != ERR_OK) return rc;
    }
    len += varint_put_u(tmp + len, depth);
    len += varint_put_u(tmp + len, idx);
    len += varint_put_u(tmp + len, varint_zigzag(n->self));
    c->records++;
    return buf_append(c->body, tmp, len);
}

int calltree_encode(const calltree_t *t, buf_t *out)
{
    encode_ctx_t c = {.t = t};
    buf_t syms, body;
    buf_init(&syms, BUF_UNLIMITED);
    buf_init(&body, BUF_UNLIMITED);
    c.syms = &syms;
    c.body = &body;
    int rc = u64map_init(&c.dict, t->count);
    if (rc == ERR_OK) rc = preorder(t, encode_visit, &c);
    /* The header's node count must be the records that follow it, and every
     * record's symbol index must be in the dictionary, or decoding the stored
     * tree fails (or, worse, reads other stacks). */
    ASSERT_ALWAYS(rc != ERR_OK || c.records == t->count - 1);
    ASSERT_ALWAYS(rc != ERR_OK || syms.len == 8 * c.dict.len);
    if (rc == ERR_OK) rc = buf_append_byte(out, CALLTREE_VERSION);
    if (rc == ERR_OK) rc = buf_append_uvarint(out, c.dict.len);
    if (rc == ERR_OK) rc = buf_append(out, syms.data, syms.len);
    if (rc == ERR_OK) rc = buf_append_svarint(out, t->nodes[0].self);
    if (rc == ERR_OK) rc = buf_append_uvarint(out, t->count - 1);
    if (rc == ERR_OK) rc = buf_append(out, body.data, body.len);
    u64map_free(&c.dict);
    buf_free(&syms);
    buf_free(&body);
    return rc;
}

static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

typedef struct decoded {
    uint32_t *dst; /* dst node of each decoded node */
    uint32_t *depth;
    int64_t *self;
    uint32_t *stack; /* dst node at each depth while walking */
    int64_t *acc;    /* subtree sums by depth during the total pass */
} decoded_t;

static void decoded_free(decoded_t *d)
{
    free(d->dst);
    free(d->depth);
    free(d->self);
    free(d->stack);
    free(d->acc);
}

/* Pass 1: parse and validate every record without touching dst, so a
 * corrupt encoding leaves dst unchanged. */
static int decode_records(const uint8_t **pp, const uint8_t *end, uint64_t nsyms, uint64_t nnodes,
                          decoded_t *d, uint32_t *max_depth)
{
    const uint8_t *p = *pp;
    uint32_t cur_depth = 0, deepest = 0;
    for (uint64_t i = 0; i < nnodes; i++) {
        uint64_t depth, idx, zz;
        if (!varint_read_u(&p, end, &depth) || !varint_read_u(&p, end, &idx) ||
            !varint_read_u(&p, end, &zz))
            return ERR_CORRUPT;
        if (depth == 0 || depth > cur_depth + 1 || depth > CALLTREE_MAX_DEPTH || idx >= nsyms)
            return ERR_CORRUPT;
        d->dst[i] = (uint32_t)idx; /* dictionary index until pass 2 maps it */
        d->depth[i] = (uint32_t)depth;
        d->self[i] = (int64_t)((zz >> 1) ^ (~(zz & 1) + 1));
        cur_depth = (uint32_t)depth;
        if (cur_depth > deepest) deepest = cur_depth;
    }
    if (p != end) return ERR_CORRUPT;
    *pp = p;
    *max_depth = deepest;
    return ERR_OK;
}

/* Pass 2: create (or find) every node in dst. On ERR_LIMIT no value has been
 * added yet, so dst's values stay exact. */
static int decode_place(calltree_t *dst, const uint8_t *dict, uint64_t nnodes, decoded_t *d)
{
    d->stack[0] = 0;
    for (uint64_t i = 0; i < nnodes; i++) {
        uint64_t sym = le64_get(dict + 8 * (size_t)d->dst[i]);
        uint32_t node;
        int rc = calltree_child(dst, d->stack[d->depth[i] - 1], sym, &node);
        if (rc != ERR_OK) return rc;
        d->stack[d->depth[i]] = node;
        d->dst[i] = node;
    }
    return ERR_OK;
}

/* Pass 3: add self values and subtree totals, computed in reverse preorder
 * with one accumulator per depth. */
static void decode_add(calltree_t *dst, uint64_t nnodes, int64_t root_self, decoded_t *d,
                       uint32_t max_depth)
{
    memset(d->acc, 0, (max_depth + 2) * sizeof *d->acc);
    for (uint64_t k = nnodes; k-- > 0;) {
        uint32_t depth = d->depth[k];
        int64_t total = wadd(d->self[k], d->acc[depth + 1]);
        d->acc[depth + 1] = 0;
        WADD(d->acc[depth], total);
        WADD(dst->nodes[d->dst[k]].self, d->self[k]);
        WADD(dst->nodes[d->dst[k]].total, total);
    }
    /* Reverse preorder hands every subtree's sum to its parent's depth, so
     * only depth 1's accumulator (the root's children) may be left over. */
    for (uint32_t i = 2; i < max_depth + 2; i++)
        ASSERT_DEBUG(d->acc[i] == 0);
    WADD(dst->nodes[0].self, root_self);
    WADD(dst->nodes[0].total, wadd(root_self, d->acc[1]));
}

int calltree_decode_merge(calltree_t *dst, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    uint64_t nsyms, nnodes;
    int64_t root_self;
    if (n < 1 || p[0] != CALLTREE_VERSION) return ERR_CORRUPT;
    p++;
    if (!varint_read_u(&p, end, &nsyms) || nsyms > (uint64_t)(end - p) / 8) return ERR_CORRUPT;
    const uint8_t *dict = p;
    p += 8 * nsyms;
    if (!varint_read_s(&p, end, &root_self) || !varint_read_u(&p, end, &nnodes)) return ERR_CORRUPT;
    if (nnodes > (uint64_t)(end - p) / 3) /* every record takes at least 3 bytes */
        return ERR_CORRUPT;
    if (nnodes == 0) {
        if (p != end) return ERR_CORRUPT;
        WADD(dst->nodes[0].self, root_self);
        WADD(dst->nodes[0].total, root_self);
        return ERR_OK;
    }
    size_t stack_len = (nnodes < CALLTREE_MAX_DEPTH ? nnodes : CALLTREE_MAX_DEPTH) + 2;
    decoded_t d = {
        .dst = malloc(nnodes * sizeof(uint32_t)),
        .depth = malloc(nnodes * sizeof(uint32_t)),
        .self = malloc(nnodes * sizeof(int64_t)),
        .stack = malloc(stack_len * sizeof(uint32_t)),
        .acc = malloc(stack_len * sizeof(int64_t)),
    };
    uint32_t max_depth = 0;
    int rc = (d.dst && d.depth && d.self && d.stack && d.acc) ? ERR_OK : ERR_NOMEM;
    if (rc == ERR_OK) rc = decode_records(&p, end, nsyms, nnodes, &d, &max_depth);
    if (rc == ERR_OK) rc = decode_place(dst, dict, nnodes, &d);
    if (rc == ERR_OK) decode_add(dst, nnodes, root_self, &d, max_depth);
    decoded_free(&d);
    return rc;
}

int calltree_decode_records(const uint8_t *p, size_t n, size_t max_records, calltree_records_t *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *end = p + n;
    uint64_t nsyms, nnodes;
    int64_t root_self;
    if (n < 1 || p[0] != CALLTREE_VERSION) return ERR_CORRUPT;
    p++;
    if (!varint_read_u(&p, end, &nsyms) || nsyms > (uint64_t)(end - p) / 8) return ERR_CORRUPT;
    const uint8_t *dict = p;
    p += 8 * nsyms;
    if (!varint_read_s(&p, end, &root_self) || !varint_read_u(&p, end, &nnodes)) return ERR_CORRUPT;
    if (nnodes > (uint64_t)(end - p) / 3) return ERR_CORRUPT; /* a record takes 3 bytes or more */
    if (max_records != 0 && nnodes > max_records) return ERR_LIMIT;
    if (nnodes == 0) {
        out->root_self = root_self;
        return p == end ? ERR_OK : ERR_CORRUPT;
    }
    uint32_t *idx = malloc(nnodes * sizeof *idx);
    decoded_t d = {.dst = idx,
                   .depth = malloc(nnodes * sizeof(uint32_t)),
                   .self = malloc(nnodes * sizeof(int64_t))};
    out->sym = malloc(nnodes * sizeof *out->sym);
    uint32_t max_depth;
    int rc = idx && d.depth && d.self && out->sym ? ERR_OK : ERR_NOMEM;
    if (rc == ERR_OK) rc = decode_records(&p, end, nsyms, nnodes, &d, &max_depth);
    if (rc != ERR_OK) {
        decoded_free(&d);
        calltree_records_free(out);
        return rc;
    }
    for (uint64_t i = 0; i < nnodes; i++)
        out->sym[i] = le64_get(dict + 8 * (size_t)idx[i]);
    free(idx);
    out->n = (size_t)nnodes;
    out->root_self = root_self;
    out->depth = d.depth;
    out->self = d.self;
    return ERR_OK;
}

void calltree_records_free(calltree_records_t *r)
{
    free(r->depth);
    free(r->sym);
    free(r->self);
    memset(r, 0, sizeof *r);
}

size_t calltree_node_count(const calltree_t *t)
{
    return t->count;
}

size_t calltree_max_nodes(const calltree_t *t)
{
    return t->max_nodes;
}

size_t calltree_mem_bytes(const calltree_t *t)
{
    return sizeof *t + t->cap * sizeof(ct_node_t) + edgemap_bytes(&t->edges);
}

uint64_t calltree_sym(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].sym;
}

int64_t calltree_self(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].self;
}

int64_t calltree_total(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].total;
}

uint32_t calltree_parent(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].parent;
}

uint32_t calltree_first_child(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].first_child;
}

uint32_t calltree_next_sibling(const calltree_t *t, uint32_t node)
{
    return t->nodes[node].next_sibling;
}

const calltree_node_t *calltree_nodes(const calltree_t *t)
{
    return t->nodes;
}

int64_t calltree_root_total(const calltree_t *t)
{
    return t->nodes[0].total;
}

int calltree_for_each_symbol(const calltree_t *t, int (*fn)(void *ctx, uint64_t sym), void *ctx)
{
    u64map_t d;
    int rc = u64map_init(&d, t->count);
    for (size_t i = 1; i < t->count && rc == ERR_OK; i++) {
        int added;
        uint32_t idx;
        rc = dict_index(&d, t->nodes[i].sym, &added, &idx);
        if (rc == ERR_OK && added) rc = fn(ctx, t->nodes[i].sym);
    }
    u64map_free(&d);
    return rc;
}
