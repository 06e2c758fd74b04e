/* timeparse.c — the from/until parameters: unix timestamps of any precision,
 * `now`, `now-<n><unit>`, YYYYMMDD and dates with a time of day
 * (2026-12-03T20:15:00Z, 2026-12-03 20:15, 2026-12-03). Results are unix
 * milliseconds.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

#define TIME_TEXT_MAX 64

static int bad(const char *param, const char *s, const char *why, errmsg_t *em)
{
    return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter '%s': %s: \"%.*s\"", param, why,
                      TIME_TEXT_MAX, s);
}

/* Parses all-digit s into *v; 0 on overflow or non-digits. */
static int parse_digits(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *v = x;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return dm[m - 1] + (m == 2 && leap);
}

/* YYYYMMDD with a plausible date (1970..2999); returns 1 and sets *ms. */
static int parse_yyyymmdd(uint64_t v, int64_t *ms)
{
    int64_t y = (int64_t)(v / 10000), m = (int64_t)(v / 100 % 100), d = (int64_t)(v % 100);
    if (y < 1970 || y > 2999 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return 0;
    *ms = days_from_civil(y, m, d) * 86400 * 1000;
    return 1;
}

/* Reads exactly n digits at *p into *v and moves *p past them. */
static int take_num(const char **p, size_t n, int64_t *v)
{
    uint64_t x;
    if (strspn(*p, "0123456789") < n || !parse_digits(*p, n, &x)) return 0;
    *p += n;
    *v = (int64_t)x;
    return 1;
}

/* The zone after a time of day: nothing (UTC), Z, or +HH:MM / -HH:MM.
 * Sets *off_ms to what is subtracted to get UTC. */
static int parse_zone(const char *p, int64_t *off_ms)
{
    int64_t hh, mm;
    *off_ms = 0;
    if (*p == 0 || ((*p == 'Z' || *p == 'z') && p[1] == 0)) return 1;
    if (*p != '+' && *p != '-') return 0;
    int sign = *p++ == '-' ? -1 : 1;
    if (!take_num(&p, 2, &hh) || *p++ != ':' || !take_num(&p, 2, &mm) || *p != 0) return 0;
    if (hh > 23 || mm > 59) return 0;
    *off_ms = sign * (hh * 3600 + mm * 60) * 1000;
    return 1;
}

/* YYYY-MM-DD, optionally followed by T or a space and HH:MM[:SS[.fff]] and a
 * zone (UTC without one): what flamectl and the UI print, and RFC 3339.
 * Returns 1 and sets *ms, 0 when s is not of that form. */
static int parse_datetime(const char *s, int64_t *ms)
{
    const char *p = s;
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off;
    if (!take_num(&p, 4, &y) || *p++ != '-' || !take_num(&p, 2, &mo) || *p++ != '-' ||
        !take_num(&p, 2, &d))
        return 0;
    if (y < 1970 || y > 2999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!take_num(&p, 2, &h) || *p++ != ':' || !take_num(&p, 2, &mi)) return 0;
        if (*p == ':') {
            p++;
            if (!take_num(&p, 2, &sec)) return 0;
        }
        if (*p == '.') {
            size_t n = strspn(++p, "0123456789");
            if (n == 0 || n > 9) return 0;
            for (size_t i = 0; i < 3; i++) /* milliseconds: the rest is dropped */
                frac = frac * 10 + (i < n ? p[i] - '0' : 0);
            p += n;
        }
        if (h > 23 || mi > 59 || sec > 60) return 0; /* 60: a leap second */
    }
    if (!parse_zone(p, &off)) return 0;
    *ms = days_from_civil(y, mo, d) * 86400 * 1000 + (h * 3600 + mi * 60 + sec) * 1000 + frac - off;
    return *ms >= 0;
}

static int parse_relative(const char *param, const char *s, int64_t now_ms, int64_t *out,
                          errmsg_t *em)
{
    const char *p = s + 3;
    if (*p == 0) {
        *out = now_ms;
        return 0;
    }
    if (*p != '-') return bad(param, s, "expected now or now-<n>{s,m,h,d,w}", em);
    p++;
    size_t n = strspn(p, "0123456789");
    uint64_t v;
    if (!parse_digits(p, n, &v) || strlen(p + n) != 1)
        return bad(param, s, "expected now-<n>{s,m,h,d,w}", em);
    int64_t unit;
    switch (p[n]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    case 'w':
        unit = 7 * 86400 * 1000LL;
        break;
    default:
        return bad(param, s, "unknown unit (use s, m, h, d or w)", em);
    }
    /* 100 years is far beyond any retention; it keeps the arithmetic exact. */
    if (v > (uint64_t)(100LL * 365 * 86400 * 1000) / (uint64_t)unit)
        return bad(param, s, "offset too large", em);
    *out = now_ms - (int64_t)v * unit;
    return 0;
}

int query_time_parse(const char *param, const char *s, int64_t now_ms, int64_t *out_ms,
                     errmsg_t *em)
{
    size_t n = strnlen(s, TIME_TEXT_MAX + 1);
    if (n == 0 || n > TIME_TEXT_MAX) return bad(param, s, n ? "too long" : "empty time", em);
    if (strncmp(s, "now", 3) == 0) return parse_relative(param, s, now_ms, out_ms, em);
    uint64_t v;
    if (!parse_digits(s, n, &v)) {
        if (parse_datetime(s, out_ms)) return 0;
        return bad(param, s,
                   "not a time (unix s/ms/us/ns, now, now-1h, YYYYMMDD, "
                   "YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC by default)",
                   em);
    }
    if (n == 8 && parse_yyyymmdd(v, out_ms)) return 0;
    if (v < 10000000000ULL) /* seconds until the year 2286 */
        *out_ms = (int64_t)v * 1000;
    else if (v < 10000000000000ULL) /* milliseconds */
        *out_ms = (int64_t)v;
    else if (v < 10000000000000000ULL) /* microseconds */
        *out_ms = (int64_t)(v / 1000);
    else if (v <= (uint64_t)INT64_MAX) /* nanoseconds */
        *out_ms = (int64_t)(v / 1000000);
    else
        return bad(param, s, "time out of range", em);
    return 0;
}

int query_time_range(const query_params_t *p, int64_t now_ms, int64_t *from_ms, int64_t *until_ms,
                     errmsg_t *em)
{
    int rc;
    if (p->from != NULL && p->from[0] != 0)
        rc = query_time_parse("from", p->from, now_ms, from_ms, em);
    else
        *from_ms = now_ms - 3600 * 1000, rc = 0;
    if (rc != 0) return rc;
    if (p->until != NULL && p->until[0] != 0)
        rc = query_time_parse("until", p->until, now_ms, until_ms, em);
    else
        *until_ms = now_ms;
    if (rc != 0) return rc;
    if (*from_ms >= *until_ms)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'from': must be before 'until' (%lld >= %lld ms)",
                          (long long)*from_ms, (long long)*until_ms);
    return 0;
}
