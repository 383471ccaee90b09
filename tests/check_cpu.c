/*
 * check_cpu.c - the kernels' CPU path follows the CPU and the
 * COLDDIFF_MAX_CPU_ISA cap. CTest runs this twice, once as the environment
 * has it and once with the cap set, so the suite's portable pass cannot
 * quietly run the AVX-512 kernels.
 */
#include "test_util.h"

#include <strings.h>

#include "core.h"
#include "ops/vmath.h"

START_TEST(path_follows_cpu_and_cap)
{
    const char *cap = getenv("COLDDIFF_MAX_CPU_ISA");
    const bool capped = cap && strcasecmp(cap, "portable") == 0;
    bool cpu = false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    cpu = __builtin_cpu_supports("avx512f");
#endif
    const bool want = cpu && !capped;
    printf("AVX-512F %s, COLDDIFF_MAX_CPU_ISA %s: kernels %s\n", cpu ? "present" : "absent",
           cap ? cap : "unset", cd__cpu_avx512() ? "AVX-512" : "portable");
    ck_assert_int_eq(cd__cpu_avx512(), want);
    ck_assert_int_eq(cd__ops_avx512(), want);
    for (int k = 0; k < CD__KERNELS_COUNT; k++)
        ck_assert_int_eq(cd__cpu_use_avx512((cd__kernels)k), want);
    /* Each hook holds back its own family only, and lets it go again. */
    cd__cpu_force_portable(CD__KERNELS_VMATH, true);
    ck_assert(!cd__ops_avx512());
    ck_assert(!cd__cpu_use_avx512(CD__KERNELS_VMATH));
    ck_assert_int_eq(cd__cpu_use_avx512(CD__KERNELS_CONV), want);
    cd__cpu_force_portable(CD__KERNELS_VMATH, false);
    ck_assert_int_eq(cd__ops_avx512(), want);
    cd__cpu_force_portable(CD__KERNELS_CONV, true);
    ck_assert(!cd__cpu_use_avx512(CD__KERNELS_CONV));
    ck_assert_int_eq(cd__cpu_use_avx512(CD__KERNELS_SPECTRAL), want);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
    ck_assert_int_eq(cd__cpu_avx512(), want);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("cpu");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, path_follows_cpu_and_cap);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
