/* flamebearer.c — the flamebearer JSON of Pyroscope's /render
 * (docs/query.md, Encoders): names deduplicated, levels of [x_offset_delta, total,
 * self, name_index] per node, children ordered by name. As in Pyroscope, a
 * node's children start after its own self width: x(child0) = x + self.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

typedef struct level {
    buf_t text; /* "d,t,s,n,d,t,s,n..."; first: query_write_flamebearer reads it there */
    int64_t prev_end;
} level_t;

typedef struct fb {
    const sorted_tree_t *st;
    strmap_t names;
    level_t *lv;
    size_t nlv, caplv;
    size_t bytes, max_bytes; /* all level text together stays under the body cap */
    int64_t max_self;
} fb_t;

typedef struct frame {
    uint32_t node;
    uint32_t depth;
    int64_t x;
} frame_t;

static int level_at(fb_t *fb, size_t d, level_t **out)
{
    while (d >= fb->nlv) {
        if (GROW_FROM(fb->lv, fb->caplv, fb->nlv + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
        buf_init(&fb->lv[fb->nlv].text, fb->max_bytes);
        fb->lv[fb->nlv++].prev_end = 0;
    }
    *out = &fb->lv[d];
    return 0;
}

/* Writes v in decimal at p (room for 20 characters); returns the end. */
static char *put_i64(char *p, int64_t v)
{
    char tmp[24], *t = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--t = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) *--t = '-';
    size_t n = (size_t)(tmp + sizeof tmp - t);
    memcpy(p, t, n);
    return p + n;
}

static int emit(fb_t *fb, const frame_t *f)
{
    const calltree_t *t = fb->st->t;
    int64_t total = calltree_total(t, f->node), self = calltree_self(t, f->node);
    const char *name = f->node == 0 ? "total" : fb->st->name[f->node];
    uint32_t idx;
    level_t *lv;
    int rc = strmap_intern(&fb->names, name, strlen(name), &idx);
    if (rc == 0) rc = level_at(fb, f->depth, &lv);
    if (rc != 0) return rc;
    size_t before = lv->text.len;
    /* the hot loop of rendering: no printf, one append per node */
    char quad[4 * 21 + 4], *q = quad;
    if (before) *q++ = ',';
    q = put_i64(q, f->x - lv->prev_end);
    *q++ = ',';
    q = put_i64(q, total);
    *q++ = ',';
    q = put_i64(q, self);
    *q++ = ',';
    q = put_i64(q, idx);
    rc = buf_append(&lv->text, quad, (size_t)(q - quad));
    if (rc != 0) return rc;
    fb->bytes += lv->text.len - before;
    if (fb->bytes > fb->max_bytes) return ERR_TOO_LARGE;
    lv->prev_end = f->x + total;
    if (self > fb->max_self) fb->max_self = self;
    return 0;
}

/* Preorder, left to right, so each level's nodes come in x order. */
static int walk(fb_t *fb)
{
    const sorted_tree_t *st = fb->st;
    frame_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    int rc = 0;
    stack[sp++] = (frame_t){0, 0, 0};
    while (sp > 0 && rc == 0) {
        frame_t f = stack[--sp];
        rc = emit(fb, &f);
        /* child x offsets, computed left to right, pushed right to left */
        int64_t x = f.x + calltree_self(st->t, f.node);
        uint32_t a = st->off[f.node], b = st->off[f.node + 1];
        for (uint32_t k = a; k < b; k++)
            x += calltree_total(st->t, st->kids[k]);
        for (uint32_t k = b; k > a; k--) {
            uint32_t c = st->kids[k - 1];
            x -= calltree_total(st->t, c);
            stack[sp++] = (frame_t){c, f.depth + 1, x};
        }
    }
    free(stack);
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
    return rc != 0 ? rc : query_write_timeline(out, tl, tl->samples);
}

int query_write_flamebearer(buf_t *out, const strmap_t *names, const void *levels, size_t nlevels,
                            size_t stride, int64_t num_ticks, int64_t max_self)
{
    int rc = buf_append_str(out, "\"flamebearer\":{\"names\":[");
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

int query_encode_flamebearer(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                             const char *spy_name, const query_timeline_t *tl, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms);
    if (rc != 0) return rc;
    fb_t fb = {.st = &st, .max_bytes = out->max};
    strmap_init(&fb.names);
    rc = walk(&fb);
    if (rc == 0) rc = buf_append_str(out, "{\"version\":1,");
    if (rc == 0)
        rc = query_write_flamebearer(out, &fb.names, fb.lv, fb.nlv, sizeof *fb.lv,
                                     calltree_root_total(t), fb.max_self);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = query_write_metadata(out, "single", profile_type, spy_name);
    if (rc == 0) rc = buf_append_byte(out, ',');
    if (rc == 0) rc = write_timeline(out, tl);
    if (rc == 0) rc = buf_append_byte(out, '}');
    for (size_t d = 0; d < fb.nlv; d++)
        buf_free(&fb.lv[d].text);
    free(fb.lv);
    strmap_free(&fb.names);
    query_sorted_tree_free(&st);
    return rc;
}
