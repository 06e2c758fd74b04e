/* answer.c — what the readers of flamectl's JSON answers share (top.c,
 * report.c, shares.c; flamedb_int.h): the walk over an answer's top-level
 * object and the members they read (numbers, booleans, owned strings), with
 * the bounded reader of common/json.h. In-tree client library only.
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/json.h"

/* Names and strings of an answer are at most this long. */
static const json_limits_t answer_json = {FLAMEDB__JSON_MAX_DEPTH, 65536};

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

int flamedb__json_bool(json_t *j, int *v)
{
    char s[8];
    int rc = json_scalar_to(j, s, sizeof s);
    *v = rc == ERR_OK && strcmp(s, "true") == 0;
    return rc;
}

int flamedb__json_dup(json_t *j, char **out)
{
    buf_t b;
    buf_init(&b, answer_json.max_string);
    int rc = json_string(j, &b);
    if (rc == ERR_OK && buf_append_byte(&b, 0) == ERR_OK) {
        free(*out);
        *out = (char *)buf_steal(&b, NULL);
    }
    buf_free(&b);
    return rc != ERR_OK ? rc : *out != NULL ? ERR_OK : ERR_NOMEM;
}

int flamedb__json_answer(const char *text, size_t n, flamedb__json_member_fn member, void *ctx,
                         const char *what, errmsg_t *em)
{
    json_t j;
    json_init(&j, text, n, answer_json);
    char key[32];
    int rc = json_enter(&j, '{');
    while (rc == ERR_OK && json_next(&j, &rc)) {
        rc = json_key(&j, key, sizeof key);
        if (rc == ERR_OK) rc = member(&j, key, ctx);
    }
    if (rc == ERR_OK) rc = json_finish(&j);
    if (rc != ERR_OK)
        return errmsg_set(em, rc == ERR_NOMEM ? rc : ERR_UNPARSEABLE,
                          "%s answer: not the expected JSON (byte %zu)", what, json_offset(&j));
    return ERR_OK;
}

int flamedb__json_rows(json_t *j, void **rows, size_t *count, size_t row_size,
                       flamedb__json_member_fn member, int (*complete)(const void *row))
{
    size_t cap = *count;
    int rc = json_enter(j, '[');
    while (rc == ERR_OK && json_next(j, &rc)) {
        if (*count >= FLAMEDB__MAX_STRINGS) return ERR_TOO_LARGE;
        if (*count + 1 > cap) {
            size_t ncap = cap ? 2 * cap : 16;
            void *v = realloc(*rows, ncap * row_size);
            if (v == NULL) return ERR_NOMEM;
            *rows = v;
            cap = ncap;
        }
        void *r = (char *)*rows + (*count)++ * row_size;
        memset(r, 0, row_size);
        char key[32];
        rc = json_enter(j, '{');
        while (rc == ERR_OK && json_next(j, &rc)) {
            rc = json_key(j, key, sizeof key);
            if (rc == ERR_OK) rc = member(j, key, r);
        }
        if (rc == ERR_OK && !complete(r)) rc = ERR_UNPARSEABLE;
    }
    return rc;
}
