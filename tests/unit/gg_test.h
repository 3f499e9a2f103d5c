/*
 * gg_test.h: the unit tests' tiny harness. A test file defines test functions,
 * lists them in main with GG_RUN, and ends with GG_DONE. CHECK records a
 * failure and goes on; REQUIRE stops the current test. The closing line reads
 * "N passed, N failed".
 */
#ifndef GG_TEST_H
#define GG_TEST_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int gg_test_failures_now;
static int gg_tests_passed;
static int gg_tests_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            gg_test_failures_now++;                                                                \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            gg_test_failures_now++;                                                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long gg_a_ = (long long) (a), gg_b_ = (long long) (b);                                \
        if (gg_a_ != gg_b_) {                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, gg_a_, gg_b_);                                                         \
            gg_test_failures_now++;                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *gg_a_ = (a), *gg_b_ = (b);                                                     \
        if (!gg_a_ || !gg_b_ || strcmp(gg_a_, gg_b_) != 0) {                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,        \
                    __LINE__, #a, #b, gg_a_ ? gg_a_ : "(null)", gg_b_ ? gg_b_ : "(null)");         \
            gg_test_failures_now++;                                                                \
        }                                                                                          \
    } while (0)

#define GG_RUN(fn)                                                                                 \
    do {                                                                                           \
        gg_test_failures_now = 0;                                                                  \
        fn();                                                                                      \
        if (gg_test_failures_now) {                                                                \
            gg_tests_failed++;                                                                     \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        } else {                                                                                   \
            gg_tests_passed++;                                                                     \
            fprintf(stderr, "ok   %s\n", #fn);                                                     \
        }                                                                                          \
    } while (0)

#define GG_DONE()                                                                                  \
    do {                                                                                           \
        printf("%d passed, %d failed\n", gg_tests_passed, gg_tests_failed);                        \
        return gg_tests_failed ? 1 : 0;                                                            \
    } while (0)

/* Writes text to dir/rel, creating the folders of rel below dir. Returns 0
 * or -1. For tests that lay out catalogs and plans in a temporary folder. */
static inline int gg_test_write_file(const char *dir, const char *rel, const char *text)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

#endif
