/* ingest.c — ingest_parse(): one /ingest request to storable series.
 *
 * Steps: parameters (ingest_request.c) -> body format (multipart, gzip by
 * magic bytes) -> pprof or folded parser -> time window check -> profile id
 * -> the storage view. The profile id (a retried push counts once) is XXH3-128
 * over tenant, every query parameter that shapes what is stored (name,
 * format, sampleRate, spyName, units, aggregationType), the RESOLVED time
 * window (from and until in ns after parsing, from defaulting to the node's
 * clock, and the profile's own time) and a hash of the profile payload (the
 * `profile` and `sample_type_config` parts of a multipart body rather than
 * the body, so a client that retries with a new multipart boundary still
 * sends the same profile). The resolved window, not the raw `from`/`until`
 * text, is what matters: the same body pushed twice without `from` a minute
 * apart is two profiles (two minutes of a process that did the same work),
 * while `from=1700000000` and `from=1700000000000` name the same time.
 * Retries are exact only when the client sends `from` (libflamedb does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/hash.h"
#include "node/ingest/ingest_int.h"
#include "ring/ring.h"

struct ingest_profile {
    char *tenant;
    series_set_t ss;
    symtab_t *symtab;
    storage_series_write_t *writes;
    storage_profile_write_t w;
    const char *format;
};

void ingest_limits_default(ingest_limits_t *l)
{
    memset(l, 0, sizeof *l);
    l->max_decompressed_bytes = 32u << 20;
    l->max_samples = 100000;
    l->max_stack_depth = 2048;
    l->max_labels_per_series = 30;
    l->max_label_name_len = 1024;
    l->max_label_value_len = 2048;
    l->max_series_per_profile = 1000;
    l->max_symbol_len = 65535;
    l->max_tree_nodes = 1u << 20;
    l->max_spans_per_series = 1000;
    l->max_decoded_bytes = 64u << 20;
    l->decoded_per_byte = 2;
    l->max_request_nodes = 2u << 20;
    l->request_memory_per_byte = INGEST_REQUEST_MEMORY_PER_BYTE;
    l->max_request_work = 128u << 20;
    l->request_work_per_byte = 8;
    l->shards.default_shards = RING_DEFAULT_SHARDS_PER_SERVICE;
    l->shards.by_profile = RING_DEFAULT_SHARD_BY_PROFILE;
    l->shards.n = 0;
    l->max_past_seconds = 90LL * 86400;
    l->max_future_seconds = 600;
    l->inflight = NULL;
}

/* The payload to parse: the body or its multipart `profile` part, gunzipped
 * when it starts with the gzip magic. *owned is set when *data was allocated. */
typedef struct payload {
    const uint8_t *data;
    size_t len;
    uint8_t *owned;
    const uint8_t *config;
    size_t config_len;
    uint64_t hash;
} payload_t;

static int load_payload(const ingest_request_t *req, const ingest_params_t *pa,
                        const ingest_limits_t *lim, payload_t *pl, errmsg_t *em)
{
    memset(pl, 0, sizeof *pl);
    pl->data = req->body;
    pl->len = req->body_len;
    if (pl->data == NULL) pl->data = (const uint8_t *)"";
    if (pa->format == BODY_PPROF && pa->multipart) {
        multipart_parts_t parts;
        int rc = ingest_multipart(pl->data, pl->len, req->content_type, &parts, em);
        if (rc < 0) return rc;
        pl->data = parts.profile;
        pl->len = parts.profile_len;
        pl->config = parts.config;
        pl->config_len = parts.config_len;
    }
    pl->hash = hash_bytes64(pl->data, pl->len) ^
               (pl->config ? hash_bytes64(pl->config, pl->config_len) * 31 : 0);
    if (ingest_is_gzip(pl->data, pl->len)) {
        size_t n;
        int rc = ingest_gunzip(pl->data, pl->len, lim->max_decompressed_bytes, &pl->owned, &n, em);
        if (rc < 0) return rc;
        pl->data = pl->owned;
        pl->len = n;
    } else if (pl->len > lim->max_decompressed_bytes) {
        return errmsg_set(em, ERR_TOO_LARGE,
                          "body of %zu bytes exceeds %zu (max-decompressed-bytes)", pl->len,
                          lim->max_decompressed_bytes);
    }
    return 0;
}

static int parse_pprof(ingest_profile_t *p, const payload_t *pl, const ingest_params_t *pa,
                       const ingest_limits_t *lim, int64_t *time_ns, errmsg_t *em)
{
    stc_t *config = NULL;
    int rc = 0;
    if (pl->config != NULL) {
        config = malloc(sizeof *config);
        if (config == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
        rc = ingest_stc_parse(pl->config, pl->config_len, config, em);
    }
    pprof_ctx_t ctx = {
        .lim = lim, .base = pa->base, .config = config, .ss = &p->ss, .symtab = p->symtab};
    if (rc == 0 && pl->len > 0) rc = ingest_pprof(pl->data, pl->len, &ctx, em);
    free(config);
    *time_ns = ctx.time_ns;
    return rc;
}

static int parse_folded(ingest_profile_t *p, const payload_t *pl, const ingest_params_t *pa,
                        const ingest_limits_t *lim, errmsg_t *em)
{
    const folded_type_t *t = pa->type;
    char id[256];
    int64_t scale = 1;
    if (t->scaled && pa->sample_rate == 0) /* counts stay counts (Pyroscope) */
        snprintf(id, sizeof id, "%s:samples:count::", t->name);
    else
        snprintf(id, sizeof id, "%s:%s:%s:%s:%s", t->name, t->sample_type, t->sample_unit,
                 t->period_type, t->period_unit);
    if (t->scaled && pa->sample_rate > 0)
        scale = 1000000000LL / pa->sample_rate; /* integer period, as Pyroscope */
    labels_t *l = ingest_series_labels(pa->base, t->name, id);
    if (l == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    folded_ctx_t ctx = {.lim = lim,
                        .ss = &p->ss,
                        .symtab = p->symtab,
                        .scale = scale,
                        .lines = pa->format == BODY_LINES};
    int rc = ingest_series_get(&p->ss, l, &ctx.series, em);
    return rc < 0 ? rc : ingest_folded(pl->data, pl->len, &ctx, em);
}

/* A profile time outside max-past/max-future. own: the time is the
 * pprof's time_nanos, which wins over from= (a saved pprof pushed later
 * keeps its capture time): the reason says so, and that time= sets it. */
static int check_time(int64_t t, int64_t now, int own, const ingest_limits_t *lim, errmsg_t *em)
{
    const char *whose = own == 2   ? "the time parameter's "
                        : own == 1 ? "the pprof's own time (time_nanos, which from= does not "
                                     "change; time= overrides it) "
                                   : "profile time ";
    if (t < now - lim->max_past_seconds * 1000000000LL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "%s%lld s is more than %lld s in the past (setting max-past)", whose,
                          (long long)(t / 1000000000LL), (long long)lim->max_past_seconds);
    if (t > now + lim->max_future_seconds * 1000000000LL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "%s%lld s is more than %lld s in the future (setting max-future)", whose,
                          (long long)(t / 1000000000LL), (long long)lim->max_future_seconds);
    return 0;
}

static void put_field(buf_t *b, const char *s)
{
    buf_append_byte(b, s ? 1 : 0);
    if (s) buf_append(b, s, strlen(s) + 1);
}

/* The resolved time window of a push: what its profile id covers. */
typedef struct id_window {
    int64_t from_ns, until_ns, time_ns; /* until 0 when absent */
} id_window_t;

static void profile_id(const ingest_request_t *req, const char *tenant, const id_window_t *win,
                       uint64_t body_hash, uint8_t out[16])
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    buf_append(&b, "ingest-v2", 10);
    put_field(&b, tenant);
    const char *f[] = {req->name,     req->format, req->sample_rate,
                       req->spy_name, req->units,  req->aggregation_type};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        put_field(&b, f[i]);
    buf_append_u64be(&b, (uint64_t)win->from_ns);
    buf_append_u64be(&b, (uint64_t)win->until_ns);
    buf_append_u64be(&b, (uint64_t)win->time_ns);
    buf_append_u64be(&b, body_hash);
    hash_bytes128(b.data, b.len, out);
    buf_free(&b);
}

/* Distinct profile types piece_flags tells apart on the stack; a push
 * with more marks every series a piece (which costs ids, never exactness). */
#define PIECE_TYPES 32

/* Marks the series that share their profile type with another series of
 * the push (it was split by its samples' labels): storage counts such a
 * push once in any average over its pieces (storage_series_write_t.piece).
 * Series are distinct (ingest_series_get), so two of one type are pieces. */
static void piece_flags(storage_series_write_t *w, size_t n)
{
    uint64_t type[PIECE_TYPES];
    uint32_t count[PIECE_TYPES];
    size_t nt = 0;
    bool all = false;
    for (size_t i = 0; i < n && !all && n > 1; i++) {
        const char *t = labels_get(w[i].labels, LABEL_PROFILE_TYPE);
        uint64_t h = t != NULL ? hash_bytes64(t, strlen(t)) : 0;
        size_t k = 0;
        while (k < nt && type[k] != h)
            k++;
        if (k == nt && nt == PIECE_TYPES) all = true;
        if (k == nt && !all) {
            type[nt] = h;
            count[nt++] = 0;
        }
        if (!all) count[k]++;
    }
    for (size_t i = 0; i < n && n > 1; i++) {
        const char *t = labels_get(w[i].labels, LABEL_PROFILE_TYPE);
        uint64_t h = t != NULL ? hash_bytes64(t, strlen(t)) : 0;
        size_t k = 0;
        while (!all && type[k] != h)
            k++;
        w[i].piece = all || count[k] > 1;
    }
}

/* storage_profile_write_t.mapped of a push parsed with the stack cache:
 * the stacks the series's tree got (its leader's records, for a series of
 * its leader's shape) go into the cache with the ids of their leaves. */
static void learn_mapped(void *ctx, const storage_series_write_t *sw, const uint32_t *map, size_t n,
                         uint64_t gen)
{
    series_set_t *ss = ctx;
    uint32_t i;
    if (!u64map_get(&ss->by_id, sw->series_id, &i)) return; /* not this push's */
    const ingest_series_t *s = &ss->v[i];
    if (sw->tree != s->tree) return;
    const stack_learn_t *l = &ss->v[s->shape_of == UINT32_MAX ? i : s->shape_of].learn;
    for (size_t k = 0; k < l->n; k++) {
        if (l->node[k] >= n) continue;
        stack_key_t at;
        ingest_stack_key_at(&at, &l->key[k], s->token);
        ingest_stack_cache_put(ss->cache, &at, gen, map[l->node[k]]);
    }
}

static int build_view(ingest_profile_t *p, int64_t time_ns, errmsg_t *em)
{
    series_set_t *ss = &p->ss;
    p->writes = calloc(ss->n + 1, sizeof *p->writes);
    if (p->writes == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ss->n; i++) {
        const ingest_series_t *s = &ss->v[i];
        p->writes[i] = (storage_series_write_t){.labels = s->labels,
                                                .token = s->token,
                                                .series_id = s->series_id,
                                                .tree = s->tree,
                                                .spans = s->spans.v,
                                                .nspans = s->spans.n,
                                                .ids = s->pairs.id,
                                                .vals = s->pairs.val,
                                                .npairs = s->pairs.n,
                                                .gen = ss->cache_gen};
    }
    piece_flags(p->writes, ss->n);
    p->w.tenant = p->tenant;
    p->w.time_ns = time_ns;
    p->w.series = p->writes;
    p->w.nseries = ss->n;
    p->w.symbols = p->symtab;
    if (ss->cache != NULL) {
        p->w.mapped = learn_mapped;
        p->w.mapped_ctx = ss;
    }
    return 0;
}

static const char *format_name(body_format_t f)
{
    return f == BODY_PPROF ? "pprof" : f == BODY_LINES ? "lines" : "folded";
}

static int run(const ingest_request_t *req, const ingest_limits_t *lim, ingest_profile_t *p,
               errmsg_t *em)
{
    ingest_params_t pa;
    payload_t pl = {0};
    clock_source_t real = clock_real();
    int64_t time_ns = 0, now = req->now_ns ? req->now_ns : clock_wall_ns(&real);
    int rc = ingest_params_parse(req, lim, &pa, em);
    if (rc == 0) rc = load_payload(req, &pa, lim, &pl, em);
    size_t charged = 0; /* the gunzipped copy, until parsed */
    if (rc == 0) ingest_series_set_budget(&p->ss, pl.len);
    if (rc == 0 && req->stack_cache != NULL && pa.format == BODY_PPROF) {
        p->ss.cache = req->stack_cache;
        p->ss.cache_gen = ingest_stack_cache_gen(req->stack_cache);
        p->ss.tenant_hash = hash_bytes64(p->tenant, strlen(p->tenant));
    }
    if (rc == 0 && pl.owned != NULL &&
        (rc = ingest_charge(&p->ss, pl.len, "gunzipped body", em)) == 0)
        charged = pl.len;
    if (rc == 0) {
        p->format = format_name(pa.format);
        if (pa.format == BODY_PPROF)
            rc = parse_pprof(p, &pl, &pa, lim, &time_ns, em);
        else
            rc = parse_folded(p, &pl, &pa, lim, em);
    }
    /* Nothing reads the payload past the parse (symbols and labels are
     * copies): the gunzipped copy goes before the trees are finished, so it
     * is not held beside them. */
    free(pl.owned);
    pl.owned = NULL;
    ingest_uncharge(&p->ss, charged);
    if (rc == 0) rc = ingest_series_finish(&p->ss, p->symtab, em);
    /* time= (a backfill, a client with a wrong clock) wins over the pprof's
     * time_nanos, which wins over from= (Pyroscope's order, unchanged) */
    int own_time = pa.time_ns != 0 ? 2 : time_ns != 0;
    if (pa.time_ns != 0) time_ns = pa.time_ns;
    if (time_ns == 0) time_ns = pa.from_ns ? pa.from_ns : now;
    if (rc == 0) rc = check_time(time_ns, now, own_time, lim, em);
    if (rc == 0) {
        id_window_t win = {pa.from_ns ? pa.from_ns : now, pa.until_ns, time_ns};
        profile_id(req, p->tenant, &win, pl.hash, p->w.profile_id);
        rc = build_view(p, time_ns, em);
    }
    ingest_params_free(&pa);
    return rc;
}

int ingest_parse(const ingest_request_t *req, const ingest_limits_t *lim, ingest_profile_t **out,
                 errmsg_t *em)
{
    size_t peak;
    return ingest_parse_held(req, lim, out, &peak, em);
}

int ingest_parse_held(const ingest_request_t *req, const ingest_limits_t *lim,
                      ingest_profile_t **out, size_t *peak, errmsg_t *em)
{
    *peak = 0;
    ingest_limits_t defaults;
    if (lim == NULL) {
        ingest_limits_default(&defaults);
        lim = &defaults;
    }
    *out = NULL;
    ingest_profile_t *p = calloc(1, sizeof *p);
    const char *tenant = req->tenant && req->tenant[0] ? req->tenant : "anonymous";
    if (p == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    p->tenant = strdup(tenant);
    p->symtab = symtab_new();
    int rc = p->tenant && p->symtab ? ingest_series_set_init(&p->ss, p->tenant, lim) : ERR_NOMEM;
    if (rc < 0) {
        errmsg_set(em, ERR_NOMEM, "out of memory");
    } else {
        rc = run(req, lim, p, em);
    }
    /* A per-profile limit (samples, depth, series, labels, one tree's nodes)
     * refuses the push as it is: retrying it cannot help, so 422, not the
     * 429 ERR_LIMIT means elsewhere (rates, a tenant's quotas). */
    if (rc == ERR_LIMIT) rc = ERR_OVER_LIMIT;
    *peak = p->ss.mem_peak;
    if (rc < 0) {
        ingest_profile_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

const storage_profile_write_t *ingest_profile_write(const ingest_profile_t *p)
{
    return &p->w;
}

int64_t ingest_profile_series_total(const ingest_profile_t *p, size_t i)
{
    if (i >= p->ss.n) return 0;
    uint64_t sum = (uint64_t)calltree_root_total(p->ss.v[i].tree);
    for (size_t k = 0; k < p->ss.v[i].pairs.n; k++)
        sum += (uint64_t)p->ss.v[i].pairs.val[k];
    return (int64_t)sum;
}

void ingest_profile_stack_hits(const ingest_profile_t *p, size_t *hits, size_t *lookups)
{
    *hits = p->ss.cache_hits;
    *lookups = p->ss.cache_lookups;
}

size_t ingest_profile_spans_dropped(const ingest_profile_t *p)
{
    return p->ss.spans_dropped;
}

void ingest_profile_cost(const ingest_profile_t *p, size_t *nodes, size_t *work)
{
    *nodes = p->ss.nodes;
    *work = p->ss.work;
}

size_t ingest_profile_peak_bytes(const ingest_profile_t *p)
{
    return p->ss.mem_peak;
}

const char *ingest_profile_format(const ingest_profile_t *p)
{
    return p->format ? p->format : "";
}

void ingest_profile_free(ingest_profile_t *p)
{
    if (p == NULL) return;
    ingest_series_set_free(&p->ss);
    symtab_free(p->symtab);
    free(p->writes);
    free(p->tenant);
    free(p);
}
