/* Human names of normalization variants, as the tutorials write them in legends and
 * tables: "batch" -> "with BN", "none" -> "without BN", "group:4" -> "GroupNorm (4)". */
#include <stdio.h>
#include <string.h>

#include "normnet.h"

void nn_norm_label(const char *norm, char *buf, size_t len) {
  char base[64];
  const char *at = strchr(norm, '@');
  size_t n = at ? (size_t)(at - norm) : strlen(norm);
  snprintf(base, sizeof base, "%.*s", (int)(n < sizeof base ? n : sizeof base - 1), norm);
  const char *where = at ? at + 1 : "";
  char name[96];
  if (!strcmp(base, "batch")) snprintf(name, sizeof name, "with BN");
  else if (!strcmp(base, "none")) snprintf(name, sizeof name, "without BN");
  else if (!strcmp(base, "layer")) snprintf(name, sizeof name, "LayerNorm");
  else if (!strcmp(base, "instance")) snprintf(name, sizeof name, "InstanceNorm");
  else if (!strncmp(base, "group:", 6)) snprintf(name, sizeof name, "GroupNorm (%s)", base + 6);
  else snprintf(name, sizeof name, "%s", base);
  if (!strcmp(where, "after")) snprintf(buf, len, "%s, after the activation", name);
  else if (!strcmp(where, "before")) snprintf(buf, len, "%s, before the activation", name);
  else if (where[0]) snprintf(buf, len, "%s@%s", name, where);
  else snprintf(buf, len, "%s", name);
}
