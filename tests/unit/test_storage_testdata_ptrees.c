/* Single stored profiles of real pprof files: every protobuf profile of the
 * shared corpus (MANIFEST.tsv) that parses is written as the node writes
 * it (all its series in one storage_write_profile), and each series' tree
 * read back (storage_read_profile) must hold the parsed tree's value at
 * every stack (stacks of no value are not stored), before and after
 * compaction. Series are placed by profile (shard-by-profile), so the
 * sample types of one profile share a token (checked) and a series
 * proportional to the one before it (Go CPU profiles: cpu = samples x
 * period) is stored scaled: the test counts those and needs at least one. Skips when the corpus is
 * absent. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "test_ingest_util.h"
#include "ring/ring.h"

#define MAX_FILES 200

typedef struct stored {
    ingest_profile_t *p[MAX_FILES];
    size_t n;
} stored_t;

/* Each file its own 10 s window. */
static int64_t time_of(size_t i)
{
    return TEST_NOW_NS - (int64_t)i * 10 * NS;
}

/* Parses one corpus file into the next slot of st and writes it. */
static void store_file(fixture_t *f, stored_t *st, const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t n;
    uint8_t *b = test_read_file(path, &n);
    CHECK(b != NULL);
    if (b == NULL || st->n == MAX_FILES) {
        free(b);
        return;
    }
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_past_seconds = 100LL * 365 * 86400; /* corpus files carry old time_nanos */
    lim.shards.by_profile = 1;                  /* shard-by-profile */
    ingest_request_t r = test_req("corpus.cpu{src=manifest}", "pprof", b, n);
    ingest_profile_t *p;
    errmsg_t em;
    if (test_parse(&r, &lim, &p, &em) == 0) {
        storage_profile_write_t w = *ingest_profile_write(p);
        fx_id(w.profile_id, 1000 + st->n); /* files may share content-derived ids */
        w.time_ns = time_of(st->n);
        size_t written = 0;
        CHECK_EQ_INT(storage_write_profile(f->s, &w, &written, &em), 0);
        CHECK_EQ_INT(written, w.nseries);
        st->p[st->n++] = p;
    }
    free(b);
}

/* Reads every stored series back; returns how many values are scaled. */
static size_t check_all(fixture_t *f, const stored_t *st)
{
    size_t scaled = 0, series = 0;
    for (size_t i = 0; i < st->n; i++) {
        const storage_profile_write_t *w = ingest_profile_write(st->p[i]);
        uint8_t pid[16];
        fx_id(pid, 1000 + i);
        for (size_t j = 0; j < w->nseries; j++) {
            const storage_series_write_t *sw = &w->series[j];
            ring_shard_policy_t by_profile = {.default_shards = 4, .by_profile = 1};
            for (size_t o = 0; o < j; o++) /* sample types of one profile: one token */
                if (ring_shard_key(w->series[o].labels, 0, &by_profile) ==
                    ring_shard_key(sw->labels, 0, &by_profile))
                    CHECK(w->series[o].token == sw->token);
            calltree_t *g = calltree_new(0);
            int rc =
                storage_read_profile(f->s, w->tenant, sw->token, sw->series_id, time_of(i), pid, g);
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_INT(fx_tree_diff(sw->tree, g), 0); /* every stack's value */
            CHECK_EQ_INT(calltree_root_total(g), calltree_root_total(sw->tree));
            calltree_free(g);
            skey_t k;
            storage_key_ptree(&k, sw->token, w->tenant, sw->series_id, time_of(i), pid);
            size_t vn = 0;
            char *err = NULL;
            char *v = rocksdb_get_cf(f->s->db, f->s->ropts, f->s->cf[CF_PTREES], (const char *)k.b,
                                     k.n, &vn, &err);
            CHECK(v != NULL && err == NULL);
            scaled += v != NULL && vn > 1 && (v[1] & PTREE_FLAG_SCALED) != 0;
            free(v);
            free(err);
            series++;
        }
    }
    fprintf(stderr, "%zu profiles, %zu series read back exactly, %zu stored scaled\n", st->n,
            series, scaled);
    return scaled;
}

static void run(const char *dir)
{
    fixture_t f;
    if (fx_init(&f) != 0) {
        CHECK(0);
        return;
    }
    f.opts.max_profile_tree_bytes = (size_t)1 << 30; /* keep every tree */
    f.opts.profile_retention_seconds = 0;
    f.now = TEST_NOW_NS / NS;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST.tsv", dir);
    size_t n;
    char *m = (char *)test_read_file(path, &n);
    CHECK(m != NULL);
    stored_t st = {{0}, 0};
    char *save;
    if (m != NULL) strtok_r(m, "\n", &save); /* header */
    for (char *line; m != NULL && (line = strtok_r(NULL, "\n", &save)) != NULL;) {
        char *tab = strchr(line, '\t');
        if (tab != NULL) *tab = 0;
        if (strncmp(line, "legacy-nonproto/", 16) == 0 || strncmp(line, "jfr/", 4) == 0) continue;
        store_file(&f, &st, dir, line);
    }
    CHECK(st.n >= 50);
    CHECK(check_all(&f, &st) > 0);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK(check_all(&f, &st) > 0);
    for (size_t i = 0; i < st.n; i++)
        ingest_profile_free(st.p[i]);
    free(m);
    fx_done(&f);
}

int main(void)
{
    const char *corpus = testdata_path();
    if (corpus != NULL) run(corpus);
    return check_exit();
}
