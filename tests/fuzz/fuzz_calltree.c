/* fuzz_calltree.c — libFuzzer target for the call-tree codec (the value of
 * span trees and of cluster write parts) and the span-tree cap.
 *
 * The input is decoded into a tree with a node limit large enough to show
 * amplification (a few bytes asking for many nodes is refused, not obeyed).
 * Beyond "no crash, no leak, no UB": a refusal leaves no value changed; an
 * accepted encoding re-encodes to one that decodes to a tree of the same
 * nodes and total (node order may differ: the encoding is not canonical),
 * decoding it twice doubles every total, and capping the tree
 * (storage_cap_tree) keeps the root total exact within max nodes. The
 * same input laid out by calltree_decode_new is refused when the merge is
 * (or past its node limit: repeated children stay apart there) and else
 * holds the same total, and merged into an empty tree is the merge's
 * tree, node for node.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/calltree.h"
#include "storage/storage_int.h"

#define MAX_NODES 100000

static void check_cap(const calltree_t *t, size_t max)
{
    calltree_t *c = NULL;
    if (storage_cap_tree(t, max, &c) != 0) abort();
    if (c == NULL) {
        if (calltree_node_count(t) > max) abort();
        return;
    }
    if (calltree_node_count(c) > (max < 2 ? 2 : max)) abort();
    if (calltree_root_total(c) != calltree_root_total(t)) abort();
    calltree_free(c);
}

/* calltree_decode_new of the input against t, the merge's tree of it (rc
 * its result). */
static void check_new(const uint8_t *data, size_t size, const calltree_t *t, int rc)
{
    calltree_t *f = NULL;
    int frc = calltree_decode_new(data, size, MAX_NODES, &f);
    if ((frc != 0) != (f == NULL)) abort();
    if (rc != 0 && frc == 0) abort();
    if (frc != 0) {
        if (frc != ERR_CORRUPT && frc != ERR_LIMIT && frc != ERR_NOMEM) abort();
        if (rc == 0 && frc != ERR_LIMIT && frc != ERR_NOMEM) abort();
        return;
    }
    if (calltree_root_total(f) != calltree_root_total(t)) abort();
    if (calltree_node_count(f) < calltree_node_count(t)) abort();
    calltree_t *u = calltree_new(0);
    if (u == NULL || calltree_merge(u, f) != 0) abort();
    if (calltree_node_count(u) != calltree_node_count(t)) abort();
    for (uint32_t i = 0; i < calltree_node_count(u); i++)
        if (calltree_sym(u, i) != calltree_sym(t, i) ||
            calltree_parent(u, i) != calltree_parent(t, i) ||
            calltree_self(u, i) != calltree_self(t, i))
            abort();
    calltree_free(u);
    calltree_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    calltree_t *t = calltree_new(MAX_NODES);
    if (t == NULL) return 0;
    int rc = calltree_decode_merge(t, data, size);
    check_new(data, size, t, rc);
    if (rc != 0) {
        if (rc != ERR_CORRUPT && rc != ERR_LIMIT && rc != ERR_NOMEM) abort();
        if (calltree_root_total(t) != 0) abort(); /* no value changed */
        calltree_free(t);
        return 0;
    }
    buf_t a, b;
    buf_init(&a, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    if (calltree_encode(t, &a) != 0) abort();
    calltree_t *u = calltree_new(0);
    if (calltree_decode_merge(u, a.data, a.len) != 0) abort();
    if (calltree_encode(u, &b) != 0) abort();
    if (calltree_node_count(u) != calltree_node_count(t)) abort();
    if (calltree_root_total(u) != calltree_root_total(t)) abort();
    int64_t total = calltree_root_total(u);
    if (calltree_decode_merge(u, a.data, a.len) != 0) abort();
    if (calltree_root_total(u) != (int64_t)((uint64_t)total * 2)) abort();
    check_cap(t, 1 + (size > 0 ? data[0] % 64 : 0));
    calltree_free(u);
    calltree_free(t);
    buf_free(&a);
    buf_free(&b);
    return 0;
}
