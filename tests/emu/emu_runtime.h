/* The CPU emulator of generated kernels (see sp_emu.h): compile a plan's
 * source with the host C++ compiler, then run its kernels with CUDA thread
 * semantics. "Device" memory is ordinary host memory. Test-only. */
#ifndef SP_EMU_RUNTIME_H
#define SP_EMU_RUNTIME_H

#include "sprig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_emu_module sp_emu_module;

/* Compiles plan->source for the CPU and loads it. The caller owns *out
 * (sp_emu_module_free). SPRIG_E_COMPILE with the compiler's output on failure. */
sprig_status sp_emu_module_load(const sprig_plan *plan, sp_emu_module **out);
void sp_emu_module_free(sp_emu_module *mod);

/* Runs plan->kernels[0..n) in order, each over its whole grid, with the
 * cuLaunchKernel-style args. SPRIG_E_CUDA naming the kernel, CTA and thread on
 * a trap or a deadlock (divergent barrier or warp collective). */
sprig_status sp_emu_plan_launch(sp_emu_module *mod, const sprig_plan *plan, void **args);

/* The most parameters a kernel may have under the emulator. */
#define SP_EMU_MAX_PARAMS 32

/* The byte size of each parameter of the module's kernel `kernel` (plan
 * order): fills sizes[0..min(n, cap)) and returns n, its parameter count;
 * -1 for a kernel index the module does not have. */
int sp_emu_kernel_param_sizes(const sp_emu_module *mod, int kernel, size_t *sizes, int cap);
/* The same for the plan's argument list (docs/kernel-abi.md: every kernel
 * takes the same list; a later one may take only a prefix of it): the sizes
 * of the kernel with the most parameters. Loading checked that every kernel
 * agrees with it on the common prefix. */
int sp_emu_plan_param_sizes(const sp_emu_module *mod, size_t *sizes, int cap);

#ifdef __cplusplus
}
#endif
#endif
