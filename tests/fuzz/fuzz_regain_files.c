/* fuzz_regain_files.c — libFuzzer target for the parsers of the files a node
 * keeps while it regains ranges after a removal: DATA_DIR/regain,
 * DATA_DIR/regain.progress and DATA_DIR/regain.ring (docs/cluster.md, "The
 * regain files").
 *
 * The first input byte picks the file; the rest is its content, written to a
 * temporary data directory and loaded. Beyond "no crash, no leak, no UB": a
 * refused file leaves nothing loaded (regain: the start fails with a reason,
 * or the node falls back to a full repair; progress: no interval or piece
 * kept; ring: the node starts knowing no ring, marked for a full repair),
 * and an accepted one holds only what its writer could have written
 * (LO <= HI, pieces inside cleared intervals, 1 to RING_MAX_TOKENS tokens,
 * this node n1 listed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "node/cluster/repair_int.h"

static char dir[64];

static void put(const char *name, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) abort();
}

static void check_regain(cluster_t *c)
{
    errmsg_t em = {{0}};
    int rc = cluster_regain_load(c, &em);
    if (rc < 0 && (em.text[0] == 0 || c->regain.n != 0)) abort();
    if (c->full.on && c->regain.n != 0) abort(); /* the fallback keeps no interval */
    for (size_t i = 0; rc == 0 && i < c->regain.n; i++)
        if (c->regain.lo[i] > c->regain.hi[i]) abort();
    cluster_regain_free(c);
}

static void check_progress(cluster_t *c)
{
    repair_t *r = calloc(1, sizeof *r);
    if (r == NULL) abort();
    r->c = c;
    errmsg_t em = {{0}};
    int rc = repair_regain_progress_load(r, &em);
    if (rc < 0 && (em.text[0] == 0 || r->rg.niv != 0 || r->rg.streams.n != 0)) abort();
    for (size_t i = 0; i < r->rg.streams.n; i++) {
        const repair_stream_state_t *ss = &r->rg.streams.v[i];
        int in = 0;
        for (size_t j = 0; j < r->rg.niv; j++)
            in |= ss->lo >= r->rg.iv[j].lo && ss->hi <= r->rg.iv[j].hi;
        if (!in || ss->lo > ss->hi || ss->after_len > REPAIR_STREAM_KEY_MAX) abort();
    }
    free(r->rg.iv);
    free(r->rg.streams.v);
    free(r);
}

static void check_ring(cluster_t *c)
{
    errmsg_t em = {{0}};
    if (cluster_regain_ring_load(c, &em) != 0) abort(); /* damaged: ignored, never fatal */
    if (c->known.unsure != (c->known.n > 0)) abort();
    if (c->known.n == 0 && !c->full.on) abort(); /* a refused file marks the node */
    int self = c->known.n == 0;
    for (size_t i = 0; i < c->known.n; i++)
        self |= strcmp(c->known.v[i].id, "n1") == 0;
    if (!self) abort();
    for (size_t i = 0; i < c->known.n; i++)
        if (c->known.v[i].ntokens == 0 || c->known.v[i].ntokens > RING_MAX_TOKENS) abort();
    cluster_regain_ring_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == 0) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-regain-XXXXXX");
        if (mkdtemp(dir) == NULL) abort();
        log_set_level(LOG_ERROR + 1); /* every refusal logs */
    }
    if (size < 1) return 0;
    static const char *const names[] = {"regain", "regain.progress", "regain.ring"};
    int which = data[0] % 3;
    put(names[which], data + 1, size - 1);
    cluster_t *c = calloc(1, sizeof *c);
    if (c == NULL) abort();
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir);
    c->clock = clock_real();
    static uint64_t self_tokens[] = {5, 0xffffffffffffffffull}; /* this node: n1 */
    snprintf(c->id.node_id, sizeof c->id.node_id, "n1");
    c->id.tokens = self_tokens;
    c->id.ntokens = 2;
    if (which == 0) check_regain(c);
    if (which == 1) check_progress(c);
    if (which == 2) check_ring(c);
    free(c);
    char path[128]; /* a regain that is gone removes its progress: start clean */
    snprintf(path, sizeof path, "%s/%s", dir, names[which]);
    unlink(path);
    static const char *const fallout[] = {"regain.full", "regain.damaged"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, fallout[i]);
        unlink(path);
    }
    return 0;
}
