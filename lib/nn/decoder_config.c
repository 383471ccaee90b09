/* decoder_config.c - the enum-keyed decoder configuration (zstd style). */
#include "decoder.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void cd__decoder_cfg_defaults(cd__decoder_cfg *c, cd_decoder_kind type)
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

#define INT_KEY(k, n, lo, hi, def)                         \
    {                                                      \
        k, n, CD_OPTION_INT, -1, lo, hi, false, false, def \
    }
#define LIST_KEY(k, n, lo, hi, def)                             \
    {                                                           \
        k, n, CD_OPTION_INT_LIST, -1, lo, hi, false, false, def \
    }

/* Defaults are the CNN's (a UNet configuration starts from the same
 * values; only its own keys matter to it). */
static const cd__option keys[] = {
    INT_KEY(CD_DECODER_OPT_CHANNELS, "channels", 1, 64, 1),
    INT_KEY(CD_DECODER_OPT_HEIGHT, "height", 1, 4096, 28),
    INT_KEY(CD_DECODER_OPT_WIDTH, "width", 1, 4096, 28),
    LIST_KEY(CD_DECODER_OPT_HIDDEN, "hidden", 1, 4096, 16),
    INT_KEY(CD_DECODER_OPT_KERNEL, "kernel", 1, 31, 7),
    INT_KEY(CD_DECODER_OPT_TIME_FREQS, "time_freqs", 1, 64, 16),
    INT_KEY(CD_DECODER_OPT_TIME_HIDDEN, "time_hidden", 1, 65536, 128),
    INT_KEY(CD_DECODER_OPT_TIME_LAYERS, "time_layers", 0, CD__DEC_MAX_LIST - 1, 3),
    INT_KEY(CD_DECODER_OPT_DIM, "dim", 4, 4096, 32),
    LIST_KEY(CD_DECODER_OPT_DIM_MULTS, "dim_mults", 1, 64, 1),
    INT_KEY(CD_DECODER_OPT_HEADS, "heads", 1, 64, 4),
    INT_KEY(CD_DECODER_OPT_HEAD_DIM, "head_dim", 1, 1024, 32),
    INT_KEY(CD_DECODER_OPT_CONVNEXT_MULT, "convnext_mult", 1, 16, 2),
    INT_KEY(CD_DECODER_OPT_CLASSES, "classes", 0, 65535, 0),
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const cd__option *find_key(const char *fn, cd_decoder_option key)
{
    return cd__option_find(keys, N_KEYS, (int32_t)key, fn);
}

static int64_t *scalar_slot(cd__decoder_cfg *c, cd_decoder_option key)
{
    switch (key) {
    case CD_DECODER_OPT_CHANNELS: return &c->channels;
    case CD_DECODER_OPT_HEIGHT: return &c->height;
    case CD_DECODER_OPT_WIDTH: return &c->width;
    case CD_DECODER_OPT_KERNEL: return &c->kernel;
    case CD_DECODER_OPT_TIME_FREQS: return &c->time_freqs;
    case CD_DECODER_OPT_TIME_HIDDEN: return &c->time_hidden;
    case CD_DECODER_OPT_TIME_LAYERS: return &c->time_layers;
    case CD_DECODER_OPT_DIM: return &c->dim;
    case CD_DECODER_OPT_HEADS: return &c->heads;
    case CD_DECODER_OPT_HEAD_DIM: return &c->head_dim;
    case CD_DECODER_OPT_CONVNEXT_MULT: return &c->convnext_mult;
    case CD_DECODER_OPT_CLASSES: return &c->classes;
    default: return NULL;
    }
}

cd_status cd_decoder_config_create(cd_decoder_config **out, cd_decoder_kind kind)
{
    static const char fn[] = "cd_decoder_config_create";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    if (kind != CD_DECODER_CNN && kind != CD_DECODER_UNET)
        return cd__error(CD_ERR_INVALID_ARGUMENT, "%s: unknown decoder kind %d", fn, (int)kind);
    cd_decoder_config *cfg = cd__calloc(1, sizeof *cfg, "decoder configuration");
    if (!cfg) return cd_last_status();
    cd__decoder_cfg_defaults(&cfg->c, kind);
    *out = cfg;
    return CD_OK;
}

void cd_decoder_config_free(cd_decoder_config *cfg) { cd__free(cfg); }

cd_status cd_decoder_config_option_info(cd_decoder_option key, cd_option_info *info)
{
    static const char fn[] = "cd_decoder_config_option_info";
    const cd__option *o = find_key(fn, key);
    return o ? cd__option_describe(o, fn, info) : cd_last_status();
}

/* One value of a scalar or of a list's entry: the bounds, and an odd kernel. */
static cd_status check_value(const char *fn, const cd__option *o, int64_t v)
{
    if (o->type == CD_OPTION_INT_LIST) {
        if (v < (int64_t)o->lo || v > (int64_t)o->hi)
            return cd__error(CD_ERR_RANGE,
                             "%s: %s entry %" PRId64 " is outside %" PRId64 "..%" PRId64, fn,
                             o->name, v, (int64_t)o->lo, (int64_t)o->hi);
    } else {
        CD__TRY(cd__option_check_int(o, fn, v));
    }
    if (o->key == CD_DECODER_OPT_KERNEL && v % 2 == 0)
        return cd__error(CD_ERR_RANGE, "%s: kernel = %" PRId64 " must be odd", fn, v);
    return CD_OK;
}

cd_status cd_decoder_config_set_int(cd_decoder_config *cfg, cd_decoder_option key, int64_t value)
{
    static const char fn[] = "cd_decoder_config_set_int";
    CD__CHECK_NOT_NULL(cfg, fn);
    const cd__option *o = find_key(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_int(o, fn, value)); /* refuses the list keys */
    CD__TRY(check_value(fn, o, value));
    *scalar_slot(&cfg->c, key) = value;
    return CD_OK;
}

cd_status cd_decoder_config_get_int(const cd_decoder_config *cfg, cd_decoder_option key,
                                    int64_t *value)
{
    static const char fn[] = "cd_decoder_config_get_int";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(value, fn);
    const cd__option *o = find_key(fn, key);
    if (!o) return cd_last_status();
    CD__TRY(cd__option_check_read(o, fn, true));
    *value = *scalar_slot((cd__decoder_cfg *)&cfg->c, key);
    return CD_OK;
}

static const cd__option *find_list(const char *fn, cd_decoder_option key)
{
    const cd__option *o = find_key(fn, key);
    if (o && o->type != CD_OPTION_INT_LIST) {
        cd__error(CD_ERR_INVALID_ARGUMENT,
                  "%s: option '%s' is a single integer; use the "
                  "_int calls",
                  fn, o->name);
        return NULL;
    }
    return o;
}

cd_status cd_decoder_config_set_list(cd_decoder_config *cfg, cd_decoder_option key,
                                     const int64_t *values, int64_t n)
{
    static const char fn[] = "cd_decoder_config_set_list";
    CD__CHECK_NOT_NULL(cfg, fn);
    const cd__option *o = find_list(fn, key);
    if (!o) return cd_last_status();
    CD__CHECK_NOT_NULL(values, fn);
    if (n < 1 || n > CD__DEC_MAX_LIST)
        return cd__error(CD_ERR_RANGE, "%s: %s needs 1..%d values, got %" PRId64, fn, o->name,
                         CD__DEC_MAX_LIST, n);
    for (int64_t i = 0; i < n; i++) CD__TRY(check_value(fn, o, values[i]));
    int64_t *dst = key == CD_DECODER_OPT_HIDDEN ? cfg->c.hidden : cfg->c.dim_mults;
    memcpy(dst, values, (size_t)n * sizeof *values);
    if (key == CD_DECODER_OPT_HIDDEN)
        cfg->c.n_hidden = n;
    else
        cfg->c.n_mults = n;
    return CD_OK;
}

cd_status cd_decoder_config_get_list(const cd_decoder_config *cfg, cd_decoder_option key,
                                     int64_t *values, int64_t capacity, int64_t *n)
{
    static const char fn[] = "cd_decoder_config_get_list";
    CD__CHECK_NOT_NULL(cfg, fn);
    CD__CHECK_NOT_NULL(n, fn);
    const cd__option *o = find_list(fn, key);
    if (!o) return cd_last_status();
    const int64_t *src = key == CD_DECODER_OPT_HIDDEN ? cfg->c.hidden : cfg->c.dim_mults;
    int64_t count = key == CD_DECODER_OPT_HIDDEN ? cfg->c.n_hidden : cfg->c.n_mults;
    *n = count;
    if (capacity < count)
        return cd__error(CD_ERR_SHAPE,
                         "%s: capacity %" PRId64 " is less than the %" PRId64 " values of %s", fn,
                         capacity, count, o->name);
    CD__CHECK_NOT_NULL(values, fn);
    memcpy(values, src, (size_t)count * sizeof *src);
    return CD_OK;
}

cd_status cd__decoder_cfg_validate(const cd__decoder_cfg *c)
{
    static const char fn[] = "cd_decoder_create";
    if (c->type == CD_DECODER_UNET) {
        if (c->dim % 2 != 0)
            return cd__error(CD_ERR_RANGE,
                             "%s: dim = %" PRId64 " must be even "
                             "(sinusoidal embedding)",
                             fn, c->dim);
        if (c->n_mults < 2)
            return cd__error(CD_ERR_RANGE,
                             "%s: the UNet needs at least 2 levels "
                             "(dim_mults)",
                             fn);
    }
    return CD_OK;
}
