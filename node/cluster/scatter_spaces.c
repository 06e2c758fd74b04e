/* scatter_spaces.c — a coordinator's maps of its shares' id spaces
 * (scatter_spaces.h).
 *
 * A scope's tree is union.c's layout: node 0 the root, every other node a
 * (parent node, symbol) pair made on first sight, found through an
 * open-addressing index of (parent, symbol) -> node whose slot 0 means
 * empty (the root is nobody's child). Per peer, per nonce, a map turns the
 * peer's ids [0, held) into the tree's nodes. An answer is checked whole
 * (its encodings, then its repeated ids against the map) before anything
 * of it changes the tree, the map or the render's sums; only ERR_NOMEM (or
 * ERR_LIMIT, a tree of 2^32 nodes) can stop it later, and then the ids
 * mapped so far stay mapped (a consistent prefix) while the sums stay
 * untouched.
 *
 * Locks: the cache's mutex guards the scope list (LRU), each scope's refs
 * and counted bytes, the total and the stats; a scope's mutex guards its
 * tree, maps and peers, and the sums being added into. The two are never
 * held together: an add counts its scope's growth in the cache after it
 * has let go of the scope (bytes only grow while a scope lives, so the
 * cache keeps the largest count it was told).
 */
#include "node/cluster/scatter_spaces.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/list.h"
#include "common/pathidx.h"
#include "common/scale.h"
#include "common/simd.h"
#include "common/symtab.h"
#include "common/u64map.h"
#include "common/varint.h"

#define TREE_MIN_CAP 64
#define SLOTS_MIN 128
#define SYM_BYTES 8
/* node numbers are uint32_t and STORAGE_NO_KID is UINT32_MAX */
#define NODES_MAX ((size_t)UINT32_MAX - 1)

/* One (peer, nonce): the peer's ids [0, held) as the scope's nodes. */
typedef struct space {
    uint64_t nonce;
    uint64_t used; /* the scope's clock at its last add: larger is more recent */
    uint32_t *map;
    size_t held, cap;
} space_t;

typedef struct peer {
    char *name;
    space_t *spaces;
    size_t n, cap;
} peer_t;

struct scatter_scope {
    list_node_t lru; /* the cache's, most recently acquired first */
    scatter_spaces_t *cache;
    char *key;                  /* tenant, a NUL, service, a NUL */
    size_t key_len;             /* both strings and their NULs */
    int refs;                   /* under the cache's mutex */
    size_t counted;             /* bytes counted in the cache's total; under its mutex */
    struct scatter_scope *next; /* in a list of scopes to free (unlinked) */
    pthread_mutex_t mu;
    /* under mu: the tree, its index, the peers */
    uint32_t *parent;
    uint64_t *sym;
    uint32_t *symno; /* per node, its symbol's number: one per distinct symbol (the root's 0),
                        so a render's forest names each symbol once (query_kept_t.sid) */
    size_t count, cap;
    /* forests that read parent, sym and symno in place (the render's
     * forest: scatter_scope_forest_followed); while any does, a growing
     * tree moves to new arrays and keeps the old ones in retired until the
     * last such forest goes */
    int lent;
    void **retired;
    size_t nretired, retired_cap;
    u64map_t symnos; /* symbol -> its number (below symnos.len) */
    pathidx_t idx;   /* (parent, symbol) -> node */
    peer_t *peers;
    size_t npeers, peers_cap;
    uint64_t clock;
    /* the names (function and file) of the symbols shares listed with
     * their structure (a local share's loaded from this node's storage
     * as its structure is added): every one a map leads to has its name
     * here; NULL until one. Written under mu and names_rw (write), read
     * under names_rw (read): a render holds it while it writes an answer */
    symtab_t *names;
    pthread_rwlock_t names_rw;
};

/* A scope that outgrew the bound alone would send its shares' whole
 * structure at every render: its next SCOPE_REFUSED_RENDERS renders gather
 * forests instead (acquire gives no scope), then it is tried again. The
 * last SCOPE_REFUSED_KEPT such scopes are remembered, by their key's hash. */
#define SCOPE_REFUSED_KEPT 32
#define SCOPE_REFUSED_RENDERS 1000

typedef struct refused {
    uint64_t key;  /* hash_bytes64 of the scope's key; 0: a free slot */
    uint32_t left; /* renders still refused */
} refused_t;

struct scatter_spaces {
    pthread_mutex_t mu;
    size_t max_bytes;
    list_t lru;                   /* scopes, most recently acquired first */
    scatter_spaces_stats_t stats; /* stats.bytes: the scopes' counted bytes */
    refused_t refused[SCOPE_REFUSED_KEPT];
    size_t refused_next; /* the slot the next refusal takes (the oldest) */
};

/* An answer being added: its structure and values either encoded (tab
 * NULL) or a local forest's arrays, read through the same cursors. */
typedef struct answer {
    const char *peer;
    uint64_t nonce, base, count;
    uint64_t unit;                        /* encoded values are sent divided by it (>= 1) */
    const uint8_t *s, *s_end, *v, *v_end; /* encoded */
    const storage_merged_tab_t *tab;      /* or a forest's */
} answer_t;

typedef struct vcursor {
    const uint8_t *p;
    uint64_t next; /* the least id the next value may have */
} vcursor_t;

/* ---- the scope: its bytes, making and freeing ---- */

static size_t scope_bytes(const scatter_scope_t *sc)
{
    size_t b = sizeof *sc + sc->key_len +
               sc->cap * (sizeof *sc->parent + sizeof *sc->sym + sizeof *sc->symno) +
               pathidx_bytes(&sc->idx) + u64map_bytes(&sc->symnos) +
               sc->peers_cap * sizeof *sc->peers +
               (sc->names != NULL ? symtab_mem_bytes(sc->names) : 0);
    for (size_t i = 0; i < sc->npeers; i++) {
        const peer_t *p = &sc->peers[i];
        b += strlen(p->name) + 1 + p->cap * sizeof *p->spaces;
        for (size_t k = 0; k < p->n; k++)
            b += p->spaces[k].cap * sizeof *p->spaces[k].map;
    }
    return b;
}

static void scope_free(scatter_scope_t *sc)
{
    for (size_t i = 0; i < sc->npeers; i++) {
        for (size_t k = 0; k < sc->peers[i].n; k++)
            free(sc->peers[i].spaces[k].map);
        free(sc->peers[i].spaces);
        free(sc->peers[i].name);
    }
    free(sc->peers);
    symtab_free(sc->names);
    free(sc->parent);
    free(sc->sym);
    free(sc->symno);
    for (size_t i = 0; i < sc->nretired; i++)
        free(sc->retired[i]);
    free(sc->retired);
    u64map_free(&sc->symnos);
    pathidx_free(&sc->idx);
    free(sc->key);
    pthread_rwlock_destroy(&sc->names_rw);
    pthread_mutex_destroy(&sc->mu);
    free(sc);
}

/* A scope of the root alone. NULL: out of memory. */
static scatter_scope_t *scope_new(scatter_spaces_t *c, const char *tenant, const char *service)
{
    scatter_scope_t *sc = calloc(1, sizeof *sc);
    if (sc == NULL) return NULL;
    if (pthread_mutex_init(&sc->mu, NULL) != 0) {
        free(sc);
        return NULL;
    }
    if (pthread_rwlock_init(&sc->names_rw, NULL) != 0) {
        pthread_mutex_destroy(&sc->mu);
        free(sc);
        return NULL;
    }
    size_t t = strlen(tenant) + 1, s = strlen(service) + 1;
    sc->cache = c;
    sc->key_len = t + s;
    sc->key = malloc(t + s);
    sc->parent = malloc(TREE_MIN_CAP * sizeof *sc->parent);
    sc->sym = malloc(TREE_MIN_CAP * sizeof *sc->sym);
    sc->symno = malloc(TREE_MIN_CAP * sizeof *sc->symno);
    if (sc->key == NULL || sc->parent == NULL || sc->sym == NULL || sc->symno == NULL ||
        u64map_put(&sc->symnos, SYM_ROOT, 0) != 0) {
        scope_free(sc);
        return NULL;
    }
    memcpy(sc->key, tenant, t);
    memcpy(sc->key + t, service, s);
    sc->cap = TREE_MIN_CAP;
    sc->count = 1;
    sc->parent[0] = 0; /* never read: the root has no parent */
    sc->sym[0] = SYM_ROOT;
    sc->symno[0] = 0;
    return sc;
}

static int scope_is(const scatter_scope_t *sc, const char *tenant, const char *service)
{
    return strcmp(sc->key, tenant) == 0 && strcmp(sc->key + strlen(tenant) + 1, service) == 0;
}

/* ---- the cache ---- */

int scatter_spaces_new(size_t max_bytes, scatter_spaces_t **out)
{
    *out = NULL;
    if (max_bytes == 0) return 0;
    scatter_spaces_t *c = calloc(1, sizeof *c);
    if (c == NULL) return ERR_NOMEM;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return ERR_NOMEM;
    }
    c->max_bytes = max_bytes;
    list_init(&c->lru);
    *out = c;
    return 0;
}

void scatter_spaces_free(scatter_spaces_t *c)
{
    if (c == NULL) return;
    while (!list_empty(&c->lru)) {
        scatter_scope_t *sc = LIST_ENTRY(list_first(&c->lru), scatter_scope_t, lru);
        list_remove(&sc->lru);
        scope_free(sc);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static scatter_scope_t *scope_find(scatter_spaces_t *c, const char *tenant, const char *service)
{
    for (list_node_t *e = list_first(&c->lru); e != NULL; e = list_next(&c->lru, e)) {
        scatter_scope_t *sc = LIST_ENTRY(e, scatter_scope_t, lru);
        if (scope_is(sc, tenant, service)) return sc;
    }
    return NULL;
}

/* The hash a refused scope is remembered by (never 0). */
static uint64_t key_hash(const char *tenant, const char *service)
{
    uint64_t h =
        hash_bytes64(tenant, strlen(tenant) + 1) * 31 + hash_bytes64(service, strlen(service));
    return h != 0 ? h : 1;
}

/* 1 when the scope of key is refused for this render (one render fewer
 * left). Cache mutex held. */
static int refused_now(scatter_spaces_t *c, uint64_t key)
{
    for (size_t i = 0; i < SCOPE_REFUSED_KEPT; i++) {
        refused_t *r = &c->refused[i];
        if (r->key != key) continue;
        if (r->left == 0) {
            r->key = 0;
            return 0;
        }
        r->left--;
        c->stats.scopes_refused++;
        return 1;
    }
    return 0;
}

static void refuse(scatter_spaces_t *c, const scatter_scope_t *sc)
{
    const char *service = sc->key + strlen(sc->key) + 1;
    c->refused[c->refused_next] = (refused_t){key_hash(sc->key, service), SCOPE_REFUSED_RENDERS};
    c->refused_next = (c->refused_next + 1) % SCOPE_REFUSED_KEPT;
}

int scatter_spaces_acquire(scatter_spaces_t *c, const char *tenant, const char *service,
                           scatter_scope_t **out)
{
    *out = NULL;
    if (c == NULL) return 0;
    pthread_mutex_lock(&c->mu);
    if (refused_now(c, key_hash(tenant, service))) {
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    scatter_scope_t *sc = scope_find(c, tenant, service);
    if (sc == NULL) {
        sc = scope_new(c, tenant, service);
        if (sc == NULL) {
            pthread_mutex_unlock(&c->mu);
            return ERR_NOMEM;
        }
        sc->counted = scope_bytes(sc); /* nobody else sees it yet: no need for its lock */
        c->stats.bytes += sc->counted;
        c->stats.scopes_built++;
    } else {
        list_remove(&sc->lru);
    }
    list_push_front(&c->lru, &sc->lru);
    sc->refs++;
    pthread_mutex_unlock(&c->mu);
    *out = sc;
    return 0;
}

/* Unlinks sc (held by no render) onto *dropped, to be freed once the
 * cache's mutex is let go. Cache mutex held. */
static void drop(scatter_spaces_t *c, scatter_scope_t *sc, scatter_scope_t **dropped)
{
    list_remove(&sc->lru);
    c->stats.bytes -= sc->counted;
    c->stats.scopes_dropped++;
    sc->next = *dropped;
    *dropped = sc;
}

void scatter_spaces_release(scatter_spaces_t *c, scatter_scope_t *sc)
{
    if (c == NULL || sc == NULL) return;
    scatter_scope_t *dropped = NULL;
    pthread_mutex_lock(&c->mu);
    if (--sc->refs == 0 && sc->counted > c->max_bytes) {
        refuse(c, sc);
        drop(c, sc, &dropped);
    }
    list_node_t *e = list_last(&c->lru);
    while (c->stats.bytes > c->max_bytes && e != NULL) {
        scatter_scope_t *x = LIST_ENTRY(e, scatter_scope_t, lru);
        e = list_prev(&c->lru, e);
        if (x->refs == 0) drop(c, x, &dropped);
    }
    pthread_mutex_unlock(&c->mu);
    while (dropped != NULL) {
        scatter_scope_t *next = dropped->next;
        scope_free(dropped);
        dropped = next;
    }
}

void scatter_spaces_get_stats(scatter_spaces_t *c, scatter_spaces_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (c == NULL) return;
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

/* Counts sc's bytes now (measured under its lock, which is let go) in the
 * cache, and an answer added with `ids` ids of structure when ok. */
static void account(scatter_scope_t *sc, size_t bytes, int ok, uint64_t ids)
{
    scatter_spaces_t *c = sc->cache;
    pthread_mutex_lock(&c->mu);
    if (bytes > sc->counted) { /* a later add may have told a larger count first */
        c->stats.bytes += bytes - sc->counted;
        sc->counted = bytes;
    }
    if (ok) {
        c->stats.spaces_added++;
        c->stats.ids_received += ids;
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- peers and their spaces (scope lock held) ---- */

static peer_t *peer_find(scatter_scope_t *sc, const char *name)
{
    for (size_t i = 0; i < sc->npeers; i++)
        if (strcmp(sc->peers[i].name, name) == 0) return &sc->peers[i];
    return NULL;
}

static space_t *space_find(peer_t *p, uint64_t nonce)
{
    for (size_t i = 0; p != NULL && i < p->n; i++)
        if (p->spaces[i].nonce == nonce) return &p->spaces[i];
    return NULL;
}

static int peer_make(scatter_scope_t *sc, const char *name, peer_t **out)
{
    if (GROW(sc->peers, sc->peers_cap, sc->npeers + 1, GROW_UNLIMITED) != 0) return ERR_NOMEM;
    peer_t *p = &sc->peers[sc->npeers];
    memset(p, 0, sizeof *p);
    size_t n = strlen(name) + 1;
    if ((p->name = malloc(n)) == NULL) return ERR_NOMEM;
    memcpy(p->name, name, n);
    sc->npeers++;
    *out = p;
    return 0;
}

/* Drops p's least recently used space: a request lists at most
 * SCATTER_SPACES_KNOWN_MAX of a peer's, so one past them (a union the peer
 * rebuilt, a restart) is never named again. */
static void space_drop_oldest(peer_t *p)
{
    size_t old = 0;
    for (size_t i = 1; i < p->n; i++)
        if (p->spaces[i].used < p->spaces[old].used) old = i;
    free(p->spaces[old].map);
    p->spaces[old] = p->spaces[--p->n];
}

/* The space of (name, nonce), made holding the root alone when absent. */
static int space_get(scatter_scope_t *sc, const char *name, uint64_t nonce, space_t **out)
{
    peer_t *p = peer_find(sc, name);
    space_t *sp = space_find(p, nonce);
    if (sp != NULL) {
        *out = sp;
        return 0;
    }
    if (p == NULL && peer_make(sc, name, &p) != 0) return ERR_NOMEM;
    if (p->n >= SCATTER_SPACES_KNOWN_MAX) space_drop_oldest(p);
    if (GROW_FROM(p->spaces, p->cap, p->n + 1, GROW_UNLIMITED, 4) != 0) return ERR_NOMEM;
    sp = &p->spaces[p->n];
    memset(sp, 0, sizeof *sp);
    if (GROW_FROM(sp->map, sp->cap, 1, UINT32_MAX, 64) != 0) return ERR_NOMEM;
    sp->nonce = nonce;
    sp->map[0] = 0;
    sp->held = 1;
    sp->used = ++sc->clock; /* stamps stay distinct, so known orders them strictly */
    p->n++;
    *out = sp;
    return 0;
}

size_t scatter_scope_known(scatter_scope_t *sc, const char *peer, storage_space_known_t *out,
                           size_t max)
{
    if (sc == NULL) return 0;
    pthread_mutex_lock(&sc->mu);
    const peer_t *p = peer_find(sc, peer);
    size_t k = 0;
    /* a selection by stamp, max passes over a peer's few spaces: nothing to allocate */
    for (uint64_t below = UINT64_MAX; p != NULL && k < max; k++) {
        const space_t *best = NULL;
        for (size_t i = 0; i < p->n; i++)
            if (p->spaces[i].used < below && (best == NULL || p->spaces[i].used > best->used))
                best = &p->spaces[i];
        if (best == NULL) break;
        out[k] = (storage_space_known_t){best->nonce, best->held};
        below = best->used;
    }
    pthread_mutex_unlock(&sc->mu);
    return k;
}

/* ---- the tree: (parent, symbol) -> node (scope lock held) ---- */

/* The tree's arrays moved to new ones of cap entries, the old kept in
 * retired (a lent forest reads them): all three or none. */
static int tree_move(scatter_scope_t *sc, size_t cap)
{
    if (sc->nretired + 3 > sc->retired_cap) {
        size_t rcap = sc->retired_cap ? sc->retired_cap * 2 : 6;
        void **r = realloc(sc->retired, rcap * sizeof *r);
        if (r == NULL) return ERR_NOMEM;
        sc->retired = r;
        sc->retired_cap = rcap;
    }
    uint32_t *parent = malloc(cap * sizeof *parent), *symno = malloc(cap * sizeof *symno);
    uint64_t *sym = malloc(cap * sizeof *sym);
    if (parent == NULL || sym == NULL || symno == NULL) {
        free(parent);
        free(sym);
        free(symno);
        return ERR_NOMEM;
    }
    memcpy(parent, sc->parent, sc->count * sizeof *parent);
    memcpy(sym, sc->sym, sc->count * sizeof *sym);
    memcpy(symno, sc->symno, sc->count * sizeof *symno);
    sc->retired[sc->nretired++] = sc->parent;
    sc->retired[sc->nretired++] = sc->sym;
    sc->retired[sc->nretired++] = sc->symno;
    sc->parent = parent;
    sc->sym = sym;
    sc->symno = symno;
    sc->cap = cap;
    return 0;
}

/* Room in the tree's arrays for one more node; all grown or cap unchanged. */
static int tree_reserve(scatter_scope_t *sc)
{
    if (sc->count < sc->cap) return 0;
    if (sc->count >= NODES_MAX) return ERR_LIMIT;
    size_t cap = sc->cap * 2 < NODES_MAX ? sc->cap * 2 : NODES_MAX;
    if (sc->lent > 0) return tree_move(sc, cap);
    uint32_t *parent = realloc(sc->parent, cap * sizeof *parent);
    if (parent == NULL) return ERR_NOMEM;
    sc->parent = parent;
    uint64_t *sym = realloc(sc->sym, cap * sizeof *sym);
    if (sym == NULL) return ERR_NOMEM;
    sc->sym = sym;
    uint32_t *symno = realloc(sc->symno, cap * sizeof *symno);
    if (symno == NULL) return ERR_NOMEM;
    sc->symno = symno;
    sc->cap = cap;
    return 0;
}

/* The node (p, sym), made when absent. */
static int node_of(scatter_scope_t *sc, uint32_t p, uint64_t sym, uint32_t *out)
{
    int rc = pathidx_reserve(&sc->idx, sc->parent, sc->sym, sc->count, sc->count + 1, SLOTS_MIN);
    if (rc != 0) return rc;
    size_t i = pathidx_find(&sc->idx, sc->parent, sc->sym, p, sym);
    if (sc->idx.slot[i] != 0) {
        *out = sc->idx.slot[i];
        return 0;
    }
    if ((rc = tree_reserve(sc)) != 0) return rc;
    uint32_t no; /* a new symbol's number is the next one */
    if (u64map_get_or_put(&sc->symnos, sym, (uint32_t)sc->symnos.len, &no) < 0) return ERR_NOMEM;
    uint32_t x = (uint32_t)sc->count++;
    sc->parent[x] = p;
    sc->sym[x] = sym;
    sc->symno[x] = no;
    sc->idx.slot[i] = x;
    *out = x;
    return 0;
}

/* ---- reading an answer ---- */

static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The structure's entry of id (the next one at *p when encoded). */
static int entry_next(const answer_t *a, const uint8_t **p, uint64_t id, uint32_t *parent,
                      uint64_t *sym, errmsg_t *em)
{
    if (a->tab != NULL) {
        size_t i = (size_t)(id - a->base);
        *parent = a->tab->space_parent[i];
        *sym = a->tab->space_sym[i];
        if (*parent >= id)
            return errmsg_set(em, ERR_CORRUPT, "id space: id %llu's parent %u is not below it",
                              (unsigned long long)id, *parent);
        return 0;
    }
    uint64_t d;
    if (!varint_read_u(p, a->s_end, &d) || (size_t)(a->s_end - *p) < SYM_BYTES)
        return errmsg_set(em, ERR_CORRUPT, "id space: structure truncated at id %llu",
                          (unsigned long long)id);
    if (d == 0 || d > id)
        return errmsg_set(em, ERR_CORRUPT, "id space: id %llu's parent delta %llu not in [1, id]",
                          (unsigned long long)id, (unsigned long long)d);
    *parent = (uint32_t)(id - d);
    *sym = le64_get(*p);
    *p += SYM_BYTES;
    return 0;
}

/* The next value: 1 (*id, *val), 0 at the end, or an error. */
static int value_next(const answer_t *a, vcursor_t *c, uint64_t *id, int64_t *val, errmsg_t *em)
{
    if (a->tab != NULL) {
        const int64_t *self = a->tab->self;
        while (c->next < a->count && self[c->next] == 0) /* most are */
            c->next++;
        if (c->next == a->count) return 0;
        if (self[c->next] < 0)
            return errmsg_set(em, ERR_CORRUPT, "id space: id %llu's value is below 0",
                              (unsigned long long)c->next);
        *id = c->next++;
        *val = self[*id];
        return 1;
    }
    if (c->p == a->v_end) return 0;
    uint64_t d, v;
    if (!varint_read_u(&c->p, a->v_end, &d) || !varint_read_u(&c->p, a->v_end, &v))
        return errmsg_set(em, ERR_CORRUPT, "id space: values truncated");
    /* compared before adding: a delta that would wrap round is past count too */
    if (c->next >= a->count || d >= a->count - c->next)
        return errmsg_set(em, ERR_CORRUPT, "id space: a value's id is past count %llu",
                          (unsigned long long)a->count);
    if (v > (uint64_t)INT64_MAX / a->unit)
        return errmsg_set(em, ERR_CORRUPT, "id space: a value past INT64_MAX");
    *id = c->next + d;
    *val = (int64_t)(v * a->unit);
    c->next = *id + 1;
    return 1;
}

/* The structure's entries: count - base of them (none when count <= base). */
static uint64_t entries(const answer_t *a)
{
    return a->count > a->base ? a->count - a->base : 0;
}

/* Everything about a that needs nothing of the scope: the encodings whole. */
static int answer_check(const answer_t *a, errmsg_t *em)
{
    if (a->nonce == 0) return errmsg_set(em, ERR_CORRUPT, "id space: nonce 0");
    if (a->base == 0)
        return errmsg_set(em, ERR_CORRUPT, "id space: base 0 (the root is never sent)");
    if (a->count > (uint64_t)NODES_MAX + 1)
        return errmsg_set(em, ERR_CORRUPT, "id space: count %llu past 32-bit ids",
                          (unsigned long long)a->count);
    const uint8_t *p = a->s;
    uint32_t parent;
    uint64_t sym, id;
    for (uint64_t i = a->base; i < a->base + entries(a); i++) {
        int rc = entry_next(a, &p, i, &parent, &sym, em);
        if (rc != 0) return rc;
    }
    if (a->tab == NULL && p != a->s_end)
        return errmsg_set(em, ERR_CORRUPT, "id space: %zu bytes past the structure's %llu ids",
                          (size_t)(a->s_end - p), (unsigned long long)entries(a));
    if (a->tab == NULL || a->tab->nonneg) return 0; /* encoded: checked as they are added */
    vcursor_t c = {a->v, 0};
    int64_t val;
    int rc;
    do
        rc = value_next(a, &c, &id, &val, em);
    while (rc == 1);
    return rc;
}

/* ---- adding ---- */

/* Maps the ids the structure lists into sp: those held checked (all of
 * them come first, so a mismatch is found before anything changes), the
 * others found or made in the tree. */
static int map_ids(scatter_scope_t *sc, space_t *sp, const answer_t *a, errmsg_t *em)
{
    if (a->count > sp->held && GROW(sp->map, sp->cap, a->count, UINT32_MAX) != 0) return ERR_NOMEM;
    const uint8_t *p = a->s;
    for (uint64_t id = a->base; id < a->base + entries(a); id++) {
        uint32_t parent = 0, node; /* set unless entry_next fails: told to gcc -O3 */
        uint64_t sym = 0;
        int rc = entry_next(a, &p, id, &parent, &sym, em);
        if (rc != 0) return rc;
        if (id < sp->held) {
            node = sp->map[id];
            if (sc->parent[node] != sp->map[parent] || sc->sym[node] != sym)
                return errmsg_set(em, ERR_CORRUPT,
                                  "id space: id %llu differs from the one held of %s",
                                  (unsigned long long)id, a->peer);
            continue;
        }
        if ((rc = node_of(sc, sp->map[parent], sym, &node)) != 0) return rc;
        sp->map[id] = node;
        sp->held = (size_t)id + 1; /* ids mapped stay so when a later one fails */
    }
    return 0;
}

/* sums over n nodes, the new ones 0. */
static int sums_grow(scatter_sums_t *sums, size_t n)
{
    if (n <= sums->n) return 0;
    if (GROW_FROM(sums->v, sums->cap, n, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    memset(sums->v + sums->n, 0, (n - sums->n) * sizeof *sums->v);
    sums->n = n;
    return 0;
}

/* Walks the encoded values up to stop (the whole of them: v_end), adding
 * each through map into sum with sign +1 or -1 (taking back what an
 * earlier walk added), or with map NULL only checking them. *at: where
 * the walk stopped, at a broken or out-of-range entry (em says which,
 * ERR_CORRUPT) or at stop (0). */
static int values_walk(const uint32_t *map, const answer_t *a, const uint8_t *stop, int sign,
                       int64_t *sum, const uint8_t **at, errmsg_t *em)
{
    const uint8_t *p = a->v, *entry = p;
    uint64_t next = 0, d = 0, v = 0, count = a->count; /* set before use: told to gcc */
    uint64_t unit = a->unit, vmax = (uint64_t)INT64_MAX / unit;
    int rc = 0;
    for (; p < stop; entry = p) {
        if (!varint_read_u(&p, a->v_end, &d) || !varint_read_u(&p, a->v_end, &v)) {
            rc = errmsg_set(em, ERR_CORRUPT, "id space: values truncated");
        } else if (next >= count || d >= count - next) { /* a delta that wraps round too */
            rc = errmsg_set(em, ERR_CORRUPT, "id space: a value's id is past count %llu",
                            (unsigned long long)count);
        } else if (v > vmax) { /* times its unit */
            rc = errmsg_set(em, ERR_CORRUPT, "id space: a value past INT64_MAX");
        }
        if (rc != 0) break;
        next += d + 1;
        if (map == NULL) continue;
        v *= unit;
        int64_t *s = &sum[map[next - 1]]; /* wraps: the forest finds a total past INT64_MAX */
        *s = (int64_t)(sign > 0 ? (uint64_t)*s + v : (uint64_t)*s - v);
    }
    *at = rc != 0 ? entry : p;
    return rc;
}

/* a's values into sums through sp's map, all or nothing: encoded ones are
 * checked as they are added (one pass), and a broken one takes back what
 * came before it; a local forest's are >= 0 (t->nonneg, checked first). */
static int sums_add(const space_t *sp, const answer_t *a, scatter_sums_t *sums, errmsg_t *em)
{
    if (a->tab == NULL) {
        const uint8_t *at;
        int rc = values_walk(sp->map, a, a->v_end, 1, sums->v, &at, em);
        if (rc != 0) {
            errmsg_t ignored;
            const uint8_t *back; /* every entry before the broken one is good */
            values_walk(sp->map, a, at, -1, sums->v, &back, &ignored);
        }
        return rc;
    }
    const int64_t *self = a->tab->self;
    const uint32_t *map = sp->map;
    int64_t *sum = sums->v;
    for (size_t id = 0; id < a->count; id++)
        if (self[id] != 0) sum[map[id]] = (int64_t)((uint64_t)sum[map[id]] + (uint64_t)self[id]);
    return 0;
}

static int add_locked(scatter_scope_t *sc, const answer_t *a, scatter_sums_t *sums, errmsg_t *em)
{
    space_t *sp = space_find(peer_find(sc, a->peer), a->nonce);
    size_t held = sp != NULL ? sp->held : 1;
    if (a->base > held)
        return errmsg_set(em, ERR_CORRUPT, "id space: base %llu past the %zu ids held of %s",
                          (unsigned long long)a->base, held, a->peer);
    /* an answer of a new space or that brings ids of its own has its
     * values checked before anything is made or mapped (nothing changes for
     * a broken one); one over ids held already (the common case) is
     * checked as it is added */
    const uint8_t *at;
    int first = a->tab == NULL && (sp == NULL || a->count > held);
    int rc = first ? values_walk(NULL, a, a->v_end, 0, NULL, &at, em) : 0;
    if (rc == 0 && sp == NULL) rc = space_get(sc, a->peer, a->nonce, &sp);
    if (rc == 0) rc = map_ids(sc, sp, a, em);
    size_t n_before = sums->n;
    if (rc == 0) rc = sums_grow(sums, sc->count);
    if (rc == 0 && (rc = sums_add(sp, a, sums, em)) != 0)
        sums->n = n_before; /* what it grew by is 0s: the sums are as they were */
    if (rc == 0) {
        sp->used = ++sc->clock;
        sums->added = 1;
    }
    if (rc == ERR_NOMEM || rc == ERR_LIMIT)
        errmsg_set(em, rc, "id space: mapping %s's ids: %s", a->peer, err_message(rc));
    return rc;
}

static int scope_add(scatter_scope_t *sc, const answer_t *a, scatter_sums_t *sums, errmsg_t *em)
{
    if (sc == NULL) return errmsg_set(em, ERR_INVALID_ARGUMENT, "id space: no scope (none kept)");
    int rc = answer_check(a, em);
    if (rc != 0) return rc;
    pthread_mutex_lock(&sc->mu);
    rc = add_locked(sc, a, sums, em);
    size_t bytes = scope_bytes(sc);
    pthread_mutex_unlock(&sc->mu);
    account(sc, bytes, rc == 0, entries(a));
    return rc;
}

/* Takes sc's names to change them (mu, then names_rw to write: a render
 * holding them is waited for); made when there are none. */
static int names_lock(scatter_scope_t *sc)
{
    pthread_mutex_lock(&sc->mu);
    pthread_rwlock_wrlock(&sc->names_rw);
    return sc->names == NULL && (sc->names = symtab_new()) == NULL ? ERR_NOMEM : 0;
}

static void names_unlock(scatter_scope_t *sc)
{
    size_t bytes = scope_bytes(sc);
    pthread_rwlock_unlock(&sc->names_rw);
    pthread_mutex_unlock(&sc->mu);
    account(sc, bytes, 0, 0);
}

int scatter_scope_add_names(scatter_scope_t *sc, const scatter_names_sym_t *v, size_t n)
{
    if (sc == NULL || n == 0) return 0;
    int rc = names_lock(sc);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = symtab_put(sc->names, v[i].id, v[i].name, v[i].name_len, v[i].file, v[i].file_len);
    names_unlock(sc);
    return rc;
}

int scatter_scope_add_names_from(scatter_scope_t *sc, const symtab_t *src, const uint64_t *ids,
                                 size_t n)
{
    if (sc == NULL || n == 0) return 0;
    int rc = names_lock(sc);
    if (rc == 0) rc = symtab_put_from(sc->names, src, ids, n);
    names_unlock(sc);
    return rc;
}

int scatter_scope_names_get(scatter_scope_t *sc, const uint64_t *ids, size_t n, symtab_t *dst)
{
    if (sc == NULL) return 0;
    pthread_rwlock_rdlock(&sc->names_rw);
    int rc = sc->names != NULL ? symtab_put_from(dst, sc->names, ids, n) : 0;
    pthread_rwlock_unlock(&sc->names_rw);
    return rc;
}

const symtab_t *scatter_scope_names_hold(scatter_scope_t *sc)
{
    if (sc == NULL) return NULL;
    pthread_rwlock_rdlock(&sc->names_rw);
    return sc->names;
}

void scatter_scope_names_release(scatter_scope_t *sc)
{
    if (sc != NULL) pthread_rwlock_unlock(&sc->names_rw);
}

int scatter_scope_add(scatter_scope_t *sc, const scatter_space_answer_t *x, scatter_sums_t *sums,
                      errmsg_t *em)
{
    /* no pointer arithmetic on NULL (an empty buf_t's data) */
    answer_t a = {.peer = x->peer,
                  .nonce = x->nonce,
                  .base = x->base,
                  .count = x->count,
                  .unit = x->unit > 1 ? x->unit : 1,
                  .s = x->structure,
                  .s_end = x->slen ? x->structure + x->slen : x->structure,
                  .v = x->values,
                  .v_end = x->vlen ? x->values + x->vlen : x->values};
    return scope_add(sc, &a, sums, em);
}

int scatter_scope_add_tab(scatter_scope_t *sc, const char *peer, const storage_merged_tab_t *t,
                          scatter_sums_t *sums, errmsg_t *em)
{
    answer_t a = {.peer = peer,
                  .nonce = t->space_nonce,
                  .base = t->space_base,
                  .count = t->n,
                  .unit = 1,
                  .tab = t};
    return scope_add(sc, &a, sums, em);
}

/* ---- the forest ---- */

int scatter_scope_forest(scatter_scope_t *sc, scatter_sums_t *sums, storage_merged_tab_t *out,
                         errmsg_t *em)
{
    return scatter_scope_forest_followed(sc, sums, NULL, out, em);
}

/* A lent forest released: the arrays retired meanwhile go with the last
 * one, and the scope's reference it held. */
static void forest_released(void *arg)
{
    scatter_scope_t *sc = arg;
    pthread_mutex_lock(&sc->mu);
    if (--sc->lent == 0) {
        for (size_t i = 0; i < sc->nretired; i++)
            free(sc->retired[i]);
        sc->nretired = 0;
    }
    pthread_mutex_unlock(&sc->mu);
    scatter_spaces_release(sc->cache, sc);
}

int scatter_scope_forest_followed(scatter_scope_t *sc, scatter_sums_t *sums, storage_follow_t *f,
                                  storage_merged_tab_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (sc == NULL) {
        storage_follow_close(f);
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "id space: no scope (none kept)");
    }
    pthread_mutex_lock(&sc->cache->mu); /* the forest holds the scope: released with it */
    sc->refs++;
    pthread_mutex_unlock(&sc->cache->mu);
    pthread_mutex_lock(&sc->mu);
    int rc = sums_grow(sums, sc->count);
    size_t top = sc->count, nsyms = sc->symnos.len;
    while (rc == 0 && top > 1 && sums->v[top - 1] == 0) /* the forest ends at the last value */
        top--;
    const uint32_t *parent = sc->parent, *symno = sc->symno;
    const uint64_t *sym = sc->sym;
    sc->lent++; /* its first top entries stay where they are until it goes */
    pthread_mutex_unlock(&sc->mu);
    /* parents and least children: the gather cuts one such forest by its
     * totals (query/cut.c), as one node cuts its own union's; symbol
     * numbers: its kept nodes' names are looked up once per symbol. The
     * tree's arrays read in place (checked as answers made them), the
     * scope unlocked meanwhile: another render's answers may be added */
    if (rc == 0) {
        rc = storage_merged_tab_lent(parent, sym, symno, nsyms, sums->v, top, STORAGE_TABS_LEAST, 1,
                                     f, forest_released, sc, out);
    } else {
        storage_follow_close(f);
        free(sums->v);
        forest_released(sc);
    }
    sums->v = NULL; /* out's now (freed by storage_merged_tab_lent on failure) */
    sums->n = sums->cap = 0;
    if (rc != 0) return errmsg_set(em, rc, "id space: making the forest: %s", err_message(rc));
    if (!out->nonneg) return errmsg_set(em, ERR_LIMIT, "id space: a total passes INT64_MAX");
    return 0;
}

void scatter_sums_free(scatter_sums_t *sums)
{
    free(sums->v);
    memset(sums, 0, sizeof *sums);
}

/* ---- a share's side ---- */

/* Each entry is written where it goes: room for the longest of them all
 * is reserved first, and the length set once at the end. */
static int encode_structure(const storage_merged_tab_t *t, buf_t *out)
{
    size_t n = t->n > t->space_base ? t->n - t->space_base : 0;
    int rc = n > 0 ? buf_reserve(out, n * (5 + SYM_BYTES)) : 0; /* ids are 32-bit: 5 bytes */
    if (rc != 0 || n == 0) return rc;
    uint8_t *e = out->data + out->len;
    for (size_t id = t->space_base; id < t->n; id++) {
        uint32_t parent = t->space_parent[id - t->space_base];
        if (parent >= id) return ERR_INVALID_ARGUMENT; /* would not decode */
        e += varint_put_u(e, id - parent);
        uint64_t sym = t->space_sym[id - t->space_base];
        for (int i = 0; i < SYM_BYTES; i++, sym >>= 8)
            *e++ = (uint8_t)sym;
    }
    out->len = (size_t)(e - out->data);
    return 0;
}

/* Ids per word of encode_values' masks. */
#define MASK_IDS 64

/* Bit j of mask w set when self[64 w + j] is not 0 (no branch: the valued
 * ids come in no order); 1 when a value is below 0. Returns how many are
 * set through *valued. */
SIMD_CLONES static int value_masks(const int64_t *self, size_t n, uint64_t *mask, size_t *valued)
{
    size_t count = 0;
    uint64_t neg = 0;
    for (size_t w = 0; w < (n + MASK_IDS - 1) / MASK_IDS; w++) {
        size_t base = MASK_IDS * w, m = n - base < MASK_IDS ? n - base : MASK_IDS;
        uint64_t k = 0;
        for (size_t j = 0; j < m; j++) {
            k |= (uint64_t)(self[base + j] != 0) << j;
            neg |= (uint64_t)self[base + j];
        }
        mask[w] = k;
        count += (size_t)__builtin_popcountll(k);
    }
    *valued = count;
    return (neg >> 63) != 0;
}

/* The greatest common divisor of the valued ids' values (all > 0), 1 when
 * none: a division only where a value is no multiple of the divisor so
 * far (never, for a CPU profile's multiples of its sampling period). */
static uint64_t values_unit(const int64_t *self, const uint64_t *mask, size_t words)
{
    uint64_t g = 0;
    scale_divisor_t x = scale_divisor_of(1);
    for (size_t w = 0; w < words; w++)
        for (uint64_t m = mask[w]; m != 0; m &= m - 1) {
            uint64_t v = (uint64_t)self[MASK_IDS * w + (size_t)__builtin_ctzll(m)];
            if (g != 0 && scale_divides(&x, v)) continue;
            g = scale_add(g, v);
            if (g == 1) return 1;
            x = scale_divisor_of(g);
        }
    return g != 0 ? g : 1;
}

/* The values of non-zero self, each divided by *unit (their greatest
 * common divisor with scaled, else 1), room reserved for them first
 * (counted: 5 bytes of id gap, 10 of value at most each), the valued ids
 * found from bit masks rather than a branch per id. */
static int encode_values(const storage_merged_tab_t *t, int scaled, buf_t *out, uint64_t *unit)
{
    *unit = 1;
    size_t words = (t->n + MASK_IDS - 1) / MASK_IDS, valued;
    uint64_t *mask = malloc((words ? words : 1) * sizeof *mask);
    if (mask == NULL) return ERR_NOMEM;
    int rc = value_masks(t->self, t->n, mask, &valued) ? ERR_INVALID_ARGUMENT : 0; /* t->nonneg */
    if (rc == 0 && valued > 0) rc = buf_reserve(out, valued * 15);
    if (rc != 0 || valued == 0) {
        free(mask);
        return rc;
    }
    if (scaled) *unit = values_unit(t->self, mask, words);
    scale_divisor_t x = scale_divisor_of(*unit);
    uint8_t *e = out->data + out->len;
    size_t next = 0;
    for (size_t w = 0; w < words; w++)
        for (uint64_t m = mask[w]; m != 0; m &= m - 1) {
            size_t id = MASK_IDS * w + (size_t)__builtin_ctzll(m);
            e += varint_put_u(e, id - next);
            e += varint_put_u(e, scale_quotient(&x, (uint64_t)t->self[id]));
            next = id + 1;
        }
    out->len = (size_t)(e - out->data);
    free(mask);
    return 0;
}

int scatter_space_encode(const storage_merged_tab_t *t, int scaled, buf_t *structure, buf_t *values,
                         uint64_t *unit)
{
    *unit = 1;
    if (t->space_nonce == 0 || t->space_base == 0) return ERR_INVALID_ARGUMENT;
    int rc = encode_structure(t, structure);
    return rc != 0 ? rc : encode_values(t, scaled, values, unit);
}
