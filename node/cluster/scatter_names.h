/* scatter_names.h — a coordinator's names of the symbols its shares sent.
 *
 * Owns, per tenant, the names (function and file) that remote shares of
 * earlier renders sent, so that a render can tell its shares which symbols
 * it need not be sent again (QueryRequest.known_symbols) and resolve those
 * of the nodes it keeps here. Names are content-addressed (a symbol id is
 * the hash of its name and file), so a name held is always right.
 *
 * A tenant's names live in a generation that only grows. A render acquires
 * the current one with the list of its ids and holds it until its answer
 * is encoded: every id it advertised stays resolvable whatever other
 * renders add meanwhile. When the names of all tenants would pass
 * max_bytes (`scatter-name-cache-bytes`), every generation is retired at
 * once and the tenant starts a new one; a retired generation is freed when
 * the last render holding it releases it. While retired generations are
 * held, names past max_bytes are not kept (so at most about twice max_bytes
 * is held). Thread-safe (one mutex): renders
 * acquire on the loop, add and resolve on the pool.
 */
#ifndef FLAMEDB_NODE_CLUSTER_SCATTER_NAMES_H
#define FLAMEDB_NODE_CLUSTER_SCATTER_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "common/symtab.h"

typedef struct scatter_names scatter_names_t;
typedef struct scatter_names_gen scatter_names_gen_t;

typedef struct scatter_names_sym {
    uint64_t id;
    const char *name, *file;
    size_t name_len, file_len;
} scatter_names_sym_t;

/* max_bytes 0: *out is NULL, and every function below accepts a NULL cache
 * (nothing held, nothing advertised). ERR_NOMEM. */
int scatter_names_new(size_t max_bytes, scatter_names_t **out);
/* Frees c and its generations; none may be acquired any more. */
void scatter_names_free(scatter_names_t *c);

/* The tenant's current generation, referenced (*gen NULL when it holds
 * nothing), and a copy of its ids in *ids (*n of them; caller frees).
 * ERR_NOMEM. */
int scatter_names_acquire(scatter_names_t *c, const char *tenant, scatter_names_gen_t **gen,
                          uint64_t **ids, size_t *n);
/* Drops a reference of scatter_names_acquire (gen may be NULL). */
void scatter_names_release(scatter_names_t *c, scatter_names_gen_t *gen);
/* Puts into dst the names gen holds of the n ids (others left out). */
int scatter_names_get(scatter_names_t *c, scatter_names_gen_t *gen, const uint64_t *ids, size_t n,
                      symtab_t *dst);
/* Adds the names of v to the tenant's current generation (those held
 * already skipped). ERR_NOMEM. */
int scatter_names_put(scatter_names_t *c, const char *tenant, const scatter_names_sym_t *v,
                      size_t n);
/* Bytes of names held by the current generations (what max_bytes bounds). */
size_t scatter_names_bytes(scatter_names_t *c);

#endif
