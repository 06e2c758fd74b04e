/* strmap.c — string interning (see strmap.h). */
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/grow.h"
#include "common/hash.h"

void strmap_init(strmap_t *m)
{
    memset(m, 0, sizeof *m);
}

void strmap_free(strmap_t *m)
{
    free(m->slots);
    free(m->strs);
    free(m->lens);
    memset(m, 0, sizeof *m);
}

/* The slots made cap (a power of two) and every string put back. */
static int strmap_rehash(strmap_t *m, size_t cap)
{
    uint32_t *slots = alloc_zeroed(cap, sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < m->n; i++) {
        size_t h = (size_t)hash_bytes64(m->strs[i], m->lens[i]) & (cap - 1);
        while (slots[h] != 0)
            h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static int strmap_grow(strmap_t *m)
{
    return strmap_rehash(m, m->cap ? m->cap * 2 : 64);
}

int strmap_reserve(strmap_t *m, size_t n)
{
    if (n > UINT32_MAX - 1) return ERR_NOMEM;
    size_t cap = m->cap ? m->cap : 64;
    while (n * 2 > cap)
        cap *= 2;
    if (cap > m->cap && strmap_rehash(m, cap) != 0) return ERR_NOMEM;
    size_t c1 = m->strs_cap, c2 = m->strs_cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(m->strs, c1, n, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(m->lens, c2, n, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    m->strs_cap = c1;
    return 0;
}

static int strmap_push(strmap_t *m, const char *s, size_t len)
{
    size_t c1 = m->strs_cap, c2 = m->strs_cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(m->strs, c1, m->n + 1, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(m->lens, c2, m->n + 1, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    m->strs_cap = c1;
    m->strs[m->n] = s;
    m->lens[m->n] = len;
    m->n++;
    return 0;
}

int strmap_intern(strmap_t *m, const char *s, size_t len, uint32_t *idx)
{
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) != 0) return ERR_NOMEM;
    size_t h = (size_t)hash_bytes64(s, len) & (m->cap - 1);
    while (m->slots[h] != 0) {
        uint32_t i = m->slots[h] - 1;
        if (m->lens[i] == len && memcmp(m->strs[i], s, len) == 0) {
            *idx = i;
            return 0;
        }
        h = (h + 1) & (m->cap - 1);
    }
    if (strmap_push(m, s, len) != 0) return ERR_NOMEM;
    m->slots[h] = (uint32_t)m->n;
    *idx = (uint32_t)m->n - 1;
    return 0;
}

int strmap_find(const strmap_t *m, const char *s, size_t len, uint32_t *idx)
{
    if (m->cap == 0) return 0;
    for (size_t h = (size_t)hash_bytes64(s, len) & (m->cap - 1); m->slots[h] != 0;
         h = (h + 1) & (m->cap - 1)) {
        uint32_t i = m->slots[h] - 1;
        if (m->lens[i] == len && memcmp(m->strs[i], s, len) == 0) {
            *idx = i;
            return 1;
        }
    }
    return 0;
}
