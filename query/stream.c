/* stream.c — an answer produced in slices (query_stream_t): the length
 * checks common to every format; the formats (folded.c, svg.c, pprof.c,
 * flamebearer.c) bring the walk that writes each slice and what it reads
 * from.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

struct query_stream {
    const query_stream_ops_t *ops;
    void *impl;
    uint64_t length; /* or QUERY_STREAM_LENGTH_UNKNOWN */
    uint64_t produced;
    size_t bytes;
};

int query_stream_new(const query_stream_ops_t *ops, void *impl, uint64_t length, size_t bytes,
                     query_stream_t **out)
{
    query_stream_t *s = malloc(sizeof *s);
    if (s == NULL) {
        ops->free(impl);
        return ERR_NOMEM;
    }
    *s = (query_stream_t){ops, impl, length, 0, bytes + sizeof *s};
    *out = s;
    return 0;
}

uint64_t query_stream_length(const query_stream_t *s)
{
    return s->length;
}

size_t query_stream_bytes(const query_stream_t *s)
{
    return s->bytes;
}

int query_stream_next(query_stream_t *s, buf_t *out, size_t want, int *done)
{
    size_t before = out->len;
    *done = 0;
    int rc = s->ops->next(s->impl, out, want, done);
    s->produced += out->len - before;
    if (rc != 0 || s->length == QUERY_STREAM_LENGTH_UNKNOWN) return rc;
    if (s->produced > s->length || (*done && s->produced != s->length)) return ERR_INTERNAL;
    return 0;
}

int query_stream_drain(query_stream_t *s, buf_t *out)
{
    int done = 0, rc = 0;
    while (rc == 0 && !done)
        rc = query_stream_next(s, out, QUERY_STREAM_SLICE_BYTES, &done);
    return rc;
}

void query_stream_free(query_stream_t *s)
{
    if (s == NULL) return;
    s->ops->free(s->impl);
    free(s);
}

/* ---- an answer already written: its buffers, sent in turn ---- */

typedef struct bufs_stream {
    buf_t part[QUERY_STREAM_MAX_BUFS];
    size_t n;
    size_t at, off; /* the part and the byte in it next sent */
} bufs_stream_t;

static int bufs_next(void *impl, buf_t *out, size_t want, int *done)
{
    bufs_stream_t *b = impl;
    size_t put = 0;
    while (b->at < b->n && put < want) {
        const buf_t *p = &b->part[b->at];
        size_t take = p->len - b->off;
        if (take > want - put) take = want - put;
        int rc = buf_append(out, p->data + b->off, take);
        if (rc != 0) return rc;
        put += take;
        b->off += take;
        if (b->off == p->len) {
            b->at++;
            b->off = 0;
        }
    }
    *done = b->at == b->n;
    return 0;
}

static void bufs_free(void *impl)
{
    bufs_stream_t *b = impl;
    for (size_t i = 0; i < b->n; i++)
        buf_free(&b->part[i]);
    free(b);
}

static const query_stream_ops_t bufs_ops = {bufs_next, bufs_free};

int query_stream_of_bufs(buf_t *parts, size_t n, query_stream_t **out)
{
    *out = NULL;
    bufs_stream_t *b = n <= QUERY_STREAM_MAX_BUFS ? calloc(1, sizeof *b) : NULL;
    if (b == NULL) {
        for (size_t i = 0; i < n; i++)
            buf_free(&parts[i]);
        return n <= QUERY_STREAM_MAX_BUFS ? ERR_NOMEM : ERR_INTERNAL;
    }
    uint64_t length = 0;
    size_t bytes = sizeof *b;
    for (size_t i = 0; i < n; i++) {
        b->part[i] = parts[i];
        buf_init(&parts[i], 0);
        length += b->part[i].len;
        bytes += b->part[i].cap;
    }
    b->n = n;
    while (b->at < b->n && b->part[b->at].len == 0)
        b->at++;
    return query_stream_new(&bufs_ops, b, length, bytes, out);
}
