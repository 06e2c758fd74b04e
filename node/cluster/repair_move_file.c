/* repair_move_file.c — DATA_DIR/move.progress: where the streams of the
 * ranges this node gains in a join (or as a taker of a leave) stand, so a
 * restarted node goes on from their cursors instead of clearing and
 * streaming them again (repair_int.h; docs/cluster.md, "Adding a node").
 *
 * Owned by the repair thread. Lines after the header
 * "flamedb-move-progress 2":
 *   move FP        the move (repair_move_fp, hex) whose gained intervals
 *                  this node cleared: a later process of the same move
 *                  does not clear them again
 *   piece LO HI DONE SPANS_DONE FAILED AFTER SPANS_AFTER WINDOWS BYTES
 *         HEALS MISMATCHES CHECK_S CHECK_SRC
 *                  an interval's stream cursor, its heals and checks in a
 *                  row that disagreed, and the horizon and source of the
 *                  check it passed ("-": none) (repair_progress_piece_put)
 * and the last line "end LINES CHECKSUM" (cluster_statefile.c). Written
 * after the clear, at each range's end and after a page at most every
 * --stream-progress-interval (repair_pass.c). The store's
 * WAL is synced before each write of the file, so a cursor never names a
 * window the store could still lose; a cursor that lags (a crash after a
 * page was stored but before the file was written) walks that page again:
 * its windows are marked and skipped, its span trees merge by profile id.
 * A file of version 1 (pieces without the last four fields) is read as
 * one without heals or passed checks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "node/cluster/repair_int.h"

#define MOVE_HEADER "flamedb-move-progress 2"
#define MOVE_HEADER_V1 "flamedb-move-progress 1"

static int move_path(const repair_t *r, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", r->c->data_dir, CLUSTER_MOVE_PROGRESS_FILE) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

static int write_all(const repair_t *r, buf_t *b)
{
    size_t n = 1;
    int rc = buf_printf(b, "%s\nmove %" PRIx64 "\n", MOVE_HEADER, r->gains_fp);
    for (size_t i = 0; rc == 0 && i < r->streams.n; i++, n++)
        rc = repair_progress_piece_put(b, &r->streams.v[i], 2);
    return rc == 0 ? cluster_statefile_finish(b, n) : rc;
}

int repair_move_progress_save(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (move_path(r, path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    if (!r->gains_cleared) return repair_move_progress_remove(r);
    errmsg_t em = {{0}};
    int rc = storage_sync_wal(r->storage, &em);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    if (rc == 0) rc = write_all(r, &b);
    if (rc == 0) rc = cluster_statefile_write(r->c->data_dir, path, &b, &em);
    if (rc != 0) log_warn("repair", "cannot keep the move's progress: %s", errmsg_text(&em, rc));
    if (rc == 0) r->kept.saved = 1;
    buf_free(&b);
    return rc;
}

int repair_move_progress_remove(repair_t *r)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (move_path(r, path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    r->kept.saved = 0;
    return unlink(path) == 0 || errno == ENOENT ? 0 : ERR_IO;
}

static int take_move(repair_t *r, char *line)
{
    const char *hex = line + 5;
    size_t len = strlen(hex);
    if (r->kept.present || len == 0 || cluster_statefile_hex64(hex, len, &r->kept.fp) != 0)
        return ERR_CORRUPT;
    r->kept.present = 1;
    return 0;
}

/* No interval twice (a second cursor of one interval would be ambiguous). */
static int check_pieces(const repair_t *r)
{
    size_t n = r->kept.streams.n;
    cluster_iv_t *v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = (cluster_iv_t){r->kept.streams.v[i].lo, r->kept.streams.v[i].hi};
    int rc = cluster_statefile_sort_unique(v, n);
    free(v);
    return rc;
}

static int move_parse(repair_t *r, buf_t *b)
{
    char *p = (char *)b->data, *end = p + b->len, *line = cluster_statefile_line(&p, end);
    if (line == NULL) return ERR_CORRUPT;
    int counts = strcmp(line, MOVE_HEADER) == 0 ? 2 : strcmp(line, MOVE_HEADER_V1) == 0 ? 1 : 0;
    if (counts == 0) return ERR_CORRUPT;
    size_t count = 0;
    int rc = 0;
    while (rc == 0 && (line = cluster_statefile_line(&p, end)) != NULL &&
           strncmp(line, "end ", 4) != 0) {
        rc = strncmp(line, "move ", 5) == 0 && count == 0 ? take_move(r, line)
             : strncmp(line, "piece ", 6) == 0 && count > 0
                 ? repair_progress_piece_take(&r->kept.streams, line, counts)
                 : ERR_CORRUPT;
        count++;
    }
    if (rc == 0) rc = cluster_statefile_end(line, (size_t)(end - p), count);
    if (rc == 0 && !r->kept.present) rc = ERR_CORRUPT;
    return rc == 0 ? check_pieces(r) : rc;
}

int repair_move_progress_load(repair_t *r, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    r->kept.loaded = 1;
    if (move_path(r, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    int rc = cluster_statefile_read(path, CLUSTER_REGAIN_FILE_MAX, &b, em);
    if (rc == ERR_NOT_FOUND) return 0;
    if (rc != 0) return rc;
    r->kept.saved = 1; /* there is a file to remove once it is of no use */
    rc = move_parse(r, &b);
    buf_free(&b);
    if (rc != 0) {
        r->kept.present = 0;
        r->kept.streams.n = 0;
        return errmsg_set(em, rc, "%s: not a move progress file", path);
    }
    return 0;
}

const char *repair_move_check_void(repair_t *r, const cluster_view_t *v, const uint32_t *cur,
                                   uint32_t ncur, const repair_stream_state_t *ss)
{
    int k = ring_node_find(v->ring, ss->check_src), held = 0;
    for (uint32_t i = 0; k >= 0 && i < ncur; i++)
        held |= (int)cur[i] == k;
    if (!held) return "its source is no longer a current replica of it";
    if (v->marked != NULL && v->marked[k]) return "its source is listed in hints_for";
    int64_t from_s, until_s;
    repair_span(&r->o, (int64_t)(repair_now_ms(r) / 1000), &from_s, &until_s);
    if (ss->check_s > r->stream_check_s || ss->check_s < from_s)
        return "the windows after its horizon are not all compared by digest";
    return NULL;
}
