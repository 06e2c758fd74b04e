/* test_ingest_wire.c — the pprof wire reader (node/ingest/ingest_wire.c).
 *
 * Hand-written protobuf bytes: packed and unpacked repeated varints (and a
 * mix of both) read alike, unknown fields of every wire type are skipped,
 * truncated or over-long varints, lengths past the end, groups and known
 * fields of the wrong wire type are refused (422, as protobuf-c refused
 * them), ids out of range get their own reason, zero-length messages read
 * as all defaults. Then a differential check: for mutations of a valid
 * message, the reader accepts exactly what the protobuf-c decoder accepts.
 */
#include "common/proto/pprof.pb-c.h"
#include "common/varint.h"
#include "node/ingest/ingest_int.h"
#include "test_ingest_util.h"

#define CPU_T "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define SAMPLES_T "process_cpu:samples:count:cpu:nanoseconds"

/* ---- a tiny protobuf writer ---- */

typedef struct w {
    uint8_t b[4096];
    size_t n;
} w_t;

static void w_varint(w_t *w, uint64_t v)
{
    w->n += varint_put_u(w->b + w->n, v);
}

static void w_tag(w_t *w, uint32_t num, uint32_t type)
{
    w_varint(w, (uint64_t)num << 3 | type);
}

static void w_u(w_t *w, uint32_t num, uint64_t v)
{
    w_tag(w, num, 0);
    w_varint(w, v);
}

static void w_bytes(w_t *w, uint32_t num, const void *p, size_t n)
{
    w_tag(w, num, 2);
    w_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_msg(w_t *w, uint32_t num, const w_t *m)
{
    w_bytes(w, num, m->b, m->n);
}

static void w_str(w_t *w, const char *s)
{
    w_bytes(w, 6, s, strlen(s));
}

/* Packed run of field num. */
static void w_packed(w_t *w, uint32_t num, const uint64_t *v, size_t n)
{
    w_t r = {.n = 0};
    for (size_t i = 0; i < n; i++)
        w_varint(&r, v[i]);
    w_msg(w, num, &r);
}

/* strings: 0 "", 1 cpu, 2 nanoseconds, 3 main, 4 foo, 5 main.go, 6 samples, 7 count */
static void w_strings(w_t *w)
{
    const char *s[] = {"", "cpu", "nanoseconds", "main", "foo", "main.go", "samples", "count"};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        w_str(w, s[i]);
}

static void w_value_type(w_t *w, uint32_t num, uint64_t type, uint64_t unit)
{
    w_t m = {.n = 0};
    w_u(&m, 1, type);
    w_u(&m, 2, unit);
    w_msg(w, num, &m);
}

static void w_function(w_t *w, uint64_t id, uint64_t name, uint64_t file)
{
    w_t m = {.n = 0};
    w_u(&m, 1, id);
    w_u(&m, 2, name);
    w_u(&m, 4, file);
    w_msg(w, 5, &m);
}

/* Location id with the given lines' function ids (line[0] innermost). */
static void w_location(w_t *w, uint64_t id, const uint64_t *fns, size_t n)
{
    w_t m = {.n = 0};
    w_u(&m, 1, id);
    for (size_t i = 0; i < n; i++) {
        w_t l = {.n = 0};
        w_u(&l, 1, fns[i]);
        w_u(&l, 2, 10 + i);
        w_msg(&m, 4, &l);
    }
    w_msg(w, 4, &m);
}

/* The header every profile here has: strings, samples/count and
 * cpu/nanoseconds types, functions main (1) and foo (2), location 1 = main,
 * location 2 = foo inlined into main. */
static void w_header(w_t *w)
{
    w_strings(w);
    w_value_type(w, 1, 6, 7);
    w_value_type(w, 1, 1, 2);
    w_value_type(w, 11, 1, 2);
    w_u(w, 12, 10000000);
    w_function(w, 1, 3, 5);
    w_function(w, 2, 4, 5);
    w_location(w, 1, (uint64_t[]){1}, 1);
    w_location(w, 2, (uint64_t[]){2, 1}, 2);
}

static int parse(const w_t *w, ingest_profile_t **p, errmsg_t *em)
{
    ingest_request_t r = test_req("svc", "pprof", w->b, w->n);
    return test_parse(&r, NULL, p, em);
}

/* Parses w and checks series cpu has main;main;foo = cpu and samples = n. */
static void expect_stack(const w_t *w, int64_t cpu, int64_t n)
{
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(parse(w, &p, &em), 0);
    if (p == NULL) {
        fprintf(stderr, "refused: %s\n", em.text);
        return;
    }
    size_t ns;
    CHECK_EQ_INT(test_type_total(p, CPU_T, &ns), cpu);
    CHECK_EQ_INT(test_type_total(p, SAMPLES_T, &ns), n);
    int s = test_find(p, CPU_T, NULL, NULL);
    CHECK(s >= 0);
    if (s >= 0) CHECK_EQ_INT(test_path_total(p, (size_t)s, "main", "main", "foo", NULL), cpu);
    ingest_profile_free(p);
}

static void expect_refused(const w_t *w, int code, const char *why)
{
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(parse(w, &p, &em), code);
    if (strstr(em.text, why) == NULL) fprintf(stderr, "reason '%s' lacks '%s'\n", em.text, why);
    CHECK(strstr(em.text, why) != NULL);
    ingest_profile_free(p);
}

/* One sample at locations [2, 1], values {1, 100}: packed, unpacked, mixed. */
static void test_packed_and_unpacked(void)
{
    w_t w = {.n = 0};
    w_header(&w);
    w_t s = {.n = 0};
    w_packed(&s, 1, (uint64_t[]){2, 1}, 2);
    w_packed(&s, 2, (uint64_t[]){1, 100}, 2);
    w_msg(&w, 2, &s);
    expect_stack(&w, 100, 1);

    w = (w_t){.n = 0};
    w_header(&w);
    s = (w_t){.n = 0};
    w_u(&s, 1, 2);
    w_u(&s, 2, 1);
    w_u(&s, 1, 1);
    w_u(&s, 2, 100);
    w_msg(&w, 2, &s);
    expect_stack(&w, 100, 1);

    w = (w_t){.n = 0};
    w_header(&w);
    s = (w_t){.n = 0};
    w_u(&s, 2, 1);
    w_packed(&s, 1, (uint64_t[]){2}, 1);
    w_packed(&s, 2, (uint64_t[]){100}, 1);
    w_u(&s, 1, 1);
    w_msg(&w, 2, &s);
    w_msg(&w, 2, &s); /* twice: 200 */
    expect_stack(&w, 200, 2);
}

/* Unknown fields of every wire type, at every level, are skipped. */
static void test_unknown_fields(void)
{
    w_t w = {.n = 0};
    w_u(&w, 100, 7);
    w_tag(&w, 101, 1); /* fixed64 */
    memcpy(w.b + w.n, "12345678", 8);
    w.n += 8;
    w_tag(&w, 102, 5); /* fixed32 */
    memcpy(w.b + w.n, "1234", 4);
    w.n += 4;
    w_bytes(&w, 103, "xyz", 3);
    w_header(&w);
    w_t s = {.n = 0};
    w_bytes(&s, 9, "\x08\x01", 2);
    w_packed(&s, 1, (uint64_t[]){2, 1}, 2);
    w_u(&s, 15, 3);
    w_packed(&s, 2, (uint64_t[]){1, 100}, 2);
    w_msg(&w, 2, &s);
    w_t l = {.n = 0}; /* an unreferenced location with an unknown field */
    w_u(&l, 1, 3);
    w_u(&l, 20, 1);
    w_msg(&w, 4, &l);
    expect_stack(&w, 100, 1);
}

/* protobuf-c reads a bool of any wire type; so does the reader (the
 * mapping's has_* flags, the location's is_folded). */
static void test_bools_of_any_wire_type(void)
{
    w_t w = {.n = 0}, m = {.n = 0}, s = {.n = 0};
    w_header(&w);
    w_u(&m, 1, 1);
    w_tag(&m, 7, 5); /* has_functions as fixed32 */
    memcpy(m.b + m.n, "\x01\x00\x00\x00", 4);
    m.n += 4;
    w_bytes(&m, 8, "\x01", 1); /* has_filenames length-delimited */
    w_tag(&m, 9, 1);           /* has_line_numbers as fixed64 */
    memcpy(m.b + m.n, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
    m.n += 8;
    w_msg(&w, 3, &m);
    w_packed(&s, 1, (uint64_t[]){2, 1}, 2);
    w_packed(&s, 2, (uint64_t[]){1, 100}, 2);
    w_msg(&w, 2, &s);
    expect_stack(&w, 100, 1);
    Perftools__Profiles__Profile *pc = perftools__profiles__profile__unpack(NULL, w.n, w.b);
    CHECK(pc != NULL);
    if (pc != NULL) perftools__profiles__profile__free_unpacked(pc, NULL);
}

static void header_and(w_t *w, const uint8_t *tail, size_t n)
{
    *w = (w_t){.n = 0};
    w_header(w);
    memcpy(w->b + w->n, tail, n);
    w->n += n;
}

static void test_malformed(void)
{
    const char *why = "not a pprof protobuf";
    w_t w;
    header_and(&w, (const uint8_t *)"\x48\xff", 2); /* time_nanos: truncated varint */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    /* an 11-byte varint */
    header_and(&w, (const uint8_t *)"\x48\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x12\x05\x08\x01", 4); /* a sample past the end */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x12\x02\x08\xff", 4); /* truncated varint inside */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x12\x03\x0a\x01\xff", 5); /* packed run cut short */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    /* a packed location id of 11 bytes (a sample: field 1 packed, 11 bytes) */
    header_and(&w, (const uint8_t *)"\x12\x0d\x0a\x0b\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
               15);
    expect_refused(&w, ERR_UNPARSEABLE, why);
    /* 10 bytes is a varint: the message is read (the sample lacks values) */
    header_and(&w, (const uint8_t *)"\x12\x0c\x0a\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14);
    expect_refused(&w, ERR_UNPARSEABLE, "has 0 values");
    header_and(&w, (const uint8_t *)"\x30\x01", 2); /* string_table as a varint */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x4a\x00", 2); /* time_nanos length-delimited */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x12\x02\x1d\x00", 4); /* label as fixed32 */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\xa3\x06\xa4\x06", 4); /* a group (field 100) */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\xa6\x06", 2); /* wire type 6 */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x00\x00", 2); /* field number 0 */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\x05\x00", 2); /* field number 0, wire type 5 */
    expect_refused(&w, ERR_UNPARSEABLE, why);
    header_and(&w, (const uint8_t *)"\xa1\x06\x01\x02", 4); /* fixed64 cut short */
    expect_refused(&w, ERR_UNPARSEABLE, why);
}

static void test_out_of_range(void)
{
    w_t w = {.n = 0}, s = {.n = 0};
    w_header(&w);
    w_packed(&s, 1, (uint64_t[]){9}, 1);
    w_packed(&s, 2, (uint64_t[]){1, 1}, 2);
    w_msg(&w, 2, &s);
    expect_refused(&w, ERR_UNPARSEABLE, "unknown location 9");

    w = (w_t){.n = 0};
    w_header(&w);
    w_location(&w, 3, (uint64_t[]){7}, 1);
    s = (w_t){.n = 0};
    w_packed(&s, 1, (uint64_t[]){3}, 1);
    w_packed(&s, 2, (uint64_t[]){1, 1}, 2);
    w_msg(&w, 2, &s);
    expect_refused(&w, ERR_UNPARSEABLE, "unknown function 7");

    w = (w_t){.n = 0};
    w_header(&w);
    w_function(&w, 3, 99, 0);
    w_location(&w, 3, (uint64_t[]){3}, 1);
    w_msg(&w, 2, &s);
    expect_refused(&w, ERR_UNPARSEABLE, "string index out of range: 99");

    w = (w_t){.n = 0};
    w_header(&w);
    w_t l = {.n = 0};
    w_u(&l, 1, 3);
    w_u(&l, 2, 5); /* mapping 5 does not exist */
    w_msg(&w, 4, &l);
    w_msg(&w, 2, &s);
    expect_refused(&w, ERR_UNPARSEABLE, "unknown mapping 5");

    w = (w_t){.n = 0};
    w_header(&w);
    s = (w_t){.n = 0};
    w_packed(&s, 1, (uint64_t[]){1}, 1);
    w_t lab = {.n = 0};
    w_u(&lab, 1, 3);
    w_u(&lab, 2, 1000); /* label value past the table */
    w_msg(&s, 3, &lab);
    w_packed(&s, 2, (uint64_t[]){1, 1}, 2);
    w_msg(&w, 2, &s);
    expect_refused(&w, ERR_UNPARSEABLE, "string index out of range: 1000");
}

/* Zero-length messages are all defaults: a location of id 3 alone is shown
 * by address (0x0); an empty function is unreferenced; an empty sample has
 * no values (refused); an empty period_type leaves an empty period. */
static void test_zero_length(void)
{
    w_t w = {.n = 0}, s = {.n = 0};
    w_header(&w);
    w_bytes(&w, 5, "", 0);
    w_bytes(&w, 3, "", 0);
    w_bytes(&w, 4, "\x08\x03", 2);
    w_packed(&s, 1, (uint64_t[]){3}, 1);
    w_packed(&s, 2, (uint64_t[]){1, 5}, 2);
    w_msg(&w, 2, &s);
    ingest_profile_t *p;
    errmsg_t em;
    CHECK_EQ_INT(parse(&w, &p, &em), 0);
    if (p != NULL) {
        int k = test_find(p, CPU_T, NULL, NULL);
        CHECK(k >= 0);
        if (k >= 0) CHECK_EQ_INT(test_path_total(p, (size_t)k, "0x0", NULL), 5);
        ingest_profile_free(p);
    }
    w_bytes(&w, 2, "", 0);
    expect_refused(&w, ERR_UNPARSEABLE, "has 0 values");

    w = (w_t){.n = 0}; /* only the empty string: a profile of nothing */
    w_str(&w, "");
    CHECK_EQ_INT(parse(&w, &p, &em), 0);
    if (p != NULL) CHECK_EQ_INT(ingest_profile_write(p)->nseries, 0);
    ingest_profile_free(p);
    w = (w_t){.n = 0}; /* no string table at all */
    w_bytes(&w, 2, "", 0);
    expect_refused(&w, ERR_UNPARSEABLE, "string_table[0]");
}

/* The reader and protobuf-c agree on which messages are well-formed. */
/* A packed run's varints of up to 10 bytes are read and an 11-byte one
 * refused wherever it starts: after 0 to 19 one-byte ids, followed by 0 to
 * 8 more, in runs long enough that the reader checks them a word at a
 * time. Decided as protobuf-c decides. */
static void test_long_varint_anywhere(void)
{
    size_t checked = 0;
    for (size_t lead = 0; lead < 20; lead++)
        for (size_t cont = 7; cont <= 11; cont++)
            for (size_t tail = 0; tail <= 8; tail++) {
                uint8_t run[64];
                size_t n = 0;
                for (size_t k = 0; k < lead; k++)
                    run[n++] = 0x01;
                for (size_t k = 0; k < cont; k++)
                    run[n++] = 0x81;
                run[n++] = 0x01;
                for (size_t k = 0; k < tail; k++)
                    run[n++] = 0x02;
                w_t w = {.n = 0}, smp = {.n = 0};
                w_header(&w);
                w_bytes(&smp, 1, run, n); /* location ids */
                w_packed(&smp, 2, (uint64_t[]){1, 100}, 2);
                w_msg(&w, 2, &smp);
                Perftools__Profiles__Profile *pc =
                    perftools__profiles__profile__unpack(NULL, w.n, w.b);
                wire_profile_t wp;
                int rc = ingest_wire_open(&wp, w.b, w.n);
                CHECK_EQ_INT(rc == 0, cont < 10); /* a varint is at most 10 bytes */
                CHECK_EQ_INT(rc == 0, pc != NULL);
                if (pc != NULL) perftools__profiles__profile__free_unpacked(pc, NULL);
                checked++;
            }
    CHECK_EQ_INT(checked, 20 * 5 * 9);
}

static void test_same_as_protobuf_c(void)
{
    w_t base = {.n = 0}, s = {.n = 0};
    w_header(&base);
    w_packed(&s, 1, (uint64_t[]){2, 1}, 2);
    w_packed(&s, 2, (uint64_t[]){1, 300}, 2);
    w_t lab = {.n = 0};
    w_u(&lab, 1, 3);
    w_u(&lab, 2, 4);
    w_msg(&s, 3, &lab);
    w_msg(&base, 2, &s);
    w_t m = {.n = 0}; /* a mapping: bools, which protobuf-c reads whatever their wire type */
    w_u(&m, 1, 1);
    w_u(&m, 2, 0x400000);
    w_u(&m, 5, 5);
    w_u(&m, 7, 1);
    w_u(&m, 10, 1);
    w_msg(&base, 3, &m);
    w_u(&base, 9, 1700000000000000000ULL);
    uint64_t seed = 42;
    size_t agree = 0, accepted = 0, n = 20000;
    for (size_t it = 0; it < n; it++) {
        w_t m = base;
        size_t flips = 1 + it % 3;
        for (size_t k = 0; k < flips; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(seed >> 33) % m.n;
            m.b[at] =
                it % 7 == 0 ? (uint8_t)(seed >> 20) : (uint8_t)(m.b[at] ^ (1u << (seed >> 60) % 8));
        }
        if (it % 5 == 0) m.n = (size_t)(seed >> 40) % m.n; /* and a truncation */
        Perftools__Profiles__Profile *pc = perftools__profiles__profile__unpack(NULL, m.n, m.b);
        wire_profile_t wp;
        int rc = ingest_wire_open(&wp, m.b, m.n);
        if ((pc != NULL) == (rc == 0))
            agree++;
        else
            fprintf(stderr, "disagree at %zu: protobuf-c %s, reader %d\n", it,
                    pc ? "accepts" : "refuses", rc);
        if ((pc != NULL) != (rc == 0) && getenv("WIRE_DUMP")) {
            for (size_t k = 0; k < m.n; k++)
                fprintf(stderr, "%s%02x", m.b[k] != base.b[k] ? "*" : "", m.b[k]);
            fprintf(stderr, " n=%zu/%zu\n", m.n, base.n);
        }
        accepted += rc == 0;
        if (pc != NULL) perftools__profiles__profile__free_unpacked(pc, NULL);
    }
    fprintf(stderr, "%zu mutations: %zu agree, %zu accepted\n", n, agree, accepted);
    CHECK_EQ_INT(agree, n);
    CHECK(accepted > n / 20 && accepted < n - n / 20); /* both outcomes are exercised */
}

int main(void)
{
    test_packed_and_unpacked();
    test_unknown_fields();
    test_bools_of_any_wire_type();
    test_malformed();
    test_out_of_range();
    test_zero_length();
    test_long_varint_anywhere();
    test_same_as_protobuf_c();
    return check_exit();
}
