/* repair_partcache.c — windows in parts kept by their source between the
 * requests for their parts (repair_int.h; docs/cluster.md, "Streaming
 * whole windows").
 *
 * Without it each part's request read the window from storage again (its
 * block, the kept trees it subtracts), planned its cut and hashed its
 * digest: a window of P parts cost P times its whole size. A snapshot
 * holds what every part is built from (the residual, the symbol names, the
 * profile lists, the plan, the digest), found again by the request's
 * cursor (token interval and after_key), so a later part costs its own size
 * and its path. The parts of one snapshot are one consistent window; a
 * snapshot dropped (the cache full, idle too long, the source restarted)
 * is read again, and the receiver puts parts together only under one
 * digest. At most --stream-window-cache snapshots are kept (the least
 * recently used goes first), none idle longer than the cache's idle time.
 * Thread-safe: the pool's jobs share one cache under its mutex, held while
 * a part is built from a snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/calltree.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"

struct repair_partcache {
    uv_mutex_t mu;
    repair_window_t **v;
    size_t n, max;
    uint64_t idle_ms;
};

void repair_window_free(repair_window_t *w)
{
    if (w == NULL) return;
    free(w->after);
    free(w->key);
    free(w->labels);
    calltree_free(w->tree);
    symtab_free(w->names);
    free(w->kept);
    free(w->untreed);
    free(w->wprof);
    repair_parts_free(&w->plan);
    free(w);
}

static void *dup_bytes(const void *p, size_t n)
{
    void *d = malloc(n ? n : 1);
    if (d != NULL && n > 0) memcpy(d, p, n);
    return d;
}

int repair_window_snapshot(const storage_stream_window_t *w, const uint8_t *after, size_t after_len,
                           repair_window_t **out)
{
    repair_window_t *x = calloc(1, sizeof *x);
    if (x == NULL) return ERR_NOMEM;
    snprintf(x->tenant, sizeof x->tenant, "%s", w->tenant);
    x->token = w->token;
    x->series_id = w->series_id;
    x->res = w->res;
    x->window_s = w->window_s;
    x->total = w->total;
    x->after = dup_bytes(after, after_len);
    x->after_len = after_len;
    x->key = dup_bytes(w->key, w->key_len);
    x->key_len = w->key_len;
    x->kept = dup_bytes(w->kept, w->nkept * sizeof *w->kept);
    x->nkept = w->nkept;
    x->untreed = dup_bytes(w->untreed, w->nuntreed * sizeof *w->untreed);
    x->nuntreed = w->nuntreed;
    x->wprof = dup_bytes(w->wprof, w->wprof_len);
    x->wprof_len = w->wprof_len;
    x->tree = calltree_new(0);
    x->names = symtab_new();
    int rc = x->after && x->key && x->kept && x->untreed && x->wprof && x->tree && x->names
                 ? 0
                 : ERR_NOMEM;
    if (rc == 0) rc = calltree_merge(x->tree, w->residual);
    if (rc != 0) {
        repair_window_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int repair_partcache_new(size_t max, uint64_t idle_ms, repair_partcache_t **out)
{
    repair_partcache_t *c = calloc(1, sizeof *c);
    if (c == NULL) return ERR_NOMEM;
    c->v = calloc(max ? max : 1, sizeof *c->v);
    if (c->v == NULL || uv_mutex_init(&c->mu) != 0) {
        free(c->v);
        free(c);
        return ERR_NOMEM;
    }
    c->max = max;
    c->idle_ms = idle_ms;
    *out = c;
    return 0;
}

void repair_partcache_free(repair_partcache_t *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->n; i++)
        repair_window_free(c->v[i]);
    uv_mutex_destroy(&c->mu);
    free(c->v);
    free(c);
}

static void drop_at(repair_partcache_t *c, size_t i)
{
    repair_window_free(c->v[i]);
    c->v[i] = c->v[--c->n];
}

/* Under mu: snapshots idle too long go. */
static void expire(repair_partcache_t *c, uint64_t now_ms)
{
    for (size_t i = c->n; i-- > 0;)
        if (now_ms > c->v[i]->used_ms + c->idle_ms) drop_at(c, i);
}

static int same_cursor(const repair_window_t *w, uint64_t lo, uint64_t hi, const uint8_t *after,
                       size_t after_len, int slices)
{
    return w->lo == lo && w->hi == hi && w->slices == slices && w->after_len == after_len &&
           (after_len == 0 || memcmp(w->after, after, after_len) == 0);
}

repair_window_t *repair_partcache_get(repair_partcache_t *c, uint64_t lo, uint64_t hi,
                                      const uint8_t *after, size_t after_len, int slices,
                                      uint64_t now_ms)
{
    if (c == NULL) return NULL;
    uv_mutex_lock(&c->mu);
    expire(c, now_ms);
    for (size_t i = 0; i < c->n; i++)
        if (same_cursor(c->v[i], lo, hi, after, after_len, slices)) {
            c->v[i]->used_ms = now_ms;
            return c->v[i]; /* mu stays held until repair_partcache_release */
        }
    uv_mutex_unlock(&c->mu);
    return NULL;
}

void repair_partcache_release(repair_partcache_t *c)
{
    uv_mutex_unlock(&c->mu);
}

void repair_partcache_put(repair_partcache_t *c, repair_window_t *w, uint64_t now_ms)
{
    if (c == NULL || c->max == 0) {
        repair_window_free(w);
        return;
    }
    w->used_ms = now_ms;
    uv_mutex_lock(&c->mu);
    expire(c, now_ms);
    for (size_t i = c->n; i-- > 0;) /* the same cursor read again (from its first part) */
        if (same_cursor(c->v[i], w->lo, w->hi, w->after, w->after_len, w->slices)) drop_at(c, i);
    if (c->n == c->max) { /* the least recently used goes */
        size_t old = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->v[i]->used_ms < c->v[old]->used_ms) old = i;
        drop_at(c, old);
    }
    c->v[c->n++] = w;
    uv_mutex_unlock(&c->mu);
}
