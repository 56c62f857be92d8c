/* What the sp_backend adapters (backend.c) use of the two backends and
 * nothing above the layer needs: callers see these through sp_backend.h
 * (not exported from the layer). */
#ifndef SP_BACKEND_INTERNAL_H
#define SP_BACKEND_INTERNAL_H

#include <stddef.h>

#include "sp_cpu.h"
#include "sp_gpu.h"

/* cpu_forward.c */
/* Switches the MLP to these per-layer thresholds ([n_layers], as
 * sp_cpu_calibrate computes them) and resets the sparsity counters. */
sprig_status sp_cpu_set_thresholds(sp_cpu *c, const float *thresholds);

/* gpu_backend.c */
/* Bytes of weights on the device that a dense decode step reads (everything
 * but the embedding table, of which a token reads one row; LTE routers and
 * SliceGPT shortcuts included): the numerator of the bandwidth roof. */
size_t sp_gpu_weight_bytes(const sp_gpu *g);
/* Of those, W_gate, W_up and W_down: the share a sparse MLP skips in
 * proportion to its sparsity. */
size_t sp_gpu_mlp_weight_bytes(const sp_gpu *g);

#endif
