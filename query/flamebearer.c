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
    int64_t div;         /* an averaged type: every value / the profiles (rounded down); else 1 */
    buf_t *out;          /* the answer: this working memory is held beside it (buf_beside_take) */
    size_t held;         /* taken beside out */
    size_t tables;       /* of held: the name maps and the level array, as last measured */
    assist_t *assist;    /* kept nodes: the deeper levels written on a helper of it, */
    assist_task_t *task; /* reserved ahead for them (NULL: none, or given) */
    size_t allow;        /* with out NULL (the helper's part): what it may still take */
    const char **onames; /* or NULL: the names in index order (name_placed_classes), */
    size_t *olens;       /* their lengths, */
    size_t nonames;      /* how many (their bytes taken beside the answer with the rest) */
    uint32_t *oclass;    /* with onames: each one's class (fb_helper_t) */
    buf_t esc;           /* with onames_json: the names as JSON strings, which onames point into */
    int onames_json;     /* onames are JSON strings, quotes included (the helper's esc) */
} fb_t;

typedef struct frame {
    uint32_t node;
    uint32_t depth;
    int64_t x;
} frame_t;

/* Takes n bytes beside the answer before they are allocated; a part
 * written on a helper (out NULL) takes them from its allowance, which the
 * answer's thread took beside the answer for it. */
static int fb_take(fb_t *fb, size_t n)
{
    int rc = 0;
    if (fb->out == NULL && n > fb->allow) rc = ERR_UNAVAILABLE;
    if (fb->out == NULL && rc == 0) fb->allow -= n;
    if (fb->out != NULL) rc = buf_beside_take(fb->out, n);
    if (rc == 0) fb->held += n;
    return rc;
}

static void fb_give(fb_t *fb, size_t n)
{
    if (fb->out != NULL)
        buf_beside_give(fb->out, n);
    else
        fb->allow += n;
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

/* A level entry at x with its values (already / fb->div) and name index,
 * after the level's last one. */
static int write_entry(fb_t *fb, level_t *lv, int64_t x, int64_t total, int64_t self, uint32_t idx)
{
    /* the hot loop of rendering: no printf, the four numbers written in place
     * (through a copy only near the body cap, where the room is not there) */
    int rc = 0;
    size_t before = lv->text.len;
    char quad[3 * 22 + PUT_ROOM + 1], *start = quad, *q; /* three numbers and commas, a fourth */
    int direct = has_room(&lv->text, sizeof quad);
    if (!direct && (rc = level_reserve(fb, lv, sizeof quad)) != 0 && rc != ERR_TOO_LARGE) return rc;
    direct |= rc == 0;
    if (direct) start = (char *)lv->text.data + before;
    q = start;
    if (before) *q++ = ',';
    q = put_i64(q, x - lv->prev_end);
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
    lv->prev_end = x + total;
    return 0;
}

/* f's level entry; total and self are its values / fb->div (the walk
 * divides each once). */
static int emit(fb_t *fb, const frame_t *f, int64_t total, int64_t self)
{
    uint32_t idx;
    level_t *lv;
    int rc = name_index(fb, f->node, &idx);
    if (rc == 0) rc = level_at(fb, f->depth, &lv);
    if (rc == 0) rc = write_entry(fb, lv, f->x, total, self, idx);
    if (rc == 0 && self > fb->max_self) fb->max_self = self;
    return rc;
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

/* ---- kept nodes: the levels written in two parts ----
 *
 * Kept nodes come parents first, so where each lands in the walk's order
 * (preorder, children by name) follows from subtree sizes without a walk:
 * placed[] holds every node at its place with its level, x and values,
 * and one pass over it numbers the names in the walk's order. Each level
 * is then the placed nodes of its depth, in order: the shallow levels are
 * written on this thread and the deep ones beside it, on a helper when one
 * is idle (fb->assist), into levels of their own. The bytes are those of
 * the walk. */

typedef struct placed {
    int64_t x, total, self; /* total and self / fb->div */
    uint32_t depth;
    uint32_t name; /* the node, until name_placed: then its name's index */
} placed_t;

/* placed[] (st->n) in the walk's order; size (st->n) is scratch. Returns
 * the deepest level. */
static uint32_t place(const fb_t *fb, placed_t *placed, uint32_t *size)
{
    const sorted_tree_t *st = fb->st;
    for (size_t i = 0; i < st->n; i++)
        size[i] = 1;
    for (size_t i = st->n - 1; i > 0; i--)
        size[st->parent[i]] += size[i];
    /* from here size[i] is node i's place once its parent was placed */
    size[0] = 0;
    placed[0] = (placed_t){0, fb->totals[0] / fb->div, fb->selves[0] / fb->div, 0, 0};
    uint32_t deepest = 0;
    for (uint32_t i = 0; i < st->n; i++) {
        const placed_t *p = &placed[size[i]];
        uint32_t at = size[i] + 1, depth = p->depth + 1;
        int64_t x = p->x + p->self;
        for (uint32_t k = st->off[i]; k < st->off[i + 1]; k++) {
            uint32_t c = st->kids[k], below = size[c];
            int64_t total = fb->totals[c] / fb->div;
            placed[at] = (placed_t){x, total, fb->selves[c] / fb->div, depth, c};
            size[c] = at;
            at += below;
            x = (int64_t)((uint64_t)x + (uint64_t)total);
        }
        if (st->off[i + 1] > st->off[i] && depth > deepest) deepest = depth;
    }
    return deepest;
}

/* Numbers the names in the walk's order (as emit does) and counts each
 * level's nodes into count (deepest + 1); sets fb->max_self. */
static int name_placed(fb_t *fb, placed_t *placed, size_t *count)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < fb->st->n; i++) {
        placed_t *p = &placed[i];
        rc = name_index(fb, p->name, &p->name);
        count[p->depth]++;
        if (p->self > fb->max_self) fb->max_self = p->self;
    }
    return rc;
}

/* Bytes a level entry is guessed to take: four numbers and their commas
 * (about 21 on the bench's heap render, 8,192 nodes). */
#define LEVEL_ENTRY_GUESS 24

/* Each level made, its text as large as its nodes' entries are guessed to
 * take: grown by doubling from empty, every level was copied about eight
 * times. A level that does not fit the guess grows as before, and a guess
 * that cannot be held (past the body cap, or refused) is not made: the
 * writing then fails, or not, as it would. */
static int presize_levels(fb_t *fb, const size_t *count, uint32_t deepest)
{
    level_t *lv;
    int rc = 0;
    for (size_t d = 0; d <= deepest && rc == 0; d++)
        if ((rc = level_at(fb, d, &lv)) == 0 &&
            level_reserve(fb, lv, count[d] * LEVEL_ENTRY_GUESS) == ERR_NOMEM)
            rc = ERR_NOMEM;
    return rc;
}

/* One part of the levels: those of depth lo to hi - 1. */
typedef struct fb_part {
    fb_t fb; /* a copy of the answer's: its own byte count, takes and allowance */
    const placed_t *placed;
    uint32_t lo, hi;
    int rc;
} fb_part_t;

static void write_part(void *arg)
{
    fb_part_t *p = arg;
    size_t n = p->fb.st->n;
    uint32_t width = p->hi - p->lo;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const placed_t *e = &p->placed[i];
        if (e->depth - p->lo < width)
            rc = write_entry(&p->fb, &p->fb.lv[e->depth], e->x, e->total, e->self, e->name);
    }
    p->rc = rc;
}

/* The most bytes one level entry takes: four numbers of at most 20
 * characters (INT64_MIN's; a name index has fewer) and four separators. */
#define LEVEL_ENTRY_MAX (4 * 20 + 4)

/* What a helper does for the kept levels: the names' classes (each
 * distinct name's, hashed once) while this thread places the nodes, then
 * the deep levels once the names are numbered. */
typedef struct fb_helper {
    const sorted_tree_t *st;
    strmap_t classes;      /* "total", then each symbol's name, once */
    uint32_t *class_of;    /* per sid: its name's class */
    size_t held;           /* their bytes, taken beside the answer */
    int classes_rc;        /* the helper's */
    assist_flag_t classed; /* set by the helper: classes made (or failed) */
    assist_flag_t go;      /* set here: 1 the deep part below, 2 nothing */
    int gone, joined;      /* go set; the part joined */
    fb_part_t below;
    buf_t esc;      /* each class's name as a JSON string, made by the helper while this
                       thread numbers the names (read once the helper is joined) */
    size_t *esc_at; /* per class: where its string starts in esc, and esc's end (NULL: none) */
} fb_helper_t;

static int make_classes(fb_helper_t *h)
{
    const sorted_tree_t *st = h->st;
    uint32_t root;
    int rc = strmap_intern(&h->classes, "total", 5, &root); /* the root's name */
    for (size_t s = 0; s < st->nsid; s++)
        h->class_of[s] = UINT32_MAX;
    for (size_t i = 1; rc == 0 && i < st->n; i++) {
        uint32_t *c = &h->class_of[st->sid[i]];
        if (*c == UINT32_MAX) rc = strmap_intern(&h->classes, st->name[i], strlen(st->name[i]), c);
    }
    return rc;
}

/* Each class's name as a JSON string into h->esc (nothing when memory
 * fails: the names are escaped as they are written then). */
static void escape_classes(fb_helper_t *h)
{
    size_t nc = h->classes.n, guess = 2 * nc;
    for (size_t c = 0; c < nc; c++)
        guess += h->classes.lens[c];
    buf_init(&h->esc, BUF_UNLIMITED);
    h->esc_at = malloc((nc + 1) * sizeof *h->esc_at);
    int rc = h->esc_at != NULL ? buf_reserve(&h->esc, guess) : ERR_NOMEM;
    for (size_t c = 0; rc == 0 && c < nc; c++) {
        h->esc_at[c] = h->esc.len;
        rc = buf_append_json_string(&h->esc, h->classes.strs[c], h->classes.lens[c]);
    }
    if (rc == 0) h->esc_at[nc] = h->esc.len;
    if (rc != 0) {
        free(h->esc_at);
        h->esc_at = NULL;
        buf_free(&h->esc);
    }
}

static void helper_run(void *arg)
{
    fb_helper_t *h = arg;
    h->classes_rc = make_classes(h);
    assist_flag_set(&h->classed, 1);
    if (h->classes_rc == 0) escape_classes(h); /* while the names are numbered */
    if (assist_flag_wait(&h->go) == 1) write_part(&h->below);
}

/* The names in index order as the helper's JSON strings (fb->esc from
 * here), once it is joined; left as they are when their bytes cannot be
 * held beside the answer. */
static void names_escaped(fb_t *fb, fb_helper_t *h)
{
    if (h->esc_at == NULL || fb->oclass == NULL) return;
    if (fb_take(fb, h->esc.cap) != 0) return;
    for (size_t i = 0; i < fb->nonames; i++) {
        uint32_t c = fb->oclass[i];
        fb->onames[i] = (const char *)h->esc.data + h->esc_at[c];
        fb->olens[i] = h->esc_at[c + 1] - h->esc_at[c];
    }
    fb->esc = h->esc; /* fb's now: freed with the names */
    buf_init(&h->esc, BUF_UNLIMITED);
    fb->onames_json = 1;
}

/* Hands h's part to the helper fb->task reserved, its tables made (room
 * for every name: nothing grows on the helper) and taken beside the
 * answer first; nonzero: not handed (then nothing is held). */
static int helper_begin(fb_t *fb, fb_helper_t *h)
{
    const sorted_tree_t *st = fb->st;
    memset(h, 0, sizeof *h);
    h->st = st;
    strmap_init(&h->classes);
    assist_flag_init(&h->classed);
    assist_flag_init(&h->go);
    size_t names = st->nsid + 1;
    /* the classes' map for names: at most 4 slots a name (a power of two
     * at least twice as many), its two arrays at most twice as long */
    h->held = names * sizeof *h->class_of + 4 * names * sizeof(uint32_t) +
              2 * names * (sizeof *h->classes.strs + sizeof *h->classes.lens) +
              64 * sizeof(uint32_t);
    if (fb_take(fb, h->held) != 0) return 1;
    h->class_of = malloc(names * sizeof *h->class_of);
    if (h->class_of == NULL || strmap_reserve(&h->classes, names) != 0) {
        free(h->class_of);
        strmap_free(&h->classes);
        fb_give(fb, h->held);
        return 1;
    }
    assist_give(fb->assist, fb->task, helper_run, h);
    return 0;
}

/* Lets h's helper go when it was not given the deep part, joins it and
 * frees its tables. */
static void helper_end(fb_t *fb, fb_helper_t *h)
{
    if (!h->gone) assist_flag_set(&h->go, 2);
    if (!h->joined) assist_join(fb->assist, fb->task);
    fb->task = NULL;
    names_escaped(fb, h);
    free(h->esc_at);
    buf_free(&h->esc);
    free(h->class_of);
    strmap_free(&h->classes);
    fb_give(fb, h->held);
}

/* name_placed with the helper's classes: a name is numbered at its
 * class's first node in the walk's order, as name_index numbers it at its
 * first string; the names in that order go to fb->onames. */
static int name_placed_classes(fb_t *fb, fb_helper_t *h, placed_t *placed, size_t *count)
{
    assist_flag_wait(&h->classed);
    if (h->classes_rc != 0) return h->classes_rc;
    size_t nc = h->classes.n;
    size_t bytes =
        nc * (sizeof(uint32_t) + sizeof *fb->onames + sizeof *fb->olens + sizeof *fb->oclass);
    int rc = fb_take(fb, bytes);
    if (rc != 0) return rc;
    uint32_t *number = malloc(nc * sizeof *number);
    fb->onames = malloc(nc * sizeof *fb->onames);
    fb->olens = malloc(nc * sizeof *fb->olens);
    fb->oclass = malloc(nc * sizeof *fb->oclass);
    if (number == NULL || fb->onames == NULL || fb->olens == NULL || fb->oclass == NULL) {
        free(number);
        return ERR_NOMEM;
    }
    for (size_t c = 0; c < nc; c++)
        number[c] = UINT32_MAX;
    const uint32_t *sid = fb->st->sid;
    for (size_t i = 0; i < fb->st->n; i++) {
        placed_t *p = &placed[i];
        uint32_t c = i == 0 ? 0 : h->class_of[sid[p->name]], *num = &number[c];
        if (*num == UINT32_MAX) {
            fb->onames[fb->nonames] = h->classes.strs[c];
            fb->olens[fb->nonames] = h->classes.lens[c];
            fb->oclass[fb->nonames] = c;
            *num = (uint32_t)fb->nonames++;
        }
        p->name = *num;
        count[p->depth]++;
        if (p->self > fb->max_self) fb->max_self = p->self;
    }
    free(number);
    return 0;
}

/* The levels split where about three fifths of the nodes are above (the
 * helper writes a node more slowly: the placed nodes come to it from this
 * thread's cache): the deep part on h's helper (NULL: none, all here), on
 * an allowance taken beside the answer for the most its levels can grow
 * to (twice their entries at their longest: buffers double). When the
 * allowance is refused, both parts are written here. */
static int write_parts(fb_t *fb, fb_helper_t *h, const placed_t *placed, const size_t *count,
                       uint32_t deepest)
{
    uint32_t split = 1; /* the root's level is always here */
    size_t above = count[0];
    while (split <= deepest && above + count[split] <= fb->st->n * 3 / 5)
        above += count[split++];
    size_t deep = fb->st->n - above;
    size_t allow = deep <= SIZE_MAX / (2 * LEVEL_ENTRY_MAX) ? 2 * LEVEL_ENTRY_MAX * deep : SIZE_MAX;
    int alone = deep == 0 || h == NULL || fb_take(fb, allow) != 0;
    fb_part_t shallow = {.fb = *fb, .placed = placed, .lo = 0, .hi = alone ? deepest + 1 : split};
    if (alone) {
        write_part(&shallow);
        *fb = shallow.fb;
        return shallow.rc;
    }
    fb_part_t *below = &h->below;
    *below = (fb_part_t){.fb = *fb, .placed = placed, .lo = split, .hi = deepest + 1};
    below->fb.out = NULL;
    below->fb.held = below->fb.bytes = 0;
    below->fb.allow = allow;
    h->gone = 1;
    assist_flag_set(&h->go, 1);
    write_part(&shallow);
    assist_join(fb->assist, fb->task);
    h->joined = 1;
    *fb = shallow.fb;             /* it holds the allowance, */
    fb_give(fb, below->fb.allow); /* of which the deep part's levels grew by the rest */
    fb->bytes += below->fb.bytes;
    int rc = shallow.rc != 0 ? shallow.rc : below->rc;
    return rc == 0 && fb->bytes > fb->max_bytes ? ERR_TOO_LARGE : rc;
}

/* The kept nodes' levels (fb->st has no tree): placed, named, written;
 * with a helper reserved (fb->task) that one was idle for, beside it. */
static int write_kept_levels(fb_t *fb)
{
    const sorted_tree_t *st = fb->st;
    if (st->n == 0) return 0;
    size_t scratch = st->n * (sizeof(placed_t) + sizeof(uint32_t));
    int rc = fb_take(fb, scratch);
    if (rc != 0) return rc;
    placed_t *placed = malloc(st->n * sizeof *placed);
    uint32_t *size = malloc(st->n * sizeof *size);
    size_t *count = NULL;
    uint32_t deepest = 0;
    if (placed == NULL || size == NULL) rc = ERR_NOMEM;
    fb_helper_t h;
    int helped = rc == 0 && fb->task != NULL && assist_taken(fb->task) && st->sid != NULL &&
                 helper_begin(fb, &h) == 0;
    if (rc == 0) deepest = place(fb, placed, size);
    if (rc == 0 && (rc = fb_take(fb, ((size_t)deepest + 1) * sizeof *count)) == 0 &&
        (count = calloc((size_t)deepest + 1, sizeof *count)) == NULL) {
        fb_give(fb, ((size_t)deepest + 1) * sizeof *count);
        rc = ERR_NOMEM;
    }
    free(size);
    if (rc == 0)
        rc = helped ? name_placed_classes(fb, &h, placed, count) : name_placed(fb, placed, count);
    if (rc == 0) rc = presize_levels(fb, count, deepest);
    if (rc == 0) rc = write_parts(fb, helped ? &h : NULL, placed, count, deepest);
    if (helped) helper_end(fb, &h);
    if (count != NULL) fb_give(fb, ((size_t)deepest + 1) * sizeof *count);
    free(count);
    free(placed);
    fb_give(fb, scratch);
    return rc;
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

/* query_write_flamebearer; json: the names are JSON strings already. */
static int write_flamebearer(buf_t *out, const char *const *names, const size_t *lens,
                             size_t nnames, int json, const void *levels, size_t nlevels,
                             size_t stride, int64_t num_ticks, int64_t max_self)
{
    /* room for what surely comes, made once: growing the body as it fills
     * copied it once per doubling */
    size_t least = 64;
    for (size_t i = 0; i < nnames; i++)
        least += lens[i] + 3;
    for (size_t d = 0; d < nlevels; d++)
        least += ((const buf_t *)(const void *)((const char *)levels + d * stride))->len + 3;
    int rc = least <= out->max && out->len <= out->max - least ? buf_reserve(out, least) : 0;
    if (rc == 0) rc = buf_append_str(out, "\"flamebearer\":{\"names\":[");
    for (size_t i = 0; rc == 0 && i < nnames; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0)
            rc = json ? buf_append(out, names[i], lens[i])
                      : buf_append_json_string(out, names[i], lens[i]);
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

int query_write_flamebearer(buf_t *out, const char *const *names, const size_t *lens, size_t nnames,
                            const void *levels, size_t nlevels, size_t stride, int64_t num_ticks,
                            int64_t max_self)
{
    return write_flamebearer(out, names, lens, nnames, 0, levels, nlevels, stride, num_ticks,
                             max_self);
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
    /* names are numbered once per symbol: the map made for them all at once
     * (it rehashed every string at each doubling) */
    if (rc == 0 && fb->st->sid != NULL) rc = strmap_reserve(&fb->names, fb->st->nsid + 1);
    if (rc == 0) rc = fb_tables(fb);
    if (rc == 0 && fb->st->sid != NULL)
        rc = fb_take(fb, (fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
    if (rc == 0 && fb->st->sid != NULL) {
        fb->name_of_sid = malloc((fb->st->nsid ? fb->st->nsid : 1) * sizeof *fb->name_of_sid);
        if (fb->name_of_sid == NULL) rc = ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < fb->st->nsid; i++)
            fb->name_of_sid[i] = UINT32_MAX;
    }
    if (rc == 0) rc = fb->st->t == NULL ? write_kept_levels(fb) : walk(fb);
    if (rc == 0) rc = buf_append_str(out, "{\"version\":1,");
    if (rc == 0)
        rc = fb->onames != NULL
                 ? write_flamebearer(out, fb->onames, fb->olens, fb->nonames, fb->onames_json,
                                     fb->lv, fb->nlv, sizeof *fb->lv, num_ticks, fb->max_self)
                 : query_write_flamebearer(out, fb->names.strs, fb->names.lens, fb->names.n, fb->lv,
                                           fb->nlv, sizeof *fb->lv, num_ticks, fb->max_self);
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
    free(fb->onames);
    free(fb->olens);
    free(fb->oclass);
    buf_free(&fb->esc);
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
                                  const query_timeline_t *tl, assist_t *assist, buf_t *out)
{
    /* the sorted tree's parts on an idle helper first; one taken after
     * them is awake when the deep levels come (assist.h) */
    sorted_tree_t st;
    if (k->sid == NULL) assist = NULL; /* a helper works by symbol numbers only */
    int rc = query_sorted_tree_build_kept(&st, k, syms, assist, out);
    assist_task_t task;
    assist_reserve(assist, &task);
    fb_t fb = {.st = &st,
               .sym = k->sym,
               .selves = k->self,
               .totals = k->total,
               .assist = assist,
               .task = assist != NULL ? &task : NULL};
    if (rc == 0) rc = encode(&fb, k->total[0], profile_type, spy_name, tl, out);
    if (fb.task != NULL) { /* not given: let go */
        assist_give(assist, &task, NULL, NULL);
        assist_join(assist, &task);
    }
    return rc;
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

int query_flamebearer_kept_streams(const query_kept_t *k, const query_timeline_t *tl,
                                   size_t min_bytes, const buf_t *out)
{
    fb_t fb;
    if (min_bytes == 0 || fb_values(&fb, NULL, k, tl) != 0) return 0;
    size_t least = fb_least_bytes(&fb, k->n, min_bytes);
    return !(least < min_bytes || least > out->max || out->len != 0);
}

int query_flamebearer_open(calltree_t **t, query_kept_t **kept, symtab_t **syms,
                           const char *profile_type, const char *spy_name,
                           const query_timeline_t *tl, const char *members, size_t min_bytes,
                           assist_t *assist, buf_t *out, query_stream_t **stream)
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
        rc = k ? query_encode_flamebearer_kept(k, *syms, profile_type, spy_name, tl, assist, out)
               : query_encode_flamebearer(*t, *syms, profile_type, spy_name, tl, out);
        return rc == 0 && members != NULL ? query_add_json_members(out, members) : rc;
    }
    if (rc == 0)
        rc = k ? query_sorted_tree_build_kept(&v->st, k, *syms, assist, out)
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
