/* The cubin cache's entries, for gen/compile.c (not exported from the layer).
 * See sp_cache.h for what an entry holds and how it is written. */
#ifndef SP_CACHE_INTERNAL_H
#define SP_CACHE_INTERNAL_H

#include <stddef.h>

#include "sprig.h"

#define SP_CACHE_KEY_HEX 33 /* 32 hex digits and NUL */

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

#endif
