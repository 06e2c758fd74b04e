/* test_client_parse.c — the client's pure parsers: base URLs, query-string
 * encoding, the JSON shapes it reads, the top-functions table and the label
 * shares. */
#include "check.h"

#include "client/flamedb_int.h"

static void test_url(void)
{
    flamedb__url_t u;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(flamedb__url_parse("http://127.0.0.1:4040", &u, &em), 0);
    CHECK_EQ_STR(u.host, "127.0.0.1");
    CHECK_EQ_STR(u.port, "4040");
    CHECK_EQ_STR(u.prefix, "");
    CHECK_EQ_INT(flamedb__url_parse("HTTP://db.example:80/a/b//", &u, &em), 0);
    CHECK_EQ_STR(u.host, "db.example");
    CHECK_EQ_STR(u.port, "80");
    CHECK_EQ_STR(u.prefix, "/a/b");
    CHECK_EQ_INT(flamedb__url_parse("http://[::1]:9/", &u, &em), 0);
    CHECK_EQ_STR(u.host, "::1");
    CHECK_EQ_STR(u.port, "9");
    CHECK_EQ_INT(u.ipv6, 1);
    CHECK_EQ_INT(flamedb__url_parse("localhost:4040", &u, &em), 0); /* scheme optional */
    CHECK_EQ_STR(u.host, "localhost");
    CHECK_EQ_INT(flamedb__url_parse("http://h", &u, &em), 0);
    CHECK_EQ_STR(u.port, "80");

    const char *bad[] = {"",
                         "http://",
                         "http://:80",
                         "http://h:0",
                         "http://h:65536",
                         "http://h:8x",
                         "http://[::1",
                         "http://[::1]x",
                         "http://h/?q=1",
                         "http://h/p#f",
                         "http://u@h",
                         "http://h h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = flamedb__url_parse(bad[i], &u, &em);
        if (rc != ERR_INVALID_ARGUMENT) fprintf(stderr, "url '%s' gave %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT);
    }
    CHECK_EQ_INT(flamedb__url_parse("https://h", &u, &em), ERR_UNSUPPORTED);
    CHECK_EQ_INT(flamedb__url_parse("ftp://h", &u, &em), ERR_UNSUPPORTED);
    CHECK(strstr(em.text, "http://") != NULL);
}

static void test_query_string(void)
{
    buf_t b;
    buf_init(&b, 1024);
    CHECK_EQ_INT(buf_append_str(&b, "/render"), 0);
    CHECK_EQ_INT(flamedb__query_add(&b, "query", "cpu{a=\"x y\",b=~\"v.*\"}"), 0);
    CHECK_EQ_INT(flamedb__query_add(&b, "skip", NULL), 0);
    CHECK_EQ_INT(flamedb__query_add_int(&b, "from", -5), 0);
    CHECK_EQ_INT(flamedb__query_add(&b, "u", "\xc3\xa9~_-.&=+/"), 0);
    CHECK_EQ_STR((char *)b.data, "/render?query=cpu%7Ba%3D%22x%20y%22%2Cb%3D~%22v.%2A%22%7D"
                                 "&from=-5&u=%C3%A9~_-.%26%3D%2B%2F");
    buf_free(&b);
    /* the bound holds */
    buf_init(&b, 8);
    CHECK_EQ_INT(flamedb__query_add(&b, "k", "0123456789"), ERR_TOO_LARGE);
    buf_free(&b);
}

static void test_json(void)
{
    flamedb_strings_t s;
    errmsg_t em = {{0}};
    const char *ok = " [ \"a\" , \"\\n\\t\\\\\\/\" ,\"\\ud83d\\ude00\", \"\\ud800x\", \"\"] ";
    CHECK_EQ_INT(flamedb__json_strings(ok, strlen(ok), &s, &em), 0);
    CHECK_EQ_INT(s.count, 5);
    if (s.count == 5) {
        CHECK_EQ_STR(s.items[1], "\n\t\\/");
        CHECK_EQ_STR(s.items[2], "\xf0\x9f\x98\x80");
        CHECK_EQ_STR(s.items[3], "\xef\xbf\xbdx");
        CHECK_EQ_STR(s.items[4], "");
    }
    flamedb_strings_free(&s);
    const char *bad[] = {"",      "[",         "[\"a\"",    "[\"a\",]",    "[\"a\" \"b\"]",
                         "{}",    "[\"a\"] x", "[\"\\x\"]", "[\"\\u12\"]", "[\"a\nb\"]",
                         "[null]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(flamedb__json_strings(bad[i], strlen(bad[i]), &s, &em), ERR_UNPARSEABLE);
        CHECK(s.items == NULL && s.count == 0);
    }

    char code[32], msg[16];
    const char *e = "{\"n\":{\"deep\":[1,2,{\"x\":true}]},\"message\":\"a long reason here\","
                    "\"code\":\"too_large\",\"z\":-1.5e3}";
    CHECK_EQ_INT(flamedb__json_error(e, strlen(e), code, sizeof code, msg, sizeof msg), 0);
    CHECK_EQ_STR(code, "too_large");
    CHECK_EQ_STR(msg, "a long reason h"); /* truncated to the buffer */
    CHECK_EQ_INT(flamedb__json_error("[1]", 3, code, sizeof code, msg, sizeof msg),
                 ERR_UNPARSEABLE);
    /* nesting deeper than the limit is refused, not recursed into */
    char deep[400];
    size_t n = 0;
    n += (size_t)sprintf(deep, "{\"a\":");
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    CHECK_EQ_INT(flamedb__json_error(deep, n, code, sizeof code, msg, sizeof msg), ERR_UNPARSEABLE);
}

static void test_top(void)
{
    const char *doc =
        "{\"unit\":\"nanoseconds\",\"total\":6000000000,\"rangeSeconds\":60,\"cores\":0.1,"
        "\"functionCount\":3,\"functions\":["
        "{\"name\":\"a\\\"b\",\"file\":\"a.c\",\"self\":3000000000,\"total\":3000000000,"
        "\"selfPercent\":50,\"totalPercent\":50,\"selfCores\":0.05,\"totalCores\":0.05,"
        "\"future\":[1,{\"x\":2}]},"
        "{\"name\":\"main\",\"self\":0,\"total\":6000000000,\"selfPercent\":0,"
        "\"totalPercent\":100,\"selfCores\":0,\"totalCores\":0.1}],"
        "\"partial\":true,\"missing\":[\"x\"]}";
    flamedb__top_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(flamedb__top_parse(doc, strlen(doc), &t, &em), 0);
    CHECK_EQ_STR(t.unit, "nanoseconds");
    CHECK_EQ_INT(t.sum, 6000000000LL);
    CHECK_EQ_INT(t.range_s, 60);
    CHECK_EQ_INT(t.functions, 3);
    CHECK(t.has_cores && t.cores == 0.1 && t.partial);
    CHECK_EQ_INT(t.matches, -1); /* no search */
    CHECK_EQ_INT(t.count, 2);
    if (t.count == 2) {
        CHECK_EQ_STR(t.rows[0].name, "a\"b");
        CHECK_EQ_INT(t.rows[0].self, 3000000000LL);
        CHECK(t.rows[0].self_pct == 50 && t.rows[0].total_cores == 0.05);
        CHECK_EQ_STR(t.rows[1].name, "main");
        CHECK(t.rows[1].total_pct == 100 && t.rows[1].total_cores == 0.1);
    }
    flamedb__top_free(&t);
    const char *mem = "{\"unit\":\"bytes\",\"total\":5,\"cores\":null,\"functionCount\":4,"
                      "\"matchCount\":0,\"functions\":[]}";
    CHECK_EQ_INT(flamedb__top_parse(mem, strlen(mem), &t, &em), 0);
    CHECK(!t.has_cores && t.count == 0 && t.sum == 5);
    CHECK(t.functions == 4 && t.matches == 0); /* a search that found nothing */
    flamedb__top_free(&t);
    const char *bad[] = {"", "[]", "{\"functions\":[{\"self\":1}]}", "{\"total\":\"x\"}",
                         "{\"functions\":[{\"name\":\"a\"}]} x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(flamedb__top_parse(bad[i], strlen(bad[i]), &t, &em), ERR_UNPARSEABLE);
        CHECK(t.rows == NULL && t.count == 0);
    }
    /* many rows: the table grows */
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    buf_append_str(&b, "{\"functions\":[");
    for (int i = 0; i < 5000; i++)
        buf_printf(&b, "%s{\"name\":\"f%d\",\"self\":%d}", i ? "," : "", i, i);
    buf_append_str(&b, "]}");
    CHECK_EQ_INT(flamedb__top_parse((char *)b.data, b.len, &t, &em), 0);
    CHECK_EQ_INT(t.count, 5000);
    CHECK_EQ_STR(t.rows[4999].name, "f4999");
    CHECK_EQ_INT(t.rows[4999].self, 4999);
    flamedb__top_free(&t);
    buf_free(&b);
}

static void test_report(void)
{
    errmsg_t em = {{0}};
    flamedb__report_t t;
    const char *all = "{\"leftTicks\":4,\"rightTicks\":6,\"unit\":\"nanoseconds\","
                      "\"functionCount\":3,\"tested\":2,\"functions\":[{\"name\":\"a\","
                      "\"leftTotal\":4,\"rightTotal\":3,\"change\":-50,\"pValue\":null}]}";
    CHECK_EQ_INT(flamedb__report_parse(all, strlen(all), &t, &em), 0);
    CHECK(t.functions == 3 && t.tested == 2 && t.count == 1);
    CHECK_EQ_INT(t.matches, -1); /* no search */
    CHECK(t.count == 1 && !t.rows[0].tested && t.rows[0].change == -50);
    flamedb__report_free(&t);
    const char *found = "{\"functionCount\":3,\"matchCount\":0,\"tested\":2,\"functions\":[]}";
    CHECK_EQ_INT(flamedb__report_parse(found, strlen(found), &t, &em), 0);
    CHECK(t.functions == 3 && t.matches == 0 && t.count == 0); /* a search that found nothing */
    flamedb__report_free(&t);
}

static void test_shares(void)
{
    const char *doc = "{\"label\":\"env\",\"total\":10,\"values\":["
                      "{\"value\":\"a\\u00e9\",\"total\":7,\"share\":0.7,"
                      "\"timeline\":{\"startTime\":1,\"samples\":[3,4],\"durationDelta\":10}},"
                      "{\"value\":\"\",\"total\":3,\"share\":0.3,\"future\":[{}]}],"
                      "\"partial\":true,\"missing_ranges\":2}";
    flamedb__shares_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(flamedb__shares_parse(doc, strlen(doc), &t, &em), 0);
    CHECK_EQ_INT(t.total, 10);
    CHECK(t.partial);
    CHECK_EQ_INT(t.count, 2);
    if (t.count == 2) {
        CHECK_EQ_STR(t.rows[0].value, "a\xc3\xa9");
        CHECK(t.rows[0].total == 7 && t.rows[0].share == 0.7);
        CHECK_EQ_STR(t.rows[1].value, "");
        CHECK(t.rows[1].total == 3 && t.rows[1].share == 0.3);
    }
    flamedb__shares_free(&t);
    const char *empty = "{\"label\":\"env\",\"total\":0,\"values\":[]}";
    CHECK_EQ_INT(flamedb__shares_parse(empty, strlen(empty), &t, &em), 0);
    CHECK(t.count == 0 && t.total == 0 && !t.partial);
    flamedb__shares_free(&t);
    const char *bad[] = {"",
                         "[]",
                         "{\"values\":[{\"total\":1}]}",
                         "{\"total\":\"x\"}",
                         "{\"values\":[{\"value\":\"a\"}]} x",
                         "{\"values\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(flamedb__shares_parse(bad[i], strlen(bad[i]), &t, &em), ERR_UNPARSEABLE);
        CHECK(t.rows == NULL && t.count == 0);
    }
}

static void test_plist(void)
{
    const char *doc =
        "{\"profiles\":[{\"time\":1767225500,\"id\":\"ab\",\"profile_id\":\"cd\","
        "\"total\":30,\"labels\":{\"__name__\":\"process_cpu\",\"__profile_type__\":\"t\","
        "\"pod\":\"a\",\"service_name\":\"api\"},\"future\":[1]},"
        "{\"time\":5,\"id\":\"ef\",\"total\":-2,\"labels\":{}}],"
        "\"truncated\":true,\"partial\":true,\"missing_ranges\":1}";
    flamedb__plist_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(flamedb__plist_parse(doc, strlen(doc), &t, &em), 0);
    CHECK(t.truncated && t.partial);
    CHECK_EQ_INT(t.count, 2);
    if (t.count == 2) {
        CHECK(t.rows[0].time_s == 1767225500 && t.rows[0].total == 30);
        CHECK_EQ_STR(t.rows[0].id, "ab");
        CHECK_EQ_STR(t.rows[0].labels, "pod=a,service_name=api");
        CHECK(t.rows[1].time_s == 5 && t.rows[1].total == -2);
        CHECK_EQ_STR(t.rows[1].labels, "");
    }
    flamedb__plist_free(&t);
    const char *empty = "{\"profiles\":[],\"truncated\":false}";
    CHECK_EQ_INT(flamedb__plist_parse(empty, strlen(empty), &t, &em), 0);
    CHECK(t.count == 0 && !t.truncated && !t.partial);
    flamedb__plist_free(&t);
    const char *bad[] = {"",
                         "[]",
                         "{\"profiles\":[{\"time\":1,\"labels\":{}}]}",
                         "{\"profiles\":[{\"id\":\"a\"}]}",
                         "{\"profiles\":[{\"id\":\"a\",\"labels\":{\"k\":1}}]}",
                         "{\"profiles\":[{\"id\":\"a\",\"labels\":[]}]}",
                         "{\"profiles\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(flamedb__plist_parse(bad[i], strlen(bad[i]), &t, &em), ERR_UNPARSEABLE);
        CHECK(t.rows == NULL && t.count == 0);
    }
}

int main(void)
{
    test_url();
    test_query_string();
    test_json();
    test_top();
    test_report();
    test_shares();
    test_plist();
    return check_exit();
}
