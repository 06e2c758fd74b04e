/* u64map.c — growing and inserting (see u64map.h; lookups are inline there). */
#include "common/u64map.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int u64map_init(u64map_t *m, size_t expected)
{
    *m = (u64map_t){0}; /* on failure too, so u64map_free is always safe */
    size_t cap = 16;
    while (cap < expected * 2)
        cap <<= 1;
    if (cap > SIZE_MAX / sizeof *m->slots) return ERR_NOMEM;
    u64map_slot_t *slots = malloc(cap * sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i].val = U64MAP_EMPTY;
    *m = (u64map_t){slots, cap, 0};
    return ERR_OK;
}

void u64map_free(u64map_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void u64map_clear(u64map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].val = U64MAP_EMPTY;
    m->len = 0;
}

/* The slot where key is, or the empty slot where it would go. */
static size_t find_slot(const u64map_t *m, uint64_t key)
{
    size_t i = u64map_slot_(m, key);
    while (m->slots[i].val != U64MAP_EMPTY && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int u64map_grow_(u64map_t *m, size_t want)
{
    if (want > SIZE_MAX / 4) return ERR_NOMEM;
    u64map_t n;
    int rc = u64map_init(&n, want > 8 ? want * 2 : 16);
    if (rc != ERR_OK) return rc;
    for (size_t i = 0; i < m->cap; i++) { /* distinct keys: no compare, first empty slot */
        if (m->slots[i].val == U64MAP_EMPTY) continue;
        size_t j = u64map_slot_(&n, m->slots[i].key);
        while (n.slots[j].val != U64MAP_EMPTY)
            j = (j + 1) & (n.cap - 1);
        n.slots[j] = m->slots[i];
    }
    n.len = m->len;
    u64map_free(m);
    *m = n;
    return ERR_OK;
}

static int make_room(u64map_t *m)
{
    return u64map_reserve(m, m->len + 1);
}

int u64map_put(u64map_t *m, uint64_t key, uint32_t val)
{
    int rc = make_room(m);
    if (rc != ERR_OK) return rc;
    size_t i = u64map_slot_(m, key);
    while (m->slots[i].val != U64MAP_EMPTY)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (u64map_slot_t){key, val};
    m->len++;
    return ERR_OK;
}

int u64map_get_or_put(u64map_t *m, uint64_t key, uint32_t val, uint32_t *out)
{
    int rc = make_room(m);
    if (rc != ERR_OK) return rc;
    size_t i = find_slot(m, key);
    if (m->slots[i].val != U64MAP_EMPTY) {
        *out = m->slots[i].val;
        return 0;
    }
    m->slots[i] = (u64map_slot_t){key, val};
    m->len++;
    *out = val;
    return 1;
}
