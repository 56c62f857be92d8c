/* Fibers for the emulator's CUDA threads: a context switch that is a few
 * register moves, not a system call.
 *
 * swapcontext saves and restores the signal mask with a system call on every
 * switch; an emulated kernel switches at every barrier, warp collective and
 * (in the random schedule) at memory accesses, so that was most of the
 * emulator's time. On x86-64 the switch saves the callee-saved registers and
 * the floating-point control words and swaps stacks; elsewhere, and under
 * AddressSanitizer (which must see stack switches through its swapcontext
 * interceptor), it falls back to ucontext. */
#ifndef SP_EMU_FIBER_H
#define SP_EMU_FIBER_H

#include <stddef.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(SP_EMU_FIBER_UCONTEXT)
#define SP_EMU_FIBER_FAST 1
#else
#include <ucontext.h>
#endif

struct sp_emu_fiber_ctx {
#ifdef SP_EMU_FIBER_FAST
    void *sp; /* the saved stack pointer: registers are pushed below it */
#else
    ucontext_t uc;
#endif
};

/* Makes `ctx` start `entry` on [stack, stack + size) at its first switch.
 * `entry` must never return: it ends by switching away for good. */
void sp_emu_fiber_init(sp_emu_fiber_ctx *ctx, char *stack, size_t size, void (*entry)(void));
/* Saves the running context in `from` and resumes `to`. */
void sp_emu_fiber_switch(sp_emu_fiber_ctx *from, sp_emu_fiber_ctx *to);
/* Resumes `to` from a signal handler, abandoning the running context (a
 * fiber that faulted). */
void sp_emu_fiber_escape(sp_emu_fiber_ctx *to);

#endif
