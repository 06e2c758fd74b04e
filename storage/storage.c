/* storage.c — opening, configuring and closing the RocksDB instance, plus the
 * module's small services: the error boundary, the clock, the id caches,
 * disk usage, stats, compaction and checkpoints.
 *
 * Memory is bounded by two settings: block_cache_bytes (one LRU cache shared
 * by every column family, which also holds index and filter blocks) and
 * write_buffer_bytes (split between the column families' memtables by weight,
 * at most two memtables each, and enforced as a whole by RocksDB's
 * db_write_buffer_size, which flushes the largest memtable when the total is
 * reached).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "storage/storage_int.h"

const uint32_t storage_resolutions[STORAGE_RESOLUTION_COUNT] = {10, 60, 600, 3600, 86400};

enum merge_kind { MERGE_NONE, MERGE_SPANS, MERGE_I64, MERGE_SPARSE, MERGE_WPROF };

/* How each column family is tuned. weight: share of the memtable budget
 * (0 = the 1 MiB minimum). bloom: point lookups happen there. block_kib:
 * RocksDB data block size; larger blocks let zstd compress a value against
 * its neighbours (a series' consecutive windows, its profiles' trees) at
 * the price of more bytes decompressed per block read (docs/benchmarks.md).
 * dict: the bottommost level is compressed with a zstd dictionary of
 * node-table-dict-bytes (node tables: the 8-byte symbol ids a chunk lists
 * repeat across chunks and across the shards of a service). */
static const struct cf_spec {
    const char *name;
    int compression;
    int bloom;
    enum merge_kind merge;
    unsigned weight;
    unsigned block_kib;
    int dict;
} cf_specs[CF_COUNT] = {
    [CF_DEFAULT] = {"default", rocksdb_no_compression, 0, MERGE_NONE, 0, 16, 0},
    [CF_SERIES] = {"series", rocksdb_lz4_compression, 1, MERGE_NONE, 1, 16, 0},
    [CF_POSTINGS] = {"postings", rocksdb_lz4_compression, 0, MERGE_NONE, 1, 16, 0},
    [CF_BLOCKS] = {"blocks", rocksdb_zstd_compression, 0, MERGE_SPARSE, 4, 128, 0},
    [CF_TOTALS] = {"totals", rocksdb_lz4_compression, 0, MERGE_I64, 1, 16, 0},
    [CF_SYMBOLS] = {"symbols", rocksdb_zstd_compression, 1, MERGE_NONE, 1, 32, 0},
    [CF_SPANS] = {"spans", rocksdb_zstd_compression, 0, MERGE_SPANS, 2, 16, 0},
    [CF_PROFILES] = {"profiles", rocksdb_lz4_compression, 1, MERGE_NONE, 1, 16, 0},
    [CF_META] = {"meta", rocksdb_no_compression, 0, MERGE_NONE, 0, 16, 0},
    [CF_HINTS] = {"hints", rocksdb_lz4_compression, 0, MERGE_NONE, 0, 16, 0},
    /* bloom: index misses */
    [CF_NODES] = {"nodes", rocksdb_zstd_compression, 1, MERGE_NONE, 1, 16, 1},
    [CF_PTREES] = {"profile_trees", rocksdb_zstd_compression, 1, MERGE_NONE, 1, 32, 0},
    [CF_STREAMED] = {"streamed", rocksdb_lz4_compression, 1, MERGE_NONE, 0, 16, 0},
    [CF_SPAN_INDEX] = {"span_index", rocksdb_lz4_compression, 0, MERGE_NONE, 1, 16, 0},
    [CF_ANCHORS] = {"anchors", rocksdb_lz4_compression, 1, MERGE_NONE, 0, 16, 0},
    [CF_PSPAN_INDEX] = {"profile_span_index", rocksdb_lz4_compression, 0, MERGE_NONE, 1, 16, 0},
    [CF_WPROFILES] = {"window_profiles", rocksdb_lz4_compression, 0, MERGE_WPROF, 1, 16, 0},
};

#define MIB ((size_t)1 << 20)
#define MEMTABLES_PER_CF 2
/* A hot window folds its memtable operands into one value every this many
 * merges, so reading the last hour does not re-merge every push. */
#define MAX_SUCCESSIVE_MERGES 64
/* At most this many LSM levels get a compression of their own (RocksDB's
 * default is 7). */
#define STORAGE_MAX_LEVELS 16

void storage_options_default(storage_options_t *o)
{
    static const int64_t day = 86400;
    memset(o, 0, sizeof *o);
    o->block_cache_bytes = 256 * MIB;
    o->write_buffer_bytes = 256 * MIB;
    o->node_cache_bytes = 128 * MIB;
    o->union_cache_bytes = 16 * MIB;
    o->retention_seconds[0] = day;
    o->retention_seconds[1] = 7 * day;
    o->retention_seconds[2] = 30 * day;
    o->retention_seconds[3] = 90 * day;
    o->retention_seconds[4] = 0;
    o->seen_retention_seconds = 7 * day;
    o->span_retention_seconds = day;
    o->profile_retention_seconds = 7 * day;
    o->max_profile_tree_bytes = MIB;
    o->stream_window_max_profiles = STORAGE_STREAM_WINDOW_MAX_PROFILES;
    o->max_background_jobs = 2;
    o->max_open_files = -1;
    o->rocksdb_log_level = STORAGE_ROCKSDB_LOG_HEADER;
    o->max_stack_nodes = STORAGE_MAX_STACK_NODES;
    o->node_index_min_nodes = 0; /* from STORAGE_NODE_INDEX_MIN_NODES, once not read whole */
    o->node_whole_read_percent = STORAGE_NODE_WHOLE_READ_PERCENT;
    o->window_successive_merges = STORAGE_WINDOW_SUCCESSIVE_MERGES;
    o->total_successive_merges = STORAGE_TOTAL_SUCCESSIVE_MERGES;
    o->window_fold_interval_seconds = STORAGE_WINDOW_FOLD_INTERVAL;
    o->window_fold_batch_bytes = STORAGE_FOLD_BATCH_BYTES;
    o->aggregate_anchors = STORAGE_AGGREGATE_ANCHORS;
    o->node_table_dict_bytes = STORAGE_NODE_TABLE_DICT_BYTES;
    o->max_span_nodes = 65536;
    o->max_span_members = STORAGE_MAX_SPAN_MEMBERS;
    o->window_profile_ids = STORAGE_WINDOW_PROFILE_IDS;
    o->series_gc_interval_seconds = 3600;
}

size_t storage_options_share_node_cache(storage_options_t *o, size_t stack_cache_bytes)
{
    size_t quarter = o->node_cache_bytes / 4;
    if (stack_cache_bytes > quarter) stack_cache_bytes = quarter;
    if (o->union_cache_bytes > quarter) o->union_cache_bytes = quarter;
    o->node_cache_bytes -= stack_cache_bytes + o->union_cache_bytes;
    return stack_cache_bytes;
}

/* --- small services ------------------------------------------------------ */

int storage_rocks_err(char *err, errmsg_t *em, const char *what)
{
    if (err == NULL) return 0;
    log_error("storage", "%s: %s", what, err);
    errmsg_set(em, ERR_IO, "%s: %s", what, err);
    free(err);
    return ERR_IO;
}

int storage_check_tenant(const char *tenant, errmsg_t *em)
{
    size_t n = tenant != NULL ? strlen(tenant) : 0;
    if (n == 0 || n > STORAGE_TENANT_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "tenant must be 1..%d bytes, got %zu",
                          STORAGE_TENANT_MAX, n);
    return 0;
}

void storage_set_clock(storage_t *s, const clock_source_t *c)
{
    s->clock = c != NULL ? *c : clock_real();
}

int64_t storage_now(const storage_t *s)
{
    return clock_wall_s(&s->clock);
}

uint64_t storage_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int storage_idcache_init(idcache_t *c, size_t slots)
{
    c->slots = calloc(slots, sizeof *c->slots);
    c->mask = slots - 1;
    return c->slots != NULL ? 0 : ERR_NOMEM;
}

void storage_idcache_free(idcache_t *c)
{
    free(c->slots);
    c->slots = NULL;
}

static uint64_t idcache_key(uint64_t key)
{
    return key != 0 ? key : 1; /* 0 marks an empty slot */
}

int storage_idcache_has(idcache_t *c, uint64_t key)
{
    key = idcache_key(key);
    return atomic_load_explicit(&c->slots[key & c->mask], memory_order_relaxed) == key;
}

void storage_idcache_prefetch(const idcache_t *c, uint64_t key)
{
    __builtin_prefetch(&c->slots[idcache_key(key) & c->mask]);
}

void storage_idcache_add(idcache_t *c, uint64_t key)
{
    key = idcache_key(key);
    atomic_store_explicit(&c->slots[key & c->mask], key, memory_order_relaxed);
}

void storage_idcache_clear(idcache_t *c)
{
    for (size_t i = 0; i <= c->mask; i++)
        atomic_store_explicit(&c->slots[i], 0, memory_order_relaxed);
}

/* --- options -------------------------------------------------------------- */

static rocksdb_block_based_table_options_t *table_options(storage_t *s, const struct cf_spec *sp)
{
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_block_based_options_set_block_size(t, (size_t)sp->block_kib * 1024);
    if (sp->bloom) /* the table options take ownership of the policy */
        rocksdb_block_based_options_set_filter_policy(t,
                                                      rocksdb_filterpolicy_create_bloom_full(10));
    return t;
}

static size_t memtable_size(const storage_options_t *o, unsigned weight)
{
    unsigned total = 0;
    for (int i = 0; i < CF_COUNT; i++)
        total += cf_specs[i].weight;
    size_t unit = o->write_buffer_bytes / ((size_t)MEMTABLES_PER_CF * total);
    size_t n = unit * weight;
    return n < MIB ? MIB : n;
}

/* The bottommost level's zstd dictionary of dict_bytes, trained on up to
 * STORAGE_DICT_TRAIN_FACTOR times as many bytes of the file's data blocks,
 * which the compaction buffers (and no more) before it writes them; zstd
 * level STORAGE_DICT_ZSTD_LEVEL (the training costs more than the level). */
static void set_dictionary(rocksdb_options_t *o, size_t dict_bytes)
{
    size_t train = dict_bytes * STORAGE_DICT_TRAIN_FACTOR;
    rocksdb_options_set_bottommost_compression_options(o, -14, STORAGE_DICT_ZSTD_LEVEL, 0,
                                                       (int)dict_bytes, 1);
    rocksdb_options_set_bottommost_compression_options_zstd_max_train_bytes(o, (int)train, 1);
    rocksdb_options_set_bottommost_compression_options_max_dict_buffer_bytes(o, train, 1);
}

size_t storage_dict_train_memory_bytes(const storage_options_t *o)
{
    size_t jobs = o->max_background_jobs > 0 ? (size_t)o->max_background_jobs : 2;
    size_t flushes = jobs / 4 > 0 ? jobs / 4 : 1;
    size_t compactions = jobs > flushes ? jobs - flushes : 1;
    return o->node_table_dict_bytes * STORAGE_DICT_TRAIN_FACTOR * compactions;
}

/* A zstd family's flushes (level 0) are written with lz4: a level-0 file
 * lives until the next compaction rewrites it with zstd (and the
 * bottommost level's dictionary), so compressing it harder than that costs
 * the flush thread CPU on every memtable and saves no lasting byte. */
static void set_flush_lz4(rocksdb_options_t *o)
{
    int levels[STORAGE_MAX_LEVELS];
    int n = rocksdb_options_get_num_levels(o);
    if (n <= 1 || n > STORAGE_MAX_LEVELS) return; /* one level: every file is bottommost */
    levels[0] = rocksdb_lz4_compression;
    for (int i = 1; i < n; i++)
        levels[i] = rocksdb_zstd_compression;
    rocksdb_options_set_compression_per_level(o, levels, (size_t)n);
}

static rocksdb_options_t *cf_options(storage_t *s, enum storage_cf cf)
{
    const struct cf_spec *sp = &cf_specs[cf];
    rocksdb_options_t *o = rocksdb_options_create_copy(s->db_opts);
    rocksdb_block_based_table_options_t *t = table_options(s, sp);
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    rocksdb_options_set_compression(o, sp->compression);
    if (sp->compression == rocksdb_zstd_compression) set_flush_lz4(o);
    rocksdb_options_set_bottommost_compression(o, sp->compression == rocksdb_no_compression
                                                      ? rocksdb_no_compression
                                                      : rocksdb_zstd_compression);
    if (sp->dict && s->opts.node_table_dict_bytes > 0)
        set_dictionary(o, s->opts.node_table_dict_bytes);
    rocksdb_options_set_write_buffer_size(o, memtable_size(&s->opts, sp->weight));
    rocksdb_options_set_max_write_buffer_number(o, MEMTABLES_PER_CF);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    if (sp->merge != MERGE_NONE) { /* the options take ownership of the operator */
        rocksdb_options_set_merge_operator(
            o, sp->merge == MERGE_SPANS    ? storage_merge_spans_new(&s->counters)
               : sp->merge == MERGE_SPARSE ? storage_merge_sparse_new(&s->counters)
               : sp->merge == MERGE_WPROF  ? storage_merge_wprof_new(&s->counters)
                                           : storage_merge_i64_new(&s->counters));
        rocksdb_options_set_max_successive_merges(
            o, cf == CF_BLOCKS                         ? s->opts.window_successive_merges
               : cf == CF_TOTALS || cf == CF_WPROFILES ? s->opts.total_successive_merges
                                                       : MAX_SUCCESSIVE_MERGES);
    }
    s->filters[cf] = storage_filter_new(s, cf);
    if (s->filters[cf] != NULL) rocksdb_options_set_compaction_filter(o, s->filters[cf]);
    return o;
}

static void db_options(storage_t *s)
{
    const storage_options_t *o = &s->opts;
    rocksdb_options_t *d = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(d, 1);
    rocksdb_options_set_create_missing_column_families(d, 1);
    rocksdb_options_set_max_background_jobs(d, o->max_background_jobs > 0 ? o->max_background_jobs
                                                                          : 2);
    rocksdb_options_set_max_open_files(d, o->max_open_files != 0 ? o->max_open_files : -1);
    rocksdb_options_set_db_write_buffer_size(d, o->write_buffer_bytes);
    /* A WAL older than this forces the flush of the CFs that keep it alive. */
    rocksdb_options_set_max_total_wal_size(d, 2 * (uint64_t)o->write_buffer_bytes);
    /* A full disk must refuse writes, not abort: see rocksdb_log_level. */
    rocksdb_options_set_info_log_level(d, o->rocksdb_log_level);
    rocksdb_options_set_keep_log_file_num(d, 4);
    rocksdb_options_set_max_log_file_size(d, 16 * MIB);
    rocksdb_options_set_bytes_per_sync(d, MIB);
    s->db_opts = d;
}

/* --- open / close --------------------------------------------------------- */

/* mkdir -p: RocksDB creates only the last path component. */
static int make_dirs(const char *path, errmsg_t *em)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data directory path too long");
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return errmsg_set(em, ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
        *p = c;
        if (c == '\0') return 0;
    }
}

/* Earlier versions are upgraded in place: a version-4 directory lacks the
 * profile_trees column family, which open created (its profiles, written
 * without trees, are neither listed nor opened one by one); versions 4 and 5
 * lack the service aggregates, rebuilt here from the stored series before
 * the new marker is written (an interrupted rebuild runs again); version 6
 * lacks the stack-node edge index, which each table gets at its next write;
 * version 8 only lacks scaled profile trees, which older values never are;
 * version 9 lacks the aggregate anchors: its aggregates hold every member,
 * which the upgrade records for each before the marker is written; version
 * 10 only lacks trees kept in no block, which older trees never are;
 * version 11 lacks the profile span index, built from the stored span trees
 * before the marker is written; version 12 only lacks aggregates with more
 * than one anchor, and its anchor values (empty or one id) read as lists of
 * anchors; version 13 wrote blocks in sparse version 2, which every reader
 * still takes. */
static int put_format(storage_t *s, const char *key, size_t klen, errmsg_t *em)
{
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[CF_META], key, klen, STORAGE_FORMAT_VERSION,
                   strlen(STORAGE_FORMAT_VERSION), &err);
    return storage_rocks_err(err, em, "write format version");
}

static int is_version(const char *v, size_t len, const char *want)
{
    return v != NULL && len == strlen(want) && memcmp(v, want, len) == 0;
}

static int check_format(storage_t *s, errmsg_t *em)
{
    static const char key[] = "format_version";
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_META], key, sizeof key - 1, &len, &err);
    int rc = storage_rocks_err(err, em, "read format version");
    int pre6 = is_version(v, len, STORAGE_FORMAT_V4) || is_version(v, len, STORAGE_FORMAT_V5);
    int pre8 =
        pre6 || is_version(v, len, STORAGE_FORMAT_V6) || is_version(v, len, STORAGE_FORMAT_V7);
    int pre10 =
        pre8 || is_version(v, len, STORAGE_FORMAT_V8) || is_version(v, len, STORAGE_FORMAT_V9);
    /* 10 -> 11 needs nothing: a format-10 tree is never flagged, its
     * window's block holds it */
    int pre12 =
        pre10 || is_version(v, len, STORAGE_FORMAT_V10) || is_version(v, len, STORAGE_FORMAT_V11);
    /* 12 -> 13 needs nothing: a format-12 anchors value is a list of 0 or 1 */
    int pre14 = pre12 || is_version(v, len, STORAGE_FORMAT_V12);
    /* 13 -> 14 needs nothing: a format-13 window has no window_profiles
     * value and reads as not counted (wprofiles.c) */
    int pre15 = pre14 || is_version(v, len, STORAGE_FORMAT_V13);
    /* 14 -> 15 needs nothing: a format-14 block (sparse version 2) still
     * reads */
    int pre16 = pre15 || is_version(v, len, STORAGE_FORMAT_V14);
    /* 15 -> 16 needs nothing: a format-15 window_profiles value (whole
     * ids) still reads, and folds into the shorter layout */
    int pre17 = pre16 || is_version(v, len, STORAGE_FORMAT_V15);
    /* 16 -> 17 needs nothing: a format-16 block (zigzag values) still
     * reads, and a merge or compaction writes it anew */
    int pre18 = pre17 || is_version(v, len, STORAGE_FORMAT_V16);
    /* 17 -> 18 needs nothing: a format-17 piece was counted in no window
     * (which reads as not counted) and its profile tree has no flag */
    int pre19 = pre18 || is_version(v, len, STORAGE_FORMAT_V17);
    /* 18 -> 19 needs nothing: a table indexed per node reads as unindexed,
     * and its next write drops those entries (nodetab.c) */
    int older = pre19 || is_version(v, len, STORAGE_FORMAT_V18);
    if (rc == 0 && v != NULL && !older && !is_version(v, len, STORAGE_FORMAT_VERSION))
        rc = errmsg_set(em, ERR_UNSUPPORTED, "data directory has storage format %.*s, expected %s",
                        (int)(len < 16 ? len : 16), v, STORAGE_FORMAT_VERSION);
    /* 6 -> 7 needs nothing here: a table without an edge index is read
     * whole and indexed by its next write (nodetab.c) */
    if (rc == 0 && older)
        log_info("storage", "upgrading storage format %.*s to %s (%s)", (int)len, v,
                 STORAGE_FORMAT_VERSION,
                 pre12   ? "span trees indexed by token and by profile; stack-node tables are "
                           "indexed at their next write; windows count their profiles from now on"
                 : pre14 ? "windows count their profiles from now on"
                 : pre17 ? "windows list short profile ids from now on"
                 : pre18 ? "positive block values are written without a sign bit and pieces of "
                           "split pushes count once from now on; stack-node tables are indexed "
                           "in buckets at their next write"
                 : pre19 ? "pieces of split pushes count once from now on; stack-node tables are "
                           "indexed in buckets at their next write"
                         : "stack-node tables are indexed in buckets at their next write");
    if (rc == 0 && pre6) {
        log_info("storage", "rebuilding the service aggregates");
        rc = storage_aggregate_rebuild(s, em);
    }
    /* 7 -> 8: format-7 span values read as they are (one profile of
     * unknown id); their keys go into span_index */
    if (rc == 0 && pre8) rc = storage_span_index_rebuild(s, em);
    /* 8 -> 9 needs nothing: a format-8 profile tree is never scaled */
    /* 9 -> 10: every aggregate written before holds all its members */
    if (rc == 0 && pre10) rc = storage_anchor_upgrade(s, em);
    /* 11 -> 12: each stored span tree's members (and its unnamed
     * profiles) go into profile_span_index */
    if (rc == 0 && pre12) rc = storage_pspan_rebuild(s, em);
    if (rc == 0 && (v == NULL || older)) rc = put_format(s, key, sizeof key - 1, em);
    free(v);
    return rc;
}

static int open_db(storage_t *s, errmsg_t *em)
{
    const char *names[CF_COUNT];
    const rocksdb_options_t *opts[CF_COUNT];
    db_options(s);
    for (int i = 0; i < CF_COUNT; i++) {
        names[i] = cf_specs[i].name;
        s->cf_opts[i] = cf_options(s, (enum storage_cf)i);
        opts[i] = s->cf_opts[i];
    }
    char *err = NULL;
    s->db = rocksdb_open_column_families(s->db_opts, s->path, CF_COUNT, names, opts, s->cf, &err);
    if (err != NULL) s->db = NULL;
    return storage_rocks_err(err, em, "open");
}

static storage_t *storage_alloc(const storage_options_t *o)
{
    storage_t *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->opts = *o;
    s->counters.span_max_nodes = o->max_span_nodes; /* read by the spans merge operator */
    s->counters.span_max_members = o->max_span_members;
    s->counters.wprof_max_ids = o->window_profile_ids;
    s->path = strdup(o->path);
    storage_set_clock(s, NULL);
    for (int i = 0; i < STORAGE_STRIPES; i++)
        pthread_mutex_init(&s->stripes[i], NULL);
    pthread_mutex_init(&s->receiving.mu, NULL);
    pthread_mutex_init(&s->receiving.save_mu, NULL);
    pthread_mutex_init(&s->marks_mu, NULL);
    s->cache = rocksdb_cache_create_lru(o->block_cache_bytes);
    s->ropts = rocksdb_readoptions_create();
    s->wopts = rocksdb_writeoptions_create();
    if (s->wopts != NULL) rocksdb_writeoptions_set_sync(s->wopts, o->sync_writes ? 1 : 0);
    if (s->path == NULL || storage_range_receiving_init(s) != 0 || storage_symgc_init(s) != 0 ||
        storage_idcache_init(&s->symbol_cache, STORAGE_SYMBOL_CACHE_SLOTS) != 0 ||
        storage_idcache_init(&s->series_cache, STORAGE_SERIES_CACHE_SLOTS) != 0 ||
        /* node tables are the bigger and costlier to miss (a reload decodes
         * the whole table): three quarters of the budget */
        storage_nodetab_cache_init(s, o->node_cache_bytes / 4 * 3) != 0 ||
        storage_symcache_init(&s->symcache, o->node_cache_bytes / 4) != 0 ||
        storage_union_cache_init(s, o->union_cache_bytes) != 0) {
        storage_close(s);
        return NULL;
    }
    return s;
}

int storage_open(const storage_options_t *o, storage_t **out, errmsg_t *em)
{
    *out = NULL;
    if (o == NULL || o->path == NULL || o->path[0] == '\0')
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "storage: no data directory given");
    if (o->aggregate_anchors < 1 || o->aggregate_anchors > STORAGE_AGGREGATE_ANCHORS_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "storage: aggregate anchors %u not in 1..%d",
                          o->aggregate_anchors, STORAGE_AGGREGATE_ANCHORS_MAX);
    int rc = make_dirs(o->path, em);
    if (rc != 0) return rc;
    storage_t *s = storage_alloc(o);
    if (s == NULL) return errmsg_set(em, ERR_NOMEM, "storage: out of memory");
    rc = open_db(s, em);
    if (rc == 0) rc = check_format(s, em);
    if (rc == 0) rc = storage_range_receiving_load(s, em);
    if (rc == 0) rc = storage_hints_open(s, em);
    if (rc == 0 && storage_tseries_open(s) != 0)
        rc = errmsg_set(em, ERR_IO, "storage: cannot count the series per tenant");
    if (rc == 0 && storage_gc_start(s) != 0)
        rc = errmsg_set(em, ERR_INTERNAL, "storage: cannot start the series collector");
    if (rc == 0 && storage_fold_start(s) != 0)
        rc = errmsg_set(em, ERR_INTERNAL, "storage: cannot start the window fold");
    if (rc != 0) {
        storage_close(s);
        return rc;
    }
    log_info("storage", "opened %s (cache %zu MiB, memtables %zu MiB, max-open-files %d)", s->path,
             o->block_cache_bytes / MIB, o->write_buffer_bytes / MIB, o->max_open_files);
    *out = s;
    return 0;
}

int storage_sync_wal(storage_t *s, errmsg_t *em)
{
    char *err = NULL;
    rocksdb_flush_wal(s->db, 1, &err);
    return storage_rocks_err(err, em, "sync the write-ahead log");
}

static void flush_all(storage_t *s)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < CF_COUNT; i++) {
        char *err = NULL;
        rocksdb_flush_cf(s->db, fo, s->cf[i], &err);
        storage_rocks_err(err, NULL, "flush on close");
    }
    rocksdb_flushoptions_destroy(fo);
}

/* Order matters: the DB goes first (it still calls merge operators and
 * filters), then the options (which own the merge operators), then the
 * filters and the cache, and the handle last (operators point into it). */
void storage_close(storage_t *s)
{
    if (s == NULL) return;
    storage_fold_stop(s);
    storage_gc_stop(s);
    if (s->db != NULL) {
        flush_all(s);
        rocksdb_cancel_all_background_work(s->db, 1);
        for (int i = 0; i < CF_COUNT; i++)
            if (s->cf[i] != NULL) rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
        log_info("storage", "closed %s", s->path);
    }
    for (int i = 0; i < CF_COUNT; i++)
        if (s->cf_opts[i] != NULL) rocksdb_options_destroy(s->cf_opts[i]);
    if (s->db_opts != NULL) rocksdb_options_destroy(s->db_opts);
    for (int i = 0; i < CF_COUNT; i++)
        if (s->filters[i] != NULL) rocksdb_compactionfilter_destroy(s->filters[i]);
    if (s->cache != NULL) rocksdb_cache_destroy(s->cache);
    if (s->ropts != NULL) rocksdb_readoptions_destroy(s->ropts);
    if (s->wopts != NULL) rocksdb_writeoptions_destroy(s->wopts);
    storage_idcache_free(&s->symbol_cache);
    storage_idcache_free(&s->series_cache);
    storage_tseries_close(s);
    storage_nodetab_cache_free(s);
    storage_union_cache_free(s);
    storage_symcache_free(&s->symcache);
    storage_symgc_free(s);
    storage_hints_free(s);
    for (int i = 0; i < STORAGE_STRIPES; i++)
        pthread_mutex_destroy(&s->stripes[i]);
    pthread_mutex_destroy(&s->receiving.mu);
    pthread_mutex_destroy(&s->receiving.save_mu);
    pthread_mutex_destroy(&s->marks_mu);
    free(s->receiving.lo);
    free(s->receiving.hi);
    free(s->path);
    free(s);
}

/* --- sizes, stats, compaction, checkpoints -------------------------------- */

/* Bytes of write-ahead log files (*.log) in the data directory. */
static uint64_t wal_bytes(const char *path)
{
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    struct dirent *e;
    char file[4096];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".log") != 0) continue;
        struct stat st;
        if (snprintf(file, sizeof file, "%s/%s", path, e->d_name) < (int)sizeof file &&
            stat(file, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

static uint64_t sum_property(storage_t *s, const char *name)
{
    uint64_t total = 0;
    for (int i = 0; i < CF_COUNT; i++) {
        uint64_t v = 0;
        if (rocksdb_property_int_cf(s->db, s->cf[i], name, &v) == 0) total += v;
    }
    return total;
}

int storage_disk_usage(storage_t *s, uint64_t *bytes)
{
    *bytes = sum_property(s, "rocksdb.total-sst-files-size") + wal_bytes(s->path);
    return 0;
}

_Static_assert(CF_COUNT - 1 <= STORAGE_STATS_MAX_CFS, "storage_stats_t holds every column family");

void storage_sst_bytes_by_cf(storage_t *s, storage_cf_bytes_t *out, size_t cap, size_t *n)
{
    *n = 0;
    for (int i = 0; i < CF_COUNT && *n < cap; i++) {
        if (i == CF_DEFAULT) continue; /* unused */
        uint64_t v = 0;
        if (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.total-sst-files-size", &v) != 0)
            v = 0;
        out[(*n)++] = (storage_cf_bytes_t){.cf = cf_specs[i].name, .bytes = v};
    }
}

/* "Cumulative WAL: W writes, S syncs, ..." of RocksDB's DB stats (since open). */
static void wal_counts(storage_t *s, uint64_t *writes, uint64_t *syncs)
{
    *writes = *syncs = 0;
    char *st = rocksdb_property_value(s->db, "rocksdb.dbstats");
    const char *p = st != NULL ? strstr(st, "Cumulative WAL:") : NULL;
    unsigned long long w, y;
    if (p != NULL && sscanf(p, "Cumulative WAL: %llu writes, %llu syncs", &w, &y) == 2) {
        *writes = w;
        *syncs = y;
    }
    rocksdb_free(st);
}

int storage_stats(storage_t *s, storage_stats_t *out)
{
    memset(out, 0, sizeof *out);
    storage_disk_usage(s, &out->disk_bytes);
    storage_sst_bytes_by_cf(s, out->sst_bytes, STORAGE_STATS_MAX_CFS, &out->ncfs);
    out->memtable_bytes = sum_property(s, "rocksdb.cur-size-all-mem-tables");
    out->block_cache_bytes = rocksdb_cache_get_usage(s->cache);
    out->corrupt_operands = atomic_load(&s->counters.corrupt_operands);
    out->expired_windows = atomic_load(&s->counters.filtered_windows);
    out->expired_seen = atomic_load(&s->counters.filtered_seen);
    out->expired_spans = atomic_load(&s->counters.filtered_spans);
    out->expired_ptrees = atomic_load(&s->counters.filtered_ptrees);
    out->oversize_ptrees = atomic_load(&s->counters.oversize_ptrees);
    out->duplicate_series = atomic_load(&s->counters.duplicates);
    out->series_written = atomic_load(&s->counters.series_written);
    out->folded_stacks = atomic_load(&s->counters.folded_stacks);
    out->capped_spans = atomic_load(&s->counters.capped_spans);
    out->span_dropped = atomic_load(&s->counters.span_dropped);
    wal_counts(s, &out->wal_writes, &out->wal_syncs);
    out->gc_series = atomic_load(&s->counters.gc_series);
    out->node_table_loads = atomic_load(&s->counters.nodetab_loads);
    out->node_table_misses = atomic_load(&s->counters.nodetab_misses);
    out->node_table_index_reads = atomic_load(&s->counters.nodetab_index_reads);
    out->node_table_whole_reads = atomic_load(&s->counters.nodetab_whole_reads);
    out->node_table_hits = atomic_load(&s->counters.nodetab_hits);
    storage_nodetab_cache_stats(s, &out->node_cache_bytes, &out->node_cache_limit,
                                &out->node_table_evictions);
    out->gc_nodetabs = atomic_load(&s->counters.gc_nodetabs);
    out->gc_symbols = atomic_load(&s->counters.gc_symbols);
    out->folded_windows = atomic_load(&s->counters.folded_windows);
    storage_union_cache_stats(s, out);
    return 0;
}

/* Forcing the bottommost level through compaction makes retention filters
 * and merge folding see every key, so sizes measured afterwards are settled. */
int storage_compact(storage_t *s)
{
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_bottommost_level_compaction(co, 2 /* kForce */);
    rocksdb_compactoptions_set_exclusive_manual_compaction(co, 0);
    for (int i = 0; i < CF_COUNT; i++)
        rocksdb_compact_range_cf_opt(s->db, s->cf[i], co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
    return 0;
}

int storage_checkpoint(storage_t *s, const char *dir, errmsg_t *em)
{
    if (dir == NULL || dir[0] == '\0')
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "checkpoint: no directory given");
    char *err = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &err);
    int rc = storage_rocks_err(err, em, "checkpoint");
    if (rc != 0) return rc;
    /* log_size_for_flush 0: flush memtables so the checkpoint holds no WAL. */
    rocksdb_checkpoint_create(cp, dir, 0, &err);
    rc = storage_rocks_err(err, em, "checkpoint");
    rocksdb_checkpoint_object_destroy(cp);
    return rc;
}

/* flamedb_storage_sst_bytes{cf}: one series per column family (a fixed set). */
static int render_sst_bytes(const void *ctx, buf_t *out)
{
    const storage_stats_t *st = ctx;
    int rc = buf_append_str(out, "# HELP flamedb_storage_sst_bytes Bytes of SST files per column "
                                 "family (docs/storage-format.md says what each holds).\n"
                                 "# TYPE flamedb_storage_sst_bytes gauge\n");
    for (size_t i = 0; i < st->ncfs && rc == ERR_OK; i++)
        rc = buf_printf(out, "flamedb_storage_sst_bytes{cf=\"%s\"} %llu\n", st->sst_bytes[i].cf,
                        (unsigned long long)st->sst_bytes[i].bytes);
    return rc;
}

void storage_stats_register(metrics_registry_t *r, const storage_stats_t *st)
{
    static const metrics_u64_def_t defs[] = {
        {"flamedb_storage_disk_bytes", "Bytes on disk of the node's database (SST files and WAL).",
         METRICS_GAUGE, offsetof(storage_stats_t, disk_bytes)},
        {"flamedb_storage_memtable_bytes", "Bytes in RocksDB memtables.", METRICS_GAUGE,
         offsetof(storage_stats_t, memtable_bytes)},
        {"flamedb_storage_block_cache_bytes", "Bytes in the RocksDB block cache.", METRICS_GAUGE,
         offsetof(storage_stats_t, block_cache_bytes)},
        METRICS_U64_DEF(storage_stats_t, series_written, "flamedb_storage_series_written_total",
                        "Series writes committed by storage."),
        METRICS_U64_DEF(storage_stats_t, folded_stacks, "flamedb_storage_folded_stacks_total",
                        "Call-tree nodes written into an \"other\" node because their service "
                        "shard's stack-node table was full (max-stack-nodes)."),
        METRICS_U64_DEF(storage_stats_t, node_table_loads, "flamedb_storage_node_table_loads_total",
                        "Stack-node tables read whole from disk: cache misses (node-cache-bytes) "
                        "of reads; a push reads only the chunks and index entries it needs."),
        METRICS_U64_DEF(storage_stats_t, node_table_hits, "flamedb_storage_node_cache_hits_total",
                        "Uses of a stack-node table (a push or a read) that found it in memory."),
        METRICS_U64_DEF(storage_stats_t, node_table_misses,
                        "flamedb_storage_node_cache_misses_total",
                        "Uses of a stack-node table that did not find it in memory and read it "
                        "from disk, whole or (a push) its last chunk; a first push of a service "
                        "shard counts too. Misses over hits plus misses above a few percent in "
                        "steady state: raise node-cache-bytes."),
        METRICS_U64_DEF(storage_stats_t, node_table_evictions,
                        "flamedb_storage_node_cache_evictions_total",
                        "Stack-node tables dropped from memory to stay within node-cache-bytes."),
        METRICS_U64_DEF(storage_stats_t, node_table_index_reads,
                        "flamedb_storage_node_index_reads_total",
                        "Reads of the stack-node tables' edge index (a Get or a MultiGet) by "
                        "pushes to tables not whole in memory."),
        METRICS_U64_DEF(storage_stats_t, node_table_whole_reads,
                        "flamedb_storage_node_table_whole_reads_total",
                        "Pushes that did not find an indexed stack-node table in memory and read "
                        "it whole, as it fits node-whole-read-percent of the cache's bound."),
        {"flamedb_storage_node_cache_bytes",
         "Bytes the stack-node tables cached in memory take (their symbol indexes included).",
         METRICS_GAUGE, offsetof(storage_stats_t, node_cache_bytes)},
        {"flamedb_storage_node_cache_limit_bytes",
         "The stack-node table cache's bound: three quarters of node-cache-bytes (the other "
         "quarter caches symbol names).",
         METRICS_GAUGE, offsetof(storage_stats_t, node_cache_limit)},
        METRICS_U64_DEF(storage_stats_t, union_builds, "flamedb_storage_union_builds_total",
                        "Shard unions built: by the first render over a set of a service's shards, "
                        "or afresh after a stack-node table was deleted or emptied."),
        METRICS_U64_DEF(storage_stats_t, union_hits, "flamedb_storage_union_hits_total",
                        "Renders over several shards that found their shard union in memory."),
        METRICS_U64_DEF(storage_stats_t, union_refused, "flamedb_storage_union_refused_total",
                        "Renders over several shards whose union would not fit union-cache-bytes "
                        "alone: they merged a forest per shard instead (raise union-cache-bytes)."),
        METRICS_U64_DEF(storage_stats_t, union_evictions, "flamedb_storage_union_evictions_total",
                        "Shard unions dropped from memory to stay within union-cache-bytes."),
        {"flamedb_storage_union_cache_bytes", "Bytes the shard unions in memory take.",
         METRICS_GAUGE, offsetof(storage_stats_t, union_cache_bytes)},
        METRICS_U64_DEF(storage_stats_t, gc_series, "flamedb_storage_gc_series_total",
                        "Series (with their postings) deleted because retention emptied them."),
        METRICS_U64_DEF(storage_stats_t, gc_nodetabs, "flamedb_storage_gc_node_tables_total",
                        "Stack-node tables deleted because no live block or profile tree used "
                        "them."),
        METRICS_U64_DEF(storage_stats_t, gc_symbols, "flamedb_storage_gc_symbols_total",
                        "Symbols deleted because no stack-node table or span tree named them."),
        METRICS_U64_DEF(storage_stats_t, folded_windows, "flamedb_storage_folded_windows_total",
                        "Block windows whose memtable operands the window fold put back as one "
                        "value after the window ended (window-fold-interval)."),
        METRICS_U64_DEF(storage_stats_t, wal_syncs, "flamedb_storage_wal_syncs_total",
                        "fsyncs of the write-ahead log since the node started (sync-writes)."),
        METRICS_U64_DEF(storage_stats_t, wal_writes, "flamedb_storage_wal_writes_total",
                        "Write batches written to the write-ahead log since the node started."),
        METRICS_U64_DEF(storage_stats_t, capped_spans, "flamedb_storage_capped_spans_total",
                        "Span or trace trees folded down to max-span-nodes (at write or merge)."),
        METRICS_U64_DEF(storage_stats_t, duplicate_series, "flamedb_storage_duplicate_series_total",
                        "Series writes skipped because (series, profile id) was already stored."),
        METRICS_U64_DEF(storage_stats_t, corrupt_operands, "flamedb_storage_corrupt_operands_total",
                        "Merge operands skipped because they did not decode."),
        METRICS_U64_DEF(storage_stats_t, expired_windows, "flamedb_storage_expired_windows_total",
                        "Block and total windows dropped by retention."),
        METRICS_U64_DEF(storage_stats_t, expired_seen, "flamedb_storage_expired_seen_total",
                        "Profile ids forgotten after seen-retention."),
        METRICS_U64_DEF(storage_stats_t, span_dropped,
                        "flamedb_storage_span_profiles_dropped_total",
                        "Profiles left out of a span or trace tree past max-span-members so "
                        "as never to count one twice (counted each time a merge meets them)."),
        METRICS_U64_DEF(storage_stats_t, expired_spans, "flamedb_storage_expired_spans_total",
                        "Span and trace trees dropped by span-retention."),
        METRICS_U64_DEF(storage_stats_t, expired_ptrees,
                        "flamedb_storage_expired_profile_trees_total",
                        "Single-profile trees dropped by profile-retention."),
        METRICS_U64_DEF(storage_stats_t, oversize_ptrees,
                        "flamedb_storage_oversize_profile_trees_total",
                        "Single-profile trees not kept: larger than max-profile-tree-bytes."),
    };
    metrics_add_u64_array(r, defs, sizeof defs / sizeof defs[0], st);
    metrics_add_render(r, render_sst_bytes, st);
}
