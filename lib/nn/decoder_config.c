/* decoder_config.c - the enum-keyed decoder configuration (zstd style). */
#include "decoder.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void cd__decoder_cfg_defaults(cd__decoder_cfg *c, cd_decoder_type type)
{
    static const int64_t hidden[4] = {16, 32, 32, 16}, mults[3] = {1, 2, 4};
    memset(c, 0, sizeof *c);
    c->type = type;
    c->channels = 1;
    c->height = 28;
    c->width = 28;
    memcpy(c->hidden, hidden, sizeof hidden);
    c->n_hidden = 4;
    c->kernel = 7;
    c->time_freqs = 16;
    c->time_hidden = 128;
    c->time_layers = 3;
    c->dim = 32;
    memcpy(c->dim_mults, mults, sizeof mults);
    c->n_mults = 3;
    c->heads = 4;
    c->head_dim = 32;
    c->convnext_mult = 2;
}

typedef struct {
    const char *name;
    int64_t lo, hi;
    bool list;
} key_info;

static const key_info keys[] = {
    [CD_DECODER_CHANNELS] = {"CD_DECODER_CHANNELS", 1, 64, false},
    [CD_DECODER_HEIGHT] = {"CD_DECODER_HEIGHT", 1, 4096, false},
    [CD_DECODER_WIDTH] = {"CD_DECODER_WIDTH", 1, 4096, false},
    [CD_DECODER_HIDDEN] = {"CD_DECODER_HIDDEN", 1, 4096, true},
    [CD_DECODER_KERNEL] = {"CD_DECODER_KERNEL", 1, 31, false},
    [CD_DECODER_TIME_FREQS] = {"CD_DECODER_TIME_FREQS", 1, 64, false},
    [CD_DECODER_TIME_HIDDEN] = {"CD_DECODER_TIME_HIDDEN", 1, 65536, false},
    [CD_DECODER_TIME_LAYERS] = {"CD_DECODER_TIME_LAYERS", 0, CD__DEC_MAX_LIST - 1, false},
    [CD_DECODER_DIM] = {"CD_DECODER_DIM", 4, 4096, false},
    [CD_DECODER_DIM_MULTS] = {"CD_DECODER_DIM_MULTS", 1, 64, true},
    [CD_DECODER_HEADS] = {"CD_DECODER_HEADS", 1, 64, false},
    [CD_DECODER_HEAD_DIM] = {"CD_DECODER_HEAD_DIM", 1, 1024, false},
    [CD_DECODER_CONVNEXT_MULT] = {"CD_DECODER_CONVNEXT_MULT", 1, 16, false},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

static cd_status check_key(const char *fn, cd_decoder_key key, bool list)
{
    if ((int)key < 0 || (int)key >= N_KEYS)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    if (keys[key].list != list)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: %s is a %s; use %s", fn,
                         keys[key].name, list ? "scalar" : "list",
                         list ? "cd_decoder_config_set" : "cd_decoder_config_set_list");
    return CD_OK;
}

static int64_t *scalar_slot(cd__decoder_cfg *c, cd_decoder_key key)
{
    switch (key) {
    case CD_DECODER_CHANNELS: return &c->channels;
    case CD_DECODER_HEIGHT: return &c->height;
    case CD_DECODER_WIDTH: return &c->width;
    case CD_DECODER_KERNEL: return &c->kernel;
    case CD_DECODER_TIME_FREQS: return &c->time_freqs;
    case CD_DECODER_TIME_HIDDEN: return &c->time_hidden;
    case CD_DECODER_TIME_LAYERS: return &c->time_layers;
    case CD_DECODER_DIM: return &c->dim;
    case CD_DECODER_HEADS: return &c->heads;
    case CD_DECODER_HEAD_DIM: return &c->head_dim;
    case CD_DECODER_CONVNEXT_MULT: return &c->convnext_mult;
    default: return NULL;
    }
}

cd_status cd_decoder_config_create(cd_decoder_config **out, cd_decoder_type type)
{
    static const char fn[] = "cd_decoder_config_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    if (type != CD_DECODER_CNN && type != CD_DECODER_UNET)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown decoder type %d", fn,
                         (int)type);
    cd_decoder_config *cfg = cd__calloc(1, sizeof *cfg, "decoder configuration");
    if (!cfg) return cd_last_status();
    cd__decoder_cfg_defaults(&cfg->c, type);
    *out = cfg;
    return CD_OK;
}

void cd_decoder_config_free(cd_decoder_config *cfg) { cd__free(cfg); }

cd_status cd_decoder_config_bounds(cd_decoder_key key, int64_t *lo, int64_t *hi)
{
    static const char fn[] = "cd_decoder_config_bounds";
    CD__CHECK_NOT_NULL(lo, fn);
    CD__CHECK_NOT_NULL(hi, fn);
    if ((int)key < 0 || (int)key >= N_KEYS)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown key %d", fn, (int)key);
    *lo = keys[key].lo;
    *hi = keys[key].hi;
    return CD_OK;
}

static cd_status check_value(const char *fn, cd_decoder_key key, int64_t v)
{
    if (v < keys[key].lo || v > keys[key].hi)
        return cd__error(CD_ERR_RANGE, "%s: %s = %" PRId64 " is outside %" PRId64
                         "..%" PRId64, fn, keys[key].name, v, keys[key].lo, keys[key].hi);
    if (key == CD_DECODER_KERNEL && v % 2 == 0)
        return cd__error(CD_ERR_RANGE, "%s: CD_DECODER_KERNEL = %" PRId64 " must be odd",
                         fn, v);
    return CD_OK;
}

cd_status cd_decoder_config_set(cd_decoder_config *cfg, cd_decoder_key key, int64_t value)
{
    static const char fn[] = "cd_decoder_config_set";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__TRY(check_key(fn, key, false));
    CD__TRY(check_value(fn, key, value));
    *scalar_slot(&cfg->c, key) = value;
    return CD_OK;
}

cd_status cd_decoder_config_get(const cd_decoder_config *cfg, cd_decoder_key key,
                                int64_t *value)
{
    static const char fn[] = "cd_decoder_config_get";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(value, fn);
    CD__TRY(check_key(fn, key, false));
    *value = *scalar_slot((cd__decoder_cfg *)&cfg->c, key);
    return CD_OK;
}

cd_status cd_decoder_config_set_list(cd_decoder_config *cfg, cd_decoder_key key,
                                     const int64_t *values, int32_t n)
{
    static const char fn[] = "cd_decoder_config_set_list";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__TRY(check_key(fn, key, true));
    CD__CHECK_NOT_NULL(values, fn);
    if (n < 1 || n > CD__DEC_MAX_LIST)
        return cd__error(CD_ERR_RANGE, "%s: %s needs 1..%d values, got %" PRId32, fn,
                         keys[key].name, CD__DEC_MAX_LIST, n);
    for (int32_t i = 0; i < n; i++) CD__TRY(check_value(fn, key, values[i]));
    int64_t *dst = key == CD_DECODER_HIDDEN ? cfg->c.hidden : cfg->c.dim_mults;
    memcpy(dst, values, (size_t)n * sizeof *values);
    if (key == CD_DECODER_HIDDEN) cfg->c.n_hidden = n;
    else cfg->c.n_mults = n;
    return CD_OK;
}

cd_status cd_decoder_config_get_list(const cd_decoder_config *cfg, cd_decoder_key key,
                                     int64_t *values, int32_t capacity, int32_t *n)
{
    static const char fn[] = "cd_decoder_config_get_list";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(n, fn);
    CD__TRY(check_key(fn, key, true));
    const int64_t *src = key == CD_DECODER_HIDDEN ? cfg->c.hidden : cfg->c.dim_mults;
    int64_t count = key == CD_DECODER_HIDDEN ? cfg->c.n_hidden : cfg->c.n_mults;
    *n = (int32_t)count;
    if (capacity < count)
        return cd__error(CD_ERR_SHAPE, "%s: capacity %" PRId32 " is less than the %"
                         PRId64 " values of %s", fn, capacity, count, keys[key].name);
    CD__CHECK_NOT_NULL(values, fn);
    memcpy(values, src, (size_t)count * sizeof *src);
    return CD_OK;
}

cd_status cd__decoder_cfg_validate(const cd__decoder_cfg *c)
{
    static const char fn[] = "cd_decoder_create";
    if (c->type == CD_DECODER_UNET) {
        if (c->dim % 2 != 0)
            return cd__error(CD_ERR_RANGE, "%s: CD_DECODER_DIM = %" PRId64 " must be even "
                             "(sinusoidal embedding)", fn, c->dim);
        if (c->n_mults < 2)
            return cd__error(CD_ERR_RANGE, "%s: the UNet needs at least 2 levels "
                             "(CD_DECODER_DIM_MULTS)", fn);
    }
    return CD_OK;
}
