/*
 * conv2d_dense_kernels.c - the micro-kernels of the dense path (see
 * conv2d.c): pixel-vectorised (dense_mk) and channel-vectorised (fcv_mk)
 * kernels for forward and the input gradient, and the channel-vectorised
 * weight-gradient kernels (dwcv_mk). conv2d_dense.c reaches them only
 * through pointers, so living apart costs no inlining; the pixel-vectorised
 * weight-gradient kernel, called directly, stays there with its caller.
 */
#include "conv2d_dense_kernels.h"

#ifdef CD__CONV_X86

/*
 * acc[i][j] = sum over taps k of w[k][i] * src[off(k) + 16 j + lane], with
 * taps k = (ci, ky, kx) at off(k) = ci cs + ky wp + kx, i < MR, j < NV. The
 * weights are packed [k][MRB].
 */
CD__ALWAYS_INLINE CD__AVX512 void dense_mk(const int MR, const int NV, const float *src, int64_t cs,
                                           int64_t wp, int64_t C, int64_t kh, int64_t kw,
                                           const float *wpk, const mk_out *o)
{
    /* Every loop over i and j is unrolled in full so that acc[][] lives in
     * registers; a loop left rolled would put it on the stack. */
    __m512 acc[MRB][8];
    const __mmask16 tail = o->tail;
    CD__UNROLL
    for (int i = 0; i < MR; i++) {
        CD__UNROLL
        for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();
    }
    for (int64_t ci = 0; ci < C; ci++) {
        for (int64_t ky = 0; ky < kh; ky++) {
            const float *row = src + ci * cs + ky * wp;
            for (int64_t kx = 0; kx < kw; kx++, wpk += MRB) {
                __m512 x[8];
                CD__UNROLL
                for (int j = 0; j < NV - 1; j++) x[j] = _mm512_loadu_ps(row + kx + 16 * j);
                x[NV - 1] = _mm512_maskz_loadu_ps(tail, row + kx + 16 * (NV - 1));
                CD__UNROLL
                for (int i = 0; i < MR; i++) {
                    const __m512 w = _mm512_set1_ps(wpk[i]);
                    CD__UNROLL
                    for (int j = 0; j < NV; j++) acc[i][j] = _mm512_fmadd_ps(w, x[j], acc[i][j]);
                }
            }
        }
    }
    if (o->buf) {
        CD__UNROLL
        for (int i = 0; i < MR; i++) {
            CD__UNROLL
            for (int j = 0; j < NV; j++) _mm512_storeu_ps(o->buf + i * o->ld + 16 * j, acc[i][j]);
        }
        return;
    }
    CD__UNROLL
    for (int j = 0; j < NV; j++) {
        const int64_t n = o->nvalid - 16 * j;
        const __mmask16 m = n >= 16  ? (__mmask16)0xFFFF
                            : n <= 0 ? (__mmask16)0
                                     : (__mmask16)((1u << n) - 1u);
        CD__UNROLL
        for (int i = 0; i < MR; i++) {
            if (i >= o->rows) continue;
            float *d = o->dst + i * o->cs + 16 * j;
            __m512 v = acc[i][j];
            if (o->accumulate)
                v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v);
            else if (o->bias)
                v = _mm512_add_ps(v, _mm512_set1_ps(o->bias[i]));
            _mm512_mask_storeu_ps(d, m, v);
        }
    }
}

#define DENSE_MK(MR, NV)                                                                  \
    static CD__AVX512 void dense_mk_##MR##x##NV(const float *src, int64_t cs, int64_t wp, \
                                                int64_t C, int64_t kh, int64_t kw,        \
                                                const float *wpk, const mk_out *o)        \
    {                                                                                     \
        dense_mk(MR, NV, src, cs, wp, C, kh, kw, wpk, o);                                 \
    }
DENSE_MK(8, 3)
DENSE_MK(8, 2)
DENSE_MK(8, 1)
DENSE_MK(4, 6)
DENSE_MK(4, 3)
DENSE_MK(4, 2)
DENSE_MK(4, 1)
DENSE_MK(2, 8)
DENSE_MK(2, 4)
DENSE_MK(2, 2)
DENSE_MK(2, 1)
DENSE_MK(1, 8)
DENSE_MK(1, 4)
DENSE_MK(1, 2)
DENSE_MK(1, 1)

const mk_class cd__mk_classes[4] = {
    {{3, 2, 1, 0}, {dense_mk_8x3, dense_mk_8x2, dense_mk_8x1, NULL}},
    {{6, 3, 2, 1}, {dense_mk_4x6, dense_mk_4x3, dense_mk_4x2, dense_mk_4x1}},
    {{8, 4, 2, 1}, {dense_mk_2x8, dense_mk_2x4, dense_mk_2x2, dense_mk_2x1}},
    {{8, 4, 2, 1}, {dense_mk_1x8, dense_mk_1x4, dense_mk_1x2, dense_mk_1x1}},
};

/*
 * The dense kernel vectorised over output channels, for layers with 16 or
 * more of them: out[16 c + lane][r][i] = sum over taps k = (ci, ky, kx) of
 * w[k][16 c + lane] * rows[r][ci cs + ky wp + kx + i], for NR output rows
 * of NPX consecutive pixels and NCV vectors of channels. Every lane is a
 * real output: no wide positions are wasted. The weights are packed
 * [k][16 NCV]; the results are transposed in registers on the way out.
 */
CD__ALWAYS_INLINE CD__AVX512 void fcv_mk(const int NR, const int NPX, const int NCV,
                                         const float *const *rows, int64_t cs, int64_t wp,
                                         int64_t C, int64_t kh, int64_t kw, const float *w,
                                         const fcv_out *o)
{
    __m512 acc[28][2];
    CD__UNROLL
    for (int a = 0; a < NR * NPX; a++) {
        CD__UNROLL
        for (int c = 0; c < NCV; c++) acc[a][c] = _mm512_setzero_ps();
    }
    for (int64_t ci = 0; ci < C; ci++) {
        for (int64_t ky = 0; ky < kh; ky++) {
            const float *q[4];
            CD__UNROLL
            for (int r = 0; r < NR; r++) q[r] = rows[r] + ci * cs + ky * wp;
            for (int64_t kx = 0; kx < kw; kx++, w += 16 * NCV) {
                /* Opaque pointers, as in dwcv_mk. */
                CD__UNROLL
                for (int r = 0; r < NR; r++) __asm__("" : "+r"(q[r]));
                __m512 wv[2];
                CD__UNROLL
                for (int c = 0; c < NCV; c++) wv[c] = _mm512_loadu_ps(w + 16 * c);
                CD__UNROLL
                for (int r = 0; r < NR; r++) {
                    CD__UNROLL
                    for (int i = 0; i < NPX; i++) {
                        const __m512 b = _mm512_set1_ps(q[r][i]);
                        CD__UNROLL
                        for (int c = 0; c < NCV; c++)
                            acc[r * NPX + i][c] = _mm512_fmadd_ps(b, wv[c], acc[r * NPX + i][c]);
                    }
                    q[r]++;
                }
            }
        }
    }
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    CD__UNROLL
    for (int c = 0; c < NCV; c++) {
        CD__UNROLL
        for (int g0 = 0; g0 < NR * NPX; g0 += 16) {
            /* Sixteen pixels (of up to two rows) x 16 channels at a time. */
            __m512 v[16];
            CD__UNROLL
            for (int i = 0; i < 16; i++)
                v[i] = g0 + i < NR * NPX ? acc[g0 + i][c] : _mm512_setzero_ps();
            cd__transpose16(v);
            CD__UNROLL
            for (int m = 0; m < 16; m++) {
                const int ch = 16 * c + m;
                if (ch >= o->nm) continue;
                const __m512 b = o->bias ? _mm512_set1_ps(o->bias[ch]) : _mm512_setzero_ps();
                CD__UNROLL
                for (int r = 0; r < NR; r++) {
                    if (r * NPX >= g0 + 16 || (r + 1) * NPX <= g0) continue;
                    const int p0 = r * NPX + o->xs > g0 ? r * NPX + o->xs : g0;
                    const int p1 = (r + 1) * NPX < g0 + 16 ? (r + 1) * NPX : g0 + 16;
                    if (p0 >= p1) continue;
                    /* Lanes p0 - g0 .. p1 - g0 to the front, then a masked
                     * store of the row segment. */
                    const __m512 x =
                        _mm512_permutexvar_ps(_mm512_add_epi32(iota, _mm512_set1_epi32(p0 - g0)),
                                              v[m]);
                    const __mmask16 mk = (__mmask16)((1u << (p1 - p0)) - 1u);
                    float *d = o->dst + ch * o->cs + r * o->ld + (p0 - r * NPX);
                    const __m512 y = o->accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, d), x)
                                                   : _mm512_add_ps(x, b);
                    _mm512_mask_storeu_ps(d, mk, y);
                }
            }
        }
    }
}

#define FCV_MK(NR, NPX, NCV)                                                                       \
    CD__AVX512 void cd__fcv_mk_##NR##x##NPX##x##NCV(const float *const *rows, int64_t cs,          \
                                                    int64_t wp, int64_t C, int64_t kh, int64_t kw, \
                                                    const float *w, const fcv_out *o)              \
    {                                                                                              \
        fcv_mk(NR, NPX, NCV, rows, cs, wp, C, kh, kw, w, o);                                       \
    }
FCV_MK(1, 14, 2)
FCV_MK(2, 7, 2)
FCV_MK(2, 14, 1)
FCV_MK(4, 7, 1)
/* One-row forms for the rows left below the last full block. */
FCV_MK(1, 7, 2)
FCV_MK(1, 14, 1)
FCV_MK(1, 7, 1)

/*
 * The weight gradient vectorised over output channels, for layers with 16
 * or more of them: out[r kw + kx][16 c + lane] += sum over output pixels
 * (y, x) of rows[r][y wp + x + kx] * dT[(y Wo + x) ldT + 16 c + lane], for
 * R rows of taps (input channel, kernel row) x KW taps x NCV vectors of
 * output channels. dT is the output gradient transposed to pixel-major.
 * Every lane is a finished sum (no horizontal reduction), and only valid
 * pixels are visited. Rows r >= nr are computed but not written.
 */
CD__ALWAYS_INLINE CD__AVX512 void dwcv_mk(const int R, const int KW, const int NCV,
                                          const float *const *rows, const float *dT, int64_t ldT,
                                          int64_t Ho, int64_t Wo, int64_t wp, int nr, float *out,
                                          int64_t ldo)
{
    __m512 acc[28][2];
    CD__UNROLL
    for (int a = 0; a < R * KW; a++) {
        CD__UNROLL
        for (int c = 0; c < NCV; c++) acc[a][c] = _mm512_setzero_ps();
    }
    const float *d = dT;
    for (int64_t y = 0; y < Ho; y++) {
        const float *sp[8];
        CD__UNROLL
        for (int r = 0; r < R; r++) sp[r] = rows[r] + y * wp;
        for (int64_t x = 0; x < Wo; x++, d += ldT) {
            /* Opaque pointers: otherwise GCC carries the values shared by
             * neighbouring pixels from one iteration to the next through
             * the stack, which is slower than loading them again. */
            CD__UNROLL
            for (int r = 0; r < R; r++) __asm__("" : "+r"(sp[r]));
            __m512 dv[2];
            CD__UNROLL
            for (int c = 0; c < NCV; c++) dv[c] = _mm512_loadu_ps(d + 16 * c);
            CD__UNROLL
            for (int r = 0; r < R; r++) {
                CD__UNROLL
                for (int kx = 0; kx < KW; kx++) {
                    const __m512 b = _mm512_set1_ps(sp[r][kx]);
                    CD__UNROLL
                    for (int c = 0; c < NCV; c++)
                        acc[r * KW + kx][c] = _mm512_fmadd_ps(b, dv[c], acc[r * KW + kx][c]);
                }
                sp[r]++;
            }
        }
    }
    CD__UNROLL
    for (int r = 0; r < R; r++) {
        if (r >= nr) continue;
        CD__UNROLL
        for (int kx = 0; kx < KW; kx++) {
            CD__UNROLL
            for (int c = 0; c < NCV; c++) {
                float *o = out + (r * KW + kx) * ldo + 16 * c;
                _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[r * KW + kx][c]));
            }
        }
    }
}

#define DWCV_MK(KW, R, NCV)                                                                        \
    static CD__AVX512 void dwcv_mk_##KW##_##R##_##NCV(const float *const *rows, const float *dT,   \
                                                      int64_t ldT, int64_t Ho, int64_t Wo,         \
                                                      int64_t wp, int nr, float *out, int64_t ldo) \
    {                                                                                              \
        dwcv_mk(R, KW, NCV, rows, dT, ldT, Ho, Wo, wp, nr, out, ldo);                              \
    }
DWCV_MK(7, 2, 2)
DWCV_MK(7, 3, 1)
DWCV_MK(5, 2, 2)
DWCV_MK(5, 4, 1)
DWCV_MK(3, 4, 2)
DWCV_MK(3, 8, 1)
DWCV_MK(2, 6, 2)
DWCV_MK(2, 8, 1)
DWCV_MK(1, 8, 2)
DWCV_MK(1, 8, 1)

const dwcv_kind cd__dwcv_kinds[] = {
    {7, {2, 3}, {dwcv_mk_7_2_2, dwcv_mk_7_3_1}}, {5, {2, 4}, {dwcv_mk_5_2_2, dwcv_mk_5_4_1}},
    {3, {4, 8}, {dwcv_mk_3_4_2, dwcv_mk_3_8_1}}, {2, {6, 8}, {dwcv_mk_2_6_2, dwcv_mk_2_8_1}},
    {1, {8, 8}, {dwcv_mk_1_8_2, dwcv_mk_1_8_1}},
};

#endif /* CD__CONV_X86 */
