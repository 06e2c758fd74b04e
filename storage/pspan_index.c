/* pspan_index.c — `profile_span_index`: which span/trace trees each stored
 * profile contributed to (storage_int.h; docs/storage-format.md), so that
 * an anti-entropy FETCH finds one profile's trees in proportion to that
 * profile's own spans (profile_spans.c), not to every span tree of its
 * token.
 *
 * Key: token | tenant length | tenant | series | window | owner | kind | id,
 * value empty. The owner is the profile id of a member the tree holds, or
 * PSPAN_UNNAMED for a tree that may hold profiles it cannot name (an
 * anonymous rest, a SEALED or SHORT value, a format-7 value, one that does
 * not parse): every profile of that series and window reads those too.
 * A write files all the trees of its profile in one series under one list
 * key (the entries' prefix, value: the sorted (kind, id) records), in the
 * batch of their merge operands (write.c): one key per profile and series,
 * not per tree. A streamed tree puts one entry per member it lists, and
 * the format 11 -> 12 upgrade the same from every stored tree; a profile
 * may then have both forms, which a read unites (profile_spans.c). Token first: a range clear reads
 * its own entries (stream_clear.c); the window is at a fixed offset for retention (filter.c).
 */
#include <string.h>

#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* tenant length, kind, id, token, series, window (plus the tenant) */
#define SPAN_KEY_FIXED (1 + 1 + 8 + 8 + 8 + 8)

const uint8_t storage_pspan_unnamed[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void storage_pspan_key(const uint8_t *k, size_t kn, const uint8_t owner[16], uint8_t *out)
{
    size_t L = k[0];
    memcpy(out, k + 10 + L, 8); /* token */
    out[8] = (uint8_t)L;
    memcpy(out + 9, k + 1, L);              /* tenant */
    memcpy(out + 9 + L, k + kn - 16, 16);   /* series, window */
    memcpy(out + 25 + L, owner, 16);        /* owner */
    memcpy(out + 41 + L, k + 1 + L, 1 + 8); /* kind, id */
}

void storage_span_key_of_pspan(const uint8_t *pk, size_t pn, uint8_t *out)
{
    size_t L = pk[8];
    out[0] = (uint8_t)L;
    memcpy(out + 1, pk + 9, L);
    memcpy(out + 1 + L, pk + 41 + L, 1 + 8); /* kind, id */
    memcpy(out + 10 + L, pk, 8);             /* token */
    memcpy(out + 18 + L, pk + 9 + L, 16);    /* series, window */
}

int storage_pspan_key_ok(const uint8_t *pk, size_t pn)
{
    if (pn < 9 || pk[8] < 1 || pk[8] > STORAGE_TENANT_MAX) return 0;
    return pn == STORAGE_PSPAN_FIXED + (size_t)pk[8]        ? 1
           : pn == STORAGE_PSPAN_LIST_FIXED + (size_t)pk[8] ? 2
                                                            : 0;
}

size_t storage_pspan_prefix(const char *tenant, uint64_t token, uint64_t series_id, int64_t window,
                            const uint8_t owner[16], uint8_t *out)
{
    size_t L = strlen(tenant);
    skey_t k; /* its last 16 bytes: series and window */
    storage_key_span(&k, tenant, STORAGE_SPAN_KIND_SPAN, 0, token, series_id, window);
    be64_put(out, token);
    out[8] = (uint8_t)L;
    memcpy(out + 9, tenant, L);
    memcpy(out + 9 + L, k.b + k.n - 16, 16);
    memcpy(out + 25 + L, owner, 16);
    return 41 + L;
}

static void put_entry(storage_t *s, rocksdb_writebatch_t *wb, const uint8_t *k, size_t kn,
                      const uint8_t owner[16])
{
    uint8_t pk[STORAGE_PSPAN_KEY_MAX];
    storage_pspan_key(k, kn, owner, pk);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_PSPAN_INDEX], (const char *)pk, kn + 16, "", 0);
}

int storage_pspan_put_value(storage_t *s, rocksdb_writebatch_t *wb, const uint8_t *k, size_t kn,
                            const uint8_t *v, size_t vn)
{
    spanval_t sv = {0};
    int rc = storage_spanval_parse(v, vn, &sv);
    if (rc == ERR_NOMEM) return rc;
    for (size_t i = 0; rc == 0 && i < sv.n; i++)
        put_entry(s, wb, k, kn, sv.m[i].id);
    if (rc != 0 || sv.rest_count > 0 || (sv.flags & (SPANVAL_SEALED | SPANVAL_SHORT)) != 0)
        put_entry(s, wb, k, kn, storage_pspan_unnamed);
    storage_spanval_free(&sv);
    return 0;
}

#define REBUILD_BATCH 4096

static int flush(storage_t *s, rocksdb_writebatch_t *wb, errmsg_t *em)
{
    char *err = NULL;
    rocksdb_write(s->db, s->wopts, wb, &err);
    rocksdb_writebatch_clear(wb);
    return storage_rocks_err(err, em, "profile span index rebuild");
}

int storage_pspan_rebuild(storage_t *s, errmsg_t *em)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SPANS]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    size_t n = 0, total = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        int ok;
        storage_span_key_token(k, kn, &ok);
        if (!ok) continue; /* no window: never read, compaction drops it */
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if ((rc = storage_pspan_put_value(s, wb, k, kn, v, vn)) != 0) {
            errmsg_set(em, rc, "profile span index rebuild: out of memory");
            break;
        }
        total++;
        if (++n < REBUILD_BATCH) continue;
        rc = flush(s, wb, em);
        n = 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, em, "profile span index rebuild: scan");
    if (rc == 0 && ioerr == 0 && n > 0) rc = flush(s, wb, em);
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    if (rc == 0 && ioerr == 0)
        log_info("storage", "profile span index: the members of %zu span trees indexed", total);
    return rc != 0 ? rc : ioerr;
}

int storage_pspan_clear(storage_t *s, const uint8_t start[8], const uint8_t *end, size_t en,
                        rocksdb_writebatch_t *wb)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end, en);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_PSPAN_INDEX]);
    for (rocksdb_iter_seek(it, (const char *)start, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn;
        const char *pk = rocksdb_iter_key(it, &kn);
        rocksdb_writebatch_delete_cf(wb, s->cf[CF_PSPAN_INDEX], pk, kn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "clear: profile span index");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr;
}
