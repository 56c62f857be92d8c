/* The bench report writers on synthetic numbers (no GPU): the JSON carries
 * every row with its ratios (null where a value is missing), the SVG has one
 * panel per batch with a line per series through the right points and
 * escapes text, the table prints the ratios, and files are written whole. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_bench.h"
#include "test_util.h"

static sp_bench_row row(int batch, double s, double ours, double cublas, double roof) {
    sp_bench_row r;
    memset(&r, 0, sizeof r);
    r.batch = batch, r.sparsity = s, r.ours_us = ours, r.cublas_us = cublas, r.roof_us = roof;
    r.active_frac = 1 - s / 100, r.bytes = roof * 2930e3 / 1e3;
    snprintf(r.ours_what, sizeof r.ours_what, "%s", s > 0 ? "router+gather_upgate+gather_down" : "fused_mlp");
    snprintf(r.ours_source, sizeof r.ours_source, "exact,exact,generic_default");
    return r;
}

static void make_report(sp_bench_report *r, sp_bench_row *rows, size_t n) {
    memset(r, 0, sizeof *r);
    snprintf(r->device, sizeof r->device, "Test GPU <A&B> \"x\"");
    r->cc_major = 9, r->sm_count = 132;
    snprintf(r->shape, sizeof r->shape, "llama2-7b");
    r->d = 4096, r->f = 11008, r->g = 32;
    snprintf(r->dtype, sizeof r->dtype, "fp16");
    r->read_gbs = 2930, r->read_bytes = 1073741824.0;
    snprintf(r->date, sizeof r->date, "2025-01-02T03:04:05Z");
    r->rows = rows, r->n = n;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) ++n;
    return n;
}

static void test_json(const sp_bench_report *r) {
    char *text = sp_bench_json(r);
    CHECK(text != NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    CHECK_MSG(root != NULL, "the bench JSON does not parse");
    if (!root) {
        free(text);
        return;
    }
    CHECK(!strcmp(cJSON_GetObjectItem(root, "format")->valuestring, "sprig-bench"));
    CHECK(cJSON_GetObjectItem(root, "read_bandwidth_gbs")->valuedouble == 2930);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "device"), "cc")->valuestring, "9.0"));
    const cJSON *rows = cJSON_GetObjectItem(root, "rows");
    CHECK(cJSON_GetArraySize(rows) == (int)r->n);
    const cJSON *r1 = cJSON_GetArrayItem(rows, 1); /* b=1 s=50: ours 52, cuBLAS 123.7, roof 46.2 */
    CHECK(cJSON_GetObjectItem(r1, "batch")->valueint == 1 && cJSON_GetObjectItem(r1, "sparsity")->valuedouble == 50);
    CHECK(fabs(cJSON_GetObjectItem(r1, "ours_over_cublas")->valuedouble - 52.0 / 123.7) < 1e-12);
    CHECK(fabs(cJSON_GetObjectItem(r1, "ours_over_roof")->valuedouble - 52.0 / 46.2) < 1e-12);
    CHECK(!strcmp(cJSON_GetObjectItem(r1, "ours_params_from")->valuestring, "exact,exact,generic_default"));
    const cJSON *r3 = cJSON_GetArrayItem(rows, 3); /* no verified pipeline, no baseline */
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(r3, "ours_us")) && cJSON_IsNull(cJSON_GetObjectItem(r3, "cublas_us")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(r3, "ours_over_cublas")));
    CHECK(!strcmp(cJSON_GetObjectItem(r3, "note")->valuestring, "fused_mlp: wrong: rel_err 0.5"));
    cJSON_Delete(root);
    free(text);
}

static void test_svg(const sp_bench_report *r) {
    char *svg = sp_bench_svg(r);
    CHECK(svg != NULL);
    if (!svg) return;
    CHECK(!strncmp(svg, "<?xml", 5) && strstr(svg, "<svg ") && strstr(svg, "</svg>\n"));
    CHECK(count(svg, "<svg") == 1 && count(svg, "</svg>") == 1);
    /* two batches x three series */
    CHECK_MSG(count(svg, "<polyline") == 6, "%d polylines", count(svg, "<polyline"));
    CHECK(strstr(svg, "batch 1<") && strstr(svg, "batch 8<"));
    /* markers: 3 + 3 + 3 values at batch 1, at batch 8 ours and cuBLAS missing once */
    CHECK_MSG(count(svg, "<circle") == 9 + 7, "%d markers", count(svg, "<circle"));
    CHECK(strstr(svg, "Test GPU &lt;A&amp;B&gt; &quot;x&quot;") != NULL);
    CHECK(strstr(svg, "<A&B>") == NULL);
    CHECK(strstr(svg, "ours (tuned) b=1 s=50%: 52.00 us") != NULL);
    CHECK(strstr(svg, "stroke-dasharray") != NULL);
    /* every element that opens closes: text and polyline counts balance */
    CHECK(count(svg, "<text") == count(svg, "</text>"));
    CHECK(count(svg, "<circle") == count(svg, "</circle>"));
    free(svg);
}

static void test_table(const sp_bench_report *r) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    sp_bench_print(r, fp);
    fclose(fp);
    CHECK(sp_contains(buf, "b=1 s=50%") && sp_contains(buf, "0.420") && sp_contains(buf, "1.126"));
    CHECK(sp_contains(buf, "none verified") && sp_contains(buf, "note: fused_mlp: wrong"));
    CHECK(sp_contains(buf, "2930 GB/s"));
    free(buf);
}

static void test_write(const sp_bench_report *r) {
    char dir[] = "/tmp/sprig_test_bench_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/out.json", dir);
    char *text = sp_bench_json(r);
    CHECK(sp_bench_write_file(path, text) == SPRIG_OK);
    FILE *fp = fopen(path, "r");
    char back[1 << 16];
    size_t n = fp ? fread(back, 1, sizeof back - 1, fp) : 0;
    back[n] = '\0';
    if (fp) fclose(fp);
    CHECK(text && !strcmp(back, text));
    free(text);
    remove(path);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.svg", dir);
    CHECK(sp_bench_write_file(bad, "x") == SPRIG_E_IO);
    rmdir(dir);
}

int main(void) {
    sp_bench_row rows[] = {
        row(1, 0, 101.5, 123.7, 92.4), row(1, 50, 52.0, 123.7, 46.2), row(1, 90, 13.5, 123.7, 9.1),
        row(8, 0, 110, -1, 92.4),      row(8, 50, 80, 130, 88.0),     row(8, 90, 40, 130, 30.0),
    };
    rows[3].cublas_us = -1, rows[3].ours_us = -1;
    rows[3].ours_what[0] = '\0';
    snprintf(rows[3].note, sizeof rows[3].note, "fused_mlp: wrong: rel_err 0.5");
    sp_bench_report r;
    make_report(&r, rows, sizeof rows / sizeof rows[0]);
    test_json(&r);
    test_svg(&r);
    test_table(&r);
    test_write(&r);
    return sp_test_finish("test_bench_plot", 0);
}
