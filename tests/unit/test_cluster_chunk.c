/* Messages larger than a frame (node/cluster/chunk_int.h): cut into signed
 * CHUNK envelopes of at most a frame, put back together byte for byte; pieces
 * out of order, without their first, of a changed size or idle too long end
 * their message; a sender keeps at most two partial messages, all senders
 * together at most max_bytes. */
#include <string.h>

#include "node/cluster/chunk_int.h"
#include "test_ring_util.h"

#define NOW 1700000000000ULL
#define FRAME (64u << 10)

typedef struct pieces {
    cluster_msg_t *m;
    size_t n;
} pieces_t;

/* Splits len pseudo-random bytes signed with key and decodes every frame as a
 * receiver with key does (each at most FRAME bytes). */
static void split_decode(const digest_key_t *key, uint64_t id, const uint8_t *msg, size_t len,
                         pieces_t *out)
{
    cluster_wire_sender_t from = {"c1", "n01", key};
    cluster_wire_receiver_t to = {"c1", key};
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    cluster_chunk_frames_t f;
    CHECK_EQ_INT(cluster_chunk_split(&from, NOW + 1000, id, msg, len, FRAME, &f), ERR_OK);
    CHECK(f.n == (len + FRAME - 1) / FRAME + 1 || f.n == (len + FRAME - 1) / FRAME);
    out->m = calloc(f.n, sizeof *out->m);
    out->n = f.n;
    for (size_t i = 0; i < f.n; i++) {
        size_t at = i ? f.ends[i - 1] : 0, n = f.ends[i] - at;
        CHECK(n <= FRAME);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(cluster_wire_decode(f.bytes.data + at, n, &lim, &to, NOW, &out->m[i], &em),
                     ERR_OK);
        CHECK_EQ_INT((int)out->m[i].env->type, FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_CHUNK);
    }
    cluster_chunk_frames_free(&f);
}

static void pieces_free(pieces_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        cluster_msg_free(&p->m[i]);
    free(p->m);
}

static const Flamedb__Cluster__Chunk *piece(const pieces_t *p, size_t i)
{
    return (const Flamedb__Cluster__Chunk *)p->m[i].body;
}

static uint8_t *random_bytes(size_t n)
{
    static uint64_t x = 0x9e3779b97f4a7c15ULL;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    return b;
}

static void test_split_and_join(void)
{
    digest_key_t *key = NULL;
    CHECK_EQ_INT(digest_key_new("0123456789abcdef", 16, &key), 0);
    size_t len = 5 * FRAME + 123;
    uint8_t *msg = random_bytes(len);
    pieces_t p;
    split_decode(key, 77, msg, len, &p);
    CHECK(p.n >= 6);
    cluster_chunks_t cs = {0};
    buf_t whole = {0};
    errmsg_t em = {{0}};
    for (size_t i = 0; i + 1 < p.n; i++)
        CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&p, i), 10, &whole, &em), 0);
    CHECK(cs.stats.bytes_held > 0 && cs.stats.bytes_held < len);
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&p, p.n - 1), 10, &whole, &em), 1);
    CHECK(whole.len == len && memcmp(whole.data, msg, len) == 0);
    CHECK(cs.stats.bytes_held == 0 && cs.n == 0 && cs.stats.messages == 1);

    /* a piece lost: the next one ends the message; a later piece alone is refused */
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&p, 0), 20, &whole, &em), 0);
    CHECK(cluster_chunks_add(&cs, "n01", piece(&p, 2), 20, &whole, &em) < 0);
    CHECK(cs.n == 0 && cs.stats.dropped == 1 && cs.stats.bytes_held == 0);
    CHECK(cluster_chunks_add(&cs, "n01", piece(&p, 3), 20, &whole, &em) < 0);
    CHECK(cs.n == 0);

    /* a first piece again starts over */
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&p, 0), 30, &whole, &em), 0);
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&p, 0), 30, &whole, &em), 0);
    CHECK(cs.n == 1 && cs.stats.dropped == 2);

    /* idle past the expiry: dropped */
    cluster_chunks_expire(&cs, 100, 80);
    CHECK(cs.n == 1);
    cluster_chunks_expire(&cs, 110, 80);
    CHECK(cs.n == 0 && cs.stats.bytes_held == 0);

    buf_free(&whole);
    cluster_chunks_free(&cs);
    pieces_free(&p);
    free(msg);
    digest_key_free(key);
}

/* A message of len random bytes (returned), split unsigned as message ids
 * 1, 2 and 3 into a, b and c: the same message from three sends. */
static uint8_t *split3(size_t len, pieces_t *a, pieces_t *b, pieces_t *c)
{
    uint8_t *msg = random_bytes(len);
    split_decode(NULL, 1, msg, len, a);
    split_decode(NULL, 2, msg, len, b);
    split_decode(NULL, 3, msg, len, c);
    return msg;
}

static void split3_free(uint8_t *msg, pieces_t *a, pieces_t *b, pieces_t *c)
{
    pieces_free(a);
    pieces_free(b);
    pieces_free(c);
    free(msg);
}

/* A sender keeps two partial messages; a third first piece drops its oldest.
 * Another sender's are its own. A piece whose size differs from its first's
 * ends the message. */
static void test_partials_bounded(void)
{
    size_t len = 2 * FRAME + 5;
    pieces_t a, b, c;
    uint8_t *msg = split3(len, &a, &b, &c);
    cluster_chunks_t cs = {0};
    buf_t whole = {0};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&a, 0), 1, &whole, &em), 0);
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&b, 0), 2, &whole, &em), 0);
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n02", piece(&a, 0), 3, &whole, &em), 0);
    CHECK(cs.n == 3);
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&c, 0), 4, &whole, &em), 0);
    CHECK(cs.n == 3 && cs.stats.dropped == 1);
    /* message 1 of n01 went: its next piece is refused; n02's goes on */
    CHECK(cluster_chunks_add(&cs, "n01", piece(&a, 1), 5, &whole, &em) < 0);
    for (size_t i = 1; i < a.n; i++)
        CHECK_EQ_INT(cluster_chunks_add(&cs, "n02", piece(&a, i), 6, &whole, &em),
                     i + 1 == a.n ? 1 : 0);
    CHECK(whole.len == len && memcmp(whole.data, msg, len) == 0);

    /* a piece announcing another size than its first */
    Flamedb__Cluster__Chunk odd = *piece(&b, 1);
    odd.total_bytes++;
    CHECK(cluster_chunks_add(&cs, "n01", &odd, 7, &whole, &em) < 0);
    CHECK(cs.n == 1); /* only n01's message 3 is left */
    buf_free(&whole);
    cluster_chunks_free(&cs);
    CHECK(cs.n == 0 && cs.v == NULL);
    split3_free(msg, &a, &b, &c);
}

/* max_bytes bounds the bytes reserved for partial messages, over all
 * senders: a first piece whose whole would pass it drops its message once
 * (ERR_LIMIT, counted), its later pieces pass without being kept and without
 * an answer; once a held message is whole, its room is free again. */
static void test_budget(void)
{
    size_t len = 3 * FRAME + 7;
    pieces_t a, b, c;
    uint8_t *msg = split3(len, &a, &b, &c);
    cluster_chunks_t cs = {0};
    cs.max_bytes = len + len / 2; /* one message, not two */
    buf_t whole = {0};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&a, 0), 1, &whole, &em), 0);
    CHECK(cs.stats.bytes_reserved == len);
    /* n02's message would pass the budget: dropped at its first piece */
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n02", piece(&b, 0), 2, &whole, &em), ERR_LIMIT);
    CHECK(strstr(em.text, "chunk-receive-max-bytes") != NULL);
    CHECK(cs.stats.over_budget == 1 && cs.stats.dropped == 1 && cs.stats.bytes_reserved == len);
    for (size_t i = 1; i < b.n; i++) /* its other pieces: taken, nothing kept, no message */
        CHECK_EQ_INT(cluster_chunks_add(&cs, "n02", piece(&b, i), 3, &whole, &em), 0);
    CHECK(cs.n == 1 && cs.stats.over_budget == 1 && cs.stats.bytes_held < len);
    CHECK(whole.len == 0);
    for (size_t i = 1; i < a.n; i++)
        CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&a, i), 4, &whole, &em),
                     i + 1 == a.n ? 1 : 0);
    CHECK(whole.len == len && memcmp(whole.data, msg, len) == 0);
    CHECK(cs.n == 0 && cs.stats.bytes_reserved == 0 && cs.stats.bytes_held == 0);
    /* the room is back: n02's next message fits */
    for (size_t i = 0; i < c.n; i++)
        CHECK_EQ_INT(cluster_chunks_add(&cs, "n02", piece(&c, i), 5, &whole, &em),
                     i + 1 == c.n ? 1 : 0);
    CHECK(whole.len == len && cs.stats.messages == 2 && cs.stats.over_budget == 1);
    /* a message larger than the whole budget never fits */
    cs.max_bytes = len - 1;
    CHECK_EQ_INT(cluster_chunks_add(&cs, "n01", piece(&a, 0), 6, &whole, &em), ERR_LIMIT);
    CHECK(cs.stats.over_budget == 2 && cs.stats.bytes_reserved == 0);
    buf_free(&whole);
    cluster_chunks_free(&cs);
    split3_free(msg, &a, &b, &c);
}

/* What the wire checks of a piece before it is kept. */
static void test_piece_refusals(void)
{
    cluster_wire_limits_t lim;
    cluster_wire_limits_default(&lim);
    lim.max_bytes = 1u << 20;
    cluster_wire_sender_t from = {"c1", "n01", NULL};
    cluster_wire_receiver_t to = {"c1", NULL};
    uint8_t data[8] = {0};
    struct {
        uint32_t index, count;
        uint64_t total;
        size_t len;
    } bad[] = {
        {0, 1, 8, 8},          /* one piece is no chunking */
        {2, 2, 8, 4},          /* index past count */
        {0, 2, (2u << 20), 8}, /* whole over max_bytes */
        {0, 2, 8, 0},          /* empty piece */
        {0, 2, 4, 8},          /* piece larger than the whole */
        {0, 1000, 8, 8},       /* more pieces than bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Flamedb__Cluster__Chunk c = FLAMEDB__CLUSTER__CHUNK__INIT;
        c.message_id = 1;
        c.index = bad[i].index;
        c.count = bad[i].count;
        c.total_bytes = bad[i].total;
        c.data = (ProtobufCBinaryData){bad[i].len, data};
        buf_t b;
        buf_init(&b, 1 << 16);
        CHECK_EQ_INT(cluster_wire_encode(FLAMEDB__CLUSTER__MSG_TYPE__MSG_TYPE_CHUNK, &from, NOW,
                                         &c.base, &b),
                     ERR_OK);
        cluster_msg_t m;
        errmsg_t em = {{0}};
        CHECK(cluster_wire_decode(b.data, b.len, &lim, &to, NOW - 1, &m, &em) < 0);
        buf_free(&b);
    }
    /* a frame too small to hold a piece */
    cluster_chunk_frames_t f;
    uint8_t msg[1024] = {0};
    CHECK_EQ_INT(cluster_chunk_split(&from, NOW, 1, msg, sizeof msg, 300, &f),
                 ERR_INVALID_ARGUMENT);
}

int main(void)
{
    test_seed(0);
    test_split_and_join();
    test_partials_bounded();
    test_piece_refusals();
    test_budget();
    return check_exit();
}
