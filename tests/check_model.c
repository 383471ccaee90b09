/* check_model.c - the inference model file: round trips of decoder,
 * degradation and schedule, training checkpoints (with and without EMA)
 * as input, the decoder's trained T against the degradation's, and the
 * messages for a decoder-only file and a PyTorch file. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <zlib.h>

#include "core/core.h"

/* The pretrained model in examples/data/mnist-diffusion.cdm: its size and
 * the CRC-32 of its float32 weights in parameter order (docs/pretrained.md
 * records both; a retrained model changes them here too). */
#define SHIPPED_PARAMS 919844
#define SHIPPED_CRC 0x4fc5f0c3u

static cd_decoder *small_cnn(uint64_t seed)
{
    const int64_t hidden[2] = {4, 6};
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, 2));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

static cd_degradation *noise_of(int64_t T)
{
    cd_schedule *s = NULL;
    cd_degradation *g = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, T, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&g, s));
    cd_schedule_free(s);
    return g;
}

/* An imported schedule whose alpha-bar is not the product of its betas,
 * on a blur with a set prior: every part the file must keep verbatim. */
static cd_degradation *odd_blur(int64_t T)
{
    float beta[33], abar[33];
    cd_schedule *s = NULL;
    cd_degradation *g = NULL;
    for (int64_t t = 0; t <= T; t++)
        beta[t] = 0.5f + 0.01f * (float)t, abar[t] = 1.0f / (1.0f + (float)t);
    CD_ASSERT_OK(cd_schedule_create_arrays(&s, beta, abar, T));
    CD_ASSERT_OK(cd_degradation_create_blur(&g, s, 5, CD_PADDING_CIRCULAR));
    CD_ASSERT_OK(cd_degradation_set_prior(g, -0.3, 0.04, 0.001));
    cd_schedule_free(s);
    return g;
}

static void assert_same_weights(cd_decoder *a, const float *want)
{
    cd_params *p = cd_decoder_params(a);
    ck_assert_mem_eq(cd_params_data(p, -1), want, (size_t)cd_params_numel(p) * sizeof(float));
}

static void assert_same_schedule(const cd_degradation *a, const cd_degradation *b)
{
    const int64_t n = cd_degradation_T(a) + 1;
    ck_assert_int_eq(cd_degradation_T(b) + 1, n);
    float *ba = malloc((size_t)n * 4), *aa = malloc((size_t)n * 4);
    float *bb = malloc((size_t)n * 4), *ab = malloc((size_t)n * 4);
    CD_ASSERT_OK(cd_degradation_copy_schedule(a, ba, aa, n));
    CD_ASSERT_OK(cd_degradation_copy_schedule(b, bb, ab, n));
    ck_assert_mem_eq(ba, bb, (size_t)n * 4);
    ck_assert_mem_eq(aa, ab, (size_t)n * 4);
    free(ba), free(aa), free(bb), free(ab);
}

START_TEST(round_trip_keeps_everything)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "model.cdm");
    cd_decoder *dec = small_cnn(3), *back = NULL;
    cd_degradation *deg = odd_blur(32), *gback = NULL;
    ck_assert_int_eq(cd_decoder_trained_T(dec), 0);
    CD_ASSERT_OK(cd_model_save(path, dec, deg));
    CD_ASSERT_OK(cd_model_load(path, &back, &gback));
    assert_same_weights(back, cd_params_data(cd_decoder_params(dec), -1));
    ck_assert_int_eq(cd_decoder_get_kind(back), CD_DECODER_CNN);
    ck_assert_int_eq(cd_decoder_trained_T(back), 32);
    ck_assert_int_eq(cd_degradation_get_kind(gback), CD_DEGRADATION_BLUR);
    assert_same_schedule(deg, gback);
    double m, sd, j;
    int32_t fitted = 0;
    CD_ASSERT_OK(cd_degradation_get_prior(gback, &m, &sd, &j, &fitted));
    ck_assert(m == -0.3 && sd == 0.04 && j == 0.001 && fitted == 1);
    /* The two operators blur alike: kernel and padding came back. */
    cd_tensor *x = cd_test_tensor4(2, 1, 12, 12), *za = cd_test_tensor4(2, 1, 12, 12);
    cd_tensor *zb = cd_test_tensor4(2, 1, 12, 12);
    cd_test_fill_uniform(x, 5, -0.5f, 0.5f);
    const int64_t t[2] = {3, 32};
    CD_ASSERT_OK(cd_degradation_apply(deg, x, t, 2, NULL, za, NULL));
    CD_ASSERT_OK(cd_degradation_apply(gback, x, t, 2, NULL, zb, NULL));
    ck_assert_mem_eq(cd_tensor_data(za), cd_tensor_data(zb), 288 * sizeof(float));
    cd_tensor_free(x), cd_tensor_free(za), cd_tensor_free(zb);
    cd_decoder_free(dec), cd_decoder_free(back);
    cd_degradation_free(deg), cd_degradation_free(gback);
}
END_TEST

START_TEST(training_checkpoints_give_ema_weights)
{
    char dir[256], ckpt[512], model[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(ckpt, sizeof ckpt, dir, "train.cdm");
    cd_test_path(model, sizeof model, dir, "model.cdm");
    cd_trainer *tr = NULL;
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_trainer_create(&tr, small_cnn(4), noise_of(20)));
    ck_assert_int_eq(cd_decoder_trained_T(cd_trainer_decoder(tr)), 20);
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    const size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);
    float *raw = malloc(bytes);
    /* Without an EMA: the current weights, from either file. */
    CD_ASSERT_OK(cd_trainer_save(tr, ckpt, NULL));
    CD_ASSERT_OK(cd_model_load(ckpt, &dec, &deg));
    assert_same_weights(dec, cd_params_data(p, -1));
    cd_decoder_free(dec), cd_degradation_free(deg);
    /* With an EMA after some steps: the EMA, from either file, and the
     * trainer's own weights untouched by the export. */
    cd_tensor *batch = cd_test_tensor4(4, 1, 28, 28);
    cd_test_fill_uniform(batch, 6, -0.5f, 0.5f);
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.5));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-2));
    double loss;
    for (int i = 0; i < 3; i++) CD_ASSERT_OK(cd_trainer_step(tr, batch, rng, &loss));
    memcpy(raw, cd_params_data(p, -1), bytes);
    CD_ASSERT_OK(cd_trainer_save(tr, ckpt, NULL));
    CD_ASSERT_OK(cd_trainer_export(tr, model));
    ck_assert_mem_eq(cd_params_data(p, -1), raw, bytes);
    ck_assert_int_lt(cd_test_file_size(model), cd_test_file_size(ckpt) / 2);
    CD_ASSERT_OK(cd_trainer_copy_ema(tr)); /* p now holds the EMA */
    ck_assert_msg(memcmp(raw, cd_params_data(p, -1), bytes) != 0, "EMA equals the weights");
    const char *files[2] = {ckpt, model};
    for (int f = 0; f < 2; f++) {
        CD_ASSERT_OK(cd_model_load(files[f], &dec, &deg));
        assert_same_weights(dec, cd_params_data(p, -1));
        assert_same_schedule(deg, cd_trainer_degradation(tr));
        ck_assert_int_eq(cd_decoder_trained_T(dec), 20);
        cd_decoder_free(dec), cd_degradation_free(deg);
    }
    free(raw);
    cd_tensor_free(batch);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr); /* and the decoder and degradation it borrows */
}
END_TEST

START_TEST(decoder_only_and_pytorch_files_are_named)
{
    char dir[256], path[512], pth[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "decoder.cdm");
    cd_test_path(pth, sizeof pth, dir, "model.pth");
    cd_decoder *dec = small_cnn(5), *d = NULL;
    cd_degradation *g = NULL;
    CD_ASSERT_OK(cd_decoder_save(dec, path));
    CD_ASSERT_STATUS(cd_model_load(path, &d, &g), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("decoder only");
    CD_ASSERT_ERROR_MENTIONS("colddiff export");
    CD_ASSERT_ERROR_MENTIONS("decoder.cdm");
    ck_assert_ptr_null(d);
    ck_assert_ptr_null(g);
    /* A trainer names the kind of file it was given, not a missing key. */
    cd_trainer *tr = NULL;
    CD_ASSERT_STATUS(cd_trainer_load(&tr, path, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("holds a decoder only");
    cd_degradation *deg = noise_of(10);
    CD_ASSERT_OK(cd_model_save(path, dec, deg));
    CD_ASSERT_STATUS(cd_trainer_load(&tr, path, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("is an inference model");
    ck_assert_ptr_null(tr);
    cd_degradation_free(deg);
    /* torch.save's zip and an older bare pickle. */
    static const uint8_t zip[8] = {'P', 'K', 3, 4, 0, 0, 0, 0};
    static const uint8_t pickle[8] = {0x80, 2, 'c', 'x', 0, 0, 0, 0};
    const uint8_t *heads[2] = {zip, pickle};
    for (int i = 0; i < 2; i++) {
        cd_test_write_file(pth, heads[i], 8);
        CD_ASSERT_STATUS(cd_model_load(pth, &d, &g), CD_ERR_FORMAT);
        CD_ASSERT_ERROR_MENTIONS("examples/python/convert_torch.py");
        CD_ASSERT_STATUS(cd_decoder_load(&d, pth), CD_ERR_FORMAT);
        CD_ASSERT_ERROR_MENTIONS("convert_torch.py");
        CD_ASSERT_STATUS(cd_trainer_load(&tr, pth, NULL), CD_ERR_FORMAT);
        CD_ASSERT_ERROR_MENTIONS("convert_torch.py");
    }
    cd_decoder_free(dec);
}
END_TEST

START_TEST(another_T_is_refused)
{
    char dir[256], path[512], other[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "model.cdm");
    cd_test_path(other, sizeof other, dir, "other.cdm");
    cd_trainer *tr = NULL;
    cd_decoder *dec = NULL, *fresh = small_cnn(6);
    cd_degradation *deg = NULL, *g1000 = noise_of(1000), *g20 = noise_of(20);
    /* A fresh decoder goes with any T, and a decoder-only file written
     * before it knew one too. */
    CD_ASSERT_OK(cd_decoder_save(fresh, other));
    CD_ASSERT_OK(cd_decoder_load(&dec, other));
    ck_assert_int_eq(cd_decoder_trained_T(dec), 0);
    cd_decoder_free(dec);
    CD_ASSERT_OK(cd_model_save(path, fresh, g20));
    CD_ASSERT_OK(cd_model_save(other, fresh, g1000));
    CD_ASSERT_OK(cd_model_load(path, &dec, &deg));
    ck_assert_int_eq(cd_decoder_trained_T(dec), 20);
    /* Now it knows 20: a T = 1000 operator is refused everywhere. */
    CD_ASSERT_STATUS(cd_model_save(other, dec, g1000), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("cd_model_save: the decoder was trained for T = 20, the "
                             "degradation has T = 1000");
    CD_ASSERT_STATUS(cd_trainer_create(&tr, dec, g1000), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("cd_trainer_create: the decoder was trained for T = 20");
    ck_assert_ptr_null(tr);
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *out = cd_test_tensor4(1, 1, 28, 28), *x = cd_test_tensor4(1, 1, 28, 28);
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_sampler_create(&smp, CD_SAMPLER_DDIM, g1000));
    CD_ASSERT_STATUS(cd_sampler_set_decoder(smp, dec), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("cd_sampler_set_decoder: the decoder was trained for T = 20, the "
                             "degradation has T = 1000");
    /* A fresh decoder is taken, then learns T = 20 from a trainer: the
     * sampler's own calls refuse it before any work. */
    cd_decoder *late = NULL;
    cd_degradation *late_deg = NULL;
    cd_trainer *late_tr = NULL;
    CD_ASSERT_OK(cd_model_load(path, &late, &late_deg));
    cd_decoder_free(late);
    CD_ASSERT_OK(cd_sampler_set_decoder(smp, fresh));
    CD_ASSERT_OK(cd_trainer_create(&late_tr, fresh, late_deg)); /* borrows both */
    CD_ASSERT_STATUS(cd_sampler_sample(smp, rng, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("T = 20, the degradation has T = 1000");
    CD_ASSERT_STATUS(cd_sampler_restore(smp, x, 5, rng, out, NULL, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("T = 1000");
    cd_sampler_free(smp);
    smp = NULL;
    cd_trainer_free(late_tr);
    cd_degradation_free(late_deg); /* fresh is freed at the end */
    /* With its own T everything works, and the trainer keeps T. */
    cd_sampler_free(smp);
    CD_ASSERT_OK(cd_sampler_create(&smp, CD_SAMPLER_DDIM, deg));
    CD_ASSERT_OK(cd_sampler_set_int(smp, CD_SAMPLER_OPT_STEPS, 2));
    CD_ASSERT_OK(cd_sampler_set_decoder(smp, dec));
    CD_ASSERT_OK(cd_sampler_sample(smp, rng, out));
    cd_sampler_free(smp);
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg)); /* borrows both */
    CD_ASSERT_OK(cd_trainer_save(tr, other, NULL));
    cd_trainer_free(tr);
    ck_assert_int_eq(cd_decoder_trained_T(dec), 20); /* still the caller's */
    cd_decoder_free(dec);
    cd_degradation_free(deg);
    CD_ASSERT_OK(cd_trainer_load(&tr, other, NULL));
    ck_assert_int_eq(cd_decoder_trained_T(cd_trainer_decoder(tr)), 20);
    cd_trainer_free(tr); /* a loaded trainer frees its own */
    cd_tensor_free(out), cd_tensor_free(x);
    cd_rng_free(rng);
    cd_decoder_free(fresh);
    cd_degradation_free(g1000), cd_degradation_free(g20);
}
END_TEST

/* ---- float16 weights ------------------------------------------------------ */

static float f16_value(uint16_t h) { return cd__f16_to_f32(h); }

/* Every half converts to a float and back to itself; NaNs stay NaN. */
START_TEST(every_half_round_trips)
{
    for (uint32_t h = 0; h <= 0xFFFFu; h++) {
        const float f = f16_value((uint16_t)h);
        const bool nan = (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu);
        if (nan) {
            ck_assert(isnan(f));
            ck_assert(isnan(f16_value(cd__f32_to_f16(f))));
        } else {
            ck_assert_uint_eq(cd__f32_to_f16(f), h);
        }
    }
    /* A few values by hand: 1, the largest half, the smallest subnormal. */
    ck_assert_uint_eq(cd__f32_to_f16(1.0f), 0x3C00u);
    ck_assert_uint_eq(cd__f32_to_f16(-2.0f), 0xC000u);
    ck_assert_uint_eq(cd__f32_to_f16(65504.0f), 0x7BFFu);
    ck_assert_uint_eq(cd__f32_to_f16(0x1p-24f), 0x0001u);
    ck_assert(f16_value(0x7BFFu) == 65504.0f && f16_value(0x0001u) == 0x1p-24f);
}
END_TEST

/* Floats across the whole range round to the nearest half, ties to the
 * even one: compared with the two halves around each value, in double. */
START_TEST(floats_round_to_the_nearest_half)
{
    uint32_t bits = 0x2F000000u; /* 2^-33, well below the smallest half */
    int checked = 0;
    while (bits < 0x47800000u) { /* up to 65536 */
        float f;
        memcpy(&f, &bits, sizeof f);
        const uint16_t h = cd__f32_to_f16(f);
        const double got = f16_value(h), x = f;
        /* The neighbours of h, for a positive finite h. */
        const double below = h > 0 ? f16_value((uint16_t)(h - 1)) : -1.0;
        const double above = h < 0x7C00u ? f16_value((uint16_t)(h + 1)) : INFINITY;
        if (h == 0x7C00u) { /* infinity: at least halfway past 65504 */
            ck_assert(x >= 65520.0);
        } else {
            const double err = fabs(got - x);
            ck_assert_msg(err <= fabs(below - x) && err <= fabs(above - x),
                          "%a rounds to %a, not the nearest half", x, got);
            if (err == fabs(below - x) || err == fabs(above - x))
                ck_assert_msg((h & 1u) == 0, "%a: a tie rounds to the odd half %a", x, got);
        }
        ck_assert_uint_eq(cd__f32_to_f16(-f), h | 0x8000u);
        checked++;
        bits += bits < 0x38800000u ? 977u : 4099u; /* denser among the subnormals */
    }
    ck_assert_int_gt(checked, 10000);
    /* Exact ties: halfway between 1 and the next half, and between 2048 and
     * 2050 (where halves step by 2). */
    ck_assert_uint_eq(cd__f32_to_f16(1.0f + 0x1p-11f), 0x3C00u);
    ck_assert_uint_eq(cd__f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02u);
    ck_assert_uint_eq(cd__f32_to_f16(2049.0f), 0x6800u);
    ck_assert_uint_eq(cd__f32_to_f16(2051.0f), 0x6802u);
    ck_assert_uint_eq(cd__f32_to_f16(65519.0f), 0x7BFFu);
    ck_assert_uint_eq(cd__f32_to_f16(65520.0f), 0x7C00u);
    ck_assert_uint_eq(cd__f32_to_f16(INFINITY), 0x7C00u);
    ck_assert_uint_eq(cd__f32_to_f16(0x1p-25f), 0x0000u);
    ck_assert_uint_eq(cd__f32_to_f16(0x1.000002p-25f), 0x0001u);
}
END_TEST

/* A model saved with float16 weights: a smaller file that loads back as
 * the rounded weights, with the schedule, the prior and the rest exact. */
START_TEST(float16_models_round_trip)
{
    char dir[256], full[512], half[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(full, sizeof full, dir, "full.cdm");
    cd_test_path(half, sizeof half, dir, "half.cdm");
    cd_decoder *dec = small_cnn(7), *back = NULL;
    cd_degradation *deg = odd_blur(16), *gback = NULL;
    cd_params *p = cd_decoder_params(dec);
    const int64_t n = cd_params_numel(p);
    CD_ASSERT_OK(cd_model_save_as(full, dec, deg, CD_WEIGHTS_FLOAT32));
    CD_ASSERT_OK(cd_model_save_as(half, dec, deg, CD_WEIGHTS_FLOAT16));
    ck_assert_int_lt(cd_test_file_size(half), cd_test_file_size(full));
    CD_ASSERT_OK(cd_model_load(half, &back, &gback));
    const float *w = cd_params_data(p, -1), *got = cd_params_data(cd_decoder_params(back), -1);
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert(got[i] == f16_value(cd__f32_to_f16(w[i])));
        ck_assert(fabsf(got[i] - w[i]) <= 0x1p-11f * fabsf(w[i]) + 0x1p-25f);
        changed += got[i] != w[i];
    }
    ck_assert_int_gt(changed, n / 2); /* random weights rarely fit a half */
    assert_same_schedule(deg, gback);
    ck_assert_int_eq(cd_decoder_trained_T(back), 16);
    /* Halves saved as halves again come back unchanged. */
    cd_decoder *again = NULL;
    cd_degradation *gagain = NULL;
    CD_ASSERT_OK(cd_model_save_as(half, back, gback, CD_WEIGHTS_FLOAT16));
    CD_ASSERT_OK(cd_model_load(half, &again, &gagain));
    assert_same_weights(again, got);
    cd_decoder_free(again), cd_degradation_free(gagain);
    cd_decoder_free(back), cd_degradation_free(gback);
    /* The float32 file next to it is exact. */
    CD_ASSERT_OK(cd_model_load(full, &back, &gback));
    assert_same_weights(back, w);
    cd_decoder_free(back), cd_degradation_free(gback);
    cd_decoder_free(dec), cd_degradation_free(deg);
}
END_TEST

/* Weights a half cannot hold are refused by name, and the file already
 * there is left as it was; an unknown format is an argument error. */
START_TEST(float16_refuses_what_it_cannot_store)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "half.cdm");
    cd_decoder *dec = small_cnn(8);
    cd_degradation *deg = noise_of(10);
    CD_ASSERT_OK(cd_model_save_as(path, dec, deg, CD_WEIGHTS_FLOAT16));
    const int64_t size = cd_test_file_size(path);
    float *w = cd_params_data(cd_decoder_params(dec), -1);
    const float keep = w[5], bad[3] = {70000.0f, -65520.0f, NAN};
    for (int k = 0; k < 3; k++) {
        w[5] = bad[k];
        CD_ASSERT_STATUS(cd_model_save_as(path, dec, deg, CD_WEIGHTS_FLOAT16), CD_ERR_RANGE);
        CD_ASSERT_ERROR_MENTIONS("float16");
        CD_ASSERT_ERROR_MENTIONS(cd_params_name(cd_decoder_params(dec), 0));
        ck_assert_int_eq(cd_test_file_size(path), size);
    }
    w[5] = 65519.0f; /* rounds down to 65504: stored */
    CD_ASSERT_OK(cd_model_save_as(path, dec, deg, CD_WEIGHTS_FLOAT16));
    w[5] = keep;
    CD_ASSERT_STATUS(cd_model_save_as(path, dec, deg, (cd_weight_format)2),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("CD_WEIGHTS_FLOAT16");
    CD_ASSERT_STATUS(cd_model_save_as(NULL, dec, deg, CD_WEIGHTS_FLOAT16), CD_ERR_INVALID_ARGUMENT);
    cd_decoder_free(dec), cd_degradation_free(deg);
}
END_TEST

START_TEST(bad_arguments)
{
    cd_decoder *dec = small_cnn(8), *d = (cd_decoder *)1;
    cd_degradation *g = noise_of(10), *gg = (cd_degradation *)1;
    float b[11];
    CD_ASSERT_STATUS(cd_model_save(NULL, dec, g), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_model_save("x.cdm", NULL, g), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_model_save("x.cdm", dec, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_model_load(NULL, &d, &gg), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(d);
    ck_assert_ptr_null(gg);
    CD_ASSERT_STATUS(cd_model_load("x.cdm", NULL, &gg), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_model_load("x.cdm", &d, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_model_load("/nonexistent/model.cdm", &d, &gg), CD_ERR_NOT_FOUND);
    CD_ASSERT_STATUS(cd_model_save("/nonexistent/model.cdm", dec, g), CD_ERR_NOT_FOUND);
    CD_ASSERT_STATUS(cd_trainer_export(NULL, "x.cdm"), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_copy_schedule(NULL, b, b, 11), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_degradation_copy_schedule(g, b, b, 10), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("cd_degradation_copy_schedule");
    CD_ASSERT_OK(cd_degradation_copy_schedule(g, NULL, b, 11));
    ck_assert(b[0] == 1.0f);
    cd_clear_error();
    ck_assert_int_eq(cd_decoder_trained_T(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_decoder_free(dec);
    cd_degradation_free(g);
}
END_TEST

/* The model that ships with the library loads (from the source tree, as an
 * uninstalled build finds it), is the recorded one, and samples. */
START_TEST(shipped_model_loads_and_samples)
{
    unsetenv("COLDDIFF_MODEL");
    cd_decoder *d = NULL;
    cd_degradation *g = NULL;
    CD_ASSERT_OK(cd_model_load_default(&d, &g));
    ck_assert_int_eq(cd_decoder_param_count(d), SHIPPED_PARAMS);
    cd_params *p = cd_decoder_params(d);
    const uLong crc = crc32(0L, (const Bytef *)cd_params_data(p, -1),
                            (uInt)(cd_params_numel(p) * (int64_t)sizeof(float)));
    ck_assert_msg(crc == SHIPPED_CRC, "weights CRC-32 0x%08lx, recorded 0x%08x", crc, SHIPPED_CRC);
    ck_assert_int_eq(cd_decoder_get_kind(d), CD_DECODER_UNET);
    ck_assert_int_eq(cd_decoder_class_count(d), 10); /* the digits */
    ck_assert_int_eq(cd_degradation_get_kind(g), CD_DEGRADATION_NOISE);
    ck_assert_int_eq(cd_decoder_trained_T(d), cd_degradation_T(g));
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    cd_tensor *x = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDIM, g));
    CD_ASSERT_OK(cd_sampler_set_decoder(s, d));
    CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 4));
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_tensor_create(&x, 4, (int64_t[]){3, 1, 28, 28}));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, x));
    for (int64_t i = 0; i < cd_tensor_numel(x); i++)
        ck_assert(fabsf(cd_tensor_data(x)[i]) <= 0.5f); /* clipped x0-hat at the end */
    cd_tensor_free(x);
    cd_rng_free(rng);
    cd_sampler_free(s);
    cd_decoder_free(d);
    cd_degradation_free(g);
    /* The variable overrides the search, and only it is tried then. */
    setenv("COLDDIFF_MODEL", "/nonexistent/model.cdm", 1);
    CD_ASSERT_STATUS(cd_model_load_default(&d, &g), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("/nonexistent/model.cdm");
    ck_assert_ptr_null(d);
    ck_assert_ptr_null(g);
    unsetenv("COLDDIFF_MODEL");
    CD_ASSERT_STATUS(cd_model_load_default(NULL, &g), CD_ERR_INVALID_ARGUMENT);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trip_keeps_everything);
    tcase_add_test(tc, training_checkpoints_give_ema_weights);
    tcase_add_test(tc, decoder_only_and_pytorch_files_are_named);
    tcase_add_test(tc, another_T_is_refused);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, every_half_round_trips);
    tcase_add_test(tc, floats_round_to_the_nearest_half);
    tcase_add_test(tc, float16_models_round_trip);
    tcase_add_test(tc, float16_refuses_what_it_cannot_store);
    tcase_add_test(tc, shipped_model_loads_and_samples);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
