/* Unit tests for common/json.h and common/grow.h: escapes, limits, walking. */
#include <string.h>

#include "common/err.h"
#include "common/grow.h"
#include "common/json.h"
#include "check.h"

static const json_limits_t lim = {8, 64};

static void test_strings(void)
{
    json_t j;
    const char *s = " \"a\\n\\t\\\\\\/\\\"\\b\\f\\r\\u00e9\\ud83d\\ude00\\ud800x\" ";
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    json_init(&j, s, strlen(s), lim);
    CHECK_EQ_INT(json_peek(&j), JSON_STRING);
    CHECK_EQ_INT(json_string(&j, &b), ERR_OK);
    CHECK_EQ_STR((char *)b.data, "a\n\t\\/\"\b\f\r\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx");
    CHECK_EQ_INT(json_finish(&j), ERR_OK);
    buf_free(&b);

    char small[4];
    json_init(&j, "\"abcdef\"", 8, lim);
    CHECK_EQ_INT(json_string_to(&j, small, sizeof small), ERR_OK);
    CHECK_EQ_STR(small, "abc"); /* truncated, but consumed */
    CHECK_EQ_INT(json_finish(&j), ERR_OK);

    const char *bad[] = {"\"a", "\"\\x\"", "\"\\u12\"", "\"a\nb\"", "x\"a\"", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_init(&j, bad[i], strlen(bad[i]), lim);
        CHECK_EQ_INT(json_string(&j, NULL), ERR_UNPARSEABLE);
    }
    /* the caller's string limit holds, for decoded bytes */
    char big[80];
    memset(big, 'a', sizeof big);
    big[0] = big[sizeof big - 1] = '"';
    json_init(&j, big, sizeof big, lim);
    CHECK_EQ_INT(json_string(&j, NULL), ERR_TOO_LARGE);
}

static void test_walk(void)
{
    const char *doc = "{\"a\": [1, -2.5e3, true, null, \"s\"], \"b\": {}, \"c\": [], \"d\": \"x\"}";
    json_t j;
    json_init(&j, doc, strlen(doc), lim);
    int rc = json_enter(&j, '{'), members = 0, items = 0;
    char key[8], v[16] = "";
    while (rc == ERR_OK && json_next(&j, &rc)) {
        CHECK_EQ_INT(json_key(&j, key, sizeof key), ERR_OK);
        members++;
        if (strcmp(key, "a") == 0) {
            rc = json_enter(&j, '[');
            while (rc == ERR_OK && json_next(&j, &rc)) {
                CHECK_EQ_INT(json_scalar_to(&j, v, sizeof v), ERR_OK);
                if (++items == 2) CHECK_EQ_STR(v, "-2.5e3");
            }
        } else if (strcmp(key, "d") == 0) {
            CHECK_EQ_INT(json_scalar_to(&j, v, sizeof v), ERR_OK);
            CHECK_EQ_STR(v, "x");
        } else {
            rc = json_skip(&j);
        }
    }
    CHECK_EQ_INT(rc, ERR_OK);
    CHECK_EQ_INT(members, 4);
    CHECK_EQ_INT(items, 5);
    CHECK_EQ_INT(json_finish(&j), ERR_OK);

    const char *bad[] = {"[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "[1}", "{]", "[", "{\"a\":}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_init(&j, bad[i], strlen(bad[i]), lim);
        CHECK_EQ_INT(json_skip(&j), ERR_UNPARSEABLE);
    }
    json_init(&j, "[] x", 4, lim);
    CHECK_EQ_INT(json_skip(&j), ERR_OK);
    CHECK_EQ_INT(json_finish(&j), ERR_UNPARSEABLE);
    CHECK_EQ_INT(json_offset(&j), 3);
}

static void test_depth(void)
{
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    json_t j;
    json_init(&j, deep, n, lim);
    CHECK_EQ_INT(json_skip(&j), ERR_UNPARSEABLE);
    json_init(&j, "[[[[[[[[1]]]]]]]]", 17, lim); /* exactly max_depth */
    CHECK_EQ_INT(json_skip(&j), ERR_OK);
    json_init(&j, "[[[[[[[[[1]]]]]]]]]", 19, lim);
    CHECK_EQ_INT(json_skip(&j), ERR_UNPARSEABLE);
}

static void test_grow(void)
{
    int *a = NULL;
    size_t cap = 0;
    CHECK_EQ_INT(GROW(a, cap, 1, 100), ERR_OK);
    CHECK_EQ_INT(cap, GROW_MIN_CAP);
    a[0] = 7;
    CHECK_EQ_INT(GROW(a, cap, 17, 100), ERR_OK);
    CHECK_EQ_INT(cap, 32);
    CHECK_EQ_INT(a[0], 7);
    CHECK_EQ_INT(GROW(a, cap, 90, 100), ERR_OK);
    CHECK_EQ_INT(cap, 100); /* clamped to the maximum */
    CHECK_EQ_INT(GROW(a, cap, 101, 100), ERR_TOO_LARGE);
    CHECK_EQ_INT(cap, 100);
    free(a);
    char *big = NULL;
    size_t bcap = 0;
    CHECK_EQ_INT(grow_array(&big, &bcap, SIZE_MAX / 2, 4, GROW_UNLIMITED, 1), ERR_NOMEM);
    CHECK(big == NULL && bcap == 0);
}

int main(void)
{
    test_strings();
    test_walk();
    test_depth();
    test_grow();
    return check_exit();
}
