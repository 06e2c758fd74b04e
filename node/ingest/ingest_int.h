/* ingest_int.h — internals of the ingest module; included only inside node/ingest/.
 *
 * The module is split by concern:
 *   ingest.c            ingest_parse(): parameters -> body format -> parser -> result
 *   ingest_request.c    name parameter, times, sample rate, folded type suffix table
 *   ingest_types.c      profile-type names of pprof sample types
 *   ingest_gzip.c       bounded gunzip (libdeflate)
 *   ingest_multipart.c  multipart/form-data and the sample_type_config JSON part
 *   ingest_wire.c       zero-copy reader of the pprof protobuf wire format
 *   ingest_pprof.c      pprof conversion to call trees (reads through ingest_wire)
 *   ingest_folded.c     folded / lines text (incl. UTF-16 with BOM)
 *   ingest_series.c     the set of series one profile splits into, span trees, u64 map
 *   ingest_stackcache.c the stack cache: stacks of earlier pushes by content -> stack-node id
 * Everything here is per request, but for the stack cache (created and
 * freed by its owner, the node; a push borrows it): no other state
 * survives ingest_parse().
 */
#ifndef FLAMEDB_NODE_INGEST_INGEST_INT_H
#define FLAMEDB_NODE_INGEST_INGEST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/calltree.h"
#include "common/err.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "common/u64map.h"
#include "node/ingest/ingest.h"

/* ---- request parameters (ingest_request.c) ---- */

typedef enum { BODY_FOLDED = 0, BODY_LINES = 1, BODY_PPROF = 2 } body_format_t;

/* The profile type a folded/lines body gets from the last dot-segment of the
 * app name (see the table in ingest_request.c). */
typedef struct folded_type {
    const char *suffix;
    const char *name; /* __name__ */
    const char *sample_type, *sample_unit, *period_type, *period_unit;
    bool scaled; /* values are sample counts turned into ns by 1e9/sampleRate */
} folded_type_t;

typedef struct ingest_params {
    char *app;                 /* service name from the name parameter (owned) */
    labels_t *base;            /* name labels + service_name (+ pyroscope_spy); owned */
    const folded_type_t *type; /* from the name suffix (cpu when none) */
    int64_t sample_rate;       /* Hz; default 100 */
    int64_t from_ns, until_ns; /* 0 when absent */
    int64_t time_ns;           /* the time parameter; 0 when absent */
    body_format_t format;
    bool multipart;
} ingest_params_t;

int ingest_params_parse(const ingest_request_t *req, const ingest_limits_t *lim,
                        ingest_params_t *out, errmsg_t *em);
void ingest_params_free(ingest_params_t *p);
/* Parses `app{k=v,...}` into *app (caller frees) and user labels into l. */
int ingest_parse_name(const char *name, const ingest_limits_t *lim, char **app, labels_t *l,
                      errmsg_t *em);
/* Type selected by the last dot-segment of app; *app_len gets the service
 * name's length (the suffix stripped). Unknown or no suffix: cpu, app kept. */
const folded_type_t *ingest_folded_type(const char *app, size_t *app_len);
/* Parses a time given as unix s, ms, us or ns (by magnitude) into ns. */
int ingest_parse_time(const char *s, int64_t *ns);
/* True when s is a valid label name: [a-zA-Z_][a-zA-Z0-9_.]* */
bool ingest_label_name_valid(const char *s, size_t n);
/* True for the names Pyroscope reserves (__name__, __profile_type__, ...):
 * they are derived by the server, never taken from input. */
bool ingest_label_reserved(const char *s, size_t n);

/* ---- sample_type_config (ingest_multipart.c) ---- */

#define STC_MAX_ENTRIES 64
#define STC_MAX_STR 128

typedef struct stc_entry {
    char sample_type[STC_MAX_STR];
    char display_name[STC_MAX_STR];
    char units[STC_MAX_STR];
} stc_entry_t;

typedef struct stc {
    stc_entry_t e[STC_MAX_ENTRIES];
    size_t n;
} stc_t;

int ingest_stc_parse(const uint8_t *json, size_t len, stc_t *out, errmsg_t *em);
const stc_entry_t *ingest_stc_find(const stc_t *c, const char *st, size_t n);

typedef struct multipart_parts {
    const uint8_t *profile;
    size_t profile_len;
    const uint8_t *config; /* sample_type_config or NULL */
    size_t config_len;
} multipart_parts_t;

int ingest_multipart(const uint8_t *body, size_t len, const char *content_type,
                     multipart_parts_t *out, errmsg_t *em);

/* ---- gzip (ingest_gzip.c) ---- */

static inline bool ingest_is_gzip(const uint8_t *p, size_t n)
{
    return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}
/* Gunzips in[0..n) into a malloc'd buffer of at most max bytes (*out, caller
 * frees). ERR_TOO_LARGE past max, ERR_UNPARSEABLE on corrupt data. */
int ingest_gunzip(const uint8_t *in, size_t n, size_t max, uint8_t **out, size_t *out_len,
                  errmsg_t *em);

/* ---- the stack cache (ingest_stackcache.c) ---- */

/* A stack's 128-bit content key: ingest_stack_key makes the part of its
 * frames and tenant, ingest_stack_key_at the key of it in one table. */
typedef struct stack_key {
    uint64_t k0, k1;
} stack_key_t;

/* stack[0..depth) are push symbol indices (ingest_series_sym_at) of symtab. */
void ingest_stack_key(stack_key_t *k, uint64_t tenant_hash, const symtab_t *symtab,
                      const uint32_t *stack, size_t depth);
void ingest_stack_key_at(stack_key_t *out, const stack_key_t *k, uint64_t token);
uint64_t ingest_stack_cache_gen(const ingest_stack_cache_t *c);
/* The id of key k in generation gen; false when not held. */
bool ingest_stack_cache_get(ingest_stack_cache_t *c, const stack_key_t *k, uint64_t gen,
                            uint32_t *id);
/* Asks the CPU to load the slots of key k (a hint: changes nothing; c may
 * be NULL), so a lookup of k a little later need not wait for memory. */
void ingest_stack_cache_prefetch(const ingest_stack_cache_t *c, const stack_key_t *k);
void ingest_stack_cache_put(ingest_stack_cache_t *c, const stack_key_t *k, uint64_t gen,
                            uint32_t id);

/* ---- the series of one profile (ingest_series.c) ---- */

/* The samples of one span or trace tree until ingest_series_finish makes
 * the tree: each sample's node in the series' tree (its leader's for a
 * shadow series, the same shape) and its value, in sample order. A shadow
 * series' span tree whose samples name the same nodes as its leader's tree
 * of that id is made from that tree's shape. */
typedef struct span_pending {
    uint32_t *node;
    int64_t *val;
    uint32_t *at; /* while a leader's tree is made: each sample's node in it */
    size_t n, cap;
} span_pending_t;

/* The span and trace trees of a series. Each is held as its encoding
 * (calltree_encode, v[i].enc: owned here, tree NULL) once made: made one
 * at a time at ingest_series_finish, encoded and freed, a span tree costs
 * the push a few bytes a node instead of 28 to 45 (storage and the
 * replicated write take the encoding as it is). */
typedef struct span_acc {
    storage_span_tree_t *v; /* encodings owned here (NULL until finished) */
    span_pending_t *pend;   /* per entry of v, until its tree is made */
    size_t n, cap;
    u64map_t index[2]; /* by id, per kind (SPAN, TRACE) */
    size_t tree_bytes; /* bytes of the pending samples and of the encodings */
    size_t charged;    /* bytes of the index and trees charged to the push */
} span_acc_t;

/* The last stack added to a tree (its frames' push symbol indices) and
 * its node path: consecutive samples often share a prefix, whose nodes
 * then need no lookup. */
typedef struct path_cache {
    uint32_t *syms;
    uint32_t *nodes;
    size_t depth, cap;
} path_cache_t;

/* A series tree's values while its nodes are made: each sample's node and
 * value in sample order (one entry for consecutive samples of one node),
 * added to the tree at ingest_series_finish. A tree of deep stacks has
 * many nodes per sample (a real CPU profile: 21), and these 12 bytes a
 * sample replace the 8 bytes a node (and its growth room) the tree would
 * hold; once they would hold more than that (a node or less per sample),
 * the tree is given its values and takes the next ones itself. */
typedef struct value_list {
    uint32_t *node;
    int64_t *val;
    size_t n, cap;
    bool on; /* the tree is valueless and its values are here */
} value_list_t;

/* The samples of a series given by stack-node id (the stack cache's hits):
 * the id and value of each, in sample order. */
typedef struct id_pairs {
    uint32_t *id;
    int64_t *val;
    size_t n, cap;
} id_pairs_t;

/* Stacks a series' tree got that the stack cache may learn once the write
 * maps the tree: each sample's leaf node and its stack's key (not yet of
 * a table: ingest_stack_key_at). */
typedef struct stack_learn {
    uint32_t *node;
    stack_key_t *key;
    size_t n, cap;
} stack_learn_t;

typedef struct ingest_series {
    labels_t *labels;
    size_t labels_bytes; /* labels_mem_bytes(labels) */
    size_t charged;      /* bytes of tree, labels, path and shadow charged to the push */
    uint64_t series_id, token;
    calltree_t *tree;
    value_list_t vals;
    path_cache_t path;
    span_acc_t spans;
    /* The last ingest_series_add: its stack's node and the nodes it created. */
    uint32_t last_node;
    size_t last_grown;
    /* A series whose tree has the shape of series shape_of's (UINT32_MAX:
     * none): its tree is made at ingest_series_finish (see
     * ingest_series_add_shadow). While every value it got was scale times
     * the leader's in the same sample (0: none yet) it keeps nothing per
     * node, and its tree stays so: the leader's values times scale
     * (calltree_adopt_scaled), the leader's tree then outliving its reads;
     * otherwise (shadowed) its values per node of that tree, in shadow. */
    uint32_t shape_of;
    int64_t scale;
    bool shadowed;
    int64_t *shadow;
    size_t shadow_cap;
    id_pairs_t pairs;    /* samples given by id (stack cache) */
    stack_learn_t learn; /* a leader's samples the cache may learn */
} ingest_series_t;

typedef struct series_set {
    const ingest_limits_t *lim;
    const char *tenant;
    ingest_series_t *v;
    size_t n, cap;
    u64map_t by_id;
    size_t spans_dropped; /* distinct span/trace ids past lim->max_spans_per_series */
    /* The push's budget, shared by every series and span tree (ingest.h):
     * call-tree nodes created and frames walked so far, and their caps. */
    size_t nodes, work;
    size_t nodes_budget, work_budget;
    /* The memory the push holds, as allocated (body, decoded message,
     * symbols, series, trees, span indices, scratch: ingest_charge), the
     * most it held, and its cap (ingest-request-memory-per-byte x payload,
     * at least INGEST_REQUEST_MEMORY_FLOOR). */
    size_t mem, mem_peak, mem_budget, payload;
    size_t set_bytes, set_charged; /* by_id at init and the stack scratch; charged with v */
    alloc_charge_t charge;         /* the same bytes on lim->inflight, until freed */
    uint32_t *stack;               /* scratch: one stack, root first (push symbol indices) */
    size_t stack_cap;
    /* The stack cache (NULL: off), its generation when the push started,
     * and the samples looked up in it and found. */
    ingest_stack_cache_t *cache;
    uint64_t cache_gen, tenant_hash;
    size_t cache_lookups, cache_hits;
} series_set_t;

int ingest_series_set_init(series_set_t *ss, const char *tenant, const ingest_limits_t *lim);
/* Sets the push's memory and work budget from the limits and the size of
 * its (decompressed) payload. */
void ingest_series_set_budget(series_set_t *ss, size_t payload_bytes);
/* Charges the work of walking or copying a stack of depth frames to the
 * push's budget; ERR_TOO_LARGE (413) with the settings named when over. */
int ingest_series_charge_work(series_set_t *ss, size_t depth, errmsg_t *em);
/* Charges n bytes the push now holds: to its own memory cap (413 naming
 * ingest-request-memory-per-byte), then to the node-wide in-flight budget
 * (lim->inflight): 503 (ERR_UNAVAILABLE) when it is full now, 413 when this
 * push alone is larger; what names the memory in the reason. Nothing is
 * charged on error. ingest_uncharge gives n bytes back (memory freed). */
int ingest_charge(series_set_t *ss, size_t n, const char *what, errmsg_t *em);
void ingest_uncharge(series_set_t *ss, size_t n);
/* The reason of a refused charge (rc from alloc_charge_add) into em; returns rc. */
int ingest_charge_reason(const alloc_budget_t *b, int rc, const char *what, errmsg_t *em);
void ingest_series_set_free(series_set_t *ss);
/* Finds or creates the series of labels (takes ownership of labels, which
 * must already hold __name__, __profile_type__ and service_name). */
int ingest_series_get(series_set_t *ss, labels_t *labels, uint32_t *idx, errmsg_t *em);
/* A push's symbols are named in its trees by one index per push, not a
 * list and table per tree (calltree_new_unnamed): the push symbol index
 * of symbol table entry i (symtab_index, or the index symtab_put_file and
 * symtab_intern_index give) is i + 1, 0 being the root's. */
uint32_t ingest_series_sym_at(uint32_t i);
/* Adds a stack to series idx's tree: stack[0..depth) are its frames' push
 * symbol indices, root first. */
int ingest_series_add(series_set_t *ss, uint32_t idx, const uint32_t *stack, size_t depth,
                      int64_t v, errmsg_t *em);
/* Adds the stack that was just added to series leader (ingest_series_add,
 * with value lv) to series idx too, with value v, when the caller knows
 * idx's tree gets exactly leader's stacks in the same order (the pprof
 * sample types that are non-zero in the same samples): idx's tree is then
 * leader's shape, and shares leader's nodes at the end
 * (calltree_adopt_shape). While v is the same multiple of lv in every
 * sample (a CPU profile's cpu is its samples times the period) nothing is
 * kept per node: the values are that multiple of the leader's at the end;
 * from the first sample where it is not, the values are kept here (8 bytes
 * a node, charged as it grows; the earlier ones made from the leader's).
 * Work and nodes are counted as ingest_series_add would count them (depth
 * frames, the nodes leader's tree just grew by). */
int ingest_series_add_shadow(series_set_t *ss, uint32_t idx, uint32_t leader, size_t depth,
                             int64_t v, int64_t lv, errmsg_t *em);
/* Once every stack is added: gives back the trees' growth room, edge
 * tables and path caches, names their symbols (by symtab, the push's
 * table, that the indices of ingest_series_add came from), makes the span and trace trees one at a
 * time (their nodes counted against the push's cap and max_tree_nodes) and keeps each encoded, then
 * makes the trees of series that follow a leader (their values charged when shadowed; none held
 * when scaled). ERR_NOMEM, ERR_LIMIT, or a refused charge. */
int ingest_series_finish(series_set_t *ss, const symtab_t *symtab, errmsg_t *em);
/* Adds value v of a sample of depth frames to span or trace `id` of series
 * idx: node is the sample's node in that series' tree (its leader's for a
 * shadow series: the node ingest_series_add just gave the leader). The
 * span trees are made at ingest_series_finish from these nodes, each node
 * of a tree once, rather than by walking every sample's stack again. */
int ingest_series_add_span(series_set_t *ss, uint32_t idx, uint8_t kind, uint64_t id, uint32_t node,
                           size_t depth, int64_t v, errmsg_t *em);
/* Adds value v of a sample to series idx by stack-node id (a stack cache
 * hit); charged as it grows. */
int ingest_series_add_id(series_set_t *ss, uint32_t idx, uint32_t id, int64_t v, errmsg_t *em);
/* Records that the sample just added to leader series idx (its last_node)
 * has stack key k, for the cache to learn once the tree is mapped. */
int ingest_series_learn(series_set_t *ss, uint32_t idx, const stack_key_t *k, errmsg_t *em);
/* Makes room for a stack of depth frames in ss->stack (bounded by max_stack_depth). */
int ingest_series_stack_reserve(series_set_t *ss, size_t depth, errmsg_t *em);
/* Labels for a new series: base + __name__ + __profile_type__. Caller owns. */
labels_t *ingest_series_labels(const labels_t *base, const char *name, const char *type_id);
/* Adds a label with the per-series limits checked (count, lengths). */
int ingest_series_label_set(labels_t *l, const ingest_limits_t *lim, const char *k, size_t kn,
                            const char *v, size_t vn, errmsg_t *em);

/* ---- pprof wire reader (ingest_wire.c) ---- */

/* An entry of the profile: its bytes in the payload, [off, off+len). */
typedef struct wire_span {
    uint32_t off, len;
} wire_span_t;

/* A pprof message read in place: the payload is borrowed (it must outlive
 * the reader); the arrays (owned) index its repeated entries, nothing else
 * is copied. */
typedef struct wire_profile {
    const uint8_t *data;
    size_t len;
    wire_span_t *sample_types, *samples, *mappings, *locations, *functions, *strings;
    size_t nsample_types, nsamples, nmappings, nlocations, nfunctions, nstrings;
    bool has_period_type;
    int64_t period_type_type, period_type_unit;
    int64_t period, time_nanos, duration_nanos, default_sample_type;
} wire_profile_t;

/* Checks the whole message (nested ones too) and counts its entries; no
 * allocation. ERR_UNPARSEABLE when protobuf would refuse it, ERR_TOO_LARGE
 * past 4 GiB. Then ingest_wire_index_bytes() says what ingest_wire_index()
 * will allocate (so it can be charged first), and ingest_wire_index()
 * fills the arrays (ERR_NOMEM); ingest_wire_free() frees them. */
int ingest_wire_open(wire_profile_t *w, const uint8_t *data, size_t len);
size_t ingest_wire_index_bytes(const wire_profile_t *w);
int ingest_wire_index(wire_profile_t *w);
void ingest_wire_free(wire_profile_t *w);

typedef struct wire_function {
    uint64_t id;
    int64_t name, system_name, filename;
} wire_function_t;

typedef struct wire_mapping {
    uint64_t id, memory_start, file_offset;
    int64_t filename;
} wire_mapping_t;

typedef struct wire_location {
    uint64_t id, mapping_id, address;
    size_t nlines;
    const uint8_t *p, *end; /* for ingest_wire_next_line */
} wire_location_t;

typedef struct wire_sample {
    size_t nlocations, nvalues, nlabels; /* all of them, stored or not */
    const uint8_t *p, *end;
} wire_sample_t;

/* Walks one repeated varint field of a sample (packed and unpacked runs), or
 * its labels. */
typedef struct wire_iter {
    const uint8_t *p, *end, *pk, *pkend;
    uint32_t num;
} wire_iter_t;

#define WIRE_SAMPLE_LOCATION_ID 1
#define WIRE_SAMPLE_VALUE 2

/* Field 1 (id) of a function, location or mapping entry. */
uint64_t ingest_wire_id(const wire_profile_t *w, wire_span_t s);
void ingest_wire_value_type(const wire_profile_t *w, size_t i, int64_t *type, int64_t *unit);
void ingest_wire_function(const wire_profile_t *w, size_t i, wire_function_t *out);
void ingest_wire_mapping(const wire_profile_t *w, size_t i, wire_mapping_t *out);
/* Location i's scalars and line count; its lines, first (innermost) to last,
 * by ingest_wire_next_line (false after the last). */
void ingest_wire_location(const wire_profile_t *w, size_t i, wire_location_t *out);
bool ingest_wire_next_line(wire_location_t *l, uint64_t *function_id);
/* Reads sample i in one walk: its values into values[0..nvalues_max) and,
 * when ids is not NULL, its location ids into ids[0..ids_max) (both in
 * order, packed and unpacked runs alike; the counts in *out are of all of
 * them, stored or not), and counts its labels. Then ingest_wire_iter with a
 * field number and ingest_wire_next_u64 walk a field again, and
 * ingest_wire_iter with any number and ingest_wire_next_label its labels
 * (key and str string indices; numeric labels give str 0). */
void ingest_wire_sample(const wire_profile_t *w, size_t i, wire_sample_t *out, uint64_t *values,
                        size_t nvalues_max, uint64_t *ids, size_t ids_max);
void ingest_wire_iter(const wire_sample_t *s, uint32_t num, wire_iter_t *it);
bool ingest_wire_next_u64(wire_iter_t *it, uint64_t *v);
bool ingest_wire_next_label(wire_iter_t *it, int64_t *key, int64_t *str);

/* ---- parsers ---- */

typedef struct pprof_ctx {
    const ingest_limits_t *lim;
    const labels_t *base;
    const stc_t *config; /* may be NULL */
    series_set_t *ss;
    symtab_t *symtab;
    int64_t time_ns; /* out: time_nanos of the profile, 0 when unset */
} pprof_ctx_t;

int ingest_pprof(const uint8_t *data, size_t len, pprof_ctx_t *ctx, errmsg_t *em);

/* Name of a profile type for a pprof sample type (ingest_types.c). st/unit:
 * the sample type; pt: period type; others: every sample type of the profile
 * (for the profile-level fallback). Returns a static string. */
const char *ingest_type_name(const char *st, const char *pt, const char *const *others,
                             size_t nothers);

typedef struct folded_ctx {
    const ingest_limits_t *lim;
    series_set_t *ss;
    symtab_t *symtab;
    uint32_t series; /* the one series the body goes to */
    int64_t scale;   /* value multiplier (1 or 1e9/sampleRate) */
    bool lines;      /* format=lines: every line is a stack worth 1 */
} folded_ctx_t;

int ingest_folded(const uint8_t *data, size_t len, folded_ctx_t *ctx, errmsg_t *em);

#endif
