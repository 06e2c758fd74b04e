/* The cluster wire envelope (node/cluster/wire_int.h, cluster.proto): round trips
 * of every message, and refusal of malformed, hostile or late ones. */
#include "common/labels.h"
#include "node/cluster/wire_int.h"
#include "test_ring_util.h"

#define T(x) FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_##x
#define NOW 1700000000000ULL

static const cluster_wire_sender_t N01 = {"c1", "n01", NULL};
static const cluster_wire_receiver_t C1 = {"c1", NULL};

static uint8_t pid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static uint8_t tree[4] = {0x01, 0x02, 0x03, 0x04}; /* opaque to the envelope */

struct write_fixture {
    Flamedb__Cluster__WriteRequest w;
    Flamedb__Cluster__SeriesPart part, *parts[1];
    Flamedb__Cluster__Span span, *spans[1];
    Flamedb__Cluster__Symbol sym, *syms[1];
    buf_t labels;
};

static void write_fixture(struct write_fixture *f)
{
    labels_t *l = labels_new();
    labels_set_str(l, LABEL_NAME, "process_cpu");
    labels_set_str(l, LABEL_SERVICE_NAME, "api");
    buf_init(&f->labels, 1 << 16);
    labels_encode(l, &f->labels);
    flamedb__cluster__write_request__init(&f->w);
    flamedb__cluster__series_part__init(&f->part);
    flamedb__cluster__span__init(&f->span);
    flamedb__cluster__symbol__init(&f->sym);
    f->part.labels.data = f->labels.data;
    f->part.labels.len = f->labels.len;
    f->part.series_id = labels_hash(l);
    f->part.token = ring_placement_token("acme", "api", ring_series_shard(f->part.series_id, 4));
    f->part.calltree.data = tree;
    f->part.calltree.len = sizeof tree;
    f->span.kind = 1;
    f->span.id = 0xabcdef;
    f->span.calltree = f->part.calltree;
    f->spans[0] = &f->span;
    f->part.spans = f->spans;
    f->part.n_spans = 1;
    f->parts[0] = &f->part;
    f->sym.id = 42;
    f->sym.name.data = (uint8_t *)"main";
    f->sym.name.len = 4;
    f->syms[0] = &f->sym;
    f->w.protocol_version = CLUSTER_PROTOCOL_VERSION;
    f->w.tenant = "acme";
    f->w.deadline_unix_ms = NOW + 5000;
    f->w.profile_id.data = pid;
    f->w.profile_id.len = 16;
    f->w.time_ns = 123456789;
    f->w.series = f->parts;
    f->w.n_series = 1;
    f->w.symbols = f->syms;
    f->w.n_symbols = 1;
    f->w.request_id = 77;
    labels_free(l);
}

/* Encodes body as type and decodes it back; returns the decode result. */
static int roundtrip(int type, const ProtobufCMessage *body, const char *cluster, uint64_t deadline,
                     cluster_msg_t *out, errmsg_t *em)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(cluster_wire_encode(type, &N01, deadline, body, &b), 0);
    int rc = cluster_wire_decode(b.data, b.len, NULL, &(cluster_wire_receiver_t){cluster, NULL},
                                 NOW, out, em);
    buf_free(&b);
    return rc;
}

static void test_write_roundtrip(void)
{
    struct write_fixture f;
    write_fixture(&f);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", f.w.deadline_unix_ms, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__WriteRequest *w = (void *)m.body;
        CHECK_EQ_STR(m.env->sender_id, "n01");
        CHECK_EQ_STR(w->tenant, "acme");
        CHECK(w->profile_id.len == 16 && memcmp(w->profile_id.data, pid, 16) == 0);
        CHECK(w->n_series == 1 && w->series[0]->series_id == f.part.series_id);
        CHECK(w->series[0]->token == f.part.token && w->series[0]->n_spans == 1);
        CHECK(w->series[0]->spans[0]->id == 0xabcdef);
        CHECK(w->n_symbols == 1 && w->symbols[0]->name.len == 4);
        CHECK(w->time_ns == 123456789 && w->request_id == 77);
        CHECK(w->n_missed_by == 0);
        cluster_msg_free(&m);
    }
    /* the replicas the coordinator knows miss the write travel with it */
    char *down[2] = {"n02", "n03"};
    f.w.missed_by = down;
    f.w.n_missed_by = 2;
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", f.w.deadline_unix_ms, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__WriteRequest *w = (void *)m.body;
        CHECK(w->n_missed_by == 2 && strcmp(w->missed_by[1], "n03") == 0);
        cluster_msg_free(&m);
    }
    f.w.missed_by = NULL;
    f.w.n_missed_by = 0;
    /* a repair fetch's span whose member is unknown: by kind and id alone */
    f.span.unknown = 1;
    f.span.calltree.len = 0;
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", f.w.deadline_unix_ms, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__WriteRequest *w = (void *)m.body;
        CHECK(w->series[0]->n_spans == 1 && w->series[0]->spans[0]->unknown);
        CHECK(w->series[0]->spans[0]->calltree.len == 0);
        cluster_msg_free(&m);
    }
    f.span.unknown = 0;
    f.span.calltree = f.part.calltree;
    /* hint record carries the serialized request as is */
    uint8_t packed[4096];
    size_t n = flamedb__cluster__write_request__pack(&f.w, packed);
    Flamedb__Cluster__HintRecord h = FLAMEDB__CLUSTER__HINT_RECORD__INIT;
    h.protocol_version = CLUSTER_PROTOCOL_VERSION;
    h.tenant = "acme";
    h.target_node_id = "n02";
    h.write_request.data = packed;
    h.write_request.len = n;
    uint8_t hp[8192];
    size_t hn = flamedb__cluster__hint_record__pack(&h, hp);
    Flamedb__Cluster__HintRecord *hb = flamedb__cluster__hint_record__unpack(NULL, hn, hp);
    CHECK(hb != NULL && hb->write_request.len == n && strcmp(hb->target_node_id, "n02") == 0);
    if (hb) flamedb__cluster__hint_record__free_unpacked(hb, NULL);

    /* refusals of bad writes */
    struct {
        const char *what;
        int want;
    } cases[] = {
        {"no tenant", ERR_INVALID_ARGUMENT},
        {"long tenant", ERR_INVALID_ARGUMENT},
        {"short id", ERR_INVALID_ARGUMENT},
        {"no series", ERR_TOO_LARGE},
        {"id not hash", ERR_INVALID_ARGUMENT},
        {"bad span", ERR_INVALID_ARGUMENT},
        {"no deadline", ERR_INVALID_ARGUMENT},
        {"late", ERR_TIMEOUT},
        {"bad labels", ERR_INVALID_ARGUMENT},
        {"empty tree", ERR_INVALID_ARGUMENT},
        {"span no tree", ERR_INVALID_ARGUMENT},
        {"unknown span with a tree", ERR_INVALID_ARGUMENT},
        {"empty missed id", ERR_INVALID_ARGUMENT},
        {"long missed id", ERR_INVALID_ARGUMENT},
        {"too many missed", ERR_TOO_LARGE},
        {"notice with a series", ERR_INVALID_ARGUMENT},
        {"notice naming nobody", ERR_INVALID_ARGUMENT},
    };
    char longid[RING_NODE_ID_MAX + 2];
    memset(longid, 'n', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    char *missed[RING_MAX_RF + 1];
    for (size_t i = 0; i < RING_MAX_RF + 1; i++)
        missed[i] = "n02";
    buf_free(&f.labels);
    char longt[RING_TENANT_MAX + 2];
    memset(longt, 't', sizeof longt - 1);
    longt[sizeof longt - 1] = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_fixture(&f);
        uint64_t env_deadline = f.w.deadline_unix_ms;
        uint8_t junk[3] = {0xff, 0xff, 0xff};
        switch (c) {
        case 0:
            f.w.tenant = "";
            break;
        case 1:
            f.w.tenant = longt;
            break;
        case 2:
            f.w.profile_id.len = 8;
            break;
        case 3:
            f.w.n_series = 0;
            break;
        case 4:
            f.part.series_id ^= 1;
            break;
        case 5:
            f.span.kind = 9;
            break;
        case 6:
            f.w.deadline_unix_ms = 0;
            env_deadline = 0;
            break;
        case 7:
            f.w.deadline_unix_ms = NOW - 1;
            env_deadline = 0;
            break;
        case 8:
            f.part.labels.data = junk;
            f.part.labels.len = 3;
            break;
        case 9:
            f.part.calltree.len = 0;
            break;
        case 10:
            f.span.calltree.len = 0;
            break;
        case 11:
            f.span.unknown = 1; /* a repair fetch's unknown tree goes without one */
            break;
        case 12:
            missed[0] = "";
            f.w.missed_by = missed;
            f.w.n_missed_by = 1;
            break;
        case 13:
            missed[0] = longid;
            f.w.missed_by = missed;
            f.w.n_missed_by = 1;
            break;
        case 14:
            missed[0] = "n02";
            f.w.missed_by = missed;
            f.w.n_missed_by = RING_MAX_RF + 1;
            break;
        case 15:
            missed[0] = "n02";
            f.w.missed_by = missed;
            f.w.n_missed_by = 1;
            f.w.notice = 1;
            break;
        case 16:
            f.w.notice = 1;
            f.w.n_series = 0;
            f.w.n_symbols = 0;
            break;
        }
        int rc = roundtrip(T(WRITE), &f.w.base, "c1", env_deadline, &m, &em);
        if (rc != cases[c].want)
            fprintf(stderr, "case '%s': got %d (%s)\n", cases[c].what, rc, em.text);
        CHECK_EQ_INT(rc, cases[c].want);
        CHECK(m.env == NULL && m.body == NULL);
        buf_free(&f.labels);
    }
}

/* A notice (no series, one replica named) passes; the same without the
 * flag is a write with no series. */
static void test_notice(void)
{
    struct write_fixture f;
    write_fixture(&f);
    char *missed[1] = {"n02"};
    f.w.n_series = 0;
    f.w.n_symbols = 0;
    f.w.missed_by = missed;
    f.w.n_missed_by = 1;
    f.w.notice = 1;
    f.w.coordinator_heartbeat = 7;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", f.w.deadline_unix_ms, &m, &em), 0);
    const Flamedb__Cluster__WriteRequest *q = (const void *)m.body;
    CHECK(q != NULL && q->notice && q->n_series == 0 && q->n_missed_by == 1 &&
          strcmp(q->missed_by[0], "n02") == 0 && q->coordinator_heartbeat == 7);
    cluster_msg_free(&m);
    f.w.notice = 0;
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", f.w.deadline_unix_ms, &m, &em),
                 ERR_TOO_LARGE);
    buf_free(&f.labels);
}

static void test_envelope_refusals(void)
{
    struct write_fixture f;
    write_fixture(&f);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "other", 0, &m, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(roundtrip(T(WRITE), &f.w.base, "c1", NOW - 10, &m, &em), ERR_TIMEOUT);
    CHECK_EQ_INT(roundtrip(99, &f.w.base, "c1", 0, &m, &em), ERR_UNSUPPORTED);
    /* a write body under a query tag does not pass as a query */
    CHECK(roundtrip(T(QUERY), &f.w.base, "c1", 0, &m, &em) < 0);

    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    cluster_wire_limits_t lim0;
    cluster_wire_limits_default(&lim0);
    cluster_wire_encode(T(WRITE), &N01, 0, &f.w.base, &b);
    /* wrong protocol version, bad sender */
    Flamedb__Cluster__Envelope *e = flamedb__cluster__envelope__unpack(NULL, b.len, b.data);
    CHECK(e != NULL);
    uint8_t tmp[8192];
    e->protocol_version = 2;
    size_t n = flamedb__cluster__envelope__pack(e, tmp);
    CHECK_EQ_INT(cluster_wire_decode(tmp, n, NULL, &C1, NOW, &m, &em), ERR_UNSUPPORTED);
    e->protocol_version = 1;
    char *orig_sender = e->sender_id;
    e->sender_id = "../etc";
    n = flamedb__cluster__envelope__pack(e, tmp);
    CHECK_EQ_INT(cluster_wire_decode(tmp, n, NULL, &C1, NOW, &m, &em), ERR_INVALID_ARGUMENT);
    e->sender_id = orig_sender;
    /* the envelope carries the body's request id; one that differs would
     * route the body to another request, so the body check refuses it */
    CHECK_EQ_INT(e->request_id, f.w.request_id);
    e->request_id = f.w.request_id + 1;
    n = flamedb__cluster__envelope__pack(e, tmp);
    CHECK_EQ_INT(cluster_wire_decode_envelope(tmp, n, &lim0, &C1, NOW, &m, &em), 0);
    CHECK(m.body == NULL);
    CHECK_EQ_INT(cluster_wire_decode_body(&m, &lim0, NOW, &em), ERR_INVALID_ARGUMENT);
    CHECK(m.body == NULL && strstr(em.text, "request id") != NULL);
    cluster_msg_free(&m);
    e->request_id = f.w.request_id;
    flamedb__cluster__envelope__free_unpacked(e, NULL);
    /* over the size limit */
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    lim.max_bytes = b.len - 1;
    CHECK_EQ_INT(cluster_wire_decode(b.data, b.len, &lim, &C1, NOW, &m, &em), ERR_TOO_LARGE);
    lim.max_bytes = b.len;
    CHECK_EQ_INT(cluster_wire_decode(b.data, b.len, &lim, &C1, NOW, &m, &em), 0);
    cluster_msg_free(&m);
    lim.max_series = 0;
    CHECK_EQ_INT(cluster_wire_decode(b.data, b.len, &lim, &C1, NOW, &m, &em), ERR_TOO_LARGE);

    /* every truncation and random corruption is decoded or refused, never trusted blindly */
    int ok = 0, refused = 0;
    for (size_t k = 0; k < b.len; k++) {
        int rc = cluster_wire_decode(b.data, k, NULL, &C1, NOW, &m, NULL);
        if (rc == 0) cluster_msg_free(&m);
        refused += rc < 0;
    }
    CHECK_EQ_INT(refused, (int)b.len); /* a prefix always loses a required field or parses badly */
    ring_rng_t rng;
    ring_rng_seed(&rng, 17);
    refused = 0;
    for (int k = 0; k < 3000; k++) {
        memcpy(tmp, b.data, b.len);
        int flips = 1 + (int)(ring_rng_next(&rng) % 4);
        for (int j = 0; j < flips; j++)
            tmp[ring_rng_next(&rng) % b.len] ^= (uint8_t)(1u << (ring_rng_next(&rng) % 8));
        int rc = cluster_wire_decode(tmp, b.len, NULL, &C1, NOW, &m, NULL);
        if (rc == 0) {
            ok++;
            Flamedb__Cluster__WriteRequest *w = (void *)m.body;
            /* whatever passed still satisfies the checks */
            CHECK(m.env->type == T(WRITE) && w->profile_id.len == 16 && w->n_series >= 1);
            cluster_msg_free(&m);
        } else {
            refused++;
        }
    }
    fprintf(stderr, "bit flips: %d decoded, %d refused\n", ok, refused);
    CHECK(refused > 0);
    buf_free(&b);
    buf_free(&f.labels);
}

static void test_query_and_results(void)
{
    Flamedb__Cluster__TokenRange r1 = FLAMEDB__CLUSTER__TOKEN_RANGE__INIT, *rs[1] = {&r1};
    r1.start = UINT64_MAX - 3;
    r1.end = 10;
    Flamedb__Cluster__QueryRequest q = FLAMEDB__CLUSTER__QUERY_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.tenant = "acme";
    q.deadline_unix_ms = NOW + 100;
    q.kind = FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_MERGE;
    q.ranges = rs;
    q.n_ranges = 1;
    q.selector = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"api\"}";
    q.from_ms = 1;
    q.until_ms = 2;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", q.deadline_unix_ms, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__QueryRequest *g = (void *)m.body;
        CHECK(g->n_ranges == 1 && g->ranges[0]->start == UINT64_MAX - 3 && g->ranges[0]->end == 10);
        CHECK_EQ_STR(g->selector, q.selector);
        cluster_msg_free(&m);
    }
    q.n_ranges = 0;
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    q.n_ranges = 1;
    q.kind = FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_LABEL_VALUES;
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    q.label_name = "env";
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), 0);
    cluster_msg_free(&m);
    q.kind = FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_PROFILE; /* its id in label_name */
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), 0);
    cluster_msg_free(&m);
    q.label_name = "";
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    CHECK(strstr(em.text, "profile") != NULL);
    q.label_name = "env";
    q.kind = 77;
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    q.kind = FLAMEDB__CLUSTER__QUERY_KIND__QUERY_KIND_MERGE;
    q.from_ms = 5;
    CHECK_EQ_INT(roundtrip(T(QUERY), &q.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);

    Flamedb__Cluster__PartialResult p = FLAMEDB__CLUSTER__PARTIAL_RESULT__INIT;
    ProtobufCBinaryData vals[2] = {{3, (uint8_t *)"env"}, {6, (uint8_t *)"region"}};
    p.protocol_version = CLUSTER_PROTOCOL_VERSION;
    p.tenant = "acme";
    p.request_id = 9;
    p.calltree.data = tree;
    p.calltree.len = sizeof tree;
    p.values = vals;
    p.n_values = 2;
    p.served = rs;
    p.n_served = 1;
    CHECK_EQ_INT(roundtrip(T(PARTIAL), &p.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__PartialResult *g = (void *)m.body;
        CHECK(g->n_values == 2 && g->values[1].len == 6 && g->calltree.len == 4);
        cluster_msg_free(&m);
    }
    p.status = 1;
    CHECK_EQ_INT(roundtrip(T(PARTIAL), &p.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);

    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.tenant = "acme";
    a.profile_id.data = pid;
    a.profile_id.len = 16;
    a.status = ERR_LIMIT;
    a.reason = "too many series";
    a.series_duplicate = 2;
    CHECK_EQ_INT(roundtrip(T(WRITE_ACK), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__WriteAck *g = (void *)m.body;
        CHECK(g->status == ERR_LIMIT && g->series_duplicate == 2);
        cluster_msg_free(&m);
    }
}

/* Encodes f's write as `from`; decodes it as `to`. */
static int signed_roundtrip(const struct write_fixture *f, const digest_key_t *from,
                            const digest_key_t *to, errmsg_t *em)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    cluster_wire_sender_t s = {"c1", "n01", from};
    CHECK_EQ_INT(cluster_wire_encode(T(WRITE), &s, 0, &f->w.base, &b), 0);
    cluster_msg_t m;
    int rc =
        cluster_wire_decode(b.data, b.len, NULL, &(cluster_wire_receiver_t){"c1", to}, NOW, &m, em);
    if (rc == 0) cluster_msg_free(&m);
    buf_free(&b);
    return rc;
}

/* With a key, only messages signed with that key pass, and any change to a
 * signed field after signing is refused. */
static void test_signed_envelopes(void)
{
    struct write_fixture f;
    write_fixture(&f);
    digest_key_t *k1 = NULL, *k2 = NULL;
    CHECK_EQ_INT(digest_key_new("0123456789abcdef", 16, &k1), 0);
    CHECK_EQ_INT(digest_key_new("0123456789abcdeF", 16, &k2), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(signed_roundtrip(&f, k1, k1, &em), 0);
    CHECK_EQ_INT(signed_roundtrip(&f, NULL, k1, &em), ERR_UNAUTHORIZED);
    CHECK(strstr(em.text, "secret") != NULL);
    CHECK_EQ_INT(signed_roundtrip(&f, k2, k1, &em), ERR_UNAUTHORIZED);
    CHECK_EQ_INT(signed_roundtrip(&f, k1, NULL, &em), 0); /* a node without a key reads it */

    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    cluster_wire_sender_t s = {"c1", "n01", k1};
    CHECK_EQ_INT(cluster_wire_encode(T(WRITE), &s, 0, &f.w.base, &b), 0);
    cluster_wire_receiver_t to = {"c1", k1};
    Flamedb__Cluster__Envelope *e = flamedb__cluster__envelope__unpack(NULL, b.len, b.data);
    CHECK(e != NULL && e->auth.len == DIGEST_SHA256_BYTES);
    uint8_t tmp[8192];
    cluster_msg_t m;
    /* each signed field changed in turn */
    for (int field = 0; field < 5; field++) {
        Flamedb__Cluster__Envelope c = *e;
        char sender[] = "n02", cluster[] = "c1";
        if (field == 0) c.sender_id = sender;
        if (field == 1) c.deadline_unix_ms = NOW + 1000;
        if (field == 2) c.request_id++;
        if (field == 3) c.body.data[c.body.len - 1] ^= 1;
        if (field == 4) c.cluster = cluster, c.type = T(QUERY);
        size_t n = flamedb__cluster__envelope__pack(&c, tmp);
        CHECK_EQ_INT(cluster_wire_decode(tmp, n, NULL, &to, NOW, &m, &em), ERR_UNAUTHORIZED);
        if (field == 3) c.body.data[c.body.len - 1] ^= 1;
    }
    size_t n = flamedb__cluster__envelope__pack(e, tmp);
    CHECK_EQ_INT(cluster_wire_decode(tmp, n, NULL, &to, NOW, &m, &em), 0);
    cluster_msg_free(&m);
    flamedb__cluster__envelope__free_unpacked(e, NULL);
    buf_free(&b);
    digest_key_free(k1);
    digest_key_free(k2);
    buf_free(&f.labels);
}

/* A write of empty series entries (two bytes each on the wire, a struct of
 * about a hundred bytes decoded) and an envelope of unknown fields are
 * refused once decoding them would take more than the bound, instead of
 * costing gigabytes. */
static void test_decode_amplification(void)
{
    size_t entries = 1u << 20; /* 2 MiB on the wire */
    buf_t body;
    buf_init(&body, BUF_UNLIMITED);
    for (size_t i = 0; i < entries; i++) { /* WriteRequest.series = 6, length 0 */
        uint8_t e[2] = {(uint8_t)((6 << 3) | 2), 0};
        CHECK_EQ_INT(buf_append(&body, e, 2), 0);
    }
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    ProtobufCBinaryData bd = {body.len, body.data};
    CHECK_EQ_INT(cluster_wire_encode_bytes(T(WRITE), &N01, 0, &bd, &b), 0);
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_wire_decode_envelope(b.data, b.len, &lim, &C1, NOW, &m, &em), 0);
    CHECK_EQ_INT(cluster_wire_decode_body(&m, &lim, NOW, &em), ERR_TOO_LARGE);
    CHECK(m.body == NULL && strstr(em.text, "times its size") != NULL);
    CHECK(m.arena.total <= (size_t)CLUSTER_WIRE_DECODE_FACTOR * (b.len + body.len) +
                               2 * CLUSTER_WIRE_DECODE_SLACK + (1u << 20));
    cluster_msg_free(&m);

    /* an envelope padded with a million unknown varint fields (field 15) */
    buf_reset(&b);
    CHECK_EQ_INT(cluster_wire_encode_bytes(T(WRITE), &N01, 0, &(ProtobufCBinaryData){0, NULL}, &b),
                 0);
    for (size_t i = 0; i < entries; i++) {
        uint8_t e[2] = {(uint8_t)(15 << 3), 1};
        CHECK_EQ_INT(buf_append(&b, e, 2), 0);
    }
    CHECK_EQ_INT(cluster_wire_decode_envelope(b.data, b.len, &lim, &C1, NOW, &m, &em),
                 ERR_TOO_LARGE);
    CHECK(m.env == NULL);
    buf_free(&b);
    buf_free(&body);
}

#define RK(x) FLAMEDB__CLUSTER__REPAIR_KIND__REPAIR_KIND_##x

static int repair_rt(Flamedb__Cluster__RepairRequest *q)
{
    cluster_msg_t m;
    errmsg_t em = {{0}};
    int rc = roundtrip(T(REPAIR), &q->base, "c1", q->deadline_unix_ms, &m, &em);
    if (rc == 0) cluster_msg_free(&m);
    return rc;
}

/* Anti-entropy requests and answers: round trips and every refusal. */
static void test_repair(void)
{
    Flamedb__Cluster__TokenRange r1 = FLAMEDB__CLUSTER__TOKEN_RANGE__INIT, *rs[1] = {&r1};
    r1.start = 5;
    r1.end = 9;
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.deadline_unix_ms = NOW + 100;
    q.request_id = 9;
    q.kind = RK(DIGEST);
    q.ranges = rs;
    q.n_ranges = 1;
    q.from_s = 3600;
    q.until_s = 7200;
    q.bucket_s = 3600;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.n_ranges = 0; /* a digest of nothing */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.n_ranges = 1;
    q.bucket_s = 0;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.bucket_s = 1;
    q.until_s = q.from_s + 10 * CLUSTER_REPAIR_MAX_BUCKETS; /* too many buckets */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.bucket_s = 3600;
    q.until_s = q.from_s; /* empty span */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.until_s = 7200;
    q.deadline_unix_ms = 0;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.deadline_unix_ms = NOW + 100;
    q.kind = 99;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);

    Flamedb__Cluster__SeenEntry e = FLAMEDB__CLUSTER__SEEN_ENTRY__INIT, *es[1] = {&e};
    e.tenant = "acme";
    e.profile_id.data = pid;
    e.profile_id.len = 16;
    q.kind = RK(IDS);
    q.lo = 10;
    q.hi = 20;
    q.limit = 100;
    q.after = &e;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.lo = 21; /* lo > hi */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.lo = 10;
    q.limit = CLUSTER_REPAIR_MAX_ENTRIES + 1;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.limit = 100;
    e.profile_id.len = 15;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    e.profile_id.len = 16;
    e.tenant = "";
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    e.tenant = "acme";
    q.after = NULL;

    q.kind = RK(FETCH);
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT); /* no entries */
    q.entries = es;
    q.n_entries = 1;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.kind = RK(RUN);
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.kind = RK(DONE);
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT); /* without its start */
    q.started_unix_ms = NOW;
    CHECK_EQ_INT(repair_rt(&q), 0);

    struct write_fixture f;
    write_fixture(&f);
    Flamedb__Cluster__WriteRequest *ws[1] = {&f.w};
    Flamedb__Cluster__RepairAnswer a = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.request_id = 9;
    a.writes = ws;
    a.n_writes = 1;
    a.handled = 2;
    a.unavailable = 1;
    a.entries = es;
    a.n_entries = 1;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__RepairAnswer *g = (void *)m.body;
        CHECK(g->n_writes == 1 && g->writes[0]->n_series == 1 && g->handled == 2);
        cluster_msg_free(&m);
    }
    a.unavailable = 3; /* more unavailable than handled */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    a.unavailable = 1;
    f.part.series_id ^= 1; /* a carried write must pass the write checks */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    f.part.series_id ^= 1;
    a.status = 3;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    buf_free(&f.labels);
}

/* A STREAM request of interval [10, 20) within its deadline. */
static Flamedb__Cluster__RepairRequest stream_request(void)
{
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.deadline_unix_ms = NOW + 100;
    q.kind = RK(STREAM);
    q.lo = 10;
    q.hi = 20;
    return q;
}

/* STREAM and SPANS: requests and answers, and their refusals. */
static void test_stream(void)
{
    Flamedb__Cluster__RepairRequest q = stream_request();
    uint8_t key[CLUSTER_STREAM_MAX_KEY + 1] = {0};
    q.after_key = (ProtobufCBinaryData){30, key};
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.kind = RK(SPANS);
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.after_key.len = CLUSTER_STREAM_MAX_KEY + 1;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.after_key.len = 0;
    q.lo = 21;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);

    Flamedb__Cluster__SeenEntry e = FLAMEDB__CLUSTER__SEEN_ENTRY__INIT, *es[1] = {&e};
    e.tenant = "acme";
    e.profile_id = (ProtobufCBinaryData){16, pid};
    int64_t totals[1] = {7};
    Flamedb__Cluster__StreamWindow w = FLAMEDB__CLUSTER__STREAM_WINDOW__INIT, *ws[1] = {&w};
    w.tenant = "acme";
    w.res = 4;
    w.key = (ProtobufCBinaryData){30, key};
    w.kept = es;
    w.n_kept = 1;
    w.untreed = es;
    w.n_untreed = 1;
    w.untreed_totals = totals;
    w.n_untreed_totals = 1;
    Flamedb__Cluster__StreamSpan sp = FLAMEDB__CLUSTER__STREAM_SPAN__INIT, *sps[1] = {&sp};
    sp.tenant = "acme";
    sp.key = (ProtobufCBinaryData){30, key};
    Flamedb__Cluster__RepairAnswer a = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.windows = ws;
    a.n_windows = 1;
    a.spans = sps;
    a.n_spans = 1;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__RepairAnswer *g = (void *)m.body;
        CHECK(g->n_windows == 1 && g->windows[0]->n_kept == 1 && g->n_spans == 1);
        cluster_msg_free(&m);
    }
    w.res = 5; /* no such resolution */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    w.res = 4;
    w.n_untreed_totals = 0; /* an untreed profile without its total */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    w.n_untreed_totals = 1;
    e.profile_id.len = 15;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    e.profile_id.len = 16;
    w.key.len = 0;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    w.key.len = 30;
    sp.tenant = "";
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    sp.tenant = "acme";
    /* a hashed summary (stream protocol 3): a key's tail and a hash, no
     * tenant (the key names it); its key within the bound */
    Flamedb__Cluster__StreamWindow h = FLAMEDB__CLUSTER__STREAM_WINDOW__INIT, *hs[1] = {&h};
    h.key = (ProtobufCBinaryData){9, key};
    h.key_shared = 21;
    h.summary_hash = 77;
    a.windows = hs;
    a.n_spans = 0;
    a.summary_hashes = 1;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        Flamedb__Cluster__RepairAnswer *g = (void *)m.body;
        CHECK(g->summary_hashes && g->windows[0]->key_shared == 21 &&
              g->windows[0]->summary_hash == 77);
        cluster_msg_free(&m);
    }
    h.key_shared = CLUSTER_STREAM_MAX_KEY; /* the whole key past the bound */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    h.key_shared = 21;
    h.key.len = 0;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    a.summary_hashes = 0; /* not hashed: a window without its tenant is refused */
    h.key.len = 9;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
}

/* STREAM_CHECK split into buckets (the window check): at most
 * CLUSTER_SUM_BUCKETS_MAX asked, and at most 5 sums a bucket answered. */
static void test_sum_buckets(void)
{
    Flamedb__Cluster__RepairRequest q = FLAMEDB__CLUSTER__REPAIR_REQUEST__INIT;
    q.protocol_version = CLUSTER_PROTOCOL_VERSION;
    q.deadline_unix_ms = NOW + 100;
    q.kind = RK(STREAM_CHECK);
    q.lo = 10;
    q.hi = 20;
    q.sum_buckets = CLUSTER_SUM_BUCKETS_MAX;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.sum_buckets = CLUSTER_SUM_BUCKETS_MAX + 1;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);

    static int64_t sums[5 * CLUSTER_SUM_BUCKETS_MAX + 1];
    Flamedb__Cluster__RepairAnswer a = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.sums = sums;
    a.n_sums = 5 * CLUSTER_SUM_BUCKETS_MAX;
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) cluster_msg_free(&m);
    a.n_sums++;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
}

/* A fill's tree look (stream protocol 4): a descent's fanout a power of
 * two up to CLUSTER_TREE_FANOUT_MAX with a bit for each bucket; an answer's
 * digests as many, its buckets not counted exactly below them; the answer
 * that finds a range alike packs to a few bytes. */
static void test_tree_look(void)
{
    static uint8_t bits[2 * CLUSTER_TREE_FANOUT_MAX / 8]; /* the too-wide case too */
    Flamedb__Cluster__RepairRequest q = stream_request();
    q.tree_look = 1;
    q.tree_root = 0x1234;
    q.tree_count = 300;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.tree_look = 0;
    q.tree_fanout = CLUSTER_TREE_FANOUT_MAX;
    q.tree_buckets = (ProtobufCBinaryData){CLUSTER_TREE_FANOUT_MAX / 8, bits};
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.tree_fanout = 4; /* four buckets in one byte */
    q.tree_buckets.len = 1;
    CHECK_EQ_INT(repair_rt(&q), 0);
    q.tree_fanout = 6; /* not a power of two */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.tree_fanout = 2 * CLUSTER_TREE_FANOUT_MAX;
    q.tree_buckets.len = 2 * CLUSTER_TREE_FANOUT_MAX / 8;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.tree_fanout = 16; /* too few bits */
    q.tree_buckets.len = 1;
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);
    q.tree_fanout = 0; /* buckets without a fanout */
    CHECK_EQ_INT(repair_rt(&q), ERR_INVALID_ARGUMENT);

    static uint64_t digests[2 * CLUSTER_TREE_FANOUT_MAX];
    uint32_t inexact[2] = {3, 7};
    Flamedb__Cluster__RepairAnswer a = FLAMEDB__CLUSTER__REPAIR_ANSWER__INIT;
    a.protocol_version = CLUSTER_PROTOCOL_VERSION;
    a.window_summaries = a.summary_hashes = a.tree_alike = 1;
    a.stream_version = 4;
    /* the whole answer of a range found alike: its body, a few bytes */
    CHECK(protobuf_c_message_get_packed_size(&a.base) <= 16);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) {
        CHECK(((Flamedb__Cluster__RepairAnswer *)m.body)->tree_alike);
        cluster_msg_free(&m);
    }
    a.tree_alike = 0;
    a.tree_digests = digests;
    a.n_tree_digests = 8;
    a.tree_inexact = inexact;
    a.n_tree_inexact = 2;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), 0);
    if (m.body) cluster_msg_free(&m);
    inexact[1] = 8; /* a bucket past the fanout */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    inexact[1] = 7;
    a.n_tree_digests = 12; /* not a power of two */
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
    a.n_tree_digests = CLUSTER_TREE_FANOUT_MAX * 2;
    CHECK_EQ_INT(roundtrip(T(REPAIR_ANSWER), &a.base, "c1", 0, &m, &em), ERR_INVALID_ARGUMENT);
}

/* A body writer for cluster_wire_encode_with: the message packed. */
static void write_packed(void *ctx, uint8_t *dst)
{
    protobuf_c_message_pack(ctx, dst);
}

/* cluster_wire_encode packs the body in its place in the envelope: the bytes
 * are those protobuf-c writes for the whole envelope, signed or not, with a
 * body or an empty one; cluster_wire_encode_with, whose writer puts the body
 * in place, writes the same bytes. */
static void test_envelope_bytes(void)
{
    struct write_fixture f;
    write_fixture(&f);
    Flamedb__Cluster__WriteAck a = FLAMEDB__CLUSTER__WRITE_ACK__INIT; /* packs to 0 bytes */
    digest_key_t *k = NULL;
    CHECK_EQ_INT(digest_key_new("0123456789abcdef", 16, &k), 0);
    const ProtobufCMessage *bodies[2] = {&f.w.base, &a.base};
    for (int i = 0; i < 4; i++) {
        cluster_wire_sender_t s = {"c1", "n01", i & 2 ? k : NULL};
        buf_t b;
        buf_init(&b, BUF_UNLIMITED);
        CHECK_EQ_INT(buf_append(&b, "x", 1), 0); /* appends after what out holds */
        CHECK_EQ_INT(
            cluster_wire_encode(i & 1 ? T(WRITE_ACK) : T(WRITE), &s, NOW + 7, bodies[i & 1], &b),
            0);
        Flamedb__Cluster__Envelope *e =
            flamedb__cluster__envelope__unpack(NULL, b.len - 1, b.data + 1);
        CHECK(e != NULL);
        if (e == NULL) continue;
        CHECK(e->body.len == protobuf_c_message_get_packed_size(bodies[i & 1]));
        CHECK(e->request_id == (i & 1 ? 0 : 77) && e->deadline_unix_ms == NOW + 7);
        CHECK(e->auth.len == (i & 2 ? DIGEST_SHA256_BYTES : 0));
        uint8_t whole[8192];
        size_t n = flamedb__cluster__envelope__pack(e, whole);
        CHECK(n == b.len - 1 && memcmp(whole, b.data + 1, n) == 0);
        /* the same envelope, signed the same, from a body its writer puts in place */
        buf_t w;
        buf_init(&w, BUF_UNLIMITED);
        CHECK_EQ_INT(cluster_wire_encode_with(i & 1 ? T(WRITE_ACK) : T(WRITE), &s, NOW + 7,
                                              i & 1 ? 0 : 77, e->body.len, write_packed,
                                              (void *)bodies[i & 1], &w),
                     0);
        CHECK(w.len == b.len - 1 && memcmp(w.data, b.data + 1, w.len) == 0);
        buf_free(&w);
        cluster_msg_t m;
        errmsg_t em = {{0}};
        cluster_wire_limits_t l;
        cluster_wire_limits_default(&l);
        /* the envelope's checks (its MAC with a key); an empty ack is no valid body */
        CHECK_EQ_INT(cluster_wire_decode_envelope(b.data + 1, b.len - 1, &l,
                                                  &(cluster_wire_receiver_t){"c1", s.key}, NOW, &m,
                                                  &em),
                     0);
        cluster_msg_free(&m);
        flamedb__cluster__envelope__free_unpacked(e, NULL);
        buf_free(&b);
    }
    digest_key_free(k);
    buf_free(&f.labels);
}

/* Wraps raw body bytes as a PARTIAL envelope and decodes it. */
static int partial_bytes(const uint8_t *body, size_t n, cluster_msg_t *m, errmsg_t *em)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    ProtobufCBinaryData d = {n, (uint8_t *)body};
    CHECK_EQ_INT(cluster_wire_encode_bytes(T(PARTIAL), &N01, 0, &d, &b), 0);
    int rc = cluster_wire_decode(b.data, b.len, NULL, &C1, NOW, m, em);
    buf_free(&b);
    return rc;
}

/* A PartialResult's forests are read where they lie in the envelope's body,
 * in their order wherever they stand among the other fields, and the other
 * fields as protobuf-c reads them; a body cut short or with a forest of the
 * wrong wire type is refused as before. */
static void test_partial_forests(void)
{
    Flamedb__Cluster__Symbol sy = FLAMEDB__CLUSTER__SYMBOL__INIT, *syms[1] = {&sy};
    sy.id = 5;
    sy.name = (ProtobufCBinaryData){4, (uint8_t *)"main"};
    ProtobufCBinaryData f1[2] = {{3, (uint8_t *)"abc"}, {0, NULL}}, f2[1] = {{2, (uint8_t *)"de"}};
    Flamedb__Cluster__PartialResult p = FLAMEDB__CLUSTER__PARTIAL_RESULT__INIT;
    p.protocol_version = CLUSTER_PROTOCOL_VERSION;
    p.tenant = "acme";
    p.request_id = 0; /* cluster_wire_encode_bytes's envelope carries none */
    p.forests = f1;
    p.n_forests = 2;
    p.series_count = 3;
    Flamedb__Cluster__PartialResult q = FLAMEDB__CLUSTER__PARTIAL_RESULT__INIT;
    q.symbols = syms;
    q.n_symbols = 1;
    q.forests = f2;
    q.n_forests = 1;
    q.spy_name = "gospy";
    /* p then q: a message of both, the symbols between forests */
    uint8_t body[512];
    size_t pn = flamedb__cluster__partial_result__pack(&p, body);
    size_t n = pn + flamedb__cluster__partial_result__pack(&q, body + pn);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(partial_bytes(body, n, &m, &em), 0);
    if (m.body != NULL) {
        Flamedb__Cluster__PartialResult *g = (void *)m.body;
        CHECK(g->n_forests == 3 && g->n_symbols == 1 && g->symbols[0]->id == 5);
        CHECK(g->series_count == 3 && strcmp(g->spy_name, "gospy") == 0 &&
              strcmp(g->tenant, "acme") == 0);
        const char *want[3] = {"abc", "", "de"};
        for (size_t i = 0; i < g->n_forests && i < 3; i++) {
            CHECK(g->forests[i].len == strlen(want[i]) &&
                  memcmp(g->forests[i].data, want[i], g->forests[i].len) == 0);
            /* not copied: inside the envelope's body */
            CHECK(g->forests[i].data >= m.env->body.data &&
                  g->forests[i].data + g->forests[i].len <= m.env->body.data + m.env->body.len);
        }
        cluster_msg_free(&m);
    }
    q.n_forests = 0; /* no forests: protobuf-c's unpack alone */
    n = flamedb__cluster__partial_result__pack(&q, body);
    CHECK_EQ_INT(partial_bytes(body, n, &m, &em), ERR_INVALID_ARGUMENT); /* no tenant */
    n = pn;
    CHECK_EQ_INT(partial_bytes(body, n - 1, &m, &em), ERR_UNPARSEABLE); /* a forest cut short */
    uint8_t bad[600];
    memcpy(bad, body, pn);
    bad[pn] = (14 << 3) | 0; /* field 14 as a varint */
    bad[pn + 1] = 1;
    CHECK_EQ_INT(partial_bytes(bad, pn + 2, &m, &em), ERR_UNPARSEABLE);
    bad[pn] = (14 << 3) | 7; /* no such wire type */
    CHECK_EQ_INT(partial_bytes(bad, pn + 2, &m, &em), ERR_UNPARSEABLE);
}

static int released;
static void count_release(void *p)
{
    released++;
    free(p);
}

/* Decoded in place, the body and a PartialResult's forests point into the
 * received bytes, which the message holds until it is freed; an envelope
 * with two bodies (the last one counts) or bytes that are no envelope are
 * read as protobuf-c reads them. */
static void test_in_place(void)
{
    ProtobufCBinaryData fv[2] = {{5, (uint8_t *)"hello"}, {3, (uint8_t *)"abc"}};
    Flamedb__Cluster__PartialResult p = FLAMEDB__CLUSTER__PARTIAL_RESULT__INIT;
    p.protocol_version = CLUSTER_PROTOCOL_VERSION;
    p.tenant = "acme";
    p.request_id = 4;
    p.forests = fv;
    p.n_forests = 2;
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(cluster_wire_encode(T(PARTIAL), &N01, 0, &p.base, &b), 0);
    uint8_t *raw = malloc(b.len);
    memcpy(raw, b.data, b.len);
    cluster_wire_limits_t l;
    cluster_wire_limits_default(&l);
    cluster_msg_t m;
    errmsg_t em = {{0}};
    released = 0;
    CHECK_EQ_INT(cluster_wire_decode_envelope_in_place(raw, b.len, &l, &C1, NOW, &m, &em), 0);
    cluster_msg_hold(&m, raw, count_release);
    CHECK(m.env->body.data > raw && m.env->body.data + m.env->body.len <= raw + b.len);
    CHECK_EQ_INT(cluster_wire_decode_body(&m, &l, NOW, &em), 0);
    if (m.body != NULL) {
        Flamedb__Cluster__PartialResult *g = (void *)m.body;
        CHECK(g->n_forests == 2 && g->request_id == 4 && strcmp(g->tenant, "acme") == 0);
        for (size_t i = 0; i < g->n_forests && i < 2; i++)
            CHECK(g->forests[i].len == fv[i].len &&
                  memcmp(g->forests[i].data, fv[i].data, fv[i].len) == 0 &&
                  g->forests[i].data > raw && g->forests[i].data < raw + b.len);
    }
    CHECK_EQ_INT(released, 0);
    cluster_msg_free(&m);
    CHECK_EQ_INT(released, 1);
    cluster_msg_free(&m); /* twice: nothing more */
    CHECK_EQ_INT(released, 1);

    /* two body fields: protobuf-c's reading (the last), copied */
    Flamedb__Cluster__Envelope e2 = FLAMEDB__CLUSTER__ENVELOPE__INIT;
    uint8_t two[8192];
    size_t n1 = b.len;
    memcpy(two, b.data, n1);
    e2.body = (ProtobufCBinaryData){3, (uint8_t *)"xyz"};
    size_t n = n1 + flamedb__cluster__envelope__pack(&e2, two + n1);
    CHECK_EQ_INT(cluster_wire_decode_envelope_in_place(two, n, &l, &C1, NOW, &m, &em), 0);
    CHECK(m.env->body.len == 3 && memcmp(m.env->body.data, "xyz", 3) == 0 &&
          (m.env->body.data < two || m.env->body.data >= two + n));
    cluster_msg_free(&m);
    /* cut short: refused, nothing held */
    CHECK_EQ_INT(cluster_wire_decode_envelope_in_place(b.data, b.len - 1, &l, &C1, NOW, &m, &em),
                 ERR_UNPARSEABLE);
    /* every prefix and corruption: in place as by copy */
    ring_rng_t rng;
    ring_rng_seed(&rng, 23);
    int same = 0;
    for (int k = 0; k < 3000 + (int)b.len; k++) {
        size_t len = k < (int)b.len ? (size_t)k : b.len;
        memcpy(two, b.data, b.len);
        for (int j = 0; k >= (int)b.len && j < 1 + (int)(ring_rng_next(&rng) % 4); j++)
            two[ring_rng_next(&rng) % b.len] ^= (uint8_t)(1u << (ring_rng_next(&rng) % 8));
        cluster_msg_t c, i;
        int rc = cluster_wire_decode_envelope(two, len, &l, &C1, NOW, &c, NULL);
        int ri = cluster_wire_decode_envelope_in_place(two, len, &l, &C1, NOW, &i, NULL);
        if (rc == 0) rc = cluster_wire_decode_body(&c, &l, NOW, NULL);
        if (ri == 0) ri = cluster_wire_decode_body(&i, &l, NOW, NULL);
        int eq = rc == ri;
        if (eq && rc == 0) {
            eq = c.env->body.len == i.env->body.len &&
                 memcmp(c.env->body.data, i.env->body.data, c.env->body.len) == 0;
            const Flamedb__Cluster__PartialResult *x = (void *)c.body, *y = (void *)i.body;
            eq = eq && x->n_forests == y->n_forests && strcmp(x->tenant, y->tenant) == 0;
            for (size_t f = 0; eq && f < x->n_forests; f++)
                eq = x->forests[f].len == y->forests[f].len &&
                     memcmp(x->forests[f].data, y->forests[f].data, x->forests[f].len) == 0;
        }
        same += eq;
        cluster_msg_free(&c);
        cluster_msg_free(&i);
    }
    CHECK_EQ_INT(same, 3000 + (int)b.len);
    buf_free(&b);
}

int main(void)
{
    test_seed(0);
    test_write_roundtrip();
    test_notice();
    test_envelope_refusals();
    test_query_and_results();
    test_signed_envelopes();
    test_envelope_bytes();
    test_partial_forests();
    test_in_place();
    test_decode_amplification();
    test_repair();
    test_stream();
    test_sum_buckets();
    test_tree_look();
    return check_exit();
}
