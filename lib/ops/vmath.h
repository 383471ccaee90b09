/*
 * vmath.h - exp, erf and GELU for the elementwise kernels (act.c, norm.c),
 * as scalar functions and, on x86-64 with GCC or Clang, AVX-512 versions
 * chosen at run time. glibc's erff and expf are scalar calls and took about
 * a fifth of a CNN training step; these are inlined and vectorise.
 *
 * Accuracy (checked against double over every float in [-10, 10]): erf
 * within 1.03 ulp, exp within 1.01 ulp, as accurate as glibc's erff (0.97
 * ulp), so GELU keeps float32 parity with PyTorch's exact GELU. erf is
 * N. Juffa's branch pair: an odd polynomial for |a| <= 0.9277 and
 * 1 - exp(poly(|a|)) above; exp is Cephes' expf polynomial with a
 * Cody-Waite reduction. Both paths perform the same operations in the same
 * order, but the vector path handles tails with masks, so on a given CPU
 * every element goes through one of them whatever the thread count.
 */
#ifndef CD_OPS_VMATH_H
#define CD_OPS_VMATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* PyTorch's constants for exact GELU: 1/sqrt(2) and 1/sqrt(2 pi). */
#define CD__GELU_ALPHA ((float)0.70710678118654752440)
#define CD__GELU_BETA ((float)0.39894228040143267794)

/* True when the AVX-512 paths may run: cd__cpu_use_avx512(CD__KERNELS_VMATH),
 * which a test can turn off with cd__cpu_force_portable (core.h). */
bool cd__ops_avx512(void);

/* exp(x) for x <= 0; arguments below -87.3 give exp(-87.3) (~1e-38). */
static inline float cd__expf_neg(float x)
{
    x = x > -87.3f ? x : -87.3f;
    const float j = rintf(x * 1.44269504088896341f);
    float f = fmaf(j, -0.693359375f, x);
    f = fmaf(j, 2.12194440e-4f, f);
    float p = 1.9875691500e-4f;
    p = fmaf(p, f, 1.3981999507e-3f);
    p = fmaf(p, f, 8.3334519073e-3f);
    p = fmaf(p, f, 4.1665795894e-2f);
    p = fmaf(p, f, 1.6666665459e-1f);
    p = fmaf(p, f, 5.0000001201e-1f);
    p = fmaf(p, f * f, f) + 1.0f;
    const int32_t e = ((int32_t)j + 127) * (1 << 23);
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float cd__erff(float a)
{
    const float t = fabsf(a), s = a * a;
    if (t > 0.927734375f) {
        const float u = t < 4.0f ? t : 4.0f; /* erf rounds to 1 beyond */
        float r = fmaf(-1.72853470e-5f, u, 3.83197126e-4f);
        const float q = fmaf(-3.88396438e-3f, u, 2.42546219e-2f);
        r = fmaf(r, u * u, q);
        r = fmaf(r, u, -1.06777877e-1f);
        r = fmaf(r, u, -6.34846687e-1f);
        r = fmaf(r, u, -1.28717512e-1f);
        r = fmaf(r, u, -u);
        return copysignf(1.0f - cd__expf_neg(r), a);
    }
    float r = -5.96761703e-4f;
    r = fmaf(r, s, 4.99119423e-3f);
    r = fmaf(r, s, -2.67681349e-2f);
    r = fmaf(r, s, 1.12819925e-1f);
    r = fmaf(r, s, -3.76125336e-1f);
    r = fmaf(r, s, 1.28379166e-1f);
    return fmaf(r, a, a);
}

/* GELU(x) and GELU'(x) in PyTorch's CPU order of operations. */
static inline float cd__gelu(float x) { return x * 0.5f * (1.0f + cd__erff(x * CD__GELU_ALPHA)); }

static inline float cd__gelu_grad(float x)
{
    const float cdf = 0.5f * (1.0f + cd__erff(x * CD__GELU_ALPHA));
    const float pdf = CD__GELU_BETA * cd__expf_neg(x * x * -0.5f);
    return cdf + x * pdf;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    !defined(CD_CONV_PORTABLE_ONLY)
#define CD__VMATH_X86 1
#include <immintrin.h>
#define CD__AVX512 __attribute__((target("avx512f")))

#define CD__V1(c) _mm512_set1_ps(c)

CD__AVX512 static inline __m512 cd__v_exp_neg(__m512 x)
{
    x = _mm512_max_ps(x, CD__V1(-87.3f));
    const __m512 j = _mm512_roundscale_ps(_mm512_mul_ps(x, CD__V1(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fmadd_ps(j, CD__V1(-0.693359375f), x);
    f = _mm512_fmadd_ps(j, CD__V1(2.12194440e-4f), f);
    __m512 p = CD__V1(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, CD__V1(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, CD__V1(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, CD__V1(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, CD__V1(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, CD__V1(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(f, f), f), CD__V1(1.0f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(j), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

CD__AVX512 static inline __m512 cd__v_erf(__m512 a)
{
    const __m512i sign = _mm512_set1_epi32((int32_t)0x80000000u);
    const __m512 t = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(a)));
    const __m512 s = _mm512_mul_ps(a, a);
    __m512 p = CD__V1(-5.96761703e-4f);
    p = _mm512_fmadd_ps(p, s, CD__V1(4.99119423e-3f));
    p = _mm512_fmadd_ps(p, s, CD__V1(-2.67681349e-2f));
    p = _mm512_fmadd_ps(p, s, CD__V1(1.12819925e-1f));
    p = _mm512_fmadd_ps(p, s, CD__V1(-3.76125336e-1f));
    p = _mm512_fmadd_ps(p, s, CD__V1(1.28379166e-1f));
    p = _mm512_fmadd_ps(p, a, a);
    const __mmask16 m = _mm512_cmp_ps_mask(t, CD__V1(0.927734375f), _CMP_GT_OQ);
    /* No lane needs the exp branch (the blend below would pick p in every
     * lane): skip it. Common in a freshly initialised network, whose
     * pre-activations sit near zero; rarer in a trained one. */
    if (!m) return p;
    const __m512 u = _mm512_min_ps(t, CD__V1(4.0f));
    __m512 r = _mm512_fmadd_ps(CD__V1(-1.72853470e-5f), u, CD__V1(3.83197126e-4f));
    const __m512 q = _mm512_fmadd_ps(CD__V1(-3.88396438e-3f), u, CD__V1(2.42546219e-2f));
    r = _mm512_fmadd_ps(r, _mm512_mul_ps(u, u), q);
    r = _mm512_fmadd_ps(r, u, CD__V1(-1.06777877e-1f));
    r = _mm512_fmadd_ps(r, u, CD__V1(-6.34846687e-1f));
    r = _mm512_fmadd_ps(r, u, CD__V1(-1.28717512e-1f));
    r = _mm512_fmadd_ps(r, u, _mm512_sub_ps(_mm512_setzero_ps(), u));
    r = _mm512_sub_ps(CD__V1(1.0f), cd__v_exp_neg(r));
    const __m512i big =
        _mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(sign, _mm512_castps_si512(a)));
    return _mm512_mask_blend_ps(m, p, _mm512_castsi512_ps(big));
}

/* 1 + erf(x / sqrt 2), which GELU and its derivative share. */
CD__AVX512 static inline __m512 cd__v_gelu_e1(__m512 x)
{
    return _mm512_add_ps(CD__V1(1.0f), cd__v_erf(_mm512_mul_ps(x, CD__V1(CD__GELU_ALPHA))));
}

CD__AVX512 static inline __m512 cd__v_gelu_of(__m512 x, __m512 e1)
{
    return _mm512_mul_ps(_mm512_mul_ps(x, CD__V1(0.5f)), e1);
}

CD__AVX512 static inline __m512 cd__v_gelu_grad_of(__m512 x, __m512 e1)
{
    const __m512 cdf = _mm512_mul_ps(CD__V1(0.5f), e1);
    const __m512 ex = cd__v_exp_neg(_mm512_mul_ps(_mm512_mul_ps(x, x), CD__V1(-0.5f)));
    const __m512 pdf = _mm512_mul_ps(CD__V1(CD__GELU_BETA), ex);
    return _mm512_add_ps(cdf, _mm512_mul_ps(x, pdf));
}

CD__AVX512 static inline __m512 cd__v_gelu(__m512 x) { return cd__v_gelu_of(x, cd__v_gelu_e1(x)); }

CD__AVX512 static inline __m512 cd__v_gelu_grad(__m512 x)
{
    return cd__v_gelu_grad_of(x, cd__v_gelu_e1(x));
}

/* The low and high 8 floats of v, widened to double. */
CD__AVX512 static inline __m512d cd__v_lo_pd(__m512 v)
{
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}

CD__AVX512 static inline __m512d cd__v_hi_pd(__m512 v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* Add the 16 floats of v, in double, to s0 (low 8) and s1 (high 8): sums
 * of whole activations in float would drift past PyTorch's tolerance. */
CD__AVX512 static inline void cd__v_sum_pd(__m512d *s0, __m512d *s1, __m512 v)
{
    *s0 = _mm512_add_pd(*s0, cd__v_lo_pd(v));
    *s1 = _mm512_add_pd(*s1, cd__v_hi_pd(v));
}

/* s0 + s1 reduced in a fixed order. */
CD__AVX512 static inline double cd__v_total_pd(__m512d s0, __m512d s1)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* Mask of the first n (< 16 allowed) of 16 lanes. */
static inline __mmask16 cd__v_mask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}
#endif

#endif /* CD_OPS_VMATH_H */
