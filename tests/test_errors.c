/* Errors name their cause and place: a CUDA error in a template is reported by
 * NVRTC at the template's file(line); a Lua error at file:line:; a bad
 * architecture lists the supported ones; a plan whose kernel the source does
 * not define is caught at compile time; and the `sprig` CLI (path in argv[1])
 * rejects bad input with a message and a non-zero exit, without crashing. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sprig.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/sprig-test-errors-XXXXXX";

static void write_template(const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/dense_gemv.cu.lua", tmpdir);
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

/* Renders dense_gemv (llama2-7b) from the override folder. */
static sprig_status render(sprig_plan **plan) {
    sprig_gen *gen = NULL;
    *plan = NULL;
    sprig_status s = sprig_gen_open(&gen, tmpdir);
    if (s != SPRIG_OK) return s;
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 32, NULL};
    s = sprig_gen_render(gen, &req, plan);
    sprig_gen_close(gen);
    return s;
}

static void check_cuda_error_line(void) {
    write_template("{% include(\"templates/common.cuh.lua\") %}\n"                            /* 1 */
                   "extern \"C\" __global__ void sprig_dense_gemv(const T *W, const T *x, T *y) {\n" /* 2 */
                   "    const int i = threadIdx.x;\n"                                           /* 3 */
                   "{% for k = 1, 2 do %}\n"                                                     /* 4 */
                   "    y[i + {{ k }}] = SP_FROM_F(SP_TO_F(x[i]) * 2.0f);\n"                     /* 5 */
                   "{% end %}\n"                                                                 /* 6 */
                   "    this_is_not_declared(i);\n"                                              /* 7 */
                   "}\n");
    sprig_plan *plan = NULL;
    CHECK(render(&plan) == SPRIG_OK);
    if (!plan) return;
    sprig_compile_opts o = {"sm_90", 0, "", 0};
    sprig_binary *b = NULL;
    sprig_status s = sprig_compile(plan, &o, &b);
    CHECK(s == SPRIG_E_COMPILE && b == NULL);
    const char *msg = sprig_last_error();
    CHECK_MSG(sp_contains(msg, "templates/dense_gemv.cu.lua(7)"), "message: %s", msg);
    CHECK_MSG(sp_contains(msg, "this_is_not_declared"), "message: %s", msg);
    CHECK_MSG(sp_contains(msg, "dense_gemv.cu"), "message: %s", msg); /* the NVRTC program name */
    sprig_plan_free(plan);
}

static void check_lua_error_line(void) {
    write_template("{% include(\"templates/common.cuh.lua\") %}\n"
                   "// fine so far\n"
                   "{% local broken = nil %}\n"
                   "int x = {{ broken + 1 }};\n");
    sprig_plan *plan = NULL;
    sprig_status s = render(&plan);
    CHECK(s == SPRIG_E_TEMPLATE && plan == NULL);
    CHECK_MSG(sp_contains(sprig_last_error(), "templates/dense_gemv.cu.lua:4:"), "message: %s", sprig_last_error());
    sprig_plan_free(plan);
}

/* The plan launches sprig_dense_gemv; a template that renames it must fail
 * now (cubin and PTX), not at launch on some GPU. */
static void check_missing_entry(void) {
    write_template("{% include(\"templates/common.cuh.lua\") %}\n"
                   "extern \"C\" __global__ void renamed_kernel(const T *W, const T *x, T *y) { y[0] = x[0]; }\n");
    sprig_plan *plan = NULL;
    CHECK(render(&plan) == SPRIG_OK);
    if (!plan) return;
    const char *archs[] = {"sm_90", "compute_90"};
    for (int i = 0; i < 2; ++i) {
        sprig_compile_opts o = {archs[i], 0, "", 0};
        sprig_binary *b = NULL;
        CHECK(sprig_compile(plan, &o, &b) == SPRIG_E_COMPILE && b == NULL);
        CHECK_MSG(sp_contains(sprig_last_error(), "sprig_dense_gemv"), "message: %s", sprig_last_error());
    }
    sprig_plan_free(plan);
}

static void check_archs(void) {
    int archs[64];
    int n = sprig_supported_archs(archs, 64);
    CHECK(n >= 2);
    int has80 = 0, has90 = 0;
    for (int i = 0; i < n && i < 64; ++i) has80 |= archs[i] == 80, has90 |= archs[i] == 90;
    CHECK(has80 && has90);

    struct { const char *text; int ok, arch, ptx; const char *suffix; } cases[] = {
        {"sm_90", 1, 90, 0, ""},      {"90", 1, 90, 0, ""},        {"compute_90", 1, 90, 1, ""},
        {"sm_90a", 1, 90, 0, "a"},    {"sm_80", 1, 80, 0, ""},     {"sm_12", 0, 0, 0, ""},
        {"sm_80a", 0, 0, 0, ""},      {"sm_9O", 0, 0, 0, ""},      {"", 0, 0, 0, ""},
        {"sm_", 0, 0, 0, ""},         {"sm_90 ", 0, 0, 0, ""},     {"compute_", 0, 0, 0, ""},
        {"sm_900000", 0, 0, 0, ""},   {"-90", 0, 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        int arch = -1, ptx = -1;
        char suffix[2] = "?";
        sprig_status s = sprig_parse_arch(cases[i].text, &arch, &ptx, suffix);
        CHECK_MSG((s == SPRIG_OK) == cases[i].ok, "'%s': %s", cases[i].text, sprig_last_error());
        if (cases[i].ok && s == SPRIG_OK)
            CHECK_MSG(arch == cases[i].arch && ptx == cases[i].ptx && !strcmp(suffix, cases[i].suffix),
                      "'%s' -> %d %d '%s'", cases[i].text, arch, ptx, suffix);
        if (!cases[i].ok) CHECK(s == SPRIG_E_INVALID);
    }
    CHECK(sprig_parse_arch(NULL, NULL, NULL, NULL) == SPRIG_E_INVALID);

    /* sprig_compile with an unknown arch: invalid, naming what is supported. */
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 32, NULL};
    sprig_plan *plan = NULL;
    CHECK(gen && sprig_gen_render(gen, &req, &plan) == SPRIG_OK);
    sprig_compile_opts o = {"sm_12", 0, "", 0};
    sprig_binary *b = NULL;
    CHECK(plan && sprig_compile(plan, &o, &b) == SPRIG_E_INVALID && b == NULL);
    const char *msg = sprig_last_error();
    CHECK_MSG(sp_contains(msg, "sm_12") && sp_contains(msg, "sm_80") && sp_contains(msg, "sm_90"), "message: %s", msg);
    CHECK(sprig_compile(NULL, &o, &b) == SPRIG_E_INVALID);
    CHECK(plan && sprig_compile(plan, NULL, &b) == SPRIG_E_INVALID);
    sprig_plan_free(plan);
    sprig_gen_close(gen);
}

/* Runs `sprig args...`, stdout to /dev/null and stderr into a buffer.
 * Returns the exit code, or 1000 + signal when it died. */
static int run_cli(const char *exe, const char *const *args, char *err, size_t cap) {
    char errpath[128];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmpdir);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY), e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || e < 0) _exit(127);
        dup2(out, 1);
        dup2(e, 2);
        const char *argv[32] = {exe};
        int n = 1;
        for (; args[n - 1] && n < 31; ++n) argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    FILE *fp = fopen(errpath, "r");
    size_t got = fp ? fread(err, 1, cap - 1, fp) : 0;
    err[got] = '\0';
    if (fp) fclose(fp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

static void check_cli(const char *exe) {
    struct { const char *args[16]; const char *expect; } bad[] = {
        {{"compile", "--family", "no_such_family", "--model", "llama2-7b", NULL}, "no_such_family"},
        {{"compile", "--family", "dense_gemv", "--shape", "4100,11008", NULL}, "d=4100"},
        {{"compile", "--shape", "4100,11008", NULL}, "d=4100"},
        {{"compile", "--model", "llama2-7b", "--arch", "sm_12", NULL}, "sm_12"},
        {{"compile", "--model", "llama2-7b", "--arch", "sm_90,bogus", NULL}, "bogus"},
        {{"compile", "--family", "dense_gemv", "--model", "llama2-7b", "--g", "24", NULL}, "g=24"},
        {{"compile", "--model", "llama2-7b", "--g", "24", NULL}, "g=24"},
        {{"compile", "--family", "dense_gemv", "--model", "llama2-7b", "--param", "threads=100", NULL}, "threads=100"},
        {{"compile", "--model", "llama2-7b", "--param", "threads=128", NULL}, "--family"},
        {{"compile", "--model", "no_such_model", NULL}, "no_such_model"},
        {{"compile", "--family", "dense_gemv", NULL}, "--shape"},
        {{"compile", "--model", "llama2-7b", "-j", "0", NULL}, "-j"},
        {{"compile", "--model", "llama2-7b", "--bogus-option", NULL}, "--bogus-option"},
        {{"gen", "--family", "no_such_family", "--model", "llama2-7b", NULL}, "no_such_family"},
        {{"gen", "--family", "dense_gemv", "--shape", "4100,11008", NULL}, "d=4100"},
        {{"gen", "--family", "dense_gemv", "--model", "llama2-7b", "--g", "24", NULL}, "g=24"},
        {{"gen", "--family", "dense_gemv", "--model", "llama2-7b", "--param", "threads=100", NULL}, "threads=100"},
    };
    char err[16384];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        int rc = run_cli(exe, bad[i].args, err, sizeof err);
        CHECK_MSG(rc > 0 && rc < 128, "sprig %s %s ...: exit %d", bad[i].args[0], bad[i].args[2], rc);
        CHECK_MSG(sp_contains(err, bad[i].expect), "case %zu: stderr lacks '%s': %s", i, bad[i].expect, err);
    }
    /* And the good path exits 0. */
    const char *good[] = {"compile", "--family", "dense_gemv", "--model", "llama2-7b", "--json", NULL};
    int rc = run_cli(exe, good, err, sizeof err);
    CHECK_MSG(rc == 0, "sprig compile --family dense_gemv: exit %d: %s", rc, err);
    const char *help[] = {"compile", "--help", NULL};
    CHECK(run_cli(exe, help, err, sizeof err) == 0);
}

int main(int argc, char **argv) {
    CHECK(mkdtemp(tmpdir) != NULL);
    check_cuda_error_line();
    check_lua_error_line();
    check_missing_entry();
    check_archs();
    if (argc > 1) check_cli(argv[1]);
    else CHECK_MSG(0, "usage: test_errors PATH_TO_SPRIG");
    char path[128];
    snprintf(path, sizeof path, "%s/dense_gemv.cu.lua", tmpdir);
    unlink(path);
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return sp_test_finish("test_errors", 1);
}
