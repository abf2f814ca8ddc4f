/* A Keras file read first in a child process.
 *
 * Keras's files (a legacy .h5, the model.weights.h5 inside a .keras) are parsed by the
 * system's libhdf5, which a damaged or hostile file can crash, hang, or make print a trace
 * at exit (docs/robustness.md, "Not hardened: HDF5 files"). Before the command loads one,
 * this program reads it again in a child (`normnet --probe-keras FILE`, started from
 * /proc/self/exe with no other arguments) under a time limit, its stderr captured: a child
 * killed by a signal, out of time, or whose libhdf5 printed anything is the file refused in
 * one line, and the command never touches it. A file the child reads, or refuses with its
 * own error, goes on to the command, which reports that error itself. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define PROBE_SECONDS 60

int cli_keras_probe_child(const char *path) {
  nn_spec *spec = NULL;
  nn_model *m = NULL;
  nn_error err = {0};
  if (!nn_checkpoint_load_spec(path, &spec, &err)) nn_checkpoint_load(path, spec, &m, &err);
  nn_model_free(m);
  nn_spec_free(spec);
  return EXIT_OK; /* a refusal is the command's to report */
}

int cli_keras_probe(const char *cmd, const char *path) {
  if (!nn_checkpoint_uses_hdf5(path)) return EXIT_OK;
  int fds[2];
  if (pipe(fds) != 0) return EXIT_OK; /* no probe possible: the command reads it as before */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char self[] = "/proc/self/exe", flag[] = "--probe-keras", file[4096];
  if ((size_t)snprintf(file, sizeof file, "%s", path) >= sizeof file) return EXIT_OK; /* the loader refuses it */
  char *argv[] = {self, flag, file, NULL};
  extern char **environ;
  pid_t pid;
  const int spawned = posix_spawn(&pid, self, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    return EXIT_OK;
  }
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  char said[256];
  size_t nsaid = 0;
  int status = 0, done = 0;
  struct timespec t0, now, tick = {0, 10 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    char buf[512];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0) /* keep the first bytes, drain the rest */
      for (ssize_t i = 0; i < got && nsaid + 1 < sizeof said; i++) said[nsaid++] = buf[i];
    if (waitpid(pid, &status, WNOHANG) == pid) {
      done = 1;
      while ((got = read(fds[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < got && nsaid + 1 < sizeof said; i++) said[nsaid++] = buf[i];
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec >= PROBE_SECONDS) break;
    nanosleep(&tick, NULL);
  }
  close(fds[0]);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cli_error(cmd, "%s: reading it took over %d s in the HDF5 library (a damaged file?); not loaded", path,
              PROBE_SECONDS);
    return EXIT_FAIL;
  }
  said[nsaid] = 0;
  for (size_t i = 0; i < nsaid; i++) /* its first line, for the message */
    if (said[i] == '\n') said[i] = 0;
  if (WIFSIGNALED(status)) {
    cli_error(cmd, "%s: the HDF5 library crashed reading it (signal %d: a damaged file?); not loaded", path,
              WTERMSIG(status));
    return EXIT_FAIL;
  }
  if (nsaid) {
    cli_error(cmd, "%s: the HDF5 library failed reading it (\"%s\": a damaged file?); not loaded", path, said);
    return EXIT_FAIL;
  }
  return EXIT_OK;
}
