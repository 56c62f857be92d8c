/* The version the library was built as (SPRIG_VERSION, from CMake's project()). */
#include "sprig.h"

const char *sprig_version(void) { return SPRIG_VERSION; }
