/*
 * check_decoder_sizes.c - both decoders beyond the report's 1 x 28 x 28:
 * colour images, other and non-square sizes, odd UNet sizes its levels
 * still divide. Each case runs forward, backward, infer and a save/load
 * round trip through the public API; small ones are gradient-checked, and
 * sizes or channel counts a decoder cannot take must say why.
 * PyTorch parity at 3 x 32 x 32 is in check_decoder_parity.c.
 */
#include "test_util.h"

#include <math.h>

#include "colddiff_experimental.h"
#include "gradcheck.h"

typedef struct {
    cd_decoder_kind kind;
    int64_t C, H, W;
    int64_t levels;  /* UNet: length of dim_mults (1, 2, 2, ...) */
    int64_t dim;     /* UNet: base width, 8 when 0 */
    int64_t classes; /* CD_DECODER_OPT_CLASSES */
} size_case;

static cd_decoder *make_decoder(const size_case *c, uint64_t seed)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, c->kind));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CHANNELS, c->C));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, c->H));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, c->W));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, c->classes));
    if (c->kind == CD_DECODER_CNN) {
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){4, 6, 4}, 3));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_FREQS, 4));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 8));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 1));
    } else {
        int64_t mults[8] = {1, 2, 2, 2, 2, 2, 2, 2};
        CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, mults, c->levels));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, c->dim ? c->dim : 8));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, c->dim ? 1 : 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 4));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

static cd_tensor *tau_tensor(int64_t N)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 1, (int64_t[]){N}));
    for (int64_t i = 0; i < N; i++) cd_tensor_data(t)[i] = (float)(i + 1) / (float)(N + 2);
    return t;
}

static void assert_shape(cd_decoder *d, const size_case *c, const char *what)
{
    int64_t s[3] = {0, 0, 0};
    CD_ASSERT_OK(cd_decoder_image_shape(d, s));
    ck_assert_msg(s[0] == c->C && s[1] == c->H && s[2] == c->W,
                  "%s: image shape %lldx%lldx%lld, expected %lldx%lldx%lld", what, (long long)s[0],
                  (long long)s[1], (long long)s[2], (long long)c->C, (long long)c->H,
                  (long long)c->W);
}

/* Forward, backward (dz and every parameter gradient finite, and not all
 * zero), infer equal to forward bit for bit, and a saved and loaded copy
 * that computes the same bits and knows the image shape. */
static void run_case(const size_case *c)
{
    const int64_t N = 2, n = N * c->C * c->H * c->W;
    char label[96];
    snprintf(label, sizeof label, "%s %lldx%lldx%lld", c->kind == CD_DECODER_CNN ? "cnn" : "unet",
             (long long)c->C, (long long)c->H, (long long)c->W);
    cd_decoder *d = make_decoder(c, 11), *e = NULL;
    cd_tensor *z = cd_test_tensor4(N, c->C, c->H, c->W),
              *out = cd_test_tensor4(N, c->C, c->H, c->W);
    cd_tensor *inf = cd_test_tensor4(N, c->C, c->H, c->W),
              *dz = cd_test_tensor4(N, c->C, c->H, c->W);
    cd_tensor *tau = tau_tensor(N);
    cd_gc_randn(cd_tensor_data(z), n, 5, 1.0f);

    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    cd_params *p = cd_decoder_params(d);
    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_OK(cd_decoder_backward(d, out, dz));
    double dz_norm = 0.0, g_norm = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(cd_tensor_data(out)[i]), "%s: out[%lld] not finite", label,
                      (long long)i);
        dz_norm += fabs((double)cd_tensor_data(dz)[i]);
    }
    const float *g = cd_params_grad(p, -1);
    for (int64_t i = 0; i < cd_params_numel(p); i++) {
        ck_assert_msg(isfinite(g[i]), "%s: gradient %lld not finite", label, (long long)i);
        g_norm += fabs((double)g[i]);
    }
    ck_assert_msg(dz_norm > 0 && g_norm > 0, "%s: zero gradients", label);
    assert_shape(d, c, label);

    CD_ASSERT_OK(cd_decoder_infer(d, z, tau, inf));
    ck_assert_msg(memcmp(cd_tensor_data(out), cd_tensor_data(inf), (size_t)n * sizeof(float)) == 0,
                  "%s: infer differs from forward", label);

    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "sizes.cdm");
    CD_ASSERT_OK(cd_decoder_save(d, path));
    CD_ASSERT_OK(cd_decoder_load(&e, path));
    assert_shape(e, c, label);
    CD_ASSERT_OK(cd_tensor_fill(inf, NAN));
    CD_ASSERT_OK(cd_decoder_forward(e, z, tau, inf));
    ck_assert_msg(memcmp(cd_tensor_data(out), cd_tensor_data(inf), (size_t)n * sizeof(float)) == 0,
                  "%s: the loaded decoder differs", label);
    printf("%s: %lld parameters, forward/backward/infer/save/load ok\n", label,
           (long long)cd_decoder_param_count(d));

    cd_tensor_free(z), cd_tensor_free(out), cd_tensor_free(inf), cd_tensor_free(dz);
    cd_tensor_free(tau);
    cd_decoder_free(d), cd_decoder_free(e);
}

START_TEST(cnn_colour_sizes)
{
    const size_case cases[] = {
        {CD_DECODER_CNN, 3, 32, 32, 0, 0, 0},
        {CD_DECODER_CNN, 3, 8, 12, 0, 0, 0},
        {CD_DECODER_CNN, 4, 9, 5, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}
END_TEST

START_TEST(unet_colour_sizes)
{
    const size_case cases[] = {
        {CD_DECODER_UNET, 3, 32, 32, 3, 0, 0}, {CD_DECODER_UNET, 3, 64, 64, 3, 0, 0},
        {CD_DECODER_UNET, 1, 16, 24, 3, 0, 0}, {CD_DECODER_UNET, 3, 8, 16, 2, 0, 0},
        {CD_DECODER_UNET, 2, 6, 10, 2, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}
END_TEST

/* ---- gradient checks -------------------------------------------------------- */

/* Check dz and every parameter gradient of case c against finite
 * differences at batch 2, with step eps and z of normals times z_scale.
 * On one thread: layers this small are cheaper than the pool's hand-offs,
 * which on a busy machine made the check twenty times slower. */
static void check_gradients(const size_case *c, uint64_t seed, double eps, float z_scale,
                            const char *label)
{
    cd_decoder *d = make_decoder(c, seed);
    const int64_t threads = cd_get_num_threads();
    CD_ASSERT_OK(cd_set_num_threads(1));
    cd_gc_opts o = cd_gc_default_opts();
    o.max_maa = 2e-3;
    o.max_elems = 300;
    o.eps = eps;
    double worst = cd_gc_check_decoder(d, 2, c->C, c->H, c->W, label, &o, z_scale);
    printf("%s: worst asymmetry %.3g\n", label, worst);
    CD_ASSERT_OK(cd_set_num_threads(threads));
    cd_decoder_free(d);
}

START_TEST(cnn_gradients_colour_nonsquare)
{
    const size_case c = {CD_DECODER_CNN, 3, 8, 12, 0, 0, 0};
    check_gradients(&c, 29, 2e-2, 0.5f, "cnn N=2 3x8x12");
}
END_TEST

START_TEST(unet_gradients_colour_nonsquare)
{
    /* Narrow (dim 4, one head) to stay fast: the widths are
     * checked at 8 in check_unet.c; here it is the channels and the size.
     * As in check_unet.c, the LayerNorms' float noise wants a wide step,
     * which the fourth-order stencil affords. */
    const size_case c = {CD_DECODER_UNET, 3, 8, 16, 2, 4, 0};
    check_gradients(&c, 31, 4e-2, 1.0f, "unet N=2 3x8x16");
}
END_TEST

START_TEST(gradients_with_classes)
{
    /* The label table's rows join the time embedding: its gradient is
     * checked with the rest, on a batch of a class and "no class". */
    const size_case cnn = {CD_DECODER_CNN, 3, 8, 12, 0, 0, 3};
    check_gradients(&cnn, 37, 2e-2, 0.5f, "cnn N=2 3x8x12, 3 classes");
    const size_case unet = {CD_DECODER_UNET, 1, 8, 8, 2, 4, 2};
    check_gradients(&unet, 41, 4e-2, 1.0f, "unet N=2 1x8x8, 2 classes");
}
END_TEST

/* ---- what a decoder cannot take --------------------------------------------- */

START_TEST(unet_size_errors_name_the_sizes)
{
    const size_case c = {CD_DECODER_UNET, 3, 32, 32, 3, 0, 0};
    cd_decoder *d = make_decoder(&c, 3);
    cd_tensor *tau = tau_tensor(1);
    /* Three levels halve twice: H and W must be multiples of 4. */
    const int64_t bad[][2] = {{30, 32}, {32, 18}, {2, 2}, {30, 18}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int64_t H = bad[i][0], W = bad[i][1];
        cd_tensor *z = cd_test_tensor4(1, 3, H, W), *out = cd_test_tensor4(1, 3, H, W);
        char got[32], dim[32];
        snprintf(got, sizeof got, "%lldx%lld", (long long)H, (long long)W);
        if (H % 4 && W % 4)
            snprintf(dim, sizeof dim, "H = %lld and W = %lld are not", (long long)H, (long long)W);
        else
            snprintf(dim, sizeof dim, "%s = %lld is not", H % 4 ? "H" : "W",
                     (long long)(H % 4 ? H : W));
        CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_SHAPE);
        CD_ASSERT_ERROR_MENTIONS("cd_decoder_forward");
        CD_ASSERT_ERROR_MENTIONS("multiples of 4");
        CD_ASSERT_ERROR_MENTIONS(got);
        CD_ASSERT_ERROR_MENTIONS(dim);
        CD_ASSERT_STATUS(cd_decoder_infer(d, z, tau, out), CD_ERR_SHAPE);
        CD_ASSERT_ERROR_MENTIONS("multiples of 4");
        cd_tensor_free(z), cd_tensor_free(out);
    }
    int64_t bytes = 0;
    CD_ASSERT_STATUS(cd_decoder_workspace_size(d, 1, 32, 34, &bytes), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("W = 34");

    /* The wrong channel count names both counts. */
    cd_tensor *z = cd_test_tensor4(1, 1, 32, 32), *out = cd_test_tensor4(1, 1, 32, 32);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("3 channel");
    CD_ASSERT_ERROR_MENTIONS("has 1");
    cd_tensor_free(z), cd_tensor_free(out);

    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

START_TEST(cnn_size_errors_name_the_sizes)
{
    const size_case c = {CD_DECODER_CNN, 3, 8, 12, 0, 0, 0};
    cd_decoder *d = make_decoder(&c, 3);
    cd_tensor *tau = tau_tensor(1);
    cd_tensor *z = cd_test_tensor4(1, 3, 12, 8), *out = cd_test_tensor4(1, 3, 12, 8);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("cd_decoder_forward");
    CD_ASSERT_ERROR_MENTIONS("8x12");
    CD_ASSERT_ERROR_MENTIONS("12x8");
    cd_tensor_free(z), cd_tensor_free(out);
    z = cd_test_tensor4(1, 2, 8, 12), out = cd_test_tensor4(1, 2, 8, 12);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("3 channel");
    CD_ASSERT_ERROR_MENTIONS("has 2");
    cd_tensor_free(z), cd_tensor_free(out);
    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

START_TEST(channels_out_of_bounds)
{
    cd_option_info info;
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_CHANNELS, &info));
    const int64_t lo = (int64_t)info.lo, hi = (int64_t)info.hi;
    ck_assert_int_eq(lo, 1);
    char bounds[64], text[64];
    snprintf(bounds, sizeof bounds, "[%lld, %lld]", (long long)lo, (long long)hi);
    for (int kind = CD_DECODER_CNN; kind <= CD_DECODER_UNET; kind++) {
        cd_decoder_config *cfg = NULL;
        int64_t v = -1;
        CD_ASSERT_OK(cd_decoder_config_create(&cfg, (cd_decoder_kind)kind));
        const int64_t bad[] = {0, -3, hi + 1};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CHANNELS, bad[i]),
                             CD_ERR_RANGE);
            snprintf(text, sizeof text, "%lld", (long long)bad[i]);
            CD_ASSERT_ERROR_MENTIONS("channels");
            CD_ASSERT_ERROR_MENTIONS(text);
            CD_ASSERT_ERROR_MENTIONS(bounds);
        }
        CD_ASSERT_OK(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_CHANNELS, &v));
        ck_assert_int_eq(v, 1); /* a refused value leaves the old one */
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CHANNELS, hi));
        cd_decoder_config_free(cfg);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("decoder_sizes");
    TCase *tc = tcase_create("sizes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cnn_colour_sizes);
    tcase_add_test(tc, unet_colour_sizes);
    tcase_add_test(tc, cnn_gradients_colour_nonsquare);
    tcase_add_test(tc, unet_gradients_colour_nonsquare);
    tcase_add_test(tc, gradients_with_classes);
    tcase_add_test(tc, unet_size_errors_name_the_sizes);
    tcase_add_test(tc, cnn_size_errors_name_the_sizes);
    tcase_add_test(tc, channels_out_of_bounds);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
