/* calltree.h — the call tree: the unit flamedb stores, ships and merges.
 *
 * A calltree_t is a tree of frames keyed by symbol id (common/hash.h). Node 0 is
 * the root (SYM_ROOT). Every node has a signed self value (delta profiles may be
 * negative) and a total = self + the totals of its children. Children of one
 * parent are unique by symbol. Adding stacks or merging trees sums values, so
 * merge is associative and commutative — the property that lets RocksDB merge
 * operands, replicas and scatter-gather partials be combined in any order.
 *
 * Wire/disk encoding (version 1), used for span values and their merge
 * operands, the trees of cluster messages (writes, query partials) and what
 * storage_scan_blocks hands its callers; see docs/storage-format.md:
 *   u8      version = 1
 *   uvarint nsyms, then nsyms x u64 little-endian symbol ids (the dictionary)
 *   svarint root self (value of empty stacks)
 *   uvarint nnodes (root excluded)
 *   nnodes x { uvarint depth (1 = child of root), uvarint dict index,
 *              svarint self }           in preorder (parent before children)
 * Totals are not stored; they are recomputed on decode.
 *
 * Limits: a tree refuses to grow past max_nodes (ERR_LIMIT) and decode refuses
 * encodings deeper than CALLTREE_MAX_DEPTH (ERR_CORRUPT), so hostile input is
 * bounded.
 *
 * Memory: a tree holds per node its shape (8 bytes, calltree_node_t: its
 * symbol's tree-local index and its parent), per distinct symbol its id (8
 * bytes) and, while it may still grow, a 4-byte slot of the table that
 * finds the index (at most two thirds full; neither while it is unnamed:
 * calltree_new_unnamed), its self value (8 bytes; none in a scaled tree,
 * whose values are another tree's times a factor: calltree_adopt_scaled,
 * nor in a valueless one while it grows: calltree_new_valueless)
 * and, while it may still
 * grow, its edge table (6 to 9 bytes: 4-byte slots, 8-byte ones in a table
 * that may hold 2^24 nodes or more). Its child links (8 bytes a node,
 * calltree_links_t) are made from the parents when first read, or when it
 * is shrunk, so a tree that only grows (ingest's while a push is parsed)
 * holds none. Totals are not kept as values change: the root's is a running
 * sum, and the first read of another total (calltree_total, calltree_totals)
 * after a change computes them all in one pass into an array (8 bytes a
 * node) that the tree keeps until its next change. A tree that is only
 * built, encoded and stored (ingest's) never holds them.
 *
 * Ownership: calltree_new() returns a tree the caller owns (calltree_free()).
 * Not thread-safe, for readers either (reading totals or links fills their
 * arrays; a shape shared by several trees has its links made first);
 * distinct trees may be used from distinct threads.
 */
#ifndef FLAMEDB_COMMON_CALLTREE_H
#define FLAMEDB_COMMON_CALLTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define CALLTREE_VERSION 1
#define CALLTREE_MAX_DEPTH 65536
#define CALLTREE_NONE UINT32_MAX

typedef struct calltree calltree_t;

/* A tree that holds at most max_nodes nodes (root included); 0 = unlimited. */
calltree_t *calltree_new(size_t max_nodes);
/* The same, starting with room for 4 nodes instead of 64 (about 300 bytes
 * instead of 4.5 KiB): for the many small trees of one profile (span trees). */
calltree_t *calltree_new_small(size_t max_nodes);
/* calltree_new, for a tree whose values come after its nodes (a push's:
 * its samples' values are kept apart, a few bytes a sample, and added
 * once its nodes are made): it holds no self values (8 bytes a node less
 * while it grows) until a change of values gives it them
 * (calltree_add_selves, calltree_merge or calltree_decode_merge into it,
 * calltree_adopt_shape or _scaled); every value reads zero until then, and
 * reads that return its values as an array (calltree_selves, _scaled,
 * calltree_totals, calltree_encode) make them first (NULL or ERR_NOMEM
 * when they cannot). calltree_add_self, which cannot fail, must not be
 * called on it before one of those. */
calltree_t *calltree_new_valueless(size_t max_nodes);
/* calltree_new_valueless, for a tree whose nodes name their symbols by
 * the caller's index while it grows (calltree_child_index): a push's
 * trees share one list of the push's symbols, so none holds its own list
 * and table of them (8 bytes and a 4-byte slot a symbol a tree) and the
 * caller keeps a 4-byte index per frame, not a 64-bit symbol. Until
 * calltree_name_syms only calltree_child_index, calltree_node_count,
 * calltree_nodes (sym_index is then the caller's index),
 * calltree_mem_bytes, calltree_shrink, calltree_add_selves and the value
 * reads may be called. */
calltree_t *calltree_new_unnamed(size_t max_nodes);
void calltree_free(calltree_t *t);
/* Makes room for nodes more nodes, so building a tree of known size does not
 * rehash and copy as it grows. */
int calltree_reserve(calltree_t *t, size_t nodes);
/* calltree_reserve, and room for syms more symbols: a merge of nodes
 * nodes over syms symbols new to t (calltree_decode_merge of an encoding
 * calltree_encoded_header tells so of) then allocates nothing in t. */
int calltree_reserve_decode(calltree_t *t, size_t nodes, size_t syms);
/* The most bytes calltree_reserve_decode(t, nodes, syms) allocates (every
 * new block, held beside the old one it replaces): charged before it is
 * called, what t did not grow by given back after. */
size_t calltree_reserve_decode_bytes(const calltree_t *t, size_t nodes, size_t syms);
/* Empties t to its root. A tree sharing its shape with others (calltree_copy_shape)
 * gets a fresh one: ERR_NOMEM when that fails (t is then unchanged). */
int calltree_clear(calltree_t *t);
/* Gives back the room the node and value arrays grew into past the nodes
 * (a tree grows them by half again), the edge table (6 to 9 bytes a node:
 * rebuilt from the nodes if one is added again) and the computed
 * totals: for a tree that is done growing and will be held a while (a
 * push's, until it is stored). It may still grow afterwards. */
void calltree_shrink(calltree_t *t);

/* Adds value along stack[0..depth) (stack[0] is the outermost caller, the last
 * entry the leaf) and adds value to the leaf's self. depth 0 adds to root self.
 * ERR_LIMIT when the tree would exceed max_nodes (the tree is then unchanged
 * except for nodes already created on this path, whose values are untouched). */
int calltree_add_stack(calltree_t *t, const uint64_t *stack, size_t depth, int64_t value);

/* Finds or creates the child of parent with symbol sym; returns its index in *child. */
int calltree_child(calltree_t *t, uint32_t parent, uint64_t sym, uint32_t *child);
/* calltree_child, with *hint the tree-local index of sym (calltree_syms) as
 * a caller remembers it for this tree: checked with one compare and used
 * when right, so a caller that keeps it per frame (ingest, per pprof
 * location) or per symbol of a source (merge, decode) looks each edge up
 * once; when wrong (any value, CALLTREE_NONE for none) sym is looked up and
 * *hint set to its index. */
int calltree_child_hint(calltree_t *t, uint32_t parent, uint64_t sym, uint32_t *hint,
                        uint32_t *child);
/* calltree_child for an unnamed tree (calltree_new_unnamed): si is the
 * caller's index of the symbol, from 1 (0 is the root's) to below
 * CALLTREE_NONE. */
int calltree_child_index(calltree_t *t, uint32_t parent, uint32_t si, uint32_t *child);
/* Names an unnamed tree's symbols: sym_of(ctx, si) is the symbol of the
 * caller's index si. The tree then holds its own list of them in the
 * order it first named them (calltree_syms, as calltree_child would have
 * made it: the encoding is the same) and is an ordinary tree; its edge
 * table is dropped (rebuilt if a node is added). mark has an entry per
 * index the nodes name, every one zero, and is given back so. Its shape
 * must not be shared. ERR_NOMEM (the tree unchanged) when the list (8
 * bytes a symbol it names) cannot be allocated. */
int calltree_name_syms(calltree_t *t, uint64_t (*sym_of)(const void *ctx, uint32_t si),
                       const void *ctx, uint32_t *mark);
/* Hints the CPU to fetch the hash slot calltree_child(t, parent, sym) will
 * probe: callers mapping many nodes issue it a few nodes ahead. */
void calltree_prefetch(const calltree_t *t, uint32_t parent, uint64_t sym);

/* Adds value to node's self (and so to the totals of it and all its
 * ancestors): O(1), the totals are computed when read. */
void calltree_add_self(calltree_t *t, uint32_t node, int64_t value);

/* Adds vals[i] to the self value of nodes[i] for i < n. Repeated nodes are
 * fine. 0, or ERR_NOMEM when a scaled tree (calltree_adopt_scaled) cannot
 * be given its own values. */
int calltree_add_selves(calltree_t *t, const uint32_t *nodes, const int64_t *vals, size_t n);

/* Makes dst's nodes and edges those of src, every value zero: the tree the
 * same adds would have built, without building it again (the sample types of
 * one profile that are non-zero in the same samples share their shape). The
 * nodes and edges are shared, not copied: dst then holds only its values
 * (8 bytes a node), until either tree adds a node, which first gives that
 * tree its own copy. dst must hold only its root with zero values;
 * ERR_LIMIT past dst's max_nodes (dst unchanged), ERR_NOMEM. */
int calltree_copy_shape(calltree_t *dst, const calltree_t *src);

/* calltree_copy_shape, with dst's self values selves[0..n) (n at most
 * src's node count; the rest zero) instead of zeros: takes ownership of
 * selves (malloc'd; it becomes dst's self array, grown to the node count),
 * so the values built apart need no second copy. ERR_LIMIT past dst's
 * max_nodes, ERR_NOMEM; on error selves is freed. */
int calltree_adopt_shape(calltree_t *dst, const calltree_t *src, int64_t *selves, size_t n);

/* Makes dst a scaled tree: src's nodes and edges (shared, as
 * calltree_copy_shape) with node i's self value src's times scale
 * (two's-complement wrap-around, as values add), holding no values of its
 * own: a tree whose values are a multiple of another's (a sample type
 * proportional to another in every sample) costs no 8 bytes a node. src
 * must hold its own values (not be scaled itself), must not change and
 * must outlive dst's reads. Reads see the scaled values; calltree_selves
 * makes them into an array (8 bytes a node, kept), calltree_selves_scaled
 * does not. Any change of dst's values or nodes (calltree_child adding a
 * node, calltree_add_selves, calltree_merge or calltree_decode_merge into
 * it, calltree_reserve, calltree_clear) first gives it its own values;
 * calltree_add_self, which cannot fail, must not be called on it before
 * one of those. dst must hold only its root with zero values; ERR_LIMIT
 * past dst's max_nodes (dst unchanged), ERR_NOMEM. */
int calltree_adopt_scaled(calltree_t *dst, const calltree_t *src, int64_t scale);

/* True when a and b have the same nodes in the same order (symbols and
 * parents; values aside), as after calltree_copy_shape: work that depends
 * only on the nodes (symbols, stack-node ids) done for one holds for the
 * other. One pass over the nodes. */
bool calltree_same_shape(const calltree_t *a, const calltree_t *b);

/* dst += src. */
int calltree_merge(calltree_t *dst, const calltree_t *src);

/* Appends the version-1 encoding of t to out. Besides out's growth (about
 * the encoding's length, and room for 8 bytes per symbol of t while it
 * runs) it allocates calltree_encode_scratch_bytes(t) until it returns:
 * 4 bytes a symbol, the child links when t has none (8 bytes a node, then
 * kept by t: calltree_mem_bytes counts them after), and a valueless
 * tree's values (kept too). */
int calltree_encode(const calltree_t *t, buf_t *out);
size_t calltree_encode_scratch_bytes(const calltree_t *t);
/* Decodes an encoding and adds it into dst (dst += decoded). ERR_CORRUPT on bad
 * bytes, ERR_LIMIT past dst's max_nodes. On error no value of dst changes (on
 * ERR_LIMIT some zero-valued nodes may have been created). */
int calltree_decode_merge(calltree_t *dst, const uint8_t *p, size_t n);
/* What calltree_decode_merge of an encoding of nnodes records over nsyms
 * symbols (calltree_encoded_header) allocates beside dst's own growth,
 * until it returns. */
size_t calltree_decode_scratch_bytes(size_t nsyms, size_t nnodes);
/* Decodes an encoding, checked as calltree_decode_merge checks it, into a
 * new tree of at most max_nodes nodes (0: unlimited) laid out as it is
 * stored: no child is looked up, each record becomes the next node, and
 * the tree is done growing (as after calltree_shrink: child links made,
 * no edge table). For a tree decoded to be read whole, a replica's write.
 * An encoding calltree_encode made names each child of a node once, and
 * the tree equals calltree_decode_merge's into an empty tree; siblings a
 * corrupt one repeats stay apart, two nodes of one path whose values
 * every reader of a stored tree adds up, as a merge of it would. *out:
 * the caller's (calltree_free), NULL on error: ERR_CORRUPT, ERR_LIMIT
 * past max_nodes, ERR_NOMEM. */
int calltree_decode_new(const uint8_t *p, size_t n, size_t max_nodes, calltree_t **out);

/* The header of an encoding (calltree_encode) p[0..n), read without
 * decoding it: *syms points at its dictionary inside p (*nsyms symbol ids,
 * each read by calltree_encoded_sym), *nnodes is its record count (root
 * excluded). Only the header is checked: ERR_CORRUPT when it does not fit
 * in p[0..n). (common/calltree_header.c) */
int calltree_encoded_header(const uint8_t *p, size_t n, const uint8_t **syms, size_t *nsyms,
                            size_t *nnodes);
/* Symbol i of a dictionary calltree_encoded_header found. */
uint64_t calltree_encoded_sym(const uint8_t *syms, size_t i);

/* An encoding's records as they are stored, for callers that lay the tree out
 * themselves instead of merging it (query's forests: no hashing per node).
 * Record i's parent is the last record before it one level up (the root for
 * depth 1). Caller owns; free with calltree_records_free(). */
typedef struct calltree_records {
    size_t n;          /* records, root excluded */
    int64_t root_self; /* the root's own value */
    uint32_t *depth;   /* per record in preorder: 1 = child of the root */
    uint64_t *sym;
    int64_t *self;
} calltree_records_t;
/* Decodes an encoding, checked as calltree_decode_merge checks it, into out.
 * ERR_CORRUPT on bad bytes, ERR_LIMIT past max_records (0: unlimited),
 * ERR_NOMEM; out is then empty. */
int calltree_decode_records(const uint8_t *p, size_t n, size_t max_records,
                            calltree_records_t *out);
void calltree_records_free(calltree_records_t *r);

/* Node access. Indices are stable until calltree_clear/free. */
size_t calltree_node_count(const calltree_t *t);
/* The most nodes t may hold (root included). */
size_t calltree_max_nodes(const calltree_t *t);
/* Heap bytes the tree holds (node array, edge index, child links, values
 * and computed totals, as allocated); a shape shared by k trees counts 1/k
 * in each. */
size_t calltree_mem_bytes(const calltree_t *t);
/* calltree_mem_bytes plus the child links its first read will make when
 * they are not made yet: what a tree that is to be read or encoded holds
 * then. */
size_t calltree_mem_bytes_read(const calltree_t *t);
uint64_t calltree_sym(const calltree_t *t, uint32_t node);
int64_t calltree_self(const calltree_t *t, uint32_t node);
/* Node's total: self plus its children's totals. The first read after a
 * change computes every total (O(nodes)); later reads are O(1). When that
 * array cannot be allocated the node's subtree is summed instead. */
int64_t calltree_total(const calltree_t *t, uint32_t node);
uint32_t calltree_parent(const calltree_t *t, uint32_t node);      /* CALLTREE_NONE for root */
uint32_t calltree_first_child(const calltree_t *t, uint32_t node); /* CALLTREE_NONE if leaf */
uint32_t calltree_next_sibling(const calltree_t *t, uint32_t node);
/* A node's place in the tree as the tree holds it (its values are apart:
 * calltree_selves, calltree_totals; its children: calltree_links), for
 * passes over every node (calltree_nodes) where a call per field would
 * cost more than the pass's own work. 8 bytes: nodes are most of what a
 * growing tree holds, so a node names its symbol by the tree's own 32-bit
 * index (calltree_syms), not by the 64-bit id. */
typedef struct calltree_node {
    uint32_t sym_index; /* the symbol is calltree_syms(t)[sym_index] */
    uint32_t parent;    /* CALLTREE_NONE for the root */
} calltree_node_t;

/* A node's children as a list: its newest child first, then each child's
 * next older sibling. */
typedef struct calltree_links {
    uint32_t first_child;  /* CALLTREE_NONE if leaf */
    uint32_t next_sibling; /* CALLTREE_NONE if last */
} calltree_links_t;

/* The calltree_node_count(t) nodes in index order (parents before
 * children), and their self and total values in the same order. Borrowed,
 * read-only, valid until t next changes. calltree_totals computes the
 * totals when they are stale (see calltree_total) and returns NULL when
 * their array cannot be allocated, as calltree_selves does for a scaled
 * tree (calltree_adopt_scaled) whose values it makes. */
const calltree_node_t *calltree_nodes(const calltree_t *t);
/* The symbols t's nodes name, by tree-local index (calltree_node_t's
 * sym_index; index 0 is the root's, SYM_ROOT), in the order the tree first
 * named them. Borrowed, read-only, valid until t next changes. */
const uint64_t *calltree_syms(const calltree_t *t);
/* The length of calltree_syms(t): 1 + the distinct symbols of its other
 * nodes (each named by one of them at least). */
size_t calltree_sym_count(const calltree_t *t);
/* The nodes' child links in the same order. Not kept while a tree only
 * grows: made from the parents by the first read after the tree last grew
 * past their room (O(nodes), 8 bytes a node, kept until then) or by
 * calltree_shrink. Borrowed, read-only, valid until t next changes; NULL
 * when they cannot be allocated (calltree_first_child and
 * calltree_next_sibling then scan the nodes). */
const calltree_links_t *calltree_links(const calltree_t *t);
const int64_t *calltree_selves(const calltree_t *t);
/* The array node i's self value is read from (*self) and its factor: the
 * tree's own values and 1, or a scaled tree's (calltree_adopt_scaled)
 * base's values and its scale. Node i's value is (*self)[i] * *scale
 * (wrapping): for passes over a tree's values that make no array of them.
 * Borrowed, valid until either tree next changes. A valueless tree
 * (calltree_new_valueless) is given its zeros first: ERR_NOMEM (*self
 * NULL, the tree unchanged) when they cannot be allocated. */
int calltree_selves_scaled(const calltree_t *t, const int64_t **self, int64_t *scale);
const int64_t *calltree_totals(const calltree_t *t);
/* The bytes calltree_totals (or calltree_total) would allocate now: 0 when
 * t's totals are current or fit the room it has, else 8 a node (for a
 * caller that charges memory before it is made). */
size_t calltree_totals_bytes(const calltree_t *t);

/* Total of the root: the exact sum of every value added. O(1). */
int64_t calltree_root_total(const calltree_t *t);

/* Calls fn(ctx, sym) once for each distinct symbol in t (root excluded). */
int calltree_for_each_symbol(const calltree_t *t, int (*fn)(void *ctx, uint64_t sym), void *ctx);

#endif
