/* sparse.c — block values: sparse vectors of self values over stack-node ids.
 *
 * A block of a series holds, for every stack node of its token's node table
 * (nodetab.c) with a non-zero self value in the window, the pair (node id,
 * self). Blocks are written in version 3 (fixed-width columns,
 * sparse_cols.c); every reader here also takes version 2, which format 13
 * and earlier wrote (docs/storage-format.md):
 *   u8      0x02
 *   uvarint scale            (>= 1; every value is a multiple of it)
 *   uvarint n
 *   n x { uvarint id delta (first: the id itself), svarint value / scale }
 * with ids strictly ascending. Scale is the gcd of the values, so CPU
 * nanoseconds sampled at 100 Hz store as small counts. Summing blocks is a
 * merge of two sorted lists: no hashing, no tree, which is what makes merge
 * operands cheap to fold and queries cheap to answer.
 */
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/grow.h"
#include "common/varint.h"
#include "storage/storage_int.h"

void storage_sparse_init(sparse_vec_t *v)
{
    memset(v, 0, sizeof *v);
}

void storage_sparse_free(sparse_vec_t *v)
{
    free(v->id);
    free(v->val);
    storage_sparse_init(v);
}

int storage_sparse_reserve(sparse_vec_t *v, size_t n)
{
    if (n <= v->cap) return 0;
    size_t c1 = v->cap, c2 = v->cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(v->id, c1, n, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(v->val, c2, n, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    v->cap = c1;
    return 0;
}

/* Block layout shared by both encoders: version, scale, count, then pairs of
 * (id delta, value / scale). The scale is the gcd of the values' magnitudes, so
 * every division is exact; it keeps the sign (storage_scale_add,
 * storage_scaled). */

/* Reserves room for n pairs and writes the header; *at = where pairs go. */
static int block_begin(buf_t *out, uint64_t scale, size_t n, uint8_t **at)
{
    int rc = buf_reserve(out, 1 + 10 + 10 + n * 15);
    if (rc != 0) return rc;
    uint8_t *p = out->data + out->len;
    *p++ = SPARSE_VERSION_V2;
    p += varint_put_u(p, scale == 0 ? 1 : scale);
    p += varint_put_u(p, n);
    *at = p;
    return 0;
}

static uint8_t *block_pair(uint8_t *p, uint32_t delta, int64_t v, uint64_t scale)
{
    p += varint_put_u(p, delta);
    return p + varint_put_u(p, varint_zigzag(storage_scaled(v, scale)));
}

static void block_end(buf_t *out, uint8_t *p)
{
    out->len = (size_t)(p - out->data);
    out->data[out->len] = 0;
}

int storage_sparse_encode(const sparse_vec_t *v, buf_t *out)
{
    storage_cols_src_t src = {.id = v->id, .val = v->val, .n = v->n};
    return storage_cols_encode(&src, out);
}

int storage_sparse_encode_v2(const sparse_vec_t *v, buf_t *out)
{
    uint64_t scale = 0;
    size_t n = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->val[i] == 0) continue;
        scale = storage_scale_add(scale, v->val[i]);
        n++;
    }
    uint8_t *p = NULL;
    int rc = block_begin(out, scale, n, &p);
    if (rc != 0) return rc;
    uint32_t prev = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->val[i] == 0) continue;
        /* Ids are stored as deltas: they must ascend (decode rejects the rest). */
        ASSERT_ALWAYS(i == 0 || v->id[i] > prev);
        p = block_pair(p, v->id[i] - prev, v->val[i], scale);
        prev = v->id[i];
    }
    block_end(out, p);
    return 0;
}

/* The next index from i on whose value is non-zero (v->n when none). */
static size_t next_nonzero(const sparse_vec_t *v, size_t i)
{
    while (i < v->n && v->val[i] == 0)
        i++;
    return i;
}

int storage_sparse_factor(const sparse_vec_t *a, const sparse_vec_t *b, int64_t *c)
{
    size_t i = next_nonzero(a, 0), j = next_nonzero(b, 0);
    if (i == a->n || j == b->n || a->id[i] != b->id[j]) return 0;
    /* the first pair fixes c; INT64_MIN / -1 is the one quotient that
     * overflows (and traps), so it is refused before dividing */
    if (a->val[i] == -1 && b->val[j] == INT64_MIN) return 0;
    if (b->val[j] % a->val[i] != 0) return 0;
    int64_t f = b->val[j] / a->val[i];
    for (; i < a->n && j < b->n; i = next_nonzero(a, i + 1), j = next_nonzero(b, j + 1)) {
        int64_t p;
        if (a->id[i] != b->id[j] || __builtin_mul_overflow(a->val[i], f, &p) || p != b->val[j])
            return 0;
    }
    if (i != a->n || j != b->n) return 0; /* one has entries the other lacks */
    *c = f;
    return 1;
}

/* A varint of one to three bytes at *p, which has at least three bytes
 * left; 0 (and *p unmoved) for a longer one. Ids ascend in small steps, so
 * most deltas take one byte, and most values one to three. */
static inline int short_u(const uint8_t **p, uint64_t *v)
{
    const uint8_t *s = *p;
    uint64_t x = s[0];
    if (x < 0x80) {
        *v = x;
        *p = s + 1;
        return 1;
    }
    x = (x & 0x7f) | (uint64_t)(s[1] & 0x7f) << 7;
    if (s[1] < 0x80) {
        *v = x;
        *p = s + 2;
        return 1;
    }
    if (s[2] < 0x80) {
        *v = x | (uint64_t)s[2] << 14;
        *p = s + 3;
        return 1;
    }
    return 0;
}

/* A varint of one to four bytes at *p, which has at least eight bytes
 * left, decoded with no branch on its length; 0 (and *p unmoved) for a
 * longer one. Stored values take two or three bytes about equally often
 * (the heap set: 48 % and 41 % of 391,000 pairs a render), so short_u's
 * branch per byte guessed wrong on about every other value. */
static inline int word_u(const uint8_t **p, uint64_t *v)
{
    uint64_t w;
    memcpy(&w, *p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t stops = ~w & 0x80808080u; /* a clear high bit ends the varint */
    if (stops == 0) return 0;
    unsigned len = ((unsigned)__builtin_ctzll(stops) >> 3) + 1;
    uint64_t x = (w & 0x7f) | (w >> 1 & 0x3f80) | (w >> 2 & 0x1fc000) | (w >> 3 & 0xfe00000);
    *v = x & ((1ull << (7 * len)) - 1);
    *p += len;
    return 1;
}

/* A value of one to four bytes at the bottom of r whose last byte's stop
 * bit is bit last (7, 15, 23 or 31): its bytes without their stop bits,
 * groups a, b, c, e (low first) at bits 0, 8, 16, 24; each subtraction
 * closes up one gap, a + 2^8 b to a + 2^7 b in each half, then c' 2^16 to
 * c' 2^14. */
static inline uint64_t groups_u(uint64_t r, unsigned last)
{
    uint64_t x = r & ((2ull << last) - 1) & 0x7f7f7f7fu;
    x -= (x & 0x7f007f00u) >> 1;
    return x - ((x & 0x3fff0000u) >> 2) * 3;
}

/* The usual pair, a one-byte delta and a value of one to four bytes, from
 * one eight-byte read at *p (which has at least eight bytes left); 0 (and
 * *p unmoved) for any other, which short_u and word_u then take. It reads
 * exactly what those two read, with one load and one branch instead of
 * two of each: the value's bytes are cut by its last byte's stop bit
 * before their seven-bit groups are joined. */
static inline int pair_word(const uint8_t **p, uint64_t *d, uint64_t *v)
{
    uint64_t w;
    memcpy(&w, *p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t r = w >> 8, stops = ~r & 0x80808080u;
    if ((w & 0x80) != 0 || stops == 0) return 0;
    unsigned last = (unsigned)__builtin_ctzll(stops); /* 7, 15, 23 or 31 */
    *d = w & 0x7f;
    *v = groups_u(r, last);
    *p += (last >> 3) + 2;
    return 1;
}

/* Two usual pairs from one eight-byte read at *p (at least eight bytes
 * left): both deltas one byte, both values one to four bytes, eight bytes
 * in all; 0 (and *p unmoved) otherwise. Where the next read starts comes
 * from the word's fourth stop bit, one dependent step for two pairs: the
 * dense addition's reads are a chain through that position. */
static inline int two_pairs(const uint8_t **p, uint64_t *d1, uint64_t *v1, uint64_t *d2,
                            uint64_t *v2)
{
    uint64_t w;
    memcpy(&w, *p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t stops = ~w & 0x8080808080808080ull;
    uint64_t s1 = stops & (stops - 1), s2 = s1 & (s1 - 1), s3 = s2 & (s2 - 1);
    if ((w & 0x80) != 0 || s3 == 0) return 0;
    /* the stop bits ending value 1, delta 2 and value 2 */
    unsigned e1 = (unsigned)__builtin_ctzll(s1), e2 = (unsigned)__builtin_ctzll(s2),
             e3 = (unsigned)__builtin_ctzll(s3);
    if (e2 - e1 != 8 || e1 > 39 || e3 - e2 - 1 > 31) return 0;
    *d1 = w & 0x7f;
    *v1 = groups_u(w >> 8, e1 - 8);
    *d2 = w >> (e1 + 1) & 0x7f;
    *v2 = groups_u(w >> (e2 + 1), e3 - e2 - 1);
    *p += (e3 >> 3) + 1;
    return 1;
}

/* varint_read_u with the short cases inline. Longer ones (and the last
 * bytes of a block) take the general path, which accepts exactly the same
 * encodings. */
static inline int read_u(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    if (end - *p >= 3 && short_u(p, v)) return 1;
    return varint_read_u(p, end, v);
}

/* One (id delta, zigzag value) pair: both short with one end check for the
 * two when six bytes are left, else read_u for each. */
static inline int read_pair(const uint8_t **p, const uint8_t *end, uint64_t *d, uint64_t *zz)
{
    const uint8_t *q = *p;
    if (end - q >= 6 && short_u(&q, d) && short_u(&q, zz)) {
        *p = q;
        return 1;
    }
    return read_u(p, end, d) && read_u(p, end, zz);
}

/* decode_at for a version-3 block. */
static int decode_cols(const uint8_t *p, size_t len, sparse_vec_t *out, size_t at)
{
    storage_cols_t c;
    int rc = storage_cols_parse(p, len, &c);
    if (rc == 0) rc = storage_sparse_reserve(out, at + (size_t)c.n);
    if (rc != 0) return rc;
    if (c.n > 0) storage_cols_decode(&c, out->id + at, out->val + at); /* none: id may be NULL */
    out->n = at + (size_t)c.n;
    return 0;
}

/* Decodes a block into out's entries from index at on (out->n: at + its
 * pairs; at again when it is corrupt), so a fold can gather its operands in
 * one list without a copy per operand. */
static int decode_at(const uint8_t *p, size_t len, sparse_vec_t *out, size_t at)
{
    const uint8_t *end = p + len;
    uint64_t scale, n;
    out->n = at;
    if (len >= 1 && *p == SPARSE_VERSION) return decode_cols(p, len, out, at);
    if (len < 1 || *p++ != SPARSE_VERSION_V2) return ERR_CORRUPT;
    if (!varint_read_u(&p, end, &scale) || scale == 0 || !varint_read_u(&p, end, &n))
        return ERR_CORRUPT;
    if (n > (uint64_t)(end - p) / 2) return ERR_CORRUPT; /* every pair takes >= 2 bytes */
    if (n == 0) return p == end ? 0 : ERR_CORRUPT;       /* out's arrays may be NULL */
    int rc = storage_sparse_reserve(out, at + (size_t)n);
    if (rc != 0) return rc;
    uint32_t *ids = out->id + at;
    int64_t *vals = out->val + at;
    uint64_t id = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t d, zz;
        if (!read_pair(&p, end, &d, &zz)) return ERR_CORRUPT;
        if ((i > 0 && d == 0) || d > UINT32_MAX || id + d > UINT32_MAX) return ERR_CORRUPT;
        id += d;
        int64_t q = (int64_t)((zz >> 1) ^ (~(zz & 1) + 1));
        ids[i] = (uint32_t)id;
        vals[i] = (int64_t)((uint64_t)q * scale); /* wraps like every int64 sum */
    }
    if (p != end) return ERR_CORRUPT;
    out->n = at + (size_t)n;
    return 0;
}

int storage_sparse_decode(const uint8_t *p, size_t len, sparse_vec_t *out)
{
    return decode_at(p, len, out, 0);
}

/* Adds (sign 1) or takes back (sign -1) the first n pairs of a block whose
 * pairs start at p, already checked by storage_sparse_add_dense. */
static void walk_pairs(const uint8_t *p, const uint8_t *end, size_t n, uint64_t scale, int64_t *val,
                       uint64_t sign)
{
    uint64_t id = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = 0, zz = 0;
        read_pair(&p, end, &d, &zz);
        id += d;
        uint64_t q = (zz >> 1) ^ (~(zz & 1) + 1);
        val[id] = (int64_t)((uint64_t)val[id] + sign * q * scale);
    }
}

static int dense_room(int64_t **val, size_t *cap, uint64_t need, size_t max_ids)
{
    if (need > max_ids) return ERR_CORRUPT;
    size_t old = *cap;
    if (GROW_FROM(*val, *cap, (size_t)need, max_ids, 1024) != 0) return ERR_NOMEM;
    memset(*val + old, 0, (*cap - old) * sizeof **val);
    return 0;
}

/* One block being added into a dense vector: its pairs, and how far the
 * addition has come (the i pairs before p, whose last id is id). */
typedef struct dense_run {
    const uint8_t *pairs, *p, *end;
    uint64_t scale, n, id, i;
} dense_run_t;

/* Reads a block's header into r. 1: a valid block of no pairs (nothing
 * to add), 0: pairs to add, or ERR_CORRUPT. */
static int run_start(dense_run_t *r, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    uint64_t scale, n;
    if (len < 1 || *p++ != SPARSE_VERSION_V2) return ERR_CORRUPT;
    if (!varint_read_u(&p, end, &scale) || scale == 0 || !varint_read_u(&p, end, &n))
        return ERR_CORRUPT;
    if (n > (uint64_t)(end - p) / 2) return ERR_CORRUPT; /* every pair takes >= 2 bytes */
    /* no pairs: nothing may follow (the loop below would read pairs into a
     * vector it never made room for) */
    if (n == 0) return p == end ? 1 : ERR_CORRUPT;
    *r = (dense_run_t){.pairs = p, .p = p, .end = end, .scale = scale, .n = n};
    return 0;
}

/* Adds the rest of r's pairs (growing the vector as needed), then settles
 * the block: a corrupt one taken back whole, a valid one raising *used. */
static int run_finish(dense_run_t *r, int64_t **val, size_t *cap, size_t *used, size_t max_ids)
{
    const uint8_t *p = r->p, *end = r->end;
    uint64_t id = r->id, i, scale = r->scale;
    int rc = 0;
    /* the vector and its size in locals: through the pointers, every store
     * into the vector would make the compiler load both again */
    int64_t *v = *val;
    size_t vcap = *cap;
    /* While eleven bytes are left, a pair is read without counting it
     * against n (a valid block has another pair there); a block holding
     * more pairs than n is corrupt, found after the loop and taken back
     * like any. The usual pair (a one-byte delta) is one eight-byte read
     * (pair_word); a longer delta takes short_u, its value word_u. */
    for (i = r->i;; i++) {
        uint64_t d, zz, d2, zz2;
        const uint8_t *at = p;
        /* two pairs at once when both are usual and inside the vector (the
         * compare as below, for each); else one */
        if (end - at >= 11 && two_pairs(&at, &d, &zz, &d2, &zz2) && d - 1 < vcap - id - 1 &&
            d2 - 1 < vcap - (id + d) - 1) {
            p = at;
            id += d;
            v[id] = (int64_t)((uint64_t)v[id] + ((zz >> 1) ^ (~(zz & 1) + 1)) * scale);
            id += d2;
            v[id] = (int64_t)((uint64_t)v[id] + ((zz2 >> 1) ^ (~(zz2 & 1) + 1)) * scale);
            i++;
            continue;
        }
        at = p;
        if (end - at >= 11 && (pair_word(&at, &d, &zz) || (short_u(&at, &d) && word_u(&at, &zz)))) {
            p = at;
        } else if (i >= r->n) {
            break;
        } else if (!read_u(&p, end, &d) || !read_u(&p, end, &zz)) {
            rc = ERR_CORRUPT;
            break;
        }
        /* id < vcap after every pair (and vcap >= 1 before the first), so
         * vcap - id >= 1 and one unsigned compare finds both a repeated id
         * (d - 1 wraps to the largest value) and one past the vector */
        if (d - 1 >= vcap - id - 1) {
            if ((i > 0 && d == 0) || d > UINT32_MAX || id + d > UINT32_MAX) {
                rc = ERR_CORRUPT;
                break;
            }
            if (id + d >= vcap) {
                rc = dense_room(val, cap, id + d + 1, max_ids);
                v = *val;
                vcap = *cap;
                if (rc != 0) break;
            }
        }
        id += d;
        uint64_t q = (zz >> 1) ^ (~(zz & 1) + 1);
        v[id] = (int64_t)((uint64_t)v[id] + q * scale); /* wraps like every sum */
    }
    if (rc == 0 && (i != r->n || p != end)) rc = ERR_CORRUPT;
    if (rc != 0) /* nothing of a bad block is added */
        walk_pairs(r->pairs, end, (size_t)i, scale, *val, (uint64_t)0 - 1);
    else if (id >= *used) /* ids ascend: the last is the largest */
        *used = (size_t)id + 1;
    return rc;
}

/* storage_sparse_add_dense for a version-3 block: checked whole first, so
 * a corrupt one adds nothing and a valid one is added without checks. */
static int add_cols(const uint8_t *p, size_t len, int64_t **val, size_t *cap, size_t *used,
                    size_t max_ids)
{
    storage_cols_t c;
    int rc = storage_cols_parse(p, len, &c);
    if (rc != 0 || c.n == 0) return rc;
    if (c.last >= *cap && (rc = dense_room(val, cap, c.last + 1, max_ids)) != 0) return rc;
    storage_cols_add(&c, *val);
    if (c.last >= *used) *used = (size_t)c.last + 1;
    return 0;
}

int storage_sparse_add_dense(const uint8_t *p, size_t len, int64_t **val, size_t *cap, size_t *used,
                             size_t max_ids)
{
    if (len >= 1 && *p == SPARSE_VERSION) return add_cols(p, len, val, cap, used, max_ids);
    dense_run_t r;
    int rc = run_start(&r, p, len);
    if (rc != 0) return rc == 1 ? 0 : rc;
    if (*cap == 0 && (rc = dense_room(val, cap, 1, max_ids)) != 0)
        return rc; /* a block of ids past max_ids 0: corrupt */
    return run_finish(&r, val, cap, used, max_ids);
}

int storage_sparse_add_dense_vec(const sparse_vec_t *v, int64_t **val, size_t *cap, size_t *used,
                                 size_t max_ids)
{
    if (v->n == 0) return 0;
    uint64_t top = v->id[v->n - 1]; /* ids ascend */
    if (top >= *cap) {
        int rc = dense_room(val, cap, top + 1, max_ids);
        if (rc != 0) return rc;
    }
    int64_t *d = *val;
    for (size_t i = 0; i < v->n; i++)
        d[v->id[i]] = (int64_t)((uint64_t)d[v->id[i]] + (uint64_t)v->val[i]);
    if (top + 1 > *used) *used = (size_t)top + 1;
    return 0;
}

/* Adds the pairs of a and b in step while both are plain (eleven bytes
 * left, short varints, ascending ids inside the vector): the two chains of
 * reads (where a pair ends gives where the next starts) run side by side.
 * Stops before the first pair of either that is not; run_finish does the
 * rest of each. */
static void runs_in_step(dense_run_t *a, dense_run_t *b, int64_t *v, size_t vcap)
{
    const uint8_t *pa = a->p, *pb = b->p;
    uint64_t ida = a->id, idb = b->id, k = 0;
    /* as in run_finish, one compare for both ends of a delta's range: 1 to
     * vcap - id - 1, and 0 to vcap - 1 for a block's first pair (f 0) */
    uint64_t fa = a->i != 0, fb = b->i != 0;
    for (;; k++, fa = fb = 1) {
        uint64_t da, za, db, zb;
        const uint8_t *qa = pa, *qb = pb;
        if (a->end - qa < 11 || b->end - qb < 11 ||
            !(pair_word(&qa, &da, &za) || (short_u(&qa, &da) && word_u(&qa, &za))) ||
            !(pair_word(&qb, &db, &zb) || (short_u(&qb, &db) && word_u(&qb, &zb))) ||
            da - fa >= vcap - ida - fa || db - fb >= vcap - idb - fb)
            break;
        pa = qa;
        pb = qb;
        ida += da;
        idb += db;
        uint64_t qva = (za >> 1) ^ (~(za & 1) + 1), qvb = (zb >> 1) ^ (~(zb & 1) + 1);
        v[ida] = (int64_t)((uint64_t)v[ida] + qva * a->scale);
        v[idb] = (int64_t)((uint64_t)v[idb] + qvb * b->scale);
    }
    *a = (dense_run_t){a->pairs, pa, a->end, a->scale, a->n, ida, a->i + k};
    *b = (dense_run_t){b->pairs, pb, b->end, b->scale, b->n, idb, b->i + k};
}

int storage_sparse_add_dense2(const uint8_t *pa, size_t la, const uint8_t *pb, size_t lb,
                              int64_t **val, size_t *cap, size_t *used, size_t max_ids, int *rcb)
{
    if ((la >= 1 && *pa == SPARSE_VERSION) || (lb >= 1 && *pb == SPARSE_VERSION)) {
        /* a version-3 block has no chain of reads to overlap */
        int ra = storage_sparse_add_dense(pa, la, val, cap, used, max_ids);
        *rcb = storage_sparse_add_dense(pb, lb, val, cap, used, max_ids);
        return ra;
    }
    dense_run_t a, b;
    int ra = run_start(&a, pa, la), rb = run_start(&b, pb, lb);
    if ((ra == 0 || rb == 0) && *cap == 0) {
        int rc = dense_room(val, cap, 1, max_ids);
        if (rc != 0) { /* a block of ids past max_ids 0: corrupt */
            *rcb = rb == 0 ? rc : rb == 1 ? 0 : rb;
            return ra == 0 ? rc : ra == 1 ? 0 : ra;
        }
    }
    if (ra == 0 && rb == 0) runs_in_step(&a, &b, *val, *cap);
    if (ra == 0) ra = run_finish(&a, val, cap, used, max_ids);
    if (rb == 0) rb = run_finish(&b, val, cap, used, max_ids);
    *rcb = rb == 1 ? 0 : rb;
    return ra == 1 ? 0 : ra;
}

int storage_sparse_add(sparse_vec_t *acc, const sparse_vec_t *b, sparse_vec_t *tmp)
{
    if (b->n == 0) return 0;
    int rc = storage_sparse_reserve(tmp, acc->n + b->n);
    if (rc != 0) return rc;
    size_t i = 0, j = 0, k = 0;
    while (i < acc->n || j < b->n) {
        if (j == b->n || (i < acc->n && acc->id[i] < b->id[j])) {
            tmp->id[k] = acc->id[i];
            tmp->val[k++] = acc->val[i++];
        } else if (i == acc->n || b->id[j] < acc->id[i]) {
            tmp->id[k] = b->id[j];
            tmp->val[k++] = b->val[j++];
        } else {
            tmp->id[k] = acc->id[i];
            tmp->val[k++] = (int64_t)((uint64_t)acc->val[i++] + (uint64_t)b->val[j++]);
        }
    }
    tmp->n = k;
    sparse_vec_t t = *acc;
    *acc = *tmp;
    *tmp = t;
    return 0;
}

/* The block encoding of the non-zero entries of dense[0..max_id], the bytes
 * storage_sparse_encode makes of the same pairs, without building them. */
static int encode_dense(const int64_t *dense, uint32_t max_id, buf_t *out)
{
    storage_cols_src_t src = {.id = NULL, .val = dense, .n = (size_t)max_id + 1};
    return storage_cols_encode(&src, out);
}

/* out = the encoded sum of the pairs of all through a dense array over ids
 * 0..max_id (zero sums are left out, as the encoding leaves them out). */
static int fold_dense(const sparse_vec_t *all, uint32_t max_id, buf_t *out)
{
    int64_t *dense = calloc((size_t)max_id + 1, sizeof *dense);
    if (dense == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < all->n; i++)
        dense[all->id[i]] = (int64_t)((uint64_t)dense[all->id[i]] + (uint64_t)all->val[i]);
    int rc = encode_dense(dense, max_id, out);
    free(dense);
    return rc;
}

/* The sum of the pairs of all, segment by segment (start: m + 1 offsets),
 * each merge a pass over the sum so far; encoded into out. */
static int fold_merging(const sparse_vec_t *all, const size_t *start, int m, buf_t *out)
{
    sparse_vec_t acc, tmp;
    storage_sparse_init(&acc);
    storage_sparse_init(&tmp);
    int rc = 0;
    for (int i = 0; rc == 0 && i < m; i++) {
        sparse_vec_t seg = {
            .id = all->id + start[i], .val = all->val + start[i], .n = start[i + 1] - start[i]};
        seg.cap = seg.n;
        rc = storage_sparse_add(&acc, &seg, &tmp);
    }
    if (rc == 0) rc = storage_sparse_encode(&acc, out);
    storage_sparse_free(&acc);
    storage_sparse_free(&tmp);
    return rc;
}

/* Operands are decoded into one list first. When their ids are dense enough
 * (a window many series add to, such as a service aggregate's, folds 64
 * operands at a time) one pass over a dense array sums them and the sum is
 * encoded from it; otherwise they are merged in one by one. */
int storage_fold_sparse(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                        buf_t *out)
{
    sparse_vec_t all;
    storage_sparse_init(&all);
    size_t *start = malloc(((size_t)(n > 0 ? n : 0) + 1) * sizeof *start);
    uint32_t max_id = 0;
    int rc = start == NULL ? ERR_NOMEM : 0, m = 0, bad = 0;
    if (start != NULL) start[0] = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        size_t at = all.n;
        int drc = decode_at((const uint8_t *)parts[i], lens[i], &all, at);
        if (drc == ERR_NOMEM) {
            rc = drc;
        } else if (drc != 0) {
            storage_log_corrupt(c, "block", i, drc);
            bad = 1;
        } else {
            if (all.n > at && all.id[all.n - 1] > max_id) max_id = all.id[all.n - 1];
            start[++m] = all.n;
        }
    }
    if (rc == 0 && n == 1 && !bad)
        rc = buf_append(out, parts[0], lens[0]); /* one valid operand: no need to re-encode */
    else if (rc == 0 && m > 1 && (size_t)max_id <= 4 * all.n + 4096)
        rc = fold_dense(&all, max_id, out);
    else if (rc == 0)
        rc = fold_merging(&all, start, m, out);
    free(start);
    storage_sparse_free(&all);
    return rc;
}
