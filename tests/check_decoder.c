/* check_decoder.c - the decoder networks through the public API: shapes,
 * parameter names and counts, errors, and gradient checks of the whole
 * network against finite differences. */
#include "test_util.h"

#include <math.h>

#include "colddiff_experimental.h"
#include "gradcheck.h"
#include "nn/decoder.h"

/* Gradient-check a whole CNN (see cd_gc_check_decoder). */
static void check_network(cd_decoder *d, int64_t N, int64_t C, int64_t H, int64_t W,
                          const char *name, double max_maa)
{
    cd_gc_opts o = cd_gc_default_opts();
    o.max_maa = max_maa;
    o.max_elems = 400;
    o.eps = 2e-2;
    cd_gc_check_decoder(d, N, C, H, W, name, &o, 0.5f);
}

static cd_decoder *small_cnn(int64_t H, int64_t W)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){3, 4, 2}, 3));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, H));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, W));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_FREQS, 4));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 8));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 2));
    CD_ASSERT_OK(cd_rng_create(&rng, 17));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

START_TEST(cnn_gradients)
{
    /* Batch 1 and 3, non-square images. */
    cd_decoder *d = small_cnn(5, 6);
    check_network(d, 3, 1, 5, 6, "cnn N=3 5x6", 2e-3);
    check_network(d, 1, 1, 5, 6, "cnn N=1 5x6", 2e-3);
    cd_decoder_free(d);
}
END_TEST

START_TEST(cnn_report_parameters)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    /* The report's CNN: 291,217 with the C x H x W LayerNorm affines
     * (docs/models.md, Decoders). */
    ck_assert_int_eq(cd_decoder_param_count(d), 291217);
    cd_params *p = cd_decoder_params(d);
    static const struct {
        const char *name;
        int64_t rank;
        int64_t shape[4];
    } want[] = {
        {"blocks.0.net.0.weight", 4, {16, 1, 7, 7}},
        {"blocks.0.net.1.weight", 3, {16, 28, 28}},
        {"blocks.3.net.0.weight", 4, {16, 32, 7, 7}},
        {"blocks.4.weight", 4, {1, 16, 3, 3}},
        {"blocks.4.bias", 1, {1}},
        {"time_embed.0.weight", 2, {128, 32}},
        {"time_embed.6.weight", 2, {16, 128}},
        {"time_embed.6.bias", 1, {16}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t idx = -1, shape[8];
        CD_ASSERT_OK(cd_params_find(p, want[i].name, &idx));
        ck_assert_int_eq(cd_params_rank(p, idx), want[i].rank);
        CD_ASSERT_OK(cd_params_shape(p, idx, shape, 8));
        for (int64_t k = 0; k < want[i].rank; k++) ck_assert_int_eq(shape[k], want[i].shape[k]);
    }
    int64_t idx;
    CD_ASSERT_STATUS(cd_params_find(p, "time_embed.8.weight", &idx), CD_ERR_NOT_FOUND);
    /* LayerNorm affines start at 1 and 0; a conv bias is within 1/sqrt(fan_in). */
    CD_ASSERT_OK(cd_params_find(p, "blocks.2.net.1.weight", &idx));
    ck_assert(cd_params_data(p, idx)[100] == 1.0f);
    CD_ASSERT_OK(cd_params_find(p, "blocks.2.net.0.bias", &idx));
    for (int k = 0; k < 32; k++)
        ck_assert(fabsf(cd_params_data(p, idx)[k]) <= 1.0f / sqrtf(32 * 49));
    int64_t bytes = 0;
    CD_ASSERT_OK(cd_decoder_workspace_size(d, 128, 28, 28, &bytes));
    ck_assert_int_gt(bytes, 0);
    cd_decoder_free(d);
    cd_decoder_config_free(cfg);
    cd_rng_free(rng);
}
END_TEST

START_TEST(cnn_bad_input_is_an_error)
{
    cd_decoder *d = small_cnn(5, 6);
    cd_tensor *z = cd_test_tensor4(2, 1, 5, 6), *out = cd_test_tensor4(2, 1, 5, 6), *tau = NULL;
    cd_tensor *z2 = cd_test_tensor4(2, 2, 5, 6), *z3 = cd_test_tensor4(2, 1, 6, 6);
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){2}));
    CD_ASSERT_STATUS(cd_decoder_backward(d, out, NULL), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z2, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("channel");
    CD_ASSERT_STATUS(cd_decoder_forward(d, z3, tau, out), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("5x6");
    cd_tensor_data(tau)[1] = NAN;
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("tau[1]");
    cd_tensor_data(tau)[1] = 0.5f;
    /* z[1][0][3][4]: image 1, element 3 * 6 + 4 of its 30. */
    cd_tensor_data(z)[30 + 22] = NAN;
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("z[52] is nan (image 1, channel 0, row 3, column 4)");
    cd_tensor_data(z)[30 + 22] = -INFINITY;
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, out), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("z[52] is -inf");
    cd_tensor_data(z)[30 + 22] = 0.0f;
    CD_ASSERT_STATUS(cd_decoder_forward(NULL, z, tau, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, NULL, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z, tau, z3), CD_ERR_SHAPE);
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    CD_ASSERT_STATUS(cd_decoder_backward(d, z3, NULL), CD_ERR_SHAPE);
    /* A NaN in dout is refused before the gradients or dz are touched. */
    cd_params *p = cd_decoder_params(d);
    CD_ASSERT_OK(cd_params_zero_grad(p));
    cd_tensor_fill(z, 7.0f);
    cd_tensor_data(out)[59] = INFINITY;
    CD_ASSERT_STATUS(cd_decoder_backward(d, out, z), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("dout[59] is inf (image 1, channel 0, row 4, column 5)");
    ck_assert(cd_tensor_data(z)[0] == 7.0f);
    for (int64_t i = 0; i < cd_params_numel(p); i++) ck_assert(cd_params_grad(p, -1)[i] == 0.0f);
    cd_tensor_data(out)[59] = 0.0f;
    CD_ASSERT_OK(cd_decoder_backward(d, out, z));
    cd_tensor_free(z);
    cd_tensor_free(z2);
    cd_tensor_free(z3);
    cd_tensor_free(out);
    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

START_TEST(cnn_save_load_round_trip)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "cnn.cdm");
    cd_decoder *d = small_cnn(5, 6), *e = NULL;
    CD_ASSERT_OK(cd_decoder_save(d, path));
    CD_ASSERT_OK(cd_decoder_load(&e, path));
    ck_assert_int_eq(cd_decoder_get_kind(e), CD_DECODER_CNN);
    cd_params *p = cd_decoder_params(d), *q = cd_decoder_params(e);
    ck_assert_int_eq(cd_params_numel(p), cd_params_numel(q));
    ck_assert_mem_eq(cd_params_data(p, -1), cd_params_data(q, -1),
                     (size_t)cd_params_numel(p) * sizeof(float));
    cd_decoder_config *cfg = NULL;
    int64_t v;
    CD_ASSERT_OK(cd_decoder_get_config(e, &cfg));
    CD_ASSERT_OK(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_WIDTH, &v));
    ck_assert_int_eq(v, 6);
    cd_decoder_config_free(cfg);

    /* Same outputs. */
    cd_tensor *z = cd_test_tensor4(2, 1, 5, 6), *o1 = cd_test_tensor4(2, 1, 5, 6),
              *o2 = cd_test_tensor4(2, 1, 5, 6);
    cd_tensor *tau = NULL;
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){2}));
    cd_gc_randn(cd_tensor_data(z), 60, 3, 1.0f);
    CD_ASSERT_OK(cd_tensor_fill(tau, 0.25f));
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, o1));
    CD_ASSERT_OK(cd_decoder_forward(e, z, tau, o2));
    ck_assert_mem_eq(cd_tensor_data(o1), cd_tensor_data(o2), 60 * sizeof(float));

    /* A corrupt file is an error and produces no decoder. */
    size_t len = 0;
    uint8_t *bytes = cd_test_read_file(path, &len);
    bytes[len / 2] ^= 0x10;
    cd_test_write_file(path, bytes, len);
    cd_decoder *bad = (cd_decoder *)0x1;
    CD_ASSERT_STATUS(cd_decoder_load(&bad, path), CD_ERR_CHECKSUM);
    ck_assert_ptr_null(bad);
    cd_test_write_file(path, bytes, len / 3);
    CD_ASSERT_STATUS(cd_decoder_load(&bad, path), CD_ERR_FORMAT);
    free(bytes);
    cd_test_path(path, sizeof path, dir, "missing.cdm");
    CD_ASSERT_STATUS(cd_decoder_load(&bad, path), CD_ERR_NOT_FOUND);
    cd_test_path(path, sizeof path, dir, "no/such/dir/x.cdm");
    CD_ASSERT_STATUS(cd_decoder_save(d, path), CD_ERR_NOT_FOUND);

    cd_tensor_free(z);
    cd_tensor_free(o1);
    cd_tensor_free(o2);
    cd_tensor_free(tau);
    cd_decoder_free(d);
    cd_decoder_free(e);
}
END_TEST

/* Asking for another shape's workspace leaves the current plan intact,
 * huge batches are refused, and dz may not alias dout. */
START_TEST(workspace_query_between_calls)
{
    cd_decoder *d = small_cnn(5, 6);
    cd_tensor *z = cd_test_tensor4(2, 1, 5, 6), *o1 = cd_test_tensor4(2, 1, 5, 6),
              *o2 = cd_test_tensor4(2, 1, 5, 6);
    cd_tensor *tau = NULL, *dz = cd_test_tensor4(2, 1, 5, 6);
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){2}));
    cd_gc_randn(cd_tensor_data(z), 60, 8, 1.0f);
    CD_ASSERT_OK(cd_tensor_fill(tau, 0.3f));
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, o1));
    int64_t small = 0, big = 0;
    CD_ASSERT_OK(cd_decoder_workspace_size(d, 2, 5, 6, &small));
    CD_ASSERT_OK(cd_decoder_workspace_size(d, 64, 5, 6, &big));
    ck_assert_int_gt(big, 16 * small);
    CD_ASSERT_OK(cd_decoder_backward(d, o1, dz)); /* still the N = 2 plan */
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, o2));
    ck_assert_mem_eq(cd_tensor_data(o1), cd_tensor_data(o2), 60 * sizeof(float));
    CD_ASSERT_STATUS(cd_decoder_workspace_size(d, INT64_MAX, 5, 6, &big), CD_ERR_OVERFLOW);
    CD_ASSERT_STATUS(cd_decoder_workspace_size(d, INT64_C(1) << 40, 5, 6, &big), CD_ERR_OVERFLOW);
    CD_ASSERT_STATUS(cd_decoder_backward(d, o2, o2), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(z);
    cd_tensor_free(o1);
    cd_tensor_free(o2);
    cd_tensor_free(dz);
    cd_tensor_free(tau);
    cd_decoder_free(d);
}
END_TEST

/* cd_decoder_infer gives cd_decoder_forward's bits from a plan that keeps
 * nothing for backward (and shares the blocks' temporaries), whichever
 * plan the workspace held before; a backward after it is refused. The
 * report's CNN (four layers: its buffers take turns) and UNet. */
START_TEST(infer_equals_forward)
{
    for (int k = 0; k < 2; k++) {
        const cd_decoder_kind type = k ? CD_DECODER_UNET : CD_DECODER_CNN;
        cd_decoder_config *cfg = NULL;
        cd_decoder *d = NULL;
        cd_rng *rng = NULL;
        CD_ASSERT_OK(cd_decoder_config_create(&cfg, type));
        CD_ASSERT_OK(cd_rng_create(&rng, 11));
        CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
        const int64_t N = 2, n = N * 28 * 28;
        cd_tensor *z = cd_test_tensor4(N, 1, 28, 28), *tau = NULL;
        cd_tensor *a = cd_test_tensor4(N, 1, 28, 28), *b = cd_test_tensor4(N, 1, 28, 28);
        cd_tensor *c = cd_test_tensor4(N, 1, 28, 28);
        CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){N}));
        cd_gc_randn(cd_tensor_data(z), n, 3, 1.0f);
        cd_tensor_data(tau)[0] = 0.2f, cd_tensor_data(tau)[1] = 0.7f;
        /* Fresh decoder: the forward-only plan alone. */
        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, b));
        CD_ASSERT_STATUS(cd_decoder_backward(d, b, NULL), CD_ERR_STATE);
        CD_ASSERT_OK(cd_decoder_forward(d, z, tau, a));
        ck_assert_msg(memcmp(cd_tensor_data(a), cd_tensor_data(b), (size_t)n * sizeof(float)) == 0,
                      "%s: infer differs from forward", k ? "unet" : "cnn");
        /* In the training plan's memory, between a forward and its backward. */
        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, c));
        ck_assert(memcmp(cd_tensor_data(a), cd_tensor_data(c), (size_t)n * sizeof(float)) == 0);
        CD_ASSERT_STATUS(cd_decoder_backward(d, a, NULL), CD_ERR_STATE);
        CD_ASSERT_ERROR_MENTIONS("cd_decoder_infer");
        CD_ASSERT_OK(cd_decoder_forward(d, z, tau, c));
        cd_params *p = cd_decoder_params(d);
        const int64_t np = cd_params_numel(p);
        float *g1 = malloc((size_t)np * sizeof *g1);
        ck_assert_ptr_nonnull(g1);
        CD_ASSERT_OK(cd_params_zero_grad(p));
        CD_ASSERT_OK(cd_decoder_backward(d, a, NULL));
        memcpy(g1, cd_params_grad(p, -1), (size_t)np * sizeof *g1);
        /* A backward uses up its forward (the UNet's attention overwrites
         * its q, k and v): a second one is refused, and a new forward
         * gives the same gradients again. */
        CD_ASSERT_STATUS(cd_decoder_backward(d, a, NULL), CD_ERR_STATE);
        CD_ASSERT_ERROR_MENTIONS("uses them up");
        CD_ASSERT_OK(cd_decoder_forward(d, z, tau, c));
        CD_ASSERT_OK(cd_params_zero_grad(p));
        CD_ASSERT_OK(cd_decoder_backward(d, a, NULL));
        ck_assert(memcmp(g1, cd_params_grad(p, -1), (size_t)np * sizeof *g1) == 0);
        free(g1);
        /* A forward-only plan is a fraction of a training one. Both keep
         * no gradients; the CNN's still holds its (spectral) convolution
         * workspace, the UNet's its blocks' outputs, but the blocks share
         * their temporaries. */
        int64_t train = 0, infer = 0;
        CD_ASSERT_OK(cd__decoder_plan_bytes(d, 64, 28, 28, true, &train));
        CD_ASSERT_OK(cd__decoder_plan_bytes(d, 64, 28, 28, false, &infer));
        printf("workspace at batch 64, %s: training %.1f MiB, forward-only %.1f MiB\n",
               k ? "unet" : "cnn", (double)train / 1048576.0, (double)infer / 1048576.0);
        ck_assert_msg(infer > 0 && (k ? 2 : 1.5) * (double)infer < (double)train,
                      "%s: infer %lld bytes, train %lld", k ? "unet" : "cnn", (long long)infer,
                      (long long)train);
        cd_tensor_free(z), cd_tensor_free(tau), cd_tensor_free(a), cd_tensor_free(b);
        cd_tensor_free(c);
        /* 7 images: the UNet's forward-only attention at 28 x 28 runs in
         * passes of 3, the last one short; still the same bits. */
        const int64_t N7 = 7, n7 = N7 * 28 * 28;
        cd_tensor *z7 = cd_test_tensor4(N7, 1, 28, 28), *f7 = cd_test_tensor4(N7, 1, 28, 28);
        cd_tensor *i7 = cd_test_tensor4(N7, 1, 28, 28), *tau7 = NULL;
        CD_ASSERT_OK(cd_tensor_create(&tau7, 1, (int64_t[]){N7}));
        cd_gc_randn(cd_tensor_data(z7), n7, 4, 1.0f);
        for (int64_t i = 0; i < N7; i++) cd_tensor_data(tau7)[i] = 0.1f * (float)(i + 1);
        CD_ASSERT_OK(cd_decoder_forward(d, z7, tau7, f7));
        CD_ASSERT_OK(cd_decoder_infer(d, z7, tau7, i7));
        ck_assert_msg(memcmp(cd_tensor_data(f7), cd_tensor_data(i7), (size_t)n7 * sizeof(float)) ==
                          0,
                      "%s: infer differs from forward at N = 7", k ? "unet" : "cnn");
        cd_tensor_free(z7), cd_tensor_free(f7), cd_tensor_free(i7), cd_tensor_free(tau7);
        cd_decoder_free(d);
        cd_rng_free(rng);
        cd_decoder_config_free(cfg);
    }
}
END_TEST

/* Convolutions whose weights a forward-only pass keeps prepared. */
static int64_t prepared_count(const cd_decoder *d)
{
    int64_t k = 0;
    for (int64_t i = 0; d->prepared && i < cd_params_count(d->params); i++)
        k += !!d->prepared[i].prep;
    return k;
}

/* A forward-only pass prepares the weights of the Winograd and spectral
 * convolutions once and reuses them while they are unchanged. Changing a
 * single float of any convolution's weights through cd_params_data must
 * reach the next pass, as must a batch of another size; the reference is
 * a twin decoder (same seed) that trains, so never prepares. */
START_TEST(infer_follows_changed_weights)
{
    for (int k = 0; k < 2; k++) {
        const cd_decoder_kind type = k ? CD_DECODER_UNET : CD_DECODER_CNN;
        const char *name = k ? "unet" : "cnn";
        cd_decoder_config *cfg = NULL;
        cd_decoder *d = NULL, *twin = NULL;
        cd_rng *rng = NULL, *twin_rng = NULL;
        CD_ASSERT_OK(cd_decoder_config_create(&cfg, type));
        CD_ASSERT_OK(cd_rng_create(&rng, 5));
        CD_ASSERT_OK(cd_rng_create(&twin_rng, 5));
        CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
        CD_ASSERT_OK(cd_decoder_create(&twin, cfg, twin_rng));
        const int64_t N = 2, n = N * 28 * 28, bytes = n * (int64_t)sizeof(float);
        cd_tensor *z = cd_test_tensor4(N, 1, 28, 28), *tau = NULL;
        cd_tensor *a = cd_test_tensor4(N, 1, 28, 28), *b = cd_test_tensor4(N, 1, 28, 28);
        CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){N}));
        cd_gc_randn(cd_tensor_data(z), n, 7, 1.0f);
        cd_tensor_data(tau)[0] = 0.3f, cd_tensor_data(tau)[1] = 0.9f;

        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, a));
        /* Every AVX-512 machine takes these paths for the report's
         * decoders (the CNN's 7x7 layers, the UNet's 3x3 ones). */
        const bool fast = cd__cpu_use_avx512(k ? CD__KERNELS_WINOGRAD : CD__KERNELS_SPECTRAL);
        const int64_t kept = prepared_count(d);
        printf("%s: %lld convolution(s) prepared\n", name, (long long)kept);
        ck_assert_msg(fast ? kept > 0 : kept == 0, "%s: %lld prepared", name, (long long)kept);
        CD_ASSERT_OK(cd_decoder_forward(twin, z, tau, b));
        ck_assert_msg(memcmp(cd_tensor_data(a), cd_tensor_data(b), (size_t)bytes) == 0,
                      "%s: prepared forward differs", name);
        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, a));
        ck_assert(memcmp(cd_tensor_data(a), cd_tensor_data(b), (size_t)bytes) == 0);

        /* The last float of each convolution's weights, one at a time. */
        cd_params *p = cd_decoder_params(d), *tp = cd_decoder_params(twin);
        int64_t convs = 0;
        float *before = malloc((size_t)bytes);
        ck_assert_ptr_nonnull(before);
        for (int64_t i = 0; i < cd_params_count(p); i++) {
            if (cd_params_rank(p, i) != 4) continue;
            const int64_t last = cd_params_numel_at(p, i) - 1;
            cd_params_data(p, i)[last] += 0.25f;
            cd_params_data(tp, i)[last] += 0.25f;
            memcpy(before, cd_tensor_data(a), (size_t)bytes);
            CD_ASSERT_OK(cd_decoder_infer(d, z, tau, a));
            CD_ASSERT_OK(cd_decoder_forward(twin, z, tau, b));
            ck_assert_msg(memcmp(cd_tensor_data(a), cd_tensor_data(b), (size_t)bytes) == 0,
                          "%s: infer missed a change to %s", name, cd_params_name(p, i));
            ck_assert_msg(memcmp(before, cd_tensor_data(a), (size_t)bytes) != 0,
                          "%s: changing %s changed nothing", name, cd_params_name(p, i));
            convs++;
        }
        free(before);
        ck_assert_int_gt(convs, 3);
        ck_assert_int_eq(prepared_count(d), kept);

        /* Another batch size reuses the prepared weights. */
        cd_tensor *z1 = cd_test_tensor4(1, 1, 28, 28), *tau1 = NULL;
        cd_tensor *a1 = cd_test_tensor4(1, 1, 28, 28), *b1 = cd_test_tensor4(1, 1, 28, 28);
        CD_ASSERT_OK(cd_tensor_create(&tau1, 1, (int64_t[]){1}));
        memcpy(cd_tensor_data(z1), cd_tensor_data(z) + 28 * 28, 28 * 28 * sizeof(float));
        cd_tensor_data(tau1)[0] = 0.9f;
        CD_ASSERT_OK(cd_decoder_infer(d, z1, tau1, a1));
        CD_ASSERT_OK(cd_decoder_forward(twin, z1, tau1, b1));
        ck_assert(memcmp(cd_tensor_data(a1), cd_tensor_data(b1), 28 * 28 * sizeof(float)) == 0);

        /* A decoder that trains prepares nothing from its first training
         * pass on, which frees what it had. */
        CD_ASSERT_OK(cd_decoder_forward(d, z, tau, a));
        ck_assert_int_eq(prepared_count(d), 0);
        cd_params_data(p, 0)[0] += 0.25f;
        cd_params_data(tp, 0)[0] += 0.25f;
        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, a));
        ck_assert_int_eq(prepared_count(d), 0);
        CD_ASSERT_OK(cd_decoder_forward(twin, z, tau, b));
        ck_assert(memcmp(cd_tensor_data(a), cd_tensor_data(b), (size_t)bytes) == 0);

        cd_tensor_free(z), cd_tensor_free(tau), cd_tensor_free(a), cd_tensor_free(b);
        cd_tensor_free(z1), cd_tensor_free(tau1), cd_tensor_free(a1), cd_tensor_free(b1);
        cd_decoder_free(d), cd_decoder_free(twin);
        cd_rng_free(rng), cd_rng_free(twin_rng);
        cd_decoder_config_free(cfg);
    }
}
END_TEST

/* The image shape: the CNN's fitted size; a UNet's training size, taken
 * from its backward passes only and kept in its file. */
START_TEST(image_shape_follows_training)
{
    int64_t shape[3] = {0};
    cd_decoder *cnn = small_cnn(12, 10);
    CD_ASSERT_OK(cd_decoder_image_shape(cnn, shape));
    ck_assert(shape[0] == 1 && shape[1] == 12 && shape[2] == 10);
    cd_decoder_free(cnn);

    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL, *back = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    CD_ASSERT_OK(cd_decoder_image_shape(d, shape));
    ck_assert(shape[0] == 1 && shape[1] == 28 && shape[2] == 28);
    cd_tensor *z = cd_test_tensor4(2, 1, 16, 12), *out = cd_test_tensor4(2, 1, 16, 12);
    cd_tensor *zi = cd_test_tensor4(2, 1, 8, 8), *oi = cd_test_tensor4(2, 1, 8, 8), *tau = NULL;
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){2}));
    CD_ASSERT_OK(cd_tensor_fill(tau, 0.5f));
    cd_gc_randn(cd_tensor_data(z), 2 * 16 * 12, 4, 1.0f);
    CD_ASSERT_OK(cd_decoder_forward(d, z, tau, out));
    CD_ASSERT_OK(cd_decoder_image_shape(d, shape));
    ck_assert_int_eq(shape[1], 28); /* a forward alone learns nothing */
    CD_ASSERT_OK(cd_decoder_backward(d, out, NULL));
    CD_ASSERT_OK(cd_decoder_infer(d, zi, tau, oi));
    CD_ASSERT_OK(cd_decoder_image_shape(d, shape));
    ck_assert(shape[0] == 1 && shape[1] == 16 && shape[2] == 12);
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "shape.cdm");
    CD_ASSERT_OK(cd_decoder_save(d, path));
    CD_ASSERT_OK(cd_decoder_load(&back, path));
    shape[1] = shape[2] = 0;
    CD_ASSERT_OK(cd_decoder_image_shape(back, shape));
    ck_assert(shape[1] == 16 && shape[2] == 12);
    CD_ASSERT_STATUS(cd_decoder_image_shape(NULL, shape), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_image_shape(d, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    cd_tensor_free(z), cd_tensor_free(out), cd_tensor_free(zi), cd_tensor_free(oi);
    cd_tensor_free(tau);
    cd_decoder_free(d), cd_decoder_free(back);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
}
END_TEST

/* A checkpoint whose configuration is out of bounds is a format error that
 * keeps the cause in its message. */
START_TEST(bad_configuration_in_checkpoint)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "bad.cdm");
    cd_decoder *d = small_cnn(5, 6), *e = (cd_decoder *)0x1;
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    CD_ASSERT_OK(cd__decoder_config_to_ckpt(d, ck));
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, "decoder.kernel", 4));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, cd_decoder_params(d), NULL));
    CD_ASSERT_STATUS(cd_decoder_load(&e, path), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("bad decoder configuration");
    CD_ASSERT_ERROR_MENTIONS("must be odd");
    ck_assert_ptr_null(e);
    cd__ckpt_free(ck);
    CD_ASSERT_OK(cd__ckpt_create(&ck)); /* no decoder entries at all */
    CD_ASSERT_OK(cd__ckpt_save(ck, path, cd_decoder_params(d), NULL));
    CD_ASSERT_STATUS(cd_decoder_load(&e, path), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("decoder.type");
    cd__ckpt_free(ck);
    cd_decoder_free(d);
}
END_TEST

/* A small file whose configuration claims a huge model is refused for
 * what the file lacks, before anything of the claimed size is allocated:
 * the parameters are laid out only once the file holds them all. */
START_TEST(huge_configuration_small_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "huge.cdm");
    cd_decoder *d = small_cnn(5, 6), *e = (cd_decoder *)0x1;
    cd_params *empty = NULL;
    CD_ASSERT_OK(cd_params_create(&empty));
    static const struct {
        int64_t height, width, hidden;
        bool tensors; /* the small CNN's tensors, or none */
        cd_status want;
    } cases[] = {
        /* 2048 x 2048 LayerNorms: 300 MB claimed by a file of 700 bytes. */
        {2048, 2048, 0, false, CD_ERR_NOT_FOUND},
        {4096, 4096, 4096, false, CD_ERR_NOT_FOUND},
        {4096, 4096, 4096, true, CD_ERR_SHAPE},
        {5, 6, 4096, true, CD_ERR_SHAPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd__ckpt *ck = NULL;
        CD_ASSERT_OK(cd__ckpt_create(&ck));
        CD_ASSERT_OK(cd__decoder_config_to_ckpt(d, ck));
        CD_ASSERT_OK(cd__ckpt_set_i64(ck, "decoder.height", cases[i].height));
        CD_ASSERT_OK(cd__ckpt_set_i64(ck, "decoder.width", cases[i].width));
        const int64_t h = cases[i].hidden;
        if (h) CD_ASSERT_OK(cd__ckpt_set_i64_array(ck, "decoder.hidden", (int64_t[]){h, h, h}, 3));
        CD_ASSERT_OK(
            cd__ckpt_save(ck, path, cases[i].tensors ? cd_decoder_params(d) : empty, NULL));
        cd__ckpt_free(ck);
        ck_assert_int_lt(cd_test_file_size(path), 4096);
        (void)cd__alloc_largest(true);
        CD_ASSERT_STATUS(cd_decoder_load(&e, path), cases[i].want);
        CD_ASSERT_ERROR_MENTIONS("blocks.0.net.");
        ck_assert_ptr_null(e);
        /* Fixed-size tables (the tensor list, zlib's state) only: nothing
         * that grows with the claimed sizes. */
        ck_assert_uint_lt(cd__alloc_largest(true), 1u << 20);
    }
    /* A UNet as wide as the bounds allow: terabytes of parameters. */
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_create(&ck));
    CD_ASSERT_OK(cd__decoder_config_to_ckpt(d, ck));
    CD_ASSERT_OK(cd__ckpt_set_str(ck, "decoder.type", "unet"));
    CD_ASSERT_OK(cd__ckpt_set_i64(ck, "decoder.dim", 4096));
    CD_ASSERT_OK(cd__ckpt_set_i64_array(ck, "decoder.dim_mults", (int64_t[]){64, 64, 64}, 3));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, empty, NULL));
    cd__ckpt_free(ck);
    CD_ASSERT_STATUS(cd_decoder_load(&e, path), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("time_mlp.1.weight");
    ck_assert_uint_lt(cd__alloc_largest(true), 1u << 20);
    cd_params_free(empty);
    cd_decoder_free(d);
}
END_TEST

START_TEST(config_errors)
{
    cd_decoder_config *cfg = NULL;
    int64_t v, n;
    cd_option_info info;
    CD_ASSERT_STATUS(cd_decoder_config_create(&cfg, (cd_decoder_kind)7), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_OK(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_DIM, &v));
    ck_assert_int_eq(v, 32);
    int64_t mults[8];
    CD_ASSERT_OK(cd_decoder_config_get_list(cfg, CD_DECODER_OPT_DIM_MULTS, mults, 8, &n));
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(mults[2], 4);
    CD_ASSERT_STATUS(cd_decoder_config_get_list(cfg, CD_DECODER_OPT_DIM_MULTS, mults, 2, &n),
                     CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 4), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("odd");
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HIDDEN, 3),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, (cd_decoder_option)99, 3),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, mults, 0),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, -2},
                                                2),
                     CD_ERR_RANGE);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_HEADS, &info));
    ck_assert(info.lo >= 1 && info.hi >= 4);
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 33));
    cd_rng *rng = NULL;
    cd_decoder *d = (cd_decoder *)0x1;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_STATUS(cd_decoder_create(&d, cfg, rng), CD_ERR_RANGE);
    ck_assert_ptr_null(d);
    CD_ASSERT_STATUS(cd_decoder_create(&d, NULL, rng), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(cd_decoder_params(NULL));
    ck_assert_int_eq(cd_decoder_param_count(NULL), -1);
    /* Getters on NULL: the enumerations' INVALID value, with an error. */
    cd_clear_error();
    ck_assert_int_eq(cd_decoder_get_kind(NULL), CD_DECODER_INVALID);
    ck_assert_int_eq(CD_DECODER_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_decoder_get_prediction(NULL), CD_PREDICT_INVALID);
    ck_assert_int_eq(CD_PREDICT_INVALID, -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_decoder_trained_T(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_decoder_config_free(cfg);
    cd_decoder_config_free(NULL);
    cd_decoder_free(NULL);
    cd_rng_free(rng);
}
END_TEST

/* The options model on decoder configurations: each key's description,
 * integer keys and list keys refusing each other's calls, unknown keys,
 * NULL, values out of range; a failed set keeps the old value. */
START_TEST(config_options_model)
{
    cd_option_info info;
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_KERNEL, &info));
    CD_ASSERT_OPTION_INFO(info, "kernel", CD_OPTION_INT, -1, 7);
    ck_assert(info.lo >= 1 && !info.lo_open && !info.hi_open);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_HIDDEN, &info));
    CD_ASSERT_OPTION_INFO(info, "hidden", CD_OPTION_INT_LIST, -1, 16);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_DIM_MULTS, &info));
    CD_ASSERT_OPTION_INFO(info, "dim_mults", CD_OPTION_INT_LIST, -1, 1);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_HEIGHT, &info));
    CD_ASSERT_OPTION_INFO(info, "height", CD_OPTION_INT, -1, 28);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_DIM, &info));
    CD_ASSERT_OPTION_INFO(info, "dim", CD_OPTION_INT, -1, 32);
    CD_ASSERT_OK(cd_decoder_config_option_info(CD_DECODER_OPT_TIME_HIDDEN, &info));
    CD_ASSERT_OPTION_INFO(info, "time_hidden", CD_OPTION_INT, -1, 128);
    CD_ASSERT_STATUS(cd_decoder_config_option_info((cd_decoder_option)14, &info),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_option_info((cd_decoder_option)-1, &info),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_option_info(CD_DECODER_OPT_DIM, NULL),
                     CD_ERR_INVALID_ARGUMENT);

    /* Every integer key of a fresh CNN configuration holds the default its
     * description gives (the UNet's own are in the header's comments). */
    cd_decoder_config *cfg = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    for (int k = CD_DECODER_OPT_CHANNELS; k <= CD_DECODER_OPT_CLASSES; k++) {
        const cd_decoder_option key = (cd_decoder_option)k;
        CD_ASSERT_OK(cd_decoder_config_option_info(key, &info));
        ck_assert_int_eq(info.choices, -1);
        int64_t v = -1, list[8], n = 0;
        if (info.type == CD_OPTION_INT_LIST) {
            CD_ASSERT_OK(cd_decoder_config_get_list(cfg, key, list, 8, &n));
            ck_assert_int_ge(n, 1);
            ck_assert_msg((double)list[0] == info.default_value, "%s[0] = %lld, default %g",
                          info.name, (long long)list[0], info.default_value);
            CD_ASSERT_STATUS(cd_decoder_config_get_int(cfg, key, &v), CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, key, list[0]), CD_ERR_INVALID_ARGUMENT);
        } else {
            ck_assert_int_eq(info.type, CD_OPTION_INT);
            CD_ASSERT_OK(cd_decoder_config_get_int(cfg, key, &v));
            ck_assert_msg((double)v == info.default_value, "%s = %lld, default %g", info.name,
                          (long long)v, info.default_value);
            CD_ASSERT_STATUS(cd_decoder_config_get_list(cfg, key, list, 8, &n),
                             CD_ERR_INVALID_ARGUMENT);
            CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, key, &v, 1), CD_ERR_INVALID_ARGUMENT);
            /* out of range on both sides, the value kept */
            if (info.lo > -1e18)
                CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, key, (int64_t)info.lo - 1),
                                 CD_ERR_RANGE);
            if (info.hi < 1e18)
                CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, key, (int64_t)info.hi + 1),
                                 CD_ERR_RANGE);
            int64_t again = -1;
            CD_ASSERT_OK(cd_decoder_config_get_int(cfg, key, &again));
            ck_assert_int_eq(again, v);
        }
    }
    /* A failed list set keeps the old list. */
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){5, 6}, 2));
    CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){7, 0}, 2),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN,
                                                (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 9),
                     CD_ERR_RANGE);
    int64_t list[8], n = 0, v = 0;
    CD_ASSERT_OK(cd_decoder_config_get_list(cfg, CD_DECODER_OPT_HIDDEN, list, 8, &n));
    ck_assert(n == 2 && list[0] == 5 && list[1] == 6);
    n = -1;
    CD_ASSERT_STATUS(cd_decoder_config_get_list(cfg, CD_DECODER_OPT_HIDDEN, list, 1, &n),
                     CD_ERR_SHAPE);
    ck_assert_int_eq(n, 2);
    /* An even kernel is out of range too, and keeps the old one. */
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 5));
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 6), CD_ERR_RANGE);
    CD_ASSERT_OK(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_KERNEL, &v));
    ck_assert_int_eq(v, 5);
    /* unknown keys and NULL */
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, (cd_decoder_option)14, 1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_get_int(cfg, (cd_decoder_option)-1, &v),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_set_list(cfg, (cd_decoder_option)1000, list, 1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_set_int(NULL, CD_DECODER_OPT_DIM, 8),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_get_int(NULL, CD_DECODER_OPT_DIM, &v),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_DIM, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_set_list(NULL, CD_DECODER_OPT_HIDDEN, list, 1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_decoder_config_get_list(NULL, CD_DECODER_OPT_HIDDEN, list, 8, &n),
                     CD_ERR_INVALID_ARGUMENT);
    cd_decoder_config_free(cfg);

    /* The UNet's defaults differ where its comment says. */
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_OK(cd_decoder_config_get_list(cfg, CD_DECODER_OPT_DIM_MULTS, list, 8, &n));
    ck_assert(n == 3 && list[0] == 1 && list[1] == 2 && list[2] == 4);
    CD_ASSERT_OK(cd_decoder_config_get_int(cfg, CD_DECODER_OPT_HEADS, &v));
    ck_assert_int_eq(v, 4);
    cd_decoder_config_free(cfg);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("decoder");
    TCase *tc = tcase_create("decoder");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, cnn_gradients);
    tcase_add_test(tc, cnn_report_parameters);
    tcase_add_test(tc, cnn_bad_input_is_an_error);
    tcase_add_test(tc, cnn_save_load_round_trip);
    tcase_add_test(tc, workspace_query_between_calls);
    tcase_add_test(tc, infer_equals_forward);
    tcase_add_test(tc, infer_follows_changed_weights);
    tcase_add_test(tc, image_shape_follows_training);
    tcase_add_test(tc, bad_configuration_in_checkpoint);
    tcase_add_test(tc, huge_configuration_small_file);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, config_options_model);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
