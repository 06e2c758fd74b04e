/* ingest_multipart.c — multipart/form-data pprof uploads and sample_type_config.
 *
 * Parts are slices of the request body (no copies). Recognised fields:
 * `profile` (the pprof, maybe gzipped), `sample_type_config` (JSON), and
 * `prev_profile`, which old Go clients sent for cumulative profiles and which
 * is refused (Pyroscope refuses it too). Unknown parts are ignored. At most
 * MAX_PARTS parts with at most MAX_PART_HEADER bytes of headers each.
 *
 * sample_type_config: {"<sample type>": {"units": s, "aggregation": s,
 * "display-name": s, "sampled": b, "cumulative": b}, ...}. flamedb honours
 * display-name (it renames the type for profile-type naming, e.g. Go block
 * profiles: contentions -> block_count) and units (used when the pprof gives
 * the sample type no unit); aggregation, sampled and cumulative are accepted
 * and ignored: values are stored as sent and always summed.
 */
#define _GNU_SOURCE /* strcasestr, memrchr, strndup */
#include <string.h>
#include <strings.h>

#include "common/json.h"
#include "node/ingest/ingest_int.h"

#define MAX_PARTS 16
#define MAX_PART_HEADER 8192
#define MAX_BOUNDARY 200
#define MAX_CONFIG_BYTES 65536

static const uint8_t *find(const uint8_t *h, size_t hn, const uint8_t *n, size_t nn)
{
    if (nn == 0 || hn < nn) return NULL;
    const uint8_t *end = h + hn - nn + 1;
    for (const uint8_t *p = h; p < end; p++) {
        p = memchr(p, n[0], (size_t)(end - p));
        if (p == NULL) return NULL;
        if (memcmp(p, n, nn) == 0) return p;
    }
    return NULL;
}

static int boundary_of(const char *ct, char *out, errmsg_t *em)
{
    const char *b = strcasestr(ct, "boundary=");
    if (b == NULL)
        return errmsg_set(em, ERR_UNPARSEABLE, "multipart body without a boundary in Content-Type");
    b += 9;
    size_t n;
    if (*b == '"') {
        const char *q = strchr(++b, '"');
        if (q == NULL)
            return errmsg_set(em, ERR_UNPARSEABLE, "unterminated quoted multipart boundary");
        n = (size_t)(q - b);
    } else {
        n = strcspn(b, "; \t");
    }
    if (n == 0 || n > MAX_BOUNDARY)
        return errmsg_set(em, ERR_UNPARSEABLE, "multipart boundary empty or longer than %d bytes",
                          MAX_BOUNDARY);
    memcpy(out, "--", 2);
    memcpy(out + 2, b, n);
    out[n + 2] = 0;
    return 0;
}

/* The form field name of a part from its headers (nlen 0 when none). */
static void field_name(const uint8_t *h, size_t hn, const char **name, size_t *nlen)
{
    *nlen = 0;
    const uint8_t *cd = NULL;
    for (size_t i = 0; i + 19 <= hn; i++)
        if ((i == 0 || h[i - 1] == '\n') &&
            strncasecmp((const char *)h + i, "content-disposition", 19) == 0) {
            cd = h + i;
            break;
        }
    if (cd == NULL) return;
    const uint8_t *eol = memchr(cd, '\n', hn - (size_t)(cd - h));
    size_t cn = eol ? (size_t)(eol - cd) : hn - (size_t)(cd - h);
    for (size_t i = 0; i + 6 <= cn; i++) {
        if (strncasecmp((const char *)cd + i, "name=\"", 6) == 0 &&
            (i == 0 || cd[i - 1] == ' ' || cd[i - 1] == ';')) {
            const uint8_t *s = cd + i + 6;
            const uint8_t *q = memchr(s, '"', cn - i - 6);
            if (q != NULL) {
                *name = (const char *)s;
                *nlen = (size_t)(q - s);
            }
            return;
        }
    }
}

static bool is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(name, want, n) == 0;
}

/* Stores one part; refuses prev_profile. */
static int take_part(const char *name, size_t nn, const uint8_t *data, size_t len,
                     multipart_parts_t *out, errmsg_t *em)
{
    if (is(name, nn, "profile")) {
        out->profile = data;
        out->profile_len = len;
    } else if (is(name, nn, "sample_type_config")) {
        out->config = data;
        out->config_len = len;
    } else if (is(name, nn, "prev_profile")) {
        return errmsg_set(em, ERR_UNSUPPORTED,
                          "multipart part 'prev_profile' (cumulative profiles of old clients) is "
                          "not supported; send delta profiles");
    }
    return 0;
}

int ingest_multipart(const uint8_t *body, size_t len, const char *content_type,
                     multipart_parts_t *out, errmsg_t *em)
{
    char delim[MAX_BOUNDARY + 3];
    memset(out, 0, sizeof *out);
    int rc = boundary_of(content_type ? content_type : "", delim, em);
    if (rc < 0) return rc;
    size_t dn = strlen(delim);
    const uint8_t *p = find(body, len, (const uint8_t *)delim, dn);
    const uint8_t *end = body + len;
    if (p == NULL)
        return errmsg_set(em, ERR_UNPARSEABLE, "multipart body does not contain its boundary");
    for (int parts = 0;; parts++) {
        p += dn;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* closing delimiter */
        if (parts >= MAX_PARTS)
            return errmsg_set(em, ERR_LIMIT, "multipart body has more than %d parts", MAX_PARTS);
        const uint8_t *hs = memchr(p, '\n', (size_t)(end - p));
        if (hs == NULL) return errmsg_set(em, ERR_UNPARSEABLE, "truncated multipart body");
        hs++;
        size_t room = (size_t)(end - hs) < MAX_PART_HEADER ? (size_t)(end - hs) : MAX_PART_HEADER;
        const uint8_t *he = find(hs, room, (const uint8_t *)"\r\n\r\n", 4);
        size_t sep = 4;
        const uint8_t *he2 = find(hs, room, (const uint8_t *)"\n\n", 2);
        if (he == NULL || (he2 != NULL && he2 < he)) {
            he = he2;
            sep = 2;
        }
        if (he == NULL)
            return errmsg_set(em, ERR_UNPARSEABLE,
                              "multipart part headers missing or longer than %d bytes",
                              MAX_PART_HEADER);
        const uint8_t *data = he + sep;
        const uint8_t *next = find(data, (size_t)(end - data), (const uint8_t *)delim, dn);
        if (next == NULL)
            return errmsg_set(em, ERR_UNPARSEABLE, "multipart part without a closing boundary");
        const uint8_t *de = next;
        if (de > data && de[-1] == '\n') de--;
        if (de > data && de[-1] == '\r') de--;
        const char *name;
        size_t nn;
        field_name(hs, (size_t)(he - hs), &name, &nn);
        if (nn > 0 && (rc = take_part(name, nn, data, (size_t)(de - data), out, em)) < 0) return rc;
        p = next;
    }
    if (out->profile == NULL)
        return errmsg_set(em, ERR_UNPARSEABLE, "multipart body has no 'profile' part");
    return 0;
}

/* ---- sample_type_config: {"TYPE": {"display-name": "...", "units": "..."} | null, ...} ---- */

static const json_limits_t stc_json = {16, MAX_CONFIG_BYTES};

static int entry(json_t *j, stc_entry_t *e)
{
    int rc = json_enter(j, '{');
    while (rc == ERR_OK && json_next(j, &rc)) {
        char key[32];
        if ((rc = json_key(j, key, sizeof key)) != ERR_OK) break;
        bool s = json_peek(j) == JSON_STRING;
        if (s && strcmp(key, "display-name") == 0)
            rc = json_string_to(j, e->display_name, sizeof e->display_name);
        else if (s && strcmp(key, "units") == 0)
            rc = json_string_to(j, e->units, sizeof e->units);
        else
            rc = json_skip(j);
    }
    return rc;
}

static int stc_entries(json_t *j, stc_t *out, errmsg_t *em)
{
    int rc = json_enter(j, '{');
    while (rc == ERR_OK && json_next(j, &rc)) {
        if (out->n >= STC_MAX_ENTRIES)
            return errmsg_set(em, ERR_LIMIT, "sample_type_config has more than %d entries",
                              STC_MAX_ENTRIES);
        stc_entry_t *e = &out->e[out->n];
        if ((rc = json_key(j, e->sample_type, sizeof e->sample_type)) != ERR_OK) break;
        if (json_peek(j) == JSON_NULL) { /* null: no config for this type */
            rc = json_skip(j);
            memset(e, 0, sizeof *e);
            continue;
        }
        if ((rc = entry(j, e)) == ERR_OK) out->n++;
    }
    if (rc == ERR_OK) rc = json_finish(j);
    return rc == ERR_OK ? 0 : 1;
}

int ingest_stc_parse(const uint8_t *json, size_t len, stc_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (len > MAX_CONFIG_BYTES)
        return errmsg_set(em, ERR_LIMIT, "sample_type_config larger than %d bytes",
                          MAX_CONFIG_BYTES);
    json_t j;
    json_init(&j, json, len, stc_json);
    int rc = stc_entries(&j, out, em);
    if (rc <= 0) return rc;
    return errmsg_set(em, ERR_UNPARSEABLE,
                      "sample_type_config is not a valid JSON object near byte %zu",
                      json_offset(&j));
}

const stc_entry_t *ingest_stc_find(const stc_t *c, const char *st, size_t n)
{
    if (c == NULL) return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->e[i].sample_type) == n && memcmp(c->e[i].sample_type, st, n) == 0)
            return &c->e[i];
    return NULL;
}
