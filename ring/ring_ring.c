/* ring_ring.c — building the ring, replica selection and token ranges (ring.h).
 *
 * Replica selection (RING_REPLICA_VERSION 1): a token t starts at the first
 * ring entry whose token is >= t (wrapping to the smallest), entries ordered
 * by (token, node id); walking clockwise, the first rf distinct nodes met are
 * the replicas, the first of them the primary.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/varint.h"
#include "ring/ring_int.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_entry(const void *a, const void *b)
{
    const struct ring_entry *x = a, *y = b;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

static int copy_names(ring_t *r, const ring_node_spec_t *nodes, size_t n, errmsg_t *em)
{
    r->names = calloc(n ? n : 1, sizeof *r->names);
    if (r->names == NULL) return errmsg_set(em, ERR_NOMEM, "ring: out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = ring_node_id_check(nodes[i].node_id, em);
        if (rc < 0) return rc;
        if (nodes[i].ntokens == 0 || nodes[i].ntokens > RING_MAX_TOKENS)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "ring: node %s has %u tokens",
                              nodes[i].node_id, nodes[i].ntokens);
        if ((r->names[i] = strdup(nodes[i].node_id)) == NULL)
            return errmsg_set(em, ERR_NOMEM, "ring: out of memory");
        r->nnodes++;
    }
    qsort(r->names, n, sizeof *r->names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(r->names[i - 1], r->names[i]) == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "ring: node %s listed twice", r->names[i]);
    return 0;
}

static int fill_entries(ring_t *r, const ring_node_spec_t *nodes, size_t n, errmsg_t *em)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += nodes[i].ntokens;
    r->entries = malloc((total ? total : 1) * sizeof *r->entries);
    r->dtokens = malloc((total ? total : 1) * sizeof *r->dtokens);
    if (r->entries == NULL || r->dtokens == NULL)
        return errmsg_set(em, ERR_NOMEM, "ring: out of memory");
    for (size_t i = 0; i < n; i++) {
        int node = ring_node_find(r, nodes[i].node_id);
        for (uint32_t k = 0; k < nodes[i].ntokens; k++)
            r->entries[r->nentries++] = (struct ring_entry){nodes[i].tokens[k], (uint32_t)node};
    }
    qsort(r->entries, r->nentries, sizeof *r->entries, cmp_entry);
    size_t w = 0;
    for (size_t i = 0; i < r->nentries; i++) { /* a node listing a token twice holds it once */
        if (w > 0 && cmp_entry(&r->entries[w - 1], &r->entries[i]) == 0) continue;
        r->entries[w++] = r->entries[i];
    }
    r->nentries = w;
    for (size_t i = 0; i < r->nentries; i++)
        if (r->ndtokens == 0 || r->dtokens[r->ndtokens - 1] != r->entries[i].token)
            r->dtokens[r->ndtokens++] = r->entries[i].token;
    return 0;
}

static uint64_t compute_fingerprint(const ring_t *r)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    for (size_t i = 0; i < r->nentries; i++) {
        buf_append_u64be(&b, r->entries[i].token);
        buf_append_str(&b, r->names[r->entries[i].node]);
        buf_append_byte(&b, 0);
    }
    uint64_t h = hash_bytes64(b.data ? b.data : (const uint8_t *)"", b.len);
    buf_free(&b);
    return h;
}

int ring_build(const ring_node_spec_t *nodes, size_t n, ring_t **out, errmsg_t *em)
{
    *out = NULL;
    if (n > RING_MAX_NODES)
        return errmsg_set(em, ERR_LIMIT, "ring: %zu nodes, at most %d", n, RING_MAX_NODES);
    ring_t *r = calloc(1, sizeof *r);
    if (r == NULL) return errmsg_set(em, ERR_NOMEM, "ring: out of memory");
    int rc = copy_names(r, nodes, n, em);
    if (rc == 0) rc = fill_entries(r, nodes, n, em);
    if (rc < 0) {
        ring_free(r);
        return rc;
    }
    r->fingerprint = compute_fingerprint(r);
    *out = r;
    return 0;
}

void ring_free(ring_t *r)
{
    if (r == NULL) return;
    for (uint32_t i = 0; i < r->nnodes; i++)
        free(r->names[i]);
    free(r->names);
    free(r->entries);
    free(r->dtokens);
    free(r);
}

uint32_t ring_node_count(const ring_t *r)
{
    return r ? r->nnodes : 0;
}

const char *ring_node_name(const ring_t *r, uint32_t node)
{
    return node < r->nnodes ? r->names[node] : NULL;
}

int ring_node_find(const ring_t *r, const char *node_id)
{
    if (r == NULL) return ERR_NOT_FOUND;
    const char *key = node_id;
    char *const *hit = bsearch(&key, r->names, r->nnodes, sizeof *r->names, cmp_str);
    return hit ? (int)(hit - r->names) : ERR_NOT_FOUND;
}

uint64_t ring_fingerprint(const ring_t *r)
{
    return r->fingerprint;
}

size_t ring__first_entry(const ring_t *r, uint64_t t)
{
    size_t lo = 0, hi = r->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->entries[mid].token < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->nentries ? 0 : lo;
}

uint32_t ring__range_index(const ring_t *r, uint64_t t)
{
    uint32_t lo = 0, hi = r->ndtokens;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->dtokens[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->ndtokens ? 0 : lo;
}

uint32_t ring_replicas(const ring_t *r, uint64_t token, uint32_t rf, uint32_t *out)
{
    if (r == NULL || r->nentries == 0) return 0;
    if (rf > RING_MAX_RF) rf = RING_MAX_RF;
    uint32_t want = rf < r->nnodes ? rf : r->nnodes, have = 0;
    size_t i = ring__first_entry(r, token);
    for (size_t step = 0; step < r->nentries && have < want; step++) {
        uint32_t node = r->entries[i].node;
        uint32_t k = 0;
        while (k < have && out[k] != node)
            k++;
        if (k == have) out[have++] = node;
        if (++i == r->nentries) i = 0;
    }
    return have;
}

int ring__is_replica(const ring_t *r, uint64_t token, uint32_t rf, const char *node_id)
{
    int node = ring_node_find(r, node_id);
    if (node < 0) return 0;
    uint32_t reps[RING_MAX_RF];
    uint32_t n = ring_replicas(r, token, rf, reps);
    for (uint32_t i = 0; i < n; i++)
        if (reps[i] == (uint32_t)node) return 1;
    return 0;
}

uint32_t ring_range_count(const ring_t *r)
{
    return r ? r->ndtokens : 0;
}

ring_range_t ring_range_at(const ring_t *r, uint32_t i)
{
    uint32_t prev = i == 0 ? r->ndtokens - 1 : i - 1;
    return (ring_range_t){r->dtokens[prev], r->dtokens[i]};
}

/* ---------------------------------------------------------------- ranges */

int ring_range_contains(ring_range_t r, uint64_t t)
{
    if (r.start == r.end) return 1;
    if (r.start < r.end) return t > r.start && t <= r.end;
    return t > r.start || t <= r.end; /* wraps past UINT64_MAX */
}

int ring_range_intervals(ring_range_t r, uint64_t lo[2], uint64_t hi[2])
{
    if (r.start == r.end) {
        lo[0] = 0;
        hi[0] = UINT64_MAX;
        return 1;
    }
    if (r.start < r.end) {
        lo[0] = r.start + 1;
        hi[0] = r.end;
        return 1;
    }
    int n = 0;
    if (r.start != UINT64_MAX) { /* (start, MAX] */
        lo[n] = r.start + 1;
        hi[n++] = UINT64_MAX;
    }
    lo[n] = 0; /* [0, end] */
    hi[n++] = r.end;
    return n;
}

double ring_range_share(ring_range_t r)
{
    if (r.start == r.end) return 1.0;
    return (double)(r.end - r.start) / 18446744073709551616.0;
}

void ring_ranges_free(ring_ranges_t *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

int ring_ranges_add(ring_ranges_t *l, ring_range_t r)
{
    if (l->n > 0 && l->v[l->n - 1].end == r.start && l->v[l->n - 1].start != l->v[l->n - 1].end) {
        l->v[l->n - 1].end = r.end;
        return 0;
    }
    if (GROW_FROM(l->v, l->cap, l->n + 1, GROW_UNLIMITED, 16) != 0) return ERR_NOMEM;
    l->v[l->n++] = r;
    return 0;
}

void ring__ranges_close_wrap(ring_ranges_t *l)
{
    if (l->n < 2 || l->v[l->n - 1].end != l->v[0].start) return;
    l->v[0].start = l->v[l->n - 1].start;
    l->n--;
}
