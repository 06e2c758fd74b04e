/* ring_plan.c — read planning (one live replica per range) and write planning
 * (replicas plus quorum) (ring.h).
 *
 * Reads must count every acknowledged sample exactly once, so each range goes
 * to exactly one replica; a replica is only as complete as the whole range, so
 * ranges are never split between replicas.
 */
#include <stdlib.h>
#include <string.h>

#include "ring/ring_int.h"

void ring_read_plan_free(ring_read_plan_t *p)
{
    if (p->assigned)
        for (uint32_t i = 0; i < p->nnodes; i++)
            ring_ranges_free(&p->assigned[i]);
    free(p->assigned);
    ring_ranges_free(&p->missing);
    memset(p, 0, sizeof *p);
}

/* The replica that answers for range i, or -1 when none is live. */
static int choose(const ring_t *r, uint32_t i, uint32_t rf, int local, const uint8_t *live,
                  const double *load)
{
    uint32_t reps[RING_MAX_RF];
    uint32_t n = ring_replicas(r, r->dtokens[i], rf, reps);
    int best = -1;
    for (uint32_t k = 0; k < n; k++) {
        if (!live[reps[k]]) continue;
        if ((int)reps[k] == local) return local;
        if (best < 0 || load[reps[k]] < load[best]) best = (int)reps[k];
    }
    return best;
}

/* Marks the ranges to plan: all, or those holding one of tokens. */
static uint8_t *wanted_ranges(const ring_t *r, const uint64_t *tokens, size_t ntokens)
{
    uint8_t *want = calloc(r->ndtokens ? r->ndtokens : 1, 1);
    if (want == NULL) return NULL;
    if (tokens == NULL) memset(want, 1, r->ndtokens);
    for (size_t k = 0; tokens && k < ntokens && r->ndtokens; k++)
        want[ring__range_index(r, tokens[k])] = 1;
    return want;
}

static void close_all(ring_read_plan_t *p)
{
    for (uint32_t i = 0; i < p->nnodes; i++)
        ring__ranges_close_wrap(&p->assigned[i]);
    ring__ranges_close_wrap(&p->missing);
}

int ring_plan_read(const ring_t *r, uint32_t rf, int local, const uint8_t *live,
                   const uint64_t *tokens, size_t ntokens, ring_read_plan_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (r == NULL || r->nnodes == 0)
        return errmsg_set(em, ERR_UNAVAILABLE, "read plan: the ring is empty");
    if (rf == 0 || rf > RING_MAX_RF)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "read plan: rf %u not in 1..%d", rf,
                          RING_MAX_RF);
    out->nnodes = r->nnodes;
    out->assigned = calloc(r->nnodes, sizeof *out->assigned);
    double *load = calloc(r->nnodes, sizeof *load);
    uint8_t *want = wanted_ranges(r, tokens, ntokens);
    int rc = 0;
    if (out->assigned == NULL || load == NULL || want == NULL)
        rc = errmsg_set(em, ERR_NOMEM, "read plan: out of memory");
    for (uint32_t i = 0; rc == 0 && i < r->ndtokens; i++) {
        if (!want[i]) continue;
        ring_range_t rg = ring_range_at(r, i);
        int node = choose(r, i, rf, local, live, load);
        if (node < 0) {
            rc = ring_ranges_add(&out->missing, rg);
        } else {
            load[node] += ring_range_share(rg);
            rc = ring_ranges_add(&out->assigned[node], rg);
        }
        if (rc < 0) errmsg_set(em, rc, "read plan: out of memory");
    }
    free(load);
    free(want);
    if (rc < 0) {
        ring_read_plan_free(out);
        return rc;
    }
    close_all(out);
    return 0;
}

uint32_t ring_default_quorum(uint32_t rf)
{
    return rf / 2 + 1;
}

int ring_plan_write(const ring_t *current, const ring_t *pending, uint64_t token, uint32_t rf,
                    uint32_t quorum, ring_write_plan_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (rf == 0 || rf > RING_MAX_RF)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write plan: rf %u not in 1..%d", rf,
                          RING_MAX_RF);
    if (quorum > rf)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write plan: quorum %u above rf %u", quorum,
                          rf);
    uint32_t reps[RING_MAX_RF];
    uint32_t n = ring_replicas(current, token, rf, reps);
    if (n == 0) return errmsg_set(em, ERR_UNAVAILABLE, "write plan: the ring is empty");
    for (uint32_t i = 0; i < n; i++)
        out->nodes[out->n++] = current->names[reps[i]];
    out->nnatural = n;
    uint32_t np = ring_replicas(pending, token, rf, reps);
    for (uint32_t i = 0; i < np; i++) {
        const char *id = pending->names[reps[i]];
        uint32_t k = 0;
        while (k < out->n && strcmp(out->nodes[k], id) != 0)
            k++;
        if (k == out->n) out->nodes[out->n++] = id;
    }
    uint32_t q = quorum ? quorum : ring_default_quorum(rf);
    out->quorum = q < n ? q : n;
    return 0;
}
