/*
 * ckpt_read.c - reading a checkpoint (cd__ckpt_read): read and check the
 * 56-byte header first, then the compressed body whose length the header
 * gives and the file's size confirms, check both CRCs, inflate into a
 * buffer whose size is capped before it is allocated, then hand the body
 * to the parser (ckpt_parse.c).
 */
#include "ckpt_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The largest buffer the calling thread's last cd__ckpt_read allocated
 * (the test hook behind cd__ckpt_last_alloc_bytes). */
static _Thread_local uint64_t g_last_alloc;

uint64_t cd__ckpt_last_alloc_bytes(void) { return g_last_alloc; }

/* ---- reading the file -------------------------------------------------- */

/* size bytes of the file from offset `at` on (where the descriptor stands). */
static cd_status read_all(int fd, const char *path, uint8_t *buf, uint64_t at, uint64_t size)
{
    uint64_t got = 0;
    while (got < size) {
        size_t want = size - got < ZCHUNK ? (size_t)(size - got) : (size_t)ZCHUNK;
        ssize_t n = read(fd, buf + got, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return cd__error(CD_ERR_IO, "'%s': read failed at offset %" PRIu64 ": %s", path,
                             at + got, strerror(errno));
        if (n == 0)
            return cd__error(CD_ERR_FORMAT,
                             "'%s': truncated: the file ended at offset %" PRIu64
                             " while being read",
                             path, at + got);
        got += (uint64_t)n;
    }
    return CD_OK;
}

typedef struct file_header {
    uint64_t comp_len, body_len;
    uint32_t comp_crc, body_crc;
} file_header;

static cd_status check_identity(const char *path, const uint8_t *f, uint64_t size)
{
    uint64_t n = size < sizeof g_magic ? size : sizeof g_magic;
    if (size == 0)
        return cd__error(CD_ERR_FORMAT, "'%s': the file is empty (truncated at offset 0)", path);
    /* PyTorch's torch.save writes a zip archive, older versions a bare
     * pickle (protocol 2+ starts with 0x80). */
    if ((size >= 4 && memcmp(f, "PK\x03\x04", 4) == 0) || f[0] == 0x80)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': a PyTorch file (torch.save), not a libcolddiff "
                         "checkpoint; convert it with examples/python/convert_torch.py to-cdm",
                         path);
    if (memcmp(f, g_magic, (size_t)n) != 0)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': not a libcolddiff checkpoint (bad magic at "
                         "offset 0)",
                         path);
    if (size < HEADER_BYTES)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': truncated: the header needs %d bytes, the "
                         "file ends at offset %" PRIu64,
                         path, HEADER_BYTES, size);
    uint32_t bom = rd32(f + 8), version = rd32(f + 12);
    if (bom == 0x04030201u)
        return cd__error(CD_ERR_UNSUPPORTED,
                         "'%s': a big-endian checkpoint (byte-order "
                         "mark at offset 8); only little-endian files exist",
                         path);
    if (bom != BYTE_ORDER_MARK)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': bad byte-order mark 0x%08" PRIx32 " at offset "
                         "8",
                         path, bom);
    if (version > CD__CKPT_VERSION)
        return cd__error(CD_ERR_VERSION,
                         "'%s': format version %" PRIu32 " is newer than "
                         "this library's %d; upgrade libcolddiff",
                         path, version, CD__CKPT_VERSION);
    if (version == 0) return cd__error(CD_ERR_FORMAT, "'%s': format version 0 at offset 12", path);
    return CD_OK;
}

static cd_status parse_header(const char *path, const uint8_t *f, uint64_t size, file_header *h)
{
    CD__TRY(check_identity(path, f, size));
    if (crc(f, 48) != rd32(f + 48))
        return cd__error(CD_ERR_CHECKSUM, "'%s': header checksum mismatch (bytes 0..47)", path);
    if (rd32(f + 16) != COMPRESSION_ZLIB)
        return cd__error(CD_ERR_UNSUPPORTED,
                         "'%s': compression method %" PRIu32 " at "
                         "offset 16 is unknown",
                         path, rd32(f + 16));
    h->comp_len = rd64(f + 24);
    h->body_len = rd64(f + 32);
    h->comp_crc = rd32(f + 40);
    h->body_crc = rd32(f + 44);
    uint64_t avail = size - HEADER_BYTES;
    if (h->comp_len > avail)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': truncated: the compressed body needs %" PRIu64
                         " bytes from offset %d, the file ends at offset %" PRIu64,
                         path, h->comp_len, HEADER_BYTES, size);
    if (h->comp_len < avail)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': %" PRIu64 " unexpected bytes after the body "
                         "at offset %" PRIu64,
                         path, avail - h->comp_len, HEADER_BYTES + h->comp_len);
    return CD_OK;
}

/* Refuse a body size no honest file of this size can have, before any
 * allocation: above the format limit or above deflate's best ratio. */
static cd_status check_body_size(const char *path, const file_header *h)
{
    uint64_t limit = h->comp_len * MAX_RATIO + 1024;
    if (limit > CD__CKPT_MAX_BODY) limit = CD__CKPT_MAX_BODY;
    if (h->body_len > limit)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': the header claims a body of %" PRIu64
                         " bytes at offset 32; %" PRIu64 " compressed bytes cannot hold "
                         "more than %" PRIu64,
                         path, h->body_len, h->comp_len, limit);
    return CD_OK;
}

/* The compressed body that follows the header, of the length the header
 * gives and the file's size has confirmed. */
static cd_status read_compressed(int fd, const char *path, uint64_t len, uint8_t **out)
{
    if (len > MAX_COMPRESSED)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': %" PRIu64 " bytes is larger than any "
                         "checkpoint can be",
                         path, HEADER_BYTES + len);
    uint8_t *buf = cd__malloc(len, "compressed checkpoint body");
    if (!buf)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "'%s': out of memory reading the %" PRIu64 "-byte compressed body", path,
                         len);
    g_last_alloc = len;
    cd_status st = read_all(fd, path, buf, HEADER_BYTES, len);
    if (st != CD_OK) {
        cd__free(buf);
        return st;
    }
    *out = buf;
    return CD_OK;
}

/* The header first: a file that is no checkpoint, or whose sizes lie, is
 * refused before anything of its size is allocated or read. */
static cd_status read_file(const char *path, file_header *h, uint8_t **comp)
{
    int fd = -1;
    uint64_t size = 0;
    uint8_t head[HEADER_BYTES];
    CD__TRY(cd__open_read(path, "", &fd, &size));
    cd_status st = read_all(fd, path, head, 0, size < HEADER_BYTES ? size : HEADER_BYTES);
    if (st == CD_OK) st = parse_header(path, head, size, h);
    if (st == CD_OK) st = check_body_size(path, h);
    if (st == CD_OK) st = read_compressed(fd, path, h->comp_len, comp);
    close(fd);
    return st;
}

static cd_status read_body(const char *path, uint8_t **body, uint64_t *body_len)
{
    uint8_t *comp = NULL;
    file_header h = {0};
    CD__TRY(read_file(path, &h, &comp));
    cd_status st = CD_OK;
    if (crc(comp, h.comp_len) != h.comp_crc)
        st = cd__error(CD_ERR_CHECKSUM,
                       "'%s': the compressed body (offset %d, %" PRIu64 " bytes) fails its CRC32",
                       path, HEADER_BYTES, h.comp_len);
    uint8_t *out = NULL;
    if (st == CD_OK && !(out = cd__malloc(h.body_len, "checkpoint body")))
        st = cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': out of memory for a %" PRIu64 "-byte body",
                       path, h.body_len);
    if (st == CD_OK && h.body_len > g_last_alloc) g_last_alloc = h.body_len;
    if (st == CD_OK) st = cd__ckpt_inflate(path, comp, h.comp_len, out, h.body_len);
    if (st == CD_OK && crc(out, h.body_len) != h.body_crc)
        st = cd__error(CD_ERR_CHECKSUM, "'%s': the uncompressed body fails its CRC32", path);
    cd__free(comp);
    if (st != CD_OK) {
        cd__free(out);
        return st;
    }
    *body = out;
    *body_len = h.body_len;
    return CD_OK;
}

cd_status cd__ckpt_read(cd__ckpt **out, const char *path)
{
    static const char fn[] = "cd__ckpt_read";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    if (!path || !*path)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the path is NULL or empty", fn);
    g_last_alloc = 0;
    uint8_t *body = NULL;
    uint64_t len = 0;
    CD__TRY(read_body(path, &body, &len));
    cd__ckpt *ck = NULL;
    cd_status st = cd__ckpt_create(&ck);
    if (st != CD_OK) {
        cd__free(body);
        return st;
    }
    ck->body = body;
    ck->path = cd__ckpt_dup_bytes(path, strlen(path));
    if (!ck->path) {
        cd__ckpt_free(ck);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory copying the path", fn,
                         path);
    }
    for (int k = 0; k < CD__ADAM_NPARAMS; k++)
        ck->hyper[k] = cd__adam_default((cd__adam_param)k); /* for keys the file lacks */
    st = cd__ckpt_parse_body(path, body, len, ck);
    if (st != CD_OK) {
        cd__ckpt_free(ck);
        return st;
    }
    *out = ck;
    return CD_OK;
}
