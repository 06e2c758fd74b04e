/* test_storage_nodetab_race.c — a failed write batch must not give two
 * stacks the same node id. Writer A adds a node and fails its batch while
 * writer B waits on the table's lock; B then holds the table (reloaded) and
 * adds a node; writer C arrives meanwhile. C must wait for B and get the next
 * id, not load a second copy of the table and hand out B's id again. After
 * both commit, the table on disk names each stack's symbol at its id. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <time.h>

#include "check.h"
#include "common/buf.h"
#include "storage/storage_int.h"

#define TOKEN 0x4242424242424242ull
#define SYM_A 0x1000000000000001ull
#define SYM_B 0x1000000000000002ull
#define SYM_C 0x1000000000000003ull

typedef struct writer {
    storage_t *s;
    uint64_t sym;
    uint32_t id;
    int rc;
    int hold; /* B: keep the table until released by main */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int holding, go, done;
} writer_t;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_flag(writer_t *w, int *flag)
{
    pthread_mutex_lock(&w->mu);
    *flag = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_flag(writer_t *w, int *flag)
{
    pthread_mutex_lock(&w->mu);
    while (!*flag)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* acquire, add (root, sym), [hold], stage, commit, release */
static void *write_one(void *arg)
{
    writer_t *w = arg;
    nodetab_t *t;
    errmsg_t em = {{0}};
    w->rc = storage_nodetab_acquire(w->s, TOKEN, "t", &t, &em);
    if (w->rc != 0) return NULL;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    w->rc = storage_nodetab_child(w->s, t, 0, w->sym, wb, &w->id);
    if (w->hold) {
        set_flag(w, &w->holding);
        wait_flag(w, &w->go);
    }
    buf_t tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    if (w->rc == 0) w->rc = storage_nodetab_stage(w->s, t, wb, &tmp);
    char *err = NULL;
    if (w->rc == 0) rocksdb_write(w->s->db, w->s->wopts, wb, &err);
    if (err != NULL) {
        w->rc = ERR_IO;
        free(err);
    }
    storage_nodetab_release(w->s, t, w->rc != 0);
    rocksdb_writebatch_destroy(wb);
    buf_free(&tmp);
    set_flag(w, &w->done);
    return NULL;
}

static void writer_init(writer_t *w, storage_t *s, uint64_t sym, int hold)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    w->sym = sym;
    w->hold = hold;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static int done(writer_t *w)
{
    pthread_mutex_lock(&w->mu);
    int d = w->done;
    pthread_mutex_unlock(&w->mu);
    return d;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    /* A: a batch that adds a node, then fails (the injected failure) */
    nodetab_t *ta;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, TOKEN, "t", &ta, &em), 0);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint32_t ida = 0;
    CHECK_EQ_INT(storage_nodetab_child(f.s, ta, 0, SYM_A, wb, &ida), 0);
    CHECK_EQ_INT(ida, 1);
    writer_t b, c;
    writer_init(&b, f.s, SYM_B, 1);
    writer_init(&c, f.s, SYM_C, 0);
    pthread_t tb, tc;
    pthread_create(&tb, NULL, write_one, &b);
    sleep_ms(100); /* B now waits on the table's lock */
    storage_nodetab_release(f.s, ta, 1);
    rocksdb_writebatch_destroy(wb);
    wait_flag(&b, &b.holding); /* B holds the (reloaded) table, not committed */
    pthread_create(&tc, NULL, write_one, &c);
    sleep_ms(100);
    CHECK(!done(&c)); /* C waits for B: one table object per token */
    set_flag(&b, &b.go);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    CHECK_EQ_INT(b.rc, 0);
    CHECK_EQ_INT(c.rc, 0);
    CHECK_EQ_INT(b.id, 1); /* A's id 1 was never durable: B reuses it */
    CHECK_EQ_INT(c.id, 2);
    /* from disk: each id names its own stack */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    nodetab_t *t;
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, TOKEN, "t", &t, &em), 0);
    CHECK_EQ_INT(storage_nodetab_count(t), 3);
    CHECK(storage_nodetab_sym(t, b.id) == SYM_B);
    CHECK(storage_nodetab_sym(t, c.id) == SYM_C);
    storage_nodetab_release(f.s, t, 0);
    fx_done(&f);
    return check_exit();
}
