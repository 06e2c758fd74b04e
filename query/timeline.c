/* timeline.c — per-step totals for the flamebearer timeline, read from the
 * totals column family (one integer per window, no tree decoding).
 *
 * The step is range/1500 rounded up to a multiple of the coarsest resolution
 * that does not exceed it (at least 10 s): e.g. 1 h -> 10 s, 24 h -> 60 s,
 * 7 d -> 420 s, 30 d -> 1800 s. Buckets start at multiples of the step, so
 * every window of that resolution or finer falls in exactly one bucket, and
 * the plan's range is re-covered with windows no coarser than that.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

#define TIMELINE_POINTS 1500

static int total_fn(void *ctx, int64_t window_start, int64_t total)
{
    query_timeline_t *tl = ctx;
    int64_t i = (window_start - tl->start_s) / tl->step_s;
    if (window_start >= tl->start_s && i < (int64_t)tl->n) tl->samples[i] += total;
    return 0;
}

static int64_t floor_to(int64_t a, int64_t step)
{
    int64_t q = a / step;
    if (a % step != 0 && a < 0) q--;
    return q * step;
}

/* Picks the step and the resolution index whose windows fill it. */
static int64_t pick_step(int64_t range, int min_res, int *res)
{
    int64_t raw = (range + TIMELINE_POINTS - 1) / TIMELINE_POINTS;
    if (raw < 10) raw = 10;
    int r = min_res;
    while (r + 1 < STORAGE_RESOLUTION_COUNT && storage_resolutions[r + 1] <= raw)
        r++;
    int64_t w = storage_resolutions[r];
    *res = r;
    return (raw + w - 1) / w * w;
}

int query_timeline_init(const query_plan_t *plan, query_timeline_t *out, int *res)
{
    memset(out, 0, sizeof *out);
    int64_t range = plan->until_s - plan->from_s;
    out->step_s = 10;
    out->start_s = plan->from_s;
    *res = plan->min_res;
    if (range <= 0) return 0;
    out->step_s = pick_step(range, plan->min_res, res);
    out->start_s = floor_to(plan->from_s, out->step_s);
    out->n = (size_t)((plan->until_s - out->start_s + out->step_s - 1) / out->step_s);
    out->samples = calloc(out->n, sizeof *out->samples);
    return out->samples == NULL ? ERR_NOMEM : 0;
}

size_t query_timeline_pieces(const query_plan_t *plan)
{
    int64_t range = plan->until_s - plan->from_s;
    if (range <= 0) return 0;
    int res;
    pick_step(range, plan->min_res, &res);
    query_plan_t tp;
    query_plan_range(plan->from_s, plan->until_s, plan->min_res, res, &tp);
    return tp.n;
}

int query_timeline_build_from(storage_t *st, const char *tenant, const query_series_t *ser,
                              const query_plan_t *plan, ends_t *ends, int back,
                              query_timeline_t *out, errmsg_t *em)
{
    int res;
    int rc = query_timeline_init(plan, out, &res);
    if (rc != 0 || out->n == 0) return rc;
    query_plan_t tp;
    query_plan_range(plan->from_s, plan->until_s, plan->min_res, res, &tp);
    for (size_t at = 0, item; ends_next(ends, back, ser->n * tp.n, &at, &item);) {
        if ((rc = query_stop_check(plan->stop, em)) != 0) { /* cancelled or past its deadline */
            query_timeline_free(out);
            return rc;
        }
        size_t i = item / tp.n, k = item % tp.n;
        rc = storage_scan_totals(st, tenant, ser->token[i], ser->series_id[i], tp.piece[k].res,
                                 tp.piece[k].from_s, tp.piece[k].until_s, total_fn, out);
        if (rc != 0) {
            query_timeline_free(out);
            return errmsg_set(em, rc, "reading totals: %s", err_message(rc));
        }
    }
    return 0;
}

int query_timeline_build(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, query_timeline_t *out, errmsg_t *em)
{
    return query_timeline_build_from(st, tenant, ser, plan, NULL, 0, out, em);
}

void query_timeline_add(query_timeline_t *dst, const query_timeline_t *src)
{
    for (size_t i = 0; i < dst->n && i < src->n; i++)
        dst->samples[i] = (int64_t)((uint64_t)dst->samples[i] + (uint64_t)src->samples[i]);
}

/* ---- averaged types (gauges) ---- */

int query_type_average(const char *profile_type)
{
    ptype_t pt;
    if (profile_type == NULL || query_ptype_parse(profile_type, &pt) != 0) return 0;
    static const char *gauges[] = {"inuse_space", "inuse_objects", "goroutine", "goroutines"};
    for (size_t i = 0; i < sizeof gauges / sizeof *gauges; i++)
        if (strcmp(pt.sample_type, gauges[i]) == 0) return 1;
    return 0;
}

int query_timeline_average(query_timeline_t *tl)
{
    tl->counts = calloc(tl->n ? tl->n : 1, sizeof *tl->counts);
    tl->profiles = 0;
    return tl->counts == NULL ? ERR_NOMEM : 0;
}

static int push_cmp(const void *a, const void *b)
{
    const query_push_t *x = a, *y = b;
    if (x->bucket != y->bucket) return x->bucket < y->bucket ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void query_timeline_sort_pushes(query_timeline_t *tl)
{
    if (tl->npushes < 2) return;
    qsort(tl->pushes, tl->npushes, sizeof *tl->pushes, push_cmp);
    size_t m = 1;
    for (size_t i = 1; i < tl->npushes; i++)
        if (push_cmp(&tl->pushes[m - 1], &tl->pushes[i]) != 0) tl->pushes[m++] = tl->pushes[i];
    tl->npushes = m;
}

int query_timeline_add_push(query_timeline_t *tl, size_t i, const uint8_t *id)
{
    if (tl->npushes == tl->pushes_cap && tl->npushes > 0) {
        query_timeline_sort_pushes(tl);         /* a push's pieces from several series: once */
        if (tl->npushes > tl->pushes_cap / 2 && /* room for at least as many again */
            GROW_FROM(tl->pushes, tl->pushes_cap, tl->pushes_cap + 1, GROW_UNLIMITED, 64) != 0)
            return ERR_NOMEM;
    }
    if (GROW_FROM(tl->pushes, tl->pushes_cap, tl->npushes + 1, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    uint64_t v = 0;
    for (size_t k = 0; k < STORAGE_WPROF_ID_LEN; k++)
        v = v << 8 | id[k];
    tl->pushes[tl->npushes++] = (query_push_t){v, (uint32_t)i};
    return 0;
}

void query_timeline_unite(query_timeline_t *tl)
{
    query_timeline_sort_pushes(tl);
    for (size_t i = 0; tl->counts != NULL && i < tl->npushes; i++) {
        tl->counts[tl->pushes[i].bucket]++;
        tl->profiles++;
    }
    tl->npushes = 0;
}

/* Counting the series: windows whose profiles are counted exactly
 * (window_profiles) add their count, or, holding pieces of split pushes,
 * their listed ids; the others (and such windows listing none) are noted,
 * adjacent ones joined, and their profiles counted from profile_trees. The
 * pushes' memory is charged to charge while counting (the caller charges
 * the timeline it gets). */
typedef struct wcount {
    query_timeline_t *tl;
    alloc_charge_t *charge; /* NULL: not charged */
    size_t charged;
    int64_t res_s;
    int64_t *lo, *hi; /* the series' uncounted spans [lo, hi) */
    size_t n, cap;
} wcount_t;

/* query_timeline_add_push, its growth charged: ERR_UNAVAILABLE when the
 * charge refuses it. */
static int count_push(wcount_t *c, size_t i, const uint8_t *id)
{
    query_timeline_t *tl = c->tl;
    size_t before = tl->pushes_cap;
    int rc = query_timeline_add_push(tl, i, id);
    size_t grown = (tl->pushes_cap - before) * sizeof *tl->pushes;
    if (grown > 0 && c->charge != NULL) {
        if (alloc_charge_add(c->charge, grown) != 0) return ERR_UNAVAILABLE;
        c->charged += grown;
    }
    return rc;
}

static int count_fn(void *ctx, int64_t time_ns, const uint8_t profile_id[16], int64_t total,
                    int tree_kept, int piece)
{
    (void)total;
    (void)tree_kept; /* a profile whose tree was too large to keep counts too */
    wcount_t *c = ctx;
    query_timeline_t *tl = c->tl;
    int64_t t = time_ns / 1000000000LL;
    if (time_ns < 0 && time_ns % 1000000000LL != 0) t--;
    t = floor_to(t, 10); /* its 10 s window, which lies in one bucket */
    int64_t i = (t - tl->start_s) / tl->step_s;
    int in = t >= tl->start_s && i < (int64_t)tl->n;
    if (piece && in) { /* its other pieces name it too: counted once, by id */
        uint8_t id[STORAGE_WPROF_ID_LEN];
        storage_wprof_short_id(profile_id, id);
        return count_push(c, (size_t)i, id);
    }
    if (in) tl->counts[i]++;
    tl->profiles++;
    return 0;
}

static int wcount_fn(void *ctx, const storage_window_profiles_t *w)
{
    wcount_t *c = ctx;
    query_timeline_t *tl = c->tl;
    int64_t i = (w->window - tl->start_s) / tl->step_s;
    int in = w->window >= tl->start_s && i < (int64_t)tl->n;
    if (w->exact && !w->pieces) {
        if (in) tl->counts[i] += w->count;
        tl->profiles += w->count;
        return 0;
    }
    if (w->exact && w->ids != NULL && in) {
        int rc = 0;
        for (size_t k = 0; rc == 0 && k < w->nids; k++)
            rc = count_push(c, (size_t)i, w->ids + k * STORAGE_WPROF_ID_LEN);
        return rc;
    }
    if (c->n > 0 && c->hi[c->n - 1] == w->window) {
        c->hi[c->n - 1] += c->res_s;
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        int64_t *lo = realloc(c->lo, cap * sizeof *lo);
        if (lo != NULL) c->lo = lo;
        int64_t *hi = realloc(c->hi, cap * sizeof *hi);
        if (hi != NULL) c->hi = hi;
        if (lo == NULL || hi == NULL) return ERR_NOMEM;
        c->cap = cap;
    }
    c->lo[c->n] = w->window;
    c->hi[c->n++] = w->window + c->res_s;
    return 0;
}

static int count_series(storage_scans_t *x, const char *tenant, uint64_t token, uint64_t series_id,
                        const query_plan_t *tp, wcount_t *c)
{
    int rc = 0;
    c->n = 0;
    for (size_t k = 0; rc == 0 && k < tp->n; k++) {
        c->res_s = storage_resolutions[tp->piece[k].res];
        rc = storage_scans_window_profiles(x, tenant, token, series_id, tp->piece[k].res,
                                           tp->piece[k].from_s, tp->piece[k].until_s, wcount_fn, c);
    }
    if (rc == 0 && c->n > 0) /* in any order: counted */
        rc = storage_scans_profile_trees_spans(x, tenant, token, series_id, c->lo, c->hi, c->n,
                                               count_fn, c);
    return rc;
}

int query_timeline_count(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, query_timeline_t *tl, errmsg_t *em)
{
    int res = plan->min_res;
    if (plan->until_s > plan->from_s) pick_step(plan->until_s - plan->from_s, plan->min_res, &res);
    query_plan_t tp; /* the timeline's windows: each lies in one bucket */
    query_plan_range(plan->from_s, plan->until_s, plan->min_res, res, &tp);
    wcount_t c = {.tl = tl, .charge = plan->charge};
    storage_scans_t *x = NULL; /* one iterator per column family for every series */
    int rc = storage_scans_open(st, &x);
    if (rc != 0) errmsg_set(em, rc, "counting profiles: %s", err_message(rc));
    for (size_t i = 0; rc == 0 && i < ser->n; i++) {
        if (ser->aggregate != NULL && ser->aggregate[i]) continue;
        if ((rc = query_stop_check(plan->stop, em)) != 0)
            break; /* cancelled or past its deadline */
        rc = count_series(x, tenant, ser->token[i], ser->series_id[i], &tp, &c);
        if (rc == ERR_UNAVAILABLE)
            errmsg_set(em, rc,
                       "counting profiles: the ids of split pushes do not fit in "
                       "query-memory-bytes");
        else if (rc != 0)
            errmsg_set(em, rc, "counting profiles: %s", err_message(rc));
    }
    storage_scans_close(x);
    free(c.lo);
    free(c.hi);
    if (c.charged > 0) alloc_charge_sub(c.charge, c.charged); /* the caller's from here */
    query_timeline_sort_pushes(tl);
    return rc;
}

void query_timeline_free(query_timeline_t *tl)
{
    free(tl->counts);
    free(tl->samples);
    free(tl->pushes);
    memset(tl, 0, sizeof *tl);
}
