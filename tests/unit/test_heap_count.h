/* test_heap_count.h — the heap in use, counted by replacing malloc,
 * calloc, realloc and free (forwarding to glibc's __libc_* functions), for
 * the tests that compare what a piece of work allocates with what it
 * charges to a budget (test_ingest_heap, test_query_render_heap).
 * heap_start() counts from zero, heap_stop() returns the most in use since;
 * heap_watch() follows how far the heap in use runs ahead of a budget;
 * held_fn, given a held_t, follows what an answer's buffer says it holds
 * (buf_charge), refusing growth past its limit.
 * HEAP_COUNTED is 0 under AddressSanitizer, which replaces the allocator
 * itself: those tests skip their checks then. Header-only, defining the
 * allocator's functions: include it in one file of a test executable.
 */
#ifndef FLAMEDB_TESTS_TEST_HEAP_COUNT_H
#define FLAMEDB_TESTS_TEST_HEAP_COUNT_H

#include <malloc.h>
#include <stddef.h>

#include "common/err.h"

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_COUNTED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_COUNTED 0
#endif
#endif
#ifndef HEAP_COUNTED
#define HEAP_COUNTED 1
#endif

/* The heap in use while counting (from zero at heap_start), and its most. */
static long heap_now, heap_most;
static int heap_on;
/* While heap_watch(counted) is set: the most the heap in use passed
 * *counted (a budget's bytes in use) at any allocation, heap_gap_most:
 * what was allocated before it was charged. */
static const size_t *heap_counted;
static long heap_gap_most;

static inline void heap_watch(const size_t *counted) /* NULL: stops, heap_gap_most kept */
{
    if (counted != NULL) heap_gap_most = 0;
    heap_counted = counted;
}

static void heap_start(void)
{
    heap_now = heap_most = 0;
    heap_on = 1;
}

static long heap_stop(void)
{
    heap_on = 0;
    return heap_most;
}

#if HEAP_COUNTED
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t sz);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

static void heap_add(long n)
{
    if (!heap_on) return;
    heap_now += n;
    if (heap_now > heap_most) heap_most = heap_now;
    if (heap_counted != NULL && n > 0 && heap_now - (long)*heap_counted > heap_gap_most)
        heap_gap_most = heap_now - (long)*heap_counted;
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    if (p != NULL) heap_add((long)malloc_usable_size(p));
    return p;
}

void *calloc(size_t n, size_t sz)
{
    void *p = __libc_calloc(n, sz);
    if (p != NULL) heap_add((long)malloc_usable_size(p));
    return p;
}

void *realloc(void *p, size_t n)
{
    long was = p != NULL ? (long)malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, n);
    if (q != NULL && q != p) { /* moved: both blocks were held while it copied */
        heap_add((long)malloc_usable_size(q));
        heap_add(-was);
    } else if (q != NULL || n == 0) {
        heap_add((q != NULL ? (long)malloc_usable_size(q) : 0) - was);
    }
    return q;
}

void free(void *p)
{
    if (p != NULL) heap_add(-(long)malloc_usable_size(p));
    __libc_free(p);
}
#endif

/* What an answer's buffer said it holds, and the most; past limit (0:
 * none) a growth is refused (ERR_UNAVAILABLE, as a query budget does). */
typedef struct held {
    size_t now, most, limit;
} held_t;

static inline int held_fn(void *ctx, size_t held)
{
    held_t *h = ctx;
    if (h->limit != 0 && held > h->now && held > h->limit) return ERR_UNAVAILABLE;
    h->now = held;
    if (held > h->most) h->most = held;
    return 0;
}

#endif
