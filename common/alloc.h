/* alloc.h — process-wide allocator tuning (one of the two pieces of
 * process-wide state flamedb has; the other is the log level), and memory
 * budgets shared by threads (alloc_budget_t, below).
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

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ALLOC_MMAP_THRESHOLD (32 << 20)
#define ALLOC_KEEP_BYTES (64 << 20)

void alloc_tune_for_server(void);

/* calloc(n, size) whose every page is written before it is returned: for
 * hash tables, which are probed (read) before they are filled. calloc
 * leaves memory fresh from the kernel untouched (it is zero already), so a
 * table's first read of a page maps the kernel's shared zero page and its
 * first write faults again to copy it, which flushes that mapping from the
 * TLB of every CPU running another thread of the process (an interrupt
 * each, a VM exit in a virtual machine). Written first, a page faults once,
 * and reused memory is cleared as calloc clears it. Free with free();
 * NULL when out of memory or n * size overflows. */
void *alloc_zeroed(size_t n, size_t size);

/* Gives the freed memory of every malloc arena back to the system
 * (malloc_trim): what ALLOC_KEEP_BYTES would otherwise keep. Each thread
 * that allocated has an arena of its own, so memory one large piece of work
 * freed stays with its thread's arena, and the next such work on another
 * thread grows another arena: call this after work that should leave
 * nothing behind (a refused push), on any thread. Costs a walk of the
 * arenas' free lists and a madvise per free run (0.3 ms after a 7 MiB
 * push; 17 ms once for what a warm node's queries kept) and, later, a page
 * fault per 4 KiB that is used again. */
void alloc_release_free(void);

/* A memory budget shared by threads: bytes taken by work in progress (the
 * pushes and replica writes of a node), taken as memory grows and given
 * back when the work ends. Thread-safe (atomics); limit 0: no limit, only
 * counted. Owned by whoever created it, outliving every charge on it. */
typedef struct alloc_budget {
    size_t limit;
    _Atomic size_t used;
    _Atomic uint64_t refused; /* charges refused (counter) */
} alloc_budget_t;

/* What one piece of work holds on a budget: it takes room in steps of
 * ALLOC_CHARGE_STEP (fewer atomic operations) and gives it all back at
 * alloc_charge_done. b may be NULL (nothing is charged). One thread at a time. */
typedef struct alloc_charge {
    alloc_budget_t *b;
    size_t held;   /* taken from b */
    size_t used;   /* charged by the work, <= held */
    size_t peak;   /* the most used at once (for tests and logs) */
    size_t beside; /* held on b for the same work by other accounts (alloc_charge_beside) */
} alloc_charge_t;

#define ALLOC_CHARGE_STEP (256u << 10)

void alloc_budget_init(alloc_budget_t *b, size_t limit);
size_t alloc_budget_used(const alloc_budget_t *b);
uint64_t alloc_budget_refused(const alloc_budget_t *b);

/* Exact, for one thread's own accounting beside the charges of others:
 * take n bytes (ERR_UNAVAILABLE, nothing taken, when that passes the
 * limit), add them whatever the limit (the caller checks and undoes), give
 * them back. */
int alloc_budget_take(alloc_budget_t *b, size_t n);
void alloc_budget_force(alloc_budget_t *b, size_t n);
void alloc_budget_give(alloc_budget_t *b, size_t n);

void alloc_charge_init(alloc_charge_t *c, alloc_budget_t *b);
/* Charges n more bytes. ERR_TOO_LARGE when this work alone would pass the
 * limit (it can never fit), ERR_UNAVAILABLE when it does not fit now beside
 * the others (retry later); nothing is charged then. */
int alloc_charge_add(alloc_charge_t *c, size_t n);
/* Bytes the same work holds on the budget through other accounts (a
 * query's result while its answer is charged here): counted with this
 * charge when alloc_charge_add tells ERR_TOO_LARGE from ERR_UNAVAILABLE. */
void alloc_charge_beside(alloc_charge_t *c, size_t held_elsewhere);
/* Gives n bytes of what was charged back (memory the work freed early). */
void alloc_charge_sub(alloc_charge_t *c, size_t n);
/* Gives everything back; the charge may be reused after alloc_charge_init. */
void alloc_charge_done(alloc_charge_t *c);

#endif
