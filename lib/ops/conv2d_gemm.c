/*
 * conv2d_gemm.c - the im2col + GEMM path of conv2d.c: every convolution
 * on CPUs without AVX-512 apart from the depthwise ones.
 */
#include "conv2d_internal.h"

#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose I macro would clobber
 * identifiers below. */
#undef I
#include <string.h>

/* The gemm path's tile budget (floats) and largest tile. */
#define GEMM_BUDGET ((int64_t)1 << 21)
#define GEMM_MAX_TILE 16

/*
 * The portable path. The BLAS runs single-threaded (threads.c pins it:
 * OpenBLAS's own threading changes the bits with the thread count), so
 * the work is cut into fixed tasks here, each calling sgemm on its own
 * slice:
 *   forward      (image, block of output rows): im2col of the block, then
 *                W_g x col into the output, for each group;
 *   input grad   (image, group, block of input channels): those rows of
 *                W_g^T x dout, then col2im into that block's planes;
 *   weight grad  (group, block of im2col rows): those im2col rows of every
 *                image of the tile, dout x col^T summed image by image into
 *                an accumulator that is added to dweight at the end.
 * A 1x1 convolution with stride 1 and no padding skips im2col.
 */
typedef struct {
    int64_t T;        /* images per tile */
    int64_t Cig, Cog; /* channels per group */
    int64_t Kg;       /* Cig kh kw: rows of one group's im2col */
    int64_t K;        /* C_in kh kw: rows of an image's im2col */
    int64_t P;        /* output pixels per image */
    int64_t RB, nrb;  /* output rows per forward block, blocks per image */
    int64_t CB, ncb;  /* input channels per input-gradient block, blocks per group */
    int64_t KB, nkb;  /* im2col rows per weight-gradient block, blocks per group */
    int64_t col;      /* floats of column buffer per image */
    int64_t dws;      /* floats of weight-gradient accumulator */
} gemm_geom;

static bool is_pointwise(const cd__conv2d *c)
{
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->groups == 1;
}

static gemm_geom gemm_geometry(const cd__conv2d *c)
{
    gemm_geom g;
    g.Cig = c->C_in / c->groups;
    g.Cog = c->C_out / c->groups;
    g.Kg = g.Cig * c->kh * c->kw;
    g.K = c->C_in * c->kh * c->kw;
    g.P = c->H_out * c->W_out;
    /* Blocks of about 256 pixels, 64 im2col rows, 8 channels: enough tasks
     * for the threads even for one image, big enough for sgemm. */
    g.RB = cd__min64(c->H_out, cd__max64(1, 256 / c->W_out));
    g.nrb = cd__ceil_div(c->H_out, g.RB);
    g.CB = cd__min64(g.Cig, 8);
    g.ncb = cd__ceil_div(g.Cig, g.CB);
    g.KB = cd__min64(g.Kg, 64);
    g.nkb = cd__ceil_div(g.Kg, g.KB);
    /* Forward blocks, input-gradient rows and weight-gradient rows of one
     * image all fit in the larger of K x P and the forward blocks. */
    g.col = cd__round_up(cd__max64(g.K * g.P, g.nrb * g.Kg * g.RB * c->W_out), 16);
    g.dws = cd__round_up(c->C_out * g.Kg, 16);
    const int64_t per_image = g.col + c->C_in * c->H * c->W;
    g.T = cd__max64(1, cd__min64(cd__min64(c->N, GEMM_MAX_TILE), GEMM_BUDGET / per_image));
    return g;
}

size_t cd__conv2d_gemm_workspace(const cd__conv2d *c)
{
    if (is_pointwise(c)) return 0;
    const gemm_geom g = gemm_geometry(c);
    return (size_t)(g.dws + g.T * (g.col + c->C_in * c->H * c->W));
}

/* im2col rows k in [k0, k1) of group gr of one image, output rows
 * [oy0, oy1), into col (row stride ld). Row k = (ci, ky, kx) holds the
 * input pixel under tap (ky, kx) of each output pixel, or 0. */
static void im2col_rows(float *col, int64_t ld, const cd__conv2d *c, const float *img, int64_t gr,
                        int64_t k0, int64_t k1, int64_t oy0, int64_t oy1)
{
    const int64_t s = c->stride, H = c->H, W = c->W, Wo = c->W_out;
    const int64_t Cig = c->C_in / c->groups, khw = c->kh * c->kw;
    for (int64_t k = k0; k < k1; k++) {
        const int64_t ci = k / khw, ky = (k % khw) / c->kw, kx = k % c->kw;
        const float *plane = img + (gr * Cig + ci) * H * W;
        float *row = col + (k - k0) * ld;
        const int64_t xo = kx - c->pad;
        /* Output columns whose input column is inside the image. */
        const int64_t lo = cd__min64(Wo, xo >= 0 ? 0 : cd__ceil_div(-xo, s));
        const int64_t hi = cd__max64(lo, cd__min64(Wo, xo < W ? cd__ceil_div(W - xo, s) : 0));
        for (int64_t oy = oy0; oy < oy1; oy++) {
            float *r = row + (oy - oy0) * Wo;
            const int64_t iy = oy * s - c->pad + ky;
            if (iy < 0 || iy >= H) {
                memset(r, 0, (size_t)Wo * sizeof *r);
                continue;
            }
            const float *src = plane + iy * W + xo;
            for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0.0f;
            if (s == 1)
                memcpy(r + lo, src + lo, (size_t)(hi - lo) * sizeof *r);
            else
                for (int64_t ox = lo; ox < hi; ox++) r[ox] = src[ox * s];
            for (int64_t ox = hi; ox < Wo; ox++) r[ox] = 0.0f;
        }
    }
}

/* plane (H x W) += col2im of im2col rows of channel ci (kh kw rows of
 * stride P), summed in scratch first so it is added once. */
static void col2im_plane(float *plane, float *scratch, const float *col, const cd__conv2d *c)
{
    const int64_t s = c->stride, H = c->H, W = c->W, Ho = c->H_out, Wo = c->W_out;
    memset(scratch, 0, (size_t)(H * W) * sizeof *scratch);
    for (int64_t ky = 0; ky < c->kh; ky++)
        for (int64_t kx = 0; kx < c->kw; kx++) {
            const float *row = col + (ky * c->kw + kx) * Ho * Wo;
            const int64_t xo = kx - c->pad;
            const int64_t lo = cd__min64(Wo, xo >= 0 ? 0 : cd__ceil_div(-xo, s));
            const int64_t hi = cd__max64(lo, cd__min64(Wo, xo < W ? cd__ceil_div(W - xo, s) : 0));
            for (int64_t oy = 0; oy < Ho; oy++) {
                const int64_t iy = oy * s - c->pad + ky;
                if (iy < 0 || iy >= H) continue;
                const float *r = row + oy * Wo;
                float *dst = scratch + iy * W + xo;
                if (s == 1)
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox] += r[ox];
                else
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox * s] += r[ox];
            }
        }
    for (int64_t x = 0; x < H * W; x++) plane[x] += scratch[x];
}

typedef struct {
    const cd__conv2d *c;
    const gemm_geom *g;
    float *col;     /* T x g->col */
    float *scratch; /* T x C_in x H W */
    float *dws;
    const float *in, *dout, *weight, *bias; /* first image of the tile */
    float *out, *din;
    int64_t T;
} gemm_job;

static void gemm_fwd_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t t = i / g->nrb, rb = i % g->nrb;
    const int64_t oy0 = rb * g->RB, oy1 = cd__min64(c->H_out, oy0 + g->RB);
    const int64_t np = (oy1 - oy0) * c->W_out, p0 = oy0 * c->W_out;
    const float *img = j->in + t * c->C_in * c->H * c->W;
    float *col = j->col + t * g->col + rb * g->Kg * g->RB * c->W_out;
    for (int64_t gr = 0; gr < c->groups; gr++) {
        float *o = j->out + (t * c->C_out + gr * g->Cog) * g->P + p0;
        im2col_rows(col, np, c, img, gr, 0, g->Kg, oy0, oy1);
        if (j->bias)
            for (int64_t co = 0; co < g->Cog; co++)
                for (int64_t x = 0; x < np; x++) o[co * g->P + x] = j->bias[gr * g->Cog + co];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->Cog, (int)np, (int)g->Kg,
                    1.0f, j->weight + gr * g->Cog * g->Kg, (int)g->Kg, col, (int)np,
                    j->bias ? 1.0f : 0.0f, o, (int)g->P);
    }
}

static void gemm_din_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t per_t = c->groups * g->ncb;
    const int64_t t = i / per_t, gr = (i % per_t) / g->ncb, cb = i % g->ncb;
    const int64_t ci0 = cb * g->CB, nci = cd__min64(g->CB, g->Cig - ci0);
    const int64_t khw = c->kh * c->kw;
    float *col = j->col + t * g->col + (gr * g->Kg + ci0 * khw) * g->P;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(nci * khw), (int)g->P, (int)g->Cog,
                1.0f, j->weight + gr * g->Cog * g->Kg + ci0 * khw, (int)g->Kg,
                j->dout + (t * c->C_out + gr * g->Cog) * g->P, (int)g->P, 0.0f, col, (int)g->P);
    for (int64_t ci = ci0; ci < ci0 + nci; ci++) {
        const int64_t ch = gr * g->Cig + ci;
        col2im_plane(j->din + (t * c->C_in + ch) * c->H * c->W,
                     j->scratch + (t * c->C_in + ch) * c->H * c->W, col + (ci - ci0) * khw * g->P,
                     c);
    }
}

static void gemm_dw_task(void *ctx, int64_t i)
{
    const gemm_job *j = ctx;
    const cd__conv2d *c = j->c;
    const gemm_geom *g = j->g;
    const int64_t gr = i / g->nkb, kb = i % g->nkb;
    const int64_t k0 = kb * g->KB, nk = cd__min64(g->KB, g->Kg - k0);
    /* This block's rows of every image's column buffer. */
    float *col = j->col + (gr * g->Kg + k0) * g->P;
    for (int64_t t = 0; t < j->T; t++) {
        float *ct = col + t * g->col;
        im2col_rows(ct, g->P, c, j->in + t * c->C_in * c->H * c->W, gr, k0, k0 + nk, 0, c->H_out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->Cog, (int)nk, (int)g->P, 1.0f,
                    j->dout + (t * c->C_out + gr * g->Cog) * g->P, (int)g->P, ct, (int)g->P, 1.0f,
                    j->dws + gr * g->Cog * g->Kg + k0, (int)g->Kg);
    }
}

/* 1x1: tasks over (image, block of 256 pixels) for forward and input
 * gradient, over blocks of 64 input channels for the weight gradient. */
typedef struct {
    const cd__conv2d *c;
    const float *in, *dout, *weight, *bias;
    float *out, *din, *dweight;
    int64_t nblk;
} pw_job;

#define PW_BLOCK 256
#define PW_CBLOCK 64

static void pw_fwd_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, n = i / j->nblk, p0 = (i % j->nblk) * PW_BLOCK;
    const int64_t np = cd__min64(PW_BLOCK, P - p0);
    float *o = j->out + n * c->C_out * P + p0;
    if (j->bias)
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t x = 0; x < np; x++) o[co * P + x] = j->bias[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->C_out, (int)np, (int)c->C_in,
                1.0f, j->weight, (int)c->C_in, j->in + n * c->C_in * P + p0, (int)P,
                j->bias ? 1.0f : 0.0f, o, (int)P);
}

static void pw_din_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, n = i / j->nblk, p0 = (i % j->nblk) * PW_BLOCK;
    const int64_t np = cd__min64(PW_BLOCK, P - p0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c->C_in, (int)np, (int)c->C_out, 1.0f,
                j->weight, (int)c->C_in, j->dout + n * c->C_out * P + p0, (int)P, 1.0f,
                j->din + n * c->C_in * P + p0, (int)P);
}

static void pw_dw_task(void *ctx, int64_t i)
{
    const pw_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H * c->W, ci0 = i * PW_CBLOCK, nci = cd__min64(PW_CBLOCK, c->C_in - ci0);
    for (int64_t n = 0; n < c->N; n++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->C_out, (int)nci, (int)P, 1.0f,
                    j->dout + n * c->C_out * P, (int)P, j->in + (n * c->C_in + ci0) * P, (int)P,
                    1.0f, j->dweight + ci0, (int)c->C_in);
}

void cd__conv2d_gemm_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                             const float *bias, float *ws)
{
    const gemm_geom g = gemm_geometry(c);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * g.P;
    if (is_pointwise(c)) {
        pw_job j = {c,
                    in,
                    NULL,
                    weight,
                    c->bias ? bias : NULL,
                    out,
                    NULL,
                    NULL,
                    cd__ceil_div(g.P, PW_BLOCK)};
        cd__parallel_for(c->N * j.nblk, pw_fwd_task, &j);
        return;
    }
    gemm_job j = {c,    &g,   ws + g.dws, NULL, NULL, NULL, NULL, weight, c->bias ? bias : NULL,
                  NULL, NULL, 0};
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        j.T = cd__min64(g.T, c->N - n0);
        j.in = in + n0 * in_img;
        j.out = out + n0 * out_img;
        cd__parallel_for(j.T * g.nrb, gemm_fwd_task, &j);
    }
}

void cd__conv2d_gemm_backward(const cd__conv2d *c, float *din, float *dweight, const float *dout,
                              const float *in, const float *weight, float *ws)
{
    const gemm_geom g = gemm_geometry(c);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * g.P;
    if (is_pointwise(c)) {
        pw_job j = {c, in, dout, weight, NULL, NULL, din, dweight, cd__ceil_div(g.P, PW_BLOCK)};
        if (din) cd__parallel_for(c->N * j.nblk, pw_din_task, &j);
        if (dweight) cd__parallel_for(cd__ceil_div(c->C_in, PW_CBLOCK), pw_dw_task, &j);
        return;
    }
    float *dws = ws, *col = ws + g.dws, *scratch = col + g.T * g.col;
    gemm_job j = {c, &g, col, scratch, dws, NULL, NULL, weight, NULL, NULL, NULL, 0};
    if (dweight) memset(dws, 0, (size_t)(c->C_out * g.Kg) * sizeof *dws);
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        j.T = cd__min64(g.T, c->N - n0);
        j.in = in ? in + n0 * in_img : NULL;
        j.dout = dout + n0 * out_img;
        j.din = din ? din + n0 * in_img : NULL;
        /* Weight-gradient rows first: the input gradient reuses the buffer. */
        if (dweight) cd__parallel_for(c->groups * g.nkb, gemm_dw_task, &j);
        if (din) cd__parallel_for(j.T * c->groups * g.ncb, gemm_din_task, &j);
    }
    if (dweight)
        for (int64_t i = 0; i < c->C_out * g.Kg; i++) dweight[i] += dws[i];
}
