/* The bench report's table, JSON and SVG chart (see sp_bench.h). Plain text
 * written from C: no plotting dependency. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_bench.h"
#include "sp_error.h"
#include "sp_file.h"

void sp_bench_report_free(sp_bench_report *r) {
    if (!r) return;
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static int br_has(double v) { return v >= 0 && isfinite(v); }

/* ---- table ------------------------------------------------------------------------------- */

static void br_cell(char *buf, size_t cap, double v, const char *fmt) {
    if (br_has(v)) snprintf(buf, cap, fmt, v);
    else snprintf(buf, cap, "-");
}

void sp_bench_print(const sp_bench_report *r, FILE *to) {
    fprintf(to, "%s (d=%d, f=%d, g=%d) %s on %s", r->shape, r->d, r->f, r->g, r->dtype, r->device);
    if (r->read_gbs > 0) fprintf(to, "; streaming read %.4g GB/s over %.3g GiB", r->read_gbs, r->read_bytes / 1073741824.0);
    fprintf(to, "\n%-16s %7s %10s %10s %10s %10s %11s %9s %9s  %s\n", "case", "active", "ours_us", "pred_us",
            "cublas_us", "roof_us", "ours/cublas", "ours/roof", "ours/pred", "ours: pipeline [params from]");
    for (size_t i = 0; i < r->n; ++i) {
        const sp_bench_row *w = &r->rows[i];
        char cs[32], act[16], o[16], pr[16], c[16], rf[16], oc[16], orf[16], op[16];
        snprintf(cs, sizeof cs, "b=%d s=%g%%", w->batch, w->sparsity);
        br_cell(act, sizeof act, 100 * w->active_frac, "%.0f%%");
        br_cell(o, sizeof o, w->ours_us, "%.2f");
        br_cell(c, sizeof c, w->cublas_us, "%.2f");
        br_cell(rf, sizeof rf, w->roof_us, "%.2f");
        br_cell(oc, sizeof oc, br_has(w->ours_us) && br_has(w->cublas_us) ? w->ours_us / w->cublas_us : -1, "%.3f");
        br_cell(orf, sizeof orf, br_has(w->ours_us) && w->roof_us > 0 ? w->ours_us / w->roof_us : -1, "%.3f");
        br_cell(pr, sizeof pr, w->predicted_us, "%.2f");
        br_cell(op, sizeof op, br_has(w->ours_us) && w->predicted_us > 0 ? w->ours_us / w->predicted_us : -1, "%.3f");
        fprintf(to, "%-16s %7s %10s %10s %10s %10s %11s %9s %9s  %s%s%s%s\n", cs, act, o, pr, c, rf, oc, orf, op,
                w->ours_what[0] ? w->ours_what : "none verified", w->ours_source[0] ? " [" : "", w->ours_source,
                w->ours_source[0] ? "]" : "");
        if (w->note[0]) fprintf(to, "%16s   note: %s\n", "", w->note);
    }
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void br_num_or_null(cJSON *o, const char *name, double v) {
    if (br_has(v)) cJSON_AddNumberToObject(o, name, v);
    else cJSON_AddNullToObject(o, name);
}

static cJSON *br_row_json(const sp_bench_row *w) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "batch", w->batch);
    cJSON_AddNumberToObject(o, "sparsity", w->sparsity);
    br_num_or_null(o, "active_frac", w->active_frac);
    br_num_or_null(o, "ours_us", w->ours_us);
    cJSON_AddStringToObject(o, "ours_pipeline", w->ours_what);
    cJSON_AddStringToObject(o, "ours_params_from", w->ours_source);
    br_num_or_null(o, "ours_rel_err", br_has(w->ours_us) ? w->ours_rel_err : -1);
    br_num_or_null(o, "cublas_us", w->cublas_us);
    br_num_or_null(o, "cublas_rel_err", br_has(w->cublas_us) ? w->cublas_rel_err : -1);
    br_num_or_null(o, "roof_us", w->roof_us);
    br_num_or_null(o, "predicted_us", w->predicted_us);
    cJSON_AddNumberToObject(o, "bytes", w->bytes);
    br_num_or_null(o, "ours_over_cublas", br_has(w->ours_us) && br_has(w->cublas_us) && w->cublas_us > 0
                                              ? w->ours_us / w->cublas_us : -1);
    br_num_or_null(o, "ours_over_roof", br_has(w->ours_us) && w->roof_us > 0 ? w->ours_us / w->roof_us : -1);
    if (w->note[0]) cJSON_AddStringToObject(o, "note", w->note);
    return o;
}

char *sp_bench_json(const sp_bench_report *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "format", "sprig-bench");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "date", r->date);
    cJSON *dev = cJSON_AddObjectToObject(root, "device");
    char cc[16];
    snprintf(cc, sizeof cc, "%d.%d", r->cc_major, r->cc_minor);
    cJSON_AddStringToObject(dev, "name", r->device);
    cJSON_AddStringToObject(dev, "cc", cc);
    cJSON_AddNumberToObject(dev, "sms", r->sm_count);
    cJSON_AddStringToObject(root, "shape", r->shape);
    cJSON_AddNumberToObject(root, "d", r->d);
    cJSON_AddNumberToObject(root, "f", r->f);
    cJSON_AddNumberToObject(root, "g", r->g);
    cJSON_AddStringToObject(root, "dtype", r->dtype);
    br_num_or_null(root, "read_bandwidth_gbs", r->read_gbs > 0 ? r->read_gbs : -1);
    cJSON_AddNumberToObject(root, "read_bytes", r->read_bytes);
    cJSON *rows = cJSON_AddArrayToObject(root, "rows");
    for (size_t i = 0; rows && i < r->n; ++i) {
        cJSON *o = br_row_json(&r->rows[i]);
        if (o) cJSON_AddItemToArray(rows, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* ---- SVG ----------------------------------------------------------------------------------- */

typedef struct br_buf {
    char *s;
    size_t n, cap;
    int failed;
} br_buf;

static void br_printf(br_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void br_printf(br_buf *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) {
        b->failed = 1;
        return;
    }
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)need + 1) cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->s = grown, b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* Text with &, <, >, " escaped. */
static void br_escaped(br_buf *b, const char *text) {
    for (const char *p = text; *p; ++p) {
        switch (*p) {
        case '&': br_printf(b, "&amp;"); break;
        case '<': br_printf(b, "&lt;"); break;
        case '>': br_printf(b, "&gt;"); break;
        case '"': br_printf(b, "&quot;"); break;
        default: br_printf(b, "%c", *p); break;
        }
    }
}

/* A tick step of 1, 2 or 5 times a power of ten giving about 5 ticks up to top. */
static double br_step(double top) {
    double raw = top / 5, p = pow(10, floor(log10(raw)));
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

enum { BR_PANEL_W = 380, BR_PANEL_H = 300, BR_ML = 62, BR_MR = 16, BR_MT = 34, BR_MB = 46, BR_TOP = 64 };

typedef struct br_series {
    const char *name, *color, *dash;
    int which; /* 0 ours, 1 cuBLAS, 2 roof */
} br_series;

static const br_series BR_SERIES[] = {
    {"ours (tuned)", "#d62728", "", 0},
    {"cuBLAS dense", "#1f77b4", "6,4", 1},
    {"bandwidth roof", "#2ca02c", "2,3", 2},
};

static double br_value(const sp_bench_row *w, int which) {
    return which == 0 ? w->ours_us : which == 1 ? w->cublas_us : w->roof_us;
}

/* The batches in the report, in first-seen order. */
static int br_batches(const sp_bench_report *r, int *out, int cap) {
    int n = 0;
    for (size_t i = 0; i < r->n; ++i) {
        int seen = 0;
        for (int j = 0; j < n; ++j) seen |= out[j] == r->rows[i].batch;
        if (!seen && n < cap) out[n++] = r->rows[i].batch;
    }
    return n;
}

static void br_axes(br_buf *b, double x0, double y0, double w, double h, double ymax, double step) {
    br_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", x0,
              y0, w, h);
    for (double t = 0; t <= ymax + 1e-9; t += step) {
        double y = y0 + h - h * t / ymax;
        br_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x0 + w, y);
        br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n", x0 - 4, y + 4, t);
    }
    for (int s = 0; s <= 100; s += 25) {
        double x = x0 + w * s / 100.0;
        br_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x, y0, x, y0 + h);
        br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%d</text>\n", x,
                  y0 + h + 15, s);
    }
    br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">sparsity (%% of experts "
                 "inactive)</text>\n", x0 + w / 2, y0 + h + 32);
    br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 %.1f "
                 "%.1f)\">time (us)</text>\n", x0 - 44, y0 + h / 2, x0 - 44, y0 + h / 2);
}

/* One series of one batch as a polyline with point markers; gaps where missing. */
static void br_line(br_buf *b, const sp_bench_report *r, int batch, const br_series *s, double x0, double y0,
                    double w, double h, double ymax) {
    br_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s%s%s points=\"", s->color,
              s->dash[0] ? " stroke-dasharray=\"" : "", s->dash, s->dash[0] ? "\"" : "");
    for (size_t i = 0; i < r->n; ++i) {
        const sp_bench_row *row = &r->rows[i];
        double v = br_value(row, s->which);
        if (row->batch != batch || !br_has(v)) continue;
        br_printf(b, "%.1f,%.1f ", x0 + w * row->sparsity / 100.0, y0 + h - h * v / ymax);
    }
    br_printf(b, "\"/>\n");
    for (size_t i = 0; i < r->n; ++i) {
        const sp_bench_row *row = &r->rows[i];
        double v = br_value(row, s->which);
        if (row->batch != batch || !br_has(v)) continue;
        br_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s b=%d s=%g%%: %.2f us</title>"
                     "</circle>\n", x0 + w * row->sparsity / 100.0, y0 + h - h * v / ymax, s->color, s->name, batch,
                  row->sparsity, v);
    }
}

static void br_panel(br_buf *b, const sp_bench_report *r, int batch, double left) {
    double ymax = 0;
    for (size_t i = 0; i < r->n; ++i)
        for (int k = 0; k < 3; ++k)
            if (r->rows[i].batch == batch && br_has(br_value(&r->rows[i], k)) && br_value(&r->rows[i], k) > ymax)
                ymax = br_value(&r->rows[i], k);
    if (ymax <= 0) ymax = 1;
    double step = br_step(ymax * 1.05);
    ymax = step * ceil(ymax * 1.05 / step);
    double x0 = left + BR_ML, y0 = BR_TOP + BR_MT, w = BR_PANEL_W - BR_ML - BR_MR, h = BR_PANEL_H - BR_MT - BR_MB;
    br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">"
                 "batch %d</text>\n", x0 + w / 2, y0 - 10, batch);
    br_axes(b, x0, y0, w, h, ymax, step);
    for (size_t k = 0; k < sizeof BR_SERIES / sizeof BR_SERIES[0]; ++k)
        br_line(b, r, batch, &BR_SERIES[k], x0, y0, w, h, ymax);
}

static void br_legend(br_buf *b, double x, double y) {
    for (size_t k = 0; k < sizeof BR_SERIES / sizeof BR_SERIES[0]; ++k) {
        const br_series *s = &BR_SERIES[k];
        double lx = x + 150.0 * (double)k;
        br_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n",
                  lx, y, lx + 28, y, s->color, s->dash[0] ? " stroke-dasharray=\"" : "", s->dash,
                  s->dash[0] ? "\"" : "");
        br_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 34, y + 4, s->name);
    }
}

char *sp_bench_svg(const sp_bench_report *r) {
    int batches[64];
    int nb = br_batches(r, batches, 64);
    int width = BR_PANEL_W * (nb ? nb : 1) + 20, height = BR_TOP + BR_PANEL_H + 10;
    br_buf b = {0};
    br_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              width, height, width, height);
    br_printf(&b, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">MLP time against sparsity: ");
    br_escaped(&b, r->shape);
    br_printf(&b, " (d=%d, f=%d, g=%d) %s on ", r->d, r->f, r->g, r->dtype);
    br_escaped(&b, r->device);
    br_printf(&b, "</text>\n");
    br_legend(&b, 14, 46);
    for (int i = 0; i < nb; ++i) br_panel(&b, r, batches[i], 10.0 + BR_PANEL_W * i);
    br_printf(&b, "</svg>\n");
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

sprig_status sp_bench_write_file(const char *path, const char *text) {
    if (!path || !text) return sp_fail(SPRIG_E_INVALID, "sp_bench_write_file: NULL argument");
    return sp_file_write_atomic(path, text, strlen(text));
}
