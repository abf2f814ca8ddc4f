/* Checkpoints: the normnet mapping onto the safetensors container (io/safetensors.c,
 * ARCHITECTURE.md §6).
 *
 * Tensors are the model's named views in PyTorch state_dict order (nn_model_tensor), then
 * the optimizer's ("optim.*"); num_batches_tracked is a 0-d I64 as PyTorch writes it.
 * __metadata__ holds what normnet owns: "format", the spec text ("normnet.spec"), per-layer
 * random streams, the optimizer step count, and the model's input (transform and data
 * source); then the caller's extra pairs (a run's recipe, epoch, history). A plain PyTorch
 * state_dict (safetensors.torch.save_file) loads too when the caller passes the spec.
 *
 * Every tensor the spec needs must be present with the exact dtype and shape; extra tensors
 * are errors, except "optim.*". F64 tensors are accepted for float parameters and rounded
 * to float32. A file is read and its header parsed once per nn_checkpoint handle. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "io/keras_import.h"
#include "io/safetensors.h"
#include "model/model.h"

#define NN_CKPT_FORMAT "normnet/1"
#define NN_CKPT_SPEC_KEY "normnet.spec"
#define NN_CKPT_RNG_KEY "normnet.layer_rng"         /* per-layer random streams */
#define NN_CKPT_STEPS_KEY "normnet.optimizer_steps" /* with optim.* tensors */
#define NN_CKPT_MAX_STEPS 1000000000000000L         /* 1e15 */
#define NN_CKPT_MEAN_KEY "normnet.input_mean"
#define NN_CKPT_STD_KEY "normnet.input_std"
#define NN_CKPT_DATA_KEY "normnet.data"
#define NN_CKPT_OPTIM_PREFIX "optim."

static const char *const reserved_keys[] = {"format", NN_CKPT_SPEC_KEY, NN_CKPT_RNG_KEY, NN_CKPT_STEPS_KEY,
                                            NN_CKPT_MEAN_KEY, NN_CKPT_STD_KEY, NN_CKPT_DATA_KEY};
#define NRESERVED (int)(sizeof reserved_keys / sizeof reserved_keys[0])

struct nn_checkpoint {
  nn_st_file *f;
};

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Per-layer random streams (dropout masks) as "index:s0,s1,s2,s3;..." (hex), so that a
 * resumed run draws the same masks. Layers without a stream are left out. */
static char *layer_rngs_text(const nn_model *m) {
  nn_strbuf b = nn_strbuf_new();
  for (int i = 0; i < m->nlayers; i++) {
    const uint64_t *st = m->layers[i].rng.s;
    if (!(st[0] | st[1] | st[2] | st[3])) continue;
    nn_strbuf_printf(&b, "%s%d:%llx,%llx,%llx,%llx", b.len ? ";" : "", i, (unsigned long long)st[0],
                     (unsigned long long)st[1], (unsigned long long)st[2], (unsigned long long)st[3]);
  }
  return b.buf;
}

static void layer_rngs_restore(nn_model *m, const char *text) {
  const char *p = text;
  while (p && *p) {
    int i, used = 0;
    unsigned long long a, b, c, d;
    if (sscanf(p, "%d:%llx,%llx,%llx,%llx%n", &i, &a, &b, &c, &d, &used) != 5 || used <= 0) return;
    if (i >= 0 && i < m->nlayers) {
      uint64_t *st = m->layers[i].rng.s;
      st[0] = a, st[1] = b, st[2] = c, st[3] = d;
    }
    p += used;
    if (*p == ';') p++;
  }
}

/* ================================= save ================================================ */

static nn_st_tensor as_st(const nn_tensor_view *v, const int64_t *count) {
  nn_st_tensor t = {.name = v->name, .ndim = v->ndim, .count = v->count, .f32 = v->data, .i64 = v->data ? NULL : count};
  memcpy(t.dims, v->dims, sizeof t.dims);
  return t;
}

nn_status nn_checkpoint_save(const nn_model *m, const char *path, const nn_meta_pair *extra, int nextra, nn_error *err) {
  return nn_checkpoint_save_training(m, NULL, path, extra, nextra, err);
}

nn_status nn_checkpoint_save_training(const nn_model *m, const nn_optimizer *opt, const char *path,
                                      const nn_meta_pair *extra, int nextra, nn_error *err) {
  if (!m || !path || !*path || nextra < 0 || (nextra > 0 && !extra))
    return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_save: invalid arguments");
  for (int i = 0; i < nextra; i++)
    for (int k = 0; extra[i].key && k < NRESERVED; k++)
      if (!strcmp(extra[i].key, reserved_keys[k]))
        return nn_err_set(err, NN_ERR_ARG, "%s: checkpoint metadata key '%s' is reserved by normnet", path,
                          extra[i].key);
  int nm = nn_model_num_tensors(m), no = opt ? nn_optimizer_num_tensors(opt, m) : 0;
  nn_st_tensor *t = malloc(((size_t)nm + (size_t)no + 1) * sizeof *t);
  nn_tensor_view *v = malloc(((size_t)nm + (size_t)no + 1) * sizeof *v);
  int64_t *counts = calloc((size_t)nm + 1, sizeof *counts);
  nn_meta_pair *meta = malloc(((size_t)nextra + NRESERVED) * sizeof *meta);
  char *spec = nn_spec_to_text(nn_model_spec(m)), *rngs = layer_rngs_text(m);
  nn_status st = NN_OK;
  if (!t || !v || !counts || !meta || !spec || !rngs) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  if (!st) {
    for (int i = 0; i < nm; i++) nn_model_tensor_read(m, i, &v[i], &counts[i]);
    for (int i = 0; i < no; i++) nn_optimizer_tensor(opt, m, i, &v[nm + i]);
    for (int i = 0; i < nm + no; i++) t[i] = as_st(&v[i], i < nm ? &counts[i] : NULL);
    char steps[32], mean[32], sd[32];
    int n = 0;
    meta[n++] = (nn_meta_pair){"format", NN_CKPT_FORMAT};
    meta[n++] = (nn_meta_pair){NN_CKPT_SPEC_KEY, spec};
    if (rngs[0]) meta[n++] = (nn_meta_pair){NN_CKPT_RNG_KEY, rngs};
    if (opt) {
      snprintf(steps, sizeof steps, "%ld", nn_optimizer_steps(opt));
      meta[n++] = (nn_meta_pair){NN_CKPT_STEPS_KEY, steps};
    }
    if (m->has_input) {
      snprintf(mean, sizeof mean, "%.9g", m->input_norm.mean);
      snprintf(sd, sizeof sd, "%.9g", m->input_norm.std);
      meta[n++] = (nn_meta_pair){NN_CKPT_MEAN_KEY, mean};
      meta[n++] = (nn_meta_pair){NN_CKPT_STD_KEY, sd};
    }
    if (m->data_source) meta[n++] = (nn_meta_pair){NN_CKPT_DATA_KEY, m->data_source};
    for (int i = 0; i < nextra; i++) meta[n++] = extra[i];
    st = nn_st_write(path, meta, n, t, nm + no, err);
  }
  free(t), free(v), free(counts), free(meta), free(spec), free(rngs);
  return st;
}

/* ================================= load ================================================ */

nn_status nn_checkpoint_open(const char *path, nn_checkpoint **out, nn_error *err) {
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_open: out is NULL");
  *out = NULL;
  if (!path) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_open: path is NULL");
  nn_checkpoint *c = calloc(1, sizeof *c);
  if (!c) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  nn_status st = nn_st_open(path, &c->f, err);
  if (st) {
    nn_checkpoint_close(c);
    return st;
  }
  *out = c;
  return NN_OK;
}

void nn_checkpoint_close(nn_checkpoint *c) {
  if (!c) return;
  nn_st_close(c->f);
  free(c);
}

const char *nn_checkpoint_path(const nn_checkpoint *c) { return nn_st_path(c->f); }

const char *nn_checkpoint_get(const nn_checkpoint *c, const char *key) { return nn_st_meta(c->f, key); }

/* Another producer's "format" (e.g. PyTorch's "pt") is fine; a newer normnet one is not
 * (its metadata can still be read). */
static nn_status check_format(const nn_checkpoint *c, nn_error *err) {
  const char *fmt = nn_st_meta(c->f, "format");
  if (fmt && strncmp(fmt, "normnet/", 8) == 0 && strcmp(fmt, NN_CKPT_FORMAT) != 0)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: unsupported checkpoint format '%.32s' (this build reads %s)",
                      nn_st_path(c->f), fmt, NN_CKPT_FORMAT);
  return NN_OK;
}

/* Copy one tensor into the model view after checking dtype and shape. */
static nn_status load_tensor(const nn_checkpoint *c, const nn_tensor_view *v, const nn_st_entry *e, nn_error *err) {
  const char *path = nn_st_path(c->f);
  int is_count = v->data == NULL;
  if (is_count ? strcmp(e->dtype, "I64") != 0 : strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F64") != 0)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", path, v->name, e->dtype,
                      is_count ? "I64" : "F32");
  int same = e->ndim == v->ndim;
  for (int d = 0; same && d < v->ndim; d++) same = e->dims[d] == v->dims[d];
  if (!same) {
    int64_t want[4];
    for (int d = 0; d < v->ndim; d++) want[d] = v->dims[d];
    char got_s[128], want_s[64];
    nn_st_format_shape(e->dims, e->ndim, got_s, sizeof got_s);
    nn_st_format_shape(want, v->ndim, want_s, sizeof want_s);
    return nn_err_set(err, NN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model spec needs %s", path, v->name, got_s,
                      want_s);
  }
  const unsigned char *p = nn_st_bytes(c->f, e);
  if (is_count) {
    int64_t nbt = (int64_t)get_u64(p);
    if (nbt < 0) return nn_err_set(err, NN_ERR_FORMAT, "%s: tensor '%s' is negative (%lld)", path, v->name, (long long)nbt);
    *v->count_value = nbt;
  } else if (e->dsize == 4) {
    for (size_t j = 0; j < v->count; j++, p += 4) {
      uint32_t u = get_u32(p);
      memcpy(&v->data[j], &u, 4);
    }
  } else {
    for (size_t j = 0; j < v->count; j++, p += 8) {
      uint64_t u = get_u64(p);
      double d;
      memcpy(&d, &u, 8);
      v->data[j] = (float)d;
    }
  }
  return NN_OK;
}

static int name_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* Every tensor of m from the file; anything left over (but optim.*) means the file describes
 * a different model. */
static nn_status load_model_tensors(const nn_checkpoint *c, nn_model *m, nn_error *err) {
  const char *path = nn_st_path(c->f);
  nn_status fst = check_format(c, err);
  if (fst) return fst;
  int nt = nn_model_num_tensors(m), nents = nn_st_count(c->f), found = 0;
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_model_tensor(m, i, &v);
    const nn_st_entry *e = nn_st_find(c->f, v.name);
    if (!e)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: missing tensor '%s' (%d tensors in the file, the model spec needs %d)",
                        path, v.name, nents, nt);
    nn_status st = load_tensor(c, &v, e, err);
    if (st) return st;
    found++;
  }
  /* The file's names are unique (nn_st_open), so when its entries are the model's tensors
   * and the optimizer's there is nothing else; only then are the others looked for, by
   * name in a sorted list (one pass over the model per entry made a 2000-layer checkpoint
   * take 24 s to load). */
  int optim = 0;
  for (int i = 0; i < nents; i++)
    optim += !strncmp(nn_st_at(c->f, i)->name, NN_CKPT_OPTIM_PREFIX, strlen(NN_CKPT_OPTIM_PREFIX));
  if (nents - optim == found) return NN_OK;
  char(*names)[sizeof((nn_tensor_view *)0)->name] = malloc(((size_t)nt + 1) * sizeof *names);
  if (!names) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  for (int k = 0; k < nt; k++) {
    nn_tensor_view v;
    nn_model_tensor(m, k, &v);
    memcpy(names[k], v.name, sizeof names[k]);
  }
  qsort(names, (size_t)nt, sizeof *names, name_cmp);
  char list[256];
  size_t used = 0;
  int extra = 0;
  list[0] = 0;
  for (int i = 0; i < nents; i++) {
    const char *name = nn_st_at(c->f, i)->name;
    if (!strncmp(name, NN_CKPT_OPTIM_PREFIX, strlen(NN_CKPT_OPTIM_PREFIX))) continue;
    char key[sizeof names[0]] = {0};
    snprintf(key, sizeof key, "%s", name);
    if (strlen(name) < sizeof key && bsearch(key, names, (size_t)nt, sizeof *names, name_cmp)) continue;
    if (extra < 4 && used < sizeof list)
      used += (size_t)snprintf(list + used, sizeof list - used, "%s'%.48s'", extra ? ", " : "", name);
    extra++;
  }
  free(names);
  if (extra)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %d unexpected tensor%s not in the model spec: %s%s", path, extra,
                      extra > 1 ? "s" : "", list, extra > 4 ? ", ..." : "");
  return NN_OK;
}

/* The model's input as recorded (absent keys leave it unknown). */
static nn_status load_input(const nn_checkpoint *c, nn_model *m, nn_error *err) {
  const char *mean = nn_checkpoint_get(c, NN_CKPT_MEAN_KEY), *sd = nn_checkpoint_get(c, NN_CKPT_STD_KEY);
  const char *data = nn_checkpoint_get(c, NN_CKPT_DATA_KEY);
  nn_input_norm norm;
  char *e1 = NULL, *e2 = NULL;
  if (mean || sd) {
    if (!mean || !sd) return nn_err_set(err, NN_ERR_FORMAT, "%s: has only one of %s and %s", nn_st_path(c->f), NN_CKPT_MEAN_KEY, NN_CKPT_STD_KEY);
    norm.mean = strtof(mean, &e1);
    norm.std = strtof(sd, &e2);
    if (e1 == mean || *e1 || e2 == sd || *e2) /* its range: nn_model_set_input's rule, below */
      return nn_err_set(err, NN_ERR_FORMAT, "%s: bad input transform '%s', '%s' in %s/%s", nn_st_path(c->f), mean, sd,
                        NN_CKPT_MEAN_KEY, NN_CKPT_STD_KEY);
  }
  nn_status st = nn_model_set_input(m, mean ? &norm : NULL, data, err);
  return st ? nn_err_prefix(err, NN_ERR_FORMAT, "%s: ", nn_st_path(c->f)) : NN_OK;
}

nn_status nn_checkpoint_read_spec(const nn_checkpoint *c, nn_spec **out, nn_error *err) {
  if (!c || !out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_read_spec: invalid arguments");
  *out = NULL;
  const char *path = nn_st_path(c->f);
  nn_status st = check_format(c, err);
  if (st) return st;
  const char *t = nn_checkpoint_get(c, NN_CKPT_SPEC_KEY);
  if (!t) return nn_err_set(err, NN_ERR_FORMAT, "%s: has no normnet metadata; pass the model spec (--model)", path);
  if ((st = nn_spec_parse(t, NN_CKPT_SPEC_KEY, out, err))) return nn_err_prefix(err, NN_ERR_FORMAT, "%s: ", path);
  return NN_OK;
}

nn_status nn_checkpoint_read_model(const nn_checkpoint *c, const nn_spec *spec, nn_model **out, nn_error *err) {
  if (!c || !out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_read_model: invalid arguments");
  *out = NULL;
  const char *path = nn_st_path(c->f);
  nn_spec *own = NULL;
  nn_model *m = NULL;
  nn_status st = check_format(c, err);
  if (st) return st;
  if (!spec) {
    if ((st = nn_checkpoint_read_spec(c, &own, err))) return st;
    spec = own;
  }
  if ((st = nn_model_create(spec, &m, err))) st = nn_err_prefix(err, own ? NN_ERR_FORMAT : st, "%s: ", path);
  if (!st) st = load_model_tensors(c, m, err);
  if (!st) {
    const char *rngs = nn_checkpoint_get(c, NN_CKPT_RNG_KEY);
    if (rngs) layer_rngs_restore(m, rngs);
    st = load_input(c, m, err);
  }
  nn_spec_free(own);
  if (st) {
    nn_model_free(m);
    return st;
  }
  *out = m;
  return NN_OK;
}

nn_status nn_checkpoint_read_weights(const nn_checkpoint *c, nn_model *m, nn_error *err) {
  if (!c || !m) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_read_weights: invalid arguments");
  /* into a scratch twin first, so that m is unchanged on any error */
  nn_model *t = NULL;
  nn_status st = nn_model_create(nn_model_spec(m), &t, err);
  if (!st) st = load_model_tensors(c, t, err);
  if (!st) {
    memcpy(m->params, t->params, m->nparams * sizeof *m->params);
    memcpy(m->state, t->state, m->nstate * sizeof *m->state);
    for (int i = 0; i < m->nlayers; i++) m->layers[i].batches_tracked = t->layers[i].batches_tracked;
  }
  nn_model_free(t);
  return st;
}

nn_status nn_checkpoint_read_optimizer(const nn_checkpoint *c, nn_model *m, nn_optimizer *opt, nn_error *err) {
  if (!c || !m || !opt) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_read_optimizer: invalid arguments");
  const char *path = nn_st_path(c->f), *steps = nn_checkpoint_get(c, NN_CKPT_STEPS_KEY);
  long n = -1;
  char *end = NULL;
  errno = 0;
  if (steps) n = strtol(steps, &end, 10);
  if (!steps || end == steps || *end || n < 0)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: no optimizer state (metadata '%s'); it was not saved for resuming", path,
                      NN_CKPT_STEPS_KEY);
  /* far beyond any training (a step a nanosecond for 11 days), and every count of steps,
   * samples or epochs derived from it stays in range */
  if (errno == ERANGE || n > NN_CKPT_MAX_STEPS)
    return nn_err_set(err, NN_ERR_FORMAT, "%s: metadata '%s' = %.32s steps is out of range (at most %lld)", path,
                      NN_CKPT_STEPS_KEY, steps, (long long)NN_CKPT_MAX_STEPS);
  nn_status fst = check_format(c, err);
  if (fst) return fst;
  int nt = nn_optimizer_num_tensors(opt, m);
  for (int i = 0; i < nt; i++) {
    nn_tensor_view v;
    nn_optimizer_tensor(opt, m, i, &v);
    const nn_st_entry *e = nn_st_find(c->f, v.name);
    if (!e)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: missing optimizer tensor '%s' (was it saved with another optimizer?)",
                        path, v.name);
    nn_status st = load_tensor(c, &v, e, err);
    if (st) return st;
  }
  nn_optimizer_set_steps(opt, n);
  return NN_OK;
}

/* ---- by path: open, one call, close ---------------------------------------------------- */

/* 1 if path is a zip or HDF5 file (by its first bytes): a Keras file, or a PyTorch zip the
 * Keras reader refuses with the conversion command; *kind says which. */
static int keras_kind(const char *path, nn_file_kind *kind) {
  *kind = NN_FILE_OTHER;
  return path && nn_file_kind_of(path, kind, NULL) == NN_OK && (*kind == NN_FILE_ZIP || *kind == NN_FILE_HDF5);
}

nn_status nn_checkpoint_load(const char *path, const nn_spec *spec, nn_model **out, nn_error *err) {
  nn_file_kind kind; /* a Keras .keras / .h5 / .weights.h5 (or a PyTorch zip) */
  if (out && keras_kind(path, &kind)) return nn_keras_load(path, kind, spec, out, err);
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_load: out is NULL");
  *out = NULL;
  nn_checkpoint *c = NULL;
  nn_status st = nn_checkpoint_open(path, &c, err);
  if (!st) st = nn_checkpoint_read_model(c, spec, out, err);
  nn_checkpoint_close(c);
  return st;
}

nn_status nn_checkpoint_load_spec(const char *path, nn_spec **out, nn_error *err) {
  if (!out) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_load_spec: out is NULL");
  *out = NULL;
  nn_file_kind kind;
  if (keras_kind(path, &kind)) return nn_keras_read_spec(path, kind, out, err);
  nn_checkpoint *c = NULL;
  nn_status st = nn_checkpoint_open(path, &c, err);
  if (!st) st = nn_checkpoint_read_spec(c, out, err);
  nn_checkpoint_close(c);
  return st;
}

nn_status nn_checkpoint_load_weights(const char *path, nn_model *m, nn_error *err) {
  nn_file_kind kind;
  if (m && keras_kind(path, &kind)) return nn_keras_load_into(path, kind, m, err);
  nn_checkpoint *c = NULL;
  nn_status st = nn_checkpoint_open(path, &c, err);
  if (!st) st = nn_checkpoint_read_weights(c, m, err);
  nn_checkpoint_close(c);
  return st;
}

nn_status nn_checkpoint_meta(const char *path, const char *key, char **value, nn_error *err) {
  if (!value) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_meta: value is NULL");
  *value = NULL;
  if (!path || !key) return nn_err_set(err, NN_ERR_ARG, "nn_checkpoint_meta: path or key is NULL");
  nn_checkpoint *c = NULL;
  nn_status st = nn_checkpoint_open(path, &c, err);
  const char *v = st ? NULL : nn_checkpoint_get(c, key);
  if (v && !(*value = strdup(v))) st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  nn_checkpoint_close(c);
  return st;
}

nn_status nn_checkpoint_load_optimizer(const char *path, nn_model *m, nn_optimizer *opt, nn_error *err) {
  nn_checkpoint *c = NULL;
  nn_status st = nn_checkpoint_open(path, &c, err);
  if (!st) st = nn_checkpoint_read_optimizer(c, m, opt, err);
  nn_checkpoint_close(c);
  return st;
}
