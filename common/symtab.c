/* symtab.c — symbol id -> (name, file) (see symtab.h).
 *
 * Entries are kept in insertion order; an open-addressing table of entry
 * indices keyed by symbol id finds them. Strings live in fixed-size arena
 * chunks that never move, so borrowed pointers stay valid until free. */
#include "common/symtab.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/hash.h"

#define ARENA_CHUNK (64 * 1024)

typedef struct sym_entry {
    uint64_t id;
    const char *name;
    const char *file;
} sym_entry_t;

struct symtab {
    sym_entry_t *entries;
    size_t count, cap;
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t nslots;   /* power of two */
    arena_t strings; /* names and files, packed */
};

symtab_t *symtab_new(void)
{
    symtab_t *s = calloc(1, sizeof(symtab_t));
    if (s != NULL) arena_init(&s->strings, ARENA_CHUNK, ARENA_UNLIMITED);
    return s;
}

void symtab_free(symtab_t *s)
{
    if (s == NULL)
        return;
    arena_free(&s->strings);
    free(s->entries);
    free(s->slots);
    free(s);
}

static size_t slot_of(const symtab_t *s, uint64_t id)
{
    size_t mask = s->nslots - 1;
    size_t i = (size_t)(id * 0x9e3779b97f4a7c15ULL >> 17) & mask;
    while (s->slots[i] != 0 && s->entries[s->slots[i] - 1].id != id)
        i = (i + 1) & mask;
    return i;
}

static int grow_slots(symtab_t *s)
{
    size_t n = s->nslots ? s->nslots * 2 : 256;
    uint32_t *old = s->slots;
    size_t oldn = s->nslots;
    s->slots = calloc(n, sizeof *s->slots);
    if (s->slots == NULL) {
        s->slots = old;
        return ERR_NOMEM;
    }
    s->nslots = n;
    for (size_t i = 0; i < oldn; i++)
        if (old[i] != 0)
            s->slots[slot_of(s, s->entries[old[i] - 1].id)] = old[i];
    free(old);
    return ERR_OK;
}

int symtab_put(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
               size_t file_len)
{
    if ((s->count + 1) * 2 > s->nslots && grow_slots(s) != ERR_OK)
        return ERR_NOMEM;
    size_t slot = slot_of(s, id);
    if (s->slots[slot] != 0)
        return ERR_OK; /* content-addressed: same id, same content */
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        sym_entry_t *e = realloc(s->entries, cap * sizeof *e);
        if (e == NULL)
            return ERR_NOMEM;
        s->entries = e;
        s->cap = cap;
    }
    sym_entry_t *e = &s->entries[s->count];
    e->id = id;
    e->name = arena_strndup(&s->strings, name, name_len);
    e->file = arena_strndup(&s->strings, file, file != NULL ? file_len : 0);
    if (e->name == NULL || e->file == NULL)
        return ERR_NOMEM;
    s->count++;
    s->slots[slot] = (uint32_t)s->count;
    return ERR_OK;
}

int symtab_intern(symtab_t *s, const char *name, size_t name_len, const char *file,
                  size_t file_len, uint64_t *id)
{
    *id = hash_symbol(name, name_len, file != NULL ? file : "", file != NULL ? file_len : 0);
    return symtab_put(s, *id, name, name_len, file, file_len);
}

int symtab_get(const symtab_t *s, uint64_t id, const char **name, const char **file)
{
    if (id == SYM_ROOT || id == SYM_OTHER) {
        *name = id == SYM_ROOT ? "total" : "other";
        *file = "";
        return 1;
    }
    if (s->nslots == 0)
        return 0;
    size_t slot = slot_of(s, id);
    if (s->slots[slot] == 0)
        return 0;
    const sym_entry_t *e = &s->entries[s->slots[slot] - 1];
    *name = e->name;
    *file = e->file;
    return 1;
}

size_t symtab_count(const symtab_t *s)
{
    return s->count;
}

uint64_t symtab_id_at(const symtab_t *s, size_t i)
{
    return i < s->count ? s->entries[i].id : 0;
}
