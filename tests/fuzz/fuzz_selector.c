/* fuzz_selector.c — libFuzzer target for the query parameters a client
 * controls: the label selector (query=, match=) and the time parser (from=,
 * until=). Checks, beyond "no crash, no leak, no UB": a selector that parses
 * formats to a canonical text that parses again to the same text, and it can
 * be evaluated against a label set; every accepted time yields a value and
 * every refusal names the parameter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"

static void check_selector(const uint8_t *data, size_t size, const labels_t *l)
{
    query_selector_t *sel = NULL;
    errmsg_t em = {{0}};
    int rc = query_selector_parse("query", (const char *)data, size, &sel, &em);
    if (rc != 0) {
        if (rc != ERR_INVALID_ARGUMENT || strstr(em.text, "parameter 'query'") == NULL) abort();
        return;
    }
    buf_t a, b;
    buf_init(&a, 1 << 20);
    buf_init(&b, 1 << 20);
    if (query_selector_format(sel, &a) != 0) abort();
    query_selector_t *again = NULL;
    if (query_selector_parse("query", (const char *)a.data, a.len, &again, &em) != 0)
        abort(); /* canonical text must parse */
    if (query_selector_format(again, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len))
        abort(); /* and be a fixed point */
    if (query_selector_matches(sel, l) != query_selector_matches(again, l)) abort();
    query_selector_free(again);
    query_selector_free(sel);
    buf_free(&a);
    buf_free(&b);
}

static void check_time(const uint8_t *data, size_t size)
{
    char text[128];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = 0;
    int64_t v;
    errmsg_t em = {{0}};
    int rc = query_time_parse("from", text, 1700000000000LL, &v, &em);
    if (rc != 0 && (rc != ERR_INVALID_ARGUMENT || strstr(em.text, "parameter 'from'") == NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static labels_t *l;
    if (l == NULL) {
        l = labels_new();
        labels_set_str(l, "__profile_type__", "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        labels_set_str(l, "service_name", "checkout");
        labels_set_str(l, "env", "prod");
        labels_set_str(l, "otel.scope.name", "io.opentelemetry");
        labels_set_str(l, "version", "v1.2.3-\xc3\xa9");
    }
    check_selector(data, size, l);
    check_time(data, size);
    return 0;
}
