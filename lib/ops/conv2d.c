/*
 * conv2d.c - 2-D convolution with zero padding, stride and groups, forward
 * and backward (see ops.h for the conventions): the descriptor, the choice
 * of path, the bias gradient and the entry points.
 *
 * Six implementations sit behind the one descriptor; which one runs
 * depends only on the shape and the CPU, never on the thread count:
 *
 *   spectral   "same" convolutions with odd kernels of 5x5 and up and 8+
 *              channels each way on AVX-512 CPUs, where products of 2-D
 *              spectra cost a fraction of the direct sums (the CNN's 7x7
 *              layers): conv2d_fft.c.
 *   winograd   3x3, stride 1, pad 1, ungrouped, 16+ channels each way on
 *              AVX-512 CPUs (the UNet's 3x3 layers): 4x4 output tiles from
 *              6x6 input patches, F(4x4, 3x3), 36 channel products per tile
 *              instead of 144 multiply-adds per pixel, for about half the
 *              time of the dense path. It computes the forward and, when
 *              backward may overwrite din, the input gradient (the same
 *              convolution of dout with flipped, transposed weights):
 *              conv2d_winograd.c; and the weight gradient, from the same
 *              tiles' transforms: conv2d_winograd_grad.c. Its rounding
 *              errors are 4 to 15 times the dense path's, within bounds
 *              the tests derive.
 *   pointwise  1x1, stride 1, pad 0, ungrouped, 16+ channels each way on
 *              AVX-512 CPUs (the UNet attention's projections and residual
 *              1x1 layers): a matrix product per image with a broadcast-FMA
 *              micro-kernel, without the dense path's frames; the weight
 *              gradient packs the operand with fewer channels per batch
 *              tile, and the input gradient runs in the same rounds:
 *              conv2d_pointwise.c.
 *   dense      every other non-depthwise convolution on x86-64 CPUs with
 *              AVX-512 (chosen at run time). Each image is copied into
 *              zero-padded frames of row stride Wp (unpadded tensors are
 *              read in place); the output pixel at flat "wide" position
 *              q = y Wp + x reads tap (ci, ky, kx) at
 *              frame[ci][q + ky Wp + kx], so every row of the implicit
 *              im2col matrix is a shifted view of a frame and no column
 *              buffer exists. Stride s becomes stride 1 on space-to-depth
 *              frames (s^2 frames per channel, a ceil(k/s)-tap kernel). The
 *              input gradient is the same convolution of the padded output
 *              gradient with flipped, transposed weights. Two kernel
 *              families do the arithmetic:
 *                - vectorised over pixels: 16 consecutive wide positions
 *                  per vector, the wide positions with x >= W_out wasted;
 *                - vectorised over 16 output channels, the frame value
 *                  broadcast: no waste, used when the other family would
 *                  waste much (small images, 7x7 kernels) and, for the
 *                  weight gradient, whenever there are 16+ outputs.
 *              The driver is conv2d_dense.c, the micro-kernels are in
 *              conv2d_dense_kernels.c.
 *   depthwise  groups == C_in == C_out with stride 1: register-blocked
 *              AVX-512 kernels for 3x3, 5x5 and 7x7, and a portable kernel
 *              (row loops the compiler vectorises) for other sizes and CPUs:
 *              conv2d_depthwise.c.
 *   gemm       everything else on CPUs without AVX-512: im2col +
 *              cblas_sgemm on tiles of images, so the column buffer is
 *              bounded whatever the batch: conv2d_gemm.c.
 *
 * conv2d_internal.h declares what the paths' files share.
 *
 * The BLAS runs single-threaded (threads.c pins it, because OpenBLAS's own
 * threading changes the bits with the thread count). All parallelism comes
 * from cd__parallel_for over fixed tasks in which every output element, and
 * every weight-gradient element, is summed by one task in a fixed order:
 * the bits never depend on the thread count. Weight gradients are summed
 * per batch tile (of a size fixed by the shape) into an accumulator that is
 * added to dweight once, so backward adds the same value every call.
 */
#include "conv2d_internal.h"

#include "conv2d_fft.h"

#include <inttypes.h>
#include <string.h>

enum conv_path {
    PATH_GEMM,
    PATH_DENSE,
    PATH_FFT,
    PATH_WINOGRAD,
    PATH_POINTWISE,
    PATH_DEPTHWISE,
    PATH_DEPTHWISE_PORTABLE
};

/* ---- path selection ------------------------------------------------------ */

/* The tests and the benchmarks hold the convolutions to their portable
 * paths (CD__KERNELS_CONV) or keep the spectral path out
 * (CD__KERNELS_SPECTRAL) with cd__cpu_force_portable (core.h). */
static bool have_avx512(void)
{
#ifdef CD__CONV_X86
    return cd__cpu_use_avx512(CD__KERNELS_CONV);
#else
    return false;
#endif
}

static bool is_depthwise(const cd__conv2d *c)
{
    return c->groups == c->C_in && c->groups == c->C_out;
}

static enum conv_path choose_path(const cd__conv2d *c)
{
    const bool avx512 = have_avx512();
    if (is_depthwise(c) && c->stride == 1 && c->pad < c->kh && c->pad < c->kw) {
        const bool fast = c->kh == c->kw && (c->kh == 3 || c->kh == 5 || c->kh == 7);
        if (fast && avx512) return PATH_DEPTHWISE;
        if (!avx512) return PATH_DEPTHWISE_PORTABLE;
    }
    if (avx512 && cd__cpu_use_avx512(CD__KERNELS_SPECTRAL) && cd__conv2d_fft_suits(c))
        return PATH_FFT;
#ifdef CD__CONV_X86
    if (avx512 && cd__cpu_use_avx512(CD__KERNELS_WINOGRAD) && cd__conv2d_winograd_suits(c))
        return PATH_WINOGRAD;
    if (avx512 && cd__cpu_use_avx512(CD__KERNELS_POINTWISE) && cd__conv2d_pointwise_suits(c))
        return PATH_POINTWISE;
#endif
    return avx512 ? PATH_DENSE : PATH_GEMM;
}

/* ---- init ---------------------------------------------------------------- */

cd_status cd__conv2d_init(cd__conv2d *c, int64_t N, int64_t C_in, int64_t H, int64_t W,
                          int64_t C_out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                          int64_t groups, bool bias)
{
    static const char fn[] = "cd__conv2d_init";
    CD__CHECK_NOT_NULL(c, fn);
    if (N < 1 || C_in < 1 || H < 1 || W < 1 || C_out < 1 || kh < 1 || kw < 1)
        return cd__error(CD_ERR_SHAPE,
                         "%s: sizes must be positive (N %" PRId64 ", C_in %" PRId64 ", H %" PRId64
                         ", W %" PRId64 ", C_out %" PRId64 ", kernel %" PRId64 "x%" PRId64 ")",
                         fn, N, C_in, H, W, C_out, kh, kw);
    if (stride < 1) return cd__error(CD_ERR_RANGE, "%s: stride %" PRId64 " < 1", fn, stride);
    if (pad < 0) return cd__error(CD_ERR_RANGE, "%s: padding %" PRId64 " < 0", fn, pad);
    if (groups < 1 || C_in % groups != 0 || C_out % groups != 0)
        return cd__error(CD_ERR_SHAPE,
                         "%s: groups %" PRId64 " must be positive and "
                         "divide C_in %" PRId64 " and C_out %" PRId64,
                         fn, groups, C_in, C_out);
    /* Keep every index product well inside int64 (and the BLAS int). */
    const int64_t lim = (int64_t)1 << 30;
    if (N > lim || C_in > lim || C_out > lim || H > lim || W > lim || kh > lim || kw > lim ||
        stride > lim || pad > lim)
        return cd__error(CD_ERR_OVERFLOW, "%s: a size exceeds 2^30", fn);
    const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    if (Hp < kh || Wp < kw)
        return cd__error(CD_ERR_SHAPE,
                         "%s: kernel %" PRId64 "x%" PRId64 " exceeds "
                         "the padded input %" PRId64 "x%" PRId64 ": output would be "
                         "smaller than 1x1",
                         fn, kh, kw, Hp, Wp);
    const double per_image = (double)(C_in > C_out ? C_in : C_out) * (double)Hp * (double)Wp;
    const double cols = (double)(C_in / groups) * (double)kh * (double)kw *
                        (double)((Hp - kh) / stride + 1) * (double)((Wp - kw) / stride + 1);
    if (per_image > 1e15 || cols > (double)INT32_MAX || per_image * (double)N > 4e18)
        return cd__error(CD_ERR_OVERFLOW, "%s: tensors too large", fn);

    *c = (cd__conv2d){.N = N,
                      .C_in = C_in,
                      .H = H,
                      .W = W,
                      .C_out = C_out,
                      .kh = kh,
                      .kw = kw,
                      .stride = stride,
                      .pad = pad,
                      .groups = groups,
                      .bias = bias};
    c->H_out = (Hp - kh) / stride + 1;
    c->W_out = (Wp - kw) / stride + 1;
    return CD_OK;
}

/* ---- sums for the bias gradient ------------------------------------------- */

/* Sum of x[0..n) in a fixed order: 16 float lanes (vectorisable), then
 * double. */
static double plane_sum(const float *x, int64_t n)
{
    float lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) lane[k] += x[i + k];
    double s = 0.0;
    for (int k = 0; k < 16; k++) s += lane[k];
    for (; i < n; i++) s += x[i];
    return s;
}

typedef struct {
    float *db;
    const float *dout;
    int64_t N, C, HW;
} bias_job;

static void bias_task(void *ctx, int64_t co)
{
    const bias_job *j = ctx;
    double s = 0.0;
    for (int64_t n = 0; n < j->N; n++) s += plane_sum(j->dout + (n * j->C + co) * j->HW, j->HW);
    j->db[co] += (float)s;
}

#ifdef CD__CONV_X86
/* Sums of the same form, 16 float lanes per plane (the last vector
 * masked) then double, but the lanes stay apart in double until the end:
 * the portable loop spends more on each plane's reduction than on its
 * loads when planes are small (7 x 7). */
static CD__AVX512 void bias_task_avx512(void *ctx, int64_t co)
{
    const bias_job *j = ctx;
    const int64_t HW = j->HW, full = HW / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (HW - full)) - 1u);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t n = 0; n < j->N; n++) {
        const float *x = j->dout + (n * j->C + co) * HW;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < full; i += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(x + i));
        if (tail) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail, x + full));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(s), 1))));
    }
    j->db[co] += (float)_mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
#endif

static void bias_backward(float *db, const float *dout, int64_t N, int64_t C, int64_t HW)
{
    bias_job j = {db, dout, N, C, HW};
#ifdef CD__CONV_X86
    if (have_avx512()) {
        cd__parallel_for(C, bias_task_avx512, &j);
        return;
    }
#endif
    cd__parallel_for(C, bias_task, &j);
}

/* ---- the Winograd path's input gradient ------------------------------------ */

#ifdef CD__CONV_X86
/* din = dout convolved with the weights flipped in space and transposed in
 * channels: a 3x3, stride-1, pad-1 convolution from C_out to C_in channels,
 * which the Winograd forward computes. */
static cd__conv2d winograd_adjoint(const cd__conv2d *c)
{
    cd__conv2d a = *c;
    a.C_in = c->C_out, a.C_out = c->C_in, a.bias = false;
    return a;
}

/* Floats of the flipped, transposed weights, rounded up to whole lines. */
static size_t adjoint_weights(const cd__conv2d *c)
{
    return (size_t)cd__round_up(c->C_out * c->C_in * 9, CD__ALIGN / (int64_t)sizeof(float));
}

static size_t winograd_workspace(const cd__conv2d *c)
{
    const cd__conv2d a = winograd_adjoint(c);
    const size_t fwd = cd__conv2d_winograd_workspace(c);
    const size_t bwd = adjoint_weights(c) + cd__conv2d_winograd_workspace(&a);
    const size_t grad = cd__conv2d_winograd_grad_workspace(c);
    const size_t dense = cd__conv2d_dense_workspace(c);
    size_t m = fwd > bwd ? fwd : bwd;
    m = m > grad ? m : grad;
    return m > dense ? m : dense;
}

static void winograd_input_grad(const cd__conv2d *c, float *din, const float *dout,
                                const float *weight, float *ws, cd__task_fn epi, void *epi_ctx)
{
    const cd__conv2d a = winograd_adjoint(c);
    float *wt = ws;
    for (int64_t co = 0; co < c->C_out; co++)
        for (int64_t ci = 0; ci < c->C_in; ci++)
            for (int64_t k = 0; k < 9; k++)
                wt[(ci * c->C_out + co) * 9 + k] = weight[(co * c->C_in + ci) * 9 + 8 - k];
    cd__conv2d_winograd_forward(&a, din, dout, wt, NULL, ws + adjoint_weights(c), epi, epi_ctx);
}
#endif

/* ==== entry points ========================================================== */

/* Buffers start on a cache line whatever the caller's alignment. Every
 * buffer size is a multiple of 16 floats, so aligning the base aligns them
 * all. */

size_t cd__conv2d_workspace(const cd__conv2d *c)
{
    const size_t slack = CD__ALIGN / sizeof(float);
    switch (choose_path(c)) {
#ifdef CD__CONV_X86
    case PATH_DENSE: return cd__conv2d_dense_workspace(c) + slack;
    case PATH_FFT: return cd__conv2d_fft_workspace(c) + slack;
    case PATH_WINOGRAD: return winograd_workspace(c) + slack;
    case PATH_POINTWISE: return cd__conv2d_pointwise_workspace(c) + slack;
#endif
    case PATH_DEPTHWISE:
    case PATH_DEPTHWISE_PORTABLE: return cd__conv2d_depthwise_workspace(c) + slack;
    default: break;
    }
    return cd__conv2d_gemm_workspace(c) + slack;
}

void cd__conv2d_forward_epi(const cd__conv2d *c, float *out, const float *in, const float *weight,
                            const float *bias, float *ws, cd__task_fn epi, void *epi_ctx)
{
    ws = cd__align_ws(ws);
    switch (choose_path(c)) {
#ifdef CD__CONV_X86
    case PATH_DENSE: cd__conv2d_dense_forward(c, out, in, weight, bias, ws, epi, epi_ctx); return;
    case PATH_FFT: cd__conv2d_fft_forward(c, out, in, weight, bias, ws, epi, epi_ctx); return;
    case PATH_WINOGRAD:
        cd__conv2d_winograd_forward(c, out, in, weight, bias, ws, epi, epi_ctx);
        return;
    case PATH_POINTWISE:
        cd__conv2d_pointwise_forward(c, out, in, weight, bias, ws, epi, epi_ctx);
        return;
#endif
    case PATH_DEPTHWISE: cd__conv2d_depthwise_forward(c, out, in, weight, bias, ws, true); break;
    case PATH_DEPTHWISE_PORTABLE:
        cd__conv2d_depthwise_forward(c, out, in, weight, bias, ws, false);
        break;
    default: cd__conv2d_gemm_forward(c, out, in, weight, bias, ws); break;
    }
    if (epi) cd__parallel_for(c->N, epi, epi_ctx);
}

void cd__conv2d_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                        const float *bias, float *ws)
{
    cd__conv2d_forward_epi(c, out, in, weight, bias, ws, NULL, NULL);
}

/* The prepared forms (cd__conv2d_prepared_kind). */
enum { PREPARED_NONE, PREPARED_SPECTRA, PREPARED_WINOGRAD };

int32_t cd__conv2d_prepared_kind(const cd__conv2d *c)
{
    switch (choose_path(c)) {
#ifdef CD__CONV_X86
    case PATH_FFT: return PREPARED_SPECTRA;
    case PATH_WINOGRAD: return PREPARED_WINOGRAD;
#endif
    default: return PREPARED_NONE;
    }
}

size_t cd__conv2d_prepared_size(const cd__conv2d *c)
{
    switch (cd__conv2d_prepared_kind(c)) {
#ifdef CD__CONV_X86
    case PREPARED_SPECTRA: return cd__conv2d_fft_prepared_size(c);
    case PREPARED_WINOGRAD: return cd__conv2d_winograd_prepared_size(c);
#endif
    default: return 0;
    }
}

void cd__conv2d_prepare(const cd__conv2d *c, float *prep, const float *weight, float *ws)
{
    switch (cd__conv2d_prepared_kind(c)) {
#ifdef CD__CONV_X86
    case PREPARED_SPECTRA: cd__conv2d_fft_prepare(c, prep, weight, cd__align_ws(ws)); return;
    case PREPARED_WINOGRAD: cd__conv2d_winograd_prepare(c, prep, weight); return;
#endif
    default: (void)prep, (void)weight, (void)ws; return;
    }
}

void cd__conv2d_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                 const float *prep, const float *bias, float *ws, cd__task_fn epi,
                                 void *epi_ctx)
{
    switch (cd__conv2d_prepared_kind(c)) {
#ifdef CD__CONV_X86
    case PREPARED_SPECTRA:
        cd__conv2d_fft_forward_prepared(c, out, in, prep, bias, cd__align_ws(ws), epi, epi_ctx);
        return;
    case PREPARED_WINOGRAD:
        cd__conv2d_winograd_forward_prepared(c, out, in, prep, bias, ws, epi, epi_ctx);
        return;
#endif
    default: /* never called for these paths */
        (void)out, (void)in, (void)prep, (void)bias, (void)ws, (void)epi, (void)epi_ctx;
        return;
    }
}

/* din_set: overwrite din instead of adding into it. Only the dense,
 * Winograd, pointwise and spectral paths can do that without clearing din
 * first. The
 * Winograd path computes the input gradient only then: adding into din
 * would need a second buffer of its size, so otherwise the dense path
 * computes it. */
static void conv_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                          float *dbias, const float *dout, const float *in, const float *weight,
                          float *ws, cd__task_fn epi, void *epi_ctx)
{
    const enum conv_path path = choose_path(c);
    /* The spectral path reads the bias gradient off its spectra for free. */
    const bool spectral_bias = path == PATH_FFT && (din || dweight);
    if (dbias && c->bias && !spectral_bias)
        bias_backward(dbias, dout, c->N, c->C_out, c->H_out * c->W_out);
    if (!din && !dweight) return;
    ws = cd__align_ws(ws);
    if (din && din_set && path != PATH_DENSE && path != PATH_FFT && path != PATH_WINOGRAD &&
        path != PATH_POINTWISE)
        memset(din, 0, (size_t)(c->N * c->C_in * c->H * c->W) * sizeof *din);
    switch (path) {
#ifdef CD__CONV_X86
    case PATH_WINOGRAD:
        if (dweight) cd__conv2d_winograd_grad(c, dweight, dout, in, ws);
        if (din && din_set) {
            winograd_input_grad(c, din, dout, weight, ws, epi, epi_ctx);
            return;
        }
        if (din) cd__conv2d_dense_backward(c, din, false, NULL, dout, in, weight, ws);
        break;
    case PATH_DENSE:
        cd__conv2d_dense_backward(c, din, din_set, dweight, dout, in, weight, ws);
        break;
    case PATH_POINTWISE:
        cd__conv2d_pointwise_backward(c, din, din_set, dweight, dout, in, weight, ws);
        break;
    case PATH_FFT:
        cd__conv2d_fft_backward(c, din, din_set, dweight, c->bias ? dbias : NULL, dout, in, weight,
                                ws);
        break;
#endif
    case PATH_DEPTHWISE:
        cd__conv2d_depthwise_backward(c, din, dweight, dout, in, weight, ws, true);
        break;
    case PATH_DEPTHWISE_PORTABLE:
        cd__conv2d_depthwise_backward(c, din, dweight, dout, in, weight, ws, false);
        break;
    default: cd__conv2d_gemm_backward(c, din, dweight, dout, in, weight, ws); break;
    }
    if (epi && din) cd__parallel_for(c->N, epi, epi_ctx);
}

/* `in` may be NULL when dweight is (the transposed convolution relies on
 * it). */
void cd__conv2d_backward(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                         const float *dout, const float *in, const float *weight, float *ws)
{
    conv_backward(c, din, false, dweight, dbias, dout, in, weight, ws, NULL, NULL);
}

void cd__conv2d_backward_set(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                             const float *dout, const float *in, const float *weight, float *ws)
{
    conv_backward(c, din, true, dweight, dbias, dout, in, weight, ws, NULL, NULL);
}

void cd__conv2d_backward_set_epi(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                                 const float *dout, const float *in, const float *weight, float *ws,
                                 cd__task_fn epi, void *epi_ctx)
{
    conv_backward(c, din, true, dweight, dbias, dout, in, weight, ws, epi, epi_ctx);
}
