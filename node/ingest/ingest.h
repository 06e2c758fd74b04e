/* ingest.h — turns one Pyroscope-compatible ingest request into storable series.
 *
 * Owns body-format detection (gzip by magic bytes, multipart, pprof, folded,
 * lines), the pprof and folded parsers, profile-type derivation (Pyroscope's
 * conventions), splitting samples into series by their string labels, span/trace
 * indexing labels, the profile id (a retried push counts once) and every input
 * limit. It does no I/O: the caller hands it the request and writes the result
 * with storage_write_profile().
 *
 * Threads: ingest_parse() is reentrant; call it from worker threads.
 * Ownership: on success *out is owned by the caller (ingest_profile_free());
 * the request is borrowed for the duration of the call only.
 */
#ifndef FLAMEDB_NODE_INGEST_INGEST_H
#define FLAMEDB_NODE_INGEST_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/alloc.h"
#include "common/err.h"
#include "ring/ring.h"
#include "storage/storage.h"

/* The stacks earlier pushes stored, by content (ingest_stackcache.c): a
 * push whose stacks were seen before gives storage their stack-node ids
 * instead of call trees (storage_series_write_t.ids). Bounded by the bytes
 * given at creation (a slot of 16 bytes a stack); shared by every thread
 * that parses (lookups take no lock, puts striped locks). Only for a push whose series are all
 * written by this node's storage (no replica takes its trees). */
typedef struct ingest_stack_cache ingest_stack_cache_t;
/* *out NULL (off) when max_bytes holds no slot. storage is borrowed. */
int ingest_stack_cache_new(storage_t *storage, size_t max_bytes, ingest_stack_cache_t **out);
void ingest_stack_cache_free(ingest_stack_cache_t *c);
size_t ingest_stack_cache_bytes(const ingest_stack_cache_t *c);
/* Default of ingest-stack-cache-bytes (node/config.c). */
#define INGEST_STACK_CACHE_BYTES (16u << 20)

typedef struct ingest_limits {
    size_t max_decompressed_bytes; /* gunzipped body (gzip bombs) */
    size_t max_samples;            /* samples per profile */
    size_t max_stack_depth;        /* frames per stack; deeper is refused */
    size_t max_labels_per_series;  /* label pairs per series */
    size_t max_label_name_len;     /* bytes */
    size_t max_label_value_len;    /* bytes */
    size_t max_series_per_profile; /* series one profile may split into */
    size_t max_symbol_len;         /* bytes of a function or file name */
    size_t max_tree_nodes;         /* call-tree nodes per series */
    size_t max_spans_per_series;   /* span + trace trees one series of one profile keeps */
    /* Memory the reading and conversion of one pprof message may hold besides
     * its call trees and symbols (entry index, caches, frames, id maps, type
     * tables; ingest_pprof.c), and per byte of the message (at least
     * INGEST_DECODED_FLOOR). Real profiles need under 1 byte per byte. */
    size_t max_decoded_bytes;
    size_t decoded_per_byte;
    /* One budget for the whole push, all series and span trees together,
     * checked as it is parsed (so a refused push never built more): the
     * memory it holds (everything charged below, as allocated), at most
     * request_memory_per_byte x its decompressed payload bytes (at least
     * INGEST_REQUEST_MEMORY_FLOOR), so a push costs in proportion to what it
     * sent; call-tree nodes created, at most max_request_nodes; frames
     * walked (samples x sample types x stack depth, span trees included),
     * min(max_request_work, max(floor, request_work_per_byte x payload)). */
    size_t request_memory_per_byte;
    size_t max_request_nodes;
    size_t max_request_work, request_work_per_byte;
    ring_shard_policy_t shards; /* placement shards per service (ring.h) */
    int64_t max_past_seconds;   /* backfill window (the retention) */
    int64_t max_future_seconds; /* clock skew tolerated */
    /* The node-wide budget every push in progress charges (borrowed, may be
     * NULL): its decoded message and label-group tables (while it is
     * converted), its gunzipped payload (while it is parsed), its symbol
     * table, series, call trees, span indices and path caches, the bytes as
     * allocated, from parse until ingest_profile_free. */
    alloc_budget_t *inflight;
} ingest_limits_t;

/* Defaults (chosen so every real profile of the shared corpus is admitted):
 * 32 MiB decompressed, 100,000 samples, 2,048 frames, 30 labels per series,
 * label name 1,024 / value 2,048 bytes, 1,000 series per profile, symbols of
 * 65,535 bytes, 1,048,576 tree nodes per series, 1,000 span/trace trees per
 * series, 64 MiB decoded pprof and 2 decoded bytes per payload byte (at
 * least INGEST_DECODED_FLOOR), per push INGEST_REQUEST_MEMORY_PER_BYTE bytes of
 * memory per payload byte (at least INGEST_REQUEST_MEMORY_FLOOR), 2,097,152
 * nodes, 134,217,728 frames walked and 8
 * per payload byte (at least INGEST_REQUEST_WORK_FLOOR),
 * RING_DEFAULT_SHARDS_PER_SERVICE shards placed by profile
 * (RING_DEFAULT_SHARD_BY_PROFILE), 90 days back, 10 minutes ahead. */
void ingest_limits_default(ingest_limits_t *l);

/* The budget every push gets whatever its size (small pushes are never
 * refused by the per-byte rules). */
#define INGEST_REQUEST_MEMORY_FLOOR (4u << 20)
#define INGEST_REQUEST_MEMORY_PER_BYTE 8u
#define INGEST_REQUEST_WORK_FLOOR (4u << 20)
#define INGEST_DECODED_FLOOR (2u << 20)

/* Raw request: query parameters as received (NULL when absent), URL-decoded. */
typedef struct ingest_request {
    const char *tenant; /* from X-Scope-OrgID, validated by the caller; "anonymous" default */
    const char *name;   /* app.cpu{k=v,...} (required) */
    const char *from, *until, *format, *sample_rate, *spy_name, *units, *aggregation_type;
    const char *time; /* the profile's time, over a pprof's time_nanos and from (NULL: none) */
    const char *content_type; /* Content-Type header or NULL */
    const uint8_t *body;
    size_t body_len;
    int64_t now_ns; /* the node's clock, for defaults and the accepted time window */
    /* Borrowed, may be NULL: when set, stacks it knows are given by id and
     * the stacks the write maps are added to it (ingest_profile_write's
     * mapped report). A write refused with ERR_CONFLICT (the node
     * generation moved since the parse) is parsed again without it. */
    ingest_stack_cache_t *stack_cache;
} ingest_request_t;

typedef struct ingest_profile ingest_profile_t;

/* Parses and splits. Errors: ERR_INVALID_ARGUMENT (400: bad parameter),
 * ERR_TOO_LARGE (413), ERR_UNPARSEABLE (422: body not a valid profile),
 * ERR_OVER_LIMIT (422: too many series, labels, samples, frames), ERR_UNAVAILABLE
 * (503: the in-flight budget is full now; retry later), with the reason in em. */
int ingest_parse(const ingest_request_t *req, const ingest_limits_t *lim, ingest_profile_t **out,
                 errmsg_t *em);
/* As ingest_parse, and *peak gets the most bytes the push held at once
 * while it was parsed (ingest_profile_peak_bytes), refused or not: a
 * refused push's memory is freed when this returns, and the caller may
 * give it back to the system (alloc_release_free). */
int ingest_parse_held(const ingest_request_t *req, const ingest_limits_t *lim,
                      ingest_profile_t **out, size_t *peak, errmsg_t *em);

/* The storable view; borrowed, valid until ingest_profile_free(). */
const storage_profile_write_t *ingest_profile_write(const ingest_profile_t *p);
/* Samples given to storage by stack-node id (the stack cache's hits) and
 * stacks looked up there, over every series of the push. */
void ingest_profile_stack_hits(const ingest_profile_t *p, size_t *hits, size_t *lookups);
/* Sum of all sample values of series i (for tests and logs). */
int64_t ingest_profile_series_total(const ingest_profile_t *p, size_t i);
/* Span and trace trees dropped because a series passed max_spans_per_series
 * (their samples still count in the series). */
size_t ingest_profile_spans_dropped(const ingest_profile_t *p);
/* What the push cost: call-tree nodes created and frames walked (the
 * quantities the request budget caps; for tests and logs). */
void ingest_profile_cost(const ingest_profile_t *p, size_t *nodes, size_t *work);
/* The most bytes the push held at once while it was parsed (decoded
 * message, gunzipped body, symbol table, series, call trees: what it
 * charges to its memory cap and the in-flight budget), counted whether or
 * not lim->inflight is set. */
size_t ingest_profile_peak_bytes(const ingest_profile_t *p);
/* Body format that was parsed: "pprof", "folded" or "lines"; static string. */
const char *ingest_profile_format(const ingest_profile_t *p);
void ingest_profile_free(ingest_profile_t *p);

#endif
