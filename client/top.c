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
#include "common/grow.h"
#include "common/json.h"

static const json_limits_t top_json = {FLAMEDB__JSON_MAX_DEPTH, 65536};

int flamedb__json_number(json_t *j, double *v, int *is_null)
{
    if (is_null != NULL) *is_null = json_peek(j) == JSON_NULL;
    if (json_peek(j) == JSON_NULL) {
        *v = 0;
        return json_skip(j);
    }
    if (json_peek(j) != JSON_SCALAR) return ERR_UNPARSEABLE;
    char s[64], *end;
    int rc = json_scalar_to(j, s, sizeof s);
    if (rc != ERR_OK) return rc;
    *v = strtod(s, &end);
    return *end == '\0' ? ERR_OK : ERR_UNPARSEABLE;
}

int flamedb__json_int(json_t *j, int64_t *v)
{
    double d = 0;
    int rc = flamedb__json_number(j, &d, NULL);
    *v = (int64_t)d;
    return rc;
}

static int row_member(json_t *j, const char *key, flamedb__top_row_t *r)
{
    if (strcmp(key, "name") == 0) {
        buf_t b;
        buf_init(&b, top_json.max_string);
        int rc = json_string(j, &b);
        if (rc == ERR_OK && buf_append_byte(&b, 0) == ERR_OK) {
            free(r->name);
            r->name = (char *)buf_steal(&b, NULL);
        }
        buf_free(&b);
        return rc != ERR_OK ? rc : r->name != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (strcmp(key, "self") == 0) return flamedb__json_int(j, &r->self);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &r->total);
    if (strcmp(key, "selfPercent") == 0) return flamedb__json_number(j, &r->self_pct, NULL);
    if (strcmp(key, "totalPercent") == 0) return flamedb__json_number(j, &r->total_pct, NULL);
    if (strcmp(key, "selfCores") == 0) return flamedb__json_number(j, &r->self_cores, NULL);
    if (strcmp(key, "totalCores") == 0) return flamedb__json_number(j, &r->total_cores, NULL);
    return json_skip(j); /* file, and members added later */
}

static int parse_rows(json_t *j, flamedb__top_t *t)
{
    size_t cap = 0;
    int rc = json_enter(j, '[');
    while (rc == ERR_OK && json_next(j, &rc)) {
        if (t->count >= FLAMEDB__MAX_STRINGS) return ERR_TOO_LARGE;
        if ((rc = GROW(t->rows, cap, t->count + 1, GROW_UNLIMITED)) != ERR_OK) return rc;
        flamedb__top_row_t *r = &t->rows[t->count++];
        memset(r, 0, sizeof *r);
        char key[32];
        rc = json_enter(j, '{');
        while (rc == ERR_OK && json_next(j, &rc)) {
            rc = json_key(j, key, sizeof key);
            if (rc == ERR_OK) rc = row_member(j, key, r);
        }
        if (rc == ERR_OK && r->name == NULL) rc = ERR_UNPARSEABLE;
    }
    return rc;
}

static int top_member(json_t *j, const char *key, flamedb__top_t *t)
{
    if (strcmp(key, "unit") == 0) return json_string_to(j, t->unit, sizeof t->unit);
    if (strcmp(key, "total") == 0) return flamedb__json_int(j, &t->sum);
    if (strcmp(key, "rangeSeconds") == 0) return flamedb__json_int(j, &t->range_s);
    if (strcmp(key, "functionCount") == 0) return flamedb__json_int(j, &t->functions);
    if (strcmp(key, "functions") == 0) return parse_rows(j, t);
    if (strcmp(key, "cores") == 0) {
        int null;
        int rc = flamedb__json_number(j, &t->cores, &null);
        t->has_cores = !null;
        return rc;
    }
    if (strcmp(key, "partial") == 0) {
        char v[8];
        int rc = json_scalar_to(j, v, sizeof v);
        t->partial = strcmp(v, "true") == 0;
        return rc;
    }
    return json_skip(j);
}

int flamedb__top_parse(const char *text, size_t n, flamedb__top_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    json_t j;
    json_init(&j, text, n, top_json);
    char key[32];
    int rc = json_enter(&j, '{');
    while (rc == ERR_OK && json_next(&j, &rc)) {
        rc = json_key(&j, key, sizeof key);
        if (rc == ERR_OK) rc = top_member(&j, key, out);
    }
    if (rc == ERR_OK) rc = json_finish(&j);
    if (rc != ERR_OK) {
        flamedb__top_free(out);
        return errmsg_set(em, rc == ERR_NOMEM ? rc : ERR_UNPARSEABLE,
                          "top answer: not the expected JSON (byte %zu)", json_offset(&j));
    }
    return ERR_OK;
}

void flamedb__top_free(flamedb__top_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->rows[i].name);
    free(t->rows);
    memset(t, 0, sizeof *t);
}
