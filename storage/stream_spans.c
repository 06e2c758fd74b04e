/* stream_spans.c — span/trace trees of a token range for a node that gains
 * it (storage.h; docs/cluster.md, "Streaming whole windows"), and the
 * token-first index (`span_index`) that finds them.
 *
 * Span trees are not kept per profile in `profile_trees` (a fetched
 * profile brings only its members of them, profile_spans.c): the gaining
 * node receives each stored tree of its ranges whole and merges it as a streamed operand
 * (spanval.c), united with its own by profile id: a live write that reached it meanwhile stays, one
 * the source's tree also holds counts once, and a stream resumed after a
 * crash merges the same members again and changes nothing.
 *
 * `spans` keys are tenant | kind | id | token | ... (for the query's
 * lookup of one span id), so a token range is spread over the whole family;
 * `span_index` holds the same keys with the token first, written in the
 * same batch as every tree, so a stream or a clear of a range reads only
 * that range.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* tenant length, kind, id, token, series, window (plus the tenant) */
#define SPAN_KEY_FIXED (1 + 1 + 8 + 8 + 8 + 8)

uint64_t storage_span_key_token(const uint8_t *k, size_t kn, int *ok)
{
    *ok = kn >= 1 && k[0] >= 1 && k[0] <= STORAGE_TENANT_MAX && kn == SPAN_KEY_FIXED + (size_t)k[0];
    return *ok ? be64_get(k + 1 + k[0] + 1 + 8) : 0;
}

void storage_span_index_key(const uint8_t *k, size_t kn, uint8_t *out)
{
    size_t L = k[0];
    memcpy(out, k + 1 + L + 1 + 8, 8); /* token */
    out[8] = (uint8_t)L;
    memcpy(out + 9, k + 1, L + 1 + 8);               /* tenant, kind, id */
    memcpy(out + 18 + L, k + 18 + L, kn - (18 + L)); /* series, window */
}

void storage_span_key_of_index(const uint8_t *ik, size_t kn, uint8_t *out)
{
    size_t L = ik[8];
    out[0] = (uint8_t)L;
    memcpy(out + 1, ik + 9, L + 1 + 8);
    memcpy(out + 1 + L + 1 + 8, ik, 8);
    memcpy(out + 18 + L, ik + 18 + L, kn - (18 + L));
}

/* A well-formed span_index key (the length of a spans key with a window). */
static int index_key_ok(const uint8_t *ik, size_t kn)
{
    return kn >= 9 && ik[8] >= 1 && ik[8] <= STORAGE_TENANT_MAX &&
           kn == SPAN_KEY_FIXED + (size_t)ik[8];
}

#define REBUILD_BATCH 4096

int storage_span_index_rebuild(storage_t *s, errmsg_t *em)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SPANS]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    size_t n = 0, total = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        int ok;
        storage_span_key_token(k, kn, &ok);
        if (!ok) continue; /* no window: never read, compaction drops it */
        uint8_t ik[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
        storage_span_index_key(k, kn, ik);
        rocksdb_writebatch_put_cf(wb, s->cf[CF_SPAN_INDEX], (const char *)ik, kn, "", 0);
        total++;
        if (++n < REBUILD_BATCH) continue;
        char *err = NULL;
        rocksdb_write(s->db, s->wopts, wb, &err);
        rc = storage_rocks_err(err, em, "span index rebuild");
        rocksdb_writebatch_clear(wb);
        n = 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, em, "span index rebuild: scan");
    if (rc == 0 && ioerr == 0 && n > 0) {
        rocksdb_write(s->db, s->wopts, wb, &err);
        rc = storage_rocks_err(err, em, "span index rebuild");
    }
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    if (rc == 0 && ioerr == 0) log_info("storage", "span index: %zu span trees indexed", total);
    return rc != 0 ? rc : ioerr;
}

/* One read of span_index over [lo, hi] and a point read of each tree, both
 * at one snapshot. */
int storage_stream_spans(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                         size_t after_len, storage_span_stream_fn fn, void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    uint8_t hk[8], lk[8];
    be64_put(lk, lo);
    be64_put(hk, hi + 1);
    if (hi != UINT64_MAX) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hk, 8);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SPAN_INDEX]);
    uint8_t ak[SPAN_KEY_FIXED + STORAGE_TENANT_MAX], k[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
    int ok = 0;
    if (after_len > 0) storage_span_key_token(after, after_len, &ok);
    if (ok) storage_span_index_key(after, after_len, ak);
    if (ok && be64_get(ak) >= lo)
        rocksdb_iter_seek(it, (const char *)ak, after_len);
    else
        rocksdb_iter_seek(it, (const char *)lk, 8);
    int rc = 0;
    for (; rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (ok && kn == after_len && memcmp(ik, ak, kn) == 0) continue;
        if (!index_key_ok(ik, kn) || be64_get(ik) > hi) continue;
        storage_span_key_of_index(ik, kn, k);
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        char *err = NULL;
        rocksdb_pinnableslice_t *v =
            rocksdb_get_pinned_cf(s->db, ro, s->cf[CF_SPANS], (const char *)k, kn, &err);
        rc = storage_rocks_err(err, NULL, "stream: span tree");
        if (rc != 0 || v == NULL) continue; /* an entry whose tree is gone */
        char tenant[STORAGE_TENANT_MAX + 1];
        memcpy(tenant, k + 1, k[0]);
        tenant[k[0]] = 0;
        const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &vn);
        rc = fn(ctx, k, kn, tenant, val, vn);
        rocksdb_pinnableslice_destroy(v);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "stream: span index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    return ioerr != 0 ? ioerr : rc;
}

int storage_span_ids(storage_t *s, const char *tenant, uint64_t token, uint8_t kind, int64_t from_s,
                     int64_t until_s, storage_span_id_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    size_t L = strlen(tenant);
    if (rc != 0 || from_s >= until_s) return rc;
    uint8_t lo[8 + 1 + STORAGE_TENANT_MAX + 1], hi[sizeof lo];
    be64_put(lo, token);
    lo[8] = (uint8_t)L;
    memcpy(lo + 9, tenant, L);
    lo[9 + L] = kind;
    size_t pn = 10 + L;
    memcpy(hi, lo, pn);
    size_t hn = storage_prefix_successor(hi, pn);
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    if (hn > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hn);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SPAN_INDEX]);
    uint8_t k[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
    for (rocksdb_iter_seek(it, (const char *)lo, pn); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        const uint8_t *ik = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (kn < pn || memcmp(ik, lo, pn) != 0) break;
        if (!index_key_ok(ik, kn)) continue;
        int64_t w = storage_time_decode(ik + 26 + L);
        if (w < from_s || w >= until_s) continue;
        storage_span_key_of_index(ik, kn, k);
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        rc = fn(ctx, be64_get(ik + 10 + L), be64_get(ik + 18 + L), w);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "span ids: span index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    return ioerr != 0 ? ioerr : rc;
}

typedef struct sput {
    storage_t *s;
    const char *tenant;
    uint64_t tenant_hash;
    const symtab_t *symbols;
    rocksdb_writebatch_t *wb;
    buf_t tmp;
    errmsg_t *em;
} sput_t;

static int put_symbol(void *ctx, uint64_t sym)
{
    sput_t *x = ctx;
    int touched = storage_symgc_touch(x->s, storage_symgc_key(x->tenant_hash, sym));
    if (touched != 0) return errmsg_set(x->em, touched, "out of memory"); /* a sweep keeps it */
    const char *name, *file;
    if (x->symbols == NULL || !symtab_get(x->symbols, sym, &name, &file))
        return errmsg_set(x->em, ERR_INVALID_ARGUMENT,
                          "stream: span symbol %016llx referenced but not sent",
                          (unsigned long long)sym);
    int rc = storage_symbol_value(&x->tmp, name, file);
    if (rc != 0) return errmsg_set(x->em, rc, "stream: symbol value");
    skey_t k;
    storage_key_symbol(&k, x->tenant, sym);
    rocksdb_writebatch_put_cf(x->wb, x->s->cf[CF_SYMBOLS], (const char *)k.b, k.n,
                              (const char *)x->tmp.data, x->tmp.len);
    return 0;
}

int storage_stream_span_put(storage_t *s, const char *tenant, const uint8_t *key, size_t klen,
                            const uint8_t *value, size_t vlen, const symtab_t *symbols,
                            errmsg_t *em)
{
    return storage_stream_span_put_sized(s, tenant, key, klen, value, vlen, symbols, NULL, em);
}

int storage_stream_span_put_sized(storage_t *s, const char *tenant, const uint8_t *key, size_t klen,
                                  const uint8_t *value, size_t vlen, const symtab_t *symbols,
                                  size_t *bytes, errmsg_t *em)
{
    if (bytes != NULL) *bytes = 0;
    int rc = storage_check_tenant(tenant, em), ok;
    if (rc != 0) return rc;
    storage_span_key_token(key, klen, &ok);
    if (!ok || key[0] != strlen(tenant) || memcmp(key + 1, tenant, key[0]) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: not a spans key of tenant %s", tenant);
    if (storage_filter_expired(s, CF_SPANS, key, klen, NULL, 0)) return 0;
    calltree_t *tree = calltree_new(0);
    if (tree == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    rc = storage_span_value_tree(value, vlen, tree); /* every tree decodes: the merge never fails */
    if (rc != 0) {
        calltree_free(tree);
        return errmsg_set(em, rc, "stream: span tree: %s", err_message(rc));
    }
    sput_t x = {.s = s, .tenant = tenant, .symbols = symbols, .em = em};
    buf_init(&x.tmp, STORAGE_VALUE_MAX);
    buf_t op;
    buf_init(&op, STORAGE_VALUE_MAX);
    x.tenant_hash = hash_bytes64(tenant, strlen(tenant));
    x.wb = rocksdb_writebatch_create();
    pthread_rwlock_rdlock(&s->symgc.lock); /* no symbol sweep step meanwhile (write.c) */
    rc = calltree_for_each_symbol(tree, put_symbol, &x);
    if (rc == 0 && (rc = storage_spanval_stream_operand(value, vlen, &op)) != 0)
        errmsg_set(em, rc, "stream: span value: %s", err_message(rc));
    if (rc == 0) {
        uint8_t ik[SPAN_KEY_FIXED + STORAGE_TENANT_MAX];
        storage_span_index_key(key, klen, ik);
        rocksdb_writebatch_merge_cf(x.wb, s->cf[CF_SPANS], (const char *)key, klen,
                                    (const char *)op.data, op.len);
        rocksdb_writebatch_put_cf(x.wb, s->cf[CF_SPAN_INDEX], (const char *)ik, klen, "", 0);
        /* the streamed members' entries (those this store held have theirs) */
        rc = storage_pspan_put_value(s, x.wb, key, klen, value, vlen);
        if (rc != 0) errmsg_set(em, rc, "out of memory");
    }
    if (rc == 0) {
        char *err = NULL;
        rocksdb_write(s->db, s->wopts, x.wb, &err);
        rc = storage_rocks_err(err, em, "stream: span merge");
        if (rc == 0 && bytes != NULL) rocksdb_writebatch_data(x.wb, bytes);
    }
    pthread_rwlock_unlock(&s->symgc.lock);
    rocksdb_writebatch_destroy(x.wb);
    calltree_free(tree);
    buf_free(&x.tmp);
    buf_free(&op);
    return rc;
}
