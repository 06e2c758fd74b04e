/* pprof.c — the merged tree as a gzipped pprof Profile.
 *
 * One sample type (sample_type:sample_unit of the profile type id), one
 * Function per distinct symbol (name, system_name and filename), one Location
 * per Function, and one Sample per node with a non-zero self whose stack is
 * the node's path, leaf first, in preorder of the name-sorted tree. Its total equals the tree's
 * root total. The period is 10 ms (100 Hz, Pyroscope's default rate) for nanosecond CPU types and 1
 * otherwise: the stored blocks do not keep the original period.
 */
#define _GNU_SOURCE /* qsort_r */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/proto/pprof.pb-c.h"
#include "query/query_int.h"

typedef struct pp {
    const sorted_tree_t *st;
    strmap_t strs;
    uint32_t *func_of; /* node -> function index (0-based) */
    size_t nfunc;
    Perftools__Profiles__Function *funcs;
    Perftools__Profiles__Function **funcp;
    Perftools__Profiles__Location *locs;
    Perftools__Profiles__Location **locp;
    Perftools__Profiles__Line *lines;
    Perftools__Profiles__Line **linep;
    Perftools__Profiles__Sample *samples;
    Perftools__Profiles__Sample **samplep;
    size_t nsamples;
    uint64_t *loc_pool;
    int64_t *val_pool;
    ProtobufCBinaryData *table;
    ptype_t pt;    /* the string table borrows its parts */
    buf_t *out;    /* the answer: this working memory is held beside it (buf_beside_take) */
    size_t held;   /* taken beside out */
    size_t tables; /* of held: the string table's map, as last measured */
} pp_t;

/* Takes n bytes beside the answer before they are allocated. */
static int pp_take(pp_t *p, size_t n)
{
    int rc = buf_beside_take(p->out, n);
    if (rc == 0) p->held += n;
    return rc;
}

static void pp_give(pp_t *p, size_t n)
{
    buf_beside_give(p->out, n);
    p->held -= n;
}

/* The string table's map, measured after it grew (by doubling). */
static int pp_tables(pp_t *p)
{
    size_t now = p->strs.cap * sizeof *p->strs.slots +
                 p->strs.strs_cap * (sizeof *p->strs.strs + sizeof *p->strs.lens);
    if (now < p->tables) pp_give(p, p->tables - now);
    if (now > p->tables && pp_take(p, now - p->tables) != 0) return ERR_UNAVAILABLE;
    p->tables = now;
    return 0;
}

static int str_idx(pp_t *p, const char *s, int64_t *out)
{
    uint32_t i;
    int rc = strmap_intern(&p->strs, s, strlen(s), &i);
    *out = i;
    return rc;
}

static int sym_cmp(const void *a, const void *b, void *arg)
{
    const calltree_t *t = arg;
    uint64_t x = calltree_sym(t, *(const uint32_t *)a), y = calltree_sym(t, *(const uint32_t *)b);
    return x < y ? -1 : x > y;
}

/* Assigns one function per distinct symbol (nodes sorted by symbol). */
static int make_functions(pp_t *p)
{
    const sorted_tree_t *st = p->st;
    size_t n = st->n;
    /* per node: the order (until sorted), the function of each node, and a
     * function, location and line with their pointers, per distinct symbol */
    size_t per = sizeof(uint32_t) + sizeof *p->funcs + sizeof *p->locs + sizeof *p->lines +
                 3 * sizeof(void *);
    int rc = pp_take(p, n * (per + sizeof(uint32_t)));
    if (rc != 0) return rc;
    uint32_t *order = malloc(n * sizeof *order);
    p->func_of = calloc(n, sizeof *p->func_of);
    p->funcs = calloc(n, sizeof *p->funcs);
    p->funcp = calloc(n, sizeof *p->funcp);
    p->locs = calloc(n, sizeof *p->locs);
    p->locp = calloc(n, sizeof *p->locp);
    p->lines = calloc(n, sizeof *p->lines);
    p->linep = calloc(n, sizeof *p->linep);
    rc = (order && p->func_of && p->funcs && p->funcp && p->locs && p->locp && p->lines && p->linep)
             ? 0
             : ERR_NOMEM;
    for (size_t i = 1; rc == 0 && i < n; i++)
        order[i - 1] = (uint32_t)i;
    if (rc == 0 && n > 1) qsort_r(order, n - 1, sizeof *order, sym_cmp, (void *)st->t);
    for (size_t k = 0; rc == 0 && k + 1 < n; k++) {
        uint32_t i = order[k];
        if (k > 0 && calltree_sym(st->t, order[k - 1]) == calltree_sym(st->t, i)) {
            p->func_of[i] = p->func_of[order[k - 1]];
            continue;
        }
        size_t f = p->nfunc++;
        p->func_of[i] = (uint32_t)f;
        Perftools__Profiles__Function *fn = &p->funcs[f];
        perftools__profiles__function__init(fn);
        fn->id = f + 1;
        rc = str_idx(p, st->name[i], &fn->name);
        fn->system_name = fn->name;
        if (rc == 0) rc = str_idx(p, st->file[i], &fn->filename);
        p->funcp[f] = fn;
        perftools__profiles__line__init(&p->lines[f]);
        p->lines[f].function_id = f + 1;
        p->linep[f] = &p->lines[f];
        perftools__profiles__location__init(&p->locs[f]);
        p->locs[f].id = f + 1;
        p->locs[f].n_line = 1;
        p->locs[f].line = &p->linep[f];
        p->locp[f] = &p->locs[f];
    }
    free(order);
    pp_give(p, n * sizeof(uint32_t));
    return rc != 0 ? rc : pp_tables(p);
}

/* Counts samples and their stack entries; refuses early when the stacks alone
 * would exceed the output cap (each id costs at least one byte). */
static int count_samples(pp_t *p, size_t max_bytes, size_t *nsamples, size_t *nlocs,
                         uint32_t *depth)
{
    const calltree_t *t = p->st->t;
    *nsamples = *nlocs = 0;
    /* Breadth-first from the root, so a parent's depth is known before its
     * children's whatever the node indices are. */
    uint32_t *queue = malloc(p->st->n * sizeof *queue);
    if (queue == NULL) return ERR_NOMEM;
    size_t qn = 0;
    depth[0] = 0;
    queue[qn++] = 0;
    for (size_t q = 0; q < qn; q++) {
        uint32_t i = queue[q];
        for (uint32_t k = p->st->off[i]; k < p->st->off[i + 1]; k++) {
            depth[p->st->kids[k]] = depth[i] + 1;
            queue[qn++] = p->st->kids[k];
        }
    }
    free(queue);
    for (uint32_t i = 0; i < p->st->n; i++) {
        if (calltree_self(t, i) == 0) continue;
        (*nsamples)++;
        *nlocs += depth[i];
        if (*nlocs > max_bytes) return ERR_TOO_LARGE;
    }
    return 0;
}

static void fill_sample(pp_t *p, uint32_t node, uint32_t d, uint64_t *locs, int64_t *val)
{
    const calltree_t *t = p->st->t;
    Perftools__Profiles__Sample *s = &p->samples[p->nsamples];
    perftools__profiles__sample__init(s);
    size_t k = 0;
    for (uint32_t i = node; i != 0 && k < d; i = calltree_parent(t, i))
        locs[k++] = p->func_of[i] + 1; /* location id == function id */
    *val = calltree_self(t, node);
    s->n_location_id = k;
    s->location_id = locs;
    s->n_value = 1;
    s->value = val;
    p->samplep[p->nsamples++] = s;
}

static int make_samples(pp_t *p, size_t max_bytes)
{
    size_t ns, nl;
    /* depth, and count_samples' queue or the walk's stack */
    size_t work = 2 * p->st->n * sizeof(uint32_t);
    int rc = pp_take(p, work);
    if (rc != 0) return rc;
    uint32_t *depth = malloc(p->st->n * sizeof *depth);
    if (depth == NULL) return ERR_NOMEM;
    rc = count_samples(p, max_bytes, &ns, &nl, depth);
    if (rc == 0)
        rc = pp_take(p, (ns + 1) * (sizeof *p->samples + sizeof *p->samplep + sizeof *p->val_pool) +
                            (nl + 1) * sizeof *p->loc_pool);
    if (rc == 0) {
        p->samples = calloc(ns + 1, sizeof *p->samples);
        p->samplep = calloc(ns + 1, sizeof *p->samplep);
        p->loc_pool = malloc((nl + 1) * sizeof *p->loc_pool);
        p->val_pool = malloc((ns + 1) * sizeof *p->val_pool);
        if (!p->samples || !p->samplep || !p->loc_pool || !p->val_pool) rc = ERR_NOMEM;
    }
    /* Samples in preorder of the name-sorted tree, so the bytes depend on the
     * tree's content, not on the order its nodes were merged in. */
    uint32_t *stack = rc == 0 ? malloc(p->st->n * sizeof *stack) : NULL;
    if (rc == 0 && stack == NULL) rc = ERR_NOMEM;
    size_t used = 0, sp = 0;
    if (rc == 0) stack[sp++] = 0;
    while (rc == 0 && sp > 0) {
        uint32_t i = stack[--sp];
        for (uint32_t k = p->st->off[i + 1]; k > p->st->off[i]; k--)
            stack[sp++] = p->st->kids[k - 1];
        if (calltree_self(p->st->t, i) == 0) continue;
        fill_sample(p, i, depth[i], p->loc_pool + used, p->val_pool + p->nsamples);
        used += depth[i];
    }
    free(stack);
    free(depth);
    pp_give(p, work);
    return rc;
}

/* The gzip stream: zlib's deflate at level 6, fed by protobuf-c as it
 * packs the profile (no packed copy is made), writing into the answer a
 * chunk at a time. Every block zlib allocates (its state, window, hash
 * chains and pending buffer: about 270 KB at this level) is taken beside
 * the answer before it is made and given back when freed; the answer's
 * buffer is charged as it grows (buf_charge). */
#define PP_GZIP_LEVEL 1
#define PP_GZIP_WINDOW (15 + 16) /* 32 KiB window, gzip wrapper */
#define PP_GZIP_MEM 8
#define PP_GZIP_CHUNK ((size_t)64 << 10) /* output room asked per deflate call */
#define PP_GZIP_STAGE ((size_t)64 << 10) /* packed bytes gathered per deflate call */

typedef struct gz {
    ProtobufCBuffer base; /* first: protobuf-c calls base.append */
    z_stream z;
    buf_t *out;
    uint8_t *stage; /* PP_GZIP_STAGE bytes: protobuf-c appends a few at a time */
    size_t staged;
    int rc; /* the first error; later appends do nothing */
} gz_t;

/* A block of zlib's, its size in front (zfree is not told it). */
typedef union gz_block {
    size_t n;
    max_align_t align;
} gz_block_t;

static voidpf gz_alloc(voidpf opaque, uInt items, uInt size)
{
    gz_t *g = opaque;
    size_t n = sizeof(gz_block_t) + (size_t)items * size;
    if (buf_beside_take(g->out, n) != 0) {
        g->rc = ERR_UNAVAILABLE;
        return Z_NULL;
    }
    gz_block_t *b = malloc(n);
    if (b == NULL) {
        buf_beside_give(g->out, n);
        return Z_NULL;
    }
    b->n = n;
    return b + 1;
}

static void gz_free(voidpf opaque, voidpf p)
{
    gz_t *g = opaque;
    if (p == Z_NULL) return;
    gz_block_t *b = (gz_block_t *)p - 1;
    buf_beside_give(g->out, b->n);
    free(b);
}

/* Deflates z's input into the answer (flush: Z_NO_FLUSH until the input
 * is taken, Z_FINISH until the stream ends), asking for room a chunk at a
 * time. */
static int gz_deflate(gz_t *g, int flush)
{
    buf_t *out = g->out;
    for (;;) {
        size_t room = out->max - out->len < PP_GZIP_CHUNK ? out->max - out->len : PP_GZIP_CHUNK;
        int rc = room > 0 ? buf_reserve(out, room) : ERR_TOO_LARGE;
        if (rc != 0) return rc;
        room = out->cap - out->len - 1; /* the NUL stays */
        g->z.next_out = out->data + out->len;
        g->z.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt before = g->z.avail_out;
        int zr = deflate(&g->z, flush);
        out->len += before - g->z.avail_out;
        out->data[out->len] = 0;
        if (zr == Z_STREAM_END) return 0;
        if (zr != Z_OK && zr != Z_BUF_ERROR) return ERR_INTERNAL;
        if (flush == Z_NO_FLUSH && g->z.avail_in == 0 && g->z.avail_out > 0) return 0;
    }
}

/* Deflates n bytes at p (Z_NO_FLUSH). */
static int gz_feed(gz_t *g, const uint8_t *p, size_t n)
{
    int rc = 0;
    while (rc == 0 && n > 0) {
        uInt k = n > UINT_MAX ? UINT_MAX : (uInt)n;
        g->z.next_in = (Bytef *)p;
        g->z.avail_in = k;
        rc = gz_deflate(g, Z_NO_FLUSH);
        p += k;
        n -= k;
    }
    return rc;
}

/* Gathers the packed bytes into the stage, deflated when it fills (a
 * large piece goes straight through). */
static void gz_append(ProtobufCBuffer *base, size_t len, const uint8_t *data)
{
    gz_t *g = (gz_t *)base;
    if (g->rc != 0) return;
    if (g->staged + len > PP_GZIP_STAGE) {
        g->rc = gz_feed(g, g->stage, g->staged);
        g->staged = 0;
    }
    if (g->rc == 0 && len >= PP_GZIP_STAGE) {
        g->rc = gz_feed(g, data, len);
    } else if (g->rc == 0) {
        memcpy(g->stage + g->staged, data, len);
        g->staged += len;
    }
}

static int pack_gzip(const Perftools__Profiles__Profile *prof, buf_t *out)
{
    gz_t g = {.base = {gz_append}, .out = out};
    int rc = buf_beside_take(out, PP_GZIP_STAGE);
    if (rc != 0) return rc;
    if ((g.stage = malloc(PP_GZIP_STAGE)) == NULL) {
        buf_beside_give(out, PP_GZIP_STAGE);
        return ERR_NOMEM;
    }
    g.z.zalloc = gz_alloc;
    g.z.zfree = gz_free;
    g.z.opaque = &g;
    int zr = deflateInit2(&g.z, PP_GZIP_LEVEL, Z_DEFLATED, PP_GZIP_WINDOW, PP_GZIP_MEM,
                          Z_DEFAULT_STRATEGY);
    if (zr == Z_OK) {
        perftools__profiles__profile__pack_to_buffer(prof, &g.base);
        if (g.rc == 0) g.rc = gz_feed(&g, g.stage, g.staged);
        if (g.rc == 0) g.rc = gz_deflate(&g, Z_FINISH);
        deflateEnd(&g.z);   /* gives back every block */
    } else if (g.rc == 0) { /* zlib freed what it had made */
        g.rc = ERR_NOMEM;
    }
    free(g.stage);
    buf_beside_give(out, PP_GZIP_STAGE);
    return g.rc;
}

static int make_header(pp_t *p, const char *profile_type, Perftools__Profiles__ValueType *vt,
                       Perftools__Profiles__ValueType *per, int64_t *period)
{
    ptype_t *pt = &p->pt;
    if (profile_type == NULL || query_ptype_parse(profile_type, pt) != 0)
        return ERR_INVALID_ARGUMENT;
    int rc = str_idx(p, pt->sample_type, &vt->type);
    if (rc == 0) rc = str_idx(p, pt->sample_unit, &vt->unit);
    if (rc == 0) rc = str_idx(p, pt->period_type, &per->type);
    if (rc == 0) rc = str_idx(p, pt->period_unit, &per->unit);
    int cpu_ns =
        strcmp(pt->period_unit, "nanoseconds") == 0 && strcmp(pt->name, "process_cpu") == 0;
    *period = cpu_ns ? 10000000 : 1;
    return rc;
}

static int build_and_pack(pp_t *p, const char *profile_type, int64_t time_ns, int64_t duration_ns,
                          buf_t *out)
{
    Perftools__Profiles__ValueType vt = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    Perftools__Profiles__ValueType per = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    Perftools__Profiles__ValueType *vtp = &vt;
    Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
    int64_t empty;
    int rc = str_idx(p, "", &empty); /* string_table[0] must be "" */
    if (rc == 0) rc = make_header(p, profile_type, &vt, &per, &prof.period);
    if (rc == 0) rc = make_functions(p);
    if (rc == 0) rc = make_samples(p, out->max);
    if (rc == 0) rc = pp_tables(p);
    if (rc == 0) rc = pp_take(p, p->strs.n * sizeof *p->table);
    if (rc == 0 && (p->table = calloc(p->strs.n, sizeof *p->table)) == NULL) rc = ERR_NOMEM;
    if (rc != 0) return rc;
    for (size_t i = 0; i < p->strs.n; i++)
        p->table[i] =
            (ProtobufCBinaryData){.len = p->strs.lens[i], .data = (uint8_t *)p->strs.strs[i]};
    prof.n_sample_type = 1;
    prof.sample_type = &vtp;
    prof.period_type = &per;
    prof.n_sample = p->nsamples;
    prof.sample = p->samplep;
    prof.n_location = prof.n_function = p->nfunc;
    prof.location = p->locp;
    prof.function = p->funcp;
    prof.n_string_table = p->strs.n;
    prof.string_table = p->table;
    prof.time_nanos = time_ns;
    prof.duration_nanos = duration_ns;
    return pack_gzip(&prof, out);
}

int query_encode_pprof(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                       int64_t time_ns, int64_t duration_ns, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms, out);
    if (rc != 0) return rc;
    pp_t p = {.st = &st, .out = out};
    strmap_init(&p.strs);
    rc = build_and_pack(&p, profile_type, time_ns, duration_ns, out);
    free(p.func_of);
    free(p.funcs);
    free(p.funcp);
    free(p.locs);
    free(p.locp);
    free(p.lines);
    free(p.linep);
    free(p.samples);
    free(p.samplep);
    free(p.loc_pool);
    free(p.val_pool);
    free(p.table);
    strmap_free(&p.strs);
    pp_give(&p, p.held); /* all of it freed */
    query_sorted_tree_free(&st);
    return rc;
}
