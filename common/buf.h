/* buf.h — a growable byte buffer with a maximum fixed at creation.
 *
 * Every buffer that grows from network or disk input is a buf_t whose `max` is
 * a named limit; appending past it fails with ERR_TOO_LARGE instead of growing.
 * buf_t is a small public value type: the caller owns the struct and frees its
 * storage with buf_free(). data is always NUL-terminated one byte past len (not
 * counted), so text can be handed to C string functions. Not thread-safe.
 */
#ifndef FLAMEDB_COMMON_BUF_H
#define FLAMEDB_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;                            /* appends beyond max bytes fail with ERR_TOO_LARGE */
    int (*charge)(void *ctx, size_t held); /* or NULL: asked before the storage grows */
    void *charge_ctx;
    size_t beside; /* working memory its writer holds beside it (buf_beside_take), told with it */
} buf_t;

#define BUF_UNLIMITED ((size_t)-1)

void buf_init(buf_t *b, size_t max);
void buf_free(buf_t *b);
void buf_reset(buf_t *b); /* len = 0, keeps capacity */
int buf_reserve(buf_t *b, size_t extra);
/* As buf_reserve, but a buffer that must grow grows to exactly len + extra
 * bytes (and the NUL), not to the next power of two: for a writer that
 * measured what it will append (a 44 MB answer in a 64 MiB buffer, grown
 * from 32 MiB, held 96 MiB while realloc copied). The hook is asked first,
 * as for any growth. */
int buf_reserve_exact(buf_t *b, size_t extra);
/* The capacity b would have after buf_reserve(b, extra) (its cap when no
 * growth is needed): what a budget charges before reserving. */
size_t buf_reserved_cap(const buf_t *b, size_t extra);
/* From now on b asks fn(ctx, held) before its storage grows, held being the
 * bytes it holds while growing (the old storage and the new one, which
 * realloc may copy into), and tells it once grown (or not) what it holds:
 * a memory budget charges the growth before it happens. A nonzero return
 * refuses the growth: the append fails with it, b unchanged (a call with
 * less than was asked before must not refuse). fn NULL: none. A copy of b
 * (a struct assignment) carries the hook: clear it before handing b on. */
void buf_charge(buf_t *b, int (*fn)(void *ctx, size_t held), void *ctx);
/* The writer of b (an encoder) holds n more bytes of working memory beside
 * it (a sorted tree, tables, text it copies in later): b's hook is asked
 * for its capacity and everything held beside first, and every later
 * held it is told includes them, so one budget charges the answer and
 * what makes it. Take before allocating; a nonzero return refuses (nothing
 * taken). Give back once freed. Without a hook only counted. */
int buf_beside_take(buf_t *b, size_t n);
void buf_beside_give(buf_t *b, size_t n);
/* A buffer its writer fills before copying it into out (a scratch), held
 * beside out as it grows: buf_charge(&scratch, buf_beside_grows, &link)
 * with link = {out, 0}; once scratch is freed, buf_beside_give(out,
 * link.held). */
typedef struct buf_beside {
    buf_t *out;
    size_t held; /* taken beside out */
} buf_beside_t;
int buf_beside_grows(void *ctx, size_t held);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_append_byte(buf_t *b, uint8_t c);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included; invalid UTF-8 bytes become U+FFFD. */
int buf_append_json_string(buf_t *b, const char *s, size_t n);
/* Length of the valid UTF-8 sequence that starts s[0..n) (n >= 1), or 0 when
 * s[0] starts none: a byte buf_append_json_string writes as U+FFFD. */
size_t buf_utf8_len(const uint8_t *s, size_t n);
/* Appends the LEB128 varint of v / the zigzag varint of v. */
int buf_append_uvarint(buf_t *b, uint64_t v);
int buf_append_svarint(buf_t *b, int64_t v);
int buf_append_u64be(buf_t *b, uint64_t v);
/* Appends v in decimal (a fast path for encoders that print many integers). */
int buf_append_i64(buf_t *b, int64_t v);
/* Hands the storage to the caller (free with free()), leaves b empty. */
uint8_t *buf_steal(buf_t *b, size_t *len);

#endif
