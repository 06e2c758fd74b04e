/* cluster_full.c — the full repair of a node that cannot tell what it
 * gained while it was down (cluster_int.h; docs/cluster.md, "When a node
 * cannot tell what it gained").
 *
 * A node that comes back knows what a removal gave it from DATA_DIR/
 * regain.ring and the LEFT tombstones of the members (cluster_regain_ring.c).
 * When that is not enough — it was down longer than --forget-left-after, a
 * node of its last ring is known to no member any more, a node joined and
 * left while it was down, or its regain files are damaged — it cannot tell
 * which ranges it holds short. Then it must not be read as complete: it
 * lists itself in its own hints_for (as while it regains), writes
 * DATA_DIR/regain.full (a restart keeps the mark) and has the repair thread
 * run anti-entropy passes over every range it replicates; a complete pass
 * that started once the settle margin passed and found nothing missing
 * lifts the mark (repair.c, full_check).
 *
 * Anti-entropy compares the seen index only: older windows of a range the
 * node gained unseen would stay missing. So the mark also treats every
 * token interval the node replicates as gained (cluster_full_plan): those
 * that another reachable replica holds go to the regain (cluster_regain.c,
 * repair_regain.c), which clears this node's copy once the settle margin
 * passed and streams the interval whole, every window, resumably; an
 * interval whose other replicas are all unreachable is not cleared (its
 * copy here may be the only one) and waits for one. The mark is lifted
 * only once every interval was handed and streamed and a pass converged.
 * Once a regain of handed intervals finished, they are kept in
 * regain.full (cluster_full_streamed), so a restart before the mark is
 * lifted hands only what they do not cover and streams nothing twice.
 *
 * When every replica of a range is marked at once, none serves a whole
 * copy and no mark can converge. A mark whose only reasons were nodes of
 * the last ring that no member knew (cluster_full_begin_unknown) is lifted
 * by evidence instead (cluster_full_evidence): once each is back in the
 * ring with the tokens this node last saw it with, the ring is the one
 * this node last accounted for, so it gained nothing meanwhile; if the
 * repair thread finds nothing of the regain cleared yet (repair_regain.c,
 * which then clears nothing until the loop answered), the copy is as it
 * was before the restart and the mark goes with its handed intervals.
 * The evidence is kept in regain.full ("unknown" lines) while it holds, so
 * a restart of the marked node keeps it.
 *
 * A mark without such evidence is lifted the same way by the operator's
 * word that the copy is whole (cluster_accept_copy, POST
 * /cluster/accept-copy): the same ask to the repair thread, refused when
 * an interval was cleared already.
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

#define FULL_HEADER "flamedb-regain-full 4"
/* The formats before, still read: version 3 (no gained lines: every
 * interval of the regain counts as a removal's), version 2 (no unknown
 * lines either) resumes the mark without evidence, version 1 (no done
 * lines either) with nothing streamed. */
#define FULL_HEADER_V3 "flamedb-regain-full 3"
#define FULL_HEADER_V2 "flamedb-regain-full 2"
#define FULL_HEADER_V1 "flamedb-regain-full 1"

static int full_path(const cluster_t *c, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", c->data_dir, CLUSTER_FULL_FILE) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

/* DATA_DIR/regain.full (cluster_statefile.c's layout):
 *   flamedb-regain-full 4
 *   since MS        wall ms the mark was set, in hex
 *   unknown ID COUNT TOKEN...   while the mark is liftable, a node of the
 *                   ring this node last saw that no member knew, with its
 *                   tokens (as in regain.ring): the mark's evidence
 *   gained LO HI    an interval a removal gave this node, not streamed in
 *                   yet (16 hex digits each, LO <= HI): the operator's word
 *                   is refused while there is one
 *   done LO HI      an interval of this mark streamed and verified (16 hex
 *                   digits each, LO <= HI): not handed again
 *   end COUNT CHECKSUM     COUNT: 1 + the unknown, gained and done lines
 * Present while the mark is. */
static int full_save(cluster_t *c)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (full_path(c, path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    if (!c->full.on) return unlink(path) == 0 || errno == ENOENT ? 0 : ERR_IO;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = buf_printf(&b, "%s\nsince %llx\n", FULL_HEADER, (unsigned long long)c->full.since_ms);
    size_t unknown = c->full.liftable ? c->full.unknown.n : 0;
    for (size_t i = 0; rc == 0 && i < unknown; i++) {
        rc = buf_append_str(&b, "unknown ");
        if (rc == 0) rc = cluster_known_print(&b, &c->full.unknown.v[i]);
        if (rc == 0) rc = buf_append_byte(&b, '\n');
    }
    for (size_t i = 0; rc == 0 && i < c->full.gained.n; i++)
        rc = buf_printf(&b, "gained %016" PRIx64 " %016" PRIx64 "\n", c->full.gained.lo[i],
                        c->full.gained.hi[i]);
    for (size_t i = 0; rc == 0 && i < c->full.done; i++)
        rc = buf_printf(&b, "done %016" PRIx64 " %016" PRIx64 "\n", c->full.lo[i], c->full.hi[i]);
    if (rc == 0) rc = cluster_statefile_finish(&b, 1 + unknown + c->full.gained.n + c->full.done);
    errmsg_t em = {{0}};
    if (rc == 0) rc = cluster_statefile_write(c->data_dir, path, &b, &em);
    if (rc != 0) log_error("cluster", "%s", errmsg_text(&em, rc));
    buf_free(&b);
    return rc;
}

/* The interval of a "WORD LO HI" line (WORD given, with its space);
 * ERR_CORRUPT when it is not one. */
static int take_iv(const char *line, const char *word, uint64_t *lo, uint64_t *hi)
{
    size_t w = strlen(word);
    if (strlen(line) != w + 33 || strncmp(line, word, w) != 0 || line[w + 16] != ' ' ||
        cluster_statefile_hex64(line + w, 16, lo) != 0 ||
        cluster_statefile_hex64(line + w + 17, 16, hi) != 0 || *lo > *hi)
        return ERR_CORRUPT;
    return 0;
}

/* No interval of the n in (lo, hi) twice (no writer writes one twice),
 * checked by sorting a copy. */
static int check_unique(const uint64_t *lo, const uint64_t *hi, size_t n)
{
    cluster_iv_t *v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = (cluster_iv_t){lo[i], hi[i]};
    int rc = cluster_statefile_sort_unique(v, n);
    free(v);
    return rc;
}

/* One record line of a file of version `version`. */
static int take_line(cluster_t *c, int version, char *line)
{
    uint64_t lo, hi;
    if (version >= 3 && strncmp(line, "unknown ", 8) == 0)
        return cluster_known_parse(&c->full.unknown, line + 8);
    if (version >= 4 && strncmp(line, "gained ", 7) == 0)
        return take_iv(line, "gained ", &lo, &hi) != 0
                   ? ERR_CORRUPT
                   : cluster_intervals_append(&c->full.gained.lo, &c->full.gained.hi,
                                              &c->full.gained.n, &c->full.gained.cap, lo, hi);
    if (version < 2 || take_iv(line, "done ", &lo, &hi) != 0) return ERR_CORRUPT;
    return cluster_intervals_append(&c->full.lo, &c->full.hi, &c->full.n, &c->full.cap, lo, hi);
}

/* The file's since, evidence and done intervals into c (c->full.n, done
 * and the evidence stay empty unless the whole file parses). */
static int full_parse(cluster_t *c, buf_t *b, unsigned long long *since)
{
    char *p = (char *)b->data, *end = p + b->len, *line = cluster_statefile_line(&p, end);
    int version = line == NULL                        ? 0
                  : strcmp(line, FULL_HEADER) == 0    ? 4
                  : strcmp(line, FULL_HEADER_V3) == 0 ? 3
                  : strcmp(line, FULL_HEADER_V2) == 0 ? 2
                  : strcmp(line, FULL_HEADER_V1) == 0 ? 1
                                                      : 0;
    if (version == 0) return ERR_CORRUPT;
    char *rec = cluster_statefile_line(&p, end);
    if (rec == NULL || sscanf(rec, "since %llx", since) != 1) return ERR_CORRUPT;
    int rc = 0;
    while (rc == 0 && (line = cluster_statefile_line(&p, end)) != NULL &&
           strncmp(line, "end ", 4) != 0)
        rc = take_line(c, version, line);
    if (rc == 0)
        rc = cluster_statefile_end(line, (size_t)(end - p),
                                   1 + c->full.unknown.n + c->full.gained.n + c->full.n);
    if (rc == 0) rc = check_unique(c->full.lo, c->full.hi, c->full.n);
    if (rc == 0) rc = check_unique(c->full.gained.lo, c->full.gained.hi, c->full.gained.n);
    c->full.done = rc == 0 ? c->full.n : 0;
    c->full.n = c->full.done;
    if (rc != 0) cluster_known_clear(&c->full.unknown);
    if (rc != 0) c->full.gained.n = 0;
    /* a file that does not list the removal's gains cannot tell them from
     * the mark's own intervals: every one of the regain counts */
    c->full.gained_all = rc != 0 || version < 4;
    /* no writer lists both, but what a removal gave is never shown away */
    c->full.liftable = c->full.unknown.n > 0 && c->full.gained.n == 0;
    return rc;
}

int cluster_full_load(cluster_t *c, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (full_path(c, path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    if (access(path, F_OK) != 0 && errno == ENOENT) return 0;
    /* present: the mark stands whatever the content says (a damaged file
     * is no reason to read this node as complete; what it says was
     * streamed is streamed again) */
    buf_t b;
    errmsg_t why = {{0}};
    int rc = cluster_statefile_read(path, CLUSTER_REGAIN_FILE_MAX, &b, &why);
    unsigned long long since = 0;
    if (rc == 0) {
        rc = full_parse(c, &b, &since);
        buf_free(&b);
        if (rc != 0) errmsg_set(&why, rc, "not a full repair mark");
    }
    if (rc != 0) {
        c->full.gained_all = 1; /* which intervals a removal gave is unknown */
        log_warn(
            "cluster",
            "%s: damaged (%s); the full repair it marks still runs, every interval streamed afresh",
            path, errmsg_text(&why, rc));
    }
    c->full.on = 1;
    c->full.gen++;
    c->full.since_ms = since != 0 ? since : cluster_unix_ms(c);
    log_warn("cluster",
             "resuming the full repair of every range this node replicates (%s): not read "
             "from until an anti-entropy pass converges%s; %zu token interval(s) streamed "
             "already are not streamed again; %zu a removal gave it are still to stream in",
             path,
             c->full.liftable ? " or the nodes it could not account for are back as they were" : "",
             c->full.done, c->full.gained.n);
    return 0;
}

/* To the repair thread: the mark, and which intervals of its regain a
 * removal gave (never united by id: this node's copy of them is none). */
static void full_union_publish(cluster_t *c)
{
    if (c->repair == NULL) return;
    if (repair_full_union_set(c->repair, c->full.on, c->full.gained.lo, c->full.gained.hi,
                              c->full.gained.n, c->full.gained_all) != 0)
        log_error("cluster", "no memory for a removal's intervals: none is united by id");
}

void cluster_full_streamed(cluster_t *c)
{
    if (!c->full.on || (c->full.done == c->full.n && c->full.gained.n == 0 && !c->full.gained_all))
        return;
    size_t was = c->full.done;
    c->full.done = c->full.n;
    c->full.gained.n = 0; /* every interval the regain listed is streamed in */
    c->full.gained_all = 0;
    full_union_publish(c);
    if (full_save(c) != 0) {
        log_error("cluster",
                  "cannot record the streamed intervals in %s/%s: a restart before the mark is "
                  "lifted streams them again",
                  c->data_dir, CLUSTER_FULL_FILE);
        return;
    }
    log_info("cluster",
             "full repair: %zu token interval(s) streamed and verified, recorded in %s (%zu in "
             "all): a restart does not stream them again",
             c->full.n - was, CLUSTER_FULL_FILE, c->full.n);
}

/* The mark to the repair thread and into this node's hints_for. */
static void full_publish(cluster_t *c)
{
    if (c->repair != NULL) repair_full_set(c->repair, c->full.on ? c->full.gen : 0);
    full_union_publish(c);
    if (c->members != NULL && cluster_hints_publish(c) < 0) /* none before the table is made */
        log_error("cluster", "cannot publish the hint targets");
}

/* The regain's intervals as the removal's gains (those listed already
 * are kept); 0 or ERR_NOMEM. */
static int gained_from_regain(cluster_t *c)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->regain.n; i++)
        rc = cluster_full_gain(c, c->regain.lo[i], c->regain.hi[i]);
    return rc;
}

void cluster_full_start(cluster_t *c)
{
    if (!c->full.on) return;
    if (c->full.gained_all) { /* the file did not say which were a removal's */
        size_t n = c->full.gained.n;
        int rc = gained_from_regain(c);
        if (rc == 0) c->full.gained_all = 0;
        if (rc == 0 && c->full.gained.n > n) c->full.liftable = 0;
        /* rewritten in this version either way, so a later start knows */
        if (rc == 0 && full_save(c) == 0 && c->full.gained.n > n)
            log_info("cluster",
                     "full repair: %s/%s does not say which regain intervals a removal gave "
                     "this node: all %zu count as such until they are streamed in",
                     c->data_dir, CLUSTER_FULL_FILE, c->full.gained.n);
    }
    full_publish(c);
}

/* A copy of x in the mark's evidence (once per id); 0 or ERR_NOMEM. */
static int unknown_add(cluster_t *c, const cluster_known_node_t *x)
{
    for (size_t i = 0; i < c->full.unknown.n; i++)
        if (strcmp(c->full.unknown.v[i].id, x->id) == 0) return 0;
    return cluster_known_add(&c->full.unknown, x->id, x->tokens, x->ntokens);
}

/* Sets the mark (why, logged) unless it is on; 1 when it was set now. */
static int full_mark(cluster_t *c, const char *why)
{
    if (c->full.on) return 0; /* no word is pending: each way off a mark answers it */
    c->full.on = 1;
    c->full.gen++;
    c->full.since_ms = cluster_unix_ms(c);
    c->full.n = c->full.done = 0; /* a new mark hands every interval */
    c->full.gained.n = 0;
    c->full.gained_all = 0;
    cluster_known_clear(&c->full.unknown);
    c->full.liftable = 0;
    /* all the regain's are a removal's: no mark was on; on a failure every
     * interval of the regain counts as one (as for a file that lists none) */
    if (gained_from_regain(c) != 0) c->full.gained_all = 1;
    if (full_save(c) != 0)
        log_error("cluster",
                  "cannot write %s/%s: a restart before the full repair converged "
                  "does not resume it (run flamectl cluster repair then)",
                  c->data_dir, CLUSTER_FULL_FILE);
    log_warn("cluster",
             "%s: this node cannot tell which ranges it holds short, so it is not read from and "
             "repairs every range it replicates from the other replicas (anti-entropy passes "
             "until one converges; nothing to do, flamectl cluster repair only hurries it)",
             why);
    full_publish(c);
    c->view_stale = 1;
    return 1;
}

void cluster_full_no_lift(cluster_t *c)
{
    if (!c->full.liftable) return;
    c->full.liftable = 0;
    if (full_save(c) != 0) /* a restart may lift it by evidence that no longer holds */
        log_error("cluster", "cannot rewrite %s/%s without the mark's evidence: %s", c->data_dir,
                  CLUSTER_FULL_FILE, "the next start may lift it when the unknown nodes return");
}

int cluster_full_gain(cluster_t *c, uint64_t lo, uint64_t hi)
{
    if (!c->full.on) return 0;
    for (size_t i = 0; i < c->full.gained.n; i++) /* a few per removal: a scan will do */
        if (c->full.gained.lo[i] == lo && c->full.gained.hi[i] == hi) return 0;
    int rc = cluster_intervals_append(&c->full.gained.lo, &c->full.gained.hi, &c->full.gained.n,
                                      &c->full.gained.cap, lo, hi);
    if (rc != 0) c->full.gained_all = 1; /* not listed: every interval counts as one */
    full_union_publish(c);               /* a removal's: streamed whole, never united */
    return rc;
}

void cluster_full_gained(cluster_t *c)
{
    if (!c->full.on) return;
    c->full.liftable = 0; /* its evidence says nothing of what a removal gave */
    if (full_save(c) != 0)
        log_error("cluster",
                  "cannot record the intervals a removal gave this node in %s/%s: after a restart "
                  "the operator's word is not refused for them",
                  c->data_dir, CLUSTER_FULL_FILE);
}

void cluster_full_begin(cluster_t *c, const char *why)
{
    full_mark(c, why);
    cluster_full_no_lift(c); /* no evidence can show this reason away */
}

void cluster_full_begin_unknown(cluster_t *c, const char *why, const cluster_known_node_t *x)
{
    /* a mark with a removal's regain pending lifts only by a converging pass */
    if (full_mark(c, why)) c->full.liftable = c->regain.n == 0;
    if (!c->full.liftable) return;
    size_t n = c->full.unknown.n;
    if (unknown_add(c, x) != 0) {
        cluster_full_no_lift(c);
    } else if (c->full.unknown.n > n && full_save(c) != 0) {
        log_error("cluster", "cannot record the mark's evidence in %s/%s: %s", c->data_dir,
                  CLUSTER_FULL_FILE, "a restart keeps the mark until its repair converged");
    }
}

/* Whether x is an active member, up, in ring r with exactly the tokens this
 * node last saw it with (up: its own heartbeats, not an entry a stale
 * member relays for a node long gone). */
static int back_as_it_was(const cluster_t *c, const ring_t *r, const cluster_known_node_t *x)
{
    ring_member_t m;
    return ring_node_find(r, x->id) >= 0 && ring_members_find(c->members, x->id, &m) == ERR_OK &&
           m.life == RING_ACTIVE && m.state == RING_ACTIVE && !m.down && m.ntokens == x->ntokens &&
           memcmp(m.tokens, x->tokens, x->ntokens * sizeof *x->tokens) == 0;
}

void cluster_full_evidence(cluster_t *c, const cluster_view_t *v)
{
    if (!c->full.on || !c->full.liftable || c->full.unknown.n == 0 ||
        c->full.lift_asked == c->full.gen || c->repair == NULL || v->ring == NULL)
        return;
    for (size_t i = 0; i < c->full.unknown.n; i++)
        if (!back_as_it_was(c, v->ring, &c->full.unknown.v[i])) return;
    c->full.lift_asked = c->full.gen;
    log_info("cluster",
             "full repair: %s%s is back in the ring with the tokens this node last saw it with: "
             "this node gained nothing while it could not account for it; lifting the mark "
             "unless its repair cleared an interval already",
             c->full.unknown.v[0].id,
             c->full.unknown.n > 1 ? " (and every other unknown node)" : "");
    repair_full_lift_ask(c->repair, c->full.gen);
}

void cluster_full_accept_answer(cluster_t *c, int rc, const errmsg_t *em)
{
    cluster_accept_fn done = c->full.accept.done;
    if (done == NULL) return;
    c->full.accept.done = NULL;
    if (rc == 0) {
        c->full.accept.accepted++;
    } else {
        c->full.accept.refused++;
        log_warn("cluster",
                 "full repair: the operator's word that this node's copy is whole "
                 "is refused: %s",
                 errmsg_text(em, rc));
    }
    done(c->full.accept.arg, rc, em);
}

int cluster_accept_copy(cluster_t *c, const char *node_id, cluster_accept_fn done, void *arg,
                        errmsg_t *em)
{
    if (ring_node_id_check(node_id, em) != 0) return ERR_INVALID_ARGUMENT;
    if (strcmp(node_id, cluster_self_id(c)) != 0) {
        ring_member_t m;
        if (ring_members_find(c->members, node_id, &m) != ERR_OK)
            return errmsg_set(em, ERR_NOT_FOUND, "node '%s' is not a member", node_id);
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "accept-copy is asked of the node whose copy is whole: POST to %s "
                          "(flamectl cluster accept-copy does)",
                          m.http_addr);
    }
    if (!c->full.on)
        return errmsg_set(em, ERR_CONFLICT,
                          "this node is not in a full repair: there is no mark to lift");
    if (c->full.accept.done != NULL)
        return errmsg_set(em, ERR_CONFLICT, "the operator's word for this mark is pending already");
    if (c->full.gained.n > 0 || (c->full.gained_all && c->regain.n > 0)) {
        c->full.accept.refused++;
        log_warn("cluster", "full repair: the operator's word that this node's copy is whole "
                            "is refused: a removal's gains are not streamed in yet");
        return errmsg_set(em, ERR_CONFLICT,
                          "a removal gave this node token intervals it has not streamed in yet "
                          "(logged 'gained N token interval(s) by the removal'): its copy is not "
                          "whole; the mark stays until its stream and a pass converged");
    }
    if (c->repair == NULL || c->closing || c->full.accept.off)
        return errmsg_set(em, ERR_UNAVAILABLE, "the node is stopping");
    c->full.accept.gen = c->full.gen;
    c->full.accept.done = done;
    c->full.accept.arg = arg;
    log_warn("cluster",
             "full repair: the operator says this node's copy is whole (POST "
             "/cluster/accept-copy): lifting the mark unless its repair cleared an interval "
             "already");
    repair_full_lift_ask(c->repair, c->full.gen);
    return 0;
}

/* The mark and its regain intervals go (the thread granted the lift, for
 * the evidence or for the operator's word). */
static int full_drop(cluster_t *c, int by_word)
{
    uint64_t took = cluster_unix_ms(c) - c->full.since_ms;
    c->full.on = c->full.liftable = 0;
    c->full.n = c->full.done = 0;
    c->full.gained.n = 0; /* none: the word is refused with any */
    c->full.gained_all = 0;
    cluster_known_clear(&c->full.unknown);
    int rc = full_save(c);
    if (rc != 0)
        log_error("cluster", "cannot remove %s/%s: the next start repairs everything again",
                  c->data_dir, CLUSTER_FULL_FILE);
    log_info("cluster",
             "the full repair is lifted %llu ms after it began: %s and nothing of "
             "this node's copy was cleared, so its copy is whole (as after an "
             "ordinary restart): serving reads again",
             (unsigned long long)took,
             by_word ? "the operator said its copy is whole"
                     : "the nodes it could not account for are back as they were");
    cluster_regain_drop(c); /* every interval of the regain was the mark's */
    repair_full_lift_release(c->repair);
    full_publish(c);
    cluster_view_refresh(c);
    return rc;
}

void cluster_full_lift(cluster_t *c, uint64_t gen, int granted)
{
    int mine = c->full.on && c->full.gen == gen;
    int word = mine && c->full.accept.done != NULL && c->full.accept.gen == gen;
    errmsg_t em = {{0}};
    if (!granted && mine)
        log_info("cluster", "full repair: an interval was cleared already (a whole copy serves "
                            "it): the mark stays until its stream and a pass converged");
    if (!granted || !mine || !(c->full.liftable || word)) {
        if (granted) repair_full_lift_release(c->repair);
        if (word) {
            errmsg_set(&em, ERR_CONFLICT,
                       "this node's repair cleared an interval already (DATA_DIR/"
                       "regain.progress): its copy is not whole; the mark stays until its "
                       "stream and a pass converged (pick another node)");
            cluster_full_accept_answer(c, ERR_CONFLICT, &em);
        }
        return;
    }
    int rc = full_drop(c, word);
    if (word) {
        if (rc != 0)
            errmsg_set(&em, rc,
                       "the mark is lifted, but %s/%s could not be removed: the next "
                       "start repairs everything again",
                       c->data_dir, CLUSTER_FULL_FILE);
        cluster_full_accept_answer(c, rc, &em);
    }
}

static int full_handed(cluster_t *c, uint64_t lo, uint64_t hi)
{
    return cluster_intervals_append(&c->full.lo, &c->full.hi, &c->full.n, &c->full.cap, lo, hi);
}

/* Range j of v's ring: 1 when this node replicates it and another replica
 * is reachable, 0 when none other is, -1 when it has no other replica or
 * is not this node's. */
static int range_source(const cluster_view_t *v, uint32_t j)
{
    uint32_t reps[RING_MAX_RF],
        n = ring_replicas(v->ring, ring_range_at(v->ring, j).end, v->rf, reps);
    int mine = 0, others = 0, reachable = 0;
    for (uint32_t k = 0; k < n; k++) {
        int self = (int)reps[k] == v->self;
        mine |= self;
        others += !self;
        reachable |= !self && v->reachable[reps[k]];
    }
    return !mine || others == 0 ? -1 : reachable;
}

/* Sets the plan works with (plan_gap). */
typedef struct plan_sets {
    cluster_ivset_t handed; /* this mark's intervals handed before the plan */
    cluster_ivset_t listed; /* the regain's intervals before the plan */
    cluster_ivset_t gaps;   /* of one range interval, not handed */
    cluster_ivset_t rest;   /* of one gap, not listed */
    cluster_ivset_t inside; /* of one gap, listed */
} plan_sets_t;

/* Gap g of a range this node replicates, not handed yet: its parts a
 * regain lists already are left to that regain; the rest is added to the
 * regain when a replica is reachable (src), else it waits. Each part goes
 * on its own: a regain interval that covers only some of a range does not
 * keep the rest of it from being streamed. */
static int plan_gap(cluster_t *c, plan_sets_t *p, cluster_iv_t g, int src, size_t *waiting)
{
    int rc = cluster_ivset_minus(&p->listed, g.lo, g.hi, &p->rest);
    if (rc != 0) return rc;
    if (p->rest.n > 0 && !src) { /* only the listed parts are handed */
        (*waiting)++;
        rc = cluster_ivset_minus(&p->rest, g.lo, g.hi, &p->inside);
        for (size_t i = 0; rc == 0 && i < p->inside.n; i++)
            rc = full_handed(c, p->inside.v[i].lo, p->inside.v[i].hi);
        return rc;
    }
    rc = full_handed(c, g.lo, g.hi);
    for (size_t i = 0; rc == 0 && i < p->rest.n; i++)
        rc = cluster_regain_add(c, p->rest.v[i].lo, p->rest.v[i].hi);
    return rc;
}

int cluster_full_plan(cluster_t *c, const cluster_view_t *v, size_t *added, size_t *waiting)
{
    *added = *waiting = 0;
    if (!c->full.on || v->ring == NULL || v->self < 0) return 0;
    size_t n0 = c->regain.n;
    plan_sets_t p = {{0}};
    /* what the plan adds lies in the range interval it is at: the ranges
     * are disjoint, so the sets taken before stay right for the others */
    int rc = cluster_ivset_build(c->full.lo, c->full.hi, c->full.n, &p.handed);
    if (rc == 0) rc = cluster_ivset_build(c->regain.lo, c->regain.hi, c->regain.n, &p.listed);
    for (uint32_t j = 0; rc == 0 && j < ring_range_count(v->ring); j++) {
        int src = range_source(v, j);
        uint64_t lo[2], hi[2];
        int k = src < 0 ? 0 : ring_range_intervals(ring_range_at(v->ring, j), lo, hi);
        for (int q = 0; rc == 0 && q < k; q++) {
            rc = cluster_ivset_minus(&p.handed, lo[q], hi[q], &p.gaps);
            for (size_t i = 0; rc == 0 && i < p.gaps.n; i++)
                rc = plan_gap(c, &p, p.gaps.v[i], src, waiting);
        }
    }
    cluster_ivset_free(&p.handed);
    cluster_ivset_free(&p.listed);
    cluster_ivset_free(&p.gaps);
    cluster_ivset_free(&p.rest);
    cluster_ivset_free(&p.inside);
    *added = c->regain.n - n0;
    if (*added > 0)
        log_info("cluster",
                 "full repair: %zu token interval(s) this node replicates to clear and stream "
                 "whole from another replica (every window)%s",
                 *added, *waiting > 0 ? "; more wait for a reachable replica" : "");
    return rc;
}

void cluster_full_free(cluster_t *c)
{
    free(c->full.lo);
    free(c->full.hi);
    free(c->full.gained.lo);
    free(c->full.gained.hi);
    cluster_known_clear(&c->full.unknown);
    free(c->full.unknown.v);
}

/* 1 when the regain of this mark is not done: an interval to stream, or
 * one not handed yet (handed now when a replica is reachable). */
static int full_regaining(cluster_t *c)
{
    size_t added = 0, waiting = 0;
    int rc = c->view != NULL ? cluster_full_plan(c, &c->view->pub, &added, &waiting) : 0;
    if (rc != 0) log_error("cluster", "full repair: the intervals to stream: %s", err_message(rc));
    if (rc == 0 && added > 0 && cluster_regain_record(c, added) != 0)
        log_error("cluster", "full repair: the intervals to stream are not recorded");
    if (rc == 0 && waiting == 0 && c->regain.n == 0) return 0;
    log_info("cluster",
             "full repair: a pass converged, but %zu token interval(s) are still to stream "
             "and %zu wait for a reachable replica: the mark stays",
             c->regain.n, waiting);
    return 1;
}

void cluster_full_finished(cluster_t *c, uint64_t gen)
{
    if (!c->full.on || gen != c->full.gen) return;
    if (ring_members_count(c->members) < 2 || full_regaining(c)) { /* go on */
        full_publish(c);
        return;
    }
    uint64_t took = cluster_unix_ms(c) - c->full.since_ms;
    c->full.on = 0;
    c->full.n = c->full.done = 0; /* a later mark hands every interval again */
    c->full.gained.n = 0;
    c->full.gained_all = 0;
    c->full.liftable = 0;
    cluster_known_clear(&c->full.unknown);
    if (full_save(c) != 0)
        log_error("cluster", "cannot remove %s/%s: the next start repairs everything again",
                  c->data_dir, CLUSTER_FULL_FILE);
    log_info("cluster",
             "the full repair converged %llu ms after it began: every range this node "
             "replicates matches its other replicas, serving reads again",
             (unsigned long long)took);
    if (c->repair != NULL) /* every range streamed whole since the mark: said with each pass */
        repair_whole_set(c->repair, c->full.since_ms);
    errmsg_t em;
    errmsg_set(&em, ERR_CONFLICT, "a repair pass converged meanwhile: the mark is lifted");
    cluster_full_accept_answer(c, ERR_CONFLICT, &em);
    full_publish(c);
    cluster_view_refresh(c);
}

/* Whether [lo, hi] overlaps an interval of c's regain list. */
static int regain_overlaps(const cluster_t *c, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < c->regain.n; i++)
        if (c->regain.lo[i] <= hi && lo <= c->regain.hi[i]) return 1;
    return 0;
}

const char *cluster_copy_untrusted(const cluster_t *c, uint64_t lo, uint64_t hi, int use)
{
    if (c->full.on) return "this node is in a full repair: its copy of every range may be short";
    if (c->joining) return "this node is joining: it streams its ranges in";
    if (c->known.unsure) return "this node has not accounted for its ring since it restarted";
    if (use != CLUSTER_COPY_COMPARED && regain_overlaps(c, lo, hi))
        return "this node regains the interval (cleared or about to be, and streamed again)";
    if (use == CLUSTER_COPY_SOURCE && c->voided.on)
        return "a mark of writes this node missed went with a member that left: its copy may "
               "be short until its window check compared it";
    return NULL;
}
