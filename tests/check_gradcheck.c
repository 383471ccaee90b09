/*
 * check_gradcheck.c - the gradient checker itself: it must pass a correct
 * gradient whose forward carries rounding-like noise of any size it can
 * resolve, and fail a wrong one, a non-accumulating backward, a non-finite
 * gradient and an input too noisy to check.
 *
 * The op is out[i] = tanh(a[i]) * b[i % M] + noise, evaluated in double, so
 * without noise the finite differences are exact to ~1e-12. The noise
 * stands in for float32 rounding: a pseudo-random function of the inputs'
 * bits, of relative size `noise`, as different BLAS kernels and code paths
 * produce.
 */
#include "test_util.h"

#include <math.h>

#include "gradcheck.h"

#define N 48
#define M 6

typedef struct {
    float a[N], b[M], da[N], db[M], out[N], dout[N];
    double noise;      /* relative size of the forward's pseudo-rounding */
    double scale_db;   /* a wrong gradient: db times this */
    int64_t bad_index; /* a wrong gradient: da[bad_index] doubled (-1: none) */
    bool overwrite;    /* a wrong backward: = instead of += */
    bool nan_grad;
} toy;

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static void toy_forward(void *ctx)
{
    toy *t = ctx;
    uint64_t h = 0;
    for (int i = 0; i < N; i++) h = mix(h ^ bits(t->a[i]));
    for (int j = 0; j < M; j++) h = mix(h ^ bits(t->b[j]));
    for (int i = 0; i < N; i++) {
        double y = tanh((double)t->a[i]) * t->b[i % M];
        double u = (double)(mix(h + (uint64_t)i) >> 11) / 9007199254740992.0 - 0.5;
        t->out[i] = (float)(y * (1.0 + t->noise * u));
    }
}

static void toy_backward(void *ctx)
{
    toy *t = ctx;
    for (int i = 0; i < N; i++) {
        double th = tanh((double)t->a[i]);
        double g = t->dout[i] * (1.0 - th * th) * t->b[i % M];
        if (i == t->bad_index) g *= 2.0;
        if (t->nan_grad && i == 3) g = NAN;
        t->da[i] = t->overwrite ? (float)g : t->da[i] + (float)g;
    }
    for (int j = 0; j < M; j++) {
        double g = 0.0;
        for (int i = j; i < N; i += M) g += t->dout[i] * tanh((double)t->a[i]);
        g *= t->scale_db;
        t->db[j] = t->overwrite ? (float)g : t->db[j] + (float)g;
    }
}

static cd_gc_verdict run(toy *t)
{
    cd_gc_randn(t->a, N, 7, 0.8f);
    cd_gc_randn(t->b, M, 8, 1.0f);
    cd_gc_op op = {.name = "toy",
                   .ctx = t,
                   .forward = toy_forward,
                   .backward = toy_backward,
                   .out = t->out,
                   .dout = t->dout,
                   .n_out = N};
    cd_gc_add_input(&op, "a", t->a, t->da, N);
    cd_gc_add_input(&op, "b", t->b, t->db, M);
    cd_gc_opts o = cd_gc_default_opts();
    o.eps = 2e-2;
    cd_gc_verdict v = cd_gradcheck_verdict(&op, &o);
    printf("noise %.0e, db x %g, bad %lld, overwrite %d, nan %d: %s %s\n", t->noise, t->scale_db,
           (long long)t->bad_index, t->overwrite, t->nan_grad,
           v.ok ? "pass" : "FAIL:", v.ok ? "" : v.why);
    return v;
}

static toy correct(double noise) { return (toy){.noise = noise, .scale_db = 1.0, .bad_index = -1}; }

START_TEST(correct_gradients_pass_at_any_resolvable_noise)
{
    /* From exact to noise a hundred times float32 rounding, which moves a
     * quotient by up to a few 1e-3: more than the smallest elements of the
     * gradient, so a fixed relative tolerance would reject them. */
    const double levels[] = {0.0, 1e-7, 1e-6, 1e-5};
    for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
        toy t = correct(levels[k]);
        cd_gc_verdict v = run(&t);
        ck_assert_msg(v.ok, "correct gradient rejected at noise %g: %s", levels[k], v.why);
    }
}
END_TEST

START_TEST(wrong_gradients_fail)
{
    toy t = correct(1e-6);
    t.scale_db = 1.02;
    cd_gc_verdict v = run(&t);
    ck_assert_msg(!v.ok, "db 2%% too large passed");

    t = correct(1e-6);
    t.bad_index = 17;
    v = run(&t);
    ck_assert_msg(!v.ok, "one doubled element of da passed");

    t = correct(0.0);
    t.overwrite = true;
    v = run(&t);
    ck_assert_msg(!v.ok && strstr(v.why, "accumulate"), "an overwriting backward passed");

    t = correct(0.0);
    t.nan_grad = true;
    v = run(&t);
    ck_assert_msg(!v.ok && strstr(v.why, "not finite"), "a NaN gradient passed");
}
END_TEST

START_TEST(unresolvable_noise_is_a_failure)
{
    /* Noise this large swamps the gradient: the checker must say so rather
     * than pass everything under a huge allowance. */
    toy t = correct(3e-2);
    cd_gc_verdict v = run(&t);
    ck_assert_msg(!v.ok && strstr(v.why, "cannot be checked"),
                  "a gradient buried in noise passed: %s", v.why);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, correct_gradients_pass_at_any_resolvable_noise);
    tcase_add_test(tc, wrong_gradients_fail);
    tcase_add_test(tc, unresolvable_noise_is_a_failure);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
