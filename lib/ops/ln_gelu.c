/*
 * ln_gelu.c - the CNN block's LayerNorm, GELU and time-embedding add, fused
 * (see ops.h), in one task per sample: a sample's C x H x W floats (100 KB
 * for 32 x 28 x 28) stay in L2 across the statistics and output passes,
 * where the separate ops streamed the batch through memory five times.
 * Same arithmetic as the separate ops: statistics in double, two passes.
 * y = LN(x) is not stored: backward recomputes it with the same operations
 * (the same bits) from x, which it reads anyway, saving a write and a read
 * of every activation.
 */
#include "ops.h"
#include "vmath.h"

#include <math.h>
#include <string.h>

/* Elements of D per task for the fused parameter gradients; the double
 * accumulators (2 x 8 KB) stay in L1. */
#define PCHUNK 1024

typedef struct {
    float *out, *dx, *dweight, *dbias, *dv, *dout, *mean_out, *rstd_out;
    const float *x, *weight, *bias, *v, *mean, *rstd;
    int64_t N, C, HW;
    float eps;
} lg_ctx;

#ifdef CD__VMATH_X86
CD__AVX512 static void lg_fwd_avx512(const lg_ctx *c, int64_t n)
{
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D;
    float mf, rf;
    cd__ln_stats(x, D, c->eps, &mf, &rf);
    c->mean_out[n] = mf;
    c->rstd_out[n] = rf;
    const __m512 vm = _mm512_set1_ps(mf), vr = _mm512_set1_ps(rf);
    float *o = c->out + n * D;
    for (int64_t ch = 0; ch < c->C; ch++) {
        const __m512 add = _mm512_set1_ps(c->v ? c->v[n * c->C + ch] : 0.0f);
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j += 16) {
            const __mmask16 m = cd__v_mask((ch + 1) * c->HW - j);
            const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vr);
            const __m512 yv = _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(m, c->weight + j),
                                              _mm512_maskz_loadu_ps(m, c->bias + j));
            _mm512_mask_storeu_ps(o + j, m, _mm512_add_ps(cd__v_gelu(yv), add));
        }
    }
}

/* dout <- dn = dout GELU'(y); dx = rstd (g - mean(g) - xhat mean(g xhat))
 * with g = dn weight; dv[n, ch] += sum of dout over the channel. */
CD__AVX512 static void lg_bwd_avx512(const lg_ctx *c, int64_t n)
{
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D;
    float *go = c->dout + n * D, *dx = c->dx + n * D;
    const __m512 vm = _mm512_set1_ps(c->mean[n]), vr = _mm512_set1_ps(c->rstd[n]);
    __m512d sg0 = _mm512_setzero_pd(), sg1 = sg0, sx0 = sg0, sx1 = sg0;
    for (int64_t ch = 0; ch < c->C; ch++) {
        __m512d a0 = _mm512_setzero_pd(), a1 = a0;
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j += 16) {
            const __mmask16 m = cd__v_mask((ch + 1) * c->HW - j);
            const __m512 g = _mm512_maskz_loadu_ps(m, go + j);
            if (c->dv) cd__v_sum_pd(&a0, &a1, g);
            const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vr);
            const __m512 wv = _mm512_maskz_loadu_ps(m, c->weight + j);
            const __m512 yv = _mm512_fmadd_ps(xh, wv, _mm512_maskz_loadu_ps(m, c->bias + j));
            const __m512 dn = _mm512_mul_ps(g, cd__v_gelu_grad(yv));
            _mm512_mask_storeu_ps(go + j, m, dn);
            const __m512 gw = _mm512_mul_ps(dn, wv);
            cd__v_sum_pd(&sg0, &sg1, gw);
            sx0 = _mm512_fmadd_pd(cd__v_lo_pd(gw), cd__v_lo_pd(xh), sx0);
            sx1 = _mm512_fmadd_pd(cd__v_hi_pd(gw), cd__v_hi_pd(xh), sx1);
        }
        if (c->dv) c->dv[n * c->C + ch] += (float)cd__v_total_pd(a0, a1);
    }
    const double sg = cd__v_total_pd(sg0, sg1);
    const double sgx = cd__v_total_pd(sx0, sx1);
    const __m512 mg = _mm512_set1_ps((float)(sg / (double)D));
    const __m512 mgx = _mm512_set1_ps((float)(sgx / (double)D));
    for (int64_t i = 0; i < D; i += 16) {
        const __mmask16 m = cd__v_mask(D - i);
        const __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, go + i),
                                        _mm512_maskz_loadu_ps(m, c->weight + i));
        const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        const __m512 d = _mm512_fnmadd_ps(xh, mgx, _mm512_sub_ps(gw, mg));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vr, d));
    }
}

/* Parameter gradients over elements [i0, i0 + len): sums over n in order. */
CD__AVX512 static void lg_param_avx512(const lg_ctx *c, int64_t i0, int64_t len)
{
    const int64_t D = c->C * c->HW;
    double aw[PCHUNK] __attribute__((aligned(64)));
    double ab[PCHUNK] __attribute__((aligned(64)));
    memset(aw, 0, sizeof aw);
    memset(ab, 0, sizeof ab);
    for (int64_t n = 0; n < c->N; n++) {
        const float *g = c->dout + n * D + i0, *x = c->x + n * D + i0;
        const __m512 vm = _mm512_set1_ps(c->mean[n]), vr = _mm512_set1_ps(c->rstd[n]);
        for (int64_t i = 0; i < len; i += 16) {
            const __mmask16 m = cd__v_mask(len - i);
            const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
            const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
            _mm512_store_pd(aw + i, _mm512_fmadd_pd(cd__v_lo_pd(gv), cd__v_lo_pd(xh), _mm512_load_pd(aw + i)));
            _mm512_store_pd(aw + i + 8,
                            _mm512_fmadd_pd(cd__v_hi_pd(gv), cd__v_hi_pd(xh), _mm512_load_pd(aw + i + 8)));
            _mm512_store_pd(ab + i, _mm512_add_pd(cd__v_lo_pd(gv), _mm512_load_pd(ab + i)));
            _mm512_store_pd(ab + i + 8, _mm512_add_pd(cd__v_hi_pd(gv), _mm512_load_pd(ab + i + 8)));
        }
    }
    for (int64_t i = 0; i < len; i++) {
        if (c->dweight) c->dweight[i0 + i] += (float)aw[i];
        if (c->dbias) c->dbias[i0 + i] += (float)ab[i];
    }
}
#endif

static void lg_fwd_task(void *ctx, int64_t n)
{
    const lg_ctx *c = ctx;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        lg_fwd_avx512(c, n);
        return;
    }
#endif
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D;
    float m, r;
    cd__ln_stats(x, D, c->eps, &m, &r);
    c->mean_out[n] = m;
    c->rstd_out[n] = r;
    float *o = c->out + n * D;
    for (int64_t ch = 0; ch < c->C; ch++) {
        const float add = c->v ? c->v[n * c->C + ch] : 0.0f;
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j++)
            o[j] = cd__gelu(fmaf((x[j] - m) * r, c->weight[j], c->bias[j])) + add;
    }
}

static void lg_bwd_task(void *ctx, int64_t n)
{
    const lg_ctx *c = ctx;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        lg_bwd_avx512(c, n);
        return;
    }
#endif
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D;
    float *go = c->dout + n * D, *dx = c->dx + n * D;
    const float m = c->mean[n], r = c->rstd[n];
    double sg = 0.0, sgx = 0.0;
    for (int64_t ch = 0; ch < c->C; ch++) {
        double a = 0.0;
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j++) {
            a += go[j];
            go[j] *= cd__gelu_grad(fmaf((x[j] - m) * r, c->weight[j], c->bias[j]));
            const float g = go[j] * c->weight[j];
            sg += g;
            sgx += (double)g * ((x[j] - m) * r);
        }
        if (c->dv) c->dv[n * c->C + ch] += (float)a;
    }
    const float mg = (float)(sg / (double)D), mgx = (float)(sgx / (double)D);
    for (int64_t i = 0; i < D; i++)
        dx[i] = r * (go[i] * c->weight[i] - mg - (x[i] - m) * r * mgx);
}

static void lg_param_task(void *ctx, int64_t t)
{
    const lg_ctx *c = ctx;
    const int64_t D = c->C * c->HW, i0 = t * PCHUNK;
    const int64_t len = i0 + PCHUNK < D ? PCHUNK : D - i0;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        lg_param_avx512(c, i0, len);
        return;
    }
#endif
    for (int64_t i = i0; i < i0 + len; i++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t n = 0; n < c->N; n++) {
            const float g = c->dout[n * D + i];
            sw += (double)g * ((c->x[n * D + i] - c->mean[n]) * c->rstd[n]);
            sb += g;
        }
        if (c->dweight) c->dweight[i] += (float)sw;
        if (c->dbias) c->dbias[i] += (float)sb;
    }
}

void cd__ln_gelu_forward_task(void *args, int64_t n)
{
    const cd__ln_gelu_args *a = args;
    const lg_ctx c = {.out = a->out, .mean_out = a->mean, .rstd_out = a->rstd, .x = a->x,
                      .weight = a->weight, .bias = a->bias, .v = a->v, .N = a->N, .C = a->C,
                      .HW = a->HW, .eps = a->eps};
    lg_fwd_task((void *)&c, n);
}

void cd__ln_gelu_forward(float *out, float *mean, float *rstd, const float *x,
                         const float *weight, const float *bias, const float *v, int64_t N,
                         int64_t C, int64_t HW, float eps)
{
    lg_ctx c = {.out = out, .mean_out = mean, .rstd_out = rstd, .x = x,
                .weight = weight, .bias = bias, .v = v, .N = N, .C = C, .HW = HW, .eps = eps};
    cd__parallel_for(N, lg_fwd_task, &c);
}

void cd__ln_gelu_backward(float *dx, float *dweight, float *dbias, float *dv, float *dout,
                          const float *x, const float *weight, const float *bias,
                          const float *mean, const float *rstd, int64_t N, int64_t C,
                          int64_t HW)
{
    lg_ctx c = {.dx = dx, .dweight = dweight, .dbias = dbias, .dv = dv, .dout = dout,
                .x = x, .weight = weight, .bias = bias, .mean = mean, .rstd = rstd, .N = N,
                .C = C, .HW = HW};
    cd__parallel_for(N, lg_bwd_task, &c);
    if (dweight || dbias) cd__parallel_for((C * HW + PCHUNK - 1) / PCHUNK, lg_param_task, &c);
}
