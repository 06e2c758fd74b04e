/* storage.h — a node's durable store: RocksDB on local disk.
 *
 * Owns the RocksDB instance, its column families, the key layout
 * (docs/storage-format.md), the stack-node tables, the block merge operator
 * (which sums sparse vectors of self values)
 * and the idempotence of writes (a profile id is counted once per series, even
 * when written many times).
 *
 * Column families:
 *   series    token|tenant|series_id            -> canonical labels
 *   postings  tenant|name|value|token|series_id -> ""      (label index)
 *   blocks    token|tenant|series_id|res|window -> sparse self values over node ids (merge: sum)
 *   totals    token|tenant|series_id|res|window -> i64     (merge: add)
 *   symbols   tenant|symbol_id                  -> name, file
 *   spans     tenant|kind|id|token|series_id|window -> members (profile id, calltree) and a
 *             rest (merge: union by profile id)
 *   span_index token|tenant|kind|id|series_id|window -> "" (the spans keys by token)
 *   profile_span_index token|tenant|series_id|window|profile_id|kind|id -> "" (each
 *             profile's span trees; profile_id 16 x 0xff: trees with unnamed profiles)
 *   profiles  token|tenant|series_id|profile_id -> time, total (the `seen` index)
 *   meta      name                              -> value     (format version, settings)
 *   hints     target_node_id|seq                -> HintRecord (below)
 *   nodes     token|tenant|chunk                -> stack-node table: (parent, symbol) per id
 *   profile_trees token|tenant|series_id|profile_id -> time, one profile's self values over node
 * ids
 *   streamed  token|tenant|series_id|res|window -> when a window received whole was stored
 * Keys that start with the placement token make one token range one contiguous key range
 * (streaming and dropping a range are range operations).
 *
 * Time: blocks cover aligned windows at several resolutions
 * (STORAGE_RESOLUTIONS, seconds). A profile at time t is added to the window
 * floor(t/res)*res of every resolution in one atomic WriteBatch, together with
 * its profiles entry, so it is counted once at every resolution or not at all.
 *
 * Threads: every function is safe to call from any thread concurrently;
 * writers of the same profile id are serialised internally so two concurrent
 * retries cannot both pass the seen check. Callbacks run on the calling
 * thread; the bytes they get are borrowed for the duration of the call.
 * storage_open() returns a handle the caller owns (storage_close()).
 */
#ifndef FLAMEDB_STORAGE_STORAGE_H
#define FLAMEDB_STORAGE_STORAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/alloc.h"
#include "common/calltree.h"
#include "common/ends.h"
#include "common/err.h"
#include "common/labels.h"
#include "common/metrics.h"
#include "common/symtab.h"

/* Window sizes in seconds, finest first. Index into this table is the `res`
 * byte of block and totals keys. */
#define STORAGE_RESOLUTION_COUNT 5
extern const uint32_t storage_resolutions[STORAGE_RESOLUTION_COUNT]; /* 10,60,600,3600,86400 */

#define STORAGE_TENANT_MAX 150
/* rocksdb_log_level: only the LOG header is written (RocksDB HEADER_LEVEL). */
#define STORAGE_ROCKSDB_LOG_HEADER 5
/* Default of storage_options_t.window_fold_batch_bytes. */
#define STORAGE_FOLD_BATCH_BYTES ((size_t)1 << 20)
/* Default of storage_options_t.stream_window_max_profiles: 8 MB of lists. */
#define STORAGE_STREAM_WINDOW_MAX_PROFILES 250000
/* Default of storage_options_t.max_span_members. */
#define STORAGE_MAX_SPAN_MEMBERS 16
/* Default of storage_options_t.window_profile_ids: an hour of a series
 * pushed every 15 s (240 profiles) is listed; 8 bytes an id. */
#define STORAGE_WINDOW_PROFILE_IDS 256

typedef struct storage storage_t;

typedef struct storage_options {
    const char *path;          /* data directory; created if missing */
    size_t block_cache_bytes;  /* RocksDB LRU block cache shared by all CFs */
    size_t write_buffer_bytes; /* total memtable budget (write buffer manager) */
    size_t node_cache_bytes;   /* node tables (3/4) and symbol names (1/4) kept in memory */
    size_t union_cache_bytes;  /* shard unions kept in memory (union.c); 0: none made */
    int64_t retention_seconds[STORAGE_RESOLUTION_COUNT]; /* per resolution; 0 = forever */
    int64_t seen_retention_seconds;                      /* how long profile ids are remembered */
    int64_t span_retention_seconds;                      /* span/trace trees; 0 = forever */
    /* One profile's own tree per series (profile_trees): kept this long after
     * the profile's time (0 = forever); a series' tree whose encoding is
     * larger than max_profile_tree_bytes is not kept (0 = none kept). */
    int64_t profile_retention_seconds;
    size_t max_profile_tree_bytes;
    int64_t series_gc_interval_seconds; /* how often empty series are deleted (gc.c); 0 never */
    int sync_writes; /* 1: every committed write batch fsyncs the WAL before it is acknowledged
                      * (RocksDB group commit: concurrent batches share one fsync); 0: the WAL
                      * is written, not synced (survives kill -9, not a power loss) */
    size_t max_span_nodes; /* nodes one stored span/trace tree keeps; the rest fold into
                            * "other" nodes (captree.c); 0 = unlimited */
    /* Profiles one span/trace tree lists by id with their own trees, so a
     * streamed tree and a live one unite without counting a profile twice
     * (spanval.c); past it they fold into one anonymous rest. 0: none. */
    size_t max_span_members;
    /* Profile ids one series window lists (window_profiles, format 14;
     * 8 bytes each from format 16, only at resolutions whose windows
     * outlive profile_retention_seconds); past it the window keeps only
     * their count, total and hash. 0: none listed. */
    size_t window_profile_ids;
    uint32_t max_stack_nodes; /* stack nodes per placement token (service shard); past it new
                               * stacks fold into "other" nodes (nodetab.c) */
    /* Nodes from which a stack-node table keeps its edge index (nodetab.c);
     * 1: every table; 0 (the default): from 65,536 on, and only once a
     * writer that misses the table would not read it whole
     * (node_whole_read_percent). */
    uint32_t node_index_min_nodes;
    /* A push that finds an indexed stack-node table not in memory reads it
     * whole when it takes at most this percent of the tables' cache bound
     * (three quarters of node_cache_bytes), else its last chunk and the
     * index entries of its stacks (nodetab.c); 0: never whole. */
    uint32_t node_whole_read_percent;
    /* Merge operands a block window keeps in a memtable before the next
     * write to it folds them into one value (RocksDB's
     * max_successive_merges of the blocks column family; 0: never at
     * write). A service aggregate's window takes an operand from every pod
     * of its shard, and a query adds every part it meets. */
    uint32_t window_successive_merges;
    /* The same for the totals column family (8-byte operands that a read
     * adds cheaply, while counting them costs each write a search). */
    uint32_t total_successive_merges;
    /* How often a background pass folds the memtable operands of every
     * block window that has ended into one value (fold.c,
     * storage_fold_windows); 0: never (flushes and compactions still fold). */
    int64_t window_fold_interval_seconds;
    /* The pass commits its write batch once it holds this many bytes of
     * sums (STORAGE_FOLD_BATCH_BYTES by default): what it holds is bounded
     * by storage_fold_memory_bytes. */
    size_t window_fold_batch_bytes;
    /* Member series of a service aggregate, per token, that it does not
     * hold (its anchors, 1..STORAGE_AGGREGATE_ANCHORS_MAX): the first ones
     * written to it on the token, which a whole-service query reads
     * alongside it. A shard with at most this many members of a service
     * stores their windows once; each anchor is one more series such a
     * query reads. */
    uint32_t aggregate_anchors;
    /* zstd dictionary of the stack-node tables' bottommost SST files
     * (RocksDB max_dict_bytes of the nodes column family; 0: none). A
     * compaction writing such a file buffers up to 64 times this of its
     * data blocks to train it. */
    size_t node_table_dict_bytes;
    int max_background_jobs;
    /* SST files RocksDB keeps open at once (its table cache, each open file
     * with its index and filter blocks); others are opened as they are read
     * and closed again. -1: every file (RocksDB's default), which needs a
     * descriptor per file however large the database grows; RocksDB takes
     * values under 20 as 20. */
    int max_open_files;
    /* RocksDB's own LOG file (info_log_level, 0 debug .. 4 fatal, 5 header
     * only). Debian's librocksdb asserts: a LOG write after one failed for
     * lack of space aborts the process, so the default writes nothing after
     * the header. */
    int rocksdb_log_level;
    /* Series one tenant may have in this store; a write that would store
     * more fails with ERR_LIMIT naming tenant-max-series. 0 = no limit (and
     * nothing is counted). */
    size_t tenant_max_series;
    /* Count series per tenant even when tenant_max_series is 0 (for the
     * per-tenant metric: storage_tenant_series_top). */
    int count_tenant_series;
    /* Profiles a stream's source may list for one window it reads
     * (storage_stream_scan): its kept, untreed and named profiles and its
     * series' seen entries together, 32 bytes each. A window past it is
     * refused (ERR_LIMIT), never sent with a list cut short. */
    size_t stream_window_max_profiles;
} storage_options_t;

/* Defaults: 256 MiB cache, 256 MiB memtables, retention 1d/7d/30d/90d/forever, seen 7d,
 * spans 1d, profile trees 7d and at most 1 MiB each. */
void storage_options_default(storage_options_t *o);

/* The ingest stack cache's bytes (stack_cache_bytes, at most a quarter of
 * o->node_cache_bytes) and the shard unions' (o->union_cache_bytes, capped
 * at a quarter too) taken out of o->node_cache_bytes, as a node sizes them:
 * the three share one budget. Returns the stack cache's bytes. */
size_t storage_options_share_node_cache(storage_options_t *o, size_t stack_cache_bytes);

int storage_open(const storage_options_t *o, storage_t **out, errmsg_t *em);
/* Flushes memtables and closes RocksDB cleanly. NULL is a no-op. */
void storage_close(storage_t *s);

/* Settings the data directory records of how its data was made (`meta` key
 * "setting/" + name; node/placement.h records the placement policy).
 * storage_setting_get appends the value to out and sets *found (0 when
 * never put); names are at most STORAGE_SETTING_NAME_MAX bytes. */
#define STORAGE_SETTING_NAME_MAX 64
int storage_setting_get(storage_t *s, const char *name, buf_t *out, int *found, errmsg_t *em);
int storage_setting_put(storage_t *s, const char *name, const char *value, errmsg_t *em);
/* *any = 1 when the store holds a series (of any tenant), else 0. */
int storage_has_series(storage_t *s, int *any, errmsg_t *em);

/* One series' share of an ingested profile. All pointers borrowed. */
typedef struct storage_span_tree {
    uint8_t kind; /* STORAGE_SPAN_KIND_* */
    uint64_t id;  /* span id (16 hex digits parsed) or hash of the id string */
    /* The tree, or when NULL its encoding (calltree_encode) enc[0..enc_len):
     * what ingest hands over, its span trees being made and encoded once,
     * then held so (a few bytes a node where a tree holds 28 to 45). */
    const calltree_t *tree;
    const uint8_t *enc;
    size_t enc_len;
    /* Set (tree and enc NULL) when this profile's member of the tree is not
     * known (a repair fetch, storage_profile_spans): the stored tree is
     * marked possibly short instead, and span queries of it flag partial. */
    int unknown;
} storage_span_tree_t;

#define STORAGE_SPAN_KIND_SPAN 1
#define STORAGE_SPAN_KIND_TRACE 2

/* The id of a span_id / trace_id / profile_id label value s[0..n): 16 hex
 * digits are parsed (how tracers print 64-bit span ids), any other string is
 * hashed. Ingest and queries both map values through this. */
uint64_t storage_span_id(const char *s, size_t n);

typedef struct storage_series_write {
    const labels_t *labels; /* canonical; includes __name__, __profile_type__, service_name */
    uint64_t token;         /* ring_placement_token(...) */
    uint64_t series_id;     /* labels_hash(labels) */
    const calltree_t *tree; /* the samples of this series, summed; NULL: all given by ids */
    /* Samples of the series given by stack-node id of its token's table,
     * beside the tree (or instead of it, tree NULL): ids[i] gets vals[i] (an
     * id may repeat, and one the tree maps to: their values add).
     * The ids are those a storage_profile_write_t.mapped report gave under
     * node generation gen; a write naming another generation (a table was
     * emptied or deleted since, so an id may now name another stack) is
     * refused with ERR_CONFLICT and nothing is written, an id the table
     * does not hold with ERR_INVALID_ARGUMENT. Such a series writes no
     * symbols (its table names them) and is never compared by shape. */
    const uint32_t *ids;
    const int64_t *vals;
    size_t npairs;
    uint64_t gen;
    /* One of several series of this profile with the same profile type (a
     * push split by its samples' labels): the push counts once in an
     * average over any of them (WPROF_FLAG_PIECES, docs/api.md), so each
     * window and profile tree of such a series counts it by profile id,
     * united across series and nodes, not one per series. Set by ingest,
     * which sees every series of the push; carried to replicas. Setting it
     * on a series that is no piece costs ids, never exactness. */
    bool piece;
    /* Distinct (kind, id) pairs: each tree is this profile's member of its
     * stored span tree, so a pair given twice counts once. */
    const storage_span_tree_t *spans;
    size_t nspans;
} storage_series_write_t;

typedef struct storage_profile_write {
    const char *tenant;
    uint8_t profile_id[16];
    int64_t time_ns;
    const storage_series_write_t *series;
    size_t nseries;
    const symtab_t *symbols; /* every symbol the trees reference */
    /* When not NULL, called for each series written from a tree, once it is
     * mapped and before the commit: map[i] is the stack-node id of the
     * tree's node i (n nodes), valid while storage_node_generation() is
     * gen (a batch that does not commit changes it). The map and sw (the
     * series, as given in the series array) are borrowed for the call. */
    void (*mapped)(void *ctx, const struct storage_series_write *sw, const uint32_t *map, size_t n,
                   uint64_t gen);
    void *mapped_ctx;
} storage_profile_write_t;

/* The generation of the store's stack-node ids: it changes whenever an id
 * may stop naming the stack it named (a write batch carrying new ids did not
 * commit, or an unused table was deleted). */
uint64_t storage_node_generation(storage_t *s);

/* Writes a profile: for each series whose (series, profile id) was not seen
 * before, atomically records the id and adds the tree's self values (mapped
 * onto the token's node table) to every resolution.
 * *written (may be NULL) gets the number of series written; series already
 * seen are skipped, so retries count once. It turns RocksDB's per-thread
 * performance counters off for the calling thread (nothing reads them). */
int storage_write_profile(storage_t *s, const storage_profile_write_t *p, size_t *written,
                          errmsg_t *em);
/* The same; *bytes (may be NULL) gets the size of the write batch it
 * committed (keys and values, before RocksDB compresses them: what a
 * profile received from another node adds to this store), 0 when nothing
 * was written. */
int storage_write_profile_sized(storage_t *s, const storage_profile_write_t *p, size_t *written,
                                size_t *bytes, errmsg_t *em);

/* Label index. Callbacks return 0 to continue or non-zero to stop (which is
 * returned). Strings passed to callbacks are borrowed, NUL-terminated. */
typedef int (*storage_name_fn)(void *ctx, const char *name);
typedef int (*storage_series_fn)(void *ctx, uint64_t token, uint64_t series_id);

/* Distinct label names of the tenant's series, sorted. */
int storage_label_names(storage_t *s, const char *tenant, storage_name_fn fn, void *ctx);
/* Distinct values of one label name, sorted. */
int storage_label_values(storage_t *s, const char *tenant, const char *name, storage_name_fn fn,
                         void *ctx);
/* Series that have name=value (postings). */
int storage_postings(storage_t *s, const char *tenant, const char *name, const char *value,
                     storage_series_fn fn, void *ctx);
/* Labels of one series; caller owns *out (labels_free). ERR_NOT_FOUND if absent. */
int storage_series_labels(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          labels_t **out);

/* Blocks of one series at resolution index res whose window start w satisfies
 * from_s <= w < until_s (unix seconds), in window order. value is a calltree
 * encoding rebuilt from the sparse block (all merge operands already folded)
 * and the token's node table, borrowed for the call. */
typedef int (*storage_block_fn)(void *ctx, int64_t window_start, const uint8_t *value, size_t len);
int storage_scan_blocks(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                        int res, int64_t from_s, int64_t until_s, storage_block_fn fn, void *ctx);

/* Summing many series' blocks into one call tree, the fast way: blocks are
 * added as vectors per placement token and turned into tree nodes once, at
 * the end. A merger is used by one thread; caller owns it
 * (storage_merger_free). */
typedef struct storage_merger storage_merger_t;
int storage_merger_new(storage_t *s, const char *tenant, storage_merger_t **out);
/* Adds the blocks selected as in storage_scan_blocks. */
int storage_merger_add(storage_merger_t *m, uint64_t token, uint64_t series_id, int res,
                       int64_t from_s, int64_t until_s);
/* storage_merger_add for a service aggregate (storage_aggregate_id): its
 * 10 s windows are their blocks alone (an aggregate holds no profile trees),
 * so profile_trees is not scanned. */
int storage_merger_add_aggregate(storage_merger_t *m, uint64_t token, uint64_t series_id, int res,
                                 int64_t from_s, int64_t until_s);
/* Adds everything added so far into dst. ERR_LIMIT when dst would exceed its
 * max_nodes (em says so). */
int storage_merger_finish(storage_merger_t *m, calltree_t *dst, errmsg_t *em);
/* Adds everything from holds into m (two threads' shares of one merge);
 * a token m has not met yet is moved over whole, with its charge (m's
 * taken first). from is left empty, to be freed; m's thread calls it once
 * from's thread is done with from. ERR_NOMEM, ERR_UNAVAILABLE (m's budget):
 * m may hold part of it. */
int storage_merger_absorb(storage_merger_t *m, storage_merger_t *from);
void storage_merger_free(storage_merger_t *m);
/* Charges the merger's working memory (dense vectors, forests, tree-build
 * scratch) to charge (borrowed; NULL: none) from now on: a merge that would
 * pass its budget stops with ERR_UNAVAILABLE. Everything charged is given
 * back by storage_merger_free. */
void storage_merger_set_charge(storage_merger_t *m, alloc_charge_t *charge);

/* Service aggregates (aggregate.c; docs/storage-format.md): every series
 * with a service_name and a __profile_type__ also adds its blocks and totals
 * to the pseudo series storage_aggregate_id(service, type, spy) of its token
 * (spy: its pyroscope_spy label, NULL or "" when it has none), which
 * storage_merger_add and storage_scan_totals read like any series, except
 * its anchors' (storage_aggregate_anchors). It has no
 * labels, postings or profiles: nothing lists it. */
#define STORAGE_LABEL_SPY "pyroscope_spy"
uint64_t storage_aggregate_id(const char *service, const char *type, const char *spy);
/* Calls fn with each distinct token of the series that have name=value,
 * ascending: one seek per token, however many series share it. fn returns
 * 0 to go on, non-zero to stop (returned). */
typedef int (*storage_token_fn)(void *ctx, uint64_t token);
int storage_posting_tokens(storage_t *s, const char *tenant, const char *name, const char *value,
                           storage_token_fn fn, void *ctx);
/* An aggregate does not hold its anchors: the first member series written
 * to it on its token (up to storage_options_t.aggregate_anchors of them),
 * whose windows a reader adds to the aggregate's (so a service shard with
 * few series stores their windows once). Fills ids (room for max) with
 * them and returns their number: 0 when it has none (every member adds,
 * as in aggregates written before format 10, or nothing was written to it
 * yet), or an error. */
#define STORAGE_AGGREGATE_ANCHORS_MAX 16
int storage_aggregate_anchors(storage_t *s, const char *tenant, uint64_t token, uint64_t agg,
                              uint64_t *ids, size_t max);
/* 1 if the (pseudo) series holds a window in totals that retention still
 * keeps, 0 if none, or an error. */
int storage_series_has_windows(storage_t *s, const char *tenant, uint64_t token,
                               uint64_t series_id);
/* The same for several series with one iterator (a whole-service render
 * probing each token's aggregates and anchors): storage_probe_open, a
 * storage_probe_has_windows per series, storage_probe_close. The probe
 * reads the store as it is when opened. Caller owns the probe. */
typedef struct storage_probe storage_probe_t;
int storage_probe_open(storage_t *s, storage_probe_t **out);
int storage_probe_has_windows(storage_probe_t *p, const char *tenant, uint64_t token,
                              uint64_t series_id);
void storage_probe_close(storage_probe_t *p);
/* One placement token's summed blocks as a forest, for callers that choose
 * the nodes they need before building a tree (query's maxNodes selection).
 * Its nodes are the token's stack-node ids 0..n-1: id 0 is the root, and the
 * forest's nodes are the root and the ids whose subtree total is non-zero;
 * each one's children among them are linked in ascending id order
 * (first_kid, then next_sib, to STORAGE_NO_KID). Made in one descending pass
 * over the ids, with no renumbering and no child array to sort. */
#define STORAGE_NO_KID UINT32_MAX
typedef struct storage_merged_tab {
    size_t n;              /* ids covered: the largest valued one and those below it (>= 1) */
    size_t nodes;          /* the forest's nodes: the root and the ids of non-zero total */
    uint64_t *sym;         /* per forest node; the root's is SYM_ROOT */
    int64_t *self, *total; /* own value; own plus every descendant's (wrapping); per id */
    uint32_t *first_kid;   /* per forest node: its first child, or STORAGE_NO_KID */
    uint32_t *next_sib;    /* per forest node but the root: the next child of its parent */
    uint32_t *parent;      /* per forest node but the root: its parent (a forest node); NULL
                              unless asked for (storage_merger_tabs) */
    uint32_t *symno;       /* per forest node: its symbol's number in the token's node table
                              (below nsyms; nodes of one symbol share it), so a pass over the
                              nodes can number their symbols through an array; NULL unless
                              asked for (storage_merger_tabs) */
    size_t nsyms;          /* with symno: the table's distinct symbols */
    uint64_t *least_kid;   /* per forest node: the least total of its children (UINT64_MAX: none);
                              NULL unless asked for (storage_merger_tabs) */
    uint64_t *symbols;     /* a shard union's forest: every symbol of the union, once (a
                              superset of its nodes'); NULL unless asked for
                              (STORAGE_TABS_SYMBOLS) and a union's */
    size_t nsymbols;
    /* STORAGE_TABS_SPACE: the id space of a union's forest. Its ids are a
     * union's (union.c), fixed while the union lives: nonce names that
     * union (never 0, never reused, not even by another process), and the
     * structure of ids [space_base, n) follows, each id's parent (below the
     * id) and symbol; a caller that holds the structure of ids below
     * space_base from an earlier forest of the same nonce has the whole
     * space. space_nonce 0: no id space (a token's own forest). */
    uint64_t space_nonce;
    size_t space_base;      /* >= 1: the root (id 0, SYM_ROOT) is never listed */
    uint32_t *space_parent; /* n - space_base entries (NULL when none), id space_base first */
    uint64_t *space_sym;    /* likewise */
    int owns_self;          /* 1: self is the tab's own, freed with it; 0: a merger's (borrowed) */
    int distinct_kids;      /* 1: no two children of a node share a symbol (a node table's or a
                               shard union's forest); 0: not known (a forest decoded from a peer) */
    int values_only;        /* 1: its values alone, read by id (STORAGE_TABS_VALUES) */
    struct nodeunion *held; /* STORAGE_TABS_HOLD: the union it holds (sym, parent and symno
                               are its arrays), released with the forest; or NULL */
    storage_t *held_store;  /* the store of held */
    /* storage_merged_tab_lent: sym, parent and symno are the caller's
     * arrays, read in place; lend_release(lend_arg) runs as the forest is
     * released (NULL: not lent) */
    void (*lend_release)(void *arg);
    void *lend_arg;
    int nonneg; /* 1: every value >= 0 and no total exceeds INT64_MAX; then the
                   forest's nodes are exactly those storage_merger_finish creates
                   for this token; 0: no forest (n 0, arrays NULL): build the
                   whole tree instead */
} storage_merged_tab_t;

/* What storage_merger_tabs adds to each forest: each node's parent,
 * each node's symbol number (the node table's symbol index, built in memory
 * when first asked of a loaded table; nothing stored), and each node's
 * least child total (what a cut of the totals counts, query/cut.c). */
#define STORAGE_TABS_PARENTS 1u
#define STORAGE_TABS_SYMNOS 2u
#define STORAGE_TABS_LEAST 4u
/* ... and, of a shard union's forest (a token's own forest gets nothing
 * of it), every symbol of the union once (a render loads their names beside
 * its selection) and each node's symbol number as STORAGE_TABS_SYMNOS's,
 * the union's (a node table's symbol index is not built for it). */
#define STORAGE_TABS_SYMBOLS 8u
/* ... and the forest over a union even of one token, with its id space
 * (storage_merged_tab_t.space_*): the structure from the count known for
 * its nonce in the merger's known spaces (storage_merger_known_spaces),
 * from id 1 when its nonce is not among them. No union made (past
 * union_cache_bytes, or none allowed): a forest per token without one. */
#define STORAGE_TABS_SPACE 16u
/* ... and, with STORAGE_TABS_SPACE, of a union's forest its values alone,
 * read by id and never as a forest (a share answering by id): self over
 * its n ids, its id space and nonneg (every value >= 0, their sum at most
 * INT64_MAX, so no total passes it); nodes is n, a bound; sym, total,
 * first_kid, next_sib and the arrays other flags ask are NULL. Without a
 * union (a forest per token) the forests are whole whatever the flag. */
#define STORAGE_TABS_VALUES 32u
/* ... and a union's forest (with parents and symbol numbers) holds the
 * union while it lives (storage_merged_tab_t.held): its sym, parent and
 * symno are the union's own arrays, read-only, not copies made in its pass
 * (a render that cuts the forest at once and frees it). Another render of
 * the same tokens waits for the union until the forest is released, on
 * the thread that made it. Without a union the forests are as without. */
#define STORAGE_TABS_HOLD 64u
/* A forest pass followed from another thread while it runs (a render's
 * helper filing the forest's nodes by total while this thread makes the
 * forest: query/cut.c). The pass publishes its forest once its arrays hold
 * each id's own value, then, as it goes down the ids, the lowest id from
 * which every total and least child is final: a follower reads those ids'
 * totals and least children (nothing else, and nothing below `from`).
 * Before the forest is released the pass gives up (state 2) and waits
 * until the follower no longer reads it.
 *
 * The follower sets reading to 1, then reads state: 2 means gone (it sets
 * reading back to 0 and stops); else it may read the published ids until
 * it sees state 2, and sets reading to 0 when it stops. Zero it, give it
 * to the merger (storage_merger_follow); the caller owns it. */
typedef struct storage_follow {
    const storage_merged_tab_t *_Atomic tab; /* NULL until published */
    _Atomic size_t from;                     /* ids in [from, tab->n) final (from >= 1) */
    _Atomic int state;   /* 0 passing, 1 done (from is 1), 2 given up: no forest */
    _Atomic int reading; /* the follower's */
    /* the ids 1..tab->n-1 in chunks (storage_follow_chunk), set before the
     * forest is published: item 0 the highest ids, final first; the
     * follower takes from the front and the thread that made the forest,
     * once done, from the back */
    ends_t chunks;
} storage_follow_t;
/* Ids of a followed pass per chunk, and between two publications of from. */
#define STORAGE_FOLLOW_CHUNK 2048
/* The chunks of a forest of n ids, and chunk i's ids [*lo, *hi). */
static inline size_t storage_follow_chunks(size_t n)
{
    return n > 1 ? (n - 1 + STORAGE_FOLLOW_CHUNK - 1) / STORAGE_FOLLOW_CHUNK : 0;
}
static inline void storage_follow_chunk(size_t n, size_t i, size_t *lo, size_t *hi)
{
    *hi = n - i * STORAGE_FOLLOW_CHUNK;
    *lo = *hi > STORAGE_FOLLOW_CHUNK + 1 ? *hi - STORAGE_FOLLOW_CHUNK : 1;
}
/* The next storage_merger_tabs of m publishes its forest's pass to f when
 * it makes one forest with parents and least children (a union's, or one
 * token's); then f's state is 1 or 2 when it returns, else f stays zero. */
void storage_merger_follow(storage_merger_t *m, storage_follow_t *f);
/* Ends f where no pass will be published (a forest not made at all): its
 * state 2 once its follower stopped reading; f NULL or already ended:
 * nothing. */
void storage_follow_close(storage_follow_t *f);

/* An id space a caller holds: its nonce and how many of its ids (from 0)
 * it has the structure of. */
typedef struct storage_space_known {
    uint64_t nonce;
    uint64_t count;
} storage_space_known_t;
/* The tokens' forests of everything added so far; *tabs (caller owns, free
 * with storage_merged_tabs_free) has *n entries, with parent arrays with
 * STORAGE_TABS_PARENTS in flags and symbol numbers with STORAGE_TABS_SYMNOS
 * (what a share that ships them asks). Their self arrays are the merger's
 * own vectors, valid until the next storage_merger_add or
 * storage_merger_free unless handed over (storage_merger_hand_selfs). m stays usable: a caller may
 * still storage_merger_finish into a tree. */
int storage_merger_tabs(storage_merger_t *m, unsigned flags, storage_merged_tab_t **tabs, size_t *n,
                        errmsg_t *em);
void storage_merged_tabs_free(storage_merged_tab_t *tabs, size_t n);
/* The spaces whose structure the caller of the next storage_merger_tabs
 * with STORAGE_TABS_SPACE holds already (borrowed until then; that call
 * forgets them; n 0: none). */
void storage_merger_known_spaces(storage_merger_t *m, const storage_space_known_t *known, size_t n);
/* A forest of values over a caller's own tree of ids (parent[id] < id for
 * every id >= 1, id 0 the root; sym[id] each id's symbol), as
 * storage_merger_tabs makes a token's: val (count values, count >= 1)
 * becomes out's self and is its own (freed with it); with flags
 * STORAGE_TABS_PARENTS, _LEAST, and _SYMNOS when symno is given (each id's
 * symbol's number, below nsyms, one per distinct symbol: out->symno and
 * out->nsyms); no other flag is taken. out->distinct_kids
 * as the caller says (1: no two ids of one parent share a symbol).
 * out->nonneg 0 (and no arrays, val freed) when a value is below 0 or a
 * total passes INT64_MAX. ERR_NOMEM, ERR_INVALID_ARGUMENT (count 0, or a
 * parent not below its id): out empty and val freed then too. */
int storage_merged_tab_of(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                          size_t nsyms, int64_t *val, size_t count, unsigned flags,
                          int distinct_kids, storage_merged_tab_t *out);
/* storage_merged_tab_of with its pass followed by f (as storage_merger_tabs
 * publishes to one given by storage_merger_follow) when the flags ask for
 * parents and least children; f's state is 1 or 2 when it returns, every
 * failure included. f NULL: as storage_merged_tab_of. */
int storage_merged_tab_followed(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                                size_t nsyms, int64_t *val, size_t count, unsigned flags,
                                int distinct_kids, storage_follow_t *f, storage_merged_tab_t *out);
/* storage_merged_tab_followed over a caller's tree read in place: the
 * forest's sym, parent and symno are the caller's arrays (not copies), so
 * the caller keeps their first count entries as they are (it may append
 * past them) until the forest is released, which calls release(arg) (on
 * every failure too, before this returns). parent and symno are required
 * and the flags' STORAGE_TABS_PARENTS and _SYMNOS implied; the tree is not
 * checked (parent[id] < id for every id >= 1 is the caller's to keep: a
 * tree made from peers' answers is checked as they are added). */
int storage_merged_tab_lent(const uint32_t *parent, const uint64_t *sym, const uint32_t *symno,
                            size_t nsyms, int64_t *val, size_t count, unsigned flags,
                            int distinct_kids, storage_follow_t *f, void (*release)(void *arg),
                            void *arg, storage_merged_tab_t *out);
/* Frees one tab's arrays (its self too when it owns it) and empties it. */
void storage_merged_tab_release(storage_merged_tab_t *v);
/* Gives each of tabs (storage_merger_tabs of m, n of them) the merger's
 * vector its self array borrows, without a copy: the tabs then outlive m,
 * and m may only be freed (what it charged is given back then, as for the
 * tabs' other arrays). */
void storage_merger_hand_selfs(storage_merger_t *m, storage_merged_tab_t *tabs, size_t n);

/* Totals of one series' windows (same selection as storage_scan_blocks). */
typedef int (*storage_total_fn)(void *ctx, int64_t window_start, int64_t total);
int storage_scan_totals(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                        int res, int64_t from_s, int64_t until_s, storage_total_fn fn, void *ctx);

/* The windows of one series at resolution res with start in [from_s,
 * until_s), in window order, each with the profiles it holds
 * (window_profiles, format 14): one call per window with a total. exact
 * is 1 when count covers every profile added to the window (the sum of
 * their totals is the window's total); 0 for a window written in part
 * before format 14 or added to by what counts nothing, whose count says
 * nothing. ids (count short ids of STORAGE_WPROF_ID_LEN bytes, ascending;
 * borrowed for the call) when the window lists them (at most
 * window_profile_ids), else NULL. Only resolutions whose windows outlive profile retention
 * have such values (storage format 16): elsewhere exact is 0 and
 * profile_trees count the window's profiles. */
/* Bytes of the short id a window lists for a profile (format 16): 8 bytes
 * of a hash of its 16-byte id, enough to tell the profiles of one series
 * window apart; two sharing one leave the window unlisted, and the id
 * hash (over the whole ids) tells two copies apart when they do. */
#define STORAGE_WPROF_ID_LEN 8
/* A profile's short id: the first STORAGE_WPROF_ID_LEN bytes of XXH3-128
 * of its 16-byte id (evenly spread whatever the ids look like, and
 * independent of the id hash). */
void storage_wprof_short_id(const uint8_t id[16], uint8_t out[STORAGE_WPROF_ID_LEN]);
typedef struct storage_window_profiles {
    int64_t window, total;
    int64_t count, counted_total;
    uint64_t id_hash; /* sum of XXH3-64 of each counted id */
    int exact;
    /* Some of its profiles are pieces of split pushes (format 18,
     * storage_series_write_t.piece), which other series' windows hold too:
     * counted by their listed ids, united across series, not by count. */
    int pieces;
    const uint8_t *ids;
    size_t nids;
} storage_window_profiles_t;
typedef int (*storage_wprofiles_fn)(void *ctx, const storage_window_profiles_t *w);
int storage_scan_window_profiles(storage_t *s, const char *tenant, uint64_t token,
                                 uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                                 storage_wprofiles_fn fn, void *ctx);
/* Scans that share their iterators, one per column family made at the
 * first scan that needs it (a job scanning several series in a row: a
 * timeline counting each member series' profiles, where making an
 * iterator per scan cost more than the scans). Each iterator reads the
 * store as it was when made. Caller owns; storage_scans_close frees. */
typedef struct storage_scans storage_scans_t;
int storage_scans_open(storage_t *s, storage_scans_t **out);
void storage_scans_close(storage_scans_t *x);
/* storage_scan_window_profiles and storage_scan_profile_trees_spans over
 * x's iterators. */
int storage_scans_window_profiles(storage_scans_t *x, const char *tenant, uint64_t token,
                                  uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                                  storage_wprofiles_fn fn, void *ctx);

/* One window's window_profiles value into out (reset), when the window is
 * counted exactly (its counted total is its total: *total): 1; 0 when not
 * (no value, or written in part before format 14), or a negative error. */
int storage_window_profiles_value(storage_t *s, const char *tenant, uint64_t token,
                                  uint64_t series_id, int res, int64_t window_s, buf_t *out,
                                  int64_t *total);
/* How two window_profiles values a and b (each of a copy counted exactly)
 * relate: */
enum storage_wprof_rel {
    STORAGE_WPROF_UNKNOWN = 0, /* a value does not parse, or the sets differ and a list is cut */
    STORAGE_WPROF_EQUAL,       /* the same profiles (same count and id hash; the same lists) */
    STORAGE_WPROF_A_HOLDS_B,   /* a holds every profile of b and more */
    STORAGE_WPROF_B_HOLDS_A,
    STORAGE_WPROF_MIXED, /* each holds a profile the other lacks */
};
/* The relation; only_a and only_b (may be NULL; reset) get the short ids
 * only a, resp. only b, lists (when both are listed), and delta (may be
 * NULL; reset) the value of a less b when a holds b. Two lists alike
 * whose totals or id hashes differ (two profiles sharing a short id) are
 * UNKNOWN. */
enum storage_wprof_rel storage_window_profiles_relate(const uint8_t *a, size_t an, const uint8_t *b,
                                                      size_t bn, buf_t *only_a, buf_t *only_b,
                                                      buf_t *delta);
/* A 64-bit hash of window_profiles value v's count, counted total and id
 * hash (not its list): two values of the same profiles hash alike, so two
 * copies of a window compare by it before either sends its ids (a fill's
 * first look, docs/cluster.md). Never 0; 0 when v does not parse. */
uint64_t storage_window_profiles_hash(const uint8_t *v, size_t n);

/* The stored profiles of one series (the seen index): each one whose time
 * t (unix seconds, floor of time_ns / 1e9) satisfies from_s <= t < until_s,
 * with its id and this series' root total, in profile id order (not time
 * order). Entries past seen_retention_seconds are skipped, as compaction
 * would drop them. The scan reads only this series' entries. */
typedef int (*storage_profile_fn)(void *ctx, const uint8_t profile_id[16], int64_t time_ns,
                                  int64_t total);
int storage_scan_profiles(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          int64_t from_s, int64_t until_s, storage_profile_fn fn, void *ctx);

/* One stored profile: the series' share of the profile (time_ns,
 * profile_id), exactly as it was written (nothing of other profiles of its
 * windows), merged into dst. ERR_NOT_FOUND when its tree is not stored: an
 * unknown profile, one past profile_retention_seconds, or one whose tree was
 * larger than max_profile_tree_bytes when written. ERR_LIMIT when dst's
 * max_nodes is reached. */
int storage_read_profile(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         int64_t time_ns, const uint8_t profile_id[16], calltree_t *dst);
/* The same; *piece (may be NULL) 1 when the share is a piece of a split
 * push (storage_series_write_t.piece), which a copy written elsewhere (a
 * repair or stream fetch) must say too. */
int storage_read_profile_piece(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                               int64_t time_ns, const uint8_t profile_id[16], calltree_t *dst,
                               int *piece);

/* The stored profiles of one series (profile_trees) whose time t (unix
 * seconds, floor of time_ns / 1e9) satisfies from_s <= t < until_s, newest
 * first (then by profile id, descending), at most max of them: the scan
 * reads only those entries, so its cost is bounded by max, not by what the
 * series stored. tree_kept is 0 for a profile whose tree was too large to
 * keep. piece is 1 for a piece of a split push (storage_series_write_t),
 * which other series of the same profile id also hold. Entries past
 * profile retention are skipped. */
typedef int (*storage_ptree_fn)(void *ctx, int64_t time_ns, const uint8_t profile_id[16],
                                int64_t total, int tree_kept, int piece);
int storage_scan_profile_trees(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                               int64_t from_s, int64_t until_s, size_t max, storage_ptree_fn fn,
                               void *ctx);
/* Every stored profile whose time lies in one of n ranges [from_s[i],
 * until_s[i]), as storage_scan_profile_trees with no maximum, each range
 * oldest first (then by profile id, ascending): for a caller that visits
 * them all whatever their order (counting them). One forward iterator for
 * all the ranges, which seeks only where entries lie between two of them
 * (or a range starts before the last one's end): a backward scan, or an
 * iterator per range, costs several times more over entries still in the
 * memtable. */
int storage_scan_profile_trees_spans(storage_t *s, const char *tenant, uint64_t token,
                                     uint64_t series_id, const int64_t *from_s,
                                     const int64_t *until_s, size_t n, storage_ptree_fn fn,
                                     void *ctx);
int storage_scans_profile_trees_spans(storage_scans_t *x, const char *tenant, uint64_t token,
                                      uint64_t series_id, const int64_t *from_s,
                                      const int64_t *until_s, size_t n, storage_ptree_fn fn,
                                      void *ctx);

/* The seen index by token interval (anti-entropy, docs/cluster.md): one
 * entry per stored series of a profile. tenant is borrowed for the call. */
typedef struct storage_seen_entry {
    const char *tenant;
    uint64_t token, series_id;
    uint8_t profile_id[16];
    int64_t time_ns;
} storage_seen_entry_t;
typedef int (*storage_seen_fn)(void *ctx, const storage_seen_entry_t *e);

/* Calls fn, in key order (token, tenant, series, profile id), for every
 * entry whose token is in [lo, hi] and whose profile time t (unix seconds)
 * satisfies from_s <= t < until_s, starting after the entry `after` (NULL:
 * at lo). Entries past seen_retention_seconds are skipped. fn returns 0 to
 * go on, non-zero to stop (returned). */
int storage_seen_scan(storage_t *s, uint64_t lo, uint64_t hi, const storage_seen_entry_t *after,
                      int64_t from_s, int64_t until_s, storage_seen_fn fn, void *ctx);
/* 1 when (tenant, token, series, profile id) of e is in the seen index (as
 * storage_write_profile would find it: a write of it would be skipped), 0
 * when not, or a negative error. */
int storage_seen_has(storage_t *s, const storage_seen_entry_t *e);

/* Span/trace trees: every (series, 10 s window, tree) recorded for span or
 * trace `id` whose window start w satisfies from_s <= w < until_s. A span's
 * samples are filed under the 10 s window of their profile's time, like
 * blocks of resolution 0, and expire after span_retention_seconds. */
/* flags: STORAGE_SPAN_PARTIAL when the tree may leave profiles out: a
 * merge of a streamed tree past max_span_members kept one side whole, or
 * the tree is sealed and later writes to it were or will be left out
 * (docs/storage-format.md, `spans`). */
#define STORAGE_SPAN_PARTIAL 1u
typedef int (*storage_span_fn)(void *ctx, uint64_t token, uint64_t series_id, int64_t window_start,
                               unsigned flags, const uint8_t *value, size_t len);
int storage_scan_spans(storage_t *s, const char *tenant, uint8_t kind, uint64_t id, int64_t from_s,
                       int64_t until_s, storage_span_fn fn, void *ctx);

/* The span or trace ids (kind) recorded under token for tenant, each with
 * the series and 10 s window of one stored tree, for windows w with
 * from_s <= w < until_s, in span_index order (id, then series, then
 * window), at one snapshot, skipping trees past span retention. A listing
 * of which ids exist: reads only the index, never a tree. fn returns 0 to go
 * on, non-zero to stop (returned). */
typedef int (*storage_span_id_fn)(void *ctx, uint64_t id, uint64_t series_id, int64_t window);
int storage_span_ids(storage_t *s, const char *tenant, uint64_t token, uint8_t kind, int64_t from_s,
                     int64_t until_s, storage_span_id_fn fn, void *ctx);

/* Loads name/file of each id in ids[0..n) into dst (unknown ids are skipped). */
int storage_load_symbols(storage_t *s, const char *tenant, const uint64_t *ids, size_t n,
                         symtab_t *dst);

/* Approximate bytes on disk (SST + WAL) and a short stats string for /metrics. */
int storage_disk_usage(storage_t *s, uint64_t *bytes);
/* Compacts everything now (tests and benchmarks measure settled sizes). */
int storage_compact(storage_t *s);
/* Writes and fsyncs the WAL: every batch committed before the call
 * survives a power loss. ERR_IO (em says why). */
int storage_sync_wal(storage_t *s, errmsg_t *em);

/* Room for every column family's figure in storage_stats_t. */
#define STORAGE_STATS_MAX_CFS 16

/* SST bytes of one column family (its name is static, owned by storage). */
typedef struct storage_cf_bytes {
    const char *cf;
    uint64_t bytes;
} storage_cf_bytes_t;

/* Counters and sizes for /metrics; a snapshot, filled into *out. */
typedef struct storage_stats {
    uint64_t disk_bytes; /* as storage_disk_usage */
    /* SST bytes per column family (blocks, nodes, profile_trees, ...): what
     * the disk_bytes are made of, ncfs entries */
    storage_cf_bytes_t sst_bytes[STORAGE_STATS_MAX_CFS];
    size_t ncfs;
    uint64_t memtable_bytes;    /* all memtables of all column families */
    uint64_t block_cache_bytes; /* block cache in use */
    uint64_t corrupt_operands;  /* merge operands skipped (each time met) as undecodable */
    uint64_t expired_windows;   /* blocks/totals windows dropped by retention */
    uint64_t expired_seen;      /* profile ids forgotten after seen_retention_seconds */
    uint64_t expired_spans;     /* span/trace trees dropped by span retention */
    uint64_t expired_ptrees;    /* profile trees dropped by profile retention */
    uint64_t oversize_ptrees;   /* profile trees not stored: past max_profile_tree_bytes */
    uint64_t duplicate_series;  /* series writes skipped: (series, profile id) already seen */
    uint64_t series_written;    /* series writes committed */
    uint64_t folded_stacks;     /* tree nodes folded into "other": their table was full */
    uint64_t capped_spans;      /* span trees folded down to max_span_nodes */
    uint64_t span_dropped;      /* profiles left out of a span tree past max_span_members */
    uint64_t wal_writes;        /* write batches written to the WAL since open */
    uint64_t wal_syncs;         /* fsyncs of the WAL since open (sync_writes) */
    uint64_t gc_series;         /* empty series deleted since open */
    uint64_t node_table_loads;  /* stack-node tables read whole from disk (cache misses) */
    uint64_t node_table_misses; /* acquires of a table not in memory (read whole or its tail) */
    uint64_t node_table_index_reads; /* reads of the tables' edge index (a Get or a MultiGet) */
    uint64_t node_table_whole_reads; /* pushes' misses of indexed tables read whole */
    uint64_t node_table_hits;        /* acquires served by the table in memory */
    uint64_t node_table_evictions;   /* tables evicted to stay within the cache's bound */
    uint64_t node_cache_bytes;       /* bytes the stack-node table cache holds */
    uint64_t node_cache_limit;       /* its bound: three quarters of node_cache_bytes */
    uint64_t gc_nodetabs;            /* unused stack-node tables deleted since open */
    uint64_t gc_symbols;             /* unreferenced symbols deleted since open */
    uint64_t folded_windows;         /* block windows whose operands a fold put back as one value */
    uint64_t union_builds;           /* shard unions built (union.c): first renders, or afresh */
    uint64_t union_hits;             /* renders that found their shard union in memory */
    uint64_t union_refused;          /* renders whose union would not fit union_cache_bytes */
    uint64_t union_evictions;        /* unions dropped to stay within union_cache_bytes */
    uint64_t union_cache_bytes;      /* bytes the shard unions take */
} storage_stats_t;
int storage_stats(storage_t *s, storage_stats_t *out);
/* Fills out[0..*n) with the SST bytes of each column family (at most cap). */
void storage_sst_bytes_by_cf(storage_t *s, storage_cf_bytes_t *out, size_t cap, size_t *n);
/* Series tenant has in this store, as counted for tenant_max_series (0 when
 * nothing is counted: that limit off and count_tenant_series 0). Thread-safe. */
size_t storage_tenant_series(storage_t *s, const char *tenant);

/* One tenant's series count on this store. */
typedef struct storage_tenant_count {
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t series;
} storage_tenant_count_t;
/* The (at most) max tenants with the most series, most first (ties by
 * name), into out (caller-owned, max entries); *others gets the series of
 * the tenants left out and *ntenants how many tenants are counted. Returns
 * how many were written; 0 when nothing is counted (neither
 * tenant_max_series nor count_tenant_series). Thread-safe. */
size_t storage_tenant_series_top(storage_t *s, storage_tenant_count_t *out, size_t max,
                                 uint64_t *others, size_t *ntenants);

/* Deletes every series none of whose blocks is alive any more (retention
 * dropped them all), with its postings; *removed gets how many. Safe next
 * to writers. Runs by itself every series_gc_interval_seconds, followed by
 * storage_gc_nodetabs (gc.c). */
int storage_gc_series(storage_t *s, size_t *removed);
/* Deletes the stack-node table of every (token, tenant) whose blocks and
 * profile trees have all aged out; *removed gets how many. Safe next to
 * writers and readers: a later write starts a fresh table. */
int storage_gc_nodetabs(storage_t *s, size_t *removed);
/* The most the window fold's pass holds at once (its working memory, to be
 * counted in a node's memory budget; 0 when o turns the fold off): the
 * keys of up to 256 windows waiting for it, and four times
 * window_fold_batch_bytes for its write batch (committed once past it, its
 * buffer grown by doubling) and the window it reads, as long as no window
 * is larger than window_fold_batch_bytes (a larger one adds about twice its
 * own size while it is folded, as reading it does). */
size_t storage_fold_memory_bytes(const storage_options_t *o);
/* The most the zstd dictionary training of compactions buffers at once (to
 * be counted in a node's memory budget; 0 without a dictionary): the
 * STORAGE_DICT_TRAIN_FACTOR x node_table_dict_bytes of data blocks each
 * compaction writing a bottommost stack-node file collects, times the
 * compactions max_background_jobs lets run at once (RocksDB keeps a
 * quarter of the jobs, at least one, for flushes). */
size_t storage_dict_train_memory_bytes(const storage_options_t *o);
/* Folds the memtable operands of every block window that ended by
 * ended_by_s (unix s) and holds two or more into one value, the same sum
 * (fold.c); *folded gets how many windows. Safe next to writers, readers,
 * streams and range clears. Runs by itself every
 * window_fold_interval_seconds with the storage clock's now. */
int storage_fold_windows(storage_t *s, int64_t ended_by_s, size_t *folded);
/* Deletes every symbol that no stack-node table and no span tree names any
 * more; *removed gets how many. Safe next to writers and readers (a write
 * meanwhile keeps what it references). Runs after storage_gc_nodetabs. */
int storage_gc_symbols(storage_t *s, size_t *removed);
/* Registers the fields of st (borrowed until the registry is rendered) as
 * flamedb_storage_* metrics. */
void storage_stats_register(metrics_registry_t *r, const storage_stats_t *st);

/* Writes a consistent copy of the database into dir (which must not exist),
 * hard-linking SST files where the file system allows: a backup that costs
 * little space until the live files compact away. ERR_IO with the reason. */
int storage_checkpoint(storage_t *s, const char *dir, errmsg_t *em);

/* ---------------------------------------------------------------- hints
 * Hinted handoff (docs/replication.md): writes a coordinator could not deliver to
 * a replica, kept durably until they are replayed. Column family `hints`:
 *   hints     target_node_id | seq          -> serialized HintRecord
 * (target: length byte + bytes; seq: u64 big-endian, increasing per process
 * and across restarts, so a target's hints scan oldest first). The record is
 * opaque here. Per-target counts and bytes are kept in memory (rebuilt by a
 * scan at open) so the bound is checked without reading. Thread-safe like the
 * rest of the module. */

#define STORAGE_HINT_TARGET_MAX 64    /* bytes of a target node id (RING_NODE_ID_MAX) */
#define STORAGE_HINT_TARGETS_MAX 1024 /* distinct targets tracked (RING_MAX_NODES) */

/* Stores rec for target unless the target's stored bytes would exceed
 * max_target_bytes, or the bytes stored for all targets would exceed
 * max_total_bytes (0: no bound, each): then ERR_LIMIT and nothing is
 * written. *seq (may be NULL) gets the hint's sequence number. */
int storage_hint_put(storage_t *s, const char *target, const uint8_t *rec, size_t len,
                     uint64_t max_target_bytes, uint64_t max_total_bytes, uint64_t *seq,
                     errmsg_t *em);

/* Calls fn for up to limit hints of target with seq > after_seq, oldest
 * first (rec borrowed for the call). fn returns 0 to continue, non-zero to
 * stop (returned). */
typedef int (*storage_hint_fn)(void *ctx, uint64_t seq, const uint8_t *rec, size_t len);
int storage_hint_scan(storage_t *s, const char *target, uint64_t after_seq, size_t limit,
                      storage_hint_fn fn, void *ctx);

/* Deletes one hint; deleting a hint that is not there is a no-op (0). */
int storage_hint_delete(storage_t *s, const char *target, uint64_t seq, errmsg_t *em);

/* Targets that have stored hints, with their counts and bytes (a snapshot),
 * in target order. fn returns non-zero to stop (returned). */
typedef int (*storage_hint_target_fn)(void *ctx, const char *target, uint64_t count,
                                      uint64_t bytes);
int storage_hint_targets(storage_t *s, storage_hint_target_fn fn, void *ctx);

/* ---------------------------------------------------------------- repair marks
 * Per node: the unix ms of the latest write it missed that no hint will
 * deliver (STORAGE_MARK_LOST: hinted handoff off, or the target over
 * hints-max-bytes), and the start of its latest complete anti-entropy pass
 * (STORAGE_MARK_REPAIRED), and the oldest profile time (unix s, as a u64)
 * of the writes its current mark holds (STORAGE_MARK_OLDEST); `meta` keys
 * (docs/storage-format.md). The cluster keeps a node from serving reads
 * while the first is not older than the second. Thread-safe like the rest
 * of the module. */

#define STORAGE_MARK_LOST 0
#define STORAGE_MARK_REPAIRED 1
#define STORAGE_MARK_OLDEST 2

/* Sets node's mark of kind to ms: LOST and REPAIRED only ever grow (a put
 * of an earlier time than the stored one leaves it), OLDEST is
 * overwritten. */
int storage_repair_mark_put(storage_t *s, int kind, const char *node, uint64_t ms, errmsg_t *em);
/* Calls fn for every mark (node borrowed for the call), every LOST one
 * first, then REPAIRED, then OLDEST; fn returns non-zero to stop
 * (returned). */
typedef int (*storage_mark_fn)(void *ctx, int kind, const char *node, uint64_t ms);
int storage_repair_marks(storage_t *s, storage_mark_fn fn, void *ctx);

/* Witnesses (marks.c): a replica `target` that a write stored here named as
 * missing it, while its coordinator `coord` keeps a hint (or mark) for it:
 * the coordinator's member entry at or past (incarnation, heartbeat) speaks
 * for it, and oldest_s is the oldest profile time of the writes held
 * (`meta` key "repair_held/" + target + NUL + coord). Plain overwrites and
 * deletes: a caller that merges a record with the stored one serializes
 * its get and put itself. */
typedef struct storage_witness {
    char target[STORAGE_HINT_TARGET_MAX + 1];
    char coord[STORAGE_HINT_TARGET_MAX + 1];
    uint64_t incarnation, heartbeat;
    int64_t oldest_s;
} storage_witness_t;

int storage_witness_put(storage_t *s, const storage_witness_t *w, errmsg_t *em);
/* 0 with *out filled, ERR_NOT_FOUND, or an I/O error. */
int storage_witness_get(storage_t *s, const char *target, const char *coord, storage_witness_t *out,
                        errmsg_t *em);
/* Deleting one that is not there is a no-op (0). */
int storage_witness_delete(storage_t *s, const char *target, const char *coord, errmsg_t *em);
/* Calls fn for every stored witness (borrowed for the call); fn returns
 * non-zero to stop (returned). */
typedef int (*storage_witness_fn)(void *ctx, const storage_witness_t *w);
int storage_witnesses(storage_t *s, storage_witness_fn fn, void *ctx);

/* ---- Streaming whole windows to a new owner (stream.c; docs/cluster.md,
 * "Streaming whole windows"). Node ids are local to a store, so a window
 * travels as a call tree. */

/* One profile a streamed window names. */
typedef struct storage_stream_profile {
    uint8_t profile_id[16];
    int64_t time_ns;
    int64_t total; /* its root total in this series */
} storage_stream_profile_t;

/* One window (a `blocks` + `totals` key) as its residual: the stored block
 * minus the kept trees (`profile_trees`) of the profiles in `kept`, so the
 * residual plus those profiles is exactly the stored window. `untreed`
 * profiles (tree not kept) are counted in the residual. All borrowed. */
typedef struct storage_stream_window {
    const char *tenant;
    uint64_t token, series_id;
    int res;
    int64_t window_s;
    const uint8_t *key; /* the `blocks` key (paging) */
    size_t key_len;
    const calltree_t *residual;
    int64_t total;
    const storage_stream_profile_t *kept, *untreed;
    size_t nkept, nuntreed;
    /* The residual's window profiles (window_profiles value, format 14:
     * the window's less the kept profiles); wprof_len 0: the window is not
     * counted exactly there (or an older source sent none), and the
     * receiver's copy is not counted either */
    const uint8_t *wprof;
    size_t wprof_len;
    /* storage_stream_store only: 1 for a fill (docs/cluster.md, "Old windows
     * no profile id names"): stored only while this store holds no `totals`
     * key of the window, looked up under the stack-node table lock that
     * every writer of the series' windows holds until its batch commits */
    int only_absent;
    /* storage_stream_store only, a window this store holds: the residual is
     * what the source's copy holds beyond this store's (the profiles only
     * it holds, by id), added to the window only while its window_profiles
     * value is still these bytes (looked up under the same lock), without a
     * marker. NULL: a window stored whole (once, by its marker). */
    const uint8_t *add_to;
    size_t add_to_len;
} storage_stream_window_t;

/* Calls fn, in key order, for every window alive (not past retention) of
 * `blocks` whose token is in [lo, hi] and whose series is listed (service
 * aggregates are not: the receiver's follow from the series it stores),
 * starting after the key `after`
 * (after_len 0: at lo). fn returns 0 to go on, non-zero to stop
 * (returned). ERR_LIMIT (logged, naming the window) when a window's
 * profile lists pass stream_window_max_profiles: fn was called for the
 * windows before it, never for it. */
typedef int (*storage_stream_fn)(void *ctx, const storage_stream_window_t *w);
int storage_stream_scan(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                        size_t after_len, storage_stream_fn fn, void *ctx);
/* The same, only the windows that end at or before until_s (0: every
 * window): a newer window's block and profiles are not read (a fill of
 * old windows, docs/cluster.md "Old windows no profile id names"). */
int storage_stream_scan_until(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                              size_t after_len, int64_t until_s, storage_stream_fn fn, void *ctx);
/* One `blocks` key, borrowed. */
typedef struct storage_key_ref {
    const uint8_t *key;
    size_t len;
} storage_key_ref_t;
/* As storage_stream_scan, only the windows the n keys name (ascending), of
 * a token in [lo, hi] and after the key `after` (after_len 0: all), each
 * read by point lookups; a key this store does not hold (or past
 * retention, or not a window key) is skipped. */
int storage_stream_scan_keys(storage_t *s, uint64_t lo, uint64_t hi, const storage_key_ref_t *keys,
                             size_t n, const uint8_t *after, size_t after_len, storage_stream_fn fn,
                             void *ctx);
/* One window as storage_stream_summaries names it, borrowed for the call:
 * its key, its whole total, and its window_profiles value when the window
 * is counted exactly (its counted total is its total; wprof_len 0: not). */
typedef struct storage_window_summary {
    const char *tenant;
    uint64_t token, series_id;
    int res;
    int64_t window_s;
    const uint8_t *key;
    size_t key_len;
    int64_t total;
    const uint8_t *wprof;
    size_t wprof_len;
} storage_window_summary_t;
typedef int (*storage_summary_fn)(void *ctx, const storage_window_summary_t *w);
/* Calls fn, in key order, for every window storage_stream_scan_until would
 * hand on, with its summary only: one walk of `totals` and a point read
 * of `window_profiles` per window, no block or profile tree read. fn
 * returns 0 to go on, non-zero to stop (returned). */
int storage_stream_summaries(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                             size_t after_len, int64_t until_s, storage_summary_fn fn, void *ctx);
/* The same, only the windows the n keys name (ascending), each read by
 * point lookups; a key this store does not hold (or past retention, or
 * ending after until_s, or not a window key) is skipped. */
int storage_stream_summaries_keys(storage_t *s, uint64_t lo, uint64_t hi,
                                  const storage_key_ref_t *keys, size_t n, const uint8_t *after,
                                  size_t after_len, int64_t until_s, storage_summary_fn fn,
                                  void *ctx);
/* The parts of a `blocks`/`totals` window key k (as a summary's key): 0, or
 * ERR_CORRUPT when k is not a window key of a known resolution and a valid
 * tenant. */
int storage_window_key_parse(const uint8_t *k, size_t kn, char tenant[STORAGE_TENANT_MAX + 1],
                             uint64_t *token, uint64_t *series_id, int *res, int64_t *window_s);

/* Stores a received window once: unless its marker (the `streamed` column
 * family) exists, in ONE WriteBatch: the residual added to its block and
 * total, the series' labels and postings, the symbols (every one the
 * residual references must be in symbols), each untreed profile recorded as
 * seen without being counted (one already seen here: its total is taken off
 * the residual total), and the marker. *stored is 1 when written, 0 when the
 * marker was there (or, w->only_absent, the window: a write added to it
 * since the caller looked, and the copy would count that write twice). Call only once every kept
 * profile is stored here (a window stored before that would lack them). Borrowed arguments. */
int storage_stream_store(storage_t *s, const storage_stream_window_t *w, const labels_t *labels,
                         const symtab_t *symbols, int *stored, errmsg_t *em);
/* The same; *bytes (may be NULL) gets the size of the committed write batch
 * (as storage_write_profile_sized), 0 when nothing was written. */
int storage_stream_store_sized(storage_t *s, const storage_stream_window_t *w,
                               const labels_t *labels, const symtab_t *symbols, int *stored,
                               size_t *bytes, errmsg_t *em);
/* 1 when this store holds the window (tenant, token, series_id, res,
 * window_s): its `totals` key exists (past retention or not), *total its
 * value; 0 when not, or a negative error. */
int storage_window_total(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         int res, int64_t window_s, int64_t *total);
/* 1 when the window's marker exists, 0 when not, or a negative error. */
int storage_stream_marked(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          int res, int64_t window_s);
/* 1 when this store holds the profile_trees entry of e (kept or not, not
 * past profile retention): it stored that profile, even if its seen entry
 * expired since. 0 when not, or a negative error. */
int storage_ptree_has(storage_t *s, const storage_seen_entry_t *e);
/* Calls fn, in key order (token, tenant, series, time, profile id), for
 * every profile_trees entry (one stored series of a profile, its tree kept
 * or not: tree_kept 0 when it was too large) whose token is in [lo, hi]
 * and whose profile time t (unix seconds) satisfies from_s <= t < until_s,
 * starting after the entry `after` (its time included; NULL: at lo).
 * Entries past profile retention are skipped. Unlike the seen index, these
 * name the stored profiles for as long as profile retention, so replicas
 * compare them for windows older than the seen span (the window check,
 * docs/cluster.md). fn returns 0 to go on, non-zero to stop (returned). */
typedef int (*storage_ptree_entry_fn)(void *ctx, const storage_seen_entry_t *e, int tree_kept);
int storage_ptree_scan(storage_t *s, uint64_t lo, uint64_t hi, const storage_seen_entry_t *after,
                       int64_t from_s, int64_t until_s, storage_ptree_entry_fn fn, void *ctx);

/* Span/trace trees (`spans`) whose token is in [lo, hi], in token order
 * (the order of `span_index`: token, tenant, kind, id, series, window)
 * after the spans key `after` (after_len 0: from lo), read at one snapshot
 * and skipping those past span retention: fn gets each spans key, its
 * tenant, and the stored value (a span value with its members,
 * docs/storage-format.md; storage_span_value_tree reads its tree),
 * borrowed. Reads only the interval's index entries and their trees. */
typedef int (*storage_span_stream_fn)(void *ctx, const uint8_t *key, size_t klen,
                                      const char *tenant, const uint8_t *v, size_t vn);
int storage_stream_spans(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                         size_t after_len, storage_span_stream_fn fn, void *ctx);
/* One stored profile's series, as its seen entry names it. Borrowed. */
typedef struct storage_profile_ref {
    uint64_t series_id;
    int64_t time_ns;
    const uint8_t *profile_id; /* 16 bytes */
} storage_profile_ref_t;
/* The span/trace trees each profile refs[ref] (all of tenant and token)
 * contributed to its series: fn gets ref, each tree's kind and id and that
 * profile's own member tree (a calltree encoding, borrowed for the call),
 * or tree NULL for a tree the profile went into unlisted (a rest, an
 * unknown write), or one of that series and window that may hold the
 * profile without listing it (an anonymous rest past max_span_members, a
 * format-7 value, a SEALED or SHORT value, or one that does not parse): its
 * member there cannot be told. A nonzero return of fn stops the walk and is
 * returned. Refs are read in order, each by two prefix reads of
 * profile_span_index (its own trees, and the trees of its series and window
 * that may hold profiles they do not name), at one snapshot: the cost grows
 * with each profile's own trees, not with its token's (docs/cluster.md,
 * "Anti-entropy"). */
typedef int (*storage_profile_span_fn)(void *ctx, size_t ref, uint8_t kind, uint64_t id,
                                       const uint8_t *tree, size_t len);
int storage_profile_spans(storage_t *s, const char *tenant, uint64_t token,
                          const storage_profile_ref_t *refs, size_t n, storage_profile_span_fn fn,
                          void *ctx);
/* The summed tree of a stored span value (every member and the rest)
 * merged into dst: ERR_CORRUPT when it does not parse or decode. */
int storage_span_value_tree(const uint8_t *v, size_t vn, calltree_t *dst);
/* Merges a received span value under key (checked: a `spans` key of
 * tenant) with the symbols it references: united by profile id with what
 * is there (a live write meanwhile stays; a profile on both sides counts
 * once; merged again, it changes nothing). ERR_CORRUPT when a tree does
 * not decode. A format-7 value (a bare calltree) is one profile of unknown
 * id. Borrowed arguments. */
int storage_stream_span_put(storage_t *s, const char *tenant, const uint8_t *key, size_t klen,
                            const uint8_t *value, size_t vlen, const symtab_t *symbols,
                            errmsg_t *em);
/* The same; *bytes (may be NULL) gets the size of the committed write batch
 * (as storage_write_profile_sized), 0 when nothing was written. */
int storage_stream_span_put_sized(storage_t *s, const char *tenant, const uint8_t *key, size_t klen,
                                  const uint8_t *value, size_t vlen, const symtab_t *symbols,
                                  size_t *bytes, errmsg_t *em);

/* What storage_range_clear removed. */
typedef struct storage_clear_stats {
    uint64_t series; /* series keys (with their postings) */
    uint64_t spans;  /* span/trace trees */
} storage_clear_stats_t;

/* Deletes everything this store holds of the tokens in the n closed
 * intervals [lo[i], hi[i]], in ONE WriteBatch: series and their postings,
 * blocks and totals (service aggregates included), window profiles, seen
 * entries, profile trees, stream markers and span trees; node tables and
 * symbols stay. For a
 * node about to receive the ranges whole (stream_clear.c): an old copy
 * would otherwise count twice. The series come off tenant-max-series.
 * The intervals are then being received: until storage_range_received, a
 * profile written to one of their tokens keeps its tree even when larger
 * than max_profile_tree_bytes, so a streamed window that also holds it can
 * take it off its residual (storage_stream_store), and retention keeps the
 * profile trees of their tokens (those a stream recorded included). They
 * are recorded in `meta` in the clear's batch, so they are still being
 * received after a restart: a stream a crash cut short goes on into them
 * without a second clear. Borrowed arguments. */
int storage_range_clear(storage_t *s, const uint64_t *lo, const uint64_t *hi, size_t n,
                        storage_clear_stats_t *st, errmsg_t *em);
/* The intervals cleared so far are received (their move is complete or
 * abandoned): profile trees over max_profile_tree_bytes are no longer kept
 * for their tokens, retention drops theirs again, and the record in `meta`
 * is deleted (a failure is logged and tried again at the next call). */
void storage_range_received(storage_t *s);

/* Sums, per resolution, the `totals` of the series' windows alive whose
 * token is in [lo, hi] and that end at or before until_s (wrapping, as the
 * merge operator adds): what a receiver of a streamed range and its source
 * must agree on. Service aggregates are left out, as from the stream: the
 * receiver's follow from the series it stores (storage_window_merge). */
int storage_stream_sums(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s,
                        int64_t sums[STORAGE_RESOLUTION_COUNT]);
/* The same sums split into nbuckets (1..STORAGE_SUM_BUCKETS_MAX) by a hash
 * of each window's key, the same on every replica: sums[b *
 * STORAGE_RESOLUTION_COUNT + res], caller's array of nbuckets *
 * STORAGE_RESOLUTION_COUNT. Two copies compare bucket by bucket: one whose
 * every bucket holds at least the other's holds, but for profiles that
 * fall in the same bucket, at least what the other does. */
#define STORAGE_SUM_BUCKETS_MAX 256
int storage_stream_sums_split(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s,
                              uint32_t nbuckets, int64_t *sums);

#endif
