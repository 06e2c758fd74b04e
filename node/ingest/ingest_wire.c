/* ingest_wire.c — a zero-copy reader of the pprof protobuf wire format.
 *
 * ingest_wire_open() checks the whole message once, as strictly as the
 * protobuf-c generated decoder did (a body it refused is refused here, the
 * same 422): every tag, length and varint is in bounds, a known field has
 * its declared wire type (varint scalars, length-delimited strings and
 * messages, repeated varints packed or not), unknown fields of the other
 * wire types are skipped, groups are refused. Nested messages are checked
 * too. It then keeps, per repeated message or string of the profile, only
 * its (offset, length) in the body: 8 bytes per entry that costs at least 2
 * bytes on the wire, so the index is at most 4 bytes per payload byte, and
 * nothing is copied. Accessors decode one entry on demand (last value wins
 * for a scalar repeated on the wire, as in protobuf; a repeated varint may
 * mix packed and unpacked runs).
 */
#include <stdlib.h>
#include <string.h>

#include "node/ingest/ingest_int.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* What a known field is; anything else is an unknown field (skipped).
 * protobuf-c reads a bool field of any wire type (true when a payload byte
 * is non-zero), so K_BOOL takes any; ingest reads no bool. */
enum { K_UNKNOWN = 0, K_VARINT, K_BOOL, K_PACKED, K_BYTES, K_MSG };

#define WIRE_MAX_FIELD 16

typedef struct wire_desc {
    uint8_t kind[WIRE_MAX_FIELD];
    const struct wire_desc *sub[WIRE_MAX_FIELD];
} wire_desc_t;

static const wire_desc_t d_value_type = {{0, K_VARINT, K_VARINT}, {0}};
static const wire_desc_t d_label = {{0, K_VARINT, K_VARINT, K_VARINT, K_VARINT}, {0}};
static const wire_desc_t d_sample = {{0, K_PACKED, K_PACKED, K_MSG}, {[3] = &d_label}};
static const wire_desc_t d_mapping = {
    {0, K_VARINT, K_VARINT, K_VARINT, K_VARINT, K_VARINT, K_VARINT, K_BOOL, K_BOOL, K_BOOL, K_BOOL},
    {0}};
static const wire_desc_t d_line = {{0, K_VARINT, K_VARINT, K_VARINT}, {0}};
static const wire_desc_t d_location = {{0, K_VARINT, K_VARINT, K_VARINT, K_MSG, K_BOOL},
                                       {[4] = &d_line}};
static const wire_desc_t d_function = {{0, K_VARINT, K_VARINT, K_VARINT, K_VARINT, K_VARINT}, {0}};
/* Profile: 1 sample_type, 2 sample, 3 mapping, 4 location, 5 function,
 * 6 string_table, 7-10 scalars, 11 period_type, 12 period, 13 comment,
 * 14 default_sample_type, 15 doc_url. */
static const wire_desc_t d_profile = {{0, K_MSG, K_MSG, K_MSG, K_MSG, K_MSG, K_BYTES, K_VARINT,
                                       K_VARINT, K_VARINT, K_VARINT, K_MSG, K_VARINT, K_PACKED,
                                       K_VARINT, K_VARINT},
                                      {[1] = &d_value_type,
                                       [2] = &d_sample,
                                       [3] = &d_mapping,
                                       [4] = &d_location,
                                       [5] = &d_function,
                                       [11] = &d_value_type}};

/* A varint of at most 10 bytes (bits past 64 dropped, as protobuf-c does);
 * 0 on truncated or longer input. */
static inline int rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *s = *p;
    if (s < end && *s < 0x80) { /* the common one- and two-byte cases */
        *v = *s;
        *p = s + 1;
        return 1;
    }
    if (end - s >= 2 && s[1] < 0x80) {
        *v = (uint64_t)(s[0] & 0x7f) | (uint64_t)s[1] << 7;
        *p = s + 2;
        return 1;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < 10 && s < end; i++) {
        uint8_t b = *s++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *v = x;
            *p = s;
            return 1;
        }
    }
    return 0;
}

/* One field: its number, wire type, and its value (varint) or bytes. */
typedef struct wire_field {
    uint32_t num;
    uint8_t type;
    uint64_t v;
    const uint8_t *p;
    size_t n;
} wire_field_t;

/* Reads the field at *p: 1, 0 at the end, -1 on malformed input. */
static int next_field(const uint8_t **p, const uint8_t *end, wire_field_t *f)
{
    if (*p >= end) return 0;
    uint64_t tag, len;
    const uint8_t *s = *p;
    /* As protobuf-c reads a tag: at most 5 bytes, a first byte of field
     * bits 0 refused, the field number kept to 32 bits (a longer tag of
     * field 0 is then an unknown field). Lengths: 5 bytes, 32 bits. */
    if (*s < 8 || !rd_varint(&s, end, &tag) || s - *p > 5) return -1;
    f->num = (uint32_t)(tag >> 3);
    f->type = (uint8_t)(tag & 7);
    f->v = 0;
    f->p = NULL;
    f->n = 0;
    switch (f->type) {
    case WT_VARINT:
        if (!rd_varint(&s, end, &f->v)) return -1;
        break;
    case WT_I64:
    case WT_I32: {
        size_t w = f->type == WT_I64 ? 8 : 4;
        if ((size_t)(end - s) < w) return -1;
        f->p = s;
        f->n = w;
        s += w;
        break;
    }
    case WT_LEN: {
        const uint8_t *l0 = s;
        if (!rd_varint(&s, end, &len) || s - l0 > 5) return -1;
        len &= 0xffffffffu;
        if (len > (uint64_t)(end - s)) return -1;
        f->p = s;
        f->n = (size_t)len;
        s += len;
        break;
    }
    default: /* groups (deprecated) and wire types 6, 7 */
        return -1;
    }
    *p = s;
    return 1;
}

/* The continuation bits of the 8 bytes at p. */
static inline uint64_t high_bits8(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w & 0x8080808080808080ULL;
}

/* A packed run is whole varints of at most 10 bytes: it ends on a byte
 * below 0x80 and has no 10 bytes in a row with the continuation bit.
 * Ten bytes in a row always cover one of the 4-byte groups at offsets 0,
 * 4, 8, ... whole, so when no such group is all continuation bytes (as
 * with the small ids and values of nearly every sample) no byte needs
 * counting; else the bytes are counted one by one. */
static bool packed_ok(const uint8_t *p, size_t n)
{
    if (n > 0 && p[n - 1] >= 0x80) return false;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t h = high_bits8(p + i);
        if ((h & 0x80808080u) == 0x80808080u || h >> 32 == 0x80808080u) break;
    }
    if (i + 8 > n) {
        for (; i + 4 <= n; i += 4)
            if (p[i] & p[i + 1] & p[i + 2] & p[i + 3] & 0x80) break;
        if (i + 4 > n) return true; /* no group all continuation bytes */
    }
    unsigned run = 0;
    for (i = 0; i < n; i++) {
        run = p[i] >= 0x80 ? run + 1 : 0;
        if (run >= 10) return false;
    }
    return true;
}

/* Checks message [p, p+n) against d, nested messages included. */
static bool check_msg(const wire_desc_t *d, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    wire_field_t f;
    int r;
    while ((r = next_field(&p, end, &f)) > 0) {
        int k = f.num < WIRE_MAX_FIELD ? d->kind[f.num] : K_UNKNOWN;
        switch (k) {
        case K_VARINT:
            if (f.type != WT_VARINT) return false;
            break;
        case K_PACKED:
            if (f.type == WT_LEN ? !packed_ok(f.p, f.n) : f.type != WT_VARINT) return false;
            break;
        case K_BYTES:
            if (f.type != WT_LEN) return false;
            break;
        case K_MSG:
            if (f.type != WT_LEN || !check_msg(d->sub[f.num], f.p, f.n)) return false;
            break;
        default:
            break;
        }
    }
    return r == 0;
}

/* The varint scalar of field num in message [p, p+n) (last one wins), 0 if absent. */
static uint64_t scalar(const uint8_t *p, size_t n, uint32_t num)
{
    const uint8_t *end = p + n;
    uint64_t v = 0;
    wire_field_t f;
    while (next_field(&p, end, &f) > 0)
        if (f.num == num && f.type == WT_VARINT) v = f.v;
    return v;
}

/* ---- open ---- */

/* The repeated top-level fields kept as spans, by field number. */
static wire_span_t **span_array(wire_profile_t *w, uint32_t num, size_t **count)
{
    switch (num) {
    case 1:
        *count = &w->nsample_types;
        return &w->sample_types;
    case 2:
        *count = &w->nsamples;
        return &w->samples;
    case 3:
        *count = &w->nmappings;
        return &w->mappings;
    case 4:
        *count = &w->nlocations;
        return &w->locations;
    case 5:
        *count = &w->nfunctions;
        return &w->functions;
    case 6:
        *count = &w->nstrings;
        return &w->strings;
    default:
        return NULL;
    }
}

/* Pass 1: checks the message and counts the entries of each array. */
static bool count_pass(wire_profile_t *w)
{
    const uint8_t *p = w->data, *end = p + w->len;
    wire_field_t f;
    int r;
    while ((r = next_field(&p, end, &f)) > 0) {
        int k = f.num < WIRE_MAX_FIELD ? d_profile.kind[f.num] : K_UNKNOWN;
        size_t *count;
        if (k == K_VARINT && f.type != WT_VARINT) return false;
        if (k == K_PACKED && (f.type == WT_LEN ? !packed_ok(f.p, f.n) : f.type != WT_VARINT))
            return false;
        if ((k == K_BYTES || k == K_MSG) && f.type != WT_LEN) return false;
        if (k == K_MSG && !check_msg(d_profile.sub[f.num], f.p, f.n)) return false;
        if (span_array(w, f.num, &count) != NULL) (*count)++;
    }
    return r == 0;
}

/* Pass 2 (the message is known good): fills the arrays and the scalars. */
static void fill_pass(wire_profile_t *w)
{
    const uint8_t *p = w->data, *end = p + w->len;
    size_t n[WIRE_MAX_FIELD] = {0};
    wire_field_t f;
    while (next_field(&p, end, &f) > 0) {
        size_t *count;
        wire_span_t **a = span_array(w, f.num, &count);
        if (a != NULL) {
            (*a)[n[f.num]++] = (wire_span_t){(uint32_t)(f.p - w->data), (uint32_t)f.n};
            continue;
        }
        if (f.num == 11) { /* period_type: a repeated singular message merges */
            const uint8_t *q = f.p, *qe = f.p + f.n;
            wire_field_t g;
            while (next_field(&q, qe, &g) > 0)
                if (g.num == 1 && g.type == WT_VARINT)
                    w->period_type_type = (int64_t)g.v;
                else if (g.num == 2 && g.type == WT_VARINT)
                    w->period_type_unit = (int64_t)g.v;
            w->has_period_type = true;
            continue;
        }
        if (f.type != WT_VARINT) continue;
        if (f.num == 9) w->time_nanos = (int64_t)f.v;
        if (f.num == 10) w->duration_nanos = (int64_t)f.v;
        if (f.num == 12) w->period = (int64_t)f.v;
        if (f.num == 14) w->default_sample_type = (int64_t)f.v;
    }
}

int ingest_wire_open(wire_profile_t *w, const uint8_t *data, size_t len)
{
    memset(w, 0, sizeof *w);
    w->data = data;
    w->len = len;
    if (len > UINT32_MAX) return ERR_TOO_LARGE;
    return count_pass(w) ? 0 : ERR_UNPARSEABLE;
}

size_t ingest_wire_index_bytes(const wire_profile_t *w)
{
    size_t n =
        w->nsample_types + w->nsamples + w->nmappings + w->nlocations + w->nfunctions + w->nstrings;
    return n * sizeof(wire_span_t);
}

int ingest_wire_index(wire_profile_t *w)
{
    size_t *count;
    for (uint32_t num = 1; num <= 6; num++) {
        wire_span_t **a = span_array(w, num, &count);
        *a = malloc((*count + 1) * sizeof **a);
        if (*a == NULL) return ERR_NOMEM;
    }
    fill_pass(w);
    return 0;
}

void ingest_wire_free(wire_profile_t *w)
{
    size_t *count;
    for (uint32_t num = 1; num <= 6; num++) {
        wire_span_t **a = span_array(w, num, &count);
        free(*a);
        *a = NULL;
    }
}

/* ---- entries ---- */

uint64_t ingest_wire_id(const wire_profile_t *w, wire_span_t s)
{
    return scalar(w->data + s.off, s.len, 1);
}

void ingest_wire_value_type(const wire_profile_t *w, size_t i, int64_t *type, int64_t *unit)
{
    const uint8_t *p = w->data + w->sample_types[i].off, *end = p + w->sample_types[i].len;
    wire_field_t f;
    *type = *unit = 0;
    while (next_field(&p, end, &f) > 0)
        if (f.num == 1 && f.type == WT_VARINT)
            *type = (int64_t)f.v;
        else if (f.num == 2 && f.type == WT_VARINT)
            *unit = (int64_t)f.v;
}

void ingest_wire_function(const wire_profile_t *w, size_t i, wire_function_t *out)
{
    const uint8_t *p = w->data + w->functions[i].off, *end = p + w->functions[i].len;
    wire_field_t f;
    memset(out, 0, sizeof *out);
    while (next_field(&p, end, &f) > 0) {
        if (f.type != WT_VARINT) continue;
        if (f.num == 1) out->id = f.v;
        if (f.num == 2) out->name = (int64_t)f.v;
        if (f.num == 3) out->system_name = (int64_t)f.v;
        if (f.num == 4) out->filename = (int64_t)f.v;
    }
}

void ingest_wire_mapping(const wire_profile_t *w, size_t i, wire_mapping_t *out)
{
    const uint8_t *p = w->data + w->mappings[i].off, *end = p + w->mappings[i].len;
    wire_field_t f;
    memset(out, 0, sizeof *out);
    while (next_field(&p, end, &f) > 0) {
        if (f.type != WT_VARINT) continue;
        if (f.num == 1) out->id = f.v;
        if (f.num == 2) out->memory_start = f.v;
        if (f.num == 4) out->file_offset = f.v;
        if (f.num == 5) out->filename = (int64_t)f.v;
    }
}

void ingest_wire_location(const wire_profile_t *w, size_t i, wire_location_t *out)
{
    const uint8_t *p = w->data + w->locations[i].off, *end = p + w->locations[i].len;
    wire_field_t f;
    memset(out, 0, sizeof *out);
    out->p = p;
    out->end = end;
    while (next_field(&p, end, &f) > 0) {
        if (f.num == 4 && f.type == WT_LEN) out->nlines++;
        if (f.type != WT_VARINT) continue;
        if (f.num == 1) out->id = f.v;
        if (f.num == 2) out->mapping_id = f.v;
        if (f.num == 3) out->address = f.v;
    }
}

bool ingest_wire_next_line(wire_location_t *l, uint64_t *function_id)
{
    wire_field_t f;
    while (next_field(&l->p, l->end, &f) > 0) {
        if (f.num != 4 || f.type != WT_LEN) continue;
        *function_id = scalar(f.p, f.n, 1);
        return true;
    }
    return false;
}

/* ---- samples ---- */

/* Appends the varints of a packed run (or one value) to out[*n...), up to
 * max stored; *n counts them all. */
static inline void put_u64(uint64_t *out, size_t max, size_t *n, uint64_t v)
{
    if (*n < max) out[*n] = v;
    (*n)++;
}

static void put_run(const wire_field_t *f, uint64_t *out, size_t max, size_t *n)
{
    if (f->type == WT_VARINT) {
        put_u64(out, max, n, f->v);
        return;
    }
    const uint8_t *p = f->p, *end = f->p + f->n;
    uint64_t v;
    while (p < end && rd_varint(&p, end, &v))
        put_u64(out, max, n, v);
}

void ingest_wire_sample(const wire_profile_t *w, size_t i, wire_sample_t *out, uint64_t *values,
                        size_t nvalues_max, uint64_t *ids, size_t ids_max)
{
    const uint8_t *p = w->data + w->samples[i].off, *end = p + w->samples[i].len;
    wire_field_t f;
    memset(out, 0, sizeof *out);
    out->p = p;
    out->end = end;
    while (next_field(&p, end, &f) > 0) {
        if (f.num == WIRE_SAMPLE_VALUE && (f.type == WT_VARINT || f.type == WT_LEN))
            put_run(&f, values, nvalues_max, &out->nvalues);
        else if (f.num == WIRE_SAMPLE_LOCATION_ID && ids != NULL &&
                 (f.type == WT_VARINT || f.type == WT_LEN))
            put_run(&f, ids, ids_max, &out->nlocations);
        else if (f.num == 3 && f.type == WT_LEN)
            out->nlabels++;
    }
}

void ingest_wire_iter(const wire_sample_t *s, uint32_t num, wire_iter_t *it)
{
    *it = (wire_iter_t){.p = s->p, .end = s->end, .num = num};
}

bool ingest_wire_next_u64(wire_iter_t *it, uint64_t *v)
{
    for (;;) {
        if (it->pk < it->pkend && rd_varint(&it->pk, it->pkend, v)) return true;
        wire_field_t f;
        if (next_field(&it->p, it->end, &f) <= 0) return false;
        if (f.num != it->num) continue;
        if (f.type == WT_VARINT) {
            *v = f.v;
            return true;
        }
        if (f.type == WT_LEN) {
            it->pk = f.p;
            it->pkend = f.p + f.n;
        }
    }
}

bool ingest_wire_next_label(wire_iter_t *it, int64_t *key, int64_t *str)
{
    wire_field_t f;
    while (next_field(&it->p, it->end, &f) > 0) {
        if (f.num != 3 || f.type != WT_LEN) continue;
        const uint8_t *q = f.p, *qe = f.p + f.n;
        wire_field_t g;
        *key = *str = 0;
        while (next_field(&q, qe, &g) > 0)
            if (g.num == 1 && g.type == WT_VARINT)
                *key = (int64_t)g.v;
            else if (g.num == 2 && g.type == WT_VARINT)
                *str = (int64_t)g.v;
        return true;
    }
    return false;
}
