/* scatter_serve.c — the replica side of a scatter-gather query: a
 * QueryRequest in, the partial query on the thread pool over exactly the
 * ranges asked, a PartialResult back to the coordinator.
 *
 * PartialResult of a flame graph (QUERY_KIND_MERGE): calltree is the
 * untruncated merge of the selected series in the ranges; symbols are the
 * symbols it references; series_count the number of series selected and
 * spy_name the pyroscope_spy all of them share (or ""); totals, when the
 * request asks for a timeline, the non-zero buckets (time_ms = bucket start).
 * A render asked with forests answers, when every value is >= 0, the
 * forest of each token (forests) instead of building their merge: calltree
 * is then what is in no forest (nothing, for stored blocks).
 * With ops.send_frame the whole envelope is written on the pool (in
 * encoding 4 or 5 each forest sized first and then written in its place in
 * it: write_frame), and the pool thread sends it at once when it
 * fits one frame and the connection is free (ops.send_frame_now); else the
 * loop hands the frame over as it is.
 * Label kinds
 * put the sorted distinct strings in values. served echoes the ranges asked.
 *
 * Bounded: at most max_serving partials at once (more are refused, and the
 * coordinator asks another replica), series and tree nodes by the query
 * limits, the memory of all of them (result, then encoded answer, until
 * sent) by query-memory-bytes, shared with the queries this node
 * coordinates (a share that does not fit is refused as unavailable), and an
 * answer larger than a message is refused with the reason rather than sent.
 * A share stops early when its coordinator sends a CANCEL for it or its
 * deadline passes (query_stop_t, checked per series); a CANCEL that comes
 * before its QUERY is kept (scatter_t.early) and the QUERY refused at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/log.h"
#include "common/varint.h"
#include "node/cluster/scatter_int.h"

typedef struct serve_job {
    workq_job_t w;
    list_node_t link;   /* in s->serving from submit to done */
    atomic_int cancel;  /* a cancel message came: the running share stops */
    int stopped;        /* it stopped early (cancelled, or its deadline passed) */
    int mem_refused;    /* query-memory-bytes could not hold its result */
    alloc_charge_t mem; /* its result and answer, on query-memory-bytes (s->mem) */
    scatter_t *s;
    char sender[RING_NODE_ID_MAX + 1];
    char tenant[STORAGE_TENANT_MAX + 1];
    uint64_t request_id, deadline, ring_version;
    query_partial_args_t args;
    char *selector, *label;
    query_range_t *ranges;
    int rc;
    errmsg_t em;
    query_partial_t part;
    size_t part_charged; /* its bytes, charged once made */
    /* the answer, pointing into part and the arrays below */
    Flamedb__Cluster__PartialResult msg;
    buf_t tree;
    buf_t forests;       /* the forests' encodings, one after another */
    size_t forests_held; /* charged for it and its encoder while they are written */
    int forest_version;  /* theirs: the newest the coordinator reads */
    uint64_t *known;     /* symbols whose names the coordinator holds: not sent */
    size_t nknown;
    /* asked with space_version: the id spaces the coordinator holds of this
     * node, and the answer by id (PartialResult.space): its structure in
     * forests, its values here */
    storage_space_known_t kspaces[SCATTER_SPACES_KNOWN_MAX];
    int space_scaled; /* space_version >= 2: the values go divided by their unit */
    Flamedb__Cluster__IdSpace space;
    buf_t spvalues;
    ProtobufCBinaryData *fdata; /* each, pointing into forests */
    /* to a cluster that takes frames (ops.send_frame), the answer's envelope
     * (frame), sent as it is; in encodings 4 and 5 the forests sized first,
     * then written in their place in it (forests stays empty) */
    query_forest_sized_t *sized;
    size_t nsized;
    size_t body_bytes; /* the PartialResult's, forests included */
    buf_t frame;
    /* the coordinator's route, taken on the loop (ops.route): a frame that
     * fits one is sent by the pool thread that wrote it (sent: 1, or a
     * socket error), not after a trip through the loop */
    cluster_route_t route;
    int routed, sent;
    Flamedb__Cluster__Symbol *syms, **symp;
    ProtobufCBinaryData *values;
    Flamedb__Cluster__TotalsPoint *tp, **tpp;
    uint8_t *pushes; /* the totals' push ids (TotalsPoint.pushes) */
    Flamedb__Cluster__TokenRange *served, **servedp;
    uint64_t *fsyms; /* the function sums (PartialResult.function_*), when asked */
    int64_t *fselves, *ftotals;
    size_t fns_held; /* their bytes, charged */
} serve_job_t;

static void functions_free(serve_job_t *j)
{
    alloc_charge_sub(&j->mem, j->fns_held);
    j->fns_held = 0;
    free(j->fsyms);
    free(j->fselves);
    free(j->ftotals);
    j->fsyms = NULL;
    j->fselves = j->ftotals = NULL;
}

static void sized_free(serve_job_t *j)
{
    for (size_t i = 0; i < j->nsized; i++)
        query_forest_sized_free(&j->sized[i]);
    free(j->sized);
    j->sized = NULL;
    j->nsized = 0;
}

static void job_free(serve_job_t *j)
{
    alloc_charge_done(&j->mem);
    free(j->selector);
    free(j->known);
    free(j->label);
    free(j->ranges);
    query_partial_free(&j->part);
    buf_free(&j->tree);
    buf_free(&j->forests);
    buf_free(&j->spvalues);
    sized_free(j);
    buf_free(&j->frame);
    free(j->fdata);
    free(j->syms);
    free(j->symp);
    free(j->values);
    free(j->tp);
    free(j->tpp);
    free(j->pushes);
    free(j->served);
    free(j->servedp);
    functions_free(j);
    free(j);
}

/* ---------- building the answer (pool) ---------- */

static int add_symbols(serve_job_t *j)
{
    size_t n = symtab_count(j->part.syms);
    j->syms = calloc(n ? n : 1, sizeof *j->syms);
    j->symp = calloc(n ? n : 1, sizeof *j->symp);
    if (j->syms == NULL || j->symp == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        Flamedb__Cluster__Symbol *s = &j->syms[i];
        flamedb__cluster__symbol__init(s);
        const char *name, *file;
        s->id = symtab_id_at(j->part.syms, i);
        symtab_get(j->part.syms, s->id, &name, &file);
        s->name = (ProtobufCBinaryData){strlen(name), (uint8_t *)name};
        s->file = (ProtobufCBinaryData){strlen(file), (uint8_t *)file};
        j->symp[i] = s;
    }
    j->msg.n_symbols = n;
    j->msg.symbols = j->symp;
    return 0;
}

/* The pushes of bucket i (tl->pushes sorted, from *at on) as big-endian
 * short ids into out; *at moves past them. How many. */
static size_t bucket_pushes(const query_timeline_t *tl, size_t i, size_t *at, uint8_t *out)
{
    size_t n = 0;
    for (; *at < tl->npushes && tl->pushes[*at].bucket == i; (*at)++, n++)
        for (size_t b = 0; b < STORAGE_WPROF_ID_LEN; b++)
            out[n * STORAGE_WPROF_ID_LEN + b] =
                (uint8_t)(tl->pushes[*at].id >> (8 * (STORAGE_WPROF_ID_LEN - 1 - b)));
    return n;
}

/* One point per bucket with a value or a count; a bucket's pushes split
 * into pieces are in its count once each and listed by id, which the
 * coordinator unites with other nodes' (query_gather_add_pushes). */
static int add_totals(serve_job_t *j)
{
    const query_timeline_t *tl = &j->part.tl;
    size_t n = 0, at = 0;
    for (size_t i = 0, p = 0; i < tl->n; i++) {
        int pushed = p < tl->npushes && tl->pushes[p].bucket == i;
        while (p < tl->npushes && tl->pushes[p].bucket == i)
            p++;
        n += tl->samples[i] != 0 || (tl->counts != NULL && tl->counts[i] != 0) || pushed;
    }
    j->tp = calloc(n ? n : 1, sizeof *j->tp);
    j->tpp = calloc(n ? n : 1, sizeof *j->tpp);
    j->pushes = malloc(tl->npushes ? tl->npushes * STORAGE_WPROF_ID_LEN : 1);
    if (j->tp == NULL || j->tpp == NULL || j->pushes == NULL) return ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < tl->n; i++) {
        uint8_t *ids = j->pushes + at * STORAGE_WPROF_ID_LEN;
        size_t np = bucket_pushes(tl, i, &at, ids);
        int64_t count = (tl->counts != NULL ? tl->counts[i] : 0) + (int64_t)np;
        if (tl->samples[i] == 0 && count == 0) continue;
        flamedb__cluster__totals_point__init(&j->tp[k]);
        j->tp[k].time_ms = (tl->start_s + (int64_t)i * tl->step_s) * 1000;
        j->tp[k].value = tl->samples[i];
        j->tp[k].count = count;
        j->tp[k].pushes = (ProtobufCBinaryData){np * STORAGE_WPROF_ID_LEN, np ? ids : NULL};
        j->tpp[k] = &j->tp[k];
        k++;
    }
    j->msg.n_totals = n;
    j->msg.totals = j->tpp;
    return 0;
}

/* Appends a forest's dictionary to the symbols whose names the share loads. */
static int add_dict(uint64_t **ids, size_t *n, size_t *cap, const uint64_t *dict, size_t nd)
{
    if (GROW_FROM(*ids, *cap, *n + nd, GROW_UNLIMITED, 1024) != 0) return ERR_NOMEM;
    memcpy(*ids + *n, dict, nd * sizeof *dict);
    *n += nd;
    return 0;
}

/* Each token's forest, encoded one after the other into j->forests; the
 * names its symbols need, from the forests' dictionaries (a pass over their
 * distinct symbols, not over every node). */
static int add_forests(serve_job_t *j)
{
    size_t n = j->part.ntabs;
    size_t *end = calloc(n ? n : 1, sizeof *end);
    j->fdata = calloc(n ? n : 1, sizeof *j->fdata);
    int rc = end && j->fdata ? 0 : ERR_NOMEM;
    size_t want = 0; /* about what they take: one allocation, no copies as it grows */
    for (size_t i = 0; i < n; i++)
        want += 16 + 6 * j->part.tabs[i].nodes;
    if (rc == 0 && want < j->forests.max) rc = buf_reserve(&j->forests, want);
    uint64_t *ids = NULL, *dict;
    size_t nids = 0, cap = 0, nd;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = query_forest_encode_dict(&j->part.tabs[i], j->forest_version, &j->forests, &dict, &nd);
        if (rc == 0 && j->part.names_later) rc = add_dict(&ids, &nids, &cap, dict, nd);
        free(dict);
        end[i] = j->forests.len;
    }
    if (rc == 0 && j->part.names_later) {
        rc = query_load_symbol_ids(j->s->storage, j->tenant, ids, nids, j->known, j->nknown,
                                   j->part.syms);
        j->part.names_later = rc != 0;
    }
    free(ids);
    for (size_t i = 0; rc == 0 && i < n; i++) { /* the buffer has stopped moving */
        size_t start = i > 0 ? end[i - 1] : 0;
        j->fdata[i] = (ProtobufCBinaryData){end[i] - start, j->forests.data + start};
    }
    free(end);
    if (rc != 0) return rc;
    j->msg.n_forests = n;
    j->msg.forests = j->fdata;
    return 0;
}

static int forests_hold(void *ctx, size_t held);

/* The union's forest by id (PartialResult.space): the structure of the ids
 * its coordinator lacks into j->forests, the values into j->spvalues, and
 * the names of the symbols of that structure (the coordinator keeps them
 * with it: those of the ids it holds it has). */
static int add_space(serve_job_t *j)
{
    const storage_merged_tab_t *t = &j->part.tabs[0];
    uint64_t unit;
    int rc = scatter_space_encode(t, j->space_scaled, &j->forests, &j->spvalues, &unit);
    size_t nids = t->n > t->space_base ? t->n - t->space_base : 0;
    if (rc == 0 && j->part.names_later && nids > 0)
        rc = query_load_symbol_ids(j->s->storage, j->tenant, t->space_sym, nids, NULL, 0,
                                   j->part.syms);
    j->part.names_later = rc != 0;
    if (rc != 0) return rc;
    flamedb__cluster__id_space__init(&j->space);
    j->space.nonce = t->space_nonce;
    j->space.first = t->space_base;
    j->space.count = t->n;
    j->space.structure = (ProtobufCBinaryData){j->forests.len, j->forests.data};
    j->space.values = (ProtobufCBinaryData){j->spvalues.len, j->spvalues.data};
    j->space.unit = unit > 1 ? unit : 0; /* 0: as sent */
    j->msg.space = &j->space;
    return 0;
}

/* 1 when the share answers by id: asked so, and its one forest has a space. */
static int answers_space(const serve_job_t *j)
{
    return j->args.space && j->part.ntabs == 1 && j->part.tabs[0].space_nonce != 0 &&
           j->part.tabs[0].nonneg;
}

/* 1 when the forests go in their place in the envelope (sized, then
 * written by write_frame): the cluster takes frames, the coordinator reads
 * encoding 4 or 5, and every forest carries symbol numbers. */
static int frames_forests(const serve_job_t *j)
{
    if (j->s->ops.send_frame == NULL || j->forest_version < QUERY_FOREST_V4 || j->part.ntabs == 0)
        return 0;
    for (size_t i = 0; i < j->part.ntabs; i++)
        if (j->part.tabs[i].symno == NULL || !j->part.tabs[i].nonneg) return 0;
    return 1;
}

/* Each token's forest sized (its records laid out, its dictionary made),
 * what they hold charged; the names from the dictionaries, as add_forests. */
static int size_forests(serve_job_t *j)
{
    size_t n = j->part.ntabs;
    j->sized = calloc(n, sizeof *j->sized);
    if (j->sized == NULL) return ERR_NOMEM;
    j->nsized = n;
    uint64_t *ids = NULL;
    size_t nids = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        query_forest_sized_t *z = &j->sized[i];
        rc = query_forest_size(&j->part.tabs[i], j->forest_version, z);
        if (rc == 0) rc = forests_hold(j, j->forests_held + z->held);
        if (rc == 0 && j->part.names_later) rc = add_dict(&ids, &nids, &cap, z->dict, z->ndict);
    }
    if (rc == 0 && j->part.names_later) {
        rc = query_load_symbol_ids(j->s->storage, j->tenant, ids, nids, j->known, j->nknown,
                                   j->part.syms);
        j->part.names_later = rc != 0;
    }
    free(ids);
    return rc;
}

#define FORESTS_TAG ((14u << 3) | 2u) /* PartialResult.forests: field 14, length-delimited */

/* The PartialResult in its place in the envelope: the message without its
 * forests as protobuf-c packs it, then each forest as a field 14 written
 * where it lies (protobuf takes a message's fields in any order). */
static void write_body(void *ctx, uint8_t *dst)
{
    serve_job_t *j = ctx;
    uint8_t *p = dst + flamedb__cluster__partial_result__pack(&j->msg, dst);
    for (size_t i = 0; i < j->nsized; i++) {
        *p++ = FORESTS_TAG;
        p += varint_put_u(p, j->sized[i].bytes);
        query_forest_write(&j->sized[i], p);
        p += j->sized[i].bytes;
    }
}

/* The envelope of the answer with the sized forests, into j->frame;
 * ERR_TOO_LARGE (nothing written) when it would not fit in a message. */
static int write_frame(serve_job_t *j, size_t max_bytes)
{
    uint8_t v[10];
    size_t bn = flamedb__cluster__partial_result__get_packed_size(&j->msg);
    for (size_t i = 0; i < j->nsized; i++)
        bn += 1 + varint_put_u(v, j->sized[i].bytes) + j->sized[i].bytes;
    j->body_bytes = bn;
    if (bn + SCATTER_ENVELOPE_ROOM > max_bytes) return ERR_TOO_LARGE;
    /* the frame is charged while it is written, as the forests' buffer was */
    int rc = forests_hold(j, j->forests_held + bn + SCATTER_ENVELOPE_ROOM);
    if (rc != 0) return rc;
    rc = cluster_wire_encode_with(MSG(PARTIAL), &j->s->ops.from, j->deadline, j->request_id, bn,
                                  write_body, j, &j->frame);
    return rc < 0 ? rc : 0;
}

static int charge(serve_job_t *j, size_t n, const char *what);

/* The share's function sums (asked with functions), three arrays charged
 * before they are made. */
static int add_functions(serve_job_t *j)
{
    size_t n = j->part.nfns,
           bytes = n * (sizeof *j->fsyms + sizeof *j->fselves + sizeof *j->ftotals);
    j->msg.functions_total = j->part.fns_total;
    if (n == 0) return 0;
    int rc = charge(j, bytes, "function sums");
    if (rc != 0) return rc;
    j->fns_held = bytes;
    j->fsyms = malloc(n * sizeof *j->fsyms);
    j->fselves = malloc(n * sizeof *j->fselves);
    j->ftotals = malloc(n * sizeof *j->ftotals);
    if (j->fsyms == NULL || j->fselves == NULL || j->ftotals == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        j->fsyms[i] = j->part.fns[i].sym;
        j->fselves[i] = j->part.fns[i].self;
        j->ftotals[i] = j->part.fns[i].total;
    }
    j->msg.n_function_syms = j->msg.n_function_selves = j->msg.n_function_totals = n;
    j->msg.function_syms = j->fsyms;
    j->msg.function_selves = j->fselves;
    j->msg.function_totals = j->ftotals;
    return 0;
}

static int build_render(serve_job_t *j)
{
    int rc = calltree_encode(j->part.tree, &j->tree);
    if (rc == 0 && answers_space(j))
        rc = add_space(j);
    else if (rc == 0 && frames_forests(j))
        rc = size_forests(j);
    else if (rc == 0 && j->part.ntabs > 0)
        rc = add_forests(j);
    if (rc != 0) return rc;
    j->msg.calltree = (ProtobufCBinaryData){j->tree.len, j->tree.data};
    if ((rc = add_symbols(j)) != 0 || (rc = add_totals(j)) != 0 || (rc = add_functions(j)) != 0)
        return rc;
    j->msg.series_count = j->part.nseries;
    j->msg.partial_spans = j->part.partial_spans;
    j->msg.spy_name = j->part.spy_name != NULL ? j->part.spy_name : "";
    return 0;
}

static int build_labels(serve_job_t *j)
{
    size_t n = j->part.nvalues;
    j->values = calloc(n ? n : 1, sizeof *j->values);
    if (j->values == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        j->values[i] =
            (ProtobufCBinaryData){strlen(j->part.values[i]), (uint8_t *)j->part.values[i]};
    j->msg.n_values = n;
    j->msg.values = j->values;
    return 0;
}

static int too_large(serve_job_t *j, size_t size, size_t max_bytes)
{
    return errmsg_set(&j->em, ERR_TOO_LARGE,
                      "the partial answer (%zu bytes or more) exceeds max-message-bytes (%zu); "
                      "narrow the selector or the time range",
                      size, max_bytes);
}

static int charge(serve_job_t *j, size_t n, const char *what);

/* The forests' buffer grows, or their encoder takes working memory beside
 * it (buf_charge): what both hold is charged while they are written; the
 * encoded answer is charged whole once built (serve_work). */
static int forests_hold(void *ctx, size_t held)
{
    serve_job_t *j = ctx;
    if (held <= j->forests_held) {
        alloc_charge_sub(&j->mem, j->forests_held - held);
        j->forests_held = held;
        return 0;
    }
    int rc = charge(j, held - j->forests_held, "forests' encoding");
    if (rc == 0) j->forests_held = held;
    return rc;
}

static int build_answer(serve_job_t *j, size_t max_bytes)
{
    buf_init(&j->tree, max_bytes);
    buf_init(&j->forests, max_bytes);
    buf_init(&j->spvalues, max_bytes);
    buf_init(&j->frame, max_bytes);
    buf_charge(&j->forests, forests_hold, j);
    buf_charge(&j->spvalues, forests_hold, j);
    int rc;
    if (j->args.kind == QUERY_KIND_PROFILE) /* a tree and its description */
        rc = (rc = build_render(j)) != 0 ? rc : build_labels(j);
    else
        rc = j->args.kind == QUERY_KIND_RENDER ? build_render(j) : build_labels(j);
    /* with frames, every answer's envelope is written here, for the pool
     * thread to send (serve_work) instead of the loop to encode and send */
    if (rc == 0 && (j->nsized > 0 || j->s->ops.send_frame != NULL)) rc = write_frame(j, max_bytes);
    sized_free(j);                       /* written, or not to be */
    buf_charge(&j->forests, NULL, NULL); /* charged whole with the answer from here */
    buf_charge(&j->spvalues, NULL, NULL);
    alloc_charge_sub(&j->mem, j->forests_held);
    j->forests_held = 0;
    if (rc != 0 && j->mem_refused) return rc; /* em says why */
    if (rc == ERR_TOO_LARGE && j->body_bytes > 0) return too_large(j, j->body_bytes, max_bytes);
    if (rc == ERR_TOO_LARGE)
        return too_large(j, j->tree.len + j->forests.len + j->spvalues.len, max_bytes);
    if (rc != 0) return errmsg_set(&j->em, rc, "building the partial answer: %s", err_message(rc));
    if (j->frame.len > 0) return 0; /* its size checked by write_frame */
    size_t size = flamedb__cluster__partial_result__get_packed_size(&j->msg);
    return size + SCATTER_ENVELOPE_ROOM > max_bytes ? too_large(j, size, max_bytes) : 0;
}

/* Forgets a built answer (its arrays and encodings), for a second build. */
static void answer_clear(serve_job_t *j)
{
    buf_free(&j->tree);
    buf_free(&j->forests);
    buf_free(&j->spvalues);
    buf_free(&j->frame);
    sized_free(j);
    j->body_bytes = 0;
    free(j->fdata);
    free(j->syms);
    free(j->symp);
    free(j->tp);
    free(j->tpp);
    free(j->pushes);
    free(j->values);
    j->pushes = NULL;
    j->fdata = NULL;
    j->syms = NULL;
    j->symp = NULL;
    j->tp = NULL;
    j->tpp = NULL;
    j->values = NULL;
    functions_free(j);
    Flamedb__Cluster__PartialResult *m = &j->msg;
    m->calltree = (ProtobufCBinaryData){0, NULL};
    m->n_forests = m->n_symbols = m->n_totals = m->n_values = 0;
    m->n_function_syms = m->n_function_selves = m->n_function_totals = 0;
    m->functions_total = 0;
    m->forests = m->values = NULL;
    m->space = NULL;
    m->symbols = NULL;
    m->totals = NULL;
    j->em.text[0] = 0;
}

static int run_share(serve_job_t *j);

/* The answer; forests that do not fit in a message are merged first, so
 * the share answers what it answered before there were forests. An answer
 * by id holds the union's values alone, no forest to merge: the share runs
 * again by forests first. */
static int build_answer_fits(serve_job_t *j, size_t max_bytes)
{
    int rc = build_answer(j, max_bytes);
    if (rc != ERR_TOO_LARGE || j->part.ntabs == 0) return rc;
    answer_clear(j);
    if (answers_space(j)) {
        j->args.space = 0;
        if ((rc = run_share(j)) != 0) return rc;
        if ((rc = build_answer(j, max_bytes)) != ERR_TOO_LARGE || j->part.ntabs == 0) return rc;
        answer_clear(j);
    }
    rc = query_partial_merge_forests(&j->part, &j->em);
    if (rc == 0 && j->part.names_later) { /* the names of the merge's symbols */
        rc = query_load_symbols(j->s->storage, j->tenant, j->part.tree, j->part.syms);
        if (rc != 0) return errmsg_set(&j->em, rc, "loading symbols: %s", err_message(rc));
        j->part.names_later = 0;
    }
    return rc != 0 ? rc : build_answer(j, max_bytes);
}

/* Charges n more bytes of the share to query-memory-bytes; over it the
 * share is refused as unavailable, so the coordinator asks another replica
 * (or, with none left, answers 503 naming this node), and what it built is
 * freed at once. */
static int charge(serve_job_t *j, size_t n, const char *what)
{
    if (alloc_charge_add(&j->mem, n) == 0) return 0;
    j->mem_refused = 1;
    return errmsg_set(&j->em, ERR_UNAVAILABLE,
                      "server busy: the partial %s (%zu bytes) would pass query-memory-bytes "
                      "(%zu bytes) on this node",
                      what, n, j->mem.b->limit);
}

/* The share's partial into j->part (one from an earlier run given back
 * first), charged once made. */
static int run_share(serve_job_t *j)
{
    if (j->part_charged > 0) {
        alloc_charge_sub(&j->mem, j->part_charged);
        j->part_charged = 0;
    }
    query_partial_free(&j->part);
    query_stop_t stop = {&j->cancel, (int64_t)j->deadline};
    j->args.stop = &stop;
    j->args.charge = &j->mem; /* the merge's working memory, given back when it ends */
    int rc =
        query_partial_run(j->s->storage, j->tenant, &j->args, &j->s->o.limits, &j->part, &j->em);
    j->stopped = rc != 0 && query_stop_check(&stop, NULL) != 0;
    j->args.stop = NULL;
    j->args.charge = NULL;
    j->mem_refused |= rc == ERR_UNAVAILABLE;
    if (j->stopped) return ERR_TIMEOUT; /* nobody waits for it: no answer */
    size_t bytes = query_partial_bytes(&j->part);
    if (rc == 0) rc = charge(j, bytes, "result");
    if (rc == 0) j->part_charged = bytes;
    return rc;
}

static void serve_work(workq_job_t *w)
{
    serve_job_t *j = w->data;
    if (scatter_unix_ms(j->s) >= j->deadline) {
        j->rc = errmsg_set(&j->em, ERR_TIMEOUT, "the query's deadline passed before it ran");
        return;
    }
    j->rc = run_share(j);
    if (j->rc == 0) j->rc = build_answer_fits(j, j->s->o.max_message_bytes);
    if (j->rc == 0)
        j->rc = charge(j,
                       j->tree.len + j->spvalues.len + j->forests.len +
                           (j->frame.len > 0
                                ? j->frame.len
                                : flamedb__cluster__partial_result__get_packed_size(&j->msg)),
                       "encoded answer");
    if (j->rc == 0 && j->frame.len > 0 && j->routed)
        j->sent = j->s->ops.send_frame_now(j->s->ops.ctx, &j->route, &j->frame);
}

/* ---------- answering (loop) ---------- */

static void init_reply(Flamedb__Cluster__PartialResult *m, const char *tenant, uint64_t id,
                       uint64_t ring_version)
{
    flamedb__cluster__partial_result__init(m);
    m->protocol_version = CLUSTER_PROTOCOL_VERSION;
    m->tenant = (char *)tenant;
    m->request_id = id;
    m->ring_version = ring_version;
}

static void send_reply(scatter_t *s, const char *to, uint64_t deadline,
                       Flamedb__Cluster__PartialResult *m)
{
    int rc = s->ops.send(s->ops.ctx, to, MSG(PARTIAL), deadline, &m->base);
    if (rc != 0)
        log_debug("scatter", "cannot answer %s (request %llu): %s", to,
                  (unsigned long long)m->request_id, err_message(rc));
}

/* An answer whose envelope was written on the pool (write_frame). */
static void send_frame(scatter_t *s, const serve_job_t *j)
{
    int rc = s->ops.send_frame(s->ops.ctx, j->sender, j->deadline, &j->frame);
    if (rc != 0)
        log_debug("scatter", "cannot answer %s (request %llu): %s", j->sender,
                  (unsigned long long)j->request_id, err_message(rc));
}

static void reply_error(scatter_t *s, const cluster_msg_t *msg, int rc, const char *reason)
{
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    Flamedb__Cluster__PartialResult m;
    init_reply(&m, q->tenant, q->request_id, q->ring_version);
    m.status = rc;
    m.reason = (char *)reason;
    s->stats.serve_refused++;
    send_reply(s, msg->env->sender_id, q->deadline_unix_ms, &m);
}

static void serve_done(workq_job_t *w, int status)
{
    serve_job_t *j = w->data;
    scatter_t *s = j->s;
    s->nserving--;
    list_remove(&j->link);
    /* stopped while running, or dropped before it ran by a cancel message */
    s->stats.shares_stopped +=
        j->stopped || (status != 0 && atomic_load_explicit(&j->cancel, memory_order_relaxed));
    s->stats.serve_memory_refused += j->mem_refused;
    if (status != 0 && j->rc == 0)
        j->rc = atomic_load_explicit(&j->cancel, memory_order_relaxed)
                    ? ERR_TIMEOUT /* its coordinator gave up: no answer */
                    : errmsg_set(&j->em, ERR_UNAVAILABLE, "cancelled");
    if (!s->closing && j->rc != ERR_TIMEOUT) {
        if (j->rc != 0) {
            init_reply(&j->msg, j->tenant, j->request_id, j->ring_version);
            j->msg.status = j->rc;
            j->msg.reason = j->em.text;
            s->stats.serve_refused++;
        } else {
            s->stats.served++;
        }
        if (j->rc == 0 && j->frame.len > 0 && j->sent == 1)
            s->stats.served_from_pool++;
        else if (j->rc == 0 && j->frame.len > 0 && j->sent == 0)
            send_frame(s, j);
        else if (j->rc == 0 && j->frame.len > 0)
            log_debug("scatter", "cannot answer %s (request %llu): %s", j->sender,
                      (unsigned long long)j->request_id, err_message(j->sent));
        else
            send_reply(s, j->sender, j->deadline, &j->msg);
    }
    job_free(j);
}

static query_kind_t kind_of(Flamedb__Cluster__QueryKind k)
{
    if (k == Q_KIND(MERGE)) return QUERY_KIND_RENDER;
    if (k == Q_KIND(LABEL_NAMES)) return QUERY_KIND_LABEL_NAMES;
    if (k == Q_KIND(LABEL_VALUES)) return QUERY_KIND_LABEL_VALUES;
    if (k == Q_KIND(LABEL_SHARES)) return QUERY_KIND_LABEL_SHARES;
    if (k == Q_KIND(PROFILES)) return QUERY_KIND_PROFILES;
    if (k == Q_KIND(PROFILE)) return QUERY_KIND_PROFILE;
    return 0;
}

/* The plan's finest resolution index, or -1 when out of range. */
static int min_res_of(uint32_t min_resolution)
{
    return min_resolution < STORAGE_RESOLUTION_COUNT ? (int)min_resolution : -1;
}

/* Copies what the job needs from the request (borrowed for this call). */
static int job_from(serve_job_t *j, const cluster_msg_t *msg)
{
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    snprintf(j->sender, sizeof j->sender, "%s", msg->env->sender_id);
    snprintf(j->tenant, sizeof j->tenant, "%s", q->tenant);
    j->request_id = q->request_id;
    j->deadline = q->deadline_unix_ms;
    j->ring_version = q->ring_version;
    j->args.kind = kind_of(q->kind);
    j->args.min_res = min_res_of(q->min_resolution);
    j->args.from_s = q->from_ms / 1000;
    j->args.until_s = q->until_ms / 1000;
    j->args.timeline = j->args.kind == QUERY_KIND_RENDER && q->timeline;
    j->args.forests = j->args.kind == QUERY_KIND_RENDER && q->forests;
    j->args.fns = j->args.kind == QUERY_KIND_RENDER && q->functions; /* not if averaged */
    j->args.names_later = j->args.forests; /* loaded from the forests' dictionaries */
    j->args.remote = 1;
    /* the newest both read: a newer coordinator's version is read as this node's newest */
    j->forest_version = q->forest_version >= QUERY_FOREST_V5   ? QUERY_FOREST_V5
                        : q->forest_version >= QUERY_FOREST_V4 ? QUERY_FOREST_V4
                        : q->forest_version >= QUERY_FOREST_V3 ? QUERY_FOREST_V3
                                                               : QUERY_FOREST_V2;
    j->args.parents = j->args.forests && j->forest_version != QUERY_FOREST_V2;
    j->args.symnos = j->args.forests; /* every forest is encoded */
    j->args.limit = q->limit;         /* profiles: the partial refuses 0 or past its maximum */
    /* an older coordinator reads only the summed entries */
    j->args.counts = j->args.kind == QUERY_KIND_LABEL_SHARES && q->share_counts;
    j->args.pushes = j->args.counts && q->share_pushes;
    if (j->args.forests && q->n_known_symbols > 0) {
        j->known = malloc(q->n_known_symbols * sizeof *j->known);
        if (j->known == NULL) return ERR_NOMEM;
        memcpy(j->known, q->known_symbols, q->n_known_symbols * sizeof *j->known);
        j->nknown = q->n_known_symbols;
    }
    if (j->args.forests && q->space_version >= 1) { /* answered by id when it can */
        j->space_scaled = q->space_version >= 2;
        size_t n = q->n_known_spaces < SCATTER_SPACES_KNOWN_MAX ? q->n_known_spaces
                                                                : SCATTER_SPACES_KNOWN_MAX;
        for (size_t i = 0; i < n; i++)
            j->kspaces[i] =
                (storage_space_known_t){q->known_spaces[i]->nonce, q->known_spaces[i]->count};
        j->args.space = 1;
        j->args.known_spaces = j->kspaces;
        j->args.nknown_spaces = n;
    }
    j->selector = strdup(q->selector);
    j->label = strdup(q->label_name);
    j->ranges = calloc(q->n_ranges ? q->n_ranges : 1, sizeof *j->ranges);
    if (j->selector == NULL || j->label == NULL || j->ranges == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < q->n_ranges; i++)
        j->ranges[i] = (query_range_t){q->ranges[i]->start, q->ranges[i]->end};
    j->args.selector = j->selector;
    j->args.label = j->label;
    j->args.ranges = j->ranges;
    j->args.nranges = q->n_ranges;
    init_reply(&j->msg, j->tenant, j->request_id, j->ring_version);
    j->served = calloc(q->n_ranges ? q->n_ranges : 1, sizeof *j->served);
    j->servedp = calloc(q->n_ranges ? q->n_ranges : 1, sizeof *j->servedp);
    if (j->served == NULL || j->servedp == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < q->n_ranges; i++) {
        flamedb__cluster__token_range__init(&j->served[i]);
        j->served[i].start = q->ranges[i]->start;
        j->served[i].end = q->ranges[i]->end;
        j->servedp[i] = &j->served[i];
    }
    j->msg.n_served = q->n_ranges;
    j->msg.served = j->servedp;
    return 0;
}

/* The ring slot of a CANCEL msg's sender sent for request_id before its
 * QUERY came, or NULL (a slot whose deadline passed is free). */
static scatter_early_cancel_t *early_find(scatter_t *s, const cluster_msg_t *msg,
                                          uint64_t request_id)
{
    uint64_t now = scatter_unix_ms(s);
    for (size_t i = 0; i < SCATTER_EARLY_CANCELS; i++) {
        scatter_early_cancel_t *e = &s->early[i];
        if (e->request_id == request_id && e->deadline_unix_ms > now &&
            strcmp(e->sender, msg->env->sender_id) == 0)
            return e;
    }
    return NULL;
}

/* A CANCEL that found no share: kept until its deadline (the oldest one
 * makes room), for the QUERY that may still come. */
static void early_remember(scatter_t *s, const cluster_msg_t *msg)
{
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    if (q->deadline_unix_ms <= scatter_unix_ms(s)) return; /* its QUERY would not run */
    scatter_early_cancel_t *e = &s->early[s->early_next];
    s->early_next = (s->early_next + 1) % SCATTER_EARLY_CANCELS;
    e->request_id = q->request_id;
    e->deadline_unix_ms = q->deadline_unix_ms;
    snprintf(e->sender, sizeof e->sender, "%s", msg->env->sender_id);
}

/* A coordinator gave up on a share it asked for: stop it (not answered), or
 * remember the cancel when the share has not come yet. */
static void on_cancel(scatter_t *s, const cluster_msg_t *msg)
{
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    for (list_node_t *n = list_first(&s->serving); n != NULL; n = list_next(&s->serving, n)) {
        serve_job_t *j = LIST_ENTRY(n, serve_job_t, link);
        if (j->request_id != q->request_id || strcmp(j->sender, msg->env->sender_id) != 0) continue;
        atomic_store_explicit(&j->cancel, 1, memory_order_relaxed);
        workq_cancel(&j->w); /* not started yet: dropped */
        return;
    }
    early_remember(s, msg);
}

/* A QUERY whose CANCEL came first: refused at once, without an answer (its
 * coordinator gave up on it), counted as a share cancelled before it ran. */
static int cancelled_before(scatter_t *s, const cluster_msg_t *msg)
{
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    scatter_early_cancel_t *e = early_find(s, msg, q->request_id);
    if (e == NULL) return 0;
    e->deadline_unix_ms = 0; /* request ids are not reused: the slot is free */
    s->stats.shares_stopped++;
    log_debug("scatter", "request %llu from %s was cancelled before it came",
              (unsigned long long)q->request_id, msg->env->sender_id);
    return 1;
}

void scatter_on_query(void *ctx, cluster_msg_t *msg)
{
    scatter_t *s = ctx;
    const Flamedb__Cluster__QueryRequest *q = (const void *)msg->body;
    if (s->closing) return;
    if (q->kind == Q_KIND(CANCEL)) {
        on_cancel(s, msg);
        return;
    }
    if (cancelled_before(s, msg)) return;
    if (kind_of(q->kind) == 0) {
        reply_error(s, msg, ERR_UNSUPPORTED, "query kind not served by this node");
        return;
    }
    if (min_res_of(q->min_resolution) < 0 || q->from_ms % 1000 != 0 || q->until_ms % 1000 != 0) {
        reply_error(s, msg, ERR_INVALID_ARGUMENT, "query plan is not on a resolution grid");
        return;
    }
    if (s->nserving >= s->o.max_serving) {
        reply_error(s, msg, ERR_UNAVAILABLE, "too many partial queries in progress");
        return;
    }
    serve_job_t *j = calloc(1, sizeof *j);
    if (j == NULL || job_from(j, msg) != 0) {
        if (j != NULL) job_free(j);
        reply_error(s, msg, ERR_NOMEM, "out of memory");
        return;
    }
    j->s = s;
    j->routed = s->ops.route != NULL && s->ops.send_frame_now != NULL &&
                s->ops.route(s->ops.ctx, j->sender, &j->route) == ERR_OK;
    alloc_charge_init(&j->mem, &s->mem);
    j->w.data = j;
    j->w.deadline_unix_ms = j->deadline; /* the coordinator stops waiting then */
    if (workq_submit(s->workq, WORKQ_QUERY, &j->w, serve_work, serve_done) != 0) {
        job_free(j);
        reply_error(s, msg, ERR_UNAVAILABLE, "cannot queue work");
        return;
    }
    s->nserving++;
    list_push_back(&s->serving, &j->link);
}
