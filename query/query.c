/* query.c — request parameters in, one encoded body out.
 *
 * Parses and validates a request into a query_spec_t (selector, times, plan,
 * format, maxNodes, label), then answers it as a cluster of one: a partial
 * over every token (partial.c: resolve the series, merge their blocks bounded
 * by max_tree_nodes, load symbols, timeline totals) folded into a gather
 * (gather.c: truncate to maxNodes and encode). A cluster coordinator runs the
 * same steps with one partial per node, so both answers are the same bytes.
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
    l->max_span_ids = 10000;
    l->stream_min_bytes = 0;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        l->retention_seconds[i] = so.retention_seconds[i];
    l->assist = NULL;
}

void query_result_init(query_result_t *r)
{
    buf_init(&r->body, 0);
    r->content_type = NULL;
    r->content_encoding = NULL;
    r->stream = NULL;
    r->names_ns = r->encode_ns = 0;
}

void query_result_free(query_result_t *r)
{
    buf_free(&r->body);
    query_stream_free(r->stream);
    r->stream = NULL;
}

int query_parse_format(const char *s, query_format_t *f, errmsg_t *em)
{
    if (s == NULL || s[0] == 0 || strcmp(s, "json") == 0)
        *f = QUERY_FORMAT_JSON;
    else if (strcmp(s, "top") == 0) /* what GET /api/top asks for */
        *f = QUERY_FORMAT_TOP;
    else if (strcmp(s, "folded") == 0 || strcmp(s, "collapsed") == 0)
        *f = QUERY_FORMAT_FOLDED;
    else if (strcmp(s, "pprof") == 0)
        *f = QUERY_FORMAT_PPROF;
    else if (strcmp(s, "svg") == 0)
        *f = QUERY_FORMAT_SVG;
    else if (strcmp(s, "speedscope") == 0)
        *f = QUERY_FORMAT_SPEEDSCOPE;
    else
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'format': \"%.32s\" is not json, folded, pprof, svg or "
                          "speedscope",
                          s);
    return 0;
}

int query_parse_uint_param(const char *name, const char *s, unsigned long long min,
                           unsigned long long max, unsigned long long *out, errmsg_t *em)
{
    if (s == NULL || s[0] == 0) return 0;
    size_t len = strlen(s);
    int digits = len <= 19 && strspn(s, "0123456789") == len;
    unsigned long long v = digits ? strtoull(s, NULL, 10) : 0;
    if (digits && v >= min && (max == 0 || v <= max)) {
        *out = v;
        return 0;
    }
    if (max == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter '%s': \"%.32s\" is not an integer of %llu or more", name, s,
                          min);
    return errmsg_set(em, ERR_INVALID_ARGUMENT,
                      "parameter '%s': \"%.32s\" is not an integer from %llu to %llu", name, s, min,
                      max);
}

/* maxNodes: absent or 0 -> default for JSON and SVG (pictures of millions of
 * frames help no one), no truncation for folded/pprof/speedscope;
 * values above the configured limit are lowered to it (as Pyroscope does). */
int query_parse_max_nodes(const char *s, query_format_t f, const query_limits_t *lim, size_t *out,
                          errmsg_t *em)
{
    size_t dflt = f == QUERY_FORMAT_JSON || f == QUERY_FORMAT_SVG ? QUERY_DEFAULT_MAX_NODES : 0;
    if (dflt > lim->max_nodes_limit) dflt = lim->max_nodes_limit;
    *out = dflt;
    unsigned long long v = 0;
    int rc = query_parse_uint_param("maxNodes", s, 0, 0, &v, em);
    if (rc != 0 || v == 0) return rc;
    if (v < 2)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'maxNodes': must be at least 2 (the root and `other`)");
    *out = v > lim->max_nodes_limit ? lim->max_nodes_limit : (size_t)v;
    return 0;
}

/* Parameter limit l: 1..max, dflt when absent. */
static int parse_limit(const char *l, size_t dflt, int max, size_t *out, errmsg_t *em)
{
    unsigned long long v = dflt;
    int rc = query_parse_uint_param("limit", l, 1, (unsigned long long)max, &v, em);
    *out = (size_t)v;
    return rc;
}

/* search of the top functions answer (query_search_check). */
static int parse_search(const char *q, query_spec_t *s, errmsg_t *em)
{
    int rc = query_search_check(q, em);
    if (rc != 0 || q == NULL || q[0] == 0) return rc;
    return (s->top_search = strdup(q)) == NULL ? ERR_NOMEM : 0;
}

/* limit (1..QUERY_TOP_MAX_LIMIT, default QUERY_TOP_DEFAULT_LIMIT), by
 * (self | total) and search of the top functions answer. */
static int parse_top(const query_params_t *p, query_spec_t *s, errmsg_t *em)
{
    int rc = parse_limit(p->limit, QUERY_TOP_DEFAULT_LIMIT, QUERY_TOP_MAX_LIMIT, &s->top_limit, em);
    if (rc != 0) return rc;
    if (p->by == NULL || p->by[0] == 0 || strcmp(p->by, "self") == 0)
        s->top_by_total = 0;
    else if (strcmp(p->by, "total") == 0)
        s->top_by_total = 1;
    else
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'by': \"%.32s\" is not self or total", p->by);
    return parse_search(p->search, s, em);
}

/* Parses a selector parameter into s->sel and keeps its text. */
static int parse_sel(const char *param, const char *text, query_spec_t *s, errmsg_t *em)
{
    int rc = query_selector_parse(param, text, strlen(text), &s->sel, em);
    if (rc == 0 && (s->selector = strdup(text)) == NULL) rc = ERR_NOMEM;
    return rc;
}

static int parse_render(const query_params_t *p, const query_limits_t *lim, int64_t now_ms,
                        query_spec_t *s, errmsg_t *em)
{
    if (p->query == NULL || p->query[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    int rc = parse_sel("query", p->query, s, em);
    if (rc != 0) return rc;
    if (query_selector_type(s->sel) == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'query': a profile type is required, e.g. "
                          "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"app\"}");
    query_span_sel_t spans; /* checked here so a bad span matcher is a 400 before any scatter */
    rc = query_selector_take_spans("query", s->sel, &spans, em);
    if (rc != 0) return rc;
    int64_t from, until;
    rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0 && (p->merged_tree || p->merged_functions)) {
        s->format = p->merged_tree ? QUERY_FORMAT_TREE : QUERY_FORMAT_FUNCTIONS;
        s->max_nodes = 0;
    } else {
        s->stream = p->stream;
        if (rc == 0) rc = query_parse_format(p->format, &s->format, em);
        if (rc == 0) rc = query_parse_max_nodes(p->max_nodes, s->format, lim, &s->max_nodes, em);
        if (rc == 0 && s->format == QUERY_FORMAT_TOP) rc = parse_top(p, s, em);
    }
    if (rc == 0) query_plan_make(from, until, now_ms, lim, &s->plan);
    return rc;
}

/* Label names/values: the label, then the optional match selector, then the
 * times (validated even when nothing filters by them). */
static int parse_labels(query_kind_t kind, const query_params_t *p, const query_limits_t *lim,
                        int64_t now_ms, query_spec_t *s, errmsg_t *em)
{
    if (kind == QUERY_KIND_LABEL_VALUES) {
        if (p->label == NULL || p->label[0] == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': required");
        if (strlen(p->label) > QUERY_LABEL_NAME_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': longer than %d bytes",
                              QUERY_LABEL_NAME_MAX);
        if ((s->label = strdup(p->label)) == NULL) return ERR_NOMEM;
    }
    s->stream = p->stream;
    int rc = 0;
    if (s->label != NULL && query_span_label_kind(s->label) != 0 &&
        (p->match == NULL || p->match[0] == 0))
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'match': required for the values of %s (the span index "
                          "is read for the series it selects, e.g. match={service_name=\"api\"})",
                          s->label);
    if (p->match != NULL && p->match[0] != 0) rc = parse_sel("match", p->match, s, em);
    for (size_t i = 0; rc == 0 && s->sel != NULL && i < query_selector_count(s->sel); i++) {
        const char *name, *value;
        query_match_op_t op;
        query_selector_matcher(s->sel, i, &name, &op, &value);
        /* a span matcher in match would select no series: an empty answer
         * that reads as "no such ids" */
        if (query_span_label_kind(name) != 0)
            rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                            "parameter 'match': label %s is a sample label and selects no "
                            "series; which span ids a trace holds is not stored (span and "
                            "trace trees are indexed apart): list the span ids of its service "
                            "over the trace's time range",
                            name);
    }
    int64_t from, until;
    if (rc == 0) rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0) query_plan_make(from, until, now_ms, lim, &s->plan);
    return rc;
}

/* Label shares: the selection (with its profile type: shares of one unit),
 * the label, the times. */
static int parse_shares(const query_params_t *p, const query_limits_t *lim, int64_t now_ms,
                        query_spec_t *s, errmsg_t *em)
{
    if (p->label == NULL || p->label[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': required");
    if (strlen(p->label) > QUERY_LABEL_NAME_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': longer than %d bytes",
                          QUERY_LABEL_NAME_MAX);
    if (p->query == NULL || p->query[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    if ((s->label = strdup(p->label)) == NULL) return ERR_NOMEM;
    int rc = parse_sel("query", p->query, s, em);
    if (rc == 0 && query_selector_type(s->sel) == NULL)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "parameter 'query': a profile type is required (shares of one unit)");
    int64_t from, until;
    if (rc == 0) rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0) query_plan_make(from, until, now_ms, lim, &s->plan);
    if (rc == 0 && p->groups) { /* groups come from series totals: whole series, no spans */
        query_span_sel_t sp;
        rc = query_selector_take_spans("query", s->sel, &sp, em);
        if (rc == 0 && sp.kind != 0)
            rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                            "parameter 'groupBy': not with span_id or trace_id selectors");
        s->groups = 1;
    }
    return rc;
}

/* Profiles: the selection (with its profile type: totals of one unit), the
 * times and the limit. */
static int parse_profiles(const query_params_t *p, const query_limits_t *lim, int64_t now_ms,
                          query_spec_t *s, errmsg_t *em)
{
    if (p->query == NULL || p->query[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    s->stream = p->stream;
    int rc = parse_limit(p->limit, QUERY_PROFILES_DEFAULT_LIMIT, QUERY_PROFILES_MAX_LIMIT,
                         &s->top_limit, em);
    if (rc == 0) rc = parse_sel("query", p->query, s, em);
    if (rc == 0 && query_selector_type(s->sel) == NULL)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "parameter 'query': a profile type is required (totals of one unit)");
    int64_t from, until;
    if (rc == 0) rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0) query_plan_make(from, until, now_ms, lim, &s->plan);
    return rc;
}

/* One profile: its id (normalized to lowercase: the nodes parse it again),
 * format and maxNodes. The plan is empty: a profile is found by key, not by
 * time. */
static int parse_profile(const query_params_t *p, const query_limits_t *lim, query_spec_t *s,
                         errmsg_t *em)
{
    query_profile_ref_t ref;
    size_t n = p->id != NULL ? strlen(p->id) : 0;
    if (n == 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "profile id: required");
    if (n == 32 && strspn(p->id, "0123456789abcdefABCDEF") == n)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "profile id \"%s\": that is a profile_id; open the profile by the id "
                          "GET /api/profiles lists beside it (%d hex digits, flamectl profiles)",
                          p->id, QUERY_PROFILE_ID_HEX);
    if (query_profile_ref_parse(p->id, n, &ref) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "profile id \"%.100s\": not an id of GET /api/profiles (%d hex digits)",
                          p->id, QUERY_PROFILE_ID_HEX);
    s->profile_token = ref.token;
    if ((s->label = malloc(QUERY_PROFILE_ID_HEX + 1)) == NULL) return ERR_NOMEM;
    query_profile_ref_write(&ref, s->label);
    s->stream = p->stream;
    int rc = query_parse_format(p->format, &s->format, em);
    if (rc == 0 && s->format == QUERY_FORMAT_TOP)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "parameter 'format': \"top\" is not served for one profile");
    if (rc == 0) rc = query_parse_max_nodes(p->max_nodes, s->format, lim, &s->max_nodes, em);
    memset(&s->plan, 0, sizeof s->plan);
    return rc;
}

int query_spec_parse(query_kind_t kind, const query_params_t *p, const query_limits_t *lim,
                     int64_t now_ms, query_spec_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    int rc;
    if (kind == QUERY_KIND_RENDER)
        rc = parse_render(p, lim, now_ms, out, em);
    else if (kind == QUERY_KIND_LABEL_NAMES || kind == QUERY_KIND_LABEL_VALUES)
        rc = parse_labels(kind, p, lim, now_ms, out, em);
    else if (kind == QUERY_KIND_LABEL_SHARES)
        rc = parse_shares(p, lim, now_ms, out, em);
    else if (kind == QUERY_KIND_PROFILES)
        rc = parse_profiles(p, lim, now_ms, out, em);
    else if (kind == QUERY_KIND_PROFILE)
        rc = parse_profile(p, lim, out, em);
    else
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT, "unknown query kind %d", (int)kind);
    if (rc != 0) query_spec_free(out);
    return rc;
}

void query_spec_free(query_spec_t *s)
{
    query_selector_free(s->sel);
    free(s->selector);
    free(s->label);
    free(s->top_search);
    memset(s, 0, sizeof *s);
}

const char *query_spec_service(const query_spec_t *s)
{
    size_t n = s->sel ? query_selector_count(s->sel) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        query_match_op_t op;
        query_selector_matcher(s->sel, i, &name, &op, &value);
        if (op == QUERY_MATCH_EQ && strcmp(name, LABEL_SERVICE_NAME) == 0 && value[0] != 0)
            return value;
    }
    return NULL;
}

void query_spec_args(const query_spec_t *s, query_partial_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->kind = s->kind;
    a->selector = s->selector;
    a->label = s->label;
    a->from_s = s->plan.from_s;
    a->until_s = s->plan.until_s;
    a->min_res = s->plan.min_res;
    int json = s->kind == QUERY_KIND_RENDER && s->format == QUERY_FORMAT_JSON;
    /* an averaged type needs the profile counts (with the timeline) in every format */
    a->timeline =
        json || (s->kind == QUERY_KIND_RENDER && query_type_average(query_selector_type(s->sel)));
    a->kept = json; /* used only with final_max_nodes */
    /* top of a summed type: functions summed by each share (an averaged
     * one's are of the average profile, made once every share came) */
    a->fns = query_spec_functions(s);
    a->counts = s->kind == QUERY_KIND_LABEL_SHARES; /* this process's gather reads them */
    a->pushes = a->counts;
    if (s->kind == QUERY_KIND_PROFILES) a->limit = s->top_limit;
}

int query_spec_functions(const query_spec_t *s)
{
    return s->kind == QUERY_KIND_RENDER &&
           (s->format == QUERY_FORMAT_TOP || s->format == QUERY_FORMAT_FUNCTIONS) &&
           !query_type_average(query_selector_type(s->sel));
}

size_t query_spec_final_max_nodes(const query_spec_t *s)
{
    /* top sums per function over the whole tree (gather.c, finish_render) */
    if (s->kind != QUERY_KIND_RENDER || s->format == QUERY_FORMAT_TOP ||
        s->format == QUERY_FORMAT_FUNCTIONS)
        return 0;
    return s->max_nodes;
}

int query_spec_forests(const query_spec_t *s)
{
    return query_spec_final_max_nodes(s) >= 2;
}

/* A single node answers as a cluster of one: one partial over every token,
 * gathered and encoded by the same code a coordinator uses. */
static int run_local(storage_t *st, const char *tenant, query_kind_t kind, const query_params_t *p,
                     const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    errmsg_t local = {{0}};
    if (em == NULL) em = &local;
    em->text[0] = 0;
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    query_spec_t spec;
    int rc = query_spec_parse(kind, p, lim, now_ms, &spec, em);
    if (rc != 0) return rc;
    query_partial_args_t a;
    query_spec_args(&spec, &a);
    a.final_max_nodes = query_spec_final_max_nodes(&spec); /* the only partial */
    query_partial_t part;
    query_gather_t *g = NULL;
    rc = query_partial_run(st, tenant, &a, lim, &part, em);
    if (rc == 0) rc = query_gather_new(&spec, lim, &g);
    if (rc == 0) rc = query_gather_add(g, &part, em);
    if (rc == 0) rc = query_gather_finish(g, NULL, out, em);
    query_partial_free(&part);
    query_gather_free(g);
    query_spec_free(&spec);
    if (rc != 0) buf_reset(&out->body);
    return rc;
}

int query_render(storage_t *st, const char *tenant, const query_params_t *p,
                 const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_RENDER, p, lim, now_ms, out, em);
}

int query_label_names(storage_t *st, const char *tenant, const query_params_t *p,
                      const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_LABEL_NAMES, p, lim, now_ms, out, em);
}

int query_label_shares(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_LABEL_SHARES, p, lim, now_ms, out, em);
}

int query_profiles(storage_t *st, const char *tenant, const query_params_t *p,
                   const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_PROFILES, p, lim, now_ms, out, em);
}

int query_profile(storage_t *st, const char *tenant, const query_params_t *p,
                  const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_PROFILE, p, lim, now_ms, out, em);
}

int query_label_values(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return run_local(st, tenant, QUERY_KIND_LABEL_VALUES, p, lim, now_ms, out, em);
}
