/*
 * cmd_eval.c - colddiff eval: the report's Tables 1 and 2 for one model
 * (docs/models.md, Metrics): test loss with its standard error; RMSE,
 * SSIM and PSNR of conditional restorations of the first n test images
 * from t = T; the class preservation of those restorations; and, for
 * unconditional samples, the Frechet distance on the MNIST classifier's
 * features against real images spread over the split, with its floor, and
 * the class histogram, its entropy and the mean confidence. A
 * class-conditional model draws those samples with the classes in turn
 * (0, 1, ..., K-1, 0, ...) at the --guidance scale, and how many the
 * classifier puts in the class asked for is its class accuracy.
 */
#include "cli_gen.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 250

/* Where FD's real images come from in the split (fd_layout_of, below). */
typedef struct {
    int64_t count, m, step, sets; /* step < 2: no set fits beside the reference */
} fd_layout;

typedef struct {
    double loss, loss_se, rmse, ssim, psnr, fd, fd_floor, preservation, entropy, confidence;
    double class_accuracy, guidance; /* a class-conditional model's; NaN otherwise */
    int64_t n, fd_n, hist[10];
    fd_layout fd_sets; /* the FD sets, once classified */
    int64_t c, h, w;   /* the data's image shape */
    cd_split split;    /* where the images come from */
    bool classified;   /* false: no classifier for this image shape */
    const char *reduction;
    bool default_objective; /* an inference model keeps no training options */
} eval_result;

static cd_tensor *tensor4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    cd_tensor *t = NULL;
    const int64_t shape[4] = {n, c, h, w};
    return cd_tensor_create(&t, 4, shape) == CD_OK ? t : NULL;
}

static cd_tensor *tensor2(int64_t n, int64_t k)
{
    cd_tensor *t = NULL;
    const int64_t shape[2] = {n, k};
    return cd_tensor_create(&t, 2, shape) == CD_OK ? t : NULL;
}

/* A tensor of n images of t's image shape, or NULL. */
static cd_tensor *like(const cd_tensor *t, int64_t n)
{
    return tensor4(n, cd_tensor_dim(t, 1), cd_tensor_dim(t, 2), cd_tensor_dim(t, 3));
}

/* Rows [first, first + n) of a batch of images, copied into a new tensor
 * (*holder, also returned; NULL on failure). */
static cd_tensor *copy_rows(cd_tensor *t, int64_t first, int64_t n, cd_tensor **holder)
{
    cd_tensor *v = like(t, n);
    if (v && cd_tensor_copy_rows(v, 0, t, first, n) != CD_OK) cd_tensor_free(v), v = NULL;
    *holder = v;
    return v;
}

/* Conditional restorations of x (n images) from T, in chunks. */
static cd_status restore_all(const cli_loaded *m, const cli_sampling *o, cd_tensor *x,
                             cd_tensor *xhat)
{
    const int64_t n = cd_tensor_dim(x, 0);
    const int64_t T = cd_degradation_T(m->deg);
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_status st = cli_model_sampler(m->dec, m->deg, o, &smp);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed);
    for (int64_t first = 0; st == CD_OK && first < n; first += CHUNK) {
        const int64_t b = n - first < CHUNK ? n - first : CHUNK;
        char label[96];
        snprintf(label, sizeof label, "restoring images %lld-%lld of %lld", (long long)first + 1,
                 (long long)(first + b), (long long)n);
        cli_progress_label(label);
        cd_tensor *xb = NULL;
        cd_tensor *ob = copy_rows(x, first, b, &xb) ? like(x, b) : NULL;
        st = xb && ob ? cd_sampler_restore(smp, xb, T, rng, ob, NULL, 0, NULL, NULL, NULL)
                      : cd_last_status();
        if (st == CD_OK) st = cd_tensor_copy_rows(xhat, first, ob, 0, b);
        cd_tensor_free(xb), cd_tensor_free(ob);
    }
    if (st == CD_OK) cli_warn_range(xhat, "restorations");
    cd_rng_free(rng);
    cd_sampler_free(smp);
    return st;
}

/* n samples, in chunks: unconditional, or for a class-conditional model
 * the classes in turn (sample i of class i mod K, whose label goes to
 * labels[i]). */
static cd_status sample_all(const cli_loaded *m, const cli_sampling *o, cd_tensor *out,
                            int64_t *labels)
{
    const int64_t n = cd_tensor_dim(out, 0), K = cd_decoder_class_count(m->dec);
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cli_sampling each = *o;
    each.class_rows = K > 0; /* one "row" per sample: class i mod K */
    cd_status st = cli_model_sampler(m->dec, m->deg, o, &smp);
    if (st == CD_OK) st = cd_rng_create(&rng, o->seed + 1);
    for (int64_t i = 0; i < n; i++) labels[i] = K > 0 ? i % K : -1;
    for (int64_t first = 0; st == CD_OK && first < n; first += CHUNK) {
        const int64_t b = n - first < CHUNK ? n - first : CHUNK;
        st = cli_set_labels(smp, m->dec, &each, first, b, 1);
        if (st != CD_OK) break;
        char label[96];
        snprintf(label, sizeof label, "sampling images %lld-%lld of %lld", (long long)first + 1,
                 (long long)(first + b), (long long)n);
        cli_progress_label(label);
        cd_tensor *ob = like(out, b);
        st = ob ? cd_sampler_sample(smp, rng, ob) : cd_last_status();
        if (st == CD_OK) st = cd_tensor_copy_rows(out, first, ob, 0, b);
        cd_tensor_free(ob);
    }
    if (st == CD_OK) cli_warn_range(out, "samples");
    cd_rng_free(rng);
    cd_sampler_free(smp);
    return st;
}

/* FD's real images are m images spread evenly over the split (every
 * step-th), not its first m: a split can be ordered (MNIST's test set holds
 * the images of its cleaner writers first, and its first 1,000 score an FD
 * of about 35 against a spread 1,000), and a block of it would then stand
 * for only part of the data a model learned. The floor is what a perfect
 * generator would score, since FD is biased upwards at finite counts: the
 * mean FD of up to FLOOR_SETS other spread sets of m real images against
 * the same reference, since one set alone is a noisy yardstick (nine sets
 * of 1,000 MNIST test images score 19 to 29 against one reference). */
#define FLOOR_SETS 9

static fd_layout fd_layout_of(int64_t count, int64_t m)
{
    fd_layout L = {count, m, count / m, 0};
    if (L.step >= 2) L.sets = L.step - 1 < FLOOR_SETS ? L.step - 1 : FLOOR_SETS;
    return L;
}

/* Image i of set j: j = 0 is the reference, 1..sets the floor's. Each floor
 * set is offset from the reference within the same stride, so no image is
 * in two sets. */
static int64_t fd_index(const fd_layout *L, int64_t j, int64_t i)
{
    if (L->step < 2) return i * L->count / L->m;
    return i * L->step + j * L->step / (L->sets + 1);
}

/* The classifier's features (out: m x F) of set j of the split. */
static cd_status fd_features(cd_dataset *ds, cd_split split, cd_classifier *cls, const fd_layout *L,
                             int64_t j, cd_tensor *out)
{
    const int64_t m = L->m;
    cd_tensor *x = tensor4(m, cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds));
    int64_t *idx = malloc((size_t)m * sizeof *idx);
    cd_status st = x && idx ? CD_OK : CD_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; st == CD_OK && i < m; i++) idx[i] = fd_index(L, j, i);
    if (st == CD_OK) st = cd_dataset_gather(ds, split, idx, m, x, NULL);
    if (st == CD_OK) st = cd_classifier_predict(cls, x, NULL, out);
    cd_tensor_free(x);
    free(idx);
    return st;
}

/* The floor against the reference's features fa (NaN when the split is
 * too small for a second set); feats is scratch of fa's shape. */
static cd_status fd_floor(cd_dataset *ds, cd_split split, cd_classifier *cls, const fd_layout *L,
                          const cd_tensor *fa, cd_tensor *feats, double *out)
{
    double sum = 0, d = 0;
    cd_status st = CD_OK;
    for (int64_t j = 1; st == CD_OK && j <= L->sets; j++) {
        st = fd_features(ds, split, cls, L, j, feats);
        if (st == CD_OK) st = cd_frechet_distance(feats, fa, &d);
        sum += d;
    }
    *out = L->sets > 0 ? sum / (double)L->sets : NAN;
    return st;
}

/* The classifier's metrics: class preservation of the restorations xhat
 * of x's n images (labels), and FD, its floor and the class statistics of
 * m unconditional samples against m images spread over the split. */
static cd_status classify(const cli_loaded *mdl, cd_dataset *ds, cd_classifier *cls,
                          const cli_sampling *o, const cd_tensor *xhat, const int64_t *labels,
                          eval_result *r)
{
    const int64_t n = r->n, m = r->fd_n;
    const int64_t F = cd_classifier_feature_dim(cls), K = cd_classifier_num_classes(cls);
    const fd_layout L = fd_layout_of(cd_dataset_count(ds, r->split), m);
    cd_tensor *probs = tensor2(n, K), *samples = tensor4(m, r->c, r->h, r->w);
    cd_tensor *sprobs = tensor2(m, K), *fa = tensor2(m, F), *fb = tensor2(m, F);
    int64_t *asked = malloc((size_t)m * sizeof *asked);
    cd_status st = probs && samples && sprobs && fa && fb && asked ? CD_OK : CD_ERR_OUT_OF_MEMORY;
    if (st == CD_ERR_OUT_OF_MEMORY) fprintf(stderr, "colddiff: out of memory\n");
    if (st == CD_OK) st = cd_classifier_predict(cls, xhat, probs, NULL);
    if (st == CD_OK) st = cd_class_preservation(probs, labels, n, &r->preservation, NULL);
    if (st == CD_OK) st = sample_all(mdl, o, samples, asked);
    if (st == CD_OK) st = cd_classifier_predict(cls, samples, sprobs, fb);
    if (st == CD_OK && cd_decoder_class_count(mdl->dec) > 0)
        st = cd_class_preservation(sprobs, asked, m, &r->class_accuracy, NULL);
    if (st == CD_OK) st = fd_features(ds, r->split, cls, &L, 0, fa);
    if (st == CD_OK) st = cd_frechet_distance(fb, fa, &r->fd);
    if (st == CD_OK) st = fd_floor(ds, r->split, cls, &L, fa, fb, &r->fd_floor);
    if (st == CD_OK)
        st = cd_class_histogram(sprobs, r->hist, K < 10 ? K : 10, &r->entropy, &r->confidence);
    r->fd_sets = L;
    cd_tensor_free(probs), cd_tensor_free(samples), cd_tensor_free(sprobs);
    cd_tensor_free(fa), cd_tensor_free(fb);
    free(asked);
    return st;
}

/* cls NULL: the loss and the image metrics only. */
static cd_status evaluate(const cli_loaded *mdl, cd_dataset *ds, cd_classifier *cls,
                          const cli_sampling *o, int reduction, eval_result *r)
{
    const int64_t n = r->n;
    cd_rng *rng = NULL;
    cd_tensor *x = tensor4(n, r->c, r->h, r->w), *xhat = tensor4(n, r->c, r->h, r->w);
    cd_tensor *lab = NULL;
    int64_t *idx = malloc((size_t)n * sizeof *idx), *labels = malloc((size_t)n * sizeof *labels);
    cd_status st = x && xhat && idx && labels && cd_tensor_create(&lab, 1, &n) == CD_OK
                       ? cd_rng_create(&rng, o->seed)
                       : CD_ERR_OUT_OF_MEMORY;
    if (st == CD_ERR_OUT_OF_MEMORY) fprintf(stderr, "colddiff: out of memory\n");
    for (int64_t i = 0; idx && i < n; i++) idx[i] = i;
    if (st == CD_OK) st = cd_trainer_test_loss(mdl->tr, ds, r->split, rng, &r->loss, &r->loss_se);
    /* The test loss runs no chain, so Ctrl-C is looked at after it. */
    if (st == CD_OK && cli_interrupted()) st = CD_ERR_CANCELLED;
    if (st == CD_OK) st = cd_dataset_gather(ds, r->split, idx, n, x, lab);
    for (int64_t i = 0; st == CD_OK && i < n; i++) labels[i] = (int64_t)cd_tensor_data(lab)[i];
    if (st == CD_OK) st = restore_all(mdl, o, x, xhat);
    cd_metric_reduction used = CD_REDUCTION_PER_IMAGE;
    if (st == CD_OK)
        st = cd_metrics_images(x, xhat, (cd_metric_reduction)reduction, &r->rmse, &r->ssim,
                               &r->psnr, &used);
    r->reduction = cd_enum_name(CD_ENUM_METRIC_REDUCTION, used);
    if (st == CD_OK && cls) st = classify(mdl, ds, cls, o, xhat, labels, r);
    cd_tensor_free(x), cd_tensor_free(xhat), cd_tensor_free(lab);
    free(idx), free(labels);
    cd_rng_free(rng);
    return st;
}

/* A JSON number: JSON has no NaN or infinity, so those become null. */
static const char *json_num(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.9g", v);
    else
        snprintf(buf, cap, "null");
    return buf;
}

static const char *split_name(const eval_result *r)
{
    return r->split == CD_SPLIT_TEST ? "test" : "validation";
}

static void print_result(const eval_result *r, FILE *f, bool json)
{
    if (json) {
        char b[10][32], g[2][32];
        fprintf(f,
                "{\n  \"split\": \"%s\",\n  \"test_loss\": %s,\n  \"test_loss_std_error\": %s,\n"
                "  \"restorations\": %lld,\n  \"reduction\": \"%s\",\n  \"rmse\": %s,\n"
                "  \"ssim\": %s,\n  \"psnr\": %s,\n  \"class_preservation\": %s,\n"
                "  \"fd\": %s,\n  \"fd_samples\": %lld,\n  \"fd_floor\": %s,\n"
                "  \"fd_floor_sets\": %lld,\n"
                "  \"class_entropy_nats\": %s,\n"
                "  \"mean_confidence\": %s,\n  \"classifier_metrics\": %s,\n"
                "  \"guidance\": %s,\n  \"class_accuracy\": %s,\n"
                "  \"class_histogram\": [",
                split_name(r), json_num(b[0], 32, r->loss), json_num(b[1], 32, r->loss_se),
                (long long)r->n, r->reduction, json_num(b[2], 32, r->rmse),
                json_num(b[3], 32, r->ssim), json_num(b[4], 32, r->psnr),
                json_num(b[5], 32, r->preservation), json_num(b[6], 32, r->fd),
                (long long)(r->classified ? r->fd_n : 0), json_num(b[9], 32, r->fd_floor),
                (long long)(r->classified ? r->fd_sets.sets : 0), json_num(b[7], 32, r->entropy),
                json_num(b[8], 32, r->confidence), r->classified ? "true" : "false",
                json_num(g[0], 32, r->guidance), json_num(g[1], 32, r->class_accuracy));
        for (int k = 0; k < (r->classified ? 10 : 0); k++)
            fprintf(f, "%s%lld", k ? ", " : "", (long long)r->hist[k]);
        fprintf(f, "]\n}\n");
        return;
    }
    fprintf(f, "test loss          %.6f +- %.6f (standard error, all %s images%s)\n", r->loss,
            r->loss_se, split_name(r),
            r->default_objective ? "; MSE, t in 1..T: an inference model keeps no "
                                   "training options"
                                 : "");
    fprintf(f, "restorations       %lld %s images from t = T, %s reduction\n", (long long)r->n,
            split_name(r), r->reduction);
    fprintf(f, "RMSE               %.4f\nSSIM               %.4f\nPSNR               %.4f\n",
            r->rmse, r->ssim, r->psnr);
    if (!r->classified) {
        fprintf(f,
                "classifier metrics skipped: the MNIST classifier takes 1 x 28 x 28 images, "
                "these are %lld x %lld x %lld (no class preservation, FD or class entropy)\n",
                (long long)r->c, (long long)r->h, (long long)r->w);
        return;
    }
    fprintf(f, "class preservation %.4f\n", r->preservation);
    char spread[64] = "";
    if (r->fd_sets.step >= 2)
        snprintf(spread, sizeof spread, ", one in %lld", (long long)r->fd_sets.step);
    fprintf(f,
            "FD                 %.4f (%lld samples vs %lld %s images spread over the split%s; "
            "MNIST classifier features)\n",
            r->fd, (long long)r->fd_n, (long long)r->fd_n, split_name(r), spread);
    if (isfinite(r->fd_floor))
        fprintf(f,
                "FD floor           %.4f (real against real: mean over %lld other such sets of "
                "%lld %s images)\n",
                r->fd_floor, (long long)r->fd_sets.sets, (long long)r->fd_n, split_name(r));
    if (isfinite(r->class_accuracy))
        fprintf(f,
                "class accuracy     %.4f (samples classified as the class asked for, guidance "
                "%g)\n",
                r->class_accuracy, r->guidance);
    fprintf(f, "class entropy      %.4f nats (uniform: %.4f), mean confidence %.4f\n", r->entropy,
            log(10.0), r->confidence);
    fprintf(f, "class histogram   ");
    for (int k = 0; k < 10; k++) fprintf(f, " %lld", (long long)r->hist[k]);
    fprintf(f, "\n");
}

/* The data's image shape and split into r, and whether the MNIST
 * classifier's metrics apply: it takes only 1 x 28 x 28 images. */
static bool eval_shape(const cd_dataset *ds, const char *dir, const cli_holdout *h, eval_result *r)
{
    r->c = cd_dataset_channels(ds);
    r->h = cd_dataset_height(ds);
    r->w = cd_dataset_width(ds);
    r->split = cli_default_split(ds, dir, h);
    r->classified = r->c == 1 && r->h == 28 && r->w == 28;
    return r->c > 0 && r->h > 0 && r->w > 0;
}

int cmd_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *json = NULL, *classifier = NULL;
    int64_t seed = 1, threads = 0;
    int reduction = 0;
    static const char *const reductions[] = {"per_image", "report", NULL};
    cli_sampling s = CLI_SAMPLING_DEFAULTS;
    bool flags[3] = {false, false, false};
    const cli_opt *so = cli_sampler_opts(&s, &seed, flags), *co = cli_class_opts(&s);
    eval_result r = {.n = 1000,
                     .fd_n = 1000,
                     .fd = NAN,
                     .fd_floor = NAN,
                     .preservation = NAN,
                     .entropy = NAN,
                     .confidence = NAN,
                     .class_accuracy = NAN,
                     .guidance = NAN};
    const cli_opt opts[] = {
        {"--checkpoint", OPT_STR, &ckpt, 0, 0, NULL,
         "a model: inference file or training checkpoint (default: the shipped pretrained MNIST model)",
         NULL},
        {"--data", OPT_STR, &data, 0, 0, NULL,
         "MNIST folder, or a folder of PNG images (the validation split the run held out; no "
         "classifier metrics unless 1 x 28 x 28)",
         NULL},
        CLI_DATA_SHAPE_OPTS,
        {"--n", OPT_I64, &r.n, 2, 10000, NULL, "test images to restore (1000)", NULL},
        {"--fd-samples", OPT_I64, &r.fd_n, 2, 10000, NULL, "unconditional samples for FD (1000)",
         NULL},
        {"--reduction", OPT_CHOICE, &reduction, 0, 0, reductions, "how per-image metrics combine",
         NULL},
        {"--classifier", OPT_STR, &classifier, 0, 0, NULL, "feature extractor (the shipped one)",
         NULL},
        {"--json", OPT_STR, &json, 0, 0, NULL, "also write the results as JSON", NULL},
        so[0],
        so[1],
        so[2],
        so[3],
        so[4],
        so[5],
        so[6],
        so[7],
        co[2],
        {"--threads", OPT_I64, &threads, 1, 256, NULL, "worker threads (all cores)", NULL},
    };
    const cli_command cmd = {"eval",
                             "--data D [--checkpoint F] [options]",
                             "Evaluate a model as the report's Tables 1 and 2 do: test loss, "
                             "RMSE, SSIM, PSNR,\nclass preservation, FD and class entropy.",
                             opts,
                             (int)(sizeof opts / sizeof opts[0]),
                             NULL,
                             NULL};
    const int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!data) return cli_usage("eval", "--data is required");
    if (cli_check_only) return CLI_OK;
    if (threads > 0 && cd_set_num_threads(threads) != CD_OK) return cli_fail("--threads");
    if (json && cli_output_ok("eval", "the JSON", json, false) != CLI_OK) return CLI_FAIL;
    cli_sampler_finish(&s, seed, flags);
    cli_loaded m = {0};
    cli_holdout held;
    cli_holdout_of(ckpt, &held);
    cd_dataset *ds = NULL;
    cd_classifier *cls = NULL;
    int ret = CLI_FAIL;
    cd_sampler *smp = NULL;
    if (cli_load_model(ckpt, true, s.ema, &m) != CD_OK) ret = CLI_FAIL; /* it said why */
    /* The sampler options are checked against the model before any work. */
    else if (cli_model_sampler(m.dec, m.deg, &s, &smp) != CD_OK)
        cli_fail("the sampler");
    else if (cli_load_data(&ds, data, held.fraction, (uint64_t)held.seed) != CD_OK)
        cli_fail("loading the data");
    else if (!eval_shape(ds, data, &held, &r))
        ret = CLI_FAIL; /* cannot happen: a loaded dataset has a shape */
    else if (r.classified && (classifier ? cd_classifier_load(&cls, classifier)
                                         : cd_classifier_load_default(&cls)) != CD_OK)
        cli_fail("loading the classifier");
    else if (cd_dataset_count(ds, r.split) < (r.classified && r.fd_n > r.n ? r.fd_n : r.n))
        fprintf(stderr,
                "colddiff: the %s split has %lld images, fewer than the %lld asked for (%s)\n",
                r.split == CD_SPLIT_TEST ? "test" : "validation",
                (long long)cd_dataset_count(ds, r.split),
                (long long)(r.classified && r.fd_n > r.n ? r.fd_n : r.n),
                r.classified && r.fd_n > r.n ? "--fd-samples" : "--n");
    else {
        r.default_objective = !m.checkpoint;
        if (cd_decoder_class_count(m.dec) > 0) r.guidance = s.guidance;
        cli_progress_begin("evaluating");
        ret = evaluate(&m, ds, cls, &s, reduction, &r) != CD_OK
                  ? cli_fail_or_interrupted("evaluating")
                  : CLI_OK;
        cli_progress_end();
    }
    cd_sampler_free(smp);
    if (ret == CLI_OK) print_result(&r, stdout, false);
    if (ret == CLI_OK && json) {
        /* Through a temporary file, so a failure keeps an earlier JSON. */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", json);
        FILE *f = fopen(tmp, "w");
        int e = f ? 0 : errno;
        if (f) {
            print_result(&r, f, true);
            e = cli_commit_file(f, tmp, json);
        }
        if (e) {
            fprintf(stderr, "colddiff: cannot write %s: %s\n", json, strerror(e));
            ret = CLI_FAIL;
        }
    }
    cd_classifier_free(cls);
    cd_dataset_free(ds);
    cli_loaded_free(&m);
    return ret;
}
