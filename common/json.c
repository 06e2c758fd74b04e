/* json.c — the bounded JSON reader (see json.h).
 *
 * Containers are walked by the caller; the reader keeps only the kind of each
 * open container (one bit per level, so depth is capped at 64) to match the
 * closing bracket, and whether the next json_next() is the first of its
 * container. json_skip() recurses, bounded by the same depth. */
#include "common/json.h"

#include <string.h>

#include "common/err.h"

#define JSON_DEPTH_CAP 64

void json_init(json_t *j, const void *p, size_t n, json_limits_t lim)
{
    j->start = j->p = p;
    j->end = j->p + n;
    j->depth = 0;
    if (lim.max_depth > JSON_DEPTH_CAP || lim.max_depth < 0) lim.max_depth = JSON_DEPTH_CAP;
    j->lim = lim;
    j->objects = 0;
    j->first = false;
}

static void ws(json_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool is_scalar_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

json_kind_t json_peek(json_t *j)
{
    ws(j);
    if (j->p >= j->end) return JSON_END;
    switch (*j->p) {
    case '{':
        return JSON_OBJECT;
    case '[':
        return JSON_ARRAY;
    case '"':
        return JSON_STRING;
    case 'n':
        return JSON_NULL;
    default:
        return is_scalar_byte(*j->p) ? JSON_SCALAR : JSON_BAD;
    }
}

size_t json_offset(const json_t *j)
{
    return (size_t)(j->p - j->start);
}

int json_finish(json_t *j)
{
    ws(j);
    return j->p == j->end ? ERR_OK : ERR_UNPARSEABLE;
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

static size_t utf8(unsigned cp, char b[4])
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX with surrogate pairs joined; j->p is just after the 'u'. */
static int unicode(json_t *j, char b[4], size_t *n)
{
    unsigned cp, lo;
    if (j->end - j->p < 4 || hex4(j->p, &cp) != 0) return ERR_UNPARSEABLE;
    j->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
        hex4(j->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        j->p += 6;
    } else if (cp >= 0xD800 && cp < 0xE000) {
        cp = 0xFFFD; /* lone surrogate */
    }
    *n = utf8(cp, b);
    return ERR_OK;
}

/* The string at j->p, each decoded piece handed to sink (a buf_t or a
 * truncating fixed buffer). */
typedef struct sink {
    buf_t *buf;
    char *dst;
    size_t cap, len; /* dst: cap includes the NUL; len counts all decoded bytes */
} sink_t;

static int sink_put(json_t *j, sink_t *s, const char *b, size_t n)
{
    if (s->len + n > j->lim.max_string) return ERR_TOO_LARGE;
    if (s->dst != NULL && s->len < s->cap - 1) {
        size_t k = s->cap - 1 - s->len < n ? s->cap - 1 - s->len : n;
        memcpy(s->dst + s->len, b, k);
        s->dst[s->len + k] = '\0';
    }
    s->len += n;
    return s->buf != NULL ? buf_append(s->buf, b, n) : ERR_OK;
}

static int read_string(json_t *j, sink_t *s)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    if (s->dst != NULL) s->dst[0] = '\0';
    ws(j);
    if (j->p >= j->end || *j->p != '"') return ERR_UNPARSEABLE;
    j->p++;
    while (j->p < j->end) {
        const char *run = j->p;
        while (j->p < j->end && *j->p != '"' && *j->p != '\\' && (unsigned char)*j->p >= 0x20)
            j->p++;
        int rc = j->p > run ? sink_put(j, s, run, (size_t)(j->p - run)) : ERR_OK;
        if (rc != ERR_OK) return rc;
        if (j->p >= j->end) break;
        char ch = *j->p++, b[4];
        size_t n = 1;
        if (ch == '"') return ERR_OK;
        if (ch != '\\' || j->p >= j->end) return ERR_UNPARSEABLE;
        if (*j->p == 'u') {
            j->p++;
            rc = unicode(j, b, &n);
        } else {
            const char *e = strchr(esc_in, *j->p);
            if (e == NULL || *e == '\0') return ERR_UNPARSEABLE;
            j->p++;
            b[0] = esc_out[e - esc_in];
        }
        if (rc == ERR_OK) rc = sink_put(j, s, b, n);
        if (rc != ERR_OK) return rc;
    }
    return ERR_UNPARSEABLE;
}

int json_string(json_t *j, buf_t *out)
{
    sink_t s = {.buf = out};
    return read_string(j, &s);
}

int json_string_to(json_t *j, char *dst, size_t cap)
{
    sink_t s = {.dst = cap > 0 ? dst : NULL, .cap = cap};
    return read_string(j, &s);
}

int json_scalar_to(json_t *j, char *dst, size_t cap)
{
    json_kind_t k = json_peek(j);
    if (k == JSON_STRING) return json_string_to(j, dst, cap);
    if (k != JSON_SCALAR && k != JSON_NULL) return ERR_UNPARSEABLE;
    const char *s = j->p;
    while (j->p < j->end && is_scalar_byte(*j->p))
        j->p++;
    size_t n = (size_t)(j->p - s);
    if (cap > 0) {
        n = n < cap - 1 ? n : cap - 1;
        memcpy(dst, s, n);
        dst[n] = '\0';
    }
    return ERR_OK;
}

int json_enter(json_t *j, char open)
{
    ws(j);
    if (j->p >= j->end || *j->p != open || (open != '{' && open != '[')) return ERR_UNPARSEABLE;
    if (j->depth >= j->lim.max_depth) return ERR_UNPARSEABLE;
    j->p++;
    uint64_t bit = 1ull << j->depth;
    j->objects = open == '{' ? j->objects | bit : j->objects & ~bit;
    j->depth++;
    j->first = true;
    return ERR_OK;
}

bool json_next(json_t *j, int *rc)
{
    *rc = ERR_UNPARSEABLE;
    if (j->depth == 0) return false;
    char close = j->objects >> (j->depth - 1) & 1 ? '}' : ']';
    bool first = j->first;
    j->first = false;
    ws(j);
    if (j->p >= j->end) return false;
    if (*j->p == close) {
        j->p++;
        j->depth--;
        *rc = ERR_OK;
        return false;
    }
    if (!first) {
        if (*j->p != ',') return false;
        j->p++;
    }
    *rc = ERR_OK;
    return true;
}

int json_key(json_t *j, char *key, size_t cap)
{
    int rc = json_string_to(j, key, cap);
    if (rc != ERR_OK) return rc;
    ws(j);
    if (j->p >= j->end || *j->p != ':') return ERR_UNPARSEABLE;
    j->p++;
    return ERR_OK;
}

int json_skip(json_t *j)
{
    json_kind_t k = json_peek(j);
    if (k == JSON_STRING) return json_string(j, NULL);
    if (k == JSON_SCALAR || k == JSON_NULL) return json_scalar_to(j, NULL, 0);
    if (k != JSON_OBJECT && k != JSON_ARRAY) return ERR_UNPARSEABLE;
    int rc = json_enter(j, k == JSON_OBJECT ? '{' : '[');
    if (rc != ERR_OK) return rc;
    while (json_next(j, &rc)) {
        if (k == JSON_OBJECT && (rc = json_key(j, NULL, 0)) != ERR_OK) return rc;
        if ((rc = json_skip(j)) != ERR_OK) return rc;
    }
    return rc;
}
