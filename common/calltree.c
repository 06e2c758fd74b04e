/* calltree.c — call trees and their encoding (see calltree.h).
 *
 * Nodes live in one array; a node is always created after its parent, so
 * index order is a topological order (parents first). That makes merge a
 * single pass over the source.
 *
 * Memory is what a push or a query may hold most of, so a node is kept
 * small: its shape (symbol, parent, first child, next sibling: 20 bytes,
 * calltree_node_t) apart from its self value (8 bytes), and children are
 * found through an open-addressing table of 4-byte slots (child index and
 * 8 bits of the edge's hash; 8-byte slots, the index and 32 bits, in a
 * table that may hold 2^24 nodes or more) over the node array, kept at
 * most CT_LOAD_NUM/CT_LOAD_DEN full: about 35-45 bytes a node while a tree
 * grows, where a node with its keyed edge slots took about 100. Totals are
 * not kept as values change: the root's is one running sum, the others are
 * computed in one reverse pass when first read after a change and kept
 * until the next (a tree that is built, encoded and stored, as ingest's
 * are, never holds them). A tree done growing (calltree_shrink) drops its
 * edge table too, rebuilt if a node is added again. The shape may be shared
 * by several trees (calltree_copy_shape: the sample types of one profile):
 * each then holds only its values, and a tree that must add a node to a
 * shared shape first takes its own copy. */
#include "common/calltree.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/varint.h"

typedef calltree_node_t ct_node_t;

/* The edge table is grown past CT_LOAD_NUM/CT_LOAD_DEN full: linear probes
 * stay short, and small slots keep a probe run in one cache line. */
#define CT_LOAD_NUM 2
#define CT_LOAD_DEN 3

/* While a tree grows one node at a time and its edge table holds fewer
 * nodes than this, the table grows by two of its steps at once (half
 * again, twice): a tree of a push's usual size (a few thousand nodes)
 * rehashes every node about half as often. Every size is one the single
 * steps pass through, so a tree that ends past 2.25 times this ends in
 * the same room as before and the memory of large pushes is unchanged. */
#define CT_EDGE_SKIP_BELOW 16384

/* A table that holds fewer nodes than this before it grows has narrow
 * slots: one u32, the child index (at most 2^24 - 1) above 8 bits of the
 * edge hash. Wider ones have two u32 per slot: the child index, then 32
 * bits of the hash. Either way a child index of 0 marks an empty slot (the
 * root is nobody's child), and the tag makes most misses skip the node. */
#ifndef CT_NARROW_NODES /* test_common_calltree_wide sets it low */
#define CT_NARROW_NODES (1u << 24)
#endif

/* The nodes and edges of one or more trees (refs). Shared shapes are never
 * changed; a tree that must change one copies it first (own_shape). */
typedef struct ct_shape {
    ct_node_t *nodes;
    size_t count, cap;
    /* The symbols the nodes name, by tree-local index (syms[0] the root's,
     * SYM_ROOT), first use first, and an open-addressing table over them
     * (nsslots slots of index + 1, 0 empty; dropped with the edge table by
     * calltree_shrink): a node holds a 4-byte index, not the 8-byte id. */
    uint64_t *syms;
    size_t nsyms, scap;
    uint32_t *sslots;
    size_t nsslots;
    /* The nodes name their symbols by the caller's index
     * (calltree_new_unnamed) and syms is empty, until calltree_name_syms. */
    bool unnamed;
    /* Each node's first child and next sibling (lcap entries), or NULL:
     * built from the parents when first read (links_of), kept up to date
     * by append_node while they have room, dropped past it. */
    calltree_links_t *links;
    size_t lcap;
    uint32_t *slots; /* nslots narrow slots, or 2 x nslots words */
    size_t nslots;   /* at most 2^32 (n <= UINT32_MAX nodes at 2/3), or 0 */
    bool narrow;     /* set by rehash from the nodes the table may hold */
    unsigned refs;   /* atomic: trees of one push may be freed on other threads */
} ct_shape_t;

struct calltree {
    ct_shape_t *sh;
    int64_t *self; /* vcap entries, at least sh->count; NULL when scaled or valueless */
    size_t vcap;
    /* A valueless tree (calltree_new_valueless) holds no values while it
     * grows: every value is zero until the first change gives it them
     * (own_values). */
    bool valueless;
    /* A scaled tree (calltree_adopt_scaled) holds no values: node i's is
     * base->self[i] * scale, until it first changes (own_values). */
    const calltree_t *base;
    int64_t scale;
    int64_t root_total; /* the sum of every self value, kept as they change */
    /* Every node's total when totals_ok (computed on read: totals_of),
     * tcap entries; stale after any change of values or nodes. */
    int64_t *total;
    size_t tcap;
    bool totals_ok;
    size_t max_nodes;
};

/* Values add with two's-complement wrap-around: exact for every sum that fits
 * in an int64 (deltas may go negative and back), and never undefined
 * behaviour on hostile input near the limits. */
static inline int64_t wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

#define WADD(lhs, v) ((lhs) = wadd((lhs), (v)))

/* v * k with two's-complement wrap-around, as values add. */
static inline int64_t wmul(int64_t v, int64_t k)
{
    return (int64_t)((uint64_t)v * (uint64_t)k);
}

/* Node i's self value, held or scaled. */
static inline int64_t self_at(const calltree_t *t, size_t i)
{
    return t->base != NULL ? wmul(t->base->self[i], t->scale) : t->self[i];
}

static inline uint64_t edge_hash(uint32_t parent, uint32_t si)
{
    return (si ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
}

/* The home slot of symbol sym in the symbol table. */
static inline size_t sym_home(const ct_shape_t *sh, uint64_t sym)
{
    uint64_t h = (sym ^ (sym >> 29)) * 0x9e3779b97f4a7c15ULL;
    return (size_t)(((h >> 32) * (uint64_t)sh->nsslots) >> 32);
}

/* The slot of the symbol table holding sym, or the empty slot where it
 * would go. */
static inline size_t sym_probe(const ct_shape_t *sh, uint64_t sym)
{
    for (size_t i = sym_home(sh, sym);; i = i + 1 == sh->nsslots ? 0 : i + 1)
        if (sh->sslots[i] == 0 || sh->syms[sh->sslots[i] - 1] == sym) return i;
}

/* The home slot of hash h: its high 32 bits scaled to the table (any
 * size, so the table grows by half again, not doubling). */
static inline size_t slot_of(const ct_shape_t *sh, uint64_t h)
{
    return (size_t)(((h >> 32) * (uint64_t)sh->nslots) >> 32);
}

static inline size_t slot_words(const ct_shape_t *sh)
{
    return sh->narrow ? 1 : 2;
}

/* The child in slot i, 0 when it is empty. */
static inline uint32_t slot_child(const ct_shape_t *sh, size_t i)
{
    return sh->narrow ? sh->slots[i] >> 8 : sh->slots[2 * i];
}

static inline void slot_set(ct_shape_t *sh, size_t i, uint32_t child, uint64_t h)
{
    if (sh->narrow) {
        sh->slots[i] = child << 8 | (uint8_t)h;
    } else {
        sh->slots[2 * i] = child;
        sh->slots[2 * i + 1] = (uint32_t)h;
    }
}

/* The slot holding (parent, si), or the empty slot where it would go. */
static inline size_t probe(const ct_shape_t *sh, uint32_t parent, uint32_t si, uint64_t h)
{
    size_t i = slot_of(sh, h);
    if (sh->narrow) {
        for (;; i = i + 1 == sh->nslots ? 0 : i + 1) {
            uint32_t s = sh->slots[i], c = s >> 8;
            if (c == 0) return i;
            if ((uint8_t)s == (uint8_t)h && sh->nodes[c].sym_index == si &&
                sh->nodes[c].parent == parent)
                return i;
        }
    }
    for (;; i = i + 1 == sh->nslots ? 0 : i + 1) {
        uint32_t c = sh->slots[2 * i];
        if (c == 0) return i;
        if (sh->slots[2 * i + 1] == (uint32_t)h && sh->nodes[c].sym_index == si &&
            sh->nodes[c].parent == parent)
            return i;
    }
}

static void shape_free(ct_shape_t *sh)
{
    if (sh == NULL) return;
    free(sh->nodes);
    free(sh->slots);
    free(sh->links);
    free(sh->syms);
    free(sh->sslots);
    free(sh);
}

static void shape_release(ct_shape_t *sh)
{
    if (sh != NULL && __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) == 0) shape_free(sh);
}

static size_t shape_bytes(const ct_shape_t *sh)
{
    return sizeof *sh + sh->cap * sizeof *sh->nodes + sh->lcap * sizeof *sh->links +
           sh->nslots * slot_words(sh) * sizeof *sh->slots + sh->scap * sizeof *sh->syms +
           sh->nsslots * sizeof *sh->sslots;
}

/* Rebuilds the edge table with nslots slots (at most 2^32) from the
 * nodes: a pass over the node array, each edge to the first empty slot of
 * its run (keys are distinct, none is compared). Narrow when every node it
 * may hold before it next grows has an index under CT_NARROW_NODES. */
static int rehash(ct_shape_t *sh, size_t nslots)
{
    bool narrow = nslots / CT_LOAD_DEN * CT_LOAD_NUM + CT_LOAD_NUM < CT_NARROW_NODES;
    uint32_t *slots = alloc_zeroed(nslots * (narrow ? 1 : 2), sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    free(sh->slots);
    sh->slots = slots;
    sh->nslots = nslots;
    sh->narrow = narrow;
    for (size_t i = 1; i < sh->count; i++) {
        uint64_t h = edge_hash(sh->nodes[i].parent, sh->nodes[i].sym_index);
        size_t j = slot_of(sh, h);
        while (slot_child(sh, j) != 0)
            j = j + 1 == nslots ? 0 : j + 1;
        slot_set(sh, j, (uint32_t)i, h);
    }
    return ERR_OK;
}

/* Rebuilds the symbol table with nslots slots from the symbols. */
static int sym_rehash(ct_shape_t *sh, size_t nslots)
{
    uint32_t *slots = alloc_zeroed(nslots, sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    free(sh->sslots);
    sh->sslots = slots;
    sh->nsslots = nslots;
    for (size_t i = 0; i < sh->nsyms; i++)
        slots[sym_probe(sh, sh->syms[i])] = (uint32_t)i + 1;
    return ERR_OK;
}

/* Makes room for n symbols: the array and, kept at most
 * CT_LOAD_NUM/CT_LOAD_DEN full, the table. */
static int syms_reserve(ct_shape_t *sh, size_t n)
{
    if (n > sh->scap) {
        /* from 4 (span trees are small), doubling up to 64 (fewer copies
         * while a push's trees start), then by half again */
        size_t cap = sh->scap < 4 ? 4 : sh->scap < 64 ? 2 * sh->scap : sh->scap + sh->scap / 2;
        uint64_t *p = realloc(sh->syms, (cap < n ? n : cap) * sizeof *p);
        if (p == NULL) return ERR_NOMEM;
        sh->syms = p;
        sh->scap = cap < n ? n : cap;
    }
    if (n * CT_LOAD_DEN <= sh->nsslots * CT_LOAD_NUM) return ERR_OK;
    size_t ns = sh->nsslots ? sh->nsslots : 4;
    while (ns * CT_LOAD_NUM < n * CT_LOAD_DEN)
        ns += ns < 96 ? ns : ns / 2; /* as the symbols grow */
    return sym_rehash(sh, ns);
}

/* Makes room for n nodes in the node array (not in the edge table). */
static int nodes_reserve(ct_shape_t *sh, size_t n)
{
    if (n > (size_t)UINT32_MAX / 2) return ERR_NOMEM; /* so nslots stays under 2^32 */
    if (n > sh->cap) {
        ct_node_t *p = realloc(sh->nodes, n * sizeof *p);
        if (p == NULL) return ERR_NOMEM;
        sh->nodes = p;
        sh->cap = n;
    }
    return ERR_OK;
}

/* Makes room for n nodes in all: node array and edge table; skip: the
 * edge table one step larger (CT_EDGE_SKIP_BELOW). */
static int shape_reserve_by(ct_shape_t *sh, size_t n, bool skip)
{
    int rc = nodes_reserve(sh, n);
    if (rc != ERR_OK || n * CT_LOAD_DEN <= sh->nslots * CT_LOAD_NUM) return rc;
    size_t ns = sh->nslots ? sh->nslots : 8;
    while (ns * CT_LOAD_NUM < n * CT_LOAD_DEN)
        ns += ns / 2;
    if (skip) ns += ns / 2;
    rc = rehash(sh, ns < UINT32_MAX ? ns : UINT32_MAX);
    /* the symbol table is dropped and rebuilt with the edge table */
    return rc == ERR_OK && sh->nsslots == 0 ? syms_reserve(sh, sh->nsyms) : rc;
}

/* Makes room for n nodes in all: node array and edge table. */
static int shape_reserve(ct_shape_t *sh, size_t n)
{
    return shape_reserve_by(sh, n, false);
}

static ct_shape_t *shape_new(size_t initial)
{
    ct_shape_t *sh = calloc(1, sizeof *sh);
    if (sh == NULL) return NULL;
    sh->refs = 1;
    sh->syms = malloc(sizeof *sh->syms);
    if (sh->syms == NULL) {
        shape_free(sh);
        return NULL;
    }
    sh->syms[0] = SYM_ROOT;
    sh->nsyms = sh->scap = 1;
    if (shape_reserve(sh, initial) != ERR_OK) {
        shape_free(sh);
        return NULL;
    }
    sh->nodes[0] = (ct_node_t){0, CALLTREE_NONE};
    sh->count = 1;
    return sh;
}

static ct_shape_t *shape_copy(const ct_shape_t *src)
{
    ct_shape_t *sh = calloc(1, sizeof *sh);
    if (sh == NULL) return NULL;
    sh->refs = 1;
    sh->nodes = malloc(src->cap * sizeof *sh->nodes);
    size_t words = src->nslots * slot_words(src);
    sh->slots = words ? malloc(words * sizeof *sh->slots) : NULL;
    sh->syms = src->scap ? malloc(src->scap * sizeof *sh->syms) : NULL;
    sh->sslots = src->nsslots ? malloc(src->nsslots * sizeof *sh->sslots) : NULL;
    if (sh->nodes == NULL || (words && sh->slots == NULL) || (src->scap && sh->syms == NULL) ||
        (src->nsslots && sh->sslots == NULL)) {
        shape_free(sh);
        return NULL;
    }
    memcpy(sh->nodes, src->nodes, src->count * sizeof *sh->nodes);
    if (words) memcpy(sh->slots, src->slots, words * sizeof *sh->slots);
    if (src->nsyms) memcpy(sh->syms, src->syms, src->nsyms * sizeof *sh->syms);
    if (src->nsslots) memcpy(sh->sslots, src->sslots, src->nsslots * sizeof *sh->sslots);
    sh->nsyms = src->nsyms;
    sh->scap = src->scap;
    sh->nsslots = src->nsslots;
    sh->count = src->count;
    sh->cap = src->cap;
    sh->nslots = src->nslots;
    sh->narrow = src->narrow;
    sh->unnamed = src->unnamed;
    return sh;
}

/* Before t changes its shape: a shared one is copied first. */
static int copy_shape(calltree_t *t)
{
    ct_shape_t *c = shape_copy(t->sh);
    if (c == NULL) return ERR_NOMEM;
    shape_release(t->sh);
    t->sh = c;
    return ERR_OK;
}

static inline int own_shape(calltree_t *t)
{
    return __atomic_load_n(&t->sh->refs, __ATOMIC_ACQUIRE) == 1 ? ERR_OK : copy_shape(t);
}

/* Room for n values (new ones zero); a scaled tree first gets its own
 * (its base's times its scale). */
static int values_reserve(calltree_t *t, size_t n)
{
    if (t->valueless) {
        size_t cap = n > t->sh->count ? n : t->sh->count;
        int64_t *s = calloc(cap, sizeof *s);
        if (s == NULL) return ERR_NOMEM;
        t->self = s;
        t->vcap = cap;
        t->valueless = false;
        return ERR_OK;
    }
    if (t->base != NULL) {
        size_t count = t->sh->count, cap = n > count ? n : count;
        int64_t *s = malloc(cap * sizeof *s);
        if (s == NULL) return ERR_NOMEM;
        for (size_t i = 0; i < count; i++)
            s[i] = self_at(t, i);
        memset(s + count, 0, (cap - count) * sizeof *s);
        t->self = s;
        t->vcap = cap;
        t->base = NULL;
        t->scale = 0;
        return ERR_OK;
    }
    if (n <= t->vcap) return ERR_OK;
    int64_t *s = realloc(t->self, n * sizeof *s);
    if (s == NULL) return ERR_NOMEM;
    t->self = s;
    memset(t->self + t->vcap, 0, (n - t->vcap) * sizeof *s);
    t->vcap = n;
    return ERR_OK;
}

/* A tree about to change its values holds them (a scaled one gets its own,
 * a valueless one zeros). */
static int own_values(calltree_t *t)
{
    return t->base != NULL || t->valueless ? values_reserve(t, t->sh->count) : ERR_OK;
}

/* The values of a tree about to be read: a valueless one is given its
 * zeros first (the cache only, as totals_of's: the values are unchanged). */
static int readable_values(const calltree_t *t)
{
    return t->valueless ? values_reserve((calltree_t *)t, t->sh->count) : ERR_OK;
}

/* Every node's total (self plus its children's totals), computed in one
 * reverse pass over the nodes when first asked after a change and kept
 * until the next: the cache is the tree's, so a read writes it (the tree
 * is not thread-safe for readers either). NULL when it cannot be
 * allocated. */
static const int64_t *totals_of(const calltree_t *ct)
{
    calltree_t *t = (calltree_t *)ct; /* the cache only: the values are unchanged */
    size_t n = t->sh->count;
    if (t->totals_ok) return t->total;
    if (readable_values(t) != ERR_OK) return NULL;
    if (n > t->tcap) {
        int64_t *p = realloc(t->total, n * sizeof *p);
        if (p == NULL) return NULL;
        t->total = p;
        t->tcap = n;
    }
    const ct_node_t *nd = t->sh->nodes;
    if (t->base == NULL) {
        memcpy(t->total, t->self, n * sizeof *t->total);
    } else {
        for (size_t i = 0; i < n; i++)
            t->total[i] = self_at(t, i);
    }
    /* children have larger indices than their parents; sums wrap (wadd), so
     * the order of additions does not change the result */
    for (size_t i = n; i-- > 1;)
        WADD(t->total[nd[i].parent], t->total[i]);
    ASSERT_DEBUG(t->total[0] == t->root_total);
    t->totals_ok = true;
    return t->total;
}

/* The child links of sh, built when first read after the node array last
 * outgrew them: one pass over the parents, each node put first in its
 * parent's list, as append_node does, so siblings come newest first. Held
 * by the shape (a read writes them, as it does totals); NULL when they
 * cannot be allocated. */
static const calltree_links_t *links_of(const ct_shape_t *csh)
{
    ct_shape_t *sh = (ct_shape_t *)csh; /* the cache only: the nodes are unchanged */
    if (sh->links != NULL) return sh->links;
    calltree_links_t *l = malloc(sh->cap * sizeof *l);
    if (l == NULL) return NULL;
    const ct_node_t *nd = sh->nodes;
    l[0] = (calltree_links_t){CALLTREE_NONE, CALLTREE_NONE};
    for (size_t i = 1; i < sh->count; i++) {
        l[i] = (calltree_links_t){CALLTREE_NONE, l[nd[i].parent].first_child};
        l[nd[i].parent].first_child = (uint32_t)i;
    }
    sh->links = l;
    sh->lcap = sh->cap;
    return l;
}

/* Whether node a lies in node's subtree (a >= node). */
static bool in_subtree(const ct_node_t *nd, uint32_t a, uint32_t node)
{
    while (a > node)
        a = nd[a].parent; /* parents have smaller indices */
    return a == node;
}

/* The total of node's subtree, walked: what totals_of gives, for when its
 * cache cannot be allocated (through the child links, or, when they cannot
 * be either, every later node's ancestors). */
static int64_t subtree_total(const calltree_t *t, uint32_t node)
{
    if (t->valueless) return 0; /* every value is zero */
    const ct_node_t *nd = t->sh->nodes;
    const calltree_links_t *l = links_of(t->sh);
    int64_t sum = self_at(t, node);
    if (l == NULL) {
        for (uint32_t i = node + 1; i < t->sh->count; i++)
            if (in_subtree(nd, i, node)) WADD(sum, self_at(t, i));
        return sum;
    }
    uint32_t n = l[node].first_child;
    while (n != CALLTREE_NONE) {
        WADD(sum, self_at(t, n));
        if (l[n].first_child != CALLTREE_NONE) {
            n = l[n].first_child;
            continue;
        }
        while (n != node && l[n].next_sibling == CALLTREE_NONE)
            n = nd[n].parent;
        n = n == node ? CALLTREE_NONE : l[n].next_sibling;
    }
    return sum;
}

/* The next capacity of an array of cap entries that must hold need: one and
 * a half times, so a large tree's arrays carry at most half again their use. */
static size_t next_cap(size_t cap, size_t need)
{
    size_t c = cap < 8 ? 8 : cap + cap / 2;
    return c < need ? need : c;
}

void calltree_shrink(calltree_t *t)
{
    size_t n = t->sh->count;
    if (__atomic_load_n(&t->sh->refs, __ATOMIC_ACQUIRE) == 1) {
        ct_node_t *p = t->sh->cap > n ? realloc(t->sh->nodes, n * sizeof *p) : NULL;
        if (p != NULL) {
            t->sh->nodes = p;
            t->sh->cap = n;
        }
        /* the links its readers walk, now that the tree is done growing */
        calltree_links_t *l = t->sh->lcap > n ? realloc(t->sh->links, n * sizeof *l) : NULL;
        if (l != NULL) {
            t->sh->links = l;
            t->sh->lcap = n;
        }
        uint64_t *y =
            t->sh->scap > t->sh->nsyms ? realloc(t->sh->syms, t->sh->nsyms * sizeof *y) : NULL;
        if (y != NULL) {
            t->sh->syms = y;
            t->sh->scap = t->sh->nsyms;
        }
        free(t->sh->slots); /* rebuilt from the nodes if one is added again */
        t->sh->slots = NULL;
        t->sh->nslots = 0;
        free(t->sh->sslots); /* and from the symbols */
        t->sh->sslots = NULL;
        t->sh->nsslots = 0;
        /* the links its readers walk, now that the tree is done growing
         * (made after the tables are freed: never held beside them) */
        (void)links_of(t->sh);
    }
    if (t->vcap > n) {
        int64_t *a = realloc(t->self, n * sizeof *a);
        if (a != NULL) {
            t->self = a;
            t->vcap = n;
        }
    }
    free(t->total); /* recomputed when next read */
    t->total = NULL;
    t->tcap = 0;
    t->totals_ok = false;
}

int calltree_reserve(calltree_t *t, size_t nodes)
{
    size_t want = t->sh->count + nodes;
    if (want > t->max_nodes) want = t->max_nodes;
    if (want <= t->sh->cap && (want <= t->vcap || t->valueless) &&
        want * CT_LOAD_DEN <= t->sh->nslots * CT_LOAD_NUM && t->base == NULL)
        return ERR_OK;
    int rc = own_shape(t);
    if (rc == ERR_OK) rc = shape_reserve(t->sh, want);
    return rc != ERR_OK || t->valueless ? rc : values_reserve(t, want);
}

int calltree_reserve_decode(calltree_t *t, size_t nodes, size_t syms)
{
    int rc = calltree_reserve(t, nodes);
    if (rc == ERR_OK) rc = own_shape(t);
    return rc != ERR_OK || t->sh->unnamed ? rc : syms_reserve(t->sh, t->sh->nsyms + syms);
}

/* Slots of a table of `slots` grown as rehash's callers grow it until it
 * holds n entries at most CT_LOAD_NUM/CT_LOAD_DEN full (from `first` when
 * empty, by `step`), or 0 when it needs no growth. */
static size_t grown_slots(size_t slots, size_t n, size_t first, bool edges)
{
    if (n * CT_LOAD_DEN <= slots * CT_LOAD_NUM) return 0;
    size_t ns = slots ? slots : first;
    while (ns * CT_LOAD_NUM < n * CT_LOAD_DEN)
        ns += edges || ns >= 96 ? ns / 2 : ns;
    return ns;
}

/* What syms_reserve(sh, n) allocates: the array and the table. */
static size_t syms_reserve_bytes(const ct_shape_t *sh, size_t n)
{
    size_t bytes = grown_slots(sh->nsslots, n, 4, false) * sizeof *sh->sslots;
    if (n <= sh->scap) return bytes;
    size_t cap = sh->scap < 4 ? 4 : sh->scap < 64 ? 2 * sh->scap : sh->scap + sh->scap / 2;
    return bytes + (cap < n ? n : cap) * sizeof *sh->syms;
}

size_t calltree_reserve_decode_bytes(const calltree_t *t, size_t nodes, size_t syms)
{
    const ct_shape_t *sh = t->sh;
    size_t want = sh->count + nodes, bytes = 0;
    if (want > t->max_nodes) want = t->max_nodes;
    if (__atomic_load_n(&sh->refs, __ATOMIC_ACQUIRE) != 1) bytes += shape_bytes(sh); /* copied */
    if (want > sh->cap) bytes += want * sizeof *sh->nodes;
    size_t ns = grown_slots(sh->nslots, want, 8, true);
    if (ns > 0) {
        bool narrow = ns / CT_LOAD_DEN * CT_LOAD_NUM + CT_LOAD_NUM < CT_NARROW_NODES;
        bytes += ns * (narrow ? 1 : 2) * sizeof *sh->slots;
        if (sh->nsslots == 0) bytes += syms_reserve_bytes(sh, sh->nsyms); /* rebuilt */
    }
    if (!t->valueless && (t->base != NULL || want > t->vcap))
        bytes += (want > sh->count ? want : sh->count) * sizeof *t->self;
    return sh->unnamed ? bytes : bytes + syms_reserve_bytes(sh, sh->nsyms + syms);
}

/* A tree with room for `initial` nodes (and their edges) before it grows. */
static calltree_t *new_tree(size_t max_nodes, size_t initial)
{
    calltree_t *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->max_nodes = max_nodes == 0 ? (size_t)UINT32_MAX - 1 : max_nodes;
    t->sh = shape_new(initial);
    if (t->sh == NULL || values_reserve(t, initial) != ERR_OK) {
        calltree_free(t);
        return NULL;
    }
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

calltree_t *calltree_new_valueless(size_t max_nodes)
{
    calltree_t *t = new_tree(max_nodes, 64);
    if (t == NULL) return NULL;
    free(t->self);
    t->self = NULL;
    t->vcap = 0;
    t->valueless = true;
    return t;
}

calltree_t *calltree_new_unnamed(size_t max_nodes)
{
    calltree_t *t = calltree_new_valueless(max_nodes);
    if (t == NULL) return NULL;
    ct_shape_t *sh = t->sh;
    free(sh->syms); /* the caller's list names them */
    free(sh->sslots);
    sh->syms = NULL;
    sh->sslots = NULL;
    sh->nsyms = sh->scap = sh->nsslots = 0;
    sh->unnamed = true;
    return t;
}

void calltree_free(calltree_t *t)
{
    if (t == NULL) return;
    shape_release(t->sh);
    free(t->self);
    free(t->total);
    free(t);
}

int calltree_clear(calltree_t *t)
{
    if (__atomic_load_n(&t->sh->refs, __ATOMIC_ACQUIRE) == 1) {
        if (t->sh->nslots)
            memset(t->sh->slots, 0, t->sh->nslots * slot_words(t->sh) * sizeof *t->sh->slots);
        t->sh->count = 1;
        t->sh->nsyms = t->sh->unnamed ? 0 : 1; /* the root's */
        if (t->sh->nsslots) {
            memset(t->sh->sslots, 0, t->sh->nsslots * sizeof *t->sh->sslots);
            t->sh->sslots[sym_probe(t->sh, SYM_ROOT)] = 1;
        }
        if (t->sh->links != NULL) t->sh->links[0].first_child = CALLTREE_NONE;
    } else {
        ct_shape_t *sh = shape_new(4); /* the shared one stays its other trees' */
        if (sh == NULL) return ERR_NOMEM;
        if (t->base != NULL && values_reserve(t, 4) != ERR_OK) {
            shape_release(sh);
            return ERR_NOMEM;
        }
        shape_release(t->sh);
        t->sh = sh;
    }
    if (!t->valueless) t->self[0] = 0;
    t->root_total = 0;
    t->totals_ok = false;
    return 0;
}

/* Appends the node (parent, si) into empty slot s of an owned shape with
 * room for it. */
static uint32_t append_node(calltree_t *t, uint32_t parent, uint32_t si, size_t s, uint64_t h)
{
    ct_shape_t *sh = t->sh;
    uint32_t idx = (uint32_t)sh->count++;
    sh->nodes[idx] = (ct_node_t){si, parent};
    if (sh->links != NULL && idx < sh->lcap) {
        sh->links[idx] = (calltree_links_t){CALLTREE_NONE, sh->links[parent].first_child};
        sh->links[parent].first_child = idx;
    } else if (sh->links != NULL) { /* rebuilt when next read */
        free(sh->links);
        sh->links = NULL;
        sh->lcap = 0;
    }
    slot_set(sh, s, idx, h);
    if (!t->valueless) t->self[idx] = 0;
    t->totals_ok = false;
    return idx;
}

/* Grows (owning first) so one more node fits; *s is re-probed if needed. */
static int make_room(calltree_t *t, uint32_t parent, uint32_t si, uint64_t h, size_t *s)
{
    size_t need = t->sh->count + 1;
    int rc = own_shape(t);
    /* the edge table grows with the nodes, not with the array's room */
    if (rc == ERR_OK && need > t->sh->cap) rc = nodes_reserve(t->sh, next_cap(t->sh->cap, need));
    if (rc == ERR_OK && need * CT_LOAD_DEN > t->sh->nslots * CT_LOAD_NUM)
        rc = shape_reserve_by(t->sh, need, need < CT_EDGE_SKIP_BELOW);
    if (rc == ERR_OK && need > t->vcap && !t->valueless)
        rc = values_reserve(t, next_cap(t->vcap, need));
    if (rc == ERR_OK) *s = probe(t->sh, parent, si, h);
    return rc;
}

/* The child of parent with the symbol of tree-local index si, found or
 * made. */
static inline __attribute__((always_inline)) int child_at(calltree_t *t, uint32_t parent,
                                                          uint32_t si, uint32_t *child)
{
    uint64_t h = edge_hash(parent, si);
    size_t s = probe(t->sh, parent, si, h);
    uint32_t found = slot_child(t->sh, s);
    if (found != 0) {
        *child = found;
        return ERR_OK;
    }
    if (t->sh->count >= t->max_nodes) return ERR_LIMIT;
    size_t need = t->sh->count + 1;
    if (need > t->sh->cap || (need > t->vcap && !t->valueless) ||
        __atomic_load_n(&t->sh->refs, __ATOMIC_RELAXED) != 1 ||
        need * CT_LOAD_DEN > t->sh->nslots * CT_LOAD_NUM) {
        int rc = make_room(t, parent, si, h, &s);
        if (rc != ERR_OK) return rc;
    }
    *child = append_node(t, parent, si, s, h);
    return ERR_OK;
}

/* The child of parent with a symbol the tree does not name yet (its
 * empty slot in the symbol table: slot): the symbol gets its index
 * (*hint), then the node. */
static int new_symbol_child(calltree_t *t, uint32_t parent, uint64_t sym, size_t slot,
                            uint32_t *hint, uint32_t *child)
{
    if (t->sh->count >= t->max_nodes) return ERR_LIMIT;
    if (t->sh->nsyms >= UINT32_MAX - 1) return ERR_NOMEM;
    ct_shape_t *was = t->sh;
    int rc = own_shape(t);
    ct_shape_t *sh = t->sh;
    size_t n = sh->nsyms + 1;
    bool moved = sh != was; /* the slot is to be found again */
    if (rc == ERR_OK && (n > sh->scap || n * CT_LOAD_DEN > sh->nsslots * CT_LOAD_NUM)) {
        rc = syms_reserve(sh, n);
        moved = true;
    }
    if (rc != ERR_OK) return rc;
    uint32_t si = (uint32_t)sh->nsyms++;
    sh->syms[si] = sym;
    sh->sslots[moved ? sym_probe(sh, sym) : slot] = si + 1;
    *hint = si;
    return child_at(t, parent, si, child);
}

int calltree_child_index(calltree_t *t, uint32_t parent, uint32_t si, uint32_t *child)
{
    ASSERT_ALWAYS(t->sh->unnamed && si != 0 && si != CALLTREE_NONE && t->sh->nslots != 0);
    return child_at(t, parent, si, child);
}

/* The symbols of an unnamed shape's nodes, numbered by first use (what
 * calltree_child_hint would have given them). mark: zeros at every index
 * the nodes name, given back so. */
int calltree_name_syms(calltree_t *t, uint64_t (*sym_of)(const void *ctx, uint32_t si),
                       const void *ctx, uint32_t *mark)
{
    ct_shape_t *sh = t->sh;
    ASSERT_ALWAYS(sh->unnamed && __atomic_load_n(&sh->refs, __ATOMIC_ACQUIRE) == 1);
    size_t n = 1; /* the root's */
    for (size_t i = 1; i < sh->count; i++)
        if (mark[sh->nodes[i].sym_index] == 0) mark[sh->nodes[i].sym_index] = (uint32_t)n++;
    uint64_t *syms = malloc(n * sizeof *syms);
    if (syms == NULL) {
        for (size_t i = 1; i < sh->count; i++)
            mark[sh->nodes[i].sym_index] = 0;
        return ERR_NOMEM;
    }
    syms[0] = SYM_ROOT;
    for (size_t i = 1; i < sh->count; i++) { /* the caller's index, for now */
        uint32_t si = sh->nodes[i].sym_index, local = mark[si];
        syms[local] = si;
        sh->nodes[i].sym_index = local;
    }
    for (size_t k = 1; k < n; k++) {
        mark[syms[k]] = 0;
        syms[k] = sym_of(ctx, (uint32_t)syms[k]);
    }
    sh->syms = syms;
    sh->nsyms = sh->scap = n;
    sh->unnamed = false;
    free(sh->slots); /* hashed by the caller's indices: rebuilt if a node is added */
    sh->slots = NULL;
    sh->nslots = 0;
    return ERR_OK;
}

int calltree_child_hint(calltree_t *t, uint32_t parent, uint64_t sym, uint32_t *hint,
                        uint32_t *child)
{
    ASSERT_ALWAYS(!t->sh->unnamed);
    if (t->sh->nslots == 0) { /* dropped by calltree_shrink */
        int rc = own_shape(t);
        if (rc == ERR_OK) rc = shape_reserve(t->sh, t->sh->count + 1);
        if (rc != ERR_OK) return rc;
    }
    const ct_shape_t *sh = t->sh;
    uint32_t si = *hint;
    if (si >= sh->nsyms || sh->syms[si] != sym) {
        size_t slot = sym_probe(sh, sym);
        if (sh->sslots[slot] == 0) return new_symbol_child(t, parent, sym, slot, hint, child);
        si = *hint = sh->sslots[slot] - 1;
    }
    return child_at(t, parent, si, child);
}

int calltree_child(calltree_t *t, uint32_t parent, uint64_t sym, uint32_t *child)
{
    uint32_t hint = CALLTREE_NONE;
    return calltree_child_hint(t, parent, sym, &hint, child);
}

void calltree_prefetch(const calltree_t *t, uint32_t parent, uint64_t sym)
{
    const ct_shape_t *sh = t->sh;
    if (sh->nslots == 0) return;
    uint32_t at = sh->sslots[sym_probe(sh, sym)];
    if (at != 0)
        __builtin_prefetch(&sh->slots[slot_of(sh, edge_hash(parent, at - 1)) * slot_words(sh)]);
}

void calltree_add_self(calltree_t *t, uint32_t node, int64_t value)
{
    ASSERT_ALWAYS(t->self != NULL); /* see calltree_adopt_scaled, calltree_new_valueless */
    WADD(t->self[node], value);
    WADD(t->root_total, value);
    t->totals_ok = false;
}

int calltree_add_selves(calltree_t *t, const uint32_t *nodes, const int64_t *vals, size_t n)
{
    int rc = own_values(t);
    if (rc != ERR_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        WADD(t->self[nodes[i]], vals[i]);
        WADD(t->root_total, vals[i]);
    }
    t->totals_ok = false;
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
    ASSERT_ALWAYS(dst->sh->count == 1 && self_at(dst, 0) == 0);
    if (src->sh->count > dst->max_nodes) return ERR_LIMIT;
    if (dst->sh == src->sh) return ERR_OK;
    int rc = values_reserve(dst, src->sh->count);
    if (rc != ERR_OK) return rc;
    /* a shared shape never changes, so its links are made before it is */
    if (links_of(src->sh) == NULL) return ERR_NOMEM;
    __atomic_add_fetch(&src->sh->refs, 1, __ATOMIC_ACQ_REL);
    shape_release(dst->sh);
    dst->sh = src->sh;
    dst->totals_ok = false;
    return ERR_OK;
}

int calltree_adopt_shape(calltree_t *dst, const calltree_t *src, int64_t *selves, size_t n)
{
    size_t count = src->sh->count;
    ASSERT_ALWAYS(dst->sh->count == 1 && dst->base == NULL && n <= count &&
                  (dst->valueless || dst->self[0] == 0));
    if (count > dst->max_nodes) {
        free(selves);
        return ERR_LIMIT;
    }
    if (dst->sh != src->sh && links_of(src->sh) == NULL) { /* as calltree_copy_shape */
        free(selves);
        return ERR_NOMEM;
    }
    int64_t *self = realloc(selves, count * sizeof *self);
    if (self == NULL) {
        free(selves);
        return ERR_NOMEM;
    }
    memset(self + n, 0, (count - n) * sizeof *self);
    free(dst->self);
    dst->self = self;
    dst->vcap = count;
    dst->valueless = false;
    dst->root_total = 0;
    for (size_t i = 0; i < n; i++)
        WADD(dst->root_total, self[i]);
    dst->totals_ok = false;
    if (dst->sh != src->sh) {
        __atomic_add_fetch(&src->sh->refs, 1, __ATOMIC_ACQ_REL);
        shape_release(dst->sh);
        dst->sh = src->sh;
    }
    return ERR_OK;
}

int calltree_adopt_scaled(calltree_t *dst, const calltree_t *src, int64_t scale)
{
    ASSERT_ALWAYS(dst->sh->count == 1 && dst->base == NULL &&
                  (dst->valueless || dst->self[0] == 0));
    ASSERT_ALWAYS(src->base == NULL);
    if (src->sh->count > dst->max_nodes) return ERR_LIMIT;
    if (readable_values(src) != ERR_OK) return ERR_NOMEM;
    if (dst->sh != src->sh) {
        if (links_of(src->sh) == NULL) return ERR_NOMEM; /* as calltree_copy_shape */
        __atomic_add_fetch(&src->sh->refs, 1, __ATOMIC_ACQ_REL);
        shape_release(dst->sh);
        dst->sh = src->sh;
    }
    free(dst->self);
    dst->self = NULL;
    dst->vcap = 0;
    dst->valueless = false;
    dst->base = src;
    dst->scale = scale;
    dst->root_total = wmul(src->root_total, scale);
    dst->totals_ok = false;
    return ERR_OK;
}

bool calltree_same_shape(const calltree_t *a, const calltree_t *b)
{
    if (a == b || a->sh == b->sh) return true;
    if (a->sh->count != b->sh->count) return false;
    const ct_node_t *x = a->sh->nodes, *y = b->sh->nodes;
    const uint64_t *xs = a->sh->syms, *ys = b->sh->syms;
    for (size_t i = 0; i < a->sh->count; i++)
        if (xs[x[i].sym_index] != ys[y[i].sym_index] || x[i].parent != y[i].parent) return false;
    return true;
}

int calltree_merge(calltree_t *dst, const calltree_t *src)
{
    size_t n = src->sh->count, nsyms = src->sh->nsyms;
    /* map: src's nodes to dst's; hint: src's symbols to dst's indices */
    if (readable_values(src) != ERR_OK) return ERR_NOMEM;
    uint32_t *map = malloc((n + nsyms) * sizeof *map), *hint = map + n;
    if (map == NULL) return ERR_NOMEM;
    map[0] = 0;
    memset(hint, 0xff, nsyms * sizeof *hint);
    int rc = own_values(dst);
    for (size_t i = 1; i < n && rc == ERR_OK; i++) {
        ct_node_t nd = src->sh->nodes[i]; /* read again: src may be dst */
        rc = calltree_child_hint(dst, map[nd.parent], src->sh->syms[nd.sym_index],
                                 &hint[nd.sym_index], &map[i]);
    }
    if (rc == ERR_OK) {
        for (size_t i = 0; i < n; i++)
            WADD(dst->self[map[i]], self_at(src, i));
        WADD(dst->root_total, src->root_total);
        dst->totals_ok = false;
    }
    free(map);
    return rc;
}

/* Preorder traversal: calls visit(ctx, node, depth) for every non-root node. */
static int preorder(const calltree_t *t, int (*visit)(void *, uint32_t, uint32_t), void *ctx)
{
    const calltree_links_t *l = links_of(t->sh);
    if (l == NULL) return ERR_NOMEM;
    uint32_t node = l[0].first_child;
    uint32_t depth = 1;
    while (node != CALLTREE_NONE) {
        int rc = visit(ctx, node, depth);
        if (rc != ERR_OK) return rc;
        if (l[node].first_child != CALLTREE_NONE) {
            node = l[node].first_child;
            depth++;
            continue;
        }
        while (node != 0 && l[node].next_sibling == CALLTREE_NONE) {
            node = t->sh->nodes[node].parent;
            depth--;
        }
        node = node == 0 ? CALLTREE_NONE : l[node].next_sibling;
    }
    return ERR_OK;
}

typedef struct encode_ctx {
    const calltree_t *t;
    /* The dictionary: each tree-local symbol's index in it (first use in
     * preorder first; CALLTREE_NONE until used), and its length. */
    uint32_t *code;
    size_t ncode;
    buf_t *out;     /* records appended, the dictionary written at dict */
    size_t dict;    /* offset in out of dictionary entry 0 */
    size_t records; /* written */
} encode_ctx_t;

/* A node record: depth, symbol index, zigzag self, each a varint. */
#define ENCODE_RECORD_MAX 30
/* The header before the dictionary and after it: version and its length
 * (at most 1 + 10 bytes), root self and record count (at most 20). */
#define ENCODE_HEAD_MAX 11
#define ENCODE_TAIL_MAX 20

/* Called for every node: the record is written straight into out's room
 * (reserved a record ahead) and a new symbol into the dictionary's room
 * (reserved for every symbol of the tree): a call per field and per record
 * was most of the cost of encoding a small tree (a span's, where most
 * symbols are new). */
static int encode_visit(void *vctx, uint32_t node, uint32_t depth)
{
    encode_ctx_t *c = vctx;
    uint32_t si = c->t->sh->nodes[node].sym_index, idx = c->code[si];
    buf_t *b = c->out;
    if (idx == CALLTREE_NONE) { /* the dictionary has room for every symbol */
        uint64_t sym = c->t->sh->syms[si];
        idx = c->code[si] = (uint32_t)c->ncode++;
        uint8_t *le = b->data + c->dict + 8 * (size_t)idx;
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(sym >> (8 * i));
    }
    if (b->cap - b->len <= ENCODE_RECORD_MAX) {
        int rc = buf_reserve(b, ENCODE_RECORD_MAX);
        if (rc != ERR_OK) return rc;
    }
    uint8_t *p = b->data + b->len;
    p += varint_put_u(p, depth);
    p += varint_put_u(p, idx);
    p += varint_put_u(p, varint_zigzag(self_at(c->t, node)));
    b->len = (size_t)(p - b->data);
    c->records++;
    return ERR_OK;
}

size_t calltree_encode_scratch_bytes(const calltree_t *t)
{
    size_t links = t->sh->links == NULL ? t->sh->cap * sizeof *t->sh->links : 0;
    size_t values = t->valueless ? t->sh->count * sizeof *t->self : 0;
    return t->sh->nsyms * sizeof(uint32_t) + links + values;
}

/* The records are written into out after room for the largest header
 * (the dictionary can hold every symbol of the tree), then the header is
 * written in front of them once the dictionary's size is known and the
 * records moved back to it: no copy of the records or of the dictionary
 * is held apart from out. */
int calltree_encode(const calltree_t *t, buf_t *out)
{
    if (readable_values(t) != ERR_OK) return ERR_NOMEM;
    size_t start = out->len, nsyms = t->sh->nsyms;
    size_t room = ENCODE_HEAD_MAX + 8 * nsyms + ENCODE_TAIL_MAX;
    encode_ctx_t c = {.t = t, .out = out, .dict = start + ENCODE_HEAD_MAX};
    c.code = malloc(nsyms * sizeof *c.code);
    int rc = c.code != NULL ? ERR_OK : ERR_NOMEM;
    if (rc == ERR_OK) memset(c.code, 0xff, nsyms * sizeof *c.code);
    /* about 4 bytes a record: one allocation for most trees */
    if (rc == ERR_OK) rc = buf_reserve(out, room + 4 * t->sh->count + ENCODE_RECORD_MAX);
    if (rc == ERR_OK) {
        out->len = start + room;
        rc = preorder(t, encode_visit, &c);
    }
    /* The header's node count must be the records that follow it, and every
     * record's symbol index must be in the dictionary, or decoding the stored
     * tree fails (or, worse, reads other stacks). */
    ASSERT_ALWAYS(rc != ERR_OK || c.records == t->sh->count - 1);
    ASSERT_ALWAYS(rc != ERR_OK || c.ncode <= nsyms);
    free(c.code);
    if (rc != ERR_OK) {
        out->len = start;
        if (out->cap > start) out->data[start] = 0;
        return rc;
    }
    uint8_t *d = out->data, *p = d + start;
    size_t body = out->len - (start + room);
    *p++ = CALLTREE_VERSION;
    p += varint_put_u(p, c.ncode);
    memmove(p, d + c.dict, 8 * c.ncode);
    p += 8 * c.ncode;
    p += varint_put_u(p, varint_zigzag(self_at(t, 0)));
    p += varint_put_u(p, t->sh->count - 1);
    memmove(p, d + start + room, body);
    out->len = (size_t)(p - d) + body;
    d[out->len] = 0;
    return ERR_OK;
}

static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

typedef struct decoded {
    uint32_t *dst;  /* dst node of each decoded node */
    uint32_t *hint; /* dst's index of each dictionary symbol (calltree_child_hint) */
    uint32_t *depth;
    int64_t *self;
    uint32_t *stack; /* dst node at each depth while walking */
} decoded_t;

static void decoded_free(decoded_t *d)
{
    free(d->dst);
    free(d->hint);
    free(d->depth);
    free(d->self);
    free(d->stack);
}

/* One record at *p (depth, dictionary index, zigzag self), checked: its
 * depth at most one below the previous record's (cur_depth), its index in
 * the dictionary of nsyms symbols. 0, or ERR_CORRUPT. */
static inline __attribute__((always_inline)) int read_record(const uint8_t **p, const uint8_t *end,
                                                             uint64_t nsyms, uint32_t cur_depth,
                                                             uint32_t *depth, uint32_t *idx,
                                                             int64_t *self)
{
    uint64_t d, x, zz;
    if (!varint_read_u(p, end, &d) || !varint_read_u(p, end, &x) || !varint_read_u(p, end, &zz))
        return ERR_CORRUPT;
    if (d == 0 || d > cur_depth + 1 || d > CALLTREE_MAX_DEPTH || x >= nsyms) return ERR_CORRUPT;
    *depth = (uint32_t)d;
    *idx = (uint32_t)x;
    *self = (int64_t)((zz >> 1) ^ (~(zz & 1) + 1));
    return ERR_OK;
}

/* Pass 1: parse and validate every record without touching dst, so a
 * corrupt encoding leaves dst unchanged. */
static int decode_records(const uint8_t **pp, const uint8_t *end, uint64_t nsyms, uint64_t nnodes,
                          decoded_t *d, uint32_t *max_depth)
{
    const uint8_t *p = *pp;
    uint32_t cur_depth = 0, deepest = 0;
    for (uint64_t i = 0; i < nnodes; i++) {
        /* dst holds the dictionary index until pass 2 maps it */
        if (read_record(&p, end, nsyms, cur_depth, &d->depth[i], &d->dst[i], &d->self[i]) != 0)
            return ERR_CORRUPT;
        cur_depth = d->depth[i];
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
        int rc =
            calltree_child_hint(dst, d->stack[d->depth[i] - 1], sym, &d->hint[d->dst[i]], &node);
        if (rc != ERR_OK) return rc;
        d->stack[d->depth[i]] = node;
        d->dst[i] = node;
    }
    return ERR_OK;
}

/* Pass 3: add the self values (totals are computed when read). */
static void decode_add(calltree_t *dst, uint64_t nnodes, int64_t root_self, const decoded_t *d)
{
    for (uint64_t k = 0; k < nnodes; k++) {
        WADD(dst->self[d->dst[k]], d->self[k]);
        WADD(dst->root_total, d->self[k]);
    }
    WADD(dst->self[0], root_self);
    WADD(dst->root_total, root_self);
    dst->totals_ok = false;
}

/* The encoding's header: version, symbol dictionary (left at *dict,
 * nsyms entries of 8 bytes), root self and record count; *p moves to the
 * first record. ERR_CORRUPT when it cannot be one (a record takes 3 bytes
 * or more). */
static int read_header(const uint8_t **p, const uint8_t *end, uint64_t *nsyms, const uint8_t **dict,
                       int64_t *root_self, uint64_t *nnodes)
{
    const uint8_t *q = *p;
    if (q >= end || q[0] != CALLTREE_VERSION) return ERR_CORRUPT;
    q++;
    if (!varint_read_u(&q, end, nsyms) || *nsyms > (uint64_t)(end - q) / 8) return ERR_CORRUPT;
    *dict = q;
    q += 8 * *nsyms;
    if (!varint_read_s(&q, end, root_self) || !varint_read_u(&q, end, nnodes)) return ERR_CORRUPT;
    if (*nnodes > (uint64_t)(end - q) / 3) return ERR_CORRUPT;
    *p = q;
    return ERR_OK;
}

size_t calltree_decode_scratch_bytes(size_t nsyms, size_t nnodes)
{
    if (nnodes == 0) return 0;
    size_t stack_len = (nnodes < CALLTREE_MAX_DEPTH ? nnodes : CALLTREE_MAX_DEPTH) + 2;
    return nnodes * (2 * sizeof(uint32_t) + sizeof(int64_t)) +
           (nsyms ? nsyms : 1) * sizeof(uint32_t) + stack_len * sizeof(uint32_t);
}

int calltree_decode_merge(calltree_t *dst, const uint8_t *p, size_t n)
{
    if (n == 0) return ERR_CORRUPT; /* also p NULL (an absent field): no p + n */
    const uint8_t *end = p + n, *dict;
    uint64_t nsyms, nnodes;
    int64_t root_self;
    int rc0 = read_header(&p, end, &nsyms, &dict, &root_self, &nnodes);
    if (rc0 == ERR_OK) rc0 = own_values(dst);
    if (rc0 != ERR_OK) return rc0;
    if (nnodes == 0) {
        if (p != end) return ERR_CORRUPT;
        WADD(dst->self[0], root_self);
        WADD(dst->root_total, root_self);
        dst->totals_ok = false;
        return ERR_OK;
    }
    size_t stack_len = (nnodes < CALLTREE_MAX_DEPTH ? nnodes : CALLTREE_MAX_DEPTH) + 2;
    decoded_t d = {
        .dst = malloc(nnodes * sizeof(uint32_t)),
        .hint = malloc((nsyms ? nsyms : 1) * sizeof(uint32_t)),
        .depth = malloc(nnodes * sizeof(uint32_t)),
        .self = malloc(nnodes * sizeof(int64_t)),
        .stack = malloc(stack_len * sizeof(uint32_t)),
    };
    uint32_t max_depth = 0;
    int rc = (d.dst && d.hint && d.depth && d.self && d.stack) ? ERR_OK : ERR_NOMEM;
    if (rc == ERR_OK) memset(d.hint, 0xff, (nsyms ? nsyms : 1) * sizeof(uint32_t));
    if (rc == ERR_OK) rc = decode_records(&p, end, nsyms, nnodes, &d, &max_depth);
    /* a tree decoded whole (a replica's, a repair's): its arrays and tables
     * made once at their size (the records are valid), not grown a dozen
     * times on the way; one merged into a tree that holds nodes may share
     * most of them, and grows as it needs */
    if (rc == ERR_OK && dst->sh->count == 1) rc = calltree_reserve_decode(dst, nnodes, nsyms);
    if (rc == ERR_OK) rc = decode_place(dst, dict, nnodes, &d);
    if (rc == ERR_OK) decode_add(dst, nnodes, root_self, &d);
    decoded_free(&d);
    return rc;
}

/* The shape and values of a tree of nnodes records over nsyms dictionary
 * symbols, allocated at their size, done growing (no tables); the root
 * made; max_nodes its limit (never 0 here). NULL when they cannot be. */
static calltree_t *flat_tree(size_t max_nodes, size_t nnodes, size_t nsyms)
{
    calltree_t *t = calloc(1, sizeof *t);
    ct_shape_t *sh = calloc(1, sizeof *sh);
    size_t n = nnodes + 1;
    if (t != NULL) t->sh = sh;
    if (sh != NULL) {
        sh->refs = 1;
        sh->nodes = malloc(n * sizeof *sh->nodes);
        sh->links = malloc(n * sizeof *sh->links);
        sh->syms = malloc((nsyms + 1) * sizeof *sh->syms);
    }
    if (t != NULL) t->self = malloc(n * sizeof *t->self);
    if (t == NULL || sh == NULL || !sh->nodes || !sh->links || !sh->syms || !t->self) {
        if (t == NULL) shape_free(sh);
        calltree_free(t);
        return NULL;
    }
    t->max_nodes = max_nodes;
    t->vcap = sh->cap = sh->lcap = n;
    sh->scap = sh->nsyms = nsyms + 1;
    sh->syms[0] = SYM_ROOT;
    sh->nodes[0] = (ct_node_t){0, CALLTREE_NONE};
    sh->links[0] = (calltree_links_t){CALLTREE_NONE, CALLTREE_NONE};
    sh->count = 1;
    return t;
}

/* The records of an encoding into flat_tree t, each the next node, its
 * parent the last node one level up, put first in its parent's child
 * list (as append_node does); p must end at end. */
static int flat_records(calltree_t *t, const uint8_t *p, const uint8_t *end, uint64_t nnodes,
                        uint32_t *stack)
{
    ct_shape_t *sh = t->sh;
    uint64_t nsyms = sh->nsyms - 1;
    uint32_t cur_depth = 0;
    stack[0] = 0;
    for (uint64_t i = 0; i < nnodes; i++) {
        uint32_t depth, idx;
        int64_t v;
        if (read_record(&p, end, nsyms, cur_depth, &depth, &idx, &v) != 0) return ERR_CORRUPT;
        uint32_t node = (uint32_t)i + 1, parent = stack[depth - 1];
        sh->nodes[node] = (ct_node_t){idx + 1, parent};
        sh->links[node] = (calltree_links_t){CALLTREE_NONE, sh->links[parent].first_child};
        sh->links[parent].first_child = node;
        t->self[node] = v;
        WADD(t->root_total, v);
        stack[depth] = node;
        cur_depth = depth;
    }
    sh->count = (size_t)nnodes + 1;
    return p == end ? ERR_OK : ERR_CORRUPT;
}

int calltree_decode_new(const uint8_t *p, size_t n, size_t max_nodes, calltree_t **out)
{
    *out = NULL;
    if (n == 0) return ERR_CORRUPT; /* also p NULL (an absent field): no p + n */
    const uint8_t *end = p + n, *dict;
    uint64_t nsyms, nnodes;
    int64_t root_self;
    int rc = read_header(&p, end, &nsyms, &dict, &root_self, &nnodes);
    if (rc != ERR_OK) return rc;
    size_t limit = max_nodes == 0 ? (size_t)UINT32_MAX - 1 : max_nodes;
    if (nnodes >= limit) return ERR_LIMIT; /* the root is a node too */
    size_t stack_len = (nnodes < CALLTREE_MAX_DEPTH ? nnodes : CALLTREE_MAX_DEPTH) + 2;
    uint32_t *stack = malloc(stack_len * sizeof *stack);
    calltree_t *t = stack != NULL ? flat_tree(limit, nnodes, nsyms) : NULL;
    rc = t != NULL ? flat_records(t, p, end, nnodes, stack) : ERR_NOMEM;
    free(stack);
    if (rc != ERR_OK) {
        calltree_free(t);
        return rc;
    }
    for (uint64_t k = 0; k < nsyms; k++)
        t->sh->syms[k + 1] = le64_get(dict + 8 * k);
    t->self[0] = root_self;
    WADD(t->root_total, root_self);
    *out = t;
    return ERR_OK;
}

int calltree_decode_records(const uint8_t *p, size_t n, size_t max_records, calltree_records_t *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0) return ERR_CORRUPT; /* also p NULL (an absent field): no p + n */
    const uint8_t *end = p + n, *dict;
    uint64_t nsyms, nnodes;
    int64_t root_self;
    int rc0 = read_header(&p, end, &nsyms, &dict, &root_self, &nnodes);
    if (rc0 != ERR_OK) return rc0;
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
    return t->sh->count;
}

size_t calltree_max_nodes(const calltree_t *t)
{
    return t->max_nodes;
}

size_t calltree_mem_bytes(const calltree_t *t)
{
    /* a shared shape is counted once over the trees that share it */
    unsigned refs = __atomic_load_n(&t->sh->refs, __ATOMIC_ACQUIRE);
    return sizeof *t + (t->vcap + t->tcap) * sizeof *t->self +
           shape_bytes(t->sh) / (refs ? refs : 1);
}

size_t calltree_mem_bytes_read(const calltree_t *t)
{
    /* a shared shape has its links: only an owned one may lack them */
    size_t links = t->sh->links == NULL ? t->sh->cap * sizeof *t->sh->links : 0;
    return calltree_mem_bytes(t) + links;
}

uint64_t calltree_sym(const calltree_t *t, uint32_t node)
{
    return t->sh->syms[t->sh->nodes[node].sym_index];
}

const uint64_t *calltree_syms(const calltree_t *t)
{
    return t->sh->syms;
}

size_t calltree_sym_count(const calltree_t *t)
{
    return t->sh->nsyms;
}

int64_t calltree_self(const calltree_t *t, uint32_t node)
{
    return t->valueless ? 0 : self_at(t, node);
}

int64_t calltree_total(const calltree_t *t, uint32_t node)
{
    const int64_t *totals = totals_of(t);
    return totals != NULL ? totals[node] : subtree_total(t, node);
}

uint32_t calltree_parent(const calltree_t *t, uint32_t node)
{
    return t->sh->nodes[node].parent;
}

uint32_t calltree_first_child(const calltree_t *t, uint32_t node)
{
    const calltree_links_t *l = links_of(t->sh);
    if (l != NULL) return l[node].first_child;
    for (size_t i = t->sh->count; i-- > (size_t)node + 1;) /* the newest child */
        if (t->sh->nodes[i].parent == node) return (uint32_t)i;
    return CALLTREE_NONE;
}

uint32_t calltree_next_sibling(const calltree_t *t, uint32_t node)
{
    const calltree_links_t *l = links_of(t->sh);
    if (l != NULL) return l[node].next_sibling;
    uint32_t p = t->sh->nodes[node].parent;
    for (uint32_t i = node; node != 0 && i-- > p + 1;) /* the next older sibling */
        if (t->sh->nodes[i].parent == p) return i;
    return CALLTREE_NONE;
}

const calltree_links_t *calltree_links(const calltree_t *t)
{
    return links_of(t->sh);
}

const calltree_node_t *calltree_nodes(const calltree_t *t)
{
    return t->sh->nodes;
}

const int64_t *calltree_selves(const calltree_t *t)
{
    /* a scaled or valueless tree's are made, as its totals are when read */
    if ((t->base != NULL || t->valueless) &&
        values_reserve((calltree_t *)t, t->sh->count) != ERR_OK)
        return NULL;
    return t->self;
}

int calltree_selves_scaled(const calltree_t *t, const int64_t **self, int64_t *scale)
{
    *self = NULL;
    *scale = 1;
    if (readable_values(t) != ERR_OK) return ERR_NOMEM;
    *scale = t->base != NULL ? t->scale : 1;
    *self = t->base != NULL ? t->base->self : t->self;
    return ERR_OK;
}

const int64_t *calltree_totals(const calltree_t *t)
{
    return totals_of(t);
}

size_t calltree_totals_bytes(const calltree_t *t)
{
    size_t n = t->sh->count;
    return t->totals_ok || n <= t->tcap ? 0 : n * sizeof *t->total;
}

int64_t calltree_root_total(const calltree_t *t)
{
    return t->root_total;
}

int calltree_for_each_symbol(const calltree_t *t, int (*fn)(void *ctx, uint64_t sym), void *ctx)
{
    uint8_t *seen = calloc(t->sh->nsyms, 1); /* each symbol at its first node */
    int rc = seen != NULL ? ERR_OK : ERR_NOMEM;
    for (size_t i = 1; i < t->sh->count && rc == ERR_OK; i++) {
        uint32_t si = t->sh->nodes[i].sym_index;
        if (!seen[si]) {
            seen[si] = 1;
            rc = fn(ctx, t->sh->syms[si]);
        }
    }
    free(seen);
    return rc;
}
