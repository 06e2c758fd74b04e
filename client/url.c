/* url.c — the client's base URL and query-string encoding (flamedb_int.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/flamedb_int.h"

/* Copies [p, p+n) into dst (size cap) or fails when it does not fit. */
static int copy_part(char *dst, size_t cap, const char *p, size_t n)
{
    if (n >= cap) return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

static int parse_port(const char *p, size_t n, char out[8], errmsg_t *em)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: bad port '%.*s'", (int)n, p);
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: bad port '%.*s'", (int)n, p);
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: port %u out of range", v);
    snprintf(out, 8, "%u", v);
    return ERR_OK;
}

/* Splits the authority "host[:port]" or "[v6][:port]". */
static int parse_authority(const char *a, size_t n, flamedb__url_t *out, errmsg_t *em)
{
    const char *host = a, *colon = NULL;
    size_t host_len;
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (close == NULL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: unterminated '[' in host");
        host = a + 1;
        host_len = (size_t)(close - host);
        out->ipv6 = 1;
        if (close + 1 < a + n) {
            if (close[1] != ':') return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: junk after ']'");
            colon = close + 1;
        }
    } else {
        colon = memchr(a, ':', n);
        host_len = colon ? (size_t)(colon - a) : n;
    }
    if (host_len == 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: missing host");
    for (size_t i = 0; i < host_len; i++)
        if (host[i] <= ' ' || host[i] == '@' || (unsigned char)host[i] >= 0x7f)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: bad character in host");
    if (copy_part(out->host, sizeof out->host, host, host_len) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: host too long");
    if (colon == NULL) {
        strcpy(out->port, "80");
        return ERR_OK;
    }
    return parse_port(colon + 1, (size_t)(a + n - colon - 1), out->port, em);
}

int flamedb__url_parse(const char *url, flamedb__url_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (url == NULL || url[0] == '\0') return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: empty");
    const char *p = url;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncasecmp(p, "https://", 8) == 0)
        return errmsg_set(em, ERR_UNSUPPORTED, "URL '%s': https is not supported; use http://",
                          url);
    else if (strstr(p, "://") != NULL)
        return errmsg_set(em, ERR_UNSUPPORTED, "URL '%s': only http:// is supported", url);
    /* a bare "host:port" is accepted as http */
    size_t alen = strcspn(p, "/?#");
    int rc = parse_authority(p, alen, out, em);
    if (rc != ERR_OK) return rc;
    const char *path = p + alen;
    if (*path == '?' || *path == '#')
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: query or fragment not allowed");
    size_t plen = strcspn(path, "?#");
    if (path[plen] != '\0')
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: query or fragment not allowed");
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)path[i] <= ' ' || (unsigned char)path[i] >= 0x7f)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: bad character in path");
    if (copy_part(out->prefix, sizeof out->prefix, path, plen) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "URL: path too long");
    return ERR_OK;
}

int flamedb__url_escape(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        int rc;
        if (plain) {
            rc = buf_append_byte(b, *p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = buf_append(b, e, 3);
        }
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

int flamedb__query_add(buf_t *b, const char *key, const char *value)
{
    if (value == NULL) return ERR_OK;
    int first = b->len == 0 || memchr(b->data, '?', b->len) == NULL;
    int rc = buf_append_byte(b, first ? '?' : '&');
    if (rc == ERR_OK) rc = flamedb__url_escape(b, key);
    if (rc == ERR_OK) rc = buf_append_byte(b, '=');
    if (rc == ERR_OK) rc = flamedb__url_escape(b, value);
    return rc;
}

int flamedb__query_add_int(buf_t *b, const char *key, int64_t value)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRId64, value);
    return flamedb__query_add(b, key, tmp);
}
