/* keep.c — maxNodes truncation chosen before any tree is built.
 *
 * query_truncate (truncate.c) needs the whole merged tree: one hash insert per
 * node of every token's node table that the range touched, then a walk over
 * it, to keep a few thousand nodes. Here the same best-first selection runs
 * over the tokens' forests (storage_merger_tabs: subtree totals per stack-node
 * id, from one descending pass over each node table) and expands a merged
 * node only when it is kept and one of its children could be kept next: its
 * children are the union by symbol of its members' children in every token.
 * Only kept nodes and some of their children are ever looked at, and only
 * kept nodes are built.
 *
 * The result is the tree query_truncate would make of the merged tree, node
 * for node (the order of node indices aside, which no encoder depends on: they
 * order children by content). That needs every value >= 0 and no total past
 * INT64_MAX: then a node's total is never below its children's, a node has a
 * non-empty child exactly when its total differs from its self, and empty
 * nodes (total 0) are exactly the stack nodes no token has a value under.
 * Otherwise the caller builds the whole tree and uses query_truncate.
 *
 * A coordinator's shares' forests of encoding 4 or 5 join the selection as
 * they lie (query_packed_t, forest.c): a member there is its node's entry
 * in sel_t.kv (its record's offset and end, its total and self), and its
 * kids are read (and checked) when its merged node is expanded, so what
 * lies below the kept nodes' children is never read.
 *
 * The choice comes out as flat arrays (query_kept_t), which the flamebearer
 * encoder writes straight from when one partial is the whole JSON answer;
 * query_truncate_tabs builds them into a call tree for every other use.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "query/query_int.h"

typedef struct mnode {
    uint64_t sym, pkey; /* pkey: path hash, as truncate.c's; made when a tie needs it */
    int64_t self, total;
    uint32_t parent;
    uint32_t mem;    /* first member (a (token, local node) pair in sel_t.mem), or NO_MEMBER */
    uint32_t hidden; /* kept: children not kept */
    uint32_t has_pkey;
    uint32_t out;     /* kept: its node in the answer */
    uint32_t depth;   /* the root's 0 */
    int64_t kept_sum; /* kept: summed totals of its kept children */
} mnode_t;

/* A merged node's members form a list through sel_t.mem: an expansion
 * files each member child under its merged child as it meets it, with no
 * second pass to lay them out side by side. */
#define NO_MEMBER UINT32_MAX
/* The answer's arrays per kept node (kept_arrays): sym, parent, self, total. */
#define KEPT_NODE_BYTES (sizeof(uint64_t) + sizeof(uint32_t) + 2 * sizeof(int64_t))
/* A tree built of kept nodes (query_kept_tree), per node at most: its
 * shape (8), edge slot (9), self (8), symbol id and slot (14), and the map
 * from kept node to tree node (4). */
#define KEPT_TREE_NODE_BYTES 43
typedef struct member {
    uint32_t tab, local; /* local: the member's stack-node id in its token's forest; in a packed
                            forest (tab >= ntabs), its node's index in sel_t.kv */
    uint32_t next;       /* the node's next member, or NO_MEMBER */
} member_t;

/* A frontier entry carries its node's total, so the frontier orders by it
 * without reading the node (a cache miss per comparison); only ties look at
 * the nodes' path hashes. A kept node's children are not made when it is
 * kept: an entry for them (kids) stands on the frontier instead, ordered by
 * the node's total less its self, which no child's total passes. They are
 * made when that entry comes to the top, before any node it could hold
 * (it goes first on a tie), so the nodes come off the frontier in the same
 * order as if they had been made at once; the kept nodes whose entry never
 * comes up (most of the last ones kept: all their children are lighter
 * than the node the selection stops at) are never expanded. */
typedef struct hent {
    int64_t total;
    uint32_t node;
    uint32_t kids; /* 1: the node's children, not yet made */
} hent_t;

/* Ties: the entries of the last top's total. Entries for children come
 * first, in any order (the same children are made whichever goes first),
 * so they wait on a stack (sel_t.kq); nodes follow by path hash, in a
 * binary heap whose entries carry the hash, so that comparing two reads
 * neither node (the hash is made the first time an entry is compared:
 * most ties are one entry alone). */
typedef struct tent {
    uint64_t pkey;
    uint32_t node;
    uint32_t has_pkey;
} tent_t;

/* The frontier is a radix heap over totals: what comes off it is never
 * heavier than what came off before (a child's total is at most its
 * parent's total less its self), so an entry is filed by the highest bit
 * where its total's key differs from the last top's, at the end of its
 * bucket's array (pent_t; arrays, not lists, so that emptying a bucket
 * reads its entries in a row instead of chasing links through scattered
 * entries). Taking the top empties the lowest non-empty bucket: its
 * lightest key becomes the last top and each entry moves to a lower
 * bucket, or to the ties when its key is the last top's. The ties (tent_t)
 * hold a few entries at a time, where one binary heap of the whole
 * frontier sank every top through a dozen levels. The order entries come
 * off in is the one a single heap would give the whole frontier: heavier
 * totals first; on a tie, entries for children, then nodes by path hash. */
#define RADIX_BUCKETS 64
#define BUCKET_FIRST_CAP 64 /* entries of a bucket's array when it is first made */
typedef struct pent {
    int64_t total;
    uint32_t node; /* bit 31: an entry for the node's children (hent_t.kids) */
} pent_t;
#define PENT_KIDS 0x80000000u
/* Merged nodes fit below PENT_KIDS (each holds more bytes than 2^31 can). */
#define MAX_MERGED_NODES PENT_KIDS

typedef struct sel {
    const storage_merged_tab_t *tabs;
    size_t ntabs;
    const query_packed_t *packed; /* members of tab ntabs + k are in packed[k] */
    query_pkid_t *kv;             /* every packed member's node: its values and bytes */
    size_t nkv, capkv;
    mnode_t *nd;
    size_t nn, capn;
    member_t *mem;
    size_t nm, capm;
    tent_t *heap; /* the ties' nodes, by path hash */
    size_t hn, caph;
    uint32_t *kq; /* the ties' entries for children */
    size_t nkq, capkq;
    pent_t *bucket[RADIX_BUCKETS]; /* bucket b: keys whose highest bit off the last is b */
    uint32_t bn[RADIX_BUCKETS], bcap[RADIX_BUCKETS]; /* entries in each, and room */
    size_t bucket_cap;                               /* the buckets' room, summed */
    uint64_t mask;                                   /* bit b: bucket b is not empty */
    uint64_t last;                                   /* the last top's key (radix_key) */
    uint32_t *kept;                                  /* in the order kept: parents first */
    size_t nk, capk;
    size_t expanded; /* kept nodes whose children were made */
    /* per expansion: symbol -> child (index + 1; 0 empty) */
    uint32_t *slot;
    size_t nslot;
    uint32_t *touched; /* slots used */
    size_t capt;
    alloc_charge_t *charge; /* the arrays' bytes as they grow; NULL: not charged */
    size_t charged;
} sel_t;

/* Sets the charge to the arrays' bytes plus extra held beside them (an
 * array's new storage while realloc copies the old, the answer's arrays):
 * charged before they are allocated, given back once freed.
 * ERR_UNAVAILABLE when it does not fit. */
static int sel_hold(sel_t *s, size_t extra)
{
    if (s->charge == NULL) return 0;
    size_t now = s->capn * sizeof *s->nd + s->capm * sizeof *s->mem + s->caph * sizeof *s->heap +
                 s->capkq * sizeof *s->kq + s->bucket_cap * sizeof(pent_t) +
                 s->capk * sizeof *s->kept + s->nslot * sizeof *s->slot +
                 s->capt * sizeof *s->touched + s->capkv * sizeof *s->kv + extra;
    if (now <= s->charged) {
        alloc_charge_sub(s->charge, s->charged - now);
    } else if (alloc_charge_add(s->charge, now - s->charged) != 0) {
        return ERR_UNAVAILABLE;
    }
    s->charged = now;
    return 0;
}

static int sel_charge(sel_t *s)
{
    return sel_hold(s, 0);
}

/* Charges an array of cap elements of size bytes growing to hold need
 * (as GROW_FROM grows it, from 256) before it does: the new storage beside
 * the old. */
static size_t grown_cap(size_t cap, size_t need)
{
    size_t n = cap > 0 ? cap : 256;
    while (n < need)
        n *= 2;
    return n;
}

static int sel_pre(sel_t *s, size_t cap, size_t need, size_t size)
{
    return need <= cap ? 0 : sel_hold(s, grown_cap(cap, need) * size);
}

/* Hashing every frontier node's path costs more than the rest of choosing:
 * most never meet a node of the same total. */
static uint64_t pkey_of(sel_t *s, uint32_t i)
{
    mnode_t *m = &s->nd[i];
    if (!m->has_pkey) {
        m->pkey = hash_bytes64((uint64_t[2]){pkey_of(s, m->parent), m->sym}, 16);
        m->has_pkey = 1;
    }
    return m->pkey;
}

static inline uint64_t tie_key(sel_t *s, tent_t *e)
{
    if (!e->has_pkey) {
        e->pkey = pkey_of(s, e->node);
        e->has_pkey = 1;
    }
    return e->pkey;
}

static inline int ties_empty(const sel_t *s)
{
    return s->hn == 0 && s->nkq == 0;
}

/* Puts v (of the last top's total) among the ties. */
static int tie_push(sel_t *s, hent_t v)
{
    if (v.kids) {
        if (s->nkq == s->capkq) {
            size_t was = s->capkq;
            if (sel_pre(s, s->capkq, s->nkq + 1, sizeof *s->kq) != 0) return ERR_UNAVAILABLE;
            if (GROW_FROM(s->kq, s->capkq, s->nkq + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
            if (s->capkq != was && sel_charge(s) != 0) return ERR_UNAVAILABLE;
        }
        s->kq[s->nkq++] = v.node;
        return 0;
    }
    if (s->hn == s->caph) {
        size_t was = s->caph;
        if (sel_pre(s, s->caph, s->hn + 1, sizeof *s->heap) != 0) return ERR_UNAVAILABLE;
        if (GROW_FROM(s->heap, s->caph, s->hn + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
        if (s->caph != was && sel_charge(s) != 0) return ERR_UNAVAILABLE;
    }
    tent_t e = {0, v.node, 0};
    size_t i = s->hn++;
    if (i > 0) tie_key(s, &e);
    while (i > 0 && e.pkey < tie_key(s, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
    return 0;
}

/* Takes the ties' first node off. */
static inline void heap_pop(sel_t *s)
{
    tent_t v = s->heap[--s->hn];
    if (s->hn == 0) return;
    uint64_t k = tie_key(s, &v);
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->hn) break;
        if (c + 1 < s->hn && tie_key(s, &s->heap[c + 1]) < tie_key(s, &s->heap[c])) c++;
        if (tie_key(s, &s->heap[c]) >= k) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    s->heap[i] = v;
}

/* An entry's key in the radix heap: lighter totals have larger keys, so
 * the keys of the tops only grow. */
static uint64_t radix_key(int64_t total)
{
    return (uint64_t)INT64_MAX - (uint64_t)total; /* total in [0, INT64_MAX] */
}

/* Room for one more entry in bucket b, its array doubled (charged before
 * it grows) when full. */
static int bucket_room(sel_t *s, unsigned b)
{
    if (s->bn[b] < s->bcap[b]) return 0;
    uint32_t cap = s->bcap[b] ? 2 * s->bcap[b] : BUCKET_FIRST_CAP;
    if (cap <= s->bcap[b] || cap >= PENT_KIDS) return ERR_UNAVAILABLE;
    if (sel_hold(s, (size_t)cap * sizeof(pent_t)) != 0) return ERR_UNAVAILABLE;
    pent_t *e = realloc(s->bucket[b], (size_t)cap * sizeof *e);
    if (e == NULL) return ERR_NOMEM;
    s->bucket[b] = e;
    s->bucket_cap += cap - s->bcap[b];
    s->bcap[b] = cap;
    return sel_charge(s);
}

static inline int bucket_add(sel_t *s, unsigned b, pent_t e)
{
    if (s->bn[b] == s->bcap[b]) {
        int rc = bucket_room(s, b);
        if (rc != 0) return rc;
    }
    s->bucket[b][s->bn[b]++] = e;
    s->mask |= 1ull << b;
    return 0;
}

/* Puts v on the frontier. ERR_CORRUPT if it is heavier than the last top
 * (a forest whose children outweigh their parent: never one read here,
 * their sums are checked). */
static inline int frontier_push(sel_t *s, hent_t v)
{
    uint64_t k = radix_key(v.total);
    if (k == s->last && !v.kids && s->hn == 0 && s->caph > 0) { /* the commonest tie: one */
        s->heap[s->hn++] = (tent_t){0, v.node, 0};
        return 0;
    }
    if (k == s->last) return tie_push(s, v);
    if (k < s->last) return ERR_CORRUPT;
    return bucket_add(s, 63u - (unsigned)__builtin_clzll(k ^ s->last),
                      (pent_t){v.total, v.node | (v.kids ? PENT_KIDS : 0)});
}

/* When no ties are left: the lowest non-empty bucket's lightest key
 * becomes the last top, its entries of that key become the ties and the
 * others go to lower buckets. */
static int frontier_fill(sel_t *s)
{
    if (!ties_empty(s) || s->mask == 0) return 0;
    unsigned b = (unsigned)__builtin_ctzll(s->mask);
    const pent_t *e = s->bucket[b]; /* not moved: entries go to other buckets */
    uint32_t n = s->bn[b];
    uint64_t least = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = radix_key(e[i].total);
        least = k < least ? k : least;
    }
    s->bn[b] = 0;
    s->mask &= ~(1ull << b);
    s->last = least;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = radix_key(e[i].total);
        int rc;
        if (k == least) {
            uint32_t node = e[i].node & ~PENT_KIDS, kids = e[i].node >= PENT_KIDS;
            rc = tie_push(s, (hent_t){e[i].total, node, kids});
        } else {
            rc = bucket_add(s, 63u - (unsigned)__builtin_clzll(k ^ least), e[i]); /* below b */
        }
        if (rc != 0) return rc;
    }
    return 0;
}

/* Room for an expansion over nkids member children (already filed in
 * s->mem from s->nm on). */
static int expansion_room(sel_t *s, size_t nkids)
{
    if (nkids >= MAX_MERGED_NODES - s->nn) return ERR_UNAVAILABLE;
    size_t want = 16;
    while (want < 2 * nkids)
        want *= 2;
    if (want > s->nslot) {
        free(s->slot);
        s->slot = NULL;
        s->nslot = 0;
        if (sel_hold(s, want * sizeof *s->slot) != 0) return ERR_UNAVAILABLE;
        s->slot = calloc(want, sizeof *s->slot);
        if (s->slot == NULL) return ERR_NOMEM;
        s->nslot = want;
    }
    if (sel_pre(s, s->capt, nkids, sizeof *s->touched) != 0) return ERR_UNAVAILABLE;
    if (GROW_FROM(s->touched, s->capt, nkids, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    if (sel_pre(s, s->capn, s->nn + nkids, sizeof *s->nd) != 0) return ERR_UNAVAILABLE;
    if (GROW_FROM(s->nd, s->capn, s->nn + nkids, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    return sel_charge(s);
}

/* Puts the merged children from first on on the frontier (their parent's
 * entry for them taken off before). */
static int frontier_add(sel_t *s, size_t first)
{
    int rc = 0;
    for (size_t c = first; c < s->nn && rc == 0; c++)
        rc = frontier_push(s, (hent_t){s->nd[c].total, (uint32_t)c, 0});
    return rc;
}

/* Files the kids of node p's packed member m in s->mem from s->nm + *n on
 * (*n counts them), their nodes in s->kv. A packed forest is read only
 * here, a node's kids when the node is expanded; its depth is bounded as
 * a decoded forest's. */
static int packed_children(sel_t *s, uint32_t p, member_t m, size_t *n)
{
    size_t from = s->nkv, capkv = s->capkv;
    query_pkid_t node = s->kv[m.local]; /* a copy: kv may move as it grows */
    int rc = query_packed_kids(&s->packed[m.tab - s->ntabs], node, &s->kv, &s->capkv, &s->nkv);
    if (rc != 0) return rc;
    if (s->capkv != capkv && sel_charge(s) != 0) return ERR_UNAVAILABLE;
    if (s->nkv > from && s->nd[p].depth >= CALLTREE_MAX_DEPTH) return ERR_CORRUPT;
    for (size_t j = from; j < s->nkv; j++) {
        if (s->nm + *n == s->capm) {
            if (sel_pre(s, s->capm, s->nm + *n + 1, sizeof *s->mem) != 0) return ERR_UNAVAILABLE;
            if (GROW_FROM(s->mem, s->capm, s->nm + *n + 1, GROW_UNLIMITED, 256) != 0)
                return ERR_NOMEM;
            if (sel_charge(s) != 0) return ERR_UNAVAILABLE;
        }
        s->mem[s->nm + (*n)++] = (member_t){m.tab, (uint32_t)j, NO_MEMBER};
    }
    return 0;
}

/* Files the member children of node p in s->mem from s->nm on (not yet
 * counted in s->nm); *nkids gets their number. The sibling links are a
 * chain of dependent loads at scattered ids: while it is walked, each
 * child's symbol, total and self are fetched, so that their misses overlap
 * the chain's instead of following it one by one. */
static int member_children(sel_t *s, uint32_t p, size_t *nkids)
{
    size_t n = 0;
    for (uint32_t k = s->nd[p].mem; k != NO_MEMBER; k = s->mem[k].next) {
        if (s->mem[k].tab >= s->ntabs) continue;
        const storage_merged_tab_t *t = &s->tabs[s->mem[k].tab];
        __builtin_prefetch(&t->first_kid[s->mem[k].local]);
    }
    for (uint32_t k = s->nd[p].mem; k != NO_MEMBER; k = s->mem[k].next) {
        member_t m = s->mem[k];
        if (m.tab >= s->ntabs) {
            int rc = packed_children(s, p, m, &n);
            if (rc != 0) return rc;
            continue;
        }
        const storage_merged_tab_t *t = &s->tabs[m.tab];
        for (uint32_t l = t->first_kid[m.local]; l != STORAGE_NO_KID; l = t->next_sib[l]) {
            if (s->nm + n == s->capm) {
                if (sel_pre(s, s->capm, s->nm + n + 1, sizeof *s->mem) != 0) return ERR_UNAVAILABLE;
                if (GROW_FROM(s->mem, s->capm, s->nm + n + 1, GROW_UNLIMITED, 256) != 0)
                    return ERR_NOMEM;
                if (sel_charge(s) != 0) return ERR_UNAVAILABLE;
            }
            __builtin_prefetch(&t->sym[l]);
            __builtin_prefetch(&t->total[l]);
            __builtin_prefetch(&t->self[l]);
            s->mem[s->nm + n++] = (member_t){m.tab, l, NO_MEMBER};
        }
    }
    *nkids = n;
    return 0;
}

/* What an expansion reads and writes, in locals: the loop stores 64-bit
 * totals, which the compiler must assume could be the selection's own
 * counts, so through s it reloaded every array and count per member. */
typedef struct expansion {
    mnode_t *nd;
    uint32_t *slot, *touched;
    size_t mask, nn, ntouched;
} expansion_t;

/* The merged child of node p for symbol sym: found, or made. */
static inline __attribute__((always_inline)) mnode_t *child_for(expansion_t *x, uint32_t p,
                                                                uint32_t depth, uint64_t sym)
{
    size_t h = (size_t)((sym * 0x9E3779B97F4A7C15ull) >> 17) & x->mask;
    for (uint32_t e; (e = x->slot[h]) != 0; h = (h + 1) & x->mask)
        if (x->nd[e - 1].sym == sym) return &x->nd[e - 1];
    uint32_t c = (uint32_t)x->nn++;
    x->nd[c] = (mnode_t){.sym = sym, .parent = p, .mem = NO_MEMBER, .depth = depth};
    x->slot[h] = c + 1;
    x->touched[x->ntouched++] = (uint32_t)h;
    return &x->nd[c];
}

/* Room in s->mem for need members (charged before it grows). */
static int member_room(sel_t *s, size_t need)
{
    if (sel_pre(s, s->capm, need, sizeof *s->mem) != 0) return ERR_UNAVAILABLE;
    size_t was = s->capm;
    if (GROW_FROM(s->mem, s->capm, need, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    return s->capm != was ? sel_charge(s) : 0;
}

/* The number of member children of node p when every member is a decoded
 * forest's, or SIZE_MAX when one is packed (its kids are read as they are
 * filed). The sibling links are a chain of dependent loads at scattered
 * ids: while it is walked, each child's symbol, total and self are
 * fetched, so that their misses overlap the chain's and the merge's loads find them. */
static size_t tab_children(const sel_t *s, uint32_t p)
{
    size_t n = 0;
    for (uint32_t k = s->nd[p].mem; k != NO_MEMBER; k = s->mem[k].next) {
        if (s->mem[k].tab >= s->ntabs) return SIZE_MAX;
        const storage_merged_tab_t *t = &s->tabs[s->mem[k].tab];
        __builtin_prefetch(&t->first_kid[s->mem[k].local]);
    }
    for (uint32_t k = s->nd[p].mem; k != NO_MEMBER; k = s->mem[k].next) {
        const storage_merged_tab_t *t = &s->tabs[s->mem[k].tab];
        for (uint32_t l = t->first_kid[s->mem[k].local]; l != STORAGE_NO_KID; l = t->next_sib[l]) {
            __builtin_prefetch(&t->sym[l]);
            __builtin_prefetch(&t->total[l]);
            __builtin_prefetch(&t->self[l]);
            n++;
        }
    }
    return n;
}

/* Merges the member children of node p, every member a decoded forest's
 * (s->mem and x have room for tab_children's count), as their sibling
 * chains are walked: each is filed in s->mem under its merged child as it
 * is met, with no list of them walked again. */
static void merge_tab_children(sel_t *s, uint32_t p, expansion_t *x)
{
    member_t *mem = s->mem;
    const storage_merged_tab_t *tabs = s->tabs;
    uint32_t depth = s->nd[p].depth + 1, i = (uint32_t)s->nm;
    for (uint32_t k = s->nd[p].mem; k != NO_MEMBER; k = mem[k].next) {
        member_t m = mem[k];
        const storage_merged_tab_t *t = &tabs[m.tab];
        for (uint32_t l = t->first_kid[m.local]; l != STORAGE_NO_KID; l = t->next_sib[l]) {
            /* summed over its members as they are met (no overflow:
             * bounded by the root total) */
            mnode_t *c = child_for(x, p, depth, t->sym[l]);
            c->total += t->total[l];
            c->self += t->self[l];
            mem[i] = (member_t){m.tab, l, c->mem};
            c->mem = i++;
        }
    }
    s->nm = i;
}

/* The children of node p whose one member is a forest's whose nodes
 * have one child per symbol (storage_merged_tab_t.distinct_kids: a node
 * table's or a shard union's; one decoded from a peer may repeat a symbol
 * under a node, and is merged by symbol): they are that member's
 * children, so each is made as it is met, with no lookup by symbol
 * (s->mem and x have room for tab_children's count). The commonest
 * expansion once a node's tokens share one forest (a shard union,
 * storage/union.c). */
static void single_tab_children(sel_t *s, uint32_t p, expansion_t *x)
{
    member_t *mem = s->mem, m = mem[s->nd[p].mem];
    const storage_merged_tab_t *t = &s->tabs[m.tab];
    uint32_t depth = s->nd[p].depth + 1, i = (uint32_t)s->nm;
    for (uint32_t l = t->first_kid[m.local]; l != STORAGE_NO_KID; l = t->next_sib[l]) {
        x->nd[x->nn++] = (mnode_t){.sym = t->sym[l],
                                   .self = t->self[l],
                                   .total = t->total[l],
                                   .parent = p,
                                   .mem = i,
                                   .depth = depth};
        mem[i++] = (member_t){m.tab, l, NO_MEMBER};
    }
    s->nm = i;
}

/* Merges the nkids member children of node p filed in s->mem from s->nm
 * on (member_children: some of p's members are packed forests'). */
static void merge_listed_children(sel_t *s, uint32_t p, size_t nkids, expansion_t *x)
{
    member_t *mem = s->mem;
    const storage_merged_tab_t *tabs = s->tabs;
    const query_pkid_t *kv = s->kv;
    uint32_t ntabs = (uint32_t)s->ntabs, depth = s->nd[p].depth + 1;
    for (size_t i = s->nm, end = s->nm + nkids; i < end; i++) {
        member_t *m = &mem[i];
        mnode_t *c;
        if (m->tab < ntabs) {
            const storage_merged_tab_t *t = &tabs[m->tab];
            c = child_for(x, p, depth, t->sym[m->local]);
            c->total += t->total[m->local];
            c->self += t->self[m->local];
        } else {
            const query_pkid_t *v = &kv[m->local];
            c = child_for(x, p, depth, v->sym);
            c->total += v->total;
            c->self += v->self;
        }
        m->next = c->mem;
        c->mem = (uint32_t)i;
    }
    s->nm += nkids;
}

/* Makes the merged children of kept node p (every one non-empty; it has
 * one) and puts them on the frontier in place of its entry for them, taken
 * off the ties; p->hidden counts them. */
static int expand(sel_t *s, uint32_t p)
{
    s->expanded++;
    size_t nkids = tab_children(s, p);
    int listed = nkids == SIZE_MAX, rc;
    if (listed) {
        rc = member_children(s, p, &nkids);
    } else {
        rc = nkids < SIZE_MAX - s->nm ? member_room(s, s->nm + nkids) : ERR_UNAVAILABLE;
    }
    if (rc == 0) rc = expansion_room(s, nkids);
    if (rc != 0) return rc;
    size_t first = s->nn;
    expansion_t x = {s->nd, s->slot, s->touched, s->nslot - 1, s->nn, 0};
    if (listed) {
        merge_listed_children(s, p, nkids, &x);
    } else if (s->mem[s->nd[p].mem].next == NO_MEMBER &&
               s->tabs[s->mem[s->nd[p].mem].tab].distinct_kids) {
        single_tab_children(s, p, &x);
    } else {
        merge_tab_children(s, p, &x);
    }
    s->nn = x.nn;
    for (size_t i = 0; i < x.ntouched; i++)
        x.slot[x.touched[i]] = 0;
    s->nd[p].hidden = (uint32_t)(s->nn - first);
    return frontier_add(s, first);
}

/* Keeps node i; its children, when it has a non-empty one (its total is
 * not its self), go on the frontier as one entry (p->hidden is 1 until
 * they are made). With top, i is the ties' first node and leaves them. */
static inline int keep(sel_t *s, uint32_t i, int top)
{
    size_t was = s->capk;
    if (sel_pre(s, s->capk, s->nk + 1, sizeof *s->kept) != 0) return ERR_UNAVAILABLE;
    if (GROW_FROM(s->kept, s->capk, s->nk + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    if (s->capk != was && sel_charge(s) != 0) return ERR_UNAVAILABLE;
    s->kept[s->nk++] = i;
    mnode_t *m = &s->nd[i];
    if (top) heap_pop(s);
    if (m->total == m->self) return 0; /* no non-empty child */
    m->hidden = 1;
    return frontier_push(s, (hent_t){(int64_t)((uint64_t)m->total - (uint64_t)m->self), i, 1});
}

/* truncate.c's select_nodes, over merged nodes. */
static int select_kept(sel_t *s, size_t max_nodes)
{
    int rc = keep(s, 0, 0);
    size_t used = s->nd[0].hidden > 0 ? 2 : 1;
    while (rc == 0 && (rc = frontier_fill(s)) == 0 && !ties_empty(s)) {
        if (s->nkq > 0) { /* children are made before a tie between nodes is broken */
            rc = expand(s, s->kq[--s->nkq]);
            continue;
        }
        uint32_t c = s->heap[0].node, p = s->nd[c].parent;
        size_t cost = 1 + (s->nd[c].total != s->nd[c].self); /* a non-empty child */
        size_t frees = s->nd[p].hidden == 1;                 /* the parent's `other` goes away */
        if (used + cost - frees > max_nodes) break;
        s->nd[p].hidden--;
        s->nd[p].kept_sum += s->nd[c].total;
        if ((rc = keep(s, c, 1)) == 0) used += (s->nd[c].hidden > 0 ? 2 : 1) - frees;
    }
    return rc;
}

/* The kept nodes as flat arrays (parents first, in the order kept), then
 * one `other` child of their summed totals for each kept parent that hides
 * children. Totals are the merged ones: exact, so each is its self plus its
 * children's. */
static int kept_arrays(sel_t *s, query_kept_t **out)
{
    size_t n = s->nk;
    for (size_t k = 0; k < s->nk; k++)
        n += s->nd[s->kept[k]].hidden > 0;
    /* made while the selection's arrays are still held: charged beside them */
    if (sel_hold(s, sizeof(query_kept_t) + n * KEPT_NODE_BYTES) != 0) return ERR_UNAVAILABLE;
    query_kept_t *kp = calloc(1, sizeof *kp);
    if (kp == NULL) return ERR_NOMEM;
    kp->n = n;
    kp->expanded = s->expanded;
    kp->sym = malloc(n * sizeof *kp->sym);
    kp->parent = malloc(n * sizeof *kp->parent);
    kp->self = malloc(n * sizeof *kp->self);
    kp->total = malloc(n * sizeof *kp->total);
    if (!kp->sym || !kp->parent || !kp->self || !kp->total) {
        query_kept_free(kp);
        return ERR_NOMEM;
    }
    for (size_t k = 0; k < s->nk; k++) {
        mnode_t *m = &s->nd[s->kept[k]];
        m->out = (uint32_t)k;
        kp->sym[k] = m->sym;
        kp->parent[k] = k > 0 ? s->nd[m->parent].out : 0;
        kp->self[k] = m->self;
        kp->total[k] = m->total;
    }
    for (size_t k = 0, o = s->nk; k < s->nk; k++) {
        const mnode_t *m = &s->nd[s->kept[k]];
        if (m->hidden == 0) continue;
        kp->sym[o] = SYM_OTHER;
        kp->parent[o] = m->out; /* wrapping: exact, the sum fits */
        kp->self[o] = (int64_t)((uint64_t)m->total - (uint64_t)m->self - (uint64_t)m->kept_sum);
        kp->total[o] = kp->self[o];
        o++;
    }
    *out = kp;
    return 0;
}

int query_kept_tree(const query_kept_t *k, calltree_t *dst)
{
    uint32_t *nodes = malloc((k->n ? k->n : 1) * sizeof *nodes);
    int rc = nodes ? calltree_reserve(dst, k->n) : ERR_NOMEM;
    if (rc == 0 && k->n > 0) nodes[0] = 0;
    for (size_t i = 1; i < k->n && rc == 0; i++)
        rc = calltree_child(dst, nodes[k->parent[i]], k->sym[i], &nodes[i]);
    if (rc == 0) rc = calltree_add_selves(dst, nodes, k->self, k->n);
    free(nodes);
    return rc;
}

size_t query_kept_bytes(const query_kept_t *k)
{
    return k ? sizeof *k + k->n * (sizeof *k->sym + sizeof *k->parent + 2 * sizeof(int64_t) +
                                   (k->sid ? sizeof *k->sid : 0))
             : 0;
}

void query_kept_free(query_kept_t *k)
{
    if (k == NULL) return;
    free(k->sym);
    free(k->parent);
    free(k->self);
    free(k->total);
    free(k->sid);
    free(k);
}

/* The merged root: every token's root. The arrays start at a size that
 * covers a typical selection (a merged node has members of its own, so the
 * tokens' node counts bound both), which saves their doublings' copies. */
static int root_of(sel_t *s, size_t npacked, size_t max_nodes)
{
    size_t ntabs = s->ntabs + npacked;
    size_t local = 0, want = max_nodes < SIZE_MAX / 8 ? 8 * max_nodes : max_nodes;
    for (size_t i = 0; i < ntabs; i++)
        local += i < s->ntabs ? s->tabs[i].nodes : s->packed[i - s->ntabs].nodes;
    want = want < local ? want : local;
    size_t n1 = want > 1 ? want : 1, nmem = want > ntabs ? want : ntabs;
    size_t first = grown_cap(0, n1) * sizeof *s->nd + grown_cap(0, nmem) * sizeof *s->mem;
    if (sel_hold(s, first) != 0) return ERR_UNAVAILABLE; /* charged before they are made */
    if (GROW_FROM(s->nd, s->capn, n1, GROW_UNLIMITED, 256) != 0 ||
        GROW_FROM(s->mem, s->capm, nmem, GROW_UNLIMITED, 256) != 0)
        return ERR_NOMEM;
    s->nd[0] = (mnode_t){.sym = SYM_ROOT, .mem = ntabs ? 0 : NO_MEMBER, .has_pkey = 1};
    uint64_t total = 0;
    for (size_t i = 0; i < ntabs; i++) {
        const query_packed_t *pk = i < s->ntabs ? NULL : &s->packed[i - s->ntabs];
        if (pk == NULL && !s->tabs[i].nonneg) return ERR_INVALID_ARGUMENT;
        total += (uint64_t)(pk ? pk->root_total : s->tabs[i].total[0]);
        if (total > (uint64_t)INT64_MAX) return ERR_INVALID_ARGUMENT;
        s->nd[0].self += pk ? pk->root_self : s->tabs[i].self[0];
        uint32_t local = 0;
        if (pk != NULL) { /* a packed member is its node's entry in kv */
            if (GROW_FROM(s->kv, s->capkv, s->nkv + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
            local = (uint32_t)s->nkv;
            s->kv[s->nkv++] = query_packed_root(pk);
        }
        s->mem[i] = (member_t){(uint32_t)i, local, i + 1 < ntabs ? (uint32_t)i + 1 : NO_MEMBER};
    }
    s->nd[0].total = (int64_t)total;
    s->nn = 1;
    s->nm = ntabs;
    return 0;
}

size_t query_keep_scratch_bytes(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes)
{
    size_t cut = ntabs == 1 ? query_cut_scratch_bytes(&tabs[0], max_nodes) : 0;
    if (cut > 0) return cut; /* keep_mixed cuts one such forest by its totals */
    /* as root_of sizes the arrays: nodes, members and the frontier's
     * entries, and per node its place in the order kept and an expansion's
     * slot and touch; the tie heap as it first grows; then the answer's
     * arrays, made while they are still held */
    size_t local = 0, want = max_nodes < SIZE_MAX / 8 ? 8 * max_nodes : max_nodes;
    for (size_t i = 0; i < ntabs; i++)
        local += tabs[i].nodes;
    want = want < local ? want : local;
    if (want < ntabs) want = ntabs;
    size_t cap = 256; /* grown as GROW_FROM grows them: doubling from 256 */
    while (cap < want && cap <= SIZE_MAX / 2)
        cap *= 2;
    size_t answer = sizeof(uint64_t) + sizeof(uint32_t) + 2 * sizeof(int64_t); /* kept_arrays */
    size_t kept = want < max_nodes ? want : max_nodes;
    return cap * (sizeof(mnode_t) + sizeof(member_t) + sizeof(pent_t) + 4 * sizeof(uint32_t)) +
           256 * sizeof(tent_t) + kept * answer;
}

int query_keep_tabs(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                    query_kept_t **out)
{
    return query_keep_tabs_charged(tabs, ntabs, max_nodes, NULL, out);
}

/* The selection over tabs and npacked packed forests. */
static int keep_mixed(const storage_merged_tab_t *tabs, size_t ntabs, const query_packed_t *packed,
                      size_t npacked, size_t max_nodes, alloc_charge_t *charge, query_kept_t **out)
{
    *out = NULL;
    if (max_nodes < 2) return ERR_INVALID_ARGUMENT;
    int cut = ntabs == 1 && npacked == 0 ? query_keep_cut(tabs, max_nodes, charge, out) : 1;
    if (cut != 1) return cut;
    sel_t s = {.tabs = tabs, .ntabs = ntabs, .packed = packed, .charge = charge};
    int rc = root_of(&s, npacked, max_nodes);
    if (rc == 0) rc = sel_charge(&s);
    if (rc == 0) rc = select_kept(&s, max_nodes);
    if (rc == 0) rc = kept_arrays(&s, out);
    free(s.nd);
    free(s.mem);
    free(s.heap);
    free(s.kq);
    for (size_t b = 0; b < RADIX_BUCKETS; b++)
        free(s.bucket[b]);
    free(s.kept);
    free(s.slot);
    free(s.touched);
    free(s.kv);
    if (charge != NULL) alloc_charge_sub(charge, s.charged);
    return rc;
}

int query_truncate_tabs(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                        calltree_t *dst)
{
    return query_truncate_tabs_charged(tabs, ntabs, max_nodes, NULL, dst);
}

int query_keep_tabs_charged(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                            alloc_charge_t *charge, query_kept_t **out)
{
    return keep_mixed(tabs, ntabs, NULL, 0, max_nodes, charge, out);
}

int query_truncate_tabs_charged(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                                alloc_charge_t *charge, calltree_t *dst)
{
    return query_truncate_mixed_charged(tabs, ntabs, NULL, 0, max_nodes, charge, dst);
}

int query_keep_mixed_charged(const storage_merged_tab_t *tabs, size_t ntabs,
                             const query_packed_t *packed, size_t npacked, size_t max_nodes,
                             alloc_charge_t *charge, query_kept_t **out)
{
    return keep_mixed(tabs, ntabs, packed, npacked, max_nodes, charge, out);
}

int query_truncate_mixed_charged(const storage_merged_tab_t *tabs, size_t ntabs,
                                 const query_packed_t *packed, size_t npacked, size_t max_nodes,
                                 alloc_charge_t *charge, calltree_t *dst)
{
    query_kept_t *k;
    int rc = keep_mixed(tabs, ntabs, packed, npacked, max_nodes, charge, &k);
    /* the kept nodes, and the tree built of them with its map of their
     * nodes, while it is built (the caller counts the tree after) */
    size_t kb = rc == 0 && charge != NULL ? query_kept_bytes(k) + k->n * KEPT_TREE_NODE_BYTES : 0;
    if (kb > 0 && alloc_charge_add(charge, kb) != 0) {
        rc = ERR_UNAVAILABLE;
        kb = 0;
    }
    if (rc == 0) rc = query_kept_tree(k, dst);
    if (kb > 0) alloc_charge_sub(charge, kb);
    query_kept_free(k);
    return rc;
}
