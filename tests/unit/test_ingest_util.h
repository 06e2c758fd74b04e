/* test_ingest_util.h — helpers shared by the test_ingest_*.c tests: request
 * set-up, series lookup by labels, totals per profile type, a pprof builder
 * on the protobuf-c generated structs, gzip, file reading. Header-only; each
 * test is its own executable.
 */
#ifndef FLAMEDB_TESTS_TEST_INGEST_UTIL_H
#define FLAMEDB_TESTS_TEST_INGEST_UTIL_H

#include <libdeflate.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/proto/pprof.pb-c.h"
#include "common/symtab.h"
#include "node/ingest/ingest.h"

/* 2026-11-25T00:00:00Z: the node clock of every test request. */
#define TEST_NOW_NS (1795564800LL * 1000000000LL)

static inline ingest_request_t test_req(const char *name, const char *format, const void *body,
                                        size_t len)
{
    ingest_request_t r;
    memset(&r, 0, sizeof r);
    r.tenant = "t1";
    r.name = name;
    r.format = format;
    r.body = body;
    r.body_len = len;
    r.now_ns = TEST_NOW_NS;
    return r;
}

/* Parses and returns the error code; *out set on success (caller frees). */
static inline int test_parse(const ingest_request_t *r, const ingest_limits_t *lim,
                             ingest_profile_t **out, errmsg_t *em)
{
    memset(em, 0, sizeof *em);
    *out = NULL;
    return ingest_parse(r, lim, out, em);
}

static inline size_t test_nseries(const ingest_profile_t *p)
{
    return ingest_profile_write(p)->nseries;
}

static inline const labels_t *test_labels(const ingest_profile_t *p, size_t i)
{
    return ingest_profile_write(p)->series[i].labels;
}

static inline const char *test_label(const ingest_profile_t *p, size_t i, const char *name)
{
    return labels_get(test_labels(p, i), name);
}

/* Sum of root totals of the series with this __profile_type__; *n gets how many. */
static inline int64_t test_type_total(const ingest_profile_t *p, const char *type, size_t *n)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    int64_t sum = 0;
    size_t k = 0;
    for (size_t i = 0; i < w->nseries; i++) {
        const char *t = labels_get(w->series[i].labels, LABEL_PROFILE_TYPE);
        if (t != NULL && strcmp(t, type) == 0) {
            sum += calltree_root_total(w->series[i].tree);
            k++;
        }
    }
    if (n != NULL) *n = k;
    return sum;
}

/* Index of the first series with __profile_type__ type whose label k has value
 * v (k NULL: any), or -1. */
static inline int test_find(const ingest_profile_t *p, const char *type, const char *k,
                            const char *v)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; i < w->nseries; i++) {
        const char *t = labels_get(w->series[i].labels, LABEL_PROFILE_TYPE);
        if (t == NULL || strcmp(t, type) != 0) continue;
        if (k == NULL) return (int)i;
        const char *got = labels_get(w->series[i].labels, k);
        if (v == NULL ? got == NULL : (got != NULL && strcmp(got, v) == 0)) return (int)i;
    }
    return -1;
}

/* Total of the node reached from the root by the given frame names (NULL-terminated). */
static inline int64_t test_path_total(const ingest_profile_t *p, size_t series, ...)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    const calltree_t *t = w->series[series].tree;
    uint32_t node = 0;
    va_list ap;
    va_start(ap, series);
    for (const char *want; (want = va_arg(ap, const char *)) != NULL;) {
        uint32_t c = calltree_first_child(t, node);
        for (; c != CALLTREE_NONE; c = calltree_next_sibling(t, c)) {
            const char *name, *file;
            if (symtab_get(w->symbols, calltree_sym(t, c), &name, &file) && strcmp(name, want) == 0)
                break;
        }
        if (c == CALLTREE_NONE) {
            va_end(ap);
            return INT64_MIN;
        }
        node = c;
    }
    va_end(ap);
    return calltree_total(t, node);
}

/* Span tree sp as a tree (caller frees): ingest holds its span trees
 * encoded (storage_span_tree_t.enc), decoded here; NULL on error. */
static inline calltree_t *test_span_tree(const storage_span_tree_t *sp)
{
    calltree_t *t = calltree_new(0);
    if (t != NULL && sp->tree != NULL && calltree_merge(t, sp->tree) == 0) return t;
    if (t != NULL && sp->tree == NULL && calltree_decode_merge(t, sp->enc, sp->enc_len) == 0)
        return t;
    calltree_free(t);
    return NULL;
}

/* The root total of span tree sp (INT64_MIN when it cannot be read). */
static inline int64_t test_span_total(const storage_span_tree_t *sp)
{
    calltree_t *t = test_span_tree(sp);
    int64_t v = t != NULL ? calltree_root_total(t) : INT64_MIN;
    calltree_free(t);
    return v;
}

static inline uint8_t *test_gzip(const void *in, size_t n, size_t *out_len)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
    size_t cap = libdeflate_gzip_compress_bound(c, n);
    uint8_t *out = malloc(cap);
    *out_len = libdeflate_gzip_compress(c, in, n, out, cap);
    libdeflate_free_compressor(c);
    return out;
}

static inline uint8_t *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b != NULL) {
        b[n] = 0;
        *len = (size_t)n;
    }
    return b;
}

/* ---- a pprof builder on the generated structs (arrays grow with realloc) ---- */

typedef struct pb {
    Perftools__Profiles__Profile p;
} pb_t;

/* Grows by doubling (capacity is implied by n: reallocated at powers of two). */
#define PB_PUSH(arr, n, v)                                                                         \
    do {                                                                                           \
        if (((n) & ((n)-1)) == 0) (arr) = realloc((arr), ((n) ? 2 * (n) : 1) * sizeof *(arr));     \
        (arr)[(n)++] = (v);                                                                        \
    } while (0)

static inline void pb_init(pb_t *b)
{
    perftools__profiles__profile__init(&b->p);
    ProtobufCBinaryData empty = {0, (uint8_t *)""};
    PB_PUSH(b->p.string_table, b->p.n_string_table, empty);
}

static inline int64_t pb_str(pb_t *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < b->p.n_string_table; i++)
        if (b->p.string_table[i].len == n && memcmp(b->p.string_table[i].data, s, n) == 0)
            return (int64_t)i;
    ProtobufCBinaryData d = {n, (uint8_t *)strdup(s)};
    PB_PUSH(b->p.string_table, b->p.n_string_table, d);
    return (int64_t)b->p.n_string_table - 1;
}

static inline Perftools__Profiles__ValueType *pb_vt(pb_t *b, const char *t, const char *u)
{
    Perftools__Profiles__ValueType *v = malloc(sizeof *v);
    perftools__profiles__value_type__init(v);
    v->type = pb_str(b, t);
    v->unit = pb_str(b, u);
    return v;
}

static inline void pb_sample_type(pb_t *b, const char *t, const char *u)
{
    PB_PUSH(b->p.sample_type, b->p.n_sample_type, pb_vt(b, t, u));
}

static inline void pb_period(pb_t *b, const char *t, const char *u, int64_t period)
{
    b->p.period_type = pb_vt(b, t, u);
    b->p.period = period;
}

static inline uint64_t pb_function(pb_t *b, const char *name, const char *file)
{
    Perftools__Profiles__Function *f = malloc(sizeof *f);
    perftools__profiles__function__init(f);
    f->id = b->p.n_function + 1;
    f->name = pb_str(b, name);
    f->filename = pb_str(b, file);
    PB_PUSH(b->p.function, b->p.n_function, f);
    return f->id;
}

static inline uint64_t pb_mapping(pb_t *b, uint64_t start, uint64_t limit, uint64_t off,
                                  const char *file)
{
    Perftools__Profiles__Mapping *m = malloc(sizeof *m);
    perftools__profiles__mapping__init(m);
    m->id = b->p.n_mapping + 1;
    m->memory_start = start;
    m->memory_limit = limit;
    m->file_offset = off;
    m->filename = pb_str(b, file);
    PB_PUSH(b->p.mapping, b->p.n_mapping, m);
    return m->id;
}

/* A location whose lines call the functions fns[0..n) (fns[0] innermost). */
static inline uint64_t pb_location(pb_t *b, uint64_t mapping, uint64_t addr, size_t n,
                                   const uint64_t *fns)
{
    Perftools__Profiles__Location *l = malloc(sizeof *l);
    perftools__profiles__location__init(l);
    l->id = b->p.n_location + 1;
    l->mapping_id = mapping;
    l->address = addr;
    for (size_t i = 0; i < n; i++) {
        Perftools__Profiles__Line *ln = malloc(sizeof *ln);
        perftools__profiles__line__init(ln);
        ln->function_id = fns[i];
        ln->line = (int64_t)(10 + i);
        PB_PUSH(l->line, l->n_line, ln);
    }
    PB_PUSH(b->p.location, b->p.n_location, l);
    return l->id;
}

/* A location with one line calling a new function name (file "f.go"). */
static inline uint64_t pb_loc_fn(pb_t *b, const char *name)
{
    uint64_t f = pb_function(b, name, "f.go");
    return pb_location(b, 0, 0, 1, &f);
}

/* Sample: locs leaf first; labels as "k=v" strings or "k#123" numeric; NULL-terminated. */
static inline Perftools__Profiles__Sample *pb_sample(pb_t *b, size_t nloc, const uint64_t *locs,
                                                     size_t nval, const int64_t *vals, ...)
{
    Perftools__Profiles__Sample *s = malloc(sizeof *s);
    perftools__profiles__sample__init(s);
    for (size_t i = 0; i < nloc; i++)
        PB_PUSH(s->location_id, s->n_location_id, locs[i]);
    for (size_t i = 0; i < nval; i++)
        PB_PUSH(s->value, s->n_value, vals[i]);
    va_list ap;
    va_start(ap, vals);
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        Perftools__Profiles__Label *l = malloc(sizeof *l);
        perftools__profiles__label__init(l);
        char k[256];
        const char *sep = strpbrk(kv, "=#");
        snprintf(k, sizeof k, "%.*s", (int)(sep - kv), kv);
        l->key = pb_str(b, k);
        if (*sep == '=')
            l->str = pb_str(b, sep + 1);
        else
            l->num = atoll(sep + 1);
        PB_PUSH(s->label, s->n_label, l);
    }
    va_end(ap);
    PB_PUSH(b->p.sample, b->p.n_sample, s);
    return s;
}

static inline uint8_t *pb_pack(pb_t *b, size_t *len)
{
    *len = perftools__profiles__profile__get_packed_size(&b->p);
    uint8_t *out = malloc(*len + 1);
    perftools__profiles__profile__pack(&b->p, out);
    return out;
}

/* Frees what the builder allocated (the default protobuf-c allocator matches malloc). */
static inline void pb_free(pb_t *b)
{
    for (size_t i = 1; i < b->p.n_string_table; i++)
        free(b->p.string_table[i].data);
    free(b->p.string_table);
    b->p.string_table = NULL;
    b->p.n_string_table = 0;
    Perftools__Profiles__Profile *h = malloc(sizeof *h); /* free_unpacked frees the message too */
    *h = b->p;
    perftools__profiles__profile__free_unpacked(h, NULL);
}

#endif
