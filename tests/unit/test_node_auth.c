/* test_node_auth.c — the --auth-file table (node/auth.h): parsing and its
 * errors, SHA-256, Bearer and Basic credentials, roles and tenants. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "node/auth.h"
#include "storage/storage.h"

static char path[] = "/tmp/flamedb-auth-test-XXXXXX";

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void hex_of(const char *token, char out[65])
{
    unsigned char h[NODE_AUTH_SHA256_LEN];
    CHECK(node_auth_sha256(token, strlen(token), h) == 0);
    for (int i = 0; i < NODE_AUTH_SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void test_sha256(void)
{
    char hex[65];
    hex_of("abc", hex); /* FIPS 180-2 example */
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static int load(const char *text, node_auth_t **a, errmsg_t *em)
{
    write_file(text);
    memset(em, 0, sizeof *em);
    return node_auth_load(path, a, em);
}

static void test_file_errors(void)
{
    node_auth_t *a = NULL;
    errmsg_t em;
    char hex[65], line[512];
    hex_of("t", hex);
    CHECK(load("# only a comment\n\n", &a, &em) == ERR_INVALID_ARGUMENT && a == NULL);
    CHECK(strstr(em.text, "no token") != NULL);
    CHECK(load("acme read abc\n", &a, &em) != 0 && strstr(em.text, ":1:") != NULL);
    snprintf(line, sizeof line, "# c\nacme owner %s\n", hex);
    CHECK(load(line, &a, &em) != 0 && strstr(em.text, ":2: role 'owner'") != NULL);
    snprintf(line, sizeof line, "a/b read %s\n", hex);
    CHECK(load(line, &a, &em) != 0 && strstr(em.text, "tenant") != NULL);
    snprintf(line, sizeof line, "acme read %s extra\n", hex);
    CHECK(load(line, &a, &em) != 0 && strstr(em.text, "three fields") != NULL);
    snprintf(line, sizeof line, "acme read %s\nb write %s\n", hex, hex);
    CHECK(load(line, &a, &em) != 0 && strstr(em.text, ":2: the same token") != NULL);
    unlink(path);
    CHECK(node_auth_load(path, &a, &em) == ERR_IO && strstr(em.text, path) != NULL);
}

static int check(const node_auth_t *a, const char *authz, const char *org, int need, char *tenant)
{
    http_kv_t h[2];
    size_t nh = 0;
    if (authz) h[nh++] = (http_kv_t){"authorization", authz};
    if (org) h[nh++] = (http_kv_t){"X-Scope-OrgID", org};
    http_request_t r = {.path = "/x", .headers = h, .nheaders = nh};
    errmsg_t em = {{0}};
    tenant[0] = 0;
    return node_auth_check(a, &r, need, tenant, STORAGE_TENANT_MAX + 1, &em);
}

static void test_check(void)
{
    char hr[65], hw[65], ha[65], text[1024];
    hex_of("reader", hr);
    hex_of("writer", hw);
    hex_of("boss", ha);
    snprintf(text, sizeof text, "acme read %s\n  acme\twrite %s  \r\nops admin %s\n", hr, hw, ha);
    node_auth_t *a = NULL;
    errmsg_t em;
    CHECK(load(text, &a, &em) == 0);
    CHECK_EQ_INT(node_auth_count(a), 3);
    char t[STORAGE_TENANT_MAX + 1];
    CHECK_EQ_INT(check(a, NULL, NULL, NODE_AUTH_READ, t), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(check(a, "Bearer nope", NULL, NODE_AUTH_READ, t), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(check(a, "Bearer ", NULL, NODE_AUTH_READ, t), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(check(a, "Digest x", NULL, NODE_AUTH_READ, t), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(check(a, "Bearer reader", NULL, NODE_AUTH_READ, t), 0);
    CHECK_EQ_STR(t, "acme");
    CHECK_EQ_INT(check(a, "bearer reader", "acme", NODE_AUTH_READ, t), 0);
    CHECK_EQ_INT(check(a, "Bearer reader", "other", NODE_AUTH_READ, t), ERR_FORBIDDEN);
    CHECK_EQ_INT(check(a, "Bearer reader", NULL, NODE_AUTH_WRITE, t), ERR_FORBIDDEN);
    CHECK_EQ_INT(check(a, "Bearer writer", NULL, NODE_AUTH_READ, t), ERR_FORBIDDEN);
    CHECK_EQ_INT(check(a, "Bearer writer", NULL, NODE_AUTH_WRITE, t), 0);
    CHECK_EQ_INT(check(a, "Bearer writer", NULL, NODE_AUTH_ADMIN, t), ERR_FORBIDDEN);
    CHECK_EQ_INT(check(a, "Bearer boss", NULL, NODE_AUTH_ADMIN, t), 0);
    CHECK_EQ_STR(t, "ops");
    CHECK_EQ_INT(check(a, "Bearer boss", NULL, NODE_AUTH_WRITE, t), 0);
    /* Basic: base64("123:writer"), with and without padding; the user is ignored */
    CHECK_EQ_INT(check(a, "Basic MTIzOndyaXRlcg==", NULL, NODE_AUTH_WRITE, t), 0);
    CHECK_EQ_INT(check(a, "Basic MTIzOndyaXRlcg", NULL, NODE_AUTH_WRITE, t), 0);
    CHECK_EQ_INT(check(a, "Basic d3JpdGVy", NULL, NODE_AUTH_WRITE, t), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(check(a, "Basic !!!", NULL, NODE_AUTH_WRITE, t), ERR_UNAUTHORIZED);
    node_auth_free(a);
}

static void test_need(void)
{
    CHECK_EQ_INT(node_auth_need("/ready", 0), NODE_AUTH_OPEN);
    CHECK_EQ_INT(node_auth_need("/metrics", 1), NODE_AUTH_OPEN);
    CHECK_EQ_INT(node_auth_need("/metrics", 0), NODE_AUTH_READ);
    CHECK_EQ_INT(node_auth_need("/ingest", 1), NODE_AUTH_WRITE);
    CHECK_EQ_INT(node_auth_need("/cluster/status", 1), NODE_AUTH_ADMIN);
    CHECK_EQ_INT(node_auth_need("/pyroscope/render", 1), NODE_AUTH_READ);
    CHECK_EQ_INT(node_auth_need("/nope", 1), NODE_AUTH_READ);
    CHECK_EQ_INT(node_auth_need("/", 0), NODE_AUTH_OPEN); /* the web UI's page and files */
    CHECK_EQ_INT(node_auth_need("/ui/app.js", 0), NODE_AUTH_OPEN);
    CHECK_EQ_INT(node_auth_need("/uix", 0), NODE_AUTH_READ);
    CHECK_EQ_INT(node_auth_need("/ui", 0), NODE_AUTH_READ);
}

int main(void)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    test_sha256();
    test_need();
    test_check();
    test_file_errors();
    unlink(path);
    return check_exit();
}
