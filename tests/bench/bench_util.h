/*
 * bench_util.h - what every bench program repeats: a monotonic clock and
 * fatal error checks that name the program. Define BENCH_NAME before
 * including it.
 */
#ifndef CD_BENCH_UTIL_H
#define CD_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "colddiff.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME (the program's name) before including bench_util.h"
#endif

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Print what failed with the library's message, and exit 1. */
static inline void die(const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, cd_last_error());
    exit(1);
}

static inline void check(cd_status st, const char *what)
{
    if (st != CD_OK) die(what);
}

#endif /* CD_BENCH_UTIL_H */
