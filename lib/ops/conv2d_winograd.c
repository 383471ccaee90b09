/*
 * conv2d_winograd.c - a Winograd F(4x4, 3x3) forward for 3x3, stride-1,
 * pad-1 convolutions on AVX-512 CPUs: the UNet's 3x3 layers, in about half
 * the time of the dense path. conv2d.c also runs their input gradient
 * through it, as the convolution of dout with the flipped, transposed
 * weights. The weight gradient is conv2d_winograd_grad.c's.
 *
 * Each 4x4 block of outputs ("tile") of one output channel is
 * A^T [sum_ci (G g G^T) . (B^T d B)] A, d the 6x6 input patch of channel
 * ci (points 0, 1, -1, 2, -2 and infinity). That is 36 products of
 * [tiles x C_in] by [C_in x C_out] per tile set, instead of 144 multiply-
 * adds per output pixel and input channel of the direct sum: 4x fewer on
 * whole tiles, about 3x on 14x14 and 7x7 images, whose edge tiles are only
 * partly used.
 *
 * The method, per call:
 *   - the weights are transformed once (in double, rounded once) into
 *     U[36][CiP][CoP] (in blocks of 32 output channels), channels rounded up
 *     to 16 and zero-padded;
 *   - tasks take fixed blocks of images. A task copies its images into
 *     zero-padded channel-minor frames [Hp][Wp][CiP], so the input
 *     transform works on 16 channels per vector; transforms them into
 *     V[tiles][36][CiP] (a tile's components side by side, so that the
 *     transform writes one run of memory rather than 36 streams); forms
 *     M[tiles][36][CoP] = V U one component at a time (U's 32-channel
 *     block stays in L1 across the tiles); transforms
 *     M back, adds the bias, transposes 16 channels x 16 pixels and stores
 *     the images; then runs the epilogue on them.
 * Tasks run in rounds of WG_TASKS, so the workspace stops growing with N:
 * a slice of it per thread (cd__task_slot), which keeps its V, M and
 * frames in that thread's L2 from task to task. Every output is
 * summed by one task in a fixed order: the bits never depend on the
 * thread count.
 *
 * Rounding: the input transform rounds 2 times per dimension, the output
 * transform 3 times, the products C_in times in their chains, plus the
 * weights' and the bias's one rounding each: an output's error is at most
 * (C_in + 12) u (u = 2^-24) times the same sum taken over absolute values
 * of the transforms, weights and inputs (check_conv.c derives and tests
 * it). The transforms' large entries (up to 8 in A, 5 in B) make that sum
 * hundreds of times the direct sum |w||x| at some outputs; on random data
 * the errors come out near 10 times the dense path's.
 */
#include "conv2d_winograd.h"

#include <string.h>

#ifdef CD__CONV_X86

/* Tiles per micro-tile of the products (x 2 vectors of output channels:
 * 24 accumulators). */
#define WG_NT 12

typedef struct {
    cd__wg_geom g;
    int64_t vs, ms;      /* floats per component of V, of M */
    int64_t vt, mt;      /* floats per tile of V, of M */
    int64_t frame;       /* floats per image frame */
    int64_t SW;          /* pixels in the output strip: 4 W_out rounded up to 16 */
    int64_t u, v, m, fm; /* floats of U, of V and M per task, of frames or M */
    int64_t slice;       /* floats per thread's slot */
} wg_plan;

static wg_plan wg_planner(const cd__conv2d *c)
{
    wg_plan p;
    p.g = cd__wg_geometry(c);
    p.frame = p.g.Hp * p.g.Wp * p.g.CiP;
    p.u = WG_XI * p.g.CiP * p.g.CoP;
    /* A cache line more per tile: at strides of a multiple of 4 KiB (256
     * channels), the products' rows of tiles would all fall in one L1
     * set. */
    p.vs = p.g.CiP;
    p.ms = p.g.CoP;
    p.vt = WG_XI * p.g.CiP + 16;
    p.mt = WG_XI * p.g.CoP + 16;
    p.v = p.g.TT * p.vt;
    p.m = p.g.TT * p.mt;
    /* The frames are dead once V holds their transform, so M reuses them. */
    p.fm = cd__max64(p.g.IB * p.frame, p.m);
    p.SW = cd__round_up(WG_M * c->W_out, 16);
    p.slice = p.v + p.fm + p.SW * 16;
    return p;
}

size_t cd__conv2d_winograd_workspace(const cd__conv2d *c)
{
    const wg_plan p = wg_planner(c);
    /* Slack to align ws to a cache line here: the entry point may be called
     * with any workspace. */
    return (size_t)(p.u + WG_TASKS * p.slice + CD__ALIGN / (int64_t)sizeof(float));
}

bool cd__conv2d_winograd_suits(const cd__conv2d *c)
{
    /* Channels are padded to 16: with fewer, the padding's products cost
     * more than the transforms save. */
    return c->kh == 3 && c->kw == 3 && c->stride == 1 && c->pad == 1 && c->groups == 1 &&
           c->C_in >= 16 && c->C_out >= 16 && c->C_in <= ((int64_t)1 << 24) &&
           c->C_out <= ((int64_t)1 << 24);
}

/* ---- weights ---------------------------------------------------------------- */

typedef struct {
    const cd__conv2d *c;
    const wg_plan *p;
    const float *w;
    float *u;
} wg_weight_job;

/* y = G g for 8 output channels at a time, in double. */
CD__ALWAYS_INLINE CD__AVX512 void wg_g(__m512d *y, __m512d g0, __m512d g1, __m512d g2)
{
    const __m512d s = _mm512_add_pd(g0, g2), q = _mm512_mul_pd(g1, _mm512_set1_pd(1.0 / 12.0));
    const __m512d r = _mm512_fmadd_pd(g0, _mm512_set1_pd(1.0 / 24.0),
                                      _mm512_mul_pd(g2, _mm512_set1_pd(1.0 / 6.0)));
    const __m512d sixth = _mm512_set1_pd(-1.0 / 6.0);
    y[0] = _mm512_mul_pd(g0, _mm512_set1_pd(0.25));
    y[1] = _mm512_mul_pd(_mm512_add_pd(s, g1), sixth);
    y[2] = _mm512_mul_pd(_mm512_sub_pd(s, g1), sixth);
    y[3] = _mm512_add_pd(r, q);
    y[4] = _mm512_sub_pd(r, q);
    y[5] = g2;
}

/* Where U[xi][ci][co] is kept. Each component's output channels are cut
 * into blocks of 32 (the last may be 16), each block [CiP][32] contiguous:
 * the products stream one block through L1, and a row stride of CoP
 * floats (a power of two in the UNet) would map its rows to a few L1 sets
 * and defeat the prefetchers. */
static inline int64_t wg_u_at(int64_t xi, int64_t ci, int64_t co, int64_t CiP, int64_t CoP)
{
    const int64_t cb = co & ~(int64_t)31, w = cd__min64(32, CoP - cb);
    return xi * CiP * CoP + cb * CiP + ci * w + (co - cb);
}

/* Row ci of every U[xi]: G g G^T for 8 output channels per vector, in
 * double and rounded once (double's own rounding is some 2^-29 of
 * float's), zero past C_in and C_out. One row per task, so tasks write
 * whole cache lines of their own. */
static CD__AVX512 void wg_weight_task(void *ctx, int64_t ci)
{
    const wg_weight_job *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t CoP = j->p->g.CoP, CiP = j->p->g.CiP;
    /* The 8 output channels' taps are C_in x 9 floats apart: gathered, not
     * copied through memory one by one (vector loads of scalars just
     * stored stall on store forwarding). suits() keeps 8 x 9 C_in (and the
     * input gradient's 8 x 9 C_out) within an int. */
    const __m256i apart = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm256_set1_epi32((int)(c->C_in * 9)));
    for (int64_t co0 = 0; co0 < CoP; co0 += 8) {
        const int64_t real = ci < c->C_in ? cd__max64(0, cd__min64(8, c->C_out - co0)) : 0;
        const __m256 take =
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)real),
                                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        const float *w = real ? j->w + (co0 * c->C_in + ci) * 9 : j->w;
        __m512d g[9];
        CD__UNROLL
        for (int k = 0; k < 9; k++)
            g[k] = _mm512_cvtps_pd(
                _mm256_mask_i32gather_ps(_mm256_setzero_ps(), w + k, apart, take, sizeof(float)));
        __m512d t[3][WG_A], u[WG_A];
        for (int k = 0; k < 3; k++) wg_g(t[k], g[k], g[3 + k], g[6 + k]);
        CD__UNROLL
        for (int i = 0; i < WG_A; i++) {
            wg_g(u, t[0][i], t[1][i], t[2][i]);
            CD__UNROLL
            for (int jj = 0; jj < WG_A; jj++)
                _mm256_storeu_ps(j->u + wg_u_at(i * WG_A + jj, ci, co0, CiP, CoP),
                                 _mm512_cvtpd_ps(u[jj]));
        }
    }
}

/* ---- the 1-D transforms, 16 channels per vector -------------------------------- */

/* y = B^T x: two roundings on any path. */
CD__ALWAYS_INLINE CD__AVX512 void wg_bt(__m512 *y, __m512 x0, __m512 x1, __m512 x2, __m512 x3,
                                        __m512 x4, __m512 x5)
{
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    const __m512 a = _mm512_fnmadd_ps(four, x2, x4), b = _mm512_fnmadd_ps(four, x1, x3);
    const __m512 cc = _mm512_sub_ps(x4, x2);
    const __m512 d = _mm512_add_ps(_mm512_sub_ps(x3, x1), _mm512_sub_ps(x3, x1));
    y[0] = _mm512_fmadd_ps(four, x0, _mm512_fnmadd_ps(five, x2, x4));
    y[1] = _mm512_add_ps(a, b);
    y[2] = _mm512_sub_ps(a, b);
    y[3] = _mm512_add_ps(cc, d);
    y[4] = _mm512_sub_ps(cc, d);
    y[5] = _mm512_fmadd_ps(four, x1, _mm512_fnmadd_ps(five, x3, x5));
}

/* y = A^T m: three roundings on any path. */
CD__ALWAYS_INLINE CD__AVX512 void wg_at(__m512 *y, __m512 m0, __m512 m1, __m512 m2, __m512 m3,
                                        __m512 m4, __m512 m5)
{
    const __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
    const __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
    y[0] = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m5);
}

/* ---- a task's steps ------------------------------------------------------------ */

CD__AVX512 void cd__wg_frame(float *fr, const float *img, int64_t C, int64_t CiP, int64_t H,
                             int64_t W, int64_t Hp, int64_t Wp)
{
    memset(fr, 0, (size_t)(Wp * CiP) * sizeof *fr);
    memset(fr + (H + 1) * Wp * CiP, 0, (size_t)((Hp - H - 1) * Wp * CiP) * sizeof *fr);
    for (int64_t y = 1; y <= H; y++) {
        memset(fr + y * Wp * CiP, 0, (size_t)CiP * sizeof *fr);
        memset(fr + (y * Wp + W + 1) * CiP, 0, (size_t)((Wp - W - 1) * CiP) * sizeof *fr);
    }
    /* 16 channels x 16 consecutive pixels of the planes transposed at a
     * time, across rows: small images take fewer transposes than row by
     * row. */
    const int64_t HW = H * W;
    for (int64_t q0 = 0; q0 < HW; q0 += 16) {
        const int64_t nq = cd__min64(16, HW - q0);
        const __mmask16 m = (__mmask16)((1u << nq) - 1u);
        int64_t at[16];
        for (int64_t x = 0, y = q0 / W, xx = q0 % W; x < nq; x++) {
            at[x] = ((y + 1) * Wp + xx + 1) * CiP;
            if (++xx == W) xx = 0, y++;
        }
        for (int64_t cb = 0; cb < CiP; cb += 16) {
            __m512 r[16];
            CD__UNROLL
            for (int k = 0; k < 16; k++)
                r[k] = cb + k < C ? _mm512_maskz_loadu_ps(m, img + (cb + k) * HW + q0)
                                  : _mm512_setzero_ps();
            cd__transpose16(r);
            CD__UNROLL
            for (int x = 0; x < 16; x++)
                if (x < nq) _mm512_storeu_ps(fr + at[x] + cb, r[x]);
        }
    }
}

CD__AVX512 void cd__wg_input(float *V, int64_t vs, int64_t vt, const float *fr, int64_t CiP,
                             int64_t Wp, int64_t TH, int64_t TW, int64_t tile0)
{
    for (int64_t ty = 0; ty < TH; ty++)
        for (int64_t tx = 0; tx < TW; tx++) {
            const int64_t tile = tile0 + ty * TW + tx;
            for (int64_t cb = 0; cb < CiP; cb += 16) {
                const float *s = fr + (WG_M * ty * Wp + WG_M * tx) * CiP + cb;
                __m512 r[WG_A][WG_A];
                CD__UNROLL
                for (int i = 0; i < WG_A; i++) {
                    const float *row = s + i * Wp * CiP;
                    wg_bt(r[i], _mm512_loadu_ps(row), _mm512_loadu_ps(row + CiP),
                          _mm512_loadu_ps(row + 2 * CiP), _mm512_loadu_ps(row + 3 * CiP),
                          _mm512_loadu_ps(row + 4 * CiP), _mm512_loadu_ps(row + 5 * CiP));
                }
                float *v = V + tile * vt + cb;
                CD__UNROLL
                for (int l = 0; l < WG_A; l++) {
                    __m512 col[WG_A];
                    wg_bt(col, r[0][l], r[1][l], r[2][l], r[3][l], r[4][l], r[5][l]);
                    CD__UNROLL
                    for (int k = 0; k < WG_A; k++)
                        _mm512_storeu_ps(v + (k * WG_A + l) * vs, col[k]);
                }
            }
        }
}

/* M[t][co..] = sum_k V[t][k] U[k][co..] for nt tiles and nv vectors of 16
 * output channels, summed in k order; pf[k][..], the next block of U, is
 * fetched into L2 on the way. */
CD__ALWAYS_INLINE CD__AVX512 void wg_mk(int nt, int nv, int64_t K, const float *V, int64_t vs,
                                        const float *U, int64_t us, float *M, int64_t ms,
                                        const float *pf)
{
    __m512 acc[WG_NT][2];
    CD__UNROLL
    for (int t = 0; t < nt; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 u0 = _mm512_loadu_ps(U + k * us);
        const __m512 u1 = nv > 1 ? _mm512_loadu_ps(U + k * us + 16) : u0;
        _mm_prefetch((const char *)(pf + k * us), _MM_HINT_T1);
        if (nv > 1) _mm_prefetch((const char *)(pf + k * us + 16), _MM_HINT_T1);
        CD__UNROLL
        for (int t = 0; t < nt; t++) {
            const __m512 b = _mm512_set1_ps(V[t * vs + k]);
            acc[t][0] = _mm512_fmadd_ps(b, u0, acc[t][0]);
            if (nv > 1) acc[t][1] = _mm512_fmadd_ps(b, u1, acc[t][1]);
        }
    }
    CD__UNROLL
    for (int t = 0; t < nt; t++) {
        _mm512_storeu_ps(M + t * ms, acc[t][0]);
        if (nv > 1) _mm512_storeu_ps(M + t * ms + 16, acc[t][1]);
    }
}

typedef void (*wg_mk_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *, int64_t,
                         const float *);

/* Every tile count up to WG_NT, so the last micro-tile of a task keeps its
 * accumulators in registers too. */
#define WG_MK(NT, NV)                                                                          \
    static CD__AVX512 void wg_mk_##NT##_##NV(int64_t K, const float *V, int64_t vs,            \
                                             const float *U, int64_t us, float *M, int64_t ms, \
                                             const float *pf)                                  \
    {                                                                                          \
        wg_mk(NT, NV, K, V, vs, U, us, M, ms, pf);                                             \
    }
#define WG_MK2(NT) WG_MK(NT, 1) WG_MK(NT, 2)
WG_MK2(1)
WG_MK2(2)
WG_MK2(3)
WG_MK2(4)
WG_MK2(5)
WG_MK2(6)
WG_MK2(7)
WG_MK2(8)
WG_MK2(9)
WG_MK2(10)
WG_MK2(11)
WG_MK2(12)
#undef WG_MK2
#undef WG_MK

#define WG_ROW(NT)                     \
    {                                  \
        wg_mk_##NT##_1, wg_mk_##NT##_2 \
    }
static const wg_mk_fn wg_mks[WG_NT][2] = {WG_ROW(1), WG_ROW(2),  WG_ROW(3),  WG_ROW(4),
                                          WG_ROW(5), WG_ROW(6),  WG_ROW(7),  WG_ROW(8),
                                          WG_ROW(9), WG_ROW(10), WG_ROW(11), WG_ROW(12)};
#undef WG_ROW

/* All 36 products of a task's tt tiles. */
static void wg_products(float *M, const float *V, const float *U, int64_t tt, const wg_plan *p)
{
    const int64_t CiP = p->g.CiP, CoP = p->g.CoP;
    for (int64_t xi = 0; xi < WG_XI; xi++) {
        const float *Vx = V + xi * p->vs, *Ux = U + xi * CiP * CoP;
        float *Mx = M + xi * p->ms;
        for (int64_t co = 0; co < CoP; co += 32) {
            const int nv = CoP - co >= 32 ? 2 : 1;
            const float *Ub = Ux + co * CiP;
            /* U's blocks follow each other in memory: pull the next one
             * into L2 while this one is used (the last pulls itself).
             * Where U outgrows L2, as at 7 x 7, every task streams it
             * from L3. */
            const float *pf = Ub + CiP * 16 * nv < U + p->u ? Ub + CiP * 16 * nv : Ub;
            /* Micro-tiles of nearly equal size: 49 tiles as 10+10+10+10+9
             * rather than 12+12+12+12+1. */
            const int64_t nmt = cd__ceil_div(tt, WG_NT);
            for (int64_t i = 0, t = 0; i < nmt; i++) {
                const int nt = (int)((tt - t) / (nmt - i));
                wg_mks[nt - 1][nv - 1](CiP, Vx + t * p->vt, p->vt, Ub, 16 * nv, Mx + t * p->mt + co,
                                       p->mt, pf);
                t += nt;
            }
        }
    }
}

/* out (one image) = A^T M A + bias for every tile of the image, a row of
 * tiles and 16 channels at a time. The rows' pixels go to a strip
 * [pixel][16 channels] in the order of the output plane (4 rows of W_out
 * are contiguous there), which is transposed 16 pixels at a time, so the
 * planes are written 16 floats per store, not 4. */
static CD__AVX512 void wg_output(float *out, const float *M, int64_t tile0, const float *bias,
                                 float *strip, const cd__conv2d *c, const wg_plan *p)
{
    const int64_t CoP = p->g.CoP, ms = p->ms, Ho = c->H_out, Wo = c->W_out;
    for (int64_t cb = 0; cb < CoP; cb += 16) {
        const int64_t nc = cd__min64(16, c->C_out - cb);
        const __m512 b = bias ? _mm512_maskz_loadu_ps((__mmask16)((1u << nc) - 1u), bias + cb)
                              : _mm512_setzero_ps();
        for (int64_t ty = 0; ty < p->g.TH; ty++) {
            const int64_t ny = cd__min64(WG_M, Ho - WG_M * ty), npx = ny * Wo;
            for (int64_t tx = 0; tx < p->g.TW; tx++) {
                const float *m = M + (tile0 + ty * p->g.TW + tx) * p->mt + cb;
                const int64_t nx = cd__min64(WG_M, Wo - WG_M * tx);
                __m512 r[WG_M][WG_A];
                CD__UNROLL
                for (int j = 0; j < WG_A; j++) {
                    __m512 col[WG_M];
                    wg_at(col, _mm512_loadu_ps(m + j * ms), _mm512_loadu_ps(m + (WG_A + j) * ms),
                          _mm512_loadu_ps(m + (2 * WG_A + j) * ms),
                          _mm512_loadu_ps(m + (3 * WG_A + j) * ms),
                          _mm512_loadu_ps(m + (4 * WG_A + j) * ms),
                          _mm512_loadu_ps(m + (5 * WG_A + j) * ms));
                    CD__UNROLL
                    for (int a = 0; a < WG_M; a++) r[a][j] = col[a];
                }
                CD__UNROLL
                for (int a = 0; a < WG_M; a++) {
                    __m512 row[WG_M];
                    wg_at(row, r[a][0], r[a][1], r[a][2], r[a][3], r[a][4], r[a][5]);
                    float *st = strip + (a * Wo + WG_M * tx) * 16;
                    if (a < ny) {
                        CD__UNROLL
                        for (int bb = 0; bb < WG_M; bb++)
                            if (bb < nx) _mm512_storeu_ps(st + bb * 16, _mm512_add_ps(row[bb], b));
                    }
                }
            }
            float *o = out + (cb * Ho + WG_M * ty) * Wo;
            for (int64_t q0 = 0; q0 < npx; q0 += 16) {
                __m512 px[16];
                CD__UNROLL
                for (int x = 0; x < 16; x++) px[x] = _mm512_loadu_ps(strip + (q0 + x) * 16);
                /* px[k] lane x: pixel q0 + x of channel cb + k. */
                cd__transpose16(px);
                const __mmask16 mq = (__mmask16)((1u << cd__min64(16, npx - q0)) - 1u);
                CD__UNROLL
                for (int k = 0; k < 16; k++)
                    if (k < nc) _mm512_mask_storeu_ps(o + k * Ho * Wo + q0, mq, px[k]);
            }
        }
    }
}

typedef struct {
    const cd__conv2d *c;
    const wg_plan *p;
    float *out;
    const float *in, *bias, *U;
    float *slices;
    int64_t n0; /* first image of the round */
    cd__task_fn epi;
    void *epi_ctx;
} wg_job;

static void wg_task(void *ctx, int64_t k)
{
    const wg_job *j = ctx;
    const cd__conv2d *c = j->c;
    const wg_plan *p = j->p;
    const int64_t n0 = j->n0 + k * p->g.IB, nimg = cd__min64(p->g.IB, c->N - n0);
    const int64_t in_img = c->C_in * c->H * c->W, out_img = c->C_out * c->H_out * c->W_out;
    float *V = j->slices + cd__task_slot() * p->slice, *F = V + p->v, *M = F, *strip = F + p->fm;
    /* The strip's pixels past the image are transposed but never stored:
     * keep them finite. */
    memset(strip, 0, (size_t)(p->SW * 16) * sizeof *strip);
    for (int64_t t = 0; t < nimg; t++) {
        float *fr = F + t * p->frame;
        cd__wg_frame(fr, j->in + (n0 + t) * in_img, c->C_in, p->g.CiP, c->H, c->W, p->g.Hp,
                     p->g.Wp);
        cd__wg_input(V, p->vs, p->vt, fr, p->g.CiP, p->g.Wp, p->g.TH, p->g.TW, t * p->g.P);
    }
    wg_products(M, V, j->U, nimg * p->g.P, p);
    for (int64_t t = 0; t < nimg; t++)
        wg_output(j->out + (n0 + t) * out_img, M, t * p->g.P, j->bias, strip, c, p);
    if (j->epi)
        for (int64_t t = 0; t < nimg; t++) j->epi(j->epi_ctx, n0 + t);
}

size_t cd__conv2d_winograd_prepared_size(const cd__conv2d *c) { return (size_t)wg_planner(c).u; }

void cd__conv2d_winograd_prepare(const cd__conv2d *c, float *U, const float *weight)
{
    const wg_plan p = wg_planner(c);
    wg_weight_job wj = {c, &p, weight, U};
    cd__parallel_for(p.g.CiP, wg_weight_task, &wj);
}

void cd__conv2d_winograd_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                          const float *U, const float *bias, float *ws,
                                          cd__task_fn epi, void *epi_ctx)
{
    const wg_plan p = wg_planner(c);
    /* The slices sit where a forward that transforms the weights keeps
     * them, after U's place, whether or not U is there. */
    ws = cd__align_ws(ws);
    wg_job j = {c, &p, out, in, c->bias ? bias : NULL, U, ws + p.u, 0, epi, epi_ctx};
    for (int64_t n0 = 0; n0 < c->N; n0 += WG_TASKS * p.g.IB) {
        j.n0 = n0;
        cd__parallel_for(cd__min64(WG_TASKS, cd__ceil_div(c->N - n0, p.g.IB)), wg_task, &j);
    }
}

void cd__conv2d_winograd_forward(const cd__conv2d *c, float *out, const float *in,
                                 const float *weight, const float *bias, float *ws, cd__task_fn epi,
                                 void *epi_ctx)
{
    float *U = cd__align_ws(ws);
    cd__conv2d_winograd_prepare(c, U, weight);
    cd__conv2d_winograd_forward_prepared(c, out, in, U, bias, ws, epi, epi_ctx);
}

#endif /* CD__CONV_X86 */
