/* bench_spanstream.c — `flamedb-bench spanstream`: what the span stream of
 * one token interval reads.
 *
 * --tokens placement tokens (service shards), spread over the ring, each
 * get --profiles profiles (default 1, one per 10 s window of one series)
 * with --spans span trees each (random span ids), through the library path
 * into a real RocksDB in a temporary directory, compacted.
 * Then the span trees of one interval holding 1/--share of the tokens are
 * read, --rounds times each way, and the median CPU time of the reading
 * thread printed (the load: wall and process CPU, compaction included):
 *   index: storage_stream_spans (format 8: span_index, the interval only);
 *   whole: the loop storage_stream_spans ran up to format 7, kept here as
 *          the baseline: every key of the tenant-first `spans` family is
 *          read and the interval's kept.
 * Both must find the same trees (checked). Then the span trees of one
 * stored profile (storage_profile_spans, what an anti-entropy FETCH reads
 * per profile; the middle profile of the middle token) are found --rounds
 * times, the median CPU time printed; it must find --spans members; and
 * those of a profile of the same series in a window after them all, which
 * has no tree; with --fetch N, the trees of N profiles of that token in
 * one call, as one FETCH run of an anti-entropy answer asks for them (it
 * must find N x --spans members); with --upgrade 1, what opening the store
 * as format 11 costs (the rebuild of profile_span_index). Nothing else is
 * asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common/calltree.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

static int count_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant,
                    const uint8_t *v, size_t vn)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

/* storage_stream_spans of format 7 (a whole-family scan), unchanged. */
static int whole_scan(storage_t *s, uint64_t lo, uint64_t hi, storage_span_stream_fn fn, void *ctx)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SPANS]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn, vn;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kn);
        int ok;
        uint64_t token = storage_span_key_token(k, kn, &ok);
        if (!ok || token < lo || token > hi) continue;
        if (storage_filter_expired(s, CF_SPANS, k, kn, NULL, 0)) continue;
        char tenant[STORAGE_TENANT_MAX + 1];
        memcpy(tenant, k + 1, k[0]);
        tenant[k[0]] = 0;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
        rc = fn(ctx, k, kn, tenant, v, vn);
    }
    rocksdb_iter_destroy(it);
    return rc;
}

/* One profile (profile number p of token k, window t0 + 10 p) with spans
 * span trees sp of tree t. */
static int load_one(storage_t *st, uint64_t tokens, uint64_t k, uint64_t p, labels_t *l,
                    calltree_t *t, storage_span_tree_t *sp, uint64_t spans, symtab_t *syms,
                    int64_t t0)
{
    storage_series_write_t sw = {.labels = l, .tree = t, .spans = sp, .nspans = spans};
    sw.series_id = labels_hash(l);
    sw.token = (k + 1) * (UINT64_MAX / (tokens + 1)); /* spread over the ring */
    storage_profile_write_t pw = {.tenant = "bench",
                                  .time_ns = (t0 + 10 * (int64_t)p) * 1000000000,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = syms};
    memcpy(pw.profile_id, &k, sizeof k);
    memcpy(pw.profile_id + 8, &p, sizeof p);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(st, &pw, NULL, &em);
    if (rc != 0) fprintf(stderr, "spanstream: %s\n", errmsg_text(&em, rc));
    return rc;
}

static int load(storage_t *st, uint64_t tokens, uint64_t profiles, uint64_t spans, int64_t t0)
{
    symtab_t *syms = symtab_new();
    calltree_t *t = calltree_new(0);
    storage_span_tree_t *sp = calloc(spans, sizeof *sp);
    uint64_t stack[3];
    int rc = syms && t && sp ? 0 : ERR_NOMEM;
    if (rc == 0) rc = symtab_intern(syms, "main", 4, "", 0, &stack[0]);
    if (rc == 0) rc = symtab_intern(syms, "handler", 7, "", 0, &stack[1]);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (uint64_t k = 0; rc == 0 && k < tokens; k++) {
        char svc[32];
        snprintf(svc, sizeof svc, "svc%llu", (unsigned long long)k);
        rc = symtab_intern(syms, svc, strlen(svc), "", 0, &stack[2]);
        calltree_clear(t);
        if (rc == 0) rc = calltree_add_stack(t, stack, 3, 10);
        labels_t *l = labels_new();
        if (rc == 0) rc = l != NULL ? 0 : ERR_NOMEM;
        if (rc == 0) rc = labels_set_str(l, "service_name", svc);
        if (rc == 0) rc = labels_set_str(l, "__name__", "cpu");
        for (uint64_t p = 0; rc == 0 && p < profiles; p++) {
            for (uint64_t i = 0; i < spans; i++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                sp[i] = (storage_span_tree_t){STORAGE_SPAN_KIND_SPAN, rng, t};
            }
            rc = load_one(st, tokens, k, p, l, t, sp, spans, syms, t0);
        }
        labels_free(l);
    }
    free(sp);
    calltree_free(t);
    symtab_free(syms);
    return rc != 0 ? rc : storage_compact(st);
}

/* Median CPU seconds of the reading thread over rounds reads of [lo, hi]
 * (CPU, not wall: the machine is shared); *found: trees found. */
static double measure(storage_t *st, int whole, uint64_t lo, uint64_t hi, uint64_t rounds,
                      uint64_t *found)
{
    double *t = calloc(rounds, sizeof *t);
    if (t == NULL) return -1;
    for (uint64_t r = 0; r < rounds; r++) {
        *found = 0;
        double c0 = clock_thread();
        int rc = whole ? whole_scan(st, lo, hi, count_cb, found)
                       : storage_stream_spans(st, lo, hi, NULL, 0, count_cb, found);
        t[r] = rc == 0 ? clock_thread() - c0 : -1;
    }
    qsort(t, rounds, sizeof *t, cmp_double);
    double m = t[rounds / 2];
    free(t);
    return m;
}

static int member_cb(void *ctx, size_t ref, uint8_t kind, uint64_t id, const uint8_t *tree,
                     size_t len)
{
    if (tree != NULL) (*(uint64_t *)ctx)++;
    return 0;
}

/* Median CPU seconds of storage_profile_spans for the nref profiles from
 * p on that load() wrote to token k, in one call as a FETCH run asks (p
 * past the last: windows with no tree); *found: members found. */
static double measure_profile(storage_t *st, uint64_t tokens, uint64_t k, uint64_t p, uint64_t nref,
                              uint64_t rounds, int64_t t0, uint64_t *found)
{
    labels_t *l = labels_new();
    char svc[32];
    snprintf(svc, sizeof svc, "svc%llu", (unsigned long long)k);
    int rc = l != NULL ? labels_set_str(l, "service_name", svc) : ERR_NOMEM;
    if (rc == 0) rc = labels_set_str(l, "__name__", "cpu");
    uint64_t series = rc == 0 ? labels_hash(l) : 0, token = (k + 1) * (UINT64_MAX / (tokens + 1));
    labels_free(l);
    uint8_t(*id)[16] = calloc(nref, sizeof *id);
    storage_profile_ref_t *ref = calloc(nref, sizeof *ref);
    double *t = calloc(rounds, sizeof *t);
    if (id == NULL || ref == NULL || t == NULL || rc != 0) rounds = 0;
    for (uint64_t i = 0; i < nref && rounds > 0; i++) {
        uint64_t pi = p + i;
        memcpy(id[i], &k, sizeof k);
        memcpy(id[i] + 8, &pi, sizeof pi);
        ref[i] = (storage_profile_ref_t){series, (t0 + 10 * (int64_t)pi) * 1000000000, id[i]};
    }
    for (uint64_t r = 0; r < rounds; r++) {
        *found = 0;
        double c0 = clock_thread();
        rc = storage_profile_spans(st, "bench", token, ref, nref, member_cb, found);
        t[r] = rc == 0 ? clock_thread() - c0 : -1;
    }
    double m = -1;
    if (rounds > 0) {
        qsort(t, rounds, sizeof *t, cmp_double);
        m = t[rounds / 2];
    }
    free(t);
    free(ref);
    free(id);
    return m;
}

/* --upgrade: profile_span_index emptied and the marker set to format 11,
 * then the store opened again (the 11 -> 12 upgrade rebuilds the index
 * from every span value): the open's wall and process CPU time. The middle
 * profile must find its members again. */
static int measure_upgrade(storage_options_t *o, storage_t **st, uint64_t tokens, uint64_t profiles,
                           uint64_t spans)
{
    char *err = NULL;
    uint8_t lo[1] = {0}, hi[STORAGE_PSPAN_KEY_MAX + 1];
    memset(hi, 0xff, sizeof hi);
    rocksdb_delete_range_cf((*st)->db, (*st)->wopts, (*st)->cf[CF_PSPAN_INDEX], (const char *)lo,
                            sizeof lo, (const char *)hi, sizeof hi, &err);
    if (err == NULL)
        rocksdb_put_cf((*st)->db, (*st)->wopts, (*st)->cf[CF_META], "format_version", 14, "11", 2,
                       &err);
    if (err != NULL) {
        fprintf(stderr, "spanstream: %s\n", err);
        free(err);
        return ERR_IO;
    }
    storage_close(*st);
    *st = NULL;
    errmsg_t em = {{0}};
    double w0 = clock_wall(), c0 = clock_process();
    int rc = storage_open(o, st, &em);
    if (rc != 0) {
        fprintf(stderr, "spanstream: %s\n", errmsg_text(&em, rc));
        return rc;
    }
    printf("spanstream_upgrade_s: %.2f\nspanstream_upgrade_cpu_s: %.2f\n", clock_wall() - w0,
           clock_process() - c0);
    uint64_t found = 0;
    measure_profile(*st, tokens, tokens / 2, profiles / 2, 1, 1, 1700000000, &found);
    if (found != spans) {
        fprintf(stderr, "spanstream: after the upgrade %llu members, want %llu\n",
                (unsigned long long)found, (unsigned long long)spans);
        return ERR_INTERNAL;
    }
    return 0;
}

int cmd_spanstream(int argc, char **argv)
{
    uint64_t tokens = 256, profiles = 1, spans = 400, share = 64, rounds = 5, fetch = 0;
    uint64_t upgrade = 0;
    for (int i = 0; i < argc; i++)
        if (!flag_u64(argc, argv, &i, "--tokens", &tokens) &&
            !flag_u64(argc, argv, &i, "--profiles", &profiles) &&
            !flag_u64(argc, argv, &i, "--fetch", &fetch) &&
            !flag_u64(argc, argv, &i, "--upgrade", &upgrade) &&
            !flag_u64(argc, argv, &i, "--spans", &spans) &&
            !flag_u64(argc, argv, &i, "--share", &share) &&
            !flag_u64(argc, argv, &i, "--rounds", &rounds)) {
            fprintf(stderr, "spanstream: unknown flag %s\n", argv[i]);
            return 2;
        }
    if (tokens == 0 || profiles == 0 || spans == 0 || share == 0 || rounds == 0 || fetch > profiles)
        return 2;
    char *dir = make_temp_dir("spanstream");
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    o.span_retention_seconds = 0;
    storage_t *st = NULL;
    errmsg_t em = {{0}};
    int rc = dir != NULL ? storage_open(&o, &st, &em) : ERR_IO;
    if (rc != 0) fprintf(stderr, "spanstream: %s\n", errmsg_text(&em, rc));
    double w0 = clock_wall(), c0 = clock_process();
    if (rc == 0) rc = load(st, tokens, profiles, spans, 1700000000);
    if (rc == 0) {
        uint64_t lo = UINT64_MAX / share * 3, hi = lo + UINT64_MAX / share - 1, fi = 0, fw = 0;
        printf("spanstream_trees: %llu\nspanstream_load_s: %.2f\nspanstream_load_cpu_s: %.2f\n",
               (unsigned long long)(tokens * profiles * spans), clock_wall() - w0,
               clock_process() - c0);
        double ti = measure(st, 0, lo, hi, rounds, &fi);
        double tw = measure(st, 1, lo, hi, rounds, &fw);
        printf("spanstream_interval_trees: %llu\n", (unsigned long long)fi);
        printf("spanstream_index_ms: %.3f\nspanstream_whole_ms: %.3f\n", ti * 1e3, tw * 1e3);
        printf("spanstream_whole_over_index: %.1f\n", ti > 0 ? tw / ti : 0);
        uint64_t fp = 0, fm = 0;
        double tp =
            measure_profile(st, tokens, tokens / 2, profiles / 2, 1, rounds, 1700000000, &fp);
        /* a later window of the same series: no tree holds it */
        double tm =
            measure_profile(st, tokens, tokens / 2, profiles + 6, 1, rounds, 1700000000, &fm);
        printf("spanstream_profile_members: %llu\nspanstream_profile_ms: %.3f\n",
               (unsigned long long)fp, tp * 1e3);
        printf("spanstream_profile_miss_ms: %.3f\n", tm * 1e3);
        uint64_t ff = 0;
        double tf = fetch == 0 ? 0
                               : measure_profile(st, tokens, tokens / 2, (profiles - fetch) / 2,
                                                 fetch, rounds, 1700000000, &ff);
        if (fetch > 0)
            printf("spanstream_fetch_profiles: %llu\nspanstream_fetch_members: "
                   "%llu\nspanstream_fetch_ms: %.3f\n",
                   (unsigned long long)fetch, (unsigned long long)ff, tf * 1e3);
        if (ff != fetch * spans) {
            fprintf(stderr, "spanstream: a fetch run found %llu members, want %llu\n",
                    (unsigned long long)ff, (unsigned long long)(fetch * spans));
            rc = ERR_INTERNAL;
        }
        if (fp != spans || fm != 0) {
            fprintf(stderr, "spanstream: profile spans found %llu members, want %llu\n",
                    (unsigned long long)fp, (unsigned long long)spans);
            rc = ERR_INTERNAL;
        }
        if (fi != fw) {
            fprintf(stderr, "spanstream: index found %llu trees, whole scan %llu\n",
                    (unsigned long long)fi, (unsigned long long)fw);
            rc = ERR_INTERNAL;
        }
    }
    if (rc == 0 && upgrade) rc = measure_upgrade(&o, &st, tokens, profiles, spans);
    storage_close(st);
    if (dir) rm_rf(dir);
    free(dir);
    return rc == 0 ? 0 : 1;
}
