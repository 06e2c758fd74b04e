/* alloc.c — see alloc.h. */
#include "common/alloc.h"

#include <malloc.h>

void alloc_tune_for_server(void)
{
    /* Failures leave glibc's defaults in place, which are correct, only slower. */
    (void)mallopt(M_MMAP_THRESHOLD, ALLOC_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, ALLOC_KEEP_BYTES);
}
