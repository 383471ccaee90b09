/*
 * check_conditional.c - class conditioning end to end through the public
 * API: the label table in both decoders, its errors and files, label
 * dropout in the trainer, classifier-free guidance in every sampler, and a
 * short training run on two synthetic classes that guidance must tell
 * apart. The table's PyTorch parity is in check_decoder_parity.c and its
 * gradient check in check_decoder_sizes.c.
 */
#include "test_util.h"

#include <math.h>

#include "gradcheck.h"

static cd_decoder *small_decoder(cd_decoder_kind kind, int64_t classes, int64_t H, int64_t W,
                                 uint64_t seed)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, kind));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEIGHT, H));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_WIDTH, W));
    CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, classes));
    if (kind == CD_DECODER_CNN) {
        CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, (int64_t[]){8, 8}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, 3));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_HIDDEN, 16));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_TIME_LAYERS, 1));
    } else {
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, 1));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, 8));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

static cd_tensor *vector(int64_t n, const float *v)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 1, (int64_t[]){n}));
    if (v) CD_ASSERT_OK(cd_tensor_copy_from(t, v, n));
    return t;
}

static bool same(cd_tensor *a, cd_tensor *b)
{
    return cd_tensor_numel(a) == cd_tensor_numel(b) &&
           memcmp(cd_tensor_data(a), cd_tensor_data(b),
                  (size_t)cd_tensor_numel(a) * sizeof(float)) == 0;
}

/* ---- the decoder ----------------------------------------------------------- */

START_TEST(labels_pick_rows_of_the_table)
{
    const cd_decoder_kind kinds[2] = {CD_DECODER_CNN, CD_DECODER_UNET};
    for (int k = 0; k < 2; k++) {
        cd_decoder *d = small_decoder(kinds[k], 3, 8, 8, 5);
        ck_assert_int_eq(cd_decoder_class_count(d), 3);
        int64_t idx = -1, shape[2];
        cd_params *p = cd_decoder_params(d);
        CD_ASSERT_OK(cd_params_find(p, "label_embed.weight", &idx));
        CD_ASSERT_OK(cd_params_shape(p, idx, shape, 2));
        ck_assert(shape[0] == 4 && shape[1] > 0);
        cd_tensor *z = cd_test_tensor4(4, 1, 8, 8), *a = cd_test_tensor4(4, 1, 8, 8);
        cd_tensor *b = cd_test_tensor4(4, 1, 8, 8);
        cd_gc_randn(cd_tensor_data(z), 4 * 64, 3, 1.0f);
        cd_tensor *tau = vector(4, (const float[]){0.1f, 0.4f, 0.7f, 1.0f});
        cd_tensor *none = vector(4, (const float[]){-1, -1, -1, -1});
        cd_tensor *some = vector(4, (const float[]){0, 1, 2, -1});
        /* NULL labels and -1 everywhere are the same "no class" row. */
        CD_ASSERT_OK(cd_decoder_infer(d, z, tau, a));
        CD_ASSERT_OK(cd_decoder_infer_labeled(d, z, tau, none, b));
        ck_assert(same(a, b));
        /* A class changes its image and no other. */
        CD_ASSERT_OK(cd_decoder_forward_labeled(d, z, tau, some, b));
        const float *x = cd_tensor_data(a), *y = cd_tensor_data(b);
        for (int64_t n = 0; n < 4; n++) {
            const bool differs = memcmp(x + n * 64, y + n * 64, 64 * sizeof(float)) != 0;
            ck_assert_msg(differs == (n < 3), "image %lld: differs %d", (long long)n, differs);
        }
        /* Only the rows used get a gradient. */
        CD_ASSERT_OK(cd_params_zero_grad(p));
        CD_ASSERT_OK(cd_decoder_backward(d, b, NULL));
        const float *g = cd_params_grad(p, idx);
        for (int64_t r = 0; r < 4; r++) {
            double s = 0.0;
            for (int64_t j = 0; j < shape[1]; j++) s += fabs((double)g[r * shape[1] + j]);
            ck_assert_msg(s > 0.0, "row %lld got no gradient", (long long)r);
        }
        cd_tensor *one = vector(4, (const float[]){1, 1, 1, 1});
        CD_ASSERT_OK(cd_params_zero_grad(p));
        CD_ASSERT_OK(cd_decoder_forward_labeled(d, z, tau, one, b));
        CD_ASSERT_OK(cd_decoder_backward(d, b, NULL));
        for (int64_t j = 0; j < 4 * shape[1]; j++)
            ck_assert_msg((g[j] != 0.0f) == (j / shape[1] == 1), "gradient in row %lld",
                          (long long)(j / shape[1]));
        cd_tensor_free(one);
        cd_tensor_free(z), cd_tensor_free(a), cd_tensor_free(b), cd_tensor_free(tau);
        cd_tensor_free(none), cd_tensor_free(some);
        cd_decoder_free(d);
    }
}
END_TEST

START_TEST(label_errors)
{
    cd_decoder *d = small_decoder(CD_DECODER_CNN, 3, 8, 8, 5);
    cd_decoder *plain = small_decoder(CD_DECODER_CNN, 0, 8, 8, 5);
    ck_assert_int_eq(cd_decoder_class_count(plain), 0);
    ck_assert_int_eq(cd_decoder_class_count(NULL), -1);
    cd_tensor *z = cd_test_tensor4(2, 1, 8, 8), *out = cd_test_tensor4(2, 1, 8, 8);
    cd_tensor *tau = vector(2, (const float[]){0.5f, 0.5f});
    cd_tensor *good = vector(2, (const float[]){0, 2});
    CD_ASSERT_STATUS(cd_decoder_forward_labeled(plain, z, tau, good, out), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("CD_DECODER_OPT_CLASSES");
    const float bad[][2] = {{0, 3}, {-2, 0}, {0.5f, 1}, {NAN, 0}};
    for (int i = 0; i < 4; i++) {
        cd_tensor *l = vector(2, bad[i]);
        CD_ASSERT_STATUS(cd_decoder_forward_labeled(d, z, tau, l, out), CD_ERR_RANGE);
        CD_ASSERT_ERROR_MENTIONS("labels[");
        cd_tensor_free(l);
    }
    cd_tensor *three = vector(3, (const float[]){0, 1, 2});
    CD_ASSERT_STATUS(cd_decoder_infer_labeled(d, z, tau, three, out), CD_ERR_SHAPE);
    /* A refused call keeps the last forward's state for backward. */
    CD_ASSERT_OK(cd_decoder_forward_labeled(d, z, tau, good, out));
    CD_ASSERT_STATUS(cd_decoder_forward_labeled(d, z, tau, three, out), CD_ERR_SHAPE);
    CD_ASSERT_OK(cd_decoder_backward(d, out, NULL));
    /* The bounds of the option. */
    cd_decoder_config *cfg = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_UNET));
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, 65536), CD_ERR_RANGE);
    cd_decoder_config_free(cfg);
    cd_tensor_free(z), cd_tensor_free(out), cd_tensor_free(tau);
    cd_tensor_free(good), cd_tensor_free(three);
    cd_decoder_free(d), cd_decoder_free(plain);
}
END_TEST

START_TEST(files_keep_the_classes)
{
    cd_decoder *d = small_decoder(CD_DECODER_UNET, 4, 8, 8, 9), *e = NULL;
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "classes.cdm");
    CD_ASSERT_OK(cd_decoder_save(d, path));
    CD_ASSERT_OK(cd_decoder_load(&e, path));
    ck_assert_int_eq(cd_decoder_class_count(e), 4);
    cd_tensor *z = cd_test_tensor4(3, 1, 8, 8), *a = cd_test_tensor4(3, 1, 8, 8);
    cd_tensor *b = cd_test_tensor4(3, 1, 8, 8);
    cd_gc_randn(cd_tensor_data(z), 3 * 64, 4, 1.0f);
    cd_tensor *tau = vector(3, (const float[]){0.2f, 0.5f, 0.9f});
    cd_tensor *lab = vector(3, (const float[]){3, -1, 1});
    CD_ASSERT_OK(cd_decoder_infer_labeled(d, z, tau, lab, a));
    CD_ASSERT_OK(cd_decoder_infer_labeled(e, z, tau, lab, b));
    ck_assert(same(a, b));
    cd_tensor_free(z), cd_tensor_free(a), cd_tensor_free(b), cd_tensor_free(tau);
    cd_tensor_free(lab);
    cd_decoder_free(d), cd_decoder_free(e);
}
END_TEST

/* ---- the trainer ----------------------------------------------------------- */

static cd_degradation *noise_degradation(int64_t T)
{
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, T, 1e-4, 0.05));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    cd_schedule_free(s);
    return deg;
}

/* The loss and weights after one labeled step from fresh copies. */
static double one_step(const cd_tensor *x, const cd_tensor *labels, double dropout, float *weights)
{
    cd_decoder *d = small_decoder(CD_DECODER_CNN, 2, 8, 8, 21);
    cd_degradation *deg = noise_degradation(50);
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_trainer_create(&tr, d, deg));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, dropout));
    CD_ASSERT_OK(cd_rng_create(&rng, 8));
    double loss = 0.0;
    CD_ASSERT_OK(cd_trainer_step_labeled(tr, x, labels, rng, &loss));
    cd_params *p = cd_decoder_params(d);
    memcpy(weights, cd_params_data(p, -1), (size_t)cd_params_numel(p) * sizeof(float));
    cd_rng_free(rng);
    cd_trainer_free(tr);
    cd_decoder_free(d);
    cd_degradation_free(deg);
    return loss;
}

START_TEST(dropout_one_is_training_without_labels)
{
    cd_tensor *x = cd_test_tensor4(6, 1, 8, 8);
    cd_test_fill_uniform(x, 2, -0.5f, 0.5f);
    cd_tensor *lab = vector(6, (const float[]){0, 1, 0, 1, 1, 0});
    cd_decoder *probe = small_decoder(CD_DECODER_CNN, 2, 8, 8, 21);
    const int64_t n = cd_decoder_param_count(probe);
    cd_decoder_free(probe);
    float *w_none = malloc((size_t)n * sizeof(float)), *w_all = malloc((size_t)n * sizeof(float));
    float *w_lab = malloc((size_t)n * sizeof(float));
    const double l_none = one_step(x, NULL, 0.1, w_none);
    const double l_all = one_step(x, lab, 1.0, w_all);
    const double l_lab = one_step(x, lab, 0.0, w_lab);
    /* Dropping every label is "no class" for all: the same bits. */
    ck_assert(l_none == l_all);
    ck_assert(memcmp(w_none, w_all, (size_t)n * sizeof(float)) == 0);
    ck_assert(l_lab != l_none);
    free(w_none), free(w_all), free(w_lab);

    /* Errors: labels without classes, and of the wrong length. */
    cd_decoder *plain = small_decoder(CD_DECODER_CNN, 0, 8, 8, 1);
    cd_degradation *deg = noise_degradation(50);
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    double loss = 0.0, v = 0.0;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_trainer_create(&tr, plain, deg));
    CD_ASSERT_STATUS(cd_trainer_step_labeled(tr, x, lab, rng, &loss), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("no classes");
    CD_ASSERT_OK(cd_trainer_get_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, &v));
    ck_assert(v == 0.1);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, 1.5), CD_ERR_RANGE);
    cd_trainer_free(tr);
    cd_decoder *d = small_decoder(CD_DECODER_CNN, 2, 8, 8, 1);
    CD_ASSERT_OK(cd_trainer_create(&tr, d, deg));
    cd_tensor *short_lab = vector(5, (const float[]){0, 1, 0, 1, 1});
    CD_ASSERT_STATUS(cd_trainer_step_labeled(tr, x, short_lab, rng, &loss), CD_ERR_SHAPE);
    cd_tensor *big = vector(6, (const float[]){0, 1, 2, 1, 1, 0});
    CD_ASSERT_STATUS(cd_trainer_step_labeled(tr, x, big, rng, &loss), CD_ERR_RANGE);
    ck_assert_int_eq(cd_trainer_steps(tr), 0);
    cd_trainer_free(tr);
    cd_tensor_free(x), cd_tensor_free(lab), cd_tensor_free(short_lab), cd_tensor_free(big);
    cd_rng_free(rng);
    cd_decoder_free(plain), cd_decoder_free(d);
    cd_degradation_free(deg);
}
END_TEST

START_TEST(fit_takes_labels_from_the_dataset)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_degradation *deg = noise_degradation(100);
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    /* MNIST has 10 classes: a table of 5 is refused before any step. */
    cd_decoder *small = small_decoder(CD_DECODER_UNET, 5, 28, 28, 2);
    CD_ASSERT_OK(cd_trainer_create(&tr, small, deg));
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 1, NULL, NULL, rng, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("10 classes");
    ck_assert_int_eq(cd_trainer_steps(tr), 0);
    cd_trainer_free(tr);

    cd_decoder *d = small_decoder(CD_DECODER_UNET, 10, 28, 28, 2);
    CD_ASSERT_OK(cd_trainer_create(&tr, d, deg));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 64));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LABEL_DROPOUT, 0.25));
    int64_t idx = -1;
    cd_params *p = cd_decoder_params(d);
    CD_ASSERT_OK(cd_params_find(p, "label_embed.weight", &idx));
    const int64_t rows = 11, width = cd_params_numel_at(p, idx) / rows;
    float *before = malloc((size_t)(rows * width) * sizeof(float));
    memcpy(before, cd_params_data(p, idx), (size_t)(rows * width) * sizeof(float));
    CD_ASSERT_OK(cd_trainer_fit(tr, ds, 1, NULL, NULL, rng, NULL, NULL));
    ck_assert_int_gt(cd_trainer_steps(tr), 0);
    /* Every row learnt: the ten digits' from the dataset's labels, the
     * last from the dropped ones. */
    for (int64_t r = 0; r < rows; r++)
        ck_assert_msg(memcmp(before + r * width, cd_params_data(p, idx) + r * width,
                             (size_t)width * sizeof(float)) != 0,
                      "row %lld of the label table did not change", (long long)r);
    free(before);
    double val = 0.0, mean = 0.0, se = 0.0;
    CD_ASSERT_OK(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &val));
    CD_ASSERT_OK(cd_trainer_test_loss(tr, ds, CD_SPLIT_VAL, rng, &mean, &se));
    ck_assert(isfinite(val) && isfinite(mean) && val > 0 && mean > 0);

    /* The trainer's file keeps the classes and the dropout rate. */
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "cond.ckpt");
    CD_ASSERT_OK(cd_trainer_save(tr, path, rng));
    cd_trainer *back = NULL;
    CD_ASSERT_OK(cd_trainer_load(&back, path, NULL));
    double drop = 0.0;
    CD_ASSERT_OK(cd_trainer_get_real(back, CD_TRAINER_OPT_LABEL_DROPOUT, &drop));
    ck_assert(drop == 0.25);
    ck_assert_int_eq(cd_decoder_class_count(cd_trainer_decoder(back)), 10);
    cd_trainer_free(back);
    cd_trainer_free(tr);
    cd_decoder_free(small), cd_decoder_free(d);
    cd_degradation_free(deg);
    cd_rng_free(rng);
    cd_dataset_free(ds);
}
END_TEST

/* ---- guidance in the samplers ------------------------------------------------ */

typedef struct {
    cd_decoder *d;
    const cd_tensor *labels;
    double w;
    cd_tensor *u;
} guided;

/* u + w (c - u) computed outside the library, for comparison. */
static cd_status guided_predictor(const cd_tensor *z, const cd_tensor *tau, cd_tensor *out,
                                  void *user)
{
    guided *g = user;
    cd_status st = cd_decoder_infer_labeled(g->d, z, tau, g->labels, out);
    if (st == CD_OK) st = cd_decoder_infer(g->d, z, tau, g->u);
    if (st != CD_OK) return st;
    float *c = cd_tensor_data(out);
    const float *u = cd_tensor_data(g->u);
    for (int64_t i = 0; i < cd_tensor_numel(out); i++)
        c[i] = (float)((double)u[i] + g->w * ((double)c[i] - (double)u[i]));
    return CD_OK;
}

/* Sample with kind and the decoder, labels and guidance w; out is filled. */
static void run_sampler(cd_sampler_kind kind, const cd_degradation *deg, cd_decoder *d,
                        const cd_tensor *labels, double w, cd_tensor *out, bool by_hand)
{
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_sampler_create(&s, kind, deg));
    if (kind == CD_SAMPLER_DDIM) CD_ASSERT_OK(cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 7));
    guided g = {d, labels, w, NULL};
    if (by_hand) {
        CD_ASSERT_OK(cd_tensor_clone(&g.u, out));
        CD_ASSERT_OK(cd_sampler_set_predictor(s, guided_predictor, &g));
    } else {
        CD_ASSERT_OK(cd_sampler_set_decoder(s, d));
        CD_ASSERT_OK(cd_sampler_set_labels(s, labels));
        CD_ASSERT_OK(cd_sampler_set_real(s, CD_SAMPLER_OPT_GUIDANCE, w));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, 77));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, out));
    cd_tensor_free(g.u);
    cd_rng_free(rng);
    cd_sampler_free(s);
}

START_TEST(guidance_in_every_sampler)
{
    cd_schedule *cs = NULL;
    cd_degradation *noise = noise_degradation(20), *blur = NULL;
    CD_ASSERT_OK(cd_schedule_create_constant(&cs, 10, 1.0));
    CD_ASSERT_OK(cd_degradation_create_blur(&blur, cs, 3, CD_PADDING_REFLECT));
    CD_ASSERT_OK(cd_degradation_set_prior(blur, 0.0, 0.1, 0.01));
    cd_schedule_free(cs);
    const struct {
        cd_sampler_kind kind;
        const cd_degradation *deg;
    } cases[] = {{CD_SAMPLER_DDPM, noise},
                 {CD_SAMPLER_DDIM, noise},
                 {CD_SAMPLER_COLD1, blur},
                 {CD_SAMPLER_COLD2, blur},
                 {CD_SAMPLER_DIRECT, blur}};
    cd_tensor *lab = vector(3, (const float[]){1, 0, -1});
    cd_tensor *a = cd_test_tensor4(3, 1, 8, 8), *b = cd_test_tensor4(3, 1, 8, 8);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_decoder *d = small_decoder(CD_DECODER_UNET, 2, 8, 8, 13);
        /* Fresh decoders know no T; record this one's as a trainer would. */
        cd_trainer *tr = NULL;
        CD_ASSERT_OK(cd_trainer_create(&tr, d, (cd_degradation *)cases[i].deg));
        cd_trainer_free(tr);
        /* w = 0 is the unconditional sampler, bit for bit. */
        run_sampler(cases[i].kind, cases[i].deg, d, lab, 0.0, a, false);
        run_sampler(cases[i].kind, cases[i].deg, d, NULL, 1.0, b, false);
        ck_assert_msg(same(a, b), "sampler %d: w = 0 differs from no labels", cases[i].kind);
        /* w = 1 is the conditional one, and differs. */
        run_sampler(cases[i].kind, cases[i].deg, d, lab, 1.0, a, false);
        ck_assert_msg(!same(a, b), "sampler %d: the labels change nothing", cases[i].kind);
        /* Any other w mixes the two as a predictor doing it by hand. */
        run_sampler(cases[i].kind, cases[i].deg, d, lab, 2.5, a, false);
        run_sampler(cases[i].kind, cases[i].deg, d, lab, 2.5, b, true);
        ck_assert_msg(same(a, b), "sampler %d: guidance differs from u + w (c - u)", cases[i].kind);
        cd_decoder_free(d);
    }
    cd_tensor_free(a), cd_tensor_free(b), cd_tensor_free(lab);
    cd_degradation_free(noise), cd_degradation_free(blur);
}
END_TEST

START_TEST(guidance_errors)
{
    cd_degradation *deg = noise_degradation(20);
    cd_sampler *s = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(cd_sampler_create(&s, CD_SAMPLER_DDPM, deg));
    cd_option_info info;
    CD_ASSERT_OK(cd_sampler_option_info(CD_SAMPLER_OPT_GUIDANCE, &info));
    CD_ASSERT_OPTION_INFO(info, "guidance", CD_OPTION_REAL, -1, 1);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_GUIDANCE, -0.5), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_real(s, CD_SAMPLER_OPT_GUIDANCE, NAN), CD_ERR_NOT_FINITE);
    cd_tensor *frac = vector(2, (const float[]){0.5f, 1});
    CD_ASSERT_STATUS(cd_sampler_set_labels(s, frac), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_sampler_set_labels(NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_tensor *img = cd_test_tensor4(2, 1, 8, 8);
    CD_ASSERT_STATUS(cd_sampler_set_labels(s, img), CD_ERR_SHAPE);
    cd_tensor *lab = vector(2, (const float[]){1, 0});
    CD_ASSERT_OK(cd_sampler_set_labels(s, lab));
    /* A predictor function takes no labels. */
    guided g = {0};
    CD_ASSERT_OK(cd_sampler_set_predictor(s, guided_predictor, &g));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, img), CD_ERR_STATE);
    /* A decoder without classes. */
    cd_decoder *plain = small_decoder(CD_DECODER_UNET, 0, 8, 8, 1);
    CD_ASSERT_OK(cd_sampler_set_decoder(s, plain));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, img), CD_ERR_INVALID_ARGUMENT);
    /* The wrong count, and a class the decoder lacks. */
    cd_decoder *d = small_decoder(CD_DECODER_UNET, 1, 8, 8, 1);
    CD_ASSERT_OK(cd_sampler_set_decoder(s, d));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, img), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("1 classes");
    cd_tensor *three = vector(3, (const float[]){0, 0, 0});
    CD_ASSERT_OK(cd_sampler_set_labels(s, three));
    CD_ASSERT_STATUS(cd_sampler_sample(s, rng, img), CD_ERR_SHAPE);
    /* Forgetting the labels samples unconditionally. */
    CD_ASSERT_OK(cd_sampler_set_labels(s, NULL));
    CD_ASSERT_OK(cd_sampler_sample(s, rng, img));
    cd_tensor_free(frac), cd_tensor_free(img), cd_tensor_free(lab), cd_tensor_free(three);
    cd_decoder_free(plain), cd_decoder_free(d);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_rng_free(rng);
}
END_TEST

/* ---- learning two classes ------------------------------------------------- */

/* Class 0 images are dark, class 1 bright, both with a little noise: after
 * a short training, guided samples of each class must come out on their
 * class's side, which no unconditional model can do. */
START_TEST(guidance_tells_two_classes_apart)
{
    const int64_t N = 32, H = 8, W = 8, D = H * W;
    cd_decoder *d = small_decoder(CD_DECODER_UNET, 2, H, W, 17);
    cd_degradation *deg = noise_degradation(50);
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 23));
    CD_ASSERT_OK(cd_trainer_create(&tr, d, deg));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 3e-3));
    cd_tensor *x = cd_test_tensor4(N, 1, H, W), *lab = vector(N, NULL);
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 300; step++) {
        cd_test_fill_uniform(x, 100 + (uint64_t)step, -0.05f, 0.05f);
        float *px = cd_tensor_data(x), *pl = cd_tensor_data(lab);
        for (int64_t n = 0; n < N; n++) {
            pl[n] = (float)(n % 2);
            for (int64_t k = 0; k < D; k++) px[n * D + k] += n % 2 ? 0.4f : -0.4f;
        }
        double loss = 0.0;
        CD_ASSERT_OK(cd_trainer_step_labeled(tr, x, lab, rng, &loss));
        if (step < 20) first += loss / 20;
        if (step >= 280) last += loss / 20;
    }
    printf("two classes: loss %.4f over the first 20 steps, %.4f over the last 20\n", first, last);
    ck_assert_msg(last < 0.7 * first, "the loss did not fall: %g -> %g", first, last);
    cd_tensor *out = cd_test_tensor4(16, 1, H, W);
    for (int cls = 0; cls < 2; cls++) {
        cd_tensor *want = vector(16, NULL);
        CD_ASSERT_OK(cd_tensor_fill(want, (float)cls));
        run_sampler(CD_SAMPLER_DDIM, deg, d, want, 3.0, out, false);
        const float *o = cd_tensor_data(out);
        int64_t right = 0;
        for (int64_t n = 0; n < 16; n++) {
            double m = 0.0;
            for (int64_t k = 0; k < D; k++) m += o[n * D + k] / (double)D;
            right += cls ? m > 0.2 : m < -0.2;
        }
        printf("class %d at w = 3: %lld of 16 samples on its side\n", cls, (long long)right);
        ck_assert_msg(right >= 15, "class %d: only %lld of 16 samples on its side", cls,
                      (long long)right);
        cd_tensor_free(want);
    }
    cd_tensor_free(x), cd_tensor_free(lab), cd_tensor_free(out);
    cd_trainer_free(tr);
    cd_decoder_free(d);
    cd_degradation_free(deg);
    cd_rng_free(rng);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("conditional");
    TCase *tc = tcase_create("conditional");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, labels_pick_rows_of_the_table);
    tcase_add_test(tc, label_errors);
    tcase_add_test(tc, files_keep_the_classes);
    tcase_add_test(tc, dropout_one_is_training_without_labels);
    tcase_add_test(tc, fit_takes_labels_from_the_dataset);
    tcase_add_test(tc, guidance_in_every_sampler);
    tcase_add_test(tc, guidance_errors);
    tcase_add_test(tc, guidance_tells_two_classes_apart);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
