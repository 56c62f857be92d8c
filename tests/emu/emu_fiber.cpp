#include "emu_fiber.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>

#ifdef SP_EMU_FIBER_FAST

/* sp_emu_ctx_swap(void **save_sp, void *next_sp): pushes rbp rbx r12-r15 and
 * the MXCSR / x87 control words, stores rsp in *save_sp, loads next_sp and pops
 * the same frame from it (the System V ABI: everything else is caller-saved). */
extern "C" void sp_emu_ctx_swap(void **save_sp, void *next_sp);
asm(R"(
    .text
    .p2align 4
    .globl sp_emu_ctx_swap
    .hidden sp_emu_ctx_swap
    .type sp_emu_ctx_swap, @function
sp_emu_ctx_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size sp_emu_ctx_swap, .-sp_emu_ctx_swap
)");

void sp_emu_fiber_init(sp_emu_fiber_ctx *ctx, char *stack, size_t size, void (*entry)(void)) {
    /* The frame sp_emu_ctx_swap pops: control words, six registers, and the
     * return address `entry`. After its ret, rsp must be 8 mod 16, as on entry
     * to any function called with an aligned stack. */
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 72);
    memset(sp, 0, 72);
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    memcpy(&sp[0], &mxcsr, 4);
    memcpy((char *)&sp[0] + 4, &fpucw, 2);
    sp[7] = (uint64_t)(uintptr_t)entry;
    ctx->sp = sp;
}

void sp_emu_fiber_switch(sp_emu_fiber_ctx *from, sp_emu_fiber_ctx *to) { sp_emu_ctx_swap(&from->sp, to->sp); }

void sp_emu_fiber_escape(sp_emu_fiber_ctx *to) {
    /* Leaving the handler by a jump: unblock the signal it was entered with
     * (the handler is installed with SA_NODEFER, so this is belt and braces). */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSEGV);
    sigaddset(&s, SIGBUS);
    sigprocmask(SIG_UNBLOCK, &s, nullptr);
    void *dead;
    sp_emu_ctx_swap(&dead, to->sp);
}

#else

void sp_emu_fiber_init(sp_emu_fiber_ctx *ctx, char *stack, size_t size, void (*entry)(void)) {
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = nullptr;
    makecontext(&ctx->uc, entry, 0);
}

void sp_emu_fiber_switch(sp_emu_fiber_ctx *from, sp_emu_fiber_ctx *to) { swapcontext(&from->uc, &to->uc); }

void sp_emu_fiber_escape(sp_emu_fiber_ctx *to) { setcontext(&to->uc); /* restores its signal mask too */ }

#endif
