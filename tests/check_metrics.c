/* check_metrics.c - the metrics layer (docs/models.md, Metrics): RMSE,
 * SSIM and PSNR with both reductions, the Frechet distance, and the class
 * summaries. Hand-derived cases are worked out in the comments; the rest
 * compare with tests/reference/metrics.bin, written by an independent
 * PyTorch float64 implementation (tests/reference/make_metric_fixtures.py). */
#include "test_util.h"
#include "fixture.h"

#include <math.h>

#include "metrics/metrics.h"

#define C1 (0.01 * 0.01)
#define C2 (0.03 * 0.03)

static void assert_close(double got, double want, double atol, double rtol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= atol + rtol * fabs(want),
                  "%s: %.12g, expected %.12g (diff %.3g)", what, got, want, got - want);
}

static cd_tensor *tensor2(int64_t N, int64_t D, const float *data)
{
    cd_tensor *t = NULL;
    int64_t shape[2] = {N, D};
    CD_ASSERT_OK(cd_tensor_create(&t, 2, shape));
    if (data) CD_ASSERT_OK(cd_tensor_copy_from(t, data, N * D));
    return t;
}

static cd_tensor *from_fixture(const cd_fixture *fx, const char *name)
{
    int64_t dims[8];
    int64_t rank = cd_fixture_shape(fx, name, dims);
    int64_t n;
    const float *v = cd_fixture_get(fx, name, &n);
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, rank, dims));
    CD_ASSERT_OK(cd_tensor_copy_from(t, v, n));
    return t;
}

/* Random values in [lo, hi) from a fixed seed. */
/* A 0/1 checkerboard: x(i, j) = 1 where i + j is even. */
static void checkerboard(float *p, int64_t H, int64_t W)
{
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) p[i * W + j] = (i + j) % 2 == 0 ? 1.0f : 0.0f;
}

/* s = sum_k g(k) (-1)^k over the 11 taps of the SSIM window, from its
 * definition (exp(-k^2 / 4.5), normalised). */
static double alternating_tap_sum(void)
{
    double num = 0.0, den = 0.0;
    for (int k = -5; k <= 5; k++) {
        double w = exp(-(double)(k * k) / 4.5);
        num += (k % 2 == 0 ? 1.0 : -1.0) * w;
        den += w;
    }
    return num / den;
}

/* ---- image metrics: hand-derived cases --------------------------------- */

START_TEST(window_is_piqs)
{
    double g[CD__SSIM_TAPS], sum = 0.0;
    cd__ssim_window(g);
    for (int k = 0; k < CD__SSIM_TAPS; k++) {
        sum += g[k];
        ck_assert(g[k] == g[CD__SSIM_TAPS - 1 - k]);
    }
    assert_close(sum, 1.0, 1e-15, 0, "sum of taps");
    /* exp(-25/4.5) / sum_k exp(-k^2/4.5): the ratio of edge to centre. */
    assert_close(g[0] / g[5], exp(-25.0 / 4.5), 0, 1e-14, "edge / centre");
}
END_TEST

START_TEST(identical_images)
{
    /* Identical images: MSE 0, so RMSE 0 and PSNR = -10 log10(1e-8) = 80;
     * sigma_x^2 = sigma_y^2 = sigma_xy and mu_x = mu_y, so each SSIM map
     * entry is (2 mu^2 + C1)/(2 mu^2 + C1) (2 s + C2)/(2 s + C2) = 1. */
    cd_tensor *x = cd_test_tensor4(3, 2, 28, 28), *y = NULL;
    cd_test_fill_uniform(x, 1, -0.5f, 0.5f);
    CD_ASSERT_OK(cd_tensor_clone(&y, x));
    double rmse = -1, ssim = -1, psnr = -1;
    cd_metric_reduction used = (cd_metric_reduction)-1;
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &rmse, &ssim, &psnr, &used));
    ck_assert(rmse == 0.0);
    assert_close(ssim, 1.0, 1e-13, 0, "SSIM");
    assert_close(psnr, 80.0, 1e-12, 0, "PSNR");
    ck_assert_int_eq(used, CD_REDUCTION_PER_IMAGE);
    ck_assert_str_eq(cd_enum_name(CD_ENUM_METRIC_REDUCTION, used), "per_image");
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_REPORT, &rmse, &ssim, &psnr, &used));
    ck_assert_str_eq(cd_enum_name(CD_ENUM_METRIC_REDUCTION, used), "report");
    ck_assert_int_eq(used, CD_REDUCTION_REPORT);
    ck_assert(rmse == 0.0);
    assert_close(psnr, 80.0, 1e-12, 0, "PSNR (report)");

    /* y = 3 x + 5 and y = 0.01 x + 0.002: a shift and a contrast change leave
     * the normalised image the same (up to float rounding of y). */
    const float scale[2] = {3.0f, 0.01f}, shift[2] = {5.0f, 0.002f};
    for (int c = 0; c < 2; c++) {
        const float *xd = cd_tensor_data(x);
        float *yd = cd_tensor_data(y);
        for (int64_t i = 0; i < cd_tensor_numel(x); i++) yd[i] = scale[c] * xd[i] + shift[c];
        CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &rmse, &ssim, &psnr, NULL));
        ck_assert_msg(rmse < 2e-6, "RMSE %g", rmse);
        assert_close(ssim, 1.0, 1e-9, 0, "SSIM after an affine change");
        ck_assert_msg(psnr > 75.0, "PSNR %g", psnr);
    }
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

START_TEST(inverted_checkerboard)
{
    /* x: a 0/1 checkerboard; y = -x, which normalises to 1 - x.
     *   |x - y| = 1 everywhere: RMSE = 1, PSNR = -10 log10(1 + 1e-8).
     * SSIM: the window at (p, q) sees the mean
     *   mu = 0.5 + 0.5 (-1)^(p+q) s^2,  s = sum_k g(k) (-1)^k,
     * because the window is g(a) g(b) and x = 0.5 + 0.5 (-1)^(i+j). As
     * x^2 = x, sigma_x^2 = mu - mu^2 = v, the same for both signs:
     *   v = (1 - s^4) / 4.
     * For y = 1 - x: mu_y = 1 - mu, sigma_y^2 = v, sigma_xy = -v, so every
     * map entry is
     *   (2 mu (1 - mu) + C1)(-2 v + C2) / ((mu^2 + (1 - mu)^2 + C1)(2 v + C2))
     *   = (2 v + C1)(C2 - 2 v) / ((1 - 2 v + C1)(2 v + C2)). */
    cd_tensor *x = cd_test_tensor4(2, 1, 28, 28), *y = cd_test_tensor4(2, 1, 28, 28);
    float *xd = cd_tensor_data(x), *yd = cd_tensor_data(y);
    for (int n = 0; n < 2; n++) checkerboard(xd + n * 784, 28, 28);
    for (int64_t i = 0; i < 2 * 784; i++) yd[i] = -xd[i];
    const double s = alternating_tap_sum(), v = (1.0 - s * s * s * s) / 4.0;
    const double want = (2 * v + C1) * (C2 - 2 * v) / ((1 - 2 * v + C1) * (2 * v + C2));
    double rmse, ssim, psnr, per[2];
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &rmse, &ssim, &psnr, NULL));
    assert_close(rmse, 1.0, 1e-15, 0, "RMSE");
    assert_close(psnr, -10.0 * log10(1.0 + 1e-8), 1e-15, 0, "PSNR");
    assert_close(ssim, want, 1e-13, 0, "SSIM");
    ck_assert(want < -0.9); /* a strongly anti-correlated pair */
    CD_ASSERT_OK(cd_metrics_per_image(x, y, NULL, per, NULL, 2));
    assert_close(per[1], want, 1e-13, 0, "SSIM of image 1");
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

START_TEST(ssim_kernel_closed_forms)
{
    /* cd__ssim_image takes its inputs as they are (no normalisation), so
     * constant shifts and contrast changes give closed forms. */
    const int64_t H = 28, W = 28, n = H * W;
    double *x = calloc((size_t)n, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    double *scratch = calloc((size_t)cd__ssim_scratch_len(1, H, W), sizeof *scratch);
    ck_assert(x && y && scratch);

    /* Constant images c and c + b: all variances are 0, so
     * SSIM = (2 c (c + b) + C1) / (c^2 + (c + b)^2 + C1) exactly. (In
     * double, G*x^2 - (G*x)^2 leaves ~1e-17, which C2 = 9e-4 turns into a
     * relative 1e-14 per map entry.) */
    const double c = 0.3, b = 0.25;
    for (int64_t i = 0; i < n; i++) {
        x[i] = c;
        y[i] = c + b;
    }
    assert_close(cd__ssim_image(x, y, 1, H, W, scratch),
                 (2 * c * (c + b) + C1) / (c * c + (c + b) * (c + b) + C1), 1e-12, 0,
                 "constant shift");

    /* Checkerboard x (0/1) and y = a x + d (contrast a, shift d). With mu
     * and v as in inverted_checkerboard: mu_y = a mu + d, sigma_y^2 = a^2 v,
     * sigma_xy = a v, so an entry is
     *   (2 mu (a mu + d) + C1)(2 a v + C2) / ((mu^2 + (a mu + d)^2 + C1)
     *                                       ((1 + a^2) v + C2)).
     * mu takes two values, 0.5 +- 0.5 s^2, on the 18 x 18 map's two
     * parities, 162 entries each: the SSIM is the average of the two. */
    const double s = alternating_tap_sum(), s2 = s * s;
    const double v = (1.0 - s2 * s2) / 4.0;
    const double cases[3][2] = {{0.5, 0.25}, {0.5, 0.0}, {1.0, 0.1}};
    for (int k = 0; k < 3; k++) {
        const double a = cases[k][0], d = cases[k][1];
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                x[i * W + j] = (i + j) % 2 == 0 ? 1.0 : 0.0;
                y[i * W + j] = a * x[i * W + j] + d;
            }
        double want = 0.0;
        for (int sign = -1; sign <= 1; sign += 2) {
            const double mu = 0.5 + 0.5 * sign * s2, my = a * mu + d;
            want += 0.5 * (2 * mu * my + C1) * (2 * a * v + C2) /
                    ((mu * mu + my * my + C1) * ((1 + a * a) * v + C2));
        }
        char what[64];
        snprintf(what, sizeof what, "contrast %g, shift %g", a, d);
        assert_close(cd__ssim_image(x, y, 1, H, W, scratch), want, 1e-13, 0, what);
    }
    free(x);
    free(y);
    free(scratch);
}
END_TEST

START_TEST(known_mse)
{
    /* x: checkerboard; y: the same with k pixels flipped (never all of one
     * value, so both still normalise to themselves): MSE = k / 784 exactly,
     * PSNR = -10 log10(k / 784 + 1e-8). Image n flips k = 4 n + 1 pixels. */
    const int64_t N = 4;
    cd_tensor *x = cd_test_tensor4(N, 1, 28, 28), *y = cd_test_tensor4(N, 1, 28, 28);
    float *xd = cd_tensor_data(x), *yd = cd_tensor_data(y);
    double want_psnr = 0.0, sum_mse = 0.0;
    for (int64_t n = 0; n < N; n++) {
        checkerboard(xd + n * 784, 28, 28);
        checkerboard(yd + n * 784, 28, 28);
        const int64_t k = 4 * n + 1;
        for (int64_t i = 0; i < k; i++) {
            float *p = yd + n * 784 + i * 37; /* spread over the image */
            *p = 1.0f - *p;
        }
        sum_mse += (double)k / 784.0;
        want_psnr += -10.0 * log10((double)k / 784.0 + 1e-8) / (double)N;
    }
    double mse[4], psnr[4], rmse, mean_psnr;
    CD_ASSERT_OK(cd_metrics_per_image(x, y, mse, NULL, psnr, N));
    for (int64_t n = 0; n < N; n++) assert_close(mse[n], (4.0 * n + 1) / 784.0, 1e-16, 0, "MSE");
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &rmse, NULL, &mean_psnr, NULL));
    assert_close(rmse, sqrt(sum_mse / (double)N), 1e-15, 0, "RMSE over all pixels");
    assert_close(mean_psnr, want_psnr, 1e-12, 0, "mean PSNR");
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

/* ---- image metrics against the PyTorch reference ------------------------ */

/* The per-image values and both reductions of x against y, compared with
 * the fixture's <name>.mse, .ssim, .psnr and .summary. */
static void compare_values(const cd_fixture *fx, const char *name, const cd_tensor *x,
                           const cd_tensor *y)
{
    char key[64];
    const int64_t N = cd_tensor_dim(x, 0);
    double mse[8], ssim[8], psnr[8];
    ck_assert_int_le(N, 8);
    CD_ASSERT_OK(cd_metrics_per_image(x, y, mse, ssim, psnr, N));
    const char *what[3] = {"mse", "ssim", "psnr"};
    const double *got[3] = {mse, ssim, psnr};
    for (int m = 0; m < 3; m++) {
        int64_t n;
        snprintf(key, sizeof key, "%s.%s", name, what[m]);
        const float *want = cd_fixture_get(fx, key, &n);
        ck_assert_int_eq(n, N);
        for (int64_t i = 0; i < N; i++) {
            char label[96];
            snprintf(label, sizeof label, "%s image %d", key, (int)i);
            /* The reference is float64 rounded to float32 (2^-24 relative);
             * the C code agrees to that rounding. */
            assert_close(got[m][i], want[i], 1e-8, 2e-7, label);
        }
    }
    int64_t n;
    snprintf(key, sizeof key, "%s.summary", name);
    const float *want = cd_fixture_get(fx, key, &n);
    ck_assert_int_eq(n, 3);
    for (int r = 0; r < 2; r++) {
        double v[3];
        cd_metric_reduction used;
        CD_ASSERT_OK(cd_metrics_images(x, y, (cd_metric_reduction)r, &v[0], &v[1], &v[2], &used));
        ck_assert_int_eq(used, r);
        /* N <= 512: both reductions are one batch. */
        for (int m = 0; m < 3; m++) assert_close(v[m], want[m], 1e-8, 2e-7, key);
    }
}

static void compare_image_case(const cd_fixture *fx, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "%s.x", name);
    cd_tensor *x = from_fixture(fx, key);
    snprintf(key, sizeof key, "%s.y", name);
    cd_tensor *y = from_fixture(fx, key);
    compare_values(fx, name, x, y);
    cd_tensor_free(x);
    cd_tensor_free(y);
}

/* make_metric_fixtures.py's pooled_inputs, bit for bit: the lowbias32
 * hash of make_fixtures.py, and integer pixels over 256, which float32
 * holds exactly. The script's docstring gives the formulas. */
static uint32_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static int64_t blocks(int64_t c, int64_t i, int64_t j)
{
    return (3 * (i / 16) + 5 * (j / 16) + 2 * c) % 8;
}

static void pooled_inputs(cd_tensor *x, cd_tensor *y)
{
    const int64_t C = cd_tensor_dim(x, 1), H = cd_tensor_dim(x, 2), W = cd_tensor_dim(x, 3);
    float *xd = cd_tensor_data(x), *yd = cd_tensor_data(y);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                const int64_t k = (c * H + i) * W + j;
                const uint32_t n1 = hash32((uint32_t)k + 1U * 0x9E3779B9U) >> 27;
                const uint32_t n2 = hash32((uint32_t)k + 2U * 0x9E3779B9U) >> (c == 0 ? 26 : 27);
                const int64_t b = blocks(c, i, j);
                const int64_t by = c == 0 ? b : c == 1 ? 7 - b : blocks(c, i + 8, j + 8);
                xd[k] = (float)((double)(24 * b + n1) / 256.0);
                yd[k] = (float)((double)(24 * by + n2) / 256.0);
            }
}

static double sum_of(cd_tensor *t)
{
    double s = 0.0;
    for (int64_t i = 0; i < cd_tensor_numel(t); i++) s += cd_tensor_data(t)[i];
    return s;
}

START_TEST(images_match_reference)
{
    cd_fixture *fx = cd_fixture_load("metrics.bin");
    compare_image_case(fx, "mnist");
    compare_image_case(fx, "rgb");
    compare_image_case(fx, "range");
    cd_fixture_free(fx);
}
END_TEST

START_TEST(colour_images_match_reference)
{
    cd_fixture *fx = cd_fixture_load("metrics.bin");
    /* 3 x 20 x 36 and 3 x 36 x 20, each channel degraded its own way. */
    compare_image_case(fx, "wide");
    compare_image_case(fx, "tall");

    /* 3 x 385 x 517: pooled by 2 to 3 x 192 x 258 before the window. */
    int64_t n;
    const float *shape = cd_fixture_get(fx, "pooled.shape", &n);
    ck_assert_int_eq(n, 4);
    cd_tensor *x =
        cd_test_tensor4((int64_t)shape[0], (int64_t)shape[1], (int64_t)shape[2], (int64_t)shape[3]);
    cd_tensor *y =
        cd_test_tensor4((int64_t)shape[0], (int64_t)shape[1], (int64_t)shape[2], (int64_t)shape[3]);
    ck_assert_int_eq(cd__ssim_pool_factor(cd_tensor_dim(x, 2), cd_tensor_dim(x, 3)), 2);
    pooled_inputs(x, y);
    /* Sums of multiples of 1/256 below 2^19 are exact in double, so both
     * sides round the same number to float: a mismatch is the generator's. */
    ck_assert_msg((float)sum_of(x) == cd_fixture_get(fx, "pooled.x_sum", NULL)[0],
                  "pooled x differs from the script's");
    ck_assert_msg((float)sum_of(y) == cd_fixture_get(fx, "pooled.y_sum", NULL)[0],
                  "pooled y differs from the script's");
    compare_values(fx, "pooled", x, y);
    cd_tensor_free(x);
    cd_tensor_free(y);
    cd_fixture_free(fx);
}
END_TEST

/* ---- colour images: the definitions over all C x H x W values ----------- */

/* Plane c of every image of t, as an N x 1 x H x W tensor. */
static cd_tensor *plane_of(cd_tensor *t, int64_t c)
{
    const int64_t N = cd_tensor_dim(t, 0), C = cd_tensor_dim(t, 1), H = cd_tensor_dim(t, 2),
                  W = cd_tensor_dim(t, 3);
    cd_tensor *p = cd_test_tensor4(N, 1, H, W);
    for (int64_t n = 0; n < N; n++)
        memcpy(cd_tensor_data(p) + n * H * W, cd_tensor_data(t) + (n * C + c) * H * W,
               (size_t)(H * W) * sizeof(float));
    return p;
}

/* y from x (values in [0, 1]) with channels made to differ: the SSIM of
 * channel 0 stays high, channel 1's drops with heavy noise and channel 2
 * is inverted, so a wrong weighting of the channels, or one channel
 * standing for all, moves the mean. */
static void degrade_channels(cd_tensor *x, cd_tensor *y, uint64_t seed)
{
    const int64_t N = cd_tensor_dim(x, 0), C = cd_tensor_dim(x, 1),
                  HW = cd_tensor_dim(x, 2) * cd_tensor_dim(x, 3);
    const float amount[3] = {0.05f, 1.0f, 0.1f};
    cd_test_fill_uniform(y, seed, -1.0f, 1.0f);
    const float *xd = cd_tensor_data(x);
    float *yd = cd_tensor_data(y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < HW; k++) {
                const int64_t i = (n * C + c) * HW + k;
                yd[i] = (c % 3 == 2 ? 1.0f - xd[i] : xd[i]) + amount[c % 3] * yd[i];
            }
}

START_TEST(colour_ssim_is_the_channel_mean)
{
    /* Every plane of x and y spans exactly [0, 1], so normalising a plane
     * alone or the whole image is the identity either way: the 3-channel
     * SSIM must then be the mean of the three 1-channel SSIMs (piq's mean
     * over channels and pixels, every channel's map of the same size), and
     * its MSE the mean of theirs. The tolerances allow for the sums'
     * different grouping in double, nothing more. */
    const int64_t N = 3, C = 3, H = 20, W = 36, HW = H * W;
    cd_tensor *x = cd_test_tensor4(N, C, H, W), *y = cd_test_tensor4(N, C, H, W);
    cd_test_fill_uniform(x, 21, 0.0f, 1.0f);
    degrade_channels(x, y, 22);
    cd_tensor *t[2] = {x, y};
    for (int m = 0; m < 2; m++) {
        float *d = cd_tensor_data(t[m]);
        for (int64_t i = 0; i < N * C * HW; i++) d[i] = fminf(1.0f, fmaxf(0.0f, d[i]));
        for (int64_t p = 0; p < N * C; p++) {
            d[p * HW + 3 * m] = 0.0f;
            d[p * HW + HW - 1 - 5 * m] = 1.0f;
        }
    }
    double mse3[3], ssim3[3], psnr3[3], mse1[3][3], ssim1[3][3];
    CD_ASSERT_OK(cd_metrics_per_image(x, y, mse3, ssim3, psnr3, N));
    for (int64_t c = 0; c < C; c++) {
        cd_tensor *xc = plane_of(x, c), *yc = plane_of(y, c);
        CD_ASSERT_OK(cd_metrics_per_image(xc, yc, mse1[c], ssim1[c], NULL, N));
        cd_tensor_free(xc);
        cd_tensor_free(yc);
    }
    for (int64_t n = 0; n < N; n++) {
        char what[64];
        const double s = (ssim1[0][n] + ssim1[1][n] + ssim1[2][n]) / 3.0;
        const double m = (mse1[0][n] + mse1[1][n] + mse1[2][n]) / 3.0;
        snprintf(what, sizeof what, "image %d: SSIM vs the channels' mean", (int)n);
        assert_close(ssim3[n], s, 1e-13, 0, what);
        snprintf(what, sizeof what, "image %d: MSE vs the channels' mean", (int)n);
        assert_close(mse3[n], m, 0, 1e-12, what);
        snprintf(what, sizeof what, "image %d: PSNR", (int)n);
        assert_close(psnr3[n], -10.0 * log10(m + 1e-8), 0, 1e-12, what);
        /* The channels really differ, so the check has something to see. */
        ck_assert_msg(ssim1[0][n] > ssim1[1][n] + 0.2 && ssim1[1][n] > ssim1[2][n] + 0.2,
                      "image %d: channel SSIMs %g %g %g", (int)n, ssim1[0][n], ssim1[1][n],
                      ssim1[2][n]);
    }
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

START_TEST(colour_definitions_over_all_values)
{
    /* Channels in different ranges, so normalising over all C x H x W
     * values differs from normalising each plane: the definitions are
     * evaluated here from scratch and compared with the library's. */
    const int64_t N = 3, C = 3, H = 48, W = 32, HW = H * W, per = C * HW;
    const float scale[3] = {1.0f, 5.0f, 0.3f}, shift[3] = {0.0f, -2.0f, 4.0f};
    cd_tensor *x = cd_test_tensor4(N, C, H, W), *y = cd_test_tensor4(N, C, H, W);
    cd_test_fill_uniform(x, 31, 0.0f, 1.0f);
    degrade_channels(x, y, 32);
    float *xd = cd_tensor_data(x), *yd = cd_tensor_data(y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < HW; k++) {
                const int64_t i = (n * C + c) * HW + k;
                xd[i] = scale[c] * xd[i] + shift[c];
                yd[i] = scale[c] * yd[i] + shift[c];
            }
    double mse[3], ssim[3], psnr[3];
    CD_ASSERT_OK(cd_metrics_per_image(x, y, mse, ssim, psnr, N));

    double *xn = calloc((size_t)per, sizeof *xn), *yn = calloc((size_t)per, sizeof *yn);
    double *scratch = calloc((size_t)cd__ssim_scratch_len(1, H, W), sizeof *scratch);
    ck_assert(xn && yn && scratch);
    double sum_mse = 0, sum_ssim = 0, sum_psnr = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *src[2] = {xd + n * per, yd + n * per};
        double *dst[2] = {xn, yn}, mse_planes = 0.0;
        for (int m = 0; m < 2; m++) {
            double lo = src[m][0], hi = src[m][0];
            for (int64_t k = 0; k < per; k++) {
                lo = fmin(lo, src[m][k]);
                hi = fmax(hi, src[m][k]);
            }
            for (int64_t k = 0; k < per; k++) dst[m][k] = ((double)src[m][k] - lo) / (hi - lo);
        }
        double sq = 0.0, s = 0.0;
        for (int64_t k = 0; k < per; k++) sq += (xn[k] - yn[k]) * (xn[k] - yn[k]);
        for (int64_t c = 0; c < C; c++) {
            s += cd__ssim_image(xn + c * HW, yn + c * HW, 1, H, W, scratch) / (double)C;
            /* Each plane normalised on its own instead, for contrast. */
            const float *px = src[0] + c * HW, *py = src[1] + c * HW;
            double xl = px[0], xh = px[0], yl = py[0], yh = py[0];
            for (int64_t k = 0; k < HW; k++) {
                xl = fmin(xl, px[k]), xh = fmax(xh, px[k]);
                yl = fmin(yl, py[k]), yh = fmax(yh, py[k]);
            }
            for (int64_t k = 0; k < HW; k++) {
                const double d = (px[k] - xl) / (xh - xl) - (py[k] - yl) / (yh - yl);
                mse_planes += d * d / (double)per;
            }
        }
        const double want_mse = sq / (double)per, want_psnr = -10.0 * log10(want_mse + 1e-8);
        char what[64];
        snprintf(what, sizeof what, "image %d: MSE over C x H x W", (int)n);
        assert_close(mse[n], want_mse, 0, 1e-12, what);
        snprintf(what, sizeof what, "image %d: PSNR", (int)n);
        assert_close(psnr[n], want_psnr, 0, 1e-12, what);
        snprintf(what, sizeof what, "image %d: SSIM, the mean of the planes'", (int)n);
        assert_close(ssim[n], s, 1e-13, 0, what);
        ck_assert_msg(fabs(mse_planes - want_mse) > 0.1 * want_mse,
                      "image %d: per-plane normalisation gives a close MSE (%g vs %g)", (int)n,
                      mse_planes, want_mse);
        sum_mse += want_mse;
        sum_ssim += s;
        sum_psnr += want_psnr;
    }
    double r, s, p;
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &r, &s, &p, NULL));
    assert_close(r, sqrt(sum_mse / (double)N), 0, 1e-12, "RMSE over all values of all images");
    assert_close(s, sum_ssim / (double)N, 1e-13, 0, "mean SSIM");
    assert_close(p, sum_psnr / (double)N, 0, 1e-12, "mean PSNR");
    free(xn);
    free(yn);
    free(scratch);
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

/* ---- reductions ---------------------------------------------------------- */

START_TEST(report_reduction_batches_of_512)
{
    /* 1000 images: the report's batches are 512 + 488. The second batch
     * is noisier, so the two reductions differ. */
    const int64_t N = 1000, per = 784;
    cd_tensor *x = cd_test_tensor4(N, 1, 28, 28), *y = cd_test_tensor4(N, 1, 28, 28);
    cd_test_fill_uniform(x, 7, 0.0f, 1.0f);
    cd_test_fill_uniform(y, 8, -1.0f, 1.0f);
    float *xd = cd_tensor_data(x), *yd = cd_tensor_data(y);
    for (int64_t n = 0; n < N; n++) {
        const float amount = n < 512 ? 0.1f : 0.6f;
        for (int64_t k = 0; k < per; k++)
            yd[n * per + k] = xd[n * per + k] + amount * yd[n * per + k];
    }
    double *mse = calloc(N, sizeof *mse), *ssim = calloc(N, sizeof *ssim),
           *psnr = calloc(N, sizeof *psnr);
    ck_assert(mse && ssim && psnr);
    CD_ASSERT_OK(cd_metrics_per_image(x, y, mse, ssim, psnr, N));

    /* What the report's loop did: one value per batch, then the mean. */
    double want_r = 0, want_s = 0, want_p = 0, all_m = 0, all_s = 0, all_p = 0;
    const int64_t bounds[3] = {0, 512, 1000};
    for (int b = 0; b < 2; b++) {
        double m = 0, s = 0, p = 0;
        for (int64_t i = bounds[b]; i < bounds[b + 1]; i++) {
            m += mse[i];
            s += ssim[i];
            p += psnr[i];
        }
        const double cnt = (double)(bounds[b + 1] - bounds[b]);
        want_r += sqrt(m / cnt) / 2;
        want_s += s / cnt / 2;
        want_p += p / cnt / 2;
        all_m += m;
        all_s += s;
        all_p += p;
    }
    double r, s, p;
    cd_metric_reduction used;
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_REPORT, &r, &s, &p, &used));
    ck_assert_int_eq(used, CD_REDUCTION_REPORT);
    assert_close(r, want_r, 0, 1e-12, "report RMSE");
    assert_close(s, want_s, 0, 1e-12, "report SSIM");
    assert_close(p, want_p, 0, 1e-12, "report PSNR");
    double r1, s1, p1;
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_PER_IMAGE, &r1, &s1, &p1, &used));
    ck_assert_int_eq(used, CD_REDUCTION_PER_IMAGE);
    assert_close(r1, sqrt(all_m / 1000.0), 0, 1e-12, "per_image RMSE");
    assert_close(s1, all_s / 1000.0, 0, 1e-12, "per_image SSIM");
    assert_close(p1, all_p / 1000.0, 0, 1e-12, "per_image PSNR");
    /* Unequal batches: the report's weights are not the images'. */
    ck_assert_msg(fabs(s - s1) > 1e-4 && fabs(p - p1) > 1e-3 && fabs(r - r1) > 1e-4,
                  "reductions agree: %g %g, %g %g, %g %g", s, s1, p, p1, r, r1);

    /* The thread count changes nothing, bit for bit. */
    int64_t threads = cd_get_num_threads();
    double r2, s2, p2;
    CD_ASSERT_OK(cd_set_num_threads(1));
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_REPORT, &r2, &s2, &p2, NULL));
    ck_assert(r2 == r && s2 == s && p2 == p);
    CD_ASSERT_OK(cd_set_num_threads(3));
    CD_ASSERT_OK(cd_metrics_images(x, y, CD_REDUCTION_REPORT, &r2, &s2, &p2, NULL));
    ck_assert(r2 == r && s2 == s && p2 == p);
    CD_ASSERT_OK(cd_set_num_threads(threads));
    free(mse);
    free(ssim);
    free(psnr);
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

START_TEST(pooling_of_large_images)
{
    /* piq: f = max(1, round(min(H, W) / 256)), Python rounding (half to
     * even). */
    ck_assert_int_eq(cd__ssim_pool_factor(28, 28), 1);
    ck_assert_int_eq(cd__ssim_pool_factor(383, 2000), 1); /* 1.496 */
    ck_assert_int_eq(cd__ssim_pool_factor(384, 384), 2);  /* 1.5 -> 2 */
    ck_assert_int_eq(cd__ssim_pool_factor(2000, 640), 2); /* 2.5 -> 2 */
    ck_assert_int_eq(cd__ssim_pool_factor(641, 641), 3);
    ck_assert_int_eq(cd__ssim_pool_factor(896, 900), 4);   /* 3.5 -> 4 */
    ck_assert_int_eq(cd__ssim_pool_factor(1152, 1152), 4); /* 4.5 -> 4 */

    /* Images of 2 x 2 constant blocks pool to their blocks exactly, so at
     * 384 x 386 (f = 2) the SSIM is that of the 192 x 193 block images. */
    const int64_t H = 384, W = 386, h = H / 2, w = W / 2;
    double *x = calloc((size_t)(H * W), sizeof *x), *y = calloc((size_t)(H * W), sizeof *y);
    double *xs = calloc((size_t)(h * w), sizeof *xs), *ys = calloc((size_t)(h * w), sizeof *ys);
    int64_t len = cd__ssim_scratch_len(1, H, W);
    ck_assert_int_ge(len, cd__ssim_scratch_len(1, h, w));
    double *scratch = calloc((size_t)len, sizeof *scratch);
    ck_assert(x && y && xs && ys && scratch);
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) {
            xs[i * w + j] = 0.5 + 0.5 * sin(0.1 * (double)i) * cos(0.07 * (double)j);
            ys[i * w + j] = 0.5 + 0.4 * sin(0.1 * (double)i + 0.3) * cos(0.05 * (double)j);
        }
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            x[i * W + j] = xs[(i / 2) * w + j / 2];
            y[i * W + j] = ys[(i / 2) * w + j / 2];
        }
    double big = cd__ssim_image(x, y, 1, H, W, scratch);
    double small = cd__ssim_image(xs, ys, 1, h, w, scratch);
    assert_close(big, small, 1e-14, 0, "pooled SSIM");
    ck_assert(small > 0.1 && small < 0.99);
    free(x);
    free(y);
    free(xs);
    free(ys);
    free(scratch);
}
END_TEST

START_TEST(normalize)
{
    cd_tensor *x = cd_test_tensor4(3, 2, 4, 5), *out = cd_test_tensor4(3, 2, 4, 5);
    cd_test_fill_uniform(x, 3, -40.0f, 17.0f);
    CD_ASSERT_OK(cd_metrics_normalize(x, out));
    const float *o = cd_tensor_data(out), *xd = cd_tensor_data(x);
    for (int n = 0; n < 3; n++) {
        float lo = 2, hi = -1;
        for (int k = 0; k < 40; k++) {
            lo = fminf(lo, o[n * 40 + k]);
            hi = fmaxf(hi, o[n * 40 + k]);
        }
        ck_assert(lo == 0.0f && hi == 1.0f);
    }
    /* In place gives the same. */
    float *copy = malloc(120 * sizeof *copy);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, o, 120 * sizeof *copy);
    CD_ASSERT_OK(cd_metrics_normalize(x, x));
    ck_assert(memcmp(copy, xd, 120 * sizeof *copy) == 0);
    free(copy);

    /* A constant image is an error naming it, and out is left alone. */
    float *d = cd_tensor_data(x);
    for (int k = 40; k < 80; k++) d[k] = 0.25f;
    CD_ASSERT_OK(cd_tensor_fill(out, 9.0f));
    CD_ASSERT_STATUS(cd_metrics_normalize(x, out), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("image 1");
    CD_ASSERT_ERROR_MENTIONS("constant");
    ck_assert(cd_tensor_data(out)[0] == 9.0f);
    d[41] = NAN;
    CD_ASSERT_STATUS(cd_metrics_normalize(x, out), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_metrics_normalize(NULL, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_metrics_normalize(x, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *wrong = cd_test_tensor4(3, 2, 5, 4);
    CD_ASSERT_STATUS(cd_metrics_normalize(x, wrong), CD_ERR_SHAPE);
    cd_tensor *flat = tensor2(3, 40, NULL);
    CD_ASSERT_STATUS(cd_metrics_normalize(flat, out), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_normalize(x, flat), CD_ERR_SHAPE);
    cd_tensor_free(flat);
    cd_tensor_free(wrong);
    cd_tensor_free(x);
    cd_tensor_free(out);
}
END_TEST

START_TEST(image_errors)
{
    cd_tensor *x = cd_test_tensor4(3, 1, 12, 12), *y = cd_test_tensor4(3, 1, 12, 12);
    cd_test_fill_uniform(x, 1, 0, 1);
    cd_test_fill_uniform(y, 2, 0, 1);
    double r = -7, s = -7, p = -7, v[3];
    cd_metric_reduction used = (cd_metric_reduction)42;
    CD_ASSERT_STATUS(cd_metrics_images(NULL, y, 0, &r, &s, &p, &used), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_metrics_images(x, NULL, 0, &r, &s, &p, &used), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_metrics_images(x, y, (cd_metric_reduction)2, &r, &s, &p, &used),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("reduction");
    CD_ASSERT_STATUS(cd_metrics_images(x, y, (cd_metric_reduction)-1, &r, &s, &p, &used),
                     CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_ptr_null(cd_enum_name(CD_ENUM_METRIC_REDUCTION, 2));
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);

    /* shapes */
    cd_tensor *small = cd_test_tensor4(3, 1, 10, 12), *other = cd_test_tensor4(3, 1, 12, 13),
              *fewer = cd_test_tensor4(2, 1, 12, 12), *chans = cd_test_tensor4(3, 2, 12, 12),
              *flat = tensor2(3, 144, NULL);
    cd_test_fill_uniform(small, 3, 0, 1);
    CD_ASSERT_STATUS(cd_metrics_images(small, small, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("11");
    CD_ASSERT_STATUS(cd_metrics_images(x, other, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_images(x, fewer, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_images(x, chans, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_images(flat, y, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_images(x, flat, 0, &r, &s, &p, &used), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_per_image(x, y, v, v, v, 2), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_metrics_per_image(NULL, y, v, v, v, 3), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_metrics_per_image(x, NULL, v, v, v, 3), CD_ERR_INVALID_ARGUMENT);

    /* values: which tensor, which image */
    float *yd = cd_tensor_data(y);
    yd[144 + 7] = NAN;
    CD_ASSERT_STATUS(cd_metrics_images(x, y, 0, &r, &s, &p, &used), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("x_hat image 1");
    yd[144 + 7] = INFINITY;
    CD_ASSERT_STATUS(cd_metrics_per_image(x, y, v, v, v, 3), CD_ERR_NOT_FINITE);
    yd[144 + 7] = -INFINITY;
    CD_ASSERT_STATUS(cd_metrics_images(x, y, 1, &r, &s, &p, &used), CD_ERR_NOT_FINITE);
    yd[144 + 7] = 0.5f;
    float *xd = cd_tensor_data(x);
    for (int k = 0; k < 144; k++) xd[2 * 144 + k] = -3.0f;
    CD_ASSERT_STATUS(cd_metrics_images(x, y, 0, &r, &s, &p, &used), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("x image 2");
    CD_ASSERT_ERROR_MENTIONS("constant");
    CD_ASSERT_STATUS(cd_metrics_per_image(x, y, v, v, v, 3), CD_ERR_RANGE);
    /* Outputs are untouched by failures. */
    ck_assert(r == -7 && s == -7 && p == -7 && used == (cd_metric_reduction)42);
    /* NULL outputs are allowed. */
    xd[2 * 144] = 1.0f;
    CD_ASSERT_OK(cd_metrics_images(x, y, 0, NULL, NULL, NULL, NULL));
    CD_ASSERT_OK(cd_metrics_per_image(x, y, NULL, NULL, NULL, 3));

    cd_tensor_free(small);
    cd_tensor_free(other);
    cd_tensor_free(fewer);
    cd_tensor_free(chans);
    cd_tensor_free(flat);
    cd_tensor_free(x);
    cd_tensor_free(y);
}
END_TEST

/* ---- Frechet distance --------------------------------------------------- */

/* n x d features: rows of N(0, 1) mixed by a fixed matrix, plus an offset. */
static cd_tensor *gaussian_features(int64_t n, int64_t d, uint64_t seed, float mix, float offset)
{
    cd_tensor *z = tensor2(n, d, NULL), *t = tensor2(n, d, NULL);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_rng_normal_tensor(rng, z));
    const float *zd = cd_tensor_data(z);
    float *td = cd_tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double v = zd[i * d + j] + offset + 0.1 * (double)j;
            for (int64_t k = 0; k < j; k++) v += mix * zd[i * d + k] / (double)(1 + j - k);
            td[i * d + j] = (float)v;
        }
    cd_rng_free(rng);
    cd_tensor_free(z);
    return t;
}

static double trace_of(const cd_tensor *f)
{
    const int64_t d = cd_tensor_dim(f, 1);
    double *cov = calloc((size_t)(d * d), sizeof *cov);
    ck_assert_ptr_nonnull(cov);
    CD_ASSERT_OK(cd_feature_stats(f, NULL, cov, d));
    double tr = 0;
    for (int64_t i = 0; i < d; i++) tr += cov[i * d + i];
    free(cov);
    return tr;
}

START_TEST(fd_identity_symmetry_sign)
{
    cd_tensor *a = gaussian_features(300, 16, 1, 0.8f, 0.0f);
    cd_tensor *b = gaussian_features(200, 16, 2, -0.5f, 0.3f);
    double fd = -1;
    /* FD(A, A) = 0: tr S + tr S - 2 tr (S^2)^1/2 cancels exactly in exact
     * arithmetic, and to rounding here. */
    CD_ASSERT_OK(cd_frechet_distance(a, a, &fd));
    ck_assert_msg(fd >= 0 && fd <= 1e-9 * 2 * trace_of(a), "FD(A, A) = %g", fd);
    /* Fewer samples than features: singular covariances, clamped. */
    cd_tensor *thin = gaussian_features(10, 16, 3, 0.8f, 0.0f);
    CD_ASSERT_OK(cd_frechet_distance(thin, thin, &fd));
    ck_assert_msg(fd >= 0 && fd <= 1e-6 * 2 * trace_of(thin), "FD(thin, thin) = %g", fd);
    double ab, ba;
    CD_ASSERT_OK(cd_frechet_distance(a, b, &ab));
    CD_ASSERT_OK(cd_frechet_distance(b, a, &ba));
    assert_close(ab, ba, 0, 1e-9, "FD symmetric");
    ck_assert(ab > 0.1);
    CD_ASSERT_OK(cd_frechet_distance(thin, b, &ab));
    CD_ASSERT_OK(cd_frechet_distance(b, thin, &ba));
    assert_close(ab, ba, 0, 1e-7, "FD symmetric, singular");
    ck_assert(ab > 0);
    /* Non-negative over many pairs, near-identical ones included. */
    for (uint64_t k = 0; k < 6; k++) {
        cd_tensor *c = gaussian_features(40, 6, 10 + k, 0.3f, 0.0f);
        cd_tensor *e = gaussian_features(40, 6, 10 + k, 0.3f, 1e-6f * (float)k);
        CD_ASSERT_OK(cd_frechet_distance(c, e, &fd));
        ck_assert_msg(fd >= 0 && isfinite(fd), "FD %g", fd);
        /* The same covariance, means moved by k 1e-6 in each of 6
         * coordinates: FD = 6 (k 1e-6)^2 up to float rounding. */
        ck_assert_msg(fd < 1e-9, "FD of shifted copies %g", fd);
        cd_tensor_free(c);
        cd_tensor_free(e);
    }
    cd_tensor_free(thin);
    cd_tensor_free(a);
    cd_tensor_free(b);
}
END_TEST

START_TEST(fd_closed_forms)
{
    /* Diagonal covariances: the matrices commute, so
     *   FD = |mu1 - mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2. */
    enum { D = 5 };
    double mu1[D] = {0, 1, 2, -1, 0.5}, mu2[D] = {1, 1, 0, -1, 0};
    double s1[D] = {1, 4, 0.25, 9, 0}, s2[D] = {4, 1, 0.25, 1, 2};
    double c1[D * D] = {0}, c2[D * D] = {0};
    double want = 0;
    for (int i = 0; i < D; i++) {
        c1[i * D + i] = s1[i];
        c2[i * D + i] = s2[i];
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) +
                (sqrt(s1[i]) - sqrt(s2[i])) * (sqrt(s1[i]) - sqrt(s2[i]));
    }
    double fd;
    CD_ASSERT_OK(cd_frechet_distance_from_stats(mu1, c1, mu2, c2, D, &fd));
    assert_close(fd, want, 1e-13, 1e-13, "diagonal closed form");

    /* A full S1 = L L^T and S2 = k^2 S1: S1^1/2 S2 S1^1/2 = k^2 S1^2, whose
     * square root is k S1, so FD = |mu1 - mu2|^2 + (1 - k)^2 tr S1. */
    enum { E = 6 };
    double L[E * E], S1[E * E], S2[E * E], m1[E], m2[E];
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++) L[i * E + j] = j <= i ? 1.0 / (1 + i + 2 * j) : 0.0;
    double trS1 = 0, dmu = 0;
    const double k = 2.5;
    for (int i = 0; i < E; i++) {
        for (int j = 0; j < E; j++) {
            double v = 0;
            for (int l = 0; l < E; l++) v += L[i * E + l] * L[j * E + l];
            S1[i * E + j] = v;
            S2[i * E + j] = k * k * v;
        }
        trS1 += S1[i * E + i];
        m1[i] = 0.1 * i;
        m2[i] = -0.2 * i;
        dmu += (m1[i] - m2[i]) * (m1[i] - m2[i]);
    }
    CD_ASSERT_OK(cd_frechet_distance_from_stats(m1, S1, m2, S2, E, &fd));
    assert_close(fd, dmu + (1 - k) * (1 - k) * trS1, 1e-12, 1e-12, "S2 = k^2 S1");
    CD_ASSERT_OK(cd_frechet_distance_from_stats(m2, S2, m1, S1, E, &fd));
    assert_close(fd, dmu + (1 - k) * (1 - k) * trS1, 1e-12, 1e-12, "S1 = S2 / k^2");

    /* Two Gaussians sampled: feature stats of a hand-sized set. Rows
     * (0, 0), (2, 0), (0, 4), (2, 4): mean (1, 2); unbiased covariance
     * diag(4/3, 16/3) with no cross term. */
    const float rows[8] = {0, 0, 2, 0, 0, 4, 2, 4};
    cd_tensor *f = tensor2(4, 2, rows);
    double mean[2], cov[4];
    CD_ASSERT_OK(cd_feature_stats(f, mean, cov, 2));
    assert_close(mean[0], 1, 0, 1e-15, "mean 0");
    assert_close(mean[1], 2, 0, 1e-15, "mean 1");
    assert_close(cov[0], 4.0 / 3, 0, 1e-15, "var 0");
    assert_close(cov[3], 16.0 / 3, 0, 1e-15, "var 1");
    ck_assert(cov[1] == 0 && cov[2] == 0);
    /* Against a point cloud at (1, 2) + sqrt(3/4) (+-1, +-1) scaled to
     * variance 1 in both axes: FD = (sqrt(4/3) - 1)^2 + (sqrt(16/3) - 1)^2. */
    const float h = (float)sqrt(0.75);
    const float rows2[8] = {1 - h, 2 - h, 1 + h, 2 - h, 1 - h, 2 + h, 1 + h, 2 + h};
    cd_tensor *g = tensor2(4, 2, rows2);
    double m[2], cg[4];
    CD_ASSERT_OK(cd_feature_stats(g, m, cg, 2));
    CD_ASSERT_OK(cd_frechet_distance(f, g, &fd));
    want = (m[0] - 1) * (m[0] - 1) + (m[1] - 2) * (m[1] - 2) + pow(sqrt(4.0 / 3) - sqrt(cg[0]), 2) +
           pow(sqrt(16.0 / 3) - sqrt(cg[3]), 2);
    assert_close(fd, want, 1e-12, 1e-12, "sampled diagonal");
    assert_close(want, pow(sqrt(4.0 / 3) - 1, 2) + pow(sqrt(16.0 / 3) - 1, 2), 1e-6, 0,
                 "the cloud has unit variances");
    cd_tensor_free(f);
    cd_tensor_free(g);

    /* Constant features: zero covariances (all eigenvalues 0) are fine,
     * and FD = |mu1 - mu2|^2 = 2 (3 - 1)^2 = 8. */
    const float ones[6] = {1, 1, 1, 1, 1, 1}, threes[6] = {3, 3, 3, 3, 3, 3};
    f = tensor2(3, 2, ones);
    g = tensor2(3, 2, threes);
    CD_ASSERT_OK(cd_frechet_distance(f, g, &fd));
    ck_assert_msg(fd == 8.0, "FD %g", fd);
    cd_tensor_free(f);
    cd_tensor_free(g);
}
END_TEST

START_TEST(fd_matches_reference)
{
    cd_fixture *fx = cd_fixture_load("metrics.bin");
    const char *cases[2] = {"full", "singular"};
    const double rtol[2] = {2e-7, 1e-6};
    for (int c = 0; c < 2; c++) {
        char key[64];
        snprintf(key, sizeof key, "%s.a", cases[c]);
        cd_tensor *a = from_fixture(fx, key);
        snprintf(key, sizeof key, "%s.b", cases[c]);
        cd_tensor *b = from_fixture(fx, key);
        snprintf(key, sizeof key, "%s.fd", cases[c]);
        const float *want = cd_fixture_get(fx, key, NULL);
        double fd, fd2;
        CD_ASSERT_OK(cd_frechet_distance(a, b, &fd));
        assert_close(fd, want[0], 0, rtol[c], key);
        /* The same through the statistics. */
        const int64_t D = cd_tensor_dim(a, 1);
        double *st = calloc((size_t)(2 * (D + D * D)), sizeof *st);
        ck_assert_ptr_nonnull(st);
        CD_ASSERT_OK(cd_feature_stats(a, st, st + D, D));
        CD_ASSERT_OK(cd_feature_stats(b, st + D + D * D, st + 2 * D + D * D, D));
        CD_ASSERT_OK(cd_frechet_distance_from_stats(st, st + D, st + D + D * D, st + 2 * D + D * D,
                                                    D, &fd2));
        ck_assert(fd2 == fd);
        free(st);
        cd_tensor_free(a);
        cd_tensor_free(b);
    }
    cd_fixture_free(fx);
}
END_TEST

START_TEST(fd_errors)
{
    cd_tensor *a = gaussian_features(10, 3, 1, 0.5f, 0);
    cd_tensor *b = gaussian_features(12, 3, 2, 0.5f, 0);
    double fd = -5;
    CD_ASSERT_STATUS(cd_frechet_distance(NULL, b, &fd), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance(a, NULL, &fd), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance(a, b, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *one = tensor2(1, 3, NULL), *wide = tensor2(10, 4, NULL),
              *img = cd_test_tensor4(10, 3, 1, 1);
    CD_ASSERT_STATUS(cd_frechet_distance(one, b, &fd), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("at least 2");
    CD_ASSERT_STATUS(cd_frechet_distance(a, one, &fd), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_frechet_distance(a, wide, &fd), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_frechet_distance(img, b, &fd), CD_ERR_SHAPE);
    cd_tensor *huge = tensor2(2, CD_FD_MAX_DIM + 1, NULL);
    CD_ASSERT_STATUS(cd_frechet_distance(huge, huge, &fd), CD_ERR_RANGE);
    cd_tensor_free(huge);
    cd_tensor_data(b)[1 * 3 + 2] = NAN;
    CD_ASSERT_STATUS(cd_frechet_distance(a, b, &fd), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("b[1][2]");
    cd_tensor_data(b)[1 * 3 + 2] = INFINITY;
    CD_ASSERT_STATUS(cd_frechet_distance(a, b, &fd), CD_ERR_NOT_FINITE);
    ck_assert(fd == -5);

    double mean[3], cov[9];
    CD_ASSERT_STATUS(cd_feature_stats(NULL, mean, cov, 3), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_feature_stats(a, mean, cov, 4), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_feature_stats(one, mean, cov, 3), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_feature_stats(b, mean, cov, 3), CD_ERR_NOT_FINITE);
    CD_ASSERT_OK(cd_feature_stats(a, NULL, NULL, 3));

    const double mu[2] = {0, 0}, id[4] = {1, 0, 0, 1};
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(NULL, id, mu, id, 2, &fd),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, NULL, mu, id, 2, &fd),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, NULL, id, 2, &fd),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, NULL, 2, &fd),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, id, 2, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, id, 0, &fd), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, id, -3, &fd), CD_ERR_RANGE);
    const double nan_mu[2] = {0, NAN}, inf_cov[4] = {1, 0, 0, INFINITY};
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, nan_mu, id, 2, &fd), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("mu2[1]");
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, inf_cov, mu, id, 2, &fd),
                     CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cov1[1][1]");
    const double asym[4] = {1, 0.5, 0.4, 1}, negvar[4] = {1, 0, 0, -1}, indef[4] = {1, 2, 2, 1};
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, asym, 2, &fd), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("symmetric");
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, negvar, mu, id, 2, &fd), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, indef, mu, id, 2, &fd), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("cov1 is not positive semi-definite");
    CD_ASSERT_STATUS(cd_frechet_distance_from_stats(mu, id, mu, indef, 2, &fd), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("cov2");
    ck_assert(fd == -5);
    /* Rounding-sized negative eigenvalues pass: a singular covariance
     * given with a -1e-17 wobble. */
    const double sing[4] = {1, 1, 1, 1 - 1e-16};
    CD_ASSERT_OK(cd_frechet_distance_from_stats(mu, sing, mu, sing, 2, &fd));
    ck_assert_msg(fd >= 0 && fd < 1e-7, "FD %g", fd);

    cd_tensor_free(one);
    cd_tensor_free(wide);
    cd_tensor_free(img);
    cd_tensor_free(a);
    cd_tensor_free(b);
}
END_TEST

/* ---- classes ------------------------------------------------------------ */

START_TEST(class_summaries)
{
    /* 6 rows over 3 classes; argmax: 0, 2, 2, 1, 0 (a tie of 0 and 1 goes
     * to 0, as torch.argmax), 2. Histogram (2, 1, 3): entropy
     * -(1/3 ln 1/3 + 1/6 ln 1/6 + 1/2 ln 1/2) nats. */
    const float p[18] = {0.7f, 0.2f, 0.1f, 0.1f, 0.1f, 0.8f, 0.3f, 0.3f, 0.4f,
                         0.2f, 0.5f, 0.3f, 0.4f, 0.4f, 0.2f, 0.0f, 0.0f, 1.0f};
    cd_tensor *probs = tensor2(6, 3, p);
    int64_t hist[3] = {-1, -1, -1};
    double H = -1, conf = -1;
    CD_ASSERT_OK(cd_class_histogram(probs, hist, 3, &H, &conf));
    ck_assert(hist[0] == 2 && hist[1] == 1 && hist[2] == 3);
    assert_close(H, -(log(1.0 / 3) / 3 + log(1.0 / 6) / 6 + log(0.5) / 2), 1e-15, 0, "entropy");
    assert_close(conf, ((double)0.7f + 0.8f + 0.4f + 0.5f + 0.4f + 1.0f) / 6, 1e-15, 0,
                 "mean confidence");
    CD_ASSERT_OK(cd_class_histogram(probs, NULL, 0, NULL, NULL));

    const int64_t labels[6] = {0, 2, 1, 1, 1, 2};
    double frac = -1;
    int64_t hits = -1;
    CD_ASSERT_OK(cd_class_preservation(probs, labels, 6, &frac, &hits));
    ck_assert_int_eq(hits, 4);
    assert_close(frac, 4.0 / 6, 1e-16, 0, "preservation");

    /* Uniform over K classes: the maximum entropy ln K. */
    float q[40];
    for (int i = 0; i < 10; i++)
        for (int k = 0; k < 4; k++) q[i * 4 + k] = k == i % 4 ? 0.9f : 0.1f / 3;
    cd_tensor *four = tensor2(8, 4, q); /* 8 rows: each class twice */
    CD_ASSERT_OK(cd_class_histogram(four, NULL, 0, &H, NULL));
    assert_close(H, log(4.0), 1e-15, 0, "ln 4");
    cd_tensor *single = tensor2(1, 4, q);
    CD_ASSERT_OK(cd_class_histogram(single, NULL, 0, &H, &conf));
    ck_assert(H == 0.0);

    /* errors */
    CD_ASSERT_STATUS(cd_class_histogram(NULL, hist, 3, &H, &conf), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_class_histogram(probs, hist, 4, &H, &conf), CD_ERR_SHAPE);
    cd_tensor *img = cd_test_tensor4(6, 3, 1, 1);
    CD_ASSERT_STATUS(cd_class_histogram(img, NULL, 0, &H, &conf), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_class_preservation(img, labels, 6, &frac, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_class_preservation(NULL, labels, 6, &frac, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_class_preservation(probs, NULL, 6, &frac, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_class_preservation(probs, labels, 6, NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_class_preservation(probs, labels, 5, &frac, NULL), CD_ERR_SHAPE);
    const int64_t bad[6] = {0, 2, 3, 1, 1, 2}, neg[6] = {0, -1, 1, 1, 1, 2};
    CD_ASSERT_STATUS(cd_class_preservation(probs, bad, 6, &frac, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("labels[2]");
    CD_ASSERT_STATUS(cd_class_preservation(probs, neg, 6, &frac, NULL), CD_ERR_RANGE);
    float *pd = cd_tensor_data(probs);
    pd[4] = -0.1f;
    CD_ASSERT_STATUS(cd_class_histogram(probs, hist, 3, &H, &conf), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("probs[1][1]");
    CD_ASSERT_STATUS(cd_class_preservation(probs, labels, 6, &frac, NULL), CD_ERR_RANGE);
    pd[4] = NAN;
    CD_ASSERT_STATUS(cd_class_histogram(probs, hist, 3, &H, &conf), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_class_preservation(probs, labels, 6, &frac, NULL), CD_ERR_NOT_FINITE);
    ck_assert(frac == 4.0 / 6 && hist[0] == 2);

    cd_tensor_free(img);
    cd_tensor_free(single);
    cd_tensor_free(four);
    cd_tensor_free(probs);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("images");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, window_is_piqs);
    tcase_add_test(tc, identical_images);
    tcase_add_test(tc, inverted_checkerboard);
    tcase_add_test(tc, ssim_kernel_closed_forms);
    tcase_add_test(tc, known_mse);
    tcase_add_test(tc, images_match_reference);
    tcase_add_test(tc, colour_images_match_reference);
    tcase_add_test(tc, colour_ssim_is_the_channel_mean);
    tcase_add_test(tc, colour_definitions_over_all_values);
    tcase_add_test(tc, report_reduction_batches_of_512);
    tcase_add_test(tc, pooling_of_large_images);
    tcase_add_test(tc, normalize);
    tcase_add_test(tc, image_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("frechet");
    tcase_add_test(tc, fd_identity_symmetry_sign);
    tcase_add_test(tc, fd_closed_forms);
    tcase_add_test(tc, fd_matches_reference);
    tcase_add_test(tc, fd_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("classes");
    tcase_add_test(tc, class_summaries);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
