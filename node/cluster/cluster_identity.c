/* cluster_identity.c — the node's identity file DATA_DIR/identity
 * (node id and ring tokens, ring_identity_format), generated once and then
 * only read, so a restarted node owns the same data as before; the
 * incarnation file; and the cluster secret, read only. Files are read and
 * written by cluster_statefile.c: atomically (a crash leaves no identity or
 * a whole one, whose rename the directory's sync made last), and the secret
 * so that no copy of it is left behind in memory.
 */
#define _GNU_SOURCE /* gethostname */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "node/cluster/cluster_int.h"

void cluster_identity_default_id(ring_rng_t *rng, char out[RING_NODE_ID_MAX + 1])
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "node");
    host[40] = '\0'; /* room for the suffix */
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '-';
    snprintf(out, RING_NODE_ID_MAX + 1, "%.40s-%08x", host, (unsigned)(ring_rng_next(rng) >> 32));
}

static int identity_create(const char *dir, const char *path, const char *want_id, uint32_t ntokens,
                           ring_rng_t *rng, ring_identity_t *out, errmsg_t *em)
{
    char id[RING_NODE_ID_MAX + 1];
    if (want_id[0] != '\0')
        snprintf(id, sizeof id, "%s", want_id);
    else
        cluster_identity_default_id(rng, id);
    int rc = ring_node_id_check(want_id[0] ? want_id : id, em);
    if (rc == ERR_OK) rc = ring_identity_generate(out, id, ntokens, rng, em);
    if (rc != ERR_OK) return rc;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    rc = ring_identity_format(out, &b);
    if (rc == ERR_OK) rc = cluster_statefile_write(dir, path, &b, em);
    buf_free(&b);
    if (rc != ERR_OK) {
        ring_identity_free(out);
        return rc;
    }
    log_info("cluster", "new identity: node id %s, %u tokens (saved in %s)", out->node_id,
             out->ntokens, path);
    return ERR_OK;
}

static int identity_check(const char *path, const char *want_id, uint32_t ntokens,
                          ring_identity_t *id, errmsg_t *em)
{
    if (want_id[0] != '\0' && strcmp(want_id, id->node_id) != 0) {
        errmsg_set(em, ERR_INVALID_ARGUMENT,
                   "the data dir belongs to node '%s' (%s), not to --node-id '%s'", id->node_id,
                   path, want_id);
        ring_identity_free(id);
        return ERR_INVALID_ARGUMENT;
    }
    if (id->ntokens != ntokens)
        log_warn("cluster",
                 "keeping the %u tokens of %s (--tokens %u applies to new nodes only: "
                 "changing a node's tokens moves data)",
                 id->ntokens, path, ntokens);
    log_info("cluster", "identity: node id %s, %u tokens (from %s)", id->node_id, id->ntokens,
             path);
    return ERR_OK;
}

int cluster_identity_load(const char *data_dir, const char *want_id, uint32_t ntokens,
                          ring_rng_t *rng, ring_identity_t *out, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, CLUSTER_IDENTITY_FILE) >= (int)sizeof path)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    int rc = cluster_statefile_read(path, CLUSTER_IDENTITY_MAX, &b, em);
    if (rc == ERR_NOT_FOUND) return identity_create(data_dir, path, want_id, ntokens, rng, out, em);
    if (rc == ERR_OK) {
        rc = ring_identity_parse(out, b.data, b.len, em);
        if (rc != ERR_OK) {
            char why[ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", em ? em->text : "");
            errmsg_set(em, rc, "%s: %.400s (restore it or move the data dir away)", path, why);
        }
    }
    buf_free(&b);
    if (rc == ERR_OK) rc = identity_check(path, want_id, ntokens, out, em);
    return rc;
}

/* The incarnation of this start: the wall-clock seconds, but always above
 * the one of the previous start (kept in DATA_DIR/incarnation). A restart
 * within the same second, or after the clock went back, must still replace
 * the old entry everywhere: its addresses may have changed, and peers only
 * take new addresses with a higher incarnation. */
int cluster_incarnation_next(const char *data_dir, uint64_t now_s, uint64_t *out, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, CLUSTER_INCARNATION_FILE) >=
        (int)sizeof path)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    int rc = cluster_statefile_read(path, 64, &b, em);
    uint64_t last = 0;
    if (rc == ERR_OK) {
        char *end = NULL;
        last = strtoull(b.len ? (const char *)b.data : "", &end, 10);
        if (b.len == 0 || end == NULL || (*end != '\n' && *end != '\0'))
            last = 0; /* unreadable: the clock alone decides, as on a first start */
    } else if (rc != ERR_NOT_FOUND) {
        return rc;
    }
    buf_free(&b);
    buf_init(&b, 64);
    *out = now_s > last ? now_s : last + 1;
    rc = buf_printf(&b, "%llu\n", (unsigned long long)*out);
    if (rc == ERR_OK) rc = cluster_statefile_write(data_dir, path, &b, em);
    buf_free(&b);
    return rc;
}

/* Why the secret could not be read, keeping the reader's reason (permission
 * denied, a directory, too large). A file this process may not read is what
 * a service running as another user than the file's owner meets (systemd's
 * DynamicUser= among them): say which user it runs as. */
static int secret_read_err(const char *path, errmsg_t *em)
{
    char why[ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", em->text[0] ? em->text : "cannot read it");
    if (access(path, R_OK) != 0 && errno == EACCES)
        return errmsg_set(em, ERR_IO,
                          "--cluster-secret-file: %s; flamedb runs as uid %u, which may not "
                          "read it: make that user the file's owner (under systemd with "
                          "DynamicUser=, hand the file over with LoadCredential=, see "
                          "deploy/flamedb.service)",
                          why, (unsigned)geteuid());
    return errmsg_set(em, ERR_IO, "--cluster-secret-file: %s", why);
}

/* The cluster secret: the file's bytes without trailing white space. A
 * secret others can read is no secret, so a file readable by group or others
 * is refused; a short one is refused because it could be guessed. */
int cluster_secret_load(const char *path, digest_key_t **out, errmsg_t *em)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return errmsg_set(em, ERR_IO, "--cluster-secret-file: cannot read %s: %s", path,
                          strerror(errno));
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "--cluster-secret-file: %s is readable by others (mode %03o); "
                          "chmod 600 it",
                          path, (unsigned)(st.st_mode & 0777));
    if (S_ISREG(st.st_mode) && st.st_size > CLUSTER_SECRET_MAX + 1)
        return errmsg_set(em, ERR_IO,
                          "--cluster-secret-file: %s is over %d bytes (%lld): is it the secret?",
                          path, CLUSTER_SECRET_MAX, (long long)st.st_size);
    buf_t b;
    int rc = cluster_statefile_read_secret(path, CLUSTER_SECRET_MAX + 1, &b, em);
    if (rc != ERR_OK) rc = secret_read_err(path, em);
    size_t n = b.len;
    while (rc == ERR_OK && n > 0 && strchr(" \t\r\n", b.data[n - 1]) != NULL)
        n--;
    if (rc == ERR_OK && n < CLUSTER_SECRET_MIN)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT,
                        "--cluster-secret-file: the secret in %s has %zu bytes, at least %d needed",
                        path, n, CLUSTER_SECRET_MIN);
    if (rc == ERR_OK && digest_key_new(b.data, n, out) != 0)
        rc = errmsg_set(em, ERR_INTERNAL, "--cluster-secret-file: cannot set up HMAC-SHA-256");
    cluster_statefile_wipe(&b); /* every path: after an error it is empty */
    return rc;
}
