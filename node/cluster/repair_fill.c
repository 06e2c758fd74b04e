/* repair_fill.c — the window check's fill of old windows no profile id
 * names (repair_int.h; docs/cluster.md, "Old windows no profile id names").
 *
 * Past --profile-retention a window is all that is left of its profiles:
 * one rolled-up block per series, resolution and window. Two copies that
 * each hold windows the other lacks cannot be united by adding blocks (a
 * profile both hold would count twice) nor by taking either (a profile
 * only the other holds would be dropped). What is exact: a window one copy
 * holds and the other does not hold at all is the union there (the other
 * holds no profile of that series in it), and a window both hold alike
 * needs nothing. A window both hold differently has no union the blocks
 * can tell; its series is left as it is on both copies, every window of
 * it, so that no resolution of the series says more than another.
 *
 * Streaming is repair_stream.c's walk (STREAM answers, windows in parts put
 * together); this module decides, per window, what the walk stores. The
 * first look is at summaries: from a source of stream protocol 3 each
 * window's key and a hash of its whole window_profiles, then (a second
 * look, by key) the whole summaries with their ids of the windows whose
 * hashes differ from this node's; from one of protocol 2 the whole
 * summaries at once. Compared by id, every window the fill will store is
 * then asked for by key, and only those. The
 * store looks again whether this node holds the window, under the lock a
 * write holds until it commits (storage_stream_window_t.only_absent): a
 * write that lands between this module's look and the store keeps the copy
 * out rather than being counted twice.
 */
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/hash.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

static uint64_t series_key(const Flamedb__Cluster__StreamWindow *m)
{
    return m->series_id ^ hash_bytes64(m->tenant, strlen(m->tenant));
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

int repair_tree_digest(const calltree_t *t, uint64_t *out)
{
    size_t n = calltree_node_count(t);
    uint64_t *h = malloc((n ? n : 1) * sizeof *h);
    if (h == NULL) return ERR_NOMEM;
    const calltree_node_t *nodes = calltree_nodes(t);
    const uint64_t *syms = calltree_syms(t);
    uint64_t d = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t p = nodes[i].parent;
        uint64_t up = p == CALLTREE_NONE ? 0x5eed : p < i ? h[p] : UINT64_MAX;
        if (up == UINT64_MAX) { /* never so (a child is added after its parent) */
            free(h);
            return ERR_CORRUPT;
        }
        h[i] = p == CALLTREE_NONE ? up : mix(up, syms[nodes[i].sym_index]);
        int64_t v = calltree_self(t, (uint32_t)i);
        if (v != 0) d += mix(h[i], (uint64_t)v);
    }
    free(h);
    *out = d;
    return 0;
}

/* This node's window of m into mine, and m's residual (whole, no kept
 * profiles: the peer's whole window) into theirs. */
static int both_windows(repair_t *r, const Flamedb__Cluster__StreamWindow *m, calltree_t *mine,
                        calltree_t *theirs)
{
    storage_merger_t *g = NULL;
    errmsg_t em = {{0}};
    int64_t w = m->window_s, end = w + (int64_t)storage_resolutions[m->res];
    int rc = mine != NULL && theirs != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) rc = calltree_decode_merge(theirs, m->calltree.data, m->calltree.len);
    if (rc == 0) rc = storage_merger_new(r->storage, m->tenant, &g);
    if (rc == 0) rc = storage_merger_add(g, m->token, m->series_id, (int)m->res, w, end);
    if (rc == 0) rc = storage_merger_finish(g, mine, &em);
    storage_merger_free(g);
    return rc;
}

/* 1 when this node's window of m holds the same stacks and values as m's
 * residual, 0 when not, or a negative error. */
static int same_window(repair_t *r, const Flamedb__Cluster__StreamWindow *m)
{
    calltree_t *mine = calltree_new(r->o.write.max_tree_nodes);
    calltree_t *theirs = calltree_new(r->o.write.max_tree_nodes);
    int rc = both_windows(r, m, mine, theirs);
    uint64_t a = 0, b = 0;
    if (rc == 0) rc = repair_tree_digest(mine, &a);
    if (rc == 0) rc = repair_tree_digest(theirs, &b);
    calltree_free(mine);
    calltree_free(theirs);
    return rc != 0 ? rc : a == b;
}

/* theirs less mine, path by path (into theirs); 1 when no self value is
 * left negative, 0 when one is (or mine has a path theirs has no room
 * for), or a negative error. */
static int tree_holds(calltree_t *theirs, const calltree_t *mine)
{
    size_t n = calltree_node_count(mine);
    uint32_t *map = malloc((n ? n : 1) * sizeof *map);
    if (map == NULL) return ERR_NOMEM;
    const calltree_node_t *nodes = calltree_nodes(mine);
    const uint64_t *syms = calltree_syms(mine);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) { /* a parent precedes its children */
        uint32_t p = nodes[i].parent;
        map[i] = 0;
        if (p != CALLTREE_NONE)
            rc = calltree_child(theirs, map[p], syms[nodes[i].sym_index], &map[i]);
        if (rc == 0) calltree_add_self(theirs, map[i], -calltree_self(mine, (uint32_t)i));
    }
    free(map);
    if (rc == ERR_LIMIT) return 0;
    const int64_t *self = calltree_selves(theirs);
    for (size_t i = 0; rc == 0 && i < calltree_node_count(theirs); i++)
        if (self[i] < 0) return 0;
    return rc != 0 ? rc : 1;
}

/* How the peer's window m (its whole residual, no kept profiles) relates
 * to this node's by the profiles each holds (window_profiles, storage
 * format 14): STORAGE_WPROF_A_HOLDS_B when the peer's holds this node's
 * and more. UNKNOWN when either is not counted exactly (written before
 * format 14, or an older peer). mine (may be NULL) gets this node's value,
 * delta, only_there and only_here as storage_window_profiles_relate. */
static int relate(repair_t *r, const Flamedb__Cluster__StreamWindow *m, buf_t *mine,
                  int64_t *my_total, buf_t *only_there, buf_t *only_here, buf_t *delta)
{
    if (m->window_profiles.len == 0) return STORAGE_WPROF_UNKNOWN;
    buf_t v;
    buf_init(&v, BUF_UNLIMITED);
    buf_t *b = mine != NULL ? mine : &v;
    int64_t total = 0;
    int rc = storage_window_profiles_value(r->storage, m->tenant, m->token, m->series_id,
                                           (int)m->res, m->window_s, b, &total);
    int rel = rc < 0 ? rc : STORAGE_WPROF_UNKNOWN;
    if (rc == 1)
        rel = (int)storage_window_profiles_relate(m->window_profiles.data, m->window_profiles.len,
                                                  b->data, b->len, only_there, only_here, delta);
    if (my_total != NULL) *my_total = total;
    buf_free(&v);
    return rel;
}

/* A holds probe's look at window m, which this node holds: counted in
 * ss->fill_short when m's does not hold it stack by stack. */
static int holds_probe(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                       repair_stream_state_t *ss, int whole, errmsg_t *em)
{
    if (!whole || m->n_kept > 0) return 0; /* not comparable: the sums decide, as before */
    int rel = relate(r, m, NULL, NULL, NULL, NULL, NULL);
    if (rel < 0) return errmsg_set(em, rel, "window profiles: %s", err_message(rel));
    if (rel != STORAGE_WPROF_UNKNOWN) { /* by id: exact */
        ss->fill_short += rel != STORAGE_WPROF_EQUAL && rel != STORAGE_WPROF_A_HOLDS_B;
        return 0;
    }
    calltree_t *mine = calltree_new(r->o.write.max_tree_nodes);
    calltree_t *theirs = calltree_new(r->o.write.max_tree_nodes);
    int rc = both_windows(r, m, mine, theirs);
    if (rc == 0) rc = tree_holds(theirs, mine);
    calltree_free(mine);
    calltree_free(theirs);
    if (rc < 0) return errmsg_set(em, rc, "window compare: %s", err_message(rc));
    ss->fill_short += rc == 0;
    return 0;
}

/* Window m, held differently here and on ss->fill_peer, named in
 * st->inexact (whole or not at all: past REPAIR_SUMMARY_MAX the list ends;
 * st->wc_inexact still counts it). */
/* ,"NAME":["id",...] of the ids in ids (their first STORAGE_WPROF_ID_LEN
 * bytes, as windows list them; at most NOTE_IDS named), and
 * ,"NAME_count":N. */
#define NOTE_IDS 16
static int note_ids(buf_t *one, const char *name, const buf_t *ids)
{
    size_t n = ids->len / STORAGE_WPROF_ID_LEN;
    int rc = buf_printf(one, ",\"%s_count\":%zu,\"%s\":[", name, n, name);
    for (size_t i = 0; rc == 0 && i < n && i < NOTE_IDS; i++) {
        rc = buf_append_str(one, i > 0 ? ",\"" : "\"");
        for (size_t k = 0; rc == 0 && k < STORAGE_WPROF_ID_LEN; k++)
            rc = buf_printf(one, "%02x", ids->data[STORAGE_WPROF_ID_LEN * i + k]);
        if (rc == 0) rc = buf_append_byte(one, '"');
    }
    return rc == 0 ? buf_append_byte(one, ']') : rc;
}

static int note_inexact(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                        const repair_stream_state_t *ss, repair_stats_t *st, const buf_t *only_here,
                        const buf_t *only_there)
{
    labels_t *lb = NULL;
    buf_t one;
    buf_init(&one, REPAIR_SUMMARY_MAX);
    int rc = m->labels.len > 0 /* a summary has none: this node holds the series too */
                 ? labels_decode(m->labels.data, m->labels.len, &lb)
                 : storage_series_labels(r->storage, m->tenant, m->token, m->series_id, &lb);
    if (rc == 0) rc = buf_append_str(&one, st->inexact.len > 0 ? ",{\"tenant\":" : "{\"tenant\":");
    if (rc == 0) rc = buf_append_json_string(&one, m->tenant, strlen(m->tenant));
    if (rc == 0)
        rc = buf_printf(&one,
                        ",\"series\":\"%016llx\",\"labels\":", (unsigned long long)m->series_id);
    buf_t lt;
    buf_init(&lt, REPAIR_SUMMARY_MAX);
    if (rc == 0) rc = labels_format(lb, &lt);
    if (rc == 0) rc = buf_append_json_string(&one, (const char *)lt.data, lt.len);
    if (rc == 0)
        rc = buf_printf(&one, ",\"resolution_s\":%llu,\"window_s\":%lld,\"peer\":",
                        (unsigned long long)storage_resolutions[m->res], (long long)m->window_s);
    const char *peer = ss->fill_peer != NULL ? ss->fill_peer : "";
    if (rc == 0) rc = buf_append_json_string(&one, peer, strlen(peer));
    if (rc == 0 && only_here != NULL && only_here->len + only_there->len > 0) {
        rc = note_ids(&one, "only_here", only_here);
        if (rc == 0) rc = note_ids(&one, "only_there", only_there);
    }
    if (rc == 0) rc = buf_append_byte(&one, '}');
    if (rc == 0 && st->inexact.len + one.len <= st->inexact.max)
        rc = buf_append(&st->inexact, one.data, one.len);
    buf_free(&lt);
    buf_free(&one);
    labels_free(lb);
    return rc == ERR_TOO_LARGE ? 0 : rc; /* one past the bound: counted, not named */
}

/* A probe's look at window m, which this node holds with `total`: its
 * series goes into ss->fill_skip unless the two are alike (counted inexact
 * when they differ; left when m's kept profiles, which its residual leaves
 * out, are not all known or not none: the two cannot be compared). */
static int fill_probe(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                      repair_stream_state_t *ss, repair_stats_t *st, int whole, int64_t total,
                      errmsg_t *em)
{
    int comparable = whole && m->n_kept == 0, same = 0;
    buf_t here, there;
    buf_init(&here, BUF_UNLIMITED);
    buf_init(&there, BUF_UNLIMITED);
    int rel = comparable ? relate(r, m, NULL, NULL, &there, &here, NULL) : STORAGE_WPROF_UNKNOWN;
    if (rel != STORAGE_WPROF_UNKNOWN && rel != STORAGE_WPROF_MIXED) {
        buf_free(&here);
        buf_free(&there);
        if (rel < 0) return errmsg_set(em, rel, "window profiles: %s", err_message(rel));
        /* by id: the same profiles, or one copy holds the other's (the
         * fill's last look adds what the peer's holds beyond) */
        return 0;
    }
    if (rel == STORAGE_WPROF_UNKNOWN && comparable && total == m->total) {
        same = same_window(r, m);
        if (same != 0) {
            buf_free(&here);
            buf_free(&there);
        }
        if (same < 0) return errmsg_set(em, same, "window compare: %s", err_message(same));
        if (same) return 0;
    }
    if (comparable) {
        st->wc_inexact++;
        int rc = note_inexact(r, m, ss, st, &here, &there);
        buf_free(&here);
        buf_free(&there);
        if (rc != 0) return errmsg_set(em, rc, "window check: %s", err_message(rc));
    } else {
        buf_free(&here);
        buf_free(&there);
        ss->fill_left++;
    }
    uint32_t v;
    if (u64map_get_or_put(ss->fill_skip, series_key(m), 0, &v) < 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    return 0;
}

int repair_fill_wanted(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                       repair_stream_state_t *ss, repair_stats_t *st, int whole, errmsg_t *em)
{
    if (m->res >= STORAGE_RESOLUTION_COUNT ||
        m->window_s + (int64_t)storage_resolutions[m->res] > ss->fill_until)
        return 0;
    uint32_t v;
    if (!ss->fill_probe && u64map_get(ss->fill_skip, series_key(m), &v)) return 0;
    int64_t total = 0;
    int has = storage_window_total(r->storage, m->tenant, m->token, m->series_id, (int)m->res,
                                   m->window_s, &total);
    if (has < 0) return errmsg_set(em, has, "window total lookup failed");
    if (ss->fill_probe && ss->fill_holds && has && !ss->fill_no_match)
        ss->fill_matched[m->res] = (int64_t)((uint64_t)ss->fill_matched[m->res] + (uint64_t)total);
    if (ss->fill_probe && ss->fill_holds) return has ? holds_probe(r, m, ss, whole, em) : 0;
    if (ss->fill_probe) return has ? fill_probe(r, m, ss, st, whole, total, em) : 0;
    if (has && whole && m->n_kept == 0) {
        int rel = relate(r, m, NULL, NULL, NULL, NULL, NULL);
        if (rel < 0) return errmsg_set(em, rel, "window profiles: %s", err_message(rel));
        if (rel == STORAGE_WPROF_A_HOLDS_B) return 2; /* add what the peer's holds beyond */
        if (rel == STORAGE_WPROF_EQUAL || rel == STORAGE_WPROF_B_HOLDS_A)
            return 0; /* nothing to add here (the peer's check adds to its copy) */
    }
    if (has) { /* alike at the probe, or absent then: a write landed since */
        ss->fill_left += total != m->total;
        return 0;
    }
    if (whole && m->n_kept > 0) {
        ss->fill_left++;
        return 0;
    }
    return 1;
}

void repair_keys_free(repair_keys_t *k)
{
    buf_free(&k->b);
    free(k->end);
    free(k->series);
    memset(k, 0, sizeof *k);
}

/* key (series: series_key's) appended to k. */
static int keys_append(repair_keys_t *k, ProtobufCBinaryData key, uint64_t series, errmsg_t *em)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 256;
        size_t *e = realloc(k->end, cap * sizeof *e);
        if (e != NULL) k->end = e;
        uint64_t *sv = realloc(k->series, cap * sizeof *sv);
        if (sv != NULL) k->series = sv;
        if (e == NULL || sv == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
        k->cap = cap;
    }
    if (k->b.max == 0) buf_init(&k->b, BUF_UNLIMITED);
    if (buf_append(&k->b, key.data, key.len) != 0)
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    k->end[k->n] = k->b.len;
    k->series[k->n++] = series;
    return 0;
}

/* m's key (and series) appended to k. */
static int keys_put(repair_keys_t *k, const Flamedb__Cluster__StreamWindow *m, errmsg_t *em)
{
    if (m->key.len == 0 || m->key.len > REPAIR_STREAM_KEY_MAX)
        return errmsg_set(em, ERR_CORRUPT, "window check: a window summary with a key of %zu bytes",
                          m->key.len);
    return keys_append(k, m->key, series_key(m), em);
}

/* A holds probe's first look at m, which this node holds with `total`. */
static int holds_summary(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                         repair_stream_state_t *ss, int64_t total, errmsg_t *em)
{
    if (!ss->fill_no_match) /* not counted again at the look at its ids */
        ss->fill_matched[m->res] = (int64_t)((uint64_t)ss->fill_matched[m->res] + (uint64_t)total);
    int rel = relate(r, m, NULL, NULL, NULL, NULL, NULL);
    if (rel < 0) return errmsg_set(em, rel, "window profiles: %s", err_message(rel));
    if (rel == STORAGE_WPROF_UNKNOWN) return keys_put(ss->fill_look, m, em); /* by stacks */
    ss->fill_short += rel != STORAGE_WPROF_EQUAL && rel != STORAGE_WPROF_A_HOLDS_B;
    return 0;
}

int repair_fill_summary(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                        repair_stream_state_t *ss, repair_stats_t *st, errmsg_t *em)
{
    if (m->res >= STORAGE_RESOLUTION_COUNT ||
        m->window_s + (int64_t)storage_resolutions[m->res] > ss->fill_until)
        return 0;
    int64_t total = 0;
    int has = storage_window_total(r->storage, m->tenant, m->token, m->series_id, (int)m->res,
                                   m->window_s, &total);
    if (has < 0) return errmsg_set(em, has, "window total lookup failed");
    if (ss->fill_holds) return has ? holds_summary(r, m, ss, total, em) : 0;
    if (!has) return keys_put(ss->fill_want, m, em); /* the peer's is the union there */
    /* both hold it: by the ids of the whole windows (kept trees or not) */
    buf_t here, there;
    buf_init(&here, BUF_UNLIMITED);
    buf_init(&there, BUF_UNLIMITED);
    int rel = relate(r, m, NULL, NULL, &there, &here, NULL), rc = 0;
    if (rel < 0) rc = errmsg_set(em, rel, "window profiles: %s", err_message(rel));
    if (rel == STORAGE_WPROF_A_HOLDS_B) rc = keys_put(ss->fill_want, m, em); /* add the rest */
    if (rel == STORAGE_WPROF_UNKNOWN) rc = keys_put(ss->fill_look, m, em);   /* by stacks */
    if (rel == STORAGE_WPROF_MIXED) {
        st->wc_inexact++;
        rc = note_inexact(r, m, ss, st, &here, &there);
        if (rc != 0) rc = errmsg_set(em, rc, "window check: %s", err_message(rc));
        uint32_t v;
        if (rc == 0 && u64map_get_or_put(ss->fill_skip, series_key(m), 0, &v) < 0)
            rc = errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    buf_free(&here);
    buf_free(&there);
    return rc;
}

/* The key of hashed summary m (past the key_shared bytes of key) into
 * key, and its parts into w (tenant into tenant); 0 or ERR_CORRUPT. */
static int hashed_key(const Flamedb__Cluster__StreamWindow *m, uint8_t *key, size_t *key_len,
                      char *tenant, Flamedb__Cluster__StreamWindow *w)
{
    if (m->key_shared > *key_len || m->key.len > REPAIR_STREAM_KEY_MAX - m->key_shared)
        return ERR_CORRUPT;
    if (m->key.len > 0) memcpy(key + m->key_shared, m->key.data, m->key.len);
    *key_len = m->key_shared + m->key.len;
    int res = 0;
    flamedb__cluster__stream_window__init(w);
    int rc = storage_window_key_parse(key, *key_len, tenant, &w->token, &w->series_id, &res,
                                      &w->window_s);
    w->tenant = tenant;
    w->res = (uint32_t)res;
    w->key = (ProtobufCBinaryData){*key_len, key};
    w->summary_hash = m->summary_hash;
    return rc;
}

/* Where hashed summary w of a window this node holds goes (its hash
 * compared with this node's): 0 alike, else the list to put it in. */
static repair_keys_t *hashed_list(repair_t *r, const Flamedb__Cluster__StreamWindow *w,
                                  repair_stream_state_t *ss, int *rc)
{
    buf_t v;
    buf_init(&v, BUF_UNLIMITED);
    int64_t total = 0;
    int exact = w->summary_hash == 0
                    ? 0
                    : storage_window_profiles_value(r->storage, w->tenant, w->token, w->series_id,
                                                    (int)w->res, w->window_s, &v, &total);
    uint64_t h = exact == 1 ? storage_window_profiles_hash(v.data, v.len) : 0;
    buf_free(&v);
    *rc = exact < 0 ? exact : 0;
    if (exact < 0 || (exact == 1 && h == w->summary_hash)) return NULL; /* alike */
    return exact == 1 ? ss->fill_ids : ss->fill_look; /* by ids next, or by stacks */
}

int repair_fill_hashed(repair_t *r, const Flamedb__Cluster__StreamWindow *m,
                       uint8_t key[REPAIR_STREAM_KEY_MAX], size_t *key_len,
                       repair_stream_state_t *ss, errmsg_t *em)
{
    char tenant[STORAGE_TENANT_MAX + 1];
    Flamedb__Cluster__StreamWindow w;
    if (hashed_key(m, key, key_len, tenant, &w) != 0)
        return errmsg_set(em, ERR_CORRUPT, "window check: a hashed summary's key does not parse");
    if (w.window_s + (int64_t)storage_resolutions[w.res] > ss->fill_until) return 0;
    int64_t total = 0;
    int has = storage_window_total(r->storage, w.tenant, w.token, w.series_id, (int)w.res,
                                   w.window_s, &total);
    if (has < 0) return errmsg_set(em, has, "window total lookup failed");
    if (!has) return ss->fill_holds ? 0 : keys_put(ss->fill_want, &w, em); /* the union there */
    if (ss->fill_holds)
        ss->fill_matched[w.res] = (int64_t)((uint64_t)ss->fill_matched[w.res] + (uint64_t)total);
    int rc = 0;
    repair_keys_t *to = hashed_list(r, &w, ss, &rc);
    if (rc < 0) return errmsg_set(em, rc, "window profiles: %s", err_message(rc));
    return to != NULL ? keys_put(to, &w, em) : 0;
}

/* A walk of peer's old windows in [lo, hi] that stores nothing yet (a
 * probe), skipping the series in skip; NULL when out of memory. */
static repair_stream_state_t *probe_state(const char *peer, uint64_t lo, uint64_t hi,
                                          int64_t until_s, u64map_t *skip)
{
    repair_stream_state_t *ss = calloc(1, sizeof *ss);
    if (ss == NULL) return NULL;
    ss->lo = lo;
    ss->hi = hi;
    ss->fill_until = until_s != 0 ? until_s : -1;
    ss->fill_skip = skip;
    ss->fill_probe = 1;
    ss->fill_peer = peer;
    return ss;
}

/* ss walked again over keys (NULL: every window), from the start. */
static int walk_again(repair_t *r, const char *peer, repair_stream_state_t *ss,
                      const repair_keys_t *keys, repair_stats_t *st, errmsg_t *em)
{
    ss->done = 0;
    ss->after_len = 0;
    ss->fill_summary = 0;
    ss->fill_keys = keys;
    ss->fill_key_next = 0;
    return repair_stream_walk(r, peer, ss, st, NULL, em);
}

/* Key i of k. */
static ProtobufCBinaryData key_at(const repair_keys_t *k, size_t i)
{
    size_t from = i > 0 ? k->end[i - 1] : 0;
    return (ProtobufCBinaryData){k->end[i] - from, k->b.data + from};
}

/* a and b (each in key order) into one list in key order, into a; b is
 * left empty. */
static int keys_merge(repair_keys_t *a, repair_keys_t *b, errmsg_t *em)
{
    if (b->n == 0) return 0;
    repair_keys_t m = {0};
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < a->n || j < b->n)) {
        ProtobufCBinaryData x = i < a->n ? key_at(a, i) : (ProtobufCBinaryData){0, NULL};
        ProtobufCBinaryData y = j < b->n ? key_at(b, j) : (ProtobufCBinaryData){0, NULL};
        int c = i == a->n   ? 1
                : j == b->n ? -1
                            : memcmp(x.data, y.data, x.len < y.len ? x.len : y.len);
        if (c == 0) c = x.len < y.len ? -1 : x.len > y.len;
        int from_a = c <= 0;
        rc = keys_append(&m, from_a ? x : y, from_a ? a->series[i] : b->series[j], em);
        i += from_a;
        j += !from_a;
    }
    repair_keys_free(b);
    if (rc != 0) {
        repair_keys_free(&m);
        return rc;
    }
    repair_keys_free(a);
    *a = m;
    return 0;
}

/* The second look (stream protocol 3): the whole summaries (ids and all) of
 * the windows whose hashes differed, sorted as the first look sorts them
 * and merged into ss->fill_want and ss->fill_look, key order kept. */
static int ids_look(repair_t *r, const char *peer, repair_stream_state_t *ss, repair_stats_t *st,
                    errmsg_t *em)
{
    repair_keys_t want = {0}, look = {0};
    repair_keys_t *want0 = ss->fill_want, *look0 = ss->fill_look;
    ss->fill_want = want0 != NULL ? &want : NULL; /* a holds probe has none */
    ss->fill_look = &look;
    ss->done = 0;
    ss->after_len = 0;
    ss->fill_summary = 1;
    ss->fill_keys = ss->fill_ids;
    ss->fill_key_next = 0;
    int rc = repair_stream_walk(r, peer, ss, st, NULL, em);
    ss->fill_want = want0;
    ss->fill_look = look0;
    if (rc == 0 && want0 != NULL) rc = keys_merge(want0, &want, em);
    if (rc == 0) rc = keys_merge(look0, &look, em);
    repair_keys_free(&want);
    repair_keys_free(&look);
    return rc;
}

/* The windows found alike by the tree look t (bucket bits of its fanout
 * descended into; NULL: none) counted, and added to a holds probe's
 * matched totals. */
static void tree_alike(repair_t *r, repair_stream_state_t *ss, const repair_tree_look_t *t,
                       const uint8_t *bits)
{
    uint32_t f = bits != NULL ? t->fanout : 1;
    if (ss->fill_holds) repair_tree_alike_totals(&t->mine, f, bits, ss->fill_matched);
    uint64_t n = repair_tree_alike_count(&t->mine, f, bits);
    uv_mutex_lock(&r->mu);
    r->counters.fill_summaries += n;
    r->counters.fill_tree_alike += n;
    uv_mutex_unlock(&r->mu);
}

/* The first look in stream protocol 4: this node's tree root, then, where
 * the source's buckets differ from this node's, the hashed summaries of
 * their windows only, taken as protocol 3 takes them. A source of protocol
 * 3 answers the root's look with every window hashed (taken the same way).
 * 0 or a negative error; ss->done once walked to the end. */
static int tree_looks(repair_t *r, const char *peer, repair_stream_state_t *ss, repair_stats_t *st,
                      errmsg_t *em)
{
    repair_tree_look_t *t = calloc(1, sizeof *t);
    if (t == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    int rc = repair_tree_build(r->storage, ss->lo, ss->hi, ss->fill_until, &t->mine);
    if (rc != 0) rc = errmsg_set(em, rc, "window check: this node's tree: %s", err_message(rc));
    ss->fill_tree = t;
    if (rc == 0) rc = repair_stream_walk(r, peer, ss, st, NULL, em);
    if (rc == 0 && ss->done && !r->closing && t->answered == 2) { /* descend where they differ */
        size_t n =
            repair_tree_differ(&t->mine, t->theirs, t->fanout, t->inexact, t->n_inexact, t->want);
        t->descend = 1;
        ss->done = 0;
        ss->after_len = 0;
        if (n > 0)
            rc = repair_stream_walk(r, peer, ss, st, NULL, em);
        else
            ss->done = 1;
    }
    if (rc == 0 && ss->done && !r->closing && t->answered > 0)
        tree_alike(r, ss, t, t->descend ? t->want : NULL);
    ss->fill_tree = NULL;
    free(t);
    return rc;
}

/* The first look by summaries (hashed ones first, from a source that speaks
 * them, then the ids of the windows whose hashes differ), then the windows
 * of look compared (a probe), as each kind of source allows: 1 when the
 * looks walked to the end, 0 when not, or a negative error. On an older
 * source (no summaries), or when this node speaks stream protocol 1 only,
 * the probe walks every window, and want is left empty. */
static int first_looks(repair_t *r, const char *peer, repair_stream_state_t *ss, repair_stats_t *st,
                       errmsg_t *em)
{
    int rc = 0;
    if (r->o.stream_version >= REPAIR_STREAM_V_FILL) {
        ss->fill_summary = 1;
        ss->fill_hashes = r->o.stream_version >= REPAIR_STREAM_V_HASHES;
        if (r->o.stream_version >= REPAIR_STREAM_V_TREE && ss->fill_until > 0)
            rc = tree_looks(r, peer, ss, st, em);
        else
            rc = repair_stream_walk(r, peer, ss, st, NULL, em);
        ss->fill_hashes = 0;
        log_debug("repair", "fill of [%016llx, %016llx]: %s answered in stream protocol %u",
                  (unsigned long long)ss->lo, (unsigned long long)ss->hi, peer, ss->fill_version);
    } else {
        ss->fill_old = 1; /* as a node of protocol 1: every window, whole */
    }
    if (rc == 0 && ss->fill_old) { /* an older source: every window, as before */
        ss->fill_old = 0;
        rc = walk_again(r, peer, ss, NULL, st, em);
        ss->fill_want = NULL;
        return rc != 0 ? rc : ss->done && !r->closing;
    }
    if (rc != 0 || !ss->done || r->closing) return rc;
    ss->fill_no_match = 1; /* counted at the first look */
    if (ss->fill_ids != NULL && ss->fill_ids->n > 0) rc = ids_look(r, peer, ss, st, em);
    if (rc != 0 || !ss->done || r->closing) return rc;
    rc = walk_again(r, peer, ss, ss->fill_look, st, em);
    return rc != 0 ? rc : ss->done && !r->closing;
}

int repair_fill_interval(repair_t *r, const char *peer, uint64_t lo, uint64_t hi, int64_t until_s,
                         repair_stats_t *st, uint64_t *left_out, errmsg_t *em)
{
    u64map_t skip = {0};
    repair_keys_t want = {0}, look = {0}, ids = {0};
    repair_stream_state_t *ss = probe_state(peer, lo, hi, until_s, &skip);
    if (ss == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    ss->fill_want = &want;
    ss->fill_look = &look;
    ss->fill_ids = &ids;
    int rc = first_looks(r, peer, ss, st, em);
    int probed = rc == 1;
    rc = rc < 0 ? rc : 0;
    ss->fill_probe = 0;
    /* the windows it will store only (every window from an older source) */
    if (probed) rc = walk_again(r, peer, ss, ss->fill_want, st, em);
    uint64_t left = ss->fill_left + (rc == 0 && !ss->done && !r->closing);
    if (left > 0)
        log_info("repair",
                 "window check: fill of [%016llx, %016llx] from %s left %llu old window(s) "
                 "(with every other of their series): they name profiles whose trees are "
                 "kept, or came in parts that cannot be compared, or changed while sent "
                 "(compared again by the next check)",
                 (unsigned long long)lo, (unsigned long long)hi, peer, (unsigned long long)left);
    if (left_out != NULL) *left_out = left;
    u64map_free(&skip);
    repair_keys_free(&want);
    repair_keys_free(&look);
    repair_keys_free(&ids);
    free(ss);
    return rc;
}

int repair_fill_holds_interval(repair_t *r, const char *peer, uint64_t lo, uint64_t hi,
                               int64_t until_s, repair_stats_t *st, uint64_t *short_out,
                               int64_t matched[STORAGE_RESOLUTION_COUNT], errmsg_t *em)
{
    u64map_t skip = {0};
    repair_stream_state_t *ss = probe_state(peer, lo, hi, until_s, &skip);
    if (ss == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    repair_keys_t look = {0}, ids = {0};
    ss->fill_holds = 1;
    ss->fill_look = &look;
    ss->fill_ids = &ids;
    int rc = first_looks(r, peer, ss, st, em);
    rc = rc < 0 ? rc : 0;
    if (rc == 0 && (!ss->done || r->closing))
        rc = errmsg_set(em, ERR_INTERNAL, "the walk of %s's windows did not end", peer);
    *short_out = ss->fill_short;
    for (int i = 0; i < STORAGE_RESOLUTION_COUNT; i++)
        matched[i] = (int64_t)((uint64_t)matched[i] + (uint64_t)ss->fill_matched[i]);
    u64map_free(&skip);
    repair_keys_free(&look);
    repair_keys_free(&ids);
    free(ss);
    return rc;
}

int repair_fill_add(repair_t *r, const Flamedb__Cluster__StreamWindow *m, const calltree_t *whole,
                    const symtab_t *syms, repair_stream_state_t *ss, repair_stats_t *st,
                    errmsg_t *em)
{
    buf_t mine_v, delta;
    buf_init(&mine_v, BUF_UNLIMITED);
    buf_init(&delta, BUF_UNLIMITED);
    int64_t my_total = 0;
    int rel = relate(r, m, &mine_v, &my_total, NULL, NULL, &delta);
    calltree_t *mine = calltree_new(r->o.write.max_tree_nodes);
    calltree_t *theirs = calltree_new(r->o.write.max_tree_nodes);
    labels_t *lb = NULL;
    int rc = rel < 0 ? rel : mine != NULL && theirs != NULL ? 0 : ERR_NOMEM;
    int holds = rc == 0 && rel == STORAGE_WPROF_A_HOLDS_B;
    if (holds) rc = both_windows(r, m, mine, theirs);
    if (holds && rc == 0 && whole != NULL) { /* put together from parts */
        if ((rc = calltree_clear(theirs)) == 0) rc = calltree_merge(theirs, whole);
    }
    if (holds && rc == 0) rc = holds = tree_holds(theirs, mine); /* theirs less mine */
    if (holds > 0 && rc >= 0) rc = labels_decode(m->labels.data, m->labels.len, &lb);
    int stored = 0;
    if (holds > 0 && rc == 0) {
        storage_stream_window_t w = {.tenant = m->tenant,
                                     .token = m->token,
                                     .series_id = m->series_id,
                                     .res = (int)m->res,
                                     .window_s = m->window_s,
                                     .residual = theirs,
                                     .total = (int64_t)((uint64_t)m->total - (uint64_t)my_total),
                                     .wprof = delta.data,
                                     .wprof_len = delta.len,
                                     .add_to = mine_v.data,
                                     .add_to_len = mine_v.len};
        size_t bytes = 0;
        rc = storage_stream_store_sized(r->storage, &w, lb, syms, &stored, &bytes, em);
        st->stored += bytes;
    } else if (rc > 0) {
        rc = 0;
    }
    st->wc_filled += stored;
    ss->fill_left += rc == 0 && !stored; /* written here meanwhile: the next check compares */
    labels_free(lb);
    calltree_free(mine);
    calltree_free(theirs);
    buf_free(&mine_v);
    buf_free(&delta);
    return rc < 0 ? rc : 0;
}
