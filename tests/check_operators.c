/* check_operators.c - the pixelate, mask and fade operators against their
 * stated formulas (hand-computed cases, D(x, 0) = x, continuity in t, the
 * end state at T), the z_T priors (fit, draw order and moments), cold
 * algorithm 2 with the exact predictor on each operator, and checkpoints. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static cd_schedule *linear_schedule(int64_t T)
{
    cd_schedule *s = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, T, 1e-4, 0.02));
    return s;
}

/* Every sample of x at time t (all samples alike) into z. */
static void apply_at(const cd_degradation *d, const cd_tensor *x, int64_t t, cd_tensor *z)
{
    int64_t tv[64];
    const int64_t N = cd_tensor_dim(x, 0);
    ck_assert_int_le(N, 64);
    for (int64_t i = 0; i < N; i++) tv[i] = t;
    CD_ASSERT_OK(cd_degradation_apply(d, x, tv, N, NULL, z, NULL));
}

/* 4 x 4 plane, L = 2, T = 4: t = 2 is s = 1, the 2 x 2 block means; t = 1
 * is s = 1/2, halfway between x and those means; t = 3 halfway between the
 * 2 x 2 means and the image mean; t = 4 the image mean. */
START_TEST(pixelate_hand_computed)
{
    cd_schedule *s = linear_schedule(4);
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
    ck_assert_int_eq(cd_degradation_get_kind(d), CD_DEGRADATION_PIXELATE);
    ck_assert_int_eq(cd_degradation_get_target(d), CD_TARGET_IMAGE);
    cd_tensor *x = cd_test_tensor4(1, 1, 4, 4), *z = cd_test_tensor4(1, 1, 4, 4);
    float *xp = cd_tensor_data(x), *zp = cd_tensor_data(z);
    for (int i = 0; i < 16; i++) xp[i] = (float)i;
    /* 2 x 2 block means: 2.5 4.5 / 10.5 12.5; the image mean 7.5. */
    const double block[4] = {2.5, 4.5, 10.5, 12.5};
    for (int64_t t = 0; t <= 4; t++) {
        apply_at(d, x, t, z);
        for (int y = 0; y < 4; y++)
            for (int c = 0; c < 4; c++) {
                const double v = y * 4 + c, b = block[(y / 2) * 2 + c / 2];
                const double want = t == 0   ? v
                                    : t == 1 ? 0.5 * v + 0.5 * b
                                    : t == 2 ? b
                                    : t == 3 ? 0.5 * b + 0.5 * 7.5
                                             : 7.5;
                ck_assert_msg(fabs(zp[y * 4 + c] - want) < 1e-6, "t=%d (%d,%d): %g vs %g", (int)t,
                              y, c, (double)zp[y * 4 + c], want);
            }
    }
    cd_tensor_free(x), cd_tensor_free(z);
    cd_degradation_free(d), cd_schedule_free(s);
}
END_TEST

/* 28 x 28 has partial edge blocks: the 8 x 8 level's last block column is
 * 4 wide. Level 3 of L = 5 is t = 3T/5; D(x, T) is each image's mean. */
START_TEST(pixelate_partial_blocks_and_end)
{
    cd_schedule *s = linear_schedule(5);
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
    cd_tensor *x = cd_test_tensor4(2, 2, 28, 28), *z = cd_test_tensor4(2, 2, 28, 28);
    cd_test_fill_uniform(x, 3, -0.5f, 0.5f);
    const float *xp = cd_tensor_data(x), *zp = cd_tensor_data(z);
    apply_at(d, x, 3, z);
    for (int p = 0; p < 4; p++) {
        const float *xi = xp + p * 784, *zi = zp + p * 784;
        double sum = 0.0; /* rows 24..27, columns 24..27 */
        for (int y = 24; y < 28; y++)
            for (int c = 24; c < 28; c++) sum += xi[y * 28 + c];
        ck_assert_msg(fabs(zi[27 * 28 + 27] - sum / 16.0) < 1e-6, "corner block");
        sum = 0.0; /* rows 8..15, columns 16..23 */
        for (int y = 8; y < 16; y++)
            for (int c = 16; c < 24; c++) sum += xi[y * 28 + c];
        ck_assert(fabs(zi[9 * 28 + 17] - sum / 64.0) < 1e-6);
    }
    apply_at(d, x, 5, z);
    for (int p = 0; p < 4; p++) {
        double sum = 0.0;
        for (int i = 0; i < 784; i++) sum += xp[p * 784 + i];
        for (int i = 0; i < 784; i++) ck_assert(fabs(zp[p * 784 + i] - sum / 784.0) < 1e-6);
    }
    apply_at(d, x, 0, z);
    ck_assert(memcmp(xp, zp, 4 * 784 * sizeof(float)) == 0);
    cd_tensor_free(x), cd_tensor_free(z);
    cd_degradation_free(d), cd_schedule_free(s);
}
END_TEST

/* Mask on a 5 x 5 plane (centre 2, R = 2) with edge width 1 and T = 3:
 * r_t = -1 + t, so M_1 removes the centre pixel, M_2 the inner 3 x 3 and
 * fades the ring to 0... exactly: M = clamp(d - r_t, 0, 1). */
START_TEST(mask_hand_computed)
{
    cd_schedule *s = linear_schedule(3);
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_mask(&d, s, 1.0));
    cd_tensor *x = cd_test_tensor4(1, 1, 5, 5), *z = cd_test_tensor4(1, 1, 5, 5);
    cd_test_fill_uniform(x, 5, -0.5f, 0.5f);
    const float *xp = cd_tensor_data(x), *zp = cd_tensor_data(z);
    for (int64_t t = 0; t <= 3; t++) {
        apply_at(d, x, t, z);
        for (int y = 0; y < 5; y++)
            for (int c = 0; c < 5; c++) {
                const double dist = fmax(fabs(y - 2.0), fabs(c - 2.0));
                const double m = fmin(1.0, fmax(0.0, dist - (-1.0 + (double)t)));
                ck_assert_msg(fabs(zp[y * 5 + c] - m * xp[y * 5 + c]) < 1e-7, "t=%d", (int)t);
            }
    }
    apply_at(d, x, 3, z);
    for (int i = 0; i < 25; i++) ck_assert(zp[i] == 0.0f && !signbit(zp[i]));
    apply_at(d, x, 0, z);
    ck_assert(memcmp(xp, zp, 25 * sizeof(float)) == 0);
    cd_tensor_free(x), cd_tensor_free(z);
    cd_degradation_free(d), cd_schedule_free(s);
}
END_TEST

START_TEST(fade_formula)
{
    cd_schedule *s = linear_schedule(50);
    cd_degradation *d = NULL;
    cd_tensor *m = NULL, *x = cd_test_tensor4(3, 1, 6, 5), *z = cd_test_tensor4(3, 1, 6, 5);
    CD_ASSERT_OK(cd_tensor_create(&m, 3, (int64_t[]){1, 6, 5}));
    cd_test_fill_uniform(m, 8, -0.5f, 0.5f);
    cd_test_fill_uniform(x, 9, -0.5f, 0.5f);
    CD_ASSERT_OK(cd_degradation_create_fade(&d, s, m));
    float abar[51];
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, NULL, abar, 51));
    const float *xp = cd_tensor_data(x), *zp = cd_tensor_data(z), *mp = cd_tensor_data(m);
    const int64_t tv[3] = {0, 17, 50};
    CD_ASSERT_OK(cd_degradation_apply(d, x, tv, 3, NULL, z, NULL));
    for (int n = 0; n < 3; n++) {
        const double a = sqrt((double)abar[tv[n]]);
        for (int i = 0; i < 30; i++)
            ck_assert(fabs(zp[n * 30 + i] - (a * xp[n * 30 + i] + (1 - a) * mp[i])) < 1e-7);
    }
    ck_assert(memcmp(xp, zp, 30 * sizeof(float)) == 0); /* t = 0 */
    /* The mean image fixes the image shape. */
    cd_tensor *wrong = cd_test_tensor4(3, 1, 5, 6);
    CD_ASSERT_STATUS(cd_degradation_apply(d, wrong, tv, 3, NULL, wrong, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("mean image");
    cd_tensor_free(wrong);
    cd_degradation_free(d);
    /* A NaN in m is refused. */
    cd_tensor_data(m)[7] = NAN;
    CD_ASSERT_STATUS(cd_degradation_create_fade(&d, s, m), CD_ERR_NOT_FINITE);
    ck_assert_ptr_null(d);
    cd_tensor_free(m), cd_tensor_free(x), cd_tensor_free(z);
    cd_schedule_free(s);
}
END_TEST

/* Smooth in t: with T = 1000, one step changes no pixel by more than a
 * bound proportional to 1/T (the report's first condition), for each
 * deterministic operator. */
START_TEST(operators_are_continuous_in_t)
{
    enum { T = 1000 };
    cd_schedule *s = linear_schedule(T);
    cd_tensor *m = NULL, *x = cd_test_tensor4(2, 1, 28, 28), *a = cd_test_tensor4(2, 1, 28, 28),
              *b = cd_test_tensor4(2, 1, 28, 28);
    CD_ASSERT_OK(cd_tensor_create(&m, 3, (int64_t[]){1, 28, 28}));
    cd_test_fill_uniform(x, 1, -0.5f, 0.5f);
    cd_test_fill_uniform(m, 2, -0.5f, 0.5f);
    cd_degradation *ops[3] = {NULL, NULL, NULL};
    CD_ASSERT_OK(cd_degradation_create_pixelate(&ops[0], s));
    CD_ASSERT_OK(cd_degradation_create_mask(&ops[1], s, 2.0));
    CD_ASSERT_OK(cd_degradation_create_fade(&ops[2], s, m));
    /* Pixel values lie in [-0.5, 0.5]: pixelate moves at most 1 * L / T per
     * step, mask at most 0.5 * (R + w) / (w T), fade at most
     * |d sqrt(abar)| <= 0.02 (beta <= 0.02) per step. */
    const double bound[3] = {5.0 / T, 0.5 * 15.5 / (2.0 * T), 0.02};
    for (int k = 0; k < 3; k++) {
        double worst = 0.0;
        for (int64_t t = 0; t < T; t += 37) {
            apply_at(ops[k], x, t, a);
            apply_at(ops[k], x, t + 1, b);
            for (int i = 0; i < 2 * 784; i++)
                worst = fmax(worst, fabs(cd_tensor_data(a)[i] - cd_tensor_data(b)[i]));
        }
        ck_assert_msg(worst <= bound[k] * (1 + 1e-6), "operator %d: step %g > %g", k, worst,
                      bound[k]);
        ck_assert_msg(worst > 0.0, "operator %d does not change", k);
        cd_degradation_free(ops[k]);
    }
    cd_tensor_free(m), cd_tensor_free(x), cd_tensor_free(a), cd_tensor_free(b);
    cd_schedule_free(s);
}
END_TEST

/* A predictor that returns the clean images it was given. */
static cd_status exact_x(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out, void *user)
{
    (void)z, (void)tau;
    cd_tensor *x = user;
    memcpy(cd_tensor_data(out), cd_tensor_data(x), (size_t)cd_tensor_numel(x) * sizeof(float));
    return CD_OK;
}

/* Cold algorithm 2 telescopes to z_0 = x with the exact predictor. */
START_TEST(cold2_recovers_x_on_every_operator)
{
    cd_schedule *s = linear_schedule(40);
    cd_tensor *m = NULL, *x = cd_test_tensor4(3, 1, 12, 12), *out = cd_test_tensor4(3, 1, 12, 12);
    CD_ASSERT_OK(cd_tensor_create(&m, 3, (int64_t[]){1, 12, 12}));
    cd_test_fill_uniform(x, 11, -0.5f, 0.5f);
    cd_test_fill_uniform(m, 12, -0.5f, 0.5f);
    cd_degradation *ops[3] = {NULL, NULL, NULL};
    CD_ASSERT_OK(cd_degradation_create_pixelate(&ops[0], s));
    CD_ASSERT_OK(cd_degradation_create_mask(&ops[1], s, 1.5));
    CD_ASSERT_OK(cd_degradation_create_fade(&ops[2], s, m));
    for (int k = 0; k < 3; k++) {
        cd_sampler *smp = NULL;
        CD_ASSERT_OK(cd_sampler_create(&smp, CD_SAMPLER_COLD2, ops[k]));
        CD_ASSERT_OK(cd_sampler_set_predictor(smp, exact_x, x));
        CD_ASSERT_OK(cd_sampler_restore(smp, x, 40, NULL, out, NULL, 0, NULL, NULL, NULL));
        for (int i = 0; i < 3 * 144; i++)
            ck_assert_msg(fabs(cd_tensor_data(out)[i] - cd_tensor_data(x)[i]) < 1e-5,
                          "operator %d pixel %d", k, i);
        cd_sampler_free(smp);
        cd_degradation_free(ops[k]);
    }
    cd_tensor_free(m), cd_tensor_free(x), cd_tensor_free(out);
    cd_schedule_free(s);
}
END_TEST

/* The pixelate prior fit is exact to recompute: D(x, T) is the image mean,
 * so (mean, std) are the mean and population std of the image means. */
START_TEST(prior_fit_pixelate_exact)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_schedule *s = linear_schedule(10);
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
    double mean = 1, sd = 1, jit = 1;
    int32_t fitted = 1;
    CD_ASSERT_OK(cd_degradation_get_prior(d, &mean, &sd, &jit, &fitted));
    ck_assert(mean == 0.0 && sd == 0.0 && jit == 0.002 && fitted == 0);
    CD_ASSERT_OK(cd_degradation_fit_prior(d, ds, CD_SPLIT_TRAIN, 300));
    CD_ASSERT_OK(cd_degradation_get_prior(d, &mean, &sd, &jit, &fitted));
    ck_assert_int_eq(fitted, 1);
    ck_assert(jit == 0.002);
    cd_tensor *img = cd_test_tensor4(300, 1, 28, 28);
    int64_t idx[300];
    for (int i = 0; i < 300; i++) idx[i] = i;
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TRAIN, idx, 300, img, NULL));
    double mu = 0.0, ss = 0.0, im[300];
    for (int i = 0; i < 300; i++) {
        double acc = 0.0;
        for (int p = 0; p < 784; p++) acc += cd_tensor_data(img)[i * 784 + p];
        im[i] = acc / 784.0;
        mu += im[i] / 300.0;
    }
    for (int i = 0; i < 300; i++) ss += (im[i] - mu) * (im[i] - mu);
    ck_assert_msg(fabs(mean - mu) < 1e-6, "%g vs %g", mean, mu);
    ck_assert_msg(fabs(sd - sqrt(ss / 300.0)) < 1e-6, "%g", sd);
    cd_tensor_free(img);
    cd_degradation_free(d), cd_schedule_free(s), cd_dataset_free(ds);
}
END_TEST

/* The report's blur (constant beta 1, T = 100, k = 11, reflect): a fit on
 * the full training set gives about N(-0.359, 0.047^2) (docs/models.md,
 * Degradations: The z_T prior); the slice's 800 images are a sample of the
 * same distribution. */
START_TEST(prior_fit_blur_near_full_fit)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_schedule *s = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 100, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&d, s, 11, CD_PADDING_REFLECT));
    double mean = 0, sd = 0, jit = 0;
    int32_t fitted = 1;
    CD_ASSERT_OK(cd_degradation_get_prior(d, &mean, &sd, &jit, &fitted));
    ck_assert(mean == -0.36 && sd == 0.05 && jit == 0.002 && fitted == 0);
    CD_ASSERT_OK(cd_degradation_fit_prior(d, ds, CD_SPLIT_TRAIN, CD_TEST_SANITIZED ? 64 : 0));
    CD_ASSERT_OK(cd_degradation_get_prior(d, &mean, &sd, &jit, &fitted));
    ck_assert_msg(fabs(mean + 0.359) < 0.02, "mean %g", mean);
    ck_assert_msg(sd > 0.03 && sd < 0.065, "std %g", sd);
    cd_degradation_free(d), cd_schedule_free(s), cd_dataset_free(ds);
}
END_TEST

/* Draw order and formula: N constants, then the jitter, as documented;
 * fade adds B = (1 - sqrt(abar_T)) m. */
START_TEST(prior_draws_as_documented)
{
    enum { N = 3, ND = 20 };
    cd_schedule *s = linear_schedule(30);
    cd_tensor *m = NULL, *z = cd_test_tensor4(N, 1, 4, 5);
    CD_ASSERT_OK(cd_tensor_create(&m, 3, (int64_t[]){1, 4, 5}));
    cd_test_fill_uniform(m, 4, -0.5f, 0.5f);
    float abar[31];
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, NULL, abar, 31));
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_fade(&d, s, m));
    CD_ASSERT_OK(cd_degradation_set_prior(d, 0.25, 0.5, 0.1));
    cd_rng *r1 = NULL, *r2 = NULL;
    CD_ASSERT_OK(cd_rng_create(&r1, 77));
    CD_ASSERT_OK(cd_rng_create(&r2, 77));
    CD_ASSERT_OK(cd_degradation_sample_prior(d, r1, z));
    float lv[N], xi[N * ND];
    CD_ASSERT_OK(cd_rng_normal(r2, lv, N));
    CD_ASSERT_OK(cd_rng_normal(r2, xi, N * ND));
    const double a = sqrt((double)abar[30]);
    for (int n = 0; n < N; n++)
        for (int p = 0; p < ND; p++) {
            const double want =
                (1 - a) * cd_tensor_data(m)[p] + 0.25 + 0.5 * lv[n] + 0.1 * xi[n * ND + p];
            ck_assert(fabs(cd_tensor_data(z)[n * ND + p] - want) < 1e-6);
        }
    cd_degradation_free(d);
    /* The noise operator: N(0, I), the same draws as cd_rng_normal. */
    CD_ASSERT_OK(cd_degradation_create_noise(&d, s));
    CD_ASSERT_OK(cd_degradation_sample_prior(d, r1, z));
    CD_ASSERT_OK(cd_rng_normal(r2, xi, N * ND));
    ck_assert(memcmp(xi, cd_tensor_data(z), sizeof xi) == 0);
    double mean = 9, sd = 9, jit = 9;
    CD_ASSERT_OK(cd_degradation_get_prior(d, &mean, &sd, &jit, NULL));
    ck_assert(mean == 0.0 && sd == 1.0 && jit == 0.0);
    CD_ASSERT_STATUS(cd_degradation_set_prior(d, 0, 1, 0), CD_ERR_UNSUPPORTED);
    cd_degradation_free(d);
    cd_rng_free(r1), cd_rng_free(r2);
    cd_tensor_free(m), cd_tensor_free(z), cd_schedule_free(s);
}
END_TEST

/* Over many samples the per-sample constants have the prior's std and the
 * pixels around them the jitter's (5 standard errors). */
START_TEST(prior_moments)
{
    enum { N = 4000 };
    cd_schedule *s = linear_schedule(10);
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
    CD_ASSERT_OK(cd_degradation_set_prior(d, -0.3, 0.05, 0.01));
    cd_tensor *z = cd_test_tensor4(N, 1, 2, 2);
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, 5));
    CD_ASSERT_OK(cd_degradation_sample_prior(d, r, z));
    double sum = 0, ss = 0, dev = 0;
    for (int n = 0; n < N; n++) {
        const float *p = cd_tensor_data(z) + n * 4;
        const double c = (p[0] + p[1] + p[2] + p[3]) / 4.0;
        sum += c, ss += c * c;
        for (int i = 0; i < 4; i++) dev += (p[i] - c) * (p[i] - c);
    }
    const double mu = sum / N, var = ss / N - mu * mu;
    /* c's variance: 0.05^2 + 0.01^2 / 4; within-sample variance 3/4 0.01^2. */
    const double want_var = 0.0025 + 0.0001 / 4;
    ck_assert_msg(fabs(mu + 0.3) < 5 * sqrt(want_var / N), "mean %g", mu);
    ck_assert_msg(fabs(var / want_var - 1) < 5 * sqrt(2.0 / N), "var %g", var);
    ck_assert_msg(fabs(dev / (3.0 * N) / 1e-4 - 1) < 5 * sqrt(2.0 / (3 * N)), "jitter %g",
                  dev / (3.0 * N));
    cd_rng_free(r), cd_tensor_free(z);
    cd_degradation_free(d), cd_schedule_free(s);
}
END_TEST

/* Each operator and its prior survive a trainer checkpoint. */
START_TEST(checkpoint_round_trip)
{
    char dir[512], path[600];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "op.cdm");
    cd_schedule *s = linear_schedule(12);
    cd_tensor *m = NULL, *x = cd_test_tensor4(2, 1, 28, 28), *a = cd_test_tensor4(2, 1, 28, 28),
              *b = cd_test_tensor4(2, 1, 28, 28);
    CD_ASSERT_OK(cd_tensor_create(&m, 3, (int64_t[]){1, 28, 28}));
    cd_test_fill_uniform(m, 6, -0.5f, 0.5f);
    cd_test_fill_uniform(x, 7, -0.5f, 0.5f);
    for (int k = 0; k < 3; k++) {
        cd_degradation *d = NULL;
        cd_decoder_config *cfg = NULL;
        cd_decoder *dec = NULL;
        cd_trainer *tr = NULL, *back = NULL;
        if (k == 0) CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
        if (k == 1) CD_ASSERT_OK(cd_degradation_create_mask(&d, s, 2.5));
        if (k == 2) CD_ASSERT_OK(cd_degradation_create_fade(&d, s, m));
        CD_ASSERT_OK(cd_degradation_set_prior(d, -0.125 * k, 0.03, 0.004));
        CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
        cd_rng *r = NULL;
        CD_ASSERT_OK(cd_rng_create(&r, 1));
        CD_ASSERT_OK(cd_decoder_create(&dec, cfg, r));
        cd_rng_free(r);
        cd_decoder_config_free(cfg);
        CD_ASSERT_OK(cd_trainer_create(&tr, dec, d));
        CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
        CD_ASSERT_OK(cd_trainer_load(&back, path, NULL));
        const cd_degradation *d2 = cd_trainer_degradation(back);
        ck_assert_int_eq(cd_degradation_get_kind(d2), cd_degradation_get_kind(d));
        double p1[3], p2[3];
        int32_t f1 = 0, f2 = 0;
        CD_ASSERT_OK(cd_degradation_get_prior(d, &p1[0], &p1[1], &p1[2], &f1));
        CD_ASSERT_OK(cd_degradation_get_prior(d2, &p2[0], &p2[1], &p2[2], &f2));
        ck_assert(memcmp(p1, p2, sizeof p1) == 0 && f1 == 1 && f2 == 1);
        for (int64_t t = 0; t <= 12; t += 5) {
            apply_at(d, x, t, a);
            apply_at(d2, x, t, b);
            ck_assert(memcmp(cd_tensor_data(a), cd_tensor_data(b), 2 * 784 * sizeof(float)) == 0);
        }
        cd_trainer_free(tr), cd_trainer_free(back);
        cd_decoder_free(dec), cd_degradation_free(d); /* borrowed by tr */
    }
    cd_tensor_free(m), cd_tensor_free(x), cd_tensor_free(a), cd_tensor_free(b);
    cd_schedule_free(s);
    remove(path);
    rmdir(dir);
}
END_TEST

START_TEST(bad_input_is_an_error)
{
    cd_schedule *s = linear_schedule(10);
    cd_degradation *d = NULL;
    CD_ASSERT_STATUS(cd_degradation_create_pixelate(NULL, s), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_create_pixelate(&d, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_create_mask(&d, s, 0.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_degradation_create_mask(&d, s, -1.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_degradation_create_mask(&d, s, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_degradation_create_fade(&d, s, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *m2 = NULL;
    CD_ASSERT_OK(cd_tensor_create(&m2, 2, (int64_t[]){4, 4}));
    CD_ASSERT_STATUS(cd_degradation_create_fade(&d, s, m2), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("C x H x W");
    cd_tensor_free(m2);
    ck_assert_ptr_null(d);
    /* Pixelate planes are limited like the blur's. */
    CD_ASSERT_OK(cd_degradation_create_pixelate(&d, s));
    cd_tensor *big = cd_test_tensor4(1, 1, 129, 129);
    int64_t t = 3;
    CD_ASSERT_STATUS(cd_degradation_apply(d, big, &t, 1, NULL, big, NULL), CD_ERR_UNSUPPORTED);
    CD_ASSERT_STATUS(cd_degradation_sample_prior(d, NULL, big), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(big);
    /* Prior arguments. */
    CD_ASSERT_STATUS(cd_degradation_set_prior(d, NAN, 0.1, 0.0), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_degradation_set_prior(d, 0.0, -0.1, 0.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_degradation_set_prior(d, 0.0, 0.1, -1.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_degradation_set_prior(NULL, 0.0, 0.1, 0.0), CD_ERR_INVALID_ARGUMENT);
    double v = 0;
    CD_ASSERT_STATUS(cd_degradation_get_prior(d, NULL, &v, &v, NULL), CD_ERR_INVALID_ARGUMENT);
    int32_t fitted = 1;
    CD_ASSERT_OK(cd_degradation_get_prior(d, &v, &v, &v, &fitted));
    ck_assert_int_eq(fitted, 0); /* failed sets changed nothing */
    cd_dataset *ds = cd_test_load_slice(0.2);
    CD_ASSERT_STATUS(cd_degradation_fit_prior(d, ds, CD_SPLIT_TRAIN, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_degradation_fit_prior(d, NULL, CD_SPLIT_TRAIN, 0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_fit_prior(d, ds, (cd_split)7, 0), CD_ERR_INVALID_ARGUMENT);
    /* The mean image: shape and empty splits. */
    cd_tensor *mi = NULL;
    CD_ASSERT_OK(cd_tensor_create(&mi, 3, (int64_t[]){1, 28, 27}));
    CD_ASSERT_STATUS(cd_dataset_mean_image(ds, CD_SPLIT_TRAIN, mi), CD_ERR_SHAPE);
    cd_tensor_free(mi);
    CD_ASSERT_OK(cd_tensor_create(&mi, 4, (int64_t[]){1, 1, 28, 28}));
    CD_ASSERT_STATUS(cd_dataset_mean_image(ds, CD_SPLIT_TEST, mi), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_dataset_mean_image(ds, CD_SPLIT_VAL, mi));
    cd_tensor_free(mi);
    cd_dataset_free(ds);
    cd_degradation_free(d), cd_schedule_free(s);
}
END_TEST

/* The mean image against a direct sum over the gathered split. */
START_TEST(dataset_mean_image)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    const int64_t n = cd_dataset_count(ds, CD_SPLIT_VAL);
    cd_tensor *all = cd_test_tensor4(n, 1, 28, 28), *mi = NULL;
    CD_ASSERT_OK(cd_tensor_create(&mi, 3, (int64_t[]){1, 28, 28}));
    int64_t idx[1000];
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_VAL, idx, n, all, NULL));
    CD_ASSERT_OK(cd_dataset_mean_image(ds, CD_SPLIT_VAL, mi));
    for (int p = 0; p < 784; p++) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += cd_tensor_data(all)[i * 784 + p];
        ck_assert(cd_tensor_data(mi)[p] == (float)(sum / (double)n));
    }
    cd_tensor_free(all), cd_tensor_free(mi), cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("operators");
    TCase *tc = tcase_create("operators");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pixelate_hand_computed);
    tcase_add_test(tc, pixelate_partial_blocks_and_end);
    tcase_add_test(tc, mask_hand_computed);
    tcase_add_test(tc, fade_formula);
    tcase_add_test(tc, operators_are_continuous_in_t);
    tcase_add_test(tc, cold2_recovers_x_on_every_operator);
    tcase_add_test(tc, prior_fit_pixelate_exact);
    tcase_add_test(tc, prior_fit_blur_near_full_fit);
    tcase_add_test(tc, prior_draws_as_documented);
    tcase_add_test(tc, prior_moments);
    tcase_add_test(tc, checkpoint_round_trip);
    tcase_add_test(tc, bad_input_is_an_error);
    tcase_add_test(tc, dataset_mean_image);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
