/*
 * softmax.c - softmax over the last axis, forward and backward.
 *
 * The row functions are serial so that a caller already running one task
 * per sample (the UNet's attention) can use them inside its task; the
 * batch functions split rows into fixed tasks. A row is computed as
 * PyTorch's CPU kernel does: exp(x - max), then times 1 / sum, with the
 * sum and the backward's dot product in double. The AVX-512 and scalar
 * rows use the same exp polynomial (vmath.h) but sum in different orders,
 * so they agree to rounding, not bit for bit; which one runs depends only
 * on the CPU.
 */
#include "ops.h"
#include "vmath.h"

/* Elements per parallel task of the batch functions. */
#define CHUNK 16384

#ifdef CD__VMATH_X86
CD__AVX512 static void row_avx512(float *out, const float *in, int64_t n)
{
    __m512 mx = CD__V1(-INFINITY);
    for (int64_t j = 0; j < n; j += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(CD__V1(-INFINITY), cd__v_mask(n - j), in + j));
    const __m512 m = CD__V1(_mm512_reduce_max_ps(mx));
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 k = cd__v_mask(n - j);
        /* Masked-off lanes give exp(-87.3) > 0: zero them before summing. */
        const __m512 e =
            _mm512_maskz_mov_ps(k,
                                cd__v_exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, in + j), m)));
        _mm512_mask_storeu_ps(out + j, k, e);
        cd__v_sum_pd(&lo, &hi, e);
    }
    const __m512 inv = CD__V1((float)(1.0 / cd__v_total_pd(lo, hi)));
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 k = cd__v_mask(n - j);
        _mm512_mask_storeu_ps(out + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, out + j), inv));
    }
}

CD__AVX512 static void row_backward_avx512(float *din, const float *dout, const float *y, int64_t n,
                                           bool add)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 k = cd__v_mask(n - j);
        const __m512 g = _mm512_maskz_loadu_ps(k, dout + j), v = _mm512_maskz_loadu_ps(k, y + j);
        lo = _mm512_fmadd_pd(cd__v_lo_pd(g), cd__v_lo_pd(v), lo);
        hi = _mm512_fmadd_pd(cd__v_hi_pd(g), cd__v_hi_pd(v), hi);
    }
    const __m512 d = CD__V1((float)cd__v_total_pd(lo, hi));
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 k = cd__v_mask(n - j);
        const __m512 g = _mm512_maskz_loadu_ps(k, dout + j), v = _mm512_maskz_loadu_ps(k, y + j);
        __m512 r = _mm512_mul_ps(v, _mm512_sub_ps(g, d));
        if (add) r = _mm512_add_ps(_mm512_maskz_loadu_ps(k, din + j), r);
        _mm512_mask_storeu_ps(din + j, k, r);
    }
}
#endif

void cd__softmax_row(float *out, const float *in, int64_t n)
{
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        row_avx512(out, in, n);
        return;
    }
#endif
    float mx = in[0];
    for (int64_t j = 1; j < n; j++) mx = in[j] > mx ? in[j] : mx;
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) {
        out[j] = cd__expf_neg(in[j] - mx); /* <= 1: no overflow whatever the inputs */
        s += out[j];
    }
    const float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < n; j++) out[j] *= inv;
}

void cd__softmax_row_backward(float *din, const float *dout, const float *y, int64_t n, bool add)
{
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        row_backward_avx512(din, dout, y, n, add);
        return;
    }
#endif
    double dot = 0.0;
    for (int64_t j = 0; j < n; j++) dot += (double)dout[j] * y[j];
    const float d = (float)dot;
    for (int64_t j = 0; j < n; j++) din[j] = (add ? din[j] : 0.0f) + y[j] * (dout[j] - d);
}

typedef struct {
    float *out;
    const float *in, *dout, *y;
    int64_t rows, cols, per_task;
} softmax_ctx;

static void fwd_task(void *ctx, int64_t t)
{
    const softmax_ctx *c = ctx;
    const int64_t end = (t + 1) * c->per_task < c->rows ? (t + 1) * c->per_task : c->rows;
    for (int64_t r = t * c->per_task; r < end; r++)
        cd__softmax_row(c->out + r * c->cols, c->in + r * c->cols, c->cols);
}

static void bwd_task(void *ctx, int64_t t)
{
    const softmax_ctx *c = ctx;
    const int64_t end = (t + 1) * c->per_task < c->rows ? (t + 1) * c->per_task : c->rows;
    for (int64_t r = t * c->per_task; r < end; r++)
        cd__softmax_row_backward(c->out + r * c->cols, c->dout + r * c->cols, c->y + r * c->cols,
                                 c->cols, true);
}

static int64_t rows_per_task(int64_t cols)
{
    return cols >= CHUNK ? 1 : CHUNK / (cols > 0 ? cols : 1);
}

void cd__softmax_forward(float *out, const float *in, int64_t rows, int64_t cols)
{
    softmax_ctx c = {out, in, NULL, NULL, rows, cols, rows_per_task(cols)};
    cd__parallel_for((rows + c.per_task - 1) / c.per_task, fwd_task, &c);
}

void cd__softmax_backward(float *din, const float *dout, const float *out, int64_t rows,
                          int64_t cols)
{
    if (!din) return;
    softmax_ctx c = {din, NULL, dout, out, rows, cols, rows_per_task(cols)};
    cd__parallel_for((rows + c.per_task - 1) / c.per_task, bwd_task, &c);
}
