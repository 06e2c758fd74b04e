/* symtab.c — symbol id -> (name, file) (see symtab.h).
 *
 * Entries are kept in insertion order; an open-addressing table of entry
 * indices (4-byte slots, the key read from the entry: a push may intern
 * one symbol per byte or so of its payload, so the index is kept small,
 * at most 2/3 full and growing by half again, not doubling) finds them by
 * symbol id. An entry is 16 bytes, its id and its name: the file name
 * follows the name's NUL in the same copy. Strings live in fixed-size
 * arena chunks that never move, so borrowed pointers stay valid until
 * free. */
#include "common/symtab.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/hash.h"

#define ARENA_CHUNK (64 * 1024)

typedef struct sym_entry {
    uint64_t id;
    const char *name; /* "name\0file\0" */
} sym_entry_t;

struct symtab {
    sym_entry_t *entries;
    size_t count, cap;
    uint32_t *slots; /* entry index + 1, 0 = empty; at most 2/3 full */
    size_t nslots;   /* under 2^32, or 0 */
    arena_t strings; /* names and files, packed */
};

/* The high 32 bits of the id, mixed (ids put by callers need not be
 * hashes), scaled to the table (any size) pick the slot. */
static size_t probe(const symtab_t *s, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(((h >> 32) * (uint64_t)s->nslots) >> 32);
    while (s->slots[i] != 0 && s->entries[s->slots[i] - 1].id != id)
        i = i + 1 == s->nslots ? 0 : i + 1;
    return i;
}

/* Entry index of id, or -1. */
static int64_t find(const symtab_t *s, uint64_t id)
{
    if (s->nslots == 0) return -1;
    uint32_t v = s->slots[probe(s, id)];
    return v == 0 ? -1 : (int64_t)v - 1;
}

/* Room for one more entry in the index (rehashed from the entries). */
static int index_reserve(symtab_t *s)
{
    if ((s->count + 1) * 3 <= s->nslots * 2) return ERR_OK;
    size_t n = s->nslots ? s->nslots + s->nslots / 2 : 256;
    if (n >= UINT32_MAX) return ERR_NOMEM;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
    for (size_t k = 0; k < s->count; k++)
        s->slots[probe(s, s->entries[k].id)] = (uint32_t)k + 1;
    return ERR_OK;
}

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
    free(s->slots);
    free(s);
}

int symtab_put(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
               size_t file_len)
{
    if (find(s, id) >= 0) return ERR_OK; /* content-addressed: same id, same content */
    if (s->count >= UINT32_MAX - 1 || index_reserve(s) != ERR_OK) return ERR_NOMEM;
    if (s->count == s->cap) { /* by half again: a large table carries less slack */
        size_t cap = s->cap < 256 ? 256 : s->cap + s->cap / 2;
        sym_entry_t *e = realloc(s->entries, cap * sizeof *e);
        if (e == NULL) return ERR_NOMEM;
        s->entries = e;
        s->cap = cap;
    }
    /* read back up to their first NUL, as a C string is */
    name_len = name_len > 0 ? strnlen(name, name_len) : 0;
    file_len = file != NULL && file_len > 0 ? strnlen(file, file_len) : 0;
    if (name_len > SIZE_MAX / 2 || file_len > SIZE_MAX / 2) return ERR_NOMEM;
    char *p = arena_alloc_packed(&s->strings, name_len + file_len + 2);
    if (p == NULL) return ERR_NOMEM;
    if (name_len > 0) memcpy(p, name, name_len);
    p[name_len] = '\0';
    if (file_len > 0) memcpy(p + name_len + 1, file, file_len);
    p[name_len + 1 + file_len] = '\0';
    sym_entry_t *e = &s->entries[s->count];
    e->id = id;
    e->name = p;
    s->slots[probe(s, id)] = (uint32_t)++s->count;
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
    int64_t at = find(s, id);
    if (at < 0) return 0;
    const sym_entry_t *e = &s->entries[at];
    *name = e->name;
    *file = e->name + strlen(e->name) + 1;
    return 1;
}

size_t symtab_count(const symtab_t *s)
{
    return s->count;
}

size_t symtab_mem_bytes(const symtab_t *s)
{
    return sizeof *s + s->cap * sizeof(sym_entry_t) + s->nslots * sizeof *s->slots +
           s->strings.total;
}

uint64_t symtab_id_at(const symtab_t *s, size_t i)
{
    return i < s->count ? s->entries[i].id : 0;
}
