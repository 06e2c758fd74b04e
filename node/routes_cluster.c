/* routes_cluster.c — the cluster's operator routes: POST /cluster/repair
 * (an anti-entropy pass of this node, answered with its summary once it
 * finished) and POST /cluster/remove?node=ID (a dead node leaves the ring
 * for good). docs/api.md, docs/operations.md.
 */
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"

typedef struct repair_req {
    node_t *n;
    http_exchange_t *ex;
} repair_req_t;

static void repaired(void *arg, int rc, const char *json, const errmsg_t *em)
{
    repair_req_t *q = arg;
    if (rc != ERR_OK) {
        routes_respond_error(q->n, q->ex, rc, em);
        free(q);
        return;
    }
    http_response_t resp = {.status = 200, .content_type = "application/json"};
    buf_init(&resp.body, 4u << 20);
    if (buf_append_str(&resp.body, json) != 0 || buf_append_byte(&resp.body, '\n') != 0) {
        buf_free(&resp.body);
        errmsg_t e;
        errmsg_set(&e, ERR_NOMEM, "out of memory");
        routes_respond_error(q->n, q->ex, ERR_NOMEM, &e);
    } else {
        http_respond(q->ex, &resp);
    }
    free(q);
}

/* The request is answered when the first pass that starts after it ended:
 * a pass may take as long as the data that differs takes to stream. */
void routes_cluster_repair(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    (void)r;
    repair_req_t *q = calloc(1, sizeof *q);
    if (q == NULL) {
        errmsg_t em;
        errmsg_set(&em, ERR_NOMEM, "out of memory");
        routes_respond_error(n, ex, ERR_NOMEM, &em);
        return;
    }
    q->n = n;
    q->ex = ex;
    cluster_repair(n->cluster, repaired, q);
}

void routes_cluster_remove(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const char *id = http_request_param(r, "node");
    errmsg_t em = {{0}};
    int rc = id == NULL || id[0] == 0
                 ? errmsg_set(&em, ERR_INVALID_ARGUMENT, "parameter 'node' is required")
                 : cluster_remove_node(n->cluster, id, &em);
    if (rc != ERR_OK) {
        routes_respond_error(n, ex, rc, &em);
        return;
    }
    http_response_t resp = {.status = 200, .content_type = "application/json"};
    buf_init(&resp.body, 4u << 20);
    buf_printf(&resp.body, "{\"removed\":");
    buf_append_json_string(&resp.body, id, strlen(id));
    buf_printf(&resp.body, "}\n");
    http_respond(ex, &resp);
}
