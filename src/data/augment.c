/* Training-time augmentation (seed 001 §13):
 *   flip        Keras RandomFlip("horizontal"): mirror left-right with probability 0.5
 *   rotate=F    Keras RandomRotation(F): angle uniform in [-F*2*pi, F*2*pi] about the image
 *               center, bilinear, fill_mode="constant" with fill_value 0
 *   crop=N      zero-pad by N on every side, crop back to h x w at a uniformly random offset
 *               in [0, 2N] per axis (torchvision RandomCrop(size, padding=N))
 * Applied per sample in that order, with the same geometry for all channels of a sample.
 *
 * Fill value: the batch handed to nn_augment_batch is already normalized
 * ((pixel/255 - mean)/std), so the 0 written into uncovered pixels is 0 in that space: black
 * for mean = 0, the mean gray for a mean/std normalization. (Keras fills raw pixels with 0,
 * i.e. black; with normnet's usual mean/std inputs the fill is the data mean instead, which
 * is what a zero-padded convolution already sees at the border.)
 *
 * Randomness comes only from the caller's nn_rng, drawn per sample in a fixed order: one
 * uniform for the flip (if enabled), one for the angle (if enabled), then two integers for
 * the crop offset x, y (if enabled). Same seed -> same batch, on every platform. */
#include "data/augment.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "normnet.h"

#define ROTATE_MAX 0.5
#define CROP_MAX 64
#define KNOWN "(known: flip, rotate=F, crop=N)"

/* ---- parsing ------------------------------------------------------------------------------ */

/* One item "name" or "name=value", already trimmed, NUL-terminated. */
static nn_status parse_item(const char *item, const char *text, nn_augment *a, unsigned *seen, nn_error *err) {
  const char *eq = strchr(item, '=');
  size_t nlen = eq ? (size_t)(eq - item) : strlen(item);
  const char *val = eq ? eq + 1 : NULL;
  int which;
  if (nlen == 4 && !strncmp(item, "flip", 4)) which = 0;
  else if (nlen == 6 && !strncmp(item, "rotate", 6)) which = 1;
  else if (nlen == 4 && !strncmp(item, "crop", 4)) which = 2;
  else return nn_err_set(err, NN_ERR_ARG, "unknown augmentation '%s' " KNOWN, item);
  if (*seen & (1u << which))
    return nn_err_set(err, NN_ERR_ARG, "augmentation '%.*s' given twice in '%s'", (int)nlen, item, text);
  *seen |= 1u << which;

  char *end;
  switch (which) {
    case 0:
      if (val) return nn_err_set(err, NN_ERR_ARG, "augmentation '%s': flip takes no value", item);
      a->flip = 1;
      return NN_OK;
    case 1: {
      errno = 0;
      double f = val && *val ? strtod(val, &end) : NAN;
      if (!val || !*val || errno || *end || !isfinite(f) || !(f > 0) || f > ROTATE_MAX)
        return nn_err_set(err, NN_ERR_ARG,
                          "augmentation '%s': rotate needs a factor F in (0, %g] (a fraction of 2*pi), e.g. rotate=0.1",
                          item, ROTATE_MAX);
      a->rotate = (float)f;
      return NN_OK;
    }
    default: {
      errno = 0;
      long n = val && *val ? strtol(val, &end, 10) : 0;
      if (!val || !*val || errno || *end || n < 1 || n > CROP_MAX)
        return nn_err_set(err, NN_ERR_ARG,
                          "augmentation '%s': crop needs an integer N in [1, %d] (pixels of zero padding), e.g. crop=4",
                          item, CROP_MAX);
      a->crop = (int)n;
      return NN_OK;
    }
  }
}

nn_status nn_augment_parse(const char *text, nn_augment *out, nn_error *err) {
  if (!text || !out) return nn_err_set(err, NN_ERR_ARG, "nn_augment_parse: NULL argument");
  nn_augment a = {0, 0.0f, 0};
  unsigned seen = 0;
  const char *p = text;
  while (isspace((unsigned char)*p)) p++;
  if (!*p || !strcmp(p, "none")) { /* "" or "none": no augmentation */
    *out = a;
    return NN_OK;
  }
  for (;;) {
    const char *comma = strchr(p, ',');
    const char *b = p, *e = comma ? comma : p + strlen(p);
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char item[64];
    size_t len = (size_t)(e - b);
    if (len == 0) return nn_err_set(err, NN_ERR_ARG, "empty item in augmentation list '%s' " KNOWN, text);
    if (len >= sizeof item)
      return nn_err_set(err, NN_ERR_ARG, "augmentation item '%.*s...' is too long " KNOWN, 24, b);
    memcpy(item, b, len);
    item[len] = 0;
    nn_status st = parse_item(item, text, &a, &seen, err);
    if (st) return st;
    if (!comma) break;
    p = comma + 1;
  }
  *out = a;
  return NN_OK;
}

/* ---- single-sample transforms ---------------------------------------------------------- */

void nn_augment_flip(float *x, int c, int h, int w) {
  for (long r = 0; r < (long)c * h; r++) {
    float *row = x + r * w;
    for (int i = 0, j = w - 1; i < j; i++, j--) {
      float t = row[i];
      row[i] = row[j];
      row[j] = t;
    }
  }
}

void nn_augment_rotate(const float *src, float *dst, int c, int h, int w, double angle) {
  const size_t S = (size_t)h * (size_t)w;
  const double cs = cos(angle), sn = sin(angle);
  const double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      const double u = x - cx, v = y - cy;
      const double xi = cx + cs * u - sn * v, yi = cy + sn * u + cs * v;
      const double x0f = floor(xi), y0f = floor(yi);
      const double fx = xi - x0f, fy = yi - y0f;
      /* |xi - cx| <= |u| + |v|, so the corners stay well inside int range. */
      const int x0 = (int)x0f, y0 = (int)y0f;
      size_t off[4];
      double wt[4];
      int k = 0;
      for (int dy = 0; dy < 2; dy++) {
        int yy = y0 + dy;
        if (yy < 0 || yy >= h) continue; /* this row of neighbours reads the fill value 0 */
        double wy = dy ? fy : 1.0 - fy;
        for (int dx = 0; dx < 2; dx++) {
          int xx = x0 + dx;
          double wgt = wy * (dx ? fx : 1.0 - fx);
          if (xx < 0 || xx >= w || wgt == 0.0) continue;
          off[k] = (size_t)yy * (size_t)w + (size_t)xx;
          wt[k++] = wgt;
        }
      }
      const size_t o = (size_t)y * (size_t)w + (size_t)x;
      for (int ch = 0; ch < c; ch++) {
        const float *s = src + (size_t)ch * S;
        double acc = 0.0;
        for (int i = 0; i < k; i++) acc += wt[i] * (double)s[off[i]];
        dst[(size_t)ch * S + o] = (float)acc;
      }
    }
  }
}

void nn_augment_shift(const float *src, float *dst, int c, int h, int w, int dx, int dy) {
  /* columns x with 0 <= x + dx < w */
  int x_lo = dx < 0 ? -dx : 0, x_hi = dx > 0 ? w - dx : w;
  if (x_lo > w) x_lo = w;
  if (x_hi < x_lo) x_hi = x_lo;
  for (int ch = 0; ch < c; ch++) {
    for (int y = 0; y < h; y++) {
      float *d = dst + ((size_t)ch * h + y) * (size_t)w;
      int sy = y + dy;
      if (sy < 0 || sy >= h || x_hi == x_lo) {
        memset(d, 0, (size_t)w * sizeof *d);
        continue;
      }
      const float *s = src + ((size_t)ch * h + sy) * (size_t)w;
      if (x_lo) memset(d, 0, (size_t)x_lo * sizeof *d);
      memcpy(d + x_lo, s + x_lo + dx, (size_t)(x_hi - x_lo) * sizeof *d);
      if (x_hi < w) memset(d + x_hi, 0, (size_t)(w - x_hi) * sizeof *d);
    }
  }
}

/* ---- batch ------------------------------------------------------------------------------- */

void nn_augment_batch(const nn_augment *a, nn_rng *rng, float *x, int n, nn_dims dims, float *scratch) {
  const int c = dims.c, h = dims.h, w = dims.w;
  if (!a || n <= 0 || (!a->flip && !(a->rotate > 0) && !(a->crop > 0))) return;
  NN_ASSERT(rng && x && c > 0 && h > 0 && w > 0);
  NN_ASSERT(scratch || (!(a->rotate > 0) && !(a->crop > 0)));
  const size_t sz = (size_t)c * (size_t)h * (size_t)w;
  const double two_pi = 6.283185307179586476925286766559;
  for (int i = 0; i < n; i++) {
    float *s = x + (size_t)i * sz;
    if (a->flip && nn_rng_uniform(rng) < 0.5f) nn_augment_flip(s, c, h, w);
    if (a->rotate > 0) {
      double angle = (2.0 * (double)nn_rng_uniform(rng) - 1.0) * (double)a->rotate * two_pi;
      memcpy(scratch, s, sz * sizeof *s);
      nn_augment_rotate(scratch, s, c, h, w, angle);
    }
    if (a->crop > 0) {
      uint32_t span = 2u * (uint32_t)a->crop + 1u;
      int ox = (int)nn_rng_below(rng, span), oy = (int)nn_rng_below(rng, span);
      memcpy(scratch, s, sz * sizeof *s);
      nn_augment_shift(scratch, s, c, h, w, ox - a->crop, oy - a->crop);
    }
  }
}
