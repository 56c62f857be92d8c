/* Interface of backend/: the GPU backend's kernel set. Rendered and loaded
 * kernels, keyed by plan key, plus the generator that renders them. Several
 * backends on one executor may share one (the shapes of different models
 * often coincide; the emulator compiles each plan once). Each kernel's
 * parameters come from the installed tuning hook, else from the executor's
 * defaults (sp_exec_default_params). */
#ifndef SP_GPU_KERNELS_H
#define SP_GPU_KERNELS_H

#include "sp_exec.h"
#include "sp_tuning_hook.h"
#include "sprig.h"

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef struct sp_gpu_kernels sp_gpu_kernels;

/* exec is borrowed and must outlive the set. The caller owns *out. exec NULL
 * opens a set that only renders (sp_gpu_describe: the step without a GPU). */
sprig_status sp_gpu_kernels_open(sp_exec *exec, sp_gpu_kernels **out);
/* Unloads every kernel. Every backend using the set must be closed first. */
void sp_gpu_kernels_close(sp_gpu_kernels *k);
/* How many distinct plans the set has loaded (compiled) so far. */
int sp_gpu_kernels_count(const sp_gpu_kernels *k);
/* The plan key of loaded kernel i (0 <= i < count), e.g. to show or test
 * which parameters were used; NULL outside the range. */
const char *sp_gpu_kernels_key(const sp_gpu_kernels *k, int i);
/* Installs t (copied; NULL: the executor's defaults again) for the kernels
 * loaded after the call. */
void sp_gpu_kernels_set_tuning(sp_gpu_kernels *k, const sp_tuning_hook *t);

#pragma GCC visibility pop
#endif
