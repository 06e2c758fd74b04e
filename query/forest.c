/* forest.c — call trees laid out as forests (storage_merged_tab_t), the
 * input of keep.c's maxNodes selection.
 *
 * A coordinator that truncates gets one tree per share (decoded from a
 * PartialResult, or a local share's tree) plus the local share's own token
 * forests. Merging them into one tree costs a hash lookup per node of every
 * share, a cache miss each, and then query_truncate walks the whole merge to
 * keep a few thousand nodes. Laid out as forests instead (linear passes, no
 * hashing), query_truncate_tabs expands only the kept nodes of their union:
 * the same answer, node for node, as truncating the merge (keep.c says when:
 * every value >= 0 and no total past INT64_MAX; else the caller merges).
 *
 * A forest holds only nodes whose total is non-zero, as storage's do: with
 * values >= 0 a node of total 0 has nothing under it, and query_truncate
 * drops such nodes anyway.
 *
 * A share ships its forests in their own encoding, read and written in node
 * order (no preorder walk, no depth stack: one sequential pass each way):
 *   u8      version: QUERY_FOREST_V3 (3) or QUERY_FOREST_V2 (2; a calltree
 *           encoding starts with CALLTREE_VERSION, 1, and decodes here too)
 *   uvarint n, the nodes, root included (>= 1)
 *   version 3: n x { uvarint dictionary index, uvarint self (>= 0), and
 *         below the root uvarint (node - parent), >= 1 }
 *   version 2: n x { uvarint dictionary index, uvarint self (>= 0), uvarint
 *         nkids, nkids x uvarint (kid - node) }   a kid comes after its
 *                                           parent, each node but the root
 *                                           is exactly one node's kid
 *   version 4: the n records in pre-order (a node, then each kid's subtree),
 *         each { uvarint dictionary index, uvarint total, uvarint (bytes
 *         of its descendants' records << 2 | self tag), with tag 2 uvarint
 *         self }; tag 0: self 0, tag 1: self = total
 *   version 5: as 4, each record { uvarint (dictionary index << 3 | last
 *         << 2 | self tag), unless last: uvarint total, uvarint bytes of
 *         its descendants' records; with tag 2 uvarint self }; a last kid
 *         (never the root) has the total its parent leaves (its total
 *         less its self and its other kids') and its bytes run to its
 *         parent's end
 *   uvarint nsyms, then nsyms x u64 little-endian symbol ids
 * Node 0 is the root. Version 5 (or 4) is what a coordinator that reads it
 * asks for: it does not decode it but reads it where it lies (query_packed_t,
 * below): a node's kids are found from its record without reading what
 * lies below them, so keep.c's selection reads only the nodes it expands
 * and their kids. Version 3 is the one a share sends when its
 * coordinator reads it (QueryRequest.forest_version): the share writes it
 * from each node's parent (storage_merged_tab_t.parent, recorded by the
 * pass that makes the forest) without walking a kid list, one field fewer
 * per node, and the reader needs no check that every node is one node's
 * kid: a parent before each node makes a tree. Version 2 is what older
 * coordinators read. Totals are recomputed on decode; a node below the root
 * whose total is 0, a total past INT64_MAX, a node deeper than
 * CALLTREE_MAX_DEPTH, or a root whose symbol is not SYM_ROOT is
 * ERR_CORRUPT (no share sends one).
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "query/query_int.h"

/* The most bytes a varint of a u32 (5) or of a u64 (10) takes. */
#define VARINT32_MAX 5
#define VARINT64_MAX 10

/* Arrays for a forest of m nodes, every one of them a forest node (ids
 * 0..m-1, as a share ships them), owning its self array. */
static int forest_alloc(storage_merged_tab_t *f, size_t m)
{
    f->n = f->nodes = m;
    f->owns_self = 1;
    f->sym = malloc(m * sizeof *f->sym);
    f->self = malloc(m * sizeof *f->self);
    f->total = malloc(m * sizeof *f->total);
    f->first_kid = malloc(m * sizeof *f->first_kid);
    f->next_sib = malloc(m * sizeof *f->next_sib);
    f->parent = malloc(m * sizeof *f->parent);
    return f->sym && f->self && f->total && f->first_kid && f->next_sib && f->parent ? 0
                                                                                     : ERR_NOMEM;
}

/* The forest of n nodes given by parent (parent[i] < i; node 0 the root),
 * sym and self. Sets out->nonneg = 0 (and no arrays) when a value is
 * negative or a total passes INT64_MAX. */
static int forest_build(size_t n, const uint32_t *parent, const uint64_t *sym, const int64_t *self,
                        storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t *tot = calloc(n, sizeof *tot);
    uint32_t *map = malloc(n * sizeof *map);
    int rc = tot && map ? 0 : ERR_NOMEM;
    int nonneg = rc == 0;
    for (size_t i = n; rc == 0 && nonneg && i-- > 0;) {
        nonneg = self[i] >= 0 && tot[i] + (uint64_t)self[i] <= (uint64_t)INT64_MAX;
        tot[i] += (uint64_t)self[i]; /* each term at most INT64_MAX: no wrap */
        if (i > 0) {
            tot[parent[i]] += tot[i];
            nonneg &= tot[parent[i]] <= (uint64_t)INT64_MAX;
        }
    }
    size_t m = 0;
    for (size_t i = 0; rc == 0 && nonneg && i < n; i++)
        map[i] = i == 0 || tot[i] != 0 ? (uint32_t)m++ : UINT32_MAX;
    if (rc == 0 && nonneg) rc = forest_alloc(out, m);
    for (size_t i = 0; rc == 0 && nonneg && i < n; i++) {
        if (map[i] == UINT32_MAX) continue; /* a node of total 0 (so is its subtree) */
        out->sym[map[i]] = sym[i];
        out->self[map[i]] = self[i];
        out->total[map[i]] = (int64_t)tot[i];
        out->first_kid[map[i]] = STORAGE_NO_KID;
    }
    for (size_t i = n; rc == 0 && nonneg && i-- > 1;) { /* linked in ascending order */
        if (map[i] == UINT32_MAX) continue;
        uint32_t p = map[parent[i]];
        out->parent[map[i]] = p;
        out->next_sib[map[i]] = out->first_kid[p];
        out->first_kid[p] = map[i];
    }
    free(tot);
    free(map);
    if (rc == 0 && nonneg) {
        out->nonneg = 1;
        return 0;
    }
    query_forest_free(out);
    return rc;
}

static int decode_v4(int v5, const uint8_t *p, const uint8_t *end, size_t max_nodes,
                     storage_merged_tab_t *out);
struct dict;
static int encode_v4(int v5, const storage_merged_tab_t *f, const uint32_t *parent, struct dict *d,
                     buf_t *out);

/* The forest of a calltree_encode encoding. */
static int decode_tree(const uint8_t *enc, size_t len, size_t max_nodes, storage_merged_tab_t *out)
{
    calltree_records_t r;
    int rc = calltree_decode_records(enc, len, max_nodes > 0 ? max_nodes - 1 : 0, &r);
    if (rc != 0) return rc;
    size_t n = r.n + 1;
    uint32_t *parent = malloc(n * sizeof *parent);
    uint64_t *sym = malloc(n * sizeof *sym);
    int64_t *self = malloc(n * sizeof *self);
    /* the last node seen at each depth; depths are checked (<= CALLTREE_MAX_DEPTH,
     * at most one deeper than the record before) */
    size_t deep = (r.n < CALLTREE_MAX_DEPTH ? r.n : CALLTREE_MAX_DEPTH) + 1;
    uint32_t *last = malloc(deep * sizeof *last);
    rc = parent && sym && self && last ? 0 : ERR_NOMEM;
    if (rc == 0) {
        parent[0] = 0;
        sym[0] = SYM_ROOT;
        self[0] = r.root_self;
        last[0] = 0;
        for (size_t i = 0; i < r.n; i++) {
            parent[i + 1] = last[r.depth[i] - 1];
            last[r.depth[i]] = (uint32_t)(i + 1);
            sym[i + 1] = r.sym[i];
            self[i + 1] = r.self[i];
        }
        rc = forest_build(n, parent, sym, self, out);
    }
    calltree_records_free(&r);
    free(parent);
    free(sym);
    free(self);
    free(last);
    return rc;
}

size_t query_forest_of_tree_bytes(size_t n)
{
    /* parent, sym and self; forest_build's totals and map; the forest */
    size_t per = sizeof(uint32_t) + 2 * sizeof(uint64_t) + sizeof(uint64_t) + sizeof(uint32_t);
    storage_merged_tab_t f = {.n = n};
    return n * per + query_forest_bytes(&f);
}

int query_forest_of_tree(const calltree_t *t, storage_merged_tab_t *out)
{
    size_t n = calltree_node_count(t);
    const calltree_node_t *nd = calltree_nodes(t);
    const uint64_t *tsym = calltree_syms(t);
    uint32_t *parent = malloc(n * sizeof *parent);
    uint64_t *sym = malloc(n * sizeof *sym);
    int64_t *self = malloc(n * sizeof *self);
    int rc = parent && sym && self ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        parent[i] = i == 0 ? 0 : nd[i].parent;
        sym[i] = tsym[nd[i].sym_index];
        self[i] = calltree_self(t, (uint32_t)i);
    }
    if (rc == 0)
        rc = forest_build(n, parent, sym, self, out);
    else
        memset(out, 0, sizeof *out);
    free(parent);
    free(sym);
    free(self);
    return rc;
}

int query_forest_merge(calltree_t *dst, const storage_merged_tab_t *f)
{
    if (f->values_only) return ERR_INVALID_ARGUMENT; /* values to add by id: no forest */
    if (f->n == 0) return 0;
    /* ids outside the forest (total 0, so self 0) map to the root */
    uint32_t *map = calloc(f->n, sizeof *map);
    if (map == NULL) return ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < f->n; i++) { /* parents come first */
        if (i > 0 && f->total[i] == 0) continue;   /* not a forest node */
        for (uint32_t k = f->first_kid[i]; rc == 0 && k != STORAGE_NO_KID; k = f->next_sib[k])
            rc = calltree_child(dst, map[i], f->sym[k], &map[k]);
    }
    if (rc == 0) rc = calltree_add_selves(dst, map, f->self, f->n);
    free(map);
    return rc;
}

size_t query_forest_bytes(const storage_merged_tab_t *f)
{
    size_t listed = f->space_parent != NULL ? f->n - f->space_base : 0; /* its id space's */
    size_t space = listed * (sizeof *f->space_parent + sizeof *f->space_sym);
    if (f->values_only) /* STORAGE_TABS_VALUES: no forest arrays */
        return f->n * sizeof *f->self + space;
    return f->n * (sizeof *f->sym + sizeof *f->self + sizeof *f->total +
                   (2 + (f->parent != NULL) + (f->symno != NULL)) * sizeof(uint32_t)) +
           space;
}

void query_forest_free(storage_merged_tab_t *f)
{
    storage_merged_tab_release(f);
}

/* A little-endian u64 of the dictionary. */
static inline uint64_t le64_load(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* varint_read_u with the one-byte case (most fields of a forest) inline,
 * and the others without a bound check per byte while 10 bytes remain
 * (the most a uvarint takes: its tenth byte holds bit 63 alone). */
static inline int get_u(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *s = *p;
    if (s < end && *s < 0x80) {
        *v = *s;
        *p = s + 1;
        return 1;
    }
    if (end - s < VARINT64_MAX) return varint_read_u(p, end, v);
    uint64_t x = 0;
    for (int k = 0; k < VARINT64_MAX - 1; k++) {
        x |= (uint64_t)(s[k] & 0x7f) << (7 * k);
        if (s[k] < 0x80) {
            *v = x;
            *p = s + k + 1;
            return 1;
        }
    }
    if (s[VARINT64_MAX - 1] > 1) return 0;
    *v = x | (uint64_t)s[VARINT64_MAX - 1] << 63;
    *p = s + VARINT64_MAX;
    return 1;
}

/* Pass 1 of an encoding-2 forest: the records, kids checked (after their node and
 * ascending, in range, each node the kid of one node, depth bounded) and
 * linked; sym[] holds dictionary indices until pass 2, total[] the selves. */
static int read_nodes(const uint8_t **pp, const uint8_t *end, storage_merged_tab_t *f,
                      uint32_t *depth, uint32_t *parent)
{
    const uint8_t *p = *pp;
    size_t n = f->n, nk = 0;
    memset(depth, 0, n * sizeof *depth); /* 0: not yet any node's kid */
    for (size_t i = 0; i < n; i++) {
        uint64_t idx, self, nkids;
        if (!get_u(&p, end, &idx) || !get_u(&p, end, &self) || !get_u(&p, end, &nkids) ||
            self > (uint64_t)INT64_MAX || nkids > n - 1 - nk || (i > 0 && depth[i] == 0) ||
            (nkids > 0 && depth[i] >= CALLTREE_MAX_DEPTH))
            return ERR_CORRUPT;
        f->sym[i] = idx;
        f->self[i] = f->total[i] = (int64_t)self;
        f->first_kid[i] = STORAGE_NO_KID;
        uint32_t prev = (uint32_t)i, *link = &f->first_kid[i], d = depth[i] + 1;
        for (uint64_t k = 0; k < nkids; k++) {
            uint64_t dk;
            if (!get_u(&p, end, &dk) || dk == 0 || dk >= n - i) return ERR_CORRUPT;
            uint32_t kid = (uint32_t)(i + (size_t)dk);
            /* ascending (so after the node, as the first's delta > 0 says) */
            if (depth[kid] != 0 || kid <= prev) return ERR_CORRUPT;
            depth[kid] = d;
            parent[kid] = (uint32_t)i;
            *link = kid;
            link = &f->next_sib[kid];
            prev = kid;
        }
        *link = STORAGE_NO_KID;
        nk += nkids;
    }
    *pp = p;
    return nk == n - 1 ? 0 : ERR_CORRUPT;
}

/* The dictionary at p: nsyms, then nsyms ids (read once into *dict, caller
 * frees; one load per node afterwards). */
static int read_dict_ids(const uint8_t *p, const uint8_t *end, uint64_t **dict, size_t *nsyms)
{
    uint64_t n;
    *dict = NULL;
    if (!varint_read_u(&p, end, &n) || (size_t)(end - p) % 8 != 0 || n != (uint64_t)(end - p) / 8)
        return ERR_CORRUPT;
    uint64_t *d = malloc((n ? n : 1) * sizeof *d);
    if (d == NULL) return ERR_NOMEM;
    for (size_t k = 0; k < n; k++)
        d[k] = le64_load(p + 8 * k);
    *dict = d;
    *nsyms = (size_t)n;
    return 0;
}

/* Pass 2 of an encoding-2 forest: symbol ids from the dictionary; the
 * root's must be SYM_ROOT. */
static int read_dict(const uint8_t *p, const uint8_t *end, storage_merged_tab_t *f)
{
    uint64_t *dict;
    size_t nsyms;
    int rc = read_dict_ids(p, end, &dict, &nsyms);
    for (size_t i = 0; rc == 0 && i < f->n; i++) {
        uint64_t idx = f->sym[i];
        if (idx >= nsyms) {
            rc = ERR_CORRUPT;
            break;
        }
        f->sym[i] = dict[idx];
    }
    free(dict);
    /* every share's root is SYM_ROOT (storage_merged_tab_t): a root naming
     * another symbol is not a forest a share sends */
    return rc == 0 && f->sym[0] != SYM_ROOT ? ERR_CORRUPT : rc;
}

/* Pass 3 of an encoding-2 forest: totals, children first (each node's
 * total added to its parent's: one sequential pass, no walk of the kid
 * lists, which pass 1 made). */
static int sum_totals(storage_merged_tab_t *f)
{
    const uint32_t *parent = f->parent;
    for (size_t i = f->n; i-- > 1;) { /* a kid comes after its parent: final before added */
        uint32_t par = parent[i];
        uint64_t t = (uint64_t)f->total[i], *pt = (uint64_t *)&f->total[par];
        if (t == 0) return ERR_CORRUPT;
        *pt += t; /* each term at most INT64_MAX: no wrap */
        if (*pt > (uint64_t)INT64_MAX) return ERR_CORRUPT;
    }
    return 0;
}

/* Pass 1 of an encoding-3 forest: the records, each node's parent (its distance back:
 * before it) and depth (bounded); sym[] holds dictionary indices until
 * pass 2, total[] the selves. Every node but the root has exactly one
 * parent by construction, so there is no kid list to check. The arrays
 * are local restrict pointers: stores through them cannot change the
 * struct's fields, so nothing is reloaded per node (this runs for every
 * node every share ships). */
static int read_nodes_v3(const uint8_t **pp, const uint8_t *end, storage_merged_tab_t *f,
                         uint32_t *restrict depth)
{
    const uint8_t *p = *pp;
    const size_t n = f->n;
    uint64_t *restrict sym = f->sym;
    int64_t *restrict self = f->self, *restrict total = f->total;
    uint32_t *restrict parent = f->parent;
    uint64_t idx, v, back;
    if (!get_u(&p, end, &idx) || !get_u(&p, end, &v) || v > (uint64_t)INT64_MAX) return ERR_CORRUPT;
    sym[0] = idx;
    self[0] = total[0] = (int64_t)v;
    depth[0] = 0;
    for (size_t i = 1; i < n; i++) {
        if (!get_u(&p, end, &idx) || !get_u(&p, end, &v) || v > (uint64_t)INT64_MAX ||
            !get_u(&p, end, &back) || back == 0 || back > i)
            return ERR_CORRUPT;
        uint32_t par = (uint32_t)(i - back);
        uint32_t d = depth[par];
        if (d >= CALLTREE_MAX_DEPTH) return ERR_CORRUPT;
        sym[i] = idx;
        self[i] = total[i] = (int64_t)v;
        depth[i] = d + 1;
        parent[i] = par;
    }
    *pp = p;
    return 0;
}

/* Passes 2 and 3 of an encoding-3 forest in one backward pass: each
 * node's symbol id from the dictionary, its total (final: its kids come
 * after it) added to its parent's, and the node put in front of its
 * parent's kid list (so the lists end up ascending). The root's symbol
 * must be SYM_ROOT. */
static int link_v3(storage_merged_tab_t *f, const uint64_t *restrict dict, size_t nsyms)
{
    const size_t n = f->n;
    uint64_t *restrict sym = f->sym;
    int64_t *restrict total = f->total;
    uint32_t *restrict first = f->first_kid, *restrict next = f->next_sib;
    const uint32_t *restrict parent = f->parent;
    memset(first, 0xff, n * sizeof *first); /* STORAGE_NO_KID */
    next[0] = STORAGE_NO_KID;
    for (size_t i = n; i-- > 1;) {
        uint64_t idx = sym[i];
        uint32_t par = parent[i];
        uint64_t t = (uint64_t)total[i], pt = (uint64_t)total[par] + t; /* no wrap: each term
                                                                         * at most INT64_MAX */
        if (idx >= nsyms || t == 0 || pt > (uint64_t)INT64_MAX) return ERR_CORRUPT;
        sym[i] = dict[idx];
        total[par] = (int64_t)pt;
        next[i] = first[par];
        first[par] = (uint32_t)i;
    }
    if (sym[0] >= nsyms) return ERR_CORRUPT;
    sym[0] = dict[sym[0]];
    /* every share's root is SYM_ROOT (storage_merged_tab_t): a root naming
     * another symbol is not a forest a share sends */
    return sym[0] != SYM_ROOT ? ERR_CORRUPT : 0;
}

/* A forest of encoding 2 (kid lists) or 3 (each node's parent): the node
 * count, pass 1 (records), pass 2 (dictionary), then the totals (for
 * encoding 3, passes 2 and 3 are one). */
static int decode_forest(int v3, const uint8_t *p, const uint8_t *end, size_t max_nodes,
                         storage_merged_tab_t *out)
{
    uint64_t n;
    uint64_t min_record = v3 ? 2 : 3; /* bytes a record takes at least */
    if (!varint_read_u(&p, end, &n) || n == 0 || n > (uint64_t)(end - p) / min_record ||
        n > UINT32_MAX)
        return ERR_CORRUPT;
    if (max_nodes != 0 && n > max_nodes) return ERR_LIMIT;
    uint32_t *depth = malloc(n * sizeof *depth);
    int rc = forest_alloc(out, (size_t)n);
    if (rc == 0 && depth == NULL) rc = ERR_NOMEM;
    if (rc == 0 && v3) {
        uint64_t *dict = NULL;
        size_t nsyms = 0;
        rc = read_nodes_v3(&p, end, out, depth);
        if (rc == 0) rc = read_dict_ids(p, end, &dict, &nsyms);
        if (rc == 0) rc = link_v3(out, dict, nsyms);
        free(dict);
    } else if (rc == 0) {
        rc = read_nodes(&p, end, out, depth, out->parent);
        if (rc == 0) rc = read_dict(p, end, out);
        if (rc == 0) rc = sum_totals(out);
    }
    free(depth);
    if (rc != 0) query_forest_free(out);
    out->nonneg = rc == 0;
    return rc;
}

int query_forest_decode(const uint8_t *enc, size_t len, size_t max_nodes, storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    if (len > 0 && enc[0] == QUERY_FOREST_V2)
        return decode_forest(0, enc + 1, enc + len, max_nodes, out);
    if (len > 0 && enc[0] == QUERY_FOREST_V3)
        return decode_forest(1, enc + 1, enc + len, max_nodes, out);
    if (len > 0 && enc[0] == QUERY_FOREST_V4)
        return decode_v4(0, enc + 1, enc + len, max_nodes, out);
    if (len > 0 && enc[0] == QUERY_FOREST_V5)
        return decode_v4(1, enc + 1, enc + len, max_nodes, out);
    return decode_tree(enc, len, max_nodes, out);
}

/* The forest's nodes numbered 0..nodes-1 in id order (a tab made by
 * storage covers ids outside its forest: total 0), into map. */
static void number_nodes(const storage_merged_tab_t *f, uint32_t *map)
{
    uint32_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        map[i] = i == 0 || f->total[i] != 0 ? k++ : UINT32_MAX;
}

/* Kids whose deltas put_node keeps from its one walk of the kid list; a
 * node with more (rare) walks it again to write them. */
#define PUT_KIDS 32

/* One node's record: dictionary index, self, its kids as deltas, written
 * straight into out. The kid list is walked once (its deltas kept, unless
 * there are more than PUT_KIDS), and room is asked of buf_reserve only when
 * the buffer's capacity runs short: this runs for every node a share ships. */
static int put_node(const storage_merged_tab_t *f, const uint32_t *map, size_t i, uint32_t idx,
                    buf_t *out)
{
    uint32_t nkids = 0, kd[PUT_KIDS];
    for (uint32_t k = f->first_kid[i]; k != STORAGE_NO_KID; k = f->next_sib[k]) {
        if (nkids < PUT_KIDS) kd[nkids] = map[k] - map[i];
        nkids++;
    }
    size_t need = 2 * VARINT32_MAX + VARINT64_MAX + (size_t)nkids * VARINT32_MAX;
    if (need >= out->cap - out->len || need > out->max - out->len) { /* + its NUL */
        int rc = buf_reserve(out, need);
        if (rc != 0) return rc;
    }
    uint8_t *p = out->data + out->len, *start = p;
    p += varint_put_u(p, idx);
    p += varint_put_u(p, (uint64_t)f->self[i]);
    p += varint_put_u(p, nkids);
    if (nkids <= PUT_KIDS) {
        for (uint32_t k = 0; k < nkids; k++)
            p += varint_put_u(p, kd[k]);
    } else {
        for (uint32_t k = f->first_kid[i]; k != STORAGE_NO_KID; k = f->next_sib[k])
            p += varint_put_u(p, map[k] - map[i]);
    }
    out->len += (size_t)(p - start);
    return 0;
}

/* A forest's dictionary while it is encoded: its symbols in order of first
 * use (syms), found again through the node table's symbol numbers when the
 * forest carries them (slot[symno]: 1 + the symbol's index, 0 until met)
 * or else through a hash map from the symbol. */
typedef struct dict {
    u64map_t map;   /* symbol -> index; without slot */
    uint32_t *slot; /* per symbol number of the forest's table; NULL: map */
    uint64_t *syms;
    size_t len, cap;
} dict_t;

/* d zeroed; dict_free after it, whatever it returns. */
static int dict_init(dict_t *d, const storage_merged_tab_t *f)
{
    if (f->symno == NULL) /* a forest repeats its symbols: sized small */
        return u64map_init(&d->map, f->nodes / 8 + 16);
    d->slot = calloc(f->nsyms ? f->nsyms : 1, sizeof *d->slot);
    return d->slot != NULL ? 0 : ERR_NOMEM;
}

static void dict_free(dict_t *d)
{
    u64map_free(&d->map);
    free(d->slot);
    free(d->syms);
}

/* Adds sym as the dictionary's next index, *idx. */
static int dict_add(dict_t *d, uint64_t sym, uint32_t *idx)
{
    *idx = (uint32_t)d->len;
    if (GROW_FROM(d->syms, d->cap, d->len + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    d->syms[d->len++] = sym;
    return d->slot != NULL ? 0 : u64map_put(&d->map, sym, *idx);
}

/* The dictionary index of node i's symbol, added when new: an array read
 * or a lookup, inline, finds nearly every node's symbol. */
static inline int dict_index(dict_t *d, const storage_merged_tab_t *f, size_t i, uint32_t *idx)
{
    if (d->slot != NULL) {
        uint32_t *slot = &d->slot[f->symno[i]];
        if (*slot != 0) {
            *idx = *slot - 1;
            return 0;
        }
        *slot = (uint32_t)d->len + 1;
    } else if (u64map_get(&d->map, f->sym[i], idx)) {
        return 0;
    }
    return dict_add(d, f->sym[i], idx);
}

/* One node's version 3 record: dictionary index, self, and (below the
 * root) its distance back to its parent: a sequential pass, no kid list. */
static int put_node_v3(const storage_merged_tab_t *f, const uint32_t *map, const uint32_t *parent,
                       size_t i, uint32_t idx, buf_t *out)
{
    size_t need = 2 * VARINT32_MAX + VARINT64_MAX;
    if (need >= out->cap - out->len || need > out->max - out->len) { /* + its NUL */
        int rc = buf_reserve(out, need);
        if (rc != 0) return rc;
    }
    uint8_t *p = out->data + out->len, *start = p;
    p += varint_put_u(p, idx);
    p += varint_put_u(p, (uint64_t)f->self[i]);
    if (i > 0) p += varint_put_u(p, map[i] - map[parent[i]]);
    out->len += (size_t)(p - start);
    return 0;
}

/* The records of an encoding-3 forest that carries symbol numbers (what
 * a share ships), as put_node_v3 writes them, in one loop over locals:
 * the bytes are written through a uint8_t pointer, which may alias
 * anything, so a loop that read f's arrays, the dictionary's slots or
 * out's fields through their structs would load each again after every
 * byte; the restrict locals are loaded once. */
static int put_nodes_v3_numbered(const storage_merged_tab_t *f, const uint32_t *restrict map,
                                 const uint32_t *restrict parent, dict_t *d, buf_t *out)
{
    const size_t n = f->n, room = 2 * VARINT32_MAX + VARINT64_MAX;
    const int64_t *restrict self = f->self;
    const uint32_t *restrict symno = f->symno;
    uint32_t *restrict slot = d->slot;
    uint8_t *data = out->data;
    size_t len = out->len, safe = 0; /* up to safe, a record and its NUL fit */
    for (size_t i = 0; i < n; i++) {
        if (map[i] == UINT32_MAX) continue; /* not a forest node */
        uint32_t idx, *sl = &slot[symno[i]];
        if (*sl != 0) {
            idx = *sl - 1;
        } else {
            *sl = (uint32_t)d->len + 1;
            int rc = dict_add(d, f->sym[i], &idx);
            if (rc != 0) return rc;
        }
        if (len > safe || safe == 0) { /* as put_node_v3: room asked only when short */
            out->len = len;
            if (room >= out->cap - len || room > out->max - len) {
                int rc = buf_reserve(out, room);
                if (rc != 0) return rc;
            }
            data = out->data;
            safe = out->cap - room - 1 < out->max - room ? out->cap - room - 1 : out->max - room;
        }
        uint8_t *p = data + len, *start = p;
        p += varint_put_u(p, idx);
        p += varint_put_u(p, (uint64_t)self[i]);
        if (i > 0) p += varint_put_u(p, map[i] - map[parent[i]]);
        len += (size_t)(p - start);
    }
    out->len = len;
    return 0;
}

/* The parent of each forest node of f, from its kid lists, for a forest
 * that does not carry them (ids outside the forest keep garbage). */
static uint32_t *parents_of(const storage_merged_tab_t *f)
{
    uint32_t *par = malloc(f->n * sizeof *par);
    for (size_t i = 0; par != NULL && i < f->n; i++) {
        if (i > 0 && f->total[i] == 0) continue; /* not a forest node */
        for (uint32_t k = f->first_kid[i]; k != STORAGE_NO_KID; k = f->next_sib[k])
            par[k] = (uint32_t)i;
    }
    return par;
}

int query_forest_encode(const storage_merged_tab_t *f, buf_t *out)
{
    uint64_t *dict;
    size_t n;
    int rc = query_forest_encode_dict(f, QUERY_FOREST_V3, out, &dict, &n);
    free(dict);
    return rc;
}

/* The dictionary's ids, little-endian, after its size. */
static int put_dict(const uint64_t *syms, size_t n, buf_t *out)
{
    int rc = buf_append_uvarint(out, n);
    if (rc == 0) rc = buf_reserve(out, 8 * n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t *le = out->data + out->len + 8 * i;
        for (int k = 0; k < 8; k++)
            le[k] = (uint8_t)(syms[i] >> (8 * k));
    }
    if (rc == 0) {
        out->len += 8 * n;
        out->data[out->len] = 0;
    }
    return rc;
}

int query_forest_encode_dict(const storage_merged_tab_t *f, int version, buf_t *out,
                             uint64_t **dict_ids, size_t *ndict)
{
    *dict_ids = NULL;
    *ndict = 0;
    if (f->n == 0 || !f->nonneg ||
        (version != QUERY_FOREST_V2 && version != QUERY_FOREST_V3 && version != QUERY_FOREST_V4 &&
         version != QUERY_FOREST_V5))
        return ERR_INVALID_ARGUMENT;
    dict_t dict = {0};
    uint32_t *map = malloc(f->n * sizeof *map), *own = NULL;
    const uint32_t *parent = f->parent;
    if (version != QUERY_FOREST_V2 && parent == NULL) parent = own = parents_of(f);
    int rc = map != NULL && (version == QUERY_FOREST_V2 || parent != NULL) ? dict_init(&dict, f)
                                                                           : ERR_NOMEM;
    if (rc != 0) {
        dict_free(&dict);
        free(map);
        free(own);
        return rc;
    }
    int packed = version == QUERY_FOREST_V4 || version == QUERY_FOREST_V5;
    if (!packed) number_nodes(f, map); /* 4 and 5 number none */
    rc = buf_reserve(out, 16 + 6 * f->nodes);
    if (rc == 0) rc = buf_append_byte(out, (uint8_t)version);
    if (rc == 0) rc = buf_append_uvarint(out, f->nodes);
    int numbered = version == QUERY_FOREST_V3 && dict.slot != NULL;
    if (rc == 0 && numbered) rc = put_nodes_v3_numbered(f, map, parent, &dict, out);
    if (rc == 0 && packed) rc = encode_v4(version == QUERY_FOREST_V5, f, parent, &dict, out);
    for (size_t i = 0; rc == 0 && !numbered && !packed && i < f->n; i++) {
        if (map[i] == UINT32_MAX) continue; /* not a forest node */
        uint32_t idx;
        rc = dict_index(&dict, f, i, &idx);
        if (rc == 0)
            rc = version == QUERY_FOREST_V3 ? put_node_v3(f, map, parent, i, idx, out)
                                            : put_node(f, map, i, idx, out);
    }
    if (rc == 0) out->data[out->len] = 0; /* as buf_append leaves it */
    if (rc == 0) rc = put_dict(dict.syms, dict.len, out);
    if (rc == 0) {
        *dict_ids = dict.syms; /* the caller's */
        *ndict = dict.len;
        dict.syms = NULL;
    }
    dict_free(&dict);
    free(map);
    free(own);
    return rc;
}

/* ---- encoding 4: pre-order, with each subtree's total and length ---- */

/* Bytes of a uvarint of v. */
static inline size_t ulen(uint64_t v)
{
    /* 7 bits a byte: ceil(bits / 7), by the leading zeros (no division) */
    static const uint8_t by_clz[64] = {10, 9, 9, 9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 8, 8, 7,
                                       7,  7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5,
                                       5,  5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3,
                                       3,  3, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1};
    return by_clz[__builtin_clzll(v | 1)];
}

/* The tag of a record's third field: how its self is given. */
#define V4_SELF_ZERO 0u  /* self 0 */
#define V4_SELF_TOTAL 1u /* self = total (a leaf, or a node whose kids sum to 0: none) */
#define V4_SELF_GIVEN 2u /* self follows */

static inline unsigned v4_tag(int64_t self, int64_t total)
{
    /* 0, 1 or 2 without a branch: (self != 0) shifted by (self != total) */
    return (unsigned)(self != 0) << (self != total);
}

/* Bytes of node i's record, its descendants' bytes being desc: in
 * encoding 4, or in 5 where a last kid (last) leaves out its total and
 * its descendants' bytes. */
static inline size_t v4_record_len(int v5, int last, uint32_t idx, int64_t self, int64_t total,
                                   uint64_t desc)
{
    unsigned tag = v4_tag(self, total);
    size_t given = tag == V4_SELF_GIVEN ? ulen((uint64_t)self) : 0;
    if (!v5) return ulen(idx) + ulen((uint64_t)total) + ulen(desc << 2 | tag) + given;
    return ulen((uint64_t)idx << 3 | (unsigned)last << 2 | tag) +
           (last ? 0 : ulen((uint64_t)total) + ulen(desc)) + given;
}

/* In encoding 5, the bit of desc[i] that marks node i as its parent's
 * last kid (so its records are kept under 2 GiB). */
#define V5_LAST 0x80000000u

/* Each forest node's descendants' record bytes (desc, per id) and the
 * root's own record bytes (*root_rec), its dictionary index found or added
 * (numbered in descending id order of first use: the reader does not
 * care), kept in idx only when the dictionary has no slots to find it
 * again (idx NULL otherwise): children come after their parents, so one
 * backward pass. In encoding 5 (v5) a parent's last kid (no next
 * sibling: kids ascend by id), the first of them met, has V5_LAST set in
 * its desc. Past 4 GiB
 * of records (2 GiB in encoding 5), ERR_INVALID_ARGUMENT. */
static inline __attribute__((always_inline)) int
v4_sizes_loop(int v5, const storage_merged_tab_t *f, const uint32_t *restrict parent, dict_t *d,
              uint32_t *restrict desc, uint32_t *restrict idx, uint32_t *root_rec)
{
    /* locals: nothing is stored through a byte pointer here, but f's and
     * d's fields are loaded once all the same */
    const int64_t *restrict self = f->self, *restrict total = f->total;
    const uint32_t *restrict symno = f->symno;
    const uint32_t *restrict first_kid = f->first_kid, *restrict next_sib = f->next_sib;
    const uint32_t *slot = d->slot; /* set once by dict_init: stays put */
    const uint64_t most = v5 ? V5_LAST - 1 : UINT32_MAX;
    /* desc is not zeroed first: a node's kids have larger ids, so they are
     * met before it, and its last kid (no next sibling), met first, sets
     * its desc where the others add to it; a node without kids has 0 */
    desc[0] = 0; /* f->n >= 1: set below all the same, but a compiler cannot tell */
    for (size_t i = f->n; i-- > 0;) {
        int64_t t = total[i];
        if (i > 0 && t == 0) continue; /* not a forest node */
        uint32_t x;
        if (slot != NULL && slot[symno[i]] != 0) {
            x = slot[symno[i]] - 1;
        } else {
            int rc = dict_index(d, f, i, &x);
            if (rc != 0) return rc;
        }
        if (idx != NULL) idx[i] = x;
        uint32_t below = first_kid[i] == STORAGE_NO_KID ? 0 : desc[i];
        int last_kid = i > 0 && next_sib[i] == STORAGE_NO_KID, last = v5 && last_kid;
        uint64_t r = v4_record_len(v5, last, x, self[i], t, below);
        desc[i] = below;
        if (i == 0) {
            *root_rec = (uint32_t)r;
            break;
        }
        uint64_t sub = (last_kid ? 0 : (uint64_t)desc[parent[i]]) + r + below;
        if (sub > most) return ERR_INVALID_ARGUMENT;
        desc[parent[i]] = (uint32_t)sub;
        if (last) desc[i] |= V5_LAST;
    }
    return desc[0] + (uint64_t)*root_rec > most ? ERR_INVALID_ARGUMENT : 0;
}

static int v4_sizes(int v5, const storage_merged_tab_t *f, const uint32_t *restrict parent,
                    dict_t *d, uint32_t *restrict desc, uint32_t *restrict idx, uint32_t *root_rec)
{
    if (v5)
        return idx != NULL ? v4_sizes_loop(1, f, parent, d, desc, idx, root_rec)
                           : v4_sizes_loop(1, f, parent, d, desc, NULL, root_rec);
    return idx != NULL ? v4_sizes_loop(0, f, parent, d, desc, idx, root_rec)
                       : v4_sizes_loop(0, f, parent, d, desc, NULL, root_rec);
}

/* varint_put_u with its first five bytes unrolled: a forest's indices,
 * lengths and totals (counts, nanoseconds, bytes) nearly all fit in them,
 * and an unrolled byte is a test and a store where the loop's also moves
 * its counters. The same bytes. */
static inline size_t put_uv(uint8_t *p, uint64_t v)
{
    if (v < 1u << 7) return p[0] = (uint8_t)v, 1;
    p[0] = (uint8_t)(v | 0x80);
    if (v < 1u << 14) return p[1] = (uint8_t)(v >> 7), 2;
    p[1] = (uint8_t)(v >> 7 | 0x80);
    if (v < 1u << 21) return p[2] = (uint8_t)(v >> 14), 3;
    p[2] = (uint8_t)(v >> 14 | 0x80);
    if (v < 1u << 28) return p[3] = (uint8_t)(v >> 21), 4;
    p[3] = (uint8_t)(v >> 21 | 0x80);
    return 4 + varint_put_u(p + 4, v >> 28);
}

/* The records in pre-order (a node, then each kid's subtree, kids in
 * ascending id order as the kid lists are), written in one ascending pass
 * over the ids: a node's record goes where its parent's cursor stands (the
 * parent's record, then the subtrees of its kids before it), so no walk of
 * the tree and no stack. The cursors live in desc: a node's descendants'
 * bytes are read once, when its record is written, and its cursor (where
 * its first kid goes) takes their place; a parent's comes before its kids.
 * Each index from idx, or else from the dictionary's slots. In encoding 5
 * (v5) a last kid (V5_LAST in desc) writes neither total nor length. */
static inline __attribute__((always_inline)) void
v4_put_loop(int v5, const storage_merged_tab_t *f, const uint32_t *restrict parent,
            const uint32_t *restrict idx, const uint32_t *restrict slot, uint32_t *restrict desc,
            uint8_t *base)
{
    const int64_t *restrict self = f->self, *restrict total = f->total;
    const uint32_t *restrict symno = f->symno;
    const size_t n = f->n;
    for (size_t i = 0; i < n; i++) {
        int64_t t = total[i];
        if (i > 0 && t == 0) continue; /* not a forest node */
        uint32_t at = i > 0 ? desc[parent[i]] : 0, below = desc[i] & (v5 ? ~V5_LAST : ~0u);
        uint32_t x = idx != NULL ? idx[i] : slot[symno[i]] - 1;
        unsigned tag = v4_tag(self[i], t);
        uint8_t *p = base + at;
        if (!v5) {
            p += put_uv(p, x);
            p += put_uv(p, (uint64_t)t);
            p += put_uv(p, (uint64_t)below << 2 | tag);
        } else if (desc[i] & V5_LAST) {
            p += put_uv(p, (uint64_t)x << 3 | 4u | tag);
        } else {
            p += put_uv(p, (uint64_t)x << 3 | tag);
            p += put_uv(p, (uint64_t)t);
            p += put_uv(p, below);
        }
        if (tag == V4_SELF_GIVEN) p += put_uv(p, (uint64_t)self[i]);
        uint32_t mine = (uint32_t)(p - base); /* where its first kid goes */
        desc[i] = mine;
        if (i > 0) desc[parent[i]] = mine + below; /* its next kid: after this subtree */
    }
}

/* The records' bytes, once v4_sizes has run. */
static size_t v4_records_bytes(int v5, const uint32_t *desc, uint32_t root_rec)
{
    return (size_t)(desc[0] & (v5 ? ~V5_LAST : ~0u)) + root_rec;
}

/* The records at base, as v4_put_loop writes them. */
static void v4_put_at(int v5, const storage_merged_tab_t *f, const uint32_t *restrict parent,
                      const uint32_t *restrict idx, const uint32_t *restrict slot,
                      uint32_t *restrict desc, uint8_t *base)
{
    /* four copies of the loop, none testing which it is per node */
    if (v5 && idx != NULL)
        v4_put_loop(1, f, parent, idx, NULL, desc, base);
    else if (v5)
        v4_put_loop(1, f, parent, NULL, slot, desc, base);
    else if (idx != NULL)
        v4_put_loop(0, f, parent, idx, NULL, desc, base);
    else
        v4_put_loop(0, f, parent, NULL, slot, desc, base);
}

static int v4_put_nodes(int v5, const storage_merged_tab_t *f, const uint32_t *restrict parent,
                        const uint32_t *restrict idx, const uint32_t *restrict slot,
                        uint32_t *restrict desc, uint32_t root_rec, buf_t *out)
{
    size_t bytes = v4_records_bytes(v5, desc, root_rec);
    int rc = buf_reserve(out, bytes);
    if (rc != 0) return rc;
    v4_put_at(v5, f, parent, idx, slot, desc, out->data + out->len);
    out->len += bytes;
    out->data[out->len] = 0;
    return 0;
}

/* Encoding 4 (or 5, v5) of f after its version byte and node count: the
 * records, then the dictionary. Its working memory (4 bytes an id, 8 when the
 * forest has no symbol numbers) is held beside out (buf_beside_take), so
 * a budget that charges out charges it too. */
static int encode_v4(int v5, const storage_merged_tab_t *f, const uint32_t *parent, struct dict *d,
                     buf_t *out)
{
    size_t held = f->n * sizeof(uint32_t) * (d->slot != NULL ? 1 : 2);
    int rc = buf_beside_take(out, held);
    if (rc != 0) return rc;
    uint32_t *desc = malloc(f->n * sizeof *desc), *idx = NULL, root_rec = 0;
    if (d->slot == NULL) idx = malloc(f->n * sizeof *idx);
    rc = desc != NULL && (d->slot != NULL || idx != NULL) ? 0 : ERR_NOMEM;
    if (rc == 0) rc = v4_sizes(v5, f, parent, d, desc, idx, &root_rec);
    if (rc == 0) rc = v4_put_nodes(v5, f, parent, idx, d->slot, desc, root_rec, out);
    free(desc);
    free(idx);
    buf_beside_give(out, held);
    return rc;
}

/* ---- encoding 4 or 5 sized, then written where the caller says ---- */

struct query_forest_work {
    dict_t dict;
    const uint32_t *parent;
    uint32_t *own_parent, *desc, root_rec;
};

void query_forest_sized_free(query_forest_sized_t *s)
{
    if (s->work != NULL) {
        dict_free(&s->work->dict);
        free(s->work->own_parent);
        free(s->work->desc);
        free(s->work);
    }
    memset(s, 0, sizeof *s);
}

int query_forest_size(const storage_merged_tab_t *f, int version, query_forest_sized_t *out)
{
    memset(out, 0, sizeof *out);
    if (f->n == 0 || !f->nonneg || f->symno == NULL ||
        (version != QUERY_FOREST_V4 && version != QUERY_FOREST_V5))
        return ERR_INVALID_ARGUMENT;
    struct query_forest_work *w = calloc(1, sizeof *w);
    if (w == NULL) return ERR_NOMEM;
    out->f = f;
    out->version = version;
    out->work = w;
    w->parent = f->parent;
    if (w->parent == NULL) w->parent = w->own_parent = parents_of(f);
    w->desc = malloc(f->n * sizeof *w->desc);
    if (w->parent == NULL || w->desc == NULL) return ERR_NOMEM;
    int rc = dict_init(&w->dict, f), v5 = version == QUERY_FOREST_V5;
    if (rc == 0) rc = v4_sizes(v5, f, w->parent, &w->dict, w->desc, NULL, &w->root_rec);
    if (rc != 0) return rc;
    out->dict = w->dict.syms;
    out->ndict = w->dict.len;
    out->bytes = 1 + ulen(f->nodes) + v4_records_bytes(v5, w->desc, w->root_rec) +
                 ulen(w->dict.len) + 8 * w->dict.len;
    out->held = f->n * sizeof(uint32_t) * (w->own_parent != NULL ? 2 : 1) +
                f->nsyms * sizeof(uint32_t) + w->dict.cap * sizeof(uint64_t);
    return 0;
}

void query_forest_write(query_forest_sized_t *s, uint8_t *dst)
{
    const storage_merged_tab_t *f = s->f;
    struct query_forest_work *w = s->work;
    int v5 = s->version == QUERY_FOREST_V5;
    uint8_t *p = dst;
    *p++ = (uint8_t)s->version;
    p += varint_put_u(p, f->nodes);
    size_t records = v4_records_bytes(v5, w->desc, w->root_rec);
    v4_put_at(v5, f, w->parent, NULL, w->dict.slot, w->desc, p);
    p += records;
    p += varint_put_u(p, w->dict.len);
    for (size_t i = 0; i < w->dict.len; i++, p += 8)
        for (int k = 0; k < 8; k++)
            p[k] = (uint8_t)(w->dict.syms[i] >> (8 * k));
}

/* One record of encoding 4, or of 5 (v5), read at *p (before end):
 * dictionary index, total, self, and the bytes of its descendants, which
 * follow it. A last kid of encoding 5 takes as its total what its parent
 * leaves it (left; 0 where no record may be one: the root) and as its
 * descendants' bytes all up to end. The self and total are checked
 * against each other (self <= total, and a node has descendants exactly
 * when its self is short of its total). */
static inline int get_rec(int v5, const uint8_t **p, const uint8_t *end, uint64_t left,
                          uint64_t *idx, uint64_t *total, uint64_t *self, uint64_t *desc)
{
    uint64_t h;
    int last = 0;
    *desc = 0;
    if (!get_u(p, end, &h)) return 0;
    if (!v5) { /* index, total, descendants' bytes << 2 | tag */
        *idx = h;
        if (!get_u(p, end, total) || !get_u(p, end, &h)) return 0;
        *desc = h >> 2;
    } else { /* index << 3 | last << 2 | tag, then unless last: total, bytes */
        *idx = h >> 3;
        last = (h >> 2) & 1;
        if (last && left == 0) return 0;
        if (last)
            *total = left;
        else if (!get_u(p, end, total) || !get_u(p, end, desc))
            return 0;
    }
    unsigned tag = (unsigned)(h & 3);
    if (*total > (uint64_t)INT64_MAX) return 0;
    if (tag == V4_SELF_ZERO)
        *self = 0;
    else if (tag == V4_SELF_TOTAL)
        *self = *total;
    else if (tag != V4_SELF_GIVEN || !get_u(p, end, self) || *self > *total)
        return 0;
    if (last) *desc = (uint64_t)(end - *p);
    if ((*desc == 0) != (*self == *total) || *desc > (uint64_t)(end - *p)) return 0;
    return 1;
}

static int packed_version(uint8_t v)
{
    return v == QUERY_FOREST_V4 || v == QUERY_FOREST_V5;
}

static int packed_open(const uint8_t *enc, size_t len, size_t max_nodes, int copy,
                       query_packed_t *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = enc + 1, *end = enc + len;
    uint64_t n, idx, total, self, desc;
    if (len == 0 || !packed_version(enc[0])) return ERR_INVALID_ARGUMENT;
    int v5 = enc[0] == QUERY_FOREST_V5;
    if (!varint_read_u(&p, end, &n) || n == 0 || n > (uint64_t)(end - p) / (v5 ? 1 : 3) ||
        n > UINT32_MAX)
        return ERR_CORRUPT;
    if (max_nodes != 0 && n > max_nodes) return ERR_LIMIT;
    const uint8_t *nodes = p;
    if (!get_rec(v5, &p, end, 0, &idx, &total, &self, &desc) ||
        (size_t)(p - nodes) + desc > UINT32_MAX)
        return ERR_CORRUPT;
    p += desc; /* the records end: the dictionary follows */
    out->len = (size_t)(p - nodes);
    int rc = read_dict_ids(p, end, &out->dict, &out->nsyms);
    if (rc == 0 && (idx >= out->nsyms || out->dict[idx] != SYM_ROOT)) rc = ERR_CORRUPT;
    if (rc == 0 && copy) out->own = malloc(out->len ? out->len : 1);
    if (rc == 0 && copy && out->own == NULL) rc = ERR_NOMEM;
    if (rc != 0) {
        query_packed_free(out);
        return rc;
    }
    if (copy) memcpy(out->own, nodes, out->len);
    out->rec = copy ? out->own : nodes;
    out->lent = copy ? 0 : len;
    out->version = enc[0];
    out->nodes = (size_t)n;
    out->root_total = (int64_t)total;
    out->root_self = (int64_t)self;
    return 0;
}

int query_packed_open(const uint8_t *enc, size_t len, size_t max_nodes, query_packed_t *out)
{
    return packed_open(enc, len, max_nodes, 1, out);
}

int query_packed_open_at(const uint8_t *enc, size_t len, size_t max_nodes, query_packed_t *out)
{
    return packed_open(enc, len, max_nodes, 0, out);
}

query_pkid_t query_packed_root(const query_packed_t *pk)
{
    return (query_pkid_t){SYM_ROOT, pk->root_total, pk->root_self, 0, (uint32_t)pk->len};
}

int query_packed_kids(const query_packed_t *pk, query_pkid_t node, query_pkid_t **kids, size_t *cap,
                      size_t *n)
{
    int v5 = pk->version == QUERY_FOREST_V5;
    if (node.off >= node.end || node.end > pk->len) return ERR_CORRUPT;
    const uint8_t *p = pk->rec + node.off, *end = pk->rec + node.end;
    uint64_t idx, total, self, desc;
    if (!get_rec(v5, &p, end, (uint64_t)node.total, &idx, &total, &self, &desc) || p + desc != end)
        return ERR_CORRUPT;
    uint64_t sum = 0, left = (uint64_t)(node.total - node.self);
    while (p < end) {
        uint32_t koff = (uint32_t)(p - pk->rec);
        uint64_t ki, kt, ks, kd;
        if (!get_rec(v5, &p, end, left - sum, &ki, &kt, &ks, &kd) || kt == 0 || ki >= pk->nsyms)
            return ERR_CORRUPT;
        if (*n == *cap && GROW_FROM(*kids, *cap, *n + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
        p += kd;
        (*kids)[(*n)++] =
            (query_pkid_t){pk->dict[ki], (int64_t)kt, (int64_t)ks, koff, (uint32_t)(p - pk->rec)};
        sum += kt; /* each at most INT64_MAX, and checked below the node's: no wrap */
        if (sum > left) return ERR_CORRUPT;
    }
    return sum == left ? 0 : ERR_CORRUPT;
}

void query_packed_free(query_packed_t *pk)
{
    free(pk->own);
    free(pk->dict);
    memset(pk, 0, sizeof *pk);
}

size_t query_packed_bytes(const query_packed_t *pk)
{
    return (pk->own != NULL ? pk->len : pk->lent) + pk->nsyms * sizeof *pk->dict;
}

/* The records of an encoding-4 (or 5, v5) forest into f (f->n of them, from p to the
 * end of the root's bytes, *pp after): a node's id is its place in
 * pre-order, its parent the innermost open node whose bytes hold it (a
 * stack of at most CALLTREE_MAX_DEPTH), and each node's shipped total is
 * checked to be its self plus its kids' (kidsum). sym[] holds dictionary
 * indices until v4_link. */
static int read_nodes_v4(int v5, const uint8_t **pp, const uint8_t *end, storage_merged_tab_t *f,
                         uint32_t *stk, const uint8_t **stk_end, uint64_t *kidsum)
{
    const uint8_t *p = *pp;
    uint64_t idx, total, self, desc;
    size_t top = 0; /* stack entries */
    for (size_t i = 0; i < f->n; i++) {
        while (top > 0 && p == stk_end[top - 1])
            top--;
        if (i > 0 && top == 0) return ERR_CORRUPT; /* nodes past the root's bytes */
        const uint8_t *lim = top > 0 ? stk_end[top - 1] : end;
        uint32_t par = top > 0 ? stk[top - 1] : 0;
        uint64_t left = i > 0 ? (uint64_t)(f->total[par] - f->self[par]) - kidsum[par] : 0;
        if (!get_rec(v5, &p, lim, left, &idx, &total, &self, &desc) || (i > 0 && total == 0))
            return ERR_CORRUPT;
        f->sym[i] = idx;
        f->self[i] = (int64_t)self;
        f->total[i] = (int64_t)total;
        kidsum[i] = 0;
        if (i > 0) {
            f->parent[i] = par;
            kidsum[par] += total; /* checked below: no wrap */
            if (kidsum[par] > (uint64_t)(f->total[par] - f->self[par])) return ERR_CORRUPT;
        }
        if (desc > 0) {
            if (top >= CALLTREE_MAX_DEPTH) return ERR_CORRUPT;
            stk[top] = (uint32_t)i;
            stk_end[top++] = p + desc;
        }
    }
    for (size_t k = 0; k < top; k++) /* every open node's bytes end here */
        if (stk_end[k] != p) return ERR_CORRUPT;
    for (size_t i = 0; i < f->n; i++)
        if (kidsum[i] != (uint64_t)(f->total[i] - f->self[i])) return ERR_CORRUPT;
    *pp = p;
    return 0;
}

/* Symbol ids from the dictionary and the kid lists (ascending) of a
 * forest read_nodes_v4 filled; the root's symbol must be SYM_ROOT. */
static int v4_link(storage_merged_tab_t *f, const uint64_t *dict, size_t nsyms)
{
    memset(f->first_kid, 0xff, f->n * sizeof *f->first_kid); /* STORAGE_NO_KID */
    f->next_sib[0] = STORAGE_NO_KID;
    for (size_t i = f->n; i-- > 0;) {
        if (f->sym[i] >= nsyms) return ERR_CORRUPT;
        f->sym[i] = dict[f->sym[i]];
        if (i == 0) break;
        uint32_t par = f->parent[i];
        f->next_sib[i] = f->first_kid[par];
        f->first_kid[par] = (uint32_t)i;
    }
    return f->sym[0] != SYM_ROOT ? ERR_CORRUPT : 0;
}

/* The n records of an encoding-4 (or 5, v5) forest at *pp into out
 * (allocated; the caller frees it on error), *pp after them. */
static int v4_records(int v5, const uint8_t **pp, const uint8_t *end, size_t n,
                      storage_merged_tab_t *out)
{
    size_t deep = n < CALLTREE_MAX_DEPTH ? n : CALLTREE_MAX_DEPTH;
    uint32_t *stk = malloc(deep * sizeof *stk);
    const uint8_t **stk_end = malloc(deep * sizeof *stk_end);
    uint64_t *kidsum = malloc(n * sizeof *kidsum);
    int rc = forest_alloc(out, n);
    if (rc == 0 && (stk == NULL || stk_end == NULL || kidsum == NULL)) rc = ERR_NOMEM;
    if (rc == 0) rc = read_nodes_v4(v5, pp, end, out, stk, stk_end, kidsum);
    free(stk);
    free(stk_end);
    free(kidsum);
    return rc;
}

/* A whole forest of encoding 4 (or 5, v5; p after its version byte). */
static int decode_v4(int v5, const uint8_t *p, const uint8_t *end, size_t max_nodes,
                     storage_merged_tab_t *out)
{
    uint64_t n;
    if (!varint_read_u(&p, end, &n) || n == 0 || n > (uint64_t)(end - p) / (v5 ? 1 : 3) ||
        n > UINT32_MAX)
        return ERR_CORRUPT;
    if (max_nodes != 0 && n > max_nodes) return ERR_LIMIT;
    uint64_t *dict = NULL;
    size_t nsyms = 0;
    int rc = v4_records(v5, &p, end, (size_t)n, out);
    if (rc == 0) rc = read_dict_ids(p, end, &dict, &nsyms);
    if (rc == 0) rc = v4_link(out, dict, nsyms);
    free(dict);
    if (rc != 0) query_forest_free(out);
    out->nonneg = rc == 0;
    return rc;
}

int query_packed_decode(const query_packed_t *pk, storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = pk->rec, *end = pk->rec + pk->len;
    int rc = v4_records(pk->version == QUERY_FOREST_V5, &p, end, pk->nodes, out);
    if (rc == 0 && p != end) rc = ERR_CORRUPT; /* fewer nodes than the header said */
    if (rc == 0) rc = v4_link(out, pk->dict, pk->nsyms);
    if (rc != 0) query_forest_free(out);
    out->nonneg = rc == 0;
    return rc;
}
