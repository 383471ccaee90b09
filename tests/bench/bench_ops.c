/*
 * bench_ops.c - throughput of the convolution kernels at the decoders'
 * shapes (batch 128), next to cblas_sgemm measured in the same run.
 *
 *   bench_ops [--threads N] [--quick] [--no-portable] [--direct] [--only TEXT]
 *             [--reps K]
 *
 * Each line times forward and backward (input and weight gradients, plus
 * the bias) as the best of k runs after a warm-up, and reports GFLOP/s
 * counting 2 per multiply-add; backward counts twice the forward's
 * multiply-adds. "portable" repeats the measurement on the path a CPU
 * without AVX-512 takes (im2col + single-threaded sgemm per tile, or the
 * portable depthwise kernel). --direct keeps the spectral path out, so the
 * CNN's 7x7 layers run on the direct kernels; on the spectral path GFLOP/s
 * are the direct sums' multiply-adds per second (an effective rate). Not a
 * test: the numbers go to docs/performance.md.
 *
 *   bench_ops --winograd [--threads N] [--reps K] [--rounds R] [--only TEXT]
 *
 * times the Winograd F(4x4, 3x3) forward and weight gradient against the
 * dense ones on the UNet's 3x3 layers instead. On a shared machine the load
 * changes from second to second, so the two alternate: R rounds of k runs
 * each, the order swapped every round, best of all runs per method.
 *
 *   bench_ops --pointwise [--threads N] [--reps K] [--rounds R] [--only TEXT]
 *
 * does the same for the 1x1 layers (conv2d_pointwise.c against the dense
 * path), forward and backward (both gradients, as training runs them).
 */
#include <cblas.h>
#undef I
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "ops/conv2d_internal.h"
#include "ops/ops.h"

#define BENCH_NAME "bench_ops"
#include "bench_util.h"

#if defined(CD_BLAS_OPENBLAS)
void openblas_set_num_threads(int num_threads);
#endif

static float *buf(int64_t n)
{
    float *p = cd__calloc((size_t)(n > 0 ? n : 1), sizeof(float), "bench buffer");
    if (!p) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    return p;
}

static void fill(float *x, int64_t n, uint32_t seed, float scale)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
}

typedef void (*run_fn)(void *ctx);

/* Best wall time of reps runs of fn after one warm-up. */
static double best_time(run_fn fn, void *ctx, int reps)
{
    fn(ctx);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        fn(ctx);
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* ---- sgemm reference ------------------------------------------------------- */

typedef struct {
    int M, N, K;
    float *A, *B, *C;
} gemm_ctx;

static void run_gemm(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->M, g->N, g->K, 1.0f, g->A, g->K, g->B,
                g->N, 0.0f, g->C, g->N);
}

static double bench_gemm(int M, int N, int K, int reps)
{
    gemm_ctx g = {M, N, K, buf((int64_t)M * K), buf((int64_t)K * N), buf((int64_t)M * N)};
    fill(g.A, (int64_t)M * K, 1, 1.0f);
    fill(g.B, (int64_t)K * N, 2, 1.0f);
    const double t = best_time(run_gemm, &g, reps);
    cd__free(g.A), cd__free(g.B), cd__free(g.C);
    return 2.0 * M * (double)N * K / t / 1e9;
}

/* ---- convolutions ---------------------------------------------------------- */

typedef struct {
    const char *name;
    bool transposed;
    int64_t C_in, H, W, C_out, k, stride, pad, groups;
} conv_case;

typedef struct {
    bool transposed;
    cd__conv2d c;
    cd__convt2d t;
    float *in, *w, *b, *out, *dout, *din, *dw, *db, *ws;
} conv_ctx;

static void run_fwd(void *p)
{
    conv_ctx *x = p;
    if (x->transposed)
        cd__convt2d_forward(&x->t, x->out, x->in, x->w, x->b, x->ws);
    else
        cd__conv2d_forward(&x->c, x->out, x->in, x->w, x->b, x->ws);
}

static void run_bwd(void *p)
{
    conv_ctx *x = p;
    if (x->transposed)
        cd__convt2d_backward(&x->t, x->din, x->dw, x->db, x->dout, x->in, x->w, x->ws);
    else
        cd__conv2d_backward(&x->c, x->din, x->dw, x->db, x->dout, x->in, x->w, x->ws);
}

/* Forward and backward GFLOP/s of one case on the current path. */
static void bench_conv(const conv_case *cc, int64_t N, int reps, double *fwd, double *bwd,
                       double *ms_fwd, double *ms_bwd)
{
    conv_ctx x = {.transposed = cc->transposed};
    int64_t n_in, n_out, n_w;
    double macs;
    if (cc->transposed) {
        if (cd__convt2d_init(&x.t, N, cc->C_in, cc->H, cc->W, cc->C_out, cc->k, cc->k, cc->stride,
                             cc->pad, true) != CD_OK) {
            fprintf(stderr, "bench_ops: %s: %s\n", cc->name, cd_last_error());
            exit(1);
        }
        n_in = N * cc->C_in * cc->H * cc->W;
        n_out = N * cc->C_out * x.t.H_out * x.t.W_out;
        n_w = cc->C_in * cc->C_out * cc->k * cc->k;
        macs = (double)n_in * (double)(cc->C_out * cc->k * cc->k);
        x.ws = buf((int64_t)cd__convt2d_workspace(&x.t));
    } else {
        if (cd__conv2d_init(&x.c, N, cc->C_in, cc->H, cc->W, cc->C_out, cc->k, cc->k, cc->stride,
                            cc->pad, cc->groups, true) != CD_OK) {
            fprintf(stderr, "bench_ops: %s: %s\n", cc->name, cd_last_error());
            exit(1);
        }
        n_in = N * cc->C_in * cc->H * cc->W;
        n_out = N * cc->C_out * x.c.H_out * x.c.W_out;
        n_w = cc->C_out * (cc->C_in / cc->groups) * cc->k * cc->k;
        macs = (double)n_out * (double)((cc->C_in / cc->groups) * cc->k * cc->k);
        x.ws = buf((int64_t)cd__conv2d_workspace(&x.c));
    }
    x.in = buf(n_in), x.din = buf(n_in);
    x.out = buf(n_out), x.dout = buf(n_out);
    x.w = buf(n_w), x.dw = buf(n_w);
    x.b = buf(cc->C_out), x.db = buf(cc->C_out);
    fill(x.in, n_in, 3, 2.0f);
    fill(x.dout, n_out, 4, 2.0f);
    fill(x.w, n_w, 5, 0.1f);
    fill(x.b, cc->C_out, 6, 0.1f);
    const double tf = best_time(run_fwd, &x, reps), tb = best_time(run_bwd, &x, reps);
    *fwd = 2.0 * macs / tf / 1e9;
    *bwd = 4.0 * macs / tb / 1e9;
    *ms_fwd = 1e3 * tf;
    *ms_bwd = 1e3 * tb;
    cd__free(x.in), cd__free(x.din), cd__free(x.out), cd__free(x.dout);
    cd__free(x.w), cd__free(x.dw), cd__free(x.b), cd__free(x.db), cd__free(x.ws);
}

static const conv_case cases[] = {
    {"CNN 7x7 1->16 28x28", false, 1, 28, 28, 16, 7, 1, 3, 1},
    {"CNN 7x7 16->32 28x28", false, 16, 28, 28, 32, 7, 1, 3, 1},
    {"CNN 7x7 32->32 28x28", false, 32, 28, 28, 32, 7, 1, 3, 1},
    {"CNN 7x7 32->16 28x28", false, 32, 28, 28, 16, 7, 1, 3, 1},
    {"CNN 3x3 16->1 28x28", false, 16, 28, 28, 1, 3, 1, 1, 1},
    {"UNet 3x3 32->64 28x28", false, 32, 28, 28, 64, 3, 1, 1, 1},
    {"UNet 3x3 64->32 28x28", false, 64, 28, 28, 32, 3, 1, 1, 1},
    {"UNet 3x3 64->128 14x14", false, 64, 14, 14, 128, 3, 1, 1, 1},
    {"UNet 3x3 128->256 7x7", false, 128, 7, 7, 256, 3, 1, 1, 1},
    {"UNet dw 7x7 32 28x28", false, 32, 28, 28, 32, 7, 1, 3, 32},
    {"UNet dw 7x7 64 14x14", false, 64, 14, 14, 64, 7, 1, 3, 64},
    {"UNet dw 7x7 128 7x7", false, 128, 7, 7, 128, 7, 1, 3, 128},
    {"UNet 1x1 32->384 28x28", false, 32, 28, 28, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->32 28x28", false, 128, 28, 28, 32, 1, 1, 0, 1},
    {"UNet 1x1 64->32 14x14", false, 64, 14, 14, 32, 1, 1, 0, 1},
    {"UNet 1x1 64->384 14x14", false, 64, 14, 14, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->64 14x14", false, 128, 14, 14, 64, 1, 1, 0, 1},
    {"UNet 1x1 128->384 7x7", false, 128, 7, 7, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->128 7x7", false, 128, 7, 7, 128, 1, 1, 0, 1},
    {"UNet down 4x4s2 32 28->14", false, 32, 28, 28, 32, 4, 2, 1, 1},
    {"UNet down 4x4s2 64 14->7", false, 64, 14, 14, 64, 4, 2, 1, 1},
    {"UNet up T4x4s2 64 7->14", true, 64, 7, 7, 64, 4, 2, 1, 1},
    {"UNet up T4x4s2 32 14->28", true, 32, 14, 14, 32, 4, 2, 1, 1},
};

/* ---- Winograd against dense ------------------------------------------------ */

#ifdef CD__CONV_X86
typedef struct {
    cd__conv2d c;
    float *in, *w, *b, *out, *dw, *ws;
    bool grad; /* time the weight gradient, not the forward */
} wino_ctx;

/* The library's default path takes these shapes to Winograd: hold it off. */
static void run_dense(void *p)
{
    wino_ctx *x = p;
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
    if (x->grad)
        cd__conv2d_backward(&x->c, NULL, x->dw, NULL, x->out, x->in, x->w, x->ws);
    else
        cd__conv2d_forward(&x->c, x->out, x->in, x->w, x->b, x->ws);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
}

static void run_wino(void *p)
{
    wino_ctx *x = p;
    if (x->grad)
        cd__conv2d_winograd_grad(&x->c, x->dw, x->out, x->in, x->ws);
    else
        cd__conv2d_winograd_forward(&x->c, x->out, x->in, x->w, x->b, x->ws, NULL, NULL);
}

static const conv_case wino_cases[] = {
    {"UNet 3x3 32->64 28x28", false, 32, 28, 28, 64, 3, 1, 1, 1},
    {"UNet 3x3 64->32 28x28", false, 64, 28, 28, 32, 3, 1, 1, 1},
    {"UNet 3x3 64->128 14x14", false, 64, 14, 14, 128, 3, 1, 1, 1},
    {"UNet 3x3 128->64 14x14", false, 128, 14, 14, 64, 3, 1, 1, 1},
    {"UNet 3x3 128->256 7x7", false, 128, 7, 7, 256, 3, 1, 1, 1},
    {"UNet 3x3 256->128 7x7", false, 256, 7, 7, 128, 3, 1, 1, 1},
    /* Few channels, where the transforms weigh most. */
    {"3x3 16->16 28x28", false, 16, 28, 28, 16, 3, 1, 1, 1},
    {"3x3 16->16 7x7", false, 16, 7, 7, 16, 3, 1, 1, 1},
    {"3x3 8->16 28x28", false, 8, 28, 28, 16, 3, 1, 1, 1},
    {"CNN 3x3 16->1 28x28", false, 16, 28, 28, 1, 3, 1, 1, 1},
};

static void bench_winograd(int64_t N, int reps, int rounds, const char *only, bool grad)
{
    printf("%-26s %9s %9s %7s %9s %9s %8s %8s\n",
           grad ? "case (weight gradient)" : "case (forward)", "dense ms", "wino ms", "ratio",
           "dense GF", "wino GF", "dense MB", "wino MB");
    for (size_t i = 0; i < sizeof wino_cases / sizeof wino_cases[0]; i++) {
        const conv_case *cc = &wino_cases[i];
        if (only && !strstr(cc->name, only)) continue;
        wino_ctx x;
        if (cd__conv2d_init(&x.c, N, cc->C_in, cc->H, cc->W, cc->C_out, 3, 3, 1, 1, 1, true) !=
            CD_OK) {
            fprintf(stderr, "bench_ops: %s: %s\n", cc->name, cd_last_error());
            exit(1);
        }
        x.grad = grad;
        const int64_t n_in = N * cc->C_in * cc->H * cc->W, n_out = N * cc->C_out * cc->H * cc->W;
        const int64_t n_w = cc->C_out * cc->C_in * 9;
        cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
        const size_t wd = cd__conv2d_workspace(&x.c);
        cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
        const size_t ww =
            grad ? cd__conv2d_winograd_grad_workspace(&x.c) : cd__conv2d_winograd_workspace(&x.c);
        x.in = buf(n_in), x.out = buf(n_out), x.w = buf(n_w), x.b = buf(cc->C_out);
        x.dw = buf(n_w);
        x.ws = buf((int64_t)(wd > ww ? wd : ww));
        fill(x.in, n_in, 3, 2.0f);
        fill(x.out, n_out, 4, 1.0f); /* the output gradient, for grad */
        fill(x.w, n_w, 5, 0.1f);
        fill(x.b, cc->C_out, 6, 0.1f);
        fill(x.dw, n_w, 7, 0.1f);
        double td = 1e30, tw = 1e30;
        for (int r = 0; r < rounds; r++) {
            const double a = r % 2 ? best_time(run_wino, &x, reps) : 0.0;
            const double d = best_time(run_dense, &x, reps);
            const double b = r % 2 ? a : best_time(run_wino, &x, reps);
            if (d < td) td = d;
            if (b < tw) tw = b;
        }
        const double flop = 2.0 * (double)n_out * (double)(cc->C_in * 9);
        printf("%-26s %9.2f %9.2f %7.2f %9.1f %9.1f %8.1f %8.1f\n", cc->name, 1e3 * td, 1e3 * tw,
               td / tw, flop / td / 1e9, flop / tw / 1e9, (double)wd * 4 / 1e6,
               (double)ww * 4 / 1e6);
        fflush(stdout);
        cd__free(x.in), cd__free(x.out), cd__free(x.w), cd__free(x.b), cd__free(x.dw);
        cd__free(x.ws);
    }
}

/* ---- pointwise against dense ------------------------------------------------ */

typedef struct {
    cd__conv2d c;
    float *in, *w, *b, *out, *dout, *din, *dw, *db, *ws;
    bool bwd;
} pw_ctx;

static void pw_call(pw_ctx *x)
{
    if (x->bwd)
        cd__conv2d_backward(&x->c, x->din, x->dw, x->db, x->dout, x->in, x->w, x->ws);
    else
        cd__conv2d_forward(&x->c, x->out, x->in, x->w, x->b, x->ws);
}

static void run_pw_dense(void *p)
{
    cd__cpu_force_portable(CD__KERNELS_POINTWISE, true);
    pw_call(p);
    cd__cpu_force_portable(CD__KERNELS_POINTWISE, false);
}

static void run_pw(void *p) { pw_call(p); }

static const conv_case pw_cases[] = {
    {"UNet 1x1 32->384 28x28", false, 32, 28, 28, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->32 28x28", false, 128, 28, 28, 32, 1, 1, 0, 1},
    {"UNet 1x1 64->384 14x14", false, 64, 14, 14, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->64 14x14", false, 128, 14, 14, 64, 1, 1, 0, 1},
    {"UNet 1x1 64->32 14x14", false, 64, 14, 14, 32, 1, 1, 0, 1},
    {"UNet 1x1 128->384 7x7", false, 128, 7, 7, 384, 1, 1, 0, 1},
    {"UNet 1x1 128->128 7x7", false, 128, 7, 7, 128, 1, 1, 0, 1},
    /* Few channels: where the path stops paying. */
    {"1x1 32->1 28x28", false, 32, 28, 28, 1, 1, 1, 0, 1},
    {"1x1 32->3 28x28", false, 32, 28, 28, 3, 1, 1, 0, 1},
    {"1x1 3->32 28x28", false, 3, 28, 28, 32, 1, 1, 0, 1},
    {"1x1 4->4 28x28", false, 4, 28, 28, 4, 1, 1, 0, 1},
    {"1x1 8->8 28x28", false, 8, 28, 28, 8, 1, 1, 0, 1},
    {"1x1 8->8 7x7", false, 8, 7, 7, 8, 1, 1, 0, 1},
    {"1x1 16->16 14x14", false, 16, 14, 14, 16, 1, 1, 0, 1},
};

static void bench_pointwise(int64_t N, int reps, int rounds, const char *only, bool bwd)
{
    printf("%-26s %9s %9s %7s %9s %9s %8s %8s\n", bwd ? "case (backward)" : "case (forward)",
           "dense ms", "pw ms", "ratio", "dense GF", "pw GF", "dense MB", "pw MB");
    for (size_t i = 0; i < sizeof pw_cases / sizeof pw_cases[0]; i++) {
        const conv_case *cc = &pw_cases[i];
        if (only && !strstr(cc->name, only)) continue;
        pw_ctx x = {.bwd = bwd};
        if (cd__conv2d_init(&x.c, N, cc->C_in, cc->H, cc->W, cc->C_out, 1, 1, 1, 0, 1, true) !=
            CD_OK) {
            fprintf(stderr, "bench_ops: %s: %s\n", cc->name, cd_last_error());
            exit(1);
        }
        const int64_t n_in = N * cc->C_in * cc->H * cc->W, n_out = N * cc->C_out * cc->H * cc->W;
        const int64_t n_w = cc->C_out * cc->C_in;
        cd__cpu_force_portable(CD__KERNELS_POINTWISE, true);
        const size_t wd = cd__conv2d_workspace(&x.c);
        cd__cpu_force_portable(CD__KERNELS_POINTWISE, false);
        const size_t wp = cd__conv2d_workspace(&x.c);
        x.in = buf(n_in), x.din = buf(n_in), x.out = buf(n_out), x.dout = buf(n_out);
        x.w = buf(n_w), x.dw = buf(n_w), x.b = buf(cc->C_out), x.db = buf(cc->C_out);
        x.ws = buf((int64_t)(wd > wp ? wd : wp));
        fill(x.in, n_in, 3, 2.0f);
        fill(x.dout, n_out, 4, 1.0f);
        fill(x.w, n_w, 5, 0.1f);
        fill(x.b, cc->C_out, 6, 0.1f);
        double td = 1e30, tp = 1e30;
        for (int r = 0; r < rounds; r++) {
            const double a = r % 2 ? best_time(run_pw, &x, reps) : 0.0;
            const double d = best_time(run_pw_dense, &x, reps);
            const double b = r % 2 ? a : best_time(run_pw, &x, reps);
            if (d < td) td = d;
            if (b < tp) tp = b;
        }
        const double flop = (bwd ? 4.0 : 2.0) * (double)n_out * (double)cc->C_in;
        printf("%-26s %9.2f %9.2f %7.2f %9.1f %9.1f %8.1f %8.1f\n", cc->name, 1e3 * td, 1e3 * tp,
               td / tp, flop / td / 1e9, flop / tp / 1e9, (double)wd * 4 / 1e6,
               (double)wp * 4 / 1e6);
        fflush(stdout);
        cd__free(x.in), cd__free(x.din), cd__free(x.out), cd__free(x.dout);
        cd__free(x.w), cd__free(x.dw), cd__free(x.b), cd__free(x.db), cd__free(x.ws);
    }
}
#endif

int main(int argc, char **argv)
{
    int threads = 2;
    bool quick = false, portable = true;
    const char *only = NULL;
    int reps = 5, rounds = 6;
    bool winograd = false, pointwise = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--no-portable"))
            portable = false;
        else if (!strcmp(argv[i], "--direct"))
            cd__cpu_force_portable(CD__KERNELS_SPECTRAL, true);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--winograd"))
            winograd = true;
        else if (!strcmp(argv[i], "--pointwise"))
            pointwise = true;
        else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--quick] [--no-portable] [--direct] "
                    "[--only TEXT] [--reps K]\n"
                    "       %s --winograd|--pointwise [--threads N] [--reps K] [--rounds R] "
                    "[--only TEXT]\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if (cd_set_num_threads(threads) != CD_OK) {
        fprintf(stderr, "bench_ops: %s\n", cd_last_error());
        return 2;
    }
    if (quick) reps = 2;
    if (reps < 1) reps = 1;
    const int64_t N = 128;
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("bench_ops: batch %lld, %d thread(s), best of %d, OPENBLAS_CORETYPE=%s\n", (long long)N,
           threads, reps, core ? core : "(unset)");
    if (winograd || pointwise) {
#ifdef CD__CONV_X86
        if (!cd__cpu_use_avx512(CD__KERNELS_CONV)) {
            fprintf(stderr, "bench_ops: --%s needs AVX-512\n", winograd ? "winograd" : "pointwise");
            return 2;
        }
        if (rounds < 1) rounds = 1;
        void (*bench)(int64_t, int, int, const char *, bool) =
            winograd ? bench_winograd : bench_pointwise;
        bench(N, reps, rounds, only, false);
        printf("\n");
        bench(N, reps, rounds, only, true);
        return 0;
#else
        fprintf(stderr, "bench_ops: --%s needs an x86-64 build\n",
                winograd ? "winograd" : "pointwise");
        return 2;
#endif
    }

    /* sgemm on OpenBLAS's own threads (the library pins it to one thread,
     * so set it here and pin it again afterwards). Skipped with --only. */
    if (!only) {
#if defined(CD_BLAS_OPENBLAS)
        openblas_set_num_threads(threads);
#endif
        const double g1 = bench_gemm(32, quick ? 25088 : 100352, 800, quick ? 2 : 5);
        const double g2 = bench_gemm(1024, 1024, 1024, quick ? 2 : 5);
#if defined(CD_BLAS_OPENBLAS)
        openblas_set_num_threads(1);
#endif
        const double g3 = bench_gemm(32, 784, 800, quick ? 40 : 100);
        cd_set_num_threads(threads);
        printf("sgemm M=32 K=800 N=%d (%d threads)  %7.1f GFLOP/s\n", quick ? 25088 : 100352,
               threads, g1);
        printf("sgemm 1024^3           (%d threads)  %7.1f GFLOP/s\n", threads, g2);
        printf("sgemm M=32 K=800 N=784 (1 thread)   %7.1f GFLOP/s\n\n", g3);
    }

    printf("%-28s %9s %9s %8s %8s", "case", "fwd GF/s", "bwd GF/s", "fwd ms", "bwd ms");
    if (portable && !quick) printf("  %9s %9s", "port fwd", "port bwd");
    printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double f, b, mf, mb;
        if (only && !strstr(cases[i].name, only)) continue;
        cd__cpu_force_portable(CD__KERNELS_CONV, false);
        bench_conv(&cases[i], N, reps, &f, &b, &mf, &mb);
        printf("%-28s %9.1f %9.1f %8.2f %8.2f", cases[i].name, f, b, mf, mb);
        if (portable && !quick) {
            cd__cpu_force_portable(CD__KERNELS_CONV, true);
            bench_conv(&cases[i], N, reps, &f, &b, &mf, &mb);
            cd__cpu_force_portable(CD__KERNELS_CONV, false);
            printf("  %9.1f %9.1f", f, b);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
