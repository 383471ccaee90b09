/*
 * conv_transpose2d.c - PyTorch's ConvTranspose2d (groups 1, no output
 * padding), forward and backward.
 *
 * A transposed convolution is the adjoint of a convolution, and its weight
 * C_in x C_out x kh x kw is exactly the weight O x I x kh x kw of the
 * convolution "cc" that maps the transposed convolution's output
 * (C_out x H_out x W_out) back to its input (C_in x H x W) with the same
 * kernel, stride and padding. So, with cc:
 *   forward       out  = bias + (input gradient of cc given dout := in)
 *   input grad    din += cc forward of dout
 *   weight grad   dW  += weight gradient of cc with input dout, dout := in
 * and every kernel, tiling and thread rule of conv2d.c carries over: on
 * AVX-512 the stride-2 forward is cc's input gradient on space-to-depth
 * frames; elsewhere it is W^T x per image tile (sgemm) plus col2im.
 * Reading the weight as C_out x C_in instead (a transposed reading) would
 * still run when C_in == C_out, silently wrong; the tests check the
 * formula directly.
 */
#include "ops.h"

#include <inttypes.h>
#include <string.h>

/* Images per tile of the input gradient (cc's forward overwrites, so each
 * tile goes through a scratch buffer and is then added). */
#define CONVT_DIN_TILE 8

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The convolution whose adjoint c is, over n images. Valid whenever c is. */
static cd__conv2d adjoint(const cd__convt2d *c, int64_t n)
{
    cd__conv2d cc = {.N = n,
                     .C_in = c->C_out,
                     .H = c->H_out,
                     .W = c->W_out,
                     .C_out = c->C_in,
                     .kh = c->kh,
                     .kw = c->kw,
                     .stride = c->stride,
                     .pad = c->pad,
                     .groups = 1,
                     .bias = false,
                     .H_out = c->H,
                     .W_out = c->W};
    return cc;
}

cd_status cd__convt2d_init(cd__convt2d *c, int64_t N, int64_t C_in, int64_t H, int64_t W,
                           int64_t C_out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                           bool bias)
{
    static const char fn[] = "cd__convt2d_init";
    CD__CHECK_NOT_NULL(c, fn);
    if (N < 1 || C_in < 1 || H < 1 || W < 1 || C_out < 1 || kh < 1 || kw < 1)
        return cd__error(CD_ERR_SHAPE,
                         "%s: sizes must be positive (N %" PRId64 ", C_in %" PRId64 ", H %" PRId64
                         ", W %" PRId64 ", C_out %" PRId64 ", kernel %" PRId64 "x%" PRId64 ")",
                         fn, N, C_in, H, W, C_out, kh, kw);
    if (stride < 1) return cd__error(CD_ERR_RANGE, "%s: stride %" PRId64 " < 1", fn, stride);
    if (pad < 0) return cd__error(CD_ERR_RANGE, "%s: padding %" PRId64 " < 0", fn, pad);
    const int64_t lim = (int64_t)1 << 30;
    if (N > lim || C_in > lim || C_out > lim || H > lim || W > lim || kh > lim || kw > lim ||
        stride > lim || pad > lim)
        return cd__error(CD_ERR_OVERFLOW, "%s: a size exceeds 2^30", fn);
    const int64_t H_out = (H - 1) * stride - 2 * pad + kh;
    const int64_t W_out = (W - 1) * stride - 2 * pad + kw;
    if (H_out < 1 || W_out < 1)
        return cd__error(CD_ERR_SHAPE,
                         "%s: output %" PRId64 "x%" PRId64 " is smaller "
                         "than 1x1 (padding %" PRId64 " too large)",
                         fn, H_out, W_out, pad);
    /* The adjoint convolution must be valid too (it checks the sizes). */
    cd__conv2d cc;
    cd_status st =
        cd__conv2d_init(&cc, N, C_out, H_out, W_out, C_in, kh, kw, stride, pad, 1, false);
    if (st != CD_OK) return st;
    if (cc.H_out != H || cc.W_out != W)
        return cd__error(CD_ERR_INTERNAL, "%s: adjoint geometry mismatch", fn);
    *c = (cd__convt2d){.N = N,
                       .C_in = C_in,
                       .H = H,
                       .W = W,
                       .C_out = C_out,
                       .kh = kh,
                       .kw = kw,
                       .stride = stride,
                       .pad = pad,
                       .H_out = H_out,
                       .W_out = W_out,
                       .bias = bias};
    return CD_OK;
}

static int64_t din_tile(const cd__convt2d *c) { return min64(c->N, CONVT_DIN_TILE); }

size_t cd__convt2d_workspace(const cd__convt2d *c)
{
    const cd__conv2d cc = adjoint(c, c->N), ct = adjoint(c, din_tile(c));
    const int64_t tmp = din_tile(c) * c->C_in * c->H * c->W;
    const size_t a = cd__conv2d_workspace(&cc);
    const size_t b = (size_t)tmp + cd__conv2d_workspace(&ct);
    return a > b ? a : b;
}

/* Plane tasks: fill with the bias (src NULL) or add src. */
typedef struct {
    float *dst;
    const float *src;
    const float *bias;
    int64_t C, P;
} plane_job;

static void plane_task(void *ctx, int64_t i)
{
    const plane_job *j = ctx;
    float *d = j->dst + i * j->P;
    if (j->src) {
        const float *s = j->src + i * j->P;
        for (int64_t x = 0; x < j->P; x++) d[x] += s[x];
    } else {
        const float b = j->bias ? j->bias[i % j->C] : 0.0f;
        for (int64_t x = 0; x < j->P; x++) d[x] = b;
    }
}

void cd__convt2d_forward(const cd__convt2d *c, float *out, const float *in, const float *weight,
                         const float *bias, float *ws)
{
    plane_job pj = {out, NULL, c->bias ? bias : NULL, c->C_out, c->H_out * c->W_out};
    cd__parallel_for(c->N * c->C_out, plane_task, &pj);
    const cd__conv2d cc = adjoint(c, c->N);
    cd__conv2d_backward(&cc, out, NULL, NULL, in, NULL, weight, ws);
}

typedef struct {
    float *db;
    const float *dout;
    int64_t N, C, P;
} bias_job;

/* Fixed-order channel sum: 16 float lanes per plane, double across. */
static void bias_task(void *ctx, int64_t co)
{
    const bias_job *j = ctx;
    double s = 0.0;
    for (int64_t n = 0; n < j->N; n++) {
        const float *x = j->dout + (n * j->C + co) * j->P;
        float lane[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= j->P; i += 16)
            for (int k = 0; k < 16; k++) lane[k] += x[i + k];
        for (int k = 0; k < 16; k++) s += lane[k];
        for (; i < j->P; i++) s += x[i];
    }
    j->db[co] += (float)s;
}

void cd__convt2d_backward(const cd__convt2d *c, float *din, float *dweight, float *dbias,
                          const float *dout, const float *in, const float *weight, float *ws)
{
    if (dbias && c->bias) {
        bias_job j = {dbias, dout, c->N, c->C_out, c->H_out * c->W_out};
        cd__parallel_for(c->C_out, bias_task, &j);
    }
    if (dweight) {
        const cd__conv2d cc = adjoint(c, c->N);
        cd__conv2d_backward(&cc, NULL, dweight, NULL, in, dout, weight, ws);
    }
    if (din) {
        const int64_t T = din_tile(c), in_img = c->C_in * c->H * c->W;
        const int64_t out_img = c->C_out * c->H_out * c->W_out;
        float *tmp = ws, *cws = ws + T * in_img;
        for (int64_t n0 = 0; n0 < c->N; n0 += T) {
            const int64_t t = min64(T, c->N - n0);
            const cd__conv2d ct = adjoint(c, t);
            cd__conv2d_forward(&ct, tmp, dout + n0 * out_img, weight, NULL, cws);
            plane_job pj = {din + n0 * in_img, tmp, NULL, c->C_in, c->H * c->W};
            cd__parallel_for(t * c->C_in, plane_task, &pj);
        }
    }
}
