/* report.c — reads the regression report of GET /api/diff (docs/api.md)
 * into the table flamectl diff prints (flamedb_int.h). Part of the in-tree
 * client library only; not exported by the shared libflamedb.
 *
 * The server computes the report from every bucket of both sides (exact,
 * from any node of a cluster); the client only reads it, with the bounded
 * JSON reader. Unknown members are skipped so a newer server stays readable.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/json.h"

static int row_member(json_t *j, const char *key, void *ctx)
{
    flamedb__report_row_t *r = ctx;
    if (strcmp(key, "name") == 0) return flamedb__json_dup(j, &r->name);
    if (strcmp(key, "leftTotal") == 0) return flamedb__json_int(j, &r->left_total);
    if (strcmp(key, "rightTotal") == 0) return flamedb__json_int(j, &r->right_total);
    if (strcmp(key, "leftShare") == 0) return flamedb__json_number(j, &r->left_share, NULL);
    if (strcmp(key, "rightShare") == 0) return flamedb__json_number(j, &r->right_share, NULL);
    if (strcmp(key, "change") == 0) return flamedb__json_number(j, &r->change, NULL);
    if (strcmp(key, "significant") == 0) return flamedb__json_bool(j, &r->significant);
    if (strcmp(key, "pValue") == 0) {
        int null;
        int rc = flamedb__json_number(j, &r->p, &null);
        r->tested = !null;
        return rc;
    }
    return json_skip(j); /* file, selves, rates, t, df and members added later */
}

static int row_complete(const void *row)
{
    const flamedb__report_row_t *r = row;
    return r->name != NULL;
}

static int parse_rows(json_t *j, flamedb__report_t *t)
{
    void *rows = t->rows;
    int rc = flamedb__json_rows(j, &rows, &t->count, sizeof *t->rows, row_member, row_complete);
    t->rows = rows;
    return rc;
}

static int report_member(json_t *j, const char *key, void *ctx)
{
    flamedb__report_t *t = ctx;
    static const struct {
        const char *key;
        size_t off;
    } ints[] = {
        {"leftTicks", offsetof(flamedb__report_t, left_ticks)},
        {"rightTicks", offsetof(flamedb__report_t, right_ticks)},
        {"leftSeconds", offsetof(flamedb__report_t, left_seconds)},
        {"rightSeconds", offsetof(flamedb__report_t, right_seconds)},
        {"leftBuckets", offsetof(flamedb__report_t, left_buckets)},
        {"rightBuckets", offsetof(flamedb__report_t, right_buckets)},
        {"functionCount", offsetof(flamedb__report_t, functions)},
        {"tested", offsetof(flamedb__report_t, tested)},
        {"matchCount", offsetof(flamedb__report_t, matches)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(key, ints[i].key) == 0)
            return flamedb__json_int(j, (int64_t *)((char *)t + ints[i].off));
    if (strcmp(key, "unit") == 0) return json_string_to(j, t->unit, sizeof t->unit);
    if (strcmp(key, "functions") == 0) return parse_rows(j, t);
    if (strcmp(key, "partial") == 0) return flamedb__json_bool(j, &t->partial);
    return json_skip(j);
}

int flamedb__report_parse(const char *text, size_t n, flamedb__report_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    out->matches = -1;
    int rc = flamedb__json_answer(text, n, report_member, out, "diff", em);
    if (rc != ERR_OK) flamedb__report_free(out);
    return rc;
}

void flamedb__report_free(flamedb__report_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->rows[i].name);
    free(r->rows);
    memset(r, 0, sizeof *r);
}
