/* selector.c — the label selector `TYPE{name="v", name!="v", name=~"re",
 * name!~"re"}`: parsing, matching a series' labels, canonical formatting.
 *
 * Grammar (whitespace allowed between tokens):
 *   selector := [type] ['{' [matcher {',' matcher} [',']] '}']
 *   type     := [A-Za-z0-9_.-]+ (':' [A-Za-z0-9_.-]+){4}
 *   matcher  := name op value
 *   name     := [A-Za-z_][A-Za-z0-9_.]*     (dots: OpenTelemetry label names)
 *   op       := '=' | '!=' | '=~' | '!~'
 *   value    := '"' ... '"' | '\'' ... '\'' | '`' raw '`'
 * Every size is bounded (query.h QUERY_SELECTOR_*), so hostile input costs at
 * most a fixed amount of memory and regex compilation.
 */
#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

typedef struct matcher {
    char *name;
    char *value;
    query_match_op_t op;
    int has_re;
    regex_t re;
} matcher_t;

struct query_selector {
    char *type;
    size_t n;
    matcher_t m[QUERY_SELECTOR_MAX_MATCHERS];
};

typedef struct parser {
    const char *s;
    size_t n, i;
    const char *param;
    errmsg_t *em;
} parser_t;

static int perr(parser_t *p, const char *what)
{
    return errmsg_set(p->em, ERR_INVALID_ARGUMENT, "parameter '%s': position %zu: %s", p->param,
                      p->i, what);
}

static void skip_ws(parser_t *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int is_type_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == ':';
}

/* The reason for a type that is not name:sample_type:sample_unit:period_type:
 * period_unit. A dotted word without ':' is most likely the name a push
 * carried (APP.cpu{...}, Pyroscope's old query form): say how to ask for it. */
static int type_err(parser_t *p, const char *type, size_t len)
{
    static const char cpu_type[] = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    static const char list[] = "GET /pyroscope/label-values?label=__profile_type__ "
                               "(flamectl labels __profile_type__) lists the types stored";
    size_t dot = len;
    while (dot > 0 && type[dot - 1] != '.')
        dot--;
    if (memchr(type, ':', len) != NULL || dot <= 1 || dot == len)
        return errmsg_set(p->em, ERR_INVALID_ARGUMENT,
                          "parameter '%s': position %zu: profile type must be name:sample_type:"
                          "sample_unit:period_type:period_unit, e.g. %s; %s",
                          p->param, p->i, cpu_type, list);
    const char *sfx = type + dot;
    int cpu = strcmp(sfx, "cpu") == 0 || strcmp(sfx, "itimer") == 0;
    return errmsg_set(p->em, ERR_INVALID_ARGUMENT,
                      "parameter '%s': position %zu: \"%.*s\" is a push's name (APP.TYPE), not a "
                      "profile type: select the app by service_name under the type's id, "
                      "%s{service_name=\"%.*s\"}; %s",
                      p->param, p->i, (int)(len < 80 ? len : 80), type, cpu ? cpu_type : "TYPE",
                      (int)(dot - 1 < 64 ? dot - 1 : 64), type, list);
}

static int parse_type(parser_t *p, query_selector_t *sel)
{
    size_t start = p->i;
    while (p->i < p->n && is_type_char(p->s[p->i]))
        p->i++;
    size_t len = p->i - start;
    if (len == 0) return 0;
    if (len > QUERY_TYPE_MAX) {
        p->i = start;
        return perr(p, "profile type too long");
    }
    sel->type = strndup(p->s + start, len);
    if (sel->type == NULL) return ERR_NOMEM;
    ptype_t pt;
    if (query_ptype_parse(sel->type, &pt) != 0) {
        p->i = start;
        return type_err(p, sel->type, len);
    }
    return 0;
}

static int parse_name(parser_t *p, matcher_t *m)
{
    size_t start = p->i;
    if (p->i >= p->n || !(isalpha((unsigned char)p->s[p->i]) || p->s[p->i] == '_'))
        return perr(p, "expected a label name");
    while (p->i < p->n &&
           (isalnum((unsigned char)p->s[p->i]) || p->s[p->i] == '_' || p->s[p->i] == '.'))
        p->i++;
    if (p->i - start > QUERY_LABEL_NAME_MAX) {
        p->i = start;
        return perr(p, "label name too long");
    }
    m->name = strndup(p->s + start, p->i - start);
    return m->name == NULL ? ERR_NOMEM : 0;
}

static int parse_op(parser_t *p, matcher_t *m)
{
    const char *s = p->s + p->i;
    size_t left = p->n - p->i;
    if (left >= 2 && s[0] == '=' && s[1] == '~') {
        m->op = QUERY_MATCH_RE;
        p->i += 2;
    } else if (left >= 2 && s[0] == '!' && s[1] == '=') {
        m->op = QUERY_MATCH_NE;
        p->i += 2;
    } else if (left >= 2 && s[0] == '!' && s[1] == '~') {
        m->op = QUERY_MATCH_NRE;
        p->i += 2;
    } else if (left >= 1 && s[0] == '=') {
        m->op = QUERY_MATCH_EQ;
        p->i += 1;
    } else {
        return perr(p, "expected one of = != =~ !~");
    }
    return 0;
}

/* Decodes one escape after a backslash; returns the byte or -1. */
static int unescape(char c, char quote)
{
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case '\\':
        return '\\';
    default:
        return c == quote || c == '"' || c == '\'' ? c : -1;
    }
}

static int parse_value(parser_t *p, matcher_t *m)
{
    if (p->i >= p->n || (p->s[p->i] != '"' && p->s[p->i] != '\'' && p->s[p->i] != '`'))
        return perr(p, "expected a quoted value");
    char quote = p->s[p->i++];
    char *v = malloc(QUERY_LABEL_VALUE_MAX + 1);
    if (v == NULL) return ERR_NOMEM;
    size_t len = 0;
    for (;;) {
        if (p->i >= p->n) {
            free(v);
            return perr(p, "unterminated value");
        }
        char c = p->s[p->i];
        if (c == quote) {
            p->i++;
            break;
        }
        /* A backslash before a character with no escape meaning stays literal,
         * so regexes like "a\.b" work as users type them. */
        if (c == '\\' && quote != '`' && p->i + 1 < p->n && unescape(p->s[p->i + 1], quote) >= 0) {
            c = (char)unescape(p->s[p->i + 1], quote);
            p->i++;
        }
        if (len == QUERY_LABEL_VALUE_MAX) {
            free(v);
            return perr(p, "label value too long");
        }
        v[len++] = c;
        p->i++;
    }
    v[len] = 0;
    m->value = v;
    return 0;
}

/* Refuses what makes POSIX regexes expensive on hostile input, the way RE2
 * (which Prometheus and Pyroscope use) refuses it: back-references (matching
 * them is exponential), a quantifier applied to a quantifier (`a++`, glibc
 * nests them and the compiled size explodes), and large bounded repeats:
 * glibc expands x{n} into n copies, so the product of every repeat bound in
 * the regex must stay within RE_REPEAT_MAX (as if they were all nested), and
 * that product times the pattern length within RE_EXPANDED_MAX. */
#define RE_REPEAT_MAX 1000
#define RE_EXPANDED_MAX 16384 /* bytes of pattern after expanding repeats */

/* Largest number in a {n}, {n,} or {n,m} that starts at s (after '{'). */
static long repeat_bound(const char *s)
{
    long lo = 0, hi = 0;
    size_t n = strspn(s, "0123456789");
    if (n > 6) return RE_REPEAT_MAX + 1;
    if (n > 0) lo = strtol(s, NULL, 10);
    if (s[n] == ',') {
        size_t m = strspn(s + n + 1, "0123456789");
        if (m > 6) return RE_REPEAT_MAX + 1;
        if (m > 0) hi = strtol(s + n + 1, NULL, 10);
    }
    return lo > hi ? lo : hi;
}

/* Skips a bracket expression starting at c ('['); returns its last char. */
static const char *skip_bracket(const char *c)
{
    const char *d = c + 1;
    if (*d == '^') d++;
    if (*d == ']') d++; /* a leading ] is a literal */
    for (; *d && *d != ']'; d++)
        if (d[0] == '[' && (d[1] == ':' || d[1] == '.' || d[1] == '=')) {
            const char *end = strchr(d + 2, d[1]);
            while (end != NULL && end[1] != ']')
                end = strchr(end + 1, d[1]);
            d = end != NULL ? end + 1 : d;
        }
    return *d ? d : d - 1;
}

static const char *re_unsafe(const char *re)
{
    long product = 1;
    int after_quant = 0;
    for (const char *c = re; *c; c++) {
        /* glibc reads {,m} as {0,m}: a brace before a digit or a comma. */
        int quant = *c == '*' || *c == '+' || *c == '?' ||
                    (*c == '{' && ((c[1] >= '0' && c[1] <= '9') || c[1] == ','));
        if (quant && after_quant) return "a quantifier cannot follow a quantifier";
        after_quant = quant;
        if (c[0] == '\\' && c[1] >= '1' && c[1] <= '9') return "backreferences are not supported";
        if (c[0] == '\\' && c[1] != 0)
            c++;
        else if (c[0] == '[')
            c = skip_bracket(c);
        else if (c[0] == '{' && quant) {
            long b = repeat_bound(c + 1);
            product *= b > 1 ? b : 1;
            if (product > RE_REPEAT_MAX)
                return "regex repeat counts too large (their product must stay within 1000)";
            if ((size_t)product * strlen(re) > RE_EXPANDED_MAX)
                return "regex too large once its repeats are expanded";
            const char *end = strchr(c, '}');
            c = end != NULL ? end : c + strlen(c) - 1;
        }
    }
    return NULL;
}

static int compile_re(parser_t *p, matcher_t *m, size_t at)
{
    if (m->op != QUERY_MATCH_RE && m->op != QUERY_MATCH_NRE) return 0;
    const char *unsafe = re_unsafe(m->value);
    if (unsafe != NULL)
        return errmsg_set(p->em, ERR_INVALID_ARGUMENT, "parameter '%s': position %zu: %s", p->param,
                          at, unsafe);
    size_t len = strlen(m->value);
    char *pat = malloc(len + 5);
    if (pat == NULL) return ERR_NOMEM;
    memcpy(pat, "^(", 2);
    memcpy(pat + 2, m->value, len);
    memcpy(pat + 2 + len, ")$", 3);
    int rc = regcomp(&m->re, pat, REG_EXTENDED | REG_NOSUB);
    free(pat);
    if (rc != 0) {
        char why[128];
        regerror(rc, &m->re, why, sizeof why);
        p->i = at;
        return errmsg_set(p->em, ERR_INVALID_ARGUMENT,
                          "parameter '%s': position %zu: bad regex: %s", p->param, at, why);
    }
    m->has_re = 1;
    return 0;
}

static int parse_matcher(parser_t *p, query_selector_t *sel)
{
    if (sel->n == QUERY_SELECTOR_MAX_MATCHERS) return perr(p, "too many matchers");
    matcher_t *m = &sel->m[sel->n++];
    memset(m, 0, sizeof *m);
    int rc = parse_name(p, m);
    if (rc == 0) {
        skip_ws(p);
        rc = parse_op(p, m);
    }
    if (rc == 0) {
        skip_ws(p);
        size_t at = p->i;
        rc = parse_value(p, m);
        if (rc == 0) rc = compile_re(p, m, at);
    }
    return rc;
}

static int parse_braces(parser_t *p, query_selector_t *sel)
{
    p->i++; /* '{' */
    for (;;) {
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
            return 0;
        }
        int rc = parse_matcher(p, sel);
        if (rc != 0) return rc;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
            return 0;
        }
        return perr(p, p->i < p->n ? "expected ',' or '}'" : "missing '}'");
    }
}

static int parse_all(parser_t *p, query_selector_t *sel)
{
    if (p->n > QUERY_SELECTOR_MAX_BYTES)
        return errmsg_set(p->em, ERR_INVALID_ARGUMENT,
                          "parameter '%s': selector longer than %d bytes", p->param,
                          QUERY_SELECTOR_MAX_BYTES);
    if (memchr(p->s, 0, p->n) != NULL) {
        p->i = (size_t)((const char *)memchr(p->s, 0, p->n) - p->s);
        return perr(p, "NUL byte");
    }
    skip_ws(p);
    int rc = parse_type(p, sel);
    if (rc != 0) return rc;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '{') {
        rc = parse_braces(p, sel);
        if (rc != 0) return rc;
        skip_ws(p);
    }
    if (p->i < p->n)
        return perr(p, sel->type == NULL && sel->n == 0 ? "expected a profile type or '{'"
                                                        : "unexpected text after selector");
    return 0;
}

int query_selector_parse(const char *param, const char *s, size_t n, query_selector_t **out,
                         errmsg_t *em)
{
    *out = NULL;
    query_selector_t *sel = calloc(1, sizeof *sel);
    if (sel == NULL) return ERR_NOMEM;
    parser_t p = {.s = s, .n = n, .i = 0, .param = param, .em = em};
    int rc = parse_all(&p, sel);
    if (rc != 0) {
        query_selector_free(sel);
        return rc;
    }
    *out = sel;
    return 0;
}

void query_selector_free(query_selector_t *sel)
{
    if (sel == NULL) return;
    for (size_t i = 0; i < sel->n; i++) {
        free(sel->m[i].name);
        free(sel->m[i].value);
        if (sel->m[i].has_re) regfree(&sel->m[i].re);
    }
    free(sel->type);
    free(sel);
}

const char *query_selector_type(const query_selector_t *sel)
{
    return sel->type;
}

size_t query_selector_count(const query_selector_t *sel)
{
    return sel->n;
}

void query_selector_matcher(const query_selector_t *sel, size_t i, const char **name,
                            query_match_op_t *op, const char **value)
{
    *name = sel->m[i].name;
    *op = sel->m[i].op;
    *value = sel->m[i].value;
}

/* ---- span matchers ---- */

int query_span_label_kind(const char *name)
{
    if (strcmp(name, "span_id") == 0 || strcmp(name, "profile_id") == 0)
        return STORAGE_SPAN_KIND_SPAN;
    return strcmp(name, "trace_id") == 0 ? STORAGE_SPAN_KIND_TRACE : 0;
}

static int span_err(const char *param, const char *name, errmsg_t *em, const char *why)
{
    return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter '%s': label %s: %s", param, name, why);
}

static int span_add(query_span_sel_t *out, const char *v, size_t n)
{
    uint64_t id = storage_span_id(v, n);
    for (size_t i = 0; i < out->n; i++)
        if (out->id[i] == id) return 0;
    if (out->n == QUERY_SPAN_IDS_MAX) return ERR_LIMIT;
    out->id[out->n++] = id;
    return 0;
}

/* The ids of `id` or `id1|id2|...`: every alternative a non-empty literal. */
static int span_ids(const char *param, const matcher_t *m, query_span_sel_t *out, errmsg_t *em)
{
    if (m->op == QUERY_MATCH_EQ && m->value[0] == 0)
        return span_err(param, m->name, em, "needs an id (an empty value selects nothing)");
    if (m->op == QUERY_MATCH_EQ) return span_add(out, m->value, strlen(m->value));
    for (const char *a = m->value;;) {
        size_t n = strcspn(a, "|");
        if (n == 0 || strcspn(a, "\\^$.?*+()[]{}") < n)
            return span_err(param, m->name, em,
                            "=~ takes literal ids separated by '|' (e.g. \"id1|id2\")");
        if (span_add(out, a, n) != 0) return span_err(param, m->name, em, "more than 256 ids");
        if (a[n] == 0) return 0;
        a += n + 1;
    }
}

int query_selector_take_spans(const char *param, query_selector_t *sel, query_span_sel_t *out,
                              errmsg_t *em)
{
    out->kind = 0;
    out->n = 0;
    size_t keep = 0;
    for (size_t i = 0; i < sel->n; i++) {
        matcher_t *m = &sel->m[i];
        int kind = query_span_label_kind(m->name), rc = 0;
        if (kind == 0) {
            sel->m[keep++] = *m;
            continue;
        }
        if (out->kind != 0)
            rc = span_err(param, m->name, em, "one span_id or trace_id matcher per selector");
        else if (m->op != QUERY_MATCH_EQ && m->op != QUERY_MATCH_RE)
            rc = span_err(param, m->name, em, "only = and =~ select spans");
        else
            rc = span_ids(param, m, out, em);
        out->kind = (uint8_t)kind;
        free(m->name);
        free(m->value);
        if (m->has_re) regfree(&m->re);
        if (rc != 0) { /* the rest stays owned by sel */
            for (size_t k = i + 1; k < sel->n; k++)
                sel->m[keep++] = sel->m[k];
            sel->n = keep;
            return rc;
        }
    }
    sel->n = keep;
    return 0;
}

static int matcher_ok(const matcher_t *m, const labels_t *l)
{
    const char *v = labels_get(l, m->name);
    if (v == NULL) v = "";
    switch (m->op) {
    case QUERY_MATCH_EQ:
        return strcmp(v, m->value) == 0;
    case QUERY_MATCH_NE:
        return strcmp(v, m->value) != 0;
    case QUERY_MATCH_RE:
        return regexec(&m->re, v, 0, NULL, 0) == 0;
    case QUERY_MATCH_NRE:
        return regexec(&m->re, v, 0, NULL, 0) != 0;
    }
    return 0;
}

int query_selector_matches(const query_selector_t *sel, const labels_t *l)
{
    for (size_t i = 0; i < sel->n; i++)
        if (!matcher_ok(&sel->m[i], l)) return 0;
    return 1;
}

static int format_value(buf_t *out, const char *v)
{
    int rc = buf_append_byte(out, '"');
    for (; rc == 0 && *v; v++) {
        switch (*v) {
        case '"':
            rc = buf_append_str(out, "\\\"");
            break;
        case '\\':
            rc = buf_append_str(out, "\\\\");
            break;
        case '\n':
            rc = buf_append_str(out, "\\n");
            break;
        case '\t':
            rc = buf_append_str(out, "\\t");
            break;
        case '\r':
            rc = buf_append_str(out, "\\r");
            break;
        default:
            rc = buf_append_byte(out, (uint8_t)*v);
        }
    }
    return rc != 0 ? rc : buf_append_byte(out, '"');
}

int query_selector_format(const query_selector_t *sel, buf_t *out)
{
    static const char *ops[] = {"=", "!=", "=~", "!~"};
    int rc = sel->type ? buf_append_str(out, sel->type) : 0;
    if (rc == 0) rc = buf_append_byte(out, '{');
    for (size_t i = 0; rc == 0 && i < sel->n; i++) {
        rc = buf_printf(out, "%s%s%s", i ? ", " : "", sel->m[i].name, ops[sel->m[i].op]);
        if (rc == 0) rc = format_value(out, sel->m[i].value);
    }
    return rc != 0 ? rc : buf_append_byte(out, '}');
}
