/* search.c — the name search of the function lists (GET /api/top and GET
 * /api/diff with search=, query_int.h): which functions' names contain a
 * text.
 *
 * Compared as the web UI's flame-graph search compares (node/ui/format.js,
 * nameMatcher), so the tables and the graph find the same functions: on the
 * name as the JSON answer shows it (a byte that starts no valid UTF-8
 * sequence is U+FFFD there), letters A-Z as a-z and nothing else folded, a
 * plain substring (no pattern characters).
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "query/query_int.h"

int query_search_check(const char *text, errmsg_t *em)
{
    if (text == NULL || text[0] == 0) return 0;
    size_t n = strlen(text);
    if (n > QUERY_SEARCH_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'search': %zu bytes, longer than %d",
                          n, QUERY_SEARCH_MAX);
    for (size_t i = 0, l; i < n; i += l)
        if ((l = buf_utf8_len((const uint8_t *)text + i, n - i)) == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "parameter 'search': not valid UTF-8 (byte %zu)", i);
    return 0;
}

/* s in out (replacing what it held) as the search compares names: each byte
 * that starts no valid UTF-8 sequence as U+FFFD (as the JSON shows it), A-Z
 * as a-z. */
static int fold_name(buf_t *out, const char *s)
{
    size_t n = strlen(s);
    buf_reset(out);
    int rc = buf_reserve(out, 3 * n); /* U+FFFD is 3 bytes */
    uint8_t *o = out->data;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0, l; rc == 0 && i < n; i += l ? l : 1) {
        l = buf_utf8_len(u + i, n - i);
        if (l == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
        } else if (l == 1) {
            *o++ = u[i] >= 'A' && u[i] <= 'Z' ? (uint8_t)(u[i] - 'A' + 'a') : u[i];
        } else {
            memcpy(o, u + i, l);
            o += l;
        }
    }
    if (rc != 0) return rc;
    out->len = (size_t)(o - out->data);
    out->data[out->len] = 0;
    return 0;
}

int query_search_init(query_search_t *s, const char *text)
{
    buf_init(&s->needle, BUF_UNLIMITED); /* bounded by QUERY_SEARCH_MAX (query_search_check) */
    buf_init(&s->name, BUF_UNLIMITED);   /* bounded by max-symbol-len at ingest */
    s->on = text != NULL && text[0] != 0;
    return s->on ? fold_name(&s->needle, text) : 0;
}

int query_search_match(query_search_t *s, const char *name, int *hit)
{
    *hit = 1;
    if (!s->on) return 0;
    int rc = fold_name(&s->name, name);
    *hit = rc == 0 && s->name.len >= s->needle.len &&
           memmem(s->name.data, s->name.len, s->needle.data, s->needle.len) != NULL;
    return rc;
}

void query_search_free(query_search_t *s)
{
    buf_free(&s->needle);
    buf_free(&s->name);
}
