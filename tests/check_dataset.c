/* check_dataset.c - loading, normalisation, splits, shuffles and batches. */
#define _POSIX_C_SOURCE 200809L

#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <zlib.h>

#define SLICE_N 1000
#define SLICE_PIXELS (28 * 28)

/* ---- fixtures ------------------------------------------------------------ */

static const char *slice_path(char *buf, size_t cap, const char *name)
{
    return cd_test_path(buf, cap, cd_test_data_dir(), name);
}

static cd_dataset *load_slice(void)
{
    char im[512], lb[512];
    slice_path(im, sizeof im, "t10k-images-idx3-ubyte.gz");
    slice_path(lb, sizeof lb, "t10k-labels-idx1-ubyte.gz");
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_idx(&ds, im, lb, im, lb));
    ck_assert_ptr_nonnull(ds);
    return ds;
}

/* The slice's uncompressed bytes, read with zlib independently of the
 * library. The caller frees. */
static uint8_t *gunzip_file(const char *path, size_t *n)
{
    gzFile g = gzopen(path, "rb");
    ck_assert_ptr_nonnull(g);
    size_t cap = 1 << 21;
    uint8_t *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    int k = gzread(g, buf, (unsigned)cap);
    ck_assert_int_gt(k, 0);
    gzclose(g);
    *n = (size_t)k;
    return buf;
}

static void write_text(const char *path, const char *text)
{
    cd_test_write_file(path, text, strlen(text));
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (24 - 8 * k));
}

/*
 * A synthetic pool of n images of 2 x 3 pixels whose first two pixels spell
 * the image's own index (low byte, high byte) and whose label is
 * `label(i)`, so any batch can be traced back to pool indices.
 */
static void write_synthetic(const char *dir, const char *im_name, const char *lb_name, uint32_t n,
                            int label_mod, int bad_label_at)
{
    char path[512];
    size_t isz = 16 + (size_t)n * 6, lsz = 8 + n;
    uint8_t *im = calloc(isz, 1), *lb = calloc(lsz, 1);
    ck_assert(im && lb);
    put_be32(im, 0x803);
    put_be32(im + 4, n);
    put_be32(im + 8, 2);
    put_be32(im + 12, 3);
    put_be32(lb, 0x801);
    put_be32(lb + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *px = im + 16 + 6 * (size_t)i;
        px[0] = (uint8_t)(i & 255);
        px[1] = (uint8_t)(i >> 8);
        px[2] = 255;
        lb[8 + i] = (uint8_t)(i % (uint32_t)label_mod);
    }
    if (bad_label_at >= 0) lb[8 + bad_label_at] = 12;
    cd_test_write_file(cd_test_path(path, sizeof path, dir, im_name), im, isz);
    cd_test_write_file(cd_test_path(path, sizeof path, dir, lb_name), lb, lsz);
    free(im);
    free(lb);
}

static cd_dataset *load_synthetic(char *dir, size_t cap, uint32_t n)
{
    char im[512], lb[512];
    cd_test_tmpdir(dir, cap);
    write_synthetic(dir, "im", "lb", n, 256, -1);
    cd_dataset *ds = NULL;
    CD_ASSERT_OK(cd_dataset_load_idx(&ds, cd_test_path(im, sizeof im, dir, "im"),
                                     cd_test_path(lb, sizeof lb, dir, "lb"), NULL, NULL));
    return ds;
}

static int64_t decode_pixel(float x) { return (int64_t)lrintf((x + 0.5f) * 255.0f); }

/* Pool indices of a split in epoch order, read back through fill_batch
 * (epoch = 1) or in natural order through gather (epoch = 0). */
static int64_t *split_indices(const cd_dataset *ds, cd_split split, int epoch)
{
    int64_t n = cd_dataset_count(ds, split);
    ck_assert_int_ge(n, 1);
    int64_t shape[4] = {n, 1, 2, 3};
    cd_tensor *t = NULL, *lab = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, shape));
    CD_ASSERT_OK(cd_tensor_create(&lab, 1, shape));
    if (epoch) {
        int64_t filled = -1;
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, split, 0, t, lab, &filled));
        ck_assert_int_eq(filled, n);
    } else {
        int64_t *pos = malloc((size_t)n * sizeof *pos);
        for (int64_t i = 0; i < n; i++) pos[i] = i;
        CD_ASSERT_OK(cd_dataset_gather(ds, split, pos, n, t, lab));
        free(pos);
    }
    int64_t *out = malloc((size_t)n * sizeof *out);
    const float *x = cd_tensor_data(t), *l = cd_tensor_data(lab);
    for (int64_t i = 0; i < n; i++) {
        out[i] = decode_pixel(x[6 * i]) + 256 * decode_pixel(x[6 * i + 1]);
        ck_assert_float_eq(l[i], (float)(out[i] % 256));
    }
    cd_tensor_free(t);
    cd_tensor_free(lab);
    return out;
}

/* True if a[0..n) holds every value of want[0..n) exactly once. */
static int same_set(const int64_t *a, const int64_t *want, int64_t n, int64_t pool)
{
    int *seen = calloc((size_t)pool, sizeof *seen);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) seen[want[i]]++;
    for (int64_t i = 0; i < n; i++) ok = ok && a[i] >= 0 && a[i] < pool && seen[a[i]]-- == 1;
    free(seen);
    return ok;
}

static float norm(uint8_t p) { return (float)((float)p / 255.0f) - 0.5f; }

/* ---- loading and normalisation ------------------------------------------ */

START_TEST(test_load_slice)
{
    cd_dataset *ds = load_slice();
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), SLICE_N);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 0);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TEST), SLICE_N);
    ck_assert_int_eq(cd_dataset_height(ds), 28);
    ck_assert_int_eq(cd_dataset_width(ds), 28);
    ck_assert_int_eq(cd_dataset_channels(ds), 1);
    cd_dataset_free(ds);
    cd_dataset_free(NULL);

    /* No test pair: an empty test split. */
    char im[512], lb[512];
    CD_ASSERT_OK(cd_dataset_load_idx(&ds, slice_path(im, sizeof im, "t10k-images-idx3-ubyte.gz"),
                                     slice_path(lb, sizeof lb, "t10k-labels-idx1-ubyte.gz"), NULL,
                                     NULL));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TEST), 0);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_normalisation_exact)
{
    char path[512];
    size_t ni = 0, nl = 0;
    uint8_t *raw = gunzip_file(slice_path(path, sizeof path, "t10k-images-idx3-ubyte.gz"), &ni);
    uint8_t *lab = gunzip_file(slice_path(path, sizeof path, "t10k-labels-idx1-ubyte.gz"), &nl);
    ck_assert_uint_eq(ni, 16 + SLICE_N * SLICE_PIXELS);
    ck_assert_uint_eq(nl, 8 + SLICE_N);

    /* The formula's ends and middle, bit for bit. */
    ck_assert(norm(0) == -0.5f);
    ck_assert(norm(255) == 0.5f);
    ck_assert(norm(51) == (float)(0.2f - 0.5f));

    cd_dataset *ds = load_slice();
    for (cd_split split = CD_SPLIT_TRAIN; split <= CD_SPLIT_TEST; split += 2) {
        int64_t shape[3] = {16, 28, 28}, filled = 0;
        cd_tensor *t = NULL, *l = NULL;
        CD_ASSERT_OK(cd_tensor_create(&t, 3, shape));
        CD_ASSERT_OK(cd_tensor_create(&l, 1, shape));
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, split, 100, t, l, &filled));
        ck_assert_int_eq(filled, 16);
        const float *x = cd_tensor_data(t), *y = cd_tensor_data(l);
        int seen_mid = 0;
        for (int i = 0; i < 16; i++) {
            for (int k = 0; k < SLICE_PIXELS; k++) {
                uint8_t p = raw[16 + (size_t)(100 + i) * SLICE_PIXELS + (size_t)k];
                float want = norm(p);
                ck_assert_msg(memcmp(&x[i * SLICE_PIXELS + k], &want, sizeof want) == 0,
                              "image %d pixel %d: byte %u gave %.9g, want %.9g", 100 + i, k, p,
                              (double)x[i * SLICE_PIXELS + k], (double)want);
                seen_mid += p > 0 && p < 255;
            }
            ck_assert_float_eq(y[i], (float)lab[8 + 100 + i]);
        }
        ck_assert_int_gt(seen_mid, 100);
        cd_tensor_free(t);
        cd_tensor_free(l);
    }
    cd_dataset_free(ds);
    free(raw);
    free(lab);
}
END_TEST

START_TEST(test_load_idx_errors)
{
    char dir[256], im[512], lb[512], lb2[512], big[512];
    cd_dataset *ds = (cd_dataset *)&ds; /* must be reset to NULL */
    cd_test_tmpdir(dir, sizeof dir);
    write_synthetic(dir, "im", "lb", 10, 10, -1);
    write_synthetic(dir, "im9", "lb9", 9, 10, -1);
    cd_test_path(im, sizeof im, dir, "im");
    cd_test_path(lb, sizeof lb, dir, "lb");
    cd_test_path(lb2, sizeof lb2, dir, "lb9");

    CD_ASSERT_STATUS(cd_dataset_load_idx(NULL, im, lb, NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, NULL, lb, NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(ds);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, NULL, NULL, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, lb, im, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, lb, NULL, lb), CD_ERR_INVALID_ARGUMENT);

    /* 10 images, 9 labels. */
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, lb2, NULL, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("lb9");
    ck_assert_ptr_null(ds);
    /* Labels and images swapped: the rank check names the file. */
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, lb, im, NULL, NULL), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("offset 3");
    /* Test images of another size. */
    char slice_im[512], slice_lb[512];
    slice_path(slice_im, sizeof slice_im, "t10k-images-idx3-ubyte.gz");
    slice_path(slice_lb, sizeof slice_lb, "t10k-labels-idx1-ubyte.gz");
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, lb, slice_im, slice_lb), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("28 x 28");
    CD_ASSERT_ERROR_MENTIONS("2 x 3");
    ck_assert_ptr_null(ds);
    CD_ASSERT_STATUS(cd_dataset_load_idx(&ds, im, cd_test_path(big, sizeof big, dir, "nope"), NULL,
                                         NULL),
                     CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("nope");

    /* load_idx takes any byte as a label. */
    write_synthetic(dir, "im", "lb", 300, 256, 5);
    CD_ASSERT_OK(cd_dataset_load_idx(&ds, im, lb, NULL, NULL));
    cd_dataset_free(ds);
}
END_TEST

/* ---- MNIST folders ------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t *buf = malloc(1 << 21);
    size_t n = fread(buf, 1, 1 << 21, f);
    fclose(f);
    cd_test_write_file(to, buf, n);
    free(buf);
}

/* Put the slice into dir under the four MNIST names; gz selects which of
 * the four are stored gzipped (bit i for name i). */
static void make_mnist_dir(const char *dir, unsigned gz)
{
    static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    static const char *const slice[4] = {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        char from[512], to[512], name[64];
        slice_path(from, sizeof from, slice[i]);
        snprintf(name, sizeof name, "%s%s", names[i], (gz >> i) & 1 ? ".gz" : "");
        cd_test_path(to, sizeof to, dir, name);
        if ((gz >> i) & 1) {
            copy_file(from, to);
        } else {
            size_t n = 0;
            uint8_t *raw = gunzip_file(from, &n);
            cd_test_write_file(to, raw, n);
            free(raw);
        }
    }
}

START_TEST(test_load_mnist)
{
    static const unsigned variants[3] = {0xF, 0x0, 0x5};
    for (int v = 0; v < 3; v++) {
        char dir[256];
        cd_test_tmpdir(dir, sizeof dir);
        make_mnist_dir(dir, variants[v]);
        cd_dataset *ds = NULL;
        CD_ASSERT_OK(cd_dataset_load_mnist(&ds, dir));
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), SLICE_N);
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 0);
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TEST), SLICE_N);
        ck_assert_int_eq(cd_dataset_height(ds), 28);
        /* Same numbers as the gzipped slice loaded directly. */
        cd_dataset *ref = load_slice();
        int64_t shape[4] = {50, 1, 28, 28}, got = 0;
        cd_tensor *a = NULL, *b = NULL;
        CD_ASSERT_OK(cd_tensor_create(&a, 4, shape));
        CD_ASSERT_OK(cd_tensor_create(&b, 4, shape));
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TEST, 950, a, NULL, &got));
        CD_ASSERT_OK(cd_dataset_fill_batch(ref, CD_SPLIT_TEST, 950, b, NULL, &got));
        ck_assert_mem_eq(cd_tensor_data(a), cd_tensor_data(b), 50 * SLICE_PIXELS * 4);
        cd_tensor_free(a);
        cd_tensor_free(b);
        cd_dataset_free(ref);
        cd_dataset_free(ds);
    }
}
END_TEST

START_TEST(test_load_mnist_errors)
{
    char dir[256], path[512];
    cd_dataset *ds = NULL;
    CD_ASSERT_STATUS(cd_dataset_load_mnist(NULL, "x"), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_load_mnist(&ds, NULL), CD_ERR_INVALID_ARGUMENT);

    cd_test_tmpdir(dir, sizeof dir);
    make_mnist_dir(dir, 0xF);
    ck_assert_int_eq(remove(cd_test_path(path, sizeof path, dir, "t10k-labels-idx1-ubyte.gz")), 0);
    CD_ASSERT_STATUS(cd_dataset_load_mnist(&ds, dir), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("t10k-labels-idx1-ubyte'");
    CD_ASSERT_ERROR_MENTIONS("t10k-labels-idx1-ubyte.gz'");
    ck_assert_ptr_null(ds);

    cd_test_path(path, sizeof path, dir, "no-such-folder");
    CD_ASSERT_STATUS(cd_dataset_load_mnist(&ds, path), CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("train-images-idx3-ubyte");
    CD_ASSERT_ERROR_MENTIONS("does not exist");

    /* A label above 9 is not MNIST: the file and the label's offset. */
    cd_test_tmpdir(dir, sizeof dir);
    make_mnist_dir(dir, 0xF);
    write_synthetic(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 20, 10, 13);
    write_synthetic(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 20, 10, -1);
    CD_ASSERT_STATUS(cd_dataset_load_mnist(&ds, dir), CD_ERR_FORMAT);
    CD_ASSERT_ERROR_MENTIONS("train-labels-idx1-ubyte'");
    CD_ASSERT_ERROR_MENTIONS("offset 21");
    ck_assert_ptr_null(ds);

    /* Train 2 x 3 but test 28 x 28 (the raw names win over the .gz). */
    write_synthetic(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 20, 10, -1);
    CD_ASSERT_OK(cd_dataset_load_mnist(&ds, dir));
    cd_dataset_free(ds);
    remove(cd_test_path(path, sizeof path, dir, "t10k-images-idx3-ubyte"));
    remove(cd_test_path(path, sizeof path, dir, "t10k-labels-idx1-ubyte"));
    CD_ASSERT_STATUS(cd_dataset_load_mnist(&ds, dir), CD_ERR_SHAPE);
    ck_assert_ptr_null(ds);
}
END_TEST

/* ---- splits ------------------------------------------------------------- */

START_TEST(test_split_sizes)
{
    cd_dataset *ds = load_slice();
    static const double fractions[5] = {0.2, 0.0, 0.5, 0.999, 0.1234};
    static const int64_t train[5] = {800, 1000, 500, 1, 877};
    for (int i = 0; i < 5; i++) {
        CD_ASSERT_OK(cd_dataset_split(ds, fractions[i], 42));
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), train[i]);
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), SLICE_N - train[i]);
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TEST), SLICE_N);
    }
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_split_errors)
{
    cd_dataset *ds = load_slice();
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 1));
    static const double bad[5] = {-0.1, 1.0, 1.5, NAN, INFINITY};
    for (int i = 0; i < 5; i++) {
        CD_ASSERT_STATUS(cd_dataset_split(ds, bad[i], 1), CD_ERR_RANGE);
        CD_ASSERT_ERROR_MENTIONS("val_fraction");
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 800);
    }
    CD_ASSERT_STATUS(cd_dataset_split(NULL, 0.2, 1), CD_ERR_INVALID_ARGUMENT);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_split_partition_and_determinism)
{
    char dir[256];
    cd_dataset *ds = load_synthetic(dir, sizeof dir, 1000);
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 42));
    int64_t *tr = split_indices(ds, CD_SPLIT_TRAIN, 0);
    int64_t *va = split_indices(ds, CD_SPLIT_VAL, 0);
    /* train and val together are 0..999, each once. */
    int64_t all[1000], ident[1000];
    memcpy(all, tr, 800 * sizeof *all);
    memcpy(all + 800, va, 200 * sizeof *all);
    for (int i = 0; i < 1000; i++) ident[i] = i;
    ck_assert(same_set(all, ident, 1000, 1000));
    /* A random split, not the first 800. */
    ck_assert(memcmp(all, ident, sizeof all) != 0);

    /* The same seed again, on the same or another dataset object. */
    CD_ASSERT_OK(cd_dataset_split(ds, 0.5, 7));
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 42));
    int64_t *tr2 = split_indices(ds, CD_SPLIT_TRAIN, 0);
    ck_assert_mem_eq(tr, tr2, 800 * sizeof *tr);
    char dir2[256];
    cd_dataset *other = load_synthetic(dir2, sizeof dir2, 1000);
    CD_ASSERT_OK(cd_dataset_split(other, 0.2, 42));
    int64_t *tr3 = split_indices(other, CD_SPLIT_TRAIN, 0);
    ck_assert_mem_eq(tr, tr3, 800 * sizeof *tr);

    /* Another seed, another split. */
    CD_ASSERT_OK(cd_dataset_split(other, 0.2, 43));
    int64_t *tr4 = split_indices(other, CD_SPLIT_TRAIN, 0);
    ck_assert(memcmp(tr, tr4, 800 * sizeof *tr) != 0);

    /* Right after a split, the epoch order is the natural order. */
    int64_t *ep = split_indices(ds, CD_SPLIT_TRAIN, 1);
    ck_assert_mem_eq(tr, ep, 800 * sizeof *tr);
    free(tr);
    free(va);
    free(tr2);
    free(tr3);
    free(tr4);
    free(ep);
    cd_dataset_free(ds);
    cd_dataset_free(other);
}
END_TEST

/* The split algorithm documented in colddiff.h, pinned: these indices were
 * computed by an independent Python implementation of Philox4x32-10 and
 * the documented Fisher-Yates loop. If they change, every user's seeded
 * split changes. */
START_TEST(test_split_reference_indices)
{
    char dir[256];
    cd_dataset *ds = load_synthetic(dir, sizeof dir, 1000);
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 42));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 800);
    int64_t *tr = split_indices(ds, CD_SPLIT_TRAIN, 0);
    int64_t *va = split_indices(ds, CD_SPLIT_VAL, 0);
    const int64_t want_tr[8] = {155, 183, 737, 484, 798, 447, 874, 194};
    const int64_t want_va[8] = {577, 246, 444, 36, 171, 393, 768, 385};
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(tr[i], want_tr[i]);
        ck_assert_int_eq(va[i], want_va[i]);
    }
    free(tr);
    free(va);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_split_from_file)
{
    char dir[256], path[512];
    cd_dataset *ds = load_synthetic(dir, sizeof dir, 10);
    cd_test_path(path, sizeof path, dir, "split.txt");
    static const int64_t want_tr[3] = {3, 1, 7}, want_va[7] = {0, 2, 4, 5, 6, 8, 9};
    static const char *const good[4] = {"3\n1\n7\n", "3\n1\n7", "3\r\n1\r\n7\r\n",
                                        " 3 \n1\t\n07\n"};
    for (int i = 0; i < 4; i++) {
        write_text(path, good[i]);
        CD_ASSERT_OK(cd_dataset_split_from_file(ds, path));
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 3);
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 7);
        int64_t *tr = split_indices(ds, CD_SPLIT_TRAIN, 0);
        int64_t *va = split_indices(ds, CD_SPLIT_VAL, 0);
        ck_assert_mem_eq(tr, want_tr, sizeof want_tr);
        ck_assert_mem_eq(va, want_va, sizeof want_va);
        free(tr);
        free(va);
    }
    /* All ten: an empty validation split. */
    write_text(path, "9\n8\n7\n6\n5\n4\n3\n2\n1\n0\n");
    CD_ASSERT_OK(cd_dataset_split_from_file(ds, path));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 10);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), 0);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_split_from_file_errors)
{
    char dir[256], path[512];
    cd_dataset *ds = load_synthetic(dir, sizeof dir, 10);
    CD_ASSERT_OK(cd_dataset_split(ds, 0.3, 5));
    cd_test_path(path, sizeof path, dir, "bad-split.txt");
    static const struct {
        const char *text, *mention;
    } bad[] = {
        {"1\n2\n1\n", "line 3: index 1 already appeared on line 1"},
        {"1\n10\n", "line 2: index 10 is outside"},
        {"1\n99999999999999999999999999\n", "line 2: index 9999"},
        {"-1\n", "line 1: negative"},
        {"1\nabc\n", "line 2"},
        {"1\n12x\n", "line 2"},
        {"1\n2 3\n", "line 2"},
        {"1\n\n2\n", "line 2: empty line"},
        {"+1\n", "line 1"},
        {"", "no indices"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        CD_ASSERT_STATUS(cd_dataset_split_from_file(ds, path), CD_ERR_FORMAT);
        CD_ASSERT_ERROR_MENTIONS("bad-split.txt");
        CD_ASSERT_ERROR_MENTIONS(bad[i].mention);
        /* A failed call leaves the earlier split alone. */
        ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 7);
    }
    CD_ASSERT_STATUS(cd_dataset_split_from_file(ds, cd_test_path(path, sizeof path, dir, "none")),
                     CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("none");
    CD_ASSERT_STATUS(cd_dataset_split_from_file(ds, dir), CD_ERR_IO);
    /* A FIFO without a writer is refused at once, not waited on. */
    ck_assert_int_eq(mkfifo(cd_test_path(path, sizeof path, dir, "fifo"), 0600), 0);
    CD_ASSERT_STATUS(cd_dataset_split_from_file(ds, path), CD_ERR_IO);
    CD_ASSERT_ERROR_MENTIONS("FIFO");
    CD_ASSERT_STATUS(cd_dataset_split_from_file(NULL, path), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_split_from_file(ds, NULL), CD_ERR_INVALID_ARGUMENT);
    cd_dataset_free(ds);
}
END_TEST

/* ---- shuffles and batches ------------------------------------------------ */

START_TEST(test_shuffle)
{
    char dir[256];
    cd_dataset *ds = load_synthetic(dir, sizeof dir, 300);
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 42));
    for (cd_split split = CD_SPLIT_TRAIN; split <= CD_SPLIT_VAL; split++) {
        int64_t n = cd_dataset_count(ds, split);
        int64_t *nat = split_indices(ds, split, 0);
        cd_rng *a = NULL, *b = NULL;
        CD_ASSERT_OK(cd_rng_create(&a, 7));
        CD_ASSERT_OK(cd_rng_create(&b, 7));
        CD_ASSERT_OK(cd_dataset_shuffle(ds, split, a));
        int64_t *e1 = split_indices(ds, split, 1);
        ck_assert(same_set(e1, nat, n, 300));
        ck_assert(memcmp(e1, nat, (size_t)n * sizeof *nat) != 0);
        /* gather keeps using the natural order. */
        int64_t *nat2 = split_indices(ds, split, 0);
        ck_assert_mem_eq(nat, nat2, (size_t)n * sizeof *nat);

        /* The next draw from a differs; b (same seed) repeats the first one,
         * since a shuffle always starts from the natural order. */
        CD_ASSERT_OK(cd_dataset_shuffle(ds, split, a));
        int64_t *e2 = split_indices(ds, split, 1);
        ck_assert(same_set(e2, nat, n, 300));
        ck_assert(memcmp(e1, e2, (size_t)n * sizeof *e1) != 0);
        CD_ASSERT_OK(cd_dataset_shuffle(ds, split, b));
        int64_t *e3 = split_indices(ds, split, 1);
        ck_assert_mem_eq(e1, e3, (size_t)n * sizeof *e1);
        free(nat);
        free(nat2);
        free(e1);
        free(e2);
        free(e3);
        cd_rng_free(a);
        cd_rng_free(b);
    }
    /* A new split resets the epoch order. */
    CD_ASSERT_OK(cd_dataset_split(ds, 0.2, 42));
    int64_t *nat = split_indices(ds, CD_SPLIT_TRAIN, 0);
    int64_t *ep = split_indices(ds, CD_SPLIT_TRAIN, 1);
    ck_assert_mem_eq(nat, ep, 240 * sizeof *nat);
    free(nat);
    free(ep);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_shuffle_test_split_and_errors)
{
    cd_dataset *ds = load_slice();
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    int64_t shape[4] = {SLICE_N, 1, 28, 28};
    cd_tensor *t = NULL, *lab = NULL, *lab0 = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, shape));
    CD_ASSERT_OK(cd_tensor_create(&lab, 1, shape));
    CD_ASSERT_OK(cd_tensor_create(&lab0, 1, shape));
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TEST, 0, t, lab0, NULL));
    CD_ASSERT_OK(cd_dataset_shuffle(ds, CD_SPLIT_TEST, rng));
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TEST, 0, t, lab, NULL));
    /* Labels reordered: same histogram, different sequence. */
    int h0[10] = {0}, h1[10] = {0};
    const float *y0 = cd_tensor_data(lab0), *y1 = cd_tensor_data(lab);
    for (int i = 0; i < SLICE_N; i++) {
        h0[(int)y0[i]]++;
        h1[(int)y1[i]]++;
    }
    ck_assert_mem_eq(h0, h1, sizeof h0);
    ck_assert(memcmp(y0, y1, SLICE_N * sizeof *y0) != 0);
    /* The empty validation split shuffles to nothing. */
    CD_ASSERT_OK(cd_dataset_shuffle(ds, CD_SPLIT_VAL, rng));

    CD_ASSERT_STATUS(cd_dataset_shuffle(NULL, CD_SPLIT_TRAIN, rng), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_shuffle(ds, CD_SPLIT_TRAIN, NULL), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_shuffle(ds, (cd_split)3, rng), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_shuffle(ds, (cd_split)-1, rng), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(t);
    cd_tensor_free(lab);
    cd_tensor_free(lab0);
    cd_rng_free(rng);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_fill_batch_partial)
{
    cd_dataset *ds = load_slice();
    int64_t shape[4] = {64, 1, 28, 28}, filled = -1;
    cd_tensor *t = NULL, *lab = NULL, *ref = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, shape));
    CD_ASSERT_OK(cd_tensor_create(&lab, 1, shape));
    CD_ASSERT_OK(cd_tensor_fill(t, NAN));
    CD_ASSERT_OK(cd_tensor_fill(lab, 7.0f));
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 960, t, lab, &filled));
    ck_assert_int_eq(filled, 40);
    const float *x = cd_tensor_data(t), *y = cd_tensor_data(lab);
    for (int64_t i = 40 * SLICE_PIXELS; i < 64 * SLICE_PIXELS; i++) ck_assert(x[i] == 0.0f);
    for (int i = 40; i < 64; i++) ck_assert(y[i] == 0.0f);
    for (int64_t i = 0; i < 40 * SLICE_PIXELS; i++) ck_assert(x[i] >= -0.5f && x[i] <= 0.5f);

    /* The real rows equal a gather of the same images. */
    int64_t idx[40];
    for (int i = 0; i < 40; i++) idx[i] = 960 + i;
    shape[0] = 40;
    CD_ASSERT_OK(cd_tensor_create(&ref, 4, shape));
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TRAIN, idx, 40, ref, NULL));
    ck_assert_mem_eq(cd_tensor_data(ref), x, 40 * SLICE_PIXELS * sizeof *x);

    /* The last position alone; filled may be NULL; labels may be NULL. */
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 999, t, NULL, &filled));
    ck_assert_int_eq(filled, 1);
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, t, lab, NULL));
    cd_tensor_free(t);
    cd_tensor_free(lab);
    cd_tensor_free(ref);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_fill_batch_errors)
{
    cd_dataset *ds = load_slice();
    int64_t good[4] = {8, 1, 28, 28}, filled = -1;
    int64_t wide[4] = {8, 1, 28, 27}, rgb[4] = {8, 3, 28, 28}, flat[2] = {8, 784};
    int64_t nine[1] = {9};
    cd_tensor *t = NULL, *tw = NULL, *tc = NULL, *tf = NULL, *l9 = NULL, *l2 = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, good));
    CD_ASSERT_OK(cd_tensor_create(&tw, 4, wide));
    CD_ASSERT_OK(cd_tensor_create(&tc, 4, rgb));
    CD_ASSERT_OK(cd_tensor_create(&tf, 2, flat));
    CD_ASSERT_OK(cd_tensor_create(&l9, 1, nine));
    CD_ASSERT_OK(cd_tensor_create(&l2, 2, flat));

    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, -1, t, NULL, &filled), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("-1");
    ck_assert_int_eq(filled, 0);
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 1000, t, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("1000");
    /* The validation split is empty until a split. */
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_VAL, 0, t, NULL, NULL), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("val");

    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, tw, NULL, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("28 x 28");
    CD_ASSERT_ERROR_MENTIONS("got 8 x 1 x 28 x 27");
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, tc, NULL, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("got 8 x 3 x 28 x 28");
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, tf, NULL, NULL), CD_ERR_SHAPE);
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, t, l9, NULL), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("labels");
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, t, l2, NULL), CD_ERR_SHAPE);

    CD_ASSERT_STATUS(cd_dataset_fill_batch(NULL, CD_SPLIT_TRAIN, 0, t, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, NULL, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_fill_batch(ds, (cd_split)5, 0, t, NULL, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(t);
    cd_tensor_free(tw);
    cd_tensor_free(tc);
    cd_tensor_free(tf);
    cd_tensor_free(l9);
    cd_tensor_free(l2);
    cd_dataset_free(ds);
}
END_TEST

START_TEST(test_gather)
{
    char path[512];
    size_t nl = 0;
    uint8_t *raw = gunzip_file(slice_path(path, sizeof path, "t10k-labels-idx1-ubyte.gz"), &nl);
    cd_dataset *ds = load_slice();
    int64_t shape[4] = {3, 1, 28, 28}, idx[3] = {5, 0, 999};
    cd_tensor *t = NULL, *lab = NULL, *one = NULL;
    CD_ASSERT_OK(cd_tensor_create(&t, 4, shape));
    CD_ASSERT_OK(cd_tensor_create(&lab, 1, shape));
    shape[0] = 1;
    CD_ASSERT_OK(cd_tensor_create(&one, 4, shape));
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, 3, t, lab));
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(cd_tensor_data(lab)[i], (float)raw[8 + idx[i]]);
        int64_t filled = 0;
        CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TEST, idx[i], one, NULL, &filled));
        ck_assert_mem_eq(cd_tensor_data(one), cd_tensor_data(t) + i * SLICE_PIXELS,
                         SLICE_PIXELS * sizeof(float));
    }

    /* Errors: a bad index is named by position and leaves the tensor alone. */
    CD_ASSERT_OK(cd_tensor_fill(t, 3.0f));
    int64_t bad[3] = {0, 1000, 2};
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, bad, 3, t, lab), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("idx[1] = 1000");
    ck_assert(cd_tensor_data(t)[0] == 3.0f);
    bad[1] = -4;
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, bad, 3, t, lab), CD_ERR_RANGE);
    CD_ASSERT_ERROR_MENTIONS("idx[1] = -4");
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_VAL, idx, 3, t, lab), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, 0, t, lab), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, 2, t, lab), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("got 3 x 1 x 28 x 28");
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, 1, one, lab), CD_ERR_SHAPE);
    CD_ASSERT_ERROR_MENTIONS("labels");
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, NULL, 3, t, lab),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_gather(NULL, CD_SPLIT_TEST, idx, 3, t, lab),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_gather(ds, CD_SPLIT_TEST, idx, 3, NULL, lab),
                     CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_gather(ds, (cd_split)9, idx, 3, t, lab), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(t);
    cd_tensor_free(lab);
    cd_tensor_free(one);
    cd_dataset_free(ds);
    free(raw);
}
END_TEST

START_TEST(test_getters_errors)
{
    cd_clear_error();
    ck_assert_int_eq(cd_dataset_count(NULL, CD_SPLIT_TRAIN), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_dataset_height(NULL), -1);
    ck_assert_str_ne(cd_last_error(), "");
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_dataset_width(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_clear_error();
    ck_assert_int_eq(cd_dataset_channels(NULL), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    cd_dataset *ds = load_slice();
    cd_clear_error();
    ck_assert_int_eq(cd_dataset_count(ds, (cd_split)3), -1);
    ck_assert_int_eq(cd_last_status(), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_ERROR_MENTIONS("split");
    cd_dataset_free(ds);
}
END_TEST

/* Truncation keeps the head of the natural order, resets the epoch order,
 * and leaves the other splits alone. */
START_TEST(test_truncate)
{
    cd_dataset *ds = load_slice();
    const int64_t nval = cd_dataset_count(ds, CD_SPLIT_VAL);
    cd_tensor *before = NULL, *after = NULL;
    CD_ASSERT_OK(cd_tensor_create(&before, 4, (int64_t[]){10, 1, 28, 28}));
    CD_ASSERT_OK(cd_tensor_create(&after, 4, (int64_t[]){10, 1, 28, 28}));
    int64_t idx[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    CD_ASSERT_OK(cd_dataset_gather(ds, CD_SPLIT_TRAIN, idx, 10, before, NULL));
    cd_rng *rng = NULL;
    CD_ASSERT_OK(cd_rng_create(&rng, 3));
    CD_ASSERT_OK(cd_dataset_shuffle(ds, CD_SPLIT_TRAIN, rng));
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_TRAIN, 10));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 10);
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_VAL), nval);
    int64_t filled = 0;
    CD_ASSERT_OK(cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, after, NULL, &filled));
    ck_assert_int_eq(filled, 10);
    ck_assert(memcmp(cd_tensor_data(before), cd_tensor_data(after), 10 * 784 * sizeof(float)) == 0);
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_TRAIN, 1000)); /* above the count: no-op */
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 10);
    CD_ASSERT_STATUS(cd_dataset_truncate(ds, CD_SPLIT_TRAIN, -1), CD_ERR_RANGE);
    CD_ASSERT_STATUS(cd_dataset_truncate(NULL, CD_SPLIT_TRAIN, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd_dataset_truncate(ds, (cd_split)5, 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_OK(cd_dataset_truncate(ds, CD_SPLIT_TRAIN, 0));
    ck_assert_int_eq(cd_dataset_count(ds, CD_SPLIT_TRAIN), 0);
    cd_rng_free(rng);
    cd_tensor_free(before), cd_tensor_free(after);
    cd_dataset_free(ds);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *load = tcase_create("load");
    tcase_add_test(load, test_load_slice);
    tcase_add_test(load, test_normalisation_exact);
    tcase_add_test(load, test_load_idx_errors);
    tcase_add_test(load, test_load_mnist);
    tcase_add_test(load, test_load_mnist_errors);
    suite_add_tcase(s, load);
    TCase *split = tcase_create("split");
    tcase_add_test(split, test_split_sizes);
    tcase_add_test(split, test_split_errors);
    tcase_add_test(split, test_split_partition_and_determinism);
    tcase_add_test(split, test_split_reference_indices);
    tcase_add_test(split, test_split_from_file);
    tcase_add_test(split, test_split_from_file_errors);
    suite_add_tcase(s, split);
    TCase *batch = tcase_create("batch");
    tcase_add_test(batch, test_shuffle);
    tcase_add_test(batch, test_shuffle_test_split_and_errors);
    tcase_add_test(batch, test_fill_batch_partial);
    tcase_add_test(batch, test_fill_batch_errors);
    tcase_add_test(batch, test_gather);
    tcase_add_test(batch, test_truncate);
    tcase_add_test(batch, test_getters_errors);
    suite_add_tcase(s, batch);
    return s;
}

CD_TEST_MAIN(make_suite)
