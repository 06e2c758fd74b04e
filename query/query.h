/* query.h — answers read requests from a node's storage.
 *
 * Owns selector parsing (query/selector.h), time parsing (query/timeparse.h),
 * the query plan over storage resolutions, merging blocks into one call tree,
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
    size_t max_nodes_limit;   /* largest accepted maxNodes */
    size_t max_tree_nodes;    /* nodes a merged tree may hold before refusing */
    size_t max_series;        /* series one query may touch */
    size_t max_output_bytes;  /* response body cap */
} query_limits_t;

#define QUERY_DEFAULT_MAX_NODES 8192
void query_limits_default(query_limits_t *l);

typedef struct query_result {
    buf_t body;
    const char *content_type; /* static string */
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
                      const query_limits_t *lim, int64_t now_ms, query_result_t *out,
                      errmsg_t *em);

/* GET /pyroscope/label-values?label=NAME: JSON array of strings.
 * label=__profile_type__ lists the profile type ids present. */
int query_label_values(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out,
                       errmsg_t *em);

#endif
