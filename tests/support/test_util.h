/*
 * test_util.h - shared helpers for the Check test executables.
 * Each tests/check_<module>.c defines its suite and ends with
 * CD_TEST_MAIN(make_suite).
 */
#ifndef CD_TEST_UTIL_H
#define CD_TEST_UTIL_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "colddiff.h"

/* Assert a call succeeds; on failure show the library's message. */
#define CD_ASSERT_OK(expr)                                                              \
    do {                                                                                \
        cd_status st_ = (expr);                                                         \
        ck_assert_msg(st_ == CD_OK, "%s failed: %s (%s)", #expr, cd_status_string(st_), \
                      cd_last_error());                                                 \
    } while (0)

/* Assert a call fails with `want` and leaves a non-empty message. */
#define CD_ASSERT_STATUS(expr, want)                                                   \
    do {                                                                               \
        cd_clear_error();                                                              \
        cd_status st_ = (expr);                                                        \
        ck_assert_msg(st_ == (want), "%s returned %s, expected %s (%s)", #expr,        \
                      cd_status_string(st_), cd_status_string(want), cd_last_error()); \
        ck_assert_msg(cd_last_error()[0] != '\0', "%s left no message", #expr);        \
    } while (0)

/* Assert the last error message mentions `needle`. */
#define CD_ASSERT_ERROR_MENTIONS(needle)                                                         \
    ck_assert_msg(strstr(cd_last_error(), (needle)) != NULL, "error '%s' does not mention '%s'", \
                  cd_last_error(), (needle))

/* 1 in a sanitizer build, where tests shrink workloads that only measure
 * scale (memory safety does not need batch 128). */
#ifndef CD_TEST_SANITIZED
#define CD_TEST_SANITIZED 0
#endif

/* An N x C x H x W tensor of zeros. */
static inline cd_tensor *cd_test_tensor4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    cd_tensor *t = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, (int64_t[]){n, c, h, w}));
    return t;
}

/* x = uniform in [lo, hi) from the stream of seed ([-0.5, 0.5): an image in
 * the data range). */
static inline void cd_test_fill_uniform(cd_tensor *x, uint64_t seed, float lo, float hi)
{
    cd_rng *r = NULL;
    CD_ASSERT_OK(cd_rng_create(&r, seed));
    CD_ASSERT_OK(cd_rng_uniform_tensor(r, x));
    float *p = cd_tensor_data(x);
    for (int64_t i = 0; i < cd_tensor_numel(x); i++) p[i] = lo + (hi - lo) * p[i];
    cd_rng_free(r);
}

/* tests/data in the source tree (set by CMake). */
static inline const char *cd_test_data_dir(void)
{
#ifdef CD_TEST_DATA_DIR
    return CD_TEST_DATA_DIR;
#else
    return "tests/data";
#endif
}

/* Join a folder and a name into buf (ck-asserts it fits). */
static inline const char *cd_test_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    ck_assert_msg(n > 0 && (size_t)n < cap, "path too long");
    return buf;
}

/* The 1,000-image MNIST slice in tests/data as the training pool (no test
 * split), split with seed 42 into val_fraction validation (none when 0). */
static inline cd_dataset *cd_test_load_slice(double val_fraction)
{
    char im[512], lb[512];
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_idx(&ds,
                                     cd_test_path(im, sizeof im, cd_test_data_dir(),
                                                  "t10k-images-idx3-ubyte.gz"),
                                     cd_test_path(lb, sizeof lb, cd_test_data_dir(),
                                                  "t10k-labels-idx1-ubyte.gz"),
                                     NULL, NULL));
    if (val_fraction > 0) CD_ASSERT_OK(cd_dataset_split(ds, val_fraction, 42));
    return ds;
}

/* A fresh private temporary folder for a test (removed by the OS later). */
static inline const char *cd_test_tmpdir(char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(buf, cap, "%s/colddiff-test-XXXXXX", base ? base : "/tmp");
    ck_assert_msg(n > 0 && (size_t)n < cap, "tmpdir path too long");
    ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp failed");
    return buf;
}

/* The whole file at path (malloc'd, NUL-terminated past *len); fails the
 * test if it cannot be read. */
static inline uint8_t *cd_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    uint8_t *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Write n bytes to path (plain, non-atomic: for test inputs). */
static inline void cd_test_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* Size of the file at path, or -1 if it does not exist. */
static inline long cd_test_file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Entries in a folder besides . and .. (to spot stray temporary files). */
static inline int cd_test_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open folder %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

/* Free a trainer made by cd_trainer_create(), then the decoder and
 * degradation it borrows (after it, as the header asks). Not for a loaded
 * trainer (cd_trainer_load), which owns its own: cd_trainer_free() that. */
static inline void cd_test_trainer_free_all(cd_trainer *tr)
{
    if (!tr) return;
    cd_decoder *dec = cd_trainer_decoder(tr);
    cd_degradation *deg = cd_trainer_degradation(tr);
    cd_trainer_free(tr);
    cd_decoder_free(dec);
    cd_degradation_free(deg);
}

/* Assert what an option_info call reported: name, type, choices (-1 for
 * none) and default (exact: they are table values). Bounds are checked by
 * each test where the header states them. */
#define CD_ASSERT_OPTION_INFO(info, name_, type_, choices_, def_)                                  \
    do {                                                                                           \
        const cd_option_info *i_ = &(info);                                                        \
        ck_assert_ptr_nonnull(i_->name);                                                           \
        ck_assert_str_eq(i_->name, (name_));                                                       \
        ck_assert_int_eq((int)i_->type, (int)(type_));                                             \
        ck_assert_int_eq(i_->choices, (choices_));                                                 \
        ck_assert_msg(i_->default_value == (double)(def_), "%s: default %g, expected %g", (name_), \
                      i_->default_value, (double)(def_));                                          \
        ck_assert_msg(i_->lo <= i_->default_value && i_->default_value <= i_->hi,                  \
                      "%s: default %g outside [%g, %g]", (name_), i_->default_value, i_->lo,       \
                      i_->hi);                                                                     \
    } while (0)

#define CD_TEST_MAIN(make_suite)                          \
    int main(void)                                        \
    {                                                     \
        SRunner *sr = srunner_create(make_suite());       \
        srunner_run_all(sr, CK_NORMAL);                   \
        int failed = srunner_ntests_failed(sr);           \
        srunner_free(sr);                                 \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE; \
    }

#endif /* CD_TEST_UTIL_H */
