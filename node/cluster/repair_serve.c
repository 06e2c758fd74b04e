/* repair_serve.c — answering a peer's anti-entropy requests (repair_int.h):
 * digests of the seen index, pages of its entries, and stored profiles.
 *
 * The handler (loop) takes the decoded request and queues a pool job; the
 * answer is built on the pool into the job's arena and sent from the loop.
 * At most REPAIR_SERVE_MAX run at once: a busy node answers `unavailable`
 * and the repairing peer retries. A fetched profile is the stored tree of
 * one series (storage_read_profile) with the series' labels and the symbols
 * the tree references, and the profile's members of the span/trace trees
 * it went into (storage_profile_spans; a tree whose member
 * cannot be told goes by name, `unknown`), as a WriteRequest the peer stores
 * like a replicated write; a profile whose tree is not kept (larger than
 * max-profile-tree-bytes, past profile retention, or stored before format 5)
 * is counted `unavailable` and not sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/calltree.h"
#include "common/labels.h"
#include "common/log.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

static ProtobufCBinaryData bytes_of(arena_t *a, const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, arena_memdup(a, p, n ? n : 1)};
    return b;
}

static char *str_dup(arena_t *a, const char *s)
{
    return arena_memdup(a, s, strlen(s) + 1);
}

/* ---------- digest ---------- */

/* The ranges of q that are not left out (untrusted[i], NULL: none) into
 * rv, their indexes in q into at, and the others named in a->untrusted. */
static int digest_ranges(const Flamedb__Cluster__RepairRequest *q, const uint8_t *untrusted,
                         arena_t *arena, ring_range_t *rv, uint32_t *at, size_t *n,
                         Flamedb__Cluster__RepairAnswer *a)
{
    *n = 0;
    for (size_t i = 0; i < q->n_ranges; i++) {
        if (untrusted != NULL && untrusted[i]) {
            if (a->untrusted == NULL &&
                (a->untrusted = arena_zalloc(arena, q->n_ranges * sizeof *a->untrusted)) == NULL)
                return ERR_NOMEM;
            a->untrusted[a->n_untrusted++] = (uint32_t)i;
            continue;
        }
        at[*n] = (uint32_t)i;
        rv[(*n)++] = (ring_range_t){q->ranges[i]->start, q->ranges[i]->end};
    }
    return 0;
}

static int serve_digest(storage_t *s, const Flamedb__Cluster__RepairRequest *q,
                        const uint8_t *untrusted, arena_t *arena, Flamedb__Cluster__RepairAnswer *a)
{
    ring_range_t *rv = calloc(q->n_ranges ? q->n_ranges : 1, sizeof *rv);
    uint32_t *at = calloc(q->n_ranges ? q->n_ranges : 1, sizeof *at);
    size_t n = 0;
    int rc =
        rv != NULL && at != NULL ? digest_ranges(q, untrusted, arena, rv, at, &n, a) : ERR_NOMEM;
    repair_digest_t d = {0};
    if (rc == 0 && n > 0)
        rc = repair_digest_build(s, rv, n, q->from_s, q->until_s, q->bucket_s, &d);
    free(rv);
    if (rc == 0 && d.n > 0) {
        a->buckets = arena_zalloc(arena, d.n * sizeof *a->buckets);
        Flamedb__Cluster__RepairBucket *bv = arena_zalloc(arena, d.n * sizeof *bv);
        if (a->buckets == NULL || bv == NULL) rc = ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < d.n; i++) {
            flamedb__cluster__repair_bucket__init(&bv[i]);
            bv[i].range = at[d.v[i].range];
            bv[i].start_s = d.v[i].start_s;
            bv[i].count = d.v[i].count;
            bv[i].hash = d.v[i].hash;
            a->buckets[i] = &bv[i];
        }
        if (rc == 0) a->n_buckets = d.n;
    }
    repair_digest_free(&d);
    free(at);
    return rc;
}

/* ---------- ids ---------- */

typedef struct ids_ctx {
    arena_t *arena;
    Flamedb__Cluster__RepairAnswer *a;
    size_t limit;
} ids_ctx_t;

static int add_id(void *ctx, const storage_seen_entry_t *e)
{
    ids_ctx_t *x = ctx;
    if (x->a->n_entries == x->limit) {
        x->a->more = 1;
        return 1; /* stop: one more exists */
    }
    Flamedb__Cluster__SeenEntry *m = arena_zalloc(x->arena, sizeof *m);
    if (m == NULL) return ERR_NOMEM;
    flamedb__cluster__seen_entry__init(m);
    m->tenant = str_dup(x->arena, e->tenant);
    m->token = e->token;
    m->series_id = e->series_id;
    m->profile_id = bytes_of(x->arena, e->profile_id, 16);
    m->time_ns = e->time_ns;
    if (m->tenant == NULL || m->profile_id.data == NULL) return ERR_NOMEM;
    x->a->entries[x->a->n_entries++] = m;
    return 0;
}

static int add_ptree(void *ctx, const storage_seen_entry_t *e, int tree_kept)
{
    (void)tree_kept; /* listed either way: a FETCH of one not kept answers it unavailable */
    return add_id(ctx, e);
}

static void entry_of(const Flamedb__Cluster__SeenEntry *m, storage_seen_entry_t *e)
{
    e->tenant = m->tenant;
    e->token = m->token;
    e->series_id = m->series_id;
    memcpy(e->profile_id, m->profile_id.data, 16);
    e->time_ns = m->time_ns;
}

static int serve_ids(storage_t *s, const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                     Flamedb__Cluster__RepairAnswer *a)
{
    ids_ctx_t x = {arena, a, q->limit};
    a->entries = arena_zalloc(arena, q->limit * sizeof *a->entries);
    if (a->entries == NULL) return ERR_NOMEM;
    storage_seen_entry_t after;
    if (q->after != NULL) entry_of(q->after, &after);
    int rc;
    if (q->profiles_from_s != 0) { /* the window check: profile_trees, not the seen index */
        a->profile_trees = 1;
        rc = storage_ptree_scan(s, q->lo, q->hi, q->after ? &after : NULL, q->profiles_from_s,
                                q->until_s, add_ptree, &x);
    } else {
        rc = storage_seen_scan(s, q->lo, q->hi, q->after ? &after : NULL, q->from_s, q->until_s,
                               add_id, &x);
    }
    return rc == 1 ? 0 : rc;
}

static int sum_ptree(void *ctx, const storage_seen_entry_t *e, int tree_kept)
{
    (void)tree_kept;
    Flamedb__Cluster__RepairAnswer *a = ctx;
    a->profile_count++;
    a->profile_hash += repair_entry_hash(e);
    return 0;
}

/* STREAM_CHECK: the sums of the interval's windows, and with
 * profiles_from_s the count and hash of its profile_trees entries. */
static int serve_check(storage_t *s, const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                       Flamedb__Cluster__RepairAnswer *a)
{
    uint32_t nb = q->sum_buckets ? q->sum_buckets : 1; /* checked on decode */
    a->sums = arena_zalloc(arena, (size_t)nb * STORAGE_RESOLUTION_COUNT * sizeof *a->sums);
    int rc =
        a->sums ? storage_stream_sums_split(s, q->lo, q->hi, q->until_s, nb, a->sums) : ERR_NOMEM;
    if (rc == 0) a->n_sums = (size_t)nb * STORAGE_RESOLUTION_COUNT;
    if (rc == 0 && q->profiles_from_s != 0) {
        a->profile_trees = 1;
        rc =
            storage_ptree_scan(s, q->lo, q->hi, NULL, q->profiles_from_s, q->until_s, sum_ptree, a);
    }
    return rc;
}

/* ---------- fetch ---------- */

typedef struct syms {
    uint64_t *v;
    size_t n, cap;
} syms_t;

static int add_sym(void *ctx, uint64_t id)
{
    syms_t *y = ctx;
    int rc = GROW(y->v, y->cap, y->n + 1, GROW_UNLIMITED);
    if (rc != ERR_OK) return rc;
    y->v[y->n++] = id;
    return 0;
}

/* The symbols trees t and st (the profile's span trees summed, or NULL)
 * reference, loaded from storage into w->symbols. */
static int put_symbols(storage_t *s, const char *tenant, const calltree_t *t, const calltree_t *st,
                       arena_t *arena, Flamedb__Cluster__WriteRequest *w)
{
    syms_t y = {0};
    symtab_t *tab = symtab_new();
    int rc = tab ? calltree_for_each_symbol(t, add_sym, &y) : ERR_NOMEM;
    if (rc == 0 && st != NULL) rc = calltree_for_each_symbol(st, add_sym, &y);
    if (rc == 0) rc = storage_load_symbols(s, tenant, y.v, y.n, tab);
    size_t n = rc == 0 ? symtab_count(tab) : 0;
    if (rc == 0 && n > 0) {
        w->symbols = arena_zalloc(arena, n * sizeof *w->symbols);
        Flamedb__Cluster__Symbol *sv = arena_zalloc(arena, n * sizeof *sv);
        if (w->symbols == NULL || sv == NULL) rc = ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const char *name, *file;
            uint64_t id = symtab_id_at(tab, i);
            symtab_get(tab, id, &name, &file);
            flamedb__cluster__symbol__init(&sv[i]);
            sv[i].id = id;
            sv[i].name = bytes_of(arena, name, strlen(name));
            sv[i].file = bytes_of(arena, file ? file : "", file ? strlen(file) : 0);
            w->symbols[i] = &sv[i];
        }
        if (rc == 0) w->n_symbols = n;
    }
    free(y.v);
    symtab_free(tab);
    return rc;
}

/* The series part of entry m: labels and the stored tree, encoded. */
static int build_part(storage_t *s, const repair_options_t *o, const Flamedb__Cluster__SeenEntry *m,
                      const calltree_t *t, arena_t *arena, Flamedb__Cluster__SeriesPart *p)
{
    labels_t *lb = NULL;
    buf_t b;
    buf_init(&b, o->max_message_bytes);
    int rc = storage_series_labels(s, m->tenant, m->token, m->series_id, &lb);
    if (rc == 0) rc = labels_encode(lb, &b);
    if (rc == 0) p->labels = bytes_of(arena, b.data, b.len);
    buf_reset(&b);
    if (rc == 0) rc = calltree_encode(t, &b);
    if (rc == 0) p->calltree = bytes_of(arena, b.data, b.len);
    if (rc == 0 && (p->labels.data == NULL || p->calltree.data == NULL)) rc = ERR_NOMEM;
    p->token = m->token;
    p->series_id = m->series_id;
    labels_free(lb);
    buf_free(&b);
    return rc;
}

/* One entry as a WriteRequest in *out with its span trees x, or *out NULL
 * when its tree is not stored (or x is over). */
static int fetch_one(storage_t *s, const repair_options_t *o,
                     const Flamedb__Cluster__RepairRequest *q, const Flamedb__Cluster__SeenEntry *m,
                     const repair_pspans_t *x, arena_t *arena, Flamedb__Cluster__WriteRequest **out)
{
    *out = NULL;
    calltree_t *t = calltree_new(o->write.max_tree_nodes);
    if (t == NULL) return ERR_NOMEM;
    /* the time is the one this node listed for the entry (IDS): the tree is
     * keyed by it */
    int64_t time_ns = m->time_ns;
    int piece = 0;
    int rc = storage_read_profile_piece(s, m->tenant, m->token, m->series_id, time_ns,
                                        m->profile_id.data, t, &piece);
    if (rc == ERR_NOT_FOUND) {
        calltree_free(t);
        return 0; /* not kept: the caller counts it unavailable */
    }
    Flamedb__Cluster__WriteRequest *w = arena_zalloc(arena, sizeof *w);
    Flamedb__Cluster__SeriesPart *p = arena_zalloc(arena, sizeof *p);
    Flamedb__Cluster__SeriesPart **pv = arena_zalloc(arena, sizeof *pv);
    if (rc == 0 && (w == NULL || p == NULL || pv == NULL)) rc = ERR_NOMEM;
    if (rc == 0) {
        flamedb__cluster__write_request__init(w);
        flamedb__cluster__series_part__init(p);
        w->protocol_version = CLUSTER_PROTOCOL_VERSION;
        w->tenant = str_dup(arena, m->tenant);
        w->deadline_unix_ms = q->deadline_unix_ms;
        w->profile_id = bytes_of(arena, m->profile_id.data, 16);
        w->time_ns = time_ns;
        w->hint_replay = 1;
        rc = build_part(s, o, m, t, arena, p);
        p->piece = piece != 0; /* counted by id there too */
    }
    if (rc == 0 && x->over) rc = ERR_NOT_FOUND; /* unavailable: not sent short */
    if (rc == 0) rc = repair_pspans_put(arena, x, p);
    if (rc == 0) rc = put_symbols(s, m->tenant, t, x->syms, arena, w);
    if (rc == ERR_NOT_FOUND)
        rc = 0; /* the series' labels were collected: unavailable too */
    else if (rc == 0) {
        pv[0] = p;
        w->series = pv;
        w->n_series = 1;
        *out = w;
    }
    calltree_free(t);
    return rc;
}

static int same_token(const Flamedb__Cluster__SeenEntry *a, const Flamedb__Cluster__SeenEntry *b)
{
    return a->token == b->token && strcmp(a->tenant, b->tenant) == 0;
}

/* The span trees of the run of entries from i on that share its tenant and
 * token (single: entry i alone) into *ps, [*run, *end), by one scan; the
 * previous run's freed. */
static int next_run(storage_t *s, const repair_options_t *o,
                    const Flamedb__Cluster__RepairRequest *q, size_t i, int single, arena_t *arena,
                    repair_pspans_t **ps, size_t *run, size_t *end)
{
    repair_pspans_free(*ps, *end - *run);
    *ps = NULL;
    *run = i;
    *end = i + 1;
    while (!single && *end < q->n_entries && same_token(q->entries[*end], q->entries[i]))
        (*end)++;
    if ((*ps = calloc(*end - i, sizeof **ps)) == NULL) return ERR_NOMEM;
    return repair_fetch_spans(s, o, q->entries + i, *end - i, arena, *ps);
}

/* The stored profiles of q's entries as writes, about half a message of
 * them: one that does not fit the answer's arena (2 x max-message-bytes)
 * goes in the next fetch, or, alone, is refused naming the limit. */
static int serve_fetch(storage_t *s, const repair_options_t *o,
                       const Flamedb__Cluster__RepairRequest *q, arena_t *arena,
                       Flamedb__Cluster__RepairAnswer *a, errmsg_t *em)
{
    a->writes = arena_zalloc(arena, q->n_entries * sizeof *a->writes);
    if (a->writes == NULL) return ERR_NOMEM;
    size_t bytes = 0, budget = o->max_message_bytes / 2;
    size_t run = 0, end = 0; /* entries [run, end): one tenant and token, ps their trees */
    repair_pspans_t *ps = NULL;
    int rc = 0;
    for (size_t i = 0; i < q->n_entries; i++) {
        if (i == end && (rc = next_run(s, o, q, i, 0, arena, &ps, &run, &end)) != 0) break;
        /* cut by the run's budget: the first of an answer on its own, any
         * later one in the next fetch */
        if (ps[i - run].cut && i == 0 && (rc = next_run(s, o, q, i, 1, arena, &ps, &run, &end)))
            break;
        if (ps[i - run].cut) break;
        Flamedb__Cluster__WriteRequest *w = NULL;
        if ((rc = fetch_one(s, o, q, q->entries[i], &ps[i - run], arena, &w)) != 0) {
            if (rc == ERR_NOMEM && arena->over && a->handled > 0)
                rc = 0; /* the rest in the next fetch */
            else if (rc == ERR_NOMEM && arena->over)
                rc =
                    errmsg_set(em, ERR_LIMIT,
                               "fetch of a profile of series %016llx (tenant %s) at %lld ns: its "
                               "write with its tree and symbols takes more than the %zu bytes an "
                               "answer may hold (2 x --max-message-bytes %zu): raise "
                               "--max-message-bytes on every node",
                               (unsigned long long)q->entries[i]->series_id, q->entries[i]->tenant,
                               (long long)q->entries[i]->time_ns, arena->max, o->max_message_bytes);
            break;
        }
        if (w == NULL) {
            a->unavailable++;
        } else {
            size_t n = protobuf_c_message_get_packed_size(&w->base) + 16;
            if (a->n_writes > 0 && bytes + n > budget) break; /* the rest in the next fetch */
            bytes += n;
            a->writes[a->n_writes++] = w;
        }
        a->handled = (uint32_t)(i + 1);
    }
    repair_pspans_free(ps, end - run);
    return rc;
}

int repair_serve_build(storage_t *s, const repair_options_t *o,
                       const Flamedb__Cluster__RepairRequest *q, const uint8_t *untrusted,
                       repair_serve_env_t *env, arena_t *arena, Flamedb__Cluster__RepairAnswer *a,
                       errmsg_t *em)
{
    int rc;
    switch (q->kind) {
    case RK(DIGEST):
        rc = serve_digest(s, q, untrusted, arena, a);
        break;
    case RK(IDS):
        rc = serve_ids(s, q, arena, a);
        break;
    case RK(STREAM):
        rc = repair_serve_stream(s, o, q, env, arena, a, em);
        break;
    case RK(SPANS):
        rc = repair_serve_spans(s, o, q, arena, a);
        break;
    case RK(STREAM_CHECK):
        rc = serve_check(s, q, arena, a);
        break;
    default:
        rc = serve_fetch(s, o, q, arena, a, em);
        break;
    }
    if (rc != 0 && em->text[0] == '\0') /* a reason set above stays */
        return errmsg_set(em, rc, "repair %d: %s", (int)q->kind, err_message(rc));
    if (rc != 0) return rc;
    return 0;
}
