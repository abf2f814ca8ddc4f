/* Learning-rate schedules as pure functions of the optimizer step, with PyTorch's
 * lr_scheduler formulas (the fixture tests/fixtures/lr_torch.txt checks every step):
 *   constant        lr
 *   step:E:G        StepLR(step_size=E epochs, gamma=G): lr * G^floor(epoch / E)
 *   cosine          CosineAnnealingLR(T_max=total steps, eta_min=0), stepped per batch
 *   onecycle        OneCycleLR(max_lr=lr, total_steps, pct_start=0.3, div_factor=25,
 *                   final_div_factor=1e4, anneal_strategy='cos'), no momentum cycling
 *   --warmup W      times LinearLR(start_factor=1/(W+1), total_iters=W): (t+1)/(W+1) for t < W
 * `step` counts optimizer steps from 0 (the step about to be taken). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"

static const double PI = 3.14159265358979323846;

nn_status nn_lr_schedule_parse(const char *text, long warmup, nn_lr_schedule *out, nn_error *err) {
  nn_lr_schedule s = {.kind = NN_LR_CONSTANT, .step_epochs = 0, .gamma = 1.0, .warmup = warmup};
  if (warmup < 0) return nn_err_set(err, NN_ERR_ARG, "warmup must be >= 0 steps, got %ld", warmup);
  if (!text || !strcmp(text, "constant")) {
  } else if (!strcmp(text, "cosine")) {
    s.kind = NN_LR_COSINE;
  } else if (!strcmp(text, "onecycle")) {
    s.kind = NN_LR_ONECYCLE;
    if (warmup > 0)
      return nn_err_set(err, NN_ERR_ARG, "onecycle has its own warm-up (30%% of the steps); drop the warmup of %ld",
                        warmup);
  } else if (!strncmp(text, "step:", 5)) {
    char *end;
    long e = strtol(text + 5, &end, 10);
    double g = *end == ':' ? strtod(end + 1, &end) : NAN;
    if (*end || e < 1 || e > 1000000 || !(g > 0) || !(g <= 1))
      return nn_err_set(err, NN_ERR_ARG, "bad schedule '%s' (expected step:EPOCHS:GAMMA, EPOCHS >= 1, 0 < GAMMA <= 1)",
                        text);
    s.kind = NN_LR_STEP, s.step_epochs = (int)e, s.gamma = g;
  } else {
    return nn_err_set(err, NN_ERR_ARG,
                      "unknown learning-rate schedule '%s' (expected constant, step:EPOCHS:GAMMA, cosine or onecycle)",
                      text);
  }
  *out = s;
  return NN_OK;
}

void nn_lr_schedule_format(const nn_lr_schedule *s, char *buf, size_t len) {
  switch (s->kind) {
    case NN_LR_STEP: {
      char g[32];
      snprintf(buf, len, "step:%d:%s", s->step_epochs, nn_fmt_double(g, sizeof g, s->gamma));
      break;
    }
    case NN_LR_COSINE: snprintf(buf, len, "cosine"); break;
    case NN_LR_ONECYCLE: snprintf(buf, len, "onecycle"); break;
    default: snprintf(buf, len, "constant"); break;
  }
}

/* torch.optim.lr_scheduler.OneCycleLR._annealing_cos */
static double anneal_cos(double start, double end, double pct) { return end + (start - end) / 2.0 * (cos(PI * pct) + 1); }

double nn_lr_schedule_at(const nn_lr_schedule *s, double lr, nn_lr_position at) {
  long step = at.step, steps_per_epoch = at.steps_per_epoch, total_steps = at.total_steps;
  if (step < 0) step = 0;
  if (total_steps < 1) total_steps = 1;
  if (steps_per_epoch < 1) steps_per_epoch = 1;
  double v = lr;
  switch (s->kind) {
    case NN_LR_STEP: {
      long decays = step / steps_per_epoch / s->step_epochs; /* whole periods only (StepLR) */
      v = lr * pow(s->gamma, (double)decays);
      break;
    }
    case NN_LR_COSINE: {
      long t = step < total_steps ? step : total_steps;
      v = lr * (1 + cos(PI * (double)t / (double)total_steps)) / 2;
      break;
    }
    case NN_LR_ONECYCLE: {
      double initial = lr / 25.0, min_lr = initial / 1e4;
      double up_end = 0.3 * (double)total_steps - 1, down_end = (double)total_steps - 1;
      double t = (double)(step < total_steps ? step : total_steps - 1);
      if (t <= up_end || down_end <= up_end) v = anneal_cos(initial, lr, up_end > 0 ? t / up_end : 1.0);
      else v = anneal_cos(lr, min_lr, (t - up_end) / (down_end - up_end));
      break;
    }
    default: break;
  }
  if (s->warmup > 0 && step < s->warmup) v *= (double)(step + 1) / (double)(s->warmup + 1);
  return v;
}
