/* buf.c — growable bounded byte buffer (see buf.h). */
#include "common/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/grow.h"
#include "common/varint.h"

#define BUF_MIN_CAP 64 /* the first allocation */

void buf_init(buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->charge = NULL;
    b->charge_ctx = NULL;
    b->beside = 0;
}

void buf_charge(buf_t *b, int (*fn)(void *ctx, size_t held), void *ctx)
{
    b->charge = fn;
    b->charge_ctx = fn != NULL ? ctx : NULL;
}

int buf_beside_take(buf_t *b, size_t n)
{
    if (n == 0) return ERR_OK;
    if (b->charge != NULL) {
        size_t held = b->cap + b->beside;
        int rc = b->charge(b->charge_ctx, held > SIZE_MAX - n ? SIZE_MAX : held + n);
        if (rc != ERR_OK) {
            b->charge(b->charge_ctx, held);
            return rc;
        }
    }
    b->beside += n;
    return ERR_OK;
}

void buf_beside_give(buf_t *b, size_t n)
{
    if (n == 0) return;
    b->beside -= n < b->beside ? n : b->beside;
    if (b->charge != NULL) b->charge(b->charge_ctx, b->cap + b->beside);
}

int buf_beside_grows(void *ctx, size_t held)
{
    buf_beside_t *l = ctx;
    if (held > l->held) {
        int rc = buf_beside_take(l->out, held - l->held);
        if (rc != ERR_OK) return rc;
    } else {
        buf_beside_give(l->out, l->held - held);
    }
    l->held = held;
    return ERR_OK;
}

/* The capacity grow_array gives for need bytes. */
static size_t grown_cap(const buf_t *b, size_t need)
{
    if (need <= b->cap) return b->cap;
    size_t n = b->cap > 0 ? b->cap : BUF_MIN_CAP;
    while (n < need)
        n = n > SIZE_MAX / 2 ? SIZE_MAX : n * 2;
    return n;
}

size_t buf_reserved_cap(const buf_t *b, size_t extra)
{
    size_t need = b->len + extra;
    return grown_cap(b, need < SIZE_MAX ? need + 1 : need); /* + NUL terminator */
}

/* Grows b to hold need bytes as grow_array does, its hook asked first. */
static int reserve_charged(buf_t *b, size_t need)
{
    size_t n = grown_cap(b, need);
    size_t old = b->cap + b->beside; /* what the writer holds beside counts with it */
    int rc = b->charge(b->charge_ctx, old > SIZE_MAX - n ? SIZE_MAX : old + n);
    if (rc != ERR_OK) {
        b->charge(b->charge_ctx, old);
        return rc;
    }
    rc = grow_array(&b->data, &b->cap, need, 1, GROW_UNLIMITED, BUF_MIN_CAP);
    b->charge(b->charge_ctx, b->cap + b->beside);
    return rc;
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data != NULL) b->data[0] = 0;
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) return ERR_TOO_LARGE;
    size_t need = b->len + extra + 1; /* + NUL terminator */
    if (need <= b->cap) return ERR_OK;
    if (b->charge != NULL) return reserve_charged(b, need);
    return grow_array(&b->data, &b->cap, need, 1, GROW_UNLIMITED, BUF_MIN_CAP);
}

int buf_reserve_exact(buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) return ERR_TOO_LARGE;
    size_t need = b->len + extra + 1; /* + NUL terminator */
    if (need <= b->cap) return ERR_OK;
    size_t old = b->cap;
    int rc = b->charge != NULL ? b->charge(b->charge_ctx, old + need) : ERR_OK;
    if (rc != ERR_OK) {
        b->charge(b->charge_ctx, old);
        return rc;
    }
    uint8_t *p = realloc(b->data, need);
    if (p == NULL) {
        rc = ERR_NOMEM;
    } else {
        b->data = p;
        b->cap = need;
        b->data[b->len] = 0;
    }
    if (b->charge != NULL) b->charge(b->charge_ctx, b->cap);
    return rc;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != ERR_OK) return rc;
    if (n > 0) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return ERR_OK;
}

int buf_append_str(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_byte(buf_t *b, uint8_t c)
{
    return buf_append(b, &c, 1);
}

int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return ERR_INTERNAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc != ERR_OK) return rc;
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return ERR_OK;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

size_t buf_utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* 1 for the bytes a JSON string holds as they are: printable ASCII but the
 * quote and the backslash (control bytes are escaped, the rest is UTF-8). */
static const uint8_t plain_json[256] = {
    /* 0x00 - 0x7f, 32 a row; 0x80 - 0xff: 0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Non-zero when one of w's eight bytes is zero (exact: a borrow starts
 * only at a zero byte, and the lowest one sets its high bit). */
static inline uint64_t has_zero_byte(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

/* 0 when the eight bytes at s are all plain_json: none below 0x20 (the
 * lowest such byte sets its high bit, as in has_zero_byte), none from
 * 0x80 on, no quote and no backslash. A non-zero answer only sends the
 * word to the table, which finds the byte. */
static inline uint64_t json_word_special(const uint8_t *s)
{
    uint64_t w;
    memcpy(&w, s, sizeof w);
    return ((w - 0x20 * ONES) & ~w & HIGHS) | (w & HIGHS) | has_zero_byte(w ^ ('"' * ONES)) |
           has_zero_byte(w ^ ('\\' * ONES));
}

int buf_append_json_string(buf_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)str;
    int rc = buf_append_byte(b, '"');
    size_t i = 0;
    while (rc == ERR_OK && i < n) {
        size_t run = i;
        /* copy the longest run of bytes that need no escaping in one append
         * (names are most of a flame graph's text): eight bytes a step while
         * a word is all plain, then one table load per byte */
        while (run + 8 <= n && json_word_special(s + run) == 0)
            run += 8;
        while (run < n && plain_json[s[run]])
            run++;
        if (run > i) {
            rc = buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = buf_append(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, e, 6);
            i++;
        } else {
            size_t l = buf_utf8_len(s + i, n - i);
            if (l == 0) {
                rc = buf_append(b, "\xef\xbf\xbd", 3); /* U+FFFD */
                i++;
            } else {
                rc = buf_append(b, s + i, l);
                i += l;
            }
        }
    }
    return rc == ERR_OK ? buf_append_byte(b, '"') : rc;
}

int buf_append_uvarint(buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    return buf_append(b, tmp, varint_put_u(tmp, v));
}

int buf_append_svarint(buf_t *b, int64_t v)
{
    return buf_append_uvarint(b, varint_zigzag(v));
}

int buf_append_u64be(buf_t *b, uint64_t v)
{
    uint8_t tmp[8];
    be64_put(tmp, v);
    return buf_append(b, tmp, 8);
}

int buf_append_i64(buf_t *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) *--p = '-';
    return buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

uint8_t *buf_steal(buf_t *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len != NULL) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
