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
#include "vmath.h"

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

#ifdef CD__VMATH_X86
/* Returns the mean; *ss gets the centred sum of squares. */
/* Four pairs of double accumulators, so that the adds' latency does not
 * bound the loops: 64 floats per iteration, then one pair for the tail. */
CD__AVX512 static double ln_stats_avx512(const float *x, int64_t D, double *ss)
{
    __m512d s[8];
    for (int k = 0; k < 8; k++) s[k] = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 64 <= D; i += 64)
        for (int k = 0; k < 4; k++)
            cd__v_sum_pd(&s[2 * k], &s[2 * k + 1], _mm512_loadu_ps(x + i + 16 * k));
    for (; i < D; i += 16)
        cd__v_sum_pd(&s[0], &s[1], _mm512_maskz_loadu_ps(cd__v_mask(D - i), x + i));
    const double mu =
        cd__v_total_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[2]), _mm512_add_pd(s[4], s[6])),
                       _mm512_add_pd(_mm512_add_pd(s[1], s[3]), _mm512_add_pd(s[5], s[7]))) /
        (double)D;
    const __m512d vmu = _mm512_set1_pd(mu);
    for (int k = 0; k < 8; k++) s[k] = _mm512_setzero_pd();
    for (i = 0; i + 64 <= D; i += 64)
        for (int k = 0; k < 4; k++) {
            const __m512 v = _mm512_loadu_ps(x + i + 16 * k);
            const __m512d d0 = _mm512_sub_pd(cd__v_lo_pd(v), vmu),
                          d1 = _mm512_sub_pd(cd__v_hi_pd(v), vmu);
            s[2 * k] = _mm512_fmadd_pd(d0, d0, s[2 * k]);
            s[2 * k + 1] = _mm512_fmadd_pd(d1, d1, s[2 * k + 1]);
        }
    for (; i < D; i += 16) {
        const __mmask16 m = cd__v_mask(D - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512d d0 = _mm512_maskz_sub_pd((__mmask8)m, cd__v_lo_pd(v), vmu);
        const __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(m >> 8), cd__v_hi_pd(v), vmu);
        s[0] = _mm512_fmadd_pd(d0, d0, s[0]);
        s[1] = _mm512_fmadd_pd(d1, d1, s[1]);
    }
    *ss = cd__v_total_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[2]), _mm512_add_pd(s[4], s[6])),
                         _mm512_add_pd(_mm512_add_pd(s[1], s[3]), _mm512_add_pd(s[5], s[7])));
    return mu;
}

/* o = (x - m) r, times weight plus bias when weight is not NULL: the
 * scalar loop's operations in its order. */
CD__AVX512 static void ln_out_avx512(float *o, const float *x, const float *weight,
                                     const float *bias, int64_t D, float mf, float rf)
{
    const __m512 vm = CD__V1(mf), vr = CD__V1(rf);
    for (int64_t i = 0; i < D; i += 16) {
        const __mmask16 m = cd__v_mask(D - i);
        __m512 y = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        if (weight)
            y = _mm512_add_ps(_mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, weight + i)),
                              _mm512_maskz_loadu_ps(m, bias + i));
        _mm512_mask_storeu_ps(o + i, m, y);
    }
}

/* The two passes of ln_dx_task. */
CD__AVX512 static void ln_dx_avx512(float *dx, const float *go, const float *x, const float *weight,
                                    int64_t D, float mf, float rf)
{
    const __m512 vm = CD__V1(mf), vr = CD__V1(rf);
    __m512d sg0 = _mm512_setzero_pd(), sg1 = sg0, sx0 = sg0, sx1 = sg0;
    for (int64_t i = 0; i < D; i += 16) {
        const __mmask16 m = cd__v_mask(D - i);
        __m512 g = _mm512_maskz_loadu_ps(m, go + i);
        if (weight) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, weight + i));
        const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        cd__v_sum_pd(&sg0, &sg1, g);
        sx0 = _mm512_fmadd_pd(cd__v_lo_pd(g), cd__v_lo_pd(xh), sx0);
        sx1 = _mm512_fmadd_pd(cd__v_hi_pd(g), cd__v_hi_pd(xh), sx1);
    }
    const __m512 mg = CD__V1((float)(cd__v_total_pd(sg0, sg1) / (double)D));
    const __m512 mgx = CD__V1((float)(cd__v_total_pd(sx0, sx1) / (double)D));
    for (int64_t i = 0; i < D; i += 16) {
        const __mmask16 m = cd__v_mask(D - i);
        __m512 g = _mm512_maskz_loadu_ps(m, go + i);
        if (weight) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, weight + i));
        const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        const __m512 d = _mm512_sub_ps(_mm512_sub_ps(g, mg), _mm512_mul_ps(xh, mgx));
        _mm512_mask_storeu_ps(dx + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i),
                                            _mm512_mul_ps(vr, d)));
    }
}
#endif

void cd__ln_stats(const float *x, int64_t D, float eps, float *mean, float *rstd)
{
    double s = 0.0, ss = 0.0, mu;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        mu = ln_stats_avx512(x, D, &ss);
    } else
#endif
    {
        for (int64_t i = 0; i < D; i++) s += x[i];
        mu = s / (double)D;
        for (int64_t i = 0; i < D; i++) ss += (x[i] - mu) * (x[i] - mu);
    }
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
}

static void ln_fwd_task(void *ctx, int64_t n)
{
    const ln_ctx *c = ctx;
    const float *x = c->x + n * c->D;
    float *o = c->out + n * c->D;
    float m, r;
    cd__ln_stats(x, c->D, c->eps, &m, &r);
    c->mean_out[n] = m;
    c->rstd_out[n] = r;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        ln_out_avx512(o, x, c->weight, c->bias, c->D, m, r);
        return;
    }
#endif
    if (c->weight) {
        for (int64_t i = 0; i < c->D; i++) o[i] = (x[i] - m) * r * c->weight[i] + c->bias[i];
    } else {
        for (int64_t i = 0; i < c->D; i++) o[i] = (x[i] - m) * r;
    }
}

void cd__layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t N, int64_t D, float eps)
{
    ln_ctx c = {.out = out,
                .mean_out = mean,
                .rstd_out = rstd,
                .x = x,
                .weight = weight,
                .bias = bias,
                .N = N,
                .D = D,
                .eps = eps};
    cd__parallel_for(N, ln_fwd_task, &c);
}

/* dx += rstd (g - mean(g) - xhat mean(g xhat)), with g = dout * weight. */
static void ln_dx_task(void *ctx, int64_t n)
{
    const ln_ctx *c = ctx;
    const float *x = c->x + n * c->D, *go = c->dout + n * c->D;
    float *dx = c->dx + n * c->D;
    const float m = c->mean[n], r = c->rstd[n];
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        ln_dx_avx512(dx, go, x, c->weight, c->D, m, r);
        return;
    }
#endif
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

void cd__layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout,
                            const float *x, const float *weight, const float *mean,
                            const float *rstd, int64_t N, int64_t D)
{
    ln_ctx c = {.dx = dx,
                .dweight = dweight,
                .dbias = dbias,
                .x = x,
                .weight = weight,
                .dout = dout,
                .mean = mean,
                .rstd = rstd,
                .N = N,
                .D = D};
    if (dx) cd__parallel_for(N, ln_dx_task, &c);
    if (dweight || dbias) cd__parallel_for((D + CHUNK - 1) / CHUNK, ln_param_task, &c);
}
