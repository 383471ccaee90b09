/* check_schedule.c - schedules against closed forms and the numbers of
 * docs/models.md, Schedules; reference values from an independent numpy
 * computation where no closed form exists. */
#include "fixture.h"
#include "test_util.h"

#include <math.h>
#include <string.h>

static void assert_rel(double got, double want, double rel, const char *what)
{
    ck_assert_msg(fabs(got - want) <= rel * fabs(want), "%s: %.9g, expected %.9g", what, got, want);
}

START_TEST(linear_matches_formula)
{
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02));
    ck_assert_int_eq(cd_schedule_T(s), 1000);
    ck_assert_int_eq(cd_schedule_get_kind(s), CD_SCHEDULE_LINEAR);
    float b, a;
    CD_ASSERT_OK(cd_schedule_at(s, 0, &b, &a));
    ck_assert(b == 0.0f && a == 1.0f);
    CD_ASSERT_OK(cd_schedule_at(s, 1, &b, NULL));
    ck_assert(b == 1e-4f);
    CD_ASSERT_OK(cd_schedule_at(s, 1000, &b, &a));
    ck_assert(b == 0.02f);
    assert_rel(a, 4.0358296e-05, 1e-6, "alpha-bar_1000"); /* numpy, float betas */
    CD_ASSERT_OK(cd_schedule_at(s, 500, NULL, &a));
    assert_rel(a, 0.07858724, 1e-6, "alpha-bar_500");
    cd_schedule_free(s);
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 1, 0.3, 0.5));
    CD_ASSERT_OK(cd_schedule_at(s, 1, &b, &a));
    ck_assert(b == 0.3f);
    assert_rel(a, 0.7, 1e-7, "T = 1");
    cd_schedule_free(s);
}
END_TEST

START_TEST(constant_is_a_power)
{
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 2000, 0.001));
    for (int64_t t = 0; t <= 2000; t += 250) {
        float a;
        CD_ASSERT_OK(cd_schedule_at(s, t, NULL, &a));
        assert_rel(a, pow(1.0 - (double)0.001f, (double)t), 1e-6, "(1 - c)^t");
    }
    cd_schedule_free(s);
}
END_TEST

START_TEST(constant_report_is_one_step_ahead)
{
    cd_schedule *lib = NULL, *rep = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&lib, 200, 0.1));
    CD_ASSERT_OK(cd_schedule_create_constant_report(&rep, 200, 0.1));
    float b0, a0;
    CD_ASSERT_OK(cd_schedule_at(rep, 0, &b0, &a0));
    ck_assert(b0 == 0.1f); /* the quirk: beta_0 = c */
    assert_rel(a0, 0.9, 1e-6, "report alpha-bar_0");
    for (int64_t t = 1; t <= 200; t += 33) {
        float al, ar;
        CD_ASSERT_OK(cd_schedule_at(lib, t, NULL, &al));
        CD_ASSERT_OK(cd_schedule_at(rep, t, NULL, &ar));
        /* float32 cumsum of logs: relative error grows like t * 2^-24. */
        assert_rel(ar, pow(0.9, (double)t + 1.0), 1e-6 * (double)(t + 1), "(1-c)^(t+1)");
        assert_rel(ar / al, 0.9, 1e-4 * (double)(t + 1), "10% off the library's");
    }
    cd_schedule_free(lib);
    cd_schedule_free(rep);
    /* c = 1 (the blur): alpha-bar is all zeros, harmlessly. */
    CD_ASSERT_OK(cd_schedule_create_constant_report(&rep, 100, 1.0));
    float b, a;
    CD_ASSERT_OK(cd_schedule_at(rep, 50, &b, &a));
    ck_assert(b == 1.0f && a == 0.0f);
    cd_schedule_free(rep);
}
END_TEST

START_TEST(cosine_report_preset)
{
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_cosine_report(&s, 1000));
    float b, a;
    CD_ASSERT_OK(cd_schedule_at(s, 1000, &b, &a));
    ck_assert(b == 0.9f);                                      /* the only clipped value */
    assert_rel(a, 3.749982237642683e-33, 1e-6, "alpha-bar_T"); /* not recomputed */
    CD_ASSERT_OK(cd_schedule_at(s, 999, &b, NULL));
    assert_rel(b, 0.7499993929010453, 1e-6, "beta_999");
    CD_ASSERT_OK(cd_schedule_at(s, 1, &b, NULL));
    assert_rel(b, 4.128422482196914e-05, 1e-5, "beta_1");
    /* The first DDPM step scales by 1/sqrt(1 - beta_T) = 3.16. */
    CD_ASSERT_OK(cd_schedule_at(s, 1000, &b, NULL));
    assert_rel(1.0 / sqrt(1.0 - b), 3.1622776, 1e-6, "first step");
    float beta[1001], abar[1001];
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, beta, abar, 1001));
    int clipped = 0;
    for (int t = 1; t <= 1000; t++) {
        clipped += beta[t] == 0.9f;
        ck_assert(abar[t] < abar[t - 1]);
    }
    ck_assert_int_eq(clipped, 1);
    cd_schedule_free(s);
}
END_TEST

START_TEST(cosine_recomputes_alpha_bar)
{
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_cosine(&s, 1000, 0.008, 0.999));
    float beta[1001], abar[1001];
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, beta, abar, 1001));
    ck_assert(beta[1000] == 0.999f);
    /* The default clip would scale the first DDPM step by 31.6. */
    assert_rel(1.0 / sqrt(1.0 - (double)beta[1000]), 31.62, 1e-3, "first step");
    double prod = 1.0;
    for (int t = 1; t <= 1000; t++) {
        prod *= 1.0 - (double)beta[t];
        ck_assert(abar[t] == (float)prod);
    }
    ck_assert(abar[1000] > 1e-10f); /* recomputed: no longer ~1e-33 */
    cd_schedule_free(s);
}
END_TEST

START_TEST(custom_and_arrays)
{
    const float beta[4] = {0.1f, 0.2f, 0.5f, 1.0f};
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_custom(&s, beta, 4));
    float a;
    CD_ASSERT_OK(cd_schedule_at(s, 3, NULL, &a));
    assert_rel(a, 0.9 * 0.8 * 0.5, 1e-6, "product");
    CD_ASSERT_OK(cd_schedule_at(s, 4, NULL, &a));
    ck_assert(a == 0.0f);
    cd_schedule_free(s);

    const float b5[5] = {0.1f, 0.1f, 0.1f, 0.1f, 0.1f}, a5[5] = {0.9f, 0.81f, 0.7f, 0.6f, 0.5f};
    CD_ASSERT_OK(cd_schedule_create_arrays(&s, b5, a5, 4));
    float got_b[5], got_a[5];
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, got_b, got_a, 5));
    ck_assert_mem_eq(got_b, b5, sizeof b5);
    ck_assert_mem_eq(got_a, a5, sizeof a5); /* verbatim, not derived */
    ck_assert_int_eq(cd_schedule_get_kind(s), CD_SCHEDULE_ARRAYS);
    cd_schedule_free(s);
}
END_TEST

START_TEST(invalid_parameters_are_errors)
{
    cd_schedule *s = (cd_schedule *)0x1;
    CD_ASSERT_STATUS(cd_schedule_create_linear(&s, 0, 1e-4, 0.02), CD_ERR_RANGE);
    ck_assert_ptr_null(s);
    CD_ASSERT_ERROR_MENTIONS("T = 0");
    CD_ASSERT_STATUS(cd_schedule_create_linear(&s, 10, 0.0, 0.02), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("beta_min");
    CD_ASSERT_STATUS(cd_schedule_create_linear(&s, 10, 1e-4, 1.5), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_linear(&s, 10, NAN, 0.02), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_schedule_create_constant(&s, 10, -0.1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_constant(&s, -5, 0.1), CD_ERR_RANGE);
    /* Positive in double, zero in float32. */
    CD_ASSERT_STATUS(cd_schedule_create_constant(&s, 10, 1e-50), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_linear(&s, 10, 1e-46, 1e-46), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_constant_report(&s, 10, INFINITY), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_schedule_create_cosine(&s, 10, -0.1, 0.999), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_cosine(&s, 10, 0.008, 0.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_cosine(&s, 10, NAN, 0.9), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_schedule_create_cosine_report(&s, 0), CD_ERR_RANGE);
    const float bad[3] = {0.1f, NAN, 0.2f};
    CD_ASSERT_STATUS(cd_schedule_create_custom(&s, bad, 3), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("t = 2");
    const float zero[3] = {0.1f, 0.0f, 0.2f};
    CD_ASSERT_STATUS(cd_schedule_create_custom(&s, zero, 3), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_custom(&s, NULL, 3), CD_ERR_INVALID_ARGUMENT);
    const float a3[3] = {1.0f, 1.5f, 0.5f};
    CD_ASSERT_STATUS(cd_schedule_create_arrays(&s, zero, a3, 2), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("alpha_bar[1]");
    CD_ASSERT_STATUS(cd_schedule_create_linear(NULL, 10, 1e-4, 0.02), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(s);

    CD_ASSERT_OK(cd_schedule_create_constant(&s, 10, 0.1));
    float b;
    CD_ASSERT_STATUS(cd_schedule_at(s, 11, &b, NULL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_at(s, -1, &b, NULL), CD_ERR_RANGE);
    float arr[10];
    CD_ASSERT_STATUS(cd_schedule_copy_arrays(s, arr, NULL, 10), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_schedule_at(NULL, 1, &b, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_schedule_T(NULL), -1);
    cd_clear_error();
    ck_assert_int_eq(cd_schedule_get_kind(NULL), CD_SCHEDULE_INVALID);
    ck_assert_int_eq(CD_SCHEDULE_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_schedule_free(s);
    cd_schedule_free(NULL);
}
END_TEST

/* Distance in units in the last place between two floats of one sign. */
static int64_t ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* The report's float32 schedules against PyTorch (tests/reference,
 * make_schedule_fixtures.py): beta bit for bit, alpha-bar within 1 ulp
 * (PyTorch's float32 exp is not correctly rounded; ours is), and the
 * linear preset's alpha-bar_1000 exactly as the report's arithmetic left it. */
static void check_report_case(const cd_fixture *fx, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "%s.cfg", name);
    const float *cfg = cd_fixture_get(fx, key, NULL);
    const int64_t T = (int64_t)cfg[0];
    cd_schedule *s = NULL;
    if (cfg[3] == 0.0f)
        CD_ASSERT_OK(cd_schedule_create_linear_report(&s, T, cfg[1], cfg[2]));
    else
        CD_ASSERT_OK(cd_schedule_create_constant_report(&s, T, cfg[1]));
    int64_t n = 0;
    snprintf(key, sizeof key, "%s.beta", name);
    const float *beta = cd_fixture_get(fx, key, &n);
    ck_assert_int_eq(n, T + 1);
    snprintf(key, sizeof key, "%s.alpha_bar", name);
    const float *abar = cd_fixture_get(fx, key, NULL);
    int64_t off_by_one = 0;
    for (int64_t t = 0; t <= T; t++) {
        float b = 0, a = 0;
        CD_ASSERT_OK(cd_schedule_at(s, t, &b, &a));
        ck_assert_msg(memcmp(&b, &beta[t], 4) == 0, "%s: beta_%lld = %.9g, PyTorch %.9g", name,
                      (long long)t, (double)b, (double)beta[t]);
        const int64_t d = ulps(a, abar[t]);
        ck_assert_msg(d <= 1, "%s: alpha-bar_%lld = %.9g, PyTorch %.9g (%lld ulp)", name,
                      (long long)t, (double)a, (double)abar[t], (long long)d);
        off_by_one += d;
    }
    fprintf(stderr, "%s: beta identical at all %lld steps; alpha-bar 1 ulp off at %lld\n", name,
            (long long)T + 1, (long long)off_by_one);
    cd_schedule_free(s);
}

START_TEST(report_schedules_match_pytorch)
{
    static const char *const cases[] = {"linear", "linear37", "linear2", "down", "good", "bad"};
    cd_fixture *fx = cd_fixture_load("schedules.bin");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_report_case(fx, cases[i]);
    cd_fixture_free(fx);
    cd_schedule *s = NULL;
    float a = 0;
    uint32_t bits = 0;
    CD_ASSERT_OK(cd_schedule_create_linear_report(&s, 1000, 1e-4, 0.02));
    ck_assert_int_eq(cd_schedule_get_kind(s), CD_SCHEDULE_LINEAR_REPORT);
    CD_ASSERT_OK(cd_schedule_at(s, 1000, NULL, &a));
    memcpy(&bits, &a, 4);
    ck_assert_uint_eq(bits, 0x38294660u);
    cd_schedule_free(s);
    CD_ASSERT_STATUS(cd_schedule_create_linear_report(NULL, 10, 1e-4, 0.02),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_schedule_create_linear_report(&s, 0, 1e-4, 0.02), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_linear_report(&s, 10, 1e-4, 1.5), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_schedule_create_linear_report(&s, 10, NAN, 0.02), CD_ERR_NOT_FINITE);
    ck_assert_ptr_null(s);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, linear_matches_formula);
    tcase_add_test(tc, constant_is_a_power);
    tcase_add_test(tc, constant_report_is_one_step_ahead);
    tcase_add_test(tc, cosine_report_preset);
    tcase_add_test(tc, cosine_recomputes_alpha_bar);
    tcase_add_test(tc, custom_and_arrays);
    tcase_add_test(tc, invalid_parameters_are_errors);
    tcase_add_test(tc, report_schedules_match_pytorch);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
