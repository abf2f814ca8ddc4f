/* The library's version, from the header it was built with (normnet.h NN_VERSION_*). */
#include "normnet.h"

const char *nn_version(void) { return NN_VERSION_STRING; }
