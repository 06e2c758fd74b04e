/* ingest_pprof.c — pprof (perftools.profiles) to call trees.
 *
 * The message is read in place (ingest_wire.c): checked once, its repeated
 * entries indexed by (offset, length), each entry decoded when used. What
 * the reading and the conversion hold besides the trees (the index, the
 * per-function and per-location caches, frames, id maps, type tables) is
 * the push's decoded memory: capped by ingest-decoded-per-byte x payload
 * (at least INGEST_DECODED_FLOOR, at most max_decoded_bytes; 413 past it)
 * and charged to the node's in-flight budget until the conversion ends.
 * The symbol table the push builds is charged there too, until the push
 * is freed.
 *
 * Conversion, in one pass over the samples:
 *  - functions and locations are resolved by id through a dense index when
 *    ids are 1..n in order (what Go, Java and most agents write), an array
 *    by id when the ids are sparse but small (a subset of a process's
 *    table), or a hash map otherwise (index_ids); each location's frames
 *    (root first) are computed once, on first use, so every sample is a
 *    walk over small precomputed arrays; a frame is its symbol's index in
 *    the push's symbol table (ingest_series_sym_at, 4 bytes), which every
 *    call tree of the push names it by while it grows
 *    (calltree_new_unnamed), so adding a frame looks up only its edge;
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

#include "common/alloc.h"
#include "common/grow.h"
#include "common/hash.h"
#include "node/ingest/ingest_int.h"

#define TYPE_STR_MAX 256
/* Sample types compared for a shared tree shape (see find_leaders): real
 * profiles have 1 to 6, but a push of 1,000 types non-zero in the same
 * samples would otherwise build 1,000 trees node by node (charged the
 * same either way, 2.7 times the CPU: test_ingest_hostile's many-types). */
#define SHAPE_MAX_TYPES 1024
#define MAX_SPAN_LABELS 8
#define PATH_MAX_NAME 256 /* an address frame: basename (<= 200) + offset */

/* ---- conversion state ---- */

typedef struct group {
    uint32_t pairs; /* offset into conv.pairs (2 int64 per pair) */
    uint32_t npairs;
    uint32_t series; /* offset into conv.gseries (ntypes entries) */
} group_t;

/* id -> index of a pprof table (functions, locations, mappings): none
 * when the ids are 1..n (the index is id - 1, as Go writes them); an
 * array by id when no id is over about ID_DIRECT_PER_ITEM times the
 * number of items (one load a lookup; 4 bytes an id, so
 * 4 * ID_DIRECT_PER_ITEM bytes an item, no more than the map's 32-64);
 * else a hash map. */
#define ID_DIRECT_PER_ITEM 8u
typedef struct id_index {
    bool dense;
    uint32_t *direct; /* by id: index + 1, 0 = no such id (ID_DIRECT_PER_ITEM * n + 8 ids) */
    uint64_t max;     /* the largest id in direct */
    u64map_t map;
} id_index_t;

typedef struct conv {
    pprof_ctx_t *ctx;
    const wire_profile_t *w;
    errmsg_t *em;
    /* Decoded memory held (charged to the push, given back at the end) and
     * its cap. */
    size_t held, cap;
    bool fn_id_from_loc; /* .NET repair: function i has location i's id */
    id_index_t fn_ix, loc_ix, map_ix;
    uint32_t *fn_sym; /* per function: its push symbol index, 0 = not yet computed */
    /* per string: its file index in the symbol table + 1, 0 = not yet;
     * made when a function first names a file (labels' strings are many
     * in some pushes, file names none) */
    uint32_t *str_file;
    uint32_t *loc_off; /* per location: offset into frames, UINT32_MAX = not yet */
    uint32_t *loc_len;
    uint32_t *frames; /* root-first frames of all resolved locations */
    size_t nframes, frames_cap;
    int64_t *values; /* scratch: one sample's values (ntypes) */
    uint32_t *sid;   /* scratch: one sample's stack-node id per type (stack cache) */
    /* The sample whose stack-cache lookup waits for the next sample's
     * decoding (its slot prefetched meanwhile): its values, stack (the
     * buffer ss->stack is not; the two swap), key and group's series. */
    struct {
        bool on;
        int64_t *values;
        uint32_t *stack;
        size_t stack_cap, depth, series;
        stack_key_t key;
    } pend;
    uint64_t *ids; /* scratch: one sample's location ids, then indices */
    size_t ids_cap;
    uint32_t *cls, *cls_map; /* scratch of find_leaders */
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

/* String i of the table (in the payload, not NUL-terminated), or an error. */
static int str_at(conv_t *c, int64_t i, const char **s, size_t *n)
{
    *s = "";
    *n = 0;
    if (i < 0 || (uint64_t)i >= c->w->nstrings)
        return bad(c, "string index out of range:", (uint64_t)i);
    *s = (const char *)c->w->data + c->w->strings[i].off;
    *n = c->w->strings[i].len;
    return 0;
}

/* Charges n more bytes of decoded memory: to the push's cap (413 naming
 * the settings) and to the node's in-flight budget. */
static int hold(conv_t *c, size_t n)
{
    if (n > c->cap || c->held > c->cap - n)
        return errmsg_set(c->em, ERR_TOO_LARGE,
                          "decoding the pprof needs more than %zu bytes (max-decoded-bytes, "
                          "ingest-decoded-per-byte)",
                          c->cap);
    int rc = ingest_charge(c->ctx->ss, n, "decoded pprof", c->em);
    if (rc == 0) c->held += n;
    return rc;
}

/* Zeroed n items of size sz (alloc_zeroed: the id indices are probed
 * before they are filled), charged first (hold). */
static int hold_calloc(conv_t *c, void *out, size_t n, size_t sz)
{
    void **p = out;
    int rc = hold(c, n * sz);
    if (rc < 0) return rc;
    *p = alloc_zeroed(n, sz);
    return *p == NULL ? errmsg_set(c->em, ERR_NOMEM, "out of memory") : 0;
}

/* ---- id indices ---- */

/* Gives back the n bytes of decoded memory hold charged for what was freed. */
static void unhold(conv_t *c, size_t n)
{
    c->held -= n;
    ingest_uncharge(c->ctx->ss, n);
}

static int duplicate(conv_t *c, const char *what, uint64_t id)
{
    return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: duplicate %s id %" PRIu64, what, id);
}

/* x's array by id for ids up to ID_DIRECT_PER_ITEM * n + 7, filled in one
 * pass over the ids: 1 when it holds them all, 0 when an id is larger
 * (the array freed), or an error. */
static int index_direct(conv_t *c, size_t n, uint64_t (*get)(const conv_t *, size_t), id_index_t *x,
                        const char *what)
{
    size_t cap = ID_DIRECT_PER_ITEM * n + 8, bytes = cap * sizeof *x->direct;
    int rc = hold_calloc(c, &x->direct, cap, sizeof *x->direct);
    if (rc < 0) return rc;
    x->max = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = get(c, i);
        if (id >= cap) {
            free(x->direct);
            x->direct = NULL;
            unhold(c, bytes);
            return 0;
        }
        if (id == 0) continue;
        if (x->direct[id] != 0) return duplicate(c, what, id);
        x->direct[id] = (uint32_t)i + 1;
        if (id > x->max) x->max = id;
    }
    return 1;
}

/* Builds id -> index for n items whose ids get(i) returns. Ids 0 are not
 * indexed (0 means "none" in pprof references). Duplicate ids are refused. */
static int index_ids(conv_t *c, size_t n, uint64_t (*get)(const conv_t *, size_t), id_index_t *x,
                     const char *what)
{
    x->dense = true;
    for (size_t i = 0; i < n && x->dense; i++)
        x->dense = get(c, i) == (uint64_t)i + 1;
    if (x->dense || n == 0) return 0;
    int rc = index_direct(c, n, get, x, what);
    if (rc != 0) return rc < 0 ? rc : 0;
    if (u64map_init(&x->map, n) < 0) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    if ((rc = hold(c, u64map_bytes(&x->map))) < 0) return rc;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = get(c, i);
        uint32_t old;
        if (id == 0) continue;
        if (u64map_get(&x->map, id, &old)) return duplicate(c, what, id);
        if (u64map_put(&x->map, id, (uint32_t)i) < 0)
            return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    }
    return 0;
}

static void index_free(id_index_t *x)
{
    free(x->direct);
    u64map_free(&x->map);
    memset(x, 0, sizeof *x);
}

static uint64_t loc_id(const conv_t *c, size_t i)
{
    return ingest_wire_id(c->w, c->w->locations[i]);
}
static uint64_t fn_id(const conv_t *c, size_t i)
{
    return c->fn_id_from_loc ? loc_id(c, i) : ingest_wire_id(c->w, c->w->functions[i]);
}
static uint64_t map_id(const conv_t *c, size_t i)
{
    return ingest_wire_id(c->w, c->w->mappings[i]);
}

/* Index of id (non-zero) among the n items of x, or -1. */
static int64_t lookup(const id_index_t *x, size_t n, uint64_t id)
{
    uint32_t v;
    if (x->dense) return id >= 1 && id <= n ? (int64_t)id - 1 : -1;
    if (x->direct != NULL) return id <= x->max ? (int64_t)x->direct[id] - 1 : -1;
    return id != 0 && u64map_get(&x->map, id, &v) ? (int64_t)v : -1;
}

/* Pyroscope's repair of .NET profiles whose functions all have id 0. */
static void repair_dotnet(conv_t *c)
{
    const wire_profile_t *w = c->w;
    if (w->nfunctions == 0 || w->nfunctions != w->nlocations) return;
    for (size_t i = 0; i < w->nfunctions; i++)
        if (ingest_wire_id(w, w->functions[i]) != 0) return;
    c->fn_id_from_loc = true;
}

static int build_indices(conv_t *c)
{
    const wire_profile_t *w = c->w;
    int rc;
    repair_dotnet(c);
    if ((rc = index_ids(c, w->nfunctions, fn_id, &c->fn_ix, "function")) < 0 ||
        (rc = index_ids(c, w->nlocations, loc_id, &c->loc_ix, "location")) < 0 ||
        (rc = index_ids(c, w->nmappings, map_id, &c->map_ix, "mapping")) < 0 ||
        (rc = hold_calloc(c, &c->fn_sym, w->nfunctions + 1, sizeof *c->fn_sym)) < 0 ||
        (rc = hold_calloc(c, &c->loc_off, w->nlocations + 1, sizeof *c->loc_off)) < 0 ||
        (rc = hold_calloc(c, &c->loc_len, w->nlocations + 1, sizeof *c->loc_len)) < 0)
        return rc;
    memset(c->loc_off, 0xff, (w->nlocations + 1) * sizeof *c->loc_off);
    return 0;
}

/* ---- symbols and frames ---- */

/* Checks the lengths of a symbol's name and file (max-symbol-len). */
static int check_len(conv_t *c, const char *name, size_t nn, const char *file, size_t fnl)
{
    size_t max = c->ctx->lim->max_symbol_len;
    if (nn > max || fnl > max)
        return errmsg_set(c->em, ERR_LIMIT,
                          "symbol '%.*s...' longer than %zu bytes (max-symbol-len)",
                          (int)(max < 60 ? max : 60), nn > max ? name : file, max);
    return 0;
}

/* Charges the growth of the symbol table since it held before bytes: the
 * table lives as long as the push, so its growth is charged to the push's
 * in-flight charge (given back when the push is freed). */
static int charge_symtab(conv_t *c, size_t before)
{
    size_t after = symtab_mem_bytes(c->ctx->symtab);
    if (after <= before) return 0;
    return ingest_charge(c->ctx->ss, after - before, "symbol table", c->em);
}

/* A symbol without a file (an address frame); *si its push index. */
static int intern(conv_t *c, const char *name, size_t nn, uint32_t *si)
{
    int rc = check_len(c, name, nn, "", 0);
    if (rc < 0) return rc;
    size_t before = symtab_mem_bytes(c->ctx->symtab);
    uint64_t sym;
    uint32_t at;
    if (symtab_intern_index(c->ctx->symtab, name, nn, "", 0, &sym, &at) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    *si = ingest_series_sym_at(at);
    return charge_symtab(c, before);
}

/* The symbol table's index of the file name that is string si (in range,
 * length checked by the caller), interned once per string; the table's
 * growth is charged by the caller. */
static int string_file(conv_t *c, int64_t si, const char *file, size_t fnl, uint32_t *index)
{
    *index = 0;
    if (fnl == 0) return 0;
    int rc;
    if (c->str_file == NULL &&
        (rc = hold_calloc(c, &c->str_file, c->w->nstrings, sizeof *c->str_file)) < 0)
        return rc;
    if (c->str_file[si] != 0) {
        *index = c->str_file[si] - 1;
        return 0;
    }
    if (symtab_file(c->ctx->symtab, file, fnl, index) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    c->str_file[si] = *index + 1;
    return 0;
}

/* The push symbol index of function fi, interned on first use. */
static int function_sym(conv_t *c, size_t fi, uint32_t *si)
{
    if (c->fn_sym[fi] != 0) {
        *si = c->fn_sym[fi];
        return 0;
    }
    wire_function_t f;
    const char *name, *file;
    size_t nn, fnl;
    uint32_t file_index;
    int rc;
    ingest_wire_function(c->w, fi, &f);
    if ((rc = str_at(c, f.name, &name, &nn)) < 0 || (rc = str_at(c, f.filename, &file, &fnl)) < 0)
        return rc;
    if (nn == 0 && (rc = str_at(c, f.system_name, &name, &nn)) < 0) return rc;
    if ((rc = check_len(c, name, nn, file, fnl)) < 0) return rc;
    size_t before = symtab_mem_bytes(c->ctx->symtab);
    if ((rc = string_file(c, f.filename, file, fnl, &file_index)) < 0) return rc;
    uint64_t sym = hash_symbol(name, nn, file, fnl);
    uint32_t at;
    if (symtab_put_file(c->ctx->symtab, sym, name, nn, file_index, &at) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    if ((rc = charge_symtab(c, before)) < 0) return rc;
    *si = c->fn_sym[fi] = ingest_series_sym_at(at);
    return 0;
}

/* Room for n more frames, the growth charged (hold) before it is
 * allocated; by half again, not doubling: the frames are held through the
 * whole conversion, beside the trees. */
static int frames_reserve(conv_t *c, size_t n)
{
    size_t old = c->frames_cap, need = c->nframes + n;
    if (need <= old) return 0;
    size_t cap = old < 64 ? 64 : old + old / 2;
    if (cap < need) cap = need;
    int rc = hold(c, (cap - old) * sizeof *c->frames);
    if (rc < 0) return rc;
    uint32_t *p = realloc(c->frames, cap * sizeof *p);
    if (p == NULL) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    c->frames = p;
    c->frames_cap = cap;
    return 0;
}

static int push_frame(conv_t *c, uint32_t si)
{
    int rc = frames_reserve(c, 1);
    if (rc == 0) c->frames[c->nframes++] = si;
    return rc;
}

/* The one frame of a location known only by its address. */
static int address_frame(conv_t *c, const wire_location_t *l)
{
    char name[PATH_MAX_NAME];
    uint64_t addr = l->address;
    int n = 0;
    if (l->mapping_id != 0) {
        int64_t mi = lookup(&c->map_ix, c->w->nmappings, l->mapping_id);
        if (mi < 0) return bad(c, "location references unknown mapping", l->mapping_id);
        wire_mapping_t mm, *m = &mm;
        ingest_wire_mapping(c->w, (size_t)mi, m);
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
    uint32_t si = 0;
    int rc = intern(c, name, (size_t)n, &si);
    return rc < 0 ? rc : push_frame(c, si);
}

/* Computes the root-first frames of location li once. The lines'
 * functions (index + 1, 0 for none) are first laid out last line first
 * (the outermost caller) where the frames go, then replaced by their
 * symbols in that order. */
static int location_frames(conv_t *c, size_t li)
{
    wire_location_t l;
    ingest_wire_location(c->w, li, &l);
    size_t start = c->nframes, n = l.nlines, o = start;
    int rc = frames_reserve(c, n);
    if (rc < 0) return rc;
    uint64_t fid;
    for (size_t k = 0; k < n && ingest_wire_next_line(&l, &fid); k++) {
        int64_t fi = fid == 0 ? -1 : lookup(&c->fn_ix, c->w->nfunctions, fid);
        if (fid != 0 && fi < 0) return bad(c, "line references unknown function", fid);
        c->frames[start + n - 1 - k] = (uint32_t)(fi + 1);
    }
    for (size_t k = start; k < start + n; k++) {
        uint32_t f = c->frames[k], si = 0;
        if (f == 0) continue;
        if ((rc = function_sym(c, f - 1, &si)) < 0) return rc;
        c->frames[o++] = si;
    }
    c->nframes = o;
    if (c->nframes == start) {
        int rc = address_frame(c, &l);
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
    const wire_profile_t *w = c->w;
    size_t n = w->nsample_types;
    char pt[TYPE_STR_MAX] = "", pu[TYPE_STR_MAX] = "";
    char(*st)[TYPE_STR_MAX] = NULL;
    char(*unit)[TYPE_STR_MAX] = NULL;
    const char **disp = NULL;
    c->ntypes = n;
    /* the tables below, and find_leaders' and the sample loop's per type */
    int rc = hold(c, (n + 1) * (2 * TYPE_STR_MAX + sizeof *disp + sizeof *c->type_name +
                                sizeof *c->type_id + 4 * sizeof(uint32_t) + sizeof(int64_t)));
    if (rc < 0) return rc;
    st = calloc(n + 1, TYPE_STR_MAX);
    unit = calloc(n + 1, TYPE_STR_MAX);
    disp = calloc(n + 1, sizeof *disp);
    c->type_name = calloc(n + 1, sizeof *c->type_name);
    c->type_id = calloc(n + 1, sizeof *c->type_id);
    if (st == NULL || unit == NULL || disp == NULL || c->type_name == NULL || c->type_id == NULL)
        rc = errmsg_set(c->em, ERR_NOMEM, "out of memory");
    if (rc == 0 && w->has_period_type &&
        ((rc = type_str(c, w->period_type_type, pt, false)) < 0 ||
         (rc = type_str(c, w->period_type_unit, pu, false)) < 0))
        goto out;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t ty, un;
        ingest_wire_value_type(w, i, &ty, &un);
        if ((rc = type_str(c, ty, st[i], true)) < 0 || (rc = type_str(c, un, unit[i], false)) < 0)
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

/* Reads sample si in one walk: values into c->values (when it has one per
 * sample type, else *ok is false), location ids into c->ids (with
 * with_ids; at most max_stack_depth + 1 are kept, a deeper sample is
 * refused anyway). */
static void read_sample(conv_t *c, size_t si, wire_sample_t *s, bool with_ids, bool *ok)
{
    ingest_wire_sample(c->w, si, s, (uint64_t *)c->values, c->ntypes, with_ids ? c->ids : NULL,
                       c->ids_cap);
    *ok = s->nvalues == c->ntypes;
}

/* A type non-zero in exactly the samples of an earlier type gets, in every
 * label group, the same stacks in the same order, so its trees have the same
 * shape: it follows that type (ingest_series_add_shadow), and a CPU profile
 * (samples, cpu) or a heap profile's pairs (alloc_objects, alloc_space;
 * inuse_objects, inuse_space) build each tree once. Samples with a wrong
 * value count are skipped here (the sample loop refuses the profile there).
 * Only when every type names a distinct series (distinct type ids), and for
 * at most SHAPE_MAX_TYPES types. One pass: the types are split into classes
 * of equal non-zero pattern, refined sample by sample (class, bit) -> new
 * class; a type follows the first type of its class. */
static int find_leaders(conv_t *c)
{
    size_t n = c->ntypes;
    c->leader = malloc((n + 1) * sizeof *c->leader);
    c->values = malloc((n + 1) * sizeof *c->values);
    c->sid = malloc((n + 1) * sizeof *c->sid);
    c->pend.values = malloc((n + 1) * sizeof *c->pend.values);
    c->cls = calloc(n + 1, sizeof *c->cls);
    c->cls_map = malloc((2 * n + 2) * sizeof *c->cls_map);
    if (c->leader == NULL || c->values == NULL || c->sid == NULL || c->pend.values == NULL ||
        c->cls == NULL || c->cls_map == NULL)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    for (size_t t = 0; t < n; t++)
        c->leader[t] = (uint32_t)t;
    bool share = n >= 2 && n <= SHAPE_MAX_TYPES;
    for (size_t t = 0; share && t < n; t++)
        for (size_t u = 0; share && u < t; u++)
            share = strcmp(c->type_id[t], c->type_id[u]) != 0;
    if (!share) return 0;
    for (size_t i = 0; i < c->w->nsamples; i++) {
        wire_sample_t s;
        bool ok;
        read_sample(c, i, &s, false, &ok);
        if (!ok) continue;
        memset(c->cls_map, 0xff, (2 * n + 2) * sizeof *c->cls_map);
        uint32_t next = 0;
        for (size_t t = 0; t < n; t++) {
            uint32_t key = 2 * c->cls[t] + (c->values[t] != 0);
            if (c->cls_map[key] == UINT32_MAX) c->cls_map[key] = next++;
            c->cls[t] = c->cls_map[key];
        }
    }
    for (size_t t = 1; t < n; t++)
        for (size_t u = 0; u < t; u++)
            if (c->cls[u] == c->cls[t]) {
                c->leader[t] = (uint32_t)u;
                break;
            }
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

/* Bytes the label-group tables hold, as allocated. */
static size_t group_bytes(const conv_t *c)
{
    return c->groups_cap * sizeof *c->groups + c->pairs_cap * sizeof *c->pairs +
           c->gseries_cap * sizeof *c->gseries + u64map_bytes(&c->group_map);
}

/* Creates the series of a new group, one per sample type. The tables'
 * growth is decoded memory (hold): a push of many label sets is charged. */
static int new_group(conv_t *c, const int64_t *pairs, size_t np, uint64_t key, uint32_t *gi)
{
    size_t before = group_bytes(c);
    if (GROW_FROM(c->groups, c->groups_cap, c->ngroups + 1, GROW_UNLIMITED, 64) < 0 ||
        GROW_FROM(c->pairs, c->pairs_cap, c->npairs + 2 * np, GROW_UNLIMITED, 64) < 0 ||
        GROW_FROM(c->gseries, c->gseries_cap, c->ngseries + c->ntypes, GROW_UNLIMITED, 64) < 0 ||
        u64map_put(&c->group_map, key, (uint32_t)c->ngroups) < 0)
        return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    int grown = hold(c, group_bytes(c) - before);
    if (grown < 0) return grown;
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
static int sample_labels(conv_t *c, const wire_sample_t *s, int64_t *pairs, size_t *np,
                         span_ref_t *spans, size_t *ns)
{
    wire_iter_t it;
    int64_t key, str;
    *np = *ns = 0;
    if (s->nlabels == 0) return 0;
    ingest_wire_iter(s, 0, &it);
    while (ingest_wire_next_label(&it, &key, &str)) {
        const char *k, *v;
        size_t kn, vn;
        int rc;
        if (str == 0) /* numeric label (or empty string): measurement, not identity */
            continue;
        if ((rc = str_at(c, key, &k, &kn)) < 0 || (rc = str_at(c, str, &v, &vn)) < 0) return rc;
        int kind = span_kind(k, kn);
        if (kind != 0) {
            if (*ns < MAX_SPAN_LABELS)
                spans[(*ns)++] = (span_ref_t){(uint8_t)kind, storage_span_id(v, vn)};
            continue;
        }
        if (*np >= c->ctx->lim->max_labels_per_series)
            return errmsg_set(c->em, ERR_LIMIT,
                              "sample has more than %zu labels (max-labels-per-series)",
                              c->ctx->lim->max_labels_per_series);
        pairs[2 * *np] = key;
        pairs[2 * *np + 1] = str;
        (*np)++;
    }
    sort_pairs(pairs, np);
    return 0;
}

/* Resolves location id k of the sample (from c->ids, or walking the sample
 * again past what c->ids holds) to its index, its frames computed once. */
static int resolve_location(conv_t *c, uint64_t id, int64_t *li)
{
    *li = lookup(&c->loc_ix, c->w->nlocations, id);
    if (*li < 0) return bad(c, "sample references unknown location", id);
    return c->loc_off[*li] == UINT32_MAX ? location_frames(c, (size_t)*li) : 0;
}

/* Fills ss->stack with the sample's frames, root first; *depth = count.
 * Every location is resolved first (in order), then the frames are copied,
 * each location's to its place counted from the end (location_id[0] is
 * the leaf). The ids were read by read_sample; a sample with more than
 * c->ids_cap of them (deeper than max_stack_depth whatever they are) is
 * walked again to resolve the rest, then refused for its depth. */
static int sample_stack(conv_t *c, const wire_sample_t *s, size_t *depth)
{
    series_set_t *ss = c->ctx->ss;
    size_t d = 0, n = s->nlocations;
    int64_t li;
    int rc;
    for (size_t k = 0; k < n && k < c->ids_cap; k++) {
        if ((rc = resolve_location(c, c->ids[k], &li)) < 0) return rc;
        c->ids[k] = (uint64_t)li; /* resolved in place: ids -> indices */
        d += c->loc_len[li];
    }
    if (n > c->ids_cap) {
        wire_iter_t it;
        uint64_t id;
        ingest_wire_iter(s, WIRE_SAMPLE_LOCATION_ID, &it);
        for (size_t k = 0; ingest_wire_next_u64(&it, &id); k++)
            if (k >= c->ids_cap) {
                if ((rc = resolve_location(c, id, &li)) < 0) return rc;
                d += c->loc_len[li];
            }
    }
    if ((rc = ingest_series_stack_reserve(ss, d, c->em)) < 0 ||
        (rc = ingest_series_charge_work(ss, d, c->em)) < 0) /* the copy below */
        return rc;
    size_t end = d;
    for (size_t k = 0; k < n; k++) {
        size_t i = (size_t)c->ids[k], off = c->loc_off[i], len = c->loc_len[i];
        end -= len;
        if (len == 1) /* most locations: no call */
            ss->stack[end] = c->frames[off];
        else
            memcpy(ss->stack + end, c->frames + off, len * sizeof *ss->stack);
    }
    *depth = d;
    return 0;
}

/* The sample (stack[0..depth), key k) by stack-node id when the stack
 * cache holds its stack in the table of every series it adds a value to: 1
 * when added so, 0 when not (it goes to the trees), or an error. Every
 * type of a sample takes one path, so a type that follows another's tree
 * shape (find_leaders) still gets exactly its leader's stacks. */
static int sample_by_id(conv_t *c, const uint32_t *series, const int64_t *values,
                        const stack_key_t *k)
{
    series_set_t *ss = c->ctx->ss;
    uint64_t token = 0;
    uint32_t id = 0;
    bool have = false;
    ss->cache_lookups++;
    for (size_t t = 0; t < c->ntypes; t++) {
        if (values[t] == 0) continue;
        uint64_t tt = ss->v[series[t]].token;
        if (!have || tt != token) { /* the types of a sample mostly share one table */
            stack_key_t at;
            ingest_stack_key_at(&at, k, tt);
            if (!ingest_stack_cache_get(ss->cache, &at, ss->cache_gen, &id)) return 0;
            token = tt;
            have = true;
        }
        c->sid[t] = id;
    }
    int rc = 0;
    for (size_t t = 0; t < c->ntypes && rc == 0; t++)
        if (values[t] != 0) rc = ingest_series_add_id(ss, series[t], c->sid[t], values[t], c->em);
    ss->cache_hits++;
    return rc < 0 ? rc : 1;
}

/* A sample into its series' trees (stack[0..depth), values per type; key
 * when the stack cache is on), with its span labels. */
static int sample_to_trees(conv_t *c, const uint32_t *series, const int64_t *values,
                           const uint32_t *stack, size_t depth, const stack_key_t *key,
                           const span_ref_t *spans, size_t ns)
{
    series_set_t *ss = c->ctx->ss;
    int rc;
    for (size_t t = 0; t < c->ntypes; t++) {
        int64_t v = values[t];
        if (v == 0) continue;
        uint32_t lt = c->leader[t];
        if (lt == t) {
            rc = ingest_series_add(ss, series[t], stack, depth, v, c->em);
            if (rc == 0 && key != NULL) rc = ingest_series_learn(ss, series[t], key, c->em);
        } else {
            rc = ingest_series_add_shadow(ss, series[t], series[lt], depth, v, values[lt], c->em);
        }
        if (rc < 0) return rc;
        uint32_t node = ss->v[series[lt]].last_node; /* this stack's, in either case */
        for (size_t k = 0; k < ns; k++)
            if ((rc = ingest_series_add_span(ss, series[t], spans[k].kind, spans[k].id, node, depth,
                                             v, c->em)) < 0)
                return rc;
    }
    return 0;
}

/* The pending sample (c->pend) added: by stack-node id when the stack
 * cache holds its stack, else into the trees. */
static int finish_pending(conv_t *c)
{
    if (!c->pend.on) return 0;
    c->pend.on = false;
    const uint32_t *series = c->gseries + c->pend.series;
    int rc = sample_by_id(c, series, c->pend.values, &c->pend.key);
    if (rc != 0) return rc < 0 ? rc : 0;
    return sample_to_trees(c, series, c->pend.values, c->pend.stack, c->pend.depth, &c->pend.key,
                           NULL, 0);
}

/* The series set's stack buffer and the pending sample's trade places. */
static void swap_stacks(series_set_t *ss, conv_t *c)
{
    uint32_t *st = ss->stack;
    size_t cap = ss->stack_cap;
    ss->stack = c->pend.stack;
    ss->stack_cap = c->pend.stack_cap;
    c->pend.stack = st;
    c->pend.stack_cap = cap;
}

/* The sample just decoded (c->values, ss->stack, key k, the series of the
 * group at series) becomes the pending one, its first lookup's slot
 * prefetched: a stack-cache lookup is a cache miss, which the next
 * sample's decoding now hides. Values and stack buffers swap, so the next
 * sample decodes into the others. */
static void make_pending(conv_t *c, size_t series, size_t depth, const stack_key_t *k)
{
    series_set_t *ss = c->ctx->ss;
    const uint32_t *sv = c->gseries + series;
    for (size_t t = 0; t < c->ntypes; t++)
        if (c->values[t] != 0) {
            stack_key_t at;
            ingest_stack_key_at(&at, k, ss->v[sv[t]].token);
            ingest_stack_cache_prefetch(ss->cache, &at);
            break;
        }
    int64_t *v = c->values;
    c->values = c->pend.values;
    c->pend.values = v;
    swap_stacks(ss, c);
    c->pend.series = series;
    c->pend.depth = depth;
    c->pend.key = *k;
    c->pend.on = true;
}

/* The earlier error of the pending sample's (rc_pend) and this one's (rc). */
static int first_error(int rc_pend, int rc)
{
    return rc_pend < 0 ? rc_pend : rc;
}

/* Sample si decoded; with the stack cache on and no span labels, it waits
 * (make_pending) while the pending one is added, so every sample is added
 * in order. */
static int one_sample(conv_t *c, size_t si, int64_t *pairs)
{
    span_ref_t spans[MAX_SPAN_LABELS];
    size_t np = 0, ns = 0, depth = 0;
    uint32_t g = 0;
    int rc;
    wire_sample_t s;
    bool ok;
    read_sample(c, si, &s, true, &ok);
    if (!ok)
        return first_error(
            finish_pending(c),
            errmsg_set(
                c->em, ERR_UNPARSEABLE,
                "invalid pprof: sample %zu has %zu values but the profile has %zu sample types", si,
                s.nvalues, c->ntypes));
    if ((rc = sample_labels(c, &s, pairs, &np, spans, &ns)) < 0 ||
        (rc = find_group(c, pairs, np, &g)) < 0 || (rc = sample_stack(c, &s, &depth)) < 0)
        return first_error(finish_pending(c), rc);
    const uint32_t *stack = c->ctx->ss->stack;
    stack_key_t key;
    bool cached = c->ctx->ss->cache != NULL;
    if (cached) ingest_stack_key(&key, c->ctx->ss->tenant_hash, c->ctx->symtab, stack, depth);
    if (cached && ns == 0) {
        size_t series = c->groups[g].series;
        rc = finish_pending(c);
        make_pending(c, series, depth, &key);
        return rc;
    }
    if ((rc = finish_pending(c)) < 0) return rc;
    return sample_to_trees(c, c->gseries + c->groups[g].series, c->values, stack, depth,
                           cached ? &key : NULL, spans, ns);
}

/* The sample loop's end: the pending sample added, and the larger stack
 * buffer left in ss->stack (the span trees use it as scratch as deep as
 * any sample's stack). */
static int samples_end(conv_t *c, int rc)
{
    series_set_t *ss = c->ctx->ss;
    if (rc == 0) rc = finish_pending(c);
    c->pend.on = false;
    if (c->pend.stack_cap > ss->stack_cap) swap_stacks(ss, c);
    return rc;
}

static int check_header(conv_t *c)
{
    const wire_profile_t *w = c->w;
    if (w->nstrings == 0 || w->strings[0].len != 0)
        return errmsg_set(c->em, ERR_UNPARSEABLE,
                          "not a pprof profile: string_table[0] must be the empty string");
    if (w->nsamples > c->ctx->lim->max_samples)
        return errmsg_set(c->em, ERR_LIMIT, "profile has %zu samples, more than %zu (max-samples)",
                          w->nsamples, c->ctx->lim->max_samples);
    if (w->nsamples > 0 && w->nsample_types == 0)
        return errmsg_set(c->em, ERR_UNPARSEABLE, "invalid pprof: samples but no sample types");
    if (w->nsample_types > c->ctx->lim->max_series_per_profile)
        return errmsg_set(c->em, ERR_LIMIT,
                          "profile has %zu sample types, more than %zu series allowed",
                          w->nsample_types, c->ctx->lim->max_series_per_profile);
    return 0;
}

static int convert(conv_t *c)
{
    int rc;
    if ((rc = check_header(c)) < 0 || (rc = build_indices(c)) < 0 || (rc = build_types(c)) < 0 ||
        (rc = find_leaders(c)) < 0)
        return rc;
    if (u64map_init(&c->group_map, 16) < 0) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    c->ids_cap = c->ctx->lim->max_stack_depth + 1;
    size_t npairs = 2 * c->ctx->lim->max_labels_per_series + 2;
    if ((rc = hold(c, u64map_bytes(&c->group_map) + npairs * sizeof(int64_t))) < 0 ||
        (rc = hold_calloc(c, &c->ids, c->ids_cap, sizeof *c->ids)) < 0)
        return rc;
    int64_t *pairs = malloc(npairs * sizeof *pairs);
    if (pairs == NULL) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c->w->nsamples; i++)
        rc = one_sample(c, i, pairs);
    rc = samples_end(c, rc);
    free(pairs);
    return rc;
}

static void conv_free(conv_t *c)
{
    index_free(&c->fn_ix);
    index_free(&c->loc_ix);
    index_free(&c->map_ix);
    u64map_free(&c->group_map);
    free(c->fn_sym);
    free(c->loc_off);
    free(c->loc_len);
    free(c->frames);
    free(c->str_file);
    free(c->type_name);
    free(c->type_id);
    free(c->leader);
    free(c->values);
    free(c->sid);
    free(c->pend.values);
    free(c->pend.stack);
    free(c->ids);
    free(c->cls);
    free(c->cls_map);
    free(c->groups);
    free(c->pairs);
    free(c->gseries);
}

/* The cap on decoded memory: in proportion to the message, never over
 * max_decoded_bytes (see the comment at the top). */
static size_t decode_cap(const ingest_limits_t *l, size_t len)
{
    size_t v;
    if (__builtin_mul_overflow(l->decoded_per_byte, len, &v)) v = SIZE_MAX;
    if (v < INGEST_DECODED_FLOOR) v = INGEST_DECODED_FLOOR;
    return v < l->max_decoded_bytes ? v : l->max_decoded_bytes;
}

/* Checks and indexes the message: the index is the first decoded memory. */
static int open_wire(conv_t *c, wire_profile_t *w, const uint8_t *data, size_t len)
{
    int rc = ingest_wire_open(w, data, len);
    if (rc == ERR_TOO_LARGE) return errmsg_set(c->em, rc, "a pprof message over 4 GiB is not read");
    if (rc < 0)
        return errmsg_set(c->em, ERR_UNPARSEABLE,
                          "body is not a pprof protobuf (malformed, truncated or a legacy format)");
    if ((rc = hold(c, ingest_wire_index_bytes(w))) < 0) return rc;
    if (ingest_wire_index(w) < 0) return errmsg_set(c->em, ERR_NOMEM, "out of memory");
    return 0;
}

int ingest_pprof(const uint8_t *data, size_t len, pprof_ctx_t *ctx, errmsg_t *em)
{
    wire_profile_t w;
    conv_t c = {.ctx = ctx, .w = &w, .em = em, .cap = decode_cap(ctx->lim, len)};
    int rc = open_wire(&c, &w, data, len);
    if (rc == 0) rc = convert(&c);
    /* Pyroscope's fixTime: a time_nanos in 1970 is a unit mistake (us); ignore it. */
    ctx->time_ns = w.time_nanos >= 31536000LL * 1000000000LL ? w.time_nanos : 0;
    conv_free(&c);
    ingest_wire_free(&w);
    ingest_uncharge(ctx->ss, c.held);
    return rc;
}
