/* Unit tests for common/u64map.h against a brute-force model. */
#include <stdlib.h>

#include "common/err.h"
#include "common/u64map.h"
#include "check.h"

int main(void)
{
    u64map_t m = {0}; /* a zeroed map is empty */
    uint32_t v = 0;
    CHECK_EQ_INT(u64map_get(&m, 0, &v), 0);
    CHECK_EQ_INT(u64map_put(&m, 0, 7), ERR_OK); /* key 0 is a key like any other */
    CHECK_EQ_INT(u64map_get(&m, 0, &v), 1);
    CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(u64map_set(&m, 0, 9), ERR_OK); /* replaces */
    CHECK_EQ_INT(u64map_set(&m, 5, 3), ERR_OK); /* inserts */
    CHECK_EQ_INT(u64map_get(&m, 0, &v), 1);
    CHECK_EQ_INT(v, 9);
    CHECK_EQ_INT(u64map_get(&m, 5, &v), 1);
    CHECK_EQ_INT(v, 3);
    CHECK_EQ_INT((int)m.len, 2);
    u64map_free(&m);

    enum { N = 20000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        keys[i] = i % 4 == 0 ? (uint64_t)i << 32 : x; /* structured and random ids */
    }
    for (int i = 0; i < N; i++) {
        uint32_t got;
        int rc = u64map_get_or_put(&m, keys[i], (uint32_t)i, &got);
        CHECK(rc == 1 || rc == 0);
        if (rc == 0) CHECK(keys[got] == keys[i]); /* a repeat key keeps its first value */
    }
    size_t distinct = m.len;
    CHECK(distinct >= N - 2);
    for (int i = 0; i < N; i++) {
        uint32_t got = U64MAP_EMPTY;
        CHECK(u64map_get(&m, keys[i], &got) == 1 && keys[got] == keys[i]);
    }
    CHECK_EQ_INT(u64map_get(&m, 0x123456789abcdef1ULL, &v), 0);
    size_t seen = 0;
    for (size_t i = 0; i < m.cap; i++)
        seen += u64map_used(&m, i) ? 1 : 0;
    CHECK_EQ_INT(seen, distinct);
    CHECK(m.len * 2 <= m.cap); /* at most half full */

    u64map_clear(&m);
    CHECK_EQ_INT(m.len, 0);
    CHECK_EQ_INT(u64map_get(&m, keys[5], &v), 0);
    size_t cap = m.cap;
    CHECK_EQ_INT(u64map_reserve(&m, 100), ERR_OK);
    CHECK_EQ_INT(m.cap, cap); /* already room */
    u64map_free(&m);
    CHECK_EQ_INT(u64map_init(&m, 1000), ERR_OK);
    cap = m.cap;
    for (uint32_t i = 0; i < 1000; i++)
        CHECK_EQ_INT(u64map_put(&m, i * 7919u, i), ERR_OK);
    CHECK_EQ_INT(m.cap, cap); /* presized: no growth */
    u64map_free(&m);
    free(keys);
    return check_exit();
}
