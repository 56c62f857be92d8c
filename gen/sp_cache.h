/* The on-disk cubin/PTX cache behind sprig_compile: where it lives (the
 * entries themselves are gen's own business, gen/cache_internal.h).
 *
 * An entry is one file `<dir>/<32 hex>.sprigbin`, named by the XXH3-128 of
 * everything that decides the compiled bytes (source, NVRTC options, arch,
 * NVRTC version). It holds a checksummed header, the per-kernel resources,
 * the compile log and the image, so a hit reports what a compile would.
 * Entries are written to a temp file in the same folder and renamed into
 * place, so readers see a whole entry or none. The cache is best effort:
 * nothing here ever fails a compile; a bad entry is deleted and rebuilt. */
#ifndef SP_CACHE_H
#define SP_CACHE_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

/* The cache folder: opt_dir if not NULL ("" = disabled), else $SPRIG_CACHE_DIR
 * (set but empty = disabled), else $XDG_CACHE_HOME/sprig, else
 * $HOME/.cache/sprig. Returns 1 and fills out, or 0 when caching is off. */
int sp_cache_dir(const char *opt_dir, char *out, size_t cap);

#pragma GCC visibility pop
#endif
