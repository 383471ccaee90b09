/* check_prediction.c - the decoder's target under the noise degradation
 * (noise, x0 or v): the targets and their reading back as noise against a
 * double reference, the trainer key and its rules, files keeping the
 * choice, and the samplers reading a decoder's output as it was trained. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "diffusion/diffusion.h"

#define T_STEPS 50
#define PER 784

static cd_degradation *cosine_noise(void)
{
    cd_schedule *s = NULL;
    cd_degradation *g = NULL;
    CD_ASSERT_OK(cd_schedule_create_cosine(&s, T_STEPS, 0.008, 0.999));
    CD_ASSERT_OK(cd_degradation_create_noise(&g, s));
    cd_schedule_free(s);
    return g;
}

static void abar_of(const cd_degradation *g, float *abar)
{
    float beta[T_STEPS + 1];
    CD_ASSERT_OK(cd_degradation_copy_schedule(g, beta, abar, T_STEPS + 1));
}

/* The target of each parameterisation from drawn (x, eps), and the noise
 * read back from it, against the formulas in double. Reading back x0 at
 * small t divides by sqrt(1 - abar_t), so its bound grows as that shrinks. */
START_TEST(targets_and_read_back)
{
    cd_degradation *g = cosine_noise();
    float abar[T_STEPS + 1];
    abar_of(g, abar);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 5));
    const int64_t N = 4, t[4] = {1, 7, 30, T_STEPS};
    float *x = malloc(N * PER * 4), *eps = malloc(N * PER * 4), *g_t = malloc(N * PER * 4);
    float *z = malloc(N * PER * 4), *back = malloc(PER * 4);
    CD_ASSERT_OK(cd_rng_normal(rng, x, N * PER));
    CD_ASSERT_OK(cd_rng_normal(rng, eps, N * PER));
    for (int64_t i = 0; i < N * PER; i++) x[i] *= 0.3f;
    for (int32_t p = CD_PREDICT_NOISE; p <= CD_PREDICT_V; p++) {
        memcpy(g_t, eps, N * PER * 4);
        cd__noise_target(g, p, x, t, N, PER, g_t);
        for (int64_t n = 0; n < N; n++) {
            const double a = sqrt((double)abar[t[n]]), s = sqrt(1.0 - (double)abar[t[n]]);
            for (int64_t i = n * PER; i < (n + 1) * PER; i++) {
                const double want = p == CD_PREDICT_NOISE ? eps[i]
                                    : p == CD_PREDICT_X0  ? x[i]
                                                          : a * eps[i] - s * x[i];
                ck_assert_msg(fabs(g_t[i] - want) <= FLT_EPSILON * fabs(want),
                              "prediction %d, t %lld: target %.9g, want %.9g", p, (long long)t[n],
                              (double)g_t[i], want);
                z[i] = (float)(a * x[i] + s * eps[i]);
            }
            memcpy(back, g_t + n * PER, PER * 4);
            cd__prediction_to_noise(g, p, z + n * PER, t[n], PER, back);
            for (int64_t i = 0; i < PER; i++) {
                const int64_t k = n * PER + i;
                /* z and the target are rounded once each; the reading
                 * carries their rounding, over s for x0. */
                const double err = FLT_EPSILON * (fabs(z[k]) + fabs(g_t[k]) + fabs(eps[k]));
                const double bound = 4.0 * (p == CD_PREDICT_X0 ? err / s : err);
                ck_assert_msg(fabs(back[i] - eps[k]) <= bound,
                              "prediction %d, t %lld: noise read back %.9g, drawn %.9g", p,
                              (long long)t[n], (double)back[i], (double)eps[k]);
            }
        }
    }
    free(x), free(eps), free(g_t), free(z), free(back);
    cd_rng_free(rng);
    cd_degradation_free(g);
}
END_TEST

static cd_decoder *tiny_unet(uint64_t seed)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 4));
    CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 1));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 4));
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

START_TEST(trainer_key_rules)
{
    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_trainer_create(&tr, tiny_unet(1), cosine_noise()));
    int64_t v = -1;
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_PREDICTION, &v));
    ck_assert_int_eq(v, CD_PREDICT_NOISE);
    ck_assert_int_eq(cd_decoder_get_prediction(cd_trainer_decoder(tr)), CD_PREDICT_NOISE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, 3), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_INVALID),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_PREDICTION, 0.5),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_V));
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_PREDICTION, &v));
    ck_assert_int_eq(v, CD_PREDICT_V);
    ck_assert_int_eq(cd_decoder_get_prediction(cd_trainer_decoder(tr)), CD_PREDICT_V);
    /* After a step the weights mean v: the target may not change. */
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 2));
    cd_tensor *x = NULL;
    CD_ASSERT_OK(cd_tensor_create(&x, 4, (int64_t[]){4, 1, 28, 28}));
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TRAIN, (int64_t[]){0, 1, 2, 3}, 4, x, NULL));
    double loss = 0;
    CD_ASSERT_OK(cd_trainer_step(tr, x, rng, &loss));
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_X0),
                     CD_ERR_STATE);
    CD_ASSERT_ERROR_MENTIONS("before the first step");
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_V)); /* unchanged */
    ck_assert_int_eq(cd_decoder_get_prediction(NULL), CD_PREDICT_INVALID);
    /* The deterministic degradations predict the image: no choice. */
    cd_schedule *s = NULL;
    cd_degradation *blur = NULL;
    cd_trainer *tb = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&s, 10, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&blur, s, 5, CD_PADDING_REFLECT));
    CD_ASSERT_OK(cd_trainer_create(&tb, tiny_unet(2), blur));
    CD_ASSERT_STATUS(cd_trainer_set_int(tb, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_X0),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("only the noise degradation");
    CD_ASSERT_OK(cd_trainer_set_int(tb, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_NOISE));
    cd_test_trainer_free_all(tb);
    cd_schedule_free(s);
    cd_tensor_free(x);
    cd_rng_free(rng);
    cd_dataset_free(ds);
    cd_test_trainer_free_all(tr);
}
END_TEST

/* Model files and training checkpoints keep the target; files of noise
 * decoders carry no entry (their bytes stay as they were). */
START_TEST(files_keep_the_target)
{
    char dir[256], path[300], ck[300];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "m.cdm");
    cd_test_path(ck, sizeof ck, dir, "c.cdm");
    for (int32_t p = CD_PREDICT_NOISE; p <= CD_PREDICT_V; p++) {
        cd_trainer *tr = NULL;
        CD_ASSERT_OK(cd_trainer_create(&tr, tiny_unet(3), cosine_noise()));
        CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, p));
        CD_ASSERT_OK(cd_trainer_export(tr, path));
        CD_ASSERT_OK(cd_trainer_save(tr, ck, NULL));
        cd_test_trainer_free_all(tr);
        cd_decoder *d = NULL;
        cd_degradation *g = NULL;
        CD_ASSERT_OK(cd_model_load(path, &d, &g));
        ck_assert_int_eq(cd_decoder_get_prediction(d), p);
        cd_decoder_free(d);
        cd_degradation_free(g);
        CD_ASSERT_OK(cd_trainer_load(&tr, ck, NULL));
        int64_t v = -1;
        CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_PREDICTION, &v));
        ck_assert_int_eq(v, p);
        cd_trainer_free(tr); /* loaded: frees its own */
        cd__ckpt *c = NULL;
        int64_t stored = -1;
        CD_ASSERT_OK(cd__ckpt_read(&c, path));
        const cd_status st = cd__ckpt_get_i64(c, "decoder.prediction", &stored);
        cd__ckpt_free(c);
        if (p == CD_PREDICT_NOISE) {
            ck_assert_int_eq(st, CD_ERR_NOT_FOUND);
        } else {
            CD_ASSERT_OK(st);
            ck_assert_int_eq(stored, p);
        }
    }
}
END_TEST

/* A user predictor that runs the decoder and reads its v output back as
 * noise by the formula in double: what the sampler must do by itself. */
typedef struct {
    cd_decoder *d;
    const float *abar;
    int64_t T;
} by_hand;

static cd_status v_by_hand(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out, void *user)
{
    const by_hand *h = user;
    CD__TRY(cd_decoder_forward(h->d, z, tau, out));
    const int64_t t = (int64_t)llround(cd_tensor_data((cd_tensor *)tau)[0] * (double)h->T);
    const double a = sqrt((double)h->abar[t]), s = sqrt(1.0 - (double)h->abar[t]);
    const float *zv = cd_tensor_data((cd_tensor *)z);
    float *o = cd_tensor_data(out);
    for (int64_t i = 0; i < cd_tensor_numel(out); i++) o[i] = (float)(a * o[i] + s * zv[i]);
    return CD_OK;
}

START_TEST(samplers_read_the_target)
{
    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_trainer_create(&tr, tiny_unet(4), cosine_noise()));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION, CD_PREDICT_V));
    cd_decoder *d = cd_trainer_decoder(tr);
    const cd_degradation *g = cd_trainer_degradation(tr);
    float abar[T_STEPS + 1];
    abar_of(g, abar);
    by_hand h = {d, abar, T_STEPS};
    for (int kind = CD_SAMPLER_DDPM; kind <= CD_SAMPLER_DDIM; kind++) {
        cd_tensor *a = NULL, *b = NULL;
        CD_ASSERT_OK(cd_tensor_create(&a, 4, (int64_t[]){3, 1, 28, 28}));
        CD_ASSERT_OK(cd_tensor_create(&b, 4, (int64_t[]){3, 1, 28, 28}));
        cd_sampler *sa = NULL, *sb = NULL;
        CD_ASSERT_OK(cd_sampler_create(&sa, (cd_sampler_kind)kind, g));
        CD_ASSERT_OK(cd_sampler_create(&sb, (cd_sampler_kind)kind, g));
        CD_ASSERT_OK(cd_sampler_set_decoder(sa, d));
        CD_ASSERT_OK(cd_sampler_set_predictor(sb, v_by_hand, &h));
        if (kind == CD_SAMPLER_DDIM) {
            CD_ASSERT_OK(cd_sampler_set_int(sa, CD_SAMPLER_OPT_STEPS, 10));
            CD_ASSERT_OK(cd_sampler_set_int(sb, CD_SAMPLER_OPT_STEPS, 10));
        }
        cd_rng *ra = NULL, *rb = NULL;
        CD_ASSERT_OK(cd_rng_create(&ra, 9));
        CD_ASSERT_OK(cd_rng_create(&rb, 9));
        CD_ASSERT_OK(cd_sampler_sample(sa, ra, a));
        CD_ASSERT_OK(cd_sampler_sample(sb, rb, b));
        ck_assert_mem_eq(cd_tensor_data(a), cd_tensor_data(b), 3 * PER * sizeof(float));
        cd_rng_free(ra), cd_rng_free(rb);
        cd_sampler_free(sa), cd_sampler_free(sb);
        cd_tensor_free(a), cd_tensor_free(b);
    }
    cd_test_trainer_free_all(tr);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("prediction");
    TCase *tc = tcase_create("prediction");
    tcase_add_test(tc, targets_and_read_back);
    tcase_add_test(tc, trainer_key_rules);
    tcase_add_test(tc, files_keep_the_target);
    tcase_add_test(tc, samplers_read_the_target);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
