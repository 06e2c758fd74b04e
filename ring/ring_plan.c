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

/* Whether live replica x answers range i before best. Planning the whole
 * ring (cover NULL): the local node, else the least share assigned so far,
 * which spreads the ranges. Planning a few ranges: the node holding more
 * of them (cover), else the local node, else the one already answering
 * for more, which gathers them on one node. Ties: the earlier clockwise. */
static int better(int x, int best, int local, const double *load, const uint32_t *cover)
{
    if (cover != NULL && cover[x] != cover[best]) return cover[x] > cover[best];
    if ((x == local) != (best == local)) return x == local;
    return cover != NULL ? load[x] > load[best] : load[x] < load[best];
}

/* The replica that answers for range i, or -1 when none is live. */
static int choose(const ring_t *r, uint32_t i, uint32_t rf, int local, const uint8_t *live,
                  const double *load, const uint32_t *cover)
{
    uint32_t reps[RING_MAX_RF];
    uint32_t n = ring_replicas(r, r->dtokens[i], rf, reps);
    int best = -1;
    for (uint32_t k = 0; k < n; k++) {
        int x = (int)reps[k];
        if (live[x] && (best < 0 || better(x, best, local, load, cover))) best = x;
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

/* Per ring node: how many wanted ranges it is a live replica of. A plan
 * over a few ranges (a service's shards) then sends them to as few nodes
 * as their replicas allow, so one node merges a service's shards together
 * (one forest over their stack nodes) instead of several nodes each
 * shipping a part for the coordinator to merge. */
static uint32_t *cover_counts(const ring_t *r, uint32_t rf, const uint8_t *live,
                              const uint8_t *want)
{
    uint32_t *cover = calloc(r->nnodes, sizeof *cover);
    for (uint32_t i = 0; cover != NULL && i < r->ndtokens; i++) {
        if (!want[i]) continue;
        uint32_t reps[RING_MAX_RF];
        uint32_t n = ring_replicas(r, r->dtokens[i], rf, reps);
        for (uint32_t k = 0; k < n; k++)
            cover[reps[k]] += live[reps[k]] != 0;
    }
    return cover;
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
    uint32_t *cover = tokens != NULL && want != NULL ? cover_counts(r, rf, live, want) : NULL;
    int rc = 0;
    if (out->assigned == NULL || load == NULL || want == NULL || (tokens != NULL && !cover))
        rc = errmsg_set(em, ERR_NOMEM, "read plan: out of memory");
    for (uint32_t i = 0; rc == 0 && i < r->ndtokens; i++) {
        if (!want[i]) continue;
        ring_range_t rg = ring_range_at(r, i);
        int node = choose(r, i, rf, local, live, load, cover);
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
    free(cover);
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
