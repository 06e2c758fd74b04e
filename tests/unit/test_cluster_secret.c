/* test_cluster_secret.c — the files of DATA_DIR that cluster_identity.c
 * reads and writes through cluster_statefile.c: the cluster secret, the
 * identity and the incarnation.
 *
 * The secret's bytes must not outlive cluster_secret_load in memory that is
 * freed: this test replaces free and realloc (its realloc always moves, as
 * a realloc may, so the old block is always freed) and looks for the secret
 * in every block freed while the secret is loaded, after a load that
 * succeeds and after each way one fails, from a file and from a pipe
 * (--cluster-secret-file <(a command)), which delivers it in pieces. Under
 * AddressSanitizer, which owns the allocator, only the loads' results are
 * checked.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/digest.h"
#include "common/log.h"
#include "node/cluster/cluster_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define WATCH_FREES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WATCH_FREES 0
#endif
#endif
#ifndef WATCH_FREES
#define WATCH_FREES 1
#endif

static const char MARK[] = "s3cr3t-m4rk-"; /* what the secrets are made of */
static int watching;                       /* 1 while a secret is loaded */
static int leaked;                         /* blocks freed with a piece of the secret in them */

#if WATCH_FREES
extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

void free(void *p)
{
    if (watching && p != NULL && memmem(p, malloc_usable_size(p), MARK, 6) != NULL) leaked++;
    __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    if (!watching || p == NULL || n == 0) return __libc_realloc(p, n);
    void *q = __libc_malloc(n);
    if (q == NULL) return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    free(p);
    return q;
}
#endif

static char dir[64];

/* A secret file of n bytes of MARK repeated (then a newline), with mode. */
static void write_secret(const char *path, size_t n, mode_t mode)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL) return;
    for (size_t i = 0; i < n; i++)
        fputc(MARK[i % (sizeof MARK - 1)], f);
    fputc('\n', f);
    fclose(f);
    CHECK_EQ_INT(chmod(path, mode), 0);
}

/* Loads path, watching what is freed meanwhile; returns the load's result. */
static int load(const char *path, digest_key_t **key, errmsg_t *em)
{
    leaked = 0;
    watching = 1;
    int rc = cluster_secret_load(path, key, em);
    watching = 0;
    CHECK_EQ_INT(leaked, 0);
    return rc;
}

/* The key loaded signs as a key made of the secret's n bytes does. */
static void check_key(const digest_key_t *key, size_t n)
{
    char want[CLUSTER_SECRET_MAX];
    for (size_t i = 0; i < n; i++)
        want[i] = MARK[i % (sizeof MARK - 1)];
    digest_key_t *k2 = NULL;
    CHECK_EQ_INT(digest_key_new(want, n, &k2), 0);
    digest_part_t part = {"message", 7};
    uint8_t a[DIGEST_SHA256_BYTES], b[DIGEST_SHA256_BYTES];
    CHECK_EQ_INT(digest_hmac(key, &part, 1, a), 0);
    CHECK_EQ_INT(digest_hmac(k2, &part, 1, b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    digest_key_free(k2);
}

static void test_secret(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/secret", dir);
    errmsg_t em = {{0}};
    /* a secret that grows the buffer past its first size */
    size_t sizes[] = {CLUSTER_SECRET_MIN, 300, CLUSTER_SECRET_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        write_secret(path, sizes[i], 0600);
        digest_key_t *key = NULL;
        CHECK_EQ_INT(load(path, &key, &em), ERR_OK);
        CHECK(key != NULL);
        if (key != NULL) check_key(key, sizes[i]);
        digest_key_free(key);
    }
    digest_key_t *key = NULL;
    write_secret(path, CLUSTER_SECRET_MIN - 1, 0600); /* too short: read, then refused */
    CHECK_EQ_INT(load(path, &key, &em), ERR_INVALID_ARGUMENT);
    CHECK(key == NULL && strstr(em.text, "at least") != NULL);
    write_secret(path, CLUSTER_SECRET_MAX + 100, 0600); /* too long */
    CHECK_EQ_INT(load(path, &key, &em), ERR_IO);
    CHECK(key == NULL && strstr(em.text, "over") != NULL);
    write_secret(path, 300, 0640); /* others may read it */
    CHECK_EQ_INT(load(path, &key, &em), ERR_INVALID_ARGUMENT);
    CHECK(key == NULL && strstr(em.text, "chmod 600") != NULL);
    snprintf(path, sizeof path, "%s/none", dir);
    CHECK_EQ_INT(load(path, &key, &em), ERR_IO);
    unlink(path);
}

/* The watch sees a freed block holding the secret (else the test could
 * not fail). */
static void test_watch_works(void)
{
    if (!WATCH_FREES) return;
    /* through a pointer the compiler cannot see through: it knows what free
     * does, and would drop the copy and the watch around a free */
    void (*volatile release)(void *) = free;
    char *p = malloc(64);
    CHECK(p != NULL);
    if (p == NULL) return;
    memcpy(p, MARK, sizeof MARK);
    leaked = 0;
    watching = 1;
    release(p);
    watching = 0;
    CHECK_EQ_INT(leaked, 1);
}

/* A pipe hands the secret over in pieces of 20 bytes, so the buffer it is
 * read into would grow (and move) as it comes. */
static void test_secret_from_pipe(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fifo", dir);
    CHECK_EQ_INT(mkfifo(path, 0600), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY);
        char piece[20];
        for (size_t i = 0; fd >= 0 && i < 300; i += sizeof piece) {
            for (size_t j = 0; j < sizeof piece; j++)
                piece[j] = MARK[(i + j) % (sizeof MARK - 1)];
            if (write(fd, piece, sizeof piece) != (ssize_t)sizeof piece) _exit(1);
            usleep(3000); /* each piece its own read */
        }
        _exit(fd >= 0 ? 0 : 1);
    }
    digest_key_t *key = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(load(path, &key, &em), ERR_OK);
    if (key != NULL) check_key(key, 300);
    digest_key_free(key);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(path);
}

/* The identity is created once and read back the same; a restart with
 * another --node-id is refused. */
static void test_identity(void)
{
    ring_rng_t rng;
    ring_rng_seed(&rng, 7);
    ring_identity_t a, b;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_identity_load(dir, "n1", 16, &rng, &a, &em), ERR_OK);
    CHECK_EQ_INT(cluster_identity_load(dir, "", 32, &rng, &b, &em), ERR_OK);
    CHECK(strcmp(a.node_id, "n1") == 0 && strcmp(b.node_id, "n1") == 0);
    CHECK_EQ_INT(b.ntokens, 16);
    CHECK(a.ntokens == b.ntokens && memcmp(a.tokens, b.tokens, a.ntokens * sizeof *a.tokens) == 0);
    ring_identity_free(&b);
    CHECK_EQ_INT(cluster_identity_load(dir, "n2", 16, &rng, &b, &em), ERR_INVALID_ARGUMENT);
    ring_identity_free(&a);
}

/* The incarnation rises at every start, also when the clock does not. */
static void test_incarnation(void)
{
    uint64_t a = 0, b = 0, c = 0;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_incarnation_next(dir, 1000, &a, &em), ERR_OK);
    CHECK_EQ_INT(cluster_incarnation_next(dir, 1000, &b, &em), ERR_OK);
    CHECK_EQ_INT(cluster_incarnation_next(dir, 500, &c, &em), ERR_OK);
    CHECK(a == 1000 && b == 1001 && c == 1002);
}

int main(void)
{
    log_set_level(LOG_WARN);
    snprintf(dir, sizeof dir, "/tmp/flamedb-secret-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (!WATCH_FREES) fprintf(stderr, "test_cluster_secret: frees not watched (sanitizer)\n");
    test_watch_works();
    test_secret();
    test_secret_from_pipe();
    test_identity();
    test_incarnation();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
