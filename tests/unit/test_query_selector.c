/* test_query_selector.c — the selector parser: a table of valid selectors with
 * their canonical form, a table of invalid ones with the position and reason
 * the error must name, matching semantics, and bounds. */
#include <string.h>

#include "query/query.h"
#include "tests/unit/check.h"

typedef struct ok_case {
    const char *in;
    const char *canon; /* query_selector_format output */
} ok_case_t;

static const ok_case_t valid[] = {
    {"process_cpu:cpu:nanoseconds:cpu:nanoseconds",
     "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}"},
    {"process_cpu:cpu:nanoseconds:cpu:nanoseconds{}",
     "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}"},
    {"process_cpu:samples:count::milliseconds", "process_cpu:samples:count::milliseconds{}"},
    {"{}", "{}"},
    {"", "{}"},
    {"  {  }  ", "{}"},
    {"memory:alloc_space:bytes:space:bytes{service_name=\"app\"}",
     "memory:alloc_space:bytes:space:bytes{service_name=\"app\"}"},
    {"{a=\"1\",b!=\"2\",c=~\"x.*\",d!~\"y|z\"}", "{a=\"1\", b!=\"2\", c=~\"x.*\", d!~\"y|z\"}"},
    {" { a = \"1\" , } ", "{a=\"1\"}"},
    {"{a=\"q\\\"uote\\\\back\\nnl\\ttab\"}", "{a=\"q\\\"uote\\\\back\\nnl\\ttab\"}"},
    {"{a='single \"x\"'}", "{a=\"single \\\"x\\\"\"}"},
    {"{a=`raw\\d+`}", "{a=\"raw\\\\d+\"}"},
    {"{a=~\"foo\\.bar\"}", "{a=~\"foo\\\\.bar\"}"},
    {"{otel.scope.name=\"x\", _u=\"\"}", "{otel.scope.name=\"x\", _u=\"\"}"},
    {"a.b-c_d:e:f:g:h{x=\"1\"}", "a.b-c_d:e:f:g:h{x=\"1\"}"},
    {"\t{a=\"\xc3\xa9\"}\n", "{a=\"\xc3\xa9\"}"},
    {"{a=~\"x{2,5}(y{3}){10}\"}", "{a=~\"x{2,5}(y{3}){10}\"}"},
    {"{a=~\"[+*]+[[:alpha:]]*[]x]?\"}", "{a=~\"[+*]+[[:alpha:]]*[]x]?\"}"},
};

typedef struct bad_case {
    const char *in;
    const char *must_contain; /* substring of the reason */
} bad_case_t;

static const bad_case_t invalid[] = {
    {"{", "position 1: expected a label name"},
    {"{a}", "position 2: expected one of = != =~ !~"},
    {"{a=}", "position 3: expected a quoted value"},
    {"{a=\"x}", "unterminated value"},
    {"{a=\"x\"", "missing '}'"},
    {"{a=\"x\" b=\"y\"}", "position 7: expected ',' or '}'"},
    {"{1a=\"x\"}", "position 1: expected a label name"},
    {"{a==\"x\"}", "position 3: expected a quoted value"},
    {"{a=~\"(\"}", "bad regex"},
    {"{a=~\"x[\"}", "bad regex"},
    {"cpu{}", "profile type must be"},
    {"cpu{}", "e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds"},
    /* a push's name in Pyroscope's old query form: how to ask for it instead */
    {"myapp.cpu{env=\"prod\"}",
     "\"myapp.cpu\" is a push's name (APP.TYPE), not a profile type: select the app by "
     "service_name under the type's id, "
     "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"myapp\"}"},
    {"my.app.alloc_space{}", "TYPE{service_name=\"my.app\"}; GET /pyroscope/label-values"},
    {"myapp.{}", "profile type must be"},
    {".cpu{}", "profile type must be"},
    {"a:b:c:d{}", "profile type must be"},
    {"a:b:c:d:e:f{}", "profile type must be"},
    {":b:c:d:e{}", "profile type must be"},
    {"a:b:c:d:e{} x", "unexpected text after selector"},
    {"}", "expected a profile type or '{'"},
    {"{a=\"x\"},", "unexpected text"},
    {"{,}", "expected a label name"},
    {"{a=unquoted}", "expected a quoted value"},
    {"{a=~\"(x)\\\\1\"}", "backreferences are not supported"},
    {"{a=~\"a{1001}\"}", "repeat counts too large"},
    {"{a=~\"(a{40}){40}\"}", "repeat counts too large"},
    {"{a=~\"a{2,9999999}\"}", "repeat counts too large"},
    {"{a=~\"x{,12325}(y|)+\"}", "repeat counts too large"},
    {"{a=~\"(a{,40}){,40}\"}", "repeat counts too large"},
    {"{a=~\"a++\"}", "a quantifier cannot follow a quantifier"},
    {"{a=~\"(b|c){2}*\"}", "a quantifier cannot follow a quantifier"},
};

static void test_valid(void)
{
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        query_selector_t *sel = NULL;
        errmsg_t em = {{0}};
        int rc = query_selector_parse("query", valid[i].in, strlen(valid[i].in), &sel, &em);
        if (rc != 0) {
            fprintf(stderr, "valid[%zu] \"%s\": %s\n", i, valid[i].in, em.text);
            CHECK(0);
            continue;
        }
        buf_t b;
        buf_init(&b, 1 << 20);
        CHECK_EQ_INT(query_selector_format(sel, &b), 0);
        CHECK_EQ_STR((const char *)b.data, valid[i].canon);
        /* the canonical form parses to the same canonical form */
        query_selector_t *again = NULL;
        CHECK_EQ_INT(query_selector_parse("query", (const char *)b.data, b.len, &again, &em), 0);
        buf_t b2;
        buf_init(&b2, 1 << 20);
        if (again != NULL) query_selector_format(again, &b2);
        CHECK_EQ_STR((const char *)b2.data, (const char *)b.data);
        buf_free(&b);
        buf_free(&b2);
        query_selector_free(again);
        query_selector_free(sel);
    }
}

static void test_invalid(void)
{
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        query_selector_t *sel = NULL;
        errmsg_t em = {{0}};
        int rc = query_selector_parse("query", invalid[i].in, strlen(invalid[i].in), &sel, &em);
        CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT);
        CHECK(sel == NULL);
        CHECK(strstr(em.text, "parameter 'query'") != NULL);
        if (strstr(em.text, invalid[i].must_contain) == NULL) {
            fprintf(stderr, "invalid[%zu] \"%s\": reason \"%s\" lacks \"%s\"\n", i, invalid[i].in,
                    em.text, invalid[i].must_contain);
            CHECK(0);
        }
    }
}

static labels_t *mk(const char *const *kv)
{
    labels_t *l = labels_new();
    for (; kv[0] != NULL; kv += 2)
        labels_set_str(l, kv[0], kv[1]);
    return l;
}

static int matches(const char *sel_text, const labels_t *l)
{
    query_selector_t *sel = NULL;
    errmsg_t em = {{0}};
    if (query_selector_parse("match", sel_text, strlen(sel_text), &sel, &em) != 0) {
        fprintf(stderr, "parse \"%s\": %s\n", sel_text, em.text);
        return -1;
    }
    int r = query_selector_matches(sel, l);
    query_selector_free(sel);
    return r;
}

static void test_matching(void)
{
    labels_t *l =
        mk((const char *const[]){"env", "prod", "region", "eu-west-1", "version", "v1.2", NULL});
    CHECK_EQ_INT(matches("{env=\"prod\"}", l), 1);
    CHECK_EQ_INT(matches("{env=\"pro\"}", l), 0);
    CHECK_EQ_INT(matches("{env!=\"prod\"}", l), 0);
    CHECK_EQ_INT(matches("{env=~\"pr.*\"}", l), 1);
    CHECK_EQ_INT(matches("{env=~\"pr\"}", l), 0); /* anchored: no partial match */
    CHECK_EQ_INT(matches("{env=~\"rod\"}", l), 0);
    CHECK_EQ_INT(matches("{env=~\"prod|dev\"}", l), 1); /* alternation inside ^(...)$ */
    CHECK_EQ_INT(matches("{env!~\"dev|staging\"}", l), 1);
    CHECK_EQ_INT(matches("{env!~\"p.*\"}", l), 0);
    CHECK_EQ_INT(matches("{version=~\"v1\\.2\"}", l), 1);
    CHECK_EQ_INT(matches("{version=~\"v1\\.3\"}", l), 0);
    CHECK_EQ_INT(matches("{missing=\"\"}", l), 1); /* absent reads as "" */
    CHECK_EQ_INT(matches("{missing!=\"\"}", l), 0);
    CHECK_EQ_INT(matches("{env!=\"\"}", l), 1);
    CHECK_EQ_INT(matches("{missing=~\".*\"}", l), 1);
    CHECK_EQ_INT(matches("{missing=~\".+\"}", l), 0);
    CHECK_EQ_INT(matches("{env=\"prod\", region=~\"eu-.*\", version!=\"v2\"}", l), 1);
    CHECK_EQ_INT(matches("{env=\"prod\", region=~\"us-.*\"}", l), 0);
    CHECK_EQ_INT(matches("{}", l), 1);
    labels_free(l);
}

static void test_bounds(void)
{
    errmsg_t em = {{0}};
    query_selector_t *sel = NULL;
    /* too many matchers */
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    buf_append_str(&b, "{");
    for (int i = 0; i <= QUERY_SELECTOR_MAX_MATCHERS; i++)
        buf_printf(&b, "%sl%d=\"v\"", i ? "," : "", i);
    buf_append_str(&b, "}");
    CHECK_EQ_INT(query_selector_parse("query", (char *)b.data, b.len, &sel, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "too many matchers") != NULL);
    /* value too long */
    buf_reset(&b);
    buf_append_str(&b, "{a=\"");
    for (int i = 0; i <= QUERY_LABEL_VALUE_MAX; i++)
        buf_append_byte(&b, 'x');
    buf_append_str(&b, "\"}");
    CHECK_EQ_INT(query_selector_parse("query", (char *)b.data, b.len, &sel, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "label value too long") != NULL);
    /* whole input too long */
    buf_reset(&b);
    for (int i = 0; i <= QUERY_SELECTOR_MAX_BYTES; i++)
        buf_append_byte(&b, ' ');
    CHECK_EQ_INT(query_selector_parse("query", (char *)b.data, b.len, &sel, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "longer than") != NULL);
    /* embedded NUL */
    CHECK_EQ_INT(query_selector_parse("query", "{a=\"x\0\"}", 8, &sel, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "position 5: NUL byte") != NULL);
    buf_free(&b);
}

int main(void)
{
    test_valid();
    test_invalid();
    test_matching();
    test_bounds();
    return check_exit();
}
