/*
 * conv2d_fft.c - "same" convolutions with large kernels as products of
 * spectra (see conv2d_fft.h for when conv2d.c uses it).
 *
 * Why: a 7x7 convolution of a 28x28 plane costs 2 * 49 * 784 = 76,832
 * flops per channel pair, which the direct kernels already run near the
 * FMA peak. On the planes' 32x32 spectra the same pair costs one complex
 * multiply-add per frequency: 32 x 17 frequencies, 4,352 flops. The
 * transforms cost per channel, not per pair, so with 16+ channels each
 * way the spectral path does about a tenth of the arithmetic.
 *
 * The arithmetic is exact apart from rounding:
 *   - an NF x NF transform with NF >= H + pad (and >= W + pad) holds the
 *     zero-padded plane without wrap-around: every output pixel's window
 *     reads only the plane or its zero border, so the circular
 *     correlation equals the convolution on the H x W outputs;
 *   - forward:  Y = X * conj(G) / NF^2 summed over input channels, where G
 *     is the spectrum of the kernel wrapped around the origin
 *     (g[dy mod NF][dx mod NF] = w[dy + p][dx + p]);
 *   - input gradient: dX = dY * G / NF^2 summed over output channels;
 *   - weight gradient: the correlation of x with dy, X * conj(dY) summed
 *     over the batch, transformed back and read at the (2p+1)^2 taps.
 *   The 1/NF^2 are powers of two: exact. The transforms sum in trees, so
 *   errors are smaller than the direct kernels' long running sums
 *   (tests/check_conv.c compares both with a double reference:
 *   2-4e-7 against 0.5-1.7e-6 of scale; tests/check_decoder_parity.c the
 *   CNN with PyTorch). The bias gradient is frequency 0 of dY.
 *
 * Layout: 16 channels share a vector (lanes), so every butterfly and
 * every spectral product is a plain vector operation; a complex vector is
 * 32 floats, 16 real parts then 16 imaginary ones. Planes enter and leave
 * through 16x16 transposes. A real plane's spectrum keeps the kx = 0 .. NF/2
 * half (ky = 0 .. NF-1, in bit-reversed order: see the FFTs); frequency
 * f = ky (NF/2 + 1) + kx.
 *
 * Work goes by tiles of images in three phases: transform each image's
 * planes (a task per image), multiply spectra (a task per block of
 * frequencies, all images and channels), transform back (a task per
 * image, followed by the caller's epilogue for it). Every output and
 * every weight-gradient element is summed by one task in a fixed order,
 * the weight gradient over tiles in tile order: the bits do not depend on
 * the thread count.
 */
#include "conv2d_fft.h"

#include "conv2d_internal.h"

#include <math.h>

#define LANES 16
#define CPLX 32   /* floats per complex vector */
#define MIN_NF 16 /* the transposes move 16 pixels at a time */
#define MAX_NF 64
#define FFT_TILE 64      /* images per tile */
#define BLOCK 12         /* images or channels per register block: 24 accumulators */
#define PREFETCH_AHEAD 2 /* frequencies */
#define MUL_TASKS 8      /* product tasks per tile, a block of frequencies each */
#define WK_TASKS 8       /* tasks (and scratch spectra) for the kernel spectra */
#define MAX_SPECTRA_FLOATS ((int64_t)1 << 25) /* 128 MB of kernel spectra */

static int64_t fft_size(const cd__conv2d *c)
{
    const int64_t need = (c->H > c->W ? c->H : c->W) + c->pad;
    int64_t nf = MIN_NF;
    while (nf < need || nf < c->kh) nf *= 2;
    return nf;
}

bool cd__conv2d_fft_suits(const cd__conv2d *c)
{
    if (c->groups != 1 || c->stride != 1 || c->kh != c->kw || c->kh < 5 || c->kh % 2 == 0 ||
        c->pad != c->kh / 2 || c->C_in < 8 || c->C_out < 8)
        return false;
    const int64_t nf = fft_size(c);
    if (nf > MAX_NF) return false;
    /* The kernels' spectra and the weight gradient's grow with C_in C_out
     * (1.1 MB per block of 16 x 16 channels at nf 32): wide layers stay
     * direct. */
    const double blocks =
        (double)cd__ceil_div(c->C_in, LANES) * (double)cd__ceil_div(c->C_out, LANES);
    if ((double)(nf * (nf / 2 + 1)) * CPLX * LANES * blocks > (double)MAX_SPECTRA_FLOATS)
        return false;
    /* Per channel pair: direct multiply-adds against spectral ones, the
     * latter weighted for the transforms and transposes they bring. */
    const double direct = 2.0 * (double)(c->kh * c->kw) * (double)(c->H * c->W);
    const double spectral = 8.0 * (double)(nf * (nf / 2 + 1));
    return direct > 3.0 * spectral;
}

#ifdef CD__CONV_X86

typedef struct {
    int64_t nf, nh, kx, F;   /* transform size, nf / 2, nf / 2 + 1, frequencies */
    int64_t gi, go;          /* 16-channel groups of C_in and C_out */
    int64_t tile, chunk;     /* images per tile, frequencies per product task */
    int64_t spec;            /* floats from one spectrum to the next */
    float scale;             /* 1 / nf^2 */
    int16_t rev[MAX_NF / 2]; /* bit reversal on nh points */
} fplan;

static int64_t bit_reverse(int64_t j, int64_t n)
{
    int64_t r = 0;
    for (int64_t m = n >> 1; m; m >>= 1, j >>= 1) r = (r << 1) | (j & 1);
    return r;
}

static fplan make_plan(const cd__conv2d *c)
{
    fplan p;
    p.nf = fft_size(c);
    p.nh = p.nf / 2;
    p.kx = p.nh + 1;
    p.F = p.nf * p.kx;
    p.gi = cd__ceil_div(c->C_in, LANES);
    p.go = cd__ceil_div(c->C_out, LANES);
    p.tile = cd__min64(c->N, FFT_TILE);
    p.chunk = cd__ceil_div(p.F, MUL_TASKS);
    /* F * CPLX floats is a multiple of 4 KiB for every nf: without the pad
     * the spectra of the images in a register block would all compete for
     * the same L1 sets. */
    p.spec = p.F * CPLX + CPLX;
    p.scale = 1.0f / (float)(p.nf * p.nf);
    for (int64_t k = 0; k < p.nh; k++) p.rev[k] = (int16_t)bit_reverse(k, p.nh);
    return p;
}

/* ---- transforms on vectors of 16 channels --------------------------------- */

/* tw[2k], tw[2k+1] = cos, sin of 2 pi k / nf for k < nf (rounded from
 * double). */
static void make_twiddles(float *tw, int64_t nf)
{
    const double two_pi = 6.283185307179586476925286766559;
    for (int64_t k = 0; k < nf; k++) {
        tw[2 * k] = (float)cos(two_pi * (double)k / (double)nf);
        tw[2 * k + 1] = (float)sin(two_pi * (double)k / (double)nf);
    }
}

/* Complex vectors and the few operations the transforms need. */
typedef struct {
    __m512 r, i;
} cvec;

CD__ALWAYS_INLINE CD__AVX512 cvec cv_load(const float *p)
{
    return (cvec){_mm512_load_ps(p), _mm512_load_ps(p + LANES)};
}
CD__ALWAYS_INLINE CD__AVX512 void cv_store(float *p, cvec a)
{
    _mm512_store_ps(p, a.r);
    _mm512_store_ps(p + LANES, a.i);
}
CD__ALWAYS_INLINE CD__AVX512 cvec cv_add(cvec a, cvec b)
{
    return (cvec){_mm512_add_ps(a.r, b.r), _mm512_add_ps(a.i, b.i)};
}
CD__ALWAYS_INLINE CD__AVX512 cvec cv_sub(cvec a, cvec b)
{
    return (cvec){_mm512_sub_ps(a.r, b.r), _mm512_sub_ps(a.i, b.i)};
}
/* a (c + i s) */
CD__ALWAYS_INLINE CD__AVX512 cvec cv_rot(cvec a, __m512 c, __m512 s)
{
    return (cvec){_mm512_fnmadd_ps(a.i, s, _mm512_mul_ps(a.r, c)),
                  _mm512_fmadd_ps(a.r, s, _mm512_mul_ps(a.i, c))};
}
/* a i (sign +1) or a (-i) (sign -1) */
CD__ALWAYS_INLINE CD__AVX512 cvec cv_quarter(cvec a, int sign)
{
    const __m512 zero = _mm512_setzero_ps();
    return sign > 0 ? (cvec){_mm512_sub_ps(zero, a.i), a.r} : (cvec){a.i, _mm512_sub_ps(zero, a.r)};
}

/* FFTs of length n (a power of two), in place, on `cols` columns of
 * complex vectors: element i of column q at d + i es + q cs; tw is the
 * table of size nf = n * step. Products of spectra do not care in which
 * order the frequencies lie, so no pass reorders them: the forward
 * transform (decimation in frequency, e^(-2 pi i jk / n)) leaves its output
 * in bit-reversed order, and the inverse (decimation in time, e^(+...),
 * unnormalised) takes its input in that order and returns samples in
 * natural order. Radix-2 stages run two at a time (radix 2^2), so each
 * element is loaded and stored once per two stages. */

/* The twiddle-free stage of length 2. */
static CD__AVX512 void fft_stage2(float *d, int64_t es, int64_t n, int64_t cols, int64_t cs)
{
    for (int64_t i = 0; i < n; i += 2)
        for (int64_t q = 0; q < cols; q++) {
            float *a = d + i * es + q * cs, *b = a + es;
            const cvec x = cv_load(a), y = cv_load(b);
            cv_store(a, cv_add(x, y));
            cv_store(b, cv_sub(x, y));
        }
}

/* Forward stages of length L, then L/2. */
static CD__AVX512 void dif_pair(float *d, int64_t es, int64_t n, int64_t cols, int64_t cs,
                                const float *tw, int64_t step, int64_t L)
{
    const int64_t h = L / 2, q4 = L / 4, t1 = step * (n / L), t2 = step * (n / h);
    for (int64_t j = 0; j < q4; j++) {
        const __m512 c1 = _mm512_set1_ps(tw[2 * j * t1]), s1 = _mm512_set1_ps(-tw[2 * j * t1 + 1]);
        const __m512 c2 = _mm512_set1_ps(tw[2 * j * t2]), s2 = _mm512_set1_ps(-tw[2 * j * t2 + 1]);
        for (int64_t i = j; i < n; i += L)
            for (int64_t q = 0; q < cols; q++) {
                float *p0 = d + i * es + q * cs, *p1 = p0 + q4 * es, *p2 = p0 + h * es,
                      *p3 = p2 + q4 * es;
                const cvec x0 = cv_load(p0), x1 = cv_load(p1), x2 = cv_load(p2), x3 = cv_load(p3);
                const cvec y0 = cv_add(x0, x2), y1 = cv_add(x1, x3);
                cvec y2 = cv_sub(x0, x2), y3 = cv_quarter(cv_sub(x1, x3), -1);
                if (j) y2 = cv_rot(y2, c1, s1), y3 = cv_rot(y3, c1, s1);
                cv_store(p0, cv_add(y0, y1));
                cv_store(p2, cv_add(y2, y3));
                cvec z1 = cv_sub(y0, y1), z3 = cv_sub(y2, y3);
                if (j) z1 = cv_rot(z1, c2, s2), z3 = cv_rot(z3, c2, s2);
                cv_store(p1, z1);
                cv_store(p3, z3);
            }
    }
}

/* Inverse stages of length L/2, then L. */
static CD__AVX512 void dit_pair(float *d, int64_t es, int64_t n, int64_t cols, int64_t cs,
                                const float *tw, int64_t step, int64_t L)
{
    const int64_t h = L / 2, q4 = L / 4, t1 = step * (n / L), t2 = step * (n / h);
    for (int64_t j = 0; j < q4; j++) {
        const __m512 c1 = _mm512_set1_ps(tw[2 * j * t1]), s1 = _mm512_set1_ps(tw[2 * j * t1 + 1]);
        const __m512 c2 = _mm512_set1_ps(tw[2 * j * t2]), s2 = _mm512_set1_ps(tw[2 * j * t2 + 1]);
        for (int64_t i = j; i < n; i += L)
            for (int64_t q = 0; q < cols; q++) {
                float *p0 = d + i * es + q * cs, *p1 = p0 + q4 * es, *p2 = p0 + h * es,
                      *p3 = p2 + q4 * es;
                const cvec x0 = cv_load(p0), x2 = cv_load(p2);
                cvec x1 = cv_load(p1), x3 = cv_load(p3);
                if (j) x1 = cv_rot(x1, c2, s2), x3 = cv_rot(x3, c2, s2);
                const cvec y0 = cv_add(x0, x1), y1 = cv_sub(x0, x1);
                cvec y2 = cv_add(x2, x3), y3 = cv_sub(x2, x3);
                if (j) y2 = cv_rot(y2, c1, s1), y3 = cv_rot(y3, c1, s1);
                y3 = cv_quarter(y3, +1);
                cv_store(p0, cv_add(y0, y2));
                cv_store(p2, cv_sub(y0, y2));
                cv_store(p1, cv_add(y1, y3));
                cv_store(p3, cv_sub(y1, y3));
            }
    }
}

static CD__AVX512 void fft_forward_bitrev(float *d, int64_t es, int64_t n, int64_t cols, int64_t cs,
                                          const float *tw, int64_t step)
{
    int64_t L = n;
    for (; L >= 4; L /= 4) dif_pair(d, es, n, cols, cs, tw, step, L);
    if (L == 2) fft_stage2(d, es, n, cols, cs);
}

static CD__AVX512 void fft_inverse_bitrev(float *d, int64_t es, int64_t n, int64_t cols, int64_t cs,
                                          const float *tw, int64_t step)
{
    int64_t stages = 0, L = 4;
    for (int64_t m = n; m > 1; m >>= 1) stages++;
    if (stages % 2) {
        fft_stage2(d, es, n, cols, cs);
        L = 8;
    }
    for (; L <= n; L *= 4) dit_pair(d, es, n, cols, cs, tw, step, L);
}

/* The kx = 0 .. nh spectrum of the real row t[0 .. nf), element kx at
 * out + kx es: an nh-point complex FFT of z[m] = t[2m] + i t[2m+1], then
 * X[k] = E[k] + e^(-2 pi i k / nf) O[k] with E, O the even and odd
 * samples' spectra recovered from Z[k] and conj Z[nh - k] (Z[k] lies at
 * z[rev[k]]). */
static CD__AVX512 void row_rfft(float *out, int64_t es, const __m512 *t, const fplan *p,
                                const float *tw)
{
    const int64_t nh = p->nh;
    const int16_t *rev = p->rev;
    __attribute__((aligned(64))) float z[MAX_NF / 2 * CPLX];
    for (int64_t m = 0; m < nh; m++) {
        _mm512_store_ps(z + m * CPLX, t[2 * m]);
        _mm512_store_ps(z + m * CPLX + LANES, t[2 * m + 1]);
    }
    fft_forward_bitrev(z, CPLX, nh, 1, 0, tw, 2);
    const __m512 zr0 = _mm512_load_ps(z), zi0 = _mm512_load_ps(z + LANES),
                 zero = _mm512_setzero_ps();
    _mm512_store_ps(out, _mm512_add_ps(zr0, zi0));
    _mm512_store_ps(out + LANES, zero);
    _mm512_store_ps(out + nh * es, _mm512_sub_ps(zr0, zi0));
    _mm512_store_ps(out + nh * es + LANES, zero);
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t k = 1; k < nh; k++) {
        const float *za = z + rev[k] * CPLX, *zb = z + rev[nh - k] * CPLX;
        const __m512 ar = _mm512_load_ps(za), ai = _mm512_load_ps(za + LANES);
        const __m512 br = _mm512_load_ps(zb), bi = _mm512_sub_ps(zero, _mm512_load_ps(zb + LANES));
        const __m512 c = _mm512_set1_ps(tw[2 * k]), s = _mm512_set1_ps(tw[2 * k + 1]);
        const __m512 dr = _mm512_sub_ps(ar, br), di = _mm512_sub_ps(ai, bi);
        /* re = (ar + br + c di - s dr) / 2, im = (ai + bi - c dr - s di) / 2 */
        const __m512 re =
            _mm512_add_ps(_mm512_add_ps(ar, br), _mm512_fmsub_ps(c, di, _mm512_mul_ps(s, dr)));
        const __m512 im =
            _mm512_sub_ps(_mm512_add_ps(ai, bi), _mm512_fmadd_ps(c, dr, _mm512_mul_ps(s, di)));
        _mm512_store_ps(out + k * es, _mm512_mul_ps(re, half));
        _mm512_store_ps(out + k * es + LANES, _mm512_mul_ps(im, half));
    }
}

/* The inverse of row_rfft, unnormalised (nf times the row): from the half
 * spectrum at in + kx es, Zc[k] = (X[k] + conj X[nh-k]) + i (X[k] -
 * conj X[nh-k]) e^(+2 pi i k / nf), stored at z[rev[k]], an nh-point
 * inverse FFT, and t[2m] + i t[2m+1] = zc[m]. The imaginary parts of X[0]
 * and X[nh], zero for a real row, are ignored. */
static CD__AVX512 void row_irfft(__m512 *t, const float *in, int64_t es, const fplan *p,
                                 const float *tw)
{
    const int64_t nh = p->nh;
    const int16_t *rev = p->rev;
    __attribute__((aligned(64))) float z[MAX_NF / 2 * CPLX];
    const __m512 x0 = _mm512_load_ps(in), xn = _mm512_load_ps(in + nh * es);
    _mm512_store_ps(z, _mm512_add_ps(x0, xn));
    _mm512_store_ps(z + LANES, _mm512_sub_ps(x0, xn));
    for (int64_t k = 1; k < nh; k++) {
        const __m512 ar = _mm512_load_ps(in + k * es), ai = _mm512_load_ps(in + k * es + LANES);
        const __m512 br = _mm512_load_ps(in + (nh - k) * es);
        const __m512 bi =
            _mm512_sub_ps(_mm512_setzero_ps(), _mm512_load_ps(in + (nh - k) * es + LANES));
        const __m512 c = _mm512_set1_ps(tw[2 * k]), s = _mm512_set1_ps(tw[2 * k + 1]);
        const __m512 dr = _mm512_sub_ps(ar, br), di = _mm512_sub_ps(ai, bi);
        const __m512 Dr = _mm512_fnmadd_ps(di, s, _mm512_mul_ps(dr, c));
        const __m512 Di = _mm512_fmadd_ps(dr, s, _mm512_mul_ps(di, c));
        float *zk = z + rev[k] * CPLX;
        _mm512_store_ps(zk, _mm512_sub_ps(_mm512_add_ps(ar, br), Di));
        _mm512_store_ps(zk + LANES, _mm512_add_ps(_mm512_add_ps(ai, bi), Dr));
    }
    fft_inverse_bitrev(z, CPLX, nh, 1, 0, tw, 2);
    for (int64_t m = 0; m < nh; m++) {
        t[2 * m] = _mm512_load_ps(z + m * CPLX);
        t[2 * m + 1] = _mm512_load_ps(z + m * CPLX + LANES);
    }
}

/* Columns of a half spectrum (element (ky, kx) at d + (ky kx_n + kx) es;
 * ky in bit-reversed order between the two). */
static CD__AVX512 void col_fft(float *d, int64_t es, const fplan *p, const float *tw, bool inverse)
{
    if (inverse)
        fft_inverse_bitrev(d, p->kx * es, p->nf, p->kx, es, tw, 1);
    else
        fft_forward_bitrev(d, p->kx * es, p->nf, p->kx, es, tw, 1);
}

static CD__AVX512 void zero_rows(float *d, int64_t es, const fplan *p, int64_t y0, int64_t y1)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t f = y0 * p->kx; f < y1 * p->kx; f++) {
        _mm512_store_ps(d + f * es, zero);
        _mm512_store_ps(d + f * es + LANES, zero);
    }
}

static __mmask16 low_mask(int64_t n) { return n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1u); }

/* The spectrum of `lanes` H x W planes, consecutive at img (the rest of
 * the 16 lanes zero), into spec (element stride CPLX). */
static CD__AVX512 void planes_to_spectrum(float *spec, const float *img, int64_t lanes, int64_t H,
                                          int64_t W, const fplan *p, const float *tw)
{
    __m512 t[MAX_NF];
    for (int64_t x = 0; x < p->nf; x++) t[x] = _mm512_setzero_ps();
    for (int64_t y = 0; y < H; y++) {
        for (int64_t xc = 0; xc < W; xc += LANES) {
            const __mmask16 m = low_mask(W - xc);
            __m512 r[16];
            for (int64_t l = 0; l < 16; l++)
                r[l] = l < lanes ? _mm512_maskz_loadu_ps(m, img + (l * H + y) * W + xc)
                                 : _mm512_setzero_ps();
            cd__transpose16(r);
            for (int j = 0; j < 16; j++) t[xc + j] = r[j];
        }
        row_rfft(spec + y * p->kx * CPLX, CPLX, t, p, tw);
    }
    zero_rows(spec, CPLX, p, H, p->nf);
    col_fft(spec, CPLX, p, tw, false);
}

/* The inverse: `lanes` planes (+ bias, if any) from spec, which it
 * destroys; stored at img or, with add, added to it. */
static CD__AVX512 void spectrum_to_planes(float *img, float *spec, int64_t lanes, int64_t H,
                                          int64_t W, const float *bias, bool add, const fplan *p,
                                          const float *tw)
{
    col_fft(spec, CPLX, p, tw, true);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(low_mask(lanes), bias) : _mm512_setzero_ps();
    __m512 t[MAX_NF];
    for (int64_t y = 0; y < H; y++) {
        row_irfft(t, spec + y * p->kx * CPLX, CPLX, p, tw);
        for (int64_t xc = 0; xc < W; xc += LANES) {
            const __mmask16 m = low_mask(W - xc);
            __m512 r[16];
            for (int j = 0; j < 16; j++) r[j] = _mm512_add_ps(t[xc + j], b);
            cd__transpose16(r);
            for (int64_t l = 0; l < lanes; l++) {
                float *dst = img + (l * H + y) * W + xc;
                const __m512 v = add ? _mm512_add_ps(r[l], _mm512_maskz_loadu_ps(m, dst)) : r[l];
                _mm512_mask_storeu_ps(dst, m, v);
            }
        }
    }
}

/* ---- kernel spectra ------------------------------------------------------- */

/* The spectrum, times 1/nf^2, of one plane of the wrapped kernel with 16
 * lanes, into dst (element stride es): lane l holds w[l ls + tap] (ls: the
 * lane channel's weight stride). flip: the kernel mirrored through the
 * origin (h[-d] = w[d + p]: its spectrum is conj G). The transform runs in
 * scratch (one spectrum, contiguous): dst's stride is a multiple of 4 KiB. */
static CD__AVX512 void kernel_spectrum(float *dst, int64_t es, float *scratch, const float *w,
                                       int64_t lanes, int64_t ls, int64_t k, bool flip,
                                       const fplan *p, const float *tw)
{
    const int64_t nf = p->nf, pad = k / 2;
    __m512 t[MAX_NF];
    zero_rows(scratch, CPLX, p, 0, nf);
    for (int64_t a = 0; a < k; a++) {
        const int64_t d = flip ? pad - a : a - pad, y = (d + nf) % nf;
        for (int64_t x = 0; x < nf; x++) t[x] = _mm512_setzero_ps();
        for (int64_t bb = 0; bb < k; bb++) {
            const int64_t e = flip ? pad - bb : bb - pad, x = (e + nf) % nf;
            __attribute__((aligned(64))) float v[LANES] = {0};
            for (int64_t l = 0; l < lanes; l++) v[l] = w[l * ls + a * k + bb];
            t[x] = _mm512_load_ps(v);
        }
        row_rfft(scratch + y * p->kx * CPLX, CPLX, t, p, tw);
    }
    col_fft(scratch, CPLX, p, tw, false);
    const __m512 s = _mm512_set1_ps(p->scale);
    for (int64_t f = 0; f < p->F; f++) {
        _mm512_store_ps(dst + f * es, _mm512_mul_ps(_mm512_load_ps(scratch + f * CPLX), s));
        _mm512_store_ps(dst + f * es + LANES,
                        _mm512_mul_ps(_mm512_load_ps(scratch + f * CPLX + LANES), s));
    }
}

/* ---- spectral products ---------------------------------------------------- */

/* out_b (+)= sum_k in_b[k] w[k] for b < nb, complex: in_b[k] is a scalar
 * (real part at in + b ib + (k / kin) gs + k % kin, imaginary part 16
 * floats on), w[k] a vector at w + k wk, out_b at out + b ob. conj: in_b[k]
 * enters conjugated; load: add to out instead of overwriting it. kin 16
 * walks a spectrum's lanes group by group, kin 1 one scalar per group. */
CD__ALWAYS_INLINE CD__AVX512 void cmac(int nb, float *out, int64_t ob, const float *in, int64_t ib,
                                       int64_t gs, int64_t kin, const float *w, int64_t wk,
                                       int64_t K, bool conj, bool load)
{
    __m512 ar[BLOCK], ai[BLOCK];
    for (int b = 0; b < nb; b++) {
        ar[b] = load ? _mm512_load_ps(out + b * ob) : _mm512_setzero_ps();
        ai[b] = load ? _mm512_load_ps(out + b * ob + LANES) : _mm512_setzero_ps();
    }
    for (int64_t k0 = 0; k0 < K; k0 += kin) {
        const float *xg = in + (k0 / kin) * gs;
        const int64_t kn = cd__min64(kin, K - k0);
        for (int64_t l = 0; l < kn; l++) {
            const float *x = xg + l, *wv = w + (k0 + l) * wk;
            const __m512 wr = _mm512_load_ps(wv), wi = _mm512_load_ps(wv + LANES);
            for (int b = 0; b < nb; b++) {
                const __m512 xr = _mm512_set1_ps(x[b * ib]);
                const __m512 xi = _mm512_set1_ps(x[b * ib + LANES]);
                if (conj) {
                    ar[b] = _mm512_fmadd_ps(xi, wi, _mm512_fmadd_ps(xr, wr, ar[b]));
                    ai[b] = _mm512_fnmadd_ps(xi, wr, _mm512_fmadd_ps(xr, wi, ai[b]));
                } else {
                    ar[b] = _mm512_fnmadd_ps(xi, wi, _mm512_fmadd_ps(xr, wr, ar[b]));
                    ai[b] = _mm512_fmadd_ps(xi, wr, _mm512_fmadd_ps(xr, wi, ai[b]));
                }
            }
        }
    }
    for (int b = 0; b < nb; b++) {
        _mm512_store_ps(out + b * ob, ar[b]);
        _mm512_store_ps(out + b * ob + LANES, ai[b]);
    }
}

typedef void (*cmac_fn)(float *, int64_t, const float *, int64_t, int64_t, int64_t, const float *,
                        int64_t, int64_t);

/* cmac with the block size, conjugation and accumulation fixed, so each
 * keeps its accumulators in registers. */
#define CMAC_ONE(NAME, NB, CONJ, LOAD)                                                      \
    static CD__AVX512 void NAME##_##NB(float *o, int64_t ob, const float *i, int64_t ib,    \
                                       int64_t gs, int64_t kin, const float *w, int64_t wk, \
                                       int64_t K)                                           \
    {                                                                                       \
        cmac(NB, o, ob, i, ib, gs, kin, w, wk, K, CONJ, LOAD);                              \
    }
#define CMAC_VARIANTS(NB)                    \
    CMAC_ONE(cmac_set, NB, false, false)     \
    CMAC_ONE(cmac_conj_set, NB, true, false) \
    CMAC_ONE(cmac_conj_acc, NB, true, true)
CMAC_VARIANTS(1)
CMAC_VARIANTS(2)
CMAC_VARIANTS(3)
CMAC_VARIANTS(4)
CMAC_VARIANTS(5)
CMAC_VARIANTS(6)
CMAC_VARIANTS(7)
CMAC_VARIANTS(8)
CMAC_VARIANTS(9)
CMAC_VARIANTS(10)
CMAC_VARIANTS(11)
CMAC_VARIANTS(12)
#define CMAC_TABLE(NAME)                                                                      \
    {                                                                                         \
        NULL, NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5, NAME##_6, NAME##_7, NAME##_8, \
            NAME##_9, NAME##_10, NAME##_11, NAME##_12                                         \
    }
static const cmac_fn cmac_set[BLOCK + 1] = CMAC_TABLE(cmac_set);
static const cmac_fn cmac_conj_set[BLOCK + 1] = CMAC_TABLE(cmac_conj_set);
static const cmac_fn cmac_conj_acc[BLOCK + 1] = CMAC_TABLE(cmac_conj_acc);
#undef CMAC_TABLE
#undef CMAC_VARIANTS
#undef CMAC_ONE

/* The images' spectra at one frequency lie far apart, more streams than
 * the hardware prefetcher follows: fetch frequency f's ahead (f < end). */
static void prefetch_frequency(const float *s, int64_t nimg, int64_t img, int64_t G, int64_t f,
                               int64_t end, const fplan *p)
{
    if (f >= end) return;
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t g = 0; g < G; g++) {
            const float *e = s + n * img + g * p->spec + f * CPLX;
            __builtin_prefetch(e);
            __builtin_prefetch(e + LANES);
        }
}

/* The same for frequency f's block of kernel spectra (`floats` long). */
static void prefetch_block(const float *s, int64_t floats, int64_t f, int64_t end)
{
    if (f >= end) return;
    for (int64_t i = 0; i < floats; i += LANES) __builtin_prefetch(s + f * floats + i);
}

/* out[n][g][f] = sum_k in[n][k / 16][f][k % 16] w[f][k][g] for the tile's
 * images, g < G (output groups), f in [f0, f1). */
static void spectral_matmul(float *out, const float *in, const float *w, int64_t nimg, int64_t K,
                            int64_t Gk, int64_t G, int64_t f0, int64_t f1, const fplan *p)
{
    const int64_t in_img = Gk * p->spec, out_img = G * p->spec;
    for (int64_t f = f0; f < f1; f++) {
        prefetch_frequency(in, nimg, in_img, Gk, f + PREFETCH_AHEAD, f1, p);
        prefetch_block(w, K * G * CPLX, f + PREFETCH_AHEAD, f1);
        for (int64_t g = 0; g < G; g++)
            for (int64_t n0 = 0; n0 < nimg; n0 += BLOCK) {
                const int nb = (int)cd__min64(BLOCK, nimg - n0);
                cmac_set[nb](out + n0 * out_img + g * p->spec + f * CPLX, out_img,
                             in + n0 * in_img + f * CPLX, in_img, p->spec, LANES,
                             w + (f * K * G + g) * CPLX, G * CPLX, K);
            }
    }
}

/* R[co][gi][f] (+)= sum_n X[n][gi][f] conj(dY[n][co / 16][f][co % 16]) for
 * f in [f0, f1): the weight gradient's spectra (lanes: input channels),
 * overwritten for the first tile. Here cmac's block runs over output
 * channels of one group and its reduction over the images. */
static void spectral_wgrad(float *R, const float *X, const float *dY, int64_t nimg, int64_t C_out,
                           int64_t f0, int64_t f1, bool first, const fplan *p)
{
    const cmac_fn *fn = first ? cmac_conj_set : cmac_conj_acc;
    const int64_t x_img = p->gi * p->spec, dy_img = p->go * p->spec;
    for (int64_t f = f0; f < f1; f++) {
        prefetch_frequency(X, nimg, x_img, p->gi, f + PREFETCH_AHEAD, f1, p);
        prefetch_frequency(dY, nimg, dy_img, p->go, f + PREFETCH_AHEAD, f1, p);
        for (int64_t g = 0; g < p->gi; g++)
            for (int64_t co = 0; co < C_out;) {
                const int64_t lane = co & 15;
                const int nb = (int)cd__min64(cd__min64(BLOCK, C_out - co), LANES - lane);
                fn[nb](R + (co * p->gi + g) * p->spec + f * CPLX, p->gi * p->spec,
                       dY + (co >> 4) * p->spec + f * CPLX + lane, 1, dy_img, 1,
                       X + g * p->spec + f * CPLX, x_img, nimg);
                co += nb;
            }
    }
}

/* ---- phases --------------------------------------------------------------- */

typedef struct {
    const cd__conv2d *c;
    fplan p;
    const float *tw;
    float *wk;      /* kernel spectra: [f][ci][go] forward, [f][co][gi] backward */
    float *scratch; /* WK_TASKS spectra */
    float *R;       /* weight-gradient spectra [co][gi][f] */
    float *X, *Y;   /* the tile's spectra: [n][gi][f] and [n][go][f] */
    const float *in, *weight, *bias, *dout;
    float *out, *din, *dweight, *dbias;
    double *db; /* the bias gradient's sums, C_out */
    bool din_set;
    int64_t n0, nimg; /* the tile */
    cd__task_fn epi;
    void *epi_ctx;
} fjob;

static int64_t lanes_of(int64_t C, int64_t g) { return cd__min64(LANES, C - g * LANES); }

/* Forward kernel spectra conj(G) / nf^2, lanes over output channels:
 * task t takes the (ci, go) planes t, t + WK_TASKS, ... */
static CD__AVX512 void wk_fwd_task(void *ctx, int64_t t)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t kk = c->kh * c->kw;
    for (int64_t i = t; i < c->C_in * j->p.go; i += WK_TASKS) {
        const int64_t ci = i / j->p.go, g = i % j->p.go;
        kernel_spectrum(j->wk + i * CPLX, c->C_in * j->p.go * CPLX, j->scratch + t * j->p.spec,
                        j->weight + (g * LANES * c->C_in + ci) * kk, lanes_of(c->C_out, g),
                        c->C_in * kk, c->kh, true, &j->p, j->tw);
    }
}

/* Input-gradient kernel spectra G / nf^2, lanes over input channels. */
static CD__AVX512 void wk_bwd_task(void *ctx, int64_t t)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t kk = c->kh * c->kw;
    for (int64_t i = t; i < c->C_out * j->p.gi; i += WK_TASKS) {
        const int64_t co = i / j->p.gi, g = i % j->p.gi;
        kernel_spectrum(j->wk + i * CPLX, c->C_out * j->p.gi * CPLX, j->scratch + t * j->p.spec,
                        j->weight + (co * c->C_in + g * LANES) * kk, lanes_of(c->C_in, g), kk,
                        c->kh, false, &j->p, j->tw);
    }
}

static CD__AVX512 void image_spectra(float *spec, const float *img, int64_t C, int64_t G,
                                     const fjob *j)
{
    const cd__conv2d *c = j->c;
    for (int64_t g = 0; g < G; g++)
        planes_to_spectrum(spec + g * j->p.spec, img + g * LANES * c->H * c->W, lanes_of(C, g),
                           c->H, c->W, &j->p, j->tw);
}

static CD__AVX512 void fwd_in_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    image_spectra(j->X + i * j->p.gi * j->p.spec, j->in + (j->n0 + i) * c->C_in * c->H * c->W,
                  c->C_in, j->p.gi, j);
}

static void fwd_mul_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const int64_t f0 = i * j->p.chunk, f1 = cd__min64(j->p.F, f0 + j->p.chunk);
    spectral_matmul(j->Y, j->X, j->wk, j->nimg, j->c->C_in, j->p.gi, j->p.go, f0, f1, &j->p);
}

static CD__AVX512 void fwd_out_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t n = j->n0 + i, HW = c->H * c->W;
    for (int64_t g = 0; g < j->p.go; g++)
        spectrum_to_planes(j->out + (n * c->C_out + g * LANES) * HW,
                           j->Y + (i * j->p.go + g) * j->p.spec, lanes_of(c->C_out, g), c->H, c->W,
                           j->bias ? j->bias + g * LANES : NULL, false, &j->p, j->tw);
    if (j->epi) j->epi(j->epi_ctx, n);
}

static CD__AVX512 void bwd_in_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t n = j->n0 + i, HW = c->H * c->W;
    image_spectra(j->Y + i * j->p.go * j->p.spec, j->dout + n * c->C_out * HW, c->C_out, j->p.go,
                  j);
    if (j->dweight)
        image_spectra(j->X + i * j->p.gi * j->p.spec, j->in + n * c->C_in * HW, c->C_in, j->p.gi,
                      j);
}

/* The weight gradient reads X at these frequencies before the input
 * gradient overwrites them there (X doubles as dX). */
static void bwd_mul_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    /* Frequency 0 of dY, the first task's, is each channel's sum of dy:
     * the bias gradient, summed over the images in order. */
    if (i == 0 && j->dbias)
        for (int64_t n = 0; n < j->nimg; n++)
            for (int64_t co = 0; co < j->c->C_out; co++)
                j->db[co] += j->Y[(n * j->p.go + (co >> 4)) * j->p.spec + (co & 15)];
    const int64_t f0 = i * j->p.chunk, f1 = cd__min64(j->p.F, f0 + j->p.chunk);
    if (j->dweight)
        spectral_wgrad(j->R, j->X, j->Y, j->nimg, j->c->C_out, f0, f1, j->n0 == 0, &j->p);
    if (j->din)
        spectral_matmul(j->X, j->Y, j->wk, j->nimg, j->c->C_out, j->p.go, j->p.gi, f0, f1, &j->p);
}

static CD__AVX512 void bwd_out_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const int64_t n = j->n0 + i, HW = c->H * c->W;
    for (int64_t g = 0; g < j->p.gi; g++)
        spectrum_to_planes(j->din + (n * c->C_in + g * LANES) * HW,
                           j->X + (i * j->p.gi + g) * j->p.spec, lanes_of(c->C_in, g), c->H, c->W,
                           NULL, !j->din_set, &j->p, j->tw);
}

/* dweight[co][16 gi + l][a][b] += the (a - p, b - p) tap of R[co][gi]. */
static CD__AVX512 void wgrad_out_task(void *ctx, int64_t i)
{
    const fjob *j = ctx;
    const cd__conv2d *c = j->c;
    const fplan *p = &j->p;
    const int64_t co = i / p->gi, g = i % p->gi, k = c->kh, pad = k / 2;
    const int64_t lanes = lanes_of(c->C_in, g);
    float *spec = j->R + i * p->spec;
    col_fft(spec, CPLX, p, j->tw, true);
    const __m512 s = _mm512_set1_ps(p->scale);
    __m512 t[MAX_NF];
    __attribute__((aligned(64))) float v[LANES];
    for (int64_t a = 0; a < k; a++) {
        row_irfft(t, spec + ((a - pad + p->nf) % p->nf) * p->kx * CPLX, CPLX, p, j->tw);
        for (int64_t b = 0; b < k; b++) {
            _mm512_store_ps(v, _mm512_mul_ps(t[(b - pad + p->nf) % p->nf], s));
            float *dw = j->dweight + ((co * c->C_in + g * LANES) * k + a) * k + b;
            for (int64_t l = 0; l < lanes; l++) dw[l * k * k] += v[l];
        }
    }
}

/* ---- entry points ----------------------------------------------------------- */

typedef struct {
    size_t tw, db, scratch, wk, R, X, Y; /* float offsets */
    size_t total;
} fft_ws;

static fft_ws ws_layout(const cd__conv2d *c, const fplan *p)
{
    fft_ws w;
    const int64_t wk_fwd = c->C_in * p->go, wk_bwd = c->C_out * p->gi;
    w.tw = 0;
    w.db = 2 * MAX_NF;
    w.scratch = w.db + (size_t)(2 * ((c->C_out + 7) / 8 * 8)); /* doubles, 64-byte multiple */
    w.wk = w.scratch + (size_t)(WK_TASKS * p->spec);
    w.R = w.wk + (size_t)(p->spec * (wk_fwd > wk_bwd ? wk_fwd : wk_bwd));
    w.X = w.R + (size_t)(c->C_out * p->gi * p->spec);
    w.Y = w.X + (size_t)(p->tile * p->gi * p->spec);
    w.total = w.Y + (size_t)(p->tile * p->go * p->spec);
    return w;
}

size_t cd__conv2d_fft_workspace(const cd__conv2d *c)
{
    const fplan p = make_plan(c);
    return ws_layout(c, &p).total;
}

static fjob make_job(const cd__conv2d *c, float *ws)
{
    fjob j = {.c = c, .p = make_plan(c)};
    const fft_ws w = ws_layout(c, &j.p);
    make_twiddles(ws + w.tw, j.p.nf);
    j.tw = ws + w.tw;
    j.db = (double *)(void *)(ws + w.db);
    j.scratch = ws + w.scratch;
    j.wk = ws + w.wk;
    j.R = ws + w.R;
    j.X = ws + w.X;
    j.Y = ws + w.Y;
    return j;
}

size_t cd__conv2d_fft_prepared_size(const cd__conv2d *c)
{
    const fplan p = make_plan(c);
    return (size_t)(p.spec * c->C_in * p.go);
}

void cd__conv2d_fft_prepare(const cd__conv2d *c, float *wk, const float *weight, float *ws)
{
    fjob j = make_job(c, ws);
    j.weight = weight, j.wk = wk;
    cd__parallel_for(WK_TASKS, wk_fwd_task, &j);
}

/* The images' part of the forward, given the kernel spectra in j->wk. */
static void fft_forward_images(fjob *j)
{
    const cd__conv2d *c = j->c;
    for (j->n0 = 0; j->n0 < c->N; j->n0 += j->p.tile) {
        j->nimg = cd__min64(j->p.tile, c->N - j->n0);
        cd__parallel_for(j->nimg, fwd_in_task, j);
        cd__parallel_for(MUL_TASKS, fwd_mul_task, j);
        cd__parallel_for(j->nimg, fwd_out_task, j);
    }
}

void cd__conv2d_fft_forward_prepared(const cd__conv2d *c, float *out, const float *in,
                                     const float *wk, const float *bias, float *ws, cd__task_fn epi,
                                     void *epi_ctx)
{
    fjob j = make_job(c, ws);
    j.in = in, j.bias = c->bias ? bias : NULL, j.out = out;
    j.epi = epi, j.epi_ctx = epi_ctx;
    /* Only read from here on: the products take the spectra as they are. */
    j.wk = (float *)wk;
    fft_forward_images(&j);
}

void cd__conv2d_fft_forward(const cd__conv2d *c, float *out, const float *in, const float *weight,
                            const float *bias, float *ws, cd__task_fn epi, void *epi_ctx)
{
    fjob j = make_job(c, ws);
    j.in = in, j.weight = weight, j.bias = c->bias ? bias : NULL, j.out = out;
    j.epi = epi, j.epi_ctx = epi_ctx;
    cd__parallel_for(WK_TASKS, wk_fwd_task, &j);
    fft_forward_images(&j);
}

void cd__conv2d_fft_backward(const cd__conv2d *c, float *din, bool din_set, float *dweight,
                             float *dbias, const float *dout, const float *in, const float *weight,
                             float *ws)
{
    if (!din && !dweight) return;
    fjob j = make_job(c, ws);
    j.in = in, j.weight = weight, j.dout = dout, j.din = din, j.din_set = din_set;
    j.dweight = dweight, j.dbias = dbias;
    if (dbias)
        for (int64_t co = 0; co < c->C_out; co++) j.db[co] = 0.0;
    if (din) cd__parallel_for(WK_TASKS, wk_bwd_task, &j);
    for (j.n0 = 0; j.n0 < c->N; j.n0 += j.p.tile) {
        j.nimg = cd__min64(j.p.tile, c->N - j.n0);
        cd__parallel_for(j.nimg, bwd_in_task, &j);
        cd__parallel_for(MUL_TASKS, bwd_mul_task, &j);
        if (din) cd__parallel_for(j.nimg, bwd_out_task, &j);
    }
    if (dweight) cd__parallel_for(c->C_out * j.p.gi, wgrad_out_task, &j);
    if (dbias)
        for (int64_t co = 0; co < c->C_out; co++) dbias[co] += (float)j.db[co];
}

#endif /* CD__CONV_X86 */
