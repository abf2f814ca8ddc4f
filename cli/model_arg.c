/* --model PRESET|SPECFILE|CHECKPOINT|RUNDIR */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static unsigned long long max_params; /* --max-params; 0 = the library's default */

int cli_take_max_params(int *argc, char **argv) {
  for (int i = 1; i < *argc; i++) {
    const char *v = NULL;
    int take = 0;
    if (!strcmp(argv[i], "--max-params")) v = i + 1 < *argc ? argv[i + 1] : NULL, take = 2;
    else if (!strncmp(argv[i], "--max-params=", 13)) v = argv[i] + 13, take = 1;
    if (!take) continue;
    cli_args a = {.argc = *argc, .argv = argv, .cmd = i > 1 ? argv[1] : "normnet", .val = v};
    if (cli_u64(&a, "--max-params", &max_params)) return -1;
    if (max_params == 0) {
      cli_error(a.cmd, "--max-params: expected a positive integer, got '%s'", v);
      return -1;
    }
    memmove(argv + i, argv + i + take, (size_t)(*argc - i - take + 1) * sizeof *argv);
    *argc -= take;
    i--;
  }
  return 0;
}

int cli_is_checkpoint_name(const char *arg) {
  return cli_has_ext(arg, ".safetensors") || cli_has_ext(arg, ".keras") || cli_has_ext(arg, ".h5") || cli_has_ext(arg, ".pt") ||
         cli_has_ext(arg, ".pth");
}

/* A regular file with a control byte (other than a tab or a line end) among its first 8:
 * binary, so no spec. Every checkpoint format starts with one (a safetensors header length
 * below 2^56 ends in a zero byte; the HDF5, zip and pickle signatures hold 0x1a, 0x03 and
 * 0x02..0x05), a spec with text: the checkpoint loader takes such a file whatever its name,
 * and says what it is if no checkpoint. A NUL further on is a damaged text file, which the
 * spec reader names as such (a NUL anywhere in the first 64 bytes sent it to the checkpoint
 * loader, whose complaint about a header length misled). */
static int is_binary_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0; /* the spec reader reports why */
  unsigned char head[8];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (head[i] < 0x20 && head[i] != '\t' && head[i] != '\n' && head[i] != '\r') return 1;
  return 0;
}

int cli_model_opt(cli_args *a, int checkpoint, const char **arg, const char **flag) {
  if (cli_opt(a, "--model")) {
    *flag = "--model";
  } else if (checkpoint && cli_opt(a, "--checkpoint")) {
    *flag = "--checkpoint";
  } else if (a->argv[a->i][0] != '-' && !*arg) {
    *arg = a->argv[a->i++], *flag = NULL;
    return 1;
  } else {
    return 0;
  }
  *arg = a->val;
  return 1;
}

int cli_model_resolve(const char *cmd, const char *flag, const char *arg, cli_model *out) {
  memset(out, 0, sizeof *out);
  nn_error err = {0};
  snprintf(out->what, sizeof out->what, "%s%s%s", flag ? flag : "", flag ? " " : "", arg);
  if ((out->preset = nn_preset_find(arg))) {
    if (nn_spec_parse(out->preset->spec, arg, &out->spec, &err)) return cli_fail(cmd, &err);
    nn_spec_set_max_params(out->spec, max_params);
    return EXIT_OK;
  }
  struct stat sb;
  if (stat(arg, &sb) != 0) {
    if (strchr(arg, '/') || cli_is_checkpoint_name(arg)) { /* a path: that it is no preset goes without saying */
      cli_error(cmd, "%s: %s", out->what, strerror(errno));
      return EXIT_USAGE;
    }
    char names[256] = "";
    const char *each[16];
    int n = 0;
    for (int i = 0; i < nn_preset_count(); i++) {
      strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
      strncat(names, nn_preset_at(i)->name, sizeof names - strlen(names) - 1);
      if (n < 16) each[n++] = nn_preset_at(i)->name;
    }
    const char *close = cli_closest(arg, strlen(arg), each, n, 0);
    cli_error(cmd, "%s: no such preset or file (%s%s%spresets: %s)", out->what, close ? "did you mean " : "",
              close ? close : "", close ? "? " : "", names);
    return EXIT_USAGE;
  }
  if (S_ISDIR(sb.st_mode)) {
    snprintf(out->checkpoint, sizeof out->checkpoint, "%s/model.safetensors", arg);
    if (stat(out->checkpoint, &sb) != 0) {
      cli_error(cmd, "%s: a directory without model.safetensors (not a training run)", out->what);
      return EXIT_USAGE;
    }
    return EXIT_OK;
  }
  if (cli_has_ext(arg, ".onnx")) {
    cli_error(cmd,
              "%s: an ONNX model: normnet writes ONNX (normnet export) but does not read it; give its run "
              "directory or model.safetensors",
              out->what);
    return EXIT_USAGE;
  }
  if (cli_is_checkpoint_name(arg) || (S_ISREG(sb.st_mode) && is_binary_file(arg))) {
    snprintf(out->checkpoint, sizeof out->checkpoint, "%s", arg);
    return cli_keras_probe(cmd, arg);
  }
  if (nn_spec_load(arg, &out->spec, &err)) return cli_fail(cmd, &err);
  nn_spec_set_max_params(out->spec, max_params);
  return EXIT_OK;
}

void cli_model_free(cli_model *m) {
  nn_spec_free(m->spec);
  m->spec = NULL;
}

int cli_model_trained(const char *cmd, cli_model *cm, const char *ckpt) {
  if (ckpt && cm->checkpoint[0]) { /* a run or checkpoint and --checkpoint: one would be ignored */
    cli_error(cmd, "%s and --checkpoint %s are two trained models: give one (--model PRESET|SPECFILE goes with --checkpoint)",
              cm->what, ckpt);
    return EXIT_USAGE;
  }
  if (ckpt) {
    snprintf(cm->checkpoint, sizeof cm->checkpoint, "%s", ckpt);
    int rc = cli_keras_probe(cmd, ckpt);
    if (rc) return rc;
  }
  if (!cm->checkpoint[0]) {
    cli_error(cmd, "%s is not trained; pass --checkpoint FILE or a run directory", cm->what);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

int cli_checkpoint_load(const char *cmd, const char *path, const nn_spec *spec, nn_model **out) {
  nn_error err = {0};
  *out = NULL;
  /* the file's own spec (recorded, or a Keras file's architecture), limited */
  if (!spec && max_params) {
    nn_spec *own = NULL;
    nn_status st = nn_checkpoint_load_spec(path, &own, &err);
    if (!st) nn_spec_set_max_params(own, max_params);
    if (!st) st = nn_checkpoint_load(path, own, out, &err);
    nn_spec_free(own);
    return st ? cli_fail(cmd, &err) : EXIT_OK;
  }
  if (nn_checkpoint_load(path, spec, out, &err)) return cli_fail(cmd, &err);
  return EXIT_OK;
}

int cli_model_checkpoint_spec(const char *cmd, cli_model *cm, nn_input_norm *norm, int *has_norm) {
  nn_error err = {0};
  if (nn_checkpoint_load_spec(cm->checkpoint, &cm->spec, &err)) return cli_fail(cmd, &err);
  nn_spec_set_max_params(cm->spec, max_params);
  nn_model *m = NULL; /* its input transform: recorded, or a Keras file's Rescaling */
  int rc = cli_checkpoint_load(cmd, cm->checkpoint, cm->spec, &m);
  *has_norm = !rc && nn_model_input_norm(m, norm);
  nn_model_free(m);
  return rc;
}

int cli_checkpoint_check(const char *cmd, const char *path) {
  if (!max_params) return EXIT_OK;
  nn_model *m = NULL;
  int rc = cli_checkpoint_load(cmd, path, NULL, &m);
  nn_model_free(m);
  return rc;
}

int cli_model_finite(const char *cmd, const char *what, nn_model *m, int refuse) {
  for (int t = 0; t < nn_model_num_tensors(m); t++) {
    nn_tensor_view v;
    nn_model_tensor(m, t, &v);
    for (size_t k = 0; v.data && k < v.count; k++) {
      if (isfinite(v.data[k])) continue;
      const char *val = isnan(v.data[k]) ? "NaN" : v.data[k] > 0 ? "inf"
                                                                 : "-inf";
      if (!refuse) {
        cli_warn(cmd, "%s: tensor '%s' holds %s (value %zu of %zu): the model's outputs will not be numbers", what,
                 v.name, val, k, v.count);
        return EXIT_OK;
      }
      cli_error(cmd, "%s: tensor '%s' holds %s (value %zu of %zu): a model with non-finite weights or statistics gives no numbers", what, v.name, val, k, v.count);
      return EXIT_FAIL;
    }
  }
  return EXIT_OK;
}

int cli_model_build(const char *cmd, cli_model *cm, const char *norm, nn_init init, unsigned long long seed,
                    nn_model **out) {
  nn_error err = {0};
  *out = NULL;
  if (cm->checkpoint[0]) {
    if (norm && strcmp(norm, "batch")) {
      cli_error(cmd, "--norm cannot change a trained checkpoint (%s)", cm->checkpoint);
      return EXIT_USAGE;
    }
    return cli_checkpoint_load(cmd, cm->checkpoint, cm->spec, out);
  }
  if (norm) {
    /* NORM or NORM@before|after (placement against the activation) */
    if (nn_spec_set_norm(cm->spec, norm, &err)) {
      cli_error(cmd, "--norm %s: %s", norm, err.msg);
      return EXIT_USAGE;
    }
  }
  if (nn_model_create(cm->spec, out, &err)) return cli_fail(cmd, &err);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_model_init(*out, init, &rng);
  return EXIT_OK;
}

int cli_model_input(const char *cmd, const cli_model *cm, const nn_model *m, const char *norm_arg,
                    const char *data_arg, nn_input_norm *norm, const char **data, const char **data_from) {
  int recorded = nn_model_input_norm(m, norm);
  if (!recorded && cm->preset) *norm = cm->preset->input_norm;
  if (norm_arg) {
    cli_args a = {.cmd = cmd};
    if (cli_input_norm(&a, norm_arg, norm)) return EXIT_USAGE;
  }
  const char *src = nn_model_data_source(m);
  if (data_arg) *data = data_arg, *data_from = "--data";
  else if (src[0]) *data = src, *data_from = "recorded in the model";
  else *data = "fashion-mnist", *data_from = "default: the model records no data source";
  return EXIT_OK;
}
