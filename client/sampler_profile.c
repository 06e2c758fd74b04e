/* sampler_profile.c — stacks counted by address, names from dladdr, pprof out.
 *
 * Three open-addressing tables (sizes powers of two, at most half full):
 * stacks (frames -> count, this interval), addresses (address -> name and,
 * during one encode, its location id; kept for the sampler's life) and names
 * (string -> id, kept). A pprof location is one address, a function one name.
 */
#define _GNU_SOURCE
#include "client/sampler_profile.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

typedef struct addr_entry {
    uintptr_t addr;
    uint32_t name;  /* index into names */
    uint32_t loc;   /* location id in the encode of epoch */
    uint32_t epoch; /* 0: slot empty */
} addr_entry_t;

struct flamedb_sampler_profile {
    uintptr_t *pool; /* frames of every stack, back to back */
    size_t pool_len, pool_cap;
    size_t *stk_off, *stk_depth;
    uint64_t *stk_count;
    size_t nstk, stk_cap;
    uint32_t *stk_idx; /* stack index + 1, 0 empty */
    size_t stk_idx_cap;
    uint64_t samples;
    addr_entry_t *addrs;
    size_t naddr, addr_cap;
    char **names;
    size_t nname, name_cap;
    uint32_t *name_idx; /* name index + 1, 0 empty */
    size_t name_idx_cap;
    uint32_t epoch;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 31);
}

static uint64_t hash_frames(const uintptr_t *f, size_t n)
{
    uint64_t h = n;
    for (size_t i = 0; i < n; i++)
        h = mix(h, f[i]);
    return h;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return mix(h, 0);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return ERR_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return ERR_NOMEM;
    *p = q;
    *cap = n;
    return ERR_OK;
}

flamedb_sampler_profile_t *flamedb_sampler_profile_new(void)
{
    return calloc(1, sizeof(flamedb_sampler_profile_t));
}

void flamedb_sampler_profile_free(flamedb_sampler_profile_t *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nname; i++)
        free(p->names[i]);
    free(p->names);
    free(p->name_idx);
    free(p->addrs);
    free(p->pool);
    free(p->stk_off);
    free(p->stk_depth);
    free(p->stk_count);
    free(p->stk_idx);
    free(p);
}

void flamedb_sampler_profile_reset(flamedb_sampler_profile_t *p)
{
    p->pool_len = p->nstk = 0;
    p->samples = 0;
    if (p->stk_idx) memset(p->stk_idx, 0, p->stk_idx_cap * sizeof *p->stk_idx);
}

uint64_t flamedb_sampler_profile_samples(const flamedb_sampler_profile_t *p)
{
    return p->samples;
}

/* Rebuilds the stack index at twice the size (or 1024 slots first). */
static int stk_rehash(flamedb_sampler_profile_t *p)
{
    size_t cap = p->stk_idx_cap ? p->stk_idx_cap * 2 : 1024;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx) return ERR_NOMEM;
    for (size_t i = 0; i < p->nstk; i++) {
        size_t j = hash_frames(p->pool + p->stk_off[i], p->stk_depth[i]) & (cap - 1);
        while (idx[j])
            j = (j + 1) & (cap - 1);
        idx[j] = (uint32_t)i + 1;
    }
    free(p->stk_idx);
    p->stk_idx = idx;
    p->stk_idx_cap = cap;
    return ERR_OK;
}

static int stk_append(flamedb_sampler_profile_t *p, const uintptr_t *frames, size_t depth,
                      uint64_t weight, size_t slot)
{
    size_t c = p->stk_cap;
    if (grow((void **)&p->pool, &p->pool_cap, p->pool_len + depth, sizeof *p->pool) ||
        grow((void **)&p->stk_off, &c, p->nstk + 1, sizeof *p->stk_off))
        return ERR_NOMEM;
    c = p->stk_cap;
    if (grow((void **)&p->stk_depth, &c, p->nstk + 1, sizeof *p->stk_depth)) return ERR_NOMEM;
    c = p->stk_cap;
    if (grow((void **)&p->stk_count, &c, p->nstk + 1, sizeof *p->stk_count)) return ERR_NOMEM;
    p->stk_cap = c;
    memcpy(p->pool + p->pool_len, frames, depth * sizeof *frames);
    p->stk_off[p->nstk] = p->pool_len;
    p->stk_depth[p->nstk] = depth;
    p->stk_count[p->nstk] = weight;
    p->pool_len += depth;
    p->stk_idx[slot] = (uint32_t)++p->nstk;
    return ERR_OK;
}

int flamedb_sampler_profile_add(flamedb_sampler_profile_t *p, const uintptr_t *frames, size_t depth,
                                uint64_t weight)
{
    if ((p->nstk + 1) * 2 > p->stk_idx_cap && stk_rehash(p)) return ERR_NOMEM;
    size_t mask = p->stk_idx_cap - 1, j = hash_frames(frames, depth) & mask;
    for (; p->stk_idx[j]; j = (j + 1) & mask) {
        size_t i = p->stk_idx[j] - 1;
        if (p->stk_depth[i] == depth &&
            memcmp(p->pool + p->stk_off[i], frames, depth * sizeof *frames) == 0) {
            p->stk_count[i] += weight;
            p->samples += weight;
            return ERR_OK;
        }
    }
    int rc = stk_append(p, frames, depth, weight, j);
    if (rc == ERR_OK) p->samples += weight;
    return rc;
}

/* The id of name s (copied on first sight), or -1 when out of memory. */
static int64_t name_intern(flamedb_sampler_profile_t *p, const char *s)
{
    if ((p->nname + 1) * 2 > p->name_idx_cap) {
        size_t cap = p->name_idx_cap ? p->name_idx_cap * 2 : 256;
        uint32_t *idx = calloc(cap, sizeof *idx);
        if (!idx) return -1;
        for (size_t i = 0; i < p->nname; i++) {
            size_t j = hash_str(p->names[i]) & (cap - 1);
            while (idx[j])
                j = (j + 1) & (cap - 1);
            idx[j] = (uint32_t)i + 1;
        }
        free(p->name_idx);
        p->name_idx = idx;
        p->name_idx_cap = cap;
    }
    size_t mask = p->name_idx_cap - 1, j = hash_str(s) & mask;
    for (; p->name_idx[j]; j = (j + 1) & mask)
        if (strcmp(p->names[p->name_idx[j] - 1], s) == 0) return p->name_idx[j] - 1;
    char *copy = strdup(s);
    if (!copy || grow((void **)&p->names, &p->name_cap, p->nname + 1, sizeof *p->names)) {
        free(copy);
        return -1;
    }
    p->names[p->nname] = copy;
    p->name_idx[j] = (uint32_t)++p->nname;
    return (int64_t)p->nname - 1;
}

typedef char *(*demangle_fn)(const char *mangled, char *out, size_t *len, int *status);

/* Writes the C++ name of mangled symbol sym into out and returns 1, when the
 * process has the C++ runtime's demangler (__cxa_demangle, found at run time:
 * libflamedb does not link libstdc++) and sym is a valid mangled name. */
static int demangle(const char *sym, char *out, size_t n)
{
    if (sym[0] != '_' || sym[1] != 'Z') return 0;
    /* looked up every time until found: the runtime may be loaded later */
    demangle_fn fn = (demangle_fn)dlsym(RTLD_DEFAULT, "__cxa_demangle");
    if (!fn) return 0;
    int status = -1;
    char *d = fn(sym, NULL, NULL, &status); /* malloc'd */
    if (status == 0 && d) snprintf(out, n, "%s", d);
    free(d);
    return status == 0 && d;
}

/* The name of a code address: its dynamic symbol (C++ names demangled when
 * the process can), else module+0xOFFSET. */
static void addr_name(uintptr_t addr, char *out, size_t n)
{
    Dl_info info = {0};
    int found = dladdr((void *)addr, &info) != 0; /* info is left unset when not found */
    if (found && info.dli_sname) {
        if (!demangle(info.dli_sname, out, n)) snprintf(out, n, "%s", info.dli_sname);
    } else if (found && info.dli_fname && info.dli_fname[0]) {
        const char *base = strrchr(info.dli_fname, '/');
        snprintf(out, n, "%s+0x%" PRIxPTR, base ? base + 1 : info.dli_fname,
                 addr - (uintptr_t)info.dli_fbase);
    } else {
        snprintf(out, n, "0x%" PRIxPTR, addr);
    }
}

static int addr_rehash(flamedb_sampler_profile_t *p)
{
    size_t cap = p->addr_cap ? p->addr_cap * 2 : 1024;
    addr_entry_t *t = calloc(cap, sizeof *t);
    if (!t) return ERR_NOMEM;
    for (size_t i = 0; i < p->addr_cap; i++) {
        if (!p->addrs[i].epoch) continue;
        size_t j = mix(0, p->addrs[i].addr) & (cap - 1);
        while (t[j].epoch)
            j = (j + 1) & (cap - 1);
        t[j] = p->addrs[i];
    }
    free(p->addrs);
    p->addrs = t;
    p->addr_cap = cap;
    return ERR_OK;
}

/* The entry of addr, named on first sight; NULL when out of memory. */
static addr_entry_t *addr_lookup(flamedb_sampler_profile_t *p, uintptr_t addr)
{
    if ((p->naddr + 1) * 2 > p->addr_cap && addr_rehash(p)) return NULL;
    size_t mask = p->addr_cap - 1, j = mix(0, addr) & mask;
    for (; p->addrs[j].epoch; j = (j + 1) & mask)
        if (p->addrs[j].addr == addr) return &p->addrs[j];
    char name[1024];
    addr_name(addr, name, sizeof name);
    int64_t id = name_intern(p, name);
    if (id < 0) return NULL;
    p->addrs[j] = (addr_entry_t){.addr = addr, .name = (uint32_t)id, .epoch = 1};
    p->naddr++;
    return &p->addrs[j];
}

/* ---------- pprof encoding (profile.proto field numbers) ---------- */

static int pb_varint(buf_t *b, uint32_t field, uint64_t v)
{
    int rc = buf_append_uvarint(b, (uint64_t)field << 3);
    return rc ? rc : buf_append_uvarint(b, v);
}

static int pb_bytes(buf_t *b, uint32_t field, const void *p, size_t n)
{
    int rc = buf_append_uvarint(b, (uint64_t)field << 3 | 2);
    if (!rc) rc = buf_append_uvarint(b, n);
    return rc ? rc : buf_append(b, p, n);
}

/* Appends message `field` made of tmp's bytes, and empties tmp. */
static int pb_sub(buf_t *b, uint32_t field, buf_t *tmp)
{
    int rc = pb_bytes(b, field, tmp->data ? (const void *)tmp->data : "", tmp->len);
    buf_reset(tmp);
    return rc;
}

static int pb_value_type(buf_t *b, uint32_t field, uint64_t type, uint64_t unit, buf_t *tmp)
{
    int rc = pb_varint(tmp, 1, type);
    if (!rc) rc = pb_varint(tmp, 2, unit);
    return rc ? rc : pb_sub(b, field, tmp);
}

typedef struct encode_state {
    uintptr_t *loc_addr; /* per location id - 1 */
    uint32_t *loc_fn;    /* function id of each location */
    size_t nloc, loc_addr_cap, loc_fn_cap;
    uint32_t *fn_of_name; /* name id -> function id, 0: none yet */
    size_t fn_of_name_len, fn_of_name_cap;
    uint32_t *fn_name; /* function id - 1 -> name id */
    size_t nfn, fn_name_cap;
} encode_state_t;

static void encode_state_free(encode_state_t *st)
{
    free(st->loc_addr);
    free(st->loc_fn);
    free(st->fn_of_name);
    free(st->fn_name);
}

/* The function id of name id `name` in this encode, made on first sight; 0: no memory. */
static uint32_t encode_fn(encode_state_t *st, uint32_t name)
{
    if (name >= st->fn_of_name_len) {
        if (grow((void **)&st->fn_of_name, &st->fn_of_name_cap, (size_t)name + 1,
                 sizeof *st->fn_of_name))
            return 0;
        memset(st->fn_of_name + st->fn_of_name_len, 0,
               ((size_t)name + 1 - st->fn_of_name_len) * sizeof *st->fn_of_name);
        st->fn_of_name_len = (size_t)name + 1;
    }
    if (st->fn_of_name[name]) return st->fn_of_name[name];
    if (grow((void **)&st->fn_name, &st->fn_name_cap, st->nfn + 1, sizeof *st->fn_name)) return 0;
    st->fn_name[st->nfn++] = name;
    return st->fn_of_name[name] = (uint32_t)st->nfn;
}

/* The location id of addr in this encode, made on first sight; 0: no memory. */
static uint32_t encode_loc(flamedb_sampler_profile_t *p, encode_state_t *st, uintptr_t addr)
{
    addr_entry_t *e = addr_lookup(p, addr);
    if (!e) return 0;
    if (e->epoch == p->epoch) return e->loc;
    uint32_t fn = encode_fn(st, e->name);
    if (!fn ||
        grow((void **)&st->loc_addr, &st->loc_addr_cap, st->nloc + 1, sizeof *st->loc_addr) ||
        grow((void **)&st->loc_fn, &st->loc_fn_cap, st->nloc + 1, sizeof *st->loc_fn))
        return 0;
    st->loc_addr[st->nloc] = addr;
    st->loc_fn[st->nloc] = fn;
    e->epoch = p->epoch;
    e->loc = (uint32_t)++st->nloc;
    return e->loc;
}

/* One Sample per stack: location ids (leaf first), then count and cpu ns. */
static int encode_samples(flamedb_sampler_profile_t *p, encode_state_t *st, int64_t period_ns,
                          buf_t *out, buf_t *tmp, buf_t *packed)
{
    int rc = ERR_OK;
    for (size_t i = 0; i < p->nstk && !rc; i++) {
        const uintptr_t *f = p->pool + p->stk_off[i];
        for (size_t k = 0; k < p->stk_depth[i] && !rc; k++) {
            uint32_t loc = encode_loc(p, st, f[k]);
            rc = loc ? buf_append_uvarint(packed, loc) : ERR_NOMEM;
        }
        if (!rc) rc = pb_sub(tmp, 1, packed);
        if (!rc) rc = buf_append_uvarint(packed, p->stk_count[i]);
        if (!rc) rc = buf_append_uvarint(packed, p->stk_count[i] * (uint64_t)period_ns);
        if (!rc) rc = pb_sub(tmp, 2, packed);
        if (!rc) rc = pb_sub(out, 2, tmp);
    }
    return rc;
}

/* Locations, functions and the string table (names from index 5 on). */
static int encode_tables(flamedb_sampler_profile_t *p, encode_state_t *st, buf_t *out, buf_t *tmp,
                         buf_t *line)
{
    int rc = ERR_OK;
    for (size_t i = 0; i < st->nloc && !rc; i++) {
        rc = pb_varint(tmp, 1, i + 1);
        if (!rc) rc = pb_varint(tmp, 3, st->loc_addr[i]);
        if (!rc) rc = pb_varint(line, 1, st->loc_fn[i]);
        if (!rc) rc = pb_sub(tmp, 4, line);
        if (!rc) rc = pb_sub(out, 4, tmp);
    }
    for (size_t i = 0; i < st->nfn && !rc; i++) {
        rc = pb_varint(tmp, 1, i + 1);
        if (!rc) rc = pb_varint(tmp, 2, 5 + i);
        if (!rc) rc = pb_varint(tmp, 3, 5 + i);
        if (!rc) rc = pb_sub(out, 5, tmp);
    }
    static const char *fixed[] = {"", "samples", "count", "cpu", "nanoseconds"};
    for (size_t i = 0; i < 5 && !rc; i++)
        rc = pb_bytes(out, 6, fixed[i], strlen(fixed[i]));
    for (size_t i = 0; i < st->nfn && !rc; i++) {
        const char *s = p->names[st->fn_name[i]];
        rc = pb_bytes(out, 6, s, strlen(s));
    }
    return rc;
}

int flamedb_sampler_profile_encode(flamedb_sampler_profile_t *p, int64_t period_ns,
                                   int64_t start_ns, int64_t duration_ns, buf_t *out)
{
    encode_state_t st = {0};
    buf_t tmp, aux;
    buf_init(&tmp, BUF_UNLIMITED);
    buf_init(&aux, BUF_UNLIMITED);
    if (++p->epoch < 2) p->epoch = 2;                /* 1 marks entries that never had a location */
    int rc = pb_value_type(out, 1, 1, 2, &tmp);      /* samples/count */
    if (!rc) rc = pb_value_type(out, 1, 3, 4, &tmp); /* cpu/nanoseconds */
    if (!rc) rc = encode_samples(p, &st, period_ns, out, &tmp, &aux);
    if (!rc) rc = encode_tables(p, &st, out, &tmp, &aux);
    if (!rc) rc = pb_varint(out, 9, (uint64_t)start_ns);
    if (!rc) rc = pb_varint(out, 10, (uint64_t)duration_ns);
    if (!rc) rc = pb_value_type(out, 11, 3, 4, &tmp);
    if (!rc) rc = pb_varint(out, 12, (uint64_t)period_ns);
    buf_free(&tmp);
    buf_free(&aux);
    encode_state_free(&st);
    return rc;
}
