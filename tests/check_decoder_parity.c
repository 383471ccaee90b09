/*
 * check_decoder_parity.c - both decoders against PyTorch, through the public
 * API only. Each fixture (tests/reference/make_decoder_fixtures.py) holds a
 * decoder configuration, every parameter by its state_dict name, inputs z
 * and tau, a random dout, and PyTorch's out, dz and parameter gradients. The
 * test builds the same decoder with cd_decoder_config_set*, copies the
 * weights in by name, runs forward and backward, and compares.
 *
 * Tolerances. The fixture values are PyTorch's float64 results from the
 * float32 weights and inputs, rounded once to float32, so what is measured is
 * the C decoder's own float32 error. An element passes when
 *     |got - want| <= ATOL * S + RTOL * |want|,
 * S being the tensor's scale (below). The generator prints float32 PyTorch's
 * own error against the same reference: at most 2.5e-6 * S on these
 * fixtures, the worst being the CNN's conv-weight gradients (each element a
 * sum of N*H*W = 2352 products). The C decoder's errors are of the same size
 * (1.8e-6 * S at most when this was written; the test prints each tensor's
 * and each fixture's worst). ATOL = 2e-5 leaves a factor of about 8 for a
 * different but equally good summation order (blocked GEMM, other reduction
 * trees). One tolerance serves every tensor: even the longest reductions,
 * the CNN's LayerNorm statistics and input gradients over C*H*W = 25088
 * elements per sample, stay well inside it. Wiring and layout mistakes
 * (a transposed weight, a missed term, a wrong channel order) change
 * results at order 1.
 *
 * The scale S of a tensor is its largest |want|, except for gradients that
 * cancel: with one image channel the first ConvNeXt block's ds_conv bias and
 * time shift move every pixel of a sample alike, which the following
 * C x H x W LayerNorm removes, so PyTorch's float64 gradient is ~1e-17 and
 * any float32 result is pure rounding noise of its terms. A gradient is
 * therefore measured against at least its layer's other gradient (the
 * weight for a bias and vice versa) and at least GRAD_FLOOR times the
 * fixture's largest gradient, the size of the terms that cancel.
 */
#include "test_util.h"

#include <math.h>

#include "fixture.h"

#define ATOL 2e-5
#define RTOL 1e-5
#define GRAD_FLOOR 1e-2

static const struct {
    const char *name; /* config.<name> in the fixture, decoder.<name> in a checkpoint */
    cd_decoder_option key;
    int list;
} config_keys[] = {
    {"channels", CD_DECODER_OPT_CHANNELS, 0},
    {"height", CD_DECODER_OPT_HEIGHT, 0},
    {"width", CD_DECODER_OPT_WIDTH, 0},
    {"hidden", CD_DECODER_OPT_HIDDEN, 1},
    {"kernel", CD_DECODER_OPT_KERNEL, 0},
    {"time_freqs", CD_DECODER_OPT_TIME_FREQS, 0},
    {"time_hidden", CD_DECODER_OPT_TIME_HIDDEN, 0},
    {"time_layers", CD_DECODER_OPT_TIME_LAYERS, 0},
    {"dim", CD_DECODER_OPT_DIM, 0},
    {"dim_mults", CD_DECODER_OPT_DIM_MULTS, 1},
    {"heads", CD_DECODER_OPT_HEADS, 0},
    {"head_dim", CD_DECODER_OPT_HEAD_DIM, 0},
    {"convnext_mult", CD_DECODER_OPT_CONVNEXT_MULT, 0},
    {"classes", CD_DECODER_OPT_CLASSES, 0},
};
#define N_CONFIG_KEYS (sizeof config_keys / sizeof config_keys[0])

static int64_t as_int(const char *what, float v)
{
    ck_assert_msg(v == floorf(v) && fabsf(v) < 1e7f, "%s = %g is not an integer", what, (double)v);
    return (int64_t)v;
}

static int64_t fixture_scalar(const cd_fixture *f, const char *name)
{
    int64_t n = 0;
    const float *v = cd_fixture_get(f, name, &n);
    ck_assert_msg(n == 1, "fixture tensor %s has %lld values, expected 1", name, (long long)n);
    return as_int(name, v[0]);
}

/* The decoder a fixture describes, configured through the public API. The
 * weights are replaced by load_parameters(); the seed only fills them. */
static cd_decoder *build_decoder(const cd_fixture *f)
{
    const int64_t type = fixture_scalar(f, "config.type");
    ck_assert_msg(type == CD_DECODER_CNN || type == CD_DECODER_UNET, "bad config.type");
    cd_decoder_config *cfg = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, (cd_decoder_kind)type));
    int set = 0;
    for (size_t i = 0; i < N_CONFIG_KEYS; i++) {
        char name[64];
        snprintf(name, sizeof name, "config.%s", config_keys[i].name);
        if (!cd_fixture_has(f, name)) continue;
        int64_t n = 0, values[8];
        const float *v = cd_fixture_get(f, name, &n);
        ck_assert_msg(n >= 1 && n <= 8, "%s has %lld values", name, (long long)n);
        for (int64_t k = 0; k < n; k++) values[k] = as_int(name, v[k]);
        if (config_keys[i].list)
            CD_ASSERT_OK(cd_decoder_config_set_list(cfg, config_keys[i].key, values, n));
        else {
            ck_assert_msg(n == 1, "%s is a scalar key but has %lld values", name, (long long)n);
            CD_ASSERT_OK(cd_decoder_config_set_int(cfg, config_keys[i].key, values[0]));
        }
        set++;
    }
    ck_assert_msg(set >= 6, "the fixture sets only %d configuration keys", set);
    cd_rng *rng = NULL;
    cd_decoder *d = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

/* The i-th name of the fixture's param_names (0-separated byte values). */
static int fixture_param_name(const cd_fixture *f, int64_t i, char *buf, size_t cap)
{
    int64_t n = 0, k = 0;
    const float *codes = cd_fixture_get(f, "param_names", &n);
    for (int64_t skip = 0; skip < i; k++) {
        if (k >= n) return 0;
        if (codes[k] == 0.0f) skip++;
    }
    size_t len = 0;
    for (; k < n && codes[k] != 0.0f; k++) {
        ck_assert_msg(len + 1 < cap, "fixture parameter name too long");
        buf[len++] = (char)as_int("param_names", codes[k]);
    }
    buf[len] = '\0';
    return len > 0;
}

/* Copy every parameter in by name. Fails if a name is missing on either
 * side, if a shape differs, or if the counts differ. */
static void load_parameters(cd_decoder *d, const cd_fixture *f)
{
    cd_params *p = cd_decoder_params(d);
    const int64_t count = cd_params_count(p), want_count = fixture_scalar(f, "param_count");
    char name[CD_PARAMS_MAX_NAME + 16];
    for (int64_t i = 0; i < want_count; i++) {
        int64_t idx = -1;
        ck_assert_msg(fixture_param_name(f, i, name, sizeof name), "param_names is short");
        ck_assert_msg(cd_params_find(p, name, &idx) == CD_OK,
                      "PyTorch's state_dict has %s, the C decoder does not", name);
    }
    for (int64_t i = 0; i < count; i++) {
        const char *pname = cd_params_name(p, i);
        snprintf(name, sizeof name, "param.%s", pname);
        ck_assert_msg(cd_fixture_has(f, name),
                      "the C decoder has %s, PyTorch's state_dict "
                      "does not",
                      pname);
        int64_t dims[8], shape[8], n = 0;
        const int64_t rank = cd_fixture_shape(f, name, dims);
        ck_assert_msg(cd_params_rank(p, i) == rank, "%s: rank %lld in C, %lld in PyTorch", pname,
                      (long long)cd_params_rank(p, i), (long long)rank);
        CD_ASSERT_OK(cd_params_shape(p, i, shape, 8));
        for (int64_t k = 0; k < rank; k++)
            ck_assert_msg(shape[k] == dims[k],
                          "%s: dimension %lld is %lld in C, %lld "
                          "in PyTorch",
                          pname, (long long)k, (long long)shape[k], (long long)dims[k]);
        const float *v = cd_fixture_get(f, name, &n);
        ck_assert_int_eq(n, cd_params_numel_at(p, i));
        memcpy(cd_params_data(p, i), v, (size_t)n * sizeof *v);
    }
    ck_assert_msg(count == want_count,
                  "the C decoder has %lld parameter tensors, PyTorch "
                  "%lld",
                  (long long)count, (long long)want_count);
    ck_assert_int_eq(cd_params_numel(p), fixture_scalar(f, "param_numel"));
    ck_assert_int_eq(cd_decoder_param_count(d), fixture_scalar(f, "param_numel"));
}

/* A tensor shaped like the fixture's `name`, holding its values. */
static cd_tensor *fixture_tensor(const cd_fixture *f, const char *name)
{
    int64_t dims[8], n = 0;
    const int64_t rank = cd_fixture_shape(f, name, dims);
    const float *v = cd_fixture_get(f, name, &n);
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, rank, dims));
    CD_ASSERT_OK(cd_tensor_copy_from(t, v, n));
    return t;
}

static double max_abs(const float *v, int64_t n)
{
    /* Callers pass n already set: arguments are evaluated in any order. */
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)v[i]) > m) m = fabs((double)v[i]);
    return m;
}

/* The worst error of a fixture, relative to each tensor's scale. */
typedef struct {
    double ratio;
    char what[160];
} worst_error;

static void compare(worst_error *worst, const char *file, const char *what, const float *got,
                    const float *want, int64_t n, double scale)
{
    char label[192];
    snprintf(label, sizeof label, "%s %s", file, what);
    double err = 0.0;
    for (int64_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - (double)want[i]));
    if (scale > 0 && err / scale > worst->ratio) {
        worst->ratio = err / scale;
        snprintf(worst->what, sizeof worst->what, "%s", what);
    }
    cd_fixture_compare(label, got, want, n, ATOL * scale, RTOL);
}

/* The other gradient of the same layer: "x.weight" <-> "x.bias" (or NULL). */
static const char *sibling(const char *grad_name, char *buf, size_t cap)
{
    const char *dot = strrchr(grad_name, '.');
    if (!dot) return NULL;
    const char *other = strcmp(dot, ".weight") == 0 ? ".bias"
                        : strcmp(dot, ".bias") == 0 ? ".weight"
                                                    : NULL;
    if (!other) return NULL;
    snprintf(buf, cap, "%.*s%s", (int)(dot - grad_name), grad_name, other);
    return buf;
}

/* The scale S of a parameter gradient (see the top of this file). */
static double grad_scale(const cd_fixture *f, const char *grad_name, double largest)
{
    int64_t n = 0;
    const float *g = cd_fixture_get(f, grad_name, &n);
    double s = max_abs(g, n);
    char buf[CD_PARAMS_MAX_NAME + 16];
    const char *sib = sibling(grad_name, buf, sizeof buf);
    if (sib && cd_fixture_has(f, sib)) {
        const float *v = cd_fixture_get(f, sib, &n);
        s = fmax(s, max_abs(v, n));
    }
    return fmax(s, GRAD_FLOOR * largest);
}

static void check_fixture(const char *file)
{
    cd_fixture *f = cd_fixture_load(file);
    cd_decoder *d = build_decoder(f);
    load_parameters(d, f);
    cd_params *p = cd_decoder_params(d);

    cd_tensor *z = fixture_tensor(f, "z"), *tau = fixture_tensor(f, "tau");
    cd_tensor *dout = fixture_tensor(f, "dout"), *out = NULL, *dz = NULL;
    CD_ASSERT_OK(cd_tensor_clone(&out, z));
    CD_ASSERT_OK(cd_tensor_clone(&dz, z));
    CD_ASSERT_OK(cd_tensor_fill(out, NAN));
    CD_ASSERT_OK(cd_tensor_fill(dz, NAN));
    const int64_t n = cd_tensor_numel(z);
    worst_error worst = {0.0, ""};

    /* Class-conditional fixtures hold labels; the others run unlabeled. */
    cd_tensor *labels = cd_fixture_has(f, "labels") ? fixture_tensor(f, "labels") : NULL;
    ck_assert_int_eq(labels != NULL, cd_decoder_class_count(d) > 0);
    CD_ASSERT_OK(cd_decoder_forward_labeled(d, z, tau, labels, out));
    const float *want = cd_fixture_get(f, "out", NULL);
    compare(&worst, file, "out", cd_tensor_data(out), want, n, max_abs(want, n));

    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_OK(cd_decoder_backward(d, dout, dz));
    want = cd_fixture_get(f, "dz", NULL);
    compare(&worst, file, "dz", cd_tensor_data(dz), want, n, max_abs(want, n));

    char name[CD_PARAMS_MAX_NAME + 16];
    double largest = 0.0;
    for (int64_t i = 0; i < cd_params_count(p); i++) {
        int64_t m = 0;
        snprintf(name, sizeof name, "grad.%s", cd_params_name(p, i));
        const float *g = cd_fixture_get(f, name, &m);
        largest = fmax(largest, max_abs(g, m));
    }
    for (int64_t i = 0; i < cd_params_count(p); i++) {
        int64_t m = 0;
        snprintf(name, sizeof name, "grad.%s", cd_params_name(p, i));
        want = cd_fixture_get(f, name, &m);
        ck_assert_int_eq(m, cd_params_numel_at(p, i));
        compare(&worst, file, name, cd_params_grad(p, i), want, m, grad_scale(f, name, largest));
    }

    printf("parity %s: worst error %.2e x scale, in %s (tolerance %.0e x scale)\n", file,
           worst.ratio, worst.what, ATOL);

    cd_tensor_free(z);
    cd_tensor_free(tau);
    cd_tensor_free(labels);
    cd_tensor_free(dout);
    cd_tensor_free(out);
    cd_tensor_free(dz);
    cd_decoder_free(d);
    cd_fixture_free(f);
}

START_TEST(cnn_report_config)
{
    /* The report's CNN at 28 x 28 with perturbed LayerNorm affines. */
    check_fixture("decoder_cnn.bin");
}
END_TEST

START_TEST(cnn_trained)
{
    /* 2 channels, 20 x 12, hidden 8,16,8, kernel 5, 12 frequencies, a
     * 64-wide MLP with 2 hidden layers; weights after 5 Adam steps. */
    check_fixture("decoder_cnn_trained.bin");
}
END_TEST

START_TEST(unet_small)
{
    /* dim 8, mults 1,2,4, 2 heads of 8, at 12 x 20. */
    check_fixture("decoder_unet.bin");
}
END_TEST

START_TEST(unet_trained)
{
    /* 2 channels, dim 6, mults 1,2,2, 3 heads of 4, ConvNeXt mult 1, at
     * 16 x 8; weights after 5 Adam steps. */
    check_fixture("decoder_unet_trained.bin");
}
END_TEST

START_TEST(cnn_colour_32)
{
    /* 3 channels at 32 x 32: hidden 8,16,8, kernel 5, a 32-wide MLP with
     * one hidden layer, perturbed LayerNorm affines. */
    check_fixture("decoder_cnn_rgb32.bin");
}
END_TEST

START_TEST(unet_colour_32)
{
    /* 3 channels at 32 x 32: dim 8, mults 1,2,2, 2 heads of 4, ConvNeXt
     * mult 1. */
    check_fixture("decoder_unet_rgb32.bin");
}
END_TEST

START_TEST(cnn_classes)
{
    /* 4 classes at 12 x 16; labels 2, -1 ("no class") and 0. */
    check_fixture("decoder_cnn_classes.bin");
}
END_TEST

START_TEST(unet_classes)
{
    /* 5 classes, dim 8, mults 1,2, at 8 x 12; labels 2, -1 and 0. */
    check_fixture("decoder_unet_classes.bin");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("decoder_parity");
    TCase *tc = tcase_create("decoder_parity");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cnn_report_config);
    tcase_add_test(tc, cnn_trained);
    tcase_add_test(tc, unet_small);
    tcase_add_test(tc, unet_trained);
    tcase_add_test(tc, cnn_colour_32);
    tcase_add_test(tc, unet_colour_32);
    tcase_add_test(tc, cnn_classes);
    tcase_add_test(tc, unet_classes);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
