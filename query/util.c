/* util.c — small helpers shared inside query/: string interning, symbol
 * names, profile type ids, output-limit errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "query/query_int.h"

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

static int strmap_grow(strmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof *slots);
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

void sym_name(const symtab_t *syms, uint64_t sym, char *scratch, const char **name,
              const char **file)
{
    if (syms != NULL && symtab_get(syms, sym, name, file)) {
        if (*file == NULL) *file = "";
        return;
    }
    if (sym == SYM_ROOT)
        *name = "total";
    else if (sym == SYM_OTHER)
        *name = "other";
    else {
        snprintf(scratch, 32, "unknown 0x%016llx", (unsigned long long)sym);
        *name = scratch;
    }
    *file = "";
}

int ptype_parse(const char *id, ptype_t *out)
{
    size_t len = strlen(id);
    if (len > QUERY_TYPE_MAX) return ERR_INVALID_ARGUMENT;
    memcpy(out->buf, id, len + 1);
    const char **parts[5] = {&out->name, &out->sample_type, &out->sample_unit, &out->period_type,
                             &out->period_unit};
    char *p = out->buf;
    for (int i = 0; i < 5; i++) {
        *parts[i] = p;
        char *c = strchr(p, ':');
        if ((c == NULL) != (i == 4)) return ERR_INVALID_ARGUMENT;
        if (c != NULL) *c = 0;
        /* Only the name must be non-empty: real profiles have empty period
         * types (py-spy, .NET) and even empty sample types, and ingest keeps
         * them as they are, so they must stay queryable. */
        if (i == 0 && **parts[i] == 0) return ERR_INVALID_ARGUMENT;
        p = c ? c + 1 : p;
    }
    return 0;
}

int out_err(int rc, const buf_t *out, errmsg_t *em)
{
    if (rc == ERR_TOO_LARGE)
        return errmsg_set(em, ERR_LIMIT,
                          "response larger than the %zu byte limit; lower "
                          "maxNodes or narrow the query",
                          out->max);
    return rc;
}
