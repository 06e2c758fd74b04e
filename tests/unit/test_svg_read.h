/* test_svg_read.h — a small XML reader for the SVG flame graphs of
 * query/svg.c, shared by the export and diff tests: checks balanced tags and
 * escaping of text and attributes, and collects every frame (<g>) with its
 * unescaped tooltip, label, rectangle and fill. Included by
 * tests/unit/test_query_{export,diff}.c only. */
#ifndef FLAMEDB_TESTS_SVG_READ_H
#define FLAMEDB_TESTS_SVG_READ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "tests/unit/check.h"

typedef struct xframe {
    char *title;       /* unescaped */
    char *label;       /* unescaped, or NULL */
    long long x, w, y; /* hundredths of a pixel; y in px */
    int other;
    char fill[8]; /* "#rrggbb" */
} xframe_t;

typedef struct xdoc {
    long long width;
    xframe_t *f;
    size_t n;
    int in_g, in_title, in_text;
    buf_t text;
} xdoc_t;

/* Appends the unescaped character data s[0..n); 0 when every '&' starts one
 * of the five predefined entities and no '<' or '>' appears raw. */
static int xml_unescape(const char *s, size_t n, buf_t *out)
{
    static const char *ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    static const char chr[] = "&<>\"'";
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<' || s[i] == '>') return -1;
        if (s[i] != '&') {
            buf_append_byte(out, (uint8_t)s[i]);
            continue;
        }
        size_t k = 0;
        while (k < 5 && strncmp(s + i, ent[k], strlen(ent[k])) != 0)
            k++;
        if (k == 5) return -1;
        buf_append_byte(out, (uint8_t)chr[k]);
        i += strlen(ent[k]) - 1;
    }
    return 0;
}

/* Value of attribute `name` in the tag text, in hundredths ("12.34" -> 1234). */
static long long attr_cpx(const char *tag, const char *name)
{
    char pat[32];
    snprintf(pat, sizeof pat, " %s=\"", name);
    const char *p = strstr(tag, pat);
    CHECK(p != NULL);
    if (p == NULL) return -1;
    double v = strtod(p + strlen(pat), NULL);
    return (long long)(v * 100 + (v >= 0 ? 0.5 : -0.5));
}

static char *take_text(xdoc_t *d)
{
    buf_append(&d->text, "", 0);
    char *s = strdup((char *)d->text.data);
    buf_reset(&d->text);
    return s;
}

static void open_tag(xdoc_t *d, const char *name, const char *tag)
{
    if (strcmp(name, "svg") == 0) d->width = attr_cpx(tag, "width") / 100;
    if (strcmp(name, "g") == 0) {
        d->f = realloc(d->f, (d->n + 1) * sizeof *d->f);
        d->f[d->n] = (xframe_t){.other = strstr(tag, "class=\"other\"") != NULL};
        d->in_g = 1;
    }
    if (strcmp(name, "rect") == 0 && d->in_g) {
        d->f[d->n].x = attr_cpx(tag, "x");
        d->f[d->n].w = attr_cpx(tag, "width");
        d->f[d->n].y = attr_cpx(tag, "y") / 100;
        const char *fill = strstr(tag, " fill=\"");
        CHECK(fill != NULL);
        if (fill != NULL) snprintf(d->f[d->n].fill, sizeof d->f[d->n].fill, "%.7s", fill + 7);
    }
    if (strcmp(name, "title") == 0) d->in_title = 1;
    if (strcmp(name, "text") == 0) d->in_text = 1;
    buf_reset(&d->text);
}

static void close_tag(xdoc_t *d, const char *name)
{
    if (strcmp(name, "title") == 0 && d->in_g) d->f[d->n].title = take_text(d);
    if (strcmp(name, "text") == 0 && d->in_g) d->f[d->n].label = take_text(d);
    if (strcmp(name, "g") == 0) {
        CHECK(d->f[d->n].title != NULL);
        d->n++;
        d->in_g = 0;
    }
    d->in_title = d->in_text = 0;
}

/* Reads the document: tags balanced, attribute values and text escaped. */
static void read_svg(const char *s, xdoc_t *d)
{
    char *stack[64];
    int sp = 0;
    buf_init(&d->text, BUF_UNLIMITED);
    CHECK(strncmp(s, "<?xml ", 6) == 0);
    s = strstr(s, "?>") + 2;
    while (*s) {
        const char *lt = strchr(s, '<');
        if (lt == NULL) lt = s + strlen(s);
        CHECK_EQ_INT(xml_unescape(s, (size_t)(lt - s), &d->text), 0);
        if (*lt == 0) break;
        const char *gt = strchr(lt, '>');
        CHECK(gt != NULL);
        if (gt == NULL) break;
        char *tag = strndup(lt, (size_t)(gt - lt + 1));
        CHECK(strchr(tag + 1, '<') == NULL && strchr(tag, '&') == NULL);
        size_t nl = strcspn(tag + 1, " />");
        if (tag[1] == '/') {
            char *name = strndup(tag + 2, strcspn(tag + 2, ">"));
            CHECK(sp > 0 && strcmp(stack[sp - 1], name) == 0);
            if (sp > 0) free(stack[--sp]);
            close_tag(d, name);
            free(name);
        } else {
            char *name = strndup(tag + 1, nl);
            open_tag(d, name, tag);
            if (gt[-1] != '/' && sp < 64)
                stack[sp++] = name;
            else
                free(name);
        }
        free(tag);
        s = gt + 1;
    }
    CHECK_EQ_INT(sp, 0);
    buf_free(&d->text);
}

static void xdoc_free(xdoc_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->f[i].title);
        free(d->f[i].label);
    }
    free(d->f);
}

#endif
