/* fuzz_multipart.c — libFuzzer target for multipart/form-data ingest bodies
 * (POST /ingest without format, as older Pyroscope clients send) and the
 * sample_type_config JSON part they may carry.
 *
 * Input: the boundary (bytes up to the first '\n', at most 70), then the
 * body. Limits are the defaults but small enough to show amplification.
 * Beyond "no crash, no leak, no UB": a refusal is a 4xx with a reason; an
 * accepted body yields series whose tree symbols are all in the symtab.
 */
#include <stdint.h>
#include <stdio.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 71 ? size : 71);
    if (nl == NULL) return 0;
    char ct[128];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%.*s", (int)(nl - data),
             (const char *)data);
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_decompressed_bytes = 1 << 20;
    lim.max_decoded_bytes = 16 << 20;
    lim.max_samples = 5000;
    lim.max_request_nodes = 200000;
    ingest_request_t r = {.tenant = "fuzz",
                          .name = "app{env=fuzz}",
                          .content_type = ct,
                          .body = nl + 1,
                          .body_len = size - (size_t)(nl + 1 - data),
                          .now_ns = 1795564800LL * 1000000000LL};
    ingest_profile_t *p = NULL;
    errmsg_t em = {{0}};
    int rc = ingest_parse(&r, &lim, &p, &em);
    if (rc != 0) {
        if (err_http_status(rc) / 100 != 4 || em.text[0] == 0) abort();
        return 0;
    }
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; i < w->nseries; i++)
        calltree_for_each_symbol(w->series[i].tree, has_symbol, (void *)w->symbols);
    ingest_profile_free(p);
    return 0;
}
