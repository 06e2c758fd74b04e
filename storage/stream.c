/* stream.c — whole windows for a node that gains a token range
 * (storage.h, "Streaming whole windows"; docs/cluster.md).
 *
 * The anti-entropy pass moves profiles one by one through the seen index,
 * which forgets ids after seen retention and cannot move a profile whose
 * tree was not kept. A gaining node therefore also receives every stored
 * window of its ranges, as a residual: the window's block and total minus
 * the kept trees of the profiles of that window (`profile_trees`). Those
 * profiles travel on their own (repair's FETCH, stored through
 * storage_write_profile, which skips one already stored), so the residual
 * plus the profiles is the source's window exactly, whatever the receiver
 * already got by live writes. The receiver stores a residual together with
 * a marker in one batch and skips a window whose marker exists, so a
 * stream resumed after a crash of either side counts nothing twice.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"
#include "common/varint.h"
#include "storage/storage_int.h"

#define WINDOW_KEY_FIXED (8 + 1 + 8 + 1 + 8) /* token, tenant length, series, res, window */

static int64_t ns_of(int64_t t)
{
    if (t >= INT64_MAX / 1000000000) return INT64_MAX;
    if (t <= INT64_MIN / 1000000000) return INT64_MIN;
    return t * 1000000000;
}

/* ---------------------------------------------------------------- source */

typedef struct profs {
    storage_stream_profile_t *v;
    size_t n, cap;
} profs_t;

static int profs_add(profs_t *p, const uint8_t *id, int64_t time_ns, int64_t total)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        storage_stream_profile_t *v = realloc(p->v, cap * sizeof *v);
        if (v == NULL) return ERR_NOMEM;
        p->v = v;
        p->cap = cap;
    }
    storage_stream_profile_t *x = &p->v[p->n++];
    memcpy(x->profile_id, id, 16);
    x->time_ns = time_ns;
    x->total = total;
    return 0;
}

typedef struct wscan {
    storage_t *s;
    /* every read of a scan sees the store as the block walk does: a write
     * committed during the scan is then either in a window and its listed
     * profiles or in neither (else its kept tree would come off a residual
     * that never counted it) */
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ro; /* point reads, at snap */
    sparse_vec_t acc, one, tmp;
    profs_t kept, untreed;
    int64_t total;
    /* the seen entries of the series being scanned, by time (seen_load) */
    skey_t series;
    profs_t seen;
    /* profile ids of the window's profile_trees entries (kept or not) */
    profs_t in_window;
    /* whether the series of the last key looked up has a `series` entry:
     * service aggregates (aggregate.c) have none and are not streamed, the
     * receiver adds the streamed series' residuals to its own */
    skey_t looked;
    int listed;
    /* entries the four lists above may hold together
     * (storage_options_t.stream_window_max_profiles) */
    size_t max_profiles;
    buf_t wprof; /* the residual's window profiles (wprofiles.c) */
} wscan_t;

/* profs_add into one of x's lists, ERR_LIMIT once the lists of the window
 * being read (and its series' seen entries) hold x->max_profiles entries:
 * the window is refused, never sent with a list cut short. */
static int wadd(wscan_t *x, profs_t *p, const uint8_t *id, int64_t time_ns, int64_t total)
{
    if (x->kept.n + x->untreed.n + x->in_window.n + x->seen.n >= x->max_profiles) return ERR_LIMIT;
    return profs_add(p, id, time_ns, total);
}

static int cmp_time(const void *a, const void *b)
{
    const storage_stream_profile_t *x = a, *y = b;
    return x->time_ns < y->time_ns ? -1 : x->time_ns > y->time_ns;
}

/* The seen entries of the series (key prefix p), sorted by time, once per
 * series: a window names those without a profile_trees entry (their tree
 * went past profile retention) as untreed, so the receiver records them as
 * seen and the seen comparison does not look for them. */
static int seen_load(wscan_t *x, const skey_t *p)
{
    if (x->series.n == p->n && memcmp(x->series.b, p->b, p->n) == 0) return 0;
    x->series = *p;
    x->seen.n = 0;
    skey_t hi = *p;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    if (x->snap != NULL) rocksdb_readoptions_set_snapshot(ro, x->snap);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(x->s->db, ro, x->s->cf[CF_PROFILES]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)p->b, p->n); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != p->n + 16 || vn != STORAGE_PROFILE_VALUE_LEN) continue;
        if (storage_filter_expired(x->s, CF_PROFILES, k, kn, v, vn)) continue;
        rc = wadd(x, &x->seen, k + p->n, storage_i64_get(v), storage_i64_get(v + 8));
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "stream: seen entries");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0 && ioerr == 0) qsort(x->seen.v, x->seen.n, sizeof *x->seen.v, cmp_time);
    if (rc != 0 || ioerr != 0) x->series.n = 0; /* loaded again next time */
    return ioerr != 0 ? ioerr : rc;
}

/* Adds to untreed the seen entries in [from_ns, until_ns) that have no
 * profile_trees entry in the window. */
static int seen_untreed(wscan_t *x, int64_t from_ns, int64_t until_ns)
{
    size_t lo = 0, hi = x->seen.n;
    while (lo < hi) { /* first entry at or after from_ns */
        size_t mid = lo + (hi - lo) / 2;
        if (x->seen.v[mid].time_ns < from_ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    int rc = 0;
    for (size_t i = lo; rc == 0 && i < x->seen.n && x->seen.v[i].time_ns < until_ns; i++) {
        const storage_stream_profile_t *e = &x->seen.v[i];
        int found = 0;
        for (size_t j = 0; !found && j < x->in_window.n; j++)
            found = memcmp(x->in_window.v[j].profile_id, e->profile_id, 16) == 0;
        if (!found) rc = wadd(x, &x->untreed, e->profile_id, e->time_ns, e->total);
    }
    return rc;
}

/* Adds the tree of profile_trees value v (key k) times sign (1 or -1) into
 * acc; 1 when it did, 0 when the tree does not decode (counted corrupt). */
static int add_tree(wscan_t *x, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn, int sign)
{
    int rc = storage_ptree_vec(x->s, x->ro, k, kn, v, vn, &x->one);
    if (rc != 0) {
        storage_log_corrupt(&x->s->counters, "profile tree", 0, rc);
        return rc == ERR_NOMEM ? rc : 0;
    }
    if (sign < 0)
        for (size_t i = 0; i < x->one.n; i++)
            x->one.val[i] = (int64_t)(0 - (uint64_t)x->one.val[i]);
    rc = storage_sparse_add(&x->acc, &x->one, &x->tmp);
    return rc != 0 ? rc : 1;
}

/* Takes the kept trees of the series' profiles in [w, w + res) off acc and
 * total, and lists the profiles. At resolution 0 (ten_s) the window is its
 * block plus the trees flagged PTREE_FLAG_UNBLOCKED: a flagged tree that is
 * listed is in the window and not in acc, so only its total comes off; one
 * past profile retention, not listed, is added to acc (the residual then
 * holds it, as a block would). */
static int subtract_profiles(wscan_t *x, const char *tenant, uint64_t token, uint64_t series_id,
                             int64_t w, int64_t res, int ten_s)
{
    static const uint8_t zero[16] = {0};
    skey_t lo, hi;
    storage_key_ptree(&lo, token, tenant, series_id, ns_of(w), zero);
    storage_key_ptree(&hi, token, tenant, series_id, ns_of(w + res), zero);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo.b, lo.n);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi.b, hi.n);
    if (x->snap != NULL) rocksdb_readoptions_set_snapshot(ro, x->snap);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(x->s->db, ro, x->s->cf[CF_PTREES]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        if (kn != lo.n || vn < PTREE_HEADER_LEN || v[0] != PTREE_VERSION) continue;
        int64_t t = storage_time_decode(k + kn - 24), tot = storage_i64_get(v + 2);
        int flagged =
            ten_s && (v[1] & (PTREE_FLAG_UNBLOCKED | PTREE_FLAG_NO_TREE)) == PTREE_FLAG_UNBLOCKED;
        if (storage_ptree_expired(x->s, t)) { /* as compaction would drop it, unless flagged */
            if (flagged) rc = add_tree(x, k, kn, v, vn, 1);
            rc = rc < 0 ? rc : 0;
            continue;
        }
        if ((rc = wadd(x, &x->in_window, k + kn - 16, t, tot)) != 0) break;
        if (v[1] & PTREE_FLAG_NO_TREE) {
            rc = wadd(x, &x->untreed, k + kn - 16, t, tot);
            continue;
        }
        /* a kept tree in the block comes off it; a flagged one is in no
         * block: it is named only when it decodes, as the window's readers
         * skip one that does not (storage_scan_unblocked) */
        if (flagged) {
            rc = storage_ptree_vec(x->s, x->ro, k, kn, v, vn, &x->one);
            if (rc != 0) storage_log_corrupt(&x->s->counters, "profile tree", 0, rc);
            rc = rc == 0 ? 1 : rc == ERR_NOMEM ? rc : 0;
        } else {
            rc = add_tree(x, k, kn, v, vn, -1);
        }
        if (rc <= 0) continue; /* cannot take it off: it stays in the residual, not named */
        rc = wadd(x, &x->kept, k + kn - 16, t, tot);
        x->total = (int64_t)((uint64_t)x->total - (uint64_t)tot);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    int ioerr = storage_rocks_err(err, NULL, "stream: profile trees");
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    skey_t p;
    storage_key_series(&p, token, tenant, series_id);
    if (rc == 0 && ioerr == 0) rc = seen_load(x, &p);
    if (rc == 0 && ioerr == 0) rc = seen_untreed(x, ns_of(w), ns_of(w + res));
    return ioerr != 0 ? ioerr : rc;
}

/* The residual vector as a call tree over the token's node table. */
static int residual_tree(storage_t *s, const char *tenant, uint64_t token, const sparse_vec_t *v,
                         calltree_t *dst)
{
    nodetab_t *t;
    int rc = storage_nodetab_acquire(s, token, tenant, &t, NULL);
    if (rc != 0) return rc;
    uint32_t count = storage_nodetab_count(t);
    uint32_t *path = malloc(((size_t)count + 1) * sizeof *path);
    if (path == NULL) rc = ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < v->n; i++) {
        uint32_t id = v->id[i], len = 0, node = 0;
        if (v->val[i] == 0) continue;
        if (id >= count) {
            log_warn("stream", "block of token %016llx names node %u of %u: skipped",
                     (unsigned long long)token, id, count);
            continue;
        }
        for (uint32_t k = id; k != 0; k = storage_nodetab_parent(t, k))
            path[len++] = k;
        while (rc == 0 && len > 0)
            rc = calltree_child(dst, node, storage_nodetab_sym(t, path[--len]), &node);
        if (rc == 0) calltree_add_self(dst, node, v->val[i]);
    }
    storage_nodetab_release(s, t, 0);
    free(path);
    return rc;
}

/* The parts of window key k (token | tenant | series_id | res | window);
 * tenant (STORAGE_TENANT_MAX + 1 bytes) gets the tenant, NUL-ended. */
static void key_parts(const uint8_t *k, char *tenant, uint64_t *token, uint64_t *series_id,
                      int *res, int64_t *window_s)
{
    size_t tl = k[8];
    memcpy(tenant, k + 9, tl);
    tenant[tl] = 0;
    *token = be64_get(k);
    *series_id = be64_get(k + 9 + tl);
    *res = k[17 + tl];
    *window_s = storage_time_decode(k + 18 + tl);
}

/* One window (its `totals` key k and value tv): its residual handed to fn.
 * A window with no block is one of the trees kept in no block alone (at
 * resolution 0, format 11) or only a total, which a coarser window never
 * was streamed for: skipped there, as before. */
static int one_window(wscan_t *x, const uint8_t *k, size_t kn, const uint8_t *tv, size_t tn,
                      storage_stream_fn fn, void *ctx)
{
    char tenant[STORAGE_TENANT_MAX + 1];
    storage_stream_window_t w = {.tenant = tenant, .key = k, .key_len = kn};
    key_parts(k, tenant, &w.token, &w.series_id, &w.res, &w.window_s);
    char *err = NULL;
    rocksdb_pinnableslice_t *bv =
        rocksdb_get_pinned_cf(x->s->db, x->ro, x->s->cf[CF_BLOCKS], (const char *)k, kn, &err);
    int rc = storage_rocks_err(err, NULL, "stream: block");
    if (rc != 0 || (bv == NULL && w.res != 0)) {
        rocksdb_pinnableslice_destroy(bv);
        return rc;
    }
    x->acc.n = 0;
    if (bv != NULL) {
        size_t vn;
        const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(bv, &vn);
        rc = storage_sparse_decode(v, vn, &x->acc);
        rocksdb_pinnableslice_destroy(bv);
        if (rc != 0) {
            storage_log_corrupt(&x->s->counters, "stream: block", 0, rc);
            if (rc == ERR_NOMEM) return rc;
            x->acc.n = 0;
            rc = 0;
        }
    }
    x->total = tn == 8 ? storage_i64_get(tv) : 0;
    x->kept.n = x->untreed.n = x->in_window.n = 0;
    if (rc == 0)
        rc = subtract_profiles(x, tenant, w.token, w.series_id, w.window_s,
                               storage_resolutions[w.res], w.res == 0);
    if (rc == ERR_LIMIT) {
        x->series.n = 0; /* the seen entries are loaded again for the next window */
        log_warn("stream",
                 "window %lld (resolution %u s) of series %016llx (tenant %s): its profile lists "
                 "and its series' seen entries take more than --stream-window-max-profiles "
                 "(%zu): refused, not sent short",
                 (long long)w.window_s, storage_resolutions[w.res], (unsigned long long)w.series_id,
                 tenant, x->max_profiles);
    }
    calltree_t *t = rc == 0 ? calltree_new(0) : NULL;
    if (rc == 0 && t == NULL) rc = ERR_NOMEM;
    if (rc == 0) rc = residual_tree(x->s, tenant, w.token, &x->acc, t);
    if (rc == 0)
        rc = storage_wprof_residual(x->s, x->ro, k, kn, tn == 8 ? storage_i64_get(tv) : 0,
                                    x->kept.v, x->kept.n, x->total, &x->wprof);
    if (rc == 0) {
        w.residual = t;
        w.total = x->total;
        w.wprof = x->wprof.data;
        w.wprof_len = x->wprof.len;
        w.kept = x->kept.v;
        w.nkept = x->kept.n;
        w.untreed = x->untreed.v;
        w.nuntreed = x->untreed.n;
        rc = fn(ctx, &w);
    }
    calltree_free(t);
    return rc;
}

/* Whether the series of window key k (token | tenant | series_id | ...) has
 * a `series` entry; the answer for the previous key's series is reused. */
static int series_listed(wscan_t *x, const uint8_t *k, size_t kn)
{
    size_t n = kn - 9; /* without res and window */
    if (x->looked.n == n && memcmp(x->looked.b, k, n) == 0) return x->listed;
    memcpy(x->looked.b, k, n);
    x->looked.n = n;
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(x->s->db, x->ro, x->s->cf[CF_SERIES], (const char *)k, n, &err);
    x->listed = err != NULL || v != NULL; /* unsure: stream it (the receiver checks labels) */
    free(err);
    rocksdb_pinnableslice_destroy(v);
    return x->listed;
}

/* One walk over the keys of cf whose token is in [lo, hi], from lo. hk is
 * the caller's (it holds the upper bound and must outlive the walk). */
typedef struct token_walk {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint8_t hk[8];
} token_walk_t;

static void walk_open(storage_t *s, enum storage_cf cf, uint64_t lo, uint64_t hi,
                      const rocksdb_snapshot_t *snap, token_walk_t *w)
{
    uint8_t lk[8];
    be64_put(lk, lo);
    be64_put(w->hk, hi + 1);
    w->ro = rocksdb_readoptions_create();
    if (snap != NULL) rocksdb_readoptions_set_snapshot(w->ro, snap);
    if (hi != UINT64_MAX)
        rocksdb_readoptions_set_iterate_upper_bound(w->ro, (const char *)w->hk, 8);
    w->it = rocksdb_create_iterator_cf(s->db, w->ro, s->cf[cf]);
    rocksdb_iter_seek(w->it, (const char *)lk, 8);
}

/* Ends the walk; rc, or the iterator's error (what: for the message). */
static int walk_close(token_walk_t *w, int rc, const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(w->it, &err);
    int ioerr = storage_rocks_err(err, NULL, what);
    rocksdb_iter_destroy(w->it);
    rocksdb_readoptions_destroy(w->ro);
    return ioerr != 0 ? ioerr : rc;
}

/* Whether k is a window key (token | tenant | series_id | res | window) of a
 * known resolution. */
static int window_key(const uint8_t *k, size_t kn)
{
    return kn >= 9 && k[8] != 0 && kn == WINDOW_KEY_FIXED + (size_t)k[8] &&
           k[17 + k[8]] < STORAGE_RESOLUTION_COUNT;
}

/* Whether window key k ends after until_s (0: no bound). */
static int ends_after(const uint8_t *k, size_t kn, int64_t until_s)
{
    if (until_s == 0) return 0;
    int res = k[17 + k[8]];
    return storage_time_decode(k + kn - 8) + (int64_t)storage_resolutions[res] > until_s;
}

static void wscan_open(storage_t *s, wscan_t *x)
{
    memset(x, 0, sizeof *x);
    x->s = s;
    x->snap = rocksdb_create_snapshot(s->db);
    x->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(x->ro, x->snap);
    x->max_profiles = s->opts.stream_window_max_profiles;
    buf_init(&x->wprof, STORAGE_VALUE_MAX);
    storage_sparse_init(&x->acc);
    storage_sparse_init(&x->one);
    storage_sparse_init(&x->tmp);
}

static void wscan_close(wscan_t *x)
{
    rocksdb_readoptions_destroy(x->ro);
    rocksdb_release_snapshot(x->s->db, x->snap);
    buf_free(&x->wprof);
    storage_sparse_free(&x->acc);
    storage_sparse_free(&x->one);
    storage_sparse_free(&x->tmp);
    free(x->kept.v);
    free(x->untreed.v);
    free(x->seen.v);
    free(x->in_window.v);
}

/* Called with each window the walk of walk_windows keeps: its key k (kn)
 * and its total's value v (vn); nonzero stops the walk. */
typedef int (*window_fn)(wscan_t *x, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                         void *arg);

/* Walks x's snapshot of the window totals with token in [lo, hi], after key
 * after (after_len; 0: from lo), skipping windows that end after until_s,
 * have expired or whose series is no longer listed (a service aggregate),
 * and calls each on the others. The walk's result or each's first nonzero
 * (what: for an iterator error's message). */
static int walk_windows(wscan_t *x, uint64_t lo, uint64_t hi, const uint8_t *after,
                        size_t after_len, int64_t until_s, const char *what, window_fn each,
                        void *arg)
{
    /* every window has a total; at resolution 0 one may have no block */
    token_walk_t w;
    walk_open(x->s, CF_TOTALS, lo, hi, x->snap, &w);
    rocksdb_iterator_t *it = w.it;
    int use_after = after_len >= 8 && be64_get(after) >= lo;
    if (use_after) rocksdb_iter_seek(it, (const char *)after, after_len);
    int rc = 0;
    for (; rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (use_after && kn == after_len && memcmp(k, after, kn) == 0) continue;
        if (!window_key(k, kn) || ends_after(k, kn, until_s)) continue; /* newer: not read */
        if (storage_filter_expired(x->s, CF_BLOCKS, k, kn, NULL, 0)) continue;
        if (!series_listed(x, k, kn)) continue; /* a service aggregate */
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        rc = each(x, k, kn, v, vn, arg);
    }
    return walk_close(&w, rc, what);
}

/* The caller's storage_stream_fn and its context, for stream_one. */
typedef struct stream_to {
    storage_stream_fn fn;
    void *ctx;
} stream_to_t;

static int stream_one(wscan_t *x, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                      void *arg)
{
    const stream_to_t *to = arg;
    return one_window(x, k, kn, v, vn, to->fn, to->ctx);
}

int storage_stream_scan_until(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                              size_t after_len, int64_t until_s, storage_stream_fn fn, void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    wscan_t x;
    wscan_open(s, &x);
    stream_to_t to = {fn, ctx};
    int rc =
        walk_windows(&x, lo, hi, after, after_len, until_s, "stream: windows", stream_one, &to);
    wscan_close(&x);
    return rc;
}

int storage_stream_scan(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                        size_t after_len, storage_stream_fn fn, void *ctx)
{
    return storage_stream_scan_until(s, lo, hi, after, after_len, 0, fn, ctx);
}

/* -1, 0 or 1 as key a (an) sorts before, as or after b (bn). */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : an < bn ? -1 : an > bn;
}

/* Calls each on the windows the n keys name (ascending) that a walk of
 * walk_windows would keep, each read by a point lookup (what: for an
 * error's message). */
static int walk_keys(wscan_t *x, uint64_t lo, uint64_t hi, const storage_key_ref_t *keys, size_t n,
                     const uint8_t *after, size_t after_len, int64_t until_s, const char *what,
                     window_fn each, void *arg)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const uint8_t *k = keys[i].key;
        size_t kn = keys[i].len;
        if (!window_key(k, kn) || be64_get(k) < lo || be64_get(k) > hi) continue;
        if (after_len > 0 && key_cmp(k, kn, after, after_len) <= 0) continue;
        if (ends_after(k, kn, until_s)) continue;
        if (storage_filter_expired(x->s, CF_BLOCKS, k, kn, NULL, 0)) continue;
        char *err = NULL;
        rocksdb_pinnableslice_t *tv =
            rocksdb_get_pinned_cf(x->s->db, x->ro, x->s->cf[CF_TOTALS], (const char *)k, kn, &err);
        rc = storage_rocks_err(err, NULL, what);
        if (rc == 0 && tv != NULL && series_listed(x, k, kn)) {
            size_t vn;
            const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(tv, &vn);
            rc = each(x, k, kn, v, vn, arg);
        }
        rocksdb_pinnableslice_destroy(tv);
    }
    return rc;
}

int storage_stream_scan_keys(storage_t *s, uint64_t lo, uint64_t hi, const storage_key_ref_t *keys,
                             size_t n, const uint8_t *after, size_t after_len, storage_stream_fn fn,
                             void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    wscan_t x;
    wscan_open(s, &x);
    stream_to_t to = {fn, ctx};
    int rc = walk_keys(&x, lo, hi, keys, n, after, after_len, 0, "stream: window total", stream_one,
                       &to);
    wscan_close(&x);
    return rc;
}

/* The caller's storage_summary_fn and its context, for summary_one. */
typedef struct summary_to {
    storage_summary_fn fn;
    void *ctx;
} summary_to_t;

static int summary_one(wscan_t *x, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn,
                       void *arg)
{
    const summary_to_t *to = arg;
    char tenant[STORAGE_TENANT_MAX + 1];
    storage_window_summary_t m = {.tenant = tenant, .key = k, .key_len = kn};
    key_parts(k, tenant, &m.token, &m.series_id, &m.res, &m.window_s);
    m.total = vn == 8 ? storage_i64_get(v) : 0;
    /* the whole window's profiles (no kept tree taken off), when exact */
    int rc = storage_wprof_residual(x->s, x->ro, k, kn, m.total, NULL, 0, m.total, &x->wprof);
    m.wprof = x->wprof.data;
    m.wprof_len = x->wprof.len;
    if (rc == 0) rc = to->fn(to->ctx, &m);
    return rc;
}

int storage_stream_summaries(storage_t *s, uint64_t lo, uint64_t hi, const uint8_t *after,
                             size_t after_len, int64_t until_s, storage_summary_fn fn, void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    wscan_t x;
    wscan_open(s, &x);
    summary_to_t to = {fn, ctx};
    int rc = walk_windows(&x, lo, hi, after, after_len, until_s, "stream: window summaries",
                          summary_one, &to);
    wscan_close(&x);
    return rc;
}

int storage_stream_summaries_keys(storage_t *s, uint64_t lo, uint64_t hi,
                                  const storage_key_ref_t *keys, size_t n, const uint8_t *after,
                                  size_t after_len, int64_t until_s, storage_summary_fn fn,
                                  void *ctx)
{
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    wscan_t x;
    wscan_open(s, &x);
    summary_to_t to = {fn, ctx};
    int rc = walk_keys(&x, lo, hi, keys, n, after, after_len, until_s, "stream: window summaries",
                       summary_one, &to);
    wscan_close(&x);
    return rc;
}

int storage_window_key_parse(const uint8_t *k, size_t kn, char tenant[STORAGE_TENANT_MAX + 1],
                             uint64_t *token, uint64_t *series_id, int *res, int64_t *window_s)
{
    if (!window_key(k, kn) || k[8] > STORAGE_TENANT_MAX) return ERR_CORRUPT;
    key_parts(k, tenant, token, series_id, res, window_s);
    return storage_check_tenant(tenant, NULL) == 0 ? 0 : ERR_CORRUPT;
}

/* ---------------------------------------------------------------- receiver */

int storage_stream_marked(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                          int res, int64_t window_s)
{
    if (storage_check_tenant(tenant, NULL) != 0 || res < 0 || res >= STORAGE_RESOLUTION_COUNT)
        return ERR_INVALID_ARGUMENT;
    skey_t k;
    storage_key_window(&k, token, tenant, series_id, res, window_s);
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_STREAMED], (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, NULL, "stream marker lookup");
    if (rc == 0) rc = v != NULL;
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

int storage_ptree_has(storage_t *s, const storage_seen_entry_t *e)
{
    if (storage_check_tenant(e->tenant, NULL) != 0) return ERR_INVALID_ARGUMENT;
    if (storage_ptree_expired(s, e->time_ns)) return 0;
    skey_t k;
    storage_key_ptree(&k, e->token, e->tenant, e->series_id, e->time_ns, e->profile_id);
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_PTREES], (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, NULL, "profile tree lookup");
    if (rc == 0) rc = v != NULL;
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

int storage_stream_sums_split(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s,
                              uint32_t nbuckets, int64_t *sums)
{
    if (nbuckets == 0 || nbuckets > STORAGE_SUM_BUCKETS_MAX) return ERR_INVALID_ARGUMENT;
    memset(sums, 0, (size_t)nbuckets * STORAGE_RESOLUTION_COUNT * sizeof *sums);
    if (lo > hi) return ERR_INVALID_ARGUMENT;
    token_walk_t w;
    walk_open(s, CF_TOTALS, lo, hi, NULL, &w);
    rocksdb_iterator_t *it = w.it;
    wscan_t x = {.s = s, .ro = s->ropts}; /* for series_listed: aggregates are not summed */
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        if (!window_key(k, kn)) continue;
        int res = k[17 + k[8]];
        if (storage_time_decode(k + kn - 8) + (int64_t)storage_resolutions[res] > until_s) continue;
        if (storage_filter_expired(s, CF_TOTALS, k, kn, NULL, 0)) continue;
        if (!series_listed(&x, k, kn)) continue;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        /* the key is the same on every replica, so is its bucket */
        uint32_t b = nbuckets > 1 ? (uint32_t)(hash_bytes64(k, kn) % nbuckets) : 0;
        int64_t *at = &sums[(size_t)b * STORAGE_RESOLUTION_COUNT + (size_t)res];
        if (vn == 8) *at = (int64_t)((uint64_t)*at + (uint64_t)storage_i64_get(v));
    }
    return walk_close(&w, 0, "stream: totals");
}

int storage_stream_sums(storage_t *s, uint64_t lo, uint64_t hi, int64_t until_s,
                        int64_t sums[STORAGE_RESOLUTION_COUNT])
{
    return storage_stream_sums_split(s, lo, hi, until_s, 1, sums);
}

int storage_window_total(storage_t *s, const char *tenant, uint64_t token, uint64_t series_id,
                         int res, int64_t window_s, int64_t *total)
{
    *total = 0;
    if (storage_check_tenant(tenant, NULL) != 0 || res < 0 || res >= STORAGE_RESOLUTION_COUNT)
        return ERR_INVALID_ARGUMENT;
    skey_t k;
    storage_key_window(&k, token, tenant, series_id, res, window_s);
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[CF_TOTALS], (const char *)k.b, k.n, &err);
    int rc = storage_rocks_err(err, NULL, "window total lookup");
    if (rc == 0 && v != NULL) {
        size_t vn = 0;
        const char *vp = rocksdb_pinnableslice_value(v, &vn);
        if (vn == 8) *total = storage_i64_get((const uint8_t *)vp);
        rc = 1;
    }
    rocksdb_pinnableslice_destroy(v);
    return rc;
}
