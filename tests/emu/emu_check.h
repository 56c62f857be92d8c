/* The emulator's checks of what a GPU enforces or leaves undefined: state the
 * scheduler (emu_runtime.cpp) and the memory checks (emu_memcheck.cpp) share.
 *
 * Emulated kernels are compiled with -fsanitize=thread but linked without
 * ThreadSanitizer's runtime: the compiler's hook before every load and store
 * (__tsan_read4, __tsan_write16, ...) lands in emu_memcheck.cpp, which checks
 *  - alignment: an N-byte access (N = 2, 4, 8, 16) at an address that is not
 *    a multiple of N, as the hardware faults on;
 *  - bounds: an access outside an executor buffer (sp_emu_alloc places each
 *    one between guard pages; an access in its slack is caught here, one
 *    beyond it by the SIGSEGV handler);
 *  - shared memory, per byte, within a CTA: a read of a byte no thread wrote,
 *    and two threads' accesses (one a write) with no barrier between them:
 *    no __syncthreads since, and for lanes of one warp no __syncwarp (or other
 *    warp collective) either: the hazards compute-sanitizer's racecheck and
 *    initcheck report;
 *  - programmatic dependent launch: in a kernel whose module calls
 *    griddepcontrol.wait (SP_GRID_DEP_WAIT), a thread that has not yet waited
 *    may neither store to global memory nor load a buffer the launch before
 *    it stored to (launched with PDL it may run while that one drains), and a
 *    prefetch must name a byte of a buffer.
 * A failed check traps the thread (sp_emu_trap_at), naming the source line:
 * the template's line where the kernel was rendered from one (#line). */
#ifndef SP_EMU_CHECK_H
#define SP_EMU_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* Per-byte shared-memory history within one CTA. tid -1: none. */
struct sp_emu_shadow {
    int16_t w_tid, r_tid;         /* last writer; last reader (-2: several) */
    uint32_t w_epoch, r_epoch;    /* the CTA's barrier count at that access */
    uint32_t w_wepoch, r_wepoch;  /* the accessing warp's sync count then */
};
#define SP_EMU_TID_NONE (-1)
#define SP_EMU_TID_MANY (-2)
#define SP_EMU_TID_ATOMIC (-3)

/* What the running emulated thread is; `active` is 0 outside kernels. */
struct sp_emu_access_ctx {
    int active;
    int tid, warp;                 /* linear thread index and its warp */
    char *stack_lo, *stack_hi;     /* its fiber stack (locals are not checked) */
    char *shared_lo, *shared_hi;   /* the module's __shared__ variables */
    sp_emu_shadow *shadow;         /* one per byte of [shared_lo, shared_hi) */
    uint32_t epoch;                /* __syncthreads completed in this CTA */
    const uint32_t *warp_epochs;   /* per warp: collectives completed */
    int preempt;                   /* 1: the random schedule yields at accesses */
    int pdl_check;                 /* 1: the kernel's module waits on the kernel before it */
    unsigned char *grid_waited;    /* the running thread's: 1 once past griddepcontrol.wait */
};
extern thread_local sp_emu_access_ctx sp_emu_access;

extern "C" {
/* Traps the running thread with a message (never returns): emu_runtime.cpp.
 * Where in the source: file:line if file is set (the kernel's own #line
 * names, e.g. templates/gather_down.cu.lua:160), else found from
 * `code_address` (a return address in the kernel's code). */
[[noreturn]] void sp_emu_trap_at(const char *what, const void *code_address, const char *file, int line);
/* Lets another thread run (the random schedule): emu_runtime.cpp. */
void sp_emu_maybe_yield(void);
/* Called by sp_emu.h's atomics (not instrumented): alignment, bounds, and the
 * shared history as an atomic access. */
void sp_emu_atomic_access(void *p, size_t size, const char *file, int line);

/* A launch begins (emu_runtime.cpp): the buffers the last one stored to become
 * those a not-yet-waited thread may not load; pdl_check as in sp_emu_access_ctx. */
void sp_emu_pdl_launch(int pdl_check);

/* Executor buffers: page-aligned mappings with an inaccessible page on each
 * side; the buffer ends as close to the upper guard as 16-byte alignment
 * allows. NULL for n == 0 or out of memory. */
void *sp_emu_alloc(size_t n);
void sp_emu_free(void *p);
/* Installs the SIGSEGV/SIGBUS handler that turns a fault in a kernel into a
 * trap naming the buffer (once per process; per OS thread its signal stack). */
void sp_emu_install_fault_handler(void);
/* "N bytes after the end of a buffer of M bytes" for an address near an
 * executor buffer, into buf; 0 if it is near none. */
int sp_emu_describe_address(const void *p, char *buf, size_t cap);
}

#endif
