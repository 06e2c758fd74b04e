/* hash.c — XXH3 wrappers behind hash.h. */
#include "common/hash.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "common/varint.h"

uint64_t hash_bytes64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

void hash_bytes128(const void *p, size_t n, uint8_t out[16])
{
    XXH128_hash_t h = XXH3_128bits(p, n);
    be64_put(out, h.high64);
    be64_put(out + 8, h.low64);
}

/* hash_symbol hashes name, a NUL and file: laid out in one buffer on the
 * stack when they fit (one XXH3 call, about a fifth of the streaming
 * API's work for a function's name and file), streamed otherwise. Both
 * give the same hash of the same bytes. */
#define HASH_SYMBOL_FLAT 512

uint64_t hash_symbol(const char *name, size_t name_len, const char *file, size_t file_len)
{
    uint64_t h;
    if (name_len < HASH_SYMBOL_FLAT && file_len < HASH_SYMBOL_FLAT - 1 - name_len) {
        char flat[HASH_SYMBOL_FLAT];
        if (name_len) memcpy(flat, name, name_len);
        flat[name_len] = 0;
        if (file_len) memcpy(flat + name_len + 1, file, file_len);
        h = XXH3_64bits(flat, name_len + 1 + file_len);
    } else {
        XXH3_state_t st;
        static const char zero = 0;
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, name, name_len);
        XXH3_64bits_update(&st, &zero, 1);
        XXH3_64bits_update(&st, file, file_len);
        h = XXH3_64bits_digest(&st);
    }
    if (h <= SYM_OTHER) h += 2;
    return h;
}
