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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/u64map.h"
#include "query/query_int.h"

typedef struct sframe sframe_t;

typedef struct ss {
    const sorted_tree_t *st;
    buf_t *out;  /* the answer: this working memory is held beside it (NULL in a stream) */
    size_t held; /* taken beside out */
    const query_ss_profile_t *profiles;
    size_t nprofiles;
    const char *name, *unit;
    const char *members; /* NULL, or added inside the file's brace */
    u64map_t index;      /* symbol -> frame number */
    uint32_t *frame_of;  /* node -> frame number */
    uint32_t *first;     /* frame number -> first node that has it */
    uint32_t nframes;
    /* where the writer is (ss_step) */
    int phase;
    uint32_t f; /* the next frame */
    size_t k;   /* the profile */
    sframe_t *stack;
    size_t sp;
    uint32_t *path;
    int first_item;
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
    int rc = s->out != NULL ? buf_beside_take(s->out, n) : 0;
    if (rc == 0) s->held += n;
    return rc;
}

static void ss_give(ss_t *s, size_t n)
{
    if (s->out != NULL) buf_beside_give(s->out, n);
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

struct sframe {
    uint32_t node, depth;
};

/* Where the writer is: each step writes one piece and moves on. */
enum { SS_HEAD, SS_FRAMES, SS_PROFILE, SS_SAMPLES, SS_WEIGHTS, SS_TAIL, SS_DONE };

/* The walk's arrays (taken first: beside the answer, or counted in the
 * stream) and the preorder stack's start. */
static int walk_init(ss_t *s)
{
    size_t n = s->st->n;
    int rc = ss_take(s, n * sizeof(sframe_t) + (n + 1) * sizeof(uint32_t));
    if (rc != 0) return rc;
    s->stack = malloc(n * sizeof *s->stack);
    s->path = malloc((n + 1) * sizeof *s->path); /* path[d]: frame at depth d */
    return s->stack && s->path ? 0 : ERR_NOMEM;
}

static void walk_root(ss_t *s)
{
    s->stack[0] = (sframe_t){0, 0};
    s->sp = 1;
    s->first_item = 1;
}

/* The next node of the preorder walk (its children pushed), its path set. */
static sframe_t walk_step(ss_t *s)
{
    const sorted_tree_t *st = s->st;
    sframe_t f = s->stack[--s->sp];
    s->path[f.depth] = s->frame_of[f.node];
    for (uint32_t k = st->off[f.node + 1]; k > st->off[f.node]; k--)
        s->stack[s->sp++] = (sframe_t){st->kids[k - 1], f.depth + 1};
    return f;
}

static int write_frame(const ss_t *s, uint32_t f, buf_t *out)
{
    uint32_t i = s->first[f];
    const char *name = i == 0 ? "total" : s->st->name[i], *file = s->st->file[i];
    int rc = buf_append_str(out, f ? ",{\"name\":" : "{\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, name, strlen(name));
    if (rc == 0 && file[0] != 0) {
        rc = buf_append_str(out, ",\"file\":");
        if (rc == 0) rc = buf_append_json_string(out, file, strlen(file));
    }
    return rc != 0 ? rc : buf_append_byte(out, '}');
}

/* One sample per node with a non-zero self: the frames on its path (the
 * root's own frame only when the root itself is the sample). */
static int write_sample(ss_t *s, sframe_t f, buf_t *out)
{
    if (self_of(s, &s->profiles[s->k], f.node) == 0) return 0;
    int rc = buf_append_str(out, s->first_item ? "[" : ",[");
    s->first_item = 0;
    if (f.depth == 0) rc = rc ? rc : buf_append_i64(out, s->frame_of[0]);
    for (uint32_t d = 1; rc == 0 && d <= f.depth; d++) {
        if (d > 1) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_i64(out, s->path[d]);
    }
    return rc != 0 ? rc : buf_append_byte(out, ']');
}

/* Its weight, in the same order. */
static int write_weight(ss_t *s, sframe_t f, buf_t *out)
{
    int64_t self = self_of(s, &s->profiles[s->k], f.node);
    if (self == 0) return 0;
    int rc = s->first_item ? 0 : buf_append_byte(out, ',');
    s->first_item = 0;
    return rc != 0 ? rc : buf_append_i64(out, self);
}

static int64_t profile_total(const ss_t *s, const query_ss_profile_t *p)
{
    if (p->self == NULL) return calltree_root_total(s->st->t);
    int64_t sum = 0;
    for (size_t i = 0; i < s->st->n; i++)
        sum += p->self[i];
    return sum;
}

/* Profile k's members up to its samples. */
static int write_profile_head(const ss_t *s, buf_t *out)
{
    const query_ss_profile_t *p = &s->profiles[s->k];
    int rc = buf_append_str(out, s->k > 0 ? ",{\"type\":\"sampled\",\"name\":"
                                          : "{\"type\":\"sampled\",\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, p->name, strlen(p->name));
    if (rc == 0) rc = buf_append_str(out, ",\"unit\":\"");
    if (rc == 0) rc = buf_append_str(out, s->unit);
    if (rc == 0)
        rc = buf_printf(out, "\",\"startValue\":0,\"endValue\":%lld,\"samples\":[",
                        (long long)profile_total(s, p));
    return rc;
}

/* The file's end: its name, then the members (NULL: none) inside its brace. */
static int write_tail(const ss_t *s, buf_t *out)
{
    buf_t tail;
    buf_init(&tail, BUF_UNLIMITED);
    int rc = buf_append_str(&tail, "],\"name\":");
    if (rc == 0) rc = buf_append_json_string(&tail, s->name, strlen(s->name));
    if (rc == 0) rc = buf_append_str(&tail, ",\"activeProfileIndex\":0,\"exporter\":\"flamedb\"}");
    if (rc == 0 && s->members != NULL) rc = query_add_json_members(&tail, s->members);
    if (rc == 0) rc = buf_append(out, tail.data, tail.len);
    buf_free(&tail);
    return rc;
}

/* One piece of the file after s->phase; the walks write until out reaches
 * until. */
static int ss_step(ss_t *s, buf_t *out, size_t until)
{
    int rc = 0;
    switch (s->phase) {
    case SS_HEAD:
        rc = buf_append_str(out, "{\"$schema\":\"https://www.speedscope.app/file-format-schema."
                                 "json\",\"shared\":{\"frames\":[");
        s->phase = SS_FRAMES;
        return rc;
    case SS_FRAMES:
        while (rc == 0 && s->f < s->nframes && out->len < until)
            rc = write_frame(s, s->f++, out);
        if (rc == 0 && s->f == s->nframes) {
            rc = buf_append_str(out, "]},\"profiles\":[");
            s->phase = SS_PROFILE;
        }
        return rc;
    case SS_PROFILE:
        if (s->k == s->nprofiles) {
            s->phase = SS_TAIL;
            return 0;
        }
        walk_root(s);
        s->phase = SS_SAMPLES;
        return write_profile_head(s, out);
    case SS_SAMPLES:
    case SS_WEIGHTS:
        while (rc == 0 && s->sp > 0 && out->len < until) {
            sframe_t f = walk_step(s);
            rc = s->phase == SS_SAMPLES ? write_sample(s, f, out) : write_weight(s, f, out);
        }
        if (rc != 0 || s->sp > 0) return rc;
        if (s->phase == SS_SAMPLES) {
            walk_root(s);
            s->phase = SS_WEIGHTS;
            return buf_append_str(out, "],\"weights\":[");
        }
        s->k++;
        s->phase = SS_PROFILE;
        return buf_append_str(out, "]}");
    case SS_TAIL:
        s->phase = SS_DONE;
        return write_tail(s, out);
    default:
        return 0;
    }
}

/* Appends at least want bytes of the file (or its rest). */
static int ss_write(ss_t *s, buf_t *out, size_t want)
{
    size_t until = out->len + want;
    int rc = 0;
    while (rc == 0 && s->phase != SS_DONE && out->len < until)
        rc = ss_step(s, out, until);
    return rc;
}

static void ss_release(ss_t *s)
{
    u64map_free(&s->index);
    free(s->frame_of);
    free(s->first);
    free(s->stack);
    free(s->path);
    if (s->out != NULL) ss_give(s, s->held);
}

/* Numbers the frames and makes the walk's arrays (held beside out). */
static int ss_prepare(ss_t *s, const char *profile_type)
{
    s->unit = unit_of(profile_type);
    int rc = number_frames(s);
    return rc != 0 ? rc : walk_init(s);
}

int query_speedscope_write(const sorted_tree_t *st, const char *profile_type, const char *name,
                           const query_ss_profile_t *profiles, size_t nprofiles, buf_t *out)
{
    ss_t s = {.st = st, .profiles = profiles, .nprofiles = nprofiles, .out = out, .name = name};
    int rc = ss_prepare(&s, profile_type);
    if (rc == 0) rc = ss_write(&s, out, SIZE_MAX - out->len);
    ss_release(&s);
    return rc;
}

/* ---- the answer as a stream ---- */

#define SS_MAX_PROFILES 2

typedef struct ss_stream {
    calltree_t *tree; /* owned, with syms: what st reads */
    symtab_t *syms;
    sorted_tree_t st;
    char *name, *members, *names[SS_MAX_PROFILES]; /* owned copies */
    int64_t *selves[SS_MAX_PROFILES];              /* owned (taken), or NULL */
    query_ss_profile_t profiles[SS_MAX_PROFILES];
    ss_t s;
} ss_stream_t;

static int ss_next(void *impl, buf_t *out, size_t want, int *done)
{
    ss_stream_t *v = impl;
    int rc = ss_write(&v->s, out, want);
    *done = v->s.phase == SS_DONE;
    return rc;
}

static void ss_stream_free(void *impl)
{
    ss_stream_t *v = impl;
    ss_release(&v->s);
    query_sorted_tree_free(&v->st);
    for (size_t k = 0; k < SS_MAX_PROFILES; k++) {
        free(v->names[k]);
        free(v->selves[k]);
    }
    free(v->name);
    free(v->members);
    calltree_free(v->tree);
    symtab_free(v->syms);
    free(v);
}

static const query_stream_ops_t ss_stream_ops = {ss_next, ss_stream_free};

/* A lower bound of the frames' and samples' text: each frame's
 * `{"name":""}`, each sample's brackets and frame numbers at one digit
 * and a comma each, its weight at one digit. */
static size_t ss_least_bytes(ss_t *s)
{
    size_t least = (size_t)s->nframes * 11;
    for (s->k = 0; s->k < s->nprofiles; s->k++) {
        walk_root(s);
        while (s->sp > 0) {
            sframe_t f = walk_step(s);
            if (self_of(s, &s->profiles[s->k], f.node) != 0)
                least += 2 * (size_t)(f.depth > 0 ? f.depth : 1) + 2;
        }
    }
    s->k = 0;
    return least;
}

static int dup_or_null(const char *s, char **out)
{
    *out = NULL;
    if (s != NULL && (*out = strdup(s)) == NULL) return ERR_NOMEM;
    return 0;
}

/* The copies v keeps and the profiles over them (selves borrowed until
 * v takes them). */
static int ss_stream_names(ss_stream_t *v, const char *name, const char *const *names,
                           int64_t **selves, size_t nprofiles, const char *members)
{
    int rc = dup_or_null(name, &v->name);
    if (rc == 0) rc = dup_or_null(members, &v->members);
    for (size_t k = 0; rc == 0 && k < nprofiles; k++) {
        rc = dup_or_null(names[k], &v->names[k]);
        v->profiles[k] = (query_ss_profile_t){v->names[k], selves[k]};
    }
    return rc;
}

/* Moves the tree, names and selves into v (set to NULL) and v into a stream. */
static int ss_stream_take(ss_stream_t *v, calltree_t **t, symtab_t **syms, int64_t **selves,
                          size_t nprofiles, buf_t *out, query_stream_t **stream)
{
    size_t bytes = sizeof *v + v->st.held + v->s.held + calltree_mem_bytes_read(*t) +
                   symtab_mem_bytes(*syms) + (v->members ? strlen(v->members) : 0);
    buf_beside_give(out, v->st.held + v->s.held); /* the stream counts it from here */
    v->st.out = v->s.out = NULL;
    v->st.held = v->s.held = 0;
    for (size_t k = 0; k < nprofiles; k++) {
        v->selves[k] = selves[k];
        selves[k] = NULL;
        if (v->selves[k] != NULL) bytes += v->st.n * sizeof(int64_t);
    }
    v->tree = *t;
    v->syms = *syms;
    *t = NULL;
    *syms = NULL;
    return query_stream_new(&ss_stream_ops, v, QUERY_STREAM_LENGTH_UNKNOWN, bytes, stream);
}

int query_speedscope_open(calltree_t **t, symtab_t **syms, const char *profile_type,
                          const char *name, const char *const *names, int64_t **selves,
                          size_t nprofiles, const char *members, size_t min_bytes, buf_t *out,
                          query_stream_t **stream)
{
    *stream = NULL;
    if (nprofiles > SS_MAX_PROFILES) return ERR_INTERNAL;
    ss_stream_t *v = calloc(1, sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    int rc = ss_stream_names(v, name, names, selves, nprofiles, members);
    if (rc == 0) rc = query_sorted_tree_build(&v->st, *t, *syms, out);
    v->s = (ss_t){.st = &v->st,
                  .profiles = v->profiles,
                  .nprofiles = nprofiles,
                  .out = out,
                  .name = v->name,
                  .members = v->members};
    if (rc == 0) rc = ss_prepare(&v->s, profile_type);
    size_t least = rc == 0 ? ss_least_bytes(&v->s) : 0;
    if (rc == 0 && min_bytes > 0 && least >= min_bytes && least <= out->max && out->len == 0)
        return ss_stream_take(v, t, syms, selves, nprofiles, out, stream);
    if (rc == 0) rc = ss_write(&v->s, out, SIZE_MAX - out->len);
    ss_stream_free(v); /* the tree, names and selves not taken */
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
