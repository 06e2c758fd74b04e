/* json.c — the two JSON shapes libflamedb reads (flamedb_int.h).
 *
 * The client reads only arrays of strings (label names/values) and error
 * objects {"code": "...", "message": "..."}, with the bounded reader of
 * common/json.h (compiled into libflamedb); everything else is skipped, with
 * nesting bounded, so hostile nesting cannot exhaust the stack.
 */
#include <stdlib.h>
#include <string.h>

#include "client/flamedb_int.h"
#include "common/grow.h"
#include "common/json.h"

static const json_limits_t client_json = {FLAMEDB__JSON_MAX_DEPTH, (size_t)-1};

static int push_item(flamedb_strings_t *out, size_t *cap, buf_t *s)
{
    int rc = GROW(out->items, *cap, out->count + 1, GROW_UNLIMITED);
    if (rc != ERR_OK) return rc;
    size_t len;
    uint8_t *p = buf_steal(s, &len);
    if (p == NULL) p = (uint8_t *)strdup("");
    if (p == NULL) return ERR_NOMEM;
    out->items[out->count++] = (char *)p;
    return ERR_OK;
}

static int parse_strings(json_t *j, flamedb_strings_t *out)
{
    size_t cap = 0;
    int rc = json_enter(j, '[');
    while (rc == ERR_OK && json_next(j, &rc)) {
        if (out->count >= FLAMEDB__MAX_STRINGS) return ERR_TOO_LARGE;
        buf_t s;
        buf_init(&s, (size_t)(j->end - j->p));
        rc = json_string(j, &s);
        if (rc == ERR_OK) rc = push_item(out, &cap, &s);
        buf_free(&s);
    }
    return rc;
}

int flamedb__json_strings(const char *p, size_t n, flamedb_strings_t *out, errmsg_t *em)
{
    json_t j;
    json_init(&j, p, n, client_json);
    out->items = NULL;
    out->count = 0;
    int rc = parse_strings(&j, out);
    if (rc == ERR_OK) rc = json_finish(&j);
    if (rc == ERR_OK) return ERR_OK;
    flamedb_strings_free(out);
    if (rc == ERR_UNPARSEABLE) return errmsg_set(em, rc, "response is not a JSON array of strings");
    return errmsg_set(em, rc, "response: %s", err_message(rc));
}

/* Copies a string value into dst (truncated); other values are skipped. */
static int read_member(json_t *j, char *dst, size_t cap)
{
    if (json_peek(j) != JSON_STRING) return json_skip(j);
    return json_string_to(j, dst, cap);
}

int flamedb__json_error(const char *p, size_t n, char *code, size_t code_len, char *msg,
                        size_t msg_len)
{
    json_t j;
    json_init(&j, p, n, client_json);
    if (code_len > 0) code[0] = '\0';
    if (msg_len > 0) msg[0] = '\0';
    int rc = json_enter(&j, '{');
    while (rc == ERR_OK && json_next(&j, &rc)) {
        char key[16];
        rc = json_key(&j, key, sizeof key);
        if (rc != ERR_OK) break;
        if (strcmp(key, "code") == 0)
            rc = read_member(&j, code, code_len);
        else if (strcmp(key, "message") == 0)
            rc = read_member(&j, msg, msg_len);
        else
            rc = json_skip(&j);
    }
    return rc == ERR_OK ? ERR_OK : ERR_UNPARSEABLE;
}
