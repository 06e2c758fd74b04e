/* query.h — answers read requests from a node's storage.
 *
 * Owns selector parsing, time parsing, the query plan over storage
 * resolutions, series resolution from the label index, merging blocks into one
 * call tree, the timeline,
 * maxNodes truncation, and the output encoders (flamebearer JSON, folded,
 * gzipped pprof, SVG flame graphs, speedscope files). The node's HTTP layer passes raw parameters
 * in and writes the body out; it does no query logic itself.
 *
 * Threads: every function is reentrant; call from worker threads.
 * Ownership: the caller owns the query_result_t and frees it with
 * query_result_free() (its stream too, unless taken: a query_stream_t owns
 * the tree and names it writes from, freed with query_stream_free());
 * parameters are borrowed for the call.
 */
#ifndef FLAMEDB_QUERY_QUERY_H
#define FLAMEDB_QUERY_QUERY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/assist.h"
#include "common/buf.h"
#include "common/err.h"
#include "storage/storage.h"

/* Raw query parameters as received (URL-decoded), NULL when absent. */
typedef struct query_params {
    const char *query;     /* TYPE{selector} */
    const char *from;      /* any form of query_time_parse; default now-1h */
    const char *until;     /* default now */
    const char *max_nodes; /* default QUERY_DEFAULT_MAX_NODES */
    const char *format;    /* json (default) | folded | pprof | svg | speedscope */
    const char *label;     /* label-values: the label name */
    const char *match;     /* label-names/values: optional {selector} filter */
    const char *limit;     /* top: functions listed, default QUERY_TOP_DEFAULT_LIMIT */
                           /* profiles: default QUERY_PROFILES_DEFAULT_LIMIT */
    const char *by;        /* top: self (default) | total */
    const char *search;    /* top: only the functions whose name contains it (query_encode_top) */
    const char *id; /* profile: the listing's id of one stored profile (GET /api/profiles/ID) */
    /* Not a request parameter: render the merged, untruncated call tree and
     * its symbols (query_diff's input) instead of an encoding; format and
     * maxNodes are then ignored. */
    int merged_tree;
    /* Not a request parameter: render each function's self and total over
     * the merged, untruncated call tree and their names (a regression
     * report's bucket, query_encode_functions) instead of an encoding. */
    int merged_functions;
    /* Not a request parameter: answer label shares as the member
     * "groups":{"VALUE":{timeline},...} a render with groupBy=LABEL adds
     * (values in strcmp order, no partial members: the caller shows those). */
    int groups;
    /* Not a request parameter: a large folded, SVG, JSON or pprof render
     * (or one stored profile) may be answered as a stream
     * (query_result_t.stream, query_limits_t.stream_min_bytes). */
    int stream;
    /* Not a request parameter: bytes the same request already holds in
     * query-memory-bytes elsewhere (a render-diff's side that answered,
     * while the other runs): counted as this query's own when a refusal
     * tells "could never fit" (413) from "busy" (503). */
    size_t held_beside;
} query_params_t;

typedef struct query_limits {
    size_t max_nodes_limit;  /* largest accepted maxNodes */
    size_t max_tree_nodes;   /* nodes a merged tree may hold before refusing */
    size_t max_series;       /* series one query may touch */
    size_t max_output_bytes; /* response body cap */
    size_t max_span_ids;     /* distinct ids one span_id/trace_id label-values answer lists */
    /* An answer of at least this many bytes is a stream
     * (query_result_t.stream) when its caller asks for one
     * (query_params_t.stream): a folded render without maxNodes (its exact
     * size), an SVG, a JSON flame graph or a pprof (from a lower bound of
     * its size: each frame's, level entry's or stack entry's least bytes);
     * 0: never. */
    size_t stream_min_bytes;
    /* Retention per resolution (seconds, 0 = forever), as the storage was
     * opened with; the plan avoids windows that retention already dropped. */
    int64_t retention_seconds[STORAGE_RESOLUTION_COUNT];
    /* Helper threads a render hands its timeline to while it merges the
     * tree, when one is idle (common/assist.h; borrowed; NULL: none). */
    assist_t *assist;
} query_limits_t;

#define QUERY_DEFAULT_MAX_NODES 8192
/* Defaults: max_nodes_limit 65536, max_tree_nodes 4M, max_series 10000,
 * max_output_bytes 64 MiB, max_span_ids 10000, retention from
 * storage_options_default(). */
void query_limits_default(query_limits_t *l);

/* An answer produced in slices as its reader takes them, instead of whole
 * in memory: it owns what it is produced from (a render's merged tree and
 * names) and frees it with query_stream_free. One thread at a time (the
 * node's loop: each slice is a short walk). */
typedef struct query_stream query_stream_t;
/* query_stream_length of an answer whose size is not known before it is
 * written (an SVG, a gzipped pprof): sent with chunked transfer encoding. */
#define QUERY_STREAM_LENGTH_UNKNOWN UINT64_MAX
/* Bytes a stream is asked for at a time when drained whole. */
#define QUERY_STREAM_SLICE_BYTES (256 * 1024)
/* The exact number of bytes the stream produces in all, or
 * QUERY_STREAM_LENGTH_UNKNOWN. */
uint64_t query_stream_length(const query_stream_t *s);
/* About the heap bytes s holds, for memory budgets (constant for its life). */
size_t query_stream_bytes(const query_stream_t *s);
/* Appends the next bytes of the answer to out: at least want bytes unless
 * the answer ends first (*done is then 1); a folded answer in whole lines.
 * A gzipped pprof ends a slice after one gzip member instead (some bytes,
 * maybe fewer than want: each slice compresses at most 256 KiB).
 * ERR_INTERNAL if more or fewer bytes than a known query_stream_length
 * would come. */
int query_stream_next(query_stream_t *s, buf_t *out, size_t want, int *done);
/* Appends the rest of the answer to out (the same bytes the slices make). */
int query_stream_drain(query_stream_t *s, buf_t *out);
/* NULL is a no-op. */
void query_stream_free(query_stream_t *s);
/* Most buffers query_stream_of_bufs sends in turn. */
#define QUERY_STREAM_MAX_BUFS 4
/* An answer already written in memory (a whole body, or the parts of one:
 * groupBy's render and groups) as a stream of its n (at most
 * QUERY_STREAM_MAX_BUFS) buffers' bytes in turn, of known length, so it can
 * be sent, and stay counted, until its last byte is written. Takes each
 * buffer (buf_init'ed in parts), also on failure. query_stream_bytes: their
 * capacities. */
int query_stream_of_bufs(buf_t *parts, size_t n, query_stream_t **out);

typedef struct query_result {
    buf_t body;
    const char *content_type;     /* static string */
    const char *content_encoding; /* NULL or "gzip" (never set for pprof: it is a gzip file) */
    /* NULL, or the answer (body then empty), owned: query_result_free frees it */
    query_stream_t *stream;
    /* Where the finish of a flame graph spent its time (ns, a render's
     * Server-Timing): loading the kept nodes' names, and writing the answer
     * in its format (a streamed answer's writing, as it is sent, is not in
     * it); the rest was truncation and selection. 0 for other queries. */
    uint64_t names_ns, encode_ns;
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

/* GET /api/label-shares?query=TYPE{selector}&label=NAME: each value of NAME
 * among the selected series with its total over the range and its share,
 * {"label", "total", "values": [{"value", "total", "share"}]}, largest first
 * (series without the label count under ""). */
int query_label_shares(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out,
                       errmsg_t *em);

/* GET /api/profiles?query=TYPE{selector}&limit=N: the stored profiles of
 * the selection within the range, newest first (then by profile id, also
 * descending, then by id),
 * {"profiles": [{"time", "id", "total", "labels"}], "truncated"}: one entry
 * per (profile, series) of the selection, at most limit of them. */
#define QUERY_PROFILES_DEFAULT_LIMIT 100
#define QUERY_PROFILES_MAX_LIMIT 10000
int query_profiles(storage_t *st, const char *tenant, const query_params_t *p,
                   const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em);

/* GET /api/profiles/ID?format=json|folded|pprof|svg|speedscope&maxNodes=N:
 * one stored profile, exactly its own samples (p->id, format, max_nodes).
 * ID is the listing's "id": QUERY_PROFILE_ID_HEX hex digits of token,
 * series id, time (ns, offset binary) and profile id (16 + 16 + 16 + 32):
 * the token locates the series on the ring, the rest is its storage key.
 * ERR_INVALID_ARGUMENT for a malformed id, ERR_NOT_FOUND for one not stored
 * (unknown, past profile retention, or its tree was too large). */
#define QUERY_PROFILE_ID_HEX 80
int query_profile(storage_t *st, const char *tenant, const query_params_t *p,
                  const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em);

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

/* Span selection (docs/query.md). span_id and trace_id (and profile_id, which
 * ingest reads as span_id) are sample labels, not series labels: a render
 * selector that matches on one is answered from the span index. */
#define QUERY_SPAN_IDS_MAX 256
typedef struct query_span_sel {
    uint8_t kind; /* STORAGE_SPAN_KIND_*, or 0: the selector has no span matcher */
    size_t n;
    uint64_t id[QUERY_SPAN_IDS_MAX]; /* storage_span_id of each value, distinct */
} query_span_sel_t;
/* STORAGE_SPAN_KIND_SPAN for span_id and profile_id, STORAGE_SPAN_KIND_TRACE
 * for trace_id, else 0: the labels answered from the span index. */
int query_span_label_kind(const char *name);
/* Moves the span matcher of sel into *out (sel keeps the other matchers).
 * Accepted: name="id" and name=~"id1|id2|..." (literal ids). Anything else
 * on these labels (!=, !~, other regexes, two span matchers, more than
 * QUERY_SPAN_IDS_MAX ids) is ERR_INVALID_ARGUMENT naming param. */
int query_selector_take_spans(const char *param, query_selector_t *sel, query_span_sel_t *out,
                              errmsg_t *em);

/* Time: unix s/ms/us/ns by magnitude (< 1e10 s, < 1e13 ms, < 1e16 us, else
 * ns), `now`, `now-N{s,m,h,d,w}`, YYYYMMDD (UTC midnight),
 * YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|+HH:MM|-HH:MM] (UTC without an offset).
 * Result in unix ms.
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

/* When a running query must stop early: its flag is set (by another
 * thread: the query was cancelled) or its deadline passed. Borrowed by the
 * query for its run. */
typedef struct query_stop {
    const atomic_int *flag;   /* non-zero: stop; NULL: never */
    int64_t deadline_unix_ms; /* 0: none */
} query_stop_t;

/* ERR_TIMEOUT (the reason in em) when st says stop, else 0; st may be NULL. */
int query_stop_check(const query_stop_t *st, errmsg_t *em);

typedef struct query_plan {
    int64_t from_s, until_s; /* the covered range, on the 10 s grid */
    int min_res;             /* finest resolution used (retention may raise it) */
    size_t n;
    query_plan_piece_t piece[QUERY_PLAN_MAX_PIECES];
    const query_stop_t *stop; /* checked per series (merge, timeline); NULL: runs to its end */
    alloc_charge_t *charge;   /* the merge's working memory is charged here; NULL: not charged */
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
    char *spy_name;     /* pyroscope_spy shared by all series, or NULL */
    uint8_t *aggregate; /* per series: 1 for a service aggregate, which holds no profile
                           trees (query_aggregate_select); NULL: none is */
} query_series_t;
int query_series_select(storage_t *st, const char *tenant, const query_selector_t *sel,
                        const query_limits_t *lim, query_series_t *out, errmsg_t *em);
void query_series_free(query_series_t *s);

/* Merges the blocks of every series over the plan into dst (dst += blocks).
 * ERR_LIMIT when dst would exceed its max_nodes, ERR_CORRUPT on bad blocks.
 * max_nodes >= 2 and dst empty: dst may instead get the merge already
 * truncated to max_nodes, exactly as query_truncate would make it (done when
 * that is exact and the untruncated merge would fit in dst; keep.c). */
int query_merge_series(storage_t *st, const char *tenant, const query_series_t *ser,
                       const query_plan_t *plan, size_t max_nodes, calltree_t *dst, errmsg_t *em);
/* Loads the name/file of every symbol of t into dst. */
int query_load_symbols(storage_t *st, const char *tenant, const calltree_t *t, symtab_t *dst);

/* maxNodes truncation: a tree of at most max_nodes nodes (root and `other`
 * nodes included; max_nodes >= 2) keeping the heaviest nodes by |total|; each
 * parent's hidden children fold into one SYM_OTHER child whose self is their
 * summed totals, so every kept node's total and the root total are unchanged.
 * Ties break on content, not on node order, and nodes whose total is 0 are
 * dropped with their subtrees, so the result does not depend on merge order.
 * *out: caller owns (calltree_free). */
int query_truncate(const calltree_t *t, size_t max_nodes, calltree_t **out);
/* The same truncation of the merge of the tokens' forests, built into dst
 * (empty; keep.c) without building the merge. ERR_INVALID_ARGUMENT when a
 * forest is not tabs[i].nonneg or the root total passes INT64_MAX (then only
 * query_truncate of the whole tree is exact), or max_nodes < 2. */
int query_truncate_tabs(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                        calltree_t *dst);
/* Whether a node below the root of t has a total of 0 (query_truncate drops
 * them: whether such an empty node exists depends on the merge order). */
int query_tree_has_empty(const calltree_t *t);

/* Timeline: samples[i] is the total of the windows in
 * [start_s + i*step_s, start_s + (i+1)*step_s) within the plan's range. */
/* A push split into pieces (storage_series_write_t.piece) that timeline
 * bucket `bucket` holds: its short id (storage_wprof_short_id, big-endian
 * as a number, so numeric order is the byte order). */
typedef struct query_push {
    uint64_t id;
    uint32_t bucket;
} query_push_t;

typedef struct query_timeline {
    int64_t start_s;
    int64_t step_s;
    size_t n;
    int64_t *samples; /* owned; free with query_timeline_free */
    /* An averaged type (query_type_average): counts[i] is the number of
     * profiles (one per series and push) in bucket i, and profiles their sum
     * over the plan; the timeline shows samples[i] / counts[i] and the flame
     * graph every value / profiles (both rounded down). counts is owned and
     * NULL for a summed type. Each push counts once however many of its
     * series (pieces of a split push, storage_series_write_t.piece) the
     * selection names: such pushes wait in pushes (owned), united by id
     * within and across nodes' answers, until query_timeline_unite adds
     * them to counts and profiles. */
    int64_t *counts;
    int64_t profiles;
    query_push_t *pushes;
    size_t npushes, pushes_cap;
} query_timeline_t;
/* 1 when the profile type is a gauge, a snapshot of what is held at one
 * time, which Pyroscope aggregates with "average" (in-use memory
 * `inuse_space`/`inuse_objects`, `goroutine(s)`): its timeline averages the
 * profiles of each bucket and its flame graph the profiles of the range.
 * 0 for every other type (summed), and for NULL. */
int query_type_average(const char *profile_type);
/* Gives tl (shaped, counts NULL) its zeroed counts array. */
int query_timeline_average(query_timeline_t *tl);
/* Counts into tl->counts and tl->profiles the stored profiles of the series
 * of ser (real series, not service aggregates) whose time lies in the
 * plan's range, each in the bucket of its 10 s window: a window's count
 * (window_profiles) where it is exact, else their profile_trees entries
 * (one per counted profile, kept tree or not, in time order, so the scan
 * reads only the range's), within profile-retention. Pieces of split
 * pushes go to tl->pushes by id instead, sorted and each once
 * (query_timeline_unite counts them). */
int query_timeline_count(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, query_timeline_t *tl, errmsg_t *em);
/* step = range/1500 rounded up to a multiple of the coarsest resolution
 * not above it (so always a multiple of 10 s, at least 10 s); buckets are
 * aligned to multiples of the step, so the first may start before the plan;
 * the samples add up to exactly the plan's total. */
int query_timeline_build(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, query_timeline_t *out, errmsg_t *em);
void query_timeline_free(query_timeline_t *tl);
/* Adds push id (STORAGE_WPROF_ID_LEN bytes) to bucket i of tl->pushes. A
 * full array is first sorted with each push kept once (one push's pieces
 * from several series or answers), and grows only when that leaves it
 * more than half full: it holds about twice the distinct pushes at most. */
int query_timeline_add_push(query_timeline_t *tl, size_t i, const uint8_t *id);
/* Sorts tl->pushes by bucket and id, each pair once. */
void query_timeline_sort_pushes(query_timeline_t *tl);
/* Counts each push of tl->pushes once in its bucket (counts, profiles)
 * and empties them: when every answer's pushes are in. */
void query_timeline_unite(query_timeline_t *tl);

/* Span selection: sums into dst the span trees of sp recorded for the series
 * of ser in the 10 s windows w with plan->from_s <= w < plan->until_s. tl
 * (may be NULL; shaped by query_timeline_init) gets each tree's total in its
 * window's bucket. *partial_trees (may be NULL) grows by the trees summed
 * that may leave profiles out (STORAGE_SPAN_PARTIAL). ERR_LIMIT past dst's
 * max_nodes; ERR_TIMEOUT when plan->stop says so (checked before each
 * tree); what dst grows to is charged to plan->charge (may be NULL) after
 * each tree, ERR_UNAVAILABLE naming query-memory-bytes past it, and given
 * back before it returns (the caller counts the partial). */
int query_merge_spans(storage_t *st, const char *tenant, const query_span_sel_t *sp,
                      const query_series_t *ser, const query_plan_t *plan, calltree_t *dst,
                      query_timeline_t *tl, uint64_t *partial_trees, errmsg_t *em);

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
/* A self-contained SVG flame graph (icicle: root on top), frames colored by
 * a hash of their package, a <title> tooltip per frame (name, value with
 * unit, percentage of the total); `other` frames of truncation are grey.
 * title (may be NULL) heads the image; note (may be NULL) is shown in red
 * after the total (a partial answer says so in the picture itself). */
int query_encode_svg(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                     const char *title, const char *note, buf_t *out);
/* A speedscope file (one "sampled" profile): one sample per node with a
 * non-zero self, its stack root first, weight = self; the weights add up to
 * the root total. name (may be NULL) names the profile. */
int query_encode_speedscope(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                            const char *name, buf_t *out);

/* Top functions (GET /api/top, docs/api.md): per function (name + file) its
 * self (value of the stacks where it is the leaf) and total (value of the
 * stacks where it appears; a recursive function counts once per stack), from
 * the whole untruncated tree. limit is bounded by QUERY_TOP_MAX_LIMIT so the
 * answer stays small; range_s is the queried range in seconds (the plan's), the
 * denominator of the CPU types' cores. */
#define QUERY_TOP_DEFAULT_LIMIT 100
#define QUERY_TOP_MAX_LIMIT 10000
/* Longest search text of /api/top and /api/diff, in bytes: it is what a
 * person typed or pasted into the web UI's search box, and the bound keeps
 * each name's comparison short. */
#define QUERY_SEARCH_MAX 1024
typedef struct query_top_opts {
    size_t limit;
    int by_total;       /* sort by total, else by self */
    int64_t range_s;    /* seconds the query covers */
    const char *search; /* NULL or "": every function; else valid UTF-8 of at most
                           QUERY_SEARCH_MAX bytes (query_spec_parse checks it) */
} query_top_opts_t;
/* {"unit","total","rangeSeconds","cores","functionCount","functions":[...]}
 * with functions sorted by self or total (descending; ties by the other value,
 * then name, file). cores members only for CPU types (sample type cpu in
 * nanoseconds): value / 1e9 / range_s; null otherwise. With a search, only
 * the functions whose name contains it are listed, letters A-Z matching a-z
 * (the web UI's flame-graph search matches the same way), and "matchCount"
 * after "functionCount" says how many there are; functionCount still counts
 * every function. */
int query_encode_top(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                     const query_top_opts_t *o, buf_t *out);
/* ================================================================ render-diff
 *
 * GET /pyroscope/render-diff compares two selections (two deployments, two
 * time ranges). The coordinator renders each side through scatter-gather
 * with merged_tree set, then query_diff_render joins the two trees into one
 * flamebearer of format "double" (docs/api.md). */

/* The two sides' parameters of a render-diff request. */
typedef struct query_diff_params {
    query_params_t left, right; /* query, from, until of each side */
    const char *max_nodes;
    const char *format; /* json (default), svg, speedscope or folded; others refused */
    /* Not a request parameter: a folded answer without maxNodes of at least
     * query_limits_t.stream_min_bytes is a stream (query_result_t.stream). */
    int stream;
} query_diff_params_t;

/* Reads leftQuery, leftFrom, ... into d from a parameter getter (the HTTP
 * request's); strings borrowed from the getter. */
void query_diff_params_read(query_diff_params_t *d,
                            const char *(*get)(const void *ctx, const char *name), const void *ctx);

/* Checks what does not need data: both queries present with the same
 * profile type, the format, maxNodes. ERR_INVALID_ARGUMENT naming the
 * parameter. */
int query_diff_check(const query_diff_params_t *d, const query_limits_t *lim, errmsg_t *em);

/* What a query's working memory is charged to (the node's
 * query-memory-bytes): take returns 0 when n more bytes fit, else nonzero
 * (nothing taken); give hands n bytes back. The report cache calls them with
 * its lock held (they must not call the cache); query_report_run and
 * query_diff_render_charged from their pool thread. NULL functions: nothing
 * charged. */
typedef struct query_report_charge {
    int (*take)(void *ctx, size_t n);
    void (*give)(void *ctx, size_t n);
    void *ctx;
} query_report_charge_t;

/* Joins the two merged trees (the bodies of renders with merged_tree set)
 * into the diff flamebearer: the union of both trees, each node with its
 * left and right total and self, truncated to maxNodes jointly (a node is
 * kept by its larger share of either side; hidden children fold into
 * `other` on each side, so every total is unchanged), names ordered as in a
 * render. format=svg draws that shape as a diff flame graph (widths from the
 * right side, colors by change of share); format=speedscope writes two
 * sampled profiles "left: <leftQuery>" and "right: <rightQuery>" over one
 * frames table, weights adding up to each side's ticks; format=folded writes
 * `stack left right` lines (untruncated unless maxNodes is given). partial_json as for
 * query_gather_finish. */
int query_diff_render(const query_diff_params_t *d, const query_limits_t *lim, const uint8_t *left,
                      size_t left_len, const uint8_t *right, size_t right_len,
                      const char *partial_json, query_result_t *out, errmsg_t *em);
/* query_diff_render with the join's decoded trees (both sides, their union
 * and the answer's shape, far larger than the encoded bodies) and the
 * answer (with what its encoder holds beside it) charged to charge (may be
 * NULL) before they are made: past the budget ERR_UNAVAILABLE. Everything
 * is given back before it returns but, when charged is not NULL, the
 * answer's bytes after a success: they stay taken, *charged saying how
 * many (0 otherwise), and the caller gives them back once the answer is
 * sent. */
int query_diff_render_charged(const query_diff_params_t *d, const query_limits_t *lim,
                              const uint8_t *left, size_t left_len, const uint8_t *right,
                              size_t right_len, const char *partial_json,
                              const query_report_charge_t *charge, size_t *charged,
                              query_result_t *out, errmsg_t *em);

/* ================================================================ regression report
 *
 * GET /api/diff (docs/api.md "Regression report"): per function, its
 * inclusive share of each side's total, the change between the sides, and
 * whether the change stands out of the variation between the side's time
 * buckets. Each side's range is split into buckets on its window grid
 * (query_report_plan); the coordinator renders every bucket of both sides
 * through scatter-gather with merged_functions set, then query_report_run joins
 * them. The whole-range numbers are the sums over the buckets (which
 * partition the range), so they are exact. */
#define QUERY_REPORT_DEFAULT_LIMIT 50
#define QUERY_REPORT_MAX_LIMIT 1000
/* buckets per side: up to 30, each at least one storage window */
#define QUERY_REPORT_MAX_BUCKETS 30
/* non-empty buckets each side needs before any of its functions is tested */
#define QUERY_REPORT_MIN_BUCKETS 5
/* family-wise error rate of the Holm correction over the functions tested */
#define QUERY_REPORT_ALPHA 0.01

/* One bucket's render parameters; p's strings point into the bucket. */
typedef struct query_report_bucket {
    char from[24], until[24]; /* unix seconds */
    query_params_t p;         /* the side's query over [from, until), merged_functions set */
} query_report_bucket_t;

/* What a report reads. Holds pointers into itself and the request: do not
 * copy or move it once planned. */
typedef struct query_report_plan {
    char type[QUERY_TYPE_MAX + 1]; /* profile type of both sides */
    size_t limit;
    const char *search;            /* NULL or "": every function (borrowed from the request) */
    int64_t from_s[2], until_s[2]; /* each side's range on its window grid */
    size_t nbuckets[2];
    query_report_bucket_t bucket[2][QUERY_REPORT_MAX_BUCKETS];
} query_report_plan_t;

/* Checks the request as render-diff does (both queries, same profile type)
 * plus limit and search (as /api/top's: query_spec_parse), and splits each
 * side's range into buckets: W windows of the side's plan become min(W,
 * QUERY_REPORT_MAX_BUCKETS) buckets of floor/ceil(W/B) windows. Strings of
 * d and search are borrowed until out is freed with the request.
 * ERR_INVALID_ARGUMENT naming the parameter. */
int query_report_plan(const query_diff_params_t *d, const char *limit, const char *search,
                      const query_limits_t *lim, int64_t now_ms, query_report_plan_t *out,
                      errmsg_t *em);

/* One function's row of the report. */
typedef struct query_report_row {
    uint64_t sym;
    const char *name, *file; /* borrowed from the symbols (or the report) */
    int64_t self[2], total[2];
    double share[2]; /* total / ticks of the side, 0..1 (0 for an empty side) */
    double change;   /* percentage points: 100 * (share[1] - share[0]) */
    double t, df, p; /* Welch's t, its degrees of freedom, two-sided p (1: not tested) */
    int tested;      /* both sides had QUERY_REPORT_MIN_BUCKETS non-empty buckets */
    int significant; /* rejected by Holm at QUERY_REPORT_ALPHA among the tested */
} query_report_row_t;

typedef struct query_report {
    int64_t ticks[2];         /* each side's total (the sum of its buckets') */
    size_t buckets[2];        /* non-empty buckets (the samples) per side */
    size_t nrows;             /* every function of either side */
    size_t tested;            /* the family of the correction */
    query_report_row_t *rows; /* sorted by |change| descending, then name, file */
    char *unk;                /* names of unknown symbols */
    char *names;              /* NULL, or every row's name and file (query_report_own_names) */
    size_t names_len;
} query_report_t;

/* The report of bucket trees: trees[s][0..n[s]) are side s's buckets, syms
 * names their symbols (borrowed; may lack some). out: caller owns; free with
 * query_report_free(). */
int query_report_compute(const calltree_t *const *trees[2], const size_t n[2], const symtab_t *syms,
                         query_report_t *out);
void query_report_free(query_report_t *r);
/* Copies every row's name and file into r itself, so r outlives the symbols
 * it was computed with (the report cache keeps it). ERR_NOMEM. */
int query_report_own_names(query_report_t *r);
/* Bytes r holds (rows, names): what the report cache charges. */
size_t query_report_bytes(const query_report_t *r);

/* The JSON answer (docs/api.md) of r with at most limit functions; seconds
 * are each side's range (per-second rates are added when they differ).
 * With a search (NULL or "": none), only the functions whose name contains
 * it are listed (in r's order; matched as query_encode_top's search), and
 * "matchCount" after "functionCount" counts them; the counts, shares, tests
 * and marks stay those of every function. partial_json as for
 * query_gather_finish. */
int query_report_encode(const query_report_t *r, const char *profile_type, size_t limit,
                        const char *search, const int64_t seconds[2], const char *report_id,
                        const char *partial_json, buf_t *out);

/* Decodes the bucket bodies (renders with merged_functions set: each
 * function's self and total over the bucket, with names) of both sides,
 * body[s][i] of len[s][i] bytes for the plan's buckets, and answers (with
 * "reportId" when report_id is not NULL). When keep is not NULL and all
 * went well, the report (its names owned: query_report_own_names) is moved
 * into *keep for the caller, who frees it. Each decoded function table
 * (one at a time), the names, the report and the answer are charged
 * to charge (may be NULL) while it runs and given back before it returns
 * (past the budget it answers ERR_UNAVAILABLE), but for the answer's bytes
 * after a success when charged is not NULL: they stay taken, *charged
 * saying how many (0 otherwise), until the caller has sent it; and for the
 * kept report's bytes when keep_charged is not NULL: they stay taken,
 * *keep_charged saying how many (0 when nothing was kept), for the report
 * cache to take over (query_report_cache_put) or the caller to give back,
 * so the kept report is never held uncounted. */
int query_report_run(const query_report_plan_t *plan, const query_limits_t *lim,
                     const uint8_t *const *body[2], const size_t *len[2], const char *report_id,
                     const char *partial_json, const query_report_charge_t *charge, size_t *charged,
                     query_report_t *keep, size_t *keep_charged, query_result_t *out, errmsg_t *em);

/* ---------- the report cache (report_cache.c) ----------
 *
 * A search within a report (GET /api/diff?reportId=ID&search=) lists rows
 * of a report already computed instead of rendering every bucket again. A
 * report's id is a hash of its exact inputs: the tenant, the profile type,
 * both queries, both resolved ranges and every bucket's range; the cache
 * compares the whole key, never only the hash. */
#define QUERY_REPORT_ID_LEN 16 /* hex digits */

/* The key (into key, replacing what it held) and id (hex, NUL-terminated) of
 * the report of plan for tenant. */
int query_report_key(const query_report_plan_t *plan, const char *tenant, buf_t *key,
                     char id[QUERY_REPORT_ID_LEN + 1]);

/* At most max_bytes of reports (keys, rows and names), least recently used
 * evicted first; max_bytes 0: keeps nothing. Thread-safe (one mutex). Owned
 * by its creator; every entry got from it must be released before
 * query_report_cache_free. */
typedef struct query_report_cache query_report_cache_t;
typedef struct query_report_cached query_report_cached_t;

query_report_cache_t *query_report_cache_new(size_t max_bytes, const query_report_charge_t *charge);
void query_report_cache_free(query_report_cache_t *c);

/* Keeps report r (names owned) under key, with its profile type and each
 * side's seconds: r is moved into the cache (zeroed) when kept, else left
 * to the caller. charged: bytes of r already taken from the cache's charge
 * (query_report_run's keep_charged): a kept r's are the cache's from then
 * on (it takes only the rest of its entry's bytes), else they stay the
 * caller's to give back. Returns 1 when kept, 0 when not (too large for
 * max_bytes, or the charge refused even with every other entry evicted),
 * ERR_NOMEM. An entry of the same key is replaced. */
int query_report_cache_put(query_report_cache_t *c, const buf_t *key, query_report_t *r,
                           const char *profile_type, const int64_t seconds[2], size_t charged);
/* (c NULL: an empty cache, for put, get and stats.) The entry of key, or NULL; a found entry stays
 * valid (even if evicted) until query_report_cache_release. */
const query_report_cached_t *query_report_cache_get(query_report_cache_t *c, const buf_t *key);
void query_report_cache_release(query_report_cache_t *c, const query_report_cached_t *e);
/* The answer of a cached report into out (application/json, at most
 * lim->max_output_bytes), as query_report_encode of it; em says why not.
 * The answer's buffer is charged to charge (may be NULL) before it grows
 * (past it ERR_UNAVAILABLE naming query-memory-bytes) and given back before
 * it returns, but after a success when charged is not NULL: then it stays
 * taken, *charged saying how many bytes (0 otherwise), until the caller
 * has sent it. */
int query_report_cached_encode(const query_report_cached_t *e, size_t limit, const char *search,
                               const char *report_id, const query_limits_t *lim,
                               const query_report_charge_t *charge, size_t *charged,
                               query_result_t *out, errmsg_t *em);

typedef struct query_report_cache_stats {
    size_t entries, bytes;
    uint64_t hits, misses, evictions;
} query_report_cache_stats_t;
void query_report_cache_stats(query_report_cache_t *c, query_report_cache_stats_t *out);

/* Welch's unequal-variance t test of samples a[0..na) and b[0..nb) (na, nb
 * >= 2): t = (mean b - mean a) / sqrt(va/na + vb/nb), Welch-Satterthwaite df,
 * two-sided p. Both variances 0 (up to rounding): p = 1 if the means are
 * equal (up to rounding), else 0. */
void query_welch_t(const double *a, size_t na, const double *b, size_t nb, double *t, double *df,
                   double *p);
/* P(|T| >= |t|) for Student's t with df > 0 degrees of freedom:
 * I_{df/(df+t^2)}(df/2, 1/2), the regularized incomplete beta. */
double query_student_t_p2(double t, double df);
/* The regularized incomplete beta I_x(a, b), a, b > 0, 0 <= x <= 1. */
double query_incbeta(double x, double a, double b);

/* groupBy=LABEL on a JSON render: the render's JSON object (render's
 * body, or its stream: a large render) with the member groups (a
 * label-shares answer of query_params_t.groups) added, and "partial":true
 * when partial says only the groups missed ranges (a partial render
 * carries its own members), as a stream in out (caller owns) of the two
 * parts in turn, never copied into one buffer: of known length after a
 * whole render (past lim->max_output_bytes: ERR_TOO_LARGE naming
 * query-max-output-bytes), else chunked. Takes render's body or stream and
 * groups (left empty), also on failure; query_stream_bytes of the answer:
 * what it took (groups.c). */
int query_render_groups_open(query_result_t *render, buf_t *groups, int partial,
                             const query_limits_t *lim, query_result_t *out, errmsg_t *em);

/* ================================================================ scatter-gather
 *
 * The read path of a cluster (docs/scatter-gather.md). A coordinator
 * parses a request once (query_spec_parse: the same 400s as the single-node
 * functions above), asks every node for a partial over exactly the token
 * ranges it was assigned (query_partial_run on that node), and folds the
 * partials into a query_gather_t, which truncates and encodes. Call trees,
 * timeline totals and label sets are sums / unions, so the bytes of the
 * answer depend only on the data selected, never on how the ring was split:
 * query_render() itself is one partial over the whole ring gathered the same
 * way. */

/* A token range (start, end] going clockwise; start == end is the whole ring
 * (the convention of ring/ring.h). */
typedef struct query_range {
    uint64_t start; /* exclusive */
    uint64_t end;   /* inclusive */
} query_range_t;

/* 1 if token lies in r. */
int query_range_contains(query_range_t r, uint64_t token);

typedef enum query_kind {
    QUERY_KIND_RENDER = 1,   /* merged call tree (+ timeline) */
    QUERY_KIND_LABEL_NAMES,  /* distinct label names */
    QUERY_KIND_LABEL_VALUES, /* distinct values of one label */
    QUERY_KIND_LABEL_SHARES, /* each value's total of one label over a selection */
    QUERY_KIND_PROFILES,     /* the stored profiles of a selection, newest first */
    QUERY_KIND_PROFILE       /* one stored profile's call tree (query_profile) */
} query_kind_t;

typedef enum query_format {
    QUERY_FORMAT_JSON = 0,
    QUERY_FORMAT_FOLDED,
    QUERY_FORMAT_PPROF,
    QUERY_FORMAT_TREE,      /* internal: query_params_t.merged_tree */
    QUERY_FORMAT_FUNCTIONS, /* internal: query_params_t.merged_functions */
    QUERY_FORMAT_TOP,       /* top functions JSON (GET /api/top), from the untruncated tree */
    QUERY_FORMAT_SVG,       /* flame graph image (svg.c) */
    QUERY_FORMAT_SPEEDSCOPE /* speedscope JSON file (speedscope.c) */
} query_format_t;

/* A request parsed and validated by the coordinator. Caller owns; free with
 * query_spec_free(). */
typedef struct query_spec {
    query_kind_t kind;
    query_selector_t *sel; /* render: the query; labels: the match selector or NULL */
    char *selector;        /* its text as given (sent to the nodes), or NULL */
    char *label;           /* label values: the label name, else NULL */
    query_plan_t plan;     /* windows read (render, and labels with a match) */
    query_format_t format; /* render */
    size_t max_nodes;      /* render: truncation (0 = none) */
    size_t top_limit;      /* top: functions listed; profiles: entries listed */
    int top_by_total;      /* top: sorted by total (else by self) */
    char *top_search;      /* top: the search (query_top_opts_t), or NULL for none */
    int groups;            /* label shares: answer as a render's "groups" (query_params_t) */
    int stream;            /* render, profile: may answer as a stream (query_params_t) */
    uint64_t
        profile_token; /* profile: the placement token of its series (only its owners hold it) */
} query_spec_t;

/* Parses the parameters of one kind exactly as query_render /
 * query_label_names / query_label_values do, with the same errors. */
int query_spec_parse(query_kind_t kind, const query_params_t *p, const query_limits_t *lim,
                     int64_t now_ms, query_spec_t *out, errmsg_t *em);
void query_spec_free(query_spec_t *s);
/* The service_name a selector pins with `=` to a non-empty value (borrowed
 * from s), or NULL: such a query only needs that service's placement tokens. */
const char *query_spec_service(const query_spec_t *s);

/* What one node runs: a partial query over some token ranges. All pointers
 * borrowed for the call. */
typedef struct query_partial_args {
    query_kind_t kind;
    const char *selector; /* render: TYPE{...}; labels: the match selector, NULL or "" for none */
    const char *label; /* label values: the name; profile: its id (QUERY_PROFILE_ID_HEX digits) */
    int64_t from_s;    /* the coordinator's plan: range on the grid of min_res */
    int64_t until_s;
    int min_res;                 /* finest resolution index of the plan */
    int timeline;                /* render: also compute the timeline totals */
    size_t limit;                /* profiles: entries answered (the node keeps limit + 1) */
    const query_range_t *ranges; /* series whose token lies in one of them; */
    size_t nranges;              /* 0 = every token */
    const query_stop_t *stop;    /* render: stops early (ERR_TIMEOUT) when it says so; NULL */
    alloc_charge_t *charge;      /* render: the merge's working memory (dense vectors, forests)
                                    is charged here while it runs, ERR_UNAVAILABLE past its
                                    budget; NULL: not charged */
    size_t final_max_nodes;      /* render: set only when this partial alone is the answer: the
                                    maxNodes its gather truncates to (query_spec_final_max_nodes),
                                    so the tree may come truncated already; 0 = untruncated */
    int forests;                 /* render: the share may answer its tokens' forests (tabs)
                                    instead of a tree, when every value is >= 0 (for a gather
                                    that truncates them, query_spec_forests) */
    int kept;                    /* render with final_max_nodes: the partial may answer the
                                    kept nodes (query_partial_t.kept) instead of a tree: its
                                    gather writes the flamebearer JSON straight from them */
    int names_later;             /* render with forests: the names of the forests' symbols are
                                    not loaded here; a share in the coordinator's process leaves
                                    them to its gather, which loads those of the nodes it keeps
                                    (query_gather_names_from); a remote share loads them from
                                    the dictionaries of the forests it encodes
                                    (query_forest_encode_dict, query_load_symbol_ids) */
    int parents;                 /* render with forests: the forests record each node's parent
                                    (storage_merged_tab_t.parent): a remote share that encodes
                                    them in QUERY_FOREST_V3 writes from them */
    int symnos;                  /* render with forests: each forest node carries its node
                                    table's symbol number (storage_merged_tab_t.symno): a share
                                    that encodes them numbers each forest's dictionary through
                                    an array instead of a hash lookup per node */
    int space;                   /* render with forests: a union's forest with its id space
                                    (STORAGE_TABS_SPACE), a union even of one token, so its
                                    coordinator adds its values by id (scatter_spaces.h) */
    const storage_space_known_t *known_spaces; /* with space: the spaces the coordinator */
    size_t nknown_spaces;                      /* holds already (borrowed) */
    int fns;    /* render as /api/top of a type not averaged: the share sums
                   its tokens' forests per function (query_partial_t.fns)
                   instead of building their tree, when every value is >= 0
                   (a function's self and total add up over the parts of a
                   merge); else it answers the tree as before */
    int counts; /* label shares of an averaged type: each entry also carries
                   its profile counts ("TOTAL/COUNT S1/C1,..."), which the
                   gather needs to average; 0: the summed "TOTAL S1,..." a
                   coordinator without QueryRequest.share_counts reads */
    int remote; /* the share answers another node (its coordinator): no
                   part of its helper's follows it soon, so the helper that
                   runs its last sleeps once idle (assist_start_last) */
    int pushes; /* with counts: each entry carries the value's pushes split
                   into pieces by id instead of counting them
                   ("+TOTAL/COUNT S1/C1,... PUSHES VALUE"), so the gather counts
                   a push once per value over every node; 0: counted here */
} query_partial_args_t;

/* Fills a from s (ranges left empty, timeline and kept set for JSON). Pointers into s. */
void query_spec_args(const query_spec_t *s, query_partial_args_t *a);
/* 1 when the shares of s may answer their function sums instead of their
 * trees (query_partial_args_t.fns, QueryRequest.functions): /api/top of a
 * type that is not averaged. */
int query_spec_functions(const query_spec_t *s);
/* The maxNodes query_gather_finish truncates a render of s to; 0 = none. */
size_t query_spec_final_max_nodes(const query_spec_t *s);
/* 1 when a gather of s keeps its partials' trees as forests and truncates
 * their union at the end without merging them (a render truncated to
 * maxNodes, not `top`; docs/cluster.md): a partial may then hand over its
 * tokens' forests (query_partial_args_t.forests). */
int query_spec_forests(const query_spec_t *s);

/* One function (symbol) of a tree: self is the sum of its nodes' selves;
 * total the sum of the totals of its outermost nodes (a stack in which it
 * recurses counts once). name and file: unset (NULL) by query_fns_collect
 * and query_fns_of_tabs. */
typedef struct query_fn {
    uint64_t sym;
    int64_t self, total;
    const char *name, *file;
} query_fn_t;

/* A truncated tree as keep.c chose it, in flat arrays (query_int.h). */
typedef struct query_kept query_kept_t;

/* One node's answer for its ranges. Caller owns; free with query_partial_free. */
typedef struct query_partial {
    query_kind_t kind;
    calltree_t *tree;           /* render: untruncated merge of the selected series' blocks;
                                   profile: its tree, when this node's ranges hold it */
    symtab_t *syms;             /* render: every symbol tree references that the node knows */
    size_t nseries;             /* render: series selected */
    char *spy_name;             /* render: pyroscope_spy shared by all those series, or NULL */
    storage_merged_tab_t *tabs; /* render with forests: the tokens' forests (then tree */
    size_t ntabs;               /* holds nothing), or NULL */
    query_kept_t *kept;         /* render as JSON that is alone the answer (final_max_nodes):
                                   the kept nodes (then tree holds nothing), or NULL */
    query_timeline_t tl;        /* render with timeline: per-bucket totals, else n == 0 */
    char **values;              /* labels: distinct, sorted (strcmp); label shares: "TOTAL VALUE";
                                   profiles: "TIME_NS ID TOTAL {labels}" (profiles.c);
                                   profile: "TIME_NS PROFILE_TYPE" when found (profile.c) */
    size_t nvalues;
    uint64_t partial_spans; /* render of span ids: span trees summed that may leave profiles
                               out (sealed or short after a stream; the answer says partial) */
    int names_later;        /* render: syms lacks the names of the forests' symbols
                               (query_partial_args_t.names_later) */
    query_fn_t *fns;        /* render with fns: each function's self and total over the
                               share's forests (tree then holds what had no forest), or NULL */
    size_t nfns;
    int64_t fns_total; /* the forests' roots' totals */
} query_partial_t;

/* Runs a partial query on this node's storage. Refuses malformed arguments
 * (ERR_INVALID_ARGUMENT: a plan off its grid, a bad selector); ERR_LIMIT past
 * lim (max_series, max_tree_nodes). Label values are bounded by
 * lim->max_output_bytes in total. */
int query_partial_run(storage_t *st, const char *tenant, const query_partial_args_t *a,
                      const query_limits_t *lim, query_partial_t *out, errmsg_t *em);
void query_partial_free(query_partial_t *p);
/* Merges p->tabs into p->tree and drops them (a share whose forests are too
 * large for a message answers their merge). ERR_LIMIT past max_tree_nodes,
 * the reason in em. */
int query_partial_merge_forests(query_partial_t *p, errmsg_t *em);
/* The forest encodings (query/forest.c): version 2 lists each node's kids,
 * version 3 each node's parent (what a coordinator that sets
 * QueryRequest.forest_version 3 reads; older ones read only 2), version 4
 * the nodes in pre-order with each one's total and the length of its
 * subtree's bytes (QueryRequest.forest_version 4: the coordinator reads
 * only the nodes its selection looks at), version 5 the same with a last
 * kid's total and length left out (its parent implies them;
 * QueryRequest.forest_version 5). query_forest_decode reads all four
 * whole. */
#define QUERY_FOREST_V2 2
#define QUERY_FOREST_V3 3
#define QUERY_FOREST_V4 4
#define QUERY_FOREST_V5 5
/* Appends the forest encoding (query/forest.c, QUERY_FOREST_V3) of one
 * forest of a partial (p->tabs[i], nonneg) to out: how a share ships them.
 * query_gather_add_trees reads it. ERR_INVALID_ARGUMENT for an empty or not
 * nonneg forest. */
int query_forest_encode(const storage_merged_tab_t *f, buf_t *out);
/* query_forest_encode in the given version (QUERY_FOREST_V2 to V5), handing
 * over the forest's symbol dictionary too: its distinct symbols (SYM_ROOT
 * among them), *ndict of them in *dict_ids (caller frees; NULL on error).
 * V4's and V5's working memory (4 bytes an id of f) is held beside out while it is
 * written (buf_beside_take): out's charge hook sees it, and its refusal is
 * returned. */
int query_forest_encode_dict(const storage_merged_tab_t *f, int version, buf_t *out,
                             uint64_t **dict_ids, size_t *ndict);
/* A forest's encoding 4 or 5 sized before it is written, so that a share
 * writes it in its place in the message it sends (scatter_serve.c): the
 * same bytes as query_forest_encode_dict. bytes: the whole encoding;
 * dict, ndict: its dictionary (the ids query_forest_encode_dict hands
 * over), owned by the struct; held: the working memory the struct holds
 * (4 bytes an id of f, plus the dictionary) until it is freed. f is
 * borrowed until query_forest_sized_free. */
typedef struct query_forest_sized {
    const storage_merged_tab_t *f;
    int version;
    size_t bytes, held;
    const uint64_t *dict;
    size_t ndict;
    struct query_forest_work *work;
} query_forest_sized_t;
/* Sizes f (nonneg, with symbol numbers) in version QUERY_FOREST_V4 or V5;
 * out is zeroed first, and freed with query_forest_sized_free whatever
 * this returns. ERR_INVALID_ARGUMENT for another version, a forest without
 * symbol numbers or records past 2 GiB; ERR_NOMEM. */
int query_forest_size(const storage_merged_tab_t *f, int version, query_forest_sized_t *out);
/* Writes the s->bytes of the encoding at dst, once. */
void query_forest_write(query_forest_sized_t *s, uint8_t *dst);
void query_forest_sized_free(query_forest_sized_t *s);
/* Loads the names of ids (repeats allowed, each loaded once; SYM_ROOT and
 * SYM_OTHER skipped) into dst: a share's forests' dictionaries put together.
 * The nknown ids of known (those whose names the coordinator holds) are not
 * loaded. */
int query_load_symbol_ids(storage_t *st, const char *tenant, const uint64_t *ids, size_t n,
                          const uint64_t *known, size_t nknown, symtab_t *dst);
/* About the heap bytes p holds (tree, with the child links reading it
 * makes, symbols, values): for memory budgets. */
size_t query_partial_bytes(const query_partial_t *p);

/* The coordinator's accumulator. Not thread-safe: one thread at a time.
 * Caller owns; free with query_gather_free(). spec is borrowed until then. */
typedef struct query_gather query_gather_t;
int query_gather_new(const query_spec_t *spec, const query_limits_t *lim, query_gather_t **out);
void query_gather_free(query_gather_t *g);
/* About the heap bytes g holds (merged tree, with the child links reading
 * it makes, symbols, values, timelines), for memory budgets; NULL is 0. */
size_t query_gather_bytes(const query_gather_t *g);

/* From now on g charges to charge (borrowed; NULL: none) the memory it
 * holds beyond base bytes (what its owner counts already, such as
 * query_gather_bytes as last measured), as it grows: each partial's tree,
 * forests and symbols once merged (the forests decoded before they are
 * added), and while it finishes the truncated tree and the maxNodes
 * selection built beside the merged one, the names loaded, and the answer
 * once encoded. An add or finish that does not fit fails with
 * ERR_UNAVAILABLE (ERR_TOO_LARGE when it never could), em naming
 * query-memory-bytes; after a failed add the gather may hold part of that
 * partial. What is charged stays on charge (its owner gives it back, with
 * alloc_charge_done); switching charges forgets it. */
void query_gather_charge(query_gather_t *g, alloc_charge_t *charge, size_t base);

/* The storage (borrowed, with tenant, for g's life) of the partials added
 * with names_later: when g finishes, the names of the symbols its answer
 * keeps that no partial brought are loaded from it, so a local share loads
 * the names of the nodes kept rather than of every node of its forests. */
void query_gather_names_from(query_gather_t *g, storage_t *st, const char *tenant);
/* Puts into dst the names it holds of the n ids (others left out); an error
 * fails the answer. */
typedef int (*query_names_fn)(void *ctx, const uint64_t *ids, size_t n, symtab_t *dst);
/* When g finishes, the names of the symbols its answer keeps that no
 * partial brought are asked of fn (ctx borrowed for g's life) before the
 * storage of query_gather_names_from: the names a coordinator holds from
 * earlier answers, which its shares were told they need not send. */
void query_gather_names_via(query_gather_t *g, query_names_fn fn, void *ctx);
/* A table of names a gather may read in place (a coordinator's scope's):
 * hold returns it (or NULL), unchanged until release. */
typedef const symtab_t *(*query_names_hold_fn)(void *ctx);
typedef void (*query_names_release_fn)(void *ctx);
/* When g writes a JSON flame graph of kept nodes whole (not as a stream)
 * and the table hold gives names every kept node's symbol, the answer is
 * written from that table, held meanwhile, instead of the names being
 * copied into g's own first (ctx borrowed for g's life). */
void query_gather_names_lent(query_gather_t *g, query_names_hold_fn hold,
                             query_names_release_fn release, void *ctx);
/* Adds a partial computed in this process; may take its tree, symbols and
 * timeline (p stays safe to free). ERR_INTERNAL for a partial with
 * names_later when g has no storage for them. */
int query_gather_add(query_gather_t *g, query_partial_t *p, errmsg_t *em);

/* The pieces of a partial received in encoded form. A failed add leaves the
 * gather unusable for an exact answer: the caller drops the request. */
int query_gather_add_tree(query_gather_t *g, const uint8_t *enc, size_t n, errmsg_t *em);
/* Adds a forest the caller made (every value >= 0: t->nonneg), taken
 * whole (t is left empty, freed on failure too): held with the others
 * while the gather truncates forests, else merged into its tree. Its
 * symbols' names come as a share's do (symbols added, the names function,
 * the local storage). */
int query_gather_add_tab(query_gather_t *g, storage_merged_tab_t *t, errmsg_t *em);
/* Makes a forest: make(ctx, follow, out, em) as storage_merged_tab_followed
 * (follow NULL or to publish its pass to, ended whatever the result; out
 * the caller's on success). */
typedef int (*query_make_tab_fn)(void *ctx, storage_follow_t *follow, storage_merged_tab_t *out,
                                 errmsg_t *em);
/* query_gather_add_tab of the forest make makes. When the gather truncates
 * forests, holds none yet and has helpers (query_limits_t.assist), an idle
 * helper files its nodes by total while its pass runs (the cut's first
 * pass, query/cut.c), so the finish cuts it without that pass. */
int query_gather_add_made(query_gather_t *g, query_make_tab_fn make, void *ctx, errmsg_t *em);
/* The trees of one partial at once (its tree, calltree_encode, and the
 * forests of its tokens, query_forest_encode): all are checked before any is
 * added. */
int query_gather_add_trees(query_gather_t *g, const uint8_t *const *enc, const size_t *len,
                           size_t n, errmsg_t *em);
/* query_gather_add_trees without copying the forests of encoding 4 or 5:
 * they are read where they lie in enc. g takes hold (what keeps enc's
 * bytes alive, such as the received message) whatever it returns, and
 * frees it with hold_free when g is freed: the caller may read the bytes
 * until then, except after ERR_NOMEM, when hold may be freed already. */
int query_gather_add_trees_held(query_gather_t *g, const uint8_t *const *enc, const size_t *len,
                                size_t n, void *hold, void (*hold_free)(void *), errmsg_t *em);
int query_gather_add_symbol(query_gather_t *g, uint64_t id, const char *name, size_t name_len,
                            const char *file, size_t file_len);
/* nseries series were selected, sharing spy_name (NULL: none or mixed).
 * ERR_LIMIT when the total passes max_series. */
int query_gather_add_series(query_gather_t *g, size_t nseries, const char *spy_name, errmsg_t *em);
/* A share's function sums (an answer to a request with functions, for
 * /api/top): per function its symbol, self and total (n of each), and its
 * forests' roots' total; added by symbol to those of the other shares
 * (docs/query.md). ERR_UNAVAILABLE (em names query-memory-bytes) when they
 * do not fit the gather's charge. */
int query_gather_add_functions(query_gather_t *g, const uint64_t *syms, const int64_t *selves,
                               const int64_t *totals, size_t n, int64_t total, errmsg_t *em);
/* Adds value to the timeline bucket that starts at bucket_start_s; a bucket
 * not on the spec's timeline grid is ERR_CORRUPT. Ignored for answers that
 * show no timeline (folded, pprof). */
int query_gather_add_total(query_gather_t *g, int64_t bucket_start_s, int64_t value, errmsg_t *em);
/* Adds count profiles to that bucket of an averaged type's timeline (and to
 * the profiles its flame graph is divided by); same errors. */
int query_gather_add_count(query_gather_t *g, int64_t bucket_start_s, int64_t count, errmsg_t *em);
/* A partial's count of a bucket whose pushes split into pieces (ids: n
 * short ids, len = n * STORAGE_WPROF_ID_LEN) it counted once each within
 * count: those are united with every other answer's by id instead. */
int query_gather_add_pushes(query_gather_t *g, int64_t bucket_start_s, int64_t count,
                            const uint8_t *ids, size_t len, errmsg_t *em);
int query_gather_add_value(query_gather_t *g, const char *s, size_t n);
/* n more span trees that may leave profiles out (a share's partial_spans). */
void query_gather_add_partial_spans(query_gather_t *g, uint64_t n);
/* The reason of a label gather's ERR_LIMIT into em (returns ERR_LIMIT): the
 * span ids over query-max-span-ids, or the answer over
 * query-max-output-bytes. */
int query_gather_limit_reason(const query_gather_t *g, errmsg_t *em);
/* The span trees summed so far that may leave profiles out: when > 0 the
 * answer is partial ("span_members", docs/api.md). */
uint64_t query_gather_partial_spans(const query_gather_t *g);

/* Truncates and encodes the merged answer into out (as query_render /
 * query_label_* would). partial_json, when not NULL, holds members added to
 * a JSON flame graph object (e.g. "\"partial\":true,\"missing\":[...]"); label
 * answers are JSON arrays and carry no such members. */
int query_gather_finish(query_gather_t *g, const char *partial_json, query_result_t *out,
                        errmsg_t *em);

#endif
