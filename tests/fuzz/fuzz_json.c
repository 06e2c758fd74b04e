/* fuzz_json.c — libFuzzer target for the bounded JSON reader (common/json.h),
 * which reads sample_type_config parts, cluster admin bodies and flamectl's
 * answers.
 *
 * Each input is read twice: once walked value by value (objects by key,
 * arrays by element, strings decoded into a bounded buffer, scalars as text)
 * and once with json_skip(). Beyond "no crash, no UB, nesting bounded": both
 * must agree on whether the text is one valid value and where it ends, and
 * the errors are the documented ones.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/json.h"

static int walk(json_t *j)
{
    int rc = 0;
    char key[64], text[64];
    switch (json_peek(j)) {
    case JSON_OBJECT:
        if ((rc = json_enter(j, '{')) != 0) return rc;
        while (json_next(j, &rc)) {
            if ((rc = json_key(j, key, sizeof key)) != 0 || (rc = walk(j)) != 0) return rc;
        }
        return rc;
    case JSON_ARRAY:
        if ((rc = json_enter(j, '[')) != 0) return rc;
        while (json_next(j, &rc))
            if ((rc = walk(j)) != 0) return rc;
        return rc;
    case JSON_STRING: {
        buf_t b;
        buf_init(&b, BUF_UNLIMITED); /* max_string bounds it */
        rc = json_string(j, &b);
        buf_free(&b);
        return rc;
    }
    case JSON_NULL:
    case JSON_SCALAR:
        return json_scalar_to(j, text, sizeof text);
    default:
        return json_skip(j); /* JSON_END / JSON_BAD: the reader's own error */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_limits_t lim = {.max_depth = 16, .max_string = 1 << 20};
    json_t a, b;
    json_init(&a, data, size, lim);
    json_init(&b, data, size, lim);
    int ra = walk(&a), rb = json_skip(&b);
    if (ra == 0) ra = json_finish(&a);
    if (rb == 0) rb = json_finish(&b);
    for (int i = 0; i < 2; i++) {
        int rc = i ? rb : ra;
        if (rc != 0 && rc != ERR_UNPARSEABLE && rc != ERR_TOO_LARGE) abort();
    }
    if ((ra == 0) != (rb == 0)) abort();
    if (ra == 0 && json_offset(&a) != json_offset(&b)) abort();
    return 0;
}
