/*
 * grid.c - float images to bytes (cd_pixel_map) and image grids as PNG.
 *
 * All float-to-byte arithmetic is in double and ends in to_byte(), so the
 * two maps round and clip the same way.
 */
#include "png.h"

#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Clip to 0..255 and round half up (127.5 -> 128); the one place where a
 * mapped value becomes a pixel. */
static uint8_t to_byte(double v)
{
    if (!(v > 0.0)) return 0;
    if (v >= 255.0) return 255;
    return (uint8_t)floor(v + 0.5);
}

static cd_status check_map(const char *fn, cd_pixel_map map, float lo, float hi)
{
    switch (map) {
    case CD_PIXELS_RANGE:
        if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
            return cd__error(CD_ERR_RANGE,
                             "%s: CD_PIXELS_RANGE needs finite lo < hi, got lo = %g, hi = %g", fn,
                             (double)lo, (double)hi);
        return CD_OK;
    case CD_PIXELS_PERCENTILE: return CD_OK;
    }
    return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown pixel map %d", fn, (int)map);
}

static void map_range(const float *img, int64_t n, float lo, float hi, uint8_t *out)
{
    double span = (double)hi - (double)lo; /* in double: hi - lo may overflow float */
    for (int64_t i = 0; i < n; i++) out[i] = to_byte(((double)img[i] - (double)lo) / span * 255.0);
}

static int cmp_float(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/*
 * Percentile p of sorted s[0..n) as numpy.percentile's default 'linear'
 * method computes it: the virtual index q*(n-1) written as numpy writes it,
 * and numpy's lerp, which interpolates from the nearer neighbour so the
 * result is monotonic in p. Done in double, so it agrees with numpy to
 * within float rounding.
 */
static double percentile_sorted(const float *s, int64_t n, double p)
{
    double q = p / 100.0;
    /* numpy: n*q + (alpha + q*(1 - alpha - beta)) - 1 with alpha = beta = 1 */
    double idx = (double)n * q + (1.0 - q) - 1.0;
    double fl = floor(idx);
    if (fl < 0.0) return s[0];
    if (fl >= (double)(n - 1)) return s[n - 1];
    int64_t i = (int64_t)fl;
    double t = idx - fl;
    double a = s[i], b = s[i + 1], d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

static void map_percentile(const float *img, int64_t n, uint8_t *out, float *scratch)
{
    memcpy(scratch, img, (size_t)n * sizeof *scratch);
    qsort(scratch, (size_t)n, sizeof *scratch, cmp_float);
    /* After clipping to [p1, p99] the minimum is p1 and the maximum p99,
     * since both lie within the data's range. */
    double p1 = percentile_sorted(scratch, n, 1.0);
    double p99 = percentile_sorted(scratch, n, 99.0);
    if (!(p99 > p1)) {
        memset(out, 0, (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = img[i] < p1 ? p1 : img[i] > p99 ? p99 : img[i];
        out[i] = to_byte((v - p1) / (p99 - p1) * 255.0);
    }
}

cd_status cd__map_image_u8(const float *img, int64_t n, cd_pixel_map map, float lo, float hi,
                           uint8_t *out, float *scratch)
{
    static const char fn[] = "cd__map_image_u8";
    CD__CHECK_NOT_NULL(img, fn);
    CD__CHECK_NOT_NULL(out, fn);
    if (n < 1) return cd__error(CD_ERR_RANGE, "%s: n = %" PRId64 " pixels; need at least 1", fn, n);
    CD__TRY(check_map(fn, map, lo, hi));
    if (map == CD_PIXELS_PERCENTILE) CD__CHECK_NOT_NULL(scratch, fn);
    int64_t bad = cd__first_non_finite(img, n);
    if (bad >= 0)
        return cd__error(CD_ERR_NOT_FINITE, "%s: pixel %" PRId64 " is %g", fn, bad,
                         (double)img[bad]);
    if (map == CD_PIXELS_RANGE)
        map_range(img, n, lo, hi, out);
    else
        map_percentile(img, n, out, scratch);
    return CD_OK;
}

/* ---- grids --------------------------------------------------------------- */

static const char grid_fn[] = "cd_image_grid_write_png";

typedef struct grid_geom {
    int64_t n, c, h, w; /* images, their channels (1 or 3) and size */
    int64_t cols, rows; /* tiles */
    int64_t border;
    int64_t gw, gh; /* the whole grid in pixels */
} grid_geom;

static cd_status image_dims(const cd_tensor *t, grid_geom *g)
{
    if (t->rank == 4 && t->shape[1] != 1 && t->shape[1] != 3)
        return cd__error(CD_ERR_SHAPE,
                         "%s: images has %" PRId64
                         " channels; need 1 (greyscale) or 3 (RGB) in N x C x H x W",
                         grid_fn, t->shape[1]);
    if (t->rank != 3 && t->rank != 4)
        return cd__error(CD_ERR_SHAPE,
                         "%s: images must be N x C x H x W (C = 1 or 3) or N x H x W, got rank %d",
                         grid_fn, (int)t->rank);
    g->n = t->shape[0];
    g->c = t->rank == 4 ? t->shape[1] : 1;
    g->h = t->shape[t->rank - 2];
    g->w = t->shape[t->rank - 1];
    return CD_OK;
}

/* One side of the grid: count tiles of `tile` pixels with a border before,
 * between and after them, within the PNG limit. */
static cd_status grid_side(const char *what, int64_t count, int64_t tile, int64_t border,
                           int64_t *side)
{
    int64_t tiles, gaps;
    if (cd__mul_overflows_i64(count, tile, &tiles) ||
        cd__mul_overflows_i64(count + 1, border, &gaps) || gaps > INT64_MAX - tiles)
        return cd__error(CD_ERR_OVERFLOW, "%s: the grid %s overflows int64 (border %" PRId64 ")",
                         grid_fn, what, border);
    *side = tiles + gaps;
    if (*side > CD__PNG_MAX_DIM)
        return cd__error(CD_ERR_RANGE, "%s: the grid %s %" PRId64 " exceeds the PNG limit %" PRId64,
                         grid_fn, what, *side, CD__PNG_MAX_DIM);
    return CD_OK;
}

static cd_status grid_layout(const cd_tensor *images, int64_t columns, int64_t border, grid_geom *g)
{
    CD__TRY(image_dims(images, g));
    if (columns < 1)
        return cd__error(CD_ERR_RANGE, "%s: columns = %" PRId64 "; need at least 1", grid_fn,
                         columns);
    if (border < 0)
        return cd__error(CD_ERR_RANGE, "%s: border = %" PRId64 "; need 0 or more", grid_fn, border);
    /* More columns than images would only add empty cells: use N columns. */
    g->cols = columns < g->n ? columns : g->n;
    g->rows = (g->n + g->cols - 1) / g->cols;
    g->border = border;
    CD__TRY(grid_side("width", g->cols, g->w, border, &g->gw));
    CD__TRY(grid_side("height", g->rows, g->h, border, &g->gh));
    /* The canvas holds gw x gh pixels of c bytes; only a 32-bit size_t can
     * fall short. */
    if ((uint64_t)g->gw * (uint64_t)g->c > SIZE_MAX / (uint64_t)g->gh)
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: a %" PRId64 " x %" PRId64 " grid of %" PRId64
                         " channels does not fit in size_t",
                         grid_fn, g->gh, g->gw, g->c);
    return CD_OK;
}

/* Name the first non-finite pixel by image and position; the mapping would
 * only know its index within one image. */
static cd_status check_finite(const float *data, const grid_geom *g)
{
    int64_t hw = g->h * g->w;
    int64_t bad = cd__first_non_finite(data, g->n * g->c * hw);
    if (bad < 0) return CD_OK;
    int64_t pix = bad % hw, plane = bad / hw;
    if (g->c == 1)
        return cd__error(CD_ERR_NOT_FINITE,
                         "%s: image %" PRId64 ", pixel %" PRId64 " (row %" PRId64
                         ", column %" PRId64 ") is %g",
                         grid_fn, plane, pix, pix / g->w, pix % g->w, (double)data[bad]);
    return cd__error(CD_ERR_NOT_FINITE,
                     "%s: image %" PRId64 ", channel %" PRId64 ", pixel %" PRId64 " (row %" PRId64
                     ", column %" PRId64 ") is %g",
                     grid_fn, plane / g->c, plane % g->c, pix, pix / g->w, pix % g->w,
                     (double)data[bad]);
}

/* tile is C x H x W (planar, as the tensor); PNG rows interleave the
 * channels of each pixel. */
static void place_tile(uint8_t *canvas, const grid_geom *g, int64_t i, const uint8_t *tile)
{
    int64_t r = i / g->cols, c = i % g->cols;
    size_t nc = (size_t)g->c, w = (size_t)g->w, hw = (size_t)(g->h * g->w);
    size_t y0 = (size_t)(g->border + r * (g->h + g->border));
    size_t x0 = (size_t)(g->border + c * (g->w + g->border));
    for (size_t y = 0; y < (size_t)g->h; y++) {
        uint8_t *dst = canvas + ((y0 + y) * (size_t)g->gw + x0) * nc;
        if (nc == 1) {
            memcpy(dst, tile + y * w, w);
            continue;
        }
        for (size_t x = 0; x < w; x++)
            for (size_t k = 0; k < nc; k++) dst[x * nc + k] = tile[k * hw + y * w + x];
    }
}

/* Map every image into its cell of canvas, which already holds the border.
 * An image's channels are mapped together, so the percentile map scales
 * them alike and keeps the image's colours in proportion. */
static cd_status fill_canvas(uint8_t *canvas, const grid_geom *g, const float *data,
                             cd_pixel_map map, float lo, float hi)
{
    size_t chw = (size_t)(g->c * g->h * g->w);
    uint8_t *tile = cd__calloc(chw, 1, "grid tile");
    float *scratch =
        map == CD_PIXELS_PERCENTILE ? cd__calloc(chw, sizeof *scratch, "grid sort buffer") : NULL;
    cd_status st = CD_OK;
    if (!tile || (map == CD_PIXELS_PERCENTILE && !scratch)) st = cd_last_status();
    for (int64_t i = 0; i < g->n && st == CD_OK; i++) {
        st = cd__map_image_u8(data + (size_t)i * chw, (int64_t)chw, map, lo, hi, tile, scratch);
        if (st == CD_OK) place_tile(canvas, g, i, tile);
    }
    cd__free(scratch);
    cd__free(tile);
    return st;
}

cd_status cd_image_grid_write_png(const char *path, const cd_tensor *images, int64_t columns,
                                  int64_t border, int32_t border_value, cd_pixel_map map, float lo,
                                  float hi)
{
    CD__CHECK_NOT_NULL(path, grid_fn);
    CD__CHECK_ARG(path[0] != '\0', grid_fn, "argument 'path' is empty");
    CD__CHECK_NOT_NULL(images, grid_fn);
    grid_geom g;
    CD__TRY(grid_layout(images, columns, border, &g));
    if (border_value < 0 || border_value > 255)
        return cd__error(CD_ERR_RANGE, "%s: border_value = %d is outside 0..255", grid_fn,
                         (int)border_value);
    CD__TRY(check_map(grid_fn, map, lo, hi));
    CD__TRY(check_finite(images->data, &g));

    size_t row_bytes = (size_t)g.gw * (size_t)g.c;
    uint8_t *canvas = cd__calloc(row_bytes, (size_t)g.gh, "grid canvas");
    if (!canvas) return cd_last_status();
    /* One byte value for every channel: a grey border on colour grids too. */
    memset(canvas, border_value, row_bytes * (size_t)g.gh);
    cd_status st = fill_canvas(canvas, &g, images->data, map, lo, hi);
    if (st == CD_OK) st = cd__png_write(grid_fn, path, canvas, g.gh, g.gw, (int)g.c);
    cd__free(canvas);
    return st;
}
