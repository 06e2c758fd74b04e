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

/* The packed profile is compressed in gzip members of this many bytes (the
 * last one shorter): a file of concatenated members is one gzip file (RFC
 * 1952 2.2), and a stream compresses each member as soon as it is packed,
 * so the whole answer and its stream are the same bytes. */
#define PP_MEMBER_BYTES (256u << 10)
/* zlib's deflate at level 1 (level 6 doubled the encode's time for 1 %
 * fewer bytes), 32 KiB window, gzip wrapper. */
#define PP_GZIP_LEVEL 1
#define PP_GZIP_WINDOW (15 + 16)
#define PP_GZIP_MEM 8

/* One deflate stream, reset for each member. Every block zlib allocates (its
 * state, window, hash chains and pending buffer, about 270 KB, all made by
 * pp_gz_open) is taken beside charge before it is made and given back when
 * freed; held is their sum. A stream that takes its blocks over sets charge
 * to NULL: they are then counted by the stream. */
typedef struct pp_gz {
    z_stream z;
    buf_t *charge;
    size_t held;
    int refused; /* a block the budget did not allow */
    int open;
} pp_gz_t;

/* A block of zlib's, its size in front (zfree is not told it). */
typedef union pp_gz_block {
    size_t n;
    max_align_t align;
} pp_gz_block_t;

static voidpf pp_gz_alloc(voidpf opaque, uInt items, uInt size)
{
    pp_gz_t *g = opaque;
    size_t n = sizeof(pp_gz_block_t) + (size_t)items * size;
    if (g->charge != NULL && buf_beside_take(g->charge, n) != 0) {
        g->refused = 1;
        return Z_NULL;
    }
    pp_gz_block_t *b = malloc(n);
    if (b == NULL) {
        if (g->charge != NULL) buf_beside_give(g->charge, n);
        return Z_NULL;
    }
    b->n = n;
    g->held += n;
    return b + 1;
}

static void pp_gz_free(voidpf opaque, voidpf p)
{
    pp_gz_t *g = opaque;
    if (p == Z_NULL) return;
    pp_gz_block_t *b = (pp_gz_block_t *)p - 1;
    g->held -= b->n;
    if (g->charge != NULL) buf_beside_give(g->charge, b->n);
    free(b);
}

static int pp_gz_open(pp_gz_t *g, buf_t *charge)
{
    *g = (pp_gz_t){.charge = charge};
    g->z.zalloc = pp_gz_alloc;
    g->z.zfree = pp_gz_free;
    g->z.opaque = g;
    int zr = deflateInit2(&g->z, PP_GZIP_LEVEL, Z_DEFLATED, PP_GZIP_WINDOW, PP_GZIP_MEM,
                          Z_DEFAULT_STRATEGY);
    if (zr != Z_OK) return g->refused ? ERR_UNAVAILABLE : ERR_NOMEM; /* zlib freed its blocks */
    g->open = 1;
    return 0;
}

static void pp_gz_close(pp_gz_t *g)
{
    if (g->open) deflateEnd(&g->z); /* gives back every block */
    g->open = 0;
}

/* Appends n (at most PP_MEMBER_BYTES) bytes of raw compressed as one gzip
 * member to out. */
static int gzip_member(pp_gz_t *g, const uint8_t *raw, size_t n, buf_t *out)
{
    if (deflateReset(&g->z) != Z_OK) return ERR_INTERNAL;
    size_t bound = deflateBound(&g->z, (uLong)n);
    int rc = buf_reserve(out, bound);
    if (rc != 0) return rc;
    g->z.next_in = (Bytef *)raw;
    g->z.avail_in = (uInt)n;
    g->z.next_out = out->data + out->len;
    g->z.avail_out = (uInt)bound;
    if (deflate(&g->z, Z_FINISH) != Z_STREAM_END) return ERR_INTERNAL;
    out->len += bound - g->z.avail_out;
    out->data[out->len] = 0;
    return 0;
}

static int pack_gzip(const Perftools__Profiles__Profile *prof, buf_t *out)
{
    size_t n = perftools__profiles__profile__get_packed_size(prof);
    if (n > out->max) return ERR_TOO_LARGE;
    /* the packed profile beside the answer; the compressor's blocks too */
    int rc = buf_beside_take(out, n ? n : 1);
    if (rc != 0) return rc;
    uint8_t *raw = malloc(n ? n : 1);
    pp_gz_t g;
    rc = raw != NULL ? pp_gz_open(&g, out) : ERR_NOMEM;
    if (rc == 0) {
        perftools__profiles__profile__pack(prof, raw);
        for (size_t off = 0; rc == 0 && (off < n || off == 0); off += PP_MEMBER_BYTES)
            rc = gzip_member(&g, raw + off, n - off < PP_MEMBER_BYTES ? n - off : PP_MEMBER_BYTES,
                             out);
        pp_gz_close(&g);
    }
    free(raw);
    buf_beside_give(out, n ? n : 1);
    return rc;
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

/* The string table of p, as the profile's bytes fields. */
static int make_table(pp_t *p)
{
    int rc = pp_tables(p);
    if (rc == 0) rc = pp_take(p, p->strs.n * sizeof *p->table);
    if (rc == 0 && (p->table = calloc(p->strs.n, sizeof *p->table)) == NULL) rc = ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < p->strs.n; i++)
        p->table[i] =
            (ProtobufCBinaryData){.len = p->strs.lens[i], .data = (uint8_t *)p->strs.strs[i]};
    return rc;
}

/* What every form of the profile holds besides its samples: the sample
 * and period types, the functions and locations, the string table. */
typedef struct pp_frame {
    Perftools__Profiles__ValueType vt, per;
    Perftools__Profiles__ValueType *vtp;
    int64_t period, time_ns, duration_ns;
} pp_frame_t;

static int make_frame(pp_t *p, const char *profile_type, pp_frame_t *f)
{
    perftools__profiles__value_type__init(&f->vt);
    perftools__profiles__value_type__init(&f->per);
    f->vtp = &f->vt;
    int64_t empty;
    int rc = str_idx(p, "", &empty); /* string_table[0] must be "" */
    if (rc == 0) rc = make_header(p, profile_type, &f->vt, &f->per, &f->period);
    if (rc == 0) rc = make_functions(p);
    return rc;
}

/* prof with every field of f and p but the samples. */
static void frame_profile(pp_t *p, pp_frame_t *f, Perftools__Profiles__Profile *prof)
{
    perftools__profiles__profile__init(prof);
    prof->n_sample_type = 1;
    prof->sample_type = &f->vtp;
    prof->period_type = &f->per;
    prof->period = f->period;
    prof->n_location = prof->n_function = p->nfunc;
    prof->location = p->locp;
    prof->function = p->funcp;
    prof->n_string_table = p->strs.n;
    prof->string_table = p->table;
    prof->time_nanos = f->time_ns;
    prof->duration_nanos = f->duration_ns;
}

static int build_and_pack(pp_t *p, const char *profile_type, int64_t time_ns, int64_t duration_ns,
                          buf_t *out)
{
    pp_frame_t f = {.time_ns = time_ns, .duration_ns = duration_ns};
    int rc = make_frame(p, profile_type, &f);
    if (rc == 0) rc = make_samples(p, out->max);
    if (rc == 0) rc = make_table(p);
    if (rc != 0) return rc;
    Perftools__Profiles__Profile prof;
    frame_profile(p, &f, &prof);
    prof.n_sample = p->nsamples;
    prof.sample = p->samplep;
    return pack_gzip(&prof, out);
}

static void pp_free(pp_t *p)
{
    free(p->func_of);
    free(p->funcs);
    free(p->funcp);
    free(p->locs);
    free(p->locp);
    free(p->lines);
    free(p->linep);
    free(p->samples);
    free(p->samplep);
    free(p->loc_pool);
    free(p->val_pool);
    free(p->table);
    strmap_free(&p->strs);
    pp_give(p, p->held); /* all of it freed */
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
    pp_free(&p);
    query_sorted_tree_free(&st);
    return rc;
}

/* ---- the answer as a stream ---- */

/* Locations, functions or strings packed at a time. */
#define PP_BATCH 256

enum { PP_HEAD, PP_SAMPLES, PP_LOCATIONS, PP_FUNCTIONS, PP_STRINGS, PP_TAIL, PP_LAST, PP_DONE };

typedef struct pp_stream {
    calltree_t *tree; /* owned, with syms: what st reads */
    symtab_t *syms;
    sorted_tree_t st;
    pp_t p; /* functions, locations and strings; no samples */
    pp_frame_t f;
    uint32_t *stack; /* the samples' preorder walk */
    size_t sp;
    uint64_t *locs; /* one sample's stack, leaf first */
    int phase;      /* PP_* */
    size_t next;    /* the phase's next entry */
    buf_t raw;      /* packed, not yet compressed (less than a member and a part) */
    pp_gz_t gz;     /* its blocks counted by the stream */
} pp_stream_t;

/* Appends prof packed to raw: a part of a profile packed in field order is
 * exactly the bytes those fields make in the whole profile. */
static int pack_part(const Perftools__Profiles__Profile *prof, buf_t *raw)
{
    size_t n = perftools__profiles__profile__get_packed_size(prof);
    int rc = buf_reserve(raw, n);
    if (rc != 0) return rc;
    raw->len += perftools__profiles__profile__pack(prof, raw->data + raw->len);
    return 0;
}

/* The next sample of the preorder walk, or the end of the samples. */
static int pp_next_sample(pp_stream_t *v, Perftools__Profiles__Profile *prof)
{
    const sorted_tree_t *st = &v->st;
    while (v->sp > 0) {
        uint32_t i = v->stack[--v->sp];
        for (uint32_t k = st->off[i + 1]; k > st->off[i]; k--)
            v->stack[v->sp++] = st->kids[k - 1];
        int64_t val = calltree_self(st->t, i);
        if (val == 0) continue;
        size_t k = 0;
        for (uint32_t j = i; j != 0; j = calltree_parent(st->t, j))
            v->locs[k++] = v->p.func_of[j] + 1; /* location id == function id */
        Perftools__Profiles__Sample s = PERFTOOLS__PROFILES__SAMPLE__INIT;
        Perftools__Profiles__Sample *sp = &s;
        s.n_location_id = k;
        s.location_id = v->locs;
        s.n_value = 1;
        s.value = &val;
        prof->n_sample = 1;
        prof->sample = &sp;
        return pack_part(prof, &v->raw);
    }
    v->phase = PP_LOCATIONS;
    return 0;
}

/* The next batch of entries of the phase (total of them), moving on after
 * the last. */
static size_t pp_batch(pp_stream_t *v, size_t total, size_t *first)
{
    size_t n = total - v->next < PP_BATCH ? total - v->next : PP_BATCH;
    *first = v->next;
    v->next += n;
    if (v->next == total) {
        v->phase++;
        v->next = 0;
    }
    return n;
}

/* Packs the next part of the profile into raw. */
static int pp_step(pp_stream_t *v)
{
    Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
    pp_t *p = &v->p;
    size_t i;
    switch (v->phase) {
    case PP_HEAD:
        prof.n_sample_type = 1;
        prof.sample_type = &v->f.vtp;
        v->phase = PP_SAMPLES;
        break;
    case PP_SAMPLES:
        return pp_next_sample(v, &prof);
    case PP_LOCATIONS:
        prof.n_location = pp_batch(v, p->nfunc, &i);
        prof.location = p->locp + i;
        break;
    case PP_FUNCTIONS:
        prof.n_function = pp_batch(v, p->nfunc, &i);
        prof.function = p->funcp + i;
        break;
    case PP_STRINGS:
        prof.n_string_table = pp_batch(v, p->strs.n, &i);
        prof.string_table = p->table + i;
        break;
    default: /* PP_TAIL */
        prof.time_nanos = v->f.time_ns;
        prof.duration_nanos = v->f.duration_ns;
        prof.period_type = &v->f.per;
        prof.period = v->f.period;
        v->phase = PP_LAST;
        break;
    }
    return pack_part(&prof, &v->raw);
}

/* Compresses each whole member of raw into out (and the rest, when last). */
static int pp_flush(pp_stream_t *v, buf_t *out, int last)
{
    buf_t *raw = &v->raw;
    size_t off = 0;
    int rc = 0;
    while (rc == 0 && raw->len - off >= PP_MEMBER_BYTES) {
        rc = gzip_member(&v->gz, raw->data + off, PP_MEMBER_BYTES, out);
        off += PP_MEMBER_BYTES;
    }
    if (rc == 0 && last && raw->len > off) {
        rc = gzip_member(&v->gz, raw->data + off, raw->len - off, out);
        off = raw->len;
    }
    memmove(raw->data, raw->data + off, raw->len - off);
    raw->len -= off;
    return rc;
}

static int pp_stream_next(void *impl, buf_t *out, size_t want, int *done)
{
    pp_stream_t *v = impl;
    size_t until = out->len + want;
    int rc = 0;
    while (rc == 0 && v->phase != PP_DONE && out->len < until) {
        if (v->phase == PP_LAST) {
            rc = pp_flush(v, out, 1);
            v->phase = PP_DONE;
            continue;
        }
        for (int k = 0; rc == 0 && k < 64 && v->phase < PP_LAST; k++)
            rc = pp_step(v);
        size_t before = out->len;
        if (rc == 0) rc = pp_flush(v, out, 0);
        /* a member compressed: the slice ends there, whatever its size, so
         * a slice costs the loop thread one member (a very compressible
         * profile would otherwise pack and compress megabytes per slice) */
        if (out->len > before) break;
    }
    *done = v->phase == PP_DONE;
    return rc;
}

static void pp_stream_free(void *impl)
{
    pp_stream_t *v = impl;
    pp_free(&v->p);
    free(v->stack);
    free(v->locs);
    buf_free(&v->raw);
    pp_gz_close(&v->gz);
    query_sorted_tree_free(&v->st);
    calltree_free(v->tree);
    symtab_free(v->syms);
    free(v);
}

static const query_stream_ops_t pp_stream_ops = {pp_stream_next, pp_stream_free};

/* A lower bound of the packed samples' bytes (a byte per stack entry and two
 * per sample) and the deepest sample's depth. */
static int pp_estimate(pp_t *p, size_t *bytes, uint32_t *max_depth)
{
    size_t work = 2 * p->st->n * sizeof(uint32_t); /* depth, and count_samples' queue */
    int rc = pp_take(p, work);
    if (rc != 0) return rc;
    uint32_t *depth = malloc(p->st->n * sizeof *depth);
    if (depth == NULL) {
        pp_give(p, work);
        return ERR_NOMEM;
    }
    size_t ns, nl;
    rc = count_samples(p, SIZE_MAX, &ns, &nl, depth);
    *max_depth = 0;
    for (size_t i = 0; i < p->st->n; i++)
        if (depth[i] > *max_depth) *max_depth = depth[i];
    free(depth);
    pp_give(p, work);
    *bytes = nl + 2 * ns;
    return rc;
}

/* Makes v's frame, string table and walk, then moves the tree and names in
 * and counts what v holds on the stream instead of beside out. */
static int pp_stream_start(pp_stream_t *v, const char *profile_type, uint32_t max_depth,
                           calltree_t **t, symtab_t **syms, buf_t *out, query_stream_t **stream)
{
    int rc = make_frame(&v->p, profile_type, &v->f);
    if (rc == 0) rc = make_table(&v->p);
    size_t walk = v->st.n * sizeof *v->stack + (max_depth + 1) * sizeof *v->locs;
    if (rc == 0) rc = pp_take(&v->p, walk + 2 * PP_MEMBER_BYTES);
    if (rc != 0) return rc;
    v->stack = malloc(v->st.n * sizeof *v->stack);
    v->locs = malloc((max_depth + 1) * sizeof *v->locs);
    buf_init(&v->raw, BUF_UNLIMITED);
    if (v->stack == NULL || v->locs == NULL || buf_reserve(&v->raw, PP_MEMBER_BYTES) != 0)
        return ERR_NOMEM;
    rc = pp_gz_open(&v->gz, out);
    if (rc != 0) return rc;
    v->stack[0] = 0;
    v->sp = 1;
    size_t bytes = sizeof *v + v->p.held + v->st.held + v->gz.held + calltree_mem_bytes_read(*t) +
                   symtab_mem_bytes(*syms);
    /* the stream counts it from here */
    buf_beside_give(out, v->p.held + v->st.held + v->gz.held);
    v->gz.charge = NULL;
    v->p.out = v->st.out = NULL;
    v->p.held = v->st.held = 0;
    v->tree = *t;
    v->syms = *syms;
    *t = NULL;
    *syms = NULL;
    return query_stream_new(&pp_stream_ops, v, QUERY_STREAM_LENGTH_UNKNOWN, bytes, stream);
}

int query_pprof_open(calltree_t **t, symtab_t **syms, const char *profile_type, int64_t time_ns,
                     int64_t duration_ns, size_t min_bytes, buf_t *out, query_stream_t **stream)
{
    *stream = NULL;
    pp_stream_t *v = calloc(1, sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    int rc = query_sorted_tree_build(&v->st, *t, *syms, out);
    if (rc != 0) {
        free(v);
        return rc;
    }
    v->p = (pp_t){.st = &v->st, .out = out};
    v->f = (pp_frame_t){.time_ns = time_ns, .duration_ns = duration_ns};
    strmap_init(&v->p.strs);
    size_t bytes = 0;
    uint32_t max_depth = 0;
    rc = pp_estimate(&v->p, &bytes, &max_depth);
    /* a lower bound past out's max fails whole, as it always did */
    if (rc == 0 && min_bytes > 0 && bytes >= min_bytes && bytes <= out->max && out->len == 0) {
        rc = pp_stream_start(v, profile_type, max_depth, t, syms, out, stream);
        if (*t == NULL) return rc; /* moved: v belongs to the stream (freed with it on failure) */
    } else if (rc == 0) {
        rc = build_and_pack(&v->p, profile_type, time_ns, duration_ns, out);
    }
    pp_stream_free(v); /* the tree and names not taken */
    return rc;
}
