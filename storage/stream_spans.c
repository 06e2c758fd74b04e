/* stream_spans.c — span/trace trees of a token range for a node that gains
 * it (storage.h; docs/cluster.md, "Streaming whole windows").
 *
 * Span trees are not kept per profile, so a fetched profile brings none:
 * the gaining node receives each stored tree of its ranges whole, and puts
 * it in place of its own (a put, not a merge: a stream resumed after a crash
 * puts the same value again and counts nothing twice).
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* tenant length, kind, id, token, series, window (plus the tenant) */
#define SPAN_KEY_FIXED (1 + 1 + 8 + 8 + 8 + 8)

uint64_t storage_span_key_token(const uint8_t *k, size_t kn, int *ok)
{
    *ok = kn >= 1 && k[0] >= 1 && k[0] <= STORAGE_TENANT_MAX && kn == SPAN_KEY_FIXED + (size_t)k[0];
    return *ok ? be64_get(k + 1 + k[0] + 1 + 8) : 0;
}

/* A whole-CF scan on purpose: keys are tenant | kind | id | token, so the
 * token follows an effectively random span id and [lo, hi] is spread over
 * the whole family; a (tenant, kind, id) group holds one to a few keys, so
 * seeking per group would cost more than the nexts it saves. span-retention
 * bounds the family (docs/cluster.md, "Cost" of streaming whole windows). */
int storage_stream_spans(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                         size_t after_len, storage_span_stream_fn fn, void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SPANS]);
    if (after_len > 0)
        rocksdb_iter_seek(it, (const char *)after, after_len);
    else
        rocksdb_iter_seek_to_first(it);
    int rc = 0;
    for (; rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (after_len > 0 && kn == after_len && memcmp(k, after, kn) == 0) continue;
        int ok;
        uint64_t token = storage_span_key_token(k, kn, &ok);
        if (!ok || token < lo || token > hi) continue;
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        char tenant[STORAGE_TENANT_MAX + 1];
        memcpy(tenant, k + 1, k[0]);
        tenant[k[0]] = 0;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        rc = fn(ctx, k, kn, tenant, v, vn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "stream: spans");
    rocksdb_iter_destroy(it);
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
                            const calltree_t *tree, const symtab_t *symbols, errmsg_t *em)
{
    int rc = storage_check_tenant(tenant, em), ok;
    if (rc != 0) return rc;
    storage_span_key_token(key, klen, &ok);
    if (!ok || key[0] != strlen(tenant) || memcmp(key + 1, tenant, key[0]) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: not a spans key of tenant %s", tenant);
    if (storage_filter_expired(s, CF_SPANS, key, klen, NULL, 0)) return 0;
    sput_t x = {.s = s, .tenant = tenant, .symbols = symbols, .em = em};
    buf_init(&x.tmp, STORAGE_VALUE_MAX);
    buf_t enc;
    buf_init(&enc, STORAGE_VALUE_MAX);
    x.tenant_hash = hash_bytes64(tenant, strlen(tenant));
    x.wb = rocksdb_writebatch_create();
    pthread_rwlock_rdlock(&s->symgc.lock); /* no symbol sweep step meanwhile (write.c) */
    rc = calltree_for_each_symbol(tree, put_symbol, &x);
    if (rc == 0 && (rc = calltree_encode(tree, &enc)) != 0)
        errmsg_set(em, rc, "stream: span tree: %s", err_message(rc));
    if (rc == 0) {
        rocksdb_writebatch_put_cf(x.wb, s->cf[CF_SPANS], (const char *)key, klen,
                                  (const char *)enc.data, enc.len);
        char *err = NULL;
        rocksdb_write(s->db, s->wopts, x.wb, &err);
        rc = storage_rocks_err(err, em, "stream: span put");
    }
    pthread_rwlock_unlock(&s->symgc.lock);
    rocksdb_writebatch_destroy(x.wb);
    buf_free(&x.tmp);
    buf_free(&enc);
    return rc;
}
