/* scatter_spaces.h — a coordinator's maps of its shares' id spaces.
 *
 * A share of a render answers, when it can, the values of its shard union
 * by union id (storage_merged_tab_t.space_*, STORAGE_TABS_SPACE) instead of
 * a forest: a union's ids stay fixed while it lives (its nonce names it),
 * so the coordinator needs each id's parent and symbol only once. It keeps
 * them here, per scope (the tenant and the service a render pins, or none):
 * one tree of its own per scope (node 0 the root, every other a (parent,
 * symbol) pair, parents before children), and per (peer, nonce) a map from
 * the peer's ids to that tree's nodes. A render adds every share's values
 * through its map into one vector over the scope's nodes (scatter_sums_t)
 * and makes one forest of it (storage_merged_tab_of), which the gather
 * truncates as one node truncates its own union's: no merge by symbol.
 *
 * The shares learn what the coordinator holds from the request
 * (QueryRequest.known_spaces: up to SCATTER_SPACES_KNOWN_MAX (nonce, count)
 * pairs of the peer asked) and send the structure of the ids past it
 * (IdSpace, docs/cluster-protocol.md) with the names of its symbols, which
 * the scope keeps too: a render by id resolves its kept nodes' names here
 * (a local share's from storage), and its requests list no names. A render holds its scope from its
 * start to its end: nothing it advertised is dropped meanwhile, and its
 * answers only ever extend the maps (a structure that repeats ids already
 * held is checked against them).
 *
 * Bounded by max_bytes (`scatter-space-cache-bytes`): past it, scopes that
 * no render holds go, least recently used first; a scope that outgrows the
 * bound alone is dropped when its last render releases it, and its next
 * 1000 renders get no scope (they gather forests, rather than be sent the
 * whole structure each time). Thread-safe: a
 * mutex for the scopes, one per scope for its tree and maps (renders
 * acquire on the loop, add and make forests on the pool).
 *
 * Who frees what: scatter_spaces_new's cache is freed by scatter_spaces_free
 * once no scope is held; a scope acquired is released by
 * scatter_spaces_release; scatter_sums_t and the forests made are the
 * caller's (scatter_sums_free, storage_merged_tab_release).
 */
#ifndef FLAMEDB_NODE_CLUSTER_SCATTER_SPACES_H
#define FLAMEDB_NODE_CLUSTER_SCATTER_SPACES_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/symtab.h"
#include "node/cluster/scatter_names.h"
#include "storage/storage.h"

/* The spaces of one peer a request lists at most (the most recently used);
 * a scope keeps no more of a peer's (an older one, of a union the peer
 * rebuilt or of its previous start, goes when a newer one comes). */
#define SCATTER_SPACES_KNOWN_MAX 8

typedef struct scatter_spaces scatter_spaces_t;
typedef struct scatter_scope scatter_scope_t;

/* One render's values over its scope's nodes (grown as the scope grows). */
typedef struct scatter_sums {
    int64_t *v;
    size_t n; /* entries of v in use: the scope's nodes when last added to */
    size_t cap;
    int added; /* 1 once a share's values were added (even none) */
} scatter_sums_t;

typedef struct scatter_spaces_stats {
    uint64_t scopes_built;   /* scopes made (first renders of a scope, or after a drop) */
    uint64_t scopes_dropped; /* scopes dropped to stay within max_bytes */
    uint64_t scopes_refused; /* renders given no scope: theirs outgrew max_bytes alone */
    uint64_t spaces_added;   /* answers added by id */
    uint64_t ids_received;   /* ids whose structure came with them */
    uint64_t bytes;          /* held now */
} scatter_spaces_stats_t;

/* max_bytes 0: *out is NULL, and every function below accepts a NULL cache
 * (acquire gives a NULL scope: renders gather forests; known gives none,
 * stats zeros, and add and forest refuse a NULL scope). ERR_NOMEM.
 * What max_bytes bounds: each scope's tree arrays and index, its peers,
 * and every map, by their capacities (not the renders' sums). */
int scatter_spaces_new(size_t max_bytes, scatter_spaces_t **out);
void scatter_spaces_free(scatter_spaces_t *c);
/* The scope of (tenant, service; "" for none), made when absent, held
 * (*out NULL when c is NULL). ERR_NOMEM. */
int scatter_spaces_acquire(scatter_spaces_t *c, const char *tenant, const char *service,
                           scatter_scope_t **out);
/* Drops a hold of scatter_spaces_acquire (sc may be NULL). */
void scatter_spaces_release(scatter_spaces_t *c, scatter_scope_t *sc);
void scatter_spaces_get_stats(scatter_spaces_t *c, scatter_spaces_stats_t *out);

/* Up to max of peer's spaces in sc, most recently used first, into out:
 * their nonces and the ids held of each. The count (0 when sc is NULL). */
size_t scatter_scope_known(scatter_scope_t *sc, const char *peer, storage_space_known_t *out,
                           size_t max);
/* A share's answer in the IdSpace encoding (bytes borrowed for the call):
 * the structure of ids [base, count) (structure, slen bytes; none when
 * count <= base) and the values (values, vlen bytes), each sent divided
 * by unit (IdSpace.unit: 0 or 1, as an older share sends, as they are). */
typedef struct scatter_space_answer {
    const char *peer;
    uint64_t nonce, base, count, unit;
    const uint8_t *structure, *values;
    size_t slen, vlen;
} scatter_space_answer_t;
/* Adds a share's answer a: its structure into sc and its values, times
 * its unit, into sums, grown to sc's nodes. All or
 * nothing for sums: ERR_CORRUPT (em says why) when the nonce is 0, the
 * encoding is broken (trailing bytes included), an id is past count,
 * base is past the ids held of nonce (1, the root, for a new one) or 0,
 * or a listed id held already differs; ERR_NOMEM, ERR_LIMIT (2^32 nodes),
 * after which the ids mapped so far stay mapped. sums is changed under
 * sc's lock, so one render's answers may be added from several threads
 * at once. sc NULL: ERR_INVALID_ARGUMENT (nothing is dropped silently). */
int scatter_scope_add(scatter_scope_t *sc, const scatter_space_answer_t *a, scatter_sums_t *sums,
                      errmsg_t *em);
/* The names of the symbols a share listed with its structure, kept with the
 * scope (added before its structure: a symbol a remote peer's map leads
 * to always has its name here; one held already is skipped). ERR_NOMEM. */
int scatter_scope_add_names(scatter_scope_t *sc, const scatter_names_sym_t *v, size_t n);
/* The names src holds of the n ids, kept with the scope (a local share's
 * new structure's, loaded from this node's storage; one held already is
 * skipped). ERR_NOMEM. */
int scatter_scope_add_names_from(scatter_scope_t *sc, const symtab_t *src, const uint64_t *ids,
                                 size_t n);
/* Puts into dst the names sc holds of the n ids (others left out). */
int scatter_scope_names_get(scatter_scope_t *sc, const uint64_t *ids, size_t n, symtab_t *dst);
/* sc's names, unchanged until scatter_scope_names_release (read-locked:
 * a share's new names wait meanwhile), or NULL when it holds none (still
 * to be released). Held by a render while it writes an answer from them
 * without a copy; never held twice by one thread, nor across a change of
 * the scope by that thread. */
const symtab_t *scatter_scope_names_hold(scatter_scope_t *sc);
void scatter_scope_names_release(scatter_scope_t *sc);
/* The same as scatter_scope_add from a local share's forest
 * (t->space_nonce != 0; its names are in this node's storage): the
 * structure of ids [t->space_base, t->n) from its arrays as they are, its
 * non-zero self values (t->n of them; one below 0 is ERR_CORRUPT) added. */
int scatter_scope_add_tab(scatter_scope_t *sc, const char *peer, const storage_merged_tab_t *t,
                          scatter_sums_t *sums, errmsg_t *em);
/* The forest of sums over sc's nodes into out (storage_merged_tab_lent,
 * with parents and least children, so the gather may cut it by its
 * totals, and symbol numbers, the scope's, so it names each symbol of
 * what it keeps once; its n cut after the last non-zero value; the root alone when
 * nothing was added), out the caller's (storage_merged_tab_release).
 * out's parents, symbols and symbol numbers are the scope's own arrays,
 * read in place: out holds sc (a reference, as scatter_spaces_acquire's)
 * until it is released, and a tree grown meanwhile moves to new arrays,
 * the old ones freed once no forest reads them (they are not counted in
 * the bound). The pass runs with sc unlocked.
 * ERR_LIMIT (out empty) when a total passes INT64_MAX, ERR_NOMEM; sc NULL:
 * ERR_INVALID_ARGUMENT. sums is left empty (v NULL, n 0) whatever the
 * result; its `added` stays. */
int scatter_scope_forest(scatter_scope_t *sc, scatter_sums_t *sums, storage_merged_tab_t *out,
                         errmsg_t *em);
/* scatter_scope_forest with its pass followed by f (a render's helper
 * filing its nodes by total meanwhile: storage_merged_tab_followed); f's
 * state is 1 or 2 when it returns, whatever the result. */
int scatter_scope_forest_followed(scatter_scope_t *sc, scatter_sums_t *sums, storage_follow_t *f,
                                  storage_merged_tab_t *out, errmsg_t *em);
void scatter_sums_free(scatter_sums_t *sums);

/* A share's side: t's space (t->space_nonce != 0) in the IdSpace encoding,
 * appended to structure and values (docs/cluster-protocol.md):
 *   structure: (t->n - t->space_base) x { uvarint (id - parent) (>= 1),
 *              8 bytes little-endian symbol }, id space_base first
 *   values:    per id of non-zero self, ascending: uvarint (id - next),
 *              next being 0 at first and then the last id + 1, then
 *              uvarint self / *unit (every value >= 0: t->nonneg)
 * With scaled, *unit is the greatest common divisor of the non-zero values
 * (a CPU profile's are multiples of its sampling period: they go as sample
 * counts, a byte or two each instead of five or six), else 1; 1 when there
 * are none. ERR_NOMEM, or the buffers' limit error (the buffers then hold
 * part of it); ERR_INVALID_ARGUMENT when t has no space (nonce or base 0),
 * a parent not below its id or a value below 0. */
int scatter_space_encode(const storage_merged_tab_t *t, int scaled, buf_t *structure, buf_t *values,
                         uint64_t *unit);

#endif
