/* cluster_statefile.c — the small text state files of DATA_DIR that the
 * cluster keeps for itself (regain, regain.progress, regain.ring; see
 * cluster_int.h): read whole under a size limit, written atomically, and
 * the strict pieces their parsers share. The identity and incarnation files
 * and the cluster secret (cluster_identity.c) are read, and the first two
 * written, by the same functions.
 *
 * Each such file is a header line, record lines and a last line
 * "end COUNT CHECKSUM" (COUNT decimal, the number of records; CHECKSUM 16
 * hex digits, hash_bytes64 of every byte of the file before the space that
 * precedes it), every line ending in '\n': a file cut short anywhere lacks
 * its end line or has a count that does not match, and one with a changed
 * byte does not match its checksum, so it is refused rather than read as a
 * shorter or another list. Files of the release before have no CHECKSUM
 * ("end COUNT") and are still read, with only the count to check them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"
#include "node/cluster/cluster_int.h"

#define CHECKSUM_HEX 16

/* The end line's checksum, when it has one, against the bytes before it;
 * ERR_OK also for a file without one (the parsers check its form). */
static int check_sum(const buf_t *b)
{
    const char *d = (const char *)b->data;
    size_t n = b->len;
    if (n < CHECKSUM_HEX + 2 || d[n - 1] != '\n') return ERR_OK;
    size_t at = n - 1 - CHECKSUM_HEX; /* where the checksum starts */
    if (d[at - 1] != ' ') return ERR_OK;
    size_t ls = at - 1; /* the start of the last line */
    while (ls > 0 && d[ls - 1] != '\n')
        ls--;
    if (at - 1 - ls < 5 || memcmp(d + ls, "end ", 4) != 0) return ERR_OK;
    uint64_t want;
    if (cluster_statefile_hex64(d + at, CHECKSUM_HEX, &want) != ERR_OK) return ERR_CORRUPT;
    return hash_bytes64(d, at - 1) == want ? ERR_OK : ERR_CORRUPT;
}

int cluster_statefile_finish(buf_t *b, size_t count)
{
    int rc = buf_printf(b, "end %zu", count);
    return rc == 0 ? buf_printf(b, " %016llx\n", (unsigned long long)hash_bytes64(b->data, b->len))
                   : rc;
}

/* Appends what fd holds to out (bounded by out->max). The chunk read into is
 * wiped before it goes out of scope: it may have held a secret. */
static int read_fd(int fd, const char *path, buf_t *out, errmsg_t *em)
{
    uint8_t chunk[8192];
    int rc = ERR_OK;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = errmsg_set(em, ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        if (buf_append(out, chunk, (size_t)n) != ERR_OK) {
            rc = errmsg_set(em, ERR_CORRUPT, "%s: larger than %zu bytes", path, out->max);
            break;
        }
    }
    explicit_bzero(chunk, sizeof chunk);
    return rc;
}

/* cluster_statefile_read, and _read_secret when secret: out then has all of
 * max before the first byte is read, so it never moves (a realloc would
 * leave a copy of the first bytes in freed memory), and is wiped on errors. */
static int read_path(const char *path, size_t max, int secret, buf_t *out, errmsg_t *em)
{
    buf_init(out, max);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? ERR_NOT_FOUND
                   : errmsg_set(em, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st; /* a file over max is refused before anything is read */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        close(fd);
        return errmsg_set(em, ERR_CORRUPT, "%s: larger than %zu bytes", path, max);
    }
    int rc = ERR_OK;
    if (secret && buf_reserve(out, max) != ERR_OK) rc = errmsg_set(em, ERR_NOMEM, "out of memory");
    if (rc == ERR_OK) rc = read_fd(fd, path, out, em);
    close(fd);
    /* an empty file still gets storage: parsers do pointer arithmetic on it */
    if (rc == ERR_OK && out->data == NULL && buf_reserve(out, 1) != ERR_OK)
        rc = errmsg_set(em, ERR_NOMEM, "out of memory");
    if (rc == ERR_OK && !secret && check_sum(out) != ERR_OK)
        rc = errmsg_set(em, ERR_CORRUPT, "%s: its checksum does not match its content", path);
    if (rc != ERR_OK && secret)
        cluster_statefile_wipe(out);
    else if (rc != ERR_OK)
        buf_free(out);
    return rc;
}

int cluster_statefile_read(const char *path, size_t max, buf_t *out, errmsg_t *em)
{
    return read_path(path, max, 0, out, em);
}

int cluster_statefile_read_secret(const char *path, size_t max, buf_t *out, errmsg_t *em)
{
    return read_path(path, max, 1, out, em);
}

void cluster_statefile_wipe(buf_t *b)
{
    if (b->data != NULL) explicit_bzero(b->data, b->cap);
    buf_free(b);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int cluster_statefile_write(const char *dir, const char *path, const buf_t *b, errmsg_t *em)
{
    char tmp[CLUSTER_SETTING_MAX + 64];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errmsg_set(em, ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    int bad = write_all(fd, b->data, b->len) != 0 || fsync(fd) != 0;
    int saved = errno;
    bad = close(fd) != 0 || bad;
    if (bad || rename(tmp, path) != 0) {
        saved = bad ? saved : errno;
        unlink(tmp);
        return errmsg_set(em, ERR_IO, "cannot write %s: %s", path, strerror(saved));
    }
    /* the rename itself lasts a crash only once the directory is synced */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        saved = errno;
        if (dfd >= 0) close(dfd);
        return errmsg_set(em, ERR_IO, "cannot sync %s: %s", dir, strerror(saved));
    }
    close(dfd);
    return ERR_OK;
}

char *cluster_statefile_line(char **p, char *end)
{
    if (*p >= end) return NULL;
    char *line = *p, *nl = memchr(line, '\n', (size_t)(end - line));
    if (nl == NULL || memchr(line, '\0', (size_t)(nl - line)) != NULL) {
        *p = end;
        return NULL;
    }
    *nl = '\0';
    *p = nl + 1;
    return line;
}

int cluster_statefile_hex64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 16) return ERR_CORRUPT;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return ERR_CORRUPT;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return ERR_OK;
}

int cluster_statefile_end(const char *line, size_t left, size_t count)
{
    if (line == NULL || strncmp(line, "end ", 4) != 0 || left != 0) return ERR_CORRUPT;
    const char *s = line + 4, *sp = strchr(s, ' ');
    size_t n = 0, len = sp != NULL ? (size_t)(sp - s) : strlen(s);
    /* the checksum, when there is one, was checked when the file was read */
    if (sp != NULL && strlen(sp + 1) != CHECKSUM_HEX) return ERR_CORRUPT;
    if (len == 0 || len > 18 || (s[0] == '0' && len > 1)) return ERR_CORRUPT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return ERR_CORRUPT;
        n = n * 10 + (size_t)(s[i] - '0');
    }
    return n == count ? ERR_OK : ERR_CORRUPT;
}

static int iv_cmp(const void *a, const void *b)
{
    const cluster_iv_t *x = a, *y = b;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return x->hi < y->hi ? -1 : x->hi > y->hi;
}

int cluster_statefile_sort_unique(cluster_iv_t *v, size_t n)
{
    if (n > 1) qsort(v, n, sizeof *v, iv_cmp);
    for (size_t i = 1; i < n; i++)
        if (v[i].lo == v[i - 1].lo && v[i].hi == v[i - 1].hi) return ERR_CORRUPT;
    return ERR_OK;
}
