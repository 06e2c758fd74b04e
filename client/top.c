/* top.c — reads the top functions answer of GET /api/top (docs/api.md) into
 * the table flamectl prints (flamedb_int.h). Part of the in-tree client
 * library only; not exported by the shared libflamedb.
 *
 * The server computes the table from the whole merged tree (exact, from any
 * node of a cluster); the client only reads it, with the bounded JSON reader.
 * Unknown members are skipped so a newer server stays readable.
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/json.h"

static int row_member(json_t *j, const char *key, void *ctx)
{
    flamedb__top_row_t *r = ctx;
    if (strcmp(key, "name") == 0) return flamedb__json_dup(j, &r->name);
    if (strcmp(key, "self") == 0) return flamedb__json_int(j, &r->self);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &r->total);
    if (strcmp(key, "selfPercent") == 0) return flamedb__json_number(j, &r->self_pct, NULL);
    if (strcmp(key, "totalPercent") == 0) return flamedb__json_number(j, &r->total_pct, NULL);
    if (strcmp(key, "selfCores") == 0) return flamedb__json_number(j, &r->self_cores, NULL);
    if (strcmp(key, "totalCores") == 0) return flamedb__json_number(j, &r->total_cores, NULL);
    return json_skip(j); /* file, and members added later */
}

static int row_complete(const void *row)
{
    const flamedb__top_row_t *r = row;
    return r->name != NULL;
}

static int parse_rows(json_t *j, flamedb__top_t *t)
{
    void *rows = t->rows;
    int rc = flamedb__json_rows(j, &rows, &t->count, sizeof *t->rows, row_member, row_complete);
    t->rows = rows;
    return rc;
}

static int top_member(json_t *j, const char *key, void *ctx)
{
    flamedb__top_t *t = ctx;
    if (strcmp(key, "unit") == 0) return json_string_to(j, t->unit, sizeof t->unit);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &t->sum);
    if (strcmp(key, "rangeSeconds") == 0) return flamedb__json_int(j, &t->range_s);
    if (strcmp(key, "functionCount") == 0) return flamedb__json_int(j, &t->functions);
    if (strcmp(key, "matchCount") == 0) return flamedb__json_int(j, &t->matches);
    if (strcmp(key, "functions") == 0) return parse_rows(j, t);
    if (strcmp(key, "cores") == 0) {
        int null;
        int rc = flamedb__json_number(j, &t->cores, &null);
        t->has_cores = !null;
        return rc;
    }
    if (strcmp(key, "partial") == 0) return flamedb__json_bool(j, &t->partial);
    if (strcmp(key, "aggregationType") == 0) {
        char agg[16];
        int rc = json_string_to(j, agg, sizeof agg);
        t->average = rc == 0 && strcmp(agg, "average") == 0;
        return rc;
    }
    return json_skip(j);
}

int flamedb__top_parse(const char *text, size_t n, flamedb__top_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    out->matches = -1;
    int rc = flamedb__json_answer(text, n, top_member, out, "top", em);
    if (rc != ERR_OK) flamedb__top_free(out);
    return rc;
}

void flamedb__top_free(flamedb__top_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->rows[i].name);
    free(t->rows);
    memset(t, 0, sizeof *t);
}
