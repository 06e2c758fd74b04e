/* fuzz_scatter_spaces.c — libFuzzer target for a coordinator's adds of
 * shares' answers by id (scatter_scope_add, node/cluster/scatter_spaces.c):
 * what a coordinator reads from every share that answers in an id space.
 *
 * Each input gets a fresh cache and scope that already hold one valid
 * answer (peer "A", nonce 1, ids 0..5) and then is one more answer:
 *   byte 0: base, byte 1: count, byte 2: bit 0 the nonce (1, held, or 2,
 *   new), bit 1 the peer ("A" or "B"), bits 2-7 the values' unit (0-62,
 *   63: INT64_MAX), bytes 3-4: the structure's length
 *   (little-endian, cut to what is left), then the structure, then the
 *   values.
 * Beyond "no crash, no leak, no UB": a refusal is ERR_CORRUPT (or
 * ERR_NOMEM) and leaves the render's sums as they were; an accepted answer
 * leaves the space holding at least count ids; either way the forest is
 * made (or ERR_LIMIT: a total past INT64_MAX), is well formed (each total
 * its self plus its kids', kids ascending and each one's only once), and
 * the first answer still adds by its ids as before.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/hash.h"
#include "node/cluster/scatter_spaces.h"

#define HEADER 5

static const uint32_t first_parent[] = {0, 0, 1, 1, 2, 0};
static const uint64_t first_sym[] = {SYM_ROOT, 10, 11, 12, 13, 14};
static int64_t first_self[] = {0, 1, 5, 7, 3, 2};

/* The valid first answer, from its structure at base. */
static void add_first(scatter_scope_t *sc, size_t base, scatter_sums_t *sums)
{
    storage_merged_tab_t t = {0};
    t.n = 6;
    t.self = first_self;
    t.space_nonce = 1;
    t.space_base = base;
    t.space_parent = (uint32_t *)first_parent + base;
    t.space_sym = (uint64_t *)first_sym + base;
    t.nonneg = 1;
    buf_t s, v;
    buf_init(&s, BUF_UNLIMITED);
    buf_init(&v, BUF_UNLIMITED);
    errmsg_t em = {{0}};
    uint64_t unit;
    if (scatter_space_encode(&t, 1, &s, &v, &unit) != 0) abort();
    scatter_space_answer_t a = {.peer = "A",
                                .nonce = 1,
                                .base = base,
                                .count = 6,
                                .unit = unit,
                                .structure = s.data,
                                .slen = s.len,
                                .values = v.data,
                                .vlen = v.len};
    if (scatter_scope_add(sc, &a, sums, &em) != 0) abort();
    buf_free(&s);
    buf_free(&v);
}

static void check_forest(const storage_merged_tab_t *f)
{
    if (f->n == 0 || f->nodes > f->n || f->sym[0] != SYM_ROOT) abort();
    uint8_t *seen = calloc(f->n, 1);
    if (seen == NULL) abort();
    size_t nodes = 1;
    for (size_t i = 0; i < f->n; i++) {
        if (i > 0 && f->total[i] != 0 && !seen[i]) abort(); /* every node some node's kid */
        uint64_t sum = (uint64_t)f->self[i];
        uint32_t prev = (uint32_t)i;
        for (uint32_t k = f->first_kid[i]; k != STORAGE_NO_KID; k = f->next_sib[k]) {
            if (k <= prev || k >= f->n || seen[k] || f->total[k] <= 0) abort();
            seen[k] = 1;
            sum += (uint64_t)f->total[k];
            prev = k;
            nodes++;
        }
        if (sum != (uint64_t)f->total[i]) abort();
    }
    if (nodes != f->nodes) abort();
    free(seen);
}

/* The forest of sums: made, or refused for a total past INT64_MAX. */
static void forest(scatter_scope_t *sc, scatter_sums_t *sums)
{
    storage_merged_tab_t f;
    errmsg_t em = {{0}};
    int rc = scatter_scope_forest(sc, sums, &f, &em);
    if (rc != 0 && rc != ERR_LIMIT && rc != ERR_NOMEM) abort();
    if (sums->v != NULL || sums->n != 0) abort();
    if (rc == 0) check_forest(&f);
    storage_merged_tab_release(&f);
}

/* The space's ids held (0: none). */
static uint64_t held(scatter_scope_t *sc, const char *peer, uint64_t nonce)
{
    storage_space_known_t k[SCATTER_SPACES_KNOWN_MAX];
    size_t n = scatter_scope_known(sc, peer, k, SCATTER_SPACES_KNOWN_MAX);
    for (size_t i = 0; i < n; i++)
        if (k[i].nonce == nonce) return k[i].count;
    return 0;
}

static void add_fuzzed(scatter_scope_t *sc, const uint8_t *data, size_t size, scatter_sums_t *sums)
{
    uint64_t base = data[0], count = data[1], nonce = (data[2] & 1) ? 2 : 1;
    const char *peer = (data[2] & 2) ? "B" : "A";
    size_t rest = size - HEADER, slen = (size_t)data[3] | (size_t)data[4] << 8;
    if (slen > rest) slen = rest;
    const uint8_t *s = data + HEADER, *v = s + slen;
    size_t n = sums->n;
    int64_t *before = malloc((n ? n : 1) * sizeof *before);
    if (before == NULL) abort();
    memcpy(before, sums->v, n * sizeof *before);
    uint64_t had = held(sc, peer, nonce);
    errmsg_t em = {{0}};
    unsigned u = data[2] >> 2; /* the unit: 0..62 as it is, 63 the largest a value of 1 takes */
    scatter_space_answer_t a = {.peer = peer,
                                .nonce = nonce,
                                .base = base,
                                .count = count,
                                .unit = u == 63 ? (uint64_t)INT64_MAX : u,
                                .structure = s,
                                .slen = slen,
                                .values = v,
                                .vlen = rest - slen};
    int rc = scatter_scope_add(sc, &a, sums, &em);
    if (rc != 0 && rc != ERR_CORRUPT && rc != ERR_NOMEM) abort();
    if (rc != 0 && (sums->n != n || memcmp(before, sums->v, n * sizeof *before) != 0)) abort();
    if (rc == ERR_CORRUPT && held(sc, peer, nonce) != had) abort();
    if (rc == 0 && held(sc, peer, nonce) < (count > 1 ? count : 1)) abort();
    free(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER) return 0;
    scatter_spaces_t *c;
    scatter_scope_t *sc;
    if (scatter_spaces_new(1 << 20, &c) != 0) abort();
    if (scatter_spaces_acquire(c, "t", "svc", &sc) != 0) abort();
    scatter_sums_t sums = {0};
    add_first(sc, 1, &sums);
    add_fuzzed(sc, data, size, &sums);
    forest(sc, &sums);
    add_first(sc, 6, &sums); /* what the first answer holds stays as it was */
    add_first(sc, 2, &sums);
    forest(sc, &sums);
    scatter_sums_free(&sums);
    scatter_spaces_release(c, sc);
    scatter_spaces_free(c);
    return 0;
}
