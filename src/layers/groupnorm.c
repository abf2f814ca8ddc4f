/* groupnorm, layernorm, instancenorm: PyTorch nn.GroupNorm, nn.LayerNorm and
 * nn.InstanceNorm2d on one kernel (kernels/kernels.h, ARCHITECTURE.md §4 last bullet): every
 * (sample, group) is normalized over its own values with the BIASED variance, eps inside
 * the square root, then an affine.
 *
 *   groupnorm groups=G eps=1e-5 affine=1   nn.GroupNorm(G, C): C/G channels per group,
 *       per-channel weight/bias [C]; input C or CxHxW, C divisible by G.
 *   layernorm eps=1e-5 affine=1            nn.LayerNorm(normalized_shape = the whole sample:
 *       [C] or [C,H,W]), elementwise weight/bias of that shape ("i.weight" [C,H,W]).
 *   instancenorm eps=1e-5 affine=0 track_running_stats=0 momentum=0.1
 *       nn.InstanceNorm2d(C): one group per channel, input CxHxW, weight/bias [C].
 *       With track_running_stats, training updates running_mean/var per channel from the
 *       batch average of the per-instance mean and UNBIASED per-instance variance (what
 *       PyTorch's instance_norm does through batch_norm on a (1, N*C, H, W) view), and eval
 *       normalizes with the running statistics. num_batches_tracked is kept in the state
 *       dict but, as in PyTorch, never incremented. A non-finite update is skipped and
 *       counted (ARCHITECTURE.md §4), as for batchnorm.
 * Normalizing with instance statistics needs more than 1 spatial element (PyTorch's check).
 * None of the three has a train/eval difference otherwise.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

typedef nn_groupnorm_cfg gn_cfg;

static gn_cfg cfg_get(const nn_layer_cfg *c) { return c->gn; }
static void cfg_put(nn_layer_cfg *c, const gn_cfg *g) { c->gn = *g; }

#define GN_KEY(name, type, field, lo, hi, req) \
  { name, type, offsetof(nn_layer_cfg, gn.field), lo, hi, req }

enum { GK_GROUPS,
       GK_EPS,
       GK_AFFINE };
static const nn_key gn_keys[] = {
    [GK_GROUPS] = GN_KEY("groups", NN_KEY_INT, groups, 1, 1 << 24, 1),
    [GK_EPS] = GN_KEY("eps", NN_KEY_DOUBLE, eps, 0, 1, 0),
    [GK_AFFINE] = GN_KEY("affine", NN_KEY_BOOL, affine, 0, 1, 0),
    {0},
};

static const nn_key ln_keys[] = {
    GN_KEY("eps", NN_KEY_DOUBLE, eps, 0, 1, 0),
    GN_KEY("affine", NN_KEY_BOOL, affine, 0, 1, 0),
    {0},
};

static const nn_key in_keys[] = {
    GN_KEY("eps", NN_KEY_DOUBLE, eps, 0, 1, 0),
    GN_KEY("affine", NN_KEY_BOOL, affine, 0, 1, 0),
    GN_KEY("track_running_stats", NN_KEY_BOOL, track_running_stats, 0, 1, 0),
    GN_KEY("momentum", NN_KEY_DOUBLE, momentum, 0, 1, 0),
    {0},
};

/* PyTorch's defaults: GroupNorm/LayerNorm affine on, InstanceNorm affine off. */
static void gn_defaults(nn_layer_cfg *c) {
  gn_cfg g = {.eps = 1e-5, .momentum = 0.1, .groups = 1, .affine = 1, .track_running_stats = 0};
  cfg_put(c, &g);
}

static void in_defaults(nn_layer_cfg *c) {
  gn_cfg g = {.eps = 1e-5, .momentum = 0.1, .groups = 1, .affine = 0, .track_running_stats = 0};
  cfg_put(c, &g);
}

static nn_status finalize(nn_layer_cfg *c, unsigned given, nn_error *err) {
  (void)given;
  gn_cfg g = cfg_get(c);
  if (!(g.eps > 0)) return nn_err_set(err, NN_ERR_SPEC, "eps must be > 0, got %g", g.eps);
  return NN_OK;
}

/* ---- per-kind geometry: groups and affine kind ------------------------------------------- */

static int num_groups(const nn_layer *L) {
  switch (L->kind) {
    case NN_LAYER_GROUPNORM:
      return cfg_get(&L->cfg).groups;
    case NN_LAYER_INSTANCENORM:
      return L->in.c;
    default:
      return 1;
  }
}

static nn_gn_affine affine_kind(const nn_layer *L) {
  if (!cfg_get(&L->cfg).affine) return NN_GN_AFFINE_NONE;
  return L->kind == NN_LAYER_LAYERNORM ? NN_GN_AFFINE_ELEMENT : NN_GN_AFFINE_CHANNEL;
}

static int track(const nn_layer *L) {
  return L->kind == NN_LAYER_INSTANCENORM && cfg_get(&L->cfg).track_running_stats;
}

/* ---- shape rules ------------------------------------------------------------------------- */

static int gn_shape(const nn_layer_cfg *cfg, nn_shape in, nn_shape *out, char *why, size_t whylen) {
  gn_cfg g = cfg_get(cfg);
  if (in.c % g.groups != 0) {
    snprintf(why, whylen, "the %d input channels are not divisible by groups=%d", in.c, g.groups);
    return -1;
  }
  *out = in;
  return 0;
}

static int in_shape(const nn_layer_cfg *cfg, nn_shape in, nn_shape *out, char *why, size_t whylen) {
  (void)cfg;
  if (in.rank != 3) {
    char shp[64];
    nn_shape_format(in, shp, sizeof shp);
    snprintf(why, whylen, "instancenorm (InstanceNorm2d) needs CxHxW input, got flat input %s", shp);
    return -1;
  }
  *out = in;
  return 0;
}

/* ---- declarations, scratch, init --------------------------------------------------------- */

static void declare(nn_layer *L) {
  const gn_cfg g = cfg_get(&L->cfg);
  const int c = L->in.c;
  nn_tensor_decl w = {"weight", 1, {c}, (size_t)c, 0, 1};
  if (L->kind == NN_LAYER_LAYERNORM && L->in.rank == 3)
    w = (nn_tensor_decl){"weight", 3, {c, L->in.h, L->in.w}, nn_shape_size(L->in), 0, 1};
  L->nparam = g.affine ? 2 : 0;
  L->param[0] = w;
  L->param[1] = w;
  L->param[1].suffix = "bias";
  const int t = track(L);
  L->nstate = t ? 2 : 0;
  L->state[0] = (nn_tensor_decl){"running_mean", 1, {c}, (size_t)c, 0, 0};
  L->state[1] = (nn_tensor_decl){"running_var", 1, {c}, (size_t)c, 0, 0};
  L->has_batches_tracked = t;
}

/* The kernels' geometry of a batch of n. */
static nn_norm_geom geom(const nn_layer *L, int n) {
  return (nn_norm_geom){.n = n, .c = L->in.c, .s = L->in.h * L->in.w, .groups = num_groups(L), .affine = affine_kind(L), .eps = (float)cfg_get(&L->cfg).eps};
}

/* scratch per (sample, group): mean, invstd, biased var, then the backward workspace */
static size_t scratch(const nn_layer *L, int n) {
  const nn_norm_geom g = geom(L, n);
  return 3 * (size_t)n * (size_t)g.groups + nn_groupnorm_workspace(&g);
}

static void init(nn_layer *L, nn_init init, nn_rng *rng) {
  (void)init, (void)rng;
  if (L->nparam) {
    const size_t cnt = L->param[0].count;
    float *w = nn_param_ptr(L, L->p, 0), *b = nn_param_ptr(L, L->p, 1);
    for (size_t i = 0; i < cnt; i++) w[i] = 1.0f, b[i] = 0.0f;
  }
  if (L->nstate)
    for (int i = 0; i < L->in.c; i++) nn_state_ptr(L, 0)[i] = 0.0f, nn_state_ptr(L, 1)[i] = 1.0f;
  L->batches_tracked = 0;
  L->skipped_updates = 0;
}

/* ---- forward / backward ------------------------------------------------------------------ */

static int uses_input_stats(const nn_layer *L, nn_mode mode) { return !track(L) || mode == NN_MODE_TRAIN; }

static nn_status forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  const gn_cfg g = cfg_get(&L->cfg);
  const nn_norm_geom geo = geom(L, n);
  const int s = geo.s;
  const size_t ng = (size_t)n * (size_t)geo.groups;
  const float *gamma = g.affine ? nn_param_ptr(L, L->p, 0) : NULL;
  const float *beta = g.affine ? nn_param_ptr(L, L->p, 1) : NULL;
  float *mean = L->scratch, *invstd = mean + ng, *var = invstd + ng;
  if (!uses_input_stats(L, mode)) {
    nn_bn_forward_infer(&geo, x, gamma, beta, nn_state_ptr(L, 0), nn_state_ptr(L, 1), y);
    return NN_OK;
  }
  if (L->kind == NN_LAYER_INSTANCENORM && s < 2) {
    char name[96], shp[64];
    nn_layer_name(L, name, sizeof name);
    nn_shape_format(L->in, shp, sizeof shp);
    return nn_err_set(err, NN_ERR_BATCH,
                      "%s: instance statistics need more than 1 spatial element, got input (%d, %s)%s", name, n,
                      shp, track(L) ? "; eval mode uses the running statistics" : "");
  }
  nn_groupnorm_forward(&geo, x, gamma, beta, y, mean, var, invstd);
  if (mode == NN_MODE_TRAIN && track(L)) {
    if (!nn_instnorm_running_update(&geo, nn_state_ptr(L, 0), nn_state_ptr(L, 1), mean, var, g.momentum))
      L->skipped_updates++;
  }
  return NN_OK;
}

static void backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)y;
  const gn_cfg g = cfg_get(&L->cfg);
  const nn_norm_geom geo = geom(L, n);
  const size_t ng = (size_t)n * (size_t)geo.groups;
  const float *gamma = g.affine ? nn_param_ptr(L, L->p, 0) : NULL;
  float *dgamma = g.affine ? nn_param_ptr(L, L->g, 0) : NULL;
  float *dbeta = g.affine ? nn_param_ptr(L, L->g, 1) : NULL;
  if (!uses_input_stats(L, mode)) {
    nn_bn_backward_infer(&geo, x, gamma, nn_state_ptr(L, 0), nn_state_ptr(L, 1), dy, dx, dgamma, dbeta);
    return;
  }
  const float *mean = L->scratch, *invstd = mean + ng;
  float *ws = L->scratch + 3 * ng;
  nn_groupnorm_backward(&geo, x, gamma, mean, invstd, dy, dx, dgamma, dbeta, ws);
}

/* ---- describe ---------------------------------------------------------------------------- */

static void describe(const nn_layer *L, char *buf, size_t len) {
  const gn_cfg g = cfg_get(&L->cfg);
  char shp[64];
  nn_shape_format(L->in, shp, sizeof shp);
  switch (L->kind) {
    case NN_LAYER_GROUPNORM:
      snprintf(buf, len, "%d groups of %d channels, eps=%g%s", g.groups, L->in.c / g.groups, g.eps,
               g.affine ? "" : " affine=0");
      break;
    case NN_LAYER_LAYERNORM:
      snprintf(buf, len, "over %s, eps=%g%s", shp, g.eps, g.affine ? " elementwise affine" : " affine=0");
      break;
    default:
      if (g.track_running_stats)
        snprintf(buf, len, "eps=%g%s track_running_stats momentum=%g", g.eps, g.affine ? " affine" : "", g.momentum);
      else
        snprintf(buf, len, "eps=%g%s", g.eps, g.affine ? " affine" : "");
      break;
  }
}

const nn_layer_ops nn_groupnorm_ops = {
    .name = "groupnorm",
    .keys = gn_keys,
    .defaults = gn_defaults,
    .finalize = finalize,
    .shape = gn_shape,
    .declare = declare,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
const nn_layer_ops nn_layernorm_ops = {
    .name = "layernorm",
    .keys = ln_keys,
    .defaults = gn_defaults,
    .finalize = finalize,
    .shape = nn_layer_same_shape,
    .declare = declare,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
const nn_layer_ops nn_instancenorm_ops = {
    .name = "instancenorm",
    .keys = in_keys,
    .defaults = in_defaults,
    .finalize = finalize,
    .shape = in_shape,
    .declare = declare,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
