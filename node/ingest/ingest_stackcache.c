/* ingest_stackcache.c — the stacks earlier pushes stored, by content.
 *
 * A stack is keyed by 128 bits made from its frames' symbol ids (content:
 * function and file, the same in every push), the tenant and the token of
 * the series' stack-node table; the entry is the stack-node id storage gave
 * it (storage_profile_write_t.mapped). The table holds the ids of one node
 * generation (storage_node_generation), the newest a put has named: a
 * lookup in another generation misses, a put of an older one is dropped,
 * and a put of a newer one empties the table first (generations move when a
 * batch with new ids fails or gc deletes a table: rarely). A slot is 16
 * bytes: 96 bits of the key (k1, and k0's high half; k0's low bits chose
 * its line) and the id. Four-way: a key may sit in any slot of its line
 * (the table is aligned, map_slots); a put takes the slot holding the key,
 * else an empty one, else one of the four by the key's bits, so the bytes
 * stay those given at creation. Lines are striped: a put holds its
 * stripe's mutex and makes the stripe's count odd while it writes; a lookup
 * takes no lock (two pool threads taking the same mutexes moved their cache
 * lines between the cores at every lookup) and reads the count before and
 * after its loads, a miss when a put was writing meanwhile (rare: a miss
 * only costs the stack's tree). Emptying the table holds every stripe.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "node/ingest/ingest_int.h"

#define STRIPES 64
#define WAYS 4 /* slots of a line */

typedef struct entry {
    uint64_t k1;
    uint32_t k0hi; /* k0 >> 32 */
    uint32_t id1;  /* the id + 1; 0: empty */
} entry_t;

/* A stripe on a cache line of its own: a put's writes move only its line. */
typedef struct stripe {
    _Alignas(64) pthread_mutex_t mu; /* puts, and emptying the table */
    atomic_uint seq;                 /* odd while a put or emptying writes */
} stripe_t;

struct ingest_stack_cache {
    storage_t *storage;
    entry_t *slots;
    size_t mask;  /* slots - 1 (a power of two) */
    uint64_t gen; /* of every id held; written holding every stripe, count odd */
    stripe_t st[STRIPES];
};

/* The table's memory, zeroed by the kernel (as calloc), or NULL. Aligned:
 * a line's slots are one cache line only when the table starts on a line
 * (calloc's block of this size starts 16 bytes past a page, which split
 * every line's slots over two, two misses a lookup); and a table of 2 MiB
 * and more starts on a 2 MiB boundary and asks for huge pages, which the
 * kernel gives only to whole aligned 2 MiB extents: a lookup is a random
 * slot of the whole table, with 4 KiB pages a TLB miss besides the cache
 * miss. Freed with munmap(slots, bytes). */
static entry_t *map_slots(size_t bytes)
{
    size_t huge = (size_t)2 << 20, extra = bytes >= huge ? huge : 0;
    uint8_t *p =
        mmap(NULL, bytes + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (extra == 0) return (entry_t *)p;
    uint8_t *q = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    /* the unaligned head and tail back (unmapping part of our own mapping
     * fails only on bad arguments; a failure would keep them mapped) */
    if (q > p) (void)munmap(p, (size_t)(q - p));
    if (q + bytes < p + bytes + extra)
        (void)munmap(q + bytes, (size_t)(p + bytes + extra - (q + bytes)));
#ifdef MADV_HUGEPAGE
    (void)madvise(q, bytes, MADV_HUGEPAGE); /* advice: 4 KiB pages work as well */
#endif
    return (entry_t *)q;
}

int ingest_stack_cache_new(storage_t *storage, size_t max_bytes, ingest_stack_cache_t **out)
{
    *out = NULL;
    size_t n = WAYS;
    while (n * 2 * sizeof(entry_t) <= max_bytes)
        n *= 2;
    if (n * sizeof(entry_t) > max_bytes) return 0; /* too small to hold a line: off */
    ingest_stack_cache_t *c = aligned_alloc(_Alignof(ingest_stack_cache_t), sizeof *c);
    if (c == NULL) return ERR_NOMEM;
    memset(c, 0, sizeof *c); /* the counts even: nobody writing */
    c->slots = map_slots(n * sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return ERR_NOMEM;
    }
    c->storage = storage;
    c->mask = n - 1;
    c->gen = storage_node_generation(storage);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->st[i].mu, NULL);
    *out = c;
    return 0;
}

void ingest_stack_cache_free(ingest_stack_cache_t *c)
{
    if (c == NULL) return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->st[i].mu);
    (void)munmap(c->slots, (c->mask + 1) * sizeof *c->slots); /* as free(): nothing to tell */
    free(c);
}

size_t ingest_stack_cache_bytes(const ingest_stack_cache_t *c)
{
    return c != NULL ? (c->mask + 1) * sizeof(entry_t) : 0;
}

uint64_t ingest_stack_cache_gen(const ingest_stack_cache_t *c)
{
    return storage_node_generation(c->storage);
}

/* The first slot of k's line, and the stripe guarding it. */
static size_t line_of(const ingest_stack_cache_t *c, const stack_key_t *k)
{
    return k->k0 & c->mask & ~(size_t)(WAYS - 1);
}

static stripe_t *stripe_of(ingest_stack_cache_t *c, size_t line)
{
    return &c->st[(line / WAYS) % STRIPES];
}

/* Slots are read while a put may write them: relaxed atomic loads and
 * stores, ordered by the stripe's count (a seqlock). */
static inline uint64_t load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void store_entry(entry_t *e, uint64_t k1, uint32_t k0hi, uint32_t id1)
{
    __atomic_store_n(&e->k1, k1, __ATOMIC_RELAXED);
    __atomic_store_n(&e->k0hi, k0hi, __ATOMIC_RELAXED);
    __atomic_store_n(&e->id1, id1, __ATOMIC_RELAXED);
}

/* Makes st's count odd (writing) or even again; under its mutex. */
static void write_begin(stripe_t *st)
{
    atomic_store_explicit(&st->seq, atomic_load_explicit(&st->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(stripe_t *st)
{
    atomic_store_explicit(&st->seq, atomic_load_explicit(&st->seq, memory_order_relaxed) + 1,
                          memory_order_release);
}

bool ingest_stack_cache_get(ingest_stack_cache_t *c, const stack_key_t *k, uint64_t gen,
                            uint32_t *id)
{
    size_t i = line_of(c, k);
    uint32_t hi = (uint32_t)(k->k0 >> 32), found = 0;
    stripe_t *st = stripe_of(c, i);
    unsigned seq = atomic_load_explicit(&st->seq, memory_order_acquire);
    if (seq & 1) return false; /* a put is writing */
    if (gen != load64(&c->gen)) return false;
    for (size_t j = i; j < i + WAYS && found == 0; j++) {
        const entry_t *e = &c->slots[j];
        uint32_t id1 = load32(&e->id1);
        if (id1 != 0 && load64(&e->k1) == k->k1 && load32(&e->k0hi) == hi) found = id1;
    }
    atomic_thread_fence(memory_order_acquire);
    if (found == 0 || atomic_load_explicit(&st->seq, memory_order_relaxed) != seq) return false;
    *id = found - 1;
    return true;
}

void ingest_stack_cache_prefetch(const ingest_stack_cache_t *c, const stack_key_t *k)
{
    if (c == NULL) return;
    __builtin_prefetch(&c->slots[line_of(c, k)]); /* the line */
}

/* Empties the table for generation gen, unless it holds gen or a newer one
 * already. Takes every stripe, in order (a put holds none when it calls). */
static void renew(ingest_stack_cache_t *c, uint64_t gen)
{
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&c->st[i].mu);
        write_begin(&c->st[i]);
    }
    if (c->gen < gen) {
        for (size_t j = 0; j <= c->mask; j++)
            store_entry(&c->slots[j], 0, 0, 0);
        __atomic_store_n(&c->gen, gen, __ATOMIC_RELAXED);
    }
    for (int i = STRIPES - 1; i >= 0; i--) {
        write_end(&c->st[i]);
        pthread_mutex_unlock(&c->st[i].mu);
    }
}

void ingest_stack_cache_put(ingest_stack_cache_t *c, const stack_key_t *k, uint64_t gen,
                            uint32_t id)
{
    if (id == UINT32_MAX) return; /* id + 1 would be 0 (no table has so many nodes) */
    size_t i = line_of(c, k);
    uint32_t hi = (uint32_t)(k->k0 >> 32);
    stripe_t *st = stripe_of(c, i);
    pthread_mutex_lock(&st->mu);
    if (c->gen < gen) {
        pthread_mutex_unlock(&st->mu);
        renew(c, gen);
        pthread_mutex_lock(&st->mu);
    }
    if (c->gen != gen) { /* an older generation's id: nobody may use it */
        pthread_mutex_unlock(&st->mu);
        return;
    }
    entry_t *e = c->slots + i;
    size_t at = k->k1 % WAYS; /* all four held: one by the key's bits */
    for (size_t j = 0; j < WAYS; j++)
        if (e[j].id1 != 0 && e[j].k1 == k->k1 && e[j].k0hi == hi) {
            at = j; /* the key again */
            break;
        } else if (e[j].id1 == 0)
            at = j;
    write_begin(st);
    store_entry(&e[at], k->k1, hi, id + 1);
    write_end(st);
    pthread_mutex_unlock(&st->mu);
}

/* Two independent 64-bit mixes (splitmix64's finalizer, and one with
 * other constants), so a key is 128 bits of the stack. */
static inline uint64_t mix_a(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t mix_b(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* One frame into a lane of the key: XXH64's round (a multiply, a rotate,
 * a multiply), the finalizers applied once a stack. */
static inline uint64_t round_a(uint64_t acc, uint64_t sym)
{
    acc += sym * 0xc2b2ae3d27d4eb4full;
    acc = (acc << 31) | (acc >> 33);
    return acc * 0x9e3779b185ebca87ull;
}

static inline uint64_t round_b(uint64_t acc, uint64_t sym)
{
    acc ^= sym * 0x165667b19e3779f9ull;
    acc = (acc << 27) | (acc >> 37);
    return acc * 0x85ebca77c2b2ae63ull + 0x27d4eb2f165667c5ull;
}

void ingest_stack_key(stack_key_t *k, uint64_t tenant_hash, const symtab_t *symtab,
                      const uint32_t *stack, size_t depth)
{
    uint64_t a = tenant_hash ^ 0x9e3779b97f4a7c15ull, b = ~tenant_hash;
    for (size_t i = 0; i < depth; i++) {
        uint64_t sym = symtab_id_at(symtab, stack[i] - 1); /* push index i + 1: entry i */
        a = round_a(a, sym);
        b = round_b(b, sym);
    }
    k->k0 = mix_a(a + depth);
    k->k1 = mix_b(b ^ depth);
}

void ingest_stack_key_at(stack_key_t *out, const stack_key_t *k, uint64_t token)
{
    out->k0 = mix_a(k->k0 ^ token);
    out->k1 = mix_b(k->k1 ^ mix_a(token + 0x632be59bd9b4e019ull));
}
