/* cluster_ivset.c — sets of token intervals and what of an interval lies
 * outside one (cluster_int.h): the parts of a range a full repair has not
 * handed to the regain yet, and of those the parts no regain lists
 * (cluster_full.c). Pure: no I/O, any thread, the caller owns every set. */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "node/cluster/cluster_int.h"

static int iv_cmp(const void *a, const void *b)
{
    const cluster_iv_t *x = a, *y = b;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return x->hi < y->hi ? -1 : x->hi > y->hi;
}

static int push(cluster_ivset_t *s, uint64_t lo, uint64_t hi)
{
    int rc = GROW(s->v, s->cap, s->n + 1, GROW_UNLIMITED);
    if (rc == 0) s->v[s->n++] = (cluster_iv_t){lo, hi};
    return rc;
}

int cluster_ivset_build(const uint64_t *lo, const uint64_t *hi, size_t n, cluster_ivset_t *out)
{
    out->n = 0;
    if (n == 0) return 0;
    int rc = GROW(out->v, out->cap, n, GROW_UNLIMITED);
    if (rc != 0) return rc;
    for (size_t i = 0; i < n; i++)
        out->v[i] = (cluster_iv_t){lo[i], hi[i]};
    qsort(out->v, n, sizeof *out->v, iv_cmp);
    size_t k = 0; /* merged into v[0..k] */
    for (size_t i = 1; i < n; i++) {
        cluster_iv_t *last = &out->v[k];
        /* overlapping or touching (last->hi + 1 == lo; no wrap at UINT64_MAX) */
        if (last->hi == UINT64_MAX || out->v[i].lo <= last->hi + 1) {
            if (out->v[i].hi > last->hi) last->hi = out->v[i].hi;
        } else {
            out->v[++k] = out->v[i];
        }
    }
    out->n = k + 1;
    return 0;
}

/* The first interval of s whose hi is >= t (s->n when none). */
static size_t first_reaching(const cluster_ivset_t *s, uint64_t t)
{
    size_t a = 0, b = s->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s->v[m].hi < t)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

int cluster_ivset_minus(const cluster_ivset_t *s, uint64_t lo, uint64_t hi, cluster_ivset_t *out)
{
    out->n = 0;
    uint64_t cur = lo; /* the first token of [lo, hi] not decided yet */
    for (size_t k = first_reaching(s, lo); k < s->n && s->v[k].lo <= hi; k++) {
        int rc = s->v[k].lo > cur ? push(out, cur, s->v[k].lo - 1) : 0;
        if (rc != 0) return rc;
        if (s->v[k].hi >= hi) return 0; /* covered to the end */
        cur = s->v[k].hi + 1;           /* no wrap: hi < the interval's hi */
    }
    return push(out, cur, hi);
}

void cluster_ivset_free(cluster_ivset_t *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
