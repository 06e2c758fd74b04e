/* storage_int.h — internals of the storage module; included only inside
 * storage/ and by its unit tests (which need the clock hook).
 *
 * Owns the layout of struct storage, the column family table, the key
 * builders (docs/storage-format.md is the byte-level description and must
 * match them), the merge operators, the compaction filters and the small
 * lock-free "already stored" caches of the write path.
 *
 * Threads: everything here is safe to call concurrently except
 * storage_set_clock(), which a test calls before any other thread uses the
 * handle.
 */
#ifndef FLAMEDB_STORAGE_STORAGE_INT_H
#define FLAMEDB_STORAGE_STORAGE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/list.h"
#include "common/scale.h"
#include "common/u64map.h"

#include "common/buf.h"
#include "common/err.h"
#include "storage/storage.h"

/* Column families, in the order they are opened. The value of each enum is
 * the index of its handle in storage_t.cf. */
enum storage_cf {
    CF_DEFAULT = 0, /* required by RocksDB; unused */
    CF_SERIES,
    CF_POSTINGS,
    CF_BLOCKS,
    CF_TOTALS,
    CF_SYMBOLS,
    CF_SPANS,
    CF_PROFILES,
    CF_META,
    CF_HINTS,       /* hinted handoff (hints.c) */
    CF_NODES,       /* stack-node tables (nodetab.c) */
    CF_PTREES,      /* one profile's own samples per series (write.c, ptrees.c) */
    CF_STREAMED,    /* windows received whole from another node (stream.c) */
    CF_SPAN_INDEX,  /* the `spans` keys in token order (stream_spans.c) */
    CF_ANCHORS,     /* each service aggregate's anchor member (aggregate.c) */
    CF_PSPAN_INDEX, /* the span trees of each profile (pspan_index.c) */
    CF_WPROFILES,   /* the profiles each series window holds (wprofiles.c) */
    CF_COUNT
};

/* Stored format version (meta key "format_version"). Bump on any change to a
 * key or value layout that old data would be misread under. */
#define STORAGE_FORMAT_VERSION "19"
/* Earlier versions upgraded in place at open: version 5 only added the
 * profile_trees column family (which open creates), version 6 the service
 * aggregates (rebuilt from the stored series by storage_aggregate_rebuild),
 * version 7 the stack-node edge index and self-contained chunks (a table
 * written before is read as it is and indexed at its next write, nodetab.c). */
#define STORAGE_FORMAT_V4 "4"
#define STORAGE_FORMAT_V5 "5"
#define STORAGE_FORMAT_V6 "6"
/* Version 8 added span membership (spanval.c; a format-7 span value, a bare
 * calltree, still reads as one of unknown members) and the span_index
 * column family, built from the stored span keys at open. */
#define STORAGE_FORMAT_V7 "7"
/* Version 9 added scaled profile trees (PTREE_FLAG_SCALED); a format-8
 * directory has none and reads as it is. */
#define STORAGE_FORMAT_V8 "8"
/* Version 10 added aggregate anchors (`anchors`): a format-9 aggregate holds
 * every member, which the upgrade records for each (storage_anchor_upgrade). */
#define STORAGE_FORMAT_V9 "9"
/* Version 11 added trees read as part of their 10 s window
 * (PTREE_FLAG_UNBLOCKED); a format-10 tree carries no flag and its window's
 * block holds it, so the upgrade only rewrites the marker. */
#define STORAGE_FORMAT_V10 "10"
/* Version 12 added `profile_span_index` (the span trees of each profile,
 * pspan_index.c), built at open from the stored span trees
 * (storage_pspan_rebuild): their members by profile id, and those that may
 * hold profiles they do not name under PSPAN_UNNAMED. */
#define STORAGE_FORMAT_V11 "11"
/* Version 13 lets an aggregate have several anchors (an `anchors` value is
 * a list of series ids); a format-12 value holds none or one, which reads
 * as such a list, so the upgrade only rewrites the marker. */
#define STORAGE_FORMAT_V12 "12"
/* Version 14 added `window_profiles` (the profiles each series window
 * holds, wprofiles.c), which open creates; a format-13 window has none and
 * reads as not counted, as before, so the upgrade only rewrites the marker.
 * A change that bumps the format again adds its step after this one. */
#define STORAGE_FORMAT_V13 "13"
/* Version 15 writes blocks and profile trees in sparse block version 3
 * (fixed-width columns, sparse_cols.c), which a format-14 binary cannot
 * read; every reader still takes version 2, so the upgrade only rewrites
 * the marker and old values are rewritten as merges and compactions meet
 * them. */
#define STORAGE_FORMAT_V14 "14"
/* Version 16 writes window_profiles values in version 2 (each listed id's
 * first 8 bytes, wprofiles.c) and only at resolutions whose windows
 * outlive profile retention; a format-15 binary would read version 2 as
 * corrupt. Version-1 values still read (and fold into version 2), and a
 * window without a value counts from profile_trees, so the upgrade only
 * rewrites the marker. */
#define STORAGE_FORMAT_V15 "15"
/* Version 17 writes sparse blocks (blocks and profile trees) whose values
 * are all positive as value / scale - 1, flagged by bit 3 of the widths
 * byte (sparse_cols.c), which a format-16 binary reads as corrupt; blocks
 * with the zigzag values of format 16 still read, so the upgrade only
 * rewrites the marker. */
#define STORAGE_FORMAT_V16 "16"
/* Version 18 flags the window_profiles values and profile trees of the
 * pieces of split pushes (WPROF_FLAG_PIECES, PTREE_FLAG_PIECE), which a
 * format-17 binary would read as corrupt. A format-17 (or older) piece
 * was counted nowhere (its windows read as not counted) and its tree
 * carries no flag, so the upgrade only rewrites the marker. */
#define STORAGE_FORMAT_V17 "17"
/* Version 19 keeps the stack-node edge index in buckets of parents
 * (NODETAB_BUCKET_TAG, one value per NODETAB_BUCKET_PARENTS parent ids)
 * instead of one entry per node, marked by a third byte in a table's last
 * chunk, which a format-18 binary reads as corrupt. A table indexed per
 * node reads as unindexed: its next writer reads it whole, and that write
 * deletes the per-node entries (and indexes it again in buckets when it is
 * large), so the upgrade only rewrites the marker. */
#define STORAGE_FORMAT_V18 "18"

/* Block values (sparse.c): version byte of the sparse self-value vector
 * written (fixed-width columns, sparse_cols.c); version 2 (varint pairs)
 * is still read. */
#define SPARSE_VERSION 3
#define SPARSE_VERSION_V2 2
/* Merge results that are never stored (merge.c): a window fold's probe of
 * a block of two parts or more (storage_merge_defer), and a block whose
 * parts a sink took (storage_merge_sink). */
#define SPARSE_PARTS 0xfe
#define SPARSE_TAKEN 0xfd
/* Nodes one token's stack-node table may hold; past it writes of new stacks
 * for that service shard are refused with ERR_LIMIT. */
#define STORAGE_MAX_STACK_NODES (1u << 26) /* default of storage_options_t.max_stack_nodes */
/* Nodes below which a table keeps no edge index when
 * storage_options_t.node_index_min_nodes is 0 (its default: then also not
 * while a writer would read it whole): reading a table this large whole
 * takes 5-14 ms, one of 16,384 nodes about 2 ms (docs/benchmarks.md). */
#define STORAGE_NODE_INDEX_MIN_NODES (1u << 16)
/* Default of storage_options_t.node_whole_read_percent. */
#define STORAGE_NODE_WHOLE_READ_PERCENT 25
/* Default of storage_options_t.window_successive_merges. A render of an
 * hour as ingested adds every memtable operand of its windows as a part;
 * folding at write every this many merges costs a push a read and a fold
 * of the window, and the fold's sum (a put beside the operands) goes
 * through the memtable too. At 16 that fold was the largest single cost of
 * the write path; at 64, as the other merge column families, a window
 * folds four times less often (docs/benchmarks.md: both sides measured). */
#define STORAGE_WINDOW_SUCCESSIVE_MERGES 64
/* Default of storage_options_t.total_successive_merges: never at write. To
 * know when to fold, RocksDB searches the memtable for the key's operands
 * before every merge, as costly as the insert itself; a total's operands
 * are 8 bytes that a read adds, and flushes fold them (docs/benchmarks.md). */
#define STORAGE_TOTAL_SUCCESSIVE_MERGES 0
/* Default of storage_options_t.window_fold_interval_seconds: a window is
 * folded within this long after it ended (fold.c). */
#define STORAGE_WINDOW_FOLD_INTERVAL 10
/* Default of storage_options_t.aggregate_anchors (docs/benchmarks.md: the
 * bytes on disk and the whole-service render measured at 1, 2 and 4). */
#define STORAGE_AGGREGATE_ANCHORS 4

/* Default of storage_options_t.node_table_dict_bytes, and the bytes of data
 * blocks a dictionary is trained on per byte of it (docs/benchmarks.md:
 * node tables 2,199 -> 1,370 bytes per profile on the bench fleet; 1,317
 * at the level below). */
#define STORAGE_NODE_TABLE_DICT_BYTES (64 * 1024)
#define STORAGE_DICT_TRAIN_FACTOR 64
/* zstd level of the files compressed with that dictionary (zstd's default
 * is 3): node tables 1,370 -> 1,317 bytes per profile at no measurable
 * compaction cost beside the training (19: 1,290 at 1.7 times its CPU). */
#define STORAGE_DICT_ZSTD_LEVEL 9

/* Ids a table may hold at all (what a load accepts, whatever the setting). */
#define STORAGE_HARD_STACK_NODES (1u << 30)

/* Writer stripes: writers of one profile id take the same mutex. */
#define STORAGE_STRIPES 64

/* Limits of the write path (named so that errors can cite them). */
#define STORAGE_MAX_SERIES_PER_WRITE 65536
#define STORAGE_MAX_SPANS_PER_SERIES (1u << 20)
/* A single encoded tree (write path) or merged block (merge operator) must
 * fit in this many bytes; RocksDB values beyond a few hundred MiB are a bug. */
#define STORAGE_VALUE_MAX ((size_t)1 << 30)
/* Longest label name or value that can go into a postings key. */
#define STORAGE_LABEL_MAX 65535

/* Slots of the "known to be stored" caches (powers of two, 8 bytes each). */
#define STORAGE_SYMBOL_CACHE_SLOTS (1u << 18)
#define STORAGE_SERIES_CACHE_SLOTS (1u << 16)

/* Room for the largest fixed-layout key, token|tenant|series_id|time|profile_id
 * of profile_trees (8 + 1 + 150 + 8 + 8 + 16 bytes). */
#define SKEY_MAX (8 + 1 + STORAGE_TENANT_MAX + 8 + 1 + 8 + 16)

/* A key of bounded size built on the stack. */
typedef struct skey {
    size_t n;
    uint8_t b[SKEY_MAX];
} skey_t;

/* Direct-mapped cache of 64-bit keys: a slot holds the last key hashed to it
 * (0 = empty). Lookups and inserts are single relaxed atomic operations, so
 * concurrent writers never block on it; a lost insert only costs a rewrite. */
typedef struct idcache {
    _Atomic uint64_t *slots;
    size_t mask;
} idcache_t;

/* What the merge operators and filters know of their owner. */
typedef struct storage_counters {
    atomic_uint_fast64_t corrupt_operands; /* merge operands skipped as corrupt */
    atomic_uint_fast64_t filtered_windows; /* blocks/totals dropped by retention */
    atomic_uint_fast64_t filtered_seen;    /* profiles entries dropped by retention */
    atomic_uint_fast64_t filtered_spans;   /* span trees dropped by retention */
    atomic_uint_fast64_t filtered_ptrees;  /* profile trees dropped by profile retention */
    atomic_uint_fast64_t
        oversize_ptrees;                 /* profile trees not stored: past max_profile_tree_bytes */
    atomic_uint_fast64_t duplicates;     /* series writes skipped as already seen */
    atomic_uint_fast64_t series_written; /* series writes committed */
    atomic_uint_fast64_t folded_stacks;  /* tree nodes folded into "other" (table full) */
    atomic_uint_fast64_t capped_spans;   /* span trees folded to max_span_nodes */
    size_t span_max_nodes;   /* the option, for the spans merge operator (its state is this) */
    size_t span_max_members; /* max_span_members, for the same */
    size_t wprof_max_ids;    /* window_profile_ids, for the window_profiles operator */
    atomic_uint_fast64_t span_dropped;  /* profiles left out of a span tree, never to count twice */
    atomic_uint_fast64_t gc_series;     /* empty series deleted by gc.c */
    atomic_uint_fast64_t nodetab_loads; /* stack-node tables loaded from disk (nodetab.c) */
    atomic_uint_fast64_t nodetab_index_reads; /* reads of the edge index (a Get or a MultiGet) */
    atomic_uint_fast64_t nodetab_misses;      /* acquires finding no table in memory */
    atomic_uint_fast64_t nodetab_whole_reads; /* a writer's misses read whole (read_whole) */
    atomic_uint_fast64_t nodetab_hits;        /* acquires served by the table in memory */
    atomic_uint_fast64_t gc_nodetabs;         /* unused stack-node tables deleted by gc.c */
    atomic_uint_fast64_t gc_symbols;          /* unreferenced symbols deleted by gc_symbols.c */
    atomic_uint_fast64_t folded_windows;      /* block windows folded by fold.c */
    atomic_uint_fast64_t unblocked_scans;     /* range scans of profile_trees for 10 s windows
                                                 (storage_scan_unblocked) */
} storage_counters_t;

/* State of one compaction filter; points back at the handle. */
typedef struct storage_filter_state {
    struct storage *s;
    enum storage_cf cf;
} storage_filter_state_t;

/* Sparse vector of (stack-node id, value), ids strictly ascending. */
typedef struct sparse_vec {
    uint32_t *id;
    int64_t *val;
    size_t n, cap;
} sparse_vec_t;

typedef struct nodetab nodetab_t;

/* Symbol names recently loaded (symcache.c). */
#define SYMCACHE_SHARDS 16
typedef struct symcache {
    struct symcache_shard *shards;
    size_t shard_bytes;
} symcache_t;

/* The in-memory cache of node tables (nodetab.c). */
typedef struct nodetab_cache {
    pthread_mutex_t mu;
    nodetab_t **buckets;
    list_t lru; /* nodetab_t.lru, most recently used first */
    size_t bytes, max_bytes;
    /* The eviction policy's clock: one tick per acquire of a table other
     * than the one acquired before (a burst of pushes to one table is one
     * use), and the key (nodetab.c key_of) of that one. */
    uint64_t tick, last_key;
    u64map_t ghosts;    /* key of a table dropped -> its last tick (low 32 bits) */
    uint64_t evictions; /* tables dropped to stay within max_bytes */
    /* storage_node_generation: bumped by a release of a failed holder
     * (storage_nodetab_release), while it still holds the table's lock */
    atomic_uint_fast64_t gen;
} nodetab_cache_t;

/* The cache of shard unions (union.c): one id space over the stack-node
 * tables of a render's tokens. */
typedef struct nodeunion nodeunion_t;
typedef struct union_cache {
    pthread_mutex_t mu;
    list_t lru; /* nodeunion_t.lru, most recently used first */
    size_t bytes, max_bytes;
    uint64_t builds, hits, refused, evictions;
    /* the last unions refused (too large): their key and generation + 1,
     * refused again at once in that generation */
#define UNION_REFUSALS 64
    uint64_t refusal_key[UNION_REFUSALS], refusal_gen[UNION_REFUSALS];
    size_t refusal_next;
    /* each union's nonce (storage_union_nonce) is this seed, drawn at init
     * from the kernel's random source, and the next serial, mixed: unique
     * per union built here, and distinct from another process's (or an
     * earlier run's) but by a 2^-64 chance. The serial is atomic: a union
     * is emptied under its own lock, not the cache's. */
    uint64_t nonce_seed;
    atomic_uint_fast64_t nonce_serial;
} union_cache_t;

/* tseries.c: series per tenant on this node, for tenant_max_series. */
typedef struct storage_tseries {
    pthread_mutex_t mu;
    int on;         /* tenant_max_series > 0 or count_tenant_series: counted */
    u64map_t index; /* hash of the tenant -> index into counts */
    uint64_t *counts;
    char (*names)[STORAGE_TENANT_MAX + 1]; /* [n]: the tenant of counts[i] */
    size_t n, cap;
} storage_tseries_t;

struct storage {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_options_t *db_opts;
    rocksdb_options_t *cf_opts[CF_COUNT];
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_compactionfilter_t *filters[CF_COUNT]; /* NULL where none */
    storage_filter_state_t filter_state[CF_COUNT];
    storage_options_t opts;
    char *path;

    clock_source_t clock; /* "now" for retention, the write path and hint order */

    pthread_mutex_t stripes[STORAGE_STRIPES];
    pthread_mutex_t marks_mu; /* marks.c: a growing mark's read and put */
    idcache_t symbol_cache;
    idcache_t series_cache;
    nodetab_cache_t nodetabs;
    union_cache_t unions;
    symcache_t symcache;
    storage_counters_t counters;
    struct storage_hints *hints; /* hints.c: per-target counts and bytes */
    struct {                     /* gc.c: the series collector's thread */
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int stop, running;
    } gc;
    struct { /* fold.c: the window fold's thread */
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int stop, running;
    } fold;
    storage_tseries_t tseries;
    struct {                   /* gc_symbols.c: a symbol sweep and the writes beside it */
        pthread_rwlock_t lock; /* writes: read side to their commit; a sweep or a range
                                * clear (stream_clear.c): write side */
        pthread_mutex_t mu;    /* guards touched */
        atomic_int active;     /* a sweep is marking: writes record their symbols */
        u64map_t touched;      /* storage_symgc_key of every symbol written since */
    } symgc;
    struct {                /* stream_clear.c: token intervals being received */
        pthread_mutex_t mu; /* guards lo, hi and n */
        uint64_t *lo, *hi;  /* closed intervals, n of them */
        size_t n;
        /* held across a change of the set and its write to `meta`
         * (storage_range_clear, storage_range_received), so the stored
         * record is the set of the last change */
        pthread_mutex_t save_mu;
        int stored; /* `meta` may hold a record (guarded by save_mu) */
    } receiving;
};

/* The token of a well-formed `spans` key, or 0 with *ok = 0 (stream_spans.c). */
uint64_t storage_span_key_token(const uint8_t *k, size_t kn, int *ok);
/* The span_index key of a well-formed `spans` key k (kn bytes) into out
 * (kn bytes: the same fields, token first), and back. */
void storage_span_index_key(const uint8_t *k, size_t kn, uint8_t *out);
void storage_span_key_of_index(const uint8_t *ik, size_t kn, uint8_t *out);
/* Builds span_index from every `spans` key (the format 7 -> 8 upgrade;
 * idempotent). */
int storage_span_index_rebuild(storage_t *s, errmsg_t *em);

/* --- profile span index (pspan_index.c) ----------------------------------
 * token | tenant length | tenant | series | window | owner | kind | id -> "".
 * owner: the id of a profile the `spans` tree (tenant, kind, id, token,
 * series, window) holds a member of, or storage_pspan_unnamed (16 x 0xff)
 * when the tree may hold profiles it does not name. A write files all the
 * trees of one profile and series under one key instead, the list key
 * token | tenant length | tenant | series | window | owner -> n records of
 * STORAGE_PSPAN_REC bytes (kind, id BE), sorted, distinct. */
#define STORAGE_PSPAN_LIST_FIXED (8 + 1 + 8 + 8 + 16)
#define STORAGE_PSPAN_REC (1 + 8)
#define STORAGE_PSPAN_FIXED (STORAGE_PSPAN_LIST_FIXED + STORAGE_PSPAN_REC)
#define STORAGE_PSPAN_KEY_MAX (STORAGE_PSPAN_FIXED + STORAGE_TENANT_MAX)
extern const uint8_t storage_pspan_unnamed[16];
/* The entry of owner in the well-formed `spans` key k (kn bytes) into out
 * (kn + 16 bytes), and the spans key of a well-formed entry (pn - 16). */
void storage_pspan_key(const uint8_t *k, size_t kn, const uint8_t owner[16], uint8_t *out);
void storage_span_key_of_pspan(const uint8_t *pk, size_t pn, uint8_t *out);
/* 1 when pk is an entry (one tree) of a valid length, 2 when it is a list
 * key, else 0. */
int storage_pspan_key_ok(const uint8_t *pk, size_t pn);
/* The prefix of owner's entries in (tenant, token, series, window), which
 * is also owner's list key, into out (STORAGE_PSPAN_KEY_MAX bytes);
 * returns its length. */
size_t storage_pspan_prefix(const char *tenant, uint64_t token, uint64_t series_id, int64_t window,
                            const uint8_t owner[16], uint8_t *out);
/* Puts into wb the entries of the stored or streamed span value v of the
 * well-formed `spans` key k: one per member, and an unnamed one when v has
 * a rest, is SEALED or SHORT, or does not parse. 0 or ERR_NOMEM. */
int storage_pspan_put_value(storage_t *s, rocksdb_writebatch_t *wb, const uint8_t *k, size_t kn,
                            const uint8_t *v, size_t vn);
/* Builds profile_span_index from every stored span value (the format 11
 * -> 12 upgrade; idempotent). */
int storage_pspan_rebuild(storage_t *s, errmsg_t *em);
/* Deletes into wb, key by key, the entries from start (8 bytes) up to end
 * (en bytes, exclusive): a range clear (stream_clear.c). */
int storage_pspan_clear(storage_t *s, const uint8_t start[8], const uint8_t *end, size_t en,
                        rocksdb_writebatch_t *wb);

/* --- span values (spanval.c; docs/storage-format.md, `spans`) ------------- */

#define SPANVAL_VERSION 2
/* Flags byte. SEALED: the rest may hold profiles this node never recorded
 * as seen (a stream brought them): a write's operand is not added to it.
 * STREAM: an operand a stream merged in, united by profile id; never stored. */
#define SPANVAL_SEALED 1
#define SPANVAL_STREAM 2
/* FOREIGN: a listed member came from a stream (folding members into the
 * rest then seals the value). */
#define SPANVAL_FOREIGN 4
/* SHORT: a merge left profiles out of the value (a side of a streamed
 * union, or a write to a SEALED value): readers report the tree as partial
 * (STORAGE_SPAN_PARTIAL). A value written before this bit existed has it
 * clear, and is reported partial only when SEALED. */
#define SPANVAL_SHORT 8
/* The flags a stored value keeps. */
#define SPANVAL_KEPT_FLAGS (SPANVAL_SEALED | SPANVAL_FOREIGN | SPANVAL_SHORT)

/* One member: a profile id and its span tree (a calltree encoding). */
typedef struct spanval_member {
    uint8_t id[16];
    const uint8_t *tree; /* borrowed from the parsed bytes */
    size_t len;
} spanval_member_t;

/* A parsed value: members by ascending id, then the rest (rest_count
 * profiles without ids, one summed tree). Borrows from the parsed bytes;
 * m is owned (storage_spanval_free). */
typedef struct spanval {
    uint8_t flags;
    spanval_member_t *m;
    size_t n, cap;
    uint64_t rest_count;
    const uint8_t *rest;
    size_t rest_len;
} spanval_t;

/* Parses a span value (format 8, or a format-7 calltree: one profile in
 * the rest). ERR_CORRUPT on bad framing (member trees are not decoded). */
int storage_spanval_parse(const uint8_t *p, size_t n, spanval_t *out);
void storage_spanval_free(spanval_t *v);
/* Appends the value of one member (a write's operand). */
int storage_spanval_encode_one(const uint8_t id[16], const uint8_t *tree, size_t len, buf_t *out);
/* A write's operand of no member that marks the value SHORT: a fetched
 * profile whose member of it is not known (storage_span_tree_t.unknown). */
int storage_spanval_encode_short(buf_t *out);
/* Appends value p as a streamed operand (STREAM set; a format-7 value
 * becomes a rest of one profile). ERR_CORRUPT when p does not parse. */
int storage_spanval_stream_operand(const uint8_t *p, size_t n, buf_t *out);
/* The summed tree of value p as one calltree encoding, for readers
 * (*partial: 1 when the value is SEALED or SHORT, profiles may be left out):
 * *out is a member's or the rest's bytes (borrowed from p) when it is the
 * only part, else the sum, capped at max_span_nodes, encoded into tmp; a
 * value that does not parse is handed on as it is. Fails only with
 * ERR_NOMEM. */
int storage_spanval_calltree(storage_t *s, const uint8_t *p, size_t n, buf_t *tmp,
                             const uint8_t **out, size_t *out_len, int *partial);
/* The spans merge operator (spanval.c). */
rocksdb_mergeoperator_t *storage_merge_spans_new(storage_counters_t *c);
/* Applies parts in order (the first: the existing value or an operand). */
int storage_fold_spans(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                       buf_t *out);

/* --- series per tenant (tseries.c) --------------------------------------- */

/* Counts the series column family's keys per tenant (when the limit is on). */
int storage_tseries_open(storage_t *s);
void storage_tseries_close(storage_t *s);
/* Takes n more series of tenant: 0, or ERR_LIMIT naming tenant-max-series
 * (nothing taken). */
int storage_tseries_reserve(storage_t *s, const char *tenant, size_t n, errmsg_t *em);
/* Gives back n series of tenant (a failed commit, a collected series). */
void storage_tseries_release(storage_t *s, const char *tenant, size_t n);

/* --- clock (tests) ------------------------------------------------------- */

/* Replaces the clock the retention filters, the write path and the hint
 * sequence read "now" from (copied; its ctx is borrowed). Call before other
 * threads use s. c NULL restores the real clock. */
void storage_set_clock(storage_t *s, const clock_source_t *c);
/* --- service aggregates (aggregate.c) ------------------------------------- */

/* 1 and *id = the aggregate series l adds to, or 0 when l has no service
 * name or no profile type (such a series has no aggregate). */
int storage_aggregate_of(const labels_t *l, uint64_t *id);
/* Aggregate anchors claimed by a batch not yet committed (aggregate.c): a
 * later series of the same batch must see them. Zero-initialise; free with
 * storage_claims_free. */
typedef struct storage_claims {
    struct storage_claim {
        uint64_t token, agg;
        size_t n; /* its anchors: as read, with this batch's claims */
        uint64_t anchor[STORAGE_AGGREGATE_ANCHORS_MAX];
    } * v;
    size_t n, cap;
} storage_claims_t;
void storage_claims_free(storage_claims_t *c);

/* Which aggregate the windows of series_id (labels l, NULL: none) add to:
 * *agg = its aggregate id, or 0 when it adds to none (no service name or
 * profile type, or it is one of its aggregate's anchors). The first
 * series written to an aggregate of a token becomes its anchor, and so does
 * each series new to the token while the aggregate has fewer than
 * aggregate_anchors (a series already stored has windows in the aggregate,
 * so it stays a member): the record is put into wb and into claims (for the
 * rest of the batch). Call with the token's
 * stack-node table held, the lock every writer of the token takes before
 * its commit, so two writers never both claim an aggregate. */
int storage_aggregate_target(storage_t *s, rocksdb_writebatch_t *wb, storage_claims_t *claims,
                             const char *tenant, uint64_t token, uint64_t series_id,
                             const labels_t *l, uint64_t *agg, errmsg_t *em);
/* The series GC deleting series_id (labels l) from token, in wb: it leaves
 * its aggregate's anchors, unless it is the last one (an empty list is an
 * aggregate that holds every member and takes no anchor). Its windows, and
 * its part of the aggregate's, have all expired, so a series of the same
 * labels written later is new to the token: an anchor again if there is
 * room, else a member. Call with the token's stack-node table held. */
int storage_aggregate_forget(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant,
                             uint64_t token, uint64_t series_id, const labels_t *l, errmsg_t *em);
/* THE way to add to a window: puts into wb the merge operands adding block
 * (a sparse block encoding, borrowed; block_len 0: none) and total to the
 * series' window (res index, window start) and to the same window of agg
 * (storage_aggregate_target's answer; 0: none), unless that window is
 * already past retention. Every path that adds data to blocks/totals must
 * use both (write.c; an import of moved blocks too), so an aggregate stays
 * the exact sum of its members other than its anchor. */
/* unblocked: the series' own block operand is left out (its tree is read
 * from profile_trees, PTREE_FLAG_UNBLOCKED); the aggregate's and both
 * totals are merged as always. */
void storage_window_merge(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant,
                          uint64_t token, uint64_t series_id, uint64_t agg, int res, int64_t window,
                          const uint8_t *block, size_t block_len, int64_t total, int unblocked);
/* Recomputes every aggregate from the stored series' blocks, totals and
 * trees kept in no block (the
 * upgrade of a directory written before aggregates). Idempotent: an
 * interrupted run is simply run again. Called by open, before any writer. */
int storage_aggregate_rebuild(storage_t *s, errmsg_t *em);
/* Records "no anchor: every member adds" for the aggregate of every stored
 * series (the format 9 -> 10 upgrade: those aggregates hold all their
 * members). Idempotent. Called by open, before any writer. */
int storage_anchor_upgrade(storage_t *s, errmsg_t *em);

/* Unix seconds by the handle's clock. */
int64_t storage_now(const storage_t *s);

/* --- errors -------------------------------------------------------------- */

/* The one RocksDB error boundary: if err is non-NULL, sets em (may be NULL)
 * to "what: err", logs it, frees err and returns ERR_IO; else returns 0. */
int storage_rocks_err(char *err, errmsg_t *em, const char *what);

/* 0 if tenant is 1..STORAGE_TENANT_MAX bytes, else ERR_INVALID_ARGUMENT. */
int storage_check_tenant(const char *tenant, errmsg_t *em);

/* --- keys (docs/storage-format.md) ---------------------------------------- */

static inline void skey_reset(skey_t *k)
{
    k->n = 0;
}
void storage_key_u8(skey_t *k, uint8_t v);
void storage_key_u64(skey_t *k, uint64_t v);            /* big-endian */
void storage_key_time(skey_t *k, int64_t t);            /* big-endian, sign bit flipped */
void storage_key_tenant(skey_t *k, const char *tenant); /* length byte + bytes */
void storage_key_bytes(skey_t *k, const void *p, size_t n);

int64_t storage_time_decode(const uint8_t *p); /* inverse of storage_key_time */

/* token|tenant|series_id (the prefix of series, blocks, totals, profiles). */
void storage_key_series(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id);
/* token|tenant|series_id|res|window */
void storage_key_window(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id, int res,
                        int64_t window);
/* token|tenant|series_id|profile_id */
void storage_key_profile(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id,
                         const uint8_t profile_id[16]);
/* token|tenant|series_id|time_ns|profile_id (profile_trees: time-ordered) */
void storage_key_ptree(skey_t *k, uint64_t token, const char *tenant, uint64_t series_id,
                       int64_t time_ns, const uint8_t profile_id[16]);
/* tenant|symbol_id */
void storage_key_symbol(skey_t *k, const char *tenant, uint64_t symbol_id);
/* tenant|kind|id and tenant|kind|id|token|series_id */
void storage_key_span_prefix(skey_t *k, const char *tenant, uint8_t kind, uint64_t id);
/* window: start of the 10 s window (resolution 0) of the profile's time. */
void storage_key_span(skey_t *k, const char *tenant, uint8_t kind, uint64_t id, uint64_t token,
                      uint64_t series_id, int64_t window);
/* tenant|name 0x00 value 0x00 token series_id, appended to out (reset first). */
int storage_key_posting(buf_t *out, const char *tenant, const char *name, const char *value,
                        uint64_t token, uint64_t series_id);

/* Replaces k (n bytes) with the smallest key greater than every key that
 * starts with k: strips trailing 0xff bytes and increments the last byte.
 * Returns the new length, 0 when no such key exists (all 0xff). */
size_t storage_prefix_successor(uint8_t *k, size_t n);

/* Values. */
#define STORAGE_PROFILE_VALUE_LEN 24
void storage_profile_value(uint8_t out[STORAGE_PROFILE_VALUE_LEN], int64_t time_ns, int64_t total,
                           int64_t written_s);
void storage_i64_put(uint8_t out[8], int64_t v); /* little-endian */
int64_t storage_i64_get(const uint8_t *p);

/* profile_trees value (ptrees.c): version byte, flags, the series' root total
 * (i64 little-endian), then the sparse block encoding of the series' share
 * of the profile unless PTREE_FLAG_NO_TREE says it was too large to keep. */
#define PTREE_VERSION 1
#define PTREE_FLAG_NO_TREE 1
/* Recorded by a streamed window (stream_store.c): the profile is counted in
 * that window's residual, not on its own here. */
#define PTREE_FLAG_STREAMED 2
#define PTREE_HEADER_LEN 10
/* Format 9: the tree is c times the kept tree of another series of the same
 * profile (same token, time and profile id): after the header come that
 * series' id (u64 little-endian) and c (svarint, non-zero) instead of a
 * block. write.c stores it when a series' share is proportional to the one
 * written just before it (CPU samples and nanoseconds); the referenced value
 * is always a plain kept tree, never a scaled one. */
#define PTREE_FLAG_SCALED 4
#define PTREE_SCALED_MAX_LEN (PTREE_HEADER_LEN + 8 + 10)
/* Format 11: the tree (plain or scaled) is in no block: the series' 10 s
 * (resolution-0) window is its block plus the flagged trees of the window
 * (storage_scan_unblocked); its total is in the window's total as any
 * other. write.c sets it on every tree it keeps; coarser windows and the
 * service aggregate's still hold the tree. Compaction keeps a flagged tree
 * until its 10 s window expires, also past profile retention (filter.c). */
#define PTREE_FLAG_UNBLOCKED 8
/* Format 18: the series' share is a piece of a split push
 * (storage_series_write_t.piece): counted by id, united across series. */
#define PTREE_FLAG_PIECE 16

/* The tree of profile_trees value v (n bytes) stored under key (klen bytes)
 * into vec, resolving a scaled value through a point read with ro (borrowed;
 * its snapshot, if any, is used). ERR_NOT_FOUND when the value keeps no tree,
 * ERR_CORRUPT when it or the value it names does not decode (or is missing). */
int storage_ptree_vec(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *key,
                      size_t klen, const uint8_t *v, size_t n, sparse_vec_t *vec);

/* One tree of storage_scan_unblocked: the sparse block encoding of a plain
 * tree (enc, len; vec NULL), or a scaled tree resolved through its base
 * (vec; enc NULL), of the 10 s window starting at window. */
typedef int (*storage_unblocked_fn)(void *ctx, int64_t window, const uint8_t *enc, size_t len,
                                    const sparse_vec_t *vec);
/* Calls fn, in time order, for every PTREE_FLAG_UNBLOCKED tree of the
 * series whose 10 s window starts in [from_s, until_s) and is not past
 * resolution 0's retention (expired_too: whatever their age, as a raw
 * scan of blocks sees them; profile retention never hides it: it is
 * window data): one range scan of profile_trees, at snap (NULL: none;
 * a scaled tree's base is read at it too). A tree that does not decode is
 * counted as corrupt and skipped, as a corrupt block is. */
int storage_scan_unblocked(storage_t *s, const rocksdb_snapshot_t *snap, const char *tenant,
                           uint64_t token, uint64_t series_id, int64_t from_s, int64_t until_s,
                           int expired_too, storage_unblocked_fn fn, void *ctx);

/* Whether token lies in an interval being received (storage_range_clear
 * until storage_range_received): a profile written there keeps its tree
 * whatever its size (write.c), for the stream to take it off a residual. */
int storage_range_receiving(storage_t *s, uint64_t token);
/* storage_open, after the database opened: the intervals a clear recorded
 * as being received and no storage_range_received ended (a stream a crash
 * cut short). Until then every token counts as being received (set by
 * storage_alloc), so retention drops nothing of them meanwhile. */
int storage_range_receiving_load(storage_t *s, errmsg_t *em);
/* storage_alloc: every token being received until the load; 0 or ERR_NOMEM. */
int storage_range_receiving_init(storage_t *s);

/* Symbol value: uvarint name_len, name, uvarint file_len, file. */
int storage_symbol_value(buf_t *out, const char *name, const char *file);
int storage_symbol_decode(const uint8_t *p, size_t n, const char **name, size_t *name_len,
                          const char **file, size_t *file_len);

/* --- merge operators and compaction filters ------------------------------ */

/* New merge operators; each rocksdb_options_t takes ownership of its own. */
rocksdb_mergeoperator_t *storage_merge_i64_new(storage_counters_t *c);

/* When t has more than max nodes (0: never), *out gets a copy that keeps the
 * heaviest nodes (and their callers) and folds the rest into `other`
 * children, total exact, at most max nodes (captree.c); else *out is
 * NULL. Caller owns *out. Fails only with ERR_NOMEM. */
int storage_cap_tree(const calltree_t *t, size_t max, calltree_t **out);

/* Compaction filter of cf (blocks, totals, profiles); NULL for other CFs.
 * The filter must outlive the DB. */
rocksdb_compactionfilter_t *storage_filter_new(storage_t *s, enum storage_cf cf);

/* Whether the compaction filter of cf would drop key/value now. */
int storage_filter_expired(storage_t *s, enum storage_cf cf, const uint8_t *key, size_t klen,
                           const uint8_t *val, size_t vlen);

/* 1 when a profile of time time_ns is past profile_retention_seconds. */
int storage_ptree_expired(storage_t *s, int64_t time_ns);

/* --- symbol collection (gc_symbols.c) --------------------------------------- */

int storage_symgc_init(storage_t *s);
void storage_symgc_free(storage_t *s);
/* The key of (tenant, symbol) in the symbol cache and the sweep's sets. */
uint64_t storage_symgc_key(uint64_t tenant_hash, uint64_t sym);
/* Called by a write (holding the read side of symgc.lock) for every symbol
 * it references, cached or not: while a sweep marks, the symbol is kept. */
int storage_symgc_touch(storage_t *s, uint64_t key);

/* --- series collection (gc.c) ---------------------------------------------- */

/* Starts the collector thread when series_gc_interval_seconds > 0 (after the
 * DB is open); storage_gc_stop (before it closes) stops and joins it. */
int storage_gc_start(storage_t *s);
void storage_gc_stop(storage_t *s);
/* The same for the window fold's thread (window_fold_interval_seconds). */
int storage_fold_start(storage_t *s);
void storage_fold_stop(storage_t *s);

/* --- hints (hints.c) ------------------------------------------------------ */

/* Builds the per-target table from the hints CF (after the DB is open). */
int storage_hints_open(storage_t *s, errmsg_t *em);
void storage_hints_free(storage_t *s);

/* --- block values: sparse vectors (sparse.c) ------------------------------- */

/* |v| as an unsigned value (INT64_MIN too). */
static inline uint64_t storage_abs_u64(int64_t v)
{
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* A block's scale with value v added: the gcd of the values' magnitudes
 * (0: no value yet), so every division by it is exact; 1 stays 1. */
static inline uint64_t storage_scale_add(uint64_t scale, int64_t v)
{
    return scale_add(scale, storage_abs_u64(v));
}

/* v / scale, exact, keeping the sign (scale 0 or 1: v). */
static inline int64_t storage_scaled(int64_t v, uint64_t scale)
{
    return scale <= 1 ? v
           : v < 0    ? -(int64_t)(storage_abs_u64(v) / scale)
                      : (int64_t)(storage_abs_u64(v) / scale);
}

void storage_sparse_init(sparse_vec_t *v);
void storage_sparse_free(sparse_vec_t *v);
int storage_sparse_reserve(sparse_vec_t *v, size_t n);
/* Appends the version-2 block encoding of v (zero values omitted). */
int storage_sparse_encode(const sparse_vec_t *v, buf_t *out);
/* Replaces out's contents with the decoded vector; ERR_CORRUPT on bad bytes. */
int storage_sparse_decode(const uint8_t *p, size_t n, sparse_vec_t *out);
/* Adds a block encoding into the dense vector *val (indexed by stack-node id,
 * *cap entries), grown (zeroed) as needed up to max_ids entries, without
 * decoding it first, and raises *used to one past the largest id it adds
 * (entries from *used on that were zero stay zero). A corrupt block adds
 * nothing and leaves *used: ERR_CORRUPT (ids past max_ids are corrupt);
 * ERR_NOMEM leaves what was added taken back too. */
int storage_sparse_add_dense(const uint8_t *p, size_t len, int64_t **val, size_t *cap, size_t *used,
                             size_t max_ids);
/* Two blocks added as storage_sparse_add_dense adds each (the vector ends
 * the same as after the two calls, each block's outcome apart: a's
 * returned, b's in *rcb), with the reads of both in step: a window's
 * unfolded parts are added in pairs. */
int storage_sparse_add_dense2(const uint8_t *pa, size_t la, const uint8_t *pb, size_t lb,
                              int64_t **val, size_t *cap, size_t *used, size_t max_ids, int *rcb);
/* 1 when b is c times a entry by entry, for one integer c != 0 that *c
 * receives: the same ids with non-zero values, and b's value = c × a's value
 * exactly, without overflow; else 0 (*c untouched). Two empty vectors are
 * not proportional (there is nothing to store either way). Zero values are
 * skipped on both sides, as the encoding omits them. */
int storage_sparse_factor(const sparse_vec_t *a, const sparse_vec_t *b, int64_t *c);
/* Adds v into the dense vector *val as storage_sparse_add_dense adds a
 * block: ERR_CORRUPT (nothing added) for an id past max_ids, ERR_NOMEM. */
int storage_sparse_add_dense_vec(const sparse_vec_t *v, int64_t **val, size_t *cap, size_t *used,
                                 size_t max_ids);
/* Appends the version-2 encoding of v (varint pairs; what format 13 and
 * earlier wrote, kept to test their reading). */
int storage_sparse_encode_v2(const sparse_vec_t *v, buf_t *out);
/* acc += b, using tmp as scratch (contents swapped). */
int storage_sparse_add(sparse_vec_t *acc, const sparse_vec_t *b, sparse_vec_t *tmp);
/* Sums block encodings parts[0..n) into out, skipping (and counting) corrupt ones. */
int storage_fold_sparse(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                        buf_t *out);
rocksdb_mergeoperator_t *storage_merge_sparse_new(storage_counters_t *c);
/* Where a block merge met by an iterator of the calling thread goes while
 * set (storage_merge_sink; NULL: nowhere): take gets the key, the value the
 * operands apply to (NULL when none) and the operands, oldest first, all
 * borrowed for the call, and the iterator then shows SPARSE_TAKEN (one
 * byte) as the key's value. take cannot fail the merge: it keeps its own
 * error. Flushes, compactions and writes run on threads (or at times)
 * where no sink is set, so nothing unfolded is ever stored
 * (storage_scan_window_parts sets and clears it). */
typedef struct storage_merge_sink {
    void (*take)(void *ctx, const uint8_t *key, size_t key_len, const char *base, size_t base_len,
                 const char *const *ops, const size_t *op_lens, int nops);
    void *ctx;
} storage_merge_sink_t;
void storage_merge_sink(const storage_merge_sink_t *sink);
/* With STORAGE_MERGE_PROBE (0: off), a block merge met by an iterator of
 * the calling thread returns one byte and nothing of the parts:
 * SPARSE_PARTS when it met two or more, else SPARSE_VERSION (the window
 * fold's scan, fold.c, copies no block). A sink set takes precedence. */
void storage_merge_defer(int on);
#define STORAGE_MERGE_PROBE 2
/* Counts and (thinned) logs a corrupt merge operand. */
void storage_log_corrupt(storage_counters_t *c, const char *what, int i, int rc);

/* --- window profiles (wprofiles.c) ------------------------------------------ */

/* window_profiles value: version, flags, count, counted total, id hash
 * (each 8 bytes LE; the hash over whole 16-byte ids), then when listed
 * count ids, ascending: version 2 (format 16) lists each profile's short
 * id (storage_wprof_short_id), version 1 (formats 14 and 15, still read)
 * the whole 16 bytes. */
#define WPROF_VERSION 2
#define WPROF_VERSION_WHOLE_IDS 1
#define WPROF_FLAG_LISTED 1
/* Format 18: some of the window's profiles are pieces of split pushes
 * (storage_series_write_t.piece): count them by id, not by count. */
#define WPROF_FLAG_PIECES 2
#define WPROF_HEADER_LEN 26
typedef struct storage_wprof {
    int64_t count, total;
    uint64_t id_hash;
    int listed, pieces;
    const uint8_t *ids; /* borrowed from the decoded value; nids == count when listed */
    size_t nids;
    size_t stride; /* bytes an id takes in ids: 8, or 16 in a version-1 value */
} storage_wprof_t;
int storage_wprof_decode(const uint8_t *v, size_t n, storage_wprof_t *out);
/* flags: WPROF_FLAG_LISTED and WPROF_FLAG_PIECES. */
void storage_wprof_header(uint8_t out[WPROF_HEADER_LEN], int64_t count, int64_t total,
                          uint64_t id_hash, int flags);
uint64_t storage_wprof_id_hash(const uint8_t id[16]);
/* Whether the series windows of resolution res get a window_profiles
 * value: only when they can outlive the profiles they hold in
 * profile_trees (their retention plus their width is longer than
 * profile_retention_seconds, or forever); within it the profiles are
 * counted and compared from profile_trees. Decided from the settings when
 * written. */
int storage_wprof_kept(const storage_t *s, int res);
/* Puts into wb the operand adding one profile (id, its series' total) to
 * the series' window (res index, start), unless that window is past
 * retention or its resolution keeps none (storage_wprof_kept); piece: the
 * profile is a piece of a split push (WPROF_FLAG_PIECES). Series only: an
 * aggregate's windows count nothing. */
void storage_wprof_add(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant, uint64_t token,
                       uint64_t series_id, int res, int64_t window, const uint8_t id[16],
                       int64_t total, int piece);
rocksdb_mergeoperator_t *storage_merge_wprof_new(storage_counters_t *c);
/* A window's profiles being taken apart (a stream's residual): ok 0 once
 * what was removed was not in it (the rest then says nothing). */
typedef struct storage_wprof_edit {
    int ok, listed, pieces;
    int64_t count, total;
    uint64_t hash;
    uint8_t *ids; /* owned */
    size_t nids;
} storage_wprof_edit_t;
int storage_wprof_edit_init(storage_wprof_edit_t *e, const uint8_t *v, size_t n);
void storage_wprof_edit_remove(storage_wprof_edit_t *e, const uint8_t id[16], int64_t total);
/* out (reset) gets the value, or nothing when !e->ok. */
int storage_wprof_edit_encode(const storage_wprof_edit_t *e, buf_t *out);
void storage_wprof_edit_free(storage_wprof_edit_t *e);
/* The stream sender's residual of window key's profiles into out (reset):
 * the window's value less the kept profiles (their trees travel on their
 * own), when the window is counted exactly (window_total) and what is left
 * adds up to the residual's total; else out stays empty (the receiver's
 * window is then not counted, as before format 14). */
int storage_wprof_residual(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *key,
                           size_t key_len, int64_t window_total,
                           const storage_stream_profile_t *kept, size_t nkept,
                           int64_t residual_total, buf_t *out);

/* Calls fn for each value of cf (blocks or totals) of one series at
 * resolution res with window start in [from_s, until_s), in window order. */
int storage_scan_window_values(storage_t *s, enum storage_cf cf, const char *tenant, uint64_t token,
                               uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                               int (*fn)(void *ctx, int64_t window, const uint8_t *v, size_t n),
                               void *ctx);
/* The same over x's iterator of cf (storage_scans_t). */
int storage_scans_window_values(storage_scans_t *x, enum storage_cf cf, const char *tenant,
                                uint64_t token, uint64_t series_id, int res, int64_t from_s,
                                int64_t until_s,
                                int (*fn)(void *ctx, int64_t window, const uint8_t *v, size_t n),
                                void *ctx);
/* x's iterator over cf (no bounds), made at its first use; NULL when x is
 * NULL. */
rocksdb_iterator_t *storage_scans_iter(storage_scans_t *x, enum storage_cf cf);
storage_t *storage_scans_store(const storage_scans_t *x);
/* A window's block as it lies: the value the operands apply to (base,
 * NULL when none) and its unfolded merge operands (ops, oldest first), or
 * a folded value alone as base with nops 0; all borrowed for the call. */
typedef int (*storage_parts_fn)(void *ctx, int64_t window, const char *base, size_t base_len,
                                const char *const *ops, const size_t *op_lens, int nops);
/* Calls fn for each block of one series at resolution res with window
 * start in [from_s, until_s), in window order, as it lies: the operands a
 * window still holds are handed over from within the merge (merge.c,
 * storage_merge_sink), never copied or summed first. */
int storage_scan_window_parts(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                              int res, int64_t from_s, int64_t until_s, storage_parts_fn fn,
                              void *ctx);

/* --- block values, version 3: fixed-width columns (sparse_cols.c) --------- */

/* Pairs to encode: (id[i], val[i]) for i < n, ids ascending; with id NULL,
 * a dense vector (val[i] is id i's). Zero values are left out. */
typedef struct storage_cols_src {
    const uint32_t *id;
    const int64_t *val;
    size_t n;
} storage_cols_src_t;
/* A checked version-3 block: its header, and its columns (borrowed from
 * the block's bytes). */
typedef struct storage_cols {
    uint64_t scale, n, first, last;
    unsigned wi, wv, positive; /* positive: values stored as value / scale - 1 */
    const uint8_t *gaps, *vals;
} storage_cols_t;
/* Appends the version-3 encoding of src's non-zero pairs. */
int storage_cols_encode(const storage_cols_src_t *src, buf_t *out);
/* Checks a whole version-3 block (header, exact length, ids that ascend
 * from first to last); 0 and c filled, or ERR_CORRUPT. */
int storage_cols_parse(const uint8_t *p, size_t len, storage_cols_t *c);
/* dense[id] += value for every pair of a parsed block (dense holds at
 * least c->last + 1 entries). */
void storage_cols_add(const storage_cols_t *c, int64_t *dense);
/* The pairs of a parsed block into ids[0..n) and vals[0..n). */
void storage_cols_decode(const storage_cols_t *c, uint32_t *ids, int64_t *vals);

/* --- stack-node tables (nodetab.c) ------------------------------------------ */

/* Stack-node ids per `nodes` value. */
#define NODETAB_CHUNK 1024u
/* token|tenant|chunk(u32 big-endian); a chunk number's first byte is always 0 */
void storage_key_node(skey_t *k, uint64_t token, const char *tenant, uint32_t chunk);
/* Byte after token|tenant that starts the per-node edge index entries
 * (after every chunk): token|tenant|NODETAB_EDGE_TAG|parent(u32
 * big-endian)|sym(u64 big-endian), value uvarint node id. Formats 7 to 18
 * indexed every node so (the next write to such a table deletes them);
 * format 19 only the children of a parent that its bucket marks spilled. */
#define NODETAB_EDGE_TAG 0x01
void storage_key_node_edge(skey_t *k, uint64_t token, const char *tenant, uint32_t parent,
                           uint64_t sym);
/* Byte after token|tenant that starts the edge index (format 19): one key
 * per bucket of NODETAB_BUCKET_PARENTS consecutive parent ids,
 * token|tenant|NODETAB_BUCKET_TAG|bucket(u32 big-endian), whose value lists
 * the nodes whose parent lies in the bucket, as records: uvarint (parent -
 * the bucket's first id), the symbol (8 bytes little-endian), uvarint
 * (node id - parent); a record of symbol 0 and delta 0 marks the parent
 * spilled: its children past those listed are per-node entries. */
#define NODETAB_BUCKET_TAG 0x02
#define NODETAB_BUCKET_SHIFT 8
#define NODETAB_BUCKET_PARENTS (1u << NODETAB_BUCKET_SHIFT)
/* Children of one parent a bucket lists at most: a write that would take a
 * parent past it puts its children as per-node entries and marks it
 * spilled, so a bucket stays a few KiB however wide a call tree fans out
 * (a dispatcher, a JIT's generated frames) and a lookup reads what it needs. */
#define NODETAB_BUCKET_FANOUT 16
void storage_key_node_bucket(skey_t *k, uint64_t token, const char *tenant, uint32_t bucket);
/* Calls fn for every record of the edge index of (token, tenant) on disk
 * (checks and tests): ERR_CORRUPT on a value that does not parse, else
 * fn's first non-zero return, else 0. */
typedef int (*storage_edge_fn)(void *ctx, uint32_t parent, uint64_t sym, uint32_t child);
int storage_nodetab_index_each(storage_t *s, uint64_t token, const char *tenant, storage_edge_fn fn,
                               void *ctx);
int storage_nodetab_cache_init(storage_t *s, size_t max_bytes);
void storage_nodetab_cache_free(storage_t *s);
/* The cache's bytes held, its bound and the tables evicted so far (a
 * snapshot, under its mutex), for storage_stats. */
void storage_nodetab_cache_stats(storage_t *s, uint64_t *bytes, uint64_t *max_bytes,
                                 uint64_t *evictions);
/* The WHOLE table of (token, tenant) (every id's parent and symbol in
 * memory, for readers), loaded on a miss, returned LOCKED with a reference;
 * every acquire is paired with one storage_nodetab_release. Writers that
 * need several tables acquire them in ascending token order. */
int storage_nodetab_acquire(storage_t *s, uint64_t token, const char *tenant, nodetab_t **out,
                            errmsg_t *em);
/* The same for a writer: the cached table as it is, or on a miss a partial
 * one (its last chunk only; the rest is looked up in the edge index by
 * storage_nodetab_child) when the table is indexed, else the whole table. Only child, other, stage,
 * count, prefetch and token may be used on it. */
int storage_nodetab_acquire_append(storage_t *s, uint64_t token, const char *tenant,
                                   nodetab_t **out, errmsg_t *em);
/* 1 when every id of t is in memory (always after storage_nodetab_acquire). */
int storage_nodetab_whole(const nodetab_t *t);
/* Unlocks and drops the reference. failed != 0: a batch carrying new ids did
 * not commit, so the table is emptied in place (it stays the one object of
 * its token) and the next holder reloads it from disk. */
void storage_nodetab_release(storage_t *s, nodetab_t *t, int failed);
/* Id of the child (parent, sym). A new id is created (in memory) when wb is
 * not NULL; with wb NULL an unknown child is ERR_NOT_FOUND. ERR_LIMIT past
 * the max_stack_nodes option (then see storage_nodetab_other). A partial
 * table reads the edge index (ERR_IO, ERR_CORRUPT). Table lock held. */
int storage_nodetab_child(storage_t *s, nodetab_t *t, uint32_t parent, uint64_t sym,
                          rocksdb_writebatch_t *wb, uint32_t *out);
/* storage_nodetab_child with wb NULL for n pairs at once: out[i] is the
 * id of (parent[i], sym[i]), or UINT32_MAX when the table has no such
 * node. A partial table reads the index entries it does not hold in
 * batches (one MultiGet each, where storage_nodetab_child makes a point
 * lookup each). Table lock held; ERR_IO, ERR_CORRUPT, ERR_NOMEM. */
int storage_nodetab_children(storage_t *s, nodetab_t *t, size_t n, const uint32_t *parent,
                             const uint64_t *sym, uint32_t *out);
/* Hints the CPU to fetch the hash slot of (parent, sym): mapping a tree is a
 * stream of independent cache misses, so issuing them ahead overlaps them. */
void storage_nodetab_prefetch(const nodetab_t *t, uint32_t parent, uint64_t sym);
/* Puts the chunks holding ids created since the last commit, and their edge
 * index entries when the table is indexed, into wb (tmp is scratch); when
 * the table reaches node_index_min_nodes, every node's entry (and the mark
 * in its last chunk); for a table written by format 6, every chunk too. Call once per table, after
 * the last storage_nodetab_child of the batch; storage_nodetab_release(..., 0) after the batch
 * committed makes them durable. */
int storage_nodetab_stage(storage_t *s, nodetab_t *t, rocksdb_writebatch_t *wb, buf_t *tmp);
/* Where a node that storage_nodetab_child refused with ERR_LIMIT (the table
 * is full) goes instead: the "other" child (SYM_OTHER) of parent, created in
 * a reserve of max_stack_nodes / 64 ids past the limit, else the root's
 * "other" child (always room for it); a child of an "other" node is that
 * node. Values stay exact, only the shape below the fold is lost. Table
 * lock held; fails only with ERR_NOMEM, or reading a partial table. */
int storage_nodetab_other(storage_t *s, nodetab_t *t, uint32_t parent, uint32_t *out);
uint32_t storage_nodetab_count(const nodetab_t *t);
uint32_t storage_nodetab_parent(const nodetab_t *t, uint32_t id);
uint64_t storage_nodetab_sym(const nodetab_t *t, uint32_t id);
/* The parent and symbol arrays (count entries) of a whole table, for passes
 * over every id; valid while t is held. */
const uint32_t *storage_nodetab_parents(const nodetab_t *t);
const uint64_t *storage_nodetab_syms(const nodetab_t *t);
/* The symbol index of a whole table: *symno (count entries) gives each id's
 * symbol as a dense number below *nsyms (0.. in order of first use; ids of
 * one symbol share its number), so a pass over ids can number symbols
 * through an array. Built in memory on the first call (nothing stored) and
 * extended to the ids added since at each later one; a table reloaded
 * (after a failed batch or once shed) numbers afresh. Valid while t is held.
 * Table lock held; ERR_NOMEM. */
int storage_nodetab_symnos(nodetab_t *t, const uint32_t **symno, uint32_t *nsyms);
uint64_t storage_nodetab_token(const nodetab_t *t);

/* --- shard unions (union.c) ------------------------------------------------ */

int storage_union_cache_init(storage_t *s, size_t max_bytes);
void storage_union_cache_free(storage_t *s);
/* The cache's counters and bytes held (a snapshot), for storage_stats. */
void storage_union_cache_stats(storage_t *s, storage_stats_t *out);
/* The union of tenant's tables of tokens (n of them, ascending, distinct),
 * LOCKED with a reference: pair with storage_union_release. ids: the
 * tables' ids added up (about); ERR_LIMIT (nothing held) when their maps
 * alone would not fit the cache's bound, or the union was found too large
 * before in this generation; ERR_NOMEM. */
int storage_union_acquire(storage_t *s, const char *tenant, const uint64_t *tokens, size_t n,
                          size_t ids, nodeunion_t **out);
/* Unlocks and drops the reference; failed != 0 (an extension failed
 * midway) empties it, to be built afresh; STORAGE_UNION_TOO_LARGE (its
 * extension passed the bound: ERR_LIMIT) drops it and refuses it at once
 * until the generation moves. */
#define STORAGE_UNION_FAILED 1
#define STORAGE_UNION_TOO_LARGE 2
void storage_union_release(storage_t *s, nodeunion_t *u, int failed);
/* Extends u to every id of t, the whole table of u's token i (held), and
 * gives *map: the union node of each of its ids (storage_nodetab_count
 * entries; valid while u is held). ERR_NOMEM, ERR_LIMIT (past the cache's
 * bound, or 2^32 nodes),
 * ERR_CORRUPT (the table holds fewer ids than before and no generation
 * says it was emptied). */
int storage_union_map(nodeunion_t *u, size_t i, const nodetab_t *t, const uint32_t **map);
/* The union's nodes (count; node 0 the root, parents before children):
 * each one's parent, symbol, and symbol number (below *nsyms, the root's
 * 0). Valid while u is held. */
size_t storage_union_count(const nodeunion_t *u);
/* The storage_node_generation u was built in (its maps hold for it). */
uint64_t storage_union_generation(const nodeunion_t *u);
/* u's nonce: never 0, the same while u is only extended (its ids a stable
 * prefix of what they become), a new one whenever u is built afresh (a
 * new generation, a failed extension) or made again after it was dropped,
 * and never one another union had, in this process or another. Valid
 * while u is held. */
uint64_t storage_union_nonce(const nodeunion_t *u);
const uint32_t *storage_union_parents(const nodeunion_t *u);
const uint64_t *storage_union_syms(const nodeunion_t *u);
const uint32_t *storage_union_symnos(const nodeunion_t *u, uint32_t *nsyms);
/* The union's distinct symbols, by number (*n of them). */
const uint64_t *storage_union_symbols(const nodeunion_t *u, size_t *n);

/* --- symbol name cache (symcache.c) ---------------------------------------- */

int storage_symcache_init(symcache_t *c, size_t max_bytes);
void storage_symcache_free(symcache_t *c);
/* A batch lookup's answer for one id: hit 1 and the symbol at names->data +
 * off (name, NUL, file, NUL), or hit 0 when it is not cached. */
typedef struct symcache_hit {
    uint32_t off, name_len, file_len, hit;
    uint64_t file_hash; /* hash_bytes64 of the file up to its first NUL (symtab_put_hashed) */
    uint32_t file_used; /* that length */
} symcache_hit_t;
#define SYMCACHE_BATCH 256
/* Looks up n <= SYMCACHE_BATCH ids at once, each shard locked once and the
 * misses of its probes overlapped; the symbols found are copied into names
 * (reset first; the caller's, with its own maximum), hits[i] says where.
 * 0, ERR_INVALID_ARGUMENT (n too large), ERR_NOMEM or ERR_TOO_LARGE. */
int storage_symcache_get_many(symcache_t *c, uint64_t tenant_hash, const uint64_t *ids, size_t n,
                              symcache_hit_t *hits, buf_t *names);
void storage_symcache_put(symcache_t *c, uint64_t tenant_hash, uint64_t id, const char *name,
                          size_t name_len, const char *file, size_t file_len);

/* --- caches --------------------------------------------------------------- */

int storage_idcache_init(idcache_t *c, size_t slots);
void storage_idcache_free(idcache_t *c);
int storage_idcache_has(idcache_t *c, uint64_t key);
/* Starts loading key's slot into the cache, for a storage_idcache_has soon after. */
void storage_idcache_prefetch(const idcache_t *c, uint64_t key);
void storage_idcache_add(idcache_t *c, uint64_t key);
void storage_idcache_clear(idcache_t *c);
uint64_t storage_mix64(uint64_t x);

#endif
