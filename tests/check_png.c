/*
 * check_png.c - the PNG encoder, pixel maps and image grids.
 *
 * Every PNG is checked with the independent decoder below: it verifies the
 * signature, each chunk's CRC, the chunk order and the IHDR fields, inflates
 * the concatenated IDAT data and undoes all five row filters, so a test
 * compares exact pixels rather than bytes of one particular encoding.
 */
#include "test_util.h"

#include "core.h"
#include "data/png.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

static const uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};

/* ---- helpers ------------------------------------------------------------ */

/* A fixed xorshift stream, so failures reproduce. */
static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint8_t *random_pixels(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rng_next(&seed) >> 24);
    return p;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
}

static void assert_file_text(const char *path, const char *text)
{
    size_t n = 0;
    uint8_t *got = cd_test_read_file(path, &n);
    ck_assert_msg(n == strlen(text) && memcmp(got, text, n) == 0,
                  "%s was changed by a failed write", path);
    free(got);
}

static cd_tensor *make_tensor(int64_t rank, const int64_t *shape, const float *data)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, rank, shape));
    if (data) CD_ASSERT_OK(cd_tensor_copy_from(t, data, cd_tensor_numel(t)));
    return t;
}

/* ---- the reference decoder ---------------------------------------------- */

typedef struct decoded_png {
    uint32_t w, h;
    uint32_t channels; /* 1 (colour type 0) or 3 (colour type 2) */
    uint8_t *pix;      /* w*h*channels bytes, interleaved, malloc'd */
    int n_idat;        /* IDAT chunks seen */
    int filters[5];    /* rows per filter type */
} decoded_png;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The Paeth predictor as written in the PNG spec, section 9.4. */
static int ref_paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    if (pb <= pc) return b;
    return c;
}

static void unfilter(const uint8_t *raw, decoded_png *d)
{
    size_t bpp = d->channels, w = (size_t)d->w * bpp;
    for (size_t y = 0; y < d->h; y++) {
        const uint8_t *f = raw + y * (w + 1);
        uint8_t *cur = d->pix + y * w;
        const uint8_t *up = y ? cur - w : NULL;
        ck_assert_msg(f[0] <= 4, "row %zu has filter type %d", y, f[0]);
        d->filters[f[0]]++;
        for (size_t x = 0; x < w; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0, b = up ? up[x] : 0,
                c = x >= bpp && up ? up[x - bpp] : 0;
            int pred = 0;
            switch (f[0]) {
            case 1: pred = a; break;
            case 2: pred = b; break;
            case 3: pred = (a + b) / 2; break;
            case 4: pred = ref_paeth(a, b, c); break;
            default: break;
            }
            cur[x] = (uint8_t)(f[1 + x] + pred);
        }
    }
}

static void parse_ihdr(const uint8_t *data, uint32_t n, decoded_png *d)
{
    ck_assert_uint_eq(n, 13);
    d->w = be32(data);
    d->h = be32(data + 4);
    ck_assert_uint_ge(d->w, 1);
    ck_assert_uint_ge(d->h, 1);
    ck_assert_uint_le(d->w, 0x7fffffffu);
    ck_assert_uint_le(d->h, 0x7fffffffu);
    ck_assert_uint_eq(data[8], 8);                                          /* bit depth */
    ck_assert_msg(data[9] == 0 || data[9] == 2, "colour type %d", data[9]); /* grey, RGB */
    d->channels = data[9] == 2 ? 3 : 1;
    ck_assert_uint_eq(data[10], 0); /* deflate */
    ck_assert_uint_eq(data[11], 0); /* adaptive filtering */
    ck_assert_uint_eq(data[12], 0); /* no interlace */
}

static void inflate_and_unfilter(const uint8_t *z, size_t zlen, decoded_png *d)
{
    uLongf want = (uLongf)d->h * ((uLongf)d->w * d->channels + 1);
    /* One spare byte: a stream that inflates to more than expected fails. */
    uLongf got = want + 1;
    uint8_t *raw = malloc(got);
    ck_assert_ptr_nonnull(raw);
    ck_assert_int_eq(uncompress(raw, &got, z, (uLong)zlen), Z_OK);
    ck_assert_uint_eq(got, want);
    d->pix = malloc((size_t)d->w * d->h * d->channels);
    ck_assert_ptr_nonnull(d->pix);
    unfilter(raw, d);
    free(raw);
}

/* Decode an 8-bit greyscale or RGB PNG; any deviation from the spec fails
 * the test. */
static void png_decode(const uint8_t *buf, size_t len, decoded_png *d)
{
    memset(d, 0, sizeof *d);
    ck_assert_uint_ge(len, 8);
    ck_assert_msg(memcmp(buf, png_sig, 8) == 0, "bad PNG signature");
    uint8_t *z = NULL;
    size_t zlen = 0, pos = 8;
    int saw_iend = 0, idat_closed = 0;
    while (pos < len) {
        ck_assert_msg(!saw_iend, "bytes after IEND");
        ck_assert_uint_ge(len - pos, 12);
        uint32_t n = be32(buf + pos);
        ck_assert_uint_le(n, 0x7fffffffu);
        ck_assert_uint_le(n, len - pos - 12);
        const uint8_t *type = buf + pos + 4, *data = buf + pos + 8;
        uLong crc = crc32(crc32(0L, Z_NULL, 0), type, n + 4);
        ck_assert_msg(crc == be32(data + n), "chunk %.4s at %zu: bad CRC", type, pos);
        if (memcmp(type, "IHDR", 4) == 0) {
            ck_assert_msg(pos == 8, "IHDR is not the first chunk");
            parse_ihdr(data, n, d);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            ck_assert_msg(pos > 8 && !idat_closed, "IDAT chunks out of place");
            z = realloc(z, zlen + n + 1);
            ck_assert_ptr_nonnull(z);
            memcpy(z + zlen, data, n);
            zlen += n;
            d->n_idat++;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ck_assert_uint_eq(n, 0);
            saw_iend = 1;
        } else {
            ck_assert_msg(type[0] & 0x20, "unknown critical chunk %.4s", type);
        }
        if (d->n_idat > 0 && memcmp(type, "IDAT", 4) != 0) idat_closed = 1;
        pos += 12 + (size_t)n;
    }
    ck_assert_msg(pos > 8 && saw_iend, "no IEND");
    ck_assert_msg(d->n_idat > 0, "no IDAT");
    inflate_and_unfilter(z, zlen, d);
    free(z);
}

static void decode_file(const char *path, decoded_png *d)
{
    size_t len = 0;
    uint8_t *buf = cd_test_read_file(path, &len);
    png_decode(buf, len, d);
    free(buf);
}

static void assert_pixels(const decoded_png *d, uint32_t w, uint32_t h, const uint8_t *want)
{
    ck_assert_uint_eq(d->channels, 1);
    ck_assert_uint_eq(d->w, w);
    ck_assert_uint_eq(d->h, h);
    for (size_t i = 0; i < (size_t)w * h; i++)
        ck_assert_msg(d->pix[i] == want[i], "pixel %zu (row %zu, column %zu): got %d, want %d", i,
                      i / w, i % w, d->pix[i], want[i]);
}

/* Write pixels with cd_png_write_gray, decode the file, compare exactly. */
static decoded_png roundtrip(const char *dir, const uint8_t *px, uint32_t w, uint32_t h)
{
    char path[512];
    cd_test_path(path, sizeof path, dir, "rt.png");
    CD_ASSERT_OK(cd_png_write_gray(path, px, h, w)); /* height first */
    decoded_png d;
    decode_file(path, &d);
    assert_pixels(&d, w, h, px);
    return d;
}

/* cd_png_write_gray takes the height first: 3 rows of 5 pixels make an IHDR
 * of width 5 and height 3 (bytes 16..23 of the file, big-endian), with row r
 * holding pixels[5r .. 5r + 4]; and the other way round. */
START_TEST(test_height_comes_first)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "hw.png");
    uint8_t px[15];
    for (int i = 0; i < 15; i++) px[i] = (uint8_t)(10 * i);
    for (int k = 0; k < 2; k++) {
        const uint32_t h = k ? 5 : 3, w = k ? 3 : 5;
        CD_ASSERT_OK(cd_png_write_gray(path, px, h, w));
        size_t len = 0;
        uint8_t *file = cd_test_read_file(path, &len);
        ck_assert_uint_ge(len, 33);
        ck_assert(memcmp(file + 12, "IHDR", 4) == 0);
        ck_assert_uint_eq(be32(file + 16), w);
        ck_assert_uint_eq(be32(file + 20), h);
        free(file);
        decoded_png d;
        decode_file(path, &d);
        assert_pixels(&d, w, h, px);
        ck_assert(d.pix[w] == px[w]); /* row 1 starts after one row of w */
        free(d.pix);
    }
    /* A zero height or width is refused in either place. */
    CD_ASSERT_STATUS(cd_png_write_gray(path, px, 0, 5), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_png_write_gray(path, px, 3, 0), CD_ERR_RANGE);
}
END_TEST

/* ---- encoder ------------------------------------------------------------ */

START_TEST(test_roundtrip_random_sizes)
{
    static const uint32_t sizes[][2] = {{1, 1}, {3, 5}, {5, 3}, {28, 28}, {300, 7}, {7, 300}};
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t w = sizes[k][0], h = sizes[k][1];
        uint8_t *px = random_pixels((size_t)w * h, 1234u + (uint32_t)k);
        decoded_png d = roundtrip(dir, px, w, h);
        free(d.pix);
        free(px);
    }
}
END_TEST

START_TEST(test_roundtrip_extremes)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    static const uint8_t fills[] = {0, 255, 128};
    uint8_t px[17 * 9];
    for (size_t k = 0; k < sizeof fills; k++) {
        memset(px, fills[k], sizeof px);
        decoded_png d = roundtrip(dir, px, 17, 9);
        free(d.pix);
    }
    /* A checkerboard of 0 and 255 makes every predictor wrap around. */
    for (size_t i = 0; i < sizeof px; i++) px[i] = ((i / 17 + i % 17) & 1) ? 255 : 0;
    decoded_png d = roundtrip(dir, px, 17, 9);
    free(d.pix);
}
END_TEST

/* Gentle gradients with noise, like a real picture: predictors tie often,
 * so a tie broken differently from the spec would show up here. */
START_TEST(test_roundtrip_smooth_noisy)
{
    enum { W = 64, H = 48 };
    uint8_t px[W * H];
    uint32_t seed = 99;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) px[y * W + x] = (uint8_t)(2 * x + y + (rng_next(&seed) >> 30));
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    decoded_png d = roundtrip(dir, px, W, H);
    ck_assert_int_gt(d.filters[4], 0);
    free(d.pix);
}
END_TEST

START_TEST(test_signature_and_ihdr_bytes)
{
    uint8_t px[3 * 5] = {0};
    uint8_t *png = NULL;
    size_t n = 0;
    CD_ASSERT_OK(cd__png_encode_gray(px, 3, 5, &png, &n));
    ck_assert_uint_ge(n, 8 + 25 + 12 + 12);
    ck_assert_mem_eq(png, png_sig, 8);
    static const uint8_t ihdr[] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0,
                                   3, 0, 0, 0,  5,   8,   0,   0,   0, 0};
    ck_assert_mem_eq(png + 8, ihdr, sizeof ihdr);
    static const uint8_t iend[] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    ck_assert_mem_eq(png + n - 12, iend, sizeof iend);
    cd__free(png);
}
END_TEST

/* Walk the chunks by hand: CRCs, order, and IDAT split into many chunks
 * for an image whose compressed data is larger than one chunk. */
START_TEST(test_chunk_crcs_and_multiple_idat)
{
    uint8_t *px = random_pixels(400 * 400, 77);
    uint8_t *png = NULL;
    size_t n = 0;
    CD_ASSERT_OK(cd__png_encode_gray(px, 400, 400, &png, &n));
    int chunks = 0;
    for (size_t pos = 8; pos < n; chunks++) {
        uint32_t len = be32(png + pos);
        uLong crc = crc32(crc32(0L, Z_NULL, 0), png + pos + 4, len + 4);
        ck_assert_uint_eq(crc, be32(png + pos + 8 + len));
        pos += 12 + (size_t)len;
        ck_assert_uint_le(pos, n);
    }
    ck_assert_int_ge(chunks, 4); /* IHDR, 2+ IDAT, IEND */

    decoded_png d;
    png_decode(png, n, &d);
    ck_assert_int_ge(d.n_idat, 2);
    assert_pixels(&d, 400, 400, px);

    /* A flipped bit in the image data must be caught by the CRC check. */
    ck_assert_uint_eq(be32(png + 33 + 4), be32((const uint8_t *)"IDAT"));
    png[33 + 8] ^= 1;
    uLong crc = crc32(crc32(0L, Z_NULL, 0), png + 33 + 4, be32(png + 33) + 4);
    ck_assert_uint_ne(crc, be32(png + 33 + 8 + be32(png + 33)));
    free(d.pix);
    cd__free(png);
    free(px);
}
END_TEST

/* Images whose rows favour each filter type: together they must use all
 * five, so the decoder's every unfilter path is checked against the encoder.
 * Values stay within 0..255 without wrapping so the predictors are exact. */
START_TEST(test_all_filter_types_roundtrip)
{
    enum { W = 20, H = 6 };
    uint8_t img[5][H * W];
    static const int f_steps[2] = {1, 20};
    int f = 0;
    for (int x = 0; x < W; x++) {
        for (int y = 0; y < H; y++) {
            img[0][y * W + x] = (uint8_t)((x & 1) ? 3 : 0);     /* None */
            img[1][y * W + x] = (uint8_t)(3 * x + 7 * y);       /* Sub */
            img[2][y * W + x] = (uint8_t)((x * x * 7) % 251);   /* Up */
            img[3][y * W + x] = (uint8_t)(128 + 5 * x - 5 * y); /* Average */
            img[4][y * W + x] = (uint8_t)(f + 10 * y);          /* Paeth */
        }
        f += f_steps[x & 1];
    }
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    int used[5] = {0};
    for (int k = 0; k < 5; k++) {
        decoded_png d = roundtrip(dir, img[k], W, H);
        for (int t = 0; t < 5; t++) used[t] += d.filters[t];
        free(d.pix);
    }
    for (int t = 0; t < 5; t++) ck_assert_msg(used[t] > 0, "filter type %d never used", t);
}
END_TEST

START_TEST(test_file_matches_encoder_and_overwrites)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "img.png");
    write_text(path, "an older file");
    uint8_t *px = random_pixels(28 * 28, 5);
    CD_ASSERT_OK(cd_png_write_gray(path, px, 28, 28));
    uint8_t *png = NULL;
    size_t n = 0, flen = 0;
    CD_ASSERT_OK(cd__png_encode_gray(px, 28, 28, &png, &n));
    uint8_t *file = cd_test_read_file(path, &flen);
    ck_assert_uint_eq(flen, n);
    ck_assert_mem_eq(file, png, n);
    ck_assert_int_eq(cd_test_count_entries(dir), 1); /* no temporary file left */
    free(file);
    cd__free(png);
    free(px);
}
END_TEST

START_TEST(test_png_argument_errors)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "x.png");
    uint8_t px[4] = {0};

    CD_ASSERT_STATUS(cd_png_write_gray(NULL, px, 2, 2), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("path");
    CD_ASSERT_STATUS(cd_png_write_gray("", px, 2, 2), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("path");
    CD_ASSERT_STATUS(cd_png_write_gray(path, NULL, 2, 2), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("pixels");

    static const int64_t bad[] = {0, -1, INT64_MIN, INT64_C(2147483648), INT64_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        /* (path, pixels, height, width) */
        CD_ASSERT_STATUS(cd_png_write_gray(path, px, 2, bad[k]), CD_ERR_RANGE);
        CD_ASSERT_ERROR_MENTIONS("width");
        CD_ASSERT_ERROR_MENTIONS("cd_png_write_gray");
        CD_ASSERT_STATUS(cd_png_write_gray(path, px, bad[k], 2), CD_ERR_RANGE);
        CD_ASSERT_ERROR_MENTIONS("height");
    }
    ck_assert_int_eq(cd_test_count_entries(dir), 0);

    uint8_t *png = (uint8_t *)px;
    size_t n = 99;
    CD_ASSERT_STATUS(cd__png_encode_gray(px, 2, 2, NULL, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__png_encode_gray(px, 2, 2, &png, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(png);
    png = (uint8_t *)px;
    CD_ASSERT_STATUS(cd__png_encode_gray(NULL, 2, 2, &png, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("pixels");
    ck_assert_ptr_null(png);
    ck_assert_uint_eq(n, 0);
    CD_ASSERT_STATUS(cd__png_encode_gray(px, 0, 2, &png, &n), CD_ERR_RANGE);
    ck_assert_ptr_null(png);
}
END_TEST

/* ---- write failures ------------------------------------------------------ */

START_TEST(test_write_into_missing_folder)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "no/such/folder/x.png");
    uint8_t px[4] = {1, 2, 3, 4};
    /* A missing output folder is CD_ERR_NOT_FOUND library-wide (errors.md). */
    CD_ASSERT_STATUS(cd_png_write_gray(path, px, 2, 2), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS(path);
    CD_ASSERT_ERROR_MENTIONS("its folder does not exist");
    ck_assert_ptr_null(strstr(cd_last_error(), ".tmp."));
    ck_assert_int_eq(cd_test_count_entries(dir), 0);
}
END_TEST

START_TEST(test_write_over_directory_fails_cleanly)
{
    char dir[256], path[512], inner[600];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "taken.png");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    cd_test_path(inner, sizeof inner, path, "keep.txt");
    write_text(inner, "keep me");
    uint8_t px[4] = {1, 2, 3, 4};
    CD_ASSERT_STATUS(cd_png_write_gray(path, px, 2, 2), CD_ERR_IO);
    CD_ASSERT_ERROR_MENTIONS(path);
    assert_file_text(inner, "keep me");
    ck_assert_int_eq(cd_test_count_entries(dir), 1); /* the temporary file is gone */
}
END_TEST

/* A real mid-write failure: a file-size limit makes write() fail with EFBIG
 * (even for root), and the file at path must keep its old content. */
START_TEST(test_failed_write_keeps_old_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "old.png");
    write_text(path, "old content");
    uint8_t *px = random_pixels(300 * 300, 9);
    int64_t shape[3] = {1, 300, 300};
    float *fpx = malloc(300 * 300 * sizeof *fpx);
    ck_assert_ptr_nonnull(fpx);
    for (size_t i = 0; i < 300 * 300; i++) fpx[i] = px[i];
    cd_tensor *t = make_tensor(3, shape, fpx);

    struct rlimit old_lim, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old_lim;
    lim.rlim_cur = 1024;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cd_status st1 = cd_png_write_gray(path, px, 300, 300);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", cd_last_error());
    cd_status st2 = cd_image_grid_write_png(path, t, 1, 0, 0, CD_PIXELS_RANGE, 0.0f, 255.0f);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, old_handler);

    ck_assert_msg(st1 == CD_ERR_IO, "got %s (%s)", cd_status_string(st1), msg1);
    ck_assert_msg(strstr(msg1, path) != NULL, "'%s' does not name the path", msg1);
    ck_assert_msg(strstr(msg1, strerror(EFBIG)) != NULL, "'%s' lacks strerror", msg1);
    ck_assert_msg(st2 == CD_ERR_IO, "grid: got %s (%s)", cd_status_string(st2), cd_last_error());
    CD_ASSERT_ERROR_MENTIONS(path);
    assert_file_text(path, "old content");
    ck_assert_int_eq(cd_test_count_entries(dir), 1);
    cd_tensor_free(t);
    free(fpx);
    free(px);
}
END_TEST

/* ---- pixel maps ------------------------------------------------------------ */

START_TEST(test_range_map_endpoints_and_clipping)
{
    /* Rounding is half up: 0 in [-0.5, 0.5] is 127.5, which becomes 128. */
    static const float in[] = {-0.5f, 0.5f, 0.0f, -1.0f, 2.0f, 0.25f, -0.25f, 1e30f, -1e30f};
    static const uint8_t want[] = {0, 255, 128, 0, 255, 191, 64, 255, 0};
    uint8_t out[9];
    CD_ASSERT_OK(cd__map_image_u8(in, 9, CD_PIXELS_RANGE, -0.5f, 0.5f, out, NULL));
    ck_assert_mem_eq(out, want, sizeof want);

    /* hi - lo overflows float; the map must still be exact in double. */
    static const float wide[] = {-3e38f, 0.0f, 3e38f};
    static const uint8_t want_wide[] = {0, 128, 255};
    CD_ASSERT_OK(cd__map_image_u8(wide, 3, CD_PIXELS_RANGE, -3e38f, 3e38f, out, NULL));
    ck_assert_mem_eq(out, want_wide, sizeof want_wide);

    /* lo = 0, hi = 255 is the identity on whole numbers. */
    float ramp[256];
    uint8_t bytes[256];
    for (int i = 0; i < 256; i++) ramp[i] = (float)i;
    CD_ASSERT_OK(cd__map_image_u8(ramp, 256, CD_PIXELS_RANGE, 0.0f, 255.0f, bytes, NULL));
    for (int i = 0; i < 256; i++) ck_assert_int_eq(bytes[i], i);
}
END_TEST

/* Values 0..99 in scrambled order. numpy.percentile(range(100), [1, 99]) is
 * [0.99, 98.01]; a pixel v maps to round((clip(v) - 0.99) / 97.02 * 255). */
START_TEST(test_percentile_map_matches_numpy)
{
    float img[100], scratch[100];
    uint8_t out[100];
    for (int i = 0; i < 100; i++) img[i] = (float)((i * 37) % 100);
    CD_ASSERT_OK(cd__map_image_u8(img, 100, CD_PIXELS_PERCENTILE, NAN, NAN, out, scratch));
    static const int vals[] = {0, 1, 2, 3, 10, 25, 50, 51, 75, 97, 98, 99};
    static const int want[] = {0, 0, 3, 5, 24, 63, 129, 131, 195, 252, 255, 255};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        int i = 0;
        while ((i * 37) % 100 != vals[k]) i++;
        ck_assert_msg(out[i] == want[k], "value %d: got %d, want %d", vals[k], out[i], want[k]);
    }
    /* The input is not modified by the sort. */
    for (int i = 0; i < 100; i++) ck_assert_float_eq(img[i], (float)((i * 37) % 100));

    /* n = 3: p1 = 0 + 0.02*10 = 0.2, p99 = 30 - 0.02*20 = 29.6 (numpy lerps
     * from the nearer end), so 10 maps to 9.8 / 29.4 * 255 = 85. */
    float three[3] = {30.0f, 0.0f, 10.0f};
    CD_ASSERT_OK(cd__map_image_u8(three, 3, CD_PIXELS_PERCENTILE, 0, 0, out, scratch));
    ck_assert_int_eq(out[0], 255);
    ck_assert_int_eq(out[1], 0);
    ck_assert_int_eq(out[2], 85);

    /* One outlier: p99 = 0 + 0.01*1000 = 10, so it is clipped to 10 -> 255. */
    for (int i = 0; i < 100; i++) img[i] = i == 42 ? 1000.0f : 0.0f;
    CD_ASSERT_OK(cd__map_image_u8(img, 100, CD_PIXELS_PERCENTILE, 0, 0, out, scratch));
    for (int i = 0; i < 100; i++) ck_assert_int_eq(out[i], i == 42 ? 255 : 0);
}
END_TEST

START_TEST(test_percentile_constant_image_is_zero)
{
    float img[16], scratch[16];
    uint8_t out[16];
    for (int i = 0; i < 16; i++) img[i] = 0.375f;
    memset(out, 7, sizeof out);
    CD_ASSERT_OK(cd__map_image_u8(img, 16, CD_PIXELS_PERCENTILE, 0, 0, out, scratch));
    for (int i = 0; i < 16; i++) ck_assert_int_eq(out[i], 0);
    out[0] = 7;
    CD_ASSERT_OK(cd__map_image_u8(img, 1, CD_PIXELS_PERCENTILE, 0, 0, out, scratch));
    ck_assert_int_eq(out[0], 0);
}
END_TEST

START_TEST(test_map_argument_errors)
{
    float img[4] = {0, 1, NAN, 3}, scratch[4];
    uint8_t out[4];
    CD_ASSERT_STATUS(cd__map_image_u8(NULL, 4, CD_PIXELS_RANGE, 0, 1, out, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__map_image_u8(img, 4, CD_PIXELS_RANGE, 0, 1, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__map_image_u8(img, 0, CD_PIXELS_RANGE, 0, 1, out, NULL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__map_image_u8(img, 2, CD_PIXELS_PERCENTILE, 0, 1, out, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("scratch");
    CD_ASSERT_STATUS(cd__map_image_u8(img, 2, (cd_pixel_map)9, 0, 1, out, scratch),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__map_image_u8(img, 2, CD_PIXELS_RANGE, 1, 1, out, NULL), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd__map_image_u8(img, 4, CD_PIXELS_RANGE, 0, 1, out, NULL), CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("pixel 2");
    CD_ASSERT_STATUS(cd__map_image_u8(img, 4, CD_PIXELS_PERCENTILE, 0, 1, out, scratch),
                     CD_ERR_NOT_FINITE);
}
END_TEST

/* ---- grids ----------------------------------------------------------------- */

static void grid_to_file(const char *dir, const cd_tensor *t, int64_t cols, int64_t border,
                         int32_t bv, cd_pixel_map map, float lo, float hi, decoded_png *d)
{
    char path[512];
    cd_test_path(path, sizeof path, dir, "grid.png");
    CD_ASSERT_OK(cd_image_grid_write_png(path, t, cols, border, bv, map, lo, hi));
    decode_file(path, d);
}

/* 3 images of 2x2 in 2 columns with a 1-pixel border of 128: 7x7, and the
 * empty fourth cell is border colour. lo = 0, hi = 255 keeps values as is. */
START_TEST(test_grid_layout_exact)
{
    static const float v[12] = {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23};
    static const uint8_t want[49] = {
        128, 128, 128, 128, 128, 128, 128, 128, 0,   1,   128, 10,  11,  128, 128, 2,   3,
        128, 12,  13,  128, 128, 128, 128, 128, 128, 128, 128, 128, 20,  21,  128, 128, 128,
        128, 128, 22,  23,  128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    };
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    int64_t shape[4] = {3, 1, 2, 2};
    cd_tensor *t = make_tensor(4, shape, v);
    decoded_png d;
    grid_to_file(dir, t, 2, 1, 128, CD_PIXELS_RANGE, 0.0f, 255.0f, &d);
    assert_pixels(&d, 7, 7, want);
    free(d.pix);

    /* The same data as N x H x W without a border: 4x4, empty cell = 9. */
    static const uint8_t want0[16] = {0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 9, 9, 22, 23, 9, 9};
    int64_t shape3[3] = {3, 2, 2};
    CD_ASSERT_OK(cd_tensor_reshape(t, 3, shape3));
    grid_to_file(dir, t, 2, 0, 9, CD_PIXELS_RANGE, 0.0f, 255.0f, &d);
    assert_pixels(&d, 4, 4, want0);
    free(d.pix);
    cd_tensor_free(t);
}
END_TEST

/* columns > N uses N columns, so no empty cells are added. */
START_TEST(test_grid_columns_clamped_to_n)
{
    static const float v[2] = {5, 6};
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    int64_t shape[3] = {2, 1, 1};
    cd_tensor *t = make_tensor(3, shape, v);
    decoded_png d;
    static const uint8_t row[2] = {5, 6};
    grid_to_file(dir, t, 5, 0, 0, CD_PIXELS_RANGE, 0.0f, 255.0f, &d);
    assert_pixels(&d, 2, 1, row);
    free(d.pix);
    grid_to_file(dir, t, 1, 0, 0, CD_PIXELS_RANGE, 0.0f, 255.0f, &d);
    assert_pixels(&d, 1, 2, row);
    free(d.pix);
    static const uint8_t bordered[15] = {255, 255, 255, 255, 255, 255, 5,  255,
                                         6,   255, 255, 255, 255, 255, 255};
    grid_to_file(dir, t, 3, 1, 255, CD_PIXELS_RANGE, 0.0f, 255.0f, &d);
    assert_pixels(&d, 5, 3, bordered);
    free(d.pix);
    cd_tensor_free(t);
}
END_TEST

/* Each image is normalised on its own: a scaled, shifted copy of an image
 * gives the same bytes, matching cd__map_image_u8. */
START_TEST(test_grid_percentile_per_image)
{
    float v[200];
    for (int i = 0; i < 100; i++) {
        v[i] = (float)((i * 37) % 100);
        v[100 + i] = 1000.0f * v[i] - 7.0f;
    }
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    int64_t shape[4] = {2, 1, 10, 10};
    cd_tensor *t = make_tensor(4, shape, v);
    uint8_t tile[100], want[2 * 10 * 10];
    float scratch[100];
    CD_ASSERT_OK(cd__map_image_u8(v, 100, CD_PIXELS_PERCENTILE, 0, 0, tile, scratch));
    for (int y = 0; y < 10; y++) {
        memcpy(want + y * 20, tile + y * 10, 10);
        memcpy(want + y * 20 + 10, tile + y * 10, 10);
    }
    decoded_png d;
    grid_to_file(dir, t, 2, 0, 0, CD_PIXELS_PERCENTILE, NAN, INFINITY, &d);
    assert_pixels(&d, 20, 10, want);
    free(d.pix);
    cd_tensor_free(t);
}
END_TEST

static void assert_rgb_pixels(const decoded_png *d, uint32_t w, uint32_t h, const uint8_t *want)
{
    ck_assert_uint_eq(d->channels, 3);
    ck_assert_uint_eq(d->w, w);
    ck_assert_uint_eq(d->h, h);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        ck_assert_msg(d->pix[i] == want[i], "row %zu, column %zu, channel %zu: got %d, want %d",
                      i / 3 / w, i / 3 % w, i % 3, d->pix[i], want[i]);
}

/* Random RGB bytes of many sizes survive the encoder, whose filters must
 * predict each channel from the same channel of the pixel to the left. */
START_TEST(test_rgb_encoder_roundtrip)
{
    static const int64_t sizes[][2] = {{1, 1}, {1, 7}, {5, 1}, {3, 4}, {17, 9}, {64, 33}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t w = sizes[k][0], h = sizes[k][1];
        uint8_t *px = random_pixels((size_t)(w * h * 3), (uint32_t)(11 + k));
        /* Smooth rows too, where the filters other than None win. */
        if (k % 2)
            for (int64_t i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i / 3 + (i % 3) * 40);
        uint8_t *png = NULL;
        size_t n = 0;
        CD_ASSERT_OK(cd__png_encode(px, w, h, 3, &png, &n));
        ck_assert_uint_eq(png[25], 2); /* IHDR colour type */
        decoded_png d;
        png_decode(png, n, &d);
        assert_rgb_pixels(&d, (uint32_t)w, (uint32_t)h, px);
        free(d.pix);
        cd__free(png);
        free(px);
    }
    uint8_t px[12] = {0};
    uint8_t *png = NULL;
    size_t n = 0;
    CD_ASSERT_STATUS(cd__png_encode(px, 2, 2, 2, &png, &n), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("channels");
    ck_assert_ptr_null(png);
}
END_TEST

/* Two 3 x 2 x 3 images (C x H x W) side by side with a 1-pixel border of
 * 50: a 9 x 4 RGB PNG whose IHDR says colour type 2, the border 50 in all
 * three channels, and each tensor channel in its PNG channel. */
START_TEST(test_grid_rgb_layout)
{
    enum { N = 2, C = 3, H = 2, W = 3, GW = 2 * W + 3, GH = H + 2 };
    float v[N * C * H * W];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < C; k++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    v[((i * C + k) * H + y) * W + x] = (float)(i * 100 + k * 30 + y * 3 + x);
    uint8_t want[GH * GW * 3];
    memset(want, 50, sizeof want);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < C; k++)
                    want[((1 + y) * GW + 1 + i * (W + 1) + x) * 3 + k] =
                        (uint8_t)(i * 100 + k * 30 + y * 3 + x);
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    int64_t shape[4] = {N, C, H, W};
    cd_tensor *t = make_tensor(4, shape, v);
    cd_test_path(path, sizeof path, dir, "grid.png");
    CD_ASSERT_OK(cd_image_grid_write_png(path, t, 2, 1, 50, CD_PIXELS_RANGE, 0.0f, 255.0f));
    size_t len = 0;
    uint8_t *buf = cd_test_read_file(path, &len);
    ck_assert_uint_ge(len, 33);
    ck_assert_int_eq(memcmp(buf + 12, "IHDR", 4), 0);
    ck_assert_uint_eq(be32(buf + 16), GW);
    ck_assert_uint_eq(be32(buf + 20), GH);
    ck_assert_uint_eq(buf[24], 8); /* bit depth */
    ck_assert_uint_eq(buf[25], 2); /* colour type: RGB */
    decoded_png d;
    png_decode(buf, len, &d);
    assert_rgb_pixels(&d, GW, GH, want);
    free(d.pix);
    free(buf);
    cd_tensor_free(t);
}
END_TEST

/* The percentile map scales an RGB image's three channels together, so a
 * dim channel stays dim; the bytes match cd__map_image_u8 over all of it. */
START_TEST(test_grid_rgb_percentile_per_image)
{
    enum { C = 3, H = 4, W = 5, HW = H * W };
    float v[C * HW];
    for (int i = 0; i < C * HW; i++) v[i] = (float)((i * 37) % 61) * (i < HW ? 0.1f : 1.0f);
    uint8_t tile[C * HW], want[HW * C];
    float scratch[C * HW];
    CD_ASSERT_OK(cd__map_image_u8(v, C * HW, CD_PIXELS_PERCENTILE, 0, 0, tile, scratch));
    for (int p = 0; p < HW; p++)
        for (int k = 0; k < C; k++) want[p * C + k] = tile[k * HW + p];
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    int64_t shape[4] = {1, C, H, W};
    cd_tensor *t = make_tensor(4, shape, v);
    decoded_png d;
    grid_to_file(dir, t, 1, 0, 0, CD_PIXELS_PERCENTILE, NAN, INFINITY, &d);
    assert_rgb_pixels(&d, W, H, want);
    int red_max = 0;
    for (int p = 0; p < HW; p++) red_max = d.pix[p * 3] > red_max ? d.pix[p * 3] : red_max;
    ck_assert_int_lt(red_max, 64);
    free(d.pix);
    cd_tensor_free(t);
}
END_TEST

START_TEST(test_grid_argument_errors)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "g.png");
    int64_t s4[4] = {2, 1, 2, 2}, s4c[4] = {2, 2, 2, 2}, s4a[4] = {2, 4, 2, 2}, s2[2] = {2, 2},
            s5[5] = {1, 1, 1, 2, 2};
    cd_tensor *t = make_tensor(4, s4, NULL);
    cd_tensor *two = make_tensor(4, s4c, NULL);
    cd_tensor *rgba = make_tensor(4, s4a, NULL);
    cd_tensor *flat = make_tensor(2, s2, NULL);
    cd_tensor *r5 = make_tensor(5, s5, NULL);
    const cd_pixel_map R = CD_PIXELS_RANGE;

    CD_ASSERT_STATUS(cd_image_grid_write_png(NULL, t, 2, 1, 0, R, 0, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("path");
    CD_ASSERT_STATUS(cd_image_grid_write_png("", t, 2, 1, 0, R, 0, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, NULL, 2, 1, 0, R, 0, 1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("images");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, flat, 2, 1, 0, R, 0, 1), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("rank 2");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, r5, 2, 1, 0, R, 0, 1), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("rank 5");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, two, 2, 1, 0, R, 0, 1), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("2 channels");
    CD_ASSERT_ERROR_MENTIONS("1 (greyscale) or 3 (RGB)");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, rgba, 2, 1, 0, R, 0, 1), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("4 channels");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 0, 1, 0, R, 0, 1), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("columns");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, -4, 1, 0, R, 0, 1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, -1, 0, R, 0, 1), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("border");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, -1, R, 0, 1), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("border_value");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 256, R, 0, 1), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("border_value");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, R, 1, 1), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("lo");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, R, 2, 1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, R, NAN, 1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, R, 0, INFINITY), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, (cd_pixel_map)7, 0, 1),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("map");
    /* Too wide for PNG, and too wide for int64. */
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, INT64_C(1) << 31, 0, R, 0, 1),
                     CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("width");
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, INT64_MAX / 2, 0, R, 0, 1),
                     CD_ERR_OVERFLOW);
    ck_assert_int_eq(cd_test_count_entries(dir), 0);

    cd_tensor_free(r5);
    cd_tensor_free(flat);
    cd_tensor_free(rgba);
    cd_tensor_free(two);
    cd_tensor_free(t);
}
END_TEST

START_TEST(test_grid_non_finite_pixels)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "g.png");
    write_text(path, "previous grid");
    int64_t shape[4] = {3, 1, 2, 2};
    cd_tensor *t = make_tensor(4, shape, NULL);
    float *data = cd_tensor_data(t);
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < 3; k++) {
        CD_ASSERT_OK(cd_tensor_fill(t, 0.25f));
        data[4 + 3] = bad[k]; /* image 1, pixel 3 (row 1, column 1) */
        CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, CD_PIXELS_RANGE, 0, 1),
                         CD_ERR_NOT_FINITE);
        CD_ASSERT_ERROR_MENTIONS("image 1");
        CD_ASSERT_ERROR_MENTIONS("pixel 3");
        CD_ASSERT_STATUS(cd_image_grid_write_png(path, t, 2, 1, 0, CD_PIXELS_PERCENTILE, 0, 0),
                         CD_ERR_NOT_FINITE);
        CD_ASSERT_ERROR_MENTIONS("image 1");
    }
    /* Colour: image 1, channel 2, pixel 1 (row 0, column 1). */
    int64_t rgb_shape[4] = {2, 3, 2, 2};
    cd_tensor *rgb = make_tensor(4, rgb_shape, NULL);
    CD_ASSERT_OK(cd_tensor_fill(rgb, 0.25f));
    cd_tensor_data(rgb)[(1 * 3 + 2) * 4 + 1] = NAN;
    CD_ASSERT_STATUS(cd_image_grid_write_png(path, rgb, 2, 1, 0, CD_PIXELS_RANGE, 0, 1),
                     CD_ERR_NOT_FINITE);
    CD_ASSERT_ERROR_MENTIONS("image 1, channel 2, pixel 1");
    cd_tensor_free(rgb);
    assert_file_text(path, "previous grid");
    ck_assert_int_eq(cd_test_count_entries(dir), 1);
    cd_tensor_free(t);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("png");
    TCase *enc = tcase_create("encoder");
    tcase_add_test(enc, test_roundtrip_random_sizes);
    tcase_add_test(enc, test_height_comes_first);
    tcase_add_test(enc, test_roundtrip_extremes);
    tcase_add_test(enc, test_roundtrip_smooth_noisy);
    tcase_add_test(enc, test_signature_and_ihdr_bytes);
    tcase_add_test(enc, test_chunk_crcs_and_multiple_idat);
    tcase_add_test(enc, test_all_filter_types_roundtrip);
    tcase_add_test(enc, test_file_matches_encoder_and_overwrites);
    tcase_add_test(enc, test_png_argument_errors);
    tcase_add_test(enc, test_rgb_encoder_roundtrip);
    suite_add_tcase(s, enc);

    TCase *io = tcase_create("write_failures");
    tcase_add_test(io, test_write_into_missing_folder);
    tcase_add_test(io, test_write_over_directory_fails_cleanly);
    tcase_add_test(io, test_failed_write_keeps_old_file);
    suite_add_tcase(s, io);

    TCase *map = tcase_create("pixel_maps");
    tcase_add_test(map, test_range_map_endpoints_and_clipping);
    tcase_add_test(map, test_percentile_map_matches_numpy);
    tcase_add_test(map, test_percentile_constant_image_is_zero);
    tcase_add_test(map, test_map_argument_errors);
    suite_add_tcase(s, map);

    TCase *grid = tcase_create("grid");
    tcase_add_test(grid, test_grid_layout_exact);
    tcase_add_test(grid, test_grid_columns_clamped_to_n);
    tcase_add_test(grid, test_grid_percentile_per_image);
    tcase_add_test(grid, test_grid_rgb_layout);
    tcase_add_test(grid, test_grid_rgb_percentile_per_image);
    tcase_add_test(grid, test_grid_argument_errors);
    tcase_add_test(grid, test_grid_non_finite_pixels);
    suite_add_tcase(s, grid);
    return s;
}

CD_TEST_MAIN(make_suite)
