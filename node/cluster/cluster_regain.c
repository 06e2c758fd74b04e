/* cluster_regain.c — the ranges a node gains when a member is removed for
 * good (docs/cluster.md, "Removing a node").
 *
 * A removal (flamectl cluster remove: a down member marked LEFT) changes the
 * ring at once: the nodes that take over its ranges are active replicas of
 * them from that moment, holding nothing of their older data (or an old copy
 * of their own). So when a view drops a ring node whose entry is LEFT with
 * the down flag (a decommissioned node turns LEFT itself, up, after its
 * takers streamed), this node computes from the two rings what it gains,
 * writes the intervals to DATA_DIR/regain (a crash resumes them), lists
 * itself in its own hints_for (every node stops reading from it until it
 * caught up) and hands them to the repair thread, which clears and streams
 * them whole from a surviving replica (repair_regain.c). Once a complete
 * pass followed, the file goes and the node serves reads again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define REGAIN_HEADER "flamedb-regain 2"
/* The format before (no end line), still read: a node upgraded in the middle
 * of a regain resumes it. Its writer renamed a complete file into place. */
#define REGAIN_HEADER_V1 "flamedb-regain 1"

static int regain_path(const cluster_t *c, const char *suffix, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s%s", c->data_dir, CLUSTER_REGAIN_FILE, suffix) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

int cluster_intervals_append(uint64_t **los, uint64_t **his, size_t *n, size_t *cap, uint64_t lo,
                             uint64_t hi)
{
    size_t lo_cap = *cap; /* both arrays grow to the same capacity */
    int rc = GROW(*los, lo_cap, *n + 1, GROW_UNLIMITED);
    if (rc == 0) rc = GROW(*his, *cap, *n + 1, GROW_UNLIMITED);
    if (rc != 0) return rc;
    (*los)[*n] = lo;
    (*his)[(*n)++] = hi;
    return 0;
}

int cluster_regain_add(cluster_t *c, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < c->regain.n; i++)
        if (c->regain.lo[i] == lo && c->regain.hi[i] == hi) return 0;
    return cluster_intervals_append(&c->regain.lo, &c->regain.hi, &c->regain.n, &c->regain.cap, lo,
                                    hi);
}

/* DATA_DIR/regain (cluster_statefile.c's layout):
 *   flamedb-regain 2
 *   LO HI          one interval per line, 16 hex digits each, LO <= HI
 *   end COUNT CHECKSUM
 * Written atomically; removed when empty. */
int cluster_regain_save(cluster_t *c)
{
    char path[CLUSTER_SETTING_MAX + 16];
    if (regain_path(c, "", path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    if (c->regain.n == 0) return unlink(path) == 0 || errno == ENOENT ? 0 : ERR_IO;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = buf_printf(&b, "%s\n", REGAIN_HEADER);
    for (size_t i = 0; rc == 0 && i < c->regain.n; i++)
        rc = buf_printf(&b, "%016" PRIx64 " %016" PRIx64 "\n", c->regain.lo[i], c->regain.hi[i]);
    if (rc == 0) rc = cluster_statefile_finish(&b, c->regain.n);
    errmsg_t em = {{0}};
    if (rc == 0) rc = cluster_statefile_write(c->data_dir, path, &b, &em);
    if (rc != 0) log_error("cluster", "%s", errmsg_text(&em, rc));
    buf_free(&b);
    return rc;
}

/* One "LO HI" line appended to v; ERR_CORRUPT when it is not one. */
static int take_interval(cluster_iv_t **v, size_t *n, size_t *cap, const char *line)
{
    uint64_t lo, hi;
    if (strlen(line) != 33 || line[16] != ' ' || cluster_statefile_hex64(line, 16, &lo) != 0 ||
        cluster_statefile_hex64(line + 17, 16, &hi) != 0 || lo > hi)
        return ERR_CORRUPT;
    int rc = GROW(*v, *cap, *n + 1, GROW_UNLIMITED);
    if (rc == 0) (*v)[(*n)++] = (cluster_iv_t){lo, hi};
    return rc;
}

/* The parsed intervals into c->regain, in file order, once none is there
 * twice (checked by sorting a copy, not by regain_add: that is quadratic). */
static int regain_take(cluster_t *c, const cluster_iv_t *v, size_t n)
{
    cluster_iv_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (sorted == NULL) return ERR_NOMEM;
    if (n > 0) memcpy(sorted, v, n * sizeof *v); /* v is NULL when there is none */
    int rc = cluster_statefile_sort_unique(sorted, n);
    free(sorted);
    size_t cap = c->regain.cap;
    if (rc == 0) rc = GROW(c->regain.lo, cap, n, GROW_UNLIMITED);
    if (rc == 0) rc = GROW(c->regain.hi, c->regain.cap, n, GROW_UNLIMITED);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        c->regain.lo[i] = v[i].lo;
        c->regain.hi[i] = v[i].hi;
    }
    if (rc == 0) c->regain.n = n;
    return rc;
}

static int regain_parse(cluster_t *c, buf_t *b)
{
    char *p = (char *)b->data, *end = p + b->len, *line = cluster_statefile_line(&p, end);
    int v1 = line != NULL && strcmp(line, REGAIN_HEADER_V1) == 0;
    if (line == NULL || (!v1 && strcmp(line, REGAIN_HEADER) != 0)) return ERR_CORRUPT;
    cluster_iv_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        char *at = p;
        line = cluster_statefile_line(&p, end);
        if (line == NULL) { /* the data ran out; a version-1 file ends here, whole */
            if (at < end || !v1) rc = ERR_CORRUPT;
            break;
        }
        if (!v1 && strncmp(line, "end ", 4) == 0) break;
        if ((rc = take_interval(&v, &n, &cap, line)) != 0) break;
    }
    if (rc == 0 && !v1) rc = cluster_statefile_end(line, (size_t)(end - p), n);
    if (rc == 0) rc = regain_take(c, v, n);
    free(v);
    return rc;
}

/* DATA_DIR/regain at path does not parse (why, rc): what this node gained
 * is unknown and it must not serve those ranges as if streamed. While no
 * interval was cleared (no regain.progress) every copy this node holds is
 * still there, so the full repair is safe: the file is kept aside as
 * regain.damaged and the node starts marked. Once one was, a cleared
 * interval's older data would be gone from this node for good without its
 * stream (anti-entropy compares the seen span only): the start is refused. */
static int regain_damaged(cluster_t *c, const char *path, errmsg_t *why, int rc, errmsg_t *em)
{
    char progress[CLUSTER_SETTING_MAX + 32], aside[CLUSTER_SETTING_MAX + 32];
    if (regain_path(c, CLUSTER_REGAIN_PROGRESS_SUFFIX, progress, sizeof progress) != 0 ||
        regain_path(c, CLUSTER_REGAIN_DAMAGED_SUFFIX, aside, sizeof aside) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    if (access(progress, F_OK) == 0 || errno != ENOENT)
        return errmsg_set(em, rc,
                          "%s: damaged or unreadable (%.300s) while %s says intervals were "
                          "cleared already: which ones this node still has to stream in is "
                          "unknown (wipe this node and add it anew, or remove both files and "
                          "run flamectl cluster repair, knowing that data older than "
                          "--seen-retention in the cleared intervals stays missing on it)",
                          path, errmsg_text(why, rc), progress);
    if (rename(path, aside) != 0)
        return errmsg_set(em, ERR_IO, "%s: damaged (%.300s) and cannot be moved aside: %s", path,
                          errmsg_text(why, rc), strerror(errno));
    log_error("cluster",
              "%s: damaged or unreadable (%.300s), kept as %s; nothing was cleared yet, so "
              "this node falls back to a full repair",
              path, errmsg_text(why, rc), aside);
    cluster_full_begin(c, "the ranges a removal gave this node are unknown (regain damaged)");
    return 0;
}

int cluster_regain_load(cluster_t *c, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (regain_path(c, "", path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    errmsg_t why = {{0}};
    int rc = cluster_statefile_read(path, CLUSTER_REGAIN_FILE_MAX, &b, &why);
    if (rc == ERR_NOT_FOUND) { /* no regain: no progress of one either */
        if (regain_path(c, CLUSTER_REGAIN_PROGRESS_SUFFIX, path, sizeof path) != 0 ||
            (unlink(path) != 0 && errno != ENOENT))
            return errmsg_set(em, ERR_IO, "%s: cannot remove", path);
        return 0;
    }
    if (rc == ERR_OK) {
        rc = regain_parse(c, &b);
        buf_free(&b);
        if (rc != 0) errmsg_set(&why, rc, "not a list of token intervals");
    }
    if (rc != 0) {
        c->regain.n = 0;
        return regain_damaged(c, path, &why, rc, em);
    }
    if (c->regain.n > 0) {
        c->regain.gen++;
        log_info("cluster", "resuming: %zu token interval(s) gained by a removal still to stream",
                 c->regain.n);
    }
    return 0;
}

/* The regain to the repair thread, and this node into its own hints_for
 * while it has one (so nobody reads from it). */
static void regain_publish(cluster_t *c)
{
    if (c->repair != NULL)
        repair_regain_set(c->repair, c->regain.lo, c->regain.hi, c->regain.n, c->regain.gen);
    if (cluster_hints_publish(c) < 0) log_error("cluster", "cannot publish the hint targets");
}

void cluster_regain_start(cluster_t *c)
{
    if (c->regain.n > 0 || c->known.unsure) regain_publish(c);
    if (c->known.unsure) { /* the first view that can tell (alone, it is sure at once) */
        c->view_stale = 1;
        cluster_view_refresh(c);
    }
}

/* 1 when the view dropped a ring node that was removed (LEFT, down). */
static int removed_one(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now)
{
    for (uint32_t i = 0; i < ring_node_count(old->ring); i++) {
        const char *id = ring_node_name(old->ring, i);
        ring_member_t m;
        if (now->ring != NULL && ring_node_find(now->ring, id) >= 0) continue;
        if (ring_members_find(c->members, id, &m) == ERR_OK && m.life == RING_LEFT && m.down) {
            log_info("cluster", "%s was removed: streaming the ranges this node gains", id);
            return 1;
        }
    }
    return 0;
}

/* The margin a gainer's own word (its hints_for) has to arrive: twice the
 * move's settle margin, within which it cannot have finished. */
static uint64_t gainer_margin(const cluster_t *c)
{
    uint64_t settle = c->cfg.join_settle_ms != 0
                          ? c->cfg.join_settle_ms
                          : 10 * c->cfg.gossip_interval_ms + c->cfg.write_timeout_ms;
    return 2 * settle;
}

/* Every other node that gains ranges by the change: not read from until
 * it says so itself (cluster_regain_gainer). */
static void note_gainers(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now)
{
    for (uint32_t i = 0; i < ring_node_count(now->ring); i++) {
        const char *id = ring_node_name(now->ring, i);
        if (strcmp(id, cluster_self_id(c)) == 0) continue;
        ring_ranges_t gained = {0}, lost = {0};
        /* the configured RF, not the view's (capped by the node count): a
         * removal from a cluster of RF nodes or fewer gives nobody ranges */
        int rc =
            ring_node_changes(old->ring, now->ring, c->cfg.replication_factor, id, &gained, &lost);
        int gains = rc == 0 && gained.n > 0;
        ring_ranges_free(&gained);
        ring_ranges_free(&lost);
        if (gains) cluster_regain_hold(c, id);
    }
}

void cluster_regain_hold(cluster_t *c, const char *id)
{
    char *dup = strdup(id);
    if (dup == NULL || GROW(c->gainers, c->gainers_cap, c->ngainers + 1, RING_MAX_NODES) != 0) {
        free(dup);
        log_error("cluster", "cannot hold %s unread until it lists itself: out of memory", id);
        return;
    }
    c->gainers[c->ngainers].id = dup;
    c->gainers[c->ngainers++].until_ms = uv_now(c->loop) + gainer_margin(c);
    c->view_stale = 1;
}

int cluster_regain_gainer(cluster_t *c, const char *id, const ring_member_t *m)
{
    for (size_t i = 0; i < c->ngainers; i++) {
        if (strcmp(c->gainers[i].id, id) != 0) continue;
        int says = 0; /* it lists itself: its own word rules from now on */
        for (uint32_t k = 0; k < m->nhints_for; k++)
            says |= strcmp(m->hints_for[k], id) == 0;
        if (!says && m->state == RING_DOWN) { /* the margin counts only while it is up */
            c->gainers[i].until_ms = uv_now(c->loop) + gainer_margin(c);
            return 1;
        }
        if (!says && uv_now(c->loop) < c->gainers[i].until_ms) return 1;
        free(c->gainers[i].id);
        c->gainers[i--] = c->gainers[--c->ngainers];
    }
    return 0;
}

void cluster_regain_tick(cluster_t *c)
{
    if (c->known.unsure && !c->known.waited && !cluster_regain_ring_waiting(c)) {
        c->known.waited = 1; /* once: later member changes refresh the view anyway */
        c->view_stale = 1;
        cluster_view_refresh(c);
        return;
    }
    if (c->known.unsure && c->known.waited && !c->known.heard && cluster_regain_ring_heard(c)) {
        c->known.heard = 1; /* once: the first word that can tell (gone_kind) */
        c->view_stale = 1;
        cluster_view_refresh(c);
        return;
    }
    if (!c->start_wait_logged && cluster_regain_ring_waited(c)) {
        /* after the view the wait's end rebuilt: what it decided is visible */
        c->start_wait_logged = 1;
        log_info("cluster", "the start's wait for the member table is over after %llu ms%s",
                 (unsigned long long)(uv_now(c->loop) - c->started_ms),
                 c->known.unsure ? ": the ring kept from before the restart is not accounted "
                                   "for yet (not read from)"
                                 : "");
    }
    for (size_t i = 0; i < c->ngainers; i++)
        if (uv_now(c->loop) >= c->gainers[i].until_ms) { /* the view drops it */
            c->view_stale = 1;
            cluster_view_refresh(c);
            return;
        }
}

/* The last `added` intervals of the regain written to DATA_DIR/regain
 * (a fresh regain drops an old progress file first); 0 or an error
 * (logged; they are kept in memory: this process still streams them). */
static int record_gains(cluster_t *c, size_t added)
{
    int rc = 0;
    if (added > 0 && added == c->regain.n) { /* a fresh regain: no old progress */
        char path[CLUSTER_SETTING_MAX + 32];
        rc = regain_path(c, CLUSTER_REGAIN_PROGRESS_SUFFIX, path, sizeof path);
        if (rc == 0 && unlink(path) != 0 && errno != ENOENT) rc = ERR_IO;
    }
    if (rc == 0 && added > 0) rc = cluster_regain_save(c);
    if (rc != 0)
        log_error("cluster", "cannot record the token intervals to regain in %s/%s: %s",
                  c->data_dir, CLUSTER_REGAIN_FILE, err_message(rc));
    return rc;
}

/* What this node gains from ring `before` to `now`, added to the regain;
 * 0, or an error (nothing saved). *added: intervals new to the list. */
static int add_gains(cluster_t *c, const ring_t *before, const cluster_view_t *now, size_t *added)
{
    ring_ranges_t gained = {0}, lost = {0};
    /* the configured RF: with the view's, capped by the smaller ring after a
     * removal, this node "gained" ranges it already replicated, cleared its
     * copy and took a replica's, which may lack acknowledged writes */
    int rc = ring_node_changes(before, now->ring, c->cfg.replication_factor, cluster_self_id(c),
                               &gained, &lost);
    size_t n0 = c->regain.n;
    for (size_t i = 0; rc == 0 && i < gained.n; i++) {
        uint64_t lo[2], hi[2];
        int k = ring_range_intervals(gained.v[i], lo, hi);
        for (int j = 0; rc == 0 && j < k; j++) {
            log_debug("cluster", "gained [%016llx, %016llx] by the removal",
                      (unsigned long long)lo[j], (unsigned long long)hi[j]);
            rc = cluster_regain_add(c, lo[j], hi[j]);
            /* also one the mark listed already: the removal's all the same */
            if (rc == 0) rc = cluster_full_gain(c, lo[j], hi[j]);
        }
    }
    ring_ranges_free(&gained);
    ring_ranges_free(&lost);
    *added = c->regain.n - n0;
    return rc;
}

int cluster_regain_note(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now)
{
    if (now->ring == NULL || c->repair == NULL) return 0;
    cluster_regain_ring_missed(c, now->ring);
    if (old != NULL && old->ring != NULL && removed_one(c, old, now)) note_gainers(c, old, now);
    if (now->self < 0) return c->view_stale;
    ring_t *before = NULL;
    errmsg_t em = {{0}};
    int was_unsure = c->known.unsure;
    int rc = cluster_regain_ring_before(c, old, now, &before, &em);
    if (rc == 1) return c->view_stale; /* the member table is still filling */
    if (rc < 0) {
        log_error("cluster", "what a removal gained this node: %s", errmsg_text(&em, rc));
        return c->view_stale;
    }
    size_t added = 0, full = 0, waiting = 0, g0 = c->full.gained.n;
    if (before != NULL) rc = add_gains(c, before, now, &added);
    ring_free(before);
    if (rc == 0 && added > 0)
        log_info("cluster",
                 "gained %zu token interval(s) by the removal: not read from until they are "
                 "streamed in",
                 added);
    if (rc == 0 && c->full.gained.n > g0)
        cluster_full_gained(c); /* recorded before the regain file is */
    /* under a full repair mark, every interval this node replicates too */
    if (rc == 0 && c->full.on) rc = cluster_full_plan(c, now, &full, &waiting);
    added += full;
    if (rc == 0)
        rc = record_gains(c, added);
    else
        log_error("cluster", "the token intervals to regain: %s", err_message(rc));
    if (rc == 0) cluster_regain_ring_accept(c, now->ring); /* once the gains are recorded */
    if (added == 0 && !was_unsure) return c->view_stale;
    if (added > 0) c->regain.gen++;
    regain_publish(c);
    return 1;
}

int cluster_regain_record(cluster_t *c, size_t added)
{
    int rc = record_gains(c, added);
    if (added > 0) {
        c->regain.gen++;
        regain_publish(c);
    }
    return rc;
}

void cluster_regain_windows(cluster_t *c, const uint64_t *lo, const uint64_t *hi, size_t n)
{
    size_t n0 = c->regain.n;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = cluster_regain_add(c, lo[i], hi[i]);
    if (rc != 0) log_error("cluster", "window check: the intervals to stream: %s", err_message(rc));
    size_t added = c->regain.n - n0;
    if (added == 0) return;
    log_info("cluster",
             "window check: %zu token interval(s) where another replica holds more old windows: "
             "not read from until they are cleared and streamed whole from it",
             added);
    if (cluster_regain_record(c, added) != 0)
        log_error("cluster", "window check: the intervals to stream are not recorded");
    cluster_view_refresh(c);
}

void cluster_regain_drop(cluster_t *c)
{
    c->regain.n = 0;
    if (cluster_regain_save(c) != 0)
        log_error("cluster", "cannot remove %s/%s: the next start streams its intervals",
                  c->data_dir, CLUSTER_REGAIN_FILE);
    c->regain.gen++;
    regain_publish(c);
}

void cluster_regain_finished(cluster_t *c, uint64_t gen)
{
    if (gen != c->regain.gen || c->regain.n == 0) return; /* another removal meanwhile */
    log_info("cluster",
             "the %zu token interval(s) gained by a removal are streamed in: serving "
             "reads again",
             c->regain.n);
    cluster_full_streamed(c); /* before the regain file goes: a crash between streams again */
    c->regain.n = 0;
    int rc = cluster_regain_save(c);
    if (rc != 0) log_error("cluster", "cannot remove %s/%s", c->data_dir, CLUSTER_REGAIN_FILE);
    regain_publish(c);
    cluster_view_refresh(c);
}

void cluster_regain_free(cluster_t *c)
{
    free(c->regain.lo);
    free(c->regain.hi);
    for (size_t i = 0; i < c->nhint_ids; i++)
        free(c->hint_ids[i]);
    free(c->hint_ids);
    for (size_t i = 0; i < c->ngainers; i++)
        free(c->gainers[i].id);
    free(c->gainers);
}
