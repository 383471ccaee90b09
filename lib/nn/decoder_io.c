/*
 * decoder_io.c - a decoder in a checkpoint file: its configuration as
 * "decoder.*" entries and its parameters as named tensors
 * (docs/checkpoint-format.md lists the keys). Later layers add their own
 * entries to the same file through cd__decoder_save_with().
 */
#include "decoder.h"

#include <stdio.h>

typedef struct {
    const char *key;
    size_t offset; /* of the int64_t in cd__decoder_cfg */
} scalar_key;

#define KEY(name, field)                       \
    {                                          \
        name, offsetof(cd__decoder_cfg, field) \
    }
static const scalar_key scalars[] = {
    KEY("decoder.channels", channels),
    KEY("decoder.height", height),
    KEY("decoder.width", width),
    KEY("decoder.kernel", kernel),
    KEY("decoder.time_freqs", time_freqs),
    KEY("decoder.time_hidden", time_hidden),
    KEY("decoder.time_layers", time_layers),
    KEY("decoder.dim", dim),
    KEY("decoder.heads", heads),
    KEY("decoder.head_dim", head_dim),
    KEY("decoder.convnext_mult", convnext_mult),
};
#undef KEY
#define N_SCALARS (sizeof scalars / sizeof scalars[0])

static int64_t *field(cd__decoder_cfg *c, size_t i)
{
    return (int64_t *)((char *)c + scalars[i].offset);
}

cd_status cd__decoder_config_to_ckpt(const cd_decoder *d, cd__ckpt *ck)
{
    cd__decoder_cfg c = d->cfg;
    CD__TRY(cd__ckpt_set_str(ck, "decoder.type", cd_enum_name(CD_ENUM_DECODER_KIND, c.type)));
    for (size_t i = 0; i < N_SCALARS; i++)
        CD__TRY(cd__ckpt_set_i64(ck, scalars[i].key, *field(&c, i)));
    if (d->trained_T > 0) CD__TRY(cd__ckpt_set_i64(ck, "decoder.T", d->trained_T));
    /* Written only when not the default, so files of noise-predicting
     * decoders keep their bytes. */
    if (d->prediction != CD_PREDICT_NOISE)
        CD__TRY(cd__ckpt_set_i64(ck, "decoder.prediction", d->prediction));
    if (c.classes > 0) CD__TRY(cd__ckpt_set_i64(ck, "decoder.classes", c.classes));
    CD__TRY(cd__ckpt_set_i64_array(ck, "decoder.hidden", c.hidden, c.n_hidden));
    return cd__ckpt_set_i64_array(ck, "decoder.dim_mults", c.dim_mults, c.n_mults);
}

/* Rebuild a configuration from a checkpoint's entries, checking each value
 * against the public bounds as cd_decoder_config_set_int() would. */
cd_status cd__decoder_config_from_ckpt(const cd__ckpt *ck, cd_decoder_config **out)
{
    const char *type = NULL;
    *out = NULL;
    if (cd__ckpt_get_str(ck, "decoder.type", &type) != CD_OK)
        return cd__error(CD_ERR_FORMAT, "checkpoint: no decoder.type entry (not a decoder "
                                        "checkpoint?)");
    int32_t t = 0;
    if (cd_enum_parse(CD_ENUM_DECODER_KIND, type, &t) != CD_OK)
        return cd__error(CD_ERR_FORMAT, "checkpoint: unknown decoder.type '%s'", type);
    cd_decoder_config *cfg = NULL;
    CD__TRY(cd_decoder_config_create(&cfg, (cd_decoder_kind)t));
    static const cd_decoder_option keys[N_SCALARS] =
        {CD_DECODER_OPT_CHANNELS,    CD_DECODER_OPT_HEIGHT,       CD_DECODER_OPT_WIDTH,
         CD_DECODER_OPT_KERNEL,      CD_DECODER_OPT_TIME_FREQS,   CD_DECODER_OPT_TIME_HIDDEN,
         CD_DECODER_OPT_TIME_LAYERS, CD_DECODER_OPT_DIM,          CD_DECODER_OPT_HEADS,
         CD_DECODER_OPT_HEAD_DIM,    CD_DECODER_OPT_CONVNEXT_MULT};
    cd_status st = CD_OK;
    for (size_t i = 0; st == CD_OK && i < N_SCALARS; i++) {
        int64_t v;
        st = cd__ckpt_get_i64(ck, scalars[i].key, &v);
        if (st == CD_OK) st = cd_decoder_config_set_int(cfg, keys[i], v);
    }
    int64_t list[CD__DEC_MAX_LIST], n = 0;
    if (st == CD_OK) st = cd__ckpt_get_i64_array(ck, "decoder.hidden", list, CD__DEC_MAX_LIST, &n);
    if (st == CD_OK) st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_HIDDEN, list, n);
    if (st == CD_OK)
        st = cd__ckpt_get_i64_array(ck, "decoder.dim_mults", list, CD__DEC_MAX_LIST, &n);
    if (st == CD_OK) st = cd_decoder_config_set_list(cfg, CD_DECODER_OPT_DIM_MULTS, list, n);
    /* Absent in files of decoders without classes. */
    int64_t classes = 0;
    if (st == CD_OK) {
        st = cd__ckpt_get_i64(ck, "decoder.classes", &classes);
        if (st == CD_ERR_NOT_FOUND) {
            cd_clear_error();
            classes = 0, st = CD_OK;
        }
    }
    if (st == CD_OK) st = cd_decoder_config_set_int(cfg, CD_DECODER_OPT_CLASSES, classes);
    if (st != CD_OK) {
        /* The cause is in the error buffer that cd__error writes to. */
        char cause[512];
        snprintf(cause, sizeof cause, "%s", cd_last_error());
        cd_decoder_config_free(cfg);
        return cd__error(CD_ERR_FORMAT, "checkpoint: bad decoder configuration: %s", cause);
    }
    *out = cfg;
    return CD_OK;
}

cd_status cd_decoder_save(cd_decoder *d, const char *path)
{
    static const char fn[] = "cd_decoder_save";
    CD__CHECK_NOT_NULL(d, fn);
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_create(&ck));
    cd_status st = cd__decoder_config_to_ckpt(d, ck);
    if (st == CD_OK) st = cd__ckpt_save(ck, path, d->params, NULL);
    cd__ckpt_free(ck);
    return st;
}

/* decoder.T came after the first files: absent means unknown. */
static cd_status trained_T_from_ckpt(const cd__ckpt *ck, int64_t *T)
{
    *T = 0;
    cd_status st = cd__ckpt_get_i64(ck, "decoder.T", T);
    if (st == CD_ERR_NOT_FOUND) {
        cd_clear_error();
        *T = 0;
        return CD_OK;
    }
    CD__TRY(st);
    if (*T < 1 || *T > 1000000)
        return cd__error(CD_ERR_FORMAT, "checkpoint: decoder.T = %lld is outside 1..1000000",
                         (long long)*T);
    return CD_OK;
}

/* decoder.prediction is absent for noise prediction. */
static cd_status prediction_from_ckpt(const cd__ckpt *ck, int32_t *out)
{
    int64_t p = CD_PREDICT_NOISE;
    cd_status st = cd__ckpt_get_i64(ck, "decoder.prediction", &p);
    if (st == CD_ERR_NOT_FOUND) {
        cd_clear_error();
        p = CD_PREDICT_NOISE;
    } else {
        CD__TRY(st);
    }
    if (p < CD_PREDICT_NOISE || p > CD_PREDICT_V)
        return cd__error(CD_ERR_FORMAT,
                         "checkpoint: decoder.prediction = %lld is not 0 (noise), "
                         "1 (x0) or 2 (v)",
                         (long long)p);
    *out = (int32_t)p;
    return CD_OK;
}

cd_prediction cd_decoder_get_prediction(const cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_get_prediction: argument 'd' is NULL");
        return CD_PREDICT_INVALID;
    }
    return (cd_prediction)d->prediction;
}

cd_status cd__decoder_check_T(const cd_decoder *d, int64_t T, const char *fn)
{
    if (d->trained_T == 0 || d->trained_T == T) return CD_OK;
    return cd__error(CD_ERR_INVALID_ARGUMENT,
                     "%s: the decoder was trained for T = %lld, the "
                     "degradation has T = %lld",
                     fn, (long long)d->trained_T, (long long)T);
}

int64_t cd_decoder_trained_T(const cd_decoder *d)
{
    if (!d) {
        cd__error(CD_ERR_INVALID_ARGUMENT, "cd_decoder_trained_T: argument 'd' is NULL");
        return -1;
    }
    return d->trained_T;
}

cd_status cd__decoder_from_ckpt(const cd__ckpt *ck, cd_decoder **out)
{
    return cd__decoder_from_ckpt_flags(ck, 0, out);
}

cd_status cd__decoder_from_ckpt_flags(const cd__ckpt *ck, uint32_t flags, cd_decoder **out)
{
    cd_decoder_config *cfg = NULL;
    cd_decoder *d = NULL;
    int64_t T = 0;
    int32_t prediction = CD_PREDICT_NOISE;
    *out = NULL;
    CD__TRY(trained_T_from_ckpt(ck, &T));
    CD__TRY(prediction_from_ckpt(ck, &prediction));
    CD__TRY(cd__decoder_config_from_ckpt(ck, &cfg));
    /* Described only: the configuration may claim a model far larger than
     * the file, and cd__ckpt_apply lays the parameters out (and fills them
     * from the file) only once it holds every one of them. */
    cd_status st = cd__decoder_describe(&d, &cfg->c);
    if (st == CD_OK) st = cd__ckpt_apply(ck, d->params, NULL, flags);
    cd_decoder_config_free(cfg);
    if (st != CD_OK) {
        cd_decoder_free(d);
        return st;
    }
    d->trained_T = T;
    d->prediction = prediction;
    *out = d;
    return CD_OK;
}

cd_status cd_decoder_load(cd_decoder **out, const char *path)
{
    static const char fn[] = "cd_decoder_load";
    CD__CHECK_NOT_NULL(out, fn);
    *out = NULL;
    CD__CHECK_NOT_NULL(path, fn);
    cd__ckpt *ck = NULL;
    CD__TRY(cd__ckpt_read(&ck, path));
    cd_status st = cd__decoder_from_ckpt(ck, out);
    cd__ckpt_free(ck);
    return st;
}
