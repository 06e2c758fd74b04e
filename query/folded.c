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
 *
 * A large answer may instead be a stream (query_folded_open): the measured
 * size is its Content-Length and the same walk, resumed, writes it a slice
 * at a time, holding the tree and its names until the last line.
 */
#include <stdint.h>
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

/* The preorder walk, resumable: frames still to visit and the path text. */
typedef struct fwalk {
    const sorted_tree_t *st;
    const int64_t *left;
    size_t *plen; /* plen[d]: length of the path text up to depth d */
    fframe_t *stack;
    size_t sp;
    buf_t *path;
} fwalk_t;

/* Writes lines until out holds at least until bytes or the walk ends
 * (w->sp == 0). */
static int walk_folded(fwalk_t *w, buf_t *out, size_t until)
{
    const sorted_tree_t *st = w->st;
    buf_t *path = w->path;
    int rc = 0;
    while (w->sp > 0 && rc == 0 && out->len < until) {
        fframe_t f = w->stack[--w->sp];
        if (f.depth > 0) {
            path->len = w->plen[f.depth - 1];
            if (f.depth > 1) rc = buf_append_byte(path, ';');
            if (rc == 0) rc = append_name(path, st->name[f.node]);
            w->plen[f.depth] = path->len;
        }
        if (rc == 0 && f.depth > 0)
            rc = write_line(st, w->left, f.node, (const char *)path->data, path->len, out);
        else if (rc == 0)
            rc = write_line(st, w->left, f.node, "total", strlen("total"), out);
        for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node] && rc == 0; k--)
            w->stack[w->sp++] = (fframe_t){st->kids[k - 1], f.depth + 1};
    }
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
 * path's length at depth d), *longest: its longest path. Stops once past
 * max: *size is then above it. */
static int measure_folded(const sorted_tree_t *st, const int64_t *left, size_t *plen, size_t max,
                          size_t *size, size_t *longest)
{
    fframe_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0, n = 0, most = 0;
    stack[sp++] = (fframe_t){0, 0};
    while (sp > 0 && n <= max) {
        fframe_t f = stack[--sp];
        if (f.depth > 0)
            plen[f.depth] = plen[f.depth - 1] + (f.depth > 1) + strlen(st->name[f.node]);
        if (f.depth > 0 && plen[f.depth] > most) most = plen[f.depth];
        n += line_len(st, left, f.node, f.depth ? plen[f.depth] : strlen("total"));
        for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node]; k--)
            stack[sp++] = (fframe_t){st->kids[k - 1], f.depth + 1};
    }
    free(stack);
    *size = n;
    *longest = most;
    return 0;
}

/* Writes the measured answer (size bytes) into out, as it always was. */
static int write_whole(const sorted_tree_t *st, const int64_t *left, size_t *plen, size_t size,
                       size_t room, buf_t *out)
{
    int rc = 0;
    /* an answer past the buffer's max fails as it is written, as it always
     * did; an empty one allocates nothing, as before */
    if (size > 0 && size <= room) rc = buf_reserve_exact(out, size);
    buf_t path;
    buf_beside_t link = {out, 0};
    buf_init(&path, out->max);
    buf_charge(&path, buf_beside_grows, &link);
    fframe_t *stack = rc == 0 ? malloc(st->n * sizeof *stack) : NULL;
    if (rc == 0 && stack == NULL) rc = ERR_NOMEM;
    if (rc == 0) {
        fwalk_t w = {st, left, plen, stack, 1, &path};
        stack[0] = (fframe_t){0, 0};
        rc = walk_folded(&w, out, SIZE_MAX);
    }
    free(stack);
    buf_free(&path);
    buf_beside_give(out, link.held);
    return rc;
}

/* The walk's own memory beside a sorted tree of n nodes: plen and stack. */
static size_t walk_bytes(size_t n)
{
    return (n + 1) * sizeof(size_t) + n * sizeof(fframe_t);
}

int query_folded_write(const sorted_tree_t *st, const int64_t *left_self, buf_t *out)
{
    /* plen, the walk's stack and the path (as it grows) held beside the answer */
    size_t work = walk_bytes(st->n);
    int rc = buf_beside_take(out, work);
    if (rc != 0) return rc;
    /* plen[d]: length of the path text up to depth d; depth < node count. */
    size_t *plen = calloc(st->n + 1, sizeof *plen);
    if (plen == NULL) {
        buf_beside_give(out, work);
        return ERR_NOMEM;
    }
    size_t size, longest, room = out->max > out->len ? out->max - out->len : 0;
    rc = measure_folded(st, left_self, plen, room, &size, &longest);
    if (rc == 0) rc = write_whole(st, left_self, plen, size, room, out);
    free(plen);
    buf_beside_give(out, work);
    return rc;
}

/* ---- the answer as a stream ---- */

typedef struct folded_stream {
    calltree_t *tree; /* owned, with syms: what st reads */
    symtab_t *syms;
    int64_t *left; /* owned, or NULL: the left side's selves of a render-diff */
    sorted_tree_t st;
    size_t *plen;
    buf_t path;
    fwalk_t w;
} folded_stream_t;

static int folded_next(void *impl, buf_t *out, size_t want, int *done)
{
    folded_stream_t *s = impl;
    int rc = walk_folded(&s->w, out, out->len + want);
    *done = s->w.sp == 0;
    return rc;
}

static void folded_free(void *impl)
{
    folded_stream_t *s = impl;
    free(s->w.stack);
    free(s->plen);
    free(s->left);
    buf_free(&s->path);
    query_sorted_tree_free(&s->st);
    calltree_free(s->tree);
    symtab_free(s->syms);
    free(s);
}

static const query_stream_ops_t folded_ops = {folded_next, folded_free};

/* Moves the sorted tree, plen, the tree and names and the left side into a
 * stream of size bytes whose paths are at most longest bytes (*st zeroed,
 * *plenp and *left NULL once moved, even when the stream could not be made
 * then). */
static int stream_new(sorted_tree_t *st, size_t **plenp, size_t size, size_t longest,
                      calltree_t **t, symtab_t **syms, int64_t **left, query_stream_t **out)
{
    folded_stream_t *s = calloc(1, sizeof *s);
    if (s == NULL) return ERR_NOMEM;
    buf_init(&s->path, BUF_UNLIMITED);
    fframe_t *stack = malloc(st->n * sizeof *stack);
    int rc = stack == NULL ? ERR_NOMEM : buf_reserve_exact(&s->path, longest + 1);
    if (rc != 0) {
        free(stack);
        buf_free(&s->path);
        free(s);
        return rc;
    }
    size_t sorted = st->held;
    buf_beside_give(st->out, st->held); /* the stream counts it from here */
    st->out = NULL;
    st->held = 0;
    size_t *plen = *plenp;
    s->st = *st;
    memset(st, 0, sizeof *st);
    *plenp = NULL;
    s->plen = plen;
    s->tree = *t;
    s->syms = *syms;
    s->left = *left;
    *t = NULL;
    *syms = NULL;
    *left = NULL;
    s->w = (fwalk_t){&s->st, s->left, plen, stack, 1, &s->path};
    stack[0] = (fframe_t){0, 0};
    size_t bytes = sizeof *s + sorted + walk_bytes(s->st.n) + s->path.cap +
                   calltree_mem_bytes_read(s->tree) + symtab_mem_bytes(s->syms) +
                   (s->left != NULL ? s->st.n * sizeof *s->left : 0);
    return query_stream_new(&folded_ops, s, size, bytes, out);
}

int query_folded_open(calltree_t **t, symtab_t **syms, int64_t **left, size_t min_bytes, buf_t *out,
                      query_stream_t **stream)
{
    int64_t *no_left = NULL;
    if (left == NULL) left = &no_left;
    *stream = NULL;
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, *t, *syms, out);
    if (rc != 0) return rc;
    size_t work = walk_bytes(st.n);
    size_t *plen = NULL;
    int taken = (rc = buf_beside_take(out, work)) == 0;
    if (taken && (plen = calloc(st.n + 1, sizeof *plen)) == NULL) rc = ERR_NOMEM;
    size_t size = 0, longest = 0, room = out->max > out->len ? out->max - out->len : 0;
    if (rc == 0) rc = measure_folded(&st, *left, plen, room, &size, &longest);
    if (rc == 0 && size >= min_bytes && size <= room && out->len == 0) {
        rc = stream_new(&st, &plen, size, longest, t, syms, left, stream);
        if (rc == 0) {
            buf_beside_give(out, work);
            return 0;
        }
    }
    if (rc == 0) rc = write_whole(&st, *left, plen, size, room, out);
    free(plen);
    if (taken) buf_beside_give(out, work);
    query_sorted_tree_free(&st);
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
