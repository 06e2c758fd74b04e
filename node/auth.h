/* auth.h — HTTP authentication of a node: the token table of --auth-file and
 * the check of one request against it (internal to node/).
 *
 * The file has one token per line, `TENANT ROLE SHA256HEX`: the tenant the
 * token acts for, its role (read, write or admin) and the SHA-256 of the
 * token in hex (the node never sees a token in clear at rest); blank lines
 * and lines starting with '#' are ignored. Roles are sets, not levels: read
 * queries, write pushes, admin does both and may use the cluster routes.
 *
 * A request names its token with `Authorization: Bearer TOKEN`, or with Basic
 * auth whose password is the token (the user name is ignored, as Pyroscope
 * SDKs send it). The token's hash is compared with every entry of the table
 * in constant time, so neither the position of a match nor the length of a
 * common prefix shows in the time taken.
 *
 * Threads: a table is immutable once loaded; node.c swaps tables on SIGHUP on
 * the loop thread, where every lookup runs.
 * Ownership: node_auth_load() returns a table the caller owns
 * (node_auth_free()).
 */
#ifndef FLAMEDB_NODE_AUTH_H
#define FLAMEDB_NODE_AUTH_H

#include <stddef.h>

#include "common/digest.h"
#include "common/err.h"
#include "node/http_server.h"

/* What a route needs; a token's role is a set of these bits. */
enum node_auth_perm {
    NODE_AUTH_OPEN = 0, /* no token needed (/ready, and /metrics unless closed) */
    NODE_AUTH_READ = 1,
    NODE_AUTH_WRITE = 2,
    NODE_AUTH_ADMIN = 4, /* cluster routes */
};

#define NODE_AUTH_SHA256_LEN DIGEST_SHA256_BYTES

typedef struct node_auth node_auth_t;

/* Reads and checks the whole file at path. On any bad line nothing is
 * returned and em names the file, the line and what is wrong. */
int node_auth_load(const char *path, node_auth_t **out, errmsg_t *em);
/* NULL is a no-op. */
void node_auth_free(node_auth_t *a);
/* Tokens in the table. */
size_t node_auth_count(const node_auth_t *a);

/* The permission a request to path needs. metrics_open: /metrics needs no token. */
int node_auth_need(const char *path, int metrics_open);

/* Checks r's credentials against a for a route that needs `need`. On success
 * tenant (tenant_cap bytes) receives the token's tenant. Errors, with the
 * reason in em: ERR_UNAUTHORIZED (no, malformed or unknown token: answer 401
 * with WWW-Authenticate), ERR_FORBIDDEN (the role lacks `need`, or
 * X-Scope-OrgID names another tenant), ERR_INVALID_ARGUMENT (duplicate
 * Authorization or X-Scope-OrgID headers). */
int node_auth_check(const node_auth_t *a, const http_request_t *r, int need, char *tenant,
                    size_t tenant_cap, errmsg_t *em);

/* SHA-256 of data[0..n) (exposed for tests). */
int node_auth_sha256(const void *data, size_t n, unsigned char out[NODE_AUTH_SHA256_LEN]);

#endif
