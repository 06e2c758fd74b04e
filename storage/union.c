/* union.c — one id space for the stack-node tables of several tokens.
 *
 * A service's series are spread over a few placement tokens (its shards),
 * each with a stack-node table of its own (nodetab.c): the same call path
 * has a different id in each. A render over the whole service used to make
 * one forest per token and merge them by symbol as it chose the kept nodes
 * (query/keep.c): three forests of 84,000 nodes for 33,000 merged ones.
 * A union gives the tokens' tables one shared numbering instead: union node
 * 0 is the root and every other is (parent union node, symbol), made in
 * order of first appearance, so parents come before children as in a
 * table, and a map per token turns each of its ids into its union node. A
 * merger then adds each token's summed values into one vector over the
 * union (one scattered addition per id) and makes one forest of it.
 *
 * Nothing of it is stored: a union is built from the tables in memory on
 * the first render of its set of tokens and extended to the ids the
 * tables gained since at each later one, under its own lock (taken before
 * any table's, so writers, which take only tables, never wait on it). A
 * table deleted or emptied (storage_node_generation moved) voids every
 * union made before: the next acquire builds it afresh.
 *
 * Unions are cached, bounded by storage_options_t.union_cache_bytes; past
 * it the least recently used ones not in use go first. A union that grows
 * past the bound alone is given up as it is built (its callers make a
 * forest per token, as before) and refused at once until the generation
 * moves.
 *
 * Each union has a nonce that names its id space (storage_union_nonce): a
 * reader that kept the structure of a union's ids from an earlier forest
 * (a query coordinator, per node) needs only the ids added since, as long
 * as the nonce is the same. Extending a union keeps it, since its ids
 * stay what they were; anything that numbers afresh (a union emptied for
 * a new generation or a failed extension, or made again after it was
 * dropped) draws a new one, never 0 and never one drawn before.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/list.h"
#include "common/pathidx.h"
#include "common/u64map.h"
#include "storage/storage_int.h"

/* The least a union takes per id of its tables: the id's entry in its
 * token's map. A union whose tables' ids would take more than the bound
 * that way is not begun; one that passes the bound as it is built (its
 * nodes take 16 bytes each plus 8 to 16 of index) is given up there. */
#define UNION_MAP_BYTES 4

struct nodeunion {
    list_node_t lru; /* union_cache_t.lru, most recently used first */
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t *tokens; /* ntok, ascending */
    size_t ntok;
    uint64_t gen;   /* storage_node_generation when built */
    uint64_t nonce; /* names its numbering: new whenever it is emptied */
    int refs;       /* under the cache's mutex */
    int void_;      /* dropped from the cache while in use: freed by the last release */
    size_t bytes;   /* counted in the cache's bytes */
    pthread_mutex_t lock;
    /* the union's nodes */
    uint32_t *parent;
    uint64_t *sym;
    uint32_t *symno;
    size_t count, cap;
    pathidx_t idx;   /* (parent, symbol) -> union node */
    uint64_t key;    /* key_hash of its tenant and tokens */
    size_t limit;    /* the cache's bound: no extension takes it past that */
    u64map_t syms;   /* symbol -> its number */
    uint64_t *by_no; /* number -> symbol (syms.len of them) */
    size_t by_no_cap;
    /* per token: its ids' union nodes, covering its table's first covered[i] ids */
    uint32_t **map;
    size_t *covered, *map_cap;
};

static size_t union_bytes(const nodeunion_t *u)
{
    size_t b = u->cap * (sizeof *u->parent + sizeof *u->sym + sizeof *u->symno) +
               pathidx_bytes(&u->idx) + u64map_bytes(&u->syms) + u->by_no_cap * sizeof *u->by_no +
               u->ntok * 8 + sizeof *u;
    for (size_t i = 0; i < u->ntok; i++)
        b += u->map_cap[i] * sizeof **u->map;
    return b;
}

static void union_free(nodeunion_t *u)
{
    if (u == NULL) return;
    for (size_t i = 0; u->map != NULL && i < u->ntok; i++)
        free(u->map[i]);
    free(u->map);
    free(u->covered);
    free(u->map_cap);
    free(u->tokens);
    free(u->parent);
    free(u->sym);
    free(u->symno);
    pathidx_free(&u->idx);
    free(u->by_no);
    u64map_free(&u->syms);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

/* A seed for the cache's nonces from the kernel's random source; when
 * that fails (no getrandom, a seccomp filter, its pool not ready yet: it
 * is not waited for) the clocks, the pid and where the cache lies, mixed,
 * which still differ between processes and restarts. */
static uint64_t nonce_seed(const void *where)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed) return seed;
    struct timespec rt = {0}, mt = {0};
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    uint64_t x = storage_mix64((uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec);
    x = storage_mix64(x ^ ((uint64_t)mt.tv_sec * 1000000000u + (uint64_t)mt.tv_nsec));
    x = storage_mix64(x ^ (uint64_t)getpid());
    return storage_mix64(x ^ (uint64_t)(uintptr_t)where);
}

/* The next nonce: splitmix64 of the seed at the next serial. The finalizer
 * is a bijection and the serials' steps (an odd constant) are distinct
 * modulo 2^64, so no two serials of one cache give the same nonce; 0, which
 * says "no id space", is skipped. Any thread, no lock. */
static uint64_t next_nonce(union_cache_t *c)
{
    for (;;) {
        uint64_t serial = atomic_fetch_add(&c->nonce_serial, 1) + 1;
        uint64_t x = storage_mix64(c->nonce_seed + serial * 0x9e3779b97f4a7c15ULL);
        if (x != 0) return x;
    }
}

/* Empties u to its root alone (built afresh by the next extension, so
 * under a new nonce: its ids will not be what they were). */
static void union_reset(nodeunion_t *u, uint64_t gen, uint64_t nonce)
{
    u->nonce = nonce;
    u->count = 0;
    pathidx_clear(&u->idx);
    u64map_clear(&u->syms);
    for (size_t i = 0; i < u->ntok; i++)
        u->covered[i] = 0;
    u->gen = gen;
}

static nodeunion_t *union_new(const char *tenant, const uint64_t *tokens, size_t n, uint64_t gen,
                              uint64_t nonce)
{
    nodeunion_t *u = calloc(1, sizeof *u);
    if (u == NULL) return NULL;
    pthread_mutex_init(&u->lock, NULL);
    snprintf(u->tenant, sizeof u->tenant, "%s", tenant);
    u->ntok = n;
    u->gen = gen;
    u->nonce = nonce;
    u->tokens = malloc(n * sizeof *u->tokens);
    u->map = calloc(n, sizeof *u->map);
    u->covered = calloc(n, sizeof *u->covered);
    u->map_cap = calloc(n, sizeof *u->map_cap);
    if (u->tokens == NULL || u->map == NULL || u->covered == NULL || u->map_cap == NULL ||
        u64map_init(&u->syms, 256) != 0) {
        union_free(u);
        return NULL;
    }
    memcpy(u->tokens, tokens, n * sizeof *tokens);
    return u;
}

int storage_union_cache_init(storage_t *s, size_t max_bytes)
{
    union_cache_t *c = &s->unions;
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    list_init(&c->lru);
    c->max_bytes = max_bytes;
    c->nonce_seed = nonce_seed(c);
    atomic_init(&c->nonce_serial, 0);
    return 0;
}

void storage_union_cache_free(storage_t *s)
{
    union_cache_t *c = &s->unions;
    if (c->lru.head.next == NULL) return; /* never made (a failed open) */
    while (!list_empty(&c->lru)) {
        nodeunion_t *u = LIST_ENTRY(list_first(&c->lru), nodeunion_t, lru);
        list_remove(&u->lru);
        union_free(u);
    }
    pthread_mutex_destroy(&c->mu);
}

void storage_union_cache_stats(storage_t *s, storage_stats_t *out)
{
    union_cache_t *c = &s->unions;
    pthread_mutex_lock(&c->mu);
    out->union_builds = c->builds;
    out->union_hits = c->hits;
    out->union_refused = c->refused;
    out->union_evictions = c->evictions;
    out->union_cache_bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

static int same_key(const nodeunion_t *u, const char *tenant, const uint64_t *tokens, size_t n)
{
    return u->ntok == n && strcmp(u->tenant, tenant) == 0 &&
           memcmp(u->tokens, tokens, n * sizeof *tokens) == 0;
}

/* Drops unions not in use, least recently used first, until the cache is
 * within its bound. Cache mutex held. */
static void union_evict(union_cache_t *c)
{
    list_node_t *e = list_last(&c->lru);
    while (c->bytes > c->max_bytes && e != NULL) {
        nodeunion_t *u = LIST_ENTRY(e, nodeunion_t, lru);
        e = list_prev(&c->lru, e);
        if (u->refs > 0) continue;
        list_remove(&u->lru);
        c->bytes -= u->bytes;
        c->evictions++;
        union_free(u);
    }
}

static uint64_t key_hash(const char *tenant, const uint64_t *tokens, size_t n)
{
    return hash_bytes64(tokens, n * sizeof *tokens) ^ hash_bytes64(tenant, strlen(tenant));
}

/* 1 when the union of key was refused in this generation (it would not
 * fit): refused again at once, not built to find it out. Cache mutex held. */
static int was_refused(const union_cache_t *c, uint64_t key, uint64_t gen)
{
    for (size_t i = 0; i < UNION_REFUSALS; i++)
        if (c->refusal_key[i] == key && c->refusal_gen[i] == gen + 1) return 1;
    return 0;
}

static void note_refusal(union_cache_t *c, uint64_t key, uint64_t gen)
{
    size_t i = c->refusal_next++ % UNION_REFUSALS;
    c->refusal_key[i] = key;
    c->refusal_gen[i] = gen + 1; /* 0: an empty entry */
    c->refused++;
}

int storage_union_acquire(storage_t *s, const char *tenant, const uint64_t *tokens, size_t n,
                          size_t ids, nodeunion_t **out)
{
    union_cache_t *c = &s->unions;
    *out = NULL;
    uint64_t gen = storage_node_generation(s), key = key_hash(tenant, tokens, n);
    pthread_mutex_lock(&c->mu);
    nodeunion_t *u = NULL;
    for (list_node_t *e = list_first(&c->lru); e != NULL; e = list_next(&c->lru, e)) {
        nodeunion_t *x = LIST_ENTRY(e, nodeunion_t, lru);
        if (same_key(x, tenant, tokens, n)) {
            u = x;
            break;
        }
    }
    /* one that could outgrow the bound alone is not built (nor kept) */
    if (was_refused(c, key, gen) || (size_t)ids > c->max_bytes / UNION_MAP_BYTES) {
        if (u != NULL && u->refs == 0) { /* the tables outgrew it: room for others */
            list_remove(&u->lru);
            c->bytes -= u->bytes;
            union_free(u);
        }
        note_refusal(c, key, gen);
        pthread_mutex_unlock(&c->mu);
        return ERR_LIMIT;
    }
    if (u == NULL) {
        u = union_new(tenant, tokens, n, gen, next_nonce(c));
        if (u == NULL) {
            pthread_mutex_unlock(&c->mu);
            return ERR_NOMEM;
        }
        u->key = key;
        c->builds++;
    } else {
        list_remove(&u->lru);
        c->hits++;
    }
    list_push_front(&c->lru, &u->lru);
    u->refs++;
    size_t limit = c->max_bytes;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&u->lock);
    u->limit = limit;
    if (u->gen != gen) { /* a table was deleted or emptied since */
        union_reset(u, gen, next_nonce(c));
        pthread_mutex_lock(&c->mu);
        c->builds++;
        pthread_mutex_unlock(&c->mu);
    }
    *out = u;
    return 0;
}

void storage_union_release(storage_t *s, nodeunion_t *u, int failed)
{
    union_cache_t *c = &s->unions;
    uint64_t gen = u->gen;
    if (failed) union_reset(u, 0, next_nonce(c)); /* half extended: built afresh next time */
    size_t bytes = union_bytes(u);
    pthread_mutex_unlock(&u->lock);
    pthread_mutex_lock(&c->mu);
    c->bytes += bytes - u->bytes;
    u->bytes = bytes;
    u->refs--;
    if (failed == STORAGE_UNION_TOO_LARGE) { /* not again in this generation */
        note_refusal(c, u->key, gen);
        if (u->refs == 0) {
            list_remove(&u->lru);
            c->bytes -= u->bytes;
            union_free(u);
        }
    }
    union_evict(c);
    pthread_mutex_unlock(&c->mu);
}

/* A new union node (parent p, symbol sym) at index slot `slot`. */
static int union_node(nodeunion_t *u, size_t slot, uint32_t p, uint64_t sym, uint32_t *out)
{
    if (u->count >= UINT32_MAX - 1) return ERR_LIMIT;
    if (u->count == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 1024;
        uint32_t *parent = realloc(u->parent, cap * sizeof *parent);
        if (parent != NULL) u->parent = parent;
        uint64_t *syms = parent != NULL ? realloc(u->sym, cap * sizeof *syms) : NULL;
        if (syms != NULL) u->sym = syms;
        uint32_t *symno = syms != NULL ? realloc(u->symno, cap * sizeof *symno) : NULL;
        if (symno == NULL) return ERR_NOMEM;
        u->symno = symno;
        u->cap = cap;
        if (union_bytes(u) > u->limit) return ERR_LIMIT;
    }
    uint32_t id = (uint32_t)u->count, no;
    if (u->syms.len == u->by_no_cap &&
        GROW_FROM(u->by_no, u->by_no_cap, u->syms.len + 1, GROW_UNLIMITED, 256) != 0)
        return ERR_NOMEM;
    int put = u64map_get_or_put(&u->syms, sym, (uint32_t)u->syms.len, &no);
    if (put < 0) return ERR_NOMEM;
    if (put == 1) u->by_no[no] = sym;
    u->parent[id] = p;
    u->sym[id] = sym;
    u->symno[id] = no;
    if (id > 0) u->idx.slot[slot] = id;
    u->count++;
    *out = id;
    return 0;
}

int storage_union_map(nodeunion_t *u, size_t i, const nodetab_t *t, const uint32_t **map)
{
    size_t count = storage_nodetab_count(t), from = u->covered[i];
    if (count < from) return ERR_CORRUPT; /* the table shrank without a new generation */
    if (u->count == 0) {                  /* the root, whatever the tables hold */
        uint32_t root;
        int rc = union_node(u, 0, 0, SYM_ROOT, &root);
        if (rc != 0) return rc;
    }
    if (count > from) {
        if (GROW_FROM(u->map[i], u->map_cap[i], count, UINT32_MAX, 1024) != 0) return ERR_NOMEM;
        if (union_bytes(u) > u->limit) return ERR_LIMIT;
        const uint32_t *parent = storage_nodetab_parents(t);
        const uint64_t *sym = storage_nodetab_syms(t);
        uint32_t *m = u->map[i];
        for (size_t id = from; id < count; id++) {
            if (id == 0) {
                m[0] = 0;
                continue;
            }
            if (pathidx_reserve(&u->idx, u->parent, u->sym, u->count, u->count + 1, 1024) != 0)
                return ERR_NOMEM;
            uint32_t p = m[parent[id]]; /* a parent's id is below its children's */
            size_t slot = pathidx_find(&u->idx, u->parent, u->sym, p, sym[id]);
            uint32_t node = u->idx.slot[slot];
            if (node == 0) {
                int rc = union_node(u, slot, p, sym[id], &node);
                if (rc != 0) return rc;
            }
            m[id] = node;
            u->covered[i] = id + 1; /* ids mapped stay so when a later one fails */
        }
        u->covered[i] = count;
    }
    *map = u->map[i];
    return 0;
}

uint64_t storage_union_generation(const nodeunion_t *u)
{
    return u->gen;
}

uint64_t storage_union_nonce(const nodeunion_t *u)
{
    return u->nonce;
}

size_t storage_union_count(const nodeunion_t *u)
{
    return u->count;
}

const uint32_t *storage_union_parents(const nodeunion_t *u)
{
    return u->parent;
}

const uint64_t *storage_union_syms(const nodeunion_t *u)
{
    return u->sym;
}

const uint32_t *storage_union_symnos(const nodeunion_t *u, uint32_t *nsyms)
{
    *nsyms = (uint32_t)u->syms.len;
    return u->symno;
}

const uint64_t *storage_union_symbols(const nodeunion_t *u, size_t *n)
{
    *n = u->syms.len;
    return u->by_no;
}
