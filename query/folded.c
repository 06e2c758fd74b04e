/* folded.c — `root;...;leaf self` lines, one per node with a non-zero self,
 * in preorder with children ordered by name. A non-zero self on the root (a
 * sample with an empty stack) is written as the frame `total`. Line breaks
 * inside names become spaces so every line stays one stack.
 *
 * The differential form render-diff answers (query_folded_write with a left
 * side) writes `stack left right`, the two-column input flamegraph.pl
 * draws as a differential, for every node with a non-zero self on either side.
 *
 * Every path is written out whole, so the text is many times the tree (44
 * MB for a tree of 98,000 nodes): a first pass measures it and the answer's
 * buffer is reserved once at that size, never grown by doubling (which held
 * the old buffer and one twice its size while realloc copied, over
 * query-memory-bytes for such an answer).
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

static int append_name(buf_t *b, const char *s)
{
    size_t start = b->len;
    int rc = buf_append_str(b, s);
    for (size_t i = start; rc == 0 && i < b->len; i++)
        if (b->data[i] == '\n' || b->data[i] == '\r') b->data[i] = ' ';
    return rc;
}

typedef struct fframe {
    uint32_t node, depth;
} fframe_t;

/* `path self` (`path left right` with a left side), as "%s %lld\n" writes it. */
static int write_line(const sorted_tree_t *st, const int64_t *left, uint32_t node, const char *path,
                      size_t plen, buf_t *out)
{
    int64_t self = calltree_self(st->t, node);
    if (left == NULL ? self == 0 : self == 0 && left[node] == 0) return 0;
    int rc = buf_append(out, path, plen);
    if (rc == 0 && left != NULL) rc = buf_append_byte(out, ' ');
    if (rc == 0 && left != NULL) rc = buf_append_i64(out, left[node]);
    if (rc == 0) rc = buf_append_byte(out, ' ');
    if (rc == 0) rc = buf_append_i64(out, self);
    return rc == 0 ? buf_append_byte(out, '\n') : rc;
}

static int walk_folded(const sorted_tree_t *st, const int64_t *left, buf_t *path, size_t *plen,
                       buf_t *out)
{
    fframe_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    int rc = 0;
    stack[sp++] = (fframe_t){0, 0};
    while (sp > 0 && rc == 0) {
        fframe_t f = stack[--sp];
        if (f.depth > 0) {
            path->len = plen[f.depth - 1];
            if (f.depth > 1) rc = buf_append_byte(path, ';');
            if (rc == 0) rc = append_name(path, st->name[f.node]);
            plen[f.depth] = path->len;
        }
        if (rc == 0 && f.depth > 0)
            rc = write_line(st, left, f.node, (const char *)path->data, path->len, out);
        else if (rc == 0)
            rc = write_line(st, left, f.node, "total", strlen("total"), out);
        for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node] && rc == 0; k--)
            stack[sp++] = (fframe_t){st->kids[k - 1], f.depth + 1};
    }
    free(stack);
    return rc;
}

/* Decimal digits of v, its sign included: what "%lld" writes. */
static size_t i64_len(int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = v < 0 ? 2 : 1;
    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

/* Bytes write_line appends for node with a path of plen bytes. */
static size_t line_len(const sorted_tree_t *st, const int64_t *left, uint32_t node, size_t plen)
{
    int64_t self = calltree_self(st->t, node);
    if (left == NULL) return self != 0 ? plen + 1 + i64_len(self) + 1 : 0;
    if (self == 0 && left[node] == 0) return 0;
    return plen + 1 + i64_len(left[node]) + 1 + i64_len(self) + 1;
}

/* *size: the bytes walk_folded writes, in the same preorder (plen[d]: the
 * path's length at depth d). Stops once past max: *size is then above it. */
static int measure_folded(const sorted_tree_t *st, const int64_t *left, size_t *plen, size_t max,
                          size_t *size)
{
    fframe_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0, n = 0;
    stack[sp++] = (fframe_t){0, 0};
    while (sp > 0 && n <= max) {
        fframe_t f = stack[--sp];
        if (f.depth > 0)
            plen[f.depth] = plen[f.depth - 1] + (f.depth > 1) + strlen(st->name[f.node]);
        n += line_len(st, left, f.node, f.depth ? plen[f.depth] : strlen("total"));
        for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node]; k--)
            stack[sp++] = (fframe_t){st->kids[k - 1], f.depth + 1};
    }
    free(stack);
    *size = n;
    return 0;
}

int query_folded_write(const sorted_tree_t *st, const int64_t *left_self, buf_t *out)
{
    /* plen, the walk's stack and the path (as it grows) held beside the answer */
    size_t work = (st->n + 1) * sizeof(size_t) + st->n * sizeof(fframe_t);
    int rc = buf_beside_take(out, work);
    if (rc != 0) return rc;
    /* plen[d]: length of the path text up to depth d; depth < node count. */
    size_t *plen = calloc(st->n + 1, sizeof *plen);
    if (plen == NULL) {
        buf_beside_give(out, work);
        return ERR_NOMEM;
    }
    size_t size, room = out->max > out->len ? out->max - out->len : 0;
    rc = measure_folded(st, left_self, plen, room, &size);
    /* an answer past the buffer's max fails as it is written, as it always
     * did; an empty one allocates nothing, as before */
    if (rc == 0 && size > 0 && size <= room) rc = buf_reserve_exact(out, size);
    buf_t path;
    buf_beside_t link = {out, 0};
    buf_init(&path, out->max);
    buf_charge(&path, buf_beside_grows, &link);
    if (rc == 0) rc = walk_folded(st, left_self, &path, plen, out);
    buf_free(&path);
    buf_beside_give(out, link.held);
    free(plen);
    buf_beside_give(out, work);
    return rc;
}

int query_encode_folded(const calltree_t *t, const symtab_t *syms, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms, out);
    if (rc != 0) return rc;
    rc = query_folded_write(&st, NULL, out);
    query_sorted_tree_free(&st);
    return rc;
}
