/* The tuning pipeline end to end on the CPU emulator: sp_tune_run with the
 * real measure/prepare callbacks (tuner/measure.c) over real kernels, on a
 * tiny shape (d=64, f=256, g=16) with spaces cut down by fixed parameters.
 *
 * Checks: every key is tuned and its winner verified (confirmed, status ok)
 * in the database; the database file exists and reloads; the float64
 * references are built once per key; prepare compiled candidates ahead with
 * NVRTC; a second run skips every key without measuring; and a template with
 * planted bugs (unroll=4 writes zeros while doing no work, so it would be the
 * fastest; unroll=2 does not compile) is recorded WRONG / COMPILE_FAILED and
 * never wins. Timings are the emulator's wall clock: plumbing only. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec_emu.h"
#include "sp_error.h"
#include "sp_measure.h"
#include "sp_tune.h"
#include "sprig.h"
#include "test_util.h"

#define D 64
#define F 256
#define G 16

/* The keys: every family the tuner measures, each with a small space. */
static const sp_tune_key KEYS[] = {
    {"dense_gemv", D, F, "fp16", 1, G, 0, "op=up,threads=64,rows_per_warp=1,vec=8"},
    {"dense_gemv", D, F, "fp16", 4, G, 0, "op=up,threads=64,rows_per_warp=1,vec=8"},
    {"dense_gemv", D, F, "bf16", 1, G, 0, "op=down,threads=64,rows_per_warp=1,vec=8,unroll=2"},
    /* y = W x + y (SliceGPT's MLP shortcut): y is read, so it starts from known values, not poison */
    {"dense_gemv", D, F, "fp16", 2, G, 0, "op=up,accumulate=1,threads=64,rows_per_warp=1,vec=8"},
    {"gather_upgate", D, F, "fp16", 1, G, 50, "threads=64,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,x_smem=0,all_active=0"},
    {"gather_upgate", D, F, "fp16", 4, G, 50, "threads=64,rows_per_warp=1,vec=8,unroll=2,ksplit=1,min_blocks=1,x_smem=0,all_active=0"},
    {"gather_down", D, F, "fp16", 1, G, 50, "threads=64,vec=8,unroll=2,cols_per_cta=64,splits=1,rows_per_warp=1,batch_tile=8,all_active=0"},
    {"gather_down", D, F, "fp16", 4, G, 50, "threads=64,vec=8,unroll=2,cols_per_cta=64,splits=1,rows_per_warp=1,batch_tile=8,all_active=0"},
    {"router", D, F, "fp16", 4, G, 50, "score=sigmoid,threads=64,rows_per_warp=1,vec=8,unroll=1,ksplit=1"},
    {"router", D, F, "fp16", 1, 1, 50, "score=silu_abs,threads=64,rows_per_warp=1,vec=8,unroll=1,ksplit=1"},
    {"fused_mlp", D, F, "fp16", 1, G, 75, "threads=64,rows_per_cta=8,vec=8,unroll=1,interleave=1,all_active=0"},
    {"gather_gemm", D, F, "fp16", 4, G, 50, "stage=upgate,warps=2,m_tiles=1,n_tiles=0,k_unroll=1,kwarps=1,splits=0,reduce=atomic"},
    {"gather_gemm", D, F, "fp16", 4, G, 50, "stage=down,warps=2,m_tiles=1,n_tiles=0,k_unroll=1,kwarps=1,splits=2"},
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

typedef struct progress {
    long calls;
    size_t last_key;
} progress;

/* One ctx for the three callbacks: the measure context and a progress counter. */
typedef struct run_ctx {
    progress *prog;
    sp_measure *m;
} run_ctx;

static void on_progress(void *ctx, size_t key_index, size_t n_keys, const sp_tune_key *key, size_t done,
                        size_t total, double best_us) {
    (void)key, (void)n_keys, (void)done, (void)total, (void)best_us;
    progress *p = ((run_ctx *)ctx)->prog;
    ++p->calls;
    p->last_key = key_index;
}

static sprig_status rc_measure(void *ctx, const sp_tune_key *k, const char *params, sp_measurement *out) {
    return sp_measure_candidate(((run_ctx *)ctx)->m, k, params, out);
}
static sprig_status rc_prepare(void *ctx, const sp_tune_key *k, const char *const *params, size_t n) {
    return sp_measure_prepare(((run_ctx *)ctx)->m, k, params, n);
}

static const sp_gpu_id EMU_GPU = {"CPU emulator", 0, 0, 0};

static sp_measure *open_measure(sp_exec *e, sprig_gen *gen) {
    sp_measure_opts mo;
    sp_measure_opts_init(&mo);
    mo.warmup = 0, mo.reps = 2, mo.jobs = 2;
    mo.compile_arch = "sm_80"; /* prepare compiles with NVRTC, as it would for a GPU */
    sp_measure *m = NULL;
    CHECK_MSG(sp_measure_open(&m, e, gen, &mo) == SPRIG_OK, "%s", sprig_last_error());
    return m;
}

/* Runs sp_tune_run over keys into dir's db; returns the status. */
static const sp_gpu_profile *model_gpu; /* set: sp_tune_run filters with the static model */

static sprig_status tune(sprig_gen *gen, sp_exec *e, const char *dir, const sp_tune_key *keys, size_t n,
                         sp_measure **m_out, sp_tune_summary *sum, progress *prog) {
    sp_db *db = NULL;
    sprig_status st = sp_db_open(&db, dir, &EMU_GPU, 0);
    CHECK_MSG(st == SPRIG_OK, "%s", sprig_last_error());
    if (st != SPRIG_OK) return st;
    sp_measure *m = open_measure(e, gen);
    run_ctx rc = {prog, m};
    sp_tune_opts o;
    sp_tune_opts_init(&o);
    o.gen = gen, o.db = db, o.keys = keys, o.n_keys = n;
    o.search.confirm = 1;
    o.model_gpu = model_gpu;
    o.measure = rc_measure, o.prepare = rc_prepare, o.progress = on_progress, o.ctx = &rc;
    st = sp_tune_run(&o, sum);
    if (st != SPRIG_OK) fprintf(stderr, "sp_tune_run: %s\n", sprig_last_error());
    sp_tune_summary_print(sum, stdout);
    if (m_out) *m_out = m;
    else sp_measure_close(m);
    sp_db_close(db);
    return st;
}

static const sp_trial *winner_trial(const sp_db_entry *e) {
    for (size_t i = 0; i < e->n_trials; ++i)
        if (!strcmp(e->trials[i].params, e->winner)) return &e->trials[i];
    return NULL;
}

static void check_db(sprig_gen *gen, const char *dir, const sp_tune_key *keys, size_t n) {
    char name[256], path[1400];
    sp_db_file_name(&EMU_GPU, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_MSG(access(path, R_OK) == 0, "no database file %s", path);
    sp_db *db = NULL;
    sprig_status st = sp_db_load_file(&db, path, &EMU_GPU);
    CHECK_MSG(st == SPRIG_OK, "reloading %s: %s", path, sprig_last_error());
    if (st != SPRIG_OK) return;
    CHECK_MSG(db->n == n, "%zu entries, want %zu", db->n, n);
    for (size_t i = 0; i < n; ++i) {
        const sp_tune_key *k = &keys[i];
        sprig_request req = {k->family, k->d, k->f, k->dtype, k->batch, k->g, k->fixed};
        sp_space *s = NULL;
        if (sp_space_build(gen, &req, &s) != SPRIG_OK || s->n == 0) {
            CHECK_MSG(0, "space of %s: %s", k->family, sprig_last_error());
            sp_space_free(s);
            continue;
        }
        uint64_t hash = 0;
        CHECK(sp_space_template_hash(gen, &req, s, &hash) == SPRIG_OK);
        sp_db_key dk;
        CHECK(sp_db_key_make(&dk, k->family, hash, k->d, k->f, k->dtype, k->batch, k->sparsity, k->g, k->fixed) ==
              SPRIG_OK);
        sp_space_free(s);
        const sp_db_entry *e = sp_db_find(db, &dk);
        CHECK_MSG(e != NULL, "key %zu (%s) missing from the reloaded database", i, k->family);
        if (!e) continue;
        const sp_trial *w = winner_trial(e);
        CHECK_MSG(w && w->m.verdict == SP_VERDICT_OK && w->confirmed && e->best.median_us > 0,
                  "%s: winner %s not verified", k->family, e->winner);
        CHECK_MSG(e->best.rel_err < 1e-2, "%s: winner rel_err %g", k->family, e->best.rel_err);
    }
    sp_db_close(db);
}

static void test_pipeline(sprig_gen *gen, sp_exec *e, const char *root) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/db", root);
    progress prog = {0, 0};
    sp_tune_summary sum;
    sp_measure *m = NULL;
    sprig_status st = tune(gen, e, dir, KEYS, N_KEYS, &m, &sum, &prog);
    CHECK(st == SPRIG_OK);
    CHECK_MSG(sum.n_tuned == N_KEYS, "%zu of %zu keys tuned", sum.n_tuned, N_KEYS);
    for (size_t i = 0; i < sum.n; ++i)
        CHECK_MSG(sum.rows[i].outcome == SP_TUNE_TUNED && sum.rows[i].median_us > 0, "key %zu: %s: %s", i,
                  sp_tune_outcome_name(sum.rows[i].outcome), sum.rows[i].message);
    char *json = sp_tune_summary_json(&sum);
    CHECK(json && sp_contains(json, "\"outcome\":\t\"tuned\""));
    free(json);
    sp_tune_summary_free(&sum);
    CHECK(prog.calls > 0 && prog.last_key == N_KEYS - 1);
    if (m) {
        sp_measure_stats ms;
        sp_measure_get_stats(m, &ms);
        /* one problem and one reference per key (each key measures one output kind) */
        CHECK_MSG(ms.problems_built == (long)N_KEYS && ms.references_computed == (long)N_KEYS,
                  "problems %ld, references %ld for %zu keys", ms.problems_built, ms.references_computed, N_KEYS);
        CHECK_MSG(ms.compiled_ahead > 0, "prepare compiled nothing ahead");
        printf("measured %ld candidates (with confirmations), %ld compiled ahead with NVRTC\n", ms.measured,
               ms.compiled_ahead);
    }
    sp_measure_close(m);
    check_db(gen, dir, KEYS, N_KEYS);

    /* Resume: everything is in the database, nothing is measured. */
    memset(&prog, 0, sizeof prog);
    m = NULL;
    st = tune(gen, e, dir, KEYS, N_KEYS, &m, &sum, &prog);
    CHECK(st == SPRIG_OK && sum.n_skipped == N_KEYS && sum.n_tuned == 0);
    if (m) {
        sp_measure_stats ms;
        sp_measure_get_stats(m, &ms);
        CHECK_MSG(ms.measured == 0 && ms.problems_built == 0, "the second run measured %ld candidates", ms.measured);
    }
    sp_measure_close(m);
    sp_tune_summary_free(&sum);
}

/* Plants the bugs in a copy of dense_gemv.cu.lua; returns 0 when the
 * template no longer has the lines the bugs replace. */
static int write_bad_template(const char *tdir) {
    FILE *in = fopen(SPRIG_SOURCE_DIR "/templates/dense_gemv.cu.lua", "rb");
    if (!in) return 0;
    char *src = calloc(1, 1 << 20);
    size_t len = src ? fread(src, 1, (1 << 20) - 1, in) : 0;
    fclose(in);
    if (!len) {
        free(src);
        return 0;
    }
    struct {
        const char *from, *to;
    } edits[] = {
        /* unroll=4: no K-walk at all (so it is the fastest), y = 0 */
        {"    sp_kwalk<1, ROWS, BATCH, VEC, UNROLL, 1, K_COLS>(", "    if (UNROLL != 4) sp_kwalk<1, ROWS, BATCH, VEC, UNROLL, 1, K_COLS>("},
        /* unroll=2: not C++ */
        {"    const int lane = threadIdx.x & 31;",
         "{% if p.unroll == 2 then %}    this is not C++;\n{% end %}    const int lane = threadIdx.x & 31;"},
    };
    char *text = src;
    int ok = 1;
    for (size_t i = 0; i < sizeof edits / sizeof edits[0] && ok; ++i) {
        char *at = strstr(text, edits[i].from);
        if (!at) {
            ok = 0;
            break;
        }
        size_t pre = (size_t)(at - text), from = strlen(edits[i].from), to = strlen(edits[i].to);
        char *next = malloc(strlen(text) - from + to + 1);
        memcpy(next, text, pre);
        memcpy(next + pre, edits[i].to, to);
        strcpy(next + pre + to, at + from);
        if (text != src) free(text);
        text = next;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/dense_gemv.cu.lua", tdir);
    FILE *fp = ok ? fopen(path, "w") : NULL;
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
    if (text != src) free(text);
    free(src);
    return ok && fp;
}

static void test_bad_template(sprig_gen *good, sp_exec *e, const char *root) {
    char tdir[1024], dir[1024];
    snprintf(tdir, sizeof tdir, "%s/templates", root);
    snprintf(dir, sizeof dir, "%s/db-bad", root);
    mkdir(tdir, 0755);
    int written = write_bad_template(tdir);
    CHECK_MSG(written, "dense_gemv.cu.lua no longer has the lines the planted bugs replace");
    if (!written) return;
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, tdir) == SPRIG_OK);
    if (!gen) return;
    const sp_tune_key key = {"dense_gemv", D, F, "fp16", 4, G, 0, "op=up,threads=64,rows_per_warp=1,vec=8"};
    progress prog = {0, 0};
    sp_tune_summary sum;
    CHECK(tune(gen, e, dir, &key, 1, NULL, &sum, &prog) == SPRIG_OK);
    CHECK(sum.n_tuned == 1 && sum.rows[0].wrong == 1 && sum.rows[0].failed == 1);
    CHECK_MSG(sp_contains(sum.rows[0].winner, "unroll=1"), "winner %s", sum.rows[0].winner);
    sp_tune_summary_free(&sum);

    char name[256], path[1400];
    sp_db_file_name(&EMU_GPU, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sp_db *db = NULL;
    CHECK(sp_db_load_file(&db, path, &EMU_GPU) == SPRIG_OK);
    if (db && db->n == 1) {
        const sp_db_entry *en = &db->entries[0];
        int saw_wrong = 0, saw_compile = 0;
        for (size_t i = 0; i < en->n_trials; ++i) {
            const sp_trial *t = &en->trials[i];
            if (sp_contains(t->params, "unroll=4")) {
                saw_wrong = t->m.verdict == SP_VERDICT_WRONG;
                CHECK_MSG(sp_contains(t->m.note, "rel_err"), "note: %s", t->m.note);
            }
            if (sp_contains(t->params, "unroll=2")) saw_compile = t->m.verdict == SP_VERDICT_COMPILE_FAILED;
        }
        CHECK(saw_wrong && saw_compile);
        CHECK(!sp_contains(en->winner, "unroll=4"));
    } else {
        CHECK_MSG(0, "the bad template's database did not reload with one entry");
    }
    sp_db_close(db);
    sprig_gen_close(gen);
}

/* Candidates that render the same kernels are measured once: gather_down
 * layout=t at batch 1 with batch_tile free (a tile of 1, 2, 4 or 8 tokens is
 * one token either way) is four candidates and one kernel. */
static void test_duplicates(sprig_gen *gen, sp_exec *e, const char *root) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/db-dup", root);
    const sp_tune_key key = {"gather_down", D, F, "fp16", 1, G, 50,
                             "layout=t,threads=64,vec=8,unroll=2,cols_per_cta=64,splits=1,reduce=direct,all_active=0"};
    progress prog = {0, 0};
    sp_tune_summary sum;
    sp_measure *m = NULL;
    CHECK(tune(gen, e, dir, &key, 1, &m, &sum, &prog) == SPRIG_OK);
    CHECK_MSG(sum.n_tuned == 1 && sum.rows[0].tried == 4, "tried %zu", sum.n ? sum.rows[0].tried : 0);
    if (m) {
        sp_measure_stats ms;
        sp_measure_get_stats(m, &ms);
        /* the confirmation re-times the best three: duplicates among them are answered too */
        CHECK_MSG(ms.duplicates >= 3, "%ld of the 3 copies answered without running", ms.duplicates);
        printf("duplicates: %ld candidates answered from a twin's measurement, %ld measure calls\n", ms.duplicates,
               ms.measured);
    }
    sp_measure_close(m);
    sp_tune_summary_free(&sum);
}

/* With the static model's filter (o.model_gpu): the four batch_tile copies are
 * one candidate before anything runs, and a whole space is searched best
 * predicted first with no kernel measured twice. */
static void test_filtered(sprig_gen *gen, sp_exec *e, const char *root) {
    sp_gpu_profile h200;
    CHECK(sp_gen_gpu_profile(gen, "h200", &h200) == SPRIG_OK);
    model_gpu = &h200;
    const sp_tune_key keys[] = {
        {"gather_down", D, F, "fp16", 1, G, 50,
         "layout=t,threads=64,vec=8,unroll=2,cols_per_cta=64,splits=1,reduce=direct,all_active=0"},
        {"dense_gemv", D, F, "fp16", 1, 1, 0, "op=up,threads=64,unroll=2"}};
    for (int i = 0; i < 2; ++i) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/db-filtered-%d", root, i);
        progress prog = {0, 0};
        sp_tune_summary sum;
        sp_measure *m = NULL;
        CHECK(tune(gen, e, dir, &keys[i], 1, &m, &sum, &prog) == SPRIG_OK);
        if (m && sum.n == 1) {
            const sp_tune_row *r = &sum.rows[0];
            sp_measure_stats ms;
            sp_measure_get_stats(m, &ms);
            printf("filtered %s: space %zu, within %zu, kept %zu, tried %zu; %ld measure calls, %ld answered by a twin\n",
                   keys[i].family, r->space_size, r->within, r->kept, r->tried, ms.measured, ms.duplicates);
            CHECK(r->outcome == SP_TUNE_TUNED && r->kept >= 1 && r->kept <= r->within && r->within <= r->space_size);
            CHECK_MSG(r->tried <= r->kept, "tried %zu of %zu kept", r->tried, r->kept);
            /* only the confirmation's re-time of the winner meets a kernel already measured */
            CHECK_MSG(ms.duplicates <= 1, "%ld candidates were copies of measured ones", ms.duplicates);
            if (i == 0) CHECK_MSG(r->within == 4 && r->kept == 1 && r->tried == 1, "batch_tile copies: %zu kept", r->kept);
        }
        sp_measure_close(m);
        sp_tune_summary_free(&sum);
    }
    model_gpu = NULL;
}

int main(void) {
    char root[] = "/tmp/sprig_test_tune_emu_XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    sprig_gen *gen = NULL;
    sp_exec *e = NULL;
    if (sprig_gen_open(&gen, NULL) != SPRIG_OK || sp_exec_open_emu(&e) != SPRIG_OK) {
        fprintf(stderr, "setup: %s\n", sprig_last_error());
        return 1;
    }
    test_pipeline(gen, e, root);
    test_bad_template(gen, e, root);
    test_duplicates(gen, e, root);
    test_filtered(gen, e, root);
    sp_exec_close(e);
    sprig_gen_close(gen);
    remove_tree(root);
    return sp_test_finish("test_tune_emu", 0);
}
