/* wprofiles.c — the profiles each series window holds (format 14,
 * `window_profiles`, docs/storage-format.md).
 *
 * Beside every series window of `blocks`/`totals` (same key), a value
 * says how many profiles were added to the window, the sum of their
 * totals, an order-free hash of their ids (the sum of XXH3-64 of each
 * 16-byte id) and, while there are at most window_profile_ids of them,
 * the ids themselves, sorted: short ids from format 16 (8 bytes of
 * XXH3-128 of the id, storage_wprof_short_id); version-1 values of formats
 * 14 and 15 list whole ids, still read as their short ids. Only resolutions whose windows outlive
 * profile retention have them (storage_wprof_kept): within it profile_trees name a window's
 * profiles. Every write adds one operand per such resolution (write.c);
 * the merge operator adds counts, totals and hashes and unites the lists.
 * A window whose counted total is its `totals` value is counted exactly
 * (every profile added to it was counted here); one written in part
 * before format 14, or added to by a path that counts nothing, is not,
 * and readers fall back to what they did before.
 *
 * A window holding a piece of a split push (format 18, storage.h
 * storage_series_write_t.piece) is flagged WPROF_FLAG_PIECES: the same push
 * is counted in the windows of each of its pieces' series, so readers
 * count such a window by its listed ids, united across series (and across
 * nodes), not by its count. The merge operator ORs the flag.
 *
 * Owns: the value codec, the merge operator and the read of a series'
 * windows with their counts. Nothing here allocates what a caller frees.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "storage/storage_int.h"

#define WPROF_NAME "flamedb.window_profiles.v1"

static uint64_t u64_get(const uint8_t *p)
{
    return (uint64_t)storage_i64_get(p);
}

int storage_wprof_decode(const uint8_t *v, size_t n, storage_wprof_t *out)
{
    if (n < WPROF_HEADER_LEN || (v[0] != WPROF_VERSION && v[0] != WPROF_VERSION_WHOLE_IDS) ||
        (v[1] & ~(WPROF_FLAG_LISTED | WPROF_FLAG_PIECES)) != 0)
        return ERR_CORRUPT;
    size_t stride = v[0] == WPROF_VERSION ? STORAGE_WPROF_ID_LEN : 16;
    out->count = storage_i64_get(v + 2);
    out->total = storage_i64_get(v + 10);
    out->id_hash = u64_get(v + 18);
    out->listed = (v[1] & WPROF_FLAG_LISTED) != 0;
    out->pieces = (v[1] & WPROF_FLAG_PIECES) != 0;
    out->ids = NULL;
    out->nids = 0;
    out->stride = stride;
    if (!out->listed) return n == WPROF_HEADER_LEN ? 0 : ERR_CORRUPT;
    if (out->count < 0 || (n - WPROF_HEADER_LEN) % stride != 0 ||
        (uint64_t)(n - WPROF_HEADER_LEN) / stride != (uint64_t)out->count)
        return ERR_CORRUPT;
    out->ids = v + WPROF_HEADER_LEN;
    out->nids = (size_t)out->count;
    for (size_t i = 1; i < out->nids; i++) /* strictly ascending */
        if (memcmp(out->ids + stride * (i - 1), out->ids + stride * i, stride) >= 0)
            return ERR_CORRUPT;
    return 0;
}

void storage_wprof_short_id(const uint8_t id[16], uint8_t out[STORAGE_WPROF_ID_LEN])
{
    uint8_t h[16];
    hash_bytes128(id, 16, h);
    memcpy(out, h, STORAGE_WPROF_ID_LEN);
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, STORAGE_WPROF_ID_LEN);
}

/* Appends w's listed ids to out as short ids (unsorted when w lists whole
 * ids: a version-1 value). */
static int append_ids(buf_t *out, const storage_wprof_t *w)
{
    if (w->stride == STORAGE_WPROF_ID_LEN)
        return buf_append(out, w->ids, STORAGE_WPROF_ID_LEN * w->nids);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < w->nids; i++) {
        uint8_t s[STORAGE_WPROF_ID_LEN];
        storage_wprof_short_id(w->ids + w->stride * i, s);
        rc = buf_append(out, s, sizeof s);
    }
    return rc;
}

/* w listing short ids, ascending: a version-1 value's converted into tmp
 * (reset; the caller frees it). Two alike leave w unlisted. */
static int as_short(storage_wprof_t *w, buf_t *tmp)
{
    if (w->stride == STORAGE_WPROF_ID_LEN) return 0;
    buf_reset(tmp);
    int rc = append_ids(tmp, w);
    if (rc != 0) return rc;
    size_t len = STORAGE_WPROF_ID_LEN;
    if (w->nids > 1) qsort(tmp->data, w->nids, len, id_cmp);
    w->ids = tmp->data;
    w->stride = len;
    for (size_t i = 1; i < w->nids; i++)
        if (memcmp(tmp->data + len * (i - 1), tmp->data + len * i, len) == 0) w->listed = 0;
    if (!w->listed) w->nids = 0;
    return 0;
}

void storage_wprof_header(uint8_t out[WPROF_HEADER_LEN], int64_t count, int64_t total,
                          uint64_t id_hash, int flags)
{
    out[0] = WPROF_VERSION;
    out[1] = (uint8_t)(flags & (WPROF_FLAG_LISTED | WPROF_FLAG_PIECES));
    storage_i64_put(out + 2, count);
    storage_i64_put(out + 10, total);
    storage_i64_put(out + 18, (int64_t)id_hash);
}

uint64_t storage_wprof_id_hash(const uint8_t id[16])
{
    return hash_bytes64(id, 16);
}

int storage_wprof_kept(const storage_t *s, int res)
{
    int64_t keep = s->opts.profile_retention_seconds, own = s->opts.retention_seconds[res];
    if (keep <= 0) return 0; /* profile_trees name every profile for good */
    /* a window's last profiles expire res seconds after its start's */
    return own <= 0 || own + (int64_t)storage_resolutions[res] > keep;
}

void storage_wprof_add(storage_t *s, rocksdb_writebatch_t *wb, const char *tenant, uint64_t token,
                       uint64_t series_id, int res, int64_t window, const uint8_t id[16],
                       int64_t total, int piece)
{
    if (!storage_wprof_kept(s, res)) return;
    skey_t k;
    storage_key_window(&k, token, tenant, series_id, res, window);
    if (storage_filter_expired(s, CF_WPROFILES, k.b, k.n, NULL, 0)) return;
    uint8_t v[WPROF_HEADER_LEN + STORAGE_WPROF_ID_LEN];
    int listed = s->opts.window_profile_ids > 0;
    int flags = (listed ? WPROF_FLAG_LISTED : 0) | (piece ? WPROF_FLAG_PIECES : 0);
    storage_wprof_header(v, 1, total, storage_wprof_id_hash(id), flags);
    if (listed) storage_wprof_short_id(id, v + WPROF_HEADER_LEN);
    rocksdb_writebatch_merge_cf(wb, s->cf[CF_WPROFILES], (const char *)k.b, k.n, (const char *)v,
                                listed ? sizeof v : WPROF_HEADER_LEN);
}

/* --- the merge operator ------------------------------------------------------ */

/* Sums parts (corrupt ones skipped and counted) into one value: the ids
 * united while every part lists its own and the sum stays within max.
 * Two equal ids (a profile added twice, or two sharing a short id)
 * leave the value unlisted: its count and hash still hold. */
static int wprof_fold(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                      buf_t *out)
{
    uint64_t count = 0, total = 0, hash = 0;
    int listed = 1, pieces = 0;
    for (int i = 0; i < n; i++) {
        storage_wprof_t w;
        if (storage_wprof_decode((const uint8_t *)parts[i], lens[i], &w) != 0) {
            storage_log_corrupt(c, "window profiles", i, ERR_CORRUPT);
            listed = 0; /* the count no longer says what the list holds */
            continue;
        }
        count += (uint64_t)w.count;
        total += (uint64_t)w.total;
        hash += w.id_hash;
        listed &= w.listed;
        pieces |= w.pieces;
    }
    if (count > c->wprof_max_ids) listed = 0;
    uint8_t h[WPROF_HEADER_LEN];
    size_t at = out->len;
    int rc = buf_append(out, h, sizeof h);
    for (int i = 0; rc == 0 && listed && i < n; i++) {
        storage_wprof_t w;
        if (storage_wprof_decode((const uint8_t *)parts[i], lens[i], &w) == 0)
            rc = append_ids(out, &w);
    }
    if (rc != 0) return rc;
    uint8_t *ids = out->data + at + WPROF_HEADER_LEN;
    size_t nids = listed ? (size_t)count : 0, len = STORAGE_WPROF_ID_LEN;
    if (nids > 1) qsort(ids, nids, len, id_cmp);
    for (size_t i = 1; i < nids && listed; i++)
        listed = memcmp(ids + len * (i - 1), ids + len * i, len) != 0;
    if (!listed) out->len = at + WPROF_HEADER_LEN;
    storage_wprof_header(out->data + at, (int64_t)count, (int64_t)total, hash,
                         (listed ? WPROF_FLAG_LISTED : 0) | (pieces ? WPROF_FLAG_PIECES : 0));
    return 0;
}

static char *fold_result(storage_counters_t *c, const char *const *parts, const size_t *lens, int n,
                         unsigned char *success, size_t *new_len)
{
    buf_t out;
    buf_init(&out, STORAGE_VALUE_MAX);
    if (wprof_fold(c, parts, lens, n, &out) != 0) {
        buf_free(&out);
        *success = 0;
        *new_len = 0;
        return malloc(1); /* RocksDB copies 0 bytes from it, then frees it */
    }
    *success = 1;
    return (char *)buf_steal(&out, new_len);
}

static char *full_merge(void *state, const char *key, size_t key_len, const char *existing,
                        size_t existing_len, const char *const *ops, const size_t *op_lens,
                        int nops, unsigned char *success, size_t *new_len)
{
    (void)key;
    (void)key_len;
    if (existing == NULL) return fold_result(state, ops, op_lens, nops, success, new_len);
    const char **parts = malloc(((size_t)nops + 1) * sizeof *parts);
    size_t *lens = malloc(((size_t)nops + 1) * sizeof *lens);
    char *r = NULL;
    if (parts != NULL && lens != NULL) {
        parts[0] = existing;
        lens[0] = existing_len;
        memcpy(parts + 1, ops, (size_t)nops * sizeof *parts);
        memcpy(lens + 1, op_lens, (size_t)nops * sizeof *lens);
        r = fold_result(state, parts, lens, nops + 1, success, new_len);
    } else {
        *success = 0;
        *new_len = 0;
        r = malloc(1);
    }
    free(parts);
    free(lens);
    return r;
}

static char *partial_merge(void *state, const char *key, size_t key_len, const char *const *ops,
                           const size_t *op_lens, int nops, unsigned char *success, size_t *new_len)
{
    (void)key;
    (void)key_len;
    return fold_result(state, ops, op_lens, nops, success, new_len);
}

static void delete_value(void *state, const char *value, size_t len)
{
    (void)state;
    (void)len;
    free((void *)value);
}

static void no_destructor(void *state)
{
    (void)state;
}

static const char *wprof_name(void *state)
{
    (void)state;
    return WPROF_NAME;
}

rocksdb_mergeoperator_t *storage_merge_wprof_new(storage_counters_t *c)
{
    return rocksdb_mergeoperator_create(c, no_destructor, full_merge, partial_merge, delete_value,
                                        wprof_name);
}

/* --- reads ---------------------------------------------------------------- */

/* The window_profiles values of one series' windows, copied in window order. */
typedef struct wlist {
    int64_t *window;
    uint8_t **val;
    size_t *len;
    size_t n, cap;
} wlist_t;

static void wlist_free(wlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->val[i]);
    free(l->window);
    free(l->val);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static int wlist_add(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    wlist_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int64_t *w = realloc(l->window, cap * sizeof *w);
        if (w != NULL) l->window = w;
        uint8_t **vv = realloc(l->val, cap * sizeof *vv);
        if (vv != NULL) l->val = vv;
        size_t *ln = realloc(l->len, cap * sizeof *ln);
        if (ln != NULL) l->len = ln;
        if (w == NULL || vv == NULL || ln == NULL) return ERR_NOMEM;
        l->cap = cap;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL) return ERR_NOMEM;
    memcpy(copy, v, n);
    l->window[l->n] = window;
    l->val[l->n] = copy;
    l->len[l->n++] = n;
    return 0;
}

typedef struct wscan {
    storage_t *s;
    wlist_t l;
    buf_t tmp; /* a version-1 value's short ids */
    size_t next;
    storage_wprofiles_fn fn;
    void *ctx;
} wscan_t;

static int wscan_total(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    wscan_t *x = ctx;
    if (n != 8) return 0; /* a corrupt total: not a window to count */
    storage_window_profiles_t w = {.window = window, .total = storage_i64_get(v)};
    while (x->next < x->l.n && x->l.window[x->next] < window)
        x->next++;
    if (x->next < x->l.n && x->l.window[x->next] == window) {
        storage_wprof_t d;
        int rc = storage_wprof_decode(x->l.val[x->next], x->l.len[x->next], &d);
        if (rc == 0 && (rc = as_short(&d, &x->tmp)) == ERR_NOMEM) return rc;
        if (rc == 0) {
            w.count = d.count;
            w.counted_total = d.total;
            w.id_hash = d.id_hash;
            w.exact = d.count > 0 && d.total == w.total;
            w.pieces = d.pieces;
            w.ids = d.ids;
            w.nids = d.nids;
        } else {
            storage_log_corrupt(&x->s->counters, "window profiles", 0, ERR_CORRUPT);
        }
    }
    return x->fn(x->ctx, &w);
}

/* storage_scan_window_profiles, over sc's iterators when sc is not NULL. */
static int scan_window_profiles(storage_t *s, storage_scans_t *sc, const char *tenant,
                                uint64_t token, uint64_t series_id, int res, int64_t from_s,
                                int64_t until_s, storage_wprofiles_fn fn, void *ctx)
{
    wscan_t x = {.s = s, .fn = fn, .ctx = ctx};
    buf_init(&x.tmp, BUF_UNLIMITED);
    int rc = sc != NULL ? storage_scans_window_values(sc, CF_WPROFILES, tenant, token, series_id,
                                                      res, from_s, until_s, wlist_add, &x.l)
                        : storage_scan_window_values(s, CF_WPROFILES, tenant, token, series_id, res,
                                                     from_s, until_s, wlist_add, &x.l);
    if (rc == 0)
        rc = sc != NULL ? storage_scans_window_values(sc, CF_TOTALS, tenant, token, series_id, res,
                                                      from_s, until_s, wscan_total, &x)
                        : storage_scan_window_values(s, CF_TOTALS, tenant, token, series_id, res,
                                                     from_s, until_s, wscan_total, &x);
    wlist_free(&x.l);
    buf_free(&x.tmp);
    return rc;
}

int storage_scan_window_profiles(storage_t *s, const char *tenant, uint64_t token,
                                 uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                                 storage_wprofiles_fn fn, void *ctx)
{
    return scan_window_profiles(s, NULL, tenant, token, series_id, res, from_s, until_s, fn, ctx);
}

int storage_scans_window_profiles(storage_scans_t *x, const char *tenant, uint64_t token,
                                  uint64_t series_id, int res, int64_t from_s, int64_t until_s,
                                  storage_wprofiles_fn fn, void *ctx)
{
    return scan_window_profiles(storage_scans_store(x), x, tenant, token, series_id, res, from_s,
                                until_s, fn, ctx);
}

/* --- a window's profiles less some of them (streams) ---------------------- */

int storage_wprof_edit_init(storage_wprof_edit_t *e, const uint8_t *v, size_t n)
{
    memset(e, 0, sizeof *e);
    storage_wprof_t d;
    if (storage_wprof_decode(v, n, &d) != 0) return ERR_CORRUPT;
    e->count = d.count;
    e->total = d.total;
    e->hash = d.id_hash;
    e->listed = d.listed;
    e->pieces = d.pieces;
    e->ok = 1;
    if (d.nids == 0) return 0;
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    int rc = as_short(&d, &tmp);
    e->listed = d.listed;
    e->ids = d.nids > 0 && rc == 0 ? malloc(STORAGE_WPROF_ID_LEN * d.nids) : NULL;
    if (e->ids != NULL) memcpy(e->ids, d.ids, STORAGE_WPROF_ID_LEN * d.nids);
    e->nids = e->ids != NULL ? d.nids : 0;
    buf_free(&tmp);
    return rc != 0 ? rc : d.nids > 0 && e->ids == NULL ? ERR_NOMEM : 0;
}

void storage_wprof_edit_remove(storage_wprof_edit_t *e, const uint8_t id[16], int64_t total)
{
    e->count--;
    e->total = (int64_t)((uint64_t)e->total - (uint64_t)total);
    e->hash -= storage_wprof_id_hash(id);
    if (e->count < 0) e->ok = 0;
    if (!e->listed) return;
    size_t len = STORAGE_WPROF_ID_LEN;
    uint8_t s[STORAGE_WPROF_ID_LEN];
    storage_wprof_short_id(id, s);
    uint8_t *at = e->nids > 0 ? bsearch(s, e->ids, e->nids, len, id_cmp) : NULL;
    if (at == NULL) { /* not a profile of the window: the rest says nothing */
        e->ok = 0;
        return;
    }
    memmove(at, at + len, (size_t)(e->ids + len * e->nids - (at + len)));
    e->nids--;
}

int storage_wprof_edit_encode(const storage_wprof_edit_t *e, buf_t *out)
{
    buf_reset(out);
    if (!e->ok) return 0;
    uint8_t h[WPROF_HEADER_LEN];
    storage_wprof_header(h, e->count, e->total, e->hash,
                         (e->listed ? WPROF_FLAG_LISTED : 0) | (e->pieces ? WPROF_FLAG_PIECES : 0));
    int rc = buf_append(out, h, sizeof h);
    if (rc == 0 && e->listed && e->nids > 0)
        rc = buf_append(out, e->ids, STORAGE_WPROF_ID_LEN * e->nids);
    return rc;
}

void storage_wprof_edit_free(storage_wprof_edit_t *e)
{
    free(e->ids);
    memset(e, 0, sizeof *e);
}

int storage_wprof_residual(storage_t *s, const rocksdb_readoptions_t *ro, const uint8_t *key,
                           size_t key_len, int64_t window_total,
                           const storage_stream_profile_t *kept, size_t nkept,
                           int64_t residual_total, buf_t *out)
{
    buf_reset(out);
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, ro, s->cf[CF_WPROFILES], (const char *)key, key_len, &err);
    int rc = storage_rocks_err(err, NULL, "stream: window profiles");
    if (rc != 0 || v == NULL) return rc;
    size_t n;
    const uint8_t *b = (const uint8_t *)rocksdb_pinnableslice_value(v, &n);
    storage_wprof_edit_t e;
    rc = storage_wprof_edit_init(&e, b, n);
    rocksdb_pinnableslice_destroy(v);
    if (rc == ERR_CORRUPT) return 0; /* not counted: sent without */
    if (rc == 0 && e.total == window_total && e.count > 0) {
        for (size_t i = 0; i < nkept; i++)
            storage_wprof_edit_remove(&e, kept[i].profile_id, kept[i].total);
        if (e.total == residual_total) rc = storage_wprof_edit_encode(&e, out);
    }
    storage_wprof_edit_free(&e);
    return rc;
}

/* --- one window, and two copies compared (the window check) --------------- */

/* The one value of a window's scan, copied into ctx (a buf_t). */
static int one_value_fn(void *ctx, int64_t window, const uint8_t *v, size_t n)
{
    (void)window;
    buf_t *out = ctx;
    buf_reset(out);
    return buf_append(out, v, n);
}

int storage_window_profiles_value(storage_t *s, const char *tenant, uint64_t token,
                                  uint64_t series_id, int res, int64_t window_s, buf_t *out,
                                  int64_t *total)
{
    buf_reset(out);
    *total = 0;
    if (res < 0 || res >= STORAGE_RESOLUTION_COUNT) return ERR_INVALID_ARGUMENT;
    int has = storage_window_total(s, tenant, token, series_id, res, window_s, total);
    if (has <= 0) return has;
    int64_t end = window_s + (int64_t)storage_resolutions[res];
    int rc = storage_scan_window_values(s, CF_WPROFILES, tenant, token, series_id, res, window_s,
                                        end, one_value_fn, out);
    if (rc != 0) return rc;
    storage_wprof_t d;
    if (out->len == 0 || storage_wprof_decode(out->data, out->len, &d) != 0 || d.count <= 0 ||
        d.total != *total) {
        buf_reset(out);
        return 0;
    }
    return 1;
}

uint64_t storage_window_profiles_hash(const uint8_t *v, size_t n)
{
    storage_wprof_t d;
    if (storage_wprof_decode(v, n, &d) != 0) return 0;
    uint8_t b[24];
    storage_i64_put(b, d.count);
    storage_i64_put(b + 8, d.total);
    storage_i64_put(b + 16, (int64_t)d.id_hash);
    uint64_t h = hash_bytes64(b, sizeof b);
    return h != 0 ? h : 1;
}

/* Walks two sorted short-id lists: ids only in a into only_a, only in b
 * into only_b (either may be NULL); *na, *nb how many. */
static int diff_ids(const storage_wprof_t *a, const storage_wprof_t *b, buf_t *only_a,
                    buf_t *only_b, size_t *na, size_t *nb)
{
    size_t i = 0, j = 0, len = STORAGE_WPROF_ID_LEN;
    int rc = 0;
    *na = *nb = 0;
    while (rc == 0 && (i < a->nids || j < b->nids)) {
        const uint8_t *x = a->ids + len * i, *y = b->ids + len * j;
        int c = i == a->nids ? 1 : j == b->nids ? -1 : memcmp(x, y, len);
        if (c < 0) {
            (*na)++;
            if (only_a != NULL) rc = buf_append(only_a, x, len);
            i++;
        } else if (c > 0) {
            (*nb)++;
            if (only_b != NULL) rc = buf_append(only_b, y, len);
            j++;
        } else {
            i++;
            j++;
        }
    }
    return rc;
}

/* The relation of two decoded values listing short ids. */
static enum storage_wprof_rel relate_lists(const storage_wprof_t *x, const storage_wprof_t *y,
                                           buf_t *only_a, buf_t *only_b, buf_t *delta)
{
    if (!x->listed || !y->listed) /* a count and a hash: equal or not, nothing more */
        return x->count == y->count && x->id_hash == y->id_hash && x->total == y->total
                   ? STORAGE_WPROF_EQUAL
                   : STORAGE_WPROF_UNKNOWN;
    size_t na, nb;
    if (diff_ids(x, y, only_a, only_b, &na, &nb) != 0) return STORAGE_WPROF_UNKNOWN;
    if (na == 0 && nb == 0) /* the same, unless two profiles share a short id */
        return x->id_hash == y->id_hash && x->total == y->total ? STORAGE_WPROF_EQUAL
                                                                : STORAGE_WPROF_UNKNOWN;
    if (na > 0 && nb > 0) return STORAGE_WPROF_MIXED;
    if (na > 0 && delta != NULL) { /* a less b: the ids only a lists */
        buf_t ids;
        buf_init(&ids, STORAGE_VALUE_MAX);
        int rc = diff_ids(x, y, &ids, NULL, &na, &nb);
        uint8_t h[WPROF_HEADER_LEN]; /* b's ids are a's less these: so is its hash */
        storage_wprof_header(h, (int64_t)na, (int64_t)((uint64_t)x->total - (uint64_t)y->total),
                             x->id_hash - y->id_hash,
                             WPROF_FLAG_LISTED | (x->pieces ? WPROF_FLAG_PIECES : 0));
        if (rc == 0) rc = buf_append(delta, h, sizeof h);
        if (rc == 0) rc = buf_append(delta, ids.data, ids.len);
        buf_free(&ids);
        if (rc != 0) return STORAGE_WPROF_UNKNOWN;
    }
    return na > 0 ? STORAGE_WPROF_A_HOLDS_B : STORAGE_WPROF_B_HOLDS_A;
}

enum storage_wprof_rel storage_window_profiles_relate(const uint8_t *a, size_t an, const uint8_t *b,
                                                      size_t bn, buf_t *only_a, buf_t *only_b,
                                                      buf_t *delta)
{
    storage_wprof_t x, y;
    if (only_a != NULL) buf_reset(only_a);
    if (only_b != NULL) buf_reset(only_b);
    if (delta != NULL) buf_reset(delta);
    if (storage_wprof_decode(a, an, &x) != 0 || storage_wprof_decode(b, bn, &y) != 0)
        return STORAGE_WPROF_UNKNOWN;
    buf_t tx, ty; /* a version-1 value's (an older peer's) short ids */
    buf_init(&tx, BUF_UNLIMITED);
    buf_init(&ty, BUF_UNLIMITED);
    enum storage_wprof_rel rel = STORAGE_WPROF_UNKNOWN;
    if (as_short(&x, &tx) == 0 && as_short(&y, &ty) == 0)
        rel = relate_lists(&x, &y, only_a, only_b, delta);
    buf_free(&tx);
    buf_free(&ty);
    return rel;
}
