/* report_cache.c — the last few regression reports computed (query.h
 * "the report cache"), so that a search within one (GET /api/diff with
 * reportId and search) lists its rows without rendering every bucket again.
 *
 * A report is kept under its key: the exact inputs it was computed from
 * (tenant, profile type, both queries, both resolved ranges, every
 * bucket's range); its id is a hash of the key, but a lookup compares the
 * whole key, so two inputs never share an entry. The entries live in a
 * list, most recently used first; one that does not fit in max_bytes
 * evicts from the tail. Every entry's bytes are charged (query-memory-bytes
 * on a node) while the cache or a reader holds it. A reader holds a
 * reference, so an entry evicted while it encodes stays until released.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "query/query_int.h"

struct query_report_cached {
    query_report_cached_t *next, *prev;
    query_report_t report; /* names owned */
    char type[QUERY_TYPE_MAX + 1];
    int64_t seconds[2];
    uint8_t *key;
    size_t key_len;
    size_t bytes; /* charged */
    int refs;     /* the cache's (while listed) and readers' */
    int listed;
};

struct query_report_cache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, entries;
    query_report_charge_t charge;
    query_report_cached_t *head, *tail;
    uint64_t hits, misses, evictions;
};

/* ---------- keys ---------- */

static int key_str(buf_t *key, const char *s)
{
    return buf_append(key, s, strlen(s) + 1); /* with its NUL: no two splits alike */
}

int query_report_key(const query_report_plan_t *plan, const char *tenant, buf_t *key,
                     char id[QUERY_REPORT_ID_LEN + 1])
{
    buf_reset(key);
    int rc = key_str(key, tenant != NULL ? tenant : "");
    if (rc == 0) rc = key_str(key, plan->type);
    for (int s = 0; rc == 0 && s < 2; s++) {
        const char *q = plan->nbuckets[s] > 0 ? plan->bucket[s][0].p.query : NULL;
        rc = key_str(key, q != NULL ? q : "");
        if (rc == 0)
            rc = buf_printf(key, "%lld..%lld/%zu:", (long long)plan->from_s[s],
                            (long long)plan->until_s[s], plan->nbuckets[s]);
        for (size_t b = 0; rc == 0 && b < plan->nbuckets[s]; b++) {
            const query_params_t *p = &plan->bucket[s][b].p;
            rc = buf_printf(key, "%s..%s;", p->from != NULL ? p->from : "",
                            p->until != NULL ? p->until : "");
        }
        if (rc == 0) rc = buf_append_byte(key, 0);
    }
    if (rc != 0) return rc;
    snprintf(id, QUERY_REPORT_ID_LEN + 1, "%016llx",
             (unsigned long long)hash_bytes64(key->data, key->len));
    return 0;
}

/* ---------- the cache ---------- */

query_report_cache_t *query_report_cache_new(size_t max_bytes, const query_report_charge_t *charge)
{
    query_report_cache_t *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    if (charge != NULL) c->charge = *charge;
    return c;
}

static void entry_unref(query_report_cache_t *c, query_report_cached_t *e)
{
    if (--e->refs > 0) return;
    if (c->charge.give != NULL) c->charge.give(c->charge.ctx, e->bytes);
    query_report_free(&e->report);
    free(e->key);
    free(e);
}

static void unlink_entry(query_report_cache_t *c, query_report_cached_t *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->next = e->prev = NULL;
    e->listed = 0;
    c->bytes -= e->bytes;
    c->entries--;
}

static void push_front(query_report_cache_t *c, query_report_cached_t *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL) c->head->prev = e;
    c->head = e;
    if (c->tail == NULL) c->tail = e;
    e->listed = 1;
    c->bytes += e->bytes;
    c->entries++;
}

static void evict(query_report_cache_t *c, query_report_cached_t *e)
{
    unlink_entry(c, e);
    c->evictions++;
    entry_unref(c, e);
}

void query_report_cache_free(query_report_cache_t *c)
{
    if (c == NULL) return;
    while (c->head != NULL)
        evict(c, c->head);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static query_report_cached_t *find(query_report_cache_t *c, const buf_t *key)
{
    for (query_report_cached_t *e = c->head; e != NULL; e = e->next)
        if (e->key_len == key->len && memcmp(e->key, key->data, key->len) == 0) return e;
    return NULL;
}

/* Room for bytes more: evicts from the tail until they fit in max_bytes
 * and the charge takes them, less the charged ones already taken. 0 when
 * taken, else nonzero (nothing taken). */
static int make_room(query_report_cache_t *c, size_t bytes, size_t charged)
{
    while (c->tail != NULL && c->bytes + bytes > c->max_bytes)
        evict(c, c->tail);
    if (c->bytes + bytes > c->max_bytes) return 1;
    size_t take = bytes > charged ? bytes - charged : 0;
    for (;;) {
        if (c->charge.take == NULL || take == 0 || c->charge.take(c->charge.ctx, take) == 0)
            return 0;
        if (c->tail == NULL) return 1;
        evict(c, c->tail); /* the budget is short: the cache gives way first */
    }
}

int query_report_cache_put(query_report_cache_t *c, const buf_t *key, query_report_t *r,
                           const char *profile_type, const int64_t seconds[2], size_t charged)
{
    size_t bytes = sizeof(query_report_cached_t) + key->len + query_report_bytes(r);
    if (c == NULL || bytes > c->max_bytes) return 0;
    query_report_cached_t *e = calloc(1, sizeof *e);
    uint8_t *k = malloc(key->len + 1);
    if (e == NULL || k == NULL) {
        free(e);
        free(k);
        return ERR_NOMEM;
    }
    memcpy(k, key->data, key->len);
    pthread_mutex_lock(&c->lock);
    query_report_cached_t *old = find(c, key);
    if (old != NULL) { /* replaced: not an eviction */
        unlink_entry(c, old);
        entry_unref(c, old);
    }
    int kept = make_room(c, bytes, charged) == 0;
    if (kept && charged > bytes && c->charge.give != NULL) /* the entry counts bytes */
        c->charge.give(c->charge.ctx, charged - bytes);
    if (kept) {
        e->report = *r;
        memset(r, 0, sizeof *r);
        snprintf(e->type, sizeof e->type, "%s", profile_type);
        e->seconds[0] = seconds[0];
        e->seconds[1] = seconds[1];
        e->key = k;
        e->key_len = key->len;
        e->bytes = bytes;
        e->refs = 1;
        push_front(c, e);
    }
    pthread_mutex_unlock(&c->lock);
    if (!kept) {
        free(e);
        free(k);
    }
    return kept;
}

const query_report_cached_t *query_report_cache_get(query_report_cache_t *c, const buf_t *key)
{
    if (c == NULL) return NULL;
    pthread_mutex_lock(&c->lock);
    query_report_cached_t *e = find(c, key);
    if (e != NULL) {
        unlink_entry(c, e); /* most recently used first */
        push_front(c, e);
        e->refs++;
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

void query_report_cache_release(query_report_cache_t *c, const query_report_cached_t *e)
{
    if (e == NULL) return;
    pthread_mutex_lock(&c->lock);
    entry_unref(c, (query_report_cached_t *)e);
    pthread_mutex_unlock(&c->lock);
}

/* What the answer's buffer holds on the charge (buf_charge). */
typedef struct answer_charge {
    const query_report_charge_t *charge;
    size_t held;
} answer_charge_t;

static int answer_grows(void *ctx, size_t now)
{
    answer_charge_t *a = ctx;
    const query_report_charge_t *c = a->charge;
    if (c == NULL || c->take == NULL) return 0;
    if (now > a->held && c->take(c->ctx, now - a->held) != 0) return ERR_UNAVAILABLE;
    if (now < a->held && c->give != NULL) c->give(c->ctx, a->held - now);
    a->held = now;
    return 0;
}

int query_report_cached_encode(const query_report_cached_t *e, size_t limit, const char *search,
                               const char *report_id, const query_limits_t *lim,
                               const query_report_charge_t *charge, size_t *charged,
                               query_result_t *out, errmsg_t *em)
{
    if (charged != NULL) *charged = 0;
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    out->content_type = "application/json";
    answer_charge_t a = {charge, 0};
    buf_charge(&out->body, answer_grows, &a); /* the answer counts as it grows */
    int rc = query_report_encode(&e->report, e->type, limit, search, e->seconds, report_id, NULL,
                                 &out->body);
    buf_charge(&out->body, NULL, NULL);
    if (rc == 0 && charged != NULL) /* taken until the caller has sent it */
        *charged = a.held;
    else
        answer_grows(&a, 0);
    if (rc == ERR_UNAVAILABLE)
        errmsg_set(em, rc,
                   "server busy: the report's answer needs more memory than "
                   "query-memory-bytes leaves now; retry later or narrow the query");
    if (rc != 0 && em->text[0] == 0) rc = query_out_err(rc, &out->body, em);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "diff report: %s", err_message(rc));
    return rc;
}

void query_report_cache_stats(query_report_cache_t *c, query_report_cache_stats_t *out)
{
    *out = (query_report_cache_stats_t){0};
    if (c == NULL) return;
    pthread_mutex_lock(&c->lock);
    *out = (query_report_cache_stats_t){c->entries, c->bytes, c->hits, c->misses, c->evictions};
    pthread_mutex_unlock(&c->lock);
}
