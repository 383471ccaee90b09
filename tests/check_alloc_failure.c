/*
 * check_alloc_failure.c - every allocation of a checkpoint load or save, a
 * dataset load (IDX files, and PNG folders with libpng's own allocations),
 * a training step and a sampler run, failed in turn (SQLite's way of testing
 * out-of-memory paths). For each scenario and k = 1, 2, ...: arm the
 * allocator to fail its k-th allocation (once, or that one and every later
 * one), run the scenario from scratch, and require either success (k is
 * past the scenario's last allocation, which ends the loop) or
 * CD_ERR_OUT_OF_MEMORY with a message saying so; then everything is freed
 * and the count of live blocks must be back where it started. Where the API
 * promises it, the objects that survive a failure must still work (a retry
 * succeeds) or be unchanged.
 */
#include "test_util.h"

#include "core.h"
#include "nn/classifier.h"
#include "nn/decoder.h"

#include <inttypes.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

/* ---- the first failing call of one run ------------------------------------ */

typedef struct {
    cd_status st; /* CD_OK if every call succeeded */
    char call[200];
    char msg[1024];
} outcome;

static bool failed(outcome *o, const char *call, cd_status st)
{
    if (st == CD_OK) return false;
    o->st = st;
    snprintf(o->call, sizeof o->call, "%s", call);
    snprintf(o->msg, sizeof o->msg, "%s", cd_last_error());
    return true;
}

/* Run a call; on failure record it and go to the scenario's cleanup. */
#define RUN(o, expr)                               \
    do {                                           \
        if (failed((o), #expr, (expr))) goto done; \
    } while (0)

/* What the scenarios share: a folder with checkpoints made beforehand, and
 * inputs made before the live-block baseline is taken. */
typedef struct {
    char dir[256];
    char cnn[320], unet[320], trainer_noise[320], trainer_fade[320], classifier[320];
    char out[320];                /* where the save scenarios write */
    cd_tensor *images2, *images3; /* 2 and 3 images of 1 x 8 x 8 */
    cd_tensor *digits;            /* 8 images of 1 x 28 x 28 from the slice */
    cd_dataset *ds;               /* the slice: 16 training, 8 validation images */
    cd_tensor *mean_image;        /* 1 x 8 x 8, for fade */
    char pngs[256];               /* a PNG folder: two classes, four files */
    cd_decoder *dec;              /* for the save scenarios */
    cd_trainer *tr;
    cd_classifier *cls;
    /* Set per scenario. */
    int64_t size; /* the images' H = W */
    cd_decoder_kind type;
    cd_degradation_kind deg_kind;
    cd_sampler_kind sampler;
} fixture;

typedef void (*scenario_fn)(fixture *f, outcome *o);

/* ---- building blocks ------------------------------------------------------ */

static cd_status make_config(cd_decoder_config **cfg, cd_decoder_kind type, int64_t size)
{
    CD__TRY(cd_decoder_config_create(cfg, type));
    cd_decoder_config *c = *cfg;
    if (type == CD_DECODER_CNN) {
        CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_HEIGHT, size));
        CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_WIDTH, size));
        CD__TRY(cd_decoder_config_set_list(c, CD_DECODER_OPT_HIDDEN, (int64_t[]){4, 4}, 2));
        CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_KERNEL, 3));
        CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_TIME_FREQS, 2));
        CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_TIME_HIDDEN, 8));
        return cd_decoder_config_set_int(c, CD_DECODER_OPT_TIME_LAYERS, 1);
    }
    CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_DIM, 4));
    CD__TRY(cd_decoder_config_set_list(c, CD_DECODER_OPT_DIM_MULTS, (int64_t[]){1, 2}, 2));
    CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_HEADS, 1));
    CD__TRY(cd_decoder_config_set_int(c, CD_DECODER_OPT_HEAD_DIM, 4));
    return cd_decoder_config_set_int(c, CD_DECODER_OPT_CONVNEXT_MULT, 1);
}

/* A tiny decoder of type `type` for 1 x size x size images. */
static cd_status make_decoder(cd_decoder **out, cd_decoder_kind type, int64_t size)
{
    cd_decoder_config *cfg = NULL;
    cd_rng *rng = NULL;
    *out = NULL;
    cd_status st = make_config(&cfg, type, size);
    if (st == CD_OK) st = cd_rng_create(&rng, 7);
    if (st == CD_OK) st = cd_decoder_create(out, cfg, rng);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
    return st;
}

/* A short schedule and a degradation of kind `kind` on it. */
static cd_status make_degradation(cd_degradation **out, cd_degradation_kind kind,
                                  const cd_tensor *mean_image)
{
    cd_schedule *s = NULL;
    *out = NULL;
    cd_status st = kind == CD_DEGRADATION_NOISE ? cd_schedule_create_linear(&s, 6, 1e-3, 0.2)
                                                : cd_schedule_create_constant(&s, 4, 0.8);
    if (st != CD_OK) return st;
    switch (kind) {
    case CD_DEGRADATION_NOISE: st = cd_degradation_create_noise(out, s); break;
    case CD_DEGRADATION_BLUR: st = cd_degradation_create_blur(out, s, 3, CD_PADDING_REFLECT); break;
    case CD_DEGRADATION_FADE: st = cd_degradation_create_fade(out, s, mean_image); break;
    default: st = cd_degradation_create_pixelate(out, s); break;
    }
    cd_schedule_free(s);
    return st;
}

/* A trainer of a new decoder and degradation, which it borrows:
 * cd_test_trainer_free_all() frees all three (on failure they are freed here). */
static cd_status make_trainer(cd_trainer **tr, cd_decoder_kind type, int64_t size,
                              cd_degradation_kind kind, const cd_tensor *mean_image)
{
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    *tr = NULL;
    cd_status st = make_decoder(&dec, type, size);
    if (st == CD_OK) st = make_degradation(&deg, kind, mean_image);
    if (st == CD_OK) st = cd_trainer_create(tr, dec, deg);
    if (st != CD_OK) {
        cd_decoder_free(dec);
        cd_degradation_free(deg);
        return st;
    }
    return cd_trainer_set_real(*tr, CD_TRAINER_OPT_EMA_DECAY, 0.9);
}

static void get_state(const cd_rng *rng, uint64_t state[CD_RNG_STATE_WORDS])
{
    CD_ASSERT_OK(cd_rng_get_state(rng, state));
}

/* ---- the loop ------------------------------------------------------------- */

static void check_failure(const char *name, int64_t k, const outcome *o)
{
    ck_assert_msg(o->st == CD_ERR_OUT_OF_MEMORY,
                  "%s, allocation %" PRId64 " failed: %s "
                  "returned %s, not out of memory (%s)",
                  name, k, o->call, cd_status_string(o->st), o->msg);
    ck_assert_msg(strstr(o->msg, "out of memory") != NULL,
                  "%s, allocation %" PRId64
                  " failed: %s says '%s', which does not say out of memory",
                  name, k, o->call, o->msg);
}

/* One pass over k = 1, 2, ... until the k-th allocation no longer exists;
 * n is how many the undisturbed run made. */
static void fail_each(const char *name, scenario_fn run, fixture *f, int64_t n, bool persist)
{
    const int64_t live = cd__alloc_live();
    for (int64_t k = 1;; k++) {
        outcome o = {CD_OK, "", ""};
        cd__alloc_fail_at(k, persist);
        run(f, &o);
        const bool fired = cd__alloc_failure_fired();
        cd__alloc_fail_at(0, false);
        ck_assert_msg(cd__alloc_live() == live,
                      "%s, allocation %" PRId64 " failed%s: %" PRId64 " blocks leaked (%s: %s)",
                      name, k, persist ? " onwards" : "", cd__alloc_live() - live, o.call, o.msg);
        if (!fired) {
            ck_assert_msg(o.st == CD_OK, "%s: %s failed with no allocation failing: %s", name,
                          o.call, o.msg);
            ck_assert_msg(k == n + 1, "%s made %" PRId64 " allocations, %" PRId64 " before", name,
                          k - 1, n);
            return;
        }
        ck_assert_msg(k <= n, "%s: allocation %" PRId64 " of %" PRId64 " failed", name, k, n);
        check_failure(name, k, &o);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void exhaust(const char *name, scenario_fn run, fixture *f)
{
    const double t0 = now();
    const int64_t live = cd__alloc_live(), made = cd__alloc_count();
    outcome o = {CD_OK, "", ""};
    run(f, &o);
    ck_assert_msg(o.st == CD_OK, "%s: %s failed: %s", name, o.call, o.msg);
    const int64_t n = cd__alloc_count() - made;
    ck_assert_msg(cd__alloc_live() == live, "%s leaks %" PRId64 " blocks", name,
                  cd__alloc_live() - live);
    /* A scenario that allocates nothing would test nothing. */
    ck_assert_msg(n >= 5, "%s made only %" PRId64 " allocations", name, n);
    fail_each(name, run, f, n, false);
    fail_each(name, run, f, n, true);
    printf("%s: each of %" PRId64 " allocations failed in turn, once and onwards (%.1f s)\n", name,
           n, now() - t0);
}

/* ---- loading checkpoints -------------------------------------------------- */

static void load_decoder(const char *path, outcome *o)
{
    cd_decoder *d = (cd_decoder *)&d; /* must become NULL on failure */
    RUN(o, cd_decoder_load(&d, path));
    ck_assert_int_gt(cd_decoder_param_count(d), 0);
done:
    if (o->st != CD_OK)
        ck_assert_ptr_null(d);
    else
        cd_decoder_free(d);
}

static void load_cnn(fixture *f, outcome *o) { load_decoder(f->cnn, o); }
static void load_unet(fixture *f, outcome *o) { load_decoder(f->unet, o); }

/* A failed load also leaves the caller's generator as it was. */
static void load_trainer(const char *path, outcome *o)
{
    cd_trainer *tr = (cd_trainer *)&tr;
    cd_rng *rng = NULL;
    uint64_t before[CD_RNG_STATE_WORDS], after[CD_RNG_STATE_WORDS];
    RUN(o, cd_rng_create(&rng, 99));
    get_state(rng, before);
    RUN(o, cd_trainer_load(&tr, path, rng));
    ck_assert_int_eq(cd_trainer_steps(tr), 1);
done:
    if (o->st != CD_OK && rng) {
        ck_assert_ptr_null(tr);
        get_state(rng, after);
        ck_assert_msg(memcmp(before, after, sizeof before) == 0,
                      "a failed cd_trainer_load changed the generator");
    }
    if (o->st == CD_OK) cd_trainer_free(tr);
    cd_rng_free(rng);
}

static void load_trainer_noise(fixture *f, outcome *o) { load_trainer(f->trainer_noise, o); }
static void load_trainer_fade(fixture *f, outcome *o) { load_trainer(f->trainer_fade, o); }

/* Both outputs NULL on failure. */
static void load_model(const char *path, outcome *o)
{
    cd_decoder *d = (cd_decoder *)&d;
    cd_degradation *g = (cd_degradation *)&g;
    RUN(o, cd_model_load(path, &d, &g));
    ck_assert_int_gt(cd_decoder_param_count(d), 0);
done:
    if (o->st != CD_OK) {
        ck_assert_ptr_null(d);
        ck_assert_ptr_null(g);
    } else {
        cd_decoder_free(d);
        cd_degradation_free(g);
    }
}

static void load_model_noise(fixture *f, outcome *o) { load_model(f->trainer_noise, o); }
static void load_model_fade(fixture *f, outcome *o) { load_model(f->trainer_fade, o); }
static void load_model_out(fixture *f, outcome *o) { load_model(f->out, o); }

static void load_classifier(fixture *f, outcome *o)
{
    cd_classifier *c = (cd_classifier *)&c;
    RUN(o, cd_classifier_load(&c, f->classifier));
done:
    if (o->st != CD_OK)
        ck_assert_ptr_null(c);
    else
        cd_classifier_free(c);
}

static void load_classifier_default(fixture *f, outcome *o)
{
    cd_classifier *c = (cd_classifier *)&c;
    (void)f; /* COLDDIFF_CLASSIFIER points at f->classifier */
    RUN(o, cd_classifier_load_default(&c));
done:
    if (o->st != CD_OK)
        ck_assert_ptr_null(c);
    else
        cd_classifier_free(c);
}

/* ---- saving checkpoints: a failure leaves no file, not even a temporary */

static void check_saved(fixture *f, const outcome *o)
{
    if (o->st == CD_OK) {
        ck_assert_int_eq(remove(f->out), 0);
    } else {
        ck_assert_int_eq(cd_test_file_size(f->out), -1);
    }
    ck_assert_int_eq(cd_test_count_entries(f->dir), 5); /* the fixture's own files */
}

static void save_decoder(fixture *f, outcome *o)
{
    RUN(o, cd_decoder_save(f->dec, f->out));
done:
    check_saved(f, o);
}

static void save_trainer(fixture *f, outcome *o)
{
    cd_rng *rng = NULL;
    RUN(o, cd_rng_create(&rng, 3));
    RUN(o, cd_trainer_save(f->tr, f->out, rng));
done:
    cd_rng_free(rng);
    check_saved(f, o);
}

static void save_model(fixture *f, outcome *o)
{
    RUN(o, cd_model_save(f->out, cd_trainer_decoder(f->tr), cd_trainer_degradation(f->tr)));
done:
    check_saved(f, o);
}

static void export_trainer(fixture *f, outcome *o)
{
    RUN(o, cd_trainer_export(f->tr, f->out));
done:
    check_saved(f, o);
}

static void save_classifier(fixture *f, outcome *o)
{
    RUN(o, cd_classifier_save(f->cls, f->out));
done:
    check_saved(f, o);
}

/* ---- training ------------------------------------------------------------- */

/* Creation, then a step at batch 2 and one at batch 3 (each sizes new
 * buffers; the first also starts the EMA). After a failure the trainer
 * must still train at both sizes. */
static void train(fixture *f, outcome *o)
{
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    double loss = 0.0;
    RUN(o, cd_rng_create(&rng, 5));
    RUN(o, make_trainer(&tr, f->type, 8, f->deg_kind, f->mean_image));
    RUN(o, cd_trainer_step(tr, f->images2, rng, &loss));
    RUN(o, cd_trainer_step(tr, f->images3, rng, &loss));
    ck_assert_int_eq(cd_trainer_steps(tr), 2);
done:
    if (o->st != CD_OK && tr && rng) {
        cd__alloc_fail_at(0, false);
        const int64_t steps = cd_trainer_steps(tr);
        CD_ASSERT_OK(cd_trainer_step(tr, f->images2, rng, &loss));
        CD_ASSERT_OK(cd_trainer_step(tr, f->images3, rng, &loss));
        CD_ASSERT_OK(cd_trainer_step(tr, f->images2, rng, &loss));
        ck_assert_int_eq(cd_trainer_steps(tr), steps + 3);
    }
    cd_test_trainer_free_all(tr);
    cd_rng_free(rng);
}

/* ---- sampling ------------------------------------------------------------- */

static cd_status sample_once(cd_sampler *s, cd_rng *rng, cd_tensor *out, const fixture *f,
                             cd_tensor *snap_z, cd_tensor *snap_xhat, cd_tensor *snap_fwd)
{
    CD__TRY(cd_sampler_sample(s, rng, out));
    const int64_t times[2] = {3, 1};
    return cd_sampler_restore(s, f->images2, 3, rng, out, times, 2, snap_z, snap_xhat, snap_fwd);
}

/* From scratch: the decoder, the degradation, the sampler, the outputs;
 * then an unconditional sample and a restoration with snapshots. After a
 * failure the sampler must still sample. */
static void sample(fixture *f, outcome *o)
{
    cd_rng *rng = NULL;
    cd_decoder *dec = NULL;
    cd_degradation *deg = NULL;
    cd_sampler *s = NULL;
    cd_tensor *out = NULL, *snap[3] = {NULL, NULL, NULL};
    RUN(o, cd_rng_create(&rng, 11));
    RUN(o, make_decoder(&dec, CD_DECODER_CNN, 8));
    RUN(o, make_degradation(&deg, f->deg_kind, f->mean_image));
    RUN(o, cd_sampler_create(&s, f->sampler, deg));
    RUN(o, cd_sampler_set_decoder(s, dec));
    if (f->sampler == CD_SAMPLER_DDIM) {
        RUN(o, cd_sampler_set_int(s, CD_SAMPLER_OPT_STEPS, 3));
        RUN(o, cd_sampler_set_real(s, CD_SAMPLER_OPT_ETA, 1));
    }
    RUN(o, cd_tensor_create(&out, 4, (int64_t[]){2, 1, 8, 8}));
    for (int i = 0; i < 3; i++) RUN(o, cd_tensor_create(&snap[i], 5, (int64_t[]){2, 2, 1, 8, 8}));
    RUN(o, sample_once(s, rng, out, f, snap[0], snap[1], snap[2]));
done:
    if (o->st != CD_OK && s && out && snap[2]) {
        cd__alloc_fail_at(0, false);
        CD_ASSERT_OK(sample_once(s, rng, out, f, snap[0], snap[1], snap[2]));
    }
    for (int i = 0; i < 3; i++) cd_tensor_free(snap[i]);
    cd_tensor_free(out);
    cd_sampler_free(s);
    cd_degradation_free(deg);
    cd_decoder_free(dec);
    cd_rng_free(rng);
}

/* ---- data, fitting, the classifier and the metrics ------------------------ */

static cd_status load_slice(cd_dataset **ds)
{
    char im[512], lb[512];
    return cd_dataset_load_idx(ds,
                               cd_test_path(im, sizeof im, cd_test_data_dir(),
                                            "t10k-images-idx3-ubyte.gz"),
                               cd_test_path(lb, sizeof lb, cd_test_data_dir(),
                                            "t10k-labels-idx1-ubyte.gz"),
                               NULL, NULL);
}

static void load_dataset(fixture *f, outcome *o)
{
    cd_dataset *ds = (cd_dataset *)&ds; /* must become NULL on failure */
    (void)f;
    if (failed(o, "cd_dataset_load_idx", load_slice(&ds))) {
        ck_assert_ptr_null(ds);
        return;
    }
    RUN(o, cd_dataset_split(ds, 0.25, 42));
    RUN(o, cd_dataset_truncate(ds, CD_SPLIT_TRAIN, 10));
done:
    cd_dataset_free(ds);
}

/* A fit of one epoch (the blur's prior fitted first, a validation pass,
 * the last checkpoint written), then both loss measures. After a failure
 * the fit goes on to a second epoch. */
static void fit(fixture *f, outcome *o)
{
    cd_trainer *tr = NULL;
    cd_rng *rng = NULL;
    double loss = 0.0, se = 0.0;
    char last[512];
    cd_test_path(last, sizeof last, f->dir, "last.cdm");
    RUN(o, cd_rng_create(&rng, 13));
    RUN(o, make_trainer(&tr, CD_DECODER_CNN, 28, CD_DEGRADATION_BLUR, NULL));
    RUN(o, cd_trainer_set_int(tr, CD_TRAINER_OPT_BATCH, 8));
    RUN(o, cd_trainer_set_int(tr, CD_TRAINER_OPT_VAL_BATCH, 3));
    RUN(o, cd_trainer_fit(tr, f->ds, 1, NULL, last, rng, NULL, NULL));
    RUN(o, cd_trainer_eval_loss(tr, f->ds, CD_SPLIT_VAL, rng, &loss));
    RUN(o, cd_trainer_test_loss(tr, f->ds, CD_SPLIT_VAL, rng, &loss, &se));
done:
    if (o->st != CD_OK && tr && rng) {
        cd__alloc_fail_at(0, false);
        CD_ASSERT_OK(cd_trainer_fit(tr, f->ds, 2, NULL, NULL, rng, NULL, NULL));
    }
    remove(last);
    cd_test_trainer_free_all(tr);
    cd_rng_free(rng);
}

/* A small classifier trained (with augmentation) and measured. After a
 * failure it must still train and predict. */
static void classify(fixture *f, outcome *o)
{
    const cd__classifier_cfg tiny = {28, 28, {2, 2, 2}, 4, 10};
    const int64_t n = cd_tensor_dim(f->digits, 0);
    cd_classifier *c = NULL;
    cd_rng *rng = NULL;
    cd_tensor *probs = NULL, *features = NULL;
    double acc = 0.0;
    RUN(o, cd_rng_create(&rng, 17));
    RUN(o, cd__classifier_create_cfg(&c, &tiny, rng));
    RUN(o, cd_classifier_set_int(c, CD_CLASSIFIER_OPT_BATCH, 8));
    RUN(o, cd_classifier_set_real(c, CD_CLASSIFIER_OPT_LR, 1e-3));
    RUN(o, cd_classifier_set_int(c, CD_CLASSIFIER_OPT_MAX_SHIFT, 2));
    RUN(o, cd_classifier_train(c, f->ds, 1, rng, NULL, NULL));
    RUN(o, cd_classifier_accuracy(c, f->ds, CD_SPLIT_VAL, &acc, NULL));
    RUN(o, cd_tensor_create(&probs, 2, (int64_t[]){n, 10}));
    RUN(o, cd_tensor_create(&features, 2, (int64_t[]){n, 4}));
    RUN(o, cd_classifier_predict(c, f->digits, probs, features));
done:
    if (o->st != CD_OK && c && rng && probs && features) {
        cd__alloc_fail_at(0, false);
        CD_ASSERT_OK(cd_classifier_train(c, f->ds, 1, rng, NULL, NULL));
        CD_ASSERT_OK(cd_classifier_predict(c, f->digits, probs, features));
    }
    cd_tensor_free(features);
    cd_tensor_free(probs);
    cd_classifier_free(c);
    cd_rng_free(rng);
}

/* The image metrics, the Frechet distance and a PNG grid. */
static void measure(fixture *f, outcome *o)
{
    const int64_t n = cd_tensor_dim(f->digits, 0), half = n / 2;
    cd_tensor *x_hat = NULL, *a = NULL, *b = NULL;
    cd_rng *rng = NULL;
    double rmse = 0.0, ssim = 0.0, psnr = 0.0, fd = 0.0;
    char png[512];
    cd_test_path(png, sizeof png, f->dir, "grid.png");
    RUN(o, cd_tensor_clone(&x_hat, f->digits));
    float *p = cd_tensor_data(x_hat);
    for (int64_t i = 0; i < cd_tensor_numel(x_hat); i++)
        p[i] = 0.9f * p[i] + 0.01f * (float)(i % 7);
    RUN(o, cd_metrics_images(f->digits, x_hat, CD_REDUCTION_REPORT, &rmse, &ssim, &psnr, NULL));
    RUN(o, cd_tensor_create(&a, 2, (int64_t[]){half, 3}));
    RUN(o, cd_tensor_create(&b, 2, (int64_t[]){n - half, 3}));
    RUN(o, cd_rng_create(&rng, 19));
    RUN(o, cd_rng_normal_tensor(rng, a));
    RUN(o, cd_rng_normal_tensor(rng, b));
    RUN(o, cd_frechet_distance(a, b, &fd));
    RUN(o, cd_image_grid_write_png(png, f->digits, 4, 1, 128, CD_PIXELS_PERCENTILE, 0, 1));
done:
    if (o->st != CD_OK) ck_assert_int_eq(cd_test_file_size(png), -1);
    remove(png);
    cd_rng_free(rng);
    cd_tensor_free(b);
    cd_tensor_free(a);
    cd_tensor_free(x_hat);
}

/* ---- a folder of PNG images ---------------------------------------------- */

/* One file of each kind libpng decodes differently, at 6 x 5 pixels:
 * 8-bit RGB, a 4-bit palette with transparency, 8-bit grey, and 16-bit
 * grey with alpha, interlaced. */
typedef struct png_kind {
    const char *path; /* under the folder */
    int color_type, depth, interlace;
} png_kind;

static const png_kind folder_pngs[] = {
    {"cats/a.png", PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE},
    {"cats/b.png", PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE},
    {"dogs/c.png", PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE},
    {"dogs/d.png", PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_ADAM7},
};
#define FOLDER_PNGS ((int)(sizeof folder_pngs / sizeof folder_pngs[0]))
#define FOLDER_H 6
#define FOLDER_W 5

static void write_png(const char *path, const png_kind *k)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng could not write %s", path);
    png_init_io(png, fp);
    png_set_IHDR(png, info, FOLDER_W, FOLDER_H, k->depth, k->color_type, k->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color palette[16];
    png_byte alpha[16];
    for (int i = 0; i < 16; i++) {
        palette[i] = (png_color){(png_byte)(16 * i), (png_byte)(255 - 16 * i), (png_byte)(7 * i)};
        alpha[i] = (png_byte)(255 - 8 * i);
    }
    if (k->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_PLTE(png, info, palette, 16);
        png_set_tRNS(png, info, alpha, 16, NULL);
    }
    png_write_info(png, info);
    /* Any bytes are valid samples; rows of up to 5 x 2 x 2 bytes. */
    png_byte rows[FOLDER_H][32];
    png_bytep rp[FOLDER_H];
    for (int y = 0; y < FOLDER_H; y++) {
        for (int x = 0; x < 32; x++) rows[y][x] = (png_byte)(37 * y + 11 * x);
        rp[y] = rows[y];
    }
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    ck_assert_int_eq(fclose(fp), 0);
}

static void make_png_folder(fixture *f)
{
    char path[512];
    cd_test_tmpdir(f->pngs, sizeof f->pngs);
    ck_assert_int_eq(mkdir(cd_test_path(path, sizeof path, f->pngs, "cats"), 0700), 0);
    ck_assert_int_eq(mkdir(cd_test_path(path, sizeof path, f->pngs, "dogs"), 0700), 0);
    for (int i = 0; i < FOLDER_PNGS; i++)
        write_png(cd_test_path(path, sizeof path, f->pngs, folder_pngs[i].path), &folder_pngs[i]);
}

static void remove_png_folder(fixture *f)
{
    char path[512];
    for (int i = 0; i < FOLDER_PNGS; i++)
        remove(cd_test_path(path, sizeof path, f->pngs, folder_pngs[i].path));
    rmdir(cd_test_path(path, sizeof path, f->pngs, "cats"));
    rmdir(cd_test_path(path, sizeof path, f->pngs, "dogs"));
    rmdir(f->pngs);
}

/* The folder loaded as `channels` (0: the first image's, RGB here), with
 * a crop to 4 x 4 or none; then what a caller does next, a split and a
 * batch. */
static void load_folder(fixture *f, int64_t channels, int64_t crop, outcome *o)
{
    cd_dataset *ds = (cd_dataset *)&ds; /* must become NULL on failure */
    cd_tensor *batch = NULL;
    if (failed(o, "cd_dataset_load_folder", cd_dataset_load_folder(&ds, f->pngs, channels, crop))) {
        ck_assert_ptr_null(ds);
        return;
    }
    const int64_t c = channels ? channels : 3, side = crop ? crop : FOLDER_H;
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), FOLDER_PNGS);
    ck_assert_int_eq(cd_dataset_channels(ds), c);
    ck_assert_int_eq(cd_dataset_height(ds), side);
    ck_assert_int_eq(cd_dataset_class_count(ds), 2);
    ck_assert_str_eq(cd_dataset_class_name(ds, 1), "dogs");
    RUN(o, cd_dataset_split(ds, 0.25, 42));
    RUN(o, cd_tensor_create(&batch, 4, (int64_t[]){3, c, side, crop ? crop : FOLDER_W}));
    RUN(o, cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, batch, NULL, NULL));
done:
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}

static void load_folder_as_is(fixture *f, outcome *o) { load_folder(f, 0, 0, o); }
static void load_folder_grey_cropped(fixture *f, outcome *o) { load_folder(f, 1, 4, o); }

/* ---- the fixture ---------------------------------------------------------- */

static void make_fixture(fixture *f)
{
    memset(f, 0, sizeof *f);
    cd_test_tmpdir(f->dir, sizeof f->dir);
    cd_test_path(f->cnn, sizeof f->cnn, f->dir, "cnn.cdm");
    cd_test_path(f->unet, sizeof f->unet, f->dir, "unet.cdm");
    cd_test_path(f->trainer_noise, sizeof f->trainer_noise, f->dir, "trainer-noise.cdm");
    cd_test_path(f->trainer_fade, sizeof f->trainer_fade, f->dir, "trainer-fade.cdm");
    cd_test_path(f->classifier, sizeof f->classifier, f->dir, "classifier.cdm");
    cd_test_path(f->out, sizeof f->out, f->dir, "out.cdm");
    f->images2 = cd_test_tensor4(2, 1, 8, 8);
    f->images3 = cd_test_tensor4(3, 1, 8, 8);
    cd_test_fill_uniform(f->images2, 1, -0.5f, 0.5f);
    cd_test_fill_uniform(f->images3, 2, -0.5f, 0.5f);
    CD_ASSERT_OK(cd_tensor_create(&f->mean_image, 3, (int64_t[]){1, 8, 8}));
    cd_test_fill_uniform(f->mean_image, 3, -0.5f, 0.0f);

    cd_decoder *unet = NULL;
    CD_ASSERT_OK(make_decoder(&f->dec, CD_DECODER_CNN, 8));
    CD_ASSERT_OK(make_decoder(&unet, CD_DECODER_UNET, 8));
    CD_ASSERT_OK(cd_decoder_save(f->dec, f->cnn));
    CD_ASSERT_OK(cd_decoder_save(unet, f->unet));
    cd_decoder_free(unet);

    /* Trainers one step in, so the files hold Adam's state and the EMA. */
    cd_rng *rng = NULL;
    cd_trainer *fade = NULL;
    double loss = 0.0;
    CD_ASSERT_OK(cd_rng_create(&rng, 1));
    CD_ASSERT_OK(make_trainer(&f->tr, CD_DECODER_CNN, 8, CD_DEGRADATION_NOISE, NULL));
    CD_ASSERT_OK(cd_trainer_step(f->tr, f->images2, rng, &loss));
    CD_ASSERT_OK(cd_trainer_save(f->tr, f->trainer_noise, rng));
    CD_ASSERT_OK(make_trainer(&fade, CD_DECODER_UNET, 8, CD_DEGRADATION_FADE, f->mean_image));
    CD_ASSERT_OK(cd_trainer_step(fade, f->images2, rng, &loss));
    CD_ASSERT_OK(cd_trainer_save(fade, f->trainer_fade, rng));
    cd_test_trainer_free_all(fade);

    const cd__classifier_cfg tiny = {8, 8, {2, 2, 2}, 4, 3};
    CD_ASSERT_OK(cd__classifier_create_cfg(&f->cls, &tiny, rng));
    CD_ASSERT_OK(cd_classifier_save(f->cls, f->classifier));
    cd_rng_free(rng);
    ck_assert_int_eq(setenv("COLDDIFF_CLASSIFIER", f->classifier, 1), 0);

    CD_ASSERT_OK(load_slice(&f->ds));
    CD_ASSERT_OK(cd_dataset_split(f->ds, 0.25, 42));
    CD_ASSERT_OK(cd_dataset_truncate(f->ds, CD_SPLIT_TRAIN, 16));
    CD_ASSERT_OK(cd_dataset_truncate(f->ds, CD_SPLIT_VAL, 8));
    f->digits = cd_test_tensor4(8, 1, 28, 28);
    CD_ASSERT_OK(cd_dataset_fill_batch(f->ds, CD_SPLIT_VAL, 0, f->digits, NULL, NULL));
    make_png_folder(f);
}

static void free_fixture(fixture *f)
{
    cd_tensor_free(f->digits);
    cd_dataset_free(f->ds);
    cd_classifier_free(f->cls);
    cd_test_trainer_free_all(f->tr);
    cd_decoder_free(f->dec);
    cd_tensor_free(f->mean_image);
    cd_tensor_free(f->images3);
    cd_tensor_free(f->images2);
    char path[512];
    const char *names[] = {"cnn.cdm", "unet.cdm", "trainer-noise.cdm", "trainer-fade.cdm",
                           "classifier.cdm"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        remove(cd_test_path(path, sizeof path, f->dir, names[i]));
    rmdir(f->dir);
    remove_png_folder(f);
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(every_loader_survives_each_failed_allocation)
{
    fixture f;
    make_fixture(&f);
    exhaust("cd_decoder_load (CNN)", load_cnn, &f);
    exhaust("cd_decoder_load (UNet)", load_unet, &f);
    exhaust("cd_trainer_load (CNN, noise)", load_trainer_noise, &f);
    exhaust("cd_trainer_load (UNet, fade)", load_trainer_fade, &f);
    exhaust("cd_model_load (CNN, noise, EMA)", load_model_noise, &f);
    exhaust("cd_model_load (UNet, fade, EMA)", load_model_fade, &f);
    CD_ASSERT_OK(cd_trainer_export(f.tr, f.out));
    exhaust("cd_model_load (an inference model)", load_model_out, &f);
    ck_assert_int_eq(remove(f.out), 0);
    exhaust("cd_classifier_load", load_classifier, &f);
    exhaust("cd_classifier_load_default", load_classifier_default, &f);
    free_fixture(&f);
}
END_TEST

START_TEST(every_save_survives_each_failed_allocation)
{
    fixture f;
    make_fixture(&f);
    exhaust("cd_decoder_save", save_decoder, &f);
    exhaust("cd_trainer_save", save_trainer, &f);
    exhaust("cd_model_save", save_model, &f);
    exhaust("cd_trainer_export", export_trainer, &f);
    exhaust("cd_classifier_save", save_classifier, &f);
    free_fixture(&f);
}
END_TEST

START_TEST(training_survives_each_failed_allocation)
{
    fixture f;
    make_fixture(&f);
    f.type = CD_DECODER_CNN;
    f.deg_kind = CD_DEGRADATION_NOISE;
    exhaust("cd_trainer_step (CNN, noise)", train, &f);
    f.type = CD_DECODER_UNET;
    f.deg_kind = CD_DEGRADATION_BLUR;
    exhaust("cd_trainer_step (UNet, blur)", train, &f);
    free_fixture(&f);
}
END_TEST

START_TEST(every_sampler_survives_each_failed_allocation)
{
    static const struct {
        const char *name;
        cd_sampler_kind kind;
        cd_degradation_kind deg;
    } runs[] = {
        {"DDPM (noise)", CD_SAMPLER_DDPM, CD_DEGRADATION_NOISE},
        {"DDIM (noise)", CD_SAMPLER_DDIM, CD_DEGRADATION_NOISE},
        {"cold 1 (blur)", CD_SAMPLER_COLD1, CD_DEGRADATION_BLUR},
        {"cold 2 (blur)", CD_SAMPLER_COLD2, CD_DEGRADATION_BLUR},
        {"cold 2 (fade)", CD_SAMPLER_COLD2, CD_DEGRADATION_FADE},
        {"direct (blur)", CD_SAMPLER_DIRECT, CD_DEGRADATION_BLUR},
    };
    fixture f;
    make_fixture(&f);
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        f.sampler = runs[i].kind;
        f.deg_kind = runs[i].deg;
        exhaust(runs[i].name, sample, &f);
    }
    free_fixture(&f);
}
END_TEST

START_TEST(data_fitting_and_metrics_survive_each_failed_allocation)
{
    fixture f;
    make_fixture(&f);
    exhaust("cd_dataset_load_idx", load_dataset, &f);
    exhaust("cd_dataset_load_folder (RGB)", load_folder_as_is, &f);
    exhaust("cd_dataset_load_folder (grey, cropped)", load_folder_grey_cropped, &f);
    exhaust("cd_trainer_fit", fit, &f);
    exhaust("cd_classifier_train", classify, &f);
    exhaust("metrics and grid", measure, &f);
    free_fixture(&f);
}
END_TEST

/* A forward whose larger workspace cannot be allocated leaves the decoder
 * as it was: the backward of the forward before it still gives the same
 * gradients, and forwards at the old size still work. */
START_TEST(a_failed_forward_keeps_the_previous_plan)
{
    cd_decoder *d = NULL;
    CD_ASSERT_OK(make_decoder(&d, CD_DECODER_CNN, 8));
    cd_tensor *out2 = cd_test_tensor4(2, 1, 8, 8), *out3 = cd_test_tensor4(3, 1, 8, 8);
    cd_tensor *dout = cd_test_tensor4(2, 1, 8, 8), *dz_a = cd_test_tensor4(2, 1, 8, 8);
    cd_tensor *dz_b = cd_test_tensor4(2, 1, 8, 8), *tau2 = NULL, *tau3 = NULL;
    CD_ASSERT_OK(cd_tensor_create(&tau2, 1, (int64_t[]){2}));
    CD_ASSERT_OK(cd_tensor_create(&tau3, 1, (int64_t[]){3}));
    CD_ASSERT_OK(cd_tensor_fill(tau2, 0.5f));
    CD_ASSERT_OK(cd_tensor_fill(tau3, 0.5f));
    cd_test_fill_uniform(dout, 4, -1.0f, 1.0f);
    cd_params *p = cd_decoder_params(d);
    const int64_t n = cd_params_numel(p);
    float *grads = malloc((size_t)n * sizeof *grads);
    ck_assert_ptr_nonnull(grads);

    cd_tensor *z2 = cd_test_tensor4(2, 1, 8, 8), *z3 = cd_test_tensor4(3, 1, 8, 8);
    cd_test_fill_uniform(z2, 1, -0.5f, 0.5f);
    cd_test_fill_uniform(z3, 2, -0.5f, 0.5f);
    CD_ASSERT_OK(cd_decoder_forward(d, z2, tau2, out2));
    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_OK(cd_decoder_backward(d, dout, dz_a));
    memcpy(grads, cd_params_grad(p, -1), (size_t)n * sizeof *grads);

    CD_ASSERT_OK(cd_decoder_forward(d, z2, tau2, out2));
    cd__alloc_fail_at(1, false);
    CD_ASSERT_STATUS(cd_decoder_forward(d, z3, tau3, out3), CD_ERR_OUT_OF_MEMORY);
    ck_assert(cd__alloc_failure_fired());
    CD_ASSERT_ERROR_MENTIONS("decoder workspace");
    cd__alloc_fail_at(0, false);
    CD_ASSERT_OK(cd_params_zero_grad(p));
    CD_ASSERT_OK(cd_decoder_backward(d, dout, dz_b));
    ck_assert_mem_eq(cd_tensor_data(dz_b), cd_tensor_data(dz_a), 2 * 64 * sizeof(float));
    ck_assert_mem_eq(cd_params_grad(p, -1), grads, (size_t)n * sizeof *grads);
    CD_ASSERT_OK(cd_decoder_forward(d, z2, tau2, out2));
    CD_ASSERT_OK(cd_decoder_forward(d, z3, tau3, out3));

    free(grads);
    cd_tensor_free(z3), cd_tensor_free(z2);
    cd_tensor_free(tau3), cd_tensor_free(tau2), cd_tensor_free(dz_b), cd_tensor_free(dz_a);
    cd_tensor_free(dout), cd_tensor_free(out3), cd_tensor_free(out2);
    cd_decoder_free(d);
}
END_TEST

/* The prepared weights a forward-only pass keeps are optional: with the
 * k-th of their allocations failing (once, or from then on), the pass
 * still succeeds with the same bits, leaves no error and no leak. The
 * report CNN at 28 x 28 prepares its 7x7 layers on AVX-512 CPUs. */
START_TEST(a_forward_only_pass_runs_without_prepared_weights)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_decoder_config_create(&cfg, CD_DECODER_CNN));
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_OK(cd_decoder_create(&d, cfg, rng));
    cd_tensor *z = cd_test_tensor4(2, 1, 28, 28), *tau = NULL;
    cd_tensor *ref = cd_test_tensor4(2, 1, 28, 28), *out = cd_test_tensor4(2, 1, 28, 28);
    CD_ASSERT_OK(cd_tensor_create(&tau, 1, (int64_t[]){2}));
    CD_ASSERT_OK(cd_tensor_fill(tau, 0.4f));
    cd_test_fill_uniform(z, 5, -1.0f, 1.0f);
    const size_t bytes = 2 * 28 * 28 * sizeof(float);
    CD_ASSERT_OK(cd_decoder_infer(d, z, tau, ref));
    int64_t failures = 0;
    for (int persist = 0; persist < 2; persist++) {
        for (int64_t k = 1;; k++) {
            /* The workspace stays; the prepared weights go, as a training
             * pass would free them, so the pass below allocates them and
             * nothing else. */
            cd__decoder_drop_prepared(d);
            const int64_t live = cd__alloc_live();
            cd_clear_error();
            cd__alloc_fail_at(k, persist);
            const cd_status st = cd_decoder_infer(d, z, tau, out);
            const bool fired = cd__alloc_failure_fired();
            cd__alloc_fail_at(0, false);
            ck_assert_msg(st == CD_OK, "k = %lld: %s", (long long)k, cd_last_error());
            ck_assert_int_eq(cd_last_status(), CD_OK);
            ck_assert_mem_eq(cd_tensor_data(out), cd_tensor_data(ref), bytes);
            if (!fired) break;
            failures++;
            /* What was made before the failure is kept or freed, not lost. */
            cd__decoder_drop_prepared(d);
            ck_assert_int_eq(cd__alloc_live(), live);
        }
    }
    /* Every CPU this suite runs on in CI has AVX-512; without it no
     * convolution has a prepared form and nothing is allocated. */
    ck_assert(cd__cpu_use_avx512(CD__KERNELS_SPECTRAL) ? failures > 2 : failures == 0);
    printf("forward-only pass: %lld failed allocations of prepared weights survived\n",
           (long long)failures);
    cd_tensor_free(z), cd_tensor_free(tau), cd_tensor_free(ref), cd_tensor_free(out);
    cd_decoder_free(d);
    cd_rng_free(rng);
    cd_decoder_config_free(cfg);
}
END_TEST

/* The hook itself: the k-th allocation fails, once or from then on, and
 * the counters follow allocations and frees. */
START_TEST(the_failure_hook_counts_and_fails)
{
    const int64_t live = cd__alloc_live();
    void *a = cd__malloc(8, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(cd__alloc_live(), live + 1);
    cd__alloc_fail_at(2, false);
    void *b = cd__malloc(8, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert(!cd__alloc_failure_fired());
    cd_clear_error();
    ck_assert_ptr_null(cd__calloc(4, 4, "the second block"));
    ck_assert(cd__alloc_failure_fired());
    ck_assert_int_eq(cd_last_status(), CD_ERR_OUT_OF_MEMORY);
    CD_ASSERT_ERROR_MENTIONS("the second block");
    void *c = cd__realloc(NULL, 2, 8, "c");
    ck_assert_ptr_nonnull(c);
    cd__alloc_fail_at(1, true);
    ck_assert_ptr_null(cd__realloc(c, 4, 8, "c grown")); /* c stays live */
    ck_assert_ptr_null(cd__strdup("x", "d"));
    ck_assert_ptr_null(cd__malloc(1, "e"));
    cd__alloc_fail_at(0, false);
    ck_assert_int_eq(cd__alloc_live(), live + 3);
    cd__free(a);
    cd__free(b);
    cd__free(c);
    cd__free(NULL);
    ck_assert_int_eq(cd__alloc_live(), live);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("alloc_failure");
    TCase *tc = tcase_create("alloc_failure");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, the_failure_hook_counts_and_fails);
    tcase_add_test(tc, a_failed_forward_keeps_the_previous_plan);
    tcase_add_test(tc, a_forward_only_pass_runs_without_prepared_weights);
    tcase_add_test(tc, every_loader_survives_each_failed_allocation);
    tcase_add_test(tc, every_save_survives_each_failed_allocation);
    tcase_add_test(tc, training_survives_each_failed_allocation);
    tcase_add_test(tc, every_sampler_survives_each_failed_allocation);
    tcase_add_test(tc, data_fitting_and_metrics_survive_each_failed_allocation);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
