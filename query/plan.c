/* plan.c — which stored windows answer a time range.
 *
 * Rule: a profile belongs to the 10 s window that holds its time; a query
 * [from, until) reads the windows whose start w has from <= w < until, so the
 * range is [ceil10(from), ceil10(until)) on the 10 s grid. That range is then
 * covered greedily from the left with the coarsest window that is aligned at
 * the current position and ends inside the range: fine windows at the edges,
 * days in the middle. Because every resolution divides the next one, the
 * greedy cover is also the one with the fewest windows.
 */
#include <string.h>

#include "query/query_int.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t ceil_to(int64_t a, int64_t step)
{
    return -floor_div(-a, step) * step;
}

static void add_piece(query_plan_t *out, int res, int64_t from, int64_t until)
{
    if (out->n > 0) {
        query_plan_piece_t *last = &out->piece[out->n - 1];
        if (last->res == res && last->until_s == from) {
            last->until_s = until;
            return;
        }
    }
    /* The greedy cover has at most 2 * STORAGE_RESOLUTION_COUNT - 1 pieces. */
    if (out->n < QUERY_PLAN_MAX_PIECES)
        out->piece[out->n++] = (query_plan_piece_t){.res = res, .from_s = from, .until_s = until};
}

void query_plan_range(int64_t from_s, int64_t until_s, int min_res, int max_res, query_plan_t *out)
{
    memset(out, 0, sizeof *out);
    out->from_s = from_s;
    out->until_s = until_s;
    out->min_res = min_res;
    int64_t x = from_s;
    while (x < until_s) {
        int r = max_res;
        while (r > min_res &&
               (x % storage_resolutions[r] != 0 || x + storage_resolutions[r] > until_s))
            r--;
        int64_t w = storage_resolutions[r];
        int64_t k = (until_s - x) / w; /* as many windows of this size as fit */
        if (k < 1) k = 1;              /* cannot happen for aligned input; keeps the loop finite */
        if (r < max_res) {
            /* Stop at the next boundary of the coarser size: it fits again there. */
            int64_t next = ceil_to(x + 1, storage_resolutions[r + 1]);
            if (next + storage_resolutions[r + 1] <= until_s) k = (next - x) / w;
        }
        add_piece(out, r, x, x + k * w);
        x += k * w;
    }
}

/* Finest resolution whose retention still holds windows starting at from_s. */
static int usable_min_res(int64_t from_s, int64_t now_s, const query_limits_t *lim)
{
    if (lim == NULL) return 0;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT - 1; r++) {
        int64_t keep = lim->retention_seconds[r];
        if (keep <= 0 || from_s >= now_s - keep) return r;
    }
    return STORAGE_RESOLUTION_COUNT - 1;
}

void query_plan_make(int64_t from_ms, int64_t until_ms, int64_t now_ms, const query_limits_t *lim,
                     query_plan_t *out)
{
    int64_t from_s = ceil_to(from_ms, 10000) / 1000;
    int64_t until_s = ceil_to(until_ms, 10000) / 1000;
    int min_res = 0;
    if (from_s < until_s) {
        min_res = usable_min_res(from_s, floor_div(now_ms, 1000), lim);
        int64_t w = storage_resolutions[min_res];
        from_s = floor_div(from_s, w) * w;
        until_s = ceil_to(until_s, w);
    } else {
        until_s = from_s;
    }
    query_plan_range(from_s, until_s, min_res, STORAGE_RESOLUTION_COUNT - 1, out);
}
