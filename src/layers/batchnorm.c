/* batchnorm: PyTorch BatchNorm1d (input C) / BatchNorm2d (input CxHxW), ARCHITECTURE.md §4.
 *
 * Training (and whenever track_running_stats is off): normalize with the batch mean and
 * BIASED variance; running_mean/var then move by `momentum` towards the batch statistics,
 * with the UNBIASED variance (PyTorch) or the biased one (Keras convention).
 * Eval: normalize with the running statistics.
 * Frozen (use_global_stats): running statistics in training too, never updated;
 * freeze_affine keeps gamma/beta fixed; scale=0 (center=0) keeps gamma at 1 (beta at 0),
 * Keras's BatchNormalization(scale=False) (center=False): the tensor is kept, never trained. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "layers/layer.h"

enum { K_MOMENTUM,
       K_EPS,
       K_AFFINE,
       K_TRACK,
       K_CONVENTION,
       K_GLOBAL,
       K_FREEZE,
       K_CENTER,
       K_SCALE };
static const nn_key keys[] = {
    [K_MOMENTUM] = {"momentum", NN_KEY_MOMENTUM, offsetof(nn_layer_cfg, bn.momentum), 0, 1, 0},
    [K_EPS] = {"eps", NN_KEY_DOUBLE, offsetof(nn_layer_cfg, bn.eps), 0, 1, 0},
    [K_AFFINE] = {"affine", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.affine), 0, 1, 0},
    [K_TRACK] = {"track_running_stats", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.track_running_stats), 0, 1, 0},
    [K_CONVENTION] = {"convention", NN_KEY_CONVENTION, offsetof(nn_layer_cfg, bn.convention), 0, 1, 0},
    [K_GLOBAL] = {"use_global_stats", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.use_global_stats), 0, 1, 0},
    [K_FREEZE] = {"freeze_affine", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.freeze_affine), 0, 1, 0},
    [K_CENTER] = {"center", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.center), 0, 1, 0},
    [K_SCALE] = {"scale", NN_KEY_BOOL, offsetof(nn_layer_cfg, bn.scale), 0, 1, 0},
    {0},
};

static void defaults(nn_layer_cfg *c) {
  c->bn = (nn_bn_cfg){.convention = NN_BN_PYTORCH, .momentum = 0.1, .eps = 1e-5, .affine = 1, .track_running_stats = 1, .use_global_stats = 0, .freeze_affine = 0, .center = 1, .scale = 1};
}

/* The Keras convention changes the defaults: momentum 0.99 (weight of the old value), eps 1e-3. */
static nn_status finalize(nn_layer_cfg *c, unsigned given, nn_error *err) {
  nn_bn_cfg *b = &c->bn;
  if (b->convention == NN_BN_KERAS) {
    if (!(given & (1u << K_MOMENTUM))) b->momentum = 0.99;
    if (!(given & (1u << K_EPS))) b->eps = 1e-3;
  }
  if (!(b->eps > 0)) return nn_err_set(err, NN_ERR_SPEC, "eps must be > 0, got %g", b->eps);
  /* The classic porting mistake: Keras's momentum=0.99 read as PyTorch's (weight of the new
   * batch), which freezes the running statistics near their start. Allowed when the
   * PyTorch convention is written out. */
  if (b->convention == NN_BN_PYTORCH && !(given & (1u << K_CONVENTION)) && b->momentum > 0.5)
    return nn_err_set(err, NN_ERR_SPEC,
                      "momentum=%g under the PyTorch convention weights the NEW batch by %g (Keras's momentum "
                      "weights the OLD value): write convention=keras for Keras's meaning, momentum=%g for "
                      "PyTorch's, or convention=pytorch to keep it",
                      b->momentum, b->momentum, 1.0 - b->momentum);
  if (!b->affine && (!b->center || !b->scale))
    return nn_err_set(err, NN_ERR_SPEC, "center=0 and scale=0 keep affine=1's beta or gamma fixed; affine=0 has neither");
  if (b->use_global_stats && !b->track_running_stats)
    return nn_err_set(err, NN_ERR_SPEC, "use_global_stats=1 needs track_running_stats=1 (there are no running statistics)");
  return NN_OK;
}

/* Weight of the new batch in the running average for this update. */
static double new_weight(const nn_layer *L) {
  const nn_bn_cfg *b = &L->cfg.bn;
  if (b->momentum < 0) return 1.0 / (double)L->batches_tracked;
  return b->convention == NN_BN_KERAS ? 1.0 - b->momentum : b->momentum;
}

static void declare(nn_layer *L) {
  const nn_bn_cfg *b = &L->cfg.bn;
  int c = L->in.c;
  L->nparam = b->affine ? 2 : 0;
  L->param[0] = (nn_tensor_decl){"weight", 1, {c}, (size_t)c, 0, !b->freeze_affine && b->scale};
  L->param[1] = (nn_tensor_decl){"bias", 1, {c}, (size_t)c, 0, !b->freeze_affine && b->center};
  L->nstate = b->track_running_stats ? 2 : 0;
  L->state[0] = (nn_tensor_decl){"running_mean", 1, {c}, (size_t)c, 0, 0};
  L->state[1] = (nn_tensor_decl){"running_var", 1, {c}, (size_t)c, 0, 0};
  L->has_batches_tracked = b->track_running_stats;
}

/* scratch: batch mean, biased var, invstd (C each); for synchronized BN also the shared
 * shift (C) and, 8-byte aligned, the reduced sums (3C + 1 doubles) */
static size_t scratch(const nn_layer *L, int n) {
  (void)n;
  return 4 * (size_t)L->in.c + 2 * (3 * (size_t)L->in.c + 1) + 1;
}


static void init(nn_layer *L, nn_init init, nn_rng *rng) {
  (void)init, (void)rng;
  int c = L->in.c;
  if (L->cfg.bn.affine)
    for (int i = 0; i < c; i++) L->p[i] = 1.0f, L->p[c + i] = 0.0f;
  if (L->cfg.bn.track_running_stats)
    for (int i = 0; i < c; i++) L->st[i] = 0.0f, L->st[c + i] = 1.0f;
  L->batches_tracked = 0;
  L->skipped_updates = 0;
}

static int uses_batch_stats(const nn_layer *L, nn_mode mode) {
  const nn_bn_cfg *b = &L->cfg.bn;
  if (!b->track_running_stats) return 1;
  return mode == NN_MODE_TRAIN && !b->use_global_stats;
}

/* The kernels' geometry of a batch of n. */
static nn_norm_geom geom(const nn_layer *L, int n) {
  return (nn_norm_geom){.n = n, .c = L->in.c, .s = L->in.h * L->in.w, .eps = (float)L->cfg.bn.eps};
}

/* ---- synchronized BN (ARCHITECTURE.md §9): the kernels' phases with one packed all-reduce
 * of doubles between, per layer: forward (sum, sum of squares around a shift all ranks share,
 * count), backward (the three sums). Every rank then holds the global statistics, so the
 * running statistics are updated once, identically everywhere. A rank may hold no sample
 * (an empty slice): it contributes zeros and still takes part. */
static double *sync_sums(const nn_layer *L) {
  float *p = L->scratch + 4 * (size_t)L->in.c;
  return (double *)(void *)(p + ((uintptr_t)p % sizeof(double) ? 1 : 0)); /* arena floats: 4-byte aligned */
}

static nn_status forward_sync(nn_layer *L, const nn_norm_geom *g, const float *x, const float *gamma,
                              const float *beta, float *y, nn_mode mode, nn_error *err) {
  const nn_comm *comm = L->comm;
  const int c = g->c;
  float *mean = L->scratch, *var = mean + c, *invstd = var + c, *shift = invstd + c;
  double *sum = sync_sums(L), *sumsq = sum + c;
  /* the shift: the running mean every rank holds, else rank 0's first values */
  if (L->cfg.bn.track_running_stats) {
    for (int ch = 0; ch < c; ch++) shift[ch] = nn_state_ptr(L, 0)[ch];
  } else {
    if (comm->rank == 0 && g->n > 0) nn_bn_shift(g, x, shift);
    comm->bcast(comm->ctx, shift, (size_t)c * sizeof *shift, 0);
  }
  for (int k = 0; k < 2 * c; k++) sum[k] = 0;
  if (g->n > 0) nn_bn_moments(g, x, shift, sum, sumsq);
  sum[2 * c] = (double)g->n * g->s;
  comm->sum_f64(comm->ctx, sum, 2 * (size_t)c + 1);
  double count = sum[2 * c];
  sum[3 * c] = count; /* for backward */
  if (count < 2) {
    char name[96];
    nn_layer_name(L, name, sizeof name);
    return nn_err_set(err, NN_ERR_BATCH,
                      "%s: batch statistics need more than 1 value per channel, the global batch over %d "
                      "processes has %.0f; use a larger batch, drop the last incomplete batch (--drop-last), or eval mode",
                      name, comm->size, count);
  }
  nn_bn_forward_apply(g, x, gamma, beta, shift, sum, sumsq, count, y, mean, var, invstd);
  if (mode == NN_MODE_TRAIN && L->cfg.bn.track_running_stats) {
    L->batches_tracked++;
    if (!nn_bn_running_update(nn_state_ptr(L, 0), nn_state_ptr(L, 1), mean, var, c, (long)count, new_weight(L),
                              L->cfg.bn.convention == NN_BN_PYTORCH))
      L->skipped_updates++;
  }
  return NN_OK;
}

/* What a backward reads and accumulates into: gamma (NULL: affine off), the gradients
 * (NULL: not learned), the last forward's batch mean and 1/std (its scratch). */
typedef struct {
  const float *gamma, *mean, *invstd;
  float *dgamma, *dbeta;
} bn_bwd_args;

static bn_bwd_args bwd_args(nn_layer *L) {
  return (bn_bwd_args){.gamma = L->cfg.bn.affine ? nn_param_ptr(L, L->p, 0) : NULL,
                       .mean = L->scratch,
                       .invstd = L->scratch + 2 * L->in.c,
                       .dgamma = L->nparam && L->param[0].trainable ? nn_param_ptr(L, L->g, 0) : NULL,
                       .dbeta = L->nparam && L->param[1].trainable ? nn_param_ptr(L, L->g, 1) : NULL};
}

/* The parameter gradient made from the global sums is already the global one: rank 0 alone
 * adds it, so the gradient all-reduce counts it once. */
static void backward_sync(nn_layer *L, const nn_norm_geom *g, const bn_bwd_args *a, const float *x, const float *dy,
                          float *dx) {
  const nn_comm *comm = L->comm;
  const int c = g->c;
  double *sd = sync_sums(L), *sdy = sd + c, *sdyd = sdy + c, count = sd[3 * c];
  for (int k = 0; k < 3 * c; k++) sd[k] = 0;
  if (g->n > 0) nn_bn_backward_sums(g, x, dy, a->mean, sd, sdy, sdyd);
  comm->sum_f64(comm->ctx, sd, 3 * (size_t)c);
  float *dgamma = comm->rank == 0 ? a->dgamma : NULL, *dbeta = comm->rank == 0 ? a->dbeta : NULL;
  if (g->n > 0 || dgamma)
    nn_bn_backward_apply(g, x, a->gamma, a->mean, a->invstd, dy, sd, sdy, sdyd, count, g->n ? dx : NULL, dgamma, dbeta);
}

/* The fused activation for a next layer of this kind, NN_ACT_NONE if it cannot fuse. */
static nn_act fused_act(const nn_layer *next) {
  switch (next->kind) {
    case NN_LAYER_RELU:
      return NN_ACT_RELU;
    case NN_LAYER_SIGMOID:
      return NN_ACT_SIGMOID;
    case NN_LAYER_TANH:
      return NN_ACT_TANH;
    default:
      return NN_ACT_NONE;
  }
}

int nn_batchnorm_fuses(const nn_layer *L, const nn_layer *next, nn_mode mode) {
  if (L->kind != NN_LAYER_BATCHNORM || fused_act(next) == NN_ACT_NONE) return 0;
  const int batch = uses_batch_stats(L, mode);
  if (batch && L->comm) return 0; /* synchronized BN runs in phases, unfused */
  /* training with running statistics (frozen BN) has no fused backward */
  return mode != NN_MODE_TRAIN || batch;
}

int nn_batchnorm_is_affine(const nn_layer *L, nn_mode mode) {
  return L->kind == NN_LAYER_BATCHNORM && !uses_batch_stats(L, mode);
}

void nn_batchnorm_epilogue(nn_layer *L, nn_epilogue *e) {
  const int c = L->in.c;
  float *p = L->cfg.bn.affine ? L->p : NULL;
  float *scale = L->scratch, *shift = scale + c;
  nn_bn_infer_affine(nn_param_ptr(L, p, 0), nn_param_ptr(L, p, 1), nn_state_ptr(L, 1), (float)L->cfg.bn.eps, c, scale,
                     shift);
  e->mean = nn_state_ptr(L, 0), e->scale = scale, e->shift = shift;
}

/* y = act(BN(x)) (act = NN_ACT_NONE: the layer alone). */
static nn_status forward_act(nn_layer *L, nn_act act, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  const nn_norm_geom g = geom(L, n);
  const int c = g.c, s = g.s;
  const float *gamma = nn_param_ptr(L, L->cfg.bn.affine ? L->p : NULL, 0);
  const float *beta = nn_param_ptr(L, L->cfg.bn.affine ? L->p : NULL, 1);
  float *mean = L->scratch, *var = mean + c, *invstd = var + c;
  if (!uses_batch_stats(L, mode)) {
    nn_bn_forward_infer_act(&g, act, x, gamma, beta, nn_state_ptr(L, 0), nn_state_ptr(L, 1), y);
    return NN_OK;
  }
  if (L->comm) {
    NN_ASSERT(act == NN_ACT_NONE);
    return forward_sync(L, &g, x, gamma, beta, y, mode, err);
  }
  if ((long)n * s < 2) {
    char name[96], shp[64];
    nn_layer_name(L, name, sizeof name);
    nn_shape_format(L->in, shp, sizeof shp);
    return nn_err_set(err, NN_ERR_BATCH,
                      "%s: batch statistics need more than 1 value per channel, got input (%d, %s); "
                      "use a larger batch, drop the last incomplete batch (--drop-last), or eval mode",
                      name, n, shp);
  }
  nn_bn_forward_train_act(&g, act, x, gamma, beta, y, mean, var, invstd);
  if (mode == NN_MODE_TRAIN && L->cfg.bn.track_running_stats) {
    L->batches_tracked++;
    if (!nn_bn_running_update(nn_state_ptr(L, 0), nn_state_ptr(L, 1), mean, var, c, (long)n * s, new_weight(L),
                              L->cfg.bn.convention == NN_BN_PYTORCH))
      L->skipped_updates++;
  }
  return NN_OK;
}

static nn_status forward(nn_layer *L, const float *x, float *y, int n, nn_mode mode, nn_error *err) {
  return forward_act(L, NN_ACT_NONE, x, y, n, mode, err);
}

nn_status nn_batchnorm_forward_fused(nn_layer *L, const nn_layer *next, const float *x, float *z, int n,
                                     nn_mode mode, nn_error *err) {
  return forward_act(L, fused_act(next), x, z, n, mode, err);
}

/* dy is the gradient w.r.t. act(BN(x)) = z (act = NN_ACT_NONE: w.r.t. BN's output). */
static void backward_act(nn_layer *L, nn_act act, const float *x, const float *z, const float *dy, float *dx, int n,
                         nn_mode mode) {
  const nn_norm_geom g = geom(L, n);
  const bn_bwd_args a = bwd_args(L);
  if (uses_batch_stats(L, mode) && L->comm) {
    NN_ASSERT(act == NN_ACT_NONE);
    backward_sync(L, &g, &a, x, dy, dx);
  } else if (uses_batch_stats(L, mode)) {
    nn_bn_backward_train_act(&g, act, x, a.gamma, a.mean, a.invstd, z, dy, dx, a.dgamma, a.dbeta);
  } else {
    NN_ASSERT(act == NN_ACT_NONE);
    nn_bn_backward_infer(&g, x, a.gamma, nn_state_ptr(L, 0), nn_state_ptr(L, 1), dy, dx, a.dgamma, a.dbeta);
  }
}

static void backward(nn_layer *L, const float *x, const float *y, const float *dy, float *dx, int n, nn_mode mode) {
  (void)y;
  backward_act(L, NN_ACT_NONE, x, NULL, dy, dx, n, mode);
}

void nn_batchnorm_backward_fused(nn_layer *L, const nn_layer *next, const float *x, const float *z,
                                 const float *dz, float *dx, int n) {
  backward_act(L, fused_act(next), x, z, dz, dx, n, NN_MODE_TRAIN);
}

/* Planes below this many values keep the pool's own backward: LeNet's second BN (8x8 planes,
 * its 512 KB gradient in L2) was 10-25 us slower fused (bench_train --layers, three pairs),
 * the first (24x24) 150-210 us faster; the CNN's second (11x11, odd: the floor's leftover row
 * and column get 0) 1.01-1.03x in whole steps fused (bench/ab_objects.sh --libs, run 23). */
#define POOL_FUSE_MIN_PLANE 100

int nn_batchnorm_pool_fuses(const nn_layer *L, const nn_layer *next, const nn_layer *pool, nn_mode mode) {
  if (mode != NN_MODE_TRAIN || !nn_batchnorm_fuses(L, next, mode) || L->in.h * L->in.w < POOL_FUSE_MIN_PLANE)
    return 0;
  const nn_norm_geom g = geom(L, 1);
  if (pool->kind == NN_LAYER_GLOBAL_AVGPOOL) return nn_bn_gap_fits(&g);
  return (pool->kind == NN_LAYER_AVGPOOL2D || pool->kind == NN_LAYER_MAXPOOL2D) && pool->cfg.pool.size == 2 &&
         pool->cfg.pool.stride == 2 && nn_bn_pool2_fits(&g, L->in.w);
}

void nn_batchnorm_backward_fused_pool(nn_layer *L, const nn_layer *next, const nn_layer *pool, const float *x,
                                      const float *z, const float *dp, float *dx, int n) {
  const nn_norm_geom g = geom(L, n);
  const bn_bwd_args a = bwd_args(L);
  if (pool->kind == NN_LAYER_GLOBAL_AVGPOOL)
    nn_bn_backward_train_act_gap(&g, fused_act(next), x, a.gamma, a.mean, a.invstd, z, dp, dx, a.dgamma, a.dbeta);
  else
    nn_bn_backward_train_act_pool2(&g, L->in.w, fused_act(next), x, a.gamma, a.mean, a.invstd, z, dp,
                                   pool->kind == NN_LAYER_MAXPOOL2D, dx, a.dgamma, a.dbeta);
}

static void describe(const nn_layer *L, char *buf, size_t len) {
  const nn_bn_cfg *b = &L->cfg.bn;
  char mom[32];
  if (b->momentum < 0)
    snprintf(mom, sizeof mom, "cumulative");
  else
    snprintf(mom, sizeof mom, "%g", b->momentum);
  snprintf(buf, len, "%s: momentum=%s eps=%g var=%s%s%s%s%s%s", b->convention == NN_BN_KERAS ? "keras" : "pytorch", mom,
           b->eps, b->convention == NN_BN_KERAS ? "biased" : "unbiased", b->affine ? "" : " affine=0",
           b->affine && !b->center ? " center=0" : "", b->affine && !b->scale ? " scale=0" : "",
           b->track_running_stats ? "" : " track_running_stats=0",
           b->use_global_stats ? (b->freeze_affine ? " frozen" : " use_global_stats") : (b->freeze_affine ? " freeze_affine" : ""));
}

const nn_layer_ops nn_batchnorm_ops = {
    .name = "batchnorm",
    .keys = keys,
    .defaults = defaults,
    .finalize = finalize,
    .shape = nn_layer_same_shape,
    .declare = declare,
    .scratch = scratch,
    .init = init,
    .forward = forward,
    .backward = backward,
    .describe = describe,
};
