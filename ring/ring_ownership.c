/* ring_ownership.c — which ranges a node owns, gains and loses (ring.h).
 *
 * Every token inside one elementary range has the replicas of the range's end
 * token, so ownership is decided per range end. Comparing two rings uses the
 * union of their tokens: inside each union range neither ring has a boundary,
 * so both replica sets are constant there.
 */
#include <stdlib.h>
#include <string.h>

#include "ring/ring_int.h"

static void close_from(ring_ranges_t *l, size_t first)
{
    ring_ranges_t tail = {l->v + first, l->n - first, l->n - first};
    ring__ranges_close_wrap(&tail);
    l->n = first + tail.n;
}

int ring_node_ranges(const ring_t *r, uint32_t node, uint32_t rf, ring_ranges_t *out)
{
    if (r == NULL || node >= r->nnodes) return ERR_INVALID_ARGUMENT;
    uint32_t reps[RING_MAX_RF];
    size_t first = out->n;
    for (uint32_t i = 0; i < r->ndtokens; i++) {
        uint32_t n = ring_replicas(r, r->dtokens[i], rf, reps);
        for (uint32_t k = 0; k < n; k++) {
            if (reps[k] != node) continue;
            if (ring_ranges_add(out, ring_range_at(r, i)) < 0) return ERR_NOMEM;
            break;
        }
    }
    close_from(out, first);
    return 0;
}

/* Sorted union of both rings' distinct tokens; caller frees. */
static uint64_t *union_tokens(const ring_t *a, const ring_t *b, size_t *n)
{
    size_t na = a ? a->ndtokens : 0, nb = b ? b->ndtokens : 0, i = 0, j = 0, k = 0;
    uint64_t *u = malloc((na + nb + 1) * sizeof *u);
    if (u == NULL) return NULL;
    while (i < na || j < nb) {
        uint64_t t;
        if (j == nb || (i < na && a->dtokens[i] <= b->dtokens[j]))
            t = a->dtokens[i++];
        else
            t = b->dtokens[j++];
        if (k == 0 || u[k - 1] != t) u[k++] = t;
    }
    *n = k;
    return u;
}

int ring_node_changes(const ring_t *before, const ring_t *after, uint32_t rf, const char *node_id,
                      ring_ranges_t *gained, ring_ranges_t *lost)
{
    size_t n = 0;
    uint64_t *u = union_tokens(before, after, &n);
    if (u == NULL) return ERR_NOMEM;
    size_t g0 = gained->n, l0 = lost->n;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        ring_range_t rg = {u[i == 0 ? n - 1 : i - 1], u[i]};
        int was = before ? ring__is_replica(before, u[i], rf, node_id) : 0;
        int is = after ? ring__is_replica(after, u[i], rf, node_id) : 0;
        if (is && !was)
            rc = ring_ranges_add(gained, rg);
        else if (was && !is)
            rc = ring_ranges_add(lost, rg);
    }
    free(u);
    if (rc < 0) return ERR_NOMEM;
    close_from(gained, g0);
    close_from(lost, l0);
    return 0;
}
