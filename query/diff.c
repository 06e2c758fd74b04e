/* diff.c — render-diff: two merged trees in, one flamebearer of format
 * "double" out (query.h, docs/api.md "render-diff").
 *
 * Each side is rendered through scatter-gather with merged_tree set: its
 * gather hands over the whole merged tree and its symbols (query_encode_tree
 * below), so both sides are exact, whichever nodes answered. Here the two
 * trees are joined into their union, truncated jointly, and laid out side by
 * side: every node has a left and a right total and self (0 where a stack
 * is on one side only), and each side's x offsets are computed from that
 * side's own widths.
 *
 * Joint truncation: a node's weight is its share of the left total plus its
 * share of the right total (so a frame that matters on either side stays);
 * query_truncate picks the kept shape by those weights (ties on content), and
 * the hidden children of a kept node fold into one `other` child per side.
 * Every kept node's totals and both root totals are unchanged.
 *
 * format=svg draws the same joined shape with svg.c's layout: widths are the
 * right side's (the "after", as flamegraph.pl draws difffolded
 * output), each frame colored by the change of its share of its side's
 * total (diff_color). format=folded writes `stack left right` lines.
 * format=speedscope writes two sampled profiles (left, right) over the
 * shape's one frames table (speedscope.c). A large answer of any format is
 * a stream holding the shape, its names and what it needs of both sides
 * (the double flamebearer: dstream_t, written level by level; the SVG: a
 * dpaint_t colouring handed to svg.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/varint.h"
#include "query/query_int.h"

#define TREE_MAGIC "FDT1"
/* weights are shares scaled to integers: 2^40 per side keeps 12 digits */
#define SHARE_SCALE 1099511627776.0

/* ---------- one side's merged tree, as the gather hands it over ---------- */

typedef struct emit_ctx {
    const symtab_t *syms;
    buf_t *out;
    size_t n;
} emit_ctx_t;

static int count_symbol(void *ctx, uint64_t id)
{
    ((emit_ctx_t *)ctx)->n++;
    return 0;
}

static int write_symbol(void *ctx, uint64_t id)
{
    emit_ctx_t *c = ctx;
    const char *name = "", *file = "";
    if (id != SYM_ROOT && id != SYM_OTHER) symtab_get(c->syms, id, &name, &file);
    size_t nl = strlen(name), fl = file ? strlen(file) : 0;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(id >> (8 * i));
    int rc = buf_append(c->out, le, 8);
    if (rc == 0) rc = buf_append_uvarint(c->out, nl);
    if (rc == 0) rc = buf_append(c->out, name, nl);
    if (rc == 0) rc = buf_append_uvarint(c->out, fl);
    if (rc == 0 && fl) rc = buf_append(c->out, file, fl);
    return rc;
}

int query_encode_tree(const calltree_t *t, const symtab_t *syms, buf_t *out)
{
    /* the tree is encoded in place and its length put before it: no copy
     * of it is held beside the answer */
    emit_ctx_t c = {syms, out, 0};
    int rc = buf_append(out, TREE_MAGIC, 4);
    size_t at = out->len;
    if (rc == 0) rc = calltree_encode(t, out);
    uint8_t len[10];
    size_t tlen = out->len - at, k = varint_put_u(len, tlen);
    if (rc == 0) rc = buf_reserve(out, k);
    if (rc == 0) {
        memmove(out->data + at + k, out->data + at, tlen);
        memcpy(out->data + at, len, k);
        out->len += k;
        out->data[out->len] = 0;
    }
    if (rc == 0) rc = calltree_for_each_symbol(t, count_symbol, &c);
    if (rc == 0) rc = buf_append_uvarint(out, c.n);
    if (rc == 0) rc = calltree_for_each_symbol(t, write_symbol, &c);
    return rc;
}

static int get_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n)
{
    uint64_t len;
    if (!varint_read_u(p, end, &len) || len > (uint64_t)(end - *p)) return ERR_CORRUPT;
    *s = *p;
    *n = (size_t)len;
    *p += len;
    return 0;
}

static int charge_take(const query_report_charge_t *c, size_t n)
{
    if (c == NULL || c->take == NULL || n == 0) return 0;
    int rc = c->take(c->ctx, n);
    return rc == 0 ? 0 : rc == ERR_TOO_LARGE ? ERR_TOO_LARGE : ERR_UNAVAILABLE;
}

static void charge_give(const query_report_charge_t *c, size_t n)
{
    if (c != NULL && c->take != NULL && c->give != NULL && n > 0) c->give(c->ctx, n);
}

/* Merges the encoded tree p[0..n) into t, its decoder's scratch charged. */
static int decode_tree(const uint8_t *p, size_t n, calltree_t *t,
                       const query_report_charge_t *charge)
{
    const uint8_t *dict;
    size_t ndict, nnodes;
    int rc = calltree_encoded_header(p, n, &dict, &ndict, &nnodes);
    size_t scratch = rc == 0 ? calltree_decode_scratch_bytes(ndict, nnodes) : 0;
    if (rc == 0) rc = charge_take(charge, scratch);
    if (rc != 0) return rc;
    if (charge != NULL) { /* t's room for the records, charged before it is made */
        size_t was = calltree_mem_bytes(t), most = calltree_reserve_decode_bytes(t, nnodes, ndict);
        int took = (rc = charge_take(charge, most)) == 0;
        if (took) rc = calltree_reserve_decode(t, nnodes, ndict);
        size_t grew = calltree_mem_bytes(t) - was; /* stays charged: the caller's */
        if (took) charge_give(charge, most > grew ? most - grew : 0);
    }
    if (rc == 0) rc = calltree_decode_merge(t, p, n);
    charge_give(charge, scratch);
    return rc;
}

/* Puts one symbol into syms, what syms may grow by charged before and
 * what it did not grow by given back after. */
static int put_symbol(symtab_t *syms, uint64_t id, const uint8_t *name, size_t nl,
                      const uint8_t *file, size_t fl, const query_report_charge_t *charge)
{
    size_t was = symtab_mem_bytes(syms), rise = charge != NULL ? symtab_put_bytes(syms, nl, fl) : 0;
    int rc = charge_take(charge, rise);
    if (rc != 0) return rc;
    rc = symtab_put(syms, id, (const char *)name, nl, (const char *)file, fl);
    size_t grew = symtab_mem_bytes(syms) - was;
    charge_give(charge, rise > grew ? rise - grew : 0);
    return rc;
}

int query_tree_decode_charged(const uint8_t *p, size_t n, calltree_t *t, symtab_t *syms,
                              const query_report_charge_t *charge)
{
    const uint8_t *end = p + n, *tree;
    size_t tlen;
    if (n < 4 || memcmp(p, TREE_MAGIC, 4) != 0) return ERR_CORRUPT;
    p += 4;
    int rc = get_bytes(&p, end, &tree, &tlen);
    if (rc == 0) rc = decode_tree(tree, tlen, t, charge);
    uint64_t nsyms;
    if (rc == 0 && !varint_read_u(&p, end, &nsyms)) rc = ERR_CORRUPT;
    for (uint64_t i = 0; rc == 0 && i < nsyms; i++) {
        const uint8_t *name, *file;
        size_t nl, fl;
        if (end - p < 8) return ERR_CORRUPT;
        uint64_t id = 0;
        for (int k = 0; k < 8; k++)
            id |= (uint64_t)p[k] << (8 * k);
        p += 8;
        rc = get_bytes(&p, end, &name, &nl);
        if (rc == 0) rc = get_bytes(&p, end, &file, &fl);
        if (rc == 0 && id != SYM_ROOT && id != SYM_OTHER)
            rc = put_symbol(syms, id, name, nl, file, fl, charge);
    }
    return rc;
}

/* Decodes one side into t (merged) and its symbols into syms. */
int query_tree_decode(const uint8_t *p, size_t n, calltree_t *t, symtab_t *syms)
{
    return query_tree_decode_charged(p, n, t, syms, NULL);
}

/* ---------- the union of both trees ---------- */

typedef struct sides {
    int64_t *ls, *rs; /* self per union node */
    int64_t *lt, *rt; /* total per union node */
    size_t cap;
} sides_t;

static void sides_free(sides_t *s)
{
    free(s->ls);
    free(s->rs);
    free(s->lt);
    free(s->rt);
}

static int sides_reserve(sides_t *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t c1 = s->cap, c2 = s->cap, c3 = s->cap, c4 = s->cap;
    int rc = GROW(s->ls, c1, n, GROW_UNLIMITED);
    if (rc == 0) rc = GROW(s->rs, c2, n, GROW_UNLIMITED);
    if (rc == 0) rc = GROW(s->lt, c3, n, GROW_UNLIMITED);
    if (rc == 0) rc = GROW(s->rt, c4, n, GROW_UNLIMITED);
    if (rc != 0) return rc;
    memset(s->ls + s->cap, 0, (c1 - s->cap) * sizeof *s->ls);
    memset(s->rs + s->cap, 0, (c1 - s->cap) * sizeof *s->rs);
    s->cap = c1;
    return 0;
}

/* Makes each of s's arrays exactly n long, one after the other (at most
 * one array's old block beside its new one), the selves past the old
 * length zero. */
static int sides_exact(sides_t *s, size_t n)
{
    int64_t **arr[4] = {&s->ls, &s->rs, &s->lt, &s->rt};
    for (int k = 0; k < 4; k++) {
        int64_t *p = realloc(*arr[k], (n ? n : 1) * sizeof *p);
        if (p == NULL) return ERR_NOMEM;
        *arr[k] = p;
    }
    if (n > s->cap) {
        memset(s->ls + s->cap, 0, (n - s->cap) * sizeof *s->ls);
        memset(s->rs + s->cap, 0, (n - s->cap) * sizeof *s->rs);
    }
    s->cap = n;
    return 0;
}

/* The left side's selves per union node, taken once the left side alone is
 * decoded into u (its first nodes): the right side, merged into u after,
 * leaves those nodes' ids as they were. */
static int left_selves(const calltree_t *u, sides_t *s)
{
    size_t n = calltree_node_count(u);
    const int64_t *self = calltree_selves(u);
    int rc = self != NULL ? sides_exact(s, n) : ERR_NOMEM;
    if (rc == 0) memcpy(s->ls, self, n * sizeof *s->ls);
    return rc;
}

/* The right side's selves: what u holds past the left side's (wrapping, as
 * values add), once both sides are merged into u. */
static int right_selves(const calltree_t *u, sides_t *s)
{
    size_t n = calltree_node_count(u);
    const int64_t *self = calltree_selves(u);
    int rc = self != NULL ? sides_exact(s, n) : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        s->rs[i] = (int64_t)((uint64_t)self[i] - (uint64_t)s->ls[i]);
    return rc;
}

static void totals(const calltree_t *u, sides_t *s)
{
    size_t n = calltree_node_count(u);
    memcpy(s->lt, s->ls, n * sizeof *s->lt);
    memcpy(s->rt, s->rs, n * sizeof *s->rt);
    for (size_t i = n; i-- > 1;) {
        uint32_t p = calltree_parent(u, (uint32_t)i);
        s->lt[p] += s->lt[i];
        s->rt[p] += s->rt[i];
    }
}

/* ---------- joint truncation ---------- */

static int64_t share(int64_t v, int64_t whole)
{
    if (whole == 0) return 0;
    double r = (double)v / (double)whole;
    return (int64_t)((r < 0 ? -r : r) * SHARE_SCALE + 0.5);
}

/* keep[u] = 1 for the union nodes that stay (all when nothing is cut). u's
 * own values (both sides' sum, which s holds apart) become the weights the
 * truncation reads: no copy of the union is made for them. */
static int choose_kept(calltree_t *u, const sides_t *s, size_t max_nodes, uint8_t *keep)
{
    size_t n = calltree_node_count(u);
    if (max_nodes == 0 || n <= max_nodes) {
        memset(keep, 1, n);
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        int64_t w = share(s->ls[i], s->lt[0]) + share(s->rs[i], s->rt[0]);
        calltree_add_self(u, i, (int64_t)((uint64_t)w - (uint64_t)calltree_self(u, i)));
    }
    calltree_t *kept = NULL;
    int rc = query_truncate(u, max_nodes, &kept);
    if (rc != 0) return rc;
    /* walk the kept shape and the union together, matching children by symbol */
    size_t kn = calltree_node_count(kept);
    uint32_t *to_u = malloc(kn * sizeof *to_u);
    if (to_u == NULL) {
        calltree_free(kept);
        return ERR_NOMEM;
    }
    memset(keep, 0, n);
    keep[0] = 1;
    to_u[0] = 0;
    for (uint32_t k = 1; k < kn; k++) { /* parents before children here too */
        uint64_t sym = calltree_sym(kept, k);
        uint32_t up = to_u[calltree_parent(kept, k)], c = CALLTREE_NONE;
        if (sym != SYM_OTHER && up != CALLTREE_NONE)
            for (c = calltree_first_child(u, up); c != CALLTREE_NONE && calltree_sym(u, c) != sym;
                 c = calltree_next_sibling(u, c))
                ;
        to_u[k] = c; /* `other` maps to nothing: what it holds is not kept */
        if (c != CALLTREE_NONE) keep[c] = 1;
    }
    free(to_u);
    calltree_free(kept);
    return 0;
}

/* The output shape d (kept nodes, plus one `other` per parent with hidden
 * children: at most most nodes, made room for at once) and its per-side
 * selves, then totals. */
static int build_shape(const calltree_t *u, const sides_t *s, const uint8_t *keep, size_t most,
                       calltree_t *d, sides_t *ds)
{
    size_t n = calltree_node_count(u);
    uint32_t *map = malloc(n * sizeof *map);
    if (map == NULL) return ERR_NOMEM;
    int rc = calltree_reserve(d, most);
    if (rc == 0) rc = sides_exact(ds, most);
    map[0] = 0;
    if (rc == 0) {
        ds->ls[0] = s->ls[0];
        ds->rs[0] = s->rs[0];
    }
    for (uint32_t i = 1; rc == 0 && i < n; i++) {
        uint32_t p = map[calltree_parent(u, i)], at;
        uint64_t sym = keep[i] ? calltree_sym(u, i) : SYM_OTHER;
        if (!keep[calltree_parent(u, i)]) { /* inside a hidden subtree: counted already */
            map[i] = p;
            continue;
        }
        rc = calltree_child(d, p, sym, &at);
        if (rc == 0) rc = sides_reserve(ds, calltree_node_count(d));
        if (rc != 0) break;
        map[i] = at;
        /* a kept node brings its selves; a hidden one its whole subtree */
        ds->ls[at] += keep[i] ? s->ls[i] : s->lt[i];
        ds->rs[at] += keep[i] ? s->rs[i] : s->rt[i];
    }
    free(map);
    if (rc == 0) totals(d, ds);
    return rc;
}

/* ---------- the double flamebearer ---------- */

typedef struct dlevel {
    buf_t text;           /* first: query_write_flamebearer reads it there */
    int64_t lprev, rprev; /* end of the previous node in this row, per side */
} dlevel_t;

typedef struct dfb {
    const sorted_tree_t *st;
    const sides_t *s;
    strmap_t names;
    dlevel_t *lv;
    size_t nlv, caplv, bytes, max_bytes;
    int64_t max_self;
    buf_t *out;    /* the answer: this working memory is held beside it (buf_beside_take) */
    size_t held;   /* taken beside out */
    size_t tables; /* of held: the name table and the level array, as last measured */
} dfb_t;

typedef struct dframe {
    uint32_t node, depth;
    int64_t lx, rx;
} dframe_t;

/* Pushes f's children on stack (from sp on, the first child on top), each
 * at its x on both sides: after f's own self width and its earlier
 * siblings' totals. Returns the new top. */
static size_t dpush_kids(const sorted_tree_t *st, const sides_t *s, const dframe_t *f,
                         dframe_t *stack, size_t sp)
{
    int64_t lx = f->lx + s->ls[f->node], rx = f->rx + s->rs[f->node];
    uint32_t a = st->off[f->node], b = st->off[f->node + 1];
    for (uint32_t k = a; k < b; k++) {
        lx += s->lt[st->kids[k]];
        rx += s->rt[st->kids[k]];
    }
    for (uint32_t k = b; k > a; k--) {
        uint32_t c = st->kids[k - 1];
        lx -= s->lt[c];
        rx -= s->rt[c];
        stack[sp++] = (dframe_t){c, f->depth + 1, lx, rx};
    }
    return sp;
}

/* Takes n bytes beside the answer before they are allocated. */
static int dfb_take(dfb_t *fb, size_t n)
{
    int rc = buf_beside_take(fb->out, n);
    if (rc == 0) fb->held += n;
    return rc;
}

static void dfb_give(dfb_t *fb, size_t n)
{
    buf_beside_give(fb->out, n);
    fb->held -= n;
}

/* The name table and the level array, measured after they grew (by
 * doubling, a few dozen times a diff), held beside the answer. */
static int dfb_tables(dfb_t *fb)
{
    size_t now = fb->names.cap * sizeof *fb->names.slots +
                 fb->names.strs_cap * (sizeof *fb->names.strs + sizeof *fb->names.lens) +
                 fb->caplv * sizeof *fb->lv;
    if (now < fb->tables) dfb_give(fb, fb->tables - now);
    if (now > fb->tables && dfb_take(fb, now - fb->tables) != 0) return ERR_UNAVAILABLE;
    fb->tables = now;
    return 0;
}

static int dlevel_at(dfb_t *fb, size_t d, dlevel_t **out)
{
    while (d >= fb->nlv) {
        if (GROW_FROM(fb->lv, fb->caplv, fb->nlv + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
        buf_init(&fb->lv[fb->nlv].text, fb->max_bytes);
        fb->lv[fb->nlv].lprev = fb->lv[fb->nlv].rprev = 0;
        fb->nlv++;
        if (dfb_tables(fb) != 0) return ERR_UNAVAILABLE;
    }
    *out = &fb->lv[d];
    return 0;
}

/* Room for a node's seven numbers in its level's text, its old and new
 * storage taken beside the answer first (realloc may copy), then its new
 * capacity held. Near the body cap the appends decide. */
static int dlevel_reserve(dfb_t *fb, dlevel_t *lv)
{
    buf_t *b = &lv->text;
    size_t n = 7 * 24; /* a comma and up to 20 digits and a sign each */
    if (n > b->max || b->len > b->max - n) return 0;
    size_t old = b->cap, cap = buf_reserved_cap(b, n);
    if (cap == old) return 0;
    int rc = dfb_take(fb, cap);
    if (rc != 0) return rc;
    rc = buf_reserve(b, n);
    dfb_give(fb, rc == 0 ? old : cap);
    return rc;
}

static int demit(dfb_t *fb, const dframe_t *f)
{
    const sides_t *s = fb->s;
    uint32_t i = f->node, idx;
    const char *name = i == 0 ? "total" : fb->st->name[i];
    dlevel_t *lv;
    size_t was = fb->names.n;
    int rc = strmap_intern(&fb->names, name, strlen(name), &idx);
    if (rc == 0 && fb->names.n != was) rc = dfb_tables(fb);
    if (rc == 0) rc = dlevel_at(fb, f->depth, &lv);
    if (rc == 0) rc = dlevel_reserve(fb, lv);
    if (rc != 0) return rc;
    size_t before = lv->text.len;
    int64_t v[7] = {f->lx - lv->lprev, s->lt[i], s->ls[i],    f->rx - lv->rprev,
                    s->rt[i],          s->rs[i], (int64_t)idx};
    for (int k = 0; rc == 0 && k < 7; k++) {
        if (before || k) rc = buf_append_byte(&lv->text, ',');
        if (rc == 0) rc = buf_append_i64(&lv->text, v[k]);
    }
    if (rc != 0) return rc;
    fb->bytes += lv->text.len - before;
    if (fb->bytes > fb->max_bytes) return ERR_TOO_LARGE;
    lv->lprev = f->lx + s->lt[i];
    lv->rprev = f->rx + s->rt[i];
    if (s->ls[i] > fb->max_self) fb->max_self = s->ls[i];
    if (s->rs[i] > fb->max_self) fb->max_self = s->rs[i];
    return 0;
}

/* Preorder, children by name; on each side a node's children start after
 * its own self width, as in a render. */
static int dwalk(dfb_t *fb)
{
    const sorted_tree_t *st = fb->st;
    const sides_t *s = fb->s;
    int rc = dfb_take(fb, st->n * sizeof(dframe_t));
    if (rc != 0) return rc;
    dframe_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) {
        dfb_give(fb, st->n * sizeof(dframe_t));
        return ERR_NOMEM;
    }
    size_t sp = 0;
    stack[sp++] = (dframe_t){0, 0, 0, 0};
    while (sp > 0 && rc == 0) {
        dframe_t f = stack[--sp];
        rc = demit(fb, &f);
        sp = dpush_kids(st, s, &f, stack, sp);
    }
    free(stack);
    dfb_give(fb, st->n * sizeof(dframe_t));
    return rc;
}

static int write_double(dfb_t *fb, const char *profile_type, const char *partial_json, buf_t *out)
{
    const sides_t *s = fb->s;
    int rc = buf_append_str(out, "{\"version\":1,");
    if (rc == 0)
        rc = query_write_flamebearer(out, fb->names.strs, fb->names.lens, fb->names.n, fb->lv,
                                     fb->nlv, sizeof *fb->lv, s->lt[0] + s->rt[0], fb->max_self);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = query_write_metadata(out, "double", profile_type, NULL);
    if (rc == 0)
        rc = buf_printf(out, ",\"leftTicks\":%lld,\"rightTicks\":%lld,\"timeline\":null",
                        (long long)s->lt[0], (long long)s->rt[0]);
    if (rc == 0 && partial_json != NULL) {
        rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_str(out, partial_json);
    }
    return rc != 0 ? rc : buf_append_byte(out, '}');
}

static int encode_double(const calltree_t *d, const sides_t *s, const symtab_t *syms,
                         const char *profile_type, const char *partial_json, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, d, syms, out); /* held beside the answer */
    if (rc != 0) return rc;
    dfb_t fb = {.st = &st, .s = s, .max_bytes = out->max, .out = out};
    strmap_init(&fb.names);
    rc = dwalk(&fb);
    if (rc == 0) rc = write_double(&fb, profile_type, partial_json, out);
    for (size_t i = 0; i < fb.nlv; i++)
        buf_free(&fb.lv[i].text);
    free(fb.lv);
    strmap_free(&fb.names);
    dfb_give(&fb, fb.held); /* all of it freed */
    query_sorted_tree_free(&st);
    return rc;
}

/* ---------- the double flamebearer as a stream ---------- */

enum { DS_HEAD, DS_NAMES, DS_LEVELS_HEAD, DS_LEVELS, DS_TAIL, DS_DONE };

typedef struct dstream {
    calltree_t *shape; /* owned, with syms: what st reads */
    symtab_t *syms;
    sorted_tree_t st;
    sides_t s;            /* owned: per node of the shape */
    strmap_t names;       /* interned in the walk's order, as dwalk does */
    int64_t *lx, *rx;     /* per node: its x on each side */
    uint32_t *idx;        /* per node: its name's index */
    uint32_t *cur, *next; /* a level's nodes left to right, and the next level's */
    size_t ncur, nnext, at, name_at;
    int64_t lprev, rprev, max_self;
    int phase;  /* DS_* */
    buf_t tail; /* numTicks, maxSelf, metadata, ticks and the partial members */
} dstream_t;

/* dwalk without the levels' text: each node's name index and x on both
 * sides, and maxSelf. */
static int ds_index(dstream_t *v)
{
    const sorted_tree_t *st = &v->st;
    const sides_t *s = &v->s;
    dframe_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    int rc = 0;
    stack[sp++] = (dframe_t){0, 0, 0, 0};
    while (sp > 0 && rc == 0) {
        dframe_t f = stack[--sp];
        const char *name = f.node == 0 ? "total" : st->name[f.node];
        rc = strmap_intern(&v->names, name, strlen(name), &v->idx[f.node]);
        v->lx[f.node] = f.lx;
        v->rx[f.node] = f.rx;
        if (s->ls[f.node] > v->max_self) v->max_self = s->ls[f.node];
        if (s->rs[f.node] > v->max_self) v->max_self = s->rs[f.node];
        sp = dpush_kids(st, s, &f, stack, sp);
    }
    free(stack);
    return rc;
}

/* One node's seven numbers, as demit writes them; its children queued. */
static int ds_entry(dstream_t *v, buf_t *out)
{
    const sides_t *s = &v->s;
    uint32_t i = v->cur[v->at++];
    int64_t n[7] = {v->lx[i] - v->lprev, s->lt[i], s->ls[i],
                    v->rx[i] - v->rprev, s->rt[i], s->rs[i],
                    (int64_t)v->idx[i]};
    int rc = 0;
    for (int k = 0; rc == 0 && k < 7; k++) {
        if (v->at > 1 || k) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_i64(out, n[k]);
    }
    v->lprev = v->lx[i] + s->lt[i];
    v->rprev = v->rx[i] + s->rt[i];
    for (uint32_t k = v->st.off[i]; k < v->st.off[i + 1]; k++)
        v->next[v->nnext++] = v->st.kids[k];
    return rc;
}

/* The end of a level: the next one starts, or the levels end. */
static int ds_level_end(dstream_t *v, buf_t *out)
{
    uint32_t *t = v->cur;
    v->cur = v->next;
    v->next = t;
    v->ncur = v->nnext;
    v->nnext = v->at = 0;
    v->lprev = v->rprev = 0;
    if (v->ncur == 0) v->phase = DS_TAIL;
    return buf_append_str(out, v->ncur ? "],[" : "]");
}

static int ds_next(void *impl, buf_t *out, size_t want, int *done)
{
    dstream_t *v = impl;
    size_t until = out->len + want;
    int rc = 0;
    while (rc == 0 && v->phase != DS_DONE && out->len < until) {
        if (v->phase == DS_HEAD) {
            rc = buf_append_str(out, "{\"version\":1,\"flamebearer\":{\"names\":[");
            v->phase = DS_NAMES;
        } else if (v->phase == DS_NAMES && v->name_at < v->names.n) {
            size_t i = v->name_at++;
            if (i > 0) rc = buf_append_byte(out, ',');
            if (rc == 0) rc = buf_append_json_string(out, v->names.strs[i], v->names.lens[i]);
        } else if (v->phase == DS_NAMES) {
            v->phase = DS_LEVELS_HEAD;
        } else if (v->phase == DS_LEVELS_HEAD) {
            rc = buf_append_str(out, "],\"levels\":[[");
            v->cur[0] = 0;
            v->ncur = 1;
            v->phase = DS_LEVELS;
        } else if (v->phase == DS_LEVELS) {
            rc = v->at < v->ncur ? ds_entry(v, out) : ds_level_end(v, out);
        } else {
            rc = buf_append(out, v->tail.data, v->tail.len);
            v->phase = DS_DONE;
        }
    }
    *done = v->phase == DS_DONE;
    return rc;
}

static void ds_free(void *impl)
{
    dstream_t *v = impl;
    strmap_free(&v->names);
    free(v->lx);
    free(v->rx);
    free(v->idx);
    free(v->cur);
    free(v->next);
    buf_free(&v->tail);
    query_sorted_tree_free(&v->st);
    sides_free(&v->s);
    calltree_free(v->shape);
    symtab_free(v->syms);
    free(v);
}

static const query_stream_ops_t ds_ops = {ds_next, ds_free};

/* What follows the levels, as write_double writes it. */
static int ds_tail(dstream_t *v, const char *profile_type, const char *partial_json)
{
    const sides_t *s = &v->s;
    buf_t *b = &v->tail;
    int rc = buf_printf(b, "],\"numTicks\":%lld,\"maxSelf\":%lld},",
                        (long long)(s->lt[0] + s->rt[0]), (long long)v->max_self);
    if (rc == 0) rc = query_write_metadata(b, "double", profile_type, NULL);
    if (rc == 0)
        rc = buf_printf(b, ",\"leftTicks\":%lld,\"rightTicks\":%lld,\"timeline\":null",
                        (long long)s->lt[0], (long long)s->rt[0]);
    if (rc == 0 && partial_json != NULL) {
        rc = buf_append_byte(b, ',');
        if (rc == 0) rc = buf_append_str(b, partial_json);
    }
    return rc != 0 ? rc : buf_append_byte(b, '}');
}

/* Decimal digits of v, its sign included. */
static size_t ds_digits(int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t d = 1;
    while (u >= 10) {
        u /= 10;
        d++;
    }
    return (v < 0) + d;
}

/* A lower bound of the levels' text: each node's totals and selves
 * exactly, its two x offsets and its name index at one digit, six commas
 * and a separator. */
static size_t ds_least_bytes(const sides_t *s, size_t n)
{
    size_t least = 0;
    for (size_t i = 0; i < n; i++)
        least += ds_digits(s->lt[i]) + ds_digits(s->ls[i]) + ds_digits(s->rt[i]) +
                 ds_digits(s->rs[i]) + 3 + 7;
    return least;
}

/* Heap the stream's own arrays of n nodes hold. */
static size_t ds_array_bytes(size_t n)
{
    return n * (2 * sizeof(int64_t) + 3 * sizeof(uint32_t));
}

/* ---------- svg and folded ---------- */

typedef struct dcolor {
    const int64_t *lt, *rt; /* per node of the shape */
    double max_change;      /* largest |change| of a frame: full color */
} dcolor_t;

/* Change of a node's share: right share minus left share (of each side's
 * root total), in [-1, 1]. */
static double change_of(const dcolor_t *c, uint32_t node)
{
    double l = c->lt[0] ? (double)c->lt[node] / (double)c->lt[0] : 0;
    double r = c->rt[0] ? (double)c->rt[node] / (double)c->rt[0] : 0;
    return r - l;
}

/* Grey when a frame's share did not move, from grey toward red as it grew
 * and toward blue as it shrank, in proportion to the largest change in the
 * picture; magenta for a frame only on the right (new). A frame only on the
 * left has no width in the right side's layout: its tooltip says so. */
static void diff_color(const sorted_tree_t *st, uint32_t node, void *ctx, char *out)
{
    (void)st;
    const dcolor_t *c = ctx;
    if (node != 0 && c->lt[node] == 0 && c->rt[node] != 0) {
        memcpy(out, "#d040c0", 8);
        return;
    }
    double ch = change_of(c, node), t = c->max_change > 0 ? ch / c->max_change : 0;
    if (t < 0) t = -t;
    if (t > 1) t = 1;
    unsigned hi = 224 + (unsigned)(31 * t + 0.5), lo = 224 - (unsigned)(180 * t + 0.5);
    if (node == 0 || t < 0.005)
        query_svg_rgb(224, 224, 224, out);
    else if (ch > 0)
        query_svg_rgb(hi, lo, lo, out);
    else
        query_svg_rgb(lo, lo, hi, out);
}

/* The image's title: `name:sample_type {left selector} [from, until] vs
 * {right selector} [...]`, the shared type said once, a range only when
 * given (an absent end is the render's default). */
static int diff_title(const query_diff_params_t *d, const char *profile_type, buf_t *out)
{
    const query_params_t *side[2] = {&d->left, &d->right};
    ptype_t pt;
    size_t tl = strlen(profile_type);
    int rc = query_ptype_parse(profile_type, &pt) == 0
                 ? buf_printf(out, "%s:%s ", pt.name, pt.sample_type)
                 : 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        const query_params_t *p = side[i];
        const char *q = strncmp(p->query, profile_type, tl) == 0 ? p->query + tl : p->query;
        if (i == 1) rc = buf_append_str(out, " vs ");
        if (rc == 0) rc = buf_append_str(out, q);
        int from = p->from && p->from[0], until = p->until && p->until[0];
        if (rc == 0 && (from || until))
            rc = buf_printf(out, " [%.64s, %.64s]", from ? p->from : "now-1h",
                            until ? p->until : "now");
    }
    return rc != 0 ? rc : buf_append_byte(out, 0);
}

/* The largest |change| of the n nodes' frames: full color. */
static void dcolor_scale(dcolor_t *c, size_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        double ch = change_of(c, i);
        if ((ch < 0 ? -ch : ch) > c->max_change) c->max_change = ch < 0 ? -ch : ch;
    }
}

static const char *svg_note(const char *partial_json)
{
    return partial_json ? "(partial: some token ranges did not answer)" : NULL;
}

static int encode_svg(const sorted_tree_t *st, const sides_t *s, const query_diff_params_t *d,
                      const char *profile_type, const char *partial_json, buf_t *out)
{
    dcolor_t c = {s->lt, s->rt, 0};
    dcolor_scale(&c, st->n);
    buf_t title;
    buf_init(&title, out->max);
    int rc = diff_title(d, profile_type, &title);
    query_svg_style_t style = {
        .title = (const char *)title.data,
        .profile_type = profile_type,
        .note = svg_note(partial_json),
        .color = diff_color,
        .color_ctx = &c,
        .left_total = s->lt,
    };
    if (rc == 0) rc = query_svg_write(st, &style, out);
    buf_free(&title);
    return rc;
}

/* Two sampled profiles over the shape's one frames table: each side's selves,
 * so each profile's weights add up to its side's ticks. */
static int encode_speedscope(const sorted_tree_t *st, const sides_t *s,
                             const query_diff_params_t *dp, const char *profile_type,
                             const char *partial_json, buf_t *out)
{
    buf_t ln, rn; /* the profiles' names */
    buf_init(&ln, BUF_UNLIMITED);
    buf_init(&rn, BUF_UNLIMITED);
    int rc = buf_printf(&ln, "left: %s", dp->left.query);
    if (rc == 0) rc = buf_printf(&rn, "right: %s", dp->right.query);
    query_ss_profile_t p[2] = {{(const char *)ln.data, s->ls}, {(const char *)rn.data, s->rs}};
    if (rc == 0) rc = query_speedscope_write(st, profile_type, "render-diff", p, 2, out);
    if (rc == 0 && partial_json != NULL) rc = query_add_json_members(out, partial_json);
    buf_free(&ln);
    buf_free(&rn);
    return rc;
}

/* ---------- the join's memory: query-memory-bytes ---------- */

typedef struct join {
    calltree_t *u, *shape; /* both sides merged (their union), the answer's shape */
    symtab_t *syms;
    sides_t s, ds; /* per node of u, of shape */
    uint8_t *keep;
    const query_report_charge_t *charge; /* may be NULL */
    size_t charged;
    size_t early;     /* of charged: u, s and keep, given back before encoding */
    size_t answer;    /* of charged: the answer's buffer, charged before it grows */
    size_t streamed;  /* of charged: what a streamed answer holds (query_stream_bytes) */
    int never_fits;   /* the answer's growth was refused as more than the request may hold */
    size_t grown_per; /* bytes a node of the union held as it grew (before its shrink) */
} join_t;

/* Charges n bytes the join holds to its charge: ERR_UNAVAILABLE past it,
 * ERR_TOO_LARGE when the charge tells the request could never fit. */
static int join_take(join_t *j, size_t n)
{
    const query_report_charge_t *c = j->charge;
    if (c == NULL || c->take == NULL || n == 0) return 0;
    int rc = c->take(c->ctx, n);
    if (rc != 0) return rc == ERR_TOO_LARGE ? ERR_TOO_LARGE : ERR_UNAVAILABLE;
    j->charged += n;
    return 0;
}

static void join_give(join_t *j, size_t n)
{
    const query_report_charge_t *c = j->charge;
    if (n > j->charged) n = j->charged;
    if (c == NULL || c->give == NULL || n == 0) return;
    c->give(c->ctx, n);
    j->charged -= n;
}

/* The answer's buffer grows (buf_charge): what it holds while it does is
 * charged first. */
static int join_answer_grows(void *ctx, size_t held)
{
    join_t *j = ctx;
    int rc = held > j->answer ? join_take(j, held - j->answer) : 0;
    if (rc == ERR_TOO_LARGE) j->never_fits = 1; /* told apart from max-output-bytes */
    if (rc != 0) return ERR_UNAVAILABLE;
    if (held < j->answer) join_give(j, j->answer - held);
    j->answer = held;
    return 0;
}

/* Charges the bytes tree t holds (as it will be read) to the join's charge. */
static int join_charge(join_t *j, const calltree_t *t)
{
    return join_take(j, calltree_mem_bytes_read(t));
}

static size_t sides_bytes(const sides_t *s)
{
    return s->cap * 4 * sizeof(int64_t);
}

/* The folded lines of the shape as a stream (query_folded_open) when
 * large: it takes the shape, the names and a copy of the left side's
 * selves (charged first); a small answer is written into out. */
static int encode_folded_open(join_t *j, size_t min_bytes, query_result_t *out)
{
    size_t n = calltree_node_count(j->shape);
    int rc = join_take(j, n * sizeof(int64_t));
    if (rc != 0) return rc;
    int64_t *left = malloc(n * sizeof *left);
    if (left == NULL) return ERR_NOMEM;
    memcpy(left, j->ds.ls, n * sizeof *left);
    out->content_type = "text/plain; charset=utf-8";
    rc = query_folded_open(&j->shape, &j->syms, &left, min_bytes, &out->body, &out->stream);
    free(left); /* NULL when the stream took it */
    if (out->stream == NULL) join_give(j, n * sizeof(int64_t));
    return rc;
}

/* The speedscope file of the shape as a stream (query_speedscope_open)
 * when large: it takes the shape, the names and copies of both sides'
 * selves (charged first); a small answer is written into out. */
static int encode_speedscope_open(join_t *j, const query_diff_params_t *dp,
                                  const char *profile_type, const char *partial_json,
                                  size_t min_bytes, query_result_t *out)
{
    size_t n = calltree_node_count(j->shape);
    int rc = join_take(j, 2 * n * sizeof(int64_t));
    if (rc != 0) return rc;
    int64_t *selves[2] = {malloc(n * sizeof(int64_t)), malloc(n * sizeof(int64_t))};
    buf_t ln, rn; /* the profiles' names */
    buf_init(&ln, BUF_UNLIMITED);
    buf_init(&rn, BUF_UNLIMITED);
    rc = selves[0] && selves[1] ? buf_printf(&ln, "left: %s", dp->left.query) : ERR_NOMEM;
    if (rc == 0) rc = buf_printf(&rn, "right: %s", dp->right.query);
    if (rc == 0) {
        memcpy(selves[0], j->ds.ls, n * sizeof(int64_t));
        memcpy(selves[1], j->ds.rs, n * sizeof(int64_t));
        const char *names[2] = {(const char *)ln.data, (const char *)rn.data};
        rc = query_speedscope_open(&j->shape, &j->syms, profile_type, "render-diff", names, selves,
                                   2, partial_json, min_bytes, &out->body, &out->stream);
    }
    free(selves[0]); /* NULL when the stream took them */
    free(selves[1]);
    buf_free(&ln);
    buf_free(&rn);
    if (out->stream == NULL) join_give(j, 2 * n * sizeof(int64_t));
    return rc;
}

/* The stream's arrays and its index's names (the walk's stack held while
 * it runs); *sorted: the name-sorted tree's bytes. The sides are read. */
static int ds_fill(dstream_t *v, join_t *j, const char *profile_type, const char *partial_json,
                   buf_t *out, size_t *sorted)
{
    size_t n = calltree_node_count(j->shape), stack = n * sizeof(dframe_t);
    int rc = join_take(j, stack);
    if (rc != 0) return rc;
    strmap_init(&v->names);
    buf_init(&v->tail, BUF_UNLIMITED);
    v->s = j->ds;
    rc = query_sorted_tree_build(&v->st, j->shape, j->syms, out);
    *sorted = v->st.held;
    buf_beside_give(out, v->st.held); /* the stream counts it from here */
    v->st.out = NULL;
    v->st.held = 0;
    v->lx = malloc(n * sizeof *v->lx);
    v->rx = malloc(n * sizeof *v->rx);
    v->idx = malloc(n * sizeof *v->idx);
    v->cur = malloc(n * sizeof *v->cur);
    v->next = malloc(n * sizeof *v->next);
    if (rc == 0 && (!v->lx || !v->rx || !v->idx || !v->cur || !v->next)) rc = ERR_NOMEM;
    if (rc == 0) rc = ds_index(v);
    if (rc == 0) rc = ds_tail(v, profile_type, partial_json);
    join_give(j, stack);
    return rc;
}

/* The double flamebearer as a stream when its levels' lower bound reaches
 * min_bytes: it takes the shape, the names and the sides (their charge
 * kept); else written whole into out. */
static int encode_double_open(join_t *j, const char *profile_type, const char *partial_json,
                              size_t min_bytes, query_result_t *out)
{
    size_t n = calltree_node_count(j->shape), least = ds_least_bytes(&j->ds, n);
    if (least < min_bytes || least > out->body.max || out->body.len != 0)
        return encode_double(j->shape, &j->ds, j->syms, profile_type, partial_json, &out->body);
    size_t arrays = ds_array_bytes(n), sorted = 0;
    int rc = join_take(j, arrays);
    if (rc != 0) return rc;
    dstream_t *v = calloc(1, sizeof *v);
    rc = v != NULL ? ds_fill(v, j, profile_type, partial_json, &out->body, &sorted) : ERR_NOMEM;
    if (rc != 0) {
        if (v != NULL) memset(&v->s, 0, sizeof v->s); /* the join's still */
        if (v != NULL) ds_free(v);
        join_give(j, arrays);
        return rc;
    }
    size_t tables = v->names.cap * sizeof *v->names.slots +
                    v->names.strs_cap * (sizeof *v->names.strs + sizeof *v->names.lens);
    size_t bytes = sizeof *v + sorted + arrays + tables + v->tail.cap + sides_bytes(&v->s) +
                   calltree_mem_bytes_read(j->shape) + symtab_mem_bytes(j->syms);
    v->shape = j->shape;
    v->syms = j->syms;
    j->shape = NULL;
    j->syms = NULL;
    memset(&j->ds, 0, sizeof j->ds);
    rc = query_stream_new(&ds_ops, v, QUERY_STREAM_LENGTH_UNKNOWN, bytes, &out->stream);
    if (out->stream == NULL) join_give(j, arrays);
    return rc;
}

/* The colouring a streamed SVG owns: copies of both sides' totals. */
typedef struct dpaint {
    dcolor_t c;
    int64_t *lt, *rt;
} dpaint_t;

static void dpaint_release(void *ctx)
{
    dpaint_t *p = ctx;
    free(p->lt);
    free(p->rt);
    free(p);
}

/* A dpaint of the shape's n nodes (*out, caller releases), its totals
 * copied from the join's. */
static int dpaint_new(const join_t *j, size_t n, dpaint_t **out)
{
    dpaint_t *p = calloc(1, sizeof *p);
    *out = p;
    if (p == NULL) return ERR_NOMEM;
    p->lt = malloc(n * sizeof(int64_t));
    p->rt = malloc(n * sizeof(int64_t));
    if (p->lt == NULL || p->rt == NULL) return ERR_NOMEM;
    memcpy(p->lt, j->ds.lt, n * sizeof(int64_t));
    memcpy(p->rt, j->ds.rt, n * sizeof(int64_t));
    p->c = (dcolor_t){p->lt, p->rt, 0};
    dcolor_scale(&p->c, n);
    return 0;
}

/* The SVG of the shape as a stream (query_svg_open) when large: it takes
 * the shape, the names and the colouring with copies of both sides'
 * totals (charged first); a small answer is written into out. */
static int encode_svg_open(join_t *j, const query_diff_params_t *dp, const char *profile_type,
                           const char *partial_json, size_t min_bytes, query_result_t *out)
{
    size_t n = calltree_node_count(j->shape), bytes = sizeof(dpaint_t) + 2 * n * sizeof(int64_t);
    int rc = join_take(j, bytes);
    if (rc != 0) return rc;
    dpaint_t *p = NULL;
    buf_t title;
    buf_init(&title, out->body.max);
    rc = dpaint_new(j, n, &p);
    if (rc == 0) rc = diff_title(dp, profile_type, &title);
    query_svg_paint_t paint = {diff_color, p, dpaint_release, p ? p->lt : NULL, bytes};
    out->content_type = "image/svg+xml";
    if (rc == 0)
        rc = query_svg_open(&j->shape, &j->syms, profile_type, (const char *)title.data,
                            svg_note(partial_json), &paint, min_bytes, &out->body, &out->stream);
    if (paint.ctx != NULL) dpaint_release(paint.ctx); /* NULL when the stream took it */
    buf_free(&title);
    if (out->stream == NULL) join_give(j, bytes);
    return rc;
}

/* svg, speedscope or folded: the shape with the right side's selves as its own (svg.c
 * and folded.c read widths and values from the tree), the left side's
 * values passed beside it. A folded, speedscope or SVG answer of at least
 * min_bytes (0: never) is a stream. */
static int encode_beside(join_t *j, const query_diff_params_t *dp, query_format_t f,
                         const char *profile_type, const char *partial_json, size_t min_bytes,
                         query_result_t *out)
{
    calltree_t *d = j->shape;
    const sides_t *s = &j->ds;
    const symtab_t *syms = j->syms;
    size_t n = calltree_node_count(d);
    uint32_t *ids = malloc(n * sizeof *ids);
    if (ids == NULL) return ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = i;
    int rc = calltree_add_selves(d, ids, s->rs, n);
    free(ids);
    if (rc == 0 && f == QUERY_FORMAT_FOLDED && min_bytes > 0)
        return encode_folded_open(j, min_bytes, out);
    if (rc == 0 && f == QUERY_FORMAT_SPEEDSCOPE && min_bytes > 0)
        return encode_speedscope_open(j, dp, profile_type, partial_json, min_bytes, out);
    if (rc == 0 && f == QUERY_FORMAT_SVG && min_bytes > 0)
        return encode_svg_open(j, dp, profile_type, partial_json, min_bytes, out);
    sorted_tree_t st; /* held beside the answer, charged with it */
    if (rc == 0) rc = query_sorted_tree_build(&st, d, syms, &out->body);
    if (rc != 0) return rc;
    if (f == QUERY_FORMAT_SVG) {
        out->content_type = "image/svg+xml";
        rc = encode_svg(&st, s, dp, profile_type, partial_json, &out->body);
    } else if (f == QUERY_FORMAT_SPEEDSCOPE) {
        rc = encode_speedscope(&st, s, dp, profile_type, partial_json, &out->body);
    } else {
        out->content_type = "text/plain; charset=utf-8";
        rc = query_folded_write(&st, s->ls, &out->body);
    }
    query_sorted_tree_free(&st);
    return rc;
}

/* ---------- parameters ---------- */

void query_diff_params_read(query_diff_params_t *d,
                            const char *(*get)(const void *ctx, const char *name), const void *ctx)
{
    memset(d, 0, sizeof *d);
    d->left.query = get(ctx, "leftQuery");
    d->left.from = get(ctx, "leftFrom");
    d->left.until = get(ctx, "leftUntil");
    d->right.query = get(ctx, "rightQuery");
    d->right.from = get(ctx, "rightFrom");
    d->right.until = get(ctx, "rightUntil");
    d->max_nodes = get(ctx, "maxNodes");
    if (d->max_nodes == NULL) d->max_nodes = get(ctx, "max-nodes");
    d->format = get(ctx, "format");
    d->left.merged_tree = d->right.merged_tree = 1;
}

static int side_type(const char *param, const char *q, char *type, size_t type_max, errmsg_t *em)
{
    if (q == NULL || q[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter '%s': required", param);
    query_selector_t *sel = NULL;
    int rc = query_selector_parse(param, q, strlen(q), &sel, em);
    if (rc != 0) return rc;
    const char *t = query_selector_type(sel);
    if (t == NULL)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter '%s': a profile type is required",
                        param);
    else
        snprintf(type, type_max, "%s", t);
    query_selector_free(sel);
    return rc;
}

/* json, svg, speedscope or folded; pprof is refused with the way to get each side (a
 * diff is two profiles, and pprof's own -diff_base takes two files). */
static int diff_format(const query_diff_params_t *d, query_format_t *f, errmsg_t *em)
{
    int rc = query_parse_format(d->format, f, em);
    if (rc != 0) return rc;
    if (*f == QUERY_FORMAT_PPROF)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'format': a diff is not one profile; render each side with "
                          "/pyroscope/render?format=pprof (pprof -diff_base compares the two)");
    if (*f != QUERY_FORMAT_JSON && *f != QUERY_FORMAT_SVG && *f != QUERY_FORMAT_FOLDED &&
        *f != QUERY_FORMAT_SPEEDSCOPE)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'format': render-diff answers json (the double "
                          "flamebearer), svg, speedscope or folded");
    return 0;
}

int query_diff_check(const query_diff_params_t *d, const query_limits_t *lim, errmsg_t *em)
{
    char lt[QUERY_TYPE_MAX + 1], rt[QUERY_TYPE_MAX + 1];
    int rc = side_type("leftQuery", d->left.query, lt, sizeof lt, em);
    if (rc == 0) rc = side_type("rightQuery", d->right.query, rt, sizeof rt, em);
    if (rc == 0 && strcmp(lt, rt) != 0)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "leftQuery and rightQuery must have the same profile type (%.200s vs "
                        "%.200s)",
                        lt, rt);
    query_format_t f;
    if (rc == 0) rc = diff_format(d, &f, em);
    size_t max;
    if (rc == 0) rc = query_parse_max_nodes(d->max_nodes, f, lim, &max, em);
    return rc;
}

/* ---------- the answer ---------- */

/* Frees what only the join needed (the sides, their union, the union's
 * values and the kept flags), giving back their charge: the encoders read
 * only the shape, its values and the symbols. */
static void join_drop_early(join_t *j)
{
    free(j->keep);
    j->keep = NULL;
    sides_free(&j->s);
    memset(&j->s, 0, sizeof j->s);
    calltree_free(j->u);
    j->u = NULL;
    join_give(j, j->early);
    j->early = 0;
}

static void join_free(join_t *j)
{
    join_drop_early(j);
    sides_free(&j->ds);
    calltree_free(j->shape);
    symtab_free(j->syms);
    join_give(j, j->charged);
}

/* Charges the union and what goes with it, counted in j->early. */
static int join_charge_early(join_t *j, size_t n)
{
    int rc = join_take(j, n);
    if (rc == 0) j->early += n;
    return rc;
}

/* The decoders' charge (query_tree_decode_charged): counted in j->early. */
static int early_take(void *ctx, size_t n)
{
    return join_charge_early(ctx, n);
}

static void early_give(void *ctx, size_t n)
{
    join_t *j = ctx;
    if (n > j->early) n = j->early;
    j->early -= n;
    join_give(j, n);
}

/* Merges both sides into the union j->u, decoded straight into it (no tree
 * per side): j->s holds each side's selves and totals per union node. The
 * union is then done growing: it gives back its edge table and spare room. */
static int decode_sides(join_t *j, const uint8_t *left, size_t left_len, const uint8_t *right,
                        size_t right_len)
{
    query_report_charge_t early = {early_take, early_give, j};
    size_t syms_was = symtab_mem_bytes(j->syms);
    int rc = query_tree_decode_charged(left, left_len, j->u, j->syms, &early);
    /* the sides' values: 32 bytes a node, and while they grow to the
     * union's, one array's old block beside its new one */
    size_t nl = rc == 0 ? calltree_node_count(j->u) : 0, per = 4 * sizeof(int64_t);
    if (rc == 0) rc = join_charge_early(j, nl * per);
    if (rc == 0) rc = left_selves(j->u, &j->s);
    if (rc == 0) rc = query_tree_decode_charged(right, right_len, j->u, j->syms, &early);
    size_t n = rc == 0 ? calltree_node_count(j->u) : 0, moving = nl * sizeof(int64_t);
    if (rc == 0) rc = join_charge_early(j, (n - nl) * per + moving);
    if (rc == 0) rc = right_selves(j->u, &j->s);
    if (rc == 0) early_give(j, moving);
    if (rc != 0) return rc;
    /* the names stay until the answer is written: not early */
    size_t names = symtab_mem_bytes(j->syms) - syms_was;
    j->early -= names < j->early ? names : j->early;
    size_t was = calltree_mem_bytes(j->u);
    /* what a tree grown node by node holds a node: the kept tree's estimate */
    j->grown_per = calltree_mem_bytes_read(j->u) / calltree_node_count(j->u);
    calltree_shrink(j->u); /* also makes its child links, which the selection reads */
    size_t now = calltree_mem_bytes(j->u);
    if (now > was) return join_charge_early(j, now - was);
    early_give(j, was - now);
    return 0;
}

/* Decodes both sides, joins them and truncates: j->shape and j->ds. */
static int join(join_t *j, const query_limits_t *lim, size_t max_nodes, const uint8_t *left,
                size_t left_len, const uint8_t *right, size_t right_len, errmsg_t *em)
{
    j->u = calltree_new(lim->max_tree_nodes);
    j->shape = calltree_new(lim->max_tree_nodes);
    j->syms = symtab_new();
    int rc = j->u && j->shape && j->syms ? 0 : ERR_NOMEM;
    if (rc == 0) rc = decode_sides(j, left, left_len, right, right_len);
    if (rc == ERR_CORRUPT) errmsg_set(em, rc, "render-diff: a side's merged tree is damaged");
    if (rc == 0) totals(j->u, &j->s);
    size_t un = rc == 0 ? calltree_node_count(j->u) : 0;
    if (rc == 0) rc = join_charge_early(j, un);
    if (rc == 0 && (j->keep = malloc(un)) == NULL) rc = ERR_NOMEM;
    /* the selection's working memory, charged before it is made: the
     * union's totals of its weights, the truncation's arrays and the tree
     * it keeps (at most max_nodes nodes, each of about what a node of the
     * union held as it grew, twice: while one of its arrays grows, by half
     * again, the old block is held beside the new one) */
    size_t work = 0;
    if (rc == 0 && max_nodes != 0 && un > max_nodes)
        work = un * sizeof(int64_t) + query_truncate_scratch_bytes(j->u) +
               max_nodes * (2 * j->grown_per + sizeof(uint32_t));
    int took = rc == 0 && (rc = join_take(j, work)) == 0;
    if (rc == 0) rc = choose_kept(j->u, &j->s, max_nodes, j->keep);
    if (took) join_give(j, work);
    /* the shape and its values, charged before they are made: at most
     * max_nodes nodes (the union's when nothing is cut), each of about what
     * a node of the union held as it grew, and build_shape's map from the
     * union's nodes while it runs; then what they hold */
    size_t most = max_nodes != 0 && un > max_nodes ? max_nodes : un;
    size_t shape = most * (j->grown_per + 4 * sizeof(int64_t)) + un * sizeof(uint32_t);
    took = rc == 0 && (rc = join_take(j, shape)) == 0;
    if (rc == 0) rc = build_shape(j->u, &j->s, j->keep, most, j->shape, &j->ds);
    if (took) join_give(j, shape);
    if (rc == 0) rc = join_charge(j, j->shape);
    if (rc == 0) rc = join_take(j, sides_bytes(&j->ds));
    if (rc == 0) join_drop_early(j);
    if (rc == ERR_UNAVAILABLE) /* the union passed what the budget has left */
        errmsg_set(em, rc,
                   "server busy: joining the two sides needs more memory than "
                   "query-memory-bytes leaves now; retry later or narrow the query");
    if (rc == ERR_TOO_LARGE)
        errmsg_set(em, rc,
                   "render-diff: the two sides and their join need more memory than "
                   "query-memory-bytes allows one query; narrow the query (a shorter range, "
                   "fewer series) or raise query-memory-bytes");
    return rc;
}

/* A streamed answer holds the shape, names and left side it took: they
 * stay charged (j->streamed) until it is sent; the budget's refusal fails
 * the answer. */
static int keep_stream(join_t *j, query_result_t *out, errmsg_t *em)
{
    size_t want = j->answer + query_stream_bytes(out->stream);
    int rc = j->charged < want ? join_take(j, want - j->charged) : 0;
    if (rc == 0) {
        j->streamed = want - j->answer;
        return 0;
    }
    query_stream_free(out->stream);
    out->stream = NULL;
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, rc,
                          "render-diff: the diff's answer needs more memory than "
                          "query-memory-bytes allows one query; narrow the query or raise "
                          "query-memory-bytes");
    return errmsg_set(em, rc,
                      "server busy: the diff's answer needs more memory than query-memory-bytes "
                      "leaves now; retry later or narrow the query");
}

int query_diff_render(const query_diff_params_t *d, const query_limits_t *lim, const uint8_t *left,
                      size_t left_len, const uint8_t *right, size_t right_len,
                      const char *partial_json, query_result_t *out, errmsg_t *em)
{
    return query_diff_render_charged(d, lim, left, left_len, right, right_len, partial_json, NULL,
                                     NULL, out, em);
}

int query_diff_render_charged(const query_diff_params_t *d, const query_limits_t *lim,
                              const uint8_t *left, size_t left_len, const uint8_t *right,
                              size_t right_len, const char *partial_json,
                              const query_report_charge_t *charge, size_t *charged,
                              query_result_t *out, errmsg_t *em)
{
    char type[QUERY_TYPE_MAX + 1];
    if (charged != NULL) *charged = 0;
    size_t max_nodes = 0;
    query_format_t f;
    int rc = side_type("leftQuery", d->left.query, type, sizeof type, em);
    if (rc == 0) rc = diff_format(d, &f, em);
    if (rc == 0) rc = query_parse_max_nodes(d->max_nodes, f, lim, &max_nodes, em);
    if (rc != 0) return rc;
    join_t j = {0};
    j.charge = charge;
    rc = join(&j, lim, max_nodes, left, left_len, right, right_len, em);
    int joined = rc == 0;
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    out->content_type = "application/json";
    /* the answer counts as it grows, before it does, beside the shape */
    buf_charge(&out->body, join_answer_grows, &j);
    if (rc == 0 && f == QUERY_FORMAT_JSON && d->stream && lim->stream_min_bytes > 0) {
        rc = encode_double_open(&j, type, partial_json, lim->stream_min_bytes, out);
    } else if (rc == 0 && f == QUERY_FORMAT_JSON) {
        rc = encode_double(j.shape, &j.ds, j.syms, type, partial_json, &out->body);
    } else if (rc == 0) {
        /* a folded answer streams when measured whole, a speedscope file or SVG always may */
        int may = d->stream && (max_nodes == 0 || f != QUERY_FORMAT_FOLDED);
        size_t min_bytes = may ? lim->stream_min_bytes : 0;
        rc = encode_beside(&j, d, f, type, partial_json, min_bytes, out);
    }
    buf_charge(&out->body, NULL, NULL);
    if (joined && rc == ERR_UNAVAILABLE && j.never_fits) {
        rc = ERR_TOO_LARGE;
        errmsg_set(em, rc,
                   "render-diff: the diff's answer needs more memory than query-memory-bytes "
                   "allows one query; narrow the query or raise query-memory-bytes");
    } else if (joined && rc == ERR_UNAVAILABLE) {
        errmsg_set(em, rc,
                   "server busy: the diff's answer needs more memory than query-memory-bytes "
                   "leaves now; retry later or narrow the query");
    }
    if (rc != 0 && em->text[0] == 0) rc = query_out_err(rc, &out->body, em);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "render-diff: %s", err_message(rc));
    if (rc == 0 && out->stream != NULL) rc = keep_stream(&j, out, em);
    if (rc == 0 && charged != NULL && j.answer + j.streamed <= j.charged) {
        *charged = j.answer + j.streamed; /* taken until it is sent */
        j.charged -= *charged;
    }
    join_free(&j);
    return rc;
}
