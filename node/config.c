/* config.c — the settings table and everything generated from it (see config.h). */
#include "node/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/calltree.h"
#include "node/placement.h"

enum opt_type {
    OPT_SECTION, /* a heading in --help and the docs, not a setting */
    OPT_PATH,    /* char[NODE_PATH_MAX], never empty */
    OPT_OFFPATH, /* char[NODE_PATH_MAX]; empty turns the feature off */
    OPT_LISTEN,  /* char[]: HOST:PORT */
    OPT_TEXT,    /* char[NODE_PATH_MAX], may be empty */
    OPT_LOGLEVEL,
    OPT_INT,     /* int */
    OPT_U32,     /* uint32_t */
    OPT_COUNT,   /* size_t */
    OPT_SIZE,    /* size_t, bytes with an optional binary suffix */
    OPT_MS,      /* uint64_t milliseconds, given as a duration */
    OPT_SECONDS, /* int64_t seconds, given as a duration; 0 = forever */
};

/* Derived defaults: a fraction of memory-limit unless set explicitly. */
#define DERIVE_QUARTER 4

typedef struct opt {
    const char *name; /* flag --name, variable FLAMEDB_NAME */
    enum opt_type type;
    size_t offset;   /* into node_config_t */
    const char *def; /* default as text; NULL: the owning module's default */
    int derive;      /* non-zero: default is memory-limit / derive */
    uint64_t min, max;
    const char *doc;
} opt_t;

/* offsetof that also checks, at compile time, that the field has type t. */
#define FIELD(f, t)                                                                                \
    (offsetof(node_config_t, f) +                                                                  \
     0 * sizeof(                                                                                   \
             char[__builtin_types_compatible_p(__typeof__(((node_config_t *)0)->f), t) ? 1 : -1]))

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define DAY_S 86400ull
#define YEAR_S (366ull * DAY_S)
#define SECTION(title)                                                                             \
    {                                                                                              \
        title, OPT_SECTION, 0, NULL, 0, 0, 0, NULL                                                 \
    }

static const opt_t options[] = {
    SECTION("Node"),
    {"data-dir", OPT_PATH, FIELD(data_dir, char[NODE_PATH_MAX]), "./flamedb-data", 0, 1,
     NODE_PATH_MAX - 1, "Directory of the node's RocksDB database; created if missing."},
    {"http-listen", OPT_LISTEN, FIELD(http_listen, char[NODE_HOST_MAX + 8]), "127.0.0.1:4040", 0, 0,
     0, "HTTP address as IP:PORT ([v6]:PORT for IPv6; port 0 picks a free port)."},
    {"log-level", OPT_LOGLEVEL, FIELD(log_level, int), "info", 0, 0, 0,
     "One of debug, info, warn, error."},
    {"worker-threads", OPT_INT, FIELD(worker_threads, int), "4", 0, 1, 1024,
     "Threads that decode, merge and do RocksDB work (the node's thread pool; each "
     "started when a job first needs it, and the thread that went idle last takes the next "
     "job)."},
    {"query-assist-threads", OPT_INT, FIELD(query_assist_threads, int), "1", 0, 0, 64,
     "Helper threads that run parts of a render beside its own thread: part of its series' "
     "read and its timeline, the names of its symbols, the deeper half of its flame graph's "
     "levels. A part goes to a helper only when one is idle, else the render does it itself "
     "(a loaded node does the same work as with 0); a helper waits awake up to 0.25 ms for "
     "a render's next part, so a render on an idle node takes about a seventh less time "
     "and some 40% more CPU. 0: none."},
    {"max-write-jobs", OPT_COUNT, FIELD(max_write_jobs, size_t), "0", 0, 0, 1024,
     "Thread-pool jobs of pushes, replica writes and hints at once; more wait in order. "
     "0: worker-threads minus a quarter (at least 1), so queries always keep a thread."},
    {"max-query-jobs", OPT_COUNT, FIELD(max_query_jobs, size_t), "0", 0, 0, 1024,
     "Thread-pool jobs of queries at once; more wait in order, and one not started by its "
     "query's deadline is dropped (its ranges count as missing). 0: worker-threads minus a "
     "quarter (at least 1), so pushes and replica writes always keep a thread."},
    {"memory-limit", OPT_SIZE, FIELD(memory_limit, size_t), "1GiB", 0, 64 * MiB, 1024 * GiB,
     "Memory budget of the node. block-cache-bytes and write-buffer-bytes "
     "default to a quarter of it each, max-buffered-bytes, node-cache-bytes and "
     "ingest-inflight-bytes to an eighth, query-memory-bytes to a sixteenth, "
     "stream-receive-max-bytes to a thirty-second, chunk-receive-max-bytes to a 64th, "
     "scatter-name-cache-bytes to a 256th; they must fit in it together with the window fold's "
     "working memory (four times window-fold-batch-bytes, a 1024th, while window-fold-interval "
     "is on) and the dictionary training of compactions (64 times node-table-dict-bytes, a "
     "16384th up to 64 KiB, per compaction running at once); the start is refused otherwise, "
     "naming them."},
    {"shutdown-timeout", OPT_MS, FIELD(shutdown_timeout_ms, uint64_t), "10s", 0, 0, 3600000,
     "On SIGTERM/SIGINT: how long in-flight requests may take before connections are cut."},
    {"fd-reserve", OPT_COUNT, FIELD(fd_reserve, size_t), "1024", 0, 64, 1000000,
     "File descriptors kept for storage (RocksDB's files and write-ahead logs), the cluster "
     "transport and the rest besides max-connections. At start the node raises its open-file "
     "limit (RLIMIT_NOFILE) to the hard limit, and refuses to start when max-connections plus "
     "this does not fit in it: otherwise idle HTTP connections could take the descriptors "
     "RocksDB needs for its next file, and every write would fail until a restart. A quarter "
     "of it is kept for what is not an SST file; SST files open at once are bounded by "
     "max-open-files."},
    SECTION("HTTP"),
    {"max-connections", OPT_COUNT, FIELD(http.max_connections, size_t), "1024", 0, 1, 1000000,
     "Open HTTP connections; more are answered 503 and closed."},
    {"max-header-bytes", OPT_SIZE, FIELD(http.max_header_bytes, size_t), "16KiB", 0, 1 * KiB,
     HTTP_MAX_HEADER_BYTES_LIMIT,
     "Request line and headers of one request; more is refused with 431."},
    {"max-body-bytes", OPT_SIZE, FIELD(http.max_body_bytes, size_t), "16MiB", 0, 1 * KiB, 4 * GiB,
     "Body of one request as sent (compressed); more is refused with 413 (from Content-Length, "
     "before the body is read). Unless set, the smaller of 16 MiB and max-buffered-bytes (which "
     "is an eighth of memory-limit, so below a memory-limit of 128 MiB it is max-buffered-bytes "
     "and every memory-limit starts with the defaults); set above max-buffered-bytes, the start "
     "is refused."},
    {"max-buffered-bytes", OPT_SIZE, FIELD(http.max_buffered_bytes, size_t), NULL, 8, 1 * MiB,
     1024 * GiB,
     "Request bodies held in memory at once, over all connections, counted as their bytes arrive, "
     "and responses not yet read by their client; a request that would exceed it gets 503 with "
     "Retry-After, and so does a response over 64 KiB that would."},
    {"idle-timeout", OPT_MS, FIELD(http.idle_timeout_ms, uint64_t), "60s", 0, 100, 86400000,
     "A connection with no request in progress is closed after this."},
    {"request-timeout", OPT_MS, FIELD(http.request_timeout_ms, uint64_t), "30s", 0, 100, 3600000,
     "Time from a request's first byte to its last (and for writing a response); then 408."},
    SECTION("Ingest limits"),
    {"max-decompressed-bytes", OPT_SIZE, FIELD(ingest.max_decompressed_bytes, size_t), NULL, 0,
     1 * KiB, 4 * GiB, "Size of a profile after gunzip (gzip bombs are refused with 413)."},
    {"max-decoded-bytes", OPT_SIZE, FIELD(ingest.max_decoded_bytes, size_t), NULL, 32, 1 * MiB,
     64 * GiB,
     "Memory the reading of one pprof message may hold besides its call trees and symbols (its "
     "entry index, caches, frames and id maps); over it the push gets 413. Each of "
     "worker-threads pushes may take this much at once."},
    {"max-samples", OPT_COUNT, FIELD(ingest.max_samples, size_t), NULL, 0, 1, 100000000,
     "Samples (or folded lines) per profile; more: 422."},
    {"max-stack-depth", OPT_COUNT, FIELD(ingest.max_stack_depth, size_t), NULL, 0, 1, 65536,
     "Frames per stack; a deeper stack: 422. A stack this deep must fit in a replicated "
     "write: the start is refused when its call tree alone (one function calling itself, 4 "
     "to 5 bytes a frame) takes more than max-message-bytes."},
    {"max-labels-per-series", OPT_COUNT, FIELD(ingest.max_labels_per_series, size_t), NULL, 0, 1,
     1000, "Label pairs per series; more: 422 (400 when the name parameter alone has more)."},
    {"max-label-name-len", OPT_COUNT, FIELD(ingest.max_label_name_len, size_t), NULL, 0, 1, 65536,
     "Bytes of a label name; longer: 422 (400 in the name parameter)."},
    {"max-label-value-len", OPT_COUNT, FIELD(ingest.max_label_value_len, size_t), NULL, 0, 1,
     1048576, "Bytes of a label value; longer: 422 (400 in the name parameter)."},
    {"max-series-per-profile", OPT_COUNT, FIELD(ingest.max_series_per_profile, size_t), NULL, 0, 1,
     100000, "Series one profile may split into (by sample labels and sample types); more: 422."},
    {"max-symbol-len", OPT_COUNT, FIELD(ingest.max_symbol_len, size_t), NULL, 0, 16, 1048576,
     "Bytes of a function or file name; longer: 422."},
    {"ingest-max-tree-nodes", OPT_COUNT, FIELD(ingest.max_tree_nodes, size_t), NULL, 0, 16,
     100000000, "Call-tree nodes of one series of one profile; more: 422."},
    {"max-spans-per-series", OPT_COUNT, FIELD(ingest.max_spans_per_series, size_t), NULL, 0, 0,
     1000000,
     "Span and trace trees (distinct span_id/trace_id values) one series of one profile keeps in "
     "the span index; further ids are dropped from the index (their samples still count) and "
     "counted in flamedb_ingest_spans_dropped_total. 0 disables the span index."},
    {"ingest-decoded-per-byte", OPT_COUNT, FIELD(ingest.decoded_per_byte, size_t), NULL, 0, 1,
     1000000,
     "Decoded pprof bytes allowed per byte of the (gunzipped) message, at least 2 MiB and at "
     "most max-decoded-bytes; real profiles need under 1 (0.75 at most in the test corpus), a "
     "message of empty entries up to 4 (413)."},
    {"ingest-max-request-nodes", OPT_COUNT, FIELD(ingest.max_request_nodes, size_t), NULL, 512,
     1024, 1000000000,
     "Call-tree nodes one push may create over all its series and span trees, counted while it "
     "is parsed; over it the push gets 413."},
    {"ingest-request-memory-per-byte", OPT_COUNT, FIELD(ingest.request_memory_per_byte, size_t),
     NULL, 0, 1, 1000000,
     "Memory one push may hold while it is parsed, in bytes per byte of its gunzipped payload (at "
     "least 4 MiB): its gunzipped body, decoded message, symbols, series, call trees (8 bytes a "
     "node plus its 4-byte edge slots and growth room while it grows, and 12 bytes a sample "
     "for the values kept apart until it is made; 24 once made, and 8 per further sample type "
     "whose values are not a multiple of the first's; 8 bytes per distinct symbol of a tree "
     "once made, none while it grows), span trees and scratch, counted as allocated; over it the "
     "push gets 413. Real profiles "
     "need at most 5.0 (the largest of the test corpus, a CPU profile of 0.17 distinct "
     "call-tree nodes a byte in two sample types; typical ones 2 to 4), kept under three "
     "quarters of the default."},
    {"ingest-max-request-work", OPT_COUNT, FIELD(ingest.max_request_work, size_t), NULL, 0, 1024,
     100000000000ull,
     "Stack frames one push may walk building its trees (samples x sample types x depth, span "
     "trees included), counted while it is parsed; over it the push gets 413."},
    {"ingest-request-work-per-byte", OPT_COUNT, FIELD(ingest.request_work_per_byte, size_t), NULL,
     0, 1, 1000000,
     "Stack frames a push may walk per byte of its gunzipped payload (at least 4194304, at most "
     "ingest-max-request-work); real profiles need under 3 (2.4 at most in the test corpus)."},
    {"shards-per-service", OPT_U32, FIELD(ingest.shards.default_shards, uint32_t), NULL, 0, 1, 4096,
     "Placement shards per service. The data directory records it at its first start; a later "
     "start takes the recorded value unless given, and refuses a different one (it would move "
     "data). Every node of a cluster must use the same."},
    {"shard-by-profile", OPT_INT, FIELD(ingest.shards.by_profile, int), NULL, 0, 0, 1,
     "1: place a series by its labels without __profile_type__, so the sample types of one "
     "profile share a shard (one stack-node table, and a CPU profile's nanoseconds tree stored "
     "as a factor of its samples tree: docs/storage-format.md); 0: by its series id. Recorded "
     "like shards-per-service; a data directory holding series from before the record was "
     "placed with 0 and keeps it unless given. Every node of a cluster must use the same: a node "
     "joining a cluster made with 0 needs it set to 0 (the members refuse the gossip of a node "
     "placing otherwise: it never joins)."},
    {"service-shards", OPT_TEXT, FIELD(service_shards, char[NODE_PATH_MAX]), "", 0, 0, 4000,
     "Per-service shard counts for very large services, e.g. 'checkout=16,search=8' (at most 64; "
     "a service's count must be set before its data arrives: changing it moves data). Recorded "
     "like shards-per-service; every node must use the same list."},
    {"max-past", OPT_SECONDS, FIELD(ingest.max_past_seconds, int64_t), NULL, 0, 0, 100 * YEAR_S,
     "How far in the past a profile's time may be (backfill window); older: 400."},
    {"max-future", OPT_SECONDS, FIELD(ingest.max_future_seconds, int64_t), NULL, 0, 0, 7 * DAY_S,
     "How far in the future a profile's time may be (clock skew); later: 400."},
    SECTION("Query limits"),
    {"query-max-nodes", OPT_COUNT, FIELD(query.max_nodes_limit, size_t), NULL, 0, 1, 10000000,
     "Largest maxNodes a render request may ask for; a larger one is lowered to it."},
    {"query-max-tree-nodes", OPT_COUNT, FIELD(query.max_tree_nodes, size_t), NULL, 0, 16,
     1000000000, "Nodes a merged call tree may hold; more: the query gets 422."},
    {"query-max-series", OPT_COUNT, FIELD(query.max_series, size_t), NULL, 0, 1, 100000000,
     "Series one query may touch; more: 422."},
    {"query-max-output-bytes", OPT_SIZE, FIELD(query.max_output_bytes, size_t), NULL, 0, 1 * KiB,
     16 * GiB, "Size of one query response body; larger: 422."},
    {"query-max-span-ids", OPT_COUNT, FIELD(query.max_span_ids, size_t), NULL, 0, 1, 10000000,
     "Distinct span or trace ids one listing (GET /pyroscope/label-values?label=span_id or "
     "trace_id) may hold, on each node and merged; more: 422 naming this setting."},
    {"query-memory-bytes", OPT_SIZE, FIELD(query_memory_bytes, size_t), NULL, 16, 64 * KiB,
     1024 * GiB,
     "Partial results all queries this node coordinates hold at once: answers from nodes "
     "waiting to be merged, merged call trees, encoded answers. Over it the query that grows "
     "gets 503 with Retry-After, and new queries are refused with 503 until memory is "
     "released; part of memory-limit. The shares this node serves for other nodes' queries "
     "(their merged trees, charged once merged, their forests and the forest encoder's "
     "working memory as they are written, and their encoded answers) count in it too: "
     "one that does not fit is refused, and its coordinator asks another replica, or "
     "answers 503 naming this node when none is left. So does every share's merge while it runs "
     "(its dense vectors, one "
     "value per stack node of each token, and its tree-build scratch), and every label-shares "
     "or groupBy share's timelines while they are summed (one per label value). So do the "
     "coordinator's own steps while they run, not only once done: the merged tree as each "
     "share's answer is merged into it (a truncated render's forests, decoded before they are "
     "added), and while the answer is finished the truncated tree, the maxNodes selection's "
     "arrays (charged as they grow) and the answer once encoded; one that does not fit fails "
     "the query with 503 naming this setting (413 when it could never fit). A streamed "
     "answer (query-stream-bytes: folded, SVG, pprof, JSON and speedscope renders, a stored "
     "profile's, a folded, speedscope, SVG or JSON render-diff, a groupBy render, a long "
     "label-values list or profiles listing) counts its merged tree and names (a list: its "
     "values or entries), not its text, until its last byte is sent or its client goes."},
    {"query-stream-bytes", OPT_SIZE, FIELD(query.stream_min_bytes, size_t), "1MiB", 0, 0, 16 * GiB,
     "An answer at least this large is sent as it is written, a slice at a time as the "
     "client reads it, instead of whole from memory: only its merged tree and names count in "
     "query-memory-bytes while it is sent (and the slice being written in "
     "max-buffered-bytes). Folded renders and render-diffs without maxNodes and a stored "
     "profile's folded text are measured first (sent with Content-Length); an SVG, a JSON "
     "flame graph, a speedscope file or a gzipped pprof (of a render or a stored profile; a "
     "speedscope, SVG or JSON render-diff too), a label-names or label-values list or a "
     "GET /api/profiles listing streams when a lower bound of its size reaches this, and is "
     "sent with Transfer-Encoding: chunked; a groupBy render is its render (streamed or "
     "whole), then its groups member. Smaller answers are sent whole. 0: never streamed."},
    {"report-cache-bytes", OPT_SIZE, FIELD(report_cache_bytes, size_t), NULL, 64, 0, 1024 * GiB,
     "Regression reports (GET /api/diff) this node keeps after computing them, so that a "
     "search within one (reportId with search) lists its rows without rendering every bucket "
     "again: the last ones computed, least recently used evicted first. Counts in "
     "query-memory-bytes and never takes more than a quarter of it, whatever this says, so the "
     "queries in progress always have three quarters (a report that does not fit beside them "
     "is not kept, after evicting older ones). A 23,000-function report takes about 3.1 MiB. "
     "0: none kept, every search computes its report again."},
    {"report-timeout", OPT_MS, FIELD(report_timeout_ms, uint64_t), "60s", 0, 50, 3600000,
     "Deadline of a regression report (GET /api/diff) as a whole. Its up to 60 bucket queries "
     "run 8 at a time, each with its own query-timeout, so without it one report could hold "
     "query slots for 60 query-timeouts. When it passes, the bucket queries still running are "
     "cancelled, the others never start, and the request is answered 504 naming this setting "
     "and how many bucket queries had answered (nothing is cached). It must be above "
     "query-timeout (else bucket queries that would answer partial become a 504): set at or "
     "under it, the start is refused naming both; unless set, it is twice query-timeout when "
     "60s is not above it."},
    {"combined-query-timeout", OPT_MS, FIELD(combined_timeout_ms, uint64_t), "60s", 0, 50, 3600000,
     "Deadline, as a whole, of an answer built from two queries through the cluster: "
     "render-diff (its two sides) and a render with groupBy (the flame graph and the label's "
     "timelines). Each query has its own query-timeout and both run at once, but the jobs that "
     "merge and encode their answers have none (they wait in order for the query lane): this "
     "bounds the answer as a whole. When it passes before the join starts, the queries still "
     "running "
     "are cancelled and the request is answered 504 naming this setting and how many of the two "
     "had answered. It must be above query-timeout (a query whose nodes do not answer by then "
     "answers partial, which this would turn into a 504): set at or under it, the start is "
     "refused naming both; unless set, it is twice query-timeout when 60s is not above it."},
    {"ingest-inflight-bytes", OPT_SIZE, FIELD(ingest_inflight_bytes, size_t), NULL, 8, 1 * MiB,
     1024 * GiB,
     "Memory all pushes and replica writes (hint replays included) in progress on this node may "
     "hold at once: decoded pprof messages, gunzipped bodies, symbol tables and call trees, "
     "charged as they grow. Over it a push gets 503 with Retry-After and a replica write is "
     "refused as "
     "unavailable (the coordinator hints it); a push that alone needs more gets 413. Part of "
     "memory-limit."},
    {"ingest-stack-cache-bytes", OPT_SIZE, FIELD(ingest_stack_cache_bytes, size_t), "16MiB", 0, 0,
     1024 * GiB,
     "Stacks earlier pushes stored, kept by content (their frames' functions and files) with "
     "their stack-node ids, 16 bytes a stack: a pprof push whose stacks were seen before adds "
     "their samples by id instead of building and mapping call trees for them. Used on a "
     "node that is its cluster's only member (with replicas, each copy maps its own trees). "
     "Taken out of node-cache-bytes, and at most a quarter of it whatever this says, so part "
     "of memory-limit. 0: off."},
    {"ingest-trim-refused-bytes", OPT_SIZE, FIELD(ingest_trim_refused_bytes, size_t), "1MiB", 0, 0,
     1024 * GiB,
     "A push refused after it held at least this much memory (its call trees, decoded message, "
     "symbols: what ingest-request-memory-per-byte charges) gives the memory it freed back to "
     "the system before its worker takes the next job (malloc_trim: 0.3 ms for 7 MiB; more "
     "the first time, when it also gives back what queries kept). "
     "Otherwise each worker thread's malloc arena keeps what the push freed, and hostile pushes "
     "landing on different workers leave the node larger by their charge once per worker. "
     "Accepted pushes keep their freed memory for the next one. 0: never."},
    SECTION("Storage"),
    {"block-cache-bytes", OPT_SIZE, FIELD(storage.block_cache_bytes, size_t), NULL, DERIVE_QUARTER,
     1 * MiB, 1024 * GiB, "RocksDB block cache shared by all column families."},
    {"write-buffer-bytes", OPT_SIZE, FIELD(storage.write_buffer_bytes, size_t), NULL,
     DERIVE_QUARTER, 1 * MiB, 1024 * GiB, "Total RocksDB memtable budget."},
    {"union-cache-bytes", OPT_SIZE, FIELD(storage.union_cache_bytes, size_t), "16MiB", 0, 0,
     1024 * GiB,
     "Shard unions kept in memory. A render over several shards of a service (placement "
     "tokens, each with a stack-node table of its own) adds their values up over one numbering "
     "of their tables' stack nodes, built by the first such render and extended as the tables "
     "grow (about a quarter of the bytes of the tables it unites), instead of merging a forest "
     "per shard: about a quarter less time a render (a share answering another node's render "
     "makes one even of a single shard: its coordinator adds the values by its ids, "
     "scatter-space-cache-bytes). A node's render of its own data holds its union (locked) "
     "until it has cut the forest and loaded its names, its forest reading the union's "
     "structure in place; other renders of the same shards at once wait for it (about a "
     "third of a millisecond each on the benchmark's heap render). Past the bound the least "
     "recently used go first; a union that grows past the bound alone is given up as it is "
     "built and not "
     "tried again until a stack-node table is deleted or emptied (that service renders a "
     "forest per shard meanwhile, as everything does with 0; "
     "flamedb_storage_union_refused_total counts them). Taken out of "
     "node-cache-bytes, and at most a quarter of it whatever this says, so part of "
     "memory-limit."},
    {"node-cache-bytes", OPT_SIZE, FIELD(storage.node_cache_bytes, size_t), NULL, 8, 1 * MiB,
     1024 * GiB,
     "Stack-node tables (the call-tree shapes blocks index; three quarters) and "
     "symbol names (one quarter) kept in memory; defaults to an eighth of memory-limit. A "
     "service shard's table takes about 50 bytes per distinct stack prefix, and once a "
     "cluster share has rendered from it 4 more per prefix and 32 to 64 per distinct symbol "
     "(its symbol index, built in memory). Past the bound, tables used once or idle for "
     "twice their reuse distance go first, then the one whose next use is furthest ahead, so "
     "services pushing in turn keep a stable subset cached. The most recently "
     "used table stays even when it alone is larger (a warning says so; "
     "flamedb_storage_node_table_loads_total counts the loads); a push to a table that is not "
     "cached reads it whole when it fits node-whole-read-percent of the tables' part, else "
     "only its last chunk and the index buckets of the stacks it sends, once the "
     "table is indexed (node-index-min-nodes). flamedb_storage_node_cache_hits_total, "
     "_misses_total, _evictions_total and _bytes show whether it is large enough "
     "(docs/operations.md, section 8)."},
    {"retention-10s", OPT_SECONDS, FIELD(storage.retention_seconds[0], int64_t), NULL, 0, 0,
     100 * YEAR_S, "Retention of 10-second blocks (0 = forever)."},
    {"retention-1m", OPT_SECONDS, FIELD(storage.retention_seconds[1], int64_t), NULL, 0, 0,
     100 * YEAR_S, "Retention of 1-minute blocks (0 = forever)."},
    {"retention-10m", OPT_SECONDS, FIELD(storage.retention_seconds[2], int64_t), NULL, 0, 0,
     100 * YEAR_S, "Retention of 10-minute blocks (0 = forever)."},
    {"retention-1h", OPT_SECONDS, FIELD(storage.retention_seconds[3], int64_t), NULL, 0, 0,
     100 * YEAR_S, "Retention of 1-hour blocks (0 = forever)."},
    {"retention-1d", OPT_SECONDS, FIELD(storage.retention_seconds[4], int64_t), NULL, 0, 0,
     100 * YEAR_S, "Retention of 1-day blocks (0 = forever)."},
    {"seen-retention", OPT_SECONDS, FIELD(storage.seen_retention_seconds, int64_t), NULL, 0, 60,
     100 * YEAR_S, "How long ingested profile ids are remembered, so retries count once."},
    {"span-retention", OPT_SECONDS, FIELD(storage.span_retention_seconds, int64_t), NULL, 0, 0,
     100 * YEAR_S,
     "Retention of span and trace trees (the span index), counted from the end of their 10-second "
     "window (0 = forever)."},
    {"profile-retention", OPT_SECONDS, FIELD(storage.profile_retention_seconds, int64_t), NULL, 0,
     0, 100 * YEAR_S,
     "Retention of single-profile trees (GET /api/profiles/ID), counted from the profile's time "
     "(0 = forever); a node receiving a range in a move keeps older ones there until the move "
     "ends (docs/cluster.md, \"Streaming whole windows\"). A kept tree is also its 10 s "
     "window's data (docs/storage-format.md, profile_trees): the disk keeps it until that "
     "window expires too, unlisted past this retention."},
    {"max-profile-tree-bytes", OPT_SIZE, FIELD(storage.max_profile_tree_bytes, size_t), NULL, 0, 0,
     1 * GiB,
     "Largest encoded tree of one profile's series kept for GET /api/profiles/ID; larger ones are "
     "listed but cannot be opened (0 = keep none), except on a node receiving their range in a "
     "move (docs/cluster.md, \"Streaming whole windows\")."},
    {"max-open-files", OPT_INT, FIELD(storage.max_open_files, int), "0", 0, 0, 10000000,
     "SST files RocksDB keeps open at once (its table cache; each open file also holds its "
     "index and filter blocks in memory); others are opened as they are read and closed "
     "again. Without a bound RocksDB keeps every file open, so the descriptors it needs grow "
     "with the database until they pass the open-file limit and writes fail. 0: derived at "
     "start from the open-file limit (RLIMIT_NOFILE, once raised to the hard limit): what it "
     "leaves besides max-connections, less a quarter of fd-reserve kept for the write-ahead "
     "logs, RocksDB's other files, the cluster transport and the rest (at least 20, "
     "RocksDB's least); with no open-file limit, no bound. A value given that does not fit in what "
     "the open-file limit leaves is refused at start. The value in force is logged at "
     "start."},
    {"stream-window-max-profiles", OPT_COUNT, FIELD(storage.stream_window_max_profiles, size_t),
     NULL, 0, 16, 100000000,
     "Profiles a node streaming a range to another (a join, a decommission, a regain) may list "
     "for one window it reads: the window's kept and untreed profiles, the profile_trees "
     "entries it looks at and its series' seen entries together, 32 bytes each (each of the "
     "4 requests served at once, and each window snapshot of stream-window-cache, holds at "
     "most this). A window past it is refused with its series and window named in the log "
     "and the answer: the receiver takes nothing of it and its range stays untaken (joining, "
     "or unread) until it fits, never short (docs/cluster.md, \"Streaming whole windows\")."},
    {"max-background-jobs", OPT_INT, FIELD(storage.max_background_jobs, int), NULL, 0, 1, 64,
     "RocksDB flush and compaction threads."},
    {"rocksdb-log-level", OPT_INT, FIELD(storage.rocksdb_log_level, int), NULL, 0, 0, 5,
     "What RocksDB writes to its own LOG file in the data directory: 0 debug, 1 info, 2 warn, "
     "3 error, 4 fatal, 5 only the header at open. Debian's librocksdb is built with assertions "
     "on, and a LOG write after one failed for lack of disk space aborts the process: with 5 a "
     "full disk only refuses writes (503) until room is made, then RocksDB resumes by itself; "
     "lower levels help debugging on a disk that cannot fill."},
    {"sync-writes", OPT_INT, FIELD(storage.sync_writes, int), "0", 0, 0, 1,
     "1: every acknowledged write is fsynced to the write-ahead log first (concurrent writes "
     "share one fsync), so it survives a power loss of the machine; 0: written to the log, not "
     "synced: survives kill -9 of the process, not a power loss (docs/operations.md, "
     "Durability)."},
    {"series-gc-interval", OPT_SECONDS, FIELD(storage.series_gc_interval_seconds, int64_t), NULL, 0,
     0, 7 * DAY_S,
     "How often series whose blocks retention has all dropped are deleted with their postings "
     "(so label queries stop listing them), then stack-node tables no live block or profile tree "
     "uses and symbols no table or span tree names; 0 = never."},
    {"max-span-nodes", OPT_COUNT, FIELD(storage.max_span_nodes, size_t), NULL, 0, 16, 100000000,
     "Nodes one stored span or trace tree (one span id, series and 10-second window) keeps; "
     "past it the lightest nodes fold into \"other\" nodes, totals exact (at write and when "
     "pushes that name the same span id are merged)."},
    {"max-span-members", OPT_COUNT, FIELD(storage.max_span_members, size_t), NULL, 0, 0, 4096,
     "Profiles one stored span or trace tree (one span id, series and 10-second window) lists "
     "by id, each with its own tree, so a tree streamed to a node gaining its range unites "
     "with the live writes it got meanwhile without counting a profile twice. Past it the "
     "highest ids fold into one anonymous rest; a streamed tree with a rest (or met by one) "
     "keeps only the side with more profiles, and live writes to a tree holding a streamed "
     "rest are left out, so such a span may be short on that node, never long "
     "(flamedb_storage_span_profiles_dropped_total); a span query that sums such a tree is "
     "answered flagged partial (X-Flamedb-Partial: span_members=N). Each listed profile costs 17 "
     "bytes and "
     "its own tree (trees of one key are not shared); 0 = none listed."},
    {"window-profile-ids", OPT_COUNT, FIELD(storage.window_profile_ids, size_t), NULL, 0, 0, 65536,
     "Profile ids one window of a series lists (format 14), at the resolutions whose windows "
     "outlive profile-retention (retention plus width longer, or forever; by default 1 minute "
     "to 1 day, not 10 seconds), decided from the settings when written: such a window also "
     "keeps how many profiles it holds, the sum of their totals and a hash of their ids, so "
     "averaged types (in-use memory, goroutines) stay exact past profile-retention and the "
     "window check of repair can tell which profiles two replicas' copies of an old window "
     "hold; within profile-retention both take a window's profiles from the stored profile "
     "trees. Past it the window keeps only the count and the hash (such copies compare as "
     "equal or not, never as one holding the other). Each listed id costs 8 bytes (a hash of "
     "it, format 16) per window and kept resolution; 0 = none listed."},
    {"max-stack-nodes", OPT_U32, FIELD(storage.max_stack_nodes, uint32_t), NULL, 0, 1024, 1u << 29,
     "Distinct stacks (nodes of the stack-node table) one service shard keeps. Past it, new "
     "stacks are stored folded into \"other\" nodes (values exact, shape lost below the fold; "
     "counted in flamedb_storage_folded_stacks_total) instead of being refused; about 30 bytes "
     "of node cache each."},
    {"node-index-min-nodes", OPT_U32, FIELD(storage.node_index_min_nodes, uint32_t), NULL, 0, 0,
     1u << 29,
     "Nodes from which a service shard's stack-node table keeps an edge index ((parent, "
     "symbol) -> node, in buckets of 256 parents: docs/storage-format.md), so that a push to "
     "it when it is not cached reads only its last chunk and the index buckets of its stacks. "
     "A smaller table keeps none (less disk and ingest "
     "CPU) and is read whole on a cache miss; the write that takes it to the threshold indexes "
     "every node. A table that would take more than a quarter of the table part of "
     "node-cache-bytes (counted at 100 bytes a node) is indexed whatever the setting; 1 indexes "
     "every table. 0 (the default): from 65,536 nodes, and only once the table is too large "
     "for node-whole-read-percent (a push would not read it whole, so only then is the index "
     "read); a table that a smaller cache leaves unindexed past that size is read whole by its "
     "next push and indexed in that push."},
    {"node-whole-read-percent", OPT_U32, FIELD(storage.node_whole_read_percent, uint32_t), NULL, 0,
     0, 100,
     "A push that finds an indexed stack-node table not in memory reads it whole (one "
     "sequential read of its chunks; it then stays cached like any other) when it takes at most "
     "this percent of the table part of node-cache-bytes, else only its last chunk and the "
     "index buckets of the stacks it sends (a read per bucket of 256 parents, batched). A fleet "
     "whose "
     "tables do not all fit and whose services push in turn then maps a push through memory. "
     "0 never reads a table whole for a push; flamedb_storage_node_table_whole_reads_total "
     "counts the whole reads."},
    {"window-successive-merges", OPT_U32, FIELD(storage.window_successive_merges, uint32_t), NULL,
     0, 0, 1u << 20,
     "Merge operands a block window keeps in memory before the next push to it folds them into "
     "one value (RocksDB max_successive_merges of the blocks column family; 0: never at write, "
     "only flushes and compactions fold). A flame graph of recent windows adds every operand it "
     "meets as a part: lower values make such reads cheaper and each push dearer (it reads and "
     "re-encodes the window it folds; docs/benchmarks.md)."},
    {"window-fold-interval", OPT_SECONDS, FIELD(storage.window_fold_interval_seconds, int64_t),
     NULL, 0, 0, DAY_S,
     "How often a background pass folds the in-memory merge operands of every block window that "
     "has ended into one value (the same sum): a window is folded once, within this long after "
     "its end, instead of at every window-successive-merges operands, and a flame graph of "
     "recent windows then adds one part per window instead of one per profile. The pass reads "
     "only the memtables of the blocks column family; 0 = never (flushes and compactions still "
     "fold; docs/benchmarks.md)."},
    {"window-fold-batch-bytes", OPT_SIZE, FIELD(storage.window_fold_batch_bytes, size_t), NULL,
     1024, 64 * KiB, 1 * GiB,
     "The window fold's pass commits its write batch once it holds this many bytes of sums. "
     "While window-fold-interval is on, the pass's working memory (four times this, for the "
     "batch and the window it reads, plus about 100 KiB of keys) is part of memory-limit; a "
     "window larger than this adds about twice its size while it is folded, as reading it "
     "does."},
    {"total-successive-merges", OPT_U32, FIELD(storage.total_successive_merges, uint32_t), NULL, 0,
     0, 1u << 20,
     "The same for a window's total (the totals column family). 0 (the default): never at "
     "write, only flushes and compactions fold; a timeline read adds a recent window's 8-byte "
     "operands, while counting them at write costs every push a memtable search per total "
     "(docs/benchmarks.md)."},
    {"aggregate-anchors", OPT_U32, FIELD(storage.aggregate_anchors, uint32_t), NULL, 0, 1,
     STORAGE_AGGREGATE_ANCHORS_MAX,
     "Member series of a service aggregate, per placement token, that the aggregate does not "
     "hold: the first ones written to it on the token (its anchors), which a whole-service "
     "query reads alongside it. A shard with at most this many series of a service (per "
     "profile type) stores their windows once instead of twice; each anchor is one more series "
     "such a query reads. Raising it takes effect for series new to their token; lowering it "
     "keeps the anchors recorded (docs/storage-format.md, docs/benchmarks.md)."},
    {"node-table-dict-bytes", OPT_SIZE, FIELD(storage.node_table_dict_bytes, size_t), NULL, 0, 0,
     256 * KiB,
     "zstd dictionary of the stack-node tables' files on RocksDB's bottommost level (where "
     "compaction leaves most of the data): the symbol ids a table lists repeat across its "
     "chunks and across the shards of a service, which blocks compressed alone cannot use. "
     "A compaction writing such a file buffers up to 64 times this of it to train the "
     "dictionary, stored once per file; 0: none. That buffer, times the compactions "
     "max-background-jobs runs at once (its three quarters, at least one), is part of "
     "memory-limit; unless set, the dictionary is memory-limit / 16384, at most 64 KiB (from "
     "1 GiB up). Changing it rewrites nothing: files keep the dictionary they were written "
     "with (docs/benchmarks.md)."},
    SECTION("Cluster"),
    {"node-id", OPT_TEXT, FIELD(cluster.node_id, char[NODE_PATH_MAX]), "", 0, 0, 64,
     "This node's id. Empty: generated on first start and kept in the data dir; a restarted "
     "node keeps its id and tokens."},
    {"cluster-listen", OPT_TEXT, FIELD(cluster.cluster_listen, char[NODE_PATH_MAX]), "", 0, 0, 255,
     "Intra-cluster address, tcp://HOST:PORT. Empty: a single node (a cluster of one)."},
    {"advertise", OPT_TEXT, FIELD(cluster.advertise, char[NODE_PATH_MAX]), "", 0, 0, 255,
     "Cluster address other nodes dial, tcp://HOST:PORT. Empty: cluster-listen, which then must "
     "be an address others can dial (a cluster-listen of tcp://0.0.0.0:PORT or tcp://*:PORT "
     "needs this setting)."},
    {"join", OPT_TEXT, FIELD(cluster.join, char[NODE_PATH_MAX]), "", 0, 0, 4000,
     "Seed nodes to join through, comma-separated tcp://HOST:PORT."},
    {"cluster-name", OPT_TEXT, FIELD(cluster.cluster_name, char[NODE_PATH_MAX]), "flamedb", 0, 1,
     64, "Name of the cluster; messages from a cluster with another name are refused."},
    {"cluster-secret-file", OPT_OFFPATH, FIELD(cluster.secret_file, char[NODE_PATH_MAX]), "", 0, 0,
     4000,
     "File holding the cluster secret (16 to 4096 bytes, readable by its owner only), the same "
     "on every node. Every intra-cluster message is signed with it (HMAC-SHA-256) and messages "
     "not signed with it are refused. When not set, $CREDENTIALS_DIRECTORY/cluster.secret "
     "(systemd's LoadCredential=cluster.secret:PATH) is used if it exists. Empty: messages are "
     "not signed, and any process that can "
     "reach cluster-listen can join, write, acknowledge and query: leave it empty only when "
     "the cluster port is on a loopback address."},
    {"replication-factor", OPT_U32, FIELD(cluster.replication_factor, uint32_t), "3", 0, 1, 15,
     "Replicas of every series (RF). Capped by the number of nodes."},
    {"write-quorum", OPT_U32, FIELD(cluster.write_quorum, uint32_t), "0", 0, 0, 15,
     "Replica acknowledgements a push waits for (W); 0 = a majority of RF. At most "
     "replication-factor (a larger W is refused at start); capped by the nodes there are, as RF "
     "is."},
    {"tokens", OPT_U32, FIELD(cluster.tokens, uint32_t), "128", 0, 1, 4096,
     "Virtual nodes (ring tokens) of this node, chosen on first start."},
    {"gossip-interval", OPT_MS, FIELD(cluster.gossip_interval_ms, uint64_t), "1s", 0, 50, 60000,
     "How often membership is gossiped to a peer."},
    {"failure-timeout", OPT_MS, FIELD(cluster.failure_timeout_ms, uint64_t), "5s", 0, 200, 600000,
     "A node not heard from for this long is marked down."},
    {"redial-interval", OPT_MS, FIELD(cluster.redial_interval_ms, uint64_t), "1s", 0, 0, 600000,
     "While a member is marked down, or while requests to it (writes, queries, repair, gossip "
     "SYNs) go unanswered although it is not (nothing answered for failure-timeout: only the "
     "link to it is cut, and gossip through others keeps it alive), how often this node drops its "
     "connection to it and dials it again (checked every gossip-interval). An established TCP "
     "connection to a node that is cut off stays open while TCP retransmits with a backoff that "
     "doubles up to minutes, so after the network heals it could stay silent about as long as "
     "the outage lasted; a fresh connection resumes traffic within about this interval (0 = "
     "never: keep the connection)."},
    {"write-timeout", OPT_MS, FIELD(cluster.write_timeout_ms, uint64_t), "5s", 0, 50, 600000,
     "Deadline of a replicated write; without a write quorum by then the push gets 503."},
    {"query-timeout", OPT_MS, FIELD(cluster.query_timeout_ms, uint64_t), "30s", 0, 50, 3600000,
     "Deadline of a scatter-gather query; ranges not answered by then make it partial. Also how "
     "long a repair or stream request waits for a peer that is not marked down (at least 1 s)."},
    {"scatter-space-cache-bytes", OPT_SIZE, FIELD(cluster.scatter_space_cache_bytes, size_t),
     "16MiB", 0, 0, 1024 * GiB,
     "The id spaces of other nodes' shares of a render that the coordinator maps: each share "
     "answers its service's values by the ids of its shard union, whose structure (each id's "
     "parent and symbol) the coordinator keeps after the first render, per service and node, "
     "so later renders add the values by id with no merge by symbol (about 24 bytes per call "
     "path of a service, plus 4 per path and node), with the names of its symbols (its own "
     "share's too), which its answers are written from. Past the bound the least recently used "
     "services go first and their next render sends the structure again; one past it alone "
     "renders by forests for its next 1000 renders (0 = none kept: every share sends its "
     "forests). Taken out of query-memory-bytes, and at most a quarter "
     "of it whatever this says, so part of memory-limit."},
    {"scatter-name-cache-bytes", OPT_SIZE, FIELD(cluster.scatter_name_cache_bytes, size_t), NULL,
     256, 0, 1024 * MiB,
     "Names (function and file) of the symbols that other nodes' shares of a render sent, kept "
     "by the coordinator so that its later renders tell the shares not to send them again "
     "(each render's requests carry 8 bytes per symbol kept for its tenant, within a quarter "
     "of max-message-bytes). Past it every tenant's names are dropped at once and sent again by "
     "the next renders; while renders still hold dropped names no more are kept, so at most "
     "about twice this is held (0 = none kept: every share sends the names of all its forests' "
     "symbols). Defaults to a 256th of memory-limit (4 MiB at 1 GiB). Counted once in "
     "memory-limit with the other budgets (the second copy, while renders hold dropped names, "
     "comes out of its headroom)."},
    {"max-message-bytes", OPT_SIZE, FIELD(cluster.max_message_bytes, size_t), "64MiB", 0, 64 * KiB,
     2 * GiB,
     "Largest intra-cluster message sent or accepted (nanomsg NN_RCVMAXSIZE). A stream "
     "answer holds about a quarter of it; a window larger than that quarter is streamed in "
     "parts of at most a quarter each. An anti-entropy fetch answer holds at most half of it, "
     "the span trees of one fetched profile at most a quarter (past it they go by name and "
     "the repaired node flags span queries of them partial). It must hold a stack of "
     "max-stack-depth frames (checked at start). Unless set, it is at most "
     "chunk-receive-max-bytes (16 MiB at the default memory-limit of 1 GiB, 64 MiB from 4 "
     "GiB), so that every message sent in pieces can be put back together."},
    {"max-frame-bytes", OPT_SIZE, FIELD(cluster.max_frame_bytes, size_t), "1MiB", 0, 64 * KiB,
     2 * GiB,
     "Largest frame the cluster port accepts (nanomsg NN_RCVMAXSIZE): a message larger than "
     "this is sent as pieces of at most this size, each signed, put back together by the "
     "receiver from the pieces whose MAC checked (at most two messages per member at a time, "
     "within chunk-receive-max-bytes). nanomsg allocates a frame at the size its header "
     "announces and reads it whole before the MAC can be checked, so this is what any "
     "connection to the cluster port, secret or not, can make a node hold: about two frames "
     "per open connection. Above max-message-bytes it is max-message-bytes. Each node "
     "advertises it in its member entry and cuts what it sends a member to the smaller of the "
     "two. A member of a version without this setting (it advertises none) neither cuts nor "
     "puts back together: it is sent whole messages (up to max-message-bytes), and while such "
     "a member is listed (and for the first failure-timeout after a start, before gossip "
     "brought the members) the port takes frames of up to max-message-bytes instead, logged "
     "when it changes (frame_limit_bytes in /cluster/status): a rolling upgrade needs no "
     "setting (docs/cluster-protocol.md, \"Frames and chunks\"; docs/operations.md)."},
    {"chunk-receive-max-bytes", OPT_SIZE, FIELD(cluster.chunk_receive_max_bytes, size_t), NULL, 64,
     64 * KiB, 1024 * GiB,
     "Memory a node may hold for messages coming in pieces (larger than a frame), over all "
     "members: each reserves its whole size at its first piece. A message whose first piece "
     "would pass it is dropped (logged with its sender and size; chunked_over_budget in "
     "/cluster/status) and its sender's request fails as if the message were lost (a timeout "
     "or refusal, never a short answer): it should be at least the largest message the "
     "cluster sends (at most max-message-bytes; stream answers about a quarter of it, repair "
     "answers half). Part of memory-limit."},
    {"hints-max-bytes", OPT_SIZE, FIELD(cluster.hints_max_bytes, size_t), "1GiB", 0, 0, 1024 * GiB,
     "Durable hinted-handoff bytes kept per unreachable node; beyond it the hint "
     "is dropped and anti-entropy must repair (0 = hinted handoff off). hints-max-total-bytes "
     "bounds them over all targets."},
    {"hints-max-total-bytes", OPT_SIZE, FIELD(cluster.hints_max_total_bytes, size_t), "0", 0, 0,
     4096 * GiB,
     "Durable hinted-handoff bytes kept over all unreachable nodes together: with several "
     "targets down at once their hints could otherwise take hints-max-bytes each. Past it a "
     "hint for any target is dropped as one over hints-max-bytes is (its target marked for "
     "repair, flamedb_hints_dropped_full_total; docs/operations.md, section 5). "
     "0: 4 x hints-max-bytes."},
    {"hint-replay-interval", OPT_MS, FIELD(cluster.hint_replay_interval_ms, uint64_t), "1s", 0, 50,
     600000, "How often hints are replayed to nodes that are back."},
    {"hint-expiry", OPT_MS, FIELD(cluster.hint_expiry_ms, uint64_t), "0s", 0, 0,
     100 * YEAR_S * 1000,
     "How long a stored hint is kept for a target that does not take it; then it is dropped "
     "undelivered, whether the target is reachable or not, and the target marked for repair "
     "(flamedb_hints_dropped_expired_total). At most 0.9 x seen-retention, so no "
     "hint is replayed after its profile id was forgotten (0: that bound)."},
    {"repair-interval", OPT_MS, FIELD(cluster.repair_interval_ms, uint64_t), "1h", 0, 0,
     7 * 86400000ULL,
     "How often this node runs an anti-entropy pass over the ranges it replicates, the first "
     "one interval after the start, each delayed by up to a tenth of the interval at random so "
     "nodes restarted together do not compare at once (0 = only on demand: flamectl cluster "
     "repair)."},
    {"repair-windows-interval", OPT_MS, FIELD(cluster.repair_windows_interval_ms, uint64_t), "24h",
     0, 0, 30 * 86400000ULL,
     "How often a scheduled anti-entropy pass also runs the window check: per range this node "
     "replicates, the totals of every window older than the seen span, summed per resolution, "
     "compared with each other replica's; a range where another replica holds more is cleared "
     "here and streamed whole from it (docs/cluster.md, \"The window check\"). Passes asked "
     "for on demand (flamectl cluster repair) always run it, and so does a pass run a settle "
     "margin (--join-settle) after another member goes down or leaves the ring "
     "(a coordinator gone may take the marks of writes a replica missed); 0 = only on "
     "demand, except on a replica whose repair mark went with a member that left the ring: "
     "it is not read from until such a check compared its copy (docs/cluster.md, \"A mark "
     "that leaves with its holder\")."},
    {"stream-max-mb-per-s", OPT_U32, FIELD(cluster.stream_max_mb_per_s, uint32_t), "0", 0, 0,
     100000,
     "Megabytes (10^6 bytes) per second a repair pass of this node fetches and streams in at "
     "most: the passes that stream in the ranges it gains in a move (a join, or taking over "
     "a leaving or removed node's ranges) and anti-entropy passes alike, which "
     "repair-max-bytes-per-s also bounds (0 = no limit)."},
    {"stream-progress-interval", OPT_MS, FIELD(cluster.stream_progress_interval_ms, uint64_t), "1s",
     0, 0, 3600000,
     "How often at most a node streaming the ranges it gains in a join (or a leave) writes "
     "where its streams stand to DATA_DIR/move.progress (syncing the store's write-ahead log "
     "first), besides after the clear and at the end of each range; a restart after a crash "
     "goes on from there and streams again at most this much of the stream (0 = after every "
     "page; docs/cluster.md, \"Resuming after a crash of the joiner\")."},
    {"stream-check-heal-after", OPT_U32, FIELD(cluster.stream_check_heal_after, uint32_t), "3", 0,
     1, 1000,
     "Passes in a row in which the totals check of a token interval a join, leave, regain or "
     "full repair streamed in (its windows' totals per resolution, here and on the source) "
     "must disagree "
     "before the interval is cleared and streamed again from its start (docs/cluster.md, "
     "\"Streaming whole windows\"): a difference that a write in flight explains goes by "
     "itself, one that stays does not."},
    {"repair-fill-keys-batch", OPT_U32, FIELD(cluster.fill_keys_batch, uint32_t), "1024", 0, 1,
     65536,
     "Windows the window check's fill of old windows asks its source for in one request, by "
     "key, whether for their hashes' ids or for the windows it stores (docs/cluster.md, \"Old "
     "windows no profile id names\"): a smaller batch makes smaller requests and more of them; "
     "the answers are paged by max-message-bytes either way."},
    {"cluster-stream-version", OPT_U32, FIELD(cluster.stream_version, uint32_t), "4", 0, 1, 4,
     "The newest stream protocol this node speaks, as the node asking for windows and as their "
     "source (docs/cluster-protocol.md, \"Stream protocol versions\"): 1 pages every window "
     "whole; 2 adds a fill's bound (until_s), window summaries with their profile ids and "
     "windows asked for by key; 3 sends a summary as its key and a hash, ids only for the "
     "windows whose hashes differ; 4 compares a hash tree's root first, then the hashes of the "
     "windows in its buckets that differ only. For a rolling upgrade only: a node set to the "
     "version of "
     "the release it replaces behaves toward its peers as that release does, so the "
     "upgrade can be tried on one node and rolled back; set it back (or leave it out) once "
     "every node runs this release. Nodes of different versions fill from each other in "
     "the older one's way."},
    {"cluster-member-version", OPT_U32, FIELD(cluster.member_version, uint32_t), "1", 0, 0, 1,
     "The newest member protocol this node speaks, advertised to the others in its member entry "
     "(docs/replication.md, \"A slow replica named after the grace\"): 1 takes a notice naming "
     "a replica slower than hint-ack-grace and sends them; 0 is a release before it, which "
     "refuses notices (dropped unanswered) and is sent none, its coordinators keeping the "
     "slow replica's hint or mark on their own. For a rolling upgrade only, as "
     "cluster-stream-version: a node set to 0 behaves toward its peers as that release does."},
    {"stream-window-cache", OPT_U32, FIELD(cluster.stream_window_cache, uint32_t), "4", 0, 0, 1024,
     "Windows streamed in parts (larger than a quarter of max-message-bytes) a source keeps read "
     "between the requests for their parts, so each later part costs its own size rather than "
     "the window's: one per peer streaming such a window at once is enough. The least recently "
     "used goes first, and one idle for four query-timeouts; each holds its window's residual "
     "tree, symbol names and profile lists (0 = none kept: every part reads its window again)."},
    {"stream-receive-max-bytes", OPT_SIZE, FIELD(cluster.stream_receive_max_bytes, size_t), NULL,
     32, 64 * KiB, 1024 * GiB,
     "Memory a node receiving a window in parts (larger than a quarter of max-message-bytes) "
     "may hold for it besides its tree (bounded by the tree node limit of writes): the kept and "
     "untreed profile lists gathered from its parts (32 bytes a profile), its symbols' names "
     "and files (48 bytes more each) and a symbol coming in pieces. A window whose parts pass "
     "it is refused (logged with its series, source and bytes; "
     "flamedb_repair_stream_windows_refused_total) and its range not taken, the node staying "
     "joining (or unread) until it fits, never short (docs/cluster.md, \"Streaming whole "
     "windows\"). Part of memory-limit."},
    {"stream-check-heals", OPT_U32, FIELD(cluster.stream_check_heals, uint32_t), "2", 0, 0, 100,
     "How many times each such interval is cleared and streamed again in the life of the "
     "process, or for a join's or leave's interval over the whole move, restarts included "
     "(kept in DATA_DIR/move.progress; counted by flamedb_repair_stream_heals_total); after "
     "that its check is only "
     "logged at every pass and the node stays unread for it (0 = never clear again)."},
    {"join-settle", OPT_MS, FIELD(cluster.join_settle_ms, uint64_t), "0s", 0, 0, 3600000,
     "How long a join, leave or removal waits before its verifying repair pass (or the "
     "stream of the ranges a removal gives a node) starts, so that every write still in "
     "flight from a coordinator that did not know of the move has landed (0 = 10 gossip "
     "intervals + write-timeout)."},
    {"hint-ack-grace", OPT_MS, FIELD(cluster.hint_ack_grace_ms, uint64_t), "20ms", 0, 0, 600000,
     "Once a push has its write quorum, how long it waits for the other replicas' acks before "
     "storing a durable hint for each one still silent and answering 200 (a later ack deletes "
     "the hint; with hints-max-bytes 0 the replica is marked for repair instead, and the "
     "late ack of every write it was marked for lifts the mark). Longer: fewer hints for replicas "
     "that are only a little slow, and that much "
     "more latency while one is slow (only for the push that finds it slow: a replica that "
     "let the grace run out is hinted at once on later pushes until it acknowledges a write "
     "within the grace again); 0: hint at once."},
    {"repair-max-bytes-per-s", OPT_SIZE, FIELD(cluster.repair_bytes_per_s, size_t), "16MiB", 0, 0,
     1024 * GiB,
     "Bytes per second an anti-entropy pass (scheduled, flamectl cluster repair, or asked by a "
     "peer) fetches at most for the profiles this node lacks; passes that stream ranges a node "
     "gains in a move are bounded by stream-max-mb-per-s instead (0 = no limit)."},
    {"forget-left-after", OPT_MS, FIELD(cluster.forget_left_after_ms, uint64_t), "72h", 0, 1000,
     3650 * 86400000ULL,
     "How long a node keeps the tombstone of a member that left or was removed (so gossip "
     "cannot bring it back). A node down for longer, or one that finds a change of the ring it "
     "cannot account for, cannot tell which ranges it gained meanwhile: it is not read from and "
     "repairs every range it replicates until an anti-entropy pass converges (docs/cluster.md, "
     "\"When a node cannot tell what it gained\")."},
    SECTION("Security and per-tenant limits"),
    {"auth-file", OPT_OFFPATH, FIELD(auth_file, char[NODE_PATH_MAX]), "", 0, 0, NODE_PATH_MAX - 1,
     "HTTP tokens, one 'TENANT ROLE SHA256HEX' per line (role read, write or admin; '#' "
     "comments); re-read on SIGHUP. Empty: no authentication (the tenant is X-Scope-OrgID as "
     "sent)."},
    {"open-metrics", OPT_INT, FIELD(open_metrics, int), "1", 0, 0, 1,
     "With auth-file: 1 leaves GET /metrics open (like /ready), 0 makes it need a read token."},
    {"max-connections-per-client", OPT_COUNT, FIELD(http.max_connections_per_client, size_t), "0",
     0, 0, 1000000,
     "Open HTTP connections from one client (an IPv4 address, or an IPv6 prefix: "
     "client-ipv6-prefix); more are answered 503 and closed. 0: no limit but max-connections."},
    {"client-ipv6-prefix", OPT_U32, FIELD(http.client_ipv6_prefix, uint32_t), "64", 0, 1, 128,
     "Leading bits of an IPv6 address that name one client for max-connections-per-client: "
     "addresses in the same /N count together. A host or customer usually holds a whole /64 "
     "(SLAAC, privacy addresses), so keyed by its full address one client could open "
     "max-connections-per-client connections from each of its 2^64 addresses. IPv4 clients "
     "(also IPv4-mapped ::ffff:a.b.c.d on an IPv6 listener) count by their address. 128: "
     "every IPv6 address apart."},
    {"tenant-ingest-rate", OPT_SIZE, FIELD(tenant_ingest_rate, size_t), "0", 0, 0, 1024 * GiB,
     "Request body bytes per second one tenant may push (a token bucket per tenant, per node); "
     "over it pushes get 429 with Retry-After. 0: no limit."},
    {"tenant-ingest-burst", OPT_SIZE, FIELD(tenant_ingest_burst, size_t), "0", 0, 0, 1024 * GiB,
     "Bytes a tenant may push in a burst: the size of its bucket, which refills at "
     "tenant-ingest-rate; a single push larger than it gets 413. 0: the larger of "
     "tenant-ingest-rate and max-body-bytes."},
    {"tenant-max-queries", OPT_COUNT, FIELD(tenant_max_queries, size_t), "0", 0, 0, 100000,
     "Queries one tenant may have running at once on a node (a streamed answer counts until its "
     "last byte is sent); more get 429 with Retry-After. 0: no limit."},
    {"max-query-range", OPT_MS, FIELD(max_query_range_ms, uint64_t), "0", 0, 0, 100 * YEAR_S * 1000,
     "Longest until - from a query may ask for (each side of a diff); longer gets 400. "
     "A query without from/until covers the last hour. 0: no limit."},
    {"tenant-max-series", OPT_COUNT, FIELD(storage.tenant_max_series, size_t), "0", 0, 0,
     1000000000,
     "Series one tenant may have on a node (counted per node: a tenant's series spread over "
     "the nodes holding their replicas); a push that would store more gets 429 naming it. "
     "Series collected after retention count no more. 0: no limit (nothing counted)."},
    {"metrics-max-renders", OPT_COUNT, FIELD(metrics_max_renders, size_t), "1", 0, 1, 64,
     "GET /metrics answers rendered on the thread pool at once. They run in the write lane, "
     "beside pushes and replica writes, so that a scrape is answered while queries hold their "
     "lane; more wait in order on the event loop (holding no thread) and start as one ends, so "
     "a flood of scrapes takes at most this many of the lane's threads and pushes never queue "
     "behind more than this many renders."},
    {"metrics-max-tenants", OPT_COUNT, FIELD(metrics_max_tenants, size_t), "100", 0, 0, 10000,
     "Tenants listed in flamedb_tenant_series{tenant} on /metrics: those with the most series on "
     "this node (the others are summed in flamedb_tenant_series_others), so the metric's "
     "cardinality stays bounded whatever the number of tenants. Series are counted per tenant "
     "for it (one read per series first written since the start, one pass over the series at "
     "start). With auth-file, tenants are named only to a scrape with an admin token (any other "
     "sees them all in flamedb_tenant_series_others). 0: no such metric, nothing counted unless "
     "tenant-max-series is on."},
};

#define NOPTIONS (sizeof options / sizeof options[0])

_Static_assert(STORAGE_RESOLUTION_COUNT == 5, "one retention-* row per storage resolution");

/* ---------- value parsers ---------- */

static int parse_u64(const char *s, const char **end, uint64_t *out)
{
    if (!isdigit((unsigned char)*s)) return ERR_INVALID_ARGUMENT;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return ERR_INVALID_ARGUMENT;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *end = s;
    *out = v;
    return ERR_OK;
}

static int scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul != 0 && v > UINT64_MAX / mul) return ERR_INVALID_ARGUMENT;
    *out = v * mul;
    return ERR_OK;
}

int node_config_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"", 1},      {"b", 1},          {"k", KiB},         {"kb", KiB},         {"kib", KiB},
        {"m", MiB},   {"mb", MiB},       {"mib", MiB},       {"g", GiB},          {"gb", GiB},
        {"gib", GiB}, {"t", 1024 * GiB}, {"tb", 1024 * GiB}, {"tib", 1024 * GiB},
    };
    const char *end;
    uint64_t v;
    if (parse_u64(s, &end, &v) != ERR_OK) return ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0) return scale(v, units[i].mul, out);
    return ERR_INVALID_ARGUMENT;
}

int node_config_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"", 1000},
        {"ms", 1},
        {"s", 1000},
        {"m", 60000},
        {"h", 3600000},
        {"d", 86400000},
        {"w", 7 * 86400000ull},
    };
    const char *end;
    uint64_t v;
    if (parse_u64(s, &end, &v) != ERR_OK) return ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) return scale(v, units[i].mul, out);
    return ERR_INVALID_ARGUMENT;
}

/* Splits IP:PORT or [IPv6]:PORT; "localhost" means 127.0.0.1, an empty host 0.0.0.0. */
static int parse_listen(const char *s, char *host, size_t host_cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL) return ERR_INVALID_ARGUMENT;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= host_cap) return ERR_INVALID_ARGUMENT;
    uint64_t p;
    const char *end;
    if (parse_u64(colon + 1, &end, &p) != ERR_OK || *end != '\0' || p > 65535)
        return ERR_INVALID_ARGUMENT;
    if (hlen == 0)
        snprintf(host, host_cap, "0.0.0.0");
    else if (hlen == 9 && strncmp(h, "localhost", 9) == 0)
        snprintf(host, host_cap, "127.0.0.1");
    else
        snprintf(host, host_cap, "%.*s", (int)hlen, h);
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(host, (int)p, &a4) != 0 && uv_ip6_addr(host, (int)p, &a6) != 0)
        return ERR_INVALID_ARGUMENT;
    *port = (int)p;
    return ERR_OK;
}

/* ---------- formatting values ---------- */

static void *field_ptr(node_config_t *c, const opt_t *o)
{
    return (char *)c + o->offset;
}

static const void *field_cptr(const node_config_t *c, const opt_t *o)
{
    return (const char *)c + o->offset;
}

static int format_size(buf_t *out, uint64_t v)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (i < 4 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    return buf_printf(out, "%" PRIu64 "%s", v, names[i]);
}

static int format_ms(buf_t *out, uint64_t ms)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"w", 7 * 86400000ull}, {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms != 0 && ms % units[i].mul == 0)
            return buf_printf(out, "%" PRIu64 "%s", ms / units[i].mul, units[i].suffix);
    return buf_printf(out, "%" PRIu64 "%s", ms, ms == 0 ? "s" : "ms");
}

static const char *level_names[] = {"debug", "info", "warn", "error"};

static int format_value(const node_config_t *c, const opt_t *o, buf_t *out)
{
    const void *p = field_cptr(c, o);
    switch (o->type) {
    case OPT_PATH:
    case OPT_OFFPATH:
    case OPT_TEXT:
    case OPT_LISTEN:
        return buf_append_str(out, (const char *)p);
    case OPT_LOGLEVEL: {
        int l = *(const int *)p;
        return buf_append_str(out, l >= 0 && l < 4 ? level_names[l] : "?");
    }
    case OPT_INT:
        return buf_printf(out, "%d", *(const int *)p);
    case OPT_U32:
        return buf_printf(out, "%" PRIu32, *(const uint32_t *)p);
    case OPT_COUNT:
        return buf_printf(out, "%zu", *(const size_t *)p);
    case OPT_SIZE:
        return format_size(out, *(const size_t *)p);
    case OPT_MS:
        return format_ms(out, *(const uint64_t *)p);
    case OPT_SECONDS:
        return format_ms(out, (uint64_t) * (const int64_t *)p * 1000);
    case OPT_SECTION:
        break;
    }
    return ERR_OK;
}

static int format_bound(const opt_t *o, uint64_t v, buf_t *out)
{
    if (o->type == OPT_SIZE) return format_size(out, v);
    if (o->type == OPT_MS) return format_ms(out, v);
    if (o->type == OPT_SECONDS) return format_ms(out, v * 1000);
    return buf_printf(out, "%" PRIu64, v);
}

/* ---------- setting values ---------- */

static int bad_value(errmsg_t *em, const char *source, const char *text, const opt_t *o,
                     const char *why)
{
    buf_t b;
    buf_init(&b, 256);
    if (o->min != 0 || o->max != 0) {
        buf_append_str(&b, " (allowed ");
        format_bound(o, o->min, &b);
        buf_append_str(&b, " .. ");
        format_bound(o, o->max, &b);
        buf_append_str(&b, ")");
    }
    errmsg_set(em, ERR_INVALID_ARGUMENT, "%s: invalid value '%.200s': %s%s", source, text, why,
               b.data ? (const char *)b.data : "");
    buf_free(&b);
    return ERR_INVALID_ARGUMENT;
}

/* Parses text for a numeric option into *v (in the field's unit). */
static int parse_number(const opt_t *o, const char *text, uint64_t *v, const char **why)
{
    const char *end;
    *why = "not a number";
    if (o->type == OPT_SIZE) {
        *why = "not a size (e.g. 512MiB, 16KiB, 4096)";
        return node_config_parse_size(text, v);
    }
    if (o->type == OPT_MS || o->type == OPT_SECONDS) {
        *why = "not a duration (e.g. 500ms, 30s, 10m, 2h, 7d)";
        if (node_config_parse_duration_ms(text, v) != ERR_OK) return ERR_INVALID_ARGUMENT;
        if (o->type == OPT_SECONDS) {
            *why = "not a whole number of seconds";
            if (*v % 1000 != 0) return ERR_INVALID_ARGUMENT;
            *v /= 1000;
        }
        return ERR_OK;
    }
    if (parse_u64(text, &end, v) != ERR_OK || *end != '\0') return ERR_INVALID_ARGUMENT;
    return ERR_OK;
}

static int set_number(node_config_t *c, const opt_t *o, uint64_t v)
{
    void *p = field_ptr(c, o);
    switch (o->type) {
    case OPT_INT:
        *(int *)p = (int)v;
        break;
    case OPT_U32:
        *(uint32_t *)p = (uint32_t)v;
        break;
    case OPT_COUNT:
    case OPT_SIZE:
        *(size_t *)p = (size_t)v;
        break;
    case OPT_MS:
        *(uint64_t *)p = v;
        break;
    case OPT_SECONDS:
        *(int64_t *)p = (int64_t)v;
        break;
    default:
        return ERR_INTERNAL;
    }
    return ERR_OK;
}

static int set_text(node_config_t *c, const opt_t *o, const char *text, const char *source,
                    errmsg_t *em)
{
    char *p = field_ptr(c, o);
    if (o->type == OPT_PATH) {
        if (text[0] == '\0' || strlen(text) > o->max)
            return bad_value(em, source, text, o, "empty or too long");
        snprintf(p, NODE_PATH_MAX, "%s", text);
        return ERR_OK;
    }
    if (o->type == OPT_TEXT || o->type == OPT_OFFPATH) {
        if (strlen(text) > o->max || strlen(text) < o->min)
            return bad_value(em, source, text, o, o->min ? "empty or too long" : "too long");
        snprintf(p, NODE_PATH_MAX, "%s", text);
        return ERR_OK;
    }
    if (o->type == OPT_LISTEN) {
        if (parse_listen(text, c->http_host, sizeof c->http_host, &c->http_port) != ERR_OK)
            return bad_value(em, source, text, o, "expected IP:PORT, e.g. 127.0.0.1:4040");
        snprintf(p, sizeof c->http_listen, "%s", text);
        return ERR_OK;
    }
    enum log_level l;
    if (log_parse_level(text, &l) != ERR_OK)
        return bad_value(em, source, text, o, "expected debug, info, warn or error");
    *(int *)p = (int)l;
    return ERR_OK;
}

/* Sets option o from text; source names the flag or variable in errors. */
static int set_value(node_config_t *c, const opt_t *o, const char *text, const char *source,
                     errmsg_t *em)
{
    if (o->type == OPT_PATH || o->type == OPT_OFFPATH || o->type == OPT_TEXT ||
        o->type == OPT_LISTEN || o->type == OPT_LOGLEVEL)
        return set_text(c, o, text, source, em);
    uint64_t v;
    const char *why;
    if (parse_number(o, text, &v, &why) != ERR_OK) return bad_value(em, source, text, o, why);
    if (v < o->min || v > o->max) return bad_value(em, source, text, o, "out of range");
    return set_number(c, o, v);
}

static void env_name(const opt_t *o, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "FLAMEDB_");
    for (const char *p = o->name; *p && n + 1 < cap; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

/* ---------- defaults ---------- */

static const opt_t *find_option(const char *name, size_t len);

/* Defaults that follow other settings: the memory budgets, and the query
 * planner's copy of the storage retention (it must match what storage keeps). */
static void apply_derived(node_config_t *c, const unsigned char *set)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].derive && !(set && set[i]))
            set_number(c, &options[i], c->memory_limit / (uint64_t)options[i].derive);
    /* a body larger than max-buffered-bytes could never be read: unless set,
     * max-body-bytes fits in it (small memory limits) */
    const opt_t *body = find_option("max-body-bytes", strlen("max-body-bytes"));
    if (!(set && set[body - options]) && c->http.max_body_bytes > c->http.max_buffered_bytes)
        c->http.max_body_bytes = c->http.max_buffered_bytes;
    /* a message in pieces larger than chunk-receive-max-bytes is always
     * dropped: unless set, max-message-bytes fits in it */
    const opt_t *msg = find_option("max-message-bytes", strlen("max-message-bytes"));
    if (!(set && set[msg - options])) {
        errmsg_t em;
        if (set_value(c, msg, msg->def, "default", &em) == 0 &&
            c->cluster.chunk_receive_max_bytes != 0 &&
            c->cluster.max_message_bytes > c->cluster.chunk_receive_max_bytes)
            c->cluster.max_message_bytes = c->cluster.chunk_receive_max_bytes;
    }
    /* the dictionary's training buffer counts in memory-limit: unless set,
     * the dictionary is a 16384th of it, at most the default (64 KiB from
     * 1 GiB up) */
    const opt_t *dict = find_option("node-table-dict-bytes", strlen("node-table-dict-bytes"));
    if (!(set && set[dict - options])) {
        storage_options_t def;
        storage_options_default(&def);
        c->storage.node_table_dict_bytes = c->memory_limit / 16384 < def.node_table_dict_bytes
                                               ? c->memory_limit / 16384
                                               : def.node_table_dict_bytes;
    }
    memcpy(c->query.retention_seconds, c->storage.retention_seconds,
           sizeof c->query.retention_seconds);
    /* a whole-answer deadline at or under query-timeout turns answers a
     * query would give partial into 504s: unless set, twice query-timeout */
    static const char *const whole[] = {"combined-query-timeout", "report-timeout"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        const opt_t *o = find_option(whole[i], strlen(whole[i]));
        uint64_t *ms = (uint64_t *)((char *)c + o->offset);
        if (!(set && set[o - options]) && *ms <= c->cluster.query_timeout_ms)
            *ms = 2 * c->cluster.query_timeout_ms;
    }
}

void node_config_fix_pointers(node_config_t *c)
{
    c->storage.path = c->data_dir;
}

void node_config_default(node_config_t *c)
{
    memset(c, 0, sizeof *c);
    ingest_limits_default(&c->ingest);
    query_limits_default(&c->query);
    storage_options_default(&c->storage);
    for (size_t i = 0; i < NOPTIONS; i++) {
        errmsg_t em;
        if (options[i].def != NULL &&
            set_value(c, &options[i], options[i].def, "default", &em) != 0)
            log_error("config", "bad built-in default: %s", em.text);
    }
    apply_derived(c, NULL);
    node_config_fix_pointers(c);
}

/* ---------- parsing environment and flags ---------- */

static const opt_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].type != OPT_SECTION && strlen(options[i].name) == len &&
            strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

static int apply_env(node_config_t *c, char **envp, unsigned char *set, errmsg_t *em)
{
    for (size_t i = 0; envp != NULL && i < NOPTIONS; i++) {
        if (options[i].type == OPT_SECTION) continue;
        char name[128];
        env_name(&options[i], name, sizeof name);
        size_t n = strlen(name);
        for (char **e = envp; *e != NULL; e++) {
            if (strncmp(*e, name, n) != 0 || (*e)[n] != '=') continue;
            int rc = set_value(c, &options[i], *e + n + 1, name, em);
            if (rc != ERR_OK) return rc;
            set[i] = 1;
        }
    }
    return ERR_OK;
}

static int special_flag(const char *arg, enum node_config_action *action)
{
    static const struct {
        const char *flag;
        enum node_config_action action;
    } flags[] = {
        {"--help", NODE_CONFIG_HELP},
        {"-h", NODE_CONFIG_HELP},
        {"--version", NODE_CONFIG_VERSION},
        {"--print-config-doc", NODE_CONFIG_PRINT_DOC},
        {"--print-config", NODE_CONFIG_PRINT_CONFIG},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strcmp(arg, flags[i].flag) == 0) {
            *action = flags[i].action;
            return 1;
        }
    return 0;
}

static int apply_args(node_config_t *c, int argc, char **argv, unsigned char *set,
                      enum node_config_action *action, errmsg_t *em)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (special_flag(arg, action)) continue;
        if (strncmp(arg, "--", 2) != 0)
            return errmsg_set(
                em, ERR_INVALID_ARGUMENT,
                "unexpected argument '%.200s' (settings are --name value; see --help)", arg);
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        const opt_t *o = find_option(arg + 2, len);
        if (o == NULL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "unknown option '%.200s' (see --help)",
                              arg);
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (value == NULL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "option --%s needs a value", o->name);
        char source[128];
        snprintf(source, sizeof source, "--%s", o->name);
        int rc = set_value(c, o, value, source, em);
        if (rc != ERR_OK) return rc;
        set[o - options] = 1;
    }
    return ERR_OK;
}

/* The fewest bytes a stack of depth frames takes in the call tree of a
 * replicated write (calltree_encode): one function calling itself, so its
 * frames share one symbol and the tree is a chain of depth nodes. Every
 * other stack that deep takes more; 0 when it cannot be built. */
static size_t deepest_stack_bytes(size_t depth)
{
    calltree_t *t = calltree_new(depth + 1);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    uint32_t node = 0;
    int rc = t != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < depth; i++)
        rc = calltree_child(t, node, 1, &node);
    if (rc == 0) {
        calltree_add_self(t, node, 1);
        rc = calltree_encode(t, &b);
    }
    size_t n = rc == 0 ? b.len : 0;
    buf_free(&b);
    calltree_free(t);
    return n;
}

/* The deadlines of answers made of several cluster queries must leave
 * those queries their own query-timeout: a query whose nodes do not answer
 * by then answers partial, which a shorter whole deadline turns into 504. */
static int check_whole_deadlines(const node_config_t *c, errmsg_t *em)
{
    uint64_t q = c->cluster.query_timeout_ms;
    if (c->combined_timeout_ms <= q)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "combined-query-timeout (%" PRIu64 " ms) is not above query-timeout "
                          "(%" PRIu64 " ms): a render-diff or groupBy whose queries would "
                          "answer partial would be answered 504; raise combined-query-timeout "
                          "or lower query-timeout",
                          c->combined_timeout_ms, q);
    if (c->report_timeout_ms <= q)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "report-timeout (%" PRIu64 " ms) is not above query-timeout (%" PRIu64
                          " ms): a regression report whose bucket queries would answer partial "
                          "would be answered 504; raise report-timeout or lower query-timeout",
                          c->report_timeout_ms, q);
    return ERR_OK;
}

static int validate(node_config_t *c, errmsg_t *em)
{
    errmsg_t sem = {{0}};
    if (ring_shard_policy_parse(&c->ingest.shards, c->service_shards, &sem) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "--service-shards: %s", sem.text);
    uint64_t budget = (uint64_t)c->storage.block_cache_bytes + c->storage.write_buffer_bytes +
                      c->http.max_buffered_bytes + c->storage.node_cache_bytes +
                      c->query_memory_bytes + c->ingest_inflight_bytes +
                      c->cluster.stream_receive_max_bytes + c->cluster.scatter_name_cache_bytes +
                      c->cluster.chunk_receive_max_bytes + storage_fold_memory_bytes(&c->storage) +
                      storage_dict_train_memory_bytes(&c->storage);
    if (budget > c->memory_limit)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "block-cache-bytes + write-buffer-bytes + max-buffered-bytes + "
                          "node-cache-bytes + query-memory-bytes + ingest-inflight-bytes + "
                          "stream-receive-max-bytes + scatter-name-cache-bytes + "
                          "chunk-receive-max-bytes + the window fold (4 x "
                          "window-fold-batch-bytes + keys, while window-fold-interval is on) + "
                          "the dictionary training (64 x node-table-dict-bytes per compaction "
                          "max-background-jobs runs at once) = "
                          "%" PRIu64 " bytes exceeds memory-limit (%zu bytes)",
                          budget, c->memory_limit);
    /* a hint replayed after the seen index forgot its id could count twice */
    uint64_t hint_max_ms = (uint64_t)c->storage.seen_retention_seconds * 900;
    if (c->cluster.hint_expiry_ms > 0 && c->storage.seen_retention_seconds > 0 &&
        c->cluster.hint_expiry_ms > hint_max_ms)
        return errmsg_set(
            em, ERR_INVALID_ARGUMENT,
            "hint-expiry (%" PRIu64 " ms) is longer than 0.9 x seen-retention (%" PRIu64
            " ms): a hint replayed after its profile id was forgotten could count twice",
            c->cluster.hint_expiry_ms, hint_max_ms);
    /* a profile with a stack of the deepest allowed depth must fit in one
     * replicated write, whatever its names */
    size_t deepest = deepest_stack_bytes(c->ingest.max_stack_depth);
    if (deepest > c->cluster.max_message_bytes)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "max-stack-depth (%zu): a stack that deep takes at least %zu bytes in a "
                          "replicated write (its call tree alone, one function calling itself), "
                          "more than max-message-bytes (%zu): a profile with such a stack could "
                          "never be replicated; lower max-stack-depth or raise max-message-bytes",
                          c->ingest.max_stack_depth, deepest, c->cluster.max_message_bytes);
    /* W above RF can never be met by the replicas there are; it used to be
     * capped at RF without a word */
    if (c->cluster.write_quorum > c->cluster.replication_factor)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "write-quorum (%u) is larger than replication-factor (%u): a push "
                          "waits for at most RF replica acknowledgements",
                          (unsigned)c->cluster.write_quorum,
                          (unsigned)c->cluster.replication_factor);
    if (c->http.max_body_bytes > c->http.max_buffered_bytes)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "max-body-bytes (%zu) is larger than max-buffered-bytes (%zu): no body "
                          "that large could ever be accepted",
                          c->http.max_body_bytes, c->http.max_buffered_bytes);
    return check_whole_deadlines(c, em);
}

/* cluster-secret-file from $CREDENTIALS_DIRECTORY when not set otherwise
 * (an explicit empty value keeps it off) and the credential is there. */
static void apply_credentials(node_config_t *c, char **envp, const unsigned char *set)
{
    const opt_t *o = find_option("cluster-secret-file", strlen("cluster-secret-file"));
    if (o == NULL || set[o - options] || envp == NULL) return;
    static const char var[] = "CREDENTIALS_DIRECTORY=";
    for (char **e = envp; *e != NULL; e++) {
        if (strncmp(*e, var, sizeof var - 1) != 0 || (*e)[sizeof var - 1] == '\0') continue;
        char path[sizeof c->cluster.secret_file];
        int n = snprintf(path, sizeof path, "%s/%s", *e + sizeof var - 1,
                         NODE_CREDENTIAL_CLUSTER_SECRET);
        if (n > 0 && (size_t)n < sizeof path && access(path, F_OK) == 0)
            memcpy(c->cluster.secret_file, path, (size_t)n + 1);
    }
}

/* Which placement settings were given (NODE_PLACEMENT_GIVEN_*). */
static unsigned placement_given(const unsigned char *set)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"shards-per-service", NODE_PLACEMENT_GIVEN_SHARDS},
                 {"service-shards", NODE_PLACEMENT_GIVEN_SERVICES},
                 {"shard-by-profile", NODE_PLACEMENT_GIVEN_BY_PROFILE}};
    unsigned given = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const opt_t *o = find_option(names[i].name, strlen(names[i].name));
        if (o != NULL && set[o - options]) given |= names[i].bit;
    }
    return given;
}

int node_config_parse(node_config_t *c, int argc, char **argv, char **envp,
                      enum node_config_action *action, errmsg_t *em)
{
    unsigned char set[NOPTIONS] = {0};
    node_config_default(c);
    *action = NODE_CONFIG_RUN;
    int rc = apply_env(c, envp, set, em);
    if (rc == ERR_OK) rc = apply_args(c, argc, argv, set, action, em);
    if (rc != ERR_OK) return rc;
    apply_credentials(c, envp, set);
    c->placement_given = placement_given(set);
    apply_derived(c, set);
    node_config_fix_pointers(c);
    return *action == NODE_CONFIG_RUN || *action == NODE_CONFIG_PRINT_CONFIG ? validate(c, em)
                                                                             : ERR_OK;
}

/* ---------- generated text: --help, docs, dump ---------- */

static const char *type_name(enum opt_type t)
{
    switch (t) {
    case OPT_PATH:
    case OPT_OFFPATH:
        return "PATH";
    case OPT_LISTEN:
        return "IP:PORT";
    case OPT_TEXT:
        return "TEXT";
    case OPT_LOGLEVEL:
        return "LEVEL";
    case OPT_INT:
    case OPT_U32:
    case OPT_COUNT:
        return "N";
    case OPT_SIZE:
        return "SIZE";
    case OPT_MS:
    case OPT_SECONDS:
        return "DURATION";
    case OPT_SECTION:
        break;
    }
    return "";
}

/* The default as shown to people: derived ones say what they derive from. */
static int format_default(const node_config_t *defaults, const opt_t *o, buf_t *out)
{
    int rc = format_value(defaults, o, out);
    if (rc == ERR_OK && o->derive) rc = buf_printf(out, " (memory-limit / %d)", o->derive);
    return rc;
}

/* Appends text wrapped at width columns, each line indented by indent spaces. */
static int append_wrapped(buf_t *out, const char *text, int indent, int width)
{
    int col = 0, rc = ERR_OK;
    while (*text && rc == ERR_OK) {
        size_t w = strcspn(text, " ");
        if (col > 0 && col + 1 + (int)w > width) {
            rc = buf_append_byte(out, '\n');
            col = 0;
        }
        if (col == 0)
            rc = buf_printf(out, "%*s", indent, "");
        else
            rc = buf_append_byte(out, ' ');
        rc = rc == ERR_OK ? buf_append(out, text, w) : rc;
        col += (col == 0 ? indent : 1) + (int)w;
        text += w;
        while (*text == ' ')
            text++;
    }
    return rc == ERR_OK ? buf_append_byte(out, '\n') : rc;
}

/* --help fits a terminal of this many columns. */
#define HELP_WIDTH 80

/* An option's line [start, len) of out whose "  default: ..." (from mid)
 * would pass HELP_WIDTH gets the default on a line of its own. */
static int help_fit_default(buf_t *out, size_t start, size_t mid)
{
    static const char nl[] = "\n      ";
    if (out->len - start <= HELP_WIDTH) return ERR_OK;
    int rc = buf_reserve(out, sizeof nl - 3);
    if (rc != ERR_OK) return rc;
    memmove(out->data + mid + sizeof nl - 1, out->data + mid + 2, out->len - mid - 2);
    memcpy(out->data + mid, nl, sizeof nl - 1);
    out->len += sizeof nl - 3;
    return ERR_OK;
}

int node_config_help(buf_t *out)
{
    node_config_t d;
    node_config_default(&d);
    buf_append_str(out,
                   "Usage: flamedb [--name value | --name=value ...]\n"
                   "       flamedb --help | --version | --print-config | --print-config-doc\n\n"
                   "Runs a flamedb node. Every setting is also an environment variable\n"
                   "FLAMEDB_<NAME> (upper case, dashes as underscores); flags win.\n"
                   "SIZE: 4096, 512KiB, 16MiB, 1GiB. DURATION: 500ms, 30s, 10m, 2h, 7d, 1w\n"
                   "(a bare number is seconds).\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt_t *o = &options[i];
        if (o->type == OPT_SECTION) {
            buf_printf(out, "\n%s:\n", o->name);
            continue;
        }
        char env[128];
        env_name(o, env, sizeof env);
        size_t start = out->len;
        buf_printf(out, "  --%s %s  [%s]", o->name, type_name(o->type), env);
        size_t mid = out->len;
        buf_append_str(out, "  default: ");
        format_default(&d, o, out);
        int rc = help_fit_default(out, start, mid);
        rc = rc == ERR_OK ? buf_append_byte(out, '\n') : rc;
        rc = rc == ERR_OK ? append_wrapped(out, o->doc, 6, HELP_WIDTH) : rc;
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

static int doc_row(buf_t *out, const node_config_t *d, const opt_t *o)
{
    char env[128];
    env_name(o, env, sizeof env);
    buf_printf(out, "| `--%s` | `%s` | %s | `", o->name, env, type_name(o->type));
    format_default(d, o, out);
    buf_append_str(out, "` | ");
    if (o->min != 0 || o->max != 0) {
        format_bound(o, o->min, out);
        buf_append_str(out, " .. ");
        format_bound(o, o->max, out);
    }
    return buf_printf(out, " | %s |\n", o->doc);
}

int node_config_doc(buf_t *out)
{
    node_config_t d;
    node_config_default(&d);
    buf_append_str(
        out, "# Configuration\n\n"
             "<!-- Generated by `flamedb --print-config-doc` from the settings table in\n"
             "     node/config.c; edit the table, not this file. -->\n\n"
             "Every setting is a flag `--name value` (or `--name=value`) and an environment\n"
             "variable `FLAMEDB_NAME` (upper case, dashes as underscores). Flags override the\n"
             "environment, which overrides the defaults. An invalid value, an unknown flag or a\n"
             "value out of bounds stops the node with a message naming the setting and exit\n"
             "status 2. `flamedb --print-config` shows the effective settings.\n\n"
             "Sizes: a whole number with an optional binary suffix (`B`, `K`/`KB`/`KiB`,\n"
             "`M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`...; all powers of 1024). Durations: a whole\n"
             "number with `ms`, `s`, `m`, `h`, `d` or `w`; a bare number is seconds. Paths\n"
             "(`PATH`): the bounds are their length; one whose default is empty (`auth-file`,\n"
             "`cluster-secret-file`) is off until set, and an empty value (`--auth-file=`)\n"
             "turns it off again.\n\n"
             "Memory: `memory-limit` (default 1 GiB) is the node's budget. The RocksDB block\n"
             "cache and the memtables default to a quarter of it each; the request bodies held\n"
             "in memory, the stack-node and symbol cache and the pushes and replica writes in\n"
             "progress (decoded messages and call trees, `ingest-inflight-bytes`) to an eighth\n"
             "each; the partial results of the queries the node coordinates\n"
             "(`query-memory-bytes`) to a sixteenth; what a node receiving a window in parts\n"
             "holds of it besides its tree (`stream-receive-max-bytes`) to a thirty-second; the\n"
             "cluster messages coming in pieces being put back together\n"
             "(`chunk-receive-max-bytes`) to a 64th; the names cache of a coordinator\n"
             "(`scatter-name-cache-bytes`) to a 256th; the window fold's working memory\n"
             "(four times `window-fold-batch-bytes`, a 1024th, plus about 100 KiB of keys) is\n"
             "counted while `window-fold-interval` is on, and so is the buffer a compaction\n"
             "fills to train the stack-node tables' zstd dictionary (64 times\n"
             "`node-table-dict-bytes`, 4 MiB at 1 GiB, per compaction running at once).\n"
             "Together they must fit in it (a start where they do not is refused, naming\n"
             "them). The rest (at the defaults a 64th less that cache, the fold's and the\n"
             "training's, about 4 MiB at 1 GiB) is headroom for query\n"
             "merging (bounded per request by the query limits, and by `worker-threads`\n"
             "requests at a time). Replicated writes in flight are held to half of\n"
             "`max-buffered-bytes`.\n\n"
             "Defaults of the ingest, query and storage limits come from their modules\n"
             "(`ingest_limits_default()`, `query_limits_default()`, `storage_options_default()`)\n"
             "and are shown here as this build has them.\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt_t *o = &options[i];
        if (o->type == OPT_SECTION) {
            buf_printf(out,
                       "\n## %s\n\n| Flag | Environment | Type | Default | Bounds | Meaning |\n"
                       "|---|---|---|---|---|---|\n",
                       o->name);
            continue;
        }
        int rc = doc_row(out, &d, o);
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

int node_config_dump(const node_config_t *c, buf_t *out)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (options[i].type == OPT_SECTION) continue;
        buf_printf(out, "%s = ", options[i].name);
        format_value(c, &options[i], out);
        int rc = buf_append_byte(out, '\n');
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}
