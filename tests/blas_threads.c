/* blas_threads.c - the library pins OpenBLAS to one thread when it
 * loads, unless COLDDIFF_BLAS_THREADS=keep asks it to leave the host's
 * setting alone (ctest runs this twice: plain, and with keep and
 * OPENBLAS_NUM_THREADS=2). Built only with OpenBLAS. */
#include "test_util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

START_TEST(blas_thread_count_follows_the_setting)
{
    const char *keep = getenv("COLDDIFF_BLAS_THREADS");
    const bool keeps = keep && !strcmp(keep, "keep");
    const char *host = getenv("OPENBLAS_NUM_THREADS");
    if (keeps) {
        /* The test asks for 2 BLAS threads; a one-core machine gets 1. */
        ck_assert_msg(host && !strcmp(host, "2"), "run with OPENBLAS_NUM_THREADS=2");
        const int at_load = openblas_get_num_threads();
        CD_ASSERT_OK(cd_set_num_threads(2));
        ck_assert_int_eq(openblas_get_num_threads(), at_load);
        openblas_set_num_threads(2);
        CD_ASSERT_OK(cd_set_num_threads(1));
        ck_assert_int_eq(openblas_get_num_threads(), 2); /* the host's, kept */
    } else {
        ck_assert_int_eq(openblas_get_num_threads(), 1); /* pinned at load */
        openblas_set_num_threads(2);
        CD_ASSERT_OK(cd_set_num_threads(2));
        ck_assert_int_eq(openblas_get_num_threads(), 1); /* and again here */
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("blas_threads");
    TCase *tc = tcase_create("pinning");
    tcase_add_test(tc, blas_thread_count_follows_the_setting);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
