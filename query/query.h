/* query.h — answers read requests from a node's storage.
 *
 * Owns selector parsing, time parsing, the query plan over storage
 * resolutions, series resolution from the label index, merging blocks into one
 * call tree, the timeline,
 * maxNodes truncation, and the output encoders (flamebearer JSON, folded,
 * gzipped pprof). The node's HTTP layer passes raw parameters in and writes
 * the body out; it does no query logic itself.
 *
 * Threads: every function is reentrant; call from worker threads.
 * Ownership: the caller owns the query_result_t and frees it with
 * query_result_free(); parameters are borrowed for the call.
 */
#ifndef FLAMEDB_QUERY_QUERY_H
#define FLAMEDB_QUERY_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "storage/storage.h"

/* Raw query parameters as received (URL-decoded), NULL when absent. */
typedef struct query_params {
    const char *query;     /* TYPE{selector} */
    const char *from;      /* unix s/ms/us/ns, now, now-1h, YYYYMMDD; default now-1h */
    const char *until;     /* default now */
    const char *max_nodes; /* default QUERY_DEFAULT_MAX_NODES */
    const char *format;    /* json (default) | folded | pprof */
    const char *label;     /* label-values: the label name */
    const char *match;     /* label-names/values: optional {selector} filter */
} query_params_t;

typedef struct query_limits {
    size_t max_nodes_limit;  /* largest accepted maxNodes */
    size_t max_tree_nodes;   /* nodes a merged tree may hold before refusing */
    size_t max_series;       /* series one query may touch */
    size_t max_output_bytes; /* response body cap */
    /* Retention per resolution (seconds, 0 = forever), as the storage was
     * opened with; the plan avoids windows that retention already dropped. */
    int64_t retention_seconds[STORAGE_RESOLUTION_COUNT];
} query_limits_t;

#define QUERY_DEFAULT_MAX_NODES 8192
/* Defaults: max_nodes_limit 65536, max_tree_nodes 4M, max_series 10000,
 * max_output_bytes 64 MiB, retention from storage_options_default(). */
void query_limits_default(query_limits_t *l);

typedef struct query_result {
    buf_t body;
    const char *content_type;     /* static string */
    const char *content_encoding; /* NULL or "gzip" (never set for pprof: it is a gzip file) */
} query_result_t;

void query_result_init(query_result_t *r);
void query_result_free(query_result_t *r);

/* GET /pyroscope/render. Errors: ERR_INVALID_ARGUMENT with the bad parameter
 * named in em, ERR_LIMIT, ERR_IO. */
int query_render(storage_t *st, const char *tenant, const query_params_t *p,
                 const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em);

/* GET /pyroscope/label-names: JSON array of strings. */
int query_label_names(storage_t *st, const char *tenant, const query_params_t *p,
                      const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em);

/* GET /pyroscope/label-values?label=NAME: JSON array of strings.
 * label=__profile_type__ lists the profile type ids present. */
int query_label_values(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out,
                       errmsg_t *em);

/* ---- Building blocks, public for the CLI, the fuzz targets and the cluster
 * coordinator (which merges partial trees and then encodes them itself). ---- */

/* Selector `TYPE{name="v", name!="v", name=~"re", name!~"re"}`; TYPE and the
 * braces are each optional, `{}` is empty. Values are "double" or 'single'
 * quoted with backslash escapes (\\ \" \' \n \t \r), or `raw`. Regexes
 * are POSIX ERE, fully anchored (compiled as ^(re)$). A label a series lacks
 * reads as "" (so name="" matches series without it). */
#define QUERY_SELECTOR_MAX_BYTES 16384
#define QUERY_SELECTOR_MAX_MATCHERS 64
#define QUERY_LABEL_NAME_MAX 1024
#define QUERY_LABEL_VALUE_MAX 2048
#define QUERY_TYPE_MAX 512

typedef enum query_match_op {
    QUERY_MATCH_EQ = 0, /* = */
    QUERY_MATCH_NE,     /* != */
    QUERY_MATCH_RE,     /* =~ */
    QUERY_MATCH_NRE     /* !~ */
} query_match_op_t;

typedef struct query_selector query_selector_t;

/* Parses s[0..n). param names the request parameter in error reasons
 * ("parameter 'query': position 7: expected '='"). ERR_INVALID_ARGUMENT on bad
 * input. *out: caller owns; free with query_selector_free(). */
int query_selector_parse(const char *param, const char *s, size_t n, query_selector_t **out,
                         errmsg_t *em);
void query_selector_free(query_selector_t *sel);
/* Profile type id, or NULL when the selector has none; borrowed. */
const char *query_selector_type(const query_selector_t *sel);
size_t query_selector_count(const query_selector_t *sel);
/* i-th matcher (in input order); strings borrowed until free. */
void query_selector_matcher(const query_selector_t *sel, size_t i, const char **name,
                            query_match_op_t *op, const char **value);
/* 1 if the label set satisfies every matcher (the type is not checked here). */
int query_selector_matches(const query_selector_t *sel, const labels_t *l);
/* Appends the canonical text of sel; parsing it yields the same selector. */
int query_selector_format(const query_selector_t *sel, buf_t *out);

/* Time: unix s/ms/us/ns by magnitude (< 1e10 s, < 1e13 ms, < 1e16 us, else
 * ns), `now`, `now-N{s,m,h,d,w}`, YYYYMMDD (UTC midnight). Result in unix ms.
 * ERR_INVALID_ARGUMENT naming param. */
int query_time_parse(const char *param, const char *s, int64_t now_ms, int64_t *out_ms,
                     errmsg_t *em);
/* from/until of p with defaults now-1h / now; from >= until is an error. */
int query_time_range(const query_params_t *p, int64_t now_ms, int64_t *from_ms, int64_t *until_ms,
                     errmsg_t *em);

/* Plan: the windows a query reads. A profile belongs to the 10 s window that
 * holds its time; a query [from, until) selects the windows whose start w
 * satisfies from <= w < until (so adjacent ranges partition the data). The
 * plan covers those windows with the coarsest aligned windows that fit. */
#define QUERY_PLAN_MAX_PIECES 16
typedef struct query_plan_piece {
    int res;         /* index into storage_resolutions */
    int64_t from_s;  /* first window start (aligned to the resolution) */
    int64_t until_s; /* end of the last window (exclusive) */
} query_plan_piece_t;

typedef struct query_plan {
    int64_t from_s, until_s; /* the covered range, on the 10 s grid */
    int min_res;             /* finest resolution used (retention may raise it) */
    size_t n;
    query_plan_piece_t piece[QUERY_PLAN_MAX_PIECES];
} query_plan_t;

/* Plans [from_ms, until_ms). When retention dropped the finer windows at the
 * old edge, the range is widened outward to the finest resolution still kept
 * there (documented in docs/query.md). lim may be NULL (no retention). */
void query_plan_make(int64_t from_ms, int64_t until_ms, int64_t now_ms, const query_limits_t *lim,
                     query_plan_t *out);
/* Covers [from_s, until_s) (multiples of the min_res window) with windows of
 * resolution index min_res..max_res. */
void query_plan_range(int64_t from_s, int64_t until_s, int min_res, int max_res, query_plan_t *out);

/* Series a selector picks, resolved from the label index. Caller owns
 * (query_series_free). ERR_LIMIT past lim->max_series. */
typedef struct query_series {
    size_t n;
    uint64_t *token;
    uint64_t *series_id;
    char *spy_name; /* pyroscope_spy shared by all series, or NULL */
} query_series_t;
int query_series_select(storage_t *st, const char *tenant, const query_selector_t *sel,
                        const query_limits_t *lim, query_series_t *out, errmsg_t *em);
void query_series_free(query_series_t *s);

/* Merges the blocks of every series over the plan into dst (dst += blocks).
 * ERR_LIMIT when dst would exceed its max_nodes, ERR_CORRUPT on bad blocks. */
int query_merge_series(storage_t *st, const char *tenant, const query_series_t *ser,
                       const query_plan_t *plan, calltree_t *dst, errmsg_t *em);
/* Loads the name/file of every symbol of t into dst. */
int query_load_symbols(storage_t *st, const char *tenant, const calltree_t *t, symtab_t *dst);

/* maxNodes truncation: a tree of at most max_nodes nodes (root and `other`
 * nodes included; max_nodes >= 2) keeping the heaviest nodes by |total|; each
 * parent's hidden children fold into one SYM_OTHER child whose self is their
 * summed totals, so every kept node's total and the root total are unchanged.
 * Ties break on content, not on node order, so the result does not depend on
 * merge order. *out: caller owns (calltree_free). */
int query_truncate(const calltree_t *t, size_t max_nodes, calltree_t **out);

/* Timeline: samples[i] is the total of the windows in
 * [start_s + i*step_s, start_s + (i+1)*step_s) within the plan's range. */
typedef struct query_timeline {
    int64_t start_s;
    int64_t step_s;
    size_t n;
    int64_t *samples; /* owned; free with query_timeline_free */
} query_timeline_t;
/* step = range/1500 rounded up to a multiple of the coarsest resolution
 * not above it (so always a multiple of 10 s, at least 10 s); buckets are
 * aligned to multiples of the step, so the first may start before the plan;
 * the samples add up to exactly the plan's total. */
int query_timeline_build(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, query_timeline_t *out, errmsg_t *em);
void query_timeline_free(query_timeline_t *tl);

/* Encoders. Children are ordered by name (then file, then symbol id) so the
 * bytes depend only on the tree's content. syms must know every symbol of t;
 * unknown ones render as "unknown 0x<id>". */
int query_encode_flamebearer(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                             const char *spy_name, const query_timeline_t *tl, buf_t *out);
/* `root;...;leaf self` lines for every node with a non-zero self. */
int query_encode_folded(const calltree_t *t, const symtab_t *syms, buf_t *out);
/* Gzipped pprof Profile with one sample type taken from profile_type. */
int query_encode_pprof(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                       int64_t time_ns, int64_t duration_ns, buf_t *out);

#endif
