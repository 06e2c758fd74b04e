/* groups.c — groupBy's answer (query_render_groups_open): a render's JSON
 * object, whole or streamed, with the member "groups" (and "partial":true)
 * added before its closing brace, sent as a stream so neither part is
 * copied into a third buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

/* A streamed render: its bytes less the last one (held back until the
 * render ends: its closing brace, which becomes a comma), then the rest. */
typedef struct groups_stream {
    query_stream_t *render; /* NULL once it ended */
    int held;               /* last holds the render's latest byte */
    uint8_t last;
    query_stream_t *rest; /* the groups member, partial, the brace */
} groups_stream_t;

/* Appends render bytes to out, less the latest; at the render's end, a
 * comma instead of its closing brace. */
static int render_part(groups_stream_t *g, buf_t *out, size_t want)
{
    int rc = g->held ? buf_append_byte(out, g->last) : 0;
    g->held = 0;
    size_t before = out->len;
    int done = 0;
    if (rc == 0) rc = query_stream_next(g->render, out, want, &done);
    if (rc != 0) return rc;
    if (out->len > before) {
        g->last = out->data[out->len - 1];
        g->held = 1;
        out->len--;
    }
    if (!done) return 0;
    if (!g->held || g->last != '}') return ERR_INTERNAL; /* not a JSON object */
    g->held = 0;
    query_stream_free(g->render);
    g->render = NULL;
    return buf_append_byte(out, ',');
}

static int groups_next(void *impl, buf_t *out, size_t want, int *done)
{
    groups_stream_t *g = impl;
    size_t start = out->len;
    *done = 0;
    while (g->render != NULL && out->len - start < want) {
        int rc = render_part(g, out, want - (out->len - start));
        if (rc != 0) return rc;
    }
    if (g->render != NULL) return 0;
    size_t got = out->len - start;
    return query_stream_next(g->rest, out, want > got ? want - got : 1, done);
}

static void groups_free(void *impl)
{
    groups_stream_t *g = impl;
    query_stream_free(g->render);
    query_stream_free(g->rest);
    free(g);
}

static const query_stream_ops_t groups_ops = {groups_next, groups_free};

/* The member's bytes after the render: groups, then partial and the brace. */
static int tail_of(buf_t *groups, int partial, buf_t *parts)
{
    static const char partial_member[] = ",\"partial\":true";
    parts[0] = *groups;
    buf_init(groups, 0);
    buf_init(&parts[1], BUF_UNLIMITED);
    int rc = partial ? buf_append_str(&parts[1], partial_member) : 0;
    return rc == 0 ? buf_append_byte(&parts[1], '}') : rc;
}

/* A whole render: its bytes (the brace turned into a comma), then the
 * member's, of known length. */
static int open_whole(buf_t *render, buf_t *groups, int partial, const query_limits_t *lim,
                      query_stream_t **out, errmsg_t *em)
{
    buf_t parts[3];
    parts[0] = *render;
    buf_init(render, 0);
    int rc = tail_of(groups, partial, &parts[1]);
    size_t need = parts[0].len + parts[1].len + parts[2].len;
    if (rc == 0 && need > lim->max_output_bytes)
        rc = errmsg_set(em, ERR_TOO_LARGE, "answer exceeds %zu bytes (query-max-output-bytes)",
                        lim->max_output_bytes);
    if (rc == 0 && (parts[0].len < 2 || parts[0].data[parts[0].len - 1] != '}'))
        rc = errmsg_set(em, ERR_INTERNAL, "groupBy: the render is not a JSON object");
    if (rc != 0) {
        for (size_t i = 0; i < 3; i++)
            buf_free(&parts[i]);
        return rc;
    }
    parts[0].data[parts[0].len - 1] = ',';
    return query_stream_of_bufs(parts, 3, out);
}

/* A streamed render: its stream (taken), then the member's; chunked. */
static int open_streamed(query_stream_t **render, buf_t *groups, int partial, query_stream_t **out)
{
    buf_t parts[2];
    int rc = tail_of(groups, partial, parts);
    groups_stream_t *g = rc == 0 ? calloc(1, sizeof *g) : NULL;
    if (g == NULL) {
        buf_free(&parts[0]);
        buf_free(&parts[1]);
        query_stream_free(*render);
        *render = NULL;
        return rc != 0 ? rc : ERR_NOMEM;
    }
    g->render = *render;
    *render = NULL;
    if ((rc = query_stream_of_bufs(parts, 2, &g->rest)) != 0) { /* parts taken */
        groups_free(g);
        return rc;
    }
    size_t bytes = sizeof *g + query_stream_bytes(g->render) + query_stream_bytes(g->rest);
    return query_stream_new(&groups_ops, g, QUERY_STREAM_LENGTH_UNKNOWN, bytes, out);
}

int query_render_groups_open(query_result_t *render, buf_t *groups, int partial,
                             const query_limits_t *lim, query_result_t *out, errmsg_t *em)
{
    query_result_free(out);
    query_result_init(out);
    out->content_type = "application/json";
    int rc = render->stream == NULL
                 ? open_whole(&render->body, groups, partial, lim, &out->stream, em)
                 : open_streamed(&render->stream, groups, partial, &out->stream);
    if (rc == ERR_NOMEM) errmsg_set(em, rc, "groupBy: out of memory");
    return rc;
}
