/* Unit tests for storage robustness: corrupt merge operands and values stored
 * under blocks, spans, totals, symbols and series are skipped (and counted)
 * by reads, merges and compactions; the node does not crash and the good data
 * around them still sums exactly. */
#include "test_storage_fixture.h"

#define T0 1700000000LL

static void raw_merge(storage_t *s, enum storage_cf cf, const skey_t *k, const void *v, size_t n)
{
    char *err = NULL;
    rocksdb_merge_cf(s->db, s->wopts, s->cf[cf], (const char *)k->b, k->n, v, n, &err);
    CHECK(err == NULL);
    free(err);
}

static void raw_put(storage_t *s, enum storage_cf cf, const skey_t *k, const void *v, size_t n)
{
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[cf], (const char *)k->b, k->n, v, n, &err);
    CHECK(err == NULL);
    free(err);
}

static void check_sums(storage_t *s, const labels_t *l, int64_t want)
{
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        CHECK_EQ_INT(fx_block_total(s, "c", l, r, T0 - 86400, T0 + 86400, NULL), want);
        CHECK_EQ_INT(fx_totals(s, "c", l, r, T0 - 86400, T0 + 86400, NULL), want);
    }
}

static void test_operands(fixture_t *f)
{
    labels_t *l = fx_labels("corrupt", NULL);
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "a;b;c", 10);
    CHECK_EQ_INT(fx_write(f->s, "c", l, t, st, 1, T0 * NS, NULL), 0);

    buf_t good;
    buf_init(&good, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(t, &good), 0);
    uint64_t sid = labels_hash(l);
    static const uint8_t garbage[] = {0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t version9[] = {9, 0, 0, 0};
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        int64_t res = storage_resolutions[r];
        skey_t k;
        storage_key_window(&k, sid >> 1, "c", sid, r, T0 / res * res);
        raw_merge(f->s, CF_BLOCKS, &k, garbage, sizeof garbage);
        raw_merge(f->s, CF_BLOCKS, &k, good.data, good.len - 1); /* truncated */
        raw_merge(f->s, CF_BLOCKS, &k, version9, sizeof version9);
        raw_merge(f->s, CF_BLOCKS, &k, "", 0);
        raw_merge(f->s, CF_TOTALS, &k, "abc", 3);
    }
    CHECK_EQ_INT(fx_write(f->s, "c", l, t, st, 2, T0 * NS, NULL), 0);
    check_sums(f->s, l, 20);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK(stats.corrupt_operands >= 5);

    CHECK_EQ_INT(storage_compact(f->s), 0); /* folds operands: must not fail */
    check_sums(f->s, l, 20);
    CHECK_EQ_INT(fx_write(f->s, "c", l, t, st, 3, T0 * NS, NULL), 0);
    check_sums(f->s, l, 30);
    CHECK_EQ_INT(fx_reopen(f), 0);
    check_sums(f->s, l, 30);

    /* a corrupt full value under a window: later good operands still count */
    skey_t k;
    storage_key_window(&k, sid >> 1, "c", sid, 0, T0 + 100);
    raw_put(f->s, CF_BLOCKS, &k, garbage, sizeof garbage);
    raw_put(f->s, CF_TOTALS, &k, "x", 1);
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_write(f->s, "c", l, t, st, 4, (T0 + 100) * NS, NULL), 0);
    int n = 0;
    CHECK_EQ_INT(fx_block_total(f->s, "c", l, 0, T0 + 100, T0 + 110, &n), 10);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(fx_totals(f->s, "c", l, 0, T0 + 100, T0 + 110, &n), 10);
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_totals(f->s, "c", l, 0, T0 + 100, T0 + 110, &n), 10);

    buf_free(&good);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

static int count_span(void *ctx, uint64_t token, uint64_t series, int64_t window, unsigned flags,
                      const uint8_t *v, size_t n)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    *(int64_t *)ctx += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static int count_name(void *ctx, const char *name)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_values(fixture_t *f)
{
    /* a bare corrupt value in spans with no good operand: reads an empty tree */
    skey_t k;
    storage_key_span(&k, "c", STORAGE_SPAN_KIND_SPAN, 5, 1, 2, 0);
    raw_merge(f->s, CF_SPANS, &k, "\x01\x05", 2);
    int64_t total = 0;
    CHECK_EQ_INT(
        storage_scan_spans(f->s, "c", STORAGE_SPAN_KIND_SPAN, 5, -10, 10, count_span, &total), 0);
    CHECK_EQ_INT(total, 0);

    /* corrupt symbol values are skipped, good ones load */
    storage_key_symbol(&k, "c", 77);
    raw_put(f->s, CF_SYMBOLS, &k, "\x09zz", 3);
    uint64_t ids[] = {77};
    symtab_t *got = symtab_new();
    CHECK_EQ_INT(storage_load_symbols(f->s, "c", ids, 1, got), 0);
    CHECK_EQ_INT(symtab_count(got), 0);
    symtab_free(got);

    /* corrupt series labels are reported, not crashed on */
    storage_key_series(&k, 1, "c", 2);
    raw_put(f->s, CF_SERIES, &k, "no terminator", 13);
    labels_t *l = NULL;
    CHECK_EQ_INT(storage_series_labels(f->s, "c", 1, 2, &l), ERR_CORRUPT);
    CHECK(l == NULL);

    /* a foreign key in postings (no NUL) does not derail the name listing */
    skey_t pk;
    skey_reset(&pk);
    storage_key_tenant(&pk, "c");
    storage_key_bytes(&pk, "zzz", 3);
    raw_put(f->s, CF_POSTINGS, &pk, "", 0);
    int names = 0;
    CHECK_EQ_INT(storage_label_names(f->s, "c", count_name, &names), 0);
    CHECK(names >= 3);
}

/* A data directory of another format version, or one that cannot be opened,
 * is refused with a reason instead of being misread. */
static void test_open_refusals(fixture_t *f)
{
    skey_t k;
    skey_reset(&k);
    storage_key_bytes(&k, "format_version", 14);
    raw_put(f->s, CF_META, &k, "999", 3); /* a version this build does not know */
    storage_close(f->s);
    f->s = NULL;
    errmsg_t em = {{0}};
    storage_t *s = NULL;
    CHECK_EQ_INT(storage_open(&f->opts, &s, &em), ERR_UNSUPPORTED);
    CHECK(s == NULL);
    CHECK(strstr(em.text, "format") != NULL);

    char file[128];
    snprintf(file, sizeof file, "%s/plainfile", f->dir);
    FILE *fp = fopen(file, "w");
    if (fp != NULL) fclose(fp);
    storage_options_t o = f->opts;
    o.path = file;
    memset(&em, 0, sizeof em);
    CHECK(storage_open(&o, &s, &em) < 0);
    CHECK(s == NULL);
    CHECK(em.text[0] != '\0');
    o.path = "";
    CHECK_EQ_INT(storage_open(&o, &s, &em), ERR_INVALID_ARGUMENT);
    storage_close(NULL); /* a no-op */
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    test_operands(&f);
    test_values(&f);
    test_open_refusals(&f);
    fx_done(&f);
    return check_exit();
}
