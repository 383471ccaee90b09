/* check_degradation.c - the noise and blur operators: forward-process
 * moments, D(x, 0) = x, composition of blurs, mean preservation under
 * circular padding, and the blur against an independent 2-D reference. */
#include "test_util.h"

#include <math.h>

#include "diffusion/diffusion.h"

/* The mean and variance of z_t over many draws match sqrt(abar) x and
 * 1 - abar within 5 standard errors. */
START_TEST(noise_forward_moments)
{
    enum { N = 4000, D = 16 };
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&d, s));
    ck_assert_int_eq(cd_degradation_get_target(d), CD_TARGET_NOISE);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    cd_tensor *x = cd_test_tensor4(N, 1, 4, 4), *z = cd_test_tensor4(N, 1, 4, 4),
              *eps = cd_test_tensor4(N, 1, 4, 4);
    float *xp = cd_tensor_data(x);
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < D; i++) xp[n * D + i] = -0.5f + (float)i / (D - 1);
    const int64_t times[3] = {1, 300, 1000};
    int64_t *t = malloc(N * sizeof *t);
    for (int k = 0; k < 3; k++) {
        for (int64_t n = 0; n < N; n++) t[n] = times[k];
        CD_ASSERT_OK(cd_degradation_apply(d, x, t, N, rng, z, eps));
        float ab;
        CD_ASSERT_OK(cd_schedule_at(s, times[k], NULL, &ab));
        const float *zp = cd_tensor_data(z), *ep = cd_tensor_data(eps);
        for (int i = 0; i < D; i++) {
            double m = 0, v = 0;
            for (int64_t n = 0; n < N; n++) m += zp[n * D + i];
            m /= N;
            for (int64_t n = 0; n < N; n++) v += (zp[n * D + i] - m) * (zp[n * D + i] - m);
            v /= N;
            const double want_m = sqrt(ab) * xp[i], want_v = 1.0 - ab;
            const double se_m = sqrt(want_v / N), se_v = want_v * sqrt(2.0 / N);
            ck_assert_msg(fabs(m - want_m) < 5 * se_m, "t=%lld pixel %d: mean %g vs %g",
                          (long long)times[k], i, m, want_m);
            ck_assert_msg(fabs(v - want_v) < 5 * se_v, "t=%lld pixel %d: var %g vs %g",
                          (long long)times[k], i, v, want_v);
        }
        /* The returned eps is the noise that made z. */
        const float a = (float)sqrt((double)ab), b = (float)sqrt(1.0 - (double)ab);
        for (int64_t i = 0; i < N * D; i += 97) ck_assert(zp[i] == a * xp[i] + b * ep[i]);
    }
    free(t);
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_tensor_free(eps);
    cd_rng_free(rng);
    cd_degradation_free(d);
    cd_schedule_free(s);
}
END_TEST

START_TEST(zero_steps_is_identity)
{
    cd_schedule *s = NULL;
    cd_degradation *noise = NULL, *blur = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 100, 1.0));
    CD_ASSERT_OK(cd_degradation_create_noise(&noise, s));
    CD_ASSERT_OK(cd_degradation_create_blur(&blur, s, 11, CD_PADDING_REFLECT));
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    cd_tensor *x = cd_test_tensor4(2, 1, 28, 28), *z = cd_test_tensor4(2, 1, 28, 28);
    cd_test_fill_uniform(x, 3, -0.5f, 0.5f);
    const int64_t t0[2] = {0, 0};
    CD_ASSERT_OK(cd_degradation_apply(blur, x, t0, 2, NULL, z, NULL));
    ck_assert_mem_eq(cd_tensor_data(z), cd_tensor_data(x), 2 * 784 * sizeof(float));
    CD_ASSERT_OK(cd_degradation_apply(noise, x, t0, 2, rng, z, NULL));
    ck_assert_mem_eq(cd_tensor_data(z), cd_tensor_data(x), 2 * 784 * sizeof(float));
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_rng_free(rng);
    cd_degradation_free(noise);
    cd_degradation_free(blur);
    cd_schedule_free(s);
}
END_TEST

/* t blurs one at a time (G_1, then G_2, ...) equal D(x, t), and each
 * sample gets its own t. The steps go through the internal range blur the
 * samplers use, from t - 1 to t. */
START_TEST(blur_composes)
{
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 20, 0.3, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&d, s, 7, CD_PADDING_REFLECT));
    cd_tensor *x = cd_test_tensor4(2, 2, 9, 12), *direct = cd_test_tensor4(2, 2, 9, 12),
              *steps = NULL;
    cd_test_fill_uniform(x, 5, -0.5f, 0.5f);
    const int64_t t[2] = {6, 3};
    CD_ASSERT_OK(cd_degradation_apply(d, x, t, 2, NULL, direct, NULL));
    CD_ASSERT_OK(cd_tensor_clone(&steps, x));
    for (int64_t k = 1; k <= 6; k++) {
        const int64_t to[2] = {k <= t[0] ? k : t[0], k <= t[1] ? k : t[1]};
        const int64_t from[2] = {to[0] - (k <= t[0]), to[1] - (k <= t[1])};
        cd__blur_steps(d, cd_tensor_data(steps), 2, 2, 9, 12, to, from);
    }
    ck_assert_mem_eq(cd_tensor_data(steps), cd_tensor_data(direct), 432 * sizeof(float));
    /* And the blur did something. */
    ck_assert(memcmp(cd_tensor_data(x), cd_tensor_data(direct), 432 * sizeof(float)) != 0);
    cd_tensor_free(steps);
    cd_tensor_free(x);
    cd_tensor_free(direct);
    cd_degradation_free(d);
    cd_schedule_free(s);
}
END_TEST

/* An independent reference: pad the image (reflect or circular) once and
 * convolve with the k x k outer-product kernel, in double. */
static int64_t ref_index(int64_t i, int64_t n, int circular)
{
    if (circular) return ((i % n) + n) % n;
    return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

static void reference_blur(double *img, int64_t H, int64_t W, int64_t k, double sigma, int circular)
{
    double kern[64], sum = 0;
    for (int64_t i = 0; i < k; i++) {
        double x = (double)(i - k / 2) / sigma;
        kern[i] = exp(-0.5 * x * x);
        sum += kern[i];
    }
    double *out = calloc((size_t)(H * W), sizeof *out);
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
            for (int64_t a = 0; a < k; a++)
                for (int64_t b = 0; b < k; b++)
                    out[y * W + x] += kern[a] / sum * kern[b] / sum *
                                      img[ref_index(y + a - k / 2, H, circular) * W +
                                          ref_index(x + b - k / 2, W, circular)];
    memcpy(img, out, (size_t)(H * W) * sizeof *img);
    free(out);
}

START_TEST(blur_matches_2d_reference)
{
    const int64_t H = 28, W = 28, T = 100;
    for (int circular = 0; circular < 2; circular++) {
        cd_schedule *s = NULL;
        cd_degradation *d = NULL;
        CD_ASSERT_OK(cd_schedule_create_constant(&s, T, 1.0));
        CD_ASSERT_OK(
            cd_degradation_create_blur(&d, s, 11,
                                       circular ? CD_PADDING_CIRCULAR : CD_PADDING_REFLECT));
        ck_assert_int_eq(cd_degradation_get_target(d), CD_TARGET_IMAGE);
        cd_tensor *x = cd_test_tensor4(1, 1, H, W), *z = cd_test_tensor4(1, 1, H, W);
        cd_test_fill_uniform(x, 11, -0.5f, 0.5f);
        double *ref = malloc((size_t)(H * W) * sizeof *ref);
        for (int64_t i = 0; i < H * W; i++) ref[i] = cd_tensor_data(x)[i];
        const int64_t checkpoints[3] = {1, 10, 100};
        int64_t done = 0;
        for (int c = 0; c < 3; c++) {
            for (; done < checkpoints[c]; done++) reference_blur(ref, H, W, 11, 1.0, circular);
            CD_ASSERT_OK(cd_degradation_apply(d, x, &checkpoints[c], 1, NULL, z, NULL));
            double worst = 0;
            for (int64_t i = 0; i < H * W; i++) {
                double e = fabs(cd_tensor_data(z)[i] - ref[i]);
                if (e > worst) worst = e;
            }
            /* Separable passes round differently from a 2-D convolution:
             * about 3e-7 per blur and 1e-5 after 100 blurs
             * (docs/models.md, Degradations: Gaussian blur). */
            double tol = checkpoints[c] == 1 ? 1e-6 : 2e-5;
            ck_assert_msg(worst < tol, "%s padding, t=%lld: max error %g",
                          circular ? "circular" : "reflect", (long long)checkpoints[c], worst);
        }
        free(ref);
        cd_tensor_free(x);
        cd_tensor_free(z);
        cd_degradation_free(d);
        cd_schedule_free(s);
    }
}
END_TEST

START_TEST(circular_blur_preserves_mean)
{
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 50, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&d, s, 11, CD_PADDING_CIRCULAR));
    cd_tensor *x = cd_test_tensor4(3, 1, 28, 28), *z = cd_test_tensor4(3, 1, 28, 28);
    cd_test_fill_uniform(x, 13, -0.5f, 0.5f);
    const int64_t t[3] = {1, 20, 50};
    CD_ASSERT_OK(cd_degradation_apply(d, x, t, 3, NULL, z, NULL));
    for (int n = 0; n < 3; n++) {
        double mx = 0, mz = 0;
        for (int i = 0; i < 784; i++) {
            mx += cd_tensor_data(x)[n * 784 + i];
            mz += cd_tensor_data(z)[n * 784 + i];
        }
        ck_assert_msg(fabs(mx - mz) / 784 < 1e-6, "sample %d: mean %g -> %g", n, mx / 784,
                      mz / 784);
    }
    /* Reflect padding does not preserve it in general. */
    cd_degradation *r = NULL;
    CD_ASSERT_OK(cd_degradation_create_blur(&r, s, 11, CD_PADDING_REFLECT));
    CD_ASSERT_OK(cd_degradation_apply(r, x, t, 3, NULL, z, NULL));
    double mx = 0, mz = 0;
    for (int i = 0; i < 784; i++) {
        mx += cd_tensor_data(x)[2 * 784 + i];
        mz += cd_tensor_data(z)[2 * 784 + i];
    }
    ck_assert(fabs(mx - mz) / 784 > 1e-5);
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_degradation_free(d);
    cd_degradation_free(r);
    cd_schedule_free(s);
}
END_TEST

START_TEST(blur_kernel_matches_formula)
{
    /* A unit impulse blurred once shows the 2-D kernel: exp(-(d/sigma)^2/2)
     * at integer offsets, normalised, with sigma = beta_1 = 0.7. */
    const float beta[1] = {0.7f};
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_custom(&s, beta, 1));
    CD_ASSERT_OK(cd_degradation_create_blur(&d, s, 5, CD_PADDING_CIRCULAR));
    cd_tensor *x = cd_test_tensor4(1, 1, 9, 9), *z = cd_test_tensor4(1, 1, 9, 9);
    cd_tensor_data(x)[4 * 9 + 4] = 1.0f;
    const int64_t t = 1;
    CD_ASSERT_OK(cd_degradation_apply(d, x, &t, 1, NULL, z, NULL));
    double k[5], sum = 0;
    for (int i = 0; i < 5; i++) {
        k[i] = exp(-0.5 * pow((i - 2) / (double)0.7f, 2));
        sum += k[i];
    }
    for (int y = 0; y < 9; y++)
        for (int c = 0; c < 9; c++) {
            double want =
                (abs(y - 4) <= 2 && abs(c - 4) <= 2) ? k[y - 2] * k[c - 2] / (sum * sum) : 0;
            ck_assert_msg(fabs(cd_tensor_data(z)[y * 9 + c] - want) < 1e-7, "(%d,%d)", y, c);
        }
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_degradation_free(d);
    cd_schedule_free(s);
}
END_TEST

START_TEST(bad_input_is_an_error)
{
    cd_schedule *s = NULL;
    cd_degradation *noise = NULL, *blur = NULL, *bad = (cd_degradation *)0x1;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 10, 0.5));
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_degradation_create_noise(&noise, s));
    CD_ASSERT_OK(cd_degradation_create_blur(&blur, s, 5, CD_PADDING_REFLECT));
    CD_ASSERT_STATUS(cd_degradation_create_blur(&bad, s, 4, CD_PADDING_REFLECT), CD_ERR_RANGE);
    ck_assert_ptr_null(bad);
    CD_ASSERT_STATUS(cd_degradation_create_blur(&bad, s, 5, (cd_padding)9),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_create_noise(&bad, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *x = cd_test_tensor4(2, 1, 8, 8), *z = cd_test_tensor4(2, 1, 8, 8),
              *small = cd_test_tensor4(2, 1, 2, 2);
    cd_tensor *zs = cd_test_tensor4(2, 1, 2, 2), *wrong = cd_test_tensor4(3, 1, 8, 8);
    int64_t t[2] = {1, 11};
    CD_ASSERT_STATUS(cd_degradation_apply(noise, x, t, 2, rng, z, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("t[1] = 11");
    t[1] = 2;
    CD_ASSERT_STATUS(cd_degradation_apply(noise, x, t, 1, rng, z, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_degradation_apply(noise, x, t, 2, NULL, z, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_apply(noise, x, t, 2, rng, x, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_apply(noise, x, t, 2, rng, wrong, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_degradation_apply(blur, x, t, 2, NULL, z, z), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_apply(blur, small, t, 2, NULL, zs, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("reflect");
    cd_tensor_data(x)[5] = NAN;
    CD_ASSERT_STATUS(cd_degradation_apply(blur, x, t, 2, NULL, z, NULL), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_degradation_apply: x[5] is nan (image 0, channel 0, row 0, "
                             "column 5)");
    CD_ASSERT_STATUS(cd_degradation_apply(NULL, x, t, 2, NULL, z, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_degradation_get_target(NULL), CD_TARGET_INVALID);
    ck_assert_int_eq(CD_TARGET_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_degradation_get_kind(NULL), CD_DEGRADATION_INVALID);
    ck_assert_int_eq(CD_DEGRADATION_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_degradation_T(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_degradation_get_kind(blur), CD_DEGRADATION_BLUR);
    ck_assert_int_eq(cd_degradation_T(noise), 10);
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_tensor_free(small);
    cd_tensor_free(zs);
    cd_tensor_free(wrong);
    cd_rng_free(rng);
    cd_degradation_free(noise);
    cd_degradation_free(blur);
    cd_degradation_free(NULL);
    cd_schedule_free(s);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("degradation");
    TCase *tc = tcase_create("degradation");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, noise_forward_moments);
    tcase_add_test(tc, zero_steps_is_identity);
    tcase_add_test(tc, blur_composes);
    tcase_add_test(tc, blur_matches_2d_reference);
    tcase_add_test(tc, circular_blur_preserves_mean);
    tcase_add_test(tc, blur_kernel_matches_formula);
    tcase_add_test(tc, bad_input_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
