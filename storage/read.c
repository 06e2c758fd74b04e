/* read.c — the read side: label index, series labels, window scans, spans
 * and symbols.
 *
 * Every scan is a bounded iterator (lower bound = the first key wanted, upper
 * bound = the first key not wanted), so RocksDB never reads past the range.
 * Values handed to callbacks are the fully merged ones (iterators and Get
 * apply the merge operators) and are borrowed until the callback returns.
 * Distinct label names and values are listed by seeking past each one rather
 * than reading every posting under it: the cost is one seek per distinct
 * string, not one step per series.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

#define SYMBOL_BATCH 256

typedef struct range {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} range_t;

/* Opens an iterator over [lo, hi) of cf, positioned at lo. lo and hi must
 * stay alive until range_close. */
static void range_open(storage_t *s, range_t *r, enum storage_cf cf, const uint8_t *lo, size_t lon,
                       const uint8_t *hi, size_t hin)
{
    r->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(r->ro, (const char *)lo, lon);
    rocksdb_readoptions_set_iterate_upper_bound(r->ro, (const char *)hi, hin);
    r->it = rocksdb_create_iterator_cf(s->db, r->ro, s->cf[cf]);
    rocksdb_iter_seek(r->it, (const char *)lo, lon);
}

/* Closes the iterator; returns rc, or ERR_IO if the iterator failed. */
static int range_close(range_t *r, int rc)
{
    char *err = NULL;
    rocksdb_iter_get_error(r->it, &err);
    int ioerr = storage_rocks_err(err, NULL, "scan");
    rocksdb_iter_destroy(r->it);
    rocksdb_readoptions_destroy(r->ro);
    return ioerr != 0 ? ioerr : rc;
}

static const uint8_t *range_key(range_t *r, size_t *n)
{
    return (const uint8_t *)rocksdb_iter_key(r->it, n);
}

/* --- label index ----------------------------------------------------------- */

/* The next distinct string at offset off of the keys in [lo, hi): copied into
 * str (NUL-terminated); the iterator then seeks past every key that has it.
 * Returns 1 when found, 0 at the end. */
static int next_distinct(range_t *r, size_t off, buf_t *str, buf_t *seek)
{
    while (rocksdb_iter_valid(r->it)) {
        size_t kn;
        const uint8_t *k = range_key(r, &kn);
        const uint8_t *nul = kn > off ? memchr(k + off, 0, kn - off) : NULL;
        if (nul == NULL) { /* not a posting key: skip it */
            rocksdb_iter_next(r->it);
            continue;
        }
        size_t len = (size_t)(nul - k);
        buf_reset(str);
        buf_reset(seek);
        if (buf_append(str, k + off, len - off) != 0 || buf_append(seek, k, len) != 0 ||
            buf_append_byte(seek, 1) != 0)
            return ERR_NOMEM;
        /* key prefix + 0x01 sorts after every key prefix + 0x00 + ... */
        rocksdb_iter_seek(r->it, (const char *)seek->data, seek->len);
        return 1;
    }
    return 0;
}

/* Calls fn with every distinct string that follows prefix in postings. */
static int list_distinct(storage_t *s, const buf_t *prefix, storage_name_fn fn, void *ctx)
{
    buf_t hi, str, seek;
    buf_init(&hi, BUF_UNLIMITED);
    buf_init(&str, STORAGE_LABEL_MAX + 1);
    buf_init(&seek, BUF_UNLIMITED);
    int rc = buf_append(&hi, prefix->data, prefix->len);
    if (rc != 0) {
        buf_free(&hi);
        return rc;
    }
    hi.len = storage_prefix_successor(hi.data, hi.len);
    range_t r;
    range_open(s, &r, CF_POSTINGS, prefix->data, prefix->len, hi.data, hi.len);
    while (rc == 0 && (rc = next_distinct(&r, prefix->len, &str, &seek)) == 1)
        rc = fn(ctx, (const char *)str.data);
    rc = range_close(&r, rc);
    buf_free(&hi);
    buf_free(&str);
    buf_free(&seek);
    return rc;
}

/* tenant length, tenant, then optionally name 0x00 [value 0x00]. */
static int posting_prefix(buf_t *b, const char *tenant, const char *name, const char *value)
{
    size_t tn = strlen(tenant);
    int rc = buf_append_byte(b, (uint8_t)tn);
    if (rc == 0) rc = buf_append(b, tenant, tn);
    if (rc == 0 && name != NULL) rc = buf_append(b, name, strlen(name) + 1);
    if (rc == 0 && value != NULL) rc = buf_append(b, value, strlen(value) + 1);
    return rc == ERR_TOO_LARGE ? ERR_LIMIT : rc;
}

int storage_label_names(storage_t *s, const char *tenant, storage_name_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    buf_t prefix;
    buf_init(&prefix, 1 + STORAGE_TENANT_MAX);
    rc = posting_prefix(&prefix, tenant, NULL, NULL);
    if (rc == 0) rc = list_distinct(s, &prefix, fn, ctx);
    buf_free(&prefix);
    return rc;
}

int storage_label_values(storage_t *s, const char *tenant, const char *name, storage_name_fn fn,
                         void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || name == NULL) return rc != 0 ? rc : ERR_INVALID_ARGUMENT;
    buf_t prefix;
    buf_init(&prefix, 1 + STORAGE_TENANT_MAX + STORAGE_LABEL_MAX + 1);
    rc = posting_prefix(&prefix, tenant, name, NULL);
    if (rc == 0) rc = list_distinct(s, &prefix, fn, ctx);
    buf_free(&prefix);
    return rc;
}

int storage_postings(storage_t *s, const char *tenant, const char *name, const char *value,
                     storage_series_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || name == NULL || value == NULL) return rc != 0 ? rc : ERR_INVALID_ARGUMENT;
    buf_t lo, hi;
    buf_init(&lo, 1 + STORAGE_TENANT_MAX + 2 * (STORAGE_LABEL_MAX + 1));
    buf_init(&hi, BUF_UNLIMITED);
    rc = posting_prefix(&lo, tenant, name, value);
    if (rc == 0) rc = buf_append(&hi, lo.data, lo.len);
    if (rc != 0) {
        buf_free(&lo);
        buf_free(&hi);
        return rc;
    }
    hi.len = storage_prefix_successor(hi.data, hi.len);
    range_t r;
    range_open(s, &r, CF_POSTINGS, lo.data, lo.len, hi.data, hi.len);
    for (; rc == 0 && rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t kn;
        const uint8_t *k = range_key(&r, &kn);
        if (kn == lo.len + 16) /* every posting key has this length; defensive */
            rc = fn(ctx, be64_get(k + lo.len), be64_get(k + lo.len + 8));
    }
    rc = range_close(&r, rc);
    buf_free(&lo);
    buf_free(&hi);
    return rc;
}

int storage_series_labels(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          labels_t **out)
{
    *out = NULL;
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    skey_t k;
    char *err = NULL;
    storage_key_series(&k, token, tenant, series_id);
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_SERIES], (const char *)k.b, k.n, &err);
    rc = storage_rocks_err(err, NULL, "series lookup");
    if (rc == 0 && v == NULL) rc = ERR_NOT_FOUND;
    if (rc == 0) {
        size_t n;
        const char *p = rocksdb_pinnableslice_value(v, &n);
        rc = labels_decode((const uint8_t *)p, n, out);
    }
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

/* --- windows and spans -------------------------------------------------------- */

/* Whether window key k is read: a window past retention is gone, also
 * before compaction drops it (and its stack-node table may be collected
 * already: gc.c). */
static int window_wanted(storage_t *s, enum storage_cf cf, const uint8_t *k, size_t kn,
                         size_t key_len)
{
    return kn == key_len && !storage_filter_expired(s, cf, k, kn, NULL, 0);
}

/* The keys bounding a series' windows of resolution res in [from_s,
 * until_s): 0, 1 when the span is empty (nothing to scan) or an error. */
static int window_bounds(const char *tenant, uint64_t token, uint64_t series_id, int res,
                         int64_t from_s, int64_t until_s, skey_t *lo, skey_t *hi)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    if (res < 0 || res >= STORAGE_RESOLUTION_COUNT) return ERR_INVALID_ARGUMENT;
    if (from_s >= until_s) return 1;
    storage_key_window(lo, token, tenant, series_id, res, from_s);
    storage_key_window(hi, token, tenant, series_id, res, until_s);
    return 0;
}

/* ---- scans sharing their iterators ---- */

struct storage_scans {
    storage_t *s;
    rocksdb_iterator_t *it[CF_COUNT]; /* unbounded; NULL until first used */
};

int storage_scans_open(storage_t *s, storage_scans_t **out)
{
    storage_scans_t *x = calloc(1, sizeof *x);
    if (x == NULL) return ERR_NOMEM;
    x->s = s;
    *out = x;
    return 0;
}

void storage_scans_close(storage_scans_t *x)
{
    if (x == NULL) return;
    for (int cf = 0; cf < CF_COUNT; cf++)
        if (x->it[cf] != NULL) rocksdb_iter_destroy(x->it[cf]);
    free(x);
}

storage_t *storage_scans_store(const storage_scans_t *x)
{
    return x->s;
}

rocksdb_iterator_t *storage_scans_iter(storage_scans_t *x, enum storage_cf cf)
{
    if (x == NULL) return NULL;
    if (x->it[cf] == NULL)
        x->it[cf] = rocksdb_create_iterator_cf(x->s->db, x->s->ropts, x->s->cf[cf]);
    return x->it[cf];
}

/* Whether key k (n bytes) sorts before hi (RocksDB's bytewise order). */
static int key_before(const uint8_t *k, size_t n, const skey_t *hi)
{
    size_t m = n < hi->n ? n : hi->n;
    int c = memcmp(k, hi->b, m);
    return c < 0 || (c == 0 && n < hi->n);
}

int storage_scans_window_values(storage_scans_t *x, enum storage_cf cf, const char *tenant,
                                uint64_t token, uint64_t series_id, int res, int64_t from_s,
                                int64_t until_s,
                                int (*fn)(void *ctx, int64_t window, const uint8_t *v, size_t n),
                                void *ctx)
{
    skey_t lo, hi;
    int rc = window_bounds(tenant, token, series_id, res, from_s, until_s, &lo, &hi);
    if (rc != 0) return rc < 0 ? rc : 0;
    rocksdb_iterator_t *it = storage_scans_iter(x, cf);
    for (rocksdb_iter_seek(it, (const char *)lo.b, lo.n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (!key_before(k, kn, &hi)) break; /* the iterator has no bound: hi ends the scan */
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (window_wanted(x->s, cf, k, kn, lo.n))
            rc = fn(ctx, storage_time_decode(k + kn - 8), v, vn);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "scan");
    return ioerr != 0 ? ioerr : rc;
}

int storage_scan_window_values(storage_t *s, enum storage_cf cf, const char *tenant, uint64_t token,
                               uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                               int (*fn)(void *ctx, int64_t window, const uint8_t *v, size_t n),
                               void *ctx)
{
    skey_t lo, hi;
    int rc = window_bounds(tenant, token, series_id, res, from_s, until_s, &lo, &hi);
    if (rc != 0) return rc < 0 ? rc : 0;
    range_t r;
    range_open(s, &r, cf, lo.b, lo.n, hi.b, hi.n);
    for (; rc == 0 && rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t kn, vn;
        const uint8_t *k = range_key(&r, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(r.it, &vn);
        if (window_wanted(s, cf, k, kn, lo.n)) rc = fn(ctx, storage_time_decode(k + kn - 8), v, vn);
    }
    return range_close(&r, rc);
}

/* A block scan handing over what a window holds as it lies. */
typedef struct parts_scan {
    storage_t *s;
    size_t key_len; /* a window key's */
    storage_parts_fn fn;
    void *ctx;
    int rc;   /* fn's first error */
    int took; /* the merge handed over the key the iterator is at */
} parts_scan_t;

/* The sink of the blocks merge operator (storage_merge_sink): the key's
 * operands handed to fn while RocksDB holds them. RocksDB merges the key
 * the iterator lands on as it lands there, so the scan then skips the
 * merge's value (SPARSE_TAKEN), whatever a stored value may hold. */
static void parts_take(void *ctx, const uint8_t *key, size_t key_len, const char *base,
                       size_t base_len, const char *const *ops, const size_t *op_lens, int nops)
{
    parts_scan_t *p = ctx;
    p->took = 1;
    if (p->rc != 0 || !window_wanted(p->s, CF_BLOCKS, key, key_len, p->key_len)) return;
    p->rc =
        p->fn(p->ctx, storage_time_decode(key + key_len - 8), base, base_len, ops, op_lens, nops);
}

int storage_scan_window_parts(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                              int res, int64_t from_s, int64_t until_s, storage_parts_fn fn,
                              void *ctx)
{
    skey_t lo, hi;
    int rc = window_bounds(tenant, token, series_id, res, from_s, until_s, &lo, &hi);
    if (rc != 0) return rc < 0 ? rc : 0;
    parts_scan_t p = {.s = s, .key_len = lo.n, .fn = fn, .ctx = ctx};
    storage_merge_sink_t sink = {.take = parts_take, .ctx = &p};
    storage_merge_sink(&sink); /* set before the seek: it merges the first key */
    range_t r;
    range_open(s, &r, CF_BLOCKS, lo.b, lo.n, hi.b, hi.n);
    for (; rc == 0 && rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t kn, vn;
        const uint8_t *k = range_key(&r, &kn);
        if (!p.took && window_wanted(s, CF_BLOCKS, k, kn, lo.n)) { /* a value alone */
            const char *v = rocksdb_iter_value(r.it, &vn);
            p.rc = fn(ctx, storage_time_decode(k + kn - 8), v, vn, NULL, NULL, 0);
        }
        p.took = 0;
        rc = p.rc; /* which also stops the merges' handing over */
    }
    storage_merge_sink(NULL);
    return range_close(&r, rc != 0 ? rc : p.rc); /* the last key's merge may have failed */
}

/* The trees of 10 s windows kept in no block (storage_scan_unblocked),
 * summed per window, in window order. */
typedef struct unblocked {
    storage_t *s;
    int64_t *window;
    sparse_vec_t *sum;
    size_t n, cap, next; /* next: the first window not handed on yet */
    sparse_vec_t one, tmp;
} unblocked_t;

typedef struct block_ctx {
    storage_block_fn fn;
    storage_total_fn tfn;
    void *ctx;
    storage_t *s;
    nodetab_t *tab; /* locked for the scan */
    sparse_vec_t vec;
    buf_t enc;
    uint32_t *path; /* scratch: one stack, leaf first */
    unblocked_t ub;
} block_ctx_t;

static int unblocked_add(void *ctx, int64_t window, const uint8_t *enc, size_t len,
                         const sparse_vec_t *vec)
{
    unblocked_t *u = ctx;
    if (enc != NULL) {
        int rc = storage_sparse_decode(enc, len, &u->one);
        if (rc == ERR_NOMEM) return rc;
        if (rc != 0) { /* skipped, as a corrupt block is */
            storage_log_corrupt(&u->s->counters, "profile tree", 0, rc);
            return 0;
        }
        vec = &u->one;
    }
    if (u->n == 0 || u->window[u->n - 1] != window) {
        if (u->n == u->cap) {
            size_t cap = u->cap ? 2 * u->cap : 16;
            int64_t *w = realloc(u->window, cap * sizeof *w);
            if (w == NULL) return ERR_NOMEM;
            u->window = w;
            sparse_vec_t *v = realloc(u->sum, cap * sizeof *v);
            if (v == NULL) return ERR_NOMEM;
            u->sum = v;
            u->cap = cap;
        }
        u->window[u->n] = window;
        storage_sparse_init(&u->sum[u->n++]);
    }
    return storage_sparse_add(&u->sum[u->n - 1], vec, &u->tmp);
}

static void unblocked_free(unblocked_t *u)
{
    for (size_t i = 0; i < u->n; i++)
        storage_sparse_free(&u->sum[i]);
    free(u->window);
    free(u->sum);
    storage_sparse_free(&u->one);
    storage_sparse_free(&u->tmp);
}

/* Rebuilds the call tree of one window's vector (stack-node ids ->
 * symbols) and hands its version-1 calltree encoding to the caller. */
static int window_out(block_ctx_t *b, int64_t window, const sparse_vec_t *vec)
{
    int rc = 0;
    calltree_t *t = calltree_new(0);
    if (t == NULL) return ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < vec->n; i++) {
        uint32_t id = vec->id[i], path_len = 0, *path = b->path;
        if (id >= storage_nodetab_count(b->tab)) continue;
        /* parents have smaller ids, so a path is at most id + 1 long */
        for (uint32_t k = id; k != 0; k = storage_nodetab_parent(b->tab, k))
            path[path_len++] = k;
        uint32_t node = 0;
        while (rc == 0 && path_len > 0)
            rc = calltree_child(t, node, storage_nodetab_sym(b->tab, path[--path_len]), &node);
        if (rc == 0) calltree_add_self(t, node, vec->val[i]);
    }
    buf_reset(&b->enc);
    if (rc == 0) rc = calltree_encode(t, &b->enc);
    calltree_free(t);
    return rc == 0 ? b->fn(b->ctx, window, b->enc.data, b->enc.len) : rc;
}

/* Hands on the windows of unblocked trees before window (with no block). */
static int unblocked_before(block_ctx_t *b, int64_t window)
{
    unblocked_t *u = &b->ub;
    int rc = 0;
    for (; rc == 0 && u->next < u->n && u->window[u->next] < window; u->next++)
        rc = window_out(b, u->window[u->next], &u->sum[u->next]);
    return rc;
}

/* One stored block, with the unblocked trees of its window added. */
static int block_cb(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    block_ctx_t *b = ctx;
    int rc = unblocked_before(b, window);
    if (rc != 0) return rc;
    rc = storage_sparse_decode(v, n, &b->vec);
    if (rc == ERR_NOMEM) return rc;
    if (rc != 0) {
        storage_log_corrupt(&b->s->counters, "stored block", 0, rc);
        b->vec.n = 0;
        if (b->ub.next >= b->ub.n || b->ub.window[b->ub.next] != window) return 0;
    }
    unblocked_t *u = &b->ub;
    if (u->next < u->n && u->window[u->next] == window) {
        rc = storage_sparse_add(&b->vec, &u->sum[u->next++], &u->tmp);
        if (rc != 0) return rc;
    }
    return window_out(b, window, &b->vec);
}

static int total_cb(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    block_ctx_t *b = ctx;
    if (n != 8) {
        log_warn("storage", "total of window %lld has %zu bytes, not 8: skipped", (long long)window,
                 n);
        return 0;
    }
    return b->tfn(b->ctx, window, storage_i64_get(v));
}

int storage_scan_blocks(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                        int res, int64_t from_s, int64_t until_s, storage_block_fn fn, void *ctx)
{
    nodetab_t *t;
    int rc = storage_check_tenant(tenant, NULL);
    if (rc == 0) rc = storage_nodetab_acquire(s, token, tenant, &t, NULL);
    if (rc != 0) return rc;
    block_ctx_t b = {.fn = fn, .ctx = ctx, .s = s, .tab = t, .ub = {.s = s}};
    b.path = malloc(((size_t)storage_nodetab_count(t) + 1) * sizeof *b.path);
    if (b.path == NULL) {
        storage_nodetab_release(s, t, 0);
        return ERR_NOMEM;
    }
    storage_sparse_init(&b.vec);
    buf_init(&b.enc, STORAGE_VALUE_MAX);
    /* a 10 s window is its block and the trees kept in no block: those are
     * read first, summed per window, and handed on in window order */
    if (res == 0)
        rc = storage_scan_unblocked(s, NULL, tenant, token, series_id, from_s, until_s, 0,
                                    unblocked_add, &b.ub);
    if (rc == 0)
        rc = storage_scan_window_values(s, CF_BLOCKS, tenant, token, series_id, res, from_s,
                                        until_s, block_cb, &b);
    if (rc == 0) rc = unblocked_before(&b, INT64_MAX);
    if (rc == 0 && b.ub.next < b.ub.n) /* a window starting at INT64_MAX */
        rc = window_out(&b, b.ub.window[b.ub.next], &b.ub.sum[b.ub.next]);
    storage_nodetab_release(s, t, 0);
    free(b.path);
    unblocked_free(&b.ub);
    storage_sparse_free(&b.vec);
    buf_free(&b.enc);
    return rc;
}

int storage_scan_totals(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                        int res, int64_t from_s, int64_t until_s, storage_total_fn fn, void *ctx)
{
    block_ctx_t b = {.tfn = fn, .ctx = ctx};
    return storage_scan_window_values(s, CF_TOTALS, tenant, token, series_id, res, from_s, until_s,
                                      total_cb, &b);
}

/* A profiles entry: series prefix | profile_id -> time_ns, total, written_s. */
int storage_scan_profiles(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          int64_t from_s, int64_t until_s, storage_profile_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || from_s >= until_s) return rc;
    skey_t lo, hi;
    storage_key_series(&lo, token, tenant, series_id);
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    int64_t keep = s->opts.seen_retention_seconds, now = storage_now(s);
    range_t r;
    range_open(s, &r, CF_PROFILES, lo.b, lo.n, hi.b, hi.n);
    for (; rc == 0 && rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t kn, vn;
        const uint8_t *k = range_key(&r, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(r.it, &vn);
        if (kn != lo.n + 16 || vn != STORAGE_PROFILE_VALUE_LEN) continue;
        if (keep > 0 && storage_i64_get(v + 16) + keep <= now) continue; /* expired */
        int64_t time_ns = storage_i64_get(v);
        int64_t t = time_ns / 1000000000 - (time_ns % 1000000000 < 0); /* floor */
        if (t >= from_s && t < until_s) rc = fn(ctx, k + lo.n, time_ns, storage_i64_get(v + 8));
    }
    return range_close(&r, rc);
}

/* A span key: prefix, token, series_id, window. Keys without the window
 * (written before span windows existed) have no time to select on and are
 * skipped here and dropped by compaction (filter.c). */
int storage_scan_spans(storage_t *s, const char *tenant, uint8_t kind, uint64_t id, int64_t from_s,
                       int64_t until_s, storage_span_fn fn, void *ctx)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0 || from_s >= until_s) return rc;
    skey_t lo, hi;
    storage_key_span_prefix(&lo, tenant, kind, id);
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    range_t r;
    range_open(s, &r, CF_SPANS, lo.b, lo.n, hi.b, hi.n);
    buf_t tmp; /* the sum of a value with several members */
    buf_init(&tmp, STORAGE_VALUE_MAX);
    for (; rc == 0 && rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t kn, vn;
        const uint8_t *k = range_key(&r, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(r.it, &vn);
        if (kn != lo.n + 24) continue;
        int64_t w = storage_time_decode(k + lo.n + 16);
        if (w < from_s || w >= until_s) continue;
        const uint8_t *tree;
        size_t tn;
        int partial = 0;
        rc = storage_spanval_calltree(s, v, vn, &tmp, &tree, &tn, &partial);
        unsigned flags = partial ? STORAGE_SPAN_PARTIAL : 0;
        if (rc == 0) rc = fn(ctx, be64_get(k + lo.n), be64_get(k + lo.n + 8), w, flags, tree, tn);
    }
    buf_free(&tmp);
    return range_close(&r, rc);
}

/* --- symbols ------------------------------------------------------------------ */

static int put_loaded(storage_t *s, uint64_t tenant_hash, symtab_t *dst, uint64_t id, const char *v,
                      size_t n)
{
    const char *name, *file;
    size_t nn, fn;
    if (storage_symbol_decode((const uint8_t *)v, n, &name, &nn, &file, &fn) != 0) {
        log_warn("storage", "symbol %016llx: corrupt value skipped", (unsigned long long)id);
        return 0;
    }
    storage_symcache_put(&s->symcache, tenant_hash, id, name, nn, file, fn);
    return symtab_put(dst, id, name, nn, file, fn);
}

static int load_batch(storage_t *s, const char *tenant, uint64_t tenant_hash, const uint64_t *ids,
                      size_t n, symtab_t *dst)
{
    /* Callers pass 1..SYMBOL_BATCH ids; the key arrays are zeroed because the
     * compiler cannot see that the loop below fills the n entries RocksDB reads. */
    if (n == 0 || n > SYMBOL_BATCH) return n == 0 ? 0 : ERR_INVALID_ARGUMENT;
    skey_t keys[SYMBOL_BATCH];
    const char *kp[SYMBOL_BATCH] = {0};
    size_t kl[SYMBOL_BATCH] = {0}, vl[SYMBOL_BATCH];
    char *vals[SYMBOL_BATCH], *errs[SYMBOL_BATCH];
    const rocksdb_column_family_handle_t *cfs[SYMBOL_BATCH] = {0};
    for (size_t i = 0; i < n; i++) {
        storage_key_symbol(&keys[i], tenant, ids[i]);
        kp[i] = (const char *)keys[i].b;
        kl[i] = keys[i].n;
        cfs[i] = s->cf[CF_SYMBOLS];
    }
    rocksdb_multi_get_cf(s->db, s->ropts, cfs, n, kp, kl, vals, vl, errs);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int erc = storage_rocks_err(errs[i], NULL, "symbol lookup");
        if (rc == 0) rc = erc;
        if (rc == 0 && vals[i] != NULL)
            rc = put_loaded(s, tenant_hash, dst, ids[i], vals[i], vl[i]);
        free(vals[i]);
    }
    return rc;
}

/* The ids of one batch: those the cache holds copied into dst, the others
 * gathered in miss (*nmiss of them) and loaded SYMBOL_BATCH at a time, in
 * the order of ids as one lookup per id would. */
static int load_chunk(storage_t *s, const char *tenant, uint64_t th, const uint64_t *ids, size_t n,
                      uint64_t *miss, size_t *nmiss, buf_t *names, symtab_t *dst)
{
    symcache_hit_t hits[SYMCACHE_BATCH];
    int rc = storage_symcache_get_many(&s->symcache, th, ids, n, hits, names);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (hits[i].hit) {
            const char *name = (const char *)names->data + hits[i].off;
            rc = symtab_put_hashed(dst, ids[i], name, hits[i].name_len, name + hits[i].name_len + 1,
                                   hits[i].file_used, hits[i].file_hash);
            continue;
        }
        miss[(*nmiss)++] = ids[i];
        if (*nmiss == SYMBOL_BATCH) {
            rc = load_batch(s, tenant, th, miss, *nmiss, dst);
            *nmiss = 0;
        }
    }
    return rc;
}

int storage_load_symbols(storage_t *s, const char *tenant, const uint64_t *ids, size_t n,
                         symtab_t *dst)
{
    int rc = storage_check_tenant(tenant, NULL);
    if (rc != 0) return rc;
    /* a table filled from empty is sized once for the ids (most are found),
     * not grown by half again five times on the way to a render's 1,300 */
    if (symtab_count(dst) == 0 && (rc = symtab_reserve(dst, n)) != 0) return rc;
    uint64_t th = hash_bytes64(tenant, strlen(tenant));
    uint64_t miss[SYMBOL_BATCH];
    size_t nmiss = 0;
    buf_t names; /* a batch's cached symbols: at most SYMCACHE_BATCH names and files */
    buf_init(&names, BUF_UNLIMITED);
    for (size_t i = 0; rc == 0 && i < n; i += SYMCACHE_BATCH) {
        size_t m = n - i < SYMCACHE_BATCH ? n - i : SYMCACHE_BATCH;
        rc = load_chunk(s, tenant, th, ids + i, m, miss, &nmiss, &names, dst);
    }
    buf_free(&names);
    if (rc == 0 && nmiss > 0) rc = load_batch(s, tenant, th, miss, nmiss, dst);
    return rc;
}
