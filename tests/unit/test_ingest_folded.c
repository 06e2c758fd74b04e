/* test_ingest_folded.c — folded and lines bodies: edge cases on generated
 * fixtures, then the real folded files of the shared corpus. */
#include "test_ingest_util.h"

/* Parses body as format under name "app.inuse_objects" (unscaled counts). */
static ingest_profile_t *parse(const char *format, const void *b, size_t n, int *rc, errmsg_t *em)
{
    ingest_request_t r = test_req("app.inuse_objects", format, b, n);
    ingest_profile_t *p;
    *rc = test_parse(&r, NULL, &p, em);
    return p;
}

static void test_basic_shapes(void)
{
    static const struct {
        const char *body;
        int64_t total, ab_total;
    } cases[] = {
        {"a;b;c 1\na;b;c 1\na;b;d 4\na;b;c 3\na;b 5", 14, 14},             /* no final newline */
        {"a;b;c 1\r\na;b;c 1\r\na;b;d 4\r\na;b;c 3\r\na;b 5\r\n", 14, 14}, /* CRLF */
        {"\n\na;b 2\n   \n\t\na;b 3\n\n", 5, 5},                           /* blank lines */
        {"a;b\t7\n", 7, 7},                                                /* tab before count */
        {"a;b;c (inlined) 2\na;b;x y z 3\n", 5, 5},                        /* spaces in frames */
        {"a;b 0\n", 0, INT64_MIN},                                         /* zero adds nothing */
        {"\xef\xbb\xbf"
         "a;b 2\n",
         2, 2}, /* UTF-8 BOM */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        errmsg_t em;
        ingest_profile_t *p = parse(NULL, cases[i].body, strlen(cases[i].body), &rc, &em);
        CHECK_EQ_INT(rc, 0);
        if (p == NULL) {
            fprintf(stderr, "case %zu: %s\n", i, em.text);
            continue;
        }
        CHECK_EQ_STR(ingest_profile_format(p), "folded");
        CHECK_EQ_INT(ingest_profile_series_total(p, 0), cases[i].total);
        CHECK_EQ_INT(test_path_total(p, 0, "a", "b", NULL), cases[i].ab_total);
        ingest_profile_free(p);
    }
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse(NULL, "a;b;c (inlined) 2\n", 18, &rc, &em);
    CHECK_EQ_INT(test_path_total(p, 0, "a", "b", "c (inlined)", NULL), 2);
    ingest_profile_free(p);
}

static void test_invalid_lines(void)
{
    static const struct {
        const char *body;
        const char *line;
    } cases[] = {
        {"a;b 1\na;b\n", "line 2"},
        {"a;b 1\n\na;b 1.5\n", "line 3"},
        {"# comment\na;b 1\n", "line 1"},
        {"a;b 1\n42\n", "line 2"},
        {"a;b 99999999999999999999\n", "line 1"},
        {"a;b 1x\n", "line 1"},
        {"a;b 10\na;b -4\n", "line 2: the count is negative"},
        {"a;b -0\n", "line 1: the count is negative"},
        {"a;b one\n", "line 1: the count is not a decimal integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        errmsg_t em;
        ingest_profile_t *p = parse("folded", cases[i].body, strlen(cases[i].body), &rc, &em);
        CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT); /* 400 with the line and the reason */
        CHECK(p == NULL);
        CHECK(strstr(em.text, cases[i].line) != NULL);
    }
    /* count * 1e9/sampleRate overflowing int64 */
    const char big[] = "a 9223372036854775\n";
    ingest_request_t r = test_req("app.cpu", NULL, big, sizeof big - 1);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
}

static uint8_t *utf16(const char *s, bool be, size_t *n)
{
    size_t k = strlen(s);
    uint8_t *o = malloc(2 * k + 2);
    o[0] = be ? 0xfe : 0xff;
    o[1] = be ? 0xff : 0xfe;
    for (size_t i = 0; i < k; i++) {
        o[2 + 2 * i + (be ? 1 : 0)] = (uint8_t)s[i];
        o[2 + 2 * i + (be ? 0 : 1)] = 0;
    }
    *n = 2 * k + 2;
    return o;
}

static void test_utf16(void)
{
    for (int be = 0; be < 2; be++) {
        size_t n;
        uint8_t *b = utf16("a;b;c 1\r\na;b 5", be, &n);
        int rc;
        errmsg_t em;
        ingest_profile_t *p = parse(NULL, b, n, &rc, &em);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(ingest_profile_series_total(p, 0), 6);
        CHECK_EQ_INT(test_path_total(p, 0, "a", "b", "c", NULL), 1);
        ingest_profile_free(p);
        b[n - 1] = 0xd8; /* an unpaired high surrogate at the end */
        b[n - 2] = 0xd8;
        p = parse(NULL, b, n, &rc, &em);
        CHECK_EQ_INT(rc, ERR_UNPARSEABLE);
        CHECK(strstr(em.text, "surrogate") != NULL);
        free(b);
    }
    /* U+1F525 as a surrogate pair in a frame name */
    const uint8_t le[] = {0xff, 0xfe, 'a', 0, ';', 0, 0x3d, 0xd8, 0x25, 0xdd, ' ', 0, '2', 0};
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse(NULL, le, sizeof le, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(test_path_total(p, 0, "a", "\xf0\x9f\x94\xa5", NULL), 2);
    ingest_profile_free(p);
}

static void test_lines_and_gzip(void)
{
    const char lines[] = "a;b;c\na;b;c\r\na;d\n\n";
    int rc;
    errmsg_t em;
    ingest_profile_t *p = parse("lines", lines, sizeof lines - 1, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(ingest_profile_format(p), "lines");
    CHECK_EQ_INT(ingest_profile_series_total(p, 0), 3);
    CHECK_EQ_INT(test_path_total(p, 0, "a", "b", "c", NULL), 2);
    ingest_profile_free(p);

    const char folded[] = "x;y 3\nx;z 4\n";
    size_t gn;
    uint8_t *gz = test_gzip(folded, sizeof folded - 1, &gn);
    p = parse(NULL, gz, gn, &rc, &em);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(ingest_profile_series_total(p, 0), 7);
    ingest_profile_free(p);
    /* a gzipped folded body past max_decompressed_bytes */
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    lim.max_decompressed_bytes = 8;
    ingest_request_t r = test_req("app", NULL, gz, gn);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_TOO_LARGE);
    free(gz);
}

static void test_limits(void)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    ingest_profile_t *p;
    errmsg_t em;
    /* 200k-frame stack */
    size_t n = 200000 * 2 + 8;
    char *deep = malloc(n), *o = deep;
    for (int i = 0; i < 200000; i++) {
        *o++ = 'f';
        *o++ = ';';
    }
    strcpy(o - 1, " 1");
    ingest_request_t r = test_req("app", NULL, deep, strlen(deep));
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_OVER_LIMIT);
    CHECK(strstr(em.text, "max-stack-depth") != NULL);
    free(deep);
    /* too many stacks, too long a frame */
    lim.max_samples = 2;
    const char three[] = "a 1\nb 1\nc 1\n";
    r = test_req("app", NULL, three, sizeof three - 1);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_OVER_LIMIT);
    lim.max_samples = 10;
    lim.max_symbol_len = 4;
    const char longname[] = "abcdefgh 1\n";
    r = test_req("app", NULL, longname, sizeof longname - 1);
    CHECK_EQ_INT(test_parse(&r, &lim, &p, &em), ERR_OVER_LIMIT);
    CHECK(strstr(em.text, "max-symbol-len") != NULL);
    /* empty body: no samples, nothing to store, not an error */
    r = test_req("app", NULL, "", 0);
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), 0);
    CHECK_EQ_INT(ingest_profile_series_total(p, 0), 0);
    ingest_profile_free(p);
}

/* Sum of the last whitespace-separated integer of every non-empty line. */
static int64_t naive_total(const uint8_t *b, size_t n)
{
    int64_t sum = 0;
    const uint8_t *p = b, *end = b + n;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *e = nl ? nl : end;
        while (e > p && (e[-1] == '\r' || e[-1] == ' '))
            e--;
        const uint8_t *s = e;
        while (s > p && s[-1] != ' ')
            s--;
        if (e > p) sum += strtoll((const char *)s, NULL, 10);
        p = nl ? nl + 1 : end;
    }
    return sum;
}

static void corpus_file(const char *dir, const char *rel, const char *name, int64_t want)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    size_t n;
    uint8_t *b = test_read_file(path, &n);
    CHECK(b != NULL);
    if (b == NULL) return;
    if (want < 0) want = naive_total(b, n);
    ingest_request_t r = test_req(name, NULL, b, n);
    r.sample_rate = "100";
    ingest_profile_t *p;
    errmsg_t em;
    int rc = test_parse(&r, NULL, &p, &em);
    if (rc != 0) fprintf(stderr, "%s: %s\n", rel, em.text);
    CHECK_EQ_INT(rc, 0);
    if (p != NULL) {
        CHECK_EQ_INT(ingest_profile_series_total(p, 0), want);
        ingest_profile_free(p);
    }
    free(b);
}

static void test_corpus(void)
{
    const char *dir = testdata_path();
    if (dir == NULL) return;
    static const char *flamegraph[] = {"perf-cycles-instructions-01-collapsed-all.txt",
                                       "perf-dd-stacks-01-collapsed-all.txt",
                                       "perf-funcab-cmd-01-collapsed-all.txt",
                                       "perf-funcab-pid-01-collapsed-all.txt",
                                       "perf-iperf-stacks-pidtid-01-collapsed-addrs.txt",
                                       "perf-iperf-stacks-pidtid-01-collapsed-all.txt",
                                       "perf-java-faults-01-collapsed-all.txt",
                                       "perf-java-stacks-01-collapsed-all.txt",
                                       "perf-java-stacks-01-collapsed-pid.txt",
                                       "perf-java-stacks-02-collapsed-all.txt",
                                       "perf-js-stacks-01-collapsed-all.txt",
                                       "perf-mirageos-stacks-01-collapsed-all.txt",
                                       "perf-numa-stacks-01-collapsed-all.txt",
                                       "perf-rust-Yamakaky-dcpu-collapsed-all.txt",
                                       "perf-vertx-stacks-01-collapsed-all.txt"};
    char rel[512];
    for (size_t i = 0; i < sizeof flamegraph / sizeof flamegraph[0]; i++) {
        snprintf(rel, sizeof rel, "folded/flamegraph/%s", flamegraph[i]);
        corpus_file(dir, rel, "perf.inuse_objects", -1);
    }
    static const char *speedscope[] = {"alternating.txt", "recursion.txt", "simple-crlf.txt",
                                       "simple.txt", "tall.txt"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(rel, sizeof rel, "folded/speedscope/%s", speedscope[i]);
        corpus_file(dir, rel, "s.inuse_objects", -1);
    }
    corpus_file(dir, "folded/speedscope/simple-utf16-le.txt", "s.inuse_objects", 14);
    corpus_file(dir, "folded/speedscope/simple-utf16-be.txt", "s.inuse_objects", 14);
    /* derived from pprof files: totals must equal MANIFEST's per-type totals */
    corpus_file(dir, "folded/derived/large.cpu.samples.folded.txt.gz", "large.cpu", 240290000000LL);
    corpus_file(dir, "folded/derived/profile_ruby.samples.folded.txt.gz", "r.inuse_objects",
                258747);
    corpus_file(dir, "folded/derived/heap-big.inuse_space.folded.txt", "h.inuse_space", 541672846);
    corpus_file(dir, "folded/derived/profile_java.cpu.folded.txt", "j.inuse_objects", 5020648123LL);

    /* lines without a count: 400 naming the first such line */
    char path[4096 + 64]; /* testdata_path() is shorter than 4096 bytes */
    int w = snprintf(path, sizeof path, "%s/folded/speedscope/simple-with-invalids.txt", dir);
    CHECK(w > 0 && (size_t)w < sizeof path);
    size_t n = 0;
    uint8_t *b = test_read_file(path, &n);
    CHECK(b != NULL);
    if (b == NULL) return;
    ingest_request_t r = test_req("app", NULL, b, n);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(test_parse(&r, NULL, &p, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "line 1") != NULL);
    free(b);
}

int main(void)
{
    test_basic_shapes();
    test_invalid_lines();
    test_utf16();
    test_lines_and_gzip();
    test_limits();
    test_corpus();
    return check_exit();
}
