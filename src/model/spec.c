/* Spec structure operations: append, copy, free, and the normalization switch. */
#include "model/spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nn_status nn_spec_append(nn_spec *s, const nn_layer_spec *ls, nn_error *err) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    nn_layer_spec *l = realloc(s->layers, (size_t)cap * sizeof *l);
    if (!l) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", s->source);
    s->layers = l;
    s->cap = cap;
  }
  s->layers[s->n++] = *ls;
  return NN_OK;
}

nn_spec *nn_spec_copy(const nn_spec *s) {
  nn_spec *c = malloc(sizeof *c);
  if (!c) return NULL;
  *c = *s;
  c->cap = s->n ? s->n : 1;
  c->layers = malloc((size_t)c->cap * sizeof *c->layers);
  if (!c->layers) {
    free(c);
    return NULL;
  }
  if (s->n) memcpy(c->layers, s->layers, (size_t)s->n * sizeof *s->layers);
  return c;
}

void nn_spec_set_max_params(nn_spec *s, unsigned long long limit) { s->max_params = limit; }

void nn_spec_free(nn_spec *s) {
  if (!s) return;
  free(s->layers);
  free(s);
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

/* "1, 2, 4" : the group counts that divide every channel count whose gcd is g. */
static void divisors(int g, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int d = 1; d <= g && used < len; d++)
    if (g % d == 0) used += (size_t)snprintf(buf + used, len - used, "%s%d", used ? ", " : "", d);
}

/* Replace every batchnorm by the normalization `kind` (groupnorm with `groups` groups,
 * layernorm or instancenorm), with PyTorch's defaults. GroupNorm needs groups | channels:
 * a layer whose channels `groups` does not divide is an error naming it and the counts that
 * would fit every layer. */
static nn_status replace_bn(nn_spec *s, nn_layer_kind kind, int groups, nn_error *err) {
  nn_shape in = s->input;
  int common = 0; /* gcd of the normalized channel counts */
  for (int pass = 0; pass < 2 && kind == NN_LAYER_GROUPNORM; pass++) {
    nn_shape cur = s->input;
    for (int i = 0; i < s->n; i++) {
      nn_layer_spec *ls = &s->layers[i];
      if (ls->kind == NN_LAYER_BATCHNORM) {
        common = gcd(common, cur.c);
        if (pass == 1 && cur.c % groups) {
          char fit[128];
          divisors(common, fit, sizeof fit);
          return nn_err_set(err, NN_ERR_SHAPE,
                            "%s:%d: group:%d does not divide the %d channels of layer %d (batchnorm); GroupNorm needs "
                            "G to divide the channels of every normalized layer (here: %s)",
                            s->source, ls->line, groups, cur.c, i, fit);
        }
      }
      nn_shape out;
      char why[256];
      if (nn_layer_table[ls->kind]->shape(&ls->cfg, cur, &out, why, sizeof why))
        return nn_err_set(err, NN_ERR_SHAPE, "%s:%d: %s", s->source, ls->line, why);
      cur = out;
    }
  }
  for (int i = 0; i < s->n; i++) {
    nn_layer_spec *ls = &s->layers[i];
    if (ls->kind == NN_LAYER_BATCHNORM && kind == NN_LAYER_INSTANCENORM && in.rank != 3)
      return nn_err_set(err, NN_ERR_SHAPE,
                        "%s:%d: instance normalization needs CxHxW input, but layer %d (batchnorm) normalizes %d flat "
                        "features (after a dense layer); use layer or group:G for this model",
                        s->source, ls->line, i, in.c);
    if (ls->kind == NN_LAYER_BATCHNORM) {
      ls->kind = kind;
      nn_layer_table[kind]->defaults(&ls->cfg);
      if (kind == NN_LAYER_GROUPNORM) ls->cfg.gn.groups = groups;
    }
    nn_shape out;
    char why[256];
    if (nn_layer_table[ls->kind]->shape(&ls->cfg, in, &out, why, sizeof why))
      return nn_err_set(err, NN_ERR_SHAPE, "%s:%d: %s", s->source, ls->line, why);
    in = out;
  }
  return NN_OK;
}

nn_status nn_norm_parse(const char *norm, nn_norm_choice *out, nn_error *err) {
  *out = (nn_norm_choice){.kind = NN_NORM_BATCH, .groups = 0};
  if (strcmp(norm, "batch") == 0) return NN_OK;
  if (strcmp(norm, "layer") == 0) out->kind = NN_NORM_LAYER;
  else if (strcmp(norm, "instance") == 0) out->kind = NN_NORM_INSTANCE;
  else if (strcmp(norm, "none") == 0) out->kind = NN_NORM_NONE;
  else if (strncmp(norm, "group:", 6) == 0) {
    char *end;
    long g = strtol(norm + 6, &end, 10);
    if (*end || g < 1 || g > 1 << 20)
      return nn_err_set(err, NN_ERR_ARG, "bad normalization '%s' (expected group:G with G >= 1)", norm);
    out->kind = NN_NORM_GROUP, out->groups = (int)g;
  } else
    return nn_err_set(err, NN_ERR_ARG, "unknown normalization '%s' (expected batch, group:G, layer, instance or none)", norm);
  return NN_OK;
}

nn_status nn_norm_spelling_parse(const char *text, nn_norm_choice *norm, int *placement, nn_error *err) {
  *placement = -1;
  const char *at = strchr(text, '@');
  size_t n = at ? (size_t)(at - text) : strlen(text);
  char kind[64];
  if (n >= sizeof kind) return nn_err_set(err, NN_ERR_ARG, "unknown normalization '%.40s...'", text);
  memcpy(kind, text, n);
  kind[n] = 0;
  nn_status st = nn_norm_parse(kind, norm, err);
  nn_bn_placement p = NN_BN_BEFORE_ACTIVATION;
  if (!st && at && norm->kind == NN_NORM_NONE)
    st = nn_err_set(err, NN_ERR_ARG, "'%s': no normalization has no placement (give none alone)", text);
  if (!st && at) st = nn_bn_placement_parse(at + 1, &p, err);
  if (at) *placement = (int)p;
  return st;
}

nn_status nn_spec_set_norm(nn_spec *s, const char *norm, nn_error *err) {
  nn_norm_choice c;
  int placement;
  nn_status st = nn_norm_spelling_parse(norm, &c, &placement, err);
  if (!st) st = nn_spec_apply_norm(s, c, err);
  if (!st && placement >= 0) nn_spec_apply_bn_placement(s, (nn_bn_placement)placement);
  return st;
}

nn_status nn_spec_apply_norm(nn_spec *s, nn_norm_choice norm, nn_error *err) {
  switch (norm.kind) {
    case NN_NORM_BATCH: return NN_OK;
    case NN_NORM_LAYER: return replace_bn(s, NN_LAYER_LAYERNORM, 0, err);
    case NN_NORM_INSTANCE: return replace_bn(s, NN_LAYER_INSTANCENORM, 0, err);
    case NN_NORM_GROUP:
      if (norm.groups < 1) return nn_err_set(err, NN_ERR_ARG, "group normalization needs groups >= 1, got %d", norm.groups);
      return replace_bn(s, NN_LAYER_GROUPNORM, norm.groups, err);
    case NN_NORM_NONE: break;
    default: return nn_err_set(err, NN_ERR_ARG, "normalization kind %d is none of nn_norm_kind's", (int)norm.kind);
  }
  int out = 0;
  for (int i = 0; i < s->n; i++) {
    nn_layer_spec *ls = &s->layers[i];
    if (!nn_layer_kind_is_norm(ls->kind)) {
      s->layers[out++] = *ls;
      continue;
    }
    /* The twin without normalization: the layer before gets back its bias. */
    if (out > 0) {
      nn_layer_spec *prev = &s->layers[out - 1];
      if (prev->kind == NN_LAYER_DENSE) prev->cfg.dense.bias = 1;
      if (prev->kind == NN_LAYER_CONV2D) prev->cfg.conv.bias = 1;
    }
  }
  s->n = out;
  return NN_OK;
}

void nn_spec_freeze_bn(nn_spec *s) {
  for (int i = 0; i < s->n; i++)
    if (s->layers[i].kind == NN_LAYER_BATCHNORM && s->layers[i].cfg.bn.track_running_stats)
      s->layers[i].cfg.bn.use_global_stats = 1, s->layers[i].cfg.bn.freeze_affine = 1;
}

nn_status nn_bn_placement_parse(const char *text, nn_bn_placement *out, nn_error *err) {
  if (!strcmp(text, "before")) *out = NN_BN_BEFORE_ACTIVATION;
  else if (!strcmp(text, "after")) *out = NN_BN_AFTER_ACTIVATION;
  else return nn_err_set(err, NN_ERR_ARG, "unknown BN placement '%s' (expected before or after)", text);
  return NN_OK;
}

nn_status nn_spec_set_bn_placement(nn_spec *s, const char *placement, nn_error *err) {
  nn_bn_placement p;
  nn_status st = nn_bn_placement_parse(placement, &p, err);
  if (!st) nn_spec_apply_bn_placement(s, p);
  return st;
}

void nn_spec_apply_bn_placement(nn_spec *s, nn_bn_placement placement) {
  int after = placement == NN_BN_AFTER_ACTIVATION;
  /* swap each (norm, activation) pair into (activation, norm), or back */
  for (int i = 0; i + 1 < s->n; i++) {
    nn_layer_spec *a = &s->layers[i], *b = &s->layers[i + 1];
    int swap = after ? nn_layer_kind_is_norm(a->kind) && nn_layer_kind_is_activation(b->kind) : nn_layer_kind_is_activation(a->kind) && nn_layer_kind_is_norm(b->kind);
    if (!swap) continue;
    nn_layer_spec t = *a;
    *a = *b, *b = t;
    int line = a->line;
    a->line = b->line, b->line = line; /* lines stay in order */
    i++;
  }
}
