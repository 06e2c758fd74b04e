/* seed_stream_parts.c — writes the seed corpus of fuzz_stream_parts
 * (tests/fuzz/corpus/stream_parts): windows cut into parts by the source's
 * own planner (repair_parts_plan, repair_parts_build, repair_parts_symbols),
 * each part a STREAM answer as a source sends it (its piece of the tree
 * calltree_encode'd, its symbols, its slice of the kept and untreed lists,
 * its piece of a symbol too large for a part), packed by protobuf-c and
 * framed as the target reads them (2-byte little-endian length, answer).
 *
 *   build-fuzz/fuzz/seed_stream_parts tests/fuzz/corpus/stream_parts
 *
 * The windows are fixed (no randomness): running it again writes the same files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "node/cluster/repair_int.h"

/* A part's budget: small, so a window of a dozen stacks takes several. */
#define PIECE_BYTES 160

/* A window's source side: its residual, names and lists. */
typedef struct src {
    calltree_t *tree;
    symtab_t *names;
    storage_stream_profile_t kept[3], untreed[2];
    size_t nkept, nuntreed;
    repair_parts_t plan;
} src_t;

typedef struct syms {
    const symtab_t *names;
    Flamedb__Cluster__Symbol v[64], *pv[64];
    size_t n;
} syms_t;

static int put_sym(void *ctx, uint64_t id)
{
    syms_t *s = ctx;
    const char *name = NULL, *file = NULL;
    if (s->n == 64 || symtab_get(s->names, id, &name, &file) != 1) return 0;
    Flamedb__Cluster__Symbol *y = &s->v[s->n];
    flamedb__cluster__symbol__init(y);
    y->id = id;
    y->name = (ProtobufCBinaryData){strlen(name), (uint8_t *)name};
    y->file = (ProtobufCBinaryData){file ? strlen(file) : 0, (uint8_t *)(file ? file : "")};
    s->pv[s->n++] = y;
    return 0;
}

/* Part k of w as its answer, framed, appended to out. */
static int put_part(src_t *w, uint32_t k, int slices, buf_t *out)
{
    calltree_t *part = calltree_new(0);
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    int rc = part != NULL ? repair_parts_build(w->tree, &w->plan, k, part) : ERR_NOMEM;
    if (rc == 0) rc = calltree_encode(part, &enc);
    calltree_free(part);
    syms_t sy = {.names = w->names};
    if (rc == 0) rc = repair_parts_symbols(w->tree, &w->plan, k, put_sym, &sy);
    Flamedb__Cluster__StreamWindow m;
    flamedb__cluster__stream_window__init(&m);
    m.tenant = "seed";
    m.token = 0x1234;
    m.series_id = 0x5678;
    m.window_s = 1700000000;
    m.calltree = (ProtobufCBinaryData){enc.len, enc.data};
    m.part = k;
    m.parts = w->plan.nparts;
    m.anchor_depth = w->plan.anchor[k];
    m.digest = 0xfeedf00d;
    /* this part's slice of the lists (kept first, then untreed) */
    Flamedb__Cluster__SeenEntry e[5], *ke[5], *ue[5];
    int64_t totals[5];
    if (slices) {
        m.profile_slices = 1;
        for (size_t i = w->plan.pcut[k]; i < w->plan.pcut[k + 1]; i++) {
            int kept = i < w->nkept;
            const storage_stream_profile_t *p = kept ? &w->kept[i] : &w->untreed[i - w->nkept];
            Flamedb__Cluster__SeenEntry *x = &e[i];
            flamedb__cluster__seen_entry__init(x);
            x->tenant = m.tenant;
            x->profile_id = (ProtobufCBinaryData){16, (uint8_t *)p->profile_id};
            x->time_ns = p->time_ns;
            if (kept) {
                ke[m.n_kept++] = x;
            } else {
                totals[m.n_untreed] = p->total;
                ue[m.n_untreed++] = x;
            }
        }
        m.kept = ke;
        m.untreed = ue;
        m.untreed_totals = totals;
        m.n_untreed_totals = m.n_untreed;
    }
    /* this part's piece of a symbol */
    Flamedb__Cluster__SymbolPiece sp, *psp = &sp;
    uint32_t si = w->plan.psym[k];
    if (rc == 0 && si != UINT32_MAX) {
        uint64_t id = calltree_syms(w->tree)[si];
        const char *name = NULL, *file = NULL;
        symtab_get(w->names, id, &name, &file);
        size_t nl = strlen(name), fl = strlen(file), off = w->plan.poff[k];
        static uint8_t data[4096];
        size_t piece = PIECE_BYTES - PART_SYMBOL_BYTES; /* as the planner cut them */
        size_t len = nl + fl - off < piece ? nl + fl - off : piece;
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)(off + i < nl ? name[off + i] : file[off + i - nl]);
        flamedb__cluster__symbol_piece__init(&sp);
        sp.id = id;
        sp.name_len = (uint32_t)nl;
        sp.file_len = (uint32_t)fl;
        sp.offset = (uint32_t)off;
        sp.data = (ProtobufCBinaryData){len, data};
        m.pieces = &psp;
        m.n_pieces = 1;
    }
    Flamedb__Cluster__StreamWindow *pm = &m;
    Flamedb__Cluster__RepairAnswer a;
    flamedb__cluster__repair_answer__init(&a);
    a.windows = &pm;
    a.n_windows = 1;
    a.symbols = sy.pv;
    a.n_symbols = sy.n;
    a.more = 1;
    size_t len = flamedb__cluster__repair_answer__get_packed_size(&a);
    if (rc == 0 && len > 0xffff) rc = ERR_TOO_LARGE;
    uint8_t hdr[2] = {(uint8_t)len, (uint8_t)(len >> 8)};
    if (rc == 0) rc = buf_append(out, hdr, 2);
    if (rc == 0) rc = buf_reserve(out, len);
    if (rc == 0) out->len += flamedb__cluster__repair_answer__pack(&a, out->data + out->len);
    buf_free(&enc);
    return rc;
}

/* A residual of a few stacks over names, one of them longer than a part
 * when long_name; two kept and two untreed profiles. */
static int make_src(src_t *w, int long_name)
{
    memset(w, 0, sizeof *w);
    w->tree = calltree_new(0);
    w->names = symtab_new();
    if (w->tree == NULL || w->names == NULL) return ERR_NOMEM;
    uint64_t ids[8];
    int rc = 0;
    for (int i = 0; rc == 0 && i < 8; i++) {
        char name[700];
        int n = i == 5 && long_name ? snprintf(name, sizeof name, "%0600d", i)
                                    : snprintf(name, sizeof name, "pkg.fn%d", i);
        rc = symtab_intern(w->names, name, (size_t)n, "main.go", 7, &ids[i]);
    }
    for (int s = 0; rc == 0 && s < 12; s++) {
        uint64_t st[4] = {ids[s % 2], ids[2 + s % 3], ids[5 + s % 3], ids[s % 8]};
        rc = calltree_add_stack(w->tree, st, 1 + (size_t)s % 4, 10 + s);
    }
    for (size_t i = 0; i < 2; i++) {
        memset(w->kept[i].profile_id, (int)(0x10 + i), 16);
        w->kept[i].time_ns = 1700000000000000000 + (int64_t)i;
        memset(w->untreed[i].profile_id, (int)(0x20 + i), 16);
        w->untreed[i].time_ns = 1700000001000000000 + (int64_t)i;
        w->untreed[i].total = 7 + (int64_t)i;
    }
    w->nkept = w->nuntreed = 2;
    return rc;
}

static int write_seed(const char *dir, const char *name, int slices, int long_name, int restart,
                      int anchors)
{
    src_t w;
    int rc = make_src(&w, long_name);
    repair_parts_sizes_t z = {.budget = PIECE_BYTES,
                              .limit = 400,
                              .kept_bytes = PART_ENTRY_BYTES,
                              .untreed_bytes = PART_ENTRY_BYTES + PART_TOTAL_BYTES,
                              .pieces = long_name,
                              .anchors = anchors};
    if (slices) {
        z.nkept = w.nkept;
        z.nuntreed = w.nuntreed;
    }
    if (rc == 0) rc = repair_parts_plan(w.tree, w.names, &z, &w.plan);
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    /* restart: parts 0 and 1, then part 0 (out of order: the receiver
     * drops the window and asks for part 0 again), then every part */
    for (uint32_t k = 0; rc == 0 && restart && k < 3; k++)
        rc = put_part(&w, k % 2, slices, &out);
    for (uint32_t k = 0; rc == 0 && k < w.plan.nparts; k++)
        rc = put_part(&w, k, slices, &out);
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *fp = fopen(path, "wb");
        rc = fp != NULL && fwrite(out.data, 1, out.len, fp) == out.len ? 0 : ERR_IO;
        if (fp != NULL && fclose(fp) != 0) rc = ERR_IO;
    }
    if (rc == 0) fprintf(stderr, "%s: %u parts, %zu bytes\n", name, w.plan.nparts, out.len);
    buf_free(&out);
    repair_parts_free(&w.plan);
    calltree_free(w.tree);
    symtab_free(w.names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seed_stream_parts DIR\n");
        return 2;
    }
    static const struct {
        const char *name;
        int slices, long_name, restart, anchors;
    } seeds[] = {{"parts", 0, 0, 0, 0},
                 {"slices", 1, 0, 0, 0},
                 {"pieces", 1, 1, 0, 0},
                 {"restart", 1, 0, 1, 0},
                 {"anchors", 1, 1, 0, 1}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        int rc = write_seed(argv[1], seeds[i].name, seeds[i].slices, seeds[i].long_name,
                            seeds[i].restart, seeds[i].anchors);
        if (rc != 0) {
            fprintf(stderr, "seed_stream_parts: %s: error %d\n", seeds[i].name, rc);
            return 1;
        }
    }
    return 0;
}
