/*
 * fuzz_idx.c - the IDX reader (lib/data/idx.c), raw and gzip: the input is
 * one file, read as labels (rank 1) and as images (rank 3). An image file
 * that loads then goes through cd_dataset_load_idx with matching labels
 * (and a label file with matching 1 x 1 images), as the public API reads
 * MNIST, and a batch, the mean image and a split are taken from it.
 */
#include "data/idx.h"
#include "fuzz_util.h"

#include <stdbool.h>
#include <zlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_files_init();
    return 0;
}

static void put_be32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (24 - 8 * i));
}

/* A valid IDX file of rank 1 (n labels 0..9) or 3 (n images of 1 x 1). */
static const char *companion(int slot, uint32_t rank, uint32_t n)
{
    size_t header = 4 + 4 * (size_t)rank;
    uint8_t *buf = calloc(header + n, 1);
    if (!buf) fuzz_die("companion file", "out of memory");
    buf[2] = 0x08;
    buf[3] = (uint8_t)rank;
    put_be32(buf + 4, n);
    for (uint32_t d = 1; d < rank; d++) put_be32(buf + 4 + 4 * d, 1);
    for (uint32_t i = 0; i < n; i++) buf[header + i] = (uint8_t)(i % 10);
    const char *path = fuzz_write(slot, buf, header + n);
    free(buf);
    return path;
}

/* The input as complete gzip members and nothing else, inflated into a
 * malloc'd *out; false for anything else (a stream cut short or missing
 * its CRC and length trailer, bytes after the last member). */
static bool strict_gunzip(const uint8_t *data, size_t size, uint8_t **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (!buf || inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fuzz_die("strict_gunzip", "zlib");
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)size;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (len == cap && !(buf = realloc(buf, cap *= 2))) fuzz_die("strict_gunzip", "memory");
        zs.next_out = buf + len;
        zs.avail_out = (uInt)(cap - len);
        rc = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        /* Another member may follow the one that just ended. */
        if (rc == Z_STREAM_END && zs.avail_in > 0) rc = inflateReset(&zs);
        if (rc == Z_BUF_ERROR && zs.avail_out > 0) break; /* input ended inside a member */
        if (rc == Z_BUF_ERROR) rc = Z_OK;
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return false;
    }
    *out = buf;
    *out_len = len;
    return true;
}

/* What a successful load promises: fields that agree with each other, and
 * exactly the bytes of the file (for gzip, of its inflated members). */
static void check_loaded(const cd__idx *idx, uint32_t rank, const uint8_t *data, size_t size)
{
    uint64_t count = 1;
    for (uint32_t i = 0; i < rank; i++) count *= idx->dims[i];
    if (idx->rank != rank || idx->count != count || idx->header_bytes != 4 + 4 * rank)
        fuzz_die("cd__idx_load", "the header fields disagree with the dimensions");
    uint8_t *plain = (uint8_t *)(uintptr_t)data;
    size_t plain_len = size;
    if (idx->gzip && !strict_gunzip(data, size, &plain, &plain_len))
        fuzz_die("cd__idx_load", "accepted a gzip file that is not complete gzip members");
    if (idx->header_bytes + idx->count != plain_len ||
        memcmp(plain + idx->header_bytes, idx->data, (size_t)idx->count) != 0)
        fuzz_die("cd__idx_load", "the payload is not the file's bytes after the header");
    if (idx->gzip) free(plain);
}

static void use_dataset(const char *images, const char *labels)
{
    cd_dataset *ds = NULL;
    cd_status st = cd_dataset_load_idx(&ds, images, labels, images, labels);
    if (st != CD_OK) {
        fuzz_check_failure(st, "cd_dataset_load_idx");
        if (ds) fuzz_die("cd_dataset_load_idx", "failed but set *out");
        return;
    }
    int64_t shape[4] = {2, cd_dataset_channels(ds), cd_dataset_height(ds), cd_dataset_width(ds)};
    cd_tensor *batch = NULL, *labels_t = NULL, *mean = NULL;
    int64_t filled = 0, two = 2;
    if (cd_tensor_create(&batch, 4, shape) == CD_OK &&
        cd_tensor_create(&labels_t, 1, &two) == CD_OK)
        cd_dataset_fill_batch(ds, CD_SPLIT_TEST, 0, batch, labels_t, &filled);
    if (cd_tensor_create(&mean, 3, shape + 1) == CD_OK)
        cd_dataset_mean_image(ds, CD_SPLIT_TRAIN, mean);
    cd_dataset_split(ds, 0.5, 7);
    cd_tensor_free(mean);
    cd_tensor_free(labels_t);
    cd_tensor_free(batch);
    cd_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(0, data, size);
    static const uint32_t ranks[2] = {1, 3};
    for (int r = 0; r < 2; r++) {
        cd__idx idx;
        cd_status st = cd__idx_load(path, ranks[r], &idx);
        if (st != CD_OK) {
            fuzz_check_failure(st, "cd__idx_load");
            static const cd__idx zero;
            if (memcmp(&idx, &zero, sizeof idx) != 0)
                fuzz_die("cd__idx_load", "failed but left *out non-zero");
            continue;
        }
        check_loaded(&idx, ranks[r], data, size);
        uint32_t n = idx.dims[0];
        cd__idx_free(&idx);
        if (ranks[r] == 3)
            use_dataset(path, companion(1, 1, n));
        else
            use_dataset(companion(1, 3, n), path);
    }
    return 0;
}
