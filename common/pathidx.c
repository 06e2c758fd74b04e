/* pathidx.c — an index of a tree's nodes by (parent, symbol) (pathidx.h). */
#include "common/pathidx.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int pathidx_grow(pathidx_t *x, const uint32_t *parent, const uint64_t *sym, size_t count, size_t n,
                 size_t first_slots)
{
    size_t want = x->nslot ? x->nslot : first_slots;
    while (want < 2 * n)
        want *= 2;
    uint32_t *slot = calloc(want, sizeof *slot);
    if (slot == NULL) return ERR_NOMEM;
    free(x->slot);
    x->slot = slot;
    x->nslot = want;
    for (uint32_t node = 1; node < count; node++)
        x->slot[pathidx_find(x, parent, sym, parent[node], sym[node])] = node;
    return 0;
}

void pathidx_clear(pathidx_t *x)
{
    if (x->slot != NULL) memset(x->slot, 0, x->nslot * sizeof *x->slot);
}

void pathidx_free(pathidx_t *x)
{
    free(x->slot);
    x->slot = NULL;
    x->nslot = 0;
}
