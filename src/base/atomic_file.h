/* The one atomic file writer: every file normnet writes (checkpoints, history, spec, CSVs,
 * plots) goes through nn_file_write_atomic (declared in normnet.h).
 *
 *   nn_file_write_atomic(path, data, len, err)
 *     1. creates the temporary "DIR/.NAME.tmp.PID.N" next to PATH with
 *        open(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0666): never an existing file,
 *        never through a symlink planted under that name;
 *     2. writes all len bytes and fsyncs them;
 *     3. renames the temporary over PATH (a symlink at PATH is replaced, its target is
 *        never written);
 *     4. fsyncs DIR so the rename itself is durable.
 *   On any failure the temporary is removed and PATH is unchanged.
 *
 *   nn_file_remove_stale_temps(dir, err)
 *     removes the temporaries of writers that are gone (killed mid-write): files named like
 *     step 1 whose PID is not a running process, or is this process (which has no write in
 *     progress when it calls this). Call it on opening a directory you own (a run).
 *
 * Contents are built in memory (nn_strbuf, a cairo stream) and handed over whole. */
#ifndef NN_BASE_ATOMIC_FILE_H
#define NN_BASE_ATOMIC_FILE_H
#include "normnet.h"

/* 1 if the file name `name` (no directory) is one of our temporaries; *pid receives the
 * writer's PID. */
int nn_file_is_temp_name(const char *name, long *pid);

#endif
