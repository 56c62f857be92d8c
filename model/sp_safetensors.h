/* Reading safetensors files: memory-mapped, validated, looked up by name.
 *
 * A safetensors file is an 8-byte little-endian header length H, H bytes of
 * JSON ({"name": {"dtype": "F16", "shape": [..], "data_offsets": [b, e]}, ...,
 * optional "__metadata__": {string: string}}), then the data section; offsets
 * are relative to the start of the data section.
 *
 * Everything in the header is checked before any pointer is handed out: every
 * tensor's byte range lies inside the data section, matches product(shape) x
 * element size, and overlaps no other tensor. Any violation is SPRIG_E_FORMAT
 * with a message naming the file, the tensor and the numbers that disagree. */
#ifndef SP_SAFETENSORS_H
#define SP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

#define SP_MAX_DIMS 4
/* The header may be at most this large (the limit the reference implementation uses). */
#define SP_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* Element types sprig loads. Other safetensors dtypes (F64, I8, U8, F8_*, ...)
 * are rejected at open with the tensor's name. */
typedef enum sp_dtype {
    SP_DTYPE_F16 = 0,
    SP_DTYPE_BF16,
    SP_DTYPE_F32,
    SP_DTYPE_I32,
    SP_DTYPE_I64,
    SP_DTYPE_COUNT
} sp_dtype;

size_t sp_dtype_size(sp_dtype t);        /* bytes per element */

/* One tensor, valid while its file is open. data points into the mapping and
 * is NOT necessarily aligned to the element size (the format does not promise
 * it): read through memcpy, or check alignment before casting. */
typedef struct sp_tensor {
    const char *name;
    sp_dtype dtype;
    int ndim;                        /* 0 (scalar) .. SP_MAX_DIMS */
    int64_t shape[SP_MAX_DIMS];      /* unused entries are 0 */
    const void *data;
    size_t nbytes;                   /* product(shape) * sp_dtype_size(dtype) */
} sp_tensor;

typedef struct sp_safetensors sp_safetensors;

/* Maps `path` read-only and validates it. Missing or unreadable file:
 * SPRIG_E_IO naming the path; malformed or truncated: SPRIG_E_FORMAT.
 * On success *out is owned by the caller (sp_st_close); on failure *out = NULL. */
sprig_status sp_st_open(const char *path, sp_safetensors **out);

/* Parses a whole safetensors file already in memory (for tests and fuzzing).
 * buf is borrowed: it must stay valid and unchanged until sp_st_close, and
 * tensor data pointers point into it. label names the buffer in messages. */
sprig_status sp_st_parse(const void *buf, size_t size, const char *label, sp_safetensors **out);

/* Unmaps (if mapped) and frees; NULL is a no-op. Every sp_tensor pointer and
 * name from this file becomes invalid. */
void sp_st_close(sp_safetensors *st);

/* The tensor called `name`, or NULL. O(log n). */
const sp_tensor *sp_st_find(const sp_safetensors *st, const char *name);

/* Tensors in name order, for iteration: 0 <= i < sp_st_count(st). */
size_t sp_st_count(const sp_safetensors *st);
const sp_tensor *sp_st_tensor(const sp_safetensors *st, size_t i);

/* A "__metadata__" string value, or NULL if absent or not a string. */
const char *sp_st_metadata(const sp_safetensors *st, const char *key);

/* ---- writing (tests, synthetic model folders) ------------------------------------
 * Fills buf with bytes [offset, offset + n) of tensor t's data; used for
 * tensors whose data pointer is NULL, so large files can be streamed. */
typedef sprig_status (*sp_st_fill_fn)(void *ctx, const sp_tensor *t, size_t offset, void *buf,
                                      size_t n);

/* Writes a safetensors file holding tensors[0..n) in that order, contiguous,
 * the header padded with spaces to a multiple of 8 bytes so the data section
 * starts 8-aligned. nbytes of each tensor is computed from dtype and shape
 * (the field is ignored). A tensor with data == NULL gets its bytes from fill
 * (or zeros if fill is NULL). metadata: NULL or {key, value, ..., NULL}
 * strings for "__metadata__". Errors: SPRIG_E_IO naming the path,
 * SPRIG_E_INVALID for a bad tensor description. */
sprig_status sp_st_write(const char *path, const sp_tensor *tensors, size_t n,
                         const char *const *metadata, sp_st_fill_fn fill, void *ctx);

/* Element i of an I32 or I64 tensor, read alignment-safely; 0 for other dtypes.
 * i must be below the element count. */
long long sp_tensor_int_at(const sp_tensor *t, size_t i);

#pragma GCC visibility pop
#endif
