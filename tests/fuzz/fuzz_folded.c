/* fuzz_folded.c — libFuzzer target for folded / lines bodies of POST /ingest.
 *
 * The first input byte picks the format (folded or lines), the app-name
 * suffix (so scaled and unscaled types are both exercised) and the sample
 * rate; the rest is the body (gzip is detected by its magic). Beyond "no
 * crash, no leak, no UB": a refusal is a 4xx with a reason; an accepted body
 * yields at most one series, whose tree's symbols are all in the symtab, and
 * for format=lines with an unscaled type the root total is the number of
 * non-blank lines.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/symtab.h"
#include "node/ingest/ingest.h"

static int has_symbol(void *ctx, uint64_t sym)
{
    const char *n, *f;
    if (!symtab_get(ctx, sym, &n, &f)) abort();
    return 0;
}

static int64_t nonblank_lines(const uint8_t *p, size_t n)
{
    int64_t lines = 0;
    int blank = 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            lines += !blank;
            blank = 1;
        } else if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            blank = 0;
        }
    }
    return lines + !blank;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[] = {"app.cpu", "app.inuse_objects", "app.wall{a=b}", "app"};
    static const char *rates[] = {NULL, "100", "0", "17"};
    if (size < 1) return 0;
    uint8_t sel = data[0];
    int lines = sel & 1;
    const char *name = names[(sel >> 1) & 3];
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_decompressed_bytes = 1 << 20;
    lim.max_samples = 5000;
    lim.max_tree_nodes = 20000;
    ingest_request_t r = {.tenant = "fuzz",
                          .name = name,
                          .format = lines ? "lines" : "folded",
                          .sample_rate = rates[(sel >> 3) & 3],
                          .body = data + 1,
                          .body_len = size - 1,
                          .now_ns = 1795564800LL * 1000000000LL};
    ingest_profile_t *p = NULL;
    errmsg_t em = {{0}};
    int rc = ingest_parse(&r, &lim, &p, &em);
    if (rc != 0) {
        if (err_http_status(rc) / 100 != 4 || em.text[0] == 0) abort();
        return 0;
    }
    const storage_profile_write_t *w = ingest_profile_write(p);
    if (w->nseries != 1) abort();
    calltree_for_each_symbol(w->series[0].tree, has_symbol, (void *)w->symbols);
    int plain =
        size > 1 && data[1] != 0x1f && data[1] != 0xff && data[1] != 0xfe && data[1] != 0xef;
    if (lines && strcmp(name, "app.inuse_objects") == 0 && plain &&
        calltree_root_total(w->series[0].tree) != nonblank_lines(data + 1, size - 1))
        abort();
    ingest_profile_free(p);
    return 0;
}
