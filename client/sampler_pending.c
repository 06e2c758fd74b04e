/* sampler_pending.c — the sampler's bounded queue of profiles to push. */
#include "client/sampler_pending.h"

#include <stdlib.h>

struct flamedb_sampler_pending {
    flamedb_sampler_pending_entry_t *head, *tail;
    size_t count, bytes, max_bytes;
    uint64_t dropped, dropped_samples;
};

flamedb_sampler_pending_t *flamedb_sampler_pending_new(size_t max_bytes)
{
    if (max_bytes == 0) return NULL;
    flamedb_sampler_pending_t *q = calloc(1, sizeof *q);
    if (q) q->max_bytes = max_bytes;
    return q;
}

void flamedb_sampler_pending_free(flamedb_sampler_pending_t *q)
{
    if (!q) return;
    while (q->head)
        flamedb_sampler_pending_pop(q, 0);
    free(q);
}

int flamedb_sampler_pending_add(flamedb_sampler_pending_t *q, void *data, size_t len, int64_t from,
                                int64_t until, uint64_t samples)
{
    flamedb_sampler_pending_entry_t *e = malloc(sizeof *e);
    if (!e) {
        free(data);
        flamedb_sampler_pending_lost(q, samples);
        return -1;
    }
    *e = (flamedb_sampler_pending_entry_t){
        .data = data, .len = len, .from = from, .until = until, .samples = samples};
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->count++;
    q->bytes += len;
    while (q->bytes > q->max_bytes) /* ends with e itself when e alone is too large */
        flamedb_sampler_pending_pop(q, 1);
    return 0;
}

const flamedb_sampler_pending_entry_t *
flamedb_sampler_pending_oldest(const flamedb_sampler_pending_t *q)
{
    return q->head;
}

void flamedb_sampler_pending_lost(flamedb_sampler_pending_t *q, uint64_t samples)
{
    q->dropped++;
    q->dropped_samples += samples;
}

void flamedb_sampler_pending_pop(flamedb_sampler_pending_t *q, int dropped)
{
    flamedb_sampler_pending_entry_t *e = q->head;
    if (!e) return;
    q->head = e->next;
    if (!q->head) q->tail = NULL;
    q->count--;
    q->bytes -= e->len;
    if (dropped) flamedb_sampler_pending_lost(q, e->samples);
    free(e->data);
    free(e);
}

size_t flamedb_sampler_pending_count(const flamedb_sampler_pending_t *q)
{
    return q->count;
}

size_t flamedb_sampler_pending_bytes(const flamedb_sampler_pending_t *q)
{
    return q->bytes;
}

uint64_t flamedb_sampler_pending_dropped(const flamedb_sampler_pending_t *q)
{
    return q->dropped;
}

uint64_t flamedb_sampler_pending_dropped_samples(const flamedb_sampler_pending_t *q)
{
    return q->dropped_samples;
}
