/* sparse_cols.c — block values, version 3: ids and values in fixed-width
 * columns.
 *
 * Encoding (docs/storage-format.md, "Sparse block encoding"):
 *   u8      0x03
 *   uvarint scale            (>= 1; every value is a multiple of it)
 *   uvarint n
 *   when n > 0:
 *     uvarint first id
 *     uvarint last id - first id
 *     u8      widths: wi (0..4) | positive << 3 | wv (1..8) << 4
 *     wi planes of n - 1 bytes: plane b holds byte b of (id delta - 1)
 *     wv planes of n bytes:     plane b holds byte b of value / scale - 1
 *                               when positive (format 17: every value > 0),
 *                               else of zigzag(value / scale)
 * The block's length is exactly what the header says, and first id + the
 * deltas = last id, which is checked before anything is added: a reader
 * knows every pair's position and the largest id up front, so the
 * addition into a dense vector reads plain arrays (no dependent varint
 * decode, no bound check per pair). Byte planes keep the columns' high
 * bytes (mostly zero) together, which zstd compresses to almost nothing.
 */
#include <string.h>

#include "common/assert.h"
#include "common/simd.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* Pairs decoded at a time from the planes into plain arrays. */
#define COLS_CHUNK 256

/* Bytes needed to hold x (0 for 0). */
static unsigned width_of(uint64_t x)
{
    return x == 0 ? 0 : (unsigned)(64 - __builtin_clzll(x) + 7) / 8;
}

/* The next pair of src from index *i on with a non-zero value: 1 and the
 * pair, or 0 at the end. A source without ids is dense (its index is the id). */
static inline int src_next(const storage_cols_src_t *src, size_t *i, uint32_t *id, int64_t *v)
{
    while (*i < src->n && src->val[*i] == 0)
        (*i)++;
    if (*i >= src->n) return 0;
    *id = src->id != NULL ? src->id[*i] : (uint32_t)*i;
    *v = src->val[*i];
    (*i)++;
    return 1;
}

/* The header's figures of src: its count, scale, first and last ids, and
 * the widths of its deltas and of its values. */
typedef struct cols_shape {
    uint64_t scale, n, first, last;
    unsigned wi, wv, positive;
} cols_shape_t;

static void shape_of(const storage_cols_src_t *src, cols_shape_t *s)
{
    uint64_t scale = 0, maxabs = 0, maxgap = 0, prev = 0;
    uint32_t id;
    int64_t v, min = INT64_MAX;
    *s = (cols_shape_t){0};
    for (size_t i = 0; src_next(src, &i, &id, &v);) {
        uint64_t a = storage_abs_u64(v);
        if (v < min) min = v;
        scale = storage_scale_add(scale, v);
        if (a > maxabs) maxabs = a;
        /* ids are stored as gaps: they must ascend (a reader refuses the rest) */
        ASSERT_ALWAYS(s->n == 0 || id > prev);
        if (s->n == 0)
            s->first = id;
        else if (id - prev - 1 > maxgap)
            maxgap = id - prev - 1;
        prev = id;
        s->n++;
    }
    s->scale = scale == 0 ? 1 : scale;
    s->last = prev;
    s->wi = width_of(maxgap);
    s->positive = min > 0;
    uint64_t q = maxabs / s->scale;
    if (s->positive) { /* values of 1..q stored as 0..q - 1: no sign bit */
        unsigned w = width_of(q - 1);
        s->wv = w == 0 ? 1 : w;
        return;
    }
    /* zigzag doubles a magnitude: one bit more than maxabs / scale */
    unsigned bits = q == 0 ? 0 : (unsigned)(64 - __builtin_clzll(q)) + 1;
    s->wv = bits > 64 ? 8 : bits == 0 ? 1 : (bits + 7) / 8;
}

/* The stored number of v: v / scale - 1 in a positive block, else its
 * zigzag; positive is a constant where cols_put inlines it. */
static inline __attribute__((always_inline)) uint64_t stored_of(int64_t v, uint64_t scale,
                                                                unsigned positive)
{
    return positive ? (uint64_t)storage_scaled(v, scale) - 1
                    : varint_zigzag(storage_scaled(v, scale));
}

/* Writes the gap and value planes of src's pairs (shape s) from p on. */
static inline __attribute__((always_inline)) void
cols_put(const storage_cols_src_t *src, const cols_shape_t *s, uint8_t *p, unsigned positive)
{
    size_t n = (size_t)s->n, gaps = n > 0 ? n - 1 : 0;
    uint8_t *gap = p, *val = p + gaps * s->wi;
    uint32_t id, prev = 0;
    int64_t v;
    size_t k = 0;
    for (size_t i = 0; src_next(src, &i, &id, &v); k++) {
        uint64_t z = stored_of(v, s->scale, positive);
        for (unsigned b = 0; b < s->wv; b++)
            val[b * n + k] = (uint8_t)(z >> 8 * b);
        /* ids ascend: the sources are sorted (a dense one by construction) */
        uint64_t d = k > 0 ? (uint64_t)id - prev - 1 : 0;
        for (unsigned b = 0; k > 0 && b < s->wi; b++)
            gap[b * gaps + k - 1] = (uint8_t)(d >> 8 * b);
        prev = id;
    }
}

int storage_cols_encode(const storage_cols_src_t *src, buf_t *out)
{
    cols_shape_t s;
    shape_of(src, &s);
    size_t n = (size_t)s.n, gaps = n > 0 ? n - 1 : 0;
    int rc = buf_reserve(out, 1 + 4 * 10 + 1 + gaps * s.wi + n * s.wv);
    if (rc != 0) return rc;
    uint8_t *p = out->data + out->len;
    *p++ = SPARSE_VERSION;
    p += varint_put_u(p, s.scale);
    p += varint_put_u(p, s.n);
    if (n > 0) {
        p += varint_put_u(p, s.first);
        p += varint_put_u(p, s.last - s.first);
        *p++ = (uint8_t)(s.wi | s.positive << 3 | s.wv << 4);
    }
    if (s.positive)
        cols_put(src, &s, p, 1);
    else
        cols_put(src, &s, p, 0);
    out->len = (size_t)(p + gaps * s.wi + n * s.wv - out->data);
    out->data[out->len] = 0;
    return 0;
}

/* out[k] = plus + the w-byte number (w <= 4) at index at + k of planes
 * of stride bytes (plus + the number must fit 32 bits). Plane by plane,
 * each loop a plain widening the compiler vectorises; 32-bit lanes take
 * half the work of 64-bit ones. The planes are added, not OR-ed, so that
 * plus carries. */
static inline __attribute__((always_inline)) void planes_get32(const uint8_t *pl, size_t stride,
                                                               unsigned w, size_t at, size_t m,
                                                               uint32_t plus, uint32_t *out)
{
    if (w == 0) {
        for (size_t k = 0; k < m; k++)
            out[k] = plus;
        return;
    }
    const uint8_t *q = pl + at;
    for (size_t k = 0; k < m; k++)
        out[k] = q[k] + plus;
    for (unsigned b = 1; b < w; b++) {
        q = pl + b * stride + at;
        unsigned sh = 8 * b;
        for (size_t k = 0; k < m; k++)
            out[k] += (uint32_t)q[k] << sh;
    }
}

/* planes_get32 for w of 5 to 8: the high planes into hi, OR-ed above lo. */
static inline __attribute__((always_inline)) void planes_get64(const uint8_t *pl, size_t stride,
                                                               unsigned w, size_t at, size_t m,
                                                               const uint32_t *lo, uint32_t *hi,
                                                               uint64_t *out)
{
    planes_get32(pl + 4 * stride, stride, w - 4, at, m, 0, hi);
    for (size_t k = 0; k < m; k++)
        out[k] = (uint64_t)hi[k] << 32 | lo[k];
}

/* The sum of the w-byte numbers of planes of n bytes, or UINT64_MAX when
 * it passes UINT32_MAX (no valid block's gaps do). */
static inline __attribute__((always_inline)) uint64_t planes_sum(const uint8_t *pl, size_t n,
                                                                 unsigned w)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < w; b++) {
        uint64_t s = 0;
        const uint8_t *q = pl + b * n;
        for (size_t k = 0; k < n; k++)
            s += q[k];
        if (s > (UINT32_MAX >> 8 * b)) return UINT64_MAX;
        total += s << 8 * b;
    }
    return total;
}

SIMD_CLONES int storage_cols_parse(const uint8_t *p, size_t len, storage_cols_t *c)
{
    const uint8_t *end = p + len;
    uint64_t span = 0;
    *c = (storage_cols_t){0};
    if (len < 1 || *p++ != SPARSE_VERSION) return ERR_CORRUPT;
    if (!varint_read_u(&p, end, &c->scale) || c->scale == 0 || !varint_read_u(&p, end, &c->n))
        return ERR_CORRUPT;
    if (c->n == 0) return p == end ? 0 : ERR_CORRUPT;
    if (!varint_read_u(&p, end, &c->first) || !varint_read_u(&p, end, &span) || p == end)
        return ERR_CORRUPT;
    c->last = c->first + span;
    c->wi = *p & 0x07;
    c->positive = *p >> 3 & 1;
    c->wv = *p++ >> 4;
    uint64_t rest = (uint64_t)(end - p);
    /* distinct ascending ids: n - 1 <= span; each pair takes >= 1 byte */
    if (c->first > UINT32_MAX || span > UINT32_MAX - c->first || c->n - 1 > span || c->n > rest ||
        c->wi > 4 || c->wv < 1 || c->wv > 8)
        return ERR_CORRUPT;
    if (rest != (c->n - 1) * c->wi + c->n * c->wv) return ERR_CORRUPT;
    c->gaps = p;
    c->vals = p + (c->n - 1) * c->wi;
    /* every id ascends by 1 + its gap: the gaps must make up the span */
    uint64_t gaps = planes_sum(c->gaps, (size_t)c->n - 1, c->wi);
    if (gaps == UINT64_MAX || gaps + (c->n - 1) != span) return ERR_CORRUPT;
    return 0;
}

/* The value of a stored number z (stored_of); positive is a constant
 * where the callers below inline it, so each loop has no branch. */
static inline __attribute__((always_inline)) int64_t unzig(uint64_t z, uint64_t scale,
                                                           unsigned positive)
{
    if (positive) return (int64_t)((z + 1) * scale); /* wraps like every sum */
    return (int64_t)(((z >> 1) ^ (~(z & 1) + 1)) * scale);
}

/* Pairs from 1 + at on, m of them (m <= COLS_CHUNK): each id's step from
 * the id before (its gap + 1) and stored value, read from the planes into
 * plain arrays. */
typedef struct cols_chunk {
    uint32_t gap[COLS_CHUNK], lo[COLS_CHUNK], hi[COLS_CHUNK];
    uint64_t z[COLS_CHUNK];
} cols_chunk_t;

/* Fills ch with pairs 1 + at .. at + m of c; 1 when the values are in z
 * (wider than four bytes), 0 when they are in lo. */
static inline __attribute__((always_inline)) int chunk_get(const storage_cols_t *c, size_t at,
                                                           size_t m, cols_chunk_t *ch)
{
    size_t n = (size_t)c->n;
    planes_get32(c->gaps, n - 1, c->wi, at, m, 1, ch->gap); /* gap + 1 <= span: fits */
    planes_get32(c->vals, n, c->wv < 4 ? c->wv : 4, at + 1, m, 0, ch->lo);
    if (c->wv <= 4) return 0;
    planes_get64(c->vals, n, c->wv, at + 1, m, ch->lo, ch->hi, ch->z);
    return 1;
}

/* The stored number of the first pair (unzig reads it). */
static uint64_t first_z(const storage_cols_t *c)
{
    uint64_t z = 0;
    for (unsigned b = 0; b < c->wv; b++)
        z |= (uint64_t)c->vals[b * c->n] << 8 * b;
    return z;
}

static inline __attribute__((always_inline)) void cols_add(const storage_cols_t *c, int64_t *dense,
                                                           unsigned positive)
{
    cols_chunk_t ch;
    uint64_t scale = c->scale, id = c->first;
    size_t n = (size_t)c->n;
    if (n == 0) return;
    dense[id] = (int64_t)((uint64_t)dense[id] + (uint64_t)unzig(first_z(c), scale, positive));
    /* pair i >= 1: its gap at index i - 1, its value at i */
    for (size_t at = 0; at < n - 1; at += COLS_CHUNK) {
        size_t m = n - 1 - at < COLS_CHUNK ? n - 1 - at : COLS_CHUNK;
        if (chunk_get(c, at, m, &ch)) {
            for (size_t k = 0; k < m; k++) {
                id += ch.gap[k];
                dense[id] =
                    (int64_t)((uint64_t)dense[id] + (uint64_t)unzig(ch.z[k], scale, positive));
            }
            continue;
        }
        for (size_t k = 0; k < m; k++) {
            id += ch.gap[k];
            dense[id] = (int64_t)((uint64_t)dense[id] + (uint64_t)unzig(ch.lo[k], scale, positive));
        }
    }
}

SIMD_CLONES void storage_cols_add(const storage_cols_t *c, int64_t *dense)
{
    if (c->positive)
        cols_add(c, dense, 1);
    else
        cols_add(c, dense, 0);
}

SIMD_CLONES void storage_cols_decode(const storage_cols_t *c, uint32_t *ids, int64_t *vals)
{
    cols_chunk_t ch;
    uint64_t scale = c->scale, id = c->first;
    size_t n = (size_t)c->n;
    if (n == 0) return;
    ids[0] = (uint32_t)id;
    vals[0] = unzig(first_z(c), scale, c->positive);
    for (size_t at = 0; at < n - 1; at += COLS_CHUNK) {
        size_t m = n - 1 - at < COLS_CHUNK ? n - 1 - at : COLS_CHUNK;
        int wide = chunk_get(c, at, m, &ch);
        for (size_t k = 0; k < m; k++) {
            id += ch.gap[k];
            ids[at + 1 + k] = (uint32_t)id;
            vals[at + 1 + k] = unzig(wide ? ch.z[k] : ch.lo[k], scale, c->positive);
        }
    }
}
