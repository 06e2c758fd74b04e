/* symtab.c — symbol id -> (name, file) (see symtab.h).
 *
 * Entries are kept in insertion order; an open-addressing table of entry
 * indices (4-byte slots, the key read from the entry: a push may intern
 * one symbol per byte or so of its payload, so the index is kept small,
 * at most 2/3 full and growing by half again, not doubling) finds them by
 * symbol id. An entry is 16 bytes, its id and its name: the name is
 * preceded by the index of its file name (0 = no file), a varint written
 * backwards, read from the byte before the name on (fi_get), so a lookup
 * finds the file without reading the name for its length. Each distinct
 * file name is held once, in a second list with its own table (a profile
 * names the same file for many functions; symtab_file interns one, so
 * pprof ingest looks a file up once per string of the profile, not once
 * per symbol). Strings live in fixed-size arena chunks that never move, so
 * borrowed pointers stay valid until free. */
#include "common/symtab.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/hash.h"

#define ARENA_CHUNK (64 * 1024)

typedef struct sym_entry {
    uint64_t id;
    const char *name; /* "name\0", the file's index before it (fi_get) */
} sym_entry_t;

struct symtab {
    sym_entry_t *entries;
    size_t count, cap;
    uint32_t *slots;     /* entry index + 1, 0 = empty; at most 2/3 full */
    size_t nslots;       /* under 2^32, or 0 */
    const char **files;  /* distinct file names (NUL-terminated); [0] = "" */
    uint32_t *fhash;     /* per file name, the low bits of its hash_bytes64 */
    size_t nfiles, fcap; /* nfiles >= 1 once a symbol is put */
    uint32_t *fslots;    /* file index + 1, 0 = empty; at most 2/3 full */
    size_t nfslots;
    arena_t strings; /* names and files, packed */
};

/* The high 32 bits of the id, mixed (ids put by callers need not be
 * hashes), scaled to the table (any size) pick the first slot to probe. */
static inline size_t home_slot(const symtab_t *s, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(((h >> 32) * (uint64_t)s->nslots) >> 32);
}

static size_t probe(const symtab_t *s, uint64_t id)
{
    size_t i = home_slot(s, id);
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

/* The index rebuilt with n slots from the entries. */
static int index_rebuild(symtab_t *s, size_t n)
{
    if (n >= UINT32_MAX) return ERR_NOMEM;
    uint32_t *slots = alloc_zeroed(n, sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
    for (size_t k = 0; k < s->count; k++)
        s->slots[probe(s, s->entries[k].id)] = (uint32_t)k + 1;
    return ERR_OK;
}

/* Room for one more entry in the index (rehashed from the entries). */
static int index_reserve(symtab_t *s)
{
    if ((s->count + 1) * 3 <= s->nslots * 2) return ERR_OK;
    return index_rebuild(s, s->nslots ? s->nslots + s->nslots / 2 : 256);
}

int symtab_reserve(symtab_t *s, size_t more)
{
    if (more > UINT32_MAX / 2 - s->count) return ERR_NOMEM;
    size_t want = s->count + more;
    if (want > s->cap) {
        sym_entry_t *e = realloc(s->entries, want * sizeof *e);
        if (e == NULL) return ERR_NOMEM;
        s->entries = e;
        s->cap = want;
    }
    if (want * 3 <= s->nslots * 2) return ERR_OK;
    size_t n = (want * 3 + 1) / 2; /* at most 2/3 full, and never below the first size */
    return index_rebuild(s, n > 256 ? n : 256);
}

/* The slot of file name f (len bytes, no NUL) in the file table, or the
 * empty slot where it would go. */
/* The slot of file name f (hash h: hash_bytes64 of it), or the empty slot
 * where it would go. Names are compared only when their hashes' low bits
 * agree: the names of one service share long prefixes (a module path),
 * and comparing each one a probe passes cost a string compare as long as
 * that prefix. */
static size_t file_probe(const symtab_t *s, const char *f, size_t len, uint64_t h)
{
    size_t i = (size_t)(((h >> 32) * (uint64_t)s->nfslots) >> 32);
    for (;; i = i + 1 == s->nfslots ? 0 : i + 1) {
        uint32_t v = s->fslots[i];
        if (v == 0) return i;
        if (s->fhash[v - 1] != (uint32_t)h) continue;
        const char *g = s->files[v - 1];
        if (strncmp(g, f, len) == 0 && g[len] == '\0') return i;
    }
}

/* Room for one more file name: the list and, at most 2/3 full, its table
 * (rebuilt from the list). The first call also lays files[0] = "". */
static int files_reserve(symtab_t *s)
{
    if (s->nfiles == s->fcap) {
        size_t cap = s->fcap < 16 ? 16 : s->fcap + s->fcap / 2;
        const char **f = realloc(s->files, cap * sizeof *f);
        if (f == NULL) return ERR_NOMEM;
        s->files = f;
        uint32_t *fh = realloc(s->fhash, cap * sizeof *fh);
        if (fh == NULL) return ERR_NOMEM; /* fcap stays: files grows again next time */
        s->fhash = fh;
        s->fcap = cap;
        if (s->nfiles == 0) {
            s->fhash[0] = 0;
            s->files[s->nfiles++] = "";
        }
    }
    if ((s->nfiles + 1) * 3 <= s->nfslots * 2) return ERR_OK;
    size_t n = s->nfslots ? s->nfslots + s->nfslots / 2 : 32;
    if (n >= UINT32_MAX) return ERR_NOMEM;
    uint32_t *slots = alloc_zeroed(n, sizeof *slots);
    if (slots == NULL) return ERR_NOMEM;
    free(s->fslots);
    s->fslots = slots;
    s->nfslots = n;
    for (size_t k = 1; k < s->nfiles; k++) { /* distinct names: the first empty slot */
        uint64_t h = hash_bytes64(s->files[k], strlen(s->files[k]));
        size_t i = (size_t)(((h >> 32) * (uint64_t)n) >> 32);
        while (slots[i] != 0)
            i = i + 1 == n ? 0 : i + 1;
        slots[i] = (uint32_t)k + 1;
    }
    return ERR_OK;
}

/* symtab_file of a name of file_len bytes (no NUL) whose hash is h. */
static int file_hashed(symtab_t *s, const char *file, size_t file_len, uint64_t h, uint32_t *index)
{
    *index = 0;
    if (file_len == 0) return ERR_OK;
    if (s->nfiles >= UINT32_MAX - 1 || files_reserve(s) != ERR_OK) return ERR_NOMEM;
    size_t at = file_probe(s, file, file_len, h);
    if (s->fslots[at] != 0) {
        *index = s->fslots[at] - 1;
        return ERR_OK;
    }
    char *p = arena_alloc_packed(&s->strings, file_len + 1);
    if (p == NULL) return ERR_NOMEM;
    memcpy(p, file, file_len);
    p[file_len] = '\0';
    s->files[s->nfiles] = p;
    s->fhash[s->nfiles] = (uint32_t)h;
    *index = (uint32_t)s->nfiles++;
    s->fslots[at] = *index + 1;
    return ERR_OK;
}

int symtab_file(symtab_t *s, const char *file, size_t file_len, uint32_t *index)
{
    /* read up to the first NUL, as a C string is */
    file_len = file != NULL && file_len > 0 ? strnlen(file, file_len) : 0;
    return file_hashed(s, file, file_len, file_len > 0 ? hash_bytes64(file, file_len) : 0, index);
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
    free(s->files);
    free(s->fhash);
    free(s->fslots);
    free(s);
}

/* The bytes of file index v written before a name. */
static size_t fi_len(uint32_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

/* Writes v in the n (fi_len) bytes at p, its lowest 7 bits last: each byte
 * but the first has the high bit set (more bytes before it). */
static void fi_put(uint8_t *p, size_t n, uint32_t v)
{
    for (size_t k = n; k-- > 0; v >>= 7)
        p[k] = (uint8_t)((v & 0x7f) | (k > 0 ? 0x80 : 0));
}

/* The file index written before name by fi_put. */
static uint32_t fi_get(const char *name)
{
    const uint8_t *q = (const uint8_t *)name - 1;
    uint32_t fi = 0;
    for (unsigned shift = 0;; shift += 7) {
        fi |= (uint32_t)(*q & 0x7f) << shift;
        if (*q-- < 0x80) break;
    }
    return fi;
}

/* symtab_put_file for an id the table does not hold. */
static int put_new(symtab_t *s, uint64_t id, const char *name, size_t name_len, uint32_t file_index,
                   uint32_t *index)
{
    if (file_index >= (s->nfiles ? s->nfiles : 1)) return ERR_INVALID_ARGUMENT;
    if (s->count >= UINT32_MAX - 1 || index_reserve(s) != ERR_OK) return ERR_NOMEM;
    if (s->count == s->cap) { /* by half again: a large table carries less slack */
        size_t cap = s->cap < 256 ? 256 : s->cap + s->cap / 2;
        sym_entry_t *e = realloc(s->entries, cap * sizeof *e);
        if (e == NULL) return ERR_NOMEM;
        s->entries = e;
        s->cap = cap;
    }
    /* read back up to its first NUL, as a C string is */
    name_len = name_len > 0 ? strnlen(name, name_len) : 0;
    size_t vl = fi_len(file_index);
    if (name_len > SIZE_MAX / 2) return ERR_NOMEM;
    char *p = arena_alloc_packed(&s->strings, vl + name_len + 1);
    if (p == NULL) return ERR_NOMEM;
    fi_put((uint8_t *)p, vl, file_index);
    p += vl;
    if (name_len > 0) memcpy(p, name, name_len);
    p[name_len] = '\0';
    sym_entry_t *e = &s->entries[s->count];
    e->id = id;
    e->name = p;
    if (index != NULL) *index = (uint32_t)s->count;
    s->slots[probe(s, id)] = (uint32_t)++s->count;
    return ERR_OK;
}

int symtab_put_file(symtab_t *s, uint64_t id, const char *name, size_t name_len,
                    uint32_t file_index, uint32_t *index)
{
    int64_t at = find(s, id);
    if (at >= 0) { /* content-addressed: same id, same content */
        if (index != NULL) *index = (uint32_t)at;
        return ERR_OK;
    }
    return put_new(s, id, name, name_len, file_index, index);
}

int symtab_put(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
               size_t file_len)
{
    if (find(s, id) >= 0) return ERR_OK;
    uint32_t fi;
    int rc = symtab_file(s, file, file_len, &fi);
    return rc != ERR_OK ? rc : put_new(s, id, name, name_len, fi, NULL);
}

int symtab_put_hashed(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
                      size_t file_len, uint64_t file_hash)
{
    if (find(s, id) >= 0) return ERR_OK;
    uint32_t fi;
    int rc = file_hashed(s, file, file_len, file_hash, &fi);
    return rc != ERR_OK ? rc : put_new(s, id, name, name_len, fi, NULL);
}

int symtab_intern(symtab_t *s, const char *name, size_t name_len, const char *file, size_t file_len,
                  uint64_t *id)
{
    *id = hash_symbol(name, name_len, file != NULL ? file : "", file != NULL ? file_len : 0);
    return symtab_put(s, *id, name, name_len, file, file_len);
}

int symtab_intern_index(symtab_t *s, const char *name, size_t name_len, const char *file,
                        size_t file_len, uint64_t *id, uint32_t *index)
{
    *id = hash_symbol(name, name_len, file != NULL ? file : "", file != NULL ? file_len : 0);
    int64_t at = find(s, *id);
    if (at >= 0) {
        *index = (uint32_t)at;
        return ERR_OK;
    }
    uint32_t fi;
    int rc = symtab_file(s, file, file_len, &fi);
    return rc != ERR_OK ? rc : put_new(s, *id, name, name_len, fi, index);
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
    uint32_t fi = fi_get(e->name);
    *file = fi == 0 ? "" : s->files[fi];
    return 1;
}

/* How far ahead symtab_put_from fetches the source's slots (half as far,
 * its entries; a quarter, its names): a large source (a coordinator's
 * cache of names) misses the cache at each, and fetched ahead the misses
 * of several ids overlap instead of following one another. The helper is
 * always inlined: gcc 12 takes a function of nothing but loads and
 * prefetches for one without effects and drops its calls. */
#define PUT_FROM_AHEAD 16

static inline __attribute__((always_inline)) void
put_from_prefetch(const symtab_t *src, const uint64_t *ids, size_t n, size_t i)
{
    if (src->nslots == 0) return;
    if (i + PUT_FROM_AHEAD < n)
        __builtin_prefetch(&src->slots[home_slot(src, ids[i + PUT_FROM_AHEAD])]);
    if (i + PUT_FROM_AHEAD / 2 < n) {
        uint32_t v = src->slots[home_slot(src, ids[i + PUT_FROM_AHEAD / 2])];
        if (v != 0) __builtin_prefetch(&src->entries[v - 1]);
    }
    if (i + PUT_FROM_AHEAD / 4 < n) {
        uint32_t v = src->slots[home_slot(src, ids[i + PUT_FROM_AHEAD / 4])];
        if (v != 0 && src->entries[v - 1].id == ids[i + PUT_FROM_AHEAD / 4])
            __builtin_prefetch(src->entries[v - 1].name);
    }
}

int symtab_put_from(symtab_t *dst, const symtab_t *src, const uint64_t *ids, size_t n)
{
    /* src's file index -> dst's + 1 (0: not yet met): each file name is
     * looked up in dst once, not once per symbol */
    uint32_t *fmap = calloc(src->nfiles ? src->nfiles : 1, sizeof *fmap);
    if (fmap == NULL) return ERR_NOMEM;
    int rc = ERR_OK;
    for (size_t i = 0; rc == ERR_OK && i < n; i++) {
        put_from_prefetch(src, ids, n, i);
        if (ids[i] == SYM_ROOT || ids[i] == SYM_OTHER) continue;
        int64_t at = find(src, ids[i]);
        if (at < 0 || find(dst, ids[i]) >= 0) continue;
        const char *name = src->entries[at].name;
        size_t len = strlen(name);
        uint32_t fi = fi_get(name), di = 0;
        if (fi != 0 && fmap[fi] != 0) {
            di = fmap[fi] - 1;
        } else if (fi != 0) {
            rc = symtab_file(dst, src->files[fi], strlen(src->files[fi]), &di);
            fmap[fi] = di + 1;
        }
        if (rc == ERR_OK) rc = symtab_put_file(dst, ids[i], name, len, di, NULL);
    }
    free(fmap);
    return rc;
}

size_t symtab_count(const symtab_t *s)
{
    return s->count;
}

size_t symtab_mem_bytes(const symtab_t *s)
{
    return sizeof *s + s->cap * sizeof(sym_entry_t) + s->nslots * sizeof *s->slots +
           s->fcap * (sizeof *s->files + sizeof *s->fhash) + s->nfslots * sizeof *s->fslots +
           s->strings.total;
}

/* The rise of an array of elem-byte items grown (first to min_cap, then
 * by half again) from cap to hold need, the old block held beside the
 * new one while it is copied. */
static size_t grow_rise(size_t cap, size_t need, size_t min_cap, size_t elem)
{
    if (need <= cap) return 0;
    size_t c = cap < min_cap ? min_cap : cap + cap / 2;
    return (c < need ? need : c) * elem; /* grown one step: c >= need */
}

/* Chunk bytes the string arena adds for an item of n bytes when *room are
 * left in its current chunk (updated). */
static size_t chunk_rise(size_t n, size_t *room)
{
    if (n <= *room) {
        *room -= n;
        return 0;
    }
    size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    *room = cap - n;
    return cap;
}

size_t symtab_put_bytes(const symtab_t *s, size_t name_len, size_t file_len)
{
    size_t files = s->nfiles ? s->nfiles : 1, room = arena_room(&s->strings);
    /* a new file name (it may be), then the name, its NUL and file index */
    size_t rise = grow_rise(s->cap, s->count + 1, 256, sizeof(sym_entry_t)) +
                  grow_rise(s->nslots, ((s->count + 1) * 3 + 1) / 2, 256, sizeof *s->slots) +
                  grow_rise(s->fcap, files + 1, 16, sizeof *s->files + sizeof *s->fhash) +
                  grow_rise(s->nfslots, ((files + 1) * 3 + 1) / 2, 32, sizeof *s->fslots);
    if (file_len > 0) rise += chunk_rise(file_len + 1, &room);
    return rise + chunk_rise(name_len + 1 + 5, &room);
}

int symtab_index(const symtab_t *s, uint64_t id, uint32_t *index)
{
    int64_t at = find(s, id);
    if (at < 0) return 0;
    *index = (uint32_t)at;
    return 1;
}

uint64_t symtab_id_at(const symtab_t *s, size_t i)
{
    return i < s->count ? s->entries[i].id : 0;
}
