/*
 * ckpt_write.c - saving a checkpoint: the body is serialised into memory in
 * two passes (one to size it, one to fill it), compressed, and written
 * with its header through the atomic writer (cd__ckpt_save).
 */
#include "ckpt_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static void put_f16s(wbuf *w, const float *x, int64_t n)
{
    if (w->data) {
        uint8_t *p = w->data + w->len;
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = cd__f32_to_f16(x[i]);
            p[2 * i] = (uint8_t)h;
            p[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    w->len += 2 * (uint64_t)n;
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
    case CD__CKPT_INT64:
        put_u64(w, 8);
        put_u64(w, (uint64_t)e->i64);
        break;
    case CD__CKPT_FLOAT64:
        put_u64(w, 8);
        put_f64(w, e->f64);
        break;
    case CD__CKPT_STRING:
        put_u64(w, (uint64_t)e->n);
        put(w, e->str, (size_t)e->n);
        break;
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

static void put_tensors(wbuf *w, cd_params *p, bool half)
{
    int64_t count = cd_params_count(p);
    const float *values = cd__params_values(p);
    put_u32(w, (uint32_t)count);
    for (int64_t i = 0; i < count; i++) {
        int32_t rank = cd_params_rank(p, i);
        const int64_t *dims = cd__params_dims(p, i);
        put_name(w, cd_params_name(p, i));
        put_u32(w, half ? DTYPE_FLOAT16 : DTYPE_FLOAT32);
        put_u32(w, (uint32_t)rank);
        for (int32_t d = 0; d < rank; d++) put_u64(w, (uint64_t)dims[d]);
        if (half)
            put_f16s(w, values + cd__params_offset(p, i), cd_params_numel_at(p, i));
        else
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
    put_tensors(w, p, ck && ck->half_weights);
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

/* Every weight a finite half: no infinity or NaN where the float was
 * finite, and none stored that was not. */
static cd_status check_half_range(const char *path, cd_params *p)
{
    const float *values = cd__params_values(p);
    for (int64_t i = 0; i < cd_params_count(p); i++) {
        const float *x = values + cd__params_offset(p, i);
        for (int64_t j = 0; j < cd_params_numel_at(p, i); j++)
            if (!(fabsf(x[j]) < 65520.0f)) /* NaN too; from 65520 on it rounds to inf */
                return cd__error(CD_ERR_RANGE,
                                 "cd__ckpt_save: '%s': tensor '%s' holds %g at %" PRId64
                                 ", which float16 cannot store (finite, at most 65504 in "
                                 "magnitude)",
                                 path, cd_params_name(p, i), (double)x[j], j);
    }
    return CD_OK;
}

static cd_status check_save_args(const cd__ckpt *ck, const char *path, cd_params *params,
                                 const cd__adam *adam)
{
    static const char fn[] = "cd__ckpt_save";
    CD__CHECK_NOT_NULL(params, fn);
    if (ck && ((uint64_t)ck->config.count > CD__CKPT_MAX_ENTRIES ||
               (uint64_t)ck->meta.count > CD__CKPT_MAX_ENTRIES ||
               (uint64_t)ck->n_rngs > CD__CKPT_MAX_ENTRIES))
        return cd__error(CD_ERR_UNSUPPORTED,
                         "%s: more than %" PRIu64 " configuration, "
                         "metadata or RNG entries",
                         fn, CD__CKPT_MAX_ENTRIES);
    if (!path || !*path)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: the path is NULL or empty", fn);
    if (adam && cd__adam_params(adam) != params)
        return cd__error(CD_ERR_INVALID_ARGUMENT,
                         "%s: the optimiser updates another "
                         "parameter set",
                         fn);
    if ((uint64_t)cd_params_count(params) > CD__CKPT_MAX_ENTRIES)
        return cd__error(CD_ERR_UNSUPPORTED,
                         "%s: %" PRId64 " tensors are more than the "
                         "format's %" PRIu64,
                         fn, cd_params_count(params), CD__CKPT_MAX_ENTRIES);
    CD__TRY(cd__params_finalize(params));
    return ck && ck->half_weights ? check_half_range(path, params) : CD_OK;
}

cd_status cd__ckpt_save(const cd__ckpt *ck, const char *path, cd_params *params,
                        const cd__adam *adam)
{
    return cd__ckpt_save_to(ck, &path, 1, params, adam);
}

cd_status cd__ckpt_save_to(const cd__ckpt *ck, const char *const *paths, int n_paths,
                           cd_params *params, const cd__adam *adam)
{
    CD__CHECK_NOT_NULL(paths, "cd__ckpt_save");
    if (n_paths < 1)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "cd__ckpt_save: no path to write (%d)", n_paths);
    for (int i = 0; i < n_paths; i++) CD__CHECK_NOT_NULL(paths[i], "cd__ckpt_save");
    const char *path = paths[0];
    CD__TRY(check_save_args(ck, path, params, adam));
    wbuf w = {0};
    put_body(&w, ck, params, adam); /* sizing pass */
    if (w.len > CD__CKPT_MAX_BODY)
        return cd__error(CD_ERR_UNSUPPORTED,
                         "cd__ckpt_save: '%s': a body of %" PRIu64
                         " bytes is above the format's limit of %" PRIu64,
                         path, w.len, CD__CKPT_MAX_BODY);
    uint64_t body_len = w.len;
    w.data = cd__malloc(body_len, "checkpoint body");
    w.len = 0;
    if (!w.data)
        return cd__error(CD_ERR_OUT_OF_MEMORY,
                         "cd__ckpt_save: '%s': out of memory for a %" PRIu64 "-byte body", path,
                         body_len);
    put_body(&w, ck, params, adam);
    uint8_t *comp = NULL;
    uint64_t comp_len = 0;
    cd_status st = cd__ckpt_deflate(w.data, body_len, &comp, &comp_len);
    if (st == CD_OK) {
        uint8_t header[HEADER_BYTES];
        make_header(header, comp_len, body_len, crc(comp, comp_len), crc(w.data, body_len));
        for (int i = 0; i < n_paths && st == CD_OK; i++)
            st = write_file(paths[i], header, comp, comp_len);
    }
    cd__free(comp);
    cd__free(w.data);
    return st;
}
