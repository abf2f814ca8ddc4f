/* Image files for `predict`: PNG (libpng) and PGM, binary (P5) or ASCII (P2), read as
 * uint8 CHW of a required shape.
 * - PGM: '#' comments between header fields; maxval 1..65535 (2-byte big-endian samples in
 *   P5 above 255), scaled to 0..255 with rounding.
 * - PNG: any colour type and depth; palette and low-bit gray are expanded, 16-bit samples
 *   scaled to 8 bits, alpha dropped, giving 8-bit gray or RGB.
 * - Channels: RGB -> gray by ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B (rounded), gray
 *   -> 3 channels by replication.
 * Errors name the file: NN_ERR_IO when it cannot be read, NN_ERR_FORMAT when it is not a
 * valid PNG/PGM, NN_ERR_SHAPE when its size is not h x w. libpng's messages are captured,
 * never printed. */
#include <errno.h>
#include <limits.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file_read.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)

static nn_status read_file(const char *path, uint8_t **data, size_t *size, nn_error *err) {
  *data = NULL;
  *size = 0;
  off_t disk;
  FILE *f = nn_file_fopen_regular(path, &disk, err);
  if (!f) return NN_ERR_IO;
  if ((uint64_t)disk > MAX_FILE_BYTES) {
    fclose(f);
    return nn_err_set(err, NN_ERR_FORMAT, "%s: %lld bytes, larger than %zu; not an image this reader accepts", path,
                      (long long)disk, MAX_FILE_BYTES);
  }
  size_t cap = 1 << 16, len = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (len == cap) {
      if (cap >= MAX_FILE_BYTES) {
        free(buf);
        fclose(f);
        return nn_err_set(err, NN_ERR_FORMAT, "%s: larger than %zu bytes; not an image this reader accepts", path,
                          MAX_FILE_BYTES);
      }
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
      }
      buf = nb, cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return nn_err_set(err, NN_ERR_IO, "%s: read error", path);
  }
  *data = buf;
  *size = len;
  return NN_OK;
}

/* Gray or RGB pixels (HWC, ch = 1 or 3) -> out[c, h, w]. */
static void to_chw(const uint8_t *px, int ch, int c, int h, int w, uint8_t *out) {
  size_t plane = (size_t)h * (size_t)w;
  for (size_t i = 0; i < plane; i++) {
    if (ch == c && c == 1) {
      out[i] = px[i];
    } else if (ch == 1) { /* gray -> 3 */
      out[i] = out[plane + i] = out[2 * plane + i] = px[i];
    } else if (c == 3) {
      for (int k = 0; k < 3; k++) out[(size_t)k * plane + i] = px[3 * i + (size_t)k];
    } else { /* RGB -> gray, BT.601 luma rounded half up: exact in integers */
      unsigned r = px[3 * i], g = px[3 * i + 1], b = px[3 * i + 2];
      out[i] = (uint8_t)((299u * r + 587u * g + 114u * b + 500u) / 1000u);
    }
  }
}

static nn_status size_mismatch(const char *path, unsigned long ih, unsigned long iw, int h, int w, nn_error *err) {
  return nn_err_set(err, NN_ERR_SHAPE, "%s: image is %lux%lu (HxW) but the model expects %dx%d", path, ih, iw, h, w);
}

/* ---- PGM ------------------------------------------------------------------------------ */
typedef struct {
  const uint8_t *p;
  size_t n, pos;
} cursor;

static int is_space(int ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

static void skip_space_comments(cursor *c) {
  while (c->pos < c->n) {
    if (is_space(c->p[c->pos])) {
      c->pos++;
    } else if (c->p[c->pos] == '#') {
      while (c->pos < c->n && c->p[c->pos] != '\n' && c->p[c->pos] != '\r') c->pos++;
    } else {
      break;
    }
  }
}

/* Unsigned decimal number after whitespace/comments: 0 ok, -1 end of data, -2 not a number. */
static int read_uint(cursor *c, unsigned long max, unsigned long *v) {
  skip_space_comments(c);
  if (c->pos >= c->n) return -1;
  if (c->p[c->pos] < '0' || c->p[c->pos] > '9') return -2;
  unsigned long x = 0;
  while (c->pos < c->n && c->p[c->pos] >= '0' && c->p[c->pos] <= '9') {
    x = x * 10 + (unsigned long)(c->p[c->pos++] - '0');
    if (x > max) return -2;
  }
  if (c->pos < c->n && !is_space(c->p[c->pos]) && c->p[c->pos] != '#') return -2;
  *v = x;
  return 0;
}

static uint8_t scale_to_u8(unsigned long v, unsigned long maxval) {
  return maxval == 255 ? (uint8_t)v : (uint8_t)((v * 255u + maxval / 2u) / maxval);
}

static nn_status load_pgm(const char *path, const uint8_t *data, size_t size, int c, int h, int w, uint8_t *out,
                          nn_error *err) {
  int ascii = data[1] == '2';
  cursor cur = {data, size, 2};
  static const char *const field[] = {"width", "height", "maxval"};
  unsigned long hdr[3];
  for (int i = 0; i < 3; i++) {
    int r = read_uint(&cur, i < 2 ? (unsigned long)INT_MAX : 65535ul, &hdr[i]);
    if (r == -1) return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated PGM header (no %s)", path, field[i]);
    if (r || hdr[i] == 0)
      return nn_err_set(err, NN_ERR_FORMAT, "%s: bad PGM %s (expected %s)", path, field[i],
                        i < 2 ? "a positive integer" : "an integer in [1, 65535]");
  }
  unsigned long iw = hdr[0], ih = hdr[1], maxval = hdr[2];
  if (ih != (unsigned long)h || iw != (unsigned long)w) return size_mismatch(path, ih, iw, h, w, err);
  size_t npx = (size_t)h * (size_t)w;
  uint8_t *px = malloc(npx);
  if (!px) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
  if (ascii) {
    for (size_t i = 0; i < npx; i++) {
      unsigned long v;
      int r = read_uint(&cur, ULONG_MAX / 256, &v);
      if (r == 0 && v > maxval) r = -3;
      if (r) {
        free(px);
        if (r == -1)
          return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated PGM: %zu of %zu pixel values present", path, i, npx);
        if (r == -3)
          return nn_err_set(err, NN_ERR_FORMAT, "%s: PGM pixel %zu is %lu, above maxval %lu", path, i, v, maxval);
        return nn_err_set(err, NN_ERR_FORMAT, "%s: PGM pixel %zu is not a number", path, i);
      }
      px[i] = scale_to_u8(v, maxval);
    }
  } else {
    /* exactly one whitespace character ends the header */
    if (cur.pos >= cur.n || !is_space(cur.p[cur.pos])) {
      free(px);
      return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated PGM header (no whitespace after maxval)", path);
    }
    cur.pos++;
    size_t bps = maxval > 255 ? 2 : 1, need = npx * bps, have = cur.n - cur.pos;
    if (have < need) {
      free(px);
      return nn_err_set(err, NN_ERR_FORMAT, "%s: truncated PGM: %zu bytes of pixel data, expected %zu (%lux%lu, maxval %lu)",
                        path, have, need, iw, ih, maxval);
    }
    const uint8_t *d = cur.p + cur.pos;
    for (size_t i = 0; i < npx; i++) {
      unsigned long v = bps == 2 ? ((unsigned long)d[2 * i] << 8) | d[2 * i + 1] : d[i];
      if (v > maxval) {
        free(px);
        return nn_err_set(err, NN_ERR_FORMAT, "%s: PGM pixel %zu is %lu, above maxval %lu", path, i, v, maxval);
      }
      px[i] = scale_to_u8(v, maxval);
    }
  }
  to_chw(px, 1, c, h, w, out);
  free(px);
  return NN_OK;
}

/* ---- PNG ------------------------------------------------------------------------------ */
typedef struct {
  const uint8_t *data;
  size_t size, pos;
  char msg[256];
} png_src;

static void png_on_error(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_mem(png_structp png, png_bytep dst, png_size_t len) {
  png_src *s = png_get_io_ptr(png);
  if (len > s->size - s->pos) png_error(png, "truncated file (unexpected end of data)");
  memcpy(dst, s->data + s->pos, len);
  s->pos += len;
}

/* The bytes of all IDAT chunks (the compressed image), walking the chunks from the
 * signature to IEND or to the end of the data (a malformed chunk list is libpng's to
 * report). */
static size_t png_idat_bytes(const uint8_t *d, size_t size) {
  size_t total = 0;
  for (size_t o = 8; o + 12 <= size;) {
    const size_t len = ((size_t)d[o] << 24) | ((size_t)d[o + 1] << 16) | ((size_t)d[o + 2] << 8) | d[o + 3];
    if (len > size - o - 12) break;
    if (!memcmp(d + o + 4, "IDAT", 4)) total += len;
    if (!memcmp(d + o + 4, "IEND", 4)) break;
    o += 12 + len;
  }
  return total;
}

static nn_status load_png(const char *path, const uint8_t *data, size_t size, int c, int h, int w, uint8_t *out,
                          nn_error *err) {
  png_src src = {data, size, 0, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
  if (!png) return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for the PNG decoder", path);
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory for the PNG decoder", path);
  }
  /* Written after setjmp and read after a longjmp: volatile. */
  uint8_t *volatile px = NULL;
  png_bytep *volatile rows = NULL;
  volatile nn_status st = NN_OK;
  if (setjmp(png_jmpbuf(png))) {
    free(px);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    if (st) return st; /* set before a png_error we raised ourselves */
    return nn_err_set(err, NN_ERR_FORMAT, "%s: bad PNG: %s", path, src.msg);
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_set_user_limits(png, 1u << 16, 1u << 16);
  png_read_info(png, info);
  png_uint_32 iw = png_get_image_width(png, info), ih = png_get_image_height(png, info);
  if (ih != (png_uint_32)h || iw != (png_uint_32)w) {
    st = size_mismatch(path, (unsigned long)ih, (unsigned long)iw, h, w, err);
    png_error(png, "size mismatch");
  }
  int ctype = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  /* Deflate never needs much more room than the raw rows (filter byte + pixels), so more
   * compressed data than twice that (+ 64 KiB) is padding a decoder would inflate to the
   * end: a small file with gigabytes of zeros after the rows took minutes. */
  const size_t raw = (size_t)ih * (1 + ((size_t)iw * png_get_channels(png, info) * (size_t)depth + 7) / 8);
  const size_t idat = png_idat_bytes(data, size);
  if (idat > 2 * raw + (64u << 10)) {
    st = nn_err_set(err, NN_ERR_FORMAT,
                    "%s: bad PNG: %zu bytes of compressed image data for %lux%lu pixels (at most %zu): data "
                    "past the image",
                    path, idat, (unsigned long)ih, (unsigned long)iw, 2 * raw + (64u << 10));
    png_error(png, "too much image data");
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_scale_16(png);
  if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  /* a tRNS chunk is transparency only: ignored like alpha (palette_to_rgb does not add it) */
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info);
  if (png_get_bit_depth(png, info) != 8 || (ch != 1 && ch != 3) || png_get_rowbytes(png, info) != (size_t)w * ch)
    png_error(png, "unsupported pixel layout after conversion");
  px = malloc((size_t)h * (size_t)w * (size_t)ch);
  rows = malloc((size_t)h * sizeof *rows);
  if (!px || !rows) {
    st = nn_err_set(err, NN_ERR_NOMEM, "%s: out of memory", path);
    png_error(png, "out of memory");
  }
  for (int y = 0; y < h; y++) rows[y] = px + (size_t)y * (size_t)w * (size_t)ch;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  to_chw(px, ch, c, h, w, out);
  free(px);
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  return NN_OK;
}

nn_status nn_image_load(const char *path, nn_dims dims, uint8_t *out, nn_error *err) {
  const int c = dims.c, h = dims.h, w = dims.w;
  if (c != 1 && c != 3) return nn_err_set(err, NN_ERR_ARG, "%s: images load as 1 or 3 channels, not %d", path, c);
  if (h < 1 || w < 1 || h > (1 << 16) || w > (1 << 16))
    return nn_err_set(err, NN_ERR_ARG, "%s: bad image size %dx%d", path, h, w);
  uint8_t *data;
  size_t size;
  nn_status st = read_file(path, &data, &size, err);
  if (st) return st;
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && memcmp(data, png_sig, 8) == 0)
    st = load_png(path, data, size, c, h, w, out, err);
  else if (size >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '2'))
    st = load_pgm(path, data, size, c, h, w, out, err);
  else if (size == 0)
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: empty file, not a PNG or PGM image", path);
  else
    st = nn_err_set(err, NN_ERR_FORMAT, "%s: not a PNG or PGM (P2/P5) image (unrecognised magic)", path);
  free(data);
  return st;
}
