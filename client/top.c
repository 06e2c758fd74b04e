/* top.c — the "top functions" table that flamectl prints, computed from a
 * folded-stacks answer (flamedb_int.h). Part of the in-tree client library
 * only; not exported by the shared libflamedb.
 *
 * self  = value of the stacks where the function is the leaf;
 * total = value of the stacks where it appears at least once (a recursive
 *         function is counted once per stack, so total never exceeds the sum).
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/grow.h"
#include "common/strmap.h"

typedef struct builder {
    flamedb__top_t *t;
    size_t cap;
    strmap_t names;  /* function name -> row (the rows' own copies, borrowed) */
    uint64_t *stamp; /* per row: the last line that added to its total */
} builder_t;

static int add_row(builder_t *b, const char *name, size_t len, uint32_t *row)
{
    flamedb__top_t *t = b->t;
    size_t c1 = b->cap, c2 = b->cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(t->rows, c1, t->count + 1, GROW_UNLIMITED, 256) != 0 ||
        GROW_FROM(b->stamp, c2, t->count + 1, GROW_UNLIMITED, 256) != 0)
        return ERR_NOMEM;
    b->cap = c1;
    char *copy = strndup(name, len);
    if (copy == NULL) return ERR_NOMEM;
    t->rows[t->count] = (flamedb__top_row_t){copy, 0, 0};
    b->stamp[t->count] = 0;
    *row = (uint32_t)t->count++;
    return ERR_OK;
}

/* Finds or adds the row of a function name (up to its first NUL, as the
 * row keeps it). Rows and names are interned in the same order. */
static int intern(builder_t *b, const char *name, size_t len, uint32_t *row)
{
    len = strnlen(name, len);
    if (strmap_find(&b->names, name, len, row)) return ERR_OK;
    int rc = add_row(b, name, len, row);
    uint32_t idx;
    if (rc == ERR_OK) rc = strmap_intern(&b->names, b->t->rows[*row].name, len, &idx);
    return rc;
}

/* Parses the count at the end of a line: "stack COUNT". */
static int split_count(const char *line, size_t len, size_t *stack_len, int64_t *v)
{
    const char *sp = NULL;
    for (size_t i = len; i > 0; i--)
        if (line[i - 1] == ' ') {
            sp = line + i - 1;
            break;
        }
    if (sp == NULL || sp == line) return -1;
    char *end;
    char tmp[32];
    size_t n = (size_t)(line + len - sp - 1);
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, sp + 1, n);
    tmp[n] = '\0';
    *v = strtoll(tmp, &end, 10);
    if (*end != '\0') return -1;
    *stack_len = (size_t)(sp - line);
    return 0;
}

static int add_line(builder_t *b, const char *line, size_t len, uint64_t lineno, errmsg_t *em)
{
    size_t slen;
    int64_t v;
    if (split_count(line, len, &slen, &v) != 0)
        return errmsg_set(em, ERR_UNPARSEABLE, "folded line %llu: no count",
                          (unsigned long long)lineno);
    uint32_t row = 0;
    for (size_t start = 0; start <= slen;) {
        const char *semi = memchr(line + start, ';', slen - start);
        size_t flen = semi ? (size_t)(semi - line) - start : slen - start;
        int rc = intern(b, line + start, flen, &row);
        if (rc != ERR_OK) return errmsg_set(em, rc, "out of memory");
        if (b->stamp[row] != lineno) {
            b->stamp[row] = lineno;
            b->t->rows[row].total += v;
        }
        start += flen + 1;
    }
    b->t->rows[row].self += v;
    b->t->sum += v;
    return ERR_OK;
}

static int by_self(const void *a, const void *b)
{
    const flamedb__top_row_t *x = a, *y = b;
    if (x->self != y->self) return x->self < y->self ? 1 : -1;
    if (x->total != y->total) return x->total < y->total ? 1 : -1;
    return strcmp(x->name, y->name);
}

int flamedb__top_folded(const char *text, size_t n, flamedb__top_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    builder_t b = {.t = out};
    strmap_init(&b.names);
    int rc = ERR_OK;
    uint64_t lineno = 0;
    for (size_t pos = 0; pos < n && rc == ERR_OK;) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - text) - pos : n - pos;
        size_t l = len;
        if (l > 0 && text[pos + l - 1] == '\r') l--;
        lineno++;
        if (l > 0) rc = add_line(&b, text + pos, l, lineno, em);
        pos += len + 1;
    }
    strmap_free(&b.names);
    free(b.stamp);
    if (rc != ERR_OK) {
        flamedb__top_free(out);
        return rc;
    }
    if (out->count > 0) qsort(out->rows, out->count, sizeof *out->rows, by_self);
    return ERR_OK;
}

void flamedb__top_free(flamedb__top_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->rows[i].name);
    free(t->rows);
    memset(t, 0, sizeof *t);
}
