/*
 * ckpt_internal.h - what the checkpoint sources share: the format's
 * constants (docs/checkpoint-format.md is the contract), the in-memory
 * checkpoint behind cd__ckpt, the little-endian helpers and the few
 * cd__ckpt_ functions one source calls in another. Only checkpoint.c and
 * lib/nn/ckpt_*.c include it; nn.h declares the API they implement.
 */
#ifndef CD_NN_CKPT_INTERNAL_H
#define CD_NN_CKPT_INTERNAL_H

#ifndef ZLIB_CONST
#define ZLIB_CONST
#endif
#include "nn.h"

#include <string.h>
#include <zlib.h>

/* ---- format constants (docs/checkpoint-format.md) ---------------------- */

#define HEADER_BYTES 56
#define BYTE_ORDER_MARK 0x01020304u
#define COMPRESSION_ZLIB 1u
#define SECTION_REQUIRED 1u
#define SECTION_HEADER_BYTES 16
#define DTYPE_FLOAT32 1u
#define DTYPE_FLOAT16 2u
#define ZLIB_LEVEL 1 /* floats barely compress; speed matters more */
/* deflate never shrinks more than 1032:1; a larger claim is a lie. */
#define MAX_RATIO 1032u
#define MAX_COMPRESSED (CD__CKPT_MAX_BODY + (CD__CKPT_MAX_BODY >> 8) + 4096)
#define ZCHUNK ((uint64_t)1 << 30) /* zlib counts in 32-bit uInt */

static const uint8_t g_magic[8] = {0x89, 'C', 'D', 'C', 'K', 'P', 'T', '\n'};

#define TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define TAG_CONF TAG('C', 'O', 'N', 'F')
#define TAG_TENS TAG('T', 'E', 'N', 'S')
#define TAG_ADAM TAG('A', 'D', 'A', 'M')
#define TAG_EMAW TAG('E', 'M', 'A', 'W')
#define TAG_RNGS TAG('R', 'N', 'G', 'S')
#define TAG_STEP TAG('S', 'T', 'E', 'P')
#define TAG_META TAG('M', 'E', 'T', 'A')

/* ---- the in-memory checkpoint ------------------------------------------ */

typedef struct kv_entry {
    char *key;
    cd__ckpt_type type;
    int64_t i64;
    double f64;
    char *str;
    void *arr; /* float or int64_t */
    int64_t n; /* elements of arr */
} kv_entry;

typedef struct kv_list {
    kv_entry *e;
    int64_t count, cap;
} kv_list;

typedef struct rng_entry {
    char *name;
    uint64_t state[CD_RNG_STATE_WORDS];
} rng_entry;

typedef struct file_tensor {
    char *name;
    int32_t rank;
    int64_t shape[CD_TENSOR_MAX_RANK];
    int64_t numel;
    int64_t offset;      /* in floats, in the file's flat order */
    uint32_t dtype;      /* DTYPE_FLOAT32 or DTYPE_FLOAT16 */
    const uint8_t *data; /* numel little-endian values of dtype, inside body */
} file_tensor;

struct cd__ckpt {
    kv_list config, meta;
    rng_entry *rngs;
    int64_t n_rngs, cap_rngs;
    bool has_counters;
    int64_t step, epoch;
    bool half_weights; /* TENS written as float16 (cd__ckpt_set_half_weights) */
    /* Filled by cd__ckpt_read only. */
    char *path; /* for messages */
    uint8_t *body;
    bool has_tensors;
    file_tensor *tensors;
    file_tensor **by_name; /* sorted by name */
    int64_t n_tensors, total_numel;
    bool has_adam, has_ema;
    double hyper[CD__ADAM_NPARAMS];
    int64_t adam_steps, adam_numel, ema_numel;
    const uint8_t *m, *v, *ema;
};

/* ---- little-endian encoding -------------------------------------------- */

static inline void le32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static inline void le64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static inline void decode_f32(float *dst, const uint8_t *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = rd32(src + 4 * i);
        memcpy(&dst[i], &u, sizeof u);
    }
}

static inline void decode_f16(float *dst, const uint8_t *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = cd__f16_to_f32((uint16_t)(src[2 * i] | (uint16_t)src[2 * i + 1] << 8));
}

static inline uint32_t crc(const uint8_t *p, uint64_t n)
{
    return (uint32_t)crc32_z(crc32_z(0, NULL, 0), p, (z_size_t)n);
}

/* ---- shared between the checkpoint sources ----------------------------- */

/* checkpoint.c: a NUL-terminated copy of n bytes (NULL, with the error set,
 * if out of memory). */
char *cd__ckpt_dup_bytes(const void *src, size_t n);
/* checkpoint.c: free an entry's string or array, keeping its key. */
void cd__ckpt_kv_clear(kv_entry *e);
/* checkpoint.c: check that key (called `what` in messages from fn) has
 * 1..CD__CKPT_MAX_KEY bytes. */
cd_status cd__ckpt_check_key(const char *fn, const char *what, const char *key);

/* ckpt_resume.c: a slot for a new RNG state called name (copied). */
cd_status cd__ckpt_rng_append(cd__ckpt *ck, const char *name, size_t len, rng_entry **out);

/* ckpt_zlib.c: compress n bytes into *out (free with cd__free; *out_len
 * bytes). */
cd_status cd__ckpt_deflate(const uint8_t *src, uint64_t n, uint8_t **out, uint64_t *out_len);
/* ckpt_zlib.c: inflate exactly n_out bytes; anything else is a corrupt or
 * lying file (messages name path). */
cd_status cd__ckpt_inflate(const char *path, const uint8_t *src, uint64_t n_in, uint8_t *dst,
                           uint64_t n_out);

/* ckpt_parse.c: parse a whole inflated body (len bytes) into ck; messages
 * name path and the body offset. */
cd_status cd__ckpt_parse_body(const char *path, const uint8_t *body, uint64_t len, cd__ckpt *ck);
/* ckpt_parse.c: the read tensor called name, or NULL. */
const file_tensor *cd__ckpt_find_tensor(const cd__ckpt *ck, const char *name);

#endif /* CD_NN_CKPT_INTERNAL_H */
