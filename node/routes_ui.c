/* routes_ui.c — serves the web UI (node/ui/, compiled in by embed.cmake).
 *
 * The files are static arrays, so a response is a copy of one of them. Each
 * carries an ETag from its content and "Cache-Control: no-cache": a browser
 * revalidates on every load (one 304 per file) and never runs an old UI
 * against a newer node.
 */
#include <stdio.h>
#include <string.h>

#include "node/ui_int.h"

#define UI_PREFIX "/ui/"

const node_ui_file_t *node_ui_find(const char *name)
{
    for (size_t i = 0; i < node_ui_nfiles; i++)
        if (strcmp(node_ui_files[i].name, name) == 0) return &node_ui_files[i];
    return NULL;
}

/* Does an If-None-Match header list etag (or "*")? */
static int etag_matches(const char *header, const char *etag)
{
    if (header == NULL) return 0;
    if (strcmp(header, "*") == 0) return 1;
    return strstr(header, etag) != NULL;
}

static void respond_file(node_t *n, http_exchange_t *ex, const http_request_t *r,
                         const node_ui_file_t *f)
{
    char headers[128];
    snprintf(headers, sizeof headers, "ETag: %s\r\nCache-Control: no-cache\r\n", f->etag);
    http_response_t resp = {
        .status = 200, .content_type = f->content_type, .extra_headers = headers};
    buf_init(&resp.body, BUF_UNLIMITED);
    if (etag_matches(http_request_header(r, "If-None-Match"), f->etag)) {
        resp.status = 304;
        resp.content_type = NULL;
    } else if (buf_append(&resp.body, f->data, f->len) != ERR_OK) {
        errmsg_t em;
        errmsg_set(&em, ERR_NOMEM, "out of memory copying %s", f->name);
        buf_free(&resp.body);
        routes_respond_error(n, ex, ERR_NOMEM, &em);
        return;
    }
    http_respond(ex, &resp);
}

void routes_ui_index(node_t *n, http_exchange_t *ex, const http_request_t *r,
                     const char *index_html)
{
    const char *accept = http_request_header(r, "Accept");
    const node_ui_file_t *f = node_ui_find("index.html");
    if (f != NULL && accept != NULL && strstr(accept, "text/html") != NULL) {
        respond_file(n, ex, r, f);
        return;
    }
    http_response_t resp = {.status = 200, .content_type = "text/html; charset=utf-8"};
    buf_init(&resp.body, BUF_UNLIMITED);
    if (buf_append_str(&resp.body, index_html) != ERR_OK) resp.status = 500;
    http_respond(ex, &resp);
}

void routes_ui_file(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    const node_ui_file_t *f = NULL;
    if (strncmp(r->path, UI_PREFIX, strlen(UI_PREFIX)) == 0)
        f = node_ui_find(r->path + strlen(UI_PREFIX));
    if (f == NULL) {
        errmsg_t em;
        errmsg_set(&em, ERR_NOT_FOUND, "no UI file %.200s", r->path);
        routes_respond_error(n, ex, ERR_NOT_FOUND, &em);
        return;
    }
    respond_file(n, ex, r, f);
}
