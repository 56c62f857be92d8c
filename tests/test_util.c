#include <math.h>
#include <string.h>

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
