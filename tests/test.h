/* test.h - the few macros forja's C unit tests need.
 *
 * CHECK(cond) records a failure (with file and line) and goes on, so one run shows every
 * broken case; TEST_MAIN's return value is the failure count's verdict for CTest.
 */
#ifndef FJ_TEST_H
#define FJ_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_U(a, b)                                                                           \
    do {                                                                                           \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);             \
        test_checks++;                                                                             \
        if (a_ != b_) {                                                                            \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == %llu, expected %llu\n", __FILE__, __LINE__, #a, a_, b_); \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        test_checks++;                                                                             \
        if (strcmp(a_, b_) != 0) {                                                                 \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, a_,  \
                    b_);                                                                           \
        }                                                                                          \
    } while (0)

#define RUN(test)                                                                                  \
    do {                                                                                           \
        int before_ = test_failures;                                                               \
        test();                                                                                    \
        printf("%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #test);                      \
    } while (0)

#define TEST_DONE()                                                                                \
    (printf("%d checks, %d failed\n", test_checks, test_failures), test_failures != 0)

#endif
