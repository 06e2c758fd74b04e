/* assist.c — helper threads for parts of a job (assist.h). One mutex holds
 * the idle helpers (a stack: the one that went idle last takes the next
 * part, whose caches are the warmest) and each part's state; a helper
 * sleeps on its own condition variable, a joiner on the shared one. */
#include <pthread.h>
#include <stdlib.h>

#include "common/assist.h"
#include "common/err.h"

typedef struct helper {
    assist_t *a;
    pthread_t thread;
    pthread_cond_t wake;
    assist_task_t *task; /* handed to it while idle */
    int idle;            /* on the idle stack */
    int started;
} helper_t;

struct assist {
    pthread_mutex_t mu;
    pthread_cond_t done; /* a helper finished a part */
    helper_t *h;
    int n;
    helper_t **idle; /* stack of idle helpers */
    int nidle;
    int stop;
    unsigned long long helped, here;
};

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    assist_t *a = h->a;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (h->task == NULL && !a->stop) {
            if (!h->idle) { /* once: a wakeup without a part finds it there still */
                h->idle = 1;
                a->idle[a->nidle++] = h;
            }
            pthread_cond_wait(&h->wake, &a->mu);
        }
        if (h->task == NULL) break; /* stopping (it left the idle stack) */
        assist_task_t *t = h->task;
        h->task = NULL;
        pthread_mutex_unlock(&a->mu);
        t->fn(t->arg);
        pthread_mutex_lock(&a->mu);
        t->done = 1;
        pthread_cond_broadcast(&a->done);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int assist_new(int threads, assist_t **out)
{
    *out = NULL;
    if (threads < 0 || threads > ASSIST_MAX_THREADS) return ERR_INVALID_ARGUMENT;
    assist_t *a = calloc(1, sizeof *a);
    if (a == NULL) return ERR_NOMEM;
    a->h = calloc((size_t)(threads ? threads : 1), sizeof *a->h);
    a->idle = calloc((size_t)(threads ? threads : 1), sizeof *a->idle);
    int mu = a->h && a->idle && pthread_mutex_init(&a->mu, NULL) == 0;
    if (!mu || pthread_cond_init(&a->done, NULL) != 0) {
        if (mu) pthread_mutex_destroy(&a->mu);
        free(a->h);
        free(a->idle);
        free(a);
        return ERR_NOMEM;
    }
    int rc = ERR_OK;
    for (int i = 0; i < threads && rc == ERR_OK; i++) {
        helper_t *h = &a->h[i];
        h->a = a;
        if (pthread_cond_init(&h->wake, NULL) != 0) {
            rc = ERR_NOMEM;
            break;
        }
        a->n = i + 1; /* assist_free destroys the first n helpers' conditions */
        h->started = pthread_create(&h->thread, NULL, helper_main, h) == 0;
        if (!h->started) rc = ERR_NOMEM;
    }
    if (rc != ERR_OK) {
        assist_free(a);
        return rc;
    }
    *out = a;
    return ERR_OK;
}

void assist_free(assist_t *a)
{
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    for (int i = 0; i < a->n; i++)
        pthread_cond_signal(&a->h[i].wake);
    pthread_mutex_unlock(&a->mu);
    for (int i = 0; i < a->n; i++) {
        if (a->h[i].started) pthread_join(a->h[i].thread, NULL);
        pthread_cond_destroy(&a->h[i].wake);
    }
    pthread_cond_destroy(&a->done);
    pthread_mutex_destroy(&a->mu);
    free(a->h);
    free(a->idle);
    free(a);
}

void assist_start(assist_t *a, assist_task_t *t, void (*fn)(void *arg), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    t->here = 1;
    t->done = 0;
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    helper_t *h = a->nidle > 0 && !a->stop ? a->idle[--a->nidle] : NULL;
    if (h != NULL) {
        h->idle = 0;
        h->task = t;
        t->here = 0;
        a->helped++;
    } else {
        a->here++;
    }
    pthread_mutex_unlock(&a->mu);
    if (h != NULL) pthread_cond_signal(&h->wake);
}

void assist_join(assist_t *a, assist_task_t *t)
{
    if (t->here) {
        t->fn(t->arg);
        return;
    }
    pthread_mutex_lock(&a->mu);
    while (!t->done)
        pthread_cond_wait(&a->done, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

void assist_stats(assist_t *a, assist_stats_t *out)
{
    out->helped = out->inline_ = 0;
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    out->helped = a->helped;
    out->inline_ = a->here;
    pthread_mutex_unlock(&a->mu);
}
