/* cluster_wire.c — the envelope of intra-cluster messages: encoding, and
 * decoding that checks every field a handler would otherwise trust
 * (wire_int.h, common/proto/cluster.proto). Gossip bodies are checked by
 * the ring (ring_gossip_receive).
 *
 * protobuf-c allocates while unpacking in proportion to the input, but a
 * two-byte entry can become a struct of a hundred bytes: every unpack
 * allocates from the message's arena, bounded by CLUSTER_WIRE_DECODE_FACTOR
 * times the bytes unpacked. The count limits bound the work a handler does
 * afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "common/labels.h"
#include "common/varint.h"
#include "node/cluster/wire_int.h"
#include "ring/ring.h"

#define T(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x
#define Q(x) FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_##x

void cluster_wire_limits_default(cluster_wire_limits_t *l)
{
    l->max_bytes = 64u << 20;
    l->max_series = 10000;
    l->max_symbols = 1u << 20;
    l->max_ranges = RING_MAX_NODES * RING_MAX_TOKENS;
    l->max_values = 1u << 20;
    l->max_string = 64u << 10;
}

static int envelope_append(const Flamedb__Cluster__Envelope *env, buf_t *out)
{
    size_t n = flamedb__cluster__envelope__get_packed_size(env);
    int rc = buf_reserve(out, n);
    if (rc == 0) {
        flamedb__cluster__envelope__pack(env, out->data + out->len);
        out->len += n;
        out->data[out->len] = 0;
    }
    return rc;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The MAC covers every field a receiver acts on, each length-prefixed so no
 * two envelopes share an input: version, type, deadline, request id, then
 * cluster, sender and body. */
static int envelope_mac(const digest_key_t *key, const Flamedb__Cluster__Envelope *e,
                        uint8_t out[DIGEST_SHA256_BYTES])
{
    static const char domain[] = "flamedb cluster envelope";
    const char *cluster = e->cluster ? e->cluster : "";
    const char *sender = e->sender_id ? e->sender_id : "";
    uint8_t head[7 * 8];
    put_u64(head, e->protocol_version);
    put_u64(head + 8, (uint64_t)e->type);
    put_u64(head + 16, e->deadline_unix_ms);
    put_u64(head + 24, e->request_id);
    put_u64(head + 32, strlen(cluster));
    put_u64(head + 40, strlen(sender));
    put_u64(head + 48, e->body.len);
    digest_part_t parts[] = {{domain, sizeof domain},
                             {head, sizeof head},
                             {cluster, strlen(cluster)},
                             {sender, strlen(sender)},
                             {e->body.data, e->body.len}};
    return digest_hmac(key, parts, sizeof parts / sizeof parts[0], out);
}

static int encode_envelope(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                           uint64_t deadline_unix_ms, uint64_t request_id, ProtobufCBinaryData body,
                           buf_t *out)
{
    Flamedb__Cluster__Envelope env = FLAMEDB__CLUSTER__ENVELOPE__INIT;
    env.protocol_version = CLUSTER_PROTOCOL_VERSION;
    env.type = type;
    env.cluster = (char *)from->cluster;
    env.sender_id = (char *)from->node_id;
    env.deadline_unix_ms = deadline_unix_ms;
    env.request_id = request_id;
    env.body = body;
    uint8_t mac[DIGEST_SHA256_BYTES];
    if (from->key != NULL) {
        int rc = envelope_mac(from->key, &env, mac);
        if (rc < 0) return rc;
        env.auth = (ProtobufCBinaryData){sizeof mac, mac};
    }
    return envelope_append(&env, out);
}

int cluster_wire_encode_bytes(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                              uint64_t deadline_unix_ms, const ProtobufCBinaryData *body,
                              buf_t *out)
{
    return encode_envelope(type, from, deadline_unix_ms, 0, *body, out);
}

/* The body's request_id field, or 0 when its message has none. */
static uint64_t request_id_of(const ProtobufCMessage *body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(body->descriptor, "request_id");
    if (f == NULL || f->type != PROTOBUF_C_TYPE_UINT64 || f->label != PROTOBUF_C_LABEL_NONE)
        return 0;
    uint64_t id;
    memcpy(&id, (const uint8_t *)body + f->offset, sizeof id);
    return id;
}

/* The envelope's fields before its body (1-5) and after it (7, 8), apart:
 * protobuf-c writes a message's fields in field order and leaves out those
 * at their defaults, so head, then the body field, then tail are the bytes
 * of the whole envelope. */
static void envelope_halves(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                            uint64_t deadline_unix_ms, uint64_t request_id,
                            Flamedb__Cluster__Envelope *head, Flamedb__Cluster__Envelope *tail)
{
    *head = (Flamedb__Cluster__Envelope)FLAMEDB__CLUSTER__ENVELOPE__INIT;
    *tail = (Flamedb__Cluster__Envelope)FLAMEDB__CLUSTER__ENVELOPE__INIT;
    head->protocol_version = CLUSTER_PROTOCOL_VERSION;
    head->type = type;
    head->cluster = (char *)from->cluster;
    head->sender_id = (char *)from->node_id;
    head->deadline_unix_ms = deadline_unix_ms;
    tail->request_id = request_id;
}

#define BODY_TAG ((6u << 3) | 2u) /* Envelope.body: field 6, length-delimited */

/* The body is packed once, in its place in out: packing it apart and
 * copying it into the envelope cost a forest answer (megabytes) a malloc
 * and a copy more. The bytes are those of packing the whole envelope. */
int cluster_wire_encode_with(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                             uint64_t deadline_unix_ms, uint64_t request_id, size_t bn,
                             cluster_wire_body_fn write, void *ctx, buf_t *out)
{
    Flamedb__Cluster__Envelope head, tail;
    envelope_halves(type, from, deadline_unix_ms, request_id, &head, &tail);
    uint8_t mac[DIGEST_SHA256_BYTES] = {0};
    if (from->key != NULL) tail.auth = (ProtobufCBinaryData){sizeof mac, mac};
    uint8_t lenv[10];
    size_t ln = varint_put_u(lenv, bn);
    size_t hn = flamedb__cluster__envelope__get_packed_size(&head);
    size_t fn = bn > 0 ? 1 + ln + bn : 0; /* proto3 leaves an empty body out */
    size_t tn = flamedb__cluster__envelope__get_packed_size(&tail);
    if (hn + fn + tn < fn) return ERR_TOO_LARGE;
    int rc = buf_reserve(out, hn + fn + tn);
    if (rc < 0) return rc;
    uint8_t *p = out->data + out->len;
    flamedb__cluster__envelope__pack(&head, p);
    if (bn > 0) {
        p[hn] = BODY_TAG;
        memcpy(p + hn + 1, lenv, ln);
        write(ctx, p + hn + 1 + ln);
    }
    if (from->key != NULL) {
        Flamedb__Cluster__Envelope whole = head;
        whole.body = (ProtobufCBinaryData){bn, p + hn + 1 + ln};
        whole.request_id = tail.request_id;
        if ((rc = envelope_mac(from->key, &whole, mac)) < 0) return rc;
    }
    flamedb__cluster__envelope__pack(&tail, p + hn + fn);
    out->len += hn + fn + tn;
    out->data[out->len] = 0;
    return ERR_OK;
}

static void pack_body(void *ctx, uint8_t *at)
{
    protobuf_c_message_pack(ctx, at);
}

int cluster_wire_encode(Flamedb__Cluster__MsgType type, const cluster_wire_sender_t *from,
                        uint64_t deadline_unix_ms, const ProtobufCMessage *body, buf_t *out)
{
    return cluster_wire_encode_with(type, from, deadline_unix_ms, request_id_of(body),
                                    protobuf_c_message_get_packed_size(body), pack_body,
                                    (void *)body, out);
}

static int check_tenant(const char *t, errmsg_t *em)
{
    size_t n = strlen(t);
    if (n == 0 || n > RING_TENANT_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "message: tenant length %zu not in 1..%d", n,
                          RING_TENANT_MAX);
    return 0;
}

static int check_str(const char *what, const char *s, size_t max, errmsg_t *em)
{
    if (strlen(s) > max)
        return errmsg_set(em, ERR_TOO_LARGE, "message: %s longer than %zu bytes", what, max);
    return 0;
}

static int check_symbols(Flamedb__Cluster__Symbol **v, size_t n, const cluster_wire_limits_t *l,
                         errmsg_t *em)
{
    if (n > l->max_symbols)
        return errmsg_set(em, ERR_TOO_LARGE, "message: %zu symbols, at most %zu", n,
                          l->max_symbols);
    for (size_t i = 0; i < n; i++)
        if (v[i]->name.len > l->max_string || v[i]->file.len > l->max_string)
            return errmsg_set(em, ERR_TOO_LARGE, "message: symbol %zu too long", i);
    return 0;
}

static int check_ranges(Flamedb__Cluster__TokenRange **v, size_t n, size_t min,
                        const cluster_wire_limits_t *l, errmsg_t *em)
{
    if (n < min || n > l->max_ranges)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "message: %zu token ranges, want %zu..%zu", n,
                          min, l->max_ranges);
    return 0;
}

/* The series id must be the hash of the labels it comes with: a replica
 * stores what it is told, so a mismatch would file samples under another
 * series. */
static int check_series(const Flamedb__Cluster__SeriesPart *s, size_t i, errmsg_t *em)
{
    labels_t *lb = NULL;
    if (s->labels.len == 0 || labels_decode(s->labels.data, s->labels.len, &lb) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: series %zu: bad labels", i);
    uint64_t id = labels_hash(lb);
    labels_free(lb);
    if (id != s->series_id)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: series %zu: id is not the labels' hash",
                          i);
    if (s->calltree.len == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: series %zu: empty call tree", i);
    for (size_t k = 0; k < s->n_spans; k++)
        if (s->spans[k]->kind < 1 || s->spans[k]->kind > 2 ||
            (s->spans[k]->calltree.len == 0) != s->spans[k]->unknown)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: series %zu: bad span %zu", i, k);
    return 0;
}

/* What every request carries: a tenant, this protocol version, a deadline. */
static int check_request(const char *what, const char *tenant, uint32_t protocol_version,
                         uint64_t deadline_unix_ms, errmsg_t *em)
{
    int rc = check_tenant(tenant, em);
    if (rc < 0) return rc;
    if (protocol_version != CLUSTER_PROTOCOL_VERSION || deadline_unix_ms == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "%s: protocol version or deadline missing",
                          what);
    return 0;
}

static int check_write(const Flamedb__Cluster__WriteRequest *w, const cluster_wire_limits_t *l,
                       errmsg_t *em)
{
    int rc = check_request("write", w->tenant, w->protocol_version, w->deadline_unix_ms, em);
    if (rc < 0) return rc;
    if (w->profile_id.len != 16)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: profile id is %zu bytes, not 16",
                          w->profile_id.len);
    if (w->notice && (w->n_series != 0 || w->n_symbols != 0 || w->n_missed_by == 0))
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "write: a notice carries no series and names a replica");
    if (!w->notice && (w->n_series == 0 || w->n_series > l->max_series))
        return errmsg_set(em, ERR_TOO_LARGE, "write: %zu series, want 1..%zu", w->n_series,
                          l->max_series);
    for (size_t i = 0; i < w->n_series; i++)
        if ((rc = check_series(w->series[i], i, em)) < 0) return rc;
    if (w->n_missed_by > RING_MAX_RF)
        return errmsg_set(em, ERR_TOO_LARGE, "write: %zu replicas missed, at most %d",
                          w->n_missed_by, RING_MAX_RF);
    for (size_t i = 0; i < w->n_missed_by; i++)
        if (w->missed_by[i][0] == 0 || strlen(w->missed_by[i]) > RING_NODE_ID_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "write: missed replica %zu: bad node id",
                              i);
    return check_symbols(w->symbols, w->n_symbols, l, em);
}

static int check_ack(const Flamedb__Cluster__WriteAck *a, const cluster_wire_limits_t *l,
                     errmsg_t *em)
{
    int rc = check_tenant(a->tenant, em);
    if (rc < 0) return rc;
    if (a->profile_id.len != 16 || a->status > 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "ack: bad profile id or status");
    return check_str("reason", a->reason, l->max_string, em);
}

static int check_query(const Flamedb__Cluster__QueryRequest *q, const cluster_wire_limits_t *l,
                       errmsg_t *em)
{
    int rc = check_request("query", q->tenant, q->protocol_version, q->deadline_unix_ms, em);
    if (rc < 0) return rc;
    if (q->kind < Q(MERGE) || q->kind > Q(CANCEL))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "query: unknown kind %d", (int)q->kind);
    if (q->kind == Q(CANCEL)) return check_ranges(q->ranges, q->n_ranges, 0, l, em);
    if ((q->kind == Q(LABEL_VALUES) || q->kind == Q(LABEL_SHARES)) && q->label_name[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "query: label values without a label name");
    if (q->kind == Q(PROFILE) && q->label_name[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "query: a profile without its id");
    if (q->from_ms > q->until_ms)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "query: from after until");
    if ((rc = check_str("selector", q->selector, l->max_string, em)) < 0 ||
        (rc = check_str("label name", q->label_name, l->max_string, em)) < 0)
        return rc;
    return check_ranges(q->ranges, q->n_ranges, 1, l, em);
}

static int check_partial(const Flamedb__Cluster__PartialResult *p, const cluster_wire_limits_t *l,
                         errmsg_t *em)
{
    int rc = check_tenant(p->tenant, em);
    if (rc < 0) return rc;
    if (p->status > 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "partial: bad status");
    if (p->n_values > l->max_values || p->n_totals > l->max_values || p->n_forests > l->max_values)
        return errmsg_set(em, ERR_TOO_LARGE, "partial: too many values");
    for (size_t i = 0; i < p->n_values; i++)
        if (p->values[i].len > l->max_string)
            return errmsg_set(em, ERR_TOO_LARGE, "partial: value %zu too long", i);
    if ((rc = check_str("spy name", p->spy_name, l->max_string, em)) < 0) return rc;
    if ((rc = check_str("reason", p->reason, l->max_string, em)) < 0 ||
        (rc = check_symbols(p->symbols, p->n_symbols, l, em)) < 0)
        return rc;
    return check_ranges(p->served, p->n_served, 0, l, em);
}

/* ---------- anti-entropy ---------- */

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

static int check_seen_entry(const Flamedb__Cluster__SeenEntry *e, size_t i, errmsg_t *em)
{
    if (e == NULL) return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: entry %zu missing", i);
    int rc = check_tenant(e->tenant, em);
    if (rc < 0) return rc;
    if (e->profile_id.len != 16)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: entry %zu: profile id is %zu bytes", i,
                          e->profile_id.len);
    return 0;
}

/* A tree's descent (stream protocol 4): a fanout a power of two up to the
 * tree's leaves, a bit for each of its buckets. */
static int check_tree_request(const Flamedb__Cluster__RepairRequest *q, errmsg_t *em)
{
    if (q->tree_fanout == 0 && q->tree_buckets.len == 0) return 0;
    uint32_t f = q->tree_fanout;
    if (f == 0 || f > CLUSTER_TREE_FANOUT_MAX || (f & (f - 1)) != 0 ||
        q->tree_buckets.len != (f + 7) / 8)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "repair: a tree's descent of fanout %u with %zu bytes of buckets", f,
                          q->tree_buckets.len);
    return 0;
}

static int check_seen_entries(Flamedb__Cluster__SeenEntry **v, size_t n, errmsg_t *em)
{
    if (n > CLUSTER_REPAIR_MAX_ENTRIES)
        return errmsg_set(em, ERR_TOO_LARGE, "repair: %zu entries, at most %d", n,
                          CLUSTER_REPAIR_MAX_ENTRIES);
    for (size_t i = 0; i < n; i++) {
        int rc = check_seen_entry(v[i], i, em);
        if (rc < 0) return rc;
    }
    return 0;
}

static int check_repair(const Flamedb__Cluster__RepairRequest *q, const cluster_wire_limits_t *l,
                        errmsg_t *em)
{
    if (q->protocol_version != CLUSTER_PROTOCOL_VERSION || q->deadline_unix_ms == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: protocol version or deadline missing");
    if (q->from_s >= q->until_s && (q->kind == RK(DIGEST) || q->kind == RK(IDS)))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: empty time span");
    if (q->profiles_from_s != 0 && q->profiles_from_s >= q->until_s)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: empty profile time span");
    switch (q->kind) {
    case RK(DIGEST):
        if (q->bucket_s <= 0 || (q->until_s - q->from_s) / q->bucket_s > CLUSTER_REPAIR_MAX_BUCKETS)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: bucket width %lld s",
                              (long long)q->bucket_s);
        return check_ranges(q->ranges, q->n_ranges, 1, l, em);
    case RK(IDS):
        if (q->lo > q->hi || q->limit == 0 || q->limit > CLUSTER_REPAIR_MAX_ENTRIES)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: bad interval or limit");
        return q->after != NULL ? check_seen_entry(q->after, 0, em) : 0;
    case RK(RUN):
        return 0;
    case RK(DONE):
        if (q->started_unix_ms == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: a done without its start");
        return 0;
    case RK(FETCH):
        if (q->n_entries == 0)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: fetch of no entries");
        return check_seen_entries(q->entries, q->n_entries, em);
    case RK(STREAM):
    case RK(SPANS):
    case RK(STREAM_CHECK):
        if (q->lo > q->hi || q->after_key.len > CLUSTER_STREAM_MAX_KEY)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: bad stream interval or key");
        if (q->sum_buckets > CLUSTER_SUM_BUCKETS_MAX)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: %u sum buckets", q->sum_buckets);
        return check_tree_request(q, em);
    default:
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair: unknown kind %d", (int)q->kind);
    }
}

/* A tree look's answer: a fanout's digests, its buckets named below it. */
static int check_tree_answer(const Flamedb__Cluster__RepairAnswer *a, errmsg_t *em)
{
    size_t f = a->n_tree_digests;
    if (f > CLUSTER_TREE_FANOUT_MAX || (f & (f - 1)) != 0 || a->n_tree_inexact > f)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: a tree of %zu buckets", f);
    for (size_t i = 0; i < a->n_tree_inexact; i++)
        if (a->tree_inexact[i] >= f)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: a tree bucket %u of %zu",
                              a->tree_inexact[i], f);
    return 0;
}

static int check_profiles(Flamedb__Cluster__SeenEntry **v, size_t n, errmsg_t *em)
{
    if (n > CLUSTER_STREAM_MAX_PROFILES)
        return errmsg_set(em, ERR_TOO_LARGE, "stream: %zu profiles in a window", n);
    for (size_t i = 0; i < n; i++) {
        int rc = check_seen_entry(v[i], i, em);
        if (rc < 0) return rc;
    }
    return 0;
}

static int check_windows(const Flamedb__Cluster__RepairAnswer *a, const cluster_wire_limits_t *l,
                         errmsg_t *em)
{
    if (a->n_windows > CLUSTER_REPAIR_MAX_ENTRIES)
        return errmsg_set(em, ERR_TOO_LARGE, "stream: %zu windows", a->n_windows);
    for (size_t i = 0; i < a->n_windows; i++) {
        const Flamedb__Cluster__StreamWindow *w = a->windows[i];
        if (a->summary_hashes) { /* a key's tail and a hash: the key names the rest */
            if (w == NULL || w->key.len == 0 || w->key_shared > CLUSTER_STREAM_MAX_KEY ||
                w->key.len > CLUSTER_STREAM_MAX_KEY - w->key_shared)
                return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: hashed summary %zu malformed",
                                  i);
            continue;
        }
        int rc = w ? check_tenant(w->tenant, em) : ERR_INVALID_ARGUMENT;
        if (rc < 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: window %zu", i);
        if (w->res >= 5 || w->key.len == 0 || w->key.len > CLUSTER_STREAM_MAX_KEY ||
            w->n_untreed_totals != w->n_untreed)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: window %zu malformed", i);
        if ((rc = check_profiles(w->kept, w->n_kept, em)) < 0 ||
            (rc = check_profiles(w->untreed, w->n_untreed, em)) < 0)
            return rc;
    }
    int rc = check_tree_answer(a, em);
    if (rc < 0) return rc;
    if (a->n_sums > 5 * CLUSTER_SUM_BUCKETS_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: %zu sums", a->n_sums);
    if (a->n_spans > CLUSTER_REPAIR_MAX_ENTRIES)
        return errmsg_set(em, ERR_TOO_LARGE, "stream: %zu span trees", a->n_spans);
    for (size_t i = 0; i < a->n_spans; i++) {
        const Flamedb__Cluster__StreamSpan *p = a->spans[i];
        int rc = p ? check_tenant(p->tenant, em) : ERR_INVALID_ARGUMENT;
        if (rc < 0 || p->key.len == 0 || p->key.len > CLUSTER_STREAM_MAX_KEY)
            return errmsg_set(em, ERR_INVALID_ARGUMENT, "stream: span tree %zu malformed", i);
    }
    return check_symbols(a->symbols, a->n_symbols, l, em);
}

static int check_repair_answer(const Flamedb__Cluster__RepairAnswer *a,
                               const cluster_wire_limits_t *l, errmsg_t *em)
{
    if (a->status > 0) return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair answer: bad status");
    int rc = check_str("reason", a->reason, l->max_string, em);
    if (rc < 0) return rc;
    if (a->n_buckets > l->max_values || a->n_untrusted > l->max_values)
        return errmsg_set(em, ERR_TOO_LARGE, "repair answer: too many buckets");
    if ((rc = check_seen_entries(a->entries, a->n_entries, em)) < 0) return rc;
    if (a->n_writes > CLUSTER_REPAIR_MAX_ENTRIES || a->handled < a->unavailable)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "repair answer: bad fetch counts");
    for (size_t i = 0; i < a->n_writes; i++)
        if ((rc = check_write(a->writes[i], l, em)) < 0) return rc;
    return check_windows(a, l, em);
}

static const ProtobufCMessageDescriptor *descriptor_of(int type)
{
    switch (type) {
    case T(GOSSIP):
        return &flamedb__cluster__gossip__descriptor;
    case T(WRITE):
        return &flamedb__cluster__write_request__descriptor;
    case T(WRITE_ACK):
        return &flamedb__cluster__write_ack__descriptor;
    case T(QUERY):
        return &flamedb__cluster__query_request__descriptor;
    case T(PARTIAL):
        return &flamedb__cluster__partial_result__descriptor;
    case T(REPAIR):
        return &flamedb__cluster__repair_request__descriptor;
    case T(REPAIR_ANSWER):
        return &flamedb__cluster__repair_answer__descriptor;
    case T(CHUNK):
        return &flamedb__cluster__chunk__descriptor;
    default:
        return NULL;
    }
}

/* A piece of a message cut to frames: its place and the whole's size. */
static int check_chunk(const Flamedb__Cluster__Chunk *c, const cluster_wire_limits_t *l,
                       errmsg_t *em)
{
    if (c->count < 2 || c->index >= c->count || c->total_bytes > l->max_bytes || c->data.len == 0 ||
        c->data.len > c->total_bytes || c->count > c->total_bytes)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "chunk: piece %u of %u, %zu of %llu bytes (at most %zu)", c->index,
                          c->count, c->data.len, (unsigned long long)c->total_bytes, l->max_bytes);
    return 0;
}

static int check_body(int type, const ProtobufCMessage *b, const cluster_wire_limits_t *l,
                      uint64_t now, errmsg_t *em)
{
    uint64_t deadline = 0;
    int rc;
    switch (type) {
    case T(WRITE_ACK):
        return check_ack((const void *)b, l, em);
    case T(PARTIAL):
        return check_partial((const void *)b, l, em);
    case T(REPAIR_ANSWER): /* its writes are checked like WRITE bodies, deadline aside */
        return check_repair_answer((const void *)b, l, em);
    case T(CHUNK):
        return check_chunk((const void *)b, l, em);
    case T(REPAIR):
        rc = check_repair((const void *)b, l, em);
        deadline = ((const Flamedb__Cluster__RepairRequest *)b)->deadline_unix_ms;
        break;
    case T(WRITE):
        rc = check_write((const void *)b, l, em);
        deadline = ((const Flamedb__Cluster__WriteRequest *)b)->deadline_unix_ms;
        break;
    default:
        rc = check_query((const void *)b, l, em);
        deadline = ((const Flamedb__Cluster__QueryRequest *)b)->deadline_unix_ms;
        break;
    }
    if (rc == 0 && now != 0 && now > deadline)
        rc = errmsg_set(em, ERR_TIMEOUT, "message: deadline passed %llu ms ago",
                        (unsigned long long)(now - deadline));
    return rc;
}

/* Version first: it says how the MAC is computed. Then the MAC, before any
 * other field is believed. */
static int check_envelope(const Flamedb__Cluster__Envelope *e, const cluster_wire_receiver_t *to,
                          uint64_t now, errmsg_t *em)
{
    if (e->protocol_version != CLUSTER_PROTOCOL_VERSION)
        return errmsg_set(em, ERR_UNSUPPORTED, "message: protocol version %u, this node speaks %d",
                          e->protocol_version, CLUSTER_PROTOCOL_VERSION);
    if (to->key != NULL) {
        uint8_t mac[DIGEST_SHA256_BYTES];
        int rc = envelope_mac(to->key, e, mac);
        if (rc < 0) return errmsg_set(em, rc, "message: could not compute its MAC");
        if (e->auth.len != sizeof mac || !digest_equal(e->auth.data, mac, sizeof mac))
            return errmsg_set(em, ERR_UNAUTHORIZED,
                              "message: not signed with this cluster's secret");
    }
    if (to->cluster != NULL && strcmp(to->cluster, e->cluster) != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "message: from another cluster");
    if (ring_node_id_check(e->sender_id, NULL) < 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "message: bad sender id");
    if (descriptor_of(e->type) == NULL)
        return errmsg_set(em, ERR_UNSUPPORTED, "message: unknown type %d", (int)e->type);
    if (now != 0 && e->deadline_unix_ms != 0 && now > e->deadline_unix_ms)
        return errmsg_set(em, ERR_TIMEOUT, "message: deadline passed");
    return 0;
}

/* Lets the message's arena grow by the bound for n more bytes unpacked. */
static ProtobufCAllocator arena_allow(arena_t *a, size_t n)
{
    size_t room = n > (SIZE_MAX - CLUSTER_WIRE_DECODE_SLACK) / CLUSTER_WIRE_DECODE_FACTOR
                      ? SIZE_MAX
                      : n * CLUSTER_WIRE_DECODE_FACTOR + CLUSTER_WIRE_DECODE_SLACK;
    a->max = a->total > SIZE_MAX - room ? SIZE_MAX : a->total + room;
    return (ProtobufCAllocator){arena_cb_alloc, arena_cb_free, a};
}

static int unpack_failed(const arena_t *a, const char *what, errmsg_t *em)
{
    if (a->over)
        return errmsg_set(em, ERR_TOO_LARGE,
                          "message: decoding its %s needs more than %d times "
                          "its size",
                          what, CLUSTER_WIRE_DECODE_FACTOR);
    return errmsg_set(em, ERR_UNPARSEABLE, "message: %s is not a valid %s", what, what);
}

/* Steps over one field of a protobuf message at *p (< end): its number
 * and wire type out, *p past it. 0 on bytes that are no field. */
static int next_field(const uint8_t **p, const uint8_t *end, uint64_t *number, unsigned *wt)
{
    uint64_t tag, v;
    if (!varint_read_u(p, end, &tag)) return 0;
    *number = tag >> 3;
    *wt = (unsigned)(tag & 7);
    switch (*wt) {
    case 0:
        return varint_read_u(p, end, &v);
    case 1:
    case 5: {
        size_t w = *wt == 1 ? 8 : 4;
        if ((size_t)(end - *p) < w) return 0;
        *p += w;
        return 1;
    }
    case 2:
        if (!varint_read_u(p, end, &v) || v > (uint64_t)(end - *p)) return 0;
        *p += v;
        return 1;
    default:
        return 0;
    }
}

/* The fields of the message bytes [p, p + n) other than the length-delimited
 * field `number`, copied one after the other into the arena (*rest, *rn),
 * and that field's values where they lie in p (*v, *nv, in their order;
 * *nv 0 and nothing copied when the field is absent). 1 done, 0 when the
 * bytes are no message or the arena is full. */
static int lift_field(arena_t *a, const uint8_t *p, size_t n, uint64_t number, uint8_t **rest,
                      size_t *rn, ProtobufCBinaryData **v, size_t *nv)
{
    *rn = *nv = 0;
    if (n == 0) return 1; /* an empty body (p may be NULL): nothing to lift */
    const uint8_t *q = p, *end = p + n, *at;
    size_t nlift = 0, nrest = 0;
    uint64_t no, tag, len;
    unsigned wt;
    while (q < end) {
        at = q;
        if (!next_field(&q, end, &no, &wt)) return 0;
        if (no == number && wt == 2)
            nlift++;
        else
            nrest += (size_t)(q - at);
    }
    *rn = *nv = 0;
    if (nlift == 0) return 1; /* nothing to lift: no copy */
    *rest = arena_alloc(a, nrest ? nrest : 1);
    *v = arena_alloc(a, (nlift ? nlift : 1) * sizeof **v);
    if (*rest == NULL || *v == NULL) return 0;
    for (q = p; q < end;) {
        at = q;
        next_field(&q, end, &no, &wt);
        if (no == number && wt == 2) {
            const uint8_t *d = at;
            len = 0;
            varint_read_u(&d, q, &tag);
            varint_read_u(&d, q, &len);
            (*v)[(*nv)++] = (ProtobufCBinaryData){(size_t)len, (uint8_t *)d};
        } else {
            memcpy(*rest + *rn, at, (size_t)(q - at));
            *rn += (size_t)(q - at);
        }
    }
    return 1;
}

#define FORESTS_FIELD 14u /* PartialResult.forests */

/* A PartialResult whose forests (most of a render's answer) point into the
 * envelope's body, which lives as long as the message, instead of being
 * copied by protobuf-c: the other fields are copied out (a few bytes once
 * the coordinator holds the names) and unpacked, the forests attached after
 * in their order. Bytes that are no message go to protobuf-c whole, which
 * refuses them as before. */
static ProtobufCMessage *unpack_partial(arena_t *a, const uint8_t *body, size_t n)
{
    const ProtobufCMessageDescriptor *d = &flamedb__cluster__partial_result__descriptor;
    ProtobufCAllocator al = arena_allow(a, n);
    uint8_t *rest;
    size_t rn, nv;
    ProtobufCBinaryData *v;
    if (!lift_field(a, body, n, FORESTS_FIELD, &rest, &rn, &v, &nv) || nv == 0)
        return protobuf_c_message_unpack(d, &al, n, body);
    al = arena_allow(a, rn);
    Flamedb__Cluster__PartialResult *m = (void *)protobuf_c_message_unpack(d, &al, rn, rest);
    if (m == NULL) return NULL;
    m->forests = v;
    m->n_forests = nv;
    return &m->base;
}

#define BODY_FIELD 6u /* Envelope.body */

/* The envelope with its body where it lies in p when it has exactly one
 * (what every sender writes), else protobuf-c's copy. */
static Flamedb__Cluster__Envelope *unpack_envelope(arena_t *a, const uint8_t *p, size_t n,
                                                   int in_place)
{
    ProtobufCAllocator al = arena_allow(a, n);
    uint8_t *rest;
    size_t rn, nv;
    ProtobufCBinaryData *v;
    if (!in_place || !lift_field(a, p, n, BODY_FIELD, &rest, &rn, &v, &nv) || nv != 1)
        return flamedb__cluster__envelope__unpack(&al, n, p);
    al = arena_allow(a, rn);
    Flamedb__Cluster__Envelope *e = flamedb__cluster__envelope__unpack(&al, rn, rest);
    if (e != NULL) e->body = v[0];
    return e;
}

static int decode_envelope(const uint8_t *p, size_t n, int in_place,
                           const cluster_wire_limits_t *lim, const cluster_wire_receiver_t *to,
                           uint64_t now_unix_ms, cluster_msg_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    if (n > lim->max_bytes)
        return errmsg_set(em, ERR_TOO_LARGE, "message: %zu bytes, at most %zu", n, lim->max_bytes);
    arena_init(&out->arena, n < 8192 ? 4096 : n / 2 < (1u << 20) ? n / 2 : 1u << 20, 0);
    out->env = unpack_envelope(&out->arena, p, n, in_place);
    int rc = out->env == NULL ? unpack_failed(&out->arena, "envelope", em)
                              : check_envelope(out->env, to, now_unix_ms, em);
    if (rc < 0) cluster_msg_free(out);
    return rc;
}

int cluster_wire_decode_envelope(const uint8_t *p, size_t n, const cluster_wire_limits_t *lim,
                                 const cluster_wire_receiver_t *to, uint64_t now_unix_ms,
                                 cluster_msg_t *out, errmsg_t *em)
{
    return decode_envelope(p, n, 0, lim, to, now_unix_ms, out, em);
}

int cluster_wire_decode_envelope_in_place(const uint8_t *p, size_t n,
                                          const cluster_wire_limits_t *lim,
                                          const cluster_wire_receiver_t *to, uint64_t now_unix_ms,
                                          cluster_msg_t *out, errmsg_t *em)
{
    return decode_envelope(p, n, 1, lim, to, now_unix_ms, out, em);
}

void cluster_msg_hold(cluster_msg_t *m, void *bytes, void (*release)(void *))
{
    m->held = bytes;
    m->release = release;
}

int cluster_wire_decode_body(cluster_msg_t *m, const cluster_wire_limits_t *lim,
                             uint64_t now_unix_ms, errmsg_t *em)
{
    if (m->env->type == T(GOSSIP))
        return errmsg_set(em, ERR_UNSUPPORTED, "message: gossip bodies are read by the ring");
    const ProtobufCMessageDescriptor *d = descriptor_of(m->env->type);
    ProtobufCAllocator al = arena_allow(&m->arena, m->env->body.len);
    m->body = m->env->type == T(PARTIAL)
                  ? unpack_partial(&m->arena, m->env->body.data, m->env->body.len)
                  : protobuf_c_message_unpack(d, &al, m->env->body.len, m->env->body.data);
    if (m->body == NULL) return unpack_failed(&m->arena, "body", em);
    int rc = check_body(m->env->type, m->body, lim, now_unix_ms, em);
    /* receivers route by the envelope's copy before they decode the body */
    if (rc == 0 && request_id_of(m->body) != m->env->request_id)
        rc =
            errmsg_set(em, ERR_INVALID_ARGUMENT, "message: request id differs from its envelope's");
    if (rc < 0) m->body = NULL; /* its memory goes with the arena */
    return rc;
}

int cluster_wire_decode(const uint8_t *p, size_t n, const cluster_wire_limits_t *lim,
                        const cluster_wire_receiver_t *to, uint64_t now_unix_ms, cluster_msg_t *out,
                        errmsg_t *em)
{
    cluster_wire_limits_t dl;
    if (lim == NULL) {
        cluster_wire_limits_default(&dl);
        lim = &dl;
    }
    int rc = cluster_wire_decode_envelope(p, n, lim, to, now_unix_ms, out, em);
    if (rc == 0) rc = cluster_wire_decode_body(out, lim, now_unix_ms, em);
    if (rc < 0) cluster_msg_free(out);
    return rc;
}

void cluster_msg_free(cluster_msg_t *m)
{
    arena_free(&m->arena);
    if (m->release != NULL) m->release(m->held);
    m->held = NULL;
    m->release = NULL;
    m->body = NULL;
    m->env = NULL;
}
