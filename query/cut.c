/* cut.c — maxNodes truncation of one forest by a cut of its totals.
 *
 * keep.c chooses the kept nodes best-first: a frontier ordered by total
 * (ties by path hash), a node's children made when it is kept. Over one
 * forest whose nodes each have one child per symbol (a node table's or a
 * shard union's) every node's total is known before the choice starts,
 * so most of that order can be had without a frontier:
 *
 * Best-first takes the nodes in falling total (a node's total is at least
 * each child's, so every node heavier than t comes off before any of total
 * t), ties broken by path hash among the nodes whose parent is kept. After
 * it kept the set K (closed under parents), the budget it used is |K| plus
 * one `other` for each node of K that hides a non-empty child:
 *
 *   used(t) = |K_t| + #{k in K_t : minkid(k) < t},  K_t = the root and every node of total >= t
 *
 * where minkid(k) is the least total of k's non-empty children. Each step
 * adds 1 or 2 for the node and takes 1 off when it was its parent's last
 * hidden child, so the budget never falls: best-first keeps every node of
 * each total t whose used(t) fits maxNodes, and stops within the first
 * total that does not fit. Here used() is counted at the lower ends of
 * about 1,900 buckets of totals (exact below 64, 32 a power of two above:
 * two histograms and a scan down them), then total by total within the
 * bucket where it stops passing maxNodes, and only that last total's nodes
 * are taken one by one as best-first takes them (by path hash, a node
 * after its parent). The result is keep.c's node for node: the kept set,
 * each node's values and its `other` (here in ascending id, there in the
 * order kept; the encoders order children by content).
 *
 * Passes over the forest's ids instead of walks of its sibling chains, so
 * it is used only where the ids are not much sparser than the forest's
 * nodes (CUT_MAX_IDS_PER_NODE); keep.c takes the others.
 */
#define _GNU_SOURCE /* qsort_r */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/simd.h"
#include "query/query_int.h"

/* Ids per forest node above which the passes over every id would cost
 * more than the frontier's walks (a short range over a large table). */
#define CUT_MAX_IDS_PER_NODE 4
/* Buckets of totals: one per value below 64, then 32 per power of two up
 * to 2^63 (values are below INT64_MAX). */
#define CUT_EXACT 64
#define CUT_SUB_BITS 5
#define CUT_BUCKETS (CUT_EXACT + (63 - 6 + 1) * (1 << CUT_SUB_BITS))
/* KEPT_NODE_BYTES of keep.c: an answer's arrays per node. */
#define CUT_KEPT_NODE_BYTES (sizeof(uint64_t) + sizeof(uint32_t) + 2 * sizeof(int64_t))
/* The most symbols of the forest per kept node for which the kept nodes'
 * symbols are numbered by the forest's (query_kept_t.sid). */
#define CUT_SIDS_PER_NODE 4

/* Per-id state bits. */
#define ST_CHOSEN 1u /* a node of the last total, kept */
#define ST_PKEY 2u   /* cut_t.pkey holds its path hash */
#define ST_HIDDEN 4u /* cut_t.hidden holds its non-empty children not kept */
#define ST_SEEN 8u   /* counted as a parent whose least child has this total */

typedef struct cut {
    const storage_merged_tab_t *t;
    size_t n;               /* ids */
    const uint64_t *minkid; /* per id: least total of its children, UINT64_MAX: none (the tab's) */
    uint32_t *link;         /* per id: the next id of its bucket, then its kept node (kept_of) */
    int link_borrowed;      /* link is a follower's (query_cut_follow_t): not freed here */
    uint32_t head[CUT_BUCKETS];      /* per bucket: its largest id (0: none) */
    uint32_t head_back[CUT_BUCKETS]; /* with a filing made beside: the other chain's (or 0) */
    uint8_t *state;                  /* per id: ST_* */
    uint32_t *hidden;                /* per id, with ST_HIDDEN */
    uint64_t *pkey;                  /* per id, with ST_PKEY */
    uint32_t *list; /* ids of the bucket where the budget runs out, then a frontier */
    size_t nlist;
    size_t used;     /* the budget of what is kept so far */
    size_t expanded; /* nodes whose children were counted */
    alloc_charge_t *charge;
    size_t charged;
    const query_cut_follow_t *filed; /* with link_borrowed: the first pass made beside */
    size_t tie_from, tie_to;         /* in list: the nodes of the last total (take_ties) */
} cut_t;

static unsigned bucket_of(uint64_t v)
{
    if (v < CUT_EXACT) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned m = (unsigned)(v >> (e - CUT_SUB_BITS)) & ((1u << CUT_SUB_BITS) - 1);
    return CUT_EXACT + ((e - 6) << CUT_SUB_BITS) + m;
}

/* Counts per bucket: of nodes by total (h), and of nodes that hide a
 * child below their total, by total (ht) and by least child (hm). */
typedef struct hist {
    uint32_t h[CUT_BUCKETS], ht[CUT_BUCKETS], hm[CUT_BUCKETS];
} hist_t;

/* One pass over the ids: each node counted in the histograms and filed
 * in its bucket's chain (ascending ids: each chain is walked from its
 * largest id). */
static void file_ids(const storage_merged_tab_t *t, size_t lo, size_t hi, uint32_t *link,
                     uint32_t *head, hist_t *hs)
{
    const int64_t *tot = t->total;
    const uint64_t *minkid = t->least_kid;
    for (size_t id = lo; id < hi; id++) {
        uint64_t v = (uint64_t)tot[id];
        if (v == 0) continue;
        /* a leaf adds nothing to ht and hm: no branch on it (half the
         * nodes are leaves, in no order) */
        uint64_t least = minkid[id];
        int leaf = least == UINT64_MAX;
        unsigned b = bucket_of(v), bl = bucket_of(least);
        hs->h[b]++;
        hs->ht[b] += !leaf;
        hs->hm[leaf ? b : bl] += !leaf;
        link[id] = head[b];
        head[b] = (uint32_t)id;
    }
}

static void histograms(cut_t *c, hist_t *hs)
{
    file_ids(c->t, 1, c->n, c->link, c->head, hs);
}

/* ---- the first pass beside the forest pass ---- */

/* Each chunk of the forest's ids (storage_follow_t.chunks) is filed by the
 * follower (from the highest ids, as the pass finalizes them, while the
 * pass runs) or by the render's thread once the pass is done (from the
 * lowest), each into histograms and chains of its own; the cut adds the
 * histograms and walks both chains. */
struct query_cut_follow {
    storage_follow_t f;
    _Atomic int link_state; /* 0 none, 1 being made, 2 made, 3 not (no memory) */
    uint32_t *link;         /* per id of the forest: the next of its bucket in its chain */
    _Atomic int taking;     /* the follower between taking a chunk and having filed it */
    _Atomic size_t filed;   /* chunks filed */
    uint32_t head[CUT_BUCKETS], head_back[CUT_BUCKETS]; /* the follower's, the render's */
    hist_t hs, hs_back;
    int used;       /* a cut took the filing (its chains are gone) */
    int to_the_end; /* the follower files beside the render's thread once the pass is done */
};

query_cut_follow_t *query_cut_follow_new(int to_the_end)
{
    query_cut_follow_t *c = calloc(1, sizeof *c);
    if (c != NULL) c->to_the_end = to_the_end;
    return c;
}

storage_follow_t *query_cut_follow_storage(query_cut_follow_t *c)
{
    return &c->f;
}

const storage_merged_tab_t *query_cut_follow_filed(const query_cut_follow_t *c)
{
    /* kept by the pass (not given up after it ended), every chunk filed */
    const storage_follow_t *f = &c->f;
    if (c->used || atomic_load_explicit(&f->state, memory_order_acquire) != 1) return NULL;
    const storage_merged_tab_t *t = atomic_load_explicit(&f->tab, memory_order_acquire);
    int whole =
        t != NULL && c->link != NULL &&
        atomic_load_explicit(&c->filed, memory_order_acquire) == storage_follow_chunks(t->n);
    return whole ? t : NULL;
}

int query_cut_follow_moved(query_cut_follow_t *c, const storage_merged_tab_t *t)
{
    /* its old struct is gone or empty: only what c holds is read, against t */
    const storage_follow_t *f = &c->f;
    if (c->used || atomic_load_explicit(&f->state, memory_order_acquire) != 1 || c->link == NULL ||
        atomic_load_explicit(&c->filed, memory_order_acquire) != storage_follow_chunks(t->n))
        return 0;
    atomic_store_explicit(&c->f.tab, t, memory_order_release);
    return 1;
}

void query_cut_follow_free(query_cut_follow_t *c)
{
    if (c == NULL) return;
    free(c->link);
    free(c);
}

/* Empty looks (nothing final yet) before a waiting thread yields its CPU:
 * the pass finalizes a chunk in a few microseconds. */
#define FOLLOW_SPINS 64

/* The chains' array for a forest of n ids, made by whichever thread comes
 * first; NULL when it cannot be (the cut then makes its own). */
static uint32_t *follow_link(query_cut_follow_t *c, size_t n)
{
    int none = 0;
    if (atomic_compare_exchange_strong(&c->link_state, &none, 1)) {
        c->link = malloc((n ? n : 1) * sizeof *c->link);
        atomic_store_explicit(&c->link_state, c->link != NULL ? 2 : 3, memory_order_release);
    }
    int st;
    for (unsigned spins = 0;
         (st = atomic_load_explicit(&c->link_state, memory_order_acquire)) == 1;)
        if (++spins % FOLLOW_SPINS == 0) sched_yield();
    return st == 2 ? c->link : NULL;
}

/* The follower's next chunk from the front, once its ids are final: 1 and
 * its ids, or 0 (none left, or the pass given up). c->taking is up from
 * before the take until the chunk is filed (or the take found none). */
static int front_chunk(query_cut_follow_t *c, const storage_merged_tab_t *t, size_t *lo, size_t *hi)
{
    storage_follow_t *f = &c->f;
    size_t i;
    /* once the pass is done the render's thread files what is left from the
     * back, and this helper goes on with the names; with to_the_end it
     * files from the front beside it until none is left */
    int state = atomic_load_explicit(&f->state, memory_order_acquire);
    if (state == 2 || (state != 0 && !c->to_the_end)) return 0;
    atomic_fetch_add(&c->taking, 1); /* seq_cst: before the take, as the back reads it */
    if (!ends_take(&f->chunks, 0, &i)) return 0;
    storage_follow_chunk(t->n, i, lo, hi);
    for (unsigned spins = 0; atomic_load_explicit(&f->from, memory_order_acquire) > *lo;) {
        if (atomic_load(&f->state) == 2) return 0;
        if (++spins % FOLLOW_SPINS == 0) sched_yield();
    }
    return 1;
}

void query_cut_follow_run(void *arg)
{
    query_cut_follow_t *c = arg;
    storage_follow_t *f = &c->f;
    const storage_merged_tab_t *t = NULL;
    atomic_store(&f->reading, 1); /* seq_cst: then the state, as storage.h says */
    for (unsigned spins = 0; t == NULL && atomic_load(&f->state) != 2;)
        if ((t = atomic_load_explicit(&f->tab, memory_order_acquire)) == NULL &&
            ++spins % FOLLOW_SPINS == 0)
            sched_yield();
    size_t lo, hi;
    while (t != NULL && follow_link(c, t->n) != NULL && front_chunk(c, t, &lo, &hi)) {
        file_ids(t, lo, hi, c->link, c->head, &c->hs);
        atomic_fetch_add_explicit(&c->filed, 1, memory_order_release);
        atomic_fetch_sub(&c->taking, 1);
    }
    atomic_store(&c->taking, 0); /* the last take found none, or it stopped */
    atomic_store(&f->reading, 0);
}

void query_cut_follow_finish(query_cut_follow_t *c)
{
    storage_follow_t *f = &c->f;
    if (atomic_load_explicit(&f->state, memory_order_acquire) != 1) return; /* no forest */
    const storage_merged_tab_t *t = atomic_load_explicit(&f->tab, memory_order_acquire);
    size_t i, lo, hi;
    while (follow_link(c, t->n) != NULL && ends_take(&f->chunks, 1, &i)) {
        storage_follow_chunk(t->n, i, &lo, &hi);
        file_ids(t, lo, hi, c->link, c->head_back, &c->hs_back);
        atomic_fetch_add_explicit(&c->filed, 1, memory_order_release);
    }
    /* the chunk in the follower's hands, if any (none once its take found none) */
    for (unsigned spins = 0; atomic_load(&c->taking) != 0;)
        if (++spins % FOLLOW_SPINS == 0) sched_yield();
}

/* The bucket where used() first passes max_nodes going down, or -1 when
 * every node fits; c->used gets used() at the lower end of the bucket
 * above it (every node's when all fit). */
static int stop_bucket(cut_t *c, const hist_t *hs, size_t max_nodes)
{
    /* the root is always kept: it hides children below its least child */
    size_t kept = 1, hides = 0, leave = 0;
    int root_hides = c->minkid[0] != UINT64_MAX;
    unsigned root_b = root_hides ? bucket_of(c->minkid[0]) : 0;
    size_t before = 1 + (size_t)root_hides;
    for (int b = CUT_BUCKETS - 1; b >= 1; b--) {
        kept += hs->h[b];
        hides += hs->ht[b];
        leave += hs->hm[b];
        size_t used = kept + (hides - leave) + (size_t)(root_hides && root_b < (unsigned)b);
        if (used > max_nodes) {
            c->used = before;
            return b;
        }
        before = used;
    }
    c->used = before;
    return -1;
}

static int by_total_down(const void *a, const void *b, void *arg)
{
    const int64_t *tot = arg;
    int64_t x = tot[*(const uint32_t *)a], y = tot[*(const uint32_t *)b];
    return x > y ? -1 : x < y;
}

/* Within bucket b (its ids in c->list, heaviest first): whole totals while
 * used() fits; returns the total where it stops fitting (its nodes left
 * in c->list from *from on, to *to), or 0 when all of b fits. */
static int64_t stop_total(cut_t *c, size_t max_nodes, size_t *from, size_t *to)
{
    const storage_merged_tab_t *t = c->t;
    size_t i = 0;
    while (i < c->nlist) {
        int64_t v = t->total[c->list[i]];
        size_t j = i, used = c->used;
        for (; j < c->nlist && t->total[c->list[j]] == v; j++) {
            uint32_t id = c->list[j], p = t->parent[id];
            used += 1 + (c->minkid[id] < (uint64_t)v);
            /* a kept parent no longer hides a child once its least is
             * kept (one of these ties is a new node: not counted as hiding) */
            if (c->minkid[p] == (uint64_t)v && (p == 0 || t->total[p] > v) &&
                !(c->state[p] & ST_SEEN)) {
                c->state[p] |= ST_SEEN;
                used--;
            }
        }
        if (used > max_nodes) {
            *from = i;
            *to = j;
            return v;
        }
        c->used = used;
        i = j;
    }
    return 0;
}

static uint64_t pkey_of(cut_t *c, uint32_t id)
{
    if (id == 0) return 0;
    if (c->state[id] & ST_PKEY) return c->pkey[id];
    uint64_t k = hash_bytes64((uint64_t[2]){pkey_of(c, c->t->parent[id]), c->t->sym[id]}, 16);
    c->pkey[id] = k;
    c->state[id] |= ST_PKEY;
    return k;
}

/* Non-empty children of kept node p not kept while the nodes of total v
 * are being taken: those of total v not chosen yet and every lighter one. */
static uint32_t *hidden_of(cut_t *c, uint32_t p, int64_t v)
{
    if (!(c->state[p] & ST_HIDDEN)) {
        uint32_t n = 0;
        for (uint32_t k = c->t->first_kid[p]; k != STORAGE_NO_KID; k = c->t->next_sib[k])
            n += c->t->total[k] <= v;
        c->hidden[p] = n;
        c->state[p] |= ST_HIDDEN;
        c->expanded++;
    }
    return &c->hidden[p];
}

/* The frontier of the last total: a binary heap of ids by path hash. */
typedef struct front {
    uint32_t *id;
    size_t n;
} front_t;

static void front_push(cut_t *c, front_t *f, uint32_t id)
{
    size_t i = f->n++;
    uint64_t k = pkey_of(c, id);
    while (i > 0 && k < c->pkey[f->id[(i - 1) / 2]]) {
        f->id[i] = f->id[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    f->id[i] = id;
}

static void front_pop(cut_t *c, front_t *f)
{
    uint32_t v = f->id[--f->n];
    size_t i = 0;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= f->n) break;
        if (k + 1 < f->n && c->pkey[f->id[k + 1]] < c->pkey[f->id[k]]) k++;
        if (c->pkey[f->id[k]] >= c->pkey[v]) break;
        f->id[i] = f->id[k];
        i = k;
    }
    if (f->n > 0) f->id[i] = v;
}

/* Takes the nodes of total v one by one as best-first would (by path hash,
 * each once its parent is kept) while they fit; they are marked
 * ST_CHOSEN. The nodes of total v are in c->list from `from` to `to`. */
static int take_ties(cut_t *c, size_t max_nodes, int64_t v, size_t from, size_t to)
{
    const storage_merged_tab_t *t = c->t;
    front_t f = {malloc((to - from) * sizeof *f.id), 0};
    if (f.id == NULL) return ERR_NOMEM;
    size_t used = c->used;
    /* the ties whose parent is heavier start on the frontier */
    for (size_t i = from; i < to; i++) {
        uint32_t id = c->list[i];
        if (t->parent[id] == 0 || t->total[t->parent[id]] > v) front_push(c, &f, id);
    }
    while (f.n > 0) {
        uint32_t id = f.id[0], p = t->parent[id];
        size_t cost = 1 + (t->total[id] != t->self[id]); /* itself, and an `other` */
        uint32_t *hp = hidden_of(c, p, v);
        size_t frees = *hp == 1; /* its parent's `other` goes away */
        if (used + cost - frees > max_nodes) break;
        front_pop(c, &f);
        (*hp)--;
        used += cost - frees;
        c->state[id] |= ST_CHOSEN;
        for (uint32_t k = t->first_kid[id]; k != STORAGE_NO_KID; k = t->next_sib[k])
            if (t->total[k] == v) front_push(c, &f, k);
    }
    c->used = used;
    free(f.id);
    return 0;
}

/* The answer's arrays, made with room for an `other` per kept node,
 * shrunk to its nodes (what query_kept_bytes counts it at). */
static int shrink(query_kept_t *k)
{
    void *a = realloc(k->sym, k->n * sizeof *k->sym),
         *b = realloc(k->parent, k->n * sizeof *k->parent);
    k->sym = a ? a : k->sym;
    k->parent = b ? b : k->parent;
    void *c = realloc(k->self, k->n * sizeof *k->self),
         *d = realloc(k->total, k->n * sizeof *k->total);
    k->self = c ? c : k->self;
    k->total = d ? d : k->total;
    void *e = k->sid ? realloc(k->sid, k->n * sizeof *k->sid) : NULL;
    k->sid = e ? e : k->sid;
    return a && b && c && d && (e || !k->sid) ? 0 : ERR_NOMEM;
}

/* The kept ids as bits, 64 ids a word (bits, reusing hidden: no longer
 * read), and per word how many kept ids come before it (before, reusing
 * link), so a kept id's number is a popcount away; returns how many are
 * kept: every node heavier than v (an id outside the forest has total 0),
 * those of total v chosen (v 0: every node of the forest), and the root. */
SIMD_CLONES static size_t kept_bits(cut_t *c, int64_t v, uint64_t *bits, uint32_t *before)
{
    const int64_t *tot = c->t->total;
    size_t n = c->n, words = (n + 63) / 64, nk = 0;
    for (size_t w = 0; w < words; w++) { /* no branch: kept ids come in no order */
        size_t base = 64 * w, m = n - base < 64 ? n - base : 64;
        uint64_t k = 0;
        for (size_t j = 0; j < m; j++)
            k |= (uint64_t)(tot[base + j] > v) << j;
        bits[w] = k;
    }
    for (size_t i = c->tie_from; i < c->tie_to; i++) {
        uint32_t id = c->list[i];
        if (c->state[id] & ST_CHOSEN) bits[id / 64] |= (uint64_t)1 << (id % 64);
    }
    bits[0] |= 1; /* the root */
    for (size_t w = 0; w < words; w++) {
        before[w] = (uint32_t)nk;
        nk += (size_t)__builtin_popcountll(bits[w]);
    }
    return nk;
}

/* The number of kept id (its rank among the kept ids). */
static inline uint32_t kept_rank(const uint64_t *bits, const uint32_t *before, uint32_t id)
{
    uint64_t below = bits[id / 64] & (((uint64_t)1 << (id % 64)) - 1);
    return before[id / 64] + (uint32_t)__builtin_popcountll(below);
}

/* The nk kept nodes' values into kp (room for 2 * nk nodes), in ascending
 * id (kept_bits), then one `other` per kept node that hides children: its
 * total less its self and its kept children's totals, summed in the upper
 * half of kp->total as the nodes are written (a parent comes before its
 * children). */
SIMD_CLONES static void kept_fill(const cut_t *c, const uint64_t *bits, const uint32_t *before,
                                  size_t nk, query_kept_t *kp)
{
    const storage_merged_tab_t *t = c->t;
    int64_t *rest = kp->total + nk;
    size_t k = 0;
    for (size_t w = 0; w < (c->n + 63) / 64; w++)
        for (uint64_t m = bits[w]; m != 0; m &= m - 1, k++) {
            uint32_t id = (uint32_t)(64 * w + (size_t)__builtin_ctzll(m));
            uint32_t p = k > 0 ? kept_rank(bits, before, t->parent[id]) : 0;
            int64_t x = t->total[id];
            kp->sym[k] = k > 0 ? t->sym[id] : SYM_ROOT;
            if (kp->sid != NULL) kp->sid[k] = t->symno[id];
            kp->parent[k] = p;
            kp->self[k] = t->self[id];
            kp->total[k] = x;
            rest[k] = (int64_t)((uint64_t)x - (uint64_t)t->self[id]);
            if (k > 0) rest[p] = (int64_t)((uint64_t)rest[p] - (uint64_t)x);
        }
    size_t o = nk;
    for (k = 0; k < nk; k++) {
        int64_t r = rest[k]; /* read before an `other` is written over it */
        if (r == 0) continue;
        kp->sym[o] = SYM_OTHER;
        if (kp->sid != NULL) kp->sid[o] = (uint32_t)t->nsyms; /* a number of its own */
        kp->parent[o] = (uint32_t)k;
        kp->self[o] = kp->total[o] = r;
        o++;
    }
    kp->n = o;
}

/* The kept nodes as query_kept_t, in ascending id, then the `other`s;
 * with the forest's symbol numbers, each node's symbol numbered by them
 * (query_kept_t.sid: the numbers of the table's symbols, and one more for
 * `other`). */
static int kept_of(cut_t *c, int64_t v, query_kept_t **out)
{
    /* link and hidden (n entries each) are no longer read: room for both */
    uint64_t *bits = (uint64_t *)(void *)c->hidden;
    uint32_t *before = c->link;
    size_t nk = kept_bits(c, v, bits, before);
    /* numbered by the forest's symbols when they are not many more than the
     * kept nodes (their arrays are sized by them) */
    int sids = c->t->symno != NULL && c->t->nsyms < CUT_SIDS_PER_NODE * nk;
    size_t bytes = sizeof(query_kept_t) + /* at most one `other` each */
                   2 * nk * (CUT_KEPT_NODE_BYTES + (sids ? sizeof(uint32_t) : 0));
    if (c->charge != NULL && alloc_charge_add(c->charge, bytes) != 0) return ERR_UNAVAILABLE;
    query_kept_t *kp = calloc(1, sizeof *kp);
    int rc = kp != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) {
        kp->expanded = c->expanded;
        kp->sym = malloc(2 * nk * sizeof *kp->sym);
        kp->parent = malloc(2 * nk * sizeof *kp->parent);
        kp->self = malloc(2 * nk * sizeof *kp->self);
        kp->total = malloc(2 * nk * sizeof *kp->total);
        kp->sid = sids ? malloc(2 * nk * sizeof *kp->sid) : NULL;
        kp->nsid = sids ? c->t->nsyms + 1 : 0;
        if (!kp->sym || !kp->parent || !kp->self || !kp->total || (sids && !kp->sid))
            rc = ERR_NOMEM;
    }
    if (rc == 0) kept_fill(c, bits, before, nk, kp);
    if (rc == 0) rc = shrink(kp);
    if (c->charge != NULL) alloc_charge_sub(c->charge, bytes);
    if (rc != 0) {
        query_kept_free(kp);
        return rc;
    }
    *out = kp;
    return 0;
}

/* The n ids of bucket b, heaviest first, into c->list. */
static int bucket_ids(cut_t *c, unsigned b, size_t n)
{
    if (c->charge != NULL && alloc_charge_add(c->charge, n * sizeof *c->list) != 0)
        return ERR_UNAVAILABLE;
    c->charged += n * sizeof *c->list;
    c->list = malloc((n ? n : 1) * sizeof *c->list);
    if (c->list == NULL) return ERR_NOMEM;
    for (uint32_t id = c->head[b]; id != 0 && c->nlist < n; id = c->link[id])
        c->list[c->nlist++] = id;
    for (uint32_t id = c->head_back[b]; id != 0 && c->nlist < n; id = c->link[id])
        c->list[c->nlist++] = id;
    qsort_r(c->list, c->nlist, sizeof *c->list, by_total_down, (void *)c->t->total);
    return 0;
}

static int cut_run(cut_t *c, size_t max_nodes, query_kept_t **out)
{
    size_t bytes =
        c->n * (sizeof *c->link + sizeof *c->state + sizeof *c->hidden + sizeof *c->pkey);
    if (c->charge != NULL && alloc_charge_add(c->charge, bytes) != 0) return ERR_UNAVAILABLE;
    c->charged = bytes;
    if (!c->link_borrowed) c->link = malloc(c->n * sizeof *c->link);
    c->state = calloc(c->n, sizeof *c->state);
    c->hidden = malloc((c->n + 1) * sizeof *c->hidden); /* room for kept_bits: 64-bit words */
    c->pkey = malloc(c->n * sizeof *c->pkey);
    if (!c->link || !c->state || !c->hidden || !c->pkey) return ERR_NOMEM;
    hist_t *hs = calloc(1, sizeof *hs);
    if (hs == NULL) return ERR_NOMEM;
    if (c->link_borrowed) { /* both ends' filings */
        const query_cut_follow_t *f = c->filed;
        memcpy(c->head, f->head, sizeof c->head);
        memcpy(c->head_back, f->head_back, sizeof c->head_back);
        for (size_t b = 0; b < CUT_BUCKETS; b++) {
            hs->h[b] = f->hs.h[b] + f->hs_back.h[b];
            hs->ht[b] = f->hs.ht[b] + f->hs_back.ht[b];
            hs->hm[b] = f->hs.hm[b] + f->hs_back.hm[b];
        }
    } else {
        histograms(c, hs);
    }
    int b = stop_bucket(c, hs, max_nodes);
    size_t nb = b >= 0 ? hs->h[b] : 0;
    free(hs);
    int64_t v = 0; /* every node fits */
    int rc = 0;
    if (b >= 0) {
        size_t from = 0, to = 0;
        rc = bucket_ids(c, (unsigned)b, nb);
        if (rc == 0) v = stop_total(c, max_nodes, &from, &to);
        if (rc == 0 && v <= 0) rc = ERR_CORRUPT; /* used() passed max_nodes within b */
        if (rc == 0) rc = take_ties(c, max_nodes, v, from, to);
        c->tie_from = from;
        c->tie_to = to;
    }
    return rc != 0 ? rc : kept_of(c, v, out);
}

static int cut_applies(const storage_merged_tab_t *t)
{
    return t->distinct_kids && t->parent != NULL && t->least_kid != NULL && t->nonneg && t->n > 0 &&
           t->n / CUT_MAX_IDS_PER_NODE <= t->nodes && t->n <= UINT32_MAX;
}

size_t query_cut_scratch_bytes(const storage_merged_tab_t *t, size_t max_nodes)
{
    if (!cut_applies(t)) return 0;
    /* per id: its chain link, state, hidden count and path hash; the
     * histograms; the last bucket's ids and the frontier (at most every
     * id each); the answer's arrays, made with room for an `other` each */
    size_t kept = max_nodes < t->nodes ? max_nodes : t->nodes;
    return t->n * (sizeof(uint32_t) + 1 + sizeof(uint32_t) + sizeof(uint64_t)) + sizeof(hist_t) +
           2 * t->n * sizeof(uint32_t) + sizeof(query_kept_t) +
           2 * kept * (CUT_KEPT_NODE_BYTES + (t->symno != NULL ? sizeof(uint32_t) : 0));
}

int query_keep_cut(const storage_merged_tab_t *t, size_t max_nodes, alloc_charge_t *charge,
                   query_kept_t **out)
{
    return query_keep_cut_filed(t, max_nodes, charge, NULL, out);
}

int query_keep_cut_filed(const storage_merged_tab_t *t, size_t max_nodes, alloc_charge_t *charge,
                         query_cut_follow_t *filed, query_kept_t **out)
{
    *out = NULL;
    if (!cut_applies(t)) return 1;
    if (max_nodes < 2) return ERR_INVALID_ARGUMENT;
    cut_t c = {.t = t, .n = t->n, .minkid = t->least_kid, .charge = charge};
    if (filed != NULL && query_cut_follow_filed(filed) == t && filed->link != NULL) {
        c.link = filed->link; /* its chains, then this cut's numbering (kept_of) */
        c.link_borrowed = 1;
        c.filed = filed;
        filed->used = 1; /* used up: kept_of numbers over the chains */
    }
    int rc = cut_run(&c, max_nodes, out);
    if (!c.link_borrowed) free(c.link);
    free(c.state);
    free(c.hidden);
    free(c.pkey);
    free(c.list);
    if (charge != NULL) alloc_charge_sub(charge, c.charged);
    return rc;
}
