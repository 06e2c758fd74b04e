/* shares.c — reads the label shares answer of GET /api/label-shares
 * (docs/api.md) into the table flamectl shares prints (flamedb_int.h). Part
 * of the in-tree client library only; not exported by the shared libflamedb.
 *
 * The server sums the values from the per-window totals (exact, from any
 * node of a cluster); the client only reads them, with the bounded JSON
 * reader. Timelines and unknown members are skipped so a newer server stays
 * readable.
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/json.h"

static int row_member(json_t *j, const char *key, void *ctx)
{
    flamedb__share_row_t *r = ctx;
    if (strcmp(key, "value") == 0) return flamedb__json_dup(j, &r->value);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &r->total);
    if (strcmp(key, "share") == 0) return flamedb__json_number(j, &r->share, NULL);
    return json_skip(j); /* timeline, and members added later */
}

static int row_complete(const void *row)
{
    const flamedb__share_row_t *r = row;
    return r->value != NULL;
}

static int parse_rows(json_t *j, flamedb__shares_t *t)
{
    void *rows = t->rows;
    int rc = flamedb__json_rows(j, &rows, &t->count, sizeof *t->rows, row_member, row_complete);
    t->rows = rows;
    return rc;
}

static int shares_member(json_t *j, const char *key, void *ctx)
{
    flamedb__shares_t *t = ctx;
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &t->total);
    if (strcmp(key, "values") == 0) return parse_rows(j, t);
    if (strcmp(key, "partial") == 0) return flamedb__json_bool(j, &t->partial);
    if (strcmp(key, "aggregationType") == 0) {
        char *type = NULL;
        int rc = flamedb__json_dup(j, &type);
        if (rc == ERR_OK) t->average = strcmp(type, "average") == 0;
        free(type);
        return rc;
    }
    return json_skip(j); /* label, missing ranges, ... */
}

int flamedb__shares_parse(const char *text, size_t n, flamedb__shares_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    int rc = flamedb__json_answer(text, n, shares_member, out, "label shares", em);
    if (rc != ERR_OK) flamedb__shares_free(out);
    return rc;
}

void flamedb__shares_free(flamedb__shares_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->rows[i].value);
    free(t->rows);
    memset(t, 0, sizeof *t);
}
