/* The on-disk cubin/PTX cache behind sprig_compile.
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

#define SP_CACHE_KEY_HEX 33 /* 32 hex digits and NUL */

/* The cache folder: opt_dir if not NULL ("" = disabled), else $SPRIG_CACHE_DIR
 * (set but empty = disabled), else $XDG_CACHE_HOME/sprig, else
 * $HOME/.cache/sprig. Returns 1 and fills out, or 0 when caching is off. */
int sp_cache_dir(const char *opt_dir, char *out, size_t cap);

/* hex <- XXH3-128 of the source, each option string, the arch text and the
 * NVRTC version, each field length-prefixed so no two inputs collide by
 * concatenation. */
void sp_cache_key(const char *source, size_t source_len, const char *const *opts, int n_opts,
                  const char *arch, int nvrtc_major, int nvrtc_minor, char hex[SP_CACHE_KEY_HEX]);

/* Looks the entry up. On a valid entry fills bin's arch, is_ptx, image, log,
 * n_kernels, kernel_names and res (bin takes ownership of image and log) and
 * returns 1. A missing entry returns 0; a corrupt one is deleted, then 0. */
int sp_cache_load(const char *dir, const char *hex, sprig_binary *bin);

/* Writes bin as the entry for hex (mkdir -p on dir first). Returns 1 when
 * stored, 0 when not (unwritable folder, full disk): never an error. */
int sp_cache_store(const char *dir, const char *hex, const sprig_binary *bin);

/* mkdir -p with mode 0755; returns 0 on success (or when it exists). */
int sp_mkdir_p(const char *path);

#pragma GCC visibility pop
#endif
