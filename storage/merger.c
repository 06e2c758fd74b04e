/* merger.c — summing stored blocks into one call tree (the query fast path).
 *
 * Blocks are sparse vectors over a token's stack-node ids (sparse.c,
 * nodetab.c). A merger adds every block it is given into one dense vector per
 * token — a plain array addition per stored value — and only at the end walks
 * each token's node table once to turn the non-zero entries into call-tree
 * nodes. So a query over a thousand windows costs a thousand vector additions
 * and one tree build, not a thousand tree merges.
 *
 * Its working memory (the dense vectors, the forests, and the scratch of a
 * tree build, which grow with the token's table, not with the answer) is
 * charged to the caller's budget when one is set (storage_merger_set_charge):
 * a merge that would pass it stops with ERR_UNAVAILABLE.
 *
 * A forest over a shard union may carry its id space (STORAGE_TABS_SPACE):
 * the union's nonce and the parent and symbol of the ids its caller does
 * not hold yet (storage_merger_known_spaces), so a caller that caches the
 * structure per nonce can be sent values by id alone.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/grow.h"
#include "common/hash.h"
#include "storage/storage_int.h"

typedef struct acc {
    uint64_t token;
    int64_t *val; /* indexed by stack-node id */
    size_t cap;
    size_t used; /* one past the largest id a block added to; zeros from it on */
} acc_t;

struct storage_merger {
    storage_t *s;
    char tenant[STORAGE_TENANT_MAX + 1];
    acc_t *accs;
    size_t n, cap;
    acc_t *cur;             /* accumulator of the blocks being scanned */
    int rc;                 /* first error of a scan callback */
    alloc_charge_t *charge; /* NULL: nothing charged */
    size_t charged;         /* held on charge until storage_merger_free */
    /* the spaces the caller holds (borrowed, until the next storage_merger_tabs) */
    const storage_space_known_t *known;
    size_t nknown;
    storage_follow_t *follow; /* the next storage_merger_tabs' forest pass is followed (or NULL) */
};

int storage_merger_new(storage_t *s, const char *tenant, storage_merger_t **out)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    storage_merger_t *m = calloc(1, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    m->s = s;
    snprintf(m->tenant, sizeof m->tenant, "%s", tenant);
    *out = m;
    return 0;
}

void storage_merger_set_charge(storage_merger_t *m, alloc_charge_t *charge)
{
    m->charge = charge;
}

void storage_merger_follow(storage_merger_t *m, storage_follow_t *f)
{
    m->follow = f;
}

void storage_merger_known_spaces(storage_merger_t *m, const storage_space_known_t *known, size_t n)
{
    m->known = n > 0 ? known : NULL;
    m->nknown = known != NULL ? n : 0;
}

/* Charges n bytes of working memory; ERR_UNAVAILABLE (or ERR_TOO_LARGE when
 * the merge alone passes the budget) and nothing charged when it does not
 * fit. Held until storage_merger_free unless given back (uncharge). */
static int charge(storage_merger_t *m, size_t n)
{
    if (m->charge == NULL || n == 0) return 0;
    int rc = alloc_charge_add(m->charge, n);
    if (rc == 0) m->charged += n;
    return rc == ERR_TOO_LARGE ? ERR_UNAVAILABLE : rc;
}

static void uncharge(storage_merger_t *m, size_t n)
{
    if (m->charge == NULL || n == 0) return;
    alloc_charge_sub(m->charge, n);
    m->charged -= n;
}

void storage_merger_free(storage_merger_t *m)
{
    if (m == NULL) return;
    if (m->charge != NULL) alloc_charge_sub(m->charge, m->charged);
    for (size_t i = 0; i < m->n; i++)
        free(m->accs[i].val);
    free(m->accs);
    free(m);
}

static acc_t *acc_of(storage_merger_t *m, uint64_t token)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->accs[i].token == token) return &m->accs[i];
    if (GROW_FROM(m->accs, m->cap, m->n + 1, GROW_UNLIMITED, 8) != 0) return NULL;
    m->accs[m->n] = (acc_t){.token = token};
    return &m->accs[m->n++];
}

/* What adding block i (and i + 1 with two) gave: working memory charged
 * for the vector's growth, a corrupt block counted and skipped, like the
 * merge operator does. */
static int added(storage_merger_t *m, size_t before, int i, int rc, int rc2, int two)
{
    if (rc == ERR_NOMEM || (two && rc2 == ERR_NOMEM)) return ERR_NOMEM;
    if (m->cur->cap > before) { /* grown: the vector's new room is working memory */
        int crc = charge(m, (m->cur->cap - before) * sizeof *m->cur->val);
        if (crc != 0) return crc;
    }
    if (rc != 0) storage_log_corrupt(&m->s->counters, "stored block", i, rc);
    if (two && rc2 != 0) storage_log_corrupt(&m->s->counters, "stored block", i + 1, rc2);
    return 0;
}

static int add_one(storage_merger_t *m, const uint8_t *v, size_t n, int i)
{
    size_t before = m->cur->cap;
    int rc = storage_sparse_add_dense(v, n, &m->cur->val, &m->cur->cap, &m->cur->used,
                                      STORAGE_MAX_STACK_NODES);
    return added(m, before, i, rc, 0, 0);
}

static int add_two(storage_merger_t *m, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                   int i)
{
    size_t before = m->cur->cap;
    int rcb, rc = storage_sparse_add_dense2(a, na, b, nb, &m->cur->val, &m->cur->cap, &m->cur->used,
                                            STORAGE_MAX_STACK_NODES, &rcb);
    return added(m, before, i, rc, rcb, 1);
}

/* Part i of a window's block: its base first when it has one. */
static const uint8_t *part_at(const char *base, size_t base_len, const char *const *ops,
                              const size_t *op_lens, int i, size_t *len)
{
    if (base != NULL && i-- == 0) {
        *len = base_len;
        return (const uint8_t *)base;
    }
    *len = op_lens[i];
    return (const uint8_t *)ops[i];
}

/* A window's block as it lies (storage_scan_window_parts): its value and
 * unfolded operands each added as the merge operator would have summed
 * them, two at a time. */
static int add_block(void *ctx, int64_t window, const char *base, size_t base_len,
                     const char *const *ops, const size_t *op_lens, int nops)
{
    storage_merger_t *m = ctx;
    int n = nops + (base != NULL), rc = 0;
    for (int i = 0; rc == 0 && i < n; i += 2) {
        size_t len, len2;
        const uint8_t *part = part_at(base, base_len, ops, op_lens, i, &len);
        if (i + 1 == n) return add_one(m, part, len, i);
        const uint8_t *part2 = part_at(base, base_len, ops, op_lens, i + 1, &len2);
        rc = add_two(m, part, len, part2, len2, i);
    }
    return rc;
}

/* A new accumulator's vector made at once as long as its token's node
 * table (every valid block's ids are below that count; a table grown since
 * grows the vector as before), zeroed by calloc: growing it block by block
 * copied and cleared it once per doubling. The merge needs the table
 * anyway (storage_merger_finish or storage_merger_tabs), so reading it here
 * reads nothing more; when it cannot be read, the vector grows as the
 * blocks come and the error shows where the table is needed. */
static int presize(storage_merger_t *m, acc_t *a)
{
    nodetab_t *t;
    errmsg_t em = {{0}};
    if (storage_nodetab_acquire(m->s, a->token, m->tenant, &t, &em) != 0) return 0;
    size_t count = storage_nodetab_count(t);
    storage_nodetab_release(m->s, t, 0);
    if (count == 0 || count > STORAGE_MAX_STACK_NODES) return 0;
    int rc = charge(m, count * sizeof *a->val);
    if (rc != 0) return rc;
    a->val = calloc(count, sizeof *a->val);
    if (a->val == NULL) return ERR_NOMEM;
    a->cap = count;
    return 0;
}

/* A 10 s window's tree read from profile_trees (storage_scan_unblocked),
 * added as its block operand would have been. */
static int add_unblocked(void *ctx, int64_t window, const uint8_t *enc, size_t len,
                         const sparse_vec_t *vec)
{
    storage_merger_t *m = ctx;
    if (enc != NULL) return add_one(m, enc, len, 0);
    size_t before = m->cur->cap;
    int rc = storage_sparse_add_dense_vec(vec, &m->cur->val, &m->cur->cap, &m->cur->used,
                                          STORAGE_MAX_STACK_NODES);
    return added(m, before, 0, rc, 0, 0);
}

/* The blocks of series_id over the range; with trees, a 10 s window also
 * gets the trees kept in no block. */
static int merger_add(storage_merger_t *m, uint64_t token, uint64_t series_id, int res,
                      int64_t from_s, int64_t until_s, int trees)
{
    m->cur = acc_of(m, token);
    if (m->cur == NULL) return ERR_NOMEM;
    if (m->cur->cap == 0) {
        int rc = presize(m, m->cur);
        if (rc != 0) return rc;
    }
    int rc = storage_scan_window_parts(m->s, m->tenant, token, series_id, res, from_s, until_s,
                                       add_block, m);
    /* a 10 s window is its block and the trees kept in no block */
    if (rc == 0 && res == 0 && trees)
        rc = storage_scan_unblocked(m->s, NULL, m->tenant, token, series_id, from_s, until_s, 0,
                                    add_unblocked, m);
    return rc;
}

int storage_merger_add(storage_merger_t *m, uint64_t token, uint64_t series_id, int res,
                       int64_t from_s, int64_t until_s)
{
    return merger_add(m, token, series_id, res, from_s, until_s, 1);
}

int storage_merger_add_aggregate(storage_merger_t *m, uint64_t token, uint64_t series_id, int res,
                                 int64_t from_s, int64_t until_s)
{
    return merger_add(m, token, series_id, res, from_s, until_s, 0);
}

int storage_merger_absorb(storage_merger_t *m, storage_merger_t *from)
{
    for (size_t i = 0; i < from->n; i++) {
        acc_t *f = &from->accs[i], *a = acc_of(m, f->token);
        if (a == NULL) return ERR_NOMEM;
        size_t bytes = f->cap * sizeof *f->val;
        if (a->cap == 0) { /* moved whole */
            int rc = charge(m, bytes);
            if (rc != 0) return rc;
            uncharge(from, bytes);
            *a = *f;
            *f = (acc_t){.token = f->token};
            continue;
        }
        if (f->used > a->cap) {
            int64_t *v = realloc(a->val, f->used * sizeof *v);
            int rc = v == NULL ? ERR_NOMEM : charge(m, (f->used - a->cap) * sizeof *v);
            if (v != NULL) a->val = v;
            if (rc != 0) return rc;
            memset(v + a->cap, 0, (f->used - a->cap) * sizeof *v);
            a->cap = f->used;
        }
        for (size_t id = 0; id < f->used; id++) /* wrapping, as blocks add */
            a->val[id] = (int64_t)((uint64_t)a->val[id] + (uint64_t)f->val[id]);
        if (f->used > a->used) a->used = f->used;
    }
    return 0;
}

#define PREFETCH_AHEAD 8

/* Marks the stack nodes the answer needs: those with a value, and their
 * ancestors (parents have smaller ids, so one descending pass does it). */
static void mark_needed(const nodetab_t *t, const acc_t *a, size_t count, uint8_t *needed)
{
    /* every byte is set: ids past the blocks' largest are not needed (a
     * malloc'd tail left as it was made the tree reserve and create nodes
     * for garbage: 40x the memory, and empty nodes in the answer) */
    for (size_t id = 0; id < count; id++)
        needed[id] = id < a->cap && a->val[id] != 0;
    for (size_t id = count; id-- > 1;)
        if (needed[id]) needed[storage_nodetab_parent(t, (uint32_t)id)] = 1;
}

/* Creates the needed nodes in dst in ascending id order (every parent is
 * mapped before its children), fetching hash slots a few nodes ahead. */
static int map_needed(const nodetab_t *t, size_t count, const uint8_t *needed, uint32_t *tmap,
                      calltree_t *dst)
{
    tmap[0] = 0;
    for (uint32_t id = 1; id < count; id++) {
        if (!needed[id]) continue;
        uint32_t ahead = id + PREFETCH_AHEAD;
        if (ahead < count && needed[ahead] && storage_nodetab_parent(t, ahead) < id)
            calltree_prefetch(dst, tmap[storage_nodetab_parent(t, ahead)],
                              storage_nodetab_sym(t, ahead));
        int rc = calltree_child(dst, tmap[storage_nodetab_parent(t, id)],
                                storage_nodetab_sym(t, id), &tmap[id]);
        if (rc != 0) return rc;
    }
    return 0;
}

static int finish_one(storage_merger_t *m, acc_t *a, calltree_t *dst, errmsg_t *em)
{
    nodetab_t *t;
    int rc = storage_nodetab_acquire(m->s, a->token, m->tenant, &t, em);
    if (rc != 0) return rc;
    size_t count = storage_nodetab_count(t), nz = 0;
    size_t scratch = (count ? count : 1) * (sizeof(uint32_t) + 1 + sizeof(uint32_t) + 8);
    rc = charge(m, scratch); /* the maps below, and at most one node and value per id */
    if (rc != 0) {
        storage_nodetab_release(m->s, t, 0);
        return rc;
    }
    uint32_t *tmap = malloc((count ? count : 1) * sizeof *tmap);
    uint8_t *needed = malloc(count ? count : 1);
    uint32_t *nodes = NULL;
    int64_t *vals = NULL;
    if (tmap == NULL || needed == NULL) rc = ERR_NOMEM;
    if (rc == 0) {
        mark_needed(t, a, count, needed);
        size_t nneeded = 0;
        for (size_t id = 0; id < count; id++)
            nneeded += needed[id];
        rc = calltree_reserve(dst, nneeded);
    }
    if (rc == 0) rc = map_needed(t, count, needed, tmap, dst);
    for (size_t id = count; id < a->cap; id++)
        if (a->val[id] != 0) /* a block naming a node the table lacks: corrupt */
            storage_log_corrupt(&m->s->counters, "block node id", (int)id, ERR_CORRUPT);
    storage_nodetab_release(m->s, t, 0);
    if (rc == 0) {
        for (size_t id = 0; id < a->cap && id < count; id++)
            nz += a->val[id] != 0;
        nodes = malloc((nz ? nz : 1) * sizeof *nodes);
        vals = malloc((nz ? nz : 1) * sizeof *vals);
        if (nodes == NULL || vals == NULL) rc = ERR_NOMEM;
    }
    if (rc == 0) {
        size_t k = 0;
        for (size_t id = 0; id < a->cap && id < count; id++)
            if (a->val[id] != 0) {
                nodes[k] = tmap[id];
                vals[k++] = a->val[id];
            }
        rc = calltree_add_selves(dst, nodes, vals, k);
    }
    free(tmap);
    free(needed);
    free(nodes);
    free(vals);
    uncharge(m, scratch);
    return rc;
}

int storage_merger_finish(storage_merger_t *m, calltree_t *dst, errmsg_t *em)
{
    for (size_t i = 0; i < m->n; i++) {
        int rc = finish_one(m, &m->accs[i], dst, em);
        if (rc == ERR_LIMIT) return rc;
        if (rc != 0) return errmsg_set(em, rc, "merging blocks: %s", err_message(rc));
    }
    return 0;
}

/* ---- forests: totals per stack-node id, for choosing nodes before a tree ---- */

/* A token's table and summed values, for one pass over every id. */
typedef struct tabsrc {
    const uint32_t *parent;
    const uint64_t *sym;
    const uint32_t *symno; /* the table's symbol index, or NULL: not asked */
    const int64_t *val;    /* count entries */
    size_t count;
} tabsrc_t;

/* 1 when v's sym, parent and symno are not its own: a held union's or a
 * caller's (storage_merged_tab_lent), read in place, never written. */
static int tab_borrows(const storage_merged_tab_t *v)
{
    return v->held != NULL || v->lend_release != NULL;
}

/* The descending pass of forest_pass over ids hi - 1 down to lo (>= 1):
 * subtree totals and child links of the ids of non-zero total, their
 * parents, symbol numbers and least children when par, sno and least are
 * not NULL; returns how many ids of non-zero total it met. Inlined into
 * each call with its own arrays, so a pass that asks none tests nothing
 * per node. *over gets every running sum OR-ed in. */
static inline __attribute__((always_inline)) size_t
forest_links(const tabsrc_t *src, storage_merged_tab_t *v, uint32_t *par, uint32_t *sno,
             uint64_t *least, uint64_t *over, size_t lo, size_t hi)
{
    int64_t *tot = v->total;
    uint32_t *first = v->first_kid, *next = v->next_sib;
    const uint32_t *parent = src->parent;
    const uint64_t *sym = src->sym;
    uint64_t *vsym = tab_borrows(v) ? NULL : v->sym, o = 0; /* borrowed: not copied */
    size_t n = 0;
    for (size_t id = hi; id-- > lo;) {
        int64_t t = tot[id];
        if (t == 0) continue;
        uint32_t p = parent[id];
        n++;
        if (vsym != NULL) vsym[id] = sym[id]; /* only the forest's nodes' symbols are read */
        tot[p] = (int64_t)((uint64_t)tot[p] + (uint64_t)t);
        o |= (uint64_t)tot[p];
        if (par != NULL) par[id] = p;
        if (sno != NULL) sno[id] = src->symno[id];
        if (least != NULL) least[p] = (uint64_t)t < least[p] ? (uint64_t)t : least[p];
        next[id] = first[p];
        first[p] = (uint32_t)id;
    }
    *over |= o;
    return n;
}

/* forest_links over every id (parents and least children asked), telling
 * f how far it is at the end of each chunk (STORAGE_FOLLOW_CHUNK ids). */
static size_t forest_links_followed(const tabsrc_t *src, storage_merged_tab_t *v, uint32_t *par,
                                    uint32_t *sno, uint64_t *over, storage_follow_t *f)
{
    size_t n = 0, chunks = storage_follow_chunks(src->count);
    atomic_store_explicit(&f->from, src->count, memory_order_relaxed);
    (void)ends_init(&f->chunks, chunks); /* under 2^32: ids are 32-bit */
    atomic_store_explicit(&f->tab, v, memory_order_release);
    for (size_t i = 0; i < chunks; i++) {
        size_t lo, hi;
        storage_follow_chunk(src->count, i, &lo, &hi);
        n += par == NULL   ? forest_links(src, v, NULL, NULL, v->least_kid, over, lo, hi)
             : sno != NULL ? forest_links(src, v, par, sno, v->least_kid, over, lo, hi)
                           : forest_links(src, v, par, NULL, v->least_kid, over, lo, hi);
        atomic_store_explicit(&f->from, lo, memory_order_release);
    }
    return n;
}

/* The end of a followed pass (f may be NULL, or not published): its forest
 * stays (ok) or goes, once its follower no longer reads it. */
static void follow_end(storage_follow_t *f, int ok)
{
    if (f == NULL) return;
    if (ok && atomic_load_explicit(&f->tab, memory_order_relaxed) != NULL) {
        atomic_store_explicit(&f->state, 1, memory_order_release);
        return;
    }
    atomic_store(&f->state, 2); /* seq_cst: a follower that reads after it sees it */
    while (atomic_load(&f->reading) != 0)
        sched_yield();
}

void storage_follow_close(storage_follow_t *f)
{
    if (f != NULL && atomic_load(&f->state) == 0) follow_end(f, 0);
}

/* The forest of src into v (arrays made): subtree totals by one descending
 * pass (children have larger ids than their parents, so an id's total is
 * final when the pass reaches it), which also links each id of non-zero
 * total in front of its parent's children, so they end up in ascending id
 * order, records its parent, and copies its symbol (the others' are never read) and, when
 * asked, its symbol's number. Clears v->nonneg when a value is negative or a total
 * overflows. */
static void forest_pass(const tabsrc_t *src, storage_merged_tab_t *v, storage_follow_t *f)
{
    int64_t *tot = v->total;
    uint32_t *first = v->first_kid, *par = v->parent, *sno = v->symno;
    uint64_t neg = 0, *least = v->least_kid;
    for (size_t id = 0; id < src->count; id++) {
        tot[id] = src->val[id];
        neg |= (uint64_t)src->val[id];
        first[id] = STORAGE_NO_KID;
    }
    if (least != NULL) memset(least, 0xff, src->count * sizeof *least); /* UINT64_MAX: none */
    int borrowed = tab_borrows(v);       /* sym, parent and symno are not its own, its root's set */
    if (!borrowed) v->sym[0] = SYM_ROOT; /* a table may not hold even its root yet */
    if (!borrowed && sno != NULL) sno[0] = src->symno[0]; /* asked of a table that holds it */
    uint32_t *wpar = borrowed ? NULL : par,
             *wsno = borrowed ? NULL : sno; /* what the pass writes */
    uint64_t over = 0;                      /* a total past INT64_MAX has its top bit set */
    size_t c = src->count,
           n = 1 + (f != NULL && par != NULL && least != NULL
                        ? forest_links_followed(src, v, wpar, wsno, &over, f)
                    : borrowed ? forest_links(src, v, NULL, NULL, least, &over, 1, c)
                    : par == NULL && sno == NULL && least == NULL
                        ? forest_links(src, v, NULL, NULL, NULL, &over, 1, c)
                    : sno == NULL && least != NULL
                        ? forest_links(src, v, par, NULL, least, &over, 1, c)
                        : forest_links(src, v, par, sno, least, &over, 1, c));
    /* with every value >= 0, the first sum to pass INT64_MAX adds two numbers
     * below 2^63, so it lands below 2^64 with its top bit set: OR-ing every
     * running sum catches it */
    v->nonneg = (neg >> 63) == 0 && (over >> 63) == 0;
    v->nodes = n;
}

/* The arrays' bytes per id of a forest with these flags. */
static size_t tab_id_bytes(unsigned flags)
{
    return sizeof(uint64_t) + sizeof(int64_t) + 2 * sizeof(uint32_t) +
           ((flags & STORAGE_TABS_PARENTS) ? sizeof(uint32_t) : 0) +
           ((flags & STORAGE_TABS_SYMNOS) ? sizeof(uint32_t) : 0) +
           ((flags & STORAGE_TABS_LEAST) ? sizeof(uint64_t) : 0);
}

static int tab_alloc(storage_merged_tab_t *v, const int64_t *self, size_t n, unsigned flags)
{
    int parents = (flags & STORAGE_TABS_PARENTS) != 0, symnos = (flags & STORAGE_TABS_SYMNOS) != 0;
    int least = (flags & STORAGE_TABS_LEAST) != 0;
    v->n = n;
    v->distinct_kids = 1;      /* a table's (or a union's) node is one (parent, symbol) pair */
    v->self = (int64_t *)self; /* the merger's vector: borrowed */
    v->sym = malloc(n * sizeof *v->sym);
    v->total = malloc(n * sizeof *v->total);
    v->first_kid = malloc(n * sizeof *v->first_kid);
    v->next_sib = malloc(n * sizeof *v->next_sib);
    v->parent = parents ? malloc(n * sizeof *v->parent) : NULL;
    v->symno = symnos ? malloc(n * sizeof *v->symno) : NULL;
    v->least_kid = least ? malloc(n * sizeof *v->least_kid) : NULL;
    return v->sym && v->total && v->first_kid && v->next_sib && (v->parent || !parents) &&
                   (v->symno || !symnos) && (v->least_kid || !least)
               ? 0
               : ERR_NOMEM;
}

/* The per-id bytes a held union's forest does not make: sym, parent, symno. */
static size_t tab_held_bytes(void)
{
    return sizeof(uint64_t) + 2 * sizeof(uint32_t);
}

/* tab_alloc of a forest whose sym, parent and symno are another's (read
 * in place, never written): the rest made. */
static int tab_alloc_borrowed(storage_merged_tab_t *v, size_t n, unsigned flags,
                              const uint64_t *sym, const uint32_t *parent, const uint32_t *symno)
{
    int least = (flags & STORAGE_TABS_LEAST) != 0;
    v->n = n;
    v->sym = (uint64_t *)sym;
    v->parent = (uint32_t *)parent;
    v->symno = (uint32_t *)symno;
    v->total = malloc(n * sizeof *v->total);
    v->first_kid = malloc(n * sizeof *v->first_kid);
    v->next_sib = malloc(n * sizeof *v->next_sib);
    v->least_kid = least ? malloc(n * sizeof *v->least_kid) : NULL;
    return v->total && v->first_kid && v->next_sib && (v->least_kid || !least) ? 0 : ERR_NOMEM;
}

/* tab_alloc of a forest holding u (STORAGE_TABS_HOLD): the union's sym,
 * parent and symno arrays (read-only: the pass writes none of them), the
 * rest made. u is the forest's from here (released with it), even when
 * an allocation fails. */
static int tab_alloc_held(storage_merged_tab_t *v, size_t n, unsigned flags, nodeunion_t *u,
                          storage_t *s)
{
    uint32_t nsyms;
    v->distinct_kids = 1;
    v->held = u;
    v->held_store = s;
    return tab_alloc_borrowed(v, n, flags, storage_union_syms(u), storage_union_parents(u),
                              storage_union_symnos(u, &nsyms));
}

void storage_merged_tab_release(storage_merged_tab_t *v)
{
    if (v->owns_self) free(v->self);
    if (tab_borrows(v)) { /* the union's or the caller's arrays: not the forest's */
        v->sym = NULL;
        v->parent = NULL;
        v->symno = NULL;
    }
    if (v->held != NULL) storage_union_release(v->held_store, v->held, 0);
    if (v->lend_release != NULL) v->lend_release(v->lend_arg);
    free(v->sym);
    free(v->total);
    free(v->first_kid);
    free(v->next_sib);
    free(v->parent);
    free(v->symno);
    free(v->least_kid);
    free(v->symbols);
    free(v->space_parent);
    free(v->space_sym);
    memset(v, 0, sizeof *v);
}

int storage_merged_tab_of(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                          size_t nsyms, int64_t *val, size_t count, unsigned flags,
                          int distinct_kids, storage_merged_tab_t *out)
{
    return storage_merged_tab_followed(parent, sym, symno, nsyms, val, count, flags, distinct_kids,
                                       NULL, out);
}

int storage_merged_tab_followed(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                                size_t nsyms, int64_t *val, size_t count, unsigned flags,
                                int distinct_kids, storage_follow_t *f, storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    /* the caller's tree may come from a peer: an id under itself or a later
     * id would send the pass outside the arrays */
    int rc = count >= 1 ? 0 : ERR_INVALID_ARGUMENT;
    for (size_t id = 1; rc == 0 && id < count; id++)
        if (parent[id] >= id) rc = ERR_INVALID_ARGUMENT;
    if (rc != 0) {
        follow_end(f, 0);
        free(val);
        return rc;
    }
    flags &= STORAGE_TABS_PARENTS | STORAGE_TABS_LEAST | (symno != NULL ? STORAGE_TABS_SYMNOS : 0);
    tabsrc_t src = {parent, sym, symno, val, count};
    rc = tab_alloc(out, val, count, flags);
    out->owns_self = 1; /* val is out's from here: freed with it, even now */
    /* followed only with parents and least children (what the follower reads) */
    if (!(flags & STORAGE_TABS_PARENTS) || !(flags & STORAGE_TABS_LEAST)) {
        follow_end(f, 0);
        f = NULL;
    }
    if (rc == 0) forest_pass(&src, out, f);
    if (rc == 0) out->distinct_kids = distinct_kids != 0;
    if (rc == 0) out->nsyms = (flags & STORAGE_TABS_SYMNOS) ? nsyms : 0;
    /* given up before it is released: the follower stops reading it first */
    follow_end(f, rc == 0 && out->nonneg);
    /* as a token's: no forest with a value below 0 or a total past INT64_MAX */
    if (rc != 0 || !out->nonneg) storage_merged_tab_release(out);
    return rc;
}

int storage_merged_tab_lent(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                            size_t nsyms, int64_t *val, size_t count, unsigned flags,
                            int distinct_kids, storage_follow_t *f, void (*release)(void *arg),
                            void *arg, storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    out->lend_release = release;
    out->lend_arg = arg;
    out->self = val;
    out->owns_self = 1; /* val is out's from here: freed with it, even now */
    int rc = count >= 1 && parent != NULL && symno != NULL ? 0 : ERR_INVALID_ARGUMENT;
    flags = (flags & STORAGE_TABS_LEAST) | STORAGE_TABS_PARENTS | STORAGE_TABS_SYMNOS;
    tabsrc_t src = {parent, sym, symno, val, count};
    if (rc == 0) rc = tab_alloc_borrowed(out, count, flags, sym, parent, symno);
    if (!(flags & STORAGE_TABS_LEAST)) { /* followed only with least children */
        follow_end(f, 0);
        f = NULL;
    }
    if (rc == 0) forest_pass(&src, out, f);
    out->distinct_kids = distinct_kids != 0;
    out->nsyms = nsyms;
    follow_end(f, rc == 0 && out->nonneg);
    if (rc != 0 || !out->nonneg) storage_merged_tab_release(out);
    return rc;
}

/* v's copy of the union's symbols (the union changes once released),
 * charged first. */
static int tab_symbols(storage_merger_t *m, const nodeunion_t *u, storage_merged_tab_t *v)
{
    size_t n;
    const uint64_t *syms = storage_union_symbols(u, &n);
    int rc = n > 0 ? charge(m, n * sizeof *v->symbols) : 0;
    if (rc != 0 || n == 0) return rc;
    if ((v->symbols = malloc(n * sizeof *v->symbols)) == NULL) return ERR_NOMEM;
    memcpy(v->symbols, syms, n * sizeof *v->symbols);
    v->nsymbols = n;
    return 0;
}

static int tab_one(storage_merger_t *m, acc_t *a, unsigned flags, storage_merged_tab_t *v,
                   errmsg_t *em)
{
    if (a->cap == 0) { /* no block added: the root alone, of value 0 */
        a->val = calloc(1, sizeof *a->val);
        if (a->val == NULL) return ERR_NOMEM;
        a->cap = 1;
    }
    nodetab_t *t;
    int rc = storage_nodetab_acquire(m->s, a->token, m->tenant, &t, em);
    if (rc != 0) return rc;
    size_t real = storage_nodetab_count(t), nval = a->used < real ? a->used : real;
    /* ids past the values have no value and no valued descendant (children
     * have larger ids): a short range over a big table passes few ids */
    tabsrc_t src = {storage_nodetab_parents(t), storage_nodetab_syms(t), NULL, a->val,
                    nval ? nval : 1 /* the root always is */};
    if (real == 0) flags &= ~STORAGE_TABS_SYMNOS;
    uint32_t nsyms = 0;
    if (flags & STORAGE_TABS_SYMNOS) rc = storage_nodetab_symnos(t, &src.symno, &nsyms);
    /* the forest (kept until the caller frees it) */
    size_t bytes = src.count * tab_id_bytes(flags);
    if (rc == 0) rc = charge(m, bytes);
    if (rc == 0) rc = tab_alloc(v, a->val, src.count, flags);
    storage_follow_t *f = m->n == 1 ? m->follow : NULL; /* the one forest made */
    if (rc == 0) forest_pass(&src, v, f);
    if (rc == 0) v->nsyms = nsyms;
    /* with a negative value (a delta profile) or an overflow a parent's
     * total can be 0 while a child's is not: no forest then (its callers
     * build the whole tree when a token is not nonneg) */
    follow_end(f, rc == 0 && v->nonneg);
    if (rc != 0 || !v->nonneg) storage_merged_tab_release(v);
    for (size_t id = real; id < a->cap; id++)
        if (a->val[id] != 0) /* a block naming a node the table lacks: corrupt */
            storage_log_corrupt(&m->s->counters, "block node id", (int)id, ERR_CORRUPT);
    storage_nodetab_release(m->s, t, 0);
    return rc;
}

/* ---- several tokens' forests as one, over their union (union.c) ---- */

static int by_token(const void *a, const void *b)
{
    uint64_t x = (*(acc_t *const *)a)->token, y = (*(acc_t *const *)b)->token;
    return x < y ? -1 : x > y;
}

/* Adds each token's values into uv (the union's nodes) through its map,
 * its table held meanwhile; *neg gets every value OR-ed. The union grows
 * to each table whole. */
static int union_add(storage_merger_t *m, nodeunion_t *u, acc_t **accs, int64_t **uv, size_t *ucap,
                     uint64_t *neg, errmsg_t *em)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->n; i++) {
        acc_t *a = accs[i];
        nodetab_t *t;
        if ((rc = storage_nodetab_acquire(m->s, a->token, m->tenant, &t, em)) != 0) break;
        const uint32_t *map;
        rc = storage_union_map(u, i, t, &map);
        size_t real = storage_nodetab_count(t), nval = a->used < real ? a->used : real;
        size_t need = storage_union_count(u);
        if (rc == 0 && need > *ucap) { /* the union grew: so does the vector */
            int64_t *v = realloc(*uv, need * sizeof *v);
            rc = v == NULL ? ERR_NOMEM : charge(m, (need - *ucap) * sizeof *v);
            if (v != NULL) *uv = v;
            if (v != NULL) memset(v + *ucap, 0, (need - *ucap) * sizeof *v);
            if (v != NULL) *ucap = need;
        }
        int64_t *sum = *uv;
        uint64_t or = 0;
        for (size_t id = 0; rc == 0 && id < nval; id++) { /* no branch on a zero: most are */
            sum[map[id]] = (int64_t)((uint64_t)sum[map[id]] + (uint64_t)a->val[id]);
            or |= (uint64_t)a->val[id];
        }
        *neg |= or ;
        for (size_t id = real; rc == 0 && id < a->used; id++)
            if (a->val[id] != 0) /* a block naming a node the table lacks: corrupt */
                storage_log_corrupt(&m->s->counters, "block node id", (int)id, ERR_CORRUPT);
        storage_nodetab_release(m->s, t, 0);
    }
    return rc;
}

/* The count of the union of nonce whose structure the caller holds (the
 * first of the merger's known spaces with it), at least 1: the root is
 * everyone's. */
static size_t known_base(const storage_merger_t *m, uint64_t nonce)
{
    uint64_t base = 1;
    for (size_t i = 0; i < m->nknown; i++)
        if (m->known[i].nonce == nonce) {
            base = m->known[i].count;
            break;
        }
    if (base < 1) base = 1;
    return base < SIZE_MAX ? (size_t)base : SIZE_MAX;
}

/* v's id space (STORAGE_TABS_SPACE): u's nonce and a copy of the parent
 * and symbol of v's ids the caller lacks (the union changes once
 * released), charged first. u held, v made. */
static int tab_space(storage_merger_t *m, const nodeunion_t *u, storage_merged_tab_t *v)
{
    size_t base = known_base(m, storage_union_nonce(u)), top = v->n;
    v->space_nonce = storage_union_nonce(u);
    v->space_base = base < top ? base : top;
    if (base >= top) return 0; /* the caller has every id of the forest */
    if (top > storage_union_count(u)) return ERR_CORRUPT; /* cannot be: top <= its count */
    size_t k = top - base;
    int rc = charge(m, k * (sizeof *v->space_parent + sizeof *v->space_sym));
    if (rc != 0) return rc;
    v->space_parent = malloc(k * sizeof *v->space_parent);
    v->space_sym = malloc(k * sizeof *v->space_sym);
    if (v->space_parent == NULL || v->space_sym == NULL) return ERR_NOMEM;
    memcpy(v->space_parent, storage_union_parents(u) + base, k * sizeof *v->space_parent);
    memcpy(v->space_sym, storage_union_syms(u) + base, k * sizeof *v->space_sym);
    return 0;
}

/* v of the union's values alone (STORAGE_TABS_VALUES): uv (top of them,
 * taken) as its self, nonneg when no value is below 0 (neg: every value
 * OR-ed) and their sum stays within INT64_MAX, so no subtree's total
 * passes it either. */
static void tab_values(int64_t *uv, size_t top, uint64_t neg, storage_merged_tab_t *v)
{
    uint64_t sum = 0, over = 0; /* a sum past INT64_MAX has its top bit set: as forest_pass */
    for (size_t id = 0; id < top; id++) {
        sum += (uint64_t)uv[id];
        over |= sum;
    }
    v->self = uv;
    v->owns_self = 1;
    v->n = v->nodes = top;
    v->values_only = 1;
    v->distinct_kids = 1;
    v->nonneg = (neg >> 63) == 0 && (over >> 63) == 0;
}

/* The forest of every token's values as one, over the tokens' union, into
 * v (values and arrays its own), with its id space when flags asks
 * (STORAGE_TABS_SPACE), of its values alone with STORAGE_TABS_VALUES too.
 * 1 when no union is made for them (past the cache's bound): a forest per
 * token then. */
static int tab_union(storage_merger_t *m, unsigned flags, storage_merged_tab_t *v, errmsg_t *em)
{
    if (flags & STORAGE_TABS_SYMBOLS) flags |= STORAGE_TABS_SYMNOS; /* the union's numbers */
    acc_t **accs = malloc(m->n * sizeof *accs);
    uint64_t *tokens = malloc(m->n * sizeof *tokens);
    size_t ids = 0;
    for (size_t i = 0; accs != NULL && i < m->n; i++) {
        accs[i] = &m->accs[i];
        ids += m->accs[i].cap; /* at least every valued id; the union grows to the tables' */
    }
    int rc = accs != NULL && tokens != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) qsort(accs, m->n, sizeof *accs, by_token);
    for (size_t i = 0; rc == 0 && i < m->n; i++)
        tokens[i] = accs[i]->token;
    nodeunion_t *u = NULL;
    if (rc == 0) rc = storage_union_acquire(m->s, m->tenant, tokens, m->n, ids, &u);
    free(tokens);
    if (rc == ERR_LIMIT) rc = 1;
    int64_t *uv = NULL;
    size_t ucap = 0, top = 1;
    uint64_t neg = 0;
    if (rc == 0) rc = union_add(m, u, accs, &uv, &ucap, &neg, em);
    free(accs);
    /* a table emptied or deleted while the union was extended (a new
     * generation), or one found shorter than the union had it: its ids
     * may have been mapped as they were before. A forest per token now,
     * the union built afresh by the next render. */
    int stale = u != NULL && (rc == ERR_CORRUPT || (rc == 0 && storage_node_generation(m->s) !=
                                                                   storage_union_generation(u)));
    int too_large = u != NULL && rc == ERR_LIMIT; /* past the bound as it grew */
    if (stale || too_large) rc = 1;
    for (top = ucap; rc == 0 && top > 1 && uv[top - 1] == 0;) /* past the last value: none */
        top--;
    int values_only = (flags & STORAGE_TABS_SPACE) && (flags & STORAGE_TABS_VALUES);
    if (rc == 0 && values_only) {
        tab_values(uv, top, neg, v);
        uv = NULL; /* v's now */
        if (v->nonneg) rc = tab_space(m, u, v);
        if (rc != 0 || !v->nonneg) storage_merged_tab_release(v);
    } else if (rc == 0) {
        uint32_t nsyms;
        tabsrc_t src = {storage_union_parents(u), storage_union_syms(u),
                        storage_union_symnos(u, &nsyms), uv, top};
        /* held: the union's own structure, no copy of it in the forest */
        int hold = (flags & STORAGE_TABS_HOLD) && (flags & STORAGE_TABS_PARENTS) &&
                   (flags & STORAGE_TABS_SYMNOS);
        size_t bytes = top * (tab_id_bytes(flags) - (hold ? tab_held_bytes() : 0));
        rc = charge(m, bytes);
        v->self = uv; /* the tab's now, freed with it */
        v->owns_self = 1;
        uv = NULL;
        if (rc == 0)
            rc = hold ? tab_alloc_held(v, top, flags, u, m->s) : tab_alloc(v, v->self, top, flags);
        if (rc == 0) forest_pass(&src, v, m->follow);
        if (rc == 0) v->nsyms = (flags & STORAGE_TABS_SYMNOS) ? nsyms : 0;
        if (rc == 0 && (flags & STORAGE_TABS_SYMBOLS)) rc = tab_symbols(m, u, v);
        if (rc == 0 && (neg >> 63) != 0) v->nonneg = 0; /* a token's value below 0 */
        if (rc == 0 && v->nonneg && (flags & STORAGE_TABS_SPACE)) rc = tab_space(m, u, v);
        follow_end(m->follow, rc == 0 && v->nonneg);
        if ((rc != 0 || !v->nonneg) && v->held != NULL) { /* released below, as before */
            v->held = NULL;
            v->sym = NULL; /* the union's arrays: not the forest's */
            v->parent = NULL;
            v->symno = NULL;
        }
        if (rc != 0 || !v->nonneg) storage_merged_tab_release(v);
        if (v->held != NULL) u = NULL; /* the forest's: released with it */
    }
    if (u != NULL)
        storage_union_release(m->s, u,
                              too_large                       ? STORAGE_UNION_TOO_LARGE
                              : (rc != 0 && rc != 1) || stale ? STORAGE_UNION_FAILED
                                                              : 0);
    free(uv);
    return rc;
}

static int tabs_made(storage_merger_t *m, unsigned flags, storage_merged_tab_t **tabs, size_t *n,
                     errmsg_t *em)
{
    /* one token's forest is over a union only for its id space */
    int one_space = m->n == 1 && (flags & STORAGE_TABS_SPACE);
    int use_union = (m->n > 1 || one_space) && m->s->unions.max_bytes > 0;
    *tabs = calloc(m->n ? m->n : 1, sizeof **tabs);
    *n = 0;
    int rc = *tabs == NULL ? ERR_NOMEM : use_union ? tab_union(m, flags, &(*tabs)[0], em) : 1;
    m->known = NULL; /* borrowed for this call only */
    m->nknown = 0;
    if (*tabs == NULL) return ERR_NOMEM;
    if (rc == 0) {
        *n = 1;
        return 0;
    }
    if (rc != 1) {
        free(*tabs);
        *tabs = NULL;
        return errmsg_set(em, rc, "merging blocks: %s", err_message(rc));
    }
    for (size_t i = 0; i < m->n; i++) {
        int rc = tab_one(m, &m->accs[i], flags, &(*tabs)[i], em);
        *n = i + 1;
        if (rc != 0) {
            storage_merged_tabs_free(*tabs, *n);
            *tabs = NULL;
            *n = 0;
            return errmsg_set(em, rc, "merging blocks: %s", err_message(rc));
        }
    }
    return 0;
}

int storage_merger_tabs(storage_merger_t *m, unsigned flags, storage_merged_tab_t **tabs, size_t *n,
                        errmsg_t *em)
{
    int rc = tabs_made(m, flags, tabs, n, em);
    storage_follow_t *f = m->follow;
    m->follow = NULL; /* this call's only */
    if (f != NULL && atomic_load_explicit(&f->state, memory_order_acquire) == 0)
        follow_end(f, 0); /* no forest followed: none published */
    return rc;
}

void storage_merger_hand_selfs(storage_merger_t *m, storage_merged_tab_t *tabs, size_t n)
{
    for (size_t i = 0; i < n && i < m->n; i++) {
        acc_t *a = &m->accs[i];
        if (tabs[i].owns_self || tabs[i].self == NULL || tabs[i].self != a->val) continue;
        tabs[i].owns_self = 1; /* the vector is the tab's now: the merger forgets it */
        a->val = NULL;
        a->cap = a->used = 0;
    }
}

void storage_merged_tabs_free(storage_merged_tab_t *tabs, size_t n)
{
    for (size_t i = 0; tabs != NULL && i < n; i++)
        storage_merged_tab_release(&tabs[i]);
    free(tabs);
}
