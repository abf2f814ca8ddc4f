/* Reading Keras's config.json values with defaults (internal to src/io/): a missing or
 * mistyped value is the default, never an error, so each caller decides what it accepts;
 * an integer key that is present but invalid is KJ_BAD_INT, not the default. */
#ifndef NN_IO_KERAS_JSON_H
#define NN_IO_KERAS_JSON_H
#include <jansson.h>
#include <limits.h>

/* o[key] as a number, or dflt. */
static inline double kj_num(const json_t *o, const char *key, double dflt) {
  const json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

/* kj_int_at of a value that is there but no integer in [-2^30, 2^30] (2^40, 2.5, "2"):
 * below any bound a caller checks, so it is refused, never read as the default. */
#define KJ_BAD_INT INT_MIN

/* o[key] as an integer, or its element idx when it is an array (Keras writes kernel_size
 * and strides as pairs); dflt if it is absent or null, KJ_BAD_INT if it is anything else. */
static inline int kj_int_at(const json_t *o, const char *key, int idx, int dflt) {
  const json_t *v = json_object_get(o, key);
  if (json_is_array(v)) v = json_array_get(v, (size_t)idx);
  if (!v || json_is_null(v)) return dflt;
  return json_is_integer(v) && json_integer_value(v) >= -(1LL << 30) && json_integer_value(v) <= (1LL << 30)
             ? (int)json_integer_value(v)
             : KJ_BAD_INT;
}

static inline int kj_bool(const json_t *o, const char *key, int dflt) {
  const json_t *v = json_object_get(o, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* o[key] as a string, or "". */
static inline const char *kj_str(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

#endif
