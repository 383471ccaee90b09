/* check_idx.c - the internal IDX reader: valid files and every error path. */
#define _POSIX_C_SOURCE 200809L

#include "test_util.h"

#include "data/idx.h"

#include <stdint.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- fixtures ------------------------------------------------------------ */

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

/* An IDX image: magic 00 00 type rank, big-endian dims, then `payload`
 * bytes (which may differ from the dims' product, to build bad files). */
static bytes make_idx(uint8_t type, uint8_t rank, const uint32_t *dims, size_t payload)
{
    bytes b = {NULL, 4 + 4 * (size_t)rank + payload};
    b.p = malloc(b.n);
    ck_assert_ptr_nonnull(b.p);
    b.p[0] = 0;
    b.p[1] = 0;
    b.p[2] = type;
    b.p[3] = rank;
    for (int i = 0; i < rank; i++)
        for (int k = 0; k < 4; k++) b.p[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    for (size_t i = 0; i < payload; i++) b.p[4 + 4 * (size_t)rank + i] = (uint8_t)(i * 7 + 3);
    return b;
}

static const char *write_raw(char *path, size_t cap, const char *dir, const char *name,
                             const void *p, size_t n)
{
    cd_test_path(path, cap, dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static const char *write_gz(char *path, size_t cap, const char *dir, const char *name,
                            const void *p, size_t n)
{
    cd_test_path(path, cap, dir, name);
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    if (n) ck_assert_int_eq(gzwrite(g, p, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
    return path;
}

static bytes read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    bytes b = {malloc(1 << 20), 0};
    ck_assert_ptr_nonnull(b.p);
    b.n = fread(b.p, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static const uint32_t dims234[3] = {2, 3, 4};

/* Load expecting failure with `want`, and check the message names the file
 * and the given text (usually "offset N"). */
static void expect_fail(const char *path, uint32_t rank, cd_status want, const char *name,
                        const char *detail)
{
    cd__idx idx;
    memset(&idx, 0xAB, sizeof idx);
    CD_ASSERT_STATUS(cd__idx_load(path, rank, &idx), want);
    CD_ASSERT_ERROR_MENTIONS(name);
    if (detail) CD_ASSERT_ERROR_MENTIONS(detail);
    ck_assert_ptr_null(idx.data);
    ck_assert_uint_eq(idx.count, 0);
}

/* ---- valid files --------------------------------------------------------- */

START_TEST(test_raw_images)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 24);
    write_raw(path, sizeof path, dir, "img.idx", b.p, b.n);
    cd__idx idx;
    CD_ASSERT_OK(cd__idx_load(path, 3, &idx));
    ck_assert_uint_eq(idx.rank, 3);
    ck_assert_uint_eq(idx.dims[0], 2);
    ck_assert_uint_eq(idx.dims[1], 3);
    ck_assert_uint_eq(idx.dims[2], 4);
    ck_assert_uint_eq(idx.count, 24);
    ck_assert_uint_eq(idx.header_bytes, 16);
    ck_assert(!idx.gzip);
    ck_assert_mem_eq(idx.data, b.p + 16, 24);
    /* A raw file sizes its buffer from the file: exactly the payload. */
    ck_assert_uint_eq(cd__idx_last_alloc_bytes(), 24);
    cd__idx_free(&idx);
    ck_assert_ptr_null(idx.data);
    cd__idx_free(&idx); /* twice is harmless */
    cd__idx_free(NULL);
    free(b.p);
}
END_TEST

START_TEST(test_gz_images_and_labels)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 24);
    write_gz(path, sizeof path, dir, "img.idx.gz", b.p, b.n);
    cd__idx idx;
    CD_ASSERT_OK(cd__idx_load(path, 3, &idx));
    ck_assert(idx.gzip);
    ck_assert_uint_eq(idx.count, 24);
    ck_assert_mem_eq(idx.data, b.p + 16, 24);
    cd__idx_free(&idx);
    free(b.p);

    uint32_t n = 5;
    b = make_idx(0x08, 1, &n, 5);
    write_gz(path, sizeof path, dir, "lab.idx.gz", b.p, b.n);
    CD_ASSERT_OK(cd__idx_load(path, 1, &idx));
    ck_assert(idx.gzip);
    ck_assert_uint_eq(idx.rank, 1);
    ck_assert_uint_eq(idx.dims[0], 5);
    ck_assert_uint_eq(idx.header_bytes, 8);
    ck_assert_mem_eq(idx.data, b.p + 8, 5);
    cd__idx_free(&idx);

    /* The file name does not matter: raw content under a .gz name loads. */
    write_raw(path, sizeof path, dir, "raw-named.gz", b.p, b.n);
    CD_ASSERT_OK(cd__idx_load(path, 1, &idx));
    ck_assert(!idx.gzip);
    cd__idx_free(&idx);
    free(b.p);
}
END_TEST

START_TEST(test_mnist_slice)
{
    char path[512];
    cd__idx img, lab;
    CD_ASSERT_OK(cd__idx_load(cd_test_path(path, sizeof path, cd_test_data_dir(),
                                           "t10k-images-idx3-ubyte.gz"),
                              3, &img));
    ck_assert(img.gzip);
    ck_assert_uint_eq(img.dims[0], 1000);
    ck_assert_uint_eq(img.dims[1], 28);
    ck_assert_uint_eq(img.dims[2], 28);
    ck_assert_uint_eq(img.count, 1000 * 28 * 28);
    CD_ASSERT_OK(cd__idx_load(cd_test_path(path, sizeof path, cd_test_data_dir(),
                                           "t10k-labels-idx1-ubyte.gz"),
                              1, &lab));
    ck_assert_uint_eq(lab.dims[0], 1000);
    /* The first MNIST test labels are 7 2 1 0 4. */
    static const uint8_t first[5] = {7, 2, 1, 0, 4};
    ck_assert_mem_eq(lab.data, first, 5);
    for (uint64_t i = 0; i < lab.count; i++) ck_assert_uint_le(lab.data[i], 9);
    cd__idx_free(&img);
    cd__idx_free(&lab);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_bad_arguments)
{
    cd__idx idx;
    CD_ASSERT_STATUS(cd__idx_load(NULL, 3, &idx), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__idx_load("x", 3, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__idx_load("x", 0, &idx), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__idx_load("x", 9, &idx), CD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_missing_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "no-such-file.idx");
    expect_fail(path, 3, CD_ERR_NOT_FOUND, "no-such-file.idx", NULL);
    /* A path through a regular file is "not found" too (ENOTDIR). */
    char file[512], deeper[600];
    write_raw(file, sizeof file, dir, "plain", "x", 1);
    snprintf(deeper, sizeof deeper, "%s/below.idx", file);
    expect_fail(deeper, 3, CD_ERR_NOT_FOUND, "below.idx", NULL);
}
END_TEST

START_TEST(test_directory_and_unreadable)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    expect_fail(dir, 3, CD_ERR_IO, dir, NULL);
    /* A FIFO without a writer is refused at once, not waited on. */
    cd_test_path(path, sizeof path, dir, "fifo.idx.gz");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    expect_fail(path, 3, CD_ERR_IO, "fifo.idx.gz", "FIFO");
    if (geteuid() == 0) return; /* root reads anything */
    bytes b = make_idx(0x08, 3, dims234, 24);
    write_raw(path, sizeof path, dir, "locked.idx", b.p, b.n);
    ck_assert_int_eq(chmod(path, 0), 0);
    expect_fail(path, 3, CD_ERR_IO, "locked.idx", "ermission");
    free(b.p);
}
END_TEST

START_TEST(test_empty_and_short_header)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    write_raw(path, sizeof path, dir, "empty.idx", "", 0);
    expect_fail(path, 3, CD_ERR_FORMAT, "empty.idx", "offset 0");

    static const uint8_t two[2] = {0, 0};
    write_raw(path, sizeof path, dir, "two.idx", two, 2);
    expect_fail(path, 3, CD_ERR_FORMAT, "two.idx", "file ends at offset 2");

    /* Magic fine, but only one of three dimensions. */
    bytes b = make_idx(0x08, 3, dims234, 0);
    write_raw(path, sizeof path, dir, "hdr.idx", b.p, 8);
    expect_fail(path, 3, CD_ERR_FORMAT, "hdr.idx", "file ends at offset 8");
    write_gz(path, sizeof path, dir, "hdr.idx.gz", b.p, 8);
    expect_fail(path, 3, CD_ERR_FORMAT, "hdr.idx.gz", "(gzip)");
    CD_ASSERT_ERROR_MENTIONS("offset 8");
    free(b.p);
}
END_TEST

START_TEST(test_truncated_data)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 10);
    write_raw(path, sizeof path, dir, "short.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "short.idx",
                "truncated: expected 24 bytes of data at offset 16, file ends at offset 26");
    write_gz(path, sizeof path, dir, "short.idx.gz", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "short.idx.gz' (gzip)",
                "truncated: expected 24 bytes of data at offset 16, file ends at offset 26");
    free(b.p);
}
END_TEST

START_TEST(test_trailing_bytes)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 25);
    write_raw(path, sizeof path, dir, "long.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "long.idx", "offset 40");
    CD_ASSERT_ERROR_MENTIONS("trailing");
    CD_ASSERT_ERROR_MENTIONS("offset 41");
    write_gz(path, sizeof path, dir, "long.idx.gz", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "long.idx.gz' (gzip)", "offset 40");
    CD_ASSERT_ERROR_MENTIONS("trailing");
    free(b.p);
}
END_TEST

START_TEST(test_wrong_magic)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 24);
    b.p[0] = 0x01;
    b.p[1] = 0x02;
    write_raw(path, sizeof path, dir, "magic.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "magic.idx", "offset 0");
    CD_ASSERT_ERROR_MENTIONS("not an IDX file");
    free(b.p);
}
END_TEST

START_TEST(test_wrong_type)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x0D, 3, dims234, 96);
    write_raw(path, sizeof path, dir, "float.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "float.idx", "offset 2");
    CD_ASSERT_ERROR_MENTIONS("unsupported IDX type 0x0d");
    free(b.p);
}
END_TEST

START_TEST(test_wrong_rank)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    uint32_t n = 24;
    bytes b = make_idx(0x08, 1, &n, 24);
    write_raw(path, sizeof path, dir, "labels.idx", b.p, b.n);
    /* A labels file given where images are due. */
    expect_fail(path, 3, CD_ERR_FORMAT, "labels.idx", "offset 3");
    CD_ASSERT_ERROR_MENTIONS("rank 1");
    free(b.p);
    b = make_idx(0x08, 3, dims234, 24);
    write_raw(path, sizeof path, dir, "images.idx", b.p, b.n);
    expect_fail(path, 1, CD_ERR_FORMAT, "images.idx", "offset 3");
    free(b.p);
}
END_TEST

START_TEST(test_zero_dimension)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    const uint32_t dims[3] = {2, 0, 4};
    bytes b = make_idx(0x08, 3, dims, 0);
    write_raw(path, sizeof path, dir, "zero.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "zero.idx", "dimension 1 is 0 at offset 8");
    free(b.p);
}
END_TEST

START_TEST(test_lying_oversized_header)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    /* 10^15 bytes claimed: refused from the header alone. */
    const uint32_t huge[3] = {100000, 100000, 100000};
    bytes b = make_idx(0x08, 3, huge, 100);
    write_raw(path, sizeof path, dir, "huge.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "huge.idx", "offset 4");
    CD_ASSERT_ERROR_MENTIONS("oversized or lying header");
    ck_assert_uint_eq(cd__idx_last_alloc_bytes(), 0);
    write_gz(path, sizeof path, dir, "huge.idx.gz", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "huge.idx.gz' (gzip)", "offset 4");
    ck_assert_uint_eq(cd__idx_last_alloc_bytes(), 0);
    free(b.p);

    /* 4e9 bytes claimed, under the cap, but the file holds 100: a raw file
     * is refused by its size, a gzip stream after at most 1 MiB. */
    const uint32_t big[3] = {4000, 1000, 1000};
    b = make_idx(0x08, 3, big, 100);
    write_raw(path, sizeof path, dir, "big.idx", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "big.idx", "file ends at offset 116");
    ck_assert_uint_eq(cd__idx_last_alloc_bytes(), 0);
    write_gz(path, sizeof path, dir, "big.idx.gz", b.p, b.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "big.idx.gz' (gzip)", "file ends at offset 116");
    ck_assert_uint_le(cd__idx_last_alloc_bytes(), 1 << 20);
    free(b.p);
}
END_TEST

START_TEST(test_not_idx)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    const char *text = "label,pixel0,pixel1\n7,0,0\n";
    write_raw(path, sizeof path, dir, "digits.csv", text, strlen(text));
    expect_fail(path, 3, CD_ERR_FORMAT, "digits.csv", "offset 0");
    CD_ASSERT_ERROR_MENTIONS("not an IDX file");
    static const uint8_t png[16] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                    0,    0,   0,   13,  'I',  'H',  'D',  'R'};
    write_raw(path, sizeof path, dir, "digit.png", png, sizeof png);
    expect_fail(path, 1, CD_ERR_FORMAT, "digit.png", "offset 0");
    /* The same inside gzip: still offset 0 of the uncompressed stream. */
    write_gz(path, sizeof path, dir, "digit.png.gz", png, sizeof png);
    expect_fail(path, 1, CD_ERR_FORMAT, "digit.png.gz' (gzip)", "offset 0");
}
END_TEST

START_TEST(test_corrupt_gzip)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    /* A gzip header followed by a deflate block of the reserved type 3. */
    static const uint8_t bad_block[12] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x07, 0};
    write_raw(path, sizeof path, dir, "block.gz", bad_block, sizeof bad_block);
    expect_fail(path, 3, CD_ERR_FORMAT, "block.gz' (gzip)", "offset 0");
    CD_ASSERT_ERROR_MENTIONS("corrupt gzip stream");

    /* A valid stream whose CRC trailer is wrong: caught at the end. */
    bytes b = make_idx(0x08, 3, dims234, 24);
    write_gz(path, sizeof path, dir, "crc.gz", b.p, b.n);
    bytes z = read_all(path);
    z.p[z.n - 8] ^= 0xff;
    write_raw(path, sizeof path, dir, "crc.gz", z.p, z.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "crc.gz' (gzip)", "offset");
    CD_ASSERT_ERROR_MENTIONS("corrupt gzip stream");

    /* A compressed stream cut short. */
    write_raw(path, sizeof path, dir, "cut.gz", z.p, z.n - 12);
    expect_fail(path, 3, CD_ERR_FORMAT, "cut.gz' (gzip)", "offset");
    CD_ASSERT_ERROR_MENTIONS("truncated");
    free(z.p);
    free(b.p);
}
END_TEST

/* zlib's gzread reports a stream without its trailer as a clean end and
 * skips whatever follows the last member; this reader refuses both, the
 * way it refuses a short or over-long raw file. */
START_TEST(test_gzip_end_of_stream)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    bytes b = make_idx(0x08, 3, dims234, 24);
    write_gz(path, sizeof path, dir, "whole.gz", b.p, b.n);
    bytes z = read_all(path);

    /* The 8-byte CRC and length trailer cut off, with a pixel changed that
     * only the CRC would catch: truncated, never loaded. */
    bytes changed = make_idx(0x08, 3, dims234, 24);
    changed.p[20] ^= 1;
    write_gz(path, sizeof path, dir, "changed.gz", changed.p, changed.n);
    bytes zc = read_all(path);
    for (size_t cut = 1; cut <= 8; cut++) {
        write_raw(path, sizeof path, dir, "notrailer.gz", zc.p, zc.n - cut);
        expect_fail(path, 3, CD_ERR_FORMAT, "notrailer.gz' (gzip)", "truncated gzip stream");
        CD_ASSERT_ERROR_MENTIONS("trailer");
    }
    /* ...and with the trailer of the unchanged data the CRC catches it. */
    memcpy(zc.p + zc.n - 8, z.p + z.n - 8, 8);
    write_raw(path, sizeof path, dir, "badcrc.gz", zc.p, zc.n);
    expect_fail(path, 3, CD_ERR_FORMAT, "badcrc.gz' (gzip)", "incorrect data check");

    /* Bytes after the member: refused, wherever they start. */
    static const char *const tails[] = {"x", "\0", "\0\0\0\0junk", "\x1f"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        size_t t = strlen(tails[i]) ? strlen(tails[i]) : 1;
        uint8_t *p = malloc(z.n + t);
        memcpy(p, z.p, z.n);
        memcpy(p + z.n, tails[i], t);
        write_raw(path, sizeof path, dir, "tail.gz", p, z.n + t);
        expect_fail(path, 3, CD_ERR_FORMAT, "tail.gz' (gzip)", "trailing data");
        CD_ASSERT_ERROR_MENTIONS("compressed offset");
        free(p);
    }

    /* Concatenated members (pigz, bgzip) are one stream, an empty last
     * member included. */
    bytes parts[3];
    write_gz(path, sizeof path, dir, "p0.gz", b.p, 10);
    parts[0] = read_all(path);
    write_gz(path, sizeof path, dir, "p1.gz", b.p + 10, b.n - 10);
    parts[1] = read_all(path);
    write_gz(path, sizeof path, dir, "p2.gz", b.p, 0);
    parts[2] = read_all(path);
    uint8_t *cat = malloc(parts[0].n + parts[1].n + parts[2].n);
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        memcpy(cat + n, parts[i].p, parts[i].n);
        n += parts[i].n;
    }
    write_raw(path, sizeof path, dir, "members.gz", cat, n);
    cd__idx idx;
    CD_ASSERT_OK(cd__idx_load(path, 3, &idx));
    ck_assert(idx.gzip);
    ck_assert_uint_eq(idx.count, 24);
    ck_assert_mem_eq(idx.data, b.p + 16, 24);
    cd__idx_free(&idx);
    /* A second member cut short is as truncated as a first. */
    write_raw(path, sizeof path, dir, "members.gz", cat, parts[0].n + parts[1].n - 4);
    expect_fail(path, 3, CD_ERR_FORMAT, "members.gz' (gzip)", "truncated gzip stream");
    free(cat);
    for (int i = 0; i < 3; i++) free(parts[i].p);
    free(zc.p);
    free(changed.p);
    free(z.p);
    free(b.p);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_raw_images);
    tcase_add_test(tc, test_gz_images_and_labels);
    tcase_add_test(tc, test_mnist_slice);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_directory_and_unreadable);
    tcase_add_test(tc, test_empty_and_short_header);
    tcase_add_test(tc, test_truncated_data);
    tcase_add_test(tc, test_trailing_bytes);
    tcase_add_test(tc, test_wrong_magic);
    tcase_add_test(tc, test_wrong_type);
    tcase_add_test(tc, test_wrong_rank);
    tcase_add_test(tc, test_zero_dimension);
    tcase_add_test(tc, test_lying_oversized_header);
    tcase_add_test(tc, test_not_idx);
    tcase_add_test(tc, test_corrupt_gzip);
    tcase_add_test(tc, test_gzip_end_of_stream);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
