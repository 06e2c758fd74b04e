/* plist.c — reads the answer of GET /api/profiles (docs/api.md) into the
 * table flamectl profiles prints (flamedb_int.h). Part of the in-tree client
 * library only; not exported by the shared libflamedb.
 *
 * The labels object of each entry becomes one "name=value,..." string
 * (without __name__ and __profile_type__, which the query already names).
 * Unknown members are skipped so a newer server stays readable.
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/json.h"

#define LABEL_KEY_MAX 1024 /* a longer label name is cut (it is only shown) */

static int read_labels(json_t *j, char **out)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    char key[LABEL_KEY_MAX];
    char *value = NULL;
    int rc = json_enter(j, '{');
    while (rc == ERR_OK && json_next(j, &rc)) {
        rc = json_key(j, key, sizeof key);
        if (rc == ERR_OK) rc = flamedb__json_dup(j, &value);
        if (rc != ERR_OK || strcmp(key, "__name__") == 0 || strcmp(key, "__profile_type__") == 0)
            continue;
        if (b.len > 0) rc = buf_append_byte(&b, ',');
        if (rc == ERR_OK) rc = buf_printf(&b, "%s=%s", key, value);
    }
    free(value);
    if (rc == ERR_OK) rc = buf_append_byte(&b, 0);
    free(*out);
    *out = rc == ERR_OK ? (char *)b.data : NULL;
    if (rc != ERR_OK) buf_free(&b);
    return rc;
}

static int row_member(json_t *j, const char *key, void *ctx)
{
    flamedb__plist_row_t *r = ctx;
    if (strcmp(key, "time") == 0) return flamedb__json_int(j, &r->time_s);
    if (strcmp(key, "id") == 0) return flamedb__json_dup(j, &r->id);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &r->total);
    if (strcmp(key, "labels") == 0) return read_labels(j, &r->labels);
    return json_skip(j); /* profile_id, and members added later */
}

static int row_complete(const void *row)
{
    const flamedb__plist_row_t *r = row;
    return r->id != NULL && r->labels != NULL;
}

static int parse_rows(json_t *j, flamedb__plist_t *t)
{
    void *rows = t->rows;
    int rc = flamedb__json_rows(j, &rows, &t->count, sizeof *t->rows, row_member, row_complete);
    t->rows = rows;
    return rc;
}

static int plist_member(json_t *j, const char *key, void *ctx)
{
    flamedb__plist_t *t = ctx;
    if (strcmp(key, "profiles") == 0) return parse_rows(j, t);
    if (strcmp(key, "truncated") == 0) return flamedb__json_bool(j, &t->truncated);
    if (strcmp(key, "partial") == 0) return flamedb__json_bool(j, &t->partial);
    return json_skip(j); /* missing ranges, ... */
}

int flamedb__plist_parse(const char *text, size_t n, flamedb__plist_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    int rc = flamedb__json_answer(text, n, plist_member, out, "profiles", em);
    if (rc != ERR_OK) flamedb__plist_free(out);
    return rc;
}

void flamedb__plist_free(flamedb__plist_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->rows[i].id);
        free(t->rows[i].labels);
    }
    free(t->rows);
    memset(t, 0, sizeof *t);
}
