/* json.c — the small JSON reader of libflamedb (flamedb_int.h).
 *
 * The client reads only two shapes: arrays of strings (label names/values)
 * and error objects {"code": "...", "message": "..."}. A recursive-descent
 * scanner with a depth limit skips everything else, so hostile nesting cannot
 * exhaust the stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"

typedef struct reader {
    const char *p, *end;
} reader_t;

static void skip_ws(reader_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static int put_utf8(buf_t *out, unsigned cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18));
        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return out ? buf_append(out, b, n) : ERR_OK;
}

/* \uXXXX, with surrogate pairs joined; r->p is just after the 'u'. */
static int read_unicode(reader_t *r, buf_t *out)
{
    unsigned cp, lo;
    if (r->end - r->p < 4 || hex4(r->p, &cp) != 0) return ERR_UNPARSEABLE;
    r->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' &&
        hex4(r->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        r->p += 6;
    } else if (cp >= 0xD800 && cp < 0xE000) {
        cp = 0xFFFD; /* lone surrogate */
    }
    return put_utf8(out, cp);
}

/* Reads a string literal at r->p into out (out may be NULL to skip). */
static int read_string(reader_t *r, buf_t *out)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    if (r->p >= r->end || *r->p != '"') return ERR_UNPARSEABLE;
    r->p++;
    while (r->p < r->end) {
        char ch = *r->p++;
        int rc = ERR_OK;
        if (ch == '"') return ERR_OK;
        if ((unsigned char)ch < 0x20) return ERR_UNPARSEABLE;
        if (ch != '\\') {
            rc = out ? buf_append_byte(out, (uint8_t)ch) : ERR_OK;
        } else if (r->p < r->end && *r->p == 'u') {
            r->p++;
            rc = read_unicode(r, out);
        } else {
            const char *e = r->p < r->end ? strchr(esc_in, *r->p) : NULL;
            if (e == NULL || *e == '\0') return ERR_UNPARSEABLE;
            r->p++;
            rc = out ? buf_append_byte(out, (uint8_t)esc_out[e - esc_in]) : ERR_OK;
        }
        if (rc != ERR_OK) return rc;
    }
    return ERR_UNPARSEABLE;
}

static int skip_value(reader_t *r, int depth);

/* Skips an array or object body; r->p is on the opening bracket. */
static int skip_container(reader_t *r, int depth)
{
    char close = *r->p == '[' ? ']' : '}';
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return ERR_OK;
    }
    for (;;) {
        if (close == '}') {
            skip_ws(r);
            if (read_string(r, NULL) != ERR_OK) return ERR_UNPARSEABLE;
            skip_ws(r);
            if (r->p >= r->end || *r->p++ != ':') return ERR_UNPARSEABLE;
        }
        if (skip_value(r, depth + 1) != ERR_OK) return ERR_UNPARSEABLE;
        skip_ws(r);
        if (r->p >= r->end) return ERR_UNPARSEABLE;
        char ch = *r->p++;
        if (ch == close) return ERR_OK;
        if (ch != ',') return ERR_UNPARSEABLE;
    }
}

static int skip_value(reader_t *r, int depth)
{
    if (depth > FLAMEDB__JSON_MAX_DEPTH) return ERR_UNPARSEABLE;
    skip_ws(r);
    if (r->p >= r->end) return ERR_UNPARSEABLE;
    char ch = *r->p;
    if (ch == '"') return read_string(r, NULL);
    if (ch == '[' || ch == '{') return skip_container(r, depth);
    const char *start = r->p;
    while (r->p < r->end && strchr("+-.0123456789eEtruefalsn", *r->p) != NULL && *r->p)
        r->p++;
    return r->p > start ? ERR_OK : ERR_UNPARSEABLE;
}

static int push_item(flamedb_strings_t *out, size_t *cap, buf_t *s)
{
    if (out->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        char **items = realloc(out->items, ncap * sizeof *items);
        if (items == NULL) return ERR_NOMEM;
        out->items = items;
        *cap = ncap;
    }
    size_t len;
    uint8_t *p = buf_steal(s, &len);
    if (p == NULL) p = (uint8_t *)strdup("");
    if (p == NULL) return ERR_NOMEM;
    out->items[out->count++] = (char *)p;
    return ERR_OK;
}

static int parse_strings(reader_t *r, flamedb_strings_t *out)
{
    size_t cap = 0;
    skip_ws(r);
    if (r->p >= r->end || *r->p++ != '[') return ERR_UNPARSEABLE;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return ERR_OK;
    }
    for (;;) {
        if (out->count >= FLAMEDB__MAX_STRINGS) return ERR_TOO_LARGE;
        buf_t s;
        buf_init(&s, (size_t)(r->end - r->p));
        skip_ws(r);
        int rc = read_string(r, &s);
        if (rc == ERR_OK) rc = push_item(out, &cap, &s);
        buf_free(&s);
        if (rc != ERR_OK) return rc;
        skip_ws(r);
        if (r->p >= r->end) return ERR_UNPARSEABLE;
        char ch = *r->p++;
        if (ch == ']') return ERR_OK;
        if (ch != ',') return ERR_UNPARSEABLE;
    }
}

int flamedb__json_strings(const char *p, size_t n, flamedb_strings_t *out, errmsg_t *em)
{
    reader_t r = {p, p + n};
    out->items = NULL;
    out->count = 0;
    int rc = parse_strings(&r, out);
    skip_ws(&r);
    if (rc == ERR_OK && r.p != r.end) rc = ERR_UNPARSEABLE;
    if (rc == ERR_OK) return ERR_OK;
    flamedb_strings_free(out);
    if (rc == ERR_UNPARSEABLE) return errmsg_set(em, rc, "response is not a JSON array of strings");
    return errmsg_set(em, rc, "response: %s", err_message(rc));
}

/* Copies a string value into dst (truncated) when key is wanted. */
static int read_member(reader_t *r, char *dst, size_t cap)
{
    skip_ws(r);
    if (r->p >= r->end || *r->p != '"') return skip_value(r, 1);
    buf_t s;
    buf_init(&s, (size_t)(r->end - r->p));
    int rc = read_string(r, &s);
    if (rc == ERR_OK && dst != NULL && cap > 0) {
        size_t n = s.len < cap - 1 ? s.len : cap - 1;
        if (n > 0) memcpy(dst, s.data, n);
        dst[n] = '\0';
    }
    buf_free(&s);
    return rc;
}

int flamedb__json_error(const char *p, size_t n, char *code, size_t code_len, char *msg,
                        size_t msg_len)
{
    reader_t r = {p, p + n};
    if (code_len > 0) code[0] = '\0';
    if (msg_len > 0) msg[0] = '\0';
    skip_ws(&r);
    if (r.p >= r.end || *r.p++ != '{') return ERR_UNPARSEABLE;
    skip_ws(&r);
    if (r.p < r.end && *r.p == '}') return ERR_OK;
    for (;;) {
        char key[16];
        buf_t k;
        buf_init(&k, sizeof key - 1 + (size_t)(r.end - r.p));
        skip_ws(&r);
        int rc = read_string(&r, &k);
        snprintf(key, sizeof key, "%s", k.data ? (char *)k.data : "");
        buf_free(&k);
        skip_ws(&r);
        if (rc != ERR_OK || r.p >= r.end || *r.p++ != ':') return ERR_UNPARSEABLE;
        if (strcmp(key, "code") == 0)
            rc = read_member(&r, code, code_len);
        else if (strcmp(key, "message") == 0)
            rc = read_member(&r, msg, msg_len);
        else
            rc = skip_value(&r, 1);
        skip_ws(&r);
        if (rc != ERR_OK || r.p >= r.end) return ERR_UNPARSEABLE;
        char ch = *r.p++;
        if (ch == '}') return ERR_OK;
        if (ch != ',') return ERR_UNPARSEABLE;
    }
}
