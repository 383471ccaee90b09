/*
 * act.c - GELU, per-channel broadcast add and channel concat.
 * Work is split into fixed element ranges, so every element is computed by
 * the same code whatever thread runs it: results do not depend on the
 * thread count.
 */
#include "ops.h"
#include "vmath.h"

#include <math.h>
#include <string.h>

/* Elements per parallel task: large enough to amortise waking the pool. */
#define CHUNK 16384

static int64_t n_chunks(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }

/* ---- GELU ---------------------------------------------------------------- */

typedef struct {
    float *out;
    const float *in, *dout;
    int64_t n;
} gelu_ctx;

bool cd__ops_avx512(void)
{
#ifdef CD__VMATH_X86
    return cd__cpu_use_avx512(CD__KERNELS_VMATH);
#else
    return false;
#endif
}

#ifdef CD__VMATH_X86
CD__AVX512 static void gelu_fwd_avx512(float *out, const float *in, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, cd__v_gelu(_mm512_maskz_loadu_ps(m, in + i)));
    }
}

CD__AVX512 static void gelu_pair_avx512(float *g, float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i), e1 = cd__v_gelu_e1(v);
        _mm512_mask_storeu_ps(g + i, m, cd__v_gelu_of(v, e1));
        _mm512_mask_storeu_ps(x + i, m, cd__v_gelu_grad_of(v, e1));
    }
}

CD__AVX512 static void mul_avx512(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i),
                                            _mm512_maskz_loadu_ps(m, x + i)));
    }
}

CD__AVX512 static void add_avx512(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                            _mm512_maskz_loadu_ps(m, x + i)));
    }
}

CD__AVX512 static void gelu_bwd_avx512(float *din, const float *dout, const float *in, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dout + i),
                                       cd__v_gelu_grad(_mm512_maskz_loadu_ps(m, in + i)));
        _mm512_mask_storeu_ps(din + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, din + i), g));
    }
}
#endif

static void gelu_fwd_task(void *ctx, int64_t t)
{
    const gelu_ctx *c = ctx;
    const int64_t i0 = t * CHUNK, len = (t + 1) * CHUNK < c->n ? CHUNK : c->n - i0;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        gelu_fwd_avx512(c->out + i0, c->in + i0, len);
        return;
    }
#endif
    for (int64_t i = i0; i < i0 + len; i++) c->out[i] = cd__gelu(c->in[i]);
}

static void gelu_bwd_task(void *ctx, int64_t t)
{
    const gelu_ctx *c = ctx;
    const int64_t i0 = t * CHUNK, len = (t + 1) * CHUNK < c->n ? CHUNK : c->n - i0;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        gelu_bwd_avx512(c->out + i0, c->dout + i0, c->in + i0, len);
        return;
    }
#endif
    for (int64_t i = i0; i < i0 + len; i++) {
        const float g = c->dout[i] * cd__gelu_grad(c->in[i]);
        c->out[i] += g;
    }
}

void cd__gelu_forward(float *out, const float *in, int64_t n)
{
    gelu_ctx c = {out, in, NULL, n};
    cd__parallel_for(n_chunks(n, CHUNK), gelu_fwd_task, &c);
}

void cd__gelu_image_task(void *args, int64_t n)
{
    const cd__image_args *a = args;
    const int64_t off = n * a->per_image;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        gelu_fwd_avx512(a->out + off, a->in + off, a->per_image);
        return;
    }
#endif
    for (int64_t i = off; i < off + a->per_image; i++) a->out[i] = cd__gelu(a->in[i]);
}

void cd__gelu_pair_image_task(void *args, int64_t n)
{
    const cd__gelu_pair_args *a = args;
    float *g = a->g + n * a->per_image, *x = a->x + n * a->per_image;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        gelu_pair_avx512(g, x, a->per_image);
        return;
    }
#endif
    for (int64_t i = 0; i < a->per_image; i++) {
        const float v = x[i];
        g[i] = cd__gelu(v);
        x[i] = cd__gelu_grad(v);
    }
}

void cd__mul_image_task(void *args, int64_t n)
{
    const cd__image_args *a = args;
    float *y = a->out + n * a->per_image;
    const float *x = a->in + n * a->per_image;
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        mul_avx512(y, x, a->per_image);
        return;
    }
#endif
    for (int64_t i = 0; i < a->per_image; i++) y[i] *= x[i];
}

void cd__add_into(float *y, const float *x, int64_t n)
{
#ifdef CD__VMATH_X86
    if (cd__ops_avx512()) {
        add_avx512(y, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void cd__add_image_task(void *args, int64_t n)
{
    const cd__image_args *a = args;
    cd__add_into(a->out + n * a->per_image, a->in + n * a->per_image, a->per_image);
}

void cd__gelu_backward(float *din, const float *dout, const float *in, int64_t n)
{
    if (!din) return;
    gelu_ctx c = {din, in, dout, n};
    cd__parallel_for(n_chunks(n, CHUNK), gelu_bwd_task, &c);
}

/* ---- per-channel broadcast add ------------------------------------------- */

typedef struct {
    float *out, *dv;
    const float *x, *v, *dout;
    int64_t rows, HW, per_task; /* rows = N*C planes of HW pixels */
} chan_ctx;

#ifdef CD__VMATH_X86
CD__AVX512 static void channel_fwd_avx512(float *o, const float *x, float v, int64_t n)
{
    const __m512 vv = _mm512_set1_ps(v);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        _mm512_mask_storeu_ps(o + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), vv));
    }
}

/* The row's sum in double, in two pairs of accumulators taking turns;
 * dx += the row when dx is not NULL. */
CD__AVX512 static double channel_bwd_avx512(float *dx, const float *g, int64_t n)
{
    __m512d s[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                    _mm512_setzero_pd()};
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = cd__v_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, g + i);
        const int k = (int)((i >> 4) & 1) * 2;
        cd__v_sum_pd(&s[k], &s[k + 1], v);
        if (dx)
            _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), v));
    }
    return cd__v_total_pd(_mm512_add_pd(s[0], s[2]), _mm512_add_pd(s[1], s[3]));
}
#endif

static void add_channel_task(void *ctx, int64_t t)
{
    const chan_ctx *c = ctx;
    int64_t end = (t + 1) * c->per_task < c->rows ? (t + 1) * c->per_task : c->rows;
    for (int64_t r = t * c->per_task; r < end; r++) {
        const float *x = c->x + r * c->HW;
        float *o = c->out + r * c->HW, v = c->v[r];
#ifdef CD__VMATH_X86
        if (cd__ops_avx512()) {
            channel_fwd_avx512(o, x, v, c->HW);
            continue;
        }
#endif
        for (int64_t i = 0; i < c->HW; i++) o[i] = x[i] + v;
    }
}

static void add_channel_bwd_task(void *ctx, int64_t t)
{
    const chan_ctx *c = ctx;
    int64_t end = (t + 1) * c->per_task < c->rows ? (t + 1) * c->per_task : c->rows;
    for (int64_t r = t * c->per_task; r < end; r++) {
        const float *g = c->dout + r * c->HW;
        float *dx = c->out ? c->out + r * c->HW : NULL;
#ifdef CD__VMATH_X86
        if (cd__ops_avx512()) {
            const double s = channel_bwd_avx512(dx, g, c->HW);
            if (c->dv) c->dv[r] += (float)s;
            continue;
        }
#endif
        double s = 0.0;
        for (int64_t i = 0; i < c->HW; i++) {
            s += g[i];
            if (dx) dx[i] += g[i];
        }
        if (c->dv) c->dv[r] += (float)s;
    }
}

static int64_t rows_per_task(int64_t HW) { return HW >= CHUNK ? 1 : CHUNK / (HW > 0 ? HW : 1); }

void cd__add_channel_forward(float *out, const float *x, const float *v, int64_t N, int64_t C,
                             int64_t HW)
{
    chan_ctx c = {out, NULL, x, v, NULL, N * C, HW, rows_per_task(HW)};
    cd__parallel_for(n_chunks(N * C, c.per_task), add_channel_task, &c);
}

void cd__add_channel_backward(float *dx, float *dv, const float *dout, int64_t N, int64_t C,
                              int64_t HW)
{
    if (!dx && !dv) return;
    chan_ctx c = {dx, dv, NULL, NULL, dout, N * C, HW, rows_per_task(HW)};
    cd__parallel_for(n_chunks(N * C, c.per_task), add_channel_bwd_task, &c);
}

/* ---- channel concat ------------------------------------------------------ */

void cd__concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t Ca,
                        int64_t Cb, int64_t HW)
{
    const int64_t sa = Ca * HW, sb = Cb * HW;
    for (int64_t n = 0; n < N; n++) {
        memcpy(out + n * (sa + sb), a + n * sa, (size_t)sa * sizeof *a);
        memcpy(out + n * (sa + sb) + sa, b + n * sb, (size_t)sb * sizeof *b);
    }
}

void cd__concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t Ca, int64_t Cb,
                         int64_t HW)
{
    const int64_t sa = Ca * HW, sb = Cb * HW;
    for (int64_t n = 0; n < N; n++) {
        if (da) cd__add_into(da + n * sa, dout + n * (sa + sb), sa);
        if (db) cd__add_into(db + n * sb, dout + n * (sa + sb) + sa, sb);
    }
}
