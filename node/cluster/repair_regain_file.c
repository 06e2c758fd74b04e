/* repair_regain_file.c — DATA_DIR/regain.progress: where the regain of
 * ranges gained by a removal stands, so a restarted node resumes it
 * (repair_int.h; docs/cluster.md, "Removing a node").
 *
 * Owned by the repair thread. Lines after the header:
 *   cleared LO HI SETTLED_MS   an interval of DATA_DIR/regain this node
 *                              cleared (its removal settled then)
 *   piece LO HI DONE SPANS_DONE FAILED AFTER SPANS_AFTER
 *                              a piece's stream cursor: the last window key
 *                              and span key stored (hex, "-" when none)
 * LO, HI and SETTLED_MS in hex, DONE, SPANS_DONE and FAILED 0 or 1, every
 * cleared line before the pieces; the header is "flamedb-regain-progress 2"
 * and the last line "end LINES CHECKSUM" (cluster_statefile.c). A cleared interval is not cleared
 * again (that would drop what was streamed and the markers that keep a window from being added
 * twice); a piece goes on after its cursor. A cursor that lags (a crash after a page was stored but
 * before the file was written) walks that page again: its windows are marked and skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define PROGRESS_FILE CLUSTER_REGAIN_FILE CLUSTER_REGAIN_PROGRESS_SUFFIX
#define PROGRESS_HEADER "flamedb-regain-progress 2"
#define KEY_HEX (2 * REPAIR_STREAM_KEY_MAX + 1)

static int progress_path(const repair_t *r, const char *suffix, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s%s", r->c->data_dir, PROGRESS_FILE, suffix) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    static const char dig[] = "0123456789abcdef";
    if (n == 0) {
        strcpy(out, "-");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = dig[p[i] >> 4];
        out[2 * i + 1] = dig[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A stream key: "-" (none) or up to REPAIR_STREAM_KEY_MAX bytes in pairs of
 * lowercase hex digits; ERR_CORRUPT otherwise. */
static int unhex(const char *s, uint8_t *out, size_t *n)
{
    size_t len = strlen(s);
    if (strcmp(s, "-") == 0) {
        *n = 0;
        return 0;
    }
    if (len == 0 || len % 2 != 0 || len / 2 > REPAIR_STREAM_KEY_MAX) return ERR_CORRUPT;
    for (size_t i = 0; i < len / 2; i++) {
        uint64_t v;
        if (cluster_statefile_hex64(s + 2 * i, 2, &v) != 0) return ERR_CORRUPT;
        out[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

/* Whether [lo, hi] lies in a cleared interval (pieces of others are not
 * written: they start afresh after that interval's clear). */
static int in_cleared(const repair_t *r, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < r->rg.niv; i++)
        if (r->rg.iv[i].settled_ms != 0 && lo >= r->rg.iv[i].lo && hi <= r->rg.iv[i].hi) return 1;
    return 0;
}

/* " HEALS MISMATCHES CHECK_S CHECK_SRC": the check that passed, when one
 * did (in this process or, kept, in an earlier one). */
static int put_check(buf_t *b, const repair_stream_state_t *ss)
{
    char src[2 * RING_NODE_ID_MAX + 2];
    int passed = (ss->checked || ss->check_kept) && ss->check_src[0] != '\0';
    hex_of((const uint8_t *)ss->check_src, passed ? strlen(ss->check_src) : 0, src);
    return buf_printf(b, " %" PRIx32 " %" PRIx32 " %" PRIx64 " %s", ss->heals, ss->mismatches,
                      passed ? (uint64_t)ss->check_s : 0, src);
}

int repair_progress_piece_put(buf_t *b, const repair_stream_state_t *ss, int counts)
{
    char a[KEY_HEX], k[KEY_HEX];
    hex_of(ss->after, ss->after_len, a);
    hex_of(ss->spans_after, ss->spans_after_len, k);
    int rc = buf_printf(b, "piece %016" PRIx64 " %016" PRIx64 " %d %d %d %s %s", ss->lo, ss->hi,
                        ss->done != 0, ss->spans_done != 0, ss->failed != 0, a, k);
    if (rc == 0 && counts) rc = buf_printf(b, " %" PRIx64 " %" PRIx64, ss->windows, ss->bytes);
    if (rc == 0 && counts == 2) rc = put_check(b, ss);
    return rc == 0 ? buf_printf(b, "\n") : rc;
}

static int write_all(const repair_t *r, buf_t *b)
{
    size_t n = 0;
    int rc = buf_printf(b, "%s\n", PROGRESS_HEADER);
    for (size_t i = 0; rc == 0 && i < r->rg.niv; i++)
        if (r->rg.iv[i].settled_ms != 0) {
            rc = buf_printf(b, "cleared %016" PRIx64 " %016" PRIx64 " %" PRIx64 "\n",
                            r->rg.iv[i].lo, r->rg.iv[i].hi, r->rg.iv[i].settled_ms);
            n++;
        }
    for (size_t i = 0; rc == 0 && i < r->rg.streams.n; i++) {
        const repair_stream_state_t *ss = &r->rg.streams.v[i];
        if (!in_cleared(r, ss->lo, ss->hi)) continue;
        rc = repair_progress_piece_put(b, ss, 0);
        n++;
    }
    return rc == 0 ? cluster_statefile_finish(b, n) : rc;
}

int repair_regain_progress_save(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    int any = 0;
    for (size_t i = 0; i < r->rg.niv; i++)
        any |= r->rg.iv[i].settled_ms != 0;
    if (!any) return repair_regain_progress_remove(r);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    errmsg_t em = {{0}};
    int rc = write_all(r, &b);
    if (rc == 0) rc = cluster_statefile_write(r->c->data_dir, path, &b, &em);
    if (rc != 0) log_warn("repair", "%s", errmsg_text(&em, rc));
    buf_free(&b);
    return rc;
}

int repair_regain_progress_remove(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    return unlink(path) == 0 || errno == ENOENT ? 0 : ERR_IO;
}

/* The n space-separated fields of line into f (the line is cut in place);
 * ERR_CORRUPT unless it has exactly n, each one space apart. */
static int fields(char *line, char **f, int n)
{
    for (int i = 0; i < n; i++) {
        f[i] = line;
        char *sp = strchr(line, ' ');
        if ((sp == NULL) != (i == n - 1) || f[i][0] == '\0' || sp == line) return ERR_CORRUPT;
        if (sp != NULL) {
            *sp = '\0';
            line = sp + 1;
        }
    }
    return 0;
}

/* An interval "LO HI" of two fields, 16 hex digits each, LO <= HI. */
static int interval(char *lo_s, char *hi_s, uint64_t *lo, uint64_t *hi)
{
    if (strlen(lo_s) != 16 || strlen(hi_s) != 16 || cluster_statefile_hex64(lo_s, 16, lo) != 0 ||
        cluster_statefile_hex64(hi_s, 16, hi) != 0 || *lo > *hi)
        return ERR_CORRUPT;
    return 0;
}

static int take_cleared(repair_t *r, char *line)
{
    char *f[4];
    uint64_t lo, hi, settled;
    if (fields(line, f, 4) != 0 || interval(f[1], f[2], &lo, &hi) != 0 ||
        cluster_statefile_hex64(f[3], strlen(f[3]), &settled) != 0 || settled == 0 ||
        r->rg.streams.n > 0) /* pieces come after every cleared interval */
        return ERR_CORRUPT;
    int rc = GROW(r->rg.iv, r->rg.ivcap, r->rg.niv + 1, GROW_UNLIMITED);
    if (rc != 0) return rc;
    r->rg.iv[r->rg.niv++] = (repair_rg_iv_t){lo, hi, settled, settled};
    return 0;
}

static int flag(const char *s, int *out)
{
    if ((s[0] != '0' && s[0] != '1') || s[1] != '\0') return ERR_CORRUPT;
    *out = s[0] == '1';
    return 0;
}

/* A hex field of at most 32 bits. */
static int hex32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (cluster_statefile_hex64(s, strlen(s), &v) != 0 || v > UINT32_MAX) return ERR_CORRUPT;
    *out = (uint32_t)v;
    return 0;
}

/* The fields HEALS MISMATCHES CHECK_S CHECK_SRC of f into ss; a check is
 * kept only for a cursor past its windows and span trees (one not there
 * was not checked). */
static int take_check(char *const *f, repair_stream_state_t *ss)
{
    uint64_t check_s;
    uint8_t id[REPAIR_STREAM_KEY_MAX];
    size_t n = 0;
    if (hex32(f[0], &ss->heals) != 0 || hex32(f[1], &ss->mismatches) != 0 ||
        cluster_statefile_hex64(f[2], strlen(f[2]), &check_s) != 0 || check_s > INT64_MAX ||
        unhex(f[3], id, &n) != 0 || n > RING_NODE_ID_MAX || memchr(id, 0, n) != NULL)
        return ERR_CORRUPT;
    if (n == 0 || !ss->done || !ss->spans_done) return 0;
    memcpy(ss->check_src, id, n);
    ss->check_src[n] = '\0';
    ss->check_s = (int64_t)check_s;
    ss->check_kept = 1;
    return 0;
}

int repair_progress_piece_take(repair_streams_t *l, char *line, int counts)
{
    char *f[14];
    uint64_t lo, hi, windows = 0, bytes = 0;
    int done, sdone, failed;
    if (fields(line, f,
               counts == 2 ? 14
               : counts    ? 10
                           : 8) != 0 ||
        interval(f[1], f[2], &lo, &hi) != 0 || flag(f[3], &done) != 0 || flag(f[4], &sdone) != 0 ||
        flag(f[5], &failed) != 0)
        return ERR_CORRUPT;
    if (counts && (cluster_statefile_hex64(f[8], strlen(f[8]), &windows) != 0 ||
                   cluster_statefile_hex64(f[9], strlen(f[9]), &bytes) != 0))
        return ERR_CORRUPT;
    if (GROW(l->v, l->cap, l->n + 1, GROW_UNLIMITED) != 0) return ERR_NOMEM;
    repair_stream_state_t *ss = &l->v[l->n];
    memset(ss, 0, sizeof *ss);
    ss->lo = lo;
    ss->hi = hi;
    ss->done = done;
    ss->spans_done = sdone;
    ss->failed = failed;
    ss->windows = windows;
    ss->bytes = bytes;
    int rc = unhex(f[6], ss->after, &ss->after_len);
    if (rc == 0) rc = unhex(f[7], ss->spans_after, &ss->spans_after_len);
    if (rc == 0 && counts == 2) rc = take_check(f + 10, ss);
    if (rc == 0) l->n++; /* a line that does not parse adds nothing */
    return rc;
}

/* A piece's cursor. Only one inside an interval the file lists as cleared
 * (check_records): the cursor of one that is not would let the stream skip
 * what lies before it after a fresh clear. */
static int take_piece(repair_t *r, char *line)
{
    /* not repair_stream_state: its search is linear */
    return repair_progress_piece_take(&r->rg.streams, line, 0);
}

/* Largest index i with v[i].lo <= lo in v sorted by lo; -1 when none. */
static long last_at_or_before(const cluster_iv_t *v, size_t n, uint64_t lo)
{
    size_t a = 0, b = n; /* the first with v[i].lo > lo is in [a, b] */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (v[m].lo <= lo)
            a = m + 1;
        else
            b = m;
    }
    return (long)a - 1;
}

/* No cleared interval or piece twice, every piece inside a cleared
 * interval; by sorting, so a file of a million lines is checked at once. */
static int check_records(const repair_t *r)
{
    size_t ni = r->rg.niv, np = r->rg.streams.n;
    cluster_iv_t *iv = malloc((ni ? ni : 1) * sizeof *iv), *pc = malloc((np ? np : 1) * sizeof *pc);
    uint64_t *maxhi = malloc((ni ? ni : 1) * sizeof *maxhi);
    int rc = iv != NULL && pc != NULL && maxhi != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < ni; i++)
        iv[i] = (cluster_iv_t){r->rg.iv[i].lo, r->rg.iv[i].hi};
    for (size_t i = 0; rc == 0 && i < np; i++)
        pc[i] = (cluster_iv_t){r->rg.streams.v[i].lo, r->rg.streams.v[i].hi};
    if (rc == 0) rc = cluster_statefile_sort_unique(iv, ni);
    if (rc == 0) rc = cluster_statefile_sort_unique(pc, np);
    for (size_t i = 0; rc == 0 && i < ni; i++) /* the widest reach of those starting by iv[i] */
        maxhi[i] = i > 0 && maxhi[i - 1] > iv[i].hi ? maxhi[i - 1] : iv[i].hi;
    for (size_t i = 0; rc == 0 && i < np; i++) {
        long k = last_at_or_before(iv, ni, pc[i].lo);
        if (k < 0 || maxhi[k] < pc[i].hi) rc = ERR_CORRUPT;
    }
    free(iv);
    free(pc);
    free(maxhi);
    return rc;
}

static int progress_parse(repair_t *r, buf_t *b)
{
    char *p = (char *)b->data, *end = p + b->len, *line = cluster_statefile_line(&p, end);
    if (line == NULL || strcmp(line, PROGRESS_HEADER) != 0) return ERR_CORRUPT;
    size_t count = 0;
    int rc = 0;
    while (rc == 0 && (line = cluster_statefile_line(&p, end)) != NULL &&
           strncmp(line, "end ", 4) != 0) {
        rc = strncmp(line, "cleared ", 8) == 0 ? take_cleared(r, line)
             : strncmp(line, "piece ", 6) == 0 ? take_piece(r, line)
                                               : ERR_CORRUPT;
        count++;
    }
    if (rc == 0) rc = cluster_statefile_end(line, (size_t)(end - p), count);
    return rc == 0 ? check_records(r) : rc;
}

int repair_regain_progress_load(repair_t *r, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    int rc = cluster_statefile_read(path, CLUSTER_REGAIN_FILE_MAX, &b, em);
    if (rc == ERR_NOT_FOUND) return 0;
    if (rc != 0) return rc;
    rc = progress_parse(r, &b);
    buf_free(&b);
    if (rc != 0) {
        r->rg.niv = 0;
        r->rg.streams.n = 0;
        return errmsg_set(em, rc, "%s: not a regain progress file", path);
    }
    return 0;
}
