/* symtab.h — symbol table: symbol id -> (function name, file name).
 *
 * Symbols are content-addressed (hash_symbol), so a symtab never remaps ids;
 * adding a symbol that is already present is a no-op. Used by ingest (symbols a
 * profile introduces), storage (persisting and loading them), the cluster
 * (shipping them with writes and partials) and query (rendering names).
 * Strings are copied into an arena the symtab owns; returned pointers are
 * borrowed until symtab_free(). Not thread-safe.
 */
#ifndef FLAMEDB_COMMON_SYMTAB_H
#define FLAMEDB_COMMON_SYMTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct symtab symtab_t;

symtab_t *symtab_new(void);
void symtab_free(symtab_t *s);

/* Adds name/file under id = hash_symbol(name, file) and returns the id in *id. */
int symtab_intern(symtab_t *s, const char *name, size_t name_len, const char *file, size_t file_len,
                  uint64_t *id);
/* symtab_intern that also gives the symbol's place in insertion order in
 * *index (as symtab_index would) from the same lookup. */
int symtab_intern_index(symtab_t *s, const char *name, size_t name_len, const char *file,
                        size_t file_len, uint64_t *id, uint32_t *index);
/* Interns file name file (read up to its first NUL): *index is its index
 * in the table's list of file names, 0 for an empty name. Each distinct
 * name is held once. */
int symtab_file(symtab_t *s, const char *file, size_t file_len, uint32_t *index);
/* Adds a symbol under a known id whose file name symtab_file interned
 * (file_index 0: none); ERR_INVALID for an index it did not give. *index
 * (when not NULL) gets the symbol's place in insertion order, as
 * symtab_index would. */
int symtab_put_file(symtab_t *s, uint64_t id, const char *name, size_t name_len,
                    uint32_t file_index, uint32_t *index);
/* Room for more symbols than the table holds, made at once: the entries
 * and the index are sized once for them instead of growing by half again
 * as they fill (a caller that knows how many it will put). ERR_NOMEM when
 * that cannot be allocated; the table is unchanged but for its room. */
int symtab_reserve(symtab_t *s, size_t more);
/* Adds a symbol under a known id (used when loading from storage). */
int symtab_put(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
               size_t file_len);
/* symtab_put with the file's hash known (a cache that hashed it once):
 * file_len is its length up to its first NUL and file_hash its
 * hash_bytes64 (common/hash.h) over those bytes, as symtab_file computes. */
int symtab_put_hashed(symtab_t *s, uint64_t id, const char *name, size_t name_len, const char *file,
                      size_t file_len, uint64_t file_hash);
/* Returns 1 and borrowed name/file (NUL-terminated) if id is known, else 0.
 * SYM_ROOT reads as "total" and SYM_OTHER as "other". */
int symtab_get(const symtab_t *s, uint64_t id, const char **name, const char **file);
/* Copies into dst the symbols of ids (repeats allowed) that src holds, in
 * the order of ids; those src lacks, SYM_ROOT and SYM_OTHER are skipped.
 * Each file name is looked up in dst once, not once per symbol. */
int symtab_put_from(symtab_t *dst, const symtab_t *src, const uint64_t *ids, size_t n);
size_t symtab_count(const symtab_t *s);
/* Heap bytes the table holds (entries, index, packed strings). */
size_t symtab_mem_bytes(const symtab_t *s);
/* The most symtab_mem_bytes(s) rises, counting an old table held while
 * a grown one is filled, while one symbol of a name_len-byte name and a
 * file_len-byte file name is put (memory accounting: charged before,
 * what it did not grow by given back after). */
size_t symtab_put_bytes(const symtab_t *s, size_t name_len, size_t file_len);
/* Iteration in insertion order: i < symtab_count(). */
uint64_t symtab_id_at(const symtab_t *s, size_t i);
/* Returns 1 and id's place in that order in *index (symtab_id_at(s,
 * *index) is id) when id is in the table, else 0: a dense number per
 * symbol, which ingest's trees name their symbols by while they grow. */
int symtab_index(const symtab_t *s, uint64_t id, uint32_t *index);

#endif
