/* The emulator's scheduler: every CUDA thread of a CTA is a fiber
 * (emu_fiber.h); CTAs run one after another on the calling OS thread.
 *
 * A fiber runs until it finishes or blocks at __syncthreads or at a warp
 * collective (shuffle, vote, mma). When no fiber can run, the scheduler
 * completes every warp collective whose live lanes have all arrived, then the
 * CTA barrier if every live thread waits at it. If neither is possible the
 * kernel has diverged around a collective: that is reported, not hung.
 *
 * With SPRIG_EMU_SEED=n set, the schedule is random (and reproducible from n):
 * CTAs run in a random order, and threads in a random order, each yielding at
 * random loads and stores between barriers, so that code relying on an order
 * CUDA does not promise shows itself. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "emu_check.h"
#include "emu_compile.h"
#include "emu_fiber.h"
#include "emu_runtime.h"
#include "sp_emu.h"

extern "C" sprig_status sp_fail(sprig_status status, const char *fmt, ...);

namespace {

enum FiberState { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

struct Fiber {
    sp_emu_fiber_ctx ctx;
    sp_dim3 tid;
    int linear = 0;
    FiberState state = RUNNABLE;
    char *stack = nullptr;  /* from the stack pool, not owned */
    uint32_t in[16], out[16];
    int words = 0;
    sp_emu_warp_op op = nullptr;
    void *op_ctx = nullptr;
    unsigned char grid_waited = 0; /* past griddepcontrol.wait (emu_check.h) */
};

/* A small seeded generator (splitmix64): the random schedule must replay
 * from its seed on any platform. */
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    unsigned below(unsigned n) { return (unsigned)(next() % n); }
};

struct Cta {
    std::vector<Fiber> fibers;
    sp_dim3 bid, bdim, gdim;
    void (*entry)(void **) = nullptr;
    void **args = nullptr;
    std::string error;
    const std::string *source = nullptr; /* the module's text, for source lines */
    uint32_t epoch = 0;                  /* barriers completed */
    std::vector<uint32_t> warp_epochs;   /* per warp: collectives completed */
    std::vector<sp_emu_shadow> shadow;   /* per byte of shared memory */
    char *shared_lo = nullptr, *shared_hi = nullptr;
    Rng *rng = nullptr;                  /* the random schedule, or null */
};

thread_local Cta *g_cta = nullptr;
thread_local Fiber *g_cur = nullptr;
thread_local sp_emu_fiber_ctx g_sched;
thread_local unsigned g_yield_countdown = 1;

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
    sp_emu_fiber_switch(&g_cur->ctx, &g_sched);
}

void fiber_main(void) {
    g_cta->entry(g_cta->args);
    g_cur->state = DONE;
    sp_emu_fiber_switch(&g_cur->ctx, &g_sched); /* never resumed */
    abort();
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
        ++cta.warp_epochs[(size_t)(w0 / 32)]; /* the lanes' accesses before it are ordered before those after */
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
    ++cta.epoch;
    return 1;
}

/* Shared memory at a CTA's start: poisoned (0xff bytes: NaN as floats, -1 as
 * integers) and with no history, as a GPU gives each CTA fresh garbage. */
void reset_shared(Cta &cta) {
    const size_t n = (size_t)(cta.shared_hi - cta.shared_lo);
    if (!n) return;
    memset(cta.shared_lo, 0xff, n);
    sp_emu_shadow none;
    memset(&none, 0, sizeof none);
    none.w_tid = none.r_tid = SP_EMU_TID_NONE;
    std::fill(cta.shadow.begin(), cta.shadow.end(), none);
}

void resume(Cta &cta, Fiber &f) {
    g_cur = &f;
    sp_emu_access_ctx &a = sp_emu_access;
    a.tid = f.linear;
    a.warp = f.linear / 32;
    a.stack_lo = f.stack;
    a.stack_hi = f.stack + kStackBytes;
    a.epoch = cta.epoch;
    a.grid_waited = &f.grid_waited;
    a.active = 1;
    sp_emu_fiber_switch(&g_sched, &f.ctx);
    a.active = 0;
    g_cur = nullptr;
}

bool run_cta(Cta &cta) {
    const unsigned nthreads = cta.bdim.x * cta.bdim.y * cta.bdim.z;
    cta.fibers.assign(nthreads, Fiber());
    cta.epoch = 0;
    cta.warp_epochs.assign((nthreads + 31) / 32, 0);
    reset_shared(cta);
    sp_emu_access_ctx &a = sp_emu_access;
    a.shared_lo = cta.shared_lo, a.shared_hi = cta.shared_hi;
    a.shadow = cta.shadow.data();
    a.warp_epochs = cta.warp_epochs.data();
    a.preempt = cta.rng != nullptr;
    std::vector<unsigned> order(nthreads);
    for (unsigned i = 0; i < nthreads; ++i) {
        Fiber &f = cta.fibers[i];
        f.linear = (int)i;
        f.tid = {i % cta.bdim.x, (i / cta.bdim.x) % cta.bdim.y, i / (cta.bdim.x * cta.bdim.y)};
        f.stack = stack_for(i);
        if (!f.stack) {
            cta.error = "out of memory for fiber stacks";
            return false;
        }
        sp_emu_fiber_init(&f.ctx, f.stack, kStackBytes, fiber_main);
        order[i] = i;
    }
    for (;;) {
        bool ran = false;
        if (cta.rng)
            for (unsigned i = nthreads; i > 1; --i) std::swap(order[i - 1], order[cta.rng->below(i)]);
        for (unsigned i : order) {
            Fiber &f = cta.fibers[i];
            if (f.state != RUNNABLE) continue;
            resume(cta, f);
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

/* Line `line` (1-based) of text, trimmed and shortened; "" if it has none. */
std::string line_text(const std::string &text, int line) {
    size_t at = 0;
    for (int l = 1; l < line && at != std::string::npos; ++l) {
        at = text.find('\n', at);
        if (at != std::string::npos) ++at;
    }
    if (line <= 0 || at == std::string::npos || at >= text.size()) return "";
    size_t end = text.find('\n', at);
    std::string t = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    size_t first = t.find_first_not_of(" \t");
    t = first == std::string::npos ? "" : t.substr(first);
    if (t.size() > 120) t = t.substr(0, 117) + "...";
    return t;
}

bool ends_with(const std::string &s, const char *tail) {
    const size_t n = strlen(tail);
    return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

/* "templates/gather_down.cu.lua:160: `...`" for a template's line (a plan's
 * source carries #line directives back to its templates, read from the
 * source tree), or "kernel source line 12: `...`" for a plan's own text. */
std::string describe_where(const std::string *module_text, const std::string &file, int line) {
    if (line <= 0) return "";
    std::string text;
    if (file.empty() || ends_with(file, "kernel.cpp")) {
        const std::string t = module_text ? line_text(*module_text, line) : "";
        return "kernel source line " + std::to_string(line) + (t.empty() ? "" : ": `" + t + "`");
    }
    /* #line names templates relative to the source tree; addr2line may have
     * put the compiling directory before them */
    std::string shown = file;
    const size_t tpl = shown.rfind("templates/");
    if (tpl != std::string::npos) shown = shown.substr(tpl);
    std::string body;
    if (!sp_emu_read_file(std::string(SPRIG_EMU_DIR "/../../") + shown, &body)) sp_emu_read_file(file, &body);
    const std::string t = line_text(body, line);
    return shown + ":" + std::to_string(line) + (t.empty() ? "" : ": `" + t + "`");
}

/* file:line of a code address (a return address: the call is just before
 * it), from the module's debug information via addr2line: the innermost
 * frame outside sp_emu.h's inlined helpers. False if unknown. */
bool where_of(const void *pc, std::string *file, int *line) {
    Dl_info info;
    if (!pc || !dladdr(pc, &info) || !info.dli_fname || !info.dli_fbase) return false;
    char off[32];
    snprintf(off, sizeof off, "0x%zx", (size_t)((const char *)pc - 1 - (const char *)info.dli_fbase));
    int rc = 0;
    const std::string out = sp_emu_run_capture(std::string("addr2line -i -e '") + info.dli_fname + "' " + off, &rc);
    if (rc != 0) return false;
    size_t at = 0;
    while (at < out.size()) {
        size_t end = out.find('\n', at);
        std::string l = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
        const size_t disc = l.find(" (discriminator");
        if (disc != std::string::npos) l = l.substr(0, disc);
        const size_t colon = l.rfind(':');
        if (colon != std::string::npos && l.compare(0, 2, "??") != 0 && !ends_with(l.substr(0, colon), "sp_emu.h")) {
            *file = l.substr(0, colon);
            *line = atoi(l.c_str() + colon + 1);
            return *line > 0;
        }
        if (end == std::string::npos) break;
        at = end + 1;
    }
    return false;
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

void sp_emu_trap_at(const char *what, const void *code_address, const char *file, int line) {
    std::string msg = std::string(what) + " in thread (" + std::to_string(g_cur->tid.x) + "," +
                      std::to_string(g_cur->tid.y) + "," + std::to_string(g_cur->tid.z) + ") of CTA (" +
                      std::to_string(g_cta->bid.x) + "," + std::to_string(g_cta->bid.y) + "," +
                      std::to_string(g_cta->bid.z) + ")";
    sp_emu_access.active = 0; /* the line lookup below runs host code */
    std::string at_file = file ? file : "";
    if (!file || line <= 0) where_of(code_address, &at_file, &line);
    const std::string where = describe_where(g_cta->source, at_file, line);
    if (!where.empty()) msg += ", at " + where;
    g_cta->error = msg;
    g_cur->state = DONE;
    sp_emu_fiber_escape(&g_sched); /* may be in a signal handler: never returns */
    abort();
}

void sp_emu_trap(const char *what) { sp_emu_trap_at(what, __builtin_return_address(0), nullptr, 0); }

void sp_emu_maybe_yield(void) {
    if (--g_yield_countdown) return;
    g_yield_countdown = 1 + g_cta->rng->below(8);
    block_current(RUNNABLE);
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
    std::string text; /* what was compiled: the plan's source, then the entry points */
    int n_kernels;
    void (*entries[SPRIG_MAX_KERNELS])(void **);
    /* each kernel's parameter sizes (sp_emu_param_sizes), for recording launches */
    int n_params[SPRIG_MAX_KERNELS];
    size_t param_sizes[SPRIG_MAX_KERNELS][SP_EMU_MAX_PARAMS];
    int widest; /* the kernel with the most parameters */
    unsigned max_threads[SPRIG_MAX_KERNELS]; /* its __launch_bounds__, 0 if none */
    char *shared_lo, *shared_hi;             /* every __shared__ variable of the module */
};

/* Each kernel's __launch_bounds__ arguments, evaluated by the compiler where
 * the kernel is defined (they name the template's macros): before the line
 * that declares it goes `static const unsigned sp_emu_lb_NAME[3] = {ARGS, 0};`
 * on the same line, so line numbers stay the plan's. */
static void annotate_launch_bounds(std::string &text, const sprig_plan *plan, std::vector<std::string> *bounded) {
    static const char kLb[] = "__launch_bounds__(";
    size_t at = 0;
    while ((at = text.find(kLb, at)) != std::string::npos) {
        size_t open = at + sizeof kLb - 1, close = open;
        int depth = 1;
        while (close < text.size() && depth > 0) {
            if (text[close] == '(') ++depth;
            if (text[close] == ')') --depth;
            ++close;
        }
        const std::string args = text.substr(open, close - 1 - open);
        size_t name_at = text.find_first_not_of(" \t\n", close), name_end = name_at;
        while (name_end < text.size() && (isalnum((unsigned char)text[name_end]) || text[name_end] == '_')) ++name_end;
        const std::string name = name_at == std::string::npos ? "" : text.substr(name_at, name_end - name_at);
        bool is_kernel = false;
        for (int k = 0; k < plan->n_kernels; ++k) is_kernel = is_kernel || name == plan->kernels[k].name;
        if (!is_kernel || args.find('#') != std::string::npos) {
            at = close;
            continue;
        }
        const size_t line_start = text.rfind('\n', at) == std::string::npos ? 0 : text.rfind('\n', at) + 1;
        const std::string decl = "static const unsigned sp_emu_lb_" + name + "[3] = {" + args + ", 0}; ";
        text.insert(line_start, decl);
        bounded->push_back(name);
        at = close + decl.size();
    }
}

/* The text compiled for a plan: its source with the launch bounds recorded,
 * then per kernel an entry point taking cuLaunchKernel-style args, its
 * parameter sizes and bounds, and the bounds of the __shared__ section. */
static std::string module_text(const sprig_plan *plan) {
    std::string text(plan->source, plan->source_len);
    std::vector<std::string> bounded;
    annotate_launch_bounds(text, plan, &bounded);
    const std::string exported = "extern \"C\" __attribute__((visibility(\"default\"))) ";
    text += "\n// emulator entry points: cuLaunchKernel-style void **args\n";
    for (int k = 0; k < plan->n_kernels; ++k) {
        const std::string name = plan->kernels[k].name;
        text += exported + "void sp_emu_entry_" + name + "(void **a) { sp_emu_invoke(" + name + ", a); }\n";
        text += exported + "int sp_emu_sizes_" + name + "(size_t *s, int cap) { return sp_emu_param_sizes(" + name +
                ", s, cap); }\n";
    }
    for (const std::string &name : bounded)
        text += exported + "const unsigned *sp_emu_bounds_" + name + "(void) { return sp_emu_lb_" + name + "; }\n";
    /* the section's bounds, from the link script emu_shared.ld */
    text += "extern \"C\" char __start_sp_emu_shared[] __attribute__((weak, visibility(\"hidden\")));\n"
            "extern \"C\" char __stop_sp_emu_shared[] __attribute__((weak, visibility(\"hidden\")));\n" +
            exported + "void sp_emu_shared_bounds(char **lo, char **hi) { *lo = __start_sp_emu_shared; "
                       "*hi = __stop_sp_emu_shared; }\n";
    return text;
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
    sp_emu_module *mod = new sp_emu_module();
    mod->dir = tmpl;
    mod->text = module_text(plan);
    std::string so;
    sprig_status s = sp_emu_compile(mod->text, mod->dir, &so);
    if (s == SPRIG_OK) {
        mod->so = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!mod->so) s = sp_fail(SPRIG_E_COMPILE, "emu: dlopen %s: %s", so.c_str(), dlerror());
    }
    if (s != SPRIG_OK) {
        sp_emu_module_free(mod);
        return s;
    }
    for (int k = 0; k < plan->n_kernels; ++k) {
        const std::string name = plan->kernels[k].name;
        mod->entries[k] = (void (*)(void **))dlsym(mod->so, ("sp_emu_entry_" + name).c_str());
        int (*sizes)(size_t *, int) = (int (*)(size_t *, int))dlsym(mod->so, ("sp_emu_sizes_" + name).c_str());
        const unsigned *(*bounds)(void) = (const unsigned *(*)(void))dlsym(mod->so, ("sp_emu_bounds_" + name).c_str());
        if (!mod->entries[k] || !sizes) {
            sp_emu_module_free(mod);
            return sp_fail(SPRIG_E_COMPILE, "emu: kernel %s not found", plan->kernels[k].name);
        }
        mod->n_params[k] = sizes(mod->param_sizes[k], SP_EMU_MAX_PARAMS);
        mod->max_threads[k] = bounds ? bounds()[0] : 0;
        mod->n_kernels = k + 1;
    }
    void (*shared_bounds)(char **, char **) = (void (*)(char **, char **))dlsym(mod->so, "sp_emu_shared_bounds");
    if (shared_bounds) shared_bounds(&mod->shared_lo, &mod->shared_hi);
    if (!mod->shared_lo || mod->shared_hi < mod->shared_lo) mod->shared_lo = mod->shared_hi = nullptr;
    s = check_param_sizes(mod, plan);
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
    for (const char *f : {"/kernel.cpp", "/kernel.o", "/kernel.so"}) unlink((mod->dir + f).c_str());
    rmdir(mod->dir.c_str());
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

/* What CUDA refuses at launch (cudaErrorInvalidConfiguration and "too many
 * resources requested"): grid and block limits, the kernel's
 * __launch_bounds__, shared memory (48 KB static; 227 KB in all on sm_90). */
static sprig_status check_launch(const sp_emu_module *mod, int k, const sprig_launch *l, const sp_dim3 &b,
                                 const sp_dim3 &g) {
    const size_t static_smem = (size_t)(mod->shared_hi - mod->shared_lo);
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (!b.x || !b.y || !b.z || !g.x || !g.y || !g.z)
        return sp_fail(SPRIG_E_CUDA, "emu: %s: a zero grid or block dimension (grid %ux%ux%u, block %ux%ux%u)",
                       l->name, g.x, g.y, g.z, b.x, b.y, b.z);
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || threads > 1024)
        return sp_fail(SPRIG_E_CUDA, "emu: %s: block %ux%ux%u exceeds CUDA's limits (x, y <= 1024, z <= 64, "
                       "1024 threads)", l->name, b.x, b.y, b.z);
    if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        return sp_fail(SPRIG_E_CUDA, "emu: %s: grid %ux%ux%u exceeds CUDA's limits (x < 2^31, y, z <= 65535)",
                       l->name, g.x, g.y, g.z);
    if (mod->max_threads[k] && threads > mod->max_threads[k])
        return sp_fail(SPRIG_E_CUDA, "emu: %s: a block of %llu threads exceeds its __launch_bounds__(%u)", l->name,
                       threads, mod->max_threads[k]);
    if (static_smem > 48 * 1024)
        return sp_fail(SPRIG_E_CUDA, "emu: %s: %zu bytes of static __shared__ memory in its module, over CUDA's 48 KB",
                       l->name, static_smem);
    if (static_smem + l->smem_bytes > 227 * 1024)
        return sp_fail(SPRIG_E_CUDA, "emu: %s: %zu bytes of shared memory (%u dynamic), over the 227 KB of a CTA on sm_90",
                       l->name, static_smem + l->smem_bytes, l->smem_bytes);
    return SPRIG_OK;
}

/* The random schedule's seed from $SPRIG_EMU_SEED; 0 if unset (in order). */
static bool random_seed(uint64_t *seed) {
    const char *s = getenv("SPRIG_EMU_SEED");
    if (!s || !*s) return false;
    char *end = nullptr;
    *seed = strtoull(s, &end, 0);
    return *end == 0;
}

sprig_status sp_emu_plan_launch(sp_emu_module *mod, const sprig_plan *plan, void **args) {
    sp_emu_install_fault_handler();
    uint64_t seed = 0;
    const bool random = random_seed(&seed);
    Rng rng = {seed};
    /* a module that waits on the kernel before it is held to what PDL allows */
    const int pdl_check = mod->text.find("sp_emu_grid_dep_wait") != std::string::npos;
    for (int k = 0; k < plan->n_kernels; ++k) {
        const sprig_launch *l = &plan->kernels[k];
        sp_emu_pdl_launch(pdl_check);
        Cta cta;
        cta.entry = mod->entries[k];
        cta.args = args;
        cta.source = &mod->text;
        cta.rng = random ? &rng : nullptr;
        cta.shared_lo = mod->shared_lo, cta.shared_hi = mod->shared_hi;
        cta.shadow.resize((size_t)(cta.shared_hi - cta.shared_lo));
        cta.bdim = {l->block[0], l->block[1] ? l->block[1] : 1, l->block[2] ? l->block[2] : 1};
        cta.gdim = {l->grid[0], l->grid[1] ? l->grid[1] : 1, l->grid[2] ? l->grid[2] : 1};
        sprig_status s = check_launch(mod, k, l, cta.bdim, cta.gdim);
        if (s != SPRIG_OK) return s;
        const uint64_t n_ctas = (uint64_t)cta.gdim.x * cta.gdim.y * cta.gdim.z;
        std::vector<uint64_t> order;
        if (random) { /* CUDA promises no order between CTAs */
            order.resize(n_ctas);
            for (uint64_t i = 0; i < n_ctas; ++i) order[i] = i;
            for (uint64_t i = n_ctas; i > 1; --i) std::swap(order[i - 1], order[rng.next() % i]);
        }
        for (uint64_t i = 0; i < n_ctas; ++i) {
            const uint64_t c = random ? order[i] : i;
            const unsigned x = (unsigned)(c % cta.gdim.x), y = (unsigned)(c / cta.gdim.x % cta.gdim.y),
                           z = (unsigned)(c / ((uint64_t)cta.gdim.x * cta.gdim.y));
            cta.bid = {x, y, z};
            g_cta = &cta;
            bool ok = run_cta(cta);
            g_cta = nullptr;
            if (!ok) {
                if (random)
                    return sp_fail(SPRIG_E_CUDA, "emu: kernel %s, CTA (%u,%u,%u) (SPRIG_EMU_SEED=%llu): %s", l->name, x,
                                   y, z, (unsigned long long)seed, cta.error.c_str());
                return sp_fail(SPRIG_E_CUDA, "emu: kernel %s, CTA (%u,%u,%u): %s", l->name, x, y, z,
                               cta.error.c_str());
            }
        }
    }
    return SPRIG_OK;
}

} // extern "C"
