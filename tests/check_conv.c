/*
 * check_conv.c - conv2d and conv_transpose2d: the fast kernels against a
 * naive reference (test-only), gradient checks through the shared helper,
 * descriptor errors, batch tiles, thread-count independence and bounded
 * workspaces. Every parity and thread test runs twice: on the best path
 * for this CPU and with the portable paths forced; the parity test also
 * runs the dense kernels on the shapes the spectral, Winograd and
 * pointwise paths take.
 */
#include "test_util.h"

#include <math.h>
#include <sys/mman.h>

#include "gradcheck.h"
#include "ops/conv2d_fft.h"
#include "ops/conv2d_internal.h"
#include "ops/ops.h"

static float *fbuf(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- naive references (double accumulation) ------------------------------ */

static void ref_conv2d(const cd__conv2d *c, float *out, const float *in, const float *w,
                       const float *b)
{
    const int64_t Cig = c->C_in / c->groups, Cog = c->C_out / c->groups;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t co = 0; co < c->C_out; co++) {
            const int64_t g = co / Cog;
            for (int64_t oy = 0; oy < c->H_out; oy++)
                for (int64_t ox = 0; ox < c->W_out; ox++) {
                    double s = c->bias ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < Cig; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                const int64_t iy = oy * c->stride - c->pad + ky;
                                const int64_t ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                s +=
                                    (double)
                                        in[((n * c->C_in + g * Cig + ci) * c->H + iy) * c->W + ix] *
                                    w[((co * Cig + ci) * c->kh + ky) * c->kw + kx];
                            }
                    out[((n * c->C_out + co) * c->H_out + oy) * c->W_out + ox] = (float)s;
                }
        }
}

/* Gradients written (not added) into din, dw, db. */
static void ref_conv2d_backward(const cd__conv2d *c, float *din, float *dw, float *db,
                                const float *dout, const float *in, const float *w)
{
    const int64_t Cig = c->C_in / c->groups, Cog = c->C_out / c->groups;
    const int64_t nin = c->N * c->C_in * c->H * c->W, nw = c->C_out * Cig * c->kh * c->kw;
    double *a = calloc((size_t)nin, sizeof *a), *bw = calloc((size_t)nw, sizeof *bw);
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t co = 0; co < c->C_out; co++) {
            const int64_t g = co / Cog;
            for (int64_t oy = 0; oy < c->H_out; oy++)
                for (int64_t ox = 0; ox < c->W_out; ox++) {
                    const double d = dout[((n * c->C_out + co) * c->H_out + oy) * c->W_out + ox];
                    for (int64_t ci = 0; ci < Cig; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                const int64_t iy = oy * c->stride - c->pad + ky;
                                const int64_t ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                const int64_t ii =
                                    ((n * c->C_in + g * Cig + ci) * c->H + iy) * c->W + ix;
                                const int64_t wi = ((co * Cig + ci) * c->kh + ky) * c->kw + kx;
                                a[ii] += d * w[wi];
                                bw[wi] += d * in[ii];
                            }
                }
        }
    for (int64_t i = 0; i < nin; i++) din[i] = (float)a[i];
    for (int64_t i = 0; i < nw; i++) dw[i] = (float)bw[i];
    const int64_t P = c->H_out * c->W_out;
    for (int64_t co = 0; co < c->C_out; co++) {
        double s = 0.0;
        for (int64_t n = 0; n < c->N; n++)
            for (int64_t p = 0; p < P; p++) s += dout[(n * c->C_out + co) * P + p];
        db[co] = (float)s;
    }
    free(a);
    free(bw);
}

/* The transposed convolution's defining formula (docs/models.md,
 * Decoders: UNet): y[o,p,q] = b[o] + sum_i sum_{ki,kj}
 * x[i,(p+pad-ki)/s,(q+pad-kj)/s] W[i,o,ki,kj] where divisible and in range. */
static void ref_convt(const cd__convt2d *c, float *out, const float *in, const float *w,
                      const float *b)
{
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->C_out; o++)
            for (int64_t p = 0; p < c->H_out; p++)
                for (int64_t q = 0; q < c->W_out; q++) {
                    double s = c->bias ? b[o] : 0.0;
                    for (int64_t i = 0; i < c->C_in; i++)
                        for (int64_t ki = 0; ki < c->kh; ki++)
                            for (int64_t kj = 0; kj < c->kw; kj++) {
                                const int64_t py = p + c->pad - ki, qx = q + c->pad - kj;
                                if (py < 0 || qx < 0 || py % c->stride || qx % c->stride) continue;
                                const int64_t y = py / c->stride, x = qx / c->stride;
                                if (y >= c->H || x >= c->W) continue;
                                s += (double)in[((n * c->C_in + i) * c->H + y) * c->W + x] *
                                     w[((i * c->C_out + o) * c->kh + ki) * c->kw + kj];
                            }
                    out[((n * c->C_out + o) * c->H_out + p) * c->W_out + q] = (float)s;
                }
}

/* max |a - r| / max |r|, asserted below tol; returns it. */
static double compare(const char *what, const float *a, const float *r, int64_t n, double tol)
{
    double rmax = 0.0, emax = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(a[i]), "%s: element %lld is not finite", what, (long long)i);
        if (fabs(r[i]) > rmax) rmax = fabs(r[i]);
        const double e = fabs((double)a[i] - r[i]);
        if (e > emax) emax = e, at = i;
    }
    const double rel = emax / (rmax + 1e-30);
    ck_assert_msg(rel <= tol,
                  "%s: max error %.3e relative to max |ref| %.3e (element %lld: "
                  "%.9g vs %.9g)",
                  what, rel, rmax, (long long)at, a[at], r[at]);
    return rel;
}

/* ---- conv2d shapes ---------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t N, C_in, H, W, C_out, kh, kw, stride, pad, groups;
    bool bias;
} conv_shape;

/* Shapes that cover every path and their edges: MRB tails (C_out 1, 3, 5,
 * 12, 13), wide-vector tails, non-square and odd images, and the
 * decoders' layers. */
static const conv_shape parity_shapes[] = {
    {"k7p3 16->32 28x28", 2, 16, 28, 28, 32, 7, 7, 1, 3, 1, true},
    {"k7p3 1->16", 3, 1, 28, 28, 16, 7, 7, 1, 3, 1, true},
    {"k3p1 16->1 (last layer)", 3, 16, 28, 28, 1, 3, 3, 1, 1, 1, true},
    {"k3p1 5x7 3->13", 3, 3, 5, 7, 13, 3, 3, 1, 1, 1, true},
    {"k3p1 6x4 4->5 no bias", 1, 4, 6, 4, 5, 3, 3, 1, 1, 1, false},
    {"k3p0 valid 9x11 3->12", 2, 3, 9, 11, 12, 3, 3, 1, 0, 1, true},
    {"k5p1 13x6 2->3", 2, 2, 13, 6, 3, 5, 5, 1, 1, 1, true},
    {"k3x5 p2 7x9 3->6", 2, 3, 7, 9, 6, 3, 5, 1, 2, 1, true},
    {"1x1 32->64 14x14", 3, 32, 14, 14, 64, 1, 1, 1, 0, 1, true},
    {"1x1 7->3 5x7 no bias", 2, 7, 5, 7, 3, 1, 1, 1, 0, 1, false},
    {"1x1 p1", 2, 3, 4, 5, 4, 1, 1, 1, 1, 1, true},
    {"k4s2p1 down 32 28x28", 2, 32, 28, 28, 32, 4, 4, 2, 1, 1, true},
    {"k4s2p1 7x9 odd", 3, 3, 7, 9, 5, 4, 4, 2, 1, 1, true},
    {"k3s2p1 9x7 odd", 3, 3, 9, 7, 4, 3, 3, 2, 1, 1, true},
    {"k3s3p0 10x8", 2, 2, 10, 8, 3, 3, 3, 3, 0, 1, false},
    {"k5s3p2 11x13", 2, 3, 11, 13, 4, 5, 5, 3, 2, 1, true},
    {"k2s4p0 9x10", 2, 2, 9, 10, 3, 2, 2, 4, 0, 1, true},
    {"groups 2", 3, 4, 6, 5, 6, 3, 3, 1, 1, 2, true},
    {"groups 3 stride 2", 2, 6, 7, 7, 9, 3, 3, 2, 1, 3, true},
    {"depthwise 7x7 32 28x28", 2, 32, 28, 28, 32, 7, 7, 1, 3, 32, true},
    {"depthwise 7x7 64 14x14", 2, 64, 14, 14, 64, 7, 7, 1, 3, 64, true},
    {"depthwise 7x7 8 7x7", 3, 8, 7, 7, 8, 7, 7, 1, 3, 8, true},
    {"depthwise 7x7 5x9 odd", 3, 3, 5, 9, 3, 7, 7, 1, 3, 3, false},
    {"depthwise 7x7 40x37", 1, 2, 40, 37, 2, 7, 7, 1, 3, 2, true},
    {"depthwise 3x3 p1", 2, 4, 9, 6, 4, 3, 3, 1, 1, 4, true},
    {"depthwise 5x5 p0", 2, 4, 9, 11, 4, 5, 5, 1, 0, 4, true},
    {"depthwise 3x5 p1", 2, 3, 6, 8, 3, 3, 5, 1, 1, 3, true},
    {"depthwise 3x3 s2", 2, 4, 9, 8, 4, 3, 3, 2, 1, 4, true},
    {"depthwise x2 multiplier", 2, 3, 6, 6, 6, 3, 3, 1, 1, 3, true},
    {"kernel = image 5x5", 2, 2, 5, 5, 3, 5, 5, 1, 0, 1, true},
    {"1x1 image", 2, 3, 1, 1, 4, 3, 3, 1, 1, 1, true},
    {"wide 3x70", 1, 2, 3, 70, 3, 3, 3, 1, 1, 1, true},
    /* Layers with 16 or more outputs take the channel-vectorised weight
     * gradient: full and partial 32-channel blocks, 16-channel blocks. */
    {"k3p1 8->48 14x14", 3, 8, 14, 14, 48, 3, 3, 1, 1, 1, true},
    {"k3p1 5->20 9x11", 2, 5, 9, 11, 20, 3, 3, 1, 1, 1, true},
    {"k5p2 3->17 6x7", 2, 3, 6, 7, 17, 5, 5, 1, 2, 1, false},
    {"k5p1 4->40 8x5", 2, 4, 8, 5, 40, 5, 5, 1, 1, 1, true},
    {"k3p1 64->128 7x7", 2, 64, 7, 7, 128, 3, 3, 1, 1, 1, true},
    {"1x1 80->24 7x9", 3, 80, 7, 9, 24, 1, 1, 1, 0, 1, true},
    {"1x1 70->33 5x5", 2, 70, 5, 5, 33, 1, 1, 1, 0, 1, true},
    {"k2s2p0 6->16 8x6", 2, 6, 8, 6, 16, 2, 2, 2, 0, 1, true},
    /* Channel-vectorised forward and input gradient (32+ channels, rows of
     * 14 or pairs of rows of 7 pixels, odd heights). */
    {"k7p3 32->32 14x14", 2, 32, 14, 14, 32, 7, 7, 1, 3, 1, true},
    {"k3p1 32->64 8x7", 3, 32, 8, 7, 64, 3, 3, 1, 1, 1, true},
    {"k3p1 40->96 7x7", 2, 40, 7, 7, 96, 3, 3, 1, 1, 1, false},
    {"k7p3 8->16 7x7", 3, 8, 7, 7, 16, 7, 7, 1, 3, 1, true},
    {"k7p3 32->16 28x28", 2, 32, 28, 28, 16, 7, 7, 1, 3, 1, true},
    /* The spectral path: channels that fill no vector, a 5x5 kernel on a
     * 13x22 plane, a 64x64 transform, a batch past one tile of 64. */
    {"k5p2 20->12 13x22", 3, 20, 13, 22, 12, 5, 5, 1, 2, 1, true},
    {"k7p3 9->40 40x36 no bias", 2, 9, 40, 36, 40, 7, 7, 1, 3, 1, false},
    {"k7p3 16->16 12x12 N=67", 67, 16, 12, 12, 16, 7, 7, 1, 3, 1, true},
};
#define N_PARITY ((int)(sizeof parity_shapes / sizeof parity_shapes[0]))

typedef struct {
    cd__conv2d c;
    int64_t n_in, n_w, n_out;
    float *in, *w, *b, *out, *dout, *din, *dw, *db, *ws;
} conv_case;

static void conv_case_make(conv_case *k, const conv_shape *s, uint64_t seed)
{
    memset(k, 0, sizeof *k);
    CD_ASSERT_OK(cd__conv2d_init(&k->c, s->N, s->C_in, s->H, s->W, s->C_out, s->kh, s->kw,
                                 s->stride, s->pad, s->groups, s->bias));
    const cd__conv2d *c = &k->c;
    k->n_in = c->N * c->C_in * c->H * c->W;
    k->n_w = c->C_out * (c->C_in / c->groups) * c->kh * c->kw;
    k->n_out = c->N * c->C_out * c->H_out * c->W_out;
    k->in = fbuf(k->n_in);
    k->w = fbuf(k->n_w);
    k->b = fbuf(c->C_out);
    k->out = fbuf(k->n_out);
    k->dout = fbuf(k->n_out);
    k->din = fbuf(k->n_in);
    k->dw = fbuf(k->n_w);
    k->db = fbuf(c->C_out);
    k->ws = fbuf((int64_t)cd__conv2d_workspace(c));
    const float ws = 1.0f / sqrtf((float)(k->n_w / c->C_out));
    cd_gc_randn(k->in, k->n_in, seed, 1.0f);
    cd_gc_randn(k->w, k->n_w, seed + 1, ws);
    cd_gc_randn(k->b, c->C_out, seed + 2, 0.5f);
    cd_gc_randn(k->dout, k->n_out, seed + 3, 1.0f);
}

static void conv_case_free(conv_case *k)
{
    free(k->in), free(k->w), free(k->b), free(k->out), free(k->dout);
    free(k->din), free(k->dw), free(k->db), free(k->ws);
}

/* Forward and backward of one shape against the reference; backward also
 * adds onto non-zero gradients, to check the accumulate rule at scale. */
static double conv_parity_one(const conv_shape *s, bool portable, bool direct)
{
    cd__cpu_force_portable(CD__KERNELS_CONV, portable);
    cd__cpu_force_portable(CD__KERNELS_SPECTRAL, direct);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, direct);
    cd__cpu_force_portable(CD__KERNELS_POINTWISE, direct);
    const char *mode = portable ? " (portable)" : direct ? " (direct)" : "";
    conv_case k;
    conv_case_make(&k, s, 100);
    const cd__conv2d *c = &k.c;
    float *rout = fbuf(k.n_out), *rdin = fbuf(k.n_in), *rdw = fbuf(k.n_w), *rdb = fbuf(c->C_out);
    char what[160];
    double worst = 0.0, e;

    cd__conv2d_forward(c, k.out, k.in, k.w, k.b, k.ws);
    ref_conv2d(c, rout, k.in, k.w, k.b);
    snprintf(what, sizeof what, "%s%s forward", s->name, mode);
    e = compare(what, k.out, rout, k.n_out, 1e-5);
    worst = fmax(worst, e);

    ref_conv2d_backward(c, rdin, rdw, rdb, k.dout, k.in, k.w);
    /* Start from 1.0 everywhere; subtract it again before comparing. */
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] = 1.0f;
    for (int64_t i = 0; i < k.n_w; i++) k.dw[i] = 1.0f;
    for (int64_t i = 0; i < c->C_out; i++) k.db[i] = 1.0f;
    cd__conv2d_backward(c, k.din, k.dw, k.db, k.dout, k.in, k.w, k.ws);
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] -= 1.0f;
    for (int64_t i = 0; i < k.n_w; i++) k.dw[i] -= 1.0f;
    for (int64_t i = 0; i < c->C_out; i++) k.db[i] -= 1.0f;
    /* The 1.0 offset costs float resolution of about 6e-8 absolute. */
    snprintf(what, sizeof what, "%s%s din", s->name, mode);
    e = compare(what, k.din, rdin, k.n_in, 2e-5);
    worst = fmax(worst, e);
    snprintf(what, sizeof what, "%s%s dweight", s->name, mode);
    e = compare(what, k.dw, rdw, k.n_w, 2e-5);
    worst = fmax(worst, e);
    if (c->bias) {
        snprintf(what, sizeof what, "%s%s dbias", s->name, mode);
        e = compare(what, k.db, rdb, c->C_out, 2e-5);
        worst = fmax(worst, e);
    }
    /* backward_set overwrites din, whatever it held (NaN here). */
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] = NAN;
    cd__conv2d_backward_set(c, k.din, NULL, NULL, k.dout, k.in, k.w, k.ws);
    snprintf(what, sizeof what, "%s%s din (set)", s->name, mode);
    e = compare(what, k.din, rdin, k.n_in, 2e-5);
    worst = fmax(worst, e);
    free(rout), free(rdin), free(rdw), free(rdb);
    conv_case_free(&k);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
    cd__cpu_force_portable(CD__KERNELS_SPECTRAL, false);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
    cd__cpu_force_portable(CD__KERNELS_POINTWISE, false);
    return worst;
}

START_TEST(conv2d_matches_reference)
{
    const conv_shape *s = &parity_shapes[_i];
    const double a = conv_parity_one(s, false, false), d = conv_parity_one(s, false, true),
                 b = conv_parity_one(s, true, false);
    printf("parity %-28s fast %.2e direct %.2e portable %.2e\n", s->name, a, d, b);
}
END_TEST

/* ---- gradient checks -------------------------------------------------------- */

/* The loss is linear in each input separately, so a large step costs no
 * truncation error and divides the noise of the float forwards: with the
 * default 1e-2 the directional check of a well-cancelling sum can miss
 * by a few 1e-3. */
static cd_gc_opts conv_gc_opts(void)
{
    cd_gc_opts o = cd_gc_default_opts();
    o.eps = 0.1;
    return o;
}

static void conv_gc_forward(void *ctx)
{
    conv_case *k = ctx;
    cd__conv2d_forward(&k->c, k->out, k->in, k->w, k->b, k->ws);
}

static void conv_gc_backward(void *ctx)
{
    conv_case *k = ctx;
    cd__conv2d_backward(&k->c, k->din, k->dw, k->c.bias ? k->db : NULL, k->dout, k->in, k->w,
                        k->ws);
}

static const conv_shape grad_shapes[] = {
    {"k7p3 batch1", 1, 2, 8, 8, 3, 7, 7, 1, 3, 1, true},
    {"k7p3 batch3 5x7", 3, 2, 5, 7, 4, 7, 7, 1, 3, 1, true},
    {"k3p1 batch3 6x4", 3, 3, 6, 4, 2, 3, 3, 1, 1, 1, true},
    {"k3p1 batch1 no bias", 1, 2, 5, 7, 3, 3, 3, 1, 1, 1, false},
    {"k3p1 2->16 batch3 5x6", 3, 2, 5, 6, 16, 3, 3, 1, 1, 1, true},
    {"k7p3 1->32 batch2 6x5", 2, 1, 6, 5, 32, 7, 7, 1, 3, 1, true},
    {"k3p1 32->32 batch2 7x7", 2, 32, 7, 7, 32, 3, 3, 1, 1, 1, true},
    {"k5p2 8->9 batch2 9x9 spectral", 2, 8, 9, 9, 9, 5, 5, 1, 2, 1, true},
    {"1x1 batch3", 3, 4, 5, 7, 3, 1, 1, 1, 0, 1, true},
    {"k4s2p1 down 8x8", 2, 3, 8, 8, 3, 4, 4, 2, 1, 1, true},
    {"k4s2p1 down 7x5 odd", 3, 2, 7, 5, 3, 4, 4, 2, 1, 1, true},
    {"k3s2p1 5x7 odd", 1, 2, 5, 7, 2, 3, 3, 2, 1, 1, false},
    {"groups 2", 3, 4, 5, 6, 4, 3, 3, 1, 1, 2, true},
    {"depthwise 7x7 batch1", 1, 3, 8, 8, 3, 7, 7, 1, 3, 3, true},
    {"depthwise 7x7 batch3 5x7", 3, 2, 5, 7, 2, 7, 7, 1, 3, 2, true},
    {"depthwise 7x7 6x4 no bias", 3, 2, 6, 4, 2, 7, 7, 1, 3, 2, false},
};
#define N_GRAD ((int)(sizeof grad_shapes / sizeof grad_shapes[0]))

static double conv_gradcheck_one(const conv_shape *s, bool portable)
{
    cd__cpu_force_portable(CD__KERNELS_CONV, portable);
    conv_case k;
    conv_case_make(&k, s, 7);
    char name[128];
    snprintf(name, sizeof name, "conv %s%s", s->name, portable ? " P" : "");
    cd_gc_op op = {.name = name,
                   .ctx = &k,
                   .forward = conv_gc_forward,
                   .backward = conv_gc_backward,
                   .out = k.out,
                   .dout = k.dout,
                   .n_out = k.n_out};
    cd_gc_add_input(&op, "in", k.in, k.din, k.n_in);
    cd_gc_add_input(&op, "weight", k.w, k.dw, k.n_w);
    if (s->bias) cd_gc_add_input(&op, "bias", k.b, k.db, k.c.C_out);
    const cd_gc_opts opts = conv_gc_opts();
    const double maa = cd_gradcheck(&op, &opts);
    conv_case_free(&k);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
    return maa;
}

START_TEST(conv2d_gradcheck)
{
    const conv_shape *s = &grad_shapes[_i];
    const double a = conv_gradcheck_one(s, false), b = conv_gradcheck_one(s, true);
    printf("gradcheck %-28s worst maa fast %.2e portable %.2e\n", s->name, a, b);
}
END_TEST

/* ---- transposed convolution ------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t N, C_in, H, W, C_out, kh, kw, stride, pad;
    bool bias;
} convt_shape;

static const convt_shape convt_shapes[] = {
    {"4x4 s2 p1 batch1 square", 1, 3, 4, 4, 3, 4, 4, 2, 1, true},
    {"4x4 s2 p1 batch3 5x3", 3, 2, 5, 3, 2, 4, 4, 2, 1, true},
    {"4x4 s2 p1 3->4 no bias", 3, 3, 3, 6, 4, 4, 4, 2, 1, false},
    {"4x4 s2 p1 UNet 64 7x7", 2, 64, 7, 7, 64, 4, 4, 2, 1, true},
    {"3x3 s1 p1", 2, 3, 5, 4, 2, 3, 3, 1, 1, true},
    {"3x3 s2 p0", 2, 2, 4, 3, 3, 3, 3, 2, 0, true},
    {"2x3 s3 p1", 2, 2, 3, 4, 2, 2, 3, 3, 1, true},
    {"5x5 s2 p2", 1, 2, 4, 5, 3, 5, 5, 2, 2, false},
};
#define N_CONVT ((int)(sizeof convt_shapes / sizeof convt_shapes[0]))

typedef struct {
    cd__convt2d c;
    int64_t n_in, n_w, n_out;
    float *in, *w, *b, *out, *dout, *din, *dw, *db, *ws;
} convt_case;

static void convt_case_make(convt_case *k, const convt_shape *s, uint64_t seed)
{
    memset(k, 0, sizeof *k);
    CD_ASSERT_OK(cd__convt2d_init(&k->c, s->N, s->C_in, s->H, s->W, s->C_out, s->kh, s->kw,
                                  s->stride, s->pad, s->bias));
    const cd__convt2d *c = &k->c;
    k->n_in = c->N * c->C_in * c->H * c->W;
    k->n_w = c->C_in * c->C_out * c->kh * c->kw;
    k->n_out = c->N * c->C_out * c->H_out * c->W_out;
    k->in = fbuf(k->n_in);
    k->w = fbuf(k->n_w);
    k->b = fbuf(c->C_out);
    k->out = fbuf(k->n_out);
    k->dout = fbuf(k->n_out);
    k->din = fbuf(k->n_in);
    k->dw = fbuf(k->n_w);
    k->db = fbuf(c->C_out);
    k->ws = fbuf((int64_t)cd__convt2d_workspace(c));
    cd_gc_randn(k->in, k->n_in, seed, 1.0f);
    cd_gc_randn(k->w, k->n_w, seed + 1, 1.0f / sqrtf((float)(c->C_in * c->kh * c->kw)));
    cd_gc_randn(k->b, c->C_out, seed + 2, 0.5f);
    cd_gc_randn(k->dout, k->n_out, seed + 3, 1.0f);
}

static void convt_case_free(convt_case *k)
{
    free(k->in), free(k->w), free(k->b), free(k->out), free(k->dout);
    free(k->din), free(k->dw), free(k->db), free(k->ws);
}

START_TEST(convt_matches_formula)
{
    const convt_shape *s = &convt_shapes[_i];
    for (int portable = 0; portable < 2; portable++) {
        cd__cpu_force_portable(CD__KERNELS_CONV, portable);
        convt_case k;
        convt_case_make(&k, s, 300);
        float *ref = fbuf(k.n_out);
        cd__convt2d_forward(&k.c, k.out, k.in, k.w, k.b, k.ws);
        ref_convt(&k.c, ref, k.in, k.w, k.b);
        char what[128];
        snprintf(what, sizeof what, "convT %s%s", s->name, portable ? " (portable)" : "");
        const double e = compare(what, k.out, ref, k.n_out, 1e-5);
        printf("parity convT %-26s %s %.2e\n", s->name, portable ? "portable" : "fast", e);
        free(ref);
        convt_case_free(&k);
    }
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}
END_TEST

static void convt_gc_forward(void *ctx)
{
    convt_case *k = ctx;
    cd__convt2d_forward(&k->c, k->out, k->in, k->w, k->b, k->ws);
}

static void convt_gc_backward(void *ctx)
{
    convt_case *k = ctx;
    cd__convt2d_backward(&k->c, k->din, k->dw, k->c.bias ? k->db : NULL, k->dout, k->in, k->w,
                         k->ws);
}

static double convt_gradcheck_one(const convt_shape *s, bool portable)
{
    cd__cpu_force_portable(CD__KERNELS_CONV, portable);
    convt_case k;
    convt_case_make(&k, s, 11);
    char name[128];
    snprintf(name, sizeof name, "convT %s%s", s->name, portable ? " P" : "");
    cd_gc_op op = {.name = name,
                   .ctx = &k,
                   .forward = convt_gc_forward,
                   .backward = convt_gc_backward,
                   .out = k.out,
                   .dout = k.dout,
                   .n_out = k.n_out};
    cd_gc_add_input(&op, "in", k.in, k.din, k.n_in);
    cd_gc_add_input(&op, "weight", k.w, k.dw, k.n_w);
    if (s->bias) cd_gc_add_input(&op, "bias", k.b, k.db, k.c.C_out);
    const cd_gc_opts opts = conv_gc_opts();
    const double maa = cd_gradcheck(&op, &opts);
    convt_case_free(&k);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
    return maa;
}

START_TEST(convt_gradcheck)
{
    const convt_shape *s = &convt_shapes[_i];
    if (s->C_in * s->C_out > 64) return; /* the UNet shape is for parity only */
    const double a = convt_gradcheck_one(s, false), b = convt_gradcheck_one(s, true);
    printf("gradcheck convT %-22s worst maa fast %.2e portable %.2e\n", s->name, a, b);
}
END_TEST

/* A transposed reading of the weight (C_out x C_in) must not pass: with
 * C_in == C_out it still runs, so check the two readings differ and ours
 * is the formula's. */
START_TEST(convt_weight_layout_is_in_out)
{
    const convt_shape s = {"layout", 1, 2, 3, 3, 2, 4, 4, 2, 1, false};
    convt_case k;
    convt_case_make(&k, &s, 5);
    float *wt = fbuf(k.n_w), *alt = fbuf(k.n_out), *ref = fbuf(k.n_out);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t o = 0; o < 2; o++)
            memcpy(wt + (o * 2 + i) * 16, k.w + (i * 2 + o) * 16, 16 * sizeof *wt);
    cd__convt2d_forward(&k.c, k.out, k.in, k.w, k.b, k.ws);
    cd__convt2d_forward(&k.c, alt, k.in, wt, k.b, k.ws);
    ref_convt(&k.c, ref, k.in, k.w, k.b);
    compare("convT layout", k.out, ref, k.n_out, 1e-5);
    double diff = 0.0;
    for (int64_t i = 0; i < k.n_out; i++) diff = fmax(diff, fabs(alt[i] - ref[i]));
    ck_assert_msg(diff > 1e-2, "a transposed weight reading gives the same output");
    free(wt), free(alt), free(ref);
    convt_case_free(&k);
}
END_TEST

/* ---- descriptor errors ------------------------------------------------------- */

/* Which shapes the spectral path takes: the CNN's 7x7 layers with 16+
 * channels each way (without this, a change to the rule could leave every
 * spectral test above running the direct kernels), and not the others. */
START_TEST(spectral_path_choice)
{
    static const struct {
        conv_shape s;
        bool spectral;
    } cases[] = {
        {{"CNN 7x7 16->32", 128, 16, 28, 28, 32, 7, 7, 1, 3, 1, true}, true},
        {{"CNN 7x7 32->32", 128, 32, 28, 28, 32, 7, 7, 1, 3, 1, true}, true},
        {{"CNN 7x7 32->16", 128, 32, 28, 28, 16, 7, 7, 1, 3, 1, true}, true},
        {{"5x5 same", 2, 8, 11, 13, 9, 5, 5, 1, 2, 1, true}, true},
        {{"CNN 7x7 1->16 (one input channel)", 128, 1, 28, 28, 16, 7, 7, 1, 3, 1, true}, false},
        {{"CNN 3x3 16->1", 128, 16, 28, 28, 1, 3, 3, 1, 1, 1, true}, false},
        {{"3x3 32->64", 2, 32, 28, 28, 64, 3, 3, 1, 1, 1, true}, false},
        {{"7x7 valid", 2, 32, 28, 28, 32, 7, 7, 1, 0, 1, true}, false},
        {{"7x7 stride 2", 2, 32, 28, 28, 32, 7, 7, 2, 3, 1, true}, false},
        {{"depthwise 7x7", 2, 32, 28, 28, 32, 7, 7, 1, 3, 32, true}, false},
        {{"7x7 on 7x7 planes (direct is cheaper)", 2, 32, 3, 3, 32, 7, 7, 1, 3, 1, true}, false},
        {{"7x7 512->512 (kernel spectra too large)", 2, 512, 28, 28, 512, 7, 7, 1, 3, 1, true},
         false},
        {{"7x7 on 80x80 (beyond 64x64)", 2, 16, 80, 80, 16, 7, 7, 1, 3, 1, true}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_shape *s = &cases[i].s;
        cd__conv2d c;
        CD_ASSERT_OK(cd__conv2d_init(&c, s->N, s->C_in, s->H, s->W, s->C_out, s->kh, s->kw,
                                     s->stride, s->pad, s->groups, s->bias));
        ck_assert_msg(cd__conv2d_fft_suits(&c) == cases[i].spectral, "%s: spectral %d", s->name,
                      (int)cd__conv2d_fft_suits(&c));
    }
}
END_TEST

START_TEST(conv2d_init_errors)
{
    cd__conv2d c;
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 2, 4, 8, 8, 6, 3, 3, 1, 1, 3, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("groups");
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 2, 6, 8, 8, 4, 3, 3, 1, 1, 3, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("groups");
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 2, 4, 8, 8, 4, 3, 3, 1, 1, 0, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 0, 4, 8, 8, 4, 3, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("positive");
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, -4, 8, 8, 4, 3, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 0, 8, 4, 3, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, -1, 4, 3, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, 8, 0, 3, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, 8, 4, 0, 3, 1, 1, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, 8, 4, 3, 3, 0, 1, 1, true), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("stride");
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, 8, 4, 3, 3, 1, -1, 1, true), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("padding");
    /* Output smaller than 1x1: a 5x5 kernel on a 3x3 image without padding. */
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 3, 3, 4, 5, 5, 1, 0, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("1x1");
    CD_ASSERT_STATUS(cd__conv2d_init(&c, 1, 4, 8, 3, 4, 1, 5, 1, 0, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__conv2d_init(&c, (int64_t)1 << 40, 4, 8, 8, 4, 3, 3, 1, 1, 1, true),
                     CD_ERR_OVERFLOW);
    CD_ASSERT_STATUS(cd__conv2d_init(NULL, 1, 4, 8, 8, 4, 3, 3, 1, 1, 1, true),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd__conv2d_init(&c, 1, 4, 5, 5, 4, 5, 5, 1, 0, 1, true));
    ck_assert_int_eq(c.H_out, 1);
    ck_assert_int_eq(c.W_out, 1);
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 32, 4, 4, 2, 1, 1, true));
    ck_assert_int_eq(c.H_out, 14);
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 3, 7, 9, 3, 4, 4, 2, 1, 1, true));
    ck_assert_int_eq(c.H_out, 3);
    ck_assert_int_eq(c.W_out, 4);
}
END_TEST

START_TEST(convt_init_errors)
{
    cd__convt2d c;
    CD_ASSERT_STATUS(cd__convt2d_init(&c, 0, 4, 8, 8, 4, 4, 4, 2, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("positive");
    CD_ASSERT_STATUS(cd__convt2d_init(&c, 1, 4, 8, 8, -4, 4, 4, 2, 1, true), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd__convt2d_init(&c, 1, 4, 8, 8, 4, 4, 4, 0, 1, true), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__convt2d_init(&c, 1, 4, 8, 8, 4, 4, 4, 2, -1, true), CD_ERR_RANGE);
    /* Output smaller than 1x1: H_out = (1-1) 2 - 2 3 + 4 < 1. */
    CD_ASSERT_STATUS(cd__convt2d_init(&c, 1, 4, 1, 1, 4, 4, 4, 2, 3, true), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("1x1");
    CD_ASSERT_STATUS(cd__convt2d_init(NULL, 1, 4, 8, 8, 4, 4, 4, 2, 1, true),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd__convt2d_init(&c, 2, 64, 7, 7, 64, 4, 4, 2, 1, true));
    ck_assert_int_eq(c.H_out, 14);
    ck_assert_int_eq(c.W_out, 14);
    CD_ASSERT_OK(cd__convt2d_init(&c, 2, 3, 5, 3, 3, 4, 4, 2, 1, true));
    ck_assert_int_eq(c.H_out, 10);
    ck_assert_int_eq(c.W_out, 6);
}
END_TEST

/* ---- batch tiles, threads, workspace ---------------------------------------- */

/* Batch sizes around the tiles (direct 8, gemm up to 16, spectral 64) on
 * the paths. */
START_TEST(conv2d_batch_tiles)
{
    static const int64_t batches[] = {1, 7, 8, 9, 16, 17, 33, 65};
    static const conv_shape base[] = {
        {"dense k3p1", 0, 3, 6, 5, 4, 3, 3, 1, 1, 1, true},
        {"depthwise 7x7", 0, 3, 6, 5, 3, 7, 7, 1, 3, 3, true},
        {"k4s2p1", 0, 3, 6, 6, 2, 4, 4, 2, 1, 1, true},
        {"1x1", 0, 3, 4, 5, 2, 1, 1, 1, 0, 1, true},
        {"gemm tile of 1 (large column)", 0, 48, 30, 30, 2, 7, 7, 1, 3, 1, true},
        {"spectral k5p2", 0, 8, 9, 9, 8, 5, 5, 1, 2, 1, true},
    };
    for (size_t b = 0; b < sizeof base / sizeof base[0]; b++)
        for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
            conv_shape s = base[b];
            s.N = batches[i];
            if (s.C_in == 48 && s.N > 9) continue; /* the naive reference is slow */
            conv_parity_one(&s, false, false);
            conv_parity_one(&s, true, false);
        }
}
END_TEST

START_TEST(convt_batch_tiles)
{
    static const int64_t batches[] = {1, 7, 8, 9, 17};
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        const convt_shape s = {"tiles", batches[i], 3, 4, 3, 2, 4, 4, 2, 1, true};
        convt_case k;
        convt_case_make(&k, &s, 21);
        float *ref = fbuf(k.n_out);
        cd__convt2d_forward(&k.c, k.out, k.in, k.w, k.b, k.ws);
        ref_convt(&k.c, ref, k.in, k.w, k.b);
        compare("convT tiles", k.out, ref, k.n_out, 1e-5);
        free(ref);
        convt_case_free(&k);
    }
}
END_TEST

/* forward_epi calls the epilogue once per image, after that image's output
 * is complete (here: it copies the image, then checks against the final
 * output), on the per-image and the per-tile paths alike. */
typedef struct {
    const float *out;
    float *copy;
    int64_t img;
    int *calls;
} epi_ctx;

static void copy_image(void *ctx, int64_t n)
{
    const epi_ctx *e = ctx;
    memcpy(e->copy + n * e->img, e->out + n * e->img, (size_t)e->img * sizeof(float));
    __atomic_add_fetch(&e->calls[n], 1, __ATOMIC_RELAXED);
}

START_TEST(conv2d_forward_epilogue)
{
    static const conv_shape shapes[] = {
        {"k7p3 16->32 N=19", 19, 16, 28, 28, 32, 7, 7, 1, 3, 1, true},
        {"k7p3 1->16 N=3", 3, 1, 28, 28, 16, 7, 7, 1, 3, 1, true},
        {"k3p0 N=5 (in place)", 5, 3, 9, 11, 12, 3, 3, 1, 0, 1, true},
        {"depthwise N=5", 5, 4, 9, 6, 4, 3, 3, 1, 1, 4, true},
        /* Winograd: one image per task at 14x14, several at 7x7. */
        {"k3p1 16->32 14x14 N=19", 19, 16, 14, 14, 32, 3, 3, 1, 1, 1, true},
        {"k3p1 20->17 7x7 N=19", 19, 20, 7, 7, 17, 3, 3, 1, 1, 1, true},
        /* Pointwise: one task per image, and output channels split across
         * tasks for a small batch. */
        {"1x1 32->48 14x14 N=19", 19, 32, 14, 14, 48, 1, 1, 1, 0, 1, true},
        {"1x1 24->40 7x7 N=3", 3, 24, 7, 7, 40, 1, 1, 1, 0, 1, true},
    };
    for (int portable = 0; portable < 2; portable++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            cd__cpu_force_portable(CD__KERNELS_CONV, portable);
            conv_case k;
            conv_case_make(&k, &shapes[i], 77);
            float *copy = fbuf(k.n_out);
            int calls[19] = {0};
            epi_ctx e = {k.out, copy, k.n_out / k.c.N, calls};
            cd__conv2d_forward_epi(&k.c, k.out, k.in, k.w, k.b, k.ws, copy_image, &e);
            ck_assert_msg(memcmp(copy, k.out, (size_t)k.n_out * sizeof(float)) == 0,
                          "%s: epilogue saw an unfinished image", shapes[i].name);
            for (int64_t n = 0; n < k.c.N; n++) ck_assert_int_eq(calls[n], 1);
            free(copy);
            conv_case_free(&k);
        }
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}
END_TEST

/* Forward and backward outputs at 1, 2 and 3 threads are bit-identical,
 * the overwriting input gradient too (its own path on Winograd shapes). */
static void conv_threads_one(const conv_shape *s, bool portable)
{
    float *saved[5] = {0};
    int64_t sizes[5] = {0};
    for (int64_t threads = 1; threads <= 3; threads++) {
        CD_ASSERT_OK(cd_set_num_threads(threads));
        cd__cpu_force_portable(CD__KERNELS_CONV, portable);
        conv_case k;
        conv_case_make(&k, s, 55);
        float *din_set = fbuf(k.n_in);
        cd__conv2d_forward(&k.c, k.out, k.in, k.w, k.b, k.ws);
        cd__conv2d_backward(&k.c, k.din, k.dw, k.db, k.dout, k.in, k.w, k.ws);
        cd__conv2d_backward_set(&k.c, din_set, NULL, NULL, k.dout, k.in, k.w, k.ws);
        float *res[5] = {k.out, k.din, k.dw, k.db, din_set};
        const int64_t n[5] = {k.n_out, k.n_in, k.n_w, k.c.C_out, k.n_in};
        for (int r = 0; r < 5; r++) {
            if (threads == 1) {
                saved[r] = fbuf(n[r]);
                sizes[r] = n[r];
                memcpy(saved[r], res[r], (size_t)n[r] * sizeof(float));
            } else {
                ck_assert_msg(memcmp(saved[r], res[r], (size_t)sizes[r] * sizeof(float)) == 0,
                              "%s%s: result %d differs between 1 and %d threads", s->name,
                              portable ? " (portable)" : "", r, (int)threads);
            }
        }
        free(din_set);
        conv_case_free(&k);
    }
    for (int r = 0; r < 5; r++) free(saved[r]);
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}

START_TEST(conv2d_thread_count_independent)
{
    static const conv_shape shapes[] = {
        {"k7p3 16->32", 19, 16, 28, 28, 32, 7, 7, 1, 3, 1, true},
        {"k3p1 32->64 14x14", 9, 32, 14, 14, 64, 3, 3, 1, 1, 1, true},
        {"depthwise 7x7 32", 19, 32, 28, 28, 32, 7, 7, 1, 3, 32, true},
        {"k4s2p1 32", 19, 32, 28, 28, 32, 4, 4, 2, 1, 1, true},
        {"1x1 32->64", 19, 32, 28, 28, 64, 1, 1, 1, 0, 1, true},
        {"groups 2", 19, 8, 14, 14, 8, 3, 3, 1, 1, 2, true},
        {"k3p1 64->128 7x7 (Winograd)", 37, 64, 7, 7, 128, 3, 3, 1, 1, 1, true},
        /* Pointwise: three weight-gradient tiles, channels off the
         * vector, a small batch split by output channels. */
        {"1x1 128->136 14x14 (pointwise)", 23, 128, 14, 14, 136, 1, 1, 1, 0, 1, true},
        {"1x1 20->33 7x7 N=3 (pointwise)", 3, 20, 7, 7, 33, 1, 1, 1, 0, 1, false},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        conv_threads_one(&shapes[i], false);
        conv_threads_one(&shapes[i], true);
    }
}
END_TEST

START_TEST(convt_thread_count_independent)
{
    const convt_shape s = {"threads", 19, 32, 14, 14, 32, 4, 4, 2, 1, true};
    float *saved[4] = {0};
    for (int64_t threads = 1; threads <= 2; threads++) {
        CD_ASSERT_OK(cd_set_num_threads(threads));
        convt_case k;
        convt_case_make(&k, &s, 77);
        cd__convt2d_forward(&k.c, k.out, k.in, k.w, k.b, k.ws);
        cd__convt2d_backward(&k.c, k.din, k.dw, k.db, k.dout, k.in, k.w, k.ws);
        float *res[4] = {k.out, k.din, k.dw, k.db};
        const int64_t n[4] = {k.n_out, k.n_in, k.n_w, k.c.C_out};
        for (int r = 0; r < 4; r++) {
            if (threads == 1) {
                saved[r] = fbuf(n[r]);
                memcpy(saved[r], res[r], (size_t)n[r] * sizeof(float));
            } else {
                ck_assert_msg(memcmp(saved[r], res[r], (size_t)n[r] * sizeof(float)) == 0,
                              "convT result %d differs between 1 and 2 threads", r);
            }
        }
        convt_case_free(&k);
    }
    for (int r = 0; r < 4; r++) free(saved[r]);
}
END_TEST

/* A NULL gradient skips only that gradient. */
START_TEST(conv2d_null_gradients)
{
    static const conv_shape shapes[] = {
        {"dense", 3, 3, 6, 5, 4, 3, 3, 1, 1, 1, true},
        {"depthwise", 3, 3, 6, 5, 3, 7, 7, 1, 3, 3, true},
        {"gemm", 3, 3, 6, 6, 2, 4, 4, 2, 1, 1, true},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        conv_case k;
        conv_case_make(&k, &shapes[i], 9);
        cd__conv2d_backward(&k.c, k.din, k.dw, k.db, k.dout, k.in, k.w, k.ws);
        float *din = fbuf(k.n_in), *dw = fbuf(k.n_w), *db = fbuf(k.c.C_out);
        cd__conv2d_backward(&k.c, din, NULL, NULL, k.dout, k.in, k.w, k.ws);
        cd__conv2d_backward(&k.c, NULL, dw, NULL, k.dout, k.in, k.w, k.ws);
        cd__conv2d_backward(&k.c, NULL, NULL, db, k.dout, k.in, k.w, k.ws);
        ck_assert(memcmp(din, k.din, (size_t)k.n_in * sizeof(float)) == 0);
        ck_assert(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) == 0);
        ck_assert(memcmp(db, k.db, (size_t)k.c.C_out * sizeof(float)) == 0);
        free(din), free(dw), free(db);
        conv_case_free(&k);
    }
}
END_TEST

/* n floats ending exactly at an inaccessible page, so any read or write
 * past the end faults. */
typedef struct {
    void *base;
    size_t len;
    float *p;
} guarded;

static guarded guarded_alloc(int64_t n)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t bytes = (size_t)n * sizeof(float);
    const size_t data_pages = (bytes + page - 1) / page;
    guarded g;
    g.len = (data_pages + 1) * page;
    g.base = mmap(NULL, g.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(g.base, MAP_FAILED);
    char *guard = (char *)g.base + data_pages * page;
    ck_assert_int_eq(mprotect(guard, page, PROT_NONE), 0);
    g.p = (float *)(void *)(guard - bytes);
    return g;
}

static void guarded_free(guarded *g) { munmap(g->base, g->len); }

/* Tensors that end at a guard page: kernels that read unpadded sources in
 * place (1x1, no padding) must not read past a plane's end. */
START_TEST(conv2d_reads_stay_in_bounds)
{
    static const conv_shape shapes[] = {
        {"1x1 5x7", 3, 5, 5, 7, 6, 1, 1, 1, 0, 1, true},
        {"1x1 28x28", 2, 8, 28, 28, 12, 1, 1, 1, 0, 1, true},
        {"1x1 3x3", 2, 3, 3, 3, 2, 1, 1, 1, 0, 1, true},
        {"k3p0 9x7", 2, 3, 9, 7, 4, 3, 3, 1, 0, 1, true},
        {"k3p2 full 5x6", 2, 3, 5, 6, 4, 3, 3, 1, 2, 1, true},
        {"k1x3 p0 6x9", 2, 3, 6, 9, 4, 1, 3, 1, 0, 1, true},
        {"k4s2p1 7x9", 2, 3, 7, 9, 5, 4, 4, 2, 1, 1, true},
        {"depthwise 7x7 5x9", 2, 3, 5, 9, 3, 7, 7, 1, 3, 3, true},
        {"depthwise 3x3 p0", 2, 4, 9, 7, 4, 3, 3, 1, 0, 4, true},
        {"spectral k5p2 11x13", 2, 8, 11, 13, 9, 5, 5, 1, 2, 1, true},
        /* Winograd: planes that fill no whole tile, channels off the vector. */
        {"winograd 17->33 7x7", 3, 17, 7, 7, 33, 3, 3, 1, 1, 1, true},
        {"winograd 20->24 13x9", 2, 20, 13, 9, 24, 3, 3, 1, 1, 1, true},
        {"winograd 16->16 1x1", 2, 16, 1, 1, 16, 3, 3, 1, 1, 1, true},
        /* Pointwise: ragged pixel counts read and written with masks. */
        {"pointwise 20->33 7x7", 3, 20, 7, 7, 33, 1, 1, 1, 0, 1, true},
        {"pointwise 17->16 5x3", 2, 17, 5, 3, 16, 1, 1, 1, 0, 1, true},
        {"pointwise 16->24 1x1", 3, 16, 1, 1, 24, 1, 1, 1, 0, 1, true},
    };
    for (int portable = 0; portable < 2; portable++) {
        cd__cpu_force_portable(CD__KERNELS_CONV, portable);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            conv_case k;
            conv_case_make(&k, &shapes[i], 31);
            guarded g[6] = {guarded_alloc(k.n_in),  guarded_alloc(k.n_w),  guarded_alloc(k.n_out),
                            guarded_alloc(k.n_out), guarded_alloc(k.n_in), guarded_alloc(k.n_w)};
            memcpy(g[0].p, k.in, (size_t)k.n_in * sizeof(float));
            memcpy(g[1].p, k.w, (size_t)k.n_w * sizeof(float));
            memcpy(g[3].p, k.dout, (size_t)k.n_out * sizeof(float));
            memset(g[4].p, 0, (size_t)k.n_in * sizeof(float));
            memset(g[5].p, 0, (size_t)k.n_w * sizeof(float));
            cd__conv2d_forward(&k.c, g[2].p, g[0].p, g[1].p, k.b, k.ws);
            cd__conv2d_backward(&k.c, g[4].p, g[5].p, k.db, g[3].p, g[0].p, g[1].p, k.ws);
            float *rout = fbuf(k.n_out), *rdin = fbuf(k.n_in), *rdw = fbuf(k.n_w),
                  *rdb = fbuf(k.c.C_out);
            ref_conv2d(&k.c, rout, k.in, k.w, k.b);
            ref_conv2d_backward(&k.c, rdin, rdw, rdb, k.dout, k.in, k.w);
            compare(shapes[i].name, g[2].p, rout, k.n_out, 1e-5);
            compare(shapes[i].name, g[4].p, rdin, k.n_in, 1e-5);
            compare(shapes[i].name, g[5].p, rdw, k.n_w, 1e-5);
            /* The overwriting input gradient has its own code on some
             * paths. */
            for (int64_t e = 0; e < k.n_in; e++) g[4].p[e] = NAN;
            cd__conv2d_backward_set(&k.c, g[4].p, NULL, NULL, g[3].p, g[0].p, g[1].p, k.ws);
            compare(shapes[i].name, g[4].p, rdin, k.n_in, 1e-5);
            free(rout), free(rdin), free(rdw), free(rdb);
            for (int b = 0; b < 6; b++) guarded_free(&g[b]);
            conv_case_free(&k);
        }
    }
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}
END_TEST

/* The workspace stops growing with N beyond the batch tile. */
START_TEST(workspace_bounded)
{
    static const conv_shape shapes[] = {
        {"k7p3 32->32", 0, 32, 28, 28, 32, 7, 7, 1, 3, 1, true},
        /* Too wide for the kernel spectra: the direct path's bound holds. */
        {"k7p3 512->512", 0, 512, 28, 28, 512, 7, 7, 1, 3, 1, true},
        {"k3p1 64->32", 0, 64, 28, 28, 32, 3, 3, 1, 1, 1, true},
        {"depthwise", 0, 64, 14, 14, 64, 7, 7, 1, 3, 64, true},
        {"k4s2p1", 0, 32, 28, 28, 32, 4, 4, 2, 1, 1, true},
        {"1x1", 0, 32, 28, 28, 384, 1, 1, 1, 0, 1, false},
        {"groups 2", 0, 32, 28, 28, 32, 3, 3, 1, 1, 2, true},
    };
    for (int portable = 0; portable < 2; portable++) {
        cd__cpu_force_portable(CD__KERNELS_CONV, portable);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const conv_shape *s = &shapes[i];
            cd__conv2d c16, c128, c4096;
            CD_ASSERT_OK(cd__conv2d_init(&c16, 16, s->C_in, s->H, s->W, s->C_out, s->kh, s->kw,
                                         s->stride, s->pad, s->groups, s->bias));
            c128 = c16, c4096 = c16;
            c128.N = 128, c4096.N = 4096;
            const size_t a = cd__conv2d_workspace(&c16), b = cd__conv2d_workspace(&c128),
                         d = cd__conv2d_workspace(&c4096);
            /* A batch smaller than a tile may need less. */
            ck_assert_msg(a <= b && b == d, "%s: workspace grows with N: %zu %zu %zu", s->name, a,
                          b, d);
            /* At most a tile's worth: 16 images of input, output and one
             * image's im2col each, plus packed weights. A 128-image column
             * buffer would be far larger. */
            const double P = (double)(c128.H_out * c128.W_out);
            const double per_image = (double)(s->C_in * s->H * s->W) + (double)s->C_out * P +
                                     (double)(s->C_in * s->kh * s->kw) * P + 1024.0;
            const double weights = (double)(s->C_out * (s->C_in / s->groups) * s->kh * s->kw);
            ck_assert_msg((double)b <= 16 * per_image + 4 * weights,
                          "%s: workspace %zu floats is not tiled", s->name, b);
            printf("workspace %-12s %s %8.2f MB\n", s->name, portable ? "portable" : "fast",
                   (double)b * 4 / 1e6);
        }
        cd__convt2d c;
        CD_ASSERT_OK(cd__convt2d_init(&c, 16, 32, 14, 14, 32, 4, 4, 2, 1, true));
        const size_t a = cd__convt2d_workspace(&c);
        c.N = 4096;
        ck_assert_uint_eq(a, cd__convt2d_workspace(&c));
    }
    cd__cpu_force_portable(CD__KERNELS_CONV, false);
}
END_TEST

/* ---- Winograd F(4x4, 3x3) forward --------------------------------------------- */

#ifdef CD__CONV_X86
/*
 * Error bound. Per output, the computed y differs from the exact sum by at
 * most (to first order in u = 2^-24)
 *
 *     (C_in + 12) u (S_w + |bias|),
 *
 * S_w = sum_ci |A^T| [(|G| |g_ci| |G|^T) . (|B^T| |d_ci| |B|)] |A|: the
 * Winograd sum with every matrix, weight and input replaced by its
 * absolute value. The terms of the constant, as the library computes: the
 * input transform B^T d B rounds 2 times per dimension (4), each product
 * chain over C_in rounds once per channel (C_in), the output transform
 * rounds 3 times per dimension (6), the weights are rounded once from
 * double and the bias is added once (2). Every rounding's error is at most
 * u times an absolute sum that S_w bounds, so the constant needs no
 * measurement. It is a worst case: on random data the errors stay near
 * 0.2 u S_w, and S_w reaches some 600 times the direct sum |w||x| (the
 * transforms' entries go up to 8), which puts the errors near 40 u
 * sum |w||x| against about 5 for the dense path. A wrong transform
 * coefficient (4 for 5 in B, 7 for 8 in A, 1/24.2 for 1/24 in G) fails.
 */
#define WG_BOUND_EXTRA 12

/* |A^T|, |G|, |B^T| of F(4, 3) with points 0, 1, -1, 2, -2, infinity. */
static const double wg_AT[4][6] = {{1, 1, 1, 1, 1, 0},
                                   {0, 1, 1, 2, 2, 0},
                                   {0, 1, 1, 4, 4, 0},
                                   {0, 1, 1, 8, 8, 1}};
static const double wg_G[6][3] = {{1.0 / 4, 0, 0},
                                  {1.0 / 6, 1.0 / 6, 1.0 / 6},
                                  {1.0 / 6, 1.0 / 6, 1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};
static const double wg_BT[6][6] = {{4, 0, 5, 0, 1, 0}, {0, 4, 4, 1, 1, 0}, {0, 4, 4, 1, 1, 0},
                                   {0, 2, 1, 2, 1, 0}, {0, 2, 1, 2, 1, 0}, {0, 4, 0, 5, 0, 1}};

typedef struct {
    double err_sw;   /* max |err| / (u (S_w + |b|)) */
    double err_sd;   /* max |err| / (u (sum |w||x| + |b|)) */
    double dense_sd; /* the same for the library's default path */
    double amp;      /* max (S_w + |b|) / (sum |w||x| + |b|) */
} wg_acc;

/* The Winograd forward of s against a double reference, each output held
 * to the bound above; returns the ratios seen. */
static wg_acc wg_accuracy_one(const conv_shape *s)
{
    conv_case k;
    conv_case_make(&k, s, 300);
    const cd__conv2d *c = &k.c;
    const double u = ldexp(1.0, -24);
    float *ws = fbuf((int64_t)cd__conv2d_winograd_workspace(c)), *dense = fbuf(k.n_out);
    /* NaN everywhere first: every output must be written. */
    for (int64_t i = 0; i < k.n_out; i++) k.out[i] = NAN;
    cd__conv2d_winograd_forward(c, k.out, k.in, k.w, k.b, ws, NULL, NULL);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
    cd__conv2d_forward(c, dense, k.in, k.w, k.b, k.ws);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
    /* Ca[a][r][p] = sum_i |A^T[a][i]| |G[i][r]| |B^T[i][p]|: how much of
     * |g[r]| |d[p]| one output at offset a of its tile carries. */
    double Ca[4][3][6];
    for (int a = 0; a < 4; a++)
        for (int r = 0; r < 3; r++)
            for (int p = 0; p < 6; p++) {
                Ca[a][r][p] = 0.0;
                for (int i = 0; i < 6; i++) Ca[a][r][p] += wg_AT[a][i] * wg_G[i][r] * wg_BT[i][p];
            }
    const int64_t H = c->H, W = c->W, TH = (H + 3) / 4, TW = (W + 3) / 4;
    /* X[ci][ty][tx][a][b][r][s] = sum_pq Ca[a][r][p] Ca[b][s][q] |d[p][q]|. */
    double *X = calloc((size_t)(c->C_in * TH * TW * 16 * 9), sizeof *X);
    ck_assert_ptr_nonnull(X);
    wg_acc res = {0, 0, 0, 0};
    for (int64_t n = 0; n < c->N; n++) {
        const float *img = k.in + n * c->C_in * H * W;
        for (int64_t ci = 0; ci < c->C_in; ci++)
            for (int64_t ty = 0; ty < TH; ty++)
                for (int64_t tx = 0; tx < TW; tx++) {
                    double d[6][6];
                    for (int p = 0; p < 6; p++)
                        for (int q = 0; q < 6; q++) {
                            const int64_t y = 4 * ty - 1 + p, x = 4 * tx - 1 + q;
                            d[p][q] = y >= 0 && y < H && x >= 0 && x < W
                                          ? fabs((double)img[(ci * H + y) * W + x])
                                          : 0.0;
                        }
                    double *Xt = X + ((ci * TH + ty) * TW + tx) * 16 * 9;
                    for (int a = 0; a < 4; a++)
                        for (int b = 0; b < 4; b++)
                            for (int r = 0; r < 3; r++)
                                for (int q2 = 0; q2 < 3; q2++) {
                                    double sum = 0.0;
                                    for (int p = 0; p < 6; p++)
                                        for (int q = 0; q < 6; q++)
                                            sum += Ca[a][r][p] * Ca[b][q2][q] * d[p][q];
                                    Xt[(a * 4 + b) * 9 + r * 3 + q2] = sum;
                                }
                }
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    const double bias = c->bias ? k.b[co] : 0.0;
                    double ref = bias, sd = fabs(bias), sw = fabs(bias);
                    for (int64_t ci = 0; ci < c->C_in; ci++) {
                        const float *g = k.w + (co * c->C_in + ci) * 9;
                        const double *Xt =
                            X + ((ci * TH + y / 4) * TW + x / 4) * 16 * 9 + (y % 4 * 4 + x % 4) * 9;
                        for (int r = 0; r < 3; r++)
                            for (int q = 0; q < 3; q++) {
                                const int64_t iy = y - 1 + r, ix = x - 1 + q;
                                const double wv = g[r * 3 + q];
                                sw += fabs(wv) * Xt[r * 3 + q];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                const double xv = img[(ci * H + iy) * W + ix];
                                ref += wv * xv;
                                sd += fabs(wv * xv);
                            }
                    }
                    const int64_t i = ((n * c->C_out + co) * H + y) * W + x;
                    ck_assert_msg(isfinite(k.out[i]), "%s: output %lld not written or not finite",
                                  s->name, (long long)i);
                    const double err = fabs((double)k.out[i] - ref);
                    const double bound = (double)(c->C_in + WG_BOUND_EXTRA) * u * sw;
                    ck_assert_msg(err <= bound,
                                  "%s: output (%lld, %lld, %lld, %lld) %.9g vs %.9g: error "
                                  "%.3e above the bound %.3e",
                                  s->name, (long long)n, (long long)co, (long long)y, (long long)x,
                                  k.out[i], ref, err, bound);
                    if (sw > 0) res.err_sw = fmax(res.err_sw, err / (u * sw));
                    if (sd > 0) {
                        res.err_sd = fmax(res.err_sd, err / (u * sd));
                        res.dense_sd = fmax(res.dense_sd, fabs((double)dense[i] - ref) / (u * sd));
                        res.amp = fmax(res.amp, sw / sd);
                    }
                }
    }
    free(X), free(ws), free(dense);
    conv_case_free(&k);
    return res;
}

/* The UNet's 3x3 layers (two images), then edges: images that are no
 * multiple of the tile (7x7, 13x9, 1x1, 6x10, 5x3), channels that are no
 * multiple of 16, no bias, and batches over several rounds of tasks. */
static const conv_shape wg_shapes[] = {
    {"UNet 32->64 28x28", 2, 32, 28, 28, 64, 3, 3, 1, 1, 1, true},
    {"UNet 64->32 28x28", 2, 64, 28, 28, 32, 3, 3, 1, 1, 1, true},
    {"UNet 64->128 14x14", 2, 64, 14, 14, 128, 3, 3, 1, 1, 1, true},
    {"UNet 128->64 14x14", 2, 128, 14, 14, 64, 3, 3, 1, 1, 1, true},
    {"UNet 128->256 7x7", 2, 128, 7, 7, 256, 3, 3, 1, 1, 1, true},
    {"UNet 256->128 7x7", 2, 256, 7, 7, 128, 3, 3, 1, 1, 1, true},
    {"20->24 13x9", 3, 20, 13, 9, 24, 3, 3, 1, 1, 1, true},
    {"17->33 7x7", 3, 17, 7, 7, 33, 3, 3, 1, 1, 1, true},
    {"16->16 1x1", 2, 16, 1, 1, 16, 3, 3, 1, 1, 1, true},
    {"3->5 6x10", 5, 3, 6, 10, 5, 3, 3, 1, 1, 1, true},
    {"40->17 5x3 no bias", 1, 40, 5, 3, 17, 3, 3, 1, 1, 1, false},
    {"16->48 7x7 N=70 (rounds)", 70, 16, 7, 7, 48, 3, 3, 1, 1, 1, true},
    {"24->16 13x13 N=11", 11, 24, 13, 13, 16, 3, 3, 1, 1, 1, true},
};
#define N_WG ((int)(sizeof wg_shapes / sizeof wg_shapes[0]))

START_TEST(winograd_accuracy)
{
    const wg_acc a = wg_accuracy_one(&wg_shapes[_i]);
    printf("winograd %-26s err/(u S_w) %5.2f (bound %lld)  err/(u sum|w||x|) %6.1f  "
           "dense %5.2f  S_w/sum|w||x| %5.1f\n",
           wg_shapes[_i].name, a.err_sw, (long long)(wg_shapes[_i].C_in + WG_BOUND_EXTRA), a.err_sd,
           a.dense_sd, a.amp);
}
END_TEST

/*
 * The weight gradient's bound. Per weight, the computed gradient differs
 * from the exact sum by at most (to first order in u)
 *
 *     (T + WGD_BOUND_EXTRA) u S_g,
 *
 * T = N x tiles per image, and S_g = sum_tiles |G|^T [(|A| |dY| |A|^T) .
 * (|B^T| |d| |B|)] |G|: the Winograd sum over absolute values, as for the
 * forward. The terms, as the library computes: the input transform and the
 * output gradient's (4 points to 6, as many roundings) round 4 times each
 * (8); the sum over tiles rounds once per tile and once per round of
 * tasks, at most T + 1 times whatever the rounds (R tiles per round and r
 * rounds satisfy R + r <= T + 1); the final G^T Z G runs in double and is
 * rounded once (1). No constant is measured.
 */
#define WGD_BOUND_EXTRA 10

/* The Winograd weight gradient of s, added onto zeros, against a double
 * reference, each weight held to the bound above; returns the ratios seen
 * (dense_sd: the dense path's error / (u sum |dY||x|)). */
static wg_acc wgd_accuracy_one(const conv_shape *s)
{
    conv_case k;
    conv_case_make(&k, s, 400);
    const cd__conv2d *c = &k.c;
    const double u = ldexp(1.0, -24);
    const int64_t H = c->H, W = c->W, TH = (H + 3) / 4, TW = (W + 3) / 4, Ci = c->C_in,
                  Co = c->C_out;
    float *ws = fbuf((int64_t)cd__conv2d_winograd_grad_workspace(c)), *dense = fbuf(k.n_w);
    memset(k.dw, 0, (size_t)k.n_w * sizeof(float));
    memset(dense, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_winograd_grad(c, k.dw, k.dout, k.in, ws);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
    cd__conv2d_backward(c, NULL, dense, NULL, k.dout, k.in, k.w, k.ws);
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
    /* Sx[co][ci][xi]: sum over tiles of |A dY A^T|[xi] |B^T d B|[xi], both
     * transforms taken over absolute values. */
    double *Sx = calloc((size_t)(Co * Ci * 36), sizeof *Sx), *av = malloc(sizeof(double) * 36 * Ci),
           *ad = malloc(sizeof(double) * 36 * Co);
    ck_assert(Sx && av && ad);
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ty = 0; ty < TH; ty++)
            for (int64_t tx = 0; tx < TW; tx++) {
                for (int64_t ci = 0; ci < Ci; ci++)
                    for (int i = 0; i < 36; i++) {
                        double sum = 0.0;
                        for (int p = 0; p < 6; p++)
                            for (int q = 0; q < 6; q++) {
                                const int64_t y = 4 * ty - 1 + p, x = 4 * tx - 1 + q;
                                if (y < 0 || y >= H || x < 0 || x >= W) continue;
                                sum += wg_BT[i / 6][p] * wg_BT[i % 6][q] *
                                       fabs(k.in[((n * Ci + ci) * H + y) * W + x]);
                            }
                        av[ci * 36 + i] = sum;
                    }
                for (int64_t co = 0; co < Co; co++)
                    for (int i = 0; i < 36; i++) {
                        double sum = 0.0;
                        for (int p = 0; p < 4; p++)
                            for (int q = 0; q < 4; q++) {
                                const int64_t y = 4 * ty + p, x = 4 * tx + q;
                                if (y >= H || x >= W) continue;
                                sum += wg_AT[p][i / 6] * wg_AT[q][i % 6] *
                                       fabs(k.dout[((n * Co + co) * H + y) * W + x]);
                            }
                        ad[co * 36 + i] = sum;
                    }
                for (int64_t co = 0; co < Co; co++)
                    for (int64_t ci = 0; ci < Ci; ci++)
                        for (int i = 0; i < 36; i++)
                            Sx[(co * Ci + ci) * 36 + i] += ad[co * 36 + i] * av[ci * 36 + i];
            }
    const double T = (double)(c->N * TH * TW);
    wg_acc res = {0, 0, 0, 0};
    for (int64_t co = 0; co < Co; co++)
        for (int64_t ci = 0; ci < Ci; ci++)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    double ref = 0.0, sd = 0.0, sg = 0.0;
                    for (int i = 0; i < 36; i++)
                        sg += wg_G[i / 6][a] * wg_G[i % 6][b] * Sx[(co * Ci + ci) * 36 + i];
                    for (int64_t n = 0; n < c->N; n++)
                        for (int64_t y = 0; y < H; y++)
                            for (int64_t x = 0; x < W; x++) {
                                const int64_t iy = y - 1 + a, ix = x - 1 + b;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                const double t = (double)k.dout[((n * Co + co) * H + y) * W + x] *
                                                 k.in[((n * Ci + ci) * H + iy) * W + ix];
                                ref += t;
                                sd += fabs(t);
                            }
                    const int64_t w = (co * Ci + ci) * 9 + a * 3 + b;
                    const double err = fabs((double)k.dw[w] - ref);
                    const double bound = (T + WGD_BOUND_EXTRA) * u * sg;
                    ck_assert_msg(err <= bound,
                                  "%s: dweight (%lld, %lld, %d, %d) %.9g vs %.9g: error %.3e "
                                  "above the bound %.3e",
                                  s->name, (long long)co, (long long)ci, a, b, k.dw[w], ref, err,
                                  bound);
                    if (sg > 0) res.err_sw = fmax(res.err_sw, err / (u * sg));
                    if (sd > 0) {
                        res.err_sd = fmax(res.err_sd, err / (u * sd));
                        res.dense_sd = fmax(res.dense_sd, fabs((double)dense[w] - ref) / (u * sd));
                        res.amp = fmax(res.amp, sg / sd);
                    }
                }
    free(Sx), free(av), free(ad), free(ws), free(dense);
    conv_case_free(&k);
    return res;
}

START_TEST(winograd_grad_accuracy)
{
    const conv_shape *s = &wg_shapes[_i];
    const wg_acc a = wgd_accuracy_one(s);
    const int64_t T = s->N * ((s->H + 3) / 4) * ((s->W + 3) / 4);
    printf("winograd dW %-23s err/(u S_g) %5.2f (bound %lld)  err/(u sum|dy||x|) %6.1f  "
           "dense %5.2f  S_g/sum|dy||x| %5.1f\n",
           s->name, a.err_sw, (long long)(T + WGD_BOUND_EXTRA), a.err_sd, a.dense_sd, a.amp);
}
END_TEST

/* The UNet's 3x3 layers take the Winograd path, forward, weight gradient
 * and input gradient (when backward may overwrite din): bit for bit its
 * own results. Held off, the dense kernels give other bits, so the
 * comparisons can fail. */
START_TEST(winograd_is_chosen)
{
    const conv_shape s = {"UNet 32->64 14x14", 3, 32, 14, 14, 64, 3, 3, 1, 1, 1, true};
    conv_case k;
    conv_case_make(&k, &s, 91);
    const cd__conv2d *c = &k.c;
    float *ws = fbuf((int64_t)cd__conv2d_winograd_workspace(c)), *want = fbuf(k.n_out);
    cd__conv2d_winograd_forward(c, want, k.in, k.w, k.b, ws, NULL, NULL);
    cd__conv2d_forward(c, k.out, k.in, k.w, k.b, k.ws);
    ck_assert_msg(memcmp(want, k.out, (size_t)k.n_out * sizeof(float)) == 0,
                  "the forward did not take the Winograd path");
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
    float *dense_ws = fbuf((int64_t)cd__conv2d_workspace(c));
    cd__conv2d_forward(c, k.out, k.in, k.w, k.b, dense_ws);
    ck_assert_msg(memcmp(want, k.out, (size_t)k.n_out * sizeof(float)) != 0,
                  "the dense kernels gave the Winograd path's bits");
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);

    /* din = dout convolved with the flipped, transposed weights. */
    cd__conv2d a;
    CD_ASSERT_OK(cd__conv2d_init(&a, c->N, c->C_out, c->H, c->W, c->C_in, 3, 3, 1, 1, 1, false));
    float *wt = fbuf(k.n_w), *din = fbuf(k.n_in),
          *aws = fbuf((int64_t)cd__conv2d_winograd_workspace(&a));
    for (int64_t co = 0; co < c->C_out; co++)
        for (int64_t ci = 0; ci < c->C_in; ci++)
            for (int64_t t = 0; t < 9; t++)
                wt[(ci * c->C_out + co) * 9 + t] = k.w[(co * c->C_in + ci) * 9 + 8 - t];
    cd__conv2d_winograd_forward(&a, din, k.dout, wt, NULL, aws, NULL, NULL);
    /* The weight gradient, onto zeros, in both backward modes. */
    float *dw = fbuf(k.n_w), *gws = fbuf((int64_t)cd__conv2d_winograd_grad_workspace(c));
    memset(dw, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_winograd_grad(c, dw, k.dout, k.in, gws);
    memset(k.dw, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_backward_set(c, k.din, k.dw, NULL, k.dout, k.in, k.w, k.ws);
    ck_assert_msg(memcmp(din, k.din, (size_t)k.n_in * sizeof(float)) == 0,
                  "the input gradient did not take the Winograd path");
    ck_assert_msg(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) == 0,
                  "the weight gradient (backward_set) did not take the Winograd path");
    memset(k.dw, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_backward(c, k.din, k.dw, NULL, k.dout, k.in, k.w, k.ws);
    ck_assert_msg(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) == 0,
                  "the weight gradient (backward) did not take the Winograd path");
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, true);
    memset(k.dw, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_backward(c, NULL, k.dw, NULL, k.dout, k.in, k.w, dense_ws);
    ck_assert_msg(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) != 0,
                  "the dense kernels gave the Winograd weight gradient's bits");
    cd__cpu_force_portable(CD__KERNELS_WINOGRAD, false);
    free(ws), free(want), free(dense_ws), free(wt), free(din), free(aws), free(dw), free(gws);
    conv_case_free(&k);
}
END_TEST

START_TEST(winograd_suits)
{
    cd__conv2d c;
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 64, 3, 3, 1, 1, 1, true));
    ck_assert(cd__conv2d_winograd_suits(&c));
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 8, 28, 28, 64, 3, 3, 1, 1, 1, true));
    ck_assert(!cd__conv2d_winograd_suits(&c));
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 64, 3, 3, 2, 1, 1, true));
    ck_assert(!cd__conv2d_winograd_suits(&c));
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 64, 3, 3, 1, 0, 1, true));
    ck_assert(!cd__conv2d_winograd_suits(&c));
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 64, 3, 3, 1, 1, 2, true));
    ck_assert(!cd__conv2d_winograd_suits(&c));
    CD_ASSERT_OK(cd__conv2d_init(&c, 2, 32, 28, 28, 64, 5, 5, 1, 2, 1, true));
    ck_assert(!cd__conv2d_winograd_suits(&c));
}
END_TEST

/* ---- pointwise (1x1) products ------------------------------------------------- */

/*
 * Error bounds. Each result of the pointwise path is one chain of
 * floating-point operations, each rounding once (relative error at most
 * u = 2^-24), over terms whose absolute values sum to S:
 *   - forward: the chain starts at the bias (exact) and takes C_in FMAs,
 *     S = |b| + sum_ci |w| |x|;
 *   - input gradient, overwriting: C_out FMAs from zero,
 *     S = sum_co |w| |dy|; adding into din: the same chain started from
 *     din's value (exact), and |din| joins S;
 *   - weight gradient: N x H x W FMAs from zero into a float that is
 *     stored and reloaded exactly between chunks, then one addition into
 *     dweight, S = |dweight| + sum_{n,p} |dy| |x|.
 * A chain of n roundings is off by at most gamma_n S, gamma_n =
 * n u / (1 - n u) (Higham, recursive summation), and gamma_n <= (n + 1) u
 * whenever n (n + 1) u <= 1, which every shape below satisfies (n stays
 * under 4000). So the bound is (n + 1) u S with n the chain's length: no
 * constant is measured or tuned.
 */
typedef struct {
    double fwd, din_set, din_add, dw; /* max |err| / (u S) */
} pw_acc;

/* |err| / (u S), asserted within the (n + 1) u S bound. */
static double pw_check(const char *what, float got, double ref, double S, int64_t n, double *worst)
{
    const double u = ldexp(1.0, -24), err = fabs((double)got - ref);
    ck_assert_msg(isfinite(got), "%s: not finite (or not written)", what);
    ck_assert_msg(err <= (double)(n + 1) * u * S,
                  "%s: %.9g vs %.9g: error %.3e above the bound %.3e (chain of %lld)", what, got,
                  ref, err, (double)(n + 1) * u * S, (long long)n);
    if (S > 0) *worst = fmax(*worst, err / (u * S));
    return err;
}

static pw_acc pw_accuracy_one(const conv_shape *s)
{
    conv_case k;
    conv_case_make(&k, s, 500);
    const cd__conv2d *c = &k.c;
    const int64_t P = c->H * c->W, Ci = c->C_in, Co = c->C_out, N = c->N;
    float *ws = fbuf((int64_t)cd__conv2d_pointwise_workspace(c));
    float *din_add = fbuf(k.n_in), *din0 = fbuf(k.n_in), *dw0 = fbuf(k.n_w);
    cd_gc_randn(din0, k.n_in, 501, 1.0f);
    cd_gc_randn(dw0, k.n_w, 502, 1.0f);
    /* NaN first: every output must be written. */
    for (int64_t i = 0; i < k.n_out; i++) k.out[i] = NAN;
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] = NAN;
    memcpy(din_add, din0, (size_t)k.n_in * sizeof(float));
    memcpy(k.dw, dw0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_pointwise_forward(c, k.out, k.in, k.w, k.b, ws, NULL, NULL);
    cd__conv2d_pointwise_backward(c, k.din, true, NULL, k.dout, k.in, k.w, ws);
    cd__conv2d_pointwise_backward(c, din_add, false, k.dw, k.dout, k.in, k.w, ws);
    pw_acc r = {0, 0, 0, 0};
    char what[160];
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < P; p++) {
            for (int64_t co = 0; co < Co; co++) {
                const double b = c->bias ? k.b[co] : 0.0;
                double ref = b, S = fabs(b);
                for (int64_t ci = 0; ci < Ci; ci++) {
                    const double t = (double)k.w[co * Ci + ci] * k.in[(n * Ci + ci) * P + p];
                    ref += t, S += fabs(t);
                }
                snprintf(what, sizeof what, "%s: output (%lld, %lld, %lld)", s->name, (long long)n,
                         (long long)co, (long long)p);
                pw_check(what, k.out[(n * Co + co) * P + p], ref, S, Ci, &r.fwd);
            }
            for (int64_t ci = 0; ci < Ci; ci++) {
                double ref = 0.0, S = 0.0;
                for (int64_t co = 0; co < Co; co++) {
                    const double t = (double)k.w[co * Ci + ci] * k.dout[(n * Co + co) * P + p];
                    ref += t, S += fabs(t);
                }
                const int64_t i = (n * Ci + ci) * P + p;
                snprintf(what, sizeof what, "%s: din (%lld, %lld, %lld)", s->name, (long long)n,
                         (long long)ci, (long long)p);
                pw_check(what, k.din[i], ref, S, Co, &r.din_set);
                snprintf(what, sizeof what, "%s: din added (%lld, %lld, %lld)", s->name,
                         (long long)n, (long long)ci, (long long)p);
                pw_check(what, din_add[i], din0[i] + ref, S + fabs(din0[i]), Co, &r.din_add);
            }
        }
    for (int64_t co = 0; co < Co; co++)
        for (int64_t ci = 0; ci < Ci; ci++) {
            double ref = dw0[co * Ci + ci], S = fabs(ref);
            for (int64_t n = 0; n < N; n++)
                for (int64_t p = 0; p < P; p++) {
                    const double t =
                        (double)k.dout[(n * Co + co) * P + p] * k.in[(n * Ci + ci) * P + p];
                    ref += t, S += fabs(t);
                }
            snprintf(what, sizeof what, "%s: dweight (%lld, %lld)", s->name, (long long)co,
                     (long long)ci);
            pw_check(what, k.dw[co * Ci + ci], ref, S, N * P + 1, &r.dw);
        }
    free(ws), free(din_add), free(din0), free(dw0);
    conv_case_free(&k);
    return r;
}

/* The UNet's 1x1 layers (a few images), then edges: pixel counts off the
 * 32-pixel micro-tile (7x7, 5x3, 1x1), channels off the vector, no bias,
 * small batches (output channels split across tasks) and weight gradients
 * over several batch tiles (2048 pixels a tile once C_in C_out reaches
 * 2^14: the "tiles" shapes take two). */
static const conv_shape pw_shapes[] = {
    {"UNet qkv 32->384 28x28", 2, 32, 28, 28, 384, 1, 1, 1, 0, 1, false},
    {"UNet 128->32 28x28", 2, 128, 28, 28, 32, 1, 1, 1, 0, 1, true},
    {"UNet qkv 64->384 14x14", 2, 64, 14, 14, 384, 1, 1, 1, 0, 1, false},
    {"UNet 128->64 14x14", 2, 128, 14, 14, 64, 1, 1, 1, 0, 1, true},
    {"UNet 128->128 7x7", 3, 128, 7, 7, 128, 1, 1, 1, 0, 1, true},
    {"20->33 7x7", 3, 20, 7, 7, 33, 1, 1, 1, 0, 1, true},
    {"17->16 5x3 no bias", 5, 17, 5, 3, 16, 1, 1, 1, 0, 1, false},
    {"16->24 1x1", 4, 16, 1, 1, 24, 1, 1, 1, 0, 1, true},
    {"50->70 6x9", 2, 50, 6, 9, 70, 1, 1, 1, 0, 1, true},
    {"128->144 14x14 N=13 (tiles)", 13, 128, 14, 14, 144, 1, 1, 1, 0, 1, true},
    {"160->112 28x28 N=4 (tiles)", 4, 160, 28, 28, 112, 1, 1, 1, 0, 1, true},
    {"48->20 7x7 N=70", 70, 48, 7, 7, 20, 1, 1, 1, 0, 1, true},
};
#define N_PW ((int)(sizeof pw_shapes / sizeof pw_shapes[0]))

START_TEST(pointwise_accuracy)
{
    const conv_shape *s = &pw_shapes[_i];
    const pw_acc a = pw_accuracy_one(s);
    printf("pointwise %-27s err/(u S): fwd %5.2f (bound %lld)  din %5.2f (%lld)  din+ %5.2f "
           "(%lld)  dW %5.2f (%lld)\n",
           s->name, a.fwd, (long long)(s->C_in + 1), a.din_set, (long long)(s->C_out + 1),
           a.din_add, (long long)(s->C_out + 1), a.dw, (long long)(s->N * s->H * s->W + 2));
}
END_TEST

/* The 1x1 layers take the pointwise path, forward and both backward modes:
 * bit for bit its own results. Held off, the dense kernels give other
 * bits (but for the overwriting input gradient), so the comparisons can
 * fail. */
START_TEST(pointwise_is_chosen)
{
    const conv_shape s = {"UNet 1x1 32->48 14x14", 3, 32, 14, 14, 48, 1, 1, 1, 0, 1, true};
    conv_case k;
    conv_case_make(&k, &s, 93);
    const cd__conv2d *c = &k.c;
    float *ws = fbuf((int64_t)cd__conv2d_pointwise_workspace(c)), *want = fbuf(k.n_out);
    float *din = fbuf(k.n_in), *dw = fbuf(k.n_w), *din_add = fbuf(k.n_in), *dw_add = fbuf(k.n_w);
    cd__conv2d_pointwise_forward(c, want, k.in, k.w, k.b, ws, NULL, NULL);
    cd__conv2d_pointwise_backward(c, din, true, dw, k.dout, k.in, k.w, ws);
    for (int64_t i = 0; i < k.n_in; i++) din_add[i] = 1.0f;
    for (int64_t i = 0; i < k.n_w; i++) dw_add[i] = 0.5f;
    cd__conv2d_pointwise_backward(c, din_add, false, dw_add, k.dout, k.in, k.w, ws);

    cd__conv2d_forward(c, k.out, k.in, k.w, k.b, k.ws);
    ck_assert_msg(memcmp(want, k.out, (size_t)k.n_out * sizeof(float)) == 0,
                  "the forward did not take the pointwise path");
    cd__conv2d_backward_set(c, k.din, k.dw, NULL, k.dout, k.in, k.w, k.ws);
    ck_assert_msg(memcmp(din, k.din, (size_t)k.n_in * sizeof(float)) == 0,
                  "the input gradient (backward_set) did not take the pointwise path");
    ck_assert_msg(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) == 0,
                  "the weight gradient did not take the pointwise path");
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] = 1.0f;
    for (int64_t i = 0; i < k.n_w; i++) k.dw[i] = 0.5f;
    cd__conv2d_backward(c, k.din, k.dw, NULL, k.dout, k.in, k.w, k.ws);
    ck_assert_msg(memcmp(din_add, k.din, (size_t)k.n_in * sizeof(float)) == 0,
                  "the input gradient (backward) did not take the pointwise path");
    ck_assert_msg(memcmp(dw_add, k.dw, (size_t)k.n_w * sizeof(float)) == 0,
                  "the weight gradient (backward) did not take the pointwise path");

    cd__cpu_force_portable(CD__KERNELS_POINTWISE, true);
    float *dense_ws = fbuf((int64_t)cd__conv2d_workspace(c));
    cd__conv2d_forward(c, k.out, k.in, k.w, k.b, dense_ws);
    ck_assert_msg(memcmp(want, k.out, (size_t)k.n_out * sizeof(float)) != 0,
                  "the dense kernels gave the pointwise forward's bits");
    memset(k.dw, 0, (size_t)k.n_w * sizeof(float));
    cd__conv2d_backward_set(c, k.din, k.dw, NULL, k.dout, k.in, k.w, dense_ws);
    ck_assert_msg(memcmp(dw, k.dw, (size_t)k.n_w * sizeof(float)) != 0,
                  "the dense kernels gave the pointwise weight gradient's bits");
    /* Overwriting, the input gradients agree bit for bit: on both paths
     * each is one FMA chain over the output channels in order. Adding,
     * the dense path adds the finished chain into din, the pointwise path
     * starts the chain from din. */
    ck_assert_msg(memcmp(din, k.din, (size_t)k.n_in * sizeof(float)) == 0,
                  "the dense and pointwise input gradients no longer agree");
    for (int64_t i = 0; i < k.n_in; i++) k.din[i] = 1.0f;
    cd__conv2d_backward(c, k.din, NULL, NULL, k.dout, k.in, k.w, dense_ws);
    ck_assert_msg(memcmp(din_add, k.din, (size_t)k.n_in * sizeof(float)) != 0,
                  "the dense kernels gave the pointwise input gradient's bits (adding)");
    cd__cpu_force_portable(CD__KERNELS_POINTWISE, false);
    free(ws), free(want), free(din), free(dw), free(din_add), free(dw_add), free(dense_ws);
    conv_case_free(&k);
}
END_TEST

START_TEST(pointwise_suits)
{
    static const struct {
        conv_shape s;
        bool suits;
    } cases[] = {
        {{"UNet qkv 32->384", 2, 32, 28, 28, 384, 1, 1, 1, 0, 1, false}, true},
        {{"UNet out 128->32", 2, 128, 28, 28, 32, 1, 1, 1, 0, 1, true}, true},
        {{"16->16 5x3", 2, 16, 5, 3, 16, 1, 1, 1, 0, 1, true}, true},
        {{"final 32->1", 2, 32, 28, 28, 1, 1, 1, 1, 0, 1, true}, false},
        {{"15->64", 2, 15, 28, 28, 64, 1, 1, 1, 0, 1, true}, false},
        {{"1x1 stride 2", 2, 32, 28, 28, 64, 1, 1, 2, 0, 1, true}, false},
        {{"1x1 pad 1", 2, 32, 28, 28, 64, 1, 1, 1, 1, 1, true}, false},
        {{"1x1 groups 2", 2, 32, 28, 28, 64, 1, 1, 1, 0, 2, true}, false},
        {{"1x1 depthwise", 2, 32, 28, 28, 32, 1, 1, 1, 0, 32, true}, false},
        {{"1x3", 2, 32, 28, 28, 64, 1, 3, 1, 0, 1, true}, false},
        {{"3x3", 2, 32, 28, 28, 64, 3, 3, 1, 1, 1, true}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_shape *s = &cases[i].s;
        cd__conv2d c;
        CD_ASSERT_OK(cd__conv2d_init(&c, s->N, s->C_in, s->H, s->W, s->C_out, s->kh, s->kw,
                                     s->stride, s->pad, s->groups, s->bias));
        ck_assert_msg(cd__conv2d_pointwise_suits(&c) == cases[i].suits, "%s: suits %d", s->name,
                      (int)cd__conv2d_pointwise_suits(&c));
    }
}
END_TEST
#endif

static Suite *make_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, conv2d_matches_reference, 0, N_PARITY);
    tcase_add_loop_test(tc, convt_matches_formula, 0, N_CONVT);
    tcase_add_test(tc, convt_weight_layout_is_in_out);
    suite_add_tcase(s, tc);

    tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, conv2d_gradcheck, 0, N_GRAD);
    tcase_add_loop_test(tc, convt_gradcheck, 0, N_CONVT);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, conv2d_forward_epilogue);
    tcase_add_test(tc, spectral_path_choice);
    tcase_add_test(tc, conv2d_init_errors);
    tcase_add_test(tc, convt_init_errors);
    tcase_add_test(tc, conv2d_batch_tiles);
    tcase_add_test(tc, convt_batch_tiles);
    tcase_add_test(tc, conv2d_thread_count_independent);
    tcase_add_test(tc, convt_thread_count_independent);
    tcase_add_test(tc, conv2d_null_gradients);
    tcase_add_test(tc, conv2d_reads_stay_in_bounds);
    tcase_add_test(tc, workspace_bounded);
    suite_add_tcase(s, tc);

#ifdef CD__CONV_X86
    tc = tcase_create("winograd");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, winograd_suits);
    /* The kernels need AVX-512; the portable pass runs without them, and
     * says so rather than counting them as passed. */
    if (cd__cpu_avx512()) {
        tcase_add_loop_test(tc, winograd_accuracy, 0, N_WG);
        tcase_add_loop_test(tc, winograd_grad_accuracy, 0, N_WG);
        tcase_add_test(tc, winograd_is_chosen);
    } else {
        printf("winograd: the kernels' tests are not run: no AVX-512 here\n");
    }
    suite_add_tcase(s, tc);
#endif

#ifdef CD__CONV_X86
    tc = tcase_create("pointwise");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pointwise_suits);
    if (cd__cpu_avx512()) {
        tcase_add_loop_test(tc, pointwise_accuracy, 0, N_PW);
        tcase_add_test(tc, pointwise_is_chosen);
    } else {
        printf("pointwise: the kernels' tests are not run: no AVX-512 here\n");
    }
    suite_add_tcase(s, tc);
#else
    printf("winograd, pointwise: not an x86-64 build; those paths and their tests are absent\n");
#endif
    return s;
}

CD_TEST_MAIN(make_suite)
