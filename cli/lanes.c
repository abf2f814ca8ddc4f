/* Jobs side by side (compare's variants, study's runs): lanes on threads of the CLI, each
 * taking the next job until none is left or one failed, the threads shared out among them.
 * Training results do not depend on the thread count, so only the time changes: two
 * one-thread runs on two cores never wait for each other, where one two-thread run meets
 * its other half at every layer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_LANES 64

/* The threads the lanes share: the user's count, else the library's most. */
static int shared_threads(int given) { return given ? given : nn_threads_max(); }

int cli_lanes_count(int jobs, int njobs, int threads) {
  int lanes = jobs ? jobs : shared_threads(threads);
  if (lanes > njobs) lanes = njobs;
  if (lanes > MAX_LANES) lanes = MAX_LANES;
  return lanes > 1 ? lanes : 1;
}

void cli_lanes_print(const char *prefix, int njobs, const char *what, int lanes, int threads) {
  if (lanes < 2) return;
  threads = shared_threads(threads);
  if (threads < lanes) threads = lanes; /* more lanes than threads (--jobs): one each */
  printf("%s%d %s, %d at a time on %d thread%s (--jobs 1: one after another)\n", prefix, njobs, what, lanes, threads,
         threads == 1 ? "" : "s");
}

typedef struct {
  cli_lane_job job;
  void *ctx;
  int njobs, lanes, threads;
  atomic_int next, failed;
  atomic_int spare; /* threads of lanes that found no job left, for the jobs still running */
  int *rc;
  char (*error)[sizeof(((cli_lane *)0)->error)]; /* each failed job's message, if it left one */
} lanes;

typedef struct {
  lanes *s;
  int lane;
} lane_arg;

/* The lane whose job this thread runs, side by side (NULL otherwise): cli_lane_hold keeps its
 * job's error messages for the end, where only the first failed job's is printed. */
static _Thread_local cli_lane *running;

int cli_lane_hold(const char *msg) {
  cli_lane *l = running;
  if (!l || !l->stop) return 0; /* one lane: messages go out as they come */
  if (!l->error[0]) snprintf(l->error, sizeof l->error, "%s", msg);
  return 1;
}

static void *lane_main(void *arg) {
  const lane_arg *l = arg;
  lanes *s = l->s;
  /* the threads shared out (the first lanes take the remainder), grown by spare ones */
  int mine = s->threads / s->lanes + (l->lane < s->threads % s->lanes);
  if (s->lanes > 1 && mine < 1) mine = 1; /* more lanes than threads (--jobs): one each */
  while (!atomic_load(&s->failed)) {
    int k = atomic_fetch_add(&s->next, 1);
    if (k >= s->njobs) break;
    cli_lane lane = {mine, s->lanes > 1 ? &s->spare : NULL, s->lanes > 1 ? &s->failed : NULL, ""};
    running = &lane;
    s->rc[k] = s->job(s->ctx, k, &lane);
    running = NULL;
    if (s->rc[k]) atomic_store(&s->failed, 1);
    memcpy(s->error[k], lane.error, sizeof lane.error);
    mine = lane.threads; /* with the spare threads it took */
  }
  atomic_fetch_add(&s->spare, mine); /* nothing left for this lane: the running jobs take them */
  return NULL;
}

int cli_lane_fail(const char *cmd, const char *label, const char *msg) {
  cli_error(cmd, "%s%s%s", label ? label : "", label ? ": " : "", msg && msg[0] ? msg : "failed");
  return EXIT_FAIL;
}

int cli_lanes_run(const char *cmd, int njobs, int nlanes, int threads, cli_lane_job job, void *ctx) {
  if (njobs <= 0) return EXIT_OK;
  if (nlanes < 1) nlanes = 1;
  if (nlanes > MAX_LANES) nlanes = MAX_LANES;
  int *rc = calloc((size_t)njobs, sizeof *rc);
  char(*error)[sizeof(((cli_lane *)0)->error)] = calloc((size_t)njobs, sizeof *error);
  if (!rc || !error) {
    free(rc);
    free(error);
    cli_error(cmd, "out of memory");
    return EXIT_FAIL;
  }
  lanes s = {.job = job, .ctx = ctx, .njobs = njobs, .lanes = nlanes, .rc = rc, .error = error};
  s.threads = nlanes > 1 ? shared_threads(threads) : threads; /* one lane: the count as given */
  pthread_t tid[MAX_LANES];
  lane_arg args[MAX_LANES] = {{NULL, 0}};
  int started[MAX_LANES] = {0};
  pthread_attr_t attr;
  int attr_ok = !pthread_attr_init(&attr) && !pthread_attr_setstacksize(&attr, (size_t)16 << 20);
  for (int i = 0; i < nlanes; i++) args[i] = (lane_arg){&s, i};
  /* the calling thread is lane 0; a lane that cannot start leaves its jobs to the others */
  for (int i = 1; i < nlanes; i++) started[i] = !pthread_create(&tid[i], attr_ok ? &attr : NULL, lane_main, &args[i]);
  lane_main(&args[0]);
  for (int i = 1; i < nlanes; i++)
    if (started[i]) pthread_join(tid[i], NULL);
  if (attr_ok) pthread_attr_destroy(&attr);
  /* the first failure in job order that said why (jobs stopped by it say nothing) */
  int first = -1;
  for (int k = 0; k < njobs && first < 0; k++)
    if (rc[k] && error[k][0]) first = k;
  for (int k = 0; k < njobs && first < 0; k++)
    if (rc[k]) first = k;
  const int out = first >= 0 ? rc[first] : atomic_load(&s.failed) ? EXIT_FAIL
                                                                  : EXIT_OK;
  if (first >= 0 && error[first][0]) cli_error(cmd, "%s", error[first]);
  free(rc);
  free(error);
  return out;
}
