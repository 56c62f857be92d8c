/* The emulator's scheduler: every CUDA thread of a CTA is a ucontext fiber;
 * CTAs run one after another on the calling OS thread.
 *
 * A fiber runs until it finishes or blocks at __syncthreads or at a warp
 * collective (shuffle, vote, mma). When no fiber can run, the scheduler
 * completes every warp collective whose live lanes have all arrived, then the
 * CTA barrier if every live thread waits at it. If neither is possible the
 * kernel has diverged around a collective: that is reported, not hung. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "emu_runtime.h"
#include "sp_emu.h"

extern "C" sprig_status sp_fail(sprig_status status, const char *fmt, ...);

namespace {

enum FiberState { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    sp_dim3 tid;
    int linear = 0;
    FiberState state = RUNNABLE;
    char *stack = nullptr;  /* from the stack pool, not owned */
    uint32_t in[16], out[16];
    int words = 0;
    sp_emu_warp_op op = nullptr;
    void *op_ctx = nullptr;
};

struct Cta {
    std::vector<Fiber> fibers;
    sp_dim3 bid, bdim, gdim;
    void (*entry)(void **) = nullptr;
    void **args = nullptr;
    std::string error;
};

thread_local Cta *g_cta = nullptr;
thread_local Fiber *g_cur = nullptr;
thread_local ucontext_t g_sched;

const size_t kStackBytes = 256 * 1024;

/* Fiber stacks are reused across CTAs and launches: allocating (and zeroing)
 * 256 KiB per thread per CTA was about half of an emulated test's time. */
struct StackPool {
    std::vector<char *> stacks;
    ~StackPool() { /* at thread (and so process) exit: leak-clean under LeakSanitizer */
        for (char *p : stacks) free(p);
    }
};
thread_local StackPool g_stack_pool_owner;
thread_local std::vector<char *> &g_stack_pool = g_stack_pool_owner.stacks;

char *stack_for(unsigned i) {
    while (g_stack_pool.size() <= i) {
        char *p = (char *)malloc(kStackBytes);
        if (!p) return nullptr;
        g_stack_pool.push_back(p);
    }
    return g_stack_pool[i];
}

void block_current(FiberState why) {
    g_cur->state = why;
    swapcontext(&g_cur->ctx, &g_sched);
}

void fiber_main(void) {
    g_cta->entry(g_cta->args);
    g_cur->state = DONE;
    /* returning resumes uc_link: the scheduler */
}

/* Completes the collectives of warps whose live lanes all wait; returns how many. */
int resolve_warps(Cta &cta) {
    int resolved = 0;
    const int n = (int)cta.fibers.size();
    for (int w0 = 0; w0 < n; w0 += 32) {
        unsigned live = 0, waiting = 0;
        for (int l = 0; l < 32 && w0 + l < n; ++l) {
            const Fiber &f = cta.fibers[w0 + l];
            if (f.state != DONE) live |= 1u << l;
            if (f.state == AT_WARP) waiting |= 1u << l;
        }
        if (!waiting || waiting != live) continue;
        static thread_local uint32_t in[32][16], out[32][16];
        memset(in, 0, sizeof in);
        memset(out, 0, sizeof out);
        sp_emu_warp_op op = nullptr;
        void *ctx = nullptr;
        for (int l = 0; l < 32 && w0 + l < n; ++l) {
            Fiber &f = cta.fibers[w0 + l];
            if (!(live >> l & 1)) continue;
            if (op && (f.op != op)) {
                cta.error = "lanes of warp " + std::to_string(w0 / 32) + " wait at different warp collectives";
                return -1;
            }
            op = f.op;
            ctx = f.op_ctx;
            memcpy(in[l], f.in, sizeof f.in);
        }
        op(in, out, live, ctx);
        if (!cta.error.empty()) return -1;
        for (int l = 0; l < 32 && w0 + l < n; ++l) {
            Fiber &f = cta.fibers[w0 + l];
            if (!(live >> l & 1)) continue;
            memcpy(f.out, out[l], sizeof f.out);
            f.state = RUNNABLE;
        }
        ++resolved;
    }
    return resolved;
}

int release_barrier(Cta &cta) {
    int live = 0, waiting = 0;
    for (Fiber &f : cta.fibers) {
        live += f.state != DONE;
        waiting += f.state == AT_BARRIER;
    }
    if (!waiting || waiting != live) return 0;
    for (Fiber &f : cta.fibers)
        if (f.state == AT_BARRIER) f.state = RUNNABLE;
    return 1;
}

bool run_cta(Cta &cta) {
    const unsigned nthreads = cta.bdim.x * cta.bdim.y * cta.bdim.z;
    cta.fibers.assign(nthreads, Fiber());
    for (unsigned i = 0; i < nthreads; ++i) {
        Fiber &f = cta.fibers[i];
        f.linear = (int)i;
        f.tid = {i % cta.bdim.x, (i / cta.bdim.x) % cta.bdim.y, i / (cta.bdim.x * cta.bdim.y)};
        f.stack = stack_for(i);
        if (!f.stack) {
            cta.error = "out of memory for fiber stacks";
            return false;
        }
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &g_sched;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (;;) {
        bool ran = false;
        for (Fiber &f : cta.fibers) {
            if (f.state != RUNNABLE) continue;
            g_cur = &f;
            swapcontext(&g_sched, &f.ctx);
            g_cur = nullptr;
            ran = true;
            if (!cta.error.empty()) return false;
        }
        bool all_done = true;
        for (Fiber &f : cta.fibers) all_done = all_done && f.state == DONE;
        if (all_done) return true;
        if (ran) continue;
        int w = resolve_warps(cta);
        if (w < 0) return false;
        if (w > 0) continue;
        if (release_barrier(cta)) continue;
        cta.error = "deadlock: threads wait at __syncthreads while others wait at a warp collective, "
                    "or a warp collective misses lanes that are still running";
        return false;
    }
}

} // namespace

extern "C" {

const sp_dim3 *sp_emu_thread_idx(void) { return &g_cur->tid; }
const sp_dim3 *sp_emu_block_idx(void) { return &g_cta->bid; }
const sp_dim3 *sp_emu_block_dim(void) { return &g_cta->bdim; }
const sp_dim3 *sp_emu_grid_dim(void) { return &g_cta->gdim; }

void sp_emu_syncthreads(void) { block_current(AT_BARRIER); }

void sp_emu_warp_collective(const uint32_t *in, uint32_t *out, int words, sp_emu_warp_op op, void *ctx) {
    memset(g_cur->in, 0, sizeof g_cur->in);
    memcpy(g_cur->in, in, (size_t)words * 4);
    g_cur->words = words;
    g_cur->op = op;
    g_cur->op_ctx = ctx;
    block_current(AT_WARP);
    memcpy(out, g_cur->out, (size_t)words * 4);
}

void sp_emu_trap(const char *what) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s in thread (%u,%u,%u) of CTA (%u,%u,%u)", what, g_cur->tid.x, g_cur->tid.y,
             g_cur->tid.z, g_cta->bid.x, g_cta->bid.y, g_cta->bid.z);
    g_cta->error = buf;
    g_cur->state = DONE;
    swapcontext(&g_cur->ctx, &g_sched);
}

void sp_emu_shfl_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctxp) {
    const sp_emu_shfl_ctx *c = (const sp_emu_shfl_ctx *)ctxp;
    const int w = c->width > 0 && c->width <= 32 ? c->width : 32;
    for (int l = 0; l < 32; ++l) {
        if (!(live >> l & 1)) continue;
        const int base = l & ~(w - 1), arg = (int)in[l][2];
        int src = l;
        switch (c->kind) {
        case SP_SHFL_IDX: src = base + (arg & (w - 1)); break;
        case SP_SHFL_UP: src = l - arg >= base ? l - arg : l; break;
        case SP_SHFL_DOWN: src = l + arg < base + w ? l + arg : l; break;
        default: src = l ^ arg; if (src < base || src >= base + w) src = l; break;
        }
        if (!(live >> src & 1)) { /* reading an exited or absent lane: undefined on a GPU */
            g_cta->error = "lane " + std::to_string(l) + " shuffles from lane " + std::to_string(src) +
                           ", which has exited or does not exist";
            return;
        }
        out[l][0] = in[src][0];
        out[l][1] = in[src][1];
    }
}

void sp_emu_vote_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctx) {
    (void)ctx;
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l)
        if ((live >> l & 1) && in[l][0]) ballot |= 1u << l;
    for (int l = 0; l < 32; ++l) {
        if (!(live >> l & 1)) continue;
        const unsigned kind = in[l][1];
        out[l][0] = kind == 0 ? ballot : kind == 1 ? (ballot != 0) : (ballot == live);
    }
}

static float half_bits_to_float(uint32_t h) {
    const uint32_t s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), (int)e - 25);
    return s ? -v : v;
}
static float bf16_bits_to_float(uint32_t b) {
    uint32_t u = b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void sp_emu_mma_op(const uint32_t in[32][16], uint32_t out[32][16], unsigned live, void *ctx) {
    if (live != 0xffffffffu) {
        g_cta->error = "mma.sync executed by a partial warp";
        return;
    }
    const int bf16 = *(const int *)ctx;
    float A[16][16], B[16][8], C[16][8];
    auto lo = [&](uint32_t r) { return bf16 ? bf16_bits_to_float(r & 0xffffu) : half_bits_to_float(r & 0xffffu); };
    auto hi = [&](uint32_t r) { return bf16 ? bf16_bits_to_float(r >> 16) : half_bits_to_float(r >> 16); };
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        A[g][2 * t] = lo(in[l][0]);          A[g][2 * t + 1] = hi(in[l][0]);
        A[g + 8][2 * t] = lo(in[l][1]);      A[g + 8][2 * t + 1] = hi(in[l][1]);
        A[g][2 * t + 8] = lo(in[l][2]);      A[g][2 * t + 9] = hi(in[l][2]);
        A[g + 8][2 * t + 8] = lo(in[l][3]);  A[g + 8][2 * t + 9] = hi(in[l][3]);
        B[2 * t][g] = lo(in[l][4]);          B[2 * t + 1][g] = hi(in[l][4]);
        B[2 * t + 8][g] = lo(in[l][5]);      B[2 * t + 9][g] = hi(in[l][5]);
        float c[4];
        memcpy(c, &in[l][6], 16);
        C[g][2 * t] = c[0]; C[g][2 * t + 1] = c[1]; C[g + 8][2 * t] = c[2]; C[g + 8][2 * t + 1] = c[3];
    }
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
        for (int i = 0; i < 4; ++i) {
            float acc = C[rows[i]][cols[i]];
            for (int k = 0; k < 16; ++k) acc += A[rows[i]][k] * B[k][cols[i]];
            memcpy(&out[l][i], &acc, 4);
        }
    }
}

/* ---- modules: compile the source with the host compiler and dlopen it ---------- */
struct sp_emu_module {
    void *so;
    std::string dir;
    int n_kernels;
    void (*entries[SPRIG_MAX_KERNELS])(void **);
    /* each kernel's parameter sizes (sp_emu_param_sizes), for recording launches */
    int n_params[SPRIG_MAX_KERNELS];
    size_t param_sizes[SPRIG_MAX_KERNELS][SP_EMU_MAX_PARAMS];
    int widest; /* the kernel with the most parameters */
};

static std::string run_capture(const std::string &cmd, int *rc) {
    std::string out;
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) {
        *rc = -1;
        return "popen failed";
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* Every kernel of a plan takes the same argument list (docs/kernel-abi.md),
 * a later one possibly only a prefix of it: each kernel's parameter sizes
 * must agree with the widest kernel's on their common prefix, or a recorded
 * launch would copy the wrong bytes. Picks the widest kernel. */
static sprig_status check_param_sizes(sp_emu_module *mod, const sprig_plan *plan) {
    mod->widest = 0;
    for (int k = 0; k < mod->n_kernels; ++k) {
        if (mod->n_params[k] > SP_EMU_MAX_PARAMS)
            return sp_fail(SPRIG_E_INTERNAL, "emu: kernel %s has %d parameters; the emulator records at most %d",
                           plan->kernels[k].name, mod->n_params[k], SP_EMU_MAX_PARAMS);
        if (mod->n_params[k] > mod->n_params[mod->widest]) mod->widest = k;
    }
    const int w = mod->widest;
    for (int k = 0; k < mod->n_kernels; ++k)
        for (int i = 0; i < mod->n_params[k]; ++i)
            if (mod->param_sizes[k][i] != mod->param_sizes[w][i])
                return sp_fail(SPRIG_E_INTERNAL,
                               "emu: kernels %s and %s of one plan disagree on parameter %d (%zu vs %zu bytes); "
                               "every kernel of a plan must take the same argument list (docs/kernel-abi.md)",
                               plan->kernels[k].name, plan->kernels[w].name, i, mod->param_sizes[k][i],
                               mod->param_sizes[w][i]);
    return SPRIG_OK;
}

sprig_status sp_emu_module_load(const sprig_plan *plan, sp_emu_module **out) {
    *out = nullptr;
    char tmpl[] = "/tmp/sprig-emu-XXXXXX";
    if (!mkdtemp(tmpl)) return sp_fail(SPRIG_E_IO, "emu: mkdtemp failed");
    std::string dir = tmpl, src = dir + "/kernel.cpp", so = dir + "/kernel.so";
    std::string text(plan->source, plan->source_len);
    text += "\n// emulator entry points: cuLaunchKernel-style void **args\n";
    for (int k = 0; k < plan->n_kernels; ++k) {
        const std::string name = plan->kernels[k].name, exported = "extern \"C\" __attribute__((visibility(\"default\"))) ";
        text += exported + "void sp_emu_entry_" + name + "(void **a) { sp_emu_invoke(" + name + ", a); }\n";
        text += exported + "int sp_emu_sizes_" + name + "(size_t *s, int cap) { return sp_emu_param_sizes(" + name +
                ", s, cap); }\n";
    }
    FILE *fp = fopen(src.c_str(), "wb");
    if (!fp) return sp_fail(SPRIG_E_IO, "emu: cannot write %s", src.c_str());
    fwrite(text.data(), 1, text.size(), fp);
    fclose(fp);
    std::string cmd = std::string(SPRIG_EMU_CXX) + " -std=c++17 -O1 -g -fPIC -shared -DSPRIG_EMU -w"
                      /* each module keeps its own statics (__shared__ arrays in inline functions
                       * would otherwise be one GNU-unique symbol across every loaded module) */
                      " -fno-gnu-unique -fvisibility=hidden -include " +
                      SPRIG_EMU_DIR + "/sp_emu.h -o " + so + " " + src;
    int rc = 0;
    std::string log = run_capture(cmd, &rc);
    if (rc != 0) return sp_fail(SPRIG_E_COMPILE, "emu: compiling %s failed:\n%s", src.c_str(), log.c_str());
    sp_emu_module *mod = new sp_emu_module();
    mod->dir = dir;
    mod->so = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!mod->so) {
        sprig_status s = sp_fail(SPRIG_E_COMPILE, "emu: dlopen %s: %s", so.c_str(), dlerror());
        delete mod;
        return s;
    }
    for (int k = 0; k < plan->n_kernels; ++k) {
        std::string sym = std::string("sp_emu_entry_") + plan->kernels[k].name;
        mod->entries[k] = (void (*)(void **))dlsym(mod->so, sym.c_str());
        sym = std::string("sp_emu_sizes_") + plan->kernels[k].name;
        int (*sizes)(size_t *, int) = (int (*)(size_t *, int))dlsym(mod->so, sym.c_str());
        if (!mod->entries[k] || !sizes) {
            sp_emu_module_free(mod);
            return sp_fail(SPRIG_E_COMPILE, "emu: kernel %s not found", plan->kernels[k].name);
        }
        mod->n_params[k] = sizes(mod->param_sizes[k], SP_EMU_MAX_PARAMS);
        mod->n_kernels = k + 1;
    }
    sprig_status s = check_param_sizes(mod, plan);
    if (s != SPRIG_OK) {
        sp_emu_module_free(mod);
        return s;
    }
    *out = mod;
    return SPRIG_OK;
}

void sp_emu_module_free(sp_emu_module *mod) {
    if (!mod) return;
    if (mod->so) dlclose(mod->so);
    std::string cmd = "rm -rf " + mod->dir;
    int rc = 0;
    run_capture(cmd, &rc);
    delete mod;
}

int sp_emu_kernel_param_sizes(const sp_emu_module *mod, int kernel, size_t *sizes, int cap) {
    if (!mod || kernel < 0 || kernel >= mod->n_kernels) return -1;
    const int n = mod->n_params[kernel];
    for (int i = 0; i < n && i < cap; ++i) sizes[i] = mod->param_sizes[kernel][i];
    return n;
}

int sp_emu_plan_param_sizes(const sp_emu_module *mod, size_t *sizes, int cap) {
    if (!mod || mod->n_kernels == 0) return 0;
    return sp_emu_kernel_param_sizes(mod, mod->widest, sizes, cap);
}

sprig_status sp_emu_plan_launch(sp_emu_module *mod, const sprig_plan *plan, void **args) {
    for (int k = 0; k < plan->n_kernels; ++k) {
        const sprig_launch *l = &plan->kernels[k];
        Cta cta;
        cta.entry = mod->entries[k];
        cta.args = args;
        cta.bdim = {l->block[0], l->block[1] ? l->block[1] : 1, l->block[2] ? l->block[2] : 1};
        cta.gdim = {l->grid[0], l->grid[1] ? l->grid[1] : 1, l->grid[2] ? l->grid[2] : 1};
        if (cta.bdim.x * cta.bdim.y * cta.bdim.z > 1024)
            return sp_fail(SPRIG_E_CUDA, "emu: %s: block of more than 1024 threads", l->name);
        for (unsigned z = 0; z < cta.gdim.z; ++z)
            for (unsigned y = 0; y < cta.gdim.y; ++y)
                for (unsigned x = 0; x < cta.gdim.x; ++x) {
                    cta.bid = {x, y, z};
                    g_cta = &cta;
                    bool ok = run_cta(cta);
                    g_cta = nullptr;
                    if (!ok)
                        return sp_fail(SPRIG_E_CUDA, "emu: kernel %s, CTA (%u,%u,%u): %s", l->name, x, y, z,
                                       cta.error.c_str());
                }
    }
    return SPRIG_OK;
}

} // extern "C"
