/* Thread count: fixed by the user (nn_set_threads, OMP_NUM_THREADS) or chosen by the library.
 *
 * When the user fixes nothing, a model picks its thread count per step from measurements
 * (nn_tuner): another process busy on a core makes every barrier of a 2-thread step wait
 * for a descheduled thread (measured here: 2 threads 3-10x slower than 1 with the other
 * core taken), while on an idle machine the conv presets ran 1.5x faster on 2 threads
 * (issue 12). The tuner times whole steps (from one step's start to the next), mostly runs
 * the fastest count, and now and then probes another one for two steps. The first step of
 * a probe is not counted (it pays for waking the workers), except that re-probing a count
 * that lost clearly (>= 1.5x slower) ends after that step if it took twice the best's time.
 * A losing probe doubles the time to the next one (x8 for a clear loss; at most
 * TUNER_MAX_GAP steps); a winning one takes over. Results never depend on the thread count
 * (kernels reduce in a fixed order), so the choice only changes speed. */
#ifndef NN_BASE_THREADS_H
#define NN_BASE_THREADS_H

#define NN_TUNER_CANDIDATES 3

typedef struct {
  int ncand;                        /* 0 = not initialised */
  int cand[NN_TUNER_CANDIDATES];    /* thread counts tried: all cores, 1, half the cores */
  double cost[NN_TUNER_CANDIDATES]; /* seconds per sample; 0 = not measured yet */
  int best;                         /* index of the fastest measured candidate */
  int cur;                          /* index in use for the running step */
  int left;                         /* steps left in the current run of `cur` */
  int fresh;                        /* the running step is the first of its run (not counted) */
  int probing;                      /* the current run is a probe of a non-best candidate */
  int next_probe;                   /* round robin over the non-best candidates */
  int gap;                          /* steps of the best candidate between probes */
  double t0;                        /* start of the running step; < 0: none to measure */
  int n0;                           /* its batch size */
} nn_tuner;

/* The cores this process may run on (>= 1), read once (asked at every step; in libgomp
 * omp_get_num_procs is a system call). */
int nn_cores(void);

/* Cores the library may use when it chooses (nn_cores()), or 0 when the user fixed the
 * count with nn_set_threads(n > 0) or OMP_NUM_THREADS. */
int nn_threads_auto(void);

/* Prepare a tuner for counts up to max (max <= 1: always 1). */
void nn_tuner_init(nn_tuner *t, int max);
/* Prepare t from the verdict of another tuner of the same counts (`from`, e.g. the training
 * steps' for the evaluation steps): its best count runs for its current gap before t probes
 * the others, instead of t measuring every count from scratch (with a busy core that cost an
 * evaluation pass four steps at all cores, each 3-10x a one-thread step). Without a verdict
 * in `from` (nothing measured, other counts): nn_tuner_init. */
void nn_tuner_adopt(nn_tuner *t, const nn_tuner *from, int max);
/* A step of n samples starts at time `now` (seconds, monotonic): account the previous step
 * and return the thread count for this one. */
int nn_tuner_step(nn_tuner *t, double now, int n);
/* What ran since the last nn_tuner_step was not a step of this tuner (an eval pass, a
 * checkpoint): do not count it. */
void nn_tuner_break(nn_tuner *t);

/* The library's choice for a step of n samples in the default mode (nn_threads_auto() > 0):
 * accounts it to `mine` (prepared from `other`'s verdict when new), breaks `other` (a tuner
 * of another kind of step, e.g. eval vs train) and sets the calling thread's OpenMP thread
 * count. Does nothing when the user fixed the count. */
void nn_threads_step(nn_tuner *mine, nn_tuner *other, int n);

/* Monotonic seconds. */
double nn_now(void);

#endif
