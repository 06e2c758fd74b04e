/* varint.h — LEB128 / zigzag varints and big-endian fixed integers.
 *
 * Readers are bounds-checked: they never read past `end` and return 0 on
 * truncated or over-long (more than 10 bytes) input. Header-only, no state.
 */
#ifndef FLAMEDB_COMMON_VARINT_H
#define FLAMEDB_COMMON_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* Reads a uvarint at *p (< end) into *v and advances *p. Returns 1, or 0 on bad input. */
static inline int varint_read_u(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    const uint8_t *s = *p;
    for (unsigned shift = 0; shift < 70 && s < end; shift += 7) {
        uint8_t b = *s++;
        if (shift == 63 && b > 1) return 0;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            *p = s;
            return 1;
        }
    }
    return 0;
}

static inline int varint_read_s(const uint8_t **p, const uint8_t *end, int64_t *v)
{
    uint64_t u;
    if (!varint_read_u(p, end, &u)) return 0;
    *v = (int64_t)((u >> 1) ^ (~(u & 1) + 1));
    return 1;
}

/* Writes v at p (room for 10 bytes); returns the byte count. */
static inline size_t varint_put_u(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline uint64_t varint_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

#endif
