/* ingest_request.c — the query parameters of POST /ingest.
 *
 * name: `app.suffix{k=v,k2=v2}`; values are unquoted and end at ',' or '}'.
 * Label names may contain dots (otel.scope.name). Names Pyroscope reserves
 * (__name__, __profile_type__, __type__, __unit__, __period_type__,
 * __period_unit__, __delta__) are dropped, as Pyroscope drops them: the server
 * derives them. Empty values are dropped (Prometheus: empty means absent).
 * service_name comes from the app name unless the labels give it; when they
 * do, the app name is kept as app_name (as Pyroscope does).
 *
 * spyName: becomes the label pyroscope_spy when given (Pyroscope adds it too,
 * and the UI groups by it); when absent no label is invented.
 * units / aggregationType: accepted and validated, not stored: pprof bodies
 * carry their own units and flamedb always sums (aggregation is a query-time
 * choice).
 */
#define _GNU_SOURCE /* strcasestr, memrchr, strndup */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node/ingest/ingest_int.h"

/* Folded/lines profile types by the last dot-segment of the app name.
 *
 * Pyroscope (pkg/ingester/pyroscope/ingest_adapter.go, convertMetadata) maps
 * the suffix to name/sample type/unit and, for cpu and wall with a sample
 * rate, sets the period to cpu:nanoseconds and scales each count by
 * 1e9/sampleRate (integer division, as Pyroscope does). For the other
 * suffixes Pyroscope leaves the period type empty; flamedb fills in the
 * period type the same kind of profile has in pprof (Go runtime / JFR), so a
 * folded push and a pprof push of one kind of data are one profile type and
 * one query sees both. Pyroscope names the goroutine type
 * `goroutine:goroutines:count::`; flamedb uses the pprof-derived
 * `goroutines:goroutine:count:goroutine:count` for the same reason.
 *
 *   suffix                      type id                                          scaled
 *   (none) / cpu / itimer       process_cpu:cpu:nanoseconds:cpu:nanoseconds      yes
 *   wall                        wall:wall:nanoseconds:cpu:nanoseconds            yes
 *   inuse_objects               memory:inuse_objects:count:space:bytes
 *   inuse_space                 memory:inuse_space:bytes:space:bytes
 *   alloc_objects               memory:alloc_objects:count:space:bytes
 *   alloc_space                 memory:alloc_space:bytes:space:bytes
 *   alloc_in_new_tlab_objects   memory:alloc_in_new_tlab_objects:count:space:bytes
 *   alloc_in_new_tlab_bytes     memory:alloc_in_new_tlab_bytes:bytes:space:bytes
 *   alloc_outside_tlab_objects  memory:alloc_outside_tlab_objects:count:space:bytes
 *   alloc_outside_tlab_bytes    memory:alloc_outside_tlab_bytes:bytes:space:bytes
 *   live                        memory:live:count:objects:count
 *   goroutines                  goroutines:goroutine:count:goroutine:count
 *   mutex_count                 mutex:contentions:count:contentions:count
 *   mutex_duration              mutex:delay:nanoseconds:contentions:count
 *   block_count / lock_count    block:contentions:count:contentions:count
 *   block_duration/lock_duration block:delay:nanoseconds:contentions:count
 *   exceptions                  exceptions:samples:count::
 *   seconds/milli/micro/nanoseconds  wall:samples:count::
 *   bytes                       memory:samples:bytes::
 * With sampleRate=0 the scaled types stay counts: process_cpu:samples:count::
 * (wall:samples:count::), as in Pyroscope. An unknown last segment is part of
 * the app name (Pyroscope refuses it; a dotted app name is more likely than
 * a typo'd type) and the type is cpu.
 */
static const folded_type_t folded_types[] = {
    {"cpu", "process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds", true},
    {"itimer", "process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds", true},
    {"wall", "wall", "wall", "nanoseconds", "cpu", "nanoseconds", true},
    {"inuse_objects", "memory", "inuse_objects", "count", "space", "bytes", false},
    {"inuse_space", "memory", "inuse_space", "bytes", "space", "bytes", false},
    {"alloc_objects", "memory", "alloc_objects", "count", "space", "bytes", false},
    {"alloc_space", "memory", "alloc_space", "bytes", "space", "bytes", false},
    {"alloc_in_new_tlab_objects", "memory", "alloc_in_new_tlab_objects", "count", "space", "bytes",
     false},
    {"alloc_in_new_tlab_bytes", "memory", "alloc_in_new_tlab_bytes", "bytes", "space", "bytes",
     false},
    {"alloc_outside_tlab_objects", "memory", "alloc_outside_tlab_objects", "count", "space",
     "bytes", false},
    {"alloc_outside_tlab_bytes", "memory", "alloc_outside_tlab_bytes", "bytes", "space", "bytes",
     false},
    {"live", "memory", "live", "count", "objects", "count", false},
    {"goroutines", "goroutines", "goroutine", "count", "goroutine", "count", false},
    {"mutex_count", "mutex", "contentions", "count", "contentions", "count", false},
    {"mutex_duration", "mutex", "delay", "nanoseconds", "contentions", "count", false},
    {"block_count", "block", "contentions", "count", "contentions", "count", false},
    {"block_duration", "block", "delay", "nanoseconds", "contentions", "count", false},
    {"lock_count", "block", "contentions", "count", "contentions", "count", false},
    {"lock_duration", "block", "delay", "nanoseconds", "contentions", "count", false},
    {"exceptions", "exceptions", "samples", "count", "", "", false},
    {"seconds", "wall", "samples", "count", "", "", false},
    {"milliseconds", "wall", "samples", "count", "", "", false},
    {"microseconds", "wall", "samples", "count", "", "", false},
    {"nanoseconds", "wall", "samples", "count", "", "", false},
    {"bytes", "memory", "samples", "bytes", "", "", false},
};

const folded_type_t *ingest_folded_type(const char *app, size_t *app_len)
{
    size_t n = strlen(app);
    const char *dot = strrchr(app, '.');
    *app_len = n;
    if (dot != NULL && dot != app) {
        const char *suf = dot + 1;
        for (size_t i = 0; i < sizeof folded_types / sizeof folded_types[0]; i++)
            if (strcmp(suf, folded_types[i].suffix) == 0) {
                *app_len = (size_t)(dot - app);
                return &folded_types[i];
            }
    }
    return &folded_types[0];
}

bool ingest_label_name_valid(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '.')) return false;
    }
    return true;
}

bool ingest_label_reserved(const char *s, size_t n)
{
    static const char *const reserved[] = {"__name__", "__profile_type__", "__type__",
                                           "__unit__", "__period_type__",  "__period_unit__",
                                           "__delta__"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == n && memcmp(reserved[i], s, n) == 0) return true;
    return false;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* One `k=v` pair of the name's label list. */
static int name_pair(const char *p, const char *e, const ingest_limits_t *lim, labels_t *l,
                     errmsg_t *em)
{
    const char *eq = memchr(p, '=', (size_t)(e - p));
    if (eq == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name': label '%.*s' has no '='",
                          (int)(e - p > 64 ? 64 : e - p), p);
    const char *ks = p, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    trim(&vs, &ve);
    size_t kn = (size_t)(ke - ks), vn = (size_t)(ve - vs);
    if (!ingest_label_name_valid(ks, kn))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name': invalid label name '%.*s'",
                          (int)(kn > 64 ? 64 : kn), ks);
    for (size_t i = 0; i < vn; i++)
        if ((unsigned char)vs[i] < 0x20 || vs[i] == 0x7f)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "parameter 'name': control character in value of label '%.*s'",
                              (int)(kn > 64 ? 64 : kn), ks);
    if (ingest_label_reserved(ks, kn) || vn == 0) return 0;
    int rc = ingest_series_label_set(l, lim, ks, kn, vs, vn, em);
    if (rc == ERR_LIMIT) rc = ERR_INVALID_ARGUMENT; /* the parameter itself is bad: 400 */
    return rc;
}

static int name_labels(const char *p, const char *e, const ingest_limits_t *lim, labels_t *l,
                       errmsg_t *em)
{
    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *end = c ? c : e;
        const char *s = p, *t = end;
        trim(&s, &t);
        if (s < t) {
            int rc = name_pair(s, t, lim, l, em);
            if (rc < 0) return rc;
        }
        p = c ? c + 1 : e;
    }
    return 0;
}

int ingest_parse_name(const char *name, const ingest_limits_t *lim, char **app, labels_t *l,
                      errmsg_t *em)
{
    if (name == NULL || name[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name' is required");
    size_t n = strlen(name);
    if (n > 16384)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name' is longer than 16384 bytes");
    const char *brace = strchr(name, '{');
    const char *as = name, *ae = brace ? brace : name + n;
    trim(&as, &ae);
    if (as == ae)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name': empty application name");
    for (const char *c = as; c < ae; c++)
        if ((unsigned char)*c < 0x20 || *c == '}' || *c == ',' || *c == '=')
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "parameter 'name': invalid character in application name");
    if ((size_t)(ae - as) > lim->max_label_value_len)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'name': application name longer than %zu bytes",
                          lim->max_label_value_len);
    if (brace != NULL) {
        const char *close = name + n;
        while (close > brace && isspace((unsigned char)close[-1]))
            close--;
        if (close == brace + 1 || close[-1] != '}')
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name': missing closing '}'");
        if (memchr(brace + 1, '{', (size_t)(close - 1 - (brace + 1))) != NULL ||
            memchr(brace + 1, '}', (size_t)(close - 1 - (brace + 1))) != NULL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'name': unbalanced braces");
        int rc = name_labels(brace + 1, close - 1, lim, l, em);
        if (rc < 0) return rc;
    }
    *app = strndup(as, (size_t)(ae - as));
    return *app ? 0 : errmsg_set(em, ERR_NOMEM, "out of memory");
}

int ingest_parse_time(const char *s, int64_t *ns)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != 0 || v < 0) return ERR_INVALID_ARGUMENT;
    /* By magnitude, like Pyroscope's attime: seconds until ~year 5138, then
     * ms, us, ns. */
    if (v < 100000000000LL) {
        *ns = (int64_t)v * 1000000000LL;
    } else if (v < 100000000000000LL) {
        *ns = (int64_t)v * 1000000LL;
    } else if (v < 100000000000000000LL) {
        *ns = (int64_t)v * 1000LL;
    } else {
        *ns = (int64_t)v;
    }
    return 0;
}

static int parse_format(const ingest_request_t *req, ingest_params_t *out, errmsg_t *em)
{
    const char *f = req->format;
    const char *ct = req->content_type ? req->content_type : "";
    out->multipart = strncasecmp(ct, "multipart/form-data", 19) == 0;
    if (strcmp(ct, "binary/octet-stream+trie") == 0)
        f = "trie";
    else if (strcmp(ct, "binary/octet-stream+tree") == 0)
        f = "tree";
    if (f == NULL || f[0] == 0) {
        /* Pyroscope: a multipart body without format is a pprof upload. */
        out->format = out->multipart ? BODY_PPROF : BODY_FOLDED;
        return 0;
    }
    if (strcmp(f, "folded") == 0 || strcmp(f, "groups") == 0) {
        out->format = BODY_FOLDED;
        out->multipart = false;
    } else if (strcmp(f, "lines") == 0) {
        out->format = BODY_LINES;
        out->multipart = false;
    } else if (strcmp(f, "pprof") == 0) {
        out->format = BODY_PPROF;
    } else {
        return errmsg_set(em, ERR_UNSUPPORTED,
                          "unsupported format %.40s (supported: folded, lines, pprof)", f);
    }
    return 0;
}

static int parse_numbers(const ingest_request_t *req, ingest_params_t *out, errmsg_t *em)
{
    out->sample_rate = 100;
    if (req->sample_rate != NULL && req->sample_rate[0] != 0) {
        char *end;
        errno = 0;
        long long v = strtoll(req->sample_rate, &end, 10);
        if (errno != 0 || *end != 0 || v < 0 || v > 1000000000LL)
            return errmsg_set(em, ERR_INVALID_ARGUMENT,
                              "parameter 'sampleRate': not a rate in Hz (0..1e9): '%.40s'",
                              req->sample_rate);
        out->sample_rate = v;
    }
    if (req->from != NULL && req->from[0] != 0 && ingest_parse_time(req->from, &out->from_ns) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'from': not a unix time (s, ms, us or ns): '%.40s'",
                          req->from);
    if (req->time != NULL && req->time[0] != 0 && ingest_parse_time(req->time, &out->time_ns) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'time': not a unix time (s, ms, us or ns): '%.40s'",
                          req->time);
    if (req->until != NULL && req->until[0] != 0 &&
        ingest_parse_time(req->until, &out->until_ns) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'until': not a unix time (s, ms, us or ns): '%.40s'",
                          req->until);
    const char *a = req->aggregation_type;
    if (a != NULL && a[0] != 0 && strcmp(a, "sum") != 0 && strcmp(a, "average") != 0 &&
        strcmp(a, "avg") != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "parameter 'aggregationType': '%.40s' is not sum or average", a);
    if (req->units != NULL && strlen(req->units) > 64)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'units' is too long");
    return 0;
}

/* service_name from the app name unless given; the spy as pyroscope_spy. */
static int base_labels(const ingest_request_t *req, const ingest_limits_t *lim,
                       ingest_params_t *out, size_t app_len, errmsg_t *em)
{
    int rc;
    if (labels_get(out->base, LABEL_SERVICE_NAME) == NULL)
        rc = ingest_series_label_set(out->base, lim, LABEL_SERVICE_NAME, strlen(LABEL_SERVICE_NAME),
                                     out->app, app_len, em);
    else if (labels_get(out->base, "app_name") == NULL)
        rc = ingest_series_label_set(out->base, lim, "app_name", 8, out->app, app_len, em);
    else
        rc = 0;
    const char *spy = req->spy_name;
    if (rc == 0 && spy != NULL && spy[0] != 0) {
        for (const char *c = spy; *c; c++)
            if ((unsigned char)*c < 0x20)
                return errmsg_set(em, ERR_INVALID_ARGUMENT,
                                  "parameter 'spyName': control character");
        rc = ingest_series_label_set(out->base, lim, "pyroscope_spy", 13, spy, strlen(spy), em);
    }
    if (rc == 0 && labels_count(out->base) + 2 > lim->max_labels_per_series)
        rc = errmsg_set(em, ERR_LIMIT,
                        "parameter 'name': series would have more than %zu labels "
                        "(max-labels-per-series, counting __name__ and __profile_type__)",
                        lim->max_labels_per_series);
    if (rc == ERR_LIMIT) rc = ERR_INVALID_ARGUMENT;
    return rc;
}

int ingest_params_parse(const ingest_request_t *req, const ingest_limits_t *lim,
                        ingest_params_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    out->base = labels_new();
    if (out->base == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    int rc = ingest_parse_name(req->name, lim, &out->app, out->base, em);
    if (rc < 0) return rc;
    size_t app_len;
    out->type = ingest_folded_type(out->app, &app_len);
    out->app[app_len] = 0;
    if ((rc = parse_format(req, out, em)) < 0 || (rc = parse_numbers(req, out, em)) < 0) return rc;
    return base_labels(req, lim, out, app_len, em);
}

void ingest_params_free(ingest_params_t *p)
{
    free(p->app);
    labels_free(p->base);
    memset(p, 0, sizeof *p);
}
