/* routes_auth.c — who may call a route: the token check in front of every
 * handler (node/auth.h holds the table and the rules). */
#include "common/log.h"
#include "node/node_int.h"

static const char www_authenticate[] = "WWW-Authenticate: Bearer realm=\"flamedb\"\r\n"
                                       "WWW-Authenticate: Basic realm=\"flamedb\"\r\n";
/* The web UI's calls (X-Flamedb-UI) get no Basic challenge: a browser would
 * answer it with its own password dialog instead of the page's sign-in form. */
static const char www_authenticate_ui[] = "WWW-Authenticate: Bearer realm=\"flamedb\"\r\n";

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
    const char *challenge =
        http_request_header(r, "X-Flamedb-UI") ? www_authenticate_ui : www_authenticate;
    http_respond_error(ex, 0, rc, &em, rc == ERR_UNAUTHORIZED ? challenge : NULL);
    return 0;
}
