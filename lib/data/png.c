/*
 * png.c - an 8-bit PNG encoder, greyscale (colour type 0) or RGB (colour
 * type 2), no interlace.
 *
 * Rows are filtered with the per-row minimum-sum-of-absolute-differences
 * heuristic the PNG spec recommends (section 12.8), compressed with zlib as
 * one stream, and cut into IDAT chunks of at most PNG_IDAT_BYTES so no
 * chunk comes near the 2^31 - 1 length limit however large the image is.
 */
#include "png.h"

#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

/* The five PNG filter types, in spec order: None, Sub, Up, Average, Paeth. */
#define PNG_NFILTERS 5
/* Compressed bytes per IDAT chunk. */
#define PNG_IDAT_BYTES ((size_t)1 << 16)
/* Level 9 costs little here: the images are small and filtering does most
 * of the work, while every byte saved counts when grids are kept per epoch. */
#define PNG_ZLEVEL 9

static const uint8_t png_signature[8] = {137, 80, 78, 71, 13, 10, 26, 10};

/* A growing malloc'd byte buffer; the finished PNG is handed to the caller. */
typedef struct png_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} png_buf;

static cd_status buf_reserve(png_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len) return CD_OK;
    if (extra > SIZE_MAX - b->len)
        return cd__error(CD_ERR_OVERFLOW, "cd__png_encode: the PNG would exceed SIZE_MAX bytes");
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = cd__realloc(b->data, cap, 1, "PNG output");
    if (!p) return CD_ERR_OUT_OF_MEMORY; /* cd__realloc set the message */
    b->data = p;
    b->cap = cap;
    return CD_OK;
}

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Append one chunk: length, type, data, and the CRC of type and data. */
static cd_status buf_chunk(png_buf *b, const char *type, const uint8_t *data, uint32_t n)
{
    CD__TRY(buf_reserve(b, (size_t)n + 12));
    uint8_t *p = b->data + b->len;
    put_u32be(p, n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, (uInt)n + 4);
    put_u32be(p + 8 + n, (uint32_t)crc);
    b->len += (size_t)n + 12;
    return CD_OK;
}

/* Validate what the encoder needs; fn names the public caller in messages. */
static cd_status check_image(const char *fn, const uint8_t *pixels, int64_t w, int64_t h,
                             int channels)
{
    CD__CHECK_NOT_NULL(pixels, fn);
    if (w < 1 || w > CD__PNG_MAX_DIM)
        return cd__error(CD_ERR_RANGE, "%s: width %" PRId64 " is outside 1..%" PRId64, fn, w,
                         CD__PNG_MAX_DIM);
    if (h < 1 || h > CD__PNG_MAX_DIM)
        return cd__error(CD_ERR_RANGE, "%s: height %" PRId64 " is outside 1..%" PRId64, fn, h,
                         CD__PNG_MAX_DIM);
    /* Only reachable where size_t is 32 bits: w*h < 2^62 always fits int64. */
    uint64_t npix = (uint64_t)w * (uint64_t)h * (uint64_t)channels;
    uint64_t work = (uint64_t)w * (uint64_t)channels + 1;
    if ((size_t)npix != npix || work > (SIZE_MAX - PNG_IDAT_BYTES) / (PNG_NFILTERS + 1))
        return cd__error(CD_ERR_OVERFLOW,
                         "%s: a %" PRId64 " x %" PRId64 " image does not fit in size_t", fn, w, h);
    return CD_OK;
}

static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/* dst = filter type byte, then row minus its prediction from the left (a),
 * upper (b) and upper-left (c) neighbours; bytes outside the image are 0.
 * Neighbours are whole pixels (bpp bytes) away, so each RGB channel is
 * predicted from the same channel. */
static void filter_row(uint8_t type, const uint8_t *row, const uint8_t *prev, size_t w, size_t bpp,
                       uint8_t *dst)
{
    dst[0] = type;
    for (size_t x = 0; x < w; x++) {
        uint8_t a = x >= bpp ? row[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
        uint8_t pred;
        switch (type) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (uint8_t)((a + b) / 2); break;
        default: pred = paeth(a, b, c); break;
        }
        dst[1 + x] = (uint8_t)(row[x] - pred);
    }
}

/* Sum of the filtered bytes read as signed: small residuals compress well. */
static uint64_t row_cost(const uint8_t *f, size_t w)
{
    uint64_t sum = 0;
    for (size_t x = 0; x < w; x++) sum += f[x] < 128 ? f[x] : 256u - f[x];
    return sum;
}

/* Filter row every way into cand (PNG_NFILTERS rows of w + 1 bytes) and
 * return the cheapest; ties go to the simpler filter. */
static const uint8_t *pick_filtered_row(uint8_t *cand, const uint8_t *row, const uint8_t *prev,
                                        size_t w, size_t bpp)
{
    const uint8_t *best = cand;
    uint64_t best_cost = UINT64_MAX;
    for (uint8_t t = 0; t < PNG_NFILTERS; t++) {
        uint8_t *dst = cand + (size_t)t * (w + 1);
        filter_row(t, row, prev, w, bpp, dst);
        uint64_t cost = row_cost(dst + 1, w);
        if (cost < best_cost) {
            best = dst;
            best_cost = cost;
        }
    }
    return best;
}

/* Emit what deflate has put in stage as one IDAT chunk and empty stage. */
static cd_status flush_idat(z_stream *zs, png_buf *b, uint8_t *stage)
{
    size_t n = PNG_IDAT_BYTES - zs->avail_out;
    if (n > 0) CD__TRY(buf_chunk(b, "IDAT", stage, (uint32_t)n));
    zs->next_out = stage;
    zs->avail_out = (uInt)PNG_IDAT_BYTES;
    return CD_OK;
}

/* Feed n bytes to deflate (flush = Z_FINISH ends the stream), turning each
 * full stage into an IDAT chunk. stage always has room when deflate runs,
 * so deflate can always progress and Z_BUF_ERROR is harmless. */
static cd_status deflate_bytes(z_stream *zs, png_buf *b, uint8_t *stage, const uint8_t *in,
                               size_t n, int flush)
{
    zs->next_in = in;
    zs->avail_in = (uInt)n;
    for (;;) {
        if (zs->avail_out == 0) CD__TRY(flush_idat(zs, b, stage));
        int rc = deflate(zs, flush);
        if (rc == Z_STREAM_END) return CD_OK;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return cd__error(CD_ERR_INTERNAL, "cd__png_encode: deflate failed (%d)", rc);
        if (flush != Z_FINISH && zs->avail_in == 0) return CD_OK;
    }
}

/* Filter, compress and chunk all rows of w bytes (bpp per pixel). One work
 * block holds the candidate rows, a zero row standing in above the first
 * row, and the IDAT stage. */
static cd_status write_idat(png_buf *b, const uint8_t *px, size_t w, size_t h, size_t bpp)
{
    size_t row_bytes = w + 1;
    uint8_t *work = cd__calloc(PNG_NFILTERS * row_bytes + w + PNG_IDAT_BYTES, 1, "PNG row buffers");
    if (!work) return cd_last_status();
    uint8_t *zero_row = work + PNG_NFILTERS * row_bytes;
    uint8_t *stage = zero_row + w;

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = cd__zalloc;
    zs.zfree = cd__zfree;
    zs.opaque = (void *)"PNG compressor";
    int rc = deflateInit(&zs, PNG_ZLEVEL);
    if (rc != Z_OK) {
        cd__free(work);
        /* On Z_MEM_ERROR the allocator's message names what failed. */
        return rc == Z_MEM_ERROR ? CD_ERR_OUT_OF_MEMORY
                                 : cd__error(CD_ERR_INTERNAL,
                                             "cd__png_encode: "
                                             "deflateInit failed (%d)",
                                             rc);
    }
    zs.next_out = stage;
    zs.avail_out = (uInt)PNG_IDAT_BYTES;

    cd_status st = CD_OK;
    for (size_t y = 0; y < h && st == CD_OK; y++) {
        const uint8_t *row = px + y * w;
        const uint8_t *f = pick_filtered_row(work, row, y ? row - w : zero_row, w, bpp);
        st = deflate_bytes(&zs, b, stage, f, row_bytes, y + 1 == h ? Z_FINISH : Z_NO_FLUSH);
    }
    if (st == CD_OK) st = flush_idat(&zs, b, stage);
    deflateEnd(&zs);
    cd__free(work);
    return st;
}

static cd_status encode(png_buf *b, const uint8_t *px, size_t w, size_t h, int channels)
{
    uint8_t ihdr[13];
    put_u32be(ihdr, (uint32_t)w);
    put_u32be(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;                     /* bit depth */
    ihdr[9] = channels == 3 ? 2 : 0; /* colour type: RGB or greyscale */
    ihdr[10] = 0;                    /* compression: deflate */
    ihdr[11] = 0;                    /* filter method: adaptive, five types */
    ihdr[12] = 0;                    /* no interlace */
    CD__TRY(buf_reserve(b, sizeof png_signature));
    memcpy(b->data, png_signature, sizeof png_signature);
    b->len = sizeof png_signature;
    CD__TRY(buf_chunk(b, "IHDR", ihdr, sizeof ihdr));
    CD__TRY(write_idat(b, px, w * (size_t)channels, h, (size_t)channels));
    return buf_chunk(b, "IEND", NULL, 0);
}

cd_status cd__png_encode(const uint8_t *pixels, int64_t w, int64_t h, int channels, uint8_t **out,
                         size_t *out_len)
{
    static const char fn[] = "cd__png_encode";
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    CD__CHECK_NOT_NULL(out, fn);
    CD__CHECK_NOT_NULL(out_len, fn);
    if (channels != 1 && channels != 3)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: channels = %d; need 1 or 3", fn, channels);
    CD__TRY(check_image(fn, pixels, w, h, channels));
    png_buf b = {NULL, 0, 0};
    cd_status st = encode(&b, pixels, (size_t)w, (size_t)h, channels);
    if (st != CD_OK) {
        cd__free(b.data);
        return st;
    }
    *out = b.data;
    *out_len = b.len;
    return CD_OK;
}

cd_status cd__png_encode_gray(const uint8_t *pixels, int64_t w, int64_t h, uint8_t **out,
                              size_t *out_len)
{
    return cd__png_encode(pixels, w, h, 1, out, out_len);
}

cd_status cd__png_write(const char *fn, const char *path, const uint8_t *pixels, int64_t height,
                        int64_t width, int channels)
{
    CD__CHECK_NOT_NULL(path, fn);
    CD__CHECK_ARG(path[0] != '\0', fn, "argument 'path' is empty");
    /* Checked here too so messages name the function the caller called. */
    CD__TRY(check_image(fn, pixels, width, height, channels));
    uint8_t *png = NULL;
    size_t n = 0;
    CD__TRY(cd__png_encode(pixels, width, height, channels, &png, &n));
    cd_status st = cd__write_file_atomic(path, png, n);
    cd__free(png);
    return st;
}

cd_status cd_png_write_gray(const char *path, const uint8_t *pixels, int64_t height, int64_t width)
{
    return cd__png_write("cd_png_write_gray", path, pixels, height, width, 1);
}
