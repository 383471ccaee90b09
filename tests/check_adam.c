/*
 * check_adam.c - the Adam optimiser against PyTorch 1.13
 * (tests/reference/adam.bin, written by make_adam_fixture.py), plus its
 * hyper-parameter checks and the non-finite gradient guard.
 */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "fixture.h"
#include "gradcheck.h"
#include "nn/nn.h"

#define STEPS 5
#define NPARAMS 3

static const char *const g_names[NPARAMS] = {"conv.weight", "conv.bias", "lin.weight"};
static const int64_t g_ranks[NPARAMS] = {4, 1, 2};
static const int64_t g_shapes[NPARAMS][4] = {{4, 2, 3, 3}, {4}, {5, 6}};

/* make_adam_fixture.py's VARIANTS table, in cd__adam_param order:
 * lr, beta1, beta2, eps, weight_decay, decoupled, clip_norm, ema_decay. */
typedef struct {
    const char *name;
    double hyper[CD__ADAM_NPARAMS];
} variant;

static const variant g_variants[] = {
    {"adam_small", {2e-4, 0.9, 0.999, 1e-8, 0.0, 0, 0.0, 0.0}},
    {"adam_large", {1e-2, 0.9, 0.999, 1e-8, 0.0, 0, 0.0, 0.0}},
    {"adam_betas", {1e-2, 0.8, 0.99, 1e-6, 0.0, 0, 0.0, 0.0}},
    {"adam_wd", {1e-2, 0.9, 0.999, 1e-8, 0.1, 0, 0.0, 0.0}},
    {"adamw", {1e-2, 0.9, 0.999, 1e-8, 0.1, 1, 0.0, 0.0}},
    {"clip", {1e-2, 0.9, 0.999, 1e-8, 0.0, 0, 5.0, 0.0}},
    {"ema", {1e-2, 0.9, 0.999, 1e-8, 0.0, 0, 0.0, 0.9}},
};
#define NVARIANTS ((int)(sizeof g_variants / sizeof g_variants[0]))

/* float32 tolerance. Plain Adam, AdamW, L2 decay and the EMA come out
 * bit-identical to PyTorch's AVX2 CPU kernels; clipping differs by an ulp
 * or so because PyTorch sums the squared gradients in float32 (8 lanes)
 * and libcolddiff in double, which moves the clip coefficient by an ulp. */
#define ATOL 1e-7
#define RTOL 1e-6

static cd_params *make_params(const cd_fixture *fx)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    for (int i = 0; i < NPARAMS; i++)
        CD_ASSERT_OK(cd_params_add(p, g_names[i], g_ranks[i], g_shapes[i]));
    char key[64];
    for (int i = 0; i < NPARAMS; i++) {
        int64_t n;
        snprintf(key, sizeof key, "init.%s", g_names[i]);
        const float *init = cd_fixture_get(fx, key, &n);
        ck_assert_int_eq(n, cd_params_numel_at(p, i));
        memcpy(cd_params_data(p, i), init, (size_t)n * sizeof(float));
    }
    return p;
}

static void load_grads(cd_params *p, const cd_fixture *fx, int step)
{
    char key[64];
    for (int i = 0; i < NPARAMS; i++) {
        int64_t n;
        snprintf(key, sizeof key, "grad%d.%s", step, g_names[i]);
        const float *g = cd_fixture_get(fx, key, &n);
        memcpy(cd_params_grad(p, i), g, (size_t)n * sizeof(float));
    }
}

static cd__adam *make_adam(cd_params *p, const double *hyper)
{
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    for (int k = 0; k < CD__ADAM_NPARAMS; k++)
        CD_ASSERT_OK(cd__adam_set(a, (cd__adam_param)k, hyper[k]));
    return a;
}

/* Compare every tensor with <variant>.<what><step>.<name>; counts the
 * elements that are bit-identical to PyTorch's. */
static void compare_step(const cd_fixture *fx, const char *vname, const char *what, int step,
                         const float *block, const cd_params *p, int64_t *exact, int64_t *total)
{
    char key[96];
    for (int i = 0; i < NPARAMS; i++) {
        int64_t n;
        snprintf(key, sizeof key, "%s.%s%d.%s", vname, what, step, g_names[i]);
        const float *want = cd_fixture_get(fx, key, &n);
        const float *got = block + cd__params_offset(p, i);
        cd_fixture_compare(key, got, want, n, ATOL, RTOL);
        for (int64_t k = 0; k < n; k++) *exact += memcmp(&got[k], &want[k], sizeof(float)) == 0;
        *total += n;
    }
}

START_TEST(matches_pytorch)
{
    const variant *v = &g_variants[_i];
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx);
    cd__adam *a = make_adam(p, v->hyper);
    int64_t exact = 0, total = 0;
    for (int step = 1; step <= STEPS; step++) {
        load_grads(p, fx, step);
        CD_ASSERT_OK(cd__adam_step(a));
        ck_assert_int_eq(cd__adam_steps(a), step);
        compare_step(fx, v->name, "step", step, cd_params_data(p, -1), p, &exact, &total);
        if (v->hyper[CD__ADAM_EMA_DECAY] > 0)
            compare_step(fx, v->name, "ema", step, cd__adam_ema(a), p, &exact, &total);
    }
    printf("parity %-40s %lld of %lld values bit-identical to PyTorch\n", v->name, (long long)exact,
           (long long)total);
    cd__adam_free(a);
    cd_params_free(p);
    cd_fixture_free(fx);
}
END_TEST

/* Clipping scales the gradient in place (as clip_grad_norm_ does) only
 * when the global norm exceeds max_norm, and reports the norm it saw. */
START_TEST(clip_scales_gradients)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx);
    cd__adam *a = make_adam(p, g_variants[5].hyper);
    int64_t n = cd_params_numel(p);
    for (int step = 1; step <= STEPS; step++) {
        load_grads(p, fx, step);
        double norm = 0.0;
        const float *g = cd_params_grad(p, -1);
        for (int64_t k = 0; k < n; k++) norm += (double)g[k] * g[k];
        norm = sqrt(norm);
        CD_ASSERT_OK(cd__adam_step(a));
        ck_assert_double_eq_tol(cd__adam_last_grad_norm(a), norm, 1e-9 * norm);
        double after = 0.0;
        for (int64_t k = 0; k < n; k++) after += (double)g[k] * g[k];
        after = sqrt(after);
        if (norm > 5.0)
            ck_assert_double_eq_tol(after, 5.0, 1e-5);
        else
            ck_assert(after == norm); /* untouched */
    }
    cd__adam_free(a);
    cd_params_free(p);
    cd_fixture_free(fx);
}
END_TEST

START_TEST(defaults_and_bounds)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    CD_ASSERT_OK(cd_params_add(p, "w", 1, (int64_t[]){3}));
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    const double want[CD__ADAM_NPARAMS] = {2e-4, 0.9, 0.999, 1e-8, 0, 0, 0, 0};
    for (int k = 0; k < CD__ADAM_NPARAMS; k++) {
        double v = -1;
        CD_ASSERT_OK(cd__adam_get(a, (cd__adam_param)k, &v));
        ck_assert(v == want[k]);
        ck_assert(cd__adam_default((cd__adam_param)k) == want[k]);
        ck_assert_ptr_nonnull(cd__adam_param_name((cd__adam_param)k));
    }
    ck_assert_int_eq(cd__adam_steps(a), 0);
    ck_assert_ptr_null(cd__adam_ema(a));
    ck_assert_ptr_eq(cd__adam_params(a), p);
    const cd__option *o = cd__adam_option(CD__ADAM_BETA2, "check_adam");
    ck_assert_ptr_nonnull(o);
    ck_assert(o->lo == 0.0 && o->hi == 1.0 && !o->lo_open && o->hi_open);
    ck_assert(o->type == CD_OPTION_REAL && o->def == 0.999);
    o = cd__adam_option(CD__ADAM_LR, "check_adam");
    ck_assert_ptr_nonnull(o);
    ck_assert(o->lo == 0.0 && o->hi == DBL_MAX && o->lo_open && !o->hi_open);
    o = cd__adam_option(CD__ADAM_DECOUPLED, "check_adam");
    ck_assert_ptr_nonnull(o);
    ck_assert(o->type == CD_OPTION_BOOL && o->lo == 0.0 && o->hi == 1.0);
    cd_clear_error();
    ck_assert_ptr_null(cd__adam_option((cd__adam_param)CD__ADAM_NPARAMS, "check_adam"));
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(cd__adam_param_name((cd__adam_param)-1));
    cd__adam_free(a);
    cd__adam_free(NULL);
    cd_params_free(p);
}
END_TEST

START_TEST(range_errors)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    CD_ASSERT_OK(cd_params_add(p, "w", 1, (int64_t[]){3}));
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    static const struct {
        cd__adam_param key;
        double value;
        const char *name;
    } bad[] = {
        {CD__ADAM_LR, 0.0, "lr"},
        {CD__ADAM_LR, -1e-3, "lr"},
        {CD__ADAM_LR, INFINITY, "lr"},
        {CD__ADAM_LR, NAN, "lr"},
        {CD__ADAM_BETA1, 1.0, "beta1"},
        {CD__ADAM_BETA1, -0.1, "beta1"},
        {CD__ADAM_BETA2, 1.0, "beta2"},
        {CD__ADAM_BETA2, NAN, "beta2"},
        {CD__ADAM_EPS, 0.0, "eps"},
        {CD__ADAM_EPS, -1e-8, "eps"},
        {CD__ADAM_WEIGHT_DECAY, -0.1, "weight_decay"},
        {CD__ADAM_WEIGHT_DECAY, INFINITY, "weight_decay"},
        {CD__ADAM_DECOUPLED, 0.5, "decoupled"},
        {CD__ADAM_DECOUPLED, 2.0, "decoupled"},
        {CD__ADAM_CLIP_NORM, -1.0, "clip_norm"},
        {CD__ADAM_CLIP_NORM, INFINITY, "clip_norm"},
        {CD__ADAM_EMA_DECAY, 1.0, "ema_decay"},
        {CD__ADAM_EMA_DECAY, -0.5, "ema_decay"},
        {CD__ADAM_LR_WARMUP, -1.0, "lr_warmup"},
        {CD__ADAM_LR_WARMUP, 2.5, "lr_warmup"},
        {CD__ADAM_LR_WARMUP, 2e9, "lr_warmup"},
        {CD__ADAM_EMA_WARMUP, 0.5, "ema_warmup"},
        {CD__ADAM_LR_DECAY, -1.0, "lr_decay"},
        {CD__ADAM_LR_DECAY, 0.5, "lr_decay"},
        {CD__ADAM_EMA_WARMUP, 2.0, "ema_warmup"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double before, after;
        CD_ASSERT_OK(cd__adam_get(a, bad[i].key, &before));
        /* A non-finite real is CD_ERR_NOT_FINITE, as through the public
         * options; every other bad value CD_ERR_RANGE. */
        CD_ASSERT_STATUS(cd__adam_set(a, bad[i].key, bad[i].value),
                         isfinite(bad[i].value) ? CD_ERR_RANGE : CD_ERR_NOT_FINITE);
        CD_ASSERT_ERROR_MENTIONS(bad[i].name);
        CD_ASSERT_OK(cd__adam_get(a, bad[i].key, &after));
        ck_assert(before == after);
    }
    /* Edges that are allowed. */
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_BETA1, 0.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_WEIGHT_DECAY, 0.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_DECOUPLED, 1.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_CLIP_NORM, 0.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_EMA_DECAY, 0.0));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_LR, 1e3));
    CD_ASSERT_STATUS(cd__adam_set(a, (cd__adam_param)99, 1.0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__adam_set(NULL, CD__ADAM_LR, 1.0), CD_ERR_INVALID_ARGUMENT);
    double v;
    CD_ASSERT_STATUS(cd__adam_get(a, (cd__adam_param)-3, &v), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__adam_get(a, CD__ADAM_LR, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__adam_step(NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__adam_create(NULL, p), CD_ERR_INVALID_ARGUMENT);
    cd__adam *b = (cd__adam *)1;
    CD_ASSERT_STATUS(cd__adam_create(&b, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(b);
    cd__adam_free(a);
    cd_params_free(p);
}
END_TEST

typedef struct {
    float *values, *grads, *m, *v, *ema;
    int64_t steps, n;
} snapshot;

static snapshot take(cd_params *p, const cd__adam *a)
{
    snapshot s = {.n = cd_params_numel(p), .steps = cd__adam_steps(a)};
    size_t bytes = (size_t)s.n * sizeof(float);
    s.values = malloc(bytes);
    s.grads = malloc(bytes);
    s.m = malloc(bytes);
    s.v = malloc(bytes);
    s.ema = malloc(bytes);
    memcpy(s.values, cd_params_data(p, -1), bytes);
    memcpy(s.grads, cd_params_grad(p, -1), bytes);
    memcpy(s.m, cd__adam_m(a), bytes);
    memcpy(s.v, cd__adam_v(a), bytes);
    if (cd__adam_ema(a)) memcpy(s.ema, cd__adam_ema(a), bytes);
    return s;
}

static void assert_same(const snapshot *s, cd_params *p, const cd__adam *a, bool had_ema)
{
    size_t bytes = (size_t)s->n * sizeof(float);
    ck_assert(memcmp(s->values, cd_params_data(p, -1), bytes) == 0);
    ck_assert(memcmp(s->grads, cd_params_grad(p, -1), bytes) == 0);
    ck_assert(memcmp(s->m, cd__adam_m(a), bytes) == 0);
    ck_assert(memcmp(s->v, cd__adam_v(a), bytes) == 0);
    ck_assert_int_eq(cd__adam_steps(a), s->steps);
    ck_assert_int_eq(cd__adam_ema(a) != NULL, had_ema);
    if (had_ema) ck_assert(memcmp(s->ema, cd__adam_ema(a), bytes) == 0);
}

static void drop(snapshot *s)
{
    free(s->values);
    free(s->grads);
    free(s->m);
    free(s->v);
    free(s->ema);
}

START_TEST(non_finite_gradient_changes_nothing)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx);
    double hyper[CD__ADAM_NPARAMS] = {1e-2, 0.9, 0.999, 1e-8, 0.1, 0, 5.0, 0.9};
    cd__adam *a = make_adam(p, hyper);
    /* Before the first step: the EMA must not start either. */
    load_grads(p, fx, 1);
    cd_params_grad(p, 2)[7] = NAN;
    snapshot s = take(p, a);
    CD_ASSERT_STATUS(cd__adam_step(a), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("lin.weight");
    CD_ASSERT_ERROR_MENTIONS("element 7");
    assert_same(&s, p, a, false);
    drop(&s);
    /* After two good steps, an infinity. */
    load_grads(p, fx, 1);
    CD_ASSERT_OK(cd__adam_step(a));
    load_grads(p, fx, 2);
    CD_ASSERT_OK(cd__adam_step(a));
    load_grads(p, fx, 3); /* its norm is above the clip: clipping must not run */
    cd_params_grad(p, 0)[0] = -INFINITY;
    s = take(p, a);
    CD_ASSERT_STATUS(cd__adam_step(a), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("conv.weight");
    assert_same(&s, p, a, true);
    drop(&s);
    cd__adam_free(a);
    cd_params_free(p);
    cd_fixture_free(fx);
}
END_TEST

/* Finite gradients whose step would overflow: a learning rate that sends a
 * value to infinity, a gradient whose square is beyond float (the second
 * moment). The step is refused with nothing changed, the gradients not
 * clipped and the EMA not started; afterwards the optimiser goes on as if
 * the refused step had never been asked for. */
START_TEST(overflowing_step_changes_nothing)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx), *q = make_params(fx);
    double hyper[CD__ADAM_NPARAMS] = {1e-2, 0.9, 0.999, 1e-8, 0.1, 1, 5.0, 0.9};
    cd__adam *a = make_adam(p, hyper), *ref = make_adam(q, hyper);
    /* The first step, with the EMA due to start, at a huge lr. */
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_LR, 1e38));
    load_grads(p, fx, 1);
    snapshot s = take(p, a);
    CD_ASSERT_STATUS(cd__adam_step(a), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("the value of 'conv.weight' element 0");
    CD_ASSERT_ERROR_MENTIONS("nothing was updated");
    assert_same(&s, p, a, false);
    drop(&s);
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_LR, 1e-2));
    for (int step = 1; step <= 2; step++) {
        load_grads(p, fx, step);
        load_grads(q, fx, step);
        CD_ASSERT_OK(cd__adam_step(a));
        CD_ASSERT_OK(cd__adam_step(ref));
    }
    /* A finite gradient of 3e21 squares to 9e42: the second moment would
     * be infinite. Without clipping, so that it reaches the moment. */
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_CLIP_NORM, 0.0));
    load_grads(p, fx, 3);
    cd_params_grad(p, 2)[11] = 3e21f;
    s = take(p, a);
    CD_ASSERT_STATUS(cd__adam_step(a), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("the second moment of 'lin.weight' element 11 inf");
    assert_same(&s, p, a, true);
    drop(&s);
    /* Step 3 with the clip back on: the same bits as the optimiser that
     * never failed. */
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_CLIP_NORM, 5.0));
    load_grads(p, fx, 3);
    load_grads(q, fx, 3);
    CD_ASSERT_OK(cd__adam_step(a));
    CD_ASSERT_OK(cd__adam_step(ref));
    const size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);
    ck_assert(memcmp(cd_params_data(p, -1), cd_params_data(q, -1), bytes) == 0);
    ck_assert(memcmp(cd__adam_m(a), cd__adam_m(ref), bytes) == 0);
    ck_assert(memcmp(cd__adam_v(a), cd__adam_v(ref), bytes) == 0);
    ck_assert(memcmp(cd__adam_ema(a), cd__adam_ema(ref), bytes) == 0);
    ck_assert_int_eq(cd__adam_steps(a), 3);
    cd__adam_free(a);
    cd__adam_free(ref);
    cd_params_free(p);
    cd_params_free(q);
    cd_fixture_free(fx);
}
END_TEST

START_TEST(ema_starts_at_values_and_can_be_dropped)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx);
    double hyper[CD__ADAM_NPARAMS] = {1e-2, 0.9, 0.999, 1e-8, 0, 0, 0, 0};
    cd__adam *a = make_adam(p, hyper);
    int64_t n = cd_params_numel(p);
    load_grads(p, fx, 1);
    CD_ASSERT_OK(cd__adam_step(a));
    ck_assert_ptr_null(cd__adam_ema(a));
    /* Switched on mid-run: starts from the values before the next step. */
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_EMA_DECAY, 0.5));
    float *before = malloc((size_t)n * sizeof(float));
    memcpy(before, cd_params_data(p, -1), (size_t)n * sizeof(float));
    load_grads(p, fx, 2);
    CD_ASSERT_OK(cd__adam_step(a));
    const float *ema = cd__adam_ema(a), *now = cd_params_data(p, -1);
    ck_assert_ptr_nonnull(ema);
    for (int64_t k = 0; k < n; k++) ck_assert(ema[k] == fmaf(now[k], 0.5f, before[k] * 0.5f));
    CD_ASSERT_OK(cd__adam_set(a, CD__ADAM_EMA_DECAY, 0.0));
    ck_assert_ptr_null(cd__adam_ema(a));
    free(before);
    cd__adam_free(a);
    cd_params_free(p);
    cd_fixture_free(fx);
}
END_TEST

/* The warm-ups equal a run that sets the ramped lr and EMA decay by hand
 * before every step, bit for bit: lr t/W for t < W, decay
 * min(d, (1+t)/(10+t)). */
START_TEST(warmups_equal_hand_set_ramps)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *pa = make_params(fx), *pb = make_params(fx);
    const double lr = 1e-2, d = 0.9, W = 3;
    double ha[CD__ADAM_NPARAMS] = {lr, 0.9, 0.999, 1e-8, 0, 0, 0, d};
    ha[CD__ADAM_LR_WARMUP] = W;
    ha[CD__ADAM_EMA_WARMUP] = 1;
    double hb[CD__ADAM_NPARAMS] = {lr, 0.9, 0.999, 1e-8, 0, 0, 0, d};
    cd__adam *a = make_adam(pa, ha), *b = make_adam(pb, hb);
    const int64_t n = cd_params_numel(pa);
    for (int t = 1; t <= STEPS; t++) {
        const double ramp = (1.0 + t) / (10.0 + t);
        CD_ASSERT_OK(cd__adam_set(b, CD__ADAM_LR, t < W ? lr * t / W : lr));
        CD_ASSERT_OK(cd__adam_set(b, CD__ADAM_EMA_DECAY, ramp < d ? ramp : d));
        load_grads(pa, fx, t);
        load_grads(pb, fx, t);
        CD_ASSERT_OK(cd__adam_step(a));
        CD_ASSERT_OK(cd__adam_step(b));
        ck_assert(
            memcmp(cd_params_data(pa, -1), cd_params_data(pb, -1), (size_t)n * sizeof(float)) == 0);
        ck_assert(memcmp(cd__adam_ema(a), cd__adam_ema(b), (size_t)n * sizeof(float)) == 0);
    }
    /* The ramps changed something: without them the first step differs. */
    cd_params *pc = make_params(fx);
    cd__adam *c = make_adam(pc, hb);
    load_grads(pc, fx, 1);
    CD_ASSERT_OK(cd__adam_step(c));
    cd_params *pd = make_params(fx);
    cd__adam *e = make_adam(pd, ha);
    load_grads(pd, fx, 1);
    CD_ASSERT_OK(cd__adam_step(e));
    ck_assert(memcmp(cd_params_data(pc, -1), cd_params_data(pd, -1), (size_t)n * sizeof(float)) !=
              0);
    ck_assert(memcmp(cd__adam_ema(c), cd__adam_ema(e), (size_t)n * sizeof(float)) != 0);
    cd__adam_free(a), cd__adam_free(b), cd__adam_free(c), cd__adam_free(e);
    cd_params_free(pa), cd_params_free(pb), cd_params_free(pc), cd_params_free(pd);
    cd_fixture_free(fx);
}
END_TEST

/* The cosine decay equals a run that sets lr by hand before every step,
 * bit for bit: the warm-up's ramp, then lr (1 + cos(pi (t - W) / (N - W))) / 2;
 * from step N on, lr is 0 and a step leaves the weights as they are. */
START_TEST(lr_decay_equals_hand_set_cosine)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *pa = make_params(fx), *pb = make_params(fx);
    const double lr = 1e-2, W = 2, N = STEPS + 1, pi = 3.14159265358979323846;
    double ha[CD__ADAM_NPARAMS] = {lr, 0.9, 0.999, 1e-8};
    ha[CD__ADAM_LR_WARMUP] = W;
    ha[CD__ADAM_LR_DECAY] = N;
    double hb[CD__ADAM_NPARAMS] = {lr, 0.9, 0.999, 1e-8};
    cd__adam *a = make_adam(pa, ha), *b = make_adam(pb, hb);
    const int64_t n = cd_params_numel(pa);
    for (int t = 1; t <= STEPS; t++) {
        const double want = t < W ? lr * t / W : lr * 0.5 * (1.0 + cos(pi * (t - W) / (N - W)));
        CD_ASSERT_OK(cd__adam_set(b, CD__ADAM_LR, want));
        load_grads(pa, fx, t);
        load_grads(pb, fx, t);
        CD_ASSERT_OK(cd__adam_step(a));
        CD_ASSERT_OK(cd__adam_step(b));
        ck_assert(
            memcmp(cd_params_data(pa, -1), cd_params_data(pb, -1), (size_t)n * sizeof(float)) == 0);
    }
    /* Step N: lr 0. */
    float *before = malloc((size_t)n * sizeof(float));
    memcpy(before, cd_params_data(pa, -1), (size_t)n * sizeof(float));
    load_grads(pa, fx, 1);
    CD_ASSERT_OK(cd__adam_step(a));
    ck_assert(memcmp(cd_params_data(pa, -1), before, (size_t)n * sizeof(float)) == 0);
    /* A decay that ends inside the warm-up is off. */
    double hc[CD__ADAM_NPARAMS] = {lr, 0.9, 0.999, 1e-8};
    hc[CD__ADAM_LR_WARMUP] = 3;
    hc[CD__ADAM_LR_DECAY] = 3;
    cd_params *pc = make_params(fx), *pd = make_params(fx);
    hb[CD__ADAM_LR] = lr;
    hb[CD__ADAM_LR_WARMUP] = 3;
    cd__adam *c = make_adam(pc, hc), *d = make_adam(pd, hb);
    for (int t = 1; t <= STEPS; t++) {
        load_grads(pc, fx, t);
        load_grads(pd, fx, t);
        CD_ASSERT_OK(cd__adam_step(c));
        CD_ASSERT_OK(cd__adam_step(d));
    }
    ck_assert(memcmp(cd_params_data(pc, -1), cd_params_data(pd, -1), (size_t)n * sizeof(float)) ==
              0);
    free(before);
    cd__adam_free(a), cd__adam_free(b), cd__adam_free(c), cd__adam_free(d);
    cd_params_free(pa), cd_params_free(pb), cd_params_free(pc), cd_params_free(pd);
    cd_fixture_free(fx);
}
END_TEST

/* A step does not zero the gradients; the caller does. */
START_TEST(step_keeps_gradients)
{
    cd_fixture *fx = cd_fixture_load("adam.bin");
    cd_params *p = make_params(fx);
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    load_grads(p, fx, 1);
    int64_t n;
    const float *g = cd_fixture_get(fx, "grad1.conv.weight", &n);
    CD_ASSERT_OK(cd__adam_step(a));
    ck_assert(memcmp(cd_params_grad(p, 0), g, (size_t)n * sizeof(float)) == 0);
    cd__adam_free(a);
    cd_params_free(p);
    cd_fixture_free(fx);
}
END_TEST

START_TEST(restore_validates_first)
{
    cd_params *p = NULL;
    CD_ASSERT_OK(cd_params_create(&p));
    CD_ASSERT_OK(cd_params_add(p, "w", 1, (int64_t[]){4}));
    cd__adam *a = NULL;
    CD_ASSERT_OK(cd__adam_create(&a, p));
    float m[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8}, e[4] = {9, 10, 11, 12};
    double hyper[CD__ADAM_NPARAMS] = {1e-3, 0.5, 0.9, 1e-7, 0.01, 1, 2.0, 0.99};
    hyper[CD__ADAM_BETA1] = 1.5;
    CD_ASSERT_STATUS(cd__adam_restore(a, hyper, 3, m, v, e), CD_ERR_RANGE);
    hyper[CD__ADAM_BETA1] = 0.5;
    CD_ASSERT_STATUS(cd__adam_restore(a, hyper, -1, m, v, e), CD_ERR_RANGE);
    ck_assert_int_eq(cd__adam_steps(a), 0);
    ck_assert(cd__adam_m(a)[0] == 0.0f);
    CD_ASSERT_OK(cd__adam_restore(a, hyper, 3, m, v, e));
    ck_assert_int_eq(cd__adam_steps(a), 3);
    ck_assert(memcmp(cd__adam_m(a), m, sizeof m) == 0);
    ck_assert(memcmp(cd__adam_v(a), v, sizeof v) == 0);
    ck_assert(memcmp(cd__adam_ema(a), e, sizeof e) == 0);
    double got;
    CD_ASSERT_OK(cd__adam_get(a, CD__ADAM_EMA_DECAY, &got));
    ck_assert(got == 0.99);
    CD_ASSERT_OK(cd__adam_restore(a, hyper, 4, m, v, NULL));
    ck_assert_ptr_null(cd__adam_ema(a));
    cd__adam_free(a);
    cd_params_free(p);
}
END_TEST

/* Adam, the trial and the EMA run the same bits on their AVX-512 copies
 * as on the plain loops, in every variant, over tensors long enough for the
 * vector loops and their remainders. */
START_TEST(vector_loops_match_plain)
{
    static const char *const names[3] = {"a", "b", "c"};
    static const int64_t sizes[3] = {1000, 37, 129};
    const variant *v = &g_variants[_i];
    cd_params *p[2];
    cd__adam *a[2];
    for (int k = 0; k < 2; k++) {
        CD_ASSERT_OK(cd_params_create(&p[k]));
        for (int i = 0; i < 3; i++) CD_ASSERT_OK(cd_params_add(p[k], names[i], 1, &sizes[i]));
        cd_gc_randn(cd_params_data(p[k], -1), cd_params_numel(p[k]), 3, 1.0f);
        a[k] = make_adam(p[k], v->hyper);
    }
    const int64_t n = cd_params_numel(p[0]);
    const size_t bytes = (size_t)n * sizeof(float);
    for (int step = 1; step <= 3; step++) {
        for (int k = 0; k < 2; k++) {
            float *g = cd_params_grad(p[k], -1);
            cd_gc_randn(g, n, 10 + (uint64_t)step, 0.5f);
            g[step * 101] = 1e-30f, g[step * 103] = 3e8f; /* extremes for the moments */
            cd__cpu_force_portable(CD__KERNELS_ADAM, k == 0);
            CD_ASSERT_OK(cd__adam_step(a[k]));
        }
        cd__cpu_force_portable(CD__KERNELS_ADAM, false);
        ck_assert(memcmp(cd_params_data(p[0], -1), cd_params_data(p[1], -1), bytes) == 0);
        ck_assert(memcmp(cd__adam_m(a[0]), cd__adam_m(a[1]), bytes) == 0);
        ck_assert(memcmp(cd__adam_v(a[0]), cd__adam_v(a[1]), bytes) == 0);
        if (v->hyper[CD__ADAM_EMA_DECAY] > 0)
            ck_assert(memcmp(cd__adam_ema(a[0]), cd__adam_ema(a[1]), bytes) == 0);
    }
    /* A step that would overflow is refused on both, for the same element. */
    for (int k = 0; k < 2; k++) {
        cd_gc_randn(cd_params_grad(p[k], -1), n, 20, 0.5f);
        cd_params_grad(p[k], 2)[77] = 3e21f;
        CD_ASSERT_OK(cd__adam_set(a[k], CD__ADAM_CLIP_NORM, 0.0));
        cd__cpu_force_portable(CD__KERNELS_ADAM, k == 0);
        CD_ASSERT_STATUS(cd__adam_step(a[k]), CD_ERR_NOT_FINITE);
        CD_ASSERT_ERROR_MENTIONS("of 'c' element 77 inf");
    }
    cd__cpu_force_portable(CD__KERNELS_ADAM, false);
    for (int k = 0; k < 2; k++) {
        cd__adam_free(a[k]);
        cd_params_free(p[k]);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("adam");
    TCase *tc = tcase_create("parity");
    tcase_add_loop_test(tc, matches_pytorch, 0, NVARIANTS);
    tcase_add_test(tc, clip_scales_gradients);
    suite_add_tcase(s, tc);
    /* Only where there is a second copy of the loops to compare. */
#if defined(__x86_64__) && defined(__GNUC__)
    if (cd__cpu_avx512()) {
        tc = tcase_create("vector");
        tcase_add_loop_test(tc, vector_loops_match_plain, 0, NVARIANTS);
        suite_add_tcase(s, tc);
    }
#endif
    tc = tcase_create("api");
    tcase_add_test(tc, defaults_and_bounds);
    tcase_add_test(tc, range_errors);
    tcase_add_test(tc, non_finite_gradient_changes_nothing);
    tcase_add_test(tc, overflowing_step_changes_nothing);
    tcase_add_test(tc, ema_starts_at_values_and_can_be_dropped);
    tcase_add_test(tc, step_keeps_gradients);
    tcase_add_test(tc, restore_validates_first);
    tcase_add_test(tc, warmups_equal_hand_set_ramps);
    tcase_add_test(tc, lr_decay_equals_hand_set_cosine);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
