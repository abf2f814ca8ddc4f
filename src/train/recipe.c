/* A run's recipe: a preset's values, then overrides by key ("lr" = "0.05"). One table maps
 * every key to its field, its parser (with the accepted range) and its printer, so that the
 * command line's overrides and the checkpoint's record of the recipe are the same text. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "model/spec.h"
#include "train/fit.h"

nn_recipe nn_recipe_default(const nn_preset *p) {
  nn_recipe r;
  memset(&r, 0, sizeof r);
  snprintf(r.model, sizeof r.model, "%s", p ? p->name : "");
  snprintf(r.norm, sizeof r.norm, "batch");
  /* the data set the preset was made for; a CIFAR preset has none (cifar10:DIR must be given) */
  snprintf(r.data, sizeof r.data, "%s", !p ? "fashion-mnist" : p->data ? p->data
                                                                       : "");
  r.init = p ? p->init : NN_INIT_DEFAULT;
  r.opt = p ? p->opt : nn_opt_defaults(NN_OPT_ADAM);
  r.batch_size = p ? p->batch_size : 32;
  r.epochs = p ? p->epochs : 10;
  r.input_norm = p ? p->input_norm : (nn_input_norm){0.0f, 1.0f};
  r.seed = 42;
  r.shuffle = 1;
  r.lr_schedule = (nn_lr_schedule){.kind = NN_LR_CONSTANT, .gamma = 1.0};
  r.accumulate = 1;
  r.divergence_factor = 1e4f;
  r.sync_bn = 1;
  return r;
}

enum { K_TEXT,
       K_BOOL,
       K_INT,
       K_LONG,
       K_FLOAT,
       K_U64,
       K_OPT,
       K_INIT,
       K_NORM,
       K_PLACE,
       K_AUG,
       K_SPLIT,
       K_INORM,
       K_SCHED,
       K_WARMUP,
       K_EARLY };
static const struct {
  const char *key;
  int type;
  size_t offset, size; /* size: of text fields */
  double min, max;     /* numbers */
} keys[] = {
#define F(field) offsetof(nn_recipe, field), sizeof(((nn_recipe *)0)->field)
    {"model", K_TEXT, F(model), 0, 0},
    {"norm", K_NORM, F(norm), 0, 0},
    {"bn-placement", K_PLACE, F(bn_placement), 0, 0},
    {"freeze-bn", K_BOOL, F(freeze_bn), 0, 1},
    {"init", K_INIT, F(init), 0, 0},
    {"init-from", K_TEXT, F(init_from), 0, 0},
    {"optimizer", K_OPT, F(opt.kind), 0, 0},
    {"lr", K_FLOAT, F(opt.lr), 1e-12, 1e6},
    {"momentum", K_FLOAT, F(opt.momentum), 0, 0.999999},
    {"nesterov", K_BOOL, F(opt.nesterov), 0, 1},
    {"weight-decay", K_FLOAT, F(opt.weight_decay), 0, 1e3},
    {"beta1", K_FLOAT, F(opt.beta1), 0, 0.999999},
    {"beta2", K_FLOAT, F(opt.beta2), 0, 0.999999},
    {"adam-eps", K_FLOAT, F(opt.eps), 0, 1},
    {"keras-eps", K_BOOL, F(opt.keras_eps), 0, 1},
    {"batch", K_INT, F(batch_size), 1, 1 << 20},
    {"epochs", K_INT, F(epochs), 1, 1000000},
    {"max-steps", K_LONG, F(max_steps), 0, 2000000000},
    {"seed", K_U64, F(seed), 0, 0},
    {"shuffle", K_BOOL, F(shuffle), 0, 1},
    {"drop-last", K_BOOL, F(drop_last), 0, 1},
    {"input-norm", K_INORM, F(input_norm), 0, 0},
    {"augment", K_AUG, F(augment), 0, 0},
    {"val-split", K_SPLIT, F(val_split), 1e-6, 0.999999},
    {"data", K_TEXT, F(data), 0, 0},
    {"lr-schedule", K_SCHED, F(lr_schedule), 0, 0},
    {"warmup", K_WARMUP, F(lr_schedule.warmup), 0, 2000000000},
    {"accumulate", K_INT, F(accumulate), 1, 1000000},
    {"early-stop", K_EARLY, F(early_stop), 0, 0},
    {"divergence-factor", K_FLOAT, F(divergence_factor), 0, 1e30},
    {"nan-check", K_BOOL, F(nan_check), 0, 1},
    {"sync-bn", K_BOOL, F(sync_bn), 0, 1},
#undef F
};
#define NKEYS (int)(sizeof keys / sizeof keys[0])

int nn_recipe_num_keys(void) { return NKEYS; }

nn_status nn_recipe_check(const nn_recipe *r, nn_error *err) {
  if (!r->data[0])
    return nn_err_set(err, NN_ERR_ARG,
                      "no data source for %s: give --data SOURCE; the CIFAR presets need --data cifar10:DIR, DIR "
                      "holding data_batch_1.bin ... test_batch.bin of the binary version from "
                      "https://www.cs.toronto.edu/~kriz/cifar.html (see the README, Data)",
                      r->model[0] ? r->model : "the model");
  const char *kind = nn_opt_kind_name(r->opt.kind);
  if (r->opt.kind != NN_OPT_SGD && r->opt.momentum > 0)
    return nn_err_set(err, NN_ERR_ARG,
                      "momentum %g is an SGD setting, but the optimizer is %s, which would ignore it (its beta1 plays "
                      "that role): drop --momentum or use --optimizer sgd",
                      r->opt.momentum, kind);
  if (r->opt.kind != NN_OPT_SGD && r->opt.nesterov)
    return nn_err_set(err, NN_ERR_ARG, "nesterov is an SGD setting, but the optimizer is %s: drop --nesterov", kind);
  if (r->freeze_bn && !r->init_from[0])
    return nn_err_set(err, NN_ERR_ARG,
                      "freeze-bn freezes trained BN statistics, but the weights start from scratch (init %s): give "
                      "--init CHECKPOINT|RUNDIR to fine-tune, or drop --freeze-bn",
                      r->init == NN_INIT_XAVIER_UNIFORM ? "xavier" : "default");
  if (r->lr_schedule.kind == NN_LR_ONECYCLE && r->lr_schedule.warmup > 0)
    return nn_err_set(err, NN_ERR_ARG, "onecycle has its own warm-up: drop the warmup of %ld steps",
                      r->lr_schedule.warmup);
  if (r->accumulate < 1) return nn_err_set(err, NN_ERR_ARG, "accumulate must be >= 1, got %d", r->accumulate);
  return NN_OK;
}

int nn_recipe_key_has_default(const char *key) {
  return !strcmp(key, "lr-schedule") || !strcmp(key, "warmup") || !strcmp(key, "accumulate") ||
         !strcmp(key, "early-stop") || !strcmp(key, "divergence-factor") || !strcmp(key, "nan-check") ||
         !strcmp(key, "sync-bn");
}
const char *nn_recipe_key(int k) { return k >= 0 && k < NKEYS ? keys[k].key : NULL; }

static int find(const char *key) {
  for (int k = 0; k < NKEYS; k++)
    if (!strcmp(keys[k].key, key)) return k;
  return -1;
}

void nn_recipe_get(const nn_recipe *r, int k, char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)r + keys[k].offset;
  int i;
  long l;
  float f;
  uint64_t u;
  nn_init in;
  nn_opt_kind ok;
  switch (keys[k].type) {
    case K_BOOL:
    case K_INT: memcpy(&i, p, sizeof i), snprintf(buf, len, "%d", i); break;
    case K_LONG: memcpy(&l, p, sizeof l), snprintf(buf, len, "%ld", l); break;
    case K_FLOAT:
    case K_SPLIT: memcpy(&f, p, sizeof f), nn_fmt_float(buf, len, f); break;
    case K_U64: memcpy(&u, p, sizeof u), snprintf(buf, len, "%llu", (unsigned long long)u); break;
    case K_OPT: memcpy(&ok, p, sizeof ok), snprintf(buf, len, "%s", nn_opt_kind_name(ok)); break;
    case K_INIT: memcpy(&in, p, sizeof in), snprintf(buf, len, "%s", in == NN_INIT_XAVIER_UNIFORM ? "xavier" : "default"); break;
    case K_INORM: {
      char m[32], sd[32];
      snprintf(buf, len, "%s,%s", nn_fmt_float(m, sizeof m, r->input_norm.mean),
               nn_fmt_float(sd, sizeof sd, r->input_norm.std));
      break;
    }
    case K_SCHED: nn_lr_schedule_format(&r->lr_schedule, buf, len); break;
    case K_WARMUP: snprintf(buf, len, "%ld", r->lr_schedule.warmup); break;
    case K_EARLY: {
      char d[32];
      snprintf(buf, len, "%d:%s", r->early_stop, nn_fmt_double(d, sizeof d, r->early_stop_delta));
      break;
    }
    default: snprintf(buf, len, "%s", (const char *)p);
  }
}

static nn_status number(const char *key, const char *v, double min, double max, int integer, double *out,
                        nn_error *err) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  /* an integer in decimal digits, as the CLI's own options take them (strtod also reads
   * 0x10, 1e1 and 16.0) */
  const size_t sign = v[0] == '-' || v[0] == '+';
  const int digits = !integer || (v[sign] && !v[sign + strspn(v + sign, "0123456789")]);
  if (errno || end == v || *end || !digits || !isfinite(d) || d < min || d > max || (integer && d != floor(d))) {
    if (integer)
      return nn_err_set(err, NN_ERR_ARG, "%s: expected an integer in [%.0f, %.0f], got '%s'", key, min, max, v);
    return nn_err_set(err, NN_ERR_ARG, "%s: expected a number in [%g, %g], got '%s'", key, min, max, v);
  }
  *out = d;
  return NN_OK;
}

nn_status nn_recipe_set(nn_recipe *r, const char *key, const char *v, nn_error *err) {
  if (!r || !key || !v) return nn_err_set(err, NN_ERR_ARG, "nn_recipe_set: invalid arguments");
  int k = find(key);
  if (k < 0) return nn_err_set(err, NN_ERR_ARG, "recipe: unknown key '%s'", key);
  unsigned char *p = (unsigned char *)r + keys[k].offset;
  double d = 0;
  nn_status st = NN_OK;
  switch (keys[k].type) {
    case K_BOOL:
    case K_INT: {
      if (!(st = number(key, v, keys[k].min, keys[k].max, 1, &d, err))) {
        int i = (int)d;
        memcpy(p, &i, sizeof i);
      }
      return st;
    }
    case K_SCHED: {
      nn_lr_schedule s;
      if ((st = nn_lr_schedule_parse(v, r->lr_schedule.warmup, &s, err))) return nn_err_prefix(err, st, "%s: ", key);
      r->lr_schedule = s;
      return NN_OK;
    }
    case K_EARLY: {
      char *end;
      errno = 0;
      long pat = strtol(v, &end, 10);
      double delta = 0;
      int bad = end == v;
      if (*end == ':') {
        const char *dv = end + 1;
        delta = strtod(dv, &end);
        bad |= end == dv;
      }
      if (bad || errno || *end || pat < 0 || pat > 1000000 || !(delta >= 0) || !isfinite(delta))
        return nn_err_set(err, NN_ERR_ARG, "%s: expected PATIENCE[:MIN_DELTA] (epochs >= 1, delta >= 0; 0: off), got '%s'",
                          key, v);
      r->early_stop = (int)pat;
      r->early_stop_delta = delta;
      return NN_OK;
    }
    case K_WARMUP:
      if ((st = number(key, v, keys[k].min, keys[k].max, 1, &d, err))) return st;
      if (d > 0 && r->lr_schedule.kind == NN_LR_ONECYCLE)
        return nn_err_set(err, NN_ERR_ARG, "%s: onecycle has its own warm-up (30%% of the steps); drop the warmup of %g",
                          key, d);
      r->lr_schedule.warmup = (long)d;
      return NN_OK;
    case K_LONG: {
      if (!(st = number(key, v, keys[k].min, keys[k].max, 1, &d, err))) {
        long l = (long)d;
        memcpy(p, &l, sizeof l);
      }
      return st;
    }
    case K_FLOAT:
    case K_SPLIT: {
      if (keys[k].type == K_SPLIT && !strcmp(v, "0")) d = 0; /* no validation split */
      else if ((st = number(key, v, keys[k].min, keys[k].max, 0, &d, err))) return st;
      float f = (float)d;
      memcpy(p, &f, sizeof f);
      return NN_OK;
    }
    case K_U64: {
      char *end;
      errno = 0;
      unsigned long long u = strtoull(v, &end, 10);
      if (errno || end == v || *end || v[0] == '-')
        return nn_err_set(err, NN_ERR_ARG, "%s: expected a non-negative integer, got '%s'", key, v);
      r->seed = u;
      return NN_OK;
    }
    case K_OPT: {
      int kind = nn_opt_kind_parse(v);
      if (kind < 0) return nn_err_set(err, NN_ERR_ARG, "%s: unknown '%s' (expected sgd, adam or adamw)", key, v);
      /* another kind starts from that kind's defaults */
      if (kind != (int)r->opt.kind) r->opt = nn_opt_defaults((nn_opt_kind)kind);
      return NN_OK;
    }
    case K_INIT:
      if (!strcmp(v, "default")) r->init = NN_INIT_DEFAULT;
      else if (!strcmp(v, "xavier")) r->init = NN_INIT_XAVIER_UNIFORM;
      else return nn_err_set(err, NN_ERR_ARG, "%s: expected default or xavier, got '%s'", key, v);
      return NN_OK;
    case K_PLACE:
      if (*v && strcmp(v, "before") && strcmp(v, "after"))
        return nn_err_set(err, NN_ERR_ARG, "%s: expected before or after, got '%s'", key, v);
      break;
    case K_AUG:
      if (*v) {
        nn_augment a;
        if ((st = nn_augment_parse(v, &a, err))) return nn_err_prefix(err, st, "%s: ", key);
      }
      break;
    case K_NORM: { /* its spelling here; against the spec it applies to, by nn_run_create */
      if (!*v) return nn_err_set(err, NN_ERR_ARG, "%s: empty", key);
      nn_norm_choice nc;
      int placement;
      if ((st = nn_norm_spelling_parse(v, &nc, &placement, err))) return nn_err_prefix(err, st, "%s: ", key);
      break;
    }
    case K_INORM: {
      nn_input_norm n;
      int used = 0;
      if (sscanf(v, "%f,%f%n", &n.mean, &n.std, &used) != 2 || v[used])
        return nn_err_set(err, NN_ERR_ARG, "%s: expected MEAN,STD, got '%s'", key, v);
      if (nn_input_norm_check(n, err)) return nn_err_prefix(err, NN_ERR_ARG, "%s: ", key);
      r->input_norm = n;
      return NN_OK;
    }
    default: /* text; "" data means none given (a CIFAR preset's default), refused by nn_recipe_check */
      break;
  }
  if (strlen(v) >= keys[k].size) return nn_err_set(err, NN_ERR_ARG, "%s: '%.40s...' is too long", key, v);
  memset(p, 0, keys[k].size); /* the whole field: a shorter text leaves no tail of the old one */
  memcpy(p, v, strlen(v) + 1);
  return NN_OK;
}
