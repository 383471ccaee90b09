/*
 * bench_decoder.c - speed of the report's two decoders through the public
 * API, the numbers that tests/bench/run_decoder_bench.sh sets next to
 * PyTorch's (tests/bench/bench_decoder_torch.py measures the same things).
 *
 *   bench_decoder [--threads N] [--model cnn|unet|both] [--reps K]
 *                 [--batch B] [--warmup W] [--workload all|fwd|train|sample]
 *                 [--direct] [--no-winograd] [--no-pointwise] [--blas-attention]
 *                 [--json]
 *
 * Workloads, at batch B (default 128) and 28 x 28 x 1:
 *   fwd     cd_decoder_infer: the forward-only pass that sampling, the
 *           validation and test losses and eval run (PyTorch's side runs
 *           under torch.no_grad());
 *   train   the network part of a training step: cd_params_zero_grad,
 *           cd_decoder_forward, cd_decoder_backward with a fixed random
 *           dout and no input gradient (PyTorch's z needs none either);
 *   sample  cd_decoder_infer of the CNN at batch 64: one DDPM sampling step
 *           (docs/performance.md lists it; only with --model cnn or both).
 * Each workload runs W warm-up iterations (the first forward of a shape
 * sizes the workspace) and then K timed ones (CLOCK_MONOTONIC); it prints
 * the best and the median time per batch and images per second of each.
 * --direct keeps convolutions off the spectral path (conv2d_fft.c), to
 * compare it with the direct kernels on the CNN's 7x7 layers.
 * --no-winograd keeps the UNet's 3x3 layers off the Winograd path
 * (conv2d_winograd.c), to compare it with the direct kernels.
 * --no-pointwise keeps the UNet's 1x1 layers off the pointwise path
 * (conv2d_pointwise.c), likewise.
 * --blas-attention runs the UNet attention's products through cblas_sgemm
 * instead of gemm_small.c's AVX-512 loops, to compare the two.
 * --json prints one JSON object per workload and line instead, in the
 * format bench_decoder_torch.py uses, so that the runner can combine them.
 *
 * Not a test: CTest never runs it. Weights, inputs and dout are seeded
 * random numbers; the speed does not depend on them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "colddiff.h"
#include "colddiff_experimental.h"
#include "core.h"

#define BENCH_NAME "bench_decoder"
#include "bench_util.h"

#define MAX_REPS 1000
#define SAMPLE_BATCH 64

typedef struct {
    int threads;
    int reps;
    int warmup;
    int64_t batch;
    bool json;
    bool cnn, unet;
    bool fwd, train, sample;
    int64_t unet_dim;                            /* 0: the report's */
    int64_t unet_heads, unet_head_dim, unet_cnx; /* 0: the report's */
    int64_t mults[8]; /* UNet width multipliers; n_mults 0: the report's */
    int32_t n_mults;
} options;

typedef struct {
    cd_decoder *d;
    cd_params *p;
    cd_tensor *z, *tau, *out, *dout;
} bench_net;

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Free the batch tensors (not the decoder). */
static void free_batch(bench_net *n)
{
    cd_tensor_free(n->z);
    cd_tensor_free(n->tau);
    cd_tensor_free(n->out);
    cd_tensor_free(n->dout);
    n->z = n->tau = n->out = n->dout = NULL;
}

/* (Re)make z, tau, out and dout for batch N, filled from rng. */
static void make_batch(bench_net *n, int64_t N, cd_rng *rng)
{
    const int64_t shape[4] = {N, 1, 28, 28};
    free_batch(n);
    check(cd_tensor_create(&n->z, 4, shape), "z");
    check(cd_tensor_create(&n->out, 4, shape), "out");
    check(cd_tensor_create(&n->dout, 4, shape), "dout");
    check(cd_tensor_create(&n->tau, 1, &N), "tau");
    check(cd_rng_normal_tensor(rng, n->z), "z values");
    check(cd_rng_normal_tensor(rng, n->dout), "dout values");
    check(cd_rng_uniform_tensor(rng, n->tau), "tau values");
    /* dout of a mean-squared loss is small; scale it like one. */
    float *g = cd_tensor_data(n->dout);
    const int64_t count = cd_tensor_numel(n->dout);
    for (int64_t i = 0; i < count; i++) g[i] *= 2.0f / (float)count;
}

static void make_net(bench_net *n, const options *o, cd_decoder_kind type, cd_rng *rng)
{
    cd_decoder_config *cfg = NULL;
    memset(n, 0, sizeof *n);
    check(cd_decoder_config_create(&cfg, type), "config");
    if (type == CD_DECODER_UNET && o->unet_dim > 0)
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_DIM, o->unet_dim), "--unet-dim");
    if (type == CD_DECODER_UNET && o->unet_heads > 0)
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEADS, o->unet_heads), "--unet-heads");
    if (type == CD_DECODER_UNET && o->unet_head_dim > 0)
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_HEAD_DIM, o->unet_head_dim),
              "--unet-head-dim");
    if (type == CD_DECODER_UNET && o->unet_cnx > 0)
        check(cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CONVNEXT_MULT, o->unet_cnx),
              "--unet-convnext-mult");
    if (type == CD_DECODER_UNET && o->n_mults > 0)
        check(cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, o->mults, o->n_mults),
              "--unet-mults");
    check(cd_decoder_create(&n->d, cfg, rng), "decoder");
    cd_decoder_config_free(cfg);
    n->p = cd_decoder_params(n->d);
    if (!n->p) die("params");
}

static void free_net(bench_net *n)
{
    free_batch(n);
    cd_decoder_free(n->d);
    n->d = NULL;
}

static void run_fwd(bench_net *n) { check(cd_decoder_infer(n->d, n->z, n->tau, n->out), "infer"); }

static void run_train(bench_net *n)
{
    check(cd_params_zero_grad(n->p), "zero_grad");
    check(cd_decoder_forward(n->d, n->z, n->tau, n->out), "forward");
    check(cd_decoder_backward(n->d, n->dout, NULL), "backward");
}

/* Time `warmup` + `reps` calls of fn; write the best and median seconds. */
static void time_it(void (*fn)(bench_net *), bench_net *n, const options *o, double *best,
                    double *median)
{
    static double t[MAX_REPS];
    for (int i = 0; i < o->warmup; i++) fn(n);
    for (int r = 0; r < o->reps; r++) {
        const double t0 = now();
        fn(n);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)o->reps, sizeof t[0], cmp_double);
    *best = t[0];
    *median = o->reps % 2 ? t[o->reps / 2] : 0.5 * (t[o->reps / 2 - 1] + t[o->reps / 2]);
}

static void report(const options *o, const char *model, const char *workload, int64_t N,
                   double best, double median)
{
    const double ips = (double)N / best, ips_med = (double)N / median;
    if (o->json) {
        printf("{\"impl\": \"libcolddiff\", \"model\": \"%s\", \"workload\": \"%s\", "
               "\"batch\": %lld, \"threads\": %d, \"reps\": %d, \"best_ms\": %.3f, "
               "\"median_ms\": %.3f, \"img_s\": %.2f, \"img_s_median\": %.2f}\n",
               model, workload, (long long)N, o->threads, o->reps, 1e3 * best, 1e3 * median, ips,
               ips_med);
    } else {
        printf("%-5s %-7s batch %4lld  best %9.2f ms  median %9.2f ms  %9.1f img/s "
               "(median %9.1f)\n",
               model, workload, (long long)N, 1e3 * best, 1e3 * median, ips, ips_med);
    }
    fflush(stdout);
}

static void bench_model(const options *o, cd_decoder_kind type, cd_rng *rng)
{
    const char *model = type == CD_DECODER_CNN ? "cnn" : "unet";
    bench_net n;
    double best, median;
    make_net(&n, o, type, rng);
    if (!o->json) {
        int64_t bytes = 0;
        check(cd_decoder_workspace_size(n.d, o->batch, 28, 28, &bytes), "workspace size");
        printf("%-5s %lld parameters, workspace at batch %lld: %.1f MiB\n", model,
               (long long)cd_decoder_param_count(n.d), (long long)o->batch,
               (double)bytes / (1024.0 * 1024.0));
    }
    if (o->fwd || o->train) make_batch(&n, o->batch, rng);
    if (o->fwd) {
        time_it(run_fwd, &n, o, &best, &median);
        report(o, model, "fwd", o->batch, best, median);
    }
    /* Sampling before training: a decoder that has trained prepares no
     * weights for its forward-only passes, and a sampler's has not. */
    const bool sample = o->sample && type == CD_DECODER_CNN;
    if (sample) {
        make_batch(&n, SAMPLE_BATCH, rng);
        time_it(run_fwd, &n, o, &best, &median);
        report(o, model, "sample", SAMPLE_BATCH, best, median);
    }
    if (o->train) {
        if (sample) make_batch(&n, o->batch, rng); /* back to the training batch */
        time_it(run_train, &n, o, &best, &median);
        report(o, model, "train", o->batch, best, median);
    }
    free_net(&n);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--threads N] [--model cnn|unet|both] [--reps K] [--batch B]\n"
            "       [--warmup W] [--workload all|fwd|train|sample] [--direct] [--no-winograd]\n"
            "       [--no-pointwise] [--blas-attention] [--json]\n"
            "       [--unet-dim D] [--unet-mults a,b,...] [--unet-heads H]\n"
            "       [--unet-head-dim E] [--unet-convnext-mult M]\n",
            argv0);
    exit(2);
}

/* A whole-string integer in [lo, hi], or usage(). */
static long parse_int(const char *s, long lo, long hi, const char *argv0)
{
    char *end = NULL;
    const long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) usage(argv0);
    return v;
}

int main(int argc, char **argv)
{
    options o = {.threads = 2,
                 .reps = 5,
                 .warmup = 2,
                 .batch = 128,
                 .cnn = true,
                 .unet = true,
                 .fwd = true,
                 .train = true,
                 .sample = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(a, "--threads") && has) {
            o.threads = (int)parse_int(argv[++i], 1, CD_MAX_THREADS, argv[0]);
        } else if (!strcmp(a, "--reps") && has) {
            o.reps = (int)parse_int(argv[++i], 1, MAX_REPS, argv[0]);
        } else if (!strcmp(a, "--warmup") && has) {
            o.warmup = (int)parse_int(argv[++i], 0, MAX_REPS, argv[0]);
        } else if (!strcmp(a, "--batch") && has) {
            o.batch = parse_int(argv[++i], 1, 1L << 20, argv[0]);
        } else if (!strcmp(a, "--model") && has) {
            const char *m = argv[++i];
            o.cnn = !strcmp(m, "cnn") || !strcmp(m, "both");
            o.unet = !strcmp(m, "unet") || !strcmp(m, "both");
            if (!o.cnn && !o.unet) usage(argv[0]);
        } else if (!strcmp(a, "--workload") && has) {
            const char *w = argv[++i];
            const bool all = !strcmp(w, "all");
            o.fwd = all || !strcmp(w, "fwd");
            o.train = all || !strcmp(w, "train");
            o.sample = all || !strcmp(w, "sample");
            if (!o.fwd && !o.train && !o.sample) usage(argv[0]);
        } else if (!strcmp(a, "--unet-dim") && has) {
            o.unet_dim = parse_int(argv[++i], 2, 4096, argv[0]);
        } else if (!strcmp(a, "--unet-heads") && has) {
            o.unet_heads = parse_int(argv[++i], 1, 64, argv[0]);
        } else if (!strcmp(a, "--unet-head-dim") && has) {
            o.unet_head_dim = parse_int(argv[++i], 1, 1024, argv[0]);
        } else if (!strcmp(a, "--unet-convnext-mult") && has) {
            o.unet_cnx = parse_int(argv[++i], 1, 16, argv[0]);
        } else if (!strcmp(a, "--unet-mults") && has) {
            char *list = argv[++i], *save = NULL;
            o.n_mults = 0;
            for (char *t = strtok_r(list, ",", &save); t && o.n_mults < 8;
                 t = strtok_r(NULL, ",", &save))
                o.mults[o.n_mults++] = parse_int(t, 1, 64, argv[0]);
        } else if (!strcmp(a, "--direct")) {
            cd__cpu_force_portable(CD__KERNELS_SPECTRAL, true);
        } else if (!strcmp(a, "--no-winograd")) {
            cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
        } else if (!strcmp(a, "--no-pointwise")) {
            cd__cpu_force_portable(CD__KERNELS_POINTWISE, true);
        } else if (!strcmp(a, "--blas-attention")) {
            cd__cpu_force_portable(CD__KERNELS_GEMM, true);
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else {
            usage(argv[0]);
        }
    }
    check(cd_set_num_threads(o.threads), "threads");
    if (!o.json) {
        const char *core = getenv("OPENBLAS_CORETYPE");
        printf("bench_decoder: libcolddiff %s, %d thread(s), %d warm-up + %d timed "
               "runs, OPENBLAS_CORETYPE=%s\n",
               cd_version_string(), (int)cd_get_num_threads(), o.warmup, o.reps,
               core ? core : "(unset)");
    }
    cd_rng *rng = NULL;
    check(cd_rng_create(&rng, 20240601u), "rng");
    if (o.cnn) bench_model(&o, CD_DECODER_CNN, rng);
    if (o.unet) bench_model(&o, CD_DECODER_UNET, rng);
    cd_rng_free(rng);
    return 0;
}
