/*
 * gemm_small.c - the two product shapes of the UNet's linear attention,
 * serial, for a caller that already runs one task per image:
 *
 *   cd__gemm_nt  C (m x n) = alpha A B^T, A m x k and B n x k, k long:
 *                every entry a dot product of two long rows;
 *   cd__gemm_xn  C (m x n) = alpha op(A) B, op(A) m x k small, B k x n
 *                wide: rows of B scaled and summed.
 *
 * With m, n or k of 16 to 64 on one side and 49 to 784 on the other,
 * cblas_sgemm spends much of its time packing, and OpenBLAS 0.3.21 picks
 * its SSE3 kernels on CPUs it does not know (recent Xeons), where these
 * products took about a tenth of a UNet training step. The AVX-512 loops
 * below need no packing. Their sums run in another order than a BLAS's,
 * so the two paths agree to rounding; which one runs depends only on the
 * CPU (and the CD__KERNELS_GEMM test hook), never on the thread count.
 */
#include "ops.h"
#include "vmath.h"

#include <cblas.h>

#ifdef CD__VMATH_X86
/* Rows of A by rows of B per block of cd__gemm_nt: 16 accumulators. */
#define NT_R 4

/* C[i][j] = alpha dot(A_i, B_j) for an mr x nr block (mr, nr <= NT_R). */
CD__AVX512 static inline __attribute__((always_inline)) void
nt_block(int mr, int nr, int64_t k, float alpha, const float *A, int64_t lda, const float *B,
         int64_t ldb, float *C, int64_t ldc)
{
    __m512 acc[NT_R][NT_R];
    for (int i = 0; i < NT_R; i++)
        for (int j = 0; j < NT_R; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
        const __mmask16 msk = cd__v_mask(k - p);
        __m512 b[NT_R];
        for (int j = 0; j < nr; j++) b[j] = _mm512_maskz_loadu_ps(msk, B + j * ldb + p);
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_maskz_loadu_ps(msk, A + i * lda + p);
            for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) C[i * ldc + j] = alpha * _mm512_reduce_add_ps(acc[i][j]);
}

CD__AVX512 static void nt_avx512(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                                 int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < m; i += NT_R) {
        const int mr = (int)(m - i < NT_R ? m - i : NT_R);
        for (int64_t j = 0; j < n; j += NT_R) {
            const int nr = (int)(n - j < NT_R ? n - j : NT_R);
            /* Full blocks get constant bounds, so the accumulators stay in
             * registers. */
            if (mr == NT_R && nr == NT_R)
                nt_block(NT_R, NT_R, k, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j,
                         ldc);
            else
                nt_block(mr, nr, k, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j,
                         ldc);
        }
    }
}

/* Rows of C by vectors of 16 columns per block of cd__gemm_xn. */
#define XN_R 8
#define XN_V 3

/* C[i][p..] = alpha sum_j a(i, j) B[j][p..] for mr rows (<= XN_R) and nv
 * vectors (<= XN_V) from column p, the last one masked by last. a(i, j) is
 * A[i lda + j], or A[j lda + i] when transA. */
CD__AVX512 static inline __attribute__((always_inline)) void
xn_block(int mr, int nv, __mmask16 last, bool transA, int64_t k, float alpha, const float *A,
         int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    __m512 acc[XN_R][XN_V];
    for (int i = 0; i < XN_R; i++)
        for (int v = 0; v < XN_V; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j++) {
        __m512 b[XN_V];
        for (int v = 0; v < nv; v++)
            b[v] =
                _mm512_maskz_loadu_ps(v == nv - 1 ? last : (__mmask16)0xFFFF, B + j * ldb + 16 * v);
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(transA ? A[j * lda + i] : A[i * lda + j]);
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
    const __m512 s = _mm512_set1_ps(alpha);
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(C + i * ldc + 16 * v, v == nv - 1 ? last : (__mmask16)0xFFFF,
                                  _mm512_mul_ps(s, acc[i][v]));
}

CD__AVX512 static void xn_avx512(bool transA, int64_t m, int64_t n, int64_t k, float alpha,
                                 const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                                 int64_t ldc)
{
    for (int64_t i = 0; i < m; i += XN_R) {
        const int mr = (int)(m - i < XN_R ? m - i : XN_R);
        const float *Ai = transA ? A + i : A + i * lda;
        for (int64_t p = 0; p < n; p += 16 * XN_V) {
            const int64_t left = n - p;
            const int nv = (int)(left >= 16 * XN_V ? XN_V : (left + 15) / 16);
            const __mmask16 last = cd__v_mask(left - 16 * (nv - 1));
            if (mr == XN_R && nv == XN_V && last == (__mmask16)0xFFFF)
                xn_block(XN_R, XN_V, 0xFFFF, transA, k, alpha, Ai, lda, B + p, ldb, C + i * ldc + p,
                         ldc);
            else
                xn_block(mr, nv, last, transA, k, alpha, Ai, lda, B + p, ldb, C + i * ldc + p, ldc);
        }
    }
}
#endif

void cd__gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float *C, int64_t ldc)
{
#ifdef CD__VMATH_X86
    if (cd__cpu_use_avx512(CD__KERNELS_GEMM)) {
        nt_avx512(m, n, k, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, A, (int)lda,
                B, (int)ldb, 0.0f, C, (int)ldc);
}

void cd__gemm_xn(bool transA, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
#ifdef CD__VMATH_X86
    if (cd__cpu_use_avx512(CD__KERNELS_GEMM)) {
        xn_avx512(transA, m, n, k, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, A, (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}
