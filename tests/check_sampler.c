/* check_sampler.c - the samplers (docs/models.md, Samplers), proved with exact
 * predictors plugged in through cd_sampler_set_predictor():
 *   - Gaussian data x ~ N(m, v I), whose optimal noise predictor is linear
 *     in z, so every noise chain is a linear Gaussian recursion whose output
 *     moments the test computes exactly from the samplers' formulas; DDPM and
 *     DDIM must match those moments statistically, and the moments must
 *     match the data's;
 *   - the cold samplers with the exact clean-image predictor return x;
 *   - the DDIM step sequence, snapshots, determinism and every error. */
#include "test_util.h"

#include <math.h>

#include "diffusion/diffusion.h"

/* The internal DDIM step formula (lib/diffusion/sampler.c). */

enum { GD = 4 }; /* Gaussian toy: 1 x 2 x 2 images */

static cd_tensor *tensor5(int64_t s, const cd_tensor *like)
{
    cd_tensor *t = NULL;
    int64_t shape[5] = {s, 0, 0, 0, 0};
    CD_ASSERT_OK(cd_tensor_shape(like, shape + 1, 4));
    CD_ASSERT_OK(cd_tensor_create(&t, 5, shape));
    return t;
}

static float max_abs_diff(cd_tensor *a, cd_tensor *b)
{
    ck_assert_int_eq(cd_tensor_numel(a), cd_tensor_numel(b));
    const float *p = cd_tensor_data(a), *q = cd_tensor_data(b);
    float m = 0.0f;
    for (int64_t i = 0; i < cd_tensor_numel(a); i++) m = fmaxf(m, fabsf(p[i] - q[i]));
    return m;
}

static bool same_bits(cd_tensor *a, cd_tensor *b)
{
    return cd_tensor_numel(a) == cd_tensor_numel(b) &&
           memcmp(cd_tensor_data(a), cd_tensor_data(b),
                  (size_t)cd_tensor_numel(a) * sizeof(float)) == 0;
}

/* ---- the Gaussian toy and its exact noise predictor ---------------------- */

typedef struct {
    int64_t T;
    float beta[1001], abar[1001];
    double m[GD], v;
} gauss;

static void gauss_init(gauss *g, const cd_schedule *s, double v)
{
    static const double m[GD] = {0.3, -0.2, 0.1, -0.4};
    g->T = cd_schedule_T(s);
    ck_assert_int_le(g->T, 1000);
    CD_ASSERT_OK(cd_schedule_copy_arrays(s, g->beta, g->abar, g->T + 1));
    memcpy(g->m, m, sizeof m);
    g->v = v;
}

static int64_t time_of(int64_t T, float tau) { return (int64_t)lround((double)tau * (double)T); }

/* eps-hat(z_t) = E[eps | z_t] = sqrt(1-a) (z - sqrt(a) m) / (a v + 1 - a):
 * the optimal predictor for x ~ N(m, v I). */
static cd_status gauss_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out, void *user)
{
    const gauss *g = user;
    const int64_t N = cd_tensor_dim(z, 0), D = cd_tensor_numel(z) / N;
    const float *zp = cd_tensor_data((cd_tensor *)z), *tp = cd_tensor_data((cd_tensor *)tau);
    float *o = cd_tensor_data(out);
    for (int64_t n = 0; n < N; n++) {
        const double a = g->abar[time_of(g->T, tp[n])];
        const double c = sqrt(1.0 - a) / (a * g->v + 1.0 - a);
        for (int64_t i = 0; i < D; i++)
            o[n * D + i] = (float)(c * ((double)zp[n * D + i] - sqrt(a) * g->m[i % GD]));
    }
    return CD_OK;
}

/* The exact output moments of the chain (mean per pixel, one variance:
 * the data are isotropic), z_T ~ N(0, 1): each step is z' = A z + B + sigma
 * xi with A, B, sigma from the samplers' formulas and gauss_predict. */
typedef struct {
    double mean[GD], var;
} moments;

static void ddpm_coeffs(const gauss *g, int64_t t, bool post, double *A, double *Bm, double *s2)
{
    const double b = g->beta[t], a = g->abar[t], c = sqrt(1.0 - a) / (a * g->v + 1.0 - a);
    const double k = b / sqrt(1.0 - a), inv = 1.0 / sqrt(1.0 - b);
    *A = inv * (1.0 - k * c);
    *Bm = inv * k * c * sqrt(a); /* times m */
    *s2 = t > 1 ? (post ? b * (1.0 - g->abar[t - 1]) / (1.0 - a) : b) : 0.0;
}

static void ddim_coeffs(const gauss *g, int64_t t, int64_t p, double eta, double *A, double *Bm,
                        double *s2)
{
    const double a = g->abar[t], ap = p ? g->abar[p] : 1.0;
    const double c = sqrt(1.0 - a) / (a * g->v + 1.0 - a);
    const double sig = eta * sqrt((1.0 - ap) / (1.0 - a)) * sqrt(1.0 - a / ap);
    const double q = sqrt(fmax(0.0, 1.0 - ap - sig * sig));
    *A = sqrt(ap) * (1.0 - sqrt(1.0 - a) * c) / sqrt(a) + q * c;
    *Bm = c * (sqrt(ap) * sqrt(1.0 - a) - q * sqrt(a));
    *s2 = sig * sig;
}

static moments chain_moments(const gauss *g, const cd_sampler *s, double eta, bool post)
{
    int64_t n = 0, times[1000];
    CD_ASSERT_OK(cd_sampler_step_times(s, g->T, times, 1000, &n));
    moments mo = {{0, 0, 0, 0}, 1.0};
    for (int64_t i = 0; i < n; i++) {
        double A, Bm, s2;
        if (cd_sampler_get_kind(s) == CD_SAMPLER_DDPM)
            ddpm_coeffs(g, times[i], post, &A, &Bm, &s2);
        else
            ddim_coeffs(g, times[i], i + 1 < n ? times[i + 1] : 0, eta, &A, &Bm, &s2);
        for (int d = 0; d < GD; d++) mo.mean[d] = A * mo.mean[d] + Bm * g->m[d];
        mo.var = A * A * mo.var + s2;
    }
    return mo;
}

static moments sample_moments(cd_tensor *x)
{
    const int64_t N = cd_tensor_dim(x, 0);
    const float *p = cd_tensor_data(x);
    moments mo = {{0, 0, 0, 0}, 0.0};
    for (int64_t n = 0; n < N; n++)
        for (int d = 0; d < GD; d++) mo.mean[d] += p[n * GD + d];
    for (int d = 0; d < GD; d++) mo.mean[d] /= (double)N;
    for (int64_t n = 0; n < N; n++)
        for (int d = 0; d < GD; d++) {
            const double e = p[n * GD + d] - mo.mean[d];
            mo.var += e * e;
        }
    mo.var /= (double)(N * GD - GD);
    return mo;
}

/*
 * Sample N = 4000 images of 1 x 2 x 2 from x ~ N(m, 0.09 I) (T = 1000, the
 * linear schedule; pixel scale as MNIST's) and check, per pixel mean and for
 * the pooled variance:
 *   1. sample vs the exact chain moments: within 5 standard errors
 *      (SE = sqrt(var/N) for a mean, var sqrt(2/(4N)) for the pooled
 *      variance: about 0.0047 and 0.0010, i.e. 5 SE = 0.024 and 5.6%);
 *      this tests the code against the documented formulas;
 *   2. chain moments vs the data's m and v: the method's own bias (finite
 *      steps, sigma choice, z_T ~ N(0, I) instead of the true marginal),
 *      within 2e-3 for the means and var_bias (relative) for the variance;
 *      this tests the formulas themselves;
 *   3. sample vs data: within 5 SE plus that bias: a sampler must draw
 *      the data's distribution, up to its own known bias.
 * The variance biases are real properties of the samplers on this toy:
 * sigma^2 = beta overshoots (+0.6%), the posterior variance undershoots
 * (-2.5%), DDIM at S = T is within 2.5%, and DDIM with 50 steps shrinks the
 * variance (-16% at eta 0, -29% at eta 1); ddim_bias_shrinks_with_steps
 * shows that this is discretisation error that vanishes as S grows.
 */
static void check_gauss(cd_sampler_kind kind, int64_t steps, double eta, bool post, double var_bias,
                        uint64_t seed)
{
    enum { N = 4000 };
    const double bias_mean = 2e-3;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    static gauss g;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    CD_ASSERT_OK(cd_sampler_create(&s, kind, deg));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0)); /* the unclipped maths */
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, steps));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, eta));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, post ? 1.0 : 0.0));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, gauss_predict, &g));
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    cd_tensor *out = cd_test_tensor4(N, 1, 2, 2);
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));

    const moments want = chain_moments(&g, s, eta, post), got = sample_moments(out);
    const double se_m = sqrt(want.var / N), se_v = want.var * sqrt(2.0 / (N * GD));
    double worst_m = 0.0, worst_z = 0.0;
    for (int d = 0; d < GD; d++) {
        worst_m = fmax(worst_m, fabs(got.mean[d] - g.m[d]));
        worst_z = fmax(worst_z, fabs(got.mean[d] - want.mean[d]) / se_m);
        ck_assert_msg(fabs(got.mean[d] - want.mean[d]) < 5 * se_m,
                      "pixel %d: sample mean %g, chain mean %g (5 SE = %g)", d, got.mean[d],
                      want.mean[d], 5 * se_m);
        ck_assert_msg(fabs(want.mean[d] - g.m[d]) < bias_mean,
                      "pixel %d: chain mean %g vs "
                      "data %g",
                      d, want.mean[d], g.m[d]);
        ck_assert(fabs(got.mean[d] - g.m[d]) < 5 * se_m + bias_mean);
    }
    ck_assert_msg(fabs(got.var - want.var) < 5 * se_v, "sample var %g, chain var %g (5 SE %g)",
                  got.var, want.var, 5 * se_v);
    ck_assert_msg(fabs(want.var - g.v) < var_bias * g.v, "chain var %g vs data %g", want.var, g.v);
    ck_assert(fabs(got.var - g.v) < 5 * se_v + var_bias * g.v);
    fprintf(stderr,
            "gauss kind %d S %4lld eta %g post %d: max |mean - m| %.4f (5 SE %.4f, "
            "%.1f SE from the chain); var %.5f vs data %.5f, chain %.5f (%+.1f%%), "
            "%.1f SE from the chain\n",
            (int)kind, (long long)steps, eta, (int)post, worst_m, 5 * se_m, worst_z, got.var, g.v,
            want.var, 100.0 * (want.var / g.v - 1.0), fabs(got.var - want.var) / se_v);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}

START_TEST(ddpm_gaussian_beta) { check_gauss(CD_SAMPLER_DDPM, 1000, 0.0, false, 0.01, 1); }
END_TEST

START_TEST(ddpm_gaussian_posterior) { check_gauss(CD_SAMPLER_DDPM, 1000, 0.0, true, 0.03, 2); }
END_TEST

START_TEST(ddim_gaussian_50_eta0) { check_gauss(CD_SAMPLER_DDIM, 50, 0.0, false, 0.17, 3); }
END_TEST

START_TEST(ddim_gaussian_50_eta1) { check_gauss(CD_SAMPLER_DDIM, 50, 1.0, false, 0.30, 4); }
END_TEST

START_TEST(ddim_gaussian_T_eta0) { check_gauss(CD_SAMPLER_DDIM, 1000, 0.0, false, 0.015, 5); }
END_TEST

START_TEST(ddim_gaussian_T_eta1) { check_gauss(CD_SAMPLER_DDIM, 1000, 1.0, false, 0.03, 6); }
END_TEST

/* The DDIM variance bias on the toy is discretisation error: it shrinks
 * steadily as S grows (exact chain moments, no sampling). */
START_TEST(ddim_bias_shrinks_with_steps)
{
    static const int64_t S[5] = {10, 50, 200, 500, 1000};
    static gauss g;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 1000, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    for (int e = 0; e < 2; e++) {
        cd_sampler *s = NULL;
        CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, deg));
        double prev = INFINITY;
        for (int k = 0; k < 5; k++) {
            CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, S[k]));
            const double bias = fabs(chain_moments(&g, s, e, false).var / g.v - 1.0);
            ck_assert_msg(bias < prev, "eta %d: S = %lld bias %g after %g", e, (long long)S[k],
                          bias, prev);
            prev = bias;
        }
        ck_assert(prev < 0.03);
        cd_sampler_free(s);
    }
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* DDIM with S = T and eta = 1 is DDPM with the posterior variance: the same
 * means and variances, and the same draws in the same order (noise at every
 * t > 1), so one seed gives the same samples up to float rounding. */
START_TEST(ddim_eta1_is_ddpm_posterior)
{
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *a = NULL, *b = NULL;
    cd_rng *r1 = NULL, *r2 = NULL;
    static gauss g;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 200, 1e-4, 0.05));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    CD_ASSERT_OK(cd_sampler_create(&a, CD_SAMPLER_DDPM, deg));
    CD_ASSERT_OK(cd_sampler_create(&b, CD_SAMPLER_DDIM, deg));
    CD_ASSERT_OK(cd_sampler_set_int(a, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, 1));
    CD_ASSERT_OK(cd_sampler_set_real(b, CD_SAMPLER_OPT_ETA, 1));
    CD_ASSERT_OK(cd_sampler_set_int(b, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_set_int(b, CD_SAMPLER_OPT_STEPS, 200));
    CD_ASSERT_OK(cd_sampler_set_predictor(a, gauss_predict, &g));
    CD_ASSERT_OK(cd_sampler_set_predictor(b, gauss_predict, &g));
    CD_ASSERT_OK(cd_rng_create(&r1, 77));
    CD_ASSERT_OK(cd_rng_create(&r2, 77));
    cd_tensor *x = cd_test_tensor4(64, 1, 2, 2), *y = cd_test_tensor4(64, 1, 2, 2);
    CD_ASSERT_OK(cd_sampler_sample(a, r1, x));
    CD_ASSERT_OK(cd_sampler_sample(b, r2, y));
    const float d = max_abs_diff(x, y);
    fprintf(stderr, "DDIM(S=T, eta=1) vs DDPM(posterior): max |diff| %g\n", (double)d);
    ck_assert_msg(d < 1e-4f, "max |diff| %g", (double)d);
    cd_tensor_free(x);
    cd_tensor_free(y);
    cd_rng_free(r1);
    cd_rng_free(r2);
    cd_sampler_free(a);
    cd_sampler_free(b);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* With clipping on, the last DDIM step returns the clipped x0-hat. */
START_TEST(ddim_clipping)
{
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    static gauss g;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 100, 1e-4, 0.1));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, deg));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 10));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 0));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, gauss_predict, &g));
    cd_tensor *out = cd_test_tensor4(256, 1, 2, 2);
    const float *p = cd_tensor_data(out);
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    int outside = 0;
    for (int64_t i = 0; i < 1024; i++) outside += p[i] < -0.1f || p[i] > 0.1f;
    ck_assert_int_gt(outside, 100);
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_HI, 0.1));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, -0.1));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 1));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    for (int64_t i = 0; i < 1024; i++) ck_assert(p[i] >= -0.1f && p[i] <= 0.1f);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* ---- the DDIM step sequence ---------------------------------------------- */

START_TEST(step_formula)
{
    static const int64_t cases[][2] = {{1000, 50}, {1000, 1000}, {1000, 2}, {1000, 1}, {1000, 999},
                                       {1000, 3},  {4, 3},       {7, 4},    {100, 33}, {2, 2},
                                       {1, 1},     {2000, 1999}, {999, 7}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t T = cases[k][0], S = cases[k][1];
        ck_assert_int_eq(cd__sampler_step_time(T, S, 0), T);
        ck_assert_int_eq(cd__sampler_step_time(T, S, S - 1), S == 1 ? T : 1);
        for (int64_t i = 0; i < S; i++) {
            const int64_t t = cd__sampler_step_time(T, S, i);
            if (S > 1) {
                /* No tie is closer to a half-integer than 1/(2(S-1)) except an
                 * exact one, which double represents exactly, so double is a
                 * faithful independent reference here. */
                const double ref =
                    (double)T - floor((double)i * (double)(T - 1) / (double)(S - 1) + 0.5);
                ck_assert_int_eq(t, (int64_t)ref);
            }
            if (i > 0) ck_assert_int_lt(t, cd__sampler_step_time(T, S, i - 1));
        }
    }
    /* Hand-worked values: 999/49 = 20.39 -> 20 + ... and a tie (3/2 + 1/2). */
    ck_assert_int_eq(cd__sampler_step_time(1000, 50, 1), 980);
    ck_assert_int_eq(cd__sampler_step_time(1000, 50, 25), 490);
    ck_assert_int_eq(cd__sampler_step_time(4, 3, 1), 2);
    ck_assert_int_eq(cd__sampler_step_time(1000, 1000, 17), 983);
}
END_TEST

static cd_degradation *noise_deg(int64_t T)
{
    cd_schedule *sch = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, T, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&d, sch));
    cd_schedule_free(sch);
    return d;
}

static cd_degradation *blur_deg(int64_t T, cd_padding pad)
{
    cd_schedule *sch = NULL;
    cd_degradation *d = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&sch, T, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&d, sch, 11, pad));
    cd_schedule_free(sch);
    return d;
}

START_TEST(step_times_public)
{
    cd_degradation *nd = noise_deg(20), *bd = blur_deg(20, CD_PADDING_REFLECT);
    cd_sampler *s = NULL;
    int64_t t[32], n = -1;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 5));
    CD_ASSERT_OK(cd_sampler_step_times(s, 20, t, 32, &n));
    ck_assert_int_eq(n, 5);
    const int64_t want[5] = {20, 15, 10, 6, 1}; /* 19/4 = 4.75: 0, 5, 10, 14, 19 */
    for (int i = 0; i < 5; i++) ck_assert_int_eq(t[i], want[i]);
    CD_ASSERT_OK(cd_sampler_step_times(s, 3, t, 32, &n)); /* S' = min(S, t_start) */
    ck_assert_int_eq(n, 3);
    ck_assert(t[0] == 3 && t[1] == 2 && t[2] == 1);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 20, t, 2, &n), CD_ERR_SHAPE);
    ck_assert_int_eq(n, 5);
    ck_assert(t[0] == 20 && t[1] == 15);
    CD_ASSERT_OK(cd_sampler_step_times(s, 1, t, 1, &n));
    ck_assert(n == 1 && t[0] == 1);
    cd_sampler_free(s);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDPM, nd));
    CD_ASSERT_OK(cd_sampler_step_times(s, 12, t, 32, &n));
    ck_assert_int_eq(n, 12);
    for (int i = 0; i < 12; i++) ck_assert_int_eq(t[i], 12 - i);
    cd_sampler_free(s);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DIRECT, bd));
    CD_ASSERT_OK(cd_sampler_step_times(s, 9, t, 32, &n));
    ck_assert(n == 1 && t[0] == 9);
    cd_sampler_free(s);
    cd_degradation_free(nd);
    cd_degradation_free(bd);
}
END_TEST

/* The predictor sees tau = (float)t / T at exactly the listed times, the
 * same tau for every sample. */
typedef struct {
    int64_t calls;
    float tau[64];
    gauss *g;
} recorder;

static cd_status record_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                void *user)
{
    recorder *r = user;
    const float *tp = cd_tensor_data((cd_tensor *)tau);
    for (int64_t n = 1; n < cd_tensor_numel(tau); n++) ck_assert(tp[n] == tp[0]);
    ck_assert_int_lt(r->calls, 64);
    r->tau[r->calls++] = tp[0];
    return gauss_predict(z, tau, out, r->g);
}

START_TEST(predictor_times)
{
    static const int64_t S[3] = {20, 6, 1};
    static gauss g;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 20, 1e-4, 0.2));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    cd_tensor *out = cd_test_tensor4(3, 1, 2, 2);
    for (int k = 0; k < 4; k++) {
        cd_sampler *s = NULL;
        recorder r = {.g = &g};
        CD_ASSERT_OK(cd_sampler_create(&s, k < 3 ? CD_SAMPLER_DDIM : CD_SAMPLER_DDPM, deg));
        if (k < 3) CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, S[k]));
        CD_ASSERT_OK(cd_sampler_set_predictor(s, record_predict, &r));
        CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
        int64_t t[32], n = 0;
        CD_ASSERT_OK(cd_sampler_step_times(s, 20, t, 32, &n));
        ck_assert_int_eq(r.calls, n);
        for (int64_t i = 0; i < n; i++) ck_assert(r.tau[i] == (float)((double)t[i] / 20.0));
        cd_sampler_free(s);
    }
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* ---- the cold samplers ---------------------------------------------------- */

/* The exact clean-image predictor: it knows x. */
static cd_status oracle_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                void *user)
{
    (void)z;
    (void)tau;
    const cd_tensor *x = user;
    return cd_tensor_copy_from(out, cd_tensor_data((cd_tensor *)x), cd_tensor_numel(x));
}

/* x + 0.05 everywhere: a biased predictor. */
static cd_status biased_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                void *user)
{
    CD_ASSERT_OK(oracle_predict(z, tau, out, user));
    float *o = cd_tensor_data(out);
    for (int64_t i = 0; i < cd_tensor_numel(out); i++) o[i] += 0.05f;
    return CD_OK;
}

/* A restoration with the algorithm as written: x-hat not clipped, so that
 * the tests below see the predictor's own values. */
static cd_tensor *restore_clipped(cd_sampler_kind kind, cd_degradation *deg, cd_tensor *x,
                                  cd_predictor_fn fn, int64_t t_start, bool clip)
{
    cd_sampler *s = NULL;
    cd_tensor *out = cd_test_tensor4(cd_tensor_dim(x, 0), cd_tensor_dim(x, 1), cd_tensor_dim(x, 2),
                                     cd_tensor_dim(x, 3));
    CD_ASSERT_OK(cd_sampler_create(&s, kind, deg));
    if (!clip) CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, fn, x));
    CD_ASSERT_OK(cd_sampler_restore(s, x, t_start, NULL, out, NULL, 0, NULL, NULL, NULL));
    cd_sampler_free(s);
    return out;
}

static cd_tensor *restore_with(cd_sampler_kind kind, cd_degradation *deg, cd_tensor *x,
                               cd_predictor_fn fn, int64_t t_start)
{
    return restore_clipped(kind, deg, x, fn, t_start, false);
}

/* With x-hat = x, algorithm 2 telescopes to z_0 = D(x, T) - D(x, T) + x,
 * and algorithm 1 ends with D(x, 0) = x. The sampler recomputes D(x, t)
 * with the same blurs in the same order as the forward pass, so both agree
 * with x to the bit. */
START_TEST(cold_exact_predictor_recovers_x)
{
    for (int pad = 0; pad < 2; pad++) {
        cd_degradation *deg = blur_deg(30, (cd_padding)pad);
        cd_tensor *x = cd_test_tensor4(3, 2, 16, 12);
        cd_test_fill_uniform(x, 11, -0.5f, 0.5f);
        for (int kind = CD_SAMPLER_COLD1; kind <= CD_SAMPLER_COLD2; kind++) {
            cd_tensor *out = restore_with((cd_sampler_kind)kind, deg, x, oracle_predict, 30);
            const float d = max_abs_diff(out, x);
            ck_assert_msg(d == 0.0f, "kind %d padding %d: max |x - restored| = %g", kind, pad,
                          (double)d);
            cd_tensor_free(out);
        }
        cd_tensor_free(x);
        cd_degradation_free(deg);
    }
}
END_TEST

/* Algorithm 2 cancels a constant error of the predictor (a blur maps a
 * constant image to itself, so z_0 = x + e - D(e, T) = x); algorithm 1
 * returns the error as it is. This is why the report chose algorithm 2. */
START_TEST(cold2_cancels_constant_bias)
{
    cd_degradation *deg = blur_deg(25, CD_PADDING_REFLECT);
    cd_tensor *x = cd_test_tensor4(2, 1, 14, 14);
    cd_test_fill_uniform(x, 12, -0.5f, 0.5f);
    cd_tensor *a = restore_with(CD_SAMPLER_COLD2, deg, x, biased_predict, 25);
    cd_tensor *b = restore_with(CD_SAMPLER_COLD1, deg, x, biased_predict, 25);
    const float da = max_abs_diff(a, x), db = max_abs_diff(b, x);
    fprintf(stderr, "biased predictor (+0.05): cold2 error %g, cold1 error %g\n", (double)da,
            (double)db);
    ck_assert_msg(da < 1e-5f, "cold2: %g", (double)da);
    ck_assert(fabsf(db - 0.05f) < 1e-6f);
    cd_tensor_free(a);
    cd_tensor_free(b);
    cd_tensor_free(x);
    cd_degradation_free(deg);
}
END_TEST

/* z -> 2 z + tau: direct must return exactly g(z_{t_start}, t_start / T). */
static cd_status affine_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                void *user)
{
    (void)user;
    const float *zp = cd_tensor_data((cd_tensor *)z), *tp = cd_tensor_data((cd_tensor *)tau);
    const int64_t N = cd_tensor_dim(z, 0), D = cd_tensor_numel(z) / N;
    float *o = cd_tensor_data(out);
    for (int64_t i = 0; i < N * D; i++) o[i] = 2.0f * zp[i] + tp[i / D];
    return CD_OK;
}

/* By default every sampler that forms x-hat clips it to the data range
 * [-0.5, 0.5]: direct then returns clamp(2 z + tau). */
START_TEST(cold_clips_by_default)
{
    cd_degradation *deg = blur_deg(40, CD_PADDING_CIRCULAR);
    cd_tensor *x = cd_test_tensor4(2, 1, 12, 12), *z = cd_test_tensor4(2, 1, 12, 12);
    cd_test_fill_uniform(x, 13, -0.5f, 0.5f);
    cd_tensor *out = restore_clipped(CD_SAMPLER_DIRECT, deg, x, affine_predict, 40, true);
    CD_ASSERT_OK(cd_degradation_apply(deg, x, (int64_t[]){40, 40}, 2, NULL, z, NULL));
    const float *zp = cd_tensor_data(z), *o = cd_tensor_data(out);
    int clipped = 0;
    for (int64_t i = 0; i < 288; i++) {
        const float want = 2.0f * zp[i] + 1.0f;
        ck_assert(o[i] == (want > 0.5f ? 0.5f : want < -0.5f ? -0.5f : want));
        clipped += want > 0.5f;
    }
    ck_assert_int_gt(clipped, 0); /* the test reaches the clip */
    cd_sampler *s = NULL;
    double v = 0;
    int64_t iv = 0;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_COLD2, deg));
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_CLIP, &iv));
    ck_assert_int_eq(iv, 1);
    CD_ASSERT_OK(cd_sampler_get_real(s, CD_SAMPLER_OPT_CLIP_LO, &v));
    ck_assert(v == -0.5);
    CD_ASSERT_OK(cd_sampler_get_real(s, CD_SAMPLER_OPT_CLIP_HI, &v));
    ck_assert(v == 0.5);
    cd_sampler_free(s);
    cd_tensor_free(out);
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_degradation_free(deg);
}
END_TEST

/* DDIM's defaults: the measured best setting (50 steps, or T when smaller,
 * eta 1), clipped; the final z_0 is then x0-hat itself, in range whatever
 * the predictor says. */
static cd_status wild_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out, void *user)
{
    (void)user;
    (void)tau;
    (void)z;
    return cd_tensor_fill(out, 0.3f); /* a biased noise estimate */
}

/* CD_SAMPLER_OPT_REDERIVE: where the clip moved x0-hat, the step takes
 * eps = (z - sqrt(abar_t) x0-hat) / sqrt(1 - abar_t); elsewhere, and with
 * nothing clipped, the bits of the plain step. */
START_TEST(ddim_rederive)
{
    const int64_t T = 20, S = 3, n = 64;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, T, 1e-4, 0.2));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, deg));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, S));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 0));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, wild_predict, NULL));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_REDERIVE, 1));
    cd_tensor *out = cd_test_tensor4(n, 1, 2, 2), *plain = cd_test_tensor4(n, 1, 2, 2);
    const int64_t N = 4 * n;
    /* The reference: z_T is the generator's first N normals (eta 0 draws
     * nothing else), then each step by hand. */
    double *z = malloc((size_t)N * sizeof *z);
    float *zf = malloc((size_t)N * sizeof *zf);
    int64_t times[3];
    int64_t n_times = 0;
    CD_ASSERT_OK(cd_sampler_step_times(s, T, times, S, &n_times));
    ck_assert_int_eq(n_times, S);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_rng_normal(rng, zf, N));
    int clipped = 0;
    for (int64_t k = 0; k < S; k++) {
        float ab = 0, abp = 1, beta = 0;
        CD_ASSERT_OK(cd_schedule_at(sch, times[k], &beta, &ab));
        if (k + 1 < S) CD_ASSERT_OK(cd_schedule_at(sch, times[k + 1], &beta, &abp));
        const double sa = sqrt((double)ab), s1 = sqrt(1.0 - (double)ab), sap = sqrt((double)abp);
        const double q = sqrt(fmax(0.0, 1.0 - (double)abp));
        for (int64_t i = 0; i < N; i++) {
            double e = 0.3f, x0 = ((double)zf[i] - s1 * e) / sa;
            const double xc = fmin(fmax(x0, -0.5), 0.5);
            if (xc != x0) e = ((double)zf[i] - sa * xc) / s1, clipped++;
            z[i] = sap * xc + q * e;
            zf[i] = (float)z[i];
        }
    }
    ck_assert_int_gt(clipped, N); /* the clip is reached, often */
    cd_rng_free(rng);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    for (int64_t i = 0; i < N; i++)
        ck_assert_msg(fabs((double)cd_tensor_data(out)[i] - (double)zf[i]) <= 1e-6,
                      "element %lld: %.9g, by hand %.9g", (long long)i,
                      (double)cd_tensor_data(out)[i], (double)zf[i]);
    /* Without it, the same chain ends elsewhere. */
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_REDERIVE, 0));
    cd_rng_free(rng);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, plain));
    ck_assert(memcmp(cd_tensor_data(out), cd_tensor_data(plain), (size_t)N * sizeof(float)) != 0);
    /* With nothing clipped the option changes no bit. */
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, -1e30));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_HI, 1e30));
    cd_rng_free(rng);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, plain));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_REDERIVE, 1));
    cd_rng_free(rng);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    ck_assert(memcmp(cd_tensor_data(out), cd_tensor_data(plain), (size_t)N * sizeof(float)) == 0);
    free(z), free(zf);
    cd_tensor_free(out), cd_tensor_free(plain);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

START_TEST(ddim_defaults_stay_in_range)
{
    cd_degradation *nd = noise_deg(1000), *small = noise_deg(20);
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    double v = 0;
    int64_t steps = 0;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, small));
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, &steps));
    ck_assert_int_eq(steps, 20);
    cd_sampler_free(s);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, &steps));
    ck_assert_int_eq(steps, 50);
    CD_ASSERT_OK(cd_sampler_get_real(s, CD_SAMPLER_OPT_ETA, &v));
    ck_assert(v == 1.0);
    CD_ASSERT_OK(cd_sampler_set_predictor(s, wild_predict, NULL));
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    cd_tensor *out = cd_test_tensor4(16, 1, 4, 4);
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    const float *p = cd_tensor_data(out);
    for (int64_t i = 0; i < cd_tensor_numel(out); i++) ck_assert(p[i] >= -0.5f && p[i] <= 0.5f);
    /* Unclipped, the same predictor leaves the range far behind. */
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    float worst = 0.0f;
    for (int64_t i = 0; i < cd_tensor_numel(out); i++) worst = fmaxf(worst, fabsf(p[i]));
    ck_assert(worst > 1.0f);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(nd);
    cd_degradation_free(small);
}
END_TEST

/* Messages name the sampler, the key and the degradation. */
START_TEST(messages_name_keys)
{
    cd_degradation *nd = noise_deg(100), *bd = blur_deg(10, CD_PADDING_REFLECT);
    cd_sampler *s = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 5000), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("DDIM sampler");
    CD_ASSERT_ERROR_MENTIONS("steps = 5000");
    CD_ASSERT_ERROR_MENTIONS("T = 100");
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("eta = nan");
    cd_sampler_free(s);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DDPM, bd), CD_ERR_UNSUPPORTED);
    CD_ASSERT_ERROR_MENTIONS("the DDPM sampler needs the noise degradation, but the "
                             "degradation is blur");
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_COLD2, nd), CD_ERR_UNSUPPORTED);
    CD_ASSERT_ERROR_MENTIONS("the cold2 sampler needs a deterministic degradation");
    cd_degradation_free(nd);
    cd_degradation_free(bd);
}
END_TEST

START_TEST(direct_returns_prediction)
{
    cd_degradation *deg = blur_deg(40, CD_PADDING_CIRCULAR);
    cd_tensor *x = cd_test_tensor4(2, 1, 12, 12), *z = cd_test_tensor4(2, 1, 12, 12);
    cd_test_fill_uniform(x, 13, -0.5f, 0.5f);
    for (int64_t ts = 40; ts >= 17; ts -= 23) {
        cd_tensor *out = restore_with(CD_SAMPLER_DIRECT, deg, x, affine_predict, ts);
        CD_ASSERT_OK(cd_degradation_apply(deg, x, (int64_t[]){ts, ts}, 2, NULL, z, NULL));
        const float *zp = cd_tensor_data(z), *o = cd_tensor_data(out);
        const float tau = (float)((double)ts / 40.0);
        for (int64_t i = 0; i < 288; i++) ck_assert(o[i] == 2.0f * zp[i] + tau);
        cd_tensor_free(out);
    }
    cd_tensor_free(x);
    cd_tensor_free(z);
    cd_degradation_free(deg);
}
END_TEST

static cd_status identity_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                  void *user)
{
    (void)user;
    (void)tau;
    return cd_tensor_copy_from(out, cd_tensor_data((cd_tensor *)z), cd_tensor_numel(z));
}

/* The blur prior, seen through direct with the identity: per-sample
 * levels ~ N(mu, s^2) and pixels jittered by N(0, jitter^2). With 2000
 * samples of 8 x 8, the level mean and std are checked to 5 SE
 * (s/sqrt(N) and s/sqrt(2N)), the within-image std to 2%. */
START_TEST(blur_prior)
{
    enum { N = 2000, D = 64 };
    cd_degradation *deg = blur_deg(10, CD_PADDING_REFLECT);
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DIRECT, deg));
    double mean, sd, jit;
    CD_ASSERT_OK(cd_degradation_get_prior(deg, &mean, &sd, &jit, NULL));
    ck_assert(mean == -0.36 && sd == 0.05 && jit == 0.002);
    CD_ASSERT_OK(cd_degradation_set_prior(deg, 0.2, 0.1, 0.01));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, identity_predict, NULL));
    CD_ASSERT_OK(cd_rng_create(&rng, 21));
    cd_tensor *out = cd_test_tensor4(N, 1, 8, 8);
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    const float *p = cd_tensor_data(out);
    double lm = 0, lv = 0, wv = 0, level[N];
    for (int n = 0; n < N; n++) {
        level[n] = 0;
        for (int i = 0; i < D; i++) level[n] += p[n * D + i] / D;
        for (int i = 0; i < D; i++) wv += (p[n * D + i] - level[n]) * (p[n * D + i] - level[n]);
        lm += level[n] / N;
    }
    for (int n = 0; n < N; n++) lv += (level[n] - lm) * (level[n] - lm) / (N - 1);
    wv /= (double)N * (D - 1);
    ck_assert_msg(fabs(lm - 0.2) < 5 * 0.1 / sqrt(N), "level mean %g", lm);
    ck_assert_msg(fabs(sqrt(lv) - 0.1) < 5 * 0.1 / sqrt(2.0 * N), "level std %g", sqrt(lv));
    ck_assert_msg(fabs(sqrt(wv) - 0.01) < 2e-4, "jitter %g", sqrt(wv));
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
}
END_TEST

/* ---- conditional snapshots ------------------------------------------------ */

/* Cold 2 with the exact predictor: the chain passes through z_t = D(x, t)
 * exactly, x-hat = x, and the forward snapshots are D(x, t_v). */
START_TEST(snapshots_cold)
{
    const int64_t times[4] = {15, 7, 0, 3}, nv = 4;
    cd_degradation *deg = blur_deg(20, CD_PADDING_REFLECT);
    cd_sampler *s = NULL;
    cd_tensor *x = cd_test_tensor4(2, 1, 12, 12), *out = cd_test_tensor4(2, 1, 12, 12);
    cd_tensor *ref = cd_test_tensor4(2, 1, 12, 12);
    cd_test_fill_uniform(x, 14, -0.5f, 0.5f);
    cd_tensor *sz = tensor5(nv, x), *sx = tensor5(nv, x), *sf = tensor5(nv, x);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_COLD2, deg));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, oracle_predict, x));
    CD_ASSERT_OK(cd_sampler_restore(s, x, 15, NULL, out, times, nv, sz, sx, sf));
    const int64_t B = 2 * 144;
    for (int64_t v = 0; v < nv; v++) {
        CD_ASSERT_OK(
            cd_degradation_apply(deg, x, (int64_t[]){times[v], times[v]}, 2, NULL, ref, NULL));
        const float *r = cd_tensor_data(ref), *xp = cd_tensor_data(x);
        for (int64_t i = 0; i < B; i++) {
            ck_assert(cd_tensor_data(sz)[v * B + i] == r[i]);
            ck_assert(cd_tensor_data(sf)[v * B + i] == r[i]);
            ck_assert(cd_tensor_data(sx)[v * B + i] == xp[i]);
        }
    }
    ck_assert(max_abs_diff(out, x) == 0.0f);
    cd_tensor_free(sz);
    cd_tensor_free(sx);
    cd_tensor_free(sf);
    cd_tensor_free(ref);
    cd_tensor_free(x);
    cd_tensor_free(out);
    cd_sampler_free(s);
    cd_degradation_free(deg);
}
END_TEST

/* Records every z the predictor sees (one batch each, up to 8). */
typedef struct {
    gauss *g;
    int64_t calls, T;
    float z[8][8], tau[8];
} z_recorder;

static cd_status zrec_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out, void *user)
{
    z_recorder *r = user;
    ck_assert_int_lt(r->calls, 8);
    CD_ASSERT_OK(cd_tensor_copy_to(z, r->z[r->calls], 8));
    r->tau[r->calls++] = cd_tensor_data((cd_tensor *)tau)[0];
    return gauss_predict(z, tau, out, r->g);
}

/*
 * DDIM (T = 20, S = 5: times 20, 15, 10, 6, 1) restoring from 20 with
 * snapshots at 20, 12 (not visited: records 10), 6, 0:
 *   - snap_z is the z the predictor was given at the recorded time, and the
 *     result at 0; snap_xhat is (z - sqrt(1 - abar) eps-hat)/sqrt(abar);
 *   - asking for snapshots does not change out (same seed);
 *   - snap_fwd is D(x, t_v) with noise drawn after the chain: the
 *     generator, left where the snapshot-free run leaves it, reproduces it.
 */
START_TEST(snapshots_ddim_noise)
{
    const int64_t times[4] = {20, 12, 6, 0}, at[4] = {20, 10, 6, 0}, nv = 4;
    static gauss g;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_rng *r1 = NULL, *r2 = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 20, 1e-3, 0.2));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, deg));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 5));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 0.5));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    cd_tensor *x = cd_test_tensor4(2, 1, 2, 2), *out = cd_test_tensor4(2, 1, 2, 2),
              *out2 = cd_test_tensor4(2, 1, 2, 2);
    cd_tensor *fwd = cd_test_tensor4(2, 1, 2, 2);
    cd_test_fill_uniform(x, 15, -0.5f, 0.5f);
    cd_tensor *sz = tensor5(nv, x), *sx = tensor5(nv, x), *sf = tensor5(nv, x);
    z_recorder rec = {.g = &g, .T = 20};
    CD_ASSERT_OK(cd_sampler_set_predictor(s, zrec_predict, &rec));
    CD_ASSERT_OK(cd_rng_create(&r1, 8));
    CD_ASSERT_OK(cd_sampler_restore(s, x, 20, r1, out, times, nv, sz, sx, sf));
    ck_assert_int_eq(rec.calls, 5);
    const int64_t visited[5] = {20, 15, 10, 6, 1};
    for (int v = 0; v < 4; v++) {
        const float *zs = cd_tensor_data(sz) + v * 8, *xs = cd_tensor_data(sx) + v * 8;
        if (at[v] == 0) {
            for (int i = 0; i < 8; i++) ck_assert(zs[i] == cd_tensor_data(out)[i]);
            for (int i = 0; i < 8; i++) ck_assert(xs[i] == cd_tensor_data(out)[i]);
            continue;
        }
        int k = 0;
        while (visited[k] != at[v]) k++;
        ck_assert(rec.tau[k] == (float)(at[v] / 20.0));
        const double a = g.abar[at[v]];
        const double c = sqrt(1.0 - a) / (a * g.v + 1.0 - a);
        for (int i = 0; i < 8; i++) {
            ck_assert(zs[i] == rec.z[k][i]);
            const double e = (float)(c * (rec.z[k][i] - sqrt(a) * g.m[i % GD]));
            const double x0 = (rec.z[k][i] - sqrt(1.0 - a) * e) / sqrt(a);
            ck_assert_msg(fabs(xs[i] - x0) <= 1e-6 * fmax(1.0, fabs(x0)), "x-hat %g vs %g",
                          (double)xs[i], x0);
        }
    }
    /* The same run without snapshots gives the same out ... */
    rec.calls = 0;
    CD_ASSERT_OK(cd_rng_create(&r2, 8));
    CD_ASSERT_OK(cd_sampler_restore(s, x, 20, r2, out2, NULL, 0, NULL, NULL, NULL));
    ck_assert(same_bits(out, out2));
    /* ... and leaves the generator where the forward snapshots start. */
    for (int v = 0; v < 4; v++) {
        CD_ASSERT_OK(
            cd_degradation_apply(deg, x, (int64_t[]){times[v], times[v]}, 2, r2, fwd, NULL));
        ck_assert(memcmp(cd_tensor_data(fwd), cd_tensor_data(sf) + v * 8, 32) == 0);
    }
    /* Independent of the chain: D(x, 20) is not the chain's z_20. */
    ck_assert(memcmp(cd_tensor_data(sf), cd_tensor_data(sz), 32) != 0);
    cd_tensor_free(sz);
    cd_tensor_free(sx);
    cd_tensor_free(sf);
    cd_tensor_free(x);
    cd_tensor_free(out);
    cd_tensor_free(out2);
    cd_tensor_free(fwd);
    cd_rng_free(r1);
    cd_rng_free(r2);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* DDPM snapshots: x-hat at t from the noise prediction, z_t at every t. */
START_TEST(snapshots_ddpm_shapes)
{
    const int64_t times[2] = {5, 1};
    static gauss g;
    cd_schedule *sch = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&sch, 8, 1e-3, 0.2));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, sch));
    gauss_init(&g, sch, 0.09);
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDPM, deg));
    z_recorder rec = {.g = &g, .T = 8};
    CD_ASSERT_OK(cd_sampler_set_predictor(s, zrec_predict, &rec));
    cd_tensor *x = cd_test_tensor4(2, 1, 2, 2), *out = cd_test_tensor4(2, 1, 2, 2);
    cd_test_fill_uniform(x, 16, -0.5f, 0.5f);
    cd_tensor *sx = tensor5(2, x), *sz = tensor5(2, x);
    CD_ASSERT_OK(cd_rng_create(&rng, 4));
    CD_ASSERT_OK(cd_sampler_restore(s, x, 6, rng, out, times, 2, sz, sx, NULL));
    ck_assert_int_eq(rec.calls, 6); /* t = 6..1 */
    for (int v = 0; v < 2; v++) {
        const int k = (int)(6 - times[v]);
        const double a = g.abar[times[v]], c = sqrt(1.0 - a) / (a * g.v + 1.0 - a);
        for (int i = 0; i < 8; i++) {
            ck_assert(cd_tensor_data(sz)[v * 8 + i] == rec.z[k][i]);
            const double e = (float)(c * (rec.z[k][i] - sqrt(a) * g.m[i % GD]));
            const double x0 = (rec.z[k][i] - sqrt(1.0 - a) * e) / sqrt(a);
            ck_assert(fabs(cd_tensor_data(sx)[v * 8 + i] - x0) <= 1e-6 * fmax(1.0, fabs(x0)));
        }
    }
    cd_tensor_free(sx);
    cd_tensor_free(sz);
    cd_tensor_free(x);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_schedule_free(sch);
}
END_TEST

/* ---- determinism ---------------------------------------------------------- */

static cd_decoder *small_cnn(int64_t H, int64_t W)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){4, 4}, 2));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, H));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, W));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_FREQS, 4));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 8));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 2));
    CD_ASSERT_OK(cd_rng_create(&rng, 99));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

/* One sample of each kind with a seeded generator, driven by a decoder. */
static cd_tensor *run_kind(cd_sampler_kind kind, cd_decoder *dec, uint64_t seed)
{
    cd_degradation *deg =
        kind <= CD_SAMPLER_DDIM ? noise_deg(12) : blur_deg(12, CD_PADDING_REFLECT);
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, kind, deg));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 5));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 0.7));
    CD_ASSERT_OK(cd_sampler_set_decoder(s, dec));
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    cd_tensor *out = cd_test_tensor4(5, 1, 12, 12);
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    return out;
}

START_TEST(deterministic_and_thread_independent)
{
    cd_decoder *dec = small_cnn(12, 12);
    for (int kind = CD_SAMPLER_DDPM; kind <= CD_SAMPLER_DIRECT; kind++) {
        CD_ASSERT_OK(cd_set_num_threads(1));
        cd_tensor *a = run_kind((cd_sampler_kind)kind, dec, 31);
        cd_tensor *b = run_kind((cd_sampler_kind)kind, dec, 31);
        CD_ASSERT_OK(cd_set_num_threads(2));
        cd_tensor *c = run_kind((cd_sampler_kind)kind, dec, 31);
        cd_tensor *d = run_kind((cd_sampler_kind)kind, dec, 32);
        ck_assert_msg(same_bits(a, b), "kind %d: same seed differs", kind);
        ck_assert_msg(same_bits(a, c), "kind %d: 1 vs 2 threads differ", kind);
        ck_assert_msg(!same_bits(a, d), "kind %d: the seed is ignored", kind);
        const float *p = cd_tensor_data(a);
        for (int64_t i = 0; i < cd_tensor_numel(a); i++) ck_assert(isfinite(p[i]));
        cd_tensor_free(a);
        cd_tensor_free(b);
        cd_tensor_free(c);
        cd_tensor_free(d);
    }
    cd_decoder_free(dec);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

START_TEST(errors_create_and_options)
{
    cd_degradation *nd = noise_deg(10), *bd = blur_deg(10, CD_PADDING_REFLECT);
    cd_sampler *s = (cd_sampler *)&s;
    CD_ASSERT_STATUS(cd_sampler_create(NULL, CD_SAMPLER_DDPM, nd), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DDPM, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(s);
    CD_ASSERT_STATUS(cd_sampler_create(&s, (cd_sampler_kind)5, nd), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_create(&s, (cd_sampler_kind)-1, nd), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DDPM, bd), CD_ERR_UNSUPPORTED);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DDIM, bd), CD_ERR_UNSUPPORTED);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_COLD2, nd), CD_ERR_UNSUPPORTED);
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DIRECT, nd), CD_ERR_UNSUPPORTED);
    /* beta = 1 makes sqrt(1 - beta) zero: refused by the noise samplers. */
    cd_schedule *sch = NULL;
    cd_degradation *bad = NULL;
    CD_ASSERT_OK(cd_schedule_create_custom(&sch, (float[]){0.1f, 1.0f, 0.1f}, 3));
    CD_ASSERT_OK(cd_degradation_create_noise(&bad, sch));
    CD_ASSERT_STATUS(cd_sampler_create(&s, CD_SAMPLER_DDPM, bad), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("t = 2");
    cd_degradation_free(bad);
    cd_schedule_free(sch);
    cd_clear_error();
    ck_assert_int_eq(cd_sampler_get_kind(NULL), CD_SAMPLER_INVALID);
    ck_assert_int_eq(CD_SAMPLER_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_sampler_free(NULL);

    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    ck_assert_int_eq(cd_sampler_get_kind(s), CD_SAMPLER_DDIM);
    cd_option_info info;
    int64_t v;
    /* The description is the key's, not the sampler's: steps is bounded by
     * the degradation's T when set. */
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_STEPS, &info));
    ck_assert(info.lo == 1 && info.hi >= 10);
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, &v));
    ck_assert_int_eq(v, 10);
    CD_ASSERT_STATUS(cd_sampler_option_info(CD_SAMPLER_OPT_ETA, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_option_info((cd_sampler_option)8, &info), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_real(NULL, CD_SAMPLER_OPT_ETA, 0.5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, (cd_sampler_option)-1, 0.5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, (cd_sampler_option)-1, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, INFINITY), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 1.5), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, -0.1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 11), CD_ERR_RANGE);
    /* A fraction can only come through the real call: refused as the
     * wrong type. */
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_STEPS, 2.5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP, 0.5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, 1e39), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, &v));
    ck_assert_int_eq(v, 10); /* failed sets changed nothing */
    CD_ASSERT_STATUS(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_get_int(NULL, CD_SAMPLER_OPT_STEPS, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_get_int(s, (cd_sampler_option)42, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_decoder(NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_set_predictor(NULL, identity_predict, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    int64_t t[4], n;
    CD_ASSERT_STATUS(cd_sampler_step_times(NULL, 5, t, 4, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 5, t, 4, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 5, NULL, 4, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 5, t, -1, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 0, t, 4, &n), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 11, t, 4, &n), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_step_times(s, 10, NULL, 0, &n), CD_ERR_SHAPE);
    ck_assert_int_eq(n, 10);
    cd_sampler_free(s);
    cd_degradation_free(nd);
    cd_degradation_free(bd);
}
END_TEST

START_TEST(errors_sample)
{
    cd_degradation *nd = noise_deg(10), *bd = blur_deg(10, CD_PADDING_REFLECT);
    cd_sampler *s = NULL, *b = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    cd_tensor *out = cd_test_tensor4(2, 1, 2, 2), *r3 = NULL;
    CD_ASSERT_OK(cd_tensor_create(&r3, 3, (int64_t[]){2, 2, 2}));
    CD_ASSERT_STATUS(cd_sampler_sample(NULL, rng, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_STATE);
    CD_ASSERT_ERROR_MENTIONS("predictor");
    CD_ASSERT_OK(cd_sampler_set_predictor(s, identity_predict, NULL));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_sample(s, NULL, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, r3), CD_ERR_SHAPE);
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, 0.5));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_HI, 0.25));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out)); /* clip off: the range is not used */
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 1));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_sampler_set_predictor(s, NULL, NULL));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_STATE);
    CD_ASSERT_OK(cd_sampler_set_decoder(s, NULL));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_STATE);

    /* The blur's plane limits, checked before anything runs. */
    CD_ASSERT_OK(cd_sampler_create(&b, CD_SAMPLER_COLD2, bd));
    CD_ASSERT_OK(cd_sampler_set_predictor(b, identity_predict, NULL));
    cd_tensor *tiny = cd_test_tensor4(1, 1, 4, 4), *huge = cd_test_tensor4(1, 1, 129, 129);
    CD_ASSERT_STATUS(cd_sampler_sample(b, rng, tiny), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_sampler_sample(b, rng, huge), CD_ERR_UNSUPPORTED);
    CD_ASSERT_STATUS(cd_sampler_sample(b, NULL, out), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(tiny);
    cd_tensor_free(huge);
    cd_tensor_free(out);
    cd_tensor_free(r3);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_sampler_free(b);
    cd_degradation_free(nd);
    cd_degradation_free(bd);
}
END_TEST

START_TEST(errors_restore)
{
    cd_degradation *nd = noise_deg(10), *bd = blur_deg(10, CD_PADDING_REFLECT);
    cd_sampler *s = NULL, *b = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDPM, nd));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, identity_predict, NULL));
    cd_tensor *x = cd_test_tensor4(2, 1, 6, 6), *out = cd_test_tensor4(2, 1, 6, 6),
              *wrong = cd_test_tensor4(3, 1, 6, 6);
    cd_tensor *s1 = tensor5(2, x), *s2 = tensor5(2, x), *s3 = tensor5(3, x);
    cd_test_fill_uniform(x, 2, -0.5f, 0.5f);
    const int64_t tv[2] = {3, 0}, bad_hi[2] = {3, 6}, bad_lo[2] = {-1, 0};
    CD_ASSERT_STATUS(cd_sampler_restore(s, NULL, 5, rng, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, NULL, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, wrong, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, x, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, NULL, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 0, rng, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 11, rng, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, -1, NULL, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, NULL, 2, s1, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, bad_hi, 2, s1, NULL, NULL),
                     CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("snap_times[1]");
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, bad_lo, 2, s1, NULL, NULL),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, 2, s3, NULL, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, 2, NULL, x, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, 0, s1, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, 2, s1, s1, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, tv, 2, s1, NULL, s1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_sampler_restore(s, x, 5, rng, out, tv, 2, s1, s2, NULL));
    CD_ASSERT_OK(cd_sampler_restore(s, x, 5, rng, out, tv, 2, NULL, NULL, NULL));
    cd_tensor_data(x)[7] = NAN;
    CD_ASSERT_STATUS(cd_sampler_restore(s, x, 5, rng, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("cd_sampler_restore: x[7] is nan");
    /* Without a predictor. */
    CD_ASSERT_OK(cd_sampler_create(&b, CD_SAMPLER_COLD1, bd));
    CD_ASSERT_STATUS(cd_sampler_restore(b, x, 5, NULL, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_STATE);
    cd_tensor_free(x);
    cd_tensor_free(out);
    cd_tensor_free(wrong);
    cd_tensor_free(s1);
    cd_tensor_free(s2);
    cd_tensor_free(s3);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_sampler_free(b);
    cd_degradation_free(nd);
    cd_degradation_free(bd);
}
END_TEST

/* Misbehaving predictors: a failure (with and without its own message), a
 * status that is not a cd_status, a NaN, a reshaped output. */
static int64_t fail_after;

static cd_status failing_predict(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                 void *user)
{
    const int mode = *(const int *)user;
    if (fail_after-- > 0) return identity_predict(z, tau, out, NULL);
    switch (mode) {
    case 0: return cd_tensor_copy_from(out, NULL, 3); /* fails with its message */
    case 1: return CD_ERR_CANCELLED;                  /* fails silently */
    case 2: return (cd_status)7;
    case 3: cd_tensor_data(out)[1] = NAN; return CD_OK;
    default: return cd_tensor_reshape(out, 2, (int64_t[]){2, 4});
    }
}

START_TEST(errors_predictor)
{
    static const cd_status want[5] = {CD_ERR_INVALID_ARGUMENT, CD_ERR_CANCELLED,
                                      CD_ERR_INVALID_ARGUMENT, CD_ERR_NOT_FINITE, CD_ERR_SHAPE};
    cd_degradation *nd = noise_deg(10);
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDPM, nd));
    cd_tensor *out = cd_test_tensor4(2, 1, 2, 2);
    for (int mode = 0; mode < 5; mode++) {
        CD_ASSERT_OK(cd_sampler_set_predictor(s, failing_predict, &mode));
        fail_after = 3;
        CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), want[mode]);
        CD_ASSERT_ERROR_MENTIONS("cd_sampler_sample");
        CD_ASSERT_ERROR_MENTIONS("t = 7");
        if (mode == 0) CD_ASSERT_ERROR_MENTIONS("cd_tensor_copy_from");
    }
    /* A decoder's own error passes through: the CNN is built for 8 x 8. */
    cd_decoder *dec = small_cnn(8, 8);
    CD_ASSERT_OK(cd_sampler_set_decoder(s, dec));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("t = 10");
    /* A successful run leaves the caller's last error as it was. */
    CD_ASSERT_OK(cd_sampler_set_predictor(s, identity_predict, NULL));
    cd_clear_error();
    ck_assert_int_eq(cd_tensor_fill(NULL, 0.0f), CD_ERR_INVALID_ARGUMENT);
    char before[256];
    snprintf(before, sizeof before, "%s", cd_last_error());
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    ck_assert_str_eq(cd_last_error(), before);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_decoder_free(dec);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_degradation_free(nd);
}
END_TEST

/* The progress callback sees every step in order with the chain's length,
 * and a non-OK return stops the chain at once with that status. */
typedef struct {
    int64_t calls, last_step, steps, stop_at;
    cd_status stop_with;
} progress_log;

static cd_status log_progress(int64_t step, int64_t steps, void *user)
{
    progress_log *p = user;
    ck_assert_int_eq(step, p->last_step + 1);
    p->calls++, p->last_step = step, p->steps = steps;
    return step == p->stop_at ? p->stop_with : CD_OK;
}

START_TEST(progress_and_cancel)
{
    cd_degradation *nd = noise_deg(20), *bd = blur_deg(12, CD_PADDING_REFLECT);
    cd_sampler *s = NULL, *c = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 7));
    CD_ASSERT_OK(cd_sampler_set_predictor(s, identity_predict, NULL));
    cd_tensor *out = cd_test_tensor4(2, 1, 8, 8), *x = cd_test_tensor4(2, 1, 8, 8);
    progress_log log = {0, 0, 0, -1, CD_OK};
    CD_ASSERT_OK(cd_sampler_set_progress(s, log_progress, &log));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    ck_assert_int_eq(log.calls, 7);
    ck_assert_int_eq(log.steps, 7);
    /* Cancelled after step 3: the status comes back, naming the step. */
    log = (progress_log){0, 0, 0, 3, CD_ERR_CANCELLED};
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_CANCELLED);
    ck_assert_int_eq(log.calls, 3);
    CD_ASSERT_ERROR_MENTIONS("cd_sampler_sample");
    CD_ASSERT_ERROR_MENTIONS("after step 3 of 7");
    /* A value that is no cd_status is refused as such. */
    log = (progress_log){0, 0, 0, 1, (cd_status)5};
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("not a cd_status");
    /* Restoration from t_start = 6 on a cold chain: six steps. */
    CD_ASSERT_OK(cd_sampler_create(&c, CD_SAMPLER_COLD2, bd));
    CD_ASSERT_OK(cd_sampler_set_predictor(c, identity_predict, NULL));
    log = (progress_log){0, 0, 0, -1, CD_OK};
    CD_ASSERT_OK(cd_sampler_set_progress(c, log_progress, &log));
    CD_ASSERT_OK(cd_sampler_restore(c, x, 6, rng, out, NULL, 0, NULL, NULL, NULL));
    ck_assert_int_eq(log.calls, 6);
    ck_assert_int_eq(log.steps, 6);
    /* Removed, it is called no more; a NULL sampler is an error. */
    CD_ASSERT_OK(cd_sampler_set_progress(c, NULL, &log));
    log.calls = 0;
    CD_ASSERT_OK(cd_sampler_restore(c, x, 6, rng, out, NULL, 0, NULL, NULL, NULL));
    ck_assert_int_eq(log.calls, 0);
    CD_ASSERT_STATUS(cd_sampler_set_progress(NULL, log_progress, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(x);
    cd_tensor_free(out);
    cd_rng_free(rng);
    cd_sampler_free(c);
    cd_sampler_free(s);
    cd_degradation_free(bd);
    cd_degradation_free(nd);
}
END_TEST

/* The options model on samplers: each key's description and the default a
 * fresh sampler holds, typed calls refusing the other type, non-finite
 * reals, values out of range and bools past 1, each failure keeping the
 * old value. */
START_TEST(options_model)
{
    cd_option_info info;
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_STEPS, &info));
    CD_ASSERT_OPTION_INFO(info, "steps", CD_OPTION_INT, -1, 50);
    ck_assert(info.lo == 1 && !info.lo_open);
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_ETA, &info));
    CD_ASSERT_OPTION_INFO(info, "eta", CD_OPTION_REAL, -1, 1);
    ck_assert(info.lo == 0 && info.hi == 1 && !info.lo_open && !info.hi_open);
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_POSTERIOR_VARIANCE, &info));
    CD_ASSERT_OPTION_INFO(info, "posterior_variance", CD_OPTION_BOOL, -1, 0);
    ck_assert(info.lo == 0 && info.hi == 1);
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_CLIP, &info));
    CD_ASSERT_OPTION_INFO(info, "clip", CD_OPTION_BOOL, -1, 1);
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_CLIP_LO, &info));
    CD_ASSERT_OPTION_INFO(info, "clip_lo", CD_OPTION_REAL, -1, -0.5);
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_CLIP_HI, &info));
    CD_ASSERT_OPTION_INFO(info, "clip_hi", CD_OPTION_REAL, -1, 0.5);
    CD_ASSERT_STATUS(cd_sampler_option_info((cd_sampler_option)8, &info), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_option_info((cd_sampler_option)-1, &info), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_option_info((cd_sampler_option)1000, &info),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_option_info(CD_SAMPLER_OPT_STEPS, NULL), CD_ERR_INVALID_ARGUMENT);

    /* A fresh sampler (T = 1000, so steps is not cut to T) holds every
     * default; each key answers only the calls of its type. */
    cd_degradation *nd = noise_deg(1000);
    cd_sampler *s = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, nd));
    int64_t iv = -7;
    double rv = -7;
    for (int k = CD_SAMPLER_OPT_STEPS; k <= CD_SAMPLER_OPT_CLIP_HI; k++) {
        const cd_sampler_option key = (cd_sampler_option)k;
        CD_ASSERT_OK(cd_sampler_option_info(key, &info));
        if (info.type == CD_OPTION_REAL) {
            CD_ASSERT_OK(cd_sampler_get_real(s, key, &rv));
            ck_assert_msg(rv == info.default_value, "%s = %g", info.name, rv);
            CD_ASSERT_STATUS(cd_sampler_get_int(s, key, &iv), CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_STATUS(cd_sampler_set_int(s, key, 0), CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_STATUS(cd_sampler_set_real(s, key, NAN), CD_ERR_NOT_FINITE);
            CD_ASSERT_STATUS(cd_sampler_set_real(s, key, INFINITY), CD_ERR_NOT_FINITE);
            CD_ASSERT_OK(cd_sampler_get_real(s, key, &rv));
            ck_assert(rv == info.default_value);
        } else {
            CD_ASSERT_OK(cd_sampler_get_int(s, key, &iv));
            ck_assert_msg((double)iv == info.default_value, "%s = %lld", info.name, (long long)iv);
            CD_ASSERT_STATUS(cd_sampler_get_real(s, key, &rv), CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_STATUS(cd_sampler_set_real(s, key, 1.0), CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_OK(cd_sampler_get_int(s, key, &iv));
            ck_assert((double)iv == info.default_value);
        }
    }
    /* Set, then fail at each: the values stay. */
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 20));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 0.25));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 0));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, 1));
    CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, -2.0));
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_STEPS, 30.0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("steps");
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_ETA, 0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("eta");
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_CLIP_LO, -INFINITY), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 1.0000001), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 1001), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_CLIP, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(s, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_int(NULL, CD_SAMPLER_OPT_STEPS, 5), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_get_real(NULL, CD_SAMPLER_OPT_ETA, &rv), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_sampler_get_real(s, CD_SAMPLER_OPT_ETA, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_STEPS, &iv));
    ck_assert_int_eq(iv, 20);
    CD_ASSERT_OK(cd_sampler_get_real(s, CD_SAMPLER_OPT_ETA, &rv));
    ck_assert(rv == 0.25);
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_CLIP, &iv));
    ck_assert_int_eq(iv, 0);
    CD_ASSERT_OK(cd_sampler_get_int(s, CD_SAMPLER_OPT_POSTERIOR_VARIANCE, &iv));
    ck_assert_int_eq(iv, 1);
    CD_ASSERT_OK(cd_sampler_get_real(s, CD_SAMPLER_OPT_CLIP_LO, &rv));
    ck_assert(rv == -2.0);
    cd_sampler_free(s);
    cd_degradation_free(nd);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *math = tcase_create("maths");
    tcase_set_timeout(math, 120);
    tcase_add_test(math, ddpm_gaussian_beta);
    tcase_add_test(math, ddpm_gaussian_posterior);
    tcase_add_test(math, ddim_gaussian_50_eta0);
    tcase_add_test(math, ddim_gaussian_50_eta1);
    tcase_add_test(math, ddim_gaussian_T_eta0);
    tcase_add_test(math, ddim_gaussian_T_eta1);
    tcase_add_test(math, ddim_bias_shrinks_with_steps);
    tcase_add_test(math, ddim_eta1_is_ddpm_posterior);
    tcase_add_test(math, ddim_clipping);
    tcase_add_test(math, ddim_rederive);
    tcase_add_test(math, cold_exact_predictor_recovers_x);
    tcase_add_test(math, cold2_cancels_constant_bias);
    tcase_add_test(math, direct_returns_prediction);
    tcase_add_test(math, cold_clips_by_default);
    tcase_add_test(math, ddim_defaults_stay_in_range);
    tcase_add_test(math, blur_prior);
    suite_add_tcase(s, math);
    TCase *api = tcase_create("api");
    tcase_set_timeout(api, 60);
    tcase_add_test(api, step_formula);
    tcase_add_test(api, step_times_public);
    tcase_add_test(api, predictor_times);
    tcase_add_test(api, snapshots_cold);
    tcase_add_test(api, snapshots_ddim_noise);
    tcase_add_test(api, snapshots_ddpm_shapes);
    tcase_add_test(api, deterministic_and_thread_independent);
    tcase_add_test(api, errors_create_and_options);
    tcase_add_test(api, errors_sample);
    tcase_add_test(api, errors_restore);
    tcase_add_test(api, errors_predictor);
    tcase_add_test(api, progress_and_cancel);
    tcase_add_test(api, messages_name_keys);
    tcase_add_test(api, options_model);
    suite_add_tcase(s, api);
    return s;
}

CD_TEST_MAIN(make_suite)
