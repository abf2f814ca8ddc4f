/* One helper thread running one job at a time (async.h). */
#include "base/async.h"

#include <pthread.h>
#include <stdlib.h>

struct nn_async {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled when a job is handed over, finished, or quit is set */
  void (*fn)(void *);
  void *arg;
  int busy; /* a job is handed over and not finished */
  int quit;
};

static void *helper(void *p) {
  nn_async *a = p;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->busy && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
    if (!a->busy) break; /* quit with no job left */
    void (*fn)(void *) = a->fn;
    void *arg = a->arg;
    pthread_mutex_unlock(&a->mu);
    fn(arg);
    pthread_mutex_lock(&a->mu);
    a->busy = 0;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

nn_async *nn_async_create(void) {
  nn_async *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  if (pthread_mutex_init(&a->mu, NULL)) {
    free(a);
    return NULL;
  }
  if (pthread_cond_init(&a->cv, NULL)) {
    pthread_mutex_destroy(&a->mu);
    free(a);
    return NULL;
  }
  if (pthread_create(&a->thread, NULL, helper, a)) {
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
    return NULL;
  }
  return a;
}

void nn_async_wait(nn_async *a) {
  pthread_mutex_lock(&a->mu);
  while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
}

void nn_async_run(nn_async *a, void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&a->mu);
  while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
  a->fn = fn;
  a->arg = arg;
  a->busy = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

void nn_async_free(nn_async *a) {
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  a->quit = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->thread, NULL);
  pthread_cond_destroy(&a->cv);
  pthread_mutex_destroy(&a->mu);
  free(a);
}
