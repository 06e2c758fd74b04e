/* query.c — GET /pyroscope/render: parameters in, one encoded body out.
 *
 * Steps: parse the selector and times, plan the windows, resolve the series,
 * merge their blocks into one tree bounded by max_tree_nodes, truncate to
 * maxNodes, load the symbols still present, then encode (flamebearer JSON with
 * its timeline, folded, or gzipped pprof). Every step's buffers are bounded
 * by query_limits_t.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

void query_limits_default(query_limits_t *l)
{
    storage_options_t so;
    storage_options_default(&so);
    l->max_nodes_limit = 65536;
    l->max_tree_nodes = 4u << 20;
    l->max_series = 10000;
    l->max_output_bytes = 64u << 20;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        l->retention_seconds[i] = so.retention_seconds[i];
}

void query_result_init(query_result_t *r)
{
    buf_init(&r->body, 0);
    r->content_type = NULL;
    r->content_encoding = NULL;
}

void query_result_free(query_result_t *r)
{
    buf_free(&r->body);
}

enum fmt { FMT_JSON, FMT_FOLDED, FMT_PPROF };

static int parse_format(const char *s, enum fmt *f, errmsg_t *em)
{
    if (s == NULL || s[0] == 0 || strcmp(s, "json") == 0)
        *f = FMT_JSON;
    else if (strcmp(s, "folded") == 0 || strcmp(s, "collapsed") == 0)
        *f = FMT_FOLDED;
    else if (strcmp(s, "pprof") == 0)
        *f = FMT_PPROF;
    else
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'format': \"%.32s\" is not json, folded or pprof", s);
    return 0;
}

/* maxNodes: absent or 0 -> default for JSON, no truncation for folded/pprof;
 * values above the configured limit are lowered to it (as Pyroscope does). */
static int parse_max_nodes(const char *s, enum fmt f, const query_limits_t *lim, size_t *out,
                           errmsg_t *em)
{
    size_t dflt = f == FMT_JSON ? QUERY_DEFAULT_MAX_NODES : 0;
    if (dflt > lim->max_nodes_limit) dflt = lim->max_nodes_limit;
    *out = dflt;
    if (s == NULL || s[0] == 0) return 0;
    size_t len = strlen(s);
    if (len > 19 || strspn(s, "0123456789") != len)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'maxNodes': \"%.32s\" is not a non-negative integer", s);
    unsigned long long v = strtoull(s, NULL, 10);
    if (v == 0) return 0;
    if (v < 2)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'maxNodes': must be at least 2 (the root and `other`)");
    *out = v > lim->max_nodes_limit ? lim->max_nodes_limit : (size_t)v;
    return 0;
}

typedef struct render {
    query_selector_t *sel;
    enum fmt fmt;
    size_t max_nodes;
    query_plan_t plan;
    query_series_t ser;
    calltree_t *tree;
    symtab_t *syms;
    query_timeline_t tl;
} render_t;

static int parse_params(const query_params_t *p, const query_limits_t *lim, int64_t now_ms,
                        render_t *r, errmsg_t *em)
{
    if (p->query == NULL || p->query[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    int rc = query_selector_parse("query", p->query, strlen(p->query), &r->sel, em);
    if (rc != 0) return rc;
    if (query_selector_type(r->sel) == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'query': a profile type is required, e.g. "
                          "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"app\"}");
    int64_t from, until;
    rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0) rc = parse_format(p->format, &r->fmt, em);
    if (rc == 0) rc = parse_max_nodes(p->max_nodes, r->fmt, lim, &r->max_nodes, em);
    if (rc == 0) query_plan_make(from, until, now_ms, lim, &r->plan);
    return rc;
}

/* Merges, truncates and loads symbols; r->tree is the tree to encode. */
static int build_tree(storage_t *st, const char *tenant, const query_limits_t *lim, render_t *r,
                      errmsg_t *em)
{
    int rc = query_series_select(st, tenant, r->sel, lim, &r->ser, em);
    if (rc != 0) return rc;
    r->tree = calltree_new(lim->max_tree_nodes);
    if (r->tree == NULL) return ERR_NOMEM;
    rc = query_merge_series(st, tenant, &r->ser, &r->plan, r->tree, em);
    if (rc == 0 && r->max_nodes > 0 && calltree_node_count(r->tree) > r->max_nodes) {
        calltree_t *small;
        rc = query_truncate(r->tree, r->max_nodes, &small);
        if (rc == 0) {
            calltree_free(r->tree);
            r->tree = small;
        }
    }
    if (rc == 0 && (r->syms = symtab_new()) == NULL) rc = ERR_NOMEM;
    if (rc == 0) rc = query_load_symbols(st, tenant, r->tree, r->syms);
    if (rc != 0 && em->text[0] == 0)
        errmsg_set(em, rc, "building the flame graph: %s", err_message(rc));
    return rc;
}

static int encode(storage_t *st, const char *tenant, render_t *r, query_result_t *out, errmsg_t *em)
{
    const char *type = query_selector_type(r->sel);
    int rc;
    switch (r->fmt) {
    case FMT_JSON:
        rc = query_timeline_build(st, tenant, &r->ser, &r->plan, &r->tl, em);
        if (rc != 0) return rc;
        out->content_type = "application/json";
        rc = query_encode_flamebearer(r->tree, r->syms, type, r->ser.spy_name, &r->tl, &out->body);
        break;
    case FMT_FOLDED:
        out->content_type = "text/plain; charset=utf-8";
        rc = query_encode_folded(r->tree, r->syms, &out->body);
        break;
    default:
        out->content_type = "application/octet-stream";
        rc = query_encode_pprof(r->tree, r->syms, type, r->plan.from_s * 1000000000LL,
                                (r->plan.until_s - r->plan.from_s) * 1000000000LL, &out->body);
        break;
    }
    return out_err(rc, &out->body, em);
}

int query_render(storage_t *st, const char *tenant, const query_params_t *p,
                 const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    errmsg_t local = {{0}};
    if (em == NULL) em = &local;
    em->text[0] = 0;
    render_t r;
    memset(&r, 0, sizeof r);
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    int rc = parse_params(p, lim, now_ms, &r, em);
    if (rc == 0) rc = build_tree(st, tenant, lim, &r, em);
    if (rc == 0) rc = encode(st, tenant, &r, out, em);
    query_selector_free(r.sel);
    query_series_free(&r.ser);
    calltree_free(r.tree);
    symtab_free(r.syms);
    query_timeline_free(&r.tl);
    if (rc != 0) buf_reset(&out->body);
    return rc;
}
