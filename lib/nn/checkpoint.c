/*
 * checkpoint.c - the checkpoint file (docs/checkpoint-format.md is the
 * contract; this file follows it field by field).
 *
 * Saving serialises the body into memory in two passes (one to size it,
 * one to fill it), compresses it with zlib and writes header + stream
 * through the atomic writer. Reading loads the whole file (never more than
 * its real size), checks header, sizes and both CRCs, inflates into a
 * buffer whose size is capped before it is allocated, and parses every
 * section into a cd__ckpt. Only cd__ckpt_apply touches a model, and it
 * checks everything (names, shapes, optimiser) and allocates everything it
 * needs before it copies the first byte.
 */
#define ZLIB_CONST
#include "nn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- format constants (docs/checkpoint-format.md) ---------------------- */

#define HEADER_BYTES 56
#define BYTE_ORDER_MARK 0x01020304u
#define COMPRESSION_ZLIB 1u
#define SECTION_REQUIRED 1u
#define SECTION_HEADER_BYTES 16
#define DTYPE_FLOAT32 1u
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

static _Thread_local uint64_t g_last_alloc;

uint64_t cd__ckpt_last_alloc_bytes(void) { return g_last_alloc; }

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
    const uint8_t *data; /* numel little-endian float32, inside body */
} file_tensor;

struct cd__ckpt {
    kv_list config, meta;
    rng_entry *rngs;
    int64_t n_rngs, cap_rngs;
    bool has_counters;
    int64_t step, epoch;
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

static char *dup_bytes(const void *src, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, src, n);
    d[n] = '\0';
    return d;
}

static void kv_clear_value(kv_entry *e)
{
    free(e->str);
    free(e->arr);
    e->str = NULL;
    e->arr = NULL;
    e->n = 0;
}

static void kv_free(kv_list *l)
{
    for (int64_t i = 0; i < l->count; i++) {
        kv_clear_value(&l->e[i]);
        free(l->e[i].key);
    }
    free(l->e);
    memset(l, 0, sizeof *l);
}

cd_status cd__ckpt_create(cd__ckpt **out)
{
    CD__CHECK_NOT_NULL(out, "cd__ckpt_create");
    *out = calloc(1, sizeof **out);
    if (!*out) return cd__error(CD_ERR_OUT_OF_MEMORY, "cd__ckpt_create: no memory");
    return CD_OK;
}

void cd__ckpt_free(cd__ckpt *ck)
{
    if (!ck) return;
    kv_free(&ck->config);
    kv_free(&ck->meta);
    for (int64_t i = 0; i < ck->n_rngs; i++) free(ck->rngs[i].name);
    free(ck->rngs);
    for (int64_t i = 0; i < ck->n_tensors; i++) free(ck->tensors[i].name);
    free(ck->tensors);
    free(ck->by_name);
    free(ck->path);
    free(ck->body);
    free(ck);
}

/* ---- key/value lists --------------------------------------------------- */

static cd_status check_key(const char *fn, const char *what, const char *key)
{
    if (!key) return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the %s is NULL", fn, what);
    size_t len = strnlen(key, CD__CKPT_MAX_KEY + 1);
    if (len == 0 || len > CD__CKPT_MAX_KEY)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the %s '%.40s' must have 1..%d bytes",
                         fn, what, key, CD__CKPT_MAX_KEY);
    return CD_OK;
}

static kv_entry *kv_find(const kv_list *l, const char *key)
{
    for (int64_t i = 0; i < l->count; i++)
        if (strcmp(l->e[i].key, key) == 0) return &l->e[i];
    return NULL;
}

/* Store v under key, replacing an existing entry's value. Takes ownership of
 * v's memory (freed on failure). */
static cd_status kv_put(kv_list *l, const char *key, kv_entry v, const char *fn)
{
    kv_entry *e = kv_find(l, key);
    if (e) {
        kv_clear_value(e);
    } else {
        if (l->count == l->cap) {
            int64_t cap = l->cap ? 2 * l->cap : 8;
            kv_entry *grown = realloc(l->e, (size_t)cap * sizeof *grown);
            if (!grown) goto oom;
            l->e = grown;
            l->cap = cap;
        }
        char *k = dup_bytes(key, strlen(key));
        if (!k) goto oom;
        e = &l->e[l->count++];
        memset(e, 0, sizeof *e);
        e->key = k;
    }
    v.key = e->key;
    *e = v;
    return CD_OK;
oom:
    free(v.str);
    free(v.arr);
    return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory for '%s'", fn, key);
}

static cd_status set_common(cd__ckpt *ck, const char *fn, const char *key)
{
    CD__CHECK_NOT_NULL(ck, fn);
    return check_key(fn, "key", key);
}

cd_status cd__ckpt_set_i64(cd__ckpt *ck, const char *key, int64_t value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_i64", key));
    kv_entry v = {.type = CD__CKPT_INT64, .i64 = value};
    return kv_put(&ck->config, key, v, "cd__ckpt_set_i64");
}

cd_status cd__ckpt_set_f64(cd__ckpt *ck, const char *key, double value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_f64", key));
    kv_entry v = {.type = CD__CKPT_FLOAT64, .f64 = value};
    return kv_put(&ck->config, key, v, "cd__ckpt_set_f64");
}

static cd_status put_string(kv_list *l, const char *fn, const char *key,
                            const char *value)
{
    CD__CHECK_NOT_NULL(value, fn);
    kv_entry v = {.type = CD__CKPT_STRING, .n = (int64_t)strlen(value)};
    v.str = dup_bytes(value, (size_t)v.n);
    if (!v.str) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory for '%s'", fn, key);
    return kv_put(l, key, v, fn);
}

cd_status cd__ckpt_set_str(cd__ckpt *ck, const char *key, const char *value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_str", key));
    return put_string(&ck->config, "cd__ckpt_set_str", key, value);
}

static cd_status put_array(cd__ckpt *ck, const char *fn, const char *key,
                           cd__ckpt_type type, const void *values, int64_t n,
                           size_t elem)
{
    CD__TRY(set_common(ck, fn, key));
    if (n < 0 || (uint64_t)n > CD__CKPT_MAX_BODY / elem)
        return cd__error(CD_ERR_RANGE, "%s: '%s': length %" PRId64 " is outside 0..%" PRIu64,
                         fn, key, n, CD__CKPT_MAX_BODY / elem);
    if (n > 0) CD__CHECK_NOT_NULL(values, fn);
    kv_entry v = {.type = type, .n = n};
    v.arr = malloc(n ? (size_t)n * elem : 1);
    if (!v.arr) return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory for '%s'", fn, key);
    if (n) memcpy(v.arr, values, (size_t)n * elem);
    return kv_put(&ck->config, key, v, fn);
}

cd_status cd__ckpt_set_f32_array(cd__ckpt *ck, const char *key, const float *values,
                                 int64_t n)
{
    return put_array(ck, "cd__ckpt_set_f32_array", key, CD__CKPT_FLOAT32_ARRAY, values, n,
                     sizeof(float));
}

cd_status cd__ckpt_set_i64_array(cd__ckpt *ck, const char *key, const int64_t *values,
                                 int64_t n)
{
    return put_array(ck, "cd__ckpt_set_i64_array", key, CD__CKPT_INT64_ARRAY, values, n,
                     sizeof(int64_t));
}

static const char *type_name(cd__ckpt_type t)
{
    switch (t) {
    case CD__CKPT_INT64: return "an int64";
    case CD__CKPT_FLOAT64: return "a float64";
    case CD__CKPT_STRING: return "a string";
    case CD__CKPT_FLOAT32_ARRAY: return "a float32 array";
    case CD__CKPT_INT64_ARRAY: return "an int64 array";
    }
    return "an unknown type";
}

/* The config entry for key, which must have type `type`. */
static cd_status get_entry(const cd__ckpt *ck, const char *fn, const char *key,
                           cd__ckpt_type type, const kv_entry **out)
{
    CD__CHECK_NOT_NULL(ck, fn);
    CD__TRY(check_key(fn, "key", key));
    const kv_entry *e = kv_find(&ck->config, key);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: the configuration has no '%s'", fn, key);
    if (e->type != type)
        return cd__error(CD_ERR_FORMAT, "%s: configuration '%s' is %s, not %s", fn, key,
                         type_name(e->type), type_name(type));
    *out = e;
    return CD_OK;
}

cd_status cd__ckpt_get_i64(const cd__ckpt *ck, const char *key, int64_t *value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_i64");
    CD__TRY(get_entry(ck, "cd__ckpt_get_i64", key, CD__CKPT_INT64, &e));
    *value = e->i64;
    return CD_OK;
}

cd_status cd__ckpt_get_f64(const cd__ckpt *ck, const char *key, double *value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_f64");
    CD__TRY(get_entry(ck, "cd__ckpt_get_f64", key, CD__CKPT_FLOAT64, &e));
    *value = e->f64;
    return CD_OK;
}

cd_status cd__ckpt_get_str(const cd__ckpt *ck, const char *key, const char **value)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(value, "cd__ckpt_get_str");
    CD__TRY(get_entry(ck, "cd__ckpt_get_str", key, CD__CKPT_STRING, &e));
    *value = e->str;
    return CD_OK;
}

static cd_status get_array(const cd__ckpt *ck, const char *fn, const char *key,
                           cd__ckpt_type type, void *values, int64_t cap, int64_t *n,
                           size_t elem)
{
    const kv_entry *e;
    CD__CHECK_NOT_NULL(n, fn);
    CD__TRY(get_entry(ck, fn, key, type, &e));
    *n = e->n;
    if (!values) return CD_OK;
    if (cap < e->n)
        return cd__error(CD_ERR_SHAPE, "%s: '%s' holds %" PRId64 " values, the capacity is %"
                         PRId64, fn, key, e->n, cap);
    if (e->n) memcpy(values, e->arr, (size_t)e->n * elem);
    return CD_OK;
}

cd_status cd__ckpt_get_f32_array(const cd__ckpt *ck, const char *key, float *values,
                                 int64_t cap, int64_t *n)
{
    return get_array(ck, "cd__ckpt_get_f32_array", key, CD__CKPT_FLOAT32_ARRAY, values, cap,
                     n, sizeof(float));
}

cd_status cd__ckpt_get_i64_array(const cd__ckpt *ck, const char *key, int64_t *values,
                                 int64_t cap, int64_t *n)
{
    return get_array(ck, "cd__ckpt_get_i64_array", key, CD__CKPT_INT64_ARRAY, values, cap,
                     n, sizeof(int64_t));
}

int64_t cd__ckpt_config_count(const cd__ckpt *ck)
{
    if (!ck) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd__ckpt_config_count: argument 'ck' is NULL");
        return -1;
    }
    return ck->config.count;
}

const char *cd__ckpt_config_key(const cd__ckpt *ck, int64_t i, cd__ckpt_type *type)
{
    if (!ck || i < 0 || i >= ck->config.count) {
        cd__error(CD_ERR_RANGE, "cd__ckpt_config_key: no entry %" PRId64, i);
        return NULL;
    }
    if (type) *type = ck->config.e[i].type;
    return ck->config.e[i].key;
}

cd_status cd__ckpt_set_meta(cd__ckpt *ck, const char *key, const char *value)
{
    CD__TRY(set_common(ck, "cd__ckpt_set_meta", key));
    return put_string(&ck->meta, "cd__ckpt_set_meta", key, value);
}

cd_status cd__ckpt_get_meta(const cd__ckpt *ck, const char *key, const char **value)
{
    static const char fn[] = "cd__ckpt_get_meta";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(value, fn);
    CD__TRY(check_key(fn, "key", key));
    const kv_entry *e = kv_find(&ck->meta, key);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: no metadata '%s'", fn, key);
    *value = e->str;
    return CD_OK;
}

int64_t cd__ckpt_meta_count(const cd__ckpt *ck)
{
    if (!ck) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd__ckpt_meta_count: argument 'ck' is NULL");
        return -1;
    }
    return ck->meta.count;
}

cd_status cd__ckpt_meta_at(const cd__ckpt *ck, int64_t i, const char **key,
                           const char **value)
{
    static const char fn[] = "cd__ckpt_meta_at";
    CD__CHECK_NOT_NULL(ck, fn);
    if (i < 0 || i >= ck->meta.count)
        return cd__error(CD_ERR_RANGE, "%s: index %" PRId64 " is outside 0..%" PRId64, fn, i,
                         ck->meta.count - 1);
    if (key) *key = ck->meta.e[i].key;
    if (value) *value = ck->meta.e[i].str;
    return CD_OK;
}

/* ---- RNG states and counters ------------------------------------------- */

static rng_entry *rng_find(const cd__ckpt *ck, const char *name)
{
    for (int64_t i = 0; i < ck->n_rngs; i++)
        if (strcmp(ck->rngs[i].name, name) == 0) return &ck->rngs[i];
    return NULL;
}

/* A slot for a new RNG state called name (copied). */
static cd_status rng_append(cd__ckpt *ck, const char *name, size_t len, rng_entry **out)
{
    if (ck->n_rngs == ck->cap_rngs) {
        int64_t cap = ck->cap_rngs ? 2 * ck->cap_rngs : 4;
        rng_entry *grown = realloc(ck->rngs, (size_t)cap * sizeof *grown);
        if (!grown) return cd__error(CD_ERR_OUT_OF_MEMORY, "no memory for RNG states");
        ck->rngs = grown;
        ck->cap_rngs = cap;
    }
    char *copy = dup_bytes(name, len);
    if (!copy) return cd__error(CD_ERR_OUT_OF_MEMORY, "no memory for RNG states");
    *out = &ck->rngs[ck->n_rngs++];
    memset(*out, 0, sizeof **out);
    (*out)->name = copy;
    return CD_OK;
}

cd_status cd__ckpt_set_rng(cd__ckpt *ck, const char *name, const cd_rng *rng)
{
    static const char fn[] = "cd__ckpt_set_rng";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__TRY(check_key(fn, "name", name));
    uint64_t state[CD_RNG_STATE_WORDS];
    CD__TRY(cd_rng_get_state(rng, state));
    rng_entry *e = rng_find(ck, name);
    if (!e) CD__TRY(rng_append(ck, name, strlen(name), &e));
    memcpy(e->state, state, sizeof state);
    return CD_OK;
}

cd_status cd__ckpt_get_rng(const cd__ckpt *ck, const char *name, cd_rng *rng)
{
    static const char fn[] = "cd__ckpt_get_rng";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(rng, fn);
    CD__TRY(check_key(fn, "name", name));
    const rng_entry *e = rng_find(ck, name);
    if (!e) return cd__error(CD_ERR_NOT_FOUND, "%s: no RNG state called '%s'", fn, name);
    return cd_rng_set_state(rng, e->state);
}

cd_status cd__ckpt_set_counters(cd__ckpt *ck, int64_t step, int64_t epoch)
{
    CD__CHECK_NOT_NULL(ck, "cd__ckpt_set_counters");
    if (step < 0 || epoch < 0)
        return cd__error(CD_ERR_RANGE, "cd__ckpt_set_counters: step %" PRId64 " and epoch %"
                         PRId64 " must be >= 0", step, epoch);
    ck->has_counters = true;
    ck->step = step;
    ck->epoch = epoch;
    return CD_OK;
}

cd_status cd__ckpt_get_counters(const cd__ckpt *ck, int64_t *step, int64_t *epoch)
{
    static const char fn[] = "cd__ckpt_get_counters";
    CD__CHECK_NOT_NULL(ck, fn);
    if (!ck->has_counters)
        return cd__error(CD_ERR_NOT_FOUND, "%s: the checkpoint holds no step/epoch", fn);
    if (step) *step = ck->step;
    if (epoch) *epoch = ck->epoch;
    return CD_OK;
}

bool cd__ckpt_has_adam(const cd__ckpt *ck) { return ck && ck->has_adam; }
bool cd__ckpt_has_ema(const cd__ckpt *ck) { return ck && ck->has_ema; }

/* ---- little-endian encoding -------------------------------------------- */

static void le32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static void le64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void decode_f32(float *dst, const uint8_t *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = rd32(src + 4 * i);
        memcpy(&dst[i], &u, sizeof u);
    }
}

static uint32_t crc(const uint8_t *p, uint64_t n)
{
    return (uint32_t)crc32_z(crc32_z(0, NULL, 0), p, (z_size_t)n);
}

/* ---- serialising the body ---------------------------------------------- */

/* A body writer: with data == NULL it only counts (the sizing pass). */
typedef struct wbuf {
    uint8_t *data;
    uint64_t len;
} wbuf;

static void put(wbuf *w, const void *src, size_t n)
{
    if (w->data && n) memcpy(w->data + w->len, src, n);
    w->len += n;
}

static void put_u32(wbuf *w, uint32_t x)
{
    uint8_t b[4];
    le32(b, x);
    put(w, b, 4);
}

static void put_u64(wbuf *w, uint64_t x)
{
    uint8_t b[8];
    le64(b, x);
    put(w, b, 8);
}

static void put_f64(wbuf *w, double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    put_u64(w, u);
}

static void put_f32s(wbuf *w, const float *x, int64_t n)
{
    if (w->data) {
        uint8_t *p = w->data + w->len;
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            le32(p + 4 * i, u);
        }
    }
    w->len += 4 * (uint64_t)n;
}

static void put_name(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    put_u32(w, (uint32_t)n);
    put(w, s, n);
}

static uint64_t begin_section(wbuf *w, uint32_t tag, uint32_t flags)
{
    put_u32(w, tag);
    put_u32(w, flags);
    uint64_t at = w->len;
    put_u64(w, 0); /* the length, patched by end_section */
    return at;
}

static void end_section(wbuf *w, uint64_t at)
{
    if (w->data) le64(w->data + at, w->len - at - 8);
}

static void put_kv_value(wbuf *w, const kv_entry *e)
{
    switch (e->type) {
    case CD__CKPT_INT64: put_u64(w, 8); put_u64(w, (uint64_t)e->i64); break;
    case CD__CKPT_FLOAT64: put_u64(w, 8); put_f64(w, e->f64); break;
    case CD__CKPT_STRING: put_u64(w, (uint64_t)e->n); put(w, e->str, (size_t)e->n); break;
    case CD__CKPT_FLOAT32_ARRAY:
        put_u64(w, 4 * (uint64_t)e->n);
        put_f32s(w, e->arr, e->n);
        break;
    case CD__CKPT_INT64_ARRAY:
        put_u64(w, 8 * (uint64_t)e->n);
        for (int64_t i = 0; i < e->n; i++) put_u64(w, (uint64_t)((int64_t *)e->arr)[i]);
        break;
    }
}

static void put_kv_list(wbuf *w, const kv_list *l)
{
    put_u32(w, l ? (uint32_t)l->count : 0);
    for (int64_t i = 0; l && i < l->count; i++) {
        put_name(w, l->e[i].key);
        put_u32(w, (uint32_t)l->e[i].type);
        put_kv_value(w, &l->e[i]);
    }
}

static void put_tensors(wbuf *w, cd_params *p)
{
    int64_t count = cd_params_count(p);
    const float *values = cd__params_values(p);
    put_u32(w, (uint32_t)count);
    for (int64_t i = 0; i < count; i++) {
        int32_t rank = cd_params_rank(p, i);
        const int64_t *dims = cd__params_dims(p, i);
        put_name(w, cd_params_name(p, i));
        put_u32(w, DTYPE_FLOAT32);
        put_u32(w, (uint32_t)rank);
        for (int32_t d = 0; d < rank; d++) put_u64(w, (uint64_t)dims[d]);
        put_f32s(w, values + cd__params_offset(p, i), cd_params_numel_at(p, i));
    }
}

static void put_adam(wbuf *w, const cd__adam *a, int64_t numel)
{
    put_u64(w, (uint64_t)cd__adam_steps(a));
    put_u32(w, CD__ADAM_NPARAMS);
    for (int k = 0; k < CD__ADAM_NPARAMS; k++) {
        double value = 0.0;
        cd__adam_get(a, (cd__adam_param)k, &value);
        put_u32(w, (uint32_t)k);
        put_f64(w, value);
    }
    put_u64(w, (uint64_t)numel);
    put_f32s(w, cd__adam_m(a), numel);
    put_f32s(w, cd__adam_v(a), numel);
}

static void put_rngs(wbuf *w, const cd__ckpt *ck)
{
    put_u32(w, (uint32_t)ck->n_rngs);
    for (int64_t i = 0; i < ck->n_rngs; i++) {
        put_name(w, ck->rngs[i].name);
        for (int k = 0; k < CD_RNG_STATE_WORDS; k++) put_u64(w, ck->rngs[i].state[k]);
    }
}

static void put_body(wbuf *w, const cd__ckpt *ck, cd_params *p, const cd__adam *a)
{
    int64_t numel = cd_params_numel(p);
    uint64_t s = begin_section(w, TAG_CONF, SECTION_REQUIRED);
    put_kv_list(w, ck ? &ck->config : NULL);
    end_section(w, s);
    s = begin_section(w, TAG_TENS, SECTION_REQUIRED);
    put_tensors(w, p);
    end_section(w, s);
    if (a) {
        s = begin_section(w, TAG_ADAM, 0);
        put_adam(w, a, numel);
        end_section(w, s);
    }
    if (a && cd__adam_ema(a)) {
        s = begin_section(w, TAG_EMAW, 0);
        put_u64(w, (uint64_t)numel);
        put_f32s(w, cd__adam_ema(a), numel);
        end_section(w, s);
    }
    if (ck && ck->n_rngs) {
        s = begin_section(w, TAG_RNGS, 0);
        put_rngs(w, ck);
        end_section(w, s);
    }
    if (ck && ck->has_counters) {
        s = begin_section(w, TAG_STEP, 0);
        put_u64(w, (uint64_t)ck->step);
        put_u64(w, (uint64_t)ck->epoch);
        end_section(w, s);
    }
    if (ck && ck->meta.count) {
        s = begin_section(w, TAG_META, 0);
        put_kv_list(w, &ck->meta);
        end_section(w, s);
    }
}

/* ---- compression ------------------------------------------------------- */

static cd_status deflate_body(const uint8_t *src, uint64_t n, uint8_t **out,
                              uint64_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit(&zs, ZLIB_LEVEL) != Z_OK)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "checkpoint: cannot set up zlib");
    uint64_t cap = deflateBound(&zs, (uLong)n);
    uint8_t *dst = malloc(cap ? cap : 1);
    if (!dst) {
        deflateEnd(&zs);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "checkpoint: no memory to compress %" PRIu64
                         " bytes", n);
    }
    uint64_t in_left = n, out_left = cap;
    zs.next_in = src;
    zs.next_out = dst;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = (uInt)(in_left < ZCHUNK ? in_left : ZCHUNK);
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0 && out_left) {
            zs.avail_out = (uInt)(out_left < ZCHUNK ? out_left : ZCHUNK);
            out_left -= zs.avail_out;
        }
        rc = deflate(&zs, in_left == 0 ? Z_FINISH : Z_NO_FLUSH);
    }
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(dst);
        return cd__error(CD_ERR_INTERNAL, "checkpoint: zlib deflate failed (%d)", rc);
    }
    *out = dst;
    return CD_OK;
}

/* Inflate exactly n_out bytes; anything else is a corrupt or lying file. */
static cd_status inflate_body(const char *path, const uint8_t *src, uint64_t n_in,
                              uint8_t *dst, uint64_t n_out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': cannot set up zlib", path);
    uint64_t in_left = n_in, out_left = n_out;
    zs.next_in = src;
    zs.next_out = dst;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = (uInt)(in_left < ZCHUNK ? in_left : ZCHUNK);
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0 && out_left) {
            zs.avail_out = (uInt)(out_left < ZCHUNK ? out_left : ZCHUNK);
            out_left -= zs.avail_out;
        }
        rc = inflate(&zs, Z_NO_FLUSH);
    }
    uint64_t got = zs.total_out;
    bool all_in = zs.avail_in == 0 && in_left == 0;
    inflateEnd(&zs);
    if (rc == Z_STREAM_END && got == n_out && all_in) return CD_OK;
    if (rc == Z_STREAM_END)
        return cd__error(CD_ERR_FORMAT, "'%s': the body inflates to %" PRIu64 " bytes, the "
                         "header says %" PRIu64 "%s", path, got, n_out,
                         all_in ? "" : " (and data follows the zlib stream)");
    return cd__error(CD_ERR_FORMAT, "'%s': corrupt compressed body (zlib error %d after %"
                     PRIu64 " of %" PRIu64 " bytes)", path, rc, got, n_out);
}

/* ---- saving ------------------------------------------------------------ */

static void make_header(uint8_t h[HEADER_BYTES], uint64_t comp_len, uint64_t body_len,
                        uint32_t comp_crc, uint32_t body_crc)
{
    memset(h, 0, HEADER_BYTES);
    memcpy(h, g_magic, sizeof g_magic);
    le32(h + 8, BYTE_ORDER_MARK);
    le32(h + 12, CD__CKPT_VERSION);
    le32(h + 16, COMPRESSION_ZLIB);
    le64(h + 24, comp_len);
    le64(h + 32, body_len);
    le32(h + 40, comp_crc);
    le32(h + 44, body_crc);
    le32(h + 48, crc(h, 48));
}

static cd_status write_file(const char *path, const uint8_t *header, const uint8_t *comp,
                            uint64_t comp_len)
{
    cd__atomic_file af;
    CD__TRY(cd__atomic_open(&af, path));
    cd_status st = cd__atomic_write(&af, header, HEADER_BYTES);
    if (st == CD_OK) st = cd__atomic_write(&af, comp, (size_t)comp_len);
    if (st != CD_OK) {
        cd__atomic_abort(&af);
        return st;
    }
    return cd__atomic_commit(&af);
}

static cd_status check_save_args(const cd__ckpt *ck, const char *path, cd_params *params,
                                 const cd__adam *adam)
{
    static const char fn[] = "cd__ckpt_save";
    CD__CHECK_NOT_NULL(params, fn);
    if (ck && ((uint64_t)ck->config.count > CD__CKPT_MAX_ENTRIES ||
               (uint64_t)ck->meta.count > CD__CKPT_MAX_ENTRIES ||
               (uint64_t)ck->n_rngs > CD__CKPT_MAX_ENTRIES))
        return cd__error(CD_ERR_UNSUPPORTED, "%s: more than %" PRIu64 " configuration, "
                         "metadata or RNG entries", fn, CD__CKPT_MAX_ENTRIES);
    if (!path || !*path)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the path is NULL or empty", fn);
    if (adam && cd__adam_params(adam) != params)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the optimiser updates another "
                         "parameter set", fn);
    if ((uint64_t)cd_params_count(params) > CD__CKPT_MAX_ENTRIES)
        return cd__error(CD_ERR_UNSUPPORTED, "%s: %" PRId64 " tensors are more than the "
                         "format's %" PRIu64, fn, cd_params_count(params),
                         CD__CKPT_MAX_ENTRIES);
    return cd__params_finalize(params);
}

cd_status cd__ckpt_save(const cd__ckpt *ck, const char *path, cd_params *params,
                        const cd__adam *adam)
{
    CD__TRY(check_save_args(ck, path, params, adam));
    wbuf w = {0};
    put_body(&w, ck, params, adam); /* sizing pass */
    if (w.len > CD__CKPT_MAX_BODY)
        return cd__error(CD_ERR_UNSUPPORTED, "cd__ckpt_save: '%s': a body of %" PRIu64
                         " bytes is above the format's limit of %" PRIu64, path, w.len,
                         CD__CKPT_MAX_BODY);
    uint64_t body_len = w.len;
    w.data = malloc(body_len);
    w.len = 0;
    if (!w.data)
        return cd__error(CD_ERR_OUT_OF_MEMORY, "cd__ckpt_save: '%s': no memory for %" PRIu64
                         " bytes", path, body_len);
    put_body(&w, ck, params, adam);
    uint8_t *comp = NULL;
    uint64_t comp_len = 0;
    cd_status st = deflate_body(w.data, body_len, &comp, &comp_len);
    if (st == CD_OK) {
        uint8_t header[HEADER_BYTES];
        make_header(header, comp_len, body_len, crc(comp, comp_len), crc(w.data, body_len));
        st = write_file(path, header, comp, comp_len);
    }
    free(comp);
    free(w.data);
    return st;
}

/* ---- reading the file -------------------------------------------------- */

static cd_status read_all(int fd, const char *path, uint8_t *buf, uint64_t size)
{
    uint64_t got = 0;
    while (got < size) {
        size_t want = size - got < ZCHUNK ? (size_t)(size - got) : (size_t)ZCHUNK;
        ssize_t n = read(fd, buf + got, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return cd__error(CD_ERR_IO, "'%s': read failed at offset %" PRIu64 ": %s", path,
                             got, strerror(errno));
        if (n == 0)
            return cd__error(CD_ERR_FORMAT, "'%s': truncated: the file ended at offset %"
                             PRIu64 " while being read", path, got);
        got += (uint64_t)n;
    }
    return CD_OK;
}

static cd_status open_file(const char *path, int *fd_out, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return cd__error(e == ENOENT || e == ENOTDIR ? CD_ERR_NOT_FOUND : CD_ERR_IO,
                         "'%s': cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        close(fd);
        return cd__error(CD_ERR_IO, "'%s': not a readable file: %s", path,
                         e ? strerror(e) : "not a regular file");
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return CD_OK;
}

/* The whole file, of its real size (which bounds the compressed body). */
static cd_status load_file(const char *path, uint8_t **buf, uint64_t *size)
{
    int fd = -1;
    CD__TRY(open_file(path, &fd, size));
    if (*size > HEADER_BYTES + MAX_COMPRESSED) {
        close(fd);
        return cd__error(CD_ERR_FORMAT, "'%s': %" PRIu64 " bytes is larger than any "
                         "checkpoint can be", path, *size);
    }
    *buf = malloc(*size ? *size : 1);
    if (!*buf) {
        close(fd);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory for %" PRIu64 " bytes",
                         path, *size);
    }
    g_last_alloc = *size;
    cd_status st = read_all(fd, path, *buf, *size);
    close(fd);
    if (st != CD_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

typedef struct file_header {
    uint64_t comp_len, body_len;
    uint32_t comp_crc, body_crc;
} file_header;

static cd_status check_identity(const char *path, const uint8_t *f, uint64_t size)
{
    uint64_t n = size < sizeof g_magic ? size : sizeof g_magic;
    if (size == 0)
        return cd__error(CD_ERR_FORMAT, "'%s': the file is empty (truncated at offset 0)",
                         path);
    if (memcmp(f, g_magic, (size_t)n) != 0)
        return cd__error(CD_ERR_FORMAT, "'%s': not a libcolddiff checkpoint (bad magic at "
                         "offset 0)", path);
    if (size < HEADER_BYTES)
        return cd__error(CD_ERR_FORMAT, "'%s': truncated: the header needs %d bytes, the "
                         "file ends at offset %" PRIu64, path, HEADER_BYTES, size);
    uint32_t bom = rd32(f + 8), version = rd32(f + 12);
    if (bom == 0x04030201u)
        return cd__error(CD_ERR_UNSUPPORTED, "'%s': a big-endian checkpoint (byte-order "
                         "mark at offset 8); only little-endian files exist", path);
    if (bom != BYTE_ORDER_MARK)
        return cd__error(CD_ERR_FORMAT, "'%s': bad byte-order mark 0x%08" PRIx32 " at offset "
                         "8", path, bom);
    if (version > CD__CKPT_VERSION)
        return cd__error(CD_ERR_VERSION, "'%s': format version %" PRIu32 " is newer than "
                         "this library's %d; upgrade libcolddiff", path, version,
                         CD__CKPT_VERSION);
    if (version == 0)
        return cd__error(CD_ERR_FORMAT, "'%s': format version 0 at offset 12", path);
    return CD_OK;
}

static cd_status parse_header(const char *path, const uint8_t *f, uint64_t size,
                              file_header *h)
{
    CD__TRY(check_identity(path, f, size));
    if (crc(f, 48) != rd32(f + 48))
        return cd__error(CD_ERR_CHECKSUM, "'%s': header checksum mismatch (bytes 0..47)",
                         path);
    if (rd32(f + 16) != COMPRESSION_ZLIB)
        return cd__error(CD_ERR_UNSUPPORTED, "'%s': compression method %" PRIu32 " at "
                         "offset 16 is unknown", path, rd32(f + 16));
    h->comp_len = rd64(f + 24);
    h->body_len = rd64(f + 32);
    h->comp_crc = rd32(f + 40);
    h->body_crc = rd32(f + 44);
    uint64_t avail = size - HEADER_BYTES;
    if (h->comp_len > avail)
        return cd__error(CD_ERR_FORMAT, "'%s': truncated: the compressed body needs %"
                         PRIu64 " bytes from offset %d, the file ends at offset %" PRIu64,
                         path, h->comp_len, HEADER_BYTES, size);
    if (h->comp_len < avail)
        return cd__error(CD_ERR_FORMAT, "'%s': %" PRIu64 " unexpected bytes after the body "
                         "at offset %" PRIu64, path, avail - h->comp_len,
                         HEADER_BYTES + h->comp_len);
    return CD_OK;
}

/* Refuse a body size no honest file of this size can have, before any
 * allocation: above the format limit or above deflate's best ratio. */
static cd_status check_body_size(const char *path, const file_header *h)
{
    uint64_t limit = h->comp_len * MAX_RATIO + 1024;
    if (limit > CD__CKPT_MAX_BODY) limit = CD__CKPT_MAX_BODY;
    if (h->body_len > limit)
        return cd__error(CD_ERR_FORMAT, "'%s': the header claims a body of %" PRIu64
                         " bytes at offset 32; %" PRIu64 " compressed bytes cannot hold "
                         "more than %" PRIu64, path, h->body_len, h->comp_len, limit);
    return CD_OK;
}

static cd_status read_body(const char *path, uint8_t **body, uint64_t *body_len)
{
    uint8_t *file = NULL;
    uint64_t size = 0;
    file_header h = {0};
    CD__TRY(load_file(path, &file, &size));
    cd_status st = parse_header(path, file, size, &h);
    if (st == CD_OK) st = check_body_size(path, &h);
    const uint8_t *comp = file + HEADER_BYTES;
    if (st == CD_OK && crc(comp, h.comp_len) != h.comp_crc)
        st = cd__error(CD_ERR_CHECKSUM, "'%s': the compressed body (offset %d, %" PRIu64
                       " bytes) fails its CRC32", path, HEADER_BYTES, h.comp_len);
    uint8_t *out = NULL;
    if (st == CD_OK && !(out = malloc(h.body_len ? h.body_len : 1)))
        st = cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory for a %" PRIu64 "-byte body",
                       path, h.body_len);
    if (st == CD_OK && h.body_len > g_last_alloc) g_last_alloc = h.body_len;
    if (st == CD_OK) st = inflate_body(path, comp, h.comp_len, out, h.body_len);
    if (st == CD_OK && crc(out, h.body_len) != h.body_crc)
        st = cd__error(CD_ERR_CHECKSUM, "'%s': the uncompressed body fails its CRC32", path);
    free(file);
    if (st != CD_OK) {
        free(out);
        return st;
    }
    *body = out;
    *body_len = h.body_len;
    return CD_OK;
}

/* ---- parsing the body -------------------------------------------------- */

typedef struct rd {
    const uint8_t *p; /* the body */
    uint64_t pos, end;
    const char *path;
    uint32_t tag; /* the section being parsed, 0 between sections */
} rd;

static cd_status rd_fail(const rd *r, cd_status st, const char *fmt, ...) CD__PRINTF(3, 4);

static cd_status rd_fail(const rd *r, cd_status st, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char sec[32] = "the section list";
    if (r->tag) {
        char t[5];
        for (int i = 0; i < 4; i++) {
            uint8_t c = (uint8_t)(r->tag >> (8 * i));
            t[i] = c >= 32 && c < 127 ? (char)c : '?';
        }
        t[4] = '\0';
        snprintf(sec, sizeof sec, "section %s", t);
    }
    return cd__error(st, "'%s': %s, body offset %" PRIu64 ": %s", r->path, sec, r->pos,
                     what);
}

static cd_status need(rd *r, uint64_t n, const char *what)
{
    if (r->end - r->pos < n)
        return rd_fail(r, CD_ERR_FORMAT, "truncated: %s needs %" PRIu64 " bytes, only %"
                       PRIu64 " remain", what, n, r->end - r->pos);
    return CD_OK;
}

static cd_status get_u32(rd *r, uint32_t *x, const char *what)
{
    *x = 0;
    CD__TRY(need(r, 4, what));
    *x = rd32(r->p + r->pos);
    r->pos += 4;
    return CD_OK;
}

static cd_status get_u64(rd *r, uint64_t *x, const char *what)
{
    *x = 0;
    CD__TRY(need(r, 8, what));
    *x = rd64(r->p + r->pos);
    r->pos += 8;
    return CD_OK;
}

static cd_status get_bytes(rd *r, uint64_t n, const uint8_t **out, const char *what)
{
    CD__TRY(need(r, n, what));
    *out = r->p + r->pos;
    r->pos += n;
    return CD_OK;
}

/* A name: u32 length (1..CD__CKPT_MAX_KEY) and bytes without NUL, copied. */
static cd_status get_name(rd *r, char **out, const char *what)
{
    uint32_t len;
    const uint8_t *s;
    CD__TRY(get_u32(r, &len, what));
    if (len == 0 || len > CD__CKPT_MAX_KEY)
        return rd_fail(r, CD_ERR_FORMAT, "%s length %" PRIu32 " is outside 1..%d", what, len,
                       CD__CKPT_MAX_KEY);
    CD__TRY(get_bytes(r, len, &s, what));
    if (memchr(s, 0, len))
        return rd_fail(r, CD_ERR_FORMAT, "%s holds a NUL byte", what);
    if (!(*out = dup_bytes(s, len)))
        return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    return CD_OK;
}

/* An element count that the remaining bytes can hold at min_size each. */
static cd_status get_count(rd *r, uint64_t min_size, uint64_t *count, const char *what)
{
    uint32_t n;
    *count = 0;
    CD__TRY(get_u32(r, &n, what));
    if (n > CD__CKPT_MAX_ENTRIES || n * min_size > r->end - r->pos)
        return rd_fail(r, CD_ERR_FORMAT, "%s %" PRIu32 " is more than the section can hold",
                       what, n);
    *count = n;
    return CD_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name that occurs twice among names[0..n-1] (sorts a copy), or NULL. */
static cd_status find_duplicate(const char *path, char *const *names, int64_t n,
                                const char **dup)
{
    *dup = NULL;
    const char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!sorted) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", path);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_names);
    for (int64_t i = 1; i < n && !*dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) *dup = sorted[i];
    free(sorted);
    return CD_OK;
}

/* Decode a config/metadata value of a known type into e. */
static cd_status decode_value(rd *r, kv_entry *e, const uint8_t *v, uint64_t len)
{
    uint64_t elem = e->type == CD__CKPT_FLOAT32_ARRAY ? 4 : 8;
    switch (e->type) {
    case CD__CKPT_INT64:
    case CD__CKPT_FLOAT64:
        if (len != 8) return rd_fail(r, CD_ERR_FORMAT, "'%s': a scalar of %" PRIu64 " bytes",
                                     e->key, len);
        e->i64 = (int64_t)rd64(v);
        memcpy(&e->f64, &e->i64, sizeof e->f64);
        return CD_OK;
    case CD__CKPT_STRING:
        if (memchr(v, 0, (size_t)len))
            return rd_fail(r, CD_ERR_FORMAT, "'%s': a string with a NUL byte", e->key);
        e->n = (int64_t)len;
        e->str = dup_bytes(v, (size_t)len);
        break;
    case CD__CKPT_FLOAT32_ARRAY:
    case CD__CKPT_INT64_ARRAY:
        if (len % elem)
            return rd_fail(r, CD_ERR_FORMAT, "'%s': %" PRIu64 " bytes is not a whole array",
                           e->key, len);
        e->n = (int64_t)(len / elem);
        if ((e->arr = malloc(len ? (size_t)len : 1)) && e->type == CD__CKPT_FLOAT32_ARRAY)
            decode_f32(e->arr, v, e->n);
        for (int64_t i = 0; e->arr && e->type == CD__CKPT_INT64_ARRAY && i < e->n; i++)
            ((int64_t *)e->arr)[i] = (int64_t)rd64(v + 8 * i);
        break;
    }
    if (!e->str && !e->arr) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    return CD_OK;
}

static bool known_type(uint32_t t, bool strings_only)
{
    if (strings_only) return t == CD__CKPT_STRING;
    return t >= CD__CKPT_INT64 && t <= CD__CKPT_INT64_ARRAY;
}

/* One entry; entries of unknown types are skipped (*keep = false). */
static cd_status parse_entry(rd *r, kv_entry *e, bool strings_only, bool *keep)
{
    uint32_t type;
    uint64_t len;
    const uint8_t *v;
    CD__TRY(get_name(r, &e->key, "key"));
    CD__TRY(get_u32(r, &type, "entry type"));
    CD__TRY(get_u64(r, &len, "entry length"));
    CD__TRY(get_bytes(r, len, &v, "entry value"));
    *keep = known_type(type, strings_only);
    if (!*keep) return CD_OK;
    e->type = (cd__ckpt_type)type;
    return decode_value(r, e, v, len);
}

static cd_status parse_kv(rd *r, kv_list *l, bool strings_only)
{
    uint64_t count;
    CD__TRY(get_count(r, 17, &count, "entry count"));
    l->e = calloc((size_t)(count ? count : 1), sizeof *l->e);
    if (!l->e) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    l->cap = (int64_t)count;
    for (uint64_t i = 0; i < count; i++) {
        kv_entry *e = &l->e[l->count];
        bool keep = false;
        cd_status st = parse_entry(r, e, strings_only, &keep);
        if (st != CD_OK || !keep) {
            kv_clear_value(e);
            free(e->key);
            memset(e, 0, sizeof *e);
            if (st != CD_OK) return st;
            continue;
        }
        l->count++;
    }
    char **names = malloc((size_t)(l->count ? l->count : 1) * sizeof *names);
    if (!names) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    for (int64_t i = 0; i < l->count; i++) names[i] = l->e[i].key;
    const char *dup = NULL;
    cd_status st = find_duplicate(r->path, names, l->count, &dup);
    free(names);
    if (st == CD_OK && dup) st = rd_fail(r, CD_ERR_FORMAT, "key '%s' occurs twice", dup);
    return st;
}

static cd_status parse_dims(rd *r, file_tensor *t)
{
    uint32_t dtype, rank;
    CD__TRY(get_u32(r, &dtype, "dtype"));
    if (dtype != DTYPE_FLOAT32)
        return rd_fail(r, CD_ERR_UNSUPPORTED, "tensor '%s' has dtype %" PRIu32 " (only 1, "
                       "float32, exists)", t->name, dtype);
    CD__TRY(get_u32(r, &rank, "rank"));
    if (rank < 1 || rank > CD_TENSOR_MAX_RANK)
        return rd_fail(r, CD_ERR_FORMAT, "tensor '%s' has rank %" PRIu32, t->name, rank);
    t->rank = (int32_t)rank;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t dim;
        CD__TRY(get_u64(r, &dim, "dimension"));
        /* Any real tensor fits in the body; this also stops overflow. */
        if (dim < 1 || dim > CD__CKPT_MAX_BODY / numel)
            return rd_fail(r, CD_ERR_FORMAT, "tensor '%s': dimension %" PRIu32 " is %" PRIu64,
                           t->name, d, dim);
        t->shape[d] = (int64_t)dim;
        numel *= dim;
    }
    t->numel = (int64_t)numel;
    return CD_OK;
}

static cd_status parse_tensor(rd *r, file_tensor *t)
{
    CD__TRY(get_name(r, &t->name, "tensor name"));
    CD__TRY(parse_dims(r, t));
    return get_bytes(r, 4 * (uint64_t)t->numel, &t->data, "tensor data");
}

static int cmp_tensors(const void *a, const void *b)
{
    return strcmp((*(const file_tensor *const *)a)->name,
                  (*(const file_tensor *const *)b)->name);
}

static cd_status index_tensors(rd *r, cd__ckpt *ck)
{
    int64_t n = ck->n_tensors;
    ck->by_name = malloc((size_t)(n ? n : 1) * sizeof *ck->by_name);
    char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    cd_status st = CD_OK;
    if (!ck->by_name || !names)
        st = cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    for (int64_t i = 0; st == CD_OK && i < n; i++) {
        ck->by_name[i] = &ck->tensors[i];
        names[i] = ck->tensors[i].name;
    }
    const char *dup = NULL;
    if (st == CD_OK) st = find_duplicate(r->path, names, n, &dup);
    if (st == CD_OK && dup) st = rd_fail(r, CD_ERR_FORMAT, "tensor '%s' occurs twice", dup);
    free(names);
    if (st == CD_OK) qsort(ck->by_name, (size_t)n, sizeof *ck->by_name, cmp_tensors);
    return st;
}

static cd_status parse_tens(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 25, &count, "tensor count"));
    ck->tensors = calloc((size_t)(count ? count : 1), sizeof *ck->tensors);
    if (!ck->tensors) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    for (uint64_t i = 0; i < count; i++) {
        file_tensor *t = &ck->tensors[i];
        ck->n_tensors++; /* so that cd__ckpt_free releases its name */
        CD__TRY(parse_tensor(r, t));
        t->offset = ck->total_numel;
        ck->total_numel += t->numel;
    }
    ck->has_tensors = true;
    return index_tensors(r, ck);
}

/* numel floats of a flat block (m, v or EMA). */
static cd_status get_block(rd *r, uint64_t numel, const uint8_t **out, const char *what)
{
    if (numel > CD__CKPT_MAX_BODY / 4)
        return rd_fail(r, CD_ERR_FORMAT, "%s of %" PRIu64 " floats", what, numel);
    return get_bytes(r, 4 * numel, out, what);
}

static cd_status parse_hyper(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 12, &count, "hyper-parameter count"));
    for (uint64_t i = 0; i < count; i++) {
        uint32_t key;
        uint64_t bits;
        double value;
        CD__TRY(get_u32(r, &key, "hyper-parameter key"));
        CD__TRY(get_u64(r, &bits, "hyper-parameter value"));
        memcpy(&value, &bits, sizeof value);
        if (key >= CD__ADAM_NPARAMS) continue; /* a newer writer's knob */
        if (cd__adam_check("checkpoint", (cd__adam_param)key, value) != CD_OK)
            return rd_fail(r, CD_ERR_FORMAT, "%s", cd_last_error());
        ck->hyper[key] = value;
    }
    return CD_OK;
}

static cd_status parse_adam(rd *r, cd__ckpt *ck)
{
    uint64_t steps, numel;
    CD__TRY(get_u64(r, &steps, "step count"));
    if (steps > INT64_MAX) return rd_fail(r, CD_ERR_FORMAT, "step count %" PRIu64, steps);
    ck->adam_steps = (int64_t)steps;
    CD__TRY(parse_hyper(r, ck));
    CD__TRY(get_u64(r, &numel, "moment length"));
    CD__TRY(get_block(r, numel, &ck->m, "first moments"));
    CD__TRY(get_block(r, numel, &ck->v, "second moments"));
    ck->adam_numel = (int64_t)numel;
    ck->has_adam = true;
    return CD_OK;
}

static cd_status parse_emaw(rd *r, cd__ckpt *ck)
{
    uint64_t numel;
    CD__TRY(get_u64(r, &numel, "EMA length"));
    CD__TRY(get_block(r, numel, &ck->ema, "EMA weights"));
    ck->ema_numel = (int64_t)numel;
    ck->has_ema = true;
    return CD_OK;
}

static cd_status parse_rngs(rd *r, cd__ckpt *ck)
{
    uint64_t count;
    CD__TRY(get_count(r, 37, &count, "RNG count"));
    for (uint64_t i = 0; i < count; i++) {
        char *name = NULL;
        rng_entry *e;
        CD__TRY(get_name(r, &name, "RNG name"));
        cd_status st = rng_append(ck, name, strlen(name), &e);
        free(name);
        CD__TRY(st);
        for (int k = 0; k < CD_RNG_STATE_WORDS; k++)
            CD__TRY(get_u64(r, &e->state[k], "RNG state"));
    }
    char **names = malloc((size_t)(ck->n_rngs ? ck->n_rngs : 1) * sizeof *names);
    if (!names) return cd__error(CD_ERR_OUT_OF_MEMORY, "'%s': no memory", r->path);
    for (int64_t i = 0; i < ck->n_rngs; i++) names[i] = ck->rngs[i].name;
    const char *dup = NULL;
    cd_status st = find_duplicate(r->path, names, ck->n_rngs, &dup);
    free(names);
    if (st == CD_OK && dup) st = rd_fail(r, CD_ERR_FORMAT, "RNG '%s' occurs twice", dup);
    return st;
}

static cd_status parse_step(rd *r, cd__ckpt *ck)
{
    uint64_t step, epoch;
    CD__TRY(get_u64(r, &step, "step"));
    CD__TRY(get_u64(r, &epoch, "epoch"));
    if (step > INT64_MAX || epoch > INT64_MAX)
        return rd_fail(r, CD_ERR_FORMAT, "negative step or epoch");
    ck->has_counters = true;
    ck->step = (int64_t)step;
    ck->epoch = (int64_t)epoch;
    return CD_OK;
}

static cd_status parse_section(rd *r, cd__ckpt *ck)
{
    switch (r->tag) {
    case TAG_CONF: return parse_kv(r, &ck->config, false);
    case TAG_TENS: return parse_tens(r, ck);
    case TAG_ADAM: return parse_adam(r, ck);
    case TAG_EMAW: return parse_emaw(r, ck);
    case TAG_RNGS: return parse_rngs(r, ck);
    case TAG_STEP: return parse_step(r, ck);
    case TAG_META: return parse_kv(r, &ck->meta, true);
    }
    return CD_OK;
}

static int known_slot(uint32_t tag)
{
    static const uint32_t tags[] = {TAG_CONF, TAG_TENS, TAG_ADAM, TAG_EMAW,
                                    TAG_RNGS, TAG_STEP, TAG_META};
    for (int i = 0; i < (int)(sizeof tags / sizeof tags[0]); i++)
        if (tags[i] == tag) return i;
    return -1;
}

/* Cross-section checks that depend on the order sections came in. */
static cd_status check_whole(rd *r, const cd__ckpt *ck)
{
    r->tag = 0;
    if (!ck->has_tensors)
        return rd_fail(r, CD_ERR_FORMAT, "the required section TENS is missing");
    if (ck->has_adam && ck->adam_numel != ck->total_numel)
        return rd_fail(r, CD_ERR_FORMAT, "section ADAM holds moments of %" PRId64 " floats "
                       "for %" PRId64 " parameters", ck->adam_numel, ck->total_numel);
    if (ck->has_ema && ck->ema_numel != ck->total_numel)
        return rd_fail(r, CD_ERR_FORMAT, "section EMAW holds %" PRId64 " floats for %"
                       PRId64 " parameters", ck->ema_numel, ck->total_numel);
    return CD_OK;
}

static cd_status parse_body(const char *path, const uint8_t *body, uint64_t len,
                            cd__ckpt *ck)
{
    rd r = {body, 0, len, path, 0};
    bool seen[7] = {false};
    while (r.pos < len) {
        uint32_t tag, flags;
        uint64_t size;
        r.tag = 0;
        CD__TRY(get_u32(&r, &tag, "section tag"));
        CD__TRY(get_u32(&r, &flags, "section flags"));
        CD__TRY(get_u64(&r, &size, "section length"));
        r.tag = tag;
        CD__TRY(need(&r, size, "the section"));
        int slot = known_slot(tag);
        if (slot < 0 && (flags & SECTION_REQUIRED))
            return rd_fail(&r, CD_ERR_VERSION, "an unknown required section; a newer "
                           "libcolddiff wrote this file");
        if (slot >= 0 && seen[slot])
            return rd_fail(&r, CD_ERR_FORMAT, "the section occurs twice");
        rd sub = {body, r.pos, r.pos + size, path, tag};
        if (slot >= 0) {
            seen[slot] = true;
            CD__TRY(parse_section(&sub, ck));
        }
        r.pos += size; /* bytes a section does not use are skipped */
    }
    return check_whole(&r, ck);
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
        free(body);
        return st;
    }
    ck->body = body;
    ck->path = dup_bytes(path, strlen(path));
    if (!ck->path) {
        cd__ckpt_free(ck);
        return cd__error(CD_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    }
    for (int k = 0; k < CD__ADAM_NPARAMS; k++)
        ck->hyper[k] = cd__adam_default((cd__adam_param)k); /* for keys the file lacks */
    st = parse_body(path, body, len, ck);
    if (st != CD_OK) {
        cd__ckpt_free(ck);
        return st;
    }
    *out = ck;
    return CD_OK;
}

/* ---- applying to a model ----------------------------------------------- */

static const file_tensor *lookup(const cd__ckpt *ck, const char *name)
{
    file_tensor key = {.name = (char *)name};
    const file_tensor *kp = &key;
    file_tensor *const *hit = bsearch(&kp, ck->by_name, (size_t)ck->n_tensors,
                                      sizeof *ck->by_name, cmp_tensors);
    return hit ? *hit : NULL;
}

static void format_shape(char *buf, size_t cap, int32_t rank, const int64_t *dims)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < rank && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %" PRId64 : "%" PRId64, dims[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static cd_status match_one(const cd__ckpt *ck, const cd_params *p, int64_t i,
                           const file_tensor **out)
{
    const char *name = cd_params_name(p, i);
    const file_tensor *t = lookup(ck, name);
    if (!t)
        return cd__error(CD_ERR_NOT_FOUND, "'%s': the model's tensor '%s' is not in the "
                         "checkpoint", ck->path, name);
    int32_t rank = cd_params_rank(p, i);
    const int64_t *dims = cd__params_dims(p, i);
    if (t->rank != rank || memcmp(t->shape, dims, (size_t)rank * sizeof *dims) != 0) {
        char want[160], got[160];
        format_shape(want, sizeof want, rank, dims);
        format_shape(got, sizeof got, t->rank, t->shape);
        return cd__error(CD_ERR_SHAPE, "'%s': tensor '%s' is %s in the checkpoint but %s "
                         "in the model", ck->path, name, got, want);
    }
    *out = t;
    return CD_OK;
}

/* map[i] = the file tensor for params' tensor i; every tensor on both sides
 * must have its counterpart. */
static cd_status match_tensors(const cd__ckpt *ck, const cd_params *p,
                               const file_tensor **map)
{
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++) CD__TRY(match_one(ck, p, i, &map[i]));
    for (int64_t j = 0; count != ck->n_tensors && j < ck->n_tensors; j++) {
        int64_t unused;
        if (cd_params_find(p, ck->tensors[j].name, &unused) != CD_OK)
            return cd__error(CD_ERR_NOT_FOUND, "'%s': the checkpoint holds tensor '%s', which "
                             "the model lacks", ck->path, ck->tensors[j].name);
    }
    return CD_OK;
}

/* A flat block in the file's order, rearranged into params' order. */
static void gather(float *dst, const uint8_t *block, const cd_params *p,
                   const file_tensor **map)
{
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++)
        decode_f32(dst + cd__params_offset(p, i), block + 4 * (uint64_t)map[i]->offset,
                   map[i]->numel);
}

static cd_status restore_adam(const cd__ckpt *ck, cd__adam *adam, const cd_params *p,
                              const file_tensor **map)
{
    size_t n = (size_t)cd_params_numel(p);
    int blocks = ck->has_ema ? 3 : 2;
    float *tmp = cd__calloc(n * (size_t)blocks, sizeof(float), "optimiser state");
    if (!tmp) return cd_last_status();
    gather(tmp, ck->m, p, map);
    gather(tmp + n, ck->v, p, map);
    if (ck->has_ema) gather(tmp + 2 * n, ck->ema, p, map);
    cd_status st = cd__adam_restore(adam, ck->hyper, ck->adam_steps, tmp, tmp + n,
                                    ck->has_ema ? tmp + 2 * n : NULL);
    cd__free(tmp);
    return st;
}

static void copy_values(const cd__ckpt *ck, cd_params *p, const file_tensor **map,
                        bool from_ema)
{
    float *values = cd__params_values(p);
    int64_t count = cd_params_count(p);
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *src = from_ema ? ck->ema + 4 * (uint64_t)map[i]->offset : map[i]->data;
        decode_f32(values + cd__params_offset(p, i), src, map[i]->numel);
    }
}

static cd_status check_apply_args(const cd__ckpt *ck, cd_params *params, cd__adam *adam,
                                  uint32_t flags)
{
    static const char fn[] = "cd__ckpt_apply";
    CD__CHECK_NOT_NULL(ck, fn);
    CD__CHECK_NOT_NULL(params, fn);
    if (flags & ~CD__CKPT_EMA_AS_VALUES)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn,
                         (unsigned)flags);
    if (!ck->has_tensors)
        return cd__error(CD_ERR_STATE, "%s: this checkpoint was not read from a file", fn);
    if (adam && cd__adam_params(adam) != params)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the optimiser updates another "
                         "parameter set", fn);
    if (adam && !ck->has_adam)
        return cd__error(CD_ERR_NOT_FOUND, "%s: '%s' holds no optimiser state", fn, ck->path);
    if ((flags & CD__CKPT_EMA_AS_VALUES) && !ck->has_ema)
        return cd__error(CD_ERR_NOT_FOUND, "%s: '%s' holds no EMA weights", fn, ck->path);
    return cd__params_finalize(params);
}

cd_status cd__ckpt_apply(const cd__ckpt *ck, cd_params *params, cd__adam *adam,
                         uint32_t flags)
{
    CD__TRY(check_apply_args(ck, params, adam, flags));
    int64_t count = cd_params_count(params);
    const file_tensor **map = calloc((size_t)(count ? count : 1), sizeof *map);
    if (!map) return cd__error(CD_ERR_OUT_OF_MEMORY, "cd__ckpt_apply: no memory");
    cd_status st = match_tensors(ck, params, map);
    /* The optimiser first: its restore is the last step that can fail. */
    if (st == CD_OK && adam) st = restore_adam(ck, adam, params, map);
    if (st == CD_OK) copy_values(ck, params, map, flags & CD__CKPT_EMA_AS_VALUES);
    free(map);
    return st;
}

cd_status cd__ckpt_load(const char *path, cd_params *params, cd__adam *adam,
                        uint32_t flags)
{
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    cd_status st = cd__ckpt_apply(ck, params, adam, flags);
    cd__ckpt_free(ck);
    return st;
}
