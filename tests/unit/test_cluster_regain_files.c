/* Unit tests for the files a node keeps while it regains ranges after a
 * removal (docs/cluster.md, "Removing a node"): DATA_DIR/regain
 * (cluster_regain.c), DATA_DIR/regain.progress (repair_regain_file.c) and
 * DATA_DIR/regain.ring (cluster_regain_ring.c). Each is written and read
 * back equal; written through a temporary name so a failed write leaves the
 * old file whole; and every damaged form (empty, cut at each byte, another
 * version, counts that do not match the records, LO > HI, absurd counts and
 * sizes, bytes after the end, a changed byte that the end line's checksum
 * catches, a file that cannot be read) is refused with the safe fallback:
 * regain falls back to a full repair (the file kept aside as
 * regain.damaged) while no interval was cleared, and refuses the start once
 * one was (regain.progress present); progress restarts the regain from its
 * clear (nothing kept); ring is ignored (the ring is learnt from gossip) and
 * the node marks itself for a full repair. Files of the release before (no
 * checksum) are still read. A piece cursor outside an interval the progress
 * file lists as cleared is refused: after a fresh clear it would skip what
 * lies before it. A regain.ring older than --forget-left-after (the node
 * was down longer than tombstones are kept) marks the node too. A regain
 * piece whose totals check kept disagreeing with its source is mended:
 * its cursor goes back to its start, in memory and in regain.progress, and
 * this node's copy of it is cleared, at most --stream-check-heals times,
 * logged and counted; before --stream-check-heal-after checks in a row,
 * or past that bound, nothing changes. DATA_DIR/move.progress
 * (repair_move_file.c), the cursors of a join's streams, is written and read
 * back equal and every damaged form of it is refused with nothing kept. */
#include "test_storage_fixture.h" /* first: it defines _GNU_SOURCE */

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/log.h"
#include "node/cluster/repair_int.h"

static char dir[64];

static void path_of(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void put_bytes(const char *name, const char *p, size_t n)
{
    char path[128];
    path_of(name, path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    CHECK_EQ_INT(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void put_str(const char *name, const char *s)
{
    put_bytes(name, s, strlen(s));
}

/* The whole file (caller frees), its length in *n; NULL when absent. */
static char *get_bytes(const char *name, size_t *n)
{
    char path[128];
    path_of(name, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *b = malloc(1 << 20);
    *n = fread(b, 1, (1 << 20) - 1, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

static int exists(const char *name)
{
    char path[128];
    path_of(name, path, sizeof path);
    return access(path, F_OK) == 0;
}

static void rm(const char *name)
{
    char path[128];
    path_of(name, path, sizeof path);
    if (unlink(path) != 0) rmdir(path);
}

/* This node's identity in every test: n1 with two tokens. */
static uint64_t self_tokens[] = {5, 0xffffffffffffffffull};

static cluster_t *new_cluster(void)
{
    cluster_t *c = calloc(1, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir);
    c->clock = clock_real();
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    c->id.tokens = self_tokens;
    c->id.ntokens = 2;
    return c;
}

static void free_cluster(cluster_t *c)
{
    cluster_regain_free(c);
    cluster_regain_ring_free(c);
    free(c);
}

/* ---------- DATA_DIR/regain */

/* What the last regain_load fell back to: a full repair, the damaged file
 * kept aside (both removed after the load, so each load starts clean). */
static int loaded_full, loaded_aside;

static int regain_load(size_t *n)
{
    cluster_t *c = new_cluster();
    errmsg_t em = {{0}};
    int rc = cluster_regain_load(c, &em);
    *n = c->regain.n;
    loaded_full = c->full.on;
    loaded_aside = exists("regain.damaged");
    CHECK_EQ_INT(loaded_full, exists("regain.full"));
    rm("regain.full");
    rm("regain.damaged");
    free_cluster(c);
    return rc;
}

/* The regain file of n bytes p is refused: without regain.progress the
 * node starts marked for a full repair with no interval, the file moved
 * aside; with one (an interval was cleared) the start is refused and the
 * file stays. what names the case in a failure. */
static void check_regain_refused(const char *p, size_t n, const char *what, size_t at)
{
    size_t got = 0;
    put_bytes("regain", p, n);
    int rc = regain_load(&got);
    if (rc != 0 || !loaded_full || !loaded_aside || got != 0)
        fprintf(stderr, "regain %s %zu: rc %d, full %d, aside %d, %zu intervals\n", what, at, rc,
                loaded_full, loaded_aside, got);
    CHECK(rc == 0 && loaded_full && loaded_aside && got == 0 && !exists("regain"));
    put_bytes("regain", p, n);
    put_str("regain.progress", "cleared");
    rc = regain_load(&got);
    if (rc >= 0) fprintf(stderr, "regain %s %zu with progress: accepted\n", what, at);
    CHECK(rc < 0 && got == 0 && !loaded_full && exists("regain"));
    rm("regain.progress");
    rm("regain");
}

static void test_regain_roundtrip(void)
{
    cluster_t *c = new_cluster();
    uint64_t lo[] = {0, 0x10, 0xfffffffffffffff0ull}, hi[] = {5, 0x8000000000000000ull, UINT64_MAX};
    c->regain.lo = malloc(sizeof lo);
    c->regain.hi = malloc(sizeof hi);
    memcpy(c->regain.lo, lo, sizeof lo);
    memcpy(c->regain.hi, hi, sizeof hi);
    c->regain.n = c->regain.cap = 3;
    CHECK_EQ_INT(cluster_regain_save(c), 0);
    CHECK(!exists("regain.tmp"));
    cluster_t *d = new_cluster();
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_regain_load(d, &em), 0);
    CHECK_EQ_INT(d->regain.n, 3);
    for (size_t i = 0; i < 3 && i < d->regain.n; i++) {
        CHECK(d->regain.lo[i] == lo[i]);
        CHECK(d->regain.hi[i] == hi[i]);
    }
    free_cluster(d);

    /* a write that fails leaves the old file whole */
    char path[128];
    path_of("regain.tmp", path, sizeof path);
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    c->regain.n = 1;
    CHECK(cluster_regain_save(c) != 0);
    rm("regain.tmp");
    size_t n = 0;
    CHECK_EQ_INT(regain_load(&n), 0);
    CHECK_EQ_INT(n, 3);

    c->regain.n = 0; /* an empty regain removes the file, and its progress */
    /* the format before (no end line) is still read: an upgrade resumes */
    put_str("regain", "flamedb-regain 1\n0000000000000000 0000000000000005\n"
                      "0000000000000010 0000000000000020\n");
    size_t n1 = 0;
    CHECK_EQ_INT(regain_load(&n1), 0);
    CHECK_EQ_INT(n1, 2);
    check_regain_refused("flamedb-regain 1\n0000000000000000 0000000000000005", 50, "v1 cut", 0);
    CHECK_EQ_INT(cluster_regain_save(c), 0);
    CHECK(!exists("regain"));
    put_str("regain.progress", "stale");
    CHECK_EQ_INT(regain_load(&n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK(!exists("regain.progress"));
    free_cluster(c);
}

static const char *const bad_regains[] = {
    "",
    "\n",
    "flamedb-regain 1\n0000000000000000 0000000000000005\nend 1\n", /* another version */
    "flamedb-regain 3\nend 0\n",
    "flamedb-regainx 2\nend 0\n",
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 2\n", /* count over the data */
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 0\n",
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 18446744073709551617\n",
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 01\n",
    "flamedb-regain 2\n0000000000000006 0000000000000005\nend 1\n", /* lo > hi */
    "flamedb-regain 2\n0000000000000000 0000000000000005\n0000000000000000 0000000000000005\n"
    "end 2\n", /* an interval twice: its writer never does that */
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 1\nx", /* trailing garbage */
    "flamedb-regain 2\n0000000000000000 0000000000000005\nend 1\n\n",
    "flamedb-regain 2\n0000000000000000 0000000000000005 7\nend 1\n",
    "flamedb-regain 2\n0000000000000000  000000000000005\nend 1\n",
    "flamedb-regain 2\n-000000000000001 0000000000000005\nend 1\n",
    "flamedb-regain 2\n0x00000000000000 0000000000000005\nend 1\n",
    "flamedb-regain 2\n000000000000000A 000000000000000B\nend 1\n",
    "flamedb-regain 2\n0 5\nend 1\n",
    "flamedb-regain 2\r\n0000000000000000 0000000000000005\nend 1\n",
};

static void test_regain_damaged(void)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof bad_regains / sizeof *bad_regains; i++)
        check_regain_refused(bad_regains[i], strlen(bad_regains[i]), "case", i);
    /* a NUL inside a line */
    static const char nul[] = "flamedb-regain 2\n0000000000000000\0"
                              "0000000000000005\nend 1\n";
    check_regain_refused(nul, sizeof nul - 1, "with a NUL", 0);
    /* cut at every byte: never read as a shorter list */
    const char *good = "flamedb-regain 2\n0000000000000000 0000000000000005\n"
                       "0000000000000010 00000000000000ff\nend 2\n";
    for (size_t k = 0; k < strlen(good); k++)
        check_regain_refused(good, k, "cut at", k);
    put_str("regain", good);
    CHECK_EQ_INT(regain_load(&n), 0);
    CHECK_EQ_INT(n, 2);
    put_str("regain", "flamedb-regain 2\nend 0\n"); /* never written, but nothing to regain */
    CHECK_EQ_INT(regain_load(&n), 0);
    CHECK_EQ_INT(n, 0);
    /* larger than the limit: refused before it is read */
    char path[128];
    path_of("regain", path, sizeof path);
    CHECK_EQ_INT(truncate(path, (off_t)CLUSTER_REGAIN_FILE_MAX + 1), 0);
    CHECK(regain_load(&n) == 0 && loaded_full && n == 0);
    /* unreadable: a directory in its place (moved aside too) */
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    CHECK(regain_load(&n) == 0 && loaded_full && n == 0);
    rm("regain");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A file of many records (here 400,000: 13.6 MB, well under the size limit)
 * loads in linear-logarithmic time: checking each interval against every
 * other took minutes, and the node does not start before it is read. */
static void test_regain_many(void)
{
    enum { N = 400000 };
    char *f = malloc((size_t)N * 64), *p = f; /* the longest line: 50 bytes */
    p += sprintf(p, "flamedb-regain 2\n");
    for (int i = 0; i < N; i++)
        p += sprintf(p, "%016llx %016llx\n", (unsigned long long)i * 4,
                     (unsigned long long)i * 4 + 1);
    p += sprintf(p, "end %d\n", N);
    put_bytes("regain", f, (size_t)(p - f));
    double t0 = now_s();
    size_t n = 0;
    CHECK_EQ_INT(regain_load(&n), 0);
    CHECK_EQ_INT(n, N);
    double took = now_s() - t0;
    fprintf(stderr, "regain of %d intervals loaded in %.3f s\n", N, took);
    CHECK(took < 10);
    rm("regain");

    p = f + sprintf(f, "flamedb-regain-progress 2\n");
    for (int i = 0; i < N / 2; i++)
        p += sprintf(p, "cleared %016llx %016llx 1\n", (unsigned long long)i * 4,
                     (unsigned long long)i * 4 + 1);
    for (int i = 0; i < N / 2; i++)
        p += sprintf(p, "piece %016llx %016llx 0 0 0 - -\n", (unsigned long long)i * 4 + 1,
                     (unsigned long long)i * 4 + 1);
    p += sprintf(p, "end %d\n", N);
    put_bytes("regain.progress", f, (size_t)(p - f));
    t0 = now_s();
    size_t niv = 0, np = 0;
    cluster_t *c = new_cluster();
    repair_t *r = calloc(1, sizeof *r);
    r->c = c;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_regain_progress_load(r, &em), 0);
    niv = r->rg.niv;
    np = r->rg.streams.n;
    free(r->rg.iv);
    free(r->rg.streams.v);
    free(r);
    free_cluster(c);
    CHECK_EQ_INT(niv, N / 2);
    CHECK_EQ_INT(np, N / 2);
    took = now_s() - t0;
    fprintf(stderr, "progress of %d lines loaded in %.3f s\n", N, took);
    CHECK(took < 10);
    rm("regain.progress");
    free(f);
}

/* ---------- DATA_DIR/regain.progress */

static repair_t *new_repair(cluster_t *c)
{
    repair_t *r = calloc(1, sizeof *r);
    r->c = c;
    return r;
}

static void free_repair(repair_t *r)
{
    free(r->rg.iv);
    free(r->rg.streams.v);
    free(r);
}

static int progress_load(size_t *niv, size_t *npieces)
{
    cluster_t *c = new_cluster();
    repair_t *r = new_repair(c);
    errmsg_t em = {{0}};
    int rc = repair_regain_progress_load(r, &em);
    *niv = r->rg.niv;
    *npieces = r->rg.streams.n;
    free_repair(r);
    free_cluster(c);
    return rc;
}

static void test_progress_roundtrip(void)
{
    cluster_t *c = new_cluster();
    repair_t *r = new_repair(c);
    r->rg.iv = calloc(3, sizeof *r->rg.iv);
    r->rg.iv[0] = (repair_rg_iv_t){0x100, 0x1ff, 7, 1700000000123ull};
    r->rg.iv[1] = (repair_rg_iv_t){0x200, 0x2ff, 7, 0}; /* not cleared: not written */
    r->rg.iv[2] = (repair_rg_iv_t){0x300, UINT64_MAX, 7, 1700000000456ull};
    r->rg.niv = r->rg.ivcap = 3;
    repair_stream_state_t *a = repair_stream_state(&r->rg.streams, 0x100, 0x17f);
    a->done = 1;
    a->after_len = REPAIR_STREAM_KEY_MAX;
    for (size_t i = 0; i < a->after_len; i++)
        a->after[i] = (uint8_t)(i * 7);
    a->spans_after_len = 3;
    memcpy(a->spans_after, "\x00\xff\x10", 3);
    repair_stream_state_t *b = repair_stream_state(&r->rg.streams, 0x300, 0x3ff);
    b->failed = 1;
    repair_stream_state(&r->rg.streams, 0x200, 0x2ff); /* in no cleared interval: not written */
    CHECK_EQ_INT(repair_regain_progress_save(r), 0);
    CHECK(!exists("regain.progress.tmp"));

    repair_t *q = new_repair(c);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_regain_progress_load(q, &em), 0);
    CHECK_EQ_INT(q->rg.niv, 2);
    CHECK_EQ_INT(q->rg.streams.n, 2);
    if (q->rg.niv == 2 && q->rg.streams.n == 2) {
        CHECK(q->rg.iv[0].lo == 0x100 && q->rg.iv[0].hi == 0x1ff);
        CHECK(q->rg.iv[0].settled_ms == 1700000000123ull);
        CHECK(q->rg.iv[1].lo == 0x300 && q->rg.iv[1].hi == UINT64_MAX);
        const repair_stream_state_t *x = &q->rg.streams.v[0], *y = &q->rg.streams.v[1];
        CHECK(x->lo == 0x100 && x->hi == 0x17f && x->done && !x->spans_done && !x->failed);
        CHECK_EQ_INT(x->after_len, REPAIR_STREAM_KEY_MAX);
        CHECK(memcmp(x->after, a->after, a->after_len) == 0);
        CHECK_EQ_INT(x->spans_after_len, 3);
        CHECK(memcmp(x->spans_after, "\x00\xff\x10", 3) == 0);
        CHECK(y->lo == 0x300 && y->failed && !y->done && y->after_len == 0);
    }
    free_repair(q);

    /* nothing cleared: the file goes */
    r->rg.iv[0].settled_ms = r->rg.iv[2].settled_ms = 0;
    CHECK_EQ_INT(repair_regain_progress_save(r), 0);
    CHECK(!exists("regain.progress"));
    free_repair(r);
    free_cluster(c);
}

#define CL "cleared 0000000000000100 00000000000001ff 18bcfe56800\n"
#define PH "flamedb-regain-progress 2\n"
static const char *const bad_progress[] = {
    "",
    "flamedb-regain-progress 1\n" CL,
    "flamedb-regain-progress 1\n" CL "end 1\n",
    PH CL "end 2\n",
    PH CL "end 1\ngarbage\n",
    PH CL CL "end 2\n", /* the same interval twice */
    PH "cleared 00000000000001ff 0000000000000100 18bcfe56800\nend 1\n",
    PH "cleared 0000000000000100 00000000000001ff 0\nend 1\n",
    PH "cleared 0000000000000100 00000000000001ff 18bcfe56800 1\nend 1\n",
    PH "cleared 0000000000000100 00000000000001ff +18bcfe56800\nend 1\n",
    PH "cleared 0000000000000100 00000000000001ff 11111111111111111\nend 1\n",
    PH "clear 0000000000000100 00000000000001ff 18bcfe56800\nend 1\n",
    /* a cursor in an interval the file does not list as cleared */
    PH "piece 0000000000000100 000000000000017f 1 0 0 00 -\nend 1\n",
    PH CL "piece 0000000000000000 000000000000017f 1 0 0 00 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 00 -\n"
          "piece 0000000000000100 000000000000017f 1 0 0 00 -\nend 3\n",
    PH CL "piece 0000000000000180 000000000000017f 1 0 0 00 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 2 0 0 00 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 -1 00 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 0 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 0g -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 AB -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 - - x\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 -\nend 2\n",
    PH CL "piece 0000000000000100 000000000000017f 1 0 0 -  -\nend 2\n",
    /* pieces follow every cleared interval */
    PH "cleared 0000000000000000 0000000000000fff 18bcfe56800\n"
       "piece 0000000000000100 000000000000017f 1 0 0 00 -\n" CL "end 3\n",
};

/* Pieces inside overlapping and separate cleared intervals are taken; one
 * that only spans two of them, or lies between them, is not. */
static void test_progress_containment(void)
{
    const char *head = PH "cleared 0000000000000100 00000000000001ff 1\n"
                          "cleared 0000000000000150 00000000000003ff 1\n"
                          "cleared 0000000000000500 00000000000005ff 1\n";
    static const struct {
        const char *lo, *hi;
        int ok;
    } cases[] = {
        {"0000000000000180", "0000000000000390", 1}, {"0000000000000100", "00000000000001ff", 1},
        {"0000000000000500", "00000000000005ff", 1}, {"00000000000003ff", "00000000000003ff", 1},
        {"0000000000000100", "0000000000000400", 0}, {"0000000000000400", "00000000000004ff", 0},
        {"00000000000003f0", "0000000000000500", 0}, {"00000000000000ff", "0000000000000100", 0},
        {"0000000000000600", "0000000000000600", 0},
    };
    char f[512];
    size_t niv = 0, np = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(f, sizeof f, "%spiece %s %s 0 0 0 - -\nend 4\n", head, cases[i].lo, cases[i].hi);
        put_str("regain.progress", f);
        int rc = progress_load(&niv, &np);
        if ((rc == 0) != cases[i].ok) fprintf(stderr, "containment case %zu: %d\n", i, rc);
        CHECK_EQ_INT(rc == 0, cases[i].ok);
        CHECK_EQ_INT(np, cases[i].ok);
    }
    rm("regain.progress");
}

static void test_progress_damaged(void)
{
    size_t niv = 0, np = 0;
    for (size_t i = 0; i < sizeof bad_progress / sizeof *bad_progress; i++) {
        put_str("regain.progress", bad_progress[i]);
        int rc = progress_load(&niv, &np);
        if (rc == 0) fprintf(stderr, "accepted progress case %zu\n", i);
        CHECK(rc < 0);
        CHECK_EQ_INT(niv, 0); /* nothing kept: the regain clears and streams afresh */
        CHECK_EQ_INT(np, 0);
    }
    /* a key one byte over the limit (it would be read cut short otherwise) */
    char *line = malloc(4 * REPAIR_STREAM_KEY_MAX + 256);
    int k = snprintf(line, 256, PH CL "piece 0000000000000100 000000000000017f 1 0 0 ");
    for (int i = 0; i < 2 * (REPAIR_STREAM_KEY_MAX + 1); i++)
        line[k++] = 'a';
    snprintf(line + k, 64, " -\nend 2\n");
    put_str("regain.progress", line);
    CHECK(progress_load(&niv, &np) < 0);
    k -= 2; /* at the limit it is read */
    snprintf(line + k, 64, " -\nend 2\n");
    put_str("regain.progress", line);
    CHECK_EQ_INT(progress_load(&niv, &np), 0);
    CHECK_EQ_INT(np, 1);
    free(line);

    const char *good = PH CL "piece 0000000000000100 000000000000017f 1 1 0 0a0b ff\nend 2\n";
    for (size_t i = 0; i < strlen(good); i++) {
        put_bytes("regain.progress", good, i);
        int rc = progress_load(&niv, &np);
        if (rc == 0) fprintf(stderr, "accepted progress cut at %zu\n", i);
        CHECK(rc < 0);
        CHECK_EQ_INT(niv + np, 0);
    }
    put_str("regain.progress", good);
    CHECK_EQ_INT(progress_load(&niv, &np), 0);
    CHECK_EQ_INT(niv, 1);
    CHECK_EQ_INT(np, 1);
    char path[128];
    path_of("regain.progress", path, sizeof path);
    CHECK_EQ_INT(truncate(path, (off_t)CLUSTER_REGAIN_FILE_MAX + 1), 0);
    CHECK(progress_load(&niv, &np) < 0);
    rm("regain.progress");
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    CHECK(progress_load(&niv, &np) < 0);
    CHECK_EQ_INT(niv + np, 0);
    rm("regain.progress");
}

/* ---------- DATA_DIR/regain.ring */

/* Loads regain.ring with stderr captured; returns the load's result, the
 * nodes read in *n and whether the log named the repair to run. */
static uint64_t ring_forget_ms; /* the node's --forget-left-after (0: the default) */

static int ring_load(size_t *n, int *told)
{
    char log_path[128];
    path_of("log", log_path, sizeof log_path);
    fflush(stderr);
    int saved = dup(2), fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    cluster_t *c = new_cluster();
    c->cfg.forget_left_after_ms = ring_forget_ms;
    errmsg_t em = {{0}};
    int rc = cluster_regain_ring_load(c, &em);
    *n = c->known.n;
    CHECK_EQ_INT(c->known.unsure, c->known.n > 0);
    free_cluster(c);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len = 0;
    char *log = get_bytes("log", &len);
    *told = log != NULL && strstr(log, "cannot tell which ranges it holds short") != NULL;
    CHECK_EQ_INT(*told, exists("regain.full"));
    rm("regain.full");
    free(log);
    rm("log");
    return rc;
}

static void test_ring_roundtrip(void)
{
    cluster_t *c = new_cluster();
    static const uint64_t t1[] = {0xffffffffffffffffull, 5}, t2[] = {42};
    c->known.v = calloc(2, sizeof *c->known.v);
    c->known.v[0] = (cluster_known_node_t){strdup("n1"), malloc(sizeof t1), 2};
    memcpy(c->known.v[0].tokens, t1, sizeof t1);
    c->known.v[1] = (cluster_known_node_t){strdup("node-2.b_c"), malloc(sizeof t2), 1};
    memcpy(c->known.v[1].tokens, t2, sizeof t2);
    c->known.n = c->known.cap = 2;
    CHECK_EQ_INT(cluster_regain_ring_save(c), 0);
    CHECK(!exists("regain.ring.tmp"));
    free_cluster(c);

    cluster_t *d = new_cluster();
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_regain_ring_load(d, &em), 0);
    CHECK_EQ_INT(d->known.n, 2);
    CHECK(d->known.unsure);
    if (d->known.n == 2) {
        CHECK_EQ_STR(d->known.v[0].id, "n1");
        CHECK_EQ_INT(d->known.v[0].ntokens, 2);
        CHECK(memcmp(d->known.v[0].tokens, t1, sizeof t1) == 0);
        CHECK_EQ_STR(d->known.v[1].id, "node-2.b_c");
        CHECK(d->known.v[1].ntokens == 1 && d->known.v[1].tokens[0] == 42);
    }
    free_cluster(d);
    rm("regain.ring");
    size_t n = 0;
    int told = 0;
    CHECK_EQ_INT(ring_load(&n, &told), 0); /* no file: nothing known, nothing said */
    CHECK_EQ_INT(n, 0);
    CHECK(!told);
}

#define RH "flamedb-regain-ring 2\nn1 2 5 ffffffffffffffff\n" /* this node, as it is */
static const char *const bad_rings[] = {
    "",
    "flamedb-regain-ring 1\nn1 2 5 ffffffffffffffff\n",
    "flamedb-regain-ring 1\nn1 2 5 ffffffffffffffff\nend 1\n",
    RH "end 2\n",
    RH "end 1\ntrailing",
    RH "n2 2 5\nend 2\n",          /* count over the tokens there */
    RH "n2 1 5 6\nend 2\n",        /* tokens over the count */
    RH "n2 4097 5\nend 2\n",       /* over RING_MAX_TOKENS */
    RH "n2 4294967297 5\nend 2\n", /* wraps 32 bits to 1 */
    RH "n2 99999999999999999999 5\nend 2\n",
    RH "n2 0\nend 2\n",
    RH "n2 01 5\nend 2\n",
    RH "n2 -1 5\nend 2\n",
    RH "n2 1 -5\nend 2\n",
    RH "n2 1 0x5\nend 2\n",
    RH "n2 1 11111111111111111\nend 2\n",
    RH "n2 1 5\nn2 1 6\nend 3\n", /* one node twice */
    RH "n/2 1 5\nend 2\n",        /* not a node id */
    RH "n2\nend 2\n",
    /* this node missing, or with other tokens: a ring before without it
     * would make it clear and stream everything it holds */
    "flamedb-regain-ring 2\nn2 1 5\nend 1\n",
    "flamedb-regain-ring 2\nn1 1 5\nend 1\n",
    "flamedb-regain-ring 2\nn1 2 5 6\nend 1\n",
    "flamedb-regain-ring 2\nn1 3 5 ffffffffffffffff 6\nend 1\n",
};

static void test_ring_damaged(void)
{
    size_t n = 0;
    int told = 0;
    for (size_t i = 0; i < sizeof bad_rings / sizeof *bad_rings; i++) {
        put_str("regain.ring", bad_rings[i]);
        CHECK_EQ_INT(ring_load(&n, &told), 0); /* the node starts */
        if (n != 0 || !told) fprintf(stderr, "ring case %zu: %zu nodes, told %d\n", i, n, told);
        CHECK_EQ_INT(n, 0); /* ...knowing no ring: it learns it from gossip */
        CHECK(told);
    }
    const char *good = RH "n2 1 abc\nend 2\n";
    for (size_t k = 0; k < strlen(good); k++) {
        put_bytes("regain.ring", good, k);
        CHECK_EQ_INT(ring_load(&n, &told), 0);
        if (n != 0) fprintf(stderr, "ring cut at %zu read as %zu nodes\n", k, n);
        CHECK_EQ_INT(n, 0);
        CHECK(told);
    }
    put_str("regain.ring", good);
    CHECK_EQ_INT(ring_load(&n, &told), 0);
    CHECK_EQ_INT(n, 2);
    CHECK(!told);
    char path[128];
    path_of("regain.ring", path, sizeof path);
    CHECK_EQ_INT(truncate(path, (off_t)CLUSTER_REGAIN_RING_MAX + 1), 0);
    CHECK_EQ_INT(ring_load(&n, &told), 0);
    CHECK(n == 0 && told);
    rm("regain.ring");
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    CHECK_EQ_INT(ring_load(&n, &told), 0);
    CHECK(n == 0 && told);
    rm("regain.ring");
}

/* A node down longer than --forget-left-after (regain.ring's modification
 * time, kept recent while it runs, that much older) cannot see every ring
 * change meanwhile: it keeps the ring it knew and marks itself. */
static void test_ring_downtime(void)
{
    size_t n = 0;
    int told = 0;
    char path[128];
    path_of("regain.ring", path, sizeof path);
    ring_forget_ms = 10000;
    put_str("regain.ring", RH "end 1\n");
    CHECK_EQ_INT(ring_load(&n, &told), 0); /* written just now: down for no time */
    CHECK(n == 1 && !told);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 11; /* down 11 s, tombstones kept 10 s */
    ts[1] = ts[0];
    CHECK_EQ_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
    CHECK_EQ_INT(ring_load(&n, &told), 0);
    CHECK(n == 1 && told);
    ts[0].tv_sec += 3; /* 8 s: within the keep time */
    ts[1] = ts[0];
    CHECK_EQ_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
    CHECK_EQ_INT(ring_load(&n, &told), 0);
    CHECK(n == 1 && !told);
    ring_forget_ms = 0;
    rm("regain.ring");
}

/* A file of the size given, in place of name, with byte at flipped by x. */
static void put_flipped(const char *name, const char *good, size_t len, size_t at, int x)
{
    char *b = malloc(len);
    memcpy(b, good, len);
    b[at] = (char)(b[at] ^ x);
    put_bytes(name, b, len);
    free(b);
}

/* Every byte of each file as its writer leaves it, changed (one bit, or a
 * digit into another digit), is refused: the checksum of the end line
 * catches what the parsers alone would read as another list. The same file
 * without its checksum, as the release before wrote it, is still read. */
static void test_checksums(void)
{
    cluster_t *c = new_cluster();
    uint64_t lo[] = {0x10, 0x200}, hi[] = {0x1ff, 0x3ff};
    c->regain.lo = malloc(sizeof lo);
    c->regain.hi = malloc(sizeof hi);
    memcpy(c->regain.lo, lo, sizeof lo);
    memcpy(c->regain.hi, hi, sizeof hi);
    c->regain.n = c->regain.cap = 2;
    CHECK_EQ_INT(cluster_regain_save(c), 0);
    free_cluster(c);
    size_t len = 0, n = 0;
    char *good = get_bytes("regain", &len);
    CHECK(good != NULL && len > 20 && strstr(good, "\nend 2 ") != NULL);
    for (size_t at = 0; good != NULL && at < len; at++)
        for (int x = 1; x <= 2; x++) {
            put_flipped("regain", good, len, at, x);
            int rc = regain_load(&n);
            if (rc != 0 || n != 0 || !loaded_full)
                fprintf(stderr, "regain with byte %zu ^ %d: rc %d, %zu intervals\n", at, x, rc, n);
            CHECK(rc == 0 && n == 0 && loaded_full);
        }
    if (good != NULL) { /* without the checksum: read */
        char *sp = strrchr(good, ' ');
        strcpy(sp, "\n");
        put_str("regain", good);
        CHECK_EQ_INT(regain_load(&n), 0);
        CHECK(n == 2 && !loaded_full);
    }
    free(good);
    rm("regain");

    c = new_cluster();
    repair_t *r = new_repair(c);
    r->rg.iv = calloc(1, sizeof *r->rg.iv);
    r->rg.iv[0] = (repair_rg_iv_t){0x100, 0x1ff, 7, 1700000000123ull};
    r->rg.niv = r->rg.ivcap = 1;
    repair_stream_state_t *a = repair_stream_state(&r->rg.streams, 0x100, 0x17f);
    a->after_len = 2;
    memcpy(a->after, "\x0a\x0b", 2);
    CHECK_EQ_INT(repair_regain_progress_save(r), 0);
    free_repair(r);
    free_cluster(c);
    size_t niv = 0, np = 0;
    good = get_bytes("regain.progress", &len);
    CHECK(good != NULL && strstr(good, "\nend 2 ") != NULL);
    for (size_t at = 0; good != NULL && at < len; at++)
        for (int x = 1; x <= 2; x++) {
            put_flipped("regain.progress", good, len, at, x);
            int rc = progress_load(&niv, &np);
            if (rc == 0) fprintf(stderr, "progress with byte %zu ^ %d accepted\n", at, x);
            CHECK(rc < 0 && niv + np == 0);
        }
    if (good != NULL) {
        strcpy(strrchr(good, ' '), "\n");
        put_str("regain.progress", good);
        CHECK_EQ_INT(progress_load(&niv, &np), 0);
        CHECK(niv == 1 && np == 1);
    }
    free(good);
    rm("regain.progress");

    c = new_cluster();
    static const uint64_t t1[] = {5, 0xffffffffffffffffull}, t2[] = {42, 0x99};
    c->known.v = calloc(2, sizeof *c->known.v);
    c->known.v[0] = (cluster_known_node_t){strdup("n1"), malloc(sizeof t1), 2};
    memcpy(c->known.v[0].tokens, t1, sizeof t1);
    c->known.v[1] = (cluster_known_node_t){strdup("n2"), malloc(sizeof t2), 2};
    memcpy(c->known.v[1].tokens, t2, sizeof t2);
    c->known.n = c->known.cap = 2;
    CHECK_EQ_INT(cluster_regain_ring_save(c), 0);
    free_cluster(c);
    int told = 0;
    good = get_bytes("regain.ring", &len);
    CHECK(good != NULL && strstr(good, "\nend 2 ") != NULL);
    for (size_t at = 0; good != NULL && at < len; at++)
        for (int x = 1; x <= 2; x++) {
            put_flipped("regain.ring", good, len, at, x);
            CHECK_EQ_INT(ring_load(&n, &told), 0);
            if (n != 0) fprintf(stderr, "ring with byte %zu ^ %d read as %zu\n", at, x, n);
            CHECK(n == 0 && told);
        }
    if (good != NULL) {
        strcpy(strrchr(good, ' '), "\n");
        put_str("regain.ring", good);
        CHECK_EQ_INT(ring_load(&n, &told), 0);
        CHECK(n == 2 && !told);
    }
    free(good);
    rm("regain.ring");
}

/* ---------- when a regain is over (repair_regain_after) */

/* A pass asks repair_regain_after whether a restart would still resume a
 * regain before it lets the ranges being received go: while the progress
 * file is there (the streams done, not yet followed by a complete pass) a
 * restart resumes the regain, and its ranges must still be taken as being
 * received. */
static void test_regain_after(void)
{
    cluster_t *c = new_cluster();
    repair_t *r = new_repair(c);
    CHECK_EQ_INT(uv_mutex_init(&r->mu), 0);
    r->closing = 1;                                   /* no loop to tell */
    CHECK_EQ_INT(repair_regain_after(r, 1, 5000), 1); /* none being streamed */
    CHECK_EQ_INT(repair_regain_after(r, 0, 5000), 1);
    r->rg.iv = calloc(1, sizeof *r->rg.iv);
    r->rg.iv[0] = (repair_rg_iv_t){0x100, 0x1ff, 7, 1700000000123ull};
    r->rg.niv = r->rg.ivcap = 1;
    r->rg.gen = r->regain.gen = 7;
    r->regain.n = 1;
    CHECK_EQ_INT(repair_regain_progress_save(r), 0);
    CHECK(exists("regain.progress"));
    CHECK_EQ_INT(repair_regain_after(r, 1, 5000), 0); /* not streamed yet */
    r->rg.streamed_ms = 4000;
    CHECK_EQ_INT(repair_regain_after(r, 0, 5000), 0); /* an incomplete pass */
    r->rg.streamed_ms = 4000;
    CHECK_EQ_INT(repair_regain_after(r, 1, 3000), 0); /* the pass began before the streams ended */
    CHECK(exists("regain.progress"));
    r->rg.streamed_ms = 4000;
    r->regain.gen = 8; /* the loop has a longer list: that one is streamed next */
    CHECK_EQ_INT(repair_regain_after(r, 1, 5000), 0);
    CHECK(exists("regain.progress"));
    r->regain.gen = 7;
    r->rg.streamed_ms = 4000;
    CHECK_EQ_INT(repair_regain_after(r, 1, 5000), 1); /* over: nothing to resume */
    CHECK(!exists("regain.progress"));
    CHECK_EQ_INT(r->regain_done, 7);
    CHECK_EQ_INT(r->counters.regains, 1);
    uv_mutex_destroy(&r->mu);
    free_repair(r);
    free_cluster(c);
}

/* ---------- a piece whose check keeps disagreeing (repair_regain_heal) */

static void test_heal(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return;
    labels_t *l = fx_labels("heal", NULL);
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;work", 40);
    CHECK_EQ_INT(fx_write(f.s, "ht", l, t, st, 1, (f.now - 7200) * NS, NULL), 0);
    uint64_t token = labels_hash(l) >> 1; /* fx_write's token */
    cluster_t *c = new_cluster();
    repair_t *r = new_repair(c);
    CHECK_EQ_INT(uv_mutex_init(&r->mu), 0);
    r->storage = f.s;
    r->o.heal_after = 3;
    r->o.heals = 1;
    r->rg.iv = calloc(1, sizeof *r->rg.iv);
    r->rg.iv[0] = (repair_rg_iv_t){token - 5, token + 5, 7, 1700000000123ull};
    r->rg.niv = r->rg.ivcap = 1;
    repair_stream_state_t *ss = repair_stream_state(&r->rg.streams, token - 1, token + 1);
    ss->done = ss->spans_done = 1;
    ss->after_len = 4;
    memcpy(ss->after, "\x01\x02\x03\x04", 4);
    ss->mismatches = 2; /* not yet */
    CHECK_EQ_INT(repair_regain_heal(r, ss), 0);
    CHECK(ss->done && ss->after_len == 4 && ss->heals == 0);
    CHECK_EQ_INT(fx_totals(f.s, "ht", l, 1, 0, f.now + 60, NULL), 40);
    ss->mismatches = 3;
    CHECK_EQ_INT(repair_regain_heal(r, ss), 1);
    CHECK(!ss->done && !ss->spans_done && !ss->checked && ss->after_len == 0);
    CHECK(ss->spans_after_len == 0 && ss->mismatches == 0 && ss->heals == 1);
    CHECK_EQ_INT(r->counters.stream_heals, 1);
    CHECK_EQ_INT(r->counters.cleared, 1);
    CHECK_EQ_INT(fx_totals(f.s, "ht", l, 1, 0, f.now + 60, NULL), 0); /* cleared */
    CHECK_EQ_INT(storage_range_receiving(f.s, token), 1);             /* to stream again */
    repair_t *q = new_repair(c); /* a restart goes on from the piece's start */
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_regain_progress_load(q, &em), 0);
    CHECK_EQ_INT(q->rg.streams.n, 1);
    if (q->rg.streams.n == 1)
        CHECK(q->rg.streams.v[0].lo == token - 1 && !q->rg.streams.v[0].done &&
              q->rg.streams.v[0].after_len == 0);
    free_repair(q);
    ss->done = ss->spans_done = 1; /* streamed again, and still disagreeing: over the bound */
    ss->mismatches = 3;
    CHECK_EQ_INT(repair_regain_heal(r, ss), 0);
    CHECK(ss->done && ss->heals == 1);
    CHECK_EQ_INT(r->counters.stream_heals, 1);
    uv_mutex_destroy(&r->mu);
    free_repair(r);
    free_cluster(c);
    rm("regain.progress");
    calltree_free(t);
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
}

/* ---------- DATA_DIR/move.progress (repair_move_file.c) */

/* A join's streams written and read back equal (the move's fingerprint,
 * every cursor with its windows and bytes, heals and checks in a row that
 * disagreed, the source and horizon of a check that passed, kept only
 * where the cursor is past windows and span trees), through a temporary name and
 * after the store's WAL was synced; a move not cleared yet leaves no file;
 * every damaged form is refused with nothing kept (the move clears and
 * streams afresh). */
static void test_move_progress(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return;
    cluster_t *c = new_cluster();
    repair_t *r = new_repair(c);
    r->storage = f.s;
    r->gains_fp = 0xfedcba9876543210ull;
    repair_stream_state_t *a = repair_stream_state(&r->streams, 0x100, 0x17f);
    a->done = 1;
    a->after_len = REPAIR_STREAM_KEY_MAX;
    for (size_t i = 0; i < a->after_len; i++)
        a->after[i] = (uint8_t)(i * 7);
    a->windows = 675;
    a->bytes = 286186;
    repair_stream_state_t *b = repair_stream_state(&r->streams, 0x300, UINT64_MAX);
    b->failed = 1;
    b->spans_after_len = 2;
    memcpy(b->spans_after, "\x00\xff", 2);
    b->heals = 1;
    b->mismatches = 3;
    repair_stream_state_t *ck = repair_stream_state(&r->streams, 0x200, 0x2ff);
    ck->done = ck->spans_done = ck->checked = 1;
    snprintf(ck->check_src, sizeof ck->check_src, "-node.0_A");
    ck->check_s = 1764800000;
    ck->heals = 2;
    CHECK_EQ_INT(repair_move_progress_save(r), 0); /* not cleared: no file */
    CHECK(!exists("move.progress"));
    r->gains_cleared = 1;
    CHECK_EQ_INT(repair_move_progress_save(r), 0);
    CHECK(exists("move.progress") && !exists("move.progress.tmp"));

    repair_t *q = new_repair(c);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(repair_move_progress_load(q, &em), 0);
    CHECK(q->kept.loaded && q->kept.present && q->kept.saved);
    CHECK(q->kept.fp == 0xfedcba9876543210ull);
    CHECK_EQ_INT(q->kept.streams.n, 3);
    if (q->kept.streams.n == 3) {
        const repair_stream_state_t *x = &q->kept.streams.v[0], *y = &q->kept.streams.v[1];
        const repair_stream_state_t *z = &q->kept.streams.v[2];
        CHECK(x->lo == 0x100 && x->hi == 0x17f && x->done && !x->spans_done && !x->failed);
        CHECK(x->after_len == REPAIR_STREAM_KEY_MAX &&
              memcmp(x->after, a->after, x->after_len) == 0);
        CHECK(x->windows == 675 && x->bytes == 286186);
        CHECK(!x->check_kept && x->check_src[0] == 0 && x->heals == 0 && x->mismatches == 0);
        CHECK(y->lo == 0x300 && y->hi == UINT64_MAX && y->failed && y->after_len == 0);
        CHECK(y->spans_after_len == 2 && memcmp(y->spans_after, "\x00\xff", 2) == 0);
        CHECK(y->heals == 1 && y->mismatches == 3 && !y->check_kept);
        CHECK(z->lo == 0x200 && z->done && z->spans_done && z->heals == 2);
        CHECK(z->check_kept && !z->checked && strcmp(z->check_src, "-node.0_A") == 0);
        CHECK(z->check_s == 1764800000);
    }
    free(q->kept.streams.v);
    free(q);

    static const char *const bad[] = {
        "",
        "flamedb-move-progress 3\nmove 1\nend 1\n",
        "flamedb-move-progress 2\nmove 1\npiece 0000000000000001 0000000000000002 1 1 0 - - 0 0\n"
        "end 2\n", /* version 2 without heals and check */
        "flamedb-move-progress 2\nmove 1\npiece 0000000000000001 0000000000000002 1 1 0 - - 0 0 "
        "100000000 0 0 -\nend 2\n", /* heals past 32 bits */
        "flamedb-move-progress 2\nmove 1\npiece 0000000000000001 0000000000000002 1 1 0 - - 0 0 "
        "0 0 5 6e00\nend 2\n", /* a NUL in the source's id */
        "flamedb-move-progress 2\nmove 1\npiece 0000000000000001 0000000000000002 1 1 0 - - 0 0 "
        "0 0 5 6\nend 2\n",                 /* an odd hex id */
        "flamedb-move-progress 1\nend 0\n", /* no move */
        "flamedb-move-progress 1\nmove 1\nend 2\n",
        "flamedb-move-progress 1\nmove 1\nmove 2\nend 2\n",
        "flamedb-move-progress 1\npiece 0000000000000001 0000000000000002 0 0 0 - - 0 0\n"
        "move 1\nend 2\n",
        "flamedb-move-progress 1\nmove 1\npiece 0000000000000001 0000000000000002 0 0 0 - -\n"
        "end 2\n", /* no counts */
        "flamedb-move-progress 1\nmove 1\npiece 0000000000000002 0000000000000001 0 0 0 - - 0 0\n"
        "end 2\n", /* LO > HI */
        "flamedb-move-progress 1\nmove 1\npiece 0000000000000001 0000000000000002 0 0 0 - - 0 0\n"
        "piece 0000000000000001 0000000000000002 0 0 0 - - 0 0\nend 3\n", /* twice */
        "flamedb-move-progress 1\nmove 1\nend 1\ngarbage\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        put_str("move.progress", bad[i]);
        repair_t *d = new_repair(c);
        errmsg_t de = {{0}};
        CHECK_EQ_INT(repair_move_progress_load(d, &de), ERR_CORRUPT);
        CHECK(!d->kept.present && d->kept.streams.n == 0);
        free(d->kept.streams.v);
        free(d);
    }
    /* version 1 (before heals and checks were kept): read, nothing checked */
    put_str("move.progress", "flamedb-move-progress 1\nmove 1\n"
                             "piece 0000000000000001 0000000000000002 1 1 0 - - 5 6\nend 2\n");
    repair_t *v1 = new_repair(c);
    CHECK_EQ_INT(repair_move_progress_load(v1, &em), 0);
    CHECK(v1->kept.present && v1->kept.streams.n == 1);
    if (v1->kept.streams.n == 1) {
        const repair_stream_state_t *x = &v1->kept.streams.v[0];
        CHECK(x->done && x->spans_done && x->windows == 5 && x->bytes == 6);
        CHECK(!x->check_kept && x->heals == 0);
    }
    free(v1->kept.streams.v);
    free(v1);
    CHECK_EQ_INT(repair_move_progress_remove(r), 0);
    CHECK(!exists("move.progress"));
    repair_t *e = new_repair(c); /* no file: nothing kept, no error */
    CHECK_EQ_INT(repair_move_progress_load(e, &em), 0);
    CHECK(e->kept.loaded && !e->kept.present && !e->kept.saved);
    free(e);
    free(r->streams.v);
    free(r);
    free_cluster(c);
    fx_done(&f);
}

/* When a check kept in DATA_DIR/move.progress stands for a restarted
 * joiner's (repair_move_check_void): its source still a current replica of
 * the range and not in hints_for, its horizon inside the seen span and not
 * after this pass's; every other case is checked again. */
static void test_move_check_void(void)
{
    static const uint64_t t1[] = {1000, 2000}, t2[] = {1500, 3000}, t3[] = {2500};
    ring_node_spec_t spec[] = {{"n1", t1, 2}, {"n2", t2, 2}, {"n3", t3, 1}};
    ring_t *ring = NULL;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(ring_build(spec, 3, &ring, &em), 0);
    if (ring == NULL) return;
    uint8_t reach[3] = {1, 1, 1}, marked[3] = {0, 0, 0};
    cluster_view_t v = {.ring = ring, .reachable = reach, .rf = 2, .marked = marked};
    int n2 = ring_node_find(ring, "n2"), n3 = ring_node_find(ring, "n3");
    uint32_t cur[2] = {(uint32_t)ring_node_find(ring, "n1"), (uint32_t)n2};
    clock_manual_t m = {.wall_ns = 1800000000LL * 1000000000};
    repair_t *r = new_repair(NULL);
    r->o.write.clock = clock_manual(&m);
    r->o.seen_retention_s = 86400;
    r->stream_check_s = 1800000000 - 600;
    repair_stream_state_t ss = {.done = 1, .spans_done = 1, .check_kept = 1};
    snprintf(ss.check_src, sizeof ss.check_src, "n2");
    ss.check_s = 1800000000 - 3600; /* an earlier process's horizon */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) == NULL);
    ss.check_s = r->stream_check_s;
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) == NULL);
    marked[n2] = 1; /* the source missed writes since */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) != NULL);
    marked[n2] = 0;
    marked[n3] = 1; /* another node's mark is no matter */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) == NULL);
    CHECK(repair_move_check_void(r, &v, cur, 1, &ss) != NULL); /* no longer a replica */
    snprintf(ss.check_src, sizeof ss.check_src, "n9");         /* removed from the ring */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) != NULL);
    snprintf(ss.check_src, sizeof ss.check_src, "n2");
    ss.check_s = r->stream_check_s + 1; /* after this pass's horizon */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) != NULL);
    ss.check_s = 1800000000 - 2 * 86400; /* before the seen span */
    CHECK(repair_move_check_void(r, &v, cur, 2, &ss) != NULL);
    free(r);
    ring_free(ring);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/flamedb-regain-files-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_regain_roundtrip();
    test_regain_damaged();
    test_progress_roundtrip();
    test_progress_damaged();
    test_progress_containment();
    test_regain_many();
    test_move_check_void();
    test_ring_roundtrip();
    test_ring_damaged();
    test_ring_downtime();
    test_checksums();
    test_heal();
    test_regain_after();
    test_move_progress();
    static const char *const left[] = {"regain",       "regain.progress", "regain.ring",
                                       "regain.full",  "regain.damaged",  "log",
                                       "move.progress"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) /* after a failed check */
        rm(left[i]);
    CHECK_EQ_INT(rmdir(dir), 0);
    return check_exit();
}
