/* query_int.h — internals shared by the files of query/; never included
 * outside query/.
 *
 * Holds the string-interning map the encoders use to deduplicate names, the
 * "children sorted by name" view of a call tree that makes every encoder's
 * output depend on content only, and small helpers for error reasons.
 */
#ifndef FLAMEDB_QUERY_QUERY_INT_H
#define FLAMEDB_QUERY_QUERY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/assist.h"
#include "common/ends.h"
#include "common/strmap.h"
#include "query/query.h"

/* ---- sorted children view ---- */
/* For every node of t, its children ordered by (name, file, symbol id).
 * kids[off[i] .. off[i+1]) are node i's children. */
typedef struct sorted_tree {
    const calltree_t *t; /* or NULL: then sym and parent */
    const uint64_t *sym;
    const uint32_t *parent;
    const uint32_t *sid; /* or NULL: a number per distinct symbol (query_kept_t.sid) */
    size_t nsid;
    const symtab_t *syms;
    size_t n;
    uint32_t *off;     /* n + 1 */
    uint32_t *kids;    /* n - 1 */
    const char **name; /* per node, never NULL; borrowed from syms or unk */
    const char **file;
    char *unk;   /* 32 bytes per node (per sid with sid) for unknown-symbol names, or NULL */
    buf_t *out;  /* the answer its arrays are held beside (buf_beside_take), or NULL */
    size_t held; /* taken beside out */
} sorted_tree_t;

/* The arrays are taken beside out (may be NULL; buf_beside_take: the
 * answer's charge counts them) before they are made, and given back by
 * query_sorted_tree_free: a refusal is returned, nothing built. */
int query_sorted_tree_build(sorted_tree_t *st, const calltree_t *t, const symtab_t *syms,
                            buf_t *out);
/* The same over kept nodes (k outlives st). With assist (may be NULL), a
 * large tree's names are looked up on an idle helper while this thread
 * links the children, and the later half of the children is sorted there
 * (assist.h: a part no helper takes runs here). */
int query_sorted_tree_build_kept(sorted_tree_t *st, const query_kept_t *k, const symtab_t *syms,
                                 assist_t *assist, buf_t *out);
void query_sorted_tree_free(sorted_tree_t *st);

/* Name and file of sym (never NULL). Unknown symbols become "unknown 0x<id>"
 * written into scratch (at least 32 bytes). */
void query_sym_name(const symtab_t *syms, uint64_t sym, char *scratch, const char **name,
                    const char **file);

/* The five parts of a profile type id; pointers into a copy held in buf. */
typedef struct ptype {
    char buf[QUERY_TYPE_MAX + 1];
    const char *name, *sample_type, *sample_unit, *period_type, *period_unit;
} ptype_t;
/* 0, or ERR_INVALID_ARGUMENT when id is not name:st:su:pt:pu. */
int query_ptype_parse(const char *id, ptype_t *out);

/* The flamebearer "flamebearer" member: the nnames names (of lens bytes),
 * then each level's text (a buf_t at the start of every element of levels,
 * stride bytes apart), then numTicks and maxSelf; shared by the render and
 * diff encoders. */
int query_write_flamebearer(buf_t *out, const char *const *names, const size_t *lens, size_t nnames,
                            const void *levels, size_t nlevels, size_t stride, int64_t num_ticks,
                            int64_t max_self);
/* The flamebearer "metadata" member (format "single" or "double"), for the
 * render and diff encoders; spy may be NULL. */
int query_write_metadata(buf_t *out, const char *format, const char *profile_type, const char *spy);
/* The merged tree and the symbols it names, self-contained (the
 * QUERY_FORMAT_TREE body that render-diff joins; diff.c). */
int query_encode_tree(const calltree_t *t, const symtab_t *syms, buf_t *out);
/* Decodes a query_encode_tree body: merges its tree into t and its symbols
 * into syms. ERR_CORRUPT on damaged input. */
int query_tree_decode(const uint8_t *p, size_t n, calltree_t *t, symtab_t *syms);
/* query_tree_decode with what it allocates charged before it is made
 * (charge may be NULL: nothing charged): the tree decoder's scratch, taken
 * and given back; t's room for the records (calltree_reserve_decode, so
 * the merge itself allocates nothing in t), of which what t grew by stays
 * taken, also on failure (the caller gives back calltree_mem_bytes(t) less
 * what it was before the call); and each symbol's growth of syms, which
 * stays taken (the caller gives it back with syms). A charge refused:
 * ERR_UNAVAILABLE. */
int query_tree_decode_charged(const uint8_t *p, size_t n, calltree_t *t, symtab_t *syms,
                              const query_report_charge_t *charge);

/* ---- forests (forest.c): trees laid out for keep.c's selection ---- */
/* The forest of an encoded forest (query_forest_encode) or tree
 * (calltree_encode; nodes of total 0 dropped). A tree with a negative value
 * or a total past INT64_MAX gives out->nonneg 0 and no nodes (merge the
 * encoding instead). ERR_CORRUPT on bad bytes (for a tree as
 * calltree_decode_merge), ERR_LIMIT past max_nodes (0: unlimited). out:
 * caller owns; free with query_forest_free. */
int query_forest_decode(const uint8_t *enc, size_t len, size_t max_nodes,
                        storage_merged_tab_t *out);
/* The same of a tree. */
int query_forest_of_tree(const calltree_t *t, storage_merged_tab_t *out);
/* The most query_forest_of_tree holds at once for a tree of n nodes (its
 * arrays and the forest made), for memory budgets. */
size_t query_forest_of_tree_bytes(size_t n);
/* dst += f. ERR_LIMIT past dst's max_nodes; ERR_INVALID_ARGUMENT for values alone
 * (STORAGE_TABS_VALUES: no forest to merge). */
int query_forest_merge(calltree_t *dst, const storage_merged_tab_t *f);
/* About the heap bytes f holds. */
size_t query_forest_bytes(const storage_merged_tab_t *f);
void query_forest_free(storage_merged_tab_t *f);

/* A render's series read by its thread and by the helper that makes its
 * timeline (query_share_help, once the timeline is made): each takes the next
 * piece of a series no one took, the render's thread from the first, the
 * helper from the last; the helper's blocks go into a merger of its own,
 * which the render's thread adds into its own once the helper took its
 * last (storage_merger_absorb). A helper that comes after the render's
 * thread took the last series takes none. */
typedef struct query_share {
    storage_t *st;
    const char *tenant;
    const query_series_t *ser;
    const query_plan_t *plan; /* the render's: pieces and stop (not its charge) */
    alloc_charge_t charge;    /* the helper's merger's, its own on the render's budget (the
                                 timeline the helper makes next charges another meanwhile) */
    int charged;              /* charge is on a budget */
    ends_t ends;              /* the (series, piece) items left (none: too many to share) */
    int shared;               /* the items fit ends */
    _Atomic int state;        /* 0 open, 1 a helper came, 2 closed: the render's thread is done */
    assist_flag_t done;       /* the helper took its last */
    storage_merger_t *m;      /* the helper's, or NULL */
    int rc;
    errmsg_t em;
    /* a later part of the render the helper runs once its own work is done
     * (query_share_offer), unless the render's thread took it back first */
    void (*next_fn)(void *arg);
    void *next_arg;
    _Atomic int next_state;  /* 0 none, 1 offered, 2 the helper's, 3 taken back */
    assist_flag_t next_done; /* the helper ran it */
} query_share_t;
/* budget: the render's (NULL: nothing charged). */
void query_share_init(query_share_t *s, storage_t *st, const char *tenant,
                      const query_series_t *ser, const query_plan_t *plan, alloc_budget_t *budget);
/* The helper's share: on the helper, first of its part. */
void query_share_help(query_share_t *s);
/* Closes s to its helper (if still open), waits for the helper if it
 * came, frees its merger and gives its charge back: after the render's
 * read. */
void query_share_end(query_share_t *s);
/* Offers fn(arg) to s's helper for when its own work is done (the render's
 * thread goes on). query_share_taken then says whether the helper has it
 * (1: it runs there) or not (0: it is taken back, the caller runs it);
 * query_share_wait returns once the helper ran it. One at a time, on the
 * render's thread. */
void query_share_offer(query_share_t *s, void (*fn)(void *arg), void *arg);
int query_share_taken(query_share_t *s);
void query_share_wait(query_share_t *s);
/* On the helper, last: runs what the render offered, unless taken back. */
void query_share_run_offered(query_share_t *s);

/* What helps a render beside its thread (each may be NULL): the series
 * shared with its timeline's helper, and the table and helpers of the
 * names loaded beside its selection (query_merge_series_kept). */
typedef struct query_help {
    query_share_t *share;
    symtab_t *names;
    assist_t *assist;
} query_help_t;

/* query_merge_series, but when every token's forest is nonneg and their
 * merge surely fits in dst, hands the forests out instead of building
 * anything (*tabs: caller owns, storage_merged_tabs_free; dst untouched;
 * with what flags asks of storage_merger_tabs); otherwise *tabs is NULL and
 * dst holds the merge. known (nknown of them, borrowed for the call; NULL,
 * 0: none): the id spaces the caller holds, for STORAGE_TABS_SPACE
 * (storage_merger_known_spaces). help as query_merge_series_kept's (its
 * names unused). */
int query_merge_series_forests(storage_t *st, const char *tenant, const query_series_t *ser,
                               const query_plan_t *plan, unsigned flags,
                               const storage_space_known_t *known, size_t nknown, calltree_t *dst,
                               storage_merged_tab_t **tabs, size_t *ntabs, const query_help_t *help,
                               errmsg_t *em);
/* query_merge_series into *kept instead of dst when the truncation can be
 * chosen before building (max_nodes >= 2, keep.c's conditions); otherwise
 * *kept is NULL and dst holds what query_merge_series makes. help (NULL:
 * none): its share's series are read with its helper (query_share_t); with
 * help->names and kept, a helper of help->assist found idle loads the
 * names of the series' shard union into help->names while the nodes are
 * chosen (a superset of the kept nodes' names; query_load_symbols_kept
 * then loads none again); no helper idle, nothing is loaded. */
int query_merge_series_kept(storage_t *st, const char *tenant, const query_series_t *ser,
                            const query_plan_t *plan, size_t max_nodes, calltree_t *dst,
                            query_kept_t **kept, const query_help_t *help, errmsg_t *em);
/* Loads the name/file of every symbol of k that dst lacks into dst, and
 * numbers k's distinct symbols (k->sid). */
int query_load_symbols_kept(storage_t *st, const char *tenant, query_kept_t *k, symtab_t *dst);

/* ---- forests read where they lie (forest.c, encodings 4 and 5) ---- */
/* A forest of encoding 4 or 5 held as its bytes: keep.c reads a node's kids
 * only when its selection expands the node, so the nodes it never looks at
 * (the subtrees below what it keeps and their frontier) are never read. A
 * node is the offset of its record in rec. */
typedef struct query_packed {
    const uint8_t *rec; /* the records: own, or where they lie in a message the gather holds */
    uint8_t *own;       /* the records copied out (owned), or NULL when rec is borrowed */
    size_t len;         /* their bytes */
    size_t lent;        /* borrowed: the whole encoding's bytes (held with its message) */
    uint64_t *dict;     /* the dictionary's symbol ids (owned) */
    size_t nsyms;
    int version;                   /* QUERY_FOREST_V4 or V5 */
    size_t nodes;                  /* the forest's nodes, as its header says */
    int64_t root_total, root_self; /* the root's record (offset 0) */
} query_packed_t;
/* One node of a packed forest: its symbol, total, self, and where its
 * record starts (off) and its subtree's bytes end (end), which encoding 5
 * does not write for a last kid: it is known only from its parent. */
typedef struct query_pkid {
    uint64_t sym;
    int64_t total, self;
    uint32_t off, end;
} query_pkid_t;
/* Opens an encoding of QUERY_FOREST_V4 or V5 (len bytes at enc, copied; out is
 * the caller's, query_packed_free): its header, its root's record and its
 * dictionary are checked. ERR_CORRUPT for a malformed one, ERR_LIMIT past
 * max_nodes (0: none). */
int query_packed_open(const uint8_t *enc, size_t len, size_t max_nodes, query_packed_t *out);
/* query_packed_open without the copy: out reads the records where they lie
 * in enc, which must outlive it. */
int query_packed_open_at(const uint8_t *enc, size_t len, size_t max_nodes, query_packed_t *out);
/* The root of pk, as query_packed_kids takes it. */
query_pkid_t query_packed_root(const query_packed_t *pk);
/* Appends the kids of node (one query_packed_kids gave, or the root) to
 * *kids (*n of *cap used; grown), in their order. Each one's bytes lie
 * within the node's, its total is > 0 and the node's self plus its kids'
 * totals is the node's total, else ERR_CORRUPT. */
int query_packed_kids(const query_packed_t *pk, query_pkid_t node, query_pkid_t **kids, size_t *cap,
                      size_t *n);
/* The whole forest of pk, as query_forest_decode makes of its encoding
 * (every node checked). */
int query_packed_decode(const query_packed_t *pk, storage_merged_tab_t *out);
void query_packed_free(query_packed_t *pk);
size_t query_packed_bytes(const query_packed_t *pk); /* the heap bytes it holds */

/* ---- kept nodes (keep.c) ---- */
/* query_truncate_tabs's choice without building it: node 0 the root, every
 * parent before its children, `other` nodes (SYM_OTHER) last. total[i] is
 * self[i] plus the totals of i's children. */
struct query_kept {
    size_t n;
    uint64_t *sym;
    uint32_t *parent; /* parent[0] unused */
    int64_t *self, *total;
    uint32_t *sid;   /* or NULL: per node, its symbol's number among the distinct symbols (the
                        selection's: a shard union's or table's symbol numbers, `other` one
                        more; else in order of first use: query_load_symbols_kept), so names
                        are looked up once per symbol */
    size_t nsid;     /* sids are below it */
    int named;       /* every symbol's name is in the render's table already (loaded beside
                        the selection: query_merge_series_kept) */
    size_t expanded; /* kept nodes whose children the selection made (the rest: none of
                        their children could be kept) */
};
/* *out: caller owns, query_kept_free; NULL on error. Errors as
 * query_truncate_tabs. */
int query_keep_tabs(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                    query_kept_t **out);
/* The selection of query_keep_tabs over one forest, by a cut of its
 * totals (cut.c): the same kept nodes. 1 when it does not apply (not a
 * forest of distinct children with parents, or its ids much sparser than
 * its nodes: the caller selects best-first); else 0 or an error as
 * query_keep_tabs_charged. */
int query_keep_cut(const storage_merged_tab_t *t, size_t max_nodes, alloc_charge_t *charge,
                   query_kept_t **out);
/* What query_keep_cut holds at most over t (0: it does not apply to t). */
size_t query_cut_scratch_bytes(const storage_merged_tab_t *t, size_t max_nodes);
/* The cut's first pass (every node filed by its total) made beside the
 * forest pass that makes its forest, on a helper, as the pass finalizes
 * each id's total (storage_follow_t): query_cut_follow_new, its storage
 * part given to the merger (storage_merger_follow) before its
 * storage_merger_tabs, query_cut_follow_run on a helper (it files chunks
 * while the pass runs, from the highest ids), query_cut_follow_finish here
 * once the tabs are made (it files the chunks left, from the lowest: all
 * of them when no helper ran the follower), then query_keep_cut_filed. The
 * follower's id array is taken while the pass runs and charged with the
 * cut's scratch (query_cut_scratch_bytes) after it. Caller owns; free with
 * query_cut_follow_free once joined. */
typedef struct query_cut_follow query_cut_follow_t;
/* to_the_end: the helper has nothing else to do after it (no part waits
 * for it), so once the pass is done it goes on filing from the highest ids
 * beside query_cut_follow_finish, which files from the lowest; else it
 * stops there (the render's helper then loads the kept nodes' names). */
query_cut_follow_t *query_cut_follow_new(int to_the_end);
storage_follow_t *query_cut_follow_storage(query_cut_follow_t *c);
void query_cut_follow_run(void *arg);
/* On the thread that made the forest, once storage_merger_tabs returned:
 * files the chunks the follower has not taken (from the lowest ids), then
 * waits for the one it has in hand. Nothing when no forest was made. */
void query_cut_follow_finish(query_cut_follow_t *c);
void query_cut_follow_free(query_cut_follow_t *c);
/* The forest c filed whole (every id of it) and not yet cut, or NULL. */
const storage_merged_tab_t *query_cut_follow_filed(const query_cut_follow_t *c);
/* The forest c filed now lies at t (its struct copied, its arrays the
 * same: a gather holding it among its forests; the caller knows it is
 * that forest): 1 and c's filing is t's from here, else 0 (not filed
 * whole, or cut already). Once joined: no follower may run. */
int query_cut_follow_moved(query_cut_follow_t *c, const storage_merged_tab_t *t);
/* query_keep_cut over t with its first pass taken from c when c filed all
 * of t (else made here); c's filing is used up then (query_cut_follow_filed
 * gives NULL after). */
int query_keep_cut_filed(const storage_merged_tab_t *t, size_t max_nodes, alloc_charge_t *charge,
                         query_cut_follow_t *c, query_kept_t **out);
/* query_keep_tabs with the selection's arrays charged to charge (NULL:
 * none) as they grow and given back before it returns: ERR_UNAVAILABLE when
 * they do not fit. */
int query_keep_tabs_charged(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                            alloc_charge_t *charge, query_kept_t **out);
/* query_truncate_tabs so, with the kept nodes charged while the tree is
 * built (the tree itself is not: the caller counts dst). */
int query_truncate_tabs_charged(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes,
                                alloc_charge_t *charge, calltree_t *dst);
/* query_truncate_tabs_charged over the union of tabs and npacked packed
 * forests: the same tree as over their decodings. ERR_CORRUPT when a
 * packed node the selection reads is malformed. */
int query_truncate_mixed_charged(const storage_merged_tab_t *tabs, size_t ntabs,
                                 const query_packed_t *packed, size_t npacked, size_t max_nodes,
                                 alloc_charge_t *charge, calltree_t *dst);
/* The kept nodes of query_truncate_mixed_charged, without the tree: for
 * an answer written straight from them (query_encode_flamebearer_kept).
 * The selection's arrays are charged as they grow and given back before it
 * returns; *out is the caller's to count and to free (query_kept_free),
 * NULL on error. */
int query_keep_mixed_charged(const storage_merged_tab_t *tabs, size_t ntabs,
                             const query_packed_t *packed, size_t npacked, size_t max_nodes,
                             alloc_charge_t *charge, query_kept_t **out);
/* Adds k into dst (built into it when dst is empty). */
int query_kept_tree(const query_kept_t *k, calltree_t *dst);
size_t query_kept_bytes(const query_kept_t *k); /* about the heap bytes k holds; 0 for NULL */
/* About the most memory query_keep_tabs (and query_truncate_tabs) hold for
 * tabs and max_nodes: the arrays it sizes at start and the answer's, made
 * before they are freed (for query-memory-bytes; a selection that grows
 * past them takes more). */
size_t query_keep_scratch_bytes(const storage_merged_tab_t *tabs, size_t ntabs, size_t max_nodes);
/* The arrays query_truncate holds per node of t while it selects (beside the
 * tree it builds), for query-memory-bytes. */
size_t query_truncate_scratch_bytes(const calltree_t *t);
void query_kept_free(query_kept_t *k); /* NULL is fine */
/* The flamebearer JSON of k, as query_encode_flamebearer writes that of
 * query_kept_tree(k): the same bytes, without the tree. The deeper half of
 * its levels is written on a helper of assist when one is idle (NULL:
 * none; the same bytes either way). */
int query_encode_flamebearer_kept(const query_kept_t *k, const symtab_t *syms,
                                  const char *profile_type, const char *spy_name,
                                  const query_timeline_t *tl, assist_t *assist, buf_t *out);

/* Loads the name/file of every symbol of the forests into dst. */
int query_load_symbols_tabs(storage_t *st, const char *tenant, const storage_merged_tab_t *tabs,
                            size_t ntabs, symtab_t *dst);

/* ---- functions of a tree (top.c) ---- */
/* Every function of t, in first-seen order. *out: caller owns (free()).
 * charge (NULL, or its take NULL: nothing charged) is asked before memory
 * is made: the working tables' bound while they are made (given back
 * before it returns), the function table as it grows (a take refusing
 * fails with what take returned, everything given back). On success *held
 * bytes of the table stay taken: the caller gives them back once it frees
 * *out. The totals t's first read makes (8 bytes a node, when t has none)
 * are taken before the walk makes them, once the symbols' table is freed;
 * *totals bytes of them stay taken, also on failure: the caller gives them
 * back once it frees t. */
int query_fns_collect(const calltree_t *t, const query_report_charge_t *charge, query_fn_t **out,
                      size_t *n, size_t *held, size_t *totals);
/* The functions of forests (every one with symno and parent, nonneg:
 * ERR_INVALID_ARGUMENT otherwise): each symbol's self and total over them,
 * in no order, and *total the roots' (a share's sums, without the tree of
 * its forests). *out: caller owns (free()). Its table and scratch are
 * charged to charge (NULL: none) before they are made; the table (as
 * *n entries of query_fn_t) stays charged, the scratch is given back. */
int query_fns_of_tabs(const storage_merged_tab_t *tabs, size_t ntabs, alloc_charge_t *charge,
                      query_fn_t **out, size_t *n, int64_t *total);
/* Each function's self and total over t and the extra ones beside it
 * (added by symbol, as query_encode_top_fns does), with their names, for a
 * regression report's bucket: version 1, the total (t's root's plus
 * extra_total), the count, then per function its symbol id (8 bytes,
 * little-endian), self and total (zigzag varints) and, when syms names it,
 * 1 and its name and file (each a varint length and the bytes), else 0.
 * The tables are held beside out while they are made. */
int query_encode_functions(const calltree_t *t, const query_fn_t *extra, size_t nextra,
                           int64_t extra_total, const symtab_t *syms, buf_t *out);
/* Reads what query_encode_functions wrote: the functions into *out (caller
 * frees; no names: those go into syms, NULL: dropped), their number and the
 * total. charge (NULL: none) is asked before memory is made: the table
 * (*nfns x sizeof(query_fn_t), which the caller gives back once it frees
 * *out) and what syms may grow by for each name (kept taken: syms holds
 * it). ERR_CORRUPT on malformed input, ERR_UNAVAILABLE when charge
 * refuses; nothing stays taken for the table then. */
int query_decode_functions(const uint8_t *p, size_t n, symtab_t *syms,
                           const query_report_charge_t *charge, query_fn_t **out, size_t *nfns,
                           int64_t *total);
/* Adds nadd function sums to v[0..*n) by symbol (new ones appended, *n
 * grown; v has room for *n + nadd): from add, or from the arrays syms,
 * selves and totals when syms is not NULL. A map of u64map_init_bytes(*n +
 * nadd) bytes lives meanwhile (the caller charges it). ERR_NOMEM. */
int query_fns_merge(query_fn_t *v, size_t *n, const query_fn_t *add, const uint64_t *syms,
                    const int64_t *selves, const int64_t *totals, size_t nadd);
/* query_encode_top over t's functions and the extra ones beside them
 * (query_fns_of_tabs's), added by symbol; extra_total adds to t's root's. */
int query_encode_top_fns(const calltree_t *t, const query_fn_t *extra, size_t nextra,
                         int64_t extra_total, const symtab_t *syms, const char *profile_type,
                         const query_top_opts_t *o, buf_t *out);

/* ---- the name search of the function lists (search.c) ---- */
/* search= of /api/top and /api/diff: NULL or "" is none; else at most
 * QUERY_SEARCH_MAX bytes of valid UTF-8 (names are compared as the answer's
 * JSON shows them, so other bytes could never match). ERR_INVALID_ARGUMENT
 * naming the parameter. */
int query_search_check(const char *text, errmsg_t *em);
/* A search being matched: the folded text and a scratch name. */
typedef struct query_search {
    buf_t needle, name;
    int on; /* a non-empty text: otherwise every name matches */
} query_search_t;
/* s for text (checked with query_search_check; NULL or "" matches all).
 * Free with query_search_free, also after a failure. */
int query_search_init(query_search_t *s, const char *text);
/* *hit: name contains the text, A-Z matching a-z and nothing else folded. */
int query_search_match(query_search_t *s, const char *name, int *hit);
void query_search_free(query_search_t *s);

/* Integer parameter name: s (NULL or "" leaves *out alone) must be decimal
 * digits whose value is in min..max (max 0: no upper bound), else
 * ERR_INVALID_ARGUMENT worded the same for every route: "parameter 'NAME':
 * \"S\" is not an integer from MIN to MAX" (or "... of MIN or more"). */
int query_parse_uint_param(const char *name, const char *s, unsigned long long min,
                           unsigned long long max, unsigned long long *out, errmsg_t *em);

/* The format and maxNodes parameters, as a render parses them (query.c). */
int query_parse_format(const char *s, query_format_t *f, errmsg_t *em);
int query_parse_max_nodes(const char *s, query_format_t f, const query_limits_t *lim, size_t *out,
                          errmsg_t *em);

/* Folded lines of st (folded.c): `stack self` per node with a non-zero
 * self; with left_self (per node of st->t) the differential form of
 * render-diff, `stack left right` per node with a non-zero self on either
 * side, the tree's own selves being the right side. */
int query_folded_write(const sorted_tree_t *st, const int64_t *left_self, buf_t *out);
/* The folded text of *t as query_encode_folded writes it (with *left, the
 * left side's self per node of *t, as query_folded_write writes a
 * render-diff; left NULL or *left NULL: a plain one): into out when it is
 * shorter than min_bytes or does not fit out's max, else as a stream of
 * exactly its measured size (*stream, caller owns) that takes *t, *syms and
 * *left (all set to NULL; *left is freed with the stream). Working memory
 * is held beside out while it runs. */
int query_folded_open(calltree_t **t, symtab_t **syms, int64_t **left, size_t min_bytes, buf_t *out,
                      query_stream_t **stream);

/* ---- answers as streams (stream.c) ---- */
/* What a format's stream does: next appends at least want bytes of the
 * answer to out unless it ends (*done 1); free releases impl. */
typedef struct query_stream_ops {
    int (*next)(void *impl, buf_t *out, size_t want, int *done);
    void (*free)(void *impl);
} query_stream_ops_t;
/* A stream of impl (taken: freed with the stream, also when this fails)
 * producing length bytes (or QUERY_STREAM_LENGTH_UNKNOWN), holding about
 * bytes of heap. */
int query_stream_new(const query_stream_ops_t *ops, void *impl, uint64_t length, size_t bytes,
                     query_stream_t **out);

typedef struct query_svg_paint query_svg_paint_t; /* svg.c's section below */
/* The SVG of *t as query_encode_svg writes it (title and note borrowed for
 * the call), or with paint (NULL: the package colouring) as a diff view, as
 * a stream (*stream, caller owns; taking *t and *syms, both set to NULL, and
 * paint->ctx, set to NULL and released with the stream) when its frames
 * alone make at least min_bytes, else into out (nothing taken). Its length
 * is not known before it is written. */
int query_svg_open(calltree_t **t, symtab_t **syms, const char *profile_type, const char *title,
                   const char *note, query_svg_paint_t *paint, size_t min_bytes, buf_t *out,
                   query_stream_t **stream);
/* The gzipped pprof of *t as query_encode_pprof writes it, as a stream
 * (same terms) when its stacks alone make at least min_bytes of the
 * uncompressed profile, else into out. Its length is not known before it
 * is written. */
int query_pprof_open(calltree_t **t, symtab_t **syms, const char *profile_type, int64_t time_ns,
                     int64_t duration_ns, size_t min_bytes, buf_t *out, query_stream_t **stream);

/* The flamebearer JSON of *kept (when kept and *kept are not NULL) or else
 * of *t, as query_encode_flamebearer(_kept) writes it, with members (NULL:
 * none) added as query_add_json_members adds them: as a stream (*stream,
 * caller owns; taking *syms and *kept or *t, set to NULL) when its nodes'
 * level entries alone make at least min_bytes, else into out. Its length is
 * not known before it is written. */
int query_flamebearer_open(calltree_t **t, query_kept_t **kept, symtab_t **syms,
                           const char *profile_type, const char *spy_name,
                           const query_timeline_t *tl, const char *members, size_t min_bytes,
                           assist_t *assist, buf_t *out, query_stream_t **stream);

/* 1 when query_flamebearer_open would answer k's flame graph (its values
 * divided as tl says) as a stream into out, 0 when it writes it whole. */
int query_flamebearer_kept_streams(const query_kept_t *k, const query_timeline_t *tl,
                                   size_t min_bytes, const buf_t *out);

/* Appends the members (`"a":1,"b":2`) inside body's closing brace: a partial
 * answer's flags on a JSON body (gather.c). */
int query_add_json_members(buf_t *body, const char *members);

/* ---- speedscope files (speedscope.c) ---- */
/* One sampled profile over a sorted tree: its name and its self per node of
 * st->t (borrowed; NULL: the tree's own selves). */
typedef struct query_ss_profile {
    const char *name;
    const int64_t *self;
} query_ss_profile_t;
/* A speedscope file named name holding the profiles in order over one shared
 * frames table (the nodes of st); each profile's weights add up to its selves. */
int query_speedscope_write(const sorted_tree_t *st, const char *profile_type, const char *name,
                           const query_ss_profile_t *profiles, size_t nprofiles, buf_t *out);
/* The speedscope file of *t as query_speedscope_write writes it over the
 * name-sorted *t, profile k named names[k] (borrowed) with selves[k] (per
 * node of *t; NULL: the tree's own), at most two profiles, with members
 * (NULL: none) added as query_add_json_members adds them: as a stream
 * (*stream, caller owns; taking *t, *syms and every selves[k], set to NULL)
 * when its frames and samples alone make at least min_bytes, else into out
 * (nothing taken). Its length is not known before it is written. */
int query_speedscope_open(calltree_t **t, symtab_t **syms, const char *profile_type,
                          const char *name, const char *const *names, int64_t **selves,
                          size_t nprofiles, const char *members, size_t min_bytes, buf_t *out,
                          query_stream_t **stream);

/* ---- SVG flame graphs (svg.c) ---- */
/* Writes the fill of one frame as "#rrggbb" (out holds 8 bytes). The plain
 * flame graph colors by a hash of the frame's package; a diff view passes
 * its own function (e.g. red/green by change) with its context in ctx. */
typedef void (*query_svg_color_fn)(const sorted_tree_t *st, uint32_t node, void *ctx, char *out);

typedef struct query_svg_style {
    const char *title;        /* heads the image; NULL: the profile type */
    const char *profile_type; /* units of the tooltips; may be NULL */
    const char *note;         /* shown in red after the total; may be NULL */
    query_svg_color_fn color; /* NULL: query_svg_color_package */
    void *color_ctx;
    /* A diff view: the left side's total per node of st->t (borrowed), whose
     * own totals are the right side and set the widths; the tooltips then
     * give both sides and the change of share. NULL: a plain graph. */
    const int64_t *left_total;
} query_svg_style_t;

/* A diff view's colouring a stream can own: color paints with ctx,
 * left_total (per node of the tree, held by ctx) is the tooltips' left
 * side, release(ctx) frees ctx and all it holds (bytes of heap). */
struct query_svg_paint {
    query_svg_color_fn color;
    void *ctx;
    void (*release)(void *ctx);
    const int64_t *left_total;
    size_t bytes;
};

/* The whole SVG document of st (icicle layout, docs/query.md) into out. */
int query_svg_write(const sorted_tree_t *st, const query_svg_style_t *style, buf_t *out);
/* The default coloring: warm hues from a hash of the package (the name up to
 * its last path, module or class separator); `other` and the root grey. */
void query_svg_color_package(const sorted_tree_t *st, uint32_t node, void *ctx, char *out);
/* "#rrggbb" of r, g, b (0..255 each) into out (8 bytes): for color callbacks. */
void query_svg_rgb(unsigned r, unsigned g, unsigned b, char *out);

/* Maps a buf_t error of an encoder to ERR_LIMIT with a reason. */
int query_out_err(int rc, const buf_t *out, errmsg_t *em);

/* ---- token range sets (partial queries) ---- */
/* Ranges as sorted, disjoint closed intervals; all = every token. */
typedef struct rangeset {
    int all;
    size_t n;
    uint64_t *lo, *hi;
} rangeset_t;

/* Builds the set of r[0..n) (n == 0: every token). */
int query_rangeset_build(rangeset_t *rs, const query_range_t *r, size_t n);
int query_rangeset_has(const rangeset_t *rs, uint64_t token);
void query_rangeset_free(rangeset_t *rs);

/* query_series_select restricted to series whose token is in rs. */
int query_series_select_in(storage_t *st, const char *tenant, const query_selector_t *sel,
                           const rangeset_t *rs, const query_limits_t *lim, query_series_t *out,
                           errmsg_t *em);
/* The service aggregates that answer sel over rs exactly (aggregate.c): 1
 * with *out holding (token, aggregate id) pairs to merge like series (caller
 * frees with query_series_free), 0 when sel is not a whole-service selector
 * (*out empty: select series instead), or an error. */
int query_aggregate_select(storage_t *st, const char *tenant, const query_selector_t *sel,
                           const rangeset_t *rs, query_series_t *out, errmsg_t *em);
/* The same from a selector's text (as partial arguments carry it); param
 * names it in a parse error. */
int query_series_select_text(storage_t *st, const char *tenant, const char *param, const char *text,
                             const rangeset_t *rs, const query_limits_t *lim, query_series_t *out,
                             errmsg_t *em);

/* query_timeline_build over the (series, piece) items it takes from ends
 * (from the back, or the front; NULL: all of them, in order): two threads
 * build one timeline into two that are then added (query_timeline_add).
 * ends holds ser->n * query_timeline_pieces(plan) items. */
int query_timeline_build_from(storage_t *st, const char *tenant, const query_series_t *ser,
                              const query_plan_t *plan, ends_t *ends, int back,
                              query_timeline_t *out, errmsg_t *em);
/* The pieces of the plan a timeline re-covers its range with. */
size_t query_timeline_pieces(const query_plan_t *plan);
/* dst's samples += src's (both of one plan's shape). */
void query_timeline_add(query_timeline_t *dst, const query_timeline_t *src);
/* Allocates the zeroed timeline of a plan (the shape query_timeline_build
 * fills); *res gets the resolution whose windows fill one step. */
int query_timeline_init(const query_plan_t *plan, query_timeline_t *out, int *res);

/* Writes the JSON object {"startTime","samples","durationDelta"} of a
 * timeline of shape's grid whose shape->n buckets are samples (borrowed). */
int query_write_timeline(buf_t *out, const query_timeline_t *shape, const int64_t *samples);

/* Label partial: the distinct names (a->kind LABEL_NAMES) or values of
 * a->label of the series in rs, sorted, into out->values. */
/* Label shares over rs (shares.c): out->values holds "TOTAL S1,...,Sn VALUE"
 * entries (the value's total and its n timeline buckets, n fixed by the
 * plan as query_timeline_init shapes it), one per value of a->label among the
 * series a->selector picks (series without the label count under the value
 * ""). */
int query_shares_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                         const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                         errmsg_t *em);
/* Adds one "TOTAL S1,...,Sn VALUE" entry of a partial to a label-shares
 * gather (an averaged type's "TOTAL/COUNT S1/C1,...,Sn/Cn VALUE", whose
 * counts add up too; one without counts, from an older node, leaves them
 * 0); ERR_CORRUPT unless it has exactly the gather's n buckets. */
int query_gather_add_share(query_gather_t *g, const char *s, size_t n);
/* The gathered label shares, all borrowed and indexed like the values:
 * value i's total and timeline (tls[i * n ...], n the shape's buckets),
 * and for an averaged type (average 1) its profiles and their counts per
 * bucket (NULL while there is no value; unused for a summed type). */
typedef struct query_shares {
    int average;
    const int64_t *totals;
    const int64_t *tls;
    const int64_t *counts;
    const int64_t *tl_counts;
} query_shares_t;
/* The label-shares answer of the gathered entries (shares.c), averaged from
 * the exact sums and counts for an averaged type; timelines on shape's grid. */
int query_shares_write(const char *label, const strmap_t *values, const query_timeline_t *shape,
                       const query_shares_t *sh, buf_t *out);
/* The render's groupBy member "groups":{"VALUE":{timeline},...} of the same
 * entries (averaged the same way), values in strcmp order (shares.c). */
int query_shares_write_groups(const strmap_t *values, const query_timeline_t *shape,
                              const query_shares_t *sh, buf_t *out);
/* A list of (profile, series) entries kept bounded (profiles.c): at most
 * 2 * keep are held; query_plist_cut sorts them (time descending, id,
 * labels) and keeps the first keep. */
typedef struct query_plist_ent {
    int64_t time_ns;
    uint64_t token, series_id; /* where the series lives: the id's first 32 hex digits */
    uint8_t id[16];
    int64_t total;
    char *labels; /* the series' labels as a JSON object; owned */
} query_plist_ent_t;
typedef struct query_plist {
    query_plist_ent_t *e;
    size_t n, cap, keep;
    size_t label_bytes; /* the entries' labels, terminators included */
} query_plist_t;
/* The heap bytes pl holds (its array and labels). */
size_t query_plist_bytes(const query_plist_t *pl);
void query_plist_init(query_plist_t *pl, size_t keep);
void query_plist_free(query_plist_t *pl);
void query_plist_cut(query_plist_t *pl);
/* Takes ownership of e->labels (freed on failure too). */
int query_plist_add(query_plist_t *pl, const query_plist_ent_t *e);
/* Adds one "TIME_NS ID TOTAL {labels}" entry of a partial (ID: a profile
 * reference, below); ERR_CORRUPT when malformed. */
int query_plist_add_entry(query_plist_t *pl, const char *s, size_t n);
/* A stored profile's reference, the id GET /api/profiles lists and
 * GET /api/profiles/ID opens (its profile_trees key without the tenant):
 * token, series id, time_ns XOR 2^63 (16 hex digits each) and the profile
 * id (32), lowercase. out holds QUERY_PROFILE_ID_HEX + 1 bytes. */
typedef struct query_profile_ref {
    uint64_t token, series_id;
    int64_t time_ns;
    uint8_t id[16];
} query_profile_ref_t;
void query_profile_ref_write(const query_profile_ref_t *r, char *out);
/* Parses exactly QUERY_PROFILE_ID_HEX hex digits (either case) of s[0..n);
 * ERR_INVALID_ARGUMENT otherwise. */
int query_profile_ref_parse(const char *s, size_t n, query_profile_ref_t *out);
/* One profile's partial (profile.c): its tree when rs holds its token. */
int query_profile_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                          const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                          errmsg_t *em);

/* The profiles of rs (query_partial_t.values), at most a->limit + 1: each
 * series' newest limit + 1 in range from profile_trees. */
int query_profiles_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                           const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                           errmsg_t *em);
/* The answer: the first limit entries of pl and whether there were more. */
int query_profiles_write(query_plist_t *pl, size_t limit, buf_t *out);
/* The same answer with members (NULL: none) added as query_add_json_members
 * adds them: a chunked stream (*stream, caller owns; taking pl's entries, pl
 * left empty) when its entries make about min_bytes or more, else into out
 * (nothing taken). */
int query_profiles_open(query_plist_t *pl, size_t limit, const char *members, size_t min_bytes,
                        buf_t *out, query_stream_t **stream);
int query_labels_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                         const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                         errmsg_t *em);

/* The JSON array of sorted strings the label endpoints answer. */
int query_labels_write_array(char *const *v, size_t n, buf_t *out);
/* The same array of values's strings in the map's order (sorted by the
 * caller) as a stream, chunked: takes the map and its strings (values left
 * empty), also on failure (then freed). bytes: what they hold, for
 * query_stream_bytes. */
int query_labels_open(strmap_t *values, size_t bytes, query_stream_t **out);

#endif
