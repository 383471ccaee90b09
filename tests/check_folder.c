/* check_folder.c - datasets from PNG folders and IDX files of other sizes:
 * layouts, labels, class names, pixel values, channels, crops and every
 * error the loader names. Every input is written here. */
#define _POSIX_C_SOURCE 200809L

#include "test_util.h"

#include <png.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/core.h"

/* ---- fixtures ------------------------------------------------------------ */

static const char *sub(char *buf, size_t cap, const char *dir, const char *name)
{
    cd_test_path(buf, cap, dir, name);
    ck_assert_int_eq(mkdir(buf, 0700), 0);
    return buf;
}

/* A grey h x w image whose pixel (y, x) is seed + 10 y + x (mod 256). */
static void write_gray(const char *dir, const char *name, int64_t h, int64_t w, int seed)
{
    char path[512];
    uint8_t *px = malloc((size_t)(h * w));
    ck_assert_ptr_nonnull(px);
    for (int64_t i = 0; i < h * w; i++) px[i] = (uint8_t)(seed + 10 * (i / w) + i % w);
    CD_ASSERT_OK(cd_png_write_gray(cd_test_path(path, sizeof path, dir, name), px, h, w));
    free(px);
}

typedef struct png_spec {
    int color_type, depth, h, w;
    const png_color *palette;
    int n_palette;
} png_spec;

/* Any PNG through libpng: rows of packed samples, big-endian when 16-bit. */
static void write_png(const char *dir, const char *name, const png_spec *s, const uint8_t *data)
{
    char path[512];
    FILE *fp = fopen(cd_test_path(path, sizeof path, dir, name), "wb");
    ck_assert_ptr_nonnull(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng could not write %s", path);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color_type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) png_set_PLTE(png, info, s->palette, s->n_palette);
    png_write_info(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    for (int y = 0; y < s->h; y++) png_write_row(png, data + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    ck_assert_int_eq(fclose(fp), 0);
}

static float value(int p) { return (float)((float)p / 255.0f) - 0.5f; }

/* All n images of the train split, in natural order, with their labels. */
static cd_tensor *gather_all(const cd_dataset *ds, cd_tensor **labels)
{
    const int64_t n = cd_dataset_count(ds, CD_SPLIT_TRAIN);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    ck_assert_ptr_nonnull(idx);
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    cd_tensor *images =
        cd_test_tensor4(n, cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds));
    const int64_t shape[1] = {n};
    CD_ASSERT_OK(cd_tensor_create(labels, 1, shape));
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TRAIN, idx, n, images, *labels));
    free(idx);
    return images;
}

static void expect_fail(const char *dir, int64_t channels, int64_t crop, cd_status want,
                        const char *mention1, const char *mention2)
{
    cd_dataset *ds = (cd_dataset *)&ds; /* any non-NULL value: must come back NULL */
    CD_ASSERT_STATUS(cd_dataset_load_folder(&ds, dir, channels, crop), want);
    ck_assert_ptr_null(ds);
    if (mention1) CD_ASSERT_ERROR_MENTIONS(mention1);
    if (mention2) CD_ASSERT_ERROR_MENTIONS(mention2);
}

/* ---- loading ------------------------------------------------------------- */

START_TEST(test_class_folders)
{
    char dir[256], a[512], b[512], big[512], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    /* Byte order: "B" < "a" < "b"; "10.png" < "2.png". */
    sub(b, sizeof b, dir, "b");
    sub(a, sizeof a, dir, "a");
    sub(big, sizeof big, dir, "B");
    write_gray(b, "1.png", 3, 4, 100);
    write_gray(a, "2.png", 3, 4, 20);
    write_gray(a, "10.png", 3, 4, 10);
    write_gray(big, "x.PNG", 3, 4, 200);
    /* Skipped: other extensions, hidden names, folders below a class. */
    cd_test_write_file(cd_test_path(path, sizeof path, a, "notes.txt"), "hi", 2);
    write_gray(a, ".hidden.png", 5, 5, 0);
    write_gray(sub(path, sizeof path, a, "deeper"), "y.png", 5, 5, 0);
    sub(path, sizeof path, dir, ".cache");

    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 0));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 4);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 0);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TEST), 0);
    ck_assert_int_eq(cd_dataset_channels(ds), 1);
    ck_assert_int_eq(cd_dataset_height(ds), 3);
    ck_assert_int_eq(cd_dataset_width(ds), 4);
    ck_assert_int_eq(cd_dataset_class_count(ds), 3);
    ck_assert_str_eq(cd_dataset_class_name(ds, 0), "B");
    ck_assert_str_eq(cd_dataset_class_name(ds, 1), "a");
    ck_assert_str_eq(cd_dataset_class_name(ds, 2), "b");
    ck_assert_ptr_null(cd_dataset_class_name(ds, 3));
    CD_ASSERT_ERROR_MENTIONS("k = 3");
    ck_assert_ptr_null(cd_dataset_class_name(ds, -1));

    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    const int seeds[4] = {200, 10, 20, 100};
    const float want_labels[4] = {0, 1, 1, 2};
    const float *px = cd_tensor_data(images), *lb = cd_tensor_data(labels);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(lb[i], want_labels[i]);
        for (int k = 0; k < 12; k++)
            ck_assert_float_eq(px[i * 12 + k], value((seeds[i] + 10 * (k / 4) + k % 4) % 256));
    }
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_flat_folder_and_split)
{
    char dir[256], name[32];
    cd_test_tmpdir(dir, sizeof dir);
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "img%02d.png", i);
        write_gray(dir, name, 2, 2, i);
    }
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 1, 0));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 10);
    ck_assert_int_eq(cd_dataset_class_count(ds), 0);
    cd_clear_error();
    ck_assert_ptr_null(cd_dataset_class_name(ds, 0));
    CD_ASSERT_ERROR_MENTIONS("no class names");
    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    for (int i = 0; i < 10; i++) {
        ck_assert_float_eq(cd_tensor_data(labels)[i], 0.0f);
        ck_assert_float_eq(cd_tensor_data(images)[i * 4], value(i));
    }
    cd_tensor_free(images);
    cd_tensor_free(labels);
    /* The pool is the train split, so the usual split applies. */
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 7));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 8);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 2);
    cd_dataset_free(ds);
}
END_TEST

/* One RGB image: (y, x) has R = 10 y + x, G = 100 + that, B = 250 - that. */
static const uint8_t rgb_2x3[2 * 3 * 3] = {0,  100, 250, 1,  101, 249, 2,  102, 248,
                                           10, 110, 240, 11, 111, 239, 12, 112, 238};

START_TEST(test_rgb_and_conversions)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    const png_spec rgb = {PNG_COLOR_TYPE_RGB, 8, 2, 3, NULL, 0};
    write_png(dir, "a.png", &rgb, rgb_2x3);
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 0));
    ck_assert_int_eq(cd_dataset_channels(ds), 3);
    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 6; k++) /* planar C x H x W */
            ck_assert_float_eq(cd_tensor_data(images)[c * 6 + k], value(rgb_2x3[k * 3 + c]));
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);

    /* RGB as grey: BT.601 luma, rounded. */
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 1, 0));
    ck_assert_int_eq(cd_dataset_channels(ds), 1);
    images = gather_all(ds, &labels);
    for (int k = 0; k < 6; k++) {
        const uint8_t *p = rgb_2x3 + 3 * k;
        const int y = (299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000;
        ck_assert_float_eq(cd_tensor_data(images)[k], value(y));
    }
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);

    /* Grey as RGB: the same plane three times. */
    char gdir[256];
    cd_test_tmpdir(gdir, sizeof gdir);
    write_gray(gdir, "g.png", 2, 3, 50);
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, gdir, 3, 0));
    ck_assert_int_eq(cd_dataset_channels(ds), 3);
    images = gather_all(ds, &labels);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 6; k++)
            ck_assert_float_eq(cd_tensor_data(images)[c * 6 + k], value(50 + 10 * (k / 3) + k % 3));
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_palette_16bit_alpha)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    /* Palette, 2 bits: indices 0..3 packed four to a byte. */
    const png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
    const png_spec ps = {PNG_COLOR_TYPE_PALETTE, 2, 1, 4, pal, 4};
    const uint8_t packed[1] = {0x1B}; /* 00 01 10 11 */
    write_png(dir, "1-palette.png", &ps, packed);
    /* 16-bit RGB, values 257 k (so 8 bits are exactly k). */
    const png_spec s16 = {PNG_COLOR_TYPE_RGB, 16, 1, 4, NULL, 0};
    uint8_t d16[24];
    for (int i = 0; i < 12; i++) {
        const unsigned v = 257u * (unsigned)(i * 20);
        d16[2 * i] = (uint8_t)(v >> 8);
        d16[2 * i + 1] = (uint8_t)v;
    }
    write_png(dir, "2-rgb16.png", &s16, d16);
    /* RGBA: alpha dropped, colour kept as stored. */
    const png_spec sa = {PNG_COLOR_TYPE_RGBA, 8, 1, 4, NULL, 0};
    const uint8_t rgba[16] = {1, 2, 3, 0, 4, 5, 6, 50, 7, 8, 9, 100, 10, 11, 12, 255};
    write_png(dir, "3-rgba.png", &sa, rgba);
    /* Grey with alpha, as RGB. */
    const png_spec sga = {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 1, 4, NULL, 0};
    const uint8_t ga[8] = {9, 0, 99, 1, 199, 2, 255, 3};
    write_png(dir, "4-ga.png", &sga, ga);

    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 0));
    ck_assert_int_eq(cd_dataset_channels(ds), 3); /* from the palette image */
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 4);
    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    const float *px = cd_tensor_data(images);
    for (int x = 0; x < 4; x++) {
        const uint8_t want_pal[3] = {pal[x].red, pal[x].green, pal[x].blue};
        for (int c = 0; c < 3; c++) {
            ck_assert_float_eq(px[0 * 12 + c * 4 + x], value(want_pal[c]));
            ck_assert_float_eq(px[1 * 12 + c * 4 + x], value((x * 3 + c) * 20));
            ck_assert_float_eq(px[2 * 12 + c * 4 + x], value(rgba[x * 4 + c]));
            ck_assert_float_eq(px[3 * 12 + c * 4 + x], value(ga[x * 2]));
        }
    }
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_crop)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(dir, "a.png", 6, 8, 0);
    write_gray(dir, "b.png", 5, 4, 100); /* another size: fine when cropped */
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 4));
    ck_assert_int_eq(cd_dataset_height(ds), 4);
    ck_assert_int_eq(cd_dataset_width(ds), 4);
    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    const float *px = cd_tensor_data(images);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            /* a: top (6-4)/2 = 1, left (8-4)/2 = 2; b: top (5-4)/2 = 0, left 0. */
            ck_assert_float_eq(px[y * 4 + x], value(10 * (y + 1) + x + 2));
            ck_assert_float_eq(px[16 + y * 4 + x], value(100 + 10 * y + x));
        }
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);
    /* A crop larger than one image names that image. */
    expect_fail(dir, 0, 5, CD_ERR_RANGE, "b.png' is 5 high and 4 wide", "crop of 5 x 5");
}
END_TEST

/* ---- errors -------------------------------------------------------------- */

START_TEST(test_bad_arguments)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(dir, "a.png", 2, 2, 0);
    cd_dataset *ds = NULL;
    CD_ASSERT_STATUS(cd_dataset_load_folder(NULL, dir, 0, 0), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_load_folder(&ds, NULL, 0, 0), CD_ERR_INVALID_ARGUMENT);
    expect_fail(dir, 2, 0, CD_ERR_RANGE, "channels = 2", NULL);
    expect_fail(dir, -1, 0, CD_ERR_RANGE, "channels", NULL);
    expect_fail(dir, 0, -1, CD_ERR_RANGE, "crop = -1", NULL);
    expect_fail(dir, 0, 4097, CD_ERR_RANGE, "crop = 4097", NULL);
    ck_assert_int_eq(cd_dataset_class_count(NULL), -1);
    ck_assert_ptr_null(cd_dataset_class_name(NULL, 0));
}
END_TEST

START_TEST(test_missing_empty_and_not_a_folder)
{
    char dir[256], path[512], cls[512];
    cd_test_tmpdir(dir, sizeof dir);
    expect_fail(dir, 0, 0, CD_ERR_NOT_FOUND, dir, "no PNG file");
    cd_test_write_file(cd_test_path(path, sizeof path, dir, "readme.txt"), "x", 1);
    expect_fail(dir, 0, 0, CD_ERR_NOT_FOUND, "no PNG file", NULL);
    cd_test_path(path, sizeof path, dir, "missing");
    expect_fail(path, 0, 0, CD_ERR_NOT_FOUND, "missing", "does not exist");
    cd_test_path(path, sizeof path, dir, "readme.txt");
    expect_fail(path, 0, 0, CD_ERR_IO, "readme.txt", NULL);
    /* A class folder without images. */
    write_gray(sub(cls, sizeof cls, dir, "full"), "a.png", 2, 2, 0);
    sub(cls, sizeof cls, dir, "void");
    expect_fail(dir, 0, 0, CD_ERR_NOT_FOUND, "void", "no PNG file");
    /* Images beside class folders. */
    cd_test_write_file(cd_test_path(path, sizeof path, cls, "keep.txt"), "x", 1);
    write_gray(cls, "v.png", 2, 2, 0);
    write_gray(dir, "stray.png", 2, 2, 0);
    expect_fail(dir, 0, 0, CD_ERR_FORMAT, "stray.png", "class folder");
}
END_TEST

START_TEST(test_mixed_sizes)
{
    char dir[256], cls[512];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(sub(cls, sizeof cls, dir, "0"), "first.png", 3, 4, 0);
    write_gray(sub(cls, sizeof cls, dir, "1"), "second.png", 4, 3, 0);
    expect_fail(dir, 0, 0, CD_ERR_SHAPE, "second.png' is 4 high and 3 wide",
                "first.png' is 3 high and 4 wide");
}
END_TEST

START_TEST(test_corrupt_and_truncated)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(dir, "a.png", 16, 16, 0);
    size_t n = 0;
    uint8_t *good = cd_test_read_file(cd_test_path(path, sizeof path, dir, "a.png"), &n);

    /* Damaged pixel data: the IDAT chunk's CRC no longer matches. */
    char bad[256];
    cd_test_tmpdir(bad, sizeof bad);
    write_gray(bad, "a.png", 16, 16, 0);
    uint8_t *copy = malloc(n);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, good, n);
    for (size_t i = 45; i < n - 20; i++) copy[i] ^= 0x5A;
    cd_test_write_file(cd_test_path(path, sizeof path, bad, "b.png"), copy, n);
    expect_fail(bad, 0, 0, CD_ERR_FORMAT, "b.png", "libpng");
    /* Cut short, at several points (the header, the data, before IEND). */
    const size_t cuts[4] = {12, 40, n / 2, n - 6};
    for (int c = 0; c < 4; c++) {
        cd_test_write_file(path, good, cuts[c]);
        expect_fail(bad, 0, 0, CD_ERR_FORMAT, "b.png", NULL);
    }
    /* Not a PNG at all, and an empty file. */
    cd_test_write_file(path, "GIF89a not a png", 16);
    expect_fail(bad, 0, 0, CD_ERR_FORMAT, "b.png", "not a PNG");
    cd_test_write_file(path, "", 0);
    expect_fail(bad, 0, 0, CD_ERR_FORMAT, "b.png", "not a PNG");
    free(copy);
    free(good);
}
END_TEST

/* good (n bytes, a PNG) with one more chunk after IHDR: type, a declared
 * length, the first body bytes of it present, and a CRC when the body is
 * whole. */
static void write_with_chunk(const char *path, const uint8_t *good, size_t n, const char *type,
                             uint32_t declared, size_t present)
{
    const size_t at = 8 + 25, crc_bytes = present == declared ? 4 : 0;
    const size_t size = n + 8 + present + crc_bytes;
    uint8_t *b = calloc(1, size);
    ck_assert_ptr_nonnull(b);
    memcpy(b, good, at);
    for (int k = 0; k < 4; k++) b[at + k] = (uint8_t)(declared >> (24 - 8 * k));
    memcpy(b + at + 4, type, 4);
    for (size_t i = 0; i < present; i++) b[at + 8 + i] = (uint8_t)('a' + i % 26);
    if (crc_bytes) {
        const uLong crc = crc32(0, b + at + 4, (uInt)(4 + present));
        for (int k = 0; k < 4; k++) b[at + 8 + present + k] = (uint8_t)(crc >> (24 - 8 * k));
    }
    memcpy(b + at + 8 + present + crc_bytes, good + at, n - at);
    cd_test_write_file(path, b, size);
    free(b);
}

/* Text, profile and other ancillary chunks are skipped, never buffered: a
 * file that declares a text chunk of 2 GB makes no large allocation, and
 * a real one of 1 MB loads with the image's pixels. */
START_TEST(test_ancillary_chunks_are_not_buffered)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(dir, "a.png", 16, 16, 7);
    size_t n = 0;
    uint8_t *good = cd_test_read_file(cd_test_path(path, sizeof path, dir, "a.png"), &n);
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 0));
    cd_tensor *labels = NULL, *want = gather_all(ds, &labels);
    cd_tensor_free(labels);
    cd_dataset_free(ds);

    const char *types[3] = {"iTXt", "tEXt", "iCCP"};
    for (int t = 0; t < 3; t++) {
        write_with_chunk(path, good, n, types[t], 0x7A000000u, 16);
        (void)cd__alloc_largest(true);
        expect_fail(dir, 0, 0, CD_ERR_FORMAT, "a.png", "libpng");
        ck_assert_uint_lt(cd__alloc_largest(true), 1u << 20);

        write_with_chunk(path, good, n, types[t], 1u << 20, 1u << 20);
        (void)cd__alloc_largest(true);
        CD_ASSERT_OK(cd_dataset_load_folder(&ds, dir, 0, 0));
        ck_assert_uint_lt(cd__alloc_largest(true), 1u << 18);
        cd_tensor *got = gather_all(ds, &labels);
        ck_assert_mem_eq(cd_tensor_data(got), cd_tensor_data(want), 16 * 16 * sizeof(float));
        cd_tensor_free(got);
        cd_tensor_free(labels);
        cd_dataset_free(ds);
    }
    cd_tensor_free(want);
    free(good);
}
END_TEST

START_TEST(test_oversized_image)
{
    char dir[256];
    cd_test_tmpdir(dir, sizeof dir);
    write_gray(dir, "wide.png", 1, 4097, 0);
    expect_fail(dir, 0, 0, CD_ERR_RANGE, "wide.png' is 1 high and 4097 wide", "4096 on a side");
}
END_TEST

/* ---- IDX of other sizes, and class names of the IDX loaders --------------- */

static void write_idx(const char *path, uint8_t rank, const uint32_t *dims)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    uint8_t *b = malloc(4 + 4 * (size_t)rank + count);
    ck_assert_ptr_nonnull(b);
    b[0] = b[1] = 0;
    b[2] = 0x08;
    b[3] = rank;
    for (int i = 0; i < rank; i++)
        for (int k = 0; k < 4; k++) b[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    for (size_t i = 0; i < count; i++) b[4 + 4 * (size_t)rank + i] = (uint8_t)(i * 3 % 256);
    cd_test_write_file(path, b, 4 + 4 * (size_t)rank + count);
    free(b);
}

START_TEST(test_idx_other_sizes)
{
    char dir[256], im[512], lb[512];
    cd_test_tmpdir(dir, sizeof dir);
    const uint32_t idims[3] = {5, 7, 9}, ldims[1] = {5};
    write_idx(cd_test_path(im, sizeof im, dir, "images"), 3, idims);
    write_idx(cd_test_path(lb, sizeof lb, dir, "labels"), 1, ldims);
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_idx(&ds, im, lb, NULL, NULL));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 5);
    ck_assert_int_eq(cd_dataset_channels(ds), 1);
    ck_assert_int_eq(cd_dataset_height(ds), 7);
    ck_assert_int_eq(cd_dataset_width(ds), 9);
    ck_assert_int_eq(cd_dataset_class_count(ds), 0);
    cd_tensor *labels = NULL, *images = gather_all(ds, &labels);
    for (int i = 0; i < 5 * 63; i++)
        ck_assert_float_eq(cd_tensor_data(images)[i], value(i * 3 % 256));
    for (int i = 0; i < 5; i++) ck_assert_float_eq(cd_tensor_data(labels)[i], (float)(i * 3));
    cd_tensor_free(images);
    cd_tensor_free(labels);
    cd_dataset_free(ds);
    /* Rank 4 (colour) is refused, naming the rank. */
    const uint32_t cdims[4] = {5, 3, 7, 9};
    write_idx(im, 4, cdims);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, lb, NULL, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("IDX rank 4");
    ck_assert_ptr_null(ds);
}
END_TEST

START_TEST(test_mnist_class_names)
{
    static const char *const names[4][2] =
        {{"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"},
         {"train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"},
         {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"},
         {"t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
    char dir[256], link[512], target[512];
    cd_test_tmpdir(dir, sizeof dir);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(symlink(cd_test_path(target, sizeof target, cd_test_data_dir(),
                                              names[i][1]),
                                 cd_test_path(link, sizeof link, dir, names[i][0])),
                         0);
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_mnist(&ds, dir));
    ck_assert_int_eq(cd_dataset_class_count(ds), 10);
    char want[2] = {0, 0};
    for (int k = 0; k < 10; k++) {
        want[0] = (char)('0' + k);
        ck_assert_str_eq(cd_dataset_class_name(ds, k), want);
    }
    ck_assert_ptr_null(cd_dataset_class_name(ds, 10));
    cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("folder");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_class_folders);
    tcase_add_test(tc, test_flat_folder_and_split);
    tcase_add_test(tc, test_rgb_and_conversions);
    tcase_add_test(tc, test_palette_16bit_alpha);
    tcase_add_test(tc, test_crop);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_missing_empty_and_not_a_folder);
    tcase_add_test(tc, test_mixed_sizes);
    tcase_add_test(tc, test_corrupt_and_truncated);
    tcase_add_test(tc, test_ancillary_chunks_are_not_buffered);
    tcase_add_test(tc, test_oversized_image);
    tcase_add_test(tc, test_idx_other_sizes);
    tcase_add_test(tc, test_mnist_class_names);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
