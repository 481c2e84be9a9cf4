/* The test files' one assertion: report the failed condition and count it in *failures, going on. */
#ifndef VFMIGD_TEST_CHECK_H
#define VFMIGD_TEST_CHECK_H

#include <stdio.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            (*failures)++;                                                           \
        }                                                                            \
    } while (0)

#endif
