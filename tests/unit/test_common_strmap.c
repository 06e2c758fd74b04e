/* Unit tests for common/strmap.h: dense indices in first-use order. */
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/strmap.h"
#include "check.h"

int main(void)
{
    strmap_t m;
    strmap_init(&m);
    uint32_t idx = 99;
    CHECK_EQ_INT(strmap_find(&m, "a", 1, &idx), 0);
    static char names[3000][8];
    for (int i = 0; i < 3000; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        CHECK_EQ_INT(strmap_intern(&m, names[i], strlen(names[i]), &idx), ERR_OK);
        CHECK_EQ_INT(idx, i);
    }
    CHECK_EQ_INT(strmap_intern(&m, "n17", 3, &idx), ERR_OK); /* same bytes, another pointer */
    CHECK_EQ_INT(idx, 17);
    CHECK_EQ_INT(strmap_find(&m, "n2999", 5, &idx), 1);
    CHECK_EQ_INT(idx, 2999);
    CHECK_EQ_INT(strmap_find(&m, "n1", 1, &idx), 0); /* a prefix is another string */
    CHECK_EQ_INT(strmap_intern(&m, "", 0, &idx), ERR_OK);
    CHECK_EQ_INT(idx, 3000);
    CHECK_EQ_INT(m.n, 3001);
    CHECK(m.strs[5] == names[5] && m.lens[5] == 2); /* borrowed, in order */
    strmap_free(&m);
    CHECK_EQ_INT(m.n, 0);
    return check_exit();
}
