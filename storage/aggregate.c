/* aggregate.c — service aggregates: one pseudo series per (token, tenant,
 * service, profile type, spy) whose blocks and totals are the exact sum of
 * its member series' (docs/storage-format.md, "Service aggregates").
 *
 * storage_write_profile merges every series' block and total operands into
 * its aggregate's keys too, in the same WriteBatch, so the sum holds at every
 * resolution and window whatever path the profile arrived by (push, replica
 * write, hint replay, repair fetch). Retention drops an aggregate's windows
 * together with its members' (same key suffix, same filter). The aggregate
 * has no series, postings, seen or profile_trees entry: label listings,
 * series counts and profile lists never see it.
 *
 * Also here: the reads a query needs to use aggregates (distinct tokens of a
 * label pair, whether a pseudo series holds any window), and the rebuild that
 * upgrades a data directory written before aggregates existed.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "storage/storage_int.h"

/* Separates aggregate ids from label hashes (a real series id is XXH3 of a
 * label encoding, which never starts with this 8-byte word). */
#define AGG_TAG 0x666c616d65616767ull /* "flameagg" */

static uint64_t str_hash(const char *s)
{
    return s == NULL ? 0 : hash_bytes64(s, strlen(s));
}

uint64_t storage_aggregate_id(const char *service, const char *type, const char *spy)
{
    uint64_t w[4] = {AGG_TAG, str_hash(service), str_hash(type), str_hash(spy != NULL ? spy : "")};
    uint8_t b[sizeof w]; /* big-endian: the same id on every machine */
    for (size_t i = 0; i < 4; i++)
        be64_put(b + 8 * i, w[i]);
    return hash_bytes64(b, sizeof b);
}

int storage_aggregate_of(const labels_t *l, uint64_t *id)
{
    const char *svc = labels_get(l, LABEL_SERVICE_NAME);
    const char *type = labels_get(l, LABEL_PROFILE_TYPE);
    if (svc == NULL || svc[0] == 0 || type == NULL || type[0] == 0) return 0;
    *id = storage_aggregate_id(svc, type, labels_get(l, STORAGE_LABEL_SPY));
    return 1;
}

/* --- anchors ---------------------------------------------------------------- */

/* An `anchors` value: the aggregate's anchor series ids, u64 big-endian
 * each, in the order they were claimed; empty: none (an aggregate written
 * before format 10 holds every member, and takes no anchor). */
#define ANCHOR_ID_LEN 8

void storage_claims_free(storage_claims_t *c)
{
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* The anchors of the aggregate (key k) into c->anchor and c->n: 1 when
 * recorded, 2 when nothing is recorded yet; or an error. */
static int anchors_get(storage_t *s, const skey_t *k, struct storage_claim *c, errmsg_t *em)
{
    char *err = NULL;
    size_t vn = 0;
    char *v =
        rocksdb_get_cf(s->db, s->ropts, s->cf[CF_ANCHORS], (const char *)k->b, k->n, &vn, &err);
    int rc = storage_rocks_err(err, em, "read aggregate anchors");
    c->n = 0;
    if (rc == 0 && v == NULL)
        rc = 2;
    else if (rc == 0 &&
             (vn % ANCHOR_ID_LEN != 0 || vn / ANCHOR_ID_LEN > STORAGE_AGGREGATE_ANCHORS_MAX))
        rc = errmsg_set(em, ERR_CORRUPT, "aggregate anchors: %zu-byte value", vn);
    else if (rc == 0) {
        c->n = vn / ANCHOR_ID_LEN;
        for (size_t i = 0; i < c->n; i++)
            c->anchor[i] = be64_get((const uint8_t *)v + i * ANCHOR_ID_LEN);
        rc = 1;
    }
    rocksdb_free(v);
    return rc;
}

/* 1 when the store holds series_id's entry (its windows are already in the
 * aggregate), 0 when not, or an error. */
static int series_stored(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         errmsg_t *em)
{
    skey_t k;
    storage_key_series(&k, token, tenant, series_id);
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_SERIES], (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, em, "series lookup");
    int stored = v != NULL;
    rocksdb_pinnableslice_destroy(v);
    return rc != 0 ? rc : stored;
}

/* The batch's record of the aggregate c (its anchors read, or empty). */
static struct storage_claim *claim_slot(storage_claims_t *c, const struct storage_claim *a)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        struct storage_claim *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL) return NULL;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n] = *a;
    return &c->v[c->n++];
}

/* The list of a (key k) into wb. */
static void put_anchors(storage_t *s, rocksdb_writebatch_t *wb, const struct storage_claim *a,
                        const skey_t *k)
{
    uint8_t v[STORAGE_AGGREGATE_ANCHORS_MAX * ANCHOR_ID_LEN];
    for (size_t i = 0; i < a->n; i++)
        be64_put(v + i * ANCHOR_ID_LEN, a->anchor[i]);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_ANCHORS], (const char *)k->b, k->n, (const char *)v,
                              a->n * ANCHOR_ID_LEN);
}

/* series_id as one more anchor of a (key k): into wb, the whole list. */
static void claim(storage_t *s, rocksdb_writebatch_t *wb, struct storage_claim *a, const skey_t *k,
                  uint64_t series_id)
{
    a->anchor[a->n++] = series_id;
    put_anchors(s, wb, a, k);
}

static int is_anchor(const struct storage_claim *a, uint64_t series_id)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->anchor[i] == series_id) return 1;
    return 0;
}

/* The aggregate's record, from the batch's claims or read into them. */
static int claim_find(storage_t *s, storage_claims_t *claims, const skey_t *k, uint64_t token,
                      uint64_t id, struct storage_claim **out, int *recorded, errmsg_t *em)
{
    for (size_t i = 0; i < claims->n; i++) /* read or claimed earlier in this batch */
        if (claims->v[i].token == token && claims->v[i].agg == id) {
            *out = &claims->v[i];
            *recorded = 1;
            return 0;
        }
    struct storage_claim a = {.token = token, .agg = id};
    int rc = anchors_get(s, k, &a, em);
    if (rc < 0) return rc;
    *recorded = rc == 1;
    if ((*out = claim_slot(claims, &a)) == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    return 0;
}

int storage_aggregate_target(storage_t *s, rocksdb_writebatch_t *wb, storage_claims_t *claims,
                             const char *tenant, uint64_t token, uint64_t series_id,
                             const labels_t *l, uint64_t *agg, errmsg_t *em)
{
    *agg = 0;
    uint64_t id;
    if (l == NULL || !storage_aggregate_of(l, &id)) return 0;
    skey_t k;
    storage_key_series(&k, token, tenant, id);
    struct storage_claim *a;
    int recorded, rc = claim_find(s, claims, &k, token, id, &a, &recorded, em);
    if (rc != 0) return rc;
    if (is_anchor(a, series_id)) return 0;
    if (!recorded) { /* the first: nothing can be in the aggregate yet */
        claim(s, wb, a, &k, series_id);
        return 0;
    }
    /* empty: a format-9 aggregate, holding every member */
    if (a->n == 0 || a->n >= s->opts.aggregate_anchors) {
        *agg = id;
        return 0;
    }
    rc = series_stored(s, tenant, token, series_id, em);
    if (rc < 0) return rc;
    if (rc == 1)
        *agg = id; /* its windows are in the aggregate already */
    else
        claim(s, wb, a, &k, series_id);
    return 0;
}

int storage_aggregate_forget(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant,
                             uint64_t token, uint64_t series_id, const labels_t *l, errmsg_t *em)
{
    uint64_t id;
    if (l == NULL || !storage_aggregate_of(l, &id)) return 0;
    skey_t k;
    storage_key_series(&k, token, tenant, id);
    struct storage_claim a;
    int rc = anchors_get(s, &k, &a, em);
    if (rc != 1 || a.n < 2) return rc < 0 ? rc : 0; /* none, or the last: kept */
    size_t m = 0;
    for (size_t i = 0; i < a.n; i++)
        if (a.anchor[i] != series_id) a.anchor[m++] = a.anchor[i];
    if (m < a.n) {
        a.n = m;
        put_anchors(s, wb, &a, &k);
    }
    return 0;
}

int storage_aggregate_anchors(storage_t *s, const char *tenant, uint64_t token, uint64_t agg,
                              uint64_t *ids, size_t max)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    skey_t k;
    storage_key_series(&k, token, tenant, agg);
    struct storage_claim a;
    rc = anchors_get(s, &k, &a, NULL);
    if (rc < 0) return rc;
    size_t n = rc == 2 ? 0 : a.n < max ? a.n : max;
    memcpy(ids, a.anchor, n * sizeof *ids);
    return (int)n;
}

void storage_window_merge(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant,
                          uint64_t token, uint64_t series_id, uint64_t agg, int res, int64_t window,
                          const uint8_t *block, size_t block_len, int64_t total, int unblocked)
{
    uint8_t tv[8];
    storage_i64_put(tv, total);
    uint64_t ids[2] = {series_id, agg};
    int n = 1 + (agg != 0);
    for (int i = 0; i < n; i++) {
        skey_t k;
        storage_key_window(&k, token, tenant, ids[i], res, window);
        if (storage_filter_expired(s, CF_BLOCKS, k.b, k.n, NULL, 0)) return;
        /* block_len 0: a streamed window whose residual is only a total;
         * unblocked: the series' tree is read from profile_trees */
        if (block_len > 0 && !(i == 0 && unblocked))
            rocksdb_writebatch_merge_cf(wb, s->cf[CF_BLOCKS], (const char *)k.b, k.n,
                                        (const char *)block, block_len);
        rocksdb_writebatch_merge_cf(wb, s->cf[CF_TOTALS], (const char *)k.b, k.n, (const char *)tv,
                                    sizeof tv);
    }
}

/* --- reads for queries ------------------------------------------------------ */

int storage_posting_tokens(storage_t *s, const char *tenant, const char *name, const char *value,
                           storage_token_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || name == NULL || value == NULL) return rc != 0 ? rc : ERR_INVALID_ARGUMENT;
    buf_t lo;
    buf_init(&lo, BUF_UNLIMITED);
    rc = storage_key_posting(&lo, tenant, name, value, 0, 0);
    if (rc != 0) {
        buf_free(&lo);
        return rc == ERR_TOO_LARGE ? ERR_LIMIT : rc;
    }
    size_t pn = lo.len - 16; /* tenant|name 0x00 value 0x00 */
    uint8_t *hi = malloc(pn);
    if (hi == NULL) {
        buf_free(&lo);
        return ERR_NOMEM;
    }
    memcpy(hi, lo.data, pn);
    size_t hn = storage_prefix_successor(hi, pn);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hn > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hn);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_POSTINGS]);
    /* One seek per distinct token: past token t is prefix|t+1|0... */
    rocksdb_iter_seek(it, (const char *)lo.data, pn);
    while (rc == 0 && rocksdb_iter_valid(it)) {
        size_t kn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (kn != pn + 16 || memcmp(k, lo.data, pn) != 0) break;
        uint64_t token = be64_get(k + pn);
        rc = fn(ctx, token);
        if (rc != 0 || token == UINT64_MAX) break;
        be64_put(lo.data + pn, token + 1);
        memset(lo.data + pn + 8, 0, 8);
        rocksdb_iter_seek(it, (const char *)lo.data, lo.len);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "postings scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    free(hi);
    buf_free(&lo);
    return ioerr != 0 ? ioerr : rc;
}

/* The first window start of resolution r that retention still keeps at
 * now (expired: w + res + keep <= now, filter.c). */
static int64_t live_from(const storage_t *s, int r, int64_t now)
{
    int64_t keep = s->opts.retention_seconds[r];
    return keep > 0 ? now - keep - (int64_t)storage_resolutions[r] + 1 : INT64_MIN;
}

/* 1 when the first key under prefix is a window retention keeps, 0 when
 * nothing lies under prefix, -1 otherwise (it tells neither). The
 * iterator has no bounds: a key past the prefix ends it. */
static int first_window_live(storage_t *s, rocksdb_iterator_t *it, const skey_t *prefix,
                             int64_t now)
{
    rocksdb_iter_seek(it, (const char *)prefix->b, prefix->n);
    if (!rocksdb_iter_valid(it)) return 0;
    size_t kn;
    const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &kn);
    if (kn < prefix->n || memcmp(key, prefix->b, prefix->n) != 0) return 0; /* past the prefix */
    if (kn != prefix->n + 9 || key[prefix->n] >= STORAGE_RESOLUTION_COUNT) return -1;
    int r = key[prefix->n];
    return storage_time_decode(key + prefix->n + 1) >= live_from(s, r, now) ? 1 : -1;
}

/* 1 if totals hold a window under prefix (token|tenant|id) that is not past
 * its resolution's retention, 0 if not, or ERR_IO; it an iterator over
 * totals (no bounds), which a caller may use for several probes. One seek
 * to the prefix settles it when nothing lies there (the anchors and spies
 * of a service with none) or the first window is live; else, per
 * resolution, coarsest first, one seek to the first window start
 * retention still keeps. */
static int has_live_window(storage_t *s, rocksdb_iterator_t *it, const skey_t *prefix)
{
    int64_t now = storage_now(s);
    int first = first_window_live(s, it, prefix, now);
    int found = first == 1;
    for (int r = STORAGE_RESOLUTION_COUNT - 1; first < 0 && r >= 0 && !found; r--) {
        int64_t lo = live_from(s, r, now);
        skey_t k = *prefix;
        storage_key_u8(&k, (uint8_t)r);
        storage_key_time(&k, lo);
        rocksdb_iter_seek(it, (const char *)k.b, k.n);
        size_t kn;
        const uint8_t *key =
            rocksdb_iter_valid(it) ? (const uint8_t *)rocksdb_iter_key(it, &kn) : NULL;
        found = key != NULL && kn == k.n && memcmp(key, k.b, prefix->n + 1) == 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int rc = storage_rocks_err(err, NULL, "window probe");
    return rc != 0 ? rc : found;
}

struct storage_probe {
    storage_t *s;
    rocksdb_iterator_t *it; /* over totals, no bounds */
};

int storage_probe_open(storage_t *s, storage_probe_t **out)
{
    storage_probe_t *p = malloc(sizeof *p);
    if (p == NULL) return ERR_NOMEM;
    p->s = s;
    p->it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_TOTALS]);
    *out = p;
    return 0;
}

void storage_probe_close(storage_probe_t *p)
{
    if (p == NULL) return;
    rocksdb_iter_destroy(p->it);
    free(p);
}

int storage_probe_has_windows(storage_probe_t *p, const char *tenant, uint64_t token,
                              uint64_t series_id)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    skey_t k;
    storage_key_series(&k, token, tenant, series_id);
    return has_live_window(p->s, p->it, &k);
}

int storage_series_has_windows(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id)
{
    storage_probe_t *p;
    int rc = storage_probe_open(s, &p);
    if (rc != 0) return rc;
    rc = storage_probe_has_windows(p, tenant, token, series_id);
    storage_probe_close(p);
    return rc;
}

/* --- rebuilding (format upgrade) ------------------------------------------- */

/* Operands per batch of the rebuild: bounds its memory. */
#define REBUILD_BATCH_OPS 4096

typedef struct rebuild {
    storage_t *s;
    rocksdb_writebatch_t *wb;
    size_t ops;
    u64map_t cleared; /* aggregate prefixes of the current token already cleared */
    uint64_t token;
    size_t series, values;
} rebuild_t;

static int flush_batch(rebuild_t *r, errmsg_t *em)
{
    if (r->ops == 0) return 0;
    char *err = NULL;
    rocksdb_write(r->s->db, r->s->wopts, r->wb, &err);
    rocksdb_writebatch_clear(r->wb);
    r->ops = 0;
    return storage_rocks_err(err, em, "rebuild aggregates");
}

/* Merges every block and total of the series (prefix: token|tenant|sid) into
 * its aggregate (agg: token|tenant|aggregate id), key suffix for suffix. */
static int copy_windows(rebuild_t *r, enum storage_cf cf, const skey_t *prefix, const skey_t *agg,
                        errmsg_t *em)
{
    skey_t hi = *prefix;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi.n > 0) rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->s->db, ro, r->s->cf[cf]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)prefix->b, prefix->n);
         rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const char *v = rocksdb_iter_value(it, &vn);
        if (kn != prefix->n + 9) continue; /* not a window key */
        skey_t ak = *agg;
        storage_key_bytes(&ak, k + prefix->n, 9);
        rocksdb_writebatch_merge_cf(r->wb, r->s->cf[cf], (const char *)ak.b, ak.n, v, vn);
        r->values++;
        if (++r->ops >= REBUILD_BATCH_OPS) rc = flush_batch(r, em);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, em, "rebuild aggregates: scan");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return ioerr != 0 ? ioerr : rc;
}

/* The tenant and aggregate of series entry (k, v); 0 when the key is
 * malformed, the labels do not decode or the series has no aggregate. */
static int series_entry_aggregate(const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                                  char tenant[STORAGE_TENANT_MAX + 1], uint64_t *agg)
{
    if (kn < 18 || kn != 17 + (size_t)k[8] || k[8] > STORAGE_TENANT_MAX) return 0;
    labels_t *l = NULL;
    if (labels_decode(v, vn, &l) != 0) return 0;
    int has = storage_aggregate_of(l, agg);
    labels_free(l);
    if (!has) return 0;
    memcpy(tenant, k + 9, k[8]);
    tenant[k[8]] = 0;
    return 1;
}

/* The aggregate's 10 s window key of rebuild_unblocked (token and tenant
 * of the series) and the batch being filled. */
typedef struct rebuild_tree {
    rebuild_t *r;
    const skey_t *agg;
    buf_t enc;
    errmsg_t *em;
} rebuild_tree_t;

/* One tree of a series kept in no block: a block operand of the
 * aggregate's 10 s window, as its write would have merged. */
static int rebuild_tree(void *ctx, int64_t window, const uint8_t *enc, size_t len,
                        const sparse_vec_t *vec)
{
    rebuild_tree_t *x = ctx;
    if (enc == NULL) {
        buf_reset(&x->enc);
        int rc = storage_sparse_encode(vec, &x->enc);
        if (rc != 0) return errmsg_set(x->em, rc, "rebuild aggregates: %s", err_message(rc));
        enc = x->enc.data;
        len = x->enc.len;
    }
    skey_t ak = *x->agg;
    storage_key_u8(&ak, 0);
    storage_key_time(&ak, window);
    rocksdb_writebatch_merge_cf(x->r->wb, x->r->s->cf[CF_BLOCKS], (const char *)ak.b, ak.n,
                                (const char *)enc, len);
    x->r->values++;
    return ++x->r->ops >= REBUILD_BATCH_OPS ? flush_batch(x->r, x->em) : 0;
}

/* The series' trees kept in no block (format 11) into its aggregate. */
static int rebuild_unblocked(rebuild_t *r, const char *tenant, uint64_t token, uint64_t series_id,
                             const skey_t *agg, errmsg_t *em)
{
    rebuild_tree_t x = {.r = r, .agg = agg, .em = em};
    buf_init(&x.enc, STORAGE_VALUE_MAX);
    int rc = storage_scan_unblocked(r->s, NULL, tenant, token, series_id, INT64_MIN, INT64_MAX, 1,
                                    rebuild_tree, &x);
    buf_free(&x.enc);
    return rc;
}

/* One series entry: clears its aggregate (once per token: a rebuild that was
 * interrupted leaves partial sums, which a second run must not add to), then
 * adds the series' windows into it. */
static int rebuild_one(rebuild_t *r, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                       errmsg_t *em)
{
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t agg;
    if (!series_entry_aggregate(k, kn, v, vn, tenant, &agg)) return 0;
    uint64_t token = be64_get(k);
    skey_t prefix, ak;
    storage_key_series(&prefix, token, tenant, be64_get(k + 9 + k[8]));
    storage_key_series(&ak, token, tenant, agg);
    if (token != r->token) u64map_clear(&r->cleared);
    r->token = token;
    uint32_t unused;
    int added =
        u64map_get_or_put(&r->cleared, storage_mix64(agg ^ hash_bytes64(tenant, k[8])), 0, &unused);
    if (added < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
    if (added > 0) {
        skey_t hi = ak;
        hi.n = storage_prefix_successor(hi.b, hi.n);
        for (enum storage_cf cf = CF_BLOCKS; cf <= CF_TOTALS; cf++)
            rocksdb_writebatch_delete_range_cf(r->wb, r->s->cf[cf], (const char *)ak.b, ak.n,
                                               (const char *)hi.b, hi.n);
        r->ops++;
    }
    r->series++;
    int rc = copy_windows(r, CF_BLOCKS, &prefix, &ak, em);
    if (rc == 0) rc = rebuild_unblocked(r, tenant, token, be64_get(k + 9 + k[8]), &ak, em);
    return rc != 0 ? rc : copy_windows(r, CF_TOTALS, &prefix, &ak, em);
}

int storage_aggregate_rebuild(storage_t *s, errmsg_t *em)
{
    rebuild_t r = {.s = s, .wb = rocksdb_writebatch_create()};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SERIES]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        rc = rebuild_one(&r, k, kn, v, vn, em);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, em, "rebuild aggregates: series scan");
    if (rc == 0) rc = ioerr;
    if (rc == 0) rc = flush_batch(&r, em);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writebatch_destroy(r.wb);
    u64map_free(&r.cleared);
    if (rc == 0)
        log_info("storage", "service aggregates rebuilt from %zu series (%zu windows)", r.series,
                 r.values);
    return rc;
}

/* --- format 9 -> 10 ----------------------------------------------------------- */

/* The aggregate of series entry (k, v) into wb as "no anchor": an aggregate
 * written before anchors existed holds every member. 1 when put. */
static int upgrade_one(storage_t *s, rocksdb_writebatch_t *wb, const uint8_t *k, size_t kn,
                       const uint8_t *v, size_t vn)
{
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t agg;
    if (!series_entry_aggregate(k, kn, v, vn, tenant, &agg)) return 0;
    skey_t ak;
    storage_key_series(&ak, be64_get(k), tenant, agg);
    rocksdb_writebatch_put_cf(wb, s->cf[CF_ANCHORS], (const char *)ak.b, ak.n, "", 0);
    return 1;
}

int storage_anchor_upgrade(storage_t *s, errmsg_t *em)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_SERIES]);
    size_t ops = 0, series = 0;
    int rc = 0;
    char *err = NULL;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        int put = upgrade_one(s, wb, k, kn, v, vn);
        series += (size_t)put;
        if ((ops += (size_t)put) < REBUILD_BATCH_OPS) continue;
        rocksdb_write(s->db, s->wopts, wb, &err);
        rocksdb_writebatch_clear(wb);
        ops = 0;
        rc = storage_rocks_err(err, em, "aggregate anchors");
    }
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, em, "aggregate anchors: series scan");
    if (rc == 0) rc = ioerr;
    if (rc == 0 && ops > 0) {
        rocksdb_write(s->db, s->wopts, wb, &err);
        rc = storage_rocks_err(err, em, "aggregate anchors");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writebatch_destroy(wb);
    if (rc == 0) log_info("storage", "aggregates of %zu series recorded without anchor", series);
    return rc;
}
