/* cluster_regain_ring.c — the ring a node last accounted for, so that a
 * node that was down while a member was removed learns what it gained when
 * it comes back (cluster_int.h; docs/cluster.md, "Removing a node").
 *
 * DATA_DIR/regain.ring holds the nodes of the last ring this node saw
 * itself in, with their tokens: the header "flamedb-regain-ring 2", one line
 * per node (its id, its token count in decimal, its tokens in hex), then
 * "end NODES CHECKSUM" (cluster_statefile.c). It is rewritten (temporary name,
 * fsync, rename) whenever that ring changes, after what the change gained
 * was recorded in DATA_DIR/regain. A restarted node reads it and, until it
 * has accounted for every node of it, lists itself in its own hints_for
 * (not read from: it may have gained ranges). A node of it that the current
 * ring lacks is accounted for when its member entry is LEFT, or, once the
 * wait of a start (--failure-timeout + 10 gossip intervals) passed, when no
 * member knows it (its tombstone was forgotten, or the others are not up
 * yet: such a node is not counted as removed, and this node cannot tell
 * what it gained: it runs a full repair, cluster_full.c); LEFT ones that this process
 * did not see leave up (a decommission) count as removed: what the node
 * gained by them is computed from the rings before (the file's nodes and
 * the current ones) and after (the current ring), as for a removal seen
 * live.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "node/cluster/cluster_int.h"

#define KNOWN_HEADER "flamedb-regain-ring 2"

static int known_path(const cluster_t *c, const char *suffix, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s%s", c->data_dir, CLUSTER_REGAIN_RING_FILE, suffix) < (int)n
               ? 0
               : ERR_INVALID_ARGUMENT;
}

static void known_clear(cluster_known_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->v[i].id);
        free(k->v[i].tokens);
    }
    k->n = 0;
}

/* known_clear, and the array given back (k holds no room after). */
static void known_release(cluster_known_t *k)
{
    known_clear(k);
    free(k->v);
    k->v = NULL;
    k->cap = 0;
}

void cluster_regain_ring_free(cluster_t *c)
{
    known_release(&c->known);
    known_release(&c->full.watched);
}

void cluster_known_clear(cluster_known_t *k)
{
    known_clear(k);
}

static int known_add(cluster_known_t *k, const char *id, const uint64_t *tokens, uint32_t n)
{
    if (GROW(k->v, k->cap, k->n + 1, RING_MAX_NODES) != 0) return ERR_NOMEM;
    cluster_known_node_t *x = &k->v[k->n];
    x->id = strdup(id);
    x->tokens = malloc((n ? n : 1) * sizeof *x->tokens);
    if (x->id == NULL || x->tokens == NULL) {
        free(x->id);
        free(x->tokens);
        return ERR_NOMEM;
    }
    memcpy(x->tokens, tokens, n * sizeof *tokens);
    x->ntokens = n;
    k->n++;
    return 0;
}

static int known_find(const cluster_known_t *k, const char *id)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i].id, id) == 0) return (int)i;
    return -1;
}

/* A decimal count of 1 to RING_MAX_TOKENS; 0 when s is not one. */
static uint32_t parse_count(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 5 || s[0] == '0') return 0;
    uint32_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        n = n * 10 + (uint32_t)(s[i] - '0');
    }
    return n <= RING_MAX_TOKENS ? n : 0;
}

/* One line: id, count, tokens; 0 or ERR_CORRUPT. The count is checked
 * against its bound before anything is allocated for it. */
static int parse_node(cluster_known_t *k, char *line)
{
    char *save = NULL, *id = strtok_r(line, " ", &save), *cnt = strtok_r(NULL, " ", &save);
    uint32_t n = cnt != NULL ? parse_count(cnt) : 0;
    if (id == NULL || ring_node_id_check(id, NULL) < 0 || n == 0 || known_find(k, id) >= 0)
        return ERR_CORRUPT;
    uint64_t *t = malloc(n * sizeof *t);
    if (t == NULL) return ERR_NOMEM;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        char *tok = strtok_r(NULL, " ", &save);
        if (tok == NULL || cluster_statefile_hex64(tok, strlen(tok), &t[i]) != 0) rc = ERR_CORRUPT;
    }
    if (rc == 0 && strtok_r(NULL, " ", &save) != NULL) rc = ERR_CORRUPT;
    if (rc == 0) rc = known_add(k, id, t, n);
    free(t);
    return rc;
}

int cluster_known_add(cluster_known_t *k, const char *id, const uint64_t *tokens, uint32_t n)
{
    return known_add(k, id, tokens, n);
}

int cluster_known_parse(cluster_known_t *k, char *line)
{
    return parse_node(k, line);
}

int cluster_known_print(buf_t *b, const cluster_known_node_t *x)
{
    int rc = buf_printf(b, "%s %u", x->id, x->ntokens);
    for (uint32_t j = 0; rc == 0 && j < x->ntokens; j++)
        rc = buf_printf(b, " %" PRIx64, x->tokens[j]);
    return rc;
}

/* Whether k lists this node with the tokens of its identity (they never
 * change): a file that does not was not written by it for this data dir,
 * and a ring before without this node would make it clear and stream all
 * it holds. */
static int lists_self(const cluster_known_t *k, const ring_identity_t *self)
{
    int i = known_find(k, self->node_id);
    if (i < 0 || k->v[i].ntokens != self->ntokens) return 0;
    for (uint32_t j = 0; j < self->ntokens; j++) {
        int found = 0;
        for (uint32_t q = 0; !found && q < self->ntokens; q++)
            found = k->v[i].tokens[j] == self->tokens[q];
        if (!found) return 0;
    }
    return 1;
}

static void check_downtime(cluster_t *c, const char *path);
static int waited_enough(const cluster_t *c);

static int known_parse(cluster_known_t *k, buf_t *b)
{
    char *p = (char *)b->data, *end = p + b->len, *line = cluster_statefile_line(&p, end);
    if (line == NULL || strcmp(line, KNOWN_HEADER) != 0) return ERR_CORRUPT;
    int rc = 0;
    while (rc == 0 && (line = cluster_statefile_line(&p, end)) != NULL &&
           strncmp(line, "end ", 4) != 0)
        rc = parse_node(k, line);
    return rc != 0 ? rc : cluster_statefile_end(line, (size_t)(end - p), k->n);
}

int cluster_regain_ring_load(cluster_t *c, errmsg_t *em)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (known_path(c, "", path, sizeof path) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "data dir path too long");
    buf_t b;
    errmsg_t rem = {{0}};
    int rc = cluster_statefile_read(path, CLUSTER_REGAIN_RING_MAX, &b, &rem);
    if (rc == ERR_NOT_FOUND) return 0;
    if (rc == ERR_OK) {
        rc = known_parse(&c->known, &b);
        buf_free(&b);
        if (rc != 0) errmsg_set(&rem, rc, "%s: not a list of ring nodes", path);
        if (rc == 0 && !lists_self(&c->known, &c->id))
            rc = errmsg_set(&rem, ERR_CORRUPT, "%s: does not list this node (%s) with its tokens",
                            path, c->id.node_id);
    }
    if (rc != 0) { /* as without the file: the ring gossip shows becomes the known one */
        known_clear(&c->known);
        log_error("cluster", "%s; ignored, the ring is learnt from gossip", errmsg_text(&rem, rc));
        cluster_full_begin(c, "the ring this node last saw is unknown (regain.ring unreadable)");
        return 0;
    }
    c->known.unsure = c->known.n > 0;
    if (c->known.n > 0) check_downtime(c, path);
    return 0;
}

/* A node down for longer than tombstones are kept cannot see every change
 * of the ring meanwhile (a node that joined and was removed leaves no trace
 * once its tombstone is forgotten): regain.ring's modification time, kept
 * recent while the node runs (cluster_regain_ring_touch), tells how long. */
static void check_downtime(cluster_t *c, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return;
    uint64_t then = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
    uint64_t now = cluster_unix_ms(c), keep = cluster_forget_left_ms(c);
    c->full.last_up_ms = then; /* for cluster_regain_ring_missed */
    if (now <= then || now - then <= keep) return;
    char why[160];
    snprintf(why, sizeof why,
             "this node was down for about %llu s, longer than --forget-left-after (%llu s)",
             (unsigned long long)((now - then) / 1000), (unsigned long long)(keep / 1000));
    cluster_full_begin(c, why);
}

/* The check of cluster_regain_ring_missed is over for this process. */
static void missed_done(cluster_t *c)
{
    c->full.last_up_ms = 0;
    known_release(&c->full.watched);
}

/* Whether this node knew id before the restart or watched it in a ring
 * since (it accounted for its leaving): not a node that joined and left
 * while it was down. */
static int accounted(const cluster_t *c, const char *id)
{
    return known_find(&c->known, id) >= 0 || known_find(&c->full.watched, id) >= 0;
}

void cluster_regain_ring_missed(cluster_t *c, const ring_t *now)
{
    if (c->full.last_up_ms == 0) return;
    for (size_t i = 0; i < ring_members_count(c->members); i++) {
        ring_member_t m;
        if (ring_members_get(c->members, i, &m) != ERR_OK || m.life != RING_LEFT ||
            m.incarnation * 1000 <= c->full.last_up_ms || accounted(c, m.node_id) ||
            (now != NULL && ring_node_find(now, m.node_id) >= 0))
            continue;
        char why[RING_NODE_ID_MAX + 160];
        snprintf(why, sizeof why,
                 "%s joined and left while this node was down (it started after this node was "
                 "last up)",
                 m.node_id);
        cluster_full_begin(c, why);
        missed_done(c);
        return;
    }
    if (waited_enough(c)) missed_done(c); /* the member table has filled */
}

void cluster_regain_ring_touch(cluster_t *c)
{
    uint64_t every = cluster_forget_left_ms(c) / 4, now = uv_now(c->loop);
    if (every > CLUSTER_RING_TOUCH_MAX_MS) every = CLUSTER_RING_TOUCH_MAX_MS;
    if (c->known.n == 0 || now - c->full.touched_ms < every) return;
    c->full.touched_ms = now;
    char path[CLUSTER_SETTING_MAX + 32];
    if (known_path(c, "", path, sizeof path) == 0 && utimensat(AT_FDCWD, path, NULL, 0) != 0 &&
        errno != ENOENT)
        log_warn("cluster",
                 "cannot touch %s: %s (the next start may take this node as down "
                 "for longer than it was, and repair all its ranges)",
                 path, strerror(errno));
}

int cluster_regain_ring_save(const cluster_t *c)
{
    char path[CLUSTER_SETTING_MAX + 32];
    if (known_path(c, "", path, sizeof path) != 0) return ERR_INVALID_ARGUMENT;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int rc = buf_printf(&b, "%s\n", KNOWN_HEADER);
    for (size_t i = 0; rc == 0 && i < c->known.n; i++) {
        rc = cluster_known_print(&b, &c->known.v[i]);
        if (rc == 0) rc = buf_append_byte(&b, '\n');
    }
    if (rc == 0) rc = cluster_statefile_finish(&b, c->known.n);
    errmsg_t em = {{0}};
    if (rc == 0) rc = cluster_statefile_write(c->data_dir, path, &b, &em);
    if (rc != 0) log_error("cluster", "%s", errmsg_text(&em, rc));
    buf_free(&b);
    return rc;
}

/* Whether the known nodes are exactly those of ring r, tokens too. */
static int known_is(const cluster_t *c, const ring_t *r)
{
    if (c->known.n != ring_node_count(r)) return 0;
    for (size_t i = 0; i < c->known.n; i++) {
        ring_member_t m;
        const cluster_known_node_t *x = &c->known.v[i];
        if (ring_node_find(r, x->id) < 0 || ring_members_find(c->members, x->id, &m) != ERR_OK ||
            m.ntokens != x->ntokens || memcmp(m.tokens, x->tokens, x->ntokens * 8) != 0)
            return 0;
    }
    return 1;
}

/* The known nodes ring r lacks into c->full.watched, while
 * cluster_regain_ring_missed still checks: their leaving is accounted for.
 * One not kept (no memory) may be taken for a node that joined and left
 * while this node was down: a full repair it did not need, never a short
 * copy read. */
static void watch_dropped(cluster_t *c, const ring_t *r)
{
    for (size_t i = 0; c->full.last_up_ms != 0 && i < c->known.n; i++) {
        const cluster_known_node_t *x = &c->known.v[i];
        if (ring_node_find(r, x->id) < 0 && known_find(&c->full.watched, x->id) < 0 &&
            known_add(&c->full.watched, x->id, x->tokens, x->ntokens) != 0)
            log_warn("cluster", "no memory to note that %s left a ring this node saw", x->id);
    }
}

void cluster_regain_ring_accept(cluster_t *c, const ring_t *now)
{
    int was_unsure = c->known.unsure;
    c->known.unsure = 0;
    if (was_unsure) log_info("cluster", "accounted for every node of the ring before the restart");
    if (known_is(c, now)) return;
    watch_dropped(c, now);
    cluster_known_t k = {0};
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < ring_node_count(now); i++) {
        ring_member_t m;
        rc = ring_members_find(c->members, ring_node_name(now, i), &m);
        if (rc == ERR_OK) rc = known_add(&k, m.node_id, m.tokens, m.ntokens);
    }
    if (rc != 0) {
        known_release(&k);
        log_error("cluster", "cannot keep the ring: %s", err_message(rc));
        return;
    }
    known_release(&c->known);
    k.unsure = 0;
    c->known = k;
    if (cluster_regain_ring_save(c) != 0)
        log_error("cluster",
                  "cannot write %s/%s: a removal while this node is down is not "
                  "streamed in after its restart",
                  c->data_dir, CLUSTER_REGAIN_RING_FILE);
}

/* The start's wait for the member table to fill passed. */
static int waited_enough(const cluster_t *c)
{
    uint64_t wait = c->cfg.failure_timeout_ms + 10 * c->cfg.gossip_interval_ms;
    return c->started && uv_now(c->loop) - c->started_ms >= wait;
}

int cluster_regain_ring_waited(const cluster_t *c)
{
    return waited_enough(c);
}

int cluster_regain_ring_heard(const cluster_t *c)
{
    return c->nheard > 0;
}

int cluster_regain_ring_waiting(const cluster_t *c)
{
    return c->known.unsure && !waited_enough(c);
}

/* For each known node the current ring lacks: 1 removed (what this node
 * gains by it counts), 0 not counted (left up while this process watched:
 * a decommission, its takers streamed; or unknown after the start's wait),
 * -1 not accounted for yet (also while no other member's whole table was
 * heard: a node whose seeds have not answered knows nothing). A node no
 * member knows is never taken as removed: after a whole cluster restarted,
 * the first node up would take every other as removed and clear what it
 * holds. */
static int gone_kind(cluster_t *c, const cluster_view_t *old, const cluster_known_node_t *x)
{
    const char *id = x->id;
    ring_member_t m;
    if (ring_members_find(c->members, id, &m) != ERR_OK) {
        /* nothing can be told until a member's word named no member this
         * table lacks (cluster_move_heard): alone, no seed answered yet;
         * or a member's first gossip made it a member before the entries
         * it names arrived */
        if (!waited_enough(c) || !cluster_regain_ring_heard(c)) return -1;
        char why[RING_NODE_ID_MAX + 160];
        snprintf(why, sizeof why,
                 "%s was in the ring when this node last saw it and no member knows it now "
                 "(removed longer than --forget-left-after ago, or never seen by the others)",
                 id);
        cluster_full_begin_unknown(c, why, x); /* lifted by evidence once x is back */
        return 0;
    }
    if (m.life != RING_LEFT) return waited_enough(c) ? 0 : -1;
    int watched = old != NULL && old->ring != NULL && ring_node_find(old->ring, id) >= 0;
    return m.down || !watched ? 1 : 0;
}

int cluster_regain_ring_before(cluster_t *c, const cluster_view_t *old, const cluster_view_t *now,
                               ring_t **before, errmsg_t *em)
{
    *before = NULL;
    if (c->known.n == 0) return 0; /* nothing known: this ring is the first */
    ring_node_spec_t *specs = calloc(c->known.n + ring_node_count(now->ring), sizeof *specs);
    if (specs == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    size_t n = 0;
    int removed = 0, rc = 0;
    for (size_t i = 0; rc == 0 && i < c->known.n; i++) {
        const cluster_known_node_t *x = &c->known.v[i];
        int kind = ring_node_find(now->ring, x->id) >= 0 ? 2 : gone_kind(c, old, x);
        if (kind < 0) rc = 1; /* wait: the member table is not complete yet */
        if (kind == 1) {
            log_info("cluster",
                     "%s is gone from the ring since this node last saw it: streaming "
                     "the ranges this node gains",
                     x->id);
            removed = 1;
            /* not seen leaving (a view of this process had it: cluster_void_note) */
            if (old == NULL || old->ring == NULL || ring_node_find(old->ring, x->id) < 0)
                cluster_void_unseen(c, x->id);
        }
        if (kind >= 1) specs[n++] = (ring_node_spec_t){x->id, x->tokens, x->ntokens};
    }
    for (uint32_t i = 0; rc == 0 && i < ring_node_count(now->ring); i++) {
        ring_member_t m; /* joined since: in the ring before too (they take, never give) */
        const char *id = ring_node_name(now->ring, i);
        if (known_find(&c->known, id) < 0 && ring_members_find(c->members, id, &m) == ERR_OK)
            specs[n++] = (ring_node_spec_t){m.node_id, m.tokens, m.ntokens};
    }
    if (rc == 0 && removed) rc = ring_build(specs, n, before, em);
    free(specs);
    return rc;
}
