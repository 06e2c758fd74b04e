/* gc_symbols.c — collecting symbols nothing refers to any more.
 *
 * A symbol (tenant, symbol id -> name, file) is referenced by the stack-node
 * tables of its tenant (each table names a symbol's id in full once, at its
 * first use) and by span trees (call trees of symbol ids). Once gc.c deleted
 * the last table using a symbol and no span tree names it, nothing can ever
 * read it: storage_gc_symbols() deletes it.
 *
 * Writers only put a symbol they believe is missing (the symbol cache), so a
 * sweep must not delete one a writer just started to rely on. The sweep:
 *   1. under the write side of symgc.lock (every write holds the read side
 *      from its first symbol decision to its commit, so no write is half
 *      done): sets symgc.active, forgets the touched set, empties the symbol
 *      cache;
 *   2. marks every symbol the tables and span trees on disk name;
 *   3. under the write side again, deletes the unmarked symbols that no
 *      write touched since step 1 (while active, writes record every symbol
 *      they reference, cached or not: storage_symgc_touch), then clears
 *      active.
 * A write that committed before step 1 is on disk for step 2; one after it
 * is in the touched set. And the cache holds only symbols put or touched
 * since step 1, none of them deleted, so no writer skips a symbol that is
 * gone. Memory: about 16 bytes per distinct symbol in use (the marks).
 */
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "storage/storage_int.h"

int storage_symgc_init(storage_t *s)
{
    memset(&s->symgc, 0, sizeof s->symgc);
    /* writer preference: a sweep's two short steps are not starved by a
     * steady stream of writes */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int bad = pthread_rwlock_init(&s->symgc.lock, &a) != 0;
    pthread_rwlockattr_destroy(&a);
    if (bad) return ERR_INTERNAL;
    if (pthread_mutex_init(&s->symgc.mu, NULL) != 0) return ERR_INTERNAL;
    return 0;
}

void storage_symgc_free(storage_t *s)
{
    pthread_rwlock_destroy(&s->symgc.lock);
    pthread_mutex_destroy(&s->symgc.mu);
    u64map_free(&s->symgc.touched);
}

uint64_t storage_symgc_key(uint64_t tenant_hash, uint64_t sym)
{
    return storage_mix64(tenant_hash ^ storage_mix64(sym));
}

int storage_symgc_touch(storage_t *s, uint64_t key)
{
    if (!atomic_load(&s->symgc.active)) return 0;
    pthread_mutex_lock(&s->symgc.mu);
    int rc = u64map_put(&s->symgc.touched, key, 0);
    pthread_mutex_unlock(&s->symgc.mu);
    return rc < 0 ? rc : 0;
}

static uint64_t tenant_hash_at(const uint8_t *t, size_t *len)
{
    *len = 1 + (size_t)t[0];
    return hash_bytes64((const char *)t + 1, t[0]);
}

/* The symbols a chunk of a node table names in full (its first uses). */
static int mark_chunk(u64map_t *marks, uint64_t th, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    if (n > 0 && p[0] == 0) p++; /* format 7: chunk-local ordinals (each symbol once by id) */
    while (p < end) {
        uint64_t delta, k;
        if (!varint_read_u(&p, end, &delta) || !varint_read_u(&p, end, &k)) return ERR_CORRUPT;
        if (k != 0) continue;
        if (end - p < 8) return ERR_CORRUPT;
        uint64_t sym = 0;
        for (int i = 7; i >= 0; i--)
            sym = (sym << 8) | p[i];
        p += 8;
        if (u64map_put(marks, storage_symgc_key(th, sym), 0) < 0) return ERR_NOMEM;
    }
    return 0;
}

typedef struct mark_ctx {
    u64map_t *marks;
    uint64_t th;
} mark_ctx_t;

static int mark_sym(void *ctx, uint64_t sym)
{
    mark_ctx_t *m = ctx;
    return u64map_put(m->marks, storage_symgc_key(m->th, sym), 0) < 0 ? ERR_NOMEM : 0;
}

/* Marks what every value of cf names: node chunks (token | tenant | chunk)
 * or span trees (tenant | ...). A value that does not parse marks nothing
 * of its own but stops the sweep (unsure: keep every symbol). */
static int mark_cf(storage_t *s, enum storage_cf cf, u64map_t *marks)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
    calltree_t *tree = cf == CF_SPANS ? calltree_new(0) : NULL;
    int rc = cf == CF_SPANS && tree == NULL ? ERR_NOMEM : 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn, tl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        size_t at = cf == CF_NODES ? 8 : 0; /* where the tenant starts */
        if (kn < at + 1 || kn < at + 1 + k[at]) {
            rc = ERR_CORRUPT;
            break;
        }
        mark_ctx_t m = {marks, tenant_hash_at(k + at, &tl)};
        /* an edge index key (a tag byte where a chunk number starts with 0)
         * names symbols that its table's chunks name too */
        size_t tail = at + 1 + k[at];
        if (cf == CF_NODES && kn > tail && k[tail] != 0) continue;
        if (cf == CF_NODES) {
            rc = mark_chunk(marks, m.th, v, vn);
        } else {
            rc = calltree_clear(tree);
            if (rc == 0) rc = storage_span_value_tree(v, vn, tree);
            if (rc == 0) rc = calltree_for_each_symbol(tree, mark_sym, &m);
        }
    }
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    if (rc == 0) rc = storage_rocks_err(err, NULL, "mark symbols");
    rocksdb_iter_destroy(it);
    calltree_free(tree);
    return rc;
}

/* Keys (length byte + key) of the symbols no mark names. */
static int unmarked(storage_t *s, const u64map_t *marks, buf_t *out)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SYMBOLS]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, tl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (kn < 1 || kn != 1 + (size_t)k[0] + 8) continue; /* not a symbol key: kept */
        uint64_t th = tenant_hash_at(k, &tl), v;
        if (u64map_get(marks, storage_symgc_key(th, be64_get(k + tl)), (uint32_t *)&v)) continue;
        uint8_t len = (uint8_t)kn;
        if ((rc = buf_append(out, &len, 1)) == 0) rc = buf_append(out, k, kn);
    }
    char *err = NULL;
    if (rc == 0) rocksdb_iter_get_error(it, &err);
    if (rc == 0) rc = storage_rocks_err(err, NULL, "list symbols");
    rocksdb_iter_destroy(it);
    return rc;
}

/* Step 3: deletes the candidates no write touched; writes wait meanwhile. */
static int sweep(storage_t *s, const buf_t *cand, size_t *removed)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pthread_rwlock_wrlock(&s->symgc.lock);
    for (size_t at = 0; at < cand->len; at += 1 + cand->data[at]) {
        const uint8_t *k = cand->data + at + 1;
        size_t tl;
        uint64_t th = tenant_hash_at(k, &tl);
        uint32_t v;
        if (u64map_get(&s->symgc.touched, storage_symgc_key(th, be64_get(k + tl)), &v)) continue;
        rocksdb_writebatch_delete_cf(wb, s->cf[CF_SYMBOLS], (const char *)k, cand->data[at]);
        (*removed)++;
    }
    char *err = NULL;
    if (*removed > 0) rocksdb_write(s->db, s->wopts, wb, &err);
    int rc = storage_rocks_err(err, NULL, "delete symbols");
    if (rc != 0) *removed = 0;
    atomic_store(&s->symgc.active, 0);
    u64map_clear(&s->symgc.touched);
    pthread_rwlock_unlock(&s->symgc.lock);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int storage_gc_symbols(storage_t *s, size_t *removed)
{
    *removed = 0;
    pthread_rwlock_wrlock(&s->symgc.lock); /* step 1 */
    u64map_clear(&s->symgc.touched);
    atomic_store(&s->symgc.active, 1);
    storage_idcache_clear(&s->symbol_cache);
    pthread_rwlock_unlock(&s->symgc.lock);

    u64map_t marks = {0};
    buf_t cand;
    buf_init(&cand, BUF_UNLIMITED);
    int rc = mark_cf(s, CF_NODES, &marks); /* step 2 */
    if (rc == 0) rc = mark_cf(s, CF_SPANS, &marks);
    if (rc == 0) rc = unmarked(s, &marks, &cand);
    u64map_free(&marks);
    if (rc != 0) cand.len = 0; /* unsure: delete nothing, but end the sweep */
    int rc2 = sweep(s, &cand, removed);
    buf_free(&cand);
    atomic_fetch_add(&s->counters.gc_symbols, *removed);
    return rc != 0 ? rc : rc2;
}
