/* One helper thread that runs a job while the caller goes on: the training loop assembles
 * the next batch (uint8 -> float, augmentation) on it while the current step trains.
 *
 * One job at a time: nn_async_run hands the job over and returns at once, nn_async_wait
 * returns when it has finished (at once when none is running). The helper sleeps on a
 * condition variable between jobs, so it costs nothing while idle. A job must not use
 * OpenMP (it would start a second thread team) and must not share data with what the
 * caller does meanwhile; run and wait order everything the job reads and writes with the
 * caller's code before and after them. */
#ifndef NN_BASE_ASYNC_H
#define NN_BASE_ASYNC_H

typedef struct nn_async nn_async;

/* A helper thread, or NULL when none could be started (the caller then runs its jobs
 * itself). */
nn_async *nn_async_create(void);
/* Start fn(arg) on the helper; a running job is waited for first. */
void nn_async_run(nn_async *a, void (*fn)(void *), void *arg);
/* Wait until the job started last has finished. */
void nn_async_wait(nn_async *a);
/* Wait for the running job, stop the helper and free it (NULL: nothing). */
void nn_async_free(nn_async *a);

#endif
