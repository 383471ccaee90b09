/* check_unet.c - the ConvNeXt UNet decoder through the public API: the
 * report's parameter names and count, gradient checks of the whole network
 * against finite differences, shape errors, thread-count independence and a
 * batch-128 forward and backward.
 *
 * The "small" case runs in seconds and under valgrind
 * (CK_RUN_CASE=small CK_FORK=no); the "report" case uses the full model. */
#include "test_util.h"

#include <math.h>

#include "colddiff_experimental.h"
#include "gradcheck.h"

static cd_tensor *tau_tensor(int64_t N)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 1, (int64_t[]){N}));
    for (int64_t i = 0; i < N; i++) cd_tensor_data(t)[i] = (float)(i + 1) / (float)(N + 2);
    return t;
}

/* Gradient-check a whole UNet (see cd_gc_check_decoder). */
static void check_network(cd_decoder *d, int64_t N, int64_t C, int64_t H, int64_t W,
                          const char *name, double max_maa)
{
    cd_gc_opts o = cd_gc_default_opts();
    o.max_maa = max_maa;
    o.max_elems = 400;
    /* Float forwards through several LayerNorms leave about 1e-5 of noise
     * in each difference quotient, as large as the smallest dz; the
     * five-point stencil is fourth order, so a wider step costs nothing. */
    o.eps = 4e-2;
    double worst = cd_gc_check_decoder(d, N, C, H, W, name, &o, 1.0f);
    printf("%s: worst asymmetry %.3g\n", name, worst);
}

static cd_decoder *make_unet(bool small, uint64_t seed)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    if (small) {
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 4));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

/* ---- small configuration ---------------------------------------------------- */

START_TEST(unet_gradients_square)
{
    cd_decoder *d = make_unet(true, 17);
    check_network(d, 3, 1, 8, 8, "unet N=3 8x8", 2e-3);
    check_network(d, 1, 1, 8, 8, "unet N=1 8x8", 2e-3);
    cd_decoder_free(d);
}
END_TEST

START_TEST(unet_gradients_nonsquare)
{
    cd_decoder *d = make_unet(true, 23);
    check_network(d, 3, 1, 8, 12, "unet N=3 8x12", 2e-3);
    check_network(d, 1, 1, 8, 12, "unet N=1 8x12", 2e-3);
    cd_decoder_free(d);
}
END_TEST

START_TEST(unet_small_parameters)
{
    cd_decoder *d = make_unet(true, 1);
    cd_params *p = cd_decoder_params(d);
    int64_t idx, shape[4];
    /* Two levels: downs.1 is the last, so it has no downsample and only
     * ups.0 exists; ups.0.0 takes 2 x 16 channels to 8. */
    CD_ASSERT_STATUS(cd_params_find(p, "downs.1.3.weight", &idx), CD_ERR_NOT_FOUND);
    CD_ASSERT_STATUS(cd_params_find(p, "ups.1.0.ds_conv.weight", &idx), CD_ERR_NOT_FOUND);
    CD_ASSERT_OK(cd_params_find(p, "ups.0.0.res_conv.weight", &idx));
    CD_ASSERT_OK(cd_params_shape(p, idx, shape, 4));
    ck_assert_int_eq(shape[0], 8);
    ck_assert_int_eq(shape[1], 32);
    CD_ASSERT_OK(cd_params_find(p, "downs.1.2.fn.fn.to_qkv.weight", &idx));
    CD_ASSERT_OK(cd_params_shape(p, idx, shape, 4));
    ck_assert_int_eq(shape[0], 3 * 2 * 4);
    ck_assert_int_eq(shape[1], 16);
    cd_decoder_free(d);
}
END_TEST

START_TEST(unet_shape_errors)
{
    cd_decoder *d = make_unet(true, 3);
    cd_tensor *z = cd_test_tensor4(2, 1, 7, 8), *out = cd_test_tensor4(2, 1, 7, 8),
              *tau = tau_tensor(2);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("multiples of 2");
    CD_ASSERT_ERROR_MENTIONS("7x8");
    int64_t bytes = -1;
    CD_ASSERT_STATUS(cd_decoder_workspace_size(d, 2, 8, 5, &bytes), CD_ERR_SHAPE);
    CD_ASSERT_OK(cd_decoder_workspace_size(d, 2, 8, 6, &bytes));
    ck_assert_int_gt(bytes, 0);
    /* Four levels need multiples of 8: 28 x 28 is not one. */
    cd_decoder_config *cfg = NULL;
    cd_rng *rng = NULL;
    cd_decoder *d4 = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_OK(
        cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 1, 1, 1}, 4));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 4));
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_decoder_create(&d4, cfg, rng));
    CD_ASSERT_STATUS(cd_decoder_workspace_size(d4, 1, 28, 28, &bytes), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("multiples of 8");
    CD_ASSERT_OK(cd_decoder_workspace_size(d4, 1, 32, 24, &bytes));
    cd_decoder_free(d4);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    cd_tensor_free(z);
    cd_tensor_free(out);
    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

/* Forward and backward at one thread and at two give the same bits. */
static void run_step(cd_decoder *d, int64_t threads, int64_t N, int64_t H, int64_t W,
                     float *out_copy, float *grad_copy, float *dz_copy)
{
    CD_ASSERT_OK(cd_set_num_threads(threads));
    cd_tensor *z = cd_test_tensor4(N, 1, H, W), *out = cd_test_tensor4(N, 1, H, W),
              *dz = cd_test_tensor4(N, 1, H, W);
    cd_tensor *tau = tau_tensor(N);
    cd_gc_randn(cd_tensor_data(z), N * H * W, 9, 1.0f);
    cd_params *p = cd_decoder_params(d);
    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    CD_ASSERT_OK(cd_decoder_backward(d, out, dz));
    memcpy(out_copy, cd_tensor_data(out), (size_t)(N * H * W) * sizeof(float));
    memcpy(dz_copy, cd_tensor_data(dz), (size_t)(N * H * W) * sizeof(float));
    memcpy(grad_copy, cd_params_grad(p, -1), (size_t)cd_params_numel(p) * sizeof(float));
    cd_tensor_free(z);
    cd_tensor_free(out);
    cd_tensor_free(dz);
    cd_tensor_free(tau);
}

static void check_thread_independence(bool small, int64_t N, int64_t H, int64_t W)
{
    cd_decoder *d = make_unet(small, 5);
    const int64_t saved = cd_get_num_threads();
    const size_t n = (size_t)(N * H * W), np = (size_t)cd_decoder_param_count(d);
    float *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float));
    float *z1 = malloc(n * sizeof(float)), *z2 = malloc(n * sizeof(float));
    float *g1 = malloc(np * sizeof(float)), *g2 = malloc(np * sizeof(float));
    run_step(d, 1, N, H, W, o1, g1, z1);
    run_step(d, 2, N, H, W, o2, g2, z2);
    CD_ASSERT_OK(cd_set_num_threads(saved));
    ck_assert_msg(memcmp(o1, o2, n * sizeof(float)) == 0, "output depends on threads");
    ck_assert_msg(memcmp(z1, z2, n * sizeof(float)) == 0, "dz depends on threads");
    ck_assert_msg(memcmp(g1, g2, np * sizeof(float)) == 0, "gradients depend on threads");
    free(o1), free(o2), free(z1), free(z2), free(g1), free(g2);
    cd_decoder_free(d);
}

START_TEST(unet_threads_small) { check_thread_independence(true, 5, 8, 12); }
END_TEST

/* ---- the report's model ------------------------------------------------------ */

START_TEST(unet_report_parameters)
{
    cd_decoder *d = make_unet(false, 1);
    /* The report's UNet: 3,733,172 parameters (docs/models.md, Decoders). */
    ck_assert_int_eq(cd_decoder_param_count(d), 3733172);
    cd_params *p = cd_decoder_params(d);
    static const struct {
        const char *name;
        int64_t rank;
        int64_t shape[4];
    } want[] = {
        {"time_mlp.1.weight", 2, {128, 32}},
        {"time_mlp.3.bias", 1, {32}},
        {"downs.0.0.mlp.1.weight", 2, {1, 32}},
        {"downs.0.0.ds_conv.weight", 4, {1, 1, 7, 7}},
        {"downs.0.0.res_conv.weight", 4, {32, 1, 1, 1}},
        {"downs.0.1.ds_conv.weight", 4, {32, 1, 7, 7}},
        {"downs.0.1.net.0.weight", 4, {64, 32, 3, 3}},
        {"downs.0.1.net.2.weight", 4, {32, 64, 3, 3}},
        {"downs.0.2.fn.fn.to_qkv.weight", 4, {384, 32, 1, 1}},
        {"downs.0.2.fn.fn.to_out.weight", 4, {32, 128, 1, 1}},
        {"downs.0.2.fn.fn.to_out.bias", 1, {32}},
        {"downs.1.3.weight", 4, {64, 64, 4, 4}},
        {"downs.2.1.mlp.1.weight", 2, {128, 32}},
        {"mid_block1.net.0.weight", 4, {256, 128, 3, 3}},
        {"mid_attn.fn.fn.to_qkv.weight", 4, {384, 128, 1, 1}},
        {"mid_block2.ds_conv.bias", 1, {128}},
        {"ups.0.0.ds_conv.weight", 4, {256, 1, 7, 7}},
        {"ups.0.0.res_conv.weight", 4, {64, 256, 1, 1}},
        {"ups.0.3.weight", 4, {64, 64, 4, 4}},
        {"ups.1.0.mlp.1.weight", 2, {128, 32}},
        {"ups.1.3.weight", 4, {32, 32, 4, 4}},
        {"final_conv.0.net.2.weight", 4, {32, 64, 3, 3}},
        {"final_conv.1.weight", 4, {1, 32, 1, 1}},
        {"final_conv.1.bias", 1, {1}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t idx = -1, shape[8];
        CD_ASSERT_OK(cd_params_find(p, want[i].name, &idx));
        ck_assert_int_eq(cd_params_rank(p, idx), want[i].rank);
        CD_ASSERT_OK(cd_params_shape(p, idx, shape, 8));
        for (int64_t k = 0; k < want[i].rank; k++)
            ck_assert_msg(shape[k] == want[i].shape[k], "%s dim %d: %lld", want[i].name, (int)k,
                          (long long)shape[k]);
    }
    static const char *absent[] = {
        "downs.2.3.weight",
        "downs.2.3.bias",
        "final_conv.0.mlp.1.weight",
        "final_conv.0.res_conv.weight",
        "downs.0.1.res_conv.weight",
        "ups.2.0.ds_conv.weight",
        "downs.0.2.fn.fn.to_qkv.bias",
        "mid_attn.fn.norm.weight",
        "time_mlp.0.weight",
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        int64_t idx;
        CD_ASSERT_STATUS(cd_params_find(p, absent[i], &idx), CD_ERR_NOT_FOUND);
    }
    /* PyTorch's state_dict order: time_mlp, downs, ups, mid, final_conv. */
    ck_assert_str_eq(cd_params_name(p, 0), "time_mlp.1.weight");
    ck_assert_str_eq(cd_params_name(p, cd_params_count(p) - 1), "final_conv.1.bias");
    int64_t i_up, i_mid;
    CD_ASSERT_OK(cd_params_find(p, "ups.1.3.bias", &i_up));
    CD_ASSERT_OK(cd_params_find(p, "mid_block1.mlp.1.weight", &i_mid));
    ck_assert_int_eq(i_mid, i_up + 1);
    int64_t bytes = 0;
    CD_ASSERT_OK(cd_decoder_workspace_size(d, 128, 28, 28, &bytes));
    ck_assert_int_gt(bytes, 0);
    printf("unet workspace at batch 128, 28x28: %.1f MiB\n", (double)bytes / 1048576.0);
    cd_decoder_free(d);
}
END_TEST

/* The report's model at a training batch: runs, and gives finite outputs
 * and gradients. (Its speed is measured by tests/bench/bench_decoder.) */
/* A sample's output does not depend on the batch around it: the batched
 * paths (one task per image with fused epilogues, from 4 images on) agree
 * with single-image forwards, which take the other paths. */
START_TEST(unet_batch_matches_single)
{
    const int64_t N = 6, H = 28, W = 28, S = H * W;
    cd_decoder *d = make_unet(false, 3);
    cd_tensor *z = cd_test_tensor4(N, 1, H, W), *out = cd_test_tensor4(N, 1, H, W),
              *tau = tau_tensor(N);
    cd_tensor *z1 = cd_test_tensor4(1, 1, H, W), *out1 = cd_test_tensor4(1, 1, H, W),
              *tau1 = tau_tensor(1);
    cd_gc_randn(cd_tensor_data(z), N * S, 12, 1.0f);
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    double worst = 0.0;
    for (int64_t n = 0; n < N; n++) {
        memcpy(cd_tensor_data(z1), cd_tensor_data(z) + n * S, (size_t)S * sizeof(float));
        cd_tensor_data(tau1)[0] = cd_tensor_data(tau)[n];
        CD_ASSERT_OK(cd_decoder_forward(d, z1, tau1, out1));
        for (int64_t i = 0; i < S; i++) {
            const double a = cd_tensor_data(out)[n * S + i], b = cd_tensor_data(out1)[i];
            worst = fmax(worst, fabs(a - b) / (fabs(b) + 1e-2));
        }
    }
    printf("unet batch of %lld vs single images: worst relative difference %.3g\n", (long long)N,
           worst);
    ck_assert_msg(worst < 1e-4, "batched and single forwards differ by %g", worst);
    cd_tensor_free(z), cd_tensor_free(out), cd_tensor_free(tau);
    cd_tensor_free(z1), cd_tensor_free(out1), cd_tensor_free(tau1);
    cd_decoder_free(d);
}
END_TEST

START_TEST(unet_report_batch128)
{
    const int64_t N = CD_TEST_SANITIZED ? 16 : 128;
    cd_decoder *d = make_unet(false, 2);
    cd_tensor *z = cd_test_tensor4(N, 1, 28, 28), *out = cd_test_tensor4(N, 1, 28, 28),
              *tau = tau_tensor(N);
    cd_gc_randn(cd_tensor_data(z), N * 784, 3, 1.0f);
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    CD_ASSERT_OK(cd_params_zero_grad(cd_decoder_params(d)));
    CD_ASSERT_OK(cd_decoder_backward(d, out, NULL));
    const float *o = cd_tensor_data(out);
    for (int64_t i = 0; i < N * 784; i++) ck_assert(isfinite(o[i]));
    cd_params *p = cd_decoder_params(d);
    const float *g = cd_params_grad(p, -1);
    double norm = 0;
    for (int64_t i = 0; i < cd_params_numel(p); i++) norm += (double)g[i] * g[i];
    ck_assert_msg(isfinite(norm) && norm > 0, "gradient norm %g", norm);
    cd_tensor_free(z);
    cd_tensor_free(out);
    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

START_TEST(unet_threads_report) { check_thread_independence(false, 6, 28, 28); }
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("unet");
    TCase *small = tcase_create("small");
    tcase_set_timeout(small, 600);
    tcase_add_test(small, unet_gradients_square);
    tcase_add_test(small, unet_gradients_nonsquare);
    tcase_add_test(small, unet_small_parameters);
    tcase_add_test(small, unet_shape_errors);
    tcase_add_test(small, unet_threads_small);
    suite_add_tcase(s, small);
    TCase *report = tcase_create("report");
    tcase_set_timeout(report, 600);
    tcase_add_test(report, unet_report_parameters);
    tcase_add_test(report, unet_threads_report);
    tcase_add_test(report, unet_batch_matches_single);
    tcase_add_test(report, unet_report_batch128);
    suite_add_tcase(s, report);
    return s;
}

CD_TEST_MAIN(make_suite)
