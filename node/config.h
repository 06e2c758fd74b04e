/* config.h — the node's settings, from one declarative table (node/; a public
 * header of the daemon with node.h, whose node_new() takes them).
 *
 * Every setting is a row of the table in config.c (name, type, field,
 * default, bounds, doc). The table parses `--name value` / `--name=value`
 * flags and FLAMEDB_NAME environment variables (flags win), validates bounds,
 * prints `flamedb --help` and generates docs/configuration.md
 * (`flamedb --print-config-doc`). Settings owned by other modules
 * (ingest_limits_t, query_limits_t, storage_options_t) take their defaults
 * from those modules' *_default() functions; the memory budgets default to
 * fractions of memory-limit.
 *
 * Threads: not thread-safe; parse once at start-up. node_config_t is a plain
 * value: copy it freely (storage.path points into the same struct, so call
 * node_config_fix_pointers() after copying).
 */
#ifndef FLAMEDB_NODE_CONFIG_H
#define FLAMEDB_NODE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "node/cluster/cluster.h"
#include "node/http_server.h"
#include "node/ingest/ingest.h"
#include "query/query.h"
#include "storage/storage.h"

#define NODE_PATH_MAX 4096
#define NODE_HOST_MAX 256

typedef struct node_config {
    char data_dir[NODE_PATH_MAX];
    char http_listen[NODE_HOST_MAX + 8]; /* HOST:PORT as given */
    char http_host[NODE_HOST_MAX];       /* parsed from http_listen */
    int http_port;
    int log_level; /* enum log_level */
    int worker_threads;
    int query_assist_threads; /* helpers of renders (common/assist.h); 0: none */
    size_t max_write_jobs; /* thread-pool jobs of pushes and replica writes at once; 0: derived */
    size_t max_query_jobs; /* thread-pool jobs of queries at once; 0: derived */
    size_t memory_limit;
    size_t query_memory_bytes;    /* partial results of coordinated queries, node-wide */
    size_t report_cache_bytes;    /* the last regression reports (GET /api/diff); 0: none kept */
    uint64_t report_timeout_ms;   /* a regression report as a whole (then 504) */
    uint64_t combined_timeout_ms; /* render-diff and groupBy as a whole (then 504) */
    /* decoded pushes and replica writes in progress, node-wide */
    size_t ingest_inflight_bytes;
    size_t
        ingest_stack_cache_bytes; /* the stack cache (node/ingest); taken out of node-cache-bytes */
    /* a refused push that held this much gives its freed memory back to
     * the system (alloc_release_free); 0: never */
    size_t ingest_trim_refused_bytes;
    size_t metrics_max_tenants; /* tenants listed in flamedb_tenant_series */
    size_t metrics_max_renders; /* GET /metrics renders on the pool at once */
    uint64_t shutdown_timeout_ms;
    size_t fd_reserve; /* descriptors kept besides max-connections (RLIMIT_NOFILE) */
    /* storage.max_open_files 0: derived from the open-file limit at start
     * (node.c); the descriptors other than SST files come out of a quarter
     * of fd_reserve */
    http_server_limits_t http;
    ingest_limits_t ingest;
    query_limits_t query;
    storage_options_t storage;
    cluster_config_t cluster;
    char service_shards[NODE_PATH_MAX]; /* "svc=16,..." -> ingest.shards overrides */
    unsigned placement_given; /* NODE_PLACEMENT_GIVEN_* of the settings given (node/placement.h) */
    char auth_file[NODE_PATH_MAX]; /* "" = no HTTP authentication */
    int open_metrics;              /* with auth: /metrics needs no token */
    size_t tenant_ingest_rate;     /* body bytes per second per tenant; 0 = off */
    size_t tenant_ingest_burst;    /* 0 = max(rate, max-body-bytes) */
    size_t tenant_max_queries;     /* running queries per tenant; 0 = off */
    uint64_t max_query_range_ms;   /* 0 = off */
} node_config_t;

enum node_config_action {
    NODE_CONFIG_RUN,
    NODE_CONFIG_HELP,
    NODE_CONFIG_VERSION,
    NODE_CONFIG_PRINT_DOC,
    NODE_CONFIG_PRINT_CONFIG,
};

/* All defaults (module defaults included, derived budgets computed). */
void node_config_default(node_config_t *c);

/* The systemd credential the node reads its cluster secret from: with
 * cluster-secret-file not set (neither flag nor variable) and
 * $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) holding a file of this
 * name, cluster-secret-file is that file. deploy/flamedb.service names it. */
#define NODE_CREDENTIAL_CLUSTER_SECRET "cluster.secret"

/* Applies environment (envp: NULL-terminated "NAME=value" strings, may be
 * NULL), then argv[1..argc), then the systemd credential (above), then
 * derived defaults, then validation.
 * Unknown FLAMEDB_* variables are ignored (tools share the prefix); unknown
 * flags are errors. Returns 0 or ERR_INVALID_ARGUMENT with the reason in em
 * (naming the flag or variable). */
int node_config_parse(node_config_t *c, int argc, char **argv, char **envp,
                      enum node_config_action *action, errmsg_t *em);

/* Re-points storage.path at data_dir (after copying the struct). */
void node_config_fix_pointers(node_config_t *c);

/* `flamedb --help` text, with each setting's default. */
int node_config_help(buf_t *out);
/* Markdown reference (docs/configuration.md). */
int node_config_doc(buf_t *out);
/* Effective settings, one "name = value" per line (for --print-config and logs). */
int node_config_dump(const node_config_t *c, buf_t *out);

/* Value parsers, exposed for tests. Sizes accept B, K/KB/KiB, M/MB/MiB,
 * G/GB/GiB, T/TB/TiB (all binary); durations ms, s, m, h, d, w (a bare number
 * is seconds). ERR_INVALID_ARGUMENT on anything else or on overflow. */
int node_config_parse_size(const char *s, uint64_t *out);
int node_config_parse_duration_ms(const char *s, uint64_t *out);

#endif
