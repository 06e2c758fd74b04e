/* symtab.c — symbol id -> (name, file) (see symtab.h).
 *
 * Entries are kept in insertion order; a u64map of entry indices keyed by
 * symbol id finds them. Strings live in fixed-size arena
 * chunks that never move, so borrowed pointers stay valid until free. */
#include "common/symtab.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"

#define ARENA_CHUNK (64 * 1024)

typedef struct sym_entry {
    uint64_t id;
    const char *name;
    const char *file;
} sym_entry_t;

struct symtab {
    sym_entry_t *entries;
    size_t count, cap;
    u64map_t index;  /* id -> entry index */
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
    if (s == NULL) return;
    arena_free(&s->strings);
    free(s->entries);
    u64map_free(&s->index);
    free(s);
}

int symtab_put(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
               size_t file_len)
{
    uint32_t at;
    if (u64map_get(&s->index, id, &at))
        return ERR_OK; /* content-addressed: same id, same content */
    if (s->count >= UINT32_MAX - 1 ||
        GROW_FROM(s->entries, s->cap, s->count + 1, GROW_UNLIMITED, 256) != ERR_OK)
        return ERR_NOMEM;
    sym_entry_t *e = &s->entries[s->count];
    e->id = id;
    e->name = arena_strndup(&s->strings, name, name_len);
    e->file = arena_strndup(&s->strings, file, file != NULL ? file_len : 0);
    if (e->name == NULL || e->file == NULL) return ERR_NOMEM;
    if (u64map_put(&s->index, id, (uint32_t)s->count) != ERR_OK) return ERR_NOMEM;
    s->count++;
    return ERR_OK;
}

int symtab_intern(symtab_t *s, const char *name, size_t name_len, const char *file, size_t file_len,
                  uint64_t *id)
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
    uint32_t at;
    if (!u64map_get(&s->index, id, &at)) return 0;
    const sym_entry_t *e = &s->entries[at];
    *name = e->name;
    *file = e->file;
    return 1;
}

size_t symtab_count(const symtab_t *s)
{
    return s->count;
}

size_t symtab_mem_bytes(const symtab_t *s)
{
    return sizeof *s + s->cap * sizeof(sym_entry_t) + u64map_bytes(&s->index) + s->strings.total;
}

uint64_t symtab_id_at(const symtab_t *s, size_t i)
{
    return i < s->count ? s->entries[i].id : 0;
}
