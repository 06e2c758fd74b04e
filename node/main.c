/* main.c — the flamedb daemon: parse settings, run a node, exit.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the node
 * cannot start (data dir, address in use), 2 on invalid settings.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/node.h"

extern char **environ;

static int print_text(int (*fn)(buf_t *))
{
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    int rc = fn(&out);
    if (rc == ERR_OK) fwrite(out.data, 1, out.len, stdout);
    buf_free(&out);
    return rc == ERR_OK ? 0 : 1;
}

static int print_config(const node_config_t *cfg)
{
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    node_config_dump(cfg, &out);
    fwrite(out.data, 1, out.len, stdout);
    buf_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    static node_config_t cfg; /* large (paths); lives for the whole process */
    alloc_tune_for_server();
    enum node_config_action action;
    errmsg_t em = {{0}};
    if (node_config_parse(&cfg, argc, argv, environ, &action, &em) != ERR_OK) {
        fprintf(stderr, "flamedb: %s\n", em.text);
        return 2;
    }
    switch (action) {
    case NODE_CONFIG_HELP:
        return print_text(node_config_help);
    case NODE_CONFIG_PRINT_DOC:
        return print_text(node_config_doc);
    case NODE_CONFIG_PRINT_CONFIG:
        return print_config(&cfg);
    case NODE_CONFIG_VERSION:
        printf("flamedb %s\n", FLAMEDB_VERSION);
        return 0;
    case NODE_CONFIG_RUN:
        break;
    }
    log_set_level((enum log_level)cfg.log_level);
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error return, not a signal */
    node_t *node = NULL;
    if (node_new(&cfg, &node, &em) != ERR_OK) {
        fprintf(stderr, "flamedb: %s\n", em.text);
        return 1;
    }
    int rc = node_run(node);
    node_free(node);
    return rc == 0 ? 0 : 1;
}
