/* routes_cluster.c — the cluster's operator routes: POST /cluster/repair
 * (an anti-entropy pass of this node, answered with its summary once it
 * finished) and POST /cluster/remove?node=ID (a dead node leaves the ring
 * for good), POST /cluster/decommission?node=ID (this node leaves: its
 * ranges move to the others, then it stops), POST /cluster/accept-copy?node=ID
 * (the operator's word that this node's copy is whole lifts its full
 * repair mark). docs/api.md, docs/operations.md.
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

static const char *const node_param[] = {"node", NULL};

int routes_only_params(node_t *n, http_exchange_t *ex, const http_request_t *r,
                       const char *const *allowed)
{
    for (size_t i = 0; i < r->nparams; i++) {
        const char *name = r->params[i].name;
        int known = 0;
        for (size_t k = 0; allowed != NULL && allowed[k] != NULL && !known; k++)
            known = strcmp(allowed[k], name) == 0;
        if (known) continue;
        errmsg_t em;
        if (allowed == NULL)
            errmsg_set(&em, ERR_INVALID_ARGUMENT, "parameter '%.64s': %s takes no parameters", name,
                       r->path);
        else
            errmsg_set(&em, ERR_INVALID_ARGUMENT,
                       "parameter '%.64s': unknown on %s (it takes '%s')", name, r->path,
                       allowed[0]);
        routes_respond_error(n, ex, ERR_INVALID_ARGUMENT, &em);
        return 0;
    }
    return 1;
}

/* The request is answered when the first pass that starts after it ended:
 * a pass may take as long as the data that differs takes to stream. */
void routes_cluster_repair(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (!routes_only_params(n, ex, r, NULL)) return;
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
    if (!routes_only_params(n, ex, r, node_param)) return;
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

typedef struct accept_req {
    node_t *n;
    http_exchange_t *ex;
    char id[RING_NODE_ID_MAX + 1];
} accept_req_t;

static void accepted(void *arg, int rc, const errmsg_t *em)
{
    accept_req_t *q = arg;
    if (rc != ERR_OK) {
        routes_respond_error(q->n, q->ex, rc, em);
        free(q);
        return;
    }
    http_response_t resp = {.status = 200, .content_type = "application/json"};
    buf_init(&resp.body, 4u << 10);
    buf_printf(&resp.body, "{\"accepted\":");
    buf_append_json_string(&resp.body, q->id, strlen(q->id));
    buf_printf(&resp.body, "}\n");
    http_respond(q->ex, &resp);
    free(q);
}

/* Answered once the repair thread said whether the mark's repair cleared
 * an interval (its next pass's regain step). */
void routes_cluster_accept_copy(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (!routes_only_params(n, ex, r, node_param)) return;
    const char *id = http_request_param(r, "node");
    errmsg_t em = {{0}};
    accept_req_t *q = NULL;
    int rc = id == NULL || id[0] == 0
                 ? errmsg_set(&em, ERR_INVALID_ARGUMENT, "parameter 'node' is required")
             : strlen(id) > RING_NODE_ID_MAX
                 ? errmsg_set(&em, ERR_INVALID_ARGUMENT, "parameter 'node': too long")
             : (q = calloc(1, sizeof *q)) == NULL ? errmsg_set(&em, ERR_NOMEM, "out of memory")
                                                  : ERR_OK;
    if (rc == ERR_OK) {
        q->n = n;
        q->ex = ex;
        memcpy(q->id, id, strlen(id) + 1);
        rc = cluster_accept_copy(n->cluster, id, accepted, q, &em);
    }
    if (rc != ERR_OK) {
        free(q);
        routes_respond_error(n, ex, rc, &em);
    }
}

/* Answered at once with the node's state; the move goes on in the
 * background (flamectl cluster decommission waits for it). */
void routes_cluster_decommission(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    if (!routes_only_params(n, ex, r, node_param)) return;
    const char *id = http_request_param(r, "node");
    errmsg_t em = {{0}};
    int rc = id == NULL || id[0] == 0
                 ? errmsg_set(&em, ERR_INVALID_ARGUMENT, "parameter 'node' is required")
                 : cluster_decommission(n->cluster, id, &em);
    if (rc != ERR_OK) {
        routes_respond_error(n, ex, rc, &em);
        return;
    }
    http_response_t resp = {.status = 200, .content_type = "application/json"};
    buf_init(&resp.body, 4u << 10);
    if (cluster_move_json(n->cluster, &resp.body) != 0) {
        buf_free(&resp.body);
        errmsg_set(&em, ERR_NOMEM, "out of memory");
        routes_respond_error(n, ex, ERR_NOMEM, &em);
        return;
    }
    http_respond(ex, &resp);
}
