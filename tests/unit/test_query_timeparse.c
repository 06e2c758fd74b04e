/* test_query_timeparse.c — from/until parsing against a fixed clock. */
#include <string.h>

#include "query/query.h"
#include "tests/unit/check.h"

#define NOW_MS 1700000000123LL /* 2023-11-14T22:13:20.123Z */

typedef struct tcase {
    const char *in;
    int64_t want_ms;
} tcase_t;

static const tcase_t ok[] = {
    {"now", NOW_MS},
    {"now-30m", NOW_MS - 30 * 60000LL},
    {"now-3h", NOW_MS - 3 * 3600000LL},
    {"now-2d", NOW_MS - 2 * 86400000LL},
    {"now-1w", NOW_MS - 7 * 86400000LL},
    {"now-15s", NOW_MS - 15000LL},
    {"1700000000", 1700000000000LL},          /* seconds */
    {"1700000000123", 1700000000123LL},       /* milliseconds */
    {"1700000000123456", 1700000000123LL},    /* microseconds */
    {"1700000000123456789", 1700000000123LL}, /* nanoseconds */
    {"0", 0},
    {"9999999999", 9999999999000LL}, /* the largest seconds value */
    {"20231114", 1699920000000LL},   /* YYYYMMDD, UTC midnight */
    {"19700101", 0},
    {"20240229", 1709164800000LL}, /* leap day */
    {"20230229", 20230229000LL},   /* not a date: unix seconds */
    {"12345678", 12345678000LL},   /* year 1234: seconds */
    /* dates with a time of day, UTC without a zone: what flamectl prints */
    {"2023-11-14", 1699920000000LL},
    {"2023-11-14 22:13:20", 1700000000000LL},
    {"2023-11-14T22:13:20Z", 1700000000000LL},
    {"2023-11-14t22:13:20z", 1700000000000LL},
    {"2023-11-14T22:13", 1699999980000LL},
    {"2023-11-14T22:13:20.123Z", 1700000000123LL},
    {"2023-11-14T22:13:20.123456789Z", 1700000000123LL},
    {"2023-11-14T22:13:20.5", 1700000000500LL},
    {"2023-11-14T23:13:20+01:00", 1700000000000LL},
    {"2023-11-14T17:43:20-04:30", 1700000000000LL},
    {"2024-02-29T00:00:00Z", 1709164800000LL},
    {"1970-01-01T00:00:00Z", 0},
};

static const char *const bad[] = {
    "",
    "now-",
    "now-1",
    "now-1y",
    "now+1h",
    "nowish",
    "-5",
    "1.5",
    "12abc",
    "abc",
    "now-99999999999w",
    "99999999999999999999",
    "18446744073709551615",
    "1234567890123456789012345678901234567890123456789012345678901234567890",
    "2023-02-29",
    "2023-13-01",
    "2023-1-01",
    "2023-11-14T",
    "2023-11-14T24:00",
    "2023-11-14T22:60",
    "2023-11-14T22:13:20.",
    "2023-11-14T22:13:20.1234567890",
    "2023-11-14T22:13:20+0100",
    "2023-11-14T22:13:20+24:00",
    "2023-11-14T22:13:20Zjunk",
    "2023-11-14 22",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:30:00+01:00",
    "2023/11/14",
};

int main(void)
{
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t v = -1;
        errmsg_t em = {{0}};
        int rc = query_time_parse("from", ok[i].in, NOW_MS, &v, &em);
        if (rc != 0 || v != ok[i].want_ms)
            fprintf(stderr, "case \"%s\": rc %d (%s) got %lld want %lld\n", ok[i].in, rc, em.text,
                    (long long)v, (long long)ok[i].want_ms);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(v, ok[i].want_ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t v;
        errmsg_t em = {{0}};
        int rc = query_time_parse("until", bad[i], NOW_MS, &v, &em);
        if (rc != ERR_INVALID_ARGUMENT)
            fprintf(stderr, "bad case \"%s\" accepted as %lld\n", bad[i], (long long)v);
        CHECK_EQ_INT(rc, ERR_INVALID_ARGUMENT);
        CHECK(strstr(em.text, "parameter 'until'") != NULL);
    }
    /* ranges: defaults, and from >= until refused */
    query_params_t p = {0};
    int64_t f, u;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_time_range(&p, NOW_MS, &f, &u, &em), 0);
    CHECK_EQ_INT(f, NOW_MS - 3600000LL);
    CHECK_EQ_INT(u, NOW_MS);
    p.from = "now-2h";
    p.until = "now-1h";
    CHECK_EQ_INT(query_time_range(&p, NOW_MS, &f, &u, &em), 0);
    CHECK_EQ_INT(u - f, 3600000LL);
    p.from = "now";
    p.until = "now-1h";
    CHECK_EQ_INT(query_time_range(&p, NOW_MS, &f, &u, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "parameter 'from'") != NULL);
    p.from = "1700000000";
    p.until = "1700000000000"; /* same instant in s and ms */
    CHECK_EQ_INT(query_time_range(&p, NOW_MS, &f, &u, &em), ERR_INVALID_ARGUMENT);
    p.from = "now-1h";
    p.until = "garbage";
    CHECK_EQ_INT(query_time_range(&p, NOW_MS, &f, &u, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "parameter 'until'") != NULL);
    return check_exit();
}
