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
 * LO, HI and SETTLED_MS in hex. A cleared interval is not cleared again
 * (that would drop what was streamed and the markers that keep a window
 * from being added twice); a piece goes on after its cursor. A cursor that
 * lags (a crash after a page was stored but before the file was written)
 * walks that page again: its windows are marked and skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "node/cluster/repair_int.h"

#define PROGRESS_FILE CLUSTER_REGAIN_FILE CLUSTER_REGAIN_PROGRESS_SUFFIX
#define PROGRESS_HEADER "flamedb-regain-progress 1"
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

static int unhex(const char *s, uint8_t *out, size_t *n)
{
    size_t len = strlen(s);
    if (strcmp(s, "-") == 0) {
        *n = 0;
        return 0;
    }
    if (len % 2 != 0 || len / 2 > REPAIR_STREAM_KEY_MAX) return ERR_CORRUPT;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return ERR_CORRUPT;
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

static int write_all(const repair_t *r, FILE *f)
{
    char a[KEY_HEX], b[KEY_HEX];
    int ok = fprintf(f, "%s\n", PROGRESS_HEADER) > 0;
    for (size_t i = 0; ok && i < r->rg.niv; i++)
        if (r->rg.iv[i].settled_ms != 0)
            ok = fprintf(f, "cleared %016" PRIx64 " %016" PRIx64 " %" PRIx64 "\n", r->rg.iv[i].lo,
                         r->rg.iv[i].hi, r->rg.iv[i].settled_ms) > 0;
    for (size_t i = 0; ok && i < r->rg.streams.n; i++) {
        const repair_stream_state_t *ss = &r->rg.streams.v[i];
        if (!in_cleared(r, ss->lo, ss->hi)) continue;
        hex_of(ss->after, ss->after_len, a);
        hex_of(ss->spans_after, ss->spans_after_len, b);
        ok = fprintf(f, "piece %016" PRIx64 " %016" PRIx64 " %d %d %d %s %s\n", ss->lo, ss->hi,
                     ss->done, ss->spans_done, ss->failed, a, b) > 0;
    }
    return ok;
}

int repair_regain_progress_save(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32], tmp[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0 ||
        progress_path(r, ".tmp", tmp, sizeof tmp) != 0)
        return ERR_INVALID_ARGUMENT;
    int any = 0;
    for (size_t i = 0; i < r->rg.niv; i++)
        any |= r->rg.iv[i].settled_ms != 0;
    if (!any) return repair_regain_progress_remove(r);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return ERR_IO;
    int ok = write_all(r, f);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0 ? 0 : ERR_IO;
}

int repair_regain_progress_remove(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    return unlink(path) == 0 || errno == ENOENT ? 0 : ERR_IO;
}

static int take_cleared(repair_t *r, const char *line)
{
    uint64_t lo, hi, settled;
    char end;
    if (sscanf(line, "cleared %16" SCNx64 " %16" SCNx64 " %16" SCNx64 "%c", &lo, &hi, &settled,
               &end) != 4 ||
        end != '\n' || lo > hi || settled == 0)
        return ERR_CORRUPT;
    int rc = GROW(r->rg.iv, r->rg.ivcap, r->rg.niv + 1, GROW_UNLIMITED);
    if (rc != 0) return rc;
    r->rg.iv[r->rg.niv++] = (repair_rg_iv_t){lo, hi, settled, settled};
    return 0;
}

static int take_piece(repair_t *r, const char *line)
{
    char a[KEY_HEX], b[KEY_HEX];
    uint64_t lo, hi;
    int done, sdone, failed;
    char fmt[96];
    snprintf(fmt, sizeof fmt, "piece %%16" SCNx64 " %%16" SCNx64 " %%d %%d %%d %%%ds %%%ds",
             KEY_HEX - 1, KEY_HEX - 1);
    if (sscanf(line, fmt, &lo, &hi, &done, &sdone, &failed, a, b) != 7 || lo > hi)
        return ERR_CORRUPT;
    repair_stream_state_t *ss = repair_stream_state(&r->rg.streams, lo, hi);
    if (ss == NULL) return ERR_NOMEM;
    ss->done = done != 0;
    ss->spans_done = sdone != 0;
    ss->failed = failed != 0;
    int rc = unhex(a, ss->after, &ss->after_len);
    return rc == 0 ? unhex(b, ss->spans_after, &ss->spans_after_len) : rc;
}

int repair_regain_progress_load(repair_t *r, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (progress_path(r, "", path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    FILE *f = fopen(path, "r");
    if (f == NULL) return errno == ENOENT ? 0 : errmsg_set(em, ERR_IO, "%s: cannot read", path);
    char *line = NULL;
    size_t cap = 0;
    int rc =
        getline(&line, &cap, f) > 0 && strcmp(line, PROGRESS_HEADER "\n") == 0 ? 0 : ERR_CORRUPT;
    while (rc == 0 && getline(&line, &cap, f) > 0)
        rc = strncmp(line, "cleared ", 8) == 0 ? take_cleared(r, line)
             : strncmp(line, "piece ", 6) == 0 ? take_piece(r, line)
                                               : ERR_CORRUPT;
    free(line);
    fclose(f);
    if (rc != 0) {
        r->rg.niv = 0;
        r->rg.streams.n = 0;
        return errmsg_set(em, rc, "%s: not a regain progress file", path);
    }
    return 0;
}
