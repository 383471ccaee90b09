/*
 * ops.h - the numerical kernels every decoder is built from, each with a
 * forward and a backward pass (llm.c style). Internal: cd__ names only.
 *
 * Conventions for every op in this header:
 *   - Images are NCHW, row-major: N batch, C channels, H x W pixels.
 *     "HW" below means H*W.
 *   - Outputs come first, then inputs, then parameters; gradient buffers are
 *     prefixed with d.
 *   - Forward overwrites its output. Backward ADDS into every gradient
 *     buffer (inputs and parameters alike), so gradients accumulate across
 *     calls and the caller zeroes them once per step. A NULL gradient
 *     pointer means "not needed" and is skipped.
 *   - Shapes are validated once, where a layer is built (the *_init
 *     functions return a status); the kernels themselves trust their
 *     arguments and never allocate: scratch memory comes from a caller
 *     workspace whose size a *_workspace function reports.
 *   - Kernels may run on several threads but give the same bits for every
 *     thread count.
 */
#ifndef CD_OPS_H
#define CD_OPS_H

#include "core.h"

/* ---- conv2d.c: convolution with zero padding, stride and groups -------- */

typedef struct cd__conv2d {
    int64_t N, C_in, H, W; /* input  N x C_in x H x W */
    int64_t C_out, kh, kw; /* weight C_out x (C_in/groups) x kh x kw */
    int64_t stride, pad, groups;
    int64_t H_out, W_out; /* derived: (H + 2 pad - kh) / stride + 1 */
    bool bias;            /* a C_out bias is present */
} cd__conv2d;

/* Fill and validate a descriptor (positive sizes, C_in and C_out divisible
 * by groups, an output of at least 1x1). */
cd_status cd__conv2d_init(cd__conv2d *c, int64_t N, int64_t C_in, int64_t H, int64_t W,
                          int64_t C_out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                          int64_t groups, bool bias);

/* Scratch floats needed by forward and backward (bounded, independent of N
 * beyond a fixed batch tile). */
size_t cd__conv2d_workspace(const cd__conv2d *c);

/* out[N,C_out,H_out,W_out] = conv(in[N,C_in,H,W], weight) + bias */
void cd__conv2d_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                        const float *bias, float *ws);

/* The same, then epi(epi_ctx, n) for every image n (epi may be NULL):
 * where the convolution works image by image the call follows each image
 * in the same task, while its output is still in that core's cache. epi
 * must touch only image n's data. */
void cd__conv2d_forward_epi(const cd__conv2d *c, float *out, const float *in, const float *weight,
                            const float *bias, float *ws, cd__task_fn epi, void *epi_ctx);

/*
 * Forwards with unchanged weights (sampling, evaluation) need not redo
 * the weights' part of the work: the Winograd path's transformed weights
 * and the spectral path's kernel spectra. kind is nonzero on the paths
 * that have such a prepared form, and names it; the form depends on the
 * descriptor but not on N, and takes prepared_size floats, CD__ALIGN-
 * aligned. prepare fills it from the weights (using ws as a forward
 * would); forward_prepared then gives the bits cd__conv2d_forward_epi
 * gives with those weights. Only for c whose kind is nonzero.
 */
int32_t cd__conv2d_prepared_kind(const cd__conv2d *c);
size_t cd__conv2d_prepared_size(const cd__conv2d *c);
void cd__conv2d_prepare(const cd__conv2d *c, float *prep, const float *weight, float *ws);
void cd__conv2d_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                 const float *prep, const float *bias, float *ws, cd__task_fn epi,
                                 void *epi_ctx);

/* Adds dL/d(in), dL/d(weight), dL/d(bias) given dout (= dL/d(out)). */
void cd__conv2d_backward(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                         const float *dout, const float *in, const float *weight, float *ws);
/* The same, but din (if not NULL) is OVERWRITTEN with dL/d(in): saves the
 * caller clearing it (the CNN's activation gradients), and on the direct
 * AVX-512 path a read of it. */
void cd__conv2d_backward_set(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                             const float *dout, const float *in, const float *weight, float *ws);
/* The same, then epi(epi_ctx, n) for every image n of din (din must not
 * be NULL), straight after that image's din where the path allows, as in
 * cd__conv2d_forward_epi. */
void cd__conv2d_backward_set_epi(const cd__conv2d *c, float *din, float *dweight, float *dbias,
                                 const float *dout, const float *in, const float *weight, float *ws,
                                 cd__task_fn epi, void *epi_ctx);

/* ---- conv_transpose2d.c: transposed convolution ------------------------ */

/* PyTorch's ConvTranspose2d with groups = 1, output_padding = 0:
 * weight C_in x C_out x kh x kw, H_out = (H - 1) stride - 2 pad + kh. */
typedef struct cd__convt2d {
    int64_t N, C_in, H, W;
    int64_t C_out, kh, kw, stride, pad;
    int64_t H_out, W_out;
    bool bias;
} cd__convt2d;

cd_status cd__convt2d_init(cd__convt2d *c, int64_t N, int64_t C_in, int64_t H, int64_t W,
                           int64_t C_out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                           bool bias);
size_t cd__convt2d_workspace(const cd__convt2d *c);
void cd__convt2d_forward(const cd__convt2d *c, float *out, const float *in, const float *weight,
                         const float *bias, float *ws);
void cd__convt2d_backward(const cd__convt2d *c, float *din, float *dweight, float *dbias,
                          const float *dout, const float *in, const float *weight, float *ws);

/* ---- linear.c: fully connected layer and batched matrix products ------- */

/* out[B,n_out] = in[B,n_in] W[n_out,n_in]^T + b[n_out] (b may be NULL).
 * Sizes must fit cblas's int. */
void cd__linear_forward(float *out, const float *in, const float *W, const float *b, int64_t B,
                        int64_t n_in, int64_t n_out);
void cd__linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                         const float *W, int64_t B, int64_t n_in, int64_t n_out);

/*
 * For each of `batch` matrices: C = alpha op(A) op(B) + beta C, with op(A)
 * M x K, op(B) K x N and C M x N, all row-major and contiguous per batch
 * entry. transA / transB select op(X) = X^T (then A is stored K x M).
 */
void cd__bmm(float *C, const float *A, const float *B, int64_t batch, int64_t M, int64_t N,
             int64_t K, bool transA, bool transB, float alpha, float beta);

/* ---- gemm_small.c: the linear attention's products, serial -------------- */

/* C (m x n) = alpha A B^T, with A m x k and B n x k (row strides lda, ldb,
 * ldc): for long k. */
void cd__gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float *C, int64_t ldc);
/* C (m x n) = alpha op(A) B, with op(A) m x k (A stored k x m when transA)
 * and B k x n: for small m and k and wide n. */
void cd__gemm_xn(bool transA, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc);

/* ---- act.c: activations and elementwise ops ---------------------------- */

/* Exact GELU: 0.5 x (1 + erf(x / sqrt 2)). */
void cd__gelu_forward(float *out, const float *in, int64_t n);
void cd__gelu_backward(float *din, const float *dout, const float *in, int64_t n);

/* Per-image epilogues for cd__conv2d_forward_epi, on image n of a batch
 * with per_image floats per image: out = GELU(in), or out += in. */
typedef struct cd__image_args {
    float *out;
    const float *in;
    int64_t per_image;
} cd__image_args;
void cd__gelu_image_task(void *args, int64_t n);
void cd__add_image_task(void *args, int64_t n);
/* y[i] += x[i], serially (for a caller's own task). */
void cd__add_into(float *y, const float *x, int64_t n);
/* out *= in, image n: with in = GELU'(x), turns dL/d(GELU(x)) into dL/dx
 * (the same bits as cd__gelu_backward_set). */
void cd__mul_image_task(void *args, int64_t n);

/* For image n: g = GELU(x), and then x = GELU'(x) in place. One pass for
 * a backward that needs both and no longer needs x. */
typedef struct cd__gelu_pair_args {
    float *g, *x;
    int64_t per_image;
} cd__gelu_pair_args;
void cd__gelu_pair_image_task(void *args, int64_t n);

/* out[n,c,:] = x[n,c,:] + v[n,c] over HW pixels (out may equal x). */
void cd__add_channel_forward(float *out, const float *x, const float *v, int64_t N, int64_t C,
                             int64_t HW);
/* dx += dout; dv[n,c] += sum over HW of dout[n,c,:]. */
void cd__add_channel_backward(float *dx, float *dv, const float *dout, int64_t N, int64_t C,
                              int64_t HW);

/* out[N, Ca+Cb, HW] = [a[N,Ca,HW], b[N,Cb,HW]] on the channel axis. */
void cd__concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t Ca,
                        int64_t Cb, int64_t HW);
void cd__concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t Ca, int64_t Cb,
                         int64_t HW);

/* ---- softmax.c: softmax over the last axis ------------------------------ */

/* Softmax over the last axis of rows x cols. */
void cd__softmax_forward(float *out, const float *in, int64_t rows, int64_t cols);
void cd__softmax_backward(float *din, const float *dout, const float *out, int64_t rows,
                          int64_t cols);
/* One row of n > 0, on the calling thread, for callers already inside a
 * task. out may equal in. The backward ADDS into din if add, else
 * overwrites it (then din may equal dout). */
void cd__softmax_row(float *out, const float *in, int64_t n);
void cd__softmax_row_backward(float *din, const float *dout, const float *y, int64_t n, bool add);

/* ---- norm.c: layer norm over the trailing D = C*H*W elements ----------- */

/*
 * out = (x - mean) * rstd * weight + bias per sample, with the biased
 * variance and eps inside the square root. weight and bias (D floats each)
 * may both be NULL for the parameter-free variant. mean and rstd (N floats)
 * are saved for backward.
 */
void cd__layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t N, int64_t D, float eps);
/* One sample's mean and 1 / sqrt(var + eps) over x[0..D), in double with
 * two passes (over 128*28*28 elements a float sum drifts past PyTorch's
 * tolerance), on the calling thread: what every layer norm here uses. */
void cd__ln_stats(const float *x, int64_t D, float eps, float *mean, float *rstd);
void cd__layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout,
                            const float *x, const float *weight, const float *mean,
                            const float *rstd, int64_t N, int64_t D);

/*
 * The CNN block, fused (ln_gelu.c): per sample, over D = C*HW elements,
 *   out = GELU(LN(x)) + v[n, c] over the HW pixels of channel c, where LN
 *   has the affine weight and bias (D floats each, required) and v (N x C)
 *   may be NULL.
 * mean and rstd (N floats) are saved for backward, and so is gp =
 * GELU'(LN(x)) (N x C x HW) unless gp is NULL, as in a forward-only pass.
 */
void cd__ln_gelu_forward(float *out, float *gp, float *mean, float *rstd, const float *x,
                         const float *weight, const float *bias, const float *v, int64_t N,
                         int64_t C, int64_t HW, float eps);
/* Sample n of cd__ln_gelu_forward as a task over these arguments, for
 * cd__conv2d_forward_epi. */
typedef struct cd__ln_gelu_args {
    float *out, *gp, *mean, *rstd;
    const float *x, *weight, *bias, *v;
    int64_t N, C, HW;
    float eps;
} cd__ln_gelu_args;
void cd__ln_gelu_forward_task(void *args, int64_t n);
/*
 * Its backward, from the forward's gp, with one exception to the
 * conventions above that saves the decoder a pass over memory: dx is
 * OVERWRITTEN with dL/dx (it must not be NULL), and may be dout itself.
 * dweight, dbias and dv (dL/dv, the sum of dout over each channel's pixels)
 * are added into as usual and may be NULL. ws holds
 * cd__ln_gelu_workspace(N, C, HW) floats (a quarter of x) for the affine's
 * partial gradients.
 */
size_t cd__ln_gelu_workspace(int64_t N, int64_t C, int64_t HW);
void cd__ln_gelu_backward(float *dx, float *dweight, float *dbias, float *dv, const float *dout,
                          const float *gp, const float *x, const float *weight, const float *mean,
                          const float *rstd, int64_t N, int64_t C, int64_t HW, float *ws);

/* ---- embed.c: the decoders' time encodings ------------------------------ */

/* The CNN's frequencies as float32: f_0 = 0, f_j = 2 pi 1.5^(j-1), for
 * j < n (the report uses n = CD__CNN_NFREQ). */
#define CD__CNN_NFREQ 16
void cd__cnn_frequencies_n(float *freq, int64_t n);
void cd__cnn_frequencies(float freq[CD__CNN_NFREQ]);

/* out[N, 2 nfreq] = [sin(fl32(f tau)), cos(fl32(f tau)) - 1]. */
void cd__cnn_time_encoding(float *out, const float *tau, const float *freq, int64_t N,
                           int64_t nfreq);

/* The UNet's sinusoidal embedding: out[N, dim] = [sin(tau w_j), cos(tau w_j)]
 * with w_j = expf(fl32(j * fl32(-ln(10000) / (half - 1)))), half = dim / 2.
 * dim is even and at least 4. */
void cd__sinusoidal_embedding(float *out, const float *tau, int64_t N, int64_t dim);

/* ---- loss.c: mean losses over n elements ------------------------------- */

/* Return mean((pred - target)^2) accumulated in double. */
double cd__mse_forward(const float *pred, const float *target, int64_t n);
/* dpred += scale * 2 (pred - target) / n */
void cd__mse_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale);
/* Return mean(|pred - target|). */
double cd__l1_forward(const float *pred, const float *target, int64_t n);
/* dpred += scale * sign(pred - target) / n, with sign(0) = 0 as in PyTorch. */
void cd__l1_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale);

#endif /* CD_OPS_H */
