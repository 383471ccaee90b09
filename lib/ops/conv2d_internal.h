/*
 * conv2d_internal.h - what the files of conv2d.c's paths share (internal to
 * lib/ops): the AVX-512 target macros, integer helpers, padded frames,
 * task lists and the entry points of each path. conv2d.c picks the path
 * (see its header comment); every path follows the conventions of ops.h.
 */
#ifndef CD_CONV2D_INTERNAL_H
#define CD_CONV2D_INTERNAL_H

#include "ops.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && \
    !defined(CD_CONV_PORTABLE_ONLY)
#define CD__CONV_X86 1
#include <immintrin.h>
#define CD__AVX512 __attribute__((target("avx512f")))
#define CD__ALWAYS_INLINE static inline __attribute__((always_inline))
#define CD__UNROLL _Pragma("GCC unroll 32")
#endif

#ifdef CD__CONV_X86
/* In place: r[j] lane i becomes r[i] lane j (unpack 32- and 64-bit, then
 * two rounds of 128-bit lane shuffles). */
CD__ALWAYS_INLINE CD__AVX512 void cd__transpose16(__m512 *r)
{
    __m512 t[16], u[16];
    CD__UNROLL
    for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    CD__UNROLL
    for (int b = 0; b < 4; b++) {
        const __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
        u[4 * b + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* u[4b + m] lane L now holds column 4L + m of rows 4b..4b+3. */
    CD__UNROLL
    for (int m = 0; m < 4; m++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        const __m512 x2 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        const __m512 x3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(x0, x1, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(x2, x3, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(x2, x3, 0xDD);
    }
}
#endif

/* ---- shared by the direct paths (dense and depthwise) -------------------- */

/* Images per batch tile of the direct kernels: enough to amortise the
 * weight-gradient reductions and the cost of waking the workers. */
#define CD__DIRECT_TILE 16
/* Tiles shrink so that one tile's buffers stay below this many floats. */
#define CD__TILE_BUDGET ((int64_t)1 << 21)

static inline int64_t cd__min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t cd__max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t cd__ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t cd__round_up(int64_t a, int64_t b) { return cd__ceil_div(a, b) * b; }

/* ws moved up to the next cache line (at most CD__ALIGN bytes, which every
 * path's workspace size includes): tasks on different cores write
 * neighbouring buffers, and a line shared across a boundary would bounce
 * between them. */
static inline float *cd__align_ws(float *ws)
{
    const uintptr_t r = (uintptr_t)ws % CD__ALIGN;
    return r ? (float *)(void *)((char *)ws + (CD__ALIGN - r)) : ws;
}

/* Channels as zero-padded frames of Hp x Wp, CS floats apart (CS >= Hp Wp),
 * an image IS floats apart. */
typedef struct {
    int64_t C, H, W;   /* the source planes */
    int64_t top, left; /* zero rows above, zero columns left */
    int64_t Hp, Wp;
    int64_t CS; /* floats per frame */
    int64_t IS; /* floats per image, a multiple of 16 */
} cd__framing;

/* Frame (and the slack up to CS) of one plane. Rows are short (28 floats
 * at the decoders' shapes), so plain loops beat memcpy/memset calls.
 * Static rather than defined once for all files: the direct paths then
 * compile their calls to it exactly as when it shared their file (GCC
 * sees which registers it clobbers). Unused in the other paths' files. */
__attribute__((unused)) static void cd__pad_plane(float *dst, const float *src,
                                                  const cd__framing *f)
{
    const int64_t Wp = f->Wp, left = f->left, W = f->W;
    for (int64_t i = 0; i < f->top * Wp; i++) dst[i] = 0.0f;
    float *d = dst + f->top * Wp;
    for (int64_t y = 0; y < f->H; y++, d += Wp) {
        const float *s = src + y * W;
        for (int64_t x = 0; x < left; x++) d[x] = 0.0f;
        for (int64_t x = 0; x < W; x++) d[left + x] = s[x];
        for (int64_t x = left + W; x < Wp; x++) d[x] = 0.0f;
    }
    const int64_t rest = f->CS - (f->top + f->H) * Wp;
    for (int64_t i = 0; i < rest; i++) d[i] = 0.0f;
}

/* ---- task lists ------------------------------------------------------------ */

/* Several kinds of independent tasks in one cd__parallel_for, so a phase
 * costs one wake-up of the workers and the kinds share the threads. */
typedef struct {
    cd__task_fn fn[4];
    void *ctx[4];
    int64_t n[4];
    int count;
} cd__task_list;

static inline void cd__tasks_add(cd__task_list *l, cd__task_fn fn, void *ctx, int64_t n)
{
    if (n <= 0) return;
    l->fn[l->count] = fn;
    l->ctx[l->count] = ctx;
    l->n[l->count] = n;
    l->count++;
}

static inline void cd__tasks_one(void *ctx, int64_t i)
{
    const cd__task_list *l = ctx;
    for (int k = 0; k < l->count; k++) {
        if (i < l->n[k]) {
            l->fn[k](l->ctx[k], i);
            return;
        }
        i -= l->n[k];
    }
}

static inline void cd__tasks_run(cd__task_list *l)
{
    int64_t total = 0;
    for (int k = 0; k < l->count; k++) total += l->n[k];
    if (total > 0) cd__parallel_for(total, cd__tasks_one, l);
    l->count = 0;
}

/* ---- the paths ----------------------------------------------------------- */

/*
 * Each path's workspace is counted in floats, and its ws is CD__ALIGN-
 * aligned. Backward adds into din and dweight (either may be NULL) unless
 * it takes din_set; conv2d.c computes the bias gradient, and clears din
 * for the paths without din_set.
 */

#ifdef CD__CONV_X86
/* AVX-512 only. Runs epi(epi_ctx, n) for every image n itself. */
size_t cd__conv2d_dense_workspace(const cd__conv2d *c);
void cd__conv2d_dense_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                              const float *bias, float *ws, cd__task_fn epi, void *epi_ctx);
void cd__conv2d_dense_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                               const float *dout, const float *in, const float *weight, float *ws);

/* AVX-512 only: Winograd F(4x4, 3x3) forward for 3x3, stride 1, pad 1,
 * groups 1 (any channel counts; suits says where it may pay). Runs
 * epi(epi_ctx, n) for every image n itself, and aligns ws itself. */
size_t cd__conv2d_winograd_workspace(const cd__conv2d *c);
bool cd__conv2d_winograd_suits(const cd__conv2d *c);
void cd__conv2d_winograd_forward(const cd__conv2d *c, float *out, const float *in,
                                 const float *weight, const float *bias, float *ws, cd__task_fn epi,
                                 void *epi_ctx);
/* The transformed weights U (prepared_size floats, CD__ALIGN-aligned,
 * independent of N) made once, for forwards with unchanged weights. */
size_t cd__conv2d_winograd_prepared_size(const cd__conv2d *c);
void cd__conv2d_winograd_prepare(const cd__conv2d *c, float *U, const float *weight);
void cd__conv2d_winograd_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                          const float *U, const float *bias, float *ws,
                                          cd__task_fn epi, void *epi_ctx);
/* Adds the weight gradient into dweight; aligns ws itself. */
size_t cd__conv2d_winograd_grad_workspace(const cd__conv2d *c);
void cd__conv2d_winograd_grad(const cd__conv2d *c, float *dweight, const float *dout,
                              const float *in, float *ws);

/* AVX-512 only: 1x1, stride 1, pad 0, groups 1 as matrix products (any
 * channel counts; suits says where it pays). The forward runs
 * epi(epi_ctx, n) for every image n itself; backward overwrites din when
 * din_set, else adds into it, and adds into dweight. Both align ws
 * themselves. */
size_t cd__conv2d_pointwise_workspace(const cd__conv2d *c);
bool cd__conv2d_pointwise_suits(const cd__conv2d *c);
void cd__conv2d_pointwise_forward(const cd__conv2d *c, float *out, const float *in,
                                  const float *weight, const float *bias, float *ws,
                                  cd__task_fn epi, void *epi_ctx);
void cd__conv2d_pointwise_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                                   const float *dout, const float *in, const float *weight,
                                   float *ws);
#endif

/* Stride 1, groups == C_in == C_out. fast: the AVX-512 kernels, for square
 * 3x3, 5x5 and 7x7 kernels on AVX-512 CPUs only; else the portable one. */
size_t cd__conv2d_depthwise_workspace(const cd__conv2d *c);
void cd__conv2d_depthwise_forward(const cd__conv2d *c, float *out, const float *in,
                                  const float *weight, const float *bias, float *ws, bool fast);
void cd__conv2d_depthwise_backward(const cd__conv2d *c, float *din, float *dweight,
                                   const float *dout, const float *in, const float *weight,
                                   float *ws, bool fast);

/* Any shape, any CPU. */
size_t cd__conv2d_gemm_workspace(const cd__conv2d *c);
void cd__conv2d_gemm_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                             const float *bias, float *ws);
void cd__conv2d_gemm_backward(const cd__conv2d *c, float *din, float *dweight, const float *dout,
                              const float *in, const float *weight, float *ws);

#endif /* CD_CONV2D_INTERNAL_H */
