/* The on-disk compile cache: miss then hit with identical bytes and report;
 * truncated, garbage, bit-flipped and empty entries are detected, rebuilt and
 * rewritten; an unwritable or disabled cache never fails a compile; the
 * folder is chosen from opts, $SPRIG_CACHE_DIR, $XDG_CACHE_HOME, $HOME; the
 * key changes with the options; concurrent writers of one entry are safe. */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sprig.h"
#include "test_util.h"

static char root[] = "/tmp/sprig-test-cache-XXXXXX";
static const sprig_plan *the_plan;

static sprig_binary *compile_in(const char *dir, const char *arch, int line_info, sprig_status *st) {
    sprig_compile_opts o = {arch, 0, dir, line_info};
    sprig_binary *b = NULL;
    *st = sprig_compile(the_plan, &o, &b);
    if (*st != SPRIG_OK) fprintf(stderr, "compile: %s\n", sprig_last_error());
    return b;
}

static sprig_binary *compile(const char *dir, sprig_status *st) { return compile_in(dir, "sm_90", 0, st); }

/* Same image bytes and the same resource report. */
static int same_binary(const sprig_binary *a, const sprig_binary *b) {
    if (!a || !b || a->image_size != b->image_size || memcmp(a->image, b->image, a->image_size) != 0) return 0;
    if (a->n_kernels != b->n_kernels || strcmp(a->cache_key, b->cache_key) != 0) return 0;
    for (int k = 0; k < a->n_kernels; ++k)
        if (memcmp(&a->res[k], &b->res[k], sizeof a->res[k]) != 0 ||
            strcmp(a->kernel_names[k], b->kernel_names[k]) != 0)
            return 0;
    return 1;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void entry_path(char *out, size_t cap, const char *dir, const sprig_binary *b) {
    snprintf(out, cap, "%s/%s.sprigbin", dir, b->cache_key);
}

/* Damages the entry with f, then checks: a miss, the same result, and a hit
 * after that (so the entry was rewritten whole). Sizes may differ by a byte or
 * two: the stored ptxas log carries its compile time. */
static void check_rebuild(const char *what, const char *dir, const sprig_binary *ref, void (*damage)(const char *)) {
    char path[1024];
    entry_path(path, sizeof path, dir, ref);
    long size = file_size(path);
    damage(path);
    sprig_status st;
    sprig_binary *b = compile(dir, &st);
    CHECK_MSG(st == SPRIG_OK && b && !b->cache_hit, "%s: not rebuilt", what);
    CHECK_MSG(same_binary(ref, b), "%s: rebuilt binary differs", what);
    CHECK_MSG(file_size(path) > size / 2, "%s: entry not rewritten (%ld bytes, was %ld)", what, file_size(path), size);
    sprig_binary_free(b);
    b = compile(dir, &st);
    CHECK_MSG(st == SPRIG_OK && b && b->cache_hit && same_binary(ref, b), "%s: no hit after rebuild", what);
    sprig_binary_free(b);
}

static void truncate_half(const char *path) { CHECK(truncate(path, file_size(path) / 2) == 0); }
static void make_empty(const char *path) { CHECK(truncate(path, 0) == 0); }

static void fill_garbage(const char *path) {
    long n = file_size(path);
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    srand(7);
    for (long i = 0; i < n; ++i) fputc(rand() & 0xff, fp);
    fclose(fp);
}

/* One flipped bit deep in the image: only the checksum can tell. */
static void flip_bit(const char *path) {
    FILE *fp = fopen(path, "r+b");
    CHECK(fp != NULL);
    if (!fp) return;
    long at = file_size(path) - 100;
    fseek(fp, at, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
}

static void *concurrent(void *arg) {
    sprig_status st;
    sprig_binary *b = compile(arg, &st);
    return st == SPRIG_OK ? b : NULL;
}

/* Where an entry lands when opts->cache_dir is NULL, under each variable. */
static void check_dir_resolution(const sprig_binary *ref) {
    char want[512], dir[512];
    const char *home = getenv("HOME");
    char *saved_home = home ? strdup(home) : NULL;
    char *saved_env = getenv("SPRIG_CACHE_DIR") ? strdup(getenv("SPRIG_CACHE_DIR")) : NULL;
    struct { const char *sprig, *xdg, *home, *sub; } cases[] = {
        {"env", NULL, NULL, "env"},
        {NULL, "xdg", NULL, "xdg/sprig"},
        {NULL, NULL, "home", "home/.cache/sprig"},
    };
    for (int i = 0; i < 3; ++i) {
        unsetenv("SPRIG_CACHE_DIR");
        unsetenv("XDG_CACHE_HOME");
        snprintf(dir, sizeof dir, "%s/%s", root, cases[i].sprig ? cases[i].sprig : cases[i].xdg ? cases[i].xdg : "home");
        if (cases[i].sprig) setenv("SPRIG_CACHE_DIR", dir, 1);
        if (cases[i].xdg) setenv("XDG_CACHE_HOME", dir, 1);
        setenv("HOME", cases[i].home ? dir : "/nonexistent-home", 1);
        snprintf(want, sizeof want, "%s/%s/%s.sprigbin", root, cases[i].sub, ref->cache_key);
        sprig_status st;
        sprig_binary *b = compile(NULL, &st);
        CHECK_MSG(st == SPRIG_OK && file_size(want) > 0, "no entry at %s", want);
        sprig_binary_free(b);
    }
    /* Set but empty: caching off, nothing written anywhere. */
    setenv("SPRIG_CACHE_DIR", "", 1);
    sprig_status st;
    sprig_binary *b = compile(NULL, &st);
    CHECK(st == SPRIG_OK && b && !b->cache_hit);
    sprig_binary_free(b);
    if (saved_home) setenv("HOME", saved_home, 1);
    if (saved_env) setenv("SPRIG_CACHE_DIR", saved_env, 1);
    else unsetenv("SPRIG_CACHE_DIR");
    free(saved_home);
    free(saved_env);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.' || strlen(e->d_name) > 2;
    if (d) closedir(d);
    return n;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    CHECK(mkdtemp(root) != NULL);
    sprig_gen *gen = NULL;
    CHECK(sprig_gen_open(&gen, NULL) == SPRIG_OK);
    sprig_request req = {"dense_gemv", 4096, 11008, "fp16", 1, 32, "threads=128"};
    sprig_plan *plan = NULL;
    CHECK(gen && sprig_gen_render(gen, &req, &plan) == SPRIG_OK);
    if (!plan) return sp_test_finish("test_cache", 0);
    the_plan = plan;
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/deep/er/cache", root); /* created with mkdir -p */

    /* Miss, then hit: same bytes, same registers, same log. */
    sprig_status st;
    sprig_binary *first = compile(dir, &st);
    CHECK(st == SPRIG_OK && first && !first->cache_hit && first->compile_ms > 0);
    if (!first) return sp_test_finish("test_cache", 0);
    entry_path(path, sizeof path, dir, first);
    CHECK_MSG(file_size(path) > (long)first->image_size, "no entry at %s", path);
    sprig_binary *second = compile(dir, &st);
    CHECK(st == SPRIG_OK && second && second->cache_hit && second->compile_ms == 0);
    CHECK(same_binary(first, second));
    CHECK(second && second->res[0].registers > 0 && second->res[0].registers == first->res[0].registers);
    CHECK(second && strcmp(second->log, first->log) == 0 && sp_contains(second->log, "Used "));
    CHECK(second && strcmp(second->arch, "sm_90") == 0 && !second->is_ptx);
    sprig_binary_free(second);

    /* Damaged entries are detected, rebuilt, rewritten. */
    check_rebuild("truncated to half", dir, first, truncate_half);
    check_rebuild("garbage", dir, first, fill_garbage);
    check_rebuild("one bit flipped", dir, first, flip_bit);
    check_rebuild("empty", dir, first, make_empty);

    /* The key follows the options and the arch. */
    sprig_binary *li = compile_in(dir, "sm_90", 1, &st);
    sprig_binary *a80 = compile_in(dir, "sm_80", 0, &st);
    sprig_binary *ptx = compile_in(dir, "compute_90", 0, &st);
    CHECK(li && a80 && ptx);
    if (li && a80 && ptx) {
        CHECK(strcmp(li->cache_key, first->cache_key) != 0 && !li->cache_hit);
        CHECK(strcmp(a80->cache_key, first->cache_key) != 0 && strcmp(a80->arch, "sm_80") == 0);
        CHECK(strcmp(ptx->cache_key, first->cache_key) != 0 && ptx->is_ptx);
    }
    sprig_binary_free(li);
    sprig_binary_free(a80);
    sprig_binary_free(ptx);
    sprig_binary *ptx2 = compile_in(dir, "compute_90", 0, &st); /* a PTX hit keeps its text */
    CHECK(ptx2 && ptx2->cache_hit && ptx2->is_ptx && sp_contains(ptx2->image, ".entry"));
    CHECK(ptx2 && ptx2->res[0].registers == -1);
    sprig_binary_free(ptx2);

    /* Unwritable: a regular file where the folder should be. Compiles anyway. */
    char blocked[512];
    snprintf(blocked, sizeof blocked, "%s/afile", root);
    FILE *fp = fopen(blocked, "w");
    CHECK(fp && fclose(fp) == 0);
    snprintf(blocked, sizeof blocked, "%s/afile/cache", root);
    for (int i = 0; i < 2; ++i) {
        sprig_binary *b = compile(blocked, &st);
        CHECK_MSG(st == SPRIG_OK && b && !b->cache_hit && same_binary(first, b), "unwritable cache dir failed");
        sprig_binary_free(b);
    }
    /* A read-only folder (only meaningful when not root: root may write anyway). */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/readonly", root);
    CHECK(mkdir(ro, 0555) == 0);
    sprig_binary *b = compile(ro, &st);
    CHECK(st == SPRIG_OK && b && same_binary(first, b));
    sprig_binary_free(b);
    chmod(ro, 0755);

    /* "" disables the cache: two misses. */
    for (int i = 0; i < 2; ++i) {
        b = compile("", &st);
        CHECK(st == SPRIG_OK && b && !b->cache_hit && b->compile_ms > 0 && same_binary(first, b));
        sprig_binary_free(b);
    }

    check_dir_resolution(first);

    /* Four threads racing to create one entry: all succeed with equal results. */
    char race[512];
    snprintf(race, sizeof race, "%s/race", root);
    pthread_t tid[4];
    for (int t = 0; t < 4; ++t) pthread_create(&tid[t], NULL, concurrent, race);
    for (int t = 0; t < 4; ++t) {
        void *r = NULL;
        pthread_join(tid[t], &r);
        CHECK(r && same_binary(first, r));
        sprig_binary_free(r);
    }
    b = compile(race, &st);
    CHECK(b && b->cache_hit && same_binary(first, b));
    sprig_binary_free(b);
    CHECK_MSG(count_files(race) == 1, "%d files in %s: temp files left behind", count_files(race), race);

    sprig_binary_free(first);
    sprig_plan_free(plan);
    sprig_gen_close(gen);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return sp_test_finish("test_cache", 1);
}
