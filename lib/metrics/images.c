/*
 * images.c - per-image min-max normalisation, RMSE, SSIM and PSNR with the
 * report's recipe (docs/models.md, Metrics; piq 0.8.0's SSIM and PSNR).
 *
 * Work is split by image: each task normalises its pair into double
 * scratch and computes MSE_i and SSIM_i. The reductions then run serially in
 * image order, so the figures do not depend on the thread count.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PSNR_EPS 1e-8

void cd__ssim_window(double g[CD__SSIM_TAPS])
{
    const double sigma = 1.5;
    const int r = CD__SSIM_TAPS / 2;
    double sum = 0.0;
    for (int k = -r; k <= r; k++) {
        g[k + r] = exp(-(double)(k * k) / (2.0 * sigma * sigma));
        sum += g[k + r];
    }
    for (int k = 0; k < CD__SSIM_TAPS; k++) g[k] /= sum;
}

int64_t cd__ssim_pool_factor(int64_t H, int64_t W)
{
    int64_t s = H < W ? H : W;
    int64_t q = s / 256, r = s % 256;
    if (r > 128 || (r == 128 && (q & 1))) q++; /* Python's round: half to even */
    return q > 1 ? q : 1;
}

int64_t cd__ssim_scratch_len(int64_t C, int64_t H, int64_t W)
{
    int64_t f = cd__ssim_pool_factor(H, W);
    int64_t Hp = H / f, Wp = W / f;
    int64_t pooled = f > 1 ? 2 * C * Hp * Wp : 0;
    return pooled + 5 * Hp * (Wp - (CD__SSIM_TAPS - 1));
}

/* F.avg_pool2d(kernel_size = f): stride f, no padding, floor. */
static void avg_pool(double *out, const double *in, int64_t C, int64_t H, int64_t W, int64_t f)
{
    const int64_t Hp = H / f, Wp = W / f;
    const double inv = 1.0 / (double)(f * f);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < Hp; i++)
            for (int64_t j = 0; j < Wp; j++) {
                double s = 0.0;
                for (int64_t a = 0; a < f; a++)
                    for (int64_t b = 0; b < f; b++) s += in[(c * H + i * f + a) * W + j * f + b];
                out[(c * Hp + i) * Wp + j] = s * inv;
            }
}

double cd__ssim_image(const double *x, const double *y, int64_t C, int64_t H, int64_t W,
                      double *scratch)
{
    double g[CD__SSIM_TAPS];
    cd__ssim_window(g);
    const int64_t f = cd__ssim_pool_factor(H, W);
    if (f > 1) {
        const int64_t n = C * (H / f) * (W / f);
        avg_pool(scratch, x, C, H, W, f);
        avg_pool(scratch + n, y, C, H, W, f);
        x = scratch;
        y = scratch + n;
        scratch += 2 * n;
        H /= f;
        W /= f;
    }
    const int64_t Ho = H - (CD__SSIM_TAPS - 1), Wo = W - (CD__SSIM_TAPS - 1);
    const int64_t plane = H * Wo;
    double *hx = scratch, *hy = hx + plane, *hxx = hy + plane, *hyy = hxx + plane,
           *hxy = hyy + plane;
    double total = 0.0;
    for (int64_t c = 0; c < C; c++) {
        const double *xc = x + c * H * W, *yc = y + c * H * W;
        /* Horizontal pass: H x Wo window sums of x, y, x^2, y^2, xy. */
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < Wo; j++) {
                double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
                for (int k = 0; k < CD__SSIM_TAPS; k++) {
                    double a = xc[i * W + j + k], b = yc[i * W + j + k];
                    sx += g[k] * a;
                    sy += g[k] * b;
                    sxx += g[k] * a * a;
                    syy += g[k] * b * b;
                    sxy += g[k] * a * b;
                }
                int64_t o = i * Wo + j;
                hx[o] = sx;
                hy[o] = sy;
                hxx[o] = sxx;
                hyy[o] = syy;
                hxy[o] = sxy;
            }
        /* Vertical pass and the map, summed in raster order. */
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++) {
                double mx = 0, my = 0, mxx = 0, myy = 0, mxy = 0;
                for (int k = 0; k < CD__SSIM_TAPS; k++) {
                    int64_t o = (i + k) * Wo + j;
                    mx += g[k] * hx[o];
                    my += g[k] * hy[o];
                    mxx += g[k] * hxx[o];
                    myy += g[k] * hyy[o];
                    mxy += g[k] * hxy[o];
                }
                double vx = mxx - mx * mx, vy = myy - my * my, cxy = mxy - mx * my;
                double cs = (2.0 * cxy + CD__SSIM_C2) / (vx + vy + CD__SSIM_C2);
                total += (2.0 * mx * my + CD__SSIM_C1) / (mx * mx + my * my + CD__SSIM_C1) * cs;
            }
    }
    return total / (double)(C * Ho * Wo);
}

/* ---- checks ------------------------------------------------------------- */

/* A rank-4 tensor with H and W at least `min_hw` (0: any). */
static cd_status check_images(const char *fn, const char *name, const cd_tensor *t, int64_t min_hw)
{
    if (t->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: %s has rank %d, expected 4 (N x C x H x W)", fn, name,
                         (int)t->rank);
    if (t->shape[2] < min_hw || t->shape[3] < min_hw)
        return cd__error(CD_ERR_SHAPE,
                         "%s: %s is %" PRId64 " x %" PRId64 " pixels; SSIM's 11 x 11 window "
                         "needs at least %" PRId64 " x %" PRId64,
                         fn, name, t->shape[2], t->shape[3], min_hw, min_hw);
    return CD_OK;
}

static cd_status check_same_shape(const char *fn, const cd_tensor *a, const cd_tensor *b)
{
    for (int d = 0; d < 4; d++)
        if (a->shape[d] != b->shape[d])
            return cd__error(CD_ERR_SHAPE,
                             "%s: x is %" PRId64 " x %" PRId64 " x %" PRId64 " x %" PRId64
                             " but x_hat is %" PRId64 " x %" PRId64 " x %" PRId64 " x %" PRId64,
                             fn, a->shape[0], a->shape[1], a->shape[2], a->shape[3], b->shape[0],
                             b->shape[1], b->shape[2], b->shape[3]);
    return CD_OK;
}

/* Every value finite and no image constant; min and max of each image
 * into lo/hi (if not NULL). */
static cd_status check_values(const char *fn, const char *name, const cd_tensor *t, float *lo,
                              float *hi)
{
    const int64_t N = t->shape[0], per = t->numel / N;
    for (int64_t n = 0; n < N; n++) {
        const float *p = t->data + n * per;
        float mn = p[0], mx = p[0];
        for (int64_t k = 0; k < per; k++) {
            if (!isfinite(p[k]))
                return cd__error(CD_ERR_NOT_FINITE,
                                 "%s: %s image %" PRId64 " has %g at element %" PRId64
                                 " of its C x H x W values",
                                 fn, name, n, (double)p[k], k);
            if (p[k] < mn) mn = p[k];
            if (p[k] > mx) mx = p[k];
        }
        if (!(mx > mn))
            return cd__error(CD_ERR_RANGE,
                             "%s: %s image %" PRId64 " is constant (every value is %g), so "
                             "it cannot be min-max normalised",
                             fn, name, n, (double)mn);
        if (lo) lo[n] = mn;
        if (hi) hi[n] = mx;
    }
    return CD_OK;
}

static void normalise(double *out, const float *in, int64_t n, float lo, float hi)
{
    const double l = lo, range = (double)hi - (double)lo;
    for (int64_t k = 0; k < n; k++) out[k] = ((double)in[k] - l) / range;
}

cd_status cd_metrics_normalize(const cd_tensor *x, cd_tensor *out)
{
    static const char fn[] = "cd_metrics_normalize";
    CD__CHECK_NOT_NULL(x, fn);
    CD__CHECK_NOT_NULL(out, fn);
    CD__TRY(check_images(fn, "x", x, 0));
    if (out->rank != 4)
        return cd__error(CD_ERR_SHAPE, "%s: out has rank %d, expected 4", fn, (int)out->rank);
    for (int d = 0; d < 4; d++)
        if (x->shape[d] != out->shape[d])
            return cd__error(CD_ERR_SHAPE,
                             "%s: out's dimension %d is %" PRId64 " but x's is %" PRId64, fn, d,
                             out->shape[d], x->shape[d]);
    CD__TRY(check_values(fn, "x", x, NULL, NULL));
    const int64_t N = x->shape[0], per = x->numel / N;
    for (int64_t n = 0; n < N; n++) {
        const float *p = x->data + n * per;
        float lo = p[0], hi = p[0];
        for (int64_t k = 0; k < per; k++) {
            if (p[k] < lo) lo = p[k];
            if (p[k] > hi) hi = p[k];
        }
        const double range = (double)hi - (double)lo;
        float *o = out->data + n * per;
        /* Element by element, so out may be x. The maximum maps to exactly
         * 1: (hi - lo) / (hi - lo) in double. */
        for (int64_t k = 0; k < per; k++) o[k] = (float)(((double)p[k] - (double)lo) / range);
    }
    return CD_OK;
}

/* ---- the per-image pass ------------------------------------------------- */

typedef struct {
    const cd_tensor *x, *y;
    const float *xlo, *xhi, *ylo, *yhi;
    int64_t C, H, W, per, slots;
    double *scratch; /* slots x slot_len */
    int64_t slot_len;
    bool want_ssim;
    double *mse, *ssim; /* N each */
} pass_ctx;

static void pass_task(void *vctx, int64_t slot)
{
    pass_ctx *c = vctx;
    double *xn = c->scratch + slot * c->slot_len, *yn = xn + c->per, *work = yn + c->per;
    for (int64_t n = slot; n < c->x->shape[0]; n += c->slots) {
        normalise(xn, c->x->data + n * c->per, c->per, c->xlo[n], c->xhi[n]);
        normalise(yn, c->y->data + n * c->per, c->per, c->ylo[n], c->yhi[n]);
        double s = 0.0;
        for (int64_t k = 0; k < c->per; k++) {
            double d = xn[k] - yn[k];
            s += d * d;
        }
        c->mse[n] = s / (double)c->per;
        if (c->want_ssim) c->ssim[n] = cd__ssim_image(xn, yn, c->C, c->H, c->W, work);
    }
}

/* Validate x and x_hat and fill mse[N] and (if want_ssim) ssim[N]. */
static cd_status per_image_pass(const char *fn, const cd_tensor *x, const cd_tensor *y,
                                bool want_ssim, double *mse, double *ssim)
{
    const int64_t N = x->shape[0], per = x->numel / N;
    cd_status st = CD_OK;
    float *bounds = cd__calloc((size_t)N * 4, sizeof(float), "metrics image bounds");
    if (!bounds)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory for %" PRId64 " image bounds", fn,
                         N);
    pass_ctx c = {.x = x,
                  .y = y,
                  .xlo = bounds,
                  .xhi = bounds + N,
                  .ylo = bounds + 2 * N,
                  .yhi = bounds + 3 * N,
                  .C = x->shape[1],
                  .H = x->shape[2],
                  .W = x->shape[3],
                  .per = per,
                  .want_ssim = want_ssim,
                  .mse = mse,
                  .ssim = ssim};
    st = check_values(fn, "x", x, bounds, bounds + N);
    if (st == CD_OK) st = check_values(fn, "x_hat", y, bounds + 2 * N, bounds + 3 * N);
    if (st != CD_OK) {
        cd__free(bounds);
        return st;
    }
    int64_t threads = cd_get_num_threads();
    c.slots = N < threads ? N : threads;
    c.slot_len = 2 * per + (want_ssim ? cd__ssim_scratch_len(c.C, c.H, c.W) : 0);
    int64_t total;
    if (cd__mul_overflows_i64(c.slots, c.slot_len, &total) ||
        (uint64_t)total > SIZE_MAX / sizeof(double)) {
        cd__free(bounds);
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: scratch for %" PRId64 " values per image "
                         "does not fit",
                         fn, per);
    }
    c.scratch = cd__calloc((size_t)total, sizeof(double), "metrics scratch");
    if (!c.scratch) {
        cd__free(bounds);
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "%s: out of memory for %" PRId64 " doubles of scratch", fn, total);
    }
    cd__parallel_for(c.slots, pass_task, &c);
    cd__free(c.scratch);
    cd__free(bounds);
    return CD_OK;
}

static cd_status check_pair(const char *fn, const cd_tensor *x, const cd_tensor *x_hat)
{
    CD__CHECK_NOT_NULL(x, fn);
    CD__CHECK_NOT_NULL(x_hat, fn);
    CD__TRY(check_images(fn, "x", x, CD_METRICS_MIN_SIZE));
    CD__TRY(check_images(fn, "x_hat", x_hat, CD_METRICS_MIN_SIZE));
    return check_same_shape(fn, x, x_hat);
}

static double psnr_of(double mse) { return -10.0 * log10(mse + PSNR_EPS); }

cd_status cd_metrics_per_image(const cd_tensor *x, const cd_tensor *x_hat, double *mse,
                               double *ssim, double *psnr, int64_t n)
{
    static const char fn[] = "cd_metrics_per_image";
    CD__TRY(check_pair(fn, x, x_hat));
    const int64_t N = x->shape[0];
    if (n != N)
        return cd__error(CD_ERR_SHAPE,
                         "%s: n = %" PRId64 " but the tensors hold %" PRId64 " images", fn, n, N);
    double *buf = cd__calloc((size_t)N * 2, sizeof(double), "metrics values");
    if (!buf)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory for %" PRId64 " values", fn,
                         2 * N);
    cd_status st = per_image_pass(fn, x, x_hat, ssim != NULL, buf, buf + N);
    if (st == CD_OK) {
        for (int64_t i = 0; i < N; i++) {
            if (mse) mse[i] = buf[i];
            if (ssim) ssim[i] = buf[N + i];
            if (psnr) psnr[i] = psnr_of(buf[i]);
        }
    }
    cd__free(buf);
    return st;
}

cd_status cd_metrics_images(const cd_tensor *x, const cd_tensor *x_hat,
                            cd_metric_reduction reduction, double *rmse, double *ssim, double *psnr,
                            cd_metric_reduction *used)
{
    static const char fn[] = "cd_metrics_images";
    CD__TRY(check_pair(fn, x, x_hat));
    if (reduction != CD_REDUCTION_PER_IMAGE && reduction != CD_REDUCTION_REPORT)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: reduction = %d is neither CD_REDUCTION_PER_IMAGE (0) nor "
                         "CD_REDUCTION_REPORT (1)",
                         fn, (int)reduction);
    const int64_t N = x->shape[0];
    double *mse = cd__calloc((size_t)N * 2, sizeof(double), "metrics values");
    if (!mse)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: out of memory for %" PRId64 " values", fn,
                         2 * N);
    double *ss = mse + N;
    cd_status st = per_image_pass(fn, x, x_hat, ssim != NULL, mse, ss);
    if (st != CD_OK) {
        cd__free(mse);
        return st;
    }
    /* One batch of N images for per_image; batches of 512 for report. For
     * per_image the "batch RMSE" over all pixels is the RMSE of all pixels. */
    const int64_t B = reduction == CD_REDUCTION_REPORT ? CD_METRICS_REPORT_BATCH : N;
    double r_sum = 0.0, s_sum = 0.0, p_sum = 0.0;
    int64_t batches = 0;
    for (int64_t b0 = 0; b0 < N; b0 += B, batches++) {
        const int64_t b1 = b0 + B < N ? b0 + B : N;
        double m = 0.0, s = 0.0, p = 0.0;
        for (int64_t i = b0; i < b1; i++) {
            m += mse[i];
            s += ss[i];
            p += psnr_of(mse[i]);
        }
        const double cnt = (double)(b1 - b0);
        r_sum += sqrt(m / cnt);
        s_sum += s / cnt;
        p_sum += p / cnt;
    }
    if (rmse) *rmse = r_sum / (double)batches;
    if (ssim) *ssim = s_sum / (double)batches;
    if (psnr) *psnr = p_sum / (double)batches;
    if (used) *used = reduction;
    cd__free(mse);
    return CD_OK;
}
