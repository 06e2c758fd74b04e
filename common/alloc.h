/* alloc.h — process-wide allocator tuning (one of the two pieces of
 * process-wide state flamedb has; the other is the log level).
 *
 * A query builds trees and vectors of a few MiB and frees them; with glibc's
 * defaults such blocks are mmap()ed or trimmed back to the kernel after every
 * query, and the next query pays a page fault per 4 KiB to get them again
 * (a quarter of a render's time was spent in page faults). Keeping up to
 * ALLOC_KEEP_BYTES of freed memory per malloc arena avoids that; the node's
 * memory budget (--memory-limit) leaves room for it. Call once, at start,
 * before threads exist.
 */
#ifndef FLAMEDB_COMMON_ALLOC_H
#define FLAMEDB_COMMON_ALLOC_H

#define ALLOC_MMAP_THRESHOLD (32 << 20)
#define ALLOC_KEEP_BYTES (64 << 20)

void alloc_tune_for_server(void);

#endif
