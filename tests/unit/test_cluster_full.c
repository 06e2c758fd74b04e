/* Unit tests for what a full repair hands to the regain (node/cluster/
 * cluster_full.c; docs/cluster.md, "When a node cannot tell what it
 * gained"), and the token interval sets it works with (cluster_ivset.c).
 *
 * The sets are checked against a bitmap of every token in two windows of
 * 64 tokens, at the bottom and at the top of the token space (so 0 and
 * UINT64_MAX are edges), over random sets (the seed is printed and taken
 * back from CLUSTER_TEST_SEED). The plan is run on a two-node ring, RF 2:
 * a regain interval that covers only part of a range this node replicates
 * leaves the rest of that range to the full repair, streamed; with the other
 * replica unreachable only the part the regain lists is handed, the rest
 * waits; a second plan hands nothing more.
 *
 * DATA_DIR/regain.full keeps the intervals of a mark already streamed
 * (cluster_full_streamed) and the mark's evidence (the nodes no member
 * knew, with their tokens): read back equal, a plan after the restart hands
 * none of them again; the files of the releases before (no done lines, no
 * evidence) are read with none; a damaged one (cut at every byte, every
 * byte changed, LO > HI, an interval twice, done or unknown lines in an
 * older format, a node with a token short or one more, twice, another
 * version) keeps the mark, with no evidence, and hands every interval
 * again.
 *
 * A node serves no interval of its own copy that is not to be trusted
 * (cluster_copy_untrusted): the whole ring under a mark, while joining or
 * unsure of its ring, and, as a stream source, what overlaps its regain.
 *
 * The operator's word that the copy is whole (cluster_accept_copy) is
 * refused at once without a mark, and once a removal's gains are in the
 * regain of the mark, also after a restart (regain.full's gained lines;
 * with a file that has none, every interval of the regain counts). */
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

#define SPAN 64

static uint64_t rng_state;

static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* 1 when set s is sorted, with no interval overlapping or touching the next. */
static int well_formed(const cluster_ivset_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].lo > s->v[i].hi) return 0;
        if (i > 0 && (s->v[i - 1].hi == UINT64_MAX || s->v[i].lo <= s->v[i - 1].hi + 1)) return 0;
    }
    return 1;
}

/* The bits of window [base, base + SPAN) that s covers (s inside it). */
static uint64_t bits_of(const cluster_ivset_t *s, uint64_t base)
{
    uint64_t m = 0;
    for (size_t i = 0; i < s->n; i++)
        for (uint64_t t = s->v[i].lo; t >= s->v[i].lo && t <= s->v[i].hi; t++) {
            m |= 1ull << (t - base);
            if (t == UINT64_MAX) break;
        }
    return m;
}

static uint64_t bits_range(uint64_t base, uint64_t lo, uint64_t hi)
{
    uint64_t m = 0;
    for (uint64_t k = lo - base; k <= hi - base; k++)
        m |= 1ull << k;
    return m;
}

static void test_ivset_random(uint64_t base)
{
    cluster_ivset_t s = {0}, out = {0};
    for (int round = 0; round < 2000; round++) {
        uint64_t lo[12], hi[12], want = 0;
        size_t n = next_rand() % 12;
        for (size_t i = 0; i < n; i++) {
            uint64_t a = next_rand() % SPAN, b = next_rand() % SPAN;
            lo[i] = base + (a < b ? a : b);
            hi[i] = base + (a < b ? b : a);
            want |= bits_range(base, lo[i], hi[i]);
        }
        CHECK_EQ_INT(cluster_ivset_build(lo, hi, n, &s), 0);
        CHECK(well_formed(&s));
        CHECK(bits_of(&s, base) == want);
        uint64_t a = next_rand() % SPAN, b = next_rand() % SPAN;
        uint64_t qlo = base + (a < b ? a : b), qhi = base + (a < b ? b : a);
        CHECK_EQ_INT(cluster_ivset_minus(&s, qlo, qhi, &out), 0);
        CHECK(well_formed(&out));
        uint64_t got = bits_of(&out, base), exp = bits_range(base, qlo, qhi) & ~want;
        if (got != exp)
            fprintf(stderr, "round %d base %" PRIx64 ": minus [%" PRIu64 ", %" PRIu64 "]\n", round,
                    base, qlo - base, qhi - base);
        CHECK(got == exp);
    }
    cluster_ivset_free(&s);
    cluster_ivset_free(&out);
}

static void test_ivset_edges(void)
{
    const uint64_t M = UINT64_MAX;
    cluster_ivset_t s = {0}, out = {0};
    uint64_t lo[] = {M - 1, 5, 0}, hi[] = {M, M - 2, 4};
    CHECK_EQ_INT(cluster_ivset_build(lo, hi, 3, &s), 0); /* touching: one interval */
    CHECK(s.n == 1 && s.v[0].lo == 0 && s.v[0].hi == M);
    CHECK_EQ_INT(cluster_ivset_minus(&s, 0, M, &out), 0);
    CHECK_EQ_INT(out.n, 0);
    uint64_t lo2[] = {M, 0}, hi2[] = {M, 0};
    CHECK_EQ_INT(cluster_ivset_build(lo2, hi2, 2, &s), 0);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(cluster_ivset_minus(&s, 0, M, &out), 0);
    CHECK(out.n == 1 && out.v[0].lo == 1 && out.v[0].hi == M - 1);
    CHECK_EQ_INT(cluster_ivset_minus(&s, M, M, &out), 0);
    CHECK_EQ_INT(out.n, 0);
    CHECK_EQ_INT(cluster_ivset_build(NULL, NULL, 0, &s), 0);
    CHECK_EQ_INT(cluster_ivset_minus(&s, 7, M, &out), 0);
    CHECK(out.n == 1 && out.v[0].lo == 7 && out.v[0].hi == M);
    cluster_ivset_free(&s);
    cluster_ivset_free(&out);
}

/* ---------- the plan */

static char dir[64];

/* n1 holds tokens 1000 and 2000, n2 1500 and 3000: ranges (3000, 1000],
 * (1000, 1500], (1500, 2000], (2000, 3000], each on both with RF 2. */
static ring_t *two_node_ring(void)
{
    static const uint64_t t1[] = {1000, 2000}, t2[] = {1500, 3000};
    ring_node_spec_t spec[] = {{"n1", t1, 2}, {"n2", t2, 2}};
    ring_t *r = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_build(spec, 2, &r, &em), 0);
    return r;
}

static cluster_t *marked_cluster(void)
{
    cluster_t *c = calloc(1, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir);
    c->clock = clock_real();
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    c->full.on = 1;
    c->full.gen = 1;
    return c;
}

static void free_cluster(cluster_t *c)
{
    cluster_full_free(c);
    cluster_regain_free(c);
    free(c);
}

/* 1 when the n intervals (lo[i], hi[i]) cover the whole token space, none
 * overlapping another. */
static int tile_the_ring(const uint64_t *lo, const uint64_t *hi, size_t n)
{
    cluster_iv_t *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (cluster_iv_t){lo[i], hi[i]};
    int ok = cluster_statefile_sort_unique(v, n) == 0 && n > 0 && v[0].lo == 0;
    for (size_t i = 1; ok && i < n; i++)
        ok = v[i - 1].hi != UINT64_MAX && v[i].lo == v[i - 1].hi + 1;
    ok = ok && v[n - 1].hi == UINT64_MAX;
    free(v);
    return ok;
}

/* The set c->full lists, as one sorted set. */
static cluster_ivset_t handed_set(const cluster_t *c)
{
    cluster_ivset_t s = {0};
    CHECK_EQ_INT(cluster_ivset_build(c->full.lo, c->full.hi, c->full.n, &s), 0);
    return s;
}

static void test_plan_partial_overlap(void)
{
    ring_t *ring = two_node_ring();
    uint8_t reach[2] = {1, 1};
    cluster_view_t v = {.ring = ring, .reachable = reach, .rf = 2};
    v.self = ring_node_find(ring, "n1");
    cluster_t *c = marked_cluster();
    /* a removal's regain: the end of (1000, 1500] and the start of (1500, 2000] */
    CHECK_EQ_INT(cluster_regain_add(c, 1200, 1700), 0);
    size_t added = 0, waiting = 0;
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
    CHECK_EQ_INT(waiting, 0);
    CHECK_EQ_INT(added, 5); /* [0,1000] [1001,1199] [1701,2000] [2001,3000] [3001,MAX] */
    if (!tile_the_ring(c->regain.lo, c->regain.hi, c->regain.n))
        for (size_t i = 0; i < c->regain.n; i++)
            fprintf(stderr, "regain [%" PRIu64 ", %" PRIu64 "]\n", c->regain.lo[i],
                    c->regain.hi[i]);
    CHECK(tile_the_ring(c->regain.lo, c->regain.hi, c->regain.n));
    cluster_ivset_t s = handed_set(c);
    CHECK(s.n == 1 && s.v[0].lo == 0 && s.v[0].hi == UINT64_MAX);
    cluster_ivset_free(&s);
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0); /* nothing more */
    CHECK(added == 0 && waiting == 0);
    free_cluster(c);

    /* n2 unreachable: only the part the regain lists is handed */
    reach[ring_node_find(ring, "n2")] = 0;
    c = marked_cluster();
    CHECK_EQ_INT(cluster_regain_add(c, 1200, 1700), 0);
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
    CHECK_EQ_INT(added, 0);
    CHECK_EQ_INT(waiting, 5);
    s = handed_set(c);
    CHECK(s.n == 1 && s.v[0].lo == 1200 && s.v[0].hi == 1700);
    cluster_ivset_free(&s);
    reach[ring_node_find(ring, "n2")] = 1; /* back: the rest is handed */
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
    CHECK(added == 5 && waiting == 0);
    CHECK(tile_the_ring(c->regain.lo, c->regain.hi, c->regain.n));
    free_cluster(c);
    ring_free(ring);
}

/* ---------- DATA_DIR/regain.full */

static void path_of(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void put_bytes(const char *p, size_t n)
{
    char path[128];
    path_of("regain.full", path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    CHECK_EQ_INT(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* body and its end line for count records, with the checksum. */
static void put_with_end(const char *body, size_t count)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(buf_append(&b, body, strlen(body)), 0);
    CHECK_EQ_INT(cluster_statefile_finish(&b, count), 0);
    put_bytes((const char *)b.data, b.len);
    buf_free(&b);
}

/* The whole file (caller frees), its length in *n; NULL when absent. */
static char *get_file(size_t *n)
{
    char path[128];
    path_of("regain.full", path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *b = malloc(1 << 16);
    *n = fread(b, 1, (1 << 16) - 1, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

/* The nodes of the mark's evidence in the last full_load, 0 when it
 * was not liftable; its gained intervals, and whether the file did not
 * list them (every regain interval counts). */
static size_t loaded_evidence, loaded_gained;
static int loaded_all;

/* A fresh start on the file: marked (always, the file being there), with
 * *since and *done of it; returns the cluster (caller frees). */
static cluster_t *full_load(uint64_t *since, size_t *done)
{
    cluster_t *c = calloc(1, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir);
    c->clock = clock_real();
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_full_load(c, &em), 0);
    CHECK(c->full.on);
    CHECK_EQ_INT(c->full.n, c->full.done);
    *since = c->full.since_ms;
    *done = c->full.done;
    CHECK(!c->full.liftable || (c->full.unknown.n > 0 && c->full.gained.n == 0));
    loaded_evidence = c->full.liftable ? c->full.unknown.n : 0;
    loaded_gained = c->full.gained.n;
    loaded_all = c->full.gained_all;
    return c;
}

static void test_full_file_streamed(void)
{
    ring_t *ring = two_node_ring();
    uint8_t reach[2] = {1, 1};
    cluster_view_t v = {.ring = ring, .reachable = reach, .rf = 2};
    v.self = ring_node_find(ring, "n1");
    cluster_t *c = marked_cluster();
    c->full.since_ms = 0x18c0ffee123ull;
    /* the evidence: a node no member knew, kept while the mark is liftable */
    static const uint64_t n7_tokens[] = {0x10, 0xffffffffffffff00ull, 0x7};
    c->full.liftable = 1;
    CHECK_EQ_INT(cluster_known_add(&c->full.unknown, "n7", n7_tokens, 3), 0);
    CHECK_EQ_INT(cluster_regain_add(c, 1200, 1700), 0);
    size_t added = 0, waiting = 0, done = 0;
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
    CHECK_EQ_INT(added, 5);
    size_t handed = c->full.n;
    cluster_full_streamed(c); /* the regain of them finished */
    CHECK_EQ_INT(c->full.done, handed);
    size_t len = 0;
    char *good = get_file(&len);
    CHECK(good != NULL && strncmp(good,
                                  "flamedb-regain-full 4\nsince 18c0ffee123\n"
                                  "unknown n7 3 10 ffffffffffffff00 7\ndone ",
                                  79) == 0);
    free_cluster(c);

    uint64_t since = 0;
    c = full_load(&since, &done); /* a restart: nothing handed again, the evidence kept */
    CHECK(since == 0x18c0ffee123ull && done == handed);
    CHECK(loaded_evidence == 1 && strcmp(c->full.unknown.v[0].id, "n7") == 0 &&
          c->full.unknown.v[0].ntokens == 3 &&
          memcmp(c->full.unknown.v[0].tokens, n7_tokens, sizeof n7_tokens) == 0);
    CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
    CHECK(added == 0 && waiting == 0 && c->regain.n == 0 && c->full.n == handed);
    free_cluster(c);

    for (size_t at = 0; good != NULL && at < len; at++) { /* cut: nothing streamed */
        put_bytes(good, at);
        c = full_load(&since, &done);
        if (done != 0 || loaded_evidence != 0 || !loaded_all)
            fprintf(stderr, "regain.full cut at %zu: %zu done, %zu unknown\n", at, done,
                    loaded_evidence);
        CHECK_EQ_INT(done, 0);
        CHECK_EQ_INT(loaded_evidence, 0);
        CHECK(loaded_all && loaded_gained == 0);
        CHECK_EQ_INT(cluster_full_plan(c, &v, &added, &waiting), 0);
        CHECK_EQ_INT(added, 5); /* every range interval again */
        free_cluster(c);
    }
    for (size_t at = 0; good != NULL && at < len; at++)
        for (int x = 1; x <= 2; x++) {
            char *b = malloc(len);
            memcpy(b, good, len);
            b[at] = (char)(b[at] ^ x);
            put_bytes(b, len);
            free(b);
            c = full_load(&since, &done);
            if (done != 0 || loaded_evidence != 0)
                fprintf(stderr, "regain.full byte %zu ^ %d: %zu done, %zu unknown\n", at, x, done,
                        loaded_evidence);
            CHECK_EQ_INT(done, 0);
            CHECK_EQ_INT(loaded_evidence, 0);
            CHECK(loaded_all && loaded_gained == 0);
            free_cluster(c);
        }
    free(good);

    static const struct {
        const char *body;
        size_t count, done, evidence, gained;
        int all; /* not read (or read from a version before 4): gained unknown */
    } cases[] = {
        {"flamedb-regain-full 1\nsince 5\n", 1, 0}, /* the release before: read */
        {"flamedb-regain-full 2\nsince 5\n", 1, 0},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000001 0000000000000002\n", 2, 1},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000003 0000000000000002\n", 2, 0},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000001 0000000000000002\n"
         "done 0000000000000001 0000000000000002\n",
         3, 0},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000001 000000000000002\n", 2, 0},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000001 0000000000000002 \n", 2, 0},
        {"flamedb-regain-full 2\nsince 5\ndone 0000000000000001 0000000000000002\n", 1, 0},
        {"flamedb-regain-full 1\nsince 5\ndone 0000000000000001 0000000000000002\n", 2, 0},
        {"flamedb-regain-full 3\nsince 5\n", 1, 0},
        {"flamedb-regain-full 3\nsince 5\nunknown n2 2 a b\n", 2, 0, 1},
        {"flamedb-regain-full 3\nsince 5\nunknown n2 2 a b\nunknown n3 1 c\n"
         "done 0000000000000001 0000000000000002\n",
         4, 1, 2},
        {"flamedb-regain-full 2\nsince 5\nunknown n2 2 a b\n", 2, 0}, /* not in version 2 */
        {"flamedb-regain-full 3\nsince 5\nunknown n2 2 a b\n", 1, 0}, /* count */
        {"flamedb-regain-full 3\nsince 5\nunknown n2 2 a\n", 2, 0},   /* a token short */
        {"flamedb-regain-full 3\nsince 5\nunknown n2 1 a b\n", 2, 0}, /* one more */
        {"flamedb-regain-full 3\nsince 5\nunknown n2 1 zz\n", 2, 0},
        {"flamedb-regain-full 3\nsince 5\nunknown n2 0\n", 2, 0},
        {"flamedb-regain-full 3\nsince 5\nunknown n2 1 a\nunknown n2 1 b\n", 3, 0},
        {"flamedb-regain-full 3\nsince 5\nunknown n2 1 a\n"
         "done 0000000000000003 0000000000000002\n",
         3, 0},
        {"flamedb-regain-full 4\nsince 5\n", 1, 0, 0, 0, 0}, /* nothing gained: said so */
        {"flamedb-regain-full 4\nsince 5\nunknown n2 2 a b\n"
         "gained 0000000000000001 0000000000000002\ngained 0000000000000005 0000000000000009\n"
         "done 0000000000000001 0000000000000002\n",
         5, 1, 0, 2, 0}, /* gains pending: its evidence does not lift it */
        {"flamedb-regain-full 4\nsince 5\ngained 0000000000000001 0000000000000002\n", 2, 0, 0, 1,
         0},
        {"flamedb-regain-full 4\nsince 5\ngained 0000000000000001 0000000000000002\n", 1, 0, 0, 0,
         1}, /* count */
        {"flamedb-regain-full 4\nsince 5\ngained 0000000000000003 0000000000000002\n", 2, 0, 0, 0,
         1},
        {"flamedb-regain-full 4\nsince 5\ngained 0000000000000001 000000000000002\n", 2, 0, 0, 0,
         1},
        {"flamedb-regain-full 4\nsince 5\ngained 0000000000000001 0000000000000002\n"
         "gained 0000000000000001 0000000000000002\n",
         3, 0, 0, 0, 1}, /* twice */
        {"flamedb-regain-full 3\nsince 5\ngained 0000000000000001 0000000000000002\n", 2, 0, 0, 0,
         1}, /* not in version 3 */
        {"flamedb-regain-full 5\nsince 5\n", 1, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        put_with_end(cases[i].body, cases[i].count);
        c = full_load(&since, &done);
        /* every file before version 4, and every one refused, does not say */
        int all = cases[i].all || strncmp(cases[i].body, "flamedb-regain-full 4", 21) != 0;
        if (done != cases[i].done || loaded_evidence != cases[i].evidence ||
            loaded_gained != cases[i].gained || loaded_all != all)
            fprintf(stderr, "regain.full case %zu: %zu done, %zu unknown, %zu gained, all %d\n", i,
                    done, loaded_evidence, loaded_gained, loaded_all);
        CHECK_EQ_INT(done, cases[i].done);
        CHECK_EQ_INT(loaded_evidence, cases[i].evidence);
        CHECK_EQ_INT(loaded_gained, cases[i].gained);
        CHECK_EQ_INT(loaded_all, all);
        free_cluster(c);
    }
    char path[128];
    path_of("regain.full", path, sizeof path);
    unlink(path);
    ring_free(ring);
}

/* Which of its own copies a node serves as a source (cluster_copy_untrusted):
 * none under a full repair mark, while joining or before its ring is
 * accounted for; under a regain, none that overlaps a listed interval (at
 * both ends, by one token), every other. */
static void test_copy_untrusted(void)
{
    cluster_t *c = marked_cluster();
    CHECK(cluster_copy_untrusted(c, 0, 0, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 5, UINT64_MAX, 1) != NULL);
    c->full.on = 0;
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, 1) == NULL);
    c->joining = 1;
    CHECK(cluster_copy_untrusted(c, 7, 9, 1) != NULL);
    c->joining = 0;
    c->known.unsure = 1;
    CHECK(cluster_copy_untrusted(c, 7, 9, 1) != NULL);
    c->known.unsure = 0;
    CHECK_EQ_INT(cluster_regain_add(c, 100, 200), 0);
    CHECK_EQ_INT(cluster_regain_add(c, UINT64_MAX - 10, UINT64_MAX), 0);
    CHECK(cluster_copy_untrusted(c, 0, 99, 1) == NULL);
    CHECK(cluster_copy_untrusted(c, 0, 100, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 150, 150, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 200, 300, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 201, UINT64_MAX - 11, 1) == NULL);
    CHECK(cluster_copy_untrusted(c, UINT64_MAX - 11, UINT64_MAX - 10, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, 1) != NULL);
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, 0) == NULL); /* compared with */
    CHECK(cluster_copy_untrusted(c, 150, 150, CLUSTER_COPY_SUMS) != NULL);
    CHECK(cluster_copy_untrusted(c, 0, 99, CLUSTER_COPY_SUMS) == NULL);
    c->full.on = 1;
    CHECK(cluster_copy_untrusted(c, 0, 99, 0) != NULL);
    free_cluster(c);
}

/* A node whose repair mark went with a member that left (a voided mark,
 * cluster_void.c) lists itself, so its peers do not count it as marked
 * and ask it for streams: it refuses to be a source of any interval (its
 * copy may lack the writes the mark was for) until its window check
 * compared it, and still answers comparisons and a window check's sums
 * (two voided replicas of a range finish each other's checks). */
static void test_copy_untrusted_voided(void)
{
    cluster_t *c = marked_cluster();
    c->full.on = 0;
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, CLUSTER_COPY_SOURCE) == NULL);
    c->voided.on = 1;
    c->voided.gen = 1;
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, CLUSTER_COPY_SOURCE) != NULL);
    CHECK(cluster_copy_untrusted(c, 7, 7, CLUSTER_COPY_SOURCE) != NULL);
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, CLUSTER_COPY_SUMS) == NULL);
    CHECK(cluster_copy_untrusted(c, 0, UINT64_MAX, CLUSTER_COPY_COMPARED) == NULL);
    c->voided.on = 0; /* its check compared every range (cluster_void_checked) */
    CHECK(cluster_copy_untrusted(c, 7, 7, CLUSTER_COPY_SOURCE) == NULL);
    free_cluster(c);
}

static int accept_calls;

static void accept_done(void *arg, int rc, const errmsg_t *em)
{
    (void)arg, (void)rc, (void)em;
    accept_calls++;
}

/* The operator's word (cluster_accept_copy) is refused at once, the mark
 * kept and done never called: for another node, with no mark, and once a
 * removal's gains joined the regain under the mark or were pending when it
 * was set (the copy lacks them); otherwise it goes to the repair thread
 * (none here: the node reads as stopping). */
static void test_accept_refused(void)
{
    cluster_t *c = marked_cluster();
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_UNAVAILABLE);
    CHECK_EQ_INT(cluster_accept_copy(c, "bad id", accept_done, NULL, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(cluster_full_gain(c, 100, 200), 0); /* a removal's gains joined the regain */
    cluster_full_gained(c);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_CONFLICT);
    CHECK(strstr(errmsg_text(&em, ERR_CONFLICT), "removal") != NULL);
    CHECK(c->full.on && c->full.accept.refused == 1 && c->full.accept.done == NULL);
    c->full.on = 0;
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_CONFLICT);
    CHECK(strstr(errmsg_text(&em, ERR_CONFLICT), "not in a full repair") != NULL);
    free_cluster(c);

    /* a removal's regain pending when the mark is set */
    c = marked_cluster();
    c->full.on = 0;
    CHECK_EQ_INT(cluster_regain_add(c, 100, 200), 0);
    cluster_full_begin(c, "test");
    CHECK(c->full.on && c->full.gained.n == 1);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_CONFLICT);
    free_cluster(c);
    c = marked_cluster(); /* none pending: not refused for it */
    c->full.on = 0;
    cluster_full_begin(c, "test");
    CHECK(c->full.on && c->full.gained.n == 0);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_UNAVAILABLE);
    free_cluster(c);
    CHECK_EQ_INT(accept_calls, 0);
    char path[128];
    path_of("regain.full", path, sizeof path);
    CHECK_EQ_INT(unlink(path), 0);
}

/* The removal's gains under a mark survive a restart (regain.full's gained
 * lines): the word is refused after it too, until a regain finished
 * (cluster_full_streamed); a file of the release before (no gained lines)
 * makes every interval of the regain count as one, once it is read
 * (cluster_full_start), and rewrites the file so a later start says so. */
static void test_accept_refused_after_restart(void)
{
    cluster_t *c = marked_cluster();
    CHECK_EQ_INT(cluster_regain_add(c, 100, 200), 0); /* the mark's own, handed */
    CHECK_EQ_INT(cluster_regain_add(c, 300, 400), 0); /* the removal's */
    CHECK_EQ_INT(cluster_full_gain(c, 300, 400), 0);
    CHECK_EQ_INT(cluster_full_gain(c, 300, 400), 0); /* once */
    cluster_full_gained(c);
    free_cluster(c);
    uint64_t since = 0;
    size_t done = 0;
    c = full_load(&since, &done);
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1"); /* the restart */
    CHECK(loaded_gained == 1 && !loaded_all && c->full.gained.lo[0] == 300 &&
          c->full.gained.hi[0] == 400);
    CHECK_EQ_INT(cluster_regain_add(c, 100, 200), 0); /* DATA_DIR/regain read back */
    CHECK_EQ_INT(cluster_regain_add(c, 300, 400), 0);
    cluster_full_start(c);
    CHECK_EQ_INT(c->full.gained.n, 1);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_CONFLICT);
    CHECK(strstr(errmsg_text(&em, ERR_CONFLICT), "removal") != NULL);
    cluster_full_streamed(c); /* the regain finished: they are in */
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_UNAVAILABLE);
    free_cluster(c);
    c = full_load(&since, &done);
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    CHECK(loaded_gained == 0 && !loaded_all);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_UNAVAILABLE);
    free_cluster(c);

    put_with_end("flamedb-regain-full 3\nsince 5\n", 1); /* the release before */
    c = full_load(&since, &done);
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    CHECK(loaded_all && loaded_gained == 0);
    CHECK_EQ_INT(cluster_regain_add(c, 300, 400), 0);
    cluster_full_start(c);
    CHECK(!c->full.gained_all && c->full.gained.n == 1);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_CONFLICT);
    free_cluster(c);
    c = full_load(&since, &done);
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1"); /* rewritten in version 4 */
    CHECK(!loaded_all && loaded_gained == 1);
    free_cluster(c);
    put_with_end("flamedb-regain-full 3\nsince 5\n", 1); /* no regain: nothing counts */
    c = full_load(&since, &done);
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    cluster_full_start(c);
    CHECK_EQ_INT(cluster_accept_copy(c, "n1", accept_done, NULL, &em), ERR_UNAVAILABLE);
    free_cluster(c);
    CHECK_EQ_INT(accept_calls, 0);
    char path[128];
    path_of("regain.full", path, sizeof path);
    CHECK_EQ_INT(unlink(path), 0);
}

int main(void)
{
    const char *env = getenv("CLUSTER_TEST_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
    fprintf(stderr, "seed %" PRIu64 " (replay with CLUSTER_TEST_SEED=%" PRIu64 ")\n", seed, seed);
    rng_state = seed | 1;
    snprintf(dir, sizeof dir, "/tmp/flamedb-full-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_ivset_edges();
    test_ivset_random(0);
    test_ivset_random(UINT64_MAX - (SPAN - 1));
    test_plan_partial_overlap();
    test_full_file_streamed();
    test_copy_untrusted();
    test_copy_untrusted_voided();
    test_accept_refused();
    test_accept_refused_after_restart();
    CHECK_EQ_INT(rmdir(dir), 0);
    return check_exit();
}
