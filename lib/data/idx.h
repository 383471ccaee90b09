/*
 * idx.h - internal reader for unsigned-byte IDX files (the MNIST format),
 * raw or gzipped. Nothing here is exported.
 *
 * An IDX file is big-endian: a 4-byte magic 00 00 <type> <rank>, then rank
 * 4-byte dimensions, then the product of the dimensions in elements. Only
 * type 0x08 (unsigned byte) is supported. For gzipped files an offset in an
 * error message refers to the uncompressed stream unless it says
 * "compressed offset". A gzip file must end with its last member's CRC and
 * length trailer: a cut stream and bytes after it are errors, as short and
 * over-long raw files are. Concatenated members count as one stream.
 */
#ifndef CD_DATA_IDX_H
#define CD_DATA_IDX_H

#include "core.h"

#include <stdbool.h>
#include <stdint.h>

/* The largest payload accepted (4 GiB). A header claiming more is treated as
 * lying: MNIST-like data sets are far below it. */
#define CD__IDX_MAX_BYTES ((uint64_t)1 << 32)

/* The largest rank accepted; images are 3, labels 1. */
#define CD__IDX_MAX_RANK 4

typedef struct cd__idx {
    uint32_t rank;
    uint32_t dims[CD__IDX_MAX_RANK];
    uint64_t count;        /* product of dims: payload bytes */
    uint64_t header_bytes; /* 4 + 4*rank: the offset of data[0] */
    bool gzip;             /* the file was gzip-compressed */
    uint8_t *data;         /* count bytes, owned; free with cd__idx_free */
} cd__idx;

/*
 * Read the whole IDX file at path, which must have rank expect_rank
 * (1 for labels, 3 for images). *out is written only on success and zeroed
 * on failure. Errors: CD_ERR_NOT_FOUND (no such file), CD_ERR_IO (not a
 * regular file, e.g. a FIFO, refused without waiting; other open/read
 * failures, with strerror), CD_ERR_FORMAT (not IDX, unsupported type, wrong
 * rank, zero or oversized dimensions, truncated, trailing data, corrupt or
 * cut gzip stream), CD_ERR_OUT_OF_MEMORY. Messages name the path and offset.
 *
 * Memory: a header may lie about the size, so the buffer never exceeds
 * what the file really holds (raw files are checked against their size
 * before reading; gzip streams are read into a buffer that grows at most
 * to twice the bytes actually decompressed, with a 1 MiB floor).
 */
cd_status cd__idx_load(const char *path, uint32_t expect_rank, cd__idx *out);

/* Release the buffer and zero *idx; NULL or a zeroed struct is a no-op. */
void cd__idx_free(cd__idx *idx);

/* The largest payload buffer the calling thread's last cd__idx_load
 * allocated, in bytes (for tests of the lying-header defence). */
uint64_t cd__idx_last_alloc_bytes(void);

#endif /* CD_DATA_IDX_H */
