/* Training-time augmentation (seed 001 §13: Keras RandomFlip("horizontal"),
 * RandomRotation(factor), plus a padded random crop). Internal: the single-sample
 * transforms behind nn_augment_batch, exposed so tests can drive them with chosen
 * parameters instead of random ones.
 *
 * Every transform works on one float sample in CHW layout and applies the same geometry to
 * all channels. "Zero fill" means the value 0 in the float space the caller gives us: the
 * batch is already normalized ((pixel/255 - mean)/std), so a filled pixel is 0 after
 * normalization -- black when mean = 0, the mean gray otherwise. */
#ifndef NN_DATA_AUGMENT_H
#define NN_DATA_AUGMENT_H

/* Mirror every row in place: x[ch][y][x] <-> x[ch][y][w-1-x]. */
void nn_augment_flip(float *x, int c, int h, int w);

/* dst = src rotated by `angle` radians about the image center ((w-1)/2, (h-1)/2), Keras
 * RandomRotation / tf ImageProjectiveTransformV3 semantics: output pixel (x, y) (column,
 * row; y grows downwards) samples the input at
 *     x' = cx + cos(a)(x - cx) - sin(a)(y - cy),   y' = cy + sin(a)(x - cx) + cos(a)(y - cy)
 * with bilinear interpolation; each of the four neighbours that falls outside the image
 * reads 0 (fill_mode="constant", fill_value=0). A positive angle turns the content
 * counter-clockwise as displayed. src and dst must not overlap. */
void nn_augment_rotate(const float *src, float *dst, int c, int h, int w, double angle);

/* dst[ch][y][x] = src[ch][y + dy][x + dx], 0 where that falls outside. Zero-padding by p
 * and cropping an h x w window at offset (ox, oy) in [0, 2p] is the shift dx = ox - p,
 * dy = oy - p. src and dst must not overlap. */
void nn_augment_shift(const float *src, float *dst, int c, int h, int w, int dx, int dy);

#endif
