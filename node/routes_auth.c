/* routes_auth.c — who may call a route: the token check in front of every
 * handler (node/auth.h holds the table and the rules). */
#include <string.h>

#include "common/log.h"
#include "node/node_int.h"

static const char www_authenticate[] = "WWW-Authenticate: Bearer realm=\"flamedb\"\r\n"
                                       "WWW-Authenticate: Basic realm=\"flamedb\"\r\n";
/* The web UI's calls (X-Flamedb-UI) get no Basic challenge: a browser would
 * answer it with its own password dialog instead of the page's sign-in form. */
static const char www_authenticate_ui[] = "WWW-Authenticate: Bearer realm=\"flamedb\"\r\n";

/* The headers that go with a refusal rc of r. */
static const char *challenge_of(const http_request_t *r, int rc)
{
    if (rc != ERR_UNAUTHORIZED) return NULL;
    return http_request_header(r, "X-Flamedb-UI") ? www_authenticate_ui : www_authenticate;
}

int routes_authorize(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (n->auth == NULL) return 1;
    int need = node_auth_need(r->path, n->cfg.open_metrics);
    if (need == NODE_AUTH_OPEN) return 1;
    char tenant[STORAGE_TENANT_MAX + 1];
    errmsg_t em = {{0}};
    int rc = node_auth_check(n->auth, r, need, tenant, sizeof tenant, &em);
    if (rc == ERR_OK) {
        http_exchange_set_principal(ex, tenant);
        return 1;
    }
    node_metrics_error(&n->metrics, rc);
    http_respond_error(ex, 0, rc, &em, challenge_of(r, rc));
    return 0;
}

/* The same check on the request's head, before its body is read: a request
 * routes_authorize would refuse is answered before it can hold body bytes
 * (max-buffered-bytes) or get a 100 Continue. A request that passes is
 * checked again when handled (SIGHUP may have changed the table between). */
/* Does r announce a body (a Content-Length over 0, or chunked)? */
static int has_body(const http_request_t *r)
{
    const char *cl = http_request_header(r, "Content-Length");
    if (cl != NULL && strspn(cl, "0") != strlen(cl)) return 1;
    return http_request_header(r, "Transfer-Encoding") != NULL;
}

int routes_head_check(void *ctx, const http_request_t *r, http_refusal_t *out)
{
    node_t *n = ctx;
    if (n->auth == NULL) return 0;
    int need = node_auth_need(r->path, n->cfg.open_metrics);
    if (need == NODE_AUTH_OPEN && has_body(r)) {
        /* No open route reads a body: one would only hold max-buffered-bytes
         * for a client that needs no token. */
        errmsg_set(&out->em, ERR_TOO_LARGE, "%.100s takes no body (it is open without a token)",
                   r->path);
        out->err = ERR_TOO_LARGE;
        node_metrics_error(&n->metrics, ERR_TOO_LARGE);
        return 1;
    }
    if (need == NODE_AUTH_OPEN) return 0;
    char tenant[STORAGE_TENANT_MAX + 1];
    int rc = node_auth_check(n->auth, r, need, tenant, sizeof tenant, &out->em);
    if (rc == ERR_OK) return 0;
    node_metrics_error(&n->metrics, rc);
    out->err = rc;
    out->extra_headers = challenge_of(r, rc);
    return 1;
}
