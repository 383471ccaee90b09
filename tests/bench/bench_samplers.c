/*
 * bench_samplers.c - the measurement behind docs/sampling.md: on a DDPM
 * model trained for at least one epoch, are 50 DDIM steps as good as 1000
 * DDPM steps?
 *
 *   bench_samplers --data DIR --out DIR [--model CKPT] [--ema] [--epochs E]
 *                  [--n N] [--seed S] [--threads T] [--skip-ddpm]
 *                  [--ddim-steps S] [--eta E] [--clipped-only]
 *
 * Uses the checkpoint CKPT (a `colddiff train` run's best.cdm, say; with
 * --ema its EMA weights), or trains the report's CNN with the linear
 * schedule (T = 1000, beta 1e-4 to 0.02) for E epochs (default 1) with
 * cd_trainer_fit, or reuses OUT/model.cdm when it exists. Then it draws N
 * samples (default 500) with DDIM (S = 50 steps and eta 0 unless given;
 * x0-hat as is, then clipped to the data range) and DDPM (T steps), times
 * them, writes OUT/ddimS.png, OUT/ddimS-clip.png and OUT/ddpm.png, and
 * prints a table.
 *
 * Quality: the Frechet distance on the shipped MNIST classifier's features
 * (what `colddiff eval` reports) between the samples and test images
 * 0..N-1, and, as a second opinion, on 7 x 7 average-pooled pixels (49
 * features). The floor row is the same distance between two disjoint sets
 * of N test images: what drawing N images alone gives. Not a test: the
 * numbers go to docs/sampling.md.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "colddiff.h"

#define BENCH_NAME "bench_samplers"
#include "bench_util.h"

static cd_tensor *tensor(int64_t rank, int64_t a, int64_t b, int64_t c, int64_t d)
{
    cd_tensor *t = NULL;
    const int64_t shape[4] = {a, b, c, d};
    check(cd_tensor_create(&t, rank, shape), "tensor");
    return t;
}

/* 7 x 7 means of the 4 x 4 blocks of each 28 x 28 image: N x 49. */
static cd_tensor *pooled(const cd_tensor *x)
{
    const int64_t N = cd_tensor_dim(x, 0);
    cd_tensor *f = tensor(2, N, 49, 0, 0);
    const float *p = cd_tensor_data((cd_tensor *)x);
    float *q = cd_tensor_data(f);
    for (int64_t n = 0; n < N; n++)
        for (int by = 0; by < 7; by++)
            for (int bx = 0; bx < 7; bx++) {
                double s = 0.0;
                for (int y = 0; y < 4; y++)
                    for (int c = 0; c < 4; c++) s += p[n * 784 + (by * 4 + y) * 28 + bx * 4 + c];
                q[n * 49 + by * 7 + bx] = (float)(s / 16.0);
            }
    return f;
}

static void pixel_stats(const cd_tensor *x, double *mean, double *sd)
{
    const float *p = cd_tensor_data((cd_tensor *)x);
    const int64_t n = cd_tensor_numel(x);
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++) s += p[i], ss += (double)p[i] * p[i];
    *mean = s / (double)n;
    *sd = sqrt(ss / (double)n - *mean * *mean);
}

/* A trainer loaded from model if it exists (*made = false: it owns its
 * decoder and degradation), else made and trained here (*made = true: it
 * borrows them, and the caller frees them after it). */
static cd_trainer *train(cd_dataset *ds, const char *model, int64_t epochs, cd_rng *rng, bool *made)
{
    cd_trainer *tr = NULL;
    struct stat sb;
    *made = false;
    if (stat(model, &sb) == 0) {
        check(cd_trainer_load(&tr, model, NULL), "load model");
        fprintf(stderr, "reusing %s\n", model);
        return tr;
    }
    cd_schedule *s = NULL;
    cd_degradation *deg = NULL;
    cd_decoder_config *cfg = NULL;
    cd_decoder *dec = NULL;
    check(cd_schedule_create_linear(&s, 1000, 1e-4, 0.02), "schedule");
    check(cd_degradation_create_noise(&deg, s), "degradation");
    check(cd_decoder_config_create(&cfg, CD_DECODER_CNN), "config");
    check(cd_decoder_create(&dec, cfg, rng), "decoder");
    check(cd_trainer_create(&tr, dec, deg), "trainer");
    *made = true;
    cd_decoder_config_free(cfg);
    cd_schedule_free(s);
    const double t0 = now();
    check(cd_trainer_fit(tr, ds, epochs, model, NULL, rng, NULL, NULL), "fit");
    double val = 0.0;
    check(cd_trainer_progress(tr, CD_PROGRESS_BEST_VAL_LOSS, &val), "progress");
    fprintf(stderr, "trained %lld epoch(s) in %.0f s, validation loss %.5f\n", (long long)epochs,
            now() - t0, val);
    return tr;
}

/* Sample n images with kind (steps for DDIM), print the row of the table. */
/* The classifier's features of images (N x F), or NULL when it refuses
 * them (a diverged sampler's NaNs). */
static cd_tensor *features(cd_classifier *cls, const cd_tensor *images)
{
    cd_tensor *f = tensor(2, cd_tensor_dim(images, 0), cd_classifier_feature_dim(cls), 0, 0);
    if (cd_classifier_predict(cls, images, NULL, f) == CD_OK) return f;
    fprintf(stderr, "bench_samplers: no features: %s\n", cd_last_error());
    cd_tensor_free(f);
    return NULL;
}

typedef struct {
    cd_classifier *cls;
    const cd_tensor *real_f, *real_p; /* classifier features, pooled pixels */
    double floor_f, floor_p;
} quality;

static void run(cd_trainer *tr, cd_sampler_kind kind, int64_t steps, double eta, bool clip,
                int64_t n, uint64_t seed, const quality *q, const char *png)
{
    cd_sampler *smp = NULL;
    cd_rng *rng = NULL;
    cd_tensor *out = tensor(4, n, 1, 28, 28);
    check(cd_sampler_create(&smp, kind, cd_trainer_degradation(tr)), "sampler");
    check(cd_sampler_set_decoder(smp, cd_trainer_decoder(tr)), "decoder");
    if (kind == CD_SAMPLER_DDIM) {
        check(cd_sampler_set_int(smp, CD_SAMPLER_OPT_STEPS, steps), "steps");
        check(cd_sampler_set_real(smp, CD_SAMPLER_OPT_ETA, eta), "eta");
    }
    if (clip) { /* x0-hat to the data range, as DDIM implementations usually do */
        check(cd_sampler_set_int(smp, CD_SAMPLER_OPT_CLIP, 1), "clip");
        check(cd_sampler_set_real(smp, CD_SAMPLER_OPT_CLIP_LO, -0.5), "clip");
        check(cd_sampler_set_real(smp, CD_SAMPLER_OPT_CLIP_HI, 0.5), "clip");
    }
    check(cd_rng_create(&rng, seed), "rng");
    const double t0 = now();
    check(cd_sampler_sample(smp, rng, out), "sample");
    const double secs = now() - t0;
    cd_tensor *f = pooled(out), *cf = features(q->cls, out);
    double fd = 0.0, cfd = NAN, mean = 0.0, sd = 0.0;
    check(cd_frechet_distance(f, q->real_p, &fd), "FD");
    if (cf && cd_frechet_distance(cf, q->real_f, &cfd) != CD_OK) cfd = NAN;
    pixel_stats(out, &mean, &sd);
    char name[64] = "";
    if (kind == CD_SAMPLER_DDIM && eta > 0.0) snprintf(name, sizeof name, ", eta %g", eta);
    printf("| %s %lld%s%s | %.1f | %.2f | %.1f | %.2f | %.1f | %.3f | %.3f |\n",
           kind == CD_SAMPLER_DDIM ? "DDIM" : "DDPM", (long long)steps, name,
           clip ? ", x0-hat clipped to [-0.5, 0.5]" : "", secs, cfd, cfd / q->floor_f, fd,
           fd / q->floor_p, mean, sd);
    cd_tensor_free(cf);
    fflush(stdout);
    cd_tensor *grid = tensor(4, n < 64 ? n : 64, 1, 28, 28);
    memcpy(cd_tensor_data(grid), cd_tensor_data(out), (size_t)cd_tensor_numel(grid) * 4);
    check(cd_image_grid_write_png(png, grid, 8, 2, 0, CD_PIXELS_RANGE, -0.5f, 0.5f), "png");
    cd_tensor_free(grid), cd_tensor_free(f), cd_tensor_free(out);
    cd_rng_free(rng), cd_sampler_free(smp);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *outdir = NULL, *ckpt = NULL;
    int64_t epochs = 1, n = 500, threads = 2, ddim_steps = 50;
    double eta = 0.0;
    uint64_t seed = 42;
    bool skip_ddpm = false, ema = false, clipped_only = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--skip-ddpm")) {
            skip_ddpm = true;
            continue;
        }
        if (!strcmp(argv[i], "--ema")) {
            ema = true;
            continue;
        }
        if (!strcmp(argv[i], "--clipped-only")) {
            clipped_only = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_samplers: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--data"))
            data = v;
        else if (!strcmp(argv[i], "--out"))
            outdir = v;
        else if (!strcmp(argv[i], "--model"))
            ckpt = v;
        else if (!strcmp(argv[i], "--epochs"))
            epochs = atoll(v);
        else if (!strcmp(argv[i], "--n"))
            n = atoll(v);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoll(v);
        else if (!strcmp(argv[i], "--ddim-steps"))
            ddim_steps = atoll(v);
        else if (!strcmp(argv[i], "--eta"))
            eta = atof(v);
        else {
            fprintf(stderr, "bench_samplers: unknown option %s\n", argv[i]);
            return 2;
        }
        i++;
    }
    if (!data || !outdir || n < 2) {
        fprintf(stderr, "usage: bench_samplers --data DIR --out DIR [--model CKPT] [--ema] "
                        "[--epochs E] [--n N>=2] [--seed S] [--threads T] [--skip-ddpm] "
                        "[--ddim-steps S] [--eta E] [--clipped-only]\n");
        return 2;
    }
    check(cd_set_num_threads(threads), "threads");
    mkdir(outdir, 0777);
    char model[4096], png[4096];
    if (ckpt)
        snprintf(model, sizeof model, "%s", ckpt);
    else
        snprintf(model, sizeof model, "%s/model.cdm", outdir);
    struct stat sb;
    if (ckpt && stat(ckpt, &sb) != 0) {
        fprintf(stderr, "bench_samplers: --model %s: no such file\n", ckpt);
        return 2;
    }
    cd_dataset *ds = NULL;
    cd_rng *rng = NULL;
    check(cd_dataset_load_mnist(&ds, data), "MNIST");
    check(cd_dataset_split(ds, 0.2, seed), "split");
    check(cd_rng_create(&rng, seed), "rng");
    if (2 * n > cd_dataset_count(ds, CD_SPLIT_TEST)) {
        fprintf(stderr, "bench_samplers: --n %lld needs %lld test images\n", (long long)n,
                (long long)(2 * n));
        return 2;
    }
    bool made = false;
    cd_trainer *tr = train(ds, model, epochs, rng, &made);
    if (ema) check(cd_trainer_copy_ema(tr), "--ema");
    const int64_t T = cd_degradation_T(cd_trainer_degradation(tr));
    /* Real features: test images 0..n-1; the floor compares them with n..2n-1. */
    int64_t *idx = malloc((size_t)(2 * n) * sizeof *idx);
    if (!idx) return 1;
    for (int64_t i = 0; i < 2 * n; i++) idx[i] = i;
    cd_tensor *ra = tensor(4, n, 1, 28, 28), *rb = tensor(4, n, 1, 28, 28);
    check(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, n, ra, NULL), "test images");
    check(cd_dataset_gather(ds, CD_SPLIT_TEST, idx + n, n, rb, NULL), "test images");
    quality q = {NULL, NULL, NULL, 0.0, 0.0};
    check(cd_classifier_load_default(&q.cls), "classifier");
    cd_tensor *fa = pooled(ra), *fb = pooled(rb), *ca = features(q.cls, ra),
              *cb = features(q.cls, rb);
    if (!ca || !cb) return 1;
    q.real_p = fa, q.real_f = ca;
    double mean = 0.0, sd = 0.0;
    check(cd_frechet_distance(fb, fa, &q.floor_p), "FD floor");
    check(cd_frechet_distance(cb, ca, &q.floor_f), "FD floor");
    pixel_stats(rb, &mean, &sd);
    printf("| sampler | seconds | FD (classifier) | / floor | FD (7x7 pooled pixels) | / floor "
           "| pixel mean | pixel std |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    printf("| test images %lld..%lld (floor) | - | %.2f | 1.0 | %.2f | 1.0 | %.3f | %.3f |\n",
           (long long)n, (long long)(2 * n - 1), q.floor_f, q.floor_p, mean, sd);
    if (!clipped_only) {
        snprintf(png, sizeof png, "%s/ddim%lld.png", outdir, (long long)ddim_steps);
        run(tr, CD_SAMPLER_DDIM, ddim_steps, eta, false, n, seed + 1, &q, png);
    }
    snprintf(png, sizeof png, "%s/ddim%lld-clip.png", outdir, (long long)ddim_steps);
    run(tr, CD_SAMPLER_DDIM, ddim_steps, eta, true, n, seed + 1, &q, png);
    if (!skip_ddpm) {
        snprintf(png, sizeof png, "%s/ddpm.png", outdir);
        run(tr, CD_SAMPLER_DDPM, T, 0.0, false, n, seed + 1, &q, png);
    }
    cd_tensor_free(ca), cd_tensor_free(cb), cd_classifier_free(q.cls);
    cd_tensor_free(fa), cd_tensor_free(fb), cd_tensor_free(ra), cd_tensor_free(rb);
    free(idx);
    cd_decoder *dec = cd_trainer_decoder(tr);
    cd_degradation *deg = cd_trainer_degradation(tr);
    cd_trainer_free(tr); /* before the decoder and degradation it borrows */
    if (made) cd_decoder_free(dec), cd_degradation_free(deg);
    cd_rng_free(rng), cd_dataset_free(ds);
    return 0;
}
