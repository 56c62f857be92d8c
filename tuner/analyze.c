/* The static performance model (see sp_analyze.h, docs/perf-model.md). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "sp_analyze.h"
#include "sp_error.h"
#include "sp_file.h"
#include "sp_gpu.h"
#include "sp_space.h"
#include "tuner_internal.h"

/* ---- the minimum: what the declared arguments must move --------------------------------- */

static double an_elem(const sprig_arg *a) { return !strcmp(a->type, "T") ? 2 : !strcmp(a->type, "u8") ? 1 : 4; }

/* A routed plan gathers its MLP weights and h at `active`: it reads union_ids
 * (or the union's bitmap, union_bits), or writes it and reads W_up (gather_upgate
 * route=sigmoid routes itself; a router that writes the lists from W_gate's
 * rows, score=silu_abs, reads all of them). */
static int an_routed(const sprig_plan *plan) {
    int reads_list = 0, writes_list = 0, gathers = 0;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (a->optional) continue;
        if (!strcmp(a->role, "union_ids") || !strcmp(a->role, "union_bits"))
            reads_list |= a->dir == SPRIG_ARG_IN, writes_list |= a->dir == SPRIG_ARG_OUT || a->dir == SPRIG_ARG_INOUT;
        gathers |= !strcmp(a->role, "w_up");
    }
    return reads_list || (writes_list && gathers);
}

static int an_gathered(const char *role) {
    return !strcmp(role, "w_gate") || !strcmp(role, "w_up") || !strcmp(role, "w_gate_up") ||
           !strcmp(role, "w_down") || !strcmp(role, "w_down_t") || !strcmp(role, "h");
}

/* Inputs read once, outputs written once (inout both); a routed plan reads
 * the active share of its MLP weights and h. Arguments whose size the request
 * does not know (count 0: a cache, an embedding table) count nothing here:
 * perf() says what of them must be read (unsized). */
static double an_bytes_min(const sprig_plan *plan, double active) {
    const int routed = an_routed(plan);
    double bytes = 0;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (!a->pointer || a->optional || a->dir == SPRIG_ARG_SCRATCH) continue;
        double b = (double)a->count * an_elem(a) * (a->dir == SPRIG_ARG_INOUT ? 2 : 1);
        if (routed && an_gathered(a->role)) b *= active;
        bytes += b;
    }
    return bytes;
}

/* ---- one kernel ---------------------------------------------------------------------------- */

/* CTAs an SM holds: registers (allocated per warp in units of 256), threads,
 * shared memory (1 KiB reserved per CTA), and the architecture's CTA limit. */
static int an_ctas_per_sm(const sp_gpu_profile *g, int regs, int smem, unsigned threads) {
    const int warps = (int)((threads + 31) / 32);
    int n = g->max_ctas_per_sm;
    const int by_threads = g->max_threads_per_sm / (warps * 32);
    if (by_threads < n) n = by_threads;
    if (regs > 0) {
        const int per_warp = (regs * 32 + 255) / 256 * 256;
        const int by_regs = g->regs_per_sm / per_warp / warps;
        if (by_regs < n) n = by_regs;
    }
    const int by_smem = g->smem_per_sm_kb * 1024 / (smem + 1024);
    if (by_smem < n) n = by_smem;
    return n > 0 ? n : 0;
}

static void an_predict(const sp_gpu_profile *g, const sp_gen_perf *p, sp_analyze_kernel *k) {
    k->working = p->working > 0 ? p->working : k->ctas;
    k->bytes = p->read + p->write;
    k->rounds = p->rounds + p->l2_rounds;
    const double slots = (double)g->sms * k->ctas_per_sm;
    k->waves = slots > 0 ? k->working / slots : INFINITY;
    const double resident = k->working < slots ? k->working : slots;
    const double warps = ceil(k->threads / 32.0);
    k->inflight_bytes = resident * warps * 32 * p->inflight * p->load_bytes;
    const double latency = p->hot && g->l2_latency_ns > 0 ? g->l2_latency_ns : g->latency_ns;
    const double need = g->read_gbs * latency; /* 1e9 B/s x 1e-9 s */
    k->littles = need > 0 ? fmin(1.0, k->inflight_bytes / need) : 1.0;
    const double bw = g->read_gbs * 1e3 * (k->littles > 0 ? k->littles : 1e-9); /* bytes per us */
    const double l2 = g->l2_latency_ns > 0 ? g->l2_latency_ns : g->latency_ns;
    k->t_us = g->kernel_us + (p->rounds * latency + p->l2_rounds * l2) / 1e3 + (k->bytes > 0 ? k->bytes / bw : 0);
    k->prefetch = p->prefetch;
    k->tail_model = p->tail;
}

/* ---- SASS --------------------------------------------------------------------------------- */

int sp_analyze_find_nvdisasm(char *buf, size_t cap) {
    const char *env = getenv("SPRIG_NVDISASM");
    if (env && *env) return snprintf(buf, cap, "%s", env), access(buf, X_OK) == 0;
    const char *path = getenv("PATH");
    char dirs[8192];
    snprintf(dirs, sizeof dirs, "%s:/usr/local/cuda/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, cap, "%s/nvdisasm", d);
        if (access(buf, X_OK) == 0) return 1;
    }
    const char *data = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (data && *data) snprintf(buf, cap, "%s/sprig/tools/nvdisasm", data);
    else snprintf(buf, cap, "%s/.local/share/sprig/tools/nvdisasm", home ? home : "");
    return access(buf, X_OK) == 0;
}

static int an_is_fp_math(const char *op) {
    static const char *const ops[] = {"FFMA", "FMUL", "FADD", "HFMA2", "HMUL2", "HADD2", "HMMA", "FMNMX"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; ++i)
        if (!strncmp(op, ops[i], strlen(ops[i]))) return 1;
    return 0;
}

/* A global load's width in bytes from its opcode (LDG.E.128, LDG.E.64,
 * LDG.E.U16.CONSTANT, LDG.E: 4); the operands (desc[UR4][R2.64]) are not read. */
static int an_ldg_width(const char *opcode) {
    if (strstr(opcode, ".128")) return 16;
    if (strstr(opcode, ".64")) return 8;
    if (strstr(opcode, ".U8") || strstr(opcode, ".S8")) return 1;
    if (strstr(opcode, ".U16") || strstr(opcode, ".S16")) return 2;
    return 4;
}

/* The registers an operand list names (R12, R4.64: R4 and R5, -R3, |R3|; not
 * RZ or uniform registers UR8), each marked in regs[256]; `wide` registers
 * per name for the destination of a vector load. */
static void an_sass_regs(const char *s, const char *end, unsigned char *regs, int wide) {
    for (const char *p = s; p < end; ++p) {
        if (*p != 'R' || (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) || !isdigit((unsigned char)p[1]))
            continue;
        const int r = atoi(p + 1);
        int n = wide;
        const char *q = p + 1;
        while (q < end && isdigit((unsigned char)*q)) ++q;
        if (q + 3 <= end && !strncmp(q, ".64", 3)) n = n > 2 ? n : 2;
        for (int i = 0; i < n && r + i < 256; ++i) regs[r + i] = 1;
    }
}

/* The serial tail, one instruction at a time: after the last arrival ticket
 * (ATOMG), a use of a pending load's result with loads still to issue is a
 * round trip one CTA waits (++*rounds); each LDG's destinations then pend.
 * `operands` runs from after the opcode to the end of the line. Text order
 * counts a loop's body once, so the labels after the ticket are kept with the
 * count at each, and a branch back to one adds the round trips since it to
 * loop_rounds: each further trip repeats them. */
#define AN_TAIL_LABELS 64
typedef struct an_tail {
    int after_ticket, rounds, loop_rounds;
    unsigned char pending[256]; /* registers a global load will write, not yet used */
    int n_labels, label_id[AN_TAIL_LABELS], label_rounds[AN_TAIL_LABELS];
} an_tail;

/* The number of an nvdisasm label (.L_x_12) at s, or -1. */
static int an_label_id(const char *s) {
    return !strncmp(s, ".L_x_", 5) && isdigit((unsigned char)s[5]) ? atoi(s + 5) : -1;
}

/* A label line (".L_x_12:") in the tail. */
static void an_tail_label(an_tail *t, int id) {
    if (!t->after_ticket || id < 0 || t->n_labels == AN_TAIL_LABELS) return;
    t->label_id[t->n_labels] = id, t->label_rounds[t->n_labels] = t->rounds;
    ++t->n_labels;
}

/* A branch (BRA `(.L_x_12)): back to a label of the tail, a loop. */
static void an_tail_branch(an_tail *t, const char *operands) {
    const char *l = strstr(operands, ".L_x_");
    const int id = l ? an_label_id(l) : -1;
    for (int i = 0; i < t->n_labels; ++i)
        if (t->label_id[i] == id) t->loop_rounds += t->rounds - t->label_rounds[i];
}

static void an_tail_step(an_tail *t, const char *opcode, const char *operands) {
    if (!strncmp(opcode, "ATOMG", 5)) { /* a later ticket: the tail starts again */
        memset(t, 0, sizeof *t);
        t->after_ticket = 1;
        return;
    }
    if (!t->after_ticket) return;
    const char *semi = strchr(operands, ';');
    if (!semi) semi = operands + strlen(operands);
    const char *srcs = operands; /* stores name no destination; the rest name it first */
    if (strncmp(opcode, "ST", 2) && strncmp(opcode, "RED", 3)) {
        const char *comma = memchr(operands, ',', (size_t)(semi - operands));
        srcs = comma ? comma + 1 : semi;
    }
    unsigned char used[256] = {0};
    an_sass_regs(srcs, semi, used, 1);
    for (int r = 0; r < 256; ++r)
        if (used[r] && t->pending[r]) {
            ++t->rounds;
            memset(t->pending, 0, sizeof t->pending);
            break;
        }
    if (!strncmp(opcode, "LDG", 3)) {
        const int regs = an_ldg_width(opcode) / 4;
        an_sass_regs(operands, srcs, t->pending, regs > 1 ? regs : 1);
    } else if (!strcmp(opcode, "BRA")) {
        an_tail_branch(t, operands);
    }
}

/* Counts one function's global loads by width, its streamed (evict-first:
 * the weights, sp_load_vec_stream) loads, and the longest runs of loads and
 * of streamed loads issued before a floating-point instruction uses anything. */
static void an_sass_function(FILE *fp, const char *name, sp_analyze_kernel *k) {
    char line[1024], want[128];
    snprintf(want, sizeof want, ".text.%s:", name);
    int in = 0, run = 0, stream_run = 0;
    k->ldg128 = k->ldg64 = k->ldg32 = k->ldg_sub = k->stream = k->stream128 = 0;
    k->loads_before_use = k->stream_before_use = 0;
    k->sass_waits = k->sass_releases = k->sass_prefetch_before_wait = k->sass_writes_before_wait = 0;
    an_tail tail;
    memset(&tail, 0, sizeof tail);
    rewind(fp);
    while (fgets(line, sizeof line, fp)) {
        if (!in) {
            in = strstr(line, want) != NULL;
            continue;
        }
        if (strstr(line, ".text.") && strstr(line, "//----")) break; /* the next function */
        const char *lab = line;
        while (isspace((unsigned char)*lab)) ++lab;
        an_tail_label(&tail, an_label_id(lab)); /* -1: not a label line */
        const char *op = strstr(line, "*/");
        if (!op) continue;
        op += 2;
        while (isspace((unsigned char)*op)) ++op;
        if (*op == '@') /* a predicate guard: @P0, @!P1 */
            while (*op && !isspace((unsigned char)*op)) ++op;
        while (isspace((unsigned char)*op)) ++op;
        char opcode[64];
        size_t n = 0;
        while (op[n] && !isspace((unsigned char)op[n]) && n + 1 < sizeof opcode) opcode[n] = op[n], ++n;
        opcode[n] = '\0';
        an_tail_step(&tail, opcode, op + n);
        if (!strncmp(opcode, "LDG", 3)) {
            const int w = an_ldg_width(opcode);
            if (w == 16) ++k->ldg128;
            else if (w == 8) ++k->ldg64;
            else if (w == 4) ++k->ldg32;
            else ++k->ldg_sub;
            if (++run > k->loads_before_use) k->loads_before_use = run;
            if (strstr(opcode, ".EF")) {
                ++k->stream;
                if (w == 16) ++k->stream128;
                if (++stream_run > k->stream_before_use) k->stream_before_use = stream_run;
            }
        } else if (an_is_fp_math(opcode)) {
            run = stream_run = 0;
        } else if (!strcmp(opcode, "ACQBULK")) { /* griddepcontrol.wait */
            ++k->sass_waits;
        } else if (!strcmp(opcode, "PREEXIT")) { /* griddepcontrol.launch_dependents */
            ++k->sass_releases;
        } else if (!k->sass_waits && !strncmp(opcode, "CCTL", 4) && strstr(opcode, ".PF")) {
            ++k->sass_prefetch_before_wait; /* prefetch.global.L2 */
        } else if (!k->sass_waits && (!strncmp(opcode, "STG", 3) || !strncmp(opcode, "ATOMG", 5) ||
                                      !strncmp(opcode, "REDG", 4) || !strncmp(opcode, "RED.", 4))) {
            ++k->sass_writes_before_wait;
        }
    }
    k->tail_rounds = tail.rounds;
    k->tail_loop_rounds = tail.loop_rounds;
}

/* Disassembles the cubin once and reads every kernel of the plan from it. */
static void an_sass(const char *nvdisasm, const sprig_binary *bin, sp_analyze_plan *out) {
    for (int i = 0; i < out->n; ++i) {
        sp_analyze_kernel *k = &out->k[i];
        k->ldg128 = k->ldg64 = k->ldg32 = k->ldg_sub = k->stream = k->stream128 = -1;
        k->loads_before_use = k->stream_before_use = -1;
        k->sass_waits = k->sass_releases = k->sass_prefetch_before_wait = k->sass_writes_before_wait = -1;
        k->tail_rounds = k->tail_loop_rounds = -1;
    }
    if (!nvdisasm || !*nvdisasm || bin->is_ptx) return;
    char cubin[] = "/tmp/sprig-analyze-XXXXXX";
    int fd = mkstemp(cubin);
    if (fd < 0) return;
    const int wrote = write(fd, bin->image, bin->image_size) == (ssize_t)bin->image_size;
    close(fd);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "'%s' -c '%s' 2>/dev/null", nvdisasm, cubin);
    FILE *p = wrote ? popen(cmd, "r") : NULL;
    FILE *text = p ? tmpfile() : NULL;
    if (p && text) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) fwrite(buf, 1, n, text);
    }
    if (p) pclose(p);
    unlink(cubin);
    if (!text) return;
    for (int i = 0; i < out->n; ++i) an_sass_function(text, out->k[i].name, &out->k[i]);
    fclose(text);
}

/* ---- one request -------------------------------------------------------------------------- */

sprig_status sp_analyze_request(sprig_gen *gen, const sprig_request *req, const sp_analyze_opts *o,
                                sp_analyze_plan *out) {
    memset(out, 0, sizeof *out);
    if (!gen || !req || !o || !o->gpu) return sp_fail(SPRIG_E_INVALID, "sp_analyze_request: NULL argument");
    const double active = o->active > 0 ? o->active : 1.0;
    sprig_plan *plan = NULL;
    SP_TRY(sprig_gen_render(gen, req, &plan));
    snprintf(out->family, sizeof out->family, "%s", plan->family);
    const char *bar = strchr(plan->key, '|');
    snprintf(out->params, sizeof out->params, "%s", bar ? bar + 1 : "");
    sp_gen_perf perf[SP_ANALYZE_MAX_KERNELS];
    int n_perf = 0;
    sprig_status s = sp_gen_perf_of(gen, req, active, o->context > 0 ? o->context : 512, perf, SP_ANALYZE_MAX_KERNELS,
                                    &n_perf);
    sprig_binary *bin = NULL;
    if (s == SPRIG_OK) {
        sprig_compile_opts co = {o->gpu->arch, 0, o->cache_dir, 0};
        s = sprig_compile(plan, &co, &bin);
    }
    if (s == SPRIG_OK) {
        out->n = plan->n_kernels;
        for (int i = 0; i < plan->n_kernels; ++i) {
            sp_analyze_kernel *k = &out->k[i];
            const sprig_launch *l = &plan->kernels[i];
            snprintf(k->name, sizeof k->name, "%s", l->name);
            k->ctas = l->grid[0] * l->grid[1] * l->grid[2];
            k->threads = l->block[0] * l->block[1] * l->block[2];
            k->regs = bin->res[i].registers;
            k->smem = bin->res[i].static_smem_bytes + (int)l->smem_bytes;
            k->spill = bin->res[i].spill_store_bytes < 0 ? -1 /* unknown: the log had no report */
                                                         : bin->res[i].spill_store_bytes + bin->res[i].spill_load_bytes;
            k->ctas_per_sm = an_ctas_per_sm(o->gpu, k->regs, k->smem, k->threads);
            an_predict(o->gpu, &perf[i], k);
            out->bytes += k->bytes;
            out->t_us += k->t_us;
        }
        char dis[4096] = "";
        if (o->disassembler) snprintf(dis, sizeof dis, "%s", o->disassembler);
        else if (!sp_analyze_find_nvdisasm(dis, sizeof dis)) dis[0] = '\0';
        an_sass(dis, bin, out);
        out->bytes_min = an_bytes_min(plan, active);
        int syncs = 0;
        for (int i = 0; i < n_perf; ++i) out->bytes_min += perf[i].unsized, syncs += perf[i].grid_syncs;
        out->roof_us = out->bytes_min / (o->gpu->read_gbs * 1e3);
        const double l2 = o->gpu->l2_latency_ns > 0 ? o->gpu->l2_latency_ns : o->gpu->latency_ns;
        out->attainable_us = out->roof_us + out->n * o->gpu->kernel_us + (o->gpu->latency_ns + 3 * syncs * l2) / 1e3;
    }
    sprig_binary_free(bin);
    sprig_plan_free(plan);
    return s;
}

/* ---- a decode step ------------------------------------------------------------------------- */

void sp_analyze_step_free(sp_analyze_step *s) {
    if (!s) return;
    free(s->rows);
    memset(s, 0, sizeof *s);
}

static int an_find_row(const sp_analyze_step *s, const sprig_plan *plan, const char *const *keys) {
    for (int i = 0; i < s->n; ++i)
        if (!strcmp(keys[i], plan->key)) return i;
    return -1;
}

sprig_status sp_analyze_step_of(sprig_gen *gen, const sp_model_config *cfg, int mode, const char *dtype,
                                const sp_analyze_opts *o, sp_analyze_step *out) {
    memset(out, 0, sizeof *out);
    sp_gpu_kernels *ks = NULL;
    sp_gpu_step step;
    memset(&step, 0, sizeof step);
    SP_TRY(sp_gpu_kernels_open(NULL, &ks));
    sprig_status s = sp_gpu_describe(ks, cfg, (sp_mlp_mode)mode, dtype, &step);
    const char **keys = NULL;
    if (s == SPRIG_OK) {
        out->rows = calloc((size_t)(step.n ? step.n : 1), sizeof *out->rows);
        keys = calloc((size_t)(step.n ? step.n : 1), sizeof *keys);
        if (!out->rows || !keys) s = sp_fail(SPRIG_E_NOMEM, "out of memory");
    }
    for (int i = 0; s == SPRIG_OK && i < step.n; ++i) {
        const sp_gpu_launch *l = &step.launches[i];
        int r = an_find_row(out, l->plan, keys);
        if (r < 0) {
            r = out->n++;
            keys[r] = l->plan->key;
            sprig_request req = {l->plan->family, l->d, l->f, dtype, 1, l->g, l->params};
            s = sp_analyze_request(gen, &req, o, &out->rows[r].plan);
        }
        if (s != SPRIG_OK) break;
        const sp_analyze_plan *p = &out->rows[r].plan;
        ++out->rows[r].count;
        out->t_us += p->t_us;
        out->bytes_min += p->bytes_min;
        out->kernels += l->plan->n_kernels;
        for (int k = 0; k < p->n; ++k) /* a prefetch's first round trip overlaps the kernel before */
            if (p->k[k].prefetch) out->pdl_hidden_us += o->gpu->latency_ns / 1e3;
    }
    if (s == SPRIG_OK) {
        out->layers = cfg->num_hidden_layers;
        out->gaps_us = out->kernels * o->gpu->launch_us;
        out->t_us += out->gaps_us;
        if (out->kernels > 1) out->pdl_hidden_us += (out->kernels - 1) * o->gpu->launch_us;
        out->t_pdl_us = out->t_us - out->pdl_hidden_us;
        out->roof_us = out->bytes_min / (o->gpu->read_gbs * 1e3);
    }
    free(keys);
    sp_gpu_step_free(&step);
    sp_gpu_kernels_close(ks);
    if (s != SPRIG_OK) sp_analyze_step_free(out);
    return s;
}

/* ---- the tuner's filter ------------------------------------------------------------------ */

uint64_t sp_plan_identity(const sprig_plan *plan) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, plan->source, plan->source_len);
    XXH3_64bits_update(h, plan->kernels, sizeof plan->kernels[0] * (size_t)plan->n_kernels);
    XXH3_64bits_update(h, &plan->workspace_bytes, sizeof plan->workspace_bytes);
    XXH3_64bits_update(h, plan->args, sizeof plan->args[0] * (size_t)plan->n_args);
    const uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return v;
}

/* The prediction without a render or a compile: the spec's perf() with its
 * launch; occupancy from threads and dynamic shared memory only (registers
 * unknown). */
static sprig_status an_quick_predict(sprig_gen *gen, const sprig_request *req, const sp_analyze_opts *o,
                                     double *t_us) {
    sp_gen_perf perf[SP_ANALYZE_MAX_KERNELS];
    int n = 0;
    SP_TRY(sp_gen_perf_of(gen, req, o->active > 0 ? o->active : 1.0, o->context > 0 ? o->context : 512, perf,
                          SP_ANALYZE_MAX_KERNELS, &n));
    *t_us = 0;
    for (int i = 0; i < n; ++i) {
        sp_analyze_kernel k = {0};
        k.ctas = perf[i].ctas, k.threads = perf[i].threads;
        k.ctas_per_sm = an_ctas_per_sm(o->gpu, 0, perf[i].smem, k.threads);
        an_predict(o->gpu, &perf[i], &k);
        *t_us += k.t_us;
    }
    return SPRIG_OK;
}

typedef struct an_cand {
    size_t index;
    uint64_t tie;   /* a fixed pseudo-random order among equal predictions */
    double t_us;
} an_cand;

static uint64_t an_mix(uint64_t x) { /* splitmix64's finaliser */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int an_by_time(const void *a, const void *b) {
    const an_cand *x = a, *y = b;
    if (x->t_us != y->t_us) return x->t_us < y->t_us ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

static int an_by_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void sp_analyze_rank_free(sp_analyze_rank *r) {
    if (!r) return;
    free(r->keep);
    free(r->predicted_us);
    memset(r, 0, sizeof *r);
}

/* Renders candidates in ranked order, keeping the first of each plan identity,
 * until max_keep are kept (0: all); the default's twin stays whatever its rank. */
static sprig_status an_keep_distinct(sprig_gen *gen, const sprig_request *req, const sp_space *space,
                                     const an_cand *c, size_t n, long def, size_t max_keep, sp_analyze_rank *out) {
    uint64_t *seen = malloc((n ? n : 1) * sizeof *seen);
    out->keep = malloc((n ? n : 1) * sizeof *out->keep);
    out->predicted_us = malloc((n ? n : 1) * sizeof *out->predicted_us);
    if (!seen || !out->keep || !out->predicted_us) {
        free(seen);
        return sp_fail(SPRIG_E_NOMEM, "out of memory ranking a tuning space");
    }
    size_t n_seen = 0; /* seen[0..n_seen) kept sorted: binary search */
    for (size_t i = 0; i < n; ++i) {
        const int is_def = (long)c[i].index == def;
        if (max_keep && out->n_keep >= max_keep && !is_def) continue;
        sprig_request r = *req;
        r.params = space->params[c[i].index];
        sprig_plan *plan = NULL;
        uint64_t id = an_mix(c[i].index) | 1u; /* one that does not render is its own: the search reports it */
        if (sprig_gen_render(gen, &r, &plan) == SPRIG_OK) id = sp_plan_identity(plan) & ~(uint64_t)1;
        sprig_plan_free(plan);
        ++out->n_rendered;
        if (bsearch(&id, seen, n_seen, sizeof *seen, an_by_u64)) continue;
        size_t at = n_seen;
        while (at > 0 && seen[at - 1] > id) seen[at] = seen[at - 1], --at;
        seen[at] = id, ++n_seen;
        out->keep[out->n_keep] = c[i].index;
        out->predicted_us[out->n_keep++] = c[i].t_us;
    }
    out->n_distinct = n_seen;
    free(seen);
    return SPRIG_OK;
}

sprig_status sp_analyze_rank_space(sprig_gen *gen, const sprig_request *req, const sp_space *space,
                                   const sp_analyze_opts *o, double keep_within, size_t max_keep,
                                   sp_analyze_rank *out) {
    memset(out, 0, sizeof *out);
    if (!gen || !req || !space || !o || !o->gpu) return sp_fail(SPRIG_E_INVALID, "sp_analyze_rank_space: NULL argument");
    out->n_space = space->n;
    an_cand *c = calloc(space->n ? space->n : 1, sizeof *c);
    SP_CHECK_ALLOC(c);
    for (size_t i = 0; i < space->n; ++i) {
        sprig_request r = *req;
        r.params = space->params[i];
        c[i].index = i, c[i].tie = an_mix(i);
        if (an_quick_predict(gen, &r, o, &c[i].t_us) != SPRIG_OK) c[i].t_us = INFINITY; /* last: the search says why */
    }
    qsort(c, space->n, sizeof *c, an_by_time);
    out->best_us = space->n ? c[0].t_us : 0;
    size_t n = 0; /* those within the factor, and the default */
    for (size_t i = 0; i < space->n; ++i)
        if (keep_within <= 0 || c[i].t_us <= keep_within * out->best_us || (long)c[i].index == space->default_index)
            c[n++] = c[i];
    out->n_within = n;
    sprig_status s = an_keep_distinct(gen, req, space, c, n, space->default_index, max_keep, out);
    free(c);
    if (s != SPRIG_OK) sp_analyze_rank_free(out);
    return s;
}
