#include <math.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

int sp_test_failures = 0;

int sp_contains(const char *haystack, const char *needle) {
    return haystack && needle && strstr(haystack, needle) != NULL;
}

int sp_test_finish(const char *name, int checks_run) {
    printf("%s: %s (%d failure%s)\n", name, sp_test_failures ? "FAILED" : "ok", sp_test_failures,
           sp_test_failures == 1 ? "" : "s");
    (void)checks_run;
    return sp_test_failures ? 1 : 0;
}

double sp_rel_err_f32(const float *got, const float *ref, int n) {
    double e2 = 0, r2 = 0;
    for (int i = 0; i < n; ++i) {
        const double d = (double)got[i] - ref[i];
        e2 += d * d, r2 += (double)ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
}

int sp_test_count_files(const char *dir, const char *needle) {
    DIR *dp = opendir(dir);
    int n = 0;
    for (struct dirent *de; dp && (de = readdir(dp));)
        if (de->d_name[0] != '.' && strstr(de->d_name, needle)) ++n;
    if (dp) closedir(dp);
    return n;
}

void sp_test_remove_dir(const char *dir) {
    DIR *dp = opendir(dir);
    for (struct dirent *de; dp && (de = readdir(dp));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0) sp_test_remove_dir(path); /* a folder left by a failed case */
    }
    if (dp) closedir(dp);
    rmdir(dir);
}
