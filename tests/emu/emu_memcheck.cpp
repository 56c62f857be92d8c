/* The emulator's memory checks (see emu_check.h): the ThreadSanitizer-ABI
 * hooks that emulated kernels call before each load and store, the guarded
 * executor buffers, and the fault handler for accesses beyond them. */
#include <algorithm>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "emu_check.h"

thread_local sp_emu_access_ctx sp_emu_access;

namespace {

/* ---- guarded buffers ------------------------------------------------------- */

struct Guarded {
    uintptr_t map_lo, map_hi;   /* the whole mapping, guards included */
    uintptr_t user_lo, user_hi; /* what the caller asked for */
};

std::mutex g_reg_mutex;
std::map<uintptr_t, Guarded> g_registry;  /* by map_lo */
std::atomic<unsigned> g_reg_generation{1}; /* bumped at every free */

size_t page_size(void) {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

/* The buffer whose mapping holds p (guards included), under the lock. */
bool find_guarded_locked(uintptr_t p, Guarded *out) {
    auto it = g_registry.upper_bound(p);
    if (it == g_registry.begin()) return false;
    --it;
    if (p >= it->second.map_hi) return false;
    *out = it->second;
    return true;
}

/* A few buffers each emulated thread touched last: most accesses hit one, and
 * need no lock. Flushed when any buffer is freed. */
struct BoundsCache {
    unsigned generation = 0;
    Guarded hit[4];
    int n = 0, next = 0;
};
thread_local BoundsCache g_bounds_cache;

/* 0: p..p+n lies in one buffer (*base: its start), or in memory the emulator
 * did not hand out (tests may pass plain host memory; *base 0); else the
 * buffer it strays from. */
bool outside_buffer(uintptr_t p, size_t n, Guarded *g, uintptr_t *base) {
    *base = 0;
    BoundsCache &c = g_bounds_cache;
    const unsigned gen = g_reg_generation.load(std::memory_order_acquire);
    if (c.generation != gen) c.generation = gen, c.n = 0, c.next = 0;
    for (int i = 0; i < c.n; ++i)
        if (p >= c.hit[i].user_lo && p + n <= c.hit[i].user_hi) return *base = c.hit[i].user_lo, false;
    bool found;
    {
        std::lock_guard<std::mutex> lock(g_reg_mutex);
        found = find_guarded_locked(p, g);
    }
    if (!found) return false;
    if (p >= g->user_lo && p + n <= g->user_hi) {
        c.hit[c.next] = *g;
        c.next = (c.next + 1) % 4;
        if (c.n < 4) ++c.n;
        *base = g->user_lo;
        return false;
    }
    return true;
}

/* Programmatic dependent launch: the buffers (by start) the running launch
 * has stored to, and those the launch before it stored to. Per OS thread: a
 * thread's launches run one after another, as on one stream. */
thread_local std::vector<uintptr_t> g_launch_writes, g_prev_launch_writes;

bool holds(const std::vector<uintptr_t> &v, uintptr_t base) {
    for (uintptr_t b : v)
        if (b == base) return true;
    return false;
}

void describe(const Guarded &g, uintptr_t p, char *buf, size_t cap) {
    const size_t size = g.user_hi - g.user_lo;
    if (p < g.user_lo)
        snprintf(buf, cap, "%zu bytes before a buffer of %zu bytes", (size_t)(g.user_lo - p), size);
    else if (p >= g.user_hi)
        snprintf(buf, cap, "%zu bytes after the end of a buffer of %zu bytes", (size_t)(p - g.user_hi), size);
    else
        snprintf(buf, cap, "at byte %zu of a buffer of %zu bytes, running past its end", (size_t)(p - g.user_lo), size);
}

/* ---- the checks ------------------------------------------------------------ */

/* Traps the thread; at file:line when known (atomics, alignment), else at
 * the line of the code address `pc`. */
[[noreturn]] void fail(const void *pc, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
[[noreturn]] void fail(const void *pc, const char *file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sp_emu_trap_at(msg, pc, file, line);
}

const char *kind_name(bool write) { return write ? "store" : "load"; }

/* Did the access recorded as (tid, epoch, warp epoch) happen before the
 * running thread's access, by program order or a barrier between them? */
bool ordered(int tid, uint32_t epoch, uint32_t wepoch) {
    const sp_emu_access_ctx &a = sp_emu_access;
    if (tid == a.tid) return true;
    if (epoch != a.epoch) return true; /* a __syncthreads since */
    if (tid >= 0 && tid / 32 == a.warp && wepoch != a.warp_epochs[a.warp]) return true; /* a __syncwarp since */
    return false;
}

const char *who(int tid, char *buf, size_t cap) {
    if (tid == SP_EMU_TID_MANY) return "other threads";
    if (tid == SP_EMU_TID_ATOMIC) return "an atomic of another thread";
    snprintf(buf, cap, "thread %d", tid);
    return buf;
}

void check_shared_byte(uintptr_t p, bool write, bool atomic, const void *pc, const char *file, int line) {
    sp_emu_access_ctx &a = sp_emu_access;
    const size_t off = p - (uintptr_t)a.shared_lo;
    sp_emu_shadow &s = a.shadow[off];
    const uint32_t wep = a.warp_epochs[a.warp];
    char b1[32];
    if (!write || atomic) {
        if (s.w_tid == SP_EMU_TID_NONE)
            fail(pc, file, line, "%s of shared memory no thread wrote in this CTA (byte %zu of __shared__; "
                     "if another thread writes it later, a __syncthreads is missing)",
                 atomic ? "atomic" : "load", off);
        const bool both_atomic = atomic && s.w_tid == SP_EMU_TID_ATOMIC;
        if (!both_atomic && !ordered(s.w_tid, s.w_epoch, s.w_wepoch))
            fail(pc, file, line, "race on shared memory: thread %d reads byte %zu of __shared__ written by %s with no "
                     "__syncthreads (or __syncwarp) between",
                 a.tid, off, who(s.w_tid, b1, sizeof b1));
    }
    if (write) {
        if (s.w_tid != SP_EMU_TID_NONE && !(atomic && s.w_tid == SP_EMU_TID_ATOMIC) &&
            !ordered(s.w_tid, s.w_epoch, s.w_wepoch))
            fail(pc, file, line, "race on shared memory: thread %d and %s both write byte %zu of __shared__ with no "
                     "__syncthreads (or __syncwarp) between",
                 a.tid, who(s.w_tid, b1, sizeof b1), off);
        if (s.r_tid != SP_EMU_TID_NONE && !ordered(s.r_tid, s.r_epoch, s.r_wepoch))
            fail(pc, file, line, "race on shared memory: thread %d overwrites byte %zu of __shared__ that %s read with no "
                     "__syncthreads (or __syncwarp) between",
                 a.tid, off, who(s.r_tid, b1, sizeof b1));
        s.w_tid = (int16_t)(atomic ? SP_EMU_TID_ATOMIC : a.tid);
        s.w_epoch = a.epoch, s.w_wepoch = wep;
        s.r_tid = SP_EMU_TID_NONE;
    } else if (s.r_tid == SP_EMU_TID_NONE || ordered(s.r_tid, s.r_epoch, s.r_wepoch)) {
        s.r_tid = (int16_t)a.tid, s.r_epoch = a.epoch, s.r_wepoch = wep;
    } else if (s.r_tid != a.tid) {
        s.r_tid = SP_EMU_TID_MANY; /* keeps the epoch: a barrier still clears it */
    }
}

/* A global access to the buffer at `base`: stores are noted for the next
 * launch; before griddepcontrol.wait, stores and loads of what the launch
 * before wrote are what programmatic dependent launch makes a race. */
void check_before_wait(uintptr_t base, bool write, const void *pc, const char *file, int line) {
    const sp_emu_access_ctx &a = sp_emu_access;
    if (write && (g_launch_writes.empty() || g_launch_writes.back() != base) && !holds(g_launch_writes, base))
        g_launch_writes.push_back(base);
    if (!a.pdl_check || !a.grid_waited || *a.grid_waited) return;
    if (write)
        fail(pc, file, line, "store to global memory before griddepcontrol.wait (SP_GRID_DEP_WAIT): launched with "
                             "programmatic dependent launch, this kernel may run while the one before it drains");
    if (holds(g_prev_launch_writes, base))
        fail(pc, file, line, "load before griddepcontrol.wait (SP_GRID_DEP_WAIT) from a buffer the kernel before "
                             "it stored to: launched with programmatic dependent launch, it may read it before "
                             "that kernel is done");
}

void check_access(void *addr, size_t n, bool write, bool aligned, bool atomic, const void *pc, const char *file = nullptr, int line = 0) {
    sp_emu_access_ctx &a = sp_emu_access;
    if (!a.active) return;
    const uintptr_t p = (uintptr_t)addr;
    if (aligned && n > 1 && (p & (n - 1)))
        fail(pc, file, line, "misaligned %zu-byte %s at %p (address %% %zu = %zu): the GPU faults on this", n,
             kind_name(write), addr, n, (size_t)(p & (n - 1)));
    if (addr >= (void *)a.stack_lo && addr < (void *)a.stack_hi) return; /* the thread's locals */
    if (addr >= (void *)a.shared_lo && addr < (void *)a.shared_hi) {
        if ((char *)addr + n > a.shared_hi)
            fail(pc, file, line, "%zu-byte %s runs past the end of shared memory", n, kind_name(write));
        for (size_t i = 0; i < n; ++i) check_shared_byte(p + i, write, atomic, pc, file, line);
    } else {
        Guarded g;
        uintptr_t base;
        if (outside_buffer(p, n, &g, &base)) {
            char where[128];
            describe(g, p, where, sizeof where);
            fail(pc, file, line, "out-of-bounds %zu-byte %s at %p: %s", n, kind_name(write), addr, where);
        }
        if (base) check_before_wait(base, write, pc, file, line);
    }
    if (a.preempt) sp_emu_maybe_yield();
}

/* ---- the fault handler ----------------------------------------------------- */

struct sigaction g_old_segv, g_old_bus;
thread_local char *g_sigstack;

void on_fault(int sig, siginfo_t *si, void *uc_) {
    if (!sp_emu_access.active) { /* not in a kernel: whatever handled it before */
        sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, nullptr);
        return; /* the access faults again, now under that handler */
    }
    const void *pc = nullptr;
#if defined(__x86_64__)
    pc = (const void *)((ucontext_t *)uc_)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    pc = (const void *)((ucontext_t *)uc_)->uc_mcontext.pc;
#else
    (void)uc_;
#endif
    char where[160] = "";
    sp_emu_describe_address(si->si_addr, where, sizeof where);
    /* pc is the faulting instruction itself; the line lookup takes pc - 1. */
    fail(pc ? (const char *)pc + 1 : nullptr, nullptr, 0, "illegal address %p (%s)%s%s", si->si_addr,
         sig == SIGSEGV ? "SIGSEGV" : "SIGBUS", where[0] ? ": " : "", where);
}

} // namespace

extern "C" {

void *sp_emu_alloc(size_t n) {
    if (n == 0) return nullptr;
    const size_t pg = page_size();
    const size_t data = (n + 15) / 16 * 16, data_pages = (data + pg - 1) / pg * pg;
    if (data < n || data_pages < data || data_pages + 2 * pg < data_pages) return nullptr;
    const size_t total = data_pages + 2 * pg;
    char *m = (char *)mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    if (mprotect(m, pg, PROT_NONE) != 0 || mprotect(m + pg + data_pages, pg, PROT_NONE) != 0) {
        munmap(m, total);
        return nullptr;
    }
    /* Up against the upper guard, 16-byte aligned (the most any kernel needs:
     * docs/kernel-abi.md): a read just past the end faults or is caught. */
    char *user = m + pg + data_pages - data;
    Guarded g = {(uintptr_t)m, (uintptr_t)m + total, (uintptr_t)user, (uintptr_t)user + n};
    try {
        std::lock_guard<std::mutex> lock(g_reg_mutex);
        g_registry[g.map_lo] = g;
    } catch (...) {
        munmap(m, total);
        return nullptr;
    }
    return user;
}

/* Drops a buffer from the launches' store lists: the next one allocated at its
 * address is another buffer, which no launch has stored to. */
static void forget_launch_writes(uintptr_t base) {
    for (std::vector<uintptr_t> *v : {&g_launch_writes, &g_prev_launch_writes})
        v->erase(std::remove(v->begin(), v->end(), base), v->end());
}

void sp_emu_free(void *p) {
    if (!p) return;
    forget_launch_writes((uintptr_t)p);
    Guarded g;
    {
        std::lock_guard<std::mutex> lock(g_reg_mutex);
        if (!find_guarded_locked((uintptr_t)p, &g) || g.user_lo != (uintptr_t)p) {
            fprintf(stderr, "sp_emu_free: %p was not returned by sp_emu_alloc\n", p);
            abort();
        }
        g_registry.erase(g.map_lo);
        g_reg_generation.fetch_add(1, std::memory_order_release);
    }
    munmap((void *)g.map_lo, g.map_hi - g.map_lo);
}

int sp_emu_describe_address(const void *p, char *buf, size_t cap) {
    Guarded g;
    bool found;
    {
        std::lock_guard<std::mutex> lock(g_reg_mutex);
        found = find_guarded_locked((uintptr_t)p, &g);
    }
    if (!found) return 0;
    describe(g, (uintptr_t)p, buf, cap);
    return 1;
}

void sp_emu_install_fault_handler(void) {
    if (!g_sigstack) { /* per OS thread: a fiber's stack may be what overflowed */
        /* mapped, not malloc'd: AddressSanitizer would take frames on it for heap
         * overflows; large enough for the trap's message and line lookup */
        const size_t size = 512 * 1024;
        void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return;
        g_sigstack = (char *)m;
        stack_t ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_sp = g_sigstack;
        ss.ss_size = size;
        sigaltstack(&ss, nullptr);
    }
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        /* NODEFER: the handler leaves by switching to the scheduler, never by
         * returning, so the signal must not stay blocked. */
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &g_old_segv);
        sigaction(SIGBUS, &sa, &g_old_bus);
    });
}

void sp_emu_atomic_access(void *p, size_t size, const char *file, int line) {
    check_access(p, size, true, true, true, nullptr, file, line);
}

void sp_emu_pdl_launch(int pdl_check) {
    g_prev_launch_writes.swap(g_launch_writes);
    g_launch_writes.clear();
    sp_emu_access.pdl_check = pdl_check;
}

void sp_emu_grid_dep_wait(void) {
    sp_emu_access_ctx &a = sp_emu_access;
    if (a.active && a.grid_waited) *a.grid_waited = 1;
}

/* prefetch.global.L2: no data moves, but the address must be one the kernel
 * may read (a byte of a buffer; plain host memory a test passed is let be). */
void sp_emu_prefetch(const void *p) {
    const sp_emu_access_ctx &a = sp_emu_access;
    if (!a.active) return;
    const void *pc = __builtin_return_address(0);
    if ((p >= (void *)a.stack_lo && p < (void *)a.stack_hi) || (p >= (void *)a.shared_lo && p < (void *)a.shared_hi))
        fail(pc, nullptr, 0, "prefetch.global.L2 of %p, which is not global memory", p);
    Guarded g;
    uintptr_t base;
    if (outside_buffer((uintptr_t)p, 1, &g, &base)) {
        char where[128];
        describe(g, (uintptr_t)p, where, sizeof where);
        fail(pc, nullptr, 0, "prefetch.global.L2 of %p outside its buffer: %s", p, where);
    }
}

/* A hint load (sp_emu_hint_load): alignment and bounds, and no PDL rule. */
void sp_emu_hint_access(const void *p, size_t size) {
    const sp_emu_access_ctx &a = sp_emu_access;
    if (!a.active) return;
    const void *pc = __builtin_return_address(0);
    const uintptr_t u = (uintptr_t)p;
    if (size > 1 && (u & (size - 1)))
        fail(pc, nullptr, 0, "misaligned %zu-byte hint load at %p", size, p);
    Guarded g;
    uintptr_t base;
    if (outside_buffer(u, size, &g, &base)) {
        char where[128];
        describe(g, u, where, sizeof where);
        fail(pc, nullptr, 0, "out-of-bounds %zu-byte hint load at %p: %s", size, p, where);
    }
}

#define SP_HOOK __attribute__((visibility("default"), noinline))

/* ---- UndefinedBehaviorSanitizer's alignment check ----------------------------
 * Kernels are also compiled with -fsanitize=alignment: an access through a
 * pointer to a type is checked against that type's alignment where the source
 * makes it (a uint4 load must be 16-byte aligned even if the compiler then
 * reads only one word of it, as the GPU's 16-byte load would fault). The
 * handler's data layout is UBSan's stable ABI (TypeMismatchData, v1). */
struct sp_ubsan_location {
    const char *file;
    uint32_t line, column;
};
struct sp_ubsan_type {
    uint16_t kind, info;
    char name[1];
};
struct sp_ubsan_mismatch {
    sp_ubsan_location loc;
    const sp_ubsan_type *type;
    unsigned char log_alignment, check_kind;
};

static void misaligned(sp_ubsan_mismatch *d, uintptr_t p, const char *forward_name, const void *pc) {
    if (!sp_emu_access.active) { /* host code under the sanitizer build: UBSan's own handler */
        void (*real)(void *, void *) = (void (*)(void *, void *))dlsym(RTLD_NEXT, forward_name);
        if (real) return real(d, (void *)p);
        fprintf(stderr, "%s:%u: misaligned access to %p\n", d->loc.file, d->loc.line, (void *)p);
        abort();
    }
    static const char *const kinds[] = {"load of", "store to", "reference to", "member access within",
                                        "member call on", "constructor call on", "downcast of", "downcast of"};
    const size_t align = (size_t)1 << d->log_alignment;
    /* in one of sp_emu.h's helpers (__ldg, ...): the caller's line, from the code address */
    const size_t n = d->loc.file ? strlen(d->loc.file) : 0;
    const bool in_header = n >= 8 && strcmp(d->loc.file + n - 8, "sp_emu.h") == 0;
    fail(pc, in_header ? nullptr : d->loc.file, in_header ? 0 : (int)d->loc.line, "misaligned %s %p: type %s needs %zu-byte alignment (address %% %zu = %zu)",
         d->check_kind < 8 ? kinds[d->check_kind] : "access to", (void *)p, d->type ? d->type->name : "?", align,
         align, (size_t)(p & (align - 1)));
}

/* (void *, void *): the signatures gcc declares these built-ins with, which
 * a sanitizer build of this file must match. */
SP_HOOK void __ubsan_handle_type_mismatch_v1(void *d, void *p) {
    misaligned((sp_ubsan_mismatch *)d, (uintptr_t)p, "__ubsan_handle_type_mismatch_v1", __builtin_return_address(0));
}
SP_HOOK void __ubsan_handle_type_mismatch_v1_abort(void *d, void *p) {
    misaligned((sp_ubsan_mismatch *)d, (uintptr_t)p, "__ubsan_handle_type_mismatch_v1_abort",
               __builtin_return_address(0));
}

/* ---- the ThreadSanitizer ABI, as gcc and clang emit it --------------------- */
SP_HOOK void __tsan_init(void) {}
SP_HOOK void __tsan_func_entry(void *) {}
SP_HOOK void __tsan_func_exit(void *) {}
SP_HOOK void __tsan_vptr_update(void *, void *) {}
SP_HOOK void __tsan_vptr_read(void *) {}
#define SP_RW(N)                                                                                         \
    SP_HOOK void __tsan_read##N(void *p) { check_access(p, N, false, true, false, __builtin_return_address(0)); } \
    SP_HOOK void __tsan_write##N(void *p) { check_access(p, N, true, true, false, __builtin_return_address(0)); } \
    SP_HOOK void __tsan_unaligned_read##N(void *p) {                                                    \
        check_access(p, N, false, false, false, __builtin_return_address(0));                           \
    }                                                                                                    \
    SP_HOOK void __tsan_unaligned_write##N(void *p) {                                                   \
        check_access(p, N, true, false, false, __builtin_return_address(0));                            \
    }                                                                                                    \
    SP_HOOK void __tsan_volatile_read##N(void *p) {                                                     \
        check_access(p, N, false, true, false, __builtin_return_address(0));                            \
    }                                                                                                    \
    SP_HOOK void __tsan_volatile_write##N(void *p) {                                                    \
        check_access(p, N, true, true, false, __builtin_return_address(0));                             \
    }
SP_RW(1)
SP_RW(2)
SP_RW(4)
SP_RW(8)
SP_RW(16)
SP_HOOK void __tsan_read_range(void *p, long n) {
    check_access(p, (size_t)n, false, false, false, __builtin_return_address(0));
}
SP_HOOK void __tsan_write_range(void *p, long n) {
    check_access(p, (size_t)n, true, false, false, __builtin_return_address(0));
}

} // extern "C"
