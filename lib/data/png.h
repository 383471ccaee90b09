/*
 * png.h - internal PNG encoding and float-to-byte pixel mapping, shared by
 * the image writers (png.c, grid.c) and any later plotting layer.
 * Nothing here is exported; names use the cd__ prefix.
 */
#ifndef CD_DATA_PNG_H
#define CD_DATA_PNG_H

#include "colddiff.h"

#include <stddef.h>
#include <stdint.h>

/* The largest width or height a PNG may declare (2^31 - 1, PNG spec 11.2.2). */
#define CD__PNG_MAX_DIM INT64_C(2147483647)

/*
 * Encode w x h row-major pixels of `channels` bytes each (1: grey, 3: RGB
 * interleaved) as an 8-bit PNG held in memory.
 * On success *out is a malloc'd buffer of *out_len bytes that the caller
 * releases with cd__free(); on failure *out is NULL and *out_len 0.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL pointer), CD_ERR_RANGE (w or h
 * outside 1..CD__PNG_MAX_DIM), CD_ERR_OVERFLOW, CD_ERR_OUT_OF_MEMORY.
 */
cd_status cd__png_encode(const uint8_t *pixels, int64_t w, int64_t h, int channels, uint8_t **out,
                         size_t *out_len);

/* cd__png_encode with one channel. */
cd_status cd__png_encode_gray(const uint8_t *pixels, int64_t w, int64_t h, uint8_t **out,
                              size_t *out_len);

/*
 * Encode as cd__png_encode and write the file atomically; fn names the
 * public caller in error messages. Errors: those of cd_png_write_gray().
 */
cd_status cd__png_write(const char *fn, const char *path, const uint8_t *pixels, int64_t height,
                        int64_t width, int channels);

/*
 * Map the n floats of one image to bytes with the rules of cd_pixel_map
 * (see colddiff.h; values are rounded half up, so 127.5 becomes 128).
 * scratch holds n floats and is needed only for CD_PIXELS_PERCENTILE (it
 * may be NULL for CD_PIXELS_RANGE); lo and hi are used only by
 * CD_PIXELS_RANGE. Allocates nothing.
 * Errors: CD_ERR_INVALID_ARGUMENT (NULL pointer, unknown map), CD_ERR_RANGE
 * (n < 1; lo, hi not finite or lo >= hi), CD_ERR_NOT_FINITE (names the
 * first bad pixel's index).
 */
cd_status cd__map_image_u8(const float *img, int64_t n, cd_pixel_map map, float lo, float hi,
                           uint8_t *out, float *scratch);

#endif /* CD_DATA_PNG_H */
