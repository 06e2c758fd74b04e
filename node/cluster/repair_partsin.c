/* repair_partsin.c — a streamed window that travels in parts, put together
 * in memory on the receiver (repair_int.h; docs/cluster.md, "Streaming whole
 * windows"): the pieces of its residual tree merged, the symbols of every
 * part, the slices of its kept and untreed lists appended in order, and a
 * symbol too large for one part gathered from its pieces. Only the wire
 * messages and this state: repair_stream.c decides when a window starts,
 * restarts or is taken (and tests/fuzz/fuzz_stream_parts.c drives it the same
 * way with hostile parts).
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "node/cluster/repair_int.h"

void repair_partsin_drop(repair_partsin_t *p)
{
    calltree_free(p->tree);
    symtab_free(p->syms);
    free(p->kept);
    free(p->untreed);
    free(p->piece);
    free(p->path);
    unsigned restarts = p->restarts;
    int over = p->over;
    memset(p, 0, sizeof *p);
    p->restarts = restarts;
    p->over = over;
}

int repair_partsin_follows(const repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m)
{
    return m->part == p->next && (p->next == 0 || (m->digest == p->digest && m->parts == p->parts));
}

int repair_partsin_start(repair_partsin_t *p, uint64_t digest, size_t max_tree_nodes,
                         size_t max_bytes)
{
    p->tree = calltree_new(max_tree_nodes);
    p->syms = symtab_new();
    p->digest = digest;
    p->max_bytes = max_bytes;
    p->over = 0;
    return p->tree != NULL && p->syms != NULL ? 0 : ERR_NOMEM;
}

/* What part m (of answer a) adds to what p holds besides its tree. */
static size_t part_bytes(const repair_partsin_t *p, const Flamedb__Cluster__RepairAnswer *a,
                         const Flamedb__Cluster__StreamWindow *m)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_symbols; i++)
        n += REPAIR_PARTSIN_SYMBOL_BYTES + a->symbols[i]->name.len + a->symbols[i]->file.len;
    if (m->profile_slices) n += (m->n_kept + m->n_untreed) * sizeof *p->kept;
    for (size_t i = 0; i < m->n_pieces; i++) /* a symbol's first piece: all of it */
        if (m->pieces[i]->offset == 0)
            n += REPAIR_PARTSIN_SYMBOL_BYTES + (size_t)m->pieces[i]->name_len +
                 m->pieces[i]->file_len;
    return n;
}

int repair_symbols_put(const Flamedb__Cluster__RepairAnswer *a, symtab_t *tab)
{
    for (size_t i = 0; i < a->n_symbols; i++) {
        const Flamedb__Cluster__Symbol *y = a->symbols[i];
        int rc = symtab_put(tab, y->id, (const char *)y->name.data, y->name.len,
                            (const char *)y->file.data, y->file.len);
        if (rc != 0) return rc;
    }
    return 0;
}

/* m's slices of the lists appended to p's. */
static int add_slices(repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m)
{
    int rc = GROW(p->kept, p->kept_cap, p->nkept + m->n_kept + 1, GROW_UNLIMITED);
    if (rc == 0)
        rc = GROW(p->untreed, p->untreed_cap, p->nuntreed + m->n_untreed + 1, GROW_UNLIMITED);
    if (rc != 0) return rc;
    if (m->n_untreed_totals != m->n_untreed) return ERR_CORRUPT;
    for (size_t i = 0; i < m->n_kept; i++) {
        storage_stream_profile_t *e = &p->kept[p->nkept++];
        if (m->kept[i]->profile_id.len != 16) return ERR_CORRUPT;
        memcpy(e->profile_id, m->kept[i]->profile_id.data, 16);
        e->time_ns = m->kept[i]->time_ns;
        e->total = 0;
    }
    for (size_t i = 0; i < m->n_untreed; i++) {
        storage_stream_profile_t *e = &p->untreed[p->nuntreed++];
        if (m->untreed[i]->profile_id.len != 16) return ERR_CORRUPT;
        memcpy(e->profile_id, m->untreed[i]->profile_id.data, 16);
        e->time_ns = m->untreed[i]->time_ns;
        e->total = m->untreed_totals[i];
    }
    return 0;
}

/* m's pieces of a symbol added to p's; the symbol into p->syms once whole. */
static int add_pieces(repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m)
{
    for (size_t i = 0; i < m->n_pieces; i++) {
        const Flamedb__Cluster__SymbolPiece *sp = m->pieces[i];
        size_t total = (size_t)sp->name_len + sp->file_len;
        if (sp->offset == 0) {
            free(p->piece);
            p->piece_have = 0;
            p->piece_total = total;
            p->piece = total <= STREAM_PIECES_MAX ? malloc(total ? total : 1) : NULL;
            if (p->piece == NULL) return total <= STREAM_PIECES_MAX ? ERR_NOMEM : ERR_CORRUPT;
        }
        if (p->piece == NULL || sp->offset != p->piece_have || total != p->piece_total ||
            sp->data.len > total - p->piece_have)
            return ERR_CORRUPT; /* out of order: the parts are asked for again */
        if (sp->data.len > 0)   /* data is NULL when the field is absent */
            memcpy(p->piece + p->piece_have, sp->data.data, sp->data.len);
        p->piece_have += sp->data.len;
        if (p->piece_have < total) continue;
        int rc = symtab_put(p->syms, sp->id, (const char *)p->piece, sp->name_len,
                            (const char *)p->piece + sp->name_len, sp->file_len);
        free(p->piece);
        p->piece = NULL;
        p->piece_have = p->piece_total = 0;
        if (rc != 0) return rc;
    }
    return 0;
}

/* m's piece of the tree merged into p's, rooted at the node anchor_depth
 * deep on the path of the previous part's last node (the root at 0); that
 * path then ends at m's last node. Values are added only once every node
 * is placed, so ERR_LIMIT leaves the tree's values exact. */
static int merge_tree(repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m)
{
    calltree_records_t r;
    int rc = calltree_decode_records(m->calltree.data, m->calltree.len, 0, &r);
    if (rc != 0) return rc;
    size_t a = m->anchor_depth;
    if (p->path_len == 0) p->path_len = 1;  /* the root */
    if (a >= p->path_len) rc = ERR_CORRUPT; /* not on the previous part's path */
    uint32_t *nodes = malloc((r.n ? r.n : 1) * sizeof *nodes);
    if (rc == 0 && nodes == NULL) rc = ERR_NOMEM;
    if (rc == 0) rc = GROW(p->path, p->path_cap, a + r.n + 1, GROW_UNLIMITED);
    if (rc == 0) p->path[0] = 0;
    uint32_t base = rc == 0 ? p->path[a] : 0;
    size_t last = 0;
    for (size_t i = 0; rc == 0 && i < r.n; i++) {
        size_t d = a + r.depth[i]; /* records start at depth 1 and climb one at a time */
        rc = calltree_child(p->tree, p->path[d - 1], r.sym[i], &nodes[i]);
        p->path[d] = nodes[i];
        last = d;
    }
    for (size_t i = 0; rc == 0 && i < r.n; i++)
        if (r.self[i] != 0) calltree_add_self(p->tree, nodes[i], r.self[i]);
    if (rc == 0 && r.root_self != 0) calltree_add_self(p->tree, base, r.root_self);
    if (rc == 0 && r.n > 0) p->path_len = last + 1;
    free(nodes);
    calltree_records_free(&r);
    return rc;
}

int repair_partsin_add(repair_partsin_t *p, const Flamedb__Cluster__RepairAnswer *a,
                       const Flamedb__Cluster__StreamWindow *m)
{
    if (p->next == 0) p->parts = m->parts;
    size_t add = part_bytes(p, a, m);
    if (p->max_bytes != 0 && (add > p->max_bytes || p->bytes > p->max_bytes - add)) {
        p->over = 1;
        p->bytes += add; /* what it would have held, for the error */
        return ERR_LIMIT;
    }
    p->bytes += add;
    int rc = merge_tree(p, m);
    if (rc == 0) rc = repair_symbols_put(a, p->syms);
    if (rc == 0 && m->profile_slices) rc = add_slices(p, m);
    if (rc == 0 && m->n_pieces > 0) rc = add_pieces(p, m);
    return rc;
}

int repair_partsin_sliced(const repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m,
                          repair_sliced_t *out)
{
    memset(out, 0, sizeof *out);
    size_t n = p->nkept + p->nuntreed;
    out->e = calloc(n ? n : 1, sizeof *out->e);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    out->totals = calloc(p->nuntreed ? p->nuntreed : 1, sizeof *out->totals);
    if (out->e == NULL || out->v == NULL || out->totals == NULL) {
        repair_sliced_free(out);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const storage_stream_profile_t *x = i < p->nkept ? &p->kept[i] : &p->untreed[i - p->nkept];
        Flamedb__Cluster__SeenEntry *e = &out->e[i];
        flamedb__cluster__seen_entry__init(e);
        e->tenant = m->tenant;
        e->token = m->token;
        e->series_id = m->series_id;
        e->profile_id = (ProtobufCBinaryData){16, (uint8_t *)x->profile_id};
        e->time_ns = x->time_ns;
        out->v[i] = e;
        if (i >= p->nkept) out->totals[i - p->nkept] = x->total;
    }
    out->w = *m;
    out->w.kept = out->v;
    out->w.n_kept = p->nkept;
    out->w.untreed = out->v + p->nkept;
    out->w.n_untreed = out->w.n_untreed_totals = p->nuntreed;
    out->w.untreed_totals = out->totals;
    return 0;
}

void repair_sliced_free(repair_sliced_t *s)
{
    free(s->e);
    free(s->v);
    free(s->totals);
    memset(s, 0, sizeof *s);
}
