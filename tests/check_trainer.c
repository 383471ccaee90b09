/* check_trainer.c - Algorithm 1: a short real run whose loss falls, exact
 * resumption from a checkpoint, evaluation, options and errors. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "colddiff_experimental.h"

/* The experimental key is a constant of an enum of its own: GCC's
 * -Wenum-conversion (in -Wextra) wants the cast to cd_trainer_option. */
#define LR_DECAY CD_TRAINER_OPT_LR_DECAY

#include "nn/nn.h"

static cd_decoder *make_cnn(const int64_t *hidden, int64_t n_hidden, int64_t kernel, uint64_t seed)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    if (hidden) {
        CD_ASSERT_OK(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, hidden, n_hidden));
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_KERNEL, kernel));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, seed));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return d;
}

/* A trainer of decoder d on the noise or the blur degradation; it borrows d
 * and its degradation, which cd_test_trainer_free_all() frees after it. */
static cd_trainer *trainer_of(int blur, cd_decoder *d)
{
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    cd_trainer *tr = NULL;
    if (blur) {
        CD_ASSERT_OK(cd_schedule_create_constant(&s, 20, 1.0));
        CD_ASSERT_OK(cd_degradation_create_blur(&deg, s, 11, CD_PADDING_REFLECT));
    } else {
        CD_ASSERT_OK(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02));
        CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    }
    cd_schedule_free(s);
    CD_ASSERT_OK(cd_trainer_create(&tr, d, deg));
    return tr;
}

static cd_trainer *make_trainer(int blur, const int64_t *hidden, int64_t n_hidden)
{
    return trainer_of(blur, make_cnn(hidden, n_hidden, 3, 7));
}

static cd_tensor *batch_tensor(int64_t n)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, (int64_t[]){n, 1, 28, 28}));
    return t;
}

/* The report's CNN on the 800 training images of the slice: the mean loss
 * of the last 10 steps is at most half that of the first 10. (A sanitizer
 * build runs the same with a narrower CNN, for speed.) */
START_TEST(short_run_loss_falls)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    const int64_t narrow[3] = {8, 8, 8};
    cd_trainer *tr = CD_TEST_SANITIZED ? make_trainer(0, narrow, 3) : make_trainer(0, NULL, 0);
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 2e-3));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 42));
    cd_tensor *batch = batch_tensor(32);
    enum { STEPS = 80 };
    double first = 0, last = 0;
    for (int s = 0; s < STEPS; s++) {
        int64_t pos = (s * 32) % 768, got = 0;
        if (pos == 0) CD_ASSERT_OK(cd_dataset_shuffle(ds, CD_SPLIT_TRAIN, rng));
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, pos, batch, NULL, &got));
        double loss = 0;
        CD_ASSERT_OK(cd_trainer_step(tr, batch, rng, &loss));
        ck_assert(isfinite(loss));
        if (s < 10) first += loss / 10;
        if (s >= STEPS - 10) last += loss / 10;
    }
    printf("short run: mean loss %.4f over the first 10 steps, %.4f over the last 10\n", first,
           last);
    ck_assert_msg(last <= 0.5 * first, "loss fell only from %g to %g", first, last);
    ck_assert_int_eq(cd_trainer_steps(tr), STEPS);
    double val = 0;
    CD_ASSERT_OK(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &val));
    ck_assert_msg(val < first, "validation loss %g", val);
    cd_tensor_free(batch);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

static void run_steps(cd_trainer *tr, cd_dataset *ds, cd_rng *rng, cd_tensor *batch, int from,
                      int to)
{
    for (int s = from; s < to; s++) {
        int64_t got = 0;
        double loss = 0;
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 8 * s, batch, NULL, &got));
        CD_ASSERT_OK(cd_trainer_step(tr, batch, rng, &loss));
    }
}

/* Stop after 3 steps, save, load, run 3 more: the same bits as 6 steps in
 * one go (same seed, same thread count), for noise and blur, with EMA,
 * clipping and a learning-rate schedule on so every piece of state must
 * survive. */
START_TEST(resume_is_bit_identical)
{
    const int64_t hidden[2] = {4, 6};
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_tensor *batch = batch_tensor(8);
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "resume.cdm");
    for (int blur = 0; blur < 2; blur++) {
        cd_trainer *a = make_trainer(blur, hidden, 2), *b = make_trainer(blur, hidden, 2),
                   *c = NULL;
        cd_rng *ra = NULL, *rb = NULL, *rc = NULL;
        CD_ASSERT_OK(cd_rng_create(&ra, 5));
        CD_ASSERT_OK(cd_rng_create(&rb, 5));
        CD_ASSERT_OK(cd_rng_create(&rc, 999)); /* overwritten by the load */
        for (int k = 0; k < 2; k++) {
            cd_trainer *t = k ? b : a;
            CD_ASSERT_OK(cd_trainer_set_real(t, CD_TRAINER_OPT_EMA_DECAY, 0.9));
            CD_ASSERT_OK(cd_trainer_set_real(t, CD_TRAINER_OPT_CLIP_NORM, 0.5));
            CD_ASSERT_OK(cd_trainer_set_real(t, CD_TRAINER_OPT_LR, 1e-3));
            CD_ASSERT_OK(cd_trainer_set_int(t, CD_TRAINER_OPT_T_PER_BATCH, blur));
            /* The schedule spans the stop: a ramp to step 2, the cosine to 0 at 5. */
            CD_ASSERT_OK(cd_trainer_set_int(t, CD_TRAINER_OPT_LR_WARMUP, 2));
            CD_ASSERT_OK(cd_trainer_set_int(t, LR_DECAY, 5));
        }
        run_steps(a, ds, ra, batch, 0, 6);
        run_steps(b, ds, rb, batch, 0, 3);
        CD_ASSERT_OK(cd_trainer_save(b, path, rb));
        cd_test_trainer_free_all(b);
        CD_ASSERT_OK(cd_trainer_load(&c, path, rc));
        ck_assert_int_eq(cd_trainer_steps(c), 3);
        int64_t v = 0;
        CD_ASSERT_OK(cd_trainer_get_int(c, CD_TRAINER_OPT_T_PER_BATCH, &v));
        ck_assert_int_eq(v, blur);
        CD_ASSERT_OK(cd_trainer_get_int(c, LR_DECAY, &v));
        ck_assert_int_eq(v, 5);
        run_steps(c, ds, rc, batch, 3, 6);
        cd_params *pa = cd_decoder_params(cd_trainer_decoder(a));
        cd_params *pc = cd_decoder_params(cd_trainer_decoder(c));
        ck_assert_int_eq(cd_params_numel(pa), cd_params_numel(pc));
        ck_assert_msg(memcmp(cd_params_data(pa, -1), cd_params_data(pc, -1),
                             (size_t)cd_params_numel(pa) * sizeof(float)) == 0,
                      "%s: resumed weights differ", blur ? "blur" : "noise");
        cd_rng_free(ra);
        cd_rng_free(rb);
        cd_rng_free(rc);
        cd_test_trainer_free_all(a);
        cd_trainer_free(c); /* loaded: it owns its decoder and degradation */
    }
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}
END_TEST

/* The EMA that cd_trainer_copy_ema() installs is the running
 * ema = d ema + (1 - d) p over the weights after every step, started from
 * the weights before the first step; it survives a save and load. */
/* The report's CNN (its 7x7 layers on the spectral path) and a small UNet
 * (attention on the BLAS), three steps with EMA and clipping at one thread
 * and at three: the same bits, on whichever kernels this machine runs. */
static cd_trainer *trainer_on(cd_decoder_kind type)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, type));
    if (type == CD_DECODER_UNET) {
        CD_ASSERT_OK(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, 8));
        CD_ASSERT_OK(
            cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
    }
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    cd_trainer *tr = trainer_of(0, d);
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.9));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_CLIP_NORM, 0.5));
    return tr;
}

START_TEST(training_is_thread_count_independent)
{
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_tensor *batch = batch_tensor(8);
    const int64_t threads = cd_get_num_threads();
    for (int u = 0; u < 2; u++) {
        const cd_decoder_kind type = u ? CD_DECODER_UNET : CD_DECODER_CNN;
        float *first = NULL;
        int64_t n = 0;
        for (int k = 0; k < 2; k++) {
            CD_ASSERT_OK(cd_set_num_threads(k ? 3 : 1));
            cd_trainer *tr = trainer_on(type);
            cd_rng *rng = NULL;
            CD_ASSERT_OK(cd_rng_create(&rng, 11));
            run_steps(tr, ds, rng, batch, 0, 3);
            cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
            n = cd_params_numel(p);
            if (k == 0) {
                first = malloc((size_t)n * sizeof *first);
                memcpy(first, cd_params_data(p, -1), (size_t)n * sizeof *first);
            } else {
                ck_assert_msg(memcmp(first, cd_params_data(p, -1), (size_t)n * sizeof *first) == 0,
                              "%s: 3 threads trained other weights than 1", u ? "unet" : "cnn");
            }
            cd_rng_free(rng);
            cd_test_trainer_free_all(tr);
        }
        free(first);
    }
    CD_ASSERT_OK(cd_set_num_threads(threads));
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}
END_TEST

/* swap_ema exchanges weights and EMA exactly, twice is the identity, and
 * nothing that would take the average for the training weights runs in
 * between. */
START_TEST(swap_ema_is_exact_and_guarded)
{
    const int64_t hidden[2] = {4, 6};
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_tensor *batch = batch_tensor(8);
    cd_trainer *tr = make_trainer(0, hidden, 2);
    cd_rng *rng = NULL;
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "swap.cdm");
    CD_ASSERT_OK(cd_rng_create(&rng, 9));
    CD_ASSERT_STATUS(cd_trainer_swap_ema(tr), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("EMA");
    ck_assert_int_eq(cd_trainer_ema_swapped(tr), 0);
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, 0.5));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-2));
    run_steps(tr, ds, rng, batch, 0, 3);
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    const int64_t n = cd_params_numel(p);
    const size_t bytes = (size_t)n * sizeof(float);
    float *w = cd_params_data(p, -1), *raw = malloc(bytes), *ema = malloc(bytes);
    memcpy(raw, w, bytes);
    /* The EMA itself, through the call this one must agree with. */
    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    cd_trainer *twin = NULL;
    CD_ASSERT_OK(cd_trainer_load(&twin, path, NULL));
    CD_ASSERT_OK(cd_trainer_copy_ema(twin));
    memcpy(ema, cd_params_data(cd_decoder_params(cd_trainer_decoder(twin)), -1), bytes);
    ck_assert_msg(memcmp(raw, ema, bytes) != 0, "EMA equals the weights: the test proves nothing");

    CD_ASSERT_OK(cd_trainer_swap_ema(tr));
    ck_assert_int_eq(cd_trainer_ema_swapped(tr), 1);
    ck_assert_mem_eq(w, ema, bytes);
    double loss = 0.0;
    CD_ASSERT_OK(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &loss));
    CD_ASSERT_STATUS(cd_trainer_step(tr, batch, rng, &loss), CD_ERR_STATE);
    CD_ASSERT_ERROR_MENTIONS("swap");
    CD_ASSERT_STATUS(cd_trainer_save(tr, path, NULL), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd_trainer_export(tr, path), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd_trainer_copy_ema(tr), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd_trainer_fit(tr, ds, 1, NULL, NULL, rng, NULL, NULL), CD_ERR_STATE);
    CD_ASSERT_OK(cd_trainer_swap_ema(tr));
    ck_assert_int_eq(cd_trainer_ema_swapped(tr), 0);
    ck_assert_mem_eq(w, raw, bytes);
    /* Training goes on from the raw weights and the untouched EMA. */
    run_steps(tr, ds, rng, batch, 3, 4);
    CD_ASSERT_STATUS(cd_trainer_swap_ema(NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(cd_trainer_ema_swapped(NULL), -1);
    cd_clear_error();
    free(raw), free(ema);
    cd_trainer_free(twin);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(copy_ema_installs_the_average)
{
    const int64_t hidden[2] = {4, 6};
    const float d = 0.75f;
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_tensor *batch = batch_tensor(8);
    cd_trainer *tr = make_trainer(0, hidden, 2), *back = NULL;
    cd_rng *rng = NULL;
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "ema.cdm");
    CD_ASSERT_OK(cd_rng_create(&rng, 8));
    CD_ASSERT_STATUS(cd_trainer_copy_ema(tr), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("EMA");
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_EMA_DECAY, d));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-2));
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    const int64_t n = cd_params_numel(p);
    double *want = malloc((size_t)n * sizeof *want);
    const float *w = cd_params_data(p, -1);
    for (int64_t i = 0; i < n; i++) want[i] = w[i];
    for (int s = 0; s < 4; s++) {
        run_steps(tr, ds, rng, batch, s, s + 1);
        for (int64_t i = 0; i < n; i++) want[i] = d * want[i] + (1.0 - d) * w[i];
    }
    float *last = malloc((size_t)n * sizeof *last);
    memcpy(last, w, (size_t)n * sizeof *last);
    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    CD_ASSERT_OK(cd_trainer_copy_ema(tr));
    double worst = 0.0, moved = 0.0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(w[i] - want[i]) / (fabs(want[i]) + 1e-3));
        moved = fmax(moved, fabs((double)last[i] - want[i]));
    }
    ck_assert_msg(worst < 1e-5, "EMA off by %g (relative)", worst);
    ck_assert_msg(moved > 1e-4, "the EMA equals the last weights: the test proves nothing");
    CD_ASSERT_OK(cd_trainer_load(&back, path, NULL));
    CD_ASSERT_OK(cd_trainer_copy_ema(back));
    ck_assert_mem_eq(cd_params_data(cd_decoder_params(cd_trainer_decoder(back)), -1), w,
                     (size_t)n * sizeof(float));
    CD_ASSERT_STATUS(cd_trainer_copy_ema(NULL), CD_ERR_INVALID_ARGUMENT);
    free(want);
    free(last);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_trainer_free(back);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(eval_leaves_weights_alone)
{
    const int64_t hidden[2] = {4, 6};
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_trainer *tr = make_trainer(1, hidden, 2);
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 64)); /* 200 = 3 x 64 + 8 */
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);
    float *before = malloc(bytes);
    memcpy(before, cd_params_data(p, -1), bytes);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    double l1 = 0, l2 = 0;
    CD_ASSERT_OK(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &l1));
    ck_assert_mem_eq(cd_params_data(p, -1), before, bytes);
    ck_assert(isfinite(l1) && l1 > 0);
    CD_ASSERT_OK(cd_trainer_eval_loss(tr, ds, CD_SPLIT_VAL, rng, &l2));
    ck_assert(isfinite(l2) && l2 > 0);
    free(before);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(bad_input_is_an_error)
{
    const int64_t hidden[2] = {4, 6};
    cd_trainer *tr = make_trainer(0, hidden, 2), *bad = (cd_trainer *)0x1;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    double loss = 0, v = 0;
    int64_t iv = 0;
    cd_option_info info;
    cd_tensor *two = NULL, *x = batch_tensor(4);
    CD_ASSERT_OK(cd_tensor_create(&two, 4, (int64_t[]){4, 2, 28, 28}));
    CD_ASSERT_STATUS(cd_trainer_step(tr, two, rng, &loss), CD_ERR_SHAPE);
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);
    float *before = malloc(bytes);
    memcpy(before, cd_params_data(p, -1), bytes);
    cd_tensor_data(x)[17] = NAN;
    CD_ASSERT_STATUS(cd_trainer_step(tr, x, rng, &loss), CD_ERR_NOT_FINITE);
    ck_assert_mem_eq(cd_params_data(p, -1), before, bytes);
    ck_assert_int_eq(cd_trainer_steps(tr), 0);
    CD_ASSERT_STATUS(cd_trainer_step(tr, x, NULL, &loss), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, -1.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_MAX, 1001), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_LOSS, 2), CD_ERR_RANGE);
    /* A fractional batch can only come through the real call: refused. */
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_VAL_BATCH, 0.5),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, (cd_trainer_option)12, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, (cd_trainer_option)10, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_MAX, 999));
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_T_MAX, &iv));
    ck_assert_int_eq(iv, 999);
    CD_ASSERT_OK(cd_trainer_get_real(tr, CD_TRAINER_OPT_LR, &v));
    ck_assert(v == 2e-4);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_EMA_DECAY, &info));
    ck_assert(info.lo == 0 && info.hi == 1 && !info.lo_open && info.hi_open);
    CD_ASSERT_STATUS(cd_trainer_create(&bad, NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(bad);
    CD_ASSERT_STATUS(cd_trainer_load(&bad, "/nonexistent/x.cdm", rng), CD_ERR_NOT_FOUND);
    ck_assert_int_eq(cd_trainer_steps(NULL), -1);
    free(before);
    cd_tensor_free(two);
    cd_tensor_free(x);
    cd_rng_free(rng);
    cd_test_trainer_free_all(tr);
    cd_trainer_free(NULL);
}
END_TEST

/* Rewrite a trainer file with one configuration entry changed (int64
 * scalar, or int64 array when n > 0) and params' tensors (none if NULL). */
static void rewrite(const char *path, const char *key, const int64_t *v, int64_t n,
                    cd_params *params)
{
    cd__ckpt *ck = NULL;
    cd_params *empty = NULL;
    CD_ASSERT_OK(cd_params_create(&empty));
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    CD_ASSERT_OK(n ? cd__ckpt_set_i64_array(ck, key, v, n) : cd__ckpt_set_i64(ck, key, *v));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, params ? params : empty, NULL));
    cd__ckpt_free(ck);
    cd_params_free(empty);
}

/* A configuration that claims more than the file holds is refused for what
 * is missing before anything of the claimed size is allocated: the model's
 * parameters, the schedule of T steps, fade's mean image. */
START_TEST(claims_beyond_the_file_allocate_nothing)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "t.cdm");
    const int64_t hidden[2] = {4, 6};
    cd_trainer *tr = make_trainer(0, hidden, 2), *bad = (cd_trainer *)0x1;
    cd_params *p = cd_decoder_params(cd_trainer_decoder(tr));
    const int64_t big = 2048, huge_t = 1000000, fade_shape[3] = {1, 4096, 4096};

    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    rewrite(path, "decoder.height", &big, 0, NULL);
    rewrite(path, "decoder.width", &big, 0, NULL);
    (void)cd__alloc_largest(true);
    CD_ASSERT_STATUS(cd_trainer_load(&bad, path, NULL), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("blocks.0.net.0.weight");
    ck_assert_ptr_null(bad);
    ck_assert_uint_lt(cd__alloc_largest(true), 1u << 16);

    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    rewrite(path, "schedule.T", &huge_t, 0, p);
    (void)cd__alloc_largest(true);
    CD_ASSERT_STATUS(cd_trainer_load(&bad, path, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("schedule.beta");
    /* the parameters the file holds, and nothing larger */
    ck_assert_uint_le(cd__alloc_largest(true), 2 * (size_t)cd_test_file_size(path));

    /* fade, its mean image 1 x 28 x 28 in the file, 1 x 4096 x 4096 claimed */
    cd_schedule *s = NULL;
    cd_degradation *fade = NULL;
    cd_tensor *mean = NULL;
    CD_ASSERT_OK(cd_tensor_create(&mean, 3, (int64_t[]){1, 28, 28}));
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 20, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_fade(&fade, s, mean));
    cd_trainer *tf = NULL;
    cd_decoder *fade_dec = make_cnn(hidden, 2, 3, 7);
    CD_ASSERT_OK(cd_trainer_create(&tf, fade_dec, fade));
    CD_ASSERT_OK(cd_trainer_save(tf, path, NULL));
    CD_ASSERT_OK(cd_trainer_load(&bad, path, NULL)); /* the honest file loads */
    cd_trainer_free(bad);
    rewrite(path, "degradation.mean_shape", fade_shape, 3,
            cd_decoder_params(cd_trainer_decoder(tf)));
    (void)cd__alloc_largest(true);
    CD_ASSERT_STATUS(cd_trainer_load(&bad, path, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("mean_image");
    ck_assert_uint_le(cd__alloc_largest(true), 2 * (size_t)cd_test_file_size(path));

    cd_tensor_free(mean);
    cd_schedule_free(s);
    cd_trainer_free(tf);
    cd_decoder_free(fade_dec);
    cd_degradation_free(fade);
    cd_test_trainer_free_all(tr);
}
END_TEST

/* A prior a file cannot have: the message wraps the cause once. */
START_TEST(bad_prior_in_a_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "prior.cdm");
    const int64_t hidden[2] = {4, 6};
    cd_trainer *tr = make_trainer(1, hidden, 2), *bad = (cd_trainer *)0x1;
    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    cd__ckpt *ck = NULL;
    CD_ASSERT_OK(cd__ckpt_read(&ck, path));
    CD_ASSERT_OK(cd__ckpt_set_f64(ck, "degradation.prior_std", -1.0));
    CD_ASSERT_OK(cd__ckpt_save(ck, path, cd_decoder_params(cd_trainer_decoder(tr)), NULL));
    cd__ckpt_free(ck);
    CD_ASSERT_STATUS(cd_trainer_load(&bad, path, NULL), CD_ERR_FORMAT);
    const char *msg = cd_last_error(), *first = strstr(msg, "bad prior");
    ck_assert_msg(first && !strstr(first + 1, "bad prior") &&
                      !strstr(msg, "checkpoint: bad "
                                   "prior: checkpoint"),
                  "message '%s'", msg);
    CD_ASSERT_ERROR_MENTIONS("cd_degradation_set_prior");
    ck_assert_ptr_null(bad);
    cd_test_trainer_free_all(tr);
}
END_TEST

/* The options model: every key's description, typed calls that refuse the
 * other type, non-finite reals, values out of range, bools past 1 and
 * choices past their enumeration, each failure keeping the old value; the
 * experimental key through the same calls. */
START_TEST(options_model)
{
    const int64_t hidden[2] = {4, 6};
    cd_trainer *tr = make_trainer(0, hidden, 2);
    cd_option_info info;
    int64_t iv = -7;
    double rv = -7;

    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_LR, &info));
    CD_ASSERT_OPTION_INFO(info, "lr", CD_OPTION_REAL, -1, 2e-4);
    ck_assert(info.lo == 0 && info.lo_open && info.hi == DBL_MAX);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_BETA1, &info));
    CD_ASSERT_OPTION_INFO(info, "beta1", CD_OPTION_REAL, -1, 0.9);
    ck_assert(info.lo == 0 && !info.lo_open && info.hi == 1 && info.hi_open);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_BATCH, &info));
    CD_ASSERT_OPTION_INFO(info, "batch", CD_OPTION_INT, -1, 128);
    ck_assert(info.lo == 1 && !info.lo_open);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_DECOUPLED, &info));
    CD_ASSERT_OPTION_INFO(info, "decoupled", CD_OPTION_BOOL, -1, 0);
    ck_assert(info.lo == 0 && info.hi == 1);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_LOSS, &info));
    CD_ASSERT_OPTION_INFO(info, "loss", CD_OPTION_CHOICE, CD_ENUM_LOSS, CD_LOSS_MSE);
    ck_assert(info.lo == 0 && info.hi == (double)(cd_enum_count(CD_ENUM_LOSS) - 1));
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_PREDICTION, &info));
    CD_ASSERT_OPTION_INFO(info, "prediction", CD_OPTION_CHOICE, CD_ENUM_PREDICTION,
                          CD_PREDICT_NOISE);
    CD_ASSERT_OK(cd_trainer_option_info(CD_TRAINER_OPT_BUCKET, &info));
    CD_ASSERT_OPTION_INFO(info, "bucket", CD_OPTION_INT, -1, 262144);
    ck_assert(info.lo == 0 && !info.lo_open);
    CD_ASSERT_OK(cd_trainer_option_info(LR_DECAY, &info));
    CD_ASSERT_OPTION_INFO(info, "lr_decay", CD_OPTION_INT, -1, 0);
    ck_assert(info.lo == 0 && !info.lo_open);
    ck_assert_str_eq(cd_enum_name(CD_ENUM_LOSS, CD_LOSS_L1), "l1");

    /* Every key: a fresh trainer holds the default its description gives. */
    const cd_trainer_option keys[] = {CD_TRAINER_OPT_LR,
                                      CD_TRAINER_OPT_BETA1,
                                      CD_TRAINER_OPT_BETA2,
                                      CD_TRAINER_OPT_EPS,
                                      CD_TRAINER_OPT_WEIGHT_DECAY,
                                      CD_TRAINER_OPT_DECOUPLED,
                                      CD_TRAINER_OPT_CLIP_NORM,
                                      CD_TRAINER_OPT_EMA_DECAY,
                                      CD_TRAINER_OPT_LR_WARMUP,
                                      CD_TRAINER_OPT_EMA_WARMUP,
                                      CD_TRAINER_OPT_T_MAX,
                                      CD_TRAINER_OPT_T_PER_BATCH,
                                      CD_TRAINER_OPT_LOSS,
                                      CD_TRAINER_OPT_VAL_BATCH,
                                      CD_TRAINER_OPT_BATCH,
                                      CD_TRAINER_OPT_PREDICTION,
                                      CD_TRAINER_OPT_LABEL_DROPOUT,
                                      CD_TRAINER_OPT_BUCKET,
                                      LR_DECAY};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        CD_ASSERT_OK(cd_trainer_option_info(keys[k], &info));
        if (info.type == CD_OPTION_REAL) {
            CD_ASSERT_OK(cd_trainer_get_real(tr, keys[k], &rv));
            ck_assert_msg(rv == info.default_value, "%s = %g, default %g", info.name, rv,
                          info.default_value);
            CD_ASSERT_STATUS(cd_trainer_get_int(tr, keys[k], &iv), CD_ERR_INVALID_ARGUMENT);
        } else {
            ck_assert_int_eq(info.choices >= 0, info.type == CD_OPTION_CHOICE);
            CD_ASSERT_OK(cd_trainer_get_int(tr, keys[k], &iv));
            ck_assert_msg((double)iv == info.default_value, "%s = %lld, default %g", info.name,
                          (long long)iv, info.default_value);
            CD_ASSERT_STATUS(cd_trainer_get_real(tr, keys[k], &rv), CD_ERR_INVALID_ARGUMENT);
        }
    }
    /* Unknown keys, the old LR_DECAY slot among them, and NULL. */
    const int bad_keys[] = {-1, 10, 11, 15, 24, 999, 1001};
    for (size_t k = 0; k < sizeof bad_keys / sizeof bad_keys[0]; k++) {
        const cd_trainer_option key = (cd_trainer_option)bad_keys[k];
        CD_ASSERT_STATUS(cd_trainer_option_info(key, &info), CD_ERR_INVALID_ARGUMENT);
        CD_ASSERT_STATUS(cd_trainer_set_int(tr, key, 1), CD_ERR_INVALID_ARGUMENT);
        CD_ASSERT_STATUS(cd_trainer_set_real(tr, key, 1.0), CD_ERR_INVALID_ARGUMENT);
        CD_ASSERT_STATUS(cd_trainer_get_int(tr, key, &iv), CD_ERR_INVALID_ARGUMENT);
        CD_ASSERT_STATUS(cd_trainer_get_real(tr, key, &rv), CD_ERR_INVALID_ARGUMENT);
    }
    CD_ASSERT_STATUS(cd_trainer_option_info(CD_TRAINER_OPT_LR, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(NULL, CD_TRAINER_OPT_BATCH, 8), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_real(NULL, CD_TRAINER_OPT_LR, 1e-3), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_int(NULL, CD_TRAINER_OPT_BATCH, &iv), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_real(NULL, CD_TRAINER_OPT_LR, &rv), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_int(tr, CD_TRAINER_OPT_BATCH, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_real(tr, CD_TRAINER_OPT_LR, NULL), CD_ERR_INVALID_ARGUMENT);

    /* Set values that differ from the defaults, then fail at each. */
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 64));
    CD_ASSERT_OK(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 1e-3));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_PER_BATCH, 1));
    CD_ASSERT_OK(cd_trainer_set_int(tr, CD_TRAINER_OPT_LOSS, CD_LOSS_L1));
    /* the wrong type */
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_BATCH, 32.0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("batch");
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_LR, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("lr");
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LOSS, 0.0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_int(tr, CD_TRAINER_OPT_LR, &iv), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_get_real(tr, CD_TRAINER_OPT_BATCH, &rv), CD_ERR_INVALID_ARGUMENT);
    /* non-finite reals */
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, NAN), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, INFINITY), CD_ERR_NOT_FINITE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_WEIGHT_DECAY, -INFINITY),
                     CD_ERR_NOT_FINITE);
    /* out of range, open ends included */
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_LR, 0.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, CD_TRAINER_OPT_BETA1, 1.0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 0), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, INT64_MAX), CD_ERR_RANGE);
    /* bools refuse 2 (and -1), choices a value past their enumeration */
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_PER_BATCH, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_T_PER_BATCH, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_DECOUPLED, 2), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_LOSS, cd_enum_count(CD_ENUM_LOSS)),
                     CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_LOSS, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, CD_TRAINER_OPT_PREDICTION,
                                        cd_enum_count(CD_ENUM_PREDICTION)),
                     CD_ERR_RANGE);
    /* nothing changed */
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_BATCH, &iv));
    ck_assert_int_eq(iv, 64);
    CD_ASSERT_OK(cd_trainer_get_real(tr, CD_TRAINER_OPT_LR, &rv));
    ck_assert(rv == 1e-3);
    CD_ASSERT_OK(cd_trainer_get_real(tr, CD_TRAINER_OPT_BETA1, &rv));
    ck_assert(rv == 0.9);
    CD_ASSERT_OK(cd_trainer_get_real(tr, CD_TRAINER_OPT_WEIGHT_DECAY, &rv));
    ck_assert(rv == 0.0);
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_T_PER_BATCH, &iv));
    ck_assert_int_eq(iv, 1);
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_DECOUPLED, &iv));
    ck_assert_int_eq(iv, 0);
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_LOSS, &iv));
    ck_assert_int_eq(iv, CD_LOSS_L1);
    CD_ASSERT_OK(cd_trainer_get_int(tr, CD_TRAINER_OPT_PREDICTION, &iv));
    ck_assert_int_eq(iv, CD_PREDICT_NOISE);

    /* The experimental key, through the stable calls. */
    CD_ASSERT_OK(cd_trainer_set_int(tr, LR_DECAY, 500));
    CD_ASSERT_OK(cd_trainer_get_int(tr, LR_DECAY, &iv));
    ck_assert_int_eq(iv, 500);
    CD_ASSERT_STATUS(cd_trainer_set_real(tr, LR_DECAY, 100.0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_trainer_set_int(tr, LR_DECAY, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_trainer_get_real(tr, LR_DECAY, &rv), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_trainer_get_int(tr, LR_DECAY, &iv));
    ck_assert_int_eq(iv, 500);
    CD_ASSERT_OK(cd_trainer_set_int(tr, LR_DECAY, 0));
    cd_test_trainer_free_all(tr);
}
END_TEST

/* A trainer borrows its decoder and degradation: after cd_trainer_free both
 * still work (and another trainer may take them on), and the caller frees
 * them. A loaded trainer frees its own (AddressSanitizer sees a leak or a
 * double free in either case). */
START_TEST(trainer_borrows_its_decoder_and_degradation)
{
    const int64_t hidden[2] = {4, 6};
    cd_dataset *ds = cd_test_load_slice(0.2);
    cd_tensor *batch = batch_tensor(8), *out = batch_tensor(8), *z = batch_tensor(8);
    cd_tensor *tau = NULL;
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){8}));
    CD_ASSERT_OK(cd_tensor_fill(tau, 0.5f));
    cd_decoder *dec = make_cnn(hidden, 2, 3, 7);
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    CD_ASSERT_OK(cd_schedule_create_linear(&s, 100, 1e-4, 0.02));
    CD_ASSERT_OK(cd_degradation_create_noise(&deg, s));
    cd_schedule_free(s);
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 21));
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "borrow.cdm");

    cd_trainer *tr = NULL;
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg));
    ck_assert_ptr_eq(cd_trainer_decoder(tr), dec);
    ck_assert_ptr_eq(cd_trainer_degradation(tr), deg);
    run_steps(tr, ds, rng, batch, 0, 2);
    CD_ASSERT_OK(cd_trainer_save(tr, path, NULL));
    cd_params *p = cd_decoder_params(dec);
    const size_t bytes = (size_t)cd_params_numel(p) * sizeof(float);
    float *trained = malloc(bytes);
    memcpy(trained, cd_params_data(p, -1), bytes);
    cd_trainer_free(tr);

    /* Both live on, with the trained weights and the recorded T. */
    ck_assert_mem_eq(cd_params_data(cd_decoder_params(dec), -1), trained, bytes);
    ck_assert_int_eq(cd_decoder_trained_T(dec), 100);
    CD_ASSERT_OK(cd_decoder_forward(dec, batch, tau, out));
    const int64_t t[8] = {1, 10, 20, 30, 40, 50, 60, 100};
    CD_ASSERT_OK(cd_degradation_apply(deg, batch, t, 8, rng, z, NULL));
    ck_assert_int_eq(cd_degradation_T(deg), 100);
    /* A second trainer takes them on and trains further. */
    CD_ASSERT_OK(cd_trainer_create(&tr, dec, deg));
    run_steps(tr, ds, rng, batch, 2, 3);
    ck_assert_int_eq(cd_trainer_steps(tr), 1);
    cd_trainer_free(tr);
    ck_assert_msg(memcmp(cd_params_data(cd_decoder_params(dec), -1), trained, bytes) != 0,
                  "the second trainer did not train the borrowed decoder");
    CD_ASSERT_OK(cd_decoder_infer(dec, batch, tau, out));

    /* A loaded trainer owns what it loaded: freeing it frees them, and the
     * caller's objects are not involved. */
    cd_trainer *loaded = NULL;
    CD_ASSERT_OK(cd_trainer_load(&loaded, path, NULL));
    ck_assert_ptr_ne(cd_trainer_decoder(loaded), dec);
    ck_assert_ptr_ne(cd_trainer_degradation(loaded), deg);
    ck_assert_mem_eq(cd_params_data(cd_decoder_params(cd_trainer_decoder(loaded)), -1), trained,
                     bytes);
    CD_ASSERT_OK(cd_decoder_forward(cd_trainer_decoder(loaded), batch, tau, out));
    run_steps(loaded, ds, rng, batch, 2, 3);
    cd_trainer_free(loaded);
    CD_ASSERT_OK(cd_decoder_forward(dec, batch, tau, out));

    cd_decoder_free(dec);
    cd_degradation_free(deg);
    free(trained);
    cd_rng_free(rng);
    cd_tensor_free(tau);
    cd_tensor_free(z);
    cd_tensor_free(out);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, short_run_loss_falls);
    tcase_add_test(tc, resume_is_bit_identical);
    tcase_add_test(tc, training_is_thread_count_independent);
    tcase_add_test(tc, copy_ema_installs_the_average);
    tcase_add_test(tc, swap_ema_is_exact_and_guarded);
    tcase_add_test(tc, eval_leaves_weights_alone);
    tcase_add_test(tc, bad_input_is_an_error);
    tcase_add_test(tc, claims_beyond_the_file_allocate_nothing);
    tcase_add_test(tc, bad_prior_in_a_file);
    tcase_add_test(tc, options_model);
    tcase_add_test(tc, trainer_borrows_its_decoder_and_degradation);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
