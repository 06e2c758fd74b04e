/* labels.c — sorted label sets (see labels.h). Pairs live in one array kept
 * sorted by name; each string is its own allocation, because sets are small
 * (tens of pairs) and are built once per series. */
#include "common/labels.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/grow.h"
#include "common/hash.h"

typedef struct label_pair {
    char *name;
    char *value;
} label_pair_t;

struct labels {
    label_pair_t *pairs;
    size_t count;
    size_t cap;
};

labels_t *labels_new(void)
{
    return calloc(1, sizeof(labels_t));
}

void labels_free(labels_t *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->count; i++) {
        free(l->pairs[i].name);
        free(l->pairs[i].value);
    }
    free(l->pairs);
    free(l);
}

size_t labels_mem_bytes(const labels_t *l)
{
    size_t n = sizeof *l + l->cap * sizeof *l->pairs;
    for (size_t i = 0; i < l->count; i++)
        n += strlen(l->pairs[i].name) + strlen(l->pairs[i].value) + 2;
    return n;
}

labels_t *labels_clone(const labels_t *l)
{
    labels_t *c = labels_new();
    if (c == NULL) return NULL;
    for (size_t i = 0; i < l->count; i++) {
        if (labels_set_str(c, l->pairs[i].name, l->pairs[i].value) != ERR_OK) {
            labels_free(c);
            return NULL;
        }
    }
    return c;
}

/* Bytewise compare of a (ptr,len) name against a NUL-terminated one. */
static int name_cmp(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Index of name, or of the position it would be inserted at (*found = 0). */
static size_t find(const labels_t *l, const char *name, size_t name_len, int *found)
{
    size_t lo = 0, hi = l->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, name_len, l->pairs[mid].name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = 0;
    return lo;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

int labels_set(labels_t *l, const char *name, size_t name_len, const char *value, size_t value_len)
{
    int found;
    size_t at = find(l, name, name_len, &found);
    char *v = dup_n(value, value_len);
    if (v == NULL) return ERR_NOMEM;
    if (found) {
        free(l->pairs[at].value);
        l->pairs[at].value = v;
        return ERR_OK;
    }
    char *n = dup_n(name, name_len);
    if (n == NULL) {
        free(v);
        return ERR_NOMEM;
    }
    if (GROW_FROM(l->pairs, l->cap, l->count + 1, GROW_UNLIMITED, 8) != ERR_OK) {
        free(n);
        free(v);
        return ERR_NOMEM;
    }
    memmove(l->pairs + at + 1, l->pairs + at, (l->count - at) * sizeof *l->pairs);
    l->pairs[at].name = n;
    l->pairs[at].value = v;
    l->count++;
    return ERR_OK;
}

int labels_set_str(labels_t *l, const char *name, const char *value)
{
    return labels_set(l, name, strlen(name), value, strlen(value));
}

void labels_remove(labels_t *l, const char *name)
{
    int found;
    size_t at = find(l, name, strlen(name), &found);
    if (!found) return;
    free(l->pairs[at].name);
    free(l->pairs[at].value);
    memmove(l->pairs + at, l->pairs + at + 1, (l->count - at - 1) * sizeof *l->pairs);
    l->count--;
}

size_t labels_count(const labels_t *l)
{
    return l->count;
}

const char *labels_name(const labels_t *l, size_t i)
{
    return i < l->count ? l->pairs[i].name : NULL;
}

const char *labels_value(const labels_t *l, size_t i)
{
    return i < l->count ? l->pairs[i].value : NULL;
}

const char *labels_get(const labels_t *l, const char *name)
{
    int found;
    size_t at = find(l, name, strlen(name), &found);
    return found ? l->pairs[at].value : NULL;
}

int labels_encode(const labels_t *l, buf_t *out)
{
    for (size_t i = 0; i < l->count; i++) {
        int rc = buf_append(out, l->pairs[i].name, strlen(l->pairs[i].name) + 1);
        if (rc == ERR_OK) rc = buf_append(out, l->pairs[i].value, strlen(l->pairs[i].value) + 1);
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

int labels_decode(const uint8_t *p, size_t n, labels_t **out)
{
    labels_t *l = labels_new();
    if (l == NULL) return ERR_NOMEM;
    const uint8_t *end = n > 0 ? p + n : p; /* p may be NULL (an absent field) when n is 0 */
    while (p < end) {
        const uint8_t *nz = memchr(p, 0, (size_t)(end - p));
        if (nz == NULL) goto corrupt;
        const uint8_t *v = nz + 1;
        const uint8_t *vz = v < end ? memchr(v, 0, (size_t)(end - v)) : NULL;
        if (vz == NULL) goto corrupt;
        int rc =
            labels_set(l, (const char *)p, (size_t)(nz - p), (const char *)v, (size_t)(vz - v));
        if (rc != ERR_OK) {
            labels_free(l);
            return rc;
        }
        p = vz + 1;
    }
    *out = l;
    return ERR_OK;
corrupt:
    labels_free(l);
    return ERR_CORRUPT;
}

uint64_t labels_hash(const labels_t *l)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    uint64_t h = 0;
    if (labels_encode(l, &b) == ERR_OK) h = hash_bytes64(b.data, b.len);
    buf_free(&b);
    return h;
}

int labels_format(const labels_t *l, buf_t *out)
{
    int rc = buf_append_byte(out, '{');
    for (size_t i = 0; rc == ERR_OK && i < l->count; i++) {
        if (i > 0) rc = buf_append(out, ", ", 2);
        if (rc == ERR_OK) rc = buf_append_str(out, l->pairs[i].name);
        if (rc == ERR_OK) rc = buf_append_byte(out, '=');
        if (rc == ERR_OK)
            rc = buf_append_json_string(out, l->pairs[i].value, strlen(l->pairs[i].value));
    }
    return rc == ERR_OK ? buf_append_byte(out, '}') : rc;
}
