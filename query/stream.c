/* stream.c — an answer produced in slices (query_stream_t): the length
 * checks common to every format; the formats (folded.c, svg.c, pprof.c,
 * flamebearer.c) bring the walk that writes each slice and what it reads
 * from.
 */
#include <stdlib.h>

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
