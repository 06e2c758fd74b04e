/* test_query_encode.c — the encoders: flamebearer JSON (Pyroscope's own
 * example reproduced, its average for in-use types, and random trees decoded back to the same
 * tree), folded text, and gzipped pprof re-parsed with protobuf-c (and opened with `go tool pprof`
 * when Go is installed). Prints its seed; argv[1] replays. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/proto/pprof.pb-c.h"
#include "query/query.h"
#include "query/query_int.h"
#include "tests/unit/check.h"

/* ---- a minimal JSON reader, enough to decode what the encoder writes ---- */
typedef struct jv {
    char type; /* o a n s l */
    long long num;
    char *str;
    size_t n;
    char **keys;
    struct jv **items;
} jv_t;

static jv_t *jparse(const char **p);

static void jws(const char **p)
{
    while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r')
        (*p)++;
}

static char *jstr(const char **p)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    (*p)++;
    while (**p && **p != '"') {
        if (**p == '\\') {
            (*p)++;
            char c = **p;
            if (c == 'u') {
                unsigned v =
                    (unsigned)strtoul((char[5]){(*p)[1], (*p)[2], (*p)[3], (*p)[4], 0}, NULL, 16);
                *p += 4;
                if (v < 0x80)
                    buf_append_byte(&b, (uint8_t)v);
                else if (v < 0x800)
                    buf_append_byte(&b, (uint8_t)(0xc0 | v >> 6)),
                        buf_append_byte(&b, (uint8_t)(0x80 | (v & 63)));
                else
                    buf_append_byte(&b, (uint8_t)(0xe0 | v >> 12)),
                        buf_append_byte(&b, (uint8_t)(0x80 | ((v >> 6) & 63))),
                        buf_append_byte(&b, (uint8_t)(0x80 | (v & 63)));
            } else {
                buf_append_byte(&b, (uint8_t)(c == 'n'   ? '\n'
                                              : c == 't' ? '\t'
                                              : c == 'r' ? '\r'
                                              : c == 'b' ? '\b'
                                              : c == 'f' ? '\f'
                                                         : c));
            }
            (*p)++;
            continue;
        }
        buf_append_byte(&b, (uint8_t) * (*p)++);
    }
    if (**p == '"') (*p)++;
    buf_append(&b, "", 0);
    return (char *)b.data;
}

static jv_t *jnew(char type)
{
    jv_t *v = calloc(1, sizeof *v);
    v->type = type;
    return v;
}

static void jpush(jv_t *v, char *key, jv_t *item)
{
    v->keys = realloc(v->keys, (v->n + 1) * sizeof *v->keys);
    v->items = realloc(v->items, (v->n + 1) * sizeof *v->items);
    v->keys[v->n] = key;
    v->items[v->n++] = item;
}

static jv_t *jparse(const char **p)
{
    jws(p);
    jv_t *v;
    if (**p == '{' || **p == '[') {
        char close = **p == '{' ? '}' : ']';
        v = jnew(**p == '{' ? 'o' : 'a');
        (*p)++;
        jws(p);
        while (**p && **p != close) {
            char *key = NULL;
            if (v->type == 'o') {
                key = jstr(p);
                jws(p);
                if (**p != ':') return NULL;
                (*p)++;
            }
            jv_t *item = jparse(p);
            if (item == NULL) return NULL;
            jpush(v, key, item);
            jws(p);
            if (**p == ',') (*p)++, jws(p);
        }
        if (**p != close) return NULL;
        (*p)++;
    } else if (**p == '"') {
        v = jnew('s');
        v->str = jstr(p);
    } else if (strncmp(*p, "null", 4) == 0) {
        v = jnew('l');
        *p += 4;
    } else {
        char *end;
        v = jnew('n');
        v->num = strtoll(*p, &end, 10);
        if (end == *p) return NULL;
        *p = end;
    }
    return v;
}

static jv_t *jget(const jv_t *o, const char *key)
{
    for (size_t i = 0; o && o->type == 'o' && i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0) return o->items[i];
    return NULL;
}

static void jfree(jv_t *v)
{
    if (v == NULL) return;
    for (size_t i = 0; i < v->n; i++) {
        free(v->keys[i]);
        jfree(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->str);
    free(v);
}

/* ---- decoding levels back into folded text ---- */
typedef struct fnode {
    long long x, total, self, name;
} fnode_t;

static fnode_t *decode_level(const jv_t *lv, size_t *n)
{
    *n = lv->n / 4;
    fnode_t *v = calloc(*n + 1, sizeof *v);
    long long x = 0;
    for (size_t i = 0; i < *n; i++) {
        x += lv->items[4 * i]->num;
        v[i] = (fnode_t){x, lv->items[4 * i + 1]->num, lv->items[4 * i + 2]->num,
                         lv->items[4 * i + 3]->num};
        x += v[i].total;
    }
    return v;
}

static void refold(const jv_t *names, fnode_t **lv, size_t *ln, size_t nlv, size_t d, size_t i,
                   buf_t *path, buf_t *out)
{
    size_t len = path->len;
    fnode_t *nd = &lv[d][i];
    if (d > 0) {
        if (d > 1) buf_append_byte(path, ';');
        buf_append_str(path, names->items[nd->name]->str);
    }
    if (nd->self != 0) buf_printf(out, "%s %lld\n", d ? (char *)path->data : "total", nd->self);
    if (d + 1 < nlv)
        for (size_t k = 0; k < ln[d + 1]; k++) {
            fnode_t *c = &lv[d + 1][k];
            if (c->x >= nd->x + nd->self && c->x < nd->x + nd->total)
                refold(names, lv, ln, nlv, d + 1, k, path, out);
        }
    path->len = len;
    if (path->data) path->data[len] = 0;
}

/* Decodes a flamebearer body into folded text; checks its invariants. */
static char *flamebearer_to_folded(const char *json, long long *num_ticks, long long *max_self)
{
    const char *p = json;
    jv_t *root = jparse(&p);
    CHECK(root != NULL);
    if (root == NULL) return strdup("");
    jws(&p);
    CHECK(*p == 0);
    CHECK_EQ_INT(jget(root, "version")->num, 1);
    jv_t *fb = jget(root, "flamebearer");
    jv_t *names = jget(fb, "names"), *levels = jget(fb, "levels");
    CHECK_EQ_STR(names->items[0]->str, "total");
    for (size_t i = 0; i < names->n; i++)
        for (size_t j = i + 1; j < names->n; j++)
            CHECK(strcmp(names->items[i]->str, names->items[j]->str) != 0); /* deduplicated */
    *num_ticks = jget(fb, "numTicks")->num;
    *max_self = jget(fb, "maxSelf")->num;
    size_t nlv = levels->n, *ln = calloc(nlv + 1, sizeof *ln);
    fnode_t **lv = calloc(nlv + 1, sizeof *lv);
    for (size_t d = 0; d < nlv; d++)
        lv[d] = decode_level(levels->items[d], &ln[d]);
    buf_t path, out;
    buf_init(&path, BUF_UNLIMITED);
    buf_init(&out, BUF_UNLIMITED);
    buf_append(&out, "", 0);
    if (nlv > 0) refold(names, lv, ln, nlv, 0, 0, &path, &out);
    for (size_t d = 0; d < nlv; d++)
        free(lv[d]);
    free(lv);
    free(ln);
    buf_free(&path);
    jfree(root);
    return (char *)out.data;
}

/* ---- fixtures ---- */
static uint64_t sym(symtab_t *s, const char *name, const char *file)
{
    uint64_t id;
    symtab_intern(s, name, strlen(name), file, strlen(file), &id);
    return id;
}

static void add(calltree_t *t, symtab_t *s, const char *folded_stack, int64_t v)
{
    uint64_t ids[64];
    size_t n = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", folded_stack);
    for (char *tok = strtok(buf, ";"); tok && n < 64; tok = strtok(NULL, ";"))
        ids[n++] = sym(s, tok, "src/app.go");
    CHECK_EQ_INT(calltree_add_stack(t, ids, n, v), 0);
}

static char *folded_of(const calltree_t *t, const symtab_t *s)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_folded(t, s, &b), 0);
    /* measured first: one buffer of exactly its size and the NUL */
    if (b.len > 0) CHECK_EQ_INT(b.cap, b.len + 1);
    buf_append(&b, "", 0);
    return (char *)b.data;
}

/* Pyroscope's own example (webapp TestData.ts "SimpleGoApp"). */
static void test_pyroscope_example(void)
{
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "runtime.main;main.fastFunction;main.work", 214);
    add(t, s, "runtime.main;main.main", 2);
    add(t, s, "runtime.main;main.main;main.fastFunction", 1);
    add(t, s, "runtime.main;main.slowFunction;main.work", 771);
    buf_t out;
    buf_init(&out, 1 << 20);
    query_timeline_t tl = {
        .start_s = 1632335270, .step_s = 10, .n = 1, .samples = (int64_t[]){988}};
    CHECK_EQ_INT(query_encode_flamebearer(t, s, "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                                          "gospy", &tl, &out),
                 0);
    const char *want =
        "{\"version\":1,\"flamebearer\":{\"names\":[\"total\",\"runtime.main\",\"main."
        "fastFunction\","
        "\"main.work\",\"main.main\",\"main.slowFunction\"],\"levels\":[[0,988,0,0],[0,988,0,1],"
        "[0,214,0,2,0,3,2,4,0,771,0,5],[0,214,214,3,2,1,1,2,0,771,771,3]],\"numTicks\":988,"
        "\"maxSelf\":771},\"metadata\":{\"format\":\"single\",\"spyName\":\"gospy\","
        "\"sampleRate\":1000000000,\"units\":\"samples\",\"name\":\"cpu\",\"aggregationType\":"
        "\"sum\"},\"timeline\":"
        "{\"startTime\":1632335270,\"samples\":[988],\"durationDelta\":10}}";
    CHECK_EQ_STR((const char *)out.data, want);
    char *f = folded_of(t, s);
    CHECK_EQ_STR(f, "runtime.main;main.fastFunction;main.work 214\nruntime.main;main.main 2\n"
                    "runtime.main;main.main;main.fastFunction 1\n"
                    "runtime.main;main.slowFunction;main.work 771\n");
    free(f);
    buf_free(&out);
    /* units of other types */
    buf_init(&out, 1 << 20);
    query_encode_flamebearer(t, s, "memory:alloc_objects:count:space:bytes", NULL, NULL, &out);
    CHECK(strstr((char *)out.data,
                 "\"sampleRate\":100,\"units\":\"objects\",\"name\":\"alloc_objects\"") != NULL);
    CHECK(strstr((char *)out.data, "\"timeline\":null") != NULL);
    buf_reset(&out);
    query_encode_flamebearer(t, s, "memory:inuse_space:bytes:space:bytes", NULL, NULL, &out);
    CHECK(strstr((char *)out.data, "\"units\":\"bytes\",\"name\":\"inuse_space\"") != NULL);
    buf_free(&out);
    calltree_free(t);
    symtab_free(s);
}

/* An averaged type (in-use memory): the flame graph is the sum divided by
 * the profiles, each node's total and self rounded down; each timeline
 * bucket its sum divided by its own count; a summed type is untouched. */
static void test_average(void)
{
    CHECK_EQ_INT(query_type_average("memory:inuse_space:bytes:space:bytes"), 1);
    CHECK_EQ_INT(query_type_average("memory:inuse_objects:count:space:bytes"), 1);
    CHECK_EQ_INT(query_type_average("goroutine:goroutine:count:goroutine:count"), 1);
    CHECK_EQ_INT(query_type_average("memory:alloc_space:bytes:space:bytes"), 0);
    CHECK_EQ_INT(query_type_average("process_cpu:cpu:nanoseconds:cpu:nanoseconds"), 0);
    CHECK_EQ_INT(query_type_average("inuse_space"), 0); /* not a type id */
    CHECK_EQ_INT(query_type_average(NULL), 0);
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "runtime.main;main.fastFunction;main.work", 214);
    add(t, s, "runtime.main;main.main", 2);
    add(t, s, "runtime.main;main.main;main.fastFunction", 1);
    add(t, s, "runtime.main;main.slowFunction;main.work", 771);
    buf_t out;
    buf_init(&out, 1 << 20);
    query_timeline_t tl = {.start_s = 100,
                           .step_s = 10,
                           .n = 3,
                           .samples = (int64_t[]){1000, 0, 7},
                           .counts = (int64_t[]){3, 0, 2},
                           .profiles = 5};
    CHECK_EQ_INT(
        query_encode_flamebearer(t, s, "memory:inuse_space:bytes:space:bytes", NULL, &tl, &out), 0);
    const char *j = (const char *)out.data;
    CHECK(strstr(j, "\"levels\":[[0,197,0,0],[0,197,0,1],[0,42,0,2,0,0,0,4,0,154,0,5],"
                    "[0,42,42,3,0,0,0,2,0,154,154,3]],\"numTicks\":197,\"maxSelf\":154}") != NULL);
    CHECK(strstr(j, "\"name\":\"inuse_space\",\"aggregationType\":\"average\"}") != NULL);
    CHECK(strstr(j, "\"samples\":[333,0,3],\"durationDelta\":10") != NULL);
    buf_reset(&out);
    tl.counts = NULL; /* the same values of a summed type */
    CHECK_EQ_INT(
        query_encode_flamebearer(t, s, "memory:alloc_space:bytes:space:bytes", NULL, &tl, &out), 0);
    j = (const char *)out.data;
    CHECK(strstr(j, "\"numTicks\":988,") != NULL && strstr(j, "[1000,0,7]") != NULL);
    CHECK(strstr(j, "\"aggregationType\":\"sum\"}") != NULL);
    buf_free(&out);
    calltree_free(t);
    symtab_free(s);
}

static void random_tree(calltree_t *t, symtab_t *s, size_t nstacks)
{
    static const char *files[] = {"a.c", "b.go", "", "lib/x.py"};
    for (size_t i = 0; i < nstacks; i++) {
        uint64_t ids[16];
        size_t depth = 1 + check_rng() % 12;
        for (size_t d = 0; d < depth; d++) {
            char name[64];
            unsigned k = (unsigned)(check_rng() % (d < 2 ? 3 : 20));
            snprintf(name, sizeof name, "%s_fn%u%s", d % 2 ? "pkg.Type" : "mod", k,
                     k == 7 ? " \"quoted\" \\ é" : "");
            ids[d] = sym(s, name, files[k % 4]);
        }
        CHECK_EQ_INT(calltree_add_stack(t, ids, depth, 1 + (int64_t)(check_rng() % 100000)), 0);
    }
}

static void test_flamebearer_roundtrip(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        random_tree(t, s, 20 + check_rng() % 500);
        buf_t out;
        buf_init(&out, 64 << 20);
        CHECK_EQ_INT(query_encode_flamebearer(t, s, "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                                              NULL, NULL, &out),
                     0);
        long long ticks = 0, max_self = 0;
        char *got = flamebearer_to_folded((const char *)out.data, &ticks, &max_self);
        char *want = folded_of(t, s);
        CHECK_EQ_STR(got, want);
        CHECK_EQ_INT(ticks, calltree_root_total(t));
        int64_t ms = 0;
        for (uint32_t i = 0; i < calltree_node_count(t); i++)
            if (calltree_self(t, i) > ms) ms = calltree_self(t, i);
        CHECK_EQ_INT(max_self, ms);
        /* the same content merged in another order renders the same bytes */
        calltree_t *t2 = calltree_new(0);
        buf_t enc, out2;
        buf_init(&enc, BUF_UNLIMITED);
        buf_init(&out2, 64 << 20);
        calltree_encode(t, &enc);
        calltree_t *half = calltree_new(0);
        calltree_decode_merge(half, enc.data, enc.len);
        calltree_merge(t2, half);
        query_encode_flamebearer(t2, s, "process_cpu:cpu:nanoseconds:cpu:nanoseconds", NULL, NULL,
                                 &out2);
        CHECK(out.len == out2.len && memcmp(out.data, out2.data, out.len) == 0);
        free(got);
        free(want);
        buf_free(&out);
        buf_free(&out2);
        buf_free(&enc);
        calltree_free(half);
        calltree_free(t2);
        calltree_free(t);
        symtab_free(s);
    }
}

/* The sorted view orders every node's children by (name, file, symbol id),
 * whatever their count (a few are placed by insertion, many by qsort_r):
 * checked against a plain sort of the children's keys, over names that
 * repeat with other files and name-and-file pairs that repeat with other
 * symbols, from none to 40 children. */
typedef struct kid_key {
    const char *name, *file;
    uint64_t sym;
} kid_key_t;

static int kid_key_cmp(const void *a, const void *b)
{
    const kid_key_t *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r == 0) r = strcmp(x->file, y->file);
    return r != 0 ? r : (x->sym > y->sym) - (x->sym < y->sym);
}

static void test_sorted_children(void)
{
    static const char *names[] = {"b", "a", "ab", "c.Run", "a"};
    static const char *files[] = {"x.go", "", "a.c"};
    for (size_t nkids = 0; nkids <= 40; nkids++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        kid_key_t want[40];
        for (size_t k = 0; k < nkids; k++) {
            uint64_t id = 1000 + check_rng() % 1000000;
            const char *name = names[check_rng() % 5], *file = files[check_rng() % 3];
            const char *had_name, *had_file;
            /* ids from 1000: never the root's or other's */
            while (symtab_get(s, id, &had_name, &had_file))
                id++;
            CHECK_EQ_INT(symtab_put(s, id, name, strlen(name), file, strlen(file)), 0);
            CHECK_EQ_INT(calltree_add_stack(t, &id, 1, 1), 0);
            want[k] = (kid_key_t){name, file, id};
        }
        qsort(want, nkids, sizeof *want, kid_key_cmp);
        sorted_tree_t st;
        CHECK_EQ_INT(query_sorted_tree_build(&st, t, s, NULL), 0);
        CHECK_EQ_INT(st.off[1] - st.off[0], nkids);
        for (size_t k = 0; k < nkids; k++) {
            uint32_t c = st.kids[st.off[0] + k];
            CHECK_EQ_STR(st.name[c], want[k].name);
            CHECK_EQ_STR(st.file[c], want[k].file);
            CHECK(calltree_sym(t, c) == want[k].sym);
        }
        query_sorted_tree_free(&st);
        calltree_free(t);
        symtab_free(s);
    }
}

/* Numbers of every length from 1 to 19 digits, at and around each power of
 * ten, come back exactly: the encoder writes them eight digits at a time.
 * Negative ones (a delta profile's selves) are found as written; the
 * folded round trip needs the x layout of values >= 0. */
static void test_flamebearer_numbers(void)
{
    for (int sign = 1; sign >= -1; sign -= 2) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        int64_t vals[19 * 3 + 1];
        uint64_t p = 1; /* 10^k; 10^19 after the last turn still fits */
        size_t n = 0;
        for (int k = 0; k < 19; k++, p *= 10)
            for (int d = -1; d <= 1; d++) /* never 0; all of them sum below 2^63 */
                vals[n++] = sign * (k == 0 && d < 0 ? 2 : (int64_t)p + d);
        vals[n++] = sign * (int64_t)987654321098765432;
        for (size_t i = 0; i < n; i++) {
            char stack[64];
            snprintf(stack, sizeof stack, "main;fn_%zu", i);
            add(t, s, stack, vals[i]);
        }
        buf_t out;
        buf_init(&out, 64 << 20);
        CHECK_EQ_INT(query_encode_flamebearer(t, s, "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                                              NULL, NULL, &out),
                     0);
        CHECK_EQ_INT(buf_append_byte(&out, 0), 0);
        if (sign > 0) {
            long long ticks = 0, max_self = 0;
            char *got = flamebearer_to_folded((const char *)out.data, &ticks, &max_self);
            char *want = folded_of(t, s);
            CHECK_EQ_STR(got, want);
            CHECK_EQ_INT(ticks, calltree_root_total(t));
            free(got);
            free(want);
        }
        for (size_t i = 0; i < n; i++) { /* a leaf: [x, total, self, name]: total == self */
            char quad[64];
            snprintf(quad, sizeof quad, ",%lld,%lld,", (long long)vals[i], (long long)vals[i]);
            CHECK(strstr((const char *)out.data, quad) != NULL);
        }
        buf_free(&out);
        calltree_free(t);
        symtab_free(s);
    }
}

static void test_output_cap(void)
{
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    random_tree(t, s, 300);
    buf_t out;
    buf_init(&out, 200);
    CHECK_EQ_INT(query_encode_flamebearer(t, s, "a:b:c:d:e", NULL, NULL, &out), ERR_TOO_LARGE);
    buf_free(&out);
    buf_init(&out, 200);
    CHECK_EQ_INT(query_encode_folded(t, s, &out), ERR_TOO_LARGE);
    buf_free(&out);
    buf_init(&out, 200);
    CHECK_EQ_INT(query_encode_pprof(t, s, "a:b:c:d:e", 0, 0, &out), ERR_TOO_LARGE);
    buf_free(&out);
    calltree_free(t);
    symtab_free(s);
}

/* ---- pprof ---- */
/* The bytes of every gzip member of gz, in order (*members of them). */
static uint8_t *gunzip_members(const buf_t *gz, size_t *len, size_t *members)
{
    CHECK(gz->len > 18 && gz->data[0] == 0x1f && gz->data[1] == 0x8b);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    buf_t raw;
    buf_init(&raw, BUF_UNLIMITED);
    size_t off = 0;
    *members = 0;
    while (off < gz->len) {
        size_t room = 16u << 20, used = 0, got = 0;
        CHECK_EQ_INT(buf_reserve(&raw, room), 0);
        enum libdeflate_result r = libdeflate_gzip_decompress_ex(
            d, gz->data + off, gz->len - off, raw.data + raw.len, room, &used, &got);
        CHECK_EQ_INT(r, LIBDEFLATE_SUCCESS);
        if (r != LIBDEFLATE_SUCCESS) break;
        raw.len += got;
        off += used;
        (*members)++;
    }
    libdeflate_free_decompressor(d);
    return buf_steal(&raw, len);
}

static Perftools__Profiles__Profile *gunzip_unpack(const buf_t *gz)
{
    size_t got = 0, members = 0;
    uint8_t *raw = gunzip_members(gz, &got, &members);
    Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(NULL, got, raw);
    free(raw);
    CHECK(p != NULL);
    return p;
}

static char *pb_str(const Perftools__Profiles__Profile *p, int64_t i)
{
    CHECK(i >= 0 && (size_t)i < p->n_string_table);
    if (i < 0 || (size_t)i >= p->n_string_table || p->string_table[i].len == 0)
        return strdup(""); /* protobuf-c leaves empty bytes with data == NULL */
    /* bytes fields are not NUL-terminated: copy exactly len bytes. strndup is
     * not enough: under strict_string_checks ASan scans it to a NUL past len. */
    size_t n = p->string_table[i].len;
    char *s = malloc(n + 1);
    if (s == NULL) return NULL;
    memcpy(s, p->string_table[i].data, n);
    s[n] = '\0';
    return s;
}

static const Perftools__Profiles__Function *pb_func_of_loc(const Perftools__Profiles__Profile *p,
                                                           uint64_t loc)
{
    for (size_t i = 0; i < p->n_location; i++)
        if (p->location[i]->id == loc && p->location[i]->n_line == 1)
            for (size_t j = 0; j < p->n_function; j++)
                if (p->function[j]->id == p->location[i]->line[0]->function_id)
                    return p->function[j];
    return NULL;
}

/* Rebuilds a tree from the pprof samples, names and files included. */
static calltree_t *pprof_to_tree(const Perftools__Profiles__Profile *p, symtab_t *s, int64_t *sum)
{
    calltree_t *t = calltree_new(0);
    *sum = 0;
    for (size_t i = 0; i < p->n_sample; i++) {
        const Perftools__Profiles__Sample *sm = p->sample[i];
        CHECK_EQ_INT(sm->n_value, 1);
        uint64_t ids[64];
        size_t n = sm->n_location_id;
        CHECK(n <= 64);
        for (size_t k = 0; k < n && k < 64; k++) {
            const Perftools__Profiles__Function *f = pb_func_of_loc(p, sm->location_id[k]);
            CHECK(f != NULL);
            if (f == NULL) return t;
            char *name = pb_str(p, f->name), *file = pb_str(p, f->filename);
            ids[n - 1 - k] = sym(s, name, file); /* leaf first in pprof */
            free(name);
            free(file);
        }
        calltree_add_stack(t, ids, n, sm->value[0]);
        *sum += sm->value[0];
    }
    return t;
}

static void go_tool_pprof(const buf_t *gz)
{
    if (system("command -v go >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: go not installed; go tool pprof check skipped\n");
        return;
    }
    char path[] = "/tmp/flamedb-test-pprof-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ_INT(write(fd, gz->data, gz->len), (long long)gz->len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "HOME=${HOME:-/tmp} timeout 120 go tool pprof -top -nodecount=100000 -nodefraction=0 "
             "%s 2>&1",
             path);
    FILE *f = popen(cmd, "r");
    char line[512];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "runtime.main") || strstr(line, "main.work")) found |= 1;
        if (strstr(line, "Type: cpu")) found |= 2;
    }
    int rc = f ? pclose(f) : -1;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(found, 3);
    snprintf(cmd, sizeof cmd,
             "HOME=${HOME:-/tmp} timeout 120 go tool pprof -raw %s 2>&1 | grep -c 'src/app.go'",
             path);
    f = popen(cmd, "r");
    long files = f && fgets(line, sizeof line, f) ? strtol(line, NULL, 10) : 0;
    if (f) pclose(f);
    CHECK(files > 0); /* file names survive */
    if (getenv("KEEP_PPROF") == NULL)
        unlink(path);
    else
        fprintf(stderr, "kept %s\n", path);
}

static void test_pprof(void)
{
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "runtime.main;main.fastFunction;main.work", 214);
    add(t, s, "runtime.main;main.main", 2);
    add(t, s, "runtime.main;main.main;main.fastFunction", 1);
    add(t, s, "runtime.main;main.slowFunction;main.work", 771);
    random_tree(t, s, 300);
    buf_t gz;
    buf_init(&gz, 64 << 20);
    CHECK_EQ_INT(query_encode_pprof(t, s, "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                                    1700000000000000000LL, 3600000000000LL, &gz),
                 0);
    Perftools__Profiles__Profile *p = gunzip_unpack(&gz);
    if (p != NULL) {
        CHECK_EQ_INT(p->string_table[0].len, 0);
        CHECK_EQ_INT(p->n_sample_type, 1);
        char *st = pb_str(p, p->sample_type[0]->type), *su = pb_str(p, p->sample_type[0]->unit);
        CHECK_EQ_STR(st, "cpu");
        CHECK_EQ_STR(su, "nanoseconds");
        free(st);
        free(su);
        CHECK(p->period_type != NULL);
        CHECK_EQ_INT(p->period, 10000000);
        CHECK_EQ_INT(p->time_nanos, 1700000000000000000LL);
        CHECK_EQ_INT(p->n_function, p->n_location);
        symtab_t *s2 = symtab_new();
        int64_t sum;
        calltree_t *back = pprof_to_tree(p, s2, &sum);
        CHECK_EQ_INT(sum, calltree_root_total(t));
        char *a = folded_of(t, s), *b = folded_of(back, s2);
        CHECK_EQ_STR(b, a);
        free(a);
        free(b);
        calltree_free(back);
        symtab_free(s2);
        perftools__profiles__profile__free_unpacked(p, NULL);
    }
    go_tool_pprof(&gz);
    buf_free(&gz);
    calltree_free(t);
    symtab_free(s);
}

static void test_folded_edges(void)
{
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    buf_t empty; /* nothing selected: an empty body, nothing allocated */
    buf_init(&empty, BUF_UNLIMITED);
    CHECK_EQ_INT(query_encode_folded(t, s, &empty), 0);
    CHECK(empty.len == 0 && empty.data == NULL);
    add(t, s, "b;x", 3);
    add(t, s, "a", 1);
    add(t, s, "b", -2); /* negative self (delta profiles) */
    add(t, s, "a;line\nbreak", 4);
    add(t, s, "c;d", -1234567890123);  /* every digit and the sign measured */
    calltree_add_stack(t, NULL, 0, 5); /* empty stack: root self */
    uint64_t unknown = 0x1234;
    calltree_add_stack(t, &unknown, 1, 6);
    char *f = folded_of(t, s);
    CHECK_EQ_STR(f, "total 5\na 1\na;line break 4\nb -2\nb;x 3\nc;d -1234567890123\n"
                    "unknown 0x0000000000001234 6\n");
    free(f);
    calltree_free(t);
    symtab_free(s);
}

/* The folded text of t read from a stream in slices of `slice` bytes. */
static char *streamed_folded(calltree_t *t, symtab_t *s, size_t slice, size_t *length)
{
    buf_t b, out;
    buf_init(&b, BUF_UNLIMITED);
    buf_init(&out, BUF_UNLIMITED);
    query_stream_t *st = NULL;
    CHECK_EQ_INT(query_folded_open(&t, &s, NULL, 1, &b, &st), 0);
    CHECK(st != NULL && t == NULL && s == NULL && b.len == 0);
    if (st == NULL) return NULL;
    *length = (size_t)query_stream_length(st);
    CHECK(query_stream_bytes(st) > 0);
    int done = 0;
    for (size_t i = 0; i < 1000000 && !done; i++) {
        size_t before = out.len;
        CHECK_EQ_INT(query_stream_next(st, &out, slice, &done), 0);
        CHECK(done || out.len - before >= slice); /* at least what was asked */
    }
    CHECK(done);
    query_stream_free(st);
    buf_free(&b);
    buf_append(&out, "", 0);
    return (char *)out.data;
}

/* A stream writes the same bytes as the whole answer, in any slices; a
 * small answer (under min_bytes) and one past the buffer's max are written
 * (or refused) whole, as before. */
static void test_folded_stream(void)
{
    for (int round = 0; round < 20; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        if (round % 2) CHECK_EQ_INT(calltree_add_stack(t, NULL, 0, 3), 0); /* `total` */
        int n = 1 + (int)(check_rng() % 300);
        for (int i = 0; i < n; i++) {
            char stack[256];
            snprintf(stack, sizeof stack, "main;mod%d;fn%d\nline;leaf%d", (int)(check_rng() % 5),
                     (int)(check_rng() % 40), (int)(check_rng() % 90));
            add(t, s, stack, 1 + (int64_t)(check_rng() % 1000));
        }
        char *whole = folded_of(t, s);
        size_t slice = 1 + check_rng() % 2000, length = 0;
        char *got = streamed_folded(t, s, slice, &length); /* takes t and s */
        CHECK(got != NULL && strcmp(got, whole) == 0);
        CHECK_EQ_INT((int)length, (int)strlen(whole));
        free(got);
        free(whole);
    }
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "a;b;c", 5);
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    query_stream_t *st = NULL;
    CHECK_EQ_INT(query_folded_open(&t, &s, NULL, 1000, &b, &st), 0); /* 8 bytes: written whole */
    CHECK(st == NULL && t != NULL && s != NULL);
    b.data[b.len] = 0;
    CHECK_EQ_STR((char *)b.data, "a;b;c 5\n");
    buf_free(&b);
    buf_init(&b, 4); /* past the buffer's max: refused as it always was */
    CHECK_EQ_INT(query_folded_open(&t, &s, NULL, 1, &b, &st), ERR_TOO_LARGE);
    CHECK(st == NULL && t != NULL);
    buf_free(&b);
    calltree_free(t);
    symtab_free(s);
}

/* Drains st in slices of 1 .. 300,000 bytes; each slice at least what was
 * asked unless it ended (a pprof's: some bytes, at most one gzip member
 * compressed). */
static void drain_in_slices(query_stream_t *st, int pprof, buf_t *out)
{
    int done = 0;
    for (size_t i = 0; i < 10000000 && !done; i++) {
        size_t before = out->len, want = 1 + check_rng() % (check_rng() % 2 ? 300000 : 2000);
        CHECK_EQ_INT(query_stream_next(st, out, want, &done), 0);
        CHECK(done || out->len - before >= (pprof ? 1 : want));
        if (pprof && !done && out->len - before < want) /* a member ended it */
            CHECK(out->len - before > 18 && out->data[before] == 0x1f);
    }
    CHECK(done);
}

/* A tree of random stacks; wide: many long distinct names (a packed pprof
 * of several 256 KiB gzip members). */
static void stream_tree(calltree_t *t, symtab_t *s, int wide)
{
    if (check_rng() % 2) CHECK_EQ_INT(calltree_add_stack(t, NULL, 0, 3), 0); /* root self */
    random_tree(t, s, 1 + check_rng() % 300);
    for (int i = 0; wide && i < 20000; i++) {
        char stack[256];
        snprintf(stack, sizeof stack,
                 "main;github.com/acme/widget/internal/handlers/v%05d.(*Server).Handle;leaf%d", i,
                 (int)(check_rng() % 3));
        add(t, s, stack, 1 + (int64_t)(check_rng() % 1000));
    }
}

/* The SVG and the pprof as streams are the same bytes as written whole, in
 * any slices; under min_bytes they are written whole, the tree not taken. */
static void test_svg_pprof_stream(void)
{
    const char *type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    for (int round = 0; round < 8; round++) {
        int wide = round < 2, pprof = round % 2;
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        stream_tree(t, s, wide);
        buf_t whole, b, got;
        buf_init(&whole, BUF_UNLIMITED);
        buf_init(&b, BUF_UNLIMITED);
        buf_init(&got, BUF_UNLIMITED);
        int64_t t0 = 1700000000000000000LL, dur = 3600000000000LL;
        query_stream_t *st = NULL;
        if (pprof) {
            CHECK_EQ_INT(query_encode_pprof(t, s, type, t0, dur, &whole), 0);
            CHECK_EQ_INT(query_pprof_open(&t, &s, type, t0, dur, 1, &b, &st), 0);
        } else {
            CHECK_EQ_INT(query_encode_svg(t, s, type, "a <title>", "note", &whole), 0);
            CHECK_EQ_INT(query_svg_open(&t, &s, type, "a <title>", "note", NULL, 1, &b, &st), 0);
        }
        CHECK(st != NULL && t == NULL && s == NULL && b.len == 0);
        if (st == NULL) continue;
        CHECK(query_stream_length(st) == QUERY_STREAM_LENGTH_UNKNOWN);
        CHECK(query_stream_bytes(st) > 0);
        drain_in_slices(st, pprof, &got);
        query_stream_free(st);
        CHECK_EQ_INT(got.len, whole.len);
        CHECK(got.len == whole.len && memcmp(got.data, whole.data, got.len) == 0);
        if (pprof && wide) { /* several members, one gzip file */
            size_t len = 0, members = 0;
            free(gunzip_members(&whole, &len, &members));
            CHECK(members >= 2 && len > 256 * 1024);
            Perftools__Profiles__Profile *p = gunzip_unpack(&whole);
            CHECK(p != NULL && p->n_sample > 20000);
            if (p != NULL) perftools__profiles__profile__free_unpacked(p, NULL);
        }
        buf_free(&whole);
        buf_free(&b);
        buf_free(&got);
    }
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "a;b;c", 5);
    buf_t b, whole;
    buf_init(&b, BUF_UNLIMITED);
    buf_init(&whole, BUF_UNLIMITED);
    query_stream_t *st = NULL;
    CHECK_EQ_INT(query_encode_pprof(t, s, type, 1, 2, &whole), 0);
    CHECK_EQ_INT(query_pprof_open(&t, &s, type, 1, 2, 1 << 20, &b, &st), 0); /* small: whole */
    CHECK(st == NULL && t != NULL && s != NULL);
    CHECK(b.len == whole.len && memcmp(b.data, whole.data, b.len) == 0);
    buf_reset(&b);
    buf_reset(&whole);
    CHECK_EQ_INT(query_encode_svg(t, s, type, NULL, NULL, &whole), 0);
    CHECK_EQ_INT(query_svg_open(&t, &s, type, NULL, NULL, NULL, 1 << 20, &b, &st), 0);
    CHECK(st == NULL && t != NULL && s != NULL);
    CHECK(b.len == whole.len && memcmp(b.data, whole.data, b.len) == 0);
    buf_free(&b);
    buf_free(&whole);
    calltree_free(t);
    symtab_free(s);
}

/* The flamebearer JSON as a stream (summed, and averaged over 3 profiles,
 * with members) is the whole answer's bytes, in any slices. */
static void test_flamebearer_stream(void)
{
    for (int round = 0; round < 10; round++) {
        calltree_t *t = calltree_new(0);
        symtab_t *s = symtab_new();
        stream_tree(t, s, round == 0);
        int64_t samples[3] = {7, 0, 9}, counts[3] = {1, 0, 2};
        query_timeline_t tl = {.start_s = 100, .step_s = 10, .n = 3, .samples = samples};
        if (round % 2) {
            tl.counts = counts;
            tl.profiles = 3;
        }
        const char *type = round % 2 ? "memory:inuse_space:bytes:space:bytes"
                                     : "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        const char *members = round % 3 ? "\"partial\":true" : NULL;
        buf_t whole, b, got;
        buf_init(&whole, BUF_UNLIMITED);
        buf_init(&b, BUF_UNLIMITED);
        buf_init(&got, BUF_UNLIMITED);
        CHECK_EQ_INT(query_encode_flamebearer(t, s, type, "gospy", &tl, &whole), 0);
        if (members != NULL) CHECK_EQ_INT(query_add_json_members(&whole, members), 0);
        query_stream_t *st = NULL;
        CHECK_EQ_INT(
            query_flamebearer_open(&t, NULL, &s, type, "gospy", &tl, members, 1, NULL, &b, &st), 0);
        CHECK(st != NULL && t == NULL && s == NULL && b.len == 0);
        if (st != NULL) {
            drain_in_slices(st, 0, &got);
            query_stream_free(st);
        }
        CHECK(got.len == whole.len && memcmp(got.data, whole.data, got.len) == 0);
        buf_free(&whole);
        buf_free(&b);
        buf_free(&got);
    }
    /* under min_bytes: written whole, with the members, the tree not taken */
    calltree_t *t = calltree_new(0);
    symtab_t *s = symtab_new();
    add(t, s, "a;b;c", 5);
    buf_t b, whole;
    buf_init(&b, BUF_UNLIMITED);
    buf_init(&whole, BUF_UNLIMITED);
    query_stream_t *st = NULL;
    CHECK_EQ_INT(query_encode_flamebearer(t, s, "a:b:c:d:e", NULL, NULL, &whole), 0);
    CHECK_EQ_INT(query_add_json_members(&whole, "\"x\":1"), 0);
    CHECK_EQ_INT(query_flamebearer_open(&t, NULL, &s, "a:b:c:d:e", NULL, NULL, "\"x\":1", 1 << 20,
                                        NULL, &b, &st),
                 0);
    CHECK(st == NULL && t != NULL && s != NULL);
    CHECK(b.len == whole.len && memcmp(b.data, whole.data, b.len) == 0);
    buf_free(&b);
    buf_free(&whole);
    calltree_free(t);
    symtab_free(s);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_encode seed %llu\n", (unsigned long long)seed);
    test_pyroscope_example();
    test_average();
    test_flamebearer_roundtrip();
    test_sorted_children();
    test_flamebearer_numbers();
    test_output_cap();
    test_pprof();
    test_folded_edges();
    test_folded_stream();
    test_svg_pprof_stream();
    test_flamebearer_stream();
    return check_exit();
}
