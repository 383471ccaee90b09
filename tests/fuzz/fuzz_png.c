/*
 * fuzz_png.c - PNG folders (lib/data/folder.c): the input is written as the
 * only PNG file of a folder and loaded with cd_dataset_load_folder, then
 * again as the second image of a class folder after a valid 4 x 4 grey
 * image, so that a failure after the pool is allocated, or an image of
 * another size, is reached too.
 *
 * Each input is tried twice: as it is, which exercises the checks of the
 * signature and of every chunk's CRC, and with the CRCs of its chunks set
 * right, since otherwise almost every mutation would stop at the first
 * checksum and the chunk contents would go unfuzzed.
 *
 * A load that succeeds must keep the promises of include/colddiff.h: one
 * image of 1 or 3 channels and at most 4096 pixels a side, every value one
 * of p/255 - 0.5, and the same pixels when loaded again as grey (the luma
 * of an RGB image), as RGB (a grey image repeated) or centre-cropped.
 */
#include "fuzz_util.h"

#include <math.h>
#include <sys/stat.h>
#include <zlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SIDE 4096

static char one_dir[300], one_png[340];                         /* <dir>/one/in.png */
static char two_dir[300], two_cls[320], two_a[360], two_b[360]; /* <dir>/two/c/{a,b}.png */

static void remove_folders(void)
{
    unlink(one_png);
    rmdir(one_dir);
    unlink(two_a);
    unlink(two_b);
    rmdir(two_cls);
    rmdir(two_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_files_init();
    snprintf(one_dir, sizeof one_dir, "%s/one", fuzz_dir);
    snprintf(one_png, sizeof one_png, "%s/in.png", one_dir);
    snprintf(two_dir, sizeof two_dir, "%s/two", fuzz_dir);
    snprintf(two_cls, sizeof two_cls, "%s/c", two_dir);
    snprintf(two_a, sizeof two_a, "%s/a.png", two_cls);
    snprintf(two_b, sizeof two_b, "%s/b.png", two_cls);
    if (mkdir(one_dir, 0700) != 0 || mkdir(two_dir, 0700) != 0 || mkdir(two_cls, 0700) != 0)
        fuzz_die("cannot create the folders under", fuzz_dir);
    /* Runs before fuzz_util's own clean-up, which removes fuzz_dir. */
    atexit(remove_folders);
    const uint8_t grey[16] = {0,   17,  34,  51,  68,  85,  102, 119,
                              136, 153, 170, 187, 204, 221, 238, 255};
    if (cd_png_write_gray(two_a, grey, 4, 4) != CD_OK)
        fuzz_die("cd_png_write_gray", cd_last_error());
    return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) fuzz_die("cannot write", path);
}

/* A copy of data whose chunks (after the 8-byte signature: length, type,
 * data, CRC) carry the right CRC; a last chunk cut short is left as it is.
 * NULL when nothing needed repair. */
static uint8_t *with_crcs_set(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL;
    for (size_t at = 8; at + 12 <= size;) {
        const uint32_t len = (uint32_t)data[at] << 24 | (uint32_t)data[at + 1] << 16 |
                             (uint32_t)data[at + 2] << 8 | data[at + 3];
        if (len > size - at - 12) break;
        const uLong crc = crc32(0, data + at + 4, (uInt)len + 4);
        const uint8_t want[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                                 (uint8_t)crc};
        uint8_t *p = (out ? out : (uint8_t *)(uintptr_t)data) + at + 8 + len;
        if (memcmp(p, want, 4) != 0) {
            if (!out) {
                if (!(out = malloc(size))) fuzz_die("with_crcs_set", "out of memory");
                memcpy(out, data, size);
                p = out + at + 8 + len;
            }
            memcpy(p, want, 4);
        }
        at += 12 + (size_t)len;
    }
    return out;
}

/* The bytes p behind ds's one image (C x H x W, malloc'd), every float
 * checked to be exactly p/255 - 0.5, as the header promises. */
static uint8_t *pixels_of(const cd_dataset *ds, const char *what)
{
    const int64_t C = cd_dataset_channels(ds), H = cd_dataset_height(ds), W = cd_dataset_width(ds);
    if (cd_dataset_count(ds, CD_SPLIT_TRAIN) != 1 || cd_dataset_count(ds, CD_SPLIT_TEST) != 0)
        fuzz_die(what, "a folder of one PNG gave another image count");
    if ((C != 1 && C != 3) || H < 1 || W < 1 || H > MAX_SIDE || W > MAX_SIDE)
        fuzz_die(what, "channels or size out of range");
    const int64_t shape[4] = {1, C, H, W}, n = C * H * W;
    cd_tensor *t = NULL;
    uint8_t *bytes = malloc((size_t)n);
    if (!bytes || cd_tensor_create(&t, 4, shape) != CD_OK) fuzz_die(what, "out of memory");
    if (cd_dataset_fill_batch(ds, CD_SPLIT_TRAIN, 0, t, NULL, NULL) != CD_OK)
        fuzz_die("cd_dataset_fill_batch", cd_last_error());
    const float *v = cd_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        const long p = lroundf((v[i] + 0.5f) * 255.0f);
        if (p < 0 || p > 255 || (float)((float)p / 255.0f) - 0.5f != v[i])
            fuzz_die(what, "a pixel that is not p/255 - 0.5");
        bytes[i] = (uint8_t)p;
    }
    cd_tensor_free(t);
    return bytes;
}

static cd_dataset *load(const char *dir, int64_t channels, int64_t crop, const char *what)
{
    cd_dataset *ds = (cd_dataset *)&ds;
    cd_status st = cd_dataset_load_folder(&ds, dir, channels, crop);
    if (st == CD_OK) return ds;
    fuzz_check_failure(st, what);
    if (ds) fuzz_die(what, "failed but set *out");
    return NULL;
}

/* The file that loaded once loads again, the same, in the other channel
 * count and cropped. */
static void reload(const cd_dataset *ds)
{
    const int64_t C = cd_dataset_channels(ds), H = cd_dataset_height(ds), W = cd_dataset_width(ds),
                  plane = H * W;
    uint8_t *px = pixels_of(ds, "cd_dataset_load_folder");
    cd_dataset *other = load(one_dir, C == 1 ? 3 : 1, 0, "cd_dataset_load_folder (converted)");
    if (!other) fuzz_die("cd_dataset_load_folder", "a file that loaded failed converted");
    uint8_t *conv = pixels_of(other, "cd_dataset_load_folder (converted)");
    for (int64_t i = 0; i < plane; i++) {
        const unsigned luma =
            C == 3 ? (299u * px[i] + 587u * px[plane + i] + 114u * px[2 * plane + i] + 500u) / 1000u
                   : 0;
        if (C == 1 &&
            (conv[i] != px[i] || conv[plane + i] != px[i] || conv[2 * plane + i] != px[i]))
            fuzz_die("cd_dataset_load_folder", "grey loaded as RGB is not the grey repeated");
        if (C == 3 && conv[i] != luma)
            fuzz_die("cd_dataset_load_folder", "RGB loaded as grey is not its luma");
    }
    free(conv);
    cd_dataset_free(other);

    const int64_t s = H < W ? H : W, top = (H - s) / 2, left = (W - s) / 2;
    cd_dataset *cropped = load(one_dir, 0, s, "cd_dataset_load_folder (cropped)");
    if (!cropped) fuzz_die("cd_dataset_load_folder", "a file that loaded failed cropped");
    if (cd_dataset_height(cropped) != s || cd_dataset_width(cropped) != s)
        fuzz_die("cd_dataset_load_folder", "the crop has the wrong size");
    uint8_t *cut = pixels_of(cropped, "cd_dataset_load_folder (cropped)");
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < s; y++)
            if (memcmp(cut + (c * s + y) * s, px + c * plane + (top + y) * W + left, (size_t)s))
                fuzz_die("cd_dataset_load_folder", "the crop is not the image's centre");
    free(cut);
    cd_dataset_free(cropped);
    free(px);
}

static void try_file(const uint8_t *data, size_t size)
{
    write_file(one_png, data, size);
    cd_dataset *ds = load(one_dir, 0, 0, "cd_dataset_load_folder");
    if (ds) {
        if (cd_dataset_class_count(ds) != 0) fuzz_die("cd_dataset_load_folder", "a class count");
        reload(ds);
        cd_dataset_free(ds);
    }
    /* After the valid a.png: the pool exists when b.png is decoded. */
    write_file(two_b, data, size);
    ds = load(two_dir, 0, 0, "cd_dataset_load_folder (second image)");
    if (ds) {
        if (cd_dataset_count(ds, CD_SPLIT_TRAIN) != 2 || cd_dataset_height(ds) != 4 ||
            cd_dataset_width(ds) != 4 || cd_dataset_class_count(ds) != 1)
            fuzz_die("cd_dataset_load_folder", "two images of one class came back otherwise");
        cd_dataset_free(ds);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_file(data, size);
    uint8_t *fixed = with_crcs_set(data, size);
    if (fixed) {
        try_file(fixed, size);
        free(fixed);
    }
    return 0;
}
