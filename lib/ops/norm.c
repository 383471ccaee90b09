/*
 * norm.c - layer norm over the trailing D elements of each sample.
 *
 * Statistics are accumulated in double with two passes (mean, then the
 * centred sum of squares): over D = 128*28*28 elements a float sum would
 * drift by more than PyTorch's float tolerance. Samples are independent
 * tasks and the parameter gradients are split over fixed ranges of D, each
 * summed over n in order, so results do not depend on the thread count.
 */
#include "ops.h"

#include <math.h>

/* Elements of D per task for the parameter gradients. */
#define CHUNK 16384

typedef struct {
    float *out, *dx, *dweight, *dbias;
    float *mean_out, *rstd_out;
    const float *x, *weight, *bias, *dout, *mean, *rstd;
    int64_t N, D;
    float eps;
} ln_ctx;

static void ln_fwd_task(void *ctx, int64_t n)
{
    const ln_ctx *c = ctx;
    const float *x = c->x + n * c->D;
    float *o = c->out + n * c->D;
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < c->D; i++) s += x[i];
    const double mu = s / (double)c->D;
    for (int64_t i = 0; i < c->D; i++) ss += (x[i] - mu) * (x[i] - mu);
    const float m = (float)mu;
    const float r = (float)(1.0 / sqrt(ss / (double)c->D + (double)c->eps));
    c->mean_out[n] = m;
    c->rstd_out[n] = r;
    if (c->weight) {
        for (int64_t i = 0; i < c->D; i++)
            o[i] = (x[i] - m) * r * c->weight[i] + c->bias[i];
    } else {
        for (int64_t i = 0; i < c->D; i++) o[i] = (x[i] - m) * r;
    }
}

void cd__layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t N,
                           int64_t D, float eps)
{
    ln_ctx c = {.out = out, .mean_out = mean, .rstd_out = rstd, .x = x,
                .weight = weight, .bias = bias, .N = N, .D = D, .eps = eps};
    cd__parallel_for(N, ln_fwd_task, &c);
}

/* dx += rstd (g - mean(g) - xhat mean(g xhat)), with g = dout * weight. */
static void ln_dx_task(void *ctx, int64_t n)
{
    const ln_ctx *c = ctx;
    const float *x = c->x + n * c->D, *go = c->dout + n * c->D;
    float *dx = c->dx + n * c->D;
    const float m = c->mean[n], r = c->rstd[n];
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < c->D; i++) {
        float g = c->weight ? go[i] * c->weight[i] : go[i];
        sg += g;
        sgx += (double)g * ((x[i] - m) * r);
    }
    const float mg = (float)(sg / (double)c->D), mgx = (float)(sgx / (double)c->D);
    for (int64_t i = 0; i < c->D; i++) {
        float g = c->weight ? go[i] * c->weight[i] : go[i];
        float xhat = (x[i] - m) * r;
        dx[i] += r * (g - mg - xhat * mgx);
    }
}

static void ln_param_task(void *ctx, int64_t t)
{
    const ln_ctx *c = ctx;
    const int64_t end = (t + 1) * CHUNK < c->D ? (t + 1) * CHUNK : c->D;
    for (int64_t i = t * CHUNK; i < end; i++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t n = 0; n < c->N; n++) {
            const float g = c->dout[n * c->D + i];
            sw += (double)g * ((c->x[n * c->D + i] - c->mean[n]) * c->rstd[n]);
            sb += g;
        }
        if (c->dweight) c->dweight[i] += (float)sw;
        if (c->dbias) c->dbias[i] += (float)sb;
    }
}

void cd__layernorm_backward(float *dx, float *dweight, float *dbias,
                            const float *dout, const float *x, const float *weight,
                            const float *mean, const float *rstd, int64_t N,
                            int64_t D)
{
    ln_ctx c = {.dx = dx, .dweight = dweight, .dbias = dbias, .x = x,
                .weight = weight, .dout = dout, .mean = mean, .rstd = rstd,
                .N = N, .D = D};
    if (dx) cd__parallel_for(N, ln_dx_task, &c);
    if (dweight || dbias) cd__parallel_for((D + CHUNK - 1) / CHUNK, ln_param_task, &c);
}
