/* test_client_parse.c — the client's pure parsers: base URLs, query-string
 * encoding, the JSON shapes it reads, and the top-functions table. */
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
    const char *folded = "main;a;b 10\r\n"
                         "main;a 5\n"
                         "\n"
                         "main;rec;rec;rec 7\n"
                         "main;c;b -2\n"
                         "other 1";
    flamedb__top_t t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(flamedb__top_folded(folded, strlen(folded), &t, &em), 0);
    CHECK_EQ_INT(t.sum, 21);
    CHECK_EQ_INT(t.count, 6);
    if (t.count == 6) {
        CHECK_EQ_STR(t.rows[0].name, "b");
        CHECK_EQ_INT(t.rows[0].self, 8);
        CHECK_EQ_INT(t.rows[0].total, 8);
        CHECK_EQ_STR(t.rows[1].name, "rec"); /* recursion counted once per stack */
        CHECK_EQ_INT(t.rows[1].self, 7);
        CHECK_EQ_INT(t.rows[1].total, 7);
        CHECK_EQ_STR(t.rows[2].name, "a");
        CHECK_EQ_INT(t.rows[2].self, 5);
        CHECK_EQ_INT(t.rows[2].total, 15);
        CHECK_EQ_STR(t.rows[3].name, "other");
        CHECK_EQ_STR(t.rows[4].name, "main");
        CHECK_EQ_INT(t.rows[4].total, 20);
        CHECK_EQ_INT(t.rows[4].self, 0);
        CHECK_EQ_STR(t.rows[5].name, "c");
        CHECK_EQ_INT(t.rows[5].total, -2);
    }
    flamedb__top_free(&t);
    const char *bad = "main;a 1\nmain;b\n";
    CHECK_EQ_INT(flamedb__top_folded(bad, strlen(bad), &t, &em), ERR_UNPARSEABLE);
    CHECK(strstr(em.text, "line 2") != NULL);
    /* many distinct names: the table grows */
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    for (int i = 0; i < 5000; i++)
        buf_printf(&b, "root;f%d 1\n", i);
    CHECK_EQ_INT(flamedb__top_folded((char *)b.data, b.len, &t, &em), 0);
    CHECK_EQ_INT(t.count, 5001);
    CHECK_EQ_INT(t.sum, 5000);
    CHECK_EQ_STR(t.rows[0].name, "f0"); /* ties sorted by name */
    flamedb__top_free(&t);
    buf_free(&b);
}

int main(void)
{
    test_url();
    test_query_string();
    test_json();
    test_top();
    return check_exit();
}
