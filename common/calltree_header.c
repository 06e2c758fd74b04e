/* calltree_header.c — what an encoded call tree names, read without
 * decoding it: its dictionary of symbols and its record count (the header
 * of version 1, common/calltree.h). For holders of trees kept encoded
 * (ingest's span trees) that need their symbols or size. */
#include "common/calltree.h"
#include "common/err.h"
#include "common/varint.h"

int calltree_encoded_header(const uint8_t *p, size_t n, const uint8_t **syms, size_t *nsyms,
                            size_t *nnodes)
{
    if (n == 0) return ERR_CORRUPT; /* also p NULL (an absent field): no p + n */
    const uint8_t *end = p + n;
    uint64_t ns, nn;
    int64_t root;
    if (*p++ != CALLTREE_VERSION || !varint_read_u(&p, end, &ns) || ns > (uint64_t)(end - p) / 8)
        return ERR_CORRUPT;
    *syms = p;
    p += ns * 8;
    if (!varint_read_s(&p, end, &root) || !varint_read_u(&p, end, &nn) || nn > (uint64_t)(end - p))
        return ERR_CORRUPT; /* a record is at least 3 bytes */
    *nsyms = (size_t)ns;
    *nnodes = (size_t)nn;
    return ERR_OK;
}

uint64_t calltree_encoded_sym(const uint8_t *syms, size_t i)
{
    const uint8_t *q = syms + 8 * i;
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = (v << 8) | q[b];
    return v;
}
