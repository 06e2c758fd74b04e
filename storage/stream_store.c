/* stream_store.c — storing a window received whole (storage.h,
 * storage_stream_store; stream.c is the sending side).
 *
 * The residual tree is mapped onto this store's stack-node table (ids are
 * local to a store) and goes into ONE WriteBatch with the series' labels and
 * postings, its symbols, the untreed profiles' seen entries and the window's
 * marker in `streamed`; the marker is checked first under the stripe mutexes
 * of the untreed profile ids, so a window is added once, and a live write of
 * one of those profiles either sees its seen entry (and skips) or is seen
 * here (and its total comes off the residual, its tree too: a live write
 * into a range being received keeps it, storage_range_clear). A fill's
 * window (only_absent) is looked up again under the stack-node table lock,
 * the one a write holds until its batch commits: one that landed since the
 * fill looked keeps the copy out.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/varint.h"
#include "storage/storage_int.h"

typedef struct sctx {
    storage_t *s;
    const storage_stream_window_t *w;
    rocksdb_writebatch_t *wb;
    nodetab_t *tab;
    const symtab_t *symbols;
    uint64_t tenant_hash;
    buf_t tmp;
    errmsg_t *em;
    /* the negated trees of untreed profiles this store counted and kept:
     * taken off the residual block (put_untreed) */
    sparse_vec_t minus, one, sum;
    /* the residual's window profiles less the untreed ones this store
     * counted on its own (ok 0: none sent, or they do not add up) */
    storage_wprof_edit_t wp;
} sctx_t;

/* The key of (tenant, symbol) in the symbol cache and the symbol sweep. */
static uint64_t symbol_key(const sctx_t *x, uint64_t sym)
{
    return storage_symgc_key(x->tenant_hash, sym);
}

static int cmp_pair(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The residual over this store's node ids, encoded into out. */
static int encode_residual(sctx_t *x, buf_t *out)
{
    const calltree_t *t = x->w->residual;
    size_t n = t ? calltree_node_count(t) : 0;
    uint32_t *map = malloc((n ? n : 1) * sizeof *map);
    uint64_t *pairs = malloc((n ? n : 1) * sizeof *pairs);
    sparse_vec_t v;
    storage_sparse_init(&v);
    int rc = map && pairs ? storage_sparse_reserve(&v, n ? n : 1) : ERR_NOMEM;
    const calltree_node_t *nd = n ? calltree_nodes(t) : NULL;
    const uint64_t *tsym = n ? calltree_syms(t) : NULL;
    const int64_t *self = n ? calltree_selves(t) : NULL;
    size_t k = 0;
    if (n > 0) map[0] = 0;
    for (uint32_t i = 1; rc == 0 && i < n; i++) { /* a parent precedes its children */
        uint32_t pm = map[nd[i].parent];
        rc = storage_nodetab_child(x->s, x->tab, pm, tsym[nd[i].sym_index], x->wb, &map[i]);
        if (rc == ERR_LIMIT) rc = storage_nodetab_other(x->s, x->tab, pm, &map[i]);
    }
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        if (self[i] != 0) pairs[k++] = (uint64_t)map[i] << 32 | i;
    if (rc == 0) qsort(pairs, k, sizeof *pairs, cmp_pair);
    for (size_t j = 0; rc == 0 && j < k; j++) {
        uint32_t id = (uint32_t)(pairs[j] >> 32);
        int64_t val = self[(uint32_t)pairs[j]];
        if (v.n > 0 && v.id[v.n - 1] == id) {
            v.val[v.n - 1] = (int64_t)((uint64_t)v.val[v.n - 1] + (uint64_t)val);
        } else {
            v.id[v.n] = id;
            v.val[v.n++] = val;
        }
    }
    if (rc == 0) rc = storage_sparse_encode(&v, out);
    storage_sparse_free(&v);
    free(map);
    free(pairs);
    return rc;
}

static int put_symbol(void *ctx, uint64_t sym)
{
    sctx_t *x = ctx;
    int touched = storage_symgc_touch(x->s, symbol_key(x, sym)); /* a sweep now keeps it */
    if (touched != 0) return errmsg_set(x->em, touched, "out of memory");
    if (storage_idcache_has(&x->s->symbol_cache, symbol_key(x, sym))) return 0; /* stored */
    const char *name, *file;
    if (x->symbols == NULL || !symtab_get(x->symbols, sym, &name, &file))
        return errmsg_set(x->em, ERR_INVALID_ARGUMENT,
                          "stream: symbol %016llx referenced but not sent",
                          (unsigned long long)sym);
    int rc = storage_symbol_value(&x->tmp, name, file);
    if (rc != 0) return errmsg_set(x->em, rc, "stream: symbol value");
    skey_t k;
    storage_key_symbol(&k, x->w->tenant, sym);
    rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_SYMBOLS], (const char *)k.b, k.n,
                              (const char *)x->tmp.data, x->tmp.len);
    return 0;
}

/* Labels and postings (puts of what may be there: harmless); *is_new when
 * the store did not hold the series. */
static int put_series(sctx_t *x, const labels_t *labels, int *is_new)
{
    const storage_stream_window_t *w = x->w;
    skey_t k;
    storage_key_series(&k, w->token, w->tenant, w->series_id);
    char *err = NULL;
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(x->s->db, x->s->ropts, x->s->cf[CF_SERIES],
                                                       (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, x->em, "series lookup");
    *is_new = rc == 0 && v == NULL;
    rocksdb_pinnableslice_destroy(v);
    if (rc != 0 || !*is_new) return rc;
    buf_reset(&x->tmp);
    if ((rc = labels_encode(labels, &x->tmp)) != 0) return errmsg_set(x->em, rc, "series labels");
    rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_SERIES], (const char *)k.b, k.n,
                              (const char *)x->tmp.data, x->tmp.len);
    for (size_t i = 0; i < labels_count(labels); i++) {
        rc = storage_key_posting(&x->tmp, w->tenant, labels_name(labels, i),
                                 labels_value(labels, i), w->token, w->series_id);
        if (rc != 0)
            return errmsg_set(x->em, ERR_LIMIT, "label %s too long", labels_name(labels, i));
        rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_POSTINGS], (const char *)x->tmp.data,
                                  x->tmp.len, "", 0);
    }
    return 0;
}

/* Takes the kept tree of profile_trees value b (n bytes, under key k, of
 * a profile at time_ns), if it has one, off x->minus. A scaled tree past
 * profile retention whose base compaction dropped first is taken as
 * dropped too, as the plain tree would be a moment later: the stream goes
 * on rather than failing on it every time. */
static int minus_tree(sctx_t *x, const skey_t *k, int64_t time_ns, const char *b, size_t n)
{
    if (n < PTREE_HEADER_LEN || b[0] != PTREE_VERSION || (b[1] & PTREE_FLAG_NO_TREE)) return 0;
    int rc = storage_ptree_vec(x->s, x->s->ropts, k->b, k->n, (const uint8_t *)b, n, &x->one);
    if (rc == ERR_CORRUPT && (b[1] & PTREE_FLAG_SCALED) && storage_ptree_expired(x->s, time_ns))
        return 0;
    if (rc != 0) return errmsg_set(x->em, rc, "stream: profile tree: %s", err_message(rc));
    for (size_t i = 0; i < x->one.n; i++)
        x->one.val[i] = (int64_t)(0 - (uint64_t)x->one.val[i]);
    rc = storage_sparse_add(&x->minus, &x->one, &x->sum);
    return rc != 0 ? errmsg_set(x->em, rc, "out of memory") : 0;
}

/* How this store knows an untreed profile: 0 not at all, 1 counted on its
 * own (a write; its kept tree, if any, goes to x->minus), 2 recorded by a
 * streamed window (counted in residuals). */
static int known(sctx_t *x, const storage_stream_profile_t *p, int *how)
{
    const storage_stream_window_t *w = x->w;
    skey_t k;
    storage_key_ptree(&k, w->token, w->tenant, w->series_id, p->time_ns, p->profile_id);
    char *err = NULL;
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(x->s->db, x->s->ropts, x->s->cf[CF_PTREES],
                                                       (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, x->em, "profile tree lookup");
    *how = 0;
    if (rc == 0 && v != NULL) {
        size_t n;
        const char *b = rocksdb_pinnableslice_value(v, &n);
        *how = n >= 2 && (b[1] & PTREE_FLAG_STREAMED) ? 2 : 1;
        if (*how == 1) rc = minus_tree(x, &k, p->time_ns, b, n);
    }
    rocksdb_pinnableslice_destroy(v);
    if (rc != 0 || *how != 0) return rc;
    storage_key_profile(&k, w->token, w->tenant, w->series_id, p->profile_id);
    v = rocksdb_get_pinned_cf(x->s->db, x->s->ropts, x->s->cf[CF_PROFILES], (const char *)k.b, k.n,
                              &err);
    rc = storage_rocks_err(err, x->em, "seen index lookup");
    if (rc == 0 && v != NULL) *how = 1;
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

/* Untreed profiles: recorded as seen and listed (header only, marked
 * streamed) unless this store knows them; the total of one it counted on
 * its own comes off *total (the residual counts it too). */
static int put_untreed(sctx_t *x, int64_t *total)
{
    const storage_stream_window_t *w = x->w;
    int64_t now = storage_now(x->s);
    for (size_t i = 0; i < w->nuntreed; i++) {
        const storage_stream_profile_t *p = &w->untreed[i];
        int how = 0, rc = known(x, p, &how);
        if (rc != 0) return rc;
        if (how == 1) *total = (int64_t)((uint64_t)*total - (uint64_t)p->total);
        if (how == 1 && x->wp.ok) storage_wprof_edit_remove(&x->wp, p->profile_id, p->total);
        if (how != 0) continue;
        skey_t k;
        uint8_t pv[STORAGE_PROFILE_VALUE_LEN], hdr[PTREE_HEADER_LEN];
        storage_key_profile(&k, w->token, w->tenant, w->series_id, p->profile_id);
        storage_profile_value(pv, p->time_ns, p->total, now);
        rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_PROFILES], (const char *)k.b, k.n,
                                  (const char *)pv, sizeof pv);
        storage_key_ptree(&k, w->token, w->tenant, w->series_id, p->time_ns, p->profile_id);
        hdr[0] = PTREE_VERSION;
        hdr[1] = PTREE_FLAG_NO_TREE | PTREE_FLAG_STREAMED;
        storage_i64_put(hdr + 2, p->total);
        rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_PTREES], (const char *)k.b, k.n,
                                  (const char *)hdr, sizeof hdr);
    }
    return 0;
}

/* The residual block enc (this store's node ids) less x->minus. */
static int residual_minus(sctx_t *x, buf_t *enc)
{
    int rc = 0;
    if (enc->len > 0)
        rc = storage_sparse_decode(enc->data, enc->len, &x->one);
    else
        x->one.n = 0;
    if (rc == 0) rc = storage_sparse_add(&x->one, &x->minus, &x->sum);
    buf_reset(enc);
    if (rc == 0) rc = storage_sparse_encode(&x->one, enc);
    return rc != 0 ? errmsg_set(x->em, rc, "stream: residual block: %s", err_message(rc)) : 0;
}

/* The residual's window profiles onto the window (k), which then counts
 * what the source's did: the kept profiles, stored before, counted their
 * own. */
static int put_wprof(sctx_t *x, const skey_t *k)
{
    if (storage_filter_expired(x->s, CF_WPROFILES, k->b, k->n, NULL, 0)) return 0;
    buf_t v;
    buf_init(&v, STORAGE_VALUE_MAX);
    int rc = storage_wprof_edit_encode(&x->wp, &v);
    if (rc == 0 && v.len > 0)
        rocksdb_writebatch_merge_cf(x->wb, x->s->cf[CF_WPROFILES], (const char *)k->b, k->n,
                                    (const char *)v.data, v.len);
    buf_free(&v);
    return rc != 0 ? errmsg_set(x->em, rc, "out of memory") : 0;
}

/* Everything of the window into the batch, then commit. Table held. */
static int build_and_commit(sctx_t *x, const labels_t *labels)
{
    const storage_stream_window_t *w = x->w;
    buf_t enc;
    buf_init(&enc, STORAGE_VALUE_MAX);
    int64_t total = w->total;
    int is_new = 0, rc = encode_residual(x, &enc);
    if (rc != 0) errmsg_set(x->em, rc, "stream: residual block: %s", err_message(rc));
    if (rc == 0 && w->residual != NULL) rc = calltree_for_each_symbol(w->residual, put_symbol, x);
    if (rc == 0) rc = put_series(x, labels, &is_new);
    if (rc == 0 && w->wprof_len > 0 &&
        storage_wprof_edit_init(&x->wp, w->wprof, w->wprof_len) == ERR_NOMEM)
        rc = errmsg_set(x->em, ERR_NOMEM, "out of memory");
    if (rc == 0) rc = put_untreed(x, &total);
    if (rc == 0 && x->minus.n > 0) rc = residual_minus(x, &enc);
    skey_t k;
    storage_key_window(&k, w->token, w->tenant, w->series_id, w->res, w->window_s);
    uint8_t mv[8];
    storage_i64_put(mv, storage_now(x->s));
    /* through the one function that adds to windows: the service aggregate
     * gets the residual too, so whole-service reads see the streamed data */
    storage_claims_t claims = {0};
    uint64_t agg = 0;
    if (rc == 0 && (enc.len > 0 || total != 0))
        rc = storage_aggregate_target(x->s, x->wb, &claims, w->tenant, w->token, w->series_id,
                                      labels, &agg, x->em);
    storage_claims_free(&claims); /* one series a batch: nothing else to tell */
    if (rc == 0 && (enc.len > 0 || total != 0))
        storage_window_merge(x->s, x->wb, w->tenant, w->token, w->series_id, agg, w->res,
                             w->window_s, enc.data, enc.len, total, 0);
    if (rc == 0 && x->wp.ok && x->wp.total == total) rc = put_wprof(x, &k);
    storage_wprof_edit_free(&x->wp);
    if (rc == 0 && w->add_to == NULL) /* an addition to a window marks nothing */
        rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_STREAMED], (const char *)k.b, k.n,
                                  (const char *)mv, sizeof mv);
    if (rc == 0 && (rc = storage_nodetab_stage(x->s, x->tab, x->wb, &x->tmp)) != 0)
        errmsg_set(x->em, rc, "stack-node table: %s", err_message(rc));
    buf_free(&enc);
    size_t reserved = is_new && x->s->tseries.on ? 1 : 0;
    if (rc == 0 && reserved) rc = storage_tseries_reserve(x->s, w->tenant, 1, x->em);
    if (rc != 0) return rc;
    char *err = NULL;
    rocksdb_write(x->s->db, x->s->wopts, x->wb, &err);
    rc = storage_rocks_err(err, x->em, "stream: write window");
    if (rc != 0 && reserved) storage_tseries_release(x->s, w->tenant, 1);
    return rc;
}

/* After the commit: the window's symbols are stored (cache, as write.c). */
static int cache_symbol(void *ctx, uint64_t sym)
{
    sctx_t *x = ctx;
    storage_idcache_add(&x->s->symbol_cache, symbol_key(x, sym));
    return 0;
}

static uint64_t stripe_of(const uint8_t id[16])
{
    return storage_mix64(be64_get(id) ^ be64_get(id + 8)) % STORAGE_STRIPES;
}

/* For an addition (w->add_to), with the series' stack-node table held:
 * 1 when the window's window_profiles value is still w->add_to, 0 when
 * not (a write landed since the caller compared), or a negative error. */
static int still_same(storage_t *s, const storage_stream_window_t *w, errmsg_t *em)
{
    buf_t v;
    buf_init(&v, STORAGE_VALUE_MAX);
    int64_t total = 0;
    int rc = storage_window_profiles_value(s, w->tenant, w->token, w->series_id, w->res,
                                           w->window_s, &v, &total);
    int same = rc == 1 && v.len == w->add_to_len && memcmp(v.data, w->add_to, v.len) == 0;
    buf_free(&v);
    return rc < 0 ? errmsg_set(em, rc, "window profiles lookup failed") : same;
}

/* For a fill (w->only_absent), with the series' stack-node table held:
 * every write of a window of the series commits under that lock (write.c,
 * build_and_commit here), so a window absent now stays so until this store
 * commits. 1 when absent, 0 when held, or a negative error. */
static int still_absent(storage_t *s, const storage_stream_window_t *w, errmsg_t *em)
{
    int64_t total = 0;
    int has =
        storage_window_total(s, w->tenant, w->token, w->series_id, w->res, w->window_s, &total);
    if (has < 0) return errmsg_set(em, has, "window total lookup failed");
    return !has;
}

int storage_stream_store(storage_t *s, const storage_stream_window_t *w, const labels_t *labels,
                         const symtab_t *symbols, int *stored, errmsg_t *em)
{
    return storage_stream_store_sized(s, w, labels, symbols, stored, NULL, em);
}

int storage_stream_store_sized(storage_t *s, const storage_stream_window_t *w,
                               const labels_t *labels, const symtab_t *symbols, int *stored,
                               size_t *bytes, errmsg_t *em)
{
    *stored = 0;
    if (bytes != NULL) *bytes = 0;
    int rc = storage_check_tenant(w->tenant, em);
    if (rc != 0) return rc;
    if (w->res < 0 || w->res >= STORAGE_RESOLUTION_COUNT || labels == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: bad resolution or no labels");
    /* the stripes of the untreed ids, in index order (write.c holds one at a time) */
    uint8_t held[STORAGE_STRIPES] = {0};
    for (size_t i = 0; i < w->nuntreed; i++)
        held[stripe_of(w->untreed[i].profile_id)] = 1;
    for (int i = 0; i < STORAGE_STRIPES; i++)
        if (held[i]) pthread_mutex_lock(&s->stripes[i]);
    rc = w->add_to != NULL
             ? 0
             : storage_stream_marked(s, w->tenant, w->token, w->series_id, w->res, w->window_s);
    if (rc < 0) errmsg_set(em, rc, "stream marker lookup failed");
    if (rc == 0) {
        sctx_t x = {.s = s, .w = w, .symbols = symbols, .em = em};
        x.tenant_hash = hash_bytes64(w->tenant, strlen(w->tenant));
        buf_init(&x.tmp, STORAGE_VALUE_MAX);
        storage_sparse_init(&x.minus);
        storage_sparse_init(&x.one);
        storage_sparse_init(&x.sum);
        x.wb = rocksdb_writebatch_create();
        pthread_rwlock_rdlock(&s->symgc.lock); /* no symbol sweep step meanwhile (write.c) */
        rc = storage_nodetab_acquire_append(s, w->token, w->tenant, &x.tab, em);
        int take = rc != 0             ? 1
                   : w->add_to != NULL ? still_same(s, w, em)
                   : w->only_absent    ? still_absent(s, w, em)
                                       : 1;
        if (rc == 0 && take <= 0) {
            rc = take;
            storage_nodetab_release(s, x.tab, 0);
        } else if (rc == 0) {
            rc = build_and_commit(&x, labels);
            if (rc == 0 && bytes != NULL) rocksdb_writebatch_data(x.wb, bytes);
            storage_nodetab_release(s, x.tab, rc != 0);
        }
        pthread_rwlock_unlock(&s->symgc.lock);
        rocksdb_writebatch_destroy(x.wb);
        buf_free(&x.tmp);
        storage_sparse_free(&x.minus);
        storage_sparse_free(&x.one);
        storage_sparse_free(&x.sum);
        if (rc == 0 && take > 0 && w->residual != NULL)
            rc = calltree_for_each_symbol(w->residual, cache_symbol, &x);
        if (rc == 0 && take > 0) *stored = 1;
    } else if (rc == 1) {
        rc = 0;
    }
    for (int i = STORAGE_STRIPES; i-- > 0;)
        if (held[i]) pthread_mutex_unlock(&s->stripes[i]);
    return rc;
}
