/*
 * idx.c - reader for unsigned-byte IDX files, raw or gzipped. A gzip file
 * is inflated here (not through gzread) so that the reader sees where the
 * stream ends: a stream cut before its CRC and length trailer is an error,
 * and so are bytes after the last member, as trailing bytes are in a raw
 * file. Concatenated members (as pigz and bgzip write) form one stream.
 */
#define _POSIX_C_SOURCE 200809L

#include "idx.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* zlib counts in unsigned int: stay well below it. */
#define READ_CHUNK ((uint64_t)1 << 30)
/* Compressed bytes read from the file at a time. */
#define IN_CHUNK ((size_t)1 << 17)
/* First buffer size when the file size cannot vouch for the header. */
#define GROW_START ((uint64_t)1 << 20)
#define MSG_CAP 640

static _Thread_local uint64_t last_alloc_bytes;

typedef struct reader {
    const char *path;
    const char *kind; /* " (gzip)" or "", for messages */
    int fd;
    uint64_t offset; /* uncompressed bytes consumed so far */
    /* gzip only */
    bool gzip, zs_live, at_eof, stream_end;
    z_stream zs;
    uint8_t *in;      /* IN_CHUNK bytes of compressed input */
    uint64_t in_read; /* compressed bytes read from the file */
} reader;

uint64_t cd__idx_last_alloc_bytes(void) { return last_alloc_bytes; }

void cd__idx_free(cd__idx *idx)
{
    if (!idx) return;
    cd__free(idx->data);
    memset(idx, 0, sizeof *idx);
}

static cd_status idx_fail(const reader *r, cd_status st, const char *fmt, ...) CD__PRINTF(3, 4);

/* Every message starts with the path (and "(gzip)"), so callers that load
 * several files can tell which one is at fault. */
static cd_status idx_fail(const reader *r, cd_status st, const char *fmt, ...)
{
    char msg[MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cd__error(st, "IDX file '%s'%s: %s", r->path, r->kind, msg);
}

static cd_status read_failed(const reader *r, int e)
{
    return idx_fail(r, CD_ERR_IO, "read failed at offset %" PRIu64 ": %s", r->offset, strerror(e));
}

/* Up to n bytes straight from the file; a short count means its end. */
static cd_status read_fd(const reader *r, uint8_t *buf, uint64_t n, uint64_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < READ_CHUNK ? (size_t)(n - *got) : (size_t)READ_CHUNK;
        ssize_t k = read(r->fd, buf + *got, want);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return read_failed(r, errno);
        if (k == 0) break;
        *got += (uint64_t)k;
    }
    return CD_OK;
}

/* Top the compressed input up to at least `least` bytes (fewer at the end
 * of the file), keeping what zlib has not consumed. */
static cd_status fill_input(reader *r, size_t least)
{
    z_stream *zs = &r->zs;
    if (zs->avail_in >= least || r->at_eof) return CD_OK;
    if (zs->avail_in) memmove(r->in, zs->next_in, zs->avail_in);
    zs->next_in = r->in;
    while (zs->avail_in < least && !r->at_eof) {
        uint64_t got = 0;
        CD__TRY(read_fd(r, r->in + zs->avail_in, IN_CHUNK - zs->avail_in, &got));
        if (got == 0) r->at_eof = true;
        zs->avail_in += (uInt)got;
        r->in_read += got;
    }
    return CD_OK;
}

/* A member ended: another member may follow, anything else may not. */
static cd_status next_member(reader *r)
{
    CD__TRY(fill_input(r, 2));
    z_stream *zs = &r->zs;
    if (zs->avail_in == 0) {
        r->stream_end = true;
        return CD_OK;
    }
    const uint64_t at = r->in_read - zs->avail_in;
    if (zs->avail_in < 2 || zs->next_in[0] != 0x1f || zs->next_in[1] != 0x8b)
        return idx_fail(r, CD_ERR_FORMAT,
                        "trailing data: the gzip stream ends at compressed "
                        "offset %" PRIu64 " but the file continues with bytes that are not "
                        "gzip",
                        at);
    if (inflateReset(zs) != Z_OK)
        return idx_fail(r, CD_ERR_INTERNAL,
                        "zlib could not start the member at compressed "
                        "offset %" PRIu64,
                        at);
    return CD_OK;
}

static cd_status inflate_error(const reader *r, int rc)
{
    if (rc == Z_MEM_ERROR)
        return idx_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory decompressing at offset %" PRIu64,
                        r->offset);
    if (rc == Z_BUF_ERROR)
        return idx_fail(r, CD_ERR_FORMAT,
                        "truncated gzip stream: the compressed data ends "
                        "at compressed offset %" PRIu64 ", while reading at offset %" PRIu64
                        " of the uncompressed stream, before the stream's end and its CRC "
                        "trailer",
                        r->in_read, r->offset);
    return idx_fail(r, CD_ERR_FORMAT,
                    "corrupt gzip stream, found reading at offset %" PRIu64
                    " of the uncompressed stream: %s",
                    r->offset, r->zs.msg ? r->zs.msg : "unknown zlib error");
}

static cd_status read_gzip(reader *r, uint8_t *buf, uint64_t n, uint64_t *got)
{
    z_stream *zs = &r->zs;
    while (*got < n && !r->stream_end) {
        CD__TRY(fill_input(r, 1));
        uint64_t want = n - *got < READ_CHUNK ? n - *got : READ_CHUNK;
        zs->next_out = buf + *got;
        zs->avail_out = (uInt)want;
        int rc = inflate(zs, Z_NO_FLUSH);
        uint64_t made = want - zs->avail_out;
        *got += made;
        r->offset += made;
        if (rc == Z_STREAM_END) CD__TRY(next_member(r));
        /* Without input at the end of the file, zlib can only stall. */
        else if (rc == Z_BUF_ERROR && zs->avail_in == 0 && !r->at_eof)
            continue;
        else if (rc != Z_OK)
            return inflate_error(r, rc);
    }
    return CD_OK;
}

/* Read up to n bytes into buf; *got says how many arrived before the end of
 * the data. Only read and stream errors fail: a short count is the
 * caller's call. */
static cd_status read_some(reader *r, uint8_t *buf, uint64_t n, uint64_t *got)
{
    *got = 0;
    if (r->gzip) return read_gzip(r, buf, n, got);
    CD__TRY(read_fd(r, buf, n, got));
    r->offset += *got;
    return CD_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

static cd_status check_magic(const reader *r, const uint8_t m[4], uint32_t expect_rank)
{
    if (m[0] != 0 || m[1] != 0)
        return idx_fail(r, CD_ERR_FORMAT,
                        "not an IDX file: bytes at offset 0 are %02x %02x %02x %02x, "
                        "expected the magic 00 00 08 %02x",
                        m[0], m[1], m[2], m[3], (unsigned)expect_rank);
    if (m[2] != 0x08)
        return idx_fail(r, CD_ERR_FORMAT,
                        "unsupported IDX type 0x%02x (%s) at offset 2; only 0x08 "
                        "(unsigned byte) is supported",
                        m[2], type_name(m[2]));
    if (m[3] != expect_rank)
        return idx_fail(r, CD_ERR_FORMAT, "IDX rank %u at offset 3, expected %u (%s)", m[3],
                        (unsigned)expect_rank, expect_rank == 1 ? "labels" : "images");
    return CD_OK;
}

/* Multiply the dimensions, refusing zeros and anything above the cap before
 * a single payload byte is allocated. */
static cd_status check_dims(const reader *r, cd__idx *h)
{
    uint64_t count = 1;
    for (uint32_t i = 0; i < h->rank; i++) {
        uint64_t d = h->dims[i];
        if (d == 0)
            return idx_fail(r, CD_ERR_FORMAT, "dimension %u is 0 at offset %u", i, 4 + 4 * i);
        if (count > CD__IDX_MAX_BYTES / d || count * d > SIZE_MAX) {
            char dims[96];
            size_t n = 0;
            for (uint32_t k = 0; k < h->rank && n < sizeof dims; k++)
                n += (size_t)snprintf(dims + n, sizeof dims - n, "%s%" PRIu32, k ? " x " : "",
                                      h->dims[k]);
            return idx_fail(r, CD_ERR_FORMAT,
                            "oversized or lying header: dimensions %s at offset 4 "
                            "exceed the limit of %" PRIu64 " bytes of data",
                            dims, (uint64_t)CD__IDX_MAX_BYTES);
        }
        count *= d;
    }
    h->count = count;
    return CD_OK;
}

static cd_status read_header(reader *r, uint32_t expect_rank, cd__idx *h)
{
    uint8_t buf[4 * (1 + CD__IDX_MAX_RANK)];
    uint64_t got = 0;
    CD__TRY(read_some(r, buf, 4, &got));
    if (got < 4)
        return idx_fail(r, CD_ERR_FORMAT,
                        "not an IDX file: expected a 4-byte magic at offset 0, "
                        "file ends at offset %" PRIu64,
                        got);
    CD__TRY(check_magic(r, buf, expect_rank));

    h->rank = expect_rank;
    h->header_bytes = 4 + 4 * (uint64_t)expect_rank;
    CD__TRY(read_some(r, buf + 4, 4 * (uint64_t)expect_rank, &got));
    if (got < 4 * (uint64_t)expect_rank)
        return idx_fail(r, CD_ERR_FORMAT,
                        "truncated header: expected %u dimensions of 4 bytes at offset 4, "
                        "file ends at offset %" PRIu64,
                        (unsigned)expect_rank, 4 + got);
    for (uint32_t i = 0; i < expect_rank; i++) h->dims[i] = be32(buf + 4 + 4 * i);
    return check_dims(r, h);
}

static cd_status truncated(const reader *r, const cd__idx *h, uint64_t end)
{
    return idx_fail(r, CD_ERR_FORMAT,
                    "truncated: expected %" PRIu64 " bytes of data at offset %" PRIu64
                    ", file ends at offset %" PRIu64,
                    h->count, h->header_bytes, end);
}

static cd_status trailing(const reader *r, const cd__idx *h, const char *how)
{
    return idx_fail(r, CD_ERR_FORMAT,
                    "trailing data: the %" PRIu64 " bytes of data end at offset %" PRIu64
                    " but the file continues%s",
                    h->count, h->header_bytes + h->count, how);
}

/* A raw regular file knows its size: compare before allocating, so a lying
 * header costs nothing and the message can give both ends exactly. */
static cd_status check_raw_size(const reader *r, const cd__idx *h, uint64_t size)
{
    uint64_t end = h->header_bytes + h->count;
    if (size < end) return truncated(r, h, size);
    if (size > end) {
        char how[64];
        snprintf(how, sizeof how, " to offset %" PRIu64, size);
        return trailing(r, h, how);
    }
    return CD_OK;
}

/* Double the buffer, capped at the payload size. */
static cd_status grow(const reader *r, uint8_t **buf, uint64_t *cap, uint64_t limit)
{
    uint64_t next = *cap * 2 < limit ? *cap * 2 : limit;
    uint8_t *grown = cd__realloc(*buf, (size_t)next, 1, "IDX payload");
    if (!grown)
        return idx_fail(r, CD_ERR_OUT_OF_MEMORY,
                        "out of memory growing the data to %" PRIu64 " bytes", next);
    *buf = grown;
    *cap = next;
    last_alloc_bytes = next;
    return CD_OK;
}

/* Read exactly h->count bytes. The buffer starts at min(count, cap0) and
 * doubles only once full, so memory tracks what the file really delivers. */
static cd_status read_payload(reader *r, cd__idx *h, uint64_t cap0)
{
    uint64_t cap = h->count < cap0 ? h->count : cap0, have = 0;
    uint8_t *buf = cd__malloc((size_t)cap, "IDX payload");
    if (!buf)
        return idx_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory for %" PRIu64 " bytes of data",
                        cap);
    last_alloc_bytes = cap;
    cd_status st = CD_OK;
    while (st == CD_OK) {
        uint64_t got = 0;
        st = read_some(r, buf + have, cap - have, &got);
        have += got;
        if (st == CD_OK && have < cap) st = truncated(r, h, h->header_bytes + have);
        if (st == CD_OK && have == h->count) break;
        if (st == CD_OK) st = grow(r, &buf, &cap, h->count);
    }
    if (st != CD_OK) {
        cd__free(buf);
        return st;
    }
    h->data = buf;
    return CD_OK;
}

/* One more byte must not exist. For gzip this read also runs the stream to
 * its end: zlib checks the CRC and length trailer, and next_member() that
 * nothing but another (empty) member follows. */
static cd_status expect_end(reader *r, const cd__idx *h)
{
    uint8_t extra;
    uint64_t got = 0;
    CD__TRY(read_some(r, &extra, 1, &got));
    return got == 0 ? CD_OK : trailing(r, h, "");
}

static cd_status open_reader(reader *r, const char *path, uint64_t *size)
{
    r->path = path;
    r->kind = "";
    CD__TRY(cd__open_read(path, "IDX file ", &r->fd, size));
    /* The gzip magic decides, as for gzip -d: anything else is raw. */
    uint8_t magic[2] = {0, 0};
    ssize_t k;
    do k = pread(r->fd, magic, 2, 0);
    while (k < 0 && errno == EINTR);
    if (k < 0) return read_failed(r, errno);
    if (k < 2 || magic[0] != 0x1f || magic[1] != 0x8b) return CD_OK;
    r->gzip = true;
    r->kind = " (gzip)";
    if (!(r->in = cd__malloc(IN_CHUNK, "the gzip input buffer")))
        return idx_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory for the input buffer");
    r->zs.zalloc = cd__zalloc;
    r->zs.zfree = cd__zfree;
    r->zs.opaque = (void *)"zlib state";
    /* 16 + MAX_WBITS: a gzip wrapper, whose trailer zlib checks. */
    if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
        return idx_fail(r, CD_ERR_OUT_OF_MEMORY, "out of memory setting up zlib");
    r->zs_live = true;
    return CD_OK;
}

static void close_reader(reader *r)
{
    if (r->zs_live) inflateEnd(&r->zs);
    cd__free(r->in);
    if (r->fd >= 0) close(r->fd);
}

cd_status cd__idx_load(const char *path, uint32_t expect_rank, cd__idx *out)
{
    static const char fn[] = "cd__idx_load";
    CD__CHECK_NOT_NULL(out, fn);
    memset(out, 0, sizeof *out);
    CD__CHECK_NOT_NULL(path, fn);
    CD__CHECK_ARG(expect_rank >= 1 && expect_rank <= CD__IDX_MAX_RANK, fn,
                  "expect_rank must be 1..4");
    last_alloc_bytes = 0;

    reader r = {.fd = -1};
    uint64_t size = 0;
    cd_status s = open_reader(&r, path, &size);
    if (s != CD_OK) {
        close_reader(&r);
        return s;
    }

    cd__idx h = {0};
    h.gzip = r.gzip;
    bool sized = !h.gzip;
    s = read_header(&r, expect_rank, &h);
    if (s == CD_OK && sized) s = check_raw_size(&r, &h, size);
    if (s == CD_OK) s = read_payload(&r, &h, sized ? h.count : GROW_START);
    if (s == CD_OK) s = expect_end(&r, &h);
    close_reader(&r);
    if (s != CD_OK) {
        cd__idx_free(&h);
        return s;
    }
    *out = h;
    return CD_OK;
}
