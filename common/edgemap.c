/* edgemap.c — growing the edge map (see edgemap.h; lookups are inline there). */
#include "common/edgemap.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

void edgemap_free(edgemap_t *m)
{
    free(m->slots);
    *m = (edgemap_t){0};
}

int edgemap_copy(edgemap_t *dst, const edgemap_t *src)
{
    edgemap_slot_t *slots = NULL;
    if (src->cap != 0) {
        slots = malloc(src->cap * sizeof *slots);
        if (slots == NULL) return ERR_NOMEM;
        memcpy(slots, src->slots, src->cap * sizeof *slots);
    }
    edgemap_free(dst);
    *dst = (edgemap_t){slots, src->cap, src->len};
    return ERR_OK;
}

void edgemap_clear(edgemap_t *m)
{
    if (m->cap != 0) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->len = 0;
}

int edgemap_grow_(edgemap_t *m, size_t n)
{
    if (n > SIZE_MAX / 4 / sizeof *m->slots) return ERR_NOMEM;
    size_t cap = m->cap ? m->cap : 16;
    while (cap < n * 2)
        cap *= 2;
    edgemap_t g = {alloc_zeroed(cap, sizeof *m->slots), cap, m->len};
    if (g.slots == NULL) return ERR_NOMEM;
    /* keys are distinct: each goes to the first empty slot of its run, with
     * no key compared (rehashing is on the hot path of fresh stacks) */
    for (size_t i = 0; i < m->cap; i++) {
        const edgemap_slot_t *s = &m->slots[i];
        if (s->child == 0) continue;
        size_t j = edgemap_hash_(&g, s->parent, s->sym);
        while (g.slots[j].child != 0)
            j = (j + 1) & (cap - 1);
        g.slots[j] = *s;
    }
    free(m->slots);
    *m = g;
    return ERR_OK;
}
