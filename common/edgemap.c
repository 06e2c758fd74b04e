/* edgemap.c — growing the edge map (see edgemap.h; lookups are inline there). */
#include "common/edgemap.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void edgemap_free(edgemap_t *m)
{
    free(m->slots);
    *m = (edgemap_t){0};
}

void edgemap_clear(edgemap_t *m)
{
    if (m->cap != 0) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->len = 0;
}

int edgemap_reserve(edgemap_t *m, size_t n)
{
    if (n * 2 <= m->cap) return ERR_OK;
    if (n > SIZE_MAX / 4 / sizeof *m->slots) return ERR_NOMEM;
    size_t cap = m->cap ? m->cap : 16;
    while (cap < n * 2)
        cap *= 2;
    edgemap_t g = {calloc(cap, sizeof *m->slots), cap, 0};
    if (g.slots == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].child != 0)
            edgemap_put(&g, m->slots[i].parent, m->slots[i].sym, m->slots[i].child);
    free(m->slots);
    *m = g;
    return ERR_OK;
}
