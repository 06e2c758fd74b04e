/* Unit tests for common/list.h: order, removal from any position, re-linking. */
#include "common/list.h"
#include "check.h"

typedef struct item {
    int v;
    list_node_t link;
} item_t;

static int collect(const list_t *l, int *out, int max)
{
    int n = 0;
    for (list_node_t *p = list_first(l); p != NULL && n < max; p = list_next(l, p))
        out[n++] = LIST_ENTRY(p, item_t, link)->v;
    return n;
}

int main(void)
{
    list_t l;
    list_init(&l);
    CHECK(list_empty(&l));
    CHECK(list_first(&l) == NULL && list_last(&l) == NULL);
    item_t it[4] = {{0}, {1}, {2}, {3}};
    list_push_back(&l, &it[1].link);
    list_push_front(&l, &it[0].link);
    list_push_back(&l, &it[2].link);
    list_push_back(&l, &it[3].link);
    int got[8];
    CHECK_EQ_INT(collect(&l, got, 8), 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(got[i], i);
    CHECK(LIST_ENTRY(list_last(&l), item_t, link) == &it[3]);
    CHECK(list_prev(&l, &it[0].link) == NULL);

    list_remove(&it[2].link); /* middle */
    list_remove(&it[0].link); /* first */
    list_remove(&it[3].link); /* last */
    CHECK(!list_linked(&it[2].link));
    list_remove(&it[2].link); /* unlinked: no-op */
    CHECK_EQ_INT(collect(&l, got, 8), 1);
    CHECK_EQ_INT(got[0], 1);
    list_push_front(&l, &it[3].link); /* move to front, as an LRU does */
    CHECK_EQ_INT(collect(&l, got, 8), 2);
    CHECK_EQ_INT(got[0], 3);
    list_remove(&it[3].link);
    list_remove(&it[1].link);
    CHECK(list_empty(&l));
    CHECK(LIST_ENTRY((list_node_t *)NULL, item_t, link) == NULL);
    return check_exit();
}
