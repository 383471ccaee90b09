/*
 * conv2d_depthwise.c - the depthwise path of conv2d.c: groups == C_in ==
 * C_out with stride 1, register-blocked AVX-512 kernels for 3x3, 5x5 and
 * 7x7, and a portable kernel (row loops the compiler vectorises) for other
 * sizes and CPUs.
 */
#include "conv2d_internal.h"

#include <string.h>

/* Zeros after each padded plane: vector loads run up to 15 floats past the
 * last valid position. */
#define PLANE_SLACK 32

/* Frames with PLANE_SLACK zeros after each, so one task can fill one plane
 * while another reads its neighbour. */
static cd__framing make_plane_frame(int64_t C, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w)
{
    cd__framing f = {.C = C,
                     .H = H,
                     .W = W,
                     .top = pad_h,
                     .left = pad_w,
                     .Hp = H + 2 * pad_h,
                     .Wp = W + 2 * pad_w};
    f.CS = cd__round_up(f.Hp * f.Wp + PLANE_SLACK, 16);
    f.IS = C * f.CS;
    return f;
}

#ifdef CD__CONV_X86

/* ==== depthwise kernels (AVX-512) ========================================== */

/*
 * R output rows x NV vectors of one channel: dst[i][16j + lane] (+)=
 * sum over (kx, ky) of w[ky][kx] * src[(i + ky) wp + 16 j + kx + lane].
 * The last vector of a row stores only the lanes in `last`.
 */
CD__ALWAYS_INLINE CD__AVX512 void dw_mk(const int K, const int R, const int NV, const float *src,
                                        int64_t wp, const float *w, float *dst, int64_t wo,
                                        __mmask16 last, float bias, bool accumulate)
{
    __m512 acc[8][2];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = _mm512_set1_ps(accumulate ? 0.0f : bias);
    /* Fully unrolled below kx, so that every ky = r - i is a constant and
     * the accumulators and weights stay in registers. */
    for (int kx = 0; kx < K; kx++) {
        __m512 wv[7];
        CD__UNROLL
        for (int ky = 0; ky < K; ky++) wv[ky] = _mm512_set1_ps(w[ky * K + kx]);
        CD__UNROLL
        for (int r = 0; r < R + K - 1; r++) {
            CD__UNROLL
            for (int j = 0; j < NV; j++) {
                const __m512 x = _mm512_loadu_ps(src + r * wp + kx + 16 * j);
                CD__UNROLL
                for (int i = 0; i < R; i++) {
                    const int ky = r - i;
                    if (ky >= 0 && ky < K) acc[i][j] = _mm512_fmadd_ps(x, wv[ky], acc[i][j]);
                }
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < NV; j++) {
            float *o = dst + i * wo + 16 * j;
            const __mmask16 m = j == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 v = acc[i][j];
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
            _mm512_mask_storeu_ps(o, m, v);
        }
}

typedef void (*dw_mk_fn)(const float *, int64_t, const float *, float *, int64_t, __mmask16, float,
                         bool);

#define DW_MK(K, R, NV)                                                                         \
    static CD__AVX512 void dw_mk_##K##_##R##_##NV(const float *src, int64_t wp, const float *w, \
                                                  float *dst, int64_t wo, __mmask16 last,       \
                                                  float bias, bool acc)                         \
    {                                                                                           \
        dw_mk(K, R, NV, src, wp, w, dst, wo, last, bias, acc);                                  \
    }
/* The formatter does not settle on one layout for this list. */
/* clang-format off */
#define DW_MK_K(K)                                                                 \
    DW_MK(K, 8, 2) DW_MK(K, 4, 2) DW_MK(K, 2, 2) DW_MK(K, 1, 2)                    \
    DW_MK(K, 8, 1) DW_MK(K, 4, 1) DW_MK(K, 2, 1) DW_MK(K, 1, 1)
/* clang-format on */
DW_MK_K(3)
DW_MK_K(5)
DW_MK_K(7)

/* [K index][R index: 8, 4, 2, 1][NV - 1] */
static const dw_mk_fn dw_kernels[3][4][2] = {
    {{dw_mk_3_8_1, dw_mk_3_8_2},
     {dw_mk_3_4_1, dw_mk_3_4_2},
     {dw_mk_3_2_1, dw_mk_3_2_2},
     {dw_mk_3_1_1, dw_mk_3_1_2}},
    {{dw_mk_5_8_1, dw_mk_5_8_2},
     {dw_mk_5_4_1, dw_mk_5_4_2},
     {dw_mk_5_2_1, dw_mk_5_2_2},
     {dw_mk_5_1_1, dw_mk_5_1_2}},
    {{dw_mk_7_8_1, dw_mk_7_8_2},
     {dw_mk_7_4_1, dw_mk_7_4_2},
     {dw_mk_7_2_1, dw_mk_7_2_2},
     {dw_mk_7_1_1, dw_mk_7_1_2}},
};

/* One channel plane: dst (Ho x Wo) (+)= depthwise(src frame, w K x K). */
static void dw_plane(int64_t K, const float *src, int64_t wp, const float *w, float *dst,
                     int64_t Ho, int64_t Wo, float bias, bool accumulate)
{
    const int ki = K == 3 ? 0 : K == 5 ? 1 : 2;
    const int64_t nvec = cd__ceil_div(Wo, 16);
    static const int rows[4] = {8, 4, 2, 1};
    int64_t y = 0;
    for (int ri = 0; ri < 4; ri++) {
        for (; y + rows[ri] <= Ho; y += rows[ri]) {
            for (int64_t v = 0; v < nvec; v += 2) {
                const int nv = (int)cd__min64(2, nvec - v);
                const int64_t lastn = cd__min64(16, Wo - 16 * (v + nv - 1));
                const __mmask16 last = (__mmask16)((1u << lastn) - 1u);
                dw_kernels[ki][ri][nv - 1](src + y * wp + 16 * v, wp, w, dst + y * Wo + 16 * v, Wo,
                                           last, bias, accumulate);
            }
        }
    }
}

/*
 * Weight gradient of one channel over nimg images, G kernel rows at a
 * time: lanes[g][kx] = sum over images and pixels of dout[y][x] *
 * frame[y + g][x + kx], frames starting at kernel row ky0. Frame row r
 * serves output rows y = r - g, so its K shifted vectors are loaded once
 * for all G kernel rows.
 */
CD__ALWAYS_INLINE CD__AVX512 void dwg_mk(const int K, const int G, const float *frame0, int64_t wp,
                                         int64_t fstride, const float *dout0, int64_t dstride,
                                         int64_t nimg, int64_t Ho, int64_t Wo, float *lanes)
{
    __m512 acc[3][7];
    CD__UNROLL
    for (int g = 0; g < G; g++) {
        CD__UNROLL
        for (int kx = 0; kx < K; kx++) acc[g][kx] = _mm512_setzero_ps();
    }
    for (int64_t t = 0; t < nimg; t++) {
        const float *frame = frame0 + t * fstride, *dout = dout0 + t * dstride;
        for (int64_t r = 0; r < Ho + G - 1; r++) {
            for (int64_t x0 = 0; x0 < Wo; x0 += 16) {
                const int64_t n = cd__min64(16, Wo - x0);
                const __mmask16 m = (__mmask16)((1u << n) - 1u);
                const float *s = frame + r * wp + x0;
                __m512 x[7];
                CD__UNROLL
                for (int kx = 0; kx < K; kx++) x[kx] = _mm512_loadu_ps(s + kx);
                CD__UNROLL
                for (int g = 0; g < G; g++) {
                    const int64_t y = r - g;
                    if (y < 0 || y >= Ho) continue;
                    const __m512 d = _mm512_maskz_loadu_ps(m, dout + y * Wo + x0);
                    CD__UNROLL
                    for (int kx = 0; kx < K; kx++)
                        acc[g][kx] = _mm512_fmadd_ps(d, x[kx], acc[g][kx]);
                }
            }
        }
    }
    CD__UNROLL
    for (int g = 0; g < G; g++) {
        CD__UNROLL
        for (int kx = 0; kx < K; kx++) _mm512_storeu_ps(lanes + (g * K + kx) * 16, acc[g][kx]);
    }
}

typedef void (*dwg_mk_fn)(const float *, int64_t, int64_t, const float *, int64_t, int64_t, int64_t,
                          int64_t, float *);
#define DWG_MK(K, G)                                                                          \
    static CD__AVX512 void dwg_mk_##K##_##G(const float *frame, int64_t wp, int64_t fstride,  \
                                            const float *dout, int64_t dstride, int64_t nimg, \
                                            int64_t Ho, int64_t Wo, float *lanes)             \
    {                                                                                         \
        dwg_mk(K, G, frame, wp, fstride, dout, dstride, nimg, Ho, Wo, lanes);                 \
    }
DWG_MK(3, 3)
DWG_MK(5, 3)
DWG_MK(5, 2)
DWG_MK(7, 3)
DWG_MK(7, 1)

#endif /* CD__CONV_X86 */

/* ==== depthwise driver (AVX-512 or portable) ============================== */

/* Plane frames (each with its own slack) for a tile of images. */
typedef struct {
    int64_t T;
    cd__framing in;   /* padded inputs */
    cd__framing dout; /* output gradients padded for the input gradient */
    int64_t wf;       /* floats of flipped weights */
} dw_geom;

static dw_geom dw_geometry(const cd__conv2d *c)
{
    dw_geom g;
    g.in = make_plane_frame(c->C_in, c->H, c->W, c->pad, c->pad);
    g.dout = make_plane_frame(c->C_out, c->H_out, c->W_out, c->kh - 1 - c->pad, c->kw - 1 - c->pad);
    g.wf = cd__round_up(c->C_in * c->kh * c->kw, 16);
    const int64_t per_image = g.in.IS + g.dout.IS;
    g.T = cd__max64(1, cd__min64(cd__min64(c->N, CD__DIRECT_TILE), CD__TILE_BUDGET / per_image));
    return g;
}

size_t cd__conv2d_depthwise_workspace(const cd__conv2d *c)
{
    const dw_geom g = dw_geometry(c);
    return (size_t)(g.wf + g.T * (g.in.IS + g.dout.IS));
}

/* Portable plane kernel, in strips of up to DW_STRIP columns so the
 * running row stays in L1; taps go in the same (kx, ky) order as the
 * vector kernel. */
#define DW_STRIP 256

static void dw_plane_portable(int64_t kh, int64_t kw, const float *src, int64_t wp, const float *w,
                              float *dst, int64_t Ho, int64_t Wo, float bias, bool accumulate)
{
    float row[DW_STRIP];
    for (int64_t x0 = 0; x0 < Wo; x0 += DW_STRIP) {
        const int64_t wn = cd__min64(DW_STRIP, Wo - x0);
        for (int64_t y = 0; y < Ho; y++) {
            for (int64_t x = 0; x < wn; x++) row[x] = accumulate ? 0.0f : bias;
            for (int64_t kx = 0; kx < kw; kx++)
                for (int64_t ky = 0; ky < kh; ky++) {
                    const float wt = w[ky * kw + kx];
                    const float *s = src + (y + ky) * wp + x0 + kx;
                    for (int64_t x = 0; x < wn; x++) row[x] += wt * s[x];
                }
            float *o = dst + y * Wo + x0;
            if (accumulate)
                for (int64_t x = 0; x < wn; x++) o[x] += row[x];
            else
                memcpy(o, row, (size_t)wn * sizeof *o);
        }
    }
}

/* Plane tasks (image, channel): pad the source plane, then convolve it. */
typedef struct {
    const cd__conv2d *c;
    const cd__framing *f;
    float *frames;
    const float *src; /* first image of the tile */
    const float *w;   /* K x K per channel (flipped for the input gradient) */
    const float *bias;
    float *dst; /* first image of the tile, C x Ho x Wo each */
    int64_t Ho, Wo, T;
    bool accumulate, fast;
} dw_job;

/* Padded planes up to this many floats are built on the task's stack: a
 * tile buffer slot would be written by a different core from one tile to
 * the next, and moving its cache lines between cores costs more than the
 * small convolution itself. */
#define DW_LOCAL 8192

static void dw_plane_task(const dw_job *j, int64_t i)
{
    const cd__conv2d *c = j->c;
    const int64_t ch = i % c->C_in;
    _Alignas(64) float local[DW_LOCAL];
    float *frame = j->f->CS <= DW_LOCAL ? local : j->frames + i * j->f->CS;
    cd__pad_plane(frame, j->src + i * j->f->H * j->f->W, j->f);
    const float *w = j->w + ch * c->kh * c->kw;
    float *dst = j->dst + i * j->Ho * j->Wo;
    const float b = j->bias ? j->bias[ch] : 0.0f;
#ifdef CD__CONV_X86
    if (j->fast) {
        dw_plane(c->kh, frame, j->f->Wp, w, dst, j->Ho, j->Wo, b, j->accumulate);
        return;
    }
#endif
    dw_plane_portable(c->kh, c->kw, frame, j->f->Wp, w, dst, j->Ho, j->Wo, b, j->accumulate);
}

/* Planes per task: small planes are grouped so a task is worth taking. */
static int64_t dw_planes_per_task(const cd__conv2d *c)
{
    return cd__max64(1, 131072 / (c->H_out * c->W_out * c->kh * c->kw));
}

static void dw_task(void *ctx, int64_t i)
{
    const dw_job *j = ctx;
    const int64_t per = dw_planes_per_task(j->c), n = j->T * j->c->C_in;
    for (int64_t p = i * per; p < n && p < (i + 1) * per; p++) dw_plane_task(j, p);
}

/* Weight gradient of one channel: pad that channel of every image of the
 * tile, then sum over images in order. */
typedef struct {
    const cd__conv2d *c;
    const cd__framing *f;
    float *frames;
    const float *in;   /* first image of the tile */
    const float *dout; /* first image of the tile */
    int64_t T;
    float *dweight;
    bool fast;
} dwg_job;

static void dwg_channel(const dwg_job *j, int64_t ch)
{
    const cd__conv2d *c = j->c;
    const cd__framing *f = j->f;
    const int64_t C = c->C_in, Ho = c->H_out, Wo = c->W_out, kh = c->kh, kw = c->kw;
    float *dw = j->dweight + ch * kh * kw;
    /* This channel's planes of the tile, image after image (fs apart). */
    _Alignas(64) float local[DW_LOCAL];
    const bool loc = j->T * f->CS <= DW_LOCAL;
    float *frames = loc ? local : j->frames + ch * f->CS;
    const int64_t fs = loc ? f->CS : C * f->CS;
    for (int64_t t = 0; t < j->T; t++)
        cd__pad_plane(frames + t * fs, j->in + (t * C + ch) * c->H * c->W, f);
#ifdef CD__CONV_X86
    if (j->fast) {
        /* Kernel rows three at a time: 4 x 5 or 4 x 7 accumulators plus the
         * operands do not fit the 32 registers. */
        float lanes[3 * 7 * 16], sum[7 * 7];
        for (int64_t ky0 = 0; ky0 < kh; ky0 += 3) {
            const int64_t G = cd__min64(3, kh - ky0);
            dwg_mk_fn mk = kh == 3   ? dwg_mk_3_3
                           : kh == 5 ? (G == 3 ? dwg_mk_5_3 : dwg_mk_5_2)
                                     : (G == 3 ? dwg_mk_7_3 : dwg_mk_7_1);
            mk(frames + ky0 * f->Wp, f->Wp, fs, j->dout + ch * Ho * Wo, C * Ho * Wo, j->T, Ho, Wo,
               lanes);
            for (int64_t g = 0; g < G; g++)
                for (int64_t kx = 0; kx < kw; kx++) {
                    const float *l = lanes + (g * kw + kx) * 16;
                    float s = 0.0f;
                    for (int x = 0; x < 16; x++) s += l[x];
                    sum[(ky0 + g) * kw + kx] = s;
                }
        }
        /* One pass over dweight at the end: neighbouring channels share its
         * cache lines, which would bounce between cores on every add. */
        for (int64_t i = 0; i < kh * kw; i++) dw[i] += sum[i];
        return;
    }
#endif
    for (int64_t ky = 0; ky < kh; ky++)
        for (int64_t kx = 0; kx < kw; kx++) {
            double s = 0.0;
            for (int64_t t = 0; t < j->T; t++) {
                const float *fr = frames + t * fs;
                const float *d = j->dout + (t * C + ch) * Ho * Wo;
                float lane[16] = {0};
                for (int64_t y = 0; y < Ho; y++) {
                    const float *srow = fr + (y + ky) * f->Wp + kx, *drow = d + y * Wo;
                    int64_t x = 0;
                    for (; x + 16 <= Wo; x += 16)
                        for (int l = 0; l < 16; l++) lane[l] += drow[x + l] * srow[x + l];
                    for (; x < Wo; x++) lane[x & 15] += drow[x] * srow[x];
                }
                for (int l = 0; l < 16; l++) s += lane[l];
            }
            dw[ky * kw + kx] += (float)s;
        }
}

/* Channels per weight-gradient task: a run of neighbouring channels reads
 * contiguous memory in every image, where single channels picked by
 * alternating cores would share (and fetch twice) the cache lines at
 * their plane boundaries. */
static int64_t dwg_channels_per_task(const cd__conv2d *c)
{
    return cd__max64(1, cd__min64(16, 4096 / (c->H_out * c->W_out)));
}

static void dwg_task(void *ctx, int64_t i)
{
    const dwg_job *j = ctx;
    const int64_t per = dwg_channels_per_task(j->c);
    for (int64_t ch = i * per; ch < j->c->C_in && ch < (i + 1) * per; ch++) dwg_channel(j, ch);
}

static void flip_depthwise(float *wf, const float *w, int64_t C, int64_t kh, int64_t kw)
{
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t ky = 0; ky < kh; ky++)
            for (int64_t kx = 0; kx < kw; kx++)
                wf[(ch * kh + ky) * kw + kx] = w[(ch * kh + kh - 1 - ky) * kw + kw - 1 - kx];
}

void cd__conv2d_depthwise_forward(const cd__conv2d *c, float *out, const float *in,
                                  const float *weight, const float *bias, float *ws, bool fast)
{
    const dw_geom g = dw_geometry(c);
    float *frames = ws + g.wf;
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        const int64_t T = cd__min64(g.T, c->N - n0);
        dw_job j = {c,
                    &g.in,
                    frames,
                    in + n0 * in_img,
                    weight,
                    c->bias ? bias : NULL,
                    out + n0 * out_img,
                    c->H_out,
                    c->W_out,
                    T,
                    false,
                    fast};
        cd__parallel_for(cd__ceil_div(T * c->C_in, dw_planes_per_task(c)), dw_task, &j);
    }
}

/* Per tile, one wake-up: input-gradient plane tasks and weight-gradient
 * channel tasks, each padding what it reads. */
void cd__conv2d_depthwise_backward(const cd__conv2d *c, float *din, float *dweight,
                                   const float *dout, const float *in, const float *weight,
                                   float *ws, bool fast)
{
    const dw_geom g = dw_geometry(c);
    float *wf = ws;
    float *fin = ws + g.wf;
    float *fdout = fin + g.T * g.in.IS;
    if (din) flip_depthwise(wf, weight, c->C_in, c->kh, c->kw);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    cd__task_list tl = {0};
    for (int64_t n0 = 0; n0 < c->N; n0 += g.T) {
        const int64_t T = cd__min64(g.T, c->N - n0);
        dw_job j = {c,
                    &g.dout,
                    fdout,
                    dout + n0 * out_img,
                    wf,
                    NULL,
                    din ? din + n0 * in_img : NULL,
                    c->H,
                    c->W,
                    T,
                    true,
                    fast};
        dwg_job k = {c, &g.in,   fin, in ? in + n0 * in_img : NULL, dout + n0 * out_img,
                     T, dweight, fast};
        if (din) cd__tasks_add(&tl, dw_task, &j, cd__ceil_div(T * c->C_in, dw_planes_per_task(c)));
        if (dweight)
            cd__tasks_add(&tl, dwg_task, &k, cd__ceil_div(c->C_in, dwg_channels_per_task(c)));
        cd__tasks_run(&tl);
    }
}
