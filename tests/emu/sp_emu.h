/* sp_emu.h: just enough of CUDA for the CPU to run sprig's generated kernels.
 *
 * The generated source is compiled by the host C++ compiler with this header
 * force-included (-include sp_emu.h), -DSPRIG_EMU and -fsanitize=thread (its
 * hooks before every load and store are the emulator's memory checks:
 * emu_check.h). Each CUDA thread runs as a fiber of the emulator in
 * tests/emu/emu_runtime.cpp; CTAs run one after another, so a function-scope
 * `static` is exactly per-CTA shared memory: every __shared__ variable lives
 * in one section (emu_shared.ld), poisoned and its history reset at each
 * CTA's start.
 * __syncthreads is a barrier over the CTA's live threads; warp intrinsics
 * (shuffles, votes, mma.sync) are collectives over the warp's live lanes,
 * implemented from the PTX ISA's definitions, not from the kernels. The vector
 * types are aligned as CUDA's (float4 16 bytes, float2 8), so that an access
 * through one is checked against that alignment.
 *
 * Why: the development and CI machines have no GPU. Running the real kernel
 * source against the float64 references here catches indexing, masking, tail
 * and reduction bugs, misaligned and out-of-bounds accesses, and shared-memory
 * races; timing and the global memory model still need a GPU. */
#ifndef SP_EMU_H
#define SP_EMU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static /* gathered into one section at link: emu_shared.ld */
#define __grid_constant__

struct sp_dim3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };

extern "C" {
/* The running fiber's coordinates (emu_runtime.cpp). */
const sp_dim3 *sp_emu_thread_idx(void);
const sp_dim3 *sp_emu_block_idx(void);
const sp_dim3 *sp_emu_block_dim(void);
const sp_dim3 *sp_emu_grid_dim(void);
void sp_emu_syncthreads(void);
/* Warp collective: every live lane passes `in` (up to 16 words); when all have
 * arrived, `op` runs once over the 32 lanes' inputs and fills their outputs. */
typedef void (*sp_emu_warp_op)(const uint32_t in[32][16], uint32_t out[32][16], const unsigned live, void *ctx);
void sp_emu_warp_collective(const uint32_t *in, uint32_t *out, int words, sp_emu_warp_op op, void *ctx);
void sp_emu_trap(const char *what);
/* An atomic's access checked (alignment, bounds, shared-memory history) at
 * file:line of the kernel's source (its #line): emu_memcheck.cpp. */
void sp_emu_atomic_access(void *p, size_t size, const char *file, int line);
/* Programmatic dependent launch, checked (emu_memcheck.cpp): griddepcontrol.wait
 * marks the running thread as past it; before that, a kernel whose module calls
 * it must not store to global memory nor load what the kernel before it wrote.
 * A prefetch must name a byte of a buffer; a hint load (its value only steers
 * prefetches, so it may be stale) is checked for bounds alone. */
void sp_emu_grid_dep_wait(void);
void sp_emu_prefetch(const void *p);
void sp_emu_hint_access(const void *p, size_t size);
}

#define threadIdx (*sp_emu_thread_idx())
#define blockIdx (*sp_emu_block_idx())
#define blockDim (*sp_emu_block_dim())
#define gridDim (*sp_emu_grid_dim())
#define warpSize 32

static inline void __syncthreads(void) { sp_emu_syncthreads(); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}
static inline void __trap(void) { sp_emu_trap("__trap()"); }

static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
#define __expf(x) expf(x) /* glibc declares its own __expf */
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
static inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }

template <typename T> static inline T __ldg(const T *p) { return *p; }
/* Not instrumented: sp_emu_hint_access checks it (bounds only; see above). */
template <typename T> __attribute__((no_sanitize("thread"))) static inline T sp_emu_hint_load(const T *p) {
    sp_emu_hint_access(p, sizeof(T));
    return *(const volatile T *)p;
}
template <typename T> static inline T __ldcs(const T *p) { return *p; }
template <typename T> static inline T __ldcg(const T *p) { return *p; }
template <typename T> static inline T __ldlu(const T *p) { return *p; }
template <typename T> static inline T __ldca(const T *p) { return *p; }
template <typename T> static inline void __stcs(T *p, T v) { *p = v; }
template <typename T> static inline void __stcg(T *p, T v) { *p = v; }

/* Fibers of one OS thread never run at once, so plain read-modify-write is
 * atomic. The atomics are not instrumented (two threads' atomics on one word
 * are no race); each reports itself, with its line, to the checks instead. */
#define SP_EMU_ATOMIC(name, body)                                                                  \
    template <typename T> __attribute__((no_sanitize("thread"))) static inline T sp_emu_##name(T *p, T v, const char *file, int line) { \
        sp_emu_atomic_access((void *)p, sizeof(T), file, line);                                          \
        T old = *p;                                                                                \
        body;                                                                                      \
        return old;                                                                                \
    }
SP_EMU_ATOMIC(atomic_add, *p = old + v)
SP_EMU_ATOMIC(atomic_max, if (v > old) *p = v)
SP_EMU_ATOMIC(atomic_min, if (v < old) *p = v)
SP_EMU_ATOMIC(atomic_exch, *p = v)
SP_EMU_ATOMIC(atomic_or, *p = old | v)
template <typename T> __attribute__((no_sanitize("thread"))) static inline T sp_emu_atomic_cas(T *p, T cmp, T v, const char *file, int line) {
    sp_emu_atomic_access((void *)p, sizeof(T), file, line);
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}
#define atomicAdd(p, v) sp_emu_atomic_add((p), (v), __FILE__, __LINE__)
#define atomicMax(p, v) sp_emu_atomic_max((p), (v), __FILE__, __LINE__)
#define atomicMin(p, v) sp_emu_atomic_min((p), (v), __FILE__, __LINE__)
#define atomicExch(p, v) sp_emu_atomic_exch((p), (v), __FILE__, __LINE__)
#define atomicOr(p, v) sp_emu_atomic_or((p), (v), __FILE__, __LINE__)
#define atomicCAS(p, c, v) sp_emu_atomic_cas((p), (c), (v), __FILE__, __LINE__)

/* sm_90's vector reductions (red.global.add.v2/v4.f32): one 8- or 16-byte
 * aligned access adding 2 or 4 floats (SPRIG_EMU_ARCH >= 90 selects them). */
__attribute__((no_sanitize("thread"))) static inline void sp_emu_red_add_f32(float *p, const float *v, int n, const char *file, int line) {
    sp_emu_atomic_access((void *)p, (size_t)n * 4, file, line);
    for (int i = 0; i < n; ++i) p[i] += v[i];
}

/* ---- warp shuffles and votes -------------------------------------------------- */
enum sp_emu_shfl_kind { SP_SHFL_IDX, SP_SHFL_UP, SP_SHFL_DOWN, SP_SHFL_XOR };
struct sp_emu_shfl_ctx { int kind; int width; };

extern "C" void sp_emu_shfl_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctx);
extern "C" void sp_emu_vote_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctx);

/* Each lane passes (value words..., its lane argument); words <= 2 (64-bit values). */
template <typename T>
static inline T sp_emu_shfl(T v, int arg, int kind, int width) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffle of a 4- or 8-byte value");
    uint32_t in[3] = {0, 0, 0}, out[3] = {0, 0, 0};
    memcpy(in, &v, sizeof(T));
    in[2] = (uint32_t)arg;
    sp_emu_shfl_ctx ctx = {kind, width};
    sp_emu_warp_collective(in, out, 3, sp_emu_shfl_op, &ctx);
    T r;
    memcpy(&r, out, sizeof(T));
    return r;
}
template <typename T> static inline T __shfl_sync(unsigned m, T v, int src, int w = 32) { (void)m; return sp_emu_shfl(v, src, SP_SHFL_IDX, w); }
template <typename T> static inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) { (void)m; return sp_emu_shfl(v, (int)d, SP_SHFL_UP, w); }
template <typename T> static inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) { (void)m; return sp_emu_shfl(v, (int)d, SP_SHFL_DOWN, w); }
template <typename T> static inline T __shfl_xor_sync(unsigned m, T v, int l, int w = 32) { (void)m; return sp_emu_shfl(v, l, SP_SHFL_XOR, w); }

/* vote kinds: 0 ballot, 1 any, 2 all */
static inline unsigned sp_emu_vote(int pred, int kind) {
    uint32_t in[2] = {(uint32_t)(pred != 0), (uint32_t)kind}, out[2] = {0, 0};
    sp_emu_warp_collective(in, out, 2, sp_emu_vote_op, 0);
    return out[0];
}
static inline unsigned __ballot_sync(unsigned m, int pred) { (void)m; return sp_emu_vote(pred, 0); }
static inline int __any_sync(unsigned m, int pred) { (void)m; return (int)sp_emu_vote(pred, 1); }
static inline int __all_sync(unsigned m, int pred) { (void)m; return (int)sp_emu_vote(pred, 2); }
static inline unsigned __activemask(void) { return sp_emu_vote(1, 0); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask; (void)sp_emu_vote(1, 0); }

/* ---- mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 -----------
 * Fragments per the PTX ISA (lane = 4*groupID + threadID_in_group):
 *   A (16x16, row): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
 *   B (16x8, col):  b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
 *   C/D (16x8):     c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
 * Each 32-bit register holds two 16-bit values, the lower-indexed in the low half. */
extern "C" void sp_emu_mma_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctx);
static inline void sp_emu_mma_m16n8k16(float d[4], const unsigned a[4], const unsigned b[2], const float c[4],
                                       int is_bf16) {
    uint32_t in[10], out[4];
    for (int i = 0; i < 4; ++i) in[i] = a[i];
    in[4] = b[0];
    in[5] = b[1];
    for (int i = 0; i < 4; ++i) memcpy(&in[6 + i], &c[i], 4);
    int kind = is_bf16;
    sp_emu_warp_collective(in, out, 10, sp_emu_mma_op, &kind);
    for (int i = 0; i < 4; ++i) memcpy(&d[i], &out[i], 4);
}

/* ---- calling a kernel from the emulator with a cuLaunchKernel-style void **args ---- */
template <typename... A, size_t... I>
static inline void sp_emu_invoke_impl(void (*fn)(A...), void **args, std::index_sequence<I...>) {
    fn(*static_cast<typename std::remove_reference<A>::type *>(args[I])...);
}
template <typename... A>
static inline void sp_emu_invoke(void (*fn)(A...), void **args) {
    sp_emu_invoke_impl(fn, args, std::index_sequence_for<A...>{});
}

/* The size of each of the kernel's parameters, as sp_emu_invoke reads them
 * from args[i] (the emulator copies that many bytes per argument when it
 * records a launch into a graph). Fills sizes[0..min(n, cap)) and returns n,
 * the number of parameters. */
template <typename... A>
static inline int sp_emu_param_sizes(void (*)(A...), size_t *sizes, int cap) {
    const size_t s[] = {sizeof(typename std::remove_reference<A>::type)..., 0};
    const int n = (int)sizeof...(A);
    for (int i = 0; i < n && i < cap; ++i) sizes[i] = s[i];
    return n;
}

#endif
