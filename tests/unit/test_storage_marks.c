/* Unit tests for repair marks (storage/marks.c): the three kinds are kept per
 * node across a reopen, a later time replaces the latest miss or pass but
 * an earlier one leaves it (two pool jobs may store them out of order),
 * the oldest profile time is overwritten either way, bad node ids and
 * kinds are refused, and the marks stay apart from the other meta keys. */
#include "test_storage_fixture.h"

typedef struct seen_marks {
    char text[512];
} seen_marks_t;

static int collect(void *ctx, int kind, const char *node, uint64_t ms)
{
    seen_marks_t *m = ctx;
    size_t n = strlen(m->text);
    snprintf(m->text + n, sizeof m->text - n, "%s%s:%s=%llu", n ? "," : "",
             kind == STORAGE_MARK_LOST       ? "lost"
             : kind == STORAGE_MARK_REPAIRED ? "done"
                                             : "past",
             node, (unsigned long long)ms);
    return 0;
}

static void test_marks(fixture_t *f)
{
    errmsg_t em = {{0}};
    seen_marks_t m = {""};
    CHECK_EQ_INT(storage_repair_marks(f->s, collect, &m), 0);
    CHECK_EQ_STR(m.text, ""); /* format_version is not a mark */
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_LOST, "n1", 100, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_REPAIRED, "n1", 50, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_LOST, "n2", 7, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_LOST, "n1", 120, &em), 0); /* over */
    /* out of order: an earlier pass's or miss's put lands last */
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_REPAIRED, "n1", 40, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_LOST, "n1", 110, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_OLDEST, "n2", 1700000500, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_OLDEST, "n2", 1700000000, &em), 0);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, STORAGE_MARK_LOST, "", 1, &em),
                 ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(storage_repair_mark_put(f->s, 7, "n3", 1, &em), ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(fx_reopen(f), 0);
    CHECK_EQ_INT(storage_repair_marks(f->s, collect, &m), 0);
    CHECK_EQ_STR(m.text, "lost:n1=120,lost:n2=7,done:n1=50,past:n2=1700000000");
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    test_marks(&f);
    fx_done(&f);
    return check_exit();
}
