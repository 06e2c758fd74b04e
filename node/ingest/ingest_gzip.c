/* ingest_gzip.c — gunzip with a hard output limit (gzip bombs get 413).
 *
 * libdeflate decompresses whole buffers, so the output buffer is sized up
 * front: from the gzip trailer's ISIZE when it is plausible, growing by
 * doubling while libdeflate reports insufficient space, never past max.
 * Concatenated gzip members (RFC 1952 allows them) are decoded in turn.
 */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "node/ingest/ingest_int.h"

static size_t initial_size(const uint8_t *in, size_t n, size_t max)
{
    size_t guess = n * 4;
    if (n >= 18) {
        uint32_t isize = (uint32_t)in[n - 4] | (uint32_t)in[n - 3] << 8 |
                         (uint32_t)in[n - 2] << 16 | (uint32_t)in[n - 1] << 24;
        if (isize > guess) guess = isize;
    }
    if (guess < 4096) guess = 4096;
    return guess < max ? guess : max;
}

/* Decodes one member at in into out (growing it); *used = input consumed. */
static int one_member(struct libdeflate_decompressor *d, const uint8_t *in, size_t n, size_t max,
                      buf_t *out, size_t *used, errmsg_t *em)
{
    size_t room = initial_size(in, n, max - out->len > 0 ? max - out->len : 1);
    for (;;) {
        if (room > max - out->len) room = max - out->len;
        if (room == 0) room = 1; /* a member that decodes to nothing still needs a buffer */
        if (buf_reserve(out, room) < 0)
            return errmsg_set(em, ERR_NOMEM, "out of memory decompressing the body");
        size_t got = 0;
        enum libdeflate_result r =
            libdeflate_gzip_decompress_ex(d, in, n, out->data + out->len, room, used, &got);
        if (r == LIBDEFLATE_SUCCESS) {
            if (out->len + got > max) break;
            out->len += got;
            return 0;
        }
        /* DEFLATE expands at most 1032:1; libdeflate reads a truncated stream
         * as if zeros followed, which can look like endless output. */
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE || room > n * 1032 + 65536)
            return errmsg_set(em, ERR_UNPARSEABLE, "body is not valid gzip (corrupt or truncated)");
        if (out->len + room >= max) break;
        room *= 2;
    }
    return errmsg_set(em, ERR_TOO_LARGE,
                      "gzip body decompresses to more than %zu bytes (max-decompressed-bytes)",
                      max);
}

int ingest_gunzip(const uint8_t *in, size_t n, size_t max, uint8_t **out, size_t *out_len,
                  errmsg_t *em)
{
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (d == NULL) return errmsg_set(em, ERR_NOMEM, "out of memory");
    buf_t b;
    buf_init(&b, BUF_UNLIMITED); /* bounded by max below, not by the buffer */
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < n) {
        size_t used = 0;
        rc = one_member(d, in + off, n - off, max, &b, &used, em);
        off += used;
        if (rc == 0 && off < n && !ingest_is_gzip(in + off, n - off))
            rc = errmsg_set(em, ERR_UNPARSEABLE, "trailing bytes after the gzip stream");
    }
    libdeflate_free_decompressor(d);
    if (rc < 0) {
        buf_free(&b);
        return rc;
    }
    if (b.data == NULL && buf_reserve(&b, 1) < 0) return errmsg_set(em, ERR_NOMEM, "out of memory");
    *out = buf_steal(&b, out_len);
    return 0;
}
