/* flamebearer.c — the flamebearer JSON of Pyroscope's /render
 * (docs/query.md, Encoders): names deduplicated, levels of [x_offset_delta, total,
 * self, name_index] per node, children ordered by name. As in Pyroscope, a
 * node's children start after its own self width: x(child0) = x + self.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/u64map.h"
#include "query/query_int.h"

typedef struct level {
    buf_t text; /* "d,t,s,n,d,t,s,n..."; first: query_write_flamebearer reads it there */
    int64_t prev_end;
} level_t;

typedef struct fb {
    sorted_tree_t *st;
    const calltree_node_t *nodes;   /* st->t's node array, or NULL: then */
    const uint64_t *tsyms;          /* st->t's symbols (calltree_syms) */
    const uint64_t *sym;            /* the kept nodes' symbols */
    const int64_t *selves, *totals; /* its values */
    strmap_t names;
    u64map_t name_of; /* symbol -> its index in names: one string hash per symbol, not per node */
    uint32_t *name_of_sid; /* with st->sid: the same by sid (UINT32_MAX: not yet), no hash */
    level_t *lv;
    size_t nlv, caplv;
    size_t bytes, max_bytes; /* all level text together stays under the body cap */
    int64_t max_self;
    int64_t div;   /* an averaged type: every value / the profiles (rounded down); else 1 */
    buf_t *out;    /* the answer: this working memory is held beside it (buf_beside_take) */
    size_t held;   /* taken beside out */
    size_t tables; /* of held: the name maps and the level array, as last measured */
} fb_t;

typedef struct frame {
    uint32_t node;
    uint32_t depth;
    int64_t x;
} frame_t;

/* Takes n bytes beside the answer before they are allocated. */
static int fb_take(fb_t *fb, size_t n)
{
    int rc = buf_beside_take(fb->out, n);
    if (rc == 0) fb->held += n;
    return rc;
}

static void fb_give(fb_t *fb, size_t n)
{
    buf_beside_give(fb->out, n);
    fb->held -= n;
}

/* The name maps and the level array grow by doubling, a few dozen times
 * in a render: what they hold is measured after each growth and held
 * beside the answer (the node cap bounds the maps). */
static int fb_tables(fb_t *fb)
{
    size_t now = u64map_bytes(&fb->name_of) + fb->names.cap * sizeof *fb->names.slots +
                 fb->names.strs_cap * (sizeof *fb->names.strs + sizeof *fb->names.lens) +
                 fb->caplv * sizeof *fb->lv;
    if (now == fb->tables) return 0;
    if (now < fb->tables) {
        fb_give(fb, fb->tables - now);
    } else {
        int rc = fb_take(fb, now - fb->tables);
        if (rc != 0) return rc;
    }
    fb->tables = now;
    return 0;
}

static inline __attribute__((always_inline)) int level_at(fb_t *fb, size_t d, level_t **out)
{
    while (d >= fb->nlv) {
        if (GROW_FROM(fb->lv, fb->caplv, fb->nlv + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
        buf_init(&fb->lv[fb->nlv].text, fb->max_bytes);
        fb->lv[fb->nlv++].prev_end = 0;
        int rc = fb_tables(fb);
        if (rc != 0) return rc;
    }
    *out = &fb->lv[d];
    return 0;
}

/* buf_reserve of a level's text, its old and new storage taken beside the
 * answer first (realloc may copy), then its new capacity held. */
static int level_reserve(fb_t *fb, level_t *lv, size_t n)
{
    buf_t *b = &lv->text;
    if (n > b->max || b->len > b->max - n) return ERR_TOO_LARGE;
    size_t old = b->cap, cap = buf_reserved_cap(b, n);
    if (cap == old) return 0;
    int rc = fb_take(fb, cap);
    if (rc != 0) return rc;
    rc = buf_reserve(b, n);
    fb_give(fb, rc == 0 ? old : cap);
    return rc;
}

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* The number of decimal digits of u (u >= 1): the bit length gives it
 * within one (1233 / 4096 is just above log10(2)), one compare fixes it. */
static size_t decimal_len(uint64_t u)
{
    static const uint64_t pow10[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};
    unsigned t = ((unsigned)(64 - __builtin_clzll(u)) * 1233) >> 12;
    return t + 1 - (u < pow10[t]);
}

/* Writes u < 10000 in decimal at p; returns the end. */
static inline char *put_small(char *p, uint32_t u)
{
    if (u < 10) {
        *p = (char)('0' + u);
        return p + 1;
    }
    if (u < 100) {
        memcpy(p, digit_pairs + 2 * u, 2);
        return p + 2;
    }
    uint32_t h = u / 100, l = u - h * 100;
    if (h < 10) {
        *p = (char)('0' + h);
        memcpy(p + 1, digit_pairs + 2 * l, 2);
        return p + 3;
    }
    memcpy(p, digit_pairs + 2 * h, 2);
    memcpy(p + 2, digit_pairs + 2 * l, 2);
    return p + 4;
}

/* Writes v in decimal at p (room for PUT_ROOM bytes, of which at most 21
 * are the number's); returns the end. Most numbers of a level are small
 * (offsets of 0, selves of inner nodes, name indices: put_small, a branch
 * or three) or below 10^8 (totals: the high four digits, then the low
 * four in two pairs, with 32-bit arithmetic). A longer one's length is
 * found first, so its digits go straight to their place from the right:
 * four per 64-bit division (totals of fleet-wide byte counts have a
 * dozen), then two at a time. */
#define PUT_ROOM 24
static char *put_i64(char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        *p++ = '-';
        u = (uint64_t)0 - u;
    }
    if (u < 10000) return put_small(p, (uint32_t)u);
    if (u < 100000000) {
        uint32_t h = (uint32_t)u / 10000, l = (uint32_t)u - h * 10000;
        p = put_small(p, h);
        memcpy(p, digit_pairs + 2 * (l / 100), 2);
        memcpy(p + 2, digit_pairs + 2 * (l % 100), 2);
        return p + 4;
    }
    char *end = p + decimal_len(u), *t = end;
    while (u >= 10000) {
        uint64_t q = u / 10000;
        uint32_t r = (uint32_t)(u - q * 10000);
        u = q;
        t -= 4;
        memcpy(t, digit_pairs + 2 * (r / 100), 2);
        memcpy(t + 2, digit_pairs + 2 * (r % 100), 2);
    }
    if (u >= 100) {
        uint32_t r = (uint32_t)u;
        u = r / 100;
        t -= 2;
        memcpy(t, digit_pairs + 2 * (r % 100), 2);
    }
    if (u >= 10)
        memcpy(t - 2, digit_pairs + 2 * u, 2);
    else
        t[-1] = (char)('0' + u);
    return end;
}

/* The index of node's name in names, interned at its first use. */
static int name_index(fb_t *fb, uint32_t node, uint32_t *idx)
{
    if (node == 0) { /* the root is "total", whatever its symbol */
        return strmap_intern(&fb->names, "total", 5, idx);
    }
    if (fb->name_of_sid != NULL) {
        uint32_t *known = &fb->name_of_sid[fb->st->sid[node]];
        if (*known != UINT32_MAX) {
            *idx = *known;
            return 0;
        }
        const char *name = fb->st->name[node];
        int rc = strmap_intern(&fb->names, name, strlen(name), idx);
        if (rc == 0) *known = *idx;
        return rc != 0 ? rc : fb_tables(fb);
    }
    uint64_t sym = fb->nodes ? fb->tsyms[fb->nodes[node].sym_index] : fb->sym[node];
    if (u64map_get(&fb->name_of, sym, idx)) return 0;
    const char *name = fb->st->name[node]; /* a function of the symbol alone */
    int rc = strmap_intern(&fb->names, name, strlen(name), idx);
    if (rc == 0) rc = u64map_reserve(&fb->name_of, fb->name_of.len + 1);
    if (rc == 0) rc = u64map_put(&fb->name_of, sym, *idx);
    return rc != 0 ? rc : fb_tables(fb);
}

/* buf_reserve's answer when it needs no call: room (and the terminator's)
 * already there, within the buffer's maximum. */
static inline int has_room(const buf_t *b, size_t n)
{
    return b->cap > b->len + n && n <= b->max && b->len <= b->max - n;
}

/* f's level entry; total and self are its values / fb->div (the walk
 * divides each once). */
static int emit(fb_t *fb, const frame_t *f, int64_t total, int64_t self)
{
    uint32_t idx;
    level_t *lv;
    int rc = name_index(fb, f->node, &idx);
    if (rc == 0) rc = level_at(fb, f->depth, &lv);
    if (rc != 0) return rc;
    /* the hot loop of rendering: no printf, the four numbers written in place
     * (through a copy only near the body cap, where the room is not there) */
    size_t before = lv->text.len;
    char quad[3 * 22 + PUT_ROOM + 1], *start = quad, *q; /* three numbers and commas, a fourth */
    int direct = has_room(&lv->text, sizeof quad);
    if (!direct && (rc = level_reserve(fb, lv, sizeof quad)) != 0 && rc != ERR_TOO_LARGE) return rc;
    direct |= rc == 0;
    if (direct) start = (char *)lv->text.data + before;
    q = start;
    if (before) *q++ = ',';
    q = put_i64(q, f->x - lv->prev_end);
    *q++ = ',';
    q = put_i64(q, total);
    *q++ = ',';
    q = put_i64(q, self);
    *q++ = ',';
    q = put_i64(q, idx);
    if (direct) {
        lv->text.len += (size_t)(q - start);
        lv->text.data[lv->text.len] = 0;
    } else if ((rc = level_reserve(fb, lv, (size_t)(q - quad))) != 0 ||
               (rc = buf_append(&lv->text, quad, (size_t)(q - quad))) != 0) {
        return rc;
    }
    fb->bytes += lv->text.len - before;
    if (fb->bytes > fb->max_bytes) return ERR_TOO_LARGE;
    lv->prev_end = f->x + total;
    if (self > fb->max_self) fb->max_self = self;
    return 0;
}

/* Pushes f's children onto stack (sp entries) right to left, each with its
 * x offset, the first at x (f's x plus its self); returns the new sp.
 * One pass left to right, each child's total divided once: the first
 * child goes on top. Inlined: it runs once per node of both walks. */
static inline __attribute__((always_inline)) size_t push_kids(const fb_t *fb,
                                                              const sorted_tree_t *st,
                                                              const frame_t *f, int64_t x,
                                                              frame_t *stack, size_t sp)
{
    uint32_t a = st->off[f->node], b = st->off[f->node + 1];
    frame_t *top = stack + sp + (b - a); /* one past the first child's slot */
    for (uint32_t k = a; k < b; k++) {
        uint32_t c = st->kids[k];
        *--top = (frame_t){c, f->depth + 1, x};
        x = (int64_t)((uint64_t)x + (uint64_t)(fb->totals[c] / fb->div));
    }
    return sp + (b - a);
}

/* Bytes a level entry is guessed to take: four numbers and their commas
 * (about 21 on the bench's heap render, 8,192 nodes). */
#define LEVEL_ENTRY_GUESS 24

/* Each level's text made at once as large as its nodes' entries are
 * guessed to take: grown by doubling from empty, every level was copied
 * about eight times. Only where the nodes come with parents, parents
 * first (kept nodes); a level that does not fit the guess grows as before,
 * and a guess that cannot be held is not made (the walk then fails, or
 * not, as it did). */
static int presize_levels(fb_t *fb)
{
    const sorted_tree_t *st = fb->st;
    if (st->t != NULL || st->n == 0) return 0;
    size_t bytes = st->n * sizeof(uint32_t);
    if (fb_take(fb, bytes) != 0) return 0;
    uint32_t *depth = malloc(bytes), deepest = 0;
    int rc = depth != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) depth[0] = 0;
    for (size_t i = 1; rc == 0 && i < st->n; i++) {
        depth[i] = depth[st->parent[i]] + 1;
        deepest = depth[i] > deepest ? depth[i] : deepest;
    }
    size_t *count = rc == 0 ? calloc((size_t)deepest + 1, sizeof *count) : NULL;
    if (rc == 0 && count != NULL) {
        for (size_t i = 0; i < st->n; i++)
            count[depth[i]]++;
        level_t *lv;
        for (size_t d = 0; d <= deepest && rc == 0; d++)
            if ((rc = level_at(fb, d, &lv)) == 0)
                rc = level_reserve(fb, lv, count[d] * LEVEL_ENTRY_GUESS);
    }
    free(count);
    free(depth);
    fb_give(fb, bytes);
    return rc == ERR_NOMEM ? rc : 0;
}

/* Preorder, left to right, so each level's nodes come in x order. */
static int walk(fb_t *fb)
{
    const sorted_tree_t *st = fb->st;
    int rc = fb_take(fb, st->n * sizeof(frame_t));
    if (rc != 0) return rc;
    frame_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    stack[sp++] = (frame_t){0, 0, 0};
    while (sp > 0 && rc == 0) {
        frame_t f = stack[--sp];
        int64_t self = fb->selves[f.node] / fb->div;
        rc = emit(fb, &f, fb->totals[f.node] / fb->div, self);
        /* child x offsets, computed left to right, pushed right to left */
        sp = push_kids(fb, st, &f, f.x + self, stack, sp);
    }
    free(stack);
    fb_give(fb, st->n * sizeof(frame_t));
    return rc;
}

static void units_of(const ptype_t *pt, const char **units, int64_t *rate)
{
    static const char *objects[] = {"inuse_objects", "alloc_objects", "goroutine", "samples"};
    *units = pt->sample_unit;
    *rate = 100;
    for (size_t i = 0; i < sizeof objects / sizeof *objects; i++)
        if (strcmp(pt->sample_type, objects[i]) == 0) *units = "objects";
    if (strcmp(pt->sample_type, "cpu") == 0) {
        *units = "samples";
        *rate = 1000000000; /* values are nanoseconds: ticks per second */
    }
}

int query_write_metadata(buf_t *out, const char *format, const char *profile_type, const char *spy)
{
    ptype_t pt;
    const char *units = "", *name = "";
    int64_t rate = 100;
    if (profile_type != NULL && query_ptype_parse(profile_type, &pt) == 0) {
        units_of(&pt, &units, &rate);
        name = pt.sample_type;
    }
    int rc = buf_printf(out, "\"metadata\":{\"format\":\"%s\",\"spyName\":", format);
    if (rc == 0) rc = buf_append_json_string(out, spy ? spy : "", spy ? strlen(spy) : 0);
    if (rc == 0) rc = buf_printf(out, ",\"sampleRate\":%lld,\"units\":", (long long)rate);
    if (rc == 0) rc = buf_append_json_string(out, units, strlen(units));
    if (rc == 0) rc = buf_append_str(out, ",\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, name, strlen(name));
    if (rc == 0)
        rc = buf_printf(out, ",\"aggregationType\":\"%s\"",
                        query_type_average(profile_type) ? "average" : "sum");
    return rc != 0 ? rc : buf_append_byte(out, '}');
}

int query_write_timeline(buf_t *out, const query_timeline_t *shape, const int64_t *samples)
{
    int rc = buf_printf(out, "{\"startTime\":%lld,\"samples\":[", (long long)shape->start_s);
    for (size_t i = 0; rc == 0 && i < shape->n; i++) { /* no printf per sample */
        if (i > 0) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_i64(out, samples[i]);
    }
    if (rc == 0) rc = buf_printf(out, "],\"durationDelta\":%lld}", (long long)shape->step_s);
    return rc;
}

static int write_timeline(buf_t *out, const query_timeline_t *tl)
{
    if (tl == NULL) return buf_append_str(out, "\"timeline\":null");
    int rc = buf_append_str(out, "\"timeline\":");
    /* no profile counted (a span selection, which keeps no counts): sums */
    if (rc != 0 || tl->counts == NULL || tl->profiles == 0)
        return rc != 0 ? rc : query_write_timeline(out, tl, tl->samples);
    /* an averaged type: each bucket's profiles averaged, from exact sums and counts */
    int64_t *avg = malloc((tl->n ? tl->n : 1) * sizeof *avg);
    if (avg == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < tl->n; i++)
        avg[i] = tl->counts[i] > 0 ? tl->samples[i] / tl->counts[i] : 0;
    rc = query_write_timeline(out, tl, avg);
    free(avg);
    return rc;
}

int query_write_flamebearer(buf_t *out, const strmap_t *names, const void *levels, size_t nlevels,
                            size_t stride, int64_t num_ticks, int64_t max_self)
{
    /* room for what surely comes, made once: growing the body as it fills
     * copied it once per doubling */
    size_t least = 64;
    for (size_t i = 0; i < names->n; i++)
        least += names->lens[i] + 3;
    for (size_t d = 0; d < nlevels; d++)
        least += ((const buf_t *)(const void *)((const char *)levels + d * stride))->len + 3;
    int rc = least <= out->max && out->len <= out->max - least ? buf_reserve(out, least) : 0;
    if (rc == 0) rc = buf_append_str(out, "\"flamebearer\":{\"names\":[");
    for (size_t i = 0; rc == 0 && i < names->n; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_json_string(out, names->strs[i], names->lens[i]);
    }
    if (rc == 0) rc = buf_append_str(out, "],\"levels\":[");
    for (size_t d = 0; rc == 0 && d < nlevels; d++) {
        const buf_t *text = (const buf_t *)(const void *)((const char *)levels + d * stride);
        rc = buf_append_str(out, d ? ",[" : "[");
        if (rc == 0) rc = buf_append(out, text->data, text->len);
        if (rc == 0) rc = buf_append_byte(out, ']');
    }
    if (rc == 0)
        rc = buf_printf(out, "],\"numTicks\":%lld,\"maxSelf\":%lld}", (long long)num_ticks,
                        (long long)max_self);
    return rc;
}

/* The answer from fb (its sorted tree and values set): levels, then the
 * whole JSON. Frees fb's sorted tree. */
static int encode(fb_t *fb, int64_t num_ticks, const char *profile_type, const char *spy_name,
                  const query_timeline_t *tl, buf_t *out)
{
    fb->max_bytes = out->max;
    fb->out = out;
    fb->div = tl != NULL && tl->counts != NULL && tl->profiles > 1 ? tl->profiles : 1;
    num_ticks /= fb->div;
    strmap_init(&fb->names);
    int rc = u64map_init(&fb->name_of, 1024);
    if (rc == 0) rc = fb_tables(fb);
    if (rc == 0 && fb->st->sid != NULL)
        rc = fb_take(fb, (fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
    if (rc == 0 && fb->st->sid != NULL) {
        fb->name_of_sid = malloc((fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
        if (fb->name_of_sid == NULL) rc = ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < fb->st->nsid; i++)
            fb->name_of_sid[i] = UINT32_MAX;
    }
    if (rc == 0) rc = presize_levels(fb);
    if (rc == 0) rc = walk(fb);
    if (rc == 0) rc = buf_append_str(out, "{\"version\":1,");
    if (rc == 0)
        rc = query_write_flamebearer(out, &fb->names, fb->lv, fb->nlv, sizeof *fb->lv, num_ticks,
                                     fb->max_self);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = query_write_metadata(out, "single", profile_type, spy_name);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = write_timeline(out, tl);
    if (rc == 0) rc = buf_append_byte(out, '}');
    for (size_t d = 0; d < fb->nlv; d++)
        buf_free(&fb->lv[d].text);
    free(fb->lv);
    strmap_free(&fb->names);
    u64map_free(&fb->name_of);
    free(fb->name_of_sid);
    fb_give(fb, fb->held); /* all of it freed */
    query_sorted_tree_free(fb->st);
    return rc;
}

int query_encode_flamebearer(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                             const char *spy_name, const query_timeline_t *tl, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms, out);
    if (rc != 0) return rc;
    fb_t fb = {.st = &st,
               .nodes = calltree_nodes(t),
               .tsyms = calltree_syms(t),
               .selves = calltree_selves(t),
               .totals = calltree_totals(t)};
    if (fb.totals == NULL) {
        query_sorted_tree_free(&st);
        return ERR_NOMEM;
    }
    return encode(&fb, calltree_root_total(t), profile_type, spy_name, tl, out);
}

int query_encode_flamebearer_kept(const query_kept_t *k, const symtab_t *syms,
                                  const char *profile_type, const char *spy_name,
                                  const query_timeline_t *tl, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build_kept(&st, k, syms, out);
    if (rc != 0) return rc;
    fb_t fb = {.st = &st, .sym = k->sym, .selves = k->self, .totals = k->total};
    return encode(&fb, k->total[0], profile_type, spy_name, tl, out);
}

/* ---- the answer as a stream ---- */

enum { FB_HEAD, FB_NAMES, FB_LEVELS_HEAD, FB_LEVELS, FB_TAIL, FB_DONE };

typedef struct fb_stream {
    calltree_t *tree;   /* owned, or NULL: then kept; with syms, what st reads */
    query_kept_t *kept; /* owned, or NULL */
    symtab_t *syms;
    sorted_tree_t st;
    fb_t fb;              /* the names (interned in the walk's order) and values */
    int64_t *x;           /* per node: its x, as the walk gives it */
    uint32_t *idx;        /* per node: its name's index */
    uint32_t *cur, *next; /* a level's nodes left to right, and the next level's */
    size_t ncur, nnext, at, name_at;
    int64_t prev_end;
    int phase;  /* FB_* */
    buf_t tail; /* numTicks, maxSelf, metadata, timeline and the members */
} fb_stream_t;

/* The walk of encode without the levels' text: each node's name index
 * (interned in the same order) and x, and maxSelf. */
static int fb_index(fb_stream_t *v)
{
    fb_t *fb = &v->fb;
    const sorted_tree_t *st = &v->st;
    frame_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    int rc = 0;
    stack[sp++] = (frame_t){0, 0, 0};
    while (sp > 0 && rc == 0) {
        frame_t f = stack[--sp];
        rc = name_index(fb, f.node, &v->idx[f.node]);
        v->x[f.node] = f.x;
        int64_t self = fb->selves[f.node] / fb->div;
        if (self > fb->max_self) fb->max_self = self;
        sp = push_kids(fb, st, &f, f.x + self, stack, sp);
    }
    free(stack);
    return rc;
}

/* One node's level entry, its children queued for the next level. */
static int fb_entry(fb_stream_t *v, buf_t *out)
{
    fb_t *fb = &v->fb;
    uint32_t node = v->cur[v->at++];
    int64_t total = fb->totals[node] / fb->div;
    int rc = v->at > 1 ? buf_append_byte(out, ',') : 0;
    if (rc == 0) rc = buf_append_i64(out, v->x[node] - v->prev_end);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = buf_append_i64(out, total);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = buf_append_i64(out, fb->selves[node] / fb->div);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = buf_append_i64(out, v->idx[node]);
    v->prev_end = v->x[node] + total;
    for (uint32_t k = v->st.off[node]; k < v->st.off[node + 1]; k++)
        v->next[v->nnext++] = v->st.kids[k];
    return rc;
}

/* The end of a level: the next one starts, or the levels end. */
static int fb_level_end(fb_stream_t *v, buf_t *out)
{
    uint32_t *t = v->cur;
    v->cur = v->next;
    v->next = t;
    v->ncur = v->nnext;
    v->nnext = v->at = 0;
    v->prev_end = 0;
    if (v->ncur == 0) v->phase = FB_TAIL;
    return buf_append_str(out, v->ncur ? "],[" : "]");
}

static int fb_next(void *impl, buf_t *out, size_t want, int *done)
{
    fb_stream_t *v = impl;
    const strmap_t *names = &v->fb.names;
    size_t until = out->len + want;
    int rc = 0;
    while (rc == 0 && v->phase != FB_DONE && out->len < until) {
        if (v->phase == FB_HEAD) {
            rc = buf_append_str(out, "{\"version\":1,\"flamebearer\":{\"names\":[");
            v->phase = FB_NAMES;
        } else if (v->phase == FB_NAMES && v->name_at < names->n) {
            size_t i = v->name_at++;
            if (i > 0) rc = buf_append_byte(out, ',');
            if (rc == 0) rc = buf_append_json_string(out, names->strs[i], names->lens[i]);
        } else if (v->phase == FB_NAMES) {
            v->phase = FB_LEVELS_HEAD;
        } else if (v->phase == FB_LEVELS_HEAD) {
            rc = buf_append_str(out, "],\"levels\":[[");
            v->cur[0] = 0;
            v->ncur = 1;
            v->phase = FB_LEVELS;
        } else if (v->phase == FB_LEVELS) {
            rc = v->at < v->ncur ? fb_entry(v, out) : fb_level_end(v, out);
        } else {
            rc = buf_append(out, v->tail.data, v->tail.len);
            v->phase = FB_DONE;
        }
    }
    *done = v->phase == FB_DONE;
    return rc;
}

static void fb_stream_free(void *impl)
{
    fb_stream_t *v = impl;
    strmap_free(&v->fb.names);
    u64map_free(&v->fb.name_of);
    free(v->fb.name_of_sid);
    free(v->x);
    free(v->idx);
    free(v->cur);
    free(v->next);
    buf_free(&v->tail);
    query_sorted_tree_free(&v->st);
    calltree_free(v->tree);
    query_kept_free(v->kept);
    symtab_free(v->syms);
    free(v);
}

static const query_stream_ops_t fb_stream_ops = {fb_next, fb_stream_free};

/* What follows the levels, as encode writes it, with members added. */
static int fb_tail(fb_stream_t *v, int64_t num_ticks, const char *profile_type,
                   const char *spy_name, const query_timeline_t *tl, const char *members)
{
    buf_t *b = &v->tail;
    int rc = buf_printf(b, "],\"numTicks\":%lld,\"maxSelf\":%lld},", (long long)num_ticks,
                        (long long)v->fb.max_self);
    if (rc == 0) rc = query_write_metadata(b, "single", profile_type, spy_name);
    if (rc == 0) rc = buf_append_byte(b, ',');
    if (rc == 0) rc = write_timeline(b, tl);
    if (rc == 0) rc = buf_append_byte(b, '}');
    if (rc == 0 && members != NULL) rc = query_add_json_members(b, members);
    return rc;
}

/* Sets v's values and name maps (as encode does) and indexes its nodes;
 * its working memory held beside out, as encode's is. */
static int fb_stream_fill(fb_stream_t *v, int64_t num_ticks, const char *profile_type,
                          const char *spy_name, const query_timeline_t *tl, const char *members,
                          buf_t *out)
{
    fb_t *fb = &v->fb;
    size_t n = v->st.n;
    fb->st = &v->st;
    fb->max_bytes = out->max;
    fb->out = out;
    strmap_init(&fb->names);
    buf_init(&v->tail, BUF_UNLIMITED);
    int rc = u64map_init(&fb->name_of, 1024);
    if (rc == 0) rc = fb_take(fb, n * (sizeof *v->x + 3 * sizeof(uint32_t)));
    if (rc == 0 && fb->st->sid != NULL)
        rc = fb_take(fb, (fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
    if (rc == 0 && fb->st->sid != NULL) {
        fb->name_of_sid = malloc((fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
        if (fb->name_of_sid == NULL) rc = ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < fb->st->nsid; i++)
            fb->name_of_sid[i] = UINT32_MAX;
    }
    v->x = malloc(n * sizeof *v->x);
    v->idx = malloc(n * sizeof *v->idx);
    v->cur = malloc(n * sizeof *v->cur);
    v->next = malloc(n * sizeof *v->next);
    if (rc == 0 && (!v->x || !v->idx || !v->cur || !v->next)) rc = ERR_NOMEM;
    if (rc == 0) rc = fb_tables(fb);
    if (rc == 0) rc = fb_index(v);
    if (rc == 0) rc = fb_tail(v, num_ticks / fb->div, profile_type, spy_name, tl, members);
    return rc;
}

/* Decimal digits of v, its sign included. */
static size_t i64_digits(int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    return (v < 0) + (u == 0 ? 1 : decimal_len(u));
}

/* The most fb_least_bytes can count a node: a total and a self of 20
 * characters each (INT64_MIN's), and its 6 bytes of one-digit numbers and
 * separators. */
#define FB_LEAST_NODE_MAX (2 * 20 + 6)

/* A lower bound of the levels' text: each node's total and self exactly,
 * its x offset and name index at one digit, three commas and a separator.
 * Not counted (0) when even FB_LEAST_NODE_MAX a node stays under
 * min_bytes: the answer is written whole either way, and the count's two
 * divisions a node (an averaged type) took about 0.07 ms of a render of
 * 8,192 nodes. */
static size_t fb_least_bytes(const fb_t *fb, size_t n, size_t min_bytes)
{
    if (n < min_bytes / FB_LEAST_NODE_MAX) return 0;
    size_t least = 0;
    for (size_t i = 0; i < n; i++)
        least += i64_digits(fb->totals[i] / fb->div) + i64_digits(fb->selves[i] / fb->div) + 6;
    return least;
}

/* The values of *t or *kept, as query_encode_flamebearer(_kept) reads them. */
static int fb_values(fb_t *fb, calltree_t *t, const query_kept_t *kept, const query_timeline_t *tl)
{
    if (kept != NULL) {
        *fb = (fb_t){.sym = kept->sym, .selves = kept->self, .totals = kept->total};
    } else {
        *fb = (fb_t){.nodes = calltree_nodes(t),
                     .tsyms = calltree_syms(t),
                     .selves = calltree_selves(t),
                     .totals = calltree_totals(t)};
        if (fb->totals == NULL || fb->selves == NULL) return ERR_NOMEM;
    }
    fb->div = tl != NULL && tl->counts != NULL && tl->profiles > 1 ? tl->profiles : 1;
    return 0;
}

int query_flamebearer_open(calltree_t **t, query_kept_t **kept, symtab_t **syms,
                           const char *profile_type, const char *spy_name,
                           const query_timeline_t *tl, const char *members, size_t min_bytes,
                           buf_t *out, query_stream_t **stream)
{
    *stream = NULL;
    const query_kept_t *k = kept != NULL ? *kept : NULL;
    fb_stream_t *v = calloc(1, sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    int rc = fb_values(&v->fb, k ? NULL : *t, k, tl);
    size_t n = k ? k->n : (*t ? calltree_node_count(*t) : 0);
    size_t least = rc == 0 ? fb_least_bytes(&v->fb, n, min_bytes) : 0;
    if (rc == 0 && (min_bytes == 0 || least < min_bytes || least > out->max || out->len != 0)) {
        free(v);
        rc = k ? query_encode_flamebearer_kept(k, *syms, profile_type, spy_name, tl, out)
               : query_encode_flamebearer(*t, *syms, profile_type, spy_name, tl, out);
        return rc == 0 && members != NULL ? query_add_json_members(out, members) : rc;
    }
    if (rc == 0)
        rc = k ? query_sorted_tree_build_kept(&v->st, k, *syms, out)
               : query_sorted_tree_build(&v->st, *t, *syms, out);
    int64_t num_ticks = k ? k->total[0] : calltree_root_total(*t);
    if (rc == 0) rc = fb_stream_fill(v, num_ticks, profile_type, spy_name, tl, members, out);
    size_t bytes = sizeof *v + v->fb.held + v->st.held + v->tail.cap + symtab_mem_bytes(*syms) +
                   (k ? query_kept_bytes(k) : calltree_mem_bytes_read(*t));
    buf_beside_give(out, v->fb.held + v->st.held); /* the stream counts it from here */
    v->fb.out = v->st.out = NULL;
    v->fb.held = v->st.held = 0;
    if (rc != 0) {
        fb_stream_free(v); /* the tree, kept nodes and names not taken */
        return rc;
    }
    v->syms = *syms;
    *syms = NULL;
    if (k != NULL) {
        v->kept = *kept;
        *kept = NULL;
    } else {
        v->tree = *t;
        *t = NULL;
    }
    return query_stream_new(&fb_stream_ops, v, QUERY_STREAM_LENGTH_UNKNOWN, bytes, stream);
}
