/* sprig bench --family: one family's kernels timed against the roof of the
 * bytes their declared arguments occupy (see sp_bench.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sp_bench.h"
#include "sp_error.h"
#include "sp_measure.h"
#include "sp_mlp_keys.h"
#include "sp_space.h"
#include "tuner_internal.h"

void sp_bench_kernel_report_free(sp_bench_kernel_report *r) {
    if (!r) return;
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* The bytes a plan's declared arguments occupy: inputs read, outputs written. */
static double bk_bytes(const sprig_plan *plan) {
    double bytes = 0;
    for (int i = 0; i < plan->n_args; ++i) {
        const sprig_arg *a = &plan->args[i];
        if (!a->pointer || a->optional || a->dir == SPRIG_ARG_SCRATCH) continue;
        const double elem = !strcmp(a->type, "T") ? 2 : !strcmp(a->type, "u8") ? 1 : 4;
        bytes += (double)a->count * elem * (a->dir == SPRIG_ARG_INOUT ? 2 : 1);
    }
    return bytes;
}

/* Looks the row's params up, then measures them (verify, time). */
static sprig_status bk_row(sprig_gen *gen, sp_measure *m, const sp_bench_kernel_opts *o, int v,
                           sp_bench_kernel_row *row, double read_gbs) {
    sp_lookup_result lr;
    memset(&lr, 0, sizeof lr);
    sprig_status s;
    if (o->fixed) {
        sprig_request req = {o->family, o->d, o->f, o->dtype, row->batch, o->g, o->fixed};
        char *defaults = NULL;
        int valid = 0;
        s = sp_space_defaults(gen, &req, &defaults, &valid);
        if (s == SPRIG_OK) snprintf(lr.params, sizeof lr.params, "%s", defaults), lr.source = SP_LOOKUP_GENERIC_DEFAULT;
        free(defaults);
    } else {
        s = sp_mlp_lookup(gen, o->dbs, o->gpu, o->family, v, o->d, o->f, o->dtype, row->batch, o->g, row->sparsity,
                          &lr);
    }
    if (s == SPRIG_E_INVALID) {
        snprintf(row->note, sizeof row->note, "%s", sprig_last_error());
        return SPRIG_OK;
    }
    SP_TRY(s);
    snprintf(row->params, sizeof row->params, "%s", lr.params);
    snprintf(row->source, sizeof row->source, "%s", sp_lookup_source_name(lr.source));
    sprig_request req = {o->family, o->d, o->f, o->dtype, row->batch, o->g, lr.params};
    sprig_plan *plan = NULL;
    if (sprig_gen_render(gen, &req, &plan) == SPRIG_OK) row->bytes = bk_bytes(plan);
    sprig_plan_free(plan);
    if (read_gbs > 0 && row->bytes > 0) row->roof_us = row->bytes / (read_gbs * 1e3);
    const sp_tune_key key = {o->family, o->d, o->f, o->dtype, row->batch, o->g, row->sparsity, row->fixed};
    sp_measurement meas;
    SP_TRY(sp_measure_candidate(m, &key, lr.params, &meas));
    row->rel_err = meas.rel_err;
    if (meas.verdict == SP_VERDICT_OK) row->us = meas.median_us;
    else snprintf(row->note, sizeof row->note, "%s: %s", sp_verdict_name(meas.verdict), meas.note);
    return SPRIG_OK;
}

/* Appends a row (grows the array); NULL when out of memory. */
static sp_bench_kernel_row *bk_push(sp_bench_kernel_report *r, size_t *cap) {
    if (r->n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        sp_bench_kernel_row *grown = realloc(r->rows, sizeof *grown * c);
        if (!grown) return NULL;
        r->rows = grown, *cap = c;
    }
    sp_bench_kernel_row *row = &r->rows[r->n++];
    memset(row, 0, sizeof *row);
    row->us = row->roof_us = -1;
    return row;
}

static sprig_status bk_run(sp_exec *e, sprig_gen *gen, sp_measure *m, const sp_bench_kernel_opts *o,
                           sp_bench_kernel_report *out) {
    if (o->read_bytes) SP_TRY(sp_bench_read_bandwidth(e, o->read_bytes, o->warmup, o->reps, &out->read_gbs));
    size_t cap = 0;
    for (int bi = 0; bi < o->n_batches; ++bi)
        for (int si = 0; si < o->n_sparsities; ++si) {
            const int n = o->fixed ? 1 : sp_mlp_fixed(gen, o->family, o->sparsities[si], 0, NULL, 0);
            for (int v = 0; v < n; ++v) {
                sp_bench_kernel_row *row = bk_push(out, &cap);
                if (!row) return sp_fail(SPRIG_E_NOMEM, "out of memory");
                snprintf(row->family, sizeof row->family, "%s", o->family);
                row->batch = o->batches[bi], row->sparsity = o->sparsities[si];
                if (o->fixed) snprintf(row->fixed, sizeof row->fixed, "%s", o->fixed);
                else sp_mlp_fixed(gen, o->family, row->sparsity, v, row->fixed, sizeof row->fixed);
                SP_TRY(bk_row(gen, m, o, v, row, out->read_gbs));
            }
        }
    return SPRIG_OK;
}

sprig_status sp_bench_kernels(sp_exec *e, sprig_gen *gen, const sp_bench_kernel_opts *o,
                              sp_bench_kernel_report *out) {
    if (!out) return sp_fail(SPRIG_E_INVALID, "sp_bench_kernels: out is NULL");
    memset(out, 0, sizeof *out);
    if (!e || !gen || !o || !o->family || !o->dtype || o->n_batches < 1 || o->n_sparsities < 1 || !o->dbs || !o->gpu)
        return sp_fail(SPRIG_E_INVALID, "sp_bench_kernels: bad options");
    snprintf(out->device, sizeof out->device, "%s", e->device);
    if (o->shape_name) snprintf(out->shape, sizeof out->shape, "%s", o->shape_name);
    else snprintf(out->shape, sizeof out->shape, "%d,%d", o->d, o->f);
    snprintf(out->dtype, sizeof out->dtype, "%s", o->dtype);
    out->d = o->d, out->f = o->f, out->g = o->g;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out->date, sizeof out->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    sp_measure_opts mo;
    sp_measure_opts_init(&mo);
    mo.warmup = o->warmup, mo.reps = o->reps, mo.seed = o->seed;
    sp_measure *m = NULL;
    SP_TRY(sp_measure_open(&m, e, gen, &mo));
    sprig_status s = bk_run(e, gen, m, o, out);
    sp_measure_close(m);
    return s;
}

void sp_bench_kernel_print(const sp_bench_kernel_report *r, FILE *to) {
    fprintf(to, "%-16s %-22s %5s %6s %10s %10s %9s %8s %8s  %s\n", "family", "fixed", "batch", "sp%", "us", "MB",
            "roof us", "of roof", "rel_err", "params (source)");
    for (size_t i = 0; i < r->n; ++i) {
        const sp_bench_kernel_row *w = &r->rows[i];
        fprintf(to, "%-16s %-22.22s %5d %6g", w->family, w->fixed[0] ? w->fixed : "-", w->batch, w->sparsity);
        if (w->us >= 0) fprintf(to, " %10.2f", w->us);
        else fprintf(to, " %10s", "failed");
        fprintf(to, " %10.3f", w->bytes / 1e6);
        if (w->roof_us > 0) fprintf(to, " %9.2f", w->roof_us);
        else fprintf(to, " %9s", "-");
        if (w->roof_us > 0 && w->us > 0) fprintf(to, " %7.0f%%", 100 * w->roof_us / w->us);
        else fprintf(to, " %8s", "-");
        fprintf(to, " %8.1e  %s (%s)%s%s\n", w->rel_err, w->params, w->source, w->note[0] ? "; " : "", w->note);
    }
    fprintf(to, "(%s, %s %s%s)\n", r->device, r->shape, r->dtype,
            r->read_gbs > 0 ? "; roof at the streaming read measured now" : "");
    if (r->read_gbs > 0) fprintf(to, "streaming read: %.0f GB/s\n", r->read_gbs);
}

char *sp_bench_kernel_json(const sp_bench_kernel_report *r) {
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_CreateArray();
    if (!root || !rows) {
        cJSON_Delete(root), cJSON_Delete(rows);
        return NULL;
    }
    cJSON_AddStringToObject(root, "device", r->device);
    cJSON_AddStringToObject(root, "shape", r->shape);
    cJSON_AddStringToObject(root, "dtype", r->dtype);
    cJSON_AddStringToObject(root, "date", r->date);
    if (r->read_gbs > 0) cJSON_AddNumberToObject(root, "read_gbs", r->read_gbs);
    for (size_t i = 0; i < r->n; ++i) {
        const sp_bench_kernel_row *w = &r->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "family", w->family);
        cJSON_AddStringToObject(o, "fixed", w->fixed);
        cJSON_AddNumberToObject(o, "batch", w->batch);
        cJSON_AddNumberToObject(o, "sparsity", w->sparsity);
        cJSON_AddStringToObject(o, "params", w->params);
        cJSON_AddStringToObject(o, "source", w->source);
        if (w->us >= 0) cJSON_AddNumberToObject(o, "us", w->us);
        else cJSON_AddNullToObject(o, "us");
        cJSON_AddNumberToObject(o, "rel_err", w->rel_err);
        cJSON_AddNumberToObject(o, "bytes", w->bytes);
        if (w->roof_us > 0) cJSON_AddNumberToObject(o, "roof_us", w->roof_us);
        if (w->note[0]) cJSON_AddStringToObject(o, "note", w->note);
        cJSON_AddItemToArray(rows, o);
    }
    cJSON_AddItemToObject(root, "rows", rows);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
