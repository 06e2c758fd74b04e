/* node.h — a flamedb node: the daemon's public interface.
 *
 * A node_t owns everything one node runs: its configuration (a copy), its
 * libuv loop, its storage, its HTTP server and its metrics. There are no
 * hidden globals, so several nodes can run in one process (tests do), each
 * on its own thread. The node parses HTTP on its loop thread and runs
 * decoding, merging and RocksDB work on the libuv thread pool.
 *
 * Lifetime: node_new() opens storage and starts listening; node_run() serves
 * until SIGTERM/SIGINT or node_stop(), then stops accepting, lets in-flight
 * requests finish (bounded by shutdown-timeout), closes storage cleanly and
 * returns; node_free() releases the rest.
 *
 * Threads: node_new(), node_run() and node_free() on one thread (the loop
 * thread); node_stop() and node_port() from any thread.
 * Ownership: node_new() returns a node the caller owns (node_free()); the
 * config is copied.
 */
#ifndef FLAMEDB_NODE_NODE_H
#define FLAMEDB_NODE_NODE_H

#include "common/err.h"
#include "node/config.h"

typedef struct node node_t;

/* Sets the worker thread count (UV_THREADPOOL_SIZE, process-wide, so it takes
 * effect only if no thread pool work ran in this process before), opens
 * storage and binds the HTTP listener. Errors: ERR_IO (data dir, address in
 * use) and the like, with the reason in em. */
int node_new(const node_config_t *cfg, node_t **out, errmsg_t *em);

/* The bound HTTP port (useful with port 0). */
int node_port(const node_t *n);

/* Serves until stopped; returns 0 after a clean shutdown. Installs SIGTERM
 * and SIGINT handlers for its duration. */
int node_run(node_t *n);

/* Asks node_run() to shut down as on SIGTERM. Any thread; idempotent. */
void node_stop(node_t *n);

/* Frees a node (closes storage if node_run did not). NULL is a no-op. */
void node_free(node_t *n);

#endif
