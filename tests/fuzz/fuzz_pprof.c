/* fuzz_pprof.c — libFuzzer target for pprof bodies of POST /ingest.
 *
 * The first input byte picks how the rest is sent: 0-127 as a raw (or, by its
 * magic, gzipped) format=pprof body, 128-255 as the `profile` part of a
 * multipart form. Beyond "no crash, no leak, no UB" it checks: a refusal is a
 * 4xx with a reason; an accepted profile's series carry __name__,
 * __profile_type__ and service_name, have series_id == labels_hash(labels),
 * and every symbol their trees (and span trees) reference is in the symtab;
 * and a raw body is read by ingest's wire reader (node/ingest/ingest_wire.c)
 * exactly when the protobuf-c decoder accepts it.
 * Limits are small so each input stays fast.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/calltree.h"
#include "common/labels.h"
#include "common/proto/pprof.pb-c.h"
#include "common/symtab.h"
#include "node/ingest/ingest.h"
#include "node/ingest/ingest_int.h"

static int has_symbol(void *ctx, uint64_t sym)
{
    const char *n, *f;
    if (!symtab_get(ctx, sym, &n, &f)) abort();
    return 0;
}

static void check_profile(const ingest_profile_t *p)
{
    const storage_profile_write_t *w = ingest_profile_write(p);
    for (size_t i = 0; i < w->nseries; i++) {
        const storage_series_write_t *s = &w->series[i];
        if (labels_get(s->labels, LABEL_NAME) == NULL ||
            labels_get(s->labels, LABEL_PROFILE_TYPE) == NULL ||
            labels_get(s->labels, LABEL_SERVICE_NAME) == NULL ||
            s->series_id != labels_hash(s->labels))
            abort();
        calltree_for_each_symbol(s->tree, has_symbol, (void *)w->symbols);
        for (size_t k = 0; k < s->nspans; k++) { /* held encoded: its dictionary */
            const uint8_t *syms;
            size_t nsyms, nnodes;
            if (calltree_encoded_header(s->spans[k].enc, s->spans[k].enc_len, &syms, &nsyms,
                                        &nnodes) != 0)
                abort();
            for (size_t j = 0; j < nsyms; j++)
                has_symbol((void *)w->symbols, calltree_encoded_sym(syms, j));
        }
    }
}

static void limits(ingest_limits_t *l)
{
    ingest_limits_default(l);
    l->max_decompressed_bytes = 1 << 20;
    l->max_decoded_bytes = 16 << 20;
    l->max_samples = 2000;
    l->max_tree_nodes = 20000;
    l->max_series_per_profile = 64;
    l->max_past_seconds = 100LL * 365 * 86400;
    l->max_future_seconds = 100LL * 365 * 86400;
}

/* The wire reader and protobuf-c agree on which messages are well-formed. */
static void check_same_as_protobuf_c(const uint8_t *b, size_t n)
{
    Perftools__Profiles__Profile *pc = perftools__profiles__profile__unpack(NULL, n, b);
    wire_profile_t w;
    if ((pc != NULL) != (ingest_wire_open(&w, b, n) == 0)) abort();
    if (pc != NULL) perftools__profiles__profile__free_unpacked(pc, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    ingest_limits_t lim;
    limits(&lim);
    uint8_t *body = NULL;
    ingest_request_t r = {.tenant = "fuzz",
                          .name = "fuzz.cpu{env=x}",
                          .format = "pprof",
                          .now_ns = 1795564800LL * 1000000000LL,
                          .from = "1795564800"};
    if (data[0] < 128) {
        r.body = data + 1;
        r.body_len = size - 1;
        check_same_as_protobuf_c(r.body, r.body_len);
    } else {
        static const char head[] =
            "--B\r\nContent-Disposition: form-data; name=\"profile\"\r\n\r\n";
        static const char tail[] = "\r\n--B--\r\n";
        size_t n = size - 1;
        body = malloc(sizeof head + n + sizeof tail);
        memcpy(body, head, sizeof head - 1);
        memcpy(body + sizeof head - 1, data + 1, n);
        memcpy(body + sizeof head - 1 + n, tail, sizeof tail - 1);
        r.body = body;
        r.body_len = sizeof head - 1 + n + sizeof tail - 1;
        r.format = NULL;
        r.content_type = "multipart/form-data; boundary=B";
    }
    ingest_profile_t *p = NULL;
    errmsg_t em = {{0}};
    int rc = ingest_parse(&r, &lim, &p, &em);
    if (rc == 0) {
        check_profile(p);
        ingest_profile_free(p);
    } else if (err_http_status(rc) / 100 != 4 || em.text[0] == 0) {
        abort();
    }
    free(body);
    return 0;
}
