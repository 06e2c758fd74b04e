/* report.c — the regression report (GET /api/diff, query.h, docs/api.md
 * "Regression report"): which functions' inclusive shares changed between
 * two selections, and which changes stand out of the normal variation.
 *
 * Each side's range is split into buckets (query_report_plan); every bucket
 * is an ordinary render of that side (merged tree, exact from any node).
 * A function's share in a bucket is its total there (a stack counts once,
 * as in /api/top: query_fns_collect) over the bucket's root total; the
 * buckets of a side are the samples of its behaviour. Per function, Welch's
 * t test compares the two sides' bucket shares; Holm's step-down correction
 * over the functions tested keeps the chance of flagging anything when both
 * sides behave the same at QUERY_REPORT_ALPHA. Whole-range values are sums
 * over the buckets, which partition the range, so they are exact. A search
 * (search.c) only picks which rows the answer lists: every number is the
 * whole report's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/u64map.h"
#include "query/query_int.h"

/* ---------- Student's t ---------- */

/* Continued fraction of the incomplete beta (modified Lentz). */
static double betacf(double x, double a, double b)
{
    const double tiny = 1e-300, eps = 1e-15;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 1000; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for (int k = 0; k < 2; k++) {
            d = 1.0 + num * d;
            c = 1.0 + num / c;
            if (fabs(d) < tiny) d = tiny;
            if (fabs(c) < tiny) c = tiny;
            d = 1.0 / d;
            h *= d * c;
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        }
        if (fabs(d * c - 1.0) < eps) break;
    }
    return h;
}

double query_incbeta(double x, double a, double b)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    double bt = exp(lbt);
    /* the fraction converges fast for x below the mean; use symmetry above */
    if (x < (a + 1.0) / (a + b + 2.0)) return bt * betacf(x, a, b) / a;
    return 1.0 - bt * betacf(1.0 - x, b, a) / b;
}

double query_student_t_p2(double t, double df)
{
    if (!(df > 0.0) || isnan(t)) return 1.0;
    if (isinf(t)) return 0.0;
    return query_incbeta(df / (df + t * t), df / 2.0, 0.5);
}

static void mean_var(const double *v, size_t n, double *mean, double *var)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++)
        m += v[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++)
        s += (v[i] - m) * (v[i] - m);
    *mean = m;
    *var = s / (double)(n - 1);
}

void query_welch_t(const double *a, size_t na, const double *b, size_t nb, double *t, double *df,
                   double *p)
{
    double ma, va, mb, vb;
    mean_var(a, na, &ma, &va);
    mean_var(b, nb, &mb, &vb);
    double sa = va / (double)na, sb = vb / (double)nb, se2 = sa + sb;
    double scale = ma * ma + mb * mb;
    if (se2 <= 1e-24 * scale || se2 <= 0.0) { /* constant on both sides (but rounding) */
        *t = 0.0;
        *df = (double)(na + nb - 2);
        *p = fabs(mb - ma) <= 1e-12 * sqrt(scale) ? 1.0 : 0.0;
        return;
    }
    *t = (mb - ma) / sqrt(se2);
    *df = se2 * se2 / (sa * sa / (double)(na - 1) + sb * sb / (double)(nb - 1));
    *p = query_student_t_p2(*t, *df);
}

/* ---------- the report of bucket trees ---------- */

typedef struct sample {
    uint32_t row;
    uint32_t col; /* bucket column: left buckets, then right ones */
    double share;
} sample_t;

typedef struct acc {
    query_report_t *r;
    u64map_t map; /* sym -> row, charged before it grows */
    size_t caprows;
    sample_t *s;
    size_t ns, caps;
    uint8_t *used; /* per column: the bucket is non-empty */
    size_t ncol;
    /* charged the map, rows, samples and a bucket's function table before
     * they are made (take NULL: nothing charged) */
    query_report_charge_t charge;
    size_t totals; /* of the charge: the totals the last bucket's tree made */
} acc_t;

/* Takes n bytes from a's charge (none: nothing). */
static int acc_take(acc_t *a, size_t n)
{
    if (a->charge.take == NULL || n == 0) return 0;
    return a->charge.take(a->charge.ctx, n) != 0 ? ERR_UNAVAILABLE : 0;
}

static void acc_give(acc_t *a, size_t n)
{
    if (a->charge.take != NULL && a->charge.give != NULL && n > 0) a->charge.give(a->charge.ctx, n);
}

/* Grows an array of *cap elements of elem bytes (p: its address) to hold
 * need, charged first: the new block beside the old while realloc copies,
 * then the old one given back. */
static int acc_grow(acc_t *a, void *p, size_t *cap, size_t need, size_t elem, size_t min_cap)
{
    if (need <= *cap) return 0;
    size_t was = *cap, n = was > 0 ? was : min_cap;
    while (n < need)
        n *= 2;
    int charged = a->charge.take != NULL;
    if (charged && a->charge.take(a->charge.ctx, n * elem) != 0) return ERR_UNAVAILABLE;
    int rc = grow_array(p, cap, n, elem, GROW_UNLIMITED, min_cap);
    if (charged && a->charge.give != NULL)
        a->charge.give(a->charge.ctx, rc == 0 ? was * elem : n * elem);
    return rc;
}

/* Room in the map for one more symbol: a grown table is charged before it
 * is made, the old one given back once its keys moved over. */
static int map_room(acc_t *a)
{
    size_t grown = u64map_reserve_bytes(&a->map, a->map.len + 1), was = u64map_bytes(&a->map);
    if (grown == 0) return 0;
    int rc = acc_take(a, grown);
    if (rc != 0) return rc;
    rc = u64map_reserve(&a->map, a->map.len + 1);
    acc_give(a, rc == 0 ? was : grown);
    return rc;
}

static int row_of(acc_t *a, uint64_t sym, uint32_t *row)
{
    query_report_t *r = a->r;
    int rc = map_room(a);
    if (rc != 0) return rc;
    int put = u64map_get_or_put(&a->map, sym, (uint32_t)r->nrows, row);
    if (put < 0) return put;
    if (put == 1) {
        int rc = acc_grow(a, &r->rows, &a->caprows, r->nrows + 1, sizeof *r->rows, 256);
        if (rc != 0) return rc;
        r->rows[r->nrows++] = (query_report_row_t){.sym = sym, .p = 1.0};
    }
    return 0;
}

/* A bucket's functions (self and total each) and ticks into column col. */
static int add_functions(acc_t *a, const query_fn_t *fns, size_t n, int64_t ticks, int side,
                         uint32_t col)
{
    int rc = 0;
    a->r->ticks[side] += ticks;
    a->used[col] = ticks > 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint32_t row;
        rc = row_of(a, fns[i].sym, &row);
        if (rc != 0) break;
        query_report_row_t *w = &a->r->rows[row];
        w->self[side] += fns[i].self;
        w->total[side] += fns[i].total;
        if (ticks <= 0) continue;
        rc = acc_grow(a, &a->s, &a->caps, a->ns + 1, sizeof *a->s, 1024);
        if (rc == 0) a->s[a->ns++] = (sample_t){row, col, (double)fns[i].total / (double)ticks};
    }
    return rc;
}

static int add_bucket(acc_t *a, const calltree_t *t, int side, uint32_t col)
{
    query_fn_t *fns = NULL;
    size_t n = 0, held = 0;
    int64_t ticks = calltree_root_total(t);
    int rc = query_fns_collect(t, &a->charge, &fns, &n, &held, &a->totals);
    if (rc == 0) {
        rc = add_functions(a, fns, n, ticks, side, col);
    } else {
        a->r->ticks[side] += ticks;
        a->used[col] = ticks > 0;
    }
    free(fns);
    if (held > 0 && a->charge.give != NULL) a->charge.give(a->charge.ctx, held);
    return rc;
}

/* Welch per function on the non-empty buckets of each side. */
static int test_rows(acc_t *a, size_t ncol, size_t nleft)
{
    query_report_t *r = a->r;
    double *m = calloc(r->nrows * ncol + 1, sizeof *m);
    double *x = malloc((ncol + 1) * sizeof *x);
    int rc = m != NULL && x != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < a->ns; i++)
        m[a->s[i].row * ncol + a->s[i].col] = a->s[i].share;
    for (size_t i = 0; rc == 0 && i < r->nrows; i++) {
        query_report_row_t *w = &r->rows[i];
        size_t na = 0, nb = 0;
        for (size_t c = 0; c < ncol; c++)
            if (a->used[c] && c < nleft) x[na++] = m[i * ncol + c];
        for (size_t c = 0; c < ncol; c++)
            if (a->used[c] && c >= nleft) x[na + nb++] = m[i * ncol + c];
        w->tested = na >= QUERY_REPORT_MIN_BUCKETS && nb >= QUERY_REPORT_MIN_BUCKETS;
        if (w->tested) query_welch_t(x, na, x + na, nb, &w->t, &w->df, &w->p);
        r->tested += (size_t)w->tested;
    }
    free(m);
    free(x);
    return rc;
}

static int by_p(const void *x, const void *y)
{
    const query_report_row_t *a = *(query_report_row_t *const *)x;
    const query_report_row_t *b = *(query_report_row_t *const *)y;
    return a->p < b->p ? -1 : a->p > b->p ? 1 : a->sym < b->sym ? -1 : a->sym > b->sym;
}

/* Holm: the k-th smallest p (k from 0) is rejected while p <= alpha / (m - k). */
static int holm(query_report_t *r)
{
    query_report_row_t **v = malloc((r->tested + 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (r->rows[i].tested) v[m++] = &r->rows[i];
    qsort(v, m, sizeof *v, by_p);
    for (size_t k = 0; k < m && v[k]->p <= QUERY_REPORT_ALPHA / (double)(m - k); k++)
        v[k]->significant = 1;
    free(v);
    return 0;
}

static int by_change(const void *x, const void *y)
{
    const query_report_row_t *a = x, *b = y;
    double ca = fabs(a->change), cb = fabs(b->change);
    if (ca != cb) return ca > cb ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c == 0) c = strcmp(a->file, b->file);
    return c != 0 ? c : a->sym < b->sym ? -1 : a->sym > b->sym;
}

static int finish_rows(query_report_t *r, const symtab_t *syms)
{
    if (r->nrows > 0 && (r->unk = malloc(r->nrows * 32)) == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < r->nrows; i++) {
        query_report_row_t *w = &r->rows[i];
        query_sym_name(syms, w->sym, r->unk + i * 32, &w->name, &w->file);
        if (w->file == NULL) w->file = "";
        for (int s = 0; s < 2; s++)
            w->share[s] = r->ticks[s] > 0 ? (double)w->total[s] / (double)r->ticks[s] : 0.0;
        w->change = 100.0 * (w->share[1] - w->share[0]);
    }
    if (r->nrows > 1) qsort(r->rows, r->nrows, sizeof *r->rows, by_change);
    return 0;
}

#define ACC_MAP_START 1024 /* symbols the map is first sized for */

/* A report built one bucket at a time (acc_add), so a caller may free each
 * bucket's tree once it is added; charge (may be NULL) is taken for the
 * map and the columns' flags before they are made, given back by acc_end. */
static int acc_begin(acc_t *a, query_report_t *out, const size_t n[2],
                     const query_report_charge_t *charge)
{
    memset(out, 0, sizeof *out);
    memset(a, 0, sizeof *a);
    a->r = out;
    if (charge != NULL) a->charge = *charge;
    a->ncol = n[0] + n[1];
    int rc = acc_take(a, u64map_init_bytes(ACC_MAP_START) + a->ncol + 1);
    if (rc != 0) {
        a->charge = (query_report_charge_t){0}; /* nothing held to give back */
        return rc;
    }
    rc = u64map_init(&a->map, ACC_MAP_START);
    if ((a->used = calloc(a->ncol + 1, 1)) == NULL) rc = ERR_NOMEM;
    return rc;
}

/* Adds bucket b of side s (buckets in order: every left one, then the right ones). */
static int acc_add(acc_t *a, const size_t n[2], const calltree_t *t, int s, size_t b)
{
    uint32_t col = (uint32_t)(s == 0 ? b : n[0] + b);
    int rc = add_bucket(a, t, s, col);
    a->r->buckets[s] += a->used[col];
    return rc;
}

/* Adds bucket b of side s given as its functions (a bucket's body). */
static int acc_add_functions(acc_t *a, const size_t n[2], const query_fn_t *fns, size_t nfns,
                             int64_t ticks, int s, size_t b)
{
    uint32_t col = (uint32_t)(s == 0 ? b : n[0] + b);
    int rc = add_functions(a, fns, nfns, ticks, s, col);
    a->r->buckets[s] += a->used[col];
    return rc;
}

/* Tests and names the rows (when rc is 0) and frees a; the report is freed
 * on failure. What each step allocates is charged before and given back
 * after: the tests' matrix of shares, Holm's order, then the sort's copy of
 * the rows and the names of unknown symbols (the caller charges those
 * with the report). */
static int acc_end(acc_t *a, int rc, const size_t n[2], const symtab_t *syms)
{
    size_t ncol = n[0] + n[1], nrows = a->r->nrows;
    size_t work = (nrows * ncol + 1 + ncol + 1) * sizeof(double);
    if (rc == 0 && (rc = acc_take(a, work)) == 0) {
        rc = test_rows(a, ncol, n[0]);
        acc_give(a, work);
    }
    work = (a->r->tested + 1) * sizeof(query_report_row_t *);
    if (rc == 0 && (rc = acc_take(a, work)) == 0) {
        rc = holm(a->r);
        acc_give(a, work);
    }
    work = nrows * (sizeof *a->r->rows + 32);
    if (rc == 0 && (rc = acc_take(a, work)) == 0) {
        rc = finish_rows(a->r, syms);
        acc_give(a, work);
    }
    acc_give(a, u64map_bytes(&a->map) + a->ncol + 1);
    u64map_free(&a->map);
    free(a->s);
    free(a->used);
    if (rc != 0) query_report_free(a->r);
    return rc;
}

int query_report_compute(const calltree_t *const *trees[2], const size_t n[2], const symtab_t *syms,
                         query_report_t *out)
{
    acc_t a;
    int rc = acc_begin(&a, out, n, NULL); /* nothing charged */
    for (int s = 0; s < 2; s++)
        for (size_t b = 0; rc == 0 && b < n[s]; b++)
            rc = acc_add(&a, n, trees[s][b], s, b);
    return acc_end(&a, rc, n, syms);
}

void query_report_free(query_report_t *r)
{
    free(r->rows);
    free(r->unk);
    free(r->names);
    memset(r, 0, sizeof *r);
}

/* Bytes of the rows' names and files, each with its NUL. */
static size_t names_len(const query_report_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nrows; i++)
        n += strlen(r->rows[i].name) + strlen(r->rows[i].file) + 2;
    return n;
}

int query_report_own_names(query_report_t *r)
{
    size_t n = names_len(r);
    char *names = malloc(n + 1), *o = names;
    if (names == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < r->nrows; i++) {
        query_report_row_t *w = &r->rows[i];
        size_t ln = strlen(w->name) + 1, lf = strlen(w->file) + 1;
        memcpy(o, w->name, ln);
        memcpy(o + ln, w->file, lf);
        w->name = o;
        w->file = o + ln;
        o += ln + lf;
    }
    free(r->names);
    free(r->unk); /* no row points into it any more */
    r->unk = NULL;
    r->names = names;
    r->names_len = n;
    return 0;
}

size_t query_report_bytes(const query_report_t *r)
{
    return sizeof *r + r->nrows * sizeof *r->rows + r->names_len + (r->unk ? r->nrows * 32 : 0);
}

/* ---------- the answer ---------- */

static double per_second(int64_t v, int64_t seconds)
{
    return seconds > 0 ? (double)v / (double)seconds : 0.0;
}

static int write_row(buf_t *out, const query_report_row_t *w, const int64_t sec[2], int rates)
{
    int rc = buf_append_str(out, "{\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, w->name, strlen(w->name));
    if (rc == 0 && w->file[0] != 0) rc = buf_append_str(out, ",\"file\":");
    if (rc == 0 && w->file[0] != 0) rc = buf_append_json_string(out, w->file, strlen(w->file));
    if (rc == 0)
        rc =
            buf_printf(out,
                       ",\"leftSelf\":%lld,\"leftTotal\":%lld,\"rightSelf\":%lld,"
                       "\"rightTotal\":%lld,\"leftShare\":%.15g,\"rightShare\":%.15g,"
                       "\"change\":%.15g",
                       (long long)w->self[0], (long long)w->total[0], (long long)w->self[1],
                       (long long)w->total[1], 100.0 * w->share[0], 100.0 * w->share[1], w->change);
    if (rc == 0 && rates)
        rc = buf_printf(out, ",\"leftTotalPerSecond\":%.15g,\"rightTotalPerSecond\":%.15g",
                        per_second(w->total[0], sec[0]), per_second(w->total[1], sec[1]));
    if (rc == 0 && w->tested)
        rc = buf_printf(out, ",\"t\":%.15g,\"df\":%.15g,\"pValue\":%.15g", w->t, w->df, w->p);
    if (rc == 0 && !w->tested) rc = buf_append_str(out, ",\"t\":null,\"df\":null,\"pValue\":null");
    if (rc == 0) rc = buf_printf(out, ",\"significant\":%s}", w->significant ? "true" : "false");
    return rc;
}

/* Which rows the answer lists: every one, or those matching search. */
static int match_rows(const query_report_t *r, const char *search, uint8_t *hit, size_t *count)
{
    query_search_t m;
    int rc = query_search_init(&m, search);
    *count = 0;
    for (size_t i = 0; rc == 0 && i < r->nrows; i++) {
        int h;
        rc = query_search_match(&m, r->rows[i].name, &h);
        hit[i] = (uint8_t)h;
        *count += (size_t)h;
    }
    query_search_free(&m);
    return rc;
}

int query_report_encode(const query_report_t *r, const char *profile_type, size_t limit,
                        const char *search, const int64_t seconds[2], const char *report_id,
                        const char *partial_json, buf_t *out)
{
    ptype_t pt;
    const char *unit = query_ptype_parse(profile_type, &pt) == 0 ? pt.sample_unit : "";
    int rates = seconds[0] != seconds[1];
    int searched = search != NULL && search[0] != 0;
    size_t matched = 0;
    int rc = buf_beside_take(out, r->nrows + 1); /* the rows' flags, beside the answer */
    if (rc != 0) return rc;
    uint8_t *hit = malloc(r->nrows + 1);
    rc = hit != NULL ? match_rows(r, search, hit, &matched) : ERR_NOMEM;
    if (rc == 0)
        rc = buf_printf(out,
                        "{\"leftTicks\":%lld,\"rightTicks\":%lld,\"unit\":", (long long)r->ticks[0],
                        (long long)r->ticks[1]);
    if (rc == 0) rc = buf_append_json_string(out, unit, strlen(unit));
    if (rc == 0 && report_id != NULL) rc = buf_printf(out, ",\"reportId\":\"%s\"", report_id);
    if (rc == 0)
        rc = buf_printf(out,
                        ",\"leftSeconds\":%lld,\"rightSeconds\":%lld,\"leftBuckets\":%zu,"
                        "\"rightBuckets\":%zu,\"minBuckets\":%d,\"alpha\":%g,"
                        "\"functionCount\":%zu",
                        (long long)seconds[0], (long long)seconds[1], r->buckets[0], r->buckets[1],
                        QUERY_REPORT_MIN_BUCKETS, QUERY_REPORT_ALPHA, r->nrows);
    if (rc == 0 && searched) rc = buf_printf(out, ",\"matchCount\":%zu", matched);
    if (rc == 0) rc = buf_printf(out, ",\"tested\":%zu,\"functions\":[", r->tested);
    for (size_t i = 0, n = 0; rc == 0 && i < r->nrows && n < limit; i++) {
        if (!hit[i]) continue;
        if (n++) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = write_row(out, &r->rows[i], seconds, rates);
    }
    free(hit);
    buf_beside_give(out, r->nrows + 1);
    if (rc == 0) rc = buf_append_byte(out, ']');
    if (rc == 0 && partial_json != NULL) rc = buf_append_byte(out, ',');
    if (rc == 0 && partial_json != NULL) rc = buf_append_str(out, partial_json);
    return rc != 0 ? rc : buf_append_byte(out, '}');
}

/* ---------- the plan ---------- */

static int parse_limit(const char *s, size_t *out, errmsg_t *em)
{
    unsigned long long v = QUERY_REPORT_DEFAULT_LIMIT;
    int rc = query_parse_uint_param("limit", s, 1, QUERY_REPORT_MAX_LIMIT, &v, em);
    *out = (size_t)v;
    return rc;
}

static void bucket_set(query_report_bucket_t *b, const query_params_t *side, int64_t from_s,
                       int64_t until_s)
{
    snprintf(b->from, sizeof b->from, "%lld", (long long)from_s);
    snprintf(b->until, sizeof b->until, "%lld", (long long)until_s);
    b->p = (query_params_t){
        .query = side->query, .from = b->from, .until = b->until, .merged_functions = 1};
}

/* Splits one side: W windows of its plan into B = min(W, max) buckets, the
 * k-th holding windows [k*W/B, (k+1)*W/B). */
static int plan_side(query_report_plan_t *out, int s, const query_params_t *p,
                     const query_limits_t *lim, int64_t now_ms, errmsg_t *em)
{
    int64_t from_ms, until_ms;
    int rc = query_time_range(p, now_ms, &from_ms, &until_ms, em);
    if (rc != 0) return rc;
    query_plan_t plan;
    query_plan_make(from_ms, until_ms, now_ms, lim, &plan);
    int64_t w = storage_resolutions[plan.min_res];
    int64_t nw = (plan.until_s - plan.from_s) / w;
    out->from_s[s] = plan.from_s;
    out->until_s[s] = plan.until_s;
    if (nw <= 0) { /* nothing selected: one empty bucket over the range as given */
        out->nbuckets[s] = 1;
        out->bucket[s][0].p = *p;
        return 0;
    }
    int64_t nb = nw < QUERY_REPORT_MAX_BUCKETS ? nw : QUERY_REPORT_MAX_BUCKETS;
    for (int64_t k = 0; k < nb; k++)
        bucket_set(&out->bucket[s][k], p, plan.from_s + k * nw / nb * w,
                   plan.from_s + (k + 1) * nw / nb * w);
    out->nbuckets[s] = (size_t)nb;
    return 0;
}

int query_report_plan(const query_diff_params_t *d, const char *limit, const char *search,
                      const query_limits_t *lim, int64_t now_ms, query_report_plan_t *out,
                      errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    query_diff_params_t only = *d; /* the shared checks, without render-diff's format */
    only.format = NULL;
    only.max_nodes = NULL;
    int rc = query_diff_check(&only, lim, em);
    if (rc == 0) rc = parse_limit(limit, &out->limit, em);
    if (rc == 0) rc = query_search_check(search, em);
    if (rc == 0) out->search = search;
    query_selector_t *sel = NULL;
    if (rc == 0)
        rc = query_selector_parse("leftQuery", d->left.query, strlen(d->left.query), &sel, em);
    if (rc == 0) snprintf(out->type, sizeof out->type, "%s", query_selector_type(sel));
    query_selector_free(sel);
    if (rc == 0) rc = plan_side(out, 0, &d->left, lim, now_ms, em);
    if (rc == 0) rc = plan_side(out, 1, &d->right, lim, now_ms, em);
    return rc;
}

/* ---------- bodies in, answer out ---------- */

/* Bytes taken from a report's charge; given back by held_give. */
typedef struct held {
    const query_report_charge_t *charge;
    size_t bytes;
    size_t answer; /* of bytes: the answer's buffer, charged before it grows */
} held_t;

static int held_take(held_t *h, size_t n)
{
    if (h->charge == NULL || h->charge->take == NULL || n == 0) return 0;
    if (h->charge->take(h->charge->ctx, n) != 0) return ERR_UNAVAILABLE;
    h->bytes += n;
    return 0;
}

/* Gives n of the bytes taken back (memory freed early). */
static void held_sub(held_t *h, size_t n)
{
    if (h->charge == NULL || h->charge->take == NULL || n == 0) return; /* none taken */
    if (h->charge->give != NULL) h->charge->give(h->charge->ctx, n);
    h->bytes -= n;
}

static void held_give(held_t *h)
{
    if (h->charge != NULL && h->charge->give != NULL && h->bytes > 0)
        h->charge->give(h->charge->ctx, h->bytes);
    h->bytes = 0;
}

/* held_take and held_sub as a charge (a bucket's function table). */
static int held_take_fn(void *ctx, size_t n)
{
    return held_take(ctx, n);
}

static void held_sub_fn(void *ctx, size_t n)
{
    held_sub(ctx, n);
}

/* The answer's buffer grows (buf_charge): what it holds while it does is
 * charged first. */
static int answer_grows(void *ctx, size_t now)
{
    held_t *h = ctx;
    if (now > h->answer && held_take(h, now - h->answer) != 0) return ERR_UNAVAILABLE;
    if (now < h->answer) held_sub(h, h->answer - now);
    h->answer = now;
    return 0;
}

/* Builds the report one bucket at a time: each bucket's functions (the
 * sums its render made, query_encode_functions) are decoded (their table
 * charged before it is made, their names as syms grows), added and freed
 * before the next. */
static int build_report(const query_report_plan_t *plan, const uint8_t *const *body[2],
                        const size_t *len[2], symtab_t *syms, held_t *held, query_report_t *r)
{
    acc_t a;
    query_report_charge_t charge = {held_take_fn, held_sub_fn, held};
    int rc = acc_begin(&a, r, plan->nbuckets, &charge);
    for (int s = 0; s < 2; s++)
        for (size_t b = 0; rc == 0 && b < plan->nbuckets[s]; b++) {
            query_fn_t *fns = NULL;
            size_t n = 0;
            int64_t ticks = 0;
            rc = query_decode_functions(body[s][b], len[s][b], syms, &charge, &fns, &n, &ticks);
            if (rc == 0) rc = acc_add_functions(&a, plan->nbuckets, fns, n, ticks, s, b);
            free(fns);
            if (rc == 0) held_sub(held, n * sizeof *fns); /* else all given back at the end */
        }
    return acc_end(&a, rc, plan->nbuckets, syms);
}

int query_report_run(const query_report_plan_t *plan, const query_limits_t *lim,
                     const uint8_t *const *body[2], const size_t *len[2], const char *report_id,
                     const char *partial_json, const query_report_charge_t *charge, size_t *charged,
                     query_report_t *keep, size_t *keep_charged, query_result_t *out, errmsg_t *em)
{
    if (charged != NULL) *charged = 0;
    if (keep_charged != NULL) *keep_charged = 0;
    query_report_t r = {0};
    held_t held = {charge, 0, 0};
    symtab_t *syms = symtab_new(); /* charged before it grows (query_tree_decode_charged) */
    int rc = syms != NULL ? held_take(&held, symtab_mem_bytes(syms)) : ERR_NOMEM;
    if (rc == 0) rc = build_report(plan, body, len, syms, &held, &r);
    if (rc == ERR_CORRUPT) errmsg_set(em, rc, "diff report: a bucket's functions are damaged");
    size_t report_bytes = rc == 0 ? query_report_bytes(&r) : 0;
    if (rc == 0) rc = held_take(&held, report_bytes);
    if (rc == ERR_UNAVAILABLE) /* a decoded bucket and the report passed the budget */
        errmsg_set(em, rc,
                   "server busy: the report's decoded buckets need more memory than "
                   "query-memory-bytes leaves now; retry later or narrow the query");
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    out->content_type = "application/json";
    int64_t sec[2] = {plan->until_s[0] - plan->from_s[0], plan->until_s[1] - plan->from_s[1]};
    buf_charge(&out->body, answer_grows, &held); /* the answer counts as it grows */
    if (rc == 0)
        rc = query_report_encode(&r, plan->type, plan->limit, plan->search, sec, report_id,
                                 partial_json, &out->body);
    buf_charge(&out->body, NULL, NULL);
    if (rc == ERR_UNAVAILABLE && em->text[0] == 0)
        errmsg_set(em, rc,
                   "server busy: the report's answer needs more memory than "
                   "query-memory-bytes leaves now; retry later or narrow the query");
    if (rc != 0 && em->text[0] == 0) rc = query_out_err(rc, &out->body, em);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "diff report: %s", err_message(rc));
    /* the names a kept report copies (it is charged again by the cache) */
    size_t names = rc == 0 ? names_len(&r) + 1 : 0;
    int named = rc == 0 && keep != NULL && held_take(&held, names) == 0;
    size_t kept = 0;                                /* what the kept report was charged */
    if (named && query_report_own_names(&r) == 0) { /* else simply not kept */
        *keep = r;
        memset(&r, 0, sizeof r);
        kept = report_bytes + names;
    }
    query_report_free(&r);
    symtab_free(syms);
    if (rc == 0 && charged != NULL && held.answer <= held.bytes) { /* taken until it is sent */
        *charged = held.answer;
        held.bytes -= held.answer;
    }
    if (kept > 0 && keep_charged != NULL && kept <= held.bytes) { /* the report cache's next */
        *keep_charged = kept;
        held.bytes -= kept;
    }
    held_give(&held);
    return rc;
}
