/* ingest_pprof.c — pprof (perftools.profiles) to call trees.
 *
 * Decoding uses the protobuf-c generated code with an arena allocator: every
 * allocation of one unpack comes from a few large chunks (fast, freed at
 * once) and the arena's total is capped by max_decoded_bytes, so a small
 * message that expands into millions of empty structs is refused (413).
 *
 * Conversion, in one pass over the samples:
 *  - functions and locations are resolved by id through a dense index when
 *    ids are 1..n in order (what Go, Java and most agents write) or a hash
 *    map otherwise; each location's frames (symbol ids, root first) are
 *    computed once, on first use, so every sample is a walk over small
 *    precomputed arrays;
 *  - a Location with several Lines is inlining: line[0] is the innermost
 *    frame, the last line the outermost caller; a Location without usable
 *    lines is shown by address: `<mapping file basename>+0x<file offset>`
 *    when a mapping names a file, else `0x<address>`;
 *  - a symbol is (function name, file name); the line number is not part of
 *    it (symbols are content-addressed and merge across profiles);
 *  - names are kept as bytes, invalid UTF-8 included: the JSON encoder
 *    replaces invalid bytes when rendering, and pprof export returns the
 *    bytes as they came;
 *  - function id 0 (.NET agents): when every function has id 0 and there are
 *    as many functions as locations, function i gets location i's id, as
 *    Pyroscope's FixFunctionIDForBrokenDotnet does (applied whatever the
 *    spyName, since no valid profile has that shape); otherwise a line that
 *    references function 0 has no function;
 *  - sample types have '-' replaced by '_' (older .NET agents write
 *    alloc-samples; Pyroscope does the same for .NET);
 *  - string sample labels split the profile into series; span_id, trace_id
 *    and profile_id (read as span_id) go to span trees instead; numeric
 *    labels are ignored.
 */
#define _GNU_SOURCE /* strcasestr, memrchr, strndup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/proto/pprof.pb-c.h"
#include "node/ingest/ingest_int.h"

typedef Perftools__Profiles__Profile pb_profile_t;
typedef Perftools__Profiles__Sample pb_sample_t;
typedef Perftools__Profiles__Location pb_location_t;

#define TYPE_STR_MAX 256
/* Sample types compared for a shared tree shape (see find_leaders); real
 * profiles have 1 to 6. */
#define SHAPE_MAX_TYPES 64
#define MAX_SPAN_LABELS 8
#define PATH_MAX_NAME 256 /* an address frame: basename (<= 200) + offset */

/* ---- protobuf-c allocates from a bounded arena ---- */

#define PB_ARENA_CHUNK (1u << 20)

/* The decode arena, its bytes charged to the node's in-flight budget. */
typedef struct pb_mem {
    arena_t a;
    alloc_charge_t *charge; /* the push's */
    size_t charged;         /* given back once the arena is freed */
    int refused;            /* the budget refused: ERR_UNAVAILABLE or ERR_TOO_LARGE */
} pb_mem_t;

static void *pb_alloc(void *ud, size_t n)
{
    pb_mem_t *m = ud;
    if (m->refused) return NULL;
    int rc = alloc_charge_add(m->charge, n);
    if (rc != 0) {
        m->refused = rc;
        return NULL;
    }
    m->charged += n;
    return arena_alloc(&m->a, n);
}

static void pb_free_nop(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

/* ---- conversion state ---- */

typedef struct group {
    uint32_t pairs; /* offset into conv.pairs (2 int64 per pair) */
    uint32_t npairs;
    uint32_t series; /* offset into conv.gseries (ntypes entries) */
} group_t;

typedef struct conv {
    pprof_ctx_t *ctx;
    const pb_profile_t *p;
    errmsg_t *em;
    /* id -> index; dense when ids are 1..n */
    bool fn_dense, loc_dense, map_dense;
    u64map_t fn_map, loc_map, map_map;
    uint64_t *fn_sym;  /* per function, 0 = not yet computed */
    uint32_t *loc_off; /* per location: offset into frames, UINT32_MAX = not yet */
    uint32_t *loc_len;
    uint64_t *frames; /* root-first frames of all resolved locations */
    size_t nframes, frames_cap;
    /* types */
    size_t ntypes;
    char (*type_name)[TYPE_STR_MAX];
    char (*type_id)[4 * TYPE_STR_MAX + 8];
    uint32_t *leader; /* per type: the type whose tree shape it has (itself if none) */
    /* label groups */
    group_t *groups;
    size_t ngroups, groups_cap;
    int64_t *pairs;
    size_t npairs, pairs_cap;
    uint32_t *gseries;
    size_t ngseries, gseries_cap;
    u64map_t group_map;
} conv_t;

static int bad(conv_t *c, const char *what, uint64_t v)
{
    return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: %s %" PRIu64, what, v);
}

/* String i of the table, or an error. */
static int str_at(conv_t *c, int64_t i, const char **s, size_t *n)
{
    *s = "";
    *n = 0;
    if (i < 0 || (uint64_t)i >= c->p->n_string_table)
        return bad(c, "string index out of range:", (uint64_t)i);
    if (c->p->string_table[i].data != NULL) {
        *s = (const char *)c->p->string_table[i].data;
        *n = c->p->string_table[i].len;
    }
    return 0;
}

/* ---- id indices ---- */

/* Builds id -> index for n items whose ids get(i) returns. Ids 0 are not
 * indexed (0 means "none" in pprof references). Duplicate ids are refused. */
static int index_ids(conv_t *c, size_t n, uint64_t (*get)(const pb_profile_t *, size_t),
                     bool *dense, u64map_t *m, const char *what)
{
    *dense = true;
    for (size_t i = 0; i < n && *dense; i++)
        *dense = get(c->p, i) == (uint64_t)i + 1;
    if (*dense || n == 0) return 0;
    if (u64map_init(m, n) < 0) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        uint64_t id = get(c->p, i);
        uint32_t old;
        if (id == 0) continue;
        if (u64map_get(m, id, &old))
            return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: duplicate %s id %" PRIu64,
                              what, id);
        if (u64map_put(m, id, (uint32_t)i) < 0)
            return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    }
    return 0;
}

static uint64_t fn_id(const pb_profile_t *p, size_t i)
{
    return p->function[i]->id;
}
static uint64_t loc_id(const pb_profile_t *p, size_t i)
{
    return p->location[i]->id;
}
static uint64_t map_id(const pb_profile_t *p, size_t i)
{
    return p->mapping[i]->id;
}

/* Index of id (non-zero) or -1. */
static int64_t lookup(bool dense, const u64map_t *m, size_t n, uint64_t id)
{
    uint32_t v;
    if (dense) return id >= 1 && id <= n ? (int64_t)id - 1 : -1;
    return id != 0 && u64map_get(m, id, &v) ? (int64_t)v : -1;
}

/* Pyroscope's repair of .NET profiles whose functions all have id 0. */
static void repair_dotnet(pb_profile_t *p)
{
    if (p->n_function == 0 || p->n_function != p->n_location) return;
    for (size_t i = 0; i < p->n_function; i++)
        if (p->function[i]->id != 0) return;
    for (size_t i = 0; i < p->n_function; i++)
        p->function[i]->id = p->location[i]->id;
}

static int build_indices(conv_t *c)
{
    const pb_profile_t *p = c->p;
    int rc;
    if ((rc = index_ids(c, p->n_function, fn_id, &c->fn_dense, &c->fn_map, "function")) < 0 ||
        (rc = index_ids(c, p->n_location, loc_id, &c->loc_dense, &c->loc_map, "location")) < 0 ||
        (rc = index_ids(c, p->n_mapping, map_id, &c->map_dense, &c->map_map, "mapping")) < 0)
        return rc;
    c->fn_sym = calloc(p->n_function + 1, sizeof *c->fn_sym);
    c->loc_off = malloc((p->n_location + 1) * sizeof *c->loc_off);
    c->loc_len = calloc(p->n_location + 1, sizeof *c->loc_len);
    if (c->fn_sym == NULL || c->loc_off == NULL || c->loc_len == NULL)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    memset(c->loc_off, 0xff, (p->n_location + 1) * sizeof *c->loc_off);
    return 0;
}

/* ---- symbols and frames ---- */

static int intern(conv_t *c, const char *name, size_t nn, const char *file, size_t fnl,
                  uint64_t *sym)
{
    size_t max = c->ctx->lim->max_symbol_len;
    if (nn > max || fnl > max)
        return errmsg_set(c->em, ERR_LIMIT,
                          "symbol '%.*s...' longer than %zu bytes (max_symbol_len)",
                          (int)(max < 60 ? max : 60), nn > max ? name : file, max);
    if (symtab_intern(c->ctx->symtab, name, nn, file, fnl, sym) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    return 0;
}

static int function_sym(conv_t *c, size_t fi, uint64_t *sym)
{
    if (c->fn_sym[fi] != 0) {
        *sym = c->fn_sym[fi];
        return 0;
    }
    const Perftools__Profiles__Function *f = c->p->function[fi];
    const char *name, *file;
    size_t nn, fnl;
    int rc;
    if ((rc = str_at(c, f->name, &name, &nn)) < 0 || (rc = str_at(c, f->filename, &file, &fnl)) < 0)
        return rc;
    if (nn == 0 && (rc = str_at(c, f->system_name, &name, &nn)) < 0) return rc;
    if ((rc = intern(c, name, nn, file, fnl, sym)) < 0) return rc;
    c->fn_sym[fi] = *sym;
    return 0;
}

static int push_frame(conv_t *c, uint64_t sym)
{
    if (GROW_FROM(c->frames, c->frames_cap, c->nframes + 1, GROW_UNLIMITED, 64) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    c->frames[c->nframes++] = sym;
    return 0;
}

/* The one frame of a location known only by its address. */
static int address_frame(conv_t *c, const pb_location_t *l)
{
    char name[PATH_MAX_NAME];
    uint64_t addr = l->address;
    int n = 0;
    if (l->mapping_id != 0) {
        int64_t mi = lookup(c->map_dense, &c->map_map, c->p->n_mapping, l->mapping_id);
        if (mi < 0) return bad(c, "location references unknown mapping", l->mapping_id);
        const Perftools__Profiles__Mapping *m = c->p->mapping[mi];
        const char *file;
        size_t fl;
        int rc = str_at(c, m->filename, &file, &fl);
        if (rc < 0) return rc;
        const char *slash = fl ? memrchr(file, '/', fl) : NULL;
        const char *base = slash ? slash + 1 : file;
        size_t bl = fl - (size_t)(base - file);
        if (bl > 0) {
            uint64_t off = addr >= m->memory_start ? addr - m->memory_start + m->file_offset : addr;
            n = snprintf(name, sizeof name, "%.*s+0x%" PRIx64, (int)(bl > 200 ? 200 : bl), base,
                         off);
        }
    }
    if (n == 0) n = snprintf(name, sizeof name, "0x%" PRIx64, addr);
    uint64_t sym;
    int rc = intern(c, name, (size_t)n, "", 0, &sym);
    return rc < 0 ? rc : push_frame(c, sym);
}

/* Computes the root-first frames of location li once. */
static int location_frames(conv_t *c, size_t li)
{
    const pb_location_t *l = c->p->location[li];
    size_t start = c->nframes;
    for (size_t k = l->n_line; k-- > 0;) { /* last line = outermost caller first */
        uint64_t fid = l->line[k]->function_id, sym;
        if (fid == 0) continue;
        int64_t fi = lookup(c->fn_dense, &c->fn_map, c->p->n_function, fid);
        if (fi < 0) return bad(c, "line references unknown function", fid);
        int rc = function_sym(c, (size_t)fi, &sym);
        if (rc < 0 || (rc = push_frame(c, sym)) < 0) return rc;
    }
    if (c->nframes == start) {
        int rc = address_frame(c, l);
        if (rc < 0) return rc;
    }
    if (c->nframes > UINT32_MAX) return errmsg_set(c->em, ERR_LIMIT, "too many frames");
    c->loc_off[li] = (uint32_t)start;
    c->loc_len[li] = (uint32_t)(c->nframes - start);
    return 0;
}

/* ---- profile types ---- */

/* Copies string i (truncated) into out, '-' replaced by '_' when dash. */
static int type_str(conv_t *c, int64_t i, char *out, bool dash)
{
    const char *s;
    size_t n;
    int rc = str_at(c, i, &s, &n);
    if (rc < 0) return rc;
    if (n >= TYPE_STR_MAX)
        return errmsg_set(c->em, ERR_LIMIT, "sample type name longer than %d bytes",
                          TYPE_STR_MAX - 1);
    for (size_t k = 0; k < n; k++)
        out[k] = dash && s[k] == '-' ? '_' : s[k];
    out[n] = 0;
    if (memchr(out, 0, n) != NULL)
        return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: NUL byte in a sample type");
    return 0;
}

/* pprof units from the og unit names a sample_type_config may give. */
static const char *config_unit(const char *u)
{
    if (strcmp(u, "samples") == 0 || strcmp(u, "objects") == 0 || strcmp(u, "goroutines") == 0 ||
        strcmp(u, "lock_samples") == 0)
        return "count";
    if (strcmp(u, "lock_nanoseconds") == 0) return "nanoseconds";
    return u;
}

static int build_types(conv_t *c)
{
    const pb_profile_t *p = c->p;
    size_t n = p->n_sample_type;
    char pt[TYPE_STR_MAX] = "", pu[TYPE_STR_MAX] = "";
    char(*st)[TYPE_STR_MAX] = calloc(n + 1, TYPE_STR_MAX);
    char(*unit)[TYPE_STR_MAX] = calloc(n + 1, TYPE_STR_MAX);
    const char **disp = calloc(n + 1, sizeof *disp);
    c->type_name = calloc(n + 1, sizeof *c->type_name);
    c->type_id = calloc(n + 1, sizeof *c->type_id);
    c->ntypes = n;
    int rc = 0;
    if (st == NULL || unit == NULL || disp == NULL || c->type_name == NULL || c->type_id == NULL)
        rc = errmsg_set(c->em, ERR_NOMEM, "out of memory");
    if (rc == 0 && p->period_type != NULL &&
        ((rc = type_str(c, p->period_type->type, pt, false)) < 0 ||
         (rc = type_str(c, p->period_type->unit, pu, false)) < 0))
        goto out;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((rc = type_str(c, p->sample_type[i]->type, st[i], true)) < 0 ||
            (rc = type_str(c, p->sample_type[i]->unit, unit[i], false)) < 0)
            break;
        const stc_entry_t *e = ingest_stc_find(c->ctx->config, st[i], strlen(st[i]));
        disp[i] = e && e->display_name[0] ? e->display_name : st[i];
        if (e && e->units[0] && unit[i][0] == 0)
            snprintf(unit[i], TYPE_STR_MAX, "%s", config_unit(e->units));
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *name = ingest_type_name(disp[i], pt, disp, n);
        snprintf(c->type_name[i], TYPE_STR_MAX, "%s", name);
        snprintf(c->type_id[i], sizeof c->type_id[i], "%s:%s:%s:%s:%s", name, st[i], unit[i], pt,
                 pu);
    }
out:
    free(st);
    free(unit);
    free(disp);
    return rc;
}

/* ---- sample types that share a tree shape ---- */

/* True when type t's value is non-zero in exactly the samples where u's is. */
static bool same_nonzero(const pb_profile_t *p, size_t ntypes, size_t t, size_t u)
{
    for (size_t i = 0; i < p->n_sample; i++) {
        const pb_sample_t *s = p->sample[i];
        if (s->n_value == ntypes && (s->value[t] != 0) != (s->value[u] != 0)) return false;
    }
    return true;
}

/* A type non-zero in exactly the samples of an earlier type gets, in every
 * label group, the same stacks in the same order, so its trees have the same
 * shape: it follows that type (ingest_series_add_shadow), and a CPU profile
 * (samples, cpu) or a heap profile's pairs (alloc_objects, alloc_space;
 * inuse_objects, inuse_space) build each tree once. Samples with a wrong
 * value count are skipped here (the sample loop refuses the profile there).
 * Only when every type names a distinct series (distinct type ids), and for
 * at most SHAPE_MAX_TYPES types; each comparison is one pass, pruned by a
 * hash of the non-zero pattern. */
static int find_leaders(conv_t *c)
{
    const pb_profile_t *p = c->p;
    size_t n = c->ntypes;
    c->leader = malloc((n + 1) * sizeof *c->leader);
    uint64_t *sig = calloc(n + 1, sizeof *sig);
    if (c->leader == NULL || sig == NULL) {
        free(sig);
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < n; t++)
        c->leader[t] = (uint32_t)t;
    bool share = n >= 2 && n <= SHAPE_MAX_TYPES;
    for (size_t t = 0; share && t < n; t++)
        for (size_t u = 0; share && u < t; u++)
            share = strcmp(c->type_id[t], c->type_id[u]) != 0;
    for (size_t i = 0; share && i < p->n_sample; i++) {
        const pb_sample_t *s = p->sample[i];
        if (s->n_value != n) continue;
        for (size_t t = 0; t < n; t++)
            sig[t] = (sig[t] ^ (s->value[t] != 0 ? i + 1 : 0)) * 0x9e3779b97f4a7c15ULL;
    }
    for (size_t t = 1; share && t < n; t++)
        for (size_t u = 0; u < t; u++)
            if (c->leader[u] == u && sig[u] == sig[t]) {
                if (same_nonzero(p, n, t, u)) c->leader[t] = (uint32_t)u;
                break;
            }
    free(sig);
    return 0;
}

/* ---- label groups: one per distinct set of splitting labels ---- */

static int add_pair_label(conv_t *c, labels_t *l, int64_t k, int64_t v)
{
    const char *ks, *vs;
    size_t kn, vn;
    int rc;
    if ((rc = str_at(c, k, &ks, &kn)) < 0 || (rc = str_at(c, v, &vs, &vn)) < 0) return rc;
    if (ingest_label_reserved(ks, kn) || vn == 0) return 0;
    if (!ingest_label_name_valid(ks, kn))
        return errmsg_set(c->em, ERR_UNPARSEABLE,
                          "sample label name '%.*s' is not a valid label name",
                          (int)(kn > 64 ? 64 : kn), ks);
    return ingest_series_label_set(l, c->ctx->lim, ks, kn, vs, vn, c->em);
}

/* Creates the series of a new group, one per sample type. */
static int new_group(conv_t *c, const int64_t *pairs, size_t np, uint64_t key, uint32_t *gi)
{
    if (GROW_FROM(c->groups, c->groups_cap, c->ngroups + 1, GROW_UNLIMITED, 64) < 0 ||
        GROW_FROM(c->pairs, c->pairs_cap, c->npairs + 2 * np, GROW_UNLIMITED, 64) < 0 ||
        GROW_FROM(c->gseries, c->gseries_cap, c->ngseries + c->ntypes, GROW_UNLIMITED, 64) < 0 ||
        u64map_put(&c->group_map, key, (uint32_t)c->ngroups) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    group_t *g = &c->groups[c->ngroups];
    *g = (group_t){(uint32_t)c->npairs, (uint32_t)np, (uint32_t)c->ngseries};
    if (np > 0) memcpy(c->pairs + c->npairs, pairs, 2 * np * sizeof *pairs);
    c->npairs += 2 * np;
    for (size_t t = 0; t < c->ntypes; t++) {
        labels_t *l = ingest_series_labels(c->ctx->base, c->type_name[t], c->type_id[t]);
        if (l == NULL) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < np; i++)
            rc = add_pair_label(c, l, pairs[2 * i], pairs[2 * i + 1]);
        if (rc < 0) {
            labels_free(l);
            return rc;
        }
        if ((rc = ingest_series_get(c->ctx->ss, l, &c->gseries[c->ngseries + t], c->em)) < 0)
            return rc;
    }
    c->ngseries += c->ntypes;
    *gi = (uint32_t)c->ngroups++;
    return 0;
}

static int find_group(conv_t *c, const int64_t *pairs, size_t np, uint32_t *gi)
{
    uint64_t key = hash_bytes64(pairs, 2 * np * sizeof *pairs);
    for (;; key++) { /* a 64-bit collision probes the next key */
        uint32_t g;
        if (!u64map_get(&c->group_map, key, &g)) return new_group(c, pairs, np, key, gi);
        const group_t *gr = &c->groups[g];
        if (gr->npairs == np &&
            (np == 0 || memcmp(c->pairs + gr->pairs, pairs, 2 * np * sizeof *pairs) == 0)) {
            *gi = g;
            return 0;
        }
    }
}

/* ---- samples ---- */

typedef struct span_ref {
    uint8_t kind;
    uint64_t id;
} span_ref_t;

static int span_kind(const char *k, size_t n)
{
    if ((n == 7 && memcmp(k, "span_id", 7) == 0) || (n == 10 && memcmp(k, "profile_id", 10) == 0))
        return STORAGE_SPAN_KIND_SPAN;
    if (n == 8 && memcmp(k, "trace_id", 8) == 0) return STORAGE_SPAN_KIND_TRACE;
    return 0;
}

static void sort_pairs(int64_t *p, size_t *np)
{
    for (size_t i = 1; i < *np; i++)
        for (size_t j = i; j > 0 && (p[2 * j - 2] > p[2 * j] ||
                                     (p[2 * j - 2] == p[2 * j] && p[2 * j - 1] > p[2 * j + 1]));
             j--) {
            int64_t k = p[2 * j], v = p[2 * j + 1];
            p[2 * j] = p[2 * j - 2];
            p[2 * j + 1] = p[2 * j - 1];
            p[2 * j - 2] = k;
            p[2 * j - 1] = v;
        }
    size_t o = 0; /* one value per key: the first after sorting */
    for (size_t i = 0; i < *np; i++)
        if (o == 0 || p[2 * o - 2] != p[2 * i]) {
            p[2 * o] = p[2 * i];
            p[2 * o + 1] = p[2 * i + 1];
            o++;
        }
    *np = o;
}

/* Splits a sample's labels into group pairs and span references. */
static int sample_labels(conv_t *c, const pb_sample_t *s, int64_t *pairs, size_t *np,
                         span_ref_t *spans, size_t *ns)
{
    *np = *ns = 0;
    for (size_t i = 0; i < s->n_label; i++) {
        const Perftools__Profiles__Label *l = s->label[i];
        const char *k, *v;
        size_t kn, vn;
        int rc;
        if (l->str == 0) /* numeric label (or empty string): measurement, not identity */
            continue;
        if ((rc = str_at(c, l->key, &k, &kn)) < 0 || (rc = str_at(c, l->str, &v, &vn)) < 0)
            return rc;
        int kind = span_kind(k, kn);
        if (kind != 0) {
            if (*ns < MAX_SPAN_LABELS)
                spans[(*ns)++] = (span_ref_t){(uint8_t)kind, storage_span_id(v, vn)};
            continue;
        }
        if (*np >= c->ctx->lim->max_labels_per_series)
            return errmsg_set(c->em, ERR_LIMIT,
                              "sample has more than %zu labels (max_labels_per_series)",
                              c->ctx->lim->max_labels_per_series);
        pairs[2 * *np] = l->key;
        pairs[2 * *np + 1] = l->str;
        (*np)++;
    }
    sort_pairs(pairs, np);
    return 0;
}

/* Fills ss->stack with the sample's frames, root first; *depth = count. */
static int sample_stack(conv_t *c, const pb_sample_t *s, size_t *depth)
{
    series_set_t *ss = c->ctx->ss;
    size_t n = s->n_location_id, d = 0;
    int64_t *idx = (int64_t *)s->location_id; /* resolved in place: ids -> indices */
    for (size_t k = 0; k < n; k++) {
        int64_t li = lookup(c->loc_dense, &c->loc_map, c->p->n_location, s->location_id[k]);
        if (li < 0) return bad(c, "sample references unknown location", s->location_id[k]);
        if (c->loc_off[li] == UINT32_MAX) {
            int rc = location_frames(c, (size_t)li);
            if (rc < 0) return rc;
        }
        idx[k] = li;
        d += c->loc_len[li];
    }
    int rc = ingest_series_stack_reserve(ss, d, c->em);
    if (rc == 0) rc = ingest_series_charge_work(ss, d, c->em); /* the copy below */
    if (rc < 0) return rc;
    uint64_t *out = ss->stack;
    for (size_t k = n; k-- > 0;) { /* location_id[0] is the leaf */
        memcpy(out, c->frames + c->loc_off[idx[k]], c->loc_len[idx[k]] * sizeof *out);
        out += c->loc_len[idx[k]];
    }
    *depth = d;
    return 0;
}

static int one_sample(conv_t *c, const pb_sample_t *s, size_t si, int64_t *pairs)
{
    span_ref_t spans[MAX_SPAN_LABELS];
    size_t np = 0, ns = 0, depth = 0;
    uint32_t g = 0;
    int rc;
    if (s->n_value != c->ntypes)
        return errmsg_set(
            c->em, ERR_UNPARSEABLE,
            "invalid pprof: sample %zu has %zu values but the profile has %zu sample types", si,
            s->n_value, c->ntypes);
    if ((rc = sample_labels(c, s, pairs, &np, spans, &ns)) < 0 ||
        (rc = find_group(c, pairs, np, &g)) < 0 || (rc = sample_stack(c, s, &depth)) < 0)
        return rc;
    const uint32_t *series = c->gseries + c->groups[g].series;
    const uint64_t *stack = c->ctx->ss->stack;
    for (size_t t = 0; t < c->ntypes; t++) {
        int64_t v = s->value[t];
        if (v == 0) continue;
        uint32_t lt = c->leader[t];
        rc = lt == t ? ingest_series_add(c->ctx->ss, series[t], stack, depth, v, c->em)
                     : ingest_series_add_shadow(c->ctx->ss, series[t], series[lt], depth, v, c->em);
        if (rc < 0) return rc;
        for (size_t k = 0; k < ns; k++)
            if ((rc = ingest_series_add_span(c->ctx->ss, series[t], spans[k].kind, spans[k].id,
                                             stack, depth, v, c->em)) < 0)
                return rc;
    }
    return 0;
}

static int check_header(conv_t *c)
{
    const pb_profile_t *p = c->p;
    if (p->n_string_table == 0 || p->string_table[0].len != 0)
        return errmsg_set(c->em, ERR_UNPARSEABLE,
                          "not a pprof profile: string_table[0] must be the empty string");
    if (p->n_sample > c->ctx->lim->max_samples)
        return errmsg_set(c->em, ERR_LIMIT, "profile has %zu samples, more than %zu (max_samples)",
                          p->n_sample, c->ctx->lim->max_samples);
    if (p->n_sample > 0 && p->n_sample_type == 0)
        return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: samples but no sample types");
    if (p->n_sample_type > c->ctx->lim->max_series_per_profile)
        return errmsg_set(c->em, ERR_LIMIT,
                          "profile has %zu sample types, more than %zu series allowed",
                          p->n_sample_type, c->ctx->lim->max_series_per_profile);
    return 0;
}

static int convert(conv_t *c)
{
    int rc;
    if ((rc = check_header(c)) < 0 || (rc = build_indices(c)) < 0 || (rc = build_types(c)) < 0 ||
        (rc = find_leaders(c)) < 0)
        return rc;
    if (u64map_init(&c->group_map, 16) < 0) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    int64_t *pairs = malloc((2 * c->ctx->lim->max_labels_per_series + 2) * sizeof *pairs);
    if (pairs == NULL) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c->p->n_sample; i++)
        rc = one_sample(c, c->p->sample[i], i, pairs);
    free(pairs);
    return rc;
}

static void conv_free(conv_t *c)
{
    u64map_free(&c->fn_map);
    u64map_free(&c->loc_map);
    u64map_free(&c->map_map);
    u64map_free(&c->group_map);
    free(c->fn_sym);
    free(c->loc_off);
    free(c->loc_len);
    free(c->frames);
    free(c->type_name);
    free(c->type_id);
    free(c->leader);
    free(c->groups);
    free(c->pairs);
    free(c->gseries);
}

/* The decode arena's cap: in proportion to the message (real profiles decode
 * to about 7 times their size; a message of empty repeated entries to 40
 * and more), never over max_decoded_bytes. */
static size_t decode_cap(const ingest_limits_t *l, size_t len)
{
    size_t v;
    if (__builtin_mul_overflow(l->decoded_per_byte, len, &v)) v = SIZE_MAX;
    if (v < INGEST_DECODED_FLOOR) v = INGEST_DECODED_FLOOR;
    return v < l->max_decoded_bytes ? v : l->max_decoded_bytes;
}

int ingest_pprof(const uint8_t *data, size_t len, pprof_ctx_t *ctx, errmsg_t *em)
{
    pb_mem_t m = {.charge = &ctx->ss->charge};
    size_t cap = decode_cap(ctx->lim, len);
    arena_init(&m.a, PB_ARENA_CHUNK, cap);
    ProtobufCAllocator alloc = {pb_alloc, pb_free_nop, &m};
    pb_profile_t *p = perftools__profiles__profile__unpack(&alloc, len, data);
    if (p == NULL) {
        arena_free(&m.a);
        alloc_charge_sub(m.charge, m.charged);
        if (m.refused)
            return ingest_charge_reason(ctx->lim->inflight, m.refused, "decoded pprof", em);
        if (m.a.over)
            return errmsg_set(em, ERR_TOO_LARGE,
                              "decoding the pprof needs more than %zu bytes (max-decoded-bytes, "
                              "ingest-decoded-per-byte)",
                              cap);
        return errmsg_set(em, ERR_UNPARSEABLE,
                          "body is not a pprof protobuf (malformed, truncated or a legacy format)");
    }
    repair_dotnet(p);
    conv_t c = {.ctx = ctx, .p = p, .em = em};
    int rc = convert(&c);
    /* Pyroscope's fixTime: a time_nanos in 1970 is a unit mistake (us); ignore it. */
    ctx->time_ns = p->time_nanos >= 31536000LL * 1000000000LL ? p->time_nanos : 0;
    conv_free(&c);
    arena_free(&m.a);
    alloc_charge_sub(m.charge, m.charged);
    return rc;
}
