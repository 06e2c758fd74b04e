/* fuzz_stream_parts.c — libFuzzer target for the receiver's assembly of a
 * streamed window that travels in parts (repair_partsin.c): its pieces of
 * the residual tree (each rooted at its anchor_depth on the path the
 * previous part ended on), the symbols of each answer, the slices of its
 * kept and untreed lists and a symbol sent in pieces.
 *
 * The input is a run of STREAM answers, each a 2-byte little-endian length
 * then a RepairAnswer (what the cluster envelope hands the stream). Their
 * windows in parts are taken the way repair_stream.c takes them: a part out
 * of order or of another digest starts the window over, an error ends the
 * stream (the window dropped), the last part yields the window. Beyond "no
 * crash, no leak, no UB": an error is ERR_CORRUPT, ERR_LIMIT or ERR_NOMEM;
 * memory stays bounded (the tree within its node limit, a symbol in pieces
 * within STREAM_PIECES_MAX, the lists and symbols within MAX_BYTES); a window put together holds
 * every slice of its lists in order, every symbol its parts brought, and (below the node limit) a
 * tree whose total is the sum of its parts'. Seeds: tests/fuzz/corpus/stream_parts, written by
 * tests/fuzz/seed_stream_parts.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"

#define MAX_TREE_NODES 4096
#define MAX_ANSWERS 64
#define MAX_BYTES (8u << 20)

/* What the harness expects of the window being put together. */
typedef struct expect {
    uint64_t total; /* the parts' root totals summed (wrapping) */
    size_t nkept, nuntreed;
    int limited; /* a part passed MAX_TREE_NODES */
} expect_t;

static void check_bounded(const repair_partsin_t *p)
{
    if (p->tree != NULL && calltree_node_count(p->tree) > MAX_TREE_NODES) abort();
    if (p->piece != NULL && p->piece_total > STREAM_PIECES_MAX) abort(); /* what it holds */
    if (p->piece_have > p->piece_total) abort();
    if (p->nkept > p->kept_cap || p->nuntreed > p->untreed_cap) abort();
    if (!p->over && p->bytes > MAX_BYTES) abort(); /* what it holds: within its bound */
    if (p->nkept + p->nuntreed > MAX_BYTES / sizeof *p->kept) abort();
}

/* The part's own tree total, decoded alone (what it adds to the window). */
static void expect_part(expect_t *x, const Flamedb__Cluster__StreamWindow *m)
{
    calltree_t *t = calltree_new(0);
    if (t == NULL) abort();
    if (calltree_decode_merge(t, m->calltree.data, m->calltree.len) == 0)
        x->total += (uint64_t)calltree_root_total(t);
    calltree_free(t);
    if (m->profile_slices) {
        x->nkept += m->n_kept;
        x->nuntreed += m->n_untreed;
    }
}

static void check_symbols(const repair_partsin_t *p, const Flamedb__Cluster__RepairAnswer *a)
{
    const char *name, *file;
    for (size_t i = 0; i < a->n_symbols; i++)
        if (!symtab_get(p->syms, a->symbols[i]->id, &name, &file)) abort();
}

/* The last part m taken: the window as repair_stream.c would store it. */
static void check_whole(const repair_partsin_t *p, const Flamedb__Cluster__StreamWindow *m,
                        const expect_t *x)
{
    if (!x->limited && (uint64_t)calltree_root_total(p->tree) != x->total) abort();
    if (!m->profile_slices) return;
    if (p->nkept != x->nkept || p->nuntreed != x->nuntreed) abort();
    repair_sliced_t sl;
    int rc = repair_partsin_sliced(p, m, &sl);
    if (rc == ERR_NOMEM) return;
    if (rc != 0 || sl.w.n_kept != p->nkept || sl.w.n_untreed != p->nuntreed ||
        sl.w.n_untreed_totals != p->nuntreed)
        abort();
    for (size_t i = 0; i < p->nkept; i++)
        if (sl.w.kept[i]->profile_id.len != 16 ||
            memcmp(sl.w.kept[i]->profile_id.data, p->kept[i].profile_id, 16) != 0)
            abort();
    for (size_t i = 0; i < p->nuntreed; i++)
        if (sl.w.untreed_totals[i] != p->untreed[i].total ||
            sl.w.untreed[i]->time_ns != p->untreed[i].time_ns)
            abort();
    repair_sliced_free(&sl);
}

/* One window of an answer, as repair_stream.c's take_part; 0 when the
 * stream goes on, else the error that ends it. */
static int take(repair_partsin_t *p, expect_t *x, const Flamedb__Cluster__RepairAnswer *a,
                const Flamedb__Cluster__StreamWindow *m)
{
    if (m->parts <= 1) { /* a whole window */
        repair_partsin_drop(p);
        return 0;
    }
    if (!repair_partsin_follows(p, m)) {
        repair_partsin_drop(p);
        if (++p->restarts > 3) p->restarts = 0;
        return 0;
    }
    if (p->next == 0) {
        memset(x, 0, sizeof *x);
        int rc = repair_partsin_start(p, m->digest, MAX_TREE_NODES, MAX_BYTES);
        if (rc != 0) return rc;
    }
    expect_part(x, m);
    int rc = repair_partsin_add(p, a, m);
    check_bounded(p);
    if (rc == ERR_LIMIT) x->limited = 1;
    if (rc != 0) return rc;
    check_symbols(p, a);
    if (++p->next < m->parts) return 0;
    check_whole(p, m, x);
    repair_partsin_drop(p);
    p->restarts = 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repair_partsin_t p = {0};
    expect_t x = {0};
    for (int k = 0; k < MAX_ANSWERS && size >= 2; k++) {
        size_t len = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (len > size) len = size;
        Flamedb__Cluster__RepairAnswer *a =
            flamedb__cluster__repair_answer__unpack(NULL, len, data);
        data += len;
        size -= len;
        if (a == NULL) continue;
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < a->n_windows; i++)
            rc = take(&p, &x, a, a->windows[i]);
        if (rc != 0 && rc != ERR_CORRUPT && rc != ERR_LIMIT && rc != ERR_NOMEM) abort();
        if (rc != 0) { /* the stream ends: the window from its first part next time */
            repair_partsin_drop(&p);
            p.restarts = 0;
        }
        flamedb__cluster__repair_answer__free_unpacked(a, NULL);
    }
    repair_partsin_drop(&p);
    return 0;
}
