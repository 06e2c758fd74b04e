/* ingest_gzpool.c — gunzip states kept between pushes (ingest.h).
 *
 * A push's gunzip used to allocate a decompressor and an output buffer the
 * size of its profile, touch every page of it and free both after the
 * parse; on the real-profile fleet the page faults alone were about 3 % of
 * the ingest. The pool keeps up to `keep` states idle, each buffer charged
 * to the budget while idle, and hands them to the next pushes.
 */
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node/ingest/ingest_int.h"

struct ingest_gzpool {
    pthread_mutex_t mu;
    size_t keep, keep_bytes;
    alloc_budget_t *budget; /* borrowed, may be NULL */
    gz_state_t *idle;       /* keep entries, n of them idle */
    size_t n;
    uint64_t reused, fresh, idle_bytes;
};

int ingest_gzpool_new(size_t keep, size_t keep_bytes, alloc_budget_t *budget, ingest_gzpool_t **out)
{
    *out = NULL;
    ingest_gzpool_t *p = calloc(1, sizeof *p);
    if (p == NULL) return ERR_NOMEM;
    p->idle = calloc(keep ? keep : 1, sizeof *p->idle);
    if (p->idle == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->idle);
        free(p);
        return ERR_NOMEM;
    }
    p->keep = keep;
    p->keep_bytes = keep_bytes;
    p->budget = budget;
    *out = p;
    return ERR_OK;
}

static void state_free(gz_state_t *st)
{
    libdeflate_free_decompressor(st->d);
    free(st->data);
    memset(st, 0, sizeof *st);
}

int ingest_gzpool_take(ingest_gzpool_t *p, gz_state_t *st)
{
    memset(st, 0, sizeof *st);
    if (p != NULL) {
        pthread_mutex_lock(&p->mu);
        if (p->n > 0) {
            *st = p->idle[--p->n];
            p->idle_bytes -= st->cap;
            p->reused++;
        } else {
            p->fresh++;
        }
        pthread_mutex_unlock(&p->mu);
        if (st->d != NULL) {
            if (p->budget != NULL) alloc_budget_give(p->budget, st->cap);
            return ERR_OK;
        }
    }
    st->d = libdeflate_alloc_decompressor();
    return st->d != NULL ? ERR_OK : ERR_NOMEM;
}

void ingest_gzpool_give(ingest_gzpool_t *p, gz_state_t *st)
{
    if (st->d == NULL) { /* taking it failed */
        state_free(st);
        return;
    }
    if (p == NULL || st->data == NULL || st->cap > p->keep_bytes ||
        (p->budget != NULL && alloc_budget_take(p->budget, st->cap) != 0)) {
        state_free(st);
        return;
    }
    pthread_mutex_lock(&p->mu);
    int kept = p->n < p->keep;
    if (kept) {
        p->idle[p->n++] = *st;
        p->idle_bytes += st->cap;
    }
    pthread_mutex_unlock(&p->mu);
    if (!kept) {
        if (p->budget != NULL) alloc_budget_give(p->budget, st->cap);
        state_free(st);
    }
    memset(st, 0, sizeof *st);
}

void ingest_gzpool_stats(ingest_gzpool_t *p, ingest_gzpool_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    *out = (ingest_gzpool_stats_t){
        .reused = p->reused, .fresh = p->fresh, .idle_bytes = p->idle_bytes};
    pthread_mutex_unlock(&p->mu);
}

void ingest_gzpool_free(ingest_gzpool_t *p)
{
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) {
        if (p->budget != NULL) alloc_budget_give(p->budget, p->idle[i].cap);
        state_free(&p->idle[i]);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}
