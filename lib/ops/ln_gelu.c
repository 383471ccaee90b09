/*
 * ln_gelu.c - the CNN block's LayerNorm, GELU and time-embedding add, fused
 * (see ops.h), in one task per sample: a sample's C x H x W floats (100 KB
 * for 32 x 28 x 28) stay in L2 across the statistics and output passes,
 * where the separate ops streamed the batch through memory five times.
 * Same arithmetic as the separate ops: statistics in double, two passes.
 * A training forward also saves GELU'(y), y = LN(x): the forward has
 * 1 + erf(y / sqrt 2) at hand, so GELU' costs it one exp, while recomputing
 * it in backward took erf and two exps, the bulk of the backward's
 * arithmetic. y itself is not stored: backward recomputes LN's xhat with
 * the same operations (the same bits) from x, which it reads anyway. The
 * affine's gradients are summed in the same pass:
 * each task takes a fixed block of samples into its own partial sums,
 * which a second phase adds in block order, so the bits do not depend on
 * the thread count.
 */
#include "ops.h"
#include "vmath.h"

#include <math.h>

/* Samples per backward task: each task's partial affine gradients (2 D
 * floats) are summed over this many samples in float. */
#define PBLOCK 8
/* Elements of D per task when the partial sums are added up. */
#define PCHUNK 1024

typedef struct {
    float *out, *gp_out, *dx, *dweight, *dbias, *dv, *mean_out, *rstd_out;
    const float *x, *weight, *bias, *v, *mean, *rstd, *dout, *gp;
    float *partial; /* [task][2][D]: sum of dn xhat, then of dn */
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
    float *o = c->out + n * D, *gp = c->gp_out ? c->gp_out + n * D : NULL;
    for (int64_t ch = 0; ch < c->C; ch++) {
        const __m512 add = _mm512_set1_ps(c->v ? c->v[n * c->C + ch] : 0.0f);
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j += 16) {
            const __mmask16 m = cd__v_mask((ch + 1) * c->HW - j);
            const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vr);
            const __m512 yv = _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(m, c->weight + j),
                                              _mm512_maskz_loadu_ps(m, c->bias + j));
            const __m512 e1 = cd__v_gelu_e1(yv);
            _mm512_mask_storeu_ps(o + j, m, _mm512_add_ps(cd__v_gelu_of(yv, e1), add));
            if (gp) _mm512_mask_storeu_ps(gp + j, m, cd__v_gelu_grad_of(yv, e1));
        }
    }
}

/* dn = dout GELU'(y); dx = rstd (g - mean(g) - xhat mean(g xhat)) with
 * g = dn weight; dv[n, ch] += sum of dout over the channel; pw, pb (if not
 * NULL) += dn xhat, dn, or = when first. dn is formed in both passes
 * rather than stored, so dx may overwrite dout. */
CD__AVX512 static void lg_bwd_avx512(const lg_ctx *c, int64_t n, float *pw, float *pb, bool first)
{
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D, *go = c->dout + n * D, *gp = c->gp + n * D;
    float *dx = c->dx + n * D;
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
            const __m512 dn = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, gp + j));
            if (pw) {
                const __m512 w0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, pw + j);
                const __m512 b0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, pb + j);
                _mm512_mask_storeu_ps(pw + j, m, _mm512_fmadd_ps(dn, xh, w0));
                _mm512_mask_storeu_ps(pb + j, m, _mm512_add_ps(dn, b0));
            }
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
        const __m512 dn =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(m, go + i), _mm512_maskz_loadu_ps(m, gp + i));
        const __m512 gw = _mm512_mul_ps(dn, _mm512_maskz_loadu_ps(m, c->weight + i));
        const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        const __m512 d = _mm512_fnmadd_ps(xh, mgx, _mm512_sub_ps(gw, mg));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vr, d));
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
    float *o = c->out + n * D, *gp = c->gp_out ? c->gp_out + n * D : NULL;
    for (int64_t ch = 0; ch < c->C; ch++) {
        const float add = c->v ? c->v[n * c->C + ch] : 0.0f;
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j++) {
            const float y = fmaf((x[j] - m) * r, c->weight[j], c->bias[j]);
            o[j] = cd__gelu(y) + add;
            if (gp) gp[j] = cd__gelu_grad(y);
        }
    }
}

static void lg_bwd_one(const lg_ctx *c, int64_t n, float *pw, float *pb, bool first)
{
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        lg_bwd_avx512(c, n, pw, pb, first);
        return;
    }
#endif
    const int64_t D = c->C * c->HW;
    const float *x = c->x + n * D, *go = c->dout + n * D, *gp = c->gp + n * D;
    float *dx = c->dx + n * D;
    const float m = c->mean[n], r = c->rstd[n];
    double sg = 0.0, sgx = 0.0;
    for (int64_t ch = 0; ch < c->C; ch++) {
        double a = 0.0;
        for (int64_t j = ch * c->HW; j < (ch + 1) * c->HW; j++) {
            a += go[j];
            const float xh = (x[j] - m) * r, dn = go[j] * gp[j];
            if (pw) {
                pw[j] = fmaf(dn, xh, first ? 0.0f : pw[j]);
                pb[j] = dn + (first ? 0.0f : pb[j]);
            }
            const float g = dn * c->weight[j];
            sg += g;
            sgx += (double)g * xh;
        }
        if (c->dv) c->dv[n * c->C + ch] += (float)a;
    }
    const float mg = (float)(sg / (double)D), mgx = (float)(sgx / (double)D);
    for (int64_t i = 0; i < D; i++)
        dx[i] = r * (go[i] * gp[i] * c->weight[i] - mg - (x[i] - m) * r * mgx);
}

/* Samples [t PBLOCK, (t + 1) PBLOCK), their affine gradients into
 * partial block t. */
static void lg_bwd_task(void *ctx, int64_t t)
{
    const lg_ctx *c = ctx;
    const int64_t D = c->C * c->HW, n1 = (t + 1) * PBLOCK < c->N ? (t + 1) * PBLOCK : c->N;
    float *pw = c->partial ? c->partial + 2 * t * D : NULL, *pb = pw ? pw + D : NULL;
    for (int64_t n = t * PBLOCK; n < n1; n++) lg_bwd_one(c, n, pw, pb, n == t * PBLOCK);
}

/* dweight, dbias over elements [t PCHUNK, ...): the partial sums in block
 * order, in double. */
static void lg_param_task(void *ctx, int64_t t)
{
    const lg_ctx *c = ctx;
    const int64_t D = c->C * c->HW, i0 = t * PCHUNK;
    const int64_t len = i0 + PCHUNK < D ? PCHUNK : D - i0, blocks = (c->N + PBLOCK - 1) / PBLOCK;
    double sw[PCHUNK], sb[PCHUNK];
    for (int64_t i = 0; i < len; i++) sw[i] = sb[i] = 0.0;
    for (int64_t b = 0; b < blocks; b++) {
        const float *pw = c->partial + 2 * b * D + i0, *pb = pw + D;
        for (int64_t i = 0; i < len; i++) {
            sw[i] += pw[i];
            sb[i] += pb[i];
        }
    }
    for (int64_t i = 0; i < len; i++) {
        if (c->dweight) c->dweight[i0 + i] += (float)sw[i];
        if (c->dbias) c->dbias[i0 + i] += (float)sb[i];
    }
}

void cd__ln_gelu_forward_task(void *args, int64_t n)
{
    const cd__ln_gelu_args *a = args;
    const lg_ctx c = {.out = a->out,
                      .gp_out = a->gp,
                      .mean_out = a->mean,
                      .rstd_out = a->rstd,
                      .x = a->x,
                      .weight = a->weight,
                      .bias = a->bias,
                      .v = a->v,
                      .N = a->N,
                      .C = a->C,
                      .HW = a->HW,
                      .eps = a->eps};
    lg_fwd_task((void *)&c, n);
}

void cd__ln_gelu_forward(float *out, float *gp, float *mean, float *rstd, const float *x,
                         const float *weight, const float *bias, const float *v, int64_t N,
                         int64_t C, int64_t HW, float eps)
{
    lg_ctx c = {.out = out,
                .gp_out = gp,
                .mean_out = mean,
                .rstd_out = rstd,
                .x = x,
                .weight = weight,
                .bias = bias,
                .v = v,
                .N = N,
                .C = C,
                .HW = HW,
                .eps = eps};
    cd__parallel_for(N, lg_fwd_task, &c);
}

size_t cd__ln_gelu_workspace(int64_t N, int64_t C, int64_t HW)
{
    return (size_t)(2 * ((N + PBLOCK - 1) / PBLOCK) * C * HW);
}

void cd__ln_gelu_backward(float *dx, float *dweight, float *dbias, float *dv, const float *dout,
                          const float *gp, const float *x, const float *weight, const float *mean,
                          const float *rstd, int64_t N, int64_t C, int64_t HW, float *ws)
{
    lg_ctx c = {.dx = dx,
                .dweight = dweight,
                .dbias = dbias,
                .dv = dv,
                .dout = dout,
                .gp = gp,
                .x = x,
                .weight = weight,
                .mean = mean,
                .rstd = rstd,
                .N = N,
                .C = C,
                .HW = HW,
                .partial = dweight || dbias ? ws : NULL};
    cd__parallel_for((N + PBLOCK - 1) / PBLOCK, lg_bwd_task, &c);
    if (c.partial) cd__parallel_for((C * HW + PCHUNK - 1) / PCHUNK, lg_param_task, &c);
}
