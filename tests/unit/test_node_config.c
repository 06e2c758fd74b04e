/* test_node_config.c — the settings table: defaults, flags, environment,
 * bounds, derived memory budgets, --help and the generated reference. */
#include "check.h"
#include "node/config.h"

#include <unistd.h>

static int parse(node_config_t *c, const char **argv, int argc, const char **env,
                 enum node_config_action *act, errmsg_t *em)
{
    memset(em, 0, sizeof *em);
    return node_config_parse(c, argc, (char **)argv, (char **)env, act, em);
}

static void test_values(void)
{
    uint64_t v;
    CHECK(node_config_parse_size("4096", &v) == 0 && v == 4096);
    CHECK(node_config_parse_size("16MiB", &v) == 0 && v == 16ull << 20);
    CHECK(node_config_parse_size("1g", &v) == 0 && v == 1ull << 30);
    CHECK(node_config_parse_size("2KB", &v) == 0 && v == 2048);
    CHECK(node_config_parse_size("", &v) != 0);
    CHECK(node_config_parse_size("-1", &v) != 0);
    CHECK(node_config_parse_size("12XB", &v) != 0);
    CHECK(node_config_parse_size("99999999999999999999", &v) != 0);
    CHECK(node_config_parse_size("99999999999TiB", &v) != 0);
    CHECK(node_config_parse_duration_ms("30s", &v) == 0 && v == 30000);
    CHECK(node_config_parse_duration_ms("30", &v) == 0 && v == 30000);
    CHECK(node_config_parse_duration_ms("500ms", &v) == 0 && v == 500);
    CHECK(node_config_parse_duration_ms("7d", &v) == 0 && v == 7ull * 86400000);
    CHECK(node_config_parse_duration_ms("1.5s", &v) != 0);
    CHECK(node_config_parse_duration_ms("s", &v) != 0);
}

static void test_defaults(void)
{
    node_config_t c;
    node_config_default(&c);
    CHECK_EQ_STR(c.http_host, "127.0.0.1");
    CHECK_EQ_INT(c.http_port, 4040);
    CHECK_EQ_INT(c.http.max_body_bytes, 16 << 20);
    CHECK_EQ_INT(c.memory_limit, 1ull << 30);
    /* the caches are a quarter of memory-limit each; buffered bodies and
     * pushes in progress an eighth each */
    CHECK_EQ_INT(c.storage.block_cache_bytes, 256 << 20);
    CHECK_EQ_INT(c.storage.write_buffer_bytes, 256 << 20);
    CHECK_EQ_INT(c.http.max_buffered_bytes, 128 << 20);
    CHECK_EQ_INT(c.ingest_inflight_bytes, 128 << 20);
    CHECK_EQ_INT(c.cluster.stream_receive_max_bytes, 32 << 20); /* a thirty-second */
    CHECK_EQ_INT(c.cluster.chunk_receive_max_bytes, 16 << 20);  /* a 64th */
    CHECK_EQ_INT(c.cluster.max_message_bytes, 16 << 20);        /* within it */
    CHECK(c.storage.path == c.data_dir);
    CHECK(memcmp(c.query.retention_seconds, c.storage.retention_seconds,
                 sizeof c.query.retention_seconds) == 0);
    /* module defaults are kept where the table has none */
    ingest_limits_t il;
    ingest_limits_default(&il);
    CHECK_EQ_INT(c.ingest.max_samples, il.max_samples);
    CHECK_EQ_INT(c.ingest.max_past_seconds, il.max_past_seconds);
    /* anti-entropy runs on a schedule unless turned off, its fetches bounded;
     * a slow replica gets its hint before the answer after a short grace */
    CHECK_EQ_INT(c.cluster.repair_interval_ms, 3600 * 1000);
    CHECK_EQ_INT(c.cluster.fill_keys_batch, 1024);
    CHECK_EQ_INT(c.cluster.stream_version, 4);
    CHECK_EQ_INT(c.cluster.repair_bytes_per_s, 16 << 20);
    CHECK_EQ_INT(c.cluster.hint_ack_grace_ms, 20);
}

static void test_flags_and_env(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    const char *argv[] = {"flamedb",
                          "--data-dir",
                          "/tmp/x",
                          "--http-listen=0.0.0.0:0",
                          "--max-body-bytes",
                          "1MiB",
                          "--request-timeout=500ms",
                          "--retention-10s",
                          "2d",
                          "--log-level",
                          "debug"};
    const char *env[] = {"FLAMEDB_MAX_BODY_BYTES=2MiB", "FLAMEDB_MEMORY_LIMIT=2GiB",
                         "FLAMEDB_BIN=/ignored", "PATH=/bin", NULL};
    CHECK_EQ_INT(parse(&c, argv, 11, env, &act, &em), 0);
    CHECK_EQ_INT(act, NODE_CONFIG_RUN);
    CHECK_EQ_STR(c.data_dir, "/tmp/x");
    CHECK_EQ_STR(c.storage.path, "/tmp/x");
    CHECK_EQ_STR(c.http_host, "0.0.0.0");
    CHECK_EQ_INT(c.http_port, 0);
    CHECK_EQ_INT(c.http.max_body_bytes, 1 << 20); /* flag beats env */
    CHECK_EQ_INT(c.http.request_timeout_ms, 500);
    CHECK_EQ_INT(c.storage.retention_seconds[0], 2 * 86400);
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    CHECK_EQ_INT(c.storage.block_cache_bytes, 512 << 20); /* derived from the env's 2GiB */
    const char *v6[] = {"flamedb", "--http-listen", "[::1]:8080"};
    CHECK_EQ_INT(parse(&c, v6, 3, NULL, &act, &em), 0);
    CHECK_EQ_STR(c.http_host, "::1");
    CHECK_EQ_INT(c.http_port, 8080);
    const char *help[] = {"flamedb", "--help"};
    CHECK_EQ_INT(parse(&c, help, 2, NULL, &act, &em), 0);
    CHECK_EQ_INT(act, NODE_CONFIG_HELP);
}

static void expect_error(const char **argv, int argc, const char **env, const char *needle)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    int rc = parse(&c, argv, argc, env, &act, &em);
    CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT);
    if (strstr(em.text, needle) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", em.text, needle);
        CHECK(0);
    }
}

/* render-diff, groupBy and the regression report answer as a whole within
 * their deadline: at or under query-timeout, a query that would answer
 * partial becomes a 504. Set so, the start is refused naming both; unless
 * set, they follow query-timeout. */
static void test_whole_deadlines(void)
{
    const char *a1[] = {"flamedb", "--combined-query-timeout", "20s"};
    expect_error(a1, 3, NULL, "combined-query-timeout (20000 ms) is not above query-timeout");
    const char *a2[] = {"flamedb", "--query-timeout", "90s", "--combined-query-timeout", "90s"};
    expect_error(a2, 5, NULL, "combined-query-timeout (90000 ms) is not above query-timeout");
    const char *a3[] = {"flamedb", "--report-timeout", "30s"};
    expect_error(a3, 3, NULL, "report-timeout (30000 ms) is not above query-timeout");
    node_config_t c;
    enum node_config_action act;
    errmsg_t em = {{0}};
    const char *a4[] = {"flamedb", "--query-timeout", "120s"};
    CHECK_EQ_INT(parse(&c, a4, 3, NULL, &act, &em), 0);
    CHECK(c.combined_timeout_ms == 240000 && c.report_timeout_ms == 240000);
    const char *a5[] = {"flamedb", "--query-timeout", "10s", "--combined-query-timeout", "11s"};
    CHECK_EQ_INT(parse(&c, a5, 5, NULL, &act, &em), 0);
    CHECK(c.combined_timeout_ms == 11000 && c.report_timeout_ms == 60000);
}

static void test_errors(void)
{
    const char *a1[] = {"flamedb", "--no-such-thing", "1"};
    expect_error(a1, 3, NULL, "unknown option '--no-such-thing'");
    const char *a2[] = {"flamedb", "--max-body-bytes", "lots"};
    expect_error(a2, 3, NULL, "--max-body-bytes: invalid value 'lots'");
    const char *a3[] = {"flamedb", "--max-header-bytes", "1MiB"};
    expect_error(a3, 3, NULL, "out of range (allowed 1KiB .. 64KiB)");
    const char *a4[] = {"flamedb", "--http-listen", "nohost"};
    expect_error(a4, 3, NULL, "expected IP:PORT");
    const char *a5[] = {"flamedb", "--http-listen", "example.com:80"};
    expect_error(a5, 3, NULL, "expected IP:PORT");
    const char *a6[] = {"flamedb", "--data-dir"};
    expect_error(a6, 2, NULL, "needs a value");
    const char *a7[] = {"flamedb", "stray"};
    expect_error(a7, 2, NULL, "unexpected argument 'stray'");
    const char *a8[] = {"flamedb"};
    const char *e8[] = {"FLAMEDB_WORKER_THREADS=0", NULL};
    expect_error(a8, 1, e8, "FLAMEDB_WORKER_THREADS: invalid value '0'");
    const char *a9[] = {"flamedb", "--memory-limit", "256MiB", "--block-cache-bytes", "200MiB"};
    expect_error(a9, 5, NULL, "exceeds memory-limit");
    /* the fill's keys per request and the stream protocol a node speaks */
    const char *f1[] = {"flamedb", "--repair-fill-keys-batch", "0"};
    expect_error(f1, 3, NULL, "out of range (allowed 1 .. 65536)");
    const char *f2[] = {"flamedb", "--repair-fill-keys-batch", "65537"};
    expect_error(f2, 3, NULL, "out of range (allowed 1 .. 65536)");
    const char *f3[] = {"flamedb", "--cluster-stream-version", "5"};
    expect_error(f3, 3, NULL, "out of range (allowed 1 .. 4)");
    const char *f4[] = {"flamedb", "--cluster-stream-version", "0"};
    expect_error(f4, 3, NULL, "out of range (allowed 1 .. 4)");
    /* what a receiver holds of a window in parts is part of the budget */
    const char *a13[] = {"flamedb", "--stream-receive-max-bytes", "100MiB"};
    expect_error(a13, 3, NULL,
                 "stream-receive-max-bytes + scatter-name-cache-bytes + chunk-receive-max-bytes + "
                 "the window fold (4 x window-fold-batch-bytes + keys, while window-fold-interval "
                 "is on) + the dictionary training (64 x node-table-dict-bytes per compaction "
                 "max-background-jobs runs at once) = 1140955136 bytes exceeds memory-limit "
                 "(1073741824 bytes)");
    /* so does what it holds of messages coming in pieces */
    const char *a13b[] = {"flamedb", "--chunk-receive-max-bytes", "64MiB"};
    expect_error(a13b, 3, NULL,
                 "runs at once) = 1119983616 bytes exceeds memory-limit (1073741824 bytes)");
    /* the coordinator's name cache counts too: the defaults leave a 64th */
    const char *a9b[] = {"flamedb", "--memory-limit", "256MiB", "--scatter-name-cache-bytes",
                         "17MiB"};
    expect_error(a9b, 5, NULL, "chunk-receive-max-bytes + the window fold");
    /* the window fold's working memory too, while it runs: the nine leave
     * 2 MiB here, below four times its 1 MiB batch */
    const char *a9c[] = {"flamedb", "--scatter-name-cache-bytes", "14MiB"};
    expect_error(a9c, 3, NULL,
                 "chunk-receive-max-bytes + the window fold (4 x window-fold-batch-bytes + keys, "
                 "while window-fold-interval is on) + the dictionary training (64 x "
                 "node-table-dict-bytes per compaction max-background-jobs runs at once) = "
                 "1080137728 bytes exceeds memory-limit");
    const char *a10[] = {"flamedb", "--retention-1h", "1500ms"};
    expect_error(a10, 3, NULL, "whole number of seconds");
    const char *a11[] = {"flamedb", "--log-level", "loud"};
    expect_error(a11, 3, NULL, "expected debug, info, warn or error");
    const char *a12[] = {"flamedb", "--seen-retention", "100s", "--hint-expiry", "91s"};
    expect_error(a12, 5, NULL, "hint-expiry (91000 ms) is longer than 0.9 x seen-retention");
    /* the deepest stack allowed must fit in a replicated write */
    const char *a14[] = {"flamedb", "--max-stack-depth", "65536", "--max-message-bytes", "64KiB"};
    expect_error(a14, 5, NULL, "max-stack-depth (65536): a stack that deep takes at least ");
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    const char *deep[] = {"flamedb", "--max-stack-depth", "4000", "--max-message-bytes", "64KiB"};
    CHECK_EQ_INT(parse(&c, deep, 5, NULL, &act, &em), 0);
    const char *ok[] = {"flamedb", "--seen-retention", "100s", "--hint-expiry", "90s"};
    CHECK_EQ_INT(parse(&c, ok, 5, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.cluster.hint_expiry_ms, 90000);
    /* W above RF was capped at RF without a word */
    const char *a15[] = {"flamedb", "--replication-factor", "3", "--write-quorum", "5"};
    expect_error(a15, 5, NULL, "write-quorum (5) is larger than replication-factor (3)");
    const char *a16[] = {"flamedb", "--write-quorum", "4"}; /* RF 3 by default */
    expect_error(a16, 3, NULL, "write-quorum (4) is larger than replication-factor (3)");
    const char *w_ok[] = {"flamedb", "--replication-factor", "2", "--write-quorum", "2"};
    CHECK_EQ_INT(parse(&c, w_ok, 5, NULL, &act, &em), 0);
}

static void test_generated_text(void)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(node_config_help(&b), 0);
    CHECK(strstr((char *)b.data,
                 "--max-body-bytes SIZE  [FLAMEDB_MAX_BODY_BYTES]  default: 16MiB") != NULL);
    /* a line that would pass 80 columns has its default on the next one */
    CHECK(strstr((char *)b.data, "--block-cache-bytes SIZE  [FLAMEDB_BLOCK_CACHE_BYTES]\n"
                                 "      default: 256MiB (memory-limit / 4)\n") != NULL);
    /* --help fits an 80-column terminal */
    for (const char *line = (char *)b.data, *end; *line != '\0'; line = end + (*end != '\0')) {
        end = strchr(line, '\n');
        if (end == NULL) end = line + strlen(line);
        if (end - line > 80)
            fprintf(stderr, "--help: %d columns: %.*s\n", (int)(end - line), (int)(end - line),
                    line);
        CHECK(end - line <= 80);
    }
    buf_reset(&b);
    CHECK_EQ_INT(node_config_doc(&b), 0);
    CHECK(strstr((char *)b.data,
                 "| `--http-listen` | `FLAMEDB_HTTP_LISTEN` | IP:PORT | `127.0.0.1:4040` |") !=
          NULL);
    CHECK(strstr((char *)b.data, "## Storage") != NULL);
    buf_reset(&b);
    node_config_t c;
    node_config_default(&c);
    CHECK_EQ_INT(node_config_dump(&c, &b), 0);
    CHECK(strstr((char *)b.data, "idle-timeout = 1m\n") != NULL);
    buf_free(&b);
}

/* The window fold counts in memory-limit only while it runs, as four
 * times its batch plus its keys. */
static void test_fold_memory(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    /* (without the dictionary's training, which counts beside it) */
    const char *off[] = {"flamedb", "--scatter-name-cache-bytes", "14MiB", "--window-fold-interval",
                         "0",       "--node-table-dict-bytes",    "0"};
    CHECK_EQ_INT(parse(&c, off, 7, NULL, &act, &em), 0);
    CHECK_EQ_INT(storage_fold_memory_bytes(&c.storage), 0);
    const char *small[] = {
        "flamedb", "--scatter-name-cache-bytes", "14MiB", "--window-fold-batch-bytes",
        "256KiB",  "--node-table-dict-bytes",    "0"};
    CHECK_EQ_INT(parse(&c, small, 7, NULL, &act, &em), 0);
    size_t fold = storage_fold_memory_bytes(&c.storage);
    CHECK(fold >= (1u << 20) && fold <= (1u << 20) + (128u << 10));
    const char *def[] = {"flamedb"};
    CHECK_EQ_INT(parse(&c, def, 1, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.storage.window_fold_batch_bytes, 1u << 20); /* a 1024th of 1 GiB */
}

/* The training buffer of the stack-node tables' dictionary counts in
 * memory-limit, once per compaction max-background-jobs runs at once; the
 * dictionary follows small memory limits down unless set. */
static void test_dict_train_memory(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    const char *def[] = {"flamedb"};
    CHECK_EQ_INT(parse(&c, def, 1, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.storage.node_table_dict_bytes, 64u << 10);
    CHECK_EQ_INT(storage_dict_train_memory_bytes(&c.storage), 4u << 20); /* 2 jobs: 1 compaction */
    const char *jobs[] = {"flamedb", "--max-background-jobs", "8", "--block-cache-bytes", "200MiB"};
    CHECK_EQ_INT(parse(&c, jobs, 5, NULL, &act, &em), 0);
    CHECK_EQ_INT(storage_dict_train_memory_bytes(&c.storage), 6u * (4u << 20));
    const char *none[] = {"flamedb", "--node-table-dict-bytes", "0"};
    CHECK_EQ_INT(parse(&c, none, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(storage_dict_train_memory_bytes(&c.storage), 0);
    const char *small[] = {"flamedb", "--memory-limit", "64MiB"};
    CHECK_EQ_INT(parse(&c, small, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.storage.node_table_dict_bytes, 4u << 10);
    /* 6 compactions of 16 MiB each do not fit beside the defaults */
    const char *big[] = {"flamedb", "--node-table-dict-bytes", "256KiB", "--max-background-jobs",
                         "8"};
    expect_error(big, 5, NULL,
                 "the dictionary training (64 x node-table-dict-bytes per compaction");
    const char *big_set[] = {"flamedb", "--memory-limit", "64MiB", "--node-table-dict-bytes",
                             "64KiB"};
    expect_error(big_set, 5, NULL, "exceeds memory-limit (67108864 bytes)");
}

/* Every memory-limit from its minimum up starts with the other settings at
 * their defaults: max-body-bytes follows max-buffered-bytes down when that
 * is smaller, and is refused above it only when set so. */
static void test_small_memory(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    static const char *const limits[] = {"64MiB", "65MiB", "100MiB", "127MiB", "128MiB", "1GiB"};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        const char *argv[] = {"flamedb", "--memory-limit", limits[i]};
        int rc = parse(&c, argv, 3, NULL, &act, &em);
        if (rc != 0) fprintf(stderr, "--memory-limit %s: %s\n", limits[i], em.text);
        CHECK_EQ_INT(rc, 0);
        CHECK(c.http.max_body_bytes <= c.http.max_buffered_bytes);
        CHECK(c.http.max_body_bytes == (16u << 20) ||
              c.http.max_body_bytes == c.http.max_buffered_bytes);
        /* every message sent in pieces can be put back together */
        CHECK(c.cluster.max_message_bytes <= c.cluster.chunk_receive_max_bytes);
    }
    /* from 4 GiB up the 64 MiB default holds; set, it is kept as set */
    const char *big[] = {"flamedb", "--memory-limit", "8GiB"};
    CHECK_EQ_INT(parse(&c, big, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.cluster.max_message_bytes, 64 << 20);
    const char *msg[] = {"flamedb", "--max-message-bytes", "32MiB"};
    CHECK_EQ_INT(parse(&c, msg, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.cluster.max_message_bytes, 32 << 20);
    const char *a1[] = {"flamedb", "--memory-limit", "64MiB", "--max-body-bytes", "16MiB"};
    CHECK(parse(&c, a1, 5, NULL, &act, &em) != 0);
    CHECK(strstr(em.text, "max-body-bytes") != NULL);
    const char *a2[] = {"flamedb", "--memory-limit", "128MiB", "--max-buffered-bytes", "8MiB"};
    CHECK_EQ_INT(parse(&c, a2, 5, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.http.max_body_bytes, 8 << 20);
}

/* A push's decode caps follow memory-limit unless set: max-decoded-bytes
 * (what reading one pprof may hold) is a 32nd of it, ingest-max-request-nodes
 * (call-tree nodes of one push) a 512th, so worker-threads pushes at once fit
 * the budget whatever its size; a value set is kept as set. */
static void test_decode_caps_follow_memory(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    const char *def[] = {"flamedb"};
    CHECK_EQ_INT(parse(&c, def, 1, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.ingest.max_decoded_bytes, 32 << 20);
    CHECK_EQ_INT(c.ingest.max_request_nodes, 2097152);
    const char *small[] = {"flamedb", "--memory-limit", "64MiB"};
    CHECK_EQ_INT(parse(&c, small, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.ingest.max_decoded_bytes, 2 << 20);
    CHECK_EQ_INT(c.ingest.max_request_nodes, 131072);
    const char *big[] = {"flamedb", "--memory-limit", "8GiB"};
    CHECK_EQ_INT(parse(&c, big, 3, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.ingest.max_decoded_bytes, 256 << 20);
    CHECK_EQ_INT(c.ingest.max_request_nodes, 16777216);
    const char *set[] = {"flamedb", "--memory-limit",
                         "64MiB",   "--max-decoded-bytes",
                         "8MiB",    "--ingest-max-request-nodes",
                         "5000"};
    CHECK_EQ_INT(parse(&c, set, 7, NULL, &act, &em), 0);
    CHECK_EQ_INT(c.ingest.max_decoded_bytes, 8 << 20);
    CHECK_EQ_INT(c.ingest.max_request_nodes, 5000);
}

/* Files that are off when empty (auth-file, cluster-secret-file) show their
 * type as PATH in --help and the reference, and take an empty value from a
 * flag or the environment; data-dir, a PATH that must be set, still refuses
 * one. */
static void test_optional_paths(void)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(node_config_help(&b), 0);
    CHECK(strstr((char *)b.data, "--auth-file PATH  [FLAMEDB_AUTH_FILE]") != NULL);
    CHECK(strstr((char *)b.data, "--cluster-secret-file PATH  [FLAMEDB_CLUSTER_SECRET_FILE]") !=
          NULL);
    buf_reset(&b);
    CHECK_EQ_INT(node_config_doc(&b), 0);
    CHECK(strstr((char *)b.data, "| `--auth-file` | `FLAMEDB_AUTH_FILE` | PATH | ") != NULL);
    CHECK(strstr((char *)b.data,
                 "| `--cluster-secret-file` | `FLAMEDB_CLUSTER_SECRET_FILE` | PATH | ") != NULL);
    buf_free(&b);

    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    const char *set[] = {"flamedb", "--auth-file", "/etc/flamedb/tokens", "--cluster-secret-file",
                         "/etc/flamedb/secret"};
    CHECK_EQ_INT(parse(&c, set, 5, NULL, &act, &em), 0);
    CHECK_EQ_STR(c.auth_file, "/etc/flamedb/tokens");
    CHECK_EQ_STR(c.cluster.secret_file, "/etc/flamedb/secret");
    /* an empty flag turns off what the environment set */
    const char *env[] = {"FLAMEDB_AUTH_FILE=/etc/flamedb/tokens",
                         "FLAMEDB_CLUSTER_SECRET_FILE=", NULL};
    const char *off[] = {"flamedb", "--auth-file="};
    CHECK_EQ_INT(parse(&c, off, 2, env, &act, &em), 0);
    CHECK_EQ_STR(c.auth_file, "");
    CHECK_EQ_STR(c.cluster.secret_file, "");
    const char *none[] = {"flamedb"};
    CHECK_EQ_INT(parse(&c, none, 1, env, &act, &em), 0);
    CHECK_EQ_STR(c.auth_file, "/etc/flamedb/tokens");
    /* too long is still refused */
    char longp[NODE_PATH_MAX + 16];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    const char *big[] = {"flamedb", "--auth-file", longp};
    CHECK(parse(&c, big, 3, NULL, &act, &em) != 0);
    CHECK(strstr(em.text, "--auth-file") != NULL);
    const char *data[] = {"flamedb", "--data-dir="};
    CHECK(parse(&c, data, 2, NULL, &act, &em) != 0);
}

/* The cluster secret from systemd's credentials: $CREDENTIALS_DIRECTORY
 * holding cluster.secret sets cluster-secret-file unless a flag or variable
 * set it (an empty one keeps it off), and deploy/flamedb.service's
 * LoadCredential= line names that credential, as its env file's path does. */
static void test_credentials(void)
{
    node_config_t c;
    enum node_config_action act;
    errmsg_t em;
    char dir[] = "/tmp/flamedb-cred-XXXXXX", file[256], envdir[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(envdir, sizeof envdir, "CREDENTIALS_DIRECTORY=%s", dir);
    const char *argv[] = {"flamedb", "--cluster-secret-file="};
    const char *env[] = {envdir, NULL};
    CHECK_EQ_INT(parse(&c, argv, 1, env, &act, &em), 0); /* no credential: off */
    CHECK_EQ_STR(c.cluster.secret_file, "");
    snprintf(file, sizeof file, "%s/%s", dir, NODE_CREDENTIAL_CLUSTER_SECRET);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fputs("0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    CHECK_EQ_INT(parse(&c, argv, 1, env, &act, &em), 0);
    CHECK_EQ_STR(c.cluster.secret_file, file);
    CHECK_EQ_INT(parse(&c, argv, 2, env, &act, &em), 0); /* explicitly off */
    CHECK_EQ_STR(c.cluster.secret_file, "");
    const char *env2[] = {envdir, "FLAMEDB_CLUSTER_SECRET_FILE=/etc/other.secret", NULL};
    CHECK_EQ_INT(parse(&c, argv, 1, env2, &act, &em), 0);
    CHECK_EQ_STR(c.cluster.secret_file, "/etc/other.secret");
    unlink(file);
    rmdir(dir);

    /* the unit's wiring: LoadCredential=ID:SOURCE with ID the name read above,
     * and the env file's documented path /run/credentials/UNIT/ID */
    char path[1024], line[512], cred[128] = "", envpath[256] = "";
    const char *src = __FILE__, *slash = strrchr(src, '/');
    int dl = slash ? (int)(slash - src) : 1;
    snprintf(path, sizeof path, "%.*s/../../deploy/flamedb.service", dl, slash ? src : ".");
    f = fopen(path, "r");
    CHECK(f != NULL);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        const char *l = line[0] == '#' ? line + 1 : line;
        if (strncmp(l, "LoadCredential=", 15) == 0) sscanf(l + 15, "%127[^:]", cred);
    }
    if (f != NULL) fclose(f);
    CHECK_EQ_STR(cred, NODE_CREDENTIAL_CLUSTER_SECRET);
    snprintf(path, sizeof path, "%.*s/../../deploy/flamedb.env", dl, slash ? src : ".");
    f = fopen(path, "r");
    CHECK(f != NULL);
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "FLAMEDB_CLUSTER_SECRET_FILE=/run/credentials/") != NULL)
            sscanf(strchr(line, '=') + 1, "%255s", envpath);
    if (f != NULL) fclose(f);
    CHECK_EQ_STR(envpath, "/run/credentials/flamedb.service/" NODE_CREDENTIAL_CLUSTER_SECRET);
}

/* The node tables' cache shares node-cache-bytes with the stack cache and
 * the shard unions, each capped at a quarter of it: the node and the ingest
 * benchmark size it with the same call. */
static void test_node_cache_shared(void)
{
    node_config_t c;
    node_config_default(&c);
    CHECK_EQ_INT(c.storage.node_cache_bytes, 128 << 20); /* an eighth of memory-limit */
    storage_options_t o = c.storage;
    CHECK_EQ_INT(storage_options_share_node_cache(&o, c.ingest_stack_cache_bytes), 16 << 20);
    CHECK_EQ_INT(o.union_cache_bytes, 16 << 20);
    CHECK_EQ_INT(o.node_cache_bytes, 96 << 20);
    o = c.storage; /* larger asks are capped at a quarter each */
    o.union_cache_bytes = 100 << 20;
    CHECK_EQ_INT(storage_options_share_node_cache(&o, 100 << 20), 32 << 20);
    CHECK_EQ_INT(o.union_cache_bytes, 32 << 20);
    CHECK_EQ_INT(o.node_cache_bytes, 64 << 20);
}

int main(void)
{
    test_node_cache_shared();
    test_credentials();
    test_small_memory();
    test_decode_caps_follow_memory();
    test_fold_memory();
    test_dict_train_memory();
    test_values();
    test_defaults();
    test_flags_and_env();
    test_errors();
    test_whole_deadlines();
    test_generated_text();
    test_optional_paths();
    return check_exit();
}
