/* ingest_folded.c — folded stacks (`a;b;c 12`, root first) and lines (`a;b;c`).
 *
 * Decisions:
 *  - line ends: LF or CRLF; the last line needs no newline; empty and
 *    whitespace-only lines are skipped;
 *  - the count is the token after the last space or tab (frame names may
 *    contain spaces: `java;Foo::bar (inlined) 3`); it must be a non-negative
 *    decimal integer that fits in int64: a line without one, with a negative
 *    count (a sample cannot be taken a negative number of times, and one
 *    would silently cancel others) or a non-numeric one is refused with 400
 *    naming the line: guessing would make totals wrong;
 *  - encodings: a UTF-8 BOM is skipped; UTF-16 LE/BE with a BOM is converted
 *    to UTF-8 (unpaired surrogates are refused); UTF-16 without a BOM cannot
 *    be told apart reliably and is read as bytes (it then fails for lack of
 *    counts, with the line number);
 *  - frame names are kept as bytes (invalid UTF-8 included, as for pprof);
 *    empty frames between ';;' are kept as empty names;
 *  - format=lines: every line is one stack worth 1 (before scaling).
 */
#include <stdlib.h>
#include <string.h>

#include "node/ingest/ingest_int.h"

static void put_utf8(uint8_t **o, uint32_t cp)
{
    uint8_t *p = *o;
    if (cp < 0x80) {
        *p++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *p++ = (uint8_t)(0xc0 | cp >> 6);
        *p++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *p++ = (uint8_t)(0xe0 | cp >> 12);
        *p++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        *p++ = (uint8_t)(0xf0 | cp >> 18);
        *p++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        *p++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (uint8_t)(0x80 | (cp & 0x3f));
    }
    *o = p;
}

/* UTF-16 (after the BOM) to UTF-8; at most 3 output bytes per 2 input bytes. */
static int utf16_to_utf8(const uint8_t *in, size_t n, bool be, uint8_t **out, size_t *out_len,
                         errmsg_t *em)
{
    if (n % 2 != 0)
        return errmsg_set(em, ERR_UNPARSEABLE, "UTF-16 body has an odd number of bytes");
    uint8_t *buf = malloc(n / 2 * 3 + 1), *o = buf;
    if (buf == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i += 2) {
        uint32_t u = be ? (uint32_t)in[i] << 8 | in[i + 1] : (uint32_t)in[i + 1] << 8 | in[i];
        if (u >= 0xd800 && u < 0xdc00 && i + 3 < n) {
            uint32_t l =
                be ? (uint32_t)in[i + 2] << 8 | in[i + 3] : (uint32_t)in[i + 3] << 8 | in[i + 2];
            if (l >= 0xdc00 && l < 0xe000) {
                put_utf8(&o, 0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00));
                i += 2;
                continue;
            }
        }
        if (u >= 0xd800 && u < 0xe000) {
            free(buf);
            return errmsg_set(em, ERR_UNPARSEABLE,
                              "UTF-16 body has an unpaired surrogate at byte %zu", i + 2);
        }
        put_utf8(&o, u);
    }
    *out = buf;
    *out_len = (size_t)(o - buf);
    return 0;
}

/* Parses a non-negative decimal count; 0 on success, else a static reason. */
static const char *parse_count(const uint8_t *s, const uint8_t *e, int64_t *v)
{
    if (s < e && *s == '-') return "is negative";
    if (s == e) return "is missing";
    uint64_t x = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return "is not a decimal integer";
        if (x > (UINT64_MAX - 9) / 10) return "does not fit in 64 bits";
        x = x * 10 + (uint64_t)(*s - '0');
    }
    if (x > (uint64_t)INT64_MAX) return "does not fit in 64 bits";
    *v = (int64_t)x;
    return NULL;
}

static bool blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Turns "a;b;c" into symbols on ss->stack (their push indices,
 * ingest_series_sym_at). The symbol table lives as long as the push: its
 * growth is charged to the push (ingest_charge). */
static int frames(folded_ctx_t *c, const uint8_t *s, const uint8_t *e, size_t *depth, errmsg_t *em)
{
    size_t d = 1, before = symtab_mem_bytes(c->symtab);
    for (const uint8_t *p = s; (p = memchr(p, ';', (size_t)(e - p))) != NULL; p++)
        d++;
    int rc = ingest_series_stack_reserve(c->ss, d, em);
    if (rc < 0) return rc;
    size_t i = 0;
    while (s <= e) {
        const uint8_t *semi = memchr(s, ';', (size_t)(e - s));
        const uint8_t *fe = semi ? semi : e;
        if ((size_t)(fe - s) > c->lim->max_symbol_len)
            return errmsg_set(
                em, ERR_LIMIT, "frame '%.*s...' longer than %zu bytes (max-symbol-len)",
                (int)(fe - s > 60 ? 60 : fe - s), (const char *)s, c->lim->max_symbol_len);
        uint64_t sym;
        uint32_t at;
        if (symtab_intern_index(c->symtab, (const char *)s, (size_t)(fe - s), "", 0, &sym, &at) < 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory");
        c->ss->stack[i++] = ingest_series_sym_at(at);
        if (semi == NULL) break;
        s = semi + 1;
    }
    *depth = i;
    size_t after = symtab_mem_bytes(c->symtab);
    return after > before ? ingest_charge(c->ss, after - before, "symbol table", em) : 0;
}

static int one_line(folded_ctx_t *c, const uint8_t *s, const uint8_t *e, size_t lineno,
                    errmsg_t *em)
{
    int64_t count = 1, v;
    if (!c->lines) {
        const uint8_t *sp = e;
        while (sp > s && !blank(sp[-1]))
            sp--;
        const uint8_t *se = sp;
        while (se > s && blank(se[-1]))
            se--;
        const char *why = se == sp || se == s ? "is missing" : parse_count(sp, e, &count);
        if (why != NULL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "folded line %zu: the count %s (expected 'frame;frame;... <count>', "
                              "a non-negative integer): '%.*s'",
                              lineno, why, (int)(e - s > 60 ? 60 : e - s), (const char *)s);
        e = se;
    }
    if (__builtin_mul_overflow(count, c->scale, &v))
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "folded line %zu: the count times 1e9/sampleRate does not fit in 64 bits",
                          lineno);
    size_t depth = 0;
    int rc = frames(c, s, e, &depth, em);
    if (rc < 0 || v == 0) return rc;
    return ingest_series_add(c->ss, c->series, c->ss->stack, depth, v, em);
}

static int parse_text(folded_ctx_t *c, const uint8_t *p, size_t n, errmsg_t *em)
{
    const uint8_t *end = p + n;
    size_t lineno = 0, stacks = 0;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *le = nl ? nl : end;
        lineno++;
        const uint8_t *s = p, *e = le;
        while (e > s && (e[-1] == '\r' || blank(e[-1])))
            e--;
        while (s < e && blank(*s))
            s++;
        p = nl ? nl + 1 : end;
        if (s == e) continue;
        if (++stacks > c->lim->max_samples)
            return errmsg_set(em, ERR_LIMIT, "body has more than %zu stacks (max-samples)",
                              c->lim->max_samples);
        int rc = one_line(c, s, e, lineno, em);
        if (rc < 0) return rc;
    }
    return 0;
}

int ingest_folded(const uint8_t *data, size_t len, folded_ctx_t *c, errmsg_t *em)
{
    if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)
        return parse_text(c, data + 3, len - 3, em);
    if (len >= 2 &&
        ((data[0] == 0xff && data[1] == 0xfe) || (data[0] == 0xfe && data[1] == 0xff))) {
        uint8_t *u8 = NULL;
        size_t n = 0;
        /* the UTF-8 copy is charged while it is parsed, as allocated */
        size_t copy = (len - 2) / 2 * 3 + 1;
        int rc = ingest_charge(c->ss, copy, "UTF-8 copy of the body", em);
        if (rc < 0) return rc;
        rc = utf16_to_utf8(data + 2, len - 2, data[0] == 0xfe, &u8, &n, em);
        if (rc == 0) rc = parse_text(c, u8, n, em);
        free(u8);
        ingest_uncharge(c->ss, copy);
        return rc;
    }
    return parse_text(c, data, len, em);
}
