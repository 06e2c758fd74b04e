/* speedscope.c — the merged tree as a speedscope file
 * (https://www.speedscope.app/file-format-schema.json).
 *
 * Each "sampled" profile: one sample per node with a non-zero self, in
 * preorder of the name-sorted tree, its stack root first, weight = self, so
 * the weights add up to that profile's total (a render's numTicks). A render
 * writes one profile with the tree's own selves; render-diff writes two over
 * the same tree (each side's selves), so both share one frames table: one
 * frame per distinct symbol, numbered in order of first appearance. As in
 * folded, a non-zero self on the root (a sample with an empty stack) is the
 * frame `total`. The unit comes from the profile type's sample unit.
 */
#include <stdlib.h>
#include <string.h>

#include "common/u64map.h"
#include "query/query_int.h"

typedef struct ss {
    const sorted_tree_t *st;
    buf_t *out;  /* the answer: this working memory is held beside it */
    size_t held; /* taken beside out */
    const query_ss_profile_t *profiles;
    size_t nprofiles;
    u64map_t index;     /* symbol -> frame number */
    uint32_t *frame_of; /* node -> frame number */
    uint32_t *first;    /* frame number -> first node that has it */
    uint32_t nframes;
} ss_t;

/* speedscope knows these units; everything else is "none". */
static const char *unit_of(const char *profile_type)
{
    static const char *known[] = {"nanoseconds", "microseconds", "milliseconds", "seconds",
                                  "bytes"};
    ptype_t pt;
    if (profile_type == NULL || query_ptype_parse(profile_type, &pt) != 0) return "none";
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(pt.sample_unit, known[i]) == 0) return known[i];
    return "none";
}

/* A profile's self of node i: its own array, or the tree's selves. */
static int64_t self_of(const ss_t *s, const query_ss_profile_t *p, uint32_t i)
{
    return p->self != NULL ? p->self[i] : calltree_self(s->st->t, i);
}

/* The root is a frame (`total`) only when it is a sample of some profile. */
static int root_is_sample(const ss_t *s)
{
    for (size_t k = 0; k < s->nprofiles; k++)
        if (self_of(s, &s->profiles[k], 0) != 0) return 1;
    return 0;
}

/* Takes n bytes beside the answer before they are allocated. */
static int ss_take(ss_t *s, size_t n)
{
    int rc = buf_beside_take(s->out, n);
    if (rc == 0) s->held += n;
    return rc;
}

static void ss_give(ss_t *s, size_t n)
{
    buf_beside_give(s->out, n);
    s->held -= n;
}

/* The most the symbol index holds for n keys while it grows: its largest
 * table and the one before it (a rehash holds both). */
static size_t index_bound(size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 2)
        cap <<= 1;
    return (cap + cap / 2) * sizeof(u64map_slot_t);
}

static int number_frames(ss_t *s)
{
    const sorted_tree_t *st = s->st;
    /* frame_of and first stay; the stack and the index (freed once
     * numbered) are taken at their largest */
    size_t work = st->n * sizeof(uint32_t) + index_bound(st->n);
    int rc = ss_take(s, 2 * st->n * sizeof(uint32_t));
    if (rc == 0) rc = ss_take(s, work);
    if (rc != 0) return rc;
    s->frame_of = malloc(st->n * sizeof *s->frame_of);
    s->first = malloc(st->n * sizeof *s->first);
    if (s->frame_of == NULL || s->first == NULL) return ERR_NOMEM;
    /* Preorder so frame numbers follow the name-sorted tree, not node order. */
    uint32_t *stack = malloc(st->n * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t sp = 0;
    int root_frame = root_is_sample(s);
    stack[sp++] = 0;
    while (sp > 0 && rc >= 0) {
        uint32_t i = stack[--sp];
        s->frame_of[i] = 0;
        if (i != 0 || root_frame)
            rc = u64map_get_or_put(&s->index, calltree_sym(st->t, i), s->nframes, &s->frame_of[i]);
        if (rc == 1) s->first[s->nframes++] = i;
        rc = rc == 1 ? 0 : rc;
        for (uint32_t k = st->off[i + 1]; k > st->off[i]; k--)
            stack[sp++] = st->kids[k - 1];
    }
    free(stack);
    u64map_free(&s->index); /* numbered: only frame_of and first are read from here */
    ss_give(s, work);
    return rc < 0 ? rc : 0;
}

static int write_frames(const ss_t *s, buf_t *out)
{
    int rc = buf_append_str(out, "\"shared\":{\"frames\":[");
    for (uint32_t f = 0; rc == 0 && f < s->nframes; f++) {
        uint32_t i = s->first[f];
        const char *name = i == 0 ? "total" : s->st->name[i], *file = s->st->file[i];
        rc = buf_append_str(out, f ? ",{\"name\":" : "{\"name\":");
        if (rc == 0) rc = buf_append_json_string(out, name, strlen(name));
        if (rc == 0 && file[0] != 0) {
            rc = buf_append_str(out, ",\"file\":");
            if (rc == 0) rc = buf_append_json_string(out, file, strlen(file));
        }
        if (rc == 0) rc = buf_append_byte(out, '}');
    }
    return rc != 0 ? rc : buf_append_str(out, "]}");
}

typedef struct sframe {
    uint32_t node, depth;
} sframe_t;

/* One sample per node with a non-zero self: the frames on its path (the
 * root's own frame only when the root itself is the sample). */
static int write_sample(const ss_t *s, const query_ss_profile_t *p, const uint32_t *path,
                        sframe_t f, int *first, buf_t *out, buf_t *weights)
{
    int64_t self = self_of(s, p, f.node);
    if (self == 0) return 0;
    int rc = buf_append_str(out, *first ? "[" : ",[");
    if (rc == 0 && !*first) rc = buf_append_byte(weights, ',');
    *first = 0;
    if (f.depth == 0) rc = rc ? rc : buf_append_i64(out, s->frame_of[0]);
    for (uint32_t d = 1; rc == 0 && d <= f.depth; d++) {
        if (d > 1) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_i64(out, path[d]);
    }
    if (rc == 0) rc = buf_append_byte(out, ']');
    return rc != 0 ? rc : buf_append_i64(weights, self);
}

static int write_samples(const ss_t *s, const query_ss_profile_t *p, buf_t *out)
{
    const sorted_tree_t *st = s->st;
    /* the stack, the path and the weights (as they grow) beside the answer */
    size_t work = st->n * sizeof(sframe_t) + (st->n + 1) * sizeof(uint32_t);
    int rc = buf_beside_take(out, work);
    if (rc != 0) return rc;
    sframe_t *stack = malloc(st->n * sizeof *stack);
    uint32_t *path = malloc((st->n + 1) * sizeof *path); /* path[d]: frame at depth d */
    buf_t weights;
    buf_beside_t link = {out, 0};
    buf_init(&weights, out->max);
    buf_charge(&weights, buf_beside_grows, &link);
    rc = stack && path ? buf_append_str(out, "\"samples\":[") : ERR_NOMEM;
    size_t sp = 0;
    int first = 1;
    if (rc == 0) stack[sp++] = (sframe_t){0, 0};
    while (sp > 0 && rc == 0) {
        sframe_t f = stack[--sp];
        path[f.depth] = s->frame_of[f.node];
        rc = write_sample(s, p, path, f, &first, out, &weights);
        for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node] && rc == 0; k--)
            stack[sp++] = (sframe_t){st->kids[k - 1], f.depth + 1};
    }
    if (rc == 0) rc = buf_append_str(out, "],\"weights\":[");
    if (rc == 0) rc = buf_append(out, weights.data, weights.len);
    if (rc == 0) rc = buf_append_byte(out, ']');
    buf_free(&weights);
    buf_beside_give(out, link.held);
    free(path);
    free(stack);
    buf_beside_give(out, work);
    return rc;
}

static int64_t profile_total(const ss_t *s, const query_ss_profile_t *p)
{
    if (p->self == NULL) return calltree_root_total(s->st->t);
    int64_t sum = 0;
    for (size_t i = 0; i < s->st->n; i++)
        sum += p->self[i];
    return sum;
}

static int write_profile(const ss_t *s, const query_ss_profile_t *p, const char *unit, buf_t *out)
{
    int rc = buf_append_str(out, "{\"type\":\"sampled\",\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, p->name, strlen(p->name));
    if (rc == 0) rc = buf_append_str(out, ",\"unit\":\"");
    if (rc == 0) rc = buf_append_str(out, unit);
    if (rc == 0)
        rc = buf_printf(out, "\",\"startValue\":0,\"endValue\":%lld,",
                        (long long)profile_total(s, p));
    if (rc == 0) rc = write_samples(s, p, out);
    return rc ? rc : buf_append_byte(out, '}');
}

static int write_file(const ss_t *s, const char *profile_type, const char *name, buf_t *out)
{
    const char *unit = unit_of(profile_type);
    int rc =
        buf_append_str(out, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",");
    if (rc == 0) rc = write_frames(s, out);
    if (rc == 0) rc = buf_append_str(out, ",\"profiles\":[");
    for (size_t k = 0; rc == 0 && k < s->nprofiles; k++) {
        if (k > 0) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = write_profile(s, &s->profiles[k], unit, out);
    }
    if (rc == 0) rc = buf_append_str(out, "],\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, name, strlen(name));
    return rc ? rc : buf_append_str(out, ",\"activeProfileIndex\":0,\"exporter\":\"flamedb\"}");
}

int query_speedscope_write(const sorted_tree_t *st, const char *profile_type, const char *name,
                           const query_ss_profile_t *profiles, size_t nprofiles, buf_t *out)
{
    ss_t s = {.st = st, .profiles = profiles, .nprofiles = nprofiles, .out = out};
    int rc = number_frames(&s);
    if (rc == 0) rc = write_file(&s, profile_type, name, out);
    u64map_free(&s.index);
    free(s.frame_of);
    free(s.first);
    ss_give(&s, s.held);
    return rc;
}

int query_encode_speedscope(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                            const char *name, buf_t *out)
{
    if (name == NULL) name = profile_type ? profile_type : "flamedb";
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms, out);
    if (rc != 0) return rc;
    query_ss_profile_t p = {.name = name, .self = NULL};
    rc = query_speedscope_write(&st, profile_type, name, &p, 1, out);
    query_sorted_tree_free(&st);
    return rc;
}
