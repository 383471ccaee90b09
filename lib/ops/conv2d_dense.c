/*
 * conv2d_dense.c - the dense path of conv2d.c on AVX-512 CPUs: frames,
 * weight packing, planning and the forward and backward drivers (conv2d.c
 * describes the method). The forward and input-gradient kernels, and the
 * channel-vectorised weight-gradient kernels, are in
 * conv2d_dense_kernels.c.
 */
#include "conv2d_dense_kernels.h"

#include <string.h>

#ifdef CD__CONV_X86

/* Zeros after each padded image: vector loads run up to 15 floats past the
 * last valid position. */
#define FRAME_SLACK 64
/* Wide vectors per compute item of the dense kernel: a multiple of every NV. */
#define QCHUNK 24
/* Weight-gradient blocking: 4 output channels x 6 taps per micro-tile,
 * 8 micro-tiles (48 taps) per task. */
#define DW_MR 4
#define DW_NK 6
#define DW_NB 8
/* Images of at least this many wide vectors are summed image by image. */
#define DW_BIG_IMAGE 32
/* Tiles of at least this many images use one task per image (frames built
 * and consumed on one core); smaller tiles split the work finer. */
#define IMAGE_TASKS_MIN 4

/* Output channels per block of the channel-vectorised kernels: 32, or 16
 * for layers of 16 to 31 outputs. */
#define CVB 32

/* ---- padded frames ------------------------------------------------------- */

/* Frames back to back with FRAME_SLACK zeros after each image. */
static cd__framing make_frame(int64_t C, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w)
{
    cd__framing f = {.C = C,
                     .H = H,
                     .W = W,
                     .top = pad_h,
                     .left = pad_w,
                     .Hp = H + 2 * pad_h,
                     .Wp = W + 2 * pad_w};
    f.CS = f.Hp * f.Wp;
    f.IS = cd__round_up(C * f.CS + FRAME_SLACK, 16);
    return f;
}

/* All planes of one image, then the image's slack. */
static void pad_image(float *dst, const float *src, const cd__framing *f)
{
    for (int64_t ch = 0; ch < f->C; ch++)
        cd__pad_plane(dst + ch * f->CS, src + ch * f->H * f->W, f);
    memset(dst + f->C * f->CS, 0, (size_t)(f->IS - f->C * f->CS) * sizeof *dst);
}

/* ---- writing wide results ------------------------------------------------ */

/*
 * Copy wide positions [q0, q0 + nq) of rows acc[i][...] (i < mr, row stride
 * ld) into dst channels (stride cs) of Ho x Wo, dropping x >= Wo and
 * q >= Qv. Adds bias[i] when bias is given, adds into dst when accumulate.
 */
static void store_wide(float *dst, int64_t cs, int mr, const float *acc, int64_t ld, int64_t q0,
                       int64_t nq, int64_t Qv, int64_t Wp, int64_t Wo, const float *bias,
                       bool accumulate)
{
    const int64_t qend = cd__min64(q0 + nq, Qv);
    for (int64_t y = q0 / Wp; y * Wp < qend; y++) {
        const int64_t xa = cd__max64(q0 - y * Wp, 0), xb = cd__min64(qend - y * Wp, Wo);
        if (xa >= xb) continue;
        const int64_t shift = y * Wp - q0; /* acc index of x = 0 in this row */
        for (int i = 0; i < mr; i++) {
            float *o = dst + i * cs + y * Wo;
            const float *a = acc + i * ld;
            if (accumulate) {
                for (int64_t x = xa; x < xb; x++) o[x] += a[shift + x];
            } else {
                const float b = bias ? bias[i] : 0.0f;
                for (int64_t x = xa; x < xb; x++) o[x] = a[shift + x] + b;
            }
        }
    }
}

/* ---- the weight-gradient kernel vectorised over pixels ------------------- */

/*
 * lanes[i][j][:] += sum over images t < nimg and wide vectors v < nv of
 * d[i][t dstride + 16v + lane] * src[t sstride + off[j] + 16v + lane]:
 * DW_MR output-gradient rows against DW_NK shifted views of the padded
 * inputs. It stays here, not with the other micro-kernels, because
 * dense_dw_task calls it directly and GCC specialises it for that caller.
 */
static CD__AVX512 void dense_dw_mk(const float *const *d, const float *src, const int64_t *off,
                                   int64_t nv, int64_t nimg, int64_t dstride, int64_t sstride,
                                   __mmask16 tail, float *lanes)
{
    __m512 acc[DW_MR][DW_NK];
    CD__UNROLL
    for (int i = 0; i < DW_MR; i++) {
        CD__UNROLL
        for (int j = 0; j < DW_NK; j++) acc[i][j] = _mm512_loadu_ps(lanes + (i * DW_NK + j) * 16);
    }
    for (int64_t t = 0; t < nimg; t++) {
        const float *d0 = d[0] + t * dstride, *d1 = d[1] + t * dstride, *d2 = d[2] + t * dstride,
                    *d3 = d[3] + t * dstride;
        const float *st = src + t * sstride;
        const float *s0 = st + off[0], *s1 = st + off[1], *s2 = st + off[2], *s3 = st + off[3],
                    *s4 = st + off[4], *s5 = st + off[5];
        for (int64_t v = 0; v < nv; v++) {
            /* The last vector reads only lanes before the end of the plane;
             * the other lanes are zero. */
            const __mmask16 m = v == nv - 1 ? tail : (__mmask16)0xFFFF;
            const int64_t q = 16 * v;
            const __m512 dv[DW_MR] = {_mm512_maskz_loadu_ps(m, d0 + q),
                                      _mm512_maskz_loadu_ps(m, d1 + q),
                                      _mm512_maskz_loadu_ps(m, d2 + q),
                                      _mm512_maskz_loadu_ps(m, d3 + q)};
            const float *sp[DW_NK] = {s0, s1, s2, s3, s4, s5};
            CD__UNROLL
            for (int j = 0; j < DW_NK; j++) {
                const __m512 x = _mm512_maskz_loadu_ps(m, sp[j] + q);
                CD__UNROLL
                for (int i = 0; i < DW_MR; i++) acc[i][j] = _mm512_fmadd_ps(dv[i], x, acc[i][j]);
            }
        }
    }
    CD__UNROLL
    for (int i = 0; i < DW_MR; i++) {
        CD__UNROLL
        for (int j = 0; j < DW_NK; j++) _mm512_storeu_ps(lanes + (i * DW_NK + j) * 16, acc[i][j]);
    }
}

/* ---- the dense plan -------------------------------------------------------- */

/*
 * A convolution of stride s runs as a stride-1 convolution on
 * space-to-depth frames: input channel ci and phase (a, b) in s x s give
 * frame channel (ci s + a) s + b, holding xpad[ci][Y s + a][X s + b] (xpad
 * the zero-padded input), and the kernel shrinks to khs x kws =
 * ceil(kh/s) x ceil(kw/s) taps per frame channel, taps past kh x kw being
 * zero. For s = 1 the frames are just the padded input. Group g owns frame
 * channels [g Cs, (g+1) Cs) and weight rows [g Cog, (g+1) Cog).
 */
typedef struct {
    int64_t s, G, Cig, Cog;
    int64_t Cs;                /* frame channels per group: Cig s^2 */
    int64_t khs, kws;          /* taps per frame channel */
    int64_t Ks;                /* Cs khs kws: reduction length per output */
    cd__framing in;            /* input frames, C_in s^2 channels */
    bool in_direct;            /* s = 1, pad = 0: the input is its own frames */
    bool din_direct;           /* s = 1 and pad < kernel: din accumulated in place */
    cd__framing dout;          /* padded output gradients, for din */
    bool dout_direct;          /* no padding needed: dout is its own frames */
    bool wide_direct;          /* W_out == Wp: dout rows are their own wide rows */
    int64_t Hd, Wd;            /* frame-gradient planes, when !din_direct */
    int64_t dxs;               /* floats of frame gradient per image */
    int64_t Qv, nvq, QS;       /* output-gradient rows at the frame stride */
    int64_t DS;                /* floats per image of those rows, or of doutT */
    int64_t wpk;               /* floats of packed weights (either packing) */
    int64_t dws;               /* floats of the weight-gradient accumulator */
    int64_t fin, fdout, dwide; /* floats of buffer per image (0 when direct) */
    /* Weight gradient vectorised over output channels (cv), else over
     * pixels: */
    const dwcv_kind *cv; /* NULL: the pixel-vectorised kernel */
    int cvv;             /* 16-channel vectors per micro-tile (1 or 2) */
    int64_t cvR;         /* tap rows per micro-tile */
    int64_t CoP;         /* doutT row: C_out rounded up to 16 cvv */
    int64_t Hout, Wout;  /* the convolution's output size */
    int64_t T;           /* images per tile */
} dense_plan;

/* Packed weight rows per block for M outputs: the channel kernels' block
 * (dense_job_finish: 32, or 16 below 32 outputs), which they need 16 or
 * more outputs for, else the pixel kernels' MRB. */
static int64_t pack_rows(int64_t M) { return M >= 32 ? CVB : M >= 16 ? 16 : MRB; }

static dense_plan dense_planner(const cd__conv2d *c)
{
    dense_plan p;
    const int64_t s = c->stride;
    p.s = s;
    p.G = c->groups;
    p.Cig = c->C_in / p.G;
    p.Cog = c->C_out / p.G;
    p.Cs = p.Cig * s * s;
    p.khs = cd__ceil_div(c->kh, s);
    p.kws = cd__ceil_div(c->kw, s);
    p.Ks = p.Cs * p.khs * p.kws;
    p.in = (cd__framing){.C = c->C_in * s * s,
                         .H = c->H,
                         .W = c->W,
                         .top = c->pad,
                         .left = c->pad,
                         .Hp = cd__ceil_div(c->H + 2 * c->pad, s),
                         .Wp = cd__ceil_div(c->W + 2 * c->pad, s)};
    p.in.CS = p.in.Hp * p.in.Wp;
    p.in.IS = cd__round_up(p.in.C * p.in.CS + FRAME_SLACK, 16);
    /* Without padding the source tensors serve as frames as they are: the
     * kernels mask their last vector, so they never read past a plane's
     * last valid position plus the taps' reach, which stays in the plane. */
    p.in_direct = s == 1 && c->pad == 0;
    if (p.in_direct) p.in.IS = c->C_in * p.in.CS;
    p.din_direct = s == 1 && c->pad < c->kh && c->pad < c->kw;
    p.dout_direct = false;
    if (p.din_direct) {
        p.dout = make_frame(c->C_out, c->H_out, c->W_out, c->kh - 1 - c->pad, c->kw - 1 - c->pad);
        p.dout_direct = c->kh - 1 - c->pad == 0 && c->kw - 1 - c->pad == 0;
        if (p.dout_direct) p.dout.IS = c->C_out * p.dout.CS;
        p.Hd = p.Wd = p.dxs = 0;
    } else {
        p.dout = make_frame(c->C_out, c->H_out, c->W_out, p.khs - 1, p.kws - 1);
        p.Hd = c->H_out + p.khs - 1;
        p.Wd = c->W_out + p.kws - 1;
        p.dxs = cd__round_up(p.in.C * p.Hd * p.Wd, 16);
    }
    p.Qv = (c->H_out - 1) * p.in.Wp + c->W_out;
    p.nvq = cd__ceil_div(p.Qv, 16);
    p.wide_direct = p.in.Wp == c->W_out;
    p.QS = p.wide_direct ? p.Qv : p.nvq * 16;
    p.DS = c->C_out * p.QS;
    p.Hout = c->H_out;
    p.Wout = c->W_out;
    p.cv = NULL;
    p.cvv = 0;
    p.cvR = 0;
    p.CoP = 0;
    /* The channel-vectorised kernel needs dout transposed; with few taps
     * and dout usable in place (1x1 layers), that copy costs more than the
     * kernel saves. */
    if (p.G == 1 && c->C_out >= 16 && !(p.wide_direct && p.Ks < 64))
        for (size_t k = 0; k < sizeof cd__dwcv_kinds / sizeof cd__dwcv_kinds[0]; k++)
            if (cd__dwcv_kinds[k].kw == p.kws) p.cv = &cd__dwcv_kinds[k];
    if (p.cv) {
        /* doutT replaces the wide rows. */
        p.cvv = c->C_out >= 32 ? 2 : 1;
        p.cvR = p.cv->R[2 - p.cvv];
        p.CoP = cd__round_up(c->C_out, 16 * p.cvv);
        p.wide_direct = false;
        p.DS = c->H_out * c->W_out * p.CoP;
    }
    const int64_t fwd = p.G * cd__round_up(p.Cog, pack_rows(p.Cog)) * p.Ks;
    const int64_t bwd = p.G * cd__round_up(p.Cs, pack_rows(p.Cs)) * p.Cog * p.khs * p.kws;
    p.wpk = cd__round_up(cd__max64(fwd, bwd), 16);
    p.dws = cd__round_up(p.cv ? p.Ks * p.CoP : c->C_out * p.Ks, 16);
    p.fin = p.in_direct ? 0 : p.in.IS;
    p.fdout = p.dout_direct ? 0 : p.dout.IS;
    p.dwide = p.wide_direct ? 0 : p.DS;
    const int64_t per_image = cd__max64(1, 2 * p.fin + 2 * p.dwide + p.fdout + p.dxs);
    p.T = cd__max64(1, cd__min64(cd__min64(c->N, CD__DIRECT_TILE), CD__TILE_BUDGET / per_image));
    return p;
}

/* Backward layout: wpk, dws, input frames x2, dwide (or doutT) x2, dout
 * frames, dxf.
 * Forward uses wpk and the first input frames. */
size_t cd__conv2d_dense_workspace(const cd__conv2d *c)
{
    const dense_plan p = dense_planner(c);
    return (size_t)(p.wpk + p.dws + p.T * (2 * p.fin + 2 * p.dwide + p.fdout + p.dxs));
}

/* Weight packing: every layout is [g][ceil(M/blk)][K][blk], zero rows past
 * M, so a micro-kernel reads the blk weights of one tap from one cache
 * line. Forward: M = Cog output rows over the K = Ks frame taps
 * W'[co][cs][kys][kxs]. Input gradient ("flipped"): M = Cs frame channels
 * over the taps (co, ky, kx), reading W'[co][cs][khs-1-ky][kws-1-kx]. One
 * task per (group, block); it runs on every call, so it avoids divisions
 * in the inner loop. */
typedef struct {
    float *dst;
    const float *w;
    const cd__conv2d *c;
    const dense_plan *p;
    int64_t blk, nblk;
    bool flipped;
} pack_job;

/* The weight read by frame channel cs at frame tap (kys, kxs) of output
 * co (group-local), or 0 past the real kernel. */
static float frame_weight(const pack_job *j, int64_t co, int64_t cs, int64_t kys, int64_t kxs)
{
    const cd__conv2d *c = j->c;
    const int64_t s = j->p->s;
    const int64_t ci = s == 1 ? cs : cs / (s * s), a = s == 1 ? 0 : (cs / s) % s;
    const int64_t ky = kys * s + a, kx = kxs * s + (s == 1 ? 0 : cs % s);
    if (ky >= c->kh || kx >= c->kw) return 0.0f;
    return j->w[((co * j->p->Cig + ci) * c->kh + ky) * c->kw + kx];
}

static void pack_task(void *ctx, int64_t gb)
{
    const pack_job *j = ctx;
    const dense_plan *p = j->p;
    const int64_t g = gb / j->nblk, b = gb % j->nblk, blk = j->blk;
    const int64_t M = j->flipped ? p->Cs : p->Cog, taps = p->khs * p->kws;
    const int64_t K = (j->flipped ? p->Cog : p->Cs) * taps;
    float *dst = j->dst + gb * K * blk;
    for (int64_t k = 0; k < K; k++, dst += blk) {
        const int64_t outer = k / taps, ky = k % taps / p->kws, kx = k % p->kws;
        for (int64_t i = 0; i < blk; i++) {
            const int64_t m = b * blk + i;
            if (m >= M)
                dst[i] = 0.0f;
            else if (j->flipped)
                dst[i] = frame_weight(j, g * p->Cog + outer, m, p->khs - 1 - ky, p->kws - 1 - kx);
            else
                dst[i] = frame_weight(j, g * p->Cog + m, outer, ky, kx);
        }
    }
}

static void pack_weights(float *dst, const float *w, const cd__conv2d *c, const dense_plan *p,
                         int64_t blk, bool flipped)
{
    pack_job j = {dst, w, c, p, blk, cd__ceil_div(flipped ? p->Cs : p->Cog, blk), flipped};
    cd__parallel_for(p->G * j.nblk, pack_task, &j);
}

/* The columns X of a space-to-depth frame row that read the source row,
 * at v = X s + off: [*x0, *x1) within [0, Wp). */
static void frame_columns(int64_t off, int64_t s, int64_t W, int64_t Wp, int64_t *x0, int64_t *x1)
{
    *x0 = off >= 0 ? 0 : cd__min64(Wp, (-off + s - 1) / s);
    *x1 = W - 1 - off < 0 ? *x0 : cd__max64(*x0, cd__min64(Wp, (W - 1 - off) / s + 1));
}

/* Frames of input channel ci of one image (for s > 1, its s^2
 * space-to-depth frames), plus the image's slack after the last channel.
 * The strided copies run without a test per element: the strided convolutions
 * spent most of their time here. */
static CD__AVX512 void frames_plane(float *img, const float *src_img, const cd__conv2d *c,
                                    const cd__framing *f, int64_t ci)
{
    const int64_t s = c->stride, Wp = f->Wp;
    const float *src = src_img + ci * c->H * c->W;
    if (s == 1) {
        cd__pad_plane(img + ci * f->CS, src, f);
    } else {
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++) {
                float *fr = img + ((ci * s + a) * s + b) * f->CS;
                const int64_t off = b - c->pad;
                int64_t x0, x1;
                frame_columns(off, s, c->W, Wp, &x0, &x1);
                for (int64_t Y = 0; Y < f->Hp; Y++) {
                    float *row = fr + Y * Wp;
                    const int64_t u = Y * s + a - c->pad;
                    if (u < 0 || u >= c->H) {
                        for (int64_t X = 0; X < Wp; X++) row[X] = 0.0f;
                        continue;
                    }
                    const float *sr = src + u * c->W + off;
                    int64_t X = 0;
                    for (; X < x0; X++) row[X] = 0.0f;
                    for (; X < x1; X++) row[X] = sr[X * s];
                    for (; X < Wp; X++) row[X] = 0.0f;
                }
            }
    }
    if (ci == c->C_in - 1)
        memset(img + f->C * f->CS, 0, (size_t)(f->IS - f->C * f->CS) * sizeof *img);
}

/* Tasks (image, input channel) filling a tile of frames. */
typedef struct {
    const cd__conv2d *c;
    const cd__framing *f;
    float *dst;
    const float *src; /* first image of the tile */
} frames_job;

static void frames_task(void *ctx, int64_t i)
{
    const frames_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t t = i / c->C_in, ci = i % c->C_in;
    frames_plane(j->dst + t * j->f->IS, j->src + t * c->C_in * c->H * c->W, c, j->f, ci);
}

/* A stride-1 convolution of a tile of frames, per group: items
 * (group, block of MRB output rows, QCHUNK wide vectors) of each image. */
typedef struct {
    const cd__framing *f;
    const float *frames; /* first image of the tile */
    int64_t C, kh, kw;   /* reduction: frame channels per group x taps */
    const float *wpk;    /* [G][nblk][C kh kw][MRB] */
    int64_t G, M, Ho, Wo;
    float *dst;     /* first image of the tile */
    int64_t dst_is; /* floats per destination image */
    const float *bias;
    bool accumulate;
    int64_t nblk, nqc, nvec, Qv, items;
    /* Channel-vectorised: kernel, its one-row form, its pixel block,
     * channels per block, and blocks per image. */
    fcv_fn cv, cv1;
    int nr, npx;
    int64_t cvb, ncb, nyb, nxb;
} dense_job;

/* Lanes doing useful work, per kernel family, decide between them. */
static bool use_channel_kernel(const dense_job *j, int nr, int npx, int64_t cvb)
{
    /* Short reductions (the first layer's 49 taps) cannot hide the
     * transposed stores. */
    if (j->M < cvb || j->Ho < nr || j->Wo < npx || j->C * j->kh * j->kw < 128) return false;
    const double pixel = (double)(j->Ho * j->Wo) / (double)(16 * cd__ceil_div(j->Qv, 16));
    const double chan = (double)(j->Ho * j->Wo) /
                        (double)(cd__round_up(j->Ho, nr) * cd__round_up(j->Wo, npx)) *
                        (double)j->M / (double)cd__round_up(j->M, cvb);
    /* The channel kernel does a little more work per FMA (transposed
     * stores, more broadcasts), so it must win clearly on lanes. */
    return chan > 1.12 * pixel;
}

/* Call after filling f, C, kh, kw, M, Ho, Wo: picks the kernel family;
 * the caller packs wpk to match (j->cv set: pack_cv_*). */
static void dense_job_finish(dense_job *j)
{
    j->Qv = (j->Ho - 1) * j->f->Wp + j->Wo;
    j->nvec = cd__ceil_div(j->Qv, 16);
    j->cv = NULL;
    j->cvb = j->M >= 32 ? 32 : 16;
    const bool wide = j->cvb == 32;
    if (use_channel_kernel(j, wide ? 1 : 2, 14, j->cvb)) {
        j->cv = wide ? cd__fcv_mk_1x14x2 : cd__fcv_mk_2x14x1, j->nr = wide ? 1 : 2, j->npx = 14;
        j->cv1 = wide ? cd__fcv_mk_1x14x2 : cd__fcv_mk_1x14x1;
    } else if (use_channel_kernel(j, wide ? 2 : 4, 7, j->cvb)) {
        j->cv = wide ? cd__fcv_mk_2x7x2 : cd__fcv_mk_4x7x1, j->nr = wide ? 2 : 4, j->npx = 7;
        j->cv1 = wide ? cd__fcv_mk_1x7x2 : cd__fcv_mk_1x7x1;
    }
    if (j->cv) {
        j->ncb = cd__ceil_div(j->M, j->cvb);
        j->nyb = cd__ceil_div(j->Ho, j->nr);
        j->nxb = cd__ceil_div(j->Wo, j->npx);
        j->items = j->G * j->ncb * j->nyb;
    } else {
        j->nblk = cd__ceil_div(j->M, MRB);
        j->nqc = cd__ceil_div(j->nvec, QCHUNK);
        j->items = j->G * j->nblk * j->nqc;
    }
}

/* One item of the channel-vectorised kernel: a block of cvb channels over
 * NR output rows, all pixel blocks along them. Blocks at the right edge
 * are moved back inside the image, pixels an earlier block already stored
 * are skipped, so accumulation adds each output once. */
static void dense_item_cv(const dense_job *j, int64_t t, int64_t item)
{
    const cd__framing *f = j->f;
    const int64_t g = item / (j->ncb * j->nyb), rem = item % (j->ncb * j->nyb);
    const int64_t b = rem / j->nyb, yb = rem % j->nyb;
    const int64_t cvb = j->cvb, m0 = b * cvb, nm = cd__min64(cvb, j->M - m0);
    const int64_t K = j->C * j->kh * j->kw, HW = j->Ho * j->Wo;
    const float *w = j->wpk + (g * j->ncb + b) * K * cvb;
    const float *src = j->frames + t * f->IS + g * j->C * f->CS;
    float *dst = j->dst + t * j->dst_is + (g * j->M + m0) * HW;
    const float *bias = j->bias ? j->bias + g * j->M + m0 : NULL;
    /* A partial last block (7 rows in blocks of 2) runs row by row rather
     * than recomputing rows of the block above. */
    const bool partial = (yb + 1) * j->nr > j->Ho;
    const int64_t y_end = partial ? j->Ho : yb * j->nr + 1;
    const int nr = partial ? 1 : j->nr;
    fcv_out o = {NULL, HW, j->Wo, (int)nm, 0, bias, j->accumulate};
    for (int64_t y0 = yb * j->nr; y0 < y_end; y0++)
        for (int64_t xb = 0; xb < j->nxb; xb++) {
            const int64_t x0 = cd__min64(xb * j->npx, j->Wo - j->npx);
            const float *rows[4];
            for (int r = 0; r < nr; r++) rows[r] = src + (y0 + r) * f->Wp + x0;
            o.dst = dst + y0 * j->Wo + x0;
            o.xs = (int)(xb * j->npx - x0);
            (partial ? j->cv1 : j->cv)(rows, f->CS, f->Wp, j->C, j->kh, j->kw, w, &o);
        }
}

static void dense_item(const dense_job *j, int64_t t, int64_t item)
{
    if (j->cv) {
        dense_item_cv(j, t, item);
        return;
    }
    const cd__framing *f = j->f;
    const int64_t g = item / (j->nblk * j->nqc), rem = item % (j->nblk * j->nqc);
    const int64_t b = rem / j->nqc, qc = rem % j->nqc;
    const int64_t m0 = b * MRB, rows = cd__min64(MRB, j->M - m0);
    const int64_t K = j->C * j->kh * j->kw;
    const float *wpk = j->wpk + (g * j->nblk + b) * K * MRB;
    const float *src = j->frames + t * f->IS + g * j->C * f->CS;
    float *dst = j->dst + t * j->dst_is + (g * j->M + m0) * j->Ho * j->Wo;
    const float *bias = j->bias ? j->bias + g * j->M + m0 : NULL;

    const mk_class *cls = &cd__mk_classes[rows > 4 ? 0 : rows > 2 ? 1 : rows == 2 ? 2 : 3];
    /* Wide positions are output indices when no column is dropped. */
    const bool direct = f->Wp == j->Wo;
    float acc[MRB * 8 * 16];
    mk_out o = {direct ? NULL : acc, 0, NULL, j->Ho * j->Wo, bias, 0, (int)rows, j->accumulate,
                (__mmask16)0xFFFF};
    const int64_t last_lanes = j->Qv - 16 * (j->nvec - 1);
    const int64_t v_end = cd__min64((qc + 1) * QCHUNK, j->nvec);
    for (int64_t v = qc * QCHUNK; v < v_end;) {
        int k = 0;
        while (cls->nv[k] > v_end - v) k++;
        const int nv = cls->nv[k];
        const int64_t q0 = 16 * v;
        o.ld = 16 * nv;
        o.dst = dst + q0;
        o.nvalid = j->Qv - q0;
        o.tail = v + nv == j->nvec ? (__mmask16)((1u << last_lanes) - 1u) : (__mmask16)0xFFFF;
        cls->fn[k](src + q0, f->CS, f->Wp, j->C, j->kh, j->kw, wpk, &o);
        if (!direct)
            store_wide(dst, j->Ho * j->Wo, (int)rows, acc, o.ld, q0, o.ld, j->Qv, f->Wp, j->Wo,
                       bias, j->accumulate);
        v += nv;
    }
}

static void dense_item_task(void *ctx, int64_t i)
{
    const dense_job *j = ctx;
    dense_item(j, i / j->items, i % j->items);
}

/* Weight gradient of a tile into the accumulator dws[co][Ks]: tasks
 * (group, DW_MR output channels, DW_NK DW_NB taps), each summing over the
 * tile's images in order. */
typedef struct {
    const dense_plan *p;
    const float *frames;
    const float *dwide; /* output-gradient rows of stride Wp, zeros elsewhere */
    int64_t T, nkc, ncb;
    float *dws;
} dense_dw_job;

static void dense_dw_task(void *ctx, int64_t task)
{
    const dense_dw_job *j = ctx;
    const dense_plan *p = j->p;
    const cd__framing *f = &p->in;
    const int64_t g = task / (j->ncb * j->nkc), rem = task % (j->ncb * j->nkc);
    const int64_t cb = rem / j->nkc, kc = rem % j->nkc;
    const int64_t co0 = g * p->Cog + cb * DW_MR, co_end = (g + 1) * p->Cog;
    const int64_t k0 = kc * DW_NK * DW_NB, khw = p->khs * p->kws;
    int64_t off[DW_NB][DW_NK];
    for (int b = 0; b < DW_NB; b++)
        for (int jj = 0; jj < DW_NK; jj++) {
            const int64_t k = cd__min64(k0 + b * DW_NK + jj, p->Ks - 1);
            const int64_t cs = k / khw, ky = (k % khw) / p->kws, kx = k % p->kws;
            off[b][jj] = (g * p->Cs + cs) * f->CS + ky * f->Wp + kx;
        }
    const int nb = (int)cd__min64(DW_NB, cd__ceil_div(p->Ks - k0, DW_NK));

    float lanes[DW_NB][DW_MR * DW_NK * 16];
    memset(lanes, 0, sizeof lanes);
    const float *d[DW_MR];
    for (int i = 0; i < DW_MR; i++) d[i] = j->dwide + cd__min64(co0 + i, co_end - 1) * p->QS;
    const int64_t last_lanes = p->Qv - 16 * (p->nvq - 1);
    const __mmask16 tail = (__mmask16)((1u << last_lanes) - 1u);
    if (p->nvq >= DW_BIG_IMAGE) {
        /* Image by image: its rows stay in L1 across the micro-tiles. */
        for (int64_t t = 0; t < j->T; t++) {
            const float *dt[DW_MR];
            for (int i = 0; i < DW_MR; i++) dt[i] = d[i] + t * p->DS;
            for (int b = 0; b < nb; b++)
                dense_dw_mk(dt, j->frames + t * f->IS, off[b], p->nvq, 1, 0, 0, tail, lanes[b]);
        }
    } else {
        /* Small images: each micro-tile runs over the whole tile at once. */
        for (int b = 0; b < nb; b++)
            dense_dw_mk(d, j->frames, off[b], p->nvq, j->T, p->DS, f->IS, tail, lanes[b]);
    }
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < DW_MR && co0 + i < co_end; i++)
            for (int jj = 0; jj < DW_NK; jj++) {
                const int64_t k = k0 + b * DW_NK + jj;
                if (k >= p->Ks) break;
                const float *l = lanes[b] + (i * DW_NK + jj) * 16;
                float s = 0.0f;
                for (int x = 0; x < 16; x++) s += l[x];
                j->dws[(co0 + i) * p->Ks + k] += s;
            }
}

/* Output-gradient rows at the frame stride Wp, zeros in columns >= W_out
 * and after the last row: tasks (image, output channel). */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    float *dwide;
    const float *dout; /* first image of the tile */
} wide_job;

static void wide_task(void *ctx, int64_t i)
{
    const wide_job *j = ctx;
    const cd__conv2d *c = j->c;
    const dense_plan *p = j->p;
    const int64_t t = i / c->C_out, co = i % c->C_out;
    float *d = j->dwide + t * p->DS + co * p->QS;
    const float *s = j->dout + (t * c->C_out + co) * c->H_out * c->W_out;
    for (int64_t y = 0; y < c->H_out; y++) {
        float *r = d + y * p->in.Wp;
        memcpy(r, s + y * c->W_out, (size_t)c->W_out * sizeof *d);
        const int64_t end = cd__min64(p->QS, (y + 1) * p->in.Wp) - y * p->in.Wp;
        memset(r + c->W_out, 0, (size_t)(end - c->W_out) * sizeof *d);
    }
    const int64_t filled = cd__min64(p->QS, c->H_out * p->in.Wp);
    memset(d + filled, 0, (size_t)(p->QS - filled) * sizeof *d);
}

/* The output gradient transposed to pixel-major rows of CoP floats, zero
 * past C_out: tasks (image, block of 64 pixels). */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    float *dT;
    const float *dout; /* first image of the tile */
} tr_job;

#define TR_BLOCK 64

static void tr_task(void *ctx, int64_t i)
{
    const tr_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t P = c->H_out * c->W_out, npb = cd__ceil_div(P, TR_BLOCK);
    const int64_t t = i / npb, p0 = (i % npb) * TR_BLOCK, np = cd__min64(TR_BLOCK, P - p0);
    const int64_t CoP = j->p->CoP;
    float *dst = j->dT + t * j->p->DS + p0 * CoP;
    const float *src = j->dout + t * c->C_out * P + p0;
    for (int64_t q = 0; q < np; q++) {
        float *row = dst + q * CoP;
        for (int64_t co = 0; co < c->C_out; co++) row[co] = src[co * P + q];
        for (int64_t co = c->C_out; co < CoP; co++) row[co] = 0.0f;
    }
}

/* Channel-vectorised weight gradient of a tile into dwsT[k][CoP]: tasks
 * (block of 16 cvv output channels, chunk of tap rows), each summing image
 * by image so one image's doutT stays in cache across the chunk. */
typedef struct {
    const dense_plan *p;
    const float *frames;
    const float *dT;
    int64_t T, nrows, nrb, chunk, nch;
    float *dwsT;
} cv_dw_job;

static void cv_dw_task(void *ctx, int64_t i)
{
    const cv_dw_job *j = ctx;
    const dense_plan *p = j->p;
    const cd__framing *f = &p->in;
    const int64_t cb = i / j->nch, ch = i % j->nch;
    const int64_t rb0 = ch * j->chunk, rb1 = cd__min64(j->nrb, rb0 + j->chunk);
    const int64_t co0 = cb * 16 * p->cvv, R = p->cvR;
    const dwcv_fn fn = p->cv->fn[2 - p->cvv];
    for (int64_t t = 0; t < j->T; t++) {
        const float *img = j->frames + t * f->IS;
        for (int64_t rb = rb0; rb < rb1; rb++) {
            const float *rows[8];
            for (int64_t r = 0; r < R; r++) {
                const int64_t ri = cd__min64(rb * R + r, j->nrows - 1);
                rows[r] = img + (ri / p->khs) * f->CS + (ri % p->khs) * f->Wp;
            }
            fn(rows, j->dT + t * p->DS + co0, p->CoP, p->Hout, p->Wout, f->Wp,
               (int)cd__min64(R, j->nrows - rb * R), j->dwsT + rb * R * p->kws * p->CoP + co0,
               p->CoP);
        }
    }
}

/* din (one image) += the frame gradient mapped back through
 * space-to-depth, cropping the padding. */
static CD__AVX512 void d2s_image(float *din, const float *dxf, const cd__conv2d *c,
                                 const dense_plan *p)
{
    const int64_t s = p->s;
    /* Columns ix = ix0 + s k all read phase b = (ix0 + pad) mod s, at
     * X = (ix0 + pad) / s + k: no division per element. Each pixel gets
     * one addition, so the order is free. */
    for (int64_t ci = 0; ci < c->C_in; ci++) {
        const float *src = dxf + ci * s * s * p->Hd * p->Wd;
        float *dst = din + ci * c->H * c->W;
        for (int64_t ix0 = 0; ix0 < cd__min64(s, c->W); ix0++) {
            const int64_t b = (ix0 + c->pad) % s, X0 = (ix0 + c->pad) / s;
            const int64_t n = cd__max64(0, cd__min64((c->W - 1 - ix0) / s + 1, p->Wd - X0));
            for (int64_t iy = 0; iy < c->H; iy++) {
                const int64_t u = iy + c->pad, Y = u / s, a = u % s;
                if (Y >= p->Hd) break;
                const float *sr = src + ((a * s + b) * p->Hd + Y) * p->Wd + X0;
                float *dr = dst + iy * c->W + ix0;
                for (int64_t k = 0; k < n; k++) dr[k * s] += sr[k];
            }
        }
    }
}

/* One image end to end: its frames (unless the source is used directly),
 * then every compute item, then for a strided input gradient the mapping
 * back through space-to-depth. Forward tasks for tiles of IMAGE_TASKS_MIN
 * images or more, and the input-gradient tasks of backward. */
typedef struct {
    const cd__conv2d *c;
    const dense_plan *p;
    const dense_job *j;
    float *build;              /* frames to fill (= j->frames), or NULL */
    const float *src;          /* first source image of the tile */
    int64_t src_is;            /* floats per source image */
    bool backward;             /* frames from dout; d2s when !din_direct */
    float *din;                /* first image of the tile, for d2s */
    const struct epi_job *epi; /* forward: per-image epilogue, or NULL */
} dense_image_job;

/* A forward epilogue for the images of one tile: fn(ctx, n0 + t). */
typedef struct epi_job {
    cd__task_fn fn;
    void *ctx;
    int64_t n0;
} epi_job;

static void epi_task(void *ctx, int64_t t)
{
    const epi_job *e = ctx;
    e->fn(e->ctx, e->n0 + t);
}

static void dense_image_task(void *ctx, int64_t t)
{
    const dense_image_job *ij = ctx;
    const dense_job *j = ij->j;
    if (ij->build) {
        float *img = ij->build + t * j->f->IS;
        if (ij->backward) {
            pad_image(img, ij->src + t * ij->src_is, j->f);
        } else {
            for (int64_t ci = 0; ci < ij->c->C_in; ci++)
                frames_plane(img, ij->src + t * ij->src_is, ij->c, j->f, ci);
        }
    }
    for (int64_t item = 0; item < j->items; item++) dense_item(j, t, item);
    if (ij->backward && !ij->p->din_direct)
        d2s_image(ij->din + t * ij->c->C_in * ij->c->H * ij->c->W, j->dst + t * j->dst_is, ij->c,
                  ij->p);
    /* While the image's output is still in this core's cache. */
    if (ij->epi) epi_task((void *)ij->epi, t);
}

void cd__conv2d_dense_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                              const float *bias, float *ws, cd__task_fn epi, void *epi_ctx)
{
    const dense_plan p = dense_planner(c);
    float *wpk = ws, *frames = ws + p.wpk + p.dws;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    dense_job j = {.f = &p.in,
                   .frames = frames,
                   .C = p.Cs,
                   .kh = p.khs,
                   .kw = p.kws,
                   .wpk = wpk,
                   .G = p.G,
                   .M = p.Cog,
                   .Ho = c->H_out,
                   .Wo = c->W_out,
                   .dst_is = out_img,
                   .bias = c->bias ? bias : NULL,
                   .accumulate = false};
    dense_job_finish(&j);
    pack_weights(wpk, weight, c, &p, j.cv ? j.cvb : MRB, false);
    for (int64_t n0 = 0; n0 < c->N; n0 += p.T) {
        const int64_t T = cd__min64(p.T, c->N - n0);
        const float *src = in + n0 * in_img;
        j.dst = out + n0 * out_img;
        j.frames = p.in_direct ? src : frames;
        const epi_job e = {epi, epi_ctx, n0};
        if (p.in_direct && !(epi && T >= IMAGE_TASKS_MIN)) {
            cd__parallel_for(T * j.items, dense_item_task, &j);
        } else if (T >= IMAGE_TASKS_MIN) {
            /* One task per image (building its frames unless it is read in
             * place), so the epilogue finds the image's output in cache. */
            dense_image_job ij =
                {c, &p, &j, p.in_direct ? NULL : frames, src, in_img, false, NULL, epi ? &e : NULL};
            cd__parallel_for(T, dense_image_task, &ij);
            continue;
        } else {
            frames_job fj = {c, &p.in, frames, src};
            cd__parallel_for(T * c->C_in, frames_task, &fj);
            cd__parallel_for(T * j.items, dense_item_task, &j);
        }
        if (epi) cd__parallel_for(T, epi_task, (void *)&e);
    }
}

/* Queue the frames and wide rows of the tile at image n0 for the weight
 * gradient, or point its job at the sources when they need no copy. */
static void prep_dw(cd__task_list *tl, const cd__conv2d *c, const dense_plan *p, dense_dw_job *wj,
                    cv_dw_job *cj, frames_job *fj, wide_job *wdj, tr_job *trj, const float *in,
                    const float *dout, int64_t n0)
{
    const int64_t T = cd__min64(p->T, c->N - n0);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    if (p->in_direct) {
        wj->frames = cj->frames = in + n0 * in_img;
    } else {
        fj->src = in + n0 * in_img;
        cd__tasks_add(tl, frames_task, fj, T * c->C_in);
    }
    if (p->cv) {
        trj->dout = dout + n0 * out_img;
        cd__tasks_add(tl, tr_task, trj, T * cd__ceil_div(c->H_out * c->W_out, TR_BLOCK));
    } else if (p->wide_direct) {
        wj->dwide = dout + n0 * out_img;
    } else {
        wdj->dout = dout + n0 * out_img;
        cd__tasks_add(tl, wide_task, wdj, T * c->C_out);
    }
}

/*
 * Backward, pipelined over tiles so that each tile costs one wake-up of the
 * workers: step i runs the input-gradient image tasks of tile i, the
 * weight-gradient tasks of tile i (on frames built in step i-1) and builds
 * the weight-gradient frames of tile i+1 into the other buffer. Sources
 * that need no padding are read in place.
 */
void cd__conv2d_dense_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                               const float *dout, const float *in, const float *weight, float *ws)
{
    const dense_plan p = dense_planner(c);
    /* din_direct stores every din element once, so it can overwrite; the
     * space-to-depth path adds frame gradients and needs a cleared din. */
    if (din && din_set && !p.din_direct)
        memset(din, 0, (size_t)(c->N * c->C_in * c->H * c->W) * sizeof *din);
    float *wpkt = ws, *dws = ws + p.wpk;
    float *fin[2], *dwide[2];
    fin[0] = dws + p.dws;
    fin[1] = fin[0] + p.T * p.fin;
    dwide[0] = fin[1] + p.T * p.fin;
    dwide[1] = dwide[0] + p.T * p.dwide;
    float *fdout = dwide[1] + p.T * p.dwide;
    float *dxf = fdout + p.T * p.fdout;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    const int64_t ntiles = cd__ceil_div(c->N, p.T);
    if (dweight) memset(dws, 0, (size_t)p.dws * sizeof *dws);

    dense_job dj = {.f = &p.dout,
                    .frames = fdout,
                    .C = p.Cog,
                    .kh = p.khs,
                    .kw = p.kws,
                    .wpk = wpkt,
                    .G = p.G,
                    .M = p.Cs,
                    .accumulate = p.din_direct && !din_set};
    if (p.din_direct)
        dj.Ho = c->H, dj.Wo = c->W, dj.dst_is = in_img;
    else
        dj.Ho = p.Hd, dj.Wo = p.Wd, dj.dst_is = p.dxs, dj.dst = dxf;
    dense_job_finish(&dj);
    if (din) pack_weights(wpkt, weight, c, &p, dj.cv ? dj.cvb : MRB, true);
    dense_image_job ij = {c,    &p,   &dj, p.dout_direct ? NULL : fdout, NULL, out_img,
                          true, NULL, NULL};
    dense_dw_job wj[2];
    cv_dw_job cj[2];
    frames_job fj[2];
    wide_job wdj[2];
    tr_job trj[2];
    const int64_t nrows = p.Cs * p.khs, nrb = p.cv ? cd__ceil_div(nrows, p.cvR) : 0;
    const int64_t ncb = p.cv ? p.CoP / (16 * p.cvv) : 0;
    /* About 16 tasks: enough for the threads, few enough that each reuses
     * an image's doutT over many tap rows. */
    const int64_t chunk = p.cv ? cd__max64(1, cd__ceil_div(nrb * ncb, 16)) : 0;
    for (int k = 0; k < 2; k++) {
        wj[k] = (dense_dw_job){&p,
                               fin[k],
                               dwide[k],
                               0,
                               cd__ceil_div(p.Ks, DW_NK * DW_NB),
                               cd__ceil_div(p.Cog, DW_MR),
                               dws};
        cj[k] = (cv_dw_job){&p,    fin[k], dwide[k], 0,
                            nrows, nrb,    chunk,    p.cv ? cd__ceil_div(nrb, chunk) : 0,
                            dws};
        fj[k] = (frames_job){c, &p.in, fin[k], NULL};
        wdj[k] = (wide_job){c, &p, dwide[k], NULL};
        trj[k] = (tr_job){c, &p, dwide[k], NULL};
    }
    cd__task_list tl = {0};
    if (dweight) {
        prep_dw(&tl, c, &p, &wj[0], &cj[0], &fj[0], &wdj[0], &trj[0], in, dout, 0);
        cd__tasks_run(&tl);
    }
    for (int64_t i = 0; i < ntiles; i++) {
        const int64_t n0 = i * p.T, T = cd__min64(p.T, c->N - n0);
        const int cur = (int)(i & 1), nxt = cur ^ 1;
        if (din) {
            ij.src = dout + n0 * out_img;
            ij.din = din + n0 * in_img;
            if (p.dout_direct) dj.frames = dout + n0 * out_img;
            if (p.din_direct) dj.dst = din + n0 * in_img;
            cd__tasks_add(&tl, dense_image_task, &ij, T);
        }
        if (dweight) {
            if (p.cv) {
                cj[cur].T = T;
                cd__tasks_add(&tl, cv_dw_task, &cj[cur], ncb * cj[cur].nch);
            } else {
                wj[cur].T = T;
                cd__tasks_add(&tl, dense_dw_task, &wj[cur], p.G * wj[cur].ncb * wj[cur].nkc);
            }
            if (i + 1 < ntiles)
                prep_dw(&tl, c, &p, &wj[nxt], &cj[nxt], &fj[nxt], &wdj[nxt], &trj[nxt], in, dout,
                        n0 + p.T);
        }
        cd__tasks_run(&tl);
    }
    if (dweight) {
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t cs = 0; cs < p.Cs; cs++)
                for (int64_t ky = 0; ky < p.khs; ky++)
                    for (int64_t kx = 0; kx < p.kws; kx++) {
                        const int64_t s = p.s, ci = cs / (s * s), a = (cs / s) % s, b = cs % s;
                        const int64_t y = ky * s + a, x = kx * s + b;
                        if (y >= c->kh || x >= c->kw) continue;
                        const int64_t k = (cs * p.khs + ky) * p.kws + kx;
                        dweight[((co * p.Cig + ci) * c->kh + y) * c->kw + x] +=
                            p.cv ? dws[k * p.CoP + co] : dws[co * p.Ks + k];
                    }
    }
}

#endif /* CD__CONV_X86 */
