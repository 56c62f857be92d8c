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
