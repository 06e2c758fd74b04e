/* profiles.c — GET /api/profiles: the stored profiles of a selection, newest
 * first (docs/api.md).
 *
 * A node's share: the series the selector picks in its token ranges, each
 * one's newest entries in profile_trees within the plan's range (keys are
 * time-ordered per series; the value's total is read, not its tree). Every
 * series lives in one token range, so every (profile, series) entry is
 * listed by exactly one node. A node keeps only its limit + 1 first entries
 * in the answer's order (time, then profile id, both descending, then token
 * and series id), so the
 * gather, which keeps the same, sees more than limit exactly when the whole
 * answer has more: then it is truncated.
 *
 * Partials carry "TIME_NS ID TOTAL {labels}" strings: ID is the profile's
 * reference (token, series id, time, profile id: 80 hex digits, profile.c),
 * the labels the series' label set as a JSON object.
 *
 * Cost: at most limit + 1 entries are read per selected series (a reverse
 * scan from the range's end), so a listing costs O(series x min(limit + 1,
 * profiles in range)) key reads, and memory stays at 2 * (limit + 1)
 * entries per node and per gather.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/json.h"
#include "query/query_int.h"

static int ent_cmp(const void *a, const void *b)
{
    const query_plist_ent_t *x = a, *y = b;
    /* time and profile id both descending: the order a series' keys are
     * scanned in (storage_scan_profile_trees), so the limit + 1 a series
     * gives are exactly its first ones in the answer's order */
    if (x->time_ns != y->time_ns) return x->time_ns > y->time_ns ? -1 : 1;
    int c = memcmp(y->id, x->id, sizeof x->id);
    if (c != 0) return c;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    if (x->series_id != y->series_id) return x->series_id < y->series_id ? -1 : 1;
    return 0;
}

void query_plist_init(query_plist_t *pl, size_t keep)
{
    memset(pl, 0, sizeof *pl);
    pl->keep = keep;
}

void query_plist_free(query_plist_t *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->e[i].labels);
    free(pl->e);
    memset(pl, 0, sizeof *pl);
}

void query_plist_cut(query_plist_t *pl)
{
    if (pl->n > 1) qsort(pl->e, pl->n, sizeof *pl->e, ent_cmp);
    for (size_t i = pl->keep; i < pl->n; i++) {
        pl->label_bytes -= strlen(pl->e[i].labels) + 1;
        free(pl->e[i].labels);
    }
    if (pl->n > pl->keep) pl->n = pl->keep;
}

int query_plist_add(query_plist_t *pl, const query_plist_ent_t *e)
{
    /* at most 2 * keep entries are held: then the list is cut to keep */
    if (pl->n >= 2 * pl->keep) query_plist_cut(pl);
    int rc = GROW(pl->e, pl->cap, pl->n + 1, GROW_UNLIMITED);
    if (rc != 0) {
        free(e->labels);
        return rc;
    }
    pl->e[pl->n++] = *e;
    pl->label_bytes += strlen(e->labels) + 1;
    return 0;
}

/* ---- a node's share ---- */

static int labels_json(const labels_t *lb, buf_t *out)
{
    buf_reset(out);
    int rc = buf_append_str(out, "{");
    for (size_t k = 0; rc == 0 && k < labels_count(lb); k++) {
        const char *name = labels_name(lb, k), *value = labels_value(lb, k);
        if (k > 0) rc = buf_append_str(out, ",");
        if (rc == 0) rc = buf_append_json_string(out, name, strlen(name));
        if (rc == 0) rc = buf_append_str(out, ":");
        if (rc == 0) rc = buf_append_json_string(out, value, strlen(value));
    }
    if (rc == 0) rc = buf_append_str(out, "}");
    return rc;
}

typedef struct scan {
    query_plist_t *pl;
    uint64_t token, series_id;
    const char *labels; /* the series' labels JSON, borrowed */
} scan_t;

static int scan_fn(void *ctx, int64_t time_ns, const uint8_t profile_id[16], int64_t total,
                   int tree_kept, int piece)
{
    (void)tree_kept; /* listed either way: its windows count it */
    (void)piece;     /* each series' share is listed on its own */
    scan_t *sc = ctx;
    query_plist_ent_t e = {
        .time_ns = time_ns, .token = sc->token, .series_id = sc->series_id, .total = total};
    memcpy(e.id, profile_id, sizeof e.id);
    if ((e.labels = strdup(sc->labels)) == NULL) return ERR_NOMEM;
    return query_plist_add(sc->pl, &e);
}

/* One series' profiles within the range into pl. */
static int collect_series(storage_t *st, const char *tenant, uint64_t token, uint64_t sid,
                          const query_partial_args_t *a, query_plist_t *pl, buf_t *js)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(st, tenant, token, sid, &lb);
    if (rc == ERR_NOT_FOUND) return 0;
    if (rc == 0) rc = labels_json(lb, js);
    labels_free(lb);
    if (rc != 0) return rc;
    scan_t sc = {pl, token, sid, (const char *)js->data};
    /* the answer is newest first, so no series can contribute more than the
     * node keeps: limit + 1 */
    return storage_scan_profile_trees(st, tenant, token, sid, a->from_s, a->until_s, a->limit + 1,
                                      scan_fn, &sc);
}

static int to_entries(const query_plist_t *pl, query_partial_t *out)
{
    out->values = calloc(pl->n ? pl->n : 1, sizeof *out->values);
    if (out->values == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < pl->n; i++) {
        const query_plist_ent_t *e = &pl->e[i];
        size_t n = strlen(e->labels) + QUERY_PROFILE_ID_HEX + 64;
        char ref[QUERY_PROFILE_ID_HEX + 1];
        if ((out->values[i] = malloc(n)) == NULL) return ERR_NOMEM;
        query_profile_ref_t r = {e->token, e->series_id, e->time_ns, {0}};
        memcpy(r.id, e->id, sizeof r.id);
        query_profile_ref_write(&r, ref);
        snprintf(out->values[i], n, "%" PRId64 " %s %" PRId64 " %s", e->time_ns, ref, e->total,
                 e->labels);
        out->nvalues = i + 1;
    }
    return 0;
}

int query_profiles_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                           const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                           errmsg_t *em)
{
    if (a->selector == NULL || a->limit < 1 || a->limit > QUERY_PROFILES_MAX_LIMIT)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "profiles: query and a limit required");
    query_series_t ser;
    int rc = query_series_select_text(st, tenant, "query", a->selector, rs, lim, &ser, em);
    if (rc != 0) return rc;
    query_plist_t pl;
    query_plist_init(&pl, a->limit + 1); /* one more: the gather sees a truncation */
    buf_t js;
    buf_init(&js, lim->max_output_bytes);
    for (size_t i = 0; rc == 0 && i < ser.n; i++)
        rc = collect_series(st, tenant, ser.token[i], ser.series_id[i], a, &pl, &js);
    query_plist_cut(&pl);
    if (rc == 0) rc = to_entries(&pl, out);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "profiles: %s", err_message(rc));
    buf_free(&js);
    query_plist_free(&pl);
    query_series_free(&ser);
    return rc;
}

/* ---- the coordinator ---- */

static int parse_i64(const char *s, size_t n, int64_t *out)
{
    char digits[24];
    if (n == 0 || n > 20) return ERR_CORRUPT;
    memcpy(digits, s, n);
    digits[n] = 0;
    char *end;
    long long v = strtoll(digits, &end, 10);
    if (*end != 0 || digits[0] == ' ' || digits[0] == '+') return ERR_CORRUPT;
    *out = v;
    return 0;
}

/* A labels object as a node writes it: one JSON object and nothing else. */
static int check_labels(const char *s, size_t n)
{
    json_t j;
    json_init(&j, s, n, (json_limits_t){.max_depth = 2, .max_string = n});
    if (json_peek(&j) != JSON_OBJECT) return ERR_CORRUPT;
    if (json_skip(&j) != 0 || json_finish(&j) != 0) return ERR_CORRUPT;
    return 0;
}

int query_plist_add_entry(query_plist_t *pl, const char *s, size_t n)
{
    if (memchr(s, 0, n) != NULL) return ERR_CORRUPT;
    const char *sp1 = memchr(s, ' ', n);
    const size_t idn = QUERY_PROFILE_ID_HEX;
    if (sp1 == NULL || (size_t)(s + n - sp1) < idn + 4 || sp1[idn + 1] != ' ') return ERR_CORRUPT;
    const char *id = sp1 + 1, *tot = sp1 + idn + 2;
    const char *sp3 = memchr(tot, ' ', (size_t)(s + n - tot));
    if (sp3 == NULL) return ERR_CORRUPT;
    query_plist_ent_t e = {0};
    int rc = parse_i64(s, (size_t)(sp1 - s), &e.time_ns);
    if (rc == 0) rc = parse_i64(tot, (size_t)(sp3 - tot), &e.total);
    query_profile_ref_t r;
    if (rc == 0 && (query_profile_ref_parse(id, idn, &r) != 0 || r.time_ns != e.time_ns))
        rc = ERR_CORRUPT; /* the id carries the time too: they must agree */
    if (rc == 0) {
        e.token = r.token;
        e.series_id = r.series_id;
        memcpy(e.id, r.id, sizeof e.id);
    }
    size_t ln = (size_t)(s + n - sp3 - 1);
    if (rc == 0) rc = check_labels(sp3 + 1, ln);
    if (rc != 0) return rc;
    if ((e.labels = malloc(ln + 1)) == NULL) return ERR_NOMEM;
    memcpy(e.labels, sp3 + 1, ln);
    e.labels[ln] = 0;
    return query_plist_add(pl, &e);
}

/* Entry i of the answer (a comma before all but the first). */
static int write_entry(const query_plist_ent_t *e, size_t i, buf_t *out)
{
    int64_t t = e->time_ns / 1000000000 - (e->time_ns % 1000000000 < 0); /* floor */
    char ref[QUERY_PROFILE_ID_HEX + 1];
    query_profile_ref_t r = {e->token, e->series_id, e->time_ns, {0}};
    memcpy(r.id, e->id, sizeof r.id);
    query_profile_ref_write(&r, ref);
    int rc = buf_printf(out, "%s{\"time\":%" PRId64 ",\"id\":\"%s\",\"profile_id\":\"%s\"",
                        i ? "," : "", t, ref, ref + QUERY_PROFILE_ID_HEX - 32);
    if (rc == 0) rc = buf_printf(out, ",\"total\":%" PRId64 ",\"labels\":", e->total);
    if (rc == 0) rc = buf_append_str(out, e->labels);
    return rc == 0 ? buf_append_str(out, "}") : rc;
}

/* The end of the answer: truncated, members (may be NULL), the brace. */
static int write_end(int truncated, const char *members, buf_t *out)
{
    int rc = buf_printf(out, "],\"truncated\":%s", truncated ? "true" : "false");
    if (rc == 0 && members != NULL) rc = buf_printf(out, ",%s", members);
    return rc == 0 ? buf_append_byte(out, '}') : rc;
}

int query_profiles_write(query_plist_t *pl, size_t limit, buf_t *out)
{
    query_plist_cut(pl);
    int truncated = pl->n > limit;
    size_t n = truncated ? limit : pl->n;
    int rc = buf_append_str(out, "{\"profiles\":[");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = write_entry(&pl->e[i], i, out);
    return rc == 0 ? write_end(truncated, NULL, out) : rc;
}

size_t query_plist_bytes(const query_plist_t *pl)
{
    return pl->cap * sizeof *pl->e + pl->label_bytes;
}

/* ---- the answer as a stream ---- */

typedef struct plist_stream {
    query_plist_t pl;
    size_t n, next; /* entries listed; the next written (n + 1 once ended) */
    int truncated;
    char *members; /* NULL or owned */
} plist_stream_t;

static int plist_next(void *impl, buf_t *out, size_t want, int *done)
{
    plist_stream_t *p = impl;
    size_t start = out->len;
    int rc = p->next == 0 ? buf_append_str(out, "{\"profiles\":[") : 0;
    for (; rc == 0 && p->next < p->n && out->len - start < want; p->next++)
        rc = write_entry(&p->pl.e[p->next], p->next, out);
    if (rc == 0 && p->next == p->n) {
        rc = write_end(p->truncated, p->members, out);
        p->next++;
    }
    *done = rc == 0 && p->next > p->n;
    return rc;
}

static void plist_stream_free(void *impl)
{
    plist_stream_t *p = impl;
    query_plist_free(&p->pl);
    free(p->members);
    free(p);
}

static const query_stream_ops_t plist_ops = {plist_next, plist_stream_free};

int query_profiles_open(query_plist_t *pl, size_t limit, const char *members, size_t min_bytes,
                        buf_t *out, query_stream_t **stream)
{
    query_plist_cut(pl);
    int truncated = pl->n > limit;
    size_t n = truncated ? limit : pl->n;
    /* an entry is about 200 bytes besides its labels */
    if (n * 200 + pl->label_bytes < min_bytes) {
        int rc = query_profiles_write(pl, limit, out);
        if (rc == 0 && members != NULL) rc = query_add_json_members(out, members);
        return rc;
    }
    plist_stream_t *p = calloc(1, sizeof *p);
    if (p == NULL || (members != NULL && (p->members = strdup(members)) == NULL)) {
        free(p);
        return ERR_NOMEM;
    }
    size_t bytes = sizeof *p + query_plist_bytes(pl) + (members ? strlen(members) + 1 : 0);
    p->pl = *pl;
    memset(pl, 0, sizeof *pl);
    p->n = n;
    p->truncated = truncated;
    return query_stream_new(&plist_ops, p, QUERY_STREAM_LENGTH_UNKNOWN, bytes, stream);
}
