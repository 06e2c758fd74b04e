/* write.c — storage_write_profile: the idempotent write path.
 *
 * Under the stripe mutex of the profile id, each series' (series, profile id)
 * is looked up in the profiles CF (the seen index, bloom-filtered); the series
 * not seen before go into ONE WriteBatch with their seen entry, their own
 * tree (profile_trees, for opening that profile alone), labels, postings,
 * new symbols, block and total operands at every resolution (also into the
 * series' service aggregate, aggregate.c) and span operands. The batch commits atomically, so a
 * profile counts once at every resolution or not at all, and the mutex keeps two concurrent retries
 * of one id from both passing the check.
 *
 * Two direct-mapped caches skip rewriting what is known to be stored: symbol
 * ids (a hot service sends the same ~20k frames every push) and series
 * (labels and postings). Entries are added only after a batch committed.
 */
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* The cache keys a batch writes (a set: the u64map's values are unused).
 * Key 0 is stored as 1, as the id caches cannot hold 0. Returns 1 if key was
 * added, 0 if present, or a negative error. Bounded by one profile. */
static int key_set_add(u64map_t *set, uint64_t key)
{
    uint32_t unused;
    return u64map_get_or_put(set, key != 0 ? key : 1, 0, &unused);
}

typedef struct wctx {
    storage_t *s;
    const storage_profile_write_t *p;
    rocksdb_writebatch_t *wb;
    nodetab_t **tabs; /* locked node tables of the series written, by token */
    size_t ntabs;
    sparse_vec_t vec;
    uint32_t *map;       /* calltree node -> stack-node id */
    uint32_t *bfs;       /* calltree nodes in breadth-first order */
    uint64_t *order;     /* (id << 32 | position) for sorting */
    uint64_t *order_tmp; /* radix sort scratch, as large as order */
    uint32_t *got;       /* map_partial's scratch, as large as map */
    size_t map_cap;
    buf_t enc, tmp;
    buf_t plist;             /* the span trees of the series written (put_spans) */
    u64map_t syms;           /* symbol-cache keys this batch writes */
    u64map_t walked;         /* symbols of the trees walked so far (put_symbols) */
    u64map_t series;         /* series-cache keys this batch writes */
    storage_claims_t claims; /* aggregate anchors this batch records */
    /* The tree mapped last (map holds its ids), its token and how many of
     * its nodes were folded into "other": a series of the same shape (a
     * profile's sample types that share their stacks) reuses them. */
    const calltree_t *prev;
    uint64_t prev_token;
    size_t prev_folded;
    /* The vector of the last series of this shape chain whose tree went
     * into profile_trees plain and kept (base_ok), on the same token: a
     * later series proportional to it stores only the factor (put_ptree). */
    sparse_vec_t base;
    uint64_t base_series, base_token;
    bool base_ok;
    /* put_ptree kept the series' tree (PTREE_FLAG_UNBLOCKED): its 10 s
     * window reads it there, so put_windows leaves it out of that block */
    bool unblocked;
    uint64_t tenant_hash;
    int64_t now, t_s;
    size_t new_series; /* series the store did not hold (counted when tenant-max-series is on) */
    errmsg_t *em;
} wctx_t;

/* Symbols whose symbol-cache slots put_symbols fetches ahead. */
#define SYMBOL_PREFETCH_AHEAD 8

static uint64_t symbol_cache_key(uint64_t tenant_hash, uint64_t sym)
{
    return storage_symgc_key(tenant_hash, sym);
}

static uint64_t series_cache_key(uint64_t tenant_hash, uint64_t token, uint64_t series_id)
{
    return storage_mix64(tenant_hash ^ storage_mix64(token ^ storage_mix64(series_id)));
}

/* put_symbol, with the symbol's cache key ck already made. */
static int put_symbol_key(wctx_t *w, uint64_t sym, uint64_t ck)
{
    int touched = storage_symgc_touch(w->s, ck); /* a sweep now keeps it */
    if (touched != 0) return errmsg_set(w->em, touched, "out of memory");
    if (storage_idcache_has(&w->s->symbol_cache, ck)) return 0;
    int added = key_set_add(&w->syms, ck);
    if (added <= 0) return added == 0 ? 0 : errmsg_set(w->em, added, "out of memory");
    const char *name, *file;
    if (w->p->symbols == NULL || !symtab_get(w->p->symbols, sym, &name, &file))
        return errmsg_set(w->em, ERR_INVALID_ARGUMENT,
                          "symbol %016llx is referenced by a tree but not in the symbol table",
                          (unsigned long long)sym);
    int rc = storage_symbol_value(&w->tmp, name, file);
    if (rc != 0)
        return errmsg_set(w->em, rc, "symbol %016llx: value too large", (unsigned long long)sym);
    skey_t k;
    storage_key_symbol(&k, w->p->tenant, sym);
    rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_SYMBOLS], (const char *)k.b, k.n,
                              (const char *)w->tmp.data, w->tmp.len);
    return 0;
}

static int put_symbol(void *ctx, uint64_t sym)
{
    wctx_t *w = ctx;
    return put_symbol_key(w, sym, symbol_cache_key(w->tenant_hash, sym));
}

/* put_symbol for every symbol t names that no tree walked earlier in this
 * batch named: a profile's span trees name the frames of its series trees,
 * so each of their symbols (the tree lists them once) costs one lookup in
 * this batch's small set, not a
 * dictionary of its own per tree and a symbol-cache probe per symbol. A
 * sweep of the symbols cannot run before the commit (symgc.lock is held),
 * so one touch per batch keeps a symbol. */
static int put_symbols(wctx_t *w, const calltree_t *t)
{
    /* the tree's own list: each of its symbols once */
    size_t n = calltree_sym_count(t);
    const uint64_t *tsym = calltree_syms(t);
    uint32_t unused;
    /* The cache keys of the next SYMBOL_PREFETCH_AHEAD symbols, their
     * slots being fetched meanwhile: the cache is a large table probed at
     * random, one miss a symbol when probed in turn. */
    uint64_t ahead[SYMBOL_PREFETCH_AHEAD];
    for (size_t i = 1; i < n && i <= SYMBOL_PREFETCH_AHEAD; i++) {
        ahead[i % SYMBOL_PREFETCH_AHEAD] = symbol_cache_key(w->tenant_hash, tsym[i]);
        storage_idcache_prefetch(&w->s->symbol_cache, ahead[i % SYMBOL_PREFETCH_AHEAD]);
    }
    for (size_t i = 1; i < n; i++) {
        uint64_t sym = tsym[i], ck = ahead[i % SYMBOL_PREFETCH_AHEAD];
        if (i + SYMBOL_PREFETCH_AHEAD < n) {
            uint64_t next = symbol_cache_key(w->tenant_hash, tsym[i + SYMBOL_PREFETCH_AHEAD]);
            ahead[i % SYMBOL_PREFETCH_AHEAD] = next; /* ck was read */
            storage_idcache_prefetch(&w->s->symbol_cache, next);
        }
        if (u64map_get(&w->walked, sym, &unused)) continue; /* inline: the common case */
        int rc = u64map_put(&w->walked, sym, 0);
        if (rc < 0) return errmsg_set(w->em, rc, "out of memory");
        if ((rc = put_symbol_key(w, sym, ck)) != 0) return rc;
    }
    return 0;
}

/* With tenant-max-series on, a series the cache does not know is looked up:
 * one the store does not hold is new, and counts. The series' node table
 * lock, held until the commit, keeps another writer of it (or the
 * collector) from changing the answer meanwhile. */
static int count_if_new(wctx_t *w, const skey_t *k)
{
    if (!w->s->tseries.on) return 0;
    char *err = NULL;
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(w->s->db, w->s->ropts, w->s->cf[CF_SERIES],
                                                       (const char *)k->b, k->n, &err);
    int rc = storage_rocks_err(err, w->em, "series lookup");
    if (rc == 0 && v == NULL) w->new_series++;
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

/* Labels and postings, unless this series is known to be stored. */
static int put_series(wctx_t *w, const storage_series_write_t *sw)
{
    uint64_t ck = series_cache_key(w->tenant_hash, sw->token, sw->series_id);
    if (storage_idcache_has(&w->s->series_cache, ck)) return 0;
    int added = key_set_add(&w->series, ck);
    if (added <= 0) return added == 0 ? 0 : errmsg_set(w->em, added, "out of memory");
    skey_t k;
    storage_key_series(&k, sw->token, w->p->tenant, sw->series_id);
    int rc = count_if_new(w, &k);
    if (rc != 0) return rc;
    buf_reset(&w->tmp);
    rc = labels_encode(sw->labels, &w->tmp);
    if (rc != 0) return errmsg_set(w->em, rc, "series labels: %s", err_message(rc));
    rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_SERIES], (const char *)k.b, k.n,
                              (const char *)w->tmp.data, w->tmp.len);
    for (size_t i = 0; i < labels_count(sw->labels); i++) {
        rc = storage_key_posting(&w->tmp, w->p->tenant, labels_name(sw->labels, i),
                                 labels_value(sw->labels, i), sw->token, sw->series_id);
        if (rc != 0)
            return errmsg_set(w->em, ERR_LIMIT, "label %s: name or value longer than %d bytes",
                              labels_name(sw->labels, i), STORAGE_LABEL_MAX);
        rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_POSTINGS], (const char *)w->tmp.data,
                                  w->tmp.len, "", 0);
    }
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

#define PREFETCH_AHEAD 16

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts a[0..n) ascending: a radix sort by bytes, least significant first,
 * skipping the bytes every key shares (a block's keys are id << 32 | node,
 * so about 5 of 8 bytes vary): a few linear passes instead of a comparison
 * sort's n log n calls. tmp has room for n keys. */
static void sort_keys(uint64_t *a, uint64_t *tmp, size_t n)
{
    uint64_t any = 0, all = ~(uint64_t)0;
    for (size_t i = 0; i < n; i++) {
        any |= a[i];
        all &= a[i];
    }
    uint64_t *src = a, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        if ((((any ^ all) >> shift) & 0xff) == 0) continue; /* one value: already in order */
        size_t pos[256] = {0};
        for (size_t i = 0; i < n; i++)
            pos[(src[i] >> shift) & 0xff]++;
        for (size_t d = 0, sum = 0; d < 256; d++) {
            size_t c = pos[d];
            pos[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[pos[(src[i] >> shift) & 0xff]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

static nodetab_t *tab_of(wctx_t *w, uint64_t token)
{
    for (size_t i = 0; i < w->ntabs; i++)
        if (storage_nodetab_token(w->tabs[i]) == token) return w->tabs[i];
    return NULL;
}

static int grow_map(wctx_t *w, size_t n)
{
    if (n <= w->map_cap) return 0;
    uint32_t *m = realloc(w->map, n * sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    w->map = m;
    uint64_t *o = realloc(w->order, n * sizeof *o);
    if (o == NULL) return ERR_NOMEM;
    w->order = o;
    o = realloc(w->order_tmp, n * sizeof *o);
    if (o == NULL) return ERR_NOMEM;
    w->order_tmp = o;
    uint32_t *b = realloc(w->bfs, n * sizeof *b);
    if (b == NULL) return ERR_NOMEM;
    w->bfs = b;
    b = realloc(w->got, n * sizeof *b);
    if (b == NULL) return ERR_NOMEM;
    w->got = b;
    w->map_cap = n;
    return 0;
}

/* Marks a node of map_partial's current batch in w->map. */
#define MAP_PENDING (UINT32_MAX - 1)

/* Looks up the n nodes batched by map_partial (their parents' ids in
 * order_tmp's first half, symbols in order) and marks each found or not. */
static int map_batch(wctx_t *w, nodetab_t *t, size_t n)
{
    uint32_t *par = (uint32_t *)w->order_tmp, *who = par + w->map_cap;
    int rc = storage_nodetab_children(w->s, t, n, par, w->order, w->got);
    if (rc != 0) return errmsg_set(w->em, rc, "stack-node table: %s", err_message(rc));
    for (size_t j = 0; j < n; j++)
        w->map[who[j]] = w->got[j]; /* UINT32_MAX: not in the table */
    return 0;
}

/* Pass 1 of map_tree for a table not wholly in memory: the nodes whose
 * parent is in the table are looked up in batches (what the table does
 * not hold is read from its edge index in one MultiGet a batch, not one
 * point lookup a node). A batch ends before the first node whose parent
 * is in it (breadth-first order: parents come first). */
static int map_partial(wctx_t *w, nodetab_t *t, const uint32_t *bfs, size_t tail,
                       const calltree_node_t *nd, const uint64_t *tsym)
{
    uint32_t *par = (uint32_t *)w->order_tmp, *who = par + w->map_cap;
    size_t m = 0;
    int rc = 0;
    for (size_t k = 0; k < tail && rc == 0; k++) {
        uint32_t i = bfs[k], p = nd[i].parent;
        if (w->map[p] == MAP_PENDING) {
            rc = map_batch(w, t, m);
            m = 0;
        }
        if (rc != 0 || w->map[p] == UINT32_MAX) continue; /* a new parent: new children */
        par[m] = w->map[p];
        w->order[m] = tsym[nd[i].sym_index];
        who[m++] = i;
        w->map[i] = MAP_PENDING;
    }
    return rc == 0 && m > 0 ? map_batch(w, t, m) : rc;
}

/* Maps the tree onto table t (new nodes go into the batch): w->map. */
static int map_tree(wctx_t *w, const storage_series_write_t *sw, nodetab_t *t)
{
    size_t n = calltree_node_count(sw->tree);
    const calltree_node_t *nd = calltree_nodes(sw->tree);
    const uint64_t *tsym = calltree_syms(sw->tree);
    int rc;
    /* Breadth-first order: every node's parent is looked up a level earlier,
     * so the hash slot of a node PREFETCH_AHEAD places further on can be
     * fetched while this one is looked up; lookups into a large table are
     * independent cache misses, and overlapping them is most of the cost. */
    const calltree_links_t *ln = calltree_links(sw->tree);
    if (ln == NULL) return errmsg_set(w->em, ERR_NOMEM, "out of memory");
    uint32_t *bfs = w->bfs;
    size_t head = 0, tail = 0;
    for (uint32_t c = ln[0].first_child; c != CALLTREE_NONE; c = ln[c].next_sibling)
        bfs[tail++] = c;
    while (head < tail) {
        uint32_t v = bfs[head++];
        for (uint32_t c = ln[v].first_child; c != CALLTREE_NONE; c = ln[c].next_sibling)
            bfs[tail++] = c;
    }
    memset(w->map, 0xff, n * sizeof *w->map); /* UINT32_MAX: not mapped yet */
    w->map[0] = 0;
    /* Pass 1, breadth first: find the nodes the table already has. */
    if (!storage_nodetab_whole(t) && (rc = map_partial(w, t, bfs, tail, nd, tsym)) != 0) return rc;
    for (size_t k = 0; k < tail && storage_nodetab_whole(t); k++) {
        uint32_t i = bfs[k], p = nd[i].parent;
        if (k + PREFETCH_AHEAD < tail) {
            uint32_t a = bfs[k + PREFETCH_AHEAD], ap = nd[a].parent;
            if (w->map[ap] != UINT32_MAX)
                storage_nodetab_prefetch(t, w->map[ap], tsym[nd[a].sym_index]);
        }
        if (w->map[p] == UINT32_MAX) continue; /* a new parent: its children are new too */
        rc = storage_nodetab_child(w->s, t, w->map[p], tsym[nd[i].sym_index], NULL, &w->map[i]);
        if (rc == ERR_NOT_FOUND)
            w->map[i] = UINT32_MAX;
        else if (rc != 0)
            return errmsg_set(w->em, rc, "stack-node table: %s", err_message(rc));
    }
    /* Pass 2, in tree order: create the new ones, so ids follow call paths
     * (a leaf's id stays near its siblings', which keeps blocks small). */
    size_t folded = 0;
    for (uint32_t i = 1; i < n; i++) {
        if (w->map[i] != UINT32_MAX) continue;
        uint32_t pm = w->map[nd[i].parent];
        rc = storage_nodetab_child(w->s, t, pm, tsym[nd[i].sym_index], w->wb, &w->map[i]);
        if (rc == ERR_LIMIT) { /* the table is full: degrade, never refuse the service */
            rc = storage_nodetab_other(w->s, t, pm, &w->map[i]);
            folded++;
        }
        if (rc != 0) return errmsg_set(w->em, rc, "stack-node table: %s", err_message(rc));
    }
    w->prev_folded = folded;
    return 0;
}

/* The k keys of w->order (id << 32 | index) sorted and added up by id into
 * w->vec, encoded as a sparse block into w->enc: an index below n is a
 * tree node's (self[index] x scale), the others the series' pairs'
 * (vals[index - n]). */
static int encode_order(wctx_t *w, size_t k, const int64_t *self, int64_t scale, size_t n,
                        const int64_t *vals)
{
    sort_keys(w->order, w->order_tmp, k);
    size_t m = 0; /* nodes folded into one "other" node share its id: add them up */
    for (size_t j = 0; j < k; j++) {
        uint32_t id = (uint32_t)(w->order[j] >> 32), i = (uint32_t)w->order[j];
        int64_t v = i < n ? (int64_t)((uint64_t)self[i] * (uint64_t)scale) : vals[i - n];
        if (m > 0 && w->vec.id[m - 1] == id) {
            w->vec.val[m - 1] = (int64_t)((uint64_t)w->vec.val[m - 1] + (uint64_t)v);
        } else {
            w->vec.id[m] = id;
            w->vec.val[m++] = v;
        }
    }
    w->vec.n = m;
    buf_reset(&w->enc);
    int rc = storage_sparse_encode(&w->vec, &w->enc);
    return rc != 0 ? errmsg_set(w->em, rc, "series block: %s", err_message(rc)) : 0;
}

/* A series given by stack-node ids alone (checked by check_pairs): its
 * values encoded as encode_block would encode the tree they were mapped
 * from. Its block is compared with the base only on the base's token. */
static int encode_pairs(wctx_t *w, const storage_series_write_t *sw)
{
    int rc = grow_map(w, sw->npairs);
    if (rc == 0) rc = storage_sparse_reserve(&w->vec, sw->npairs);
    if (rc != 0) return errmsg_set(w->em, rc, "out of memory");
    w->prev = NULL; /* no tree to compare shapes with */
    if (w->base_token != sw->token) w->base_ok = false;
    size_t k = 0;
    for (size_t i = 0; i < sw->npairs; i++)
        if (sw->vals[i] != 0) w->order[k++] = (uint64_t)sw->ids[i] << 32 | i;
    return encode_order(w, k, NULL, 1, 0, sw->vals);
}

/* Maps the tree onto its token's stack-node table (map_tree, or the map of
 * the previous tree when same_shape and its table is this one: the lookups
 * would find the same ids), reports the map (p->mapped) and encodes its
 * self values as a sparse block into w->enc. */
static int encode_block(wctx_t *w, const storage_series_write_t *sw, bool same_shape)
{
    if (sw->tree == NULL) return encode_pairs(w, sw);
    nodetab_t *t = tab_of(w, sw->token);
    size_t n = calltree_node_count(sw->tree);
    if (t == NULL) return errmsg_set(w->em, ERR_INTERNAL, "node table of the series not held");
    int rc = grow_map(w, n + sw->npairs);
    if (rc == 0) rc = storage_sparse_reserve(&w->vec, n + sw->npairs);
    if (rc != 0) return errmsg_set(w->em, rc, "out of memory");
    bool reuse = same_shape && w->prev_token == sw->token;
    w->prev = NULL;                 /* until this tree's map is complete */
    if (!reuse) w->base_ok = false; /* other ids: no longer comparable */
    if (!reuse && (rc = map_tree(w, sw, t)) != 0) return rc;
    w->prev = sw->tree;
    w->prev_token = sw->token;
    /* as many nodes fold as when the previous tree was mapped: count them again */
    if (w->prev_folded > 0) atomic_fetch_add(&w->s->counters.folded_stacks, w->prev_folded);
    if (w->p->mapped != NULL)
        w->p->mapped(w->p->mapped_ctx, sw, w->map, n, storage_node_generation(w->s));
    size_t k = 0;
    uint32_t table_nodes = storage_nodetab_count(t);
    int64_t scale; /* a scaled tree's values are made here, not held */
    const int64_t *self;
    if (calltree_selves_scaled(sw->tree, &self, &scale) != 0)
        return errmsg_set(w->em, ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        /* Every node is mapped, to a node the table (and this batch) holds:
         * a block naming another id would read back as someone else's stack. */
        ASSERT_ALWAYS(w->map[i] < table_nodes);
        if ((uint64_t)self[i] * (uint64_t)scale != 0) w->order[k++] = (uint64_t)w->map[i] << 32 | i;
    }
    for (size_t i = 0; i < sw->npairs; i++) /* the stacks given by id beside the tree */
        if (sw->vals[i] != 0) w->order[k++] = (uint64_t)sw->ids[i] << 32 | (n + i);
    return encode_order(w, k, self, scale, n, sw->vals);
}

/* The block (already encoded in w->enc) and its total into every resolution
 * whose window has not already expired, for the series and for its service
 * aggregate unless it is the aggregate's anchor (aggregate.c): the same
 * operands on the same window, so the aggregate and its anchor add up to
 * the sum of the members at every resolution. A series whose tree put_ptree
 * kept gets no block operand at resolution 0 (its total, and the
 * aggregate's block, still): that window reads the kept tree. Each window
 * of the series also counts the profile (window_profiles, wprofiles.c), by
 * its id when the series is a piece of a split push (sw->piece). */
static int put_windows(wctx_t *w, const storage_series_write_t *sw, int64_t total)
{
    uint64_t agg;
    int rc = storage_aggregate_target(w->s, w->wb, &w->claims, w->p->tenant, sw->token,
                                      sw->series_id, sw->labels, &agg, w->em);
    if (rc != 0) return rc;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        int64_t res = storage_resolutions[r];
        storage_window_merge(w->s, w->wb, w->p->tenant, sw->token, sw->series_id, agg, r,
                             floor_div(w->t_s, res) * res, w->enc.data, w->enc.len, total,
                             r == 0 && w->unblocked);
        storage_wprof_add(w->s, w->wb, w->p->tenant, sw->token, sw->series_id, r,
                          floor_div(w->t_s, res) * res, w->p->profile_id, total, sw->piece);
    }
    return 0;
}

/* The encoding stored for span tree sp, folded to max_span_nodes: an
 * encoded one as it is when within them (ingest's), else made in w->tmp. */
static int span_encoding(wctx_t *w, const storage_span_tree_t *sp, const uint8_t **enc, size_t *len)
{
    const uint8_t *syms;
    size_t nsyms, nnodes, max = w->s->opts.max_span_nodes;
    calltree_t *tree = NULL, *capped = NULL;
    int rc = 0;
    if (sp->tree == NULL) {
        rc = calltree_encoded_header(sp->enc, sp->enc_len, &syms, &nsyms, &nnodes);
        if (rc != 0 || max == 0 || nnodes < max) {
            *enc = sp->enc;
            *len = sp->enc_len;
            return rc;
        }
        if ((tree = calltree_new(0)) == NULL) return ERR_NOMEM;
        rc = calltree_decode_merge(tree, sp->enc, sp->enc_len);
    }
    const calltree_t *t = sp->tree != NULL ? sp->tree : tree;
    buf_reset(&w->tmp);
    if (rc == 0) rc = storage_cap_tree(t, max, &capped);
    if (rc == 0) rc = calltree_encode(capped != NULL ? capped : t, &w->tmp);
    if (capped != NULL) atomic_fetch_add(&w->s->counters.capped_spans, 1);
    calltree_free(capped);
    calltree_free(tree);
    *enc = w->tmp.data;
    *len = w->tmp.len;
    return rc;
}

/* put_symbols for a tree held encoded: the symbols of its dictionary. */
static int put_encoded_symbols(wctx_t *w, const uint8_t *enc, size_t len)
{
    const uint8_t *syms;
    size_t nsyms, nnodes;
    uint32_t unused;
    int rc = calltree_encoded_header(enc, len, &syms, &nsyms, &nnodes);
    if (rc != 0) return errmsg_set(w->em, rc, "span tree: %s", err_message(rc));
    for (size_t i = 0; i < nsyms; i++) {
        uint64_t sym = calltree_encoded_sym(syms, i);
        if (u64map_get(&w->walked, sym, &unused)) continue;
        if ((rc = u64map_put(&w->walked, sym, 0)) < 0)
            return errmsg_set(w->em, rc, "out of memory");
        if ((rc = put_symbol(w, sym)) != 0) return rc;
    }
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    return memcmp(a, b, STORAGE_PSPAN_REC);
}

/* The profile's list key of its span trees in this series (w->plist,
 * sorted here, each tree once): one put for all of them. */
static int put_plist(wctx_t *w, const storage_series_write_t *sw, int64_t window)
{
    size_t n = w->plist.len / STORAGE_PSPAN_REC, m = 0;
    if (n == 0) return 0;
    uint8_t *r = w->plist.data;
    qsort(r, n, STORAGE_PSPAN_REC, cmp_rec);
    for (size_t i = 0; i < n; i++)
        if (m == 0 || memcmp(r + (m - 1) * STORAGE_PSPAN_REC, r + i * STORAGE_PSPAN_REC,
                             STORAGE_PSPAN_REC) != 0)
            memmove(r + m++ * STORAGE_PSPAN_REC, r + i * STORAGE_PSPAN_REC, STORAGE_PSPAN_REC);
    uint8_t pk[STORAGE_PSPAN_KEY_MAX];
    size_t pn =
        storage_pspan_prefix(w->p->tenant, sw->token, sw->series_id, window, w->p->profile_id, pk);
    rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_PSPAN_INDEX], (const char *)pk, pn,
                              (const char *)r, m * STORAGE_PSPAN_REC);
    return 0;
}

/* Span trees go to the 10 s window of the profile's time, so queries select
 * them by time and retention drops them like windows (filter.c). Each is a
 * member (this profile's id and tree) merged into the stored value, which
 * unites members by profile id (spanval.c), with its span_index entry; the
 * profile's list key in profile_span_index names them all (pspan_index.c). */
static int put_spans(wctx_t *w, const storage_series_write_t *sw)
{
    int64_t res = storage_resolutions[0], window = floor_div(w->t_s, res) * res;
    buf_reset(&w->plist);
    for (size_t i = 0; i < sw->nspans; i++) {
        const storage_span_tree_t *sp = &sw->spans[i];
        skey_t k;
        storage_key_span(&k, w->p->tenant, sp->kind, sp->id, sw->token, sw->series_id, window);
        if (storage_filter_expired(w->s, CF_SPANS, k.b, k.n, NULL, 0)) continue;
        const uint8_t *enc = NULL;
        size_t enc_len = 0;
        int rc = sp->unknown ? 0 : span_encoding(w, sp, &enc, &enc_len);
        buf_reset(&w->enc);
        if (rc == 0 && sp->unknown) /* no member: the stored tree is marked possibly short */
            rc = storage_spanval_encode_short(&w->enc);
        else if (rc == 0)
            rc = storage_spanval_encode_one(w->p->profile_id, enc, enc_len, &w->enc);
        if (rc != 0) return errmsg_set(w->em, rc, "span tree: %s", err_message(rc));
        /* the symbols of the tree handed over (put_symbol reuses w->tmp) */
        if (sp->unknown)
            rc = 0;
        else
            rc = sp->tree != NULL ? put_symbols(w, sp->tree)
                                  : put_encoded_symbols(w, sp->enc, sp->enc_len);
        if (rc != 0) return rc; /* put_symbols set em */
        rocksdb_writebatch_merge_cf(w->wb, w->s->cf[CF_SPANS], (const char *)k.b, k.n,
                                    (const char *)w->enc.data, w->enc.len);
        uint8_t ik[SKEY_MAX];
        storage_span_index_key(k.b, k.n, ik);
        rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_SPAN_INDEX], (const char *)ik, k.n, "", 0);
        uint8_t rec[STORAGE_PSPAN_REC] = {sp->kind}; /* member or unknown */
        be64_put(rec + 1, sp->id);
        if ((rc = buf_append(&w->plist, rec, sizeof rec)) != 0)
            return errmsg_set(w->em, rc, "out of memory");
    }
    return put_plist(w, sw, window);
}

/* A scaled value when the block just encoded (w->vec) is c times the base
 * tree put earlier in this batch (same token, time and profile id, so both
 * go and expire together): 1 and the value in w->tmp, else 0. */
static int put_scaled(wctx_t *w, const storage_series_write_t *sw, uint8_t hdr[PTREE_HEADER_LEN])
{
    int64_t c;
    if (!w->base_ok || w->base_series == sw->series_id ||
        !storage_sparse_factor(&w->base, &w->vec, &c))
        return 0;
    uint8_t v[PTREE_SCALED_MAX_LEN];
    hdr[1] |= PTREE_FLAG_SCALED;
    memcpy(v, hdr, PTREE_HEADER_LEN);
    storage_i64_put(v + PTREE_HEADER_LEN, (int64_t)w->base_series);
    size_t n = PTREE_HEADER_LEN + 8 + varint_put_u(v + PTREE_HEADER_LEN + 8, varint_zigzag(c));
    buf_reset(&w->tmp);
    return buf_append(&w->tmp, v, n) == 0 ? 1 : ERR_NOMEM;
}

/* The series' own share of this profile (the block just encoded into
 * w->enc), so GET /api/profiles/ID can answer exactly this profile: one put
 * in the same batch as its seen entry, keyed by time for the listing. A
 * share larger than max_profile_tree_bytes keeps only its entry (counted);
 * a profile already past profile retention stores nothing. In a range
 * being received, a streamed window may hold the profile too: its tree is
 * what the stream takes off that window's residual, so it is kept there
 * whatever its size or age (reads still treat an old one as expired). A
 * share proportional to the base tree stores only the factor and becomes
 * kept whatever its size (its base is kept); a plain kept one becomes the
 * base. Every kept tree is flagged PTREE_FLAG_UNBLOCKED: the series' 10 s
 * window reads it from here instead of from a block operand; a piece of a
 * split push's is flagged PTREE_FLAG_PIECE. */
static int put_ptree(wctx_t *w, const storage_series_write_t *sw, int64_t total)
{
    skey_t k;
    storage_key_ptree(&k, sw->token, w->p->tenant, sw->series_id, w->p->time_ns, w->p->profile_id);
    int receiving = storage_range_receiving(w->s, sw->token);
    w->unblocked = false;
    if (!receiving && storage_filter_expired(w->s, CF_PTREES, k.b, k.n, NULL, 0)) {
        w->base_ok = false;
        return 0;
    }
    uint8_t hdr[PTREE_HEADER_LEN];
    hdr[0] = PTREE_VERSION;
    hdr[1] = 0;
    storage_i64_put(hdr + 2, total);
    int rc = put_scaled(w, sw, hdr);
    if (rc == 0) {
        int keep = w->enc.len <= w->s->opts.max_profile_tree_bytes || receiving;
        if (!keep) atomic_fetch_add(&w->s->counters.oversize_ptrees, 1);
        hdr[1] = keep ? 0 : PTREE_FLAG_NO_TREE;
        buf_reset(&w->tmp);
        rc = buf_append(&w->tmp, hdr, sizeof hdr);
        if (rc == 0 && keep) rc = buf_append(&w->tmp, w->enc.data, w->enc.len);
        if (rc == 0 && keep) { /* the next series of this shape compares with this one */
            sparse_vec_t t = w->base;
            w->base = w->vec;
            w->vec = t;
            w->base_series = sw->series_id;
            w->base_token = sw->token;
        }
        w->base_ok = rc == 0 && keep;
    }
    if (rc < 0) return errmsg_set(w->em, rc, "profile tree: %s", err_message(rc));
    /* a kept tree (plain or scaled) is its 10 s window's share of it */
    w->unblocked = !(w->tmp.data[1] & PTREE_FLAG_NO_TREE);
    if (w->unblocked) w->tmp.data[1] |= PTREE_FLAG_UNBLOCKED;
    if (sw->piece) w->tmp.data[1] |= PTREE_FLAG_PIECE;
    rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_PTREES], (const char *)k.b, k.n,
                              (const char *)w->tmp.data, w->tmp.len);
    return 0;
}

/* The total of a series' values: its tree's and its pairs'. */
static int64_t series_total(const storage_series_write_t *sw)
{
    /* wraps as the tree's totals do */
    uint64_t sum = sw->tree != NULL ? (uint64_t)calltree_root_total(sw->tree) : 0;
    for (size_t i = 0; i < sw->npairs; i++)
        sum += (uint64_t)sw->vals[i];
    return (int64_t)sum;
}

static int put_one(wctx_t *w, const storage_series_write_t *sw)
{
    int64_t total = series_total(sw);
    uint8_t pv[STORAGE_PROFILE_VALUE_LEN];
    skey_t k;
    storage_profile_value(pv, w->p->time_ns, total, w->now);
    storage_key_profile(&k, sw->token, w->p->tenant, sw->series_id, w->p->profile_id);
    rocksdb_writebatch_put_cf(w->wb, w->s->cf[CF_PROFILES], (const char *)k.b, k.n,
                              (const char *)pv, sizeof pv);
    int rc = put_series(w, sw);
    if (rc != 0) return rc;
    /* a tree of the previous tree's shape has its symbols, just written or known */
    bool same = w->prev != NULL && sw->tree != NULL && calltree_same_shape(w->prev, sw->tree);
    if (!same && sw->tree != NULL) rc = put_symbols(w, sw->tree); /* a table names ids' symbols */
    if (rc != 0) return rc;                                       /* put_symbols set em */
    rc = encode_block(w, sw, same);
    if (rc == 0) rc = put_ptree(w, sw, total);
    if (rc == 0) rc = put_windows(w, sw, total);
    return rc != 0 ? rc : put_spans(w, sw);
}

static int validate(const storage_profile_write_t *p, errmsg_t *em)
{
    if (p == NULL) return errmsg_set(em, ERR_INVALID_ARGUMENT, "no profile");
    int rc = storage_check_tenant(p->tenant, em);
    if (rc != 0) return rc;
    if (p->nseries > STORAGE_MAX_SERIES_PER_WRITE)
        return errmsg_set(em, ERR_LIMIT, "%zu series in one profile (limit %d)", p->nseries,
                          STORAGE_MAX_SERIES_PER_WRITE);
    if (p->nseries > 0 && p->series == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "no series array");
    for (size_t i = 0; i < p->nseries; i++) {
        const storage_series_write_t *sw = &p->series[i];
        if (sw->labels == NULL ||
            ((sw->tree == NULL || sw->npairs > 0) && (sw->ids == NULL || sw->vals == NULL)) ||
            (sw->nspans > 0 && sw->spans == NULL))
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "series %zu: missing labels or tree", i);
        if (sw->npairs > UINT32_MAX - (sw->tree != NULL ? calltree_node_count(sw->tree) : 0))
            return errmsg_set(em, ERR_LIMIT, "series %zu: %zu stack-node ids (limit %u)", i,
                              sw->npairs, UINT32_MAX);
        if (sw->nspans > STORAGE_MAX_SPANS_PER_SERIES)
            return errmsg_set(em, ERR_LIMIT, "series %zu: %zu span trees (limit %u)", i, sw->nspans,
                              STORAGE_MAX_SPANS_PER_SERIES);
        for (size_t j = 0; j < sw->nspans; j++)
            if (sw->spans[j].tree == NULL && sw->spans[j].enc == NULL && !sw->spans[j].unknown)
                return errmsg_set(em, ERR_INVALID_ARGUMENT, "series %zu: span %zu has no tree", i,
                                  j);
    }
    return 0;
}

/* 1 if (series, profile id) is in the seen index, 0 if not, or ERR_IO. */
static int seen(storage_t *s, const storage_profile_write_t *p, const storage_series_write_t *sw,
                errmsg_t *em)
{
    skey_t k;
    char *err = NULL;
    storage_key_profile(&k, sw->token, p->tenant, sw->series_id, p->profile_id);
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_PROFILES], (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, em, "seen index lookup");
    if (rc == 0) rc = v != NULL;
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

typedef struct series_ref {
    uint64_t token, series_id;
    size_t idx;
} series_ref_t;

static int cmp_ref(const void *a, const void *b)
{
    const series_ref_t *x = a, *y = b;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    if (x->series_id != y->series_id) return x->series_id < y->series_id ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Marks in todo[] the series to write: not seen before and not a repeat of
 * an earlier entry of this same profile (which would count it twice). */
static int select_new(storage_t *s, const storage_profile_write_t *p, unsigned char *todo,
                      size_t *ntodo, errmsg_t *em)
{
    series_ref_t *refs = malloc(sizeof *refs * (p->nseries ? p->nseries : 1));
    if (refs == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->nseries; i++)
        refs[i] = (series_ref_t){p->series[i].token, p->series[i].series_id, i};
    qsort(refs, p->nseries, sizeof *refs, cmp_ref);
    int rc = 0;
    *ntodo = 0;
    for (size_t i = 0; i < p->nseries && rc >= 0; i++) {
        if (i > 0 && refs[i].token == refs[i - 1].token &&
            refs[i].series_id == refs[i - 1].series_id)
            continue;
        rc = seen(s, p, &p->series[refs[i].idx], em);
        if (rc == 0) {
            todo[refs[i].idx] = 1;
            (*ntodo)++;
        }
    }
    free(refs);
    return rc < 0 ? rc : 0;
}

/* The series to write given by stack-node ids name the current node
 * generation and ids their table holds (tables locked: neither changes
 * before the commit). Checked before anything is staged. */
static int check_pairs(wctx_t *w, const unsigned char *todo)
{
    uint64_t gen = storage_node_generation(w->s);
    for (size_t i = 0; i < w->p->nseries; i++) {
        const storage_series_write_t *sw = &w->p->series[i];
        if (!todo[i] || (sw->tree != NULL && sw->npairs == 0)) continue;
        if (sw->gen != gen)
            return errmsg_set(w->em, ERR_CONFLICT,
                              "series %zu: stack-node ids of node generation %llu, now %llu", i,
                              (unsigned long long)sw->gen, (unsigned long long)gen);
        nodetab_t *t = tab_of(w, sw->token);
        uint32_t count = t != NULL ? storage_nodetab_count(t) : 0;
        for (size_t j = 0; j < sw->npairs; j++)
            if (sw->ids[j] >= count)
                return errmsg_set(w->em, ERR_INVALID_ARGUMENT,
                                  "series %zu: stack-node id %u not in its table (%u ids)", i,
                                  sw->ids[j], count);
    }
    return 0;
}

static int build_and_commit(wctx_t *w, const unsigned char *todo)
{
    int rc = 0;
    for (size_t i = 0; i < w->p->nseries && rc == 0; i++)
        if (todo[i]) rc = put_one(w, &w->p->series[i]);
    for (size_t i = 0; i < w->ntabs && rc == 0; i++)
        if ((rc = storage_nodetab_stage(w->s, w->tabs[i], w->wb, &w->tmp)) != 0)
            errmsg_set(w->em, rc, "stack-node table: %s", err_message(rc));
    if (rc != 0) return rc;
    rc = storage_tseries_reserve(w->s, w->p->tenant, w->new_series, w->em);
    if (rc != 0) return rc;
    char *err = NULL;
    rocksdb_write(w->s->db, w->s->wopts, w->wb, &err);
    rc = storage_rocks_err(err, w->em, "write profile");
    if (rc != 0) {
        storage_tseries_release(w->s, w->p->tenant, w->new_series);
        return rc;
    }
    /* Committed: now the caches may say so. */
    for (size_t i = 0; i < w->syms.cap; i++)
        if (u64map_used(&w->syms, i))
            storage_idcache_add(&w->s->symbol_cache, w->syms.slots[i].key);
    for (size_t i = 0; i < w->series.cap; i++)
        if (u64map_used(&w->series, i))
            storage_idcache_add(&w->s->series_cache, w->series.slots[i].key);
    return 0;
}

/* Locks the node tables of the series to write, in ascending token order
 * (the order every writer uses, so two writers never deadlock). */
static int lock_tables(wctx_t *w, const unsigned char *todo)
{
    const storage_profile_write_t *p = w->p;
    uint64_t *tokens = malloc(sizeof *tokens * (p->nseries ? p->nseries : 1));
    w->tabs = malloc(sizeof *w->tabs * (p->nseries ? p->nseries : 1));
    if (tokens == NULL || w->tabs == NULL) {
        free(tokens);
        return errmsg_set(w->em, ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < p->nseries; i++)
        if (todo[i]) tokens[n++] = p->series[i].token;
    qsort(tokens, n, sizeof *tokens, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0 && tokens[i] == tokens[i - 1]) continue;
        rc = storage_nodetab_acquire_append(w->s, tokens[i], p->tenant, &w->tabs[w->ntabs], w->em);
        if (rc == 0) w->ntabs++;
    }
    free(tokens);
    return rc;
}

static void unlock_tables(wctx_t *w, int failed)
{
    for (size_t i = w->ntabs; i-- > 0;)
        storage_nodetab_release(w->s, w->tabs[i], failed);
    free(w->tabs);
    w->tabs = NULL;
    w->ntabs = 0;
}

static uint64_t stripe_of(const uint8_t id[16])
{
    return storage_mix64(be64_get(id) ^ be64_get(id + 8)) % STORAGE_STRIPES;
}

int storage_write_profile(storage_t *s, const storage_profile_write_t *p, size_t *written,
                          errmsg_t *em)
{
    return storage_write_profile_sized(s, p, written, NULL, em);
}

int storage_write_profile_sized(storage_t *s, const storage_profile_write_t *p, size_t *written,
                                size_t *bytes, errmsg_t *em)
{
    if (written != NULL) *written = 0;
    if (bytes != NULL) *bytes = 0;
    int rc = validate(p, em);
    if (rc != 0 || p->nseries == 0) return rc;
    unsigned char *todo = calloc(p->nseries, 1);
    if (todo == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    wctx_t w = {.s = s, .p = p, .em = em, .now = storage_now(s)};
    w.tenant_hash = hash_bytes64(p->tenant, strlen(p->tenant));
    w.t_s = floor_div(p->time_ns, 1000000000);
    buf_init(&w.enc, STORAGE_VALUE_MAX);
    buf_init(&w.tmp, STORAGE_VALUE_MAX);
    buf_init(&w.plist, STORAGE_VALUE_MAX);
    pthread_mutex_t *mu = &s->stripes[stripe_of(p->profile_id)];
    size_t ntodo = 0;

    /* RocksDB counts every key comparison and memtable step in a per-thread
     * perf context unless told not to: a thread-local access through the
     * shared library's TLS per count (4 % of a push's instructions, most of
     * them in the memtable inserts' key comparisons). Nothing reads them. */
    rocksdb_set_perf_level(rocksdb_disable);
    pthread_mutex_lock(mu);
    rc = select_new(s, p, todo, &ntodo, em);
    if (rc == 0 && ntodo > 0) {
        w.wb = rocksdb_writebatch_create();
        pthread_rwlock_rdlock(&s->symgc.lock); /* no symbol sweep step meanwhile */
        rc = lock_tables(&w, todo);
        int refused = rc == 0 ? check_pairs(&w, todo) : 0; /* nothing staged: tables intact */
        if (rc == 0 && refused == 0) rc = build_and_commit(&w, todo);
        if (rc == 0 && bytes != NULL) rocksdb_writebatch_data(w.wb, bytes);
        unlock_tables(&w, rc != 0);
        if (refused != 0) rc = refused;
        pthread_rwlock_unlock(&s->symgc.lock);
        rocksdb_writebatch_destroy(w.wb);
    }
    pthread_mutex_unlock(mu);

    if (rc == 0) {
        atomic_fetch_add(&s->counters.series_written, ntodo);
        atomic_fetch_add(&s->counters.duplicates, p->nseries - ntodo);
        if (written != NULL) *written = ntodo;
    }
    free(todo);
    u64map_free(&w.syms);
    u64map_free(&w.walked);
    u64map_free(&w.series);
    storage_claims_free(&w.claims);
    free(w.map);
    free(w.order);
    free(w.order_tmp);
    free(w.bfs);
    free(w.got);
    storage_sparse_free(&w.vec);
    storage_sparse_free(&w.base);
    buf_free(&w.enc);
    buf_free(&w.tmp);
    buf_free(&w.plist);
    return rc;
}
