/* The family-test harness (see family_harness.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_emu.h"
#include "family_harness.h"
#include "sp_bench.h"
#include "sp_half.h"
#include "sp_kargs.h"
#include "sp_measure.h"
#include "test_util.h"

#define FH_POISON 0xFF

uint16_t fh_to_bits(int bf16, float v) { return bf16 ? sp_f32_to_bf16(v) : sp_f32_to_f16(v); }
float fh_from_bits(int bf16, uint16_t b) { return bf16 ? sp_bf16_to_f32(b) : sp_f16_to_f32(b); }

int fh_open(fh_ctx *c) {
    memset(c, 0, sizeof *c);
    CHECK_MSG(sprig_gen_open(&c->gen, NULL) == SPRIG_OK, "%s", sprig_last_error());
    CHECK_MSG(sp_exec_open_emu(&c->exec) == SPRIG_OK, "%s", sprig_last_error());
    return c->gen && c->exec ? 0 : -1;
}

void fh_close(fh_ctx *c) {
    sp_exec_close(c->exec);
    sprig_gen_close(c->gen);
    memset(c, 0, sizeof *c);
}

static size_t fh_elem(const sprig_arg *a) { return !strcmp(a->type, "T") ? 2 : !strcmp(a->type, "u8") ? 1 : 4; }

static int fh_index(const fh_run *r, const char *name) {
    for (int i = 0; r->plan && i < r->plan->n_args; ++i)
        if (!strcmp(r->plan->args[i].name, name)) return i;
    return -1;
}

int fh_prepare(fh_ctx *c, fh_run *r, const char *family, int d, int f, const char *dtype, int batch, int g,
               const char *params) {
    memset(r, 0, sizeof *r);
    sprig_request req = {family, d, f, dtype, batch, g, params};
    sprig_status s = sprig_gen_render(c->gen, &req, &r->plan);
    CHECK_MSG(s == SPRIG_OK, "%s [%s]: %s", family, params ? params : "", sprig_last_error());
    if (s != SPRIG_OK) return -1;
    s = sp_exec_load(c->exec, r->plan, &r->mod);
    CHECK_MSG(s == SPRIG_OK, "loading %s: %s", r->plan->key, sprig_last_error());
    for (int i = 0; s == SPRIG_OK && i < r->plan->n_args; ++i) {
        const sprig_arg *a = &r->plan->args[i];
        if (!a->pointer) continue;
        r->bytes[i] = a->count * fh_elem(a);
        /* emulator buffers start 16-byte aligned: offset by the declared alignment if less */
        const size_t pad = a->align > 0 && a->align < 16 ? (size_t)a->align : 0;
        s = sp_exec_alloc(c->exec, &r->alloc[i], r->bytes[i] + pad);
        r->dev[i] = r->alloc[i] + pad;
        if (s == SPRIG_OK && a->dir == SPRIG_ARG_SCRATCH) s = sp_exec_fill(c->exec, r->dev[i], 0, r->bytes[i]);
    }
    CHECK_MSG(s == SPRIG_OK, "buffers for %s: %s", r->plan->key, sprig_last_error());
    return s == SPRIG_OK ? 0 : -1;
}

int fh_input(fh_ctx *c, fh_run *r, const char *name, const void *bytes) {
    const int i = fh_index(r, name);
    CHECK_MSG(i >= 0 && r->plan->args[i].pointer, "%s declares no pointer argument '%s'", r->plan->family, name);
    if (i < 0) return -1;
    return sp_exec_upload(c->exec, r->dev[i], bytes, r->bytes[i]) == SPRIG_OK ? 0 : -1;
}

int fh_scalar(fh_run *r, const char *name, float v) {
    const int i = fh_index(r, name);
    CHECK_MSG(i >= 0 && !r->plan->args[i].pointer, "%s declares no value argument '%s'", r->plan->family, name);
    if (i >= 0) r->scalars[i] = v;
    return i >= 0 ? 0 : -1;
}

static int fh_is_output(const sprig_arg *a) { return a->dir == SPRIG_ARG_OUT || a->dir == SPRIG_ARG_INOUT; }

int fh_launch(fh_ctx *c, fh_run *r) {
    sp_kargs k;
    sp_kargs_init(&k, r->plan);
    sprig_status s = SPRIG_OK;
    for (int i = 0; s == SPRIG_OK && i < r->plan->n_args; ++i) {
        const sprig_arg *a = &r->plan->args[i];
        if (!a->pointer) {
            sp_kargs_f32(&k, a->name, r->scalars[i]);
            continue;
        }
        if (a->dir == SPRIG_ARG_OUT) s = sp_exec_fill(c->exec, r->dev[i], FH_POISON, r->bytes[i]);
        sp_kargs_ptr(&k, a->name, r->dev[i]);
    }
    if (s == SPRIG_OK) s = sp_kargs_launch(c->exec, r->mod, &k);
    if (s == SPRIG_OK) s = sp_exec_sync(c->exec);
    CHECK_MSG(s == SPRIG_OK, "launching %s: %s", r->plan->key, sprig_last_error());
    for (int i = 0; s == SPRIG_OK && i < r->plan->n_args; ++i) {
        const sprig_arg *a = &r->plan->args[i];
        if (!a->pointer || !fh_is_output(a)) continue;
        free(r->host[i]);
        r->host[i] = malloc(r->bytes[i] ? r->bytes[i] : 1);
        if (!r->host[i] || sp_exec_download(c->exec, r->host[i], r->dev[i], r->bytes[i]) != SPRIG_OK) return -1;
    }
    return s == SPRIG_OK ? 0 : -1;
}

const void *fh_output(const fh_run *r, const char *name) {
    const int i = fh_index(r, name);
    return i >= 0 ? r->host[i] : NULL;
}

void fh_release(fh_ctx *c, fh_run *r) {
    for (int i = 0; i < SPRIG_MAX_ARGS; ++i) {
        sp_exec_free(c->exec, r->alloc[i]);
        free(r->host[i]);
    }
    sp_exec_unload(c->exec, r->mod);
    sprig_plan_free(r->plan);
    memset(r, 0, sizeof *r);
}

int fh_tuned(fh_ctx *c, const char *family, int d, int f, const char *dtype, int batch, int g, double sparsity,
             const char *fixed) {
    sp_measure_opts mo;
    sp_measure_opts_init(&mo);
    mo.warmup = 0, mo.reps = 1;
    sp_measure *m = NULL;
    if (sp_measure_open(&m, c->exec, c->gen, &mo) != SPRIG_OK) return 0;
    const sp_tune_key key = {family, d, f, dtype, batch, g, sparsity, fixed};
    sp_measurement out;
    sprig_status s = sp_measure_candidate(m, &key, fixed ? fixed : "", &out);
    sp_measure_close(m);
    CHECK_MSG(s == SPRIG_OK && out.verdict == SP_VERDICT_OK, "the tuner's measurement of %s: %s (%s)", family,
              s == SPRIG_OK ? out.note : sprig_last_error(), s == SPRIG_OK ? "verdict" : "error");
    return s == SPRIG_OK && out.verdict == SP_VERDICT_OK;
}

int fh_benched(fh_ctx *c, const char *family, int d, int f, const char *dtype, int batch, int g,
               const char *fixed, double want_bytes) {
    sp_db_set set;
    sp_db_set_init(&set);
    const sp_gpu_id gpu = {"CPU emulator", 0, 0, 0};
    const int batches[] = {batch};
    const double sparsities[] = {0};
    sp_bench_kernel_opts o = {family, fixed, d, f, g, dtype, NULL, batches, 1, sparsities, 1, 0, 1, 1, 0, &set, &gpu};
    sp_bench_kernel_report r;
    sprig_status s = sp_bench_kernels(c->exec, c->gen, &o, &r);
    int ok = s == SPRIG_OK && r.n == 1 && r.rows[0].us >= 0;
    CHECK_MSG(ok, "sprig bench --family %s: %s", family,
              s != SPRIG_OK ? sprig_last_error() : r.n ? r.rows[0].note : "no row");
    if (ok && want_bytes > 0) {
        ok = r.rows[0].bytes == want_bytes;
        CHECK_MSG(ok, "bench %s: %.0f bytes counted, %.0f declared", family, r.rows[0].bytes, want_bytes);
    }
    sp_bench_kernel_report_free(&r);
    sp_db_set_free(&set);
    return ok;
}
