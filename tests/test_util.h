/* Minimal assertion helpers shared by the test executables. A failed CHECK
 * prints file:line and the expression, and the test exits 1 at the end. */
#ifndef SP_TEST_UTIL_H
#define SP_TEST_UTIL_H
#include <stdio.h>

extern int sp_test_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++sp_test_failures;                                                      \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            ++sp_test_failures;                                                      \
        }                                                                            \
    } while (0)

/* True when haystack contains needle (NULL-safe). */
int sp_contains(const char *haystack, const char *needle);
/* ‖got − ref‖ / ‖ref‖ over n floats, in double (‖got − ref‖ when ref is 0). */
double sp_rel_err_f32(const float *got, const float *ref, int n);
/* Number of files in dir whose name contains needle (hidden ones not counted). */
int sp_test_count_files(const char *dir, const char *needle);
/* Removes dir and everything below it (a test's scratch folder). */
void sp_test_remove_dir(const char *dir);
/* Prints "N passed, M failed" and returns the process exit code. */
int sp_test_finish(const char *name, int checks_run);
#endif
