/* auth.c — the token table of --auth-file and the request check (see auth.h). */
#include "node/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/grow.h"
#include "common/digest.h"
#include "node/node_int.h"

/* A line of the file is at most a tenant, a role and 64 hex digits plus blanks. */
#define LINE_MAX_BYTES 1024
/* Tokens longer than this are refused before hashing (a header is bounded by
 * max-header-bytes anyway; this keeps the Basic decoding buffer on the stack). */
#define TOKEN_MAX 4096

typedef struct entry {
    char tenant[STORAGE_TENANT_MAX + 1];
    int perms;
    unsigned char hash[NODE_AUTH_SHA256_LEN];
} entry_t;

struct node_auth {
    entry_t *e;
    size_t n, cap;
};

int node_auth_sha256(const void *data, size_t n, unsigned char out[NODE_AUTH_SHA256_LEN])
{
    return digest_sha256(data, n, out);
}

/* ---------- the file ---------- */

static int role_perms(const char *role)
{
    if (strcmp(role, "read") == 0) return NODE_AUTH_READ;
    if (strcmp(role, "write") == 0) return NODE_AUTH_WRITE;
    if (strcmp(role, "admin") == 0) return NODE_AUTH_READ | NODE_AUTH_WRITE | NODE_AUTH_ADMIN;
    return -1;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int parse_hex(const char *s, unsigned char out[NODE_AUTH_SHA256_LEN])
{
    if (strlen(s) != 2 * NODE_AUTH_SHA256_LEN) return -1;
    for (size_t i = 0; i < NODE_AUTH_SHA256_LEN; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return 0;
}

static int add_entry(node_auth_t *a, const entry_t *e)
{
    int rc = GROW(a->e, a->cap, a->n + 1, GROW_UNLIMITED);
    if (rc != ERR_OK) return rc;
    a->e[a->n++] = *e;
    return ERR_OK;
}

/* One non-comment line: TENANT ROLE SHA256HEX. */
static int parse_line(node_auth_t *a, char *line, const char *path, int lineno, errmsg_t *em)
{
    char *save = NULL;
    char *f[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++)
        f[i] = strtok_r(i == 0 ? line : NULL, " \t\r", &save);
    if (f[0] == NULL) return ERR_OK; /* blank */
    if (f[0][0] == '#') return ERR_OK;
    if (f[2] == NULL || f[3] != NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "%s:%d: expected three fields 'TENANT ROLE SHA256HEX'", path, lineno);
    entry_t e = {{0}};
    errmsg_t tem = {{0}};
    if (routes_tenant(f[0], &tem) == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s:%d: tenant: %s", path, lineno, tem.text);
    snprintf(e.tenant, sizeof e.tenant, "%s", f[0]);
    e.perms = role_perms(f[1]);
    if (e.perms < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "%s:%d: role '%.40s' is not one of read, write, admin", path, lineno,
                          f[1]);
    if (parse_hex(f[2], e.hash) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "%s:%d: the hash is not 64 hex digits (sha256sum of the token)", path,
                          lineno);
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->e[i].hash, e.hash, sizeof e.hash) == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "%s:%d: the same token hash is listed twice (tenant '%s' above)",
                              path, lineno, a->e[i].tenant);
    if (add_entry(a, &e) != ERR_OK) return errmsg_set(em, ERR_NOMEM, "%s: out of memory", path);
    return ERR_OK;
}

static int parse_file(node_auth_t *a, FILE *f, const char *path, errmsg_t *em)
{
    char line[LINE_MAX_BYTES + 2];
    int lineno = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len > LINE_MAX_BYTES && line[len - 1] != '\n')
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s:%d: line longer than %d bytes", path,
                              lineno, LINE_MAX_BYTES);
        if (len > 0 && line[len - 1] == '\n') line[len - 1] = '\0';
        int rc = parse_line(a, line, path, lineno, em);
        if (rc != ERR_OK) return rc;
    }
    if (ferror(f)) return errmsg_set(em, ERR_IO, "%s: read error", path);
    return ERR_OK;
}

int node_auth_load(const char *path, node_auth_t **out, errmsg_t *em)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) return errmsg_set(em, ERR_IO, "auth-file %s: %s", path, strerror(errno));
    node_auth_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        fclose(f);
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    int rc = parse_file(a, f, path, em);
    fclose(f);
    if (rc == ERR_OK && a->n == 0)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "auth-file %s lists no token: every request would be refused", path);
    if (rc != ERR_OK) {
        node_auth_free(a);
        return rc;
    }
    *out = a;
    return ERR_OK;
}

void node_auth_free(node_auth_t *a)
{
    if (a == NULL) return;
    if (a->e != NULL) explicit_bzero(a->e, a->cap * sizeof *a->e);
    free(a->e);
    free(a);
}

size_t node_auth_count(const node_auth_t *a)
{
    return a ? a->n : 0;
}

/* ---------- a request ---------- */

int node_auth_need(const char *path, int metrics_open)
{
    if (strcmp(path, "/ready") == 0) return NODE_AUTH_OPEN;
    /* the web UI's page and files hold no data: the page asks for a token
     * itself when a call answers 401 */
    if (strcmp(path, "/") == 0 || strncmp(path, "/ui/", 4) == 0) return NODE_AUTH_OPEN;
    if (strcmp(path, "/metrics") == 0) return metrics_open ? NODE_AUTH_OPEN : NODE_AUTH_READ;
    if (strcmp(path, "/ingest") == 0) return NODE_AUTH_WRITE;
    /* every route under /cluster/ is about the cluster, not a tenant's data */
    if (strncmp(path, "/cluster/", 9) == 0 || strcmp(path, "/cluster") == 0) return NODE_AUTH_ADMIN;
    return NODE_AUTH_READ; /* the queries, the index, and unknown paths (no route probing) */
}

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Decodes standard base64 (padding optional) into out; -1 when malformed or too long. */
static long b64_decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64val((unsigned char)*s);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    while (*s == '=')
        s++;
    return *s == '\0' ? (long)n : -1;
}

/* Points *tok at the token of an Authorization value (Bearer, or Basic's password). */
static int token_of(const char *h, unsigned char *buf, size_t cap, const unsigned char **tok,
                    size_t *len, errmsg_t *em)
{
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        *tok = (const unsigned char *)h;
        *len = strlen(h);
    } else if (strncasecmp(h, "Basic ", 6) == 0) {
        h += 6;
        while (*h == ' ')
            h++;
        long n = b64_decode(h, buf, cap);
        const unsigned char *colon = n > 0 ? memchr(buf, ':', (size_t)n) : NULL;
        if (colon == NULL)
            return errmsg_set(em, ERR_UNAUTHORIZED,
                              "Authorization: Basic credentials are not base64 of 'user:token'");
        *tok = colon + 1;
        *len = (size_t)(buf + n - *tok);
    } else {
        return errmsg_set(em, ERR_UNAUTHORIZED,
                          "Authorization: expected 'Bearer TOKEN' or Basic auth with the token "
                          "as password");
    }
    if (*len == 0 || *len > TOKEN_MAX)
        return errmsg_set(em, ERR_UNAUTHORIZED, "Authorization: empty or oversized token");
    return ERR_OK;
}

/* The entry whose hash matches, looking at every entry whatever matched. */
static const entry_t *lookup(const node_auth_t *a, const unsigned char hash[NODE_AUTH_SHA256_LEN])
{
    const entry_t *found = NULL;
    for (size_t i = 0; i < a->n; i++) {
        int eq = digest_equal(a->e[i].hash, hash, NODE_AUTH_SHA256_LEN);
        found = eq ? &a->e[i] : found;
    }
    return found;
}

static const char *role_name(int perms)
{
    if (perms & NODE_AUTH_ADMIN) return "admin";
    return perms & NODE_AUTH_WRITE ? "write" : "read";
}

static const char *need_name(int need)
{
    if (need & NODE_AUTH_ADMIN) return "admin";
    return need & NODE_AUTH_WRITE ? "write (or admin)" : "read (or admin)";
}

int node_auth_check(const node_auth_t *a, const http_request_t *r, int need, char *tenant,
                    size_t tenant_cap, errmsg_t *em)
{
    const char *h = http_request_header(r, "Authorization");
    if (h == NULL)
        return errmsg_set(em, ERR_UNAUTHORIZED,
                          "authentication required: send 'Authorization: Bearer TOKEN'");
    unsigned char buf[TOKEN_MAX + 256];
    const unsigned char *tok = NULL;
    size_t len = 0;
    int rc = token_of(h, buf, sizeof buf, &tok, &len, em);
    unsigned char hash[NODE_AUTH_SHA256_LEN];
    if (rc == ERR_OK) rc = node_auth_sha256(tok, len, hash);
    explicit_bzero(buf, sizeof buf);
    if (rc != ERR_OK) return rc == ERR_UNAUTHORIZED ? rc : errmsg_set(em, rc, "cannot hash");
    const entry_t *e = lookup(a, hash);
    if (e == NULL) return errmsg_set(em, ERR_UNAUTHORIZED, "unknown token");
    if ((e->perms & need) != need)
        return errmsg_set(em, ERR_FORBIDDEN, "a %s token cannot do this: it needs %s",
                          role_name(e->perms), need_name(need));
    const char *org = http_request_header(r, "X-Scope-OrgID");
    if (org != NULL && org[0] != '\0' && strcmp(org, e->tenant) != 0)
        return errmsg_set(em, ERR_FORBIDDEN,
                          "X-Scope-OrgID '%.160s' is not the token's tenant '%s'", org, e->tenant);
    snprintf(tenant, tenant_cap, "%s", e->tenant);
    return ERR_OK;
}
