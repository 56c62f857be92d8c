/* Declarations shared by model/'s own files (not exported from the layer). */
#ifndef SP_MODEL_INTERNAL_H
#define SP_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sp_safetensors.h"

const char *sp_dtype_name(sp_dtype t);   /* "F16", "BF16", ... as spelled in a safetensors header */
int sp_dtype_is_float(sp_dtype t);       /* F16, BF16, F32 */

/* Writes "4096x4096" (or "scalar" for ndim 0) into buf; returns buf. */
char *sp_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

#endif
