/*
 * ckpt_zlib.c - compressing the checkpoint body and inflating it back.
 * zlib counts in 32-bit uInt, so both feed it windows of at most ZCHUNK
 * bytes until the whole buffer has passed.
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A stream whose memory comes from the library's allocator; `what` names
 * it in out-of-memory messages. */
static void init_stream(z_stream *zs, const char *what)
{
    memset(zs, 0, sizeof *zs);
    zs->zalloc = cd__zalloc;
    zs->zfree = cd__zfree;
    zs->opaque = (void *)what;
}

/* zlib says only Z_MEM_ERROR (or, for a broken zlib, another code); the
 * allocator's message names what it failed to allocate. path may be NULL
 * (saving: the file is not open yet). */
static cd_status zlib_failed(const char *path, const char *doing, int rc)
{
    char cause[512] = "unexpected";
    if (rc == Z_MEM_ERROR) snprintf(cause, sizeof cause, "%s", cd_last_error());
    return cd__error(rc == Z_MEM_ERROR ? CD_ERR_OUT_OF_MEMORY : CD_ERR_INTERNAL,
                     "%s%s%s: %s failed (zlib %d): %s", path ? "'" : "checkpoint", path ? path : "",
                     path ? "'" : "", doing, rc, cause);
}

/* Refill whichever window zlib has used up with up to ZCHUNK more bytes;
 * *in_left and *out_left count the bytes not yet in a window. */
static void feed(z_stream *zs, uint64_t *in_left, uint64_t *out_left)
{
    if (zs->avail_in == 0 && *in_left) {
        zs->avail_in = (uInt)(*in_left < ZCHUNK ? *in_left : ZCHUNK);
        *in_left -= zs->avail_in;
    }
    if (zs->avail_out == 0 && *out_left) {
        zs->avail_out = (uInt)(*out_left < ZCHUNK ? *out_left : ZCHUNK);
        *out_left -= zs->avail_out;
    }
}

cd_status cd__ckpt_deflate(const uint8_t *src, uint64_t n, uint8_t **out, uint64_t *out_len)
{
    z_stream zs;
    init_stream(&zs, "checkpoint compressor");
    int rc = deflateInit(&zs, ZLIB_LEVEL);
    if (rc != Z_OK) return zlib_failed(NULL, "setting up the compressor", rc);
    uint64_t cap = deflateBound(&zs, (uLong)n);
    uint8_t *dst = cd__malloc(cap, "compressed checkpoint");
    if (!dst) {
        deflateEnd(&zs);
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "checkpoint: out of memory to compress %" PRIu64 " bytes", n);
    }
    uint64_t in_left = n, out_left = cap;
    zs.next_in = src;
    zs.next_out = dst;
    while (rc == Z_OK) {
        feed(&zs, &in_left, &out_left);
        rc = deflate(&zs, in_left == 0 ? Z_FINISH : Z_NO_FLUSH);
    }
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        cd__free(dst);
        return cd__error(CD_ERR_INTERNAL, "checkpoint: zlib deflate failed (%d)", rc);
    }
    *out = dst;
    return CD_OK;
}

/* Inflate exactly n_out bytes; anything else is a corrupt or lying file. */
cd_status cd__ckpt_inflate(const char *path, const uint8_t *src, uint64_t n_in, uint8_t *dst,
                           uint64_t n_out)
{
    z_stream zs;
    init_stream(&zs, "checkpoint decompressor");
    int rc = inflateInit(&zs);
    if (rc != Z_OK) return zlib_failed(path, "setting up the decompressor", rc);
    uint64_t in_left = n_in, out_left = n_out;
    zs.next_in = src;
    zs.next_out = dst;
    while (rc == Z_OK) {
        feed(&zs, &in_left, &out_left);
        rc = inflate(&zs, Z_NO_FLUSH);
    }
    uint64_t got = zs.total_out;
    bool all_in = zs.avail_in == 0 && in_left == 0;
    inflateEnd(&zs);
    if (rc == Z_STREAM_END && got == n_out && all_in) return CD_OK;
    /* inflate allocates its window on the first output. */
    if (rc == Z_MEM_ERROR) return zlib_failed(path, "inflating the body", rc);
    if (rc == Z_STREAM_END)
        return cd__error(CD_ERR_FORMAT,
                         "'%s': the body inflates to %" PRIu64 " bytes, the "
                         "header says %" PRIu64 "%s",
                         path, got, n_out, all_in ? "" : " (and data follows the zlib stream)");
    return cd__error(CD_ERR_FORMAT,
                     "'%s': corrupt compressed body (zlib error %d after %" PRIu64 " of %" PRIu64
                     " bytes)",
                     path, rc, got, n_out);
}
