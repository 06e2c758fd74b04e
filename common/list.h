/* list.h — an intrusive, circular doubly-linked list.
 *
 * Owns linking and unlinking: a list_node_t lives inside the element, a
 * list_t (a sentinel node) is the list. Unlinking is O(1) and never needs the
 * list head, so there is one unlink in the code base. The list owns nothing:
 * elements belong to whoever allocated them, and freeing one that is still
 * linked corrupts the list (remove it first). Not thread-safe: guard the
 * list with the lock of whatever owns it. Header-only (static inline).
 */
#ifndef FLAMEDB_COMMON_LIST_H
#define FLAMEDB_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list_node {
    struct list_node *prev, *next; /* both NULL while unlinked */
} list_node_t;

typedef struct list {
    list_node_t head; /* sentinel: head.next is the first element, head.prev the last */
} list_t;

/* The element that contains node (NULL for NULL). */
#define LIST_ENTRY(node, type, member)                                                             \
    ((node) != NULL ? (type *)(void *)((char *)(node)-offsetof(type, member)) : (type *)NULL)

static inline void list_init(list_t *l)
{
    l->head.prev = l->head.next = &l->head;
}
static inline bool list_empty(const list_t *l)
{
    return l->head.next == &l->head;
}
static inline bool list_linked(const list_node_t *n)
{
    return n->next != NULL;
}

static inline void list_insert_after_(list_node_t *at, list_node_t *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

static inline void list_push_front(list_t *l, list_node_t *n)
{
    list_insert_after_(&l->head, n);
}
static inline void list_push_back(list_t *l, list_node_t *n)
{
    list_insert_after_(l->head.prev, n);
}

/* Unlinks n from whatever list holds it; a no-op when n is not linked. */
static inline void list_remove(list_node_t *n)
{
    if (n->next == NULL) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* First / last node, NULL when empty; next / prev of n, NULL at the ends. */
static inline list_node_t *list_first(const list_t *l)
{
    return list_empty(l) ? NULL : l->head.next;
}
static inline list_node_t *list_last(const list_t *l)
{
    return list_empty(l) ? NULL : l->head.prev;
}
static inline list_node_t *list_next(const list_t *l, const list_node_t *n)
{
    return n->next == &l->head ? NULL : n->next;
}
static inline list_node_t *list_prev(const list_t *l, const list_node_t *n)
{
    return n->prev == &l->head ? NULL : n->prev;
}

#endif
