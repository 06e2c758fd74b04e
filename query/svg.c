/* svg.c — the merged tree as a self-contained SVG flame graph.
 *
 * Icicle layout (the root on top, callees below, as Pyroscope draws it): a
 * frame's width is its share of the root total, children start at their
 * parent's left edge in name order. Each frame is one <g> holding a <title>
 * tooltip (name, value with unit, percentage of the total), a <rect> and,
 * when it fits, a <text> label shortened to the frame's width. No scripts,
 * styles or external references: the file opens anywhere.
 *
 * Coordinates are integer hundredths of a pixel computed from each frame's
 * tick range, so children never stick out of their parent and the root
 * spans exactly the drawing width whatever the rounding. Colors come from a
 * callback (query_svg_color_fn) so a diff view can reuse the layout; a diff
 * also passes the left side's totals (query_svg_style_t.left_total) and its
 * tooltips and header then give both sides, widths staying the tree's own
 * (the right side's).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "query/query_int.h"

#define SVG_WIDTH 1200   /* px */
#define SVG_MARGIN 10    /* px left and right of the frames */
#define SVG_TOP 56       /* px above the first row: title and subtitle */
#define SVG_ROW 16       /* px per depth */
#define SVG_CHAR_CPX 720 /* a 12 px monospace glyph, in hundredths of a px */

/* ---- text: valid UTF-8 only, XML-escaped ---- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (len == 3 && c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (len == 4 && c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (len == 4 && c == 0xf4 && s[1] > 0x8f) return 0; /* past U+10FFFF */
    return len;
}

/* Appends s[0..n) as XML character data: markup characters escaped, control
 * characters XML forbids as '?', invalid UTF-8 as U+FFFD. */
static int xml_text(buf_t *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n;) {
        size_t len = utf8_len(u + i, n - i);
        unsigned char c = u[i];
        if (len == 0)
            rc = buf_append_str(b, "\xef\xbf\xbd");
        else if (c == '&')
            rc = buf_append_str(b, "&amp;");
        else if (c == '<')
            rc = buf_append_str(b, "&lt;");
        else if (c == '>')
            rc = buf_append_str(b, "&gt;");
        else if (c == '"')
            rc = buf_append_str(b, "&quot;");
        else if (c == '\'')
            rc = buf_append_str(b, "&apos;");
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            rc = buf_append_byte(b, '?');
        else
            rc = buf_append(b, s + i, len);
        i += len ? len : 1;
    }
    return rc;
}

/* Characters (code points, an invalid byte counting as one) in s[0..n). */
static size_t text_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t len = utf8_len((const unsigned char *)s + i, n - i);
        i += len ? len : 1;
    }
    return k;
}

/* Bytes of the first `chars` characters of s[0..n). */
static size_t text_prefix(const char *s, size_t n, size_t chars)
{
    size_t i = 0;
    for (size_t k = 0; k < chars && i < n; k++) {
        size_t len = utf8_len((const unsigned char *)s + i, n - i);
        i += len ? len : 1;
    }
    return i;
}

/* ---- package-aware names ---- */

/* The qualified part of a name: up to its first '(', ' ' or '<' (arguments,
 * templates and Python's "func (file)" come after it). */
static size_t qualified_len(const char *name)
{
    return strcspn(name, "( <");
}

/* Offset where the last path component starts: Go's import path
 * "github.com/x/y.F" keeps "y.F". */
static size_t after_path(const char *name)
{
    size_t q = qualified_len(name), start = 0;
    for (size_t i = 0; i < q; i++)
        if (name[i] == '/') start = i + 1;
    return start;
}

/* Offset of the last separator ("::" or '.') in name(from..end), with its
 * width in *sep_len (0 when there is none: then the result is from). */
static size_t last_sep(const char *name, size_t from, size_t end, size_t *sep_len)
{
    for (size_t i = end; i-- > from + 1;) {
        if (name[i] == '.') {
            *sep_len = 1;
            return i;
        }
        if (name[i] == ':' && name[i - 1] == ':' && i - 1 > from) {
            *sep_len = 2;
            return i - 1;
        }
    }
    *sep_len = 0;
    return from;
}

/* The package of a name for coloring: Go's path and package
 * ("github.com/x/y" of "github.com/x/y.(*T).F"), else everything before the
 * last "::" or '.' (a Rust/C++ module, a Java class), else the name itself. */
static size_t package_len(const char *name)
{
    size_t q = qualified_len(name), start = after_path(name), sep;
    if (start > 0) {
        const char *dot = memchr(name + start, '.', q - start);
        return dot ? (size_t)(dot - name) : q;
    }
    size_t at = last_sep(name, 0, q, &sep);
    return sep ? at : q;
}

/* A shorter form of a name that keeps what identifies it: no import path,
 * and only the last two components of a dotted or "::" name. */
static const char *short_name(const char *name)
{
    size_t start = after_path(name), q = qualified_len(name), sep;
    size_t at = last_sep(name, start, q, &sep);
    if (sep == 0) return name + start;
    size_t at2 = last_sep(name, start, at, &sep);
    return sep ? name + at2 + sep : name + start;
}

/* The label of a frame that is `cpx` hundredths of a pixel wide: the name,
 * else its short form, else a prefix of that with "..". */
static int write_label(buf_t *b, const char *name, int64_t cpx)
{
    int64_t room = (cpx - 600) / SVG_CHAR_CPX; /* 3 px padding each side */
    if (room < 3) return 0;
    size_t n = strlen(name);
    if ((int64_t)text_chars(name, n) > room) {
        name = short_name(name);
        n = strlen(name);
    }
    int cut = (int64_t)text_chars(name, n) > room;
    if (cut) n = text_prefix(name, n, (size_t)room - 2);
    int rc = xml_text(b, name, n);
    return rc == 0 && cut ? buf_append_str(b, "..") : rc;
}

/* ---- colors ---- */

void query_svg_color_package(const sorted_tree_t *st, uint32_t node, void *ctx, char *out)
{
    (void)ctx;
    uint64_t sym = calltree_sym(st->t, node);
    if (node == 0 || sym == SYM_OTHER) {
        memcpy(out, node == 0 ? "#d8d8d8" : "#b4b4b4", 8);
        return;
    }
    const char *name = st->name[node];
    uint64_t h = hash_bytes64(name, package_len(name));
    /* the warm palette of classic flame graphs: red, orange, yellow */
    query_svg_rgb(205 + (unsigned)(h % 51), (unsigned)((h >> 8) % 231), (unsigned)((h >> 16) % 56),
                  out);
}

void query_svg_rgb(unsigned r, unsigned g, unsigned b, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned v[3] = {r & 255, g & 255, b & 255};
    out[0] = '#';
    for (int i = 0; i < 3; i++) {
        out[1 + 2 * i] = hex[v[i] >> 4];
        out[2 + 2 * i] = hex[v[i] & 15];
    }
    out[7] = 0;
}

/* WCAG relative luminance of a "#rrggbb" colour. */
static double luminance(const char *rgb)
{
    double l = 0;
    static const double weight[3] = {0.2126, 0.7152, 0.0722};
    for (int i = 0; i < 3; i++) {
        char h[3] = {rgb[1 + 2 * i], rgb[2 + 2 * i], 0};
        double c = (double)strtoul(h, NULL, 16) / 255.0;
        l += weight[i] * (c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4));
    }
    return l;
}

/* A label's colour on a frame of colour fill: black (the default, NULL)
 * unless white reads better, as on the saturated blue of a diff's largest
 * shrink (black on it was 2.9:1) or the darkest reds of the package palette
 * (3.6:1). Black and white contrast equally at a luminance of about 0.18. */
static const char *label_fill(const char *fill)
{
    return luminance(fill) < 0.179 ? "#ffffff" : NULL;
}

/* ---- values ---- */

typedef struct svg {
    const sorted_tree_t *st;
    const query_svg_style_t *style;
    ptype_t pt;
    int has_pt;
    int64_t total; /* root total: 100 % */
    uint32_t max_depth;
} svg_t;

/* "1500000000 nanoseconds (1.50 s)": the raw value with its unit, and a
 * readable form for time and byte units. */
static int write_value(buf_t *b, const svg_t *s, int64_t v)
{
    const char *unit = s->has_pt && s->pt.sample_unit[0] ? s->pt.sample_unit : "samples";
    int rc = buf_printf(b, "%lld ", (long long)v);
    if (rc == 0) rc = xml_text(b, unit, strlen(unit));
    double a = (double)v;
    if (rc != 0) return rc;
    if (strcmp(unit, "nanoseconds") == 0 && (v >= 1000 || v <= -1000)) {
        const char *u = a >= 1e9 || a <= -1e9 ? "s" : a >= 1e6 || a <= -1e6 ? "ms" : "us";
        double d = u[0] == 's' ? 1e9 : u[0] == 'm' ? 1e6 : 1e3;
        return buf_printf(b, " (%.2f %s)", a / d, u);
    }
    if (strcmp(unit, "bytes") == 0 && (v >= 1024 || v <= -1024)) {
        static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
        int i = 0;
        for (a /= 1024; (a >= 1024 || a <= -1024) && i < 4; i++)
            a /= 1024;
        return buf_printf(b, " (%.2f %s)", a, units[i]);
    }
    return 0;
}

static double pct_of(int64_t v, int64_t whole)
{
    return whole != 0 ? 100.0 * (double)v / (double)whole : 0;
}

/* The diff tooltip after the name: each side's value and share of its own
 * total, and the change of share in percentage points. */
static int write_diff_values(buf_t *b, const svg_t *s, uint32_t node)
{
    int64_t l = s->style->left_total[node], r = calltree_total(s->st->t, node);
    double lp = pct_of(l, s->style->left_total[0]), rp = pct_of(r, s->total), pp = rp - lp;
    if (pp > -0.005 && pp < 0.005) pp = 0; /* no "-0.00" */
    int rc = buf_append_str(b, "left: ");
    if (rc == 0) rc = write_value(b, s, l);
    if (rc == 0) rc = buf_printf(b, ", %.2f%%\nright: ", lp);
    if (rc == 0) rc = write_value(b, s, r);
    if (rc == 0) rc = buf_printf(b, ", %.2f%%\nchange: %+.2f pp", rp, pp);
    if (rc == 0 && node != 0 && l == 0 && r != 0) rc = buf_append_str(b, " (new: right only)");
    if (rc == 0 && node != 0 && r == 0 && l != 0) rc = buf_append_str(b, " (gone: left only)");
    return rc != 0 ? rc : buf_append_str(b, "</title>");
}

static int write_title(buf_t *b, const svg_t *s, uint32_t node)
{
    const char *name = node == 0 ? "total" : s->st->name[node], *file = s->st->file[node];
    int64_t v = calltree_total(s->st->t, node);
    double pct = pct_of(v, s->total);
    int rc = buf_append_str(b, "<title>");
    if (rc == 0) rc = xml_text(b, name, strlen(name));
    if (rc == 0 && file[0] != 0) {
        rc = buf_append_str(b, " (");
        if (rc == 0) rc = xml_text(b, file, strlen(file));
        if (rc == 0) rc = buf_append_byte(b, ')');
    }
    if (rc == 0) rc = buf_append_byte(b, '\n');
    if (rc == 0 && s->style->left_total != NULL) return write_diff_values(b, s, node);
    if (rc == 0) rc = write_value(b, s, v);
    if (rc == 0) rc = buf_printf(b, ", %.2f%%</title>", pct);
    return rc;
}

/* ---- layout ---- */

/* Hundredths of a pixel from the left margin to tick x. */
static int64_t cpx_of(const svg_t *s, int64_t x)
{
    if (s->total <= 0) return 0;
    __int128 w = (__int128)(SVG_WIDTH - 2 * SVG_MARGIN) * 100;
    return (int64_t)((w * x + s->total / 2) / s->total);
}

static int write_cpx(buf_t *b, int64_t v)
{
    return buf_printf(b, "%lld.%02lld", (long long)(v / 100), (long long)(v % 100));
}

typedef struct vframe {
    uint32_t node, depth;
    int64_t x; /* ticks from the left edge */
} vframe_t;

static int write_frame(buf_t *b, const svg_t *s, vframe_t f)
{
    int64_t total = calltree_total(s->st->t, f.node);
    int64_t x0 = cpx_of(s, f.x), x1 = f.node == 0 ? cpx_of(s, s->total) : cpx_of(s, f.x + total);
    if (f.node == 0 && s->total <= 0) x1 = (SVG_WIDTH - 2 * SVG_MARGIN) * 100;
    if (x1 < x0) x1 = x0; /* negative values have no width */
    x0 += SVG_MARGIN * 100;
    x1 += SVG_MARGIN * 100;
    int other = calltree_sym(s->st->t, f.node) == SYM_OTHER;
    char fill[8];
    s->style->color(s->st, f.node, s->style->color_ctx, fill);
    int y = SVG_TOP + (int)f.depth * SVG_ROW;
    int rc = buf_append_str(b, other ? "<g class=\"other\">" : "<g>");
    if (rc == 0) rc = write_title(b, s, f.node);
    if (rc == 0) rc = buf_append_str(b, "<rect x=\"");
    if (rc == 0) rc = write_cpx(b, x0);
    if (rc == 0) rc = buf_append_str(b, "\" width=\"");
    if (rc == 0) rc = write_cpx(b, x1 - x0);
    if (rc == 0)
        rc =
            buf_printf(b, "\" y=\"%d\" height=\"%d\" fill=\"%s\" rx=\"2\"/>", y, SVG_ROW - 1, fill);
    if (rc == 0 && x1 - x0 >= 600 + 3 * SVG_CHAR_CPX) {
        rc = buf_append_str(b, "<text x=\"");
        if (rc == 0) rc = write_cpx(b, x0 + 300);
        const char *ink = label_fill(fill);
        if (rc == 0) rc = buf_printf(b, "\" y=\"%d\"", y + SVG_ROW - 4);
        if (rc == 0 && ink != NULL) rc = buf_printf(b, " fill=\"%s\"", ink);
        if (rc == 0) rc = buf_append_byte(b, '>');
        if (rc == 0) rc = write_label(b, f.node == 0 ? "total" : s->st->name[f.node], x1 - x0);
        if (rc == 0) rc = buf_append_str(b, "</text>");
    }
    return rc != 0 ? rc : buf_append_str(b, "</g>\n");
}

/* The preorder walk, resumable: frames still to visit. */
typedef struct svg_walk {
    vframe_t *stack;
    size_t sp;
} svg_walk_t;

/* Writes frames into b until it holds at least until bytes or the walk
 * ends (w->sp == 0); children left to right from their parent's left edge. */
static int walk_frames(svg_t *s, svg_walk_t *w, buf_t *b, size_t until)
{
    const sorted_tree_t *st = s->st;
    int rc = 0;
    while (w->sp > 0 && rc == 0 && b->len < until) {
        vframe_t f = w->stack[--w->sp];
        if (f.depth > s->max_depth) s->max_depth = f.depth;
        rc = write_frame(b, s, f);
        if (s->total <= 0) { /* nothing has a width */
            w->sp = 0;
            break;
        }
        int64_t x = f.x;
        uint32_t a = st->off[f.node], e = st->off[f.node + 1];
        for (uint32_t k = a; k < e; k++) {
            int64_t t = calltree_total(st->t, st->kids[k]);
            x += t > 0 ? t : 0;
        }
        for (uint32_t k = e; k > a; k--) {
            int64_t t = calltree_total(st->t, st->kids[k - 1]);
            x -= t > 0 ? t : 0;
            w->stack[w->sp++] = (vframe_t){st->kids[k - 1], f.depth + 1, x};
        }
    }
    return rc;
}

static int write_frames(svg_t *s, buf_t *b, buf_t *out)
{
    const sorted_tree_t *st = s->st;
    size_t stack_bytes = st->n * sizeof(vframe_t);
    int rc = buf_beside_take(out, stack_bytes); /* held beside the answer */
    if (rc != 0) return rc;
    svg_walk_t w = {malloc(st->n * sizeof *w.stack), 1};
    if (w.stack == NULL) {
        buf_beside_give(out, stack_bytes);
        return ERR_NOMEM;
    }
    w.stack[0] = (vframe_t){0, 0, 0};
    rc = walk_frames(s, &w, b, SIZE_MAX);
    free(w.stack);
    buf_beside_give(out, stack_bytes);
    return rc;
}

static int write_header(buf_t *b, const svg_t *s)
{
    int h = SVG_TOP + (int)(s->max_depth + 1) * SVG_ROW + SVG_MARGIN;
    const char *title = s->style->title          ? s->style->title
                        : s->style->profile_type ? s->style->profile_type
                                                 : "flame graph";
    int rc = buf_printf(b,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
                        "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"monospace\" "
                        "font-size=\"12\">\n"
                        "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"
                        "<text x=\"%d\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">",
                        SVG_WIDTH, h, SVG_WIDTH, h, SVG_WIDTH, h, SVG_WIDTH / 2);
    if (rc == 0) rc = xml_text(b, title, strlen(title));
    if (rc == 0)
        rc = buf_printf(b, "</text>\n<text x=\"%d\" y=\"44\" text-anchor=\"middle\">total ",
                        SVG_WIDTH / 2);
    if (rc == 0 && s->style->left_total != NULL) { /* a diff: both sides */
        rc = buf_append_str(b, "left ");
        if (rc == 0) rc = write_value(b, s, s->style->left_total[0]);
        if (rc == 0) rc = buf_append_str(b, ", right ");
    }
    if (rc == 0) rc = write_value(b, s, s->total);
    /* nothing selected: say so rather than draw a lone grey "total" bar */
    int empty = s->st->n <= 1 && s->total == 0 &&
                (s->style->left_total == NULL || s->style->left_total[0] == 0);
    if (rc == 0 && empty) rc = buf_append_str(b, ": no samples match this selection in this range");
    if (rc == 0 && s->style->note != NULL) {
        rc = buf_append_str(b, " <tspan fill=\"#b00000\">");
        if (rc == 0) rc = xml_text(b, s->style->note, strlen(s->style->note));
        if (rc == 0) rc = buf_append_str(b, "</tspan>");
    }
    return rc != 0 ? rc : buf_append_str(b, "</text>\n");
}

int query_svg_write(const sorted_tree_t *st, const query_svg_style_t *style, buf_t *out)
{
    query_svg_style_t st2 = *style;
    if (st2.color == NULL) st2.color = query_svg_color_package;
    svg_t s = {.st = st, .style = &st2, .total = calltree_root_total(st->t)};
    s.has_pt = style->profile_type && query_ptype_parse(style->profile_type, &s.pt) == 0;
    /* The height depends on the depth: frames first, then header and frames. */
    buf_t frames; /* held beside the answer as it grows, until copied into it */
    buf_beside_t link = {out, 0};
    buf_init(&frames, out->max);
    buf_charge(&frames, buf_beside_grows, &link);
    int rc = write_frames(&s, &frames, out);
    if (rc == 0) rc = write_header(out, &s);
    if (rc == 0) rc = buf_append(out, frames.data, frames.len);
    if (rc == 0) rc = buf_append_str(out, "</svg>\n");
    buf_free(&frames);
    buf_beside_give(out, link.held);
    return rc;
}

int query_encode_svg(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                     const char *title, const char *note, buf_t *out)
{
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, t, syms, out);
    if (rc != 0) return rc;
    query_svg_style_t style = {.title = title, .profile_type = profile_type, .note = note};
    rc = query_svg_write(&st, &style, out);
    query_sorted_tree_free(&st);
    return rc;
}

/* ---- the answer as a stream ---- */

/* Least bytes write_frame writes for one frame: the stream's size estimate
 * (query_svg_open) counts frames at this. */
#define SVG_FRAME_MIN_BYTES 80

typedef struct svg_stream {
    calltree_t *tree; /* owned, with syms: what st reads */
    symtab_t *syms;
    sorted_tree_t st;
    char *title, *profile_type, *note; /* owned copies */
    query_svg_style_t style;
    query_svg_paint_t paint; /* ctx owned: a diff view's colouring (ctx NULL: none) */
    svg_t s;
    svg_walk_t w;
    int phase; /* 0: header next, 1: frames, 2: the closing tag, 3: done */
} svg_stream_t;

static int svg_next(void *impl, buf_t *out, size_t want, int *done)
{
    svg_stream_t *v = impl;
    size_t until = out->len + want;
    int rc = 0;
    while (rc == 0 && v->phase < 3 && out->len < until) {
        if (v->phase == 0) {
            rc = write_header(out, &v->s);
            v->phase = 1;
        } else if (v->phase == 1) {
            rc = walk_frames(&v->s, &v->w, out, until);
            if (v->w.sp == 0) v->phase = 2;
        } else {
            rc = buf_append_str(out, "</svg>\n");
            v->phase = 3;
        }
    }
    *done = v->phase == 3;
    return rc;
}

static void svg_free(void *impl)
{
    svg_stream_t *v = impl;
    free(v->w.stack);
    free(v->title);
    free(v->profile_type);
    free(v->note);
    if (v->paint.ctx != NULL) v->paint.release(v->paint.ctx);
    query_sorted_tree_free(&v->st);
    calltree_free(v->tree);
    symtab_free(v->syms);
    free(v);
}

static const query_stream_ops_t svg_ops = {svg_next, svg_free};

/* The deepest frame the walk writes (the header's height needs it first):
 * every node's depth, or only the root's when nothing has a width. */
static uint32_t svg_max_depth(const svg_t *s, vframe_t *stack)
{
    const sorted_tree_t *st = s->st;
    uint32_t most = 0;
    size_t sp = 0;
    if (s->total > 0) stack[sp++] = (vframe_t){0, 0, 0};
    while (sp > 0) {
        vframe_t f = stack[--sp];
        if (f.depth > most) most = f.depth;
        for (uint32_t k = st->off[f.node]; k < st->off[f.node + 1]; k++)
            stack[sp++] = (vframe_t){st->kids[k], f.depth + 1, 0};
    }
    return most;
}

static int dup_or_null(const char *s, char **out)
{
    *out = NULL;
    if (s != NULL && (*out = strdup(s)) == NULL) return ERR_NOMEM;
    return 0;
}

/* The style of a graph: a diff view's colouring and left side from paint
 * (NULL: the package colouring, a plain graph). */
static query_svg_style_t style_of(const char *title, const char *profile_type, const char *note,
                                  const query_svg_paint_t *paint)
{
    query_svg_style_t s = {.title = title,
                           .profile_type = profile_type,
                           .note = note,
                           .color = query_svg_color_package};
    if (paint != NULL) {
        s.color = paint->color;
        s.color_ctx = paint->ctx;
        s.left_total = paint->left_total;
    }
    return s;
}

/* Moves *st, the tree, names and paint's ctx into a stream (*st zeroed and
 * paint->ctx set to NULL once moved). */
static int svg_stream_new(sorted_tree_t *st, const char *profile_type, const char *title,
                          const char *note, query_svg_paint_t *paint, calltree_t **t,
                          symtab_t **syms, query_stream_t **out)
{
    svg_stream_t *v = calloc(1, sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    int rc = dup_or_null(title, &v->title);
    if (rc == 0) rc = dup_or_null(profile_type, &v->profile_type);
    if (rc == 0) rc = dup_or_null(note, &v->note);
    if (rc == 0 && (v->w.stack = malloc(st->n * sizeof *v->w.stack)) == NULL) rc = ERR_NOMEM;
    if (rc != 0) {
        svg_free(v); /* nothing moved yet */
        return rc;
    }
    size_t sorted = st->held;
    buf_beside_give(st->out, st->held); /* the stream counts it from here */
    st->out = NULL;
    st->held = 0;
    v->st = *st;
    memset(st, 0, sizeof *st);
    v->tree = *t;
    v->syms = *syms;
    *t = NULL;
    *syms = NULL;
    size_t painted = 0;
    if (paint != NULL) {
        v->paint = *paint;
        paint->ctx = NULL;
        painted = paint->bytes;
    }
    v->style = style_of(v->title, v->profile_type, v->note, paint != NULL ? &v->paint : NULL);
    v->s = (svg_t){.st = &v->st, .style = &v->style, .total = calltree_root_total(v->tree)};
    v->s.has_pt = v->profile_type && query_ptype_parse(v->profile_type, &v->s.pt) == 0;
    v->s.max_depth = svg_max_depth(&v->s, v->w.stack);
    v->w.stack[0] = (vframe_t){0, 0, 0};
    v->w.sp = 1;
    size_t bytes = sizeof *v + sorted + v->st.n * sizeof(vframe_t) +
                   calltree_mem_bytes_read(v->tree) + symtab_mem_bytes(v->syms) + painted;
    return query_stream_new(&svg_ops, v, QUERY_STREAM_LENGTH_UNKNOWN, bytes, out);
}

int query_svg_open(calltree_t **t, symtab_t **syms, const char *profile_type, const char *title,
                   const char *note, query_svg_paint_t *paint, size_t min_bytes, buf_t *out,
                   query_stream_t **stream)
{
    *stream = NULL;
    sorted_tree_t st;
    int rc = query_sorted_tree_build(&st, *t, *syms, out);
    if (rc != 0) return rc;
    /* every frame is written when the root has a width, else the root alone */
    size_t frames = calltree_root_total(*t) > 0 ? st.n : 1;
    /* a lower bound past out's max fails whole, as it always did (422) */
    size_t least = frames * SVG_FRAME_MIN_BYTES;
    if (min_bytes > 0 && least >= min_bytes && least <= out->max && out->len == 0) {
        rc = svg_stream_new(&st, profile_type, title, note, paint, t, syms, stream);
        query_sorted_tree_free(&st); /* zeroed when moved */
        return rc;
    }
    query_svg_style_t style = style_of(title, profile_type, note, paint);
    rc = query_svg_write(&st, &style, out);
    query_sorted_tree_free(&st);
    return rc;
}
