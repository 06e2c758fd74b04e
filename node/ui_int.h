/* ui_int.h — the web UI's files compiled into the node (internal to node/).
 *
 * node/ui/embed.cmake generates the table from node/ui/ at build time
 * (docs/ui.md); routes_ui.c serves it. Everything here is static data: any
 * thread may read it, nobody frees it.
 */
#ifndef FLAMEDB_NODE_UI_INT_H
#define FLAMEDB_NODE_UI_INT_H

#include <stddef.h>

#include "node/node_int.h"

typedef struct node_ui_file {
    const char *name;         /* path under /ui/, e.g. "app.js" or "state/url.js" */
    const char *content_type; /* from the file's extension */
    const char *etag;         /* quoted, from the content's SHA-256 */
    const unsigned char *data;
    size_t len;
} node_ui_file_t;

extern const node_ui_file_t node_ui_files[];
extern const size_t node_ui_nfiles;

/* The file called name (no leading slash), or NULL. Borrowed, static. */
const node_ui_file_t *node_ui_find(const char *name);

/* GET /: the UI's index.html for a browser (Accept names text/html), else
 * the plain list of endpoints (index_html) for curl users. */
void routes_ui_index(node_t *n, http_exchange_t *ex, const http_request_t *r,
                     const char *index_html);
/* GET /ui/FILE: one of the UI's files, with its ETag (304 when it matches). */
void routes_ui_file(node_t *n, http_exchange_t *ex, const http_request_t *r);

#endif
